//! The fast tier of the gateway's tests: its HTTP application (MCP front
//! and admin API) driven in process with `tower::ServiceExt::oneshot`, on
//! a real ledger in a temporary directory, in front of the in-process fast
//! upstream (`sealgate-tools`), which records every message it receives.
//! Each test asserts the responses, what reached the upstream, and the
//! events in the ledger (by JSON field, as the end-to-end tests do).
//!
//! These cover the gateway's own logic (authentication, routing, session
//! ownership, admission, relay decisions, the admin API) in seconds; the
//! end-to-end tier (a real `sealgate serve` in front of real MCP peers)
//! stays in the other test files and runs under `tools/test.sh`.
//!
//! The tests run on a multi-threaded runtime: the rig reads the ledger
//! with `block_in_place`.

mod support;

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};
use support::inproc::{FAST, Rig};
use support::jwt::{JwtKey, carol, jwks, unix_now};
use support::{audited_calls, body, find_call, kind, seq};

const ALICE: support::inproc::Caller = ("alice", &["security"], &[]);
const BOB: support::inproc::Caller = ("bob", &["security"], &[]);

fn message_of(reply: &support::inproc::Reply) -> String {
    reply.answer()["error"]["message"].as_str().unwrap_or("").to_string()
}

// ----------------------------------------------------------- authentication

/// Without a token a configured and an unknown server look the same
/// (401 with the same body and a challenge naming the metadata); an
/// invalid token is a 401 that says why; a valid one reaches routing
/// (404 for an unknown server). Nothing reaches the upstream, and the
/// refusals are recorded in aggregate, without the presented tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_comes_before_routing_and_refusals_are_counted() {
    let rig = Rig::start(&format!("[gateway]\naccess_log_interval_sec = 1\n{FAST}"), &[ALICE]).await;
    let ping = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let known = rig.send(Rig::mcp_post("fast", None, None, ping)).await;
    let unknown = rig.send(Rig::mcp_post("no-such-server", None, None, ping)).await;
    assert_eq!(
        (known.status, unknown.status),
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    assert_eq!(known.body, unknown.body, "the bodies tell the servers apart");
    let challenge = known.header("www-authenticate").unwrap_or_default().to_string();
    assert!(
        challenge.starts_with(
            "Bearer resource_metadata=\"http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp/fast\""
        ),
        "{challenge}"
    );
    for i in 0..30 {
        let bad = format!("Bearer sg_bad_{}", i % 3);
        let reply = rig.send(Rig::mcp_post("fast", Some(&bad), None, ping)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
        assert_eq!(reply.json()["error"], "invalid_token", "{reply:?}");
    }
    let good = rig.bearer("alice");
    for _ in 0..5 {
        let reply = rig.send(Rig::mcp_post("nothing-here", Some(&good), None, ping)).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{reply:?}");
    }
    assert!(rig.upstream.received().is_empty(), "{:?}", rig.upstream.received());

    // One event per (source, reason, token, server) per interval.
    let counted = |events: &[Value], reason: &str| -> u64 {
        events
            .iter()
            .filter(|e| kind(e) == "access.refused" && body(e, "reason") == reason)
            .map(|e| body(e, "count").as_u64().unwrap_or(0))
            .sum()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let events = loop {
        let events = rig.events();
        if counted(&events, "invalid_token") == 30
            && counted(&events, "unknown_server") == 5
            && counted(&events, "missing_token") == 2
        {
            break events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "refusals not recorded: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let access: Vec<&Value> = events.iter().filter(|e| kind(e) == "access.refused").collect();
    // Counted per key: 3 invalid tokens, 2 missing tokens (two servers),
    // 1 unknown server (alice); an interval may cut a key's count in two.
    let keys: std::collections::BTreeSet<String> = access
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {}",
                body(e, "reason"),
                body(e, "token"),
                e["subject"]["server"],
                e["actor"]["principal"]
            )
        })
        .collect();
    assert_eq!(keys.len(), 6, "{keys:#?}");
    assert!(access.len() <= 12, "{} events for 37 refusals", access.len());
    assert!(
        access.iter().all(|e| !e.to_string().contains("sg_bad_")),
        "a presented token is in the ledger"
    );
    assert!(
        access
            .iter()
            .any(|e| body(e, "reason") == "unknown_server" && e["actor"]["principal"] == "alice"),
        "{access:#?}"
    );
    // Nothing else happened: no session, no request.
    assert!(
        events
            .iter()
            .all(|e| !kind(e).starts_with("mcp.") && !kind(e).starts_with("tool_call.") && kind(e) != "session.opened"),
        "{events:#?}"
    );
    rig.verify();
}

const ISSUER: &str = "https://issuer.sealgate.test";

/// Claims of a token carol may use now, with `changes` applied.
fn claims(changes: Value) -> Value {
    carol(ISSUER, changes)
}

/// JWTs from a JWKS file: a valid one opens a session whose events name
/// `sub` in the issuer's namespace and `groups` as teams; an expired,
/// premature, misaddressed, foreign-issued, foreign-signed or
/// unknown-key one gets a 401 saying so, and nothing reaches the
/// upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwts_are_checked_and_name_their_issuers_principal() {
    let issuer = JwtKey::generate("issuer-key-1");
    let stranger = JwtKey::generate("issuer-key-1");
    let config = format!(
        "{FAST}[auth]\ntokens_file = \"{{dir}}/tokens.toml\"\n[[auth.jwt]]\nissuer = {ISSUER:?}\naudience = [\"sealgate\"]\njwks_file = \"{{dir}}/jwks.json\"\n"
    );
    let dir_jwks = jwks(&[&issuer]).to_string();
    // The JWKS file must exist before the authenticator loads it: write
    // it through a rig-independent path first.
    let rig = {
        let staged = tempfile::tempdir().expect("tempdir");
        let _ = staged;
        Rig::start_with_files(&config, &[ALICE], &[("jwks.json", &dir_jwks)]).await
    };
    let now = unix_now();
    let unknown_kid = JwtKey {
        key: issuer.key.clone(),
        kid: "rotated-away".into(),
    };
    for (token, why) in [
        (issuer.sign(&claims(json!({"exp": now - 120}))), "ExpiredSignature"),
        (issuer.sign(&claims(json!({"nbf": now + 300}))), "ImmatureSignature"),
        (issuer.sign(&claims(json!({"aud": "another-api"}))), "InvalidAudience"),
        (
            issuer.sign(&claims(json!({"iss": "https://elsewhere.test"}))),
            "InvalidIssuer",
        ),
        (stranger.sign(&claims(json!({}))), "InvalidSignature"),
        (unknown_kid.sign(&claims(json!({}))), "no key in the jwks"),
    ] {
        let refused = rig
            .try_open_with("fast", &format!("Bearer {token}"))
            .await
            .err()
            .unwrap_or_else(|| panic!("a token with {why} was accepted"));
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{why}: {refused:?}");
        let said = refused.json()["error_description"].as_str().unwrap_or("").to_string();
        assert!(said.contains(why), "{why}: {said}");
    }
    assert!(rig.upstream.received().is_empty(), "{:?}", rig.upstream.received());

    let token = issuer.sign(&claims(json!({})));
    let session = rig
        .try_open_with("fast", &format!("Bearer {token}"))
        .await
        .expect("a valid JWT opens a session");
    let reply = session.call("echo", json!({"message": "jwt"})).await;
    assert_eq!(reply.answer()["result"]["content"][0]["text"], "jwt", "{reply:?}");
    let events = rig.events();
    let calls = audited_calls(&events);
    let (request, decision, outcome) = find_call(&calls, "tools/call", Some("echo"));
    for e in [request, decision, outcome] {
        assert_eq!(e["actor"]["principal"], format!("{ISSUER}#carol"), "{e}");
        assert_eq!(e["actor"]["teams"], json!(["payments", "oncall"]), "{e}");
    }
    assert_eq!(body(decision, "decision"), "ALLOW", "{decision}");
    assert_eq!(kind(outcome), "execution.completed", "{outcome}");
    rig.verify();
}

