//! The RocksDB store: layout, opening and recovery, and reads.
//!
//! Column families:
//! - `events`: sequence number (u64 big-endian) → record
//!   (`version ‖ hash ‖ signature ‖ canonical bytes`, see [`crate::chain`]);
//! - `time`: timestamp nanos (u64 BE) ‖ sequence number (u64 BE) → empty,
//!   for the first event of each run of equal timestamps (one per group);
//! - `meta`: `format`, `ledger_id`, `head` (seq ‖ hash ‖ ts), `key/current`,
//!   `tree` (the Merkle tree's format, once it is complete), and
//!   `rotation/<seq BE>` → new key id for every key rotation;
//! - `tree`: the Merkle tree's nodes (see [`crate::tree`]).
//!
//! Every append writes all four in one `WriteBatch` with a synced WAL, so
//! the head in `meta`, the last event and the tree can never disagree
//! after a crash.
//!
//! A new ledger is built in `NAME.partial` and renamed into place once its
//! genesis is durable, so an interrupted create leaves nothing half made.
//! Opening recovers: the head in `meta` must be the last event, its hash
//! and its time, and the last 64 events must hash, link and verify before
//! the writer continues. Flushed WAL files are reused
//! (`recycle_log_file_num`), so a sync writes over allocated blocks and
//! commits no new file size. `StoreOptions` holds the memtable size
//! (config key `ledger.memtable_mb`); the commit counters are behind
//! `Ledger::commit_stats`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rocksdb::{ColumnFamilyDescriptor, DB, DBRecoveryMode, Direction, IteratorMode, Options};

use crate::acked;
use crate::chain::{SealedEvent, event_hash};
use crate::error::{Error, Result};
use crate::event::{Hash, KeyId};
use crate::failure::{Failure, FailureKind};
use crate::schedule::KeySchedule;
use crate::timestamp::Timestamp;

pub(crate) const CF_EVENTS: &str = "events";
pub(crate) const CF_TIME: &str = "time";
pub(crate) const CF_META: &str = "meta";
pub(crate) const META_FORMAT: &[u8] = b"format";
pub(crate) const META_LEDGER_ID: &[u8] = b"ledger_id";
pub(crate) const META_HEAD: &[u8] = b"head";
pub(crate) const META_CURRENT_KEY: &[u8] = b"key/current";
pub(crate) const META_ROTATION_PREFIX: &[u8] = b"rotation/";
pub(crate) const STORE_FORMAT: u8 = 1;

/// How many events at the end of the log are re-checked (hash, link,
/// signature) before the writer continues from them.
const TAIL_CHECK: u64 = 64;

/// The newest event: what an auditor writes down to pin the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: Hash,
    pub ts: Timestamp,
}

