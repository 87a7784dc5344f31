//! `tools/verify_export.py`, written from `docs/FORMAT.md` alone with only a
//! BLAKE3 and an Ed25519 library, agrees with the ledger's own verifier: it
//! accepts what `sealgate` writes (rotations, escapes, unicode, big integers)
//! and, given the same tampered log, reports the same failure kind at the
//! same sequence number as `sealgate verify` (run on a store that holds
//! exactly the tampered export's records). If they disagree, either the
//! document or the code is wrong. The cases include what FORMAT.md pins
//! down beyond the obvious: the key order of astral and private-use
//! characters (§2), raw U+2028/U+2029/U+0085 inside export lines (§11),
//! nesting at and past 64 levels (§3), genesis keys that are not
//! prime-order points (§6, §7), a key named by a later (bad) rotation
//! (§9 step 8), partial and empty exports (§11).
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
        ["events", "time", "meta", "tree"],
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
        // An envelope the canonical parser refuses (nested too deep) is
        // stored as the line has it: malformed either way.
        let text = v["event"].to_string();
        record.extend(ledger::Value::from_json_str(&text).map_or(text.into_bytes(), |e| e.to_canonical()));
        db.put_cf(events, seq.to_be_bytes(), record).expect("put");
    }
    copy.to_path_buf()
}

/// `sealgate verify -o json` (with `extra`) on a data dir: (exit code, report).
fn sealgate_verify(data: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sealgate"));
    command
        .arg("--data-dir")
        .arg(data)
        .args(["verify", "-o", "json"])
        .args(extra);
    json_report(command)
}

/// Runs `command`: its exit code and the JSON report on its stdout.
fn json_report(mut command: Command) -> (i32, serde_json::Value) {
    let out = command.output().unwrap_or_else(|e| panic!("run {command:?}: {e}"));
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
    let mut command = Command::new(py);
    command.arg(script()).arg(export).arg("--json").args(extra);
    json_report(command)
}

