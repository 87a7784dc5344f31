//! The completeness invariant, as a property test, in process: nothing
//! reaches an upstream unless the ledger already holds, durably, the
//! request and the decision that let it through, naming the session's
//! principal and the same bytes; and nothing reaches a client from the
//! upstream without output safety.
//!
//! The gateway runs as a library on a real ledger in a temporary
//! directory. The upstream is a streamable-HTTP MCP server in this process
//! that records every message it receives, with the ledger's durable head
//! at that moment, and puts a planted secret in everything it says.
//! Generated sessions send well-formed and mutated traffic (duplicate keys,
//! wrong types, unknown methods, batches, stray notifications and
//! responses, huge numbers, another principal's messages) as raw HTTP.
//! Then every message the upstream received is matched to the events that
//! authorised it:
//!
//! - `initialize`: the session's `mcp.requested` and its ALLOW decision;
//! - calls and gated requests (`tools/call`, `resources/read`,
//!   `prompts/get`, `completion/complete`, `logging/setLevel`,
//!   `resources/(un)subscribe`): one request event each, same method, same
//!   arguments (as the ledger keeps them: redacted where the policy
//!   redacts), and an ALLOW decision answering it;
//! - the session's housekeeping (`notifications/initialized`, `ping`,
//!   listings, which are filtered and recorded after): the session's
//!   admission; a `notifications/cancelled`: a request forwarded in that
//!   session;
//!
//! each at a sequence number no later than the durable head when the
//! upstream received it. Anything else reaching the upstream fails the
//! test. The gateway's own sessions (approval and drift listings, client
//! `sealgate-gateway`) carry no client input: they are checked to hold
//! only `initialize`, `notifications/initialized` and `tools/list`.
//!
//! The budget is fixed (`CASES`); failing cases are kept in
//! `tests/completeness.proptest-regressions` and replayed first.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ledger::Ledger;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, FileFailurePersistence, TestCaseError, TestRunner};
use sealgate::json::Json;
use serde_json::{Value, json};
use support::wire::{HttpSession, TIMEOUT};

const CASES: u32 = 32;
const SECRET: &str = "AKIAIOSFODNN7EXAMPLE";

// ------------------------------------------------------------ the upstream

/// One message the upstream received.
#[derive(Clone, Debug)]
struct Received {
    session: String,
    bytes: Vec<u8>,
    /// The ledger's durable head when it arrived.
    head: u64,
}

#[derive(Clone)]
struct Upstream {
    ledger: Arc<Ledger>,
    log: Arc<Mutex<Vec<Received>>>,
    next_session: Arc<Mutex<u64>>,
}

fn tool(name: &str) -> Value {
    json!({"name": name, "description": format!("{name}: uses {SECRET}"), "inputSchema": {"type": "object"},
           "annotations": {"readOnlyHint": true}})
}

/// The answer to a request, with the planted secret in it.
fn answer(method: &str, params: &Value) -> Value {
    let said = format!("the upstream says {SECRET}");
    match method {
        "initialize" => json!({
            "protocolVersion": params["protocolVersion"].as_str().unwrap_or("2025-11-25"),
            "capabilities": {"tools": {}, "prompts": {}, "resources": {"subscribe": true}, "logging": {}, "completions": {}},
            "serverInfo": {"name": "recorder", "version": "1"},
            "instructions": said,
        }),
        "tools/list" => json!({"tools": [tool("echo"), tool("lookup")]}),
        "prompts/list" => json!({"prompts": [{"name": "greet", "description": said}]}),
        "resources/list" => json!({"resources": [{"uri": "file:///a", "name": "a", "description": said}]}),
        "resources/templates/list" => json!({"resourceTemplates": []}),
        "tools/call" => json!({"content": [{"type": "text", "text": format!("{said}; got {}", params["arguments"])}]}),
        "resources/read" => json!({"contents": [{"uri": "file:///a", "text": said}]}),
        "prompts/get" => json!({"messages": [{"role": "user", "content": {"type": "text", "text": said}}]}),
        "completion/complete" => json!({"completion": {"values": [said]}}),
        _ => json!({}),
    }
}

