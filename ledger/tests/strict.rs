//! What `docs/FORMAT.md` §6–§9 refuse that a laxer check would take, on a
//! real RocksDB store: signatures that batch (or plain) Ed25519
//! verification takes but `verify_strict` refuses; genesis and rotation
//! keys that are not canonical prime-order points; rotation proofs with a
//! small-order nonce; and which rotations make a key used too early
//! `key_not_valid` rather than `unknown_key`. Each forgery here is one the
//! holder of a key of the log can make: it needs the secret scalar, which
//! these tests derive from the fixtures' seeds.

mod common;

use common::*;
use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::{Scalar, clamp_integer};
use ed25519_dalek::{Signature, VerifyingKey};
use ledger::{Event, EventKind, FailureKind, Hash, Ledger, SealedEvent, SigningKey, Value};
use sha2::{Digest, Sha512};

/// The secret scalar of an Ed25519 seed (RFC 8032 §5.1.5).
fn secret_scalar(seed: [u8; 32]) -> Scalar {
    let h = Sha512::digest(seed);
    let mut lower = [0u8; 32];
    lower.copy_from_slice(&h[..32]);
    Scalar::from_bytes_mod_order(clamp_integer(lower))
}

/// Ed25519's challenge `k = SHA-512(R ‖ A ‖ M) mod ℓ`.
fn challenge(r: &[u8; 32], public: &[u8; 32], msg: &[u8]) -> Scalar {
    let mut h = Sha512::new();
    h.update(r);
    h.update(public);
    h.update(msg);
    Scalar::from_bytes_mod_order_wide(&h.finalize().into())
}

/// A signature `(R, s = r + k·a)` whose first half is `r_bytes`, which need
/// not be the encoding of `r·B`.
fn sign_with(r: Scalar, r_bytes: [u8; 32], a: Scalar, public: [u8; 32], msg: &[u8]) -> Signature {
    let s = r + challenge(&r_bytes, &public, msg) * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&r_bytes);
    sig[32..].copy_from_slice(s.as_bytes());
    Signature::from_bytes(&sig)
}

/// The public key of `seed` plus a point of order 8: a mixed-order key.
fn mixed_key(seed: [u8; 32]) -> [u8; 32] {
    (EdwardsPoint::mul_base(&secret_scalar(seed)) + EIGHT_TORSION[1])
        .compress()
        .to_bytes()
}

/// A signature under [`mixed_key`] that `verify_strict` takes: its holder
/// tries nonces until the challenge is a multiple of 8, where the
/// small-order part of the key drops out of the equation.
fn sign_mixed(seed: [u8; 32], msg: &[u8]) -> Signature {
    let public = mixed_key(seed);
    let r = (1u64..)
        .map(Scalar::from)
        .find(|r| {
            challenge(&EdwardsPoint::mul_base(r).compress().to_bytes(), &public, msg).as_bytes()[0].is_multiple_of(8)
        })
        .expect("one nonce in eight");
    let sig = sign_with(
        r,
        EdwardsPoint::mul_base(&r).compress().to_bytes(),
        secret_scalar(seed),
        public,
        msg,
    );
    let key = VerifyingKey::from_bytes(&public).expect("decodes");
    assert!(
        key.verify_strict(msg, &sig).is_ok(),
        "the ground signature verifies strictly"
    );
    sig
}

/// The identity's encoding, and a non-canonical one of it (`y = p + 1`).
const IDENTITY: [u8; 32] = {
    let mut b = [0u8; 32];
    b[0] = 1;
    b
};
const IDENTITY_NON_CANONICAL: [u8; 32] = {
    let mut b = [0xffu8; 32];
    b[0] = 0xee;
    b[31] = 0x7f;
    b
};

/// The record at `seq` with `signature` in place of its own.
fn with_signature(db: &rocksdb::DB, seq: u64, signature: &Signature) {
    let mut rec = get_record(db, seq);
    rec[33..97].copy_from_slice(&signature.to_bytes());
    put_record(db, seq, &rec);
}

