//! Operating controls end to end: the kill switch (`sealgate suspend`,
//! `resume`). A real `sealgate serve` in front of real server-everything,
//! raw HTTP sessions, the CLI through the admin API, the real ledger read
//! back.

mod support;

use serde_json::{Value, json};
use support::wire::{HttpSession, TIMEOUT, exchange};
use support::*;

const POLICY: &str = "version: v1
rules:
  - id: approve-echo
    match: { tool: echo }
    decision: REQUIRE_APPROVAL
    approval: { timeout_sec: 300, approvers: { team: security } }
  - id: allow-rest
    decision: ALLOW
";

struct World {
    site: Site,
    gw: Served,
    alice: String,
    root: String,
}

fn world() -> World {
    let peers = peers();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("policy.yaml"), POLICY).expect("policy");
    let everything = stdio_server("everything", "node", &[&peers.everything, "stdio"]);
    let config = format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\n[auth]\ntokens_file = \"{{dir}}/tokens.toml\"\n\
         [governance]\npolicy_file = \"{{dir}}/policy.yaml\"\n{everything}\n\
         [[grants]]\nprincipal = \"alice\"\nserver = \"*\"\n"
    );
    let site = Site::in_dir(dir, &config);
    let alice = site.create_token("alice", &["dev"], &[]);
    let root = site.create_token("root", &[], &["admin"]);
    let gw = site.serve();
    World { site, gw, alice, root }
}

impl World {
    /// `sealgate ARGS --api BASE --token ROOT`: (success, stdout or stderr).
    fn cli(&self, args: &[&str]) -> (bool, String) {
        let out = self
            .site
            .sealgate()
            .args(args)
            .args(["--api", &self.gw.base, "--token", &self.root])
            .output()
            .expect("run sealgate");
        let text = if out.status.success() { out.stdout } else { out.stderr };
        (out.status.success(), String::from_utf8_lossy(&text).to_string())
    }

    fn state(&self, as_of: Option<u64>) -> Value {
        let mut cmd = self.site.sealgate();
        cmd.args(["state", "suspensions"]);
        if let Some(seq) = as_of {
            cmd.args(["--as-of", &seq.to_string()]);
        }
        let out = cmd.output().expect("sealgate state");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("state JSON")
    }

    fn head(&self) -> u64 {
        self.site.events().last().map(seq).unwrap_or(0)
    }
}

fn call_message(id: u64, tool: &str, arguments: Value) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": arguments}})
        .to_string()
        .into_bytes()
}

