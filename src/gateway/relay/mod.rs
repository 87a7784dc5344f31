//! The relay: one downstream MCP session bridged to one upstream session.
//!
//! Downstream, [`Relay`] is an rmcp server; upstream, [`UpstreamClient`] is
//! an rmcp client. Every message is passed on in both directions, not only
//! `tools/call`: requests, results and errors as the peer sent them,
//! notifications (progress, logging, list changes, resource updates),
//! cancellations, and server-to-client requests (sampling, elicitation,
//! roots). The relay changes only what the two hops require: JSON-RPC ids
//! and progress tokens are per hop, so progress tokens are mapped back and
//! forth.
//!
//! Requests that move data or act (`tools/call`, `resources/read`,
//! `prompts/get`, and the server-to-client requests) are audited: a
//! request event and a decision event are durable before anything is
//! forwarded, and the outcome event is durable before the answer is passed
//! back. If an event cannot be written the call is refused (before) or its
//! result withheld (after): no audit, no execution.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rmcp::ServerHandler;
use rmcp::model::{
    CancelledNotification, CancelledNotificationParam, ClientNotification, ClientRequest, ClientResult, ErrorCode,
    ErrorData, GetExtensions, GetMeta, Implementation, InitializeRequestParams, InitializeResult, ProgressToken,
    ProtocolVersion, RequestId, ServerNotification, ServerRequest, ServerResult,
};
use rmcp::service::{
    NotificationContext, OriginatingRequestId, Peer, PeerRequestOptions, RequestContext, RoleClient, RoleServer,
    RunningService, Service, ServiceError,
};

use super::audit::{Audit, CallInfo, Direction, Listing, Scope};
use super::upstream::Upstream;
use crate::governance::Governance;
use crate::governance::Principal;

/// JSON-RPC error codes the gateway itself answers with (the
/// implementation-defined server error range). Documented in
/// `docs/GATEWAY.md`.
pub mod codes {
    /// The audit event could not be made durable; nothing was forwarded
    /// (or, after execution, the result was withheld).
    pub const AUDIT_UNAVAILABLE: i32 = -32050;
    /// The decision was not ALLOW.
    pub const DENIED: i32 = -32051;
    /// The upstream could not be reached, crashed, or closed the session.
    pub const UPSTREAM_UNAVAILABLE: i32 = -32052;
    /// The upstream did not answer in time; the request was cancelled.
    pub const UPSTREAM_TIMEOUT: i32 = -32053;
    /// The request was not made by the principal that opened the session.
    pub const WRONG_PRINCIPAL: i32 = -32054;
    /// The result holds data the policy quarantines; it is held for review.
    pub const QUARANTINED: i32 = -32055;
    /// The result is larger than the policy's `max_result_bytes` allows.
    pub const OVERSIZE: i32 = -32056;
}

mod admission;

/// What all sessions share.
pub struct Core {
    pub audit: Audit,
    pub gov: Arc<Governance>,
    /// Where quarantined results are kept for review.
    pub quarantine_dir: std::path::PathBuf,
    /// How often a call held for approval tells the client it still waits.
    pub approval_progress: Duration,
}

/// A configured upstream server.
pub struct ServerEntry {
    pub name: String,
    pub upstream: Upstream,
    pub env: Vec<String>,
    /// For one request.
    pub timeout: Duration,
    /// For starting a session: spawn or connect, and `initialize`.
    pub start_timeout: Duration,
}

/// How the downstream client reached the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Downstream {
    Http,
    Stdio,
}

/// The downstream half of a session: an rmcp server that relays.
pub struct Relay {
    session: Arc<Session>,
}

