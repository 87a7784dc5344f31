//! Table tests of [`decide`] and [`decide_access`]: one row per case, the
//! inputs in columns, then on the next line `=>` and the expected ruling
//! (`VERDICT gate [grant G] [action A]: reason`). `#` starts a comment.
//!
//! The world of every row: server `fs` holding tool `t`, caller `alice`
//! (team `ops`), at a fixed time. Columns of [`check`]:
//!
//! | column   | values |
//! | ---      | --- |
//! | registry | `-` (not registered), `registered`, `approved`, `quarantined`, `revoked` |
//! | pin      | `pinned`, `unpinned`, `drifted` (a `tools.drifted` after approval) |
//! | listing  | what this session listed of `t`: `ro` (`readOnlyHint: true`), `rw` (`destructiveHint: false`), `bare` (no hints), `changed` (another definition than the pinned one), `-` (not listed) |
//! | label    | the registry's action label for `t`: `-`, `read`, `write`, `destructive` |
//! | grant    | `alice` (on `t`), `team` (team `ops`, any tool), `other` (alice, tool `u`), `expired`, `staging` (alice, only on `staging` servers), `-` |
//! | env      | the server's environment label: `prod`, `staging`, `-` |
//! | policy   | `-` (none loaded) or `std` ([`POLICY`]) |
//! | request  | `call` (`tools/call t`), `read` (`resources/read file:///a`), `s2c` (`sampling/createMessage` from the server: no grant gate) |

use std::collections::BTreeMap;

use ledger::Timestamp;

use super::*;
use crate::governance::call::AuthMethod;
use crate::governance::grants::{Grant, Grantee};
use crate::governance::registry::{Drift, Server};
use crate::governance::{Principal, Status};

const POLICY: &str = "\
version: v1
rules:
  - id: allow-read
    match: { action: read }
    decision: ALLOW
  - id: approve-prod-writes
    match: { action: [write, destructive], env: prod }
    decision: REQUIRE_APPROVAL
    approval: { timeout_sec: 600, approvers: { team: security } }
  - id: constrain-staging-writes
    match: { action: write, env: staging }
    decision: ALLOW_WITH_CONSTRAINTS
    constraints: { max_runtime_sec: 30 }
  - id: resources
    match: { method: resources/read }
    decision: ALLOW
  - id: sampling
    match: { method: sampling/createMessage, env: prod }
    decision: ALLOW
";

/// The fixed time of every decision, and a grant that ended before it.
const NOW: Timestamp = Timestamp::from_nanos(1_800_000_000_000_000_000);

fn tool_def(listing: &str) -> serde_json::Value {
    let mut t = serde_json::json!({"name": "t", "description": "a tool", "inputSchema": {"type": "object"}});
    match listing {
        "ro" => t["annotations"] = serde_json::json!({"readOnlyHint": true}),
        "rw" => t["annotations"] = serde_json::json!({"destructiveHint": false}),
        "bare" => {}
        "changed" => t["description"] = "a tool that now does something else".into(),
        other => panic!("unknown listing {other:?}"),
    }
    t
}

fn grant(id: &str, grantee: Grantee, tool: &str, env: Option<&str>, expires_at: Option<u64>) -> Grant {
    Grant {
        id: id.into(),
        grantee,
        server: "fs".into(),
        tool: tool.into(),
        env: env.map(Into::into),
        expires_at,
        issued_by: Some("root".into()),
        issued_seq: 1,
        reason: None,
    }
}

/// The state, policy, listing and request a row describes.
struct World {
    state: GovState,
    policy: Option<Policy>,
    listing: Option<ToolFacts>,
    principal: Principal,
}

