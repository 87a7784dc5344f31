//! The benchmark's ledger without a tree (`Ledger::create_without_tree`,
//! feature `bench-tree-off`) cannot be taken for a normal ledger: it is
//! made new, proofs and checkpoints refuse it, full verification reports
//! `tree_mismatch`, and a normal open for writing rebuilds its whole tree.

mod common;

use common::*;
use ledger::merkle::{self, TreeHash, leaf_data, leaf_hash, node_hash};
use ledger::{Error, FailureKind, KeyDir, Ledger, SigningKey};

fn mth(leaves: &[TreeHash]) -> TreeHash {
    match leaves.len() {
        0 => merkle::empty_root(),
        1 => leaves[0],
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

#[test]
fn a_ledger_written_without_the_tree_is_refused_for_proofs_and_rebuilt_by_a_normal_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger");
    let keys = KeyDir::new(dir.path().join("keys"));
    let l = Ledger::create_without_tree(&path, &keys, SigningKey::from_seed(KEY_A), actor("bench")).expect("create");
    l.submit(drafts(20)).expect("submit").wait().expect("append");
    l.append_blocking(draft(20)).expect("append");
    let size = l.tree_size();
    assert_eq!(size, 22);
    drop(l);
    assert!(
        matches!(
            Ledger::create_without_tree(&path, &keys, SigningKey::from_seed(KEY_A), actor("bench")),
            Err(Error::AlreadyInitialized(_))
        ),
        "only a new ledger is written without the tree"
    );

    {
        let l = Ledger::open_read_only(&path).expect("open");
        for e in [
            l.tree_root(size).expect_err("no root"),
            l.checkpoint(size, &SigningKey::from_seed(KEY_A))
                .expect_err("no checkpoint"),
            l.prove_inclusion(3, size, &SigningKey::from_seed(KEY_A))
                .expect_err("no proof"),
        ] {
            assert!(e.to_string().contains("no Merkle tree yet"), "{e}");
        }
        let report = l.verify(&ledger::VerifyOptions::default(), &|_, _| {}).expect("verify");
        let failure = report.failure.expect("no tree is a failure of full verification");
        assert_eq!((failure.kind, failure.seq), (FailureKind::TreeMismatch, 0), "{failure}");
    }
    {
        let l = Ledger::open(&path, &keys).expect("a normal open for writing rebuilds the tree");
        l.append_blocking(draft(21)).expect("append");
    }
    let l = Ledger::open_read_only(&path).expect("open");
    let leaves: Vec<TreeHash> = l
        .events(0, u64::MAX)
        .expect("events")
        .map(|e| {
            let e = e.expect("event");
            leaf_hash(&leaf_data(e.event.seq, &e.hash, &e.signature.to_bytes()))
        })
        .collect();
    assert_eq!(leaves.len(), 23);
    assert_eq!(l.tree_root(23).expect("root"), mth(&leaves));
    drop(l);
    assert!(verify(&path, None).ok());
}
