//! The server registry: which upstream servers exist, who owns them, where
//! they run, and where each stands in its lifecycle
//! (registered → approved → quarantined / revoked), with the tool
//! definitions pinned at approval and any drift since.

use std::collections::BTreeMap;

use ledger::{Event, EventKind};
use serde::{Deserialize, Serialize};

use super::body::{str_field, str_list, str_map};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Registered,
    Approved,
    Quarantined,
    Revoked,
}

impl Status {
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

/// A tool whose live definition no longer matches its pin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    /// `changed`, `added` or `removed`.
    pub change: String,
    /// Hash of the live definition (none when removed).
    pub hash: Option<String>,
    pub seq: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Server {
    pub name: String,
    pub transport: String,
    pub address: String,
    pub owner: Option<String>,
    pub env: Vec<String>,
    pub risk: Vec<String>,
    /// Action labels (`read`, `write`, `destructive`) the registry assigns
    /// to tools; they take precedence over the tools' own annotations.
    pub actions: BTreeMap<String, String>,
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
    pub fn location(&self) -> (&str, &str) {
        (&self.transport, &self.address)
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

    pub fn apply(&mut self, event: &Event) {
        let Some(name) = event.subject.server.as_deref() else {
            return;
        };
        let step = |status| Step {
            status,
            seq: event.seq,
            ts: event.ts.to_string(),
            by: event.actor.principal.clone(),
            reason: str_field(&event.body, "reason"),
        };
        match &event.kind {
            EventKind::ServerRegistered => {
                let transport = str_field(&event.body, "transport").unwrap_or_default();
                let address = str_field(&event.body, "address").unwrap_or_default();
                let fresh = Server {
                    name: name.to_string(),
                    transport,
                    address,
                    owner: str_field(&event.body, "owner"),
                    env: event.subject.env.clone(),
                    risk: str_list(&event.body, "risk"),
                    actions: str_map(&event.body, "actions"),
                    status: Status::Registered,
                    history: vec![step(Status::Registered)],
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
                        old.history.push(Step {
                            status: old.status,
                            ..step(old.status)
                        });
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
            EventKind::ServerApproved => self.transition(name, Status::Approved, step(Status::Approved)),
            EventKind::ServerQuarantined => self.transition(name, Status::Quarantined, step(Status::Quarantined)),
            EventKind::ServerRevoked => self.transition(name, Status::Revoked, step(Status::Revoked)),
            EventKind::ToolsPinned => {
                let Some(server) = self.servers.get_mut(name) else {
                    return;
                };
                let replace = matches!(event.body.get("replace"), Some(ledger::Value::Bool(true)));
                if replace {
                    server.pins.clear();
                    server.drift.clear();
                }
                if let Some(tools) = event.body.get("tools").and_then(ledger::Value::as_object) {
                    for (tool, hash) in tools {
                        match hash.as_str() {
                            Some(h) => {
                                server.pins.insert(tool.clone(), h.to_string());
                            }
                            None => {
                                server.pins.remove(tool);
                            }
                        }
                        server.drift.remove(tool);
                    }
                }
            }
            EventKind::ToolsDrifted => {
                let Some(server) = self.servers.get_mut(name) else {
                    return;
                };
                for change in ["changed", "added"] {
                    for (tool, hash) in str_map(&event.body, change) {
                        server.drift.insert(
                            tool,
                            Drift {
                                change: change.to_string(),
                                hash: Some(hash),
                                seq: event.seq,
                            },
                        );
                    }
                }
                for tool in str_list(&event.body, "removed") {
                    server.drift.insert(
                        tool,
                        Drift {
                            change: "removed".into(),
                            hash: None,
                            seq: event.seq,
                        },
                    );
                }
            }
            _ => {}
        }
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
