//! Shared harness of the gateway's end-to-end tests: real peers (installed
//! by `tools/peers.sh`, paths in `SEALGATE_*` variables set by
//! `tools/test.sh`), a real `sealgate` process, its real ledger. `inproc`
//! is the fast tier's: the gateway in process in front of the fast
//! upstream.
#![allow(dead_code, reason = "each test binary uses part of the harness")]

pub mod inproc;
pub mod jwt;
pub mod wire;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const SEALGATE_BUILT: &str = env!("CARGO_BIN_EXE_sealgate");

/// The binary under test: this build's, or `SEALGATE_BIN` (to run a test
/// against another build, e.g. to watch an attack test fail on the code
/// before its fix).
pub fn sealgate_bin() -> String {
    std::env::var("SEALGATE_BIN").unwrap_or_else(|_| SEALGATE_BUILT.to_string())
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Paths of the installed peers.
pub struct Peers {
    /// server-everything's entry point (run with `node`).
    pub everything: String,
    pub filesystem: String,
    /// The conformance CLI: a node binary and the suite's entry point.
    pub conformance: String,
    /// A Python with the `mcp` SDK.
    pub python: String,
}

/// Why the end-to-end tests are `#[ignore]`d: a plain `cargo test` runs the
/// fast tier and lists these as ignored; `tools/test.sh` (and CI) runs them
/// all (`--include-ignored`), where a missing prerequisite fails the test.
pub const E2E: &str = "end-to-end: needs the MCP peers; tools/test.sh runs it";

/// The installed peers; a test that needs them fails without them (the
/// tests that need them are `#[ignore = E2E]`, so only a run that asks for
/// them gets here).
pub fn peers() -> Peers {
    let get = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (
        get("SEALGATE_EVERYTHING"),
        get("SEALGATE_FILESYSTEM"),
        get("SEALGATE_CONFORMANCE"),
        get("SEALGATE_MCP_PYTHON"),
    ) {
        (Some(everything), Some(filesystem), Some(conformance), Some(python)) => Peers {
            everything,
            filesystem,
            conformance,
            python,
        },
        _ => panic!(
            "MCP peers not installed: run the tests with tools/test.sh (it installs them with tools/peers.sh), \
             or eval the output of tools/peers.sh and export SEALGATE_EVERYTHING, SEALGATE_FILESYSTEM, \
             SEALGATE_CONFORMANCE and SEALGATE_MCP_PYTHON"
        ),
    }
}

/// A TOML string literal.
pub fn q(s: &str) -> String {
    toml_str(s)
}

fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A `[servers.NAME]` table for a stdio upstream, approved at start.
pub fn stdio_server(name: &str, command: &str, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| toml_str(a)).collect();
    format!(
        "[servers.{name}]\ntransport = \"stdio\"\ncommand = {}\nargs = [{}]\napprove = true\n",
        toml_str(command),
        args.join(", ")
    )
}

/// A `[servers.NAME]` table for a streamable-HTTP upstream, approved at start.
pub fn http_server(name: &str, url: &str) -> String {
    format!(
        "[servers.{name}]\ntransport = \"http\"\nurl = {}\napprove = true\n",
        toml_str(url)
    )
}

/// Governance that lets every authenticated caller do anything and leaves
/// results as they are: for tests of the relay itself. `Site::new` adds it
/// to configs that declare no `[governance]` of their own.
pub const ALLOW_ALL_POLICY: &str =
    "version: v1\noutput: { secrets: allow, pii: allow }\nrules:\n  - id: allow-all\n    decision: ALLOW\n";

