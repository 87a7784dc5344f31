//! The HTTP front: MCP's streamable-HTTP transport, one endpoint per
//! upstream server (`/mcp/{server}`), and the OAuth protected-resource
//! metadata (RFC 9728) the MCP authorization spec asks of servers.
//!
//! Order of checks on `/mcp/...`: the `Host` header (DNS-rebinding
//! protection), then authentication, then the server name: an unknown
//! server gets the same 401 as a known one without a token, and 404 only
//! after authentication, so the configured names cannot be enumerated.
//! Refused authentications and unknown servers are counted and recorded
//! (`access.refused`, [`AccessLog`]). Then the session: a message in a
//! session must come from the principal that opened it (403, `-32054`,
//! without naming the owner).
//!
//! A POSTed request is answered on its own event stream, which also
//! carries the server's requests and notifications about it; notifications
//! and responses are answered `202 Accepted`; GET opens the session's own
//! stream; DELETE ends the session. Bodies are read strictly
//! ([`Message::parse`]): duplicate keys, batches and anything else that is
//! not one JSON-RPC message are refused before any session sees them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::Gateway;
use super::audit::AccessCount;
use super::auth::{AuthError, Authenticator};
use super::mcp::{self, Id, Message, RpcError, code};
use super::relay::{self, ClientSink, Downstream, Opening, Session, Streams, codes};
use super::sse;
use crate::config::GatewayConfig;
use crate::governance::Principal;

const SESSION_ID: &str = "mcp-session-id";
const PROTOCOL_VERSION: &str = "mcp-protocol-version";

/// The peer's address, put on each request by the listener.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

