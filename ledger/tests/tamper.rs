//! Property tests on a real RocksDB directory: any log the writer produces
//! verifies, and every kind of tampering is detected at the first bad
//! sequence number.

mod common;

use common::*;
use ledger::{FailureKind, SigningKey};
use proptest::prelude::*;

/// Splits `n` events around an optional rotation.
fn fixture(n: usize, rotate_at: Option<usize>) -> Fixture {
    match rotate_at {
        Some(r) => build(drafts(r.min(n)), true, drafts(n - r.min(n))),
        None => build(drafts(n), false, Vec::new()),
    }
}

proptest! {
    #![proptest_config(proptest_config(24))]

    #[test]
    fn any_sequence_of_appends_verifies(
        before in prop::collection::vec(any_draft(), 0..30),
        rotate in any::<bool>(),
        after in prop::collection::vec(any_draft(), 0..30),
    ) {
        let expected: Vec<_> = before.iter().chain(after.iter()).cloned().collect();
        let f = build(before, rotate, after);
        let report = verify(&f.path, None);
        prop_assert!(report.ok(), "{:?}", report.failure);
        prop_assert_eq!(report.verified, f.head + 1);
        // What was appended is what is stored, in order.
        let ledger = ledger::Ledger::open_read_only(&f.path).expect("open");
        let stored: Vec<_> = ledger
            .events(1, f.head)
            .expect("events")
            .map(|e| e.expect("decode").event)
            .filter(|e| e.kind != ledger::EventKind::KeyRotated)
            .collect();
        prop_assert_eq!(stored.len(), expected.len());
        for (s, d) in stored.iter().zip(&expected) {
            prop_assert_eq!(&s.kind, &d.kind);
            prop_assert_eq!(&s.actor, &d.actor);
            prop_assert_eq!(&s.body, &d.body);
        }
    }

    #[test]
    fn any_single_byte_change_is_detected_at_its_event(
        n in 1usize..40,
        rotate_at in prop::option::of(0usize..40),
        target in any::<prop::sample::Index>(),
        position in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let f = fixture(n, rotate_at);
        let seq = target.index(f.head as usize + 1) as u64;
        {
            let db = raw_db(&f.path);
            let mut rec = get_record(&db, seq);
            let at = position.index(rec.len());
            rec[at] ^= flip;
            put_record(&db, seq, &rec);
        }
        let report = verify(&f.path, None);
        let failure = report.failure.expect("tampering must be detected");
        prop_assert_eq!(failure.seq, seq, "{}", failure);
    }

    #[test]
    fn a_deleted_event_is_detected(n in 1usize..40, target in any::<prop::sample::Index>()) {
        let f = fixture(n, None);
        let seq = target.index(f.head as usize + 1) as u64;
        delete_record(&raw_db(&f.path), seq);
        let failure = verify(&f.path, None).failure.expect("deletion must be detected");
        prop_assert_eq!(failure.seq, seq, "{}", failure);
        let expected = if seq == f.head { FailureKind::Truncated } else { FailureKind::Gap };
        prop_assert_eq!(failure.kind, expected, "{}", failure);
    }

    #[test]
    fn a_duplicated_event_is_detected(n in 2usize..40, a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>()) {
        // Event `src` copied over event `dst` (or appended past the end).
        let f = fixture(n, None);
        let src = a.index(f.head as usize + 1) as u64;
        let dst = b.index(f.head as usize + 2) as u64;
        prop_assume!(src != dst);
        {
            let db = raw_db(&f.path);
            let rec = get_record(&db, src);
            put_record(&db, dst, &rec);
        }
        let failure = verify(&f.path, None).failure.expect("duplicate must be detected");
        prop_assert_eq!(failure.seq, dst, "{}", failure);
    }

    #[test]
    fn reordered_events_are_detected(n in 2usize..40, a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>()) {
        let f = fixture(n, None);
        let x = a.index(f.head as usize + 1) as u64;
        let y = b.index(f.head as usize + 1) as u64;
        prop_assume!(x != y);
        {
            let db = raw_db(&f.path);
            let (rx, ry) = (get_record(&db, x), get_record(&db, y));
            put_record(&db, x, &ry);
            put_record(&db, y, &rx);
        }
        let failure = verify(&f.path, None).failure.expect("reordering must be detected");
        prop_assert_eq!(failure.seq, x.min(y), "{}", failure);
    }

    #[test]
    fn a_truncated_tail_is_detected_against_a_pinned_head(n in 2usize..40, cut in any::<prop::sample::Index>()) {
        let f = fixture(n, None);
        let (pin, keep) = {
            let ledger = ledger::Ledger::open_read_only(&f.path).expect("open");
            let head = ledger.head();
            // Keep events 0..keep, with keep in 1..=head.
            let keep = 1 + cut.index(head.seq as usize) as u64;
            let new_head = ledger.get(keep - 1).expect("get").expect("exists");
            ((head.seq, head.hash), (keep, new_head))
        };
        {
            // The attacker also rewrites the head in meta and drops the cut
            // events' time-index entries, so the store looks consistent.
            let db = raw_db(&f.path);
            for seq in keep.0..=pin.0 {
                delete_record(&db, seq);
            }
            set_meta_head(&db, keep.0 - 1, keep.1.hash, keep.1.event.ts.as_nanos());
            let time = db.cf_handle("time").expect("time cf");
            let cut: Vec<Box<[u8]>> = db
                .iterator_cf(time, rocksdb::IteratorMode::Start)
                .map(|kv| kv.expect("read index").0)
                .filter(|k| k[8..] >= keep.0.to_be_bytes()[..])
                .collect();
            for k in cut {
                db.delete_cf(time, k).expect("delete index entry");
            }
            // And the Merkle tree nodes of the cut events.
            rewrite_tree(&db);
        }
        remove_acked_mark(&f.path);
        // Without the pin, the shortened log is self-consistent ...
        prop_assert!(verify(&f.path, None).ok());
        // ... with it, the truncation is found at the first missing event.
        let failure = verify(&f.path, Some(pin)).failure.expect("truncation must be detected");
        prop_assert_eq!(failure.kind, FailureKind::Truncated, "{}", failure);
        prop_assert_eq!(failure.seq, keep.0, "{}", failure);
    }

    #[test]
    fn an_event_resigned_with_a_key_not_valid_at_its_position_is_detected(
        n in 2usize..40,
        rotate_at in 0usize..40,
        target in any::<prop::sample::Index>(),
        stranger in any::<bool>(),
    ) {
        // Key A signs 0..=rotation, key B signs after it. Re-sign one event with
        // the other key (both are genuine keys of this log) or with a key C
        // the log never introduced.
        let f = fixture(n, Some(rotate_at));
        let rotation = f.rotation.expect("rotated");
        let seq = target.index(f.head as usize + 1) as u64;
        let key = if stranger {
            SigningKey::from_seed(KEY_C)
        } else if seq <= rotation {
            SigningKey::from_seed(KEY_B)
        } else {
            SigningKey::from_seed(KEY_A)
        };
        resign(&raw_db(&f.path), seq, &key);
        let failure = verify(&f.path, None).failure.expect("wrong key must be detected");
        prop_assert_eq!(failure.seq, seq, "{}", failure);
        // Genesis binds its key through its body: a re-signed genesis no
        // longer matches the key it carries.
        let expected = match (seq, stranger) {
            (0, _) => FailureKind::BadGenesis,
            (_, true) => FailureKind::UnknownKey,
            (_, false) => FailureKind::KeyNotValid,
        };
        prop_assert_eq!(failure.kind, expected, "{}", failure);
    }
}

