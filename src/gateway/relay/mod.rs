//! The relay: one downstream MCP session bridged to one upstream session,
//! message by message.
//!
//! The relay works on raw JSON-RPC messages ([`Message`], exact JSON): what
//! it checks is what it forwards and what it records, numbers included.
//! It relays only what it recognises ([`mcp`](super::mcp)'s catalogue), in
//! both directions, and only from the session's owner:
//!
//! - client requests: `tools/call`, `resources/read` and `prompts/get`
//!   are calls (request and decision durable before forwarding, outcome
//!   before answering, governance deciding); `completion/complete`,
//!   `resources/subscribe`, `resources/unsubscribe`, `logging/setLevel` and
//!   the server's allowed custom methods are gated (registry and a grant)
//!   and recorded the same way; listings are filtered to what the caller
//!   may use and recorded; `ping` is relayed. Anything else is refused and
//!   recorded (`mcp.refused`).
//! - client notifications: a cancellation cancels a request of the client's
//!   that is in flight; progress is relayed only for a request the upstream
//!   sent in this session; `roots/list_changed` only from a client that
//!   declared roots. Client responses answer only requests the gateway sent
//!   in this session.
//! - upstream requests: `sampling/createMessage`, `elicitation/create` and
//!   `roots/list` (to a client that declared the capability) are recorded as
//!   calls; `ping` is relayed; anything else is refused.
//! - upstream notifications and every result, error, listing and request
//!   towards the client pass output safety first.
//!
//! JSON-RPC ids are per hop: the gateway numbers what it sends each way and
//! maps the answers back.

mod admission;
mod sink;
mod trusted;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::audit::{Audit, CallInfo, Direction, Refusal, Refused, Scope};
use super::credentials::{Credential, Credentials};
use super::mcp::{self, Class, Id, Message, RpcError, code};
use super::safety::{self, ScanPolicy};
use super::upstream::{self, Inbound, LinkLimits, ProcessLimit, Upstream};
use crate::governance::{CallRequest, Governance, Principal, Verdict, decide_access};
use crate::json::Json;

pub use admission::scan_policy;
pub use sink::{ClientSink, Streams};
pub use trusted::{hashes as tool_hashes, list_tools};

/// JSON-RPC error codes the gateway itself answers with (the
/// implementation-defined server error range). Documented in
/// `docs/GATEWAY.md`.
pub mod codes {
    /// The audit event could not be made durable; nothing was forwarded
    /// (or, after execution, the result was withheld).
    pub const AUDIT_UNAVAILABLE: i64 = -32050;
    /// The decision was not ALLOW.
    pub const DENIED: i64 = -32051;
    /// The upstream could not be reached, crashed, or closed the session;
    /// or the request was stopped by its session closing or a suspension.
    pub const UPSTREAM_UNAVAILABLE: i64 = -32052;
    /// The upstream did not answer in time; the request was cancelled.
    pub const UPSTREAM_TIMEOUT: i64 = -32053;
    /// The message was not sent by the principal that opened the session.
    pub const WRONG_PRINCIPAL: i64 = -32054;
    /// The result holds data the policy quarantines; it is held for review.
    pub const QUARANTINED: i64 = -32055;
    /// The result is larger than the policy's `max_result_bytes` allows.
    pub const OVERSIZE: i64 = -32056;
    /// A session or upstream-process limit of the gateway is reached.
    pub const LIMIT_REACHED: i64 = -32057;
}

/// What all sessions share.
pub struct Core {
    pub audit: Audit,
    /// The ledger `audit` writes to, for searches by value.
    pub ledger: Arc<ledger::Ledger>,
    /// Digests what output safety redacts (`findable`).
    pub find_key: crate::gateway::findable::FindKey,
    pub gov: Arc<Governance>,
    /// Where quarantined results are kept for review.
    pub quarantine_dir: std::path::PathBuf,
    pub data_dir: std::path::PathBuf,
    /// How often a call held for approval tells the client it still waits.
    pub approval_progress: Duration,
    pub link: LinkLimits,
    pub processes: ProcessLimit,
    pub sessions: Arc<SessionLimits>,
    /// Trusted tool listings for drift, one at a time per server.
    pub drift: trusted::DriftChecks,
    /// The sessions open now, by id (HTTP and stdio alike).
    pub open: OpenSessions,
    /// The counters of the policy's rate limits and quotas.
    pub limits: crate::governance::limits::Limiter,
}

/// The sessions open now: a session is here from its `session.opened` to
/// its `session.closed`.
#[derive(Default)]
pub struct OpenSessions(Mutex<HashMap<String, Arc<Session>>>);

impl OpenSessions {
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        lock(&self.0).get(id).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Session>> {
        lock(&self.0).values().cloned().collect()
    }

    fn insert(&self, session: &Arc<Session>) {
        lock(&self.0).insert(session.id.clone(), Arc::clone(session));
    }

    fn remove(&self, id: &str) {
        lock(&self.0).remove(id);
    }
}

/// A configured upstream server.
pub struct ServerEntry {
    pub name: String,
    pub upstream: Upstream,
    /// Per-user credentials: each upstream session gets its caller's own.
    pub credentials: Option<Arc<Credentials>>,
    pub env: Vec<String>,
    /// For one request.
    pub timeout: Duration,
    /// For starting a session: spawn or connect, and `initialize`.
    pub start_timeout: Duration,
    /// Custom (non-MCP) request methods relayed, gated and recorded.
    pub allow_methods: BTreeSet<String>,
}

impl ServerEntry {
    /// `principal`'s own credential for this server, read now (off the
    /// async workers); `None` for a server without per-user credentials.
    pub async fn credential(&self, principal: &str) -> Result<Option<Credential>, String> {
        let Some(credentials) = self.credentials.clone() else {
            return Ok(None);
        };
        let principal = principal.to_string();
        tokio::task::spawn_blocking(move || credentials.lookup(&principal))
            .await
            .map_err(|e| format!("server {}: reading the credential stopped: {e}", self.name))?
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

/// How the downstream client reached the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Downstream {
    Http,
    Stdio,
}

impl Downstream {
    fn to_event(self) -> events::Transport {
        match self {
            Downstream::Http => events::Transport::Http,
            Downstream::Stdio => events::Transport::Stdio,
        }
    }
}

/// Caps on sessions: in total and per principal.
pub struct SessionLimits {
    pub max_total: usize,
    pub max_per_principal: usize,
    open: Mutex<(usize, HashMap<String, usize>)>,
}

impl SessionLimits {
    pub fn new(max_total: usize, max_per_principal: usize) -> SessionLimits {
        SessionLimits {
            max_total,
            max_per_principal,
            open: Mutex::new((0, HashMap::new())),
        }
    }

    fn reserve(self: &Arc<Self>, principal: &str) -> Result<SessionSlot, String> {
        let mut open = lock(&self.open);
        if open.0 >= self.max_total {
            return Err(format!(
                "the gateway's limit of {} open sessions is reached (gateway.max_sessions)",
                self.max_total
            ));
        }
        let mine = open.1.get(principal).copied().unwrap_or(0);
        if mine >= self.max_per_principal {
            return Err(format!(
                "the limit of {} open sessions per principal is reached (gateway.max_sessions_per_principal)",
                self.max_per_principal
            ));
        }
        open.0 += 1;
        open.1.insert(principal.to_string(), mine + 1);
        Ok(SessionSlot {
            limits: Arc::clone(self),
            principal: principal.to_string(),
        })
    }
}

/// A place among the open sessions, given back on drop.
pub struct SessionSlot {
    limits: Arc<SessionLimits>,
    principal: String,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.limits.open);
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.principal) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.principal);
            }
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn rpc(code: i64, message: impl Into<String>) -> RpcError {
    RpcError::new(code, message)
}

