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
    // Labels for the reports: echo counts as a write (so an unapproved
    // high-risk write runs), and `shadow` is routed but not registered.
    let everything = stdio_server("everything", "node", &[&peers.everything, "stdio"])
        + "env = [\"prod\", \"eu\"]\nactions = { echo = \"write\", get-sum = \"write\" }\n";
    let other = stdio_server("other", "node", &[&peers.everything, "stdio"]) + "env = [\"staging\"]\n";
    let shadow = stdio_server("shadow", "node", &[&peers.everything, "stdio"])
        .replace("approve = true\n", "register = false\nenv = [\"prod\"]\n");
    // alice holds no grant for `toggle-*` tools.
    let grants: String = ["echo", "get-*", "trigger-*"]
        .iter()
        .map(|t| format!("[[grants]]\nprincipal = \"alice\"\nserver = \"*\"\ntool = \"{t}\"\n"))
        .collect();
    let site = Site::in_dir(
        dir,
        &format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\n[auth]\ntokens_file = \"{{dir}}/tokens.toml\"\n\
             [governance]\npolicy_file = \"{{dir}}/policy.yaml\"\n{everything}{other}{shadow}{grants}"
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
        assert!(connect("shadow").await.is_err(), "a session on an unregistered server");
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
    let events = site.events();
    check_stories(&events);
    check_views(&site, &events);
    check_reports(&site, &events);
    check_projections(&site, &events);
    check_parquet(&site);
}

/// `sealgate export parquet`, read by DuckDB: every report but `gates`
/// (its approximate percentile is DataFusion's own), run by DuckDB on its
/// printed SQL over the exported files, gives `sealgate report`'s rows
/// (time columns aside: the engines print times differently).
fn check_parquet(site: &Site) {
    let python = match std::env::var("SEALGATE_DUCKDB_PYTHON").ok().filter(|v| !v.is_empty()) {
        Some(p) => p,
        None => panic!("DuckDB not installed: run with tools/test.sh (tools/peers.sh installs it)"),
    };
    let out_dir = tempfile::tempdir().expect("tempdir");
    let dir = out_dir.path().join("export");
    let out = site
        .sealgate()
        .args(["export", "parquet", "--out"])
        .arg(&dir)
        .output()
        .expect("export parquet");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("manifest")).expect("json");
    assert_eq!(manifest["files"].as_array().map(Vec::len), Some(5), "{manifest}");
    let again = site
        .sealgate()
        .args(["export", "parquet", "--out"])
        .arg(&dir)
        .output()
        .expect("export parquet again");
    assert!(!again.status.success(), "a second export into the same directory");
    let script = r#"
import duckdb, json, sys
con = duckdb.connect()
for t in ['events', 'calls', 'decisions', 'approvals', 'sessions']:
    con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{sys.argv[1]}/{t}.parquet')")
cur = con.execute(sys.argv[2])
cols = [c[0] for c in cur.description]
print(json.dumps([dict(zip(cols, r)) for r in cur.fetchall()], default=str))
"#;
    let timeless = |rows: Vec<Value>| -> Vec<String> {
        normalise(
            rows.into_iter()
                .map(|mut r| {
                    if let Some(o) = r.as_object_mut() {
                        o.retain(|k, _| !(k == "ts" || k.ends_with("_at") || k.ends_with("_call")));
                    }
                    r
                })
                .collect(),
        )
    };
    for name in [
        "servers-touching",
        "calls-by-principal",
        "denials",
        "approvals",
        "drift",
        "refused-access",
        "output-safety",
    ] {
        let printed = site
            .sealgate()
            .args(["report", name, "--sql"])
            .output()
            .expect("report --sql");
        assert!(printed.status.success());
        let sql = String::from_utf8(printed.stdout).expect("utf8");
        let ran = std::process::Command::new(&python)
            .args(["-c", script])
            .arg(&dir)
            .arg(sql.trim().trim_end_matches(';'))
            .output()
            .expect("run duckdb");
        assert!(
            ran.status.success(),
            "duckdb {name}: {}",
            String::from_utf8_lossy(&ran.stderr)
        );
        let theirs: Vec<Value> = serde_json::from_slice(&ran.stdout).expect("duckdb json");
        let ours = report(site, name, &[]);
        assert!(
            !ours.is_empty() || matches!(name, "drift" | "output-safety"),
            "{name}: no rows to compare"
        );
        assert_eq!(
            timeless(theirs),
            timeless(ours),
            "{name}: DuckDB over the Parquet export vs sealgate report"
        );
    }
}

