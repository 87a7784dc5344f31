//! Many concurrent appenders, blocking and async: every append gets its own
//! dense sequence number and the log verifies.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::*;
use ledger::{Ledger, SigningKey};

#[test]
fn concurrent_blocking_appends_are_dense_and_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger");
    let keys = ledger::KeyDir::new(dir.path().join("keys"));
    let ledger = Ledger::create(&path, &keys, SigningKey::from_seed(KEY_A), actor("init")).expect("create");
    let seqs: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..32)
            .map(|t| {
                let ledger = &ledger;
                s.spawn(move || {
                    (0..40)
                        .map(|i| ledger.append_blocking(draft(t * 1000 + i)).expect("append").seq)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("thread")).collect()
    });
    let unique: BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(unique.len(), 32 * 40);
    assert_eq!(
        unique.iter().copied().collect::<Vec<_>>(),
        (1..=32 * 40).collect::<Vec<u64>>()
    );
    // Every acknowledged event was made durable by exactly one counted sync,
    // whichever path committed it; with 32 appenders, syncs were shared.
    let stats = ledger.commit_stats();
    assert_eq!(stats.events, 32 * 40, "{stats:?}");
    assert!(stats.syncs >= 1 && stats.syncs < stats.events, "{stats:?}");
    assert!(stats.sync_nanos > 0, "{stats:?}");
    drop(ledger);
    let report = verify(&path, None);
    assert!(report.ok(), "{:?}", report.failure);
    let read_only = Ledger::open_read_only(&path).expect("open read-only");
    assert_eq!(read_only.commit_stats(), ledger::CommitStats::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_async_appends_are_dense_and_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger");
    let keys = ledger::KeyDir::new(dir.path().join("keys"));
    let ledger = Arc::new(Ledger::create(&path, &keys, SigningKey::from_seed(KEY_A), actor("init")).expect("create"));
    let mut tasks = Vec::new();
    for t in 0..64 {
        let ledger = ledger.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..10 {
                out.push(ledger.append(draft(t * 1000 + i)).await.expect("append").seq);
            }
            out
        }));
    }
    let mut seqs = BTreeSet::new();
    for t in tasks {
        seqs.extend(t.await.expect("task"));
    }
    assert_eq!(
        seqs.iter().copied().collect::<Vec<_>>(),
        (1..=640).collect::<Vec<u64>>()
    );
    let ledger = Arc::try_unwrap(ledger).unwrap_or_else(|_| panic!("ledger still shared"));
    tokio::task::spawn_blocking(move || drop(ledger)).await.expect("close");
    let report = verify(&path, None);
    assert!(report.ok(), "{:?}", report.failure);
}
