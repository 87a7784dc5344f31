//! Table tests of [`decide`] and [`decide_access`]: one row per case, the
//! inputs in columns, the expected ruling as one line
//! (`VERDICT gate [grant G] [action A]: reason`).
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
            transport: "stdio".into(),
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
            server.actions.insert("t".into(), label.into());
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
                        change: "changed".into(),
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

/// One row of the table: the columns described at the top, separated by
/// whitespace, then `=>` and the expected ruling.
#[track_caller]
fn check(row: &str) {
    let (input, expected) = row.split_once("=>").unwrap_or_else(|| panic!("no `=>` in {row:?}"));
    let cols: Vec<&str> = input.split_whitespace().collect();
    let [registry, pin, listing, label, g, env, policy, request] = cols[..] else {
        panic!("a row has 8 columns: {row:?}");
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
    };
    // The relay passes what it knows of the tool for tool calls only.
    let tool = if request == "call" { w.listing.as_ref() } else { None };
    let ruling = decide(&w.state, w.policy.as_ref(), &call, tool, s2c, NOW);
    assert_eq!(render(&ruling), expected.trim(), "row: {row}");
    // The policy's hash and evaluation are recorded iff the policy was asked.
    let asked = ruling.gate == Gate::Policy && w.policy.is_some();
    assert_eq!(ruling.evaluation.is_some(), asked, "row: {row}");
    assert_eq!(ruling.policy_hash.is_some(), asked, "row: {row}");
}

