//! The time index (not signed) on a real RocksDB directory, edited as
//! someone with the disk could: the lookups readers use must still give the
//! answer the events themselves give and say when the index was wrong, and
//! a full verification must fail exactly when the index is out of step with
//! the events.

mod common;

use common::*;
use ledger::{FailureKind, Ledger, Timestamp};
use proptest::prelude::*;

/// A ledger of runs of equal timestamps: each request is one write batch,
/// whose events share a time. Returns it and every event's (seq, ts).
fn timeline(requests: &[usize]) -> (Fresh, Vec<(u64, Timestamp)>) {
    let f = fresh();
    let mut next = 0;
    for &n in requests {
        f.ledger
            .submit((next..next + n).map(draft).collect())
            .expect("submit")
            .wait()
            .expect("append");
        next += n;
    }
    let events = f
        .ledger
        .events(0, u64::MAX)
        .expect("events")
        .map(|e| e.map(|e| (e.event.seq, e.event.ts)).expect("decode"))
        .collect();
    (f, events)
}

/// [`timeline`], with the ledger closed so that its files can be edited.
fn closed_timeline(requests: &[usize]) -> (tempfile::TempDir, std::path::PathBuf, Vec<(u64, Timestamp)>) {
    let (f, events) = timeline(requests);
    let Fresh { dir, path, ledger, .. } = f;
    drop(ledger);
    (dir, path, events)
}

/// The answers, from the events alone.
fn naive_after(events: &[(u64, Timestamp)], t: Timestamp) -> Option<u64> {
    events.iter().find(|(_, ts)| *ts >= t).map(|(seq, _)| *seq)
}

fn naive_before(events: &[(u64, Timestamp)], t: Timestamp) -> Option<u64> {
    events.iter().rev().find(|(_, ts)| *ts <= t).map(|(seq, _)| *seq)
}

/// Every time at which an answer can change, and the ones either side.
fn probes(events: &[(u64, Timestamp)]) -> Vec<Timestamp> {
    let mut out = vec![Timestamp::EPOCH, Timestamp::from_nanos(u64::MAX)];
    for (_, ts) in events {
        let n = ts.as_nanos();
        out.extend([n - 1, n, n + 1].map(Timestamp::from_nanos));
    }
    out.sort();
    out.dedup();
    out
}

fn time_key(ts: u64, seq: u64) -> Vec<u8> {
    let mut k = ts.to_be_bytes().to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Checks every probe: the checked lookups give the events' answer, and
/// report damage exactly when the index alone would have answered wrongly.
/// Returns how many answers the index alone got wrong.
fn check_all(l: &Ledger, events: &[(u64, Timestamp)]) -> Result<usize, TestCaseError> {
    let mut wrong = 0;
    for t in probes(events) {
        let after = l.locate_at_or_after(t).expect("locate after");
        prop_assert_eq!(after.seq, naive_after(events, t), "at or after {}", t);
        let by_index = l.first_seq_at_or_after(t).ok();
        let index_right = by_index == Some(naive_after(events, t));
        prop_assert_eq!(
            after.index_damage.is_none(),
            index_right,
            "at or after {}: index said {:?}, damage {:?}",
            t,
            by_index,
            after.index_damage
        );
        wrong += usize::from(!index_right);
        if let Some(damage) = &after.index_damage {
            prop_assert_eq!(damage.kind, FailureKind::RangeMismatch);
        }

        let before = l.locate_at_or_before(t).expect("locate before");
        prop_assert_eq!(before.seq, naive_before(events, t), "at or before {}", t);
        // (One way round only: an entry past the log's end is damage, yet
        // the index alone still lands on the last event by chance.)
        let by_index = l.last_seq_at_or_before(t).ok();
        let index_right = by_index == Some(naive_before(events, t));
        prop_assert!(
            index_right || before.index_damage.is_some(),
            "at or before {}: the index said {:?} and no damage was reported",
            t,
            by_index
        );
        wrong += usize::from(!index_right);
    }
    Ok(wrong)
}

#[test]
fn an_intact_index_is_taken_as_it_is() -> Result<(), TestCaseError> {
    let (f, events) = timeline(&[1, 3, 1, 1, 5, 2, 1]);
    assert_eq!(events.len(), 15, "genesis and 14 events");
    let wrong = check_all(&f.ledger, &events)?;
    assert_eq!(wrong, 0);
    Ok(())
}

#[derive(Clone, Debug)]
enum Edit {
    /// Delete the i-th entry of the index (modulo its length).
    Delete(usize),
    /// Add an entry at the time of probe `i` naming `seq` (possibly past
    /// the log).
    Forge { at: usize, seq: u64 },
    /// Move the i-th entry by `by` nanoseconds.
    Shift { entry: usize, by: i64 },
    /// Add a key that is not 16 bytes long, at the time of probe `at`.
    Garbage { at: usize, len: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), 0u64..24).prop_map(|(at, seq)| Edit::Forge { at, seq }),
        (any::<usize>(), -3i64..=3).prop_map(|(entry, by)| Edit::Shift { entry, by }),
        (any::<usize>(), prop_oneof![0usize..16, 17usize..24]).prop_map(|(at, len)| Edit::Garbage { at, len }),
    ]
}

