//! The audit protocol around every data-moving request, and governance's
//! part in it:
//!
//! 1. `admit`: the request event (arguments redacted per the policy's
//!    output setting) is made durable; the governance state, brought up to
//!    the ledger's head, decides (registry, pins, grants, policy); the
//!    decision event is made durable; a REQUIRE_APPROVAL call is held until
//!    an approver decides or its deadline passes.
//! 2. the request is forwarded with the decision's runtime limit.
//! 3. `settle`: the result is scanned for secrets and personal data and
//!    redacted, quarantined or allowed per the policy; size limits apply;
//!    the output and outcome events are made durable; only then is the
//!    answer passed back.
//!
//! Listings are filtered to what the caller may use, and a tools listing
//! is compared with the pins: what drifted is recorded and hidden.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ledger::{Receipt, Timestamp};
use rmcp::model::{
    ClientRequest, ClientResult, ErrorCode, ErrorData, ProgressNotificationParam, ProgressToken, ServerRequest,
    ServerResult,
};
use rmcp::service::{Peer, RequestContext, RoleClient, RoleServer};

use super::{Conn, Forwarded, Session, audit_refused, audit_withheld, codes, error, listing_of};
use crate::gateway::audit::{CallInfo, Direction, Outcome, Scope, digest};
use crate::gateway::safety::{self, ScanPolicy};
use crate::governance::approvals::State as ApprovalState;
use crate::governance::policy::{Constraints, OnOversize, OutputAction, OutputPolicy};
use crate::governance::{ApprovalSpec, Ruling, ToolFacts, decide, tool_facts};
use crate::governance::{CallRequest, Verdict};

/// A call that may go ahead, and on what terms.
pub(super) struct Admitted {
    requested: Receipt,
    ruling: Ruling,
    timeout: Duration,
    constraints: Option<Constraints>,
    output: ScanPolicy,
}

