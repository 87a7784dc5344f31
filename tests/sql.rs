//! `sealgate sql` and `sealgate index` as a user runs them: a real ledger
//! on disk holding the golden events of every kind (as the gateway's and
//! governance's writers wrote them, `tests/data/events/`), the real binary,
//! `kill -9` of an index build, and answers cross-checked with DuckDB.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ledger::{Actor, KeyDir, Ledger, SigningKey};

const E2E: &str = "end-to-end: needs DuckDB (tools/peers.sh); tools/test.sh runs it";

/// A data dir whose ledger holds `n` golden events after its genesis.
fn data_dir(root: &Path, n: usize) -> PathBuf {
    let data = root.join("data");
    let ledger = Ledger::create(
        &data.join("ledger"),
        &KeyDir::new(Ledger::default_key_dir(&data)),
        SigningKey::generate(),
        Actor {
            principal: Some("test".into()),
            ..Actor::default()
        },
    )
    .expect("create");
    let drafts = sealgate_tools::golden::drafts();
    let mut i = 0;
    while i < n {
        let take = (n - i).min(1000);
        let batch = (i..i + take).map(|k| drafts[k % drafts.len()].clone()).collect();
        ledger.submit(batch).expect("submit").wait().expect("append");
        i += take;
    }
    data
}