impl Head {
    pub(crate) fn encode(&self) -> [u8; 48] {
        let mut out = [0u8; 48];
        out[..8].copy_from_slice(&self.seq.to_be_bytes());
        out[8..40].copy_from_slice(&self.hash.0);
        out[40..].copy_from_slice(&self.ts.as_nanos().to_be_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Head> {
        if bytes.len() != 48 {
            return None;
        }
        let seq = u64::from_be_bytes(bytes[..8].try_into().ok()?);
        let hash = Hash(bytes[8..40].try_into().ok()?);
        let ts = Timestamp::from_nanos(u64::from_be_bytes(bytes[40..].try_into().ok()?));
        Some(Head { seq, hash, ts })
    }
}

pub(crate) fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub(crate) fn time_key(ts: Timestamp, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&ts.as_nanos().to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub(crate) fn rotation_key(seq: u64) -> Vec<u8> {
    let mut k = META_ROTATION_PREFIX.to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The key schedule from the genesis event and the rotation events, each
/// checked on its own (see [`Store::key_schedule`]).
fn schedule_from(
    genesis: &SealedEvent,
    rotations: &[(u64, SealedEvent)],
    ledger_id: &[u8; 16],
) -> std::result::Result<KeySchedule, Failure> {
    let check_hash = |seq: u64, e: &SealedEvent| {
        let hash = event_hash(&e.event.prev, &e.canonical);
        if hash == e.hash {
            Ok(())
        } else {
            Err(Failure::hash_mismatch(seq, e.hash, hash))
        }
    };
    check_hash(0, genesis)?;
    let mut schedule =
        KeySchedule::from_genesis(&genesis.event).map_err(|r| Failure::new(0, FailureKind::BadGenesis, r))?;
    schedule.verify_one(0, genesis.event.key, &genesis.hash, &genesis.signature)?;
    for (seq, e) in rotations {
        check_hash(*seq, e)?;
        schedule.verify_one(*seq, e.event.key, &e.hash, &e.signature)?;
        schedule
            .apply_rotation(&e.event, ledger_id)
            .map_err(|r| Failure::new(*seq, FailureKind::BadRotation, r))?;
    }
    Ok(schedule)
}

/// The open database and what every reader needs.
pub(crate) struct Store {
    pub(crate) db: DB,
    pub(crate) path: PathBuf,
    pub(crate) ledger_id: [u8; 16],
    pub(crate) head: RwLock<Head>,
    /// What the writer has made durable since the store was opened.
    pub(crate) commits: Commits,
    /// The acknowledged mark as read just before the database was opened
    /// (so that a live writer can only have moved it to events this open
    /// sees), see [`crate::acked`].
    pub(crate) acked: Option<std::result::Result<Head, String>>,
    /// The writer's handle on the mark, which `record_acked` updates.
    pub(crate) mark: Option<acked::Mark>,
    /// The writer's locks that let read-only opens pause its deletions.
    pub(crate) views: Option<crate::views::WriterLocks>,
    /// The last key schedule read, under the rotation index it was read
    /// for: genesis and rotation events never change once written, so a
    /// schedule is read and its signatures checked again only when a
    /// rotation is added (every checkpoint and proof asks for it).
    schedule: std::sync::Mutex<Option<(Vec<u64>, KeySchedule)>>,
}

/// What the writer has made durable since the ledger was opened: how well
/// appends are grouped into WAL syncs, for diagnostics and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// WAL syncs that made events durable (each one commit group).
    pub syncs: u64,
    /// Events they made durable.
    pub events: u64,
    /// Time spent in those syncs (for a group synced by its write, the
    /// write and sync together), in nanoseconds.
    pub sync_nanos: u64,
}

/// The counters behind [`CommitStats`], updated by the writer and the sync
/// thread.
#[derive(Default)]
pub(crate) struct Commits {
    syncs: AtomicU64,
    events: AtomicU64,
    sync_nanos: AtomicU64,
}

impl Commits {
    /// Counts one sync that made `events` durable and took `took`.
    pub(crate) fn record(&self, events: usize, took: Duration) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.events.fetch_add(events as u64, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sync_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> CommitStats {
        CommitStats {
            syncs: self.syncs.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            sync_nanos: self.sync_nanos.load(Ordering::Relaxed),
        }
    }
}

/// How a ledger's store is tuned. The defaults suit a gateway; tests use a
/// small memtable to make RocksDB switch WAL files often.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Bytes of new writes each column family buffers in memory before
    /// they are flushed to a table file and the WAL moves on to a new file.
    /// It bounds the WAL replayed when the ledger opens after a crash, and
    /// sets how often WAL files are reused. Default 64 MiB; at least 1 MiB.
    pub memtable_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            memtable_bytes: 64 << 20,
        }
    }
}

/// WAL files kept for reuse once their contents are flushed.
const RECYCLED_WALS: usize = 4;

pub(crate) fn db_options(create: bool, tuning: &StoreOptions) -> Options {
    let mut opts = cf_options(tuning);
    opts.create_if_missing(create);
    opts.create_missing_column_families(create);
    // After a crash, recover every record up to the first torn one.
    opts.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
    opts.set_atomic_flush(true);
    opts.set_keep_log_file_num(4);
    opts.set_max_total_wal_size(256 << 20);
    // A flushed WAL file is reused for a later WAL instead of deleted: its
    // blocks are allocated and its size is set, so a sync writes data over
    // it and commits no new file size (on ext4, no journal commit). Each
    // record carries its WAL's number, so recovery stops at the first
    // record left over from the file's previous use (RocksDB's recyclable
    // record format, supported with point-in-time recovery).
    opts.set_recycle_log_file_num(RECYCLED_WALS);
    opts.increase_parallelism(2);
    opts
}

/// What every column family is opened with.
fn cf_options(tuning: &StoreOptions) -> Options {
    let mut opts = Options::default();
    opts.set_write_buffer_size(tuning.memtable_bytes.max(1 << 20));
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    opts
}

/// Every column family a ledger has. `tree` came later: a ledger made
/// before it gets it when next opened for writing (see [`crate::tree`]).
const COLUMN_FAMILIES: [&str; 4] = [CF_EVENTS, CF_TIME, CF_META, crate::tree::CF_TREE];

fn cf_descriptors(tuning: &StoreOptions) -> Vec<ColumnFamilyDescriptor> {
    COLUMN_FAMILIES
        .into_iter()
        .map(|name| ColumnFamilyDescriptor::new(name, cf_options(tuning)))
        .collect()
}

/// The column families of an existing ledger that this build knows, for a
/// read-only open (which cannot create the ones an older ledger lacks).
fn existing_cf_descriptors(path: &Path, tuning: &StoreOptions) -> Result<Vec<ColumnFamilyDescriptor>> {
    let existing = DB::list_cf(&Options::default(), path).map_err(|e| Error::storage(path, e))?;
    Ok(COLUMN_FAMILIES
        .into_iter()
        .filter(|name| existing.iter().any(|e| e == name))
        .map(|name| ColumnFamilyDescriptor::new(name, cf_options(tuning)))
        .collect())
}

/// Where [`crate::Ledger::create`] builds a ledger for `path` before it
/// renames it into place: `NAME.partial` beside it.
pub(crate) fn partial_path(path: &Path) -> Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        Error::InvalidRequest(format!(
            "the ledger path {} does not end in a directory name",
            path.display()
        ))
    })?;
    let mut partial = name.to_os_string();
    partial.push(".partial");
    Ok(path.with_file_name(partial))
}