/// Drafts for `sealgate append`. The last one's `body.deep` is `0` inside
/// 62 arrays: at level 64 (§3), the deepest a value may be.
const EVENTS: &str = r#"{"kind":"x.call","actor":{"principal":"alice","teams":["sre","db"],"agent":"claude","session":"s1"},"subject":{"server":"fs","tool":"write_file","env":["prod"]},"correlation":{"request_id":"req-\"7\"","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","call_id":"9f86d081884c7d659a2feaa0c55ad015"},"body":{"arguments":"{\"path\":\"/tmp/x\",\"ratio\":0.5}","big":18446744073709551615,"neg":-9223372036854775808}}
{"kind":"x.decision","actor":{"principal":"ünïcødé 😀"},"correlation":{"request_id":-3,"answers":1},"body":{"decision":"ALLOW","ctl":"\u0000\u001f\b\f\n\r\t\"\\/","nested":{"z":[1,[2,{"a":null}]],"A":true,"é":false,"":""}}}
{"kind":"x.call.done","subject":{"resource":"file:///srv/a%20b"},"body":{"\ue000":"private use","\uffff":"last of the BMP","\ud83d\ude00":"astral","z":"raw in the export: \u2028 \u2029 \u0085","deep":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[0]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}
"#;

/// The identity's encoding (a small-order point), and the key of seed
/// `[7; 32]` plus a point of order 8 (a mixed-order point).
const IDENTITY: [u8; 32] = {
    let mut b = [0u8; 32];
    b[0] = 1;
    b
};
const MIXED: [u8; 32] = [
    0x1f, 0x4f, 0x58, 0x0e, 0x73, 0xac, 0x20, 0x8f, 0x06, 0x76, 0x01, 0x90, 0xe9, 0xed, 0xc6, 0xf5, 0x91, 0x67, 0x75,
    0xda, 0xbd, 0x9c, 0x1c, 0xdc, 0xa3, 0x93, 0x17, 0x5c, 0x2d, 0x6d, 0x10, 0x83,
];

/// The export line of `event` (an envelope as JSON) with its hash
/// recomputed and `signature` (hex): a record someone wrote anew.
fn resealed(seq: u64, event: &serde_json::Value, signature: impl FnOnce(&ledger::Hash) -> String) -> String {
    let canonical = ledger::Value::from_json_str(&event.to_string())
        .expect("envelope")
        .to_canonical();
    let prev: ledger::Hash = event["prev"].as_str().expect("prev").parse().expect("prev hex");
    let hash = ledger::event_hash(&prev, &canonical);
    serde_json::json!({"seq": seq, "hash": hash.to_hex(), "signature": signature(&hash), "event": event}).to_string()
}

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
    // §11: these are raw in the export, inside a string, not line ends; and
    // the astral key sorts after the private-use ones (§2).
    let text = String::from_utf8(export.clone()).expect("utf8");
    for raw in ['\u{2028}', '\u{2029}', '\u{85}'] {
        assert!(text.contains(raw), "the export holds {raw:?} raw");
    }
    assert!(
        text.contains("\"\u{e000}\":\"private use\",\"\u{ffff}\":\"last of the BMP\",\"\u{1f600}\":\"astral\""),
        "{text}"
    );
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
    let export_of = |args: &[&str]| -> Vec<String> {
        let out = sealgate(&data, &[&["log", "-o", "json"], args].concat(), None).stdout;
        String::from_utf8(out)
            .expect("utf8")
            .lines()
            .map(str::to_owned)
            .collect()
    };
    // The genesis line with `public` as its key (its id in the envelope),
    // its hash recomputed; the signature does not matter (step 7 comes first).
    let genesis_with_key = |public: [u8; 32]| -> Vec<String> {
        let mut v: serde_json::Value = serde_json::from_str(&lines[0]).expect("line");
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public).expect("a point");
        v["event"]["body"]["public_key"] = hex::encode(public).into();
        v["event"]["key"] = ledger::key_id(&key).to_string().into();
        let mut out = lines.clone();
        out[0] = resealed(0, &v["event"], |_| "00".repeat(64));
        out
    };
    // Line 2 re-signed by a key this log never introduced.
    let stranger = ledger::SigningKey::from_seed([9; 32]);
    let signed_by_stranger = {
        let mut v: serde_json::Value = serde_json::from_str(&lines[2]).expect("line");
        v["event"]["key"] = stranger.id().to_string().into();
        let mut out = lines.clone();
        out[2] = resealed(2, &v["event"], |h| hex::encode(stranger.sign_hash(h).to_bytes()));
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
        // §3: one level more than the 64 that `append` allows.
        (
            "nested 65 levels",
            edit(3, &|v| {
                let deep = v["event"]["body"]["deep"].take();
                v["event"]["body"]["deep"] = serde_json::Value::Array(vec![deep]);
            }),
            3,
            "malformed",
        ),
        // §11: the format of `hash` and `signature` (no store holds these).
        (
            "upper-case hash",
            edit(2, &|v| {
                v["hash"] = v["hash"].as_str().expect("hash").to_uppercase().into()
            }),
            2,
            "malformed",
        ),
        (
            "short signature",
            edit(2, &|v| {
                v["signature"] = v["signature"].as_str().expect("sig")[..126].into()
            }),
            2,
            "malformed",
        ),
        // §11: only whole exports verify.
        ("partial export (--from 3)", export_of(&["--from", "3"]), 0, "gap"),
        (
            "filtered export (--kind)",
            export_of(&["--kind", "ledger.genesis", "--kind", "key.rotated"]),
            1,
            "gap",
        ),
        ("empty export", Vec::new(), 0, "truncated"),
        // §6, §7: genesis keys that are not prime-order points.
        ("small-order genesis key", genesis_with_key(IDENTITY), 0, "bad_genesis"),
        ("mixed-order genesis key", genesis_with_key(MIXED), 0, "bad_genesis"),
        // §9 step 8: a key no rotation names, and one a later rotation
        // names (a bad one: no public key, no proof, not in the store's
        // rotation index).
        ("stranger's key", signed_by_stranger.clone(), 2, "unknown_key"),
        (
            "key named by a later bad rotation",
            {
                let mut l = signed_by_stranger.clone();
                let mut v: serde_json::Value = serde_json::from_str(&l[6]).expect("line");
                v["event"]["kind"] = "key.rotated".into();
                v["event"]["body"] = serde_json::json!({"new_key": stranger.id().to_string()});
                l[6] = v.to_string();
                l
            },
            2,
            "key_not_valid",
        ),
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
        if ["swapped lines", "upper-case hash", "short signature"].contains(&what) {
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

/// `tools/verify_proof.py`, written from FORMAT.md §13–14 alone, accepts the
/// checkpoints and proofs `sealgate` writes (events with escapes and deep
/// nesting, a rotation between them) and refuses each tampered one for the
/// same reason as `sealgate verify-proof`.
#[test]
#[ignore = "needs the verifier's Python (tools/setup.sh); tools/test.sh runs it"]
fn the_independent_verifier_checks_our_proofs_and_refuses_the_same_ones() {
    let py = python();
    let proof_script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/verify_proof.py");
    // It reproduces FORMAT.md §12's tree and checkpoint first.
    let self_test = Command::new(&py)
        .arg(&proof_script)
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
    let file = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        path
    };
    let out = |args: &[&str]| sealgate(&data, args, None).stdout;
    sealgate(&data, &["init"], None);
    sealgate(&data, &["append"], Some(EVENTS));
    let old_keys = file("old-keys.txt", &out(&["key-history"]));
    let early = file("early.txt", &out(&["checkpoint"]));
    sealgate(&data, &["rotate-key"], None);
    sealgate(&data, &["append"], Some(EVENTS));
    let keys = file("keys.txt", &out(&["key-history"]));
    let now = file("now.txt", &out(&["checkpoint"]));
    let size = std::fs::read_to_string(&now)
        .expect("read")
        .lines()
        .nth(1)
        .expect("size")
        .to_owned();

    let mut cases: Vec<(String, PathBuf, Option<PathBuf>, PathBuf)> = Vec::new();
    for seq in ["0", "1", "3", "5", "7"] {
        let proof = file(&format!("{seq}.tlog-proof"), &out(&["prove", seq]));
        cases.push((format!("inclusion of {seq}"), proof, Some(now.clone()), keys.clone()));
    }
    let consistency = file("c.proof", &out(&["prove", "--consistency", "4", &size]));
    cases.push((
        "consistency".into(),
        consistency.clone(),
        Some(early.clone()),
        keys.clone(),
    ));
    let text = std::fs::read_to_string(dir.path().join("3.tlog-proof")).expect("read");
    let line = |n: usize| text.lines().nth(n).expect("line").to_owned();
    // One base64 character of a line changed.
    let flip = |s: &str, at: usize| {
        let mut b = s.as_bytes().to_vec();
        b[at] = if b[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).expect("ascii")
    };
    let tampered = [
        ("a proof hash", text.replacen(&line(3), &flip(&line(3), 3), 1)),
        // Past `extra ` and the 104 bytes of leaf data (140 characters).
        ("the event", text.replacen(&line(1), &flip(&line(1), 200), 1)),
        ("the index", text.replacen("\nindex 3\n", "\nindex 2\n", 1)),
        (
            "the checkpoint's size",
            text.replacen(&format!("\n{size}\n"), "\n4\n", 1),
        ),
    ];
    for (what, changed) in tampered {
        let path = file(&format!("{what}.tlog-proof"), changed.as_bytes());
        cases.push((format!("changed {what}"), path, Some(now.clone()), keys.clone()));
    }
    cases.push((
        "the keys from before the rotation".into(),
        dir.path().join("3.tlog-proof"),
        Some(now.clone()),
        old_keys,
    ));
    cases.push((
        "another checkpoint kept".into(),
        dir.path().join("3.tlog-proof"),
        Some(early.clone()),
        keys.clone(),
    ));
    cases.push((
        "consistency without the kept checkpoint".into(),
        consistency,
        None,
        keys,
    ));

    let mut refused = 0;
    for (what, proof, kept, keys) in &cases {
        let mut ours = Command::new(env!("CARGO_BIN_EXE_sealgate"));
        ours.arg("verify-proof")
            .arg(proof)
            .arg("--key")
            .arg(keys)
            .args(["-o", "json"]);
        let mut theirs = Command::new(&py);
        theirs
            .arg(&proof_script)
            .arg(proof)
            .arg("--keys")
            .arg(keys)
            .arg("--json");
        if let Some(kept) = kept {
            ours.arg("--checkpoint").arg(kept);
            theirs.arg("--checkpoint").arg(kept);
        }
        let (our_code, our) = json_report(ours);
        let (their_code, their) = json_report(theirs);
        assert_eq!(our_code, their_code, "{what}: sealgate {our}, python {their}");
        assert_eq!(our["reason"], their["reason"], "{what}: sealgate {our}, python {their}");
        if our_code != 0 {
            refused += 1;
        }
    }
    assert_eq!(refused, 7, "the tampered cases are refused, the others accepted");
}

/// base64 (RFC 4648 §4, padded), for the witness keys and cosignatures
/// made below (FORMAT.md §15).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A witness of FORMAT.md §15 made here, from the document: its name, key
/// and verifier key.
struct TestWitness {
    name: String,
    key: ed25519_dalek::SigningKey,
}

impl TestWitness {
    fn new(name: &str, seed: u8) -> TestWitness {
        TestWitness {
            name: name.to_owned(),
            key: ed25519_dalek::SigningKey::from_bytes(&[seed; 32]),
        }
    }

    fn key_id(&self) -> [u8; 4] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(self.name.as_bytes());
        h.update([0x0a, 0x04]);
        h.update(self.key.verifying_key().as_bytes());
        let d = h.finalize();
        [d[0], d[1], d[2], d[3]]
    }

    fn vkey(&self) -> String {
        let mut material = vec![0x04];
        material.extend(self.key.verifying_key().as_bytes());
        format!("{}+{}+{}", self.name, hex::encode(self.key_id()), base64(&material))
    }

    /// `note` (a checkpoint signed by the log) with this witness's
    /// cosignature line added.
    fn cosign(&self, note: &str, time: u64) -> String {
        use ed25519_dalek::Signer;
        let text = &note[..note.find("\n\n").expect("a note") + 1];
        let signed = format!("cosignature/v1\ntime {time}\n{text}");
        let mut raw = self.key_id().to_vec();
        raw.extend(time.to_be_bytes());
        raw.extend(self.key.sign(signed.as_bytes()).to_bytes());
        format!("{note}\u{2014} {} {}\n", self.name, base64(&raw))
    }
}

