//! The exporter (docs/EXPORT.md) against a real collector: events/s to
//! rotel over OTLP/gRPC and OTLP/HTTP, the time to drain a backlog of
//! `SEALGATE_BENCH_EVENTS` events (default 1,000,000), where a sink's time
//! goes, and what a draining sink does to the gateway's added latency, in
//! one run (issue 22's benchmark).
//!
//! The ledger: made-up gateway traffic (`sealgate_tools::traffic`: 300
//! principals, 48 servers, sessions, calls with their decisions, approvals,
//! outcomes, refused authentications, drift) over the year to 2026-06-01,
//! appended by the real writer in ten-minute groups dated by a simulated
//! clock; built once and kept as a data dir (`ledger/`, `keys/`) under
//! `$HOME/.cache/sealgate/bench/` (or `SEALGATE_BENCH_DIR`).
//!
//! Measured:
//! - where a sink's time goes, on one core, without a network: reading and
//!   decoding the log; plus building each LogRecord (attributes, OCSF
//!   body); plus encoding the requests as protobuf; plus gzip; and the
//!   cursor's durable write (at most 4 a second). Their sum bounds the
//!   rate of one core;
//! - the drain: a sink started by `exporters::spawn` (as `sealgate serve`
//!   starts it) from seq 0 to the head, to rotel with its blackhole
//!   exporter, over gRPC and over HTTP/protobuf (gzip on, the default
//!   batch size unless `SEALGATE_BENCH_BATCH`): events/s, seconds, core
//!   time of this process and of rotel per event (target ≥ 100,000
//!   events/s, 1M drained in ≤ 15 s, 2 cores);
//! - the gateway's added latency (gw http→http minus direct http, the
//!   gateway bench's measure, with the fast upstream) of a `sealgate serve`
//!   holding the same log with a sink to rotel, in rounds that alternate a
//!   caught-up sink and one draining the whole log again (`export replay
//!   --from 0`), so drift hits both alike (target: unchanged within the
//!   noise of the caught-up rounds).
//!
//! ```text
//! export SEALGATE_ROTEL_AGENT=...   # tools/peers.sh prints ROTEL_AGENT
//! cargo bench --bench export        # ~3 min once the ledger is cached
//! ```
//! Figures are printed with PASS / FAIL lines; nothing fails the run but an
//! error.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use exporters::SinkConfig;
use ledger::{Actor, KeyDir, Ledger, SigningKey, StoreOptions, Timestamp};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use sealgate_tools::otlp::{Rotel, free_port};
use sealgate_tools::traffic::{Spec, Traffic};

// The allocator `sealgate` ships with (src/main.rs): the sink runs in this
// process here, as it does in the gateway's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// 2025-06-01T00:00:00Z: the traffic spans the year before 2026-06-01, so
/// a gateway appending at today's time follows it without a clock step.
const START_NS: u64 = 1_748_736_000 * 1_000_000_000;
/// Bump when the traffic changes, so a cached ledger is rebuilt.
const TRAFFIC_VERSION: u32 = 1;
/// Events the profile stages read (from seq 0).
const PROFILE_EVENTS: u64 = 200_000;
const ROUNDS: usize = 3;

static SIMULATED: AtomicU64 = AtomicU64::new(0);

fn simulated() -> Timestamp {
    Timestamp::from_nanos(SIMULATED.load(Ordering::SeqCst))
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v}: not a number")),
        Err(_) => default,
    }
}

