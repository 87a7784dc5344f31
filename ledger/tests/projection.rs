//! The projection machinery on a real RocksDB directory: for random logs,
//! the live state (advanced batch by batch as events are appended) equals a
//! full replay, equals every snapshot plus its tail, and the state as of any
//! sequence number N equals a naive fold of the events 0..=N. Snapshots that
//! no longer match the log, or are damaged, are never used.

mod common;

use common::*;
use ledger::{Event, Folded, KeyDir, Ledger, Projection, SigningKey, Snapshots, fold_to};
use proptest::prelude::*;

/// An order-sensitive digest of everything folded in, plus a count per
/// kind: any missed, repeated or reordered event changes it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Digest {
    chain: [u8; 32],
    counts: std::collections::BTreeMap<String, u64>,
}

impl Projection for Digest {
    const NAME: &'static str = "test-digest";
    const VERSION: u32 = 1;

    fn apply(&mut self, event: &Event) {
        let mut h = blake3::Hasher::new();
        h.update(&self.chain);
        h.update(&event.seq.to_be_bytes());
        h.update(event.kind.as_str().as_bytes());
        h.update(format!("{:?}", event.body).as_bytes());
        self.chain = *h.finalize().as_bytes();
        *self.counts.entry(event.kind.as_str().to_string()).or_default() += 1;
    }

    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&(hex::encode(self.chain), &self.counts)).unwrap_or_default()
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let (chain, counts): (String, std::collections::BTreeMap<String, u64>) =
            serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let chain = hex::decode(chain)
            .map_err(|e| e.to_string())?
            .try_into()
            .map_err(|_| "chain is not 32 bytes".to_string())?;
        Ok(Digest { chain, counts })
    }
}

/// The state of the log cut at `n`, folded by hand without the machinery.
fn naive(ledger: &Ledger, n: u64) -> Digest {
    let mut d = Digest::default();
    for e in ledger.events(0, n).expect("events") {
        d.apply(&e.expect("event").event);
    }
    d
}

proptest! {
    #![proptest_config(proptest_config(24))]

    #[test]
    fn live_replay_snapshot_and_as_of_agree(
        batches in prop::collection::vec(prop::collection::vec(any_draft(), 1..20), 1..8),
        snapshot_every in 1u64..15,
        probes in prop::collection::vec(any::<prop::sample::Index>(), 1..6),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyDir::new(dir.path().join("keys"));
        let ledger = Ledger::create(&dir.path().join("ledger"), &keys, SigningKey::from_seed(KEY_A), actor("init"))
            .expect("create");
        let snapshots = Snapshots::new(dir.path().join("snapshots"));

        // Live: advanced after every batch, snapshotted every few events.
        let mut live = Folded::<Digest>::default();
        let mut last_snapshot = 0;
        for batch in batches {
            ledger.submit(batch).expect("submit").wait().expect("append");
            live.advance(&ledger, u64::MAX).expect("advance");
            let seq = live.seq().expect("seq");
            if seq - last_snapshot >= snapshot_every {
                snapshots.save(&ledger, &live).expect("snapshot");
                last_snapshot = seq;
            }
        }
        let head = ledger.head().seq;
        prop_assert_eq!(live.seq(), Some(head));
        prop_assert_eq!(live.hash(), ledger.head().hash);

        let full = fold_to::<Digest>(&ledger, None, head).expect("full replay");
        prop_assert_eq!(full.state(), live.state());
        prop_assert_eq!(full.snapshot_seq(), None);
        // Each fold with snapshots starts from the newest one at or before
        // where it stops: a snapshot passed over (a replay from the log's
        // start, which gives the same state) fails here.
        let saved = snapshots.list::<Digest>().expect("list");
        let newest_at_or_before = |n: u64| saved.iter().copied().filter(|&s| s <= n).max();
        let from_snapshot = fold_to::<Digest>(&ledger, Some(&snapshots), head).expect("snapshot + tail");
        prop_assert_eq!(from_snapshot.state(), live.state());
        prop_assert_eq!(from_snapshot.snapshot_seq(), newest_at_or_before(head));
        for &at in &saved {
            let f = fold_to::<Digest>(&ledger, Some(&snapshots), at).expect("as of a snapshot");
            prop_assert_eq!(f.state(), &naive(&ledger, at));
            prop_assert_eq!(f.snapshot_seq(), Some(at));
        }

        for probe in probes {
            let n = probe.index(head as usize + 1) as u64;
            let as_of = fold_to::<Digest>(&ledger, Some(&snapshots), n).expect("as of");
            prop_assert_eq!(as_of.seq(), Some(n));
            prop_assert_eq!(as_of.state(), &naive(&ledger, n));
            prop_assert_eq!(as_of.snapshot_seq(), newest_at_or_before(n));
        }
    }
}

