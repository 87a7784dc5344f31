//! The admin API (axum, under `/admin`): registry, grants, policy,
//! approvals, and the governance state as of any time. Every mutation goes
//! through [`Governance`], which checks it against the current state and
//! appends it as an event; the API writes nothing else.
//!
//! Callers authenticate with the gateway's bearer tokens; roles decide
//! what they may do: `auditor` reads, `approver` also decides approvals,
//! `admin` does everything. `POST /admin/find` (auditor or admin) finds the
//! events that carried a redacted value (`gateway::findable`); the value is
//! in the body, never in the URL, an answer, an error or a log line.
//! `POST /admin/query` and `GET /admin/reports/{name}` (auditor) answer
//! read-only queries and reports (`query`, docs/QUERY.md). `GET
//! /admin/export` (auditor) is `sealgate export status`, `POST
//! /admin/export/{sink}/replay` (admin) `sealgate export replay`
//! (docs/EXPORT.md): they read and write the sinks' files, never the
//! ledger.
//! `GET /admin/proof/inclusion?seq=N[&size=M]`,
//! `GET /admin/proof/consistency?old=M&new=N` and `GET /admin/key-history`
//! (auditor) answer what `sealgate prove` and `key-history` print
//! (docs/FORMAT.md §14), as text.
//!
//! `POST /admin/suspensions` and `DELETE /admin/suspensions/{target}/{name}`
//! (admin) are the kill switch (`sealgate suspend`, `resume`): the
//! suspension is written, then made effective in the open sessions at
//! once (docs/CONTROLS.md).
//!
//! Times are RFC 3339 strings, as in events.

pub mod query;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::Config;
use crate::gateway::{Authenticator, Gateway, Principal};
use crate::governance::{GovError, GovState, Governance, GrantSpec, Status};

#[derive(Clone)]
struct Api {
    gateway: Gateway,
    auth: Arc<Authenticator>,
    /// Limits of queries through the API (`[query]`), the gates' targets.
    query_limits: ::query::Limits,
    targets: ::query::reports::Targets,
    /// Queries running at once through the API (`query::MAX_RUNNING`).
    queries: Arc<tokio::sync::Semaphore>,
    /// The `[[exporters]]` sinks, for `/admin/export`.
    exporters: Arc<Vec<exporters::SinkConfig>>,
}

impl Api {
    fn gov(&self) -> &Arc<Governance> {
        self.gateway.governance()
    }
}

/// An error answer: status and `{"error": message}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({"error": self.1}))).into_response()
    }
}

