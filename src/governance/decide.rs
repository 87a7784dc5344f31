//! The decision for one call, from the governance state alone: a pure
//! function, so the same state and call always give the same decision.
//!
//! Four gates, in order; the first that refuses decides:
//! 1. registry: the server is registered and approved (else shadow MCP);
//! 2. pins: a tool is called only as it was approved (no drift);
//! 3. grants: the caller holds a grant for the tool (client requests);
//! 4. policy: the rules in force, first match wins, no match = DENY.

use ledger::Timestamp;

use events::ReasonCode;

use super::call::{CallRequest, Verdict};
use super::egress;
use super::policy::{Action, Evaluation, Facts, OutputPolicy, Policy};
use super::registry::{Server, Status};
use super::state::GovState;

/// What the relay knows of the tool being called, from the upstream's
/// listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolFacts {
    /// Hash of its definition as listed now.
    pub hash: String,
    /// `annotations.readOnlyHint` / `destructiveHint`, as the server claims.
    pub read_only: Option<bool>,
    pub destructive: Option<bool>,
}

/// Which gate decided (the event catalogue's type).
pub use events::Gate;

#[derive(Clone, Debug)]
pub struct Ruling {
    pub gate: Gate,
    pub verdict: Verdict,
    /// Why, as a closed code; `reason` says it in words.
    pub code: ReasonCode,
    pub reason: String,
    /// The registry gate's finding: the server's status, when it refused
    /// a registered server.
    pub server_status: Option<Status>,
    /// The pin gate's findings: the pinned hash, and the definition as
    /// listed when they differ.
    pub pin: Option<String>,
    pub listed: Option<String>,
    pub grant: Option<String>,
    pub action: Option<Action>,
    /// The policy's evaluation, when the call got that far.
    pub evaluation: Option<Evaluation>,
    pub policy_hash: Option<String>,
    /// The policy limit that refused the call.
    pub limit: Option<events::LimitHit>,
    /// The quota counters an admitted call was counted under.
    pub quota: Vec<events::QuotaCount>,
    /// The host that broke the rule's `network_allowlist`, when that
    /// refused the call ([`Ruling::refuse_host`]).
    pub refused_host: Option<String>,
    /// What the caller is told instead of `reason`, when the reason says
    /// more than a refused caller may learn (a suspension's author and
    /// words: the holder of a leaked token learns nothing of the
    /// incident). The ledger records `reason`.
    pub told: Option<String>,
    /// The suspension that denied the call (gate `suspension`).
    pub suspension_id: Option<String>,
}

impl Ruling {
    /// The reason as the caller is told it.
    pub fn told(&self) -> &str {
        self.told.as_deref().unwrap_or(&self.reason)
    }
}

impl Ruling {
    fn deny(gate: Gate, code: ReasonCode, reason: String) -> Ruling {
        Ruling {
            gate,
            verdict: Verdict::Deny,
            code,
            reason,
            server_status: None,
            pin: None,
            listed: None,
            grant: None,
            action: None,
            evaluation: None,
            policy_hash: None,
            limit: None,
            quota: Vec::new(),
            refused_host: None,
            told: None,
            suspension_id: None,
        }
    }

    pub fn output(&self) -> OutputPolicy {
        self.evaluation.as_ref().map(|e| e.output).unwrap_or_default()
    }

    /// Holds an allowed call to its rule's `network_allowlist`
    /// ([`egress::check`]): a host it does not allow denies the call,
    /// naming the host. Other rulings are left as they are.
    pub fn refuse_host(&mut self, request: &egress::Request<'_>) {
        if matches!(self.verdict, Verdict::Deny | Verdict::RequireApproval) {
            return;
        }
        let Some(evaluation) = &self.evaluation else { return };
        let Some(list) = evaluation
            .constraints
            .as_ref()
            .and_then(|c| c.network_allowlist.as_ref())
        else {
            return;
        };
        if let Err(refused) = egress::check(list, request) {
            self.reason = refused.reason(evaluation.rule.as_deref().unwrap_or(""));
            self.verdict = Verdict::Deny;
            self.code = ReasonCode::HostNotAllowed;
            self.refused_host = Some(refused.host);
        }
    }
}

/// The action label of `tool`: the registry's, else the tool's own
/// annotations (a claim by the server, not a fact), else unknown. Per the
/// MCP spec a tool that says nothing is not read-only and may be
/// destructive.
pub fn action_of(server: &Server, tool: Option<&str>, facts: Option<&ToolFacts>) -> Option<Action> {
    if let Some(label) = tool.and_then(|t| server.actions.get(t)) {
        return Some(match label {
            events::ActionLabel::Read => Action::Read,
            events::ActionLabel::Write => Action::Write,
            events::ActionLabel::Destructive => Action::Destructive,
        });
    }
    let facts = facts?;
    Some(match (facts.read_only, facts.destructive) {
        (Some(true), _) => Action::Read,
        (_, Some(false)) => Action::Write,
        _ => Action::Destructive,
    })
}

