//! The in-process harness of the fast tier: the gateway as a library on a
//! real ledger in a temporary directory, its HTTP application (MCP front
//! and admin API: `sealgate::api::app`, what `sealgate serve` listens with) driven
//! request by request with `tower::ServiceExt::oneshot`, and the fast
//! upstream of `sealgate-tools` (in process, streamable HTTP, recording
//! every message it receives) behind it. No sockets on the client side, no
//! child processes: a test runs in well under a second.
//!
//! The end-to-end tier (real `sealgate serve`, real peers) is the rest of
//! `tests/`; this harness is for the gateway's own logic.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use ledger::Ledger;
use sealgate::gateway::{Authenticator, Gateway, Peer};
use sealgate_tools::fast_upstream::{FastUpstream, HttpHandle, Recorder};
use serde_json::{Value, json};
use tower::ServiceExt;

/// How long any one exchange may take before the test fails.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(20);

/// The fast upstream as server `fast`, approved (its tools pinned) at start.
pub const FAST: &str = "[servers.fast]\ntransport = \"http\"\nurl = \"{upstream}\"\napprove = true\n";

/// A caller with a static token: name, teams, admin API roles.
pub type Caller<'a> = (&'a str, &'a [&'a str], &'a [&'a str]);

/// One gateway, in process, with its ledger, its upstream and its callers'
/// tokens.
pub struct Rig {
    pub dir: tempfile::TempDir,
    pub ledger: Arc<Ledger>,
    pub gateway: Gateway,
    pub auth: Arc<Authenticator>,
    pub config: sealgate::config::Config,
    app: Router,
    /// Every message the upstream received (the gateway's own listings at
    /// start are cleared).
    pub upstream: Recorder,
    pub upstream_handle: HttpHandle,
    tokens: BTreeMap<String, String>,
}