impl From<GovError> for ApiError {
    fn from(e: GovError) -> ApiError {
        let status = match &e {
            GovError::Invalid(_) => StatusCode::BAD_REQUEST,
            GovError::NotFound(_) => StatusCode::NOT_FOUND,
            GovError::Conflict(_) => StatusCode::CONFLICT,
            GovError::Forbidden(_) => StatusCode::FORBIDDEN,
            GovError::Ledger(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(status, e.to_string())
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok(value: Value) -> ApiResult {
    Ok(axum::Json(value).into_response())
}

fn receipt(r: &ledger::Receipt) -> Value {
    json!({"seq": r.seq, "hash": r.hash.to_hex(), "ts": r.ts.to_string()})
}

/// The whole HTTP application `sealgate serve` listens with: the MCP
/// front ([`crate::gateway::router`]) and the admin API, on `local_addr`
/// (the address bound). The in-process tests drive this same router.
pub fn app(gateway: &Gateway, auth: Arc<Authenticator>, config: &Config, local_addr: SocketAddr) -> Router {
    let admin = router(gateway.clone(), Arc::clone(&auth), config);
    crate::gateway::router(
        gateway,
        auth,
        &config.gateway,
        config.auth.authorization_servers(),
        local_addr,
    )
    .merge(admin)
}

/// The admin routes, to merge into the gateway's HTTP application.
pub fn router(gateway: Gateway, auth: Arc<Authenticator>, config: &Config) -> Router {
    let api = Api {
        gateway,
        auth,
        query_limits: config.query.limits(None),
        targets: config.gates.targets(),
        queries: Arc::new(tokio::sync::Semaphore::new(query::MAX_RUNNING)),
        exporters: Arc::new(config.exporters.clone()),
    };
    Router::new()
        .route("/admin/state/{part}", get(state))
        .route("/admin/registry", get(registry))
        .route("/admin/registry/{name}/{action}", post(registry_action))
        .route("/admin/grants", get(grants).post(issue_grant))
        .route("/admin/grants/{id}", delete(revoke_grant))
        .route("/admin/suspensions", get(suspensions).post(suspend))
        .route("/admin/suspensions/{target}/{name}", delete(resume))
        .route("/admin/policy", get(policy).put(load_policy))
        .route("/admin/approvals", get(approvals))
        .route("/admin/approvals/{id}/{action}", post(decide_approval))
        .route("/admin/find", post(find))
        .route("/admin/proof/{kind}", get(proof))
        .route("/admin/key-history", get(key_history))
        .route("/admin/query", post(query::query))
        .route("/admin/search", get(query::search))
        .route("/admin/reports", get(query::reports))
        .route("/admin/reports/{name}", get(query::report))
        .route("/admin/export", get(export_status))
        .route("/admin/export/{sink}/replay", post(export_replay))
        .layer(middleware::from_fn_with_state(api.clone(), authenticate))
        .with_state(api)
}

async fn authenticate(State(api): State<Api>, mut request: Request, next: Next) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match api.auth.authenticate(header).await {
        Ok(p) if !p.roles.is_empty() => {
            // A suspended principal (or one of a suspended team) has no
            // admin API either: a leaked admin or approver token must not
            // approve held calls, grant, or lift its own suspension.
            let view = match api.gov().view_at_head().await {
                Ok(v) => v,
                Err(e) => return ApiError::from(e).into_response(),
            };
            if let Some(s) = view.state.suspensions.stopping_principal(&p.name, &p.teams) {
                return ApiError(
                    StatusCode::FORBIDDEN,
                    format!("{:?} is suspended ({}): the admin API refuses it", p.name, s.id),
                )
                .into_response();
            }
            request.extensions_mut().insert(p);
            next.run(request).await
        }
        Ok(p) => ApiError(
            StatusCode::FORBIDDEN,
            format!("{:?} has no admin API role (admin, approver or auditor)", p.name),
        )
        .into_response(),
        Err(_) => {
            let mut r = ApiError(StatusCode::UNAUTHORIZED, "missing or invalid bearer token".into()).into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
            r
        }
    }
}

fn require(p: &Principal, role: &str) -> Result<(), ApiError> {
    if p.has_role(role) {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::FORBIDDEN,
            format!("{:?} lacks the {role} role (has {:?})", p.name, p.roles),
        ))
    }
}

fn reader(p: &Principal) -> Result<(), ApiError> {
    if p.has_role("auditor") || p.has_role("approver") {
        Ok(())
    } else {
        require(p, "auditor")
    }
}

#[derive(Deserialize)]
struct AsOf {
    /// RFC 3339 time or a sequence number.
    as_of: Option<String>,
}

/// The governance state as of `as_of` (default: now).
async fn state_at(api: &Api, as_of: Option<&str>) -> Result<(GovState, Option<u64>), ApiError> {
    let gov = api.gov().clone();
    match as_of {
        None => {
            let view = gov.view_at_head().await?;
            Ok((view.state.clone(), view.seq))
        }
        Some(at) => {
            let at = at.to_string();
            tokio::task::spawn_blocking(move || gov.state_as_of(&at))
                .await
                .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
                .map_err(ApiError::from)
        }
    }
}

async fn state(
    State(api): State<Api>,
    axum::Extension(p): axum::Extension<Principal>,
    Path(part): Path<String>,
    Query(q): Query<AsOf>,
) -> ApiResult {
    reader(&p)?;
    let (state, seq) = state_at(&api, q.as_of.as_deref()).await?;
    ok(
        json!({"as_of_seq": seq, part.clone(): crate::governance::render(&state, &part).map_err(|e| ApiError(StatusCode::NOT_FOUND, e))?}),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProofQuery {
    seq: Option<u64>,
    size: Option<u64>,
    old: Option<u64>,
    new: Option<u64>,
}

fn text(body: String) -> ApiResult {
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}

/// A ledger error as an answer: a request the ledger cannot answer as
/// asked (a seq or size past the log) is the caller's; anything else is
/// the gateway's.
fn ledger_error(e: ledger::Error) -> ApiError {
    match e {
        ledger::Error::InvalidRequest(m) => ApiError(StatusCode::BAD_REQUEST, m),
        other => ApiError(StatusCode::SERVICE_UNAVAILABLE, other.to_string()),
    }
}

/// An inclusion proof (c2sp.org/tlog-proof) or a consistency proof, with
/// the checkpoint it is against, signed with the writer's current key.
async fn proof(
    State(api): State<Api>,
    axum::Extension(p): axum::Extension<Principal>,
    Path(kind): Path<String>,
    Query(q): Query<ProofQuery>,
) -> ApiResult {
    reader(&p)?;
    let ledger = api.gateway.ledger();
    let made = match (kind.as_str(), q) {
        (
            "inclusion",
            ProofQuery {
                seq: Some(seq),
                size,
                old: None,
                new: None,
            },
        ) => tokio::task::spawn_blocking(move || ledger.prove_inclusion_now(seq, size).map(|p| p.to_text())).await,
        (
            "consistency",
            ProofQuery {
                seq: None,
                size: None,
                old: Some(old),
                new: Some(new),
            },
        ) => tokio::task::spawn_blocking(move || ledger.prove_consistency_now(old, new).map(|p| p.to_text())).await,
        ("inclusion" | "consistency", _) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "an inclusion proof takes `seq` (and `size`), a consistency proof `old` and `new`".into(),
            ));
        }
        (other, _) => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no proof of kind `{other}`: `inclusion` or `consistency`"),
            ));
        }
    };
    text(
        made.map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("the proof task failed: {e}")))?
            .map_err(ledger_error)?,
    )
}

