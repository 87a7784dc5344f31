//! Per-user upstream credentials end to end: a real `sealgate serve` with
//! static-token callers, a real streamable-HTTP MCP upstream (the Python
//! `mcp` SDK, run by the test) that records every request's
//! `Authorization` headers, and a real stdio MCP upstream that records the
//! credential variable it was started with; the real Python MCP client
//! calls through the gateway.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use sha2::{Digest, Sha256};
use support::*;

/// A streamable-HTTP MCP server (`whoami`) behind an ASGI wrapper that
/// appends, for every HTTP request it answers, the method, the MCP session
/// (asked for or given), every `Authorization` header and the body.
const HTTP_UPSTREAM: &str = r#"
import json
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer

port, record = int(sys.argv[1]), sys.argv[2]
app = MCPServer("whoami")


@app.tool(structured_output=False)
def whoami(caller: str) -> str:
    """Greets the caller."""
    return f"hello {caller}"


inner = app.streamable_http_app()


async def recording(scope, receive, send):
    if scope["type"] != "http":
        return await inner(scope, receive, send)
    asked = dict((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"])
    authorization = [v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"authorization"]
    body = bytearray()

    async def rx():
        message = await receive()
        if message["type"] == "http.request":
            body.extend(message.get("body", b""))
        return message

    async def tx(message):
        if message["type"] == "http.response.start":
            given = dict((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in message.get("headers", []))
            with open(record, "a") as f:
                f.write(json.dumps({
                    "method": scope["method"],
                    "session": asked.get("mcp-session-id") or given.get("mcp-session-id"),
                    "authorization": authorization,
                    "body": body.decode("utf-8", "replace"),
                }) + "\n")
        await send(message)

    await inner(scope, rx, tx)


uvicorn.run(recording, host="127.0.0.1", port=port, log_level="warning")
"#;

/// A stdio MCP server that records `$GITHUB_TOKEN` when it starts and at
/// each `whoami` call, and prints it on stderr (which the gateway logs).
const STDIO_UPSTREAM: &str = r#"
import json
import os
import sys

from mcp.server.mcpserver import MCPServer

record = os.environ["RECORD"]
token = os.environ.get("GITHUB_TOKEN")
app = MCPServer("local")


@app.tool(structured_output=False)
def whoami(caller: str) -> str:
    """Greets the caller."""
    with open(record, "a") as f:
        f.write(json.dumps({"caller": caller, "token": token}) + "\n")
    return f"hello {caller}"


with open(record, "a") as f:
    f.write(json.dumps({"start": token}) + "\n")
print(f"starting with GITHUB_TOKEN={token}", file=sys.stderr, flush=True)
app.run("stdio")
"#;

/// The secrets: plain words, so that no output-safety detector would find
/// them and only the credential handling keeps them out of the records.
const ALICE: &str = "alice-upstream-key-one";
const ALICE_ROTATED: &str = "alice-upstream-key-two";
const BOB: &str = "bob-upstream-key-one";
const GATEWAY: &str = "gateway-upstream-key-one";
const ALICE_LOCAL: &str = "alice-local-key-one";
const BOB_LOCAL: &str = "bob-local-key-one";
const GATEWAY_LOCAL: &str = "gateway-local-key-one";
const SECRETS: [&str; 7] = [
    ALICE,
    ALICE_ROTATED,
    BOB,
    GATEWAY,
    ALICE_LOCAL,
    BOB_LOCAL,
    GATEWAY_LOCAL,
];

/// A child killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn private(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write a credential");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
}

fn fingerprint(secret: &str) -> String {
    format!("sha256:{}", &hex::encode(Sha256::digest(secret.as_bytes()))[..16])
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a record line"))
        .collect()
}

/// Every file under `dir`, recursively.
fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn call(peers: &Peers, gw: &Served, server: &str, token: &str, caller: &str) -> Value {
    scenario(
        peers,
        &[
            "--call",
            "whoami",
            "--args",
            &format!("{{\"caller\": \"{caller}\"}}"),
            "--header",
            &format!("Authorization: Bearer {token}"),
            &gw.url(server),
        ],
    )
}

fn text_of(report: &Value) -> String {
    report["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn each_caller_reaches_the_upstream_with_their_own_credential_and_no_event_holds_it() {
    let peers = peers();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();

    // The HTTP upstream's credentials: a directory, one file per principal
    // (`ops:bob` encoded); the stdio upstream's: one TOML file.
    let creds = root.join("creds");
    std::fs::create_dir(&creds).expect("mkdir");
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o700)).expect("chmod 700");
    private(&creds.join("alice"), &format!("{ALICE}\n"));
    private(&creds.join("ops%3Abob"), &format!("{BOB}\n"));
    private(&creds.join("sealgate%3Agateway"), GATEWAY);
    private(
        &root.join("local-creds.toml"),
        &format!(
            "alice = \"{ALICE_LOCAL}\"\n\"ops:bob\" = \"{BOB_LOCAL}\"\n\"sealgate:gateway\" = \"{GATEWAY_LOCAL}\"\n"
        ),
    );

    let http_record = root.join("http-record.jsonl");
    let stdio_record = root.join("stdio-record.jsonl");
    std::fs::write(root.join("http_upstream.py"), HTTP_UPSTREAM).expect("write");
    std::fs::write(root.join("stdio_upstream.py"), STDIO_UPSTREAM).expect("write");
    let port = free_port();
    let _upstream = Running(
        Command::new(&peers.python)
            .arg(root.join("http_upstream.py"))
            .arg(port.to_string())
            .arg(&http_record)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join("upstream.log")).expect("log"))
            .spawn()
            .expect("start the HTTP upstream"),
    );
    wait_for_port(port);

    let site = Site::in_dir(
        dir,
        &format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\n[auth]\ntokens_file = \"{{dir}}/tokens.toml\"\n\
             [servers.remote]\ntransport = \"http\"\nurl = \"http://127.0.0.1:{port}/mcp\"\napprove = true\n\
             [servers.remote.credentials]\ndir = \"{{dir}}/creds\"\n\
             [servers.local]\ntransport = \"stdio\"\ncommand = {}\nargs = [\"{{dir}}/stdio_upstream.py\"]\napprove = true\n\
             environment = {{ RECORD = \"{{dir}}/stdio-record.jsonl\" }}\n\
             [servers.local.credentials]\nfile = \"{{dir}}/local-creds.toml\"\nenv = \"GITHUB_TOKEN\"\n",
            q(&peers.python)
        ),
    );
    let alice = create_token(&site, "alice", &[]);
    let bob = create_token(&site, "ops:bob", &[]);
    let carol = create_token(&site, "carol", &[]);
    let gw = site.serve();

    for server in ["remote", "local"] {
        for (token, caller) in [(&alice, "alice"), (&bob, "bob")] {
            let report = call(&peers, &gw, server, token, caller);
            assert_eq!(report["ok"], true, "{caller} on {server}: {report:#}");
            assert_eq!(text_of(&report), format!("hello {caller}"), "{report:#}");
        }
        // Carol has no credential: no session, whatever her grants.
        let report = call(&peers, &gw, server, &carol, "carol");
        assert_eq!(report["ok"], false, "carol on {server}: {report:#}");
        assert_eq!(report["request"], "initialize", "{report:#}");
    }
    // Rotated in place: the next session uses the new file, no restart.
    private(&creds.join("alice"), &format!("{ALICE_ROTATED}\n"));
    let report = call(&peers, &gw, "remote", &alice, "alice-again");
    assert_eq!(report["ok"], true, "{report:#}");

    // The HTTP upstream: every request carried exactly one Authorization,
    // the credential of the caller of its session (the gateway's own in
    // the sessions that only listed tools), never a gateway token.
    let records = lines(&http_record);
    assert!(!records.is_empty(), "the HTTP upstream recorded nothing");
    let mut sessions: std::collections::BTreeMap<String, Vec<&Value>> = Default::default();
    for r in &records {
        let auth: Vec<&str> = r["authorization"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert_eq!(auth.len(), 1, "not one Authorization: {r}");
        for token in [&alice, &bob, &carol] {
            assert!(
                !auth[0].contains(token.as_str()),
                "a gateway token reached the upstream: {r}"
            );
        }
        let session = r["session"].as_str().unwrap_or_else(|| panic!("no session: {r}"));
        sessions.entry(session.to_string()).or_default().push(r);
    }
    let mut seen = std::collections::BTreeMap::new();
    for (id, requests) in &sessions {
        let caller = requests
            .iter()
            .filter_map(|r| serde_json::from_str::<Value>(r["body"].as_str().unwrap_or("")).ok())
            .find(|b| b["method"] == "tools/call")
            .map(|b| {
                b["params"]["arguments"]["caller"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            });
        let want = match caller.as_deref() {
            Some("alice") => ALICE,
            Some("alice-again") => ALICE_ROTATED,
            Some("bob") => BOB,
            None => GATEWAY,
            Some(other) => panic!("session {id}: a call by {other:?} reached the upstream"),
        };
        for r in requests {
            assert_eq!(
                r["authorization"][0].as_str(),
                Some(format!("Bearer {want}").as_str()),
                "session {id} of {caller:?}: {r}"
            );
        }
        *seen.entry(caller.unwrap_or_else(|| "gateway".into())).or_insert(0) += 1;
    }
    for who in ["alice", "alice-again", "bob", "gateway"] {
        assert!(seen.contains_key(who), "no upstream session of {who}: {seen:?}");
    }

    // The stdio upstream: each caller's process had the caller's own.
    let records = lines(&stdio_record);
    let token_of = |caller: &str| {
        records
            .iter()
            .filter(|r| r["caller"] == caller)
            .map(|r| r["token"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(token_of("alice"), [ALICE_LOCAL], "{records:?}");
    assert_eq!(token_of("bob"), [BOB_LOCAL], "{records:?}");
    assert!(token_of("carol").is_empty(), "{records:?}");
    assert!(
        records.iter().any(|r| r["start"] == GATEWAY_LOCAL),
        "the gateway's own listing did not use its credential: {records:?}"
    );

    // The ledger: each session.opened names its credential by source and
    // fingerprint; carol's sessions were refused, naming her and the server.
    let events = site.events();
    let opened = |server: &str, principal: &str| -> Vec<(Value, Value)> {
        events
            .iter()
            .filter(|e| {
                kind(e) == "session.opened" && e["subject"]["server"] == server && e["actor"]["principal"] == principal
            })
            .map(|e| {
                (
                    body(e, "upstream.credential.source").clone(),
                    body(e, "upstream.credential.fingerprint").clone(),
                )
            })
            .collect()
    };
    let pair = |source: &str, secret: &str| (Value::from(source), Value::from(fingerprint(secret)));
    assert_eq!(
        opened("remote", "alice"),
        [pair("dir", ALICE), pair("dir", ALICE_ROTATED)]
    );
    assert_eq!(opened("remote", "ops:bob"), [pair("dir", BOB)]);
    assert_eq!(opened("local", "alice"), [pair("file", ALICE_LOCAL)]);
    assert_eq!(opened("local", "ops:bob"), [pair("file", BOB_LOCAL)]);
    assert!(opened("remote", "carol").is_empty() && opened("local", "carol").is_empty());
    for server in ["remote", "local"] {
        let decision = events
            .iter()
            .find(|e| {
                kind(e) == "policy.decision" && e["subject"]["server"] == server && e["actor"]["principal"] == "carol"
            })
            .unwrap_or_else(|| panic!("no decision on carol's session on {server}"));
        assert_eq!(body(decision, "decision"), "DENY", "{decision}");
        assert_eq!(body(decision, "reason_code"), "no_credential", "{decision}");
        let reason = body(decision, "reason").as_str().unwrap_or_default();
        assert!(
            reason.contains(&format!("server {server} has no credential for principal \"carol\"")),
            "{reason}"
        );
        let refused = events
            .iter()
            .find(|e| kind(e) == "call.refused" && e["correlation"]["answers"] == decision["correlation"]["answers"])
            .unwrap_or_else(|| panic!("carol's session on {server} has no call.refused"));
        assert_eq!(body(refused, "refused_by"), "credential", "{refused}");
        assert_eq!(body(refused, "reason_code"), "no_credential", "{refused}");
    }
    audited_calls(&events);

    // No secret in any file of the data dir (the RocksDB WAL and tables,
    // keys, anything), in `sealgate log` (JSON and text), or in the
    // gateway's log; what the calls returned is there (the scan can see).
    let gateway_log = site.log();
    assert!(
        gateway_log.contains("starting with GITHUB_TOKEN=[REDACTED:upstream_credential]"),
        "the stdio upstream's stderr was not logged masked"
    );
    let text_log = site.sealgate().arg("log").output().expect("sealgate log");
    let json_log = site
        .sealgate()
        .args(["log", "-o", "json"])
        .output()
        .expect("sealgate log");
    let mut stores: Vec<(String, Vec<u8>)> = regular_files(&site.path("data"))
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read(&p).expect("read")))
        .collect();
    assert!(
        stores.iter().any(|(_, bytes)| holds(bytes, "hello alice-again")),
        "no data dir file holds a result excerpt: the byte scan sees nothing"
    );
    stores.push(("sealgate log".into(), text_log.stdout));
    stores.push(("sealgate log -o json".into(), json_log.stdout));
    stores.push(("the gateway's log".into(), gateway_log.into_bytes()));
    for (name, bytes) in &stores {
        for secret in SECRETS {
            assert!(!holds(bytes, secret), "{name} holds the credential {secret}");
        }
    }
    gw.stop();
    site.verify();
}

/// A credentials file others may read stops the start, naming it, before
/// anything but the new ledger's genesis is recorded; so does a directory
/// others may write.
#[test]
fn credentials_open_to_others_stop_the_start() {
    for (table, make, want) in [
        (
            "file = \"{dir}/creds.toml\"",
            (|root: &Path| {
                std::fs::write(root.join("creds.toml"), "alice = \"alice-upstream-key-one\"\n").expect("write");
                std::fs::set_permissions(root.join("creds.toml"), std::fs::Permissions::from_mode(0o644))
                    .expect("chmod");
            }) as fn(&Path),
            "creds.toml: group or others have access to it (mode 644)",
        ),
        (
            "dir = \"{dir}/creds\"",
            |root: &Path| {
                std::fs::create_dir(root.join("creds")).expect("mkdir");
                std::fs::set_permissions(root.join("creds"), std::fs::Permissions::from_mode(0o777)).expect("chmod");
            },
            "creds: group or others may write it (mode 777)",
        ),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        make(dir.path());
        let site = Site::in_dir(
            dir,
            &format!(
                "[gateway]\nlisten = \"127.0.0.1:0\"\n[servers.remote]\ntransport = \"http\"\n\
                 url = \"http://127.0.0.1:9/mcp\"\nregister = false\n[servers.remote.credentials]\n{table}\n"
            ),
        );
        let out = site.sealgate().arg("serve").output().expect("run sealgate serve");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{table}: started");
        assert!(
            stderr.contains("server remote: credentials") && stderr.contains(want),
            "{table}: {stderr}"
        );
        assert!(!stderr.contains("alice-upstream-key-one"), "{stderr}");
        let recorded: Vec<String> = site.events().iter().map(|e| kind(e).to_string()).collect();
        assert_eq!(
            recorded,
            ["ledger.genesis"],
            "{table}: recorded before refusing to start"
        );
    }
}

/// Bad input stops the start with an error naming the key, the server or
/// the principal: a static header standing in for the credential (any
/// command: the config is refused), and a server to approve at start whose
/// credentials hold none for the gateway's own listing session.
#[test]
fn a_static_header_or_no_gateway_credential_stops_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = Site::in_dir(
        dir,
        "[gateway]\nlisten = \"127.0.0.1:0\"\n[servers.remote]\ntransport = \"http\"\n\
         url = \"http://127.0.0.1:9/mcp\"\nheaders = { authorization = \"Bearer shared-upstream-key\" }\n\
         [servers.remote.credentials]\ndir = \"{dir}\"\n",
    );
    for command in [&["serve"][..], &["log"][..]] {
        let out = site.sealgate().args(command).output().expect("run sealgate");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{command:?} ran");
        assert!(
            stderr.contains(
                "config: servers.remote.credentials: header \"Authorization\" is also set in servers.remote.headers.authorization"
            ),
            "{command:?}: {stderr}"
        );
        assert!(!stderr.contains("shared-upstream-key"), "{stderr}");
    }

    let dir = tempfile::tempdir().expect("tempdir");
    private(&dir.path().join("creds.toml"), "alice = \"alice-upstream-key-one\"\n");
    let site = Site::in_dir(
        dir,
        "[gateway]\nlisten = \"127.0.0.1:0\"\n[servers.remote]\ntransport = \"http\"\n\
         url = \"http://127.0.0.1:9/mcp\"\napprove = true\n[servers.remote.credentials]\nfile = \"{dir}/creds.toml\"\n",
    );
    let out = site.sealgate().arg("serve").output().expect("run sealgate serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started");
    assert!(
        stderr.contains("the gateway's own session cannot list the tools: server remote has no credential for principal \"sealgate:gateway\""),
        "{stderr}"
    );
    assert!(!stderr.contains("alice-upstream-key-one"), "{stderr}");
}
