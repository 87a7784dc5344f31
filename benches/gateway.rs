//! What the gateway adds to a tool call: latency, audited calls per second
//! and the cost of a session, against the same upstreams called directly
//! and through `mcp-proxy` (a relay that audits nothing), in one run.
//!
//! Real processes throughout: `sealgate serve` and `sealgate stdio` (this
//! build's, or `SEALGATE_BIN`), a real MCP client (rmcp) calling `echo`, and
//! two upstreams: the fast upstream (`sealgate_tools::fast_upstream`,
//! in this process over HTTP on its own runtime, or this bench's own
//! executable re-run with `--fast-upstream-stdio` as a stdio child) and
//! server-everything (node). Paths, per upstream:
//!
//! - `direct http`, `direct stdio`: client → upstream;
//! - `gw http→http`, `gw http→stdio`: client → `sealgate serve` → upstream
//!   (a stdio upstream is a child per session);
//! - `gw stdio→stdio`: client → `sealgate stdio` child → upstream child;
//! - `mcp-proxy http→stdio`: client → `mcp-proxy` → upstream child.
//!
//! Latency rounds interleave every path and a WAL sync probe (800 B
//! written in place and `fdatasync`ed in the ledger's directory), so drift
//! hits all alike. The syncs each call makes are counted with `strace -c`
//! on the gateway (outside the timed rounds), the events with `sealgate
//! head`. Then: audited calls per second at 1, 64 and 512 sessions (HTTP →
//! fast HTTP upstream, and direct), with the core time each call cost the
//! gateway and this process (client and fast upstream), from
//! `/proc/PID/stat`; the 64-session target's line adds the rate all cores
//! would allow at those core times. Then the cost of starting a session.
//! Last, the targets table (PASS / FAIL / NO VERDICT). Nothing fails the
//! run but an error; a missing peer is reported and its paths skipped.
//!
//! ```text
//! eval "$(tools/peers.sh | grep -E '^[A-Z_]+=')"
//! export SEALGATE_EVERYTHING="$EVERYTHING" SEALGATE_MCP_PROXY="$MCP_PROXY"
//! cargo bench --bench gateway                    # ~3 min
//! SEALGATE_BENCH_CALLS=100 SEALGATE_BENCH_SECS=2 cargo bench --bench gateway   # quicker
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};

const ROUNDS: usize = 5;
const SESSION_COUNTS: [usize; 3] = [1, 64, 512];
const STRACE_CALLS: usize = 200;
/// Arguments that make this executable the fast stdio upstream.
const AS_UPSTREAM: &str = "--fast-upstream-stdio";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// server-everything over streamable HTTP on loopback only (a preloaded
/// module binds its listener to 127.0.0.1).
fn everything_http(everything: &str) -> (Killed, String) {
    const LOOPBACK_ONLY: &str = "import net from 'node:net'; const listen = net.Server.prototype.listen; \
        net.Server.prototype.listen = function (port, ...rest) { if (typeof port !== 'object' && \
        rest.every((a) => typeof a === 'function')) return listen.call(this, port, '127.0.0.1', ...rest); \
        return listen.call(this, port, ...rest); };";
    let port = free_port();
    let module = format!("data:text/javascript;base64,{}", base64(LOOPBACK_ONLY.as_bytes()));
    let child = Command::new("node")
        .args(["--import", &module, everything, "streamableHttp"])
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start server-everything");
    wait_listening(port, "server-everything");
    (Killed(child), format!("http://127.0.0.1:{port}/mcp"))
}

/// `mcp-proxy` serving `command args` (a stdio child it shares between
/// sessions) at `/mcp`.
fn mcp_proxy(proxy: &str, command: &[String]) -> (Killed, String) {
    let port = free_port();
    let child = Command::new(proxy)
        .args([
            "--port",
            &port.to_string(),
            "--host",
            "127.0.0.1",
            "--log-level",
            "WARNING",
            "--",
        ])
        .args(command)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {proxy}: {e}"));
    wait_listening(port, "mcp-proxy");
    (Killed(child), format!("http://127.0.0.1:{port}/mcp"))
}

