//! Approvals: calls held for a human decision, bound to exactly what was
//! asked (principal, server, tool, arguments digest, policy hash) and to a
//! deadline.

use std::collections::BTreeMap;

use ledger::{Event, EventKind, Timestamp};
use serde::{Deserialize, Serialize};

use super::body::{str_field, str_list};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum State {
    Pending,
    Granted {
        by: String,
        seq: u64,
        reason: Option<String>,
    },
    Denied {
        by: String,
        seq: u64,
        reason: Option<String>,
    },
    Expired {
        seq: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub id: String,
    /// The `tool_call.requested` (or `mcp.requested`) event it answers.
    pub request_seq: Option<u64>,
    pub requested_seq: u64,
    /// When it was requested (nanoseconds since the epoch).
    pub requested_at: u64,
    pub principal: String,
    pub server: String,
    pub tool: Option<String>,
    pub method: String,
    pub args_digest: String,
    pub policy_hash: String,
    pub rule: Option<String>,
    /// Who may decide: members of any of these teams, or these principals.
    pub approver_teams: Vec<String>,
    pub approver_principals: Vec<String>,
    /// Not grantable at or after this time (nanoseconds since the epoch).
    pub expires_at: u64,
    pub state: State,
    /// The held call's session, JSON-RPC id and server environment (absent
    /// in approvals recorded before they were written).
    #[serde(default)]
    pub session: Option<String>,
    #[serde(default)]
    pub request_id: Option<CallRequestId>,
    #[serde(default)]
    pub env: Vec<String>,
}

/// A JSON-RPC id as the call's request event has it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CallRequestId {
    Int(i64),
    Str(String),
}

impl CallRequestId {
    pub fn from_ledger(id: &ledger::RequestId) -> CallRequestId {
        match id {
            ledger::RequestId::Int(n) => CallRequestId::Int(*n),
            ledger::RequestId::Str(s) => CallRequestId::Str(s.clone()),
        }
    }

    pub fn to_ledger(&self) -> ledger::RequestId {
        match self {
            CallRequestId::Int(n) => ledger::RequestId::Int(*n),
            CallRequestId::Str(s) => ledger::RequestId::Str(s.clone()),
        }
    }
}

impl Approval {
    /// Why `approver` (with `teams`) may not decide this approval, if so.
    pub fn refuse_approver(&self, approver: &str, teams: &[String]) -> Option<String> {
        if approver == self.principal {
            return Some(format!(
                "{approver:?} requested this call and cannot approve or deny it"
            ));
        }
        let by_team = teams.iter().any(|t| self.approver_teams.contains(t));
        let by_name = self.approver_principals.iter().any(|p| p == approver);
        if by_team || by_name {
            None
        } else {
            Some(format!(
                "{approver:?} is not an approver of rule {:?} (teams {:?}, principals {:?})",
                self.rule.as_deref().unwrap_or("-"),
                self.approver_teams,
                self.approver_principals
            ))
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approvals {
    pub items: BTreeMap<String, Approval>,
}

impl Approvals {
    pub fn apply(&mut self, event: &Event) {
        let body = &event.body;
        let Some(id) = str_field(body, "approval_id") else {
            return;
        };
        match &event.kind {
            EventKind::ApprovalRequested => {
                let expires_at = str_field(body, "expires_at")
                    .and_then(|t| Timestamp::parse_rfc3339(&t).ok())
                    .map_or(0, Timestamp::as_nanos);
                self.items.entry(id.clone()).or_insert(Approval {
                    id,
                    request_seq: event.correlation.answers,
                    requested_seq: event.seq,
                    requested_at: event.ts.as_nanos(),
                    principal: event.actor.principal.clone().unwrap_or_default(),
                    server: event.subject.server.clone().unwrap_or_default(),
                    tool: event
                        .subject
                        .tool
                        .clone()
                        .or_else(|| event.subject.prompt.clone())
                        .or_else(|| event.subject.resource.clone()),
                    method: str_field(body, "mcp.method.name").unwrap_or_default(),
                    args_digest: str_field(body, "args_digest").unwrap_or_default(),
                    policy_hash: str_field(body, "policy_hash").unwrap_or_default(),
                    rule: str_field(body, "rule"),
                    approver_teams: str_list(body, "approver_teams"),
                    approver_principals: str_list(body, "approver_principals"),
                    expires_at,
                    state: State::Pending,
                    session: event.actor.session.clone(),
                    request_id: event.correlation.request_id.as_ref().map(CallRequestId::from_ledger),
                    env: event.subject.env.clone(),
                });
            }
            kind @ (EventKind::ApprovalGranted | EventKind::ApprovalDenied | EventKind::ApprovalExpired) => {
                // Only a pending approval moves, and only once.
                let Some(item) = self.items.get_mut(&id).filter(|a| a.state == State::Pending) else {
                    return;
                };
                let by = event.actor.principal.clone().unwrap_or_default();
                let reason = str_field(body, "reason");
                item.state = match kind {
                    EventKind::ApprovalGranted => State::Granted {
                        by,
                        seq: event.seq,
                        reason,
                    },
                    EventKind::ApprovalDenied => State::Denied {
                        by,
                        seq: event.seq,
                        reason,
                    },
                    _ => State::Expired { seq: event.seq },
                };
            }
            _ => {}
        }
    }
}
