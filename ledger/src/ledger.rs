//! The public face of the log: create, open, append, read.
//!
//! Appends are blocking (`submit`, then `Pending::wait`) or async
//! (`append`). A caller that is the only one waiting polls for its
//! acknowledgement for up to 400 µs before it sleeps: a blocking one by
//! spinning, an async one by yielding to its runtime between polls (so the
//! runtime's other tasks still run); with others waiting, callers sleep at
//! once. Reads go by sequence number and by time (`locate.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};
use rocksdb::WriteBatch;
use tokio::sync::{mpsc, oneshot};

use crate::chain::{Genesis, SealedEvent, encode_record, event_hash};
use crate::error::{Error, Result};
use crate::event::{Actor, Draft, Event, EventKind, Hash, KeyId, check_size};
use crate::failure::Failure;
use crate::keys::{KeyDir, SigningKey};
use crate::merkle;
use crate::schedule::KeySchedule;
use crate::store::{self, CF_EVENTS, CF_META, CF_TIME, CommitStats, Head, Store, StoreOptions};
use crate::timestamp::Timestamp;
use crate::writer::{Acks, Command, CurrentKey, QUEUE_DEPTH, Receipt, Route, Writer};

/// An open ledger. Opened with [`Ledger::open`] it owns the single writer
/// thread; opened with [`Ledger::open_read_only`] it only reads.
///
/// Reads are blocking RocksDB calls: async callers should run them in
/// `spawn_blocking`. Appends are queued to the writer thread and can be
/// awaited ([`Ledger::append`]) or waited for ([`Ledger::append_blocking`]).
pub struct Ledger {
    store: Arc<Store>,
    /// Callers blocked in [`Pending::wait`].
    waiting: Arc<AtomicUsize>,
    writer: Option<(mpsc::Sender<Command>, JoinHandle<()>)>,
    /// The writer's signing key (writing handles only).
    current_key: Option<Arc<CurrentKey>>,
    /// Hands async callers' acknowledgements to their runtime.
    acks: Arc<Acks>,
}

/// An append that was queued; resolves once it is durable (or failed).
#[must_use = "an append is acknowledged only when its Pending resolves"]
pub struct Pending<T = Vec<Receipt>> {
    rx: oneshot::Receiver<Result<T>>,
    waiting: Arc<AtomicUsize>,
    route: Route,
    acks: Arc<Acks>,
}

/// How long a lone blocking waiter polls for its answer before it parks.
const WAIT_SPIN: Duration = Duration::from_micros(400);

impl<T> Pending<T> {
    /// Blocks until the writer answers. Do not call from an async task.
    ///
    /// A caller that is the only one waiting on this ledger polls for up to
    /// 400 µs (about two WAL syncs) before it parks, which saves the wake-up
    /// on the way back; with other callers waiting, it parks at once so that
    /// nobody spins while the cores are needed for signing.
    pub fn wait(mut self) -> Result<T> {
        let waiting = Waiting::enter(&self.waiting);
        let polled = if waiting.alone {
            spin_alone(&mut self.rx, &self.waiting)
        } else {
            None
        };
        let answer = match polled {
            Some(answer) => answer,
            None => self.rx.blocking_recv().map_err(|_| Error::Closed),
        };
        drop(waiting);
        answer?
    }

    /// Waits asynchronously until the writer answers.
    ///
    /// Like [`Pending::wait`], a caller that is the only one waiting polls
    /// for up to 400 µs before it sleeps, but by yielding to the runtime
    /// between polls (`tokio::task::yield_now`), so the runtime's other
    /// tasks and its I/O still run. It saves the runtime's wake-up of a
    /// parked worker (50–100 µs on a virtual machine) when a lone session
    /// appends; with other callers waiting it sleeps at once.
    ///
    /// Inside a tokio runtime the answer, when it comes with others, is
    /// delivered by one task on the runtime rather than by the ledger's
    /// threads waking each caller's task.
    pub async fn recv(mut self) -> Result<T> {
        if self.acks.ensure_pump() {
            self.route.set_via_pump();
        }
        let waiting = Waiting::enter(&self.waiting);
        let mut polled = None;
        if waiting.alone {
            let start = Instant::now();
            while polled.is_none() && start.elapsed() <= WAIT_SPIN && self.waiting.load(Ordering::Acquire) <= 1 {
                polled = try_answer(&mut self.rx);
                if polled.is_none() {
                    tokio::task::yield_now().await;
                }
            }
        }
        let answer = match polled {
            Some(answer) => answer,
            None => (&mut self.rx).await.map_err(|_| Error::Closed),
        };
        drop(waiting);
        answer?
    }
}