fn audit_refused(server: &str, e: &ledger::Error) -> RpcError {
    rpc(
        codes::AUDIT_UNAVAILABLE,
        format!(
            "sealgate refused the call to {server}: the audit ledger cannot record it ({e}); nothing was forwarded"
        ),
    )
}

fn audit_withheld(server: &str, e: &ledger::Error) -> RpcError {
    rpc(
        codes::AUDIT_UNAVAILABLE,
        format!("sealgate withheld the result from {server}: the audit ledger cannot record the outcome ({e})"),
    )
}

/// Protocol versions with an `initialize` handshake, oldest first. The
/// gateway offers the upstream the client's version if it knows it, else
/// its newest, and accepts only these back.
pub const HANDSHAKE_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// Client capabilities relayed upstream (the client's own values).
const CLIENT_CAPABILITIES: [&str; 3] = ["roots", "sampling", "elicitation"];

/// Server capabilities relayed to the client: those whose methods the
/// gateway relays.
const SERVER_CAPABILITIES: [&str; 5] = ["tools", "prompts", "resources", "logging", "completions"];

/// How a forwarded request ended, before it is turned into an answer.
pub(crate) enum Forwarded {
    Answer(Json),
    PeerError(RpcError),
    Timeout(Duration),
    Cancelled,
    Unavailable(String),
    /// The peer's answer is not what the method returns.
    Malformed(String),
    /// The session ended while the request was in flight (why): the
    /// request was cancelled at the peer.
    Stopped(String),
}

enum Reply {
    Result(Json),
    Error(RpcError),
    Failed(String),
    Malformed(String),
}

/// One client session, bridged to its own upstream session.
pub struct Session {
    /// The session id: the `Mcp-Session-Id` the client holds, and
    /// `actor.session` of every event of the session.
    pub id: String,
    core: Arc<Core>,
    server: Arc<ServerEntry>,
    owner: Principal,
    agent: Option<String>,
    protocol_version: String,
    client_capabilities: Json,
    sink: ClientSink,
    upstream: upstream::Sender,
    state: Mutex<State>,
    closed: CancellationToken,
    /// Fired once `session.closed` is written (or could not be).
    ended: CancellationToken,
    last_active: Mutex<Instant>,
    opened_at: Instant,
    /// The `seq` of its `session.opened`.
    opened_seq: u64,
    _slot: SessionSlot,
}

#[derive(Default)]
struct State {
    next_id: i64,
    /// Requests sent upstream, by their upstream-hop id.
    up: HashMap<Id, oneshot::Sender<Reply>>,
    /// Client requests in flight, by the client's id.
    client: HashMap<Id, ClientCall>,
    /// Requests sent to the client for the upstream, by their client-hop id.
    down: HashMap<Id, DownCall>,
    /// The upstream's tool definitions as last listed in this session.
    tools: HashMap<String, Json>,
    /// Attempts per (target, arguments digest), for `max_retries`.
    attempts: HashMap<String, u32>,
    /// `mcp.refused` events written for this session (capped).
    refusals: u32,
    /// Requests of the upstream being handled (capped).
    server_requests: usize,
    /// Why the upstream session ended, once it has.
    gone: Option<String>,
    /// Why the session is closing, once it is: its calls in flight are
    /// withdrawn with this reason.
    closing: Option<String>,
    /// What the session did, for its `session.closed`.
    counts: events::SessionCounts,
}

struct ClientCall {
    cancel: CancellationToken,
    up_id: Option<Id>,
    progress_token: Option<Json>,
    /// Why the gateway withdrew it (a suspension), when it did: `cancel`
    /// is then the gateway's, not the client's, and the call is answered.
    withdrawn: Option<String>,
}

struct DownCall {
    reply: oneshot::Sender<Reply>,
    method: &'static mcp::Method,
    up_id: Id,
    progress_token: Option<Json>,
    cancel: CancellationToken,
    /// Why the gateway withdrew it (a suspension), when it did.
    withdrawn: Option<String>,
}

/// `mcp.refused` events written per session at most; later refusals are
/// counted in the log only, so a peer cannot flood the ledger through one
/// session.
const MAX_REFUSALS_RECORDED: u32 = 100;

/// Requests of the upstream a session handles at once (each is recorded
/// and waits for the client); more are refused, so an upstream cannot make
/// the gateway hold and record its requests without bound.
const MAX_SERVER_REQUESTS: usize = 32;

/// Requests of the client a session handles at once: each holds its params
/// (and a held call its approval), and keeps running if its client hangs
/// up; more are refused.
const MAX_CLIENT_REQUESTS: usize = 64;

/// How long a closing session waits for its calls in flight to record
/// their ends before `session.closed` is written (they were cancelled, so
/// this is the time to record that, not to run).
const CLOSE_PATIENCE: Duration = Duration::from_secs(5);

/// What opening a session needs.
pub struct Opening {
    pub core: Arc<Core>,
    pub server: Arc<ServerEntry>,
    pub principal: Principal,
    pub downstream: Downstream,
    pub sink: ClientSink,
    /// The client's `initialize` request.
    pub id: Id,
    pub params: Json,
}

