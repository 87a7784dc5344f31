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
        let from_snapshot = fold_to::<Digest>(&ledger, Some(&snapshots), head).expect("snapshot + tail");
        prop_assert_eq!(from_snapshot.state(), live.state());
        for at in snapshots.list::<Digest>().expect("list") {
            let f = fold_to::<Digest>(&ledger, Some(&snapshots), at).expect("as of a snapshot");
            prop_assert_eq!(f.state(), &naive(&ledger, at));
        }

        for probe in probes {
            let n = probe.index(head as usize + 1) as u64;
            let as_of = fold_to::<Digest>(&ledger, Some(&snapshots), n).expect("as of");
            prop_assert_eq!(as_of.seq(), Some(n));
            prop_assert_eq!(as_of.state(), &naive(&ledger, n));
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
