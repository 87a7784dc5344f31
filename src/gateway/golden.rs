//! Golden files of the event catalogue (`tests/data/events/`).
//!
//! `written-*.jsonl` hold an event of every gateway and governance kind as
//! a version of Sealgate wrote them, one canonical envelope per line;
//! `gateway-run-*.jsonl` a whole log of a real gateway run (calls allowed,
//! denied, held, approved, expired, withdrawn), as `sealgate log -o json`
//! exported it. Every file must keep decoding and folding in every later
//! version: they are never rewritten, only added to.
//!
//! The newest `written-*` file is also the shape this version writes: the
//! generator below writes one event of each kind through the real writers
//! (the gateway's [`Audit`] and the governance service) into a real ledger,
//! and each event's shape (the paths of its envelope and body fields) must
//! equal that file's event of the same kind. A change of shape fails here
//! until a new file is written, with `SEALGATE_BLESS_EVENTS=YYYY-MM-DD`,
//! and reviewed: adding optional fields is allowed, anything else is a new
//! kind or a body version (`docs/EVENTS.md`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use events::{Check, ReasonCode, RefusedBy, check_event};
use ledger::{Actor, Event, EventKind, KeyDir, Ledger, Receipt, SigningKey, Snapshots, Timestamp, Value};

use super::audit::{
    AccessCount, Audit, CallInfo, Direction, Limits, Listing, Outcome, Refusal, Refused, Scope, Stored,
};
use super::mcp::Id;
use super::safety::{self, ScanPolicy};
use crate::governance::policy::{Approval, Approvers, Constraints, Evaluation, OnOversize, OutputPolicy};
use crate::governance::state::GovState;
use crate::governance::{
    ApprovalSpec, AuthMethod, Gate, Governance, GrantSpec, Principal, Revealer, Ruling, ServerSpec, Status, Verdict,
};

/// The time to decide the generator records.
const TOOK: Duration = Duration::from_micros(42);

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/events")
}

fn files(prefix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("tests/data/events")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".jsonl"))
        })
        .collect();
    files.sort();
    files
}

/// The events of a golden file: canonical envelopes, or `log -o json`
/// records (whose `event` member is the envelope).
fn read(path: &Path) -> Vec<Event> {
    let text = std::fs::read_to_string(path).expect("golden file");
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let at = format!("{}:{}", path.display(), i + 1);
            let value = Value::from_json_str(line).unwrap_or_else(|e| panic!("{at}: {e}"));
            let envelope = match &value {
                Value::Object(o) if o.contains_key("signature") => o.get("event").cloned().expect("event member"),
                _ => value,
            };
            Event::decode(&envelope.to_canonical()).unwrap_or_else(|e| panic!("{at}: {e}"))
        })
        .collect()
}

fn fold(events: &[Event]) -> GovState {
    use ledger::Projection;
    let mut state = GovState::default();
    for e in events {
        state.apply(e);
    }
    state
}