#[derive(Clone)]
struct Front {
    gateway: Gateway,
    auth: Arc<Authenticator>,
    public_url: String,
    max_body_bytes: usize,
    body_timeout: Duration,
    allowed_hosts: Vec<String>,
    authorization_servers: Vec<String>,
    access: AccessLog,
    /// The last checkpoint served, and the tree size it is of.
    checkpoint: Arc<Mutex<Option<(u64, String)>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The gateway's HTTP application, listening on `local_addr` (the address
/// actually bound: `gateway.listen` may name port 0). Starts the session
/// reaper and the access log's flusher on the current runtime.
pub fn router(
    gateway: &Gateway,
    auth: Arc<Authenticator>,
    config: &GatewayConfig,
    authorization_servers: Vec<String>,
    local_addr: SocketAddr,
) -> Router {
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{local_addr}"))
        .trim_end_matches('/')
        .to_string();
    let front = Front {
        gateway: gateway.clone(),
        auth,
        public_url,
        max_body_bytes: config.max_body_bytes,
        body_timeout: Duration::from_secs(config.body_read_timeout_sec),
        allowed_hosts: config.allowed_hosts.clone(),
        authorization_servers,
        access: AccessLog::start(gateway, Duration::from_secs(config.access_log_interval_sec)),
        checkpoint: Arc::default(),
    };
    reap_idle(
        Arc::downgrade(&gateway.core()),
        Duration::from_secs(config.session_idle_sec),
    );
    Router::new()
        .route("/mcp/{*rest}", any(mcp_endpoint))
        .route("/mcp", any(mcp_root))
        .route("/.well-known/oauth-protected-resource", get(root_metadata))
        .route(
            "/.well-known/oauth-protected-resource/mcp/{server}",
            get(server_metadata),
        )
        .route("/.well-known/sealgate/checkpoint", get(checkpoint))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(not_found)
        .with_state(front)
}

/// Ends HTTP sessions nobody used for `idle` (none of their requests in
/// flight), each recorded (`session.closed`, `idle_timeout`).
fn reap_idle(core: std::sync::Weak<relay::Core>, idle: Duration) {
    tokio::spawn(async move {
        let every = (idle / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
        loop {
            tokio::time::sleep(every).await;
            let Some(core) = core.upgrade() else { return };
            let stale: Vec<Arc<Session>> = core
                .open
                .all()
                .into_iter()
                .filter(|s| s.streams().is_some() && s.idle_for() >= idle && !s.busy())
                .collect();
            drop(core);
            for session in stale {
                let why = format!("idle for {} s (gateway.session_idle_sec)", idle.as_secs());
                tokio::spawn(async move { session.close(events::CloseReason::IdleTimeout, &why, None).await });
            }
        }
    });
}

fn json_response(status: StatusCode, body: &Message) -> Response {
    let mut response = (status, body.to_bytes()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn rpc_error(status: StatusCode, id: Option<Id>, error: RpcError) -> Response {
    json_response(status, &Message::Error { id, error })
}

fn plain(status: StatusCode, text: &str) -> Response {
    (status, format!("{text}\n")).into_response()
}

/// Whether the `Host` header names an allowed host (port ignored unless
/// the entry has one). An empty list allows any.
fn host_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Ok(authority) = host.parse::<http::uri::Authority>() else {
        return false;
    };
    let name = authority.host().trim_matches(['[', ']']).to_ascii_lowercase();
    allowed.iter().any(|entry| match entry.parse::<http::uri::Authority>() {
        Ok(a) => {
            a.host().trim_matches(['[', ']']).eq_ignore_ascii_case(&name)
                && a.port_u16().is_none_or(|p| authority.port_u16() == Some(p))
        }
        Err(_) => entry.trim_matches(['[', ']']).eq_ignore_ascii_case(&name),
    })
}

fn accepts(headers: &HeaderMap, media: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|m| m.split(';').next().unwrap_or("").trim())
        .any(|m| m.eq_ignore_ascii_case(media) || m == "*/*")
}

/// The server a refusal names: none on the root path (an empty name is
/// not a name, and an event with one would be refused by the ledger).
fn named(server: &str) -> Option<String> {
    (!server.is_empty()).then(|| truncate(server, 64))
}

async fn mcp_root(State(front): State<Front>, request: Request) -> Response {
    mcp_request(front, String::new(), request).await
}

async fn mcp_endpoint(State(front): State<Front>, Path(rest): Path<String>, request: Request) -> Response {
    mcp_request(front, rest, request).await
}

async fn mcp_request(front: Front, rest: String, request: Request) -> Response {
    if !host_allowed(request.headers(), &front.allowed_hosts) {
        return plain(
            StatusCode::FORBIDDEN,
            "forbidden: the Host header is not an allowed host (gateway.allowed_hosts)",
        );
    }
    let server = rest.trim_end_matches('/').to_string();
    let source = request
        .extensions()
        .get::<Peer>()
        .map_or_else(|| "unknown".to_string(), |p| p.0.ip().to_string());
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("\u{fffd}").to_string());
    let principal = match front.auth.authenticate(authorization.as_deref()).await {
        Ok(principal) => principal,
        Err(e) => {
            let (reason, token) = match &e {
                AuthError::Missing => (events::AccessReason::MissingToken, None),
                AuthError::Invalid(_) => (
                    events::AccessReason::InvalidToken,
                    authorization.as_deref().map(fingerprint),
                ),
            };
            front.access.count(AccessKey {
                source,
                principal: None,
                token,
                reason,
                server: named(&server),
                aggregated: false,
            });
            return unauthorized(&front, &server, e);
        }
    };
    let Some(entry) = front.gateway.entry(&server) else {
        front.access.count(AccessKey {
            source,
            principal: Some(principal.name.clone()),
            token: None,
            reason: events::AccessReason::UnknownServer,
            server: named(&server),
            aggregated: false,
        });
        return (
            StatusCode::NOT_FOUND,
            axum::Json(
                serde_json::json!({"error": format!("no server named {:?} is configured", truncate(&server, 64))}),
            ),
        )
            .into_response();
    };
    let session_header = request
        .headers()
        .get(SESSION_ID)
        .map(|v| v.to_str().map(str::to_string).map_err(|_| ()));
    let session = match session_header {
        None => None,
        Some(Err(())) => return plain(StatusCode::BAD_REQUEST, "bad request: Mcp-Session-Id is not text"),
        Some(Ok(id)) => {
            let found = front.gateway.core().open.get(&id);
            // A session of another server's endpoint is no session here.
            match found.filter(|s| s.server_name() == entry.name) {
                None => return plain(StatusCode::NOT_FOUND, "not found: no such session (it may have ended)"),
                Some(s) => {
                    if let Err(e) = s.check_owner(&principal) {
                        return rpc_error(StatusCode::FORBIDDEN, None, e);
                    }
                    if let Some(v) = request.headers().get(PROTOCOL_VERSION) {
                        let known = v.to_str().ok().is_some_and(|v| relay::HANDSHAKE_VERSIONS.contains(&v));
                        if !known {
                            return plain(StatusCode::BAD_REQUEST, "bad request: unsupported MCP-Protocol-Version");
                        }
                    }
                    Some(s)
                }
            }
        }
    };
    match *request.method() {
        Method::POST => post(front, entry, principal, session, request).await,
        Method::GET => match session {
            None => plain(
                StatusCode::BAD_REQUEST,
                "bad request: a GET stream needs an Mcp-Session-Id",
            ),
            Some(s) => {
                if !accepts(request.headers(), "text/event-stream") {
                    return plain(
                        StatusCode::NOT_ACCEPTABLE,
                        "not acceptable: the client must accept text/event-stream",
                    );
                }
                let (tx, rx) = mpsc::channel(64);
                match s.streams() {
                    Some(streams) => streams.open_get(tx),
                    None => return plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
                }
                event_stream(rx, None)
            }
        },
        Method::DELETE => match session {
            None => plain(StatusCode::BAD_REQUEST, "bad request: DELETE needs an Mcp-Session-Id"),
            Some(s) => {
                s.close(events::CloseReason::ClientDelete, "the client ended it (DELETE)", None)
                    .await;
                StatusCode::OK.into_response()
            }
        },
        _ => plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: POST, GET or DELETE",
        ),
    }
}