/// The ledger's keys for offline verification (`sealgate key-history`).
async fn key_history(State(api): State<Api>, axum::Extension(p): axum::Extension<Principal>) -> ApiResult {
    reader(&p)?;
    let ledger = api.gateway.ledger();
    let history = tokio::task::spawn_blocking(move || ledger.key_history())
        .await
        .map_err(|e| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the key history task failed: {e}"),
            )
        })?
        .map_err(ledger_error)?;
    text(history.to_text())
}

async fn registry(State(api): State<Api>, axum::Extension(p): axum::Extension<Principal>) -> ApiResult {
    reader(&p)?;
    let view = api.gov().view_at_head().await?;
    ok(json!({"as_of_seq": view.seq, "registry": view.state.registry}))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Reason {
    reason: Option<String>,
    /// For `tools/approve`: which drifted tools (default all).
    #[serde(default)]
    tools: Vec<String>,
}

async fn registry_action(
    State(api): State<Api>,
    axum::Extension(p): axum::Extension<Principal>,
    Path((name, action)): Path<(String, String)>,
    body: Option<axum::Json<Reason>>,
) -> ApiResult {
    require(&p, "admin")?;
    let Reason { reason, tools } = body.map(|b| b.0).unwrap_or_default();
    let gov = api.gov();
    match action.as_str() {
        "approve" => {
            // Pin what the server lists now.
            let listed = api.gateway.pin_upstream_tools(&name).await.map_err(|e| {
                ApiError(
                    StatusCode::BAD_GATEWAY,
                    format!("cannot list the tools of {name}: {e:#}"),
                )
            })?;
            let receipts = gov.approve_server(&p, &name, reason, &listed).await?;
            ok(json!({"approved": name, "pinned": listed, "events": receipts.iter().map(receipt).collect::<Vec<_>>()}))
        }
        "quarantine" | "revoke" => {
            let to = if action == "revoke" {
                Status::Revoked
            } else {
                Status::Quarantined
            };
            let r = gov.set_status(&p, &name, to, reason).await?;
            ok(json!({"server": name, "status": to.as_str(), "event": receipt(&r)}))
        }
        "register" => {
            let spec = api
                .gateway
                .server_spec(&name)
                .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no server named {name:?} in the config")))?;
            let r = gov.register(&p, &spec, reason, events::RegistrySource::Api).await?;
            ok(json!({"server": name, "event": r.as_ref().map(receipt)}))
        }
        "tools" => Err(ApiError(
            StatusCode::NOT_FOUND,
            "use /admin/registry/{name}/approve-tools".into(),
        )),
        "approve-tools" => {
            let r = gov.approve_tools(&p, &name, &tools, reason).await?;
            ok(json!({"server": name, "event": receipt(&r)}))
        }
        other => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("unknown registry action {other:?} (register, approve, approve-tools, quarantine, revoke)"),
        )),
    }
}