/// The projection tables equal `sealgate state`'s fold, at the head and as
/// of earlier points (before and after a server was quarantined, and
/// before anything was governed).
fn check_projections(site: &Site, events: &[Value]) {
    let quarantined = events
        .iter()
        .find(|e| kind(e) == "server.quarantined")
        .map(seq)
        .expect("the run quarantines a server");
    for at in [None, Some(0), Some(quarantined - 1), Some(quarantined)] {
        let mut cmd = site.sealgate();
        cmd.args(["state", "all"]);
        if let Some(at) = at {
            cmd.args(["--as-of", &at.to_string()]);
        }
        let out = cmd.output().expect("sealgate state");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let state: Value = serde_json::from_slice(&out.stdout).expect("state json");
        let state = &state["all"];
        let query = |sql: &str| -> Vec<Value> {
            let mut cmd = site.sealgate();
            cmd.args(["query", "--verify", "-o", "json", sql]);
            if let Some(at) = at {
                cmd.args(["--as-of", &at.to_string()]);
            }
            let out = cmd.output().expect("sealgate query");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success() && stderr.contains("verified:"), "{sql}: {stderr}");
            let doc: Value = serde_json::from_slice(&out.stdout).expect("json answer");
            doc["rows"].as_array().expect("rows").clone()
        };
        let servers = state["registry"]["servers"].as_object().cloned().unwrap_or_default();
        let want: Vec<Value> = servers
            .iter()
            .map(|(name, s)| {
                let pins = s["pins"].as_object().map_or(0, |p| p.len());
                json!({"server": name, "status": s["status"], "pins": pins})
            })
            .collect();
        let got = query("SELECT server, status, pins FROM servers");
        assert_eq!(normalise(got), normalise(want), "servers as of {at:?}");
        let want: Vec<Value> = state["grants"]["grants"]
            .as_object()
            .cloned()
            .unwrap_or_default()
            .keys()
            .map(|id| json!({"grant_id": id}))
            .collect();
        assert_eq!(
            normalise(query("SELECT grant_id FROM grants")),
            normalise(want),
            "grants as of {at:?}"
        );
        let want: Vec<Value> = state["policy"]["hash"]
            .as_str()
            .map(|h| json!({"policy_hash": h}))
            .into_iter()
            .collect();
        assert_eq!(
            normalise(query("SELECT policy_hash FROM policies")),
            normalise(want),
            "policy as of {at:?}"
        );
    }
}

/// `sealgate sql -o json --verify` over the run's ledger: its rows, and
/// the head and verdict.
fn sql(site: &Site, query: &str) -> Vec<Value> {
    let out = site
        .sealgate()
        .args(["sql", "--verify", "-o", "json", query])
        .output()
        .expect("run sealgate sql");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sealgate sql {query}: {stderr}");
    assert!(stderr.contains("verified:"), "{stderr}");
    let doc: Value = serde_json::from_slice(&out.stdout).expect("json answer");
    doc["rows"].as_array().expect("rows").clone()
}