async fn post(
    front: Front,
    entry: Arc<relay::ServerEntry>,
    principal: Principal,
    session: Option<Arc<Session>>,
    request: Request,
) -> Response {
    let headers = request.headers().clone();
    if !(accepts(&headers, "application/json") && accepts(&headers, "text/event-stream")) {
        return plain(
            StatusCode::NOT_ACCEPTABLE,
            "not acceptable: the client must accept both application/json and text/event-stream",
        );
    }
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        })
        .unwrap_or(false);
    if !json_body {
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported media type: Content-Type must be application/json",
        );
    }
    let limit = front.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(limit);
    }
    let body = tokio::time::timeout(front.body_timeout, axum::body::to_bytes(request.into_body(), limit)).await;
    let bytes = match body {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => return too_large(limit),
        Err(_) => {
            return plain(
                StatusCode::REQUEST_TIMEOUT,
                "request timeout: the body was not received in time (gateway.body_read_timeout_sec)",
            );
        }
    };
    let size = bytes.len();
    let message = match Message::parse(&bytes) {
        Ok(message) => message,
        Err(refusal) => {
            if let Some(s) = &session {
                s.record_refused_message(&refusal, size).await;
            }
            return rpc_error(StatusCode::BAD_REQUEST, refusal.id.clone(), refusal.error);
        }
    };
    let Some(session) = session else {
        return match message {
            Message::Request { id, method, params } if method == "initialize" => {
                initialize(front, entry, principal, id, params).await
            }
            Message::Request { id, .. } => rpc_error(
                StatusCode::BAD_REQUEST,
                Some(id),
                RpcError::new(
                    code::INVALID_REQUEST,
                    "invalid request: no session: send initialize first (without Mcp-Session-Id), then use the Mcp-Session-Id it returns",
                ),
            ),
            _ => rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                RpcError::new(
                    code::INVALID_REQUEST,
                    "invalid request: no session: send initialize first",
                ),
            ),
        };
    };
    match message {
        Message::Request { id, method, params } => {
            let (tx, rx) = mpsc::channel::<Bytes>(64);
            let Some(streams) = session.streams() else {
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error: not an http session");
            };
            streams.open_request(&id, tx.clone());
            let s = Arc::clone(&session);
            let stream_id = id.clone();
            tokio::spawn(async move {
                let answer = s.request(&principal, id, method, params, size).await;
                if let Some(answer) = answer {
                    let _ = tx.send(Bytes::from(answer.to_bytes())).await;
                }
                if let Some(streams) = s.streams() {
                    streams.close_request(&stream_id);
                }
            });
            event_stream(rx, Some(session))
        }
        Message::Notification { method, params } => match session.notify(&principal, &method, params, size).await {
            Ok(()) => StatusCode::ACCEPTED.into_response(),
            Err(e) => rpc_error(status_of(&e), None, e),
        },
        answer @ (Message::Response { .. } | Message::Error { .. }) => {
            match session.respond(&principal, answer, size).await {
                Ok(()) => StatusCode::ACCEPTED.into_response(),
                Err(e) => rpc_error(status_of(&e), None, e),
            }
        }
    }
}

