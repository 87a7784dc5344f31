//! The acknowledged mark: a small file in the ledger directory,
//! `SEALGATE-ACKED`, that holds the newest head the writer has acknowledged.
//!
//! RocksDB replays its WAL up to the first damaged record and drops the
//! rest without a word (point-in-time recovery, which reused WAL files
//! need): one flipped bit in the middle of a WAL would make a log that ends
//! early but verifies, and a writer would go on appending over the events
//! it lost. The mark is what tells. The writer rewrites it in place after
//! every sync, once the callers have their answers, with no sync of its own
//! (a crash of the process keeps it; power loss can only leave an older
//! one), so it is never ahead of what is durable, and a mark ahead of the
//! log, or naming a different event, means acknowledged events are gone.
//!
//! It is not signed, and someone who can edit the disk can delete it; it
//! guards against damage and silent truncation, not against that. A pinned
//! head (`sealgate verify --head`) is what anchors a log against them.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::event::Hash;
use crate::failure::FailureKind;

/// The head as the store encodes it (`seq ‖ hash ‖ ts`, big-endian), which
/// is what the mark holds; the store turns it into its `Head`.
pub(crate) type HeadBytes = [u8; 48];

pub(crate) const FILE_NAME: &str = "SEALGATE-ACKED";

const DOMAIN: &[u8] = b"sealgate acked head v1";
const LEN: usize = 56;

fn check(head: &[u8; 48]) -> [u8; 8] {
    let mut h = blake3::Hasher::new();
    h.update(DOMAIN);
    h.update(head);
    let mut out = [0u8; 8];
    out.copy_from_slice(&h.finalize().as_bytes()[..8]);
    out
}

fn encode(head: &HeadBytes) -> [u8; LEN] {
    let mut out = [0u8; LEN];
    out[..48].copy_from_slice(head);
    out[48..].copy_from_slice(&check(head));
    out
}

fn decode(bytes: &[u8]) -> Result<HeadBytes, String> {
    let body: HeadBytes = bytes
        .get(..48)
        .and_then(|b| b.try_into().ok())
        .filter(|_| bytes.len() == LEN)
        .ok_or_else(|| format!("{} bytes, expected {LEN}", bytes.len()))?;
    if bytes[48..] != check(&body) {
        return Err("its checksum does not match".into());
    }
    Ok(body)
}

pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// The mark as it is on disk: `None` when there is none (a ledger no
/// writer has opened since marks were introduced), `Some(Err)` when it
/// cannot be read back (a torn write after power loss, or an edit).
pub(crate) fn read(dir: &Path) -> Option<Result<HeadBytes, String>> {
    match std::fs::read(path(dir)) {
        Ok(bytes) => Some(decode(&bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => Some(Err(format!("cannot be read: {e}"))),
    }
}

/// The writer's handle on the mark.
pub(crate) struct Mark {
    file: File,
    path: PathBuf,
}

impl Mark {
    /// Opens (or makes) the mark and records `head` in it.
    pub(crate) fn open(dir: &Path, head: &HeadBytes) -> std::io::Result<Mark> {
        let path = path(dir);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        file.set_len(LEN as u64)?;
        let mark = Mark { file, path };
        mark.file.write_all_at(&encode(head), 0)?;
        Ok(mark)
    }

    /// Records a head that is durable and acknowledged. A failure is
    /// logged, not returned: the mark is a check on the log, and the event
    /// it would name is already durable.
    pub(crate) fn record(&self, head: &HeadBytes) {
        if let Err(e) = self.file.write_all_at(&encode(head), 0) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot update the acknowledged mark");
        }
    }
}

/// How the mark, naming event `seq` with `hash`, compares with the log,
/// whose last stored event is `last` and whose event at `seq`, if stored,
/// hashes to `hash_at_mark`. `None` when they agree.
pub(crate) fn disagreement(
    (seq, hash): (u64, Hash),
    last: Option<u64>,
    hash_at_mark: Option<Hash>,
) -> Option<(u64, FailureKind, String)> {
    match (last, hash_at_mark) {
        (Some(last), _) if seq > last => Some((
            last + 1,
            FailureKind::Truncated,
            format!(
                "the writer acknowledged events up to seq {seq} ({}, recorded in {FILE_NAME}), but the log ends at seq {last}: \
                 acknowledged events are missing (RocksDB drops the rest of a WAL after a damaged record)",
                hash.short()
            ),
        )),
        (None, _) => Some((
            0,
            FailureKind::Truncated,
            format!("the writer acknowledged events up to seq {seq} but the log holds none"),
        )),
        (Some(_), Some(found)) if found != hash => Some((
            seq,
            FailureKind::HeadMismatch,
            format!(
                "{FILE_NAME} says the acknowledged event at seq {seq} is {}, but the log's event there hashes to {}",
                hash.short(),
                found.short()
            ),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let head: HeadBytes = std::array::from_fn(|i| i as u8);
        let bytes = encode(&head);
        assert_eq!(decode(&bytes), Ok(head));
        for at in 0..LEN {
            let mut changed = bytes;
            changed[at] ^= 0x10;
            assert!(decode(&changed).is_err(), "byte {at}");
        }
        assert!(decode(&bytes[..50]).is_err());
    }
}
