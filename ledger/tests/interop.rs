//! Interop: the checkpoints, signed notes and proofs Sealgate writes verify
//! with implementations that are not ours, the `signed_note` and
//! `tlog_tiles` crates (Cloudflare's Rust ports of Go's `sumdb/note` and
//! `sumdb/tlog`), and their Merkle tree code computes the same roots and
//! proofs from the nodes Sealgate stores.

mod common;

use common::*;
use ledger::{Ledger, SigningKey};
use signed_note::{Note, StandardVerifier, Verifier, VerifierList};
use tlog_tiles::{Checkpoint, Error as TlogError, Hash, HashReader};

fn verifiers(vkey: &str) -> VerifierList {
    let v = StandardVerifier::new(vkey).expect("signed_note reads our verifier key");
    VerifierList::new(vec![Box::new(v) as Box<dyn Verifier>])
}

/// The note opened and verified by `signed_note`, its text parsed by
/// `tlog_tiles`, and the origin checked, as a client of theirs would.
fn open_checkpoint(origin: &str, keys: &VerifierList, note: &str) -> Result<Checkpoint, String> {
    let note = Note::from_bytes(note.as_bytes()).map_err(|e| format!("note: {e}"))?;
    note.verify(keys).map_err(|e| format!("verify: {e}"))?;
    let checkpoint = Checkpoint::from_bytes(note.text()).map_err(|e| format!("checkpoint: {e}"))?;
    if checkpoint.origin() != origin {
        return Err(format!("origin {}", checkpoint.origin()));
    }
    Ok(checkpoint)
}

/// Reads the nodes Sealgate stored, by `tlog_tiles`' own storage indexes.
struct StoredNodes(rocksdb::DB);

impl HashReader for StoredNodes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        let cf = self.0.cf_handle("tree").expect("tree cf");
        indexes
            .iter()
            .map(|&i| {
                let (level, n) = tlog_tiles::split_stored_hash_index(i);
                let v = self
                    .0
                    .get_cf(cf, common::tree_key(level, n))
                    .expect("read")
                    .expect("node stored");
                Ok(Hash(v.as_slice().try_into().expect("32 bytes")))
            })
            .collect()
    }
}

#[test]
fn checkpoints_and_proofs_verify_with_signed_note_and_tlog_tiles() {
    let f = build(drafts(30), true, drafts(20));
    let l = Ledger::open_read_only(&f.path).expect("open");
    let key = SigningKey::from_seed(KEY_B);
    let origin = ledger::checkpoint::origin(&l.ledger_id());
    let vkey = ledger::checkpoint::vkey(&origin, &key.public());
    let theirs = verifiers(&vkey);
    let n = l.tree_size();
    let sizes = [1, 2, 3, 7, 8, 31, 33, n];
    for &size in &sizes {
        let note = l.checkpoint(size, &key).expect("checkpoint");
        let cp = open_checkpoint(&origin, &theirs, &note)
            .unwrap_or_else(|e| panic!("signed_note/tlog_tiles refused our checkpoint of {size}: {e}\n{note}"));
        assert_eq!(cp.size(), size);
        assert_eq!(cp.hash().0, l.tree_root(size).expect("root"));
        for seq in [0, size / 2, size - 1] {
            let proof = l.prove_inclusion(seq, size, &key).expect("prove");
            let leaf = tlog_tiles::record_hash(&proof.leaf_data);
            let path: Vec<Hash> = proof.hashes.iter().map(|h| Hash(*h)).collect();
            tlog_tiles::check_record(&path, size, *cp.hash(), seq, leaf)
                .unwrap_or_else(|e| panic!("tlog_tiles refused our proof of {seq} in {size}: {e}"));
        }
        for &old in sizes.iter().filter(|&&o| o < size) {
            let proof = l.consistency_proof(old, size).expect("prove");
            let path: Vec<Hash> = proof.iter().map(|h| Hash(*h)).collect();
            let old_root = Hash(l.tree_root(old).expect("root"));
            tlog_tiles::check_tree(&path, size, *cp.hash(), old, old_root)
                .unwrap_or_else(|e| panic!("tlog_tiles refused our consistency proof {old} -> {size}: {e}"));
        }
    }

    // Their verifier refuses what ours refuses: a changed size, another
    // origin, a retired key's signature (to them, a key they do not hold).
    let note = l.checkpoint(n, &key).expect("checkpoint");
    let changed = note.replacen(&format!("\n{n}\n"), &format!("\n{}\n", n - 1), 1);
    assert!(open_checkpoint(&origin, &theirs, &changed).is_err());
    assert!(open_checkpoint("sealgate/ledger/other", &theirs, &note).is_err());
    let by_a = ledger::Checkpoint {
        origin: origin.clone(),
        size: n,
        root: l.tree_root(n).expect("root"),
    }
    .sign(&SigningKey::from_seed(KEY_A));
    assert!(open_checkpoint(&origin, &theirs, &by_a).is_err());

    // Their tree code, reading the nodes we stored by their own storage
    // layout, computes our roots and our inclusion proofs.
    drop(l);
    let l = Ledger::open_read_only(&f.path).expect("open");
    let db = rocksdb::DB::open_cf_for_read_only(
        &rocksdb::Options::default(),
        &f.path,
        ["events", "time", "meta", "tree"],
        false,
    )
    .expect("open the store");
    let stored = StoredNodes(db);
    for &size in &sizes {
        let root = tlog_tiles::tree_hash(size, &stored).expect("their tree hash");
        assert_eq!(root.0, l.tree_root(size).expect("root"), "root of {size}");
        for seq in [0, size - 1] {
            let theirs = tlog_tiles::prove_record(size, seq, &stored).expect("their proof");
            let ours = l.inclusion_proof(seq, size).expect("our proof");
            assert_eq!(
                theirs.iter().map(|h| h.0).collect::<Vec<_>>(),
                ours,
                "proof of {seq} in {size}"
            );
        }
    }
}
