//! Alerts and webhooks (`docs/ALERTS.md`) on real gateway traffic: the
//! gateway in process (`support::inproc`: its HTTP application, a real
//! ledger on disk, the in-process fast upstream), the alert detector and
//! the webhooks on their own threads as `sealgate serve` runs them, a real
//! HTTP receiver (axum on a loopback port) for the webhooks. Each detection
//! fires on its traffic and not on clean traffic; a restarted detector
//! neither repeats nor misses an alert; a webhook gets the approval
//! notification with its commands and is retried after a 500; the admin
//! API shows the exporters' status. The tool-drift detection needs an
//! upstream whose tools change: `tests/alerts_e2e.rs`.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};
use support::inproc::{FAST, Rig};
use support::{body, kind, seq};

const AWS_KEY_ID: &str = "AKIAQSEALGATE7TEST42";

/// echo allowed, its results with a secret quarantined; slow held for
/// root's approval.
const POLICY: &str = "\
version: v1
output: { secrets: allow, pii: allow }
rules:
  - id: echo
    match: { tool: echo }
    decision: ALLOW
    output: { secrets: quarantine, pii: allow }
  - id: hold-slow
    match: { tool: slow }
    decision: REQUIRE_APPROVAL
    approval: { timeout_sec: 60, approvers: { principal: [root] } }
";

const CALLERS: &[support::inproc::Caller] = &[
    ("alice", &[], &[]),
    ("root", &[], &["admin"]),
    ("audrey", &[], &["auditor"]),
    ("bob", &[], &["approver"]),
];

/// A rig with [`POLICY`], alice granted on `fast`, refusals counted every
/// second, and `alerts` appended to the config (an `[alerts]` table and
/// more).
async fn rig(alerts: &str) -> Rig {
    let config = format!(
        "[gateway]\naccess_log_interval_sec = 1\n{FAST}[governance]\npolicy_file = \"{{dir}}/policy.yaml\"\n\n\
         [[grants]]\nprincipal = \"alice\"\nserver = \"fast\"\n\n{alerts}"
    );
    Rig::start_with_files(&config, CALLERS, &[("policy.yaml", POLICY)]).await
}

/// Thresholds the traffic below crosses: 5 refused authentications, 2
/// requests for an unknown server, quarantine over 0.3 of 3 calls or more,
/// an approval waiting 1 s.
const LOW: &str = "[alerts]\npoll_ms = 50\nauth_burst_threshold = 5\nunknown_server_threshold = 2\n\
                   quarantine_ratio = 0.3\nquarantine_min_calls = 3\napproval_wait_sec = 1\n";