/// Counts a caller among those waiting on the ledger for as long as it
/// lives, even if an async wait is dropped half way.
struct Waiting<'a> {
    count: &'a AtomicUsize,
    /// No other caller was waiting when this one began.
    alone: bool,
}

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Waiting<'a> {
        let alone = count.fetch_add(1, Ordering::AcqRel) == 0;
        Waiting { count, alone }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

type Answer<T> = Result<Result<T>>;

/// The writer's answer, if it is there.
fn try_answer<T>(rx: &mut oneshot::Receiver<Result<T>>) -> Option<Answer<T>> {
    match rx.try_recv() {
        Ok(answer) => Some(Ok(answer)),
        Err(oneshot::error::TryRecvError::Closed) => Some(Err(Error::Closed)),
        Err(oneshot::error::TryRecvError::Empty) => None,
    }
}

/// Spins for the answer for up to [`WAIT_SPIN`] while this caller stays the
/// only one waiting.
fn spin_alone<T>(rx: &mut oneshot::Receiver<Result<T>>, waiting: &AtomicUsize) -> Option<Answer<T>> {
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            if let Some(answer) = try_answer(rx) {
                return Some(answer);
            }
            std::hint::spin_loop();
        }
        if start.elapsed() > WAIT_SPIN || waiting.load(Ordering::Acquire) > 1 {
            return None;
        }
    }
}

impl Ledger {
    /// Whether a ledger is at `path`: `false` when nothing is there (no
    /// directory, or an empty one), an error when the directory holds files
    /// that are not a ledger RocksDB can open (`CURRENT` missing), so that
    /// a caller that creates ledgers on first use never takes a damaged one
    /// for none.
    pub fn exists(path: &Path) -> Result<bool> {
        store::db_exists(path)
    }

    /// Creates a new ledger in `path`: a fresh ledger id and a genesis event
    /// signed by `key`, which is stored in `key_dir`.
    ///
    /// The genesis event is checked as the verifier checks it (`actor` by
    /// [`Actor::check`], the size limit, the genesis body) before anything
    /// is made on disk: an actor the format does not allow is an
    /// [`Error::InvalidEvent`], and leaves no directory, ledger or key file.
    ///
    /// The ledger is built beside `path` (`NAME.partial`), its genesis
    /// written with a synced write, and only then renamed into place, so a
    /// create that is interrupted (a crash, a full disk) leaves no
    /// half-made ledger at `path` and can simply be run again; what it left
    /// in `NAME.partial` was never a ledger anyone used and is removed by
    /// the next create.
    pub fn create(path: &Path, key_dir: &KeyDir, key: SigningKey, actor: Actor) -> Result<Ledger> {
        Ledger::create_with(path, key_dir, key, actor, &StoreOptions::default())
    }

