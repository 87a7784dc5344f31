//! Issue 26's acceptance run: one gateway and one ledger, with a call of
//! every story (allowed; denied by each gate; held and approved, denied,
//! expired or withdrawn; cut off by a SIGKILL while upstream). The log is
//! then folded: every call's events share its call id and no two calls
//! share one; every call but the crashed one ends in exactly one terminal
//! event of the right kind and reason; the crashed one has its request and
//! decision and nothing after; each approval event joins its call in one
//! hop; and the log verifies.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientRequest, Request};
use rmcp::service::PeerRequestOptions;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use support::*;

const POLICY: &str = "version: v1
output: { secrets: allow, pii: allow }
rules:
  - id: deny-env
    match: { tool: get-env }
    decision: DENY
  - id: approve-sums
    match: { tool: get-sum }
    decision: REQUIRE_APPROVAL
    approval: { timeout_sec: 60, approvers: { team: security } }
  - id: approve-images-briefly
    match: { tool: get-tiny-image }
    decision: REQUIRE_APPROVAL
    approval: { timeout_sec: 2, approvers: { team: security } }
  - id: allow-the-rest
    decision: ALLOW
";

fn token(site: &Site, principal: &str, team: &str, role: &str) -> String {
    let teams: Vec<&str> = [team].into_iter().filter(|t| !t.is_empty()).collect();
    let roles: Vec<&str> = [role].into_iter().filter(|r| !r.is_empty()).collect();
    site.create_token(principal, &teams, &roles)
}

