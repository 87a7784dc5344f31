//! Range proofs on a real RocksDB directory: a run of events read from the
//! log is shown to be the tree's whole range, in place, against a signed
//! checkpoint's root; an edited run is refused.

mod common;

use common::*;
use ledger::merkle::{TreeHash, leaf_data, leaf_hash, verify_range};

fn leaf(e: &ledger::SealedEvent) -> TreeHash {
    leaf_hash(&leaf_data(e.event.seq, &e.hash, &e.signature.to_bytes()))
}

#[test]
fn a_run_of_events_is_proved_whole_against_a_checkpoint() {
    let f = fresh();
    f.ledger.submit(drafts(300)).expect("submit").wait().expect("append");
    let size = f.ledger.tree_size();
    assert_eq!(size, 301);
    let note = f.ledger.checkpoint_now(Some(size)).expect("checkpoint");
    let history = f.ledger.key_history().expect("key history");
    let checkpoint = history.verify_checkpoint(&note).expect("a signed checkpoint");
    let root = checkpoint.root;
    for (first, end) in [(0, 1), (0, 301), (17, 18), (100, 229), (250, 301), (64, 128)] {
        let events: Vec<ledger::SealedEvent> = f
            .ledger
            .events(first, end - 1)
            .expect("events")
            .map(|e| e.expect("event"))
            .collect();
        let leaves: Vec<TreeHash> = events.iter().map(leaf).collect();
        let proof = f.ledger.range_proof(first, end, size).expect("range proof");
        assert_eq!(
            verify_range(&leaves, first, size, &proof, &root),
            Ok(()),
            "[{first}, {end})"
        );
        if leaves.len() > 2 {
            // One event of the run left out, in the middle.
            let mut cut = leaves.clone();
            cut.remove(leaves.len() / 2);
            assert!(verify_range(&cut, first, size, &proof, &root).is_err());
        }
    }
    for (first, end, size) in [(5, 5, 301), (10, 302, 302), (0, 10, 400)] {
        let err = f
            .ledger
            .range_proof(first, end, size)
            .expect_err("not a range")
            .to_string();
        assert!(err.contains("range proof") || err.contains("size"), "{err}");
    }
}
