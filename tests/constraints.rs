//! ALLOW_WITH_CONSTRAINTS end to end, with the official server-everything
//! (and a scripted upstream that logs what it receives): a runtime limit
//! ends the call at the limit, tells the upstream it is cancelled
//! (`notifications/cancelled`) and records a timeout; a
//! result over `max_result_bytes` is truncated (and recorded so) or, with
//! `on_oversize: refuse`, withheld; `max_retries` bounds repeated attempts
//! of the same call in a session.

mod support;

use serde_json::Value;
use support::*;

const POLICY: &str = "version: v1
output: { secrets: allow, pii: allow }
rules:
  - id: slow-ops
    match: { tool: [trigger-long-running-operation, hang] }
    decision: ALLOW_WITH_CONSTRAINTS
    constraints: { max_runtime_sec: 2 }
  - id: small-echo
    match: { tool: echo }
    decision: ALLOW_WITH_CONSTRAINTS
    constraints: { max_result_bytes: 300 }
  - id: no-big-sums
    match: { tool: get-sum }
    decision: ALLOW_WITH_CONSTRAINTS
    constraints: { max_result_bytes: 10, on_oversize: refuse }
  - id: one-retry
    match: { tool: get-env }
    decision: ALLOW_WITH_CONSTRAINTS
    constraints: { max_retries: 1 }
";

#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn runtime_size_and_retry_constraints_apply_and_are_recorded() {
    let peers = peers();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("policy.yaml"), POLICY).expect("policy");
    let scripted = repo().join("tests/data/scripted_upstream.py");
    let config = format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\nanonymous_principal = \"agent\"\n\
         [governance]\npolicy_file = \"{{dir}}/policy.yaml\"\n{}{}environment = {{ SCRIPTED_LOG = \"{{dir}}/scripted.log\" }}\n\
         \n[[grants]]\nprincipal = \"*\"\nserver = \"*\"\n",
        stdio_server("everything", "node", &[&peers.everything, "stdio"]),
        stdio_server("scripted", &peers.python, &[&scripted.to_string_lossy()]),
    );
    let site = Site::in_dir(dir, &config);
    let gw = site.serve();
    let call = |tool: &str, args: &str| scenario(&peers, &["--call", tool, "--args", args, &gw.url("everything")]);

    // max_runtime_sec: cancelled after 2 s although the tool wants 20 (the
    // time it took is checked in the ledger below).
    let slow = call("trigger-long-running-operation", r#"{"duration": 20, "steps": 2}"#);
    assert_eq!(slow["error"]["code"], -32053, "{slow:#}");
    // The same limit on a tool that never answers, on an upstream that logs
    // what it receives: it is told the call is cancelled.
    let hung = scenario(&peers, &["--call", "hang", "--timeout", "60", &gw.url("scripted")]);
    assert_eq!(hung["error"]["code"], -32053, "{hung:#}");

    // max_result_bytes with truncate (the default).
    let long = "x".repeat(2000);
    let echoed = call("echo", &format!(r#"{{"message": "{long}"}}"#));
    let text = echoed["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        text.len() < 300 && text.ends_with("[truncated by sealgate]"),
        "{echoed:#}"
    );

    // max_result_bytes with refuse.
    let sum = call("get-sum", r#"{"a": 1, "b": 2}"#);
    assert_eq!(sum["error"]["code"], -32056, "{sum:#}");

    gw.stop();
    site.verify();
    let events = site.events();
    for e in &events {
        eprintln!(
            "{} {} {} {}",
            seq(e),
            kind(e),
            e["subject"]["tool"],
            e["correlation"]["answers"]
        );
    }
    let calls = audited_calls(&events);
    // Each timed-out call ended at its 2 s limit: not before, and not long
    // after (a loaded machine's scheduling, not the upstream's 20 s).
    for tool in ["trigger-long-running-operation", "hang"] {
        let (_, decision, outcome) = find_call(&calls, "tools/call", Some(tool));
        assert_eq!(body(decision, "decision"), "ALLOW_WITH_CONSTRAINTS");
        assert_eq!(body(decision, "constraints")["max_runtime_sec"], 2);
        assert_eq!(body(outcome, "outcome"), "timeout", "{tool}: {outcome}");
        let took = body(outcome, "duration_ns").as_u64().expect("duration_ns");
        assert!(
            (2_000_000_000..5_000_000_000).contains(&took),
            "{tool}: the call was ended {took} ns after it was forwarded, not at its 2 s limit"
        );
    }
    // The upstream received the call, then its cancellation (by the id the
    // gateway forwarded it with).
    let received: Vec<Value> = std::fs::read_to_string(site.path("scripted.log"))
        .expect("the scripted upstream's log")
        .lines()
        .map(|l| serde_json::from_str::<String>(l).expect("log line"))
        .map(|l| serde_json::from_str(&l).expect("a JSON message"))
        .collect();
    let forwarded = received
        .iter()
        .find(|m| m["method"] == "tools/call" && m["params"]["name"] == "hang")
        .expect("the upstream received the call");
    assert!(
        received
            .iter()
            .any(|m| m["method"] == "notifications/cancelled" && m["params"]["requestId"] == forwarded["id"]),
        "the upstream was not told the call was cancelled: {received:#?}"
    );
    let (_, _, outcome) = find_call(&calls, "tools/call", Some("echo"));
    assert_eq!(body(outcome, "result")["delivered_truncated"], true, "{outcome}");
    assert_eq!(
        body(outcome, "result")["original_bytes"].as_u64().map(|b| b > 2000),
        Some(true)
    );
    let (_, _, outcome) = find_call(&calls, "tools/call", Some("get-sum"));
    assert_eq!(body(outcome, "outcome"), "refused_oversize", "{outcome}");
}

#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn max_retries_bounds_the_same_call_in_a_session() {
    let peers = peers();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("policy.yaml"), POLICY).expect("policy");
    let config = format!(
        "[governance]\npolicy_file = \"{{dir}}/policy.yaml\"\n{}\n[[grants]]\nprincipal = \"*\"\nserver = \"*\"\n",
        stdio_server("everything", "node", &[&peers.everything, "stdio"])
    );
    let site = Site::in_dir(dir, &config);
    // One stdio session making the same call three times: with max_retries 1
    // the third attempt is refused.
    let script = r#"import asyncio, json, sys
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

async def main():
    params = StdioServerParameters(command=sys.argv[1], args=sys.argv[2:])
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            await s.list_tools()
            out = []
            for _ in range(3):
                res = await s.call_tool("get-env", {})
                out.append(bool(res.is_error))
            print(json.dumps(out))

asyncio.run(main())
"#;
    let path = site.path("retries.py");
    std::fs::write(&path, script).expect("script");
    let config_path = site.config.to_string_lossy().to_string();
    let out = std::process::Command::new(&peers.python)
        .arg(&path)
        .args([
            &sealgate_bin(),
            "--config",
            &config_path,
            "stdio",
            "--server",
            "everything",
        ])
        .output()
        .expect("run client");
    let errors: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(errors, serde_json::json!([false, false, true]), "{errors}");
    site.verify();
    let decisions: Vec<Value> = site
        .events()
        .into_iter()
        .filter(|e| kind(e) == "policy.decision" && e["subject"]["tool"] == "get-env")
        .collect();
    assert_eq!(decisions.len(), 3);
    assert_eq!(body(&decisions[2], "decision"), "DENY");
    assert!(
        body(&decisions[2], "reason")
            .as_str()
            .is_some_and(|r| r.contains("max_retries 1")),
        "{}",
        decisions[2]
    );
}