// -------------------------------------------------------------- sessions

/// A session belongs to the principal that opened it: bob's requests,
/// notifications, responses, GET and DELETE in alice's session are
/// refused (403, -32054) without naming her, nothing of his reaches the
/// upstream or the ledger, and the session stays hers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_belongs_to_the_principal_that_opened_it() {
    let rig = Rig::start(&format!("{FAST}{}", FAST.replace("fast", "twin")), &[ALICE, BOB]).await;
    let session = rig.open("fast", "alice").await;
    rig.upstream.clear();
    let bob = rig.bearer("bob");
    let foreign: [&[u8]; 5] = [
        br#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#,
        br#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"echo","arguments":{"message":"from bob"}}}"#,
        br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#,
        br#"{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}"#,
        br#"{"jsonrpc":"2.0","id":3,"result":{"roots":[]}}"#,
    ];
    for message in foreign {
        let reply = session.post_as(&bob, message).await;
        let text = String::from_utf8_lossy(message);
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{text} as bob: {reply:?}");
        assert_eq!(reply.json()["error"]["code"], -32054, "{text} as bob: {reply:?}");
        assert!(
            !reply.text().contains("alice"),
            "the refusal names the owner: {reply:?}"
        );
    }
    for method in ["GET", "DELETE"] {
        let reply = session.without_body(method, &bob).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{method} as bob: {reply:?}");
        assert_eq!(reply.json()["error"]["code"], -32054, "{method}: {reply:?}");
    }
    assert!(
        rig.upstream.received().is_empty(),
        "bob reached the upstream: {:?}",
        rig.upstream.received()
    );

    // Still alice's.
    let echoed = session.call("echo", json!({"message": "from alice"})).await;
    assert_eq!(
        echoed.answer()["result"]["content"][0]["text"],
        "from alice",
        "{echoed:?}"
    );
    assert_eq!(
        session.without_body("GET", &session.authorization).await.status,
        StatusCode::OK
    );
    // Another server's endpoint does not know the session.
    let elsewhere = rig
        .send(Rig::mcp_post(
            "twin",
            Some(&session.authorization),
            Some(&session.id),
            br#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#,
        ))
        .await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND, "{elsewhere:?}");
    assert!(elsewhere.text().contains("no such session"), "{elsewhere:?}");
    let ended = session.without_body("DELETE", &session.authorization).await;
    assert_eq!(ended.status, StatusCode::OK, "{ended:?}");
    let gone = session.request("tools/list", json!({})).await;
    assert_eq!(
        gone.status,
        StatusCode::NOT_FOUND,
        "the ended session still answers: {gone:?}"
    );

    let events = rig.events();
    assert!(
        events
            .iter()
            .all(|e| e["actor"]["principal"] != "bob" && !e.to_string().contains("from bob")),
        "bob's messages are in the ledger: {events:#?}"
    );
    let calls = audited_calls(&events);
    let (_, decision, outcome) = find_call(&calls, "tools/call", Some("echo"));
    assert_eq!(body(decision, "decision"), "ALLOW");
    assert_eq!(kind(outcome), "execution.completed");
    rig.verify();
}

// -------------------------------------------------------------- admission

const GOVERNED: &str = "\
version: v1
output: { secrets: allow, pii: allow }
rules:
  - id: allow-echo
    match: { tool: echo }
    decision: ALLOW
  - id: hold-slow
    match: { tool: slow }
    decision: REQUIRE_APPROVAL
    approval: { timeout_sec: 60, approvers: { principal: [root] } }
  - id: deny-crash
    match: { tool: crash }
    decision: DENY
    reason: nobody crashes the upstream
";

/// A rig with [`GOVERNED`] in force; alice holds a grant on `fast`,
/// carol none; root approves and administers, audrey audits.
async fn governed() -> Rig {
    let config = format!(
        "{FAST}[governance]\npolicy_file = \"{{dir}}/policy.yaml\"\n\n[[grants]]\nprincipal = \"alice\"\nserver = \"fast\"\n"
    );
    Rig::start_with_files(
        &config,
        &[
            ALICE,
            ("carol", &[], &[]),
            ("root", &[], &["admin"]),
            ("audrey", &[], &["auditor"]),
            ("bob", &[], &["approver"]),
        ],
        &[("policy.yaml", GOVERNED)],
    )
    .await
}

/// A caller without a grant is refused at initialize (403, "no grant"),
/// every refusal is recorded as a decision and a refused call, and
/// nothing reaches the upstream: no session is opened there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grantless_initialize_is_refused_and_reaches_nothing() {
    let rig = governed().await;
    for _ in 0..20 {
        let refused = rig.try_open("fast", "carol").await.err().expect("refused");
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");
        assert_eq!(refused.answer()["error"]["code"], -32051, "{refused:?}");
        assert!(message_of(&refused).contains("no grant"), "{refused:?}");
    }
    assert!(
        rig.upstream.received().is_empty(),
        "carol reached the upstream: {:?}",
        rig.upstream.received()
    );
    let events = rig.events();
    audited_calls(&events);
    let carols = |k: &str| {
        events
            .iter()
            .filter(|e| kind(e) == k && e["actor"]["principal"] == "carol")
            .count()
    };
    assert_eq!(carols("policy.decision"), 20, "{events:#?}");
    assert_eq!(carols("call.refused"), 20, "{events:#?}");
    assert_eq!(carols("session.opened"), 0, "{events:#?}");
    assert!(
        events
            .iter()
            .filter(|e| kind(e) == "policy.decision" && e["actor"]["principal"] == "carol")
            .all(|d| body(d, "decision") == "DENY")
    );
    // Alice, who has a grant, gets through.
    rig.open("fast", "alice").await;
    assert_eq!(rig.upstream.methods().first().map(String::as_str), Some("initialize"));
    rig.verify();
}

// ----------------------------------------------------------------- relay

/// A call's request and decision are written as one unit (one sync: the
/// same timestamp, adjacent, the decision answering the request), except
/// for a tool the session has not seen listed: the gateway then lists the
/// upstream's tools itself, and the call's request is in the log before
/// that listing reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_request_and_decision_are_one_unit_unless_the_gateway_asks_first() {
    let rig = governed().await;
    let session = rig.open("fast", "alice").await;
    rig.upstream.clear();
    let first = session.call("echo", json!({"message": "one"})).await;
    assert_eq!(first.answer()["result"]["content"][0]["text"], "one", "{first:?}");
    let methods = rig.upstream.methods();
    assert_eq!(
        methods,
        ["tools/list", "tools/call"],
        "the gateway lists an unseen tool first"
    );
    let second = session.call("echo", json!({"message": "two"})).await;
    assert_eq!(second.answer()["result"]["content"][0]["text"], "two", "{second:?}");

    let events = rig.events();
    let calls = audited_calls(&events);
    let echoes: Vec<_> = calls
        .iter()
        .filter(|(r, _, _)| r["subject"]["tool"] == "echo")
        .collect();
    assert_eq!(echoes.len(), 2, "{events:#?}");
    let (r1, d1, _) = echoes[0];
    let (r2, d2, _) = echoes[1];
    assert_eq!(d1["correlation"]["answers"], r1["seq"], "{d1}");
    assert_eq!(d2["correlation"]["answers"], r2["seq"], "{d2}");
    // First call: the request was durable on its own before the listing
    // went upstream, so it is in an earlier group than its decision.
    assert!(seq(d1) > seq(r1), "{r1} {d1}");
    assert_ne!(
        r1["ts"], d1["ts"],
        "an unlisted tool's request is written before the gateway lists"
    );
    // Second call: one unit.
    assert_eq!(seq(d2), seq(r2) + 1, "{r2} {d2}");
    assert_eq!(r2["ts"], d2["ts"], "request and decision in one group: {r2} {d2}");
    rig.verify();
}

