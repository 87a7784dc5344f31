//! End-to-end tests of `sealgate policy check` and `sealgate policy test`:
//! the real binary on real files.

use std::path::Path;
use std::process::{Command, Output};

const EXAMPLE: &str = "\
version: v1
rules:
  - id: allow-read-approved
    match: { action: read }
    decision: ALLOW
  - id: approve-prod-writes
    match: { action: [write, destructive], env: prod }
    decision: REQUIRE_APPROVAL
    approval: { timeout_sec: 600, approvers: { team: security } }
  - id: constrain-nonprod-writes
    match: { action: write, env: [staging, dev] }
    decision: ALLOW_WITH_CONSTRAINTS
    constraints: { max_runtime_sec: 30, max_result_bytes: 1048576 }
";

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
    #[track_caller]
    fn code_is(self, code: i32) -> Run {
        assert_eq!(
            self.code(),
            code,
            "stdout: {}\nstderr: {}",
            self.stdout(),
            self.stderr()
        );
        self
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout().trim()).unwrap_or_else(|e| panic!("{e}: {}", self.stdout()))
    }
}

/// Runs `sealgate ARGS` in `dir`, away from any config of the caller's.
fn sealgate(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(args)
        .current_dir(dir)
        .env_remove("SEALGATE_DATA_DIR")
        .env_remove("SEALGATE_CONFIG")
        .env_remove("SEALGATE_KEY_DIR")
        .output()
        .expect("run sealgate");
    Run { out }
}

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write policy");
    }
    dir
}

fn hash(text: &str) -> String {
    format!("blake3:{}", blake3::hash(text.as_bytes()).to_hex())
}

#[test]
fn check_prints_the_hash_and_rule_count_of_a_valid_policy() {
    let dir = dir_with(&[("policy.yaml", EXAMPLE)]);
    let run = sealgate(dir.path(), &["policy", "check", "policy.yaml"]).code_is(0);
    let out = run.stdout();
    assert!(
        out.starts_with(&format!(
            "ok policy.yaml\nrules 3\nhash {}\nbytes {}\n",
            hash(EXAMPLE),
            EXAMPLE.len()
        )),
        "{out}"
    );
    // One line per rule: its line in the file, decision and id.
    assert!(
        out.contains("line    6  REQUIRE_APPROVAL        approve-prod-writes"),
        "{out}"
    );
    let run = sealgate(dir.path(), &["policy", "check", "policy.yaml", "-o", "json"]).code_is(0);
    let v = run.json();
    assert_eq!(v["ok"], true);
    assert_eq!(v["rules"], 3);
    assert_eq!(v["hash"], hash(EXAMPLE));
    assert_eq!(v["rule_list"][1]["id"], "approve-prod-writes");
    assert_eq!(v["rule_list"][1]["line"], 6);
}

#[test]
fn check_rejects_an_invalid_policy_with_file_line_column_and_rule() {
    let dir = dir_with(&[
        (
            "wrong-key.yaml",
            "version: v1\nrules:\n  - id: a\n    decision: ALLOW\n    approval: { timeout_sec: 1, approvers: { team: x } }\n",
        ),
        (
            "typo.yaml",
            "version: v1\nrules:\n  - id: first\n    decision: DENY\n  - id: second\n    mach: { server: fs }\n    decision: ALLOW\n",
        ),
        ("broken.yaml", "version: v1\nrules: [\n  { id: a, decision: ALLOW\n"),
        ("version.yaml", "version: v9\nrules: []\n"),
    ]);
    let run = sealgate(dir.path(), &["policy", "check", "wrong-key.yaml"]).code_is(1);
    assert_eq!(
        run.stderr().trim(),
        "error: wrong-key.yaml:5:15: rule \"a\": `approval` is only for REQUIRE_APPROVAL, not ALLOW"
    );
    assert_eq!(run.stdout(), "");
    let run = sealgate(dir.path(), &["policy", "check", "typo.yaml"]).code_is(1);
    assert!(
        run.stderr()
            .starts_with("error: typo.yaml:6:5: rule \"second\": unknown field `mach`"),
        "{}",
        run.stderr()
    );
    let run = sealgate(dir.path(), &["policy", "check", "broken.yaml"]).code_is(1);
    assert!(run.stderr().starts_with("error: broken.yaml:"), "{}", run.stderr());
    let position = run.stderr()["error: broken.yaml:".len()..]
        .split(':')
        .take(2)
        .collect::<Vec<_>>()
        .join(":");
    assert!(
        position.split(':').all(|n| n.parse::<u64>().is_ok_and(|n| n > 0)),
        "no line:column in {}",
        run.stderr()
    );
    let run = sealgate(dir.path(), &["policy", "check", "version.yaml"]).code_is(1);
    assert_eq!(
        run.stderr().trim(),
        "error: version.yaml:1:10: unsupported policy version \"v9\", expected v1"
    );
    // An invalid policy is also refused by `test`.
    sealgate(dir.path(), &["policy", "test", "version.yaml", "--server", "fs"]).code_is(1);
}

