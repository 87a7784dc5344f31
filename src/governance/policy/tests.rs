use proptest::prelude::*;

use super::*;

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

fn parse(text: &str) -> Policy {
    match Policy::parse(text, "<policy>") {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

fn err(text: &str) -> PolicyError {
    match Policy::parse(text, "<policy>") {
        Ok(p) => panic!("accepted: {p:?}\n{text}"),
        Err(e) => e,
    }
}

/// The error is at `line:column`, in `rule` when given, and says `needle`.
#[track_caller]
fn assert_err(text: &str, line: u64, column: u64, rule: Option<&str>, needle: &str) {
    let e = err(text);
    assert_eq!((e.line, e.column), (line, column), "position of: {e}");
    assert_eq!(e.rule.as_deref(), rule, "rule of: {e}");
    assert!(e.message.contains(needle), "{e:?} does not say {needle:?}");
    let shown = e.to_string();
    assert!(shown.starts_with(&format!("<policy>:{line}:{column}:")), "{shown}");
    if let Some(rule) = rule {
        assert!(shown.contains(&format!("rule {rule:?}: ")), "{shown}");
    }
    assert!(!shown.ends_with('.'), "{shown}");
    // Lowercase, unless the first word is all capitals (YAML, ALLOW_WITH_CONSTRAINTS).
    let first_word = e.message.split([' ', ':', ',']).next().unwrap_or_default();
    assert!(
        !first_word.chars().any(char::is_lowercase) || !e.message.starts_with(char::is_uppercase),
        "{shown}"
    );
}

struct Call {
    server: &'static str,
    method: &'static str,
    target: Option<&'static str>,
    principal: &'static str,
    teams: Vec<String>,
    env: Vec<String>,
    risk: Vec<String>,
    action: Option<Action>,
}

impl Call {
    fn new() -> Call {
        Call {
            server: "fs",
            method: "tools/call",
            target: Some("read_file"),
            principal: "alice",
            teams: vec![],
            env: vec![],
            risk: vec![],
            action: None,
        }
    }
    fn facts(&self) -> Facts<'_> {
        Facts {
            server: self.server,
            method: self.method,
            target: self.target,
            principal: self.principal,
            teams: &self.teams,
            env: &self.env,
            risk: &self.risk,
            action: self.action,
        }
    }
    fn server(mut self, s: &'static str) -> Call {
        self.server = s;
        self
    }
    fn method(mut self, m: &'static str) -> Call {
        self.method = m;
        self
    }
    fn target(mut self, t: Option<&'static str>) -> Call {
        self.target = t;
        self
    }
    fn principal(mut self, p: &'static str) -> Call {
        self.principal = p;
        self
    }
    fn teams(mut self, t: &[&str]) -> Call {
        self.teams = t.iter().map(|s| s.to_string()).collect();
        self
    }
    fn env(mut self, e: &[&str]) -> Call {
        self.env = e.iter().map(|s| s.to_string()).collect();
        self
    }
    fn risk(mut self, r: &[&str]) -> Call {
        self.risk = r.iter().map(|s| s.to_string()).collect();
        self
    }
    fn action(mut self, a: Option<Action>) -> Call {
        self.action = a;
        self
    }
}

/// Evaluates with the index and checks the linear scan agrees.
fn eval(p: &Policy, call: &Call) -> Evaluation {
    let e = p.evaluate(&call.facts());
    assert_eq!(e, p.evaluate_linear(&call.facts()));
    e
}

fn rule_of(p: &Policy, call: &Call) -> Option<String> {
    eval(p, call).rule
}

/// A policy with one ALLOW rule matching `conditions`.
fn one_rule(conditions: &str) -> Policy {
    parse(&format!(
        "version: v1\nrules:\n  - id: r\n    match: {conditions}\n    decision: ALLOW\n"
    ))
}

#[test]
fn the_example_parses_and_decides() {
    let p = parse(EXAMPLE);
    assert_eq!(p.rules().len(), 3);
    assert_eq!(p.text(), EXAMPLE);
    assert_eq!(p.origin(), "<policy>");
    assert_eq!(
        p.hash(),
        format!("blake3:{}", blake3::hash(EXAMPLE.as_bytes()).to_hex())
    );
    assert_eq!(p.rules()[1].id(), "approve-prod-writes");
    assert_eq!(p.rules()[1].verdict(), Verdict::RequireApproval);
    assert_eq!(p.rules()[1].line(), 6);

    let write = Call::new().action(Some(Action::Write));
    let e = eval(&p, &write.env(&["prod"]));
    assert_eq!(e.verdict, Verdict::RequireApproval);
    assert_eq!(e.rule.as_deref(), Some("approve-prod-writes"));
    assert_eq!(e.reason, "rule \"approve-prod-writes\" matched");
    assert_eq!(
        e.approval,
        Some(Approval {
            timeout_sec: 600,
            approvers: Approvers {
                teams: vec!["security".into()],
                principals: vec![]
            }
        })
    );
    assert_eq!(e.constraints, None);

    let e = eval(&p, &Call::new().action(Some(Action::Write)).env(&["dev"]));
    assert_eq!(e.verdict, Verdict::AllowWithConstraints);
    assert_eq!(
        e.constraints,
        Some(Constraints {
            max_runtime_sec: Some(30),
            max_retries: None,
            max_result_bytes: Some(1_048_576),
            on_oversize: OnOversize::Truncate,
            network_allowlist: None,
        })
    );
    assert_eq!(e.approval, None);

    let e = eval(&p, &Call::new().action(Some(Action::Read)));
    assert_eq!(
        (e.verdict, e.rule.as_deref()),
        (Verdict::Allow, Some("allow-read-approved"))
    );

    // Destructive outside prod, and an unknown action: nothing matches.
    for call in [
        Call::new().action(Some(Action::Destructive)).env(&["dev"]),
        Call::new().action(None).env(&["prod"]),
    ] {
        let e = eval(&p, &call);
        assert_eq!(e.verdict, Verdict::Deny);
        assert_eq!(e.rule, None);
        assert_eq!(e.reason, "no rule matched: default DENY");
        assert_eq!(e.output, OutputPolicy::default());
    }
}

#[test]
fn the_hash_is_of_the_exact_text() {
    let a = parse("version: v1\nrules: []\n");
    let b = parse("version: v1\nrules: []\n\n");
    let c = parse("version:   v1\nrules: []\n");
    assert_ne!(a.hash(), b.hash());
    assert_ne!(a.hash(), c.hash());
    assert!(a.hash().starts_with("blake3:"));
    assert_eq!(a.hash().len(), "blake3:".len() + 64);
    assert_eq!(a.hash(), parse("version: v1\nrules: []\n").hash());
}

#[test]
fn defaults() {
    // No rules: everything is denied, output safety redacts.
    let p = parse("version: v1\nrules: []\n");
    assert_eq!(p.output(), OutputPolicy::default());
    assert_eq!(
        OutputPolicy::default(),
        OutputPolicy {
            secrets: OutputAction::Redact,
            pii: OutputAction::Redact
        }
    );
    let e = eval(&p, &Call::new());
    assert_eq!(
        (e.verdict, e.rule, e.reason.as_str()),
        (Verdict::Deny, None, NO_MATCH_REASON)
    );

    // Absent match and empty match match everything.
    for m in ["", "    match: {}\n"] {
        let p = parse(&format!("version: v1\nrules:\n  - id: all\n{m}    decision: ALLOW\n"));
        for call in [
            Call::new(),
            Call::new().method("roots/list").target(None),
            Call::new().server("x").principal("bob"),
        ] {
            assert_eq!(rule_of(&p, &call).as_deref(), Some("all"));
        }
    }

    // Policy output, a rule's partial override, the rule reason.
    let p = parse(
        "version: v1
output: { secrets: quarantine }
rules:
  - id: a
    match: { server: a }
    decision: ALLOW
    output: { pii: allow }
    reason: \"  reads are fine  \"
  - id: c
    match: { server: c }
    decision: ALLOW_WITH_CONSTRAINTS
    constraints: { max_result_bytes: 10, on_oversize: refuse }
  - id: b
    decision: ALLOW
",
    );
    assert_eq!(
        p.output(),
        OutputPolicy {
            secrets: OutputAction::Quarantine,
            pii: OutputAction::Redact
        }
    );
    let e = eval(&p, &Call::new().server("a"));
    assert_eq!(
        e.output,
        OutputPolicy {
            secrets: OutputAction::Quarantine,
            pii: OutputAction::Allow
        }
    );
    assert_eq!(e.reason, "rule \"a\" matched: reads are fine");
    let e = eval(&p, &Call::new().server("b"));
    assert_eq!(e.output, p.output());
    let e = eval(&p, &Call::new().server("c"));
    assert_eq!(e.constraints.map(|c| c.on_oversize), Some(OnOversize::Refuse));
}

#[test]
fn server_and_tool_are_globs() {
    let p = one_rule("{ server: [fs-*, git], tool: \"*_file\" }");
    assert!(rule_of(&p, &Call::new().server("fs-prod").target(Some("read_file"))).is_some());
    assert!(rule_of(&p, &Call::new().server("git").target(Some("write_file"))).is_some());
    assert!(rule_of(&p, &Call::new().server("gitlab").target(Some("read_file"))).is_none());
    assert!(rule_of(&p, &Call::new().server("fs-prod").target(Some("read_files"))).is_none());
    // A tool condition never matches a request without a target.
    assert!(rule_of(&p, &Call::new().server("git").target(None)).is_none());
    // Prompt names and resource URIs are targets too.
    let p = one_rule("{ method: resources/read, tool: \"file:///home/*\" }");
    let read = Call::new().method("resources/read");
    assert!(rule_of(&p, &read.target(Some("file:///home/ann/a.txt"))).is_some());
    let read = Call::new().method("resources/read");
    assert!(rule_of(&p, &read.target(Some("file:///etc/passwd"))).is_none());
    let p = one_rule("{ tool: \"read_?\" }");
    assert!(rule_of(&p, &Call::new().target(Some("read_x"))).is_some());
    assert!(rule_of(&p, &Call::new().target(Some("read_xy"))).is_none());
    // Case-sensitive.
    let p = one_rule("{ server: FS }");
    assert!(rule_of(&p, &Call::new().server("fs")).is_none());
    assert!(rule_of(&p, &Call::new().server("FS")).is_some());
}

#[test]
fn method_principal_and_action_are_exact() {
    let p = one_rule("{ method: [prompts/get, sampling/createMessage] }");
    assert!(rule_of(&p, &Call::new().method("prompts/get")).is_some());
    assert!(rule_of(&p, &Call::new().method("sampling/createMessage").target(None)).is_some());
    assert!(rule_of(&p, &Call::new().method("tools/call")).is_none());

    let p = one_rule("{ principal: [alice, \"svc:ci\"] }");
    assert!(rule_of(&p, &Call::new().principal("alice")).is_some());
    assert!(rule_of(&p, &Call::new().principal("svc:ci")).is_some());
    assert!(rule_of(&p, &Call::new().principal("alice2")).is_none());
    assert!(rule_of(&p, &Call::new().principal("Alice")).is_none());

    let p = one_rule("{ action: [read, destructive] }");
    assert!(rule_of(&p, &Call::new().action(Some(Action::Read))).is_some());
    assert!(rule_of(&p, &Call::new().action(Some(Action::Destructive))).is_some());
    assert!(rule_of(&p, &Call::new().action(Some(Action::Write))).is_none());
    assert!(
        rule_of(&p, &Call::new().action(None)).is_none(),
        "unknown action never matches"
    );
}

#[test]
fn team_env_and_risk_match_any_of_the_callers_or_servers_labels() {
    let p = one_rule("{ team: [sre, security] }");
    assert!(rule_of(&p, &Call::new().teams(&["dev", "security"])).is_some());
    assert!(rule_of(&p, &Call::new().teams(&["dev"])).is_none());
    assert!(rule_of(&p, &Call::new().teams(&[])).is_none());

    let p = one_rule("{ env: prod }");
    assert!(rule_of(&p, &Call::new().env(&["eu", "prod"])).is_some());
    assert!(rule_of(&p, &Call::new().env(&["staging"])).is_none());
    assert!(rule_of(&p, &Call::new()).is_none());

    let p = one_rule("{ risk: [pii, payments] }");
    assert!(rule_of(&p, &Call::new().risk(&["payments"])).is_some());
    assert!(rule_of(&p, &Call::new().risk(&["internet"])).is_none());
}

#[test]
fn all_given_conditions_must_hold() {
    let p = one_rule(
        "{ server: fs, tool: write_file, method: tools/call, principal: alice, team: dev, env: prod, risk: pii, action: write }",
    );
    let full = || {
        Call::new()
            .server("fs")
            .target(Some("write_file"))
            .principal("alice")
            .teams(&["dev"])
            .env(&["prod"])
            .risk(&["pii"])
            .action(Some(Action::Write))
    };
    assert!(rule_of(&p, &full()).is_some());
    for call in [
        full().server("git"),
        full().target(Some("read_file")),
        full().method("prompts/get"),
        full().principal("bob"),
        full().teams(&["ops"]),
        full().env(&["dev"]),
        full().risk(&[]),
        full().action(Some(Action::Read)),
    ] {
        assert!(rule_of(&p, &call).is_none());
    }
}

#[test]
fn the_first_match_wins() {
    let p = parse(
        "version: v1
rules:
  - id: deny-shadow
    match: { server: shadow }
    decision: DENY
    reason: not approved
  - id: wild
    match: { server: \"*\", action: read }
    decision: ALLOW
  - id: exact-after-wild
    match: { server: fs, action: read }
    decision: DENY
  - id: fs-anything
    match: { server: fs }
    decision: REQUIRE_APPROVAL
    approval: { timeout_sec: 60, approvers: { principal: [root, admin] } }
",
    );
    let e = eval(&p, &Call::new().server("shadow").action(Some(Action::Read)));
    assert_eq!(
        (e.verdict, e.reason.as_str()),
        (Verdict::Deny, "rule \"deny-shadow\" matched: not approved")
    );
    // The wildcard rule comes first, so the exact rule after it never decides a read.
    let e = eval(&p, &Call::new().server("fs").action(Some(Action::Read)));
    assert_eq!(e.rule.as_deref(), Some("wild"));
    let e = eval(&p, &Call::new().server("fs").action(Some(Action::Write)));
    assert_eq!(e.rule.as_deref(), Some("fs-anything"));
    assert_eq!(
        e.approval.map(|a| a.approvers.principals),
        Some(vec!["root".to_string(), "admin".to_string()])
    );
    assert_eq!(
        rule_of(&p, &Call::new().server("git").action(Some(Action::Write))),
        None
    );
}

#[test]
fn optional_keys_and_flow_or_block_style() {
    let p = parse(
        "version: v1
rules:
  - id: my.rule_1
    description: |
      several lines
      of description
    match:
      server:
        - a
        - b
      action: read
    decision: ALLOW
",
    );
    assert_eq!(p.rules()[0].description(), Some("several lines\nof description\n"));
    assert!(rule_of(&p, &Call::new().server("b").action(Some(Action::Read))).is_some());
}

#[test]
fn yaml_errors_have_line_and_column() {
    assert_err("version: v1\nrules: [\n", 2, 8, None, "");
    // Broken YAML: no rule can be named.
    assert_err(
        "version: v1\nrules:\n  - id: a\n    match: { server: [a, b }\n    decision: ALLOW\n",
        4,
        22,
        None,
        "mismatched bracket",
    );
    assert_err("", 1, 1, None, "empty");
    assert_err("version: v1\nrules: []\n---\nversion: v1\n", 4, 1, None, "document");
    assert_err("- a\n", 1, 1, None, "");
    // A rule that is not a mapping has no id, even if it is a string.
    assert_err("version: v1\nrules:\n  - allow-all\n", 3, 5, None, "expected a mapping");
}

#[test]
fn unknown_keys_are_rejected_at_every_level() {
    assert_err(
        "version: v1\nrules: []\nextra: 1\n",
        3,
        1,
        None,
        "unknown field `extra`",
    );
    let rule = |body: &str| format!("version: v1\nrules:\n  - id: first\n    decision: ALLOW\n  - id: r\n{body}");
    assert_err(
        &rule("    decision: ALLOW\n    when: x\n"),
        7,
        5,
        Some("r"),
        "unknown field `when`",
    );
    assert_err(
        &rule("    decision: ALLOW\n    match: { servers: x }\n"),
        7,
        14,
        Some("r"),
        "unknown field `servers`",
    );
    assert_err(
        &rule("    decision: REQUIRE_APPROVAL\n    approval: { timeout_sec: 1, approvers: { team: a }, quorum: 2 }\n"),
        7,
        57,
        Some("r"),
        "unknown field `quorum`",
    );
    assert_err(
        &rule("    decision: REQUIRE_APPROVAL\n    approval: { timeout_sec: 1, approvers: { teams: a } }\n"),
        7,
        46,
        Some("r"),
        "unknown field `teams`",
    );
    assert_err(
        &rule("    decision: ALLOW_WITH_CONSTRAINTS\n    constraints: { max_runtime: 1 }\n"),
        7,
        20,
        Some("r"),
        "unknown field `max_runtime`",
    );
    assert_err(
        &rule("    decision: ALLOW\n    output: { logs: allow }\n"),
        7,
        15,
        Some("r"),
        "unknown field `logs`",
    );
    assert_err(
        "version: v1\noutput: { secret: allow }\nrules: []\n",
        2,
        11,
        None,
        "unknown field `secret`",
    );
    // After the rules, a top-level key is not in the last rule.
    assert_err(
        &rule("    decision: ALLOW\nrule: x\n"),
        7,
        1,
        None,
        "unknown field `rule`",
    );
}

#[test]
fn missing_keys_and_wrong_types() {
    assert_err("rules: []\n", 1, 1, None, "missing field `version`");
    assert_err("version: v1\n", 1, 1, None, "missing field `rules`");
    assert_err(
        "version: v1\nrules:\n  - decision: ALLOW\n",
        3,
        5,
        None,
        "missing field `id`",
    );
    assert_err(
        "version: v1\nrules:\n  - id: a\n",
        3,
        5,
        Some("a"),
        "missing field `decision`",
    );
    assert_err("version: v1\nrules: { id: a }\n", 2, 8, None, "");
    assert_err(
        "version: v1\nrules:\n  - id: a\n    decision: ALLOW\n    match: [server]\n",
        5,
        12,
        Some("a"),
        "",
    );
    assert_err(
        "version: v1\nrules:\n  - id: a\n    decision: ALLOW\n    match: { server: { name: a } }\n",
        5,
        22,
        Some("a"),
        "a string or a list of strings",
    );
    assert_err(
        "version: v1\nrules:\n  - id: a\n    decision: ALLOW\n    match: { principal: 1234 }\n",
        5,
        25,
        Some("a"),
        "`principal` is a number, expected a string or a list of strings (quote it)",
    );
    assert_err(
        "version: v1\nrules:\n  - id: a\n    decision: ALLOW\n    match: { env: [prod, true] }\n",
        5,
        26,
        Some("a"),
        "`env` has a boolean in its list, expected strings (quote it)",
    );
    assert_err(
        "version: v1\nrules:\n  - id: a\n    decision: REQUIRE_APPROVAL\n    approval: { timeout_sec: soon, approvers: { team: a } }\n",
        5,
        30,
        Some("a"),
        "a whole number",
    );
    // A key given without a value is not an absent key.
    assert_err(
        "version: v1\nrules:\n  - id: a\n    decision: ALLOW\n    match:\n",
        5,
        10,
        Some("a"),
        "expected a mapping",
    );
    assert_err(
        "version: v1\nrules:\n  - id: a\n    decision: ALLOW\n    match: { server: }\n",
        5,
        20,
        Some("a"),
        "`server` has no value",
    );
    assert_err(
        "version: v1\nrules:\n  - id: a\n    decision: ALLOW\n    reason: ~\n",
        5,
        13,
        Some("a"),
        "null",
    );
    // Duplicate keys.
    assert_err(
        "version: v1\nrules:\n  - id: a\n    decision: ALLOW\n    decision: DENY\n",
        5,
        5,
        Some("a"),
        "duplicate key `decision`",
    );
}

#[test]
fn bad_values() {
    assert_err(
        "version: v2\nrules: []\n",
        1,
        10,
        None,
        "unsupported policy version \"v2\", expected v1",
    );
    assert_err(
        "version: 1\nrules: []\n",
        1,
        10,
        None,
        "unsupported policy version \"1\"",
    );
    let rule = |body: &str| format!("version: v1\nrules:\n  - id: r\n{body}");
    assert_err(
        &rule("    decision: allow\n"),
        4,
        15,
        Some("r"),
        "unknown decision \"allow\", expected one of ALLOW, DENY",
    );
    assert_err(
        &rule("    decision: ALLOW\n    match: { method: [tools/call, tools/list] }\n"),
        5,
        35,
        Some("r"),
        "unknown method \"tools/list\"",
    );
    assert_err(
        &rule("    decision: ALLOW\n    match: { action: delete }\n"),
        5,
        22,
        Some("r"),
        "unknown action \"delete\"",
    );
    assert_err(
        &rule("    decision: ALLOW\n    match: { env: [] }\n"),
        5,
        19,
        Some("r"),
        "empty list",
    );
    assert_err(
        &rule("    decision: ALLOW\n    match: { tool: [a, \"\"] }\n"),
        5,
        24,
        Some("r"),
        "empty string",
    );
    assert_err(
        &rule("    decision: ALLOW\n    output: { pii: hide }\n"),
        5,
        20,
        Some("r"),
        "unknown `output.pii` action \"hide\"",
    );
    assert_err(
        "version: v1\noutput: { secrets: drop }\nrules: []\n",
        2,
        20,
        None,
        "unknown `output.secrets` action",
    );
    assert_err(
        &rule("    decision: REQUIRE_APPROVAL\n    approval: { timeout_sec: 0, approvers: { team: a } }\n"),
        5,
        30,
        Some("r"),
        "`timeout_sec` must be between 1 and",
    );
    assert_err(
        &rule("    decision: REQUIRE_APPROVAL\n    approval: { timeout_sec: -5, approvers: { team: a } }\n"),
        5,
        30,
        Some("r"),
        "got -5",
    );
    assert_err(
        &rule("    decision: REQUIRE_APPROVAL\n    approval: { timeout_sec: 5, approvers: {} }\n"),
        5,
        44,
        Some("r"),
        "at least one of `team` or `principal`",
    );
    assert_err(
        &rule("    decision: REQUIRE_APPROVAL\n    approval: { timeout_sec: 5, approvers: { principal: [] } }\n"),
        5,
        57,
        Some("r"),
        "empty list",
    );
    assert_err(
        &rule("    decision: ALLOW_WITH_CONSTRAINTS\n    constraints: { on_oversize: refuse }\n"),
        5,
        18,
        Some("r"),
        "at least one of `max_runtime_sec`, `max_retries`, `max_result_bytes` or `network_allowlist`",
    );
    assert_err(
        &rule("    decision: ALLOW_WITH_CONSTRAINTS\n    constraints: { max_retries: 2, on_oversize: refuse }\n"),
        5,
        49,
        Some("r"),
        "`on_oversize` needs `max_result_bytes`",
    );
    assert_err(
        &rule("    decision: ALLOW_WITH_CONSTRAINTS\n    constraints: { max_result_bytes: 9, on_oversize: cut }\n"),
        5,
        54,
        Some("r"),
        "unknown `on_oversize` \"cut\"",
    );
    assert_err(
        &rule("    decision: ALLOW_WITH_CONSTRAINTS\n    constraints: { max_runtime_sec: 0 }\n"),
        5,
        37,
        Some("r"),
        "`max_runtime_sec` must be between 1",
    );
    assert_err(
        &rule("    decision: ALLOW_WITH_CONSTRAINTS\n    constraints: { max_retries: 5000000000 }\n"),
        5,
        33,
        Some("r"),
        "`max_retries` must be between 0 and 4294967295",
    );
    // Zero retries is a constraint.
    let p = parse(&rule(
        "    decision: ALLOW_WITH_CONSTRAINTS\n    constraints: { max_retries: 0 }\n",
    ));
    assert_eq!(eval(&p, &Call::new()).constraints.and_then(|c| c.max_retries), Some(0));
}

#[test]
fn network_allowlist_entries_are_checked_where_written() {
    let rule = |list: &str| {
        format!(
            "version: v1\nrules:\n  - id: ok\n    decision: ALLOW\n  - id: fetch\n    decision: ALLOW_WITH_CONSTRAINTS\n    constraints:\n      network_allowlist:\n{list}"
        )
    };
    // Each bad entry is reported at its own line and column, naming it and
    // what is wrong; the policy is rejected whole.
    let cases = [
        ("        - \"\"\n", 9, 11, "`network_allowlist` has an empty string"),
        (
            "        - api.github.com\n        - https://evil.example/x\n",
            10,
            11,
            "`network_allowlist` entry \"https://evil.example/x\" is a URL",
        ),
        ("        - a.example/path\n", 9, 11, "is not a CIDR range"),
        ("        - \"*\"\n", 9, 11, "entry \"*\" is `*` alone"),
        ("        - \"a.*.example\"\n", 9, 11, "only `*.name` is a wildcard"),
        ("        - 10.0.0.1/8\n", 9, 11, "the range is 10.0.0.0/8"),
        (
            "        - 10.0.0.0/40\n",
            9,
            11,
            "prefix length \"40\", expected 0 to 32",
        ),
        ("        - a.example:99999\n", 9, 11, "has port 99999"),
        ("        - 2001:db8::1\n", 9, 11, "write IPv6 addresses in brackets"),
        ("        - 443\n", 9, 11, "`network_allowlist` has a number in its list"),
    ];
    for (list, line, column, needle) in cases {
        assert_err(&rule(list), line, column, Some("fetch"), needle);
    }
    let p = parse(&rule(
        "        - API.GitHub.com.\n        - \"*.example.com\"\n        - \"[2001:db8::1]:443\"\n",
    ));
    let e = eval(&p, &Call::new().server("x"));
    assert_eq!(e.rule.as_deref(), Some("ok"));
    let p = parse(
        "version: v1\nrules:\n  - id: fetch\n    decision: ALLOW_WITH_CONSTRAINTS\n    constraints: { network_allowlist: [API.GitHub.com., \"*.example.com\", \"[2001:db8::1]:443\", 10.0.0.0/8] }\n",
    );
    let list = eval(&p, &Call::new())
        .constraints
        .and_then(|c| c.network_allowlist)
        .map(|l| l.entries());
    assert_eq!(
        list,
        Some(vec![
            "api.github.com".to_string(),
            "*.example.com".to_string(),
            "[2001:db8::1]:443".to_string(),
            "10.0.0.0/8".to_string()
        ])
    );
    // An empty list allows no host; it is a constraint of its own.
    let p = parse(
        "version: v1\nrules:\n  - id: r\n    decision: ALLOW_WITH_CONSTRAINTS\n    constraints: { network_allowlist: [] }\n",
    );
    assert_eq!(
        eval(&p, &Call::new())
            .constraints
            .and_then(|c| c.network_allowlist)
            .map(|l| l.entries()),
        Some(vec![])
    );
}

#[test]
fn rule_ids() {
    assert_err(
        "version: v1\nrules:\n  - id: Allow\n    decision: ALLOW\n",
        3,
        9,
        Some("Allow"),
        "'A'",
    );
    assert_err(
        "version: v1\nrules:\n  - id: a b\n    decision: ALLOW\n",
        3,
        9,
        Some("a b"),
        "' '",
    );
    assert_err(
        "version: v1\nrules:\n  - id: \"\"\n    decision: ALLOW\n",
        3,
        9,
        Some(""),
        "empty",
    );
    let long = "a".repeat(129);
    assert_err(
        &format!("version: v1\nrules:\n  - id: {long}\n    decision: ALLOW\n"),
        3,
        9,
        Some(long.as_str()),
        "longer than 128",
    );
    assert_err(
        "version: v1\nrules:\n  - id: a\n    decision: ALLOW\n  - id: b\n    decision: DENY\n  - id: a\n    decision: DENY\n",
        7,
        9,
        Some("a"),
        "duplicate rule id (first used at line 3, column 9)",
    );
    parse("version: v1\nrules:\n  - id: a-b_c.d-0\n    decision: ALLOW\n");
}

#[test]
fn keys_must_belong_to_the_decision() {
    let rule = |body: &str| format!("version: v1\nrules:\n  - id: r\n{body}");
    assert_err(
        &rule("    decision: REQUIRE_APPROVAL\n"),
        4,
        15,
        Some("r"),
        "REQUIRE_APPROVAL needs `approval`",
    );
    assert_err(
        &rule("    decision: ALLOW_WITH_CONSTRAINTS\n"),
        4,
        15,
        Some("r"),
        "ALLOW_WITH_CONSTRAINTS needs `constraints`",
    );
    assert_err(
        &rule("    decision: ALLOW\n    approval: { timeout_sec: 5, approvers: { team: a } }\n"),
        5,
        15,
        Some("r"),
        "`approval` is only for REQUIRE_APPROVAL, not ALLOW",
    );
    assert_err(
        &rule(
            "    decision: REQUIRE_APPROVAL\n    approval: { timeout_sec: 5, approvers: { team: a } }\n    constraints: { max_retries: 1 }\n",
        ),
        6,
        18,
        Some("r"),
        "`constraints` is only for ALLOW_WITH_CONSTRAINTS, not REQUIRE_APPROVAL",
    );
    assert_err(
        &rule("    decision: DENY\n    approval:\n      timeout_sec: 5\n      approvers: { team: a }\n"),
        6,
        7,
        Some("r"),
        "not DENY",
    );
    assert_err(
        &rule("    decision: DENY\n    output: { secrets: allow }\n"),
        5,
        13,
        Some("r"),
        "`output` does not apply to DENY",
    );
}

#[test]
fn origin_and_encoding() {
    let e = match Policy::parse("version: v2\nrules: []\n", "etc/policy.yaml") {
        Ok(_) => panic!("accepted"),
        Err(e) => e,
    };
    assert_eq!(
        e.to_string(),
        "etc/policy.yaml:1:10: unsupported policy version \"v2\", expected v1"
    );
    let e = match Policy::parse_bytes(b"version: v1\nrules: [\xff]\n", "p.yaml") {
        Ok(_) => panic!("accepted"),
        Err(e) => e,
    };
    assert_eq!(e.to_string(), "p.yaml:2:9: the policy is not valid UTF-8");
    assert!(Policy::parse_bytes(EXAMPLE.as_bytes(), "p.yaml").is_ok());
}

#[test]
fn anchors_are_allowed_and_merge_keys_are_not() {
    let p = parse(
        "version: v1
rules:
  - id: a
    match: { server: &servers [fs, git] }
    decision: ALLOW
  - id: b
    match: { server: *servers }
    decision: DENY
",
    );
    assert_eq!(rule_of(&p, &Call::new().server("git")).as_deref(), Some("a"));
    let e = err("version: v1
rules:
  - &base
    id: a
    decision: ALLOW
  - <<: *base
    id: b
");
    assert_eq!(e.line, 6, "{e}");
    assert!(e.message.contains("merge"), "{e}");
}

// ---------------------------------------------------------------------------
// The index gives what trying every rule in order gives.

const SERVERS: [&str; 6] = ["fs", "git", "db", "fs-prod", "fs-dev", "web"];
const SERVER_GLOBS: [&str; 4] = ["fs*", "*-prod", "?it", "*"];
const TOOLS: [&str; 5] = ["read_file", "write_file", "query", "drop_table", "fetch"];
const TOOL_GLOBS: [&str; 3] = ["*_file", "drop_*", "q*y"];
const PRINCIPALS: [&str; 3] = ["alice", "bob", "svc"];
const TEAMS: [&str; 3] = ["dev", "sre", "sec"];
const ENVS: [&str; 3] = ["prod", "staging", "dev"];
const RISKS: [&str; 2] = ["pii", "payments"];
const ACTIONS: [&str; 3] = ["read", "write", "destructive"];

fn pick<'a>(pool: &'a [&'a str], bits: u16) -> Vec<&'a str> {
    pool.iter()
        .enumerate()
        .filter(|(i, _)| *i < 16 && bits & (1 << i) != 0)
        .map(|(_, s)| *s)
        .collect()
}

/// A condition: absent (0), or one to three values from `pool`.
fn condition(key: &str, pool: &[&str], choice: (u8, u16)) -> Option<String> {
    let (present, bits) = choice;
    if present % 3 != 0 {
        return None;
    }
    let mut values = pick(pool, bits);
    if values.is_empty() {
        values.push(pool[usize::from(bits) % pool.len()]);
    }
    Some(format!(
        "{key}: [{}]",
        values.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(", ")
    ))
}

type RuleChoice = [(u8, u16); 8];

fn policy_text(rules: &[RuleChoice]) -> String {
    let servers: Vec<&str> = SERVERS.iter().chain(&SERVER_GLOBS).copied().collect();
    let tools: Vec<&str> = TOOLS.iter().chain(&TOOL_GLOBS).copied().collect();
    let methods = &METHODS[..3];
    let mut text = String::from(if rules.is_empty() {
        "version: v1\nrules: []\n"
    } else {
        "version: v1\nrules:\n"
    });
    for (i, c) in rules.iter().enumerate() {
        let conditions: Vec<String> = [
            condition("server", &servers, c[0]),
            condition("tool", &tools, c[1]),
            condition("method", methods, c[2]),
            condition("principal", &PRINCIPALS, c[3]),
            condition("team", &TEAMS, c[4]),
            condition("env", &ENVS, c[5]),
            condition("risk", &RISKS, c[6]),
            condition("action", &ACTIONS, c[7]),
        ]
        .into_iter()
        .flatten()
        .collect();
        text.push_str(&format!(
            "  - id: r{i}\n    match: {{ {} }}\n    decision: {}\n",
            conditions.join(", "),
            if i % 2 == 0 { "ALLOW" } else { "DENY" }
        ));
    }
    text
}

type CallChoice = (usize, Option<usize>, usize, usize, u16, u16, u16, Option<usize>);

fn call_strategy() -> impl Strategy<Value = CallChoice> {
    (
        0..SERVERS.len() + 1,
        proptest::option::of(0..TOOLS.len() + 1),
        0..METHODS.len(),
        0..PRINCIPALS.len(),
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
        proptest::option::of(0..3usize),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_index_finds_the_first_match_a_linear_scan_finds(
        rules in proptest::collection::vec(any::<RuleChoice>(), 0..150),
        calls in proptest::collection::vec(call_strategy(), 64),
    ) {
        let text = policy_text(&rules);
        let policy = Policy::parse(&text, "<policy>").map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(policy.rules().len(), rules.len());
        for (server, tool, method, principal, teams, env, risk, action) in calls {
            let teams: Vec<String> = pick(&TEAMS, teams).into_iter().map(String::from).collect();
            let env: Vec<String> = pick(&ENVS, env).into_iter().map(String::from).collect();
            let risk: Vec<String> = pick(&RISKS, risk).into_iter().map(String::from).collect();
            let facts = Facts {
                server: SERVERS.get(server).copied().unwrap_or("other"),
                method: METHODS[method],
                target: tool.map(|t| TOOLS.get(t).copied().unwrap_or("other_tool")),
                principal: PRINCIPALS[principal],
                teams: &teams,
                env: &env,
                risk: &risk,
                action: action.map(|a| Action::ALL[a]),
            };
            prop_assert_eq!(policy.evaluate(&facts), policy.evaluate_linear(&facts), "{:?}", facts);
        }
    }
}

// ---------------------------------------------------------------------------
// limits

const LIMITED: &str = "\
version: v1
rules:
  - id: all
    decision: ALLOW
limits:
  - id: per-user-minute
    by: principal
    rate: { calls: 60, per: 1m }
  - id: fetch-daily
    match: { server: web, tool: fetch }
    by: [tool, team]
    rate: { calls: 100, per: 1m }
    quota: { calls: 10000, per: 1d }
";

#[test]
fn limits_parse_with_their_windows_and_counters() {
    let p = parse(LIMITED);
    let limits = p.limits();
    assert_eq!(limits.len(), 2);
    assert_eq!(limits[0].id(), "per-user-minute");
    assert_eq!(limits[0].rate(), Some(Window { calls: 60, per_sec: 60 }));
    assert_eq!(limits[0].quota(), None);
    assert_eq!(
        limits[1].by(),
        &[KeyPart::Team, KeyPart::Tool],
        "sorted, whatever the order written"
    );
    assert_eq!(
        limits[1].quota(),
        Some(Window {
            calls: 10_000,
            per_sec: 86_400
        })
    );
    assert_eq!(limits[1].line(), 9);
    assert!(parse(EXAMPLE).limits().is_empty());
}

#[test]
fn a_limit_counts_the_calls_of_its_scope_under_one_key_per_team() {
    let p = parse(LIMITED);
    let (minute, daily) = (&p.limits()[0], &p.limits()[1]);
    let alice = Call::new().server("web").target(Some("fetch")).teams(&["eng", "ops"]);
    assert!(minute.applies(&alice.facts()) && daily.applies(&alice.facts()));
    assert_eq!(minute.keys(&alice.facts()), vec!["principal=\"alice\""]);
    assert_eq!(
        daily.keys(&alice.facts()),
        vec!["team=\"eng\" tool=\"fetch\"", "team=\"ops\" tool=\"fetch\""]
    );
    let teamless = Call::new().server("web").target(Some("fetch"));
    assert_eq!(daily.keys(&teamless.facts()), vec!["team=\"\" tool=\"fetch\""]);
    assert!(!daily.applies(&Call::new().server("fs").facts()), "outside its match");
    // A name with a quote cannot pose as another counter.
    let odd = Call::new().principal("a\" b=\"c");
    assert_eq!(minute.keys(&odd.facts()), vec![r#"principal="a\" b=\"c""#]);
}

#[test]
fn a_limit_team_condition_narrows_the_teams_it_counts_by() {
    let p = parse(
        "version: v1\nrules: []\nlimits:\n  - id: eng\n    match: { team: eng }\n    by: team\n    quota: { calls: 5, per: 1h }\n",
    );
    let both = Call::new().teams(&["ops", "eng"]);
    assert_eq!(p.limits()[0].keys(&both.facts()), vec!["team=\"eng\""]);
}

#[test]
fn bad_limits_are_rejected_with_their_position() {
    let head = "version: v1\nrules: []\nlimits:\n";
    let cases: &[(&str, u64, u64, &str)] = &[
        ("  - id: a\n    by: principal\n", 4, 5, "needs `rate`, `quota` or both"),
        (
            "  - id: a\n    rate: { calls: 0, per: 1m }\n",
            5,
            20,
            "between 1 and 100000",
        ),
        (
            "  - id: a\n    rate: { calls: 100001, per: 1m }\n",
            5,
            20,
            "between 1 and 100000",
        ),
        ("  - id: a\n    rate: { calls: 5, per: 1w }\n", 5, 28, "is not a period"),
        (
            "  - id: a\n    rate: { calls: 5, per: 2d }\n",
            5,
            28,
            "between 1s and 1d",
        ),
        (
            "  - id: a\n    quota: { calls: 5, per: 30s }\n",
            5,
            29,
            "between 1m and 366d",
        ),
        ("  - id: a\n    rate: { calls: 5, per: 60 }\n", 5, 28, "a number"),
        (
            "  - id: a\n    rate: { calls: 5, per: [1m, 1h] }\n",
            5,
            28,
            "expected one period",
        ),
        (
            "  - id: a\n    by: [principal, user]\n    rate: { calls: 5, per: 1m }\n",
            5,
            21,
            "unknown `by` \"user\"",
        ),
        (
            "  - id: a\n    by: [tool, tool]\n    rate: { calls: 5, per: 1m }\n",
            5,
            16,
            "names \"tool\" twice",
        ),
        (
            "  - id: a\n    rate: { calls: 100, per: 1m }\n    quota: { calls: 50, per: 1d }\n",
            6,
            12,
            "conflict",
        ),
        (
            "  - id: a\n    rate: { calls: 5, per: 1d }\n    quota: { calls: 50, per: 1h }\n",
            6,
            12,
            "conflict",
        ),
        (
            "  - id: a\n    rate: { calls: 5, per: 1m }\n  - id: a\n    rate: { calls: 5, per: 1m }\n",
            6,
            9,
            "duplicate limit id",
        ),
        ("  - id: A\n    rate: { calls: 5, per: 1m }\n", 4, 9, "limit id has 'A'"),
        (
            "  - id: a\n    match: { action: run }\n    rate: { calls: 5, per: 1m }\n",
            5,
            22,
            "unknown action",
        ),
        (
            "  - id: a\n    rate: { calls: 5, per: 1m, burst: 2 }\n",
            5,
            32,
            "unknown field `burst`",
        ),
    ];
    let mut wrong = Vec::new();
    for (limits, line, column, needle) in cases {
        let e = err(&format!("{head}{limits}"));
        let named = needle.starts_with("unknown field")
            || e.message.starts_with("limit \"a\": ")
            || e.message.starts_with("limit \"A\": ");
        if (e.line, e.column) != (*line, *column) || !e.message.contains(needle) || e.rule.is_some() || !named {
            wrong.push(format!("{limits:?}: want {line}:{column} {needle:?}, got {e}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
