//! Witnesses and their cosignatures (`docs/FORMAT.md` §15): the formats of
//! c2sp.org/tlog-cosignature (Ed25519, `cosignature/v1`) and the decisions
//! of a c2sp.org/tlog-witness `add-checkpoint`, without the HTTP around
//! them (the gateway's `witness` module serves and calls them).
//!
//! - A **cosignature** is a note signature line by the witness's key over
//!   `cosignature/v1\ntime T\n` followed by the checkpoint's text: the
//!   witness says that, at time `T`, this is the largest tree of the log it
//!   has seen consistent with every one before. Its signature bytes are
//!   `key id (4) ‖ T (8, big-endian) ‖ Ed25519 signature (64)`, the key id
//!   `SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public key)[:4]`.
//! - [`WitnessLog::add_checkpoint`] is a witness's whole check of one
//!   request against the last checkpoint it cosigned for the origin.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::checkpoint::{CONSISTENCY_PROOF_HEADER, Checkpoint, ConsistencyProof, KeyHistory, RejectKind, Rejection};
use crate::keys::SigningKey;
use crate::merkle::{self, TreeHash};

/// The signature type byte of an Ed25519 cosignature (c2sp.org/tlog-cosignature).
pub const COSIGNATURE_ED25519: u8 = 0x04;
/// The first line of the message a cosignature signs.
const COSIGNATURE_HEADER: &str = "cosignature/v1";

/// The cosigner key id: `SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public key)[:4]`.
pub fn cosigner_key_id(name: &str, key: &VerifyingKey) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', COSIGNATURE_ED25519]);
    h.update(key.as_bytes());
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// A witness's verifier key: `name+hex(key id)+base64(0x04 ‖ key)`.
pub fn cosigner_vkey(name: &str, key: &VerifyingKey) -> String {
    let mut material = vec![COSIGNATURE_ED25519];
    material.extend_from_slice(key.as_bytes());
    format!("{name}+{:08x}+{}", cosigner_key_id(name, key), B64.encode(material))
}

/// A witness a verifier trusts: its name and key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cosigner {
    pub name: String,
    pub key: VerifyingKey,
}

impl Cosigner {
    /// Parses a witness's verifier key (signature type 0x04); the id must
    /// match the name and key.
    pub fn parse_vkey(text: &str) -> Result<Cosigner, String> {
        let text = text.trim();
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id), Some(material)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("witness key `{text}` is not NAME+ID+KEY"));
        };
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
            return Err(format!(
                "witness key `{text}`: the name is empty or holds a space or a plus"
            ));
        }
        let material = B64
            .decode(material)
            .map_err(|e| format!("witness key `{text}`: key material is not base64: {e}"))?;
        let (alg, public) = material
            .split_first()
            .ok_or_else(|| format!("witness key `{text}`: no key material"))?;
        if *alg != COSIGNATURE_ED25519 {
            return Err(format!(
                "witness key `{text}`: signature type {alg:#04x}, a witness's Ed25519 key is type 0x04"
            ));
        }
        let key =
            crate::keys::parse_public_key(&hex::encode(public)).map_err(|e| format!("witness key `{text}`: {e}"))?;
        if id.len() != 8 || id != format!("{:08x}", cosigner_key_id(name, &key)) {
            return Err(format!(
                "witness key `{text}`: key id `{id}` does not match its name and key"
            ));
        }
        Ok(Cosigner {
            name: name.to_owned(),
            key,
        })
    }

    pub fn vkey(&self) -> String {
        cosigner_vkey(&self.name, &self.key)
    }

    /// The time of this witness's valid cosignature on `note`, if the note
    /// carries one; lines of other keys are ignored. A line with this
    /// witness's name and key id whose signature does not verify is an
    /// error.
    pub fn verify(&self, note: &str) -> Result<Option<u64>, Rejection> {
        let (text, sigs) = crate::checkpoint::split_note(note)?;
        let id = cosigner_key_id(&self.name, &self.key).to_be_bytes();
        for (name, sig) in sigs {
            if name != self.name || sig.len() < 4 || sig[..4] != id {
                continue;
            }
            let bad = || {
                Rejection::new(
                    RejectKind::BadSignature,
                    format!("the cosignature of witness `{}` does not verify", self.name),
                )
            };
            if sig.len() != 4 + 8 + 64 {
                return Err(bad());
            }
            let mut t = [0u8; 8];
            t.copy_from_slice(&sig[4..12]);
            let time = u64::from_be_bytes(t);
            let signature = <[u8; 64]>::try_from(&sig[12..]).map_err(|_| bad())?;
            self.key
                .verify_strict(
                    cosigned_message(text, time).as_bytes(),
                    &Signature::from_bytes(&signature),
                )
                .map_err(|_| bad())?;
            return Ok(Some(time));
        }
        Ok(None)
    }
}

fn cosigned_message(text: &str, time: u64) -> String {
    format!("{COSIGNATURE_HEADER}\ntime {time}\n{text}")
}

