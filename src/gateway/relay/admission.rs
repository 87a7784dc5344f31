//! The audit protocol around every call and gated request, and
//! governance's part in it:
//!
//! 1. `admit`: the governance state decides (registry, pins, grants,
//!    policy for calls; registry and grants for gated requests); the
//!    request event (arguments redacted per the policy's output setting)
//!    and the decision event are made durable together, in one sync (the
//!    request alone first if the gateway must list the upstream's tools
//!    before deciding); a REQUIRE_APPROVAL call is held until an approver
//!    decides or its deadline passes.
//! 2. the request is forwarded with the decision's runtime limit.
//! 3. `settle`: the answer is scanned for secrets and personal data and
//!    redacted, quarantined or allowed per the policy; size limits apply;
//!    the output and outcome events are made durable; only then is the
//!    answer passed back.
//!
//! Listings are filtered to what the caller may use. A listing that
//! differs from the pins hides what differs from this caller, and asks for
//! a trusted listing (`trusted.rs`) that records drift for everyone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger::{Draft, Receipt, Timestamp};
use tokio_util::sync::CancellationToken;

use super::{Forwarded, Session, audit_refused, audit_withheld, codes, lock, rpc};
use events::{ReasonCode, RefusedBy};

use crate::gateway::audit::{CallInfo, Direction, Listing, Outcome, Refusal, Stored, digest};
use crate::gateway::findable::FindKey;
use crate::gateway::mcp::{self, Class, Id, Message, RpcError};
use crate::gateway::safety::{self, ScanPolicy};
use crate::governance::approvals::State as ApprovalState;
use crate::governance::egress;
use crate::governance::policy::{Constraints, OnOversize, OutputAction, OutputPolicy};
use crate::governance::{
    ApprovalSpec, CallRequest, Revealer, Ruling, ToolFacts, Verdict, decide, decide_access, tool_facts,
};
use crate::json::Json;

/// A call that may go ahead, and on what terms.
pub(super) struct Admitted {
    requested: Receipt,
    ruling: Ruling,
    timeout: Duration,
    constraints: Option<Constraints>,
    output: ScanPolicy,
}

pub fn scan_policy(output: OutputPolicy) -> ScanPolicy {
    let map = |a: OutputAction| match a {
        OutputAction::Redact => safety::Action::Redact,
        OutputAction::Quarantine => safety::Action::Quarantine,
        OutputAction::Allow => safety::Action::Allow,
    };
    ScanPolicy {
        secrets: map(output.secrets),
        pii: map(output.pii),
    }
}

/// The policy's own `output` (the default of its rules), or redact all.
pub(super) fn default_output(view: &crate::governance::View) -> OutputPolicy {
    view.policy.as_ref().map(|p| p.output()).unwrap_or_default()
}

/// The arguments as the request event keeps them: redacted as the policy
/// redacts output (the rule that will decide is not known yet), with the
/// digests of what was redacted under the ledger's find key.
pub(super) fn redact_arguments(call: &CallInfo, view: &crate::governance::View, key: &FindKey) -> Stored {
    let policy = scan_policy(default_output(view));
    let scan = |v: &Option<Json>| v.as_ref().map(|a| safety::scan_json(a, &policy));
    let (arguments, meta) = (scan(&call.arguments), scan(&call.meta));
    let findable = |s: &Option<safety::ScanOutcome>| s.as_ref().and_then(|s| key.findable(&s.values));
    Stored {
        arguments_findable: findable(&arguments),
        meta_findable: findable(&meta),
        arguments: arguments.map(|s| s.redacted),
        meta: meta.map(|s| s.redacted),
    }
}

pub(super) fn gov_unavailable(server: &str, e: impl std::fmt::Display) -> RpcError {
    rpc(
        codes::AUDIT_UNAVAILABLE,
        format!(
            "sealgate refused the call to {server}: the governance state cannot be read ({e}); nothing was forwarded"
        ),
    )
}

fn gov_refused(server: &str, e: &crate::governance::GovError) -> RpcError {
    rpc(
        codes::AUDIT_UNAVAILABLE,
        format!("sealgate refused the call to {server}: {e}; nothing was forwarded"),
    )
}

pub(super) fn denied(
    code: i64,
    verdict: &str,
    reason: String,
    requested: &Receipt,
    rule: Option<&str>,
    gate: &str,
) -> RpcError {
    let data = Json::from_serde(&serde_json::json!({
        "decision": verdict,
        "reason": reason,
        "rule": rule,
        "gate": gate,
        "requested_seq": requested.seq,
    }));
    rpc(code, format!("sealgate: {verdict}: {reason}")).with_data(data)
}

/// Digest of a call's arguments as the ledger keeps them.
fn digest_stored(stored: Option<&Json>) -> String {
    digest(stored.map(Json::to_text).unwrap_or_default().as_bytes())
}

/// A call's request event: written before the decision (when the gateway
/// must ask the upstream something first), or still to be written with it.
#[expect(clippy::large_enum_variant, reason = "one per call, in one stack frame")]
enum Request {
    Written(Receipt),
    Unwritten(ledger::Result<Draft>),
}