fn toml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// A config in `dir` with the given upstreams (name → TOML body).
fn write_config(dir: &Path, servers: &BTreeMap<&str, String>) -> PathBuf {
    std::fs::create_dir_all(dir).expect("config dir");
    std::fs::write(
        dir.join("policy.yaml"),
        "version: v1\noutput: { secrets: allow, pii: allow }\nrules:\n  - id: allow-all\n    decision: ALLOW\n",
    )
    .expect("policy");
    let mut text = format!(
        "data_dir = {data:?}\n[gateway]\nlisten = \"127.0.0.1:0\"\nmax_sessions = 4096\nmax_sessions_per_principal = 4096\n\
         max_upstream_processes = 1024\nmax_connections = 4096\n[auth]\ntokens_file = {tokens:?}\n\
         [governance]\npolicy_file = {policy:?}\n[[grants]]\nprincipal = \"*\"\nserver = \"*\"\n",
        data = dir.join("data"),
        tokens = dir.join("tokens.toml"),
        policy = dir.join("policy.yaml"),
    );
    for (name, body) in servers {
        text.push_str(&format!("[servers.{name}]\n{body}approve = true\n"));
    }
    let config = dir.join("sealgate.toml");
    std::fs::write(&config, text).expect("config");
    config
}

fn sealgate_bin() -> String {
    std::env::var("SEALGATE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_sealgate").to_string())
}

/// `sealgate serve` on `config`: the process, its base URL and a token.
fn gateway(dir: &Path, config: &Path) -> (Killed, String, String) {
    let bin = sealgate_bin();
    let out = Command::new(&bin)
        .arg("--config")
        .arg(config)
        .args(["token", "create", "--principal", "bench", "--file"])
        .arg(dir.join("tokens.toml"))
        .output()
        .expect("sealgate token create");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut child = Command::new(&bin)
        .arg("--config")
        .arg(config)
        .arg("serve")
        .env("SEALGATE_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("sealgate serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let base = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("sealgate serve did not start: {first:?}"))
        .to_string();
    std::thread::spawn(move || for _ in lines {});
    (Killed(child), base, token)
}

