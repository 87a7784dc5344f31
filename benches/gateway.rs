//! What the gateway adds to a tool call: latency and audited calls per
//! second, against the same upstream called directly in the same run.
//!
//! A real `sealgate serve` (this build's, or `SEALGATE_BIN` to measure
//! another build the same way) in front of server-everything over
//! streamable HTTP, a real MCP client (rmcp) calling `echo`. Three paths,
//! interleaved in rounds so the machine's drift hits all alike:
//!
//! - **direct**: client → server-everything (HTTP);
//! - **gateway**: client → gateway → the same server-everything (HTTP):
//!   every call is a request, a decision and an outcome event, each synced
//!   to the ledger's disk before the call goes on;
//! - **gateway, stdio upstream**: client → gateway → server-everything as
//!   the gateway's child (the usual deployment; not comparable to direct).
//!
//! It prints p50 and p99 per path, the added latency (gateway − direct,
//! same percentile) and, with 16 clients at once, calls per second through
//! each path. Nothing here passes or fails: the figures go to
//! `docs/PERFORMANCE.md`.
//!
//! ```text
//! eval "$(tools/peers.sh | grep -E '^[A-Z_]+=')"; export SEALGATE_EVERYTHING="$EVERYTHING"
//! cargo bench --bench gateway                 # ~1 min
//! SEALGATE_BENCH_CALLS=500 cargo bench --bench gateway
//! ```

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

/// Calls per path per round, and rounds.
const ROUNDS: usize = 5;
const CONCURRENT: usize = 16;

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
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server-everything did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Killed(child), format!("http://127.0.0.1:{port}/mcp"))
}

/// `sealgate serve` in front of `upstream` (as server `http`) and of a
/// server-everything child (as `stdio`); its base URL and a token.
fn gateway(dir: &std::path::Path, everything: &str, upstream: &str) -> (Killed, String, String) {
    let bin = std::env::var("SEALGATE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_sealgate").to_string());
    std::fs::write(
        dir.join("policy.yaml"),
        "version: v1\noutput: { secrets: allow, pii: allow }\nrules:\n  - id: allow-all\n    decision: ALLOW\n",
    )
    .expect("policy");
    let config = dir.join("sealgate.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {data:?}\n[gateway]\nlisten = \"127.0.0.1:0\"\n[auth]\ntokens_file = {tokens:?}\n\
             [governance]\npolicy_file = {policy:?}\n[[grants]]\nprincipal = \"*\"\nserver = \"*\"\n\
             [servers.http]\ntransport = \"http\"\nurl = {upstream:?}\napprove = true\n\
             [servers.stdio]\ntransport = \"stdio\"\ncommand = \"node\"\nargs = [{everything:?}, \"stdio\"]\napprove = true\n",
            data = dir.join("data"),
            tokens = dir.join("tokens.toml"),
            policy = dir.join("policy.yaml"),
        ),
    )
    .expect("config");
    let out = Command::new(&bin)
        .arg("--config")
        .arg(&config)
        .args(["token", "create", "--principal", "bench", "--file"])
        .arg(dir.join("tokens.toml"))
        .output()
        .expect("sealgate token create");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut child = Command::new(&bin)
        .arg("--config")
        .arg(&config)
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

async fn connect(url: &str, token: Option<&str>) -> Client {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_string());
    if let Some(t) = token {
        config = config.auth_header(t.to_string());
    }
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
        .unwrap_or_else(|e| panic!("an MCP session with {url}: {e}"))
}

async fn echo(client: &Client, i: usize) {
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
        echo(client, i).await;
        out.push(started.elapsed().as_micros() as u64);
    }
    out
}

/// Calls per second with `clients` sessions calling at once.
async fn throughput(url: &str, token: Option<&str>, clients: usize, calls_each: usize) -> f64 {
    let mut sessions = Vec::new();
    for _ in 0..clients {
        sessions.push(Arc::new(connect(url, token).await));
    }
    let started = Instant::now();
    let tasks: Vec<_> = sessions
        .iter()
        .map(|c| {
            let c = Arc::clone(c);
            tokio::spawn(async move {
                for i in 0..calls_each {
                    echo(&c, i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("client task");
    }
    (clients * calls_each) as f64 / started.elapsed().as_secs_f64()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken.
    let Ok(everything) = std::env::var("SEALGATE_EVERYTHING") else {
        eprintln!(
            "gateway bench: set SEALGATE_EVERYTHING (eval \"$(tools/peers.sh | grep -E '^[A-Z_]+=')\"; export SEALGATE_EVERYTHING=\"$EVERYTHING\")"
        );
        std::process::exit(2);
    };
    let calls: usize = std::env::var("SEALGATE_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_upstream, upstream_url) = everything_http(&everything);
    let (_gateway, base, token) = gateway(dir.path(), &everything, &upstream_url);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let bin = std::env::var("SEALGATE_BIN").unwrap_or_else(|_| "this build".into());
    println!("gateway bench: {calls} sequential echo calls x {ROUNDS} rounds per path; sealgate = {bin}");
    rt.block_on(async {
        let direct = connect(&upstream_url, None).await;
        let through = connect(&format!("{base}/mcp/http"), Some(&token)).await;
        let child = connect(&format!("{base}/mcp/stdio"), Some(&token)).await;
        // Warm up every path (JIT, connection pools, the ledger's first syncs).
        latencies(&direct, 50).await;
        latencies(&through, 50).await;
        latencies(&child, 50).await;
        let (mut d, mut g, mut s) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            d.extend(latencies(&direct, calls).await);
            g.extend(latencies(&through, calls).await);
            s.extend(latencies(&child, calls).await);
        }
        for v in [&mut d, &mut g, &mut s] {
            v.sort_unstable();
        }
        println!("{:<34} {:>10} {:>10}", "path", "p50", "p99");
        for (name, v) in [
            ("direct (HTTP upstream)", &d),
            ("gateway (same HTTP upstream)", &g),
            ("gateway (stdio upstream)", &s),
        ] {
            println!("{name:<34} {:>10} {:>10}", ms(percentile(v, 0.5)), ms(percentile(v, 0.99)));
        }
        println!(
            "added latency (gateway - direct): p50 {}, p99 {}",
            ms(percentile(&g, 0.5).saturating_sub(percentile(&d, 0.5))),
            ms(percentile(&g, 0.99).saturating_sub(percentile(&d, 0.99)))
        );
        let each = (calls / 2).max(20);
        let direct_rate = throughput(&upstream_url, None, CONCURRENT, each).await;
        let gateway_rate = throughput(&format!("{base}/mcp/http"), Some(&token), CONCURRENT, each).await;
        let stdio_rate = throughput(&format!("{base}/mcp/stdio"), Some(&token), CONCURRENT, each).await;
        println!(
            "{CONCURRENT} clients at once: direct {direct_rate:.0} calls/s, gateway {gateway_rate:.0} calls/s ({:.0} % of direct), gateway with stdio upstreams {stdio_rate:.0} calls/s",
            100.0 * gateway_rate / direct_rate
        );
    });
}
