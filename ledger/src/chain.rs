//! The hash chain, the stored record format, and the bodies of the two kinds
//! the ledger writes itself (genesis and key rotation).

use ed25519_dalek::Signature;

use crate::canonical::{Object, Value};
use crate::event::{Event, EventKind, Hash, KeyId};
use crate::keys;

/// Domain tag of the event hash:
/// `hash = BLAKE3(EVENT_DOMAIN ‖ prev hash ‖ canonical bytes)`.
pub const EVENT_DOMAIN: &[u8] = b"sealgate.event.v1\0";

/// Version byte that starts every stored record.
pub const RECORD_VERSION: u8 = 1;
/// Where the parts of a record lie: `version ‖ hash ‖ signature ‖ canonical`.
pub(crate) const RECORD_HASH: std::ops::Range<usize> = 1..33;
pub(crate) const RECORD_SIGNATURE: std::ops::Range<usize> = 33..97;
pub(crate) const RECORD_HEADER_LEN: usize = RECORD_SIGNATURE.end;

/// The hash of an event, given the hash of its predecessor.
pub fn event_hash(prev: &Hash, canonical: &[u8]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(EVENT_DOMAIN);
    h.update(&prev.0);
    h.update(canonical);
    Hash(*h.finalize().as_bytes())
}

/// A stored record, split into its parts but not yet decoded or checked.
#[derive(Clone, Copy, Debug)]
pub struct RawRecord<'a> {
    pub hash: Hash,
    pub signature: [u8; 64],
    pub canonical: &'a [u8],
}

impl<'a> RawRecord<'a> {
    /// Splits `version ‖ hash ‖ signature ‖ canonical bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<RawRecord<'a>, String> {
        if bytes.len() < RECORD_HEADER_LEN + 2 {
            return Err(format!(
                "record is {} bytes, shorter than the {RECORD_HEADER_LEN}-byte header plus an envelope",
                bytes.len()
            ));
        }
        if bytes[0] != RECORD_VERSION {
            return Err(format!(
                "unknown record version {} (this build reads {RECORD_VERSION})",
                bytes[0]
            ));
        }
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&bytes[RECORD_HASH]);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&bytes[RECORD_SIGNATURE]);
        Ok(RawRecord {
            hash: Hash(hash),
            signature,
            canonical: &bytes[RECORD_HEADER_LEN..],
        })
    }
}

/// A complete event as stored: envelope, hash and signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedEvent {
    pub event: Event,
    pub hash: Hash,
    pub signature: Signature,
    /// The exact canonical bytes that were hashed and signed.
    pub canonical: Vec<u8>,
}

impl SealedEvent {
    /// Decodes a stored record. This checks the format only: hashes, links
    /// and signatures are the verifier's job.
    pub fn decode(bytes: &[u8]) -> Result<SealedEvent, String> {
        let raw = RawRecord::parse(bytes)?;
        let event = Event::decode(raw.canonical)?;
        Ok(SealedEvent {
            event,
            hash: raw.hash,
            signature: Signature::from_bytes(&raw.signature),
            canonical: raw.canonical.to_vec(),
        })
    }

    /// The stored form: `version ‖ hash ‖ signature ‖ canonical bytes`.
    pub fn to_record(&self) -> Vec<u8> {
        encode_record(&self.hash, &self.signature, &self.canonical)
    }

    /// The event and its seal as plain JSON: `{"seq", "hash", "signature",
    /// "event": <envelope>}`. The envelope re-encoded canonically gives back
    /// the signed bytes.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "seq": self.event.seq,
            "hash": self.hash.to_hex(),
            "signature": hex::encode(self.signature.to_bytes()),
            "event": self.event.to_json(),
        })
    }
}

pub(crate) fn encode_record(hash: &Hash, signature: &Signature, canonical: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER_LEN + canonical.len());
    out.push(RECORD_VERSION);
    out.extend_from_slice(&hash.0);
    out.extend_from_slice(&signature.to_bytes());
    out.extend_from_slice(canonical);
    out
}