#[test]
fn registry_gate() {
    // registry    pin      listing label grant  env  policy request
    check(
        r#"-           pinned   ro      -     alice  prod std    call => DENY registry: server "fs" is not registered: shadow MCP server"#,
    );
    check(
        r#"registered  pinned   ro      -     alice  prod std    call => DENY registry: server "fs" is registered but not approved"#,
    );
    check(r#"quarantined pinned   ro      -     alice  prod std    call => DENY registry: server "fs" is quarantined"#);
    check(r#"revoked     pinned   ro      -     alice  prod std    call => DENY registry: server "fs" is revoked"#);
    // The registry is asked before anything else, server requests included.
    check(r#"revoked     pinned   ro      -     alice  prod std    s2c  => DENY registry: server "fs" is revoked"#);
    check(
        r#"-           pinned   ro      -     alice  prod std    read => DENY registry: server "fs" is not registered: shadow MCP server"#,
    );
}

#[test]
fn pin_gate() {
    check(
        r#"approved    unpinned ro      -     alice  prod std    call => DENY pin: tool "t" on "fs" was not approved (not pinned)"#,
    );
    check(
        r#"approved    drifted  ro      -     alice  prod std    call => DENY pin: tool "t" on "fs" is changed since its approval (drift at seq 7): it must be re-approved"#,
    );
    check(
        r#"approved    pinned   changed -     alice  prod std    call => DENY pin: tool "t" on "fs" changed since its approval: it must be re-approved"#,
    );
    check(
        r#"approved    pinned   -       read  alice  prod std    call => DENY pin: tool "t" on "fs" is not listed in this session: its definition cannot be checked against its pin"#,
    );
    // Drift is recorded state: it refuses even when this session's listing
    // matches the pin.
    check(
        r#"approved    drifted  ro      read  alice  prod std    call => DENY pin: tool "t" on "fs" is changed since its approval (drift at seq 7): it must be re-approved"#,
    );
    // Only tool calls have pins.
    check(
        r#"approved    unpinned -       -     alice  prod std    read => DENY grant: no grant lets "alice" (teams ["ops"]) use "file:///a" on "fs""#,
    );
    check(r#"approved    unpinned -       -     -      prod std    s2c  => ALLOW policy: rule "sampling" matched"#);
}

#[test]
fn grant_gate() {
    check(
        r#"approved    pinned   ro      -     -      prod std    call => DENY grant: no grant lets "alice" (teams ["ops"]) use "t" on "fs""#,
    );
    check(
        r#"approved    pinned   ro      -     other  prod std    call => DENY grant: no grant lets "alice" (teams ["ops"]) use "t" on "fs""#,
    );
    check(
        r#"approved    pinned   ro      -     expired prod std   call => DENY grant: no grant lets "alice" (teams ["ops"]) use "t" on "fs""#,
    );
    check(
        r#"approved    pinned   ro      -     staging prod std   call => DENY grant: no grant lets "alice" (teams ["ops"]) use "t" on "fs""#,
    );
    check(
        r#"approved    pinned   ro      -     staging staging std call => ALLOW policy grant g-staging action read: rule "allow-read" matched"#,
    );
    check(
        r#"approved    pinned   ro      -     team   prod std    call => ALLOW policy grant g-team action read: rule "allow-read" matched"#,
    );
    check(
        r#"approved    pinned   ro      -     alice  prod std    call => ALLOW policy grant g-alice action read: rule "allow-read" matched"#,
    );
    // The server's own requests skip it (they are not the caller's).
    check(r#"approved    pinned   ro      -     -      prod std    s2c  => ALLOW policy: rule "sampling" matched"#);
    check(
        r#"approved    pinned   ro      -     -      -    std    s2c  => DENY policy: no rule matched: default DENY"#,
    );
}

#[test]
fn action_labels() {
    // The registry's label wins over what the tool claims.
    check(
        r#"approved    pinned   ro      write alice  prod std    call => REQUIRE_APPROVAL policy grant g-alice action write: rule "approve-prod-writes" matched"#,
    );
    check(
        r#"approved    pinned   ro      destructive alice staging std call => DENY policy grant g-alice action destructive: no rule matched: default DENY"#,
    );
    // Without a label, the annotations; a tool that says nothing may be
    // destructive.
    check(
        r#"approved    pinned   ro      -     alice  staging std call => ALLOW policy grant g-alice action read: rule "allow-read" matched"#,
    );
    // (`rw` and `bare` listings differ from the pinned definition, so they
    // reach the policy only when pinned as listed: see `listing_as_pinned`.)
    // A label the registry does not know is no action: no `action:` rule
    // matches it.
    check(
        r#"approved    pinned   ro      bogus alice  prod std    call => DENY policy grant g-alice: no rule matched: default DENY"#,
    );
}

#[test]
fn policy_verdicts() {
    check(
        r#"approved    pinned   ro      write alice  staging std call => ALLOW_WITH_CONSTRAINTS policy grant g-alice action write: rule "constrain-staging-writes" matched"#,
    );
    check(
        r#"approved    pinned   ro      write alice  -    std    call => DENY policy grant g-alice action write: no rule matched: default DENY"#,
    );
    check(
        r#"approved    pinned   ro      read  alice  prod -      call => DENY policy grant g-alice action read: no policy is loaded: default DENY"#,
    );
    check(
        r#"approved    unpinned -       -     team   prod std    read => ALLOW policy grant g-team: rule "resources" matched"#,
    );
}

/// Hints reach the policy for a tool pinned as it is listed now.
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
        };
        let ruling = decide(&w.state, w.policy.as_ref(), &call, Some(&live), false, NOW);
        assert_eq!(render(&ruling), expected, "listing {listing}");
    }
}

/// One row of the access table (`initialize` and gated methods): registry,
/// grant and env columns as in [`check`], the request's target (`-` for
/// none), `=>`, the expected ruling. The policy is never asked.
#[track_caller]
fn check_access(row: &str) {
    let (input, expected) = row.split_once("=>").unwrap_or_else(|| panic!("no `=>` in {row:?}"));
    let cols: Vec<&str> = input.split_whitespace().collect();
    let [registry, g, env, target] = cols[..] else {
        panic!("an access row has 4 columns: {row:?}");
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
    };
    let ruling = decide_access(&w.state, &call, NOW);
    assert_eq!(render(&ruling), expected.trim(), "row: {row}");
    assert!(
        ruling.evaluation.is_none() && ruling.policy_hash.is_none(),
        "row: {row}"
    );
}

#[test]
fn access() {
    // registry   grant   env   target
    check_access(r#"-          alice   prod  -  => DENY registry: server "fs" is not registered: shadow MCP server"#);
    check_access(r#"quarantined alice  prod  -  => DENY registry: server "fs" is quarantined"#);
    check_access(r#"approved   -       prod  -  => DENY grant: no grant lets "alice" (teams ["ops"]) use "fs""#);
    check_access(r#"approved   expired prod  -  => DENY grant: no grant lets "alice" (teams ["ops"]) use "fs""#);
    check_access(r#"approved   staging prod  -  => DENY grant: no grant lets "alice" (teams ["ops"]) use "fs""#);
    // Opening a session needs a grant on the server, whatever its tool.
    check_access(
        r#"approved   other   prod  -  => ALLOW grant grant g-other: grant g-other lets "alice" use "fs" (initialize)"#,
    );
    check_access(
        r#"approved   team    prod  -  => ALLOW grant grant g-team: grant g-team lets "alice" use "fs" (initialize)"#,
    );
    // A request that names its target needs a grant on that target.
    check_access(r#"approved   other   prod  t  => DENY grant: no grant lets "alice" (teams ["ops"]) use "t" on "fs""#);
    check_access(
        r#"approved   alice   prod  t  => ALLOW grant grant g-alice: grant g-alice lets "alice" use "fs" (completion/complete)"#,
    );
}
