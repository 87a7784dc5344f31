//! Witnesses in process (`docs/FORMAT.md` §15): a `WitnessLog` given the
//! `add-checkpoint` bodies of real ledgers on disk, attacked by a tail cut
//! and regrown with the real key and by a fork shown to two witnesses; and
//! the M-of-N policy over their cosignatures. (`tests/witness.rs` at the
//! root runs the same attacks on real `sealgate witness serve` processes.)

mod common;

use std::path::Path;

use common::*;
use ledger::witness::{self, Cosigner, cosign, cosigner_vkey, require_cosigners};
use ledger::{ConsistencyProof, KeyHistory, Ledger, Refusal, RejectKind, SigningKey, WitnessLog};

const W1: [u8; 32] = [0x71; 32];
const W2: [u8; 32] = [0x72; 32];
const T: u64 = 1_765_000_000;

/// The add-checkpoint body for the tree of `new` events of `l`, proved
/// from `old`.
fn body(l: &Ledger, old: u64, new: u64) -> String {
    let key = SigningKey::from_seed(KEY_A);
    let p = if old == 0 {
        ConsistencyProof {
            old: 0,
            hashes: Vec::new(),
            checkpoint: l.checkpoint(new, &key).expect("checkpoint"),
        }
    } else {
        l.prove_consistency(old, new, &key).expect("prove")
    };
    let text = p.to_text();
    text.split_once('\n').expect("header").1.to_owned()
}

struct Witness {
    name: &'static str,
    key: SigningKey,
    log: WitnessLog,
}

impl Witness {
    fn new(name: &'static str, seed: [u8; 32], keys: KeyHistory) -> Witness {
        Witness {
            name,
            key: SigningKey::from_seed(seed),
            log: WitnessLog { keys, last: None },
        }
    }

    fn cosigner(&self) -> Cosigner {
        Cosigner::parse_vkey(&cosigner_vkey(self.name, &self.key.public())).expect("vkey")
    }

    /// As the server does: cosign and keep, or refuse.
    fn add(&mut self, body: &str) -> Result<String, Refusal> {
        let c = self.log.add_checkpoint(body, self.name, &self.key, T)?;
        self.log.last = Some(c.note.clone());
        Ok(c.note)
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).expect("copy");
        }
    }
}

#[test]
fn a_witness_cosigns_a_growing_log_and_answers_409_with_its_size() {
    let f = build(drafts(9), false, Vec::new());
    let l = Ledger::open_read_only(&f.path).expect("open");
    let mut w = Witness::new("w.example/1", W1, l.key_history().expect("keys"));
    let note = w.add(&body(&l, 0, 4)).expect("first checkpoint");
    assert_eq!(w.cosigner().verify(&note), Ok(Some(T)));
    // A log that does not know the witness's size starts from 0: 409 with 4.
    assert_eq!(w.add(&body(&l, 0, 10)), Err(Refusal::Conflict { size: 4 }));
    assert_eq!(w.add(&body(&l, 4, 10)).map(|_| ()), Ok(()));
    // The same tree again is consistent (old = size, equal roots).
    assert_eq!(w.add(&body(&l, 10, 10)).map(|_| ()), Ok(()));
    // An old size past the checkpoint's: 400.
    let mut bad = body(&l, 10, 10);
    bad = bad.replacen("old 10", "old 11", 1);
    assert!(matches!(w.add(&bad), Err(Refusal::BadRequest(_))));
    // A checkpoint of another ledger: 404; one whose signature is changed: 403.
    let other = build(drafts(2), false, Vec::new());
    let o = Ledger::open_read_only(&other.path).expect("open");
    assert!(matches!(w.add(&body(&o, 0, 3)), Err(Refusal::UnknownOrigin(_))));
    let forged = body(&l, 10, 10).replace("\n10\n", "\n11\n");
    assert!(matches!(w.add(&forged), Err(Refusal::Forbidden(_))));
}