impl Session {
    /// The facts of `tool` if this session has seen it listed; asks
    /// nobody.
    fn listed_facts(&self, tool: &str) -> Option<ToolFacts> {
        lock(&self.state).tools.get(tool).map(|t| tool_facts(&t.to_serde()))
    }

    /// What this session knows of `tool` from the upstream's listing,
    /// listing the upstream first if the session has not seen it.
    async fn tool_facts(self: &Arc<Self>, tool: &str) -> Option<ToolFacts> {
        if let Some(facts) = self.listed_facts(tool) {
            return Some(facts);
        }
        self.refresh_tools().await;
        lock(&self.state).tools.get(tool).map(|t| tool_facts(&t.to_serde()))
    }

    /// Lists the upstream's tools in this session (for a call the session
    /// has not seen listed, or after `tools/list_changed`), remembering
    /// their definitions. True if the listing differs from the pins.
    pub(super) async fn refresh_tools(self: &Arc<Self>) -> bool {
        let mut cursor: Option<Json> = None;
        let mut listed = Vec::new();
        let internal = Id::Str(format!("sealgate-list-{}", uuid::Uuid::new_v4().simple()));
        let mut gathered = 0;
        for _ in 0..1000 {
            let params = cursor.take().map(|c| Json::Object(vec![("cursor".into(), c)]));
            let never = CancellationToken::new();
            match self
                .forward_up(&internal, "tools/list", params, self.server.timeout, &never)
                .await
            {
                Forwarded::Answer(result) => {
                    if let Some(tools) = result.get("tools").and_then(Json::as_array) {
                        gathered += super::trusted::listed_bytes(tools);
                        if gathered > self.core.link.max_message_bytes {
                            tracing::warn!(
                                server = %self.server.name,
                                "the upstream's tools fill more than one message may hold (max_upstream_message_bytes): not listed"
                            );
                            return false;
                        }
                        listed.extend(tools.iter().cloned());
                    }
                    match result.get("nextCursor") {
                        Some(c @ Json::String(_)) => cursor = Some(c.clone()),
                        _ => break,
                    }
                }
                _ => {
                    tracing::warn!(server = %self.server.name, "cannot list the upstream's tools");
                    return false;
                }
            }
        }
        let (_, drift) = self.remember_tools(&listed).await;
        !drift.is_empty()
    }

    /// Remembers listed tool definitions (the facts a call in this session
    /// is decided on); returns their hashes and how they differ from the
    /// pins: tools whose definition is not the pinned one, and tools not
    /// pinned. What this client was not offered is no difference: a server
    /// may list some tools only to clients with some capabilities.
    async fn remember_tools(self: &Arc<Self>, listed: &[Json]) -> (BTreeMap<String, String>, SessionDrift) {
        let mut hashes = BTreeMap::new();
        {
            let mut st = lock(&self.state);
            for t in listed {
                if let Some(name) = t.get("name").and_then(Json::as_str) {
                    hashes.insert(name.to_string(), tool_facts(&t.to_serde()).hash);
                    st.tools.insert(name.to_string(), t.clone());
                }
            }
        }
        let mut drift = SessionDrift::default();
        if let Ok(view) = self.core.gov.view().await
            && let Some(server) = view.state.registry.get(&self.server.name)
            && server.status == crate::governance::Status::Approved
        {
            for (tool, hash) in &hashes {
                match server.pins.get(tool) {
                    Some(pin) if pin == hash => {}
                    Some(_) => {
                        drift.changed.insert(tool.clone(), hash.clone());
                    }
                    None => {
                        drift.added.insert(tool.clone(), hash.clone());
                    }
                }
            }
        }
        (hashes, drift)
    }

    /// A `tools/list_changed` from the upstream: this session's tools are
    /// listed again, and the gateway's own listing records any drift,
    /// before the client hears of it (and lists again).
    pub(super) async fn tools_changed(self: Arc<Self>) {
        self.refresh_tools().await;
        super::trusted::check_drift(
            &self,
            Some(Revealer {
                session: self.id.clone(),
                principal: self.owner.name.clone(),
            }),
        )
        .await;
        let note = Message::Notification {
            method: "notifications/tools/list_changed".into(),
            params: None,
        };
        self.to_client(note, None).await;
    }

