//! The Merkle tree, checkpoints and proofs on a real RocksDB directory:
//! the stored tree is the RFC 6962 tree of the events, proofs verify
//! offline, a ledger from before the tree gets it on open, and each attack
//! is refused with its own reason.

mod common;

use common::*;
use ledger::merkle::{self, TreeHash, leaf_data, leaf_hash, node_hash};
use ledger::{Checkpoint, ConsistencyProof, FailureKind, InclusionProof, KeyHistory, Ledger, RejectKind, SigningKey};

/// RFC 6962's `MTH` straight from its definition, over the events' leaves
/// as read from the log (not from the stored tree).
fn mth(leaves: &[TreeHash]) -> TreeHash {
    match leaves.len() {
        0 => merkle::empty_root(),
        1 => leaves[0],
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

fn leaves_of(l: &Ledger) -> Vec<TreeHash> {
    l.events(0, u64::MAX)
        .expect("events")
        .map(|e| {
            let e = e.expect("event");
            leaf_hash(&leaf_data(e.event.seq, &e.hash, &e.signature.to_bytes()))
        })
        .collect()
}

fn rejected<T: std::fmt::Debug>(r: Result<T, ledger::Rejection>) -> RejectKind {
    match r {
        Ok(v) => panic!("accepted: {v:?}"),
        Err(rejection) => rejection.kind,
    }
}

#[test]
fn the_stored_tree_is_the_rfc_6962_tree_of_the_events_and_every_proof_verifies() {
    let f = build(drafts(20), true, drafts(16));
    let l = Ledger::open_read_only(&f.path).expect("open");
    let leaves = leaves_of(&l);
    assert_eq!(leaves.len() as u64, l.tree_size());
    for size in 1..=l.tree_size() {
        let root = l.tree_root(size).expect("root");
        assert_eq!(root, mth(&leaves[..size as usize]), "root at {size}");
        for seq in [0, size / 2, size - 1] {
            let proof = l.inclusion_proof(seq, size).expect("inclusion");
            merkle::verify_inclusion(&leaves[seq as usize], seq, size, &proof, &root).expect("inclusion verifies");
        }
        for old in [1, size / 3 + 1, size] {
            let old = old.min(size);
            let proof = l.consistency_proof(old, size).expect("consistency");
            merkle::verify_consistency(old, size, &l.tree_root(old).expect("old root"), &root, &proof)
                .expect("consistency verifies");
        }
    }
    assert!(l.tree_root(l.tree_size() + 1).is_err(), "no root past the head");
    assert!(verify(&f.path, None).ok());
}

#[test]
fn checkpoints_and_proofs_verify_offline_with_the_key_history() {
    let f = build(drafts(10), true, drafts(5));
    let rotation = f.rotation.expect("rotated");
    let l = Ledger::open_read_only(&f.path).expect("open");
    let history = l.key_history().expect("history");
    assert_eq!(history.keys.len(), 2);
    assert_eq!(history.keys[1].from, rotation + 1);
    // The history's text form is what a verifier holds.
    let history = KeyHistory::parse(&history.to_text()).expect("history parses");
    let key_b = SigningKey::from_seed(KEY_B);
    let size = l.tree_size();
    let note = l.checkpoint(size, &key_b).expect("checkpoint");
    let cp = history.verify_checkpoint(&note).expect("checkpoint verifies");
    assert_eq!(cp.size, size);
    assert_eq!(cp.origin, ledger::checkpoint::origin(&l.ledger_id()));
    assert!(
        l.checkpoint(size, &SigningKey::from_seed(KEY_A)).is_err(),
        "only the current key signs"
    );

    for seq in [0, rotation, size - 1] {
        let proof = l.prove_inclusion(seq, size, &key_b).expect("prove");
        let text = proof.to_text();
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "), "{text}");
        let parsed = InclusionProof::parse(&text).expect("parse");
        assert_eq!(parsed, proof);
        let included = parsed.verify(&history, Some(&note)).expect("inclusion verifies");
        assert_eq!(included.seq, seq);
        assert_eq!(included.event.expect("carries the event").seq, seq);
    }
    let old_note = l.checkpoint(rotation, &key_b).expect("old checkpoint");
    let proof = l.prove_consistency(rotation, size, &key_b).expect("prove");
    let parsed = ConsistencyProof::parse(&proof.to_text()).expect("parse");
    let (old, new) = parsed.verify(&history, &old_note).expect("consistency verifies");
    assert_eq!((old.size, new.size), (rotation, size));
}

/// One writing handle across a rotation: its checkpoints and key history
/// follow the new key (the handle keeps the key schedule it read, until a
/// rotation is added).
#[test]
fn a_writing_handle_signs_checkpoints_with_the_new_key_after_a_rotation() {
    let Fresh { ledger: l, .. } = fresh();
    l.submit(drafts(5)).expect("submit").wait().expect("append");
    let before = l.checkpoint_now(None).expect("checkpoint with key A");
    let history_a = l.key_history().expect("history");
    assert_eq!(history_a.keys.len(), 1);
    history_a.verify_checkpoint(&before).expect("verifies under key A");
    l.rotate_key(SigningKey::from_seed(KEY_B), actor("ops"), None)
        .expect("rotate");
    l.submit(drafts(3)).expect("submit").wait().expect("append");
    let history = l.key_history().expect("history after the rotation");
    assert_eq!(history.keys.len(), 2, "the rotation is in the history at once");
    let after = l.checkpoint_now(None).expect("checkpoint with key B");
    history.verify_checkpoint(&after).expect("verifies under key B");
    assert!(history_a.verify_checkpoint(&after).is_err(), "not signed by key A");
    assert!(
        l.checkpoint(l.tree_size(), &SigningKey::from_seed(KEY_A)).is_err(),
        "key A is retired for this handle too"
    );
}

#[test]
fn a_ledger_made_before_the_tree_gets_it_when_opened_for_writing() {
    let f = build(drafts(40), false, Vec::new());
    let (root, size) = {
        let l = Ledger::open_read_only(&f.path).expect("open");
        (l.tree_root(l.tree_size()).expect("root"), l.tree_size())
    };
    {
        // What a ledger made before this build has: no `tree` column
        // family, no marker.
        let mut db = raw_db(&f.path);
        db.drop_cf("tree").expect("drop tree");
        let meta = db.cf_handle("meta").expect("meta");
        db.delete_cf(meta, b"tree").expect("delete marker");
    }
    {
        let l = Ledger::open_read_only(&f.path).expect("a read-only open of an old ledger works");
        let e = l.tree_root(size).expect_err("no tree yet");
        assert!(e.to_string().contains("no Merkle tree yet"), "{e}");
        let report = l.verify(&ledger::VerifyOptions::default(), &|_, _| {}).expect("verify");
        let failure = report.failure.expect("no tree is a failure of full verification");
        assert_eq!(failure.kind, FailureKind::TreeMismatch, "{failure}");
    }
    {
        let l = Ledger::open(&f.path, &f.keys).expect("open for writing builds the tree");
        assert_eq!(l.tree_root(size).expect("root"), root);
        l.append_blocking(draft(99)).expect("append after the build");
    }
    let l = Ledger::open_read_only(&f.path).expect("open");
    assert_eq!(l.tree_root(size).expect("root"), root, "the old tree is a prefix");
    assert_eq!(l.tree_root(size + 1).expect("root"), mth(&leaves_of(&l)));
    drop(l);
    assert!(verify(&f.path, None).ok());
}

/// A tree stored in the first key layout (`level ‖ index`, marker 1) is
/// not read as a tree: a read-only open says there is none yet, and an
/// open for writing rebuilds it in the current layout, leaving none of the
/// old keys behind.
#[test]
fn a_tree_in_the_old_key_layout_is_rebuilt_when_opened_for_writing() {
    let f = build(drafts(40), false, Vec::new());
    let (root, size) = {
        let l = Ledger::open_read_only(&f.path).expect("open");
        (l.tree_root(l.tree_size()).expect("root"), l.tree_size())
    };
    {
        let db = raw_db(&f.path);
        let tree = db.cf_handle("tree").expect("tree");
        type Node = (Box<[u8]>, Box<[u8]>);
        let nodes: Vec<Node> = db
            .iterator_cf(tree, rocksdb::IteratorMode::Start)
            .map(|kv| kv.expect("read node"))
            .collect();
        assert_eq!(
            nodes.len() as u64,
            2 * size - u64::from(size.count_ones()),
            "every node of the tree"
        );
        for (k, v) in nodes {
            let (last, level) = (u64::from_be_bytes(k[..8].try_into().expect("8 bytes")), k[8]);
            let mut old = vec![level];
            old.extend_from_slice(&(((last + 1) >> level) - 1).to_be_bytes());
            db.delete_cf(tree, &k).expect("delete");
            db.put_cf(tree, old, v).expect("put");
        }
        let meta = db.cf_handle("meta").expect("meta");
        db.put_cf(meta, b"tree", [1u8]).expect("marker");
    }
    {
        let l = Ledger::open_read_only(&f.path).expect("a read-only open of an old layout works");
        let e = l.tree_root(size).expect_err("no tree in this layout");
        assert!(e.to_string().contains("no Merkle tree yet"), "{e}");
    }
    {
        let l = Ledger::open(&f.path, &f.keys).expect("open for writing rebuilds the tree");
        assert_eq!(l.tree_root(size).expect("root"), root);
        l.append_blocking(draft(99)).expect("append after the rebuild");
    }
    let report = verify(&f.path, None);
    assert!(report.ok(), "no old key is left behind: {:?}", report.failure);
    let l = Ledger::open_read_only(&f.path).expect("open");
    assert_eq!(l.tree_root(size + 1).expect("root"), mth(&leaves_of(&l)));
}

/// A node the log's tree does not have, stored among the real ones or past
/// the head, fails full verification.
#[test]
fn a_stray_tree_node_fails_verification() {
    let f = build(drafts(12), false, Vec::new());
    let size = Ledger::open_read_only(&f.path).expect("open").tree_size();
    let mut stray = 5u64.to_be_bytes().to_vec();
    stray.push(7); // "level 7 ending at leaf 5": no such node
    for (key, seq, says) in [
        (stray, 6, "not in the tree of the events"),
        (tree_key(0, size), size - 1, "past the tree of the log's"),
        (tree_key(2, size / 4 + 1), size - 1, "past the tree of the log's"),
    ] {
        let db = raw_db(&f.path);
        let tree = db.cf_handle("tree").expect("tree");
        db.put_cf(tree, &key, [0x5a; 32]).expect("put");
        drop(db);
        let failure = verify(&f.path, None).failure.expect("a stray node is found");
        assert_eq!(
            (failure.kind, failure.seq),
            (FailureKind::TreeMismatch, seq),
            "{failure}"
        );
        assert!(failure.to_string().contains(says), "{failure}");
        let db = raw_db(&f.path);
        let tree = db.cf_handle("tree").expect("tree");
        db.delete_cf(tree, &key).expect("delete");
        drop(db);
        assert!(verify(&f.path, None).ok(), "clean again");
    }
}

#[test]
fn a_changed_tree_node_fails_verification_and_its_proofs() {
    let f = build(drafts(12), false, Vec::new());
    let (note, proof, history) = {
        let l = Ledger::open_read_only(&f.path).expect("open");
        let key = SigningKey::from_seed(KEY_A);
        let size = l.tree_size();
        (
            l.checkpoint(size, &key).expect("checkpoint"),
            l.prove_inclusion(3, size, &key).expect("prove"),
            l.key_history().expect("keys"),
        )
    };
    {
        // Leaf 2 is leaf 3's sibling: in its proof, and in the root.
        let db = raw_db(&f.path);
        let tree = db.cf_handle("tree").expect("tree");
        db.put_cf(tree, common::tree_key(0, 2), [0x5a; 32]).expect("put");
    }
    let failure = verify(&f.path, None).failure.expect("a changed node is found");
    assert_eq!((failure.kind, failure.seq), (FailureKind::TreeMismatch, 2), "{failure}");
    let l = Ledger::open_read_only(&f.path).expect("open");
    let key = SigningKey::from_seed(KEY_A);
    let size = l.tree_size();
    // A proof read from the changed tree, against the checkpoint held
    // before: the sibling no longer leads to its root.
    let changed = l.prove_inclusion(3, size, &key).expect("prove");
    let forged = InclusionProof {
        checkpoint: note.clone(),
        ..changed
    };
    assert_eq!(rejected(forged.verify(&history, Some(&note))), RejectKind::BadProof);
    // The proof made before still holds.
    proof.verify(&history, Some(&note)).expect("the earlier proof");
}

#[test]
fn a_changed_event_no_longer_matches_its_leaf() {
    let f = build(drafts(8), false, Vec::new());
    {
        let db = raw_db(&f.path);
        // Seq 5 is draft 4, principal `p4`: made `q4`.
        let mut rec = get_record(&db, 5);
        let at = rec.windows(4).position(|w| w == b"\"p4\"").expect("principal") + 1;
        rec[at] ^= 0x01;
        put_record(&db, 5, &rec);
    }
    let failure = verify(&f.path, None).failure.expect("detected");
    assert_eq!((failure.kind, failure.seq), (FailureKind::HashMismatch, 5), "{failure}");
    let l = Ledger::open_read_only(&f.path).expect("open");
    let key = SigningKey::from_seed(KEY_A);
    let history = l.key_history().expect("keys");
    let proof = l.prove_inclusion(5, l.tree_size(), &key).expect("prove");
    let r = proof.verify(&history, None);
    assert_eq!(rejected(r), RejectKind::LeafMismatch);
}

/// The attacker holds the real key (and the disk): they change an event,
/// re-sign and re-chain everything after it, and rewrite the tree. The
/// log verifies on its own; a checkpoint held from before does not accept
/// the new log's proofs, and no consistency proof leads from it to the new
/// tree. Likewise for an event removed, and two events swapped.
#[test]
fn a_log_rewritten_with_the_real_key_is_caught_by_an_earlier_checkpoint() {
    enum Attack {
        Change,
        Remove,
        Swap,
    }
    for attack in [Attack::Change, Attack::Remove, Attack::Swap] {
        let f = build(drafts(10), false, Vec::new());
        let key = SigningKey::from_seed(KEY_A);
        let (held, history, size) = {
            let l = Ledger::open_read_only(&f.path).expect("open");
            let size = l.tree_size();
            (
                l.checkpoint(size, &key).expect("cp"),
                l.key_history().expect("keys"),
                size,
            )
        };
        {
            let db = raw_db(&f.path);
            let mut events: Vec<ledger::Event> = (0..size)
                .map(|s| ledger::SealedEvent::decode(&get_record(&db, s)).expect("decode").event)
                .collect();
            match attack {
                Attack::Change => events[4].actor.principal = Some("mallory".into()),
                Attack::Remove => {
                    events.remove(4);
                }
                Attack::Swap => events.swap(4, 5),
            }
            for s in 0..size {
                delete_record(&db, s);
            }
            let mut prev = ledger::Hash::ZERO;
            let mut last_ts = 0;
            for (i, mut e) in events.into_iter().enumerate() {
                e.seq = i as u64;
                e.prev = prev;
                // Keep time from going backwards after a swap.
                if e.ts.as_nanos() < last_ts {
                    e.ts = ledger::Timestamp::from_nanos(last_ts);
                }
                last_ts = e.ts.as_nanos();
                let (hash, rec) = signed_record(&e, &key);
                put_record(&db, i as u64, &rec);
                prev = hash;
                set_meta_head(&db, i as u64, hash, e.ts.as_nanos());
            }
            rewrite_tree(&db);
        }
        remove_acked_mark(&f.path);
        // The time index may disagree with the rewritten log: what matters
        // here is what a checkpoint holder sees.
        let l = Ledger::open_read_only(&f.path).expect("open");
        let new_size = l.tree_size();
        let proof = l.prove_inclusion(6.min(new_size - 1), new_size, &key).expect("prove");
        let got = proof.verify(&history, Some(&held));
        assert_eq!(rejected(got), RejectKind::CheckpointMismatch);
        // A consistency proof from the held checkpoint's size (or from the
        // new log's whole size, if it shrank) does not reach the new tree.
        let old = size.min(new_size);
        let c = l.prove_consistency(old, new_size, &key).expect("prove");
        let consistent = ConsistencyProof { old: size, ..c };
        assert!(
            matches!(
                rejected(consistent.verify(&history, &held)),
                RejectKind::BadProof | RejectKind::CheckpointMismatch
            ),
            "a consistency proof from the held checkpoint was accepted"
        );
    }
}

/// The tail is cut and regrown by the writer itself, with the real key,
/// past its old size: the new checkpoint verifies, the consistency proof
/// from the checkpoint held before does not.
#[test]
fn a_tail_cut_and_regrown_with_the_real_key_is_not_consistent_with_an_earlier_checkpoint() {
    let f = build(drafts(12), false, Vec::new());
    let key = SigningKey::from_seed(KEY_A);
    let (held, history, size) = {
        let l = Ledger::open_read_only(&f.path).expect("open");
        let size = l.tree_size();
        (
            l.checkpoint(size, &key).expect("cp"),
            l.key_history().expect("keys"),
            size,
        )
    };
    let keep = 7u64;
    {
        let db = raw_db(&f.path);
        for s in keep..size {
            delete_record(&db, s);
        }
        let last = ledger::SealedEvent::decode(&get_record(&db, keep - 1)).expect("decode");
        set_meta_head(&db, keep - 1, last.hash, last.event.ts.as_nanos());
        let time = db.cf_handle("time").expect("time cf");
        let cut: Vec<Box<[u8]>> = db
            .iterator_cf(time, rocksdb::IteratorMode::Start)
            .map(|kv| kv.expect("read index").0)
            .filter(|k| k[8..] >= keep.to_be_bytes()[..])
            .collect();
        for k in cut {
            db.delete_cf(time, k).expect("delete index entry");
        }
        rewrite_tree(&db);
    }
    remove_acked_mark(&f.path);
    {
        let l = Ledger::open(&f.path, &f.keys).expect("the writer continues from the cut");
        for i in 0..10 {
            l.append_blocking(draft(100 + i)).expect("regrow");
        }
        assert!(l.tree_size() > size);
    }
    assert!(verify(&f.path, None).ok(), "the regrown log verifies on its own");
    let l = Ledger::open_read_only(&f.path).expect("open");
    let proof = l.prove_consistency(size, l.tree_size(), &key).expect("prove");
    history
        .verify_checkpoint(&proof.checkpoint)
        .expect("the new checkpoint is validly signed");
    assert_eq!(rejected(proof.verify(&history, &held)), RejectKind::BadProof);
}

#[test]
fn a_checkpoint_for_another_ledger_is_refused() {
    let a = build(drafts(3), false, Vec::new());
    let b = build(drafts(3), false, Vec::new());
    let key = SigningKey::from_seed(KEY_A);
    let (note_b, proof_b) = {
        let l = Ledger::open_read_only(&b.path).expect("open");
        let size = l.tree_size();
        (
            l.checkpoint(size, &key).expect("cp"),
            l.prove_inclusion(1, size, &key).expect("prove"),
        )
    };
    let history_a = Ledger::open_read_only(&a.path)
        .expect("open")
        .key_history()
        .expect("keys");
    // Same key, other ledger: the origin tells them apart.
    assert_eq!(
        rejected(history_a.verify_checkpoint(&note_b)),
        RejectKind::OriginMismatch
    );
    assert_eq!(rejected(proof_b.verify(&history_a, None)), RejectKind::OriginMismatch);
}

#[test]
fn a_checkpoint_signed_by_a_retired_key_is_refused() {
    let f = build(drafts(4), true, drafts(4));
    let rotation = f.rotation.expect("rotated");
    let l = Ledger::open_read_only(&f.path).expect("open");
    let history = l.key_history().expect("keys");
    let old_key = SigningKey::from_seed(KEY_A);
    let origin = ledger::checkpoint::origin(&l.ledger_id());
    // Whoever holds the retired key A signs a checkpoint of the log as it
    // is now: refused, A was retired at the rotation.
    let size = l.tree_size();
    let forged = Checkpoint {
        origin: origin.clone(),
        size,
        root: l.tree_root(size).expect("root"),
    }
    .sign(&old_key);
    let r = history.verify_checkpoint(&forged);
    assert_eq!(rejected(r), RejectKind::RetiredKey);
    // The rotation's own tree is the new key's to sign.
    let at_rotation = Checkpoint {
        origin: origin.clone(),
        size: rotation + 1,
        root: l.tree_root(rotation + 1).expect("root"),
    }
    .sign(&old_key);
    assert_eq!(
        rejected(history.verify_checkpoint(&at_rotation)),
        RejectKind::RetiredKey
    );
    // A tree A was current for is A's (a known limit: the holder of a
    // retired key can still sign such an old size; only a checkpoint held
    // from that time, or a witness, tells a forged root from the true one).
    let before = Checkpoint {
        origin,
        size: rotation,
        root: l.tree_root(rotation).expect("root"),
    }
    .sign(&old_key);
    history.verify_checkpoint(&before).expect("A's own tree");
    // A key the ledger never had signs nothing.
    let stranger = Checkpoint::parse_text(&forged[..forged.find("\n\n").expect("blank line") + 1])
        .expect("text")
        .sign(&SigningKey::from_seed(KEY_C));
    assert_eq!(rejected(history.verify_checkpoint(&stranger)), RejectKind::UnknownKey);
}

#[test]
fn a_proof_with_any_byte_changed_is_refused() {
    let f = build(drafts(9), false, Vec::new());
    let key = SigningKey::from_seed(KEY_A);
    let l = Ledger::open_read_only(&f.path).expect("open");
    let history = l.key_history().expect("keys");
    let size = l.tree_size();
    let text = l.prove_inclusion(4, size, &key).expect("prove").to_text();
    let held = l.checkpoint(size, &key).expect("cp");
    // Every byte of the proof, changed: refused (or, for the few bytes
    // whose change leaves the same meaning, e.g. base64 padding bits that
    // decode to the same bytes, still a valid proof of the same event).
    let mut refused = 0;
    for at in 0..text.len() {
        let mut bytes = text.clone().into_bytes();
        bytes[at] ^= 0x01;
        let Ok(changed) = String::from_utf8(bytes) else {
            refused += 1;
            continue;
        };
        let outcome = InclusionProof::parse(&changed).and_then(|p| p.verify(&history, Some(&held)));
        match outcome {
            Err(_) => refused += 1,
            Ok(included) => {
                assert_eq!(included.seq, 4, "byte {at}: a changed proof proves another event");
                assert_eq!(included.checkpoint, history.verify_checkpoint(&held).expect("held"));
            }
        }
    }
    assert!(
        refused > text.len() * 9 / 10,
        "only {refused} of {} changes refused",
        text.len()
    );
    // And specifically: a proof hash changed is a bad proof.
    let mut p = InclusionProof::parse(&text).expect("parse");
    p.hashes[0][7] ^= 0x20;
    assert_eq!(rejected(p.verify(&history, Some(&held))), RejectKind::BadProof);
}