/// The tail is cut and regrown by the writer with the real key, past the
/// size the witness cosigned: the regrown log's checkpoint verifies on its
/// own, the witness refuses it (422), and so does consistency against the
/// checkpoint it had cosigned.
#[test]
fn a_tail_cut_and_regrown_with_the_real_key_is_refused_by_the_witness() {
    let f = build(drafts(12), false, Vec::new());
    let (history, cosigned, size) = {
        let l = Ledger::open_read_only(&f.path).expect("open");
        let history = l.key_history().expect("keys");
        let mut w = Witness::new("w.example/1", W1, history.clone());
        let size = l.tree_size();
        let cosigned = w.add(&body(&l, 0, size)).expect("cosigned before the cut");
        (history, cosigned, size)
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
    }
    let l = Ledger::open_read_only(&f.path).expect("open");
    let new = l.tree_size();
    assert!(new > size);
    let mut w = Witness::new("w.example/1", W1, history.clone());
    w.log.last = Some(cosigned.clone());
    // The log proves from the witness's size as well as it can: no proof
    // leads from the cosigned root to the regrown one.
    let refusal = w.add(&body(&l, size, new)).expect_err("the witness must refuse");
    assert!(matches!(refusal, Refusal::Inconsistent(_)), "{refusal:?}");
    assert_eq!(refusal.status(), 422);
    // The witness kept what it had cosigned.
    assert_eq!(w.log.last.as_deref(), Some(cosigned.as_str()));
    // And a verifier holding the cosigned checkpoint refuses the regrown log.
    let proof = l
        .prove_consistency(size, new, &SigningKey::from_seed(KEY_A))
        .expect("prove");
    assert_eq!(
        proof.verify(&history, &cosigned).map_err(|r| r.kind).err(),
        Some(RejectKind::BadProof)
    );
}

/// A log forked into two histories, both signed with the real key, each
/// shown to one witness, then to the other: each witness refuses the one
/// not consistent with what it saw, so no checkpoint of either branch
/// gets two cosignatures, and a 2-of-2 policy refuses both.
#[test]
fn a_fork_shown_to_two_witnesses_never_gets_both_cosignatures() {
    let f = build(drafts(6), false, Vec::new());
    let fork_dir = tempfile::tempdir().expect("tempdir");
    let fork = fork_dir.path().join("ledger");
    copy_dir(&f.path, &fork);
    remove_acked_mark(&f.path);
    remove_acked_mark(&fork);
    for (path, base) in [(&f.path, 100), (&fork, 200)] {
        let l = Ledger::open(path, &f.keys).expect("open branch");
        for i in 0..5 {
            l.append_blocking(draft(base + i)).expect("grow branch");
        }
    }
    let a = Ledger::open_read_only(&f.path).expect("open a");
    let b = Ledger::open_read_only(&fork).expect("open b");
    let size = a.tree_size();
    assert_eq!(size, b.tree_size());
    assert_ne!(a.tree_root(size).expect("root"), b.tree_root(size).expect("root"));
    let history = a.key_history().expect("keys");
    assert_eq!(
        history,
        b.key_history().expect("keys"),
        "one log, one key, two histories"
    );

    let mut w1 = Witness::new("w.example/1", W1, history.clone());
    let mut w2 = Witness::new("w.example/2", W2, history.clone());
    let note_a = w1.add(&body(&a, 0, size)).expect("w1 cosigns branch a");
    let note_b = w2.add(&body(&b, 0, size)).expect("w2 cosigns branch b");
    // Each refuses the other branch (same size, another root: 422).
    assert!(matches!(w1.add(&body(&b, size, size)), Err(Refusal::Inconsistent(_))));
    assert!(matches!(w2.add(&body(&a, size, size)), Err(Refusal::Inconsistent(_))));
    // Nor can either branch grow past the other witness.
    {
        let l = Ledger::open(&f.path, &f.keys).expect("open a");
        l.append_blocking(draft(300)).expect("grow a");
    }
    let a = Ledger::open_read_only(&f.path).expect("open a");
    assert!(matches!(
        w2.add(&body(&a, size, size + 1)),
        Err(Refusal::Inconsistent(_))
    ));
    let witnesses = [w1.cosigner(), w2.cosigner()];
    for note in [&note_a, &note_b] {
        assert!(history.verify_checkpoint(note).is_ok(), "each branch is validly signed");
        assert_eq!(
            require_cosigners(note, &witnesses, 2).map_err(|r| r.kind),
            Err(RejectKind::TooFewWitnesses)
        );
        assert_eq!(require_cosigners(note, &witnesses, 1).map(|n| n.len()), Ok(1));
    }
}

