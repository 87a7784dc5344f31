//! The gateway attacked by a caller holding a valid token and no rights, by
//! another principal, and by an upstream: each test is an attack that got
//! through before (issue 19), and what must happen now.
//!
//! A real `sealgate serve` (or `sealgate stdio`) in front of a scripted
//! stdio upstream (`tests/data/scripted_upstream.py`, raw JSON-RPC, which
//! logs every line it receives); the client speaks raw HTTP or raw stdio
//! lines (`support::wire`), so it can send what no SDK would and see every
//! byte that comes back.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::wire::{HttpSession, StdioSession, TIMEOUT, exchange, sse_messages};
use support::*;

/// An AWS access key id in AWS's documentation format: every detector
/// knows it, nothing else contains it.
const SECRET: &str = "AKIAIOSFODNN7EXAMPLE";

/// A `[servers.NAME]` table for the scripted upstream, approved at start,
/// logging what it receives to `{dir}/NAME.log`.
fn scripted(peers: &Peers, name: &str, environment: &[(&str, &str)], extra: &str) -> String {
    let script = repo().join("tests/data/scripted_upstream.py");
    let mut env = vec![format!("SCRIPTED_LOG = {}", q(&format!("{{dir}}/{name}.log")))];
    env.extend(environment.iter().map(|(k, v)| format!("{k} = {}", q(v))));
    format!(
        "{}environment = {{ {} }}\n{extra}",
        stdio_server(name, &peers.python, &[&script.to_string_lossy()]),
        env.join(", ")
    )
}

/// A site with static tokens, a policy and grants for alice (team
/// security) only; bob and carol hold tokens and no grant.
fn site(gateway: &str, servers: &str, policy: &str) -> Site {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("policy.yaml"), policy).expect("policy");
    Site::in_dir(
        dir,
        &format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\n{gateway}\n[auth]\ntokens_file = \"{{dir}}/tokens.toml\"\n\
             [governance]\npolicy_file = \"{{dir}}/policy.yaml\"\n\n\
             [[grants]]\nprincipal = \"alice\"\nserver = \"*\"\n\n{servers}"
        ),
    )
}

const ALLOW_ALL: &str = "version: v1\nrules:\n  - id: allow-all\n    decision: ALLOW\n";

/// Every call is held for an approver of team security.
const APPROVE_ALL: &str = "version: v1\nrules:\n  - id: hold\n    decision: REQUIRE_APPROVAL\n    \
    approval: { timeout_sec: 600, approvers: { team: security } }\n";

/// The lines the scripted upstream `name` received.
fn received(site: &Site, name: &str) -> Vec<String> {
    std::fs::read_to_string(site.path(&format!("{name}.log")))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<String>(l).expect("log line"))
        .collect()
}

fn refused_events(events: &[Value]) -> Vec<&Value> {
    events.iter().filter(|e| kind(e) == "mcp.refused").collect()
}

/// The calls an attacker tries to smuggle past the gateway: duplicate keys
/// that some parsers read one way and others another.
fn smuggled(id: u64) -> Vec<String> {
    vec![
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","name":"env","arguments":{{"pwned":1}}}}}}"#
        ),
        format!(
            r#"{{"jsonrpc":"2.0","id":{},"method":"tools/call","params":{{"name":"echo","arguments":{{"a":1}},"arguments":{{"pwned":1}}}}}}"#,
            id + 1
        ),
        format!(
            r#"{{"jsonrpc":"2.0","id":{},"method":"resources/read","params":{{"uri":"file:///ok","uri":"file:///pwned"}}}}"#,
            id + 2
        ),
        format!(
            r#"{{"jsonrpc":"2.0","id":{},"method":"ping","method":"tools/call","params":{{"name":"env","arguments":{{"pwned":1}}}}}}"#,
            id + 3
        ),
        // A batch, which MCP no longer has.
        format!(
            r#"[{{"jsonrpc":"2.0","id":{},"method":"tools/call","params":{{"name":"env","arguments":{{"pwned":1}}}}}}]"#,
            id + 4
        ),
        // A known method whose params are not that method's.
        format!(
            r#"{{"jsonrpc":"2.0","id":{},"method":"tools/call","params":{{"name":["env"],"pwned":1}}}}"#,
            id + 5
        ),
        // A method nobody allowed.
        format!(
            r#"{{"jsonrpc":"2.0","id":{},"method":"acme/run","params":{{"pwned":1}}}}"#,
            id + 6
        ),
        // A name that is a number too large for the typed check's reader:
        // it must not pass for a string there (and skip the pin gate, with
        // no tool to pin) while the upstream reads a number.
        format!(
            r#"{{"jsonrpc":"2.0","id":{},"method":"tools/call","params":{{"name":1e400,"arguments":{{"pwned":1}}}}}}"#,
            id + 7
        ),
        format!(
            r#"{{"jsonrpc":"2.0","id":{},"method":"resources/read","params":{{"uri":-1e999,"pwned":1}}}}"#,
            id + 8
        ),
    ]
}

fn assert_nothing_smuggled(site: &Site, name: &str) {
    let got = received(site, name);
    assert!(
        !got.iter().any(|l| l.contains("pwned")),
        "the upstream received a smuggled message: {got:#?}"
    );
}

#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn duplicate_keys_and_unknown_messages_never_reach_an_upstream_over_http() {
    let peers = peers();
    let servers = format!(
        "{}{}",
        scripted(&peers, "gated", &[], ""),
        scripted(&peers, "shadow", &[], "").replace("approve = true\n", "register = false\n")
    );
    let site = site("", &servers, APPROVE_ALL);
    let alice = create_token(&site, "alice", &["security"]);
    let gw = site.serve();

    // An unregistered server: no session, nothing started.
    let refused = HttpSession::try_open(&gw.url("shadow"), &alice, json!({}))
        .err()
        .expect("refused");
    assert_eq!(refused.0, 403, "{refused:?}");
    assert!(
        refused.1.contains("shadow MCP") && refused.1.contains("-32051"),
        "{refused:?}"
    );
    assert!(!site.path("shadow.log").exists(), "the shadow server was started");

    // A server whose calls all need approval: the smuggled calls are
    // refused at the door, each with a JSON-RPC error, none held, none run.
    let s = HttpSession::open(&gw.url("gated"), &alice, json!({}));
    for (i, message) in smuggled(10).iter().enumerate() {
        let mut reply = s.post_raw(&alice, message.as_bytes());
        let text = reply.text(TIMEOUT);
        let code = sse_messages(text.as_bytes())
            .first()
            .cloned()
            .or_else(|| serde_json::from_str::<Value>(&text).ok())
            .map(|m| m["error"]["code"].clone())
            .unwrap_or(Value::Null);
        assert!(
            matches!(code.as_i64(), Some(-32700 | -32600 | -32601 | -32602)),
            "message {i} was not refused ({}): {text}",
            reply.status
        );
    }
    gw.stop();
    assert_nothing_smuggled(&site, "gated");
    let events = site.events();
    assert!(
        !events.iter().any(|e| kind(e) == "approval.requested"),
        "a smuggled call was held for approval"
    );
    assert!(
        !events.iter().any(|e| kind(e) == "tool_call.requested"),
        "a smuggled call was admitted"
    );
    let refused = refused_events(&events);
    assert_eq!(
        refused.len(),
        smuggled(0).len(),
        "each refusal is recorded: {refused:#?}"
    );
    for e in refused {
        assert_eq!(e["actor"]["principal"], "alice", "{e}");
        assert_eq!(e["actor"]["session"], s.id.as_str(), "{e}");
        assert_eq!(body(e, "direction"), "client_to_server", "{e}");
    }
    site.verify();
}

