//! The server registry: which upstream servers exist, who owns them, where
//! they run, and where each stands in its lifecycle
//! (registered → approved → quarantined / revoked), with the tool
//! definitions pinned at approval and any drift since.

use std::collections::BTreeMap;

use events::{ServerRegistered, ServerStep, ToolsDrifted, ToolsPinned, Transport, decode};
use ledger::{Event, EventKind};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Registered,
    Approved,
    Quarantined,
    Revoked,
}

impl Status {
    /// The event catalogue's value.
    pub fn to_event(self) -> events::ServerStatus {
        match self {
            Status::Registered => events::ServerStatus::Registered,
            Status::Approved => events::ServerStatus::Approved,
            Status::Quarantined => events::ServerStatus::Quarantined,
            Status::Revoked => events::ServerStatus::Revoked,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Registered => "registered",
            Status::Approved => "approved",
            Status::Quarantined => "quarantined",
            Status::Revoked => "revoked",
        }
    }
}

/// A lifecycle step: who did it, why, at which event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub status: Status,
    pub seq: u64,
    pub ts: String,
    pub by: Option<String>,
    pub reason: Option<String>,
}

/// How a tool's live definition departs from its pin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftChange {
    /// Listed with another definition.
    Changed,
    /// Listed, never pinned.
    Added,
    /// Pinned, no longer listed.
    Removed,
}

impl DriftChange {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftChange::Changed => "changed",
            DriftChange::Added => "added",
            DriftChange::Removed => "removed",
        }
    }
}

/// A tool whose live definition no longer matches its pin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    pub change: DriftChange,
    /// Hash of the live definition (none when removed).
    pub hash: Option<String>,
    pub seq: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Server {
    pub name: String,
    pub transport: Transport,
    pub address: String,
    pub owner: Option<String>,
    pub env: Vec<String>,
    pub risk: Vec<String>,
    /// Action labels the registry assigns to tools; they take precedence
    /// over the tools' own annotations.
    pub actions: BTreeMap<String, events::ActionLabel>,
    pub status: Status,
    pub history: Vec<Step>,
    /// Tool name → hash of its definition, pinned at approval.
    pub pins: BTreeMap<String, String>,
    /// Tools whose definition drifted from the pin (or that appeared
    /// unpinned); hidden and refused until re-approved.
    pub drift: BTreeMap<String, Drift>,
}

impl Server {
    /// The definition of where and how the server runs, for telling a
    /// re-registration that moves it from one that only relabels it.
    pub fn location(&self) -> (Transport, &str) {
        (self.transport, &self.address)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    pub servers: BTreeMap<String, Server>,
}

impl Registry {
    pub fn get(&self, name: &str) -> Option<&Server> {
        self.servers.get(name)
    }