    /// [`Ledger::create`] with the store tuned by `tuning`.
    pub fn create_with(
        path: &Path,
        key_dir: &KeyDir,
        key: SigningKey,
        actor: Actor,
        tuning: &StoreOptions,
    ) -> Result<Ledger> {
        let mut ledger_id = [0u8; 16];
        OsRng.fill_bytes(&mut ledger_id);
        let mut draft = Draft::new(EventKind::LedgerGenesis);
        draft.actor = actor;
        draft.body = Genesis {
            ledger_id,
            public_key: key.public(),
        }
        .to_body();
        let ts = Timestamp::now();
        let event = Event::from_draft(draft, 0, ts, Hash::ZERO, key.id());
        let canonical = event.canonical_bytes();
        event
            .check()
            .and_then(|()| check_size(canonical.len()))
            .and_then(|()| KeySchedule::from_genesis(&event).map(drop))
            .map_err(|e| Error::InvalidEvent(format!("genesis: {e}")))?;

        let partial = store::partial_path(path)?;
        let _lock = store::CreateLock::take(path)?;
        if store::db_exists(path)? {
            return Err(Error::AlreadyInitialized(path.to_path_buf()));
        }
        store::remove_partial(&partial)?;
        let db = Store::create_db(&partial, tuning)?;
        if !key_dir.file_for(key.id()).exists() {
            key_dir.store(&key)?;
        }
        let hash = event_hash(&Hash::ZERO, &canonical);
        let signature = key.sign_hash(&hash);
        let head = Head { seq: 0, hash, ts };

        let cf = |name| {
            db.cf_handle(name).ok_or_else(|| Error::Damaged {
                path: partial.clone(),
                reason: format!("column family `{name}` missing"),
            })
        };
        let mut batch = WriteBatch::default();
        batch.put_cf(
            cf(CF_EVENTS)?,
            store::seq_key(0),
            encode_record(&hash, &signature, &canonical),
        );
        batch.put_cf(cf(CF_TIME)?, store::time_key(ts, 0), []);
        let meta = cf(CF_META)?;
        batch.put_cf(meta, store::META_FORMAT, [store::STORE_FORMAT]);
        batch.put_cf(meta, store::META_LEDGER_ID, ledger_id);
        batch.put_cf(meta, store::META_HEAD, head.encode());
        batch.put_cf(meta, store::META_CURRENT_KEY, key.id().0);
        // The Merkle tree of the one event, in the same batch.
        let tree = cf(crate::tree::CF_TREE)?;
        let leaf = merkle::leaf_hash(&merkle::leaf_data(0, &hash, &signature.to_bytes()));
        merkle::Frontier::default().push(leaf, |level, index, node| {
            batch.put_cf(tree, crate::tree::node_key(level, index), node);
        });
        batch.put_cf(meta, crate::tree::META_TREE, [crate::tree::TREE_FORMAT]);
        let mut sync = rocksdb::WriteOptions::default();
        sync.set_sync(true);
        db.write_opt(batch, &sync).map_err(|e| Error::storage(&partial, e))?;
        drop(db);
        fail::fail_point!("ledger::create_before_rename", |msg| Err(Error::io(
            "injected failure before renaming",
            &partial,
            std::io::Error::other(msg.unwrap_or_default()),
        )));
        store::move_into_place(&partial, path)?;
        Ledger::open_with(path, key_dir, tuning)
    }

    /// Opens an existing ledger for appending. Recovers the head, checks that
    /// the tail links and verifies, and loads the current signing key from
    /// `key_dir`.
    pub fn open(path: &Path, key_dir: &KeyDir) -> Result<Ledger> {
        Ledger::open_with(path, key_dir, &StoreOptions::default())
    }

    /// [`Ledger::open`] with the store tuned by `tuning`.
    pub fn open_with(path: &Path, key_dir: &KeyDir, tuning: &StoreOptions) -> Result<Ledger> {
        Ledger::open_with_clock(path, key_dir, tuning, Timestamp::now)
    }

    /// [`Ledger::open_with`], with the writer taking each group's time from
    /// `now` instead of the system clock: for benchmarks and tests that need
    /// a log spanning months, written in minutes. Timestamps still never go
    /// backwards (an earlier `now` keeps the last event's time).
    pub fn open_with_clock(
        path: &Path,
        key_dir: &KeyDir,
        tuning: &StoreOptions,
        now: fn() -> Timestamp,
    ) -> Result<Ledger> {
        Ledger::open_writer(path, key_dir, tuning, now, true)
    }