/// Decides `call`. `tool` is what the relay knows of the called tool;
/// `server_to_client` requests skip the grant gate (they are the server's
/// requests, not the caller's).
pub fn decide(
    state: &GovState,
    policy: Option<&Policy>,
    call: &CallRequest<'_>,
    tool: Option<&ToolFacts>,
    server_to_client: bool,
    now: Timestamp,
) -> Ruling {
    if let Some(refused) = suspension_gate(state, call) {
        return refused;
    }
    let name = call.server;
    let server = match registry_gate(state, name) {
        Ok(server) => server,
        Err(refused) => return *refused,
    };

    if call.method == "tools/call"
        && let Some(t) = call.target
    {
        let pinned = server.pins.get(t);
        let pin_refusal = |code, reason| Ruling {
            pin: pinned.cloned(),
            ..Ruling::deny(Gate::Pin, code, reason)
        };
        if let Some(drift) = server.drift.get(t) {
            return Ruling {
                listed: drift.hash.clone(),
                ..pin_refusal(
                    ReasonCode::ToolDrifted,
                    format!(
                        "tool {t:?} on {name:?} is {} since its approval (drift at seq {}): it must be re-approved",
                        drift.change.as_str(),
                        drift.seq
                    ),
                )
            };
        }
        match (pinned, tool) {
            (None, _) => {
                return pin_refusal(
                    ReasonCode::ToolUnpinned,
                    format!("tool {t:?} on {name:?} was not approved (not pinned)"),
                );
            }
            // The session's listing does not have it (the server did not
            // offer it to this client, or could not list): there is no
            // definition to hold to the pin, nor annotations to label it.
            (Some(_), None) => {
                return pin_refusal(
                    ReasonCode::ToolUnlisted,
                    format!(
                        "tool {t:?} on {name:?} is not listed in this session: its definition cannot be checked against its pin"
                    ),
                );
            }
            (Some(pin), Some(live)) if *pin != live.hash => {
                return Ruling {
                    listed: Some(live.hash.clone()),
                    ..pin_refusal(
                        ReasonCode::ToolChanged,
                        format!("tool {t:?} on {name:?} changed since its approval: it must be re-approved"),
                    )
                };
            }
            _ => {}
        }
    }

    let mut grant = None;
    if !server_to_client {
        let target = call.target.unwrap_or("");
        match state.grants.find(
            &call.principal.name,
            &call.principal.teams,
            name,
            &server.env,
            target,
            now,
        ) {
            Some(g) => grant = Some(g.id.clone()),
            None => {
                return Ruling::deny(
                    Gate::Grant,
                    ReasonCode::NoGrant,
                    format!(
                        "no grant lets {:?} (teams {:?}) use {target:?} on {name:?}",
                        call.principal.name, call.principal.teams
                    ),
                );
            }
        }
    }

    let action = action_of(server, call.target, tool);
    let Some(policy) = policy else {
        let mut r = Ruling::deny(
            Gate::Policy,
            ReasonCode::NoPolicy,
            "no policy is loaded: default DENY".into(),
        );
        r.grant = grant;
        r.action = action;
        return r;
    };
    let evaluation = policy.evaluate(&facts(call, server, action));
    let code = match (&evaluation.rule, evaluation.verdict) {
        (None, _) => ReasonCode::NoRule,
        (Some(_), Verdict::Allow) => ReasonCode::RuleAllow,
        (Some(_), Verdict::Deny) => ReasonCode::RuleDeny,
        (Some(_), Verdict::RequireApproval) => ReasonCode::RuleRequireApproval,
        (Some(_), Verdict::AllowWithConstraints) => ReasonCode::RuleAllowWithConstraints,
    };
    Ruling {
        gate: Gate::Policy,
        verdict: evaluation.verdict,
        code,
        reason: evaluation.reason.clone(),
        server_status: None,
        pin: None,
        listed: None,
        grant,
        action,
        policy_hash: Some(policy.hash().to_string()),
        evaluation: Some(evaluation),
        limit: None,
        quota: Vec::new(),
        refused_host: None,
        told: None,
        suspension_id: None,
    }
}