#[test]
fn pinned_head_that_was_rewritten_is_detected() {
    let f = fixture(10, Some(4));
    let pin = {
        let l = ledger::Ledger::open_read_only(&f.path).expect("open");
        (l.head().seq, l.head().hash)
    };
    // Re-sign the last event with the valid key but different content: the
    // log verifies on its own, but no longer contains the pinned head.
    {
        let db = raw_db(&f.path);
        let sealed = ledger::SealedEvent::decode(&get_record(&db, pin.0)).expect("decode");
        let mut event = sealed.event;
        event.actor.principal = Some("mallory".into());
        let (hash, rec) = signed_record(&event, &SigningKey::from_seed(KEY_B));
        put_record(&db, pin.0, &rec);
        set_meta_head(&db, pin.0, hash, event.ts.as_nanos());
        rewrite_tree(&db);
    }
    // The writer's acknowledged mark still names the replaced event ...
    let failure = verify(&f.path, None).failure.expect("the mark gives it away");
    assert_eq!(
        (failure.seq, failure.kind),
        (pin.0, FailureKind::HeadMismatch),
        "{failure}"
    );
    // ... until the attacker deletes it too.
    remove_acked_mark(&f.path);
    assert!(verify(&f.path, None).ok());
    let failure = verify(&f.path, Some(pin)).failure.expect("detected");
    assert_eq!(
        (failure.seq, failure.kind),
        (pin.0, FailureKind::HeadMismatch),
        "{failure}"
    );
}

#[test]
fn range_verification_anchors_to_the_head() {
    let f = fixture(30, Some(10));
    let l = ledger::Ledger::open_read_only(&f.path).expect("open");
    let opts = ledger::VerifyOptions {
        from: Some(12),
        to: Some(20),
        ..Default::default()
    };
    let r = l.verify(&opts, &|_, _| {}).expect("verify");
    assert!(r.ok(), "{:?}", r.failure);
    assert_eq!((r.from, r.to, r.verified, r.linked), (12, Some(20), 9, f.head - 20));
    drop(l);
    // Tampering after the range breaks the anchor even though the range
    // itself is intact.
    {
        let db = raw_db(&f.path);
        let mut rec = get_record(&db, 25);
        let last = rec.len() - 3;
        rec[last] ^= 1;
        put_record(&db, 25, &rec);
    }
    let l = ledger::Ledger::open_read_only(&f.path).expect("open");
    let r = l.verify(&opts, &|_, _| {}).expect("verify");
    assert_eq!(r.failure.expect("detected").seq, 25);
}

#[test]
fn writer_refuses_to_continue_from_a_damaged_tail() {
    let f = fixture(5, None);
    {
        let db = raw_db(&f.path);
        let mut rec = get_record(&db, f.head);
        rec[40] ^= 1; // inside the signature
        put_record(&db, f.head, &rec);
    }
    let err = ledger::Ledger::open(&f.path, &f.keys)
        .map(|_| ())
        .expect_err("must refuse");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("seq {}", f.head)) && msg.contains("refusing"),
        "{msg}"
    );
}