fn sealgate(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sealgate"));
    c.arg("--data-dir")
        .arg(data)
        .env_remove("SEALGATE_CONFIG")
        .env_remove("SEALGATE_KEY_DIR")
        .current_dir(data);
    c
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

fn sql(data: &Path, query: &str, format: &str) -> String {
    ok(
        sealgate(data)
            .args(["sql", "-o", format, query])
            .output()
            .expect("run sql"),
        query,
    )
}

fn store_files(data: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for sub in ["derived/query", "derived/query/segments"] {
        let Ok(entries) = std::fs::read_dir(data.join(sub)) else {
            continue;
        };
        for e in entries {
            let e = e.expect("entry");
            if e.path().is_file() {
                out.push((e.path().display().to_string(), e.metadata().expect("meta").len()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn sql_answers_with_its_head_and_bad_sql_is_an_error_that_writes_nothing() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = data_dir(root.path(), 300);
    let out = sealgate(&data)
        .args([
            "sql",
            "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY kind",
        ])
        .output()
        .expect("run");
    let text = ok(out.clone(), "count by kind");
    assert!(text.contains("| kind") && text.contains("policy.decision"), "{text}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("head: seq 300 hash "), "{stderr}");
    assert!(stderr.contains("answering from the log alone"), "{stderr}");

    ok(
        sealgate(&data).args(["index", "rebuild"]).output().expect("rebuild"),
        "rebuild",
    );
    let before = store_files(&data);
    for (query, expect) in [
        ("SELEC * FROM events", "Line: 1, Column: 1"),
        ("SELECT * FROM nothing", "nothing"),
        ("DELETE FROM events", "not supported"),
    ] {
        let out = sealgate(&data).args(["sql", query]).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{query}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{query}: {err}");
    }
    // Over the time limit: stopped, and said so.
    let slow = "SELECT count(*) AS n FROM events a, events b, \
                (SELECT e.seq FROM events e, (VALUES (1), (2), (3), (4), (5), (6), (7), (8)) v(x)) c \
                WHERE a.seq + b.seq + c.seq = 7";
    let started = std::time::Instant::now();
    let out = sealgate(&data)
        .args(["query", "--timeout", "1", slow])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("longer than its time limit of 1.0 s"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "stopped late: {:?}",
        started.elapsed()
    );
    // Over the memory limit (1 MiB): stopped, and said so.
    let big = "SELECT count(DISTINCT a.body || b.body) AS n FROM events a, events b";
    let out = sealgate(&data)
        .env("SEALGATE_QUERY__MEMORY_MB", "1")
        .args(["query", big])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("more memory than its limit"), "{err}");
    assert_eq!(store_files(&data), before, "a refused query changed the index");
    let status = ok(
        sealgate(&data).args(["index", "status"]).output().expect("status"),
        "status",
    );
    assert!(
        status.contains("head:    seq 300") && status.contains("lag:     301"),
        "{status}"
    );
}

/// `-o json` and `-o csv` write rows as the query makes them: an answer
/// whose query fails after its first rows is cut off where it failed (the
/// rows already made are out, the JSON does not parse) and the exit status
/// says so; a whole answer streamed is the same as one collected.
#[test]
fn sql_streams_json_and_csv_and_a_failure_mid_answer_cuts_it_off() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = data_dir(root.path(), 20);
    // Every value but 150_000 divides; the batch holding it fails.
    let failing = "SELECT value, 100 / (150000 - value) AS x FROM generate_series(1, 200000)";
    let out = sealgate(&data)
        .args(["sql", "-o", "json", failing])
        .output()
        .expect("run");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.to_lowercase().contains("divide by zero"), "{stderr}");
    assert!(
        stdout.starts_with("{\"head\":{\"seq\":20,"),
        "{}",
        &stdout[..stdout.len().min(200)]
    );
    // Rows come out as the plan makes them (two partitions: not in order).
    assert!(stdout.contains(",\"x\":0}"), "rows came out before the failure");
    assert!(!stdout.contains("\"value\":150000,"), "no row of the failing value");
    assert!(
        serde_json::from_str::<serde_json::Value>(&stdout).is_err(),
        "a cut-off answer must not parse as a whole one"
    );
    let out = sealgate(&data)
        .args(["sql", "-o", "csv", failing])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(
        csv.starts_with("value,x\n") && csv.lines().nth(1).is_some_and(|l| l.ends_with(",0")),
        "{}",
        &csv[..csv.len().min(100)]
    );

    let whole = "SELECT seq, kind FROM events ORDER BY seq";
    let streamed: serde_json::Value = serde_json::from_str(&sql(&data, whole, "json")).expect("json");
    assert_eq!(streamed["head"]["seq"], 20, "{streamed}");
    let rows = streamed["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 21, "genesis and 20 events");
    assert_eq!(rows[0]["seq"], 0);
    let csv = sql(&data, whole, "csv");
    assert_eq!(csv.lines().count(), 22, "a header and 21 rows: {csv}");
    assert_eq!(
        sql(&data, "SELECT seq FROM events WHERE seq > 99", "csv"),
        "seq\n",
        "an empty answer has its header"
    );
    let empty: serde_json::Value =
        serde_json::from_str(&sql(&data, "SELECT seq FROM events WHERE seq > 99", "json")).expect("json");
    assert_eq!(empty["rows"], serde_json::json!([]));
}

/// `kill -9` of `sealgate index rebuild` once its first segment is on disk,
/// then `index update`: the same index and answers as an uninterrupted build.
#[test]
fn an_index_build_killed_mid_segment_resumes_to_the_same_answers() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = data_dir(root.path(), 40_000);
    let mut child = sealgate(&data)
        .args(["index", "rebuild"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let segments = data.join("derived/query/segments");
    let started = Instant::now();
    loop {
        let n = std::fs::read_dir(&segments)
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "arrow"))
                })
                .count()
            })
            .unwrap_or(0);
        if n >= 1 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "no segment after 120 s");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the build ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let queries = [
        "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY kind",
        "SELECT seq, hash, server, decision FROM events WHERE seq BETWEEN 15000 AND 36000 ORDER BY seq",
    ];
    let interrupted: Vec<String> = queries.iter().map(|q| sql(&data, q, "csv")).collect();
    ok(
        sealgate(&data).args(["index", "update"]).output().expect("update"),
        "update",
    );
    let resumed: Vec<String> = queries.iter().map(|q| sql(&data, q, "csv")).collect();
    let resumed_files = store_files(&data);
    ok(
        sealgate(&data).args(["index", "rebuild"]).output().expect("rebuild"),
        "rebuild",
    );
    assert_eq!(store_files(&data), resumed_files, "resumed and rebuilt indexes differ");
    let rebuilt: Vec<String> = queries.iter().map(|q| sql(&data, q, "csv")).collect();
    assert_eq!(interrupted, rebuilt);
    assert_eq!(resumed, rebuilt);
    let out = sealgate(&data)
        .args(["sql", "--verify", queries[1]])
        .output()
        .expect("verify");
    ok(out, "verify after resume");
}