/// The registry gate: the server, registered and approved, or its refusal.
fn registry_gate<'a>(state: &'a GovState, name: &str) -> Result<&'a Server, Box<Ruling>> {
    let Some(server) = state.registry.get(name) else {
        return Err(Box::new(Ruling::deny(
            Gate::Registry,
            ReasonCode::UnregisteredServer,
            format!("server {name:?} is not registered: shadow MCP server"),
        )));
    };
    let (code, reason) = match server.status {
        Status::Approved => return Ok(server),
        Status::Registered => (
            ReasonCode::UnapprovedServer,
            format!("server {name:?} is registered but not approved"),
        ),
        Status::Quarantined => (ReasonCode::QuarantinedServer, format!("server {name:?} is quarantined")),
        Status::Revoked => (ReasonCode::RevokedServer, format!("server {name:?} is revoked")),
    };
    Err(Box::new(Ruling {
        server_status: Some(server.status),
        ..Ruling::deny(Gate::Registry, code, reason)
    }))
}

/// The decision for a request that is not a call: opening a session
/// (`initialize`), or a gated method (`completion/complete`,
/// `resources/subscribe`, `logging/setLevel`, an allowed custom method).
/// The server must be registered and approved, and the caller must hold a
/// grant on it: on `call.target` when the request names one (the prompt or
/// resource a completion is for, the URI subscribed to), else any grant on
/// the server. The policy decides calls only; it is not consulted.
pub fn decide_access(state: &GovState, call: &CallRequest<'_>, now: Timestamp) -> Ruling {
    if let Some(refused) = suspension_gate(state, call) {
        return refused;
    }
    let name = call.server;
    let server = match registry_gate(state, name) {
        Ok(server) => server,
        Err(refused) => return *refused,
    };
    let p = call.principal;
    let grant = match call.target {
        Some(target) => state.grants.find(&p.name, &p.teams, name, &server.env, target, now),
        None => state.grants.find_any(&p.name, &p.teams, name, &server.env, now),
    };
    match grant {
        Some(g) => Ruling {
            gate: Gate::Grant,
            verdict: Verdict::Allow,
            code: ReasonCode::Granted,
            server_status: None,
            pin: None,
            listed: None,
            reason: format!("grant {} lets {:?} use {name:?} ({})", g.id, p.name, call.method),
            grant: Some(g.id.clone()),
            action: None,
            evaluation: None,
            policy_hash: None,
            limit: None,
            quota: Vec::new(),
            refused_host: None,
            told: None,
            suspension_id: None,
        },
        None => Ruling::deny(
            Gate::Grant,
            ReasonCode::NoGrant,
            match call.target {
                Some(target) => format!(
                    "no grant lets {:?} (teams {:?}) use {target:?} on {name:?}",
                    p.name, p.teams
                ),
                None => format!("no grant lets {:?} (teams {:?}) use {name:?}", p.name, p.teams),
            },
        ),
    }
}

/// What the policy's rules and limits see of `call` to `server` (its
/// registry entry), its action as labelled.
pub(super) fn facts<'a>(call: &CallRequest<'a>, server: &'a Server, action: Option<Action>) -> Facts<'a> {
    Facts {
        server: call.server,
        method: call.method,
        target: call.target,
        principal: &call.principal.name,
        teams: &call.principal.teams,
        env: &server.env,
        risk: &server.risk,
        action,
    }
}

/// The kill switch, before every other gate: a suspension of the caller,
/// a team of theirs, the server or the session denies the call, naming it.
fn suspension_gate(state: &GovState, call: &CallRequest<'_>) -> Option<Ruling> {
    let p = call.principal;
    let s = state
        .suspensions
        .stopping(&p.name, &p.teams, call.server, call.session)?;
    let mut ruling = Ruling::deny(Gate::Suspension, ReasonCode::Suspended, s.describe());
    ruling.told = Some(s.told());
    ruling.suspension_id = Some(s.id.clone());
    Some(ruling)
}

/// The fields of a tool definition that are pinned at approval: what the
/// model is told the tool is and does.
const PINNED_FIELDS: [&str; 6] = [
    "name",
    "title",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
];

/// `blake3:<hex>` of a tool's pinned fields, in canonical form (sorted
/// keys, no whitespace; numbers as written).
pub fn tool_hash(tool: &serde_json::Value) -> String {
    let mut pinned = serde_json::Map::new();
    for field in PINNED_FIELDS {
        if let Some(v) = tool.get(field) {
            pinned.insert(field.to_string(), v.clone());
        }
    }
    let canonical = events::to_ledger_value(&serde_json::Value::Object(pinned)).to_canonical();
    format!("blake3:{}", blake3::hash(&canonical).to_hex())
}

/// What the relay needs to know of a listed tool.
pub fn tool_facts(tool: &serde_json::Value) -> ToolFacts {
    let hint = |name: &str| {
        tool.pointer(&format!("/annotations/{name}"))
            .and_then(serde_json::Value::as_bool)
    };
    ToolFacts {
        hash: tool_hash(tool),
        read_only: hint("readOnlyHint"),
        destructive: hint("destructiveHint"),
    }
}

#[cfg(test)]
mod tests;