/// Allowed, denied and held calls: an allowed call reaches the upstream
/// with its arguments and is recorded requested → ALLOW → completed; a
/// denied one is answered -32051 with the rule's reason, never reaches
/// the upstream, and ends `call.refused`; a held one waits for an
/// approver (the admin API), runs when approved, and is refused when
/// denied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_allowed_denied_and_held_for_approval() {
    let rig = governed().await;
    let session = rig.open("fast", "alice").await;
    rig.upstream.clear();

    let echoed = session.call("echo", json!({"message": "hello"})).await;
    assert_eq!(echoed.answer()["result"]["content"][0]["text"], "hello", "{echoed:?}");
    // (The session lists the tools once, to check the called one against
    // its pin.)
    let calls_reached = || -> Vec<Value> {
        rig.upstream
            .messages()
            .into_iter()
            .filter(|m| m["method"] == "tools/call")
            .collect()
    };
    let reached = calls_reached();
    assert_eq!(reached.len(), 1, "{reached:#?}");
    assert_eq!(
        reached[0]["params"],
        json!({"name": "echo", "arguments": {"message": "hello"}}),
        "{reached:#?}"
    );

    let denied = session.call("crash", json!({})).await;
    // A refused tool call is a tool error the model can read, with the
    // decision in `_meta`.
    let result = &denied.answer()["result"];
    assert_eq!(result["isError"], true, "{denied:?}");
    assert!(
        result["content"][0]["text"]
            .as_str()
            .is_some_and(|m| m.contains("deny-crash") && m.contains("nobody crashes the upstream")),
        "{denied:?}"
    );
    assert_eq!(
        result["_meta"]["io.sealgate/decision"]["decision"], "DENY",
        "{denied:?}"
    );
    assert_eq!(calls_reached().len(), 1, "the denied call reached the upstream");
    assert!(!rig.upstream_handle.is_stopped());

    // Held: approved by root.
    let (id, waiting) = hold(&rig, &session, 1).await;
    assert_eq!(
        calls_reached().len(),
        1,
        "the held call reached the upstream before its approval"
    );
    // Alice cannot approve (no role); audrey (auditor) neither.
    for who in ["alice", "audrey"] {
        let reply = decide(&rig, &id, "approve", who, None).await;
        assert!(matches!(reply.status.as_u16(), 401 | 403), "{who}: {reply:?}");
    }
    let approved = decide(&rig, &id, "approve", "root", Some("ok")).await;
    assert_eq!(approved.status, StatusCode::OK, "{approved:?}");
    let done = waiting.await.expect("the held call");
    assert_eq!(done.answer()["result"]["content"][0]["text"], "slept 1 ms", "{done:?}");
    assert_eq!(calls_reached().len(), 2, "the approved call did not reach the upstream");

    // Held: denied by root.
    let (id, waiting) = hold(&rig, &session, 2).await;
    let decided = decide(&rig, &id, "deny", "root", Some("not now")).await;
    assert_eq!(decided.status, StatusCode::OK, "{decided:?}");
    let refused = waiting.await.expect("the held call");
    let result = &refused.answer()["result"];
    assert_eq!(result["isError"], true, "{refused:?}");
    assert!(
        result["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains(&format!("approval {id} was denied by \"root\": not now"))),
        "{refused:?}"
    );
    assert_eq!(calls_reached().len(), 2, "a denied approval let the call through");
    // A decided approval cannot be decided again.
    let again = decide(&rig, &id, "approve", "root", None).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{again:?}");

    let events = rig.events();
    let calls = audited_calls(&events);
    let (request, decision, outcome) = find_call(&calls, "tools/call", Some("echo"));
    assert_eq!(
        body(request, "arguments")["json"],
        r#"{"message":"hello"}"#,
        "{request}"
    );
    assert_eq!(body(decision, "decision"), "ALLOW", "{decision}");
    assert_eq!(kind(outcome), "execution.completed", "{outcome}");
    let for_tool = |tool: &str, k: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| kind(e) == k && e["subject"]["tool"] == tool)
            .collect()
    };
    let crash_decision = for_tool("crash", "policy.decision");
    assert_eq!(crash_decision.len(), 1);
    assert_eq!(body(crash_decision[0], "decision"), "DENY");
    assert_eq!(for_tool("crash", "call.refused").len(), 1);
    assert!(for_tool("crash", "execution.completed").is_empty() && for_tool("crash", "execution.failed").is_empty());
    let slow_decisions = for_tool("slow", "policy.decision");
    assert_eq!(slow_decisions.len(), 2);
    assert!(
        slow_decisions.iter().all(|d| body(d, "decision") == "REQUIRE_APPROVAL"),
        "{slow_decisions:#?}"
    );
    assert_eq!(for_tool("slow", "approval.requested").len(), 2);
    assert_eq!(for_tool("slow", "approval.granted").len(), 1);
    assert_eq!(for_tool("slow", "approval.denied").len(), 1);
    assert_eq!(for_tool("slow", "execution.completed").len(), 1);
    assert_eq!(for_tool("slow", "call.refused").len(), 1);
    let granted = for_tool("slow", "approval.granted")[0];
    assert_eq!(granted["actor"]["principal"], "root", "{granted}");
    // Everything the upstream sent was accepted (its streams' priming
    // events are no messages).
    let refused: Vec<&Value> = events.iter().filter(|e| kind(e) == "mcp.refused").collect();
    assert!(refused.is_empty(), "{refused:#?}");
    rig.verify();
}

/// Sends `slow {"ms": ms}` in `session`, to be held for approval: its
/// pending approval's id, and the reply to come.
async fn hold(
    rig: &Rig,
    session: &support::inproc::McpSession<'_>,
    ms: u64,
) -> (String, tokio::task::JoinHandle<support::inproc::Reply>) {
    let (_, held) = session.request_message("tools/call", json!({"name": "slow", "arguments": {"ms": ms}}));
    let waiting = rig.spawn_send(session.post_request(&session.authorization, &held));
    let approval = wait_pending(rig, "slow").await;
    let id = approval["id"].as_str().expect("approval id").to_string();
    (id, waiting)
}

/// A call held before its principal is suspended cannot run when approved
/// later, even where no sweep withdrew it (the suspension written straight
/// through governance, as when the admin's request was cut off); and a
/// suspended admin or approver has no admin API: a leaked token can neither
/// approve nor lift its own suspension.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_stops_held_calls_and_the_suspended_admin_api() {
    let rig = governed().await;
    let session = rig.open("fast", "alice").await;
    rig.upstream.clear();
    let (id, waiting) = hold(&rig, &session, 1).await;
    let root = sealgate::governance::Principal {
        name: "root".into(),
        teams: Vec::new(),
        method: sealgate::governance::AuthMethod::Token,
        roles: vec!["admin".into()],
    };
    rig.gateway
        .governance()
        .suspend(&root, events::SuspensionTarget::Principal, "alice", "incident 7")
        .await
        .expect("suspend alice");
    // Approved after the suspension (if it is still pending): refused.
    let _ = decide(&rig, &id, "approve", "root", None).await;
    let answer = waiting.await.expect("the held call");
    let text = answer.text();
    // Told the suspension's id, not who suspended it or why.
    assert!(
        text.contains("is suspended (suspension s-") && !text.contains("incident 7") && !text.contains("root"),
        "{answer:?}"
    );
    assert!(
        rig.upstream.messages().iter().all(|m| m["method"] != "tools/call"),
        "the held call of a suspended principal reached the upstream"
    );

    let suspend = |name: &str| json!({"target": "principal", "name": name, "reason": "token leaked"});
    let done = rig
        .admin("POST", "/admin/suspensions", Some("root"), Some(suspend("bob")))
        .await;
    assert_eq!(done.status, StatusCode::OK, "{done:?}");
    let head = rig.head();
    for (method, path) in [
        ("GET", "/admin/approvals"),
        ("DELETE", "/admin/suspensions/principal/bob"),
        ("POST", "/admin/approvals/a-1/approve"),
    ] {
        let refused = rig.admin(method, path, Some("bob"), None).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{method} {path}: {refused:?}");
        assert!(refused.text().contains("suspended"), "{refused:?}");
    }
    assert_eq!(rig.head(), head, "a suspended principal's requests wrote nothing");
    let lifted = rig
        .admin("DELETE", "/admin/suspensions/principal/bob", Some("root"), None)
        .await;
    assert_eq!(lifted.status, StatusCode::OK, "{lifted:?}");
    let back = rig.admin("GET", "/admin/approvals", Some("bob"), None).await;
    assert_eq!(back.status, StatusCode::OK, "{back:?}");
}

