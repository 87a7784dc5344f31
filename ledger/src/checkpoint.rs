//! Checkpoints and proofs in the C2SP text formats, and their offline
//! verification (`docs/FORMAT.md`, "Checkpoints and proofs").
//!
//! - A **checkpoint** (c2sp.org/tlog-checkpoint) is a signed note
//!   (c2sp.org/signed-note) whose text is the origin (`sealgate/ledger/<ledger
//!   id hex>`), the tree size and the base64 root, signed with the ledger's
//!   Ed25519 key under the key name = the origin.
//! - An **inclusion proof** is a c2sp.org/tlog-proof: its `extra` line
//!   carries the event's leaf data (`seq ‖ event hash ‖ signature`), from
//!   which the verifier computes the leaf hash itself, followed by the
//!   event's canonical bytes, which must hash to that event hash.
//! - A **consistency proof** has no C2SP format of its own: it is the body
//!   of a c2sp.org/tlog-witness `add-checkpoint` request (`old SIZE`, the
//!   proof hashes, a blank line, the new checkpoint) under a first line
//!   `sealgate/consistency-proof@v1`.
//!
//! Verification needs no ledger: the proof, a checkpoint and the ledger's
//! [`KeyHistory`] (its public keys and the sequence number each one took
//! over from, which [`KeyHistory::from_schedule`] writes from the log).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::chain::event_hash;
use crate::event::{Event, Hash};
use crate::keys::SigningKey;
use crate::merkle::{self, LEAF_DATA_LEN, TreeHash};
use crate::schedule::KeySchedule;

/// The signature type byte of an Ed25519 note signature (c2sp.org/signed-note).
pub const NOTE_ED25519: u8 = 0x01;
/// The first line of an inclusion proof.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";
/// The first line of a consistency proof.
pub const CONSISTENCY_PROOF_HEADER: &str = "sealgate/consistency-proof@v1";
/// Most signature lines a note may carry.
const MAX_SIGNATURES: usize = 100;

/// The origin line (and key name) of a ledger's checkpoints.
pub fn origin(ledger_id: &[u8; 16]) -> String {
    format!("sealgate/ledger/{}", hex::encode(ledger_id))
}

/// The note key id: `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]`, big-endian.
pub fn note_key_id(name: &str, key: &VerifyingKey) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', NOTE_ED25519]);
    h.update(key.as_bytes());
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// The verifier key of `key` under `name`: `name+hex(key id)+base64(0x01 ‖ key)`.
pub fn vkey(name: &str, key: &VerifyingKey) -> String {
    let mut material = vec![NOTE_ED25519];
    material.extend_from_slice(key.as_bytes());
    format!("{name}+{:08x}+{}", note_key_id(name, key), B64.encode(material))
}

/// Parses a verifier key into its name and Ed25519 key; the id must match.
pub fn parse_vkey(text: &str) -> Result<(String, VerifyingKey), String> {
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id), Some(material)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("verifier key `{text}` is not NAME+ID+KEY"));
    };
    check_key_name(name)?;
    let material = B64
        .decode(material)
        .map_err(|e| format!("verifier key `{text}`: key material is not base64: {e}"))?;
    let (alg, public) = material
        .split_first()
        .ok_or_else(|| format!("verifier key `{text}`: no key material"))?;
    if *alg != NOTE_ED25519 {
        return Err(format!(
            "verifier key `{text}`: signature type {alg:#04x}, only Ed25519 (0x01) is supported"
        ));
    }
    let public: [u8; 32] = public.try_into().map_err(|_| {
        format!(
            "verifier key `{text}`: an Ed25519 key is 32 bytes, not {}",
            public.len()
        )
    })?;
    let key = crate::keys::parse_public_key(&hex::encode(public)).map_err(|e| format!("verifier key `{text}`: {e}"))?;
    if id.len() != 8 || id != format!("{:08x}", note_key_id(name, &key)) {
        return Err(format!(
            "verifier key `{text}`: key id `{id}` does not match its name and key"
        ));
    }
    Ok((name.to_owned(), key))
}

