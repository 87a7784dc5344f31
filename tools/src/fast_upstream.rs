//! A fast MCP upstream for tests and benchmarks: an rmcp server with three
//! tools, which records every JSON-RPC message it receives.
//!
//! - `echo {"message": text}` answers `text` (the argument name is
//!   server-everything's, so one call works against both);
//! - `slow {"ms": n}` answers `"slept n ms"` after `n` milliseconds, or
//!   stops at once when the client cancels the request (the answer then
//!   never comes, as MCP asks);
//! - `crash {}` dies mid-call: over stdio the process exits (status
//!   [`CRASH_EXIT_CODE`]); in process the whole HTTP server stops and drops
//!   every connection, as a crashed process would.
//!
//! Two ways to run it:
//!
//! - in process, over streamable HTTP on a loopback port:
//!   [`FastUpstream::spawn_http`] (inside a tokio runtime);
//! - as a stdio child for the gateway to spawn: the `fast-upstream` binary of
//!   this crate (`fast-upstream [--record FILE]`), found, and built when
//!   missing or stale, by [`bin_path`].
//!
//! Recording happens before rmcp sees a message, so malformed or unexpected
//! messages are recorded too. In process, [`Recorder`] holds them; the
//! binary appends them, one JSON object per line, to `--record FILE`
//! (read back with [`read_recording`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rmcp::ErrorData as McpError;
use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, InitializeResult,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::StreamableHttpService;
use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The exit status of the stdio binary when `crash` is called.
pub const CRASH_EXIT_CODE: i32 = 70;

/// The largest HTTP request body the in-process server reads (recording
/// needs the whole body).
const MAX_BODY: usize = 16 << 20;

/// One message the upstream received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The JSON-RPC message as it arrived (a JSON-RPC batch is recorded as
    /// one entry per element); a body that is not JSON is recorded as a
    /// JSON string of its (lossy UTF-8) text.
    pub message: Value,
    /// Over HTTP: the request's method and headers (names lowercase).
    /// Over stdio: empty.
    pub http_method: String,
    pub headers: Vec<(String, String)>,
}

impl Received {
    /// The JSON-RPC `method` (requests and notifications), if any.
    pub fn method(&self) -> Option<&str> {
        self.message.get("method").and_then(Value::as_str)
    }

    /// A header's value (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Every message the in-process upstream received, in arrival order.
/// Cheap to clone (shared). Recording can be switched off for benchmarks.
#[derive(Debug, Clone)]
pub struct Recorder {
    inner: Arc<RecorderInner>,
}

#[derive(Debug)]
struct RecorderInner {
    enabled: AtomicBool,
    received: Mutex<Vec<Received>>,
    changed: tokio::sync::Notify,
    /// While `true`, an `initialize` received over HTTP is held (after it
    /// is recorded) until it turns `false` ([`Recorder::hold_initialize`]).
    hold_initialize: tokio::sync::watch::Sender<bool>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            inner: Arc::new(RecorderInner {
                enabled: AtomicBool::new(true),
                received: Mutex::new(Vec::new()),
                changed: tokio::sync::Notify::new(),
                hold_initialize: tokio::sync::watch::Sender::new(false),
            }),
        }
    }
}

impl Recorder {
    /// Holds every `initialize` received over HTTP (recorded first, so a
    /// test sees it arrive) until `hold` is set back to `false`: a session
    /// that takes as long to open as the test needs.
    pub fn hold_initialize(&self, hold: bool) {
        self.inner.hold_initialize.send_replace(hold);
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.lock().clone()
    }

    /// The messages received so far, without their HTTP metadata.
    pub fn messages(&self) -> Vec<Value> {
        self.lock().iter().map(|r| r.message.clone()).collect()
    }

    /// The `method` of every request and notification received so far.
    pub fn methods(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter_map(|r| r.method().map(str::to_string))
            .collect()
    }

    /// Forgets what was received so far.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Stops (false) or resumes (true) recording; a benchmark that makes
    /// millions of calls switches it off. While off, HTTP requests reach
    /// rmcp without being buffered first.
    pub fn set_enabled(&self, on: bool) {
        self.inner.enabled.store(on, Ordering::Relaxed);
    }

    /// Waits until a received message satisfies `pred` and returns it, or
    /// `None` after `timeout`.
    pub async fn wait_for(&self, timeout: Duration, pred: impl Fn(&Received) -> bool) -> Option<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.changed.notified();
            if let Some(found) = self.lock().iter().find(|r| pred(r)) {
                return Some(found.clone());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    fn enabled(&self) -> bool {
        self.inner.enabled.load(Ordering::Relaxed)
    }

    fn record(&self, message: Value, http_method: &str, headers: &[(String, String)]) {
        let entries: Vec<Value> = match message {
            Value::Array(batch) => batch,
            one => vec![one],
        };
        let mut received = self.lock();
        for message in entries {
            received.push(Received {
                message,
                http_method: http_method.to_string(),
                headers: headers.to_vec(),
            });
        }
        drop(received);
        self.inner.changed.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Received>> {
        // A panicking test thread must not hide what was recorded.
        self.inner.received.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Parses a body or line as JSON, or keeps its text as a JSON string.
fn parse_message(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// Reads a recording written by `fast-upstream --record FILE`: the messages
/// in arrival order (an absent file is an empty recording).
pub fn read_recording(path: &Path) -> std::io::Result<Vec<Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))
        })
        .collect()
}