#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn duplicate_keys_never_reach_an_upstream_over_stdio() {
    let peers = peers();
    let site = site("", &scripted(&peers, "gated", &[], ""), APPROVE_ALL);
    let mut cmd = site.sealgate();
    cmd.args(["stdio", "--server", "gated", "--principal", "alice"]);
    // The config's grants name alice: the stdio principal is alice.
    let mut s = StdioSession::start(cmd);
    let init = s.initialize(json!({}));
    assert!(init["result"]["protocolVersion"].is_string(), "{init}");
    for (i, message) in smuggled(10).iter().enumerate() {
        s.send_raw(message);
        // Each refusal is answered (by id where it could be read).
        let answer = s.until(TIMEOUT, |m| m.get("error").is_some());
        assert!(
            matches!(
                answer["error"]["code"].as_i64(),
                Some(-32700 | -32600 | -32601 | -32602)
            ),
            "message {i}: {answer}"
        );
    }
    // The session still works for what is well formed (and held, as the
    // policy says: cancel it by closing stdin).
    assert!(s.finish().success());
    assert_nothing_smuggled(&site, "gated");
    let events = site.events();
    assert!(!events.iter().any(|e| kind(e) == "tool_call.requested"));
    assert_eq!(refused_events(&events).len(), smuggled(0).len());
    site.verify();
}

/// bob holds alice's session id: he cannot cancel her calls, answer the
/// upstream's requests to her, or send anything else into her session.
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn another_principal_can_neither_cancel_nor_answer_in_a_session() {
    let peers = peers();
    let site = site("", &scripted(&peers, "up", &[], ""), ALLOW_ALL);
    let alice = create_token(&site, "alice", &["security"]);
    let bob = create_token(&site, "bob", &["security"]);
    let gw = site.serve();
    let s = HttpSession::open(&gw.url("up"), &alice, json!({"roots": {}}));

    // alice's call makes the upstream ask her client for its roots.
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "roots", "arguments": {}}});
    let mut stream = s.post_raw(&alice, call.to_string().as_bytes());
    assert_eq!(stream.status, 200);
    let events = stream.events_until(TIMEOUT, |m| m["method"] == "roots/list");
    let ask = events
        .iter()
        .find(|m| m["method"] == "roots/list")
        .unwrap_or_else(|| panic!("no roots/list on alice's stream: {events:?}"))
        .clone();

    // bob answers it in her name, and cancels her call: refused.
    let forged = json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"roots": [{"uri": "file:///bob-was-here"}]}});
    let mut reply = s.post_raw(&bob, forged.to_string().as_bytes());
    let status = reply.status;
    let text = reply.text(TIMEOUT);
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("-32054") && !text.contains("alice"), "{text}");
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}});
    assert_eq!(s.post_raw(&bob, cancel.to_string().as_bytes()).status, 403);
    let ping = json!({"jsonrpc": "2.0", "id": 8, "method": "ping"});
    assert_eq!(s.post_raw(&bob, ping.to_string().as_bytes()).status, 403);

    // A response to no request of the gateway is refused even from alice.
    let stray = json!({"jsonrpc": "2.0", "id": 999, "result": {"roots": []}});
    assert_eq!(s.post_raw(&alice, stray.to_string().as_bytes()).status, 400);

    // alice's own answer is the one the upstream gets, and her call ends.
    let mine = json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"roots": [{"uri": "file:///alice"}]}});
    assert_eq!(s.post_raw(&alice, mine.to_string().as_bytes()).status, 202);
    let events = stream.events_until(TIMEOUT, |m| m["id"] == 7 && m.get("result").is_some());
    let answer = events.iter().find(|m| m["id"] == 7).expect("the call's answer");
    let text = answer["result"]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("file:///alice") && !text.contains("bob"), "{answer}");
    gw.stop();

    let events = site.events();
    for e in events.iter().filter(|e| e["actor"]["session"] == s.id.as_str()) {
        assert_eq!(e["actor"]["principal"], "alice", "{e}");
    }
    assert!(
        received(&site, "up").iter().all(|l| !l.contains("bob-was-here")),
        "bob's answer reached the upstream"
    );
    site.verify();
}

/// The upstream's processes (direct children of the gateway).
fn children(pid: u32) -> Vec<u32> {
    let out = Command::new("pgrep")
        .args(["-P", &pid.to_string()])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn callers_without_a_grant_start_nothing_and_sessions_are_capped() {
    let peers = peers();
    let site = site(
        "max_sessions_per_principal = 2\n",
        &scripted(&peers, "up", &[], ""),
        ALLOW_ALL,
    );
    let alice = create_token(&site, "alice", &["security"]);
    let carol = create_token(&site, "carol", &[]);
    let gw = site.serve();
    let pid = gw.child.id();
    let before = received(&site, "up").len();

    for _ in 0..200 {
        let refused = HttpSession::try_open(&gw.url("up"), &carol, json!({}))
            .err()
            .expect("refused");
        assert_eq!(refused.0, 403, "{refused:?}");
        assert!(refused.1.contains("no grant"), "{refused:?}");
    }
    assert!(children(pid).is_empty(), "a grantless initialize started an upstream");
    assert_eq!(received(&site, "up").len(), before, "the upstream heard from carol");

    let _one = HttpSession::open(&gw.url("up"), &alice, json!({}));
    let _two = HttpSession::open(&gw.url("up"), &alice, json!({}));
    assert_eq!(children(pid).len(), 2);
    let third = HttpSession::try_open(&gw.url("up"), &alice, json!({}))
        .err()
        .expect("capped");
    assert_eq!(third.0, 429, "{third:?}");
    assert!(
        third.1.contains("-32057") && third.1.contains("max_sessions_per_principal"),
        "{third:?}"
    );
    gw.stop();

    let events = site.events();
    let denied = events
        .iter()
        .filter(|e| kind(e) == "policy.decision" && e["actor"]["principal"] == "carol")
        .count();
    assert_eq!(denied, 200, "every refused initialize is recorded");
    site.verify();
}

/// A connection from `source` to `to` (an `ip:port`).
fn connect_from(source: &str, to: &str) -> std::io::Result<std::net::TcpStream> {
    let bad = |e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    let to: std::net::SocketAddr = to.parse().map_err(bad)?;
    let source: std::net::IpAddr = source.parse().map_err(bad)?;
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&std::net::SocketAddr::new(source, 0).into())?;
    socket.connect(&to.into())?;
    Ok(socket.into())
}