fn world(registry: &str, pin: &str, listing: &str, label: &str, g: &str, env: &str, policy: &str) -> World {
    let mut state = GovState::default();
    if registry != "-" {
        let status = match registry {
            "registered" => Status::Registered,
            "approved" => Status::Approved,
            "quarantined" => Status::Quarantined,
            "revoked" => Status::Revoked,
            other => panic!("unknown registry column {other:?}"),
        };
        // What was approved: the tool as first listed, read-only.
        let pinned = tool_facts(&tool_def("ro")).hash;
        let mut server = Server {
            name: "fs".into(),
            transport: events::Transport::Stdio,
            address: "node fs.js".into(),
            owner: None,
            env: if env == "-" { vec![] } else { vec![env.into()] },
            risk: vec![],
            actions: BTreeMap::new(),
            status,
            history: vec![],
            pins: BTreeMap::new(),
            drift: BTreeMap::new(),
        };
        if label != "-" {
            let label = match label {
                "read" => events::ActionLabel::Read,
                "write" => events::ActionLabel::Write,
                "destructive" => events::ActionLabel::Destructive,
                other => panic!("unknown label column {other:?}"),
            };
            server.actions.insert("t".into(), label);
        }
        match pin {
            "pinned" => {
                server.pins.insert("t".into(), pinned);
            }
            "unpinned" => {}
            "drifted" => {
                server.pins.insert("t".into(), pinned);
                server.drift.insert(
                    "t".into(),
                    Drift {
                        change: crate::governance::registry::DriftChange::Changed,
                        hash: Some("blake3:00".into()),
                        seq: 7,
                    },
                );
            }
            other => panic!("unknown pin column {other:?}"),
        }
        state.registry.servers.insert("fs".into(), server);
    }
    let alice = || Grantee::Principal("alice".into());
    let granted = match g {
        "alice" => Some(grant("g-alice", alice(), "t", None, None)),
        "team" => Some(grant("g-team", Grantee::Team("ops".into()), "*", None, None)),
        "other" => Some(grant("g-other", alice(), "u", None, None)),
        "expired" => Some(grant("g-old", alice(), "t", None, Some(NOW.as_nanos() - 1))),
        "staging" => Some(grant("g-staging", alice(), "*", Some("staging"), None)),
        "-" => None,
        other => panic!("unknown grant column {other:?}"),
    };
    if let Some(g) = granted {
        state.grants.grants.insert(g.id.clone(), g);
    }
    let policy = match policy {
        "std" => Some(Policy::parse(POLICY, "<policy>").unwrap_or_else(|e| panic!("{e}"))),
        "-" => None,
        other => panic!("unknown policy column {other:?}"),
    };
    World {
        state,
        policy,
        listing: (listing != "-").then(|| tool_facts(&tool_def(listing))),
        principal: Principal {
            name: "alice".into(),
            teams: vec!["ops".into()],
            method: AuthMethod::Token,
            roles: vec![],
        },
    }
}

fn render(r: &Ruling) -> String {
    let mut out = format!("{} {}", r.verdict, r.gate.as_str());
    if let Some(g) = &r.grant {
        out.push_str(&format!(" grant {g}"));
    }
    if let Some(a) = r.action {
        out.push_str(&format!(" action {a}"));
    }
    format!("{out}: {}", r.reason)
}

/// Rows of `table`: (line number, input, expected).
fn rows(table: &str) -> Vec<(usize, &str, &str)> {
    let mut rows = Vec::new();
    let mut input: Option<(usize, &str)> = None;
    for (n, line) in table.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match (line.strip_prefix("=>"), input.take()) {
            (Some(expected), Some((at, cols))) => rows.push((at, cols, expected.trim())),
            (None, None) => input = Some((n + 1, line)),
            _ => panic!(
                "table line {}: a row is one line of columns, then one `=> ruling` line",
                n + 1
            ),
        }
    }
    assert!(input.is_none(), "the table's last row has no `=> ruling` line");
    rows
}