/// `sealgate ARGS` against the gateway's admin API; its stdout.
fn admin(site: &Site, gw: &Served, token: &str, args: &[&str]) -> String {
    let out = site
        .sealgate()
        .args(args)
        .args(["--api", &gw.base, "--token", token])
        .output()
        .expect("run sealgate");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The id of the pending approval for `tool`, once there is one.
fn pending(site: &Site, gw: &Served, token: &str, tool: &str) -> String {
    let mut id = None;
    wait_until(
        &format!("a pending approval for {tool}"),
        Duration::from_secs(60),
        || {
            let list: Value = serde_json::from_str(&admin(site, gw, token, &["approvals", "list"])).expect("json");
            id = list["approvals"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["tool"] == tool && a["state"]["state"] == "pending")
                .and_then(|a| a["id"].as_str().map(str::to_string));
            id.is_some()
        },
    );
    id.unwrap_or_default()
}

fn call(tool: &str, args: Value) -> CallToolRequestParams {
    CallToolRequestParams::new(tool.to_string()).with_arguments(args.as_object().cloned().unwrap_or_default())
}

#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn every_call_tells_its_whole_story_in_one_ledger() {
    let peers = peers();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("policy.yaml"), POLICY).expect("policy");
    let everything = stdio_server("everything", "node", &[&peers.everything, "stdio"]);
    let other = stdio_server("other", "node", &[&peers.everything, "stdio"]);
    // alice holds no grant for `toggle-*` tools.
    let grants: String = ["echo", "get-*", "trigger-*"]
        .iter()
        .map(|t| format!("[[grants]]\nprincipal = \"alice\"\nserver = \"*\"\ntool = \"{t}\"\n"))
        .collect();
    let site = Site::in_dir(
        dir,
        &format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\n[auth]\ntokens_file = \"{{dir}}/tokens.toml\"\n\
             [governance]\npolicy_file = \"{{dir}}/policy.yaml\"\n{everything}{other}{grants}"
        ),
    );
    let alice = token(&site, "alice", "", "");
    let bob = token(&site, "bob", "security", "approver");
    let root = token(&site, "root", "", "admin");
    let mut gw = site.serve();

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _ = rustls::crypto::ring::default_provider().install_default();
    rt.block_on(async {
        let connect = |server: &str| {
            let config = StreamableHttpClientTransportConfig::with_uri(gw.url(server)).auth_header(alice.clone());
            ().serve(StreamableHttpClientTransport::from_config(config))
        };
        let c = connect("everything").await.expect("session on everything");
        let on_other = connect("other").await.expect("session on other");
        let hold = |tool: &str, args: Value| {
            let (peer, params) = (c.peer().clone(), call(tool, args));
            tokio::spawn(async move { peer.call_tool(params).await })
        };
        let ok = |r: &rmcp::model::CallToolResult| r.is_error != Some(true);

        // Allowed.
        let r = c.call_tool(call("echo", json!({"message": "hi"}))).await.expect("echo");
        assert!(ok(&r), "{r:?}");
        // Denied by the policy, the pin and the grant gates.
        for tool in ["get-env", "no-such-tool", "toggle-simulated-logging"] {
            let r = c.call_tool(call(tool, json!({}))).await;
            assert!(r.as_ref().map_or(true, |r| !ok(r)), "{tool} ran: {r:?}");
        }
        // Held, then approved; held, then denied.
        for verb in ["approve", "deny"] {
            let held = hold("get-sum", json!({"a": 1, "b": 2}));
            let id = pending(&site, &gw, &bob, "get-sum");
            admin(&site, &gw, &bob, &["approvals", verb, &id]);
            let r = held.await.expect("task").expect("get-sum");
            assert_eq!(ok(&r), verb == "approve", "{verb}: {r:?}");
        }
        // Held until its approval expires (2 s).
        let r = c
            .call_tool(call("get-tiny-image", json!({})))
            .await
            .expect("get-tiny-image");
        assert!(!ok(&r), "{r:?}");
        // Held, then withdrawn by the caller.
        let request = ClientRequest::CallToolRequest(Request::new(call("get-sum", json!({"a": 3, "b": 4}))));
        let handle = c
            .peer()
            .send_cancellable_request(request, PeerRequestOptions::no_options())
            .await
            .expect("send");
        pending(&site, &gw, &bob, "get-sum");
        handle.cancel(Some("gave up".into())).await.expect("cancel");
        // Refused by the registry: the server is quarantined after its
        // session opened.
        admin(&site, &gw, &root, &["registry", "quarantine", "other"]);
        let r = on_other.call_tool(call("echo", json!({"message": "hi"}))).await;
        assert!(
            r.as_ref().map_or(true, |r| !ok(r)),
            "ran on a quarantined server: {r:?}"
        );
        // The withdrawal is recorded after the caller moved on; the rest
        // before each answer.
        wait_until("the withdrawal's refusal", Duration::from_secs(30), || {
            site.events()
                .iter()
                .any(|e| kind(e) == "call.refused" && body(e, "reason_code") == "approval_withdrawn")
        });
        // Cut off: the gateway is killed while a slow call is upstream,
        // after its request and decision are durable.
        let slow = hold("trigger-long-running-operation", json!({"duration": 60, "steps": 2}));
        wait_until("the slow call's decision", Duration::from_secs(30), || {
            site.events()
                .iter()
                .any(|e| kind(e) == "policy.decision" && e["subject"]["tool"] == "trigger-long-running-operation")
        });
        let _ = gw.child.kill();
        let _ = gw.child.wait();
        slow.abort();
    });
    drop(rt);
    site.verify();
    check_stories(&site.events());
}