/// What `crash` does.
#[derive(Clone)]
enum Crash {
    /// Exit the process (stdio binary).
    Exit,
    /// Stop the in-process HTTP server: listener and connections.
    Stop(CancellationToken),
}

/// The MCP server: `echo`, `slow`, `crash`.
#[derive(Clone)]
struct Handler {
    crash: Crash,
}

fn schema(v: Value) -> Arc<rmcp::model::JsonObject> {
    match v {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(rmcp::model::JsonObject::new()),
    }
}

fn tools() -> Vec<Tool> {
    vec![
        Tool::new(
            "echo",
            "Answers its message.",
            schema(json!({"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]})),
        ),
        Tool::new(
            "slow",
            "Answers after `ms` milliseconds, unless cancelled first.",
            schema(
                json!({"type": "object", "properties": {"ms": {"type": "integer", "minimum": 0}}, "required": ["ms"]}),
            ),
        ),
        Tool::new(
            "crash",
            "Dies mid-call: the process exits, or the HTTP server drops every connection.",
            schema(json!({"type": "object", "properties": {}})),
        ),
    ]
}

impl ServerHandler for Handler {
    fn get_info(&self) -> InitializeResult {
        let mut info = InitializeResult::new(ServerCapabilities::builder().enable_tools().build());
        info.server_info = Implementation::new("sealgate-fast-upstream", env!("CARGO_PKG_VERSION"));
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools().into_iter().find(|t| t.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let args = request.arguments.unwrap_or_default();
        let text = match request.name.as_ref() {
            "echo" => match args.get("message").and_then(Value::as_str) {
                Some(m) => m.to_string(),
                None => return Err(McpError::invalid_params("echo needs a string `message`", None)),
            },
            "slow" => {
                let Some(ms) = args.get("ms").and_then(Value::as_u64) else {
                    return Err(McpError::invalid_params("slow needs an integer `ms`", None));
                };
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(ms)) => format!("slept {ms} ms"),
                    _ = context.ct.cancelled() => {
                        return Err(McpError::internal_error(format!("slow: cancelled before {ms} ms"), None));
                    }
                }
            }
            "crash" => {
                match &self.crash {
                    Crash::Exit => std::process::exit(CRASH_EXIT_CODE),
                    Crash::Stop(token) => token.cancel(),
                }
                // The server is going away with this call on it.
                std::future::pending::<String>().await
            }
            other => return Err(McpError::invalid_params(format!("no tool named {other:?}"), None)),
        };
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
    }
}

/// The in-process upstream over streamable HTTP.
pub struct FastUpstream;

/// A running in-process upstream: its address, and its stop switch.
/// Dropping it stops the server.
pub struct HttpHandle {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl HttpHandle {
    /// The MCP endpoint, `http://127.0.0.1:PORT/mcp`.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// Stops the server as a crash would: the listener closes and every
    /// connection is dropped mid-flight.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Whether the server has stopped (by [`HttpHandle::stop`] or a `crash` call).
    pub fn is_stopped(&self) -> bool {
        self.stop.is_cancelled()
    }
}

impl Drop for HttpHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FastUpstream {
    /// Serves the upstream over streamable HTTP (rmcp's server, sessions
    /// on, as most servers run) on `127.0.0.1:0`, on the current tokio
    /// runtime. The endpoint is `/mcp` (see [`HttpHandle::url`]).
    pub async fn spawn_http() -> std::io::Result<(SocketAddr, Recorder, HttpHandle)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let recorder = Recorder::default();
        let mut config = StreamableHttpServerConfig::default();
        config.cancellation_token = stop.child_token();
        config.sse_keep_alive = None;
        let handler = Handler {
            crash: Crash::Stop(stop.clone()),
        };
        let mcp = StreamableHttpService::new(
            move || Ok(handler.clone()),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        let app = axum::Router::new()
            .route_service("/mcp", mcp)
            .layer(axum::middleware::from_fn_with_state(recorder.clone(), record_http));
        tokio::spawn(accept(listener, app, stop.clone()));
        Ok((addr, recorder, HttpHandle { addr, stop }))
    }
}

async fn accept(listener: tokio::net::TcpListener, app: axum::Router, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move {
                    use tower::ServiceExt;
                    app.oneshot(request.map(axum::body::Body::new)).await
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            // A stop drops the connection mid-flight, like a dead process.
            tokio::select! {
                _ = connection => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}

async fn record_http(
    axum::extract::State(recorder): axum::extract::State<Recorder>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if !recorder.enabled() {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return axum::response::Response::builder()
                .status(http::StatusCode::BAD_REQUEST)
                .body(axum::body::Body::from(format!("fast upstream: reading the body: {e}")))
                .unwrap_or_default();
        }
    };
    if !bytes.is_empty() {
        let headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let message = parse_message(&bytes);
        let initialize = message["method"] == "initialize";
        recorder.record(message, parts.method.as_str(), &headers);
        if initialize {
            let mut held = recorder.inner.hold_initialize.subscribe();
            // Err: the recorder is gone, nothing holds it any more.
            let _ = held.wait_for(|hold| !*hold).await;
        }
    }
    next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// Serves the upstream over this process's stdin and stdout until stdin
/// closes (what the `fast-upstream` binary runs). With `record`, every
/// line received is appended to that file before rmcp reads it.
pub async fn serve_stdio(record: Option<PathBuf>) -> std::io::Result<()> {
    use rmcp::ServiceExt;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let handler = Handler { crash: Crash::Exit };
    let stdout = tokio::io::stdout();
    let running = match record {
        None => handler.serve((tokio::io::stdin(), stdout)).await,
        Some(path) => {
            let mut file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            let (mut into_rmcp, from_tee) = tokio::io::duplex(1 << 16);
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).split(b'\n');
                while let Ok(Some(line)) = lines.next_segment().await {
                    if !line.iter().all(u8::is_ascii_whitespace) {
                        let Ok(mut entry) = serde_json::to_vec(&parse_message(&line)) else {
                            break;
                        };
                        entry.push(b'\n');
                        // Written and flushed before rmcp sees the line, so a
                        // crash mid-call leaves the call in the recording.
                        if file.write_all(&entry).await.is_err() || file.flush().await.is_err() {
                            break;
                        }
                    }
                    let mut line = line;
                    line.push(b'\n');
                    if into_rmcp.write_all(&line).await.is_err() {
                        break;
                    }
                }
            });
            handler.serve((from_tee, stdout)).await
        }
    };
    let running = running.map_err(|e| std::io::Error::other(format!("fast upstream: initialize: {e}")))?;
    running
        .waiting()
        .await
        .map_err(|e| std::io::Error::other(format!("fast upstream: {e}")))?;
    Ok(())
}

/// The `fast-upstream` binary, built for the profile of the running test or
/// bench, in its target directory; built on first use (once per process)
/// with `cargo build -p sealgate-tools --bin fast-upstream`, so it is never
/// stale. `SEALGATE_FAST_UPSTREAM` names a binary to use instead.
///
/// Why a binary of this crate and a build on demand: Cargo gives tests the
/// paths of their own package's binaries only (`CARGO_BIN_EXE_*`), and the
/// root package cannot have a binary built from a dev-dependency. The
/// build selects the root package too, so that features unify as in the
/// test build and no dependency is rebuilt: a warm no-op takes well under a
/// second.
pub fn bin_path() -> Result<PathBuf, String> {
    static PATH: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PATH.get_or_init(build_bin).clone()
}

/// What Cargo sets, besides `CARGO_PKG_*`, for a test or bench it runs.
const CARGO_RUNTIME_VARS: &[&str] = &[
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "OUT_DIR",
];

fn build_bin() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("SEALGATE_FAST_UPSTREAM") {
        return Ok(PathBuf::from(p));
    }
    // A test or bench runs as TARGET/PROFILE/deps/NAME-HASH.
    let exe = std::env::current_exe().map_err(|e| format!("fast upstream: the running executable: {e}"))?;
    let deps = exe
        .parent()
        .ok_or_else(|| format!("fast upstream: {} has no directory", exe.display()))?;
    let profile_dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().unwrap_or(deps)
    } else {
        deps
    };
    let target = profile_dir
        .parent()
        .ok_or_else(|| format!("fast upstream: {} is not in a target directory", exe.display()))?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_string(),
        Some(other) => other.to_string(),
        None => return Err(format!("fast upstream: no profile directory above {}", exe.display())),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("Cargo.toml");
    let mut command = std::process::Command::new(&cargo);
    // The variables Cargo sets for the running test describe its package;
    // build scripts that watch them (ring watches CARGO_MANIFEST_DIR) would
    // see a change and rebuild half the tree, twice per test run.
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key.starts_with("CARGO_PKG_") || CARGO_RUNTIME_VARS.contains(&key) {
            command.env_remove(key);
        }
    }
    let out = command
        .args([
            "build",
            "--quiet",
            "-p",
            "sealgate",
            "-p",
            "sealgate-tools",
            "--bin",
            "fast-upstream",
        ])
        .arg("--profile")
        .arg(&profile)
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target)
        .output()
        .map_err(|e| format!("fast upstream: running {cargo:?} build: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "fast upstream: cargo build -p sealgate-tools --bin fast-upstream --profile {profile} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let bin = profile_dir.join("fast-upstream");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("fast upstream: built, but {} is not there", bin.display()))
    }
}