fn status_of(e: &RpcError) -> StatusCode {
    if e.code == codes::WRONG_PRINCIPAL {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::BAD_REQUEST
    }
}

async fn initialize(
    front: Front,
    entry: Arc<relay::ServerEntry>,
    principal: Principal,
    id: Id,
    params: Option<crate::json::Json>,
) -> Response {
    let checked = mcp::method("initialize", mcp::Direction::Up)
        .map_or(Ok(()), |m| m.check_params(params.as_ref()))
        .map_err(|e| RpcError::new(code::INVALID_PARAMS, format!("invalid params: {e}")));
    let params = match (checked, params) {
        (Ok(()), Some(params)) => params,
        (Err(e), _) => return rpc_error(StatusCode::BAD_REQUEST, Some(id), e),
        (Ok(()), None) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                Some(id),
                RpcError::new(code::INVALID_PARAMS, "invalid params: initialize needs params"),
            );
        }
    };
    let opening = Opening {
        core: front.gateway.core(),
        server: entry,
        principal,
        downstream: Downstream::Http,
        sink: ClientSink::Http(Streams::default()),
        id: id.clone(),
        params,
    };
    match Session::open(opening).await {
        Ok((session, result)) => {
            let mut response = json_response(StatusCode::OK, &Message::Response { id, result });
            if let Ok(v) = HeaderValue::from_str(&session.id) {
                response.headers_mut().insert(SESSION_ID, v);
            }
            response
        }
        Err(error) => {
            let status = match error.code {
                codes::DENIED => StatusCode::FORBIDDEN,
                codes::LIMIT_REACHED => StatusCode::TOO_MANY_REQUESTS,
                codes::AUDIT_UNAVAILABLE => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_GATEWAY,
            };
            rpc_error(status, Some(id), error)
        }
    }
}

/// An event stream of the messages `rx` receives, with a keep-alive
/// comment every 15 s of silence. `session` is held while it is open.
fn event_stream(rx: mpsc::Receiver<Bytes>, session: Option<Arc<Session>>) -> Response {
    let stream = futures::stream::unfold((rx, session), |(mut rx, session)| async move {
        match tokio::time::timeout(Duration::from_secs(15), rx.recv()).await {
            Ok(Some(message)) => Some((
                Ok::<Bytes, std::convert::Infallible>(sse::event(&message)),
                (rx, session),
            )),
            Ok(None) => None,
            Err(_) => Some((Ok(sse::keep_alive()), (rx, session))),
        }
    });
    let mut response = Response::new(Body::from_stream(stream.boxed()));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn too_large(limit: usize) -> Response {
    rpc_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        None,
        RpcError::new(
            code::INVALID_REQUEST,
            format!("request body exceeds the limit of {limit} bytes (gateway.max_body_bytes)"),
        ),
    )
}

