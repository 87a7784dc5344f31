//! `tools/verify_export.py`, written from `docs/FORMAT.md` alone with only a
//! BLAKE3 and an Ed25519 library, agrees with the ledger's own verifier: it
//! accepts what `sealgate` writes (rotations, escapes, unicode, big integers)
//! and, given the same tampered log, reports the same failure kind at the
//! same sequence number as `sealgate verify` (run on a store that holds
//! exactly the tampered export's records). If they disagree, either the
//! document or the code is wrong.
//!
//! Needs `SEALGATE_VERIFY_PYTHON` (set by `tools/test.sh` from `tools/setup.sh`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The Python with the verifier's dependencies (tools/setup.sh makes it);
/// the tests that need it are `#[ignore]`d, so only a run that asks for
/// them gets here.
fn python() -> PathBuf {
    match std::env::var_os("SEALGATE_VERIFY_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => panic!("SEALGATE_VERIFY_PYTHON is not set: run the tests with tools/test.sh (tools/setup.sh makes it)"),
    }
}

fn sealgate(data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sealgate");
    let mut pipe = child.stdin.take().expect("stdin");
    if let Some(s) = stdin {
        pipe.write_all(s.as_bytes()).expect("stdin");
    }
    drop(pipe);
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "sealgate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/verify_export.py")
}

/// The store a (possibly tampered) export stands for: a copy of `data`
/// whose ledger holds, in place of its events, each line's record (its
/// hash, signature and the canonical encoding of its envelope) under the
/// line's `seq`, which stands for the store's key (FORMAT.md §9, §10).
/// `meta`, the time index and the acknowledged mark stay as they were.
fn store_of(data: &Path, lines: &[String], copy: &Path) -> PathBuf {
    let status = Command::new("cp").arg("-a").arg(data).arg(copy).status().expect("cp");
    assert!(status.success(), "copy the data dir");
    let db = rocksdb::DB::open_cf(
        &rocksdb::Options::default(),
        copy.join("ledger"),
        ["events", "time", "meta"],
    )
    .expect("open the copy's store");
    let events = db.cf_handle("events").expect("events cf");
    let keys: Vec<Box<[u8]>> = db
        .iterator_cf(events, rocksdb::IteratorMode::Start)
        .map(|kv| kv.expect("read").0)
        .collect();
    for k in keys {
        db.delete_cf(events, k).expect("delete");
    }
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).expect("line");
        let seq = v["seq"].as_u64().expect("seq");
        let mut record = vec![ledger::RECORD_VERSION];
        record.extend(hex::decode(v["hash"].as_str().expect("hash")).expect("hex"));
        record.extend(hex::decode(v["signature"].as_str().expect("signature")).expect("hex"));
        record.extend(
            ledger::Value::from_json_str(&v["event"].to_string())
                .expect("envelope")
                .to_canonical(),
        );
        db.put_cf(events, seq.to_be_bytes(), record).expect("put");
    }
    copy.to_path_buf()
}

