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