#[test]
fn snapshots_of_another_log_or_damaged_ones_are_not_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let snapshots = Snapshots::new(dir.path().join("snapshots"));
    let open = |name: &str, seed: [u8; 32]| {
        Ledger::create(
            &dir.path().join(name),
            &KeyDir::new(dir.path().join(format!("{name}-keys"))),
            SigningKey::from_seed(seed),
            actor("init"),
        )
        .expect("create")
    };
    let a = open("a", KEY_A);
    a.submit(drafts(10)).expect("submit").wait().expect("append");
    let b = open("b", KEY_B);
    b.submit(drafts(10)).expect("submit").wait().expect("append");

    let folded = fold_to::<Digest>(&a, None, 10).expect("fold a");
    let path = snapshots.save(&a, &folded).expect("save");
    // Ledger b has an event at seq 10 too, with another hash and ledger id.
    let f = fold_to::<Digest>(&b, Some(&snapshots), 10).expect("fold b");
    assert_eq!(f.state(), &naive(&b, 10));
    assert_ne!(f.state(), folded.state());

    // A flipped byte in the state is caught by the digest.
    let mut bytes = std::fs::read(&path).expect("read");
    let last = bytes.len() - 2;
    bytes[last] ^= 0x01;
    std::fs::write(&path, &bytes).expect("write");
    assert!(snapshots.newest_at_or_before::<Digest>(&a, 10).expect("load").is_none());
    assert_eq!(
        fold_to::<Digest>(&a, Some(&snapshots), 10).expect("fold").state(),
        folded.state()
    );
}

#[test]
fn replay_stops_at_a_broken_link_and_names_it() {
    let fx = build(drafts(20), false, vec![]);
    {
        let db = raw_db(&fx.path);
        let mut rec = get_record(&db, 12);
        let n = rec.len();
        rec[n - 3] ^= 0x20;
        put_record(&db, 12, &rec);
    }
    let ledger = Ledger::open_read_only(&fx.path).expect("open");
    let mut folded = Folded::<Digest>::default();
    let err = folded
        .advance(&ledger, u64::MAX)
        .expect_err("a changed byte breaks replay");
    let msg = err.to_string();
    assert!(msg.contains("seq 12"), "{msg}");
    assert_eq!(folded.seq(), Some(11), "the state stays at the last good event");
}

/// Someone without the key rewrites the log from seq 4 to its end: new
/// content, fresh hashes and links all the way, the old signatures kept
/// (they cannot make new ones). Replay alone checks hashes and links and
/// would take it; `fold_to` checks the signature of the last event it
/// reaches and refuses, so the rewritten history is never shown as a state.
/// The untouched prefix still folds.
#[test]
fn a_log_rewritten_without_the_key_is_not_folded() {
    let f = build(drafts(8), false, Vec::new());
    {
        let db = raw_db(&f.path);
        let mut prev = None;
        for seq in 4..=f.head {
            let sealed = ledger::SealedEvent::decode(&get_record(&db, seq)).expect("decode");
            let mut event = sealed.event;
            if let Some(p) = prev {
                event.prev = p;
            }
            if seq == 4 {
                event.actor.principal = Some("someone-else".into());
            }
            let canonical = event.canonical_bytes();
            let hash = ledger::event_hash(&event.prev, &canonical);
            let mut rec = vec![ledger::RECORD_VERSION];
            rec.extend_from_slice(&hash.0);
            rec.extend_from_slice(&sealed.signature.to_bytes());
            rec.extend_from_slice(&canonical);
            put_record(&db, seq, &rec);
            prev = Some(hash);
        }
        let last = ledger::SealedEvent::decode(&get_record(&db, f.head)).expect("decode");
        set_meta_head(&db, f.head, last.hash, last.event.ts.as_nanos());
    }
    remove_acked_mark(&f.path);
    let l = Ledger::open_read_only(&f.path).expect("open");
    // Replay alone takes it: every hash and link holds.
    let mut replayed = Folded::<Digest>::default();
    replayed.advance(&l, u64::MAX).expect("hashes and links hold");
    let err = fold_to::<Digest>(&l, None, f.head).expect_err("not signed by the log's key");
    assert!(
        err.to_string().contains("not signed by the log's key") && err.to_string().contains(&format!("seq {}", f.head)),
        "{err}"
    );
    assert!(
        fold_to::<Digest>(&l, None, 3).is_ok(),
        "the prefix before the rewrite folds"
    );
}

