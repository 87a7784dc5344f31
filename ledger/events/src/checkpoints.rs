//! What the gateway's checkpoint issuer writes: `checkpoint.issued` and
//! `checkpoint.witnessed` (`docs/EVENTS.md`, `docs/FORMAT.md` §14–15).

use ledger::EventKind;
use serde::{Deserialize, Serialize};

use crate::Body;

/// `checkpoint.issued`: the gateway signed a checkpoint of the log before
/// this event (its tree of `size` events ends before this event's seq).
/// Written by the gateway's checkpoint issuer (actor `sealgate:checkpoints`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointIssued {
    /// The tree size: events `0 ..= size - 1`.
    pub size: u64,
    /// The tree's root, base64 (as the note's third line).
    pub root: String,
    /// The signed note (c2sp.org/tlog-checkpoint), verbatim.
    pub note: String,
    /// Why now: `events` (N events since the last), `interval` (T seconds,
    /// also when idle), `start` or `shutdown`.
    pub trigger: String,
}

impl Body for CheckpointIssued {
    const KINDS: &'static [EventKind] = &[EventKind::CheckpointIssued];
}

/// What a witness answered about a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WitnessOutcome {
    /// It cosigned.
    Cosigned,
    /// It refused: the checkpoint is not consistent with what it last
    /// cosigned (422), or not signed by a key it trusts (403), or its
    /// origin is unknown to it (404), or the request was bad (400). A 422
    /// is the alarm for a forked or rewritten log.
    Refused,
    /// No answer after every attempt (unreachable, timeouts, 5xx).
    Unreachable,
}

/// `checkpoint.witnessed`: one witness's answer about one issued
/// checkpoint. Written by the gateway's checkpoint issuer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointWitnessed {
    /// The `[[witnesses]]` name.
    pub witness: String,
    pub outcome: WitnessOutcome,
    /// The checkpoint's tree size.
    pub size: u64,
    /// The `checkpoint.issued` event of the checkpoint.
    pub issued_seq: u64,
    pub attempts: u64,
    /// The last answer's HTTP status (absent: no answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u64>,
    /// The cosignature line, when cosigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cosignature: Option<String>,
    /// Why it was refused or not reached, in the witness's words when it
    /// gave some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Body for CheckpointWitnessed {
    const KINDS: &'static [EventKind] = &[EventKind::CheckpointWitnessed];
}
