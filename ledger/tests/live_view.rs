//! Read-only opens beside a writer whose RocksDB is busy flushing,
//! compacting and reusing WAL files: every open must succeed and show a
//! whole log, never a missing table file or a gap where a reused WAL was.
//! (An auditor runs `sealgate verify` on the data dir of a running gateway;
//! a false "gap" there would be a tamper report on a sound log.)

mod common;

use common::{KEY_A, actor};
use ledger::{Draft, KeyDir, Ledger, SigningKey, StoreOptions, VerifyOptions};

/// An event with a body big enough that a 1 MiB memtable fills every
/// ~1,500 events.
fn padded(i: usize) -> Draft {
    Draft::from_json(&format!(
        r#"{{"kind":"tool_call.requested","actor":{{"principal":"p{}"}},"subject":{{"server":"s","tool":"t"}},"body":{{"i":{i},"pad":"{}"}}}}"#,
        i % 7,
        "x".repeat(400)
    ))
    .expect("draft")
}

#[test]
fn read_only_opens_see_a_whole_log_while_the_writer_flushes_and_compacts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger");
    let keys = KeyDir::new(dir.path().join("keys"));
    // A small memtable: a flush, a WAL switch (onto a reused file) and
    // often a compaction every second or so of appends.
    let tuning = StoreOptions {
        memtable_bytes: 1 << 20,
    };
    let ledger =
        Ledger::create_with(&path, &keys, SigningKey::from_seed(KEY_A), actor("init"), &tuning).expect("create");
    // Many table files first, so that an open has many to find.
    for round in 0..40 {
        let batch = (0..512).map(|i| padded(round * 512 + i)).collect();
        ledger.submit(batch).expect("submit").wait().expect("append");
    }
    let done = std::sync::atomic::AtomicBool::new(false);
    let opens = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut i = 1 << 20;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let batch = (0..64).map(|k| padded(i + k)).collect();
                ledger.submit(batch).expect("submit").wait().expect("append");
                i += 64;
            }
        });
        let opens = open_and_check(&path, 40);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().expect("writer");
        opens
    });
    if let Err(failure) = opens {
        panic!("{failure}");
    }
    let final_head = ledger.head().seq;
    drop(ledger);
    let report = common::verify(&path, None);
    assert!(report.ok(), "{:?}", report.failure);
    assert!(final_head > 40 * 512, "the writer appended while the opens ran");
}

/// Opens the ledger read-only `rounds` times and verifies the tail of each
/// view: the events a reused WAL held are the newest flushed ones, so a
/// range over the tail finds such a gap (the whole log is verified once the
/// writer has stopped).
fn open_and_check(path: &std::path::Path, rounds: usize) -> Result<(), String> {
    let mut last = 0;
    for round in 0..rounds {
        let view = Ledger::open_read_only(path).map_err(|e| format!("read-only open {round} failed: {e}"))?;
        let head = view.head().seq;
        let opts = VerifyOptions {
            from: Some(head.saturating_sub(2048)),
            ..VerifyOptions::default()
        };
        let report = view
            .verify(&opts, &|_, _| {})
            .map_err(|e| format!("open {round}: {e}"))?;
        if !report.ok() {
            return Err(format!("open {round} (head {head}): {:?}", report.failure));
        }
        if head < last {
            return Err(format!("open {round}: head {head} after {last}"));
        }
        last = head;
    }
    Ok(())
}

/// A second writer is refused at once, naming why, and the first goes on.
#[test]
fn a_second_writer_is_refused_while_one_has_the_ledger_open() {
    let common::Fresh {
        dir: _dir,
        path,
        keys,
        ledger,
    } = common::fresh();
    let Err(refused) = Ledger::open(&path, &keys) else {
        panic!("a second writer opened the ledger");
    };
    assert!(refused.to_string().contains("open for writing"), "{refused}");
    ledger
        .append_blocking(common::draft(1))
        .expect("the first writer appends");
    drop(ledger);
    drop(Ledger::open(&path, &keys).expect("a writer once the first has closed"));
    assert!(common::verify(&path, None).ok());
}