impl Rig {
    /// A gateway on the config `body` (the sections after `data_dir`).
    /// In `body`, `{upstream}` is the fast upstream's URL and `{dir}` the
    /// rig's directory. Without an `[auth]` section the callers' static
    /// tokens are accepted (`{dir}/tokens.toml`); without `[governance]`,
    /// every authenticated caller may do anything ([`super::ALLOW_ALL_POLICY`],
    /// a grant for `*` on `*`). Runs the config's bootstrap (registering
    /// and approving servers) as `sealgate serve` does.
    pub async fn start(body: &str, callers: &[Caller<'_>]) -> Rig {
        Rig::start_with_files(body, callers, &[]).await
    }

    /// [`Rig::start`] with `files` (name, content) written into the rig's
    /// directory first (a policy, a JWKS).
    pub async fn start_with_files(body: &str, callers: &[Caller<'_>], files: &[(&str, &str)]) -> Rig {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, upstream, upstream_handle) = FastUpstream::spawn_http().await.expect("start the fast upstream");
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).expect("write a rig file");
        }
        let dir_text = dir.path().to_string_lossy().to_string();
        let mut body = body
            .replace("{upstream}", &upstream_handle.url())
            .replace("{dir}", &dir_text);
        let mut tokens = BTreeMap::new();
        let mut entries = String::new();
        for (name, teams, roles) in callers {
            let teams: Vec<String> = teams.iter().map(|t| t.to_string()).collect();
            let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
            let (token, entry) = sealgate::gateway::new_token(name, &teams, &roles);
            tokens.insert(name.to_string(), token);
            entries.push_str(&format!("{entry}\n"));
        }
        std::fs::write(dir.path().join("tokens.toml"), entries).expect("write tokens");
        if !body.contains("[auth]") {
            body.push_str(&format!(
                "\n[auth]\ntokens_file = {:?}\n",
                dir.path().join("tokens.toml")
            ));
        }
        if !body.contains("[governance]") {
            std::fs::write(dir.path().join("allow-all.yaml"), super::ALLOW_ALL_POLICY).expect("write policy");
            body.push_str(&format!(
                "\n[governance]\npolicy_file = {:?}\n\n[[grants]]\nprincipal = \"*\"\nserver = \"*\"\n",
                dir.path().join("allow-all.yaml")
            ));
        }
        let data = dir.path().join("data");
        let path = dir.path().join("sealgate.toml");
        std::fs::write(&path, format!("data_dir = {data:?}\n{body}")).expect("write config");
        let global = sealgate::cli::Global {
            config: Some(path),
            data_dir: None,
            key_dir: None,
        };
        let config = sealgate::config::load(&global).unwrap_or_else(|e| panic!("config: {e:#}\n{body}"));
        let (ledger, gov) = tokio::task::block_in_place(|| {
            let ledger = new_ledger(&data, "sealgate:serve");
            let gov = Arc::new(
                sealgate::governance::Governance::open(
                    Arc::clone(&ledger),
                    ledger::Snapshots::new(data.join("snapshots")),
                    config.governance.snapshot_every,
                )
                .expect("governance"),
            );
            (ledger, gov)
        });
        let find_key = sealgate::gateway::findable::FindKey::from_bytes([7; 32]);
        let gateway = Gateway::new(Arc::clone(&ledger), &config, Arc::clone(&gov), &data, find_key).expect("gateway");
        sealgate::gateway::bootstrap(&gov, &gateway, &config, "test")
            .await
            .unwrap_or_else(|e| panic!("bootstrap: {e:#}"));
        let auth = Arc::new(
            Authenticator::load(&config.auth, config.gateway.anonymous_principal.clone())
                .await
                .unwrap_or_else(|e| panic!("auth: {e:#}")),
        );
        let local = "127.0.0.1:8080".parse().expect("address");
        let app = sealgate::api::app(&gateway, Arc::clone(&auth), &config, local);
        // What the bootstrap's own listing sent is not the tests' concern.
        upstream.clear();
        Rig {
            dir,
            ledger,
            gateway,
            auth,
            config,
            app,
            upstream,
            upstream_handle,
            tokens,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The static token of a caller given to [`Rig::start`].
    pub fn token(&self, caller: &str) -> &str {
        self.tokens
            .get(caller)
            .unwrap_or_else(|| panic!("no caller {caller:?} in the rig"))
    }

    /// `Bearer TOKEN` of a caller.
    pub fn bearer(&self, caller: &str) -> String {
        format!("Bearer {}", self.token(caller))
    }

    /// Sends one request through the application and reads the whole
    /// response (an event stream until it ends).
    pub async fn send(&self, request: Request<Body>) -> Reply {
        send(self.app.clone(), request).await
    }

    /// Sends one request and reads its body until it ends or breaks off:
    /// the status, the bytes that came, and the error that cut the body
    /// off, if one did.
    pub async fn send_until_cut(&self, mut request: Request<Body>) -> (StatusCode, Bytes, Option<String>) {
        use futures::StreamExt;
        prepare(&mut request);
        let exchange = async {
            let response = self
                .app
                .clone()
                .oneshot(request)
                .await
                .expect("the router is infallible");
            let status = response.status();
            let mut body = response.into_body().into_data_stream();
            let mut got = Vec::new();
            while let Some(chunk) = body.next().await {
                match chunk {
                    Ok(bytes) => got.extend_from_slice(&bytes),
                    Err(e) => return (status, Bytes::from(got), Some(e.to_string())),
                }
            }
            (status, Bytes::from(got), None)
        };
        tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
            .await
            .expect("no end of the response in time")
    }

    /// [`Rig::send`] on a task of its own: for a response that waits (a
    /// call held for approval) while the test does something else.
    pub fn spawn_send(&self, request: Request<Body>) -> tokio::task::JoinHandle<Reply> {
        tokio::spawn(send(self.app.clone(), request))
    }

    /// A POST to `/mcp/{server}` as an MCP client sends it.
    pub fn mcp_post(server: &str, authorization: Option<&str>, session: Option<&str>, body: &[u8]) -> Request<Body> {
        let mut r = Request::builder()
            .method(Method::POST)
            .uri(format!("/mcp/{server}"))
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json");
        if let Some(a) = authorization {
            r = r.header("authorization", a);
        }
        if let Some(s) = session {
            r = r.header("mcp-session-id", s);
        }
        r.body(Body::from(body.to_vec())).expect("request")
    }

    /// Opens an MCP session on `server` as `caller` (initialize, then
    /// `notifications/initialized`); the refusal if it is refused.
    pub async fn try_open(&self, server: &str, caller: &str) -> Result<McpSession<'_>, Reply> {
        self.try_open_with(server, &self.bearer(caller)).await
    }

    pub async fn try_open_with(&self, server: &str, authorization: &str) -> Result<McpSession<'_>, Reply> {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "inproc-test", "version": "1"},
        }});
        let reply = self
            .send(Rig::mcp_post(
                server,
                Some(authorization),
                None,
                init.to_string().as_bytes(),
            ))
            .await;
        let Some(id) = reply
            .header("mcp-session-id")
            .filter(|_| reply.status == StatusCode::OK)
        else {
            return Err(reply);
        };
        let session = McpSession {
            rig: self,
            server: server.to_string(),
            authorization: authorization.to_string(),
            id: id.to_string(),
            next_id: AtomicU64::new(1),
        };
        let ack = session
            .post_as(
                authorization,
                br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            )
            .await;
        assert_eq!(
            ack.status,
            StatusCode::ACCEPTED,
            "notifications/initialized: {}",
            ack.text()
        );
        Ok(session)
    }

    pub async fn open(&self, server: &str, caller: &str) -> McpSession<'_> {
        match self.try_open(server, caller).await {
            Ok(s) => s,
            Err(reply) => panic!("{caller} cannot open a session on {server}: {reply:?}"),
        }
    }

    /// An admin API request as `caller` (`None`: without a token), with a
    /// JSON body if given.
    pub async fn admin(&self, method: &str, path: &str, caller: Option<&str>, body: Option<Value>) -> Reply {
        let mut r = Request::builder().method(method).uri(path);
        if let Some(c) = caller {
            r = r.header("authorization", self.bearer(c));
        }
        let body = match body {
            Some(v) => {
                r = r.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(r.body(body).expect("request")).await
    }

    /// `PUT /admin/policy` of `text` as `caller`.
    pub async fn put_policy(&self, caller: &str, text: &str) -> Reply {
        let r = Request::builder()
            .method(Method::PUT)
            .uri("/admin/policy")
            .header("authorization", self.bearer(caller))
            .body(Body::from(text.to_string()))
            .expect("request");
        self.send(r).await
    }

    /// Every event in the ledger, in order (the `event` part of its JSON
    /// form, with `seq`).
    pub fn events(&self) -> Vec<Value> {
        events(&self.ledger)
    }

    /// The ledger's head sequence number.
    pub fn head(&self) -> u64 {
        self.ledger.head().seq
    }

    /// Waits until an event satisfies `pred` and returns it.
    pub async fn wait_event(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + EXCHANGE_TIMEOUT;
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The ledger verifies from genesis to head (on a read-only open
    /// beside the writer, as `sealgate verify` runs).
    pub fn verify(&self) {
        let report = tokio::task::block_in_place(|| {
            let reader = Ledger::open_read_only(&self.path("data/ledger")).expect("open the ledger read-only");
            reader.verify(&ledger::VerifyOptions::default(), &|_, _| {})
        })
        .expect("verify");
        assert!(report.ok(), "the ledger does not verify: {report:?}");
    }
}

/// A new ledger in `data/ledger` (keys in `data/keys`, a generated key),
/// its genesis by `principal`: as `sealgate serve` creates one on first use.
pub fn new_ledger(data: &std::path::Path, principal: &str) -> Arc<Ledger> {
    std::fs::create_dir_all(data).expect("data dir");
    Arc::new(
        Ledger::create_with(
            &data.join("ledger"),
            &ledger::KeyDir::new(data.join("keys")),
            ledger::SigningKey::generate(),
            ledger::Actor {
                principal: Some(principal.into()),
                ..ledger::Actor::default()
            },
            &ledger::StoreOptions::default(),
        )
        .expect("create the ledger"),
    )
}

/// Every event in `ledger`, in order.
pub fn events(ledger: &Ledger) -> Vec<Value> {
    tokio::task::block_in_place(|| {
        let head = ledger.head().seq;
        (0..=head)
            .filter_map(|seq| ledger.get(seq).expect("read an event"))
            .map(|e| e.to_json()["event"].clone())
            .collect()
    })
}

async fn send(app: Router, mut request: Request<Body>) -> Reply {
    prepare(&mut request);
    let what = format!("{} {}", request.method(), request.uri());
    let exchange = async {
        let response = app.oneshot(request).await.expect("the router is infallible");
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.expect("read the body");
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("{what}: no complete response in {EXCHANGE_TIMEOUT:?}"))
}

/// What hyper and the listener put on every request: the `Host` header
/// (HTTP/1.1 requires one; the gateway checks it), the peer's address.
fn prepare(request: &mut Request<Body>) {
    if !request.headers().contains_key("host") {
        request
            .headers_mut()
            .insert("host", axum::http::HeaderValue::from_static("127.0.0.1:8080"));
    }
    request
        .extensions_mut()
        .insert(Peer("127.0.0.1:40000".parse().expect("address")));
}

/// A whole response.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?} {}", self.status, self.headers, self.text())
    }
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as one JSON value.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// The JSON-RPC messages of the body: each `data:` of an event stream,
    /// or the body itself.
    pub fn messages(&self) -> Vec<Value> {
        let text = self.text();
        if self
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream"))
        {
            text.split("\n\n")
                .filter_map(|event| {
                    let data: Vec<&str> = event.lines().filter_map(|l| l.strip_prefix("data:")).collect();
                    (!data.is_empty()).then(|| data.iter().map(|d| d.trim_start()).collect::<Vec<_>>().join("\n"))
                })
                .map(|d| serde_json::from_str(&d).unwrap_or_else(|e| panic!("event data is not JSON ({e}): {d}")))
                .collect()
        } else if text.trim().is_empty() {
            Vec::new()
        } else {
            vec![self.json()]
        }
    }

    /// The JSON-RPC response or error in the body (the last message with
    /// an `id` and no `method`).
    pub fn answer(&self) -> Value {
        self.messages()
            .into_iter()
            .rev()
            .find(|m| m.get("id").is_some() && m.get("method").is_none())
            .unwrap_or_else(|| panic!("no JSON-RPC answer in {self:?}"))
    }
}

/// An open MCP session of one caller.
pub struct McpSession<'a> {
    rig: &'a Rig,
    pub server: String,
    pub authorization: String,
    pub id: String,
    next_id: AtomicU64,
}