/// `sql --verify` shows the ranges an answer read complete under the
/// latest checkpoint issued (`checkpoints/latest.note`): their events
/// verify and are the whole range of the signed tree there; events past
/// it are named as not yet under a checkpoint. A checkpoint the log's key
/// did not sign is a disagreement (exit 1), not a proof.
#[test]
fn sql_verify_proves_the_ranges_it_read_complete_under_the_latest_checkpoint() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = data_dir(root.path(), 3000);
    let latest = data.join("checkpoints").join("latest.note");
    std::fs::create_dir_all(latest.parent().expect("dir")).expect("mkdir");
    let note = ok(
        sealgate(&data)
            .args(["checkpoint", "--size", "2001"])
            .output()
            .expect("checkpoint"),
        "checkpoint",
    );
    std::fs::write(&latest, &note).expect("latest.note");
    ok(
        sealgate(&data).args(["index", "update"]).output().expect("update"),
        "update",
    );
    let verify = |query: &str| {
        sealgate(&data)
            .args(["sql", "--verify", query])
            .output()
            .expect("sql --verify")
    };
    let out = verify("SELECT count(*) AS n FROM events");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(
            "complete: seq 0 to 2000 are every event there of the tree the log's key signed (checkpoint of 2001 events"
        ),
        "{err}"
    );
    assert!(err.contains("not yet under a checkpoint: seq 2001 to 3000"), "{err}");

    // Another ledger's checkpoint (same shape, its own key): refused.
    let other = tempfile::tempdir().expect("tempdir");
    let other_data = data_dir(other.path(), 10);
    let foreign = ok(
        sealgate(&other_data).args(["checkpoint"]).output().expect("checkpoint"),
        "other checkpoint",
    );
    std::fs::write(&latest, &foreign).expect("latest.note");
    let out = verify("SELECT count(*) AS n FROM events");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("does not verify under the log's keys"), "{err}");
    assert!(!err.contains("complete:"), "{err}");

    // The log rolled back behind a checkpoint its own key signed (a copy
    // of the data dir from before its last events): a disagreement.
    let before = root.path().join("before");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&data)
        .arg(&before)
        .status()
        .expect("cp");
    assert!(copied.success());
    {
        let ledger = Ledger::open(&data.join("ledger"), &KeyDir::new(Ledger::default_key_dir(&data))).expect("open");
        let more = sealgate_tools::golden::drafts().into_iter().take(20).collect();
        ledger.submit(more).expect("submit").wait().expect("append");
    }
    let later = ok(
        sealgate(&data).args(["checkpoint"]).output().expect("checkpoint"),
        "checkpoint after more events",
    );
    std::fs::write(before.join("checkpoints").join("latest.note"), &later).expect("latest.note");
    let out = sealgate(&before)
        .args(["sql", "--verify", "SELECT count(*) AS n FROM events"])
        .output()
        .expect("sql --verify");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the log holds 3001 events, fewer than its signed checkpoint of 3021"),
        "{err}"
    );
}

fn duckdb_python() -> String {
    match std::env::var("SEALGATE_DUCKDB_PYTHON").ok().filter(|v| !v.is_empty()) {
        Some(p) => p,
        None => panic!(
            "DuckDB not installed: run the tests with tools/test.sh (tools/peers.sh installs PyPI duckdb), \
             or eval the output of tools/peers.sh and export SEALGATE_DUCKDB_PYTHON"
        ),
    }
}

/// Runs `query` in DuckDB over the log's JSON export (a table `t` of
/// `seq`, `hash` and the `event` as JSON); rows as JSON arrays.
fn duckdb(python: &str, export: &Path, query: &str) -> Vec<serde_json::Value> {
    let script = r#"
import duckdb, json, sys
con = duckdb.connect()
con.execute("CREATE TABLE t AS SELECT * FROM read_json(?, format='newline_delimited', columns={'seq': 'UBIGINT', 'hash': 'VARCHAR', 'signature': 'VARCHAR', 'event': 'JSON'}, maximum_object_size=16777216)", [sys.argv[1]])
rows = con.execute(sys.argv[2]).fetchall()
print(json.dumps([list(r) for r in rows], default=str))
"#;
    let out = Command::new(python)
        .args(["-c", script])
        .arg(export)
        .arg(query)
        .output()
        .expect("run duckdb");
    serde_json::from_slice(ok(out, query).as_bytes()).expect("duckdb json")
}

/// Sealgate's answer (`-o json`) as rows of the named columns.
fn ours(data: &Path, query: &str, columns: &[&str]) -> Vec<serde_json::Value> {
    let doc: serde_json::Value = serde_json::from_str(&sql(data, query, "json")).expect("json");
    doc["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            serde_json::Value::Array(
                columns
                    .iter()
                    .map(|c| r.get(*c).cloned().unwrap_or(serde_json::Value::Null))
                    .collect(),
            )
        })
        .collect()
}