    /// A new ledger in `path` whose writer does not maintain the Merkle
    /// tree: only for benchmarks that measure what the tree costs the
    /// write path, beside a ledger that has it (`benches/proofs.rs`).
    /// Compiled in with the `bench-tree-off` feature alone, which only
    /// dev-dependencies enable: a production build has no way to it.
    ///
    /// It is a throwaway ledger that cannot be taken for a normal one: it
    /// is made new here (never an existing ledger), and its tree marker is
    /// removed (synced) before its writer starts, so it is what a ledger
    /// made before the tree is (`docs/FORMAT.md` §13): proofs and
    /// checkpoints refuse it ("no Merkle tree yet"), full verification
    /// reports `tree_mismatch` at 0, and a normal open for writing builds
    /// the whole tree from the log again before its first append.
    #[cfg(feature = "bench-tree-off")]
    #[doc(hidden)]
    pub fn create_without_tree(path: &Path, key_dir: &KeyDir, key: SigningKey, actor: Actor) -> Result<Ledger> {
        drop(Ledger::create(path, key_dir, key, actor)?);
        Ledger::open_writer(path, key_dir, &StoreOptions::default(), Timestamp::now, false)
    }

    /// Opens an existing ledger for appending; `tree` is false only for
    /// [`Ledger::create_without_tree`].
    fn open_writer(
        path: &Path,
        key_dir: &KeyDir,
        tuning: &StoreOptions,
        now: fn() -> Timestamp,
        tree: bool,
    ) -> Result<Ledger> {
        // Acknowledged events the store lost would be overwritten by the
        // next appends: refuse, rather than carry on without them. Checked
        // on a read-only open first, because a read-write open runs
        // RocksDB's recovery, which keeps what it replayed and drops the
        // rest of a damaged WAL for good; a read-only open changes nothing,
        // so the damaged file is still there to be restored.
        if let Some((_, _, reason)) = Store::open(path, true, tuning)?.acked_disagreement()? {
            return Err(Error::Recovery {
                path: path.to_path_buf(),
                reason,
            });
        }
        let mut store = Store::open(path, false, tuning)?;
        let schedule = store.key_schedule()?;
        store.check_tail(&schedule)?;
        if !tree {
            crate::tree::remove_marker(&store)?;
        } else if !store.has_tree()? {
            crate::tree::backfill(&store)?;
        }
        let current = store.current_key_id()?;
        if schedule.current() != current {
            return Err(Error::Recovery {
                path: path.to_path_buf(),
                reason: format!(
                    "meta names key {current} as current but the log's last rotation introduced {}",
                    schedule.current()
                ),
            });
        }
        if let Some(Err(reason)) = &store.acked {
            tracing::warn!(path = %path.display(), reason = %reason, "acknowledged mark unusable; writing a new one");
        }
        let key = key_dir.load(current)?;
        let head = store.head();
        let mark = crate::acked::Mark::open(path, &head.encode())
            .map_err(|e| Error::io("cannot write the acknowledged mark", &crate::acked::path(path), e))?;
        store.mark = Some(mark);
        tracing::debug!(path = %path.display(), head = head.seq, key = %current, "ledger opened");
        Ledger::start_writer(Arc::new(store), schedule, key, key_dir.clone(), now, tree)
    }

    /// Opens a ledger for reading only; needs no key, writes nothing, and can
    /// run beside a process that has it open for writing.
    pub fn open_read_only(path: &Path) -> Result<Ledger> {
        Ok(Ledger {
            store: Arc::new(Store::open(path, true, &StoreOptions::default())?),
            waiting: Arc::default(),
            writer: None,
            current_key: None,
            acks: Arc::default(),
        })
    }