/// The ledger's head seq (`sealgate head`, a read-only open beside the writer).
fn head_seq(config: &Path) -> u64 {
    let out = Command::new(sealgate_bin())
        .arg("--config")
        .arg(config)
        .arg("head")
        .output()
        .expect("sealgate head");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("seq ").and_then(|s| s.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no seq in `sealgate head`: {text}"))
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                T[((n >> (18 - 6 * i)) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

type Client = RunningService<RoleClient, ()>;

/// How a path is reached.
#[derive(Clone)]
enum Target {
    Http { url: String, token: Option<String> },
    Stdio { command: Vec<String> },
}

async fn connect(target: &Target) -> Client {
    match target {
        Target::Http { url, token } => {
            let mut config = StreamableHttpClientTransportConfig::with_uri(url.clone());
            if let Some(t) = token {
                config = config.auth_header(t.clone());
            }
            ().serve(StreamableHttpClientTransport::from_config(config))
                .await
                .unwrap_or_else(|e| panic!("an MCP session with {url}: {e}"))
        }
        Target::Stdio { command } => {
            let mut cmd = tokio::process::Command::new(&command[0]);
            cmd.args(&command[1..]).env("SEALGATE_LOG", "error");
            let transport = TokioChildProcess::builder(cmd)
                .stderr(Stdio::null())
                .spawn()
                .map(|(t, _)| t)
                .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
            ().serve(transport)
                .await
                .unwrap_or_else(|e| panic!("an MCP session with {command:?}: {e}"))
        }
    }
}

async fn echo(client: &Client, i: u64) {
    let mut args = rmcp::model::JsonObject::new();
    args.insert("message".into(), serde_json::json!(format!("call {i}")));
    let result = client
        .call_tool(CallToolRequestParams::new("echo").with_arguments(args))
        .await
        .expect("echo");
    assert_ne!(result.is_error, Some(true), "{result:?}");
}

/// Sequential call latencies, in microseconds.
async fn latencies(client: &Client, calls: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(calls);
    for i in 0..calls {
        let started = Instant::now();
        echo(client, i as u64).await;
        out.push(started.elapsed().as_micros() as u64);
    }
    out
}

/// Core time (user + system) a process has used so far, in µs, from
/// `/proc/PID/stat` (whole process, exited threads included; USER_HZ is
/// 100 on Linux, so a 3 s case at one core is read to ±0.3 %).
fn cpu_us(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    let rest = stat.rsplit_once(')').map_or("", |x| x.1);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15.
    let ticks = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|f| f.parse::<f64>().ok())
            .expect("utime, stime")
    };
    (ticks(14) + ticks(15)) * 10_000.0
}

/// One throughput case: calls per second, and the core time per call of
/// the gateway (if any) and of this process (the client and the in-process
/// fast upstream).
struct Rate {
    per_sec: f64,
    gateway_us: Option<f64>,
    here_us: f64,
}

/// [`throughput`] with the core time per call of `gateway` and of this
/// process.
async fn measured(target: &Target, sessions: usize, secs: f64, gateway: Option<u32>) -> Rate {
    let gw = gateway.map(|p| p.to_string());
    let (gw0, here0) = (gw.as_deref().map(cpu_us), cpu_us("self"));
    let (per_sec, calls) = throughput(target, sessions, secs).await;
    let (gw1, here1) = (gw.as_deref().map(cpu_us), cpu_us("self"));
    let calls = calls.max(1) as f64;
    Rate {
        per_sec,
        gateway_us: gw0.zip(gw1).map(|(a, b)| (b - a) / calls),
        here_us: (here1 - here0) / calls,
    }
}

/// Calls per second with `sessions` sessions calling at once for `secs`,
/// and the calls made in all (including those after the clock stopped;
/// core time is measured over all of them).
async fn throughput(target: &Target, sessions: usize, secs: f64) -> (f64, u64) {
    let mut clients = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        clients.push(Arc::new(connect(target).await));
    }
    for c in &clients {
        echo(c, 0).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .iter()
        .map(|c| {
            let (c, stop, done) = (Arc::clone(c), Arc::clone(&stop), Arc::clone(&done));
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    echo(&c, i).await;
                    i += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let calls = done.load(Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("client task");
    }
    let all = done.load(Ordering::Relaxed);
    for c in clients {
        if let Ok(c) = Arc::try_unwrap(c) {
            let _ = c.cancel().await;
        }
    }
    (calls as f64 / elapsed.as_secs_f64(), all)
}

/// Session starts: `n` one after another (latency of each), then `n` at
/// once (sessions per second). Each session makes one call, then closes.
async fn session_starts(target: &Target, n: usize) -> (Vec<u64>, f64) {
    let mut each = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let c = connect(target).await;
        each.push(started.elapsed().as_micros() as u64);
        echo(&c, 0).await;
        let _ = c.cancel().await;
    }
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let target = target.clone();
            tokio::spawn(async move {
                let c = connect(&target).await;
                echo(&c, 0).await;
                c
            })
        })
        .collect();
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.expect("session task"));
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    for c in clients {
        let _ = c.cancel().await;
    }
    (each, rate)
}

/// 800 B written in place and `fdatasync`ed, `n` times: microseconds each.
fn sync_probe(file: &std::fs::File, n: usize, offset: &mut u64) -> Vec<u64> {
    let buf = [0x5au8; 800];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        file.write_at(&buf, *offset).expect("probe write");
        file.sync_data().expect("probe sync");
        out.push(started.elapsed().as_micros() as u64);
        *offset = (*offset + 800) % (1 << 20);
    }
    out
}