/// The cosignature line (ending in a newline) of `key`, named `name`, on
/// the checkpoint `text` (the note's text, with its final newline) at
/// `time` (POSIX seconds).
pub fn cosign(name: &str, key: &SigningKey, text: &str, time: u64) -> String {
    let mut sig = cosigner_key_id(name, &key.public()).to_be_bytes().to_vec();
    sig.extend_from_slice(&time.to_be_bytes());
    sig.extend_from_slice(&key.sign_note(cosigned_message(text, time).as_bytes()).to_bytes());
    format!("\u{2014} {name} {}\n", B64.encode(sig))
}

/// The signature lines of `lines` (a witness's answer) added to `note`,
/// unless the note already holds that line.
pub fn add_signatures(note: &str, lines: &str) -> String {
    let mut out = note.to_owned();
    for line in lines.lines().filter(|l| l.starts_with('\u{2014}')) {
        if !note.lines().any(|l| l == line) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The note text of a signed note (with its final newline).
pub fn note_text(note: &str) -> Result<&str, Rejection> {
    crate::checkpoint::split_note(note).map(|(text, _)| text)
}

/// How many of `witnesses` (each counted once, by name and by key) validly
/// cosigned `note`, and which did. A cosignature does not sign its
/// witness's name, so one key given under two names counts once: its line
/// could be relabelled to pass for the other.
pub fn count_cosigners(note: &str, witnesses: &[Cosigner]) -> Result<Vec<String>, Rejection> {
    let mut out: Vec<String> = Vec::new();
    let mut keys: Vec<[u8; 32]> = Vec::new();
    for w in witnesses {
        let key = w.key.to_bytes();
        if w.verify(note)?.is_some() && !out.contains(&w.name) && !keys.contains(&key) {
            out.push(w.name.clone());
            keys.push(key);
        }
    }
    Ok(out)
}

/// Requires `min` of `witnesses` to have cosigned `note`, else
/// `too_few_witnesses` naming who did.
pub fn require_cosigners(note: &str, witnesses: &[Cosigner], min: usize) -> Result<Vec<String>, Rejection> {
    let names = count_cosigners(note, witnesses)?;
    if names.len() < min {
        return Err(Rejection::new(
            RejectKind::TooFewWitnesses,
            format!(
                "{} of the {} witnesses given cosigned the checkpoint ({}), {min} required",
                names.len(),
                witnesses.len(),
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            ),
        ));
    }
    Ok(names)
}

/// Why a witness does not cosign: the HTTP status c2sp.org/tlog-witness
/// gives it, and what exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 400: the request is not an `add-checkpoint` body, or its old size is
    /// past the checkpoint's.
    BadRequest(String),
    /// 403: no valid signature by a key the witness trusts for the origin.
    Forbidden(String),
    /// 404: the witness follows no log of this origin.
    UnknownOrigin(String),
    /// 409: the old size is not the size the witness last cosigned (which
    /// is given, for the log to send a proof from it).
    Conflict { size: u64 },
    /// 422: the checkpoint is not consistent with the one the witness last
    /// cosigned: the log forked or was rewritten. The alarm.
    Inconsistent(String),
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::BadRequest(_) => 400,
            Refusal::Forbidden(_) => 403,
            Refusal::UnknownOrigin(_) => 404,
            Refusal::Conflict { .. } => 409,
            Refusal::Inconsistent(_) => 422,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::BadRequest(d) | Refusal::Forbidden(d) | Refusal::UnknownOrigin(d) | Refusal::Inconsistent(d) => {
                write!(f, "{} {d}", self.status())
            }
            Refusal::Conflict { size } => write!(f, "409 the witness last cosigned a tree of {size} events"),
        }
    }
}

/// What a witness knows of one log: its keys, and the checkpoint it last
/// cosigned (the log's note with the witness's cosignature), if any.
#[derive(Clone, Debug)]
pub struct WitnessLog {
    pub keys: KeyHistory,
    pub last: Option<String>,
}

/// An accepted `add-checkpoint`: the cosignature line to answer, and the
/// note to keep as the new last checkpoint.
#[derive(Clone, Debug)]
pub struct Cosigned {
    pub line: String,
    pub note: String,
    pub checkpoint: Checkpoint,
}

impl WitnessLog {
    /// The size and root of the last cosigned checkpoint (`(0, empty root)`
    /// before the first).
    pub fn last_tree(&self) -> Result<(u64, TreeHash), Rejection> {
        match &self.last {
            None => Ok((0, merkle::empty_root())),
            Some(note) => {
                let cp = Checkpoint::parse_text(note_text(note)?)?;
                Ok((cp.size, cp.root))
            }
        }
    }