/// The views `calls`, `approvals`, `decisions` and `sessions` say what a
/// straightforward fold of the log says, row for row.
fn check_views(site: &Site, events: &[Value]) {
    let text = |v: &Value| v.as_str().map(str::to_string);
    let ts = |e: &Value| {
        let t = e["ts"].as_str().expect("ts");
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .expect("rfc 3339")
            .unix_timestamp_nanos() as i64
    };
    let of_call = |id: &str, kinds: &[&str]| -> Option<&Value> {
        events
            .iter()
            .find(|e| e["correlation"]["call_id"] == id && kinds.contains(&kind(e)))
    };
    // calls: one row per request, with its decision, approval and end.
    let mut want = Vec::new();
    for q in events
        .iter()
        .filter(|e| matches!(kind(e), "tool_call.requested" | "mcp.requested"))
    {
        let id = q["correlation"]["call_id"].as_str().expect("call id");
        let d = of_call(id, &["policy.decision"]).expect("decision");
        let granted = of_call(id, &["approval.granted", "approval.denied", "approval.expired"]);
        let asked = of_call(id, &["approval.requested"]);
        let end = of_call(
            id,
            &[
                "execution.completed",
                "execution.failed",
                "call.refused",
                "session.opened",
            ],
        );
        want.push(json!({
            "seq": seq(q), "hash": q["hash"], "call_id": id, "principal": q["actor"]["principal"],
            "server": q["subject"]["server"], "tool": q["subject"]["tool"],
            "decision_seq": seq(d), "decision": body(d, "decision"), "reason_code": body(d, "reason_code"),
            "approval": asked.map(|_| granted.map_or("pending".into(), |g| kind(g).trim_start_matches("approval.").to_string())),
            "approver": granted.and_then(|g| text(&g["actor"]["principal"])),
            "end_kind": end.map(kind), "outcome": end.and_then(|e| text(body(e, "outcome"))),
        }));
    }
    let got = sql(
        site,
        "SELECT seq, hash, call_id, principal, server, tool, decision_seq, decision, reason_code, \
         approval, approver, end_kind, outcome FROM calls ORDER BY seq",
    );
    assert_eq!(normalise(got), normalise(want), "calls");

    // approvals: one row per request for approval, with its wait.
    let mut want = Vec::new();
    for r in events.iter().filter(|e| kind(e) == "approval.requested") {
        let id = body(r, "approval_id");
        let end = events.iter().find(|e| {
            kind(e) != "approval.requested" && kind(e).starts_with("approval.") && body(e, "approval_id") == id
        });
        want.push(json!({
            "seq": seq(r), "approval_id": id, "requester": r["actor"]["principal"],
            "status": end.map_or("pending".into(), |e| kind(e).trim_start_matches("approval.").to_string()),
            "approver": end.and_then(|e| text(&e["actor"]["principal"])),
            "wait_ns": end.map(|e| ts(e) - ts(r)),
        }));
    }
    let got = sql(
        site,
        "SELECT seq, approval_id, requester, status, approver, wait_ns FROM approvals",
    );
    assert_eq!(normalise(got), normalise(want), "approvals");

    // decisions and sessions: one row per event of their kind.
    let seqs = |k: &str| -> Vec<Value> {
        events
            .iter()
            .filter(|e| kind(e) == k)
            .map(|e| json!({"seq": seq(e)}))
            .collect()
    };
    assert_eq!(
        normalise(sql(site, "SELECT seq FROM decisions")),
        normalise(seqs("policy.decision"))
    );
    let opened = seqs("session.opened");
    assert_eq!(opened.len(), 2, "two sessions were opened");
    assert_eq!(normalise(sql(site, "SELECT seq FROM sessions")), normalise(opened));
}

/// `sealgate report NAME ARGS -o json --verify`: its rows.
fn report(site: &Site, name: &str, args: &[&str]) -> Vec<Value> {
    let out = site
        .sealgate()
        .args(["report", name, "--verify", "-o", "json"])
        .args(args)
        .output()
        .expect("run sealgate report");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sealgate report {name}: {stderr}");
    assert!(stderr.contains("verified:"), "{stderr}");
    let doc: Value = serde_json::from_slice(&out.stdout).expect("json answer");
    doc["rows"].as_array().expect("rows").clone()
}