#[test]
fn a_pinned_head_before_the_range_is_checked() {
    let f = fixture(30, Some(5));
    let l = ledger::Ledger::open_read_only(&f.path).expect("open");
    let pinned = l.get(10).expect("get").expect("exists");
    let opts = |hash| ledger::VerifyOptions {
        from: Some(20),
        pinned_head: Some((10, hash)),
        ..Default::default()
    };
    // The right pin: events 10..=19 are linked (not signature-checked), the range verified.
    let r = l.verify(&opts(pinned.hash), &|_, _| {}).expect("verify");
    assert!(r.ok(), "{:?}", r.failure);
    assert_eq!((r.verified, r.linked), (f.head - 19, 10));
    // A pin the log no longer contains is a failure, though the range itself is intact.
    let r = l.verify(&opts(ledger::Hash([7; 32])), &|_, _| {}).expect("verify");
    let failure = r.failure.expect("detected");
    assert_eq!(
        (failure.seq, failure.kind),
        (10, FailureKind::HeadMismatch),
        "{failure}"
    );
}

/// What someone with write access to the disk but without the current key
/// can try: turn the event at `at` into a `key.rotated` that claims the
/// current key `old` and introduces their own key `attacker` (with a
/// genuine proof of possession), sign it and every later event with
/// `attacker`, re-chain the links, and record the rotation and the new head
/// in `meta` as the writer would.
fn forge_rotation(path: &std::path::Path, at: u64, old: &SigningKey, attacker: &SigningKey) {
    let ledger_id = ledger::Ledger::open_read_only(path).expect("open").ledger_id();
    let db = raw_db(path);
    let head = {
        let cf = db.cf_handle("events").expect("events cf");
        db.iterator_cf(cf, rocksdb::IteratorMode::End)
            .next()
            .map(|r| u64::from_be_bytes(r.expect("read").0[..8].try_into().expect("seq key")))
            .expect("events")
    };
    let mut prev = ledger::SealedEvent::decode(&get_record(&db, at - 1))
        .expect("decode")
        .hash;
    let mut last = None;
    for seq in at..=head {
        let mut event = ledger::SealedEvent::decode(&get_record(&db, seq))
            .expect("decode")
            .event;
        event.prev = prev;
        if seq == at {
            event.kind = ledger::EventKind::KeyRotated;
            event.key = old.id();
            event.body = ledger::Rotation {
                new_key: attacker.id(),
                new_public_key: attacker.public(),
                proof: attacker.rotation_proof(&ledger_id, old.id()),
                reason: None,
            }
            .to_body();
        } else {
            event.key = attacker.id();
        }
        let (hash, rec) = signed_record(&event, attacker);
        put_record(&db, seq, &rec);
        prev = hash;
        last = Some((seq, hash, event.ts.as_nanos()));
    }
    let meta = db.cf_handle("meta").expect("meta cf");
    let mut index = b"rotation/".to_vec();
    index.extend_from_slice(&at.to_be_bytes());
    db.put_cf(meta, index, attacker.id().0).expect("put rotation index");
    db.put_cf(meta, b"key/current", attacker.id().0)
        .expect("put current key");
    let (seq, hash, ts) = last.expect("rewrote events");
    set_meta_head(&db, seq, hash, ts);
    remove_acked_mark(path);
}

/// A rotation forged by someone without the current key cannot vouch for
/// the events signed by the key it introduces: range verification fails at
/// the forged rotation, whether the walk reaches it from a pinned head
/// before the range or the range's keys come from the rotation index.
#[test]
fn a_rotation_not_signed_by_the_current_key_fails_range_verification() {
    let f = fixture(30, None);
    let pinned = ledger::Ledger::open_read_only(&f.path)
        .expect("open")
        .get(10)
        .expect("get")
        .expect("exists")
        .hash;
    let forged_at = 15;
    forge_rotation(
        &f.path,
        forged_at,
        &SigningKey::from_seed(KEY_A),
        &SigningKey::from_seed(KEY_C),
    );
    let l = ledger::Ledger::open_read_only(&f.path).expect("open");
    let range = |pinned_head| ledger::VerifyOptions {
        from: Some(20),
        pinned_head,
        ..Default::default()
    };
    for (what, opts) in [
        ("pinned head before the range", range(Some((10, pinned)))),
        ("keys from the rotation index", range(None)),
    ] {
        let r = l.verify(&opts, &|_, _| {}).expect("verify runs");
        let failure = r
            .failure
            .unwrap_or_else(|| panic!("{what}: a forged rotation must not pass"));
        assert_eq!(
            (failure.seq, failure.kind),
            (forged_at, FailureKind::BadSignature),
            "{what}: {failure}"
        );
    }
    // Full verification finds it at the same place, and the writer refuses
    // to continue a log whose key schedule does not hold.
    let r = verify(&f.path, None);
    let failure = r.failure.expect("full verification detects it");
    assert_eq!(
        (failure.seq, failure.kind),
        (forged_at, FailureKind::BadSignature),
        "{failure}"
    );
    drop(l);
    let err = ledger::Ledger::open(&f.path, &f.keys)
        .map(|_| ())
        .expect_err("must refuse");
    assert!(err.to_string().contains(&format!("seq {forged_at}")), "{err}");
    // Also with the attacker's key file among the ledger's keys, where the
    // forged `key/current` points.
    f.keys
        .store(&SigningKey::from_seed(KEY_C))
        .expect("store the attacker's key");
    let err = ledger::Ledger::open(&f.path, &f.keys)
        .map(|_| ())
        .expect_err("must refuse");
    assert!(err.to_string().contains(&format!("seq {forged_at}")), "{err}");
}