/// A flood of connections from another address (127.0.0.2) that never
/// finish their headers, far faster than the cap of 32 allows, while alice
/// makes calls from a client that takes a second between connecting and
/// sending (a slow network): every one of her calls succeeds, and the
/// gateway closes the flood's connections, not hers.
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn a_slow_header_flood_does_not_lock_out_an_authenticated_caller() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    const CAP: u64 = 32;
    const CALLS: u64 = 4;
    const PAUSE: Duration = Duration::from_secs(1);
    let peers = peers();
    let site = site(
        &format!("max_connections = {CAP}\nheader_read_timeout_sec = 2\n"),
        &scripted(&peers, "up", &[], ""),
        ALLOW_ALL,
    );
    let alice = create_token(&site, "alice", &["security"]);
    let gw = site.serve();
    let authority = gw.base.trim_start_matches("http://").to_string();
    let s = HttpSession::open(&gw.url("up"), &alice, json!({}));

    let made = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let (made, stop) = (made.clone(), stop.clone());
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut open: std::collections::VecDeque<std::net::TcpStream> = std::collections::VecDeque::new();
            let mut closed_by_gateway = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let mut c = connect_from("127.0.0.2", &authority).expect("the flood connects from 127.0.0.2");
                let _ = c.write_all(b"POST /mcp/up HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
                open.push_back(c);
                made.fetch_add(1, Ordering::SeqCst);
                // The test's own descriptors are limited too.
                if open.len() > 800
                    && let Some(mut c) = open.pop_front()
                {
                    let _ = c.set_nonblocking(true);
                    let still_open =
                        matches!(c.read(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
                    if !still_open {
                        closed_by_gateway += 1;
                    }
                }
            }
            (closed_by_gateway, open)
        })
    };
    wait_until("the flood past the cap", Duration::from_secs(60), || {
        made.load(Ordering::SeqCst) > 4 * CAP
    });
    let before = made.load(Ordering::SeqCst);
    for i in 0..CALLS {
        let answer = s.request_after(
            PAUSE,
            100 + i,
            "tools/call",
            json!({"name": "echo", "arguments": {"i": i}}),
        );
        assert!(
            answer.get("result").is_some(),
            "call {i} failed under the flood: {answer}"
        );
    }
    let during = made.load(Ordering::SeqCst) - before;
    stop.store(true, Ordering::SeqCst);
    let (_, mut held) = flood.join().expect("flood");
    // The attack was real: while each call waited, the flood opened more
    // connections than the cap (which closes a waiting connection under
    // an oldest-first rule).
    assert!(
        during > CALLS * CAP,
        "the flood opened only {during} connections during {CALLS} calls: too slow to test anything"
    );
    // None of the flood's connections lingers: each was closed to make
    // room, or at the header timeout (2 s).
    wait_until(
        "the gateway closing every flood connection",
        Duration::from_secs(20),
        || {
            held.retain_mut(|c| {
                let _ = c.set_nonblocking(true);
                matches!(std::io::Read::read(c, &mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            });
            held.is_empty()
        },
    );
    let health = exchange("GET", &format!("{}/healthz", gw.base), &[], b"");
    assert_eq!(health.status, 200);
    gw.stop();
}

/// mallory, holding a valid token and no rights, keeps every connection
/// busy from 127.0.0.2 (requests whose body never comes): alice, from
/// elsewhere, still gets through, each of her connections taking the place
/// of one of mallory's, and mallory cannot take alice's.
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn a_token_holder_keeping_every_connection_busy_does_not_lock_out_others() {
    use std::io::{Read, Write};
    const CAP: usize = 16;
    let peers = peers();
    let site = site(
        &format!("max_connections = {CAP}\nheader_read_timeout_sec = 2\n"),
        &scripted(&peers, "up", &[], ""),
        ALLOW_ALL,
    );
    let alice = create_token(&site, "alice", &["security"]);
    let mallory = create_token(&site, "mallory", &[]);
    let gw = site.serve();
    let authority = gw.base.trim_start_matches("http://").to_string();
    let hog = || {
        let mut c = connect_from("127.0.0.2", &authority).expect("connect from 127.0.0.2");
        let head = format!(
            "POST /mcp/up HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {mallory}\r\n\
             Accept: application/json, text/event-stream\r\nContent-Type: application/json\r\n\
             Content-Length: 100\r\n\r\n{{\"jsonrpc\":"
        );
        c.write_all(head.as_bytes()).expect("hog writes");
        c
    };
    let closed = |c: &mut std::net::TcpStream, wait: Duration| {
        c.set_read_timeout(Some(wait)).expect("timeout");
        match c.read(&mut [0u8; 1]) {
            Ok(0) => true,
            Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
            Ok(_) => false,
        }
    };
    let mut hogs: Vec<std::net::TcpStream> = (0..CAP).map(|_| hog()).collect();
    // Every place is taken by a busy request once one more from mallory is
    // turned away; a probe that got in took the place of a hog that was
    // not yet busy, so a new hog replaces it.
    wait_until(
        "every connection busy with mallory's requests",
        Duration::from_secs(60),
        || {
            let mut probe = connect_from("127.0.0.2", &authority).expect("probe");
            let refused = closed(&mut probe, Duration::from_millis(500));
            if !refused {
                drop(probe);
                hogs.push(hog());
            }
            refused
        },
    );
    let cut = |hogs: &mut [std::net::TcpStream]| {
        hogs.iter_mut()
            .map(|c| usize::from(closed(c, Duration::from_millis(1))))
            .sum::<usize>()
    };
    let before = cut(&mut hogs);
    let s = HttpSession::open(&gw.url("up"), &alice, json!({}));
    for i in 0..4 {
        let answer = s.request(100 + i, "tools/call", json!({"name": "echo", "arguments": {"i": i}}));
        assert!(answer.get("result").is_some(), "call {i} failed: {answer}");
    }
    // Each of alice's connections that came at the cap took the place of
    // one of mallory's.
    wait_until("one of mallory's connections closed", Duration::from_secs(30), || {
        cut(&mut hogs) > before
    });
    gw.stop();
}

/// Secrets in the gateway's environment and in an upstream's arguments
/// reach neither the upstream, nor callers, nor the ledger; what the config
/// hands on by reference does reach the upstream.
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn secrets_of_the_gateway_and_of_upstream_addresses_stay_put() {
    let peers = peers();
    let script = repo().join("tests/data/scripted_upstream.py");
    let servers = format!(
        "{}environment = {{ SCRIPTED_LOG = {}, HANDED_ON = {{ env = \"TEST_HANDED_ON\" }} }}\n\
         {}",
        stdio_server(
            "up",
            &peers.python,
            &[
                &script.to_string_lossy(),
                "--api-key",
                "sk-arg-secret-1234",
                "--verbose"
            ]
        ),
        q("{dir}/up.log"),
        // Approved (it starts at first), then it fails to start: its start
        // error must not carry the key in its arguments.
        stdio_server(
            "broken",
            "sh",
            &[
                "-c",
                &format!(
                    "test -e {{dir}}/broken.flag && exit 3; exec {} {}",
                    peers.python,
                    script.to_string_lossy()
                ),
                "--api-key",
                "sk-broken-1234",
            ]
        ),
    );
    let site = site("", &servers, ALLOW_ALL);
    let alice = create_token(&site, "alice", &["security"]);
    let gw = site.serve_with_env(&[
        ("SEALGATE_TOKEN", "sg_gateway_own_secret_token"),
        ("AWS_SECRET_ACCESS_KEY", "gateway-cloud-credential"),
        ("TEST_HANDED_ON", "handed-on-value"),
    ]);
    let s = HttpSession::open(&gw.url("up"), &alice, json!({}));
    let answer = s.request(1, "tools/call", json!({"name": "env", "arguments": {}}));
    let env = answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        env.contains("handed-on-value"),
        "the configured environment is missing: {env}"
    );
    for secret in ["sg_gateway_own_secret_token", "gateway-cloud-credential"] {
        assert!(!env.contains(secret), "the upstream saw {secret}: {env}");
    }
    // A start error names the server, not its credentials.
    std::fs::write(site.path("broken.flag"), "").expect("flag");
    let failed = HttpSession::try_open(&gw.url("broken"), &alice, json!({}));
    let (_, text) = failed.err().expect("the broken server cannot start");
    assert!(text.contains("broken") && !text.contains("sk-broken-1234"), "{text}");
    gw.stop();

    let log = site.sealgate().args(["log", "-o", "json"]).output().expect("log");
    let log = String::from_utf8_lossy(&log.stdout);
    for secret in [
        "sk-arg-secret-1234",
        "sk-broken-1234",
        "sg_gateway_own_secret_token",
        "gateway-cloud-credential",
    ] {
        assert!(!log.contains(secret), "the ledger holds {secret}");
    }
    assert!(
        log.contains("--api-key ***"),
        "the address is recorded with the key masked"
    );
    site.verify();
}