fn check_key_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(format!("key name `{name}` is empty or holds a space or a plus"));
    }
    Ok(())
}

/// Why a checkpoint or proof is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectKind {
    /// Not in the format (a note, a checkpoint, a proof, a key history).
    Malformed,
    /// The checkpoint names another log than the keys are for.
    OriginMismatch,
    /// No signature by any of the ledger's keys.
    UnknownKey,
    /// Signed by a key the ledger had retired before the checkpoint's size.
    RetiredKey,
    /// A signature by one of the ledger's keys does not verify.
    BadSignature,
    /// The proof's checkpoint is not the one it is checked against.
    CheckpointMismatch,
    /// The leaf data is not the event the proof is for.
    LeafMismatch,
    /// The event's signature in the leaf data does not verify under the key
    /// valid at its sequence number.
    BadEventSignature,
    /// The Merkle proof does not lead to the checkpoint's root.
    BadProof,
    /// Fewer of the trusted witnesses cosigned the checkpoint than the
    /// policy requires (`docs/FORMAT.md` §15).
    TooFewWitnesses,
    /// An evidence bundle's rotation event does not verify (§8), or is not
    /// signed by the key before it.
    BadRotation,
    /// An evidence bundle holds an event its selection does not select, or
    /// none that it does.
    SelectionMismatch,
    /// An evidence bundle's range does not reach before its start time or
    /// after its end time.
    IncompleteRange,
    /// An evidence bundle's seal is not over its bytes, or not by the key
    /// that signs its checkpoint's tree.
    BadSeal,
}

impl RejectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectKind::Malformed => "malformed",
            RejectKind::OriginMismatch => "origin_mismatch",
            RejectKind::UnknownKey => "unknown_key",
            RejectKind::RetiredKey => "retired_key",
            RejectKind::BadSignature => "bad_signature",
            RejectKind::CheckpointMismatch => "checkpoint_mismatch",
            RejectKind::LeafMismatch => "leaf_mismatch",
            RejectKind::BadEventSignature => "bad_event_signature",
            RejectKind::BadProof => "bad_proof",
            RejectKind::TooFewWitnesses => "too_few_witnesses",
            RejectKind::BadRotation => "bad_rotation",
            RejectKind::SelectionMismatch => "selection_mismatch",
            RejectKind::IncompleteRange => "incomplete_range",
            RejectKind::BadSeal => "bad_seal",
        }
    }
}

/// A refused checkpoint or proof: why, and what exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub kind: RejectKind,
    pub detail: String,
}

impl Rejection {
    pub(crate) fn new(kind: RejectKind, detail: impl Into<String>) -> Rejection {
        Rejection {
            kind,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.detail)
    }
}

impl std::error::Error for Rejection {}

fn malformed(detail: impl Into<String>) -> Rejection {
    Rejection::new(RejectKind::Malformed, detail)
}

/// A tree head: what a checkpoint's note text says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: TreeHash,
}

impl Checkpoint {
    /// The note text: `origin`, `size`, `base64(root)`, each ending in a newline.
    pub fn text(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root))
    }

    /// Parses a note text (extension lines are allowed and ignored).
    pub fn parse_text(text: &str) -> Result<Checkpoint, Rejection> {
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| malformed("the checkpoint text does not end in a newline"))?;
        let lines: Vec<&str> = body.split('\n').collect();
        if lines.len() < 3 || lines.iter().any(|l| l.is_empty()) {
            return Err(malformed(
                "a checkpoint is at least three non-empty lines: origin, tree size, root hash",
            ));
        }
        let size = parse_decimal(lines[1]).ok_or_else(|| {
            malformed(format!(
                "checkpoint tree size `{}` is not a decimal without leading zeroes",
                lines[1]
            ))
        })?;
        let root = parse_hash(lines[2]).map_err(|e| malformed(format!("checkpoint root: {e}")))?;
        Ok(Checkpoint {
            origin: lines[0].to_owned(),
            size,
            root,
        })
    }

    /// The signed note: the text, a blank line and the signature line.
    pub fn sign(&self, key: &SigningKey) -> String {
        let text = self.text();
        let mut sig = note_key_id(&self.origin, &key.public()).to_be_bytes().to_vec();
        sig.extend_from_slice(&key.sign_note(text.as_bytes()).to_bytes());
        format!("{text}\n\u{2014} {} {}\n", self.origin, B64.encode(sig))
    }
}

fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

fn parse_hash(s: &str) -> Result<TreeHash, String> {
    let bytes = B64.decode(s).map_err(|e| format!("`{s}` is not base64: {e}"))?;
    <TreeHash>::try_from(&bytes[..]).map_err(|_| format!("`{s}` is {} bytes, not a 32-byte hash", bytes.len()))
}

/// One key of a ledger: the public key and the first sequence number it
/// signs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryKey {
    pub from: u64,
    pub key: VerifyingKey,
}

/// A ledger's keys in order, as a verifier holds them: what checkpoints
/// and event signatures are checked against.
///
/// Text form (`sealgate key-history`): one line per key, `FROM VKEY`,
/// `FROM` the first sequence number the key signs (0 for the genesis key),
/// each `VKEY` named by the ledger's origin; `#` starts a comment. A file
/// holding a single verifier key alone is a history of that one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyHistory {
    pub origin: String,
    pub keys: Vec<HistoryKey>,
}

impl KeyHistory {
    /// The history of a ledger's key schedule.
    pub fn from_schedule(ledger_id: &[u8; 16], schedule: &KeySchedule) -> KeyHistory {
        KeyHistory {
            origin: origin(ledger_id),
            keys: schedule
                .entries()
                .iter()
                .map(|e| HistoryKey {
                    from: e.from,
                    key: e.key,
                })
                .collect(),
        }
    }

    pub fn to_text(&self) -> String {
        let mut out = format!(
            "# the keys of {}: FROM (first seq the key signs) and verifier key\n",
            self.origin
        );
        for k in &self.keys {
            out.push_str(&format!("{} {}\n", k.from, vkey(&self.origin, &k.key)));
        }
        out
    }

    pub fn parse(text: &str) -> Result<KeyHistory, Rejection> {
        let mut origin: Option<String> = None;
        let mut keys: Vec<HistoryKey> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |e: String| malformed(format!("key history line {}: {e}", n + 1));
            let (from, vk) = match line.split_once(' ') {
                Some((from, vk)) => (
                    parse_decimal(from).ok_or_else(|| bad(format!("`{from}` is not a sequence number")))?,
                    vk.trim(),
                ),
                None => (0, line),
            };
            let (name, key) = parse_vkey(vk).map_err(bad)?;
            match &origin {
                Some(o) if *o != name => {
                    return Err(bad(format!("key named `{name}`, the keys before it `{o}`")));
                }
                _ => origin = Some(name),
            }
            match keys.last() {
                None if from != 0 => return Err(bad("the first key must sign from seq 0".into())),
                Some(prev) if from <= prev.from => {
                    return Err(bad(format!("keys out of order: {from} after {}", prev.from)));
                }
                _ => {}
            }
            keys.push(HistoryKey { from, key });
        }
        match origin {
            Some(origin) => Ok(KeyHistory { origin, keys }),
            None => Err(malformed("the key history holds no key")),
        }
    }

    /// The key that signs the event at `seq`.
    pub fn key_at(&self, seq: u64) -> Option<&VerifyingKey> {
        self.keys.iter().rev().find(|k| k.from <= seq).map(|k| &k.key)
    }

    /// Verifies a checkpoint note: its origin is this ledger's, it carries a
    /// signature by one of the ledger's keys, every such signature verifies,
    /// and none is by a key retired before the checkpoint's size (a key
    /// replaced by the rotation at seq `r` signs trees of at most `r`
    /// events: the rotation's own tree is the new key's).
    pub fn verify_checkpoint(&self, note: &str) -> Result<Checkpoint, Rejection> {
        let (text, sigs) = split_note(note)?;
        let checkpoint = Checkpoint::parse_text(text)?;
        if checkpoint.origin != self.origin {
            return Err(Rejection::new(
                RejectKind::OriginMismatch,
                format!(
                    "the checkpoint is for `{}`, the keys are for `{}`",
                    checkpoint.origin, self.origin
                ),
            ));
        }
        let mut verified = 0;
        for (name, sig) in sigs {
            if name != self.origin || sig.len() < 4 {
                continue;
            }
            let id = u32::from_be_bytes([sig[0], sig[1], sig[2], sig[3]]);
            let Some((i, k)) = self
                .keys
                .iter()
                .enumerate()
                .find(|(_, k)| note_key_id(&self.origin, &k.key) == id)
            else {
                continue;
            };
            let signature = <[u8; 64]>::try_from(&sig[4..])
                .map(|b| Signature::from_bytes(&b))
                .map_err(|_| {
                    Rejection::new(
                        RejectKind::BadSignature,
                        format!("key {id:08x}: not a 64-byte signature"),
                    )
                })?;
            k.key.verify_strict(text.as_bytes(), &signature).map_err(|_| {
                Rejection::new(
                    RejectKind::BadSignature,
                    format!("the signature by key {id:08x} does not verify"),
                )
            })?;
            if let Some(next) = self.keys.get(i + 1)
                && checkpoint.size >= next.from
            {
                return Err(Rejection::new(
                    RejectKind::RetiredKey,
                    format!(
                        "signed by key {id:08x}, which the rotation at seq {} retired, for a tree of {} events (it signs trees of at most {})",
                        next.from - 1,
                        checkpoint.size,
                        next.from - 1
                    ),
                ));
            }
            verified += 1;
        }
        if verified == 0 {
            return Err(Rejection::new(
                RejectKind::UnknownKey,
                format!("no signature by any of the keys of `{}`", self.origin),
            ));
        }
        Ok(checkpoint)
    }
}