    /// Holds an allowed request to the server to its rule's
    /// `network_allowlist`: the hosts its arguments (read with the tool's
    /// input schema as this session listed it: the pinned one, or the pin
    /// gate refused the call), resource URI and `_meta` name, and an HTTP
    /// upstream's own address.
    fn hold_to_allowlist(&self, ruling: &mut Ruling, call: &CallInfo, tool: Option<&str>) {
        let applies = ruling
            .evaluation
            .as_ref()
            .and_then(|e| e.constraints.as_ref())
            .is_some_and(|c| c.network_allowlist.is_some());
        // A request from the server (sampling, elicitation, roots) goes to
        // the client, not to the network.
        if !applies || call.direction != Direction::ClientToServer {
            return;
        }
        let schema = tool.and_then(|t| {
            lock(&self.state)
                .tools
                .get(t)
                .and_then(|d| d.get("inputSchema").cloned())
        });
        let upstream = match &self.server.upstream {
            crate::gateway::upstream::Upstream::Http { url, .. } => Some(url.as_str()),
            crate::gateway::upstream::Upstream::Stdio { .. } => None,
        };
        ruling.refuse_host(&egress::Request {
            upstream,
            arguments: call.arguments.as_ref(),
            schema: schema.as_ref(),
            resource: call.resource.as_deref(),
            meta: call.meta.as_ref(),
        });
    }

    /// Writes the request and decision events and, for REQUIRE_APPROVAL,
    /// holds the call until it is decided. `Err` refuses the call.
    async fn admit(
        self: &Arc<Self>,
        call: &CallInfo,
        class: Class,
        cancelled: &CancellationToken,
    ) -> Result<Admitted, RpcError> {
        // The time to decide, without the listing asked upstream below.
        let started = std::time::Instant::now();
        let mut upstream = std::time::Duration::ZERO;
        let gov = &self.core.gov;
        let name = &self.server.name;
        let scope = self.scope();
        let view = gov.view().await.map_err(|e| gov_unavailable(name, e))?;
        let stored = redact_arguments(call, &view, &self.core.find_key);
        let audit = &self.core.audit;
        let mut logged = Request::Unwritten(audit.requested(&scope, call, &stored));
        // A tool this session has not seen listed is listed first, by the
        // gateway's own request upstream: the call's request is written
        // before that, so nothing is asked upstream on its behalf before
        // the log has it. Otherwise request and decision are written
        // together once the decision is made (one sync).
        let tool = match (call.method.as_str(), call.tool.as_deref()) {
            ("tools/call", Some(tool)) => Some(tool),
            _ => None,
        };
        let listed = tool.and_then(|t| self.listed_facts(t));
        let facts = match (tool, listed) {
            (Some(tool), None) => {
                let asked = std::time::Instant::now();
                if let Request::Unwritten(draft) = logged {
                    logged = Request::Written(self.append_counted(draft).await.map_err(|e| audit_refused(name, &e))?);
                }
                let facts = self.tool_facts(tool).await;
                upstream = asked.elapsed();
                facts
            }
            (_, listed) => listed,
        };
        let view = match logged {
            Request::Written(_) => gov.view().await.map_err(|e| gov_unavailable(name, e))?,
            Request::Unwritten(_) => view,
        };
        let target = call
            .tool
            .as_deref()
            .or(call.prompt.as_deref())
            .or(call.resource.as_deref());
        let request = CallRequest {
            server: name,
            principal: &scope.principal,
            method: &call.method,
            target,
            session: Some(&self.id),
        };
        let server_to_client = call.direction == Direction::ServerToClient;
        let mut ruling = if class == Class::Gated {
            decide_access(&view.state, &request, Timestamp::now())
        } else {
            decide(
                &view.state,
                view.policy.as_deref(),
                &request,
                facts.as_ref(),
                server_to_client,
                Timestamp::now(),
            )
        };
        self.hold_to_allowlist(&mut ruling, call, tool);
        let args_digest = digest_stored(stored.arguments.as_ref());
        if ruling.verdict != Verdict::Deny
            && let Some(limit) = ruling
                .evaluation
                .as_ref()
                .and_then(|e| e.constraints.as_ref())
                .and_then(|c| c.max_retries)
        {
            let exact = digest(
                call.arguments
                    .as_ref()
                    .map(Json::to_text)
                    .unwrap_or_default()
                    .as_bytes(),
            );
            let key = format!("{}\0{exact}", target.unwrap_or(""));
            let mut st = lock(&self.state);
            let n = st.attempts.entry(key).or_insert(0);
            *n += 1;
            if *n > limit + 1 {
                ruling.verdict = Verdict::Deny;
                ruling.code = ReasonCode::RetryLimit;
                ruling.reason = format!(
                    "{}; and this call was already attempted {} times in this session (max_retries {limit})",
                    ruling.reason,
                    *n - 1
                );
            }
        }
        if let Some(policy) = view.policy.as_deref()
            && ruling.verdict != Verdict::Deny
            && !policy.limits().is_empty()
        {
            // A quota's count for this window is read back from the log on
            // its first use (a scan, off the async workers).
            let limits = &self.core.limits;
            limits
                .recover(&self.core.ledger, policy)
                .await
                .map_err(|e| audit_refused(name, &e))?;
            limits.apply(
                policy,
                &view.state,
                &request,
                server_to_client,
                &mut ruling,
                Timestamp::now(),
            );
        }
        let took = started.elapsed().saturating_sub(upstream);
        let requested = match logged {
            Request::Written(requested) => {
                audit
                    .append(audit.decision(&scope, call, &ruling, Some(&requested), took))
                    .await
                    .map_err(|e| audit_refused(name, &e))?;
                requested
            }
            Request::Unwritten(draft) => {
                let requested = audit
                    .append_decided(draft, audit.decision(&scope, call, &ruling, None, took))
                    .await
                    .map_err(|e| audit_refused(name, &e))?;
                self.tally(&ledger::EventKind::ToolCallRequested);
                requested
            }
        };

        let output = scan_policy(match &ruling.evaluation {
            Some(e) => e.output,
            None => default_output(&view),
        });
        let constraints = ruling.evaluation.as_ref().and_then(|e| e.constraints.clone());
        let timeout = constraints
            .as_ref()
            .and_then(|c| c.max_runtime_sec)
            .map_or(self.server.timeout, |s| self.server.timeout.min(Duration::from_secs(s)));
        match ruling.verdict {
            Verdict::Allow | Verdict::AllowWithConstraints => {
                lock(&self.state).counts.allowed += 1;
                Ok(Admitted {
                    requested,
                    ruling,
                    timeout,
                    constraints,
                    output,
                })
            }
            Verdict::Deny => {
                let e = denied(
                    codes::DENIED,
                    "DENY",
                    ruling.told().to_string(),
                    &requested,
                    ruling.evaluation.as_ref().and_then(|e| e.rule.as_deref()),
                    ruling.gate.as_str(),
                );
                let by = if matches!(
                    ruling.code,
                    ReasonCode::RetryLimit | ReasonCode::RateLimited | ReasonCode::QuotaExhausted
                ) {
                    RefusedBy::Limit
                } else {
                    ruling.gate.refused_by()
                };
                Err(self.end_refused(call, &requested, by, ruling.code, e).await)
            }
            Verdict::RequireApproval => {
                if let Err((code, e)) = self
                    .await_approval(call, &requested, &ruling, &args_digest, cancelled)
                    .await
                {
                    // Denied, expired, withdrawn or outlived by a policy
                    // change: the call ends here. (Other errors are the
                    // ledger's: nothing more can be recorded.)
                    return Err(match code {
                        Some(ReasonCode::Suspended) => {
                            self.end_refused(call, &requested, RefusedBy::Suspension, ReasonCode::Suspended, e)
                                .await
                        }
                        Some(code) => self.end_refused(call, &requested, RefusedBy::Approval, code, e).await,
                        None => e,
                    });
                }
                lock(&self.state).counts.allowed += 1;
                Ok(Admitted {
                    requested,
                    ruling,
                    timeout,
                    constraints,
                    output,
                })
            }
        }
    }

