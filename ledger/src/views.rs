//! Whole read-only views beside a live writer.
//!
//! A read-only RocksDB open reads the MANIFEST, then opens every table file
//! it names and replays the WAL files it still needs. A writer that deleted
//! a compacted table file, or reused a flushed WAL file for new writes,
//! between those steps made the open fail ("No such file", reported by
//! RocksDB as corruption), or made it show a log with the reused WAL's
//! events missing: a gap in a sound log, which verification reports as one.
//!
//! So a read-only open asks the writer to pause its file deletions (which
//! also pauses WAL reuse: RocksDB reuses a WAL file only while deletions are
//! on), with two `flock`ed files in the store's directory:
//!
//! - `SEALGATE-READERS`: a reader holds it shared from before it asks until
//!   its open has returned (the writer holds it exclusively while it opens
//!   the store). The writer's `ledger-views` thread tries to
//!   take it exclusively every [`POLL`]; when it cannot, readers wait.
//! - `SEALGATE-DELETIONS`: the writer holds it exclusively whenever RocksDB
//!   may delete or reuse files. For waiting readers it disables deletions
//!   and only then lets it go; a reader takes it shared before it opens
//!   RocksDB. Once no reader holds `SEALGATE-READERS`, the writer takes
//!   `SEALGATE-DELETIONS` back and enables deletions again.
//!
//! Files RocksDB is deleting or reusing when the deletions are disabled are
//! obsolete in the MANIFEST the reader is about to read, so it does not
//! need them. Once open, a reader needs nothing more from the directory: it
//! holds every table file open (`max_open_files` is RocksDB's default, -1)
//! and has what the WAL holds in memory. The writer holds both files while
//! it opens the store, since its open deletes obsolete files too.
//!
//! A reader polls for both locks and gives up after [`READER_PATIENCE`] in
//! all, and a writer's open for the readers' lock after [`WRITER_PATIENCE`],
//! each with an error that names the lock, rather than hang on a process
//! that is stopped or stuck in its open.
//!
//! Readers that keep `SEALGATE-READERS` held (a stuck open, or opens one
//! after another) hold back deletions and WAL reuse, never appends; the
//! writer says so in its log.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

pub(crate) const READERS: &str = "SEALGATE-READERS";
pub(crate) const DELETIONS: &str = "SEALGATE-DELETIONS";

/// How often the writer looks for waiting readers: about the longest a
/// read-only open waits for it.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// How long a read-only open waits for a live writer to pause its
/// deletions before it gives up.
const READER_PATIENCE: Duration = Duration::from_secs(30);

/// How long an open for writing waits for read-only opens in progress
/// (each holds the readers' lock for its own RocksDB open only).
const WRITER_PATIENCE: Duration = Duration::from_secs(30);

/// After how long of readers holding deletions back the writer warns.
const HELD_WARNING: Duration = Duration::from_secs(60);

fn lock_path(store: &Path, name: &str) -> PathBuf {
    store.join(name)
}

/// Runs a read-only `open` of the store while the writer, if one is live,
/// has its file deletions paused.
pub(crate) fn read_only<T>(store: &Path, open: impl FnOnce() -> Result<T>) -> Result<T> {
    read_only_within(store, READER_PATIENCE, open)
}

/// [`read_only`], giving up after `patience` of waiting for the writer,
/// in all: a writer that is opening the store holds the readers' lock, and
/// one that has not paused its deletions the deletions lock.
fn read_only_within<T>(store: &Path, patience: Duration, open: impl FnOnce() -> Result<T>) -> Result<T> {
    // No lock file: no writer of this build has opened the store, so none
    // is running that the lock would hold back.
    let Some(readers) = existing(store, READERS)? else {
        return open();
    };
    let asked = Instant::now();
    wait_shared(
        &readers,
        &lock_path(store, READERS),
        asked,
        patience,
        "the writer that holds it did not finish opening the ledger for this read-only open",
    )?;
    let deletions = existing(store, DELETIONS)?;
    if let Some(deletions) = &deletions {
        wait_shared(
            deletions,
            &lock_path(store, DELETIONS),
            asked,
            patience,
            "the writer that holds it did not pause its file deletions for this read-only open",
        )?;
    }
    let opened = open();
    // Deletions first: a writer takes it back only once no reader holds
    // the readers' lock.
    drop(deletions);
    drop(readers);
    opened
}