/// A note's signature lines: `(key name, decoded bytes)`.
type NoteSignatures<'a> = Vec<(&'a str, Vec<u8>)>;

/// Splits a signed note into its text (with its final newline) and its
/// signatures.
pub(crate) fn split_note(note: &str) -> Result<(&str, NoteSignatures<'_>), Rejection> {
    if note.chars().any(|c| c.is_control() && c != '\n' && (c as u32) < 0x20) {
        return Err(malformed("the note holds a control character"));
    }
    let at = note
        .rfind("\n\n")
        .ok_or_else(|| malformed("the note has no blank line before its signatures"))?;
    let (text, sigs) = (&note[..=at], &note[at + 2..]);
    let sigs = sigs
        .strip_suffix('\n')
        .ok_or_else(|| malformed("the note's signatures do not end in a newline"))?;
    let mut out = Vec::new();
    for line in sigs.split('\n') {
        let rest = line
            .strip_prefix("\u{2014} ")
            .ok_or_else(|| malformed(format!("`{line}` is not a signature line (`— NAME SIGNATURE`)")))?;
        let (name, sig) = rest
            .split_once(' ')
            .ok_or_else(|| malformed(format!("signature line `{line}` has no signature")))?;
        check_key_name(name).map_err(malformed)?;
        let sig = B64
            .decode(sig)
            .map_err(|e| malformed(format!("signature line `{line}`: not base64: {e}")))?;
        if sig.len() < 5 {
            return Err(malformed(format!("signature line `{line}` is too short")));
        }
        out.push((name, sig));
    }
    if out.is_empty() || out.len() > MAX_SIGNATURES {
        return Err(malformed(format!(
            "a note carries 1 to {MAX_SIGNATURES} signatures, not {}",
            out.len()
        )));
    }
    Ok((text, out))
}

/// Reads hash lines until a blank line; returns the hashes and the rest
/// after the blank line.
fn hash_lines<'a>(lines: &mut std::str::SplitInclusive<'a, char>, what: &str) -> Result<Vec<TreeHash>, Rejection> {
    let mut out = Vec::new();
    loop {
        let line = lines
            .next()
            .ok_or_else(|| malformed(format!("the {what} ends before the blank line and its checkpoint")))?;
        let line = line.strip_suffix('\n').unwrap_or(line);
        if line.is_empty() {
            return Ok(out);
        }
        if out.len() >= 64 {
            return Err(malformed(format!("the {what} has more than 64 hashes")));
        }
        out.push(parse_hash(line).map_err(|e| malformed(format!("{what} hash: {e}")))?);
    }
}