    /// Records that a recorded call ends refused (`call.refused`) and gives
    /// back the refusal; if that cannot be recorded, the ledger's error.
    pub(super) async fn end_refused(
        &self,
        call: &CallInfo,
        requested: &Receipt,
        by: RefusedBy,
        code: ReasonCode,
        e: RpcError,
    ) -> RpcError {
        let audit = &self.core.audit;
        let refusal = Refusal {
            by,
            code,
            rpc_code: e.code,
            message: e.message.clone(),
        };
        match self
            .append_counted(audit.call_refused(&self.scope(), call, requested, &refusal))
            .await
        {
            Ok(_) => e,
            Err(err) => audit_withheld(&self.server.name, &err),
        }
    }

    /// Opens an approval for the call and waits for its decision.
    async fn await_approval(
        &self,
        call: &CallInfo,
        requested: &Receipt,
        ruling: &Ruling,
        args_digest: &str,
        cancelled: &CancellationToken,
    ) -> Result<(), (Option<ReasonCode>, RpcError)> {
        let gov = &self.core.gov;
        let name = &self.server.name;
        let evaluation = ruling.evaluation.as_ref();
        let approval = evaluation.and_then(|e| e.approval.clone()).ok_or_else(|| {
            (
                Some(ReasonCode::NoApprovers),
                denied(
                    codes::DENIED,
                    "REQUIRE_APPROVAL",
                    "the rule names no approvers".into(),
                    requested,
                    None,
                    "policy",
                ),
            )
        })?;
        let policy_hash = ruling.policy_hash.clone().unwrap_or_default();
        let deadline = Timestamp::now()
            .as_nanos()
            .saturating_add(approval.timeout_sec.saturating_mul(1_000_000_000));
        let spec = ApprovalSpec {
            request_seq: requested.seq,
            principal: self.owner.clone(),
            session: Some(self.id.clone()),
            request_id: Some(crate::gateway::audit::request_id(&call.request_id)),
            call_id: Some(call.call_id.clone()),
            server: name.clone(),
            env: self.server.env.clone(),
            tool: call.tool.clone().or(call.prompt.clone()).or(call.resource.clone()),
            method: call.method.clone(),
            args_digest: args_digest.to_string(),
            policy_hash: policy_hash.clone(),
            rule: evaluation.and_then(|e| e.rule.clone()),
            approver_teams: approval.approvers.teams.clone(),
            approver_principals: approval.approvers.principals.clone(),
            expires_at: Timestamp::from_nanos(deadline),
        };
        let (id, _) = gov
            .request_approval(&spec)
            .await
            .map_err(|e| (None, gov_refused(name, &e)))?;
        let refuse = |code: ReasonCode, reason: String| {
            (
                Some(code),
                denied(
                    codes::DENIED,
                    "REQUIRE_APPROVAL",
                    reason,
                    requested,
                    spec.rule.as_deref(),
                    "approval",
                ),
            )
        };
        let progress = lock(&self.state)
            .client
            .get(&call.request_id)
            .and_then(|c| c.progress_token.clone());
        let mut changes = gov.subscribe();
        let started = Instant::now();
        let every = self.core.approval_progress;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            let view = gov.view().await.map_err(|e| (None, gov_unavailable(name, e)))?;
            let state = view.state.approvals.items.get(&id).map(|a| a.state.clone());
            // A suspension in force stops a held call of either direction (a
            // server-to-client request is not among the calls a suspension
            // withdraws), and an approval granted after it does not let the
            // call run.
            if let Some(s) = view.state.suspensions.stopping(
                &self.owner.name,
                &self.owner.teams,
                &self.server.name,
                Some(self.id.as_str()),
            ) {
                // As the caller is told it (the suspension's id, which
                // names the rest in the log), like a withdrawal by the
                // suspension's enforcement.
                let why = s.told();
                if matches!(state, Some(ApprovalState::Pending) | None) {
                    gov.expire_approval(&id, &format!("the held call was withdrawn: {why}"))
                        .await
                        .map_err(|e| (None, gov_refused(name, &e)))?;
                }
                return Err(refuse(ReasonCode::Suspended, format!("approval {id} withdrawn: {why}")));
            }
            match state {
                Some(ApprovalState::Granted { by, .. }) => {
                    // Bound to the policy it was asked under.
                    if view.policy.as_ref().map(|p| p.hash()) != Some(policy_hash.as_str()) {
                        return Err(refuse(
                            ReasonCode::ApprovalOutdated,
                            format!(
                                "approval {id} was granted by {by:?}, but the policy changed while the call waited"
                            ),
                        ));
                    }
                    return Ok(());
                }
                Some(ApprovalState::Denied { by, reason, .. }) => {
                    return Err(refuse(
                        ReasonCode::ApprovalDenied,
                        format!(
                            "approval {id} was denied by {by:?}{}",
                            reason.map(|r| format!(": {r}")).unwrap_or_default()
                        ),
                    ));
                }
                Some(ApprovalState::Expired { .. }) => {
                    return Err(refuse(
                        ReasonCode::ApprovalExpired,
                        format!(
                            "approval {id} expired after {} s without a decision",
                            approval.timeout_sec
                        ),
                    ));
                }
                Some(ApprovalState::Pending) | None => {}
            }
            let now = Timestamp::now().as_nanos();
            if now >= deadline {
                gov.expire_approval(&id, "no decision before the deadline")
                    .await
                    .map_err(|e| (None, gov_refused(name, &e)))?;
                continue;
            }
            let left = Duration::from_nanos(deadline - now);
            tokio::select! {
                // A withdrawal (the call's own token) is read before the session's close.
                biased;
                // The caller gave up, or the gateway withdrew the call (a
                // suspension): it must not run if approved later.
                _ = cancelled.cancelled() => {
                    let withdrawn = lock(&self.state).client.get(&call.request_id).and_then(|c| c.withdrawn.clone());
                    if let Some(why) = withdrawn {
                        gov.expire_approval(&id, &format!("the held call was withdrawn: {why}"))
                            .await
                            .map_err(|e| (None, gov_refused(name, &e)))?;
                        return Err(refuse(ReasonCode::Suspended, format!("approval {id} withdrawn: {why}")));
                    }
                    gov.expire_approval(&id, "the held call was cancelled by its caller")
                        .await
                        .map_err(|e| (None, gov_refused(name, &e)))?;
                    return Err(refuse(
                        ReasonCode::ApprovalWithdrawn,
                        format!("approval {id} withdrawn: the call was cancelled"),
                    ));
                }
                // The session ends (closed, suspended): the held call is
                // withdrawn, so it cannot run if approved later.
                _ = self.closed.cancelled() => {
                    let why = self.closing_reason();
                    gov.expire_approval(&id, &format!("the held call was withdrawn: {why}"))
                        .await
                        .map_err(|e| (None, gov_refused(name, &e)))?;
                    return Err(refuse(
                        ReasonCode::ApprovalWithdrawn,
                        format!("approval {id} withdrawn: {why}"),
                    ));
                }
                _ = changes.changed() => {}
                _ = tokio::time::sleep(left) => {}
                _ = tick.tick() => {
                    if let Some(token) = &progress {
                        let waited = started.elapsed().as_secs_f64();
                        let note = Message::notification(
                            "notifications/progress",
                            Json::Object(vec![
                                ("progressToken".into(), token.clone()),
                                ("progress".into(), Json::Number(format!("{waited:.1}").into())),
                                ("message".into(), Json::String(format!("waiting for approval {id} ({waited:.0} s)"))),
                            ]),
                        );
                        let _ = self.sink.send(&note, Some(&call.request_id)).await;
                    }
                }
            }
        }
    }

    /// Writes the output and outcome events; the answer is passed on only
    /// once they are durable. Answers are scanned and redacted or
    /// quarantined per the policy, and held to its size limit.
    async fn settle(
        &self,
        call: &CallInfo,
        admitted: &Admitted,
        started: Instant,
        forwarded: Forwarded,
    ) -> Result<Json, RpcError> {
        let name = &self.server.name;
        let audit = &self.core.audit;
        let scope = self.scope();
        let elapsed = started.elapsed();
        let requested = &admitted.requested;
        let towards_client = call.direction == Direction::ClientToServer;
        let Forwarded::Answer(answer) = forwarded else {
            // A peer's JSON-RPC error is output as much as a result is: what
            // the policy redacts in results is redacted from its message and
            // data, in the ledger and, from an upstream, for the client.
            let mut forwarded = forwarded;
            let mut recorded = None;
            let mut findable = None;
            if let Forwarded::PeerError(e) = &mut forwarded {
                let (redacted, values) = redact_error(e, &admitted.output);
                if towards_client {
                    *e = redacted.clone();
                }
                recorded = Some(redacted);
                findable = self.core.find_key.findable(&values);
            }
            let malformed;
            let outcome = match &forwarded {
                Forwarded::PeerError(e) => {
                    let e = recorded.as_ref().unwrap_or(e);
                    Outcome::Error {
                        code: e.code as i32,
                        message: &e.message,
                        findable: findable.as_ref(),
                    }
                }
                Forwarded::Timeout(after) => Outcome::Timeout { after: *after },
                Forwarded::Cancelled => Outcome::Cancelled { reason: None },
                Forwarded::Stopped(why) => Outcome::Cancelled { reason: Some(why) },
                Forwarded::Unavailable(message) => Outcome::Unavailable { message },
                Forwarded::Malformed(message) => {
                    malformed = safety::redact_text_for_log(message);
                    Outcome::Error {
                        code: mcp::code::INTERNAL_ERROR as i32,
                        message: &malformed,
                        findable: None,
                    }
                }
                Forwarded::Answer(_) => Outcome::Cancelled { reason: None },
            };
            self.append_counted(audit.outcome(&scope, call, requested, elapsed, &outcome, None))
                .await
                .map_err(|e| audit_withheld(name, &e))?;
            return self.answer(forwarded);
        };
        let flag = if call.method == "tools/call" {
            Some(answer.get("isError").and_then(Json::as_bool).unwrap_or(false))
        } else {
            None
        };
        let original_bytes = answer.to_text().len();
        let scan = safety::scan_json_async(answer.clone(), admitted.output).await;
        if !scan.report.is_empty() {
            let quarantine_id = if scan.quarantine && towards_client {
                Some(self.quarantine(&answer).await.map_err(|e| {
                    rpc(
                        codes::AUDIT_UNAVAILABLE,
                        format!("sealgate withheld the result from {name}: it must be quarantined but cannot be stored ({e})"),
                    )
                })?)
            } else {
                None
            };
            audit
                .append(audit.output(&scope, call, Some(requested), &scan.report, quarantine_id.as_deref()))
                .await
                .map_err(|e| audit_withheld(name, &e))?;
            if let Some(id) = quarantine_id {
                let outcome = Outcome::Quarantined { id: &id };
                self.append_counted(audit.outcome(&scope, call, requested, elapsed, &outcome, None))
                    .await
                    .map_err(|e| audit_withheld(name, &e))?;
                return Err(rpc(
                    codes::QUARANTINED,
                    format!(
                        "sealgate withheld the result of {}: it holds data the policy quarantines; held for review as {id}",
                        call.tool.as_deref().unwrap_or(&call.method)
                    ),
                ));
            }
        }
        // Server-to-client answers go to the server as they are; only what
        // the ledger keeps of them is redacted.
        let mut delivered = if towards_client {
            scan.redacted.clone()
        } else {
            answer.clone()
        };
        let mut truncated = false;
        if let Some(limit) = admitted.constraints.as_ref().and_then(|c| c.max_result_bytes) {
            let size = delivered.to_text().len() as u64;
            if size > limit {
                let on = admitted
                    .constraints
                    .as_ref()
                    .map(|c| c.on_oversize)
                    .unwrap_or(OnOversize::Truncate);
                if on == OnOversize::Refuse || !truncate_contents(&mut delivered, limit) {
                    let outcome = Outcome::Oversize { bytes: size, limit };
                    self.append_counted(audit.outcome(&scope, call, requested, elapsed, &outcome, None))
                        .await
                        .map_err(|e| audit_withheld(name, &e))?;
                    return Err(rpc(
                        codes::OVERSIZE,
                        format!("sealgate refused the result: {size} bytes, more than max_result_bytes {limit}"),
                    ));
                }
                truncated = true;
            }
        }
        let findable = self.core.find_key.findable(&scan.values);
        let outcome = Outcome::Result {
            json: &scan.redacted,
            is_error: flag,
            original_bytes,
            truncated,
            findable: findable.as_ref(),
        };
        self.append_counted(audit.outcome(&scope, call, requested, elapsed, &outcome, Some(&admitted.ruling)))
            .await
            .map_err(|e| audit_withheld(name, &e))?;
        Ok(delivered)
    }

    /// Keeps a quarantined result for review (mode 0600), returning its id.
    async fn quarantine(&self, result: &Json) -> std::io::Result<String> {
        let dir = self.core.quarantine_dir.clone();
        let bytes = result.to_bytes();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::create_dir_all(&dir)?;
            let id = format!("q-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(dir.join(format!("{id}.json")))?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            Ok(id)
        })
        .await
        .map_err(std::io::Error::other)?
    }

    pub(super) async fn audited_up(
        self: &Arc<Self>,
        call: CallInfo,
        class: Class,
        params: Option<Json>,
        cancel: &CancellationToken,
    ) -> Result<Json, RpcError> {
        let arrived = Instant::now();
        let admitted = match self.admit(&call, class, cancel).await {
            Ok(admitted) => admitted,
            // A refused tool call is answered as a tool error, so the agent
            // (and its model) reads why; the decision is in `_meta`. Other
            // refusals (the ledger cannot record) stay JSON-RPC errors.
            Err(e) if e.code == codes::DENIED && call.method == "tools/call" => {
                // A call held for a human and then refused (denied, expired,
                // withdrawn) waited on the human: not the gateway's latency.
                let held =
                    e.data.as_ref().and_then(|d| d.get("decision")).and_then(Json::as_str) == Some("REQUIRE_APPROVAL");
                let mut result = Json::object([
                    (
                        "content",
                        Json::Array(vec![Json::object([
                            ("type", Json::str("text")),
                            ("text", Json::String(e.message.clone())),
                        ])]),
                    ),
                    ("isError", Json::Bool(true)),
                ]);
                if let Some(data) = e.data {
                    result.set("_meta", Json::Object(vec![("io.sealgate/decision".into(), data)]));
                }
                if !held {
                    crate::metrics::ADDED_LATENCY.record(arrived.elapsed());
                }
                return Ok(result);
            }
            Err(e) => return Err(e),
        };
        let started = Instant::now();
        let forwarded = self
            .forward_up(&call.request_id, &call.method, params, admitted.timeout, cancel)
            .await;
        let upstream = started.elapsed();
        let answer = self.settle(&call, &admitted, started, forwarded).await;
        record_added(&admitted, arrived, upstream);
        answer
    }

    pub(super) async fn audited_down(
        self: &Arc<Self>,
        call: CallInfo,
        method: &'static mcp::Method,
        params: Option<Json>,
        client_id: Option<Id>,
    ) -> Result<Json, RpcError> {
        let never = CancellationToken::new();
        let arrived = Instant::now();
        let admitted = self.admit(&call, Class::ServerCall, &never).await?;
        let started = Instant::now();
        let forwarded = self
            .forward_down(&call.request_id, method, params, client_id.as_ref(), admitted.timeout)
            .await;
        let upstream = started.elapsed();
        let answer = self.settle(&call, &admitted, started, forwarded).await;
        record_added(&admitted, arrived, upstream);
        answer
    }

    /// Relays a listing, filtered to what the caller may use and through
    /// output safety, and records what the upstream offered.
    pub(super) async fn listed(
        self: &Arc<Self>,
        id: &Id,
        method: &str,
        params: Option<Json>,
        cancel: &CancellationToken,
    ) -> Result<Json, RpcError> {
        let cursor = params
            .as_ref()
            .and_then(|p| p.get("cursor"))
            .and_then(Json::as_str)
            .map(str::to_string);
        let forwarded = self.forward_up(id, method, params, self.server.timeout, cancel).await;
        let mut result = self.answer_outward(forwarded, method).await?;
        let key = listing_key(method);
        let name_field = match method {
            "tools/list" | "prompts/list" => "name",
            "resources/list" => "uri",
            _ => "uriTemplate",
        };
        let items: Vec<Json> = result.get(key).and_then(Json::as_array).cloned().unwrap_or_default();
        let names: Vec<String> = items
            .iter()
            .map(|i| i.get(name_field).and_then(Json::as_str).unwrap_or("").to_string())
            .collect();
        let next_cursor = result.get("nextCursor").and_then(Json::as_str).map(str::to_string);
        let (hashes, drift) = if method == "tools/list" {
            self.remember_tools(&items).await
        } else {
            (BTreeMap::new(), SessionDrift::default())
        };
        if !drift.is_empty() {
            // Hidden from this caller below; the gateway's own listing
            // decides whether it is drift for everyone.
            super::trusted::check_drift_later(
                Arc::clone(self),
                Some(Revealer {
                    session: self.id.clone(),
                    principal: self.owner.name.clone(),
                }),
            );
        }
        let name = &self.server.name;
        let view = self.core.gov.view().await.map_err(|e| gov_unavailable(name, e))?;
        let principal = &self.owner;
        let now = Timestamp::now();
        let server = view.state.registry.get(name);
        let approved = server.is_some_and(|s| s.status == crate::governance::Status::Approved);
        let mut hidden = Vec::new();
        let keep: Vec<bool> = names
            .iter()
            .map(|n| {
                let usable = approved
                    && view
                        .state
                        .grants
                        .find(
                            &principal.name,
                            &principal.teams,
                            name,
                            server.map_or(&[][..], |s| &s.env),
                            n,
                            now,
                        )
                        .is_some()
                    && (method != "tools/list"
                        || server.is_some_and(|s| {
                            !s.drift.contains_key(n) && s.pins.get(n).is_some_and(|p| Some(p) == hashes.get(n))
                        }));
                if !usable {
                    hidden.push(n.clone());
                }
                usable
            })
            .collect();
        let listing = Listing {
            items: Json::Array(items),
            names,
            cursor,
            next_cursor,
            hidden,
            changed: drift.changed,
            added: drift.added,
        };
        let audit = &self.core.audit;
        audit
            .append(audit.listing(&self.scope(), method, id, &listing))
            .await
            .map_err(|e| audit_withheld(name, &e))?;
        if !listing.hidden.is_empty()
            && let Some(Json::Array(list)) = result.get_mut(key)
        {
            let mut flags = keep.iter();
            list.retain(|_| flags.next().copied().unwrap_or(false));
        }
        // Descriptions and titles are the upstream's words, read by the
        // client's model: output safety applies to them as to results.
        let policy = scan_policy(default_output(&view));
        let scan = safety::scan_json_async(result, policy).await;
        if !scan.report.is_empty() {
            let call = CallInfo::new(method, id.clone(), Direction::ClientToServer);
            audit
                .append(audit.output(&self.scope(), &call, None, &scan.report, None))
                .await
                .map_err(|e| audit_withheld(name, &e))?;
            if scan.quarantine {
                return Err(rpc(
                    codes::QUARANTINED,
                    format!("sealgate withheld the {method} result: it holds data the policy quarantines"),
                ));
            }
        }
        Ok(scan.redacted)
    }
}

