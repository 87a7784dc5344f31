//! The durable-append cases of the ledger benchmark, shared with the
//! proofs benchmark (`benches/proofs.rs`, which runs the 64-writer case on
//! a ledger with the Merkle tree and one without, side by side): the bench
//! draft, ledgers in service, the writers (OS threads or tokio tasks), and
//! the CPU accounting of the measurement window (Linux `/proc`).

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use ledger::{
    Actor, CommitStats, Correlation, Draft, EventKind, KeyDir, Ledger, RequestId, SigningKey, Subject, Value,
};

/// Drafts per `submit` when building the verification ledger.
pub const BUILD_BATCH: usize = 1024;
/// `submit` requests kept in flight when building the verification ledger.
pub const BUILD_IN_FLIGHT: usize = 8;

/// Events each append case's ledger takes (in `submit` batches) before it
/// is measured: ~160 MB, enough for RocksDB to have flushed its 64 MB
/// memtables and started a new WAL twice, as a ledger in service has. Until
/// then a fresh ledger's WAL is a file that grows with every write, and
/// each sync also commits its new size; afterwards the WAL is a recycled
/// file (`store.rs`) that syncs write over.
pub const SERVICE_FILL: usize = 200_000;
/// How long the writers go on appending after the measurement window, so
/// that they are all still running when the window's CPU use is read.
pub const WINDOW_TAIL: Duration = Duration::from_millis(50);
/// Stack of each writer thread (512 of them).
pub const WRITER_STACK: usize = 256 << 10;

/// Mean and percentiles of a set of durations (sorted in place).
#[derive(Clone, Copy)]
pub struct Latency {
    pub mean: Duration,
    pub p50: Duration,
    pub p99: Duration,
}

pub fn latency(samples: &mut [Duration]) -> Latency {
    if samples.is_empty() {
        return Latency {
            mean: Duration::ZERO,
            p50: Duration::ZERO,
            p99: Duration::ZERO,
        };
    }
    samples.sort_unstable();
    let total: Duration = samples.iter().sum();
    let pct = |p: f64| {
        let rank = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        samples[rank - 1]
    };
    Latency {
        mean: total / samples.len() as u32,
        p50: pct(0.50),
        p99: pct(0.99),
    }
}

/// A realistic `tool_call.requested` draft (~550 canonical bytes).
pub fn tool_call_draft(request_id: i64) -> Draft {
    let arguments = serde_json::json!({
        "path": "/srv/atlas/reports/2026/q4/summary.csv",
        "mode": "overwrite",
        "content": "region,quarter,revenue,units\nnorth,Q4,1284302,8812\nsouth,Q4,973211,6120\n",
        "create_parents": true,
    })
    .to_string();
    let mut draft = Draft::new(EventKind::ToolCallRequested);
    draft.actor = Actor {
        principal: Some("alice@example.com".into()),
        teams: Vec::new(),
        agent: None,
        session: Some("sess-7f3a9c2e41b8".into()),
    };
    draft.subject = Subject {
        server: Some("filesystem".into()),
        tool: Some("write_file".into()),
        resource: None,
        prompt: None,
        env: vec!["prod".into()],
    };
    draft.correlation = Correlation {
        request_id: Some(RequestId::Int(request_id)),
        ..Correlation::default()
    };
    draft.body.insert("arguments".into(), Value::String(arguments));
    draft
}

// ---------------------------------------------------------------------------
// CPU accounting (Linux /proc; figures show as `-` where it is unavailable)

/// CPU time used by the whole process so far, threads that exited included
/// (`utime + stime` of `/proc/self/stat`, in USER_HZ = 100 ticks).
pub fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the `(comm)`, which may hold spaces: state is field 3,
    // utime field 14 and stime field 15.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Which part of the work a thread does, by its name: the columns of the
/// core-time-per-append table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// `ledger-writer`: sealing, writing, and signing when it has nothing else to do.
    Writer,
    /// `ledger-sign-N`: the signing pool.
    Signers,
    /// `ledger-sync`: WAL syncs and acknowledgements.
    Sync,
    /// `rocksdb:*`: memtable flushes and compactions.
    Store,
    /// `bench-*`: the appending threads, or the runtime's workers running the
    /// appending tasks (and the ledger's pump).
    Callers,
    Other,
}

pub const STAGES: [Stage; 6] = [
    Stage::Writer,
    Stage::Signers,
    Stage::Sync,
    Stage::Store,
    Stage::Callers,
    Stage::Other,
];