fn rest_of(lines: std::str::SplitInclusive<'_, char>) -> String {
    lines.collect()
}

/// An inclusion proof: event `index` is leaf `index` of the tree the
/// checkpoint signs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InclusionProof {
    /// `seq ‖ event hash ‖ signature` of the event.
    pub leaf_data: [u8; LEAF_DATA_LEN],
    /// The event's canonical bytes (what was hashed and signed); empty in
    /// a proof that leaves the event out.
    pub event: Vec<u8>,
    pub index: u64,
    pub hashes: Vec<TreeHash>,
    /// The signed checkpoint note, verbatim.
    pub checkpoint: String,
}

impl InclusionProof {
    /// The c2sp.org/tlog-proof text.
    pub fn to_text(&self) -> String {
        let mut extra = self.leaf_data.to_vec();
        extra.extend_from_slice(&self.event);
        let mut out = format!(
            "{TLOG_PROOF_HEADER}\nextra {}\nindex {}\n",
            B64.encode(extra),
            self.index
        );
        push_hashes_then_checkpoint(&mut out, &self.hashes, &self.checkpoint);
        out
    }

    pub fn parse(text: &str) -> Result<InclusionProof, Rejection> {
        let mut lines = text.split_inclusive('\n');
        let mut next = |what: &str| {
            lines
                .next()
                .map(|l| l.strip_suffix('\n').unwrap_or(l).to_owned())
                .ok_or_else(|| malformed(format!("the proof ends before its {what}")))
        };
        if next("header")? != TLOG_PROOF_HEADER {
            return Err(malformed(format!(
                "an inclusion proof starts with `{TLOG_PROOF_HEADER}`"
            )));
        }
        let extra = next("extra line")?;
        let extra = extra.strip_prefix("extra ").ok_or_else(|| {
            malformed("the proof has no `extra` line: a Sealgate proof carries the event's leaf data there")
        })?;
        let leaf = B64
            .decode(extra)
            .map_err(|e| malformed(format!("the extra line is not base64: {e}")))?;
        if leaf.len() < LEAF_DATA_LEN {
            return Err(malformed(format!(
                "the extra data is {} bytes, shorter than the {LEAF_DATA_LEN} of the leaf data (seq, event hash, signature)",
                leaf.len()
            )));
        }
        let (leaf_data, event) = leaf.split_at(LEAF_DATA_LEN);
        let leaf_data: [u8; LEAF_DATA_LEN] = leaf_data
            .try_into()
            .map_err(|_| malformed("leaf data of the wrong length"))?;
        let event = event.to_vec();
        let index_line = next("index line")?;
        let index = index_line
            .strip_prefix("index ")
            .and_then(parse_decimal)
            .ok_or_else(|| malformed(format!("`{index_line}` is not `index N`")))?;
        let hashes = hash_lines(&mut lines, "inclusion proof")?;
        Ok(InclusionProof {
            leaf_data,
            event,
            index,
            hashes,
            checkpoint: rest_of(lines),
        })
    }