/// Checks every row of a [`decide`] table (columns as described at the
/// top); reports every failing row, not just the first.
#[track_caller]
fn check(table: &str) {
    let mut failed = Vec::new();
    for (line, input, expected) in rows(table) {
        let cols: Vec<&str> = input.split_whitespace().collect();
        let [registry, pin, listing, label, g, env, policy, request] = cols[..] else {
            panic!("table line {line}: a row has 8 columns: {input:?}");
        };
        let w = world(registry, pin, listing, label, g, env, policy);
        let (method, target, s2c) = match request {
            "call" => ("tools/call", Some("t"), false),
            "read" => ("resources/read", Some("file:///a"), false),
            "s2c" => ("sampling/createMessage", None, true),
            other => panic!("unknown request column {other:?}"),
        };
        let call = CallRequest {
            server: "fs",
            principal: &w.principal,
            method,
            target,
            session: None,
        };
        // The relay passes what it knows of the tool for tool calls only.
        let tool = if request == "call" { w.listing.as_ref() } else { None };
        let ruling = decide(&w.state, w.policy.as_ref(), &call, tool, s2c, NOW);
        let got = render(&ruling);
        if got != expected {
            failed.push(format!(
                "line {line}: {input}\n  expected => {expected}\n       got => {got}"
            ));
        }
        // The policy's hash and evaluation are recorded iff it was asked.
        let asked = ruling.gate == Gate::Policy && w.policy.is_some();
        if ruling.evaluation.is_some() != asked || ruling.policy_hash.is_some() != asked {
            failed.push(format!(
                "line {line}: {input}\n  evaluation/policy hash recorded: {ruling:?}"
            ));
        }
    }
    assert!(failed.is_empty(), "\n{}", failed.join("\n"));
}

#[test]
fn registry_gate() {
    check(
        r#"
# registry  pin      listing label grant  env  policy request
-           pinned   ro      -     alice  prod std    call
  => DENY registry: server "fs" is not registered: shadow MCP server
registered  pinned   ro      -     alice  prod std    call
  => DENY registry: server "fs" is registered but not approved
quarantined pinned   ro      -     alice  prod std    call
  => DENY registry: server "fs" is quarantined
revoked     pinned   ro      -     alice  prod std    call
  => DENY registry: server "fs" is revoked
# It is asked before anything else, server requests included.
revoked     pinned   -       -     alice  prod std    s2c
  => DENY registry: server "fs" is revoked
-           pinned   -       -     alice  prod std    read
  => DENY registry: server "fs" is not registered: shadow MCP server
"#,
    );
}

#[test]
fn pin_gate() {
    check(
        r#"
# registry  pin      listing label grant  env  policy request
approved    unpinned ro      -     alice  prod std    call
  => DENY pin: tool "t" on "fs" was not approved (not pinned)
approved    drifted  ro      -     alice  prod std    call
  => DENY pin: tool "t" on "fs" is changed since its approval (drift at seq 7): it must be re-approved
approved    pinned   changed -     alice  prod std    call
  => DENY pin: tool "t" on "fs" changed since its approval: it must be re-approved
approved    pinned   -       read  alice  prod std    call
  => DENY pin: tool "t" on "fs" is not listed in this session: its definition cannot be checked against its pin
# Drift is recorded state: it refuses even when this session's listing
# matches the pin.
approved    drifted  ro      read  alice  prod std    call
  => DENY pin: tool "t" on "fs" is changed since its approval (drift at seq 7): it must be re-approved
# Only tool calls have pins.
approved    unpinned -       -     alice  prod std    read
  => DENY grant: no grant lets "alice" (teams ["ops"]) use "file:///a" on "fs"
approved    unpinned -       -     -      prod std    s2c
  => ALLOW policy: rule "sampling" matched
"#,
    );
}