impl Stage {
    pub fn of(comm: &str) -> Stage {
        match comm {
            "ledger-writer" => Stage::Writer,
            "ledger-sync" => Stage::Sync,
            c if c.starts_with("ledger-sign") => Stage::Signers,
            c if c.starts_with("rocksdb:") => Stage::Store,
            c if c.starts_with("bench-") => Stage::Callers,
            _ => Stage::Other,
        }
    }
}

/// On-CPU time of every live thread by thread id, with its stage
/// (`/proc/self/task/*/schedstat`, nanoseconds).
pub fn threads_cpu() -> Option<HashMap<u64, (Stage, Duration)>> {
    let mut out = HashMap::new();
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<u64>().ok()) else {
            continue;
        };
        // A thread may exit between the listing and these reads.
        let (Ok(comm), Ok(sched)) = (
            std::fs::read_to_string(task.path().join("comm")),
            std::fs::read_to_string(task.path().join("schedstat")),
        ) else {
            continue;
        };
        if let Some(nanos) = sched.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()) {
            out.insert(tid, (Stage::of(comm.trim_end()), Duration::from_nanos(nanos)));
        }
    }
    Some(out)
}

/// CPU used per stage between two [`threads_cpu`] snapshots. A thread
/// started in between counts from zero; one that exited is missing.
pub fn stage_cpu(
    before: &Option<HashMap<u64, (Stage, Duration)>>,
    after: &Option<HashMap<u64, (Stage, Duration)>>,
) -> Option<HashMap<Stage, Duration>> {
    let (before, after) = (before.as_ref()?, after.as_ref()?);
    let mut out = HashMap::new();
    for (tid, (stage, used)) in after {
        let from = before.get(tid).map_or(Duration::ZERO, |(_, d)| *d);
        *out.entry(*stage).or_insert(Duration::ZERO) += used.saturating_sub(from);
    }
    Some(out)
}

/// `used / (wall * cores)` as a percentage, or `-`.
pub fn busy(used: Option<Duration>, wall: Duration, cores: usize) -> String {
    match used {
        Some(u) => format!("{:.0}%", 100.0 * u.as_secs_f64() / (wall.as_secs_f64() * cores as f64)),
        None => "-".into(),
    }
}

/// Core time of every thread between two [`threads_cpu`] snapshots.
pub fn total_cpu(
    before: &Option<HashMap<u64, (Stage, Duration)>>,
    after: &Option<HashMap<u64, (Stage, Duration)>>,
) -> Option<Duration> {
    stage_cpu(before, after).map(|s| s.values().sum())
}

pub fn delta(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    b?.checked_sub(a?)
}

// ---------------------------------------------------------------------------
// 4. Durable appends

pub struct Appends {
    pub count: usize,
    pub per_sec: f64,
    pub mean: Duration,
    pub p50: Duration,
    pub p99: Duration,
    /// Events per WAL sync (commit group) in the window.
    pub per_sync: f64,
    /// Mean time of one of those syncs, in milliseconds.
    pub sync_ms: f64,
    /// CPU used by the process in the window.
    pub cpu: Option<Duration>,
    /// CPU used in the window by each stage's threads.
    pub stages: Option<HashMap<Stage, Duration>>,
}

impl Appends {
    pub fn stage(&self, stage: Stage) -> Option<Duration> {
        self.stages.as_ref().map(|s| s.get(&stage).copied().unwrap_or_default())
    }
}

/// What one writer thread saw inside the measurement window.
#[derive(Default)]
pub struct WriterLog {
    pub latencies: Vec<Duration>,
}

/// What the process and its threads had used at one moment.
pub struct Usage {
    /// CPU used by the process.
    pub cpu: Option<Duration>,
    pub threads: Option<HashMap<u64, (Stage, Duration)>>,
    pub commits: CommitStats,
}

/// What was used in the measurement window ([`Usage::since`]).
pub struct WindowUsage {
    pub cpu: Option<Duration>,
    pub stages: Option<HashMap<Stage, Duration>>,
    pub commits: CommitStats,
}

impl Usage {
    pub fn read(ledger: &Ledger) -> Usage {
        Usage {
            cpu: process_cpu(),
            threads: threads_cpu(),
            commits: ledger.commit_stats(),
        }
    }

    pub fn since(self, before: Usage) -> WindowUsage {
        WindowUsage {
            cpu: delta(before.cpu, self.cpu),
            stages: stage_cpu(&before.threads, &self.threads),
            commits: CommitStats {
                syncs: self.commits.syncs.saturating_sub(before.commits.syncs),
                events: self.commits.events.saturating_sub(before.commits.events),
                sync_nanos: self.commits.sync_nanos.saturating_sub(before.commits.sync_nanos),
            },
        }
    }
}