/// Everything the upstream says to the client passes output safety:
/// initialize instructions, tool descriptions, progress and log
/// notifications, completion values.
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn output_safety_covers_every_message_towards_the_client() {
    let peers = peers();
    let env = [
        ("SCRIPTED_SECRET", SECRET),
        ("SCRIPTED_INSTRUCTIONS", "call with key AKIAIOSFODNN7EXAMPLE"),
        ("SCRIPTED_DESCRIPTION", "echoes; admin key AKIAIOSFODNN7EXAMPLE"),
    ];
    let site = site("", &scripted(&peers, "up", &env, ""), ALLOW_ALL);
    let alice = create_token(&site, "alice", &["security"]);
    let gw = site.serve();

    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": support::wire::initialize_params(json!({}))});
    let auth = format!("Bearer {alice}");
    let mut opened = exchange(
        "POST",
        &gw.url("up"),
        &[
            ("Authorization", &auth),
            ("Accept", "application/json, text/event-stream"),
            ("Content-Type", "application/json"),
        ],
        init.to_string().as_bytes(),
    );
    let session = opened.header("mcp-session-id").expect("session").to_string();
    let mut seen = opened.text(TIMEOUT);
    let s = HttpSession {
        url: gw.url("up"),
        token: alice.clone(),
        id: session,
    };
    assert_eq!(
        s.post_raw(&alice, br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            .status,
        202
    );
    let listed = s.request(1, "tools/list", json!({}));
    seen.push_str(&listed.to_string());
    let chatter = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "chatter", "arguments": {}, "_meta": {"progressToken": "p-1"}}});
    let mut stream = s.post_raw(&alice, chatter.to_string().as_bytes());
    let events = stream.events_until(TIMEOUT, |m| m["id"] == 2);
    // The progress token is the client's correlation id, not a secret.
    assert!(
        events
            .iter()
            .any(|m| m["method"] == "notifications/progress" && m["params"]["progressToken"] == "p-1"),
        "{events:?}"
    );
    assert!(
        events.iter().any(|m| m["method"] == "notifications/message"),
        "{events:?}"
    );
    seen.push_str(&String::from_utf8_lossy(&stream.body));
    let completed = s.request(
        3,
        "completion/complete",
        json!({"ref": {"type": "ref/prompt", "name": "any"}, "argument": {"name": "a", "value": ""}}),
    );
    assert!(completed.get("result").is_some(), "{completed}");
    seen.push_str(&completed.to_string());
    // The upstream's error holds the secret.
    let failed = s.request(4, "tools/call", json!({"name": "fail", "arguments": {}}));
    assert_eq!(failed["error"]["code"], -32000, "{failed}");
    seen.push_str(&failed.to_string());
    // So does its answer to a ping.
    let pong = s.request(5, "ping", json!({}));
    assert!(pong.get("result").is_some(), "{pong}");
    seen.push_str(&pong.to_string());
    gw.stop();

    assert!(!seen.contains(SECRET), "the secret reached the client: {seen}");
    assert!(
        seen.matches("[REDACTED:aws_access_key_id]").count() >= 7,
        "expected redactions in instructions, description, progress, log, completion, error and pong: {seen}"
    );
    let log = site.sealgate().args(["log", "-o", "json"]).output().expect("log");
    assert!(
        !String::from_utf8_lossy(&log.stdout).contains(SECRET),
        "the ledger holds the secret"
    );
    site.verify();
}

/// The gateway's own error messages quote what it refused: a type error
/// names the value, a stray member its name, a refused `initialize` the
/// upstream's message. An upstream that puts a secret there must not get
/// it to the client (or into the ledger) that way.
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn upstream_words_quoted_in_gateway_errors_pass_output_safety() {
    let peers = peers();
    let servers = format!(
        "{}{}",
        scripted(&peers, "up", &[("SCRIPTED_SECRET", SECRET)], ""),
        scripted(
            &peers,
            "refusing",
            &[("SCRIPTED_INIT_ERROR", &format!("no session for key {SECRET}"))],
            ""
        )
    );
    let site = site("", &servers, ALLOW_ALL);
    let alice = create_token(&site, "alice", &["security"]);
    let gw = site.serve();
    let mut seen = String::new();

    let s = HttpSession::open(&gw.url("up"), &alice, json!({}));
    let malformed = s.request(1, "tools/call", json!({"name": "malformed", "arguments": {}}));
    assert_eq!(malformed["error"]["code"], -32603, "{malformed}");
    seen.push_str(&malformed.to_string());
    let stray = s.request(2, "tools/call", json!({"name": "stray_member", "arguments": {}}));
    assert_eq!(stray["error"]["code"], -32603, "{stray}");
    seen.push_str(&stray.to_string());

    // An upstream that refuses a client's initialize with the secret in
    // its message.
    let refused = HttpSession::try_open(&gw.url("refusing"), &alice, json!({}))
        .err()
        .expect("the upstream refuses initialize");
    assert_eq!(refused.0, 502, "{refused:?}");
    assert!(refused.1.contains("-32052"), "{refused:?}");
    seen.push_str(&refused.1);
    gw.stop();

    assert!(!seen.contains(SECRET), "the secret reached the client: {seen}");
    assert!(
        seen.matches("[REDACTED:aws_access_key_id]").count() >= 3,
        "expected the quoted secrets redacted: {seen}"
    );
    let log = site.sealgate().args(["log", "-o", "json"]).output().expect("log");
    assert!(
        !String::from_utf8_lossy(&log.stdout).contains(SECRET),
        "the ledger holds the secret"
    );
    site.verify();
}

