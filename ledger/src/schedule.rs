//! The key schedule: which signing key is valid at which sequence number,
//! built from the genesis event and the key rotations.

use ed25519_dalek::{Signature, VerifyingKey};

use crate::chain::{Genesis, Rotation};
use crate::event::{Event, Hash, KeyId};
use crate::failure::{Failure, FailureKind};

/// Which key is valid at which sequence number.
#[derive(Clone, Debug)]
pub struct KeySchedule {
    /// Sorted by `from`; each entry is valid from `from` until the next.
    entries: Vec<KeyEntry>,
}

/// One signing key and the first sequence number it signs.
#[derive(Clone, Debug)]
pub struct KeyEntry {
    pub from: u64,
    pub id: KeyId,
    pub key: VerifyingKey,
}

impl KeySchedule {
    pub fn from_genesis(e: &Event) -> Result<KeySchedule, String> {
        let g = Genesis::from_event(e)?;
        Ok(KeySchedule {
            entries: vec![KeyEntry {
                from: 0,
                id: e.key,
                key: g.public_key,
            }],
        })
    }

    pub fn entries(&self) -> &[KeyEntry] {
        &self.entries
    }

    /// The key that signs the next event.
    pub fn current(&self) -> KeyId {
        self.entries.last().map(|e| e.id).unwrap_or(KeyId([0; 16]))
    }

    fn entry_at(&self, seq: u64) -> Option<&KeyEntry> {
        self.entries.iter().rev().find(|e| e.from <= seq)
    }

    /// Checks that `id` is the key valid at `seq` and returns it.
    pub fn key_for(&self, seq: u64, id: KeyId) -> Result<&VerifyingKey, Failure> {
        let valid = self
            .entry_at(seq)
            .ok_or_else(|| Failure::new(seq, FailureKind::UnknownKey, "no key is valid before genesis"))?;
        if valid.id == id {
            return Ok(&valid.key);
        }
        match self.entries.iter().find(|e| e.id == id) {
            Some(other) => Err(Failure::new(
                seq,
                FailureKind::KeyNotValid,
                format!(
                    "signed by key {id}, valid from seq {}, but key {} is the valid key at seq {seq}",
                    other.from, valid.id
                ),
            )),
            None => Err(Failure::new(
                seq,
                FailureKind::UnknownKey,
                format!(
                    "signed by key {id}, which the log never introduced (valid key: {})",
                    valid.id
                ),
            )),
        }
    }

    /// Checks one signature against the key valid at `seq`.
    pub fn verify_one(&self, seq: u64, id: KeyId, hash: &Hash, sig: &Signature) -> Result<(), Failure> {
        let key = self.key_for(seq, id)?;
        key.verify_strict(&hash.0, sig).map_err(|_| {
            Failure::new(
                seq,
                FailureKind::BadSignature,
                format!("signature does not verify under key {id}"),
            )
        })
    }

    /// Applies a `key.rotated` event (which must be signed by the key valid
    /// at its position): its new key is valid from the next event.
    pub fn apply_rotation(&mut self, e: &Event, ledger_id: &[u8; 16]) -> Result<(), String> {
        self.key_for(e.seq, e.key).map_err(|f| f.detail)?;
        let r = Rotation::from_event(e, ledger_id)?;
        if self.entries.iter().any(|k| k.id == r.new_key) {
            return Err(format!("rotation re-introduces key {}", r.new_key));
        }
        if self.entries.last().is_some_and(|k| k.from > e.seq) {
            return Err("rotation out of order".into());
        }
        self.entries.push(KeyEntry {
            from: e.seq + 1,
            id: r.new_key,
            key: r.new_public_key,
        });
        Ok(())
    }

    /// Keeps only the keys introduced before `seq` (for range verification,
    /// which replays the rotations inside the range itself).
    pub(crate) fn before(mut self, seq: u64) -> KeySchedule {
        self.entries.retain(|e| e.from <= seq);
        self
    }
}