pub fn new_ledger(base: &Path) -> Result<(tempfile::TempDir, Ledger)> {
    new_ledger_with(base, true)
}

/// A new ledger in a temp dir under `base`; with `tree` false, one whose
/// writer does not maintain the Merkle tree
/// ([`Ledger::create_without_tree`]: a throwaway ledger for measuring what
/// the tree costs).
pub fn new_ledger_with(base: &Path, tree: bool) -> Result<(tempfile::TempDir, Ledger)> {
    let dir = tempfile::tempdir_in(base).with_context(|| format!("cannot create a temp dir in {}", base.display()))?;
    let path = dir.path().join("ledger");
    let keys = KeyDir::new(dir.path().join("keys"));
    let ledger = if tree {
        Ledger::create(&path, &keys, SigningKey::generate(), Actor::default())
    } else {
        Ledger::create_without_tree(&path, &keys, SigningKey::generate(), Actor::default())
    }
    .with_context(|| format!("cannot create a ledger in {}", path.display()))?;
    Ok((dir, ledger))
}

/// A new ledger that has already taken [`SERVICE_FILL`] events.
pub fn ledger_in_service(base: &Path) -> Result<(tempfile::TempDir, Ledger)> {
    ledger_in_service_with(base, true)
}

/// [`ledger_in_service`], with or without the Merkle tree ([`new_ledger_with`]).
pub fn ledger_in_service_with(base: &Path, tree: bool) -> Result<(tempfile::TempDir, Ledger)> {
    let (dir, ledger) = new_ledger_with(base, tree)?;
    fill(&ledger, SERVICE_FILL)?;
    Ok((dir, ledger))
}

/// Appends `events` copies of the bench draft in `submit` batches of
/// [`BUILD_BATCH`], [`BUILD_IN_FLIGHT`] at a time.
pub fn fill(ledger: &Ledger, events: usize) -> Result<()> {
    fill_with(ledger, events, &tool_call_draft(0), |_| {})
}

/// Appends `events` copies of `template` (each with its own request id) in
/// `submit` batches of [`BUILD_BATCH`], [`BUILD_IN_FLIGHT`] at a time;
/// `progress` is told the events appended so far after each batch.
pub fn fill_with(ledger: &Ledger, events: usize, template: &Draft, mut progress: impl FnMut(usize)) -> Result<()> {
    let mut in_flight = VecDeque::with_capacity(BUILD_IN_FLIGHT);
    let mut next_id: i64 = 0;
    for _ in 0..events.div_ceil(BUILD_BATCH) {
        let drafts: Vec<Draft> = (0..BUILD_BATCH)
            .map(|_| {
                let mut d = template.clone();
                d.correlation.request_id = Some(RequestId::Int(next_id));
                next_id += 1;
                d
            })
            .collect();
        in_flight.push_back(ledger.submit(drafts).context("cannot submit drafts")?);
        if in_flight.len() >= BUILD_IN_FLIGHT
            && let Some(p) = in_flight.pop_front()
        {
            p.wait().context("a batch append failed while filling the ledger")?;
            progress(next_id as usize - in_flight.len() * BUILD_BATCH);
        }
    }
    for p in in_flight {
        p.wait().context("a batch append failed while filling the ledger")?;
    }
    Ok(())
}

/// `writers` OS threads each looping [`Ledger::append_blocking`] on
/// `ledger` for `warmup`, then for the measured `window`.
pub fn durable_appends_on(ledger: &Ledger, writers: usize, warmup: Duration, window: Duration) -> Result<Appends> {
    // Writers wait for `go` (0: wait, 1: go, 2: abort), then read `start`.
    let go = &AtomicU8::new(0);
    let start = &OnceLock::new();
    let mut measured = None;
    let window_out = &mut measured;
    let logs: Result<Vec<Result<WriterLog>>> = std::thread::scope(|scope| {
        let mut handles = Vec::with_capacity(writers);
        for w in 0..writers {
            let spawned = std::thread::Builder::new()
                .name(format!("bench-writer-{w}"))
                .stack_size(WRITER_STACK)
                .spawn_scoped(scope, move || -> Result<WriterLog> {
                    let template = tool_call_draft(0);
                    let mut log = WriterLog::default();
                    let start: Instant = loop {
                        match go.load(Ordering::Acquire) {
                            0 => std::thread::sleep(Duration::from_millis(1)),
                            1 => break *start.get().context("start time not set")?,
                            _ => return Ok(log),
                        }
                    };
                    let (measure_from, stop_at) = (start + warmup, start + warmup + window);
                    let mut n: i64 = 0;
                    loop {
                        let t0 = Instant::now();
                        if t0 >= stop_at + WINDOW_TAIL {
                            break;
                        }
                        let mut draft = template.clone();
                        draft.correlation.request_id = Some(RequestId::Int(((w as i64) << 32) | n));
                        n += 1;
                        ledger
                            .append_blocking(draft)
                            .with_context(|| format!("writer {w}: append failed"))?;
                        let t1 = Instant::now();
                        if t0 >= measure_from && t1 <= stop_at {
                            log.latencies.push(t1 - t0);
                        }
                    }
                    Ok(log)
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    go.store(2, Ordering::Release);
                    for h in handles {
                        let _ = h.join();
                    }
                    return Err(anyhow::anyhow!("cannot spawn writer thread {w} of {writers}: {e}"));
                }
            }
        }
        let t0 = Instant::now();
        let _ = start.set(t0);
        go.store(1, Ordering::Release);
        std::thread::sleep((t0 + warmup).saturating_duration_since(Instant::now()));
        let before = Usage::read(ledger);
        std::thread::sleep((t0 + warmup + window).saturating_duration_since(Instant::now()));
        *window_out = Some(Usage::read(ledger).since(before));
        Ok(handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a writer thread panicked")))
            })
            .collect())
    });
    let measured = measured.context("the measurement window was not read")?;
    summarize(logs?, &format!("{writers} writers"), window, measured)
}