/// Folds the log into calls and checks each one's story against what the
/// run did.
fn check_stories(events: &[Value]) {
    let at = |s: u64| events.iter().find(|e| seq(e) == s);
    // Every request is a call with a call id of its own.
    let mut calls: BTreeMap<String, u64> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| matches!(kind(e), "tool_call.requested" | "mcp.requested"))
    {
        let id = e["correlation"]["call_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no call id: {e}"));
        assert!(
            calls.insert(id.to_string(), seq(e)).is_none(),
            "call id {id} on two requests"
        );
    }
    // Every event answering a request carries its call id, and every
    // event with a call id is its call's request or answers it.
    for e in events {
        let answers = e["correlation"]["answers"].as_u64();
        let request = answers.and_then(at);
        if let Some(r) = request.filter(|r| matches!(kind(r), "tool_call.requested" | "mcp.requested")) {
            assert_eq!(e["correlation"]["call_id"], r["correlation"]["call_id"], "{e}");
        }
        if let Some(id) = e["correlation"]["call_id"].as_str() {
            let call = calls.get(id).unwrap_or_else(|| panic!("call id of no request: {e}"));
            assert!(seq(e) == *call || answers == Some(*call), "{e} is not of call {call}");
        }
    }

    // Each call's story: where it went and how it ended.
    let mut stories = Vec::new();
    for (id, call) in &calls {
        let request = at(*call).expect("request");
        let of = |k: &[&str]| -> Vec<&Value> {
            events
                .iter()
                .filter(|e| e["correlation"]["call_id"] == id.as_str() && k.contains(&kind(e)))
                .collect()
        };
        let decisions = of(&["policy.decision"]);
        assert_eq!(decisions.len(), 1, "call {call}: {decisions:?}");
        let decision = decisions[0];
        let terminal = of(&[
            "execution.completed",
            "execution.failed",
            "call.refused",
            "session.opened",
        ]);
        assert!(
            terminal.len() <= 1,
            "call {call} ends {} times: {terminal:?}",
            terminal.len()
        );
        let end = match terminal.first() {
            None => "cut off".to_string(),
            Some(t) if kind(t) == "call.refused" => {
                // A gate's refusal is the decision's, said again.
                if body(decision, "decision") == "DENY" {
                    assert_eq!(body(t, "refused_by"), body(decision, "gate"), "{t}");
                    assert_eq!(body(t, "reason_code"), body(decision, "reason_code"), "{t}");
                }
                format!("refused by {} {}", body(t, "refused_by"), body(t, "reason_code")).replace('"', "")
            }
            Some(t) => kind(t).to_string(),
        };
        let subject = &request["subject"];
        let target = subject["tool"]
            .as_str()
            .unwrap_or(body(request, "mcp.method.name").as_str().unwrap_or(""));
        let mut story = format!(
            "{} {target}: {}",
            subject["server"].as_str().unwrap_or(""),
            body(decision, "decision").as_str().unwrap_or("")
        );

        // Its approval events join it in one hop.
        for a in of(&[
            "approval.requested",
            "approval.granted",
            "approval.denied",
            "approval.expired",
        ]) {
            assert_eq!(a["correlation"]["answers"].as_u64(), Some(*call), "{a}");
            assert_eq!(
                a["correlation"]["request_id"], request["correlation"]["request_id"],
                "{a}"
            );
            for field in ["server", "tool", "env"] {
                assert_eq!(a["subject"][field], subject[field], "{field}: {a}");
            }
            let session = if kind(a) == "approval.requested" {
                &a["actor"]["session"]
            } else {
                body(a, "mcp.session.id")
            };
            assert_eq!(*session, request["actor"]["session"], "{a}");
            story.push_str(&format!(", {}", kind(a)));
        }
        stories.push(format!("{story}, {end}"));
    }
    // The approval events, by call id, are exactly those of the held calls
    // (none hangs off anything else).
    let approval_events = events.iter().filter(|e| kind(e).starts_with("approval.")).count();
    let joined = events
        .iter()
        .filter(|e| kind(e).starts_with("approval.") && e["correlation"]["call_id"].is_string())
        .count();
    assert_eq!(
        (approval_events, joined),
        (8, 8),
        "four held calls, each requested and decided"
    );

    stories.sort();
    let mut want = vec![
        "everything initialize: ALLOW, session.opened",
        "other initialize: ALLOW, session.opened",
        "everything echo: ALLOW, execution.completed",
        "everything get-env: DENY, refused by policy rule_deny",
        "everything no-such-tool: DENY, refused by pin tool_unpinned",
        "everything toggle-simulated-logging: DENY, refused by grant no_grant",
        "everything get-sum: REQUIRE_APPROVAL, approval.requested, approval.granted, execution.completed",
        "everything get-sum: REQUIRE_APPROVAL, approval.requested, approval.denied, refused by approval approval_denied",
        "everything get-tiny-image: REQUIRE_APPROVAL, approval.requested, approval.expired, refused by approval approval_expired",
        "everything get-sum: REQUIRE_APPROVAL, approval.requested, approval.expired, refused by approval approval_withdrawn",
        "other echo: DENY, refused by registry quarantined_server",
        "everything trigger-long-running-operation: ALLOW, cut off",
    ];
    want.sort();
    assert_eq!(stories, want, "the calls' stories:\n{}", stories.join("\n"));
}
