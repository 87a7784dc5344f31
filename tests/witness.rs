//! Checkpoints and witnesses with real processes (`docs/FORMAT.md`
//! §14–15): `sealgate serve` issuing checkpoints that a real `sealgate
//! witness serve` cosigns; the attacks (a tail cut and regrown with the
//! real key, a fork shown to two witnesses, an unknown witness key) on
//! real ledgers and real witness processes; and `kill -9` of a gateway
//! while it issues checkpoints. None needs the MCP peers: the gateway's
//! one upstream is never called.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Site, q};

fn sealgate() -> Command {
    Command::new(support::sealgate_bin())
}

/// `sealgate --data-dir DIR ARGS` with `stdin`.
fn run(data: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = sealgate()
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sealgate");
    {
        use std::io::Write;
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("wait sealgate")
}

fn ok(data: &Path, args: &[&str], stdin: &str) -> String {
    let out = run(data, args, stdin);
    assert!(
        out.status.success(),
        "sealgate {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A new ledger with `n` operator events after its genesis.
fn ledger(data: &Path, n: usize) {
    ok(data, &["init"], "");
    append(data, n, "a");
}

fn append(data: &Path, n: usize, tag: &str) {
    let lines: String = (0..n)
        .map(|i| format!("{{\"kind\":\"x.note\",\"body\":{{\"branch\":\"{tag}\",\"n\":{i}}}}}\n"))
        .collect();
    ok(data, &["append"], &lines);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).expect("copy");
        }
    }
}

/// A running `sealgate witness serve`; killed on drop.
struct Witness {
    child: Child,
    url: String,
    vkey: String,
    state: PathBuf,
}

impl Witness {
    fn start(state: &Path, name: &str, logs: &[&Path]) -> Witness {
        Witness::start_with(state, name, logs, &[])
    }