/// Makes `edits` to the time index of the ledger at `path`; `times` are
/// the times forged entries are put at.
fn apply(path: &std::path::Path, edits: &[Edit], times: &[Timestamp]) {
    let db = raw_db(path);
    let cf = db.cf_handle("time").expect("time cf");
    for e in edits {
        let entries = index_keys(&db);
        let pick = |i: usize| &entries[i % entries.len()];
        match *e {
            Edit::Delete(i) if !entries.is_empty() => db.delete_cf(cf, pick(i)).expect("delete"),
            Edit::Forge { at, seq } => {
                let ts = times[at % times.len()].as_nanos();
                db.put_cf(cf, time_key(ts, seq), []).expect("put");
            }
            Edit::Shift { entry, by } if !entries.is_empty() && pick(entry).len() == 16 => {
                let k = pick(entry);
                let ts = u64::from_be_bytes(k[..8].try_into().expect("8 bytes"));
                let seq = u64::from_be_bytes(k[8..16].try_into().expect("8 bytes"));
                db.delete_cf(cf, k).expect("delete");
                db.put_cf(cf, time_key(ts.saturating_add_signed(by), seq), [])
                    .expect("put");
            }
            Edit::Garbage { at, len } => {
                let mut k = times[at % times.len()].as_nanos().to_be_bytes().to_vec();
                k.resize(len, 0xee);
                db.put_cf(cf, k, []).expect("put");
            }
            Edit::Delete(_) | Edit::Shift { .. } => {}
        }
    }
}

/// Every key of the time index, in order.
fn index_keys(db: &rocksdb::DB) -> Vec<Vec<u8>> {
    let cf = db.cf_handle("time").expect("time cf");
    db.iterator_cf(cf, rocksdb::IteratorMode::Start)
        .map(|r| r.expect("read index").0.to_vec())
        .collect()
}

/// The rule of FORMAT.md §10, stated on its own: every event whose time
/// differs from its predecessor's has the entry `ts ‖ seq`, and every entry
/// is 16 bytes and names an event at its time.
fn index_in_step(keys: &[Vec<u8>], events: &[(u64, Timestamp)]) -> bool {
    let at = |seq: u64| events.iter().find(|(s, _)| *s == seq).map(|(_, ts)| ts.as_nanos());
    let entries: Option<Vec<(u64, u64)>> = keys
        .iter()
        .map(|k| {
            (k.len() == 16).then(|| {
                (
                    u64::from_be_bytes(k[..8].try_into().expect("8 bytes")),
                    u64::from_be_bytes(k[8..].try_into().expect("8 bytes")),
                )
            })
        })
        .collect();
    let Some(entries) = entries else { return false };
    let named_right = entries.iter().all(|&(ts, seq)| at(seq) == Some(ts));
    let starts_listed = events
        .iter()
        .enumerate()
        .all(|(i, &(seq, ts))| (i > 0 && events[i - 1].1 == ts) || entries.contains(&(ts.as_nanos(), seq)));
    named_right && starts_listed
}