    /// A witness's check of one `add-checkpoint` body: the checkpoint is
    /// signed by this log's key, the old size is the size last cosigned,
    /// and the consistency proof leads from the last cosigned root to the
    /// new one. Cosigns with `key` as `name` at `time` on success; the
    /// caller persists [`Cosigned::note`] before answering.
    pub fn add_checkpoint(&self, body: &str, name: &str, key: &SigningKey, time: u64) -> Result<Cosigned, Refusal> {
        let proof = ConsistencyProof::parse(&format!("{CONSISTENCY_PROOF_HEADER}\n{body}"))
            .map_err(|r| Refusal::BadRequest(r.detail))?;
        let text = note_text(&proof.checkpoint).map_err(|r| Refusal::BadRequest(r.detail))?;
        let checkpoint = Checkpoint::parse_text(text).map_err(|r| Refusal::BadRequest(r.detail))?;
        if checkpoint.origin != self.keys.origin {
            return Err(Refusal::UnknownOrigin(format!(
                "no log `{}` is followed here",
                checkpoint.origin
            )));
        }
        self.keys
            .verify_checkpoint(&proof.checkpoint)
            .map_err(|r| Refusal::Forbidden(r.to_string()))?;
        if proof.old > checkpoint.size {
            return Err(Refusal::BadRequest(format!(
                "old size {} is past the checkpoint's {}",
                proof.old, checkpoint.size
            )));
        }
        let (last_size, last_root) = self
            .last_tree()
            .map_err(|r| Refusal::Inconsistent(format!("the witness's own state cannot be read: {r}")))?;
        if proof.old != last_size {
            return Err(Refusal::Conflict { size: last_size });
        }
        if checkpoint.size == 0 && checkpoint.root != merkle::empty_root() {
            return Err(Refusal::Inconsistent("a tree of 0 events has the empty root".into()));
        }
        if last_size == 0 {
            if !proof.hashes.is_empty() {
                return Err(Refusal::Inconsistent("from size 0 the proof is empty".into()));
            }
        } else {
            merkle::verify_consistency(last_size, checkpoint.size, &last_root, &checkpoint.root, &proof.hashes)
                .map_err(|e| {
                    Refusal::Inconsistent(format!(
                        "the tree of {} events, root {}, is not an extension of the tree of {last_size} events, root {} this witness cosigned: {e}",
                        checkpoint.size,
                        B64.encode(checkpoint.root),
                        B64.encode(last_root)
                    ))
                })?;
        }
        let line = cosign(name, key, text, time);
        Ok(Cosigned {
            note: add_signatures(&proof.checkpoint, &line),
            line,
            checkpoint,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{HistoryKey, origin};

    fn log() -> (SigningKey, KeyHistory) {
        let key = SigningKey::from_seed([5; 32]);
        let keys = KeyHistory {
            origin: origin(&[0x22; 16]),
            keys: vec![HistoryKey {
                from: 0,
                key: key.public(),
            }],
        };
        (key, keys)
    }

    #[test]
    fn a_cosignature_verifies_under_its_vkey_and_not_another() {
        let (key, keys) = log();
        let note = Checkpoint {
            origin: keys.origin.clone(),
            size: 3,
            root: [9; 32],
        }
        .sign(&key);
        let w = SigningKey::from_seed([6; 32]);
        let cosigned = add_signatures(
            &note,
            &cosign("w.example/1", &w, note_text(&note).expect("text"), 1_700_000_000),
        );
        let vkey = cosigner_vkey("w.example/1", &w.public());
        let me = Cosigner::parse_vkey(&vkey).expect("vkey");
        assert_eq!(me.verify(&cosigned), Ok(Some(1_700_000_000)));
        assert_eq!(me.verify(&note), Ok(None));
        let other = Cosigner {
            name: "w.example/2".into(),
            key: SigningKey::from_seed([7; 32]).public(),
        };
        assert_eq!(
            count_cosigners(&cosigned, &[me.clone(), other.clone()]),
            Ok(vec!["w.example/1".into()])
        );
        assert_eq!(
            require_cosigners(&cosigned, &[me, other], 2).map_err(|r| r.kind),
            Err(RejectKind::TooFewWitnesses)
        );
        // The log's own key is not a witness's (type 0x01 is not 0x04).
        assert!(Cosigner::parse_vkey(&crate::checkpoint::vkey(&keys.origin, &key.public())).is_err());
        // The line is what c2sp.org/tlog-cosignature says, computed here
        // from the spec, not from `cosign`: key id SHA-256(name ‖ 0x0A ‖
        // 0x04 ‖ key)[:4], then the time, then Ed25519 over
        // `cosignature/v1\ntime T\n` and the note text.
        let line = cosigned.lines().last().expect("line");
        let sig = B64.decode(line.rsplit_once(' ').expect("sig").1).expect("base64");
        let mut h = Sha256::new();
        h.update(b"w.example/1\n\x04");
        h.update(w.public().as_bytes());
        assert_eq!(sig[..4], h.finalize()[..4]);
        assert_eq!(sig[4..12], 1_700_000_000u64.to_be_bytes());
        let message = format!("cosignature/v1\ntime 1700000000\n{}", note_text(&note).expect("text"));
        let s = Signature::from_bytes(&sig[12..].try_into().expect("64 bytes"));
        assert!(w.public().verify_strict(message.as_bytes(), &s).is_ok());
        // The log still verifies its own note with the cosignature on it.
        assert!(keys.verify_checkpoint(&cosigned).is_ok());
    }
}
