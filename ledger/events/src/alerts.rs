//! What the gateway's alert detector and notifier write: `alert.raised`
//! (a detection over the log, naming the events it was computed from) and
//! `notification.delivered` / `notification.failed` (a webhook's answer).

use ledger::EventKind;
use serde::{Deserialize, Serialize};

use crate::Body;

/// The detections (`docs/ALERTS.md`); a new one is a new value of a closed
/// set, so a body version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detection {
    /// A call ran that its own story does not permit (DENY, REQUIRE_APPROVAL
    /// without a grant first, no decision, a second terminal event): must
    /// never happen.
    ApprovalBypassed,
    /// Requests for servers that are not in the registry (the registry
    /// gate's refusals and `access.refused` for unknown servers).
    UnknownServer,
    /// Refused authentications from one source over the threshold in the
    /// window.
    AuthBurst,
    /// An upstream's tools no longer match their pins (`tools.drifted`).
    ToolDrift,
    /// Quarantined results per call that ran, over the window, above the
    /// gate.
    QuarantineRatio,
    /// An approval waiting longer than the gate.
    ApprovalWaiting,
    /// A witness refused to cosign a checkpoint the gateway issued
    /// (`checkpoint.witnessed`, outcome `refused`): a 422 is the alarm for
    /// a forked or rewritten log.
    WitnessRefused,
}

impl Detection {
    pub const ALL: [Detection; 7] = [
        Detection::ApprovalBypassed,
        Detection::UnknownServer,
        Detection::AuthBurst,
        Detection::ToolDrift,
        Detection::QuarantineRatio,
        Detection::ApprovalWaiting,
        Detection::WitnessRefused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Detection::ApprovalBypassed => "approval_bypassed",
            Detection::UnknownServer => "unknown_server",
            Detection::AuthBurst => "auth_burst",
            Detection::ToolDrift => "tool_drift",
            Detection::QuarantineRatio => "quarantine_ratio",
            Detection::ApprovalWaiting => "approval_waiting",
            Detection::WitnessRefused => "witness_refused",
        }
    }
}

/// How urgent an alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertSeverity {
    Medium,
    High,
    /// Something that must never happen happened.
    Critical,
}

/// One event an alert was computed from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub seq: u64,
    /// The event's hash, 64 hex digits (as `sealgate log` shows it).
    pub hash: String,
    pub kind: String,
}

/// `alert.raised`: a detection fired. Written by the gateway's alert
/// detector (actor `sealgate:alerts`), never about another alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRaised {
    pub detection: Detection,
    pub severity: AlertSeverity,
    /// What happened and what to look at, in words.
    pub summary: String,
    /// The seq of the last event the detector had read when it raised the
    /// alert: where it resumes after a restart.
    pub at_seq: u64,
    /// What makes this alert one (the detection, the key it counts by and
    /// the first evidence): a restart never writes the same key twice.
    pub key: String,
    /// The events it was computed from, oldest first, at most 32.
    pub evidence: Vec<Evidence>,
    /// More evidence events than are listed.
    #[serde(default, skip_serializing_if = "crate::is_false")]
    pub evidence_truncated: bool,
    /// The configured threshold and the value observed, as decimal text
    /// (signed data holds no floats): a count, a ratio or seconds.
    pub threshold: String,
    pub observed: String,
    /// The window the value was observed over, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_sec: Option<u64>,
}

impl Body for AlertRaised {
    const KINDS: &'static [EventKind] = &[EventKind::AlertRaised];
}

/// What a webhook was told about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationTopic {
    /// An `approval.requested`: a call waits for a human.
    Approval,
    /// An `alert.raised`.
    Alert,
}

/// `notification.delivered` (a 2xx answer) and `notification.failed`
/// (attempts exhausted, or an answer that is not retried): one per
/// webhook and notified event. Written by the gateway's notifier (actor
/// `sealgate:notify`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationOutcome {
    /// The `[[webhooks]]` name.
    pub webhook: String,
    pub topic: NotificationTopic,
    /// The event notified about.
    pub event_seq: u64,
    /// Its hash, 64 hex digits.
    pub event_hash: String,
    pub attempts: u64,
    /// The last answer's HTTP status (absent: no answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u64>,
    /// Why the last attempt failed; the URL named by scheme, host and
    /// port only (the rest may hold the webhook's secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Body for NotificationOutcome {
    const KINDS: &'static [EventKind] = &[EventKind::NotificationDelivered, EventKind::NotificationFailed];
}