/// Holds the directory a ledger is being created in, so that two creates of
/// the same ledger never run at once. The lock (`flock` on the directory)
/// goes with the process, however it ends: a killed create leaves none.
pub(crate) struct CreateLock {
    _dir: fs::File,
}

impl CreateLock {
    pub(crate) fn take(path: &Path) -> Result<CreateLock> {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        fs::create_dir_all(parent).map_err(|e| Error::io("cannot create directory", parent, e))?;
        let dir = fs::File::open(parent).map_err(|e| Error::io("cannot open directory", parent, e))?;
        match rustix::fs::flock(&dir, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(CreateLock { _dir: dir }),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(Error::InvalidRequest(format!(
                "a ledger is already being created in {}",
                parent.display()
            ))),
            Err(e) => Err(Error::io("cannot lock directory", parent, e.into())),
        }
    }
}

/// Removes what an interrupted create left at `partial`. It never became a
/// ledger: nothing in it was acknowledged to anyone, and the caller holds
/// the [`CreateLock`], so no other create is using it.
pub(crate) fn remove_partial(partial: &Path) -> Result<()> {
    match fs::symlink_metadata(partial) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("cannot inspect", partial, e)),
        Ok(_) => {
            tracing::warn!(path = %partial.display(), "removing a ledger left half-made by an interrupted create");
            fs::remove_dir_all(partial).map_err(|e| Error::io("cannot remove the half-made ledger", partial, e))
        }
    }
}

/// Renames the finished ledger at `partial` to `path` (which may be an
/// empty directory, never anything else) and syncs the parent directory so
/// that the rename is durable.
pub(crate) fn move_into_place(partial: &Path, path: &Path) -> Result<()> {
    fs::rename(partial, path).map_err(|e| Error::io("cannot move the new ledger into", path, e))?;
    crate::keys::sync_dir(path.parent().unwrap_or(Path::new("")))
}