/// The detector on its own thread, as `sealgate serve` starts it.
struct Running {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(rig: &Rig) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = sealgate::alerts::spawn(
            Arc::clone(&rig.ledger),
            &rig.config.alerts,
            &rig.config.gates,
            Arc::clone(&stop),
        )
        .expect("start the detector");
        assert!(thread.is_some(), "alerts are enabled by default");
        Running { stop, thread }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            tokio::task::block_in_place(|| t.join().expect("the detector thread"));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn alerts(rig: &Rig) -> Vec<Value> {
    rig.events().into_iter().filter(|e| kind(e) == "alert.raised").collect()
}

fn of(alerts: &[Value], detection: &str) -> Vec<Value> {
    alerts
        .iter()
        .filter(|a| body(a, "detection") == detection)
        .cloned()
        .collect()
}

/// Waits until the log holds an alert of `detection`; all of them.
async fn wait_alert(rig: &Rig, detection: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let found = of(&alerts(rig), detection);
        if !found.is_empty() {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {detection} alert; alerts: {:#?}",
            alerts(rig)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the detector raises over the whole log now, written or not (the
/// same detections and thresholds, from seq 0).
fn detected(rig: &Rig) -> Vec<sealgate::alerts::Alert> {
    let t = sealgate::alerts::thresholds(&rig.config.alerts, &rig.config.gates);
    let mut d = sealgate::alerts::Detector::new(t);
    tokio::task::block_in_place(|| {
        sealgate::alerts::scan(&rig.ledger, &mut d, 0, rig.ledger.head().seq).expect("scan the log")
    })
}

/// Refused authentications: `n` requests with a wrong token.
async fn bad_tokens(rig: &Rig, n: usize) {
    let ping = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    for i in 0..n {
        let bad = format!("Bearer sg_wrong_{i}");
        let reply = rig.send(Rig::mcp_post("fast", Some(&bad), None, ping)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
    }
}

/// `n` requests by alice for a server that does not exist.
async fn unknown_server(rig: &Rig, n: usize) {
    let ping = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    for _ in 0..n {
        let reply = rig
            .send(Rig::mcp_post("shadow-crm", Some(&rig.bearer("alice")), None, ping))
            .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{reply:?}");
    }
}

/// Waits until `access.refused` events count `n` refusals for `reason`.
async fn wait_refusals(rig: &Rig, reason: &str, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let counted: u64 = rig
            .events()
            .iter()
            .filter(|e| kind(e) == "access.refused" && body(e, "reason") == reason)
            .map(|e| body(e, "count").as_u64().unwrap_or(0))
            .sum();
        if counted >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{reason}: {counted} of {n} refusals recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Holds `slow` for approval in `session`: the approval's id and the reply
/// to come.
async fn hold(
    rig: &Rig,
    session: &support::inproc::McpSession<'_>,
) -> (String, tokio::task::JoinHandle<support::inproc::Reply>) {
    let (_, held) = session.request_message("tools/call", json!({"name": "slow", "arguments": {"ms": 1}}));
    let before = rig.events().iter().filter(|e| kind(e) == "approval.requested").count();
    let waiting = rig.spawn_send(session.post_request(&session.authorization, &held));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let requested = loop {
        let mut all: Vec<Value> = rig
            .events()
            .into_iter()
            .filter(|e| kind(e) == "approval.requested")
            .collect();
        if all.len() > before {
            break all.pop().expect("an approval.requested");
        }
        assert!(tokio::time::Instant::now() < deadline, "the call was not held");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    (
        body(&requested, "approval_id")
            .as_str()
            .expect("approval id")
            .to_owned(),
        waiting,
    )
}

async fn approve(rig: &Rig, id: &str) {
    let reply = rig
        .admin("POST", &format!("/admin/approvals/{id}/approve"), Some("root"), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
}

// ----------------------------------------------------------------- clean

/// Ordinary traffic (calls allowed, a call held and approved at once, the
/// right tokens) raises nothing, with the same low thresholds that the
/// traffic of the next test crosses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_traffic_raises_no_alert() {
    let rig = rig(LOW).await;
    let running = Running::start(&rig);
    let session = rig.open("fast", "alice").await;
    for i in 0..5 {
        let reply = session.call("echo", json!({"message": format!("hello {i}")})).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    }
    let (id, waiting) = hold(&rig, &session).await;
    approve(&rig, &id).await;
    let answer = waiting.await.expect("the held call");
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    // One refused token is under the threshold.
    bad_tokens(&rig, 1).await;
    wait_refusals(&rig, "invalid_token", 1).await;
    // The detector has read all of it (and ticked past the approval's
    // wait) after a few polls.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    running.stop();
    assert_eq!(alerts(&rig), Vec::<Value>::new(), "alerts on clean traffic");
    assert_eq!(
        detected(&rig),
        Vec::new(),
        "the detector raises something on clean traffic"
    );
    rig.verify();
}

// ------------------------------------------------------------ detections

/// Each detection fires once on its traffic, naming the events it was
/// computed from; the events are hash-chained evidence and the log still
/// verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_detection_fires_on_its_traffic() {
    let rig = rig(LOW).await;
    let running = Running::start(&rig);

    // A burst of refused authentications from one source.
    bad_tokens(&rig, 6).await;
    let burst = wait_alert(&rig, "auth_burst").await;
    assert_eq!(burst.len(), 1, "{burst:#?}");
    let b = &burst[0];
    assert_eq!(body(b, "severity"), "high");
    assert_eq!(body(b, "threshold"), "5");
    assert!(
        body(b, "observed").as_str().and_then(|o| o.parse::<u64>().ok()) >= Some(5),
        "{b}"
    );
    assert_eq!(b["actor"]["principal"], sealgate::alerts::ALERTS_ACTOR);
    let events = rig.events();
    for ev in body(b, "evidence").as_array().expect("evidence") {
        let e = &events[ev["seq"].as_u64().expect("seq") as usize];
        assert_eq!(kind(e), "access.refused", "{ev}");
        assert_eq!(ev["kind"], "access.refused");
        assert_eq!(body(e, "reason"), "invalid_token");
    }

    // Requests for a server the registry does not know.
    unknown_server(&rig, 2).await;
    let unknown = wait_alert(&rig, "unknown_server").await;
    assert_eq!(unknown.len(), 1, "{unknown:#?}");
    assert_eq!(unknown[0]["subject"]["server"], "shadow-crm", "{:#}", unknown[0]);

    // Results with a secret quarantined: 2 of 3 calls, over 0.3.
    let session = rig.open("fast", "alice").await;
    for message in [
        format!("key {AWS_KEY_ID}"),
        "nothing here".into(),
        format!("again {AWS_KEY_ID}"),
    ] {
        let reply = session.call("echo", json!({ "message": message })).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    }
    let ratio = wait_alert(&rig, "quarantine_ratio").await;
    assert_eq!(ratio.len(), 1, "{ratio:#?}");
    assert_eq!(body(&ratio[0], "observed"), "0.6667", "{:#}", ratio[0]);
    assert_eq!(body(&ratio[0], "threshold"), "0.3");
    assert_eq!(body(&ratio[0], "evidence").as_array().map(Vec::len), Some(2));

    // An approval left waiting past its gate (1 s): raised by the clock.
    let (id, waiting) = hold(&rig, &session).await;
    let wait = wait_alert(&rig, "approval_waiting").await;
    assert!(
        body(&wait[0], "summary").as_str().unwrap_or("").contains(&id),
        "{:#}",
        wait[0]
    );
    approve(&rig, &id).await;
    waiting.await.expect("the held call");

    // A call that ran on a REQUIRE_APPROVAL decision with no grant: the
    // gateway never does this, so a broken writer is played here by
    // appending such a call's events straight to the ledger.
    let bypass = tokio::task::block_in_place(|| {
        let append = |kind: ledger::EventKind, answers: Option<u64>, body: Value| {
            let mut d = ledger::Draft::new(kind);
            d.subject.server = Some("fast".into());
            d.subject.tool = Some("slow".into());
            d.correlation.answers = answers;
            if let Value::Object(o) = body {
                for (k, v) in o {
                    d.body
                        .insert(k, ledger::Value::from_json_str(&v.to_string()).expect("value"));
                }
            }
            rig.ledger.append_blocking(d).expect("append").seq
        };
        let request = append(
            ledger::EventKind::ToolCallRequested,
            None,
            json!({"mcp.method.name": "tools/call"}),
        );
        let decision = append(
            ledger::EventKind::PolicyDecision,
            Some(request),
            json!({"decision": "REQUIRE_APPROVAL", "gate": "policy", "reason": "forged"}),
        );
        let ran = append(
            ledger::EventKind::ExecutionCompleted,
            Some(request),
            json!({"outcome": "ok", "duration_ns": 1}),
        );
        (request, decision, ran)
    });
    let bypassed = wait_alert(&rig, "approval_bypassed").await;
    assert_eq!(bypassed.len(), 1, "{bypassed:#?}");
    assert_eq!(body(&bypassed[0], "severity"), "critical");
    let evidence: Vec<u64> = body(&bypassed[0], "evidence")
        .as_array()
        .expect("evidence")
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(evidence, vec![bypass.0, bypass.1, bypass.2]);

    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop();
    // Once each, and never about an alert.
    let all = alerts(&rig);
    let mut keys: Vec<&str> = all.iter().map(|a| body(a, "key").as_str().unwrap_or("")).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), all.len(), "an alert raised twice: {all:#?}");
    assert_eq!(all.len(), 5, "{all:#?}");
    let events = rig.events();
    for a in &all {
        for ev in body(a, "evidence").as_array().expect("evidence") {
            let e = &events[ev["seq"].as_u64().expect("seq") as usize];
            assert_ne!(kind(e), "alert.raised", "an alert about an alert: {a}");
        }
    }
    rig.verify();
}

// ---------------------------------------------------------------- restart

/// A detector stopped and started again reads its state back from the log:
/// the alerts the first one wrote are not raised again (a burst still in
/// its window, an approval still waiting), and what happened while none
/// ran is raised by the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_detector_neither_repeats_nor_misses() {
    let rig = rig(LOW).await;
    let first = Running::start(&rig);
    bad_tokens(&rig, 6).await;
    wait_alert(&rig, "auth_burst").await;
    let session = rig.open("fast", "alice").await;
    let (id, waiting) = hold(&rig, &session).await;
    wait_alert(&rig, "approval_waiting").await;
    first.stop();

    // While no detector runs: requests for an unknown server.
    unknown_server(&rig, 2).await;
    wait_refusals(&rig, "unknown_server", 2).await;

    let second = Running::start(&rig);
    wait_alert(&rig, "unknown_server").await;
    // More refusals within the burst's window: the same episode.
    bad_tokens(&rig, 2).await;
    wait_refusals(&rig, "invalid_token", 8).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    approve(&rig, &id).await;
    waiting.await.expect("the held call");
    second.stop();

    let all = alerts(&rig);
    for detection in ["auth_burst", "approval_waiting", "unknown_server"] {
        assert_eq!(of(&all, detection).len(), 1, "{detection}: {all:#?}");
    }
    assert_eq!(all.len(), 3, "{all:#?}");
    rig.verify();
}

// --------------------------------------------------------------- webhooks

/// A webhook receiver: what it was sent, and the statuses it answers in
/// turn (then 200).
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(axum::http::HeaderMap, Value)>>>,
    answers: Arc<Mutex<Vec<u16>>>,
    calls: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start(answers: &[u16]) -> (Receiver, String) {
        let r = Receiver {
            answers: Arc::new(Mutex::new(answers.iter().rev().copied().collect())),
            ..Receiver::default()
        };
        let state = r.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(
                |axum::extract::State(s): axum::extract::State<Receiver>,
                 headers: axum::http::HeaderMap,
                 axum::Json(v): axum::Json<Value>| async move {
                    s.calls.fetch_add(1, Ordering::SeqCst);
                    s.got.lock().expect("lock").push((headers, v));
                    let status = s.answers.lock().expect("lock").pop().unwrap_or(200);
                    StatusCode::from_u16(status).expect("status")
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app.with_state(state)).await });
        (r, url)
    }

    fn got(&self) -> Vec<(axum::http::HeaderMap, Value)> {
        self.got.lock().expect("lock").clone()
    }
}

fn start_webhooks(rig: &Rig) -> (Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let thread = sealgate::alerts::notify::spawn(
        Arc::clone(&rig.ledger),
        &rig.config.webhooks,
        Some("http://127.0.0.1:8080"),
        Arc::clone(&stop),
    )
    .expect("start the webhooks");
    (stop, thread)
}

/// A held call is announced to the webhook with the commands that approve
/// or deny it and the admin API's links; the receiver answers 500 first,
/// so it is retried, and the outcome (delivered on the second attempt) is
/// in the ledger. A Slack-compatible webhook answering 400 is not retried:
/// its outcome is a failure after one attempt. The secret header is sent,
/// and is in no event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_announce_approvals_and_are_retried() {
    let (generic, generic_url) = Receiver::start(&[500]).await;
    let (slack, slack_url) = Receiver::start(&[400]).await;
    // The header's secret is read at start, from a file of the rig.
    let rig = Rig::start_with_files(
        &format!(
            "[gateway]\naccess_log_interval_sec = 1\n{FAST}[governance]\npolicy_file = \"{{dir}}/policy.yaml\"\n\n\
             [[grants]]\nprincipal = \"alice\"\nserver = \"fast\"\n\n\
             [alerts]\nenabled = false\n\n\
             [[webhooks]]\nname = \"ops\"\nurl = \"{generic_url}\"\nevents = [\"approvals\"]\nbackoff_ms = 100\n\
             admin_url = \"https://gate.example\"\nheaders = {{ authorization = {{ file = \"{{dir}}/hook-secret\" }} }}\n\n\
             [[webhooks]]\nname = \"chat\"\nurl = \"{slack_url}\"\nformat = \"slack\"\nbackoff_ms = 100\n"
        ),
        CALLERS,
        &[("policy.yaml", POLICY), ("hook-secret", "Bearer hook-s3cret\n")],
    )
    .await;
    let (stop, thread) = start_webhooks(&rig);
    let session = rig.open("fast", "alice").await;
    let (id, waiting) = hold(&rig, &session).await;

    let delivered = rig
        .wait_event("notification.delivered", |e| {
            kind(e) == "notification.delivered" && body(e, "webhook") == "ops"
        })
        .await;
    assert_eq!(body(&delivered, "attempts"), 2, "{delivered:#}");
    assert_eq!(body(&delivered, "status"), 200);
    assert_eq!(body(&delivered, "topic"), "approval");
    let requested = rig
        .events()
        .into_iter()
        .find(|e| kind(e) == "approval.requested")
        .expect("approval.requested");
    assert_eq!(body(&delivered, "event_seq").as_u64(), Some(seq(&requested)));

    let got = generic.got();
    assert_eq!(got.len(), 2, "one attempt answered 500, one 200: {got:#?}");
    assert_eq!(got[0].1, got[1].1, "a retry sends the same notification");
    let (headers, n) = &got[1];
    assert_eq!(
        headers.get("authorization").and_then(|v| v.to_str().ok()),
        Some("Bearer hook-s3cret")
    );
    assert_eq!(n["topic"], "approval");
    assert_eq!(n["approval"]["approval_id"], id.as_str());
    assert_eq!(n["approval"]["tool"], "slow");
    assert_eq!(n["approval"]["requester"], "alice");
    assert_eq!(
        n["approval"]["approve_command"],
        format!("sealgate approvals approve {id} --api https://gate.example")
    );
    assert_eq!(
        n["approval"]["deny_command"],
        format!("sealgate approvals deny {id} --api https://gate.example")
    );
    assert_eq!(
        n["approval"]["approve_url"],
        format!("https://gate.example/admin/approvals/{id}/approve")
    );
    assert_eq!(n["event"]["seq"].as_u64(), Some(seq(&requested)));

    // The Slack-compatible hook: a text and blocks; 400 is final.
    let failed = rig
        .wait_event("notification.failed", |e| {
            kind(e) == "notification.failed" && body(e, "webhook") == "chat"
        })
        .await;
    assert_eq!(body(&failed, "attempts"), 1, "{failed:#}");
    assert_eq!(body(&failed, "status"), 400);
    let chat = slack.got();
    assert_eq!(chat.len(), 1, "{chat:#?}");
    let text = chat[0].1["text"].as_str().unwrap_or("");
    assert!(text.contains(&format!("sealgate approvals approve {id}")), "{text}");
    assert_eq!(chat[0].1["blocks"][0]["text"]["text"], text);

    approve(&rig, &id).await;
    waiting.await.expect("the held call");
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = thread {
        tokio::task::block_in_place(|| t.join().expect("the webhooks thread"));
    }
    // Started again, the webhooks resume after what they recorded: nothing
    // is sent twice.
    let before = (generic.calls.load(Ordering::SeqCst), slack.calls.load(Ordering::SeqCst));
    let (stop, thread) = start_webhooks(&rig);
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = thread {
        tokio::task::block_in_place(|| t.join().expect("the webhooks thread"));
    }
    assert_eq!(
        (generic.calls.load(Ordering::SeqCst), slack.calls.load(Ordering::SeqCst)),
        before,
        "a restart sent a notification again"
    );
    let events = rig.events();
    assert!(
        events.iter().all(|e| !e.to_string().contains("hook-s3cret")),
        "the webhook's secret is in the ledger"
    );
    rig.verify();
}

// ------------------------------------------------------------- admin API

/// `GET /admin/export` shows each sink as `sealgate export status` does
/// (auditors and admins; approvers and callers without a role are
/// refused); `POST /admin/export/{sink}/replay` (admins) asks for a replay,
/// which the status then shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_shows_export_status() {
    let rig = rig(
        "[alerts]\nenabled = false\n\n[[exporters]]\nname = \"soc\"\nendpoint = \"http://127.0.0.1:9\"\nprotocol = \"grpc\"\n",
    )
    .await;
    let status = rig.admin("GET", "/admin/export", Some("audrey"), None).await;
    assert_eq!(status.status, StatusCode::OK, "{status:?}");
    let sinks = status.json()["sinks"].clone();
    let head = rig.head();
    assert_eq!(sinks[0]["name"], "soc", "{sinks:#}");
    assert_eq!(sinks[0]["endpoint"], "http://127.0.0.1:9");
    assert_eq!(sinks[0]["cursor"], Value::Null, "never ran: {sinks:#}");
    assert_eq!(sinks[0]["head"].as_u64(), Some(head));
    assert_eq!(sinks[0]["lag_events"].as_u64(), Some(head + 1), "{sinks:#}");
    assert_eq!(sinks[0]["status"], Value::Null);
    assert_eq!(sinks[0]["replay_from"], Value::Null);

