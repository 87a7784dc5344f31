//! Approvals: calls held for a human decision, bound to exactly what was
//! asked (principal, server, tool, arguments digest, policy hash) and to a
//! deadline.

use std::collections::BTreeMap;

use ledger::{Event, EventKind, Timestamp};
use serde::{Deserialize, Serialize};

use events::{ApprovalDecided, ApprovalRequested, decode};

use super::times::rfc3339;

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
    /// When it was requested (nanoseconds since the epoch; RFC 3339 when
    /// shown).
    #[serde(with = "rfc3339")]
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
    /// Not grantable at or after this time (nanoseconds since the epoch;
    /// RFC 3339 when shown).
    #[serde(with = "rfc3339")]
    pub expires_at: u64,
    pub state: State,
    /// When it stopped pending: the time of the event that granted,
    /// denied or expired it.
    #[serde(default, with = "rfc3339::option")]
    pub ended_at: Option<u64>,
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
    /// How long the call waited (or has waited so far) for a decision,
    /// in whole seconds: until it was decided or its expiry recorded,
    /// else until `now`; never past its deadline (a call does not wait
    /// longer, even when the gateway was down when it expired).
    pub fn waiting_sec(&self, now: u64) -> u64 {
        // 0: a deadline the request event did not give.
        let deadline = if self.expires_at == 0 {
            u64::MAX
        } else {
            self.expires_at
        };
        let end = self.ended_at.unwrap_or(now).min(deadline);
        end.saturating_sub(self.requested_at) / 1_000_000_000
    }

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
                    ended_at: None,
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
                item.ended_at = Some(event.ts.as_nanos());
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ledger::{Draft, Hash, KeyId, Value};

    use super::*;

    const SEC: u64 = 1_000_000_000;
    /// 2026-01-01T00:00:00Z.
    const T0: u64 = 1_767_225_600 * SEC;

    fn event(seq: u64, at: u64, kind: EventKind, body: &[(&str, &str)]) -> Event {
        let mut draft = Draft::new(kind);
        draft.actor.principal = Some("alice".into());
        draft.subject.server = Some("fs".into());
        for (k, v) in body {
            draft.body.insert((*k).into(), Value::String((*v).into()));
        }
        Event::from_draft(draft, seq, Timestamp::from_nanos(at), Hash::ZERO, KeyId([0; 16]))
    }

    fn requested(seq: u64, id: &str) -> Event {
        event(
            seq,
            T0,
            EventKind::ApprovalRequested,
            &[
                ("approval_id", id),
                ("expires_at", "2026-01-01T00:05:00Z"),
                ("mcp.method.name", "tools/call"),
                ("args_digest", "blake3:00"),
                ("policy_hash", "blake3:00"),
            ],
        )
    }

    #[test]
    fn waiting_stops_when_the_approval_ends() {
        let mut approvals = Approvals::default();
        approvals.apply(&requested(1, "a-granted")).expect("folds");
        approvals.apply(&requested(2, "a-expired")).expect("folds");
        approvals.apply(&requested(3, "a-pending")).expect("folds");
        approvals
            .apply(&event(
                4,
                T0 + 42 * SEC,
                EventKind::ApprovalGranted,
                &[("approval_id", "a-granted")],
            ))
            .expect("folds");
        // Recorded late (the gateway was down at the deadline).
        approvals
            .apply(&event(
                5,
                T0 + 900 * SEC,
                EventKind::ApprovalExpired,
                &[("approval_id", "a-expired")],
            ))
            .expect("folds");
        let an_hour_later = T0 + 3600 * SEC;
        let waited = |id: &str, now: u64| approvals.items[id].waiting_sec(now);
        assert_eq!(waited("a-granted", an_hour_later), 42);
        assert_eq!(waited("a-expired", an_hour_later), 300, "never past the deadline");
        assert_eq!(waited("a-pending", T0 + 10 * SEC), 10);
        assert_eq!(
            waited("a-pending", an_hour_later),
            300,
            "a pending approval past its deadline"
        );
        assert_eq!(approvals.items["a-granted"].ended_at, Some(T0 + 42 * SEC));
        assert_eq!(approvals.items["a-pending"].ended_at, None);
    }

    #[test]
    fn times_are_shown_as_rfc3339_and_read_back_in_either_form() {
        let mut approvals = Approvals::default();
        approvals.apply(&requested(1, "a-1")).expect("folds");
        approvals
            .apply(&event(2, T0 + 7, EventKind::ApprovalDenied, &[("approval_id", "a-1")]))
            .expect("folds");
        let json = serde_json::to_value(&approvals).expect("json");
        let item = &json["items"]["a-1"];
        assert_eq!(item["requested_at"], "2026-01-01T00:00:00.000000000Z", "{item}");
        assert_eq!(item["expires_at"], "2026-01-01T00:05:00.000000000Z", "{item}");
        assert_eq!(item["ended_at"], "2026-01-01T00:00:00.000000007Z", "{item}");
        let back: Approvals = serde_json::from_value(json.clone()).expect("read back");
        assert_eq!(back, approvals);
        // The integer form of earlier snapshots still reads.
        let mut old = json;
        old["items"]["a-1"]["requested_at"] = serde_json::json!(T0);
        old["items"]["a-1"]["expires_at"] = serde_json::json!(T0 + 300 * SEC);
        old["items"]["a-1"].as_object_mut().expect("object").remove("ended_at");
        let back: Approvals = serde_json::from_value(old).expect("old form");
        assert_eq!(back.items["a-1"].requested_at, T0);
        assert_eq!(back.items["a-1"].ended_at, None);
    }
}