/// The reports say what a straightforward fold of the log says.
fn check_reports(site: &Site, events: &[Value]) {
    // Each call folded: (request, decision, approval status, end).
    struct Call<'a> {
        q: &'a Value,
        d: &'a Value,
        approval: Option<&'a str>,
        end: Option<&'a Value>,
    }
    let of_call = |id: &Value, kinds: &[&str]| {
        events
            .iter()
            .find(|e| e["correlation"]["call_id"] == *id && kinds.contains(&kind(e)))
    };
    let calls: Vec<Call> = events
        .iter()
        .filter(|e| matches!(kind(e), "tool_call.requested" | "mcp.requested"))
        .map(|q| {
            let id = &q["correlation"]["call_id"];
            Call {
                q,
                d: of_call(id, &["policy.decision"]).expect("decision"),
                approval: of_call(id, &["approval.requested"]).map(|_| {
                    of_call(id, &["approval.granted", "approval.denied", "approval.expired"])
                        .map_or("pending", |g| kind(g).trim_start_matches("approval."))
                }),
                end: of_call(
                    id,
                    &[
                        "execution.completed",
                        "execution.failed",
                        "call.refused",
                        "session.opened",
                    ],
                ),
            }
        })
        .collect();
    let ran = |c: &Call| c.end.is_some_and(|e| kind(e).starts_with("execution."));
    let refused = |c: &Call| c.end.is_some_and(|e| kind(e) == "call.refused");
    let not_init = |c: &&Call| body(c.q, "mcp.method.name") != "initialize";

    // servers-touching: the prod servers, with what ran and was refused.
    let mut want: BTreeMap<String, (usize, usize, std::collections::BTreeSet<String>)> = BTreeMap::new();
    for c in calls.iter().filter(not_init) {
        let env = c.q["subject"]["env"].as_array().cloned().unwrap_or_default();
        if env.iter().any(|v| v == "prod") {
            let row = want
                .entry(c.q["subject"]["server"].as_str().expect("server").into())
                .or_default();
            row.0 += usize::from(ran(c));
            row.1 += usize::from(refused(c));
            row.2
                .insert(c.q["actor"]["principal"].as_str().expect("principal").into());
        }
    }
    let want: Vec<Value> = want
        .into_iter()
        .map(|(server, (run, refused, who))| json!({"server": server, "calls_run": run, "calls_refused": refused, "principals": who.len()}))
        .collect();
    let got: Vec<Value> = report(site, "servers-touching", &["--env", "prod"])
        .into_iter()
        .map(|r| json!({"server": r["server"], "calls_run": r["calls_run"], "calls_refused": r["calls_refused"], "principals": r["principals"]}))
        .collect();
    assert_eq!(normalise(got), normalise(want), "servers-touching prod");

    // calls-by-principal.
    let mut want: BTreeMap<String, [usize; 4]> = BTreeMap::new();
    for c in calls.iter().filter(not_init) {
        let row = want
            .entry(c.q["actor"]["principal"].as_str().expect("principal").into())
            .or_default();
        let d = body(c.d, "decision");
        row[0] += 1;
        row[1] += usize::from(d == "DENY");
        row[2] += usize::from(d == "REQUIRE_APPROVAL");
        row[3] += usize::from(ran(c));
    }
    let want: Vec<Value> = want
        .into_iter()
        .map(|(p, [n, denied, held, run])| json!({"principal": p, "calls": n, "denied": denied, "held": held, "run": run}))
        .collect();
    let got: Vec<Value> = report(site, "calls-by-principal", &[])
        .into_iter()
        .map(|r| json!({"principal": r["principal"], "calls": r["calls"], "denied": r["denied"], "held": r["held"], "run": r["run"]}))
        .collect();
    assert_eq!(normalise(got), normalise(want), "calls-by-principal");

    // denials: refused calls by server, what refused them and why.
    let mut want: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for c in calls.iter().filter(|c| refused(c)) {
        let end = c.end.expect("end");
        let key = (
            c.q["subject"]["server"].as_str().expect("server").to_string(),
            body(end, "refused_by").as_str().expect("refused_by").to_string(),
            body(end, "reason_code").as_str().expect("code").to_string(),
        );
        *want.entry(key).or_default() += 1;
    }
    let want: Vec<Value> = want
        .into_iter()
        .map(|((server, by, code), n)| json!({"server": server, "refused_by": by, "reason_code": code, "calls": n}))
        .collect();
    let got: Vec<Value> = report(site, "denials", &[])
        .into_iter()
        .map(
            |r| json!({"server": r["server"], "refused_by": r["refused_by"], "reason_code": r["reason_code"], "calls": r["calls"]}),
        )
        .collect();
    assert_eq!(normalise(got), normalise(want), "denials");

    // approvals: one row per request for approval.
    let asked = events.iter().filter(|e| kind(e) == "approval.requested").count();
    assert_eq!(report(site, "approvals", &[]).len(), asked, "approvals");

    // gates: each figure as the fold computes it.
    let gates = report(site, "gates", &[]);
    let gate = |name: &str| -> &Value {
        gates
            .iter()
            .find(|g| g["gate"].as_str().is_some_and(|n| n.starts_with(name)))
            .unwrap_or_else(|| panic!("no gate {name}: {gates:?}"))
    };
    let unapproved = calls
        .iter()
        .filter(|c| {
            ran(c)
                && matches!(body(c.d, "action").as_str(), Some("write" | "destructive"))
                && c.approval != Some("granted")
        })
        .count();
    assert!(unapproved > 0, "the run executes an unapproved write (echo)");
    assert_eq!(gate("unapproved high-risk writes")["value"], json!(unapproved as f64));
    assert_eq!(gate("unapproved high-risk writes")["status"], "FAIL");
    let unknown = events
        .iter()
        .filter(|e| kind(e) == "policy.decision" && body(e, "reason_code") == "unregistered_server")
        .count();
    assert_eq!(unknown, 1, "the shadow server was asked for once");
    assert_eq!(gate("unknown-server connections")["value"], json!(1.0));
    assert_eq!(gate("unknown-server connections")["status"], "FAIL");
    assert_eq!(gate("output quarantine ratio")["value"], json!(0.0));
    assert_eq!(gate("output quarantine ratio")["status"], "PASS");
    // Median wait of the decided approvals (exact), and the p95 of the
    // time to decide (interpolated: between the two ranks around it).
    let ts = |e: &Value| {
        time::OffsetDateTime::parse(
            e["ts"].as_str().expect("ts"),
            &time::format_description::well_known::Rfc3339,
        )
        .expect("rfc 3339")
        .unix_timestamp_nanos() as f64
    };
    let mut waits: Vec<f64> = events
        .iter()
        .filter(|e| matches!(kind(e), "approval.granted" | "approval.denied" | "approval.expired"))
        .map(|e| {
            let asked = events
                .iter()
                .find(|r| kind(r) == "approval.requested" && body(r, "approval_id") == body(e, "approval_id"))
                .expect("its request");
            (ts(e) - ts(asked)) / 1e9
        })
        .collect();
    waits.sort_by(f64::total_cmp);
    assert_eq!(waits.len(), 4, "four approvals were decided");
    let median = (waits[1] + waits[2]) / 2.0;
    let got = gate("approval queue median wait")["value"].as_f64().expect("a median");
    assert!((got - median).abs() < 1e-6, "median wait {got}, the fold's {median}");
    let mut took: Vec<f64> = events
        .iter()
        .filter(|e| kind(e) == "policy.decision")
        .map(|e| {
            body(e, "decision_ns")
                .as_u64()
                .expect("every decision records its time") as f64
                / 1e6
        })
        .collect();
    took.sort_by(f64::total_cmp);
    let rank = 0.95 * (took.len() - 1) as f64;
    let (lo, hi) = (took[rank.floor() as usize], took[rank.ceil() as usize]);
    let got = gate("policy decision latency p95")["value"].as_f64().expect("a p95");
    assert!(
        lo - 1e-9 <= got && got <= hi + 1e-9,
        "p95 {got} ms, the fold's lies in {lo}..={hi}"
    );
}

/// Rows without their null members, sorted, for comparing answers.
fn normalise(rows: Vec<Value>) -> Vec<String> {
    let mut out: Vec<String> = rows
        .into_iter()
        .map(|mut r| {
            if let Some(o) = r.as_object_mut() {
                o.retain(|_, v| !v.is_null());
            }
            r.to_string()
        })
        .collect();
    out.sort();
    out
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
        "shadow initialize: DENY, refused by registry unregistered_server",
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