/// The gateway's own tool listings (drift checks) start an upstream
/// session each, a child process for a stdio server: an upstream that
/// floods `tools/list_changed`, or a caller that floods `tools/list` where
/// the listing differs from the pins, must not queue one per message.
/// Checks asked for while one runs are served by the next.
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn drift_checks_asked_for_meanwhile_are_served_by_one_listing() {
    let peers = peers();
    let site = site("", &scripted(&peers, "up", &[], ""), ALLOW_ALL);
    let alice = create_token(&site, "alice", &["security"]);
    let gw = site.serve();
    let own_sessions = |site: &Site| {
        received(site, "up")
            .iter()
            .filter(|l| l.contains("\"initialize\"") && l.contains("sealgate-gateway"))
            .count()
    };
    let at_start = own_sessions(&site);

    let s = HttpSession::open(&gw.url("up"), &alice, json!({}));
    let flooded = s.request(1, "tools/call", json!({"name": "flood_list_changed", "arguments": {}}));
    assert_eq!(flooded["result"]["content"][0]["text"], "flooded", "{flooded}");
    // Time for queued checks to run (each is a python start and a listing).
    std::thread::sleep(Duration::from_secs(5));
    let checks = own_sessions(&site) - at_start;
    gw.stop();
    assert!(
        (1..=6).contains(&checks),
        "{checks} drift-check sessions were started for 100 notifications"
    );
    site.verify();
}

/// dave's rights on the server come from his team. He opens a session,
/// then leaves the team (his entry in the tokens file loses it, or his
/// next JWT lacks the group): his open session must not keep deciding his
/// calls with the team he no longer has, nor record him with it.
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn a_session_does_not_keep_teams_its_owner_lost() {
    let peers = peers();
    let servers = format!(
        "{}\n[[grants]]\nteam = \"ops\"\nserver = \"up\"\n",
        scripted(&peers, "up", &[], "")
    );
    let site = site("", &servers, ALLOW_ALL);
    let dave = create_token(&site, "dave", &["ops"]);
    let gw = site.serve();
    let s = HttpSession::open(&gw.url("up"), &dave, json!({}));
    let called = s.request(1, "tools/call", json!({"name": "echo", "arguments": {"n": 1}}));
    assert_eq!(called["result"]["isError"], Value::Null, "{called}");

    // dave leaves team ops: the tokens file is rewritten (renamed into
    // place) with the same token and no team.
    let path = site.path("tokens.toml");
    let file = std::fs::read_to_string(&path).expect("tokens file");
    assert!(file.contains("\"ops\""), "{file}");
    let next = site.path("tokens.toml.next");
    std::fs::write(&next, file.replace("\"ops\"", "")).expect("write");
    std::fs::rename(&next, &path).expect("rename");
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": support::wire::initialize_params(json!({}))});
    let auth = format!("Bearer {dave}");
    wait_until("the tokens file is reloaded", TIMEOUT, || {
        let headers = [
            ("Authorization", auth.as_str()),
            ("Accept", "application/json, text/event-stream"),
            ("Content-Type", "application/json"),
        ];
        exchange("POST", &gw.url("up"), &headers, init.to_string().as_bytes()).status == 403
    });

    // His old session: the call is not allowed on the team's grant.
    let message = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"after": "leaving"}}});
    let mut reply = s.post_raw(&dave, message.to_string().as_bytes());
    let status = reply.status;
    let text = reply.text(TIMEOUT);
    gw.stop();
    let echoed = received(&site, "up").iter().any(|l| l.contains("leaving"));
    assert!(!echoed, "dave's call ran on a team he left ({status}): {text}");
    let events = site.events();
    for e in events.iter().filter(|e| kind(e) == "policy.decision") {
        if e["actor"]["session"] == s.id.as_str() && e["correlation"]["request_id"] == 2 {
            assert_ne!(body(e, "decision"), "ALLOW", "{e}");
        }
    }
    site.verify();
}

/// After approval the upstream lists `echo` twice: a new definition (a
/// rug pull: instructions for the model) first, the pinned one after it.
/// The new definition must not reach the client as a pinned tool, and
/// the pinned one must not vouch for it.
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn a_tool_listed_twice_cannot_hide_a_changed_definition_behind_its_pin() {
    let peers = peers();
    let site = site(
        "",
        &scripted(&peers, "up", &[("SCRIPTED_DUP_FILE", "{dir}/rug-pull")], ""),
        ALLOW_ALL,
    );
    let alice = create_token(&site, "alice", &["security"]);
    let gw = site.serve();
    std::fs::write(site.path("rug-pull"), "").expect("rug pull");
    let s = HttpSession::open(&gw.url("up"), &alice, json!({}));
    let listed = s.request(1, "tools/list", json!({}));
    let text = listed.to_string();
    assert!(
        !text.contains("IGNORE PREVIOUS INSTRUCTIONS"),
        "the changed definition reached the client: {text}"
    );
    // A listing that names a tool twice does not fit tools/list.
    assert_eq!(listed["error"]["code"], -32603, "{text}");
    gw.stop();
    site.verify();
}

/// A client without sampling does not see a tool offered only to sampling
/// clients: that is no drift, and changes nothing for anyone else.
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn a_narrow_client_listing_records_no_drift() {
    let peers = peers();
    let site = site("", &scripted(&peers, "up", &[], ""), ALLOW_ALL);
    let alice = create_token(&site, "alice", &["security"]);
    let gw = site.serve();
    let narrow = HttpSession::open(&gw.url("up"), &alice, json!({}));
    let listed = narrow.request(1, "tools/list", json!({}));
    let names = listed["result"]["tools"].to_string();
    assert!(!names.contains("needs_sampling"), "{names}");
    // Give a background drift check time to (wrongly) record something.
    std::thread::sleep(Duration::from_secs(3));
    let wide = HttpSession::open(&gw.url("up"), &alice, json!({"sampling": {}}));
    let listed = wide.request(1, "tools/list", json!({}));
    assert!(
        listed["result"]["tools"].to_string().contains("needs_sampling"),
        "{listed}"
    );
    let called = wide.request(2, "tools/call", json!({"name": "needs_sampling", "arguments": {}}));
    assert_eq!(called["result"]["content"][0]["text"], "sampled", "{called}");
    gw.stop();
    let events = site.events();
    assert!(
        !events.iter().any(|e| kind(e) == "tools.drifted"),
        "a client's narrower listing was recorded as drift"
    );
    site.verify();
}

/// A pinned tool the upstream does not list in this session (here: one
/// it offers only to clients with sampling) has no definition in the
/// session for the pin to be checked against: calling it is refused at the
/// pin gate, as GATEWAY.md says ("must still be listed, in this session").
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn a_pinned_tool_not_listed_in_the_session_is_refused() {
    let peers = peers();
    let site = site("", &scripted(&peers, "up", &[], ""), ALLOW_ALL);
    let alice = create_token(&site, "alice", &["security"]);
    let gw = site.serve();
    let narrow = HttpSession::open(&gw.url("up"), &alice, json!({}));
    let called = narrow.request(1, "tools/call", json!({"name": "needs_sampling", "arguments": {}}));
    gw.stop();
    assert_eq!(called["result"]["isError"], true, "{called}");
    assert_eq!(
        called["result"]["_meta"]["io.sealgate/decision"]["gate"], "pin",
        "{called}"
    );
    let ran = received(&site, "up")
        .iter()
        .any(|l| l.contains("tools/call") && l.contains("needs_sampling"));
    assert!(!ran, "the unlisted tool was called upstream");
    site.verify();
}