fn scan_policy(output: OutputPolicy) -> ScanPolicy {
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

fn gov_unavailable(server: &str, e: impl std::fmt::Display) -> ErrorData {
    error(
        codes::AUDIT_UNAVAILABLE,
        format!(
            "sealgate refused the call to {server}: the governance state cannot be read ({e}); nothing was forwarded"
        ),
    )
}

fn gov_refused(server: &str, e: &crate::governance::GovError) -> ErrorData {
    error(
        codes::AUDIT_UNAVAILABLE,
        format!("sealgate refused the call to {server}: {e}; nothing was forwarded"),
    )
}

fn denied(verdict: &str, reason: String, requested: &Receipt, rule: Option<&str>, gate: &str) -> ErrorData {
    ErrorData::new(
        ErrorCode(codes::DENIED),
        format!("sealgate: {verdict}: {reason}"),
        Some(serde_json::json!({
            "decision": verdict,
            "reason": reason,
            "rule": rule,
            "gate": gate,
            "requested_seq": requested.seq,
        })),
    )
}

/// Where to send "still waiting" progress for a held call.
pub(super) struct ProgressSink {
    pub peer: Peer<RoleServer>,
    pub token: ProgressToken,
}

impl Session {
    /// What this session knows of `tool` from the upstream's listing,
    /// listing the upstream first if the session has not seen it.
    async fn tool_facts(&self, conn: &Conn, tool: &str) -> Option<ToolFacts> {
        if let Some(t) = super::lock(&self.tools).get(tool) {
            return Some(tool_facts(t));
        }
        self.refresh_tools(conn).await;
        super::lock(&self.tools).get(tool).map(tool_facts)
    }

    /// Lists the upstream's tools (for a call the session has not seen
    /// listed, or after `tools/list_changed`), remembers their definitions
    /// and records any drift from the pins.
    pub(super) async fn refresh_tools(&self, conn: &Conn) {
        match conn.upstream.peer().list_all_tools().await {
            Ok(tools) => {
                let listed: Vec<serde_json::Value> =
                    tools.iter().filter_map(|t| serde_json::to_value(t).ok()).collect();
                self.remember_tools(&listed, true).await;
            }
            Err(e) => tracing::warn!(server = %self.server.name, "cannot list the upstream's tools: {e}"),
        }
    }

    /// Remembers listed tool definitions and records drift from the pins
    /// (`complete`: `listed` is every tool, not one page of a listing).
    async fn remember_tools(&self, listed: &[serde_json::Value], complete: bool) -> BTreeMap<String, String> {
        let mut hashes = BTreeMap::new();
        {
            let mut tools = super::lock(&self.tools);
            for t in listed {
                if let Some(name) = t.get("name").and_then(|n| n.as_str()) {
                    hashes.insert(name.to_string(), tool_facts(t).hash);
                    tools.insert(name.to_string(), t.clone());
                }
            }
        }
        if let Err(e) = self.core.gov.observe_tools(&self.server.name, &hashes, complete).await {
            tracing::error!(server = %self.server.name, "drift not recorded: {e}");
        }
        hashes
    }

    /// Writes the request and decision events and, for REQUIRE_APPROVAL,
    /// holds the call until it is decided. `Err` refuses the call.
    pub(super) async fn admit(
        &self,
        conn: &Conn,
        scope: &Scope,
        call: &CallInfo,
        progress: Option<ProgressSink>,
        cancelled: &tokio_util::sync::CancellationToken,
    ) -> Result<Admitted, ErrorData> {
        let gov = &self.core.gov;
        let name = &self.server.name;
        let view = gov.view().await.map_err(|e| gov_unavailable(name, e))?;
        // Arguments are stored redacted as the policy redacts output: the
        // rule that will decide is not known before the request is recorded.
        let default_output = scan_policy(view.policy.as_ref().map(|p| p.output()).unwrap_or_default());
        let stored_args = call
            .arguments
            .as_ref()
            .map(|a| safety::scan_json(a, &default_output).redacted);
        let audit = &self.core.audit;
        let requested = audit
            .append(audit.requested(scope, call, stored_args.as_ref()))
            .await
            .map_err(|e| audit_refused(name, &e))?;

        let facts = match (call.method.as_str(), call.tool.as_deref()) {
            ("tools/call", Some(tool)) => self.tool_facts(conn, tool).await,
            _ => None,
        };
        let view = gov.view().await.map_err(|e| gov_unavailable(name, e))?;
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
        };
        let server_to_client = call.direction == Direction::ServerToClient;
        let mut ruling = decide(
            &view.state,
            view.policy.as_deref(),
            &request,
            facts.as_ref(),
            server_to_client,
            Timestamp::now(),
        );
        if ruling.verdict != Verdict::Deny
            && let Some(limit) = ruling
                .evaluation
                .as_ref()
                .and_then(|e| e.constraints)
                .and_then(|c| c.max_retries)
        {
            let key = format!("{}\0{}", target.unwrap_or(""), digest_args(call));
            let mut attempts = super::lock(&self.attempts);
            let n = attempts.entry(key).or_insert(0);
            *n += 1;
            if *n > limit + 1 {
                ruling.verdict = Verdict::Deny;
                ruling.reason = format!(
                    "{}; and this call was already attempted {} times in this session (max_retries {limit})",
                    ruling.reason,
                    *n - 1
                );
            }
        }
        audit
            .append(audit.decision(scope, call, &requested, &ruling))
            .await
            .map_err(|e| audit_refused(name, &e))?;

        let output = scan_policy(ruling.output());
        let constraints = ruling.evaluation.as_ref().and_then(|e| e.constraints);
        let timeout = constraints
            .and_then(|c| c.max_runtime_sec)
            .map_or(self.server.timeout, |s| self.server.timeout.min(Duration::from_secs(s)));
        match ruling.verdict {
            Verdict::Allow | Verdict::AllowWithConstraints => Ok(Admitted {
                requested,
                ruling,
                timeout,
                constraints,
                output,
            }),
            Verdict::Deny => Err(denied(
                "DENY",
                ruling.reason.clone(),
                &requested,
                ruling.evaluation.as_ref().and_then(|e| e.rule.as_deref()),
                ruling.gate.as_str(),
            )),
            Verdict::RequireApproval => {
                self.await_approval(scope, call, &requested, &ruling, progress, cancelled)
                    .await?;
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

    /// Opens an approval for the call and waits for its decision.
    async fn await_approval(
        &self,
        scope: &Scope,
        call: &CallInfo,
        requested: &Receipt,
        ruling: &Ruling,
        progress: Option<ProgressSink>,
        cancelled: &tokio_util::sync::CancellationToken,
    ) -> Result<(), ErrorData> {
        let gov = &self.core.gov;
        let name = &self.server.name;
        let evaluation = ruling.evaluation.as_ref();
        let approval = evaluation.and_then(|e| e.approval.clone()).ok_or_else(|| {
            denied(
                "REQUIRE_APPROVAL",
                "the rule names no approvers".into(),
                requested,
                None,
                "policy",
            )
        })?;
        let policy_hash = ruling.policy_hash.clone().unwrap_or_default();
        let deadline = Timestamp::now().as_nanos() + approval.timeout_sec.saturating_mul(1_000_000_000);
        let spec = ApprovalSpec {
            request_seq: requested.seq,
            principal: scope.principal.clone(),
            server: name.clone(),
            tool: call.tool.clone().or(call.prompt.clone()).or(call.resource.clone()),
            method: call.method.clone(),
            args_digest: digest_args(call),
            policy_hash: policy_hash.clone(),
            rule: evaluation.and_then(|e| e.rule.clone()),
            approver_teams: approval.approvers.teams.clone(),
            approver_principals: approval.approvers.principals.clone(),
            expires_at: Timestamp::from_nanos(deadline),
        };
        let (id, _) = gov.request_approval(&spec).await.map_err(|e| gov_refused(name, &e))?;
        let refuse = |reason: String| denied("REQUIRE_APPROVAL", reason, requested, spec.rule.as_deref(), "approval");
        let mut changes = gov.subscribe();
        let started = Instant::now();
        let every = self.core.approval_progress;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            let view = gov.view().await.map_err(|e| gov_unavailable(name, e))?;
            let state = view.state.approvals.items.get(&id).map(|a| a.state.clone());
            match state {
                Some(ApprovalState::Granted { by, .. }) => {
                    // Bound to the policy it was asked under.
                    if view.policy.as_ref().map(|p| p.hash()) != Some(policy_hash.as_str()) {
                        return Err(refuse(format!(
                            "approval {id} was granted by {by:?}, but the policy changed while the call waited"
                        )));
                    }
                    return Ok(());
                }
                Some(ApprovalState::Denied { by, reason, .. }) => {
                    return Err(refuse(format!(
                        "approval {id} was denied by {by:?}{}",
                        reason.map(|r| format!(": {r}")).unwrap_or_default()
                    )));
                }
                Some(ApprovalState::Expired { .. }) => {
                    return Err(refuse(format!(
                        "approval {id} expired after {} s without a decision",
                        approval.timeout_sec
                    )));
                }
                Some(ApprovalState::Pending) | None => {}
            }
            let now = Timestamp::now().as_nanos();
            if now >= deadline {
                gov.expire_approval(&id, "no decision before the deadline")
                    .await
                    .map_err(|e| gov_refused(name, &e))?;
                continue;
            }
            let left = Duration::from_nanos(deadline - now);
            tokio::select! {
                // The caller gave up: the call must not run if approved later.
                _ = cancelled.cancelled() => {
                    gov.expire_approval(&id, "the held call was cancelled by its caller")
                        .await
                        .map_err(|e| gov_refused(name, &e))?;
                    return Err(refuse(format!("approval {id} withdrawn: the call was cancelled")));
                }
                _ = changes.changed() => {}
                _ = tokio::time::sleep(left) => {}
                _ = tick.tick() => {
                    if let Some(sink) = &progress {
                        let waited = started.elapsed().as_secs_f64();
                        let note = ProgressNotificationParam::new(sink.token.clone(), waited)
                            .with_message(format!("waiting for approval {id} ({:.0} s)", waited));
                        let _ = sink.peer.notify_progress(note).await;
                    }
                }
            }
        }
    }

    /// Writes the output and outcome events; the answer is passed on only
    /// once they are durable. Results reaching the client are scanned and
    /// redacted or quarantined per the policy, and held to its size limit.
    pub(super) async fn settle<T>(
        &self,
        scope: &Scope,
        call: &CallInfo,
        admitted: &Admitted,
        started: Instant,
        forwarded: Forwarded<T>,
        is_error: impl Fn(&T) -> Option<bool>,
    ) -> Result<T, ErrorData>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        let name = &self.server.name;
        let audit = &self.core.audit;
        let elapsed = started.elapsed();
        let requested = &admitted.requested;
        let Forwarded::Answer(answer) = forwarded else {
            // A peer's JSON-RPC error is output as much as a result is: what
            // the policy redacts in results is redacted from its message and
            // data, in the ledger and, from an upstream, for the client.
            let mut forwarded = forwarded;
            let mut recorded = None;
            if let Forwarded::PeerError(e) = &mut forwarded {
                let redacted = redact_error(e, &admitted.output);
                if call.direction == Direction::ClientToServer {
                    *e = redacted.clone();
                }
                recorded = Some(redacted);
            }
            let outcome = match &forwarded {
                Forwarded::PeerError(e) => {
                    let e = recorded.as_ref().unwrap_or(e);
                    Outcome::Error {
                        code: e.code.0,
                        message: &e.message,
                    }
                }
                Forwarded::Timeout(after) => Outcome::Timeout { after: *after },
                Forwarded::Cancelled => Outcome::Cancelled,
                Forwarded::Unavailable(message) => Outcome::Unavailable { message },
                Forwarded::Answer(_) => Outcome::Cancelled,
            };
            audit
                .append(audit.outcome(scope, call, requested, elapsed, &outcome, None))
                .await
                .map_err(|e| audit_withheld(name, &e))?;
            return self.answer(forwarded);
        };
        let flag = is_error(&answer);
        let original = serde_json::to_value(&answer).unwrap_or_default();
        let original_bytes = serde_json::to_vec(&original).map(|v| v.len()).unwrap_or(0);
        let scan = safety::scan_json(&original, &admitted.output);
        if !scan.report.is_empty() {
            let quarantine_id = if scan.quarantine && call.direction == Direction::ClientToServer {
                Some(self.quarantine(&original).map_err(|e| {
                    error(
                        codes::AUDIT_UNAVAILABLE,
                        format!("sealgate withheld the result from {name}: it must be quarantined but cannot be stored ({e})"),
                    )
                })?)
            } else {
                None
            };
            audit
                .append(audit.output(scope, call, requested, &scan.report, quarantine_id.as_deref()))
                .await
                .map_err(|e| audit_withheld(name, &e))?;
            if let Some(id) = quarantine_id {
                let outcome = Outcome::Quarantined { id: &id };
                audit
                    .append(audit.outcome(scope, call, requested, elapsed, &outcome, None))
                    .await
                    .map_err(|e| audit_withheld(name, &e))?;
                return Err(error(
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
        let mut delivered = if call.direction == Direction::ClientToServer {
            scan.redacted.clone()
        } else {
            original.clone()
        };
        let mut truncated = false;
        if let Some(limit) = admitted.constraints.and_then(|c| c.max_result_bytes) {
            let size = serde_json::to_vec(&delivered).map(|v| v.len()).unwrap_or(0) as u64;
            if size > limit {
                let on = admitted
                    .constraints
                    .map(|c| c.on_oversize)
                    .unwrap_or(OnOversize::Truncate);
                if on == OnOversize::Refuse || !truncate_contents(&mut delivered, limit) {
                    let outcome = Outcome::Oversize { bytes: size, limit };
                    audit
                        .append(audit.outcome(scope, call, requested, elapsed, &outcome, None))
                        .await
                        .map_err(|e| audit_withheld(name, &e))?;
                    return Err(error(
                        codes::OVERSIZE,
                        format!("sealgate refused the result: {size} bytes, more than max_result_bytes {limit}"),
                    ));
                }
                truncated = true;
            }
        }
        let outcome = Outcome::Result {
            json: &scan.redacted,
            is_error: flag,
            original_bytes,
            truncated,
        };
        audit
            .append(audit.outcome(scope, call, requested, elapsed, &outcome, Some(&admitted.ruling)))
            .await
            .map_err(|e| audit_withheld(name, &e))?;
        serde_json::from_value(delivered).map_err(|e| {
            error(
                codes::AUDIT_UNAVAILABLE,
                format!("sealgate withheld the result from {name}: the redacted result does not decode ({e})"),
            )
        })
    }

    /// Keeps a quarantined result for review (mode 0600), returning its id.
    fn quarantine(&self, result: &serde_json::Value) -> std::io::Result<String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = &self.core.quarantine_dir;
        std::fs::create_dir_all(dir)?;
        let id = format!("q-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.join(format!("{id}.json")))?;
        f.write_all(&serde_json::to_vec(result).unwrap_or_default())?;
        f.sync_all()?;
        Ok(id)
    }

    pub(super) async fn audited_up(
        &self,
        conn: &Conn,
        call: CallInfo,
        request: ClientRequest,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let scope = self.conn_scope(conn);
        let progress = ctx.meta.get_progress_token().map(|token| ProgressSink {
            peer: ctx.peer.clone(),
            token,
        });
        let admitted = match self.admit(conn, &scope, &call, progress, &ctx.ct).await {
            Ok(admitted) => admitted,
            // A refused tool call is answered as a tool error, so the agent
            // (and its model) reads why; the decision is in `_meta`. Other
            // refusals (the ledger cannot record) stay JSON-RPC errors.
            Err(e) if e.code.0 == codes::DENIED && call.method == "tools/call" => {
                let mut result =
                    rmcp::model::CallToolResult::error(vec![rmcp::model::ContentBlock::text(e.message.to_string())]);
                if let Some(data) = e.data {
                    let mut meta = rmcp::model::MetaObject::new();
                    meta.0.insert("io.sealgate/decision".into(), data);
                    result.meta = Some(meta);
                }
                return Ok(ServerResult::CallToolResult(result));
            }
            Err(e) => return Err(e),
        };
        let started = Instant::now();
        let forwarded = self.forward_up(conn, request, ctx, admitted.timeout).await;
        self.settle(&scope, &call, &admitted, started, forwarded, |result| match result {
            ServerResult::CallToolResult(r) => Some(r.is_error.unwrap_or(false)),
            _ => None,
        })
        .await
    }

    pub(super) async fn audited_down(
        &self,
        conn: &Conn,
        call: CallInfo,
        request: ServerRequest,
        ctx: &RequestContext<RoleClient>,
        downstream: &Peer<RoleServer>,
    ) -> Result<ClientResult, ErrorData> {
        let scope = self.conn_scope(conn);
        let admitted = self.admit(conn, &scope, &call, None, &ctx.ct).await?;
        let started = Instant::now();
        let forwarded = self.forward_down(downstream, request, ctx, admitted.timeout).await;
        self.settle(&scope, &call, &admitted, started, forwarded, |_| None)
            .await
    }

    /// Relays a listing, filtered to what the caller may use, and records
    /// what the upstream offered (and, for tools, any drift from the pins).
    pub(super) async fn listed(
        &self,
        conn: &Conn,
        method: &str,
        request: ClientRequest,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let cursor = serde_json::to_value(&request)
            .ok()
            .and_then(|v| v.pointer("/params/cursor").and_then(|c| c.as_str()).map(str::to_string));
        let result = self.answer(self.forward_up(conn, request, ctx, self.server.timeout).await)?;
        let mut listing = listing_of(method, &result, cursor);
        let items: Vec<serde_json::Value> = listing.items.as_array().cloned().unwrap_or_default();
        let hashes = if method == "tools/list" {
            // One page of several does not show which tools were removed.
            let complete = listing.cursor.is_none() && listing.next_cursor.is_none();
            self.remember_tools(&items, complete).await
        } else {
            BTreeMap::new()
        };
        let name = &self.server.name;
        let view = self.core.gov.view().await.map_err(|e| gov_unavailable(name, e))?;
        let principal = &conn.principal;
        let now = Timestamp::now();
        let server = view.state.registry.get(name);
        let approved = server.is_some_and(|s| s.status == crate::governance::Status::Approved);
        let mut hidden = Vec::new();
        let keep: Vec<bool> = listing
            .names
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
        listing.hidden = hidden;
        let audit = &self.core.audit;
        audit
            .append(audit.listing(&self.conn_scope(conn), method, &ctx.id, &listing))
            .await
            .map_err(|e| audit_withheld(name, &e))?;
        if listing.hidden.is_empty() {
            return Ok(result);
        }
        let key = super::listing_key(method);
        let mut json = serde_json::to_value(&result).map_err(|e| error(codes::AUDIT_UNAVAILABLE, e.to_string()))?;
        if let Some(list) = json.get_mut(key).and_then(|v| v.as_array_mut()) {
            let mut flags = keep.iter();
            list.retain(|_| flags.next().copied().unwrap_or(false));
        }
        serde_json::from_value(json).map_err(|e| error(codes::AUDIT_UNAVAILABLE, e.to_string()))
    }
}

/// `e` with the findings `output` does not allow redacted from its message
/// and data.
fn redact_error(e: &ErrorData, output: &ScanPolicy) -> ErrorData {
    let withheld = || ErrorData::new(e.code, "[REDACTED: the error could not be scanned]", None);
    let Ok(json) = serde_json::to_value(e) else {
        return withheld();
    };
    let scan = safety::scan_json(&json, output);
    if scan.report.is_empty() {
        return e.clone();
    }
    serde_json::from_value(scan.redacted).unwrap_or_else(|_| withheld())
}

/// Digest of a call's arguments as sent: what an approval is bound to.
fn digest_args(call: &CallInfo) -> String {
    let text = call
        .arguments
        .as_ref()
        .map(|a| serde_json::to_string(a).unwrap_or_default())
        .unwrap_or_default();
    digest(text.as_bytes())
}

/// Shortens the text contents of a tool result until it fits `limit`
/// bytes. False if it cannot be made to fit that way.
fn truncate_contents(result: &mut serde_json::Value, limit: u64) -> bool {
    const MARK: &str = "…[truncated by sealgate]";
    loop {
        let size = serde_json::to_vec(&*result).map(|v| v.len() as u64).unwrap_or(u64::MAX);
        if size <= limit {
            return true;
        }
        let excess = (size - limit) as usize + MARK.len();
        let longest = result
            .get_mut("content")
            .and_then(|c| c.as_array_mut())
            .and_then(|items| {
                items
                    .iter_mut()
                    .filter_map(|i| i.get_mut("text"))
                    .filter(|t| t.as_str().is_some_and(|s| s.len() > MARK.len()))
                    .max_by_key(|t| t.as_str().map_or(0, str::len))
            });
        let Some(text) = longest else { return false };
        let Some(s) = text.as_str() else { return false };
        let mut cut = s.len().saturating_sub(excess);
        while cut > 0 && !s.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut == 0 && s.ends_with(MARK) {
            return false;
        }
        *text = serde_json::Value::String(format!("{}{MARK}", &s[..cut]));
        if let Some(structured) = result.get_mut("structuredContent") {
            *structured = serde_json::Value::Null;
        }
    }
}
