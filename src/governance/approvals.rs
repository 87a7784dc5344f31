//! Approvals: calls held for a human decision, bound to exactly what was
//! asked (principal, server, tool, arguments digest, policy hash) and to a
//! deadline.

use std::collections::BTreeMap;

use ledger::{Event, EventKind, Timestamp};
use serde::{Deserialize, Serialize};

use events::{ApprovalDecided, ApprovalRequested, decode};

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
    /// The held call's id (`correlation.call_id`; absent in older logs).
    #[serde(default)]
    pub call_id: Option<String>,
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
    /// Folds one approval event; an event whose body is not its kind's
    /// shape (or a bad deadline) changes nothing and is reported.
    pub fn apply(&mut self, event: &Event) -> Result<(), events::Error> {
        match &event.kind {
            EventKind::ApprovalRequested => {
                let body: ApprovalRequested = decode(event)?;
                let bad = |message: String| events::Error::Decode {
                    seq: event.seq,
                    kind: event.kind.to_string(),
                    message,
                };
                let expires_at = Timestamp::parse_rfc3339(&body.expires_at)
                    .map_err(|e| bad(format!("expires_at {:?}: {e}", body.expires_at)))?
                    .as_nanos();
                let (Some(principal), Some(server)) = (&event.actor.principal, &event.subject.server) else {
                    return Err(bad(
                        "an approval names its requester (actor.principal) and server".into()
                    ));
                };
                let id = body.approval_id;
                self.items.entry(id.clone()).or_insert(Approval {
                    id,
                    request_seq: event.correlation.answers,
                    requested_seq: event.seq,
                    requested_at: event.ts.as_nanos(),
                    principal: principal.clone(),
                    server: server.clone(),
                    tool: event
                        .subject
                        .tool
                        .clone()
                        .or_else(|| event.subject.prompt.clone())
                        .or_else(|| event.subject.resource.clone()),
                    method: body.method,
                    args_digest: body.args_digest,
                    policy_hash: body.policy_hash,
                    rule: body.rule,
                    approver_teams: body.approver_teams,
                    approver_principals: body.approver_principals,
                    expires_at,
                    state: State::Pending,
                    session: event.actor.session.clone(),
                    request_id: event.correlation.request_id.as_ref().map(CallRequestId::from_ledger),
                    env: event.subject.env.clone(),
                    call_id: event.correlation.call_id.clone(),
                });
            }
            kind @ (EventKind::ApprovalGranted | EventKind::ApprovalDenied | EventKind::ApprovalExpired) => {
                let body: ApprovalDecided = decode(event)?;
                // Only a pending approval moves, and only once.
                let Some(item) = self
                    .items
                    .get_mut(&body.approval_id)
                    .filter(|a| a.state == State::Pending)
                else {
                    return Ok(());
                };
                let by = event.actor.principal.clone().unwrap_or_default();
                let reason = body.reason;
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
        Ok(())
    }
}