/// A rule (or grant) that lets a caller read `file:///home/*/notes/*`
/// matches the URI as text; a server resolves dot segments in its path
/// (`..`, also percent-encoded, or behind an encoded slash) to another
/// file. Such URIs are refused before anything is decided or forwarded.
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn resource_uris_with_dot_segments_cannot_escape_a_glob() {
    let peers = peers();
    let policy = "version: v1\nrules:\n  - id: read-notes\n    match:\n      method: resources/read\n      \
                  tool: \"file:///home/*/notes/*\"\n    decision: ALLOW\n";
    let site = site("", &scripted(&peers, "up", &[], ""), policy);
    let alice = create_token(&site, "alice", &["security"]);
    let gw = site.serve();
    let s = HttpSession::open(&gw.url("up"), &alice, json!({}));
    let escapes = [
        "file:///home/alice/notes/../../../etc/shadow",
        "file:///home/alice/notes/%2e%2e/%2E%2E/%2e%2e/etc/shadow",
        "file:///home/alice/notes/..%2f..%2f..%2fetc%2fshadow",
        "file:///home/alice/notes/..\\..\\..\\etc\\shadow",
        "file:///home/alice/notes/./../../../etc/shadow",
    ];
    for (i, uri) in escapes.iter().enumerate() {
        let read = s.request(i as u64 + 1, "resources/read", json!({"uri": uri}));
        assert_eq!(read["error"]["code"], -32602, "{uri}: {read}");
    }
    // A URI inside the glob is still decided by the rule and forwarded.
    let fine = s.request(
        10,
        "resources/read",
        json!({"uri": "file:///home/alice/notes/todo.txt"}),
    );
    assert!(
        fine.get("error").is_some(),
        "the scripted upstream reads no resource: {fine}"
    );
    gw.stop();
    let got = received(&site, "up");
    assert!(
        !got.iter().any(|l| l.contains("shadow")),
        "an escaping URI reached the upstream: {got:#?}"
    );
    assert!(got.iter().any(|l| l.contains("todo.txt")), "{got:#?}");
    site.verify();
}

/// The gateway lists an upstream's tools itself (a call to a tool its
/// session has not listed, `tools/list_changed`, drift checks) and follows
/// every page. An upstream that always names a next page must not make it
/// gather pages without end: each page fits `max_upstream_message_bytes`,
/// and so must all of them together.
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn the_gateways_own_listings_gather_no_more_than_one_message_holds() {
    let peers = peers();
    let site = site(
        "max_upstream_message_bytes = 262144\n",
        &scripted(&peers, "up", &[("SCRIPTED_ENDLESS_FILE", "{dir}/endless")], ""),
        ALLOW_ALL,
    );
    let alice = create_token(&site, "alice", &["security"]);
    let gw = site.serve();
    std::fs::write(site.path("endless"), "").expect("endless pages");
    let s = HttpSession::open(&gw.url("up"), &alice, json!({}));
    // echo was not listed in this session: the gateway lists first.
    let called = s.request(1, "tools/call", json!({"name": "echo", "arguments": {}}));
    assert!(
        called.get("result").is_some() || called.get("error").is_some(),
        "{called}"
    );
    gw.stop();
    let pages = received(&site, "up")
        .iter()
        .filter(|l| l.contains("\"tools/list\""))
        .count();
    // 64 KiB a page: 4 fit in 256 KiB; the page that goes over ends it.
    assert!(pages <= 8, "the gateway asked for {pages} pages of tools");
    site.verify();
}

/// Each request an upstream sends its client is recorded (request and
/// decision, durable) and then waits for the client. An upstream that
/// sends them by the hundred must not make the gateway hold and record
/// them all: a session has a bounded number in flight, the rest are
/// refused (and those refusals are recorded at most 100 times a session).
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn an_upstream_cannot_flood_its_client_with_requests() {
    let peers = peers();
    let site = site("", &scripted(&peers, "up", &[], ""), ALLOW_ALL);
    let alice = create_token(&site, "alice", &["security"]);
    let gw = site.serve();
    let s = HttpSession::open(&gw.url("up"), &alice, json!({"sampling": {}}));
    let called = s.request(1, "tools/call", json!({"name": "ask_many", "arguments": {}}));
    assert_eq!(called["result"]["content"][0]["text"], "asked", "{called}");
    std::thread::sleep(Duration::from_secs(3));
    gw.stop();
    let events = site.events();
    let asked = events
        .iter()
        .filter(|e| kind(e) == "mcp.requested" && body(e, "direction") == "server_to_client")
        .count();
    assert!(
        asked <= 32,
        "{asked} of the upstream's 200 requests were admitted at once"
    );
    // The upstream heard back at once about those refused.
    let refused = received(&site, "up")
        .iter()
        .filter(|l| l.contains("many-") && l.contains("error"))
        .count();
    assert!(refused >= 200 - 32, "{refused} refusals answered");
    site.verify();
}

/// A client's requests in a session are answered on their own streams,
/// and a request keeps running when its client hangs up. A client must
/// not be able to pile up requests in flight without bound (each holds its
/// params, up to `max_body_bytes`, and a held call its approval): past a
/// bounded number, a session refuses more with `-32057`.
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn a_client_cannot_pile_up_requests_in_flight() {
    let peers = peers();
    let site = site("", &scripted(&peers, "up", &[], ""), APPROVE_ALL);
    let alice = create_token(&site, "alice", &["security"]);
    let gw = site.serve();
    let s = HttpSession::open(&gw.url("up"), &alice, json!({}));
    let mut streams = Vec::new();
    for id in 0..100 {
        let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"n": id}}});
        let stream = s.post_raw(&alice, call.to_string().as_bytes());
        assert_eq!(stream.status, 200);
        streams.push(stream);
    }
    // The refused ones are answered at once.
    let mut limited = 0;
    for stream in &mut streams {
        let events = stream.events_until(Duration::from_millis(200), |m| m.get("error").is_some());
        if events.iter().any(|m| m["error"]["code"] == -32057) {
            limited += 1;
        }
    }
    gw.stop();
    let held = site.events().iter().filter(|e| kind(e) == "approval.requested").count();
    assert!(held <= 64, "{held} calls held in one session at once");
    assert_eq!(held + limited, 100, "{held} held, {limited} refused");
    drop(streams);
    site.verify();
}

/// A `tools/call` with `task` (2025-11-25, task-augmented execution) is
/// answered at once with a task by servers that support it, and runs in
/// the background: the gateway, which relays no tasks, would see an answer
/// that does not fit, record the call as failed while it runs, and enforce
/// none of its constraints. Such a request is refused before anything is
/// decided or forwarded.
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn task_augmented_requests_are_refused() {
    let peers = peers();
    let site = site("", &scripted(&peers, "up", &[], ""), ALLOW_ALL);
    let alice = create_token(&site, "alice", &["security"]);
    let gw = site.serve();
    let s = HttpSession::open(&gw.url("up"), &alice, json!({}));
    let called = s.request(
        1,
        "tools/call",
        json!({"name": "echo", "arguments": {"x": "as-a-task"}, "task": {"ttl": 60000}}),
    );
    gw.stop();
    assert_eq!(called["error"]["code"], -32602, "{called}");
    let got = received(&site, "up");
    assert!(!got.iter().any(|l| l.contains("as-a-task")), "{got:#?}");
    site.verify();
}