async fn grants(State(api): State<Api>, axum::Extension(p): axum::Extension<Principal>) -> ApiResult {
    reader(&p)?;
    let view = api.gov().view_at_head().await?;
    ok(json!({"as_of_seq": view.seq, "grants": view.state.grants}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewGrant {
    principal: Option<String>,
    team: Option<String>,
    server: String,
    #[serde(default = "star")]
    tool: String,
    env: Option<String>,
    /// RFC 3339.
    expires_at: Option<String>,
    reason: Option<String>,
}

fn star() -> String {
    "*".into()
}

async fn issue_grant(
    State(api): State<Api>,
    axum::Extension(p): axum::Extension<Principal>,
    axum::Json(g): axum::Json<NewGrant>,
) -> ApiResult {
    require(&p, "admin")?;
    let expires_at = match &g.expires_at {
        None => None,
        Some(t) => Some(
            ledger::Timestamp::parse_rfc3339(t)
                .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("expires_at {t:?}: {e}")))?,
        ),
    };
    let spec = GrantSpec {
        principal: g.principal,
        team: g.team,
        server: g.server,
        tool: g.tool,
        env: g.env,
        expires_at,
        reason: g.reason,
    };
    let (id, r) = api.gov().issue_grant(&p, &spec).await?;
    ok(json!({"grant_id": id, "event": receipt(&r)}))
}

async fn revoke_grant(
    State(api): State<Api>,
    axum::Extension(p): axum::Extension<Principal>,
    Path(id): Path<String>,
    body: Option<axum::Json<Reason>>,
) -> ApiResult {
    require(&p, "admin")?;
    let reason = body.and_then(|b| b.0.reason);
    let r = api.gov().revoke_grant(&p, &id, reason).await?;
    ok(json!({"revoked": id, "event": receipt(&r)}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSuspension {
    target: events::SuspensionTarget,
    name: String,
    reason: String,
}

fn target_of(text: &str) -> Result<events::SuspensionTarget, ApiError> {
    serde_json::from_value(json!(text)).map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("unknown suspension target {text:?} (principal, team, server, session)"),
        )
    })
}

/// Whether a suspension's target is one this gateway knows: a server it
/// has configured or registered; a session open now; a principal a token
/// names, in a JWT issuer's namespace, named by a grant or owning an open
/// session; a team a token or a grant names, or of an open session's
/// owner. An unknown one is refused, so a typo suspends nothing silently.
async fn known_target(api: &Api, target: events::SuspensionTarget, name: &str) -> Result<(), ApiError> {
    use crate::governance::grants::Grantee;
    use events::SuspensionTarget as T;
    let view = api.gov().view_at_head().await?;
    let grants = || view.state.grants.grants.values();
    let owners = api.gateway.session_owners();
    let known = match target {
        T::Server => api.gateway.has_server(name) || view.state.registry.servers.contains_key(name),
        T::Session => api.gateway.session_open(name),
        T::Principal => {
            api.auth.may_be_principal(name)
                || grants().any(|g| g.grantee == Grantee::Principal(name.to_string()))
                || owners.iter().any(|(p, _)| p == name)
        }
        T::Team => {
            api.auth.names_team(name)
                || grants().any(|g| g.grantee == Grantee::Team(name.to_string()))
                || owners.iter().any(|(_, teams)| teams.iter().any(|t| t == name))
        }
    };
    if known {
        Ok(())
    } else {
        let what = match target {
            T::Server => "no server of that name is configured or registered",
            T::Session => "no session of that id is open",
            T::Principal => "no token, JWT issuer, grant or open session names that principal",
            T::Team => "no token, grant or open session names that team",
        };
        Err(ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "cannot suspend {} {name:?}: {what}; nothing was written",
                target.as_str()
            ),
        ))
    }
}