/// The ledger `independent_verifier` tests make evidence of: EVENTS three
/// times, a key rotation after the first and the second (seq 4 and 8), and
/// the checkpoint of its 12 events stored as issued with `witness`'s
/// cosignature (`<data>/checkpoints/latest.note`, FORMAT.md §15), so that
/// proofs and bundles of that tree carry it. Returns the key history file.
fn witnessed_ledger(data: &Path, dir: &Path, witness: &TestWitness) -> PathBuf {
    sealgate(data, &["init"], None);
    sealgate(data, &["append"], Some(EVENTS));
    sealgate(data, &["rotate-key", "--reason", "quarterly"], None);
    sealgate(data, &["append"], Some(EVENTS));
    sealgate(data, &["rotate-key"], None);
    sealgate(data, &["append"], Some(EVENTS));
    let note = String::from_utf8(sealgate(data, &["checkpoint"], None).stdout).expect("utf-8");
    assert!(note.contains("\n12\n"), "{note}");
    std::fs::create_dir_all(data.join("checkpoints")).expect("mkdir");
    std::fs::write(
        data.join("checkpoints/latest.note"),
        witness.cosign(&note, 1_765_000_000),
    )
    .expect("write");
    let keys = dir.join("keys.txt");
    std::fs::write(&keys, sealgate(data, &["key-history"], None).stdout).expect("write keys");
    keys
}