proptest! {
    #![proptest_config(proptest_config(24))]

    /// Whatever was done to the index, readers get the events' answer, and
    /// are told exactly when the index alone would have misled them.
    #[test]
    fn an_edited_index_never_changes_the_answer(
        requests in prop::collection::vec(1usize..4, 1..8),
        edits in prop::collection::vec(edit(), 1..5),
    ) {
        let (_dir, path, events) = closed_timeline(&requests);
        apply(&path, &edits, &probes(&events));
        let l = Ledger::open_read_only(&path).expect("open");
        check_all(&l, &events)?;
    }

    /// A full verification fails exactly when the edited index breaks the
    /// rule, and then as `time_index_mismatch`; the events themselves are
    /// intact, so it is never reported as anything else.
    #[test]
    fn full_verification_fails_exactly_when_the_index_is_out_of_step(
        requests in prop::collection::vec(1usize..4, 1..8),
        edits in prop::collection::vec(edit(), 1..5),
    ) {
        let (_dir, path, events) = closed_timeline(&requests);
        apply(&path, &edits, &probes(&events));
        let in_step = index_in_step(&index_keys(&raw_db(&path)), &events);
        let report = verify(&path, None);
        prop_assert_eq!(report.ok(), in_step, "{:?}", report.failure);
        if let Some(failure) = report.failure {
            prop_assert_eq!(failure.kind, FailureKind::TimeIndexMismatch, "{}", failure);
        }
    }
}

