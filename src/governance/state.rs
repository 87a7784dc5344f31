//! The governance state: registry, grants, the policy in force and the
//! approval queue, one projection of the log. Each part is its own fold;
//! together they are snapshotted and replayed as one.

use ledger::{Event, EventKind, Projection};
use serde::{Deserialize, Serialize};

use super::approvals::Approvals;
use super::body::str_field;
use super::grants::Grants;
use super::registry::Registry;

/// The policy text in force and where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    pub text: String,
    pub hash: String,
    pub seq: u64,
    pub ts: String,
    pub by: Option<String>,
    pub origin: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GovState {
    pub registry: Registry,
    pub grants: Grants,
    pub policy: Option<PolicyRecord>,
    pub approvals: Approvals,
}

impl Projection for GovState {
    const NAME: &'static str = "governance";
    const VERSION: u32 = 1;

    fn apply(&mut self, event: &Event) {
        match &event.kind {
            EventKind::ServerRegistered
            | EventKind::ServerApproved
            | EventKind::ServerQuarantined
            | EventKind::ServerRevoked
            | EventKind::ToolsPinned
            | EventKind::ToolsDrifted => self.registry.apply(event),
            EventKind::GrantIssued | EventKind::GrantRevoked => self.grants.apply(event),
            EventKind::ApprovalRequested
            | EventKind::ApprovalGranted
            | EventKind::ApprovalDenied
            | EventKind::ApprovalExpired => self.approvals.apply(event),
            EventKind::PolicyLoaded => {
                if let (Some(text), Some(hash)) = (str_field(&event.body, "text"), str_field(&event.body, "hash")) {
                    self.policy = Some(PolicyRecord {
                        text,
                        hash,
                        seq: event.seq,
                        ts: event.ts.to_string(),
                        by: event.actor.principal.clone(),
                        origin: str_field(&event.body, "origin"),
                    });
                }
            }
            _ => {}
        }
    }

    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// One part of the state (`registry`, `grants`, `policy`, `approvals`, or
/// `all`) as JSON, for the API and the CLI.
pub fn render(state: &GovState, part: &str) -> Result<serde_json::Value, String> {
    let v = match part {
        "registry" => serde_json::to_value(&state.registry),
        "grants" => serde_json::to_value(&state.grants),
        "policy" => serde_json::to_value(&state.policy),
        "approvals" => serde_json::to_value(&state.approvals),
        "all" => serde_json::to_value(state),
        other => {
            return Err(format!(
                "unknown part {other:?} (registry, grants, policy, approvals, all)"
            ));
        }
    };
    v.map_err(|e| e.to_string())
}