/// A cosignature by a key that is not one of the trusted witnesses' does
/// not count, even under a trusted witness's name; one that does not
/// verify under a trusted key is an error.
#[test]
fn a_cosignature_from_an_unknown_witness_key_does_not_count() {
    let f = build(drafts(3), false, Vec::new());
    let l = Ledger::open_read_only(&f.path).expect("open");
    let mut w1 = Witness::new("w.example/1", W1, l.key_history().expect("keys"));
    let note = w1.add(&body(&l, 0, l.tree_size())).expect("cosigned");
    let text = witness::note_text(&note).expect("text").to_owned();
    let impostor = SigningKey::from_seed([0x99; 32]);
    // The impostor signs as w.example/2 and as w.example/1.
    let mut forged = witness::add_signatures(&note, &cosign("w.example/2", &impostor, &text, T));
    forged = witness::add_signatures(&forged, &cosign("w.example/1", &impostor, &text, T));
    let w2 = Witness::new("w.example/2", W2, l.key_history().expect("keys"));
    let trusted = [w1.cosigner(), w2.cosigner()];
    assert_eq!(
        require_cosigners(&forged, &trusted, 2).map_err(|r| r.kind),
        Err(RejectKind::TooFewWitnesses)
    );
    assert_eq!(
        require_cosigners(&forged, &trusted, 1),
        Ok(vec!["w.example/1".to_owned()])
    );
    // A trusted witness's line with its key id but a changed signature.
    let line = cosign("w.example/2", &w2.key, &text, T);
    let mut sig = line.trim_end().rsplit_once(' ').expect("sig").1.to_owned();
    sig.replace_range(20..24, if &sig[20..24] == "AAAA" { "BBBB" } else { "AAAA" });
    let broken = witness::add_signatures(&note, &format!("\u{2014} w.example/2 {sig}\n"));
    assert_eq!(
        require_cosigners(&broken, &trusted, 1).map_err(|r| r.kind),
        Err(RejectKind::BadSignature)
    );
}

/// One witness key trusted under two names counts once: a cosignature does
/// not sign its witness's name, so the line of one name, relabelled, would
/// pass for the other and make one witness two.
#[test]
fn one_key_under_two_names_counts_once() {
    let f = build(drafts(3), false, Vec::new());
    let l = Ledger::open_read_only(&f.path).expect("open");
    let mut w1 = Witness::new("w.example/1", W1, l.key_history().expect("keys"));
    let note = w1.add(&body(&l, 0, l.tree_size())).expect("cosigned");
    let text = witness::note_text(&note).expect("text").to_owned();
    let relabelled = witness::add_signatures(&note, &cosign("w.example/3", &w1.key, &text, T));
    let twin = Cosigner {
        name: "w.example/3".into(),
        key: w1.cosigner().key,
    };
    let trusted = [w1.cosigner(), twin];
    assert_eq!(
        require_cosigners(&relabelled, &trusted, 2).map_err(|r| r.kind),
        Err(RejectKind::TooFewWitnesses)
    );
    assert_eq!(require_cosigners(&relabelled, &trusted, 1).map(|n| n.len()), Ok(1));
}
