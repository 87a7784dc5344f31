//! `sealgate search` and the search part of `sealgate index` as a user runs
//! them: a real ledger on disk holding the golden events of every kind (as
//! the gateway's and governance's writers wrote them, `tests/data/events/`),
//! the real binary, `kill -9` of an index build, a deleted index, bad
//! syntax, and `--verify`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ledger::{Actor, KeyDir, Ledger, SigningKey};

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
    append(&ledger, 0, n);
    data
}

fn append(ledger: &Ledger, from: usize, n: usize) {
    let drafts = sealgate_tools::golden::drafts();
    let mut i = from;
    while i < from + n {
        let take = (from + n - i).min(1000);
        let batch = (i..i + take).map(|k| drafts[k % drafts.len()].clone()).collect();
        ledger.submit(batch).expect("submit").wait().expect("append");
        i += take;
    }
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

/// `sealgate search -o json` with `args`, parsed.
fn search(data: &Path, args: &[&str]) -> serde_json::Value {
    let out = sealgate(data)
        .args(["search", "-o", "json", "--limit", "100000"])
        .args(args)
        .output()
        .expect("run search");
    serde_json::from_str(&ok(out, &format!("search {args:?}"))).expect("json")
}

/// The hits without the index's own view of how far it went.
fn hits(answer: &serde_json::Value) -> serde_json::Value {
    answer["hits"].clone()
}

const QUERIES: &[&str] = &[
    "shadow",
    "alice",
    "\"still there\"",
    "cancelled OR drifted",
    "reason:deny",
];

fn search_cursor(data: &Path) -> Option<u64> {
    let meta = std::fs::read_to_string(data.join("derived/search/index/meta.json")).ok()?;
    let meta: serde_json::Value = serde_json::from_str(&meta).ok()?;
    let payload: serde_json::Value = serde_json::from_str(meta["payload"].as_str()?).ok()?;
    payload["seq"].as_u64()
}

/// `kill -9` of `sealgate index rebuild` once the search index has a
/// commit on disk, then `index update`: the same answers as an
/// uninterrupted build, and as the log alone.
#[test]
fn a_search_index_build_killed_mid_way_resumes_to_the_same_answers() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = data_dir(root.path(), 25_000);
    let alone: Vec<_> = QUERIES.iter().map(|q| hits(&search(&data, &[q]))).collect();
    let mut child = sealgate(&data)
        .args(["index", "rebuild"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    let killed_at = loop {
        if let Some(seq) = search_cursor(&data) {
            break seq;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no search commit after 300 s"
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the build ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert!(killed_at < 25_000, "killed after the whole build (cursor {killed_at})");
    let interrupted: Vec<_> = QUERIES.iter().map(|q| search(&data, &[q])).collect();
    for (i, a) in interrupted.iter().enumerate() {
        assert_eq!(a["head_seq"], 25_000);
        assert!(
            a["indexed_to"].as_u64().is_some_and(|s| s < 25_000),
            "{}",
            a["indexed_to"]
        );
        assert_eq!(hits(a), alone[i], "{}", QUERIES[i]);
    }
    ok(
        sealgate(&data).args(["index", "update"]).output().expect("update"),
        "update",
    );
    assert_eq!(search_cursor(&data), Some(25_000));
    let status = ok(
        sealgate(&data).args(["index", "status"]).output().expect("status"),
        "status",
    );
    assert!(
        status.contains("search cursor: seq 25000") && status.contains("search lag: 0"),
        "{status}"
    );
    let resumed: Vec<_> = QUERIES.iter().map(|q| search(&data, &[q])).collect();
    ok(
        sealgate(&data).args(["index", "rebuild"]).output().expect("rebuild"),
        "rebuild",
    );
    let rebuilt: Vec<_> = QUERIES.iter().map(|q| search(&data, &[q])).collect();
    assert_eq!(resumed, rebuilt);
    for (i, r) in rebuilt.iter().enumerate() {
        assert_eq!(r["indexed_to"], 25_000);
        assert_eq!(hits(r), alone[i], "{}", QUERIES[i]);
    }
    for q in QUERIES {
        let out = sealgate(&data)
            .args(["search", "--verify", q])
            .output()
            .expect("verify");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        ok(out, &format!("verify {q}"));
        assert!(err.contains("verified:"), "{err}");
    }
}

#[test]
fn search_is_current_to_the_head_survives_a_deleted_index_and_refuses_bad_syntax() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = data_dir(root.path(), 500);
    ok(
        sealgate(&data).args(["index", "rebuild"]).output().expect("rebuild"),
        "rebuild",
    );
    // Events after the index's cursor are found (from the log).
    {
        let ledger = Ledger::open(&data.join("ledger"), &KeyDir::new(Ledger::default_key_dir(&data))).expect("open");
        append(&ledger, 500, 300);
    }
    let a = search(&data, &["shadow"]);
    assert_eq!(a["head_seq"], 800);
    assert_eq!(a["indexed_to"], 500);
    let seqs: Vec<u64> = a["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|h| h["seq"].as_u64().expect("seq"))
        .collect();
    assert!(seqs.iter().any(|s| *s > 500), "{seqs:?}");
    assert!(seqs.iter().any(|s| *s <= 500), "{seqs:?}");
    // Filters and the table.
    let out = ok(
        sealgate(&data)
            .args([
                "search",
                "alice",
                "--principal",
                "alice",
                "--from",
                "100",
                "--to",
                "600",
            ])
            .output()
            .expect("table"),
        "table",
    );
    assert!(out.contains("«alice»") && out.contains("hits)"), "{out}");
    // Bad syntax: exit 2, the position named, nothing changed.
    let meta = std::fs::read(data.join("derived/search/index/meta.json")).expect("meta");
    let out = sealgate(&data).args(["search", "alice AND ("]).output().expect("bad");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad search syntax at position"), "{err}");
    assert_eq!(
        std::fs::read(data.join("derived/search/index/meta.json")).expect("meta"),
        meta
    );
    // A deleted index: answered from the log alone, then rebuilt by update.
    std::fs::remove_dir_all(data.join("derived/search")).expect("rm");
    let out = sealgate(&data)
        .args(["search", "-o", "json", "--limit", "100000", "shadow"])
        .output()
        .expect("alone");
    assert!(String::from_utf8_lossy(&out.stderr).contains("searching the log alone"));
    let alone: serde_json::Value = serde_json::from_str(&ok(out, "alone")).expect("json");
    assert_eq!(hits(&alone), hits(&a));
    ok(
        sealgate(&data).args(["index", "update"]).output().expect("update"),
        "update",
    );
    let again = search(&data, &["shadow"]);
    assert_eq!(again["indexed_to"], 800);
    assert_eq!(hits(&again), hits(&a));
}

/// `sealgate serve` follows the log for the search index too: started on a
/// ledger nobody indexed, it commits the search index up to the head
/// without anyone running `sealgate index`.
#[test]
fn serve_keeps_the_search_index() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = data_dir(root.path(), 3_000);
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
    // serve appends its own start-up events: wait for a cursor past the
    // 3,000 written before it.
    let started = Instant::now();
    while search_cursor(&data).is_none_or(|s| s < 3_000) && started.elapsed() < Duration::from_secs(120) {
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("serve exited: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let running = child.try_wait().expect("wait").is_none();
    child.kill().expect("kill serve");
    child.wait().expect("reap");
    assert!(running, "serve exited");
    let cursor = search_cursor(&data).expect("serve committed no search index");
    assert!(cursor >= 3_000, "search cursor {cursor}");
    let a = search(&data, &["shadow"]);
    assert_eq!(a["indexed_to"].as_u64(), Some(cursor));
}
