//! The governance state: registry, grants, the policy in force and the
//! approval queue, one projection of the log. Each part is its own fold;
//! together they are snapshotted and replayed as one.

use ledger::{Event, EventKind, Projection};
use serde::{Deserialize, Serialize};

use super::approvals::Approvals;
use super::body::str_field;
use super::grants::Grants;
use super::registry::Registry;

/// The policy text in force and where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    pub text: String,
    pub hash: String,
    pub seq: u64,
    pub ts: String,
    pub by: Option<String>,
    pub origin: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GovState {
    pub registry: Registry,
    pub grants: Grants,
    pub policy: Option<PolicyRecord>,
    pub approvals: Approvals,
}

impl Projection for GovState {
    const NAME: &'static str = "governance";
    /// 2: approvals keep their call's session, request id and environment.
    /// 3: times are RFC 3339; approvals keep when they ended.
    const VERSION: u32 = 3;

    fn apply(&mut self, event: &Event) {
        match &event.kind {
            EventKind::ServerRegistered
            | EventKind::ServerApproved
            | EventKind::ServerQuarantined
            | EventKind::ServerRevoked
            | EventKind::ToolsPinned
            | EventKind::ToolsDrifted => self.registry.apply(event),
            EventKind::GrantIssued | EventKind::GrantRevoked => self.grants.apply(event),
            EventKind::ApprovalRequested
            | EventKind::ApprovalGranted
            | EventKind::ApprovalDenied
            | EventKind::ApprovalExpired => self.approvals.apply(event),
            EventKind::PolicyLoaded => {
                if let (Some(text), Some(hash)) = (str_field(&event.body, "text"), str_field(&event.body, "hash")) {
                    self.policy = Some(PolicyRecord {
                        text,
                        hash,
                        seq: event.seq,
                        ts: event.ts.to_string(),
                        by: event.actor.principal.clone(),
                        origin: str_field(&event.body, "origin"),
                    });
                }
            }
            _ => {}
        }
    }