    /// Verifies the proof offline: the checkpoint is the ledger's (see
    /// [`KeyHistory::verify_checkpoint`]) and, when `trusted` (a checkpoint
    /// note the verifier holds) is given, says the same as it; the leaf data
    /// is event `index`, signed by the key valid at `index`; and the leaf
    /// is in the checkpoint's tree; and the event, when the proof carries
    /// it, is event `index` and hashes to the leaf's event hash.
    pub fn verify(&self, keys: &KeyHistory, trusted: Option<&str>) -> Result<Included, Rejection> {
        let checkpoint = keys.verify_checkpoint(&self.checkpoint)?;
        if let Some(trusted) = trusted {
            let trusted = keys.verify_checkpoint(trusted)?;
            if trusted != checkpoint {
                return Err(Rejection::new(
                    RejectKind::CheckpointMismatch,
                    format!(
                        "the proof is for the tree of {} events, root {}, the checkpoint given says {} events, root {}",
                        checkpoint.size,
                        B64.encode(checkpoint.root),
                        trusted.size,
                        B64.encode(trusted.root)
                    ),
                ));
            }
        }
        let (seq, hash, sig) =
            merkle::parse_leaf_data(&self.leaf_data).ok_or_else(|| malformed("leaf data of the wrong length"))?;
        if seq != self.index {
            return Err(Rejection::new(
                RejectKind::LeafMismatch,
                format!("the leaf data is for seq {seq}, the proof for index {}", self.index),
            ));
        }
        let key = keys
            .key_at(seq)
            .ok_or_else(|| Rejection::new(RejectKind::UnknownKey, format!("no key of the history signs seq {seq}")))?;
        key.verify_strict(&hash.0, &Signature::from_bytes(&sig)).map_err(|_| {
            Rejection::new(
                RejectKind::BadEventSignature,
                format!("the signature of seq {seq} does not verify under the key valid at it"),
            )
        })?;
        let event = if self.event.is_empty() {
            None
        } else {
            let event = Event::decode(&self.event).map_err(|e| {
                Rejection::new(
                    RejectKind::LeafMismatch,
                    format!("the event in the proof cannot be read: {e}"),
                )
            })?;
            if event.seq != seq {
                return Err(Rejection::new(
                    RejectKind::LeafMismatch,
                    format!("the event in the proof is seq {}, its leaf seq {seq}", event.seq),
                ));
            }
            let content = event_hash(&event.prev, &self.event);
            if content != hash {
                return Err(Rejection::new(
                    RejectKind::LeafMismatch,
                    format!(
                        "the event in the proof hashes to {}, not to the event hash {} its leaf and signature are for",
                        content.short(),
                        hash.short()
                    ),
                ));
            }
            Some(event)
        };
        let leaf = merkle::leaf_hash(&self.leaf_data);
        merkle::verify_inclusion(&leaf, self.index, checkpoint.size, &self.hashes, &checkpoint.root).map_err(|e| {
            Rejection::new(
                RejectKind::BadProof,
                format!("seq {seq} in the tree of {} events: {e}", checkpoint.size),
            )
        })?;
        Ok(Included {
            checkpoint,
            seq,
            hash,
            event,
        })
    }
}

/// What a verified inclusion proof shows.
#[derive(Clone, Debug)]
pub struct Included {
    pub checkpoint: Checkpoint,
    pub seq: u64,
    /// The event's chain hash, signed by the key valid at `seq`.
    pub hash: Hash,
    /// The event, when the proof carries it.
    pub event: Option<Event>,
}

/// A consistency proof: the tree of `old` events is a prefix of the tree
/// the checkpoint signs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsistencyProof {
    pub old: u64,
    pub hashes: Vec<TreeHash>,
    /// The signed checkpoint of the newer tree, verbatim.
    pub checkpoint: String,
}

impl ConsistencyProof {
    pub fn to_text(&self) -> String {
        let mut out = format!("{CONSISTENCY_PROOF_HEADER}\nold {}\n", self.old);
        push_hashes_then_checkpoint(&mut out, &self.hashes, &self.checkpoint);
        out
    }

    pub fn parse(text: &str) -> Result<ConsistencyProof, Rejection> {
        let mut lines = text.split_inclusive('\n');
        let header = lines.next().map(|l| l.trim_end_matches('\n'));
        if header != Some(CONSISTENCY_PROOF_HEADER) {
            return Err(malformed(format!(
                "a consistency proof starts with `{CONSISTENCY_PROOF_HEADER}`"
            )));
        }
        let old_line = lines.next().map(|l| l.trim_end_matches('\n')).unwrap_or_default();
        let old = old_line
            .strip_prefix("old ")
            .and_then(parse_decimal)
            .ok_or_else(|| malformed(format!("`{old_line}` is not `old N`")))?;
        let hashes = hash_lines(&mut lines, "consistency proof")?;
        Ok(ConsistencyProof {
            old,
            hashes,
            checkpoint: rest_of(lines),
        })
    }