/// The time index is not signed. A range asked for by time is resolved
/// through it, so verification checks the resolved range against the
/// events themselves: someone who alters an event inside the span and
/// edits the index so that the span seems to start (or end) past it is
/// caught at the event that gives the index away.
#[test]
fn a_range_by_time_is_checked_against_the_events_not_only_the_index() {
    let Fresh {
        dir: _dir,
        path,
        ledger: l,
        ..
    } = fresh();
    // One append at a time: each event has a time of its own (seq i + 1).
    let receipts: Vec<_> = (0..12).map(|i| l.append_blocking(draft(i)).expect("append")).collect();
    drop(l);
    let ts = |seq: u64| receipts[seq as usize - 1].ts;
    let (start, end) = (ts(6), ts(9));
    let by_time = |from: u64, to: u64| ledger::VerifyOptions {
        from: Some(from),
        to: Some(to),
        from_time: Some(start),
        to_time: Some(end),
        ..Default::default()
    };
    let resolve = |l: &ledger::Ledger| {
        let from = l.first_seq_at_or_after(start).expect("index").expect("from");
        let to = l.last_seq_at_or_before(end).expect("index").expect("to");
        (from, to)
    };
    let l = ledger::Ledger::open_read_only(&path).expect("open");
    assert_eq!(resolve(&l), (6, 9));
    let r = l.verify(&by_time(6, 9), &|_, _| {}).expect("verify");
    assert!(r.ok(), "{:?}", r.failure);
    assert_eq!((r.from, r.to), (6, Some(9)));
    drop(l);

    // The end: an index entry that makes the span seem to end at 8.
    let forged = {
        let mut k = (end.as_nanos() + 1).to_be_bytes().to_vec();
        k.extend_from_slice(&9u64.to_be_bytes());
        k
    };
    {
        let db = raw_db(&path);
        let time = db.cf_handle("time").expect("time cf");
        db.put_cf(time, &forged, []).expect("put index entry");
    }
    let l = ledger::Ledger::open_read_only(&path).expect("open");
    assert_eq!(resolve(&l), (6, 8), "the forged entry moves the end");
    let r = l.verify(&by_time(6, 8), &|_, _| {}).expect("verify");
    let failure = r.failure.expect("the event after the range gives it away");
    assert_eq!(
        (failure.seq, failure.kind),
        (9, FailureKind::RangeMismatch),
        "{failure}"
    );
    drop(l);
    {
        let db = raw_db(&path);
        let time = db.cf_handle("time").expect("time cf");
        db.delete_cf(time, &forged).expect("delete index entry");
    }

    // Alter seq 6, then hide it: drop the index entries of seqs 6 and 7 so
    // that the span seems to start at 8 (seq 7 is left intact, so the link
    // from 7 into the range holds).
    {
        let db = raw_db(&path);
        let mut rec = get_record(&db, 6);
        let at = rec.windows(4).position(|w| w == b"\"p5\"").expect("principal of seq 6") + 1;
        rec[at] = b'q';
        put_record(&db, 6, &rec);
        let time = db.cf_handle("time").expect("time cf");
        for seq in [6u64, 7] {
            let mut k = ts(seq).as_nanos().to_be_bytes().to_vec();
            k.extend_from_slice(&seq.to_be_bytes());
            db.delete_cf(time, k).expect("delete index entry");
        }
    }
    let l = ledger::Ledger::open_read_only(&path).expect("open");
    let (from, to) = resolve(&l);
    assert_eq!((from, to), (8, 9), "the edited index moves the start");
    let plain = ledger::VerifyOptions {
        from: Some(from),
        to: Some(to),
        ..Default::default()
    };
    let r = l.verify(&plain, &|_, _| {}).expect("verify");
    assert!(r.ok(), "by sequence number, 8..=9 is intact: {:?}", r.failure);
    let r = l.verify(&by_time(from, to), &|_, _| {}).expect("verify");
    let failure = r.failure.expect("by time, the edited index is caught");
    assert_eq!(
        (failure.seq, failure.kind),
        (7, FailureKind::RangeMismatch),
        "{failure}"
    );
}

/// A range continues the chain from the event before it; if that event
/// cannot even be decoded, the range is reported as failing there (exit 1
/// from `sealgate verify`), not as an error running verification.
#[test]
fn an_undecodable_event_just_before_a_range_is_its_failure() {
    let f = fixture(20, None);
    {
        let db = raw_db(&f.path);
        let mut rec = get_record(&db, 9);
        let last = rec.len() - 1;
        rec[last] = b'{';
        put_record(&db, 9, &rec);
    }
    let l = ledger::Ledger::open_read_only(&f.path).expect("open");
    let opts = ledger::VerifyOptions {
        from: Some(10),
        ..Default::default()
    };
    let r = l.verify(&opts, &|_, _| {}).expect("verification runs and reports");
    let failure = r.failure.expect("detected");
    assert_eq!((failure.seq, failure.kind), (9, FailureKind::Malformed), "{failure}");
}