/// A session still opening when its principal is suspended (its
/// `initialize` upstream, so the suspension's sweep of the open sessions
/// cannot see it) does not stay open: the client is refused, and the
/// session opened in the log is closed by the suspension.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_opening_when_its_principal_is_suspended_does_not_stay_open() {
    let rig = governed().await;
    rig.upstream.hold_initialize(true);
    let suspend = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !rig.upstream.methods().iter().any(|m| m == "initialize") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no initialize reached the upstream"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let done = rig
            .admin(
                "POST",
                "/admin/suspensions",
                Some("root"),
                Some(json!({"target": "principal", "name": "alice", "reason": "token leaked"})),
            )
            .await;
        assert_eq!(done.status, StatusCode::OK, "{done:?}");
        rig.upstream.hold_initialize(false);
    };
    let (opened, ()) = tokio::join!(rig.try_open("fast", "alice"), suspend);
    if let Ok(session) = &opened {
        let after = session.call("echo", json!({"message": "still open?"})).await;
        panic!("the session opened during the suspension stayed open: {after:?}");
    }
    let events = rig.events();
    let opened_ok: Vec<&Value> = events
        .iter()
        .filter(|e| kind(e) == "session.opened" && body(e, "outcome") == "ok")
        .collect();
    for o in &opened_ok {
        let closed = events
            .iter()
            .find(|e| kind(e) == "session.closed" && e["actor"]["session"] == o["actor"]["session"])
            .unwrap_or_else(|| panic!("session opened and never closed: {o:#}"));
        assert_eq!(body(closed, "reason"), "suspended", "{closed:#}");
        assert!(
            body(closed, "suspension_id")
                .as_str()
                .is_some_and(|id| id.starts_with("s-"))
        );
    }
}

/// The governance service refuses every change by a suspended principal
/// under its own write lock, whatever let the request in: an admin API
/// request that passed authentication just before its principal was
/// suspended writes nothing (two leaked-and-real admins suspending each
/// other at once cannot both win and leave no admin).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_principal_changes_nothing_even_past_the_admin_api() {
    let rig = Rig::start_with_files(
        FAST,
        &[("root", &[], &["admin"]), ("mallory", &["ops"], &["admin", "approver"])],
        &[],
    )
    .await;
    let gov = rig.gateway.governance();
    let principal = |name: &str, teams: &[&str]| sealgate::governance::Principal {
        name: name.into(),
        teams: teams.iter().map(|t| t.to_string()).collect(),
        method: sealgate::governance::AuthMethod::Token,
        roles: vec!["admin".into(), "approver".into()],
    };
    let (root, mallory) = (principal("root", &[]), principal("mallory", &["ops"]));
    gov.suspend(&root, events::SuspensionTarget::Team, "ops", "incident 9")
        .await
        .expect("suspend mallory's team");
    let head = rig.head();
    let refused = |what: &str, r: Result<(), sealgate::governance::GovError>| match r {
        Err(sealgate::governance::GovError::Forbidden(why)) => {
            assert!(why.contains("mallory") && why.contains("suspended"), "{what}: {why}")
        }
        other => panic!("{what} by a suspended principal: {other:?}"),
    };
    refused(
        "suspend",
        gov.suspend(&mallory, events::SuspensionTarget::Principal, "root", "mine now")
            .await
            .map(drop),
    );
    refused(
        "resume",
        gov.resume(&mallory, events::SuspensionTarget::Team, "ops", None)
            .await
            .map(drop),
    );
    let grant = sealgate::governance::GrantSpec {
        principal: Some("mallory".into()),
        team: None,
        server: "fast".into(),
        tool: "*".into(),
        env: None,
        expires_at: None,
        reason: None,
    };
    refused("issue_grant", gov.issue_grant(&mallory, &grant).await.map(drop));
    refused(
        "decide_approval",
        gov.decide_approval(&mallory, "a-1", true, None).await.map(drop),
    );
    refused(
        "load_policy",
        gov.load_policy(&mallory, "version: v1\nrules: []\n", "test")
            .await
            .map(drop),
    );
    assert_eq!(rig.head(), head, "a suspended principal's change was written");
}

/// An admin cannot suspend itself, by name or by a team of its own: it
/// could then not lift the suspension (the admin API refuses suspended
/// principals), and with no other admin the kill switch would be stuck.
/// Refused with a clear error; nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_cannot_suspend_itself() {
    let rig = Rig::start_with_files(FAST, &[("root", &["ops"], &["admin"]), ("alice", &["ops"], &[])], &[]).await;
    let head = rig.head();
    for (target, name) in [("principal", "root"), ("team", "ops")] {
        let refused = rig
            .admin(
                "POST",
                "/admin/suspensions",
                Some("root"),
                Some(json!({"target": target, "name": name, "reason": "oops"})),
            )
            .await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{target} {name}: {refused:?}");
        assert!(
            refused.json()["error"]
                .as_str()
                .is_some_and(|e| e.contains("would stop its own issuer \"root\"")),
            "{refused:?}"
        );
    }
    assert_eq!(rig.head(), head, "a refused suspension wrote something");
    let alice = rig
        .admin(
            "POST",
            "/admin/suspensions",
            Some("root"),
            Some(json!({"target": "principal", "name": "alice", "reason": "incident"})),
        )
        .await;
    assert_eq!(alice.status, StatusCode::OK, "{alice:?}");
}

/// A suspended server's open sessions are closed at once (recorded, with
/// the suspension), so nothing of that upstream reaches their clients; a
/// new session to it is denied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_server_s_sessions_are_closed() {
    let rig = governed().await;
    let session = rig.open("fast", "alice").await;
    let suspend = json!({"target": "server", "name": "fast", "reason": "upstream compromised"});
    let done = rig
        .admin("POST", "/admin/suspensions", Some("root"), Some(suspend))
        .await;
    assert_eq!(done.status, StatusCode::OK, "{done:?}");
    assert_eq!(done.json()["sessions_closed"], 1, "{done:?}");
    let closed: Vec<Value> = rig
        .events()
        .into_iter()
        .filter(|e| kind(e) == "session.closed" && e["actor"]["session"] == session.id.as_str())
        .collect();
    assert_eq!(closed.len(), 1, "{closed:#?}");
    assert_eq!(body(&closed[0], "reason"), "suspended", "{:#}", closed[0]);
    rig.upstream.clear();
    let after = session.call("echo", json!({"message": "still there?"})).await;
    assert_eq!(after.status, StatusCode::NOT_FOUND, "{after:?}");
    assert!(
        rig.upstream.messages().is_empty(),
        "the closed session reached the upstream"
    );
    let refused = rig.try_open("fast", "alice").await.err().expect("refused");
    assert!(refused.text().contains("suspended"), "{refused:?}");
}