    fn start_writer(
        store: Arc<Store>,
        schedule: KeySchedule,
        key: SigningKey,
        key_dir: KeyDir,
        now: fn() -> Timestamp,
        tree: bool,
    ) -> Result<Ledger> {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let acks = Arc::new(Acks::default());
        let writer = Writer::new(store.clone(), schedule, key, key_dir, acks.clone(), now, tree)?;
        let current_key = writer.current_key();
        let handle = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|cause| Error::Thread {
                what: "ledger writer",
                cause,
            })?;
        Ok(Ledger {
            store,
            waiting: Arc::default(),
            writer: Some((tx, handle)),
            current_key: Some(current_key),
            acks,
        })
    }

    fn pending<T>(&self, rx: oneshot::Receiver<Result<T>>, route: Route) -> Pending<T> {
        Pending {
            rx,
            waiting: self.waiting.clone(),
            route,
            acks: self.acks.clone(),
        }
    }

    fn sender(&self) -> Result<&mpsc::Sender<Command>> {
        self.writer.as_ref().map(|(tx, _)| tx).ok_or(Error::ReadOnly)
    }

    /// Queues a command for the writer and wakes it if it is parked.
    fn send_blocking(&self, command: Command) -> Result<()> {
        self.sender()?.blocking_send(command).map_err(|_| Error::Closed)?;
        self.wake_writer();
        Ok(())
    }

    async fn send(&self, command: Command) -> Result<()> {
        self.sender()?.send(command).await.map_err(|_| Error::Closed)?;
        self.wake_writer();
        Ok(())
    }

    fn wake_writer(&self) {
        if let Some((_, handle)) = &self.writer {
            handle.thread().unpark();
        }
    }

    /// Queues drafts as one atomic unit: all of them become durable in one
    /// write, or none. Blocks while the queue is full; not for async tasks.
    ///
    /// A draft that could not be appended as an event the verifier accepts
    /// is refused here, before anything is queued, with an
    /// [`Error::InvalidEvent`] that names it and its field (see
    /// [`Draft::check`]): a kind only the ledger writes or this version does
    /// not know, or a field the format does not allow. An event whose
    /// envelope would exceed [`crate::MAX_EVENT_BYTES`] is refused by the
    /// writer, through the [`Pending`]. Either way nothing of the request is
    /// written, and the ledger goes on taking appends.
    pub fn submit(&self, drafts: Vec<Draft>) -> Result<Pending> {
        let (command, pending) = self.append_command(drafts, Vec::new())?;
        self.send_blocking(command)?;
        Ok(pending)
    }

    /// [`Ledger::submit`] for async callers.
    pub async fn submit_async(&self, drafts: Vec<Draft>) -> Result<Pending> {
        let (command, pending) = self.append_command(drafts, Vec::new())?;
        self.send(command).await?;
        Ok(pending)
    }

    /// Appends drafts as one atomic unit (see [`Ledger::submit`]) in which
    /// some answer others: for each `(i, j)` in `links` (`j < i`), draft
    /// `i`'s `correlation.answers` becomes the sequence number draft `j`
    /// gets. Resolves once the unit is durable, with a receipt per draft.
    /// A request and the decision that answers it go together this way,
    /// durable in one sync.
    pub async fn append_linked(&self, drafts: Vec<Draft>, links: Vec<(usize, usize)>) -> Result<Vec<Receipt>> {
        let (command, pending) = self.append_command(drafts, links)?;
        self.send(command).await?;
        pending.recv().await
    }

    /// The writer's command for an append, and what its caller waits on;
    /// an error if a draft cannot be appended.
    fn append_command(&self, drafts: Vec<Draft>, links: Vec<(usize, usize)>) -> Result<(Command, Pending)> {
        for (i, draft) in drafts.iter().enumerate() {
            let refused = |reason: String| Error::InvalidEvent(format!("event {i} of the request: {reason}"));
            if draft.kind.is_reserved() || !(draft.kind.is_known() || draft.kind.is_extension()) {
                return Err(refused(format!("kind `{}` cannot be appended", draft.kind)));
            }
            draft.check().map_err(refused)?;
        }
        for (n, &(i, j)) in links.iter().enumerate() {
            if j >= i || i >= drafts.len() || links[..n].iter().any(|&(k, _)| k == i) {
                return Err(Error::InvalidRequest(format!(
                    "link {n} of the request ({i} answers {j}) does not name a later draft answering an earlier one once, among {} drafts",
                    drafts.len()
                )));
            }
        }
        let (reply, rx) = oneshot::channel();
        let route = Route::default();
        let command = Command::Append {
            drafts,
            links,
            reply,
            route: route.clone(),
        };
        Ok((command, self.pending(rx, route)))
    }

    /// Appends one event and waits until it is durable.
    pub fn append_blocking(&self, draft: Draft) -> Result<Receipt> {
        one(self.submit(vec![draft])?.wait()?)
    }

    /// Appends one event; resolves once it is durable.
    pub async fn append(&self, draft: Draft) -> Result<Receipt> {
        one(self.submit_async(vec![draft]).await?.recv().await?)
    }

    /// Rotates the signing key: stores `new_key` in the key directory and
    /// appends a `key.rotated` event signed by the current key. Events after
    /// it are signed by `new_key`.
    pub fn rotate_key(&self, new_key: SigningKey, actor: Actor, reason: Option<String>) -> Result<Receipt> {
        let (reply, rx) = oneshot::channel();
        self.send_blocking(Command::Rotate {
            new_key: Box::new(new_key),
            actor,
            reason,
            reply,
        })?;
        self.pending(rx, Route::default()).wait()
    }

    /// What the writer has made durable since this ledger was opened (all
    /// zero when read-only): how well appends are grouped into WAL syncs.
    pub fn commit_stats(&self) -> CommitStats {
        self.store.commits.stats()
    }

    pub fn path(&self) -> &Path {
        &self.store.path
    }

    pub fn ledger_id(&self) -> [u8; 16] {
        self.store.ledger_id
    }

    /// The newest durable event, as recorded in `meta`.
    pub fn head(&self) -> Head {
        self.store.head()
    }

    /// The head as the log itself has it: the last stored event's sequence
    /// number, hash and time, that event's content checked against its
    /// hash, and all three checked against the head in `meta`, which is not
    /// signed. This is what an auditor pins (`sealgate head`); an error
    /// names the disagreement, since one means the store was altered.
    pub fn head_checked(&self) -> Result<Head> {
        let path = self.store.path.clone();
        let last = self.store.last_stored_seq()?.ok_or_else(|| Error::Damaged {
            path: path.clone(),
            reason: "no events stored".into(),
        })?;
        let e = self.store.sealed(last)?.ok_or_else(|| Error::Malformed {
            seq: last,
            reason: "the last stored event went missing while being read".into(),
        })?;
        if event_hash(&e.event.prev, &e.canonical) != e.hash {
            return Err(Error::Malformed {
                seq: last,
                reason: "stored hash does not match its content".into(),
            });
        }
        let log = Head {
            seq: last,
            hash: e.hash,
            ts: e.event.ts,
        };
        if let Some((_, _, reason)) = self.store.acked_disagreement()? {
            return Err(Error::Damaged { path, reason });
        }
        let meta = self.store.head();
        if log != meta {
            return Err(Error::Damaged {
                path,
                reason: format!(
                    "meta says the head is seq {} ({}, {}) but the log's last event is seq {} ({}, {})",
                    meta.seq,
                    meta.hash.short(),
                    meta.ts,
                    log.seq,
                    log.hash.short(),
                    log.ts
                ),
            });
        }
        Ok(log)
    }

    /// The event at `seq`, decoded but not verified.
    pub fn get(&self, seq: u64) -> Result<Option<SealedEvent>> {
        self.store.sealed(seq)
    }

    /// Events `from..=to` in order, decoded but not verified. Reading stops
    /// at `to` without asking the store for what follows, so a range that
    /// is readable reads even when the next record is damaged.
    pub fn events(&self, from: u64, to: u64) -> Result<impl Iterator<Item = Result<SealedEvent>> + '_> {
        let mut records = self.store.raw_iter(from)?;
        let mut done = false;
        Ok(std::iter::from_fn(move || {
            if done {
                return None;
            }
            let (seq, bytes) = match records.next()? {
                Ok((seq, _)) if seq > to => return None,
                Ok(record) => record,
                Err(e) => {
                    done = true;
                    return Some(Err(e));
                }
            };
            done = seq >= to;
            Some(SealedEvent::decode(&bytes).map_err(|reason| Error::Malformed { seq, reason }))
        }))
    }

    /// That the event at `seq`, which a replay hashed to `hash`, is signed by
    /// the key valid at `seq`, the key schedule checked on its own as
    /// verification checks it. With every link up to `seq` checked, the
    /// events up to it are then the key's.
    pub(crate) fn check_signed(&self, seq: u64, hash: &Hash) -> Result<()> {
        let damaged = |reason: String| Error::Damaged {
            path: self.path().to_path_buf(),
            reason,
        };
        let schedule = self
            .checked_key_schedule()?
            .map_err(|f| damaged(format!("the log's keys do not hold: {f}")))?;
        let event = self
            .get(seq)?
            .ok_or_else(|| damaged(format!("no event at seq {seq}")))?;
        if event.hash != *hash {
            return Err(damaged(format!(
                "seq {seq} is stored with hash {} but was replayed as {}",
                event.hash.short(),
                hash.short()
            )));
        }
        schedule
            .verify_one(seq, event.event.key, hash, &event.signature)
            .map_err(|f| {
                damaged(format!(
                    "the events up to seq {seq} are not signed by the log's key: {f}"
                ))
            })
    }

    /// Signs `digest`, a statement about this log (a snapshot's, see
    /// `projection.rs`), with the key that signs the next event. Only the
    /// writing handle holds that key.
    pub(crate) fn sign_statement(&self, digest: &Hash) -> Result<(KeyId, ed25519_dalek::Signature)> {
        let key = self.current_key.as_ref().ok_or(Error::ReadOnly)?.get();
        Ok((key.id(), key.sign_hash(digest)))
    }

    /// The writer's current signing key (writing handles only).
    pub(crate) fn writer_key(&self) -> Option<Arc<SigningKey>> {
        self.current_key.as_ref().map(|k| k.get())
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Whether this handle owns the writer thread (opened for writing).
    pub(crate) fn has_writer(&self) -> bool {
        self.writer.is_some()
    }

    /// Every entry of the time index, as `(ts nanos, seq)` (see
    /// [`Store::time_entries`]).
    pub(crate) fn time_entries(&self) -> Result<impl Iterator<Item = std::result::Result<(u64, u64), String>> + '_> {
        self.store.time_entries()
    }

    /// Raw stored records from `from` on, with the key they are stored under.
    pub fn raw_records(&self, from: u64) -> Result<impl Iterator<Item = Result<(u64, Box<[u8]>)>> + '_> {
        self.store.raw_iter(from)
    }

    /// The first event at or after `ts`, by the time index alone. The index
    /// is not signed: readers use [`Ledger::locate_at_or_after`], which
    /// checks the answer against the events; this is for verification by
    /// time, which checks the edges itself and reports a disagreement.
    pub fn first_seq_at_or_after(&self, ts: Timestamp) -> Result<Option<u64>> {
        self.store.first_seq_at_or_after(ts)
    }

    /// The last event at or before `ts`, by the time index alone (see
    /// [`Ledger::first_seq_at_or_after`]; readers use
    /// [`Ledger::locate_at_or_before`]).
    pub fn last_seq_at_or_before(&self, ts: Timestamp) -> Result<Option<u64>> {
        let next = ts.as_nanos().checked_add(1).map(Timestamp::from_nanos);
        match next {
            None => Ok(Some(self.head().seq)),
            Some(next) => match self.store.first_seq_at_or_after(next)? {
                Some(0) => Ok(None),
                Some(s) => Ok(Some(s - 1)),
                None => Ok(Some(self.head().seq)),
            },
        }
    }

    /// The key schedule (genesis key and rotations) as recorded in the log.
    pub fn key_schedule(&self) -> Result<KeySchedule> {
        self.store.key_schedule()
    }

    /// [`Ledger::key_schedule`], with a bad genesis or rotation event
    /// reported as a verification failure.
    pub(crate) fn checked_key_schedule(&self) -> Result<std::result::Result<KeySchedule, Failure>> {
        self.store.checked_key_schedule()
    }

    /// The key that signs the next event.
    pub fn current_key_id(&self) -> Result<KeyId> {
        self.store.current_key_id()
    }

    /// Where the acknowledged mark (read when the store was opened) and the
    /// log disagree, if they do.
    pub(crate) fn acked_disagreement(&self) -> Result<Option<(u64, crate::failure::FailureKind, String)>> {
        self.store.acked_disagreement()
    }

    /// The store's rotation index: each rotation's sequence number and the
    /// key it introduced (`None` where the entry is malformed).
    pub(crate) fn rotation_index(&self) -> Result<Vec<(u64, Option<KeyId>)>> {
        self.store.rotation_index()
    }

    /// The last stored sequence number, read from the events themselves.
    pub fn last_stored_seq(&self) -> Result<Option<u64>> {
        self.store.last_stored_seq()
    }

    /// Where key files live by default for a data directory.
    pub fn default_key_dir(data_dir: &Path) -> PathBuf {
        data_dir.join("keys")
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        if let Some((tx, handle)) = self.writer.take() {
            drop(tx);
            handle.thread().unpark();
            // The writer drains what is queued, then exits.
            let _ = handle.join();
        }
        self.acks.close();
    }
}