/// How a session's tools listing differs from the pins.
#[derive(Default)]
struct SessionDrift {
    changed: BTreeMap<String, String>,
    added: BTreeMap<String, String>,
}

impl SessionDrift {
    fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.added.is_empty()
    }
}

/// The gateway's added latency of a call that ran: from its arrival to its
/// answer less the peer's time; a call held for a human is left out.
fn record_added(admitted: &Admitted, arrived: Instant, peer: Duration) {
    if admitted.ruling.verdict != Verdict::RequireApproval {
        crate::metrics::ADDED_LATENCY.record(arrived.elapsed().saturating_sub(peer));
    }
}

/// The member of a listing result that holds its items.
fn listing_key(method: &str) -> &'static str {
    match method {
        "tools/list" => "tools",
        "prompts/list" => "prompts",
        "resources/list" => "resources",
        _ => "resourceTemplates",
    }
}

/// `e` with the findings `output` does not allow redacted from its message
/// and data, and what was redacted.
fn redact_error(e: &RpcError, output: &ScanPolicy) -> (RpcError, safety::RedactedValues) {
    let scan = safety::scan_json(&e.to_json(), output);
    if scan.report.is_empty() {
        return (e.clone(), scan.values);
    }
    let message = scan
        .redacted
        .get("message")
        .and_then(Json::as_str)
        .unwrap_or("[REDACTED: the error could not be scanned]")
        .to_string();
    let redacted = RpcError {
        code: e.code,
        message,
        data: scan.redacted.get("data").cloned(),
    };
    (redacted, scan.values)
}

/// Shortens the text contents of a tool result until it fits `limit`
/// bytes. False if it cannot be made to fit that way.
fn truncate_contents(result: &mut Json, limit: u64) -> bool {
    const MARK: &str = "…[truncated by sealgate]";
    loop {
        let size = result.to_text().len() as u64;
        if size <= limit {
            return true;
        }
        let excess = (size - limit) as usize + MARK.len();
        let Some(Json::Array(items)) = result.get_mut("content") else {
            return false;
        };
        let longest = items
            .iter_mut()
            .filter_map(|i| i.get_mut("text"))
            .filter(|t| t.as_str().is_some_and(|s| s.len() > MARK.len()))
            .max_by_key(|t| t.as_str().map_or(0, str::len));
        let Some(text) = longest else { return false };
        let Some(s) = text.as_str() else { return false };
        let mut cut = s.len().saturating_sub(excess);
        while cut > 0 && !s.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut == 0 && s.ends_with(MARK) {
            return false;
        }
        *text = Json::String(format!("{}{MARK}", &s[..cut]));
        if result.get("structuredContent").is_some() {
            result.set("structuredContent", Json::Null);
        }
    }
}
