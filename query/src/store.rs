//! The derived store under `<data dir>/derived/query/`: Arrow IPC segments,
//! each a contiguous seq range with its key index beside it, and the cursor
//! (seq and hash of the last event in a segment). Only the follower writes
//! here; everything here can be deleted and rebuilt from the log.
//!
//! Crash safety: every file is written to a `.tmp` name, fsynced, renamed
//! and its directory fsynced; the key index before its segment, the segment
//! before the cursor. On open, leftovers (`.tmp`, a segment without its
//! index, a segment that does not continue the chain or does not read) are
//! removed, the last segment's last hash is checked against the log, and
//! the cursor is set to the last segment's end (a cursor ahead of the
//! segments is pulled back; one behind is moved up). A cursor or a segment
//! whose hash the log does not have means the log was replaced: the store
//! is wiped and rebuilt.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;
use ledger::{Hash, Head, Ledger};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::row::{self, Row};

/// Events per segment unless told otherwise.
pub const DEFAULT_SEGMENT_EVENTS: usize = 16_384;

/// Where the store of a data dir is.
pub fn store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("derived").join("query")
}

/// A segment's range, from its file name
/// (`<from>-<to>-<first ts ns>-<last ts ns>.arrow`, each 20 digits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub from: u64,
    pub to: u64,
    pub ts_min: i64,
    pub ts_max: i64,
    pub path: PathBuf,
}

impl Segment {
    fn file_stem(from: u64, to: u64, ts_min: i64, ts_max: i64) -> String {
        format!("{from:020}-{to:020}-{ts_min:020}-{ts_max:020}")
    }

    fn parse(path: &Path) -> Option<Segment> {
        let name = path.file_name()?.to_str()?.strip_suffix(".arrow")?;
        let mut parts = name.split('-');
        let from = parts.next()?.parse().ok()?;
        let to = parts.next()?.parse().ok()?;
        let ts_min = parts.next()?.parse().ok()?;
        let ts_max = parts.next()?.parse().ok()?;
        (parts.next().is_none() && from <= to).then(|| Segment {
            from,
            to,
            ts_min,
            ts_max,
            path: path.to_owned(),
        })
    }

    pub fn keys_path(&self) -> PathBuf {
        self.path.with_extension("keys")
    }

    /// The segment's rows, as stored.
    pub fn read(&self) -> Result<Vec<RecordBatch>, Error> {
        self.read_columns(None)
    }

    /// The segment's rows, only the columns `projection` names (by index,
    /// in that order), when it names some.
    pub fn read_columns(&self, projection: Option<&[usize]>) -> Result<Vec<RecordBatch>, Error> {
        let file = File::open(&self.path).map_err(|e| Error::io("cannot open segment", &self.path, e))?;
        let reader = FileReader::try_new(std::io::BufReader::new(file), projection.map(<[usize]>::to_vec))
            .map_err(|e| Error::arrow(&self.path, e))?;
        reader.map(|b| b.map_err(|e| Error::arrow(&self.path, e))).collect()
    }

    /// The seqs the segment's key index names for `value` in `column`
    /// (candidates: `keys.rs`).
    pub fn lookup(&self, column: &str, value: &str) -> Result<Vec<u64>, Error> {
        crate::keys::lookup(&self.keys_path(), column, value)
    }
}

/// The last event indexed into a segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub ledger_id: String,
    pub seq: u64,
    pub hash: String,
    /// The segments' columns ([`row::fingerprint`]); absent in stores
    /// built before it was recorded.
    #[serde(default)]
    pub columns: String,
}

fn cursor_path(dir: &Path) -> PathBuf {
    dir.join("cursor.json")
}

fn segments_dir(dir: &Path) -> PathBuf {
    dir.join("segments")
}

/// Reads the cursor, if there is one.
pub fn read_cursor(dir: &Path) -> Result<Option<Cursor>, Error> {
    let path = cursor_path(dir);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| Error::Corrupt {
            path,
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("cannot read cursor", &path, e)),
    }
}

/// The segments in `dir`, sorted, as named (not checked).
pub fn list_segments(dir: &Path) -> Result<Vec<Segment>, Error> {
    let seg_dir = segments_dir(dir);
    let entries = match fs::read_dir(&seg_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("cannot list segments", &seg_dir, e)),
    };
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("cannot list segments", &seg_dir, e))?;
        if let Some(s) = Segment::parse(&entry.path()) {
            segments.push(s);
        }
    }
    segments.sort_by_key(|s| (s.from, s.to));
    Ok(segments)
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync dir.
pub(crate) fn write_atomic(path: &Path, write: impl FnOnce(&mut File) -> Result<(), Error>) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = File::create(&tmp).map_err(|e| Error::io("cannot create", &tmp, e))?;
    write(&mut file)?;
    file.sync_all().map_err(|e| Error::io("cannot fsync", &tmp, e))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| Error::io("cannot rename into place", path, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("cannot fsync directory", dir, e))
}