#[test]
fn grant_gate() {
    check(
        r#"
# registry  pin      listing label grant   env     policy request
approved    pinned   ro      -     -       prod    std    call
  => DENY grant: no grant lets "alice" (teams ["ops"]) use "t" on "fs"
approved    pinned   ro      -     other   prod    std    call
  => DENY grant: no grant lets "alice" (teams ["ops"]) use "t" on "fs"
approved    pinned   ro      -     expired prod    std    call
  => DENY grant: no grant lets "alice" (teams ["ops"]) use "t" on "fs"
approved    pinned   ro      -     staging prod    std    call
  => DENY grant: no grant lets "alice" (teams ["ops"]) use "t" on "fs"
approved    pinned   ro      -     staging staging std    call
  => ALLOW policy grant g-staging action read: rule "allow-read" matched
approved    pinned   ro      -     team    prod    std    call
  => ALLOW policy grant g-team action read: rule "allow-read" matched
approved    pinned   ro      -     alice   prod    std    call
  => ALLOW policy grant g-alice action read: rule "allow-read" matched
# The server's own requests skip it (they are not the caller's).
approved    pinned   -       -     -       prod    std    s2c
  => ALLOW policy: rule "sampling" matched
approved    pinned   -       -     -       -       std    s2c
  => DENY policy: no rule matched: default DENY
"#,
    );
}

#[test]
fn action_labels() {
    check(
        r#"
# registry  pin      listing label       grant  env     policy request
# The registry's label wins over what the tool claims.
approved    pinned   ro      write       alice  prod    std    call
  => REQUIRE_APPROVAL policy grant g-alice action write: rule "approve-prod-writes" matched
approved    pinned   ro      destructive alice  staging std    call
  => DENY policy grant g-alice action destructive: no rule matched: default DENY
# Without a label, the tool's annotations (a tool listed as pinned:
# `listing_as_pinned` has the other hints).
approved    pinned   ro      -           alice  staging std    call
  => ALLOW policy grant g-alice action read: rule "allow-read" matched
# (A label the registry does not know cannot be folded: the registry's
# labels are a closed set, and a registration with another is unreadable.)
"#,
    );
}

#[test]
fn policy_verdicts() {
    check(
        r#"
# registry  pin      listing label grant  env     policy request
approved    pinned   ro      write alice  staging std    call
  => ALLOW_WITH_CONSTRAINTS policy grant g-alice action write: rule "constrain-staging-writes" matched
approved    pinned   ro      write alice  -       std    call
  => DENY policy grant g-alice action write: no rule matched: default DENY
approved    pinned   ro      read  alice  prod    -      call
  => DENY policy grant g-alice action read: no policy is loaded: default DENY
approved    unpinned -       -     team   prod    std    read
  => ALLOW policy grant g-team: rule "resources" matched
"#,
    );
}

/// The hints reach the policy for a tool pinned as it is listed now; one
/// that says nothing may be destructive.
#[test]
fn listing_as_pinned() {
    for (listing, expected) in [
        (
            "ro",
            r#"ALLOW policy grant g-alice action read: rule "allow-read" matched"#,
        ),
        (
            "rw",
            r#"REQUIRE_APPROVAL policy grant g-alice action write: rule "approve-prod-writes" matched"#,
        ),
        (
            "bare",
            r#"REQUIRE_APPROVAL policy grant g-alice action destructive: rule "approve-prod-writes" matched"#,
        ),
    ] {
        let mut w = world("approved", "pinned", listing, "-", "alice", "prod", "std");
        let live = tool_facts(&tool_def(listing));
        if let Some(server) = w.state.registry.servers.get_mut("fs") {
            server.pins.insert("t".into(), live.hash.clone());
        }
        let call = CallRequest {
            server: "fs",
            principal: &w.principal,
            method: "tools/call",
            target: Some("t"),
            session: None,
        };
        let ruling = decide(&w.state, w.policy.as_ref(), &call, Some(&live), false, NOW);
        assert_eq!(render(&ruling), expected, "listing {listing}");
    }
}