/// The body of `ledger.genesis`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Genesis {
    pub ledger_id: [u8; 16],
    pub public_key: ed25519_dalek::VerifyingKey,
}

impl Genesis {
    pub fn to_body(&self) -> Object {
        let mut o = Object::new();
        o.insert("format".into(), Value::Int(i128::from(RECORD_VERSION)));
        o.insert("ledger_id".into(), hex::encode(self.ledger_id).into());
        o.insert("public_key".into(), hex::encode(self.public_key.as_bytes()).into());
        o
    }

    /// Reads and checks a genesis event: kind, sequence 0, zero previous
    /// hash, and the envelope's key id matching the public key it carries.
    pub fn from_event(e: &Event) -> Result<Genesis, String> {
        if e.kind != EventKind::LedgerGenesis {
            return Err(format!("the event at seq 0 is `{}`, not `ledger.genesis`", e.kind));
        }
        if e.prev != Hash::ZERO {
            return Err("genesis event's prev is not all zeros".into());
        }
        let ledger_id = crate::event::parse_hex_array(body_str(&e.body, "ledger_id")?)
            .map_err(|x| format!("genesis ledger_id {x}"))?;
        let public_key =
            keys::parse_public_key(body_str(&e.body, "public_key")?).map_err(|x| format!("genesis {x}"))?;
        match e.body.get("format") {
            Some(Value::Int(1)) => {}
            other => return Err(format!("genesis format is {other:?}, expected 1")),
        }
        if e.body.len() != 3 {
            return Err("genesis body has fields other than format, ledger_id, public_key".into());
        }
        if keys::key_id(&public_key) != e.key {
            return Err(format!(
                "genesis is signed as key {} but carries the public key of {}",
                e.key,
                keys::key_id(&public_key)
            ));
        }
        Ok(Genesis { ledger_id, public_key })
    }
}

/// The body of `key.rotated`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotation {
    pub new_key: KeyId,
    pub new_public_key: ed25519_dalek::VerifyingKey,
    /// Signature by the new key over the rotation message (see `docs/FORMAT.md`).
    pub proof: Signature,
    pub reason: Option<String>,
}

impl Rotation {
    pub fn to_body(&self) -> Object {
        let mut o = Object::new();
        o.insert("new_key".into(), self.new_key.to_string().into());
        o.insert(
            "new_public_key".into(),
            hex::encode(self.new_public_key.as_bytes()).into(),
        );
        o.insert("proof".into(), hex::encode(self.proof.to_bytes()).into());
        if let Some(r) = &self.reason {
            o.insert("reason".into(), r.as_str().into());
        }
        o
    }

    /// Reads a rotation event and checks its proof of possession.
    pub fn from_event(e: &Event, ledger_id: &[u8; 16]) -> Result<Rotation, String> {
        let new_public_key =
            keys::parse_public_key(body_str(&e.body, "new_public_key")?).map_err(|x| format!("rotation {x}"))?;
        let new_key: KeyId = body_str(&e.body, "new_key")?
            .parse()
            .map_err(|x| format!("rotation new_{x}"))?;
        if keys::key_id(&new_public_key) != new_key {
            return Err(format!(
                "rotation names key {new_key} but carries the public key of {}",
                keys::key_id(&new_public_key)
            ));
        }
        if new_key == e.key {
            return Err(format!("rotation from key {new_key} to itself"));
        }
        let proof_bytes: [u8; 64] =
            crate::event::parse_hex_array(body_str(&e.body, "proof")?).map_err(|x| format!("rotation proof {x}"))?;
        let proof = Signature::from_bytes(&proof_bytes);
        if !keys::verify_rotation_proof(ledger_id, e.key, &new_public_key, &proof) {
            return Err(format!(
                "rotation proof does not verify: key {new_key} did not sign its introduction"
            ));
        }
        let reason = match e.body.get("reason") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => return Err(format!("rotation reason is {}, expected a string", other.type_name())),
        };
        let expected_len = 3 + usize::from(reason.is_some());
        if e.body.len() != expected_len {
            return Err("rotation body has unknown fields".into());
        }
        Ok(Rotation {
            new_key,
            new_public_key,
            proof,
            reason,
        })
    }
}

