//! Suspensions (the kill switch): principals, teams, servers and sessions
//! whose calls stop, from `suspension.issued` until `suspension.lifted`.
//! A fold of the log like the rest of the state, so `as_of` answers what
//! was suspended at any point.

use std::collections::BTreeMap;

use events::{SuspensionIssued, SuspensionLifted, SuspensionTarget, decode};
use ledger::{Event, EventKind};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    pub id: String,
    pub target: SuspensionTarget,
    pub name: String,
    pub reason: String,
    /// Who suspended (the event's actor).
    pub by: Option<String>,
    pub seq: u64,
    /// RFC 3339.
    pub since: String,
}

impl Suspension {
    /// The suspension in words, for refusals and logs.
    pub fn describe(&self) -> String {
        format!(
            "{} {:?} is suspended by {} since {} (suspension {}): {}",
            self.target.as_str(),
            self.name,
            self.by.as_deref().unwrap_or("an unknown principal"),
            self.since,
            self.id,
            self.reason
        )
    }

    /// The suspension as a stopped caller is told it: what is suspended
    /// and the suspension's id (to quote to an administrator), not who
    /// suspended it or why.
    pub fn told(&self) -> String {
        format!(
            "{} {:?} is suspended (suspension {})",
            self.target.as_str(),
            self.name,
            self.id
        )
    }

    /// Whether it stops a call of `principal` (with `teams`) to `server`
    /// in `session`.
    pub fn stops(&self, principal: &str, teams: &[String], server: &str, session: Option<&str>) -> bool {
        match self.target {
            SuspensionTarget::Principal => self.name == principal,
            SuspensionTarget::Team => teams.contains(&self.name),
            SuspensionTarget::Server => self.name == server,
            SuspensionTarget::Session => session == Some(self.name.as_str()),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspensions {
    /// In force, by id (lifted ones are gone; their history is the log).
    pub items: BTreeMap<String, Suspension>,
}

impl Suspensions {
    pub fn apply(&mut self, event: &Event) -> Result<(), events::Error> {
        match &event.kind {
            EventKind::SuspensionIssued => {
                let body: SuspensionIssued = decode(event)?;
                self.items.insert(
                    body.suspension_id.clone(),
                    Suspension {
                        id: body.suspension_id,
                        target: body.target,
                        name: body.name,
                        reason: body.reason,
                        by: event.actor.principal.clone(),
                        seq: event.seq,
                        since: event.ts.to_string(),
                    },
                );
            }
            EventKind::SuspensionLifted => {
                let body: SuspensionLifted = decode(event)?;
                self.items.remove(&body.suspension_id);
            }
            _ => {}
        }
        Ok(())
    }

    /// The suspension in force on `target` `name`, if any.
    pub fn of(&self, target: SuspensionTarget, name: &str) -> Option<&Suspension> {
        self.items.values().find(|s| s.target == target && s.name == name)
    }

    /// The first (oldest) suspension that stops a call of `principal`
    /// (with `teams`) to `server` in `session`.
    /// The oldest suspension in force that stops this principal itself
    /// (by name or team), whatever the server or session.
    pub fn stopping_principal(&self, principal: &str, teams: &[String]) -> Option<&Suspension> {
        self.items
            .values()
            .filter(|s| match s.target {
                SuspensionTarget::Principal => s.name == principal,
                SuspensionTarget::Team => teams.contains(&s.name),
                SuspensionTarget::Server | SuspensionTarget::Session => false,
            })
            .min_by_key(|s| s.seq)
    }

    pub fn stopping(
        &self,
        principal: &str,
        teams: &[String],
        server: &str,
        session: Option<&str>,
    ) -> Option<&Suspension> {
        self.items
            .values()
            .filter(|s| s.stops(principal, teams, server, session))
            .min_by_key(|s| s.seq)
    }
}

#[cfg(test)]
mod tests {
    use ledger::{Actor, Draft, KeyDir, Ledger, SigningKey, Snapshots, fold_to};

    use super::*;
    use crate::governance::state::GovState;

    fn draft<B: events::Body>(by: &str, body: &B) -> Draft {
        let mut d = Draft::new(B::kind());
        d.actor.principal = Some(by.into());
        d.body = events::encode(body).expect("body");
        d
    }

    /// Issued and lifted fold to what is in force at each point of a real
    /// log, and a suspension stops exactly the calls of its target.
    #[test]
    fn suspensions_fold_as_of_and_stop_only_their_target() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ledger = Ledger::create(
            &tmp.path().join("ledger"),
            &KeyDir::new(tmp.path().join("keys")),
            SigningKey::generate(),
            Actor::default(),
        )
        .expect("create");
        let issue = |id: &str, target, name: &str| {
            draft(
                "root",
                &SuspensionIssued {
                    suspension_id: id.into(),
                    target,
                    name: name.into(),
                    reason: "incident".into(),
                },
            )
        };
        let a = ledger
            .append_blocking(issue("s-1", SuspensionTarget::Principal, "alice"))
            .expect("append");
        let b = ledger
            .append_blocking(issue("s-2", SuspensionTarget::Team, "contractors"))
            .expect("append");
        let lifted = ledger
            .append_blocking(draft(
                "root",
                &SuspensionLifted {
                    suspension_id: "s-1".into(),
                    target: SuspensionTarget::Principal,
                    name: "alice".into(),
                    reason: None,
                },
            ))
            .expect("append");
        let snaps = Snapshots::new(tmp.path().join("snap"));
        let at = |seq| {
            fold_to::<GovState>(&ledger, Some(&snaps), seq)
                .expect("fold")
                .into_state()
        };

        let first = at(a.seq);
        let alice = first
            .suspensions
            .of(SuspensionTarget::Principal, "alice")
            .expect("alice");
        assert_eq!((alice.id.as_str(), alice.by.as_deref()), ("s-1", Some("root")));
        assert!(alice.describe().contains("incident") && alice.describe().contains("s-1"));
        let none: [String; 0] = [];
        let contractors = ["contractors".to_string()];
        assert!(first.suspensions.stopping("alice", &none, "fs", None).is_some());
        assert!(first.suspensions.stopping("bob", &contractors, "fs", None).is_none());

        let both = at(b.seq);
        assert_eq!(both.suspensions.items.len(), 2);
        assert_eq!(
            both.suspensions
                .stopping("bob", &contractors, "fs", None)
                .map(|s| s.id.as_str()),
            Some("s-2")
        );
        // The oldest of several is named.
        assert_eq!(
            both.suspensions
                .stopping("alice", &contractors, "fs", None)
                .map(|s| s.id.as_str()),
            Some("s-1")
        );

        let now = at(lifted.seq);
        assert!(now.suspensions.of(SuspensionTarget::Principal, "alice").is_none());
        assert!(now.suspensions.stopping("alice", &none, "fs", None).is_none());
        assert!(now.unreadable.is_empty(), "{:?}", now.unreadable);

        let server = Suspension {
            target: SuspensionTarget::Server,
            name: "fs".into(),
            ..alice.clone()
        };
        assert!(server.stops("bob", &none, "fs", None) && !server.stops("bob", &none, "wiki", None));
        let session = Suspension {
            target: SuspensionTarget::Session,
            name: "abc".into(),
            ..alice.clone()
        };
        assert!(session.stops("bob", &none, "fs", Some("abc")) && !session.stops("bob", &none, "fs", None));
    }
}