/// Every draft field set, and a body with every kind of value the canonical
/// form has: the record whose bytes the exhaustive test below changes.
fn rich_draft() -> ledger::Draft {
    ledger::Draft::from_json(
        r#"{"kind":"policy.decision",
            "actor":{"principal":"alice@example.com","teams":["sre","prod-ops"],"agent":"claude-code/1.2","session":"s-9"},
            "subject":{"server":"github","tool":"create_issue","resource":"repo://x","prompt":"p","env":["prod","eu"]},
            "correlation":{"request_id":"r-1","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","answers":1},
            "body":{"decision":"ALLOW","n":-9223372036854775808,"u":18446744073709551615,"ok":true,"none":null,
                    "args":"{\"q\":1.5}","esc":"\u0000\"\\é\u2028","list":[1,[],{}],"obj":{"":{"a":"b"}}}}"#,
    )
    .expect("rich draft")
}

#[test]
fn every_single_byte_change_to_each_kind_of_record_is_found_at_its_event_without_panicking() {
    // The proptest above samples changes through a store; this tries all
    // 255 of every byte of a genesis, a rotation and two rich events (one
    // per key), each as the last event of the log up to it, through the
    // verifier's own stages (`ledger::verify_records`: what `Ledger::verify`
    // runs on every record, without writing each change into a store), as
    // `sealgate verify --from SEQ --head SEQ:HASH` with the head as stored
    // would: the events before it get every check but their signatures
    // (the rotation's is checked), which the whole log, verified as stored
    // first, already passed. Each such log as stored is also checked to
    // verify, so the loop cannot pass vacuously.
    let f = build(vec![rich_draft()], true, vec![rich_draft()]);
    let rotation = f.rotation.expect("rotated");
    let (ledger_id, pin, log) = {
        let l = ledger::Ledger::open_read_only(&f.path).expect("open");
        let head = l.head();
        let log: Vec<(u64, Box<[u8]>)> = l
            .raw_records(0)
            .expect("records")
            .map(|r| r.expect("read record"))
            .collect();
        (l.ledger_id(), (head.seq, head.hash), log)
    };
    assert_eq!(log.len() as u64, f.head + 1);
    let as_stored = ledger::verify_records(ledger_id, log.clone(), 0, Some(pin));
    assert!(as_stored.ok(), "the log as stored: {:?}", as_stored.failure);
    assert_eq!(as_stored.verified, f.head + 1);
    // The store's own verifier agrees on the log as stored.
    assert!(verify(&f.path, Some(pin)).ok());
    let targets = [0, 1, rotation, f.head];
    assert_eq!(targets, [0, 1, 2, 3], "genesis, event, rotation, event");
    // Each target's log as stored and its pin (its head as stored).
    type Log = Vec<(u64, Box<[u8]>)>;
    let logs: Vec<(u64, Log, (u64, ledger::Hash))> = targets
        .iter()
        .map(|&seq| {
            let upto = log[..=seq as usize].to_vec();
            let pin = (
                seq,
                ledger::SealedEvent::decode(&upto[seq as usize].1).expect("decode").hash,
            );
            let as_stored = ledger::verify_records(ledger_id, upto.clone(), seq, Some(pin));
            assert!(as_stored.ok(), "the log up to {seq} as stored: {:?}", as_stored.failure);
            (seq, upto, pin)
        })
        .collect();
    // Every (log, byte) pair, dealt out to the workers in turn.
    let jobs: Vec<(usize, usize)> = logs
        .iter()
        .enumerate()
        .flat_map(|(i, (seq, upto, _))| (0..upto[*seq as usize].1.len()).map(move |at| (i, at)))
        .collect();
    const WORKERS: usize = 4;
    let tried: usize = std::thread::scope(|s| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (logs, jobs) = (&logs, &jobs);
                s.spawn(move || {
                    let mut tried = 0;
                    for &(i, at) in jobs.iter().skip(w).step_by(WORKERS) {
                        let (seq, upto, pin) = &logs[i];
                        for flip in 1..=255u8 {
                            let mut changed = upto.clone();
                            changed[*seq as usize].1[at] ^= flip;
                            let report = ledger::verify_records(ledger_id, changed, *seq, Some(*pin));
                            let failure = report
                                .failure
                                .unwrap_or_else(|| panic!("record {seq}: byte {at} xor {flip:#04x} was accepted"));
                            assert_eq!(
                                failure.seq, *seq,
                                "record {seq}: byte {at} xor {flip:#04x} found elsewhere: {failure}"
                            );
                            tried += 1;
                        }
                    }
                    tried
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("no change may panic"))
            .sum()
    });
    assert!(tried > 4 * 255 * 200, "only {tried} changes tried");
}