/// Takes `file`'s lock shared, polling until `patience` after `asked`.
fn wait_shared(file: &File, path: &Path, asked: Instant, patience: Duration, gave_up: &'static str) -> Result<()> {
    wait_lock(file, File::try_lock_shared, path, asked, patience, gave_up)
}

/// Takes `file`'s lock with `try_lock`, polling until `patience` after
/// `asked`; then fails with `gave_up`.
fn wait_lock(
    file: &File,
    try_lock: fn(&File) -> std::result::Result<(), TryLockError>,
    path: &Path,
    asked: Instant,
    patience: Duration,
    gave_up: &'static str,
) -> Result<()> {
    loop {
        match try_lock(file) {
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) if asked.elapsed() < patience => std::thread::sleep(POLL / 4),
            Err(TryLockError::WouldBlock) => {
                return Err(Error::io(
                    gave_up,
                    path,
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("waited {:.1} s", patience.as_secs_f64()),
                    ),
                ));
            }
            Err(TryLockError::Error(e)) => return Err(Error::io("cannot take the lock", path, e)),
        }
    }
}

/// A lock file a writer made, opened for reading; `None` if there is none.
fn existing(store: &Path, name: &str) -> Result<Option<File>> {
    let path = lock_path(store, name);
    match File::open(&path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("cannot open the lock", &path, e)),
    }
}

/// The locks a writer holds: the deletions lock, exclusively, whenever
/// RocksDB may delete files, and the readers' lock it polls.
pub(crate) struct WriterLocks {
    readers: File,
    deletions: File,
}

/// Runs the writer's `open` of the store with no read-only open in
/// progress, and returns with the deletions lock held.
pub(crate) fn read_write<T>(store: &Path, open: impl FnOnce() -> Result<T>) -> Result<(T, WriterLocks)> {
    read_write_within(store, WRITER_PATIENCE, open)
}

/// [`read_write`], giving up after `patience` of waiting for read-only
/// opens to finish.
fn read_write_within<T>(
    store: &Path,
    patience: Duration,
    open: impl FnOnce() -> Result<T>,
) -> Result<(T, WriterLocks)> {
    let readers = lock_file(store, READERS)?;
    let deletions = lock_file(store, DELETIONS)?;
    wait_lock(
        &readers,
        File::try_lock,
        &lock_path(store, READERS),
        Instant::now(),
        patience,
        "read-only opens that hold it did not finish before this open for writing",
    )?;
    // With the readers' lock held no reader holds this one: only a writer.
    match deletions.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(Error::InvalidRequest(format!(
                "another writer has the ledger in {} open for writing (it holds {DELETIONS})",
                store.display()
            )));
        }
        Err(TryLockError::Error(e)) => {
            return Err(Error::io(
                "cannot lock the deletions lock",
                &lock_path(store, DELETIONS),
                e,
            ));
        }
    }
    let opened = match open() {
        // RocksDB's own lock: a writer that had paused its deletions for a
        // reader when this one looked.
        Err(Error::Storage { cause, .. }) if cause.to_string().contains("/LOCK") => {
            return Err(Error::InvalidRequest(format!(
                "another writer has the ledger in {} open for writing (RocksDB: {cause})",
                store.display()
            )));
        }
        other => other?,
    };
    readers
        .unlock()
        .map_err(|e| Error::io("cannot unlock the readers' lock", &lock_path(store, READERS), e))?;
    Ok((opened, WriterLocks { readers, deletions }))
}