fn text_of(answer: &Value) -> String {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A suspended principal's open session is stopped at once: its call held
/// for approval is withdrawn and its running call cancelled (both
/// answered and recorded with the suspension), its next call is refused
/// naming the suspension, and after `resume` calls go through again in the
/// same session. A suspended session is closed. Unknown targets are
/// refused with nothing written, and the suspensions are a projection
/// that answers as of any point.
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn a_suspension_stops_a_principal_at_once_and_resume_lets_calls_through() {
    let w = world();
    let url = w.gw.url("everything");
    let s = HttpSession::open(&url, &w.alice, json!({}));
    let sum = s.request(
        1,
        "tools/call",
        json!({"name": "get-sum", "arguments": {"a": 1, "b": 2}}),
    );
    assert_ne!(sum["result"]["isError"], true, "{sum}");

    // A call held for approval, and one running upstream.
    let mut held = s.post_raw(&w.alice, &call_message(2, "echo", json!({"message": "wait"})));
    assert_eq!(held.status, 200);
    let mut slow = s.post_raw(
        &w.alice,
        &call_message(3, "trigger-long-running-operation", json!({"duration": 60, "steps": 2})),
    );
    assert_eq!(slow.status, 200);
    wait_until("the held call's approval and the slow call's decision", TIMEOUT, || {
        let events = w.site.events();
        events.iter().any(|e| kind(e) == "approval.requested")
            && events
                .iter()
                .any(|e| kind(e) == "policy.decision" && e["subject"]["tool"] == "trigger-long-running-operation")
    });

    // Unknown targets: refused, nothing written.
    let before = w.head();
    for (target, name) in [
        ("principal", "nobody"),
        ("team", "nobody"),
        ("server", "nowhere"),
        ("session", "0000"),
    ] {
        let (ok, out) = w.cli(&["suspend", target, name, "--reason", "typo"]);
        assert!(!ok, "suspend {target} {name}: {out}");
        assert!(
            out.contains(&format!("cannot suspend {target} \"{name}\"")) && out.contains("nothing was written"),
            "{out}"
        );
    }
    assert_eq!(w.head(), before, "an unknown target wrote something");

    // The kill switch.
    let (ok, out) = w.cli(&["suspend", "principal", "alice", "--reason", "incident 7"]);
    assert!(ok, "{out}");
    let answer: Value = serde_json::from_str(&out).expect("suspend JSON");
    assert_eq!(answer["calls_withdrawn"], 2, "{answer}");
    assert_eq!(answer["sessions_closed"], 1, "{answer}");
    let first_session = s.id.clone();
    let issued_seq = answer["event"]["seq"].as_u64().expect("seq");
    let (ok, out) = w.cli(&["suspend", "principal", "alice", "--reason", "again"]);
    assert!(!ok && out.contains("suspended already"), "{out}");

    let withdrawn = held
        .events_until(TIMEOUT, |m| m["id"] == 2)
        .into_iter()
        .find(|m| m["id"] == 2)
        .expect("the held call's answer");
    assert_eq!(withdrawn["result"]["isError"], true, "{withdrawn}");
    // The caller is told it is suspended and by which suspension, never who
    // suspended it or why (a leaked token's holder learns nothing of the
    // incident); the ledger keeps both.
    let suspension_id = answer["suspension_id"].as_str().expect("suspension id").to_string();
    let told_only = |text: &str| {
        text.contains("is suspended")
            && text.contains(&suspension_id)
            && !text.contains("incident 7")
            && !text.contains("root")
    };
    assert!(told_only(&text_of(&withdrawn)), "{withdrawn}");
    let cancelled = slow
        .events_until(TIMEOUT, |m| m["id"] == 3)
        .into_iter()
        .find(|m| m["id"] == 3)
        .expect("the slow call's answer");
    assert!(
        told_only(cancelled["error"]["message"].as_str().unwrap_or_default()),
        "{cancelled}"
    );

    // The principal's open session is closed: nothing flows through it any
    // more, not a call, not a listing, not a ping; a new session is refused,
    // naming the suspension.
    let auth = format!("Bearer {}", w.alice);
    let in_old_session = |body: &[u8]| {
        exchange(
            "POST",
            &url,
            &[
                ("Authorization", &auth),
                ("Mcp-Session-Id", &s.id),
                ("Accept", "application/json, text/event-stream"),
                ("Content-Type", "application/json"),
            ],
            body,
        )
    };
    for (what, body) in [
        ("a call", call_message(4, "get-sum", json!({"a": 1, "b": 2}))),
        (
            "a listing",
            serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"})).expect("json"),
        ),
        (
            "a ping",
            serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 6, "method": "ping"})).expect("json"),
        ),
    ] {
        let answer = in_old_session(&body);
        assert_eq!(
            answer.status, 404,
            "{what} went through a suspended principal's session"
        );
    }
    let denied_session = HttpSession::try_open(&url, &w.alice, json!({}));
    assert!(
        matches!(&denied_session, Err((403, text)) if told_only(text)),
        "a suspended principal opened a session: {:?}",
        denied_session.as_ref().map(|s| &s.id)
    );

    let listed = w.state(None);
    let items: Vec<&Value> = listed["suspensions"]["items"]
        .as_object()
        .map(|m| m.values().collect())
        .unwrap_or_default();
    assert_eq!(items.len(), 1, "{listed}");
    assert_eq!(items[0]["name"], "alice");
    assert_eq!(items[0]["by"], "root");

    // Resumed: calls go through again, in a new session.
    let (ok, out) = w.cli(&["resume", "principal", "alice", "--reason", "resolved"]);
    assert!(ok, "{out}");
    let s = HttpSession::open(&url, &w.alice, json!({}));
    let again = s.request(
        5,
        "tools/call",
        json!({"name": "get-sum", "arguments": {"a": 2, "b": 3}}),
    );
    assert_ne!(again["result"]["isError"], true, "{again}");
    let (ok, out) = w.cli(&["resume", "principal", "alice"]);
    assert!(!ok && out.contains("is not suspended"), "{out}");

    // A suspended session is closed; the client's next message finds none.
    let other = HttpSession::open(&url, &w.alice, json!({}));
    let (ok, out) = w.cli(&["suspend", "session", &other.id, "--reason", "stray agent"]);
    assert!(ok, "{out}");
    assert!(out.contains("\"sessions_closed\": 1"), "{out}");
    let gone = exchange(
        "POST",
        &url,
        &[
            ("Authorization", &auth),
            ("Mcp-Session-Id", &other.id),
            ("Accept", "application/json, text/event-stream"),
            ("Content-Type", "application/json"),
        ],
        &call_message(1, "get-sum", json!({"a": 1, "b": 1})),
    );
    assert_eq!(gone.status, 404, "a suspended session took a call");

    let events = w.site.events();
    let issued = events
        .iter()
        .find(|e| kind(e) == "suspension.issued" && *body(e, "name") == json!("alice"))
        .expect("suspension.issued");
    assert_eq!(seq(issued), issued_seq);
    assert_eq!(issued["actor"]["principal"], "root", "{issued}");
    assert_eq!(*body(issued, "target"), json!("principal"));
    assert_eq!(*body(issued, "reason"), json!("incident 7"));
    let id = body(issued, "suspension_id").clone();

    // Every call, refused ones included, ends in one terminal event.
    let calls = audited_calls(&events);
    // The held call's end, found by its story (not by the kind asserted):
    // its one terminal event answers its request.
    let held_request = events
        .iter()
        .find(|e| kind(e) == "tool_call.requested" && e["subject"]["tool"] == "echo")
        .expect("the held call's request");
    let ends: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["correlation"]["answers"].as_u64() == Some(seq(held_request))
                && matches!(kind(e), "execution.completed" | "execution.failed" | "call.refused")
        })
        .collect();
    assert_eq!(ends.len(), 1, "{ends:#?}");
    let held_end = ends[0];
    assert_eq!(kind(held_end), "call.refused", "{held_end}");
    assert_eq!(*body(held_end, "reason_code"), json!("suspended"), "{held_end}");
    assert_eq!(*body(held_end, "refused_by"), json!("suspension"), "{held_end}");
    let expired = events
        .iter()
        .find(|e| kind(e) == "approval.expired")
        .expect("approval.expired");
    assert!(
        body(expired, "reason")
            .as_str()
            .is_some_and(|r| r.contains("withdrawn") && told_only(r)),
        "{expired}"
    );
    let (_, _, slow_end) = find_call(&calls, "tools/call", Some("trigger-long-running-operation"));
    assert_eq!(kind(slow_end), "execution.failed", "{slow_end}");
    assert_eq!(*body(slow_end, "outcome"), json!("cancelled"), "{slow_end}");
    assert!(seq(held_end) > issued_seq && seq(slow_end) > issued_seq);
    let denied: Vec<&Value> = events
        .iter()
        .filter(|e| kind(e) == "policy.decision" && *body(e, "reason_code") == json!("suspended"))
        .collect();
    assert_eq!(denied.len(), 1, "the new session: {denied:#?}");
    for d in &denied {
        assert_eq!(*body(d, "decision"), json!("DENY"), "{d}");
        assert_eq!(*body(d, "gate"), json!("suspension"), "{d}");
        assert_eq!(*body(d, "suspension_id"), json!(suspension_id), "{d}");
        assert!(
            body(d, "reason").as_str().is_some_and(|r| r.contains("incident 7")),
            "{d}"
        );
    }
    let closed = events
        .iter()
        .find(|e| kind(e) == "session.closed" && e["actor"]["session"] == other.id.as_str())
        .expect("the suspended session's close");
    assert_eq!(*body(closed, "reason"), json!("suspended"), "{closed}");
    let alices = events
        .iter()
        .find(|e| kind(e) == "session.closed" && e["actor"]["session"] == first_session.as_str())
        .expect("the suspended principal's session's close");
    assert_eq!(*body(alices, "reason"), json!("suspended"), "{alices}");
    assert_eq!(*body(alices, "suspension_id"), id, "{alices}");
    let session_suspension = events
        .iter()
        .find(|e| kind(e) == "suspension.issued" && *body(e, "target") == json!("session"))
        .expect("the session's suspension");
    assert_eq!(
        *body(closed, "suspension_id"),
        *body(session_suspension, "suspension_id")
    );
    let lifted = events
        .iter()
        .find(|e| kind(e) == "suspension.lifted")
        .expect("suspension.lifted");
    assert_eq!(*body(lifted, "suspension_id"), id);

    // As of the suspension, alice is listed; now only the session is.
    let then = w.state(Some(issued_seq));
    assert!(then["suspensions"]["items"].to_string().contains("\"alice\""), "{then}");
    let now = w.state(None);
    assert!(!now["suspensions"]["items"].to_string().contains("\"alice\""), "{now}");
    assert!(now["suspensions"]["items"].to_string().contains(&other.id), "{now}");
    drop(w.gw);
    w.site.verify();
}
