//! The read side (docs/QUERY.md) on a big ledger, side by side with DuckDB
//! in the same run (issue 21's benchmark).
//!
//! The ledger: `SEALGATE_BENCH_EVENTS` events (default 10,000,000) of
//! made-up gateway traffic over the year 2027 (`sealgate_tools::traffic`:
//! 300 principals, 48 servers labelled prod/staging/dev, sessions, calls
//! with decisions at every gate, approvals answered minutes to hours later,
//! outcomes, refused authentications, drift), appended by the real writer
//! in ten-minute groups dated by a simulated clock. Built once and kept
//! under `$HOME/.cache/sealgate/bench/` (or `SEALGATE_BENCH_DIR`), with
//! its Parquet export and DuckDB database.
//!
//! Measured, best of several runs unless said:
//! - index build: the SQL follower from seq 0 to the head (events/s;
//!   target ≥ 100,000/s), beside reading and decoding the log alone (the
//!   physical limit of the same run), and the search index's build;
//! - the issue's queries, each through `query::run` (as `sealgate query`
//!   and `sealgate report` run them, with their default limits) and in
//!   DuckDB over the same events loaded into a DuckDB table, with the same
//!   view definitions (DuckDB's spelling of a few functions), loaded from
//!   Sealgate's own Parquet export; target: every aggregate no slower than
//!   DuckDB;
//! - point lookups by call id and by hash (target ≤ 5 ms);
//! - full-text search for a token one event holds, p50/p99 over 200 runs,
//!   opening the index each time as `sealgate search` does (target p99 ≤
//!   50 ms), beside DuckDB's `LIKE` over the same bodies;
//! - follower lag: a second, live ledger written at 5,000 events/s for
//!   20 s, followed as `sealgate serve` follows it (both indexes, 250 ms
//!   between rounds); the time from an event's append to the end of the
//!   round that indexed it (target ≤ 1 s). Answers never wait for it: rows
//!   past the index are read from the log at query time.
//!
//! Needs DuckDB (`SEALGATE_DUCKDB_PYTHON`, installed by tools/peers.sh).
//! `cargo bench --bench query`. Figures are printed, never asserted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ledger::{Actor, KeyDir, Ledger, SigningKey, StoreOptions, Timestamp};
use query::{Follower, Snapshot, Source};
use sealgate_tools::traffic::{RARE_TOKEN, Spec, Traffic};

/// 2027-01-01T00:00:00Z.
const YEAR_START_NS: u64 = 1_798_761_600 * 1_000_000_000;
/// Bump when the traffic changes, so a cached ledger is rebuilt.
const TRAFFIC_VERSION: u32 = 1;

static SIMULATED: AtomicU64 = AtomicU64::new(0);

fn simulated() -> Timestamp {
    Timestamp::from_nanos(SIMULATED.load(Ordering::SeqCst))
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::INFINITY;
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let out = f();
        best = best.min(t.elapsed().as_secs_f64());
        last = Some(out);
    }
    (best, last.expect("at least one run"))
}