/// A data dir and a config file for one gateway.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Site {
    /// Starts `sealgate serve` on a config that must not start, and returns
    /// its stderr once it has exited with a failure (at most 60 s).
    pub fn serve_must_fail(&self) -> String {
        let log = self.path("serve-fail.log");
        let mut child = self
            .sealgate()
            .arg("serve")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start sealgate serve");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for sealgate serve") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "sealgate serve still runs after 60 s; it should have refused to start:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let stderr = std::fs::read_to_string(&log).expect("read serve log");
        assert!(!status.success(), "sealgate serve exited with {status}:\n{stderr}");
        stderr
    }

    /// `sealgate token create` into the site's tokens file: the token.
    pub fn create_token(&self, principal: &str, teams: &[&str], roles: &[&str]) -> String {
        let mut cmd = self.sealgate();
        cmd.args(["token", "create", "--principal", principal, "--file"])
            .arg(self.path("tokens.toml"));
        for team in teams {
            cmd.args(["--team", team]);
        }
        for role in roles {
            cmd.args(["--role", role]);
        }
        let out = cmd.output().expect("run sealgate token create");
        assert!(
            out.status.success(),
            "sealgate token create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `body` is the config after `data_dir` (sections `[gateway]`,
    /// `[auth]`, `[servers.*]`); `{dir}` in it stands for the site's
    /// directory (for files such as `{dir}/tokens.toml`).
    pub fn new(body: &str) -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        Site::in_dir(dir, body)
    }

    pub fn in_dir(dir: tempfile::TempDir, body: &str) -> Site {
        let config = dir.path().join("sealgate.toml");
        let data = dir.path().join("data");
        let dir_text = dir.path().to_string_lossy().replace('\\', "\\\\").replace('"', "\\\"");
        let mut body = body.replace("{dir}", &dir_text);
        if !body.contains("[governance]") {
            std::fs::write(dir.path().join("allow-all.yaml"), ALLOW_ALL_POLICY).expect("write policy");
            body.push_str(&format!(
                "\n[governance]\npolicy_file = \"{dir_text}/allow-all.yaml\"\n\n[[grants]]\nprincipal = \"*\"\nserver = \"*\"\n"
            ));
        }
        std::fs::write(
            &config,
            format!("data_dir = {}\n{body}", toml_str(&data.to_string_lossy())),
        )
        .expect("write config");
        Site { dir, config }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn sealgate(&self) -> Command {
        let mut cmd = Command::new(sealgate_bin());
        cmd.arg("--config").arg(&self.config);
        cmd
    }

    /// Every event in the ledger, in order (the `event` part of
    /// `sealgate log -o json`, with `seq` and `hash`).
    pub fn events(&self) -> Vec<Value> {
        let out = self
            .sealgate()
            .args(["log", "-o", "json"])
            .output()
            .expect("run sealgate log");
        assert!(
            out.status.success(),
            "sealgate log: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|line| {
                let v: Value = serde_json::from_str(line).expect("log line is JSON");
                let mut event = v["event"].clone();
                event["hash"] = v["hash"].clone();
                event
            })
            .collect()
    }

    /// The `approval_bypassed` alerts that the detector raises over the
    /// whole ledger (with the default thresholds): none in any real run.
    pub fn bypasses(&self) -> Vec<String> {
        let ledger = ledger::Ledger::open_read_only(&self.path("data").join("ledger")).expect("open the ledger");
        let config = sealgate::config::Config::default();
        config.alerts.check(&config.gates).expect("the default thresholds");
        let t = sealgate::alerts::thresholds(&config.alerts, &config.gates);
        let mut d = sealgate::alerts::Detector::new(t);
        sealgate::alerts::scan(&ledger, &mut d, 0, ledger.head().seq)
            .expect("scan the log")
            .into_iter()
            .filter(|a| a.body.detection == events::Detection::ApprovalBypassed)
            .map(|a| a.body.summary)
            .collect()
    }

    /// `sealgate verify` must pass.
    pub fn verify(&self) {
        let out = self.sealgate().arg("verify").output().expect("run sealgate verify");
        assert!(
            out.status.success(),
            "sealgate verify failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts `sealgate serve`; the config must listen on 127.0.0.1:0.
    pub fn serve(&self) -> Served {
        self.serve_with_env(&[])
    }

    /// [`Site::serve`] with more environment variables for the gateway.
    pub fn serve_with_env(&self, env: &[(&str, &str)]) -> Served {
        let mut child = self
            .sealgate()
            .envs(env.iter().copied())
            .arg("serve")
            .env("SEALGATE_LOG", "warn,sealgate=info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(self.path("serve.log")).expect("log file"))
            .spawn()
            .expect("start sealgate serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let Some(base) = first.strip_prefix("listening on ") else {
            let _ = child.kill();
            let log = std::fs::read_to_string(self.path("serve.log")).unwrap_or_default();
            panic!("sealgate serve did not start: {first:?}\n{log}");
        };
        // Keep draining stdout so the child never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Served {
            child,
            base: base.to_string(),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("serve.log")).unwrap_or_default()
    }
}

/// A running `sealgate serve`; killed on drop.
pub struct Served {
    pub child: Child,
    pub base: String,
}

impl Served {
    pub fn url(&self, server: &str) -> String {
        format!("{}/mcp/{server}", self.base)
    }

    /// Stops the gateway (SIGKILL: what is acknowledged must already be durable).
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// server-everything over streamable HTTP on a free loopback port
/// (it would listen on every interface; a preloaded module binds it to
/// 127.0.0.1). Killed on drop.
pub struct HttpUpstream {
    child: Child,
    pub url: String,
}

impl Drop for HttpUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const LOOPBACK_ONLY: &str = "import net from \"node:net\"; const listen = net.Server.prototype.listen; \
    net.Server.prototype.listen = function (port, ...rest) { if (typeof port !== \"object\" && \
    rest.every((a) => typeof a === \"function\")) return listen.call(this, port, \"127.0.0.1\", ...rest); \
    return listen.call(this, port, ...rest); };";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub fn everything_http(peers: &Peers) -> HttpUpstream {
    let port = free_port();
    let module = format!("data:text/javascript;base64,{}", base64(LOOPBACK_ONLY.as_bytes()));
    let child = Command::new("node")
        .args(["--import", &module, &peers.everything, "streamableHttp"])
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start server-everything");
    wait_for_port(port);
    HttpUpstream {
        child,
        url: format!("http://127.0.0.1:{port}/mcp"),
    }
}

pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port} after 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Runs `tools/mcp_scenario.py` with `args` and returns its JSON report.
pub fn scenario(peers: &Peers, args: &[&str]) -> Value {
    scenario_env(peers, args, &[])
}

pub fn scenario_env(peers: &Peers, args: &[&str], env: &[(&str, &str)]) -> Value {
    let script = repo().join("tools/mcp_scenario.py");
    let out = Command::new(&peers.python)
        .arg(&script)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run mcp_scenario.py");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "mcp_scenario.py printed no JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Asserts every step of a scenario report is ok, naming the ones that are not.
pub fn assert_all_ok(report: &Value) {
    let failed: Vec<String> = report["steps"]
        .as_object()
        .map(|steps| {
            steps
                .iter()
                .filter(|(_, s)| s["ok"] != Value::Bool(true))
                .map(|(name, s)| format!("{name}: {}", s["error"]))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        failed.is_empty() && report["ok"] == Value::Bool(true),
        "scenario failed: {failed:?}\n{report:#}"
    );
}

pub fn kind(e: &Value) -> &str {
    e["kind"].as_str().unwrap_or("")
}

pub fn seq(e: &Value) -> u64 {
    e["seq"].as_u64().unwrap_or(u64::MAX)
}

pub fn body<'a>(e: &'a Value, key: &str) -> &'a Value {
    &e["body"][key]
}

/// Every audited request has exactly one decision and exactly one terminal
/// event answering it, in that order: an outcome if it ran, `call.refused`
/// if it did not (denied, or its approval denied or expired), a session's
/// `initialize` `session.opened`; every event answering a request carries
/// the request's `correlation.call_id`, and no two requests share one; and
/// every gateway event names a principal. Returns the (request, decision,
/// outcome) triples of the calls that ran (not the sessions opened).
pub fn audited_calls(events: &[Value]) -> Vec<(Value, Value, Value)> {
    let mut calls = Vec::new();
    let mut call_ids = std::collections::BTreeSet::new();
    for e in events {
        if kind(e) == "ledger.genesis" {
            continue;
        }
        assert!(
            e["actor"]["principal"].is_string(),
            "event {} names no principal: {e}",
            seq(e)
        );
        if !matches!(kind(e), "tool_call.requested" | "mcp.requested") {
            continue;
        }
        let answers = |k: &[&str]| -> Vec<Value> {
            events
                .iter()
                .filter(|x| k.contains(&kind(x)) && x["correlation"]["answers"].as_u64() == Some(seq(e)))
                .cloned()
                .collect()
        };
        let call_id = e["correlation"]["call_id"]
            .as_str()
            .unwrap_or_else(|| panic!("request {} has no call id: {e}", seq(e)));
        assert!(
            call_ids.insert(call_id.to_string()),
            "call id {call_id} on two requests"
        );
        for x in events
            .iter()
            .filter(|x| x["correlation"]["answers"].as_u64() == Some(seq(e)))
        {
            assert_eq!(
                x["correlation"]["call_id"].as_str(),
                Some(call_id),
                "event {} answers request {} under another call id: {x}",
                seq(x),
                seq(e)
            );
        }
        let decisions = answers(&["policy.decision"]);
        // A call ends in one terminal event: an outcome if it ran,
        // `call.refused` if it did not; a session in `session.opened`.
        let terminal = answers(&[
            "execution.completed",
            "execution.failed",
            "session.opened",
            "call.refused",
        ]);
        assert_eq!(
            decisions.len(),
            1,
            "request {} has {} decisions",
            seq(e),
            decisions.len()
        );
        assert_eq!(
            terminal.len(),
            1,
            "request {} has {} terminal events: {terminal:?}",
            seq(e),
            terminal.len()
        );
        assert!(seq(e) < seq(&decisions[0]) && seq(&decisions[0]) < seq(&terminal[0]));
        // A denied request never runs: it ends refused.
        if body(&decisions[0], "decision") == "DENY" || kind(&terminal[0]) == "call.refused" {
            assert_eq!(
                kind(&terminal[0]),
                "call.refused",
                "request {} was denied: {terminal:?}",
                seq(e)
            );
            continue;
        }
        // Opening a session is checked above, but is no call.
        if body(e, "mcp.method.name") != "initialize" {
            calls.push((e.clone(), decisions[0].clone(), terminal[0].clone()));
        }
    }
    calls
}

/// The audited call of `method` on `target` (tool, prompt or resource).
pub fn find_call<'a>(
    calls: &'a [(Value, Value, Value)],
    method: &str,
    target: Option<&str>,
) -> &'a (Value, Value, Value) {
    calls
        .iter()
        .find(|(r, _, _)| {
            body(r, "mcp.method.name") == method
                && target.is_none_or(|t| {
                    r["subject"]["tool"] == t || r["subject"]["prompt"] == t || r["subject"]["resource"] == t
                })
        })
        .unwrap_or_else(|| panic!("no audited {method} {target:?} in the ledger"))
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Creates a static token for `principal` in `{dir}/tokens.toml` with
/// `sealgate token create` and returns it.
pub fn create_token(site: &Site, principal: &str, teams: &[&str]) -> String {
    let path = site.path("tokens.toml");
    let mut cmd = site.sealgate();
    cmd.args(["token", "create", "--principal", principal, "--file"])
        .arg(&path);
    for team in teams {
        cmd.args(["--team", team]);
    }
    let out = cmd.output().expect("run sealgate token create");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let file = std::fs::read_to_string(&path).expect("tokens file");
    assert!(!file.contains(&token), "the tokens file must hold only the hash");
    token
}

/// Every regular file under `dir`, recursively: what a scan of "every byte
/// of the data dir" reads (the gateway's local socket is not a file).
pub fn regular_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(regular_files(&path));
        } else if path.is_file() {
            out.push(path);
        }
    }
    out
}