    for (who, code) in [("bob", StatusCode::FORBIDDEN), ("alice", StatusCode::FORBIDDEN)] {
        let r = rig.admin("GET", "/admin/export", Some(who), None).await;
        assert_eq!(r.status, code, "{who}: {r:?}");
    }
    let r = rig.admin("GET", "/admin/export", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");

    let r = rig
        .admin(
            "POST",
            "/admin/export/soc/replay",
            Some("audrey"),
            Some(json!({"from": 1})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "an auditor asked for a replay: {r:?}");
    let r = rig
        .admin(
            "POST",
            "/admin/export/nope/replay",
            Some("root"),
            Some(json!({"from": 1})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
    let r = rig
        .admin(
            "POST",
            "/admin/export/soc/replay",
            Some("root"),
            Some(json!({"from": head + 5})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    let r = rig
        .admin(
            "POST",
            "/admin/export/soc/replay",
            Some("root"),
            Some(json!({"from": 1})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let status = rig.admin("GET", "/admin/export", Some("root"), None).await;
    assert_eq!(status.json()["sinks"][0]["replay_from"], 1, "{status:?}");
}

/// Refused authentications on the root path (`/mcp`, which names no
/// server) are recorded like those naming one, in the same flush: the
/// refusal is evidence even when the caller named nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_on_the_root_path_are_recorded() {
    let rig = rig("").await;
    let ping = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    for path in ["/mcp", "/mcp/fast"] {
        let mut request = Rig::mcp_post("fast", Some("Bearer sg_wrong"), None, ping);
        *request.uri_mut() = path.parse().expect("uri");
        let reply = rig.send(request).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}: {reply:?}");
    }
    wait_refusals(&rig, "invalid_token", 2).await;
    let refused: Vec<Value> = rig
        .events()
        .into_iter()
        .filter(|e| kind(e) == "access.refused")
        .collect();
    assert!(
        refused.iter().any(|e| e["subject"]["server"].is_null()),
        "the root path's refusal names no server: {refused:?}"
    );
    assert!(refused.iter().any(|e| e["subject"]["server"] == "fast"), "{refused:?}");
}