fn one(mut receipts: Vec<Receipt>) -> Result<Receipt> {
    match (receipts.pop(), receipts.is_empty()) {
        (Some(r), true) => Ok(r),
        (r, _) => Err(Error::InvalidRequest(format!(
            "one event was appended but {} receipts came back",
            receipts.len() + usize::from(r.is_some())
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::task::Poll;

    use super::*;

    fn draft() -> Draft {
        let mut draft = Draft::new(EventKind::ToolCallRequested);
        draft.actor.principal = Some("alice".into());
        draft
    }

    /// An async wait that is dropped half way (its task cancelled) stops
    /// counting as a waiter, so the next lone caller still polls; and the
    /// append it waited for is still made durable.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_async_wait_stops_counting_as_a_waiter() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let keys = KeyDir::new(dir.path().join("keys"));
        let ledger = Ledger::create(
            &dir.path().join("ledger"),
            &keys,
            SigningKey::from_seed([9; 32]),
            Actor::default(),
        )?;
        // The first poll must find the append not yet durable. On a loaded
        // machine the answer can come first (the test thread descheduled
        // for a sync's time), so such an append is simply awaited, and the
        // test tries again with the next one.
        let mut seq = 0;
        let wait = loop {
            seq += 1;
            assert!(seq < 100, "every append was durable before its first poll");
            let pending = ledger.submit_async(vec![draft()]).await?;
            let mut wait = Box::pin(pending.recv());
            let ready = std::future::poll_fn(|cx| Poll::Ready(wait.as_mut().poll(cx).is_ready())).await;
            if !ready {
                break wait;
            }
        };
        assert_eq!(ledger.waiting.load(Ordering::Acquire), 1, "a polled wait is counted");
        drop(wait);
        assert_eq!(ledger.waiting.load(Ordering::Acquire), 0, "a dropped wait is not");
        let next = ledger.append(draft()).await?;
        assert_eq!(
            next.seq,
            seq + 1,
            "the dropped wait's append is still written before the next one"
        );
        assert_eq!(ledger.head().seq, seq + 1);
        Ok(())
    }

    /// Linked drafts answer the sequence numbers their partners got in the
    /// same unit, wherever the unit lands in the log; bad links are refused
    /// before anything is queued.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn linked_drafts_answer_their_partners_in_the_unit() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let keys = KeyDir::new(dir.path().join("keys"));
        let ledger = Ledger::create(
            &dir.path().join("ledger"),
            &keys,
            SigningKey::from_seed([9; 32]),
            Actor::default(),
        )?;
        let before = ledger.append(draft()).await?;
        let unit = ledger
            .append_linked(vec![draft(), draft(), draft()], vec![(1, 0), (2, 0)])
            .await?;
        let seqs: Vec<u64> = unit.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [before.seq + 1, before.seq + 2, before.seq + 3]);
        let answers = |seq| -> Result<Option<u64>> {
            let event = ledger
                .get(seq)?
                .ok_or_else(|| Error::InvalidRequest(format!("no event {seq}")))?;
            Ok(event.event.correlation.answers)
        };
        assert_eq!(answers(seqs[0])?, None);
        assert_eq!(answers(seqs[1])?, Some(seqs[0]));
        assert_eq!(answers(seqs[2])?, Some(seqs[0]));

        for links in [vec![(0, 0)], vec![(0, 1)], vec![(3, 0)], vec![(1, 0), (1, 0)]] {
            let refused = ledger.append_linked(vec![draft(), draft()], links.clone()).await;
            assert!(
                matches!(&refused, Err(Error::InvalidRequest(m)) if m.contains("answers")),
                "{links:?}: {refused:?}"
            );
        }
        assert_eq!(ledger.head().seq, seqs[2], "a refused unit writes nothing");
        Ok(())
    }
}