/// Whether a ledger is at `path`. Nothing there (no directory, or an empty
/// one, which a create may move its new ledger onto) is `false`. A directory that holds files
/// but not RocksDB's `CURRENT` is an error, so that a damaged ledger is
/// never taken for none, and never offered to `init`.
pub(crate) fn db_exists(path: &Path) -> Result<bool> {
    if path.join("CURRENT").exists() {
        return Ok(true);
    }
    let entries = match fs::read_dir(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("cannot list", path, e)),
        Ok(entries) => entries,
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("cannot list", path, e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    if names.is_empty() {
        return Ok(false);
    }
    names.sort();
    let restore = match names.iter().filter(|n| n.starts_with("MANIFEST-")).max() {
        Some(manifest) => format!(
            "if {manifest} is its newest MANIFEST, a CURRENT file holding `{manifest}` and a newline restores it"
        ),
        None => "restore the directory from a backup".into(),
    };
    let shown: Vec<&str> = names.iter().take(4).map(String::as_str).collect();
    Err(Error::Unusable {
        path: path.to_path_buf(),
        reason: format!(
            "it holds {} file(s) ({}{}) but no CURRENT, RocksDB's pointer to its MANIFEST; {restore}",
            names.len(),
            shown.join(", "),
            if names.len() > shown.len() { ", ..." } else { "" }
        ),
    })
}

impl Store {
    /// Creates an empty database (the caller writes genesis next).
    pub(crate) fn create_db(path: &Path, tuning: &StoreOptions) -> Result<DB> {
        if db_exists(path)? {
            return Err(Error::AlreadyInitialized(path.to_path_buf()));
        }
        crate::keys::create_private_dir(path)?;
        DB::open_cf_descriptors(&db_options(true, tuning), path, cf_descriptors(tuning))
            .map_err(|e| Error::storage(path, e))
    }

    /// Opens an existing database. `read_only` opens never write and may run
    /// beside a live writer (they see the log as of the moment they open).
    pub(crate) fn open(path: &Path, read_only: bool, tuning: &StoreOptions) -> Result<Store> {
        if !db_exists(path)? {
            return Err(Error::NotInitialized(path.to_path_buf()));
        }
        let acked = acked::read(path)
            .map(|r| r.and_then(|bytes| Head::decode(&bytes).ok_or_else(|| "malformed head".to_owned())));
        if let Some(Err(reason)) = &acked {
            // Rewritten in place without a sync, the mark can be torn by a
            // power cut: it is passed over, not taken as damage, but said.
            tracing::warn!(
                path = %path.display(),
                %reason,
                "the acknowledged mark cannot be read, so the check that the WAL kept every acknowledged event is skipped; the writer rewrites the mark at its next acknowledgement"
            );
        }
        let mut opts = db_options(false, tuning);
        // A read-only open runs with a live writer's file deletions paused,
        // and a writer's open with no read-only open in progress (`views`).
        let (db, views) = if read_only {
            let db = crate::views::read_only(path, || {
                DB::open_cf_descriptors_read_only(&opts, path, existing_cf_descriptors(path, tuning)?, false)
                    .map_err(|e| Error::storage(path, e))
            })?;
            (db, None)
        } else {
            // The `tree` column family of a ledger made before it.
            opts.create_missing_column_families(true);
            let (db, locks) = crate::views::read_write(path, || {
                DB::open_cf_descriptors(&opts, path, cf_descriptors(tuning)).map_err(|e| Error::storage(path, e))
            })?;
            (db, Some(locks))
        };
        let mut store = Store::from_db(db, path, acked)?;
        store.views = views;
        Ok(store)
    }

    pub(crate) fn from_db(db: DB, path: &Path, acked: Option<std::result::Result<Head, String>>) -> Result<Store> {
        let recovery = |reason: String| Error::Damaged {
            path: path.to_path_buf(),
            reason,
        };
        let meta = db
            .cf_handle(CF_META)
            .ok_or_else(|| recovery("column family `meta` missing".into()))?;
        let get = |key: &[u8]| db.get_cf(meta, key).map_err(|e| Error::storage(path, e));
        match get(META_FORMAT)?.as_deref() {
            Some([STORE_FORMAT]) => {}
            Some(other) => {
                return Err(recovery(format!(
                    "unknown store format {other:?} (this build reads {STORE_FORMAT})"
                )));
            }
            None => return Err(recovery("the store format is missing from meta".into())),
        }
        let ledger_id: [u8; 16] = get(META_LEDGER_ID)?
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| recovery("ledger id missing or malformed in meta".into()))?;
        let head = get(META_HEAD)?
            .and_then(|v| Head::decode(&v))
            .ok_or_else(|| recovery("head missing or malformed in meta".into()))?;
        Ok(Store {
            db,
            path: path.to_path_buf(),
            ledger_id,
            head: RwLock::new(head),
            commits: Commits::default(),
            acked,
            mark: None,
            views: None,
            schedule: std::sync::Mutex::new(None),
        })
    }

    pub(crate) fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily> {
        self.db.cf_handle(name).ok_or_else(|| Error::Damaged {
            path: self.path.clone(),
            reason: format!("column family `{name}` missing"),
        })
    }

    pub(crate) fn head(&self) -> Head {
        match self.head.read() {
            Ok(h) => *h,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    /// Publishes a durable head.
    pub(crate) fn set_head(&self, head: Head) {
        match self.head.write() {
            Ok(mut h) => *h = head,
            Err(poisoned) => *poisoned.into_inner() = head,
        }
    }

    /// Records an acknowledged head in the mark (writers only), after the
    /// callers have their answers: a mark behind by one sync is harmless,
    /// a syscall before every answer is not.
    pub(crate) fn record_acked(&self, head: Head) {
        if let Some(mark) = &self.mark {
            mark.record(&head.encode());
        }
    }

    /// Where the acknowledged mark read at open and the log disagree: the
    /// first sequence number concerned, the kind of failure, and what is
    /// wrong. `None` when they agree, or when there is no usable mark.
    pub(crate) fn acked_disagreement(&self) -> Result<Option<(u64, FailureKind, String)>> {
        let Some(Ok(mark)) = &self.acked else {
            return Ok(None);
        };
        let hash_at_mark = self.sealed(mark.seq)?.map(|e| event_hash(&e.event.prev, &e.canonical));
        Ok(acked::disagreement(
            (mark.seq, mark.hash),
            self.last_stored_seq()?,
            hash_at_mark,
        ))
    }

    pub(crate) fn current_key_id(&self) -> Result<KeyId> {
        let meta = self.cf(CF_META)?;
        self.db
            .get_cf(meta, META_CURRENT_KEY)
            .map_err(|e| Error::storage(&self.path, e))?
            .and_then(|v| v.try_into().ok())
            .map(KeyId)
            .ok_or_else(|| Error::Damaged {
                path: self.path.clone(),
                reason: "current key id missing or malformed in meta".into(),
            })
    }

    /// The raw record at `seq`.
    pub(crate) fn raw(&self, seq: u64) -> Result<Option<Vec<u8>>> {
        self.db
            .get_cf(self.cf(CF_EVENTS)?, seq_key(seq))
            .map_err(|e| Error::storage(&self.path, e))
    }

    /// The sequence number of the last stored event, from the data itself
    /// rather than from `meta`.
    pub(crate) fn last_stored_seq(&self) -> Result<Option<u64>> {
        let mut it = self.db.iterator_cf(self.cf(CF_EVENTS)?, IteratorMode::End);
        match it.next() {
            None => Ok(None),
            Some(item) => {
                let (k, _) = item.map_err(|e| Error::storage(&self.path, e))?;
                decode_seq_key(&k).map(Some)
            }
        }
    }

    /// Raw records from `from` on, in key order, as `(key, record)`. The key
    /// is returned as stored: a verifier must compare it with the seq inside.
    pub(crate) fn raw_iter(&self, from: u64) -> Result<impl Iterator<Item = Result<(u64, Box<[u8]>)>> + '_> {
        let start = seq_key(from);
        let path = &self.path;
        Ok(self
            .db
            .iterator_cf(self.cf(CF_EVENTS)?, IteratorMode::From(&start, Direction::Forward))
            .map(move |item| {
                let (k, v) = item.map_err(|e| Error::storage(path, e))?;
                Ok((decode_seq_key(&k)?, v))
            }))
    }

    /// Every entry of the time index in key order, as `(ts nanos, seq)`; an
    /// entry that cannot be read, or whose key is not 16 bytes, as a reason.
    pub(crate) fn time_entries(&self) -> Result<impl Iterator<Item = std::result::Result<(u64, u64), String>> + '_> {
        let path = &self.path;
        let it = self.db.iterator_cf(self.cf(CF_TIME)?, IteratorMode::Start);
        Ok(it.map(move |item| {
            let (k, _) = item.map_err(|e| Error::storage(path, e).to_string())?;
            let key = <[u8; 16]>::try_from(&*k)
                .map_err(|_| format!("a time index key of {} bytes ({})", k.len(), hex::encode(&k)))?;
            // `ts` (8 bytes BE) ‖ `seq` (8 bytes BE).
            let both = u128::from_be_bytes(key);
            Ok(((both >> 64) as u64, both as u64))
        }))
    }

    /// The first sequence number whose timestamp is at or after `ts`.
    pub(crate) fn first_seq_at_or_after(&self, ts: Timestamp) -> Result<Option<u64>> {
        let start = time_key(ts, 0);
        let mut it = self
            .db
            .iterator_cf(self.cf(CF_TIME)?, IteratorMode::From(&start, Direction::Forward));
        match it.next() {
            None => Ok(None),
            Some(item) => {
                let (k, _) = item.map_err(|e| Error::storage(&self.path, e))?;
                if k.len() != 16 {
                    return Err(Error::Malformed {
                        seq: 0,
                        reason: format!("time index key of {} bytes", k.len()),
                    });
                }
                decode_seq_key(&k[8..]).map(Some)
            }
        }
    }

    /// The sequence numbers of all key rotations, from the index in `meta`.
    pub(crate) fn rotation_seqs(&self) -> Result<Vec<u64>> {
        Ok(self.rotation_index()?.into_iter().map(|(seq, _)| seq).collect())
    }

    /// The index in `meta`: each rotation's sequence number and the key it
    /// introduced (`None` where the stored key id is malformed).
    pub(crate) fn rotation_index(&self) -> Result<Vec<(u64, Option<KeyId>)>> {
        let cf = self.cf(CF_META)?;
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(META_ROTATION_PREFIX, Direction::Forward))
        {
            let (k, v) = item.map_err(|e| Error::storage(&self.path, e))?;
            let Some(rest) = k.strip_prefix(META_ROTATION_PREFIX) else {
                break;
            };
            out.push((decode_seq_key(rest)?, <[u8; 16]>::try_from(&v[..]).ok().map(KeyId)));
        }
        Ok(out)
    }

    pub(crate) fn sealed(&self, seq: u64) -> Result<Option<SealedEvent>> {
        match self.raw(seq)? {
            None => Ok(None),
            Some(bytes) => SealedEvent::decode(&bytes)
                .map(Some)
                .map_err(|reason| Error::Malformed { seq, reason }),
        }
    }

    /// The key schedule from genesis and the rotation index. Each of those
    /// events is checked on its own (its content hashes to its stored hash,
    /// its signature verifies under the key valid at its position, and a
    /// rotation's proof holds), but not linked: verification does that.
    /// Checking the signatures matters: range verification trusts this
    /// schedule for the keys of events before its range, and a rotation
    /// nobody holding the current key signed must not introduce a key.
    pub(crate) fn key_schedule(&self) -> Result<KeySchedule> {
        let rotations = self.rotation_seqs()?;
        let mut cached = self.schedule.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, schedule)) = cached.as_ref()
            && *at == rotations
        {
            return Ok(schedule.clone());
        }
        let schedule = self.schedule_for(&rotations)?.map_err(|f| Error::Malformed {
            seq: f.seq,
            reason: f.detail,
        })?;
        *cached = Some((rotations, schedule.clone()));
        Ok(schedule)
    }

    /// [`Store::key_schedule`], with a bad event reported as the
    /// verification failure it is; the outer error is a read failure.
    pub(crate) fn checked_key_schedule(&self) -> Result<std::result::Result<KeySchedule, Failure>> {
        self.schedule_for(&self.rotation_seqs()?)
    }

    /// [`Store::checked_key_schedule`] for the rotations at `rotations`.
    fn schedule_for(&self, rotations: &[u64]) -> Result<std::result::Result<KeySchedule, Failure>> {
        let read = |seq: u64, missing: &str| {
            self.sealed(seq)?.ok_or_else(|| Error::Malformed {
                seq,
                reason: missing.into(),
            })
        };
        let genesis = read(0, "genesis event missing")?;
        let rotations = rotations
            .iter()
            .map(|&seq| Ok((seq, read(seq, "rotation index names a missing event")?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(schedule_from(&genesis, &rotations, &self.ledger_id))
    }

    /// Writer-side recovery: the head in `meta` must be the last stored
    /// event, and the last [`TAIL_CHECK`] events must hash, link and verify.
    pub(crate) fn check_tail(&self, schedule: &KeySchedule) -> Result<()> {
        let recovery = |reason: String| Error::Recovery {
            path: self.path.clone(),
            reason,
        };
        let head = self.head();
        match self.last_stored_seq()? {
            Some(last) if last == head.seq => {}
            Some(last) => {
                return Err(recovery(format!(
                    "meta says the head is seq {} but the last stored event is seq {last}",
                    head.seq
                )));
            }
            None => return Err(recovery("no events stored".into())),
        }
        let from = head.seq.saturating_sub(TAIL_CHECK - 1);
        let mut prev: Option<Hash> = match from {
            0 => Some(Hash::ZERO),
            n => self.sealed(n - 1)?.map(|e| event_hash(&e.event.prev, &e.canonical)),
        };
        let mut last_ts = None;
        for item in self.raw_iter(from)? {
            let (seq, bytes) = item?;
            let e = SealedEvent::decode(&bytes).map_err(|r| recovery(format!("seq {seq}: {r}")))?;
            last_ts = Some(e.event.ts);
            if e.event.seq != seq {
                return Err(recovery(format!("record at key {seq} holds seq {}", e.event.seq)));
            }
            if let Some(p) = prev
                && e.event.prev != p
            {
                return Err(recovery(format!(
                    "seq {seq} does not link to seq {}",
                    seq.wrapping_sub(1)
                )));
            }
            let h = event_hash(&e.event.prev, &e.canonical);
            if h != e.hash {
                return Err(recovery(format!("seq {seq}: stored hash does not match its content")));
            }
            schedule
                .verify_one(seq, e.event.key, &h, &e.signature)
                .map_err(|f| recovery(f.to_string()))?;
            prev = Some(h);
        }
        if prev != Some(head.hash) {
            return Err(recovery(format!(
                "the last event's hash does not match the head in meta (seq {})",
                head.seq
            )));
        }
        // The writer stamps no event earlier than the head's time, so an
        // altered time in meta would carry into every later event.
        if let Some(ts) = last_ts
            && ts != head.ts
        {
            return Err(recovery(format!(
                "the last event's time {ts} does not match the head's {} in meta (seq {})",
                head.ts, head.seq
            )));
        }
        Ok(())
    }
}

fn decode_seq_key(k: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = k.try_into().map_err(|_| Error::Malformed {
        seq: 0,
        reason: format!("event key of {} bytes, expected 8", k.len()),
    })?;
    Ok(u64::from_be_bytes(arr))
}

impl crate::views::Deletions for Store {
    fn dir(&self) -> &Path {
        &self.path
    }

    fn locks(&self) -> Option<&crate::views::WriterLocks> {
        self.views.as_ref()
    }

    /// Pausing also stops the reuse of flushed WAL files (RocksDB reuses
    /// one only while deletions are on).
    fn pause_deletions(&self, pause: bool) -> Result<()> {
        if pause {
            self.db.disable_file_deletions()
        } else {
            self.db.enable_file_deletions()
        }
        .map_err(|e| Error::storage(&self.path, e))
    }
}