fn body_str<'a>(body: &'a Object, key: &str) -> Result<&'a str, String> {
    body.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("body field `{key}` missing or not a string"))
}

#[cfg(test)]
mod test_vectors {
    //! The worked example in `docs/FORMAT.md`. If this test fails, the format
    //! changed: old logs would no longer verify.

    use super::*;
    use crate::event::{Actor, Correlation, Draft, RequestId, Subject};
    use crate::keys::SigningKey;
    use crate::timestamp::Timestamp;

    pub(crate) fn vectors() -> Vec<(Vec<u8>, Hash, String)> {
        let key = SigningKey::from_seed([7; 32]);
        let ledger_id = [
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
        ];
        let mut genesis = Draft::new(EventKind::LedgerGenesis);
        genesis.actor.principal = Some("sealgate:init".into());
        genesis.body = Genesis {
            ledger_id,
            public_key: key.public(),
        }
        .to_body();
        let e0 = Event::from_draft(
            genesis,
            0,
            Timestamp::from_nanos(1_795_000_000_000_000_000),
            Hash::ZERO,
            key.id(),
        );
        let c0 = e0.canonical_bytes();
        let h0 = event_hash(&Hash::ZERO, &c0);

        let mut body = Object::new();
        body.insert(
            "arguments".into(),
            "{\"path\":\"/srv/a \\\"b\\\".txt\",\"n\":1.5}".into(),
        );
        body.insert("note".into(), "tab\there, é, \u{1}".into());
        body.insert("size".into(), Value::Int(-42));
        let call = Draft {
            kind: EventKind::ToolCallRequested,
            actor: Actor {
                principal: Some("alice@example.com".into()),
                teams: vec!["sre".into(), "db".into()],
                agent: Some("claude-code/2.1".into()),
                session: Some("s-1".into()),
            },
            subject: Subject {
                server: Some("fs".into()),
                tool: Some("write_file".into()),
                env: vec!["prod".into()],
                ..Subject::default()
            },
            correlation: Correlation {
                request_id: Some(RequestId::Int(7)),
                trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
                ..Correlation::default()
            },
            body,
        };
        let e1 = Event::from_draft(call, 1, Timestamp::from_nanos(1_795_000_000_123_456_789), h0, key.id());
        let c1 = e1.canonical_bytes();
        let h1 = event_hash(&h0, &c1);
        [(c0, h0), (c1, h1)]
            .into_iter()
            .map(|(c, h)| (c, h, hex::encode(key.sign_hash(&h).to_bytes())))
            .collect()
    }

    /// FORMAT.md §12's Merkle tree and checkpoint of the two events.
    #[test]
    fn format_md_worked_tree_example() {
        use crate::checkpoint::{Checkpoint, origin};
        use crate::merkle::{leaf_data, leaf_hash, node_hash};
        let v = vectors();
        let leaves: Vec<[u8; 32]> = v
            .iter()
            .enumerate()
            .map(|(seq, (_, hash, sig))| {
                let sig: [u8; 64] = hex::decode(sig).expect("hex").try_into().expect("64 bytes");
                leaf_hash(&leaf_data(seq as u64, hash, &sig))
            })
            .collect();
        let root = node_hash(&leaves[0], &leaves[1]);
        let ledger_id = [
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
        ];
        let note = Checkpoint {
            origin: origin(&ledger_id),
            size: 2,
            root,
        }
        .sign(&SigningKey::from_seed([7; 32]));
        let got = format!(
            "leaf 0 {}\nleaf 1 {}\nroot {}\n{note}",
            hex::encode(leaves[0]),
            hex::encode(leaves[1]),
            hex::encode(root)
        );
        assert_eq!(
            got,
            include_str!("../tests/data/format-example-tree.txt"),
            "got:\n{got}"
        );
    }