/// The cached ledger of `n` events, built if missing.
fn ledger_of(root: &Path, n: u64) -> Res<PathBuf> {
    let dir = root.join(format!("query-{n}-v{TRAFFIC_VERSION}"));
    let path = dir.join("ledger");
    if dir.join("complete").exists() {
        return Ok(dir);
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let keys = KeyDir::new(dir.join("keys"));
    drop(Ledger::create(&path, &keys, SigningKey::generate(), Actor::default())?);
    SIMULATED.store(YEAR_START_NS, Ordering::SeqCst);
    let ledger = Ledger::open_with_clock(&path, &keys, &StoreOptions::default(), simulated)?;
    let mut traffic = Traffic::new(Spec::year(n, YEAR_START_NS));
    let started = Instant::now();
    let mut next = ledger.head().seq + 1;
    let mut shown = 0;
    while let Some((ts, drafts)) = traffic.next_tick(next) {
        SIMULATED.store(ts, Ordering::SeqCst);
        let k = drafts.len() as u64;
        ledger.submit(drafts)?.wait()?;
        next += k;
        if next * 20 / n > shown {
            shown = next * 20 / n;
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

/// A query of the comparison: its name, Sealgate's SQL, DuckDB's.
struct Q {
    name: &'static str,
    ours: String,
    duck: String,
    aggregate: bool,
}

/// DuckDB's spelling of the few functions the two engines name apart.
fn duckdb_sql(sql: &str) -> String {
    sql.replace("approx_percentile_cont(", "approx_quantile(")
        .replace(
            "CAST(a.ts AS BIGINT) - CAST(r.ts AS BIGINT)",
            "epoch_ns(a.ts) - epoch_ns(r.ts)",
        )
        .replace(
            "date_trunc('week', requested_at)",
            "date_trunc('week', CAST(requested_at AS TIMESTAMPTZ))",
        )
}

fn report_sql(name: &str, from: &str, to: &str) -> Res<String> {
    let report = query::reports::find(name).ok_or_else(|| format!("no report {name}"))?;
    Ok(report.sql(&query::reports::Params {
        window: query::reports::Window {
            from: Some(from.into()),
            to: Some(to.into()),
        },
        env: "prod".into(),
        targets: Default::default(),
    }))
}

const DUCKDB_SCRIPT: &str = r#"
import duckdb, json, sys, time, glob, os
db, parquet, views_json, queries_json = sys.argv[1:5]
if not os.path.exists(db):
    # Loaded into a file of its own, renamed when whole.
    t = time.perf_counter()
    tmp = db + ".tmp"
    if os.path.exists(tmp):
        os.remove(tmp)
    con = duckdb.connect(tmp)
    files = sorted(glob.glob(parquet + "/*/events.parquet"))
    con.execute(f"CREATE TABLE events AS SELECT * FROM read_parquet({files!r})")
    con.close()
    os.rename(tmp, db)
    print(f"duckdb: loaded in {time.perf_counter() - t:.1f} s", file=sys.stderr)
con = duckdb.connect(db, read_only=True)
con.execute("SET threads TO 2")
con.execute("SET enable_progress_bar = false")
for name, sql in json.loads(views_json):
    con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {sql}")
out = {}
for name, sql, runs in json.loads(queries_json):
    best, rows = float("inf"), None
    try:
        for _ in range(runs):
            t = time.perf_counter()
            rows = len(con.execute(sql).fetchall())
            best = min(best, time.perf_counter() - t)
        out[name] = {"secs": best, "rows": rows}
    except duckdb.Error as e:
        print(f"duckdb: {name}: {e}", file=sys.stderr)
print(json.dumps(out))
"#;

fn main() -> Res<()> {
    let n: u64 = match std::env::var("SEALGATE_BENCH_EVENTS") {
        Ok(v) => v.parse().map_err(|e| format!("SEALGATE_BENCH_EVENTS={v}: {e}"))?,
        Err(_) => 10_000_000,
    };
    let python = std::env::var("SEALGATE_DUCKDB_PYTHON")
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or("SEALGATE_DUCKDB_PYTHON is not set: tools/peers.sh installs DuckDB and prints where")?;
    let root = match std::env::var("SEALGATE_BENCH_DIR") {
        Ok(d) => PathBuf::from(d),
        Err(_) => PathBuf::from(std::env::var("HOME")?).join(".cache/sealgate/bench"),
    };
    let dir = ledger_of(&root, n)?;
    let ledger = Arc::new(Ledger::open_read_only(&dir.join("ledger"))?);
    let head = ledger.head_checked()?;
    println!(
        "query bench: {} events of made-up gateway traffic over 2027",
        head.seq + 1
    );

    // Index builds.
    let (read_secs, read) = best_of(1, || {
        ledger.events(0, head.seq).map(|it| it.filter(Result::is_ok).count())
    });
    let read = read?;
    let store = dir.join("store");
    let (build_secs, ()) = best_of(1, || {
        query::store::wipe(&store).expect("wipe");
        let (mut f, _) = Follower::open(&store, &ledger, query::DEFAULT_SEGMENT_EVENTS).expect("open");
        f.catch_up(&ledger, &head, |_| {}).expect("catch up");
    });
    println!(
        "index build:        {:>9.0} events/s ({:.1} s)   reading+decoding the log alone: {:>9.0} events/s ({:.1} s)",
        (head.seq + 1) as f64 / build_secs,
        build_secs,
        read as f64 / read_secs,
        read_secs
    );
    let search_dir = dir.join("search");
    let (ix_secs, ()) = best_of(1, || {
        query::text::wipe_text(&search_dir).expect("wipe");
        let (mut f, _) =
            query::text::TextFollower::open(&search_dir, &ledger, query::text::DEFAULT_COMMIT_EVENTS).expect("open");
        f.catch_up(&ledger, &head, |_| {}).expect("catch up");
        f.close().expect("close");
    });
    println!(
        "search index build: {:>9.0} events/s ({:.1} s)",
        (head.seq + 1) as f64 / ix_secs,
        ix_secs
    );
    let snap = Arc::new(Snapshot::open(&store, ledger.clone(), head)?);

    // The same data for DuckDB: Sealgate's Parquet export, a month at a
    // time (the export holds a window's rows in memory).
    // Kept only until DuckDB has loaded it (the database is kept instead).
    let parquet = dir.join("parquet");
    let duckdb_db = dir.join("duckdb.db");
    if !duckdb_db.exists() && !parquet.join("complete").exists() {
        if parquet.exists() {
            std::fs::remove_dir_all(&parquet)?;
        }
        let t = Instant::now();
        let opts = query::Options {
            tables: &[],
            limits: query::Limits {
                timeout: Duration::from_secs(3600),
                memory_bytes: 16 << 30,
            },
        };
        let month = |k: u32| format!("2027-{:02}-01T00:00:00Z", k + 1);
        for m in 0..12 {
            // The first month takes anything before it, the last anything after.
            let window = query::reports::Window {
                from: (m > 0).then(|| month(m)),
                to: (m < 11).then(|| month(m + 1)),
            };
            query::parquet_export::export_tables(
                snap.clone(),
                &parquet.join(format!("m{m:02}")),
                &window,
                &opts,
                &[("events", "ts")],
            )?;
        }
        std::fs::write(parquet.join("complete"), "")?;
        println!("parquet export:     {:.1} s", t.elapsed().as_secs_f64());
    }

    // The queries.
    let rare_seq = {
        let found = query::run(
            snap.clone(),
            Source::Store,
            &format!("SELECT seq FROM search('{RARE_TOKEN}')"),
        )?;
        found.rows()
    };
    let one = ledger.get(head.seq / 2)?.ok_or("no event in the middle")?;
    let call_id = (0..1000)
        .filter_map(|k| ledger.get(head.seq / 2 + k).ok().flatten())
        .find_map(|e| e.event.correlation.call_id)
        .ok_or("no call id near the middle")?;
    let hash = one.hash.to_hex();
    let hour_from = "2027-06-15T14:00:00Z";
    let hour_to = "2027-06-15T15:00:00Z";
    let views: Vec<(String, String)> = query::views::VIEWS
        .iter()
        .map(|(n, sql)| (n.to_string(), duckdb_sql(sql)))
        .collect();
    let mut qs = vec![
        Q {
            name: "servers touching prod, last quarter",
            ours: report_sql("servers-touching", "2027-10-01T00:00:00Z", "2028-01-01T00:00:00Z")?,
            duck: String::new(),
            aggregate: true,
        },
        Q {
            name: "a principal's hour",
            ours: format!(
                "SELECT seq, hash, ts, kind, server, tool, decision, outcome FROM events \
                 WHERE principal = 'user-042' AND ts >= '{hour_from}' AND ts < '{hour_to}' ORDER BY seq"
            ),
            duck: String::new(),
            aggregate: false,
        },
        Q {
            name: "top denials by server, 30 days",
            ours: "SELECT server, reason_code, count(*) AS n FROM decisions \
                   WHERE decision = 'DENY' AND ts >= '2027-11-01T00:00:00Z' AND ts < '2027-12-01T00:00:00Z' \
                   GROUP BY server, reason_code ORDER BY n DESC, server, reason_code LIMIT 20"
                .into(),
            duck: String::new(),
            aggregate: true,
        },
        Q {
            name: "approvals by week",
            ours: "SELECT date_trunc('week', requested_at) AS week, status, count(*) AS n, \
                   median(CAST(wait_ns AS DOUBLE) / 1e9) AS median_wait_s FROM approvals \
                   GROUP BY 1, 2 ORDER BY 1, 2"
                .into(),
            duck: String::new(),
            aggregate: true,
        },
        Q {
            name: "gates, last quarter",
            ours: report_sql("gates", "2027-10-01T00:00:00Z", "2028-01-01T00:00:00Z")?,
            duck: String::new(),
            aggregate: true,
        },
        Q {
            name: "lookup by call id",
            ours: format!("SELECT seq, hash, kind FROM events WHERE call_id = '{call_id}'"),
            duck: String::new(),
            aggregate: false,
        },
        Q {
            name: "lookup by hash",
            ours: format!("SELECT seq, hash, kind FROM events WHERE hash = '{hash}'"),
            duck: String::new(),
            aggregate: false,
        },
        Q {
            name: "body contains a rare token (DuckDB LIKE)",
            ours: String::new(),
            duck: format!("SELECT seq FROM events WHERE body LIKE '%{RARE_TOKEN}%'"),
            aggregate: false,
        },
    ];
    for q in &mut qs {
        if q.duck.is_empty() {
            q.duck = duckdb_sql(&q.ours);
        }
    }
    let duck_queries: Vec<(String, String, usize)> = qs
        .iter()
        .map(|q| (q.name.to_string(), q.duck.clone(), if q.aggregate { 3 } else { 5 }))
        .collect();
    let out = std::process::Command::new(&python)
        .args(["-c", DUCKDB_SCRIPT])
        .arg(&duckdb_db)
        .arg(&parquet)
        .arg(serde_json::to_string(&views)?)
        .arg(serde_json::to_string(&duck_queries)?)
        .stderr(std::process::Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("duckdb failed: {}", String::from_utf8_lossy(&out.stdout)).into());
    }
    // The answer is the script's last line (DuckDB may print before it).
    let stdout = String::from_utf8_lossy(&out.stdout);
    let duck: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("{}"))
        .map_err(|e| format!("duckdb's answer is not JSON ({e}): {stdout}"))?;
    if parquet.exists() {
        std::fs::remove_dir_all(&parquet)?;
    }

    println!();
    println!(
        "{:<42} {:>12} {:>8} {:>12} {:>8} {:>7}",
        "query", "sealgate ms", "rows", "duckdb ms", "rows", "ratio"
    );
    for q in &qs {
        let d = &duck[q.name];
        let d_ms = d["secs"].as_f64().map(|s| s * 1e3);
        let ours = if q.ours.is_empty() {
            None
        } else {
            let runs = if q.aggregate { 2 } else { 5 };
            let (secs, res) = best_of(runs, || query::run(snap.clone(), Source::Store, &q.ours));
            Some(match res {
                Ok(a) => (format!("{:.1}", secs * 1e3), a.rows().to_string(), Some(secs * 1e3)),
                Err(e) => (format!("failed: {e}"), "-".into(), None),
            })
        };
        let (o_ms, o_rows, o_val) = ours.unwrap_or(("-".into(), "-".into(), None));
        let ratio = match (o_val, d_ms) {
            (Some(o), Some(d)) if d > 0.0 => format!("{:.2}", o / d),
            _ => "-".into(),
        };
        println!(
            "{:<42} {:>12} {:>8} {:>12} {:>8} {:>7}",
            q.name,
            o_ms,
            o_rows,
            d_ms.map_or("-".into(), |v| format!("{v:.1}")),
            d["rows"].as_u64().map_or("-".into(), |v| v.to_string()),
            ratio
        );
    }
    println!("(ratio: sealgate / duckdb over the same events and views; target ≤ 1 for aggregates)");

    // Full-text search.
    let rare = query::text::Request::new(RARE_TOKEN);
    let mut times = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let s = query::text::TextSnapshot::open(&search_dir, ledger.clone(), head)?;
        let a = query::text::search(&s, &rare)?;
        times.push(t.elapsed().as_secs_f64());
        assert_eq!(a.hits.len(), 1, "the rare token is in one event");
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize] * 1e3;
    println!(
        "\nrare-token search:  p50 {:.2} ms, p99 {:.2} ms (open + search + excerpt; {} hit by SQL search())",
        pct(0.5),
        pct(0.99),
        rare_seq
    );

    follower_lag()?;
    Ok(())
}

/// A live ledger written at 5,000 events/s for 20 s, followed by both
/// indexes as `sealgate serve` follows it.
fn follower_lag() -> Res<()> {
    const RATE: u64 = 5_000;
    const SECS: u64 = 20;
    const EVERY_MS: u64 = 10;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("ledger");
    let keys = KeyDir::new(dir.path().join("keys"));
    let writer = Arc::new(Ledger::create(&path, &keys, SigningKey::generate(), Actor::default())?);
    let store = dir.path().join("store");
    let search = dir.path().join("search");
    let appended: Arc<std::sync::Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let follower = {
        let ledger = writer.clone();
        let (stop, appended) = (stop.clone(), appended.clone());
        std::thread::spawn(move || -> Result<Vec<f64>, String> {
            let (mut f, _) =
                Follower::open(&store, &ledger, query::DEFAULT_SEGMENT_EVENTS).map_err(|e| e.to_string())?;
            let (mut t, _) = query::text::TextFollower::open(&search, &ledger, query::text::DEFAULT_COMMIT_EVENTS)
                .map_err(|e| e.to_string())?;
            let mut lags = Vec::new();
            let mut done = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let head = ledger.head();
                f.catch_up(&ledger, &head, |_| {}).map_err(|e| e.to_string())?;
                t.catch_up(&ledger, &head, |_| {}).map_err(|e| e.to_string())?;
                let now = Instant::now();
                let marks = appended.lock().map_err(|e| e.to_string())?;
                let from = done;
                for (seq, at) in marks.iter().filter(|(s, _)| *s > from && *s <= head.seq) {
                    lags.push(now.duration_since(*at).as_secs_f64());
                    done = done.max(*seq);
                }
                drop(marks);
                std::thread::sleep(Duration::from_millis(250));
            }
            t.close().map_err(|e| e.to_string())?;
            Ok(lags)
        })
    };
    let mut traffic = Traffic::new(Spec::year(RATE * SECS, YEAR_START_NS));
    let per_round = RATE * EVERY_MS / 1000;
    let started = Instant::now();
    let mut pending: Vec<ledger::Draft> = Vec::new();
    let mut sent = 0u64;
    let mut round = 0u64;
    while sent < RATE * SECS {
        let due = started + Duration::from_millis(round * EVERY_MS);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        while (pending.len() as u64) < per_round {
            // The tick's seqs are only for `answers`; here they may be off
            // by the events still pending, which the follower does not read.
            match traffic.next_tick(writer.head().seq + 1 + pending.len() as u64) {
                Some((_, d)) => pending.extend(d),
                None => break,
            }
        }
        let take = pending.len().min(per_round as usize);
        if take == 0 {
            break;
        }
        let batch: Vec<_> = pending.drain(..take).collect();
        let receipts = writer.submit(batch)?.wait()?;
        if let Some(last) = receipts.last() {
            appended
                .lock()
                .map_err(|e| e.to_string())?
                .push((last.seq, Instant::now()));
        }
        sent += take as u64;
        round += 1;
    }
    let rate = sent as f64 / started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(600));
    stop.store(true, Ordering::Relaxed);
    let mut lags = follower.join().map_err(|_| "the follower panicked")??;
    lags.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lags.get(((lags.len().max(1) - 1) as f64 * p) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "follower lag at {rate:.0} events/s written: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (both indexes, 250 ms between rounds)",
        pct(0.5) * 1e3,
        pct(0.99) * 1e3,
        lags.last().copied().unwrap_or(f64::NAN) * 1e3
    );
    Ok(())
}
