//! End-to-end tests of the `sealgate` command line on real data directories.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sealgate_tools::table;

struct Run {
    out: Output,
}

impl Run {
    fn code(&self) -> i32 {
        self.out.status.code().unwrap_or(-1)
    }
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    fn ok(self) -> Run {
        assert_eq!(self.code(), 0, "stdout: {}\nstderr: {}", self.stdout(), self.stderr());
        self
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout().trim()).unwrap_or_else(|e| panic!("{e}: {}", self.stdout()))
    }
}

/// A data directory and a working directory to run in.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn cwd(&self) -> &Path {
        self.dir.path()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("sealgate-data")
    }

    /// `sealgate ARGS` in the env's directory with embedded defaults.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sealgate"));
        command
            .args(args)
            .current_dir(self.cwd())
            .env_remove("SEALGATE_DATA_DIR")
            .env_remove("SEALGATE_CONFIG")
            .env_remove("SEALGATE_KEY_DIR");
        command
    }

    /// Runs `sealgate ARGS` with `stdin` as its input.
    fn run(&self, args: &[&str], stdin: &str) -> Run {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sealgate");
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(stdin.as_bytes()).expect("write stdin");
        drop(pipe);
        Run {
            out: child.wait_with_output().expect("wait"),
        }
    }

    fn head(&self) -> serde_json::Value {
        self.run(&["head", "-o", "json"], "").ok().json()
    }

    /// Appends a `server.registered` event as governance writes it (the
    /// command line writes only `x.*` kinds), through the ledger crate.
    fn register_server(&self, name: &str) {
        let data = self.data();
        let ledger = ledger::Ledger::open(&data.join("ledger"), &ledger::KeyDir::new(data.join("keys"))).expect("open");
        let mut draft = ledger::Draft::new(ledger::EventKind::ServerRegistered);
        draft.actor.principal = Some("root".into());
        draft.subject.server = Some(name.into());
        draft.body = events::encode(&events::ServerRegistered {
            transport: events::Transport::Stdio,
            address: format!("{name}-server"),
            owner: None,
            risk: Vec::new(),
            actions: Default::default(),
            source: Some(events::RegistrySource::Config),
            reason: None,
        })
        .expect("body");
        ledger.submit(vec![draft]).expect("submit").wait().expect("append");
    }
}

fn event(kind: &str, principal: &str) -> String {
    format!(
        r#"{{"kind":"{kind}","actor":{{"principal":"{principal}"}},"subject":{{"server":"fs","tool":"write_file"}},"body":{{"n":1}}}}"#
    )
}

/// `n` lines of `x.call` input, by principals `p0`, `p1`, ...
fn calls(n: usize) -> String {
    (0..n).map(|i| event("x.call", &format!("p{i}")) + "\n").collect()
}

#[test]
fn init_uses_embedded_defaults_and_refuses_to_run_twice() {
    let env = Env::new();
    let r = env.run(&["init"], "").ok();
    assert!(r.stdout().contains("ledger_id"), "{}", r.stdout());
    assert!(env.data().join("ledger").join("CURRENT").exists());
    // The signing key and the find key (`find-<ledger id>.secret`).
    let keys: Vec<_> = std::fs::read_dir(env.data().join("keys"))
        .expect("keys dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in &keys {
        assert_eq!(
            std::fs::metadata(key).expect("meta").permissions().mode() & 0o777,
            0o600,
            "{}",
            key.display()
        );
    }
    let name = |p: &std::path::PathBuf| p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    let find_key = keys
        .iter()
        .find(|k| name(k).starts_with("find-") && name(k).ends_with(".secret"))
        .unwrap_or_else(|| panic!("no find key in {keys:?}"));
    assert_eq!(std::fs::metadata(find_key).expect("meta").len(), 32);
    let stdout = r.stdout();
    let printed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("find_key "))
        .unwrap_or_default();
    assert!(printed.ends_with(&name(find_key)), "{stdout}");
    assert_eq!(env.head()["seq"], 0);

    let again = env.run(&["init"], "");
    assert_eq!(again.code(), 2);
    assert!(again.stderr().contains("already exists"), "{}", again.stderr());
    assert_eq!(env.head()["seq"], 0);
}