async fn suspensions(State(api): State<Api>, axum::Extension(p): axum::Extension<Principal>) -> ApiResult {
    reader(&p)?;
    let view = api.gov().view_at_head().await?;
    ok(json!({"as_of_seq": view.seq, "suspensions": view.state.suspensions}))
}

async fn suspend(
    State(api): State<Api>,
    axum::Extension(p): axum::Extension<Principal>,
    axum::Json(s): axum::Json<NewSuspension>,
) -> ApiResult {
    require(&p, "admin")?;
    known_target(&api, s.target, &s.name).await?;
    // Written and enforced on a task of its own: an admin who stops waiting
    // (Ctrl-C, a dropped connection) cannot leave a suspension written but
    // not enforced on the open sessions, or a session half closed.
    let task = tokio::spawn(async move {
        let (id, r) = api.gov().suspend(&p, s.target, &s.name, &s.reason).await?;
        let view = api.gov().view_at_head().await?;
        let (closed, withdrawn) = match view.state.suspensions.items.get(&id) {
            Some(suspension) => api.gateway.enforce_suspension(suspension).await,
            // Lifted already by another admin: nothing to enforce.
            None => (0, 0),
        };
        Ok::<_, ApiError>((id, r, closed, withdrawn))
    });
    let (id, r, closed, withdrawn) = task.await.map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the suspension task failed: {e}"),
        )
    })??;
    ok(json!({
        "suspension_id": id,
        "event": receipt(&r),
        "sessions_closed": closed,
        "calls_withdrawn": withdrawn,
    }))
}

async fn resume(
    State(api): State<Api>,
    axum::Extension(p): axum::Extension<Principal>,
    Path((target, name)): Path<(String, String)>,
    body: Option<axum::Json<Reason>>,
) -> ApiResult {
    require(&p, "admin")?;
    let target = target_of(&target)?;
    let reason = body.and_then(|b| b.0.reason);
    let (id, r) = api.gov().resume(&p, target, &name, reason).await?;
    ok(json!({"resumed": id, "event": receipt(&r)}))
}

async fn policy(State(api): State<Api>, axum::Extension(p): axum::Extension<Principal>) -> ApiResult {
    reader(&p)?;
    let view = api.gov().view_at_head().await?;
    ok(json!({"as_of_seq": view.seq, "policy": view.state.policy}))
}

async fn load_policy(
    State(api): State<Api>,
    axum::Extension(p): axum::Extension<Principal>,
    headers: axum::http::HeaderMap,
    text: String,
) -> ApiResult {
    require(&p, "admin")?;
    let origin = headers
        .get("x-sealgate-origin")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("admin API")
        .to_string();
    let r = api.gov().load_policy(&p, &text, &origin).await?;
    let view = api.gov().view_at_head().await?;
    ok(json!({
        "hash": view.state.policy.as_ref().map(|p| p.hash.clone()),
        "event": r.as_ref().map(receipt),
        "changed": r.is_some(),
    }))
}

async fn approvals(State(api): State<Api>, axum::Extension(p): axum::Extension<Principal>) -> ApiResult {
    reader(&p)?;
    let view = api.gov().view_at_head().await?;
    let now = ledger::Timestamp::now().as_nanos();
    let items: Vec<Value> = view
        .state
        .approvals
        .items
        .values()
        .map(|a| {
            let mut v = serde_json::to_value(a).unwrap_or_default();
            v["waiting_sec"] = json!(a.waiting_sec(now));
            v
        })
        .collect();
    ok(json!({"as_of_seq": view.seq, "approvals": items}))
}