impl Session {
    /// Opens a session for a client's `initialize`: admits it (registry,
    /// a grant on the server, the session caps) and records that before
    /// anything is started, then starts the upstream session and records
    /// `session.opened`. Returns the session and the `initialize` result
    /// for the client.
    pub async fn open(o: Opening) -> Result<(Arc<Session>, Json), RpcError> {
        let Opening {
            core,
            server,
            principal,
            downstream,
            sink,
            id,
            params,
        } = o;
        let name = server.name.clone();
        let session_id = uuid::Uuid::new_v4().simple().to_string();
        let client_info = params.get("clientInfo").cloned().unwrap_or(Json::Null);
        let agent = Some(format!(
            "{}/{}",
            client_info.get("name").and_then(Json::as_str).unwrap_or("unknown"),
            client_info.get("version").and_then(Json::as_str).unwrap_or("unknown")
        ));
        let requested_version = params
            .get("protocolVersion")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string();
        let scope = Scope {
            principal: principal.clone(),
            agent: agent.clone(),
            session_id: session_id.clone(),
            server: name.clone(),
            env: server.env.clone(),
            protocol_version: None,
        };
        let mut call = CallInfo::new("initialize", id.clone(), Direction::ClientToServer);
        call.arguments = Some(params.clone());
        let audit = &core.audit;
        let started = std::time::Instant::now();
        let view = core
            .gov
            .view()
            .await
            .map_err(|e| admission::gov_unavailable(&name, e))?;
        let stored = admission::redact_arguments(&call, &view, &core.find_key);
        let mut ruling = decide_access(
            &view.state,
            &CallRequest {
                server: &name,
                principal: &principal,
                method: "initialize",
                target: None,
                session: Some(&session_id),
            },
            ledger::Timestamp::now(),
        );
        // A server with per-user credentials starts no session without the
        // caller's own: refused the same way (and recorded), with its own
        // code; the reason names server and principal, never the secret.
        let mut credential = None;
        if matches!(ruling.verdict, Verdict::Allow) {
            match server.credential(&principal.name).await {
                Ok(found) => credential = found,
                Err(reason) => {
                    ruling.verdict = Verdict::Deny;
                    ruling.code = events::ReasonCode::NoCredential;
                    ruling.reason = reason;
                }
            }
        }
        // A caller the gates let in may still find the session caps full:
        // refused the same way (and recorded), with its own code.
        let mut code = codes::DENIED;
        let slot = match ruling.verdict {
            Verdict::Allow => core.sessions.reserve(&principal.name).map_err(|reason| {
                ruling.verdict = Verdict::Deny;
                ruling.code = events::ReasonCode::SessionLimit;
                ruling.reason = reason;
                code = codes::LIMIT_REACHED;
            }),
            _ => Err(()),
        };
        let took = started.elapsed();
        let requested = audit
            .append_decided(
                audit.requested(&scope, &call, &stored),
                audit.decision(&scope, &call, &ruling, None, took),
            )
            .await
            .map_err(|e| audit_refused(&name, &e))?;
        let Ok(slot) = slot else {
            let e = admission::denied(
                code,
                "DENY",
                ruling.told().to_string(),
                &requested,
                None,
                ruling.gate.as_str(),
            );
            // The session's terminal event: it never opened.
            let refusal = Refusal {
                by: if code == codes::LIMIT_REACHED {
                    events::RefusedBy::Limit
                } else if ruling.code == events::ReasonCode::NoCredential {
                    events::RefusedBy::Credential
                } else {
                    ruling.gate.refused_by()
                },
                code: ruling.code,
                rpc_code: e.code,
                message: e.message.clone(),
            };
            audit
                .append(audit.call_refused(&scope, &call, &requested, &refusal))
                .await
                .map_err(|err| audit_refused(&name, &err))?;
            return Err(e);
        };

        // What the upstream is asked: the client's version if the gateway
        // speaks it, else the gateway's newest; the client's identity and
        // the capabilities the gateway relays.
        let offer = if HANDSHAKE_VERSIONS.contains(&requested_version.as_str()) {
            requested_version.clone()
        } else {
            HANDSHAKE_VERSIONS[HANDSHAKE_VERSIONS.len() - 1].to_string()
        };
        let client_capabilities = filter_members(params.get("capabilities"), &CLIENT_CAPABILITIES);
        let upstream_params = Json::object([
            ("protocolVersion", Json::String(offer)),
            ("capabilities", client_capabilities.clone()),
            ("clientInfo", client_info.clone()),
        ]);
        let connected = server
            .upstream
            .connect(
                &name,
                upstream_params,
                core.link,
                &core.processes,
                server.start_timeout,
                credential.as_ref(),
            )
            .await;
        let connected = connected.and_then(|(link, result)| {
            mcp::method("initialize", mcp::Direction::Up)
                .map_or(Ok(()), |m| m.check_result(&result))
                .map_err(|e| format!("upstream {name}: {e}"))?;
            let version = result
                .get("protocolVersion")
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_string();
            if !HANDSHAKE_VERSIONS.contains(&version.as_str()) {
                return Err(format!(
                    "upstream {name} answered protocol version {version:?}, which sealgate does not relay"
                ));
            }
            Ok((link, result, version))
        });

        let mut opened_scope = scope.clone();
        let default_output = admission::default_output(&view);
        let mut body = events::SessionOpened {
            call: Audit::fields(&scope, Some(&call)),
            downstream_transport: downstream.to_event(),
            upstream_transport: server.upstream.transport(),
            upstream_address: server.upstream.address(),
            protocol_version_requested: requested_version,
            client: open_object(client_info.to_serde()),
            client_capabilities: open_object(client_capabilities.to_serde()),
            server: None,
            outcome: events::SessionOutcome::Ok,
            error: None,
            error_type: None,
            credential_source: credential.as_ref().map(Credential::source),
            credential_fingerprint: credential.as_ref().map(|c| c.fingerprint().to_string()),
        };
        let outcome = match connected {
            Ok((link, result, version)) => {
                opened_scope.protocol_version = Some(version.clone());
                body.call.protocol_version = Some(version.clone());
                let server_info = result.get("serverInfo").cloned().unwrap_or(Json::Null);
                body.server = Some(open_object(
                    safety::scan_json(&server_info, &scan_policy(default_output))
                        .redacted
                        .to_serde(),
                ));
                Ok((link, result, version))
            }
            Err(message) => {
                // It may quote the upstream (its refusal, a type error).
                let message = safety::redact_text_for_log(&message);
                body.outcome = events::SessionOutcome::Unavailable;
                body.error_type = Some(events::ErrorType::UpstreamUnavailable);
                body.error = Some(message.clone());
                Err(message)
            }
        };
        let opened = audit.session_opened(&opened_scope, &call, &body).map(|mut d| {
            d.correlation.answers = Some(requested.seq);
            d
        });
        let opened = audit.append(opened).await.map_err(|e| audit_refused(&name, &e))?;
        let (link, result, version) = outcome.map_err(|m| rpc(codes::UPSTREAM_UNAVAILABLE, m))?;

        let session = Arc::new(Session {
            id: session_id,
            core: Arc::clone(&core),
            server: Arc::clone(&server),
            owner: principal,
            agent,
            protocol_version: version.clone(),
            client_capabilities,
            sink,
            upstream: link.sender.clone(),
            state: Mutex::new(State::default()),
            closed: CancellationToken::new(),
            ended: CancellationToken::new(),
            last_active: Mutex::new(Instant::now()),
            opened_at: started,
            opened_seq: opened.seq,
            _slot: slot,
        });
        core.open.insert(&session);
        tokio::spawn(pump(Arc::downgrade(&session), link));
        // A suspension written while the session was opening was swept
        // before the session was open, so it is looked for now: the view
        // read after the insert holds every suspension whose sweep could
        // have missed it. The session is closed by it, recorded, and the
        // client refused.
        let view = match core.gov.view().await {
            Ok(view) => view,
            Err(e) => {
                let e = admission::gov_unavailable(&name, e);
                session.close(events::CloseReason::GatewayError, &e.message, None).await;
                return Err(e);
            }
        };
        if let Some(s) =
            view.state
                .suspensions
                .stopping(&session.owner.name, &session.owner.teams, &name, Some(&session.id))
        {
            let told = s.told();
            session
                .close(events::CloseReason::Suspended, &told, Some(s.id.clone()))
                .await;
            return Err(rpc(codes::DENIED, format!("sealgate: DENY: {told}")));
        }

        // What the client is told: the upstream's answer, with only the
        // capabilities the gateway relays, through output safety.
        let mut answer = Json::object([
            ("protocolVersion", Json::String(version)),
            (
                "capabilities",
                filter_members(result.get("capabilities"), &SERVER_CAPABILITIES),
            ),
        ]);
        for key in ["serverInfo", "instructions"] {
            if let Some(v) = result.get(key) {
                answer.set(key, v.clone());
            }
        }
        let answer = session.outward(answer, None, "initialize").await;
        Ok((session, answer))
    }

    /// The principal that opened it: name and teams.
    pub fn owner(&self) -> (String, Vec<String>) {
        (self.owner.name.clone(), self.owner.teams.clone())
    }

    pub fn server_name(&self) -> &str {
        &self.server.name
    }

    /// Records a client message that is not one JSON-RPC message.
    pub async fn record_refused_message(&self, refusal: &mcp::Refusal, bytes: usize) {
        self.refuse_up(
            refusal.id.as_ref(),
            refusal.method.as_deref(),
            refusal.error.clone(),
            bytes,
        )
        .await;
    }

    /// When the client last sent anything.
    pub fn idle_for(&self) -> Duration {
        lock(&self.last_active).elapsed()
    }

    fn touch(&self) {
        *lock(&self.last_active) = Instant::now();
    }

    /// Requests of the client still being answered.
    pub fn busy(&self) -> bool {
        !lock(&self.state).client.is_empty()
    }

    pub fn streams(&self) -> Option<&Streams> {
        match &self.sink {
            ClientSink::Http(streams) => Some(streams),
            ClientSink::Lines(_) => None,
        }
    }

    /// Whether the session has ended (or is ending).
    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Resolves when the session starts to end.
    pub async fn closing(&self) {
        self.closed.cancelled().await;
    }