/// `sealgate init` killed with SIGKILL at moments spread over its whole run
/// never leaves a data dir that a second `init` cannot finish: afterwards
/// the ledger exists, verifies and holds only its genesis. Some kills must
/// land while the half-made ledger (`ledger.partial`) exists, and the
/// second `init` must finish those: a kill before `init` made anything, or
/// after it was done, shows nothing. Besides the rounds spread over an
/// init's time, rounds that kill the moment `ledger.partial` appears make
/// sure such kills happen however fast or slow this machine is.
#[test]
fn init_killed_at_any_moment_can_be_run_again() {
    let spawn_init = |env: &Env| {
        env.command(&["init"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sealgate init")
    };
    // How long a whole init takes here, to spread the kills over it.
    let timing = Env::new();
    let started = std::time::Instant::now();
    let status = spawn_init(&timing).wait().expect("wait");
    assert!(status.success());
    let whole = started.elapsed();
    const ROUNDS: u32 = 30;
    const AT_PARTIAL_ROUNDS: u32 = 10;
    let mut finished_before_kill = 0;
    // Rounds whose kill left `ledger.partial`, which the next init finished.
    let mut partial_finished = 0;
    for round in 0..ROUNDS + AT_PARTIAL_ROUNDS {
        let env = Env::new();
        let partial = env.data().join("ledger.partial");
        let mut child = spawn_init(&env);
        if round < ROUNDS {
            std::thread::sleep(whole * round * 3 / (ROUNDS * 2));
        } else {
            // The moment the half-made ledger appears (or init ends).
            while !partial.exists() && child.try_wait().expect("try_wait").is_none() {
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        }
        let _ = child.kill();
        let status = child.wait().expect("wait");
        if status.success() {
            finished_before_kill += 1;
        }
        let left_partial = partial.exists();
        let again = env.run(&["init"], "");
        match again.code() {
            0 => {}
            2 if again.stderr().contains("already exists") => {}
            code => panic!("round {round}: init after a kill exited {code}: {}", again.stderr()),
        }
        if left_partial {
            assert_eq!(
                again.code(),
                0,
                "round {round}: a kill left ledger.partial, and the next init did not finish it: {}",
                again.stderr()
            );
            partial_finished += 1;
        }
        env.run(&["verify"], "").ok();
        assert_eq!(env.head()["seq"], 0, "round {round}");
        assert!(
            !partial.exists(),
            "round {round}: a half-made ledger was left beside the data"
        );
    }
    eprintln!(
        "{finished_before_kill} of {} inits finished before their kill, {partial_finished} left ledger.partial \
         (one init takes {whole:?})",
        ROUNDS + AT_PARTIAL_ROUNDS
    );
    assert!(
        finished_before_kill < ROUNDS + AT_PARTIAL_ROUNDS,
        "no kill landed while init was running"
    );
    assert!(
        partial_finished >= 1,
        "no kill left a half-made ledger for the next init to finish"
    );
}

/// Principals the ledger's format does not allow (FORMAT.md §3: 1 to 1,024
/// bytes), each with the error that must name it.
fn bad_principals() -> [(String, &'static str); 3] {
    [
        (String::new(), "actor.principal: must not be empty"),
        ("p".repeat(1025), "actor.principal: longer than 1024 bytes"),
        // 1,026 bytes in 513 characters: the limit is in bytes.
        ("é".repeat(513), "actor.principal: longer than 1024 bytes"),
    ]
}

/// `init` with a principal the verifier would call malformed is refused
/// before anything is written: no data dir, no ledger, no key; a principal
/// of exactly 1,024 bytes is taken, and the ledger verifies.
#[test]
fn init_refuses_a_principal_the_verifier_would_call_malformed() {
    for (principal, want) in bad_principals() {
        let env = Env::new();
        let r = env.run(&["init", "--principal", &principal], "");
        assert_eq!(r.code(), 2, "{} bytes: stdout: {}", principal.len(), r.stdout());
        assert!(r.stderr().contains(want), "{} bytes: {}", principal.len(), r.stderr());
        assert_eq!(r.stdout(), "", "nothing initialized");
        assert!(
            !env.data().exists(),
            "{} bytes: a refused init left {:?}",
            principal.len(),
            std::fs::read_dir(env.data()).map(|d| d.map(|e| e.map(|e| e.file_name())).collect::<Vec<_>>())
        );
        // Nothing half-made stands in the way of an init done right.
        env.run(&["init"], "").ok();
        env.run(&["verify"], "").ok();
    }
    let env = Env::new();
    env.run(&["init", "--principal", &"p".repeat(1024)], "").ok();
    env.run(&["verify"], "").ok();
    let genesis = env.run(&["log", "-o", "json"], "").ok();
    assert!(genesis.stdout().contains(&"p".repeat(1024)), "{}", genesis.stdout());
}

/// `rotate-key` with a principal the verifier would call malformed is
/// refused before anything is written: the head and the current key stay,
/// no key file is made, every later command opens the ledger, and the log
/// verifies; a rotation done right afterwards works.
#[test]
fn rotate_key_refuses_a_principal_the_verifier_would_call_malformed() {
    let env = Env::new();
    env.run(&["init"], "").ok();
    env.run(&["append"], &calls(3)).ok();
    let key_files = || {
        let mut names: Vec<_> = std::fs::read_dir(env.data().join("keys"))
            .expect("keys dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        names
    };
    let keys = key_files();
    for (principal, want) in bad_principals() {
        let head = env.head();
        let r = env.run(&["rotate-key", "--principal", &principal, "--reason", "typo"], "");
        assert_eq!(r.code(), 2, "{} bytes: stdout: {}", principal.len(), r.stdout());
        assert!(r.stderr().contains(want), "{} bytes: {}", principal.len(), r.stderr());
        assert_eq!(env.head(), head, "{} bytes: the log moved", principal.len());
        assert_eq!(key_files(), keys, "{} bytes: a key file was made", principal.len());
        // The ledger still opens for every command, and verifies.
        env.run(&["verify"], "").ok();
        env.run(&["log"], "").ok();
        env.run(&["state", "all"], "").ok();
        env.run(&["append"], &calls(1)).ok();
    }
    let r = env.run(&["rotate-key", "--principal", &"p".repeat(1024)], "").ok();
    assert!(r.stdout().starts_with("rotated "), "{}", r.stdout());
    env.run(&["append"], &calls(1)).ok();
    let report = env.run(&["verify", "-o", "json"], "").ok().json();
    assert_eq!(report["ok"], true);
    assert_eq!(report["verified"], 9, "genesis, 3 + 3 appends, the rotation, 1 more");
    assert_eq!(key_files().len(), keys.len() + 1);
}

#[test]
fn keygen_writes_0600_and_never_overwrites() {
    let env = Env::new();
    let path = env.cwd().join("k.key");
    let p = path.to_str().expect("utf8");
    env.run(&["keygen", "--out", p], "").ok();
    let before = std::fs::read(&path).expect("read key");
    assert_eq!(
        std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
        0o600
    );
    let again = env.run(&["keygen", "--out", p], "");
    assert_ne!(again.code(), 0);
    assert!(again.stderr().contains("refusing to overwrite"), "{}", again.stderr());
    assert_eq!(std::fs::read(&path).expect("read key"), before);
    // init can use that key.
    let r = env.run(&["init", "--key", p], "").ok();
    let id = std::str::from_utf8(&before)
        .ok()
        .and_then(|t| t.split('"').nth(7))
        .map(str::to_owned)
        .expect("key id");
    assert!(r.stdout().contains(&id), "{} does not name {id}", r.stdout());
}

#[test]
fn append_prints_seq_and_hash_per_durable_event() {
    let env = Env::new();
    env.run(&["init"], "").ok();
    let input = format!(
        "{}\n\n{}\n{}\n",
        event("x.call", "a"),
        event("x.decision", "a"),
        event("x.grant", "b")
    );
    let r = env.run(&["append"], &input).ok();
    let acks: Vec<(u64, String)> = r
        .stdout()
        .lines()
        .map(|l| {
            let (s, h) = l.split_once(' ').expect("SEQ HASH");
            (s.parse().expect("seq"), h.to_owned())
        })
        .collect();
    assert_eq!(acks.iter().map(|a| a.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    // The acknowledged hashes are the stored ones.
    let log = env.run(&["log", "-o", "json", "--from", "1"], "").ok();
    let stored: Vec<serde_json::Value> = log
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    for ((seq, hash), e) in acks.iter().zip(&stored) {
        assert_eq!(e["seq"], *seq);
        assert_eq!(e["hash"], hash.as_str());
    }
    assert_eq!(stored[2]["event"]["actor"]["principal"], "b");

    // JSON acks name the input line (blank lines count).
    let r = env
        .run(&["append", "-o", "json"], &format!("\n{}\n", event("x.revoke", "c")))
        .ok();
    let ack = r.json();
    assert_eq!((ack["line"].as_u64(), ack["seq"].as_u64()), (Some(2), Some(4)));
}

#[test]
fn malformed_input_is_rejected_line_by_line_and_nothing_is_written() {
    let env = Env::new();
    env.run(&["init"], "").ok();
    let input = [
        event("x.grant", "ok"),
        "{not json".to_owned(),
        event("x.grant", "ok"),
        r#"{"kind":"x.grant","body":{"ratio":0.5}}"#.to_owned(),
        r#"{"kind":"grant.isued"}"#.to_owned(),
        r#"{"kind":"x.grant","actor":{"principal":"x","role":"admin"}}"#.to_owned(),
        r#"{"kind":"ledger.genesis"}"#.to_owned(),
        event("grant.issued", "forger"),
        event("x.Upper", "a"),
    ]
    .join("\n");
    let r = env.run(&["append"], &input);
    assert_eq!(r.code(), 1, "{}", r.stderr());
    let err = r.stderr();
    for want in [
        "line 2: column 2:",
        "line 4: column",
        "no floats",
        "line 5: kind: unknown event kind `grant.isued`",
        "line 6: unknown field `actor.role`",
        "line 7: kind: `ledger.genesis` is written only by the ledger",
        "line 8: kind: `grant.issued` is written only by Sealgate's own writers; `sealgate append` writes extension kinds, `x.<name>`",
        "line 9: kind: unknown event kind `x.Upper` (extension kinds are `x.<name>`",
        "nothing from it was written",
    ] {
        assert!(err.contains(want), "stderr lacks `{want}`:\n{err}");
    }
    for ok_line in ["line 1:", "line 3:"] {
        assert!(!err.contains(ok_line), "{err}");
    }
    assert_eq!(r.stdout(), "");
    assert_eq!(env.head()["seq"], 0, "nothing from the rejected batch may be written");
}

#[test]
fn batches_before_a_rejected_batch_are_written_and_acknowledged() {
    let env = Env::new();
    env.run(&["init"], "").ok();
    let input = [
        event("x.grant", "a"),
        event("x.grant", "b"),
        event("x.grant", "c"),
        "[]".to_owned(),
        event("x.grant", "e"),
    ]
    .join("\n");
    let r = env.run(&["append", "--batch-size", "2"], &input);
    assert_eq!(r.code(), 1);
    assert!(
        r.stderr().contains("line 4: expected an object, found an array"),
        "{}",
        r.stderr()
    );
    assert!(
        r.stderr().contains("(2 event(s) from earlier batches were)"),
        "{}",
        r.stderr()
    );
    assert_eq!(
        r.stdout().lines().count(),
        2,
        "lines 1-2 acknowledged, 3-4 rejected, 5 never read"
    );
    assert_eq!(env.head()["seq"], 2);
}

/// The ledger's RocksDB opened directly, as an attacker with the disk would.
/// Deletes the time-index entry of `seq` (the one entry its write batch
/// has), as someone editing the store would.
fn delete_index_entry(data: &Path, seq: u64) {
    let db = raw_db(data);
    let time = db.cf_handle("time").expect("cf");
    let keys: Vec<Box<[u8]>> = db
        .iterator_cf(time, rocksdb::IteratorMode::Start)
        .map(|kv| kv.expect("read").0)
        .filter(|k| k[8..] == seq.to_be_bytes())
        .collect();
    assert_eq!(keys.len(), 1, "one index entry for seq {seq}");
    db.delete_cf(time, &keys[0]).expect("delete");
}

fn raw_db(data: &Path) -> rocksdb::DB {
    rocksdb::DB::open_cf(
        &rocksdb::Options::default(),
        data.join("ledger"),
        ["events", "time", "meta", "tree"],
    )
    .expect("open raw")
}

/// Flips one byte inside the stored record of `seq`, as an attacker would.
fn tamper(data: &Path, seq: u64) {
    let db = raw_db(data);
    let cf = db.cf_handle("events").expect("cf");
    let mut rec = db.get_cf(cf, seq.to_be_bytes()).expect("get").expect("record");
    let at = rec.len() - 5;
    rec[at] ^= 0x20;
    db.put_cf(cf, seq.to_be_bytes(), rec).expect("put");
}

/// `meta`'s head is not signed: `sealgate head`, what an auditor pins,
/// prints the log's own head and refuses when meta disagrees with it.
#[test]
fn head_refuses_a_meta_head_the_log_disagrees_with() {
    let env = Env::new();
    env.run(&["init"], "").ok();
    let three = calls(3);
    env.run(&["append"], &three).ok();
    let before = env.head();
    assert_eq!(before["seq"], 3);
    {
        // Move meta's head back one event, as someone hiding the last
        // event from the next pin might (only the sequence number).
        let db = raw_db(&env.data());
        let meta = db.cf_handle("meta").expect("cf");
        let mut head = db.get_cf(meta, b"head").expect("get").expect("head");
        head[..8].copy_from_slice(&2u64.to_be_bytes());
        db.put_cf(meta, b"head", head).expect("put");
    }
    let r = env.run(&["head"], "");
    assert_eq!(r.code(), 2, "an error, not a verification result: {}", r.stdout());
    assert!(r.stdout().is_empty(), "nothing to pin: {}", r.stdout());
    assert!(
        r.stderr().contains("meta says the head is seq 2") && r.stderr().contains("the log's last event is seq 3"),
        "{}",
        r.stderr()
    );
}

/// The last event's content changed in place, its stored hash and `meta`
/// left as they were: `sealgate head` recomputes the hash from the content
/// and refuses, exit 2, naming the event, rather than print a head that
/// meta and the stored hash agree on but the content does not.
#[test]
fn head_refuses_a_last_event_whose_content_was_changed() {
    let env = Env::new();
    env.run(&["init"], "").ok();
    env.run(&["append"], &calls(3)).ok();
    assert_eq!(env.head()["seq"], 3);
    {
        // The principal "p2" of seq 3 becomes "q2", nothing else changes.
        let db = raw_db(&env.data());
        let cf = db.cf_handle("events").expect("cf");
        let mut rec = db.get_cf(cf, 3u64.to_be_bytes()).expect("get").expect("record");
        let at = rec.windows(4).position(|w| w == b"\"p2\"").expect("principal of seq 3") + 1;
        rec[at] = b'q';
        db.put_cf(cf, 3u64.to_be_bytes(), rec).expect("put");
    }
    for args in [&["head"][..], &["head", "-o", "json"][..]] {
        let r = env.run(args, "");
        assert_eq!(r.code(), 2, "{args:?}: an error, not a head: {}", r.stdout());
        assert!(r.stdout().is_empty(), "{args:?}: nothing to pin: {}", r.stdout());
        assert!(
            r.stderr().contains("seq 3") && r.stderr().contains("stored hash does not match its content"),
            "{args:?}: {}",
            r.stderr()
        );
    }
}

#[test]
fn verify_exit_codes_reports_and_pinned_heads() {
    let env = Env::new();
    env.run(&["init"], "").ok();
    let many = calls(50);
    env.run(&["append"], &many).ok();
    let pin = env.head()["pin"].as_str().expect("pin").to_owned();

    env.run(&["append"], &many).ok();
    env.run(&["rotate-key", "--reason", "test"], "").ok();
    env.run(&["append"], &many).ok();
    let r = env.run(&["verify", "--head", &pin, "-o", "json"], "").ok();
    let report = r.json();
    assert_eq!(report["ok"], true);
    assert_eq!(report["verified"], 152);
    assert_eq!(report["anchor"]["source"], "pinned");
    let text = env.run(&["verify"], "").ok();
    assert!(text.stdout().contains("OK"), "{}", text.stdout());

    // Range verification by sequence number and by time.
    let r = env
        .run(&["verify", "--from", "60", "--to", "70", "-o", "json"], "")
        .ok();
    assert_eq!(
        (r.json()["verified"].as_u64(), r.json()["linked"].as_u64()),
        (Some(11), Some(81))
    );
    let r = env
        .run(&["verify", "--from", "2000-01-01T00:00:00Z", "-o", "json"], "")
        .ok();
    assert_eq!(r.json()["verified"], 152);
    // A range ending at a time also verifies the event after it, whose time
    // shows the range really ends there: seq 60 was appended with 51..=100,
    // so the range is 1..=100 and the rotation at 101 is checked too.
    let at_60 = env.run(&["log", "--from", "60", "--to", "60", "-o", "json"], "").ok();
    let ts = serde_json::from_str::<serde_json::Value>(at_60.stdout().trim()).expect("json")["event"]["ts"]
        .as_str()
        .expect("ts")
        .to_owned();
    let r = env.run(&["verify", "--from", "1", "--to", &ts, "-o", "json"], "").ok();
    assert_eq!(
        (r.json()["to"].as_u64(), r.json()["verified"].as_u64()),
        (Some(100), Some(101))
    );

    // A pin that is not in the log.
    let (seq, _) = pin.split_once(':').expect("pin");
    let wrong = format!("{seq}:{}", "ab".repeat(32));
    let r = env.run(&["verify", "--head", &wrong, "-o", "json"], "");
    assert_eq!(r.code(), 1);
    assert_eq!(r.json()["failure"]["kind"], "head_mismatch");
    assert_eq!(r.json()["failure"]["seq"].as_u64(), seq.parse::<u64>().ok());
    let r = env.run(&["verify", "--head", "12"], "");
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("expected SEQ:HASH"), "{}", r.stderr());

    // Tampering names the first bad sequence number.
    tamper(&env.data(), 77);
    let r = env.run(&["verify", "-o", "json"], "");
    assert_eq!(r.code(), 1, "{}", r.stdout());
    assert_eq!(r.json()["failure"]["seq"], 77);
    let r = env.run(&["verify"], "");
    assert!(r.stdout().contains("FAILED at seq 77"), "{}", r.stdout());
    // A range before the damage is anchored to the head through the damaged
    // event, so it cannot be vouched for either.
    let r = env.run(&["verify", "--from", "1", "--to", "76"], "");
    assert_eq!(
        r.code(),
        1,
        "the range is anchored to the head, through the damaged event"
    );
}

#[test]
fn log_filters_by_kind_time_and_limit() {
    let env = Env::new();
    env.run(&["init"], "").ok();
    let input = [event("x.call", "a"), event("x.decision", "a"), event("x.call", "b")].join("\n");
    env.run(&["append"], &input).ok();
    let r = env.run(&["log", "--kind", "x.call", "-o", "json"], "").ok();
    let seqs: Vec<u64> = r
        .stdout()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["seq"]
                .as_u64()
                .expect("seq")
        })
        .collect();
    assert_eq!(seqs, vec![1, 3]);
    let r = env.run(&["log", "--limit", "2"], "").ok();
    assert_eq!(r.stdout().lines().count(), 3, "header and two rows: {}", r.stdout());
    assert!(r.stdout().contains("ledger.genesis"));
    let r = env.run(&["log", "--from", "2500-01-01T00:00:00Z"], "");
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("no event at or after"), "{}", r.stderr());
    let r = env.run(&["log", "--kind", "nope"], "");
    assert!(r.stderr().contains("--kind nope: unknown event kind"), "{}", r.stderr());
}

/// The time index is not signed. With one of its entries deleted, a
/// range asked for by time would start an append later than asked and
/// leave events out: `sealgate log` finds the range from the events
/// instead, shows all of it and warns, naming the event the index hid;
/// `sealgate verify` by time reports the damage and fails.
#[test]
fn log_by_time_does_not_let_an_edited_index_leave_events_out() {
    let env = Env::new();
    env.run(&["init"], "").ok();
    for p in ["a", "b", "c"] {
        env.run(&["append"], &event("x.call", p)).ok();
    }
    let at = |seq: &str| {
        let r = env.run(&["log", "--from", seq, "--to", seq, "-o", "json"], "").ok();
        serde_json::from_str::<serde_json::Value>(r.stdout().trim()).expect("json")["event"]["ts"]
            .as_str()
            .expect("ts")
            .to_owned()
    };
    let ts2 = at("2");
    assert_eq!(
        env.run(&["log", "--from", &ts2, "-o", "json"], "")
            .ok()
            .stdout()
            .lines()
            .count(),
        2
    );
    delete_index_entry(&env.data(), 2);
    let r = env.run(&["log", "--from", &ts2, "-o", "json"], "").ok();
    let seqs: Vec<u64> = r
        .stdout()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["event"]["seq"]
                .as_u64()
                .expect("seq")
        })
        .collect();
    assert_eq!(seqs, vec![2, 3], "the range starts where the events say");
    assert!(
        r.stderr().contains("warning: --from")
            && r.stderr().contains("seq 2")
            && r.stderr().contains("the time index does not match the log"),
        "{}",
        r.stderr()
    );
    let r = env.run(&["verify", "--from", &ts2], "");
    assert_eq!(r.code(), 1, "verify by time fails on the edited index: {}", r.stdout());
    assert!(r.stdout().contains("range_mismatch"), "{}", r.stdout());
}

/// The governance state as of a time is resolved the same way: with the
/// index entry of a later event deleted, the index alone would answer
/// "as of seq 2's time" with seq 3, and show a server that was registered
/// only afterwards.
#[test]
fn state_as_of_a_time_is_not_moved_by_an_edited_index() {
    let env = Env::new();
    env.run(&["init"], "").ok();
    for p in ["a", "b"] {
        env.run(&["append"], &event("x.call", p)).ok();
    }
    env.register_server("late");
    let r = env.run(&["log", "--from", "2", "--to", "2", "-o", "json"], "").ok();
    let ts2 = serde_json::from_str::<serde_json::Value>(r.stdout().trim()).expect("json")["event"]["ts"]
        .as_str()
        .expect("ts")
        .to_owned();
    // (as-of seq, whether `late` is registered, stderr)
    let registry = |args: &[&str]| {
        let r = env.run(args, "").ok();
        let v: serde_json::Value = serde_json::from_str(&r.stdout()).expect("json");
        let late = v["registry"]["servers"].get("late").is_some();
        (v["as_of_seq"].as_u64(), late, r.stderr())
    };
    let as_of = ["state", "registry", "--as-of", ts2.as_str()];
    let (seq, late, stderr) = registry(&as_of);
    assert_eq!((seq, late), (Some(2), false), "{stderr}");
    assert!(!stderr.contains("time index"), "{stderr}");
    let (seq, late, _) = registry(&["state", "registry"]);
    assert_eq!((seq, late), (Some(3), true), "the server is registered at seq 3");
    delete_index_entry(&env.data(), 3);
    let (seq, late, stderr) = registry(&as_of);
    assert_eq!((seq, late), (Some(2), false), "{stderr}");
    assert!(
        stderr.contains("seq 3") && stderr.contains("the time index does not match the log"),
        "{stderr}"
    );
}

/// A flipped byte in a RocksDB table file: `verify` names the first record
/// it cannot read, and a command that fails on it (`state`) tells RocksDB's
/// finding once, not once per layer of error.
#[test]
fn a_damaged_table_file_is_reported_once_and_where() {
    let env = Env::new();
    env.run(&["init"], "").ok();
    let lines = calls(20_000);
    env.run(&["append", "--batch-size", "1000"], &lines).ok();
    // Opening for writing flushes what it recovered from the WAL to a table.
    env.run(&["append"], "").ok();
    table::flip_a_byte_in_the_largest_table(&env.data().join("ledger"));

    let r = env.run(&["verify", "-o", "json"], "");
    assert_eq!(r.code(), 1, "{}", r.stdout());
    let report = r.json();
    let seq = report["failure"]["seq"].as_u64().expect("failure seq");
    assert!(seq > 0 && seq < 20_000, "{report}");
    assert_eq!(report["failure"]["kind"], "malformed", "{report}");
    // The record before it reads; the one it names does not.
    env.run(
        &["log", "--from", &(seq - 1).to_string(), "--to", &(seq - 1).to_string()],
        "",
    )
    .ok();
    let r = env.run(&["log", "--from", &seq.to_string(), "--to", &seq.to_string()], "");
    assert_eq!(r.code(), 2, "{}", r.stdout());

    let r = env.run(&["state", "registry"], "");
    assert_eq!(r.code(), 2, "{}", r.stdout());
    assert_eq!(r.stderr().matches("Corruption").count(), 1, "{}", r.stderr());
}

/// A ledger directory that lost RocksDB's `CURRENT` is a damaged ledger,
/// not a missing one: commands refuse it with what to restore, `init` does
/// not create a ledger (or a key) over it, and restoring `CURRENT` as the
/// message says brings the log back whole.
#[test]
fn a_ledger_without_current_is_damaged_not_missing() {
    let env = Env::new();
    env.run(&["init"], "").ok();
    for p in ["a", "b"] {
        env.run(&["append"], &event("x.call", p)).ok();
    }
    let head = env.head();
    let current = env.data().join("ledger/CURRENT");
    let saved = std::fs::read_to_string(&current).expect("read CURRENT");
    std::fs::remove_file(&current).expect("remove CURRENT");
    let keys_before = std::fs::read_dir(env.data().join("keys")).expect("keys").count();

    for args in [&["verify"][..], &["log"], &["head"], &["append"], &["init"]] {
        let r = env.run(args, "");
        assert_eq!(r.code(), 2, "{args:?}: {}", r.stdout());
        assert!(
            r.stderr().contains("no CURRENT") && !r.stderr().contains("run `sealgate init`"),
            "{args:?}: {}",
            r.stderr()
        );
    }
    let r = env.run(&["verify"], "");
    let manifest = saved.trim();
    assert!(
        r.stderr().contains(&format!("a CURRENT file holding `{manifest}`")),
        "{}",
        r.stderr()
    );
    assert_eq!(
        std::fs::read_dir(env.data().join("keys")).expect("keys").count(),
        keys_before,
        "no key made"
    );
    assert!(
        !env.data().join("ledger.partial").exists(),
        "no ledger started beside it"
    );

    std::fs::write(&current, format!("{manifest}\n")).expect("restore CURRENT");
    env.run(&["verify"], "").ok();
    assert_eq!(env.head(), head);
}

/// The acknowledged mark is rewritten without a sync, so a power cut can
/// tear it: an unreadable mark is passed over, not taken as damage, but
/// every command that opens the ledger says so (as plain text on a pipe),
/// and the writer's next acknowledgement puts a good one back.
#[test]
fn an_unreadable_acknowledged_mark_is_said_and_rewritten() {
    let env = Env::new();
    env.run(&["init"], "").ok();
    env.run(&["append"], &event("x.call", "a")).ok();
    let mark = env.data().join("ledger/SEALGATE-ACKED");
    std::fs::write(&mark, b"garbage").expect("damage the mark");
    let r = env.run(&["verify"], "").ok();
    assert!(
        r.stderr().contains("the acknowledged mark cannot be read") && r.stderr().contains("7 bytes, expected 56"),
        "{}",
        r.stderr()
    );
    assert!(
        !r.stderr().contains('\u{1b}'),
        "no colour codes on a pipe: {:?}",
        r.stderr()
    );
    env.run(&["append"], &event("x.call", "b")).ok();
    assert_eq!(std::fs::metadata(&mark).expect("mark").len(), 56, "rewritten");
    let r = env.run(&["verify"], "").ok();
    assert!(!r.stderr().contains("acknowledged mark"), "{}", r.stderr());
}

/// A snapshot file put in the data dir by someone without the ledger's key
/// (a forged state with a correct header: ledger id, seq and hash are no
/// secret) is not used, with or without `--snapshots`: unsigned in the old
/// format, or with a signature the log's key did not make. `state` says
/// which file it passed over and why, and shows what the events say.
#[test]
fn state_does_not_use_snapshot_files_the_log_key_did_not_sign() {
    let env = Env::new();
    env.run(&["init"], "").ok();
    env.register_server("real");
    env.run(&["append"], &event("x.call", "a")).ok();
    let head = env.head();
    let all = env.run(&["state", "all"], "").ok().json();
    let mut state = all["all"].clone();
    let servers = state["registry"]["servers"].as_object_mut().expect("servers");
    let mut forged = servers["real"].clone();
    forged["name"] = "forged".into();
    servers.insert("forged".into(), forged);
    let bytes = serde_json::to_vec(&state).expect("encode");
    // The governance projection's version names the directory its
    // snapshots are looked for in.
    let version = <sealgate::governance::GovState as ledger::Projection>::VERSION;
    let dir = env.data().join(format!("snapshots/governance/v{version}"));
    std::fs::create_dir_all(&dir).expect("snapshot dir");
    let path = dir.join(format!("{:020}.snap", head["seq"].as_u64().expect("seq")));
    let write = |header: serde_json::Value| {
        let mut file = serde_json::to_vec(&header).expect("header");
        file.push(b'\n');
        file.extend_from_slice(&bytes);
        std::fs::write(&path, file).expect("write");
    };
    let header = |magic: &str| {
        serde_json::json!({
            "magic": magic,
            "projection": "governance",
            "version": version,
            "ledger_id": head["ledger_id"],
            "seq": head["seq"],
            "hash": head["hash"],
            "state_bytes": bytes.len(),
            "state_digest": blake3::hash(&bytes).to_hex().to_string(),
        })
    };
    let shown = |args: &[&str]| {
        let r = env.run(args, "").ok();
        let v = r.json();
        // Replayed from the log's start: no snapshot was used.
        assert_eq!(v["snapshot_seq"], serde_json::Value::Null, "{args:?}: {v}");
        let servers = v["registry"]["servers"].as_object().expect("servers").clone();
        (servers.contains_key("real"), servers.contains_key("forged"), r.stderr())
    };
    let file_name = path.file_name().expect("file name").to_string_lossy().to_string();

    write(header("sealgate-snapshot-v1"));
    let (real, forged, stderr) = shown(&["state", "registry", "--snapshots"]);
    assert_eq!((real, forged), (true, false), "an unsigned snapshot is not used");
    assert!(
        stderr.contains(&file_name) && stderr.contains("unsigned format"),
        "{stderr}"
    );

    // Signed, and claiming the log's key, but by another key.
    let mut signed = header("sealgate-snapshot-v2");
    let other = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    signed["key"] = head["key_id"].clone();
    signed["signature"] = hex::encode(ed25519_dalek::Signer::sign(&other, b"anything").to_bytes()).into();
    write(signed);
    let (real, forged, stderr) = shown(&["state", "registry", "--snapshots"]);
    assert_eq!(
        (real, forged),
        (true, false),
        "a snapshot the log's key did not sign is not used"
    );
    assert!(
        stderr.contains(&file_name) && stderr.contains("signature does not verify"),
        "{stderr}"
    );
    let (real, forged, _) = shown(&["state", "registry"]);
    assert_eq!((real, forged), (true, false), "without --snapshots the log alone");
}

#[test]
fn config_file_sets_the_data_dir_and_rejects_unknown_keys() {
    let env = Env::new();
    std::fs::write(env.cwd().join("sealgate.toml"), "data_dir = \"elsewhere\"\n").expect("write config");
    env.run(&["init"], "").ok();
    assert!(env.cwd().join("elsewhere/ledger/CURRENT").exists());
    // --data-dir wins over the config.
    env.run(&["--data-dir", "flagged", "init"], "").ok();
    assert!(env.cwd().join("flagged/ledger/CURRENT").exists());

    std::fs::write(env.cwd().join("sealgate.toml"), "data_dir = \"x\"\ndatadir = \"y\"\n").expect("write config");
    let r = env.run(&["head"], "");
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr().contains("sealgate.toml") && r.stderr().contains("datadir") && r.stderr().contains("line 2"),
        "{}",
        r.stderr()
    );
}