fn lock_file(store: &Path, name: &str) -> Result<File> {
    let path = lock_path(store, name);
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::io("cannot open the lock", &path, e))
}

struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Stop {
    /// Waits `POLL` or until stopped; true when stopped.
    fn wait(&self) -> bool {
        let stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        let (stopped, _) = self
            .wake
            .wait_timeout_while(stopped, POLL, |stopped| !*stopped)
            .unwrap_or_else(PoisonError::into_inner);
        *stopped
    }
}

/// What the watcher needs of the store it watches for.
pub(crate) trait Deletions: Send + Sync + 'static {
    /// The store's directory.
    fn dir(&self) -> &Path;
    /// The writer's locks, if the store is open for writing.
    fn locks(&self) -> Option<&WriterLocks>;
    /// Pauses (or resumes) RocksDB's deletion of obsolete files.
    fn pause_deletions(&self, pause: bool) -> Result<()>;
}

/// The writer's thread that pauses file deletions for read-only opens.
/// Stops when dropped.
pub(crate) struct Watcher {
    stop: Arc<Stop>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    pub(crate) fn start<S: Deletions>(store: Arc<S>) -> Result<Option<Watcher>> {
        if store.locks().is_none() {
            return Ok(None);
        }
        let stop = Arc::new(Stop {
            stopped: Mutex::new(false),
            wake: Condvar::new(),
        });
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("ledger-views".into())
                .spawn(move || {
                    if let Some(locks) = store.locks() {
                        run(&*store, locks, &stop);
                    }
                })
                .map_err(|cause| Error::Thread {
                    what: "ledger views",
                    cause,
                })?
        };
        Ok(Some(Watcher {
            stop,
            thread: Some(thread),
        }))
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        *self.stop.stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.stop.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(store: &dyn Deletions, locks: &WriterLocks, stop: &Stop) {
    let readers_path = lock_path(store.dir(), READERS);
    while !stop.wait() {
        match locks.readers.try_lock() {
            Ok(()) => {
                let _ = locks.readers.unlock();
                continue;
            }
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => {
                tracing::error!(path = %readers_path.display(), error = %e, "cannot poll the readers' lock");
                continue;
            }
        }
        // Readers wait: pause deletions, then let them open.
        if let Err(e) = store.pause_deletions(true) {
            tracing::error!(path = %store.dir().display(), error = %e, "cannot pause file deletions for readers");
            continue;
        }
        let _ = locks.deletions.unlock();
        let since = Instant::now();
        let mut warned = false;
        loop {
            if stop.wait() {
                return;
            }
            match locks.readers.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    if !warned && since.elapsed() >= HELD_WARNING {
                        tracing::warn!(
                            path = %readers_path.display(),
                            seconds = since.elapsed().as_secs(),
                            "read-only opens have held file deletions back this long; obsolete ledger files and WAL reuse wait"
                        );
                        warned = true;
                    }
                }
                Err(TryLockError::Error(e)) => {
                    tracing::error!(path = %readers_path.display(), error = %e, "cannot poll the readers' lock");
                }
            }
        }
        // No reader is opening, and none can start: take deletions back.
        if let Err(e) = locks.deletions.lock() {
            tracing::error!(path = %lock_path(store.dir(), DELETIONS).display(), error = %e, "cannot take the deletions lock back; file deletions stay paused");
            let _ = locks.readers.unlock();
            return;
        }
        if let Err(e) = store.pause_deletions(false) {
            tracing::error!(path = %store.dir().display(), error = %e, "cannot resume file deletions");
        }
        let _ = locks.readers.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer's lock file in `dir`, held exclusively as a writer does.
    fn held(dir: &Path, name: &str) -> File {
        let file = lock_file(dir, name).expect("lock file");
        file.lock().expect("exclusive lock");
        file
    }

