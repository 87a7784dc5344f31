use std::path::PathBuf;

/// Everything that can go wrong in the ledger.
///
/// Integrity problems found while *verifying* a log are not errors of this
/// type: they are reported as a [`crate::Failure`] naming the first bad
/// sequence number, because finding them is the verifier doing its job.
///
/// A variant that wraps another error says it in its message (`cause`),
/// and does not also return it as its `source()`: error reporters that walk
/// the chain (`anyhow`'s `{:#}`) would print it twice.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller handed us an event (or part of one) that is not acceptable.
    #[error("invalid event: {0}")]
    InvalidEvent(String),

    /// A request that cannot be answered as asked (an empty range, a range
    /// starting past the log).
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// A thread the ledger needs could not be started.
    #[error("cannot start the {what} thread: {cause}")]
    Thread { what: &'static str, cause: std::io::Error },

    /// Stored bytes that could not be decoded.
    #[error("malformed record at seq {seq}: {reason}")]
    Malformed { seq: u64, reason: String },

    #[error("rocksdb error in {path}: {cause}")]
    Storage { path: PathBuf, cause: rocksdb::Error },

    #[error("{context}: {path}: {cause}")]
    Io {
        context: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },

    #[error("key file {path}: {reason}")]
    KeyFile { path: PathBuf, reason: String },

    #[error("no ledger in {0}: run `sealgate init` first")]
    NotInitialized(PathBuf),

    #[error("a ledger already exists in {0}")]
    AlreadyInitialized(PathBuf),

    /// The store disagrees with itself or lacks what every ledger has (its
    /// head, ledger id or current key in `meta`, a column family), however
    /// it was opened.
    #[error("the store in {path} is damaged: {reason}; run `sealgate verify` to locate the damage")]
    Damaged { path: PathBuf, reason: String },

    /// The directory holds something RocksDB cannot open as a database
    /// (its `CURRENT` missing): neither a ledger nor the absence of one.
    #[error("the ledger in {path} cannot be used: {reason}; nothing in it was changed")]
    Unusable { path: PathBuf, reason: String },

    /// The log on disk is not in a state the writer can safely continue from.
    #[error("refusing to open {path} for writing: {reason}; run `sealgate verify` to locate the damage")]
    Recovery { path: PathBuf, reason: String },

    /// A write or sync failed earlier; the writer refuses every later append
    /// until the process restarts and recovery has run.
    #[error("ledger writer is poisoned since an earlier write failed ({0}); nothing more is appended until restart")]
    Poisoned(String),

    /// The write or sync of the batch that held this append failed.
    #[error("append failed, nothing acknowledged: {0}; the writer is now poisoned until restart")]
    WriteFailed(String),

    /// The writer thread is gone (the ledger was closed or the thread died).
    #[error("ledger writer has shut down")]
    Closed,

    #[error("ledger is open read-only")]
    ReadOnly,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn storage(path: &std::path::Path, cause: rocksdb::Error) -> Self {
        Error::Storage {
            path: path.to_path_buf(),
            cause,
        }
    }

    pub(crate) fn io(context: &'static str, path: &std::path::Path, cause: std::io::Error) -> Self {
        Error::Io {
            context,
            path: path.to_path_buf(),
            cause,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    /// No variant's message repeats what its `source()` says.
    #[test]
    fn a_cause_is_told_once() {
        let io = || std::io::Error::other("disk on fire");
        let errors = [
            Error::Thread {
                what: "ledger writer",
                cause: io(),
            },
            Error::io("cannot write key file", std::path::Path::new("/k"), io()),
        ];
        for e in errors {
            let mut chain = vec![e.to_string()];
            let mut next = e.source();
            while let Some(cause) = next {
                chain.push(cause.to_string());
                next = cause.source();
            }
            assert_eq!(chain.join(": ").matches("disk on fire").count(), 1, "{chain:?}");
        }
    }
}
