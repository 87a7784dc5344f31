//! Damage to a RocksDB table file, shared by the ledger's tamper tests and
//! the CLI's end-to-end tests.

use std::path::{Path, PathBuf};

/// Flips one bit in the middle of the largest table file (`*.sst`) in the
/// RocksDB directory `store`, which must be over 1 MiB (the events' table,
/// not a small index one); returns the file's path.
pub fn flip_a_byte_in_the_largest_table(store: &Path) -> PathBuf {
    let table = std::fs::read_dir(store)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", store.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "sst"))
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .unwrap_or_else(|| panic!("no table file in {}", store.display()));
    let mut bytes = std::fs::read(&table).unwrap_or_else(|e| panic!("cannot read {}: {e}", table.display()));
    assert!(
        bytes.len() > 1 << 20,
        "the largest table file, {}, is only {} bytes",
        table.display(),
        bytes.len()
    );
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&table, &bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", table.display()));
    table
}