/// A snapshot file's header line, as JSON, and its state bytes.
fn read_snapshot(path: &std::path::Path) -> (serde_json::Value, Vec<u8>) {
    let bytes = std::fs::read(path).expect("read snapshot");
    let split = bytes.iter().position(|b| *b == b'\n').expect("header line");
    let header = serde_json::from_slice(&bytes[..split]).expect("header");
    (header, bytes[split + 1..].to_vec())
}

fn write_snapshot(path: &std::path::Path, header: &serde_json::Value, state: &[u8]) {
    let mut bytes = serde_json::to_vec(header).expect("header");
    bytes.push(b'\n');
    bytes.extend_from_slice(state);
    std::fs::write(path, bytes).expect("write snapshot");
}

/// What a snapshot's signature covers, written from FORMAT.md ("Snapshot
/// files") rather than taken from the crate.
fn format_digest(header: &serde_json::Value, state: &[u8]) -> ledger::Hash {
    let text = |k: &str| header[k].as_str().expect("header field").to_string();
    let ledger_id = hex::decode(text("ledger_id")).expect("ledger id");
    let hash = hex::decode(text("hash")).expect("hash");
    let projection = text("projection");
    let mut h = blake3::Hasher::new();
    h.update(b"sealgate.snapshot.v2\0");
    h.update(&ledger_id);
    h.update(&(projection.len() as u64).to_be_bytes());
    h.update(projection.as_bytes());
    h.update(&(header["version"].as_u64().expect("version") as u32).to_be_bytes());
    h.update(&header["seq"].as_u64().expect("seq").to_be_bytes());
    h.update(&hash);
    h.update(&(state.len() as u64).to_be_bytes());
    h.update(blake3::hash(state).as_bytes());
    ledger::Hash(*h.finalize().as_bytes())
}

/// Puts `state` in the snapshot at `path` with a header that matches it
/// (size and digest) and, with `key`, a signature by that key made as
/// FORMAT.md says; without, the old signature stays.
fn forge(path: &std::path::Path, state: &Digest, key: Option<&SigningKey>) {
    let (mut header, _) = read_snapshot(path);
    let state = state.encode();
    header["state_bytes"] = state.len().into();
    header["state_digest"] = blake3::hash(&state).to_hex().to_string().into();
    if let Some(key) = key {
        header["key"] = key.id().to_string().into();
        header["signature"] = hex::encode(key.sign_hash(&format_digest(&header, &state)).to_bytes()).into();
    }
    write_snapshot(path, &header, &state);
}

fn usable(snapshots: &Snapshots, ledger: &Ledger, seq: u64) -> Option<Digest> {
    snapshots
        .newest_at_or_before::<Digest>(ledger, seq)
        .expect("load")
        .map(Folded::into_state)
}

