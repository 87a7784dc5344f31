//! A session's two ends in the ledger: every session a gateway opens ends
//! with exactly one `session.closed`, naming why, whatever ends it: the
//! client's DELETE, the idle timeout, its upstream exiting (the child
//! killed), the gateway shutting down (SIGTERM, with a call still in
//! flight), and for `sealgate stdio` the end of stdin.
//!
//! A real `sealgate serve` and `sealgate stdio`, real server-everything,
//! raw HTTP, the real ledger read back with `sealgate log`.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use support::wire::{HttpSession, StdioSession, TIMEOUT, exchange};
use support::*;

/// The gateway's direct children (their pids), from `/proc`.
fn children(pid: u32) -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(text.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    out
}

fn closed_of<'a>(events: &'a [Value], session: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| kind(e) == "session.closed" && e["actor"]["session"] == session)
        .collect()
}

fn wait_closed(site: &Site, session: &str, what: &str) -> Value {
    let mut found = None;
    wait_until(what, Duration::from_secs(30), || {
        found = closed_of(&site.events(), session).first().map(|e| (*e).clone());
        found.is_some()
    });
    found.unwrap_or_default()
}

#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn every_session_ends_with_one_session_closed_naming_why() {
    let peers = peers();
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("tokens.toml");
    let config = format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\nsession_idle_sec = 2\n[auth]\ntokens_file = {}\n{}",
        q(&tokens.to_string_lossy()),
        stdio_server("everything", "node", &[&peers.everything, "stdio"])
    );
    let site = Site::in_dir(dir, &config);
    let alice = site.create_token("alice", &["dev"], &[]);
    let served = site.serve();
    let url = served.url("everything");
    let auth = format!("Bearer {alice}");

    // Idle: opened and left alone past session_idle_sec.
    let idle = HttpSession::open(&url, &alice, json!({}));
    // DELETE: one call, then the client ends it.
    let deleted = HttpSession::open(&url, &alice, json!({}));
    let echo = deleted.request(1, "tools/call", json!({"name": "echo", "arguments": {"message": "hi"}}));
    assert!(echo["result"]["content"].is_array(), "{echo}");
    let mut gone = exchange(
        "DELETE",
        &url,
        &[("Authorization", &auth), ("Mcp-Session-Id", &deleted.id)],
        b"",
    );
    let status = gone.status;
    assert_eq!(status, 200, "DELETE: {}", gone.text(TIMEOUT));
    let by_delete = wait_closed(&site, &deleted.id, "the deleted session's close");
    let by_idle = wait_closed(&site, &idle.id, "the idle session's close");

    // Upstream exit: the session's own server-everything is killed.
    let before = children(served.child.id());
    let killed = HttpSession::open(&url, &alice, json!({}));
    let mut started = BTreeSet::new();
    wait_until("the session's upstream process", Duration::from_secs(10), || {
        started = children(served.child.id()).difference(&before).copied().collect();
        !started.is_empty()
    });
    assert_eq!(started.len(), 1, "one upstream child per session: {started:?}");
    for pid in &started {
        let status = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {pid}");
    }
    let by_exit = wait_closed(&site, &killed.id, "the killed upstream's session close");

    // Shutdown: SIGTERM with a slow call in flight.
    let last = HttpSession::open(&url, &alice, json!({}));
    let slow = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "trigger-long-running-operation", "arguments": {"duration": 60, "steps": 2}}});
    let in_flight = last.post_raw(&alice, slow.to_string().as_bytes());
    assert_eq!(in_flight.status, 200);
    wait_until("the slow call's decision", Duration::from_secs(30), || {
        site.events().iter().any(|e| {
            kind(e) == "policy.decision"
                && e["actor"]["session"] == last.id.as_str()
                && e["subject"]["tool"] == "trigger-long-running-operation"
        })
    });
    let status = std::process::Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let mut served = served;
    let exited = served.child.wait().expect("wait for the gateway");
    assert!(exited.success(), "sealgate serve exited {exited}: {}", site.log());
    drop(in_flight);

    // stdio: the client closes stdin.
    let mut cmd = site.sealgate();
    cmd.args(["stdio", "--server", "everything", "--principal", "alice"]);
    let mut stdio = StdioSession::start(cmd);
    let init = stdio.initialize(json!({}));
    assert!(init["result"]["protocolVersion"].is_string(), "{init}");
    stdio.send_raw(
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": "hi"}}})
        .to_string(),
    );
    let answer = stdio.answer(1);
    assert!(answer["result"]["content"].is_array(), "{answer}");
    assert!(stdio.finish().success(), "sealgate stdio failed");

    let events = site.events();
    let opened: Vec<&Value> = events
        .iter()
        .filter(|e| kind(e) == "session.opened" && *body(e, "outcome") == json!("ok"))
        .collect();
    assert_eq!(opened.len(), 5, "sessions opened: {opened:#?}");
    let mut reasons = Vec::new();
    for o in &opened {
        let session = o["actor"]["session"].as_str().expect("session id");
        let closed = closed_of(&events, session);
        assert_eq!(closed.len(), 1, "session {session}: closes {closed:#?}");
        let c = closed[0];
        assert_eq!(*body(c, "opened_seq"), json!(seq(o)), "{c}");
        assert!(seq(c) > seq(o));
        assert_eq!(c["actor"]["principal"], "alice", "{c}");
        assert_eq!(c["subject"]["server"], "everything", "{c}");
        assert!(body(c, "duration_ns").as_u64().is_some_and(|n| n > 0), "{c}");
        // Nothing of the session after its close.
        let after: Vec<&Value> = events
            .iter()
            .filter(|e| seq(e) > seq(c) && e["actor"]["session"] == session)
            .collect();
        assert!(after.is_empty(), "events of {session} after its close: {after:#?}");
        reasons.push(body(c, "reason").as_str().unwrap_or_default().to_string());
    }
    assert_eq!(
        reasons,
        [
            "idle_timeout",
            "client_delete",
            "upstream_exit",
            "gateway_shutdown",
            "client_eof"
        ],
        "in the order the sessions opened: idle, deleted, killed, shut down, stdio"
    );

    let counts = |c: &Value| body(c, "counts").clone();
    assert_eq!(
        counts(&by_delete),
        json!({"requests": 1, "calls": 1, "allowed": 1, "denied": 0, "completed": 1, "failed": 0, "unfinished": 0}),
        "{by_delete}"
    );
    assert_eq!(*body(&by_idle, "reason"), json!("idle_timeout"));
    assert_eq!(counts(&by_idle)["requests"], 0, "{by_idle}");
    assert_eq!(*body(&by_exit, "reason"), json!("upstream_exit"));
    // The call in flight at shutdown was cancelled upstream and recorded
    // before the session's close, which counts it.
    let shut = closed_of(&events, &last.id)[0];
    assert_eq!(
        counts(shut),
        json!({"requests": 1, "calls": 1, "allowed": 1, "denied": 0, "completed": 0, "failed": 1, "unfinished": 0}),
        "{shut}"
    );
    let cut = events
        .iter()
        .find(|e| kind(e) == "execution.failed" && e["actor"]["session"] == last.id.as_str())
        .expect("the slow call's end");
    assert_eq!(*body(cut, "outcome"), json!("cancelled"), "{cut}");
    assert!(
        body(cut, "error")["message"]
            .as_str()
            .is_some_and(|m| m.contains("the gateway shut down (SIGTERM)")),
        "{cut}"
    );
    assert!(seq(cut) < seq(shut));
    site.verify();
}
