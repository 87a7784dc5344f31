//! A system clock behind the log's last timestamp (it stepped back, or the
//! log came from a machine whose clock ran ahead) never makes timestamps go
//! backwards: events keep the last timestamp until the clock catches up,
//! and the log verifies with the default tolerance of zero.

mod common;

use common::*;
use ledger::{Ledger, SigningKey, Timestamp};

#[test]
fn appends_while_the_clock_is_behind_keep_the_last_timestamp() {
    let f = build(drafts(3), false, Vec::new());
    let key = SigningKey::from_seed(KEY_A);
    // The last event says it happened an hour from now, as if written while
    // the clock ran an hour ahead; it is signed by the log's key.
    let ahead = Timestamp::from_nanos(Timestamp::now().as_nanos() + 3_600 * 1_000_000_000);
    {
        let db = raw_db(&f.path);
        let head = ledger::SealedEvent::decode(&get_record(&db, f.head)).expect("decode");
        let mut event = head.event;
        event.ts = ahead;
        let (hash, rec) = signed_record(&event, &key);
        put_record(&db, f.head, &rec);
        set_meta_head(&db, f.head, hash, ahead.as_nanos());
        // Its time differs from its group's now: it starts a run of its own
        // in the time index, as that machine's writer would have recorded.
        let time = db.cf_handle("time").expect("time cf");
        let mut k = ahead.as_nanos().to_be_bytes().to_vec();
        k.extend_from_slice(&f.head.to_be_bytes());
        db.put_cf(time, k, []).expect("index entry");
        // And its Merkle tree is that log's.
        rewrite_tree(&db);
    }
    // The rewrite stands for a log that came from that machine, so this
    // writer's acknowledged mark (which names the event replaced) goes.
    remove_acked_mark(&f.path);
    let ledger = Ledger::open(&f.path, &f.keys).expect("open");
    let receipts = ledger
        .submit(drafts(2))
        .expect("submit")
        .wait()
        .expect("append in one group");
    let single = ledger.append_blocking(draft(9)).expect("append in a group of its own");
    for r in receipts.iter().chain([&single]) {
        assert_eq!(r.ts, ahead, "seq {} keeps the last timestamp", r.seq);
    }
    drop(ledger);
    let report = verify(&f.path, None);
    assert!(report.ok(), "{:?}", report.failure);
    assert_eq!(report.verified, f.head + 4);
}

/// The simulated time [`a_chosen_clock_dates_each_group`] hands the writer.
static SIMULATED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn simulated() -> Timestamp {
    Timestamp::from_nanos(SIMULATED.load(std::sync::atomic::Ordering::SeqCst))
}

#[test]
fn a_chosen_clock_dates_each_group_and_never_goes_backwards() {
    use std::sync::atomic::Ordering::SeqCst;
    let f = build(drafts(1), false, Vec::new());
    let day = 86_400 * 1_000_000_000u64;
    let start = Timestamp::now().as_nanos() + 30 * day;
    SIMULATED.store(start, SeqCst);
    let ledger = Ledger::open_with_clock(&f.path, &f.keys, &ledger::StoreOptions::default(), simulated)
        .expect("open with a clock");
    let first = ledger.submit(drafts(2)).expect("submit").wait().expect("append");
    SIMULATED.store(start + 90 * day, SeqCst);
    let later = ledger.append_blocking(draft(7)).expect("append");
    SIMULATED.store(start + day, SeqCst);
    let earlier = ledger.append_blocking(draft(8)).expect("append");
    for r in &first {
        assert_eq!(r.ts.as_nanos(), start, "seq {}: the chosen clock's time", r.seq);
    }
    assert_eq!(later.ts.as_nanos(), start + 90 * day);
    assert_eq!(earlier.ts, later.ts, "a clock stepping back keeps the last time");
    drop(ledger);
    let report = verify(&f.path, None);
    assert!(report.ok(), "{:?}", report.failure);
}
