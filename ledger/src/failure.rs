//! What verification reports: the first bad event and what is wrong with it.

use std::fmt;

/// What is wrong with the first bad event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// The record cannot be decoded (framing, JSON, envelope, canonical form).
    Malformed,
    /// A sequence number is missing.
    Gap,
    /// The record stored under sequence number N holds another number.
    SequenceMismatch,
    /// The stored hash does not match the event's content.
    HashMismatch,
    /// `prev` is not the hash of the event before.
    BadLink,
    /// Signed by a key the log never introduced.
    UnknownKey,
    /// Signed by a key that was not the valid key at this position.
    KeyNotValid,
    BadSignature,
    /// Timestamp earlier than its predecessor's (beyond the tolerance).
    TimeWentBackwards,
    BadGenesis,
    BadRotation,
    /// A pinned head's hash differs from the log's event at that position.
    HeadMismatch,
    /// The log ends before a pinned head (or before the head it records).
    Truncated,
    /// The head recorded in the store's metadata disagrees with the events.
    MetaMismatch,
    /// A range asked for by time does not hold exactly the events of that
    /// span: the (unsigned) time index disagrees with the events.
    RangeMismatch,
    /// A full verification found the (unsigned) time index out of step with
    /// the events: an entry missing, or one naming no event at its time.
    TimeIndexMismatch,
    /// A full verification found the stored Merkle tree out of step with
    /// the events: a node missing, differing from the events' hashes, or
    /// stored past the log.
    TreeMismatch,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Malformed => "malformed",
            FailureKind::Gap => "gap",
            FailureKind::SequenceMismatch => "sequence_mismatch",
            FailureKind::HashMismatch => "hash_mismatch",
            FailureKind::BadLink => "bad_link",
            FailureKind::UnknownKey => "unknown_key",
            FailureKind::KeyNotValid => "key_not_valid",
            FailureKind::BadSignature => "bad_signature",
            FailureKind::TimeWentBackwards => "time_went_backwards",
            FailureKind::BadGenesis => "bad_genesis",
            FailureKind::BadRotation => "bad_rotation",
            FailureKind::HeadMismatch => "head_mismatch",
            FailureKind::Truncated => "truncated",
            FailureKind::MetaMismatch => "meta_mismatch",
            FailureKind::RangeMismatch => "range_mismatch",
            FailureKind::TimeIndexMismatch => "time_index_mismatch",
            FailureKind::TreeMismatch => "tree_mismatch",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first bad event found by verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub seq: u64,
    pub kind: FailureKind,
    pub detail: String,
}

impl Failure {
    pub(crate) fn new(seq: u64, kind: FailureKind, detail: impl Into<String>) -> Failure {
        Failure {
            seq,
            kind,
            detail: detail.into(),
        }
    }

    /// The event at `seq` is stored with hash `stored` but hashes to `computed`.
    pub(crate) fn hash_mismatch(seq: u64, stored: crate::event::Hash, computed: crate::event::Hash) -> Failure {
        Failure::new(
            seq,
            FailureKind::HashMismatch,
            format!(
                "stored hash {} but the content hashes to {}",
                stored.short(),
                computed.short()
            ),
        )
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seq {}: {}: {}", self.seq, self.kind, self.detail)
    }
}