fn remove(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("cannot remove", path, e)),
    }
}

/// What [`Follower::open`] found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Repairs {
    /// Files removed: leftovers, broken or unchained segments.
    pub removed: Vec<PathBuf>,
    /// The store was wiped: the log does not have the cursor's (or the last
    /// segment's) event; why.
    pub rebuilt: Option<String>,
    /// The cursor was moved to the last segment's end, from this seq.
    pub cursor_moved_from: Option<u64>,
}

/// The store's lock: held by the one follower that writes it (and briefly
/// by [`wipe`]), so that `sealgate index rebuild` cannot write beside a
/// running `serve`. Released when dropped (or when the process dies).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Takes `dir`'s lock, or says who holds it.
    pub fn take(dir: &Path) -> Result<Lock, Error> {
        fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
        let path = dir.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("cannot open", &path, e))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Lock { _file: file }),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(Error::Busy { path }),
            Err(e) => Err(Error::io("cannot lock", &path, e.into())),
        }
    }
}

/// Keeps the derived store up to date with a ledger, reading it only.
pub struct Follower {
    _lock: Lock,
    dir: PathBuf,
    segment_events: usize,
    segments: Vec<Segment>,
    /// Rows read past the last segment, not yet cut into one.
    pending: Vec<Row>,
    /// The next seq to read from the log.
    next: u64,
    ledger_id: String,
}

impl Follower {
    /// The next seq to read from the log (the first not in a segment or
    /// pending).
    pub fn next(&self) -> u64 {
        self.next
    }
}

/// What one [`Follower::catch_up`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub events_read: u64,
    pub segments_written: u64,
    /// The last seq read from the log.
    pub read_to: Option<u64>,
}