/// A 21-digit integer is forwarded, recorded and answered as written.
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn integers_of_any_size_are_kept_exactly() {
    let peers = peers();
    let site = site("", &scripted(&peers, "up", &[], ""), ALLOW_ALL);
    let alice = create_token(&site, "alice", &["security"]);
    let gw = site.serve();
    let s = HttpSession::open(&gw.url("up"), &alice, json!({}));
    let raw = r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"n":123456789012345678901,"f":1.50,"e":-0.0e-7}}}"#;
    let mut reply = s.post_raw(&alice, raw.as_bytes());
    let text = reply.text(TIMEOUT);
    let exact = r#"{"n":123456789012345678901,"f":1.50,"e":-0.0e-7}"#;
    gw.stop();
    // The upstream (Python: exact ints; floats re-printed) got the digits.
    let got = received(&site, "up");
    assert!(
        got.iter()
            .any(|l| l.contains(r#""arguments":{"n":123456789012345678901,"f":1.50,"e":-0.0e-7}"#)),
        "{got:#?}"
    );
    assert!(text.contains("123456789012345678901"), "{text}");
    let events = site.events();
    let request = events
        .iter()
        .find(|e| kind(e) == "tool_call.requested")
        .expect("the call is recorded");
    assert_eq!(request["body"]["arguments"]["json"], exact, "{request}");
    site.verify();
}

/// Without a token, a configured and an unknown server look the same
/// (401); refused authentications and unknown servers are recorded, a
/// bounded number of events with counts.
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn authentication_comes_before_routing_and_refusals_are_recorded_in_aggregate() {
    let peers = peers();
    let site = site(
        "access_log_interval_sec = 1\n",
        &scripted(&peers, "up", &[], ""),
        ALLOW_ALL,
    );
    let alice = create_token(&site, "alice", &["security"]);
    let gw = site.serve();
    let post = |url: &str, auth: Option<&str>| {
        let mut headers = vec![
            ("Accept", "application/json, text/event-stream"),
            ("Content-Type", "application/json"),
        ];
        if let Some(a) = auth {
            headers.push(("Authorization", a));
        }
        let mut ex = exchange("POST", url, &headers, br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
        let body = ex.text(TIMEOUT);
        (ex.status, ex.header("www-authenticate").map(str::to_string), body)
    };
    let known = post(&gw.url("up"), None);
    let unknown = post(&gw.url("no-such-server"), None);
    assert_eq!((known.0, unknown.0), (401, 401));
    assert_eq!(known.2, unknown.2, "the bodies tell the servers apart");
    let good = format!("Bearer {alice}");
    assert_eq!(post(&gw.url("no-such-server"), Some(&good)).0, 404);
    for i in 0..300 {
        assert_eq!(post(&gw.url("up"), Some(&format!("Bearer sg_bad_{}", i % 3))).0, 401);
    }
    for _ in 0..50 {
        assert_eq!(post(&gw.url("nothing-here"), Some(&good)).0, 404);
    }
    std::thread::sleep(Duration::from_secs(3));
    gw.stop();
    let events = site.events();
    let access: Vec<&Value> = events.iter().filter(|e| kind(e) == "access.refused").collect();
    let count = |reason: &str| -> u64 {
        access
            .iter()
            .filter(|e| body(e, "reason") == reason)
            .map(|e| body(e, "count").as_u64().unwrap_or(0))
            .sum()
    };
    assert_eq!(count("invalid_token"), 300, "{access:#?}");
    assert_eq!(count("unknown_server"), 51, "{access:#?}");
    assert_eq!(count("missing_token"), 2, "{access:#?}");
    assert!(access.len() <= 20, "{} events for 353 refusals", access.len());
    assert!(
        access.iter().all(|e| !e.to_string().contains("sg_bad_")),
        "a presented token is in the ledger"
    );
    site.verify();
}

/// Upstream children die with the gateway: on SIGKILL (parent-death
/// signal) and on SIGTERM (graceful shutdown).
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn upstream_children_die_with_the_gateway() {
    let peers = peers();
    let site = site("", &scripted(&peers, "up", &[], ""), ALLOW_ALL);
    let alice = create_token(&site, "alice", &["security"]);
    for signal in ["KILL", "TERM"] {
        let gw = site.serve();
        let pid = gw.child.id();
        let _a = HttpSession::open(&gw.url("up"), &alice, json!({}));
        let _b = HttpSession::open(&gw.url("up"), &alice, json!({}));
        let kids = children(pid);
        assert_eq!(kids.len(), 2, "{kids:?}");
        let signal_number = if signal == "KILL" {
            rustix::process::Signal::KILL
        } else {
            rustix::process::Signal::TERM
        };
        let target = rustix::process::Pid::from_raw(pid as i32).expect("pid");
        rustix::process::kill_process(target, signal_number).expect("kill");
        let mut gw = gw;
        let exited = gw.child.wait().expect("wait");
        if signal == "TERM" {
            assert!(exited.success(), "SIGTERM is a graceful shutdown: {exited:?}");
        }
        wait_until(
            &format!("children gone after SIG{signal}"),
            Duration::from_secs(10),
            || kids.iter().all(|k| !alive(*k)),
        );
    }
    site.verify();
}

/// The stored argument digest is of what the ledger keeps: it cannot be
/// used to test guesses at a redacted value.
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn argument_digests_do_not_reveal_redacted_values() {
    let peers = peers();
    let policy =
        "version: v1\noutput: { secrets: redact, pii: redact }\nrules:\n  - id: allow-all\n    decision: ALLOW\n";
    let site = site("", &scripted(&peers, "up", &[], ""), policy);
    let alice = create_token(&site, "alice", &["security"]);
    let gw = site.serve();
    let s = HttpSession::open(&gw.url("up"), &alice, json!({}));
    let raw = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"card":"4111 1111 1111 1111"}}}"#;
    let _ = s.post_raw(&alice, raw.as_bytes()).text(TIMEOUT);
    gw.stop();
    let events = site.events();
    let request = events
        .iter()
        .find(|e| kind(e) == "tool_call.requested")
        .expect("recorded");
    let args = &request["body"]["arguments"];
    let stored = args["json"].as_str().expect("json");
    assert!(!stored.contains("4111"), "{stored}");
    assert_eq!(args["redacted"], true);
    let of = |text: &str| format!("blake3:{}", blake3::hash(text.as_bytes()).to_hex());
    assert_eq!(args["digest"], of(stored).as_str(), "the digest is of the stored text");
    assert_ne!(args["digest"], of(r#"{"card":"4111 1111 1111 1111"}"#).as_str());
    site.verify();
}

/// What the upstream sends that is not one recognised message is refused
/// and recorded, in that direction too: a duplicate-key answer, a custom
/// request, a duplicate-key server request.
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn an_upstream_cannot_smuggle_messages_to_the_client() {
    let peers = peers();
    let site = site("", &scripted(&peers, "up", &[], ""), ALLOW_ALL);
    let alice = create_token(&site, "alice", &["security"]);
    let gw = site.serve();
    let s = HttpSession::open(&gw.url("up"), &alice, json!({"roots": {}, "sampling": {}}));
    let forged = s.request(1, "tools/call", json!({"name": "dup_answer", "arguments": {}}));
    assert_eq!(forged["error"]["code"], -32603, "{forged}");
    assert!(!forged.to_string().contains("forged"), "{forged}");
    let call =
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "ask_client", "arguments": {}}});
    let mut stream = s.post_raw(&alice, call.to_string().as_bytes());
    let events = stream.events_until(TIMEOUT, |m| m["id"] == 2 && m.get("method").is_none());
    assert!(
        events.iter().all(|m| m.get("method").is_none()),
        "an unrecognised request reached the client: {events:?}"
    );
    gw.stop();
    let events = site.events();
    let downward: Vec<&Value> = refused_events(&events)
        .into_iter()
        .filter(|e| body(e, "direction") == "server_to_client")
        .collect();
    assert!(downward.len() >= 3, "{downward:#?}");
    let failed = events
        .iter()
        .find(|e| kind(e) == "execution.failed" && e["subject"]["tool"] == "dup_answer")
        .expect("the forged answer is recorded as a failed call");
    assert_eq!(body(failed, "outcome"), "error");
    site.verify();
}

