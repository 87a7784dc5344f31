//! Findable redactions end to end: a real `sealgate serve`, a real MCP
//! server (a small Python `mcp` SDK server written by the test) and a real
//! MCP client (rmcp). A customer's email address in a call's arguments,
//! its result and an upstream's error is redacted everywhere, yet the call
//! is found by the address and by the customer id inside it, through
//! `sealgate find` and the admin API; the value is in no file of the data
//! directory, not in `sealgate log -o json` and not in the gateway's log.

mod support;

use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RoleClient, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ServiceExt, model::ErrorCode};
use serde_json::{Value, json};
use support::*;

const ADDRESS: &str = "billing+cust-4711@example.com";
const CUSTOMER: &str = "cust-4711";
/// Another customer, looked up in the same session.
const OTHER: &str = "billing+cust-0815@example.com";

/// What must be stored nowhere. (Not `4711` alone: hex digits of hashes
/// and signatures hold it by chance.)
const NEEDLES: [&str; 4] = [ADDRESS, CUSTOMER, OTHER, "cust-0815"];

/// `lookup` answers with the address it was given (a result to redact);
/// `fail` answers with a JSON-RPC error quoting it.
const CRM_SERVER: &str = r#"
from mcp import MCPError
from mcp.server.mcpserver import MCPServer

app = MCPServer("crm")


@app.tool(structured_output=False)
def lookup(customer: str) -> str:
    """Looks up a customer's account."""
    return f"account of {customer}: 3 open invoices"


@app.tool(structured_output=False)
def fail(customer: str) -> str:
    """Fails for a customer."""
    raise MCPError(-32000, f"no account for {customer}")


app.run("stdio")
"#;

fn crm_site(peers: &Peers) -> Site {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("policy.yaml"),
        "version: v1\noutput: { secrets: redact, pii: redact }\nrules:\n  - id: allow-all\n    decision: ALLOW\n",
    )
    .expect("write the policy");
    let script = dir.path().join("crm.py");
    std::fs::write(&script, CRM_SERVER).expect("write the server");
    let crm = stdio_server("crm", &peers.python, &[&script.to_string_lossy()]);
    Site::in_dir(
        dir,
        &format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\n[auth]\ntokens_file = \"{{dir}}/tokens.toml\"\n\
             [governance]\npolicy_file = \"{{dir}}/policy.yaml\"\n{crm}\n\
             [[grants]]\nprincipal = \"alice\"\nserver = \"crm\"\n"
        ),
    )
}

type Client = RunningService<RoleClient, ()>;

async fn connect(url: &str, token: &str) -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = StreamableHttpClientTransportConfig::with_uri(url.to_string()).auth_header(token.to_string());
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
        .expect("an MCP session through the gateway")
}

async fn call(client: &Client, tool: &str, customer: &str) -> Result<CallToolResult, ServiceError> {
    let args = json!({ "customer": customer });
    client
        .call_tool(
            CallToolRequestParams::new(tool.to_string()).with_arguments(args.as_object().cloned().unwrap_or_default()),
        )
        .await
}

/// `POST /admin/find` with `body`: status and JSON answer.
async fn admin_find(gw: &Served, token: &str, body: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/admin/find", gw.base))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("POST /admin/find");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("the answer");
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, v)
}

