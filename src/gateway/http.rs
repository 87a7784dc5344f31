//! The HTTP front: one streamable-HTTP MCP endpoint per upstream server
//! (`/mcp/{server}`), bearer authentication, body limits and JSON-RPC
//! parse errors in front of rmcp, and the OAuth protected-resource
//! metadata (RFC 9728) the MCP authorization spec asks of servers.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};

use super::Gateway;
use super::auth::{AuthError, Authenticator};
use super::relay::{Downstream, codes};
use crate::config::GatewayConfig;

#[derive(Clone)]
struct Front {
    auth: Arc<Authenticator>,
    public_url: String,
    max_body_bytes: usize,
    authorization_servers: Vec<String>,
    owners: Owners,
}

/// The principal that opened each HTTP session. rmcp answers GET (the
/// session's event stream) and DELETE (its end) itself, so the relay's
/// check that a request comes from the session's principal never sees them.
#[derive(Clone)]
struct Owners {
    map: Arc<Mutex<OwnerMap>>,
    /// rmcp's sessions, to forget the owners of sessions it has closed
    /// (idle, or ended by their upstream).
    managers: Arc<Vec<Arc<LocalSessionManager>>>,
}

struct OwnerMap {
    /// Session id → (principal, when recorded).
    owners: HashMap<String, (String, Instant)>,
    /// Size at which closed sessions are next pruned.
    prune_at: usize,
}

const PRUNE_AT_LEAST: usize = 1024;

impl Owners {
    fn new(managers: Vec<Arc<LocalSessionManager>>) -> Owners {
        Owners {
            map: Arc::new(Mutex::new(OwnerMap {
                owners: HashMap::new(),
                prune_at: PRUNE_AT_LEAST,
            })),
            managers: Arc::new(managers),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OwnerMap> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Unknown sessions are left to rmcp, which answers 404.
    fn allows(&self, session: &str, principal: &str) -> bool {
        self.lock()
            .owners
            .get(session)
            .is_none_or(|(owner, _)| owner == principal)
    }

    async fn record(&self, session: &str, principal: &str) {
        let full = {
            let mut map = self.lock();
            map.owners
                .insert(session.to_string(), (principal.to_string(), Instant::now()));
            map.owners.len() >= map.prune_at
        };
        if full {
            self.prune().await;
        }
    }

    fn forget(&self, session: &str) {
        self.lock().owners.remove(session);
    }

    /// Forgets sessions rmcp no longer has. Sessions recorded after the
    /// snapshot of rmcp's sessions began are kept: they may be missing
    /// from it.
    async fn prune(&self) {
        let began = Instant::now();
        let mut live = HashSet::new();
        for manager in self.managers.iter() {
            live.extend(manager.sessions.read().await.keys().map(|id| id.to_string()));
        }
        let mut map = self.lock();
        map.owners
            .retain(|id, (_, recorded)| *recorded >= began || live.contains(id));
        map.prune_at = (map.owners.len() * 2).max(PRUNE_AT_LEAST);
    }
}

const SESSION_ID: &str = "mcp-session-id";

/// The gateway's HTTP application, listening on `local_addr` (the address
/// actually bound: `gateway.listen` may name port 0).
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
    let mut rmcp_config = StreamableHttpServerConfig::default().with_max_request_body_bytes(config.max_body_bytes);
    rmcp_config = if config.allowed_hosts.is_empty() {
        rmcp_config.disable_allowed_hosts()
    } else {
        rmcp_config.with_allowed_hosts(config.allowed_hosts.clone())
    };

    let mut mcp = Router::new();
    let mut managers = Vec::new();
    for name in gateway.server_names() {
        let gw = gateway.clone();
        let server = name.to_string();
        let sessions = Arc::new(LocalSessionManager::default());
        managers.push(sessions.clone());
        let service = StreamableHttpService::new(
            move || {
                gw.relay(&server, Downstream::Http, None)
                    .ok_or_else(|| std::io::Error::other(format!("no server named {server:?}")))
            },
            sessions,
            rmcp_config.clone(),
        );
        mcp = mcp.nest_service(&format!("/mcp/{name}"), service);
    }
    let front = Front {
        auth,
        public_url,
        max_body_bytes: config.max_body_bytes,
        authorization_servers,
        owners: Owners::new(managers),
    };
    let mcp = mcp.layer(middleware::from_fn_with_state(front.clone(), guard));
    Router::new()
        .merge(mcp)
        .route("/.well-known/oauth-protected-resource", get(root_metadata))
        .route(
            "/.well-known/oauth-protected-resource/mcp/{server}",
            get(server_metadata),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(not_found)
        .with_state(front)
}

/// Authentication and the session's principal, then (for POST) the body
/// limit and JSON-RPC parsing, before rmcp sees the request.
async fn guard(State(front): State<Front>, mut request: Request, next: Next) -> Response {
    let server = request
        .uri()
        .path()
        .trim_start_matches("/mcp/")
        .split('/')
        .next()
        .unwrap_or("")
        .to_string();
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let principal = match front.auth.authenticate(authorization).await {
        Ok(principal) => {
            let name = principal.name.clone();
            request.extensions_mut().insert(principal);
            name
        }
        Err(e) => return unauthorized(&front, &server, e),
    };
    let session = request
        .headers()
        .get(SESSION_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if request.method() != Method::POST {
        if let Some(id) = &session
            && !front.owners.allows(id, &principal)
        {
            return wrong_principal(id);
        }
        let delete = request.method() == Method::DELETE;
        let response = next.run(request).await;
        if let Some(id) = &session
            && (response.status() == StatusCode::NOT_FOUND || (delete && response.status().is_success()))
        {
            front.owners.forget(id);
        }
        return response;
    }
    let limit = front.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(limit);
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => return too_large(limit),
    };
    if let Err(response) = check_jsonrpc(&bytes) {
        return *response;
    }
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    match (
        &session,
        response.headers().get(SESSION_ID).and_then(|v| v.to_str().ok()),
    ) {
        // An initialize that opened a session.
        (None, Some(opened)) => front.owners.record(opened, &principal).await,
        (Some(id), _) if response.status() == StatusCode::NOT_FOUND => front.owners.forget(id),
        _ => {}
    }
    response
}

/// A GET or DELETE on a session another principal opened.
fn wrong_principal(session: &str) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {
            "code": codes::WRONG_PRINCIPAL,
            "message": format!("session {session} belongs to another principal"),
        },
    });
    (StatusCode::FORBIDDEN, axum::Json(body)).into_response()
}

