//! Egress: a rule's `network_allowlist` end to end, and stdio upstreams
//! without network (`network = "none"`).
//!
//! - The official server-everything's `echo` (stdio and streamable HTTP) and
//!   a Python SDK server's `fetch` (`tests/data/net_upstream.py`, which
//!   really fetches from an HTTP server this test runs): an allowed host
//!   passes; a host outside the allowlist (by value, by schema, behind user
//!   info, an odd IPv4 form, or the HTTP upstream's own address) is denied
//!   before anything is forwarded, and the decision records the host.
//! - The same Python server's `connect` reaches a TCP listener this test
//!   runs on 127.0.0.1 when started normally, and cannot when started with
//!   `network = "none"`.
//!
//! The attack table (user info, IPv4 forms, IDNA, case, trailing dot,
//! nested arrays, schemas) is `governance::egress`'s unit tests.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;
use support::*;

/// A listener on 127.0.0.1 that counts the connections it accepts and
/// answers each with a small HTTP response.
fn listener() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut s) = stream else { continue };
            seen.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\nConnection: close\r\n\r\nhello from test");
        }
    });
    (port, count)
}

fn text(report: &Value) -> String {
    report["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

const POLICY: &str = "version: v1
output: { secrets: allow, pii: allow }
rules:
  - id: echo-named-hosts
    match: { server: everything, tool: echo }
    decision: ALLOW_WITH_CONSTRAINTS
    constraints: { network_allowlist: [allowed.example, \"*.ok.example\"] }
  - id: remote-echo
    match: { server: everything-http }
    decision: ALLOW_WITH_CONSTRAINTS
    constraints: { network_allowlist: [allowed.example] }
  - id: fetch-local
    match: { server: net, tool: fetch }
    decision: ALLOW_WITH_CONSTRAINTS
    constraints: { network_allowlist: [127.0.0.1] }
  - id: rest
    decision: ALLOW
";

#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn hosts_outside_the_allowlist_are_denied_and_recorded() {
    let peers = peers();
    let (port, connections) = listener();
    let remote = everything_http(&peers);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("policy.yaml"), POLICY).expect("policy");
    let net = repo().join("tests/data/net_upstream.py");
    let config = format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\nanonymous_principal = \"agent\"\n\
         [governance]\npolicy_file = \"{{dir}}/policy.yaml\"\n{}{}{}\n[[grants]]\nprincipal = \"*\"\nserver = \"*\"\n",
        stdio_server("everything", "node", &[&peers.everything, "stdio"]),
        http_server("everything-http", &remote.url),
        stdio_server("net", &peers.python, &[&net.to_string_lossy()]),
    );
    let site = Site::in_dir(dir, &config);
    let gw = site.serve();
    let call =
        |server: &str, tool: &str, args: &str| scenario(&peers, &["--call", tool, "--args", args, &gw.url(server)]);
    let denied = |report: &Value, host: &str, rule: &str| {
        assert_eq!(report["result"]["isError"], true, "{report:#}");
        let decision = &report["result"]["_meta"]["io.sealgate/decision"];
        assert_eq!(decision["decision"], "DENY", "{report:#}");
        assert_eq!(decision["rule"], rule, "{report:#}");
        let reason = decision["reason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with(&format!("rule {rule:?}: host {host:?} is not in network_allowlist")),
            "{reason}"
        );
    };

    // Allowed hosts pass, by value.
    let ok = call("everything", "echo", r#"{"message": "https://allowed.example/x"}"#);
    assert_eq!(text(&ok), "Echo: https://allowed.example/x", "{ok:#}");
    let ok = call("everything", "echo", r#"{"message": "see https://a.b.ok.example/y."}"#);
    assert_eq!(ok["ok"], true, "{ok:#}");
    // Others are denied: behind user info, in an odd IPv4 form, in text.
    let r = call(
        "everything",
        "echo",
        r#"{"message": "http://allowed.example@evil.example/"}"#,
    );
    denied(&r, "evil.example", "echo-named-hosts");
    let r = call("everything", "echo", r#"{"message": "fetch http://0x7f.1/ now"}"#);
    denied(&r, "127.0.0.1", "echo-named-hosts");
    // The HTTP upstream's own address (127.0.0.1) is not in its rule's list.
    let r = call("everything-http", "echo", r#"{"message": "hi"}"#);
    denied(&r, "127.0.0.1", "remote-echo");
    // A fetch tool (`url` has `format: uri`): the allowed host is fetched;
    // `localhost` is not `127.0.0.1` (names are not resolved), and a host
    // without a scheme in a URL field is read as a client would read it:
    // neither reaches the network.
    let fetched = call("net", "fetch", &format!(r#"{{"url": "http://127.0.0.1:{port}/x"}}"#));
    assert_eq!(text(&fetched), "hello from test", "{fetched:#}");
    assert_eq!(connections.load(Ordering::SeqCst), 1);
    let r = call("net", "fetch", &format!(r#"{{"url": "http://localhost:{port}/x"}}"#));
    denied(&r, "localhost", "fetch-local");
    let r = call("net", "fetch", &format!(r#"{{"url": "LOCALHOST.:{port}"}}"#));
    denied(&r, "localhost", "fetch-local");
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "a refused fetch reached the network"
    );

    gw.stop();
    site.verify();
    let events = site.events();
    // Every refusal is a DENY decision with the host and reason code, then
    // call.refused, and nothing forwarded; every allowed call ran.
    let decisions: Vec<&Value> = events
        .iter()
        .filter(|e| kind(e) == "policy.decision" && body(e, "reason_code") == "host_not_allowed")
        .collect();
    let hosts: Vec<&str> = decisions
        .iter()
        .map(|e| body(e, "refused_host").as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        hosts,
        ["evil.example", "127.0.0.1", "127.0.0.1", "localhost", "localhost"],
        "{decisions:#?}"
    );
    for d in &decisions {
        assert_eq!(body(d, "decision"), "DENY");
        assert_eq!(body(d, "gate"), "policy");
        assert!(body(d, "constraints")["network_allowlist"].is_array(), "{d}");
        let call_id = &d["correlation"]["call_id"];
        let after: Vec<&str> = events
            .iter()
            .filter(|e| &e["correlation"]["call_id"] == call_id && seq(e) > seq(d))
            .map(kind)
            .collect();
        assert_eq!(after, ["call.refused"], "{d}");
    }
    let ran: Vec<(Value, Value, Value)> = audited_calls(&events)
        .into_iter()
        .filter(|(_, d, _)| body(d, "decision") == "ALLOW_WITH_CONSTRAINTS")
        .collect();
    assert_eq!(ran.len(), 3, "the three allowed calls ran: {ran:#?}");
    for (_, decision, outcome) in &ran {
        assert!(body(decision, "refused_host").is_null(), "{decision}");
        assert_eq!(body(outcome, "outcome"), "ok", "{outcome}");
    }
}

#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn a_stdio_upstream_without_network_cannot_connect() {
    let peers = peers();
    let (port, connections) = listener();
    let net = repo().join("tests/data/net_upstream.py");
    let net = net.to_string_lossy();
    let config = format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\nanonymous_principal = \"agent\"\n{}{}network = \"none\"\n",
        stdio_server("net", &peers.python, &[&net]),
        stdio_server("sealed", &peers.python, &[&net]),
    );
    let site = Site::new(&config);
    let gw = site.serve();
    let connect = |server: &str| {
        scenario(
            &peers,
            &[
                "--call",
                "connect",
                "--args",
                &format!(r#"{{"port": {port}}}"#),
                &gw.url(server),
            ],
        )
    };
    let open = connect("net");
    assert_eq!(text(&open), "connected", "{open:#}");
    assert_eq!(connections.load(Ordering::SeqCst), 1);
    let sealed = connect("sealed");
    assert!(text(&sealed).starts_with("failed: "), "{sealed:#}");
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "the upstream with network = \"none\" reached the listener"
    );
    gw.stop();
    site.verify();
}