async fn decide_approval(
    State(api): State<Api>,
    axum::Extension(p): axum::Extension<Principal>,
    Path((id, action)): Path<(String, String)>,
    body: Option<axum::Json<Reason>>,
) -> ApiResult {
    require(&p, "approver")?;
    let grant = match action.as_str() {
        "approve" => true,
        "deny" => false,
        other => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("unknown approval action {other:?} (approve, deny)"),
            ));
        }
    };
    let reason = body.and_then(|b| b.0.reason);
    let r = api.gov().decide_approval(&p, &id, grant, reason).await?;
    ok(json!({"approval_id": id, "decision": action, "event": receipt(&r)}))
}

/// `POST /admin/find`: `{"value": "...", "from": SEQ, "to": SEQ}` (range
/// optional, inclusive).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FindRequest {
    value: String,
    from: Option<u64>,
    to: Option<u64>,
}

async fn find(
    State(api): State<Api>,
    axum::Extension(p): axum::Extension<Principal>,
    body: axum::body::Bytes,
) -> ApiResult {
    require(&p, "auditor")?;
    // Parsed here rather than by axum's extractor, whose errors quote the
    // offending value.
    let request: FindRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "the body must be a JSON object {{\"value\": string, \"from\": seq, \"to\": seq}} (from, to optional): \
                 {} at line {}, column {}",
                match e.classify() {
                    serde_json::error::Category::Io | serde_json::error::Category::Eof => "incomplete",
                    serde_json::error::Category::Syntax => "not JSON",
                    serde_json::error::Category::Data => "wrong member or type",
                },
                e.line(),
                e.column()
            ),
        )
    })?;
    if let (Some(f), Some(t)) = (request.from, request.to)
        && f > t
    {
        return Err(ApiError(StatusCode::BAD_REQUEST, format!("from {f} is after to {t}")));
    }
    let found = api
        .gateway
        .find(request.value, request.from, request.to)
        .await
        .map_err(|e| {
            let status = match e {
                crate::gateway::findable::FindError::Query(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            ApiError(status, e.to_string())
        })?;
    tracing::info!(
        principal = %p.name,
        found = found.matches.len(),
        read = found.events_read,
        "admin API: a search by value (the value is not logged)"
    );
    ok(serde_json::to_value(&found).map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?)
}

/// `GET /admin/export`: every sink's cursor, lag, state, last error and
/// dead letters, the figures of `sealgate export status`.
async fn export_status(State(api): State<Api>, axum::Extension(p): axum::Extension<Principal>) -> ApiResult {
    require(&p, "auditor")?;
    let ledger = api.gateway.ledger();
    let data_dir = api.gateway.data_dir().to_owned();
    let sinks = Arc::clone(&api.exporters);
    let reports = tokio::task::spawn_blocking(move || exporters::report(&data_dir, &ledger, &sinks))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let sinks =
        serde_json::to_value(&reports).map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    ok(json!({"sinks": sinks}))
}

/// `POST /admin/export/{sink}/replay` with `{"from": SEQ}`: the sink sends
/// the log again from `SEQ` (`sealgate export replay`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    from: u64,
}

async fn export_replay(
    State(api): State<Api>,
    axum::Extension(p): axum::Extension<Principal>,
    Path(sink): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    require(&p, "admin")?;
    if !api.exporters.iter().any(|s| s.name == sink) {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no exporter named {sink:?} in the config"),
        ));
    }
    let request: ReplayRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("the body must be {{\"from\": seq}}: {e}"),
        )
    })?;
    let head = api.gateway.ledger().head().seq;
    if request.from > head {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("seq {} is past the log's head (seq {head})", request.from),
        ));
    }
    let dir = exporters::sink_dir(api.gateway.data_dir(), &sink);
    let from = request.from;
    tokio::task::spawn_blocking(move || exporters::request_replay(&dir, from))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    tracing::info!(principal = %p.name, sink = %sink, from, "admin API: export replay requested");
    ok(json!({"sink": sink, "replay_from": from, "head": head}))
}