/// The paths of an event's fields (envelope and body), values left out:
/// what must stay the same from one version to the next.
fn shape(event: &Event) -> BTreeSet<String> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut BTreeSet<String>) {
        if let serde_json::Value::Object(members) = value {
            for (k, v) in members {
                let path = format!("{prefix}/{k}");
                out.insert(path.clone());
                walk(&path, v, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    let mut json = event.to_json();
    if let Some(o) = json.as_object_mut() {
        // Set by the ledger on every event alike.
        for k in ["seq", "ts", "prev", "key", "v"] {
            o.remove(k);
        }
    }
    walk("", &json, &mut out);
    out
}

/// Files written by any version: every event's body decodes as its kind's
/// type, and the whole file folds with nothing unreadable.
#[test]
fn every_golden_file_decodes_and_folds() {
    let all: Vec<PathBuf> = files("written-").into_iter().chain(files("gateway-run-")).collect();
    assert!(all.len() >= 2, "golden files missing in {}", dir().display());
    for path in all {
        let events = read(&path);
        for e in &events {
            check_event(e, Check::Decodes).unwrap_or_else(|err| panic!("{}: seq {}: {err}", path.display(), e.seq));
        }
        let state = fold(&events);
        assert!(
            state.unreadable.is_empty(),
            "{}: {:?}",
            path.display(),
            state.unreadable
        );
        assert!(
            !state.registry.servers.is_empty(),
            "{}: no servers folded",
            path.display()
        );
        assert!(state.policy.is_some(), "{}: no policy folded", path.display());
    }
}

/// The previous version's gateway run folds to the state that run left:
/// checked fact by fact, not only "without errors".
#[test]
fn a_gateway_run_of_the_previous_version_folds_to_its_state() {
    let path = dir().join("gateway-run-2026-12-06.jsonl");
    let state = fold(&read(&path));
    let approved: Vec<&str> = state
        .registry
        .servers
        .values()
        .filter(|s| s.status == Status::Approved)
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(approved.len(), 2, "{approved:?}");
    assert!(state.registry.servers.values().all(|s| !s.pins.is_empty()));
    let states: BTreeMap<&str, usize> = state.approvals.items.values().fold(BTreeMap::new(), |mut m, a| {
        let k = match a.state {
            crate::governance::approvals::State::Pending => "pending",
            crate::governance::approvals::State::Granted { .. } => "granted",
            crate::governance::approvals::State::Denied { .. } => "denied",
            crate::governance::approvals::State::Expired { .. } => "expired",
        };
        *m.entry(k).or_default() += 1;
        m
    });
    assert_eq!(states, BTreeMap::from([("expired", 1), ("granted", 1)]));
    // The run revoked alice's grant: none of hers is left in force.
    assert!(
        state
            .grants
            .grants
            .values()
            .all(|g| !format!("{:?}", g.grantee).contains("alice")),
        "{:?}",
        state.grants
    );
}

/// What this version writes has the newest golden file's shapes, kind by
/// kind, and every body round-trips through its type exactly.
#[test]
fn this_version_writes_the_newest_golden_shapes() {
    let written = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(write_every_kind());
    for e in &written {
        let typed = check_event(e, Check::RoundTrips).unwrap_or_else(|err| panic!("{} (seq {}): {err}", e.kind, e.seq));
        assert!(typed || e.kind.is_reserved(), "{}: no body type", e.kind);
    }
    let kinds: BTreeSet<&EventKind> = written.iter().map(|e| &e.kind).collect();
    for kind in EventKind::KNOWN {
        if *kind != EventKind::KeyRotated {
            assert!(kinds.contains(kind), "the generator wrote no {kind}");
        }
    }
    let folded = fold(&written);
    assert!(folded.unreadable.is_empty(), "{:?}", folded.unreadable);

    if let Ok(date) = std::env::var("SEALGATE_BLESS_EVENTS") {
        let path = dir().join(format!("written-{date}.jsonl"));
        let mut text = String::new();
        for e in &written {
            text.push_str(std::str::from_utf8(&e.canonical_bytes()).expect("utf-8"));
            text.push('\n');
        }
        std::fs::write(&path, text).expect("write golden file");
        eprintln!("wrote {}", path.display());
        return;
    }
    let newest = files("written-").pop().expect("a written-*.jsonl golden file");
    let golden = read(&newest);
    let shapes = |events: &[Event]| {
        let mut by_kind: BTreeMap<String, BTreeSet<BTreeSet<String>>> = BTreeMap::new();
        for e in events {
            by_kind.entry(e.kind.to_string()).or_default().insert(shape(e));
        }
        by_kind
    };
    let (now, then) = (shapes(&written), shapes(&golden));
    for (kind, shapes) in &now {
        assert_eq!(
            Some(shapes),
            then.get(kind),
            "{kind}: written now with another shape than in {} (see this module's docs)",
            newest.display()
        );
    }
    assert_eq!(now.len(), then.len(), "kinds written now and in {}", newest.display());
}

fn principal(name: &str, teams: &[&str]) -> Principal {
    Principal {
        name: name.into(),
        teams: teams.iter().map(|t| t.to_string()).collect(),
        method: AuthMethod::Token,
        roles: Vec::new(),
    }
}

fn ruling(gate: Gate, verdict: Verdict, code: ReasonCode, evaluation: Option<Evaluation>) -> Ruling {
    Ruling {
        gate,
        verdict,
        code,
        reason: format!("{code:?}"),
        server_status: None,
        pin: None,
        listed: None,
        grant: Some("g-000000000001".into()),
        action: None,
        policy_hash: evaluation.as_ref().map(|_| "blake3:00".into()),
        evaluation,
        limit: None,
        quota: Vec::new(),
        refused_host: None,
        told: None,
        suspension_id: None,
    }
}

fn call(method: &str, id: i64, tool: Option<&str>, arguments: &str) -> CallInfo {
    let mut c = CallInfo::new(method, Id::Int(id.to_string().into()), Direction::ClientToServer);
    c.tool = tool.map(str::to_string);
    c.arguments = Some(crate::json::parse(arguments.as_bytes()).expect("json"));
    c
}

/// One event of every kind (and the shapes the writers give them), written
/// by the real writers into a real ledger in a temporary directory.
async fn write_every_kind() -> Vec<Event> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ledger = Arc::new(
        Ledger::create(
            &tmp.path().join("ledger"),
            &KeyDir::new(tmp.path().join("keys")),
            SigningKey::generate(),
            Actor::default(),
        )
        .expect("create"),
    );
    let gov =
        Arc::new(Governance::open(Arc::clone(&ledger), Snapshots::new(tmp.path().join("snap")), 1000).expect("open"));
    let admin = principal("root", &["platform"]);
    let alice = principal("alice", &["dev"]);
    let approver = principal("sam", &["security"]);

    // Governance: policy, registry, pins, grants, drift.
    gov.load_policy(
        &admin,
        "version: v1\nrules:\n  - id: approve-writes\n    match: { action: write }\n    decision: REQUIRE_APPROVAL\n    approval: { timeout_sec: 60, approvers: { team: security } }\n",
        "policy.yaml",
    )
    .await
    .expect("policy");
    let spec = ServerSpec {
        name: "fs".into(),
        transport: events::Transport::Stdio,
        address: "node server-filesystem.js /srv".into(),
        owner: Some("platform".into()),
        env: vec!["prod".into()],
        risk: vec!["pii".into()],
        actions: BTreeMap::from([("write_file".into(), "write".into())]),
    };
    gov.register(&admin, &spec, Some("declared".into()), events::RegistrySource::Config)
        .await
        .expect("register");
    let pins = BTreeMap::from([
        ("read_file".to_string(), "blake3:aa".to_string()),
        ("write_file".to_string(), "blake3:bb".to_string()),
    ]);
    gov.approve_server(&admin, "fs", Some("reviewed".into()), &pins)
        .await
        .expect("approve");
    let (grant_id, _) = gov
        .issue_grant(
            &admin,
            &GrantSpec {
                principal: None,
                team: Some("dev".into()),
                server: "fs".into(),
                tool: "*".into(),
                env: Some("prod".into()),
                expires_at: Some(Timestamp::from_nanos(Timestamp::now().as_nanos() + 3_600_000_000_000)),
                reason: Some("onboarding".into()),
            },
        )
        .await
        .expect("grant");
    gov.observe_tools(
        "fs",
        &BTreeMap::from([("read_file".to_string(), "blake3:cc".to_string())]),
        true,
        Some(&Revealer {
            session: "0123456789abcdef0123456789abcdef".into(),
            principal: "alice".into(),
        }),
    )
    .await
    .expect("drift");

    // A session and its calls, through the gateway's writer.
    let audit = Audit::new(
        Arc::clone(&ledger),
        Limits {
            max_argument_bytes: 4096,
            result_excerpt_bytes: 1024,
        },
    );
    let mut scope = Scope {
        principal: alice.clone(),
        agent: Some("claude-code/2.1".into()),
        session_id: "0123456789abcdef0123456789abcdef".into(),
        server: "fs".into(),
        env: vec!["prod".into()],
        protocol_version: None,
    };
    let none = Stored::default();
    let init = call(
        "initialize",
        0,
        None,
        r#"{"protocolVersion":"2025-06-18","clientInfo":{"name":"c","version":"1"},"capabilities":{}}"#,
    );
    let req = audit.append(audit.requested(&scope, &init, &none)).await.expect("init");
    let allow = ruling(Gate::Grant, Verdict::Allow, ReasonCode::Granted, None);
    audit
        .append(audit.decision(&scope, &init, &allow, Some(&req), TOOK))
        .await
        .expect("decision");
    let opened = events::SessionOpened {
        call: Audit::fields(&scope, Some(&init)),
        downstream_transport: events::Transport::Http,
        upstream_transport: events::Transport::Stdio,
        upstream_address: spec.address.clone(),
        protocol_version_requested: "2025-06-18".into(),
        client: events::OpenObject::from_iter([("name".to_string(), serde_json::json!("c"))]),
        client_capabilities: events::OpenObject::new(),
        server: Some(events::OpenObject::from_iter([(
            "name".to_string(),
            serde_json::json!("fs"),
        )])),
        outcome: events::SessionOutcome::Ok,
        error: None,
        error_type: None,
        credential_source: Some(events::CredentialSource::Dir),
        credential_fingerprint: Some("sha256:00112233445566778899".into()),
    };
    let mut d = audit.session_opened(&scope, &init, &opened).expect("session");
    d.correlation.answers = Some(req.seq);
    audit.append(Ok(d)).await.expect("opened");
    scope.protocol_version = Some("2025-06-18".into());

    let listing = Listing {
        items: crate::json::parse(br#"[{"name":"read_file"}]"#).expect("json"),
        names: vec!["read_file".into()],
        cursor: None,
        next_cursor: None,
        hidden: vec!["write_file".into()],
        changed: BTreeMap::from([("read_file".into(), "blake3:cc".into())]),
        added: BTreeMap::new(),
    };
    audit
        .append(audit.listing(&scope, "tools/list", &Id::Int("1".into()), &listing))
        .await
        .expect("listing");

    // A write held for approval, granted, run; its result redacted.
    let write = call(
        "tools/call",
        2,
        Some("write_file"),
        r#"{"path":"/srv/a","text":"mail bob@example.com"}"#,
    );
    let policy = OutputPolicy::default();
    let scan = safety::scan_json(
        write.arguments.as_ref().expect("arguments"),
        &ScanPolicy {
            secrets: safety::Action::Redact,
            pii: safety::Action::Redact,
        },
    );
    let find_key = super::findable::FindKey::from_bytes([7; 32]);
    let stored = Stored {
        arguments: Some(scan.redacted.clone()),
        meta: None,
        arguments_findable: find_key.findable(&scan.values),
        meta_findable: None,
    };
    let req = audit
        .append(audit.requested(&scope, &write, &stored))
        .await
        .expect("write");
    let held = Evaluation {
        rule: Some("approve-writes".into()),
        verdict: Verdict::RequireApproval,
        reason: "rule approve-writes".into(),
        approval: Some(Approval {
            timeout_sec: 60,
            approvers: Approvers {
                teams: vec!["security".into()],
                principals: vec![],
            },
        }),
        constraints: None,
        output: policy,
    };
    let mut r = ruling(
        Gate::Policy,
        Verdict::RequireApproval,
        ReasonCode::RuleRequireApproval,
        Some(held.clone()),
    );
    r.quota = vec![events::QuotaCount {
        id: "daily-writes".into(),
        key: "principal=\"alice\"".into(),
    }];
    // The same call refused by a rate limit of the policy.
    let mut limited = ruling(Gate::Policy, Verdict::Deny, ReasonCode::RateLimited, Some(held));
    limited.limit = Some(events::LimitHit {
        id: "per-minute".into(),
        kind: events::LimitKind::Rate,
        calls: 60,
        per_sec: 60,
        key: "principal=\"alice\"".into(),
    });
    let write_limited = call("tools/call", 20, Some("write_file"), r#"{"path":"/srv/b"}"#);
    let limited_req = audit
        .append(audit.requested(&scope, &write_limited, &none))
        .await
        .expect("request");
    audit
        .append(audit.decision(&scope, &write_limited, &limited, Some(&limited_req), TOOK))
        .await
        .expect("decision");
    // And a call refused by its rule's `network_allowlist`, naming the host.
    let mut fenced = ruling(
        Gate::Policy,
        Verdict::Deny,
        ReasonCode::HostNotAllowed,
        limited.evaluation.clone(),
    );
    fenced.refused_host = Some("evil.example".into());
    let fetch = call("tools/call", 21, Some("fetch"), r#"{"url":"https://evil.example/"}"#);
    let fetch_req = audit
        .append(audit.requested(&scope, &fetch, &none))
        .await
        .expect("request");
    audit
        .append(audit.decision(&scope, &fetch, &fenced, Some(&fetch_req), TOOK))
        .await
        .expect("decision");
    audit
        .append(audit.decision(&scope, &write, &r, Some(&req), TOOK))
        .await
        .expect("decision");
    let approval = |req: &Receipt, c: &CallInfo| ApprovalSpec {
        request_seq: req.seq,
        principal: alice.clone(),
        session: Some(scope.session_id.clone()),
        request_id: Some(super::audit::request_id(&c.request_id)),
        call_id: Some(c.call_id.clone()),
        server: "fs".into(),
        env: vec!["prod".into()],
        tool: c.tool.clone(),
        method: c.method.clone(),
        args_digest: "blake3:dd".into(),
        policy_hash: "blake3:00".into(),
        rule: Some("approve-writes".into()),
        approver_teams: vec!["security".into()],
        approver_principals: vec![],
        expires_at: Timestamp::from_nanos(Timestamp::now().as_nanos() + 60_000_000_000),
    };
    let (id, _) = gov.request_approval(&approval(&req, &write)).await.expect("approval");
    gov.decide_approval(&approver, &id, true, Some("change 42".into()))
        .await
        .expect("granted");
    let result =
        crate::json::parse(br#"{"content":[{"type":"text","text":"wrote to bob@example.com"}]}"#).expect("json");
    let out = safety::scan_json(
        &result,
        &ScanPolicy {
            secrets: safety::Action::Redact,
            pii: safety::Action::Redact,
        },
    );
    audit
        .append(audit.output(&scope, &write, Some(&req), &out.report, None))
        .await
        .expect("output");
    audit
        .append(audit.outcome(
            &scope,
            &write,
            &req,
            Duration::from_millis(8),
            &Outcome::Result {
                json: &out.redacted,
                is_error: Some(false),
                original_bytes: result.to_text().len(),
                truncated: false,
                findable: find_key.findable(&out.values).as_ref(),
            },
            Some(&r),
        ))
        .await
        .expect("completed");

    // Denied at the pin gate: refused.
    let read = call("tools/call", 3, Some("read_file"), r#"{"path":"/srv/a"}"#);
    let req = audit.append(audit.requested(&scope, &read, &none)).await.expect("read");
    let mut deny = ruling(Gate::Pin, Verdict::Deny, ReasonCode::ToolDrifted, None);
    deny.grant = None;
    deny.pin = Some("blake3:aa".into());
    deny.listed = Some("blake3:cc".into());
    audit
        .append(audit.decision(&scope, &read, &deny, Some(&req), TOOK))
        .await
        .expect("decision");
    let refusal = Refusal {
        by: RefusedBy::Pin,
        code: ReasonCode::ToolDrifted,
        rpc_code: -32001,
        message: "tool \"read_file\" drifted".into(),
    };
    audit
        .append(audit.call_refused(&scope, &read, &req, &refusal))
        .await
        .expect("refused");

    // Held, denied by the approver; held again, expired.
    for (n, grant) in [(4, Some(false)), (5, None)] {
        let c = call("tools/call", n, Some("write_file"), r#"{"path":"/srv/b"}"#);
        let req = audit.append(audit.requested(&scope, &c, &none)).await.expect("held");
        let (id, _) = gov.request_approval(&approval(&req, &c)).await.expect("approval");
        match grant {
            Some(g) => {
                gov.decide_approval(&approver, &id, g, Some("no".into()))
                    .await
                    .expect("denied");
            }
            None => {
                gov.expire_approval(&id, "no decision before the deadline")
                    .await
                    .expect("expired");
            }
        }
    }

    // A resource read with constraints that timed out; a quarantined result.
    let mut res = call("resources/read", 6, None, r#"{"uri":"file:///srv/c"}"#);
    res.resource = Some("file:///srv/c".into());
    let req = audit.append(audit.requested(&scope, &res, &none)).await.expect("read");
    let constrained = Evaluation {
        rule: Some("slow".into()),
        verdict: Verdict::AllowWithConstraints,
        reason: "rule slow".into(),
        approval: None,
        constraints: Some(Constraints {
            max_runtime_sec: Some(2),
            max_retries: None,
            max_result_bytes: Some(1024),
            on_oversize: OnOversize::Refuse,
            network_allowlist: None,
        }),
        output: policy,
    };
    let r = ruling(
        Gate::Policy,
        Verdict::AllowWithConstraints,
        ReasonCode::RuleAllowWithConstraints,
        Some(constrained),
    );
    audit
        .append(audit.decision(&scope, &res, &r, Some(&req), TOOK))
        .await
        .expect("decision");
    audit
        .append(audit.outcome(
            &scope,
            &res,
            &req,
            Duration::from_secs(2),
            &Outcome::Timeout {
                after: Duration::from_secs(2),
            },
            Some(&r),
        ))
        .await
        .expect("failed");
    let q = call("tools/call", 7, Some("read_file"), "{}");
    let req = audit.append(audit.requested(&scope, &q, &none)).await.expect("q");
    audit
        .append(audit.output(&scope, &q, Some(&req), &out.report, Some("q-1")))
        .await
        .expect("quarantined");

    // A message refused, and refused access.
    audit
        .append(audit.refused(
            &scope,
            &Refused {
                direction: Direction::ClientToServer,
                method: Some("tools/call"),
                request_id: Some(&Id::Int("8".into())),
                code: -32600,
                reason: "duplicate key \"name\"",
                bytes: 64,
            },
        ))
        .await
        .expect("mcp.refused");
    audit
        .append(audit.access_refused(
            &AccessCount {
                source: "203.0.113.9".into(),
                principal: None,
                token: Some("sha256:0011223344556677".into()),
                reason: events::AccessReason::InvalidToken,
                server: Some("fs".into()),
                aggregated: false,
                count: 3,
                first: Timestamp::now(),
                last: Timestamp::now(),
            },
            Duration::from_secs(60),
        ))
        .await
        .expect("access.refused");

    // The session's end.
    let opened_seq = ledger
        .events(0, ledger.head().seq)
        .expect("events")
        .map(|e| e.expect("event").event)
        .find(|e| e.kind == EventKind::SessionOpened)
        .expect("a session.opened event")
        .seq;
    audit
        .append(audit.session_closed(
            &scope,
            &events::SessionClosed {
                call: Audit::fields(&scope, None),
                reason: events::CloseReason::ClientDelete,
                opened_seq,
                duration_ns: 1_500_000_000,
                counts: events::SessionCounts {
                    requests: 7,
                    calls: 6,
                    allowed: 2,
                    denied: 3,
                    completed: 1,
                    failed: 1,
                    unfinished: 1,
                },
                suspension_id: None,
            },
        ))
        .await
        .expect("session.closed");

    // The kill switch, pulled (a call denied by it) and released.
    let (suspension_id, _) = gov
        .suspend(&admin, events::SuspensionTarget::Principal, "alice", "incident 7")
        .await
        .expect("suspend");
    let mut stopped = ruling(Gate::Suspension, Verdict::Deny, ReasonCode::Suspended, None);
    stopped.grant = None;
    stopped.suspension_id = Some(suspension_id);
    let stopped_call = call("tools/call", 30, Some("read_file"), r#"{"path":"/srv/c"}"#);
    let stopped_req = audit
        .append(audit.requested(&scope, &stopped_call, &none))
        .await
        .expect("request");
    audit
        .append(audit.decision(&scope, &stopped_call, &stopped, Some(&stopped_req), TOOK))
        .await
        .expect("decision");
    gov.resume(
        &admin,
        events::SuspensionTarget::Principal,
        "alice",
        Some("resolved".into()),
    )
    .await
    .expect("resume");

    // The end of the grant and the server.
    gov.revoke_grant(&admin, &grant_id, Some("offboarding".into()))
        .await
        .expect("revoke grant");
    gov.set_status(&admin, "fs", Status::Quarantined, Some("incident".into()))
        .await
        .expect("quarantine");
    gov.set_status(&admin, "fs", Status::Revoked, None)
        .await
        .expect("revoke");

    // An alert, and a webhook's outcomes for it (the writers of
    // `crate::alerts`).
    let drifted = ledger
        .events(0, ledger.head().seq)
        .expect("events")
        .map(|e| e.expect("event"))
        .find(|e| e.event.kind == EventKind::ToolsDrifted)
        .expect("a tools.drifted event");
    let mut detector = crate::alerts::Detector::new(crate::alerts::Thresholds {
        disabled: Default::default(),
        unknown_server: 1,
        unknown_server_window_sec: 60,
        auth_burst: 1,
        auth_burst_window_sec: 60,
        quarantine_ratio: 0.5,
        quarantine_window_sec: 60,
        quarantine_min_calls: 1,
        approval_wait_sec: 3600,
    });
    let alert = detector.observe(&drifted).pop().expect("a tool_drift alert");
    let raised = ledger
        .append(crate::alerts::draft(&alert).expect("alert draft"))
        .await
        .expect("alert.raised");
    let raised = ledger.get(raised.seq).expect("get").expect("the alert");
    for (status, attempts, error) in [
        (Some(200), 2, None),
        (
            Some(500),
            6,
            Some("http://hooks.example answered 500 Internal Server Error"),
        ),
    ] {
        let d = crate::alerts::notify::Delivery {
            delivered: status == Some(200),
            attempts,
            status,
            error: error.map(str::to_owned),
        };
        ledger
            .append(
                crate::alerts::notify::outcome_draft("ops", events::NotificationTopic::Alert, &raised, &d)
                    .expect("outcome draft"),
            )
            .await
            .expect("notification outcome");
    }

    // A checkpoint issued, and a witness's answer about it (the writers of
    // `crate::checkpoints`).
    let l = Arc::clone(&ledger);
    let issued = tokio::task::spawn_blocking(move || crate::checkpoints::issue(&l, "events"))
        .await
        .expect("issue task")
        .expect("checkpoint.issued");
    let witness_key = SigningKey::from_seed([0x57; 32]);
    let text = ledger::witness::note_text(&issued.note).expect("note text").to_owned();
    let answer = crate::checkpoints::Answer {
        outcome: events::WitnessOutcome::Cosigned,
        attempts: 1,
        status: Some(200),
        cosignature: Some(ledger::witness::cosign(
            "witness.example/1",
            &witness_key,
            &text,
            1_765_000_000,
        )),
        error: None,
        superseded: false,
    };
    ledger
        .append(crate::checkpoints::witnessed_draft("w1", &issued, &answer).expect("witnessed draft"))
        .await
        .expect("checkpoint.witnessed");

    let head = ledger.head().seq;
    let out: Vec<Event> = ledger
        .events(0, head)
        .expect("events")
        .map(|e| e.expect("event").event)
        .collect();
    out
}