    /// Verifies the proof offline against `old_note`, a checkpoint the
    /// verifier held before: both checkpoints are the ledger's, the old one
    /// is of the proof's old size, and its tree is a prefix of the new one.
    /// Returns `(old, new)`.
    pub fn verify(&self, keys: &KeyHistory, old_note: &str) -> Result<(Checkpoint, Checkpoint), Rejection> {
        let new = keys.verify_checkpoint(&self.checkpoint)?;
        let old = keys.verify_checkpoint(old_note)?;
        if old.size != self.old {
            return Err(Rejection::new(
                RejectKind::CheckpointMismatch,
                format!(
                    "the proof starts from a tree of {} events, the checkpoint given is of {}",
                    self.old, old.size
                ),
            ));
        }
        merkle::verify_consistency(old.size, new.size, &old.root, &new.root, &self.hashes).map_err(|e| {
            Rejection::new(
                RejectKind::BadProof,
                format!(
                    "the tree of {} events is not a prefix of the tree of {}: {e}",
                    old.size, new.size
                ),
            )
        })?;
        Ok((old, new))
    }
}

/// The end both proofs share, as [`hash_lines`] and [`rest_of`] read it:
/// a base64 hash a line, an empty line, the checkpoint verbatim.
fn push_hashes_then_checkpoint(out: &mut String, hashes: &[TreeHash], checkpoint: &str) {
    for h in hashes {
        out.push_str(&B64.encode(h));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(checkpoint);
}

/// Either kind of proof, told apart by its first line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Proof {
    Inclusion(InclusionProof),
    Consistency(ConsistencyProof),
}

impl Proof {
    pub fn parse(text: &str) -> Result<Proof, Rejection> {
        if text.starts_with(TLOG_PROOF_HEADER) {
            InclusionProof::parse(text).map(Proof::Inclusion)
        } else if text.starts_with(CONSISTENCY_PROOF_HEADER) {
            ConsistencyProof::parse(text).map(Proof::Consistency)
        } else {
            Err(malformed(format!(
                "not a proof: the first line is neither `{TLOG_PROOF_HEADER}` nor `{CONSISTENCY_PROOF_HEADER}`"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signed-note spec's own example verifies with our parser and key
    /// id (a vector we did not make).
    #[test]
    fn the_signed_note_spec_example_verifies() {
        let (name, key) =
            parse_vkey("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k").expect("vkey");
        let note = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
        let (text, sigs) = split_note(note).expect("note");
        assert_eq!(text, "This is an example message.\n");
        assert_eq!(sigs.len(), 1);
        assert_eq!(sigs[0].0, name);
        assert_eq!(&sigs[0].1[..4], &note_key_id(&name, &key).to_be_bytes());
        let sig = Signature::from_bytes(&sigs[0].1[4..].try_into().expect("64 bytes"));
        assert!(key.verify_strict(text.as_bytes(), &sig).is_ok());
    }

    #[test]
    fn vkeys_round_trip_and_checkpoints_sign_and_verify() {
        let key = SigningKey::from_seed([3; 32]);
        let ledger_id = [0x11; 16];
        let history = KeyHistory {
            origin: origin(&ledger_id),
            keys: vec![HistoryKey {
                from: 0,
                key: key.public(),
            }],
        };
        assert_eq!(KeyHistory::parse(&history.to_text()), Ok(history.clone()));
        let v = vkey(&history.origin, &key.public());
        assert_eq!(KeyHistory::parse(&v), Ok(history.clone()));
        let cp = Checkpoint {
            origin: history.origin.clone(),
            size: 42,
            root: [7; 32],
        };
        let note = cp.sign(&key);
        assert_eq!(history.verify_checkpoint(&note), Ok(cp.clone()));
        let tampered = note.replace("\n42\n", "\n43\n");
        assert_eq!(
            history.verify_checkpoint(&tampered).map_err(|r| r.kind),
            Err(RejectKind::BadSignature)
        );
    }
}