#[test]
fn commands_on_a_missing_ledger_say_how_to_create_one() {
    let env = Env::new();
    let r = env.run(&["verify"], "");
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("sealgate init"), "{}", r.stderr());
}

/// The store's files that tell a flush and a WAL switch: RocksDB's table
/// files (`*.sst`) and WAL files (`*.log`), by name. A new table file is a
/// flush (or a compaction); a new WAL name is a switch, onto a reused
/// (renamed) file once some have been flushed.
fn store_files(ledger: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(ledger)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".sst") || n.ends_with(".log"))
                .collect()
        })
        .unwrap_or_default()
}

/// An auditor's `verify`, `head` and `log` on the data dir of a process
/// that is appending, while its RocksDB flushes, compacts and reuses WAL
/// files (1 MiB memtables): every run opens; every `verify` checks the
/// whole log as of its open and passes; every `log` shows every event from
/// the genesis to at least the head seen before it, in order, with no gap.
/// The store's files must change while some of these runs are open (a
/// flush or a WAL switch), or the runs showed nothing about them.
/// Before the view locks (`ledger/src/views.rs`) some opens failed with a
/// missing table file reported as corruption, and some showed a gap.
#[test]
fn verify_runs_beside_a_process_that_appends() {
    let env = Env::new();
    env.run(&["init"], "").ok();
    let ledger = env.data().join("ledger");
    let mut child = env
        .command(&["append", "--batch-size", "64"])
        .env("SEALGATE_LEDGER__MEMTABLE_MB", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sealgate append");
    let mut stdin = std::io::BufWriter::new(child.stdin.take().expect("stdin"));
    // The feeder writes events up to a budget, raised round by round, so
    // that the log (which each round verifies and shows whole) stays small
    // and every round has appends, flushes and WAL switches beside it.
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    // Whole batches of 64, which `append --batch-size 64` writes as they fill.
    let budget = std::sync::Arc::new(AtomicU64::new(313 * 64));
    let feeder = {
        let (stop, budget) = (stop.clone(), budget.clone());
        std::thread::spawn(move || {
            let pad = "x".repeat(400);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if i >= budget.load(Ordering::Relaxed) {
                    if stdin.flush().is_err() {
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    continue;
                }
                let line = format!(
                    r#"{{"kind":"x.call","actor":{{"principal":"p{}"}},"subject":{{"server":"fs","tool":"read"}},"body":{{"i":{i},"pad":"{pad}"}}}}"#,
                    i % 7
                );
                if writeln!(stdin, "{line}").is_err() {
                    return;
                }
                i += 1;
            }
        })
    };
    let head = || env.head()["seq"].as_u64().expect("head seq");
    // Enough events (about a dozen memtables) that an open has many table
    // files to find. No deadline on the whole (a loaded machine appends
    // slowly), only on a stall.
    let mut progress = (0, std::time::Instant::now());
    loop {
        let seq = head();
        if seq >= 20_000 {
            break;
        }
        if seq > progress.0 {
            progress = (seq, std::time::Instant::now());
        }
        assert!(
            progress.1.elapsed().as_secs() < 60,
            "the appending process made no progress for 60 s (head {seq})"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let mut last = 0;
    // Runs during which a table file appeared or the WAL moved on.
    let mut changed_while_open = 0;
    for round in 0..12 {
        let seq = head();
        assert!(seq >= last, "round {round}: head {seq} after {last}");
        last = seq;
        // About two memtables more for this round's runs to open beside.
        budget.fetch_add(47 * 64, Ordering::Relaxed);

        let before = store_files(&ledger);
        let r = env.run(&["verify", "-o", "json"], "");
        let after = store_files(&ledger);
        changed_while_open += u32::from(before != after);
        assert_eq!(r.code(), 0, "round {round}: {}{}", r.stdout(), r.stderr());
        let report = r.json();
        assert_eq!(report["ok"], true, "round {round}: {}", r.stdout());
        assert_eq!(report["from"], 0, "round {round}: the whole log: {report}");
        let verified = report["verified"].as_u64().expect("verified");
        assert!(
            verified > seq,
            "round {round}: {verified} verified, the head was {seq}: {report}"
        );

        let before = store_files(&ledger);
        let r = env.run(&["log", "-o", "json"], "");
        let after = store_files(&ledger);
        changed_while_open += u32::from(before != after);
        assert_eq!(r.code(), 0, "round {round}: log: {}", r.stderr());
        let mut shown = 0u64;
        for line in r.stdout().lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("log line is JSON");
            assert_eq!(v["seq"], shown, "round {round}: log skips or repeats an event");
            shown += 1;
        }
        assert!(
            shown >= verified,
            "round {round}: log showed {shown} events, verify {verified} before it"
        );
    }
    stop.store(true, Ordering::Relaxed);
    feeder.join().expect("feeder");
    let out = child.wait_with_output().expect("wait for append");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eprintln!("the store's files changed during {changed_while_open} of 24 runs");
    assert!(
        changed_while_open >= 3,
        "a flush or WAL switch happened during only {changed_while_open} of 24 runs of verify and log"
    );
    // The appends went on through the opens.
    let end = head();
    assert!(end > last, "the head moved from {last} to {end}");
    let r = env.run(&["verify", "-o", "json"], "").ok();
    assert_eq!(r.json()["ok"], true, "{}", r.stdout());
}

/// `checkpoint`, `key-history`, `prove` and `verify-proof` on a real data
/// directory: an inclusion and a consistency proof verify offline with
/// only the files the commands wrote; a changed proof, a consistency proof
/// without the older checkpoint, and a checkpoint checked with keys from
/// before a rotation are refused with their reasons.
#[test]
fn checkpoints_and_proofs_from_the_command_line_verify_offline() {
    let env = Env::new();
    env.run(&["init"], "").ok();
    env.run(&["append"], &calls(10)).ok();
    let file = |name: &str, text: String| {
        let path = env.cwd().join(name);
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    };
    let keys = file("keys.txt", env.run(&["key-history"], "").ok().stdout());
    let cp = env.run(&["checkpoint"], "").ok().stdout();
    let lines: Vec<&str> = cp.lines().collect();
    assert!(lines[0].starts_with("sealgate/ledger/"), "{cp}");
    assert_eq!(lines[1], "11", "genesis and ten events: {cp}");
    assert!(lines[4].starts_with(&format!("\u{2014} {} ", lines[0])), "{cp}");
    let cp = file("cp-11.txt", cp);
    let proof = file("seq-4.tlog-proof", env.run(&["prove", "4"], "").ok().stdout());
    let ok = env
        .run(
            &[
                "verify-proof",
                &proof,
                "--checkpoint",
                &cp,
                "--key",
                &keys,
                "-o",
                "json",
            ],
            "",
        )
        .ok()
        .json();
    assert_eq!(ok["verified"]["seq"], 4, "{ok}");
    assert_eq!(ok["verified"]["event"]["actor"]["principal"], "p3", "{ok}");

    env.run(&["append"], &calls(5)).ok();
    let consistency = file(
        "11-16.proof",
        env.run(&["prove", "--consistency", "11", "16"], "").ok().stdout(),
    );
    let ok = env
        .run(&["verify-proof", &consistency, "--checkpoint", &cp, "--key", &keys], "")
        .ok()
        .stdout();
    assert!(
        ok.starts_with("OK: the tree of 11 events is a prefix of the tree of 16"),
        "{ok}"
    );
    let refused = env.run(&["verify-proof", &consistency, "--key", &keys, "-o", "json"], "");
    assert_eq!(refused.code(), 1, "{}", refused.stdout());
    assert!(refused.stdout().contains("--checkpoint"), "{}", refused.stdout());

    // One proof hash changed: the proof no longer leads to the root.
    let text = std::fs::read_to_string(&proof).expect("read");
    let hash_line = text.lines().nth(3).expect("a proof hash");
    let mut changed_line = hash_line.to_owned().into_bytes();
    changed_line[5] = if changed_line[5] == b'A' { b'B' } else { b'A' };
    let changed = file(
        "changed.tlog-proof",
        text.replacen(hash_line, std::str::from_utf8(&changed_line).expect("ascii"), 1),
    );
    let refused = env.run(
        &[
            "verify-proof",
            &changed,
            "--checkpoint",
            &cp,
            "--key",
            &keys,
            "-o",
            "json",
        ],
        "",
    );
    assert_eq!(refused.code(), 1, "{}", refused.stdout());
    assert_eq!(refused.json()["reason"], "bad_proof", "{}", refused.stdout());

    // After a rotation the checkpoints are the new key's: the keys held
    // from before do not verify them, the new history does.
    env.run(&["rotate-key"], "").ok();
    let after = file("cp-after.txt", env.run(&["checkpoint"], "").ok().stdout());
    let proof = file("after.tlog-proof", env.run(&["prove", "2"], "").ok().stdout());
    let refused = env.run(
        &[
            "verify-proof",
            &proof,
            "--checkpoint",
            &after,
            "--key",
            &keys,
            "-o",
            "json",
        ],
        "",
    );
    assert_eq!(refused.json()["reason"], "unknown_key", "{}", refused.stdout());
    let new_keys = file("keys-2.txt", env.run(&["key-history"], "").ok().stdout());
    env.run(
        &["verify-proof", &proof, "--checkpoint", &after, "--key", &new_keys],
        "",
    )
    .ok();
}
