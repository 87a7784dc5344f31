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
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let done = AtomicBool::new(false);
    // The writer appends up to a budget of batches, which each round
    // raises by about two memtables' worth: the log, which every view
    // verifies and reads whole, stays small, and every view has appends,
    // flushes and WAL switches beside it.
    let budget = AtomicUsize::new(0);
    let opens = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut batches = 0;
            while !done.load(Ordering::Relaxed) {
                if batches >= budget.load(Ordering::Relaxed) {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    continue;
                }
                let i = (1 << 20) + batches * 64;
                let batch = (0..64).map(|k| padded(i + k)).collect();
                ledger.submit(batch).expect("submit").wait().expect("append");
                batches += 1;
            }
        });
        let opens = open_and_check(&path, 10, &|| {
            budget.fetch_add(48, Ordering::Relaxed);
        });
        done.store(true, Ordering::Relaxed);
        writer.join().expect("writer");
        opens
    });
    let changed_while_open = opens.unwrap_or_else(|failure| panic!("{failure}"));
    eprintln!("the store's files changed while {changed_while_open} of 10 views were open");
    // The opens must have met what they are about: flushes or WAL switches
    // while they were open (at least three views: the first may meet only
    // the compaction that follows the appends made before the opens).
    assert!(
        changed_while_open >= 3,
        "a flush or WAL switch happened while only {changed_while_open} of 10 read-only views were open"
    );
    let final_head = ledger.head().seq;
    drop(ledger);
    let report = common::verify(&path, None);
    assert!(report.ok(), "{:?}", report.failure);
    assert!(final_head > 40 * 512, "the writer appended while the opens ran");
}

/// RocksDB's table files (`*.sst`) and WAL files (`*.log`) in the store, by
/// name: a new table file is a flush (or a compaction), a new WAL name a
/// switch, onto a reused (renamed) file once some were flushed.
fn store_files(path: &std::path::Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(path)
        .expect("ledger dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sst") || n.ends_with(".log"))
        .collect()
}

/// Opens the ledger read-only `rounds` times, as `sealgate verify`, `head`
/// and `log` do, and checks each view whole: full verification passes,
/// `head_checked` gives the view's head, and reading every event from the
/// genesis shows each sequence number once, in order. `next_round` is
/// called before each open. Returns how many views had the store's files
/// change while they were open.
fn open_and_check(path: &std::path::Path, rounds: usize, next_round: &dyn Fn()) -> Result<u32, String> {
    let mut last = 0;
    let mut changed_while_open = 0;
    for round in 0..rounds {
        next_round();
        let before = store_files(path);
        let view = Ledger::open_read_only(path).map_err(|e| format!("read-only open {round} failed: {e}"))?;
        let head = view.head().seq;
        let report = view
            .verify(&VerifyOptions::default(), &|_, _| {})
            .map_err(|e| format!("open {round}: {e}"))?;
        if !report.ok() {
            return Err(format!("open {round} (head {head}): {:?}", report.failure));
        }
        if report.verified != head + 1 {
            return Err(format!(
                "open {round}: verified {} of {} events",
                report.verified,
                head + 1
            ));
        }
        let checked = view.head_checked().map_err(|e| format!("open {round}: head: {e}"))?;
        if checked.seq != head {
            return Err(format!(
                "open {round}: head_checked says {}, the view {head}",
                checked.seq
            ));
        }
        let mut expected = 0;
        for e in view.events(0, head).map_err(|e| format!("open {round}: log: {e}"))? {
            let e = e.map_err(|e| format!("open {round}: log at {expected}: {e}"))?;
            if e.event.seq != expected {
                return Err(format!(
                    "open {round}: log shows seq {} where {expected} was due",
                    e.event.seq
                ));
            }
            expected += 1;
        }
        if expected != head + 1 {
            return Err(format!("open {round}: log ended at {expected}, the head is {head}"));
        }
        drop(view);
        changed_while_open += u32::from(store_files(path) != before);
        if head < last {
            return Err(format!("open {round}: head {head} after {last}"));
        }
        last = head;
    }
    Ok(changed_while_open)
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