impl Follower {
    /// Opens (creating) the store in `dir` for `ledger`, repairing what a
    /// crash or a replaced log left.
    pub fn open(dir: &Path, ledger: &Ledger, segment_events: usize) -> Result<(Follower, Repairs), Error> {
        let lock = Lock::take(dir)?;
        let seg_dir = segments_dir(dir);
        fs::create_dir_all(&seg_dir).map_err(|e| Error::io("cannot create", &seg_dir, e))?;
        let ledger_id = hex(&ledger.ledger_id());
        let mut repairs = Repairs::default();
        // Leftovers of an interrupted write.
        for d in [dir, seg_dir.as_path()] {
            let entries = fs::read_dir(d).map_err(|e| Error::io("cannot list", d, e))?;
            for entry in entries {
                let path = entry.map_err(|e| Error::io("cannot list", d, e))?.path();
                if path.extension().is_some_and(|x| x == "tmp") {
                    remove(&path)?;
                    repairs.removed.push(path);
                }
            }
        }
        let cursor = read_cursor(dir)?;
        if let Some(c) = &cursor {
            let why = if c.ledger_id != ledger_id {
                Some(format!(
                    "the cursor is of ledger {}, the log is {ledger_id}",
                    c.ledger_id
                ))
            } else if c.columns != row::fingerprint() {
                Some("the segments were built with other columns (another version of sealgate)".to_string())
            } else {
                match ledger
                    .get(c.seq)
                    .map_err(|e| Error::ledger("reading the cursor's event", e))?
                {
                    Some(e) if e.hash.to_hex() == c.hash => None,
                    Some(e) => Some(format!(
                        "the cursor's event seq {} has hash {} in the log, {} in the cursor",
                        c.seq,
                        e.hash.to_hex(),
                        c.hash
                    )),
                    None if c.seq > ledger.head().seq => None, // ahead of the log: checked with the segments
                    None => Some(format!("the log has no seq {}", c.seq)),
                }
            };
            if let Some(why) = why {
                wipe_locked(dir)?;
                repairs.rebuilt = Some(why);
            }
        }
        // The chain of segments from seq 0, each with its key index, the
        // last readable and ending at an event the log has.
        let mut chain: Vec<Segment> = Vec::new();
        for s in list_segments(dir)? {
            let continues = s.from == chain.last().map_or(0, |l| l.to + 1);
            if !continues || !s.keys_path().exists() {
                remove(&s.path)?;
                remove(&s.keys_path())?;
                repairs.removed.push(s.path);
                continue;
            }
            chain.push(s);
        }
        while let Some(last) = chain.last() {
            match check_last(last, ledger)? {
                Check::Good => break,
                Check::Broken => {
                    remove(&last.path)?;
                    remove(&last.keys_path())?;
                    repairs.removed.push(last.path.clone());
                    chain.pop();
                }
                Check::NotInLog(why) => {
                    wipe_locked(dir)?;
                    repairs.rebuilt = Some(why);
                    chain.clear();
                }
            }
        }
        // Stray key indexes (their segment was removed or never renamed).
        let entries = fs::read_dir(&seg_dir).map_err(|e| Error::io("cannot list", &seg_dir, e))?;
        for entry in entries {
            let path = entry.map_err(|e| Error::io("cannot list", &seg_dir, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if let Some(stem) = name.strip_suffix(".keys")
                && !chain.iter().any(|s| s.path.with_extension("").ends_with(stem))
            {
                remove(&path)?;
                repairs.removed.push(path);
            }
        }
        let follower = Follower {
            _lock: lock,
            dir: dir.to_owned(),
            segment_events: segment_events.max(1),
            next: chain.last().map_or(0, |s| s.to + 1),
            segments: chain,
            pending: Vec::new(),
            ledger_id,
        };
        let want = follower.cursor_for(ledger)?;
        let now = read_cursor(dir)?;
        if now != want {
            if let Some(now) = &now {
                repairs.cursor_moved_from = Some(now.seq);
                tracing::warn!(dir = %dir.display(), from = now.seq, to = ?want.as_ref().map(|c| c.seq), "query store: cursor moved to the last segment's end");
            }
            follower.write_cursor(want.as_ref())?;
        }
        Ok((follower, repairs))
    }

    fn cursor_for(&self, ledger: &Ledger) -> Result<Option<Cursor>, Error> {
        let Some(last) = self.segments.last() else {
            return Ok(None);
        };
        let event = ledger
            .get(last.to)
            .map_err(|e| Error::ledger("reading the last segment's event", e))?
            .ok_or_else(|| Error::Corrupt {
                path: last.path.clone(),
                reason: format!("the log has no seq {}", last.to),
            })?;
        Ok(Some(Cursor {
            ledger_id: self.ledger_id.clone(),
            seq: last.to,
            hash: event.hash.to_hex(),
            columns: row::fingerprint(),
        }))
    }

    fn write_cursor(&self, cursor: Option<&Cursor>) -> Result<(), Error> {
        let path = cursor_path(&self.dir);
        match cursor {
            None => remove(&path),
            Some(c) => {
                let bytes = serde_json::to_vec(c).map_err(|e| Error::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                write_atomic(&path, |f| {
                    f.write_all(&bytes).map_err(|e| Error::io("cannot write", &path, e))
                })
            }
        }
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The first seq not in a segment.
    pub fn indexed_to(&self) -> u64 {
        self.next - self.pending.len() as u64
    }

    /// Reads the log from where it stopped to `head` (at most), cutting a
    /// segment for every `segment_events` events; the rest waits in memory
    /// for the next call (queries read it from the log). `progress` is
    /// called after each segment.
    pub fn catch_up(&mut self, ledger: &Ledger, head: &Head, mut progress: impl FnMut(u64)) -> Result<Progress, Error> {
        let mut done = Progress::default();
        // A segment whose write failed last time is written first.
        if self.pending.len() >= self.segment_events
            && let Some(hash) = self.pending_hash(ledger)?
        {
            self.cut(&hash)?;
            done.segments_written += 1;
        }
        if self.next > head.seq {
            return Ok(done);
        }
        let iter = ledger
            .events(self.next, head.seq)
            .map_err(|e| Error::ledger("reading the log", e))?;
        for sealed in iter {
            let sealed = sealed.map_err(|e| Error::ledger("reading the log", e))?;
            if sealed.event.seq != self.next {
                return Err(Error::Gap {
                    expected: self.next,
                    found: sealed.event.seq,
                });
            }
            self.pending.push(row::row(&sealed)?);
            self.next += 1;
            done.events_read += 1;
            done.read_to = Some(sealed.event.seq);
            if self.pending.len() >= self.segment_events {
                self.cut(&sealed.hash)?;
                done.segments_written += 1;
                progress(self.next - 1);
            }
        }
        Ok(done)
    }

    /// Writes the pending rows as a segment, then the cursor. On failure
    /// (a full disk) the rows stay pending and what this attempt wrote is
    /// removed, so that the next call writes the segment again.
    fn cut(&mut self, last_hash: &Hash) -> Result<(), Error> {
        let rows = &self.pending;
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return Ok(());
        };
        let ts_min = rows.iter().map(|r| r.ts).min().unwrap_or(first.ts);
        let ts_max = rows.iter().map(|r| r.ts).max().unwrap_or(last.ts);
        let stem = Segment::file_stem(first.seq, last.seq, ts_min, ts_max);
        let path = segments_dir(&self.dir).join(format!("{stem}.arrow"));
        let segment = Segment {
            from: first.seq,
            to: last.seq,
            ts_min,
            ts_max,
            path,
        };
        let cursor = Cursor {
            ledger_id: self.ledger_id.clone(),
            seq: last.seq,
            hash: last_hash.to_hex(),
            columns: row::fingerprint(),
        };
        let written = self.write_segment(&segment, &cursor);
        if let Err(e) = written {
            // Best effort: a leftover would also be removed on the next open.
            let _ = remove(&segment.keys_path());
            let _ = remove(&segment.path);
            return Err(e);
        }
        self.pending.clear();
        self.segments.push(segment);
        Ok(())
    }

    /// The hash of the last pending row's event.
    fn pending_hash(&self, ledger: &Ledger) -> Result<Option<Hash>, Error> {
        let Some(last) = self.pending.last() else {
            return Ok(None);
        };
        Ok(ledger
            .get(last.seq)
            .map_err(|e| Error::ledger("reading the last pending event", e))?
            .map(|e| e.hash))
    }

    fn write_segment(&self, segment: &Segment, cursor: &Cursor) -> Result<(), Error> {
        let rows = &self.pending;
        let keys = crate::keys::encode(rows);
        let keys_path = segment.keys_path();
        write_atomic(&keys_path, |f| {
            f.write_all(&keys).map_err(|e| Error::io("cannot write", &keys_path, e))
        })?;
        let batch = row::batch(rows)?;
        let seg_path = segment.path.clone();
        write_atomic(&seg_path, |f| {
            let mut w = FileWriter::try_new(f, &batch.schema()).map_err(|e| Error::arrow(&seg_path, e))?;
            w.write(&batch).map_err(|e| Error::arrow(&seg_path, e))?;
            w.finish().map_err(|e| Error::arrow(&seg_path, e))
        })?;
        self.write_cursor(Some(cursor))
    }
}

enum Check {
    Good,
    Broken,
    NotInLog(String),
}

/// Whether the last segment reads, holds its whole range, and ends at an
/// event of this log.
fn check_last(s: &Segment, ledger: &Ledger) -> Result<Check, Error> {
    let Ok(batches) = s.read() else {
        return Ok(Check::Broken);
    };
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows as u64 != s.to - s.from + 1 {
        return Ok(Check::Broken);
    }
    let Some(hash) = batches.last().and_then(last_hash) else {
        return Ok(Check::Broken);
    };
    match ledger
        .get(s.to)
        .map_err(|e| Error::ledger("reading a segment's last event", e))?
    {
        Some(e) if e.hash.to_hex() == hash => Ok(Check::Good),
        Some(e) => Ok(Check::NotInLog(format!(
            "segment {} ends at seq {} with hash {hash}, the log's is {}",
            s.path.display(),
            s.to,
            e.hash.to_hex()
        ))),
        None => Ok(Check::NotInLog(format!(
            "segment {} ends at seq {}, past the log's head",
            s.path.display(),
            s.to
        ))),
    }
}

fn last_hash(batch: &RecordBatch) -> Option<String> {
    use datafusion::arrow::array::{Array, StringArray};
    let col = batch.column_by_name("hash")?.as_any().downcast_ref::<StringArray>()?;
    let i = col.len().checked_sub(1)?;
    col.is_valid(i).then(|| col.value(i).to_owned())
}

/// Removes every segment, key index and the cursor.
pub fn wipe(dir: &Path) -> Result<(), Error> {
    let _lock = Lock::take(dir)?;
    wipe_locked(dir)
}

fn wipe_locked(dir: &Path) -> Result<(), Error> {
    let seg_dir = segments_dir(dir);
    match fs::remove_dir_all(&seg_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("cannot remove", &seg_dir, e)),
    }
    remove(&cursor_path(dir))?;
    fs::create_dir_all(&seg_dir).map_err(|e| Error::io("cannot create", &seg_dir, e))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