    fn start_with(state: &Path, name: &str, logs: &[&Path], extra: &[&str]) -> Witness {
        let mut cmd = sealgate();
        cmd.args(["witness", "serve", "--listen", "127.0.0.1:0", "--name", name, "--state"])
            .arg(state);
        for l in logs {
            cmd.arg("--log").arg(l);
        }
        cmd.args(extra);
        std::fs::create_dir_all(state).expect("state dir");
        let mut child = cmd
            .env("SEALGATE_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(state.join("witness.log")).expect("log file"))
            .spawn()
            .expect("start sealgate witness serve");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let second = lines.next().and_then(Result::ok).unwrap_or_default();
        let (Some(url), Some(vkey)) = (
            first.strip_prefix("listening on "),
            second.strip_prefix("witness vkey "),
        ) else {
            let _ = child.kill();
            panic!(
                "the witness did not start: {first:?} {second:?}\n{}",
                std::fs::read_to_string(state.join("witness.log")).unwrap_or_default()
            );
        };
        std::thread::spawn(move || for _ in lines {});
        Witness {
            url: url.to_owned(),
            vkey: vkey.to_owned(),
            child,
            state: state.to_owned(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.state.join("witness.log")).unwrap_or_default()
    }

    /// `sealgate witness push` of `data`'s whole log to this witness.
    fn push(&self, data: &Path) -> Output {
        run(data, &["witness", "push", "--url", &self.url, "--vkey", &self.vkey], "")
    }

    fn cosign(&self, data: &Path) -> String {
        let out = self.push(data);
        assert!(
            out.status.success(),
            "push: {}\nwitness log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// The push must be refused as inconsistent (422), and logged as the
    /// alarm by the witness.
    fn refuses(&self, data: &Path) {
        let out = self.push(data);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "the witness must refuse: {err}");
        assert!(err.contains("Refused") && err.contains("422"), "{err}");
        assert!(
            self.log().contains("ALARM"),
            "no alarm in the witness's log:\n{}",
            self.log()
        );
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn key_history(data: &Path, dir: &Path) -> PathBuf {
    let path = dir.join("keys.txt");
    std::fs::write(&path, ok(data, &["key-history"], "")).expect("write key history");
    path
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

/// `verify-proof -o json`: (exit code, answer).
fn verify_proof(
    proof: &Path,
    keys: &Path,
    checkpoint: Option<&Path>,
    witnesses: &[&str],
    min: Option<usize>,
) -> (i32, Value) {
    let mut cmd = sealgate();
    cmd.args(["verify-proof", "-o", "json"])
        .arg(proof)
        .arg("--key")
        .arg(keys);
    if let Some(c) = checkpoint {
        cmd.arg("--checkpoint").arg(c);
    }
    for w in witnesses {
        cmd.args(["--witness", w]);
    }
    if let Some(m) = min {
        cmd.args(["--min-witnesses", &m.to_string()]);
    }
    let out = cmd.output().expect("run verify-proof");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

/// The log's tail is cut (the ledger put back as it was at an earlier
/// size) and regrown past the size a real witness cosigned, with the real
/// key: the witness refuses it and logs the alarm, and a consistency proof
/// against the cosigned checkpoint fails.
#[test]
fn a_tail_cut_and_regrown_with_the_real_key_is_refused_by_a_real_witness() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    ledger(&data, 5);
    let before_tail = dir.path().join("before-tail");
    copy_dir(&data, &before_tail);
    append(&data, 5, "tail");
    let keys = key_history(&data, dir.path());
    let w = Witness::start(&dir.path().join("w1"), "w1.example", &[&keys]);
    let cosigned = w.cosign(&data);
    assert!(cosigned.contains("\n\u{2014} w1.example "), "{cosigned}");
    let held = write(dir.path(), "held.note", &cosigned);
    // The tail cut: the ledger as it was before it; regrown longer.
    std::fs::remove_dir_all(&data).expect("cut");
    copy_dir(&before_tail, &data);
    append(&data, 8, "regrown");
    ok(&data, &["verify"], "");
    // The witness remembers across a restart (its state is on disk).
    let state = w.state.clone();
    drop(w);
    let w = Witness::start(&state, "w1.example", &[&keys]);
    // A second witness on the same state is refused: each would check
    // against its own copy and could cosign a branch of a fork.
    let mut second = sealgate()
        .args([
            "witness",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--name",
            "w1.example",
            "--state",
        ])
        .arg(&state)
        .arg("--log")
        .arg(&keys)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run a second witness");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = second.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!("a second witness started on the same state");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().expect("stderr"), &mut err).expect("stderr");
    assert!(!status.success(), "{err}");
    assert!(err.contains("another witness serves the state directory"), "{err}");
    w.refuses(&data);
    // The witness kept the checkpoint it cosigned, and the refused request.
    let origin_hash_dir = w.state.join("refused");
    assert_eq!(std::fs::read_dir(origin_hash_dir).expect("refused dir").count(), 1);
    let proof = write(
        dir.path(),
        "consistency.txt",
        &ok(&data, &["prove", "--consistency", "11", "14"], ""),
    );
    let (code, v) = verify_proof(&proof, &keys, Some(&held), &[], None);
    assert_eq!((code, v["reason"].as_str()), (1, Some("bad_proof")), "{v}");
}

/// One log forked in two (both branches signed by the real key), each
/// branch shown to one of two real witnesses, then to the other: each
/// refuses the branch not consistent with what it cosigned, so
/// `verify-proof --min-witnesses 2` refuses either branch's proof with
/// `too_few_witnesses`; a cosignature under a key not given does not count.
#[test]
fn a_fork_shown_to_two_real_witnesses_fails_a_two_of_two_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a");
    ledger(&a, 4);
    let b = dir.path().join("b");
    copy_dir(&a, &b);
    append(&a, 3, "a");
    append(&b, 3, "b");
    let keys = key_history(&a, dir.path());
    assert_eq!(
        ok(&b, &["key-history"], ""),
        std::fs::read_to_string(&keys).expect("keys")
    );
    let w1 = Witness::start(&dir.path().join("w1"), "w1.example", &[&keys]);
    let w2 = Witness::start(&dir.path().join("w2"), "w2.example", &[&keys]);
    let note_a = write(dir.path(), "a.note", &w1.cosign(&a));
    let note_b = write(dir.path(), "b.note", &w2.cosign(&b));
    w1.refuses(&b);
    w2.refuses(&a);
    let both = [w1.vkey.as_str(), w2.vkey.as_str()];
    for (data, note, who) in [(&a, &note_a, "w1.example"), (&b, &note_b, "w2.example")] {
        let proof = write(dir.path(), "inclusion.txt", &ok(data, &["prove", "5"], ""));
        let (code, v) = verify_proof(&proof, &keys, Some(note), &both, Some(2));
        assert_eq!((code, v["reason"].as_str()), (1, Some("too_few_witnesses")), "{v}");
        assert!(v["detail"].as_str().is_some_and(|d| d.contains(who)), "{v}");
        let (code, v) = verify_proof(&proof, &keys, Some(note), &both, Some(1));
        assert_eq!(code, 0, "{v}");
        assert_eq!(v["verified"]["witnesses"], serde_json::json!([who]));
    }
    // A third witness's key: the cosignatures on the notes are not by it.
    let w3 = Witness::start(&dir.path().join("w3"), "w1.example", &[&keys]);
    let proof = write(dir.path(), "inclusion.txt", &ok(&a, &["prove", "5"], ""));
    let (code, v) = verify_proof(&proof, &keys, Some(&note_a), &[&w3.vkey], Some(1));
    assert_eq!((code, v["reason"].as_str()), (1, Some("too_few_witnesses")), "{v}");
}

fn gateway_site(witness: Option<&Witness>, extra: &str) -> Site {
    let witnesses = witness.map_or(String::new(), |w| {
        format!(
            "[[witnesses]]\nname = \"w1\"\nurl = {}\nvkey = {}\ntimeout_sec = 5\n",
            q(&w.url),
            q(&w.vkey)
        )
    });
    Site::new(&format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\nanonymous_principal = \"anon\"\n\n\
         [servers.x]\ntransport = \"http\"\nurl = \"http://127.0.0.1:9/mcp\"\n\n\
         [checkpoints]\n{extra}\n\n{witnesses}"
    ))
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The gateway issues checkpoints (at start, every T seconds, idle or
/// not), records each, pushes each to a real witness, records its
/// answers and serves the cosigned note at the well-known URL and through
/// `sealgate checkpoint --issued`; a proof of the issued tree carries the
/// cosignature, and verifies under a 1-of-1 policy.
#[test]
fn the_gateway_issues_checkpoints_that_a_real_witness_cosigns() {
    let site = gateway_site(None, "");
    let data = site.path("data");
    site_ok(&site, &["init"]);
    let keys = key_history(&data, site.dir.path());
    let w = Witness::start(&site.path("w1"), "w1.example", &[&keys]);
    // The witness already holds a checkpoint of this log: the gateway's
    // first push (from 0) gets a 409 with that size and proves from it.
    w.cosign(&data);
    let site = Site::in_dir(site.dir, &gateway_body(&w, "every_secs = 1"));
    let served = site.serve();
    wait_for("two cosigned checkpoints", Duration::from_secs(30), || {
        site.events()
            .iter()
            .filter(|e| e["kind"] == "checkpoint.witnessed" && e["body"]["outcome"] == "cosigned")
            .count()
            >= 2
    });
    let events = site.events();
    let first = events
        .iter()
        .find(|e| e["kind"] == "checkpoint.witnessed")
        .expect("a witness's answer");
    assert_eq!(first["body"]["outcome"], "cosigned", "{first}");
    assert_eq!(first["body"]["witness"], "w1");
    assert!(
        first["body"]["cosignature"]
            .as_str()
            .is_some_and(|c| c.starts_with("\u{2014} w1.example "))
    );
    let issued: Vec<&Value> = events.iter().filter(|e| e["kind"] == "checkpoint.issued").collect();
    assert!(issued.len() >= 2, "{issued:#?}");
    assert_eq!(issued[0]["body"]["trigger"], "start");
    assert!(issued.iter().skip(1).any(|e| e["body"]["trigger"] == "interval"));
    for e in &issued {
        // Each covers the log before its own event, and is the ledger's
        // own checkpoint of that size.
        let size = e["body"]["size"].as_u64().expect("size");
        assert!(size <= e["seq"].as_u64().expect("seq"), "{e}");
        assert_eq!(e["actor"]["principal"], "sealgate:checkpoints");
        // (`checkpoint` adds the cosignatures gathered, when it is the
        // latest issued.)
        let made = site_ok(&site, &["checkpoint", "--size", &size.to_string()]);
        let note = e["body"]["note"].as_str().expect("note");
        assert!(made.starts_with(note), "{made}\n{note}");
    }
    // The well-known URL serves the latest issued checkpoint, with the
    // witness's cosignature once it answered (within ms of each issue).
    let base = served.base.clone();
    wait_for(
        "a cosigned checkpoint at the well-known URL",
        Duration::from_secs(10),
        || http_get(&format!("{base}/.well-known/sealgate/checkpoint")).contains("\n\u{2014} w1.example "),
    );
    // A graceful stop issues the shutdown checkpoint and waits for the
    // witness: `checkpoint --issued` then holds it, cosigned.
    let mut served = served;
    let st = Command::new("kill")
        .args(["-INT", &served.child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(st.success());
    let exit = served.child.wait().expect("wait serve");
    assert!(exit.success(), "{exit:?}\n{}", site.log());
    let events = site.events();
    let last = events
        .iter()
        .rev()
        .find(|e| e["kind"] == "checkpoint.issued")
        .expect("an issued checkpoint");
    assert_eq!(last["body"]["trigger"], "shutdown");
    let stored = site_ok(&site, &["checkpoint", "--issued"]);
    assert!(
        stored.starts_with(last["body"]["note"].as_str().expect("note")),
        "{stored}"
    );
    assert!(stored.contains("\n\u{2014} w1.example "), "{stored}");
    let proof = site_ok(&site, &["prove", "1", "--issued"]);
    let proof = write(site.dir.path(), "proof.txt", &proof);
    let (code, v) = verify_proof(&proof, &keys, None, &[&w.vkey], None);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["verified"]["witnesses"], serde_json::json!(["w1.example"]));

    // An evidence bundle of a time range the issued checkpoint covers is
    // proved against it and carries the witness's cosignature; one the
    // checkpoint does not cover gets a fresh checkpoint, which no witness
    // has cosigned: a 1-of-1 policy refuses it.
    let ts = |e: &Value| e["ts"].as_str().expect("ts").to_owned();
    let covered = site_ok(&site, &["checkpoint", "--issued"]);
    let covered: u64 = covered.lines().nth(1).and_then(|l| l.parse().ok()).expect("size");
    let inside: Vec<&Value> = events
        .iter()
        .filter(|e| e["seq"].as_u64().is_some_and(|s| s + 2 < covered))
        .collect();
    let (from, to) = (ts(inside[1]), ts(inside[inside.len() - 1]));
    let bundle = site.dir.path().join("range.evidence");
    let made = site
        .sealgate()
        .args(["evidence", "--from", &from, "--to", &to, "-o"])
        .arg(&bundle)
        .output()
        .expect("evidence");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let text = std::fs::read_to_string(&bundle).expect("bundle");
    assert!(text.contains("\n\u{2014} w1.example "), "{text}");
    let (code, v) = verify_evidence(&bundle, &keys, &[&w.vkey]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["verified"]["witnesses"], serde_json::json!(["w1.example"]));
    assert_eq!(v["verified"]["tree_size"], covered);
    assert!(v["verified"]["complete"].is_object(), "{v}");

    let later = site.dir.path().join("later.evidence");
    let made = site
        .sealgate()
        .args(["evidence", "--from", &from, "--to", "2500-01-01T00:00:00Z", "-o"])
        .arg(&later)
        .output()
        .expect("evidence");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    assert!(String::from_utf8_lossy(&made.stderr).contains("fresh checkpoint"));
    let (code, v) = verify_evidence(&later, &keys, &[&w.vkey]);
    assert_eq!(
        (code, &v["reason"]),
        (1, &serde_json::json!("too_few_witnesses")),
        "{v}"
    );
    let (code, v) = verify_evidence(&later, &keys, &[]);
    assert_eq!(code, 0, "without a witness policy it holds: {v}");
    site.verify();
}

/// `verify-evidence -o json`: (exit code, answer).
fn verify_evidence(bundle: &Path, keys: &Path, witnesses: &[&str]) -> (i32, Value) {
    let mut cmd = sealgate();
    cmd.args(["verify-evidence", "-o", "json"])
        .arg(bundle)
        .arg("--key")
        .arg(keys);
    for w in witnesses {
        cmd.args(["--witness", w]);
    }
    let out = cmd.output().expect("run verify-evidence");
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), v)
}

fn gateway_body(w: &Witness, checkpoints: &str) -> String {
    format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\nanonymous_principal = \"anon\"\n\n\
         [servers.x]\ntransport = \"http\"\nurl = \"http://127.0.0.1:9/mcp\"\n\n\
         [checkpoints]\n{checkpoints}\n\n\
         [[witnesses]]\nname = \"w1\"\nurl = {}\nvkey = {}\ntimeout_sec = 5\n",
        q(&w.url),
        q(&w.vkey)
    )
}

fn site_ok(site: &Site, args: &[&str]) -> String {
    let out = site.sealgate().args(args).output().expect("run sealgate");
    assert!(
        out.status.success(),
        "sealgate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A plain HTTP/1.1 GET on loopback: the body.
fn http_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_once('/').expect("a path");
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    write!(s, "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").expect("send");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer.split_once("\r\n\r\n").expect("headers").1.to_owned()
}

/// A witness URL that redirects (here to a real witness) is not followed:
/// the answer is recorded as refused with the 3xx, and the witness it
/// points to is never asked.
#[test]
fn a_witness_url_that_redirects_is_not_followed() {
    let site = gateway_site(None, "");
    let data = site.path("data");
    site_ok(&site, &["init"]);
    let keys = key_history(&data, site.dir.path());
    let real = Witness::start(&site.path("w1"), "w1.example", &[&keys]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let target = real.url.clone();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { return };
            let mut buf = [0u8; 65536];
            let _ = c.read(&mut buf);
            let _ = write!(
                c,
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {target}/add-checkpoint\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    let redirecting = Witness {
        child: Command::new("true").spawn().expect("placeholder child"),
        url: format!("http://{addr}"),
        vkey: real.vkey.clone(),
        state: real.state.clone(),
    };
    let site = Site::in_dir(site.dir, &gateway_body(&redirecting, "every_secs = 3600"));
    let served = site.serve();
    let mut answer = Value::Null;
    wait_for("the witness's answer", Duration::from_secs(20), || {
        answer = site
            .events()
            .into_iter()
            .find(|e| e["kind"] == "checkpoint.witnessed")
            .unwrap_or(Value::Null);
        !answer.is_null()
    });
    served.stop();
    assert_eq!(answer["body"]["outcome"], "refused", "{answer}");
    assert_eq!(answer["body"]["status"], 307, "{answer}");
    assert!(
        !real.state.join("logs").exists(),
        "the witness redirected to was asked:\n{}",
        real.log()
    );
}

/// SIGKILL while the gateway issues a checkpoint every 200 ms: after each
/// kill, every recorded checkpoint and the stored latest one are the
/// ledger's own checkpoint of their size (signing is deterministic, so
/// equal notes mean the same tree and root), and the log verifies.
#[test]
fn sigkill_during_checkpointing_never_leaves_a_checkpoint_the_log_does_not_back() {
    let site = gateway_site(None, "every_events = 1\nevery_secs = 1");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    eprintln!("seed {seed}");
    let mut rng = seed;
    let mut checked = 0;
    for round in 0..8 {
        let served = site.serve();
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        std::thread::sleep(Duration::from_millis(300 + (rng >> 33) % 900));
        served.stop();
        let events = site.events();
        let mut sizes = Vec::new();
        for e in events.iter().filter(|e| e["kind"] == "checkpoint.issued") {
            let size = e["body"]["size"].as_u64().expect("size");
            assert!(size <= e["seq"].as_u64().expect("seq"));
            let made = site_ok(&site, &["checkpoint", "--size", &size.to_string()]);
            assert_eq!(e["body"]["note"].as_str(), Some(made.as_str()), "round {round}: {e}");
            sizes.push(size);
            checked += 1;
        }
        // The stored latest checkpoint (if one was stored before the
        // kill) is one of those recorded, and the log's own.
        if site.path("data/checkpoints/latest.note").exists() {
            let latest = site_ok(&site, &["checkpoint", "--issued"]);
            let size: u64 = latest.lines().nth(1).and_then(|l| l.parse().ok()).expect("size line");
            let made = site_ok(&site, &["checkpoint", "--size", &size.to_string()]);
            assert_eq!(latest, made, "round {round}: the stored checkpoint is not the log's");
            assert!(
                sizes.contains(&size),
                "round {round}: latest {size} not among {sizes:?}"
            );
        }
        site.verify();
        eprintln!("round {round}: {} events, {} checkpoints", events.len(), sizes.len());
    }
    assert!(checked >= 8, "only {checked} checkpoints checked");
}

/// A client that never finishes its request's headers, or its body, does
/// not hold a witness's connection for ever (one slow client per
/// connection would otherwise exhaust it): both are closed within the read
/// timeout, and the witness then cosigns as before.
#[test]
fn a_witness_does_not_wait_for_ever_on_a_slow_client() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    ledger(&data, 3);
    let keys = key_history(&data, dir.path());
    let w = Witness::start_with(
        &dir.path().join("w"),
        "w.example",
        &[&keys],
        &["--read-timeout-sec", "2"],
    );
    let addr = w.url.strip_prefix("http://").expect("http url").to_owned();
    let slow = [
        "POST /add-checkpoint HTTP/1.1\r\nHost: w\r\n".to_owned(),
        "POST /add-checkpoint HTTP/1.1\r\nHost: w\r\nContent-Length: 1000\r\n\r\nold 0\n".to_owned(),
    ];
    for request in slow {
        let mut s = std::net::TcpStream::connect(&addr).expect("connect");
        s.write_all(request.as_bytes()).expect("send");
        s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let start = Instant::now();
        let mut answer = Vec::new();
        let read = s.read_to_end(&mut answer);
        let waited = start.elapsed();
        assert!(
            read.is_ok() && waited < Duration::from_secs(6),
            "{request:?}: the connection was still open after {waited:?} ({read:?})"
        );
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    w.cosign(&data);
}

/// A gateway serving a forked log (a copy of the ledger that went on
/// differently from the one a witness cosigned) has its checkpoint refused
/// by that witness, and raises the alarm where a SOC sees it: a critical
/// `witness_refused` alert, whose evidence is the refusal.
#[test]
fn a_witness_refusing_the_gateways_checkpoint_raises_a_critical_alert() {
    let site = gateway_site(None, "");
    let data = site.path("data");
    site_ok(&site, &["init"]);
    let keys = key_history(&data, site.dir.path());
    // The other branch: the same ledger, copied, grown and cosigned.
    let fork = site.dir.path().join("fork");
    copy_dir(&data, &fork);
    append(&fork, 3, "fork");
    let w = Witness::start(&site.path("w1"), "w1.example", &[&keys]);
    w.cosign(&fork);
    let site = Site::in_dir(site.dir, &gateway_body(&w, "every_secs = 1"));
    let _served = site.serve();
    wait_for("a witness_refused alert", Duration::from_secs(30), || {
        site.events()
            .iter()
            .any(|e| e["kind"] == "alert.raised" && e["body"]["detection"] == "witness_refused")
    });
    let events = site.events();
    let refusal = events
        .iter()
        .find(|e| e["kind"] == "checkpoint.witnessed")
        .expect("the witness's answer");
    assert_eq!(refusal["body"]["outcome"], "refused", "{refusal}");
    assert_eq!(refusal["body"]["status"], 422, "{refusal}");
    let alert = events
        .iter()
        .find(|e| e["kind"] == "alert.raised" && e["body"]["detection"] == "witness_refused")
        .expect("alert");
    assert_eq!(alert["body"]["severity"], "critical", "{alert}");
    assert_eq!(alert["body"]["evidence"][0]["seq"], refusal["seq"], "{alert}");
    assert!(
        alert["body"]["summary"].as_str().is_some_and(|s| s.contains("w1")),
        "{alert}"
    );
    assert!(w.log().contains("ALARM"), "{}", w.log());
}

/// The same log given twice (say, an old and a new key history) is
/// refused at start, naming it: one of the two would silently win.
#[test]
fn a_log_given_twice_to_a_witness_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    ledger(&data, 1);
    let keys = key_history(&data, dir.path());
    let out = sealgate()
        .args(["witness", "serve", "--listen", "127.0.0.1:0", "--state"])
        .arg(dir.path().join("w"))
        .arg("--log")
        .arg(&keys)
        .arg("--log")
        .arg(&keys)
        .output()
        .expect("run witness serve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("given twice") && err.contains("sealgate/ledger/"), "{err}");
}