/// Checks every row of a [`decide_access`] table (`initialize` and gated
/// methods): registry, grant and env columns as in [`check`], then the
/// request's target (`-`: none, an `initialize`; else a
/// `completion/complete` naming it). The policy is never asked.
#[track_caller]
fn check_access(table: &str) {
    let mut failed = Vec::new();
    for (line, input, expected) in rows(table) {
        let cols: Vec<&str> = input.split_whitespace().collect();
        let [registry, g, env, target] = cols[..] else {
            panic!("table line {line}: an access row has 4 columns: {input:?}");
        };
        let w = world(registry, "pinned", "ro", "-", g, env, "std");
        let call = CallRequest {
            server: "fs",
            principal: &w.principal,
            method: if target == "-" {
                "initialize"
            } else {
                "completion/complete"
            },
            target: (target != "-").then_some(target),
            session: None,
        };
        let ruling = decide_access(&w.state, &call, NOW);
        let got = render(&ruling);
        if got != expected {
            failed.push(format!(
                "line {line}: {input}\n  expected => {expected}\n       got => {got}"
            ));
        }
        if ruling.evaluation.is_some() || ruling.policy_hash.is_some() {
            failed.push(format!("line {line}: {input}\n  the policy was asked: {ruling:?}"));
        }
    }
    assert!(failed.is_empty(), "\n{}", failed.join("\n"));
}

#[test]
fn access() {
    check_access(
        r#"
# registry  grant   env   target
-           alice   prod  -
  => DENY registry: server "fs" is not registered: shadow MCP server
quarantined alice   prod  -
  => DENY registry: server "fs" is quarantined
approved    -       prod  -
  => DENY grant: no grant lets "alice" (teams ["ops"]) use "fs"
approved    expired prod  -
  => DENY grant: no grant lets "alice" (teams ["ops"]) use "fs"
approved    staging prod  -
  => DENY grant: no grant lets "alice" (teams ["ops"]) use "fs"
# Opening a session needs a grant on the server, whatever its tool.
approved    other   prod  -
  => ALLOW grant grant g-other: grant g-other lets "alice" use "fs" (initialize)
approved    team    prod  -
  => ALLOW grant grant g-team: grant g-team lets "alice" use "fs" (initialize)
# A request that names its target needs a grant on that target.
approved    other   prod  t
  => DENY grant: no grant lets "alice" (teams ["ops"]) use "t" on "fs"
approved    alice   prod  t
  => ALLOW grant grant g-alice: grant g-alice lets "alice" use "fs" (completion/complete)
"#,
    );
}

/// A session's suspension is a gate of the decision itself, like the
/// others: a call decided in that session between the suspension's write
/// and the session's close is refused, and other sessions are not.
#[test]
fn a_suspended_session_is_refused_by_the_decision() {
    use crate::governance::suspensions::Suspension;
    let mut w = world("approved", "pinned", "ro", "-", "alice", "prod", "std");
    w.state.suspensions.items.insert(
        "s-1".into(),
        Suspension {
            id: "s-1".into(),
            target: events::SuspensionTarget::Session,
            name: "sess-a".into(),
            reason: "incident 7".into(),
            by: Some("admin".into()),
            seq: 9,
            since: "2026-12-07T00:00:00Z".into(),
        },
    );
    let live = tool_facts(&tool_def("ro"));
    for (session, method, target) in [
        (Some("sess-a"), "tools/call", Some("t")),
        (Some("sess-a"), "initialize", None),
        (Some("sess-b"), "tools/call", Some("t")),
        (None, "tools/call", Some("t")),
    ] {
        let call = CallRequest {
            server: "fs",
            principal: &w.principal,
            method,
            target,
            session,
        };
        let ruling = if method == "initialize" {
            decide_access(&w.state, &call, NOW)
        } else {
            decide(&w.state, w.policy.as_ref(), &call, Some(&live), false, NOW)
        };
        let refused = ruling.gate == Gate::Suspension;
        assert_eq!(
            refused,
            session == Some("sess-a"),
            "{session:?} {method}: {}",
            render(&ruling)
        );
        if refused {
            assert_eq!(ruling.verdict, Verdict::Deny);
            assert_eq!(ruling.code, ReasonCode::Suspended);
        }
    }
}