/// `sealgate verify -o json` (with `extra`) on a data dir: (exit code, report).
fn sealgate_verify(data: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .arg("--data-dir")
        .arg(data)
        .args(["verify", "-o", "json"])
        .args(extra)
        .output()
        .expect("run sealgate verify");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

/// The (kind, seq) of a report's failure, from either verifier.
fn verdict(report: &serde_json::Value) -> (Option<&str>, Option<u64>) {
    (report["failure"]["kind"].as_str(), report["failure"]["seq"].as_u64())
}

/// Runs the Python verifier on an export; returns (exit code, JSON report).
fn verify_export(py: &Path, export: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new(py)
        .arg(script())
        .arg(export)
        .arg("--json")
        .args(extra)
        .output()
        .expect("run python");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

const EVENTS: &str = r#"{"kind":"x.call","actor":{"principal":"alice","teams":["sre","db"],"agent":"claude","session":"s1"},"subject":{"server":"fs","tool":"write_file","env":["prod"]},"correlation":{"request_id":"req-\"7\"","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","call_id":"9f86d081884c7d659a2feaa0c55ad015"},"body":{"arguments":"{\"path\":\"/tmp/x\",\"ratio\":0.5}","big":18446744073709551615,"neg":-9223372036854775808}}
{"kind":"x.decision","actor":{"principal":"ünïcødé 😀"},"correlation":{"request_id":-3,"answers":1},"body":{"decision":"ALLOW","ctl":"\u0000\u001f\b\f\n\r\t\"\\/","nested":{"z":[1,[2,{"a":null}]],"A":true,"é":false,"":""}}}
{"kind":"x.call.done","subject":{"resource":"file:///srv/a%20b"},"body":{}}
"#;

#[test]
#[ignore = "needs the verifier's Python (tools/setup.sh); tools/test.sh runs it"]
fn the_independent_verifier_accepts_our_logs_and_finds_the_same_tampering() {
    let py = python();
    let self_test = Command::new(&py)
        .arg(script())
        .arg("--self-test")
        .output()
        .expect("self-test");
    assert!(
        self_test.status.success(),
        "self-test: {}{}",
        String::from_utf8_lossy(&self_test.stdout),
        String::from_utf8_lossy(&self_test.stderr)
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    sealgate(&data, &["init"], None);
    sealgate(&data, &["append"], Some(EVENTS));
    sealgate(&data, &["rotate-key", "--reason", "quarterly"], None);
    sealgate(&data, &["append"], Some(EVENTS));
    sealgate(&data, &["rotate-key"], None);
    sealgate(&data, &["append"], Some(EVENTS));
    let export = sealgate(&data, &["log", "-o", "json"], None).stdout;
    let path = dir.path().join("export.jsonl");
    std::fs::write(&path, &export).expect("write export");
    let lines: Vec<String> = String::from_utf8(export)
        .expect("utf8")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 12);

    let (code, report) = verify_export(&py, &path, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["events"], 12);
    // The store an export stands for is the store it came from, record for
    // record: what the tampered exports below stand for is what they say.
    {
        let copy = store_of(&data, &lines, &dir.path().join("as-exported"));
        type Records = Vec<(Box<[u8]>, Box<[u8]>)>;
        let stored = |dir: &Path| -> Records {
            let db = rocksdb::DB::open_cf_for_read_only(
                &rocksdb::Options::default(),
                dir.join("ledger"),
                ["events", "time", "meta"],
                false,
            )
            .expect("open read-only");
            let cf = db.cf_handle("events").expect("events cf");
            db.iterator_cf(cf, rocksdb::IteratorMode::Start)
                .map(|kv| kv.expect("read"))
                .collect()
        };
        assert!(
            stored(&copy) == stored(&data),
            "an export's records are not the store's"
        );
        let (code, ours) = sealgate_verify(&copy, &[]);
        assert_eq!(code, 0, "{ours}");
    }
    let head: serde_json::Value =
        serde_json::from_slice(&sealgate(&data, &["head", "-o", "json"], None).stdout).expect("head");
    assert_eq!(report["last"]["hash"], head["hash"]);
    let pin = head["pin"].as_str().expect("pin");
    assert_eq!(verify_export(&py, &path, &["--head", pin]).0, 0);

    // Tampered exports: each must fail at the same seq our verifier names.
    let edit = |seq: usize, f: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value = serde_json::from_str(&lines[seq]).expect("line");
        f(&mut v);
        let mut out = lines.clone();
        out[seq] = v.to_string();
        out
    };
    // Line 9's record (hash, signature, envelope) at position 3 and line
    // 3's at 9, each line keeping its `seq`: what swapping two events in a
    // store (whose keys stay put) looks like in an export.
    let swapped_records = {
        let mut l = lines.clone();
        let (mut a, mut b): (serde_json::Value, serde_json::Value) = (
            serde_json::from_str(&lines[3]).expect("line"),
            serde_json::from_str(&lines[9]).expect("line"),
        );
        std::mem::swap(&mut a["seq"], &mut b["seq"]);
        l[3] = b.to_string();
        l[9] = a.to_string();
        l
    };
    let cases: Vec<(&str, Vec<String>, u64, &str)> = vec![
        (
            "changed principal",
            edit(5, &|v| v["event"]["actor"]["principal"] = "mallory".into()),
            5,
            "hash_mismatch",
        ),
        (
            "changed signature",
            edit(2, &|v| {
                let mut sig = v["signature"].as_str().expect("sig").to_owned();
                let flipped = if sig.as_bytes()[10] == b'0' { "1" } else { "0" };
                sig.replace_range(10..11, flipped);
                v["signature"] = sig.into();
            }),
            2,
            "bad_signature",
        ),
        (
            "dropped line",
            {
                let mut l = lines.clone();
                l.remove(7);
                l
            },
            7,
            "gap",
        ),
        // In an export a line's `seq` moves with its event, so a swap shows as
        // a gap where a store (whose keys stay put) shows a sequence mismatch.
        // No store holds this export (its keys would put the lines back in
        // order), so only the Python verifier sees it.
        (
            "swapped lines",
            {
                let mut l = lines.clone();
                l.swap(3, 9);
                l
            },
            3,
            "gap|sequence_mismatch",
        ),
        ("swapped records", swapped_records, 3, "sequence_mismatch"),
        // A truncated export against a pinned head.
        ("truncated", lines[..10].to_vec(), 10, "truncated"),
    ];
    for (i, (what, tampered, seq, kind)) in cases.into_iter().enumerate() {
        let p = dir.path().join("tampered.jsonl");
        std::fs::write(&p, tampered.join("\n") + "\n").expect("write");
        let extra: &[&str] = if what == "truncated" { &["--head", pin] } else { &[] };
        let (code, report) = verify_export(&py, &p, extra);
        assert_eq!(code, 1, "{what}: {report}");
        assert_eq!(report["failure"]["seq"], seq, "{what}: {report}");
        let got = report["failure"]["kind"].as_str().unwrap_or("");
        assert!(kind.split('|').any(|k| k == got), "{what}: expected {kind}: {report}");
        if what == "swapped lines" {
            continue;
        }
        // Sealgate's own verifier, on the store this export stands for,
        // says the same: the same kind at the same sequence number.
        let copy = store_of(&data, &tampered, &dir.path().join(format!("case-{i}")));
        let (our_code, ours) = sealgate_verify(&copy, extra);
        assert_eq!(our_code, 1, "{what}: sealgate verify: {ours}");
        assert_eq!(
            verdict(&ours),
            verdict(&report),
            "{what}: sealgate verify and verify_export.py disagree:\nsealgate: {ours}\npython: {report}"
        );
    }
}