/// stdio children are capped; a session ended gives its place back.
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn upstream_processes_are_capped() {
    let peers = peers();
    let site = site(
        "max_upstream_processes = 1\n",
        &scripted(&peers, "up", &[], ""),
        ALLOW_ALL,
    );
    let alice = create_token(&site, "alice", &["security"]);
    let gw = site.serve();
    let first = HttpSession::open(&gw.url("up"), &alice, json!({}));
    let refused = HttpSession::try_open(&gw.url("up"), &alice, json!({}))
        .err()
        .expect("capped");
    assert_eq!(refused.0, 502, "{refused:?}");
    assert!(
        refused.1.contains("-32052") && refused.1.contains("max_upstream_processes"),
        "{refused:?}"
    );
    let auth = format!("Bearer {alice}");
    let ended = exchange(
        "DELETE",
        &first.url,
        &[("Authorization", &auth), ("Mcp-Session-Id", &first.id)],
        b"",
    );
    assert_eq!(ended.status, 200);
    wait_until("a place for a new session", TIMEOUT, || {
        HttpSession::try_open(&gw.url("up"), &alice, json!({})).is_ok()
    });
    gw.stop();
    let events = site.events();
    assert!(
        events
            .iter()
            .any(|e| kind(e) == "session.opened" && body(e, "outcome") == "unavailable"),
        "the refused start is recorded"
    );
    site.verify();
}

/// A custom method is relayed only when the server's config allows it, and
/// then recorded like a call.
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn an_allowed_custom_method_is_gated_and_recorded() {
    let peers = peers();
    let site = site(
        "",
        &scripted(&peers, "up", &[], "allow_methods = [\"acme/search\"]\n"),
        ALLOW_ALL,
    );
    let alice = create_token(&site, "alice", &["security"]);
    let gw = site.serve();
    let s = HttpSession::open(&gw.url("up"), &alice, json!({}));
    let allowed = s.request(1, "acme/search", json!({"q": "needle"}));
    // The scripted upstream implements no custom method: its own error.
    assert_eq!(allowed["error"]["code"], -32601, "{allowed}");
    assert!(
        allowed["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("acme/search")),
        "{allowed}"
    );
    let refused = s.request(2, "acme/other", json!({"q": "needle"}));
    assert_eq!(refused["error"]["code"], -32601, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("allow_methods")),
        "{refused}"
    );
    gw.stop();
    let got = received(&site, "up");
    assert!(got.iter().any(|l| l.contains("acme/search")), "{got:#?}");
    assert!(!got.iter().any(|l| l.contains("acme/other")), "{got:#?}");
    let events = site.events();
    let calls = audited_calls(&events);
    let (request, decision, outcome) = find_call(&calls, "acme/search", None);
    assert_eq!(kind(request), "mcp.requested");
    assert_eq!(request["body"]["arguments"]["json"], r#"{"q":"needle"}"#);
    assert_eq!(body(decision, "decision"), "ALLOW");
    assert_eq!(body(decision, "gate"), "grant");
    assert_eq!(body(outcome, "outcome"), "error");
    assert_eq!(refused_events(&events).len(), 1);
    site.verify();
}

/// Whatever a call forwards is recorded: its `_meta` beside its arguments;
/// a params member the request event would not record is refused.
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn a_calls_meta_is_recorded_and_unrecorded_members_are_refused() {
    let peers = peers();
    let site = site("", &scripted(&peers, "up", &[], ""), ALLOW_ALL);
    let alice = create_token(&site, "alice", &["security"]);
    let gw = site.serve();
    let s = HttpSession::open(&gw.url("up"), &alice, json!({}));
    let ok = s.request(
        1,
        "tools/call",
        json!({"name": "echo", "arguments": {"a": 1}, "_meta": {"acme/trace": "t-42"}}),
    );
    assert!(ok.get("result").is_some(), "{ok}");
    let refused = s.request(
        2,
        "tools/call",
        json!({"name": "echo", "arguments": {"a": 2}, "inputResponses": {"smuggled": true}}),
    );
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    gw.stop();
    let got = received(&site, "up");
    assert!(got.iter().any(|l| l.contains("t-42")), "{got:#?}");
    assert!(!got.iter().any(|l| l.contains("smuggled")), "{got:#?}");
    let events = site.events();
    let request = events
        .iter()
        .find(|e| kind(e) == "tool_call.requested")
        .expect("the call is recorded");
    assert_eq!(request["body"]["meta"]["json"], r#"{"acme/trace":"t-42"}"#, "{request}");
    site.verify();
}

/// A gated request needs a grant on what it names: a completion for a
/// prompt the caller may not use is refused (and recorded), as is a
/// subscription to a resource outside the caller's grant.
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn gated_requests_need_a_grant_on_what_they_name() {
    let peers = peers();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("policy.yaml"), ALLOW_ALL).expect("policy");
    // alice may use the echo tool and nothing else on the server.
    let site = Site::in_dir(
        dir,
        &format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\n[auth]\ntokens_file = \"{{dir}}/tokens.toml\"\n\
             [governance]\npolicy_file = \"{{dir}}/policy.yaml\"\n\n\
             [[grants]]\nprincipal = \"alice\"\nserver = \"up\"\ntool = \"echo\"\n\n{}",
            scripted(&peers, "up", &[], "")
        ),
    );
    let alice = create_token(&site, "alice", &[]);
    let gw = site.serve();
    let s = HttpSession::open(&gw.url("up"), &alice, json!({}));
    let completion = s.request(
        1,
        "completion/complete",
        json!({"ref": {"type": "ref/prompt", "name": "secret-prompt"}, "argument": {"name": "a", "value": ""}}),
    );
    assert_eq!(completion["error"]["code"], -32051, "{completion}");
    let subscribe = s.request(2, "resources/subscribe", json!({"uri": "file:///etc/app"}));
    assert_eq!(subscribe["error"]["code"], -32051, "{subscribe}");
    gw.stop();
    let got = received(&site, "up");
    assert!(
        !got.iter()
            .any(|l| l.contains("completion/complete") || l.contains("resources/subscribe")),
        "{got:#?}"
    );
    let events = site.events();
    for method in ["completion/complete", "resources/subscribe"] {
        let decision = events
            .iter()
            .find(|e| kind(e) == "policy.decision" && body(e, "mcp.method.name") == method)
            .unwrap_or_else(|| panic!("no decision for {method}"));
        assert_eq!(body(decision, "decision"), "DENY", "{decision}");
        assert_eq!(body(decision, "gate"), "grant", "{decision}");
    }
    site.verify();
}