/// A body that is not JSON gets a JSON-RPC parse error (-32700); JSON that
/// is not a JSON-RPC message gets invalid request (-32600).
fn check_jsonrpc(bytes: &Bytes) -> Result<(), Box<Response>> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        Box::new(jsonrpc_error(
            serde_json::Value::Null,
            -32700,
            format!("parse error: request body is not JSON: {e}"),
        ))
    })?;
    let id = value.get("id").cloned().unwrap_or(serde_json::Value::Null);
    if let Err(e) = serde_json::from_value::<rmcp::model::ClientJsonRpcMessage>(value) {
        return Err(Box::new(jsonrpc_error(
            id,
            -32600,
            format!("invalid request: not a JSON-RPC 2.0 MCP message: {e}"),
        )));
    }
    Ok(())
}

fn jsonrpc_error(id: serde_json::Value, code: i32, message: String) -> Response {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

fn too_large(limit: usize) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {
            "code": -32600,
            "message": format!("request body exceeds the limit of {limit} bytes (gateway.max_body_bytes)"),
        },
    });
    (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(body)).into_response()
}

fn unauthorized(front: &Front, server: &str, e: AuthError) -> Response {
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
    let resource = format!("{}/mcp/{server}", front.public_url);
    metadata(&front, resource)
}

async fn not_found(request: Request) -> Response {
    let path = request.uri().path().to_string();
    let message = match path.strip_prefix("/mcp/") {
        Some(server) => format!(
            "no server named {:?} is configured",
            server.split('/').next().unwrap_or("")
        ),
        None => format!("no route for {path}"),
    };
    (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({"error": message}))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_json_is_a_parse_error_and_non_messages_invalid_requests() {
        let parse = check_jsonrpc(&Bytes::from_static(b"{\"jsonrpc\": ")).expect_err("parse error");
        assert_eq!(parse.status(), StatusCode::BAD_REQUEST);
        let invalid = check_jsonrpc(&Bytes::from_static(b"{\"id\": 3, \"x\": 1}")).expect_err("invalid");
        assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
        let ok = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#;
        assert!(check_jsonrpc(&Bytes::from_static(ok)).is_ok());
    }

    #[tokio::test]
    async fn sessions_keep_their_owner_until_rmcp_closes_them() {
        use rmcp::transport::streamable_http_server::session::SessionManager;
        let manager = Arc::new(LocalSessionManager::default());
        let (live, _transport) = manager.create_session().await.expect("session");
        let owners = Owners::new(vec![manager.clone()]);
        owners.record(&live, "alice").await;
        owners.record("closed-session", "bob").await;
        assert!(owners.allows(&live, "alice"));
        assert!(!owners.allows(&live, "bob"));
        assert!(!owners.allows("closed-session", "alice"));
        assert!(
            owners.allows("never-opened", "bob"),
            "unknown sessions are rmcp's to refuse"
        );
        owners.prune().await;
        assert!(!owners.allows(&live, "bob"), "a live session keeps its owner");
        assert!(!owners.lock().owners.contains_key("closed-session"));
        assert_eq!(owners.lock().prune_at, PRUNE_AT_LEAST);
    }
}