fn unauthorized(front: &Front, server: &str, e: AuthError) -> Response {
    let server = truncate(server, 64);
    let metadata = format!("{}/.well-known/oauth-protected-resource/mcp/{server}", front.public_url);
    let (challenge, description) = match &e {
        AuthError::Missing => (
            format!("Bearer resource_metadata=\"{metadata}\""),
            "missing bearer token".to_string(),
        ),
        AuthError::Invalid(reason) => {
            tracing::info!(server, "rejected bearer token: {reason}");
            (
                format!(
                    "Bearer resource_metadata=\"{metadata}\", error=\"invalid_token\", error_description=\"{}\"",
                    reason.replace(['"', '\\'], "'")
                ),
                reason.clone(),
            )
        }
    };
    let body = serde_json::json!({"error": "invalid_token", "error_description": description});
    let mut response = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

fn metadata(front: &Front, resource: String) -> Response {
    let body = serde_json::json!({
        "resource": resource,
        "authorization_servers": front.authorization_servers,
        "bearer_methods_supported": ["header"],
        "resource_name": "Sealgate MCP gateway",
    });
    axum::Json(body).into_response()
}

async fn root_metadata(State(front): State<Front>) -> Response {
    let resource = front.public_url.clone();
    metadata(&front, resource)
}

async fn server_metadata(State(front): State<Front>, Path(server): Path<String>) -> Response {
    let resource = format!("{}/mcp/{}", front.public_url, truncate(&server, 64));
    metadata(&front, resource)
}

/// The ledger's latest signed checkpoint (c2sp.org/tlog-checkpoint,
/// docs/FORMAT.md §14), for monitors and auditors to keep: the one the
/// gateway last issued, with the witnesses' cosignatures gathered for it
/// (`crate::checkpoints`). Without issued checkpoints (`[checkpoints]
/// enabled = false`), one of the whole log, made once per tree size.
/// Public, like the metadata above: it tells how many events the log
/// holds, nothing of them. File reads and signing run off the async
/// workers.
async fn checkpoint(State(front): State<Front>) -> Response {
    let ledger = front.gateway.ledger();
    let data_dir = front.gateway.data_dir().to_owned();
    let cache = Arc::clone(&front.checkpoint);
    let made = tokio::task::spawn_blocking(move || {
        if let Some(note) = crate::checkpoints::read_latest(&data_dir).map_err(|e| e.to_string())? {
            return Ok(note);
        }
        let size = ledger.tree_size();
        if let Some((at, note)) = lock(&cache).as_ref()
            && *at == size
        {
            return Ok(note.clone());
        }
        let note = ledger.checkpoint_now(Some(size)).map_err(|e| e.to_string())?;
        *lock(&cache) = Some((size, note.clone()));
        Ok::<_, String>(note)
    })
    .await;
    match made {
        Ok(Ok(note)) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response(),
        Ok(Err(e)) => {
            tracing::error!("no checkpoint could be made: {e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({"error": "no checkpoint could be made; see the gateway's log"})),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!("the checkpoint task failed: {e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn not_found(request: Request) -> Response {
    let path = truncate(request.uri().path(), 128);
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({"error": format!("no route for {path}")})),
    )
        .into_response()
}

/// At most `max` bytes of `s`, on a character boundary.
fn truncate(s: &str, max: usize) -> String {
    let mut cut = s.len().min(max);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s[..cut].to_string()
}

/// `sha256:` and 16 hex digits of the SHA-256 of a presented credential:
/// tells tokens apart in the record without making one usable.
fn fingerprint(authorization: &str) -> String {
    let token = authorization
        .strip_prefix("Bearer ")
        .or_else(|| authorization.strip_prefix("bearer "))
        .unwrap_or(authorization)
        .trim();
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    format!("sha256:{}", &hash[..16])
}

/// What one `access.refused` event counts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct AccessKey {
    source: String,
    principal: Option<String>,
    token: Option<String>,
    reason: events::AccessReason,
    server: Option<String>,
    /// Counted with others past the distinct-key cap.
    aggregated: bool,
}

/// Distinct keys counted per interval; past it, refusals are counted under
/// one key per source and reason (`server` and `token` dropped), and past
/// twice that under one key per reason whatever the source (`source`:
/// [`MANY_SOURCES`]), so a flood of made-up tokens or names, or from many
/// addresses, writes a bounded number of events.
const ACCESS_KEYS: usize = 1000;

/// The source of refusals counted together once there are too many keys.
const MANY_SOURCES: &str = "many";

/// Refused authentications and unknown servers, counted per key and
/// written as one `access.refused` event per key per interval.
#[derive(Clone)]
struct AccessLog {
    counts: Arc<Mutex<HashMap<AccessKey, AccessCount>>>,
}

impl AccessLog {
    fn start(gateway: &Gateway, interval: Duration) -> AccessLog {
        let log = AccessLog {
            counts: Arc::new(Mutex::new(HashMap::new())),
        };
        let counts = Arc::downgrade(&log.counts);
        let core = gateway.core();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            loop {
                tick.tick().await;
                let Some(counts) = counts.upgrade() else { return };
                let batch: Vec<AccessCount> = lock(&counts).drain().map(|(_, c)| c).collect();
                drop(counts);
                for count in batch {
                    let audit = &core.audit;
                    if let Err(e) = audit.append(audit.access_refused(&count, interval)).await {
                        tracing::error!("access refusals not recorded ({} of them): {e}", count.count);
                    }
                }
            }
        });
        log
    }

    fn count(&self, mut key: AccessKey) {
        let now = ledger::Timestamp::now();
        let mut counts = lock(&self.counts);
        if !counts.contains_key(&key) && counts.len() >= ACCESS_KEYS {
            key.token = None;
            key.server = None;
            key.principal = None;
            key.aggregated = true;
            if !counts.contains_key(&key) && counts.len() >= 2 * ACCESS_KEYS {
                key.source = MANY_SOURCES.to_string();
            }
        }
        let entry = counts.entry(key.clone()).or_insert_with(|| AccessCount {
            source: key.source.clone(),
            principal: key.principal.clone(),
            token: key.token.clone(),
            reason: key.reason,
            server: key.server.clone(),
            aggregated: key.aggregated,
            count: 0,
            first: now,
            last: now,
        });
        entry.count += 1;
        entry.last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_checked_by_name_and_port() {
        let mut h = HeaderMap::new();
        let allowed = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
            "example.com:8443".to_string(),
        ];
        for (host, ok) in [
            ("localhost:8080", true),
            ("127.0.0.1", true),
            ("[::1]:9", true),
            ("LOCALHOST", true),
            ("evil.example", false),
            ("example.com:8443", true),
            ("example.com:80", false),
            ("localhost.evil.example", false),
        ] {
            h.insert(header::HOST, HeaderValue::from_str(host).expect("header"));
            assert_eq!(host_allowed(&h, &allowed), ok, "{host}");
        }
        h.remove(header::HOST);
        assert!(!host_allowed(&h, &allowed), "no Host header");
        assert!(host_allowed(&h, &[]), "an empty list allows any");
    }

    /// Unauthenticated requests from many source addresses (an IPv6
    /// prefix holds 2^64 of them) must not grow the interval's counts, and
    /// so the number of `access.refused` events written, without bound.
    #[test]
    fn access_refusals_from_many_sources_are_counted_in_bounded_keys() {
        let log = AccessLog {
            counts: Arc::new(Mutex::new(HashMap::new())),
        };
        let refusals = 3 * ACCESS_KEYS + 500;
        for i in 0..refusals {
            log.count(AccessKey {
                source: format!("2001:db8::{i:x}"),
                principal: None,
                token: Some(format!("sha256:{i:016x}")),
                reason: events::AccessReason::InvalidToken,
                server: Some("up".into()),
                aggregated: false,
            });
        }
        let counts = lock(&log.counts);
        assert!(
            counts.len() <= 2 * ACCESS_KEYS + 1,
            "{} keys for {refusals} refusals",
            counts.len()
        );
        assert_eq!(counts.values().map(|c| c.count).sum::<u64>(), refusals as u64);
    }

    #[test]
    fn fingerprints_tell_tokens_apart_without_revealing_them() {
        let a = fingerprint("Bearer sg_secret_one");
        assert!(a.starts_with("sha256:") && a.len() == 23, "{a}");
        assert_ne!(a, fingerprint("Bearer sg_secret_two"));
        assert!(!a.contains("secret"));
    }
}