    /// Ends the session, once (later calls wait for that one): it leaves the
    /// open sessions, its held calls are withdrawn and its calls in flight
    /// cancelled at the peer (each recorded, with `why`), then, once they
    /// have ended (or [`CLOSE_PATIENCE`] passed), `session.closed` is
    /// written with its counts, and the upstream session ends (a stdio
    /// child is killed).
    ///
    /// The close runs on a task of its own: a caller that stops waiting (an
    /// HTTP handler dropped when its client disconnects) does not stop it
    /// half-way, which would leave the session out of the open sessions
    /// with no `session.closed` and its upstream (a child process) running.
    pub async fn close(self: &Arc<Self>, reason: events::CloseReason, why: &str, suspension_id: Option<String>) {
        let this = Arc::clone(self);
        let why = why.to_string();
        let task = tokio::spawn(async move { this.close_now(reason, &why, suspension_id).await });
        if let Err(e) = task.await {
            tracing::error!(session = %self.id, "closing the session failed: {e}");
        }
    }

    async fn close_now(&self, reason: events::CloseReason, why: &str, suspension_id: Option<String>) {
        let first = {
            let mut st = lock(&self.state);
            let first = st.closing.is_none();
            if first {
                st.closing = Some(format!("the session was closed: {why}"));
            }
            first
        };
        if !first {
            self.ended.cancelled().await;
            return;
        }
        self.core.open.remove(&self.id);
        if reason == events::CloseReason::Suspended {
            self.withdraw_calls(why);
        }
        self.closed.cancel();
        let patience = Instant::now() + CLOSE_PATIENCE;
        while self.busy() && Instant::now() < patience {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let counts = {
            let mut c = lock(&self.state).counts;
            c.unfinished = c.calls.saturating_sub(c.denied + c.completed + c.failed);
            c
        };
        let scope = self.scope();
        let body = events::SessionClosed {
            call: Audit::fields(&scope, None),
            reason,
            opened_seq: self.opened_seq,
            duration_ns: u64::try_from(self.opened_at.elapsed().as_nanos()).unwrap_or(u64::MAX),
            counts,
            suspension_id,
        };
        let audit = &self.core.audit;
        match audit.append(audit.session_closed(&scope, &body)).await {
            Ok(r) => {
                tracing::info!(session = %self.id, server = %self.server.name, seq = r.seq, "session closed: {why}")
            }
            Err(e) => {
                tracing::error!(session = %self.id, server = %self.server.name, "session.closed not recorded ({why}): {e}")
            }
        }
        if let Some(streams) = self.streams() {
            streams.close_get();
        }
        self.upstream.close().await;
        self.ended.cancel();
    }

    /// Withdraws every call of the session in flight (a suspension): held
    /// calls end refused, running ones are cancelled at the peer, each
    /// recorded with `why`; the session stays open. Returns how many.
    pub fn withdraw_calls(&self, why: &str) -> usize {
        let mut st = lock(&self.state);
        let mut n = 0;
        for call in st.client.values_mut() {
            if call.withdrawn.is_none() {
                call.withdrawn = Some(why.to_string());
                call.cancel.cancel();
                n += 1;
            }
        }
        for call in st.down.values_mut() {
            if call.withdrawn.is_none() {
                call.withdrawn = Some(why.to_string());
                call.cancel.cancel();
                n += 1;
            }
        }
        n
    }

    /// Whether `suspension` stops this session's calls.
    pub fn stopped_by(&self, suspension: &crate::governance::suspensions::Suspension) -> bool {
        suspension.stops(&self.owner.name, &self.owner.teams, &self.server.name, Some(&self.id))
    }

    /// Why the session is closing (for its calls in flight).
    fn closing_reason(&self) -> String {
        lock(&self.state)
            .closing
            .clone()
            .unwrap_or_else(|| "the session was closed".into())
    }

    /// Counts what a session's event records (after it was written).
    fn tally(&self, kind: &ledger::EventKind) {
        let mut st = lock(&self.state);
        let c = &mut st.counts;
        match kind {
            ledger::EventKind::ToolCallRequested | ledger::EventKind::McpRequested => c.calls += 1,
            ledger::EventKind::CallRefused => c.denied += 1,
            ledger::EventKind::ExecutionCompleted => c.completed += 1,
            ledger::EventKind::ExecutionFailed => c.failed += 1,
            _ => {}
        }
    }

    /// A call's terminal or request event, appended and counted.
    async fn append_counted(&self, draft: ledger::Result<ledger::Draft>) -> ledger::Result<ledger::Receipt> {
        let kind = draft.as_ref().map(|d| d.kind.clone()).ok();
        let receipt = self.core.audit.append(draft).await?;
        if let Some(kind) = kind {
            self.tally(&kind);
        }
        Ok(receipt)
    }

    fn scope(&self) -> Scope {
        Scope {
            principal: self.owner.clone(),
            agent: self.agent.clone(),
            session_id: self.id.clone(),
            server: self.server.name.clone(),
            env: self.server.env.clone(),
            protocol_version: Some(self.protocol_version.clone()),
        }
    }

    /// A message must come from the principal that opened the session,
    /// with the teams it had then: the session decides and records its
    /// calls with those teams, so a caller who left a team (or holds a
    /// token with fewer) must not use a session opened with it. The
    /// refusal does not say who the owner is.
    pub fn check_owner(&self, principal: &Principal) -> Result<(), RpcError> {
        if principal.name != self.owner.name || principal.method != self.owner.method {
            return Err(rpc(
                codes::WRONG_PRINCIPAL,
                format!("session {} belongs to another principal", self.id),
            ));
        }
        let teams = |p: &Principal| p.teams.iter().cloned().collect::<BTreeSet<String>>();
        if teams(principal) != teams(&self.owner) {
            return Err(rpc(
                codes::WRONG_PRINCIPAL,
                format!(
                    "session {} was opened with other teams than the caller has now: open a new session",
                    self.id
                ),
            ));
        }
        Ok(())
    }

    /// Records a message the gateway does not relay (up to
    /// [`MAX_REFUSALS_RECORDED`] per session).
    async fn record_refusal(&self, refused: Refused<'_>) {
        // A reason may quote what was sent (a type error names the value).
        let reason = safety::redact_text_for_log(refused.reason);
        let refused = Refused {
            reason: &reason,
            ..refused
        };
        tracing::info!(
            server = %self.server.name,
            session = %self.id,
            direction = refused.direction.as_str(),
            method = refused.method.unwrap_or(""),
            "refused: {}",
            refused.reason
        );
        {
            let mut st = lock(&self.state);
            if st.refusals >= MAX_REFUSALS_RECORDED {
                return;
            }
            st.refusals += 1;
        }
        let audit = &self.core.audit;
        if let Err(e) = audit.append(audit.refused(&self.scope(), &refused)).await {
            tracing::error!(server = %self.server.name, "refusal not recorded: {e}");
        }
    }

    /// Records the refusal of a message coming `direction` and gives back
    /// its error.
    async fn refuse(
        &self,
        direction: Direction,
        id: Option<&Id>,
        method: Option<&str>,
        error: RpcError,
        bytes: usize,
    ) -> RpcError {
        self.record_refusal(Refused {
            direction,
            method,
            request_id: id,
            code: error.code,
            reason: &error.message,
            bytes,
        })
        .await;
        error
    }

    async fn refuse_up(&self, id: Option<&Id>, method: Option<&str>, error: RpcError, bytes: usize) -> RpcError {
        self.refuse(Direction::ClientToServer, id, method, error, bytes).await
    }

    /// A client request. `None`: it was cancelled, and is not answered.
    pub async fn request(
        self: &Arc<Self>,
        principal: &Principal,
        id: Id,
        method: String,
        params: Option<Json>,
        bytes: usize,
    ) -> Option<Message> {
        self.touch();
        if let Err(e) = self.check_owner(principal) {
            return Some(Message::Error { id: Some(id), error: e });
        }
        if self.is_closed() {
            let e = rpc(codes::UPSTREAM_UNAVAILABLE, self.closing_reason());
            return Some(Message::Error { id: Some(id), error: e });
        }
        lock(&self.state).counts.requests += 1;
        let cancel = CancellationToken::new();
        let full = {
            let mut st = lock(&self.state);
            if st.client.contains_key(&id) {
                drop(st);
                let e = rpc(
                    code::INVALID_REQUEST,
                    format!("invalid request: request id {id} is already in flight in this session"),
                );
                return Some(Message::Error { id: Some(id), error: e });
            }
            let full = st.client.len() >= MAX_CLIENT_REQUESTS;
            if !full {
                st.client.insert(
                    id.clone(),
                    ClientCall {
                        cancel: cancel.clone(),
                        up_id: None,
                        progress_token: mcp::progress_token(params.as_ref()),
                        withdrawn: None,
                    },
                );
            }
            full
        };
        if full {
            let e = rpc(
                codes::LIMIT_REACHED,
                format!("sealgate refused the request: {MAX_CLIENT_REQUESTS} requests are in flight in this session"),
            );
            let e = self.refuse_up(Some(&id), Some(&method), e, bytes).await;
            return Some(Message::Error { id: Some(id), error: e });
        }
        let answer = self.dispatch(&id, &method, params, bytes, &cancel).await;
        let withdrawn = lock(&self.state)
            .client
            .remove(&id)
            .is_some_and(|c| c.withdrawn.is_some());
        match answer {
            // Cancelled by the client: not answered. Withdrawn by the
            // gateway: answered with why.
            _ if cancel.is_cancelled() && !withdrawn => None,
            Ok(result) => Some(Message::Response { id, result }),
            Err(error) => Some(Message::Error { id: Some(id), error }),
        }
    }

    async fn dispatch(
        self: &Arc<Self>,
        id: &Id,
        method: &str,
        params: Option<Json>,
        bytes: usize,
        cancel: &CancellationToken,
    ) -> Result<Json, RpcError> {
        let class = match mcp::method(method, mcp::Direction::Up) {
            Some(m) => {
                if let Err(e) = m.check_params(params.as_ref()) {
                    let error = rpc(code::INVALID_PARAMS, format!("invalid params: {e}"));
                    return Err(self.refuse_up(Some(id), Some(method), error, bytes).await);
                }
                m.class
            }
            None if self.server.allow_methods.contains(method) && !mcp::is_mcp_method(method) => {
                if params.as_ref().is_some_and(|p| !p.is_object()) {
                    let error = rpc(
                        code::INVALID_PARAMS,
                        format!("invalid params: {method}: params must be an object"),
                    );
                    return Err(self.refuse_up(Some(id), Some(method), error, bytes).await);
                }
                Class::Gated
            }
            None => {
                let error = rpc(
                    code::METHOD_NOT_FOUND,
                    format!(
                        "method not found: sealgate does not relay {method:?} to {} (custom methods must be allowed in servers.{}.allow_methods)",
                        self.server.name, self.server.name
                    ),
                );
                return Err(self.refuse_up(Some(id), Some(method), error, bytes).await);
            }
        };
        match class {
            Class::Initialize => {
                let error = rpc(
                    code::INVALID_REQUEST,
                    format!("invalid request: session {} is already initialized", self.id),
                );
                Err(self.refuse_up(Some(id), Some(method), error, bytes).await)
            }
            Class::Ping => {
                let forwarded = self.forward_up(id, method, params, self.server.timeout, cancel).await;
                match forwarded {
                    // Any object fits a ping's result: the upstream's words,
                    // through output safety like the rest.
                    Forwarded::Answer(result) => self.outward_checked(result, method).await.ok_or_else(|| {
                        rpc(
                            codes::QUARANTINED,
                            "sealgate withheld the ping result: it holds data the policy quarantines",
                        )
                    }),
                    other => self.answer_outward(other, method).await,
                }
            }
            Class::Listing => self.listed(id, method, params, cancel).await,
            Class::Call | Class::Gated => {
                let call = call_info(method, id, params.as_ref());
                self.audited_up(call, class, params, cancel).await
            }
            Class::ServerCall => Err(rpc(code::METHOD_NOT_FOUND, format!("method not found: {method}"))),
        }
    }

    /// A client notification: accepted (relayed or acted on) or refused.
    pub async fn notify(
        &self,
        principal: &Principal,
        method: &str,
        params: Option<Json>,
        bytes: usize,
    ) -> Result<(), RpcError> {
        self.touch();
        self.check_owner(principal)?;
        // A closing session (closed, suspended) carries nothing more upstream.
        if self.is_closed() {
            return Err(rpc(codes::UPSTREAM_UNAVAILABLE, self.closing_reason()));
        }
        let Some(kind) = mcp::notification(method, mcp::Direction::Up) else {
            let error = rpc(
                code::METHOD_NOT_FOUND,
                format!("method not found: sealgate does not relay the notification {method:?}"),
            );
            return Err(self.refuse_up(None, Some(method), error, bytes).await);
        };
        if let Err(e) = kind.check_params(params.as_ref()) {
            let error = rpc(code::INVALID_PARAMS, format!("invalid params: {e}"));
            return Err(self.refuse_up(None, Some(method), error, bytes).await);
        }
        match method {
            // The gateway completed the upstream's handshake itself.
            "notifications/initialized" => Ok(()),
            "notifications/cancelled" => {
                let target = params.as_ref().and_then(|p| p.get("requestId")).and_then(Id::read);
                if let Some(target) = target
                    && let Some(call) = lock(&self.state).client.get(&target)
                {
                    call.cancel.cancel();
                }
                // A cancellation racing its answer is normal: nothing to do.
                Ok(())
            }
            "notifications/progress" => {
                let token = params.as_ref().and_then(|p| p.get("progressToken")).cloned();
                let known = token.as_ref().is_some_and(|t| {
                    lock(&self.state)
                        .down
                        .values()
                        .any(|d| d.progress_token.as_ref() == Some(t))
                });
                if !known {
                    let error = rpc(
                        code::INVALID_PARAMS,
                        "invalid params: no request of the upstream in this session has this progress token",
                    );
                    return Err(self.refuse_up(None, Some(method), error, bytes).await);
                }
                self.send_up(Message::Notification {
                    method: method.to_string(),
                    params,
                })
                .await
            }
            "notifications/roots/list_changed" => {
                if self.client_capabilities.get("roots").is_none() {
                    let error = rpc(
                        code::INVALID_REQUEST,
                        "invalid request: the client did not declare the roots capability",
                    );
                    return Err(self.refuse_up(None, Some(method), error, bytes).await);
                }
                self.send_up(Message::Notification {
                    method: method.to_string(),
                    params,
                })
                .await
            }
            _ => Err(rpc(code::METHOD_NOT_FOUND, format!("method not found: {method}"))),
        }
    }

    /// A client response (or error) to a request the gateway sent it.
    pub async fn respond(&self, principal: &Principal, message: Message, bytes: usize) -> Result<(), RpcError> {
        self.touch();
        self.check_owner(principal)?;
        let (id, reply) = match message {
            Message::Response { id, result } => (Some(id), Ok(result)),
            Message::Error { id, error } => (id, Err(error)),
            _ => return Err(rpc(code::INVALID_REQUEST, "invalid request: not a response")),
        };
        let Some(id) = id else {
            // An error about a message the client could not read.
            tracing::info!(session = %self.id, "client reported an error without an id: {reply:?}");
            return Ok(());
        };
        let Some(call) = lock(&self.state).down.remove(&id) else {
            let error = rpc(
                code::INVALID_REQUEST,
                format!("invalid request: no request of the gateway in this session has id {id}"),
            );
            return Err(self.refuse_up(Some(&id), None, error, bytes).await);
        };
        let reply = match reply {
            Ok(result) => match call.method.check_result(&result) {
                Ok(()) => Reply::Result(result),
                Err(e) => Reply::Malformed(e),
            },
            Err(error) => Reply::Error(error),
        };
        let _ = call.reply.send(reply);
        Ok(())
    }

    async fn send_up(&self, message: Message) -> Result<(), RpcError> {
        self.upstream
            .send(&message)
            .await
            .map_err(|e| rpc(codes::UPSTREAM_UNAVAILABLE, e))
    }

    /// Forwards a client request upstream and waits for the answer, the
    /// server's timeout, the client's cancellation or the session's end.
    async fn forward_up(
        &self,
        client_id: &Id,
        method: &str,
        params: Option<Json>,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Forwarded {
        let (tx, rx) = oneshot::channel();
        let up_id = {
            let mut st = lock(&self.state);
            if let Some(reason) = &st.gone {
                return Forwarded::Unavailable(reason.clone());
            }
            // Withdrawn (a suspension) or its session closing since it was
            // admitted: it must not reach the upstream, and it ends with
            // why (a sweep after this finds it in `up` and cancels it).
            if let Some(why) = st.client.get(client_id).and_then(|c| c.withdrawn.clone()) {
                return Forwarded::Stopped(why);
            }
            if let Some(why) = &st.closing {
                return Forwarded::Stopped(why.clone());
            }
            st.next_id += 1;
            let up_id = Id::int(st.next_id);
            st.up.insert(up_id.clone(), tx);
            if let Some(call) = st.client.get_mut(client_id) {
                call.up_id = Some(up_id.clone());
            }
            up_id
        };
        // Cancelled while it was being admitted (e.g. held for approval):
        // it must not reach the upstream at all.
        if cancel.is_cancelled() {
            let mut st = lock(&self.state);
            st.up.remove(&up_id);
            if let Some(why) = st.client.get(client_id).and_then(|c| c.withdrawn.clone()) {
                return Forwarded::Stopped(why);
            }
            return Forwarded::Cancelled;
        }
        let request = Message::Request {
            id: up_id.clone(),
            method: method.to_string(),
            params,
        };
        if let Err(e) = self.upstream.send(&request).await {
            lock(&self.state).up.remove(&up_id);
            return Forwarded::Unavailable(e);
        }
        let forwarded = tokio::select! {
            // A withdrawal (the call's own token) is read before the session's close.
            biased;
            reply = rx => match reply {
                Ok(Reply::Result(result)) => match mcp::method(method, mcp::Direction::Up) {
                    Some(m) => match m.check_result(&result) {
                        Ok(()) => Forwarded::Answer(result),
                        Err(e) => Forwarded::Malformed(e),
                    },
                    None => Forwarded::Answer(result),
                },
                Ok(Reply::Error(e)) => Forwarded::PeerError(e),
                Ok(Reply::Failed(reason)) => Forwarded::Unavailable(reason),
                Ok(Reply::Malformed(reason)) => Forwarded::Malformed(reason),
                Err(_) => Forwarded::Unavailable(self.gone_reason()),
            },
            _ = tokio::time::sleep(timeout) => {
                self.cancel_up(&up_id, "timeout").await;
                Forwarded::Timeout(timeout)
            }
            _ = cancel.cancelled() => {
                let withdrawn = lock(&self.state).client.get(client_id).and_then(|c| c.withdrawn.clone());
                match withdrawn {
                    Some(why) => {
                        // The upstream is not told who was suspended.
                        self.cancel_up(&up_id, "withdrawn by the gateway").await;
                        Forwarded::Stopped(why)
                    }
                    None => {
                        self.cancel_up(&up_id, "cancelled by the client").await;
                        Forwarded::Cancelled
                    }
                }
            }
            _ = self.closed.cancelled() => {
                let why = self.closing_reason();
                self.cancel_up(&up_id, &why).await;
                Forwarded::Stopped(why)
            }
        };
        lock(&self.state).up.remove(&up_id);
        forwarded
    }

    fn gone_reason(&self) -> String {
        lock(&self.state)
            .gone
            .clone()
            .unwrap_or_else(|| format!("upstream {} closed the session (crashed or exited)", self.server.name))
    }

    async fn cancel_up(&self, up_id: &Id, reason: &str) {
        let note = Message::notification(
            "notifications/cancelled",
            Json::object([("requestId", up_id.to_json()), ("reason", Json::str(reason))]),
        );
        let _ = self.upstream.send(&note).await;
    }

    fn answer(&self, forwarded: Forwarded) -> Result<Json, RpcError> {
        match forwarded {
            Forwarded::Answer(answer) => Ok(answer),
            Forwarded::PeerError(e) => Err(e),
            Forwarded::Timeout(after) => Err(rpc(
                codes::UPSTREAM_TIMEOUT,
                format!(
                    "{} did not answer within {} ms; the request was cancelled",
                    self.server.name,
                    after.as_millis()
                ),
            )),
            Forwarded::Cancelled => Err(rpc(codes::UPSTREAM_UNAVAILABLE, "request cancelled")),
            Forwarded::Stopped(why) => Err(rpc(codes::UPSTREAM_UNAVAILABLE, why)),
            // These quote the peer (a type error names the value it
            // refused, a stray member its name): redacted like a refusal's
            // reason, since they bypass output safety otherwise.
            Forwarded::Unavailable(message) => {
                Err(rpc(codes::UPSTREAM_UNAVAILABLE, safety::redact_text_for_log(&message)))
            }
            Forwarded::Malformed(message) => Err(rpc(
                code::INTERNAL_ERROR,
                format!(
                    "sealgate refused the upstream's answer: {}",
                    safety::redact_text_for_log(&message)
                ),
            )),
        }
    }

    /// [`Self::answer`] for an answer going to the client: the upstream's
    /// error passes output safety like any other message of its.
    pub(super) async fn answer_outward(&self, forwarded: Forwarded, what: &str) -> Result<Json, RpcError> {
        match forwarded {
            Forwarded::PeerError(e) => {
                let checked = self.outward_checked(e.to_json(), what).await;
                let text = |v: &Json, k: &str| v.get(k).and_then(Json::as_str).map(str::to_string);
                Err(match checked {
                    Some(v) => RpcError {
                        code: e.code,
                        message: text(&v, "message").unwrap_or_default(),
                        data: v.get("data").cloned(),
                    },
                    None => rpc(
                        e.code,
                        "[withheld: the upstream's error holds data the policy quarantines]",
                    ),
                })
            }
            other => self.answer(other),
        }
    }

    /// The client request a message from the upstream belongs to: the one
    /// on whose response stream it came (HTTP upstreams), else the only
    /// one in flight.
    fn client_of(&self, related: Option<&Id>) -> Option<Id> {
        let st = lock(&self.state);
        if let Some(up_id) = related {
            return st
                .client
                .iter()
                .find(|(_, c)| c.up_id.as_ref() == Some(up_id))
                .map(|(id, _)| id.clone());
        }
        if st.client.len() == 1 {
            return st.client.keys().next().cloned();
        }
        None
    }

    /// A value on its way to the client, through output safety by the
    /// policy's default `output`: redacted, or withheld (`None` inside:
    /// the caller drops it) when the policy quarantines what it holds.
    /// Findings are recorded (`output.redacted` / `output.quarantined`).
    async fn outward_checked(&self, value: Json, what: &str) -> Option<Json> {
        let policy = match self.core.gov.view().await {
            Ok(view) => scan_policy(admission::default_output(&view)),
            // Without a policy to read, redact everything it could find.
            Err(_) => ScanPolicy {
                secrets: safety::Action::Redact,
                pii: safety::Action::Redact,
            },
        };
        let scan = safety::scan_json_async(value, policy).await;
        if scan.report.is_empty() {
            return Some(scan.redacted);
        }
        let call = CallInfo::new(what, Id::Str(String::new()), Direction::ServerToClient);
        let audit = &self.core.audit;
        let draft = audit
            .output(&self.scope(), &call, None, &scan.report, None)
            .map(|mut d| {
                if scan.quarantine {
                    d.kind = ledger::EventKind::OutputQuarantined;
                }
                d
            });
        if let Err(e) = audit.append(draft).await {
            // The finding is not on record: nothing of it goes out.
            tracing::error!(server = %self.server.name, "output finding not recorded: {e}");
            return None;
        }
        if scan.quarantine { None } else { Some(scan.redacted) }
    }

    /// [`Self::outward_checked`] for a value that must be answered: a
    /// withheld one becomes an empty object.
    async fn outward(&self, value: Json, _related: Option<&Id>, what: &str) -> Json {
        self.outward_checked(value, what)
            .await
            .unwrap_or_else(|| Json::Object(Vec::new()))
    }

    /// Sends a notification from the upstream on to the client.
    pub(super) async fn to_client(&self, message: Message, related: Option<&Id>) {
        if let Err(e) = self.sink.send(&message, related).await {
            tracing::debug!(server = %self.server.name, "not relayed to the client: {e}");
        }
    }

    /// A request from the upstream.
    async fn server_request(self: Arc<Self>, up_id: Id, method: String, params: Option<Json>, related: Option<Id>) {
        let admitted = {
            let mut st = lock(&self.state);
            let room = st.server_requests < MAX_SERVER_REQUESTS;
            if room {
                st.server_requests += 1;
            }
            room
        };
        let answer = if admitted {
            let answer = self.server_request_answer(&up_id, &method, params, related).await;
            lock(&self.state).server_requests -= 1;
            answer
        } else {
            let error = rpc(
                codes::LIMIT_REACHED,
                format!(
                    "sealgate refused the request: {MAX_SERVER_REQUESTS} requests of the server are in flight in this session"
                ),
            );
            Err(self.refuse_down(Some(&up_id), Some(&method), error, 0).await)
        };
        let message = match answer {
            Ok(result) => Message::Response { id: up_id, result },
            Err(error) => Message::Error { id: Some(up_id), error },
        };
        if let Err(e) = self.upstream.send(&message).await {
            tracing::debug!(server = %self.server.name, "answer not relayed upstream: {e}");
        }
    }

    async fn refuse_down(&self, id: Option<&Id>, method: Option<&str>, error: RpcError, bytes: usize) -> RpcError {
        self.refuse(Direction::ServerToClient, id, method, error, bytes).await
    }

    async fn server_request_answer(
        self: &Arc<Self>,
        up_id: &Id,
        method: &str,
        params: Option<Json>,
        related: Option<Id>,
    ) -> Result<Json, RpcError> {
        let Some(m) = mcp::method(method, mcp::Direction::Down) else {
            let error = rpc(
                code::METHOD_NOT_FOUND,
                format!("method not found: sealgate does not relay {method:?} to the client"),
            );
            return Err(self.refuse_down(Some(up_id), Some(method), error, 0).await);
        };
        if let Err(e) = m.check_params(params.as_ref()) {
            let error = rpc(code::INVALID_PARAMS, format!("invalid params: {e}"));
            return Err(self.refuse_down(Some(up_id), Some(method), error, 0).await);
        }
        if let Some(capability) = m.client_capability
            && self.client_capabilities.get(capability).is_none()
        {
            let error = rpc(
                code::METHOD_NOT_FOUND,
                format!("method not found: the client did not declare the {capability} capability"),
            );
            return Err(self.refuse_down(Some(up_id), Some(method), error, 0).await);
        }
        let client_id = self.client_of(related.as_ref());
        match m.class {
            Class::ServerCall => {
                let mut call = CallInfo::new(method, up_id.clone(), Direction::ServerToClient);
                call.arguments = params.clone();
                self.audited_down(call, m, params, client_id).await
            }
            _ => {
                let forwarded = self
                    .forward_down(up_id, m, params, client_id.as_ref(), self.server.timeout)
                    .await;
                self.answer(forwarded)
            }
        }
    }

    /// Forwards a request from the upstream to the client, through output
    /// safety, and waits for the client's answer.
    async fn forward_down(
        &self,
        up_id: &Id,
        method: &'static mcp::Method,
        params: Option<Json>,
        related: Option<&Id>,
        timeout: Duration,
    ) -> Forwarded {
        let params = match params {
            Some(p) => match self.outward_checked(p, method.name).await {
                Some(p) => Some(p),
                None => {
                    return Forwarded::PeerError(rpc(
                        codes::QUARANTINED,
                        format!(
                            "sealgate withheld the request: it holds data the policy quarantines ({})",
                            method.name
                        ),
                    ));
                }
            },
            None => None,
        };
        let (tx, rx) = oneshot::channel();
        let cancel = CancellationToken::new();
        let down_id = {
            let mut st = lock(&self.state);
            // Its session closing (closed, suspended): the request does not
            // reach the client, and the upstream is not told who was
            // suspended.
            if st.closing.is_some() {
                return Forwarded::Stopped("withdrawn by the gateway: the session is closing".into());
            }
            st.next_id += 1;
            let down_id = Id::int(st.next_id);
            st.down.insert(
                down_id.clone(),
                DownCall {
                    reply: tx,
                    method,
                    up_id: up_id.clone(),
                    progress_token: mcp::progress_token(params.as_ref()),
                    cancel: cancel.clone(),
                    withdrawn: None,
                },
            );
            down_id
        };
        let request = Message::Request {
            id: down_id.clone(),
            method: method.name.to_string(),
            params,
        };
        if let Err(e) = self.sink.send(&request, related).await {
            lock(&self.state).down.remove(&down_id);
            return Forwarded::Unavailable(format!("the client is gone: {e}"));
        }
        let forwarded = tokio::select! {
            // A withdrawal (the call's own token) is read before the session's close.
            biased;
            reply = rx => match reply {
                Ok(Reply::Result(result)) => Forwarded::Answer(result),
                Ok(Reply::Error(e)) => Forwarded::PeerError(e),
                Ok(Reply::Failed(reason)) => Forwarded::Unavailable(reason),
                Ok(Reply::Malformed(reason)) => Forwarded::Malformed(reason),
                Err(_) => Forwarded::Unavailable("the client is gone".into()),
            },
            _ = tokio::time::sleep(timeout) => {
                self.cancel_down(&down_id, "timeout").await;
                Forwarded::Timeout(timeout)
            }
            _ = cancel.cancelled() => {
                let withdrawn = lock(&self.state).down.get(&down_id).and_then(|d| d.withdrawn.clone());
                match withdrawn {
                    Some(why) => {
                        self.cancel_down(&down_id, &why).await;
                        Forwarded::Stopped(why)
                    }
                    None => {
                        self.cancel_down(&down_id, "cancelled by the server").await;
                        Forwarded::Cancelled
                    }
                }
            }
            _ = self.closed.cancelled() => {
                let why = self.closing_reason();
                self.cancel_down(&down_id, &why).await;
                Forwarded::Stopped(why)
            }
        };
        lock(&self.state).down.remove(&down_id);
        forwarded
    }

    async fn cancel_down(&self, down_id: &Id, reason: &str) {
        let note = Message::notification(
            "notifications/cancelled",
            Json::object([("requestId", down_id.to_json()), ("reason", Json::str(reason))]),
        );
        let _ = self.sink.send(&note, None).await;
    }

    /// A notification from the upstream, handled in arrival order.
    async fn server_notification(self: &Arc<Self>, method: String, params: Option<Json>, related: Option<Id>) {
        // A closing session (closed, suspended) carries nothing more to its
        // client.
        if self.is_closed() {
            tracing::debug!(server = %self.server.name, session = %self.id, "{method} dropped: the session is closing");
            return;
        }
        let Some(kind) = mcp::notification(&method, mcp::Direction::Down) else {
            let error = rpc(
                code::METHOD_NOT_FOUND,
                format!("sealgate does not relay the notification {method:?} to the client"),
            );
            self.refuse_down(None, Some(&method), error, 0).await;
            return;
        };
        if let Err(e) = kind.check_params(params.as_ref()) {
            self.refuse_down(None, Some(&method), rpc(code::INVALID_PARAMS, e), 0)
                .await;
            return;
        }
        let params = params.unwrap_or_else(|| Json::Object(Vec::new()));
        let target = match method.as_str() {
            "notifications/cancelled" => {
                if let Some(up_id) = params.get("requestId").and_then(Id::read) {
                    let st = lock(&self.state);
                    if let Some(call) = st.down.values().find(|d| d.up_id == up_id) {
                        call.cancel.cancel();
                    }
                }
                return;
            }
            "notifications/progress" => {
                // Only progress of a request the client asked progress of.
                let token = params.get("progressToken");
                let st = lock(&self.state);
                let owner = st
                    .client
                    .iter()
                    .find(|(_, c)| token.is_some() && c.progress_token.as_ref() == token)
                    .map(|(id, _)| id.clone());
                drop(st);
                match owner {
                    Some(id) => Some(id),
                    None => return,
                }
            }
            "notifications/message" => self.client_of(related.as_ref()),
            "notifications/tools/list_changed" => {
                // Relayed once the change is checked (in the background:
                // the session's other messages keep flowing).
                tokio::spawn(Arc::clone(self).tools_changed());
                return;
            }
            _ => None,
        };
        let Some(params) = self.outward_checked(params, kind.name).await else {
            return;
        };
        self.to_client(Message::notification(kind.name, params), target.as_ref())
            .await;
    }

    /// The upstream sent bytes that are not one JSON-RPC message.
    async fn upstream_refused(&self, refusal: mcp::Refusal, bytes: usize) {
        let waiting = refusal.id.as_ref().and_then(|id| lock(&self.state).up.remove(id));
        let reason = format!(
            "the upstream sent a message sealgate does not accept: {}",
            refusal.error.message
        );
        if let Some(tx) = waiting {
            let _ = tx.send(Reply::Malformed(reason.clone()));
        } else if let (Some(id), Some(_)) = (&refusal.id, &refusal.method) {
            // A request the gateway could not read: tell the upstream.
            let _ = self
                .upstream
                .send(&Message::Error {
                    id: Some(id.clone()),
                    error: refusal.error.clone(),
                })
                .await;
        }
        self.refuse_down(
            refusal.id.as_ref(),
            refusal.method.as_deref(),
            rpc(refusal.error.code, reason),
            bytes,
        )
        .await;
    }

    fn reply(&self, id: &Id, reply: Reply) {
        let waiting = lock(&self.state).up.remove(id);
        match waiting {
            Some(tx) => {
                let _ = tx.send(reply);
            }
            None => tracing::debug!(server = %self.server.name, "an answer to no request in flight (id {id})"),
        }
    }

    fn upstream_gone(self: &Arc<Self>) {
        let (up, down) = {
            let mut st = lock(&self.state);
            st.gone = Some(format!(
                "upstream {} closed the session (crashed or exited)",
                self.server.name
            ));
            let up: Vec<_> = st.up.drain().collect();
            let down: Vec<_> = st.down.drain().collect();
            (up, down)
        };
        drop(up);
        for (_, call) in down {
            call.cancel.cancel();
        }
        // The session ends with its upstream (a no-op if it was closing
        // already, which is what ended the upstream).
        let session = Arc::clone(self);
        tokio::spawn(async move {
            let why = format!(
                "upstream {} ended the session (exited or went away)",
                session.server.name
            );
            session.close(events::CloseReason::UpstreamExit, &why, None).await;
        });
    }
}

/// Relays what the upstream sends until it ends.
async fn pump(session: Weak<Session>, mut link: upstream::Link) {
    while let Some(item) = link.recv().await {
        let Some(s) = session.upgrade() else { return };
        match item {
            Inbound::Message { message, related } => match message {
                Message::Response { id, result } => s.reply(&id, Reply::Result(result)),
                Message::Error { id: Some(id), error } => s.reply(&id, Reply::Error(error)),
                Message::Error { id: None, error } => {
                    tracing::info!(server = %s.server.name, "upstream reported an error: {} ({})", error.message, error.code);
                }
                Message::Request { id, method, params } => {
                    tokio::spawn(Arc::clone(&s).server_request(id, method, params, related));
                }
                Message::Notification { method, params } => s.server_notification(method, params, related).await,
            },
            Inbound::Refused { refusal, bytes, .. } => s.upstream_refused(refusal, bytes).await,
            Inbound::Failed { id, reason } => s.reply(&id, Reply::Failed(reason)),
        }
    }
    if let Some(s) = session.upgrade() {
        s.upstream_gone();
    }
}

/// Only the named members of an object (capabilities).
fn filter_members(value: Option<&Json>, keep: &[&str]) -> Json {
    match value {
        Some(Json::Object(members)) => Json::Object(
            members
                .iter()
                .filter(|(k, _)| keep.contains(&k.as_str()))
                .cloned()
                .collect(),
        ),
        _ => Json::Object(Vec::new()),
    }
}

/// What an audited client request asks for, from its (checked) params.
fn call_info(method: &str, id: &Id, params: Option<&Json>) -> CallInfo {
    let text = |key: &str| {
        params
            .and_then(|p| p.get(key))
            .and_then(Json::as_str)
            .map(str::to_string)
    };
    let mut call = CallInfo::new(method, id.clone(), Direction::ClientToServer);
    // Where only `arguments` is recorded, `_meta` is recorded beside it:
    // whatever is forwarded is recorded.
    let meta = || params.and_then(|p| p.get("_meta")).cloned();
    let arguments = || {
        Some(
            params
                .and_then(|p| p.get("arguments"))
                .cloned()
                .unwrap_or_else(|| Json::Object(Vec::new())),
        )
    };
    match method {
        "tools/call" => {
            call.tool = text("name");
            call.arguments = arguments();
            call.meta = meta();
        }
        "prompts/get" => {
            call.prompt = text("name");
            call.arguments = arguments();
            call.meta = meta();
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            call.resource = text("uri");
            call.meta = meta();
        }
        "completion/complete" => {
            let reference = params.and_then(|p| p.get("ref"));
            let field = |k: &str| {
                reference
                    .and_then(|r| r.get(k))
                    .and_then(Json::as_str)
                    .map(str::to_string)
            };
            match reference.and_then(|r| r.get("type")).and_then(Json::as_str) {
                Some("ref/prompt") => call.prompt = field("name"),
                Some("ref/resource") => call.resource = field("uri"),
                _ => {}
            }
            call.arguments = params.cloned();
        }
        _ => call.arguments = params.cloned(),
    }
    call
}

/// A peer's JSON object as an event keeps it; anything else (which the
/// handshake's checks let through only as an object) under `value`.
fn open_object(json: serde_json::Value) -> events::OpenObject {
    match json {
        serde_json::Value::Object(map) => map,
        other => events::OpenObject::from_iter([("value".to_string(), other)]),
    }
}
