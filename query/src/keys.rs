//! A segment's key index (`<segment>.keys`): which seqs hold which value of
//! each key column ([`crate::row::KEY_COLUMNS`]), so that a point lookup
//! reads two small blocks of each segment's file instead of the segment.
//!
//! Layout (integers little-endian): `SGKEYS01`; `n` (u64): entries;
//! `f` (u64): fences; `f` fences (u64): the key of every [`FENCE`]th entry;
//! `n` entries of (key u64, seq u64), sorted. A key is the first 8 bytes of
//! BLAKE3(column, 0, value): two values may share one, so a lookup's seqs
//! are candidates, checked against their events (which the table reads
//! from the log anyway). Like every derived file it is never trusted: an
//! edited one can only make the store's answer miss or add candidates,
//! which `--verify` (answering from the log without key indexes) catches.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::Error;
use crate::row::{self, KEY_COLUMNS, Row};

const MAGIC: &[u8; 8] = b"SGKEYS01";
/// Entries per fence: a lookup reads one block of this many entries.
pub const FENCE: usize = 256;
const HEADER: u64 = 24;

/// The key of `value` in `column`.
pub fn key(column: &str, value: &str) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(column.as_bytes());
    h.update(&[0]);
    h.update(value.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.finalize().as_bytes()[..8]);
    u64::from_le_bytes(first)
}

/// The key index of `rows`, as the file's bytes.
pub fn encode(rows: &[Row]) -> Vec<u8> {
    let mut entries: Vec<(u64, u64)> = Vec::new();
    for column in KEY_COLUMNS {
        for r in rows {
            if let Some(v) = row::key_of(r, column) {
                entries.push((key(column, v), r.seq));
            }
        }
    }
    entries.sort_unstable();
    let fences: Vec<u64> = entries.iter().step_by(FENCE).map(|e| e.0).collect();
    let mut out = Vec::with_capacity(HEADER as usize + fences.len() * 8 + entries.len() * 16);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    out.extend_from_slice(&(fences.len() as u64).to_le_bytes());
    for f in &fences {
        out.extend_from_slice(&f.to_le_bytes());
    }
    for (k, seq) in &entries {
        out.extend_from_slice(&k.to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
    }
    out
}

fn corrupt(path: &Path, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn u64_at(bytes: &[u8], i: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
    u64::from_le_bytes(b)
}

/// The seqs the index at `path` names for `value` in `column` (candidates:
/// see the module's note), in order.
pub fn lookup(path: &Path, column: &str, value: &str) -> Result<Vec<u64>, Error> {
    let file = File::open(path).map_err(|e| Error::io("cannot open key index", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io("cannot read key index", path, e))?
        .len();
    let mut header = [0u8; HEADER as usize];
    file.read_exact_at(&mut header, 0)
        .map_err(|_| corrupt(path, "shorter than its header"))?;
    if &header[..8] != MAGIC {
        return Err(corrupt(path, "not a key index (bad magic)"));
    }
    let n = u64_at(&header, 1);
    let f = u64_at(&header, 2);
    let expected = n
        .checked_mul(16)
        .and_then(|e| f.checked_mul(8).and_then(|x| x.checked_add(e)))
        .and_then(|x| x.checked_add(HEADER));
    if expected != Some(len) || f != n.div_ceil(FENCE as u64) {
        return Err(corrupt(
            path,
            format!("{len} bytes do not hold {n} entries and {f} fences"),
        ));
    }
    let mut fences = vec![0u8; (f * 8) as usize];
    file.read_exact_at(&mut fences, HEADER)
        .map_err(|e| Error::io("cannot read key index", path, e))?;
    let fence = |i: usize| u64_at(&fences, i);
    let k = key(column, value);
    // Blocks [start, end) can hold k: those whose first key is <= k, from
    // the last one starting below k (equal keys may begin in it).
    let (mut lo, mut hi) = (0usize, f as usize);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if fence(mid) < k { lo = mid + 1 } else { hi = mid }
    }
    let start = lo.saturating_sub(1);
    let (mut lo2, mut hi2) = (lo, f as usize);
    while lo2 < hi2 {
        let mid = (lo2 + hi2) / 2;
        if fence(mid) <= k { lo2 = mid + 1 } else { hi2 = mid }
    }
    let end = lo2.max(start + 1).min(f as usize);
    if start >= end {
        return Ok(Vec::new());
    }
    let first = start * FENCE;
    let last = (end * FENCE).min(n as usize);
    let mut block = vec![0u8; (last - first) * 16];
    file.read_exact_at(&mut block, HEADER + f * 8 + first as u64 * 16)
        .map_err(|e| Error::io("cannot read key index", path, e))?;
    let mut seqs: Vec<u64> = (0..last - first)
        .filter(|i| u64_at(&block, 2 * i) == k)
        .map(|i| u64_at(&block, 2 * i + 1))
        .collect();
    seqs.sort_unstable();
    Ok(seqs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: u64, call: &str) -> Row {
        Row {
            seq,
            hash: format!("{seq:064x}"),
            call_id: Some(call.to_string()),
            ..Row::default()
        }
    }

    #[test]
    fn every_value_is_found_at_every_block_boundary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.keys");
        // Many rows per call id, so that equal keys cross blocks.
        let rows: Vec<Row> = (0..3000).map(|s| row(s, &format!("c{}", s % 7))).collect();
        std::fs::write(&path, encode(&rows)).expect("write");
        for c in 0..7 {
            let want: Vec<u64> = (0..3000).filter(|s| s % 7 == c).collect();
            assert_eq!(lookup(&path, "call_id", &format!("c{c}")).expect("lookup"), want);
        }
        for s in [0u64, 255, 256, 2999] {
            assert_eq!(lookup(&path, "hash", &format!("{s:064x}")).expect("lookup"), vec![s]);
        }
        assert!(lookup(&path, "hash", "nope").expect("lookup").is_empty());
        assert!(lookup(&path, "session", "c1").expect("lookup").is_empty());
        std::fs::write(&path, &encode(&rows)[..100]).expect("truncate");
        assert!(matches!(lookup(&path, "hash", "x"), Err(Error::Corrupt { .. })));
        std::fs::write(&path, encode(&[])).expect("empty");
        assert!(lookup(&path, "hash", "x").expect("lookup").is_empty());
    }
}
