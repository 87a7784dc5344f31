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
//!   its open has returned. The writer's `ledger-views` thread tries to
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

/// After how long of readers holding deletions back the writer warns.
const HELD_WARNING: Duration = Duration::from_secs(60);

fn lock_path(store: &Path, name: &str) -> PathBuf {
    store.join(name)
}

/// Runs a read-only `open` of the store while the writer, if one is live,
/// has its file deletions paused.
pub(crate) fn read_only<T>(store: &Path, open: impl FnOnce() -> Result<T>) -> Result<T> {
    // No lock file: no writer of this build has opened the store, so none
    // is running that the lock would hold back.
    let Some(readers) = existing(store, READERS)? else {
        return open();
    };
    readers
        .lock_shared()
        .map_err(|e| Error::io("cannot lock the readers' lock", &lock_path(store, READERS), e))?;
    let deletions_path = lock_path(store, DELETIONS);
    let deletions = existing(store, DELETIONS)?;
    if let Some(deletions) = &deletions {
        let asked = Instant::now();
        loop {
            match deletions.try_lock_shared() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if asked.elapsed() < READER_PATIENCE => std::thread::sleep(POLL / 4),
                Err(TryLockError::WouldBlock) => {
                    return Err(Error::io(
                        "the writer that holds it did not pause its file deletions for this read-only open",
                        &deletions_path,
                        std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("waited {} s", READER_PATIENCE.as_secs()),
                        ),
                    ));
                }
                Err(TryLockError::Error(e)) => {
                    return Err(Error::io("cannot lock the deletions lock", &deletions_path, e));
                }
            }
        }
    }
    let opened = open();
    // Deletions first: a writer takes it back only once no reader holds
    // the readers' lock.
    drop(deletions);
    drop(readers);
    opened
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
    let readers = lock_file(store, READERS)?;
    let deletions = lock_file(store, DELETIONS)?;
    readers
        .lock()
        .map_err(|e| Error::io("cannot lock the readers' lock", &lock_path(store, READERS), e))?;
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
