//! A failed write or sync poisons the writer: the appends in that group and
//! every later one fail with an error that says so, nothing unacknowledged
//! is reported as written, and after a restart the log opens, verifies and
//! holds every acknowledged event.

mod common;

use common::*;
use ledger::{Error, Ledger, Receipt};

fn setup() -> (tempfile::TempDir, std::path::PathBuf, ledger::KeyDir, Vec<Receipt>) {
    let Fresh {
        dir,
        path,
        keys,
        ledger,
    } = fresh();
    let acked = (0..20)
        .map(|i| ledger.append_blocking(draft(i)).expect("append before failure"))
        .collect();
    drop(ledger);
    (dir, path, keys, acked)
}

/// Appends from 8 threads at once while the fail point is armed, each
/// queueing 8 appends before it waits: groups of up to 64 callers, so both
/// commit paths are taken (a small group synced on the writer thread, a
/// large one written unsynced and synced by the sync thread).
fn concurrent_appends(ledger: &Ledger) -> Vec<ledger::Result<Receipt>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                s.spawn(move || {
                    let pending: Vec<_> = (0..8).map(|i| ledger.submit(vec![draft(100 + t * 8 + i)])).collect();
                    pending
                        .into_iter()
                        .map(|p| {
                            let mut receipts = p?.wait()?;
                            receipts.pop().ok_or(Error::Closed)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("thread")).collect()
    })
}

fn assert_poisoned(results: &[ledger::Result<Receipt>], ledger: &Ledger, acked: &[Receipt]) {
    // Nothing of a failed group is published: readers stop at the last
    // acknowledged event, even if the failed group's bytes reached the WAL.
    assert_eq!(
        ledger.head().seq,
        acked.last().expect("acked").seq,
        "the head must not move past the last acknowledged event"
    );
    assert!(
        results.iter().all(|r| r.is_err()),
        "no append may succeed while writes fail: {results:?}"
    );
    assert!(
        results.iter().any(|r| matches!(r, Err(Error::WriteFailed(_)))),
        "the group that hit the failure reports it: {results:?}"
    );
    for r in results {
        match r {
            Err(Error::WriteFailed(m)) => assert!(m.contains("injected"), "{m}"),
            Err(Error::Poisoned(_)) => {}
            other => panic!("unexpected result {other:?}"),
        }
    }
    // The failure is over, but the writer stays poisoned until restart.
    fail::remove("ledger::after_write");
    fail::remove("ledger::before_write");
    let err = ledger.append_blocking(draft(999)).expect_err("poisoned");
    assert!(matches!(err, Error::Poisoned(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("poisoned") && msg.contains("restart"), "{msg}");
}

fn assert_recovers(path: &std::path::Path, keys: &ledger::KeyDir, acked: &[Receipt]) -> u64 {
    let ledger = Ledger::open(path, keys).expect("reopen after the failure");
    for r in acked {
        let e = ledger.get(r.seq).expect("read").expect("acknowledged event present");
        assert_eq!(e.hash, r.hash, "seq {}", r.seq);
    }
    let head = ledger.head().seq;
    // Writing works again after the restart.
    let next = ledger.append_blocking(draft(1000)).expect("append after restart");
    assert_eq!(next.seq, head + 1);
    drop(ledger);
    let report = verify(path, None);
    assert!(report.ok(), "{:?}", report.failure);
    head
}

#[test]
fn a_failed_sync_poisons_the_writer_and_loses_nothing_acknowledged() {
    let scenario = fail::FailScenario::setup();
    let (_dir, path, keys, acked) = setup();
    let ledger = Ledger::open(&path, &keys).expect("open");
    fail::cfg("ledger::after_write", "return(injected sync failure: EIO)").expect("arm fail point");
    let results = concurrent_appends(&ledger);
    assert_poisoned(&results, &ledger, &acked);
    drop(ledger);
    scenario.teardown();
    // The failed group's bytes reached the WAL before the "sync" failed, so
    // it may survive the restart: it was never acknowledged, and if it is
    // there it verifies like any other event.
    let head = assert_recovers(&path, &keys, &acked);
    assert!(head >= acked.last().expect("acked").seq);
}

#[test]
fn a_failed_write_poisons_the_writer_and_writes_nothing() {
    let scenario = fail::FailScenario::setup();
    let (_dir, path, keys, acked) = setup();
    let ledger = Ledger::open(&path, &keys).expect("open");
    fail::cfg("ledger::before_write", "return(injected write failure: ENOSPC)").expect("arm fail point");
    let results = concurrent_appends(&ledger);
    assert_poisoned(&results, &ledger, &acked);
    drop(ledger);
    scenario.teardown();
    let head = assert_recovers(&path, &keys, &acked);
    assert_eq!(
        head,
        acked.last().expect("acked").seq,
        "nothing of the failed writes may appear"
    );
}