/// The cached data dir holding a ledger of `n` events, built if missing.
fn data_dir_of(root: &Path, n: u64) -> Res<PathBuf> {
    let dir = root.join(format!("export-{n}-v{TRAFFIC_VERSION}"));
    if dir.join("complete").exists() {
        return Ok(dir);
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("ledger");
    let keys = KeyDir::new(Ledger::default_key_dir(&dir));
    SIMULATED.store(START_NS - 1_000_000_000, Ordering::SeqCst);
    drop(Ledger::create(&path, &keys, SigningKey::generate(), Actor::default())?);
    let ledger = Ledger::open_with_clock(&path, &keys, &StoreOptions::default(), simulated)?;
    let mut traffic = Traffic::new(Spec::year(n, START_NS));
    let started = Instant::now();
    let mut next = ledger.head().seq + 1;
    let mut shown = 0;
    while let Some((ts, drafts)) = traffic.next_tick(next) {
        SIMULATED.store(ts, Ordering::SeqCst);
        let k = drafts.len() as u64;
        ledger.submit(drafts)?.wait()?;
        next += k;
        if next * 10 / n > shown {
            shown = next * 10 / n;
            eprintln!(
                "building the ledger: {next} events ({:.0} events/s)",
                next as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    drop(ledger);
    std::fs::write(dir.join("complete"), format!("{next}\n"))?;
    Ok(dir)
}

/// Core time (user + system) a process has used so far, in µs.
fn cpu_us(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |x| x.1);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(14) + ticks(15)) * 10_000.0
}

fn sink_config(name: &str, protocol: &str, endpoint: &str, batch: usize) -> Res<SinkConfig> {
    #[derive(serde::Deserialize)]
    struct W {
        exporters: Vec<SinkConfig>,
    }
    let w: W = toml::from_str(&format!(
        "[[exporters]]\nname = {name:?}\nprotocol = {protocol:?}\nendpoint = {endpoint:?}\nbatch_size = {batch}\n"
    ))?;
    w.exporters.into_iter().next().ok_or_else(|| "no sink".into())
}

fn cursor_seq(sink_dir: &Path) -> Option<u64> {
    exporters::state::read_cursor(sink_dir).ok().flatten().map(|c| c.seq)
}

/// One drain of the whole log by a sink started as `sealgate serve`
/// starts it.
struct Drain {
    secs: f64,
    events: u64,
    requests: u64,
    here_us: f64,
    rotel_us: f64,
}

fn drain(ledger: &Arc<Ledger>, rotel: &Rotel, config: SinkConfig) -> Res<Drain> {
    let tmp = tempfile::tempdir()?;
    let dir = exporters::sink_dir(tmp.path(), &config.name);
    let head = ledger.head().seq;
    let stop = Arc::new(AtomicBool::new(false));
    let rotel_pid = rotel.pid().to_string();
    let (here0, rotel0) = (cpu_us("self"), cpu_us(&rotel_pid));
    let started = Instant::now();
    let threads = exporters::spawn(tmp.path(), ledger.clone(), &[config], stop.clone())?;
    let deadline = started + Duration::from_secs(600);
    while cursor_seq(&dir) != Some(head) {
        if Instant::now() > deadline {
            stop.store(true, Ordering::Relaxed);
            return Err(format!(
                "the sink did not drain in 10 minutes: {:?}",
                exporters::state::read_status(&dir)
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let secs = started.elapsed().as_secs_f64();
    let (here1, rotel1) = (cpu_us("self"), cpu_us(&rotel_pid));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let status = exporters::state::read_status(&dir)?.ok_or("no status.json")?;
    let events = head + 1;
    Ok(Drain {
        secs,
        events,
        requests: status.requests,
        here_us: (here1 - here0) / events as f64,
        rotel_us: (rotel1 - rotel0) / events as f64,
    })
}

/// Where a sink's time goes: cumulative stages over the first `k` events,
/// one core, no network. Returns (stage, seconds).
fn profile(ledger: &Ledger, k: u64, batch: usize) -> Res<Vec<(&'static str, f64)>> {
    let origin = exporters::record::Origin {
        ledger_id: hex::encode(ledger.ledger_id()),
        node: "bench".into(),
    };
    let to = k.min(ledger.head().seq + 1) - 1;
    let mut out = Vec::new();
    // 0: read, 1: + records, 2: + protobuf, 3: + gzip level 1 (the HTTP
    // body's), 4: + gzip level 6 in place of level 1 (tonic's, gRPC).
    for (stage, name) in [
        (0, "read + decode the log"),
        (1, "+ LogRecord (attributes, OCSF body)"),
        (2, "+ protobuf encoding"),
        (3, "+ gzip level 1 (HTTP bodies)"),
        (4, "+ gzip level 6 instead (tonic's, gRPC)"),
    ] {
        let t = Instant::now();
        let mut records = Vec::with_capacity(batch);
        let mut bytes = 0usize;
        let observed = Timestamp::now().as_nanos();
        let flush = |records: &mut Vec<_>, bytes: &mut usize| {
            if stage >= 2 && !records.is_empty() {
                let request = exporters::record::request(&origin, std::mem::take(records));
                let (body, _) = exporters::transport::http_body(&request, stage == 3);
                *bytes += match stage {
                    4 => exporters::transport::gzip_bytes(&body, 6).map_or(0, |z| z.len()),
                    _ => body.len(),
                };
            }
            records.clear();
        };
        for sealed in ledger.events(0, to)? {
            let sealed = sealed?;
            if stage >= 1 {
                records.push(exporters::record::log_record(&sealed, &origin, observed));
                if records.len() == batch {
                    flush(&mut records, &mut bytes);
                }
            }
        }
        flush(&mut records, &mut bytes);
        std::hint::black_box(bytes);
        out.push((name, t.elapsed().as_secs_f64()));
    }
    Ok(out)
}

/// The cursor's durable write as the sink makes it (temp file, fsync,
/// rename, directory fsync), in seconds, median of `n`.
fn cursor_write(dir: &Path, n: usize) -> Res<f64> {
    let mut each = Vec::with_capacity(n);
    let path = dir.join("cursor.json");
    let tmp = dir.join("cursor.json.tmp");
    let text = format!(
        "{{\"ledger_id\":\"{}\",\"seq\":123456,\"hash\":\"{}\"}}",
        "0".repeat(32),
        "0".repeat(64)
    );
    for _ in 0..n {
        let t = Instant::now();
        let f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut &f, text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()?;
        each.push(t.elapsed().as_secs_f64());
    }
    each.sort_by(f64::total_cmp);
    Ok(each[n / 2])
}

// ---- the gateway part --------------------------------------------------

fn sealgate_bin() -> String {
    std::env::var("SEALGATE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_sealgate").to_string())
}

fn run_sealgate(config: &Path, args: &[&str]) -> Res<String> {
    let out = Command::new(sealgate_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .output()?;
    if !out.status.success() {
        return Err(format!("sealgate {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The ledger's head seq (`sealgate head`, a read-only open beside the writer).
fn head_seq(config: &Path) -> Res<u64> {
    let text = run_sealgate(config, &["head"])?;
    text.lines()
        .find_map(|l| l.strip_prefix("seq ").and_then(|s| s.trim().parse().ok()))
        .ok_or_else(|| format!("no seq in `sealgate head`: {text}").into())
}

/// A gateway config on the data dir `data` with the fast upstream and one
/// sink to rotel over gRPC.
fn write_config(dir: &Path, data: &Path, upstream: &str, grpc: u16) -> Res<PathBuf> {
    std::fs::write(
        dir.join("policy.yaml"),
        "version: v1\noutput: { secrets: allow, pii: allow }\nrules:\n  - id: allow-all\n    decision: ALLOW\n",
    )?;
    let text = format!(
        "data_dir = {data:?}\n[gateway]\nlisten = \"127.0.0.1:0\"\n[auth]\ntokens_file = {tokens:?}\n\
         [governance]\npolicy_file = {policy:?}\n[[grants]]\nprincipal = \"*\"\nserver = \"*\"\n\
         [servers.fast_http]\ntransport = \"http\"\nurl = {upstream:?}\napprove = true\n\
         [[exporters]]\nname = \"bench\"\nendpoint = \"http://127.0.0.1:{grpc}\"\n",
        tokens = dir.join("tokens.toml"),
        policy = dir.join("policy.yaml"),
    );
    let config = dir.join("sealgate.toml");
    std::fs::write(&config, text)?;
    Ok(config)
}

/// `sealgate serve` on `config`: the process, its base URL and a token.
fn gateway(dir: &Path, config: &Path) -> Res<(Killed, String, String)> {
    let token = run_sealgate(
        config,
        &[
            "token",
            "create",
            "--principal",
            "bench",
            "--file",
            &dir.join("tokens.toml").display().to_string(),
        ],
    )?
    .trim()
    .to_string();
    let mut child = Command::new(sealgate_bin())
        .arg("--config")
        .arg(config)
        .arg("serve")
        .env("SEALGATE_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let base = first
        .strip_prefix("listening on ")
        .ok_or_else(|| format!("sealgate serve did not start: {first:?}"))?
        .to_string();
    std::thread::spawn(move || for _ in lines {});
    Ok((Killed(child), base, token))
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

/// Sequential echo call latencies, in microseconds.
async fn latencies(client: &Client, calls: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(calls);
    for i in 0..calls {
        let mut args = rmcp::model::JsonObject::new();
        args.insert("message".into(), serde_json::json!(format!("call {i}")));
        let started = Instant::now();
        let result = client
            .call_tool(CallToolRequestParams::new("echo").with_arguments(args))
            .await
            .expect("echo");
        assert_ne!(result.is_error, Some(true), "{result:?}");
        out.push(started.elapsed().as_micros() as u64);
    }
    out
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v
}

/// Waits until the sink's cursor is within `slack` of the head and the
/// gateway has been quiet (under 5 % of a core) for a second.
fn wait_caught_up(config: &Path, sink_dir: &Path, gw_pid: &str, within: Duration) -> Res<f64> {
    let started = Instant::now();
    let mut caught_up = None;
    loop {
        let head = head_seq(config)?;
        let at = cursor_seq(sink_dir).unwrap_or(0);
        if at + 64 >= head {
            caught_up.get_or_insert_with(|| started.elapsed().as_secs_f64());
            let c0 = cpu_us(gw_pid);
            std::thread::sleep(Duration::from_secs(1));
            if cpu_us(gw_pid) - c0 < 50_000.0 {
                return Ok(caught_up.unwrap_or(0.0));
            }
        } else {
            std::thread::sleep(Duration::from_millis(200));
        }
        if started.elapsed() > within {
            return Err(format!("the gateway's sink is at {at} of {head} after {within:?}").into());
        }
    }
}

struct Phase {
    direct: Vec<u64>,
    gw: Vec<u64>,
}

impl Phase {
    fn added(&self, p: f64) -> f64 {
        (percentile(&self.gw, p) as f64 - percentile(&self.direct, p) as f64) / 1000.0
    }
}

fn main() -> Res<()> {
    let n: u64 = env_num("SEALGATE_BENCH_EVENTS", 1_000_000);
    let batch: usize = env_num("SEALGATE_BENCH_BATCH", 512);
    let calls: usize = env_num("SEALGATE_BENCH_CALLS", 300);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root = match std::env::var("SEALGATE_BENCH_DIR") {
        Ok(d) => PathBuf::from(d),
        Err(_) => PathBuf::from(std::env::var("HOME")?).join(".cache/sealgate/bench"),
    };
    let cached = data_dir_of(&root, n)?;
    let ledger = Arc::new(Ledger::open_read_only(&cached.join("ledger"))?);
    let head = ledger.head_checked()?;
    let events = head.seq + 1;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "export bench: {events} events of made-up gateway traffic; batch_size {batch}; {} cores; load {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );

    // Where a sink's time goes.
    let k = PROFILE_EVENTS.min(events);
    let stages = profile(&ledger, k, batch)?;
    let scratch = tempfile::tempdir_in(&root)?;
    let fsync = cursor_write(scratch.path(), 100)?;
    println!();
    println!("## Where a sink's time goes (first {k} events, one core, no network)");
    println!();
    println!("| stage (cumulative) | events/s | µs per event, this stage |");
    println!("| --- | --- | --- |");
    let mut prev = 0.0;
    for (i, (name, secs)) in stages.iter().enumerate() {
        // The last stage replaces the one before it.
        let base = if i == 4 { stages[2].1 } else { prev };
        println!(
            "| {name} | {:.0} | {:.2} |",
            k as f64 / secs,
            (secs - base) * 1e6 / k as f64
        );
        if i < 4 {
            prev = *secs;
        }
    }
    let cpu_bound = k as f64 / prev;
    let grpc_bound_cpu = k as f64 / stages[4].1;
    // The sink writes its cursor at most every 250 ms while batches flow:
    // at most 4 writes a second take their share of the core.
    let cursor_share = (4.0 * fsync).min(1.0);
    println!(
        "| the cursor's durable write ({:.2} ms), at most 4 a second | – | {:.1} % of the core |",
        fsync * 1e3,
        cursor_share * 100.0
    );
    let bound = (1.0 - cursor_share) * k as f64 / prev;
    let grpc_bound = (1.0 - cursor_share) * k as f64 / stages[4].1;
    println!("| **all of it, one batch at a time: HTTP (gzip 1)** | **{bound:.0}** | |");
    println!("| **all of it, one batch at a time: gRPC (gzip 6)** | **{grpc_bound:.0}** | |");

    // Drains to rotel.
    let rdir = tempfile::tempdir()?;
    let rotel = Rotel::blackhole(rdir.path(), free_port(), free_port());
    let mut drains = BTreeMap::new();
    for (protocol, endpoint) in [
        ("grpc", format!("http://127.0.0.1:{}", rotel.grpc)),
        ("http", format!("http://127.0.0.1:{}", rotel.http)),
    ] {
        let d = drain(&ledger, &rotel, sink_config("bench", protocol, &endpoint, batch)?)?;
        drains.insert(protocol, d);
    }
    println!();
    println!("## Draining the log from seq 0 to rotel (blackhole exporter), gzip on");
    println!();
    println!("| protocol | events | seconds | events/s | requests | core µs per event: this process (sink) | rotel |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (p, d) in &drains {
        println!(
            "| {p} | {} | {:.2} | {:.0} | {} | {:.2} | {:.2} |",
            d.events,
            d.secs,
            d.events as f64 / d.secs,
            d.requests,
            d.here_us,
            d.rotel_us
        );
    }

    // The gateway's added latency, with a caught-up sink and a draining one.
    let gdir = tempfile::tempdir_in(&root)?;
    let data = gdir.path().join("data");
    std::fs::create_dir_all(&data)?;
    for part in ["ledger", "keys"] {
        let st = Command::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(cached.join(part))
            .arg(data.join(part))
            .status()?;
        if !st.success() {
            return Err(format!("cp {part} failed").into());
        }
    }
    let upstream_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("fast-upstream")
        .enable_all()
        .build()?;
    let (_, recorder, fast) = upstream_rt.block_on(sealgate_tools::fast_upstream::FastUpstream::spawn_http())?;
    recorder.set_enabled(false);
    let config = write_config(gdir.path(), &data, &fast.url(), rotel.grpc)?;
    let (gw, base, token) = gateway(gdir.path(), &config)?;
    let gw_pid = gw.0.id().to_string();
    let sink_dir = exporters::sink_dir(&data, "bench");
    // At its start the gateway sends the whole log and its query and search
    // indexes build it: wait until all of that is done.
    let first = wait_caught_up(&config, &sink_dir, &gw_pid, Duration::from_secs(1800))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let direct = rt.block_on(connect(&fast.url(), None));
    let through = rt.block_on(connect(&format!("{base}/mcp/fast_http"), Some(&token)));
    rt.block_on(latencies(&direct, 50));
    rt.block_on(latencies(&through, 50));
    let mut idle = Vec::new();
    let mut busy = Vec::new();
    let mut drained_in = Vec::new();
    let mut cut_short = 0;
    for _ in 0..ROUNDS {
        let one = |out: &mut Vec<Phase>| {
            let mut p = Phase {
                direct: Vec::new(),
                gw: Vec::new(),
            };
            for _ in 0..3 {
                p.direct.extend(rt.block_on(latencies(&direct, calls / 3)));
                p.gw.extend(rt.block_on(latencies(&through, calls / 3)));
            }
            out.push(Phase {
                direct: sorted(p.direct),
                gw: sorted(p.gw),
            });
        };
        one(&mut idle);
        // Send the whole log again, and measure while it goes.
        exporters::request_replay(&sink_dir, 0)?;
        let asked = Instant::now();
        while exporters::state::read_replay(&sink_dir)?.is_some() {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(200));
        one(&mut busy);
        if cursor_seq(&sink_dir).unwrap_or(0) + 64 >= head_seq(&config)? {
            cut_short += 1;
        }
        wait_caught_up(&config, &sink_dir, &gw_pid, Duration::from_secs(600))?;
        drained_in.push(asked.elapsed().as_secs_f64());
    }
    drop(gw);

    println!();
    println!(
        "## The gateway's added latency (gw http→http − direct http, fast upstream), ms; {ROUNDS} rounds of {calls} calls each way"
    );
    println!();
    println!(
        "| round | sink caught up: added p50 | p99 | sink draining the log: added p50 | p99 | direct p50, caught up / draining |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (i, (a, b)) in idle.iter().zip(&busy).enumerate() {
        println!(
            "| {} | {:+.3} | {:+.3} | {:+.3} | {:+.3} | {:.3} / {:.3} |",
            i + 1,
            a.added(0.5),
            a.added(0.99),
            b.added(0.5),
            b.added(0.99),
            percentile(&a.direct, 0.5) as f64 / 1000.0,
            percentile(&b.direct, 0.5) as f64 / 1000.0,
        );
    }
    let merge = |phases: &[Phase]| Phase {
        direct: sorted(phases.iter().flat_map(|p| p.direct.clone()).collect()),
        gw: sorted(phases.iter().flat_map(|p| p.gw.clone()).collect()),
    };
    let (all_idle, all_busy) = (merge(&idle), merge(&busy));
    println!(
        "| all | {:+.3} | {:+.3} | {:+.3} | {:+.3} | {:.3} / {:.3} |",
        all_idle.added(0.5),
        all_idle.added(0.99),
        all_busy.added(0.5),
        all_busy.added(0.99),
        percentile(&all_idle.direct, 0.5) as f64 / 1000.0,
        percentile(&all_busy.direct, 0.5) as f64 / 1000.0,
    );
    println!();
    println!(
        "inside `sealgate serve`: the first drain of the log (with the query and search indexes building it too) took {first:.1} s; each replay of it, with the calls above, {} s{}",
        drained_in
            .iter()
            .map(|s| format!("{s:.1}"))
            .collect::<Vec<_>>()
            .join(", "),
        if cut_short > 0 {
            format!(" ({cut_short} rounds' drain ended before their calls did)")
        } else {
            String::new()
        }
    );

    // Targets.
    let noise = {
        let p50s: Vec<f64> = idle.iter().map(|p| p.added(0.5)).collect();
        let max = p50s.iter().copied().fold(f64::MIN, f64::max);
        let min = p50s.iter().copied().fold(f64::MAX, f64::min);
        max - min
    };
    println!();
    println!("## Targets (2 cores)");
    println!();
    println!("| target | measured | bound / peer | verdict |");
    println!("| --- | --- | --- | --- |");
    for (p, d) in &drains {
        let rate = d.events as f64 / d.secs;
        let (b, c) = if *p == "grpc" {
            (grpc_bound, grpc_bound_cpu)
        } else {
            (bound, cpu_bound)
        };
        println!(
            "| ≥ 100,000 events/s over {p} | {rate:.0}/s | one core's sink work with the cursor writes: {b:.0}/s (without them {c:.0}/s) | {} |",
            if rate >= 100_000.0 { "PASS" } else { "FAIL" }
        );
    }
    if let Some(d) = drains.get("grpc") {
        let per_million = d.secs * 1e6 / d.events as f64;
        println!(
            "| a backlog of 1M drained in ≤ 15 s (gRPC) | {per_million:.1} s{} | {:.1} s at the bound above | {} |",
            if d.events == 1_000_000 { "" } else { " (scaled to 1M)" },
            1e6 / grpc_bound,
            if per_million <= 15.0 { "PASS" } else { "FAIL" }
        );
    }
    let delta = all_busy.added(0.5) - all_idle.added(0.5);
    let allowed = noise.max(0.05);
    println!(
        "| added latency unchanged while a sink drains (p50) | {:+.3} ms draining vs {:+.3} ms caught up: {delta:+.3} ms | noise: the caught-up rounds' p50 spread {noise:.3} ms (at least 0.05 ms) | {} |",
        all_busy.added(0.5),
        all_idle.added(0.5),
        if delta <= allowed { "PASS" } else { "FAIL" }
    );
    Ok(())
}