/// `meta` (store format, ledger id, head, current key, rotation index) is
/// not signed: someone with the disk can edit it. For every entry, deleted
/// or with any one of its bytes changed, full verification says what
/// `docs/FORMAT.md` (§9, §10) says it must, at the sequence number it must
/// (see [`meta_edit_verdict`]); exactly the edits listed there stop the
/// store opening at all, each with its reason; `head_checked` refuses a
/// changed head; the writer refuses the ledger, except for a changed entry
/// of the rotation index, where it carries on from the truth (the last
/// event's sequence number, hash and time; the genesis ledger id; the
/// log's current key); and nothing panics. Each change is undone before
/// the next.
#[test]
fn every_change_to_meta_is_refused_or_overruled_by_the_log() {
    let f = build(drafts(5), true, drafts(3));
    let rotation = f.rotation.expect("rotated");
    let (truth, ledger_id, key) = {
        let l = ledger::Ledger::open_read_only(&f.path).expect("open");
        let last = l.get(f.head).expect("get").expect("last event");
        let truth = ledger::Head {
            seq: f.head,
            hash: last.hash,
            ts: last.event.ts,
        };
        (truth, l.ledger_id(), l.key_schedule().expect("schedule").current())
    };
    let entries: Vec<(Vec<u8>, Vec<u8>)> = {
        let db = raw_db(&f.path);
        let meta = db.cf_handle("meta").expect("meta cf");
        db.iterator_cf(meta, rocksdb::IteratorMode::Start)
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).expect("read meta"))
            .collect()
    };
    let names: Vec<String> = entries
        .iter()
        .map(|(k, _)| match k.strip_prefix(b"rotation/") {
            Some(seq) => format!("rotation/{}", u64::from_be_bytes(seq.try_into().expect("8-byte seq"))),
            None => String::from_utf8_lossy(k).into_owned(),
        })
        .collect();
    assert_eq!(
        names,
        [
            "format",
            "head",
            "key/current",
            "ledger_id",
            &format!("rotation/{rotation}"),
            "tree"
        ],
        "the entries FORMAT.md §10 lists, and no others"
    );
    let mut changes = Vec::new();
    for (k, v) in &entries {
        changes.push((k.clone(), None));
        for at in 0..v.len() {
            for flip in [0x01u8, 0x80] {
                let mut changed = v.clone();
                changed[at] ^= flip;
                changes.push((k.clone(), Some(changed)));
            }
        }
    }
    let (mut refused, mut overruled, mut unopened) = (0, 0, 0);
    for (k, change) in changes {
        let what = format!(
            "meta `{}` {}",
            String::from_utf8_lossy(&k),
            match &change {
                Some(v) => format!("changed to {}", hex::encode(v)),
                None => "deleted".into(),
            }
        );
        let original = entries
            .iter()
            .find(|(ek, _)| *ek == k)
            .map(|(_, v)| v.clone())
            .expect("entry");
        {
            let db = raw_db(&f.path);
            let meta = db.cf_handle("meta").expect("meta cf");
            match &change {
                Some(v) => db.put_cf(meta, &k, v).expect("put"),
                None => db.delete_cf(meta, &k).expect("delete"),
            }
        }
        // Full verification reports the documented failure, or the store
        // does not open, for the documented reason, and only where listed.
        match (
            meta_edit_verdict(&k, change.as_deref(), &truth, rotation),
            ledger::Ledger::open_read_only(&f.path),
        ) {
            (MetaVerdict::Fails(kind, seq), Ok(l)) => {
                let report = l
                    .verify(&ledger::VerifyOptions::default(), &|_, _| {})
                    .expect("verify runs");
                let failure = report.failure.unwrap_or_else(|| panic!("{what}: verification passed"));
                assert_eq!((failure.kind, failure.seq), (kind, seq), "{what}: {failure}");
            }
            (MetaVerdict::DoesNotOpen(why), Err(e)) => {
                assert!(e.to_string().contains(why), "{what}: refused for another reason: {e}");
                unopened += 1;
            }
            (MetaVerdict::Fails(kind, seq), Err(e)) => {
                panic!("{what}: the store did not open ({e}), where verification must fail with {kind:?} at {seq}")
            }
            (MetaVerdict::DoesNotOpen(why), Ok(_)) => panic!("{what}: the store opened, where it must refuse: {why}"),
        }
        // What `sealgate head` prints for an auditor to pin: the truth, or
        // an error; for any changed byte of the head, the error says so.
        match ledger::Ledger::open_read_only(&f.path).and_then(|l| l.head_checked()) {
            Ok(head) => assert_eq!(head, truth, "{what}: head_checked gave an altered head"),
            Err(e) if k == b"head" && change.is_some() => {
                assert!(e.to_string().contains("meta says the head is seq"), "{what}: {e}");
            }
            Err(_) => {}
        }
        // The writer refuses every edit but a changed rotation index entry,
        // which it overrules (it takes the log's rotations, not the index).
        // A deleted tree marker is a tree to build again: the writer
        // rebuilds it from the log.
        let overrule = (k.starts_with(b"rotation/") && change.is_some()) || (k == b"tree" && change.is_none());
        match ledger::Ledger::open(&f.path, &f.keys) {
            Err(e) => {
                assert!(!overrule, "{what}: the writer refused: {e}");
                assert!(!e.to_string().is_empty(), "{what}: empty error");
                refused += 1;
            }
            Ok(l) => {
                assert!(overrule, "{what}: the writer opened an edited ledger");
                assert_eq!(l.head(), truth, "{what}: the writer carried on from an altered head");
                assert_eq!(l.ledger_id(), ledger_id, "{what}: the writer took an altered ledger id");
                assert_eq!(
                    l.current_key_id().expect("current key"),
                    key,
                    "{what}: the writer took an altered key"
                );
                overruled += 1;
            }
        }
        let db = raw_db(&f.path);
        let meta = db.cf_handle("meta").expect("meta cf");
        db.put_cf(meta, &k, &original).expect("restore");
    }
    // format: 1 deletion + 2 changes; ledger_id and head: 1 deletion each.
    assert_eq!(unopened, 5, "stores that did not open");
    // 32 changed bytes of the rotation index entry, the deleted tree marker.
    assert_eq!(overruled, 33, "refused {refused}, overruled {overruled}");
    // Restored, the ledger is what it was.
    assert!(verify(&f.path, None).ok());
}