    /// Runs `open_with` (a `*_within` call given an open that notes it
    /// ran) on its own thread, and fails, rather than hangs, if it does not
    /// return; returns its result and whether the store was opened.
    fn bounded(open_with: impl FnOnce(&mut dyn FnMut()) -> Result<()> + Send + 'static) -> (Result<()>, bool) {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut opened = false;
            let result = open_with(&mut || opened = true);
            let _ = tx.send((result, opened));
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the open neither gave up nor returned within 10 s")
    }

    fn timed_out_at(result: Result<()>, name: &str) {
        match result {
            Err(Error::Io { path, cause, .. }) => {
                assert!(path.ends_with(name), "the error names {}, not {name}", path.display());
                assert_eq!(cause.kind(), std::io::ErrorKind::TimedOut, "{cause}");
            }
            other => panic!("expected a time-out on {name}, got {other:?}"),
        }
    }

    const SHORT: Duration = Duration::from_millis(300);

    #[test]
    fn a_reader_gives_up_on_a_writer_that_never_finishes_opening() {
        let dir = tempfile::tempdir().expect("temp dir");
        let _readers = held(dir.path(), READERS);
        let _deletions = lock_file(dir.path(), DELETIONS).expect("lock file");
        let store = dir.path().to_path_buf();
        let started = Instant::now();
        let (result, opened) = bounded(move |opened| {
            read_only_within(&store, SHORT, || {
                opened();
                Ok(())
            })
        });
        timed_out_at(result, READERS);
        assert!(!opened, "the store was opened without the readers' lock");
        assert!(started.elapsed() >= SHORT, "gave up early");
    }

    #[test]
    fn a_reader_gives_up_on_a_writer_that_never_pauses_its_deletions() {
        let dir = tempfile::tempdir().expect("temp dir");
        let _readers = lock_file(dir.path(), READERS).expect("lock file");
        let _deletions = held(dir.path(), DELETIONS);
        let store = dir.path().to_path_buf();
        let (result, opened) = bounded(move |opened| {
            read_only_within(&store, SHORT, || {
                opened();
                Ok(())
            })
        });
        timed_out_at(result, DELETIONS);
        assert!(!opened, "the store was opened while the writer could delete files");
    }

    #[test]
    fn a_writer_gives_up_on_a_read_only_open_that_never_finishes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let readers = lock_file(dir.path(), READERS).expect("lock file");
        readers.lock_shared().expect("shared lock");
        let store = dir.path().to_path_buf();
        let (result, opened) = bounded(move |opened| {
            read_write_within(&store, SHORT, || {
                opened();
                Ok(())
            })
            .map(|_| ())
        });
        timed_out_at(result, READERS);
        assert!(!opened, "the store was opened for writing during a read-only open");
    }

    #[test]
    fn a_reader_opens_once_the_writer_has_opened() {
        let dir = tempfile::tempdir().expect("temp dir");
        let readers = held(dir.path(), READERS);
        let _deletions = lock_file(dir.path(), DELETIONS).expect("lock file");
        // Set just before the writer lets go: an open that finds it unset
        // ran while the writer held the lock (no clock involved).
        let released = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let release = {
            let released = released.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                released.store(true, std::sync::atomic::Ordering::SeqCst);
                readers.unlock().expect("unlock");
                readers
            })
        };
        let store = dir.path().to_path_buf();
        let early = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (seen, noted) = (released.clone(), early.clone());
        let (result, opened) = bounded(move |opened| {
            read_only_within(&store, Duration::from_secs(5), || {
                if !seen.load(std::sync::atomic::Ordering::SeqCst) {
                    noted.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                opened();
                Ok(())
            })
        });
        result.expect("the open waits, then runs");
        assert!(opened, "the open did not run");
        assert!(
            !early.load(std::sync::atomic::Ordering::SeqCst),
            "opened while the writer held the lock"
        );
        // The reader let go of both: a writer can take them again.
        let readers = release.join().expect("release thread");
        readers.try_lock().expect("the reader let the readers' lock go");
        lock_file(dir.path(), DELETIONS)
            .expect("lock file")
            .try_lock()
            .expect("the reader let the deletions lock go");
    }
}