/// A client that sends DELETE and goes away before the answer (its HTTP
/// handler dropped while the close waits for a held call) still gets its
/// session closed and recorded: the close does not stop half-way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_whose_client_went_away_still_ends_the_session() {
    let rig = governed().await;
    let session = rig.open("fast", "alice").await;
    rig.upstream.clear();
    // A call running upstream for 3 s: the close waits for it.
    let (id, waiting) = hold(&rig, &session, 3000).await;
    let approved = decide(&rig, &id, "approve", "root", None).await;
    assert_eq!(approved.status, StatusCode::OK, "{approved:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while rig.upstream.messages().iter().all(|m| m["method"] != "tools/call") {
        assert!(tokio::time::Instant::now() < deadline, "the approved call never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delete = axum::http::Request::builder()
        .method("DELETE")
        .uri("/mcp/fast")
        .header("authorization", &session.authorization)
        .header("mcp-session-id", &session.id)
        .body(axum::body::Body::empty())
        .expect("request");
    // Gone while the close waits for the running call to end (its first
    // wait is 20 ms).
    let gone = rig.spawn_send(delete);
    tokio::time::sleep(Duration::from_millis(5)).await;
    gone.abort();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let closed: Vec<Value> = rig
            .events()
            .into_iter()
            .filter(|e| kind(e) == "session.closed" && e["actor"]["session"] == session.id.as_str())
            .collect();
        if !closed.is_empty() {
            assert_eq!(closed.len(), 1, "{closed:#?}");
            assert_eq!(body(&closed[0], "reason"), "client_delete", "{:#}", closed[0]);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no session.closed: the close stopped when its client went away"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = waiting.await;
}

/// `POST /admin/approvals/{id}/{action}` as `who`, with a reason if given.
async fn decide(rig: &Rig, id: &str, action: &str, who: &str, reason: Option<&str>) -> support::inproc::Reply {
    let body = reason.map(|r| json!({ "reason": r }));
    rig.admin("POST", &format!("/admin/approvals/{id}/{action}"), Some(who), body)
        .await
}

/// The pending approval of a call of `tool`, once there is one.
async fn wait_pending(rig: &Rig, tool: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = rig.admin("GET", "/admin/approvals", Some("audrey"), None).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        if let Some(a) = reply.json()["approvals"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["tool"] == tool && a["state"]["state"] == "pending")
        {
            return a.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no pending approval for {tool}: {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A message with a key written twice (parsers disagree on which value
/// counts) is refused before any session sees it: 400 with a JSON-RPC
/// error, an `mcp.refused` event, nothing at the upstream. So are a
/// batch and a request before initialize.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_keys_batches_and_sessionless_requests_are_refused() {
    let rig = Rig::start(FAST, &[ALICE]).await;
    let session = rig.open("fast", "alice").await;
    rig.upstream.clear();
    let duplicated = br#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"crash","name":"echo","arguments":{"message":"x"}}}"#;
    let reply = session.post_as(&session.authorization, duplicated).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{reply:?}");
    assert_eq!(reply.json()["id"], 5, "{reply:?}");
    assert!(reply.json()["error"]["code"].is_i64(), "{reply:?}");
    let batch = br#"[{"jsonrpc":"2.0","id":6,"method":"ping"}]"#;
    let reply = session.post_as(&session.authorization, batch).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{reply:?}");
    assert!(rig.upstream.received().is_empty(), "{:?}", rig.upstream.received());
    assert!(
        !rig.upstream_handle.is_stopped(),
        "the duplicated `crash` reached the upstream"
    );

    let sessionless = rig
        .send(Rig::mcp_post(
            "fast",
            Some(&session.authorization),
            None,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        ))
        .await;
    assert_eq!(sessionless.status, StatusCode::BAD_REQUEST, "{sessionless:?}");
    assert!(message_of(&sessionless).contains("initialize first"), "{sessionless:?}");

    let events = rig.events();
    let refused: Vec<&Value> = events.iter().filter(|e| kind(e) == "mcp.refused").collect();
    assert_eq!(refused.len(), 2, "{refused:#?}");
    assert!(
        refused
            .iter()
            .all(|e| e["actor"]["principal"] == "alice" && e["actor"]["session"].is_string()),
        "{refused:#?}"
    );
    assert!(
        events.iter().all(|e| kind(e) != "tool_call.requested"),
        "the duplicated call was recorded as a call"
    );
    rig.verify();
}

/// An upstream that dies mid-call fails the call (an error to the
/// client, `execution.failed` in the ledger), not the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_upstream_fails_the_call_and_is_recorded() {
    let rig = Rig::start(&format!("[gateway]\nupstream_timeout_sec = 5\n{FAST}"), &[ALICE]).await;
    let session = rig.open("fast", "alice").await;
    let reply = session.call("crash", json!({})).await;
    assert!(rig.upstream_handle.is_stopped());
    assert!(reply.answer()["error"]["code"].is_i64(), "{reply:?}");
    let events = rig.events();
    let calls = audited_calls(&events);
    let (_, decision, outcome) = find_call(&calls, "tools/call", Some("crash"));
    assert_eq!(body(decision, "decision"), "ALLOW");
    assert_eq!(kind(outcome), "execution.failed", "{outcome}");
    rig.verify();
}

/// A call that outlives the server's `timeout_sec` fails with -32053 and
/// `execution.failed`; the upstream is told to cancel it; the session
/// goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_timeout_fails_and_is_cancelled_upstream() {
    let rig = Rig::start(
        &FAST.replace("approve = true", "approve = true\ntimeout_sec = 1"),
        &[ALICE],
    )
    .await;
    let session = rig.open("fast", "alice").await;
    let started = std::time::Instant::now();
    let reply = session.call("slow", json!({"ms": 30_000})).await;
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_eq!(reply.answer()["error"]["code"], -32053, "{reply:?}");
    let cancelled = rig
        .upstream
        .wait_for(Duration::from_secs(5), |r| {
            r.method() == Some("notifications/cancelled")
        })
        .await;
    assert!(
        cancelled.is_some(),
        "the upstream was not told to cancel: {:?}",
        rig.upstream.methods()
    );
    let echoed = session.call("echo", json!({"message": "after"})).await;
    assert_eq!(echoed.answer()["result"]["content"][0]["text"], "after", "{echoed:?}");
    let events = rig.events();
    let calls = audited_calls(&events);
    let (_, _, outcome) = find_call(&calls, "tools/call", Some("slow"));
    assert_eq!(kind(outcome), "execution.failed", "{outcome}");
    rig.verify();
}

/// Bodies that are not one JSON-RPC message, or too large, or sent without
/// the media types streamable HTTP requires, are refused with the right
/// status and JSON-RPC code before anything is opened or recorded; a
/// principal's sessions are capped (429, -32057).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_and_excess_requests_are_refused() {
    let rig = Rig::start(
        &format!("[gateway]\nmax_body_bytes = 2048\nmax_sessions_per_principal = 2\n{FAST}"),
        &[ALICE],
    )
    .await;
    let auth = rig.bearer("alice");
    let head = rig.head();
    let post = |body: &[u8]| Rig::mcp_post("fast", Some(&auth), None, body);

    let reply = rig.send(post(br#"{"jsonrpc": "2.0", "id": 1, "method": "#)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{reply:?}");
    assert_eq!(reply.json()["error"]["code"], -32700, "{reply:?}");
    assert_eq!(reply.json()["id"], Value::Null, "{reply:?}");
    for (body, id) in [
        (r#"{"id": 3, "x": 1}"#, json!(3)),
        (r#"{"jsonrpc": "2.0", "id": "a", "method": 7}"#, json!("a")),
        (r#""tools/list""#, Value::Null),
    ] {
        let reply = rig.send(post(body.as_bytes())).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {reply:?}");
        assert_eq!(reply.json()["error"]["code"], -32600, "{body}: {reply:?}");
        assert_eq!(reply.json()["id"], id, "{body}: {reply:?}");
    }
    let big = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x".repeat(4096), "version": "1"}}});
    let reply = rig.send(post(big.to_string().as_bytes())).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{reply:?}");
    assert!(message_of(&reply).contains("2048"), "{reply:?}");
    // A body without a declared length is cut at the limit too.
    let mut streamed = post(b"");
    *streamed.body_mut() = axum::body::Body::from_stream(futures::stream::iter(
        big.to_string()
            .into_bytes()
            .chunks(512)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    ));
    streamed.headers_mut().remove("content-length");
    let reply = rig.send(streamed).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "streamed: {reply:?}");
    let mut plain_text = post(b"{}");
    plain_text
        .headers_mut()
        .insert("content-type", axum::http::HeaderValue::from_static("text/plain"));
    assert_eq!(rig.send(plain_text).await.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let mut json_only = post(b"{}");
    json_only
        .headers_mut()
        .insert("accept", axum::http::HeaderValue::from_static("application/json"));
    assert_eq!(rig.send(json_only).await.status, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(rig.head(), head, "a refused body was recorded");
    assert!(rig.upstream.received().is_empty(), "{:?}", rig.upstream.received());

    let _one = rig.open("fast", "alice").await;
    let _two = rig.open("fast", "alice").await;
    let third = rig.try_open("fast", "alice").await.err().expect("capped");
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS, "{third:?}");
    assert_eq!(third.answer()["error"]["code"], -32057, "{third:?}");
    assert!(message_of(&third).contains("max_sessions_per_principal"), "{third:?}");
    let opened = rig.upstream.methods().iter().filter(|m| *m == "initialize").count();
    assert_eq!(opened, 2, "the refused session reached the upstream");
    rig.verify();
}

/// The OAuth protected-resource metadata (RFC 9728) names the resource and
/// the JWT issuers as authorization servers, without authentication.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_resource_metadata_names_the_resource_and_issuers() {
    let config = format!(
        "{FAST}[auth]\ntokens_file = \"{{dir}}/tokens.toml\"\n[[auth.jwt]]\nissuer = {ISSUER:?}\naudience = [\"sealgate\"]\njwks_file = \"{{dir}}/jwks.json\"\n"
    );
    let rig = Rig::start_with_files(&config, &[], &[("jwks.json", r#"{"keys": []}"#)]).await;
    let get = |path: &str| {
        axum::http::Request::builder()
            .uri(path)
            .body(axum::body::Body::empty())
            .expect("request")
    };
    let reply = rig.send(get("/.well-known/oauth-protected-resource/mcp/fast")).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let metadata = reply.json();
    assert_eq!(metadata["resource"], "http://127.0.0.1:8080/mcp/fast", "{metadata}");
    assert_eq!(metadata["bearer_methods_supported"], json!(["header"]), "{metadata}");
    assert_eq!(metadata["authorization_servers"], json!([ISSUER]), "{metadata}");
    let root = rig.send(get("/.well-known/oauth-protected-resource")).await.json();
    assert_eq!(root["resource"], "http://127.0.0.1:8080", "{root}");
    assert_eq!(rig.send(get("/healthz")).await.status, StatusCode::OK);
    assert_eq!(rig.send(get("/nowhere")).await.status, StatusCode::NOT_FOUND);

    // The signed checkpoint of the whole log, without authentication; it
    // verifies with the ledger's keys.
    let reply = rig.send(get("/.well-known/sealgate/checkpoint")).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let keys = rig.ledger.key_history().expect("keys");
    let checkpoint = keys.verify_checkpoint(&reply.text()).expect("the checkpoint verifies");
    assert!(checkpoint.size >= 1 && checkpoint.size <= rig.head() + 1, "{reply:?}");
    assert_eq!(checkpoint.root, rig.ledger.tree_root(checkpoint.size).expect("root"));
}

// ------------------------------------------------------------- admin API

/// `GET /admin/proof/{inclusion,consistency}` and `/admin/key-history`
/// give auditors what `sealgate prove` and `key-history` print; the proofs
/// verify offline with the key history; callers without a reading role,
/// and bad requests, are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_proves_events_and_consistency_for_auditors() {
    let rig = governed().await;
    let s = rig.open("fast", "alice").await;
    let answer = s.call("echo", json!({"message": "hello"})).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let size = rig.head() + 1;
    let r = &rig;
    let get = move |path: String, caller: &'static str| async move { r.admin("GET", &path, Some(caller), None).await };
    let refused = get("/admin/key-history".into(), "alice").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");
    let keys = get("/admin/key-history".into(), "audrey").await;
    assert_eq!(keys.status, StatusCode::OK, "{keys:?}");
    let keys = ledger::KeyHistory::parse(&keys.text()).expect("a key history");

    let proof = get(format!("/admin/proof/inclusion?seq=1&size={size}"), "audrey").await;
    assert_eq!(proof.status, StatusCode::OK, "{proof:?}");
    let included = ledger::InclusionProof::parse(&proof.text())
        .expect("a tlog-proof")
        .verify(&keys, None)
        .expect("the proof verifies");
    assert_eq!((included.seq, included.checkpoint.size), (1, size));

    // A checkpoint of the first two events, as an auditor kept one then.
    let held = tokio::task::block_in_place(|| rig.ledger.checkpoint_now(Some(2))).expect("checkpoint");
    let consistency = get(format!("/admin/proof/consistency?old=2&new={size}"), "audrey").await;
    assert_eq!(consistency.status, StatusCode::OK, "{consistency:?}");
    let (old, new) = ledger::ConsistencyProof::parse(&consistency.text())
        .expect("a consistency proof")
        .verify(&keys, &held)
        .expect("consistent with the kept checkpoint");
    assert_eq!((old.size, new.size), (2, size));

    for bad in [
        format!("/admin/proof/inclusion?seq={}", size + 5),
        "/admin/proof/inclusion?old=1".to_string(),
        "/admin/proof/consistency?old=3&new=2".to_string(),
    ] {
        let r = get(bad.clone(), "audrey").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {r:?}");
    }
    assert_eq!(
        get("/admin/proof/range".into(), "audrey").await.status,
        StatusCode::NOT_FOUND
    );
}

/// `POST /admin/query` and `GET /admin/reports[/NAME]` answer auditors
/// (and only them) from the same tables, views, projections and reports as
/// the CLI, with the head and, on request, the check against the log; bad
/// input is a 400 naming what is wrong; nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_answers_queries_and_reports_for_auditors() {
    let rig = governed().await;
    let s = rig.open("fast", "alice").await;
    let answer = s.call("echo", json!({"message": "hello"})).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let head = rig.head();
    let query = |caller: &'static str, body: Value| rig.admin("POST", "/admin/query", Some(caller), Some(body));

    for caller in ["alice", "bob"] {
        let refused = query(caller, json!({"sql": "SELECT 1"})).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{caller}: {refused:?}");
    }
    let calls = query(
        "audrey",
        json!({"sql": "SELECT seq, hash, principal, decision, end_kind FROM calls WHERE tool = 'echo'", "verify": true}),
    )
    .await;
    assert_eq!(calls.status, StatusCode::OK, "{calls:?}");
    let doc = calls.json();
    assert_eq!(doc["verified"], true, "{doc}");
    assert_eq!(doc["head"]["seq"], json!(head), "{doc}");
    // No checkpoint issued here (no `serve`): what was read is named as
    // under none (tests/sql.rs shows the proofs under one).
    assert_eq!(
        doc["ranges"],
        json!({"checkpoint": null, "complete": [], "past_checkpoint": [[0, head]]}),
        "{doc}"
    );
    // A checkpoint issued as `serve` issues it: the range under it is
    // proved complete (with the gateway's own ledger open for writing).
    let issued = tokio::task::block_in_place(|| sealgate::checkpoints::issue(&rig.gateway.ledger(), "test"))
        .expect("issue a checkpoint");
    let latest = sealgate::checkpoints::latest_path(rig.gateway.data_dir());
    std::fs::create_dir_all(latest.parent().expect("dir")).expect("mkdir");
    std::fs::write(&latest, &issued.note).expect("latest.note");
    let proved = query(
        "audrey",
        json!({"sql": "SELECT seq, hash, principal, decision, end_kind FROM calls WHERE tool = 'echo'", "verify": true}),
    )
    .await;
    assert_eq!(proved.status, StatusCode::OK, "{proved:?}");
    let proved = proved.json();
    assert_eq!(proved["verified"], true, "{proved}");
    assert_eq!(proved["ranges"]["complete"], json!([[0, issued.size - 1]]), "{proved}");
    assert_eq!(proved["ranges"]["checkpoint"]["size"], json!(issued.size), "{proved}");
    // The checkpoint's own event moved the head.
    let head = rig.head();
    let rows = doc["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{doc}");
    assert_eq!(rows[0]["principal"], "alice");
    assert_eq!(rows[0]["decision"], "ALLOW");
    assert_eq!(rows[0]["end_kind"], "execution.completed");
    let servers = query("audrey", json!({"sql": "SELECT server, status FROM servers"}))
        .await
        .json();
    assert_eq!(
        servers["rows"],
        json!([{"server": "fast", "status": "approved"}]),
        "{servers}"
    );
    let before = query("audrey", json!({"sql": "SELECT server FROM servers", "as_of": "0"}))
        .await
        .json();
    assert_eq!(before["rows"], json!([]), "{before}");
    let csv = query(
        "audrey",
        json!({"sql": "SELECT principal FROM calls WHERE tool = 'echo'", "format": "csv"}),
    )
    .await;
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"), "{csv:?}");
    assert!(
        csv.header("sealgate-head")
            .is_some_and(|h| h.starts_with(&format!("{head} "))),
        "{csv:?}"
    );
    assert_eq!(csv.text(), "principal\nalice\n");

    for (body, says) in [
        (json!({"sql": "SELEC 1"}), "Line: 1, Column: 1"),
        (json!({"sql": "DELETE FROM events"}), "not supported"),
        (json!({"sql": "SELECT * FROM nothing"}), "nothing"),
        (json!({"sql": "SELECT 1", "nope": 1}), "unknown field"),
        (json!({"sql": "SELECT 1", "format": "xml"}), "json or csv"),
    ] {
        let reply = query("audrey", body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {reply:?}");
        assert!(reply.text().contains(says), "{body}: {reply:?}");
    }

    let list = rig.admin("GET", "/admin/reports", Some("audrey"), None).await.json();
    assert!(
        list["reports"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["name"] == "gates")),
        "{list}"
    );
    let by = rig
        .admin(
            "GET",
            "/admin/reports/calls-by-principal?last=1d&verify=true",
            Some("audrey"),
            None,
        )
        .await;
    assert_eq!(by.status, StatusCode::OK, "{by:?}");
    let by = by.json();
    assert_eq!(by["verified"], true, "{by}");
    assert!(
        by["rows"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["principal"] == "alice" && r["run"] == 1)),
        "{by}"
    );
    let sql = rig
        .admin("GET", "/admin/reports/gates?sql=true", Some("audrey"), None)
        .await
        .json();
    assert!(
        sql["sql"].as_str().is_some_and(|q| q.contains("FROM decisions")),
        "{sql}"
    );
    for (path, status) in [
        ("/admin/reports/nope", StatusCode::NOT_FOUND),
        ("/admin/reports/gates?last=7x", StatusCode::BAD_REQUEST),
        ("/admin/reports/gates?last=7d&from=2026-01-01", StatusCode::BAD_REQUEST),
        ("/admin/reports/gates?since=1", StatusCode::BAD_REQUEST),
    ] {
        let reply = rig.admin("GET", path, Some("audrey"), None).await;
        assert_eq!(reply.status, status, "{path}: {reply:?}");
    }
    let refused = rig.admin("GET", "/admin/reports/gates", Some("alice"), None).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");
    assert_eq!(rig.head(), head, "queries and reports wrote nothing");
}

/// A large answer through the admin API is streamed as the query makes it
/// (JSON and CSV, the same rows as a small one), and a query whose client
/// went away stops at once and gives its place back: two running queries
/// fill the API's places (a third is told it is busy), and when their
/// clients leave, the next query runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_answers_stream_and_stop_when_the_client_leaves() {
    let rig = governed().await;
    let query = |body: Value| rig.admin("POST", "/admin/query", Some("audrey"), Some(body));
    let big = query(json!({"sql": "SELECT value FROM generate_series(1, 200000) ORDER BY value"})).await;
    assert_eq!(big.status, StatusCode::OK, "{big:?}");
    assert_eq!(big.header("content-length"), None, "streamed, not sized in advance");
    let doc = big.json();
    assert_eq!(doc["head"]["seq"], json!(rig.head()), "{}", &doc["head"]);
    let rows = doc["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 200_000);
    assert_eq!(rows[0], json!({"value": 1}));
    assert_eq!(rows[199_999], json!({"value": 200_000}));
    let csv =
        query(json!({"sql": "SELECT value FROM generate_series(1, 200000) ORDER BY value", "format": "csv"})).await;
    let text = csv.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 200_001, "a header and every row");
    assert_eq!((lines[0], lines[1], lines[200_000]), ("value", "1", "200000"));
    let empty = query(json!({"sql": "SELECT seq FROM events WHERE seq > 1000000", "format": "csv"})).await;
    assert_eq!(empty.text(), "seq\n", "an empty answer still has its header");
    let empty = query(json!({"sql": "SELECT seq FROM events WHERE seq > 1000000"}))
        .await
        .json();
    assert_eq!(empty["rows"], json!([]), "{empty}");

    // A query that fails after its first rows: the status and the first
    // rows are out, so the answer is cut off where it failed, and what came
    // does not parse as a whole answer.
    let failing = |format: &str| {
        axum::http::Request::builder()
            .method("POST")
            .uri("/admin/query")
            .header("authorization", rig.bearer("audrey"))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(
                json!({"sql": "SELECT value, 100 / (150000 - value) AS x FROM generate_series(1, 200000)", "format": format})
                    .to_string(),
            ))
            .expect("request")
    };
    let (status, got, cut) = rig.send_until_cut(failing("json")).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8_lossy(&got);
    assert!(
        cut.as_deref()
            .is_some_and(|e| e.to_lowercase().contains("divide by zero")),
        "{cut:?}"
    );
    // Rows come out as the plan makes them (two partitions: not in order).
    assert!(text.contains(",\"x\":0}"), "rows came out before the failure");
    assert!(!text.contains("\"value\":150000,"), "no row of the failing value");
    assert!(
        serde_json::from_slice::<Value>(&got).is_err(),
        "a cut-off answer parsed whole"
    );
    let (status, got, cut) = rig.send_until_cut(failing("csv")).await;
    assert_eq!(status, StatusCode::OK);
    let csv = String::from_utf8_lossy(&got);
    assert!(
        cut.is_some() && csv.starts_with("value,x\n") && csv.lines().nth(1).is_some_and(|l| l.ends_with(",0")),
        "{cut:?}"
    );

    // Counting ten billion rows outlasts the test; it makes no row until done.
    let slow = || {
        let r = axum::http::Request::builder()
            .method("POST")
            .uri("/admin/query")
            .header("authorization", rig.bearer("audrey"))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(
                json!({"sql": "SELECT count(*) FROM generate_series(1, 10000000000)"}).to_string(),
            ))
            .expect("request");
        rig.spawn_send(r)
    };
    let running = [slow(), slow()];
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let busy = query(json!({"sql": "SELECT 1 AS one"})).await;
    assert_eq!(busy.status, StatusCode::SERVICE_UNAVAILABLE, "{busy:?}");
    for r in running {
        r.abort();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let reply = query(json!({"sql": "SELECT 1 AS one"})).await;
        if reply.status == StatusCode::OK {
            assert_eq!(reply.json()["rows"], json!([{"one": 1}]));
            break;
        }
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
        assert!(
            std::time::Instant::now() < deadline,
            "the abandoned queries still hold the API's places"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// `GET /admin/search` answers auditors (and only them) as `sealgate search
/// -o json` does: ranked hits with the head, filters, a seq or time range,
/// and on request the check against the log; bad input is a 400 naming
/// what is wrong; nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_searches_for_auditors() {
    let rig = governed().await;
    let s = rig.open("fast", "alice").await;
    let answer = s.call("echo", json!({"message": "ship the kumquat crate"})).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let other = s.call("echo", json!({"message": "nothing to see"})).await;
    assert_eq!(other.status, StatusCode::OK, "{other:?}");
    let head = rig.head();
    let rig = &rig;
    let search = |caller: &'static str, query: String| async move {
        rig.admin("GET", &format!("/admin/search?{query}"), Some(caller), None)
            .await
    };

    let found = search("audrey", "q=kumquat&verify=true".into()).await;
    assert_eq!(found.status, StatusCode::OK, "{found:?}");
    let doc = found.json();
    assert_eq!(doc["verified"], true, "{doc}");
    assert_eq!(doc["head_seq"], json!(head), "{doc}");
    let hits = doc["hits"].as_array().expect("hits");
    assert!(!hits.is_empty(), "{doc}");
    assert!(
        hits.iter()
            .all(|h| h["excerpt"].as_str().is_some_and(|e| e.contains("kumquat"))),
        "{doc}"
    );
    let first = hits.iter().filter_map(|h| h["seq"].as_u64()).min().expect("a seq");
    let after = search("audrey", format!("q=kumquat&from={}", first + 1)).await.json();
    assert!(
        after["hits"]
            .as_array()
            .is_some_and(|h| h.iter().all(|h| h["seq"].as_u64() > Some(first))),
        "{after}"
    );
    let nobody = search("audrey", "q=kumquat&principal=bob".into()).await.json();
    assert_eq!(nobody["hits"], json!([]), "{nobody}");
    let by_time = search("audrey", "q=kumquat&from=2000-01-01T00:00:00Z".into()).await;
    assert_eq!(by_time.status, StatusCode::OK, "{by_time:?}");

    for caller in ["alice", "bob"] {
        let refused = search(caller, "q=kumquat".into()).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{caller}: {refused:?}");
    }
    for (query, says) in [
        ("q=%28kumquat", "position"),
        ("q=kumquat&limit=0", "limit 0"),
        ("q=kumquat&limit=100000", "limit 100000"),
        ("q=kumquat&from=9&to=3", "after to"),
        ("q=kumquat&from=yesterday", "not an RFC 3339 timestamp"),
        ("q=kumquat&since=1", "unknown field"),
        ("limit=3", "missing field"),
    ] {
        let reply = search("audrey", query.into()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}: {reply:?}");
        assert!(reply.text().contains(says), "{query}: {reply:?}");
    }
    assert_eq!(rig.head(), head, "searches wrote nothing");
}

/// Roles: no token is a 401, a caller without a role a 403; an auditor
/// reads but cannot write; an admin issues and revokes grants (each an
/// event naming them) and loads policies; a refused write writes
/// nothing; the state reads as of an earlier sequence number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_checks_roles_and_records_every_change() {
    let rig = governed().await;
    let none = rig.admin("GET", "/admin/registry", None, None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED, "{none:?}");
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    let roleless = rig.admin("GET", "/admin/registry", Some("alice"), None).await;
    assert_eq!(roleless.status, StatusCode::FORBIDDEN, "{roleless:?}");

    for path in [
        "/admin/registry",
        "/admin/grants",
        "/admin/policy",
        "/admin/approvals",
        "/admin/state/all",
    ] {
        let reply = rig.admin("GET", path, Some("audrey"), None).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {reply:?}");
    }
    let registry = rig
        .admin("GET", "/admin/state/registry", Some("audrey"), None)
        .await
        .json();
    let fast = &registry["registry"]["servers"]["fast"];
    assert_eq!(fast["status"], "approved", "{registry}");
    assert_eq!(
        fast["pins"].as_object().map(|p| p.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["crash".to_string(), "echo".to_string(), "slow".to_string()]),
        "{registry}"
    );
    let unknown = rig.admin("GET", "/admin/state/nothing", Some("audrey"), None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{unknown:?}");

    let grant = json!({"principal": "carol", "server": "fast", "tool": "echo", "reason": "ticket 7"});
    let head = rig.head();
    let refused = rig
        .admin("POST", "/admin/grants", Some("audrey"), Some(grant.clone()))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");
    let bad = rig
        .admin("POST", "/admin/grants", Some("root"), Some(json!({"server": "fast"})))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{bad:?}");
    let bad_policy = rig.put_policy("root", "version: v2\nrules: []\n").await;
    assert_eq!(bad_policy.status, StatusCode::BAD_REQUEST, "{bad_policy:?}");
    assert_eq!(rig.head(), head, "a refused write wrote something");

    let issued = rig.admin("POST", "/admin/grants", Some("root"), Some(grant)).await;
    assert_eq!(issued.status, StatusCode::OK, "{issued:?}");
    let grant_id = issued.json()["grant_id"].as_str().expect("grant id").to_string();
    let seq = issued.json()["event"]["seq"].as_u64().expect("seq");
    // Carol's grant lets her in now.
    rig.open("fast", "carol").await;
    let revoked = rig
        .admin(
            "DELETE",
            &format!("/admin/grants/{grant_id}"),
            Some("root"),
            Some(json!({"reason": "done"})),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{revoked:?}");
    assert!(
        rig.try_open("fast", "carol").await.is_err(),
        "a revoked grant still opens sessions"
    );

    let events = rig.events();
    let issued_event = &events[seq as usize];
    assert_eq!(kind(issued_event), "grant.issued", "{issued_event}");
    assert_eq!(issued_event["actor"]["principal"], "root", "{issued_event}");
    assert_eq!(body(issued_event, "grant_id"), grant_id.as_str(), "{issued_event}");
    assert_eq!(body(issued_event, "principal"), "carol", "{issued_event}");
    assert_eq!(body(issued_event, "reason"), "ticket 7", "{issued_event}");
    let revoked_event = events
        .iter()
        .find(|e| kind(e) == "grant.revoked")
        .expect("grant.revoked");
    assert_eq!(body(revoked_event, "grant_id"), grant_id.as_str(), "{revoked_event}");
    assert_eq!(revoked_event["actor"]["principal"], "root");

    // As of the issuing event the grant is there; now it is gone.
    let then = rig
        .admin("GET", &format!("/admin/state/grants?as_of={seq}"), Some("audrey"), None)
        .await
        .json();
    assert!(then["grants"]["grants"].get(&grant_id).is_some(), "{then}");
    let now = rig
        .admin("GET", "/admin/state/grants", Some("audrey"), None)
        .await
        .json();
    assert!(now["grants"]["grants"].get(&grant_id).is_none(), "{now}");

    // A policy load is an event; the same text again is none.
    let text = GOVERNED.replace("timeout_sec: 60", "timeout_sec: 30");
    for changed in [true, false] {
        let loaded = rig.put_policy("root", &text).await;
        assert_eq!(loaded.status, StatusCode::OK, "{loaded:?}");
        assert_eq!(loaded.json()["changed"], changed, "{loaded:?}");
    }
    let loads = rig
        .events()
        .into_iter()
        .filter(|e| kind(e) == "policy.loaded")
        .collect::<Vec<_>>();
    assert_eq!(loads.len(), 2, "{loads:#?}");
    assert_eq!(loads[1]["actor"]["principal"], "root");
    rig.verify();
}