    /// FORMAT.md §16's worked example: the bundle of session `s-1` in the
    /// tree of §12's two events.
    #[test]
    fn format_md_worked_evidence_example() {
        use crate::checkpoint::{Checkpoint, KeyHistory, origin, vkey};
        use crate::evidence::{BundleWriter, Selection, verify_evidence};
        use crate::merkle::{leaf_data, leaf_hash, node_hash};
        let key = SigningKey::from_seed([7; 32]);
        let sealed: Vec<SealedEvent> = vectors()
            .into_iter()
            .map(|(canonical, hash, sig)| {
                let sig: [u8; 64] = hex::decode(sig).expect("hex").try_into().expect("64 bytes");
                SealedEvent {
                    event: Event::decode(&canonical).expect("event"),
                    hash,
                    signature: Signature::from_bytes(&sig),
                    canonical,
                }
            })
            .collect();
        let leaves: Vec<[u8; 32]> = sealed
            .iter()
            .map(|e| leaf_hash(&leaf_data(e.event.seq, &e.hash, &e.signature.to_bytes())))
            .collect();
        let ledger_id = [
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
        ];
        let note = Checkpoint {
            origin: origin(&ledger_id),
            size: 2,
            root: node_hash(&leaves[0], &leaves[1]),
        }
        .sign(&key);
        let mut out = Vec::new();
        let selection = Selection::Session("s-1".into());
        let mut w = BundleWriter::start(
            &mut out,
            &["FORMAT.md section 16, worked example".into()],
            &selection,
            &note,
        )
        .expect("start");
        w.event(&sealed[0], Some(&[leaves[1]])).expect("event 0");
        w.event(&sealed[1], Some(&[leaves[0]])).expect("event 1");
        w.seal(&origin(&ledger_id), &key).expect("seal");
        let got = String::from_utf8(out).expect("utf-8");
        assert_eq!(
            got,
            include_str!("../tests/data/format-example-evidence.txt"),
            "got:\n{got}"
        );
        let trusted = KeyHistory::parse(&vkey(&origin(&ledger_id), &key.public())).expect("vkey");
        let v = verify_evidence(&got, &trusted, &[], 0).expect("the example verifies");
        assert_eq!(v.events.len(), 1);
        assert_eq!(v.key_events, 1);
    }

    #[test]
    fn format_md_worked_example() {
        let key = SigningKey::from_seed([7; 32]);
        assert_eq!(key.id().to_string(), "ea539e327da5c57a04a906a2e324d3b5");
        assert_eq!(
            key.public_hex(),
            "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c"
        );
        let v = vectors();
        let expected = [
            (
                include_str!("../tests/data/format-example-0.json").trim_end(),
                "aff8b23c743e70f7e3b9bee29fde543adf5d386edda6dcbe88a79192a93c82ab",
                "a6e98bf8071574b9f553e029d699409524e43097bb549578810c103987609a055237fea30a4b250f666212c9d18abe50f226adb63ccb4d6ae22319727dab870a",
            ),
            (
                include_str!("../tests/data/format-example-1.json").trim_end(),
                "41f78c1d2a51dba6841f16e5c5a61230ab6bb231cc6c4607a64fa8beaacdc0ac",
                "a9fe9c92d12fdc51130f11952ec2cc4941e49300e7b76a51201e79a0e1670da1d2551719ba7fb69d79f610dd765fc22a2b44d167fb1a805554d8aba2f3ab850e",
            ),
        ];
        for ((canonical, hash, sig), (want_c, want_h, want_s)) in v.iter().zip(expected) {
            assert_eq!(std::str::from_utf8(canonical).expect("utf8"), want_c);
            assert_eq!(hash.to_hex(), want_h);
            assert_eq!(sig, want_s);
        }
    }
}