    /// Folds one registry event; an event whose body is not its kind's
    /// shape changes nothing and is reported.
    pub fn apply(&mut self, event: &Event) -> Result<(), events::Error> {
        let Some(name) = event.subject.server.as_deref() else {
            return Ok(());
        };
        let step = |status, reason| Step {
            status,
            seq: event.seq,
            ts: event.ts.to_string(),
            by: event.actor.principal.clone(),
            reason,
        };
        match &event.kind {
            EventKind::ServerRegistered => {
                let body: ServerRegistered = decode(event)?;
                let fresh = Server {
                    name: name.to_string(),
                    transport: body.transport,
                    address: body.address,
                    owner: body.owner,
                    env: event.subject.env.clone(),
                    risk: body.risk,
                    actions: body.actions,
                    status: Status::Registered,
                    history: vec![step(Status::Registered, body.reason.clone())],
                    pins: BTreeMap::new(),
                    drift: BTreeMap::new(),
                };
                match self.servers.get_mut(name) {
                    // Same place: relabel (owner, env, risk, actions) and keep
                    // the lifecycle and pins.
                    Some(old) if old.status != Status::Revoked && old.location() == fresh.location() => {
                        old.owner = fresh.owner;
                        old.env = fresh.env;
                        old.risk = fresh.risk;
                        old.actions = fresh.actions;
                        old.history.push(step(old.status, body.reason));
                    }
                    // New, revoked before, or moved: a new server as far as
                    // trust goes; it must be approved (and pinned) again.
                    Some(old) => {
                        let mut history = std::mem::take(&mut old.history);
                        history.extend(fresh.history);
                        *old = Server { history, ..fresh };
                    }
                    None => {
                        self.servers.insert(name.to_string(), fresh);
                    }
                }
            }
            kind @ (EventKind::ServerApproved | EventKind::ServerQuarantined | EventKind::ServerRevoked) => {
                let body: ServerStep = decode(event)?;
                let to = match kind {
                    EventKind::ServerApproved => Status::Approved,
                    EventKind::ServerQuarantined => Status::Quarantined,
                    _ => Status::Revoked,
                };
                self.transition(name, to, step(to, body.reason));
            }
            EventKind::ToolsPinned => {
                let body: ToolsPinned = decode(event)?;
                let Some(server) = self.servers.get_mut(name) else {
                    return Ok(());
                };
                if body.replace {
                    server.pins.clear();
                    server.drift.clear();
                }
                for (tool, hash) in body.tools {
                    match hash {
                        Some(h) => {
                            server.pins.insert(tool.clone(), h);
                        }
                        None => {
                            server.pins.remove(&tool);
                        }
                    }
                    server.drift.remove(&tool);
                }
            }
            EventKind::ToolsDrifted => {
                let body: ToolsDrifted = decode(event)?;
                let Some(server) = self.servers.get_mut(name) else {
                    return Ok(());
                };
                let listed = [(DriftChange::Changed, body.changed), (DriftChange::Added, body.added)];
                for (change, tools) in listed {
                    for (tool, hash) in tools {
                        server.drift.insert(
                            tool,
                            Drift {
                                change,
                                hash: Some(hash),
                                seq: event.seq,
                            },
                        );
                    }
                }
                for tool in body.removed {
                    server.drift.insert(
                        tool,
                        Drift {
                            change: DriftChange::Removed,
                            hash: None,
                            seq: event.seq,
                        },
                    );
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Lifecycle steps the log records are applied only where the
    /// lifecycle allows them (the API refuses the others before writing;
    /// an imported log might still hold one, and replay must not depend on
    /// it).
    fn transition(&mut self, name: &str, to: Status, step: Step) {
        let Some(server) = self.servers.get_mut(name) else {
            return;
        };
        if allowed(server.status, to).is_ok() {
            server.status = to;
            server.history.push(step);
        }
    }
}

/// Whether a server in `from` may move to `to`; the error says why not.
pub fn allowed(from: Status, to: Status) -> Result<(), String> {
    use Status::*;
    match (from, to) {
        (Registered | Quarantined, Approved) => Ok(()),
        (Registered | Approved, Quarantined) => Ok(()),
        (Registered | Approved | Quarantined, Revoked) => Ok(()),
        (Revoked, _) => Err("it is revoked (register it again to start over)".into()),
        (same, to) if same == to => Err(format!("it is already {}", to.as_str())),
        (from, to) => Err(format!("a {} server cannot become {}", from.as_str(), to.as_str())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_rules() {
        assert!(allowed(Status::Registered, Status::Approved).is_ok());
        assert!(allowed(Status::Quarantined, Status::Approved).is_ok());
        assert_eq!(
            allowed(Status::Revoked, Status::Approved),
            Err("it is revoked (register it again to start over)".into())
        );
        assert_eq!(
            allowed(Status::Revoked, Status::Revoked),
            Err("it is revoked (register it again to start over)".into())
        );
        assert_eq!(
            allowed(Status::Approved, Status::Approved),
            Err("it is already approved".into())
        );
    }
}