/// Merges what the writers saw into the figures of one case.
pub fn summarize(logs: Vec<Result<WriterLog>>, what: &str, window: Duration, measured: WindowUsage) -> Result<Appends> {
    let mut latencies = Vec::new();
    for log in logs {
        latencies.extend(log?.latencies);
    }
    ensure!(
        !latencies.is_empty(),
        "{what}: no append completed inside the measurement window"
    );
    let c = measured.commits;
    let syncs = c.syncs.max(1) as f64;
    let count = latencies.len();
    let lat = latency(&mut latencies);
    Ok(Appends {
        count,
        per_sec: count as f64 / window.as_secs_f64(),
        mean: lat.mean,
        p50: lat.p50,
        p99: lat.p99,
        per_sync: c.events as f64 / syncs,
        sync_ms: c.sync_nanos as f64 / syncs / 1e6,
        cpu: measured.cpu,
        stages: measured.stages,
    })
}

/// A tokio runtime with one worker per core, as the gateway runs.
pub fn task_runtime(cores: usize) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .thread_name("bench-task-worker")
        .enable_time()
        .build()
        .context("cannot start a tokio runtime")
}

/// The same measurement with writers as tokio tasks awaiting
/// [`Ledger::append`] on a multi-threaded runtime with one worker per core:
/// the shape in which the gateway appends (one task per MCP request).
pub fn durable_appends_async_on(
    ledger: Arc<Ledger>,
    writers: usize,
    warmup: Duration,
    window: Duration,
    cores: usize,
) -> Result<Appends> {
    let runtime = task_runtime(cores)?;
    let start = Instant::now() + Duration::from_millis(50);
    let (measure_from, stop_at) = (start + warmup, start + warmup + window);
    let mut tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        let ledger = ledger.clone();
        tasks.push(runtime.spawn(async move {
            let template = tool_call_draft(0);
            let mut log = WriterLog::default();
            tokio::time::sleep_until(start.into()).await;
            let mut n: i64 = 0;
            loop {
                let t0 = Instant::now();
                if t0 >= stop_at + WINDOW_TAIL {
                    break;
                }
                let mut draft = template.clone();
                draft.correlation.request_id = Some(RequestId::Int(((w as i64) << 32) | n));
                n += 1;
                ledger
                    .append(draft)
                    .await
                    .with_context(|| format!("task {w}: append failed"))?;
                let t1 = Instant::now();
                if t0 >= measure_from && t1 <= stop_at {
                    log.latencies.push(t1 - t0);
                }
            }
            anyhow::Ok(log)
        }));
    }
    std::thread::sleep(measure_from.saturating_duration_since(Instant::now()));
    let before = Usage::read(&ledger);
    std::thread::sleep(stop_at.saturating_duration_since(Instant::now()));
    let measured = Usage::read(&ledger).since(before);
    let logs: Vec<Result<WriterLog>> = runtime.block_on(async {
        let mut out = Vec::with_capacity(tasks.len());
        for t in tasks {
            out.push(
                t.await
                    .unwrap_or_else(|e| Err(anyhow::anyhow!("a writer task failed: {e}"))),
            );
        }
        out
    });
    drop(runtime);
    drop(ledger);
    summarize(logs, &format!("{writers} tasks"), window, measured)
}