/// (seq, kind, fields) of each match of an admin API answer.
fn api_matches(answer: &Value) -> Vec<(u64, String, Vec<String>)> {
    answer["matches"]
        .as_array()
        .unwrap_or_else(|| panic!("no matches list: {answer}"))
        .iter()
        .map(|m| {
            let fields = m["fields"]
                .as_array()
                .map(|f| f.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default();
            (seq(m), m["kind"].as_str().unwrap_or_default().to_string(), fields)
        })
        .collect()
}

/// `sealgate find ARGS -o json` (the value on stdin when `stdin` is given):
/// (seq, kind, found_in) of each line, and everything it printed.
fn cli_find(site: &Site, args: &[&str], stdin: Option<&str>) -> (Vec<(u64, String, Vec<String>)>, String) {
    use std::io::Write;
    let mut cmd = site.sealgate();
    cmd.arg("find").args(args).args(["-o", "json"]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("run sealgate find");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write the value");
    }
    drop(input);
    let out = child.wait_with_output().expect("sealgate find");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "sealgate find {args:?}: {stderr}");
    let found = stdout
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("a JSON line");
            let fields = v["found_in"]
                .as_array()
                .map(|f| f.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default();
            (
                v["seq"].as_u64().unwrap_or(u64::MAX),
                v["event"]["kind"].as_str().unwrap_or_default().to_string(),
                fields,
            )
        })
        .collect();
    (found, format!("{stdout}{stderr}"))
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn a_redacted_customer_id_is_found_and_stored_nowhere() {
    let peers = peers();
    let site = crm_site(&peers);
    let alice = site.create_token("alice", &[], &[]);
    let auditor = site.create_token("audrey", &[], &["auditor"]);
    let approver = site.create_token("bob", &[], &["approver"]);
    // A ledger made before find keys existed: `init` makes one, which is
    // removed; `serve` makes a new one (0600, 32 bytes) in its place.
    let init = site.sealgate().arg("init").output().expect("sealgate init");
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let keys = site.path("data").join("keys");
    let find_key = || {
        regular_files(&keys)
            .into_iter()
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("find-")))
    };
    std::fs::remove_file(find_key().expect("init made a find key")).expect("remove the find key");
    let gw = site.serve();
    let made = find_key().expect("serve made a find key");
    let meta = std::fs::metadata(&made).expect("find key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        (meta.permissions().mode() & 0o777, meta.len()),
        (0o600, 32),
        "{}",
        made.display()
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");

    let (looked_up, failed, api) = rt.block_on(async {
        let client = connect(&gw.url("crm"), &alice).await;
        let looked_up = call(&client, "lookup", ADDRESS).await.expect("lookup");
        call(&client, "lookup", OTHER).await.expect("lookup the other customer");
        let failed = call(&client, "fail", ADDRESS).await;
        let _ = client.cancel().await;

        let mut api = Vec::new();
        for body in [
            json!({ "value": CUSTOMER }).to_string(),
            json!({ "value": ADDRESS.to_uppercase() }).to_string(),
            json!({ "value": "cust-0000" }).to_string(),
            json!({ "value": "cust-0815" }).to_string(),
        ] {
            api.push(admin_find(&gw, &auditor, &body).await);
        }
        // A range (sequence numbers, inclusive): the failed call's request
        // only. Its seq is found below; 1 past the first call's outcome is
        // a lower bound of the range that leaves the first call out.
        let first = admin_find(&gw, &auditor, &json!({ "value": CUSTOMER }).to_string()).await;
        let after_lookup = first.1["matches"][1]["seq"].as_u64().unwrap_or(0) + 1;
        let fail_request = first.1["matches"][2]["seq"].as_u64().unwrap_or(0);
        api.push(
            admin_find(
                &gw,
                &auditor,
                &json!({ "value": CUSTOMER, "from": after_lookup, "to": fail_request }).to_string(),
            )
            .await,
        );
        // Only auditors (and admins) may search; approvers and callers not.
        let refused = [
            admin_find(&gw, &approver, &json!({ "value": CUSTOMER }).to_string()).await,
            admin_find(&gw, &alice, &json!({ "value": CUSTOMER }).to_string()).await,
        ];
        // Bad input is refused without quoting the value.
        let bad = [
            admin_find(&gw, &auditor, &json!({ "value": "47" }).to_string()).await,
            admin_find(&gw, &auditor, &json!({ "value": 4711, "x": CUSTOMER }).to_string()).await,
            admin_find(&gw, &auditor, &format!("{{\"value\": \"{CUSTOMER}")).await,
        ];
        (looked_up, failed, (api, refused, bad))
    });
    let (api, refused, bad) = api;

    // The client got everything redacted.
    let got = serde_json::to_string(&looked_up).expect("JSON");
    assert!(!got.contains(CUSTOMER) && got.contains("[REDACTED:email]"), "{got}");
    match failed {
        Err(ServiceError::McpError(e)) => {
            assert_eq!(e.code, ErrorCode(-32000), "{e:?}");
            assert!(!e.message.contains(CUSTOMER), "{e:?}");
        }
        other => panic!("fail must answer with a JSON-RPC error, got {other:?}"),
    }

    // The admin API finds the call by the customer id and by the whole
    // address (in any case): its request (arguments), its result, and the
    // failed call's request and error; not the other customer's call.
    let events_now = site.events();
    let calls = audited_calls(&events_now);
    let requests: Vec<&Value> = calls.iter().map(|(r, _, _)| r).collect();
    let outcome_of =
        |request: &Value| -> u64 { seq(&calls.iter().find(|(r, _, _)| seq(r) == seq(request)).expect("call").2) };
    let customer_of = |r: &Value| body(r, "arguments")["json"].as_str().unwrap_or_default().to_string();
    assert_eq!(requests.len(), 3, "{requests:#?}");
    assert!(
        requests.iter().all(|r| customer_of(r).contains("[REDACTED:email]")),
        "{requests:#?}"
    );
    let (lookup, other, fail) = (requests[0], requests[1], requests[2]);
    let expected = vec![
        (
            seq(lookup),
            "tool_call.requested".to_string(),
            vec!["arguments".to_string()],
        ),
        (
            outcome_of(lookup),
            "execution.completed".to_string(),
            vec!["result".to_string()],
        ),
        (
            seq(fail),
            "tool_call.requested".to_string(),
            vec!["arguments".to_string()],
        ),
        (
            outcome_of(fail),
            "execution.failed".to_string(),
            vec!["error".to_string()],
        ),
    ];
    for (status, answer) in &api[..2] {
        assert_eq!(*status, 200, "{answer}");
        assert_eq!(api_matches(answer), expected, "{answer:#}");
    }
    let first = &api[0].1["matches"][0];
    assert_eq!(first["principal"], "alice", "{first}");
    assert_eq!(first["server"], "crm", "{first}");
    assert_eq!(first["target"], "lookup", "{first}");
    assert_eq!(first["request_seq"], json!(seq(lookup)), "{first}");
    assert_eq!(api[0].1["matches"][1]["request_seq"], json!(seq(lookup)));
    // Another id finds nothing; the other customer's id finds only theirs.
    assert_eq!(api[2].0, 200, "{}", api[2].1);
    assert!(api_matches(&api[2].1).is_empty(), "{}", api[2].1);
    let theirs: Vec<u64> = api_matches(&api[3].1).iter().map(|m| m.0).collect();
    assert_eq!(theirs, [seq(other), outcome_of(other)], "{}", api[3].1);
    assert_eq!(api[4].0, 200, "{}", api[4].1);
    assert_eq!(api_matches(&api[4].1), expected[2..3], "{}", api[4].1);
    assert_eq!(api[4].1["from"], json!(outcome_of(lookup) + 1), "{}", api[4].1);
    assert_eq!(api[4].1["to"], json!(seq(fail)), "{}", api[4].1);
    let whole = &api[0].1;
    assert_eq!(whole["from"], 0, "{whole}");
    assert!(
        whole["to"].as_u64() >= Some(outcome_of(fail)) && whole["events_read"].as_u64() > whole["to"].as_u64(),
        "the whole log is searched by default: {whole}"
    );
    for (status, answer) in &refused {
        assert_eq!(*status, 403, "{answer}");
    }
    for (status, answer) in &bad {
        assert_eq!(*status, 400, "{answer}");
        let text = answer.to_string();
        assert!(!text.contains("4711") && !text.contains("cust"), "{text}");
    }

    // `sealgate find` gives the same answer, reading the ledger itself,
    // with the value as an argument or on stdin (while the gateway runs).
    let (found, printed) = cli_find(&site, &["--value", CUSTOMER], None);
    assert_eq!(found, expected, "{printed}");
    let (found, printed_stdin) = cli_find(&site, &["--value-stdin"], Some(&format!("{ADDRESS}\n")));
    assert_eq!(found, expected, "{printed_stdin}");
    let (found, _) = cli_find(&site, &["--value", "cust-0000"], None);
    assert!(found.is_empty(), "{found:?}");
    let (found, _) = cli_find(&site, &["--value", CUSTOMER, "--from", &seq(other).to_string()], None);
    assert_eq!(found, expected[2..], "--from leaves out what is before it");
    let table = site
        .sealgate()
        .args(["find", "--value", CUSTOMER])
        .output()
        .expect("sealgate find");
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(table.contains("crm/lookup") && table.contains("arguments"), "{table}");
    for out in [&printed, &printed_stdin, &table] {
        assert!(!out.contains(CUSTOMER), "sealgate find printed the value: {out}");
    }

    wait_until("the search in the gateway's log", Duration::from_secs(10), || {
        site.log().contains("a search by value")
    });
    gw.stop();
    site.verify();

    // The value is nowhere: not in any file of the data dir (the RocksDB
    // files, snapshots), not in the exported log, not in the gateway's log.
    let data = site.path("data");
    let all = regular_files(&data);
    assert!(
        all.iter().any(|p| p.starts_with(data.join("ledger"))),
        "no ledger files under {}",
        data.display()
    );
    for path in &all {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for needle in NEEDLES {
            assert!(!holds(&bytes, needle), "{} holds {needle:?}", path.display());
        }
    }
    let exported = site
        .sealgate()
        .args(["log", "-o", "json"])
        .output()
        .expect("sealgate log");
    assert!(exported.status.success());
    let log = site.log();
    for needle in NEEDLES {
        assert!(
            !holds(&exported.stdout, needle),
            "sealgate log -o json holds {needle:?}"
        );
        assert!(!log.contains(needle), "the gateway's log holds {needle:?}");
    }
    // What is there instead: digests beside the redacted fields.
    let findable = body(lookup, "arguments")["findable"]
        .as_array()
        .unwrap_or_else(|| panic!("no arguments.findable: {lookup}"));
    assert!(
        findable
            .iter()
            .all(|d| d.as_str().is_some_and(|d| d.starts_with("mac:") && d.len() == 20)),
        "{lookup}"
    );
}