fn decoded(db: &rocksdb::DB, seq: u64) -> SealedEvent {
    SealedEvent::decode(&get_record(db, seq)).expect("decode")
}

/// The record of `event` signed with `signature` over its hash, which
/// `sign` makes from the hash.
fn record_signed_by(event: &Event, sign: impl FnOnce(&Hash) -> Signature) -> Vec<u8> {
    let canonical = event.canonical_bytes();
    let hash = ledger::event_hash(&event.prev, &canonical);
    let mut rec = vec![ledger::RECORD_VERSION];
    rec.extend_from_slice(&hash.0);
    rec.extend_from_slice(&sign(&hash).to_bytes());
    rec.extend_from_slice(&canonical);
    rec
}

fn failure_of(f: &Fixture) -> ledger::Failure {
    verify(&f.path, None).failure.expect("verification fails")
}

/// A signature with the identity, or a non-canonical encoding of it, as its
/// `R` and `s = k·a` satisfies the cofactorless equation `s·B = R + k·A`,
/// so `verify_batch` (and plain `verify`) take it; `verify_strict` refuses
/// a small-order `R`, and so does verification (§6, §9 step 11). Before
/// verification checked each signature with `verify_strict`, its batches
/// passed this log.
#[test]
fn signatures_with_a_small_order_nonce_are_bad_signatures() {
    for r_bytes in [IDENTITY, IDENTITY_NON_CANONICAL] {
        let f = build(drafts(6), false, Vec::new());
        let public = SigningKey::from_seed(KEY_A).public();
        {
            let db = raw_db(&f.path);
            let hash = decoded(&db, 3).hash;
            let sig = sign_with(Scalar::ZERO, r_bytes, secret_scalar(KEY_A), public.to_bytes(), &hash.0);
            assert!(ed25519_dalek::verify_batch(&[&hash.0[..]], &[sig], &[public]).is_ok());
            assert!(public.verify_strict(&hash.0, &sig).is_err());
            with_signature(&db, 3, &sig);
        }
        let failure = failure_of(&f);
        assert_eq!((failure.seq, failure.kind), (3, FailureKind::BadSignature), "{failure}");
    }
}

/// A `key.rotated` event in place of the head, from key A to `new_public`
/// (whose id it names) with `proof`, signed by key A.
fn rotation_at_head(f: &Fixture, new_public: [u8; 32], proof: impl FnOnce(&[u8]) -> Signature) {
    let ledger_id = Ledger::open_read_only(&f.path).expect("open").ledger_id();
    let db = raw_db(&f.path);
    let mut event = decoded(&db, f.head).event;
    let new_id = ledger::key_id(&VerifyingKey::from_bytes(&new_public).expect("decodes"));
    let message = {
        let mut h = blake3::Hasher::new();
        h.update(b"sealgate.rotation.v1\0");
        h.update(&ledger_id);
        h.update(&event.key.0);
        h.update(&new_public);
        h.finalize()
    };
    event.kind = EventKind::KeyRotated;
    event.body = ledger::Object::from([
        ("new_key".to_owned(), Value::from(new_id.to_string())),
        ("new_public_key".to_owned(), Value::from(hex::encode(new_public))),
        (
            "proof".to_owned(),
            Value::from(hex::encode(proof(message.as_bytes()).to_bytes())),
        ),
    ]);
    let key_a = SigningKey::from_seed(KEY_A);
    put_record(&db, f.head, &record_signed_by(&event, |h| key_a.sign_hash(h)));
}

/// A rotation proof is an Ed25519 signature like any other: checked with
/// `verify_strict` (§6, §8), so a proof whose `R` is the identity is
/// refused (plain `verify` took it).
#[test]
fn a_rotation_proof_with_a_small_order_nonce_is_a_bad_rotation() {
    let f = build(drafts(3), false, Vec::new());
    let new_public = SigningKey::from_seed(KEY_B).public().to_bytes();
    rotation_at_head(&f, new_public, |msg| {
        sign_with(Scalar::ZERO, IDENTITY, secret_scalar(KEY_B), new_public, msg)
    });
    let failure = failure_of(&f);
    assert_eq!(
        (failure.seq, failure.kind),
        (f.head, FailureKind::BadRotation),
        "{failure}"
    );
    assert!(failure.detail.contains("proof does not verify"), "{failure}");
}