async fn upstream_post(State(up): State<Upstream>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let head = up.ledger.head().seq;
    let session = match headers.get("mcp-session-id").and_then(|v| v.to_str().ok()) {
        Some(s) => s.to_string(),
        None => {
            let mut n = up.next_session.lock().expect("lock");
            *n += 1;
            format!("up-{n}")
        }
    };
    up.log.lock().expect("lock").push(Received {
        session: session.clone(),
        bytes: body.to_vec(),
        head,
    });
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let (Some(id), Some(method)) = (message.get("id"), message["method"].as_str()) else {
        return StatusCode::ACCEPTED.into_response();
    };
    let params = message.get("params").cloned().unwrap_or(json!({}));
    let mut events = String::new();
    let mut push = |m: Value| events.push_str(&format!("event: message\ndata: {m}\n\n"));
    if let Some(token) = params.pointer("/_meta/progressToken") {
        push(json!({"jsonrpc": "2.0", "method": "notifications/progress",
                    "params": {"progressToken": token, "progress": 1, "message": format!("halfway, {SECRET}")}}));
    }
    if method == "tools/call" {
        push(json!({"jsonrpc": "2.0", "method": "notifications/message",
                    "params": {"level": "info", "data": {"note": format!("log {SECRET}")}}}));
    }
    push(json!({"jsonrpc": "2.0", "id": id, "result": answer(method, &params)}));
    let mut response = (StatusCode::OK, events).into_response();
    let h = response.headers_mut();
    h.insert("content-type", "text/event-stream".parse().expect("header"));
    h.insert("mcp-session-id", session.parse().expect("header"));
    response
}

async fn upstream_other() -> Response {
    StatusCode::METHOD_NOT_ALLOWED.into_response()
}

// ------------------------------------------------------------- the gateway

struct World {
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    ledger: Arc<Ledger>,
    upstream: Upstream,
    url: String,
    alice: String,
    bob: String,
}

fn world() -> World {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let ledger = support::inproc::new_ledger(&data, "completeness-test");
    let upstream = Upstream {
        ledger: Arc::clone(&ledger),
        log: Arc::default(),
        next_session: Arc::default(),
    };
    let up_listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind upstream");
    let up_addr: SocketAddr = up_listener.local_addr().expect("addr");
    let app = axum::Router::new()
        .route(
            "/mcp",
            axum::routing::post(upstream_post)
                .get(upstream_other)
                .delete(upstream_other),
        )
        .with_state(upstream.clone());
    rt.spawn(async move {
        let _ = axum::serve(up_listener, app).await;
    });

    let (alice, alice_entry) = sealgate::gateway::new_token("alice", &["security".to_string()], &[]);
    let (bob, bob_entry) = sealgate::gateway::new_token("bob", &[], &[]);
    std::fs::write(dir.path().join("tokens.toml"), format!("{alice_entry}\n{bob_entry}")).expect("tokens");
    std::fs::write(
        dir.path().join("policy.yaml"),
        "version: v1\nrules:\n  - id: allow-all\n    decision: ALLOW\n",
    )
    .expect("policy");
    let text = format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\nupstream_timeout_sec = 10\n\
         [auth]\ntokens_file = {tokens:?}\n[governance]\npolicy_file = {policy:?}\n\
         [[grants]]\nprincipal = \"alice\"\nserver = \"*\"\n\
         [servers.rec]\ntransport = \"http\"\nurl = \"http://{up_addr}/mcp\"\napprove = true\n",
        tokens = dir.path().join("tokens.toml"),
        policy = dir.path().join("policy.yaml"),
    );
    let config: sealgate::config::Config = toml::from_str(&text).expect("config");
    let gov = Arc::new(
        sealgate::governance::Governance::open(
            Arc::clone(&ledger),
            ledger::Snapshots::new(data.join("snapshots")),
            10_000,
        )
        .expect("governance"),
    );
    let find_key = sealgate::gateway::findable::FindKey::from_bytes([7; 32]);
    let gateway = sealgate::gateway::Gateway::new(Arc::clone(&ledger), &config, Arc::clone(&gov), &data, find_key)
        .expect("gateway");
    let url = rt.block_on(async {
        sealgate::gateway::bootstrap(&gov, &gateway, &config, "test")
            .await
            .expect("bootstrap");
        let auth = Arc::new(
            sealgate::gateway::Authenticator::load(&config.auth, None)
                .await
                .expect("auth"),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = sealgate::gateway::router(&gateway, auth, &config.gateway, Vec::new(), addr);
        let limits = sealgate::gateway::listener::ListenerLimits {
            max_connections: 256,
            header_read_timeout: Duration::from_secs(10),
        };
        tokio::spawn(sealgate::gateway::listener::serve(
            listener,
            app,
            limits,
            tokio_util::sync::CancellationToken::new(),
            Duration::from_secs(1),
        ));
        format!("http://{addr}/mcp/rec")
    });
    World {
        _rt: rt,
        _dir: dir,
        ledger,
        upstream,
        url,
        alice,
        bob,
    }
}