#[test]
#[ignore = "end-to-end: needs DuckDB (tools/peers.sh); tools/test.sh runs it"]
fn answers_agree_with_duckdb_over_the_log_export() {
    let _ = E2E;
    let python = duckdb_python();
    let root = tempfile::tempdir().expect("tempdir");
    let data = data_dir(root.path(), 2_500);
    ok(
        sealgate(&data).args(["index", "rebuild"]).output().expect("rebuild"),
        "rebuild",
    );
    let export = root.path().join("log.jsonl");
    std::fs::write(
        &export,
        ok(
            sealgate(&data).args(["log", "-o", "json"]).output().expect("log"),
            "log",
        ),
    )
    .expect("export");
    // Timestamps as the log writes them (RFC 3339, ns, Z).
    let log_ts = |seq: u64| {
        let out = ok(
            sealgate(&data)
                .args([
                    "log",
                    "-o",
                    "json",
                    "--from",
                    &seq.to_string(),
                    "--to",
                    &seq.to_string(),
                ])
                .output()
                .expect("log"),
            "log one",
        );
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
        v["event"]["ts"].as_str().expect("ts").to_owned()
    };
    let (from, to) = (log_ts(700), log_ts(1900));
    let call_id = {
        let doc: serde_json::Value = serde_json::from_str(&sql(
            &data,
            "SELECT call_id FROM events WHERE call_id IS NOT NULL ORDER BY seq LIMIT 1",
            "json",
        ))
        .expect("json");
        doc["rows"][0]["call_id"].as_str().expect("a call id").to_owned()
    };
    let cases: Vec<(String, String, Vec<&str>)> = vec![
        (
            "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY kind".into(),
            "SELECT event->>'$.kind' AS kind, count(*) AS n FROM t GROUP BY 1 ORDER BY 1".into(),
            vec!["kind", "n"],
        ),
        (
            "SELECT server, decision, count(*) AS n FROM events WHERE kind = 'policy.decision' \
             GROUP BY server, decision ORDER BY server NULLS FIRST, decision"
                .into(),
            "SELECT event->>'$.subject.server' AS server, event->>'$.body.decision' AS decision, count(*) AS n FROM t \
             WHERE event->>'$.kind' = 'policy.decision' GROUP BY 1, 2 ORDER BY 1 NULLS FIRST, 2"
                .into(),
            vec!["server", "decision", "n"],
        ),
        (
            format!(
                "SELECT kind, count(*) AS n FROM events WHERE ts BETWEEN '{from}' AND '{to}' GROUP BY kind ORDER BY kind"
            ),
            format!(
                "SELECT event->>'$.kind' AS kind, count(*) AS n FROM t \
                 WHERE CAST(replace(event->>'$.ts', 'Z', '') AS TIMESTAMP_NS) \
                       BETWEEN CAST(replace('{from}', 'Z', '') AS TIMESTAMP_NS) AND CAST(replace('{to}', 'Z', '') AS TIMESTAMP_NS) \
                 GROUP BY 1 ORDER BY 1"
            ),
            vec!["kind", "n"],
        ),
        (
            format!("SELECT seq, hash, kind FROM events WHERE call_id = '{call_id}' ORDER BY seq"),
            format!(
                "SELECT seq, hash, event->>'$.kind' FROM t WHERE event->>'$.correlation.call_id' = '{call_id}' ORDER BY seq"
            ),
            vec!["seq", "hash", "kind"],
        ),
    ];
    for (sealgate_sql, duck_sql, columns) in cases {
        let a = ours(&data, &sealgate_sql, &columns);
        let b = duckdb(&python, &export, &duck_sql);
        assert!(!a.is_empty(), "{sealgate_sql}: no rows");
        assert_eq!(a, b, "sealgate: {sealgate_sql}\nduckdb: {duck_sql}");
    }
}

/// `sealgate serve` follows the log for the index: started on a ledger
/// with more than a segment's worth of events, it cuts that segment without
/// anyone running `sealgate index`.
#[test]
fn serve_keeps_the_index() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = data_dir(root.path(), 17_000);
    let config = root.path().join("sealgate.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[gateway]\nlisten = \"127.0.0.1:0\"\n\n[servers.idle]\ntransport = \"stdio\"\ncommand = \"true\"\napprove = false\n",
            data.display().to_string()
        ),
    )
    .expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env_remove("SEALGATE_DATA_DIR")
        .env_remove("SEALGATE_KEY_DIR")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn serve");
    // The cursor is written after its segment: its appearing means a
    // segment is whole.
    let cursor = data.join("derived/query/cursor.json");
    let started = Instant::now();
    while !cursor.exists() && started.elapsed() < Duration::from_secs(120) {
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("serve exited: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let running = child.try_wait().expect("wait").is_none();
    child.kill().expect("kill serve");
    child.wait().expect("reap");
    assert!(running, "serve exited");
    assert!(cursor.exists(), "serve did not cut the first segment of 16,384 events");
    let status = ok(
        sealgate(&data).args(["index", "status"]).output().expect("status"),
        "status",
    );
    assert!(status.contains("cursor:  seq 16383"), "{status}");
}