/// `fdatasync` + `fsync` calls the process `pid` (all threads) makes while
/// `work` runs, counted by `strace -c`; None without strace.
fn count_syncs(pid: u32, work: impl FnOnce()) -> Option<u64> {
    let out = tempfile::NamedTempFile::new().ok()?;
    let mut strace = Command::new("strace")
        .args(["-f", "-c", "-e", "trace=fdatasync,fsync", "-o"])
        .arg(out.path())
        .args(["-p", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(700));
    work();
    std::thread::sleep(Duration::from_millis(200));
    let strace_pid = rustix::process::Pid::from_raw(strace.id() as i32)?;
    rustix::process::kill_process(strace_pid, rustix::process::Signal::INT).ok()?;
    strace.wait().ok()?;
    let text = std::fs::read_to_string(out.path()).ok()?;
    let mut calls = 0;
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if matches!(cols.last(), Some(&"fdatasync") | Some(&"fsync")) {
            // % time, seconds, usecs/call, calls, [errors,] syscall
            calls += cols.get(3).and_then(|c| c.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    Some(calls)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Path_ {
    name: String,
    target: Target,
    client: Option<Client>,
    us: Vec<u64>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == AS_UPSTREAM) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(sealgate_tools::fast_upstream::serve_stdio(None))
            .expect("fast upstream");
        return;
    }
    let calls: usize = env_num("SEALGATE_BENCH_CALLS", 200);
    let secs: f64 = env_num("SEALGATE_BENCH_SECS", 3.0);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let me = std::env::current_exe().expect("this executable").display().to_string();
    let fast_cmd = vec![me.clone(), AS_UPSTREAM.to_string()];
    let everything = std::env::var("SEALGATE_EVERYTHING").ok();
    let proxy = std::env::var("SEALGATE_MCP_PROXY").ok();
    let mut missing = Vec::new();
    if everything.is_none() {
        missing.push("server-everything (SEALGATE_EVERYTHING): its paths are skipped");
    }
    if proxy.is_none() {
        missing.push("mcp-proxy (SEALGATE_MCP_PROXY): the relay comparison is skipped");
    }
    if Command::new("strace").arg("-V").output().is_err() {
        missing.push("strace: syncs per call are not counted");
    }
    for m in &missing {
        eprintln!("gateway bench: MISSING PEER: {m}");
        println!("MISSING PEER: {m}");
    }
    let every_cmd = everything
        .as_ref()
        .map(|e| vec!["node".to_string(), e.clone(), "stdio".to_string()]);

    // The in-process fast upstream gets a runtime of its own.
    let upstream_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("fast-upstream")
        .enable_all()
        .build()
        .expect("upstream runtime");
    let (_, recorder, fast_http) = upstream_rt
        .block_on(sealgate_tools::fast_upstream::FastUpstream::spawn_http())
        .expect("fast upstream over HTTP");
    recorder.set_enabled(false);
    let fast_url = fast_http.url();
    let every_http = everything.as_deref().map(everything_http);

    // One `sealgate serve` for every upstream; one `sealgate stdio` config
    // per upstream (a ledger has one writer, so each its own data dir).
    let dir = tempfile::tempdir().expect("tempdir");
    let mut servers = BTreeMap::new();
    servers.insert("fast_http", format!("transport = \"http\"\nurl = {fast_url:?}\n"));
    servers.insert(
        "fast_stdio",
        format!(
            "transport = \"stdio\"\ncommand = {:?}\nargs = {}\n",
            fast_cmd[0],
            toml_list(&fast_cmd[1..])
        ),
    );
    if let (Some((_, url)), Some(cmd)) = (&every_http, &every_cmd) {
        servers.insert("every_http", format!("transport = \"http\"\nurl = {url:?}\n"));
        servers.insert(
            "every_stdio",
            format!(
                "transport = \"stdio\"\ncommand = {:?}\nargs = {}\n",
                cmd[0],
                toml_list(&cmd[1..])
            ),
        );
    }
    let serve_config = write_config(&dir.path().join("serve"), &servers);
    let (gw, base, token) = gateway(&dir.path().join("serve"), &serve_config);
    let stdio_gateway = |name: &str, server: &str| -> Vec<String> {
        let mut one = BTreeMap::new();
        one.insert(server, servers[server].clone());
        let config = write_config(&dir.path().join(name), &one);
        vec![
            sealgate_bin(),
            "--config".into(),
            config.display().to_string(),
            "stdio".into(),
            "--server".into(),
            server.into(),
        ]
    };
    let fast_proxy = proxy.as_deref().map(|p| mcp_proxy(p, &fast_cmd));
    let every_proxy = match (&proxy, &every_cmd) {
        (Some(p), Some(cmd)) => Some(mcp_proxy(p, cmd)),
        _ => None,
    };

    let http = |url: &str, token: Option<&str>| Target::Http {
        url: url.to_string(),
        token: token.map(str::to_string),
    };
    let gw_url = |server: &str| format!("{base}/mcp/{server}");
    let mut paths: Vec<Path_> = Vec::new();
    let mut add = |name: &str, target: Target| {
        paths.push(Path_ {
            name: name.to_string(),
            target,
            client: None,
            us: Vec::new(),
        })
    };
    add("fast: direct http", http(&fast_url, None));
    add(
        "fast: direct stdio",
        Target::Stdio {
            command: fast_cmd.clone(),
        },
    );
    add("fast: gw http→http", http(&gw_url("fast_http"), Some(&token)));
    add("fast: gw http→stdio", http(&gw_url("fast_stdio"), Some(&token)));
    add(
        "fast: gw stdio→stdio",
        Target::Stdio {
            command: stdio_gateway("stdio-fast", "fast_stdio"),
        },
    );
    if let Some((_, url)) = &fast_proxy {
        add("fast: mcp-proxy http→stdio", http(url, None));
    }
    if let (Some((_, url)), Some(cmd)) = (&every_http, &every_cmd) {
        add("everything: direct http", http(url, None));
        add("everything: direct stdio", Target::Stdio { command: cmd.clone() });
        add("everything: gw http→http", http(&gw_url("every_http"), Some(&token)));
        add("everything: gw http→stdio", http(&gw_url("every_stdio"), Some(&token)));
        add(
            "everything: gw stdio→stdio",
            Target::Stdio {
                command: stdio_gateway("stdio-every", "every_stdio"),
            },
        );
    }
    if let Some((_, url)) = &every_proxy {
        add("everything: mcp-proxy http→stdio", http(url, None));
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "gateway bench: {calls} sequential echo calls x {ROUNDS} rounds per path; sealgate = {}; load {}",
        std::env::var("SEALGATE_BIN").unwrap_or_else(|_| "this build".into()),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );

    // The sync probe's file, in the ledger's directory.
    let probe_path = dir.path().join("serve").join("data").join("sync-probe");
    let probe = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&probe_path)
        .expect("probe file");
    probe.write_at(&vec![0u8; 1 << 20], 0).expect("probe fill");
    probe.sync_all().expect("probe sync");
    let mut offset = 0;
    sync_probe(&probe, 200, &mut offset);

    // Connect and warm every path (JIT, pools, the ledger's first syncs).
    for p in paths.iter_mut() {
        let c = rt.block_on(connect(&p.target));
        rt.block_on(latencies(&c, 50));
        p.client = Some(c);
    }
    let mut sync_us = Vec::new();
    for _ in 0..ROUNDS {
        for p in paths.iter_mut() {
            let c = p.client.as_ref().expect("connected");
            p.us.extend(rt.block_on(latencies(c, calls)));
        }
        sync_us.extend(sync_probe(&probe, calls, &mut offset));
    }
    for p in paths.iter_mut() {
        p.us.sort_unstable();
    }
    sync_us.sort_unstable();
    let sync_p50 = percentile(&sync_us, 0.5);
    let stats: BTreeMap<String, (u64, u64)> = paths
        .iter()
        .map(|p| (p.name.clone(), (percentile(&p.us, 0.5), percentile(&p.us, 0.99))))
        .collect();
    let p50 = |name: &str| stats.get(name).map(|s| s.0);
    let p99 = |name: &str| stats.get(name).map(|s| s.1);

    // Events and syncs per call, outside the timed rounds.
    let mut per_call = BTreeMap::new();
    for (name, path) in [
        ("fast_http", "fast: gw http→http"),
        ("fast_stdio", "fast: gw http→stdio"),
    ] {
        let Some(p) = paths.iter().find(|p| p.name == path) else {
            continue;
        };
        let c = p.client.as_ref().expect("connected");
        let before = head_seq(&serve_config);
        let syncs = count_syncs(gw.0.id(), || {
            rt.block_on(latencies(c, STRACE_CALLS));
        });
        let events = head_seq(&serve_config) - before;
        per_call.insert(
            name,
            (
                events as f64 / STRACE_CALLS as f64,
                syncs.map(|s| s as f64 / STRACE_CALLS as f64),
            ),
        );
    }
    let syncs_per_call = per_call.get("fast_http").and_then(|(_, s)| *s).unwrap_or(f64::NAN);

    println!();
    println!("## Latency of one echo call (sequential, one session per path), ms");
    println!();
    println!("| path | p50 | p99 | added p50 | added p99 | vs |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for p in &paths {
        let (up, rest) = p.name.split_once(": ").unwrap_or(("", &p.name));
        let base = if rest.contains("→http") {
            Some(format!("{up}: direct http"))
        } else if rest.contains("→stdio") {
            Some(format!("{up}: direct stdio"))
        } else {
            None
        };
        let (a50, a99) = match base.as_deref().and_then(|b| Some((p50(b)?, p99(b)?))) {
            Some((b50, b99)) => (
                format!("{:+.2}", (percentile(&p.us, 0.5) as f64 - b50 as f64) / 1000.0),
                format!("{:+.2}", (percentile(&p.us, 0.99) as f64 - b99 as f64) / 1000.0),
            ),
            None => ("–".into(), "–".into()),
        };
        println!(
            "| {} | {} | {} | {a50} | {a99} | {} |",
            p.name,
            ms(percentile(&p.us, 0.5)),
            ms(percentile(&p.us, 0.99)),
            base.as_deref().map_or("–", |b| b.split_once(": ").map_or(b, |x| x.1)),
        );
    }
    println!(
        "| WAL sync probe (800 B in place + fdatasync, ledger dir, {} samples) | {} | {} | | | |",
        sync_us.len(),
        ms(sync_p50),
        ms(percentile(&sync_us, 0.99))
    );
    println!();
    for (name, (events, syncs)) in &per_call {
        println!(
            "{name}: {events:.2} events per call, {} syncs per call (strace -c over {STRACE_CALLS} sequential calls)",
            syncs.map_or("uncounted".to_string(), |s| format!("{s:.2}"))
        );
    }
    // Close the latency sessions (stdio children included) before the load.
    for p in paths.iter_mut() {
        if let Some(c) = p.client.take() {
            let _ = rt.block_on(c.cancel());
        }
    }

    // Throughput.
    println!();
    println!("## Calls per second, {secs} s per case, sessions calling at once");
    println!();
    println!(
        "| sessions | direct http (fast) | gw http→http (fast), audited | ratio | core µs per call: client + upstream, direct | gateway | client + upstream, through the gateway |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mut rates = BTreeMap::new();
    let gw_pid = gw.0.id();
    for n in SESSION_COUNTS {
        let direct = rt.block_on(measured(&http(&fast_url, None), n, secs, None));
        let audited = rt.block_on(measured(
            &http(&gw_url("fast_http"), Some(&token)),
            n,
            secs,
            Some(gw_pid),
        ));
        let gateway_us = audited.gateway_us.unwrap_or(f64::NAN);
        println!(
            "| {n} | {:.0} | {:.0} | {:.0} % | {:.0} | {gateway_us:.0} | {:.0} |",
            direct.per_sec,
            audited.per_sec,
            100.0 * audited.per_sec / direct.per_sec,
            direct.here_us,
            audited.here_us,
        );
        rates.insert(n, (direct, audited));
    }

    // Session starts.
    println!();
    println!("## Starting a session (initialize + first call; stdio: child spawn too)");
    println!();
    println!("| path | one at a time p50 / p99, ms | 64 at once, sessions/s |");
    println!("| --- | --- | --- |");
    for (name, target) in [
        (
            "fast: direct stdio",
            Target::Stdio {
                command: fast_cmd.clone(),
            },
        ),
        ("fast: gw http→http", http(&gw_url("fast_http"), Some(&token))),
        ("fast: gw http→stdio", http(&gw_url("fast_stdio"), Some(&token))),
    ] {
        let (mut each, rate) = rt.block_on(session_starts(&target, 64));
        each.sort_unstable();
        println!(
            "| {name} | {} / {} | {rate:.0} |",
            ms(percentile(&each, 0.5)),
            ms(percentile(&each, 0.99))
        );
    }

    // Targets.
    println!();
    println!("## Targets (2 cores)");
    println!();
    println!("| target | measured | bound / peer | verdict |");
    println!("| --- | --- | --- | --- |");
    for (path, base) in [
        ("fast: gw http→http", "fast: direct http"),
        ("fast: gw http→stdio", "fast: direct stdio"),
        ("fast: gw stdio→stdio", "fast: direct stdio"),
    ] {
        if let (Some(g), Some(d)) = (p50(path), p50(base)) {
            let added = g as f64 - d as f64;
            let syncs = syncs_per_call * sync_p50 as f64;
            let beyond = added - syncs;
            let verdict = if syncs.is_nan() {
                "NO VERDICT (syncs uncounted)"
            } else if beyond <= 1000.0 {
                "PASS"
            } else {
                "FAIL"
            };
            println!(
                "| p50 added ≤ 1 ms beyond the syncs, {} | added {:.2} ms, beyond the syncs {:.2} ms | {syncs_per_call:.2} syncs × {} ms | {verdict} |",
                path.split_once(": ").map_or(path, |x| x.1),
                added / 1000.0,
                beyond / 1000.0,
                ms(sync_p50),
            );
        }
    }
    if let Some((direct, audited)) = rates.get(&64) {
        // On this machine the client and the upstream share the cores with
        // the gateway: at best, every core busy, a call costs the core time
        // the three use for it together.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let gateway_us = audited.gateway_us.unwrap_or(f64::NAN);
        let bound = cores * 1e6 / (gateway_us + audited.here_us);
        let alone = cores * 1e6 / gateway_us;
        println!(
            "| ≥ 5,000 audited calls/s at 64 sessions (fast upstream) | {:.0}/s | direct {:.0}/s; all {cores} cores at the measured core time per call: {bound:.0}/s (the gateway alone on them: {alone:.0}/s) | {} |",
            audited.per_sec,
            direct.per_sec,
            if audited.per_sec >= 5000.0 { "PASS" } else { "FAIL" }
        );
    }
    match (p50("fast: gw http→stdio"), p50("fast: mcp-proxy http→stdio")) {
        (Some(g), Some(m)) => println!(
            "| HTTP→stdio p50 no worse than mcp-proxy's | {} ms | mcp-proxy {} ms | {} |",
            ms(g),
            ms(m),
            if g <= m { "PASS" } else { "FAIL" }
        ),
        _ => println!("| HTTP→stdio p50 no worse than mcp-proxy's | – | mcp-proxy MISSING | NO VERDICT |"),
    }
    drop(gw);
}