#[test]
fn a_missing_file_is_another_error() {
    let dir = dir_with(&[]);
    let run = sealgate(dir.path(), &["policy", "check", "missing.yaml"]).code_is(2);
    assert!(
        run.stderr().contains("cannot read policy missing.yaml"),
        "{}",
        run.stderr()
    );
}

#[test]
fn test_evaluates_described_calls() {
    let dir = dir_with(&[("policy.yaml", EXAMPLE)]);
    let test = |args: &[&str]| {
        let mut all = vec!["policy", "test", "policy.yaml", "-o", "json"];
        all.extend_from_slice(args);
        sealgate(dir.path(), &all).code_is(0).json()
    };

    let v = test(&[
        "--server",
        "fs",
        "--tool",
        "write_file",
        "--env",
        "prod",
        "--action",
        "write",
    ]);
    assert_eq!(v["verdict"], "REQUIRE_APPROVAL");
    assert_eq!(v["rule"], "approve-prod-writes");
    assert_eq!(v["reason"], "rule \"approve-prod-writes\" matched");
    assert_eq!(
        v["approval"],
        serde_json::json!({ "timeout_sec": 600, "approvers": { "teams": ["security"], "principals": [] } })
    );
    assert_eq!(v["constraints"], serde_json::Value::Null);
    assert_eq!(v["output"], serde_json::json!({ "secrets": "redact", "pii": "redact" }));
    assert_eq!(v["policy_hash"], hash(EXAMPLE));
    assert_eq!(v["call"]["method"], "tools/call");
    assert_eq!(v["call"]["target"], "write_file");

    let v = test(&["--server", "fs", "--tool", "read_file", "--action", "read"]);
    assert_eq!(v["verdict"], "ALLOW");
    assert_eq!(v["rule"], "allow-read-approved");
    assert_eq!(v["approval"], serde_json::Value::Null);

    let v = test(&[
        "--server",
        "fs",
        "--tool",
        "write_file",
        "--env",
        "staging",
        "--action",
        "write",
    ]);
    assert_eq!(v["verdict"], "ALLOW_WITH_CONSTRAINTS");
    assert_eq!(
        v["constraints"],
        serde_json::json!({
            "max_runtime_sec": 30, "max_retries": null, "max_result_bytes": 1048576, "on_oversize": "truncate",
            "network_allowlist": null
        })
    );

    // Destructive outside prod, and a call whose action is unknown: no rule.
    for args in [
        &[
            "--server",
            "fs",
            "--tool",
            "rm",
            "--env",
            "dev",
            "--action",
            "destructive",
        ][..],
        &["--server", "fs", "--method", "prompts/get", "--tool", "summary"][..],
    ] {
        let v = test(args);
        assert_eq!(v["verdict"], "DENY");
        assert_eq!(v["rule"], serde_json::Value::Null);
        assert_eq!(v["reason"], "no rule matched: default DENY");
    }
}

#[test]
fn test_prints_text_by_default() {
    let dir = dir_with(&[("policy.yaml", EXAMPLE)]);
    let args = [
        "policy",
        "test",
        "policy.yaml",
        "--server",
        "fs",
        "--principal",
        "alice",
        "--team",
        "dev",
        "--env",
        "prod",
        "--action",
        "destructive",
    ];
    let run = sealgate(dir.path(), &args).code_is(0);
    assert_eq!(
        run.stdout(),
        format!(
            "verdict REQUIRE_APPROVAL\nrule approve-prod-writes\nreason rule \"approve-prod-writes\" matched\n\
             approval timeout_sec=600 teams=security\noutput secrets=redact pii=redact\npolicy_hash {}\n",
            hash(EXAMPLE)
        )
    );
    // A bad --action is a usage error.
    let run = sealgate(
        dir.path(),
        &["policy", "test", "policy.yaml", "--server", "fs", "--action", "delete"],
    );
    assert_eq!(run.code(), 2, "{}", run.stderr());
}