/// What one edit of `meta` must lead to (`docs/FORMAT.md` §9, §10).
#[derive(Debug)]
enum MetaVerdict {
    /// The store does not open; the error says this.
    DoesNotOpen(&'static str),
    /// Full verification fails with this kind at this sequence number.
    Fails(FailureKind, u64),
}

/// The verdict on `key` deleted (`None`) or changed to `value`, in a log
/// whose last event is `truth` and whose one rotation is at `rotation`:
/// - `format`: the store does not open, changed (an unknown format) or
///   deleted;
/// - `ledger_id`: deleted, the store does not open; changed, the genesis no
///   longer matches the store (`bad_genesis` at 0);
/// - `head`: deleted, the store does not open; its sequence number moved
///   past the log's end, the log is `truncated` there; moved back, the
///   event there is not the recorded head (`head_mismatch` at the recorded
///   seq); its hash changed, `head_mismatch` at the head; its time changed,
///   `meta_mismatch` at the head;
/// - `key/current`, changed or deleted: `meta_mismatch` at the head;
/// - `rotation/N`, changed or deleted: `meta_mismatch` at N;
/// - `tree`, changed or deleted: `tree_mismatch` at 0 (no tree this build
///   knows is complete).
fn meta_edit_verdict(key: &[u8], value: Option<&[u8]>, truth: &ledger::Head, rotation: u64) -> MetaVerdict {
    use MetaVerdict::*;
    match (key, value) {
        (b"format", Some(_)) => DoesNotOpen("unknown store format"),
        (b"format", None) => DoesNotOpen("the store format is missing"),
        (b"ledger_id", Some(_)) => Fails(FailureKind::BadGenesis, 0),
        (b"ledger_id", None) => DoesNotOpen("ledger id missing or malformed"),
        (b"head", None) => DoesNotOpen("head missing or malformed"),
        (b"head", Some(v)) => {
            let seq = u64::from_be_bytes(v[..8].try_into().expect("8-byte seq"));
            if seq > truth.seq {
                Fails(FailureKind::Truncated, truth.seq + 1)
            } else if seq < truth.seq {
                Fails(FailureKind::HeadMismatch, seq)
            } else if v[8..40] != truth.hash.0 {
                Fails(FailureKind::HeadMismatch, truth.seq)
            } else {
                Fails(FailureKind::MetaMismatch, truth.seq)
            }
        }
        (b"key/current", _) => Fails(FailureKind::MetaMismatch, truth.seq),
        (k, _) if k.starts_with(b"rotation/") => Fails(FailureKind::MetaMismatch, rotation),
        (b"tree", _) => Fails(FailureKind::TreeMismatch, 0),
        (k, _) => panic!("no verdict for meta `{}`", String::from_utf8_lossy(k)),
    }
}

/// A key file moved into the current key's place (a consistent file of
/// another key, under the current key's name) is refused when the writer
/// opens the ledger: it would sign the next events with a key the log's
/// schedule does not know, and they would never verify.
#[test]
fn a_key_file_in_the_current_keys_place_is_refused() {
    let f = fixture(3, None);
    let (current, other) = (SigningKey::from_seed(KEY_A), SigningKey::from_seed(KEY_C));
    f.keys.store(&other).expect("store another key");
    std::fs::rename(f.keys.file_for(other.id()), f.keys.file_for(current.id())).expect("move it in");
    let err = ledger::Ledger::open(&f.path, &f.keys)
        .map(|_| ())
        .expect_err("must refuse")
        .to_string();
    assert!(
        err.contains(&format!("holds key {}, not key {}", other.id(), current.id())),
        "{err}"
    );
    assert!(verify(&f.path, None).ok(), "nothing was written");
}

/// A rotation missing from the store's rotation index: full verification
/// names the index, not an event; range verification, whose keys before
/// the range come from the index, says so beside the event it cannot
/// check; the writer refuses to continue.
#[test]
fn a_rotation_missing_from_the_index_is_named_as_such() {
    let f = build(drafts(5), true, drafts(3));
    let rotation = f.rotation.expect("rotated");
    {
        let db = raw_db(&f.path);
        let meta = db.cf_handle("meta").expect("meta cf");
        let mut k = b"rotation/".to_vec();
        k.extend_from_slice(&rotation.to_be_bytes());
        db.delete_cf(meta, k).expect("delete the index entry");
    }
    let failure = verify(&f.path, None).failure.expect("full verification fails");
    assert_eq!(
        (failure.seq, failure.kind),
        (rotation, FailureKind::MetaMismatch),
        "{failure}"
    );
    assert!(
        failure
            .detail
            .contains(&format!("lacks the rotation at seq {rotation}")),
        "{failure}"
    );

    let l = ledger::Ledger::open_read_only(&f.path).expect("open");
    let opts = ledger::VerifyOptions {
        from: Some(rotation + 2),
        ..Default::default()
    };
    let failure = l
        .verify(&opts, &|_, _| {})
        .expect("verify runs")
        .failure
        .expect("range fails");
    assert_eq!(failure.kind, FailureKind::UnknownKey, "{failure}");
    assert!(
        failure.detail.contains("come from the store's rotation index"),
        "{failure}"
    );
    drop(l);

    let err = ledger::Ledger::open(&f.path, &f.keys)
        .map(|_| ())
        .expect_err("must refuse")
        .to_string();
    assert!(err.contains("unknown_key"), "{err}");
    assert_eq!(
        err.matches(&format!("seq {}", rotation + 1)).count(),
        1,
        "said once: {err}"
    );
}

/// RocksDB replays a WAL up to its first damaged record and drops the
/// rest without a word. One flipped bit in the middle of the WAL loses
/// acknowledged events; the acknowledged mark is what tells: full
/// verification reports them missing, `head_checked` refuses, and the
/// writer refuses to append over them. Put back, the log is whole again.
#[test]
fn acknowledged_events_a_damaged_wal_drops_are_reported_missing() {
    let f = build(drafts(400), false, Vec::new());
    let wal = std::fs::read_dir(&f.path)
        .expect("ledger dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max_by_key(|p| std::fs::metadata(p).expect("meta").len())
        .expect("a WAL file");
    let original = std::fs::read(&wal).expect("read WAL");
    let mut damaged = original.clone();
    let at = damaged.len() / 2;
    damaged[at] ^= 0x01;
    std::fs::write(&wal, &damaged).expect("damage the WAL");

    let l = ledger::Ledger::open_read_only(&f.path).expect("open");
    let last = l.last_stored_seq().expect("last").expect("some events");
    assert!(
        last < f.head,
        "RocksDB kept everything ({last}): the test did not damage the WAL"
    );
    let failure = verify(&f.path, None).failure.expect("missing events are reported");
    assert_eq!(
        (failure.seq, failure.kind),
        (last + 1, FailureKind::Truncated),
        "{failure}"
    );
    assert!(
        failure
            .detail
            .contains(&format!("acknowledged events up to seq {}", f.head)),
        "{failure}"
    );
    let err = l.head_checked().expect_err("no head to pin").to_string();
    assert!(err.contains("acknowledged events are missing"), "{err}");
    drop(l);
    let err = ledger::Ledger::open(&f.path, &f.keys)
        .map(|_| ())
        .expect_err("must refuse")
        .to_string();
    assert!(
        err.contains(&format!("acknowledged events up to seq {}", f.head)),
        "{err}"
    );

    std::fs::write(&wal, &original).expect("put the WAL back");
    assert!(verify(&f.path, None).ok(), "the log is whole again");
    let l = ledger::Ledger::open(&f.path, &f.keys).expect("the writer opens it again");
    assert_eq!(l.head().seq, f.head);
}

/// An acknowledged mark that cannot be read back (a torn write after power
/// loss, or an edit) checks nothing and blocks nothing: verification passes
/// on the log alone, and the writer writes a good mark in its place.
#[test]
fn an_unreadable_acknowledged_mark_is_replaced() {
    let f = build(drafts(3), false, Vec::new());
    let mark = f.path.join("SEALGATE-ACKED");
    let good = std::fs::read(&mark).expect("the writer left a mark");
    assert_eq!(good.len(), 56);
    let mut torn = good.clone();
    torn[20] ^= 0xff;
    torn.extend_from_slice(b"trailing");
    std::fs::write(&mark, &torn).expect("damage the mark");
    assert!(verify(&f.path, None).ok());
    drop(ledger::Ledger::open(&f.path, &f.keys).expect("the writer opens"));
    assert_eq!(
        std::fs::read(&mark).expect("mark"),
        good,
        "the same head, recorded again"
    );
}

/// A flipped byte in one of RocksDB's table files, which its block checksum
/// catches: full verification reports the first record it cannot read
/// (where the damaged block starts), tells RocksDB's finding once, and the
/// records outside the damaged block still read.
#[test]
fn a_damaged_table_file_is_reported_at_the_first_record_it_hides() {
    let Fresh {
        dir: _dir,
        path,
        keys,
        ledger,
    } = fresh();
    for batch in 0..20 {
        ledger
            .submit((batch * 1000..(batch + 1) * 1000).map(draft).collect())
            .expect("submit")
            .wait()
            .expect("append");
    }
    drop(ledger);
    // Opening for writing flushes the events recovered from the WAL to a
    // table file.
    drop(ledger::Ledger::open(&path, &keys).expect("reopen for writing"));
    sealgate_tools::table::flip_a_byte_in_the_largest_table(&path);

    let l = ledger::Ledger::open_read_only(&path).expect("open read-only");
    let first_unreadable = (0..=20_000u64)
        .find(|&seq| l.get(seq).is_err())
        .expect("some record cannot be read");
    assert!(first_unreadable > 0 && l.get(0).is_ok() && l.get(20_000).is_ok());
    let failure = verify(&path, None).failure.expect("the damage is reported");
    assert_eq!(
        (failure.kind, failure.seq),
        (FailureKind::Malformed, first_unreadable),
        "{failure}"
    );
    assert_eq!(failure.detail.matches("Corruption").count(), 1, "{failure}");
}
