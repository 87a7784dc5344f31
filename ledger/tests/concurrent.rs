//! Many concurrent appenders, blocking and async: every append gets its own
//! dense sequence number and the log verifies.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::*;
use ledger::Ledger;

#[test]
fn concurrent_blocking_appends_are_dense_and_verify() {
    let Fresh {
        dir: _dir,
        path,
        ledger,
        ..
    } = fresh();
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
    let Fresh {
        dir: _dir,
        path,
        ledger,
        ..
    } = fresh();
    let ledger = Arc::new(ledger);
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

/// Async callers' acknowledgements go through a task on their runtime when
/// several come at once. One ledger outliving the runtimes that used it:
/// every runtime's appends are answered, a runtime that comes later gets
/// its own, and blocking callers in between are answered directly.
#[test]
fn appends_from_runtimes_that_come_and_go_are_all_answered() {
    let Fresh {
        dir: _dir,
        path,
        ledger,
        ..
    } = fresh();
    let ledger = Arc::new(ledger);
    let burst = |rt: &tokio::runtime::Runtime, tasks: usize| -> Vec<u64> {
        rt.block_on(async {
            let handles: Vec<_> = (0..tasks)
                .map(|t| {
                    let ledger = ledger.clone();
                    tokio::spawn(async move {
                        let mut seqs = Vec::new();
                        for i in 0..5 {
                            seqs.push(ledger.append(draft(t * 100 + i)).await.expect("append").seq);
                        }
                        seqs
                    })
                })
                .collect();
            let mut seqs = Vec::new();
            for h in handles {
                seqs.extend(h.await.expect("task"));
            }
            seqs
        })
    };
    let mut seqs = BTreeSet::new();
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    seqs.extend(burst(&multi, 48));
    drop(multi);
    seqs.extend((0..20).map(|i| ledger.append_blocking(draft(9000 + i)).expect("append").seq));
    let current = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    seqs.extend(burst(&current, 32));
    drop(current);
    let total = 48 * 5 + 20 + 32 * 5;
    assert_eq!(
        seqs.iter().copied().collect::<Vec<_>>(),
        (1..=total as u64).collect::<Vec<u64>>()
    );
    drop(ledger);
    let report = verify(&path, None);
    assert!(report.ok(), "{:?}", report.failure);
}

/// An append submitted from a runtime but waited for elsewhere is answered
/// directly, so it arrives even while that runtime's only thread is blocked.
#[test]
fn a_submission_waited_for_off_its_runtime_is_answered_while_the_runtime_blocks() {
    let Fresh { dir: _dir, ledger, .. } = fresh();
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let seqs = rt.block_on(async {
        // An async append first, so that this runtime has a pump.
        ledger.append(draft(0)).await.expect("append");
        let mut pending = Vec::new();
        for i in 1..=16 {
            pending.push(ledger.submit_async(vec![draft(i)]).await.expect("submit"));
        }
        // Blocks the runtime's only thread until every answer is in (or,
        // if they were held for this runtime, for a minute, then fails).
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let seqs: Vec<u64> = pending
                .into_iter()
                .flat_map(|p| p.wait().expect("append"))
                .map(|r| r.seq)
                .collect();
            let _ = tx.send(seqs);
        });
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("the answers did not arrive while the runtime was blocked")
    });
    assert_eq!(seqs, (2..=17).collect::<Vec<u64>>());
}

/// Verification runs on read-only opens beside a live writer in the same
/// process, and each sees a consistent log (events, time index, head) while
/// appends go on; the writing handle itself refuses to verify.
#[test]
fn read_only_opens_verify_beside_a_live_writer() {
    let Fresh {
        dir: _dir,
        path,
        ledger,
        ..
    } = fresh();
    let refused = ledger
        .verify(&ledger::VerifyOptions::default(), &|_, _| {})
        .expect_err("the writing handle does not verify");
    assert!(refused.to_string().contains("read-only open"), "{refused}");
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let writers: Vec<_> = (0..4)
            .map(|t| {
                let (ledger, done) = (&ledger, &done);
                s.spawn(move || {
                    let mut i = 0;
                    while !done.load(std::sync::atomic::Ordering::Relaxed) {
                        ledger.append_blocking(draft(t * 100_000 + i)).expect("append");
                        i += 1;
                    }
                })
            })
            .collect();
        let mut seen = 0;
        for _ in 0..10 {
            let reader = Ledger::open_read_only(&path).expect("open read-only");
            let report = reader
                .verify(&ledger::VerifyOptions::default(), &|_, _| {})
                .expect("verify");
            assert!(report.ok(), "{:?}", report.failure);
            assert!(report.verified >= seen, "{} after {seen}", report.verified);
            seen = report.verified;
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        writers.into_iter().for_each(|w| w.join().expect("writer"));
        assert!(seen > 1, "appends were going on");
    });
}