/// A rotation to a mixed-order key, with a proof that verifies strictly
/// under it, is refused for the key itself (§6: keys are canonical
/// prime-order points).
#[test]
fn a_rotation_to_a_mixed_order_key_is_a_bad_rotation() {
    let f = build(drafts(3), false, Vec::new());
    rotation_at_head(&f, mixed_key(KEY_B), |msg| sign_mixed(KEY_B, msg));
    let failure = failure_of(&f);
    assert_eq!(
        (failure.seq, failure.kind),
        (f.head, FailureKind::BadRotation),
        "{failure}"
    );
    assert!(failure.detail.contains("mixed order"), "{failure}");
}

/// A genesis whose key is the identity (small order) or mixed-order, signed
/// so that the signature itself would pass, is `bad_genesis` (§7).
#[test]
fn a_genesis_key_that_is_not_a_prime_order_point_is_a_bad_genesis() {
    for (public, want) in [(IDENTITY, "weak (small-order)"), (mixed_key(KEY_A), "mixed order")] {
        let f = build(drafts(2), false, Vec::new());
        {
            let db = raw_db(&f.path);
            let mut event = decoded(&db, 0).event;
            event.body.insert("public_key".into(), Value::from(hex::encode(public)));
            event.key = ledger::key_id(&VerifyingKey::from_bytes(&public).expect("decodes"));
            let rec = record_signed_by(&event, |h| {
                if public == IDENTITY {
                    // s·B = R + k·O holds for R = s·B, whatever k.
                    let s = Scalar::from(5u8);
                    let r = EdwardsPoint::mul_base(&s).compress().to_bytes();
                    sign_with(s, r, Scalar::ZERO, public, &h.0)
                } else {
                    sign_mixed(KEY_A, &h.0)
                }
            });
            put_record(&db, 0, &rec);
        }
        let failure = failure_of(&f);
        assert_eq!((failure.seq, failure.kind), (0, FailureKind::BadGenesis), "{failure}");
        assert!(failure.detail.contains(want), "{failure}");
    }
}

/// §9 step 8: a key the schedule does not hold is `key_not_valid` when a
/// `key.rotated` event at or after its use names it as `new_key`, valid or
/// not (verification stops before it), and `unknown_key` otherwise. The
/// store's rotation index (unsigned, and absent from an export) plays no
/// part: here the naming event is not in it.
#[test]
fn a_key_that_a_later_rotation_names_is_not_valid_yet_even_if_that_rotation_is_bad() {
    for named_later in [true, false] {
        // Key A signs 0..=3 (the rotation to B is 3), key B 4..=6.
        let f = build(drafts(2), true, drafts(3));
        assert_eq!((f.rotation, f.head), (Some(3), 6));
        let stranger = SigningKey::from_seed(KEY_C);
        {
            let db = raw_db(&f.path);
            resign(&db, 1, &stranger);
            if named_later {
                // Event 5 becomes a rotation to the stranger's key: malformed
                // as a rotation (no public key, no proof), and not indexed.
                let mut event = decoded(&db, 5).event;
                event.kind = EventKind::KeyRotated;
                event.body = ledger::Object::from([("new_key".to_owned(), Value::from(stranger.id().to_string()))]);
                let (_, rec) = signed_record(&event, &SigningKey::from_seed(KEY_B));
                put_record(&db, 5, &rec);
            }
        }
        let failure = failure_of(&f);
        let want = if named_later {
            FailureKind::KeyNotValid
        } else {
            FailureKind::UnknownKey
        };
        assert_eq!((failure.seq, failure.kind), (1, want), "{failure}");
        if named_later {
            assert!(failure.detail.contains("the rotation at seq 5"), "{failure}");
        }
    }
}
