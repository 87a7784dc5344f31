//! Desktop clients: several `sealgate stdio` processes (one per configured
//! server, as a desktop MCP client starts them) and a `sealgate serve` on
//! one data dir, all recording to one ledger. Real processes, real
//! server-everything, the Python MCP SDK as one of the clients.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::wire::{HttpSession, StdioSession, TIMEOUT};
use support::*;

fn stdio(site: &Site, principal: Option<&str>) -> StdioSession {
    let mut cmd = site.sealgate();
    cmd.args(["stdio", "--server", "everything"]);
    if let Some(p) = principal {
        cmd.args(["--principal", p]);
    }
    StdioSession::start(cmd)
}

fn sum(s: &mut StdioSession, id: u64) -> Value {
    let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                      "params": {"name": "get-sum", "arguments": {"a": id, "b": 1}}});
    s.send_raw(&call.to_string());
    s.answer(id)
}

#[track_caller]
fn assert_sum(answer: &Value, want: u64) {
    let text = answer["result"]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains(&want.to_string()), "{answer}");
}

/// Sessions by transport, and whether each has its `session.closed`.
fn sessions(site: &Site) -> Vec<(String, String, bool)> {
    let events = site.events();
    events
        .iter()
        .filter(|e| kind(e) == "session.opened")
        .map(|e| {
            let id = e["actor"]["session"].as_str().unwrap_or_default().to_string();
            let closed = events
                .iter()
                .any(|c| kind(c) == "session.closed" && c["actor"]["session"] == id.as_str());
            (
                body(e, "downstream.transport").as_str().unwrap_or_default().to_string(),
                e["actor"]["principal"].as_str().unwrap_or_default().to_string(),
                closed,
            )
        })
        .collect()
}

fn site() -> Site {
    let peers = peers();
    let site = Site::new(&format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\n[auth]\ntokens_file = \"{{dir}}/tokens.toml\"\n{}",
        stdio_server("everything", "node", &[&peers.everything, "stdio"])
    ));
    site.create_token("bob", &[], &[]);
    site
}

/// Three `sealgate stdio` processes (one of them the Python SDK's client)
/// beside a running `serve`, calls in all of them at once and over HTTP:
/// every session and call is in the one ledger, which verifies.
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn three_stdio_processes_and_a_running_serve_record_to_one_ledger() {
    let peers = peers();
    let site = site();
    let token = site.create_token("bob", &[], &[]);
    let gw = site.serve();
    let mut a = stdio(&site, Some("alice"));
    let mut b = stdio(&site, Some("carol"));
    a.initialize(json!({}));
    b.initialize(json!({}));
    let config = site.config.to_string_lossy().to_string();
    let bin = sealgate_bin();
    let sdk = std::thread::spawn(move || {
        scenario(
            &peers,
            &[
                "--",
                &bin,
                "--config",
                &config,
                "stdio",
                "--server",
                "everything",
                "--principal",
                "dave",
            ],
        )
    });
    let http = HttpSession::open(&gw.url("everything"), &token, json!({}));
    for id in 1..=5 {
        assert_sum(&sum(&mut a, id), id + 1);
        assert_sum(&sum(&mut b, 10 + id), 10 + id + 1);
        let answer = http.request(
            id,
            "tools/call",
            json!({"name": "get-sum", "arguments": {"a": 1, "b": 2}}),
        );
        assert_ne!(answer["result"]["isError"], true, "{answer}");
    }
    let report = sdk.join().expect("the SDK client");
    assert_all_ok(&report);
    assert!(a.finish().success());
    assert!(b.finish().success());
    wait_until("the stdio sessions' ends", TIMEOUT, || {
        sessions(&site)
            .iter()
            .filter(|(t, _, closed)| t == "stdio" && *closed)
            .count()
            == 3
    });
    gw.stop();

    let mut seen = sessions(&site);
    seen.sort();
    let principals: Vec<&str> = seen.iter().filter(|s| s.0 == "stdio").map(|s| s.1.as_str()).collect();
    assert_eq!(principals, ["alice", "carol", "dave"], "{seen:?}");
    assert_eq!(seen.iter().filter(|s| s.0 == "http").count(), 1, "{seen:?}");
    let calls = audited_calls(&site.events());
    let by = |p: &str| {
        calls
            .iter()
            .filter(|(req, _, _)| req["actor"]["principal"] == p && body(req, "gen_ai.tool.name") == "get-sum")
            .count()
    };
    assert_eq!((by("alice"), by("carol"), by("bob")), (5, 5, 5));
    assert!(
        calls.iter().any(|(req, _, _)| req["actor"]["principal"] == "dave"),
        "the SDK client's calls"
    );
    site.verify();
}