/// The edits an attacker makes, each found at the event it concerns: a
/// missing entry at its event, a wrong one at the seq it names.
#[test]
fn full_verification_names_the_event_of_each_index_edit() {
    let (_dir, path, events) = closed_timeline(&[1, 2, 1, 3, 1]);
    assert!(verify(&path, None).ok(), "intact");
    let ts = |seq: u64| events[seq as usize].1.as_nanos();
    assert_eq!(ts(2), ts(3), "seqs 2 and 3 were one write batch");
    // (what, entries deleted, entries put, the seq it must be found at)
    type Case = (&'static str, Vec<Vec<u8>>, Vec<Vec<u8>>, u64);
    let cases: Vec<Case> = vec![
        ("a deleted entry", vec![time_key(ts(4), 4)], vec![], 4),
        (
            "an entry for an event at another time",
            vec![],
            vec![time_key(ts(1), 5)],
            5,
        ),
        ("an entry past the log", vec![], vec![time_key(ts(8) + 5, 9)], 9),
        (
            "an entry moved later",
            vec![time_key(ts(6), 6)],
            vec![time_key(ts(6) + 1, 6)],
            6,
        ),
    ];
    for (what, delete, put, seq) in cases {
        {
            let db = raw_db(&path);
            let cf = db.cf_handle("time").expect("time cf");
            delete.iter().for_each(|k| db.delete_cf(cf, k).expect("delete"));
            put.iter().for_each(|k| db.put_cf(cf, k, []).expect("put"));
        }
        let failure = verify(&path, None)
            .failure
            .unwrap_or_else(|| panic!("{what}: not found"));
        assert_eq!(
            (failure.kind, failure.seq),
            (FailureKind::TimeIndexMismatch, seq),
            "{what}: {failure}"
        );
        {
            let db = raw_db(&path);
            let cf = db.cf_handle("time").expect("time cf");
            put.iter().for_each(|k| db.delete_cf(cf, k).expect("undo put"));
            delete.iter().for_each(|k| db.put_cf(cf, k, []).expect("undo delete"));
        }
        assert!(verify(&path, None).ok(), "{what}: undone");
    }
    // An entry that names an event at its own time is allowed, though the
    // writer adds one only where a batch starts.
    {
        let db = raw_db(&path);
        let cf = db.cf_handle("time").expect("time cf");
        db.put_cf(cf, time_key(ts(3), 3), []).expect("put");
    }
    assert!(verify(&path, None).ok(), "an extra entry at seq 3's own time");
}

/// The edit of `sealgate log`'s test (`tests/cli.rs`), seen through the
/// lookups: a deleted entry would start the range late, and is reported at
/// the event that shows it.
#[test]
fn a_deleted_entry_is_reported_at_the_event_it_hid() {
    let (_dir, path, events) = closed_timeline(&[1, 1, 1, 1, 1]);
    let (seq, ts) = events[2];
    {
        let db = raw_db(&path);
        let cf = db.cf_handle("time").expect("time cf");
        db.delete_cf(cf, time_key(ts.as_nanos(), seq)).expect("delete");
    }
    let l = Ledger::open_read_only(&path).expect("open");
    assert_eq!(
        l.first_seq_at_or_after(ts).expect("index"),
        Some(3),
        "the index alone skips seq 2"
    );
    let located = l.locate_at_or_after(ts).expect("locate");
    assert_eq!(located.seq, Some(2));
    let damage = located.index_damage.expect("damage reported");
    assert_eq!(damage.seq, 2, "{damage}");
    assert!(
        damage.detail.contains("the time index does not match the log"),
        "{damage}"
    );
}

/// A log whose time steps back (written by another tool, verified with a
/// tolerance) puts its index out of the events' order: verification with
/// the tolerance passes and does not take that for index damage; without
/// it, the step itself is the failure.
#[test]
fn a_log_that_steps_back_within_a_tolerance_is_not_index_damage() {
    let (_dir, path, events) = closed_timeline(&[1, 1, 1]);
    let key = ledger::SigningKey::from_seed(KEY_A);
    let ts1 = events[1].1.as_nanos();
    let back = ts1 - 1_000_000;
    {
        // Seq 2 a millisecond before seq 1, signed by the log's key; seq 3
        // re-linked to it; the head, the index and the Merkle tree follow,
        // as that tool's writer would have recorded them.
        let db = raw_db(&path);
        let time = db.cf_handle("time").expect("time cf");
        let mut two = ledger::SealedEvent::decode(&get_record(&db, 2)).expect("decode").event;
        db.delete_cf(time, time_key(two.ts.as_nanos(), 2))
            .expect("delete entry");
        two.ts = Timestamp::from_nanos(back);
        let (hash2, rec) = signed_record(&two, &key);
        put_record(&db, 2, &rec);
        db.put_cf(time, time_key(back, 2), []).expect("put entry");
        let mut three = ledger::SealedEvent::decode(&get_record(&db, 3)).expect("decode").event;
        three.prev = hash2;
        let (hash3, rec) = signed_record(&three, &key);
        put_record(&db, 3, &rec);
        set_meta_head(&db, 3, hash3, three.ts.as_nanos());
        rewrite_tree(&db);
    }
    remove_acked_mark(&path);
    let l = Ledger::open_read_only(&path).expect("open");
    let with = |tolerance_nanos: u64| {
        l.verify(
            &ledger::VerifyOptions {
                time_tolerance_nanos: tolerance_nanos,
                ..Default::default()
            },
            &|_, _| {},
        )
        .expect("verify runs")
    };
    let strict = with(0).failure.expect("the step back fails without a tolerance");
    assert_eq!(
        (strict.kind, strict.seq),
        (FailureKind::TimeWentBackwards, 2),
        "{strict}"
    );
    let report = with(2_000_000);
    assert!(report.ok(), "{:?}", report.failure);
}