/// A snapshot is used only when the log's current key signed it: a file
/// whose state was changed (its digest and size made to match), re-signed
/// by another key, unsigned, or in the old unsigned format is passed over,
/// and the state is replayed from the log. The same forgery signed with
/// the log's key, following FORMAT.md, is used: the refusals above are the
/// signature's doing.
#[test]
fn a_snapshot_not_signed_by_the_log_key_is_not_used() {
    let Fresh { dir, ledger, .. } = fresh();
    let snapshots = Snapshots::new(dir.path().join("snapshots"));
    let key = SigningKey::from_seed(KEY_A);
    ledger.submit(drafts(10)).expect("submit").wait().expect("append");
    let honest = fold_to::<Digest>(&ledger, None, 10).expect("fold");
    let path = snapshots.save(&ledger, &honest).expect("save");
    assert_eq!(usable(&snapshots, &ledger, 10).as_ref(), Some(honest.state()));
    let (original, original_state) = read_snapshot(&path);
    assert_eq!(original["key"], key.id().to_string());

    let mut forged = honest.state().clone();
    forged.counts.insert("grant.issued".into(), 1);
    let replayed = || {
        fold_to::<Digest>(&ledger, Some(&snapshots), 10)
            .expect("fold")
            .into_state()
    };

    // The state changed, its digest and size made to match: the old
    // signature no longer verifies.
    forge(&path, &forged, None);
    assert_eq!(usable(&snapshots, &ledger, 10), None);
    assert_eq!(&replayed(), honest.state());

    // Signed by a key the log never introduced.
    forge(&path, &forged, Some(&SigningKey::from_seed(KEY_C)));
    assert_eq!(usable(&snapshots, &ledger, 10), None);
    assert_eq!(&replayed(), honest.state());

    // The key id claims the log's key, the signature is another key's.
    forge(&path, &forged, Some(&SigningKey::from_seed(KEY_C)));
    let (mut header, state) = read_snapshot(&path);
    header["key"] = key.id().to_string().into();
    write_snapshot(&path, &header, &state);
    assert_eq!(usable(&snapshots, &ledger, 10), None);

    // No signature at all, and the old unsigned format.
    let mut unsigned = original.clone();
    unsigned.as_object_mut().expect("object").remove("signature");
    write_snapshot(&path, &unsigned, &original_state);
    assert_eq!(usable(&snapshots, &ledger, 10), None);
    let mut v1 = original.clone();
    v1["magic"] = "sealgate-snapshot-v1".into();
    write_snapshot(&path, &v1, &original_state);
    assert_eq!(usable(&snapshots, &ledger, 10), None);

    // The original is still good, and whoever holds the log's key can make
    // a snapshot, as the writer does.
    write_snapshot(&path, &original, &original_state);
    assert_eq!(usable(&snapshots, &ledger, 10).as_ref(), Some(honest.state()));
    forge(&path, &forged, Some(&key));
    assert_eq!(usable(&snapshots, &ledger, 10), Some(forged.clone()));
    assert_eq!(replayed(), forged);
}

/// A rotation retires the key that signed the snapshots before it: they
/// are not used afterwards (the rotation may be because that key was
/// exposed), and the snapshots made after it, signed by the new key, are.
#[test]
fn snapshots_signed_before_a_key_rotation_are_not_used_after_it() {
    let Fresh { dir, ledger, .. } = fresh();
    let snapshots = Snapshots::new(dir.path().join("snapshots"));
    ledger.submit(drafts(10)).expect("submit").wait().expect("append");
    let at_10 = fold_to::<Digest>(&ledger, None, 10).expect("fold");
    snapshots.save(&ledger, &at_10).expect("save");
    assert!(usable(&snapshots, &ledger, 10).is_some());

    let new_key = SigningKey::from_seed(KEY_B);
    let new_id = new_key.id();
    ledger.rotate_key(new_key, actor("ops"), None).expect("rotate");
    ledger.submit(drafts(5)).expect("submit").wait().expect("append");
    assert_eq!(usable(&snapshots, &ledger, 10), None, "signed by the retired key");
    assert_eq!(
        fold_to::<Digest>(&ledger, Some(&snapshots), 10).expect("fold").state(),
        &naive(&ledger, 10)
    );

    // The same state saved again is signed by the new key and used.
    let path = snapshots.save(&ledger, &at_10).expect("save again");
    assert_eq!(read_snapshot(&path).0["key"], new_id.to_string());
    assert_eq!(usable(&snapshots, &ledger, 10).as_ref(), Some(at_10.state()));
    let head = ledger.head().seq;
    let at_head = fold_to::<Digest>(&ledger, Some(&snapshots), head).expect("fold to head");
    assert_eq!(at_head.state(), &naive(&ledger, head));
    assert_eq!(at_head.snapshot_seq(), Some(10), "the new key's snapshot was not used");
}

/// Only the writer holds the key: a read-only handle cannot save a
/// snapshot, and says why.
#[test]
fn a_read_only_ledger_cannot_sign_a_snapshot() {
    let Fresh { dir, path, ledger, .. } = fresh();
    ledger.submit(drafts(3)).expect("submit").wait().expect("append");
    drop(ledger);
    let ledger = Ledger::open_read_only(&path).expect("open read-only");
    let folded = fold_to::<Digest>(&ledger, None, 3).expect("fold");
    let snapshots = Snapshots::new(dir.path().join("snapshots"));
    let err = snapshots.save(&ledger, &folded).expect_err("no key to sign with");
    assert!(matches!(err, ledger::Error::ReadOnly), "{err}");
    assert!(snapshots.list::<Digest>().expect("list").is_empty(), "nothing written");
}