impl McpSession<'_> {
    /// A request in this session, its JSON-RPC id fresh.
    pub fn request_message(&self, method: &str, params: Value) -> (u64, Vec<u8>) {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let m = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        (id, m.to_string().into_bytes())
    }

    /// Sends a request and returns the whole reply.
    pub async fn request(&self, method: &str, params: Value) -> Reply {
        let (_, body) = self.request_message(method, params);
        self.post_as(&self.authorization.clone(), &body).await
    }

    /// `tools/call` of `tool` with `arguments`: the whole reply.
    pub async fn call(&self, tool: &str, arguments: Value) -> Reply {
        self.request("tools/call", json!({"name": tool, "arguments": arguments}))
            .await
    }

    /// A POST of raw bytes into this session with `authorization`.
    pub async fn post_as(&self, authorization: &str, body: &[u8]) -> Reply {
        self.rig.send(self.post_request(authorization, body)).await
    }

    pub fn post_request(&self, authorization: &str, body: &[u8]) -> Request<Body> {
        Rig::mcp_post(&self.server, Some(authorization), Some(&self.id), body)
    }

    /// A GET or DELETE of this session with `authorization`.
    pub async fn without_body(&self, method: &str, authorization: &str) -> Reply {
        let r = Request::builder()
            .method(method)
            .uri(format!("/mcp/{}", self.server))
            .header("accept", "text/event-stream")
            .header("authorization", authorization)
            .header("mcp-session-id", &self.id)
            .body(Body::empty())
            .expect("request");
        if method == "GET" {
            // An opened stream stays open: read only its head.
            let mut r = r;
            prepare(&mut r);
            let response = self.rig.app.clone().oneshot(r).await.expect("infallible");
            let (parts, body) = response.into_parts();
            let body = if parts.status == StatusCode::OK {
                Bytes::new()
            } else {
                axum::body::to_bytes(body, usize::MAX).await.expect("read the body")
            };
            return Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            };
        }
        self.rig.send(r).await
    }
}