    fn wants(kind: &str) -> bool {
        ["server.", "tools.", "grant.", "approval.", "policy.loaded"]
            .iter()
            .any(|p| kind.starts_with(p))
    }

    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// One part of the state (`registry`, `grants`, `policy`, `approvals`, or
/// `all`) as JSON, for the API and the CLI.
pub fn render(state: &GovState, part: &str) -> Result<serde_json::Value, String> {
    let v = match part {
        "registry" => serde_json::to_value(&state.registry),
        "grants" => serde_json::to_value(&state.grants),
        "policy" => serde_json::to_value(&state.policy),
        "approvals" => serde_json::to_value(&state.approvals),
        "all" => serde_json::to_value(state),
        other => {
            return Err(format!(
                "unknown part {other:?} (registry, grants, policy, approvals, all)"
            ));
        }
    };
    v.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use ledger::{Actor, Draft, EventKind, Folded, KeyDir, Ledger, SigningKey, Snapshots, Value, fold_to};
    use proptest::prelude::*;

    use super::*;

    const SERVERS: [&str; 3] = ["fs", "tickets", "wiki"];
    const TOOLS: [&str; 3] = ["read", "write", "delete"];
    const POLICIES: [&str; 2] = [
        "version: v1\nrules:\n  - id: all\n    decision: ALLOW\n",
        "version: v1\nrules:\n  - id: none\n    decision: DENY\n",
    ];

    /// Any governance event a log could hold, including ones the API would
    /// have refused (approve a revoked server, revoke twice, decide an
    /// unknown approval): the fold must treat them deterministically.
    fn any_event() -> impl Strategy<Value = Draft> {
        (0usize..12, 0usize..3, 0usize..3, 0usize..4, "[a-z]{1,3}").prop_map(|(k, s, t, n, who)| {
            let server = SERVERS[s];
            let tool = TOOLS[t];
            let (kind, body): (EventKind, Vec<(&str, Value)>) = match k {
                0 => (
                    EventKind::ServerRegistered,
                    vec![
                        ("transport", "stdio".into()),
                        ("address", format!("node {server}-{}.js", n % 2).into()),
                    ],
                ),
                1 => (EventKind::ServerApproved, vec![]),
                2 => (EventKind::ServerQuarantined, vec![]),
                3 => (EventKind::ServerRevoked, vec![]),
                4 => {
                    let mut tools = ledger::Object::new();
                    tools.insert(tool.into(), format!("blake3:{n}").into());
                    (
                        EventKind::ToolsPinned,
                        vec![("tools", Value::Object(tools)), ("replace", (n == 0).into())],
                    )
                }
                5 => {
                    let mut changed = ledger::Object::new();
                    changed.insert(tool.into(), format!("blake3:x{n}").into());
                    (EventKind::ToolsDrifted, vec![("changed", Value::Object(changed))])
                }
                6 => (
                    EventKind::GrantIssued,
                    vec![
                        ("grant_id", format!("g-{n}").into()),
                        ("principal", who.clone().into()),
                        ("tool", tool.into()),
                    ],
                ),
                7 => (EventKind::GrantRevoked, vec![("grant_id", format!("g-{n}").into())]),
                8 => {
                    let text = POLICIES[n % 2];
                    (
                        EventKind::PolicyLoaded,
                        vec![
                            ("text", text.into()),
                            (
                                "hash",
                                format!("blake3:{}", blake3::hash(text.as_bytes()).to_hex()).into(),
                            ),
                        ],
                    )
                }
                9 => (
                    EventKind::ApprovalRequested,
                    vec![
                        ("approval_id", format!("a-{n}").into()),
                        ("expires_at", "2030-01-01T00:00:00Z".into()),
                    ],
                ),
                10 => (
                    EventKind::ApprovalGranted,
                    vec![("approval_id", format!("a-{n}").into())],
                ),
                _ => (
                    EventKind::ApprovalExpired,
                    vec![("approval_id", format!("a-{n}").into())],
                ),
            };
            let mut d = Draft::new(kind);
            d.actor.principal = Some(who);
            d.subject.server = Some(server.into());
            d.subject.tool = Some(tool.into());
            for (k, v) in body {
                d.body.insert(k.into(), v);
            }
            d
        })
    }

    fn naive(ledger: &Ledger, n: u64) -> GovState {
        let mut s = GovState::default();
        for e in ledger.events(0, n).expect("events") {
            s.apply(&e.expect("event").event);
        }
        s
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]

        /// Live state == full replay == snapshot + tail replay, and the
        /// state as of N equals the state of the log cut at N.
        #[test]
        fn live_replay_snapshots_and_as_of_agree(
            batches in prop::collection::vec(prop::collection::vec(any_event(), 1..12), 1..8),
            every in 1u64..10,
            probes in prop::collection::vec(any::<prop::sample::Index>(), 1..5),
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let ledger = Ledger::create(
                &dir.path().join("ledger"),
                &KeyDir::new(dir.path().join("keys")),
                SigningKey::generate(),
                Actor::default(),
            )
            .expect("create");
            let snapshots = Snapshots::new(dir.path().join("snapshots"));
            let mut live = Folded::<GovState>::default();
            let mut last = 0;
            for batch in batches {
                ledger.submit(batch).expect("submit").wait().expect("append");
                live.advance(&ledger, u64::MAX).expect("advance");
                let seq = live.seq().expect("seq");
                if seq - last >= every {
                    snapshots.save(&ledger, &live).expect("snapshot");
                    last = seq;
                }
            }
            let head = ledger.head().seq;
            let full = fold_to::<GovState>(&ledger, None, head).expect("replay");
            prop_assert_eq!(full.state(), live.state());
            let snap = fold_to::<GovState>(&ledger, Some(&snapshots), head).expect("snapshot + tail");
            prop_assert_eq!(snap.state(), live.state());
            // Snapshots round-trip through their encoding.
            let decoded = GovState::decode(&live.state().encode()).expect("decode");
            prop_assert_eq!(&decoded, live.state());
            for probe in probes {
                let n = probe.index(head as usize + 1) as u64;
                let as_of = fold_to::<GovState>(&ledger, Some(&snapshots), n).expect("as of");
                prop_assert_eq!(as_of.state(), &naive(&ledger, n));
            }
        }
    }
}