/// Without a `serve`, the first `stdio` process writes the ledger and the
/// others attach to it; it outlives its own session while others are
/// attached, and all exit when they are done. Started at once, none fails
/// on the ledger's lock.
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn the_first_stdio_process_hosts_the_others_and_outlives_its_own_session() {
    let site = site();
    let mut all: Vec<StdioSession> = ["p1", "p2", "p3"].iter().map(|p| stdio(&site, Some(p))).collect();
    for s in &mut all {
        s.initialize(json!({}));
    }
    for (i, s) in all.iter_mut().enumerate() {
        assert_sum(&sum(s, i as u64 + 1), i as u64 + 2);
    }
    // End the sessions one by one: each session ends (recorded) at once,
    // the others keep working, and whichever process hosts lives until the
    // last session has ended.
    let mut rest = all;
    let mut ending = Vec::new();
    let mut closed = 0;
    while !rest.is_empty() {
        let first = rest.remove(0);
        ending.push(std::thread::spawn(move || first.finish()));
        closed += 1;
        wait_until("the ended session's session.closed", TIMEOUT, || {
            sessions(&site).iter().filter(|s| s.2).count() == closed
        });
        for (i, s) in rest.iter_mut().enumerate() {
            let id = 100 * closed as u64 + i as u64;
            assert_sum(&sum(s, id), id + 1);
        }
    }
    for ended in ending {
        assert!(ended.join().expect("finish").success());
    }
    let seen = sessions(&site);
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.iter().all(|(t, _, closed)| t == "stdio" && *closed), "{seen:?}");
    assert!(
        !site.path("data/gateway.sock").exists(),
        "the last process removes the socket"
    );
    site.verify();
}

/// What an attachment may not do: name a server the gateway does not have,
/// or claim one of the gateway's own principals. Each is refused with a
/// clear error and nothing is recorded for it.
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn attachments_naming_an_unknown_server_or_a_reserved_principal_are_refused() {
    let site = site();
    let gw = site.serve();
    let before = site.events().len();
    for (args, needle) in [
        (
            vec!["stdio", "--server", "nope"],
            "refused the session: no server named \"nope\"",
        ),
        (
            vec!["stdio", "--server", "everything", "--principal", "sealgate:config"],
            "principal \"sealgate:config\" is reserved",
        ),
    ] {
        let out = site
            .sealgate()
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("sealgate stdio");
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    // A raw connection that sends no header line in time, or junk, gets an
    // error line, and the gateway goes on serving.
    let sock = site.path("data/gateway.sock");
    let mut raw = std::os::unix::net::UnixStream::connect(&sock).expect("connect");
    use std::io::{BufRead, Write};
    raw.write_all(b"{\"server\":\"everything\",\"extra\":1}\n")
        .expect("write");
    raw.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut line = String::new();
    std::io::BufReader::new(&raw).read_line(&mut line).expect("answer");
    assert!(line.contains("\"error\"") && line.contains("unknown field"), "{line}");
    assert_eq!(site.events().len(), before, "nothing recorded for refused attachments");
    let mut ok = stdio(&site, None);
    ok.initialize(json!({}));
    assert_sum(&sum(&mut ok, 1), 2);
    assert!(ok.finish().success());
    drop(gw);
}

/// A second `serve` on a data dir that a gateway writes is refused with an
/// error that says why, before it touches anything.
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn a_second_serve_on_the_same_data_dir_is_refused_clearly() {
    let site = site();
    let _gw = site.serve();
    let out = site.sealgate().arg("serve").output().expect("sealgate serve");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another sealgate writes the ledger in"), "{stderr}");
}

/// A client that goes away with answers unread (its connection reset)
/// still has its session closed and recorded, so it holds no session
/// place and no upstream process.
#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn a_reset_attachment_still_ends_its_session_recorded() {
    use std::io::Write;
    let site = site();
    let gw = site.serve();
    let mut raw = std::os::unix::net::UnixStream::connect(site.path("data/gateway.sock")).expect("connect");
    let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                            "params": support::wire::initialize_params(json!({}))});
    let mut text = String::from("{\"server\":\"everything\",\"principal\":\"mallory\"}\n");
    text.push_str(&format!("{initialize}\n"));
    raw.write_all(text.as_bytes()).expect("write");
    wait_until("the session to open", TIMEOUT, || {
        sessions(&site).iter().any(|(_, p, _)| p == "mallory")
    });
    for id in 1..50 {
        let ping = json!({"jsonrpc": "2.0", "id": id, "method": "ping"});
        let _ = raw.write_all(format!("{ping}\n").as_bytes());
    }
    std::thread::sleep(Duration::from_millis(300));
    // Closed with the answers unread: the host's next read is reset.
    drop(raw);
    wait_until("mallory's session.closed", TIMEOUT, || {
        sessions(&site).iter().any(|(_, p, closed)| p == "mallory" && *closed)
    });
    drop(gw);
}

/// The host lock must be this user's and private: one that others could
/// open (and so hold) is refused at start, naming it.
#[test]
fn a_host_lock_file_others_could_open_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let site = Site::new("");
    let data = site.path("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let lock = data.join("gateway.lock");
    std::fs::write(&lock, "").expect("lock file");
    std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = site.sealgate().arg("serve").output().expect("sealgate serve");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("gateway.lock is owned by") && stderr.contains("private (0600)"),
        "{stderr}"
    );
    assert!(!data.join("ledger").exists(), "nothing opened");
}