/// `verify_proof.py --witness` (FORMAT.md §15's policy) against `sealgate
/// verify-proof --witness`, on a proof carrying a cosignature made here
/// from the document: the same answers with one witness, with one that
/// did not cosign, with M of N, and with the cosignature tampered.
#[test]
#[ignore = "needs the verifier's Python (tools/setup.sh); tools/test.sh runs it"]
fn the_independent_verifier_counts_the_same_cosignatures() {
    let py = python();
    let proof_script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/verify_proof.py");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let w1 = TestWitness::new("w1.example/witness", 0x0b);
    let w2 = TestWitness::new("w2.example", 0x0c);
    let keys = witnessed_ledger(&data, dir.path(), &w1);
    let proof_text = String::from_utf8(sealgate(&data, &["prove", "5", "--issued"], None).stdout).expect("utf-8");
    assert!(proof_text.contains("\u{2014} w1.example/witness "), "{proof_text}");
    let proof = dir.path().join("proof.txt");
    std::fs::write(&proof, &proof_text).expect("write");
    // One base64 character of the cosignature's signature changed.
    let tampered = {
        let at =
            proof_text.find("\u{2014} w1.example/witness ").expect("line") + "\u{2014} w1.example/witness ".len() + 40;
        let mut b = proof_text.clone().into_bytes();
        b[at] = if b[at] == b'A' { b'B' } else { b'A' };
        let path = dir.path().join("tampered.txt");
        std::fs::write(&path, b).expect("write");
        path
    };
    let w1_file = dir.path().join("w1.vkey");
    std::fs::write(&w1_file, w1.vkey() + "\n").expect("write");
    let w1_file = w1_file.to_str().expect("utf-8 path").to_owned();
    let (v1, v2) = (w1.vkey(), w2.vkey());
    // (what, proof, witnesses, M, exit code, reason)
    type Case<'a> = (
        &'a str,
        &'a PathBuf,
        Vec<&'a str>,
        Option<&'a str>,
        i32,
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        ("one witness, inline", &proof, vec![&v1], None, 0, None),
        ("one witness, in a file", &proof, vec![&w1_file], None, 0, None),
        (
            "two given, one cosigned",
            &proof,
            vec![&v1, &v2],
            None,
            1,
            Some("too_few_witnesses"),
        ),
        ("two given, one needed", &proof, vec![&v1, &v2], Some("1"), 0, None),
        (
            "only the one that did not cosign",
            &proof,
            vec![&v2],
            None,
            1,
            Some("too_few_witnesses"),
        ),
        (
            "a changed cosignature",
            &tampered,
            vec![&v1],
            None,
            1,
            Some("bad_signature"),
        ),
    ];
    for (what, proof, witnesses, min, code, reason) in cases {
        let mut ours = Command::new(env!("CARGO_BIN_EXE_sealgate"));
        ours.arg("verify-proof")
            .arg(proof)
            .arg("--key")
            .arg(&keys)
            .args(["-o", "json"]);
        let mut theirs = Command::new(&py);
        theirs
            .arg(&proof_script)
            .arg(proof)
            .arg("--keys")
            .arg(&keys)
            .arg("--json");
        for w in &witnesses {
            ours.args(["--witness", w]);
            theirs.args(["--witness", w]);
        }
        if let Some(m) = min {
            ours.args(["--min-witnesses", m]);
            theirs.args(["--min-witnesses", m]);
        }
        let (our_code, our) = json_report(ours);
        let (their_code, their) = json_report(theirs);
        assert_eq!(our_code, code, "{what}: sealgate {our}");
        assert_eq!(their_code, code, "{what}: python {their}");
        assert_eq!(our["reason"].as_str(), reason, "{what}: sealgate {our}");
        assert_eq!(their["reason"].as_str(), reason, "{what}: python {their}");
    }
}