// ---------------------------------------------------------- the traffic

#[derive(Clone, Debug)]
enum Step {
    /// A well-formed request.
    Request(Value),
    /// The same request with its first key written twice (another value).
    Duplicated(Value),
    /// Raw text, sent as it is.
    Raw(String),
    /// A well-formed request sent with bob's token into alice's session.
    Foreign(Value),
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        Just(json!(SECRET)),
        "[a-z ]{0,12}".prop_map(Value::String),
        Just(json!("alice@example.com")),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_args() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-z]{1,6}", arb_value(), 0..4).prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn arb_request() -> impl Strategy<Value = Value> {
    let progress = prop::option::of(Just(json!({"progressToken": "tok"})));
    prop_oneof![
        8 => (prop_oneof![4 => Just("echo"), 4 => Just("lookup"), 1 => Just("nope")], arb_args(), progress).prop_map(
            |(name, arguments, meta)| {
                let mut params = json!({"name": name, "arguments": arguments});
                if let Some(m) = meta {
                    params["_meta"] = m;
                }
                json!({"method": "tools/call", "params": params})
            }
        ),
        1 => Just(json!({"method": "resources/read", "params": {"uri": "file:///a"}})),
        1 => arb_args().prop_map(|a| json!({"method": "prompts/get", "params": {"name": "greet", "arguments": a}})),
        1 => Just(json!({"method": "completion/complete",
                    "params": {"ref": {"type": "ref/prompt", "name": "greet"}, "argument": {"name": "x", "value": "a"}}})),
        1 => Just(json!({"method": "logging/setLevel", "params": {"level": "debug"}})),
        1 => Just(json!({"method": "resources/subscribe", "params": {"uri": "file:///a"}})),
        1 => Just(json!({"method": "tools/list"})),
        1 => Just(json!({"method": "prompts/list", "params": {}})),
        1 => Just(json!({"method": "resources/list"})),
        1 => Just(json!({"method": "ping"})),
        // Wrong types for known methods.
        1 => Just(json!({"method": "tools/call", "params": {"name": 7}})),
        1 => Just(json!({"method": "resources/read", "params": {"uri": ["file:///a"]}})),
        // Methods nobody allowed, and ones the gateway does not relay.
        1 => Just(json!({"method": "acme/exfiltrate", "params": {"all": true}})),
        1 => Just(json!({"method": "tasks/get", "params": {"taskId": "t"}})),
        1 => Just(json!({"method": "initialize", "params": {}})),
        // A huge number.
        1 => Just(json!({"method": "tools/call", "params": {"name": "echo", "arguments": {"n": "HUGE"}}})),
    ]
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => arb_request().prop_map(Step::Request),
        2 => arb_request().prop_map(Step::Duplicated),
        1 => arb_request().prop_map(Step::Foreign),
        1 => Just(Step::Raw(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#.into())),
        1 => Just(Step::Raw(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3}}"#.into())),
        1 => Just(Step::Raw(r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"x","progress":1}}"#.into())),
        1 => Just(Step::Raw(r#"{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}"#.into())),
        1 => Just(Step::Raw(r#"{"jsonrpc":"2.0","method":"acme/notice","params":{}}"#.into())),
        1 => Just(Step::Raw(r#"{"jsonrpc":"2.0","id":77,"result":{"roots":[]}}"#.into())),
        1 => Just(Step::Raw(r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo"},"extra":1}"#.into())),
        1 => Just(Step::Raw("{not json".into())),
    ]
}

/// The text of a request message with id `id`.
fn render(id: u64, request: &Value) -> String {
    let mut m = json!({"jsonrpc": "2.0", "id": id});
    for (k, v) in request.as_object().into_iter().flatten() {
        m[k] = v.clone();
    }
    m.to_string().replace("\"HUGE\"", "123456789012345678901234567890")
}

/// `text` with its first member written twice, the first time with
/// another value: parsers disagree on which one counts.
fn duplicate_first_key(text: &str) -> String {
    format!("{{\"jsonrpc\":\"1.0\",{}", &text[1..])
}

// ---------------------------------------------------------- the checks

/// Exact JSON text of a value inside a message the upstream received.
fn exact(bytes: &[u8], pointer: &str) -> Option<String> {
    sealgate::json::parse(bytes).ok()?.pointer(pointer).map(Json::to_text)
}

fn events(ledger: &Ledger) -> Vec<Value> {
    let head = ledger.head().seq;
    (0..=head)
        .filter_map(|seq| ledger.get(seq).ok().flatten())
        .map(|e| e.to_json()["event"].clone())
        .collect()
}

fn check(world: &World, clients: &[String]) -> Result<(), TestCaseError> {
    let events = events(&world.ledger);
    let received = world.upstream.log.lock().expect("lock").clone();
    let body = |e: &Value, k: &str| e["body"][k].clone();

    // Upstream session → the gateway session that opened it (by the
    // client's clientInfo, which is unique per case).
    let mut upstream_sessions: BTreeMap<String, Vec<&Received>> = BTreeMap::new();
    for r in &received {
        upstream_sessions.entry(r.session.clone()).or_default().push(r);
    }
    let mut used: HashMap<u64, ()> = HashMap::new();
    for (up, messages) in &upstream_sessions {
        let init: Value =
            serde_json::from_slice(&messages[0].bytes).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(
            &init["method"],
            "initialize",
            "upstream session {} began with {}",
            up,
            init
        );
        let client = init["params"]["clientInfo"]["name"].as_str().unwrap_or("").to_string();
        if client == "sealgate-gateway" {
            for r in messages {
                let m: Value = serde_json::from_slice(&r.bytes).unwrap_or(Value::Null);
                let method = m["method"].as_str().unwrap_or("");
                prop_assert!(
                    matches!(method, "initialize" | "notifications/initialized" | "tools/list"),
                    "the gateway's own session sent {}",
                    m
                );
            }
            continue;
        }
        // The gateway session: its initialize request names this client.
        let request = events
            .iter()
            .find(|e| {
                e["kind"] == "mcp.requested"
                    && body(e, "mcp.method.name") == "initialize"
                    && body(e, "arguments")["json"]
                        .as_str()
                        .is_some_and(|a| a.contains(&format!("\"name\":\"{client}\"")))
            })
            .ok_or_else(|| TestCaseError::fail(format!("no recorded initialize for client {client}")))?;
        let session = request["actor"]["session"].clone();
        let principal = request["actor"]["principal"].clone();
        prop_assert_eq!(&principal, "alice", "{}", request);
        let in_session: Vec<&Value> = events.iter().filter(|e| e["actor"]["session"] == session).collect();
        for e in &in_session {
            prop_assert_eq!(
                &e["actor"]["principal"],
                "alice",
                "an event of alice's session names {}",
                e
            );
        }
        let allowed = |request_seq: u64| {
            in_session.iter().find(|d| {
                d["kind"] == "policy.decision"
                    && d["correlation"]["answers"].as_u64() == Some(request_seq)
                    && matches!(body(d, "decision").as_str(), Some("ALLOW" | "ALLOW_WITH_CONSTRAINTS"))
            })
        };
        let admission_seq = request["seq"].as_u64().unwrap_or(u64::MAX);
        let admitted = allowed(admission_seq).map(|d| d["seq"].as_u64().unwrap_or(u64::MAX));
        let mut forwarded_ids = Vec::new();
        for r in messages {
            let m: Value = serde_json::from_slice(&r.bytes).map_err(|e| TestCaseError::fail(format!("{e}")))?;
            let method = m["method"].as_str().unwrap_or("").to_string();
            let durable = |seq: Option<u64>| seq.is_some_and(|s| s <= r.head);
            match method.as_str() {
                "initialize"
                | "notifications/initialized"
                | "ping"
                | "tools/list"
                | "prompts/list"
                | "resources/list"
                | "resources/templates/list" => {
                    prop_assert!(
                        durable(admitted),
                        "{} reached the upstream before the session's admission was durable",
                        m
                    );
                }
                "notifications/cancelled" => {
                    prop_assert!(durable(admitted));
                    prop_assert!(
                        forwarded_ids.contains(&m["params"]["requestId"]),
                        "a cancellation of no forwarded request: {}",
                        m
                    );
                }
                "tools/call"
                | "resources/read"
                | "prompts/get"
                | "completion/complete"
                | "logging/setLevel"
                | "resources/subscribe"
                | "resources/unsubscribe" => {
                    forwarded_ids.push(m["id"].clone());
                    let sent_args = exact(&r.bytes, "/params/arguments").unwrap_or_else(|| "{}".into());
                    let found = in_session.iter().find(|e| {
                        let seq = e["seq"].as_u64().unwrap_or(u64::MAX);
                        matches!(e["kind"].as_str(), Some("tool_call.requested" | "mcp.requested"))
                            && body(e, "mcp.method.name") == method.as_str()
                            && !used.contains_key(&seq)
                            && seq <= r.head
                            && match method.as_str() {
                                "tools/call" | "prompts/get" => {
                                    let kept = body(e, "arguments")["json"].as_str().unwrap_or("").to_string();
                                    let sent = sealgate::json::parse(sent_args.as_bytes()).expect("exact");
                                    let redacted = sealgate::gateway::safety::scan_json(
                                        &sent,
                                        &sealgate::gateway::safety::ScanPolicy {
                                            secrets: sealgate::gateway::safety::Action::Redact,
                                            pii: sealgate::gateway::safety::Action::Redact,
                                        },
                                    )
                                    .redacted
                                    .to_text();
                                    kept == sent_args || kept == redacted
                                }
                                _ => true,
                            }
                            && allowed(seq).is_some_and(|d| d["seq"].as_u64().is_some_and(|s| s <= r.head))
                    });
                    let Some(found) = found else {
                        return Err(TestCaseError::fail(format!(
                            "{m} reached the upstream (head {}) without a durable request and ALLOW decision naming it",
                            r.head
                        )));
                    };
                    used.insert(found["seq"].as_u64().unwrap_or(0), ());
                }
                _ => {
                    return Err(TestCaseError::fail(format!(
                        "the upstream received a message outside the catalogue: {m}"
                    )));
                }
            }
        }
    }
    // Output safety ran on everything the clients got.
    for text in clients {
        prop_assert!(!text.contains(SECRET), "a client received the planted secret: {}", text);
    }
    Ok(())
}

#[test]
fn nothing_reaches_an_upstream_unrecorded_and_nothing_comes_back_unscanned() {
    let w = world();
    let mut runner = TestRunner::new(RunnerConfig {
        cases: CASES,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/completeness.proptest-regressions",
        ))),
        ..RunnerConfig::default()
    });
    let case = std::sync::atomic::AtomicU64::new(0);
    let result = runner.run(&prop::collection::vec(arb_step(), 1..12), |steps| {
        let n = case.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let client = format!("case-{n}-{}", uuid_like());
        let mut clients = Vec::new();
        let params = json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": client, "version": "1"},
        });
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params});
        let auth = format!("Bearer {}", w.alice);
        let mut opened = support::wire::exchange(
            "POST",
            &w.url,
            &[
                ("Authorization", &auth),
                ("Accept", "application/json, text/event-stream"),
                ("Content-Type", "application/json"),
            ],
            init.to_string().as_bytes(),
        );
        let id = opened.header("mcp-session-id").unwrap_or_default().to_string();
        clients.push(opened.text(TIMEOUT));
        prop_assert!(!id.is_empty(), "initialize failed: {:?}", clients);
        let session = HttpSession {
            url: w.url.clone(),
            token: w.alice.clone(),
            id,
        };
        let mut ack = session.post_raw(&w.alice, br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        clients.push(ack.text(TIMEOUT));
        for (i, step) in steps.iter().enumerate() {
            let id = 1 + i as u64;
            let (token, text) = match step {
                Step::Request(r) => (&w.alice, render(id, r)),
                Step::Duplicated(r) => (&w.alice, duplicate_first_key(&render(id, r))),
                Step::Raw(text) => (&w.alice, text.clone()),
                Step::Foreign(r) => (&w.bob, render(id, r)),
            };
            let mut reply = session.post_raw(token, text.as_bytes());
            if matches!(step, Step::Foreign(_)) {
                prop_assert_eq!(reply.status, 403, "bob's message in alice's session: {}", text);
            }
            clients.push(reply.text(Duration::from_secs(15)));
            if std::env::var_os("COMPLETENESS_DEBUG").is_some() {
                eprintln!(">> {text}\n<< {}", clients.last().map(String::as_str).unwrap_or(""));
            }
        }
        check(&w, &clients)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The run exercised what it claims to: calls reached the upstream, and
    // refusals were recorded.
    let received = w.upstream.log.lock().expect("lock").clone();
    let calls = received
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.bytes).contains("\"method\":\"tools/call\""))
        .count();
    let events = events(&w.ledger);
    let refused = events.iter().filter(|e| e["kind"] == "mcp.refused").count();
    let sessions = events.iter().filter(|e| e["kind"] == "session.opened").count();
    assert!(calls >= 10, "only {calls} tools/call reached the upstream");
    assert!(refused >= 10, "only {refused} refusals were recorded");
    assert!(sessions as u32 >= CASES, "only {sessions} sessions were opened");
    eprintln!(
        "{sessions} sessions, {} messages upstream ({calls} tools/call), {refused} refusals",
        received.len()
    );
}

/// A short unique suffix, so each case's client is told apart even across
/// runs that replay kept cases.
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos:x}")
}