struct Session {
    core: Arc<Core>,
    server: Arc<ServerEntry>,
    id: String,
    downstream: Downstream,
    /// The principal of every request (stdio); HTTP requests carry theirs.
    fixed_principal: Option<Principal>,
    conn: Mutex<Option<Arc<Conn>>>,
    /// Upstream-hop progress token → the client's token, for calls the
    /// client asked progress of.
    progress_up: Arc<Mutex<HashMap<ProgressToken, ProgressToken>>>,
    /// Client-hop token of a server-to-client request → the upstream's token.
    progress_down: Mutex<HashMap<ProgressToken, ProgressToken>>,
    /// Client requests being forwarded, oldest first: a server-to-client
    /// request arriving meanwhile belongs to one of them.
    inflight: Mutex<Vec<RequestId>>,
    /// The upstream's tool definitions as last listed in this session.
    tools: Mutex<HashMap<String, serde_json::Value>>,
    /// Attempts per (target, arguments digest), for `max_retries`.
    attempts: Mutex<HashMap<String, u32>>,
}

struct Conn {
    principal: Principal,
    agent: Option<String>,
    protocol_version: ProtocolVersion,
    upstream: RunningService<RoleClient, UpstreamClient>,
}

/// How a forwarded request ended, before it is turned into an answer.
enum Forwarded<T> {
    Answer(T),
    PeerError(ErrorData),
    Timeout(Duration),
    Cancelled,
    Unavailable(String),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn error(code: i32, message: String) -> ErrorData {
    ErrorData::new(ErrorCode(code), message, None)
}

fn audit_refused(server: &str, e: &ledger::Error) -> ErrorData {
    error(
        codes::AUDIT_UNAVAILABLE,
        format!(
            "sealgate refused the call to {server}: the audit ledger cannot record it ({e}); nothing was forwarded"
        ),
    )
}

fn audit_withheld(server: &str, e: &ledger::Error) -> ErrorData {
    error(
        codes::AUDIT_UNAVAILABLE,
        format!("sealgate withheld the result from {server}: the audit ledger cannot record the outcome ({e})"),
    )
}

/// How long a progress token stays mapped after its request was answered.
const PROGRESS_GRACE: Duration = Duration::from_secs(2);

/// Protocol versions with an `initialize` handshake: the relay opens the
/// upstream session during the client's `initialize`.
const HANDSHAKE_VERSIONS: [ProtocolVersion; 4] = [
    ProtocolVersion::V_2024_11_05,
    ProtocolVersion::V_2025_03_26,
    ProtocolVersion::V_2025_06_18,
    ProtocolVersion::V_2025_11_25,
];

impl Relay {
    pub fn new(
        core: Arc<Core>,
        server: Arc<ServerEntry>,
        downstream: Downstream,
        fixed_principal: Option<Principal>,
    ) -> Relay {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Relay {
            session: Arc::new(Session {
                core,
                server,
                id,
                downstream,
                fixed_principal,
                conn: Mutex::new(None),
                progress_up: Arc::new(Mutex::new(HashMap::new())),
                progress_down: Mutex::new(HashMap::new()),
                inflight: Mutex::new(Vec::new()),
                tools: Mutex::new(HashMap::new()),
                attempts: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl Session {
    fn conn(&self) -> Result<Arc<Conn>, ErrorData> {
        lock(&self.conn).clone().ok_or_else(|| {
            ErrorData::invalid_request(
                format!(
                    "session to {} is not initialized: send initialize first",
                    self.server.name
                ),
                None,
            )
        })
    }

    fn principal_of(&self, extensions: &rmcp::model::Extensions) -> Result<Principal, ErrorData> {
        if let Some(p) = &self.fixed_principal {
            return Ok(p.clone());
        }
        extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Principal>())
            .cloned()
            .ok_or_else(|| {
                error(
                    codes::WRONG_PRINCIPAL,
                    "request carries no authenticated principal".into(),
                )
            })
    }

    /// A session belongs to the principal that opened it.
    fn check_principal(&self, conn: &Conn, extensions: &rmcp::model::Extensions) -> Result<(), ErrorData> {
        let principal = self.principal_of(extensions)?;
        if principal.name != conn.principal.name {
            return Err(error(
                codes::WRONG_PRINCIPAL,
                format!(
                    "session {} belongs to principal {:?}, not {:?}",
                    self.id, conn.principal.name, principal.name
                ),
            ));
        }
        Ok(())
    }

    fn scope(&self, principal: Principal, agent: Option<String>, version: Option<&ProtocolVersion>) -> Scope {
        Scope {
            principal,
            agent,
            session_id: self.id.clone(),
            server: self.server.name.clone(),
            env: self.server.env.clone(),
            protocol_version: version.map(|v| v.as_str().to_string()),
        }
    }

    fn conn_scope(&self, conn: &Conn) -> Scope {
        self.scope(conn.principal.clone(), conn.agent.clone(), Some(&conn.protocol_version))
    }

    async fn initialize(
        self: &Arc<Self>,
        params: InitializeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        if lock(&self.conn).is_some() {
            return Err(ErrorData::invalid_request(
                format!("session {} is already initialized", self.id),
                None,
            ));
        }
        let principal = self.principal_of(&ctx.extensions)?;
        let agent = Some(format!("{}/{}", params.client_info.name, params.client_info.version));
        let client = UpstreamClient {
            info: params.clone(),
            downstream: ctx.peer.clone(),
            session: Arc::downgrade(self),
        };
        let connected = self
            .server
            .upstream
            .connect(&self.server.name, client, self.server.start_timeout)
            .await;
        let init = connected
            .as_ref()
            .ok()
            .and_then(|running| running.peer_info())
            .map(|info| {
                let mut result = InitializeResult::new(info.capabilities.clone())
                    .with_protocol_version(info.protocol_version.clone())
                    .with_server_info(
                        info.server_info
                            .clone()
                            .unwrap_or_else(|| Implementation::new(self.server.name.clone(), "unknown")),
                    );
                result.instructions = info.instructions.clone();
                result.meta = info.meta.clone();
                result
            });

        let version = init.as_ref().map(|i| &i.protocol_version);
        let scope = self.scope(principal.clone(), agent.clone(), version);
        let mut body = ledger::Object::new();
        body.insert("downstream.transport".into(), downstream_name(self.downstream).into());
        body.insert("upstream.transport".into(), self.server.upstream.kind().into());
        body.insert("upstream.address".into(), self.server.upstream.address().into());
        body.insert(
            "mcp.protocol.version.requested".into(),
            params.protocol_version.as_str().to_string().into(),
        );
        body.insert(
            "client".into(),
            crate::governance::to_ledger_value(&serde_json::to_value(&params.client_info).unwrap_or_default()),
        );
        body.insert(
            "client.capabilities".into(),
            crate::governance::to_ledger_value(&serde_json::to_value(&params.capabilities).unwrap_or_default()),
        );
        match (&init, &connected) {
            (Some(init), _) => {
                body.insert("outcome".into(), "ok".into());
                body.insert(
                    "server".into(),
                    crate::governance::to_ledger_value(&serde_json::to_value(&init.server_info).unwrap_or_default()),
                );
            }
            (None, Err(message)) => {
                body.insert("outcome".into(), "unavailable".into());
                body.insert("error.type".into(), "upstream_unavailable".into());
                body.insert("error".into(), message.clone().into());
            }
            (None, Ok(_)) => {
                body.insert("outcome".into(), "unavailable".into());
                body.insert("error".into(), "upstream sent no initialize result".into());
            }
        }
        let audit = &self.core.audit;
        audit
            .append(audit.session_opened(&scope, body))
            .await
            .map_err(|e| audit_refused(&self.server.name, &e))?;

        match (init, connected) {
            (Some(init), Ok(upstream)) => {
                *lock(&self.conn) = Some(Arc::new(Conn {
                    principal,
                    agent,
                    protocol_version: init.protocol_version.clone(),
                    upstream,
                }));
                Ok(init)
            }
            (_, Err(message)) => Err(error(codes::UPSTREAM_UNAVAILABLE, message)),
            (None, Ok(_)) => Err(error(
                codes::UPSTREAM_UNAVAILABLE,
                format!("upstream {} sent no initialize result", self.server.name),
            )),
        }
    }

    /// Forwards a client request upstream and waits for the answer, the
    /// server's timeout or the client's cancellation.
    async fn forward_up(
        &self,
        conn: &Conn,
        mut request: ClientRequest,
        ctx: &RequestContext<RoleServer>,
        timeout: Duration,
    ) -> Forwarded<ServerResult> {
        let mut meta = ctx.meta.clone();
        let client_token = meta.get_progress_token();
        meta.0.0.remove("progressToken");
        *request.get_meta_mut() = meta;
        let peer = conn.upstream.peer();
        // Cancelled while it was being admitted (e.g. held for approval):
        // it must not reach the upstream at all.
        if ctx.ct.is_cancelled() {
            return Forwarded::Cancelled;
        }
        let handle = match peer
            .send_request_with_option(request, PeerRequestOptions::with_timeout(timeout))
            .await
        {
            Ok(handle) => handle,
            Err(e) => return Forwarded::Unavailable(unavailable(&self.server.name, &e)),
        };
        let upstream_id = handle.id.clone();
        let upstream_token = handle.progress_token.clone();
        let client_token_set = client_token.is_some();
        if let Some(token) = client_token {
            lock(&self.progress_up).insert(upstream_token.clone(), token);
        }
        lock(&self.inflight).push(ctx.id.clone());
        let answer = tokio::select! {
            answer = handle.await_response() => match answer {
                Ok(result) => Forwarded::Answer(result),
                Err(ServiceError::McpError(e)) => Forwarded::PeerError(e),
                Err(ServiceError::Timeout { timeout }) => Forwarded::Timeout(timeout),
                Err(e) => Forwarded::Unavailable(unavailable(&self.server.name, &e)),
            },
            _ = ctx.ct.cancelled() => {
                cancel(peer, upstream_id, "cancelled by the client").await;
                Forwarded::Cancelled
            }
        };
        lock(&self.inflight).retain(|id| id != &ctx.id);
        if client_token_set {
            // rmcp hands each notification to its own task, so progress sent
            // just before the result may still be on its way: let queued
            // tasks run before answering, and keep the token mapped a while.
            for _ in 0..8 {
                tokio::task::yield_now().await;
            }
            let map = Arc::clone(&self.progress_up);
            tokio::spawn(async move {
                tokio::time::sleep(PROGRESS_GRACE).await;
                lock(&map).remove(&upstream_token);
            });
        }
        answer
    }

    /// Forwards a server-to-client request to the client.
    async fn forward_down(
        &self,
        downstream: &Peer<RoleServer>,
        mut request: ServerRequest,
        ctx: &RequestContext<RoleClient>,
        timeout: Duration,
    ) -> Forwarded<ClientResult> {
        let mut meta = ctx.meta.clone();
        let upstream_token = meta.get_progress_token();
        meta.0.0.remove("progressToken");
        *request.get_meta_mut() = meta;
        // On HTTP, a server-to-client request travels on the stream of the
        // client request it belongs to. The upstream does not say which one
        // that is; when exactly one client request is in flight it can only
        // be that one, otherwise the request goes on the session's stream.
        if let [only] = lock(&self.inflight).as_slice() {
            request.extensions_mut().insert(OriginatingRequestId(only.clone()));
        }
        let peer = downstream.clone();
        // Spawned: the handler's task-local originating id names an
        // upstream-hop request and must not be attached to this one.
        let sent = tokio::spawn(async move {
            peer.send_request_with_option(request, PeerRequestOptions::with_timeout(timeout))
                .await
        })
        .await;
        let handle = match sent {
            Ok(Ok(handle)) => handle,
            Ok(Err(e)) => return Forwarded::Unavailable(format!("client is gone: {e}")),
            Err(e) => return Forwarded::Unavailable(format!("client is gone: {e}")),
        };
        let client_id = handle.id.clone();
        let client_token = handle.progress_token.clone();
        if let Some(token) = upstream_token {
            lock(&self.progress_down).insert(client_token.clone(), token);
        }
        let answer = tokio::select! {
            answer = handle.await_response() => match answer {
                Ok(result) => Forwarded::Answer(result),
                Err(ServiceError::McpError(e)) => Forwarded::PeerError(e),
                Err(ServiceError::Timeout { timeout }) => Forwarded::Timeout(timeout),
                Err(e) => Forwarded::Unavailable(format!("client is gone: {e}")),
            },
            _ = ctx.ct.cancelled() => {
                cancel_down(downstream, client_id, "cancelled by the server").await;
                Forwarded::Cancelled
            }
        };
        lock(&self.progress_down).remove(&client_token);
        answer
    }

    fn answer<T>(&self, forwarded: Forwarded<T>) -> Result<T, ErrorData> {
        match forwarded {
            Forwarded::Answer(answer) => Ok(answer),
            Forwarded::PeerError(e) => Err(e),
            Forwarded::Timeout(after) => Err(error(
                codes::UPSTREAM_TIMEOUT,
                format!(
                    "{} did not answer within {} ms; the request was cancelled",
                    self.server.name,
                    after.as_millis()
                ),
            )),
            Forwarded::Cancelled => Err(error(codes::UPSTREAM_UNAVAILABLE, "request cancelled".into())),
            Forwarded::Unavailable(message) => Err(error(codes::UPSTREAM_UNAVAILABLE, message)),
        }
    }
}

fn downstream_name(d: Downstream) -> &'static str {
    match d {
        Downstream::Http => "http",
        Downstream::Stdio => "stdio",
    }
}

fn unavailable(server: &str, e: &ServiceError) -> String {
    match e {
        ServiceError::TransportClosed => format!("upstream {server} closed the session (crashed or exited)"),
        e => format!("upstream {server}: {e}"),
    }
}

async fn cancel(peer: &Peer<RoleClient>, id: RequestId, reason: &str) {
    let note = CancelledNotification::new(CancelledNotificationParam::new(Some(id), Some(reason.to_string())));
    let _ = peer
        .send_notification(ClientNotification::CancelledNotification(note))
        .await;
}

async fn cancel_down(peer: &Peer<RoleServer>, id: RequestId, reason: &str) {
    let note = CancelledNotification::new(CancelledNotificationParam::new(Some(id), Some(reason.to_string())));
    let _ = peer
        .send_notification(ServerNotification::CancelledNotification(note))
        .await;
}

/// The method name of a server-to-client request.
fn server_method(request: &ServerRequest) -> String {
    match request {
        ServerRequest::PingRequest(_) => "ping".into(),
        ServerRequest::CreateMessageRequest(_) => "sampling/createMessage".into(),
        ServerRequest::ListRootsRequest(_) => "roots/list".into(),
        ServerRequest::ElicitRequest(_) => "elicitation/create".into(),
        ServerRequest::CustomRequest(r) => r.method.clone(),
        other => serde_json::to_value(other)
            .ok()
            .and_then(|v| v.get("method").and_then(|m| m.as_str()).map(str::to_string))
            .unwrap_or_default(),
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

/// The items of a listing result, with the name each is known by.
fn listing_of(method: &str, result: &ServerResult, cursor: Option<String>) -> Listing {
    let json = serde_json::to_value(result).unwrap_or_default();
    let key = listing_key(method);
    let name_field = match method {
        "tools/list" | "prompts/list" => "name",
        "resources/list" => "uri",
        _ => "uriTemplate",
    };
    let items = json.get(key).cloned().unwrap_or(serde_json::Value::Array(Vec::new()));
    let names = items
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| i.get(name_field).and_then(|n| n.as_str()).unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    let next_cursor = json.get("nextCursor").and_then(|c| c.as_str()).map(str::to_string);
    Listing {
        items,
        names,
        cursor,
        next_cursor,
        hidden: Vec::new(),
    }
}

fn call_info(request: &ClientRequest, id: &RequestId) -> Option<CallInfo> {
    let mut call = CallInfo {
        method: request.method().to_string(),
        request_id: id.clone(),
        tool: None,
        prompt: None,
        resource: None,
        arguments: None,
        direction: Direction::ClientToServer,
    };
    match request {
        ClientRequest::CallToolRequest(r) => {
            call.tool = Some(r.params.name.to_string());
            call.arguments = Some(serde_json::Value::Object(
                r.params.arguments.clone().unwrap_or_default(),
            ));
        }
        ClientRequest::ReadResourceRequest(r) => call.resource = Some(r.params.uri.clone()),
        ClientRequest::GetPromptRequest(r) => {
            call.prompt = Some(r.params.name.clone());
            call.arguments = Some(serde_json::Value::Object(
                r.params.arguments.clone().unwrap_or_default(),
            ));
        }
        _ => return None,
    }
    Some(call)
}

impl Relay {
    /// Every client request comes through here: initialize opens the
    /// upstream session, audited requests are admitted and settled, the
    /// rest is relayed as is.
    async fn dispatch(
        &self,
        request: ClientRequest,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let session = &self.session;
        let conn = session.conn()?;
        session.check_principal(&conn, &ctx.extensions)?;
        if let Some(call) = call_info(&request, &ctx.id) {
            return session.audited_up(&conn, call, request, &ctx).await;
        }
        let method = request.method().to_string();
        match method.as_str() {
            "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list" => {
                session.listed(&conn, &method, request, &ctx).await
            }
            _ => session.answer(session.forward_up(&conn, request, &ctx, session.server.timeout).await),
        }
    }

    async fn notify(&self, mut notification: ClientNotification, meta: rmcp::model::NotificationMetaObject) {
        let session = &self.session;
        let Some(conn) = lock(&session.conn).clone() else {
            return;
        };
        *notification.get_meta_mut() = meta;
        if let Err(e) = conn.upstream.peer().send_notification(notification).await {
            tracing::debug!(server = %session.server.name, "notification not relayed upstream: {e}");
        }
    }
}

/// A relayed result in the type rmcp's handler method returns.
fn take<T: serde::de::DeserializeOwned>(result: ServerResult) -> Result<T, ErrorData> {
    serde_json::to_value(&result)
        .and_then(serde_json::from_value)
        .map_err(|e| ErrorData::internal_error(format!("upstream result does not fit the method: {e}"), None))
}

fn request<M: Default, P>(params: P) -> rmcp::model::Request<M, P> {
    rmcp::model::Request::new(params)
}

fn optional<M: Default, P>(params: Option<P>) -> rmcp::model::RequestOptionalParam<M, P> {
    rmcp::model::RequestOptionalParam {
        method: M::default(),
        params,
        extensions: Default::default(),
    }
}

/// rmcp's HTTP server takes a [`ServerHandler`]; each method rebuilds the
/// request it was given and hands it to [`Relay::dispatch`].
impl ServerHandler for Relay {
    async fn ping(&self, ctx: RequestContext<RoleServer>) -> Result<(), ErrorData> {
        let ping = rmcp::model::PingRequest {
            method: Default::default(),
            extensions: Default::default(),
        };
        self.dispatch(ClientRequest::PingRequest(ping), ctx).await.map(|_| ())
    }

    async fn initialize(
        &self,
        params: InitializeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        self.session.initialize(params, ctx).await
    }

    fn supported_protocol_versions(&self) -> std::borrow::Cow<'static, [ProtocolVersion]> {
        // Once connected, exactly the version the upstream agreed to: the
        // client must not believe it speaks a newer one than the upstream.
        match lock(&self.session.conn).as_ref() {
            Some(conn) => std::borrow::Cow::Owned(vec![conn.protocol_version.clone()]),
            None => std::borrow::Cow::Borrowed(&HANDSHAKE_VERSIONS),
        }
    }

    /// The 2026-07-28 stateless lifecycle has no session to bridge; answer
    /// as a server without it does, so clients fall back to `initialize`.
    async fn discover(&self, _ctx: RequestContext<RoleServer>) -> Result<rmcp::model::DiscoverResult, ErrorData> {
        Err(ErrorData::new(
            ErrorCode::METHOD_NOT_FOUND,
            "method not found: server/discover",
            None,
        ))
    }

    async fn complete(
        &self,
        params: rmcp::model::CompleteRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CompleteResult, ErrorData> {
        take(
            self.dispatch(ClientRequest::CompleteRequest(request(params)), ctx)
                .await?,
        )
    }

    #[allow(
        deprecated,
        reason = "logging is deprecated by SEP-2577 but still relayed for the clients that use it"
    )]
    async fn set_level(
        &self,
        params: rmcp::model::SetLevelRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.dispatch(ClientRequest::SetLevelRequest(request(params)), ctx)
            .await
            .map(|_| ())
    }

    async fn get_prompt(
        &self,
        params: rmcp::model::GetPromptRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::GetPromptResponse, ErrorData> {
        let result: rmcp::model::GetPromptResult = take(
            self.dispatch(ClientRequest::GetPromptRequest(request(params)), ctx)
                .await?,
        )?;
        Ok(result.into())
    }

    async fn list_prompts(
        &self,
        params: Option<rmcp::model::PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListPromptsResult, ErrorData> {
        take(
            self.dispatch(ClientRequest::ListPromptsRequest(optional(params)), ctx)
                .await?,
        )
    }

    async fn list_resources(
        &self,
        params: Option<rmcp::model::PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourcesResult, ErrorData> {
        take(
            self.dispatch(ClientRequest::ListResourcesRequest(optional(params)), ctx)
                .await?,
        )
    }

    async fn list_resource_templates(
        &self,
        params: Option<rmcp::model::PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourceTemplatesResult, ErrorData> {
        take(
            self.dispatch(ClientRequest::ListResourceTemplatesRequest(optional(params)), ctx)
                .await?,
        )
    }

    async fn read_resource(
        &self,
        params: rmcp::model::ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ReadResourceResponse, ErrorData> {
        let result: rmcp::model::ReadResourceResult = take(
            self.dispatch(ClientRequest::ReadResourceRequest(request(params)), ctx)
                .await?,
        )?;
        Ok(result.into())
    }

    async fn subscribe(
        &self,
        params: rmcp::model::SubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.dispatch(ClientRequest::SubscribeRequest(request(params)), ctx)
            .await
            .map(|_| ())
    }

    async fn unsubscribe(
        &self,
        params: rmcp::model::UnsubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.dispatch(ClientRequest::UnsubscribeRequest(request(params)), ctx)
            .await
            .map(|_| ())
    }

    async fn call_tool(
        &self,
        params: rmcp::model::CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, ErrorData> {
        let result: rmcp::model::CallToolResult = take(
            self.dispatch(ClientRequest::CallToolRequest(request(params)), ctx)
                .await?,
        )?;
        Ok(result.into())
    }

    async fn list_tools(
        &self,
        params: Option<rmcp::model::PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListToolsResult, ErrorData> {
        take(
            self.dispatch(ClientRequest::ListToolsRequest(optional(params)), ctx)
                .await?,
        )
    }

    async fn on_custom_request(
        &self,
        custom: rmcp::model::CustomRequest,
        ctx: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CustomResult, ErrorData> {
        take(self.dispatch(ClientRequest::CustomRequest(custom), ctx).await?)
    }

    async fn on_progress(
        &self,
        mut params: rmcp::model::ProgressNotificationParam,
        ctx: NotificationContext<RoleServer>,
    ) {
        // Progress of a server-to-client request (e.g. sampling), in the
        // upstream's token.
        let Some(token) = lock(&self.session.progress_down).get(&params.progress_token).cloned() else {
            return;
        };
        params.progress_token = token;
        let note = rmcp::model::ProgressNotification::new(params);
        self.notify(ClientNotification::ProgressNotification(note), ctx.meta)
            .await;
    }

    async fn on_roots_list_changed(&self, ctx: NotificationContext<RoleServer>) {
        let note = rmcp::model::RootsListChangedNotification::default();
        self.notify(ClientNotification::RootsListChangedNotification(note), ctx.meta)
            .await;
    }

    async fn on_custom_notification(
        &self,
        custom: rmcp::model::CustomNotification,
        ctx: NotificationContext<RoleServer>,
    ) {
        self.notify(ClientNotification::CustomNotification(custom), ctx.meta)
            .await;
    }

    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(Default::default())
            .with_server_info(Implementation::new("sealgate", env!("CARGO_PKG_VERSION")))
    }
}

/// The upstream half of a session: an rmcp client that presents the
/// downstream client's own identity and capabilities, and relays what the
/// server sends back to it.
pub struct UpstreamClient {
    info: InitializeRequestParams,
    downstream: Peer<RoleServer>,
    session: Weak<Session>,
}

impl UpstreamClient {
    fn session(&self) -> Result<Arc<Session>, ErrorData> {
        self.session
            .upgrade()
            .ok_or_else(|| error(codes::UPSTREAM_UNAVAILABLE, "the client session has closed".into()))
    }
}

impl Service<RoleClient> for UpstreamClient {
    async fn handle_request(
        &self,
        request: ServerRequest,
        ctx: RequestContext<RoleClient>,
    ) -> Result<ClientResult, ErrorData> {
        let session = self.session()?;
        let audited = matches!(
            request,
            ServerRequest::CreateMessageRequest(_)
                | ServerRequest::ElicitRequest(_)
                | ServerRequest::ListRootsRequest(_)
        );
        if !audited {
            let forwarded = session
                .forward_down(&self.downstream, request, &ctx, session.server.timeout)
                .await;
            return session.answer(forwarded);
        }
        let conn = session.conn()?;
        let params = serde_json::to_value(&request)
            .ok()
            .and_then(|v| v.get("params").cloned());
        let call = CallInfo {
            method: server_method(&request),
            request_id: ctx.id.clone(),
            tool: None,
            prompt: None,
            resource: None,
            arguments: params,
            direction: Direction::ServerToClient,
        };
        session.audited_down(&conn, call, request, &ctx, &self.downstream).await
    }

    async fn handle_notification(
        &self,
        notification: ServerNotification,
        ctx: NotificationContext<RoleClient>,
    ) -> Result<(), ErrorData> {
        let Ok(session) = self.session() else {
            return Ok(());
        };
        let mut notification = match notification {
            // rmcp has already cancelled the handler of the request it names.
            ServerNotification::CancelledNotification(_) => return Ok(()),
            // The tool set changed: compare it with the pins (recording any
            // drift) before the client hears of it and lists again.
            ServerNotification::ToolListChangedNotification(n) => {
                if let Ok(conn) = session.conn() {
                    session.refresh_tools(&conn).await;
                }
                ServerNotification::ToolListChangedNotification(n)
            }
            ServerNotification::ProgressNotification(mut progress) => {
                let Some(token) = lock(&session.progress_up).get(&progress.params.progress_token).cloned() else {
                    // The client did not ask for progress of this request.
                    return Ok(());
                };
                progress.params.progress_token = token;
                ServerNotification::ProgressNotification(progress)
            }
            other => other,
        };
        *notification.get_meta_mut() = ctx.meta;
        if let Err(e) = self.downstream.send_notification(notification).await {
            tracing::debug!(server = %session.server.name, "notification not relayed downstream: {e}");
        }
        Ok(())
    }

    fn get_info(&self) -> InitializeRequestParams {
        self.info.clone()
    }
}