/// One character of `line` at byte `at` changed to another of the same
/// alphabet (hex or base64), so the line still parses.
fn flip(line: &str, at: usize) -> String {
    let mut b = line.as_bytes().to_vec();
    b[at] = match b[at] {
        b'0' => b'1',
        c if c.is_ascii_hexdigit() => b'0',
        b'A' => b'B',
        _ => b'A',
    };
    String::from_utf8(b).expect("ascii")
}

/// `line` with the base64 character before its last `=` changed in a
/// padding bit: it decodes to the same bytes.
fn padding_bit(line: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let at = line.trim_end_matches('=').len() - 1;
    let mut b = line.as_bytes().to_vec();
    let i = ALPHABET.iter().position(|c| *c == b[at]).expect("base64");
    b[at] = ALPHABET[i ^ 1];
    String::from_utf8(b).expect("ascii")
}

/// `tools/verify_evidence.py`, written from FORMAT.md §16 alone, accepts the
/// evidence bundles `sealgate evidence` writes (each kind of selection, a
/// ledger with two rotations, a witness's cosignature) and refuses each
/// tampered one for the same reason as `sealgate verify-evidence`.
#[test]
#[ignore = "needs the verifier's Python (tools/setup.sh); tools/test.sh runs it"]
fn the_independent_verifier_checks_our_evidence_and_refuses_the_same_bundles() {
    let py = python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/verify_evidence.py");
    let self_test = Command::new(&py)
        .arg(&script)
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
    let w1 = TestWitness::new("w1.example/witness", 0x0b);
    let w2 = TestWitness::new("w2.example", 0x0c);
    let keys = witnessed_ledger(&data, dir.path(), &w1);
    // The log's times: a range from event 5's time to event 6's.
    let ts: Vec<String> = String::from_utf8(sealgate(&data, &["log", "-o", "json"], None).stdout)
        .expect("utf-8")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("line");
            v["event"]["ts"].as_str().expect("ts").to_owned()
        })
        .collect();
    let make = |name: &str, args: &[&str]| -> PathBuf {
        let path = dir.path().join(name);
        let out = path.to_str().expect("utf-8 path");
        sealgate(&data, &[&["evidence"], args, &["-o", out]].concat(), None);
        path
    };
    let call_id = "9f86d081884c7d659a2feaa0c55ad015";
    let by_call = make("call.evidence", &["--call-id", call_id]);
    let by_range = make("range.evidence", &["--from", &ts[5], "--to", &ts[6]]);
    let bundles = [
        by_call.clone(),
        make("session.evidence", &["--session", "s1"]),
        make("request.evidence", &["--request-id", "req-\"7\""]),
        make(
            "request-session.evidence",
            &["--request-id", "req-\"7\"", "--session", "s1"],
        ),
        by_range.clone(),
        make(
            "server.evidence",
            &["--from", &ts[0], "--to", &ts[11], "--server", "fs"],
        ),
        make(
            "principal.evidence",
            &["--from", &ts[2], "--to", &ts[10], "--principal", "alice"],
        ),
    ];
    let text = |p: &Path| std::fs::read_to_string(p).expect("read bundle");
    assert!(
        text(&by_range).lines().any(|l| l.starts_with("range ")),
        "{}",
        text(&by_range)
    );
    assert!(
        text(&by_call).contains("\n\u{2014} w1.example/witness "),
        "{}",
        text(&by_call)
    );

    // Both verifiers, with `witnesses`: (exit code, reason) of each.
    let verify = |bundle: &Path, witnesses: &[&str]| -> ((i32, serde_json::Value), (i32, serde_json::Value)) {
        let mut ours = Command::new(env!("CARGO_BIN_EXE_sealgate"));
        ours.arg("verify-evidence")
            .arg(bundle)
            .arg("--key")
            .arg(&keys)
            .args(["-o", "json"]);
        let mut theirs = Command::new(&py);
        theirs.arg(&script).arg(bundle).arg("--keys").arg(&keys).arg("--json");
        for w in witnesses {
            ours.args(["--witness", w]);
            theirs.args(["--witness", w]);
        }
        (json_report(ours), json_report(theirs))
    };
    let (v1, v2) = (w1.vkey(), w2.vkey());
    for bundle in &bundles {
        for witnesses in [vec![], vec![v1.as_str()]] {
            let ((our_code, our), (their_code, their)) = verify(bundle, &witnesses);
            assert_eq!(
                (our_code, their_code),
                (0, 0),
                "{bundle:?} {witnesses:?}: sealgate {our}, python {their}\n{}",
                text(bundle)
            );
        }
        let ((our_code, our), (their_code, their)) = verify(bundle, &[&v1, &v2]);
        assert_eq!(
            (our_code, their_code),
            (1, 1),
            "{bundle:?}: sealgate {our}, python {their}"
        );
        assert_eq!(our["reason"], "too_few_witnesses", "{our}");
        assert_eq!(their["reason"], "too_few_witnesses", "{their}");
    }

    // Tampered bundles, each checked with the witness: one byte changed in
    // each part, events removed and swapped, another ledger's bundle.
    let lines = |p: &Path| -> Vec<String> { text(p).lines().map(str::to_owned).collect() };
    let call = lines(&by_call);
    let range = lines(&by_range);
    let find = |l: &[String], prefix: &str| -> usize {
        l.iter()
            .position(|x| x.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?} in\n{}", l.join("\n")))
    };
    let event = |l: &[String], seq: u64| -> usize {
        l.iter()
            .position(|x| x.starts_with("event ") && x.contains(&format!(",\"seq\":{seq},\"subject\":")))
            .unwrap_or_else(|| panic!("no event {seq} in\n{}", l.join("\n")))
    };
    let edit = |l: &[String], at: usize, f: &dyn Fn(&str) -> String| -> Vec<String> {
        let mut out = l.to_vec();
        out[at] = f(&l[at]);
        out
    };
    // Event `seq`'s line and the proof line after it.
    let without = |l: &[String], seq: u64, proof: bool| -> Vec<String> {
        let at = event(l, seq);
        let mut out = l.to_vec();
        out.drain(at..at + if proof { 2 } else { 1 });
        out
    };
    let swapped = {
        let (a, b) = (event(&call, 5), event(&call, 9));
        let mut out = call.clone();
        out.swap(a, b);
        out.swap(a + 1, b + 1);
        out
    };
    let other_ledger = {
        let other = dir.path().join("other");
        sealgate(&other, &["init"], None);
        sealgate(&other, &["append"], Some(EVENTS));
        let path = dir.path().join("other.evidence");
        sealgate(
            &other,
            &[
                "evidence",
                "--call-id",
                call_id,
                "-o",
                path.to_str().expect("utf-8 path"),
            ],
            None,
        );
        lines(&path)
    };
    let checkpoint = find(&call, "checkpoint ");
    let range_line = find(&range, "range ");
    let range_hashes = range[range_line].match_indices(' ').nth(2).map(|(i, _)| i + 1);
    let range_hashes = range_hashes.unwrap_or_else(|| panic!("the range proof is empty: {}", range[range_line]));
    let cosigned = find(&call, "\u{2014} w1.example/witness ");
    let seal_sig = call.len() - 1;
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "an event's body",
            edit(&call, event(&call, 5), &|l| l.replacen("\"alice\"", "\"alicf\"", 1)),
            "leaf_mismatch",
        ),
        (
            "an event's hash",
            edit(&call, event(&call, 5), &|l| flip(l, 16)),
            "leaf_mismatch",
        ),
        (
            "an event's signature",
            edit(&call, event(&call, 5), &|l| flip(l, 6 + 65 + 10)),
            "bad_event_signature",
        ),
        (
            "a proof hash",
            edit(&call, event(&call, 5) + 1, &|l| flip(l, 8)),
            "bad_proof",
        ),
        (
            "the range line",
            edit(&range, range_line, &|l| flip(l, range_hashes + 2)),
            "bad_proof",
        ),
        (
            "the checkpoint's root",
            edit(&call, checkpoint + 3, &|l| flip(l, 5)),
            "bad_signature",
        ),
        (
            "a cosignature",
            edit(&call, cosigned, &|l| flip(l, "\u{2014} w1.example/witness ".len() + 40)),
            "bad_signature",
        ),
        (
            "the selection",
            edit(&call, find(&call, "selection "), &|l| {
                l.replacen(call_id, &flip(call_id, 0), 1)
            }),
            "selection_mismatch",
        ),
        // The window's start moved back to the genesis's time: the range's
        // first event is no longer before it.
        (
            "the range's window",
            edit(&range, find(&range, "selection "), &|l| l.replacen(&ts[5], &ts[0], 1)),
            "incomplete_range",
        ),
        (
            "a comment line",
            edit(&call, find(&call, "#"), &|l| flip(l, 2)),
            "bad_seal",
        ),
        (
            "the seal",
            edit(&call, seal_sig, &|l| flip(l, l.len() - 10)),
            "bad_seal",
        ),
        // The last base64 character of the seal's signature with a padding
        // bit set: the same bytes, a non-canonical encoding (RFC 4648 §3.5).
        (
            "the seal's padding bits",
            edit(&call, seal_sig, &padding_bit),
            "bad_seal",
        ),
        ("an event removed", without(&call, 5, true), "bad_seal"),
        ("an event removed from a range", without(&range, 6, false), "malformed"),
        ("two events swapped", swapped, "malformed"),
        // The rotation at 8 is then signed by a key the bundle never
        // introduced; without the last one, a trusted key is missing.
        ("a key event removed", without(&call, 4, true), "bad_rotation"),
        ("the last key event removed", without(&call, 8, true), "unknown_key"),
        ("a bundle of another ledger", other_ledger, "origin_mismatch"),
    ];
    for (what, tampered, reason) in cases {
        let path = dir.path().join("tampered.evidence");
        std::fs::write(&path, tampered.join("\n") + "\n").expect("write");
        let ((our_code, our), (their_code, their)) = verify(&path, &[&v1]);
        assert_eq!(their_code, 1, "{what}: python {their}");
        assert_eq!(their["reason"], reason, "{what}: python {their}");
        assert_eq!(our_code, 1, "{what}: sealgate {our}");
        assert_eq!(
            our["reason"], their["reason"],
            "{what}: sealgate verify-evidence and verify_evidence.py disagree:\nsealgate: {our}\npython: {their}"
        );
    }

    // A byte that is not UTF-8 (the em dash of the seal's signature line cut
    // to its first byte): refused as malformed by both, not an error.
    {
        let mut bytes = (call.join("\n") + "\n").into_bytes();
        let dash = bytes
            .windows(3)
            .rposition(|w| w == "\u{2014}".as_bytes())
            .expect("a signature line");
        bytes[dash + 1] = b'x';
        let path = dir.path().join("not-utf8.evidence");
        std::fs::write(&path, &bytes).expect("write");
        let ((our_code, our), (their_code, their)) = verify(&path, &[&v1]);
        assert_eq!(
            (their_code, &their["reason"]),
            (1, &serde_json::json!("malformed")),
            "python {their}"
        );
        assert_eq!(
            (our_code, &our["reason"]),
            (1, &serde_json::json!("malformed")),
            "sealgate {our}"
        );
    }

    // Every line of a bundle with and without a range, in turn: one ASCII
    // letter or digit in its middle changed (to another of hex or base64's
    // alphabet, so most lines still parse), or the line removed. Both
    // verifiers refuse each, for the same reason.
    let mut sweep = 0;
    for (name, bundle) in [("call", &call), ("range", &range)] {
        for at in 0..bundle.len() {
            let line = &bundle[at];
            let middle = (line.len() / 2..line.len()).find(|&i| line.as_bytes()[i].is_ascii_alphanumeric());
            let mut variants = vec![("removed", {
                let mut out = bundle.clone();
                out.remove(at);
                out
            })];
            if let Some(i) = middle {
                variants.push(("changed", edit(bundle, at, &|l| flip(l, i))));
            }
            for (how, tampered) in variants {
                let path = dir.path().join("swept.evidence");
                std::fs::write(&path, tampered.join("\n") + "\n").expect("write");
                let ((our_code, our), (their_code, their)) = verify(&path, &[&v1]);
                let what = format!("{name} bundle, line {} {how}", at + 1);
                assert_eq!((our_code, their_code), (1, 1), "{what}: sealgate {our}, python {their}");
                assert_eq!(
                    our["reason"], their["reason"],
                    "{what}: sealgate verify-evidence and verify_evidence.py disagree:\nsealgate: {our}\npython: {their}"
                );
                sweep += 1;
            }
        }
    }
    assert!(sweep > 60, "{sweep} variants");

    // After one more rotation, a bundle made before it verifies with the
    // key history of today (its tree's keys are the history's up to its
    // size), and not with today's key alone; both verifiers agree.
    sealgate(&data, &["rotate-key"], None);
    let today = dir.path().join("keys-today.txt");
    std::fs::write(&today, sealgate(&data, &["key-history"], None).stdout).expect("write");
    let newest = dir.path().join("newest.vkey");
    let history = std::fs::read_to_string(&today).expect("read");
    let last = history
        .lines()
        .last()
        .and_then(|l| l.split_once(' '))
        .expect("FROM VKEY")
        .1;
    std::fs::write(&newest, last).expect("write");
    for (keys, want) in [(&today, None), (&newest, Some("unknown_key"))] {
        let mut ours = Command::new(env!("CARGO_BIN_EXE_sealgate"));
        ours.arg("verify-evidence")
            .arg(&by_call)
            .arg("--key")
            .arg(keys)
            .args(["-o", "json"]);
        let mut theirs = Command::new(&py);
        theirs.arg(&script).arg(&by_call).arg("--keys").arg(keys).arg("--json");
        let ((our_code, our), (their_code, their)) = (json_report(ours), json_report(theirs));
        match want {
            None => assert_eq!((our_code, their_code), (0, 0), "sealgate {our}, python {their}"),
            Some(reason) => {
                assert_eq!((our_code, their_code), (1, 1), "sealgate {our}, python {their}");
                assert_eq!(
                    (our["reason"].as_str(), their["reason"].as_str()),
                    (Some(reason), Some(reason))
                );
            }
        }
    }
}
