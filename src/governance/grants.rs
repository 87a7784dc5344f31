//! Grants: tool-level access for a principal or a team on a server,
//! optionally limited to an environment and until a time.

use std::collections::BTreeMap;

use ledger::{Event, EventKind, Timestamp};
use serde::{Deserialize, Serialize};

use super::body::str_field;
use super::policy::glob_matches as glob;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grantee {
    Principal(String),
    Team(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub grantee: Grantee,
    /// Server name (glob). A principal grantee may be a glob too (`*`: any
    /// authenticated caller).
    pub server: String,
    /// Tool name (glob).
    pub tool: String,
    /// Only on a server with this environment label.
    pub env: Option<String>,
    /// Not valid at or after this time (nanoseconds since the epoch;
    /// RFC 3339 when shown).
    #[serde(default, with = "super::body::rfc3339::option")]
    pub expires_at: Option<u64>,
    pub issued_by: Option<String>,
    pub issued_seq: u64,
    pub reason: Option<String>,
}

impl Grant {
    /// Whether this grant lets `principal` (with `teams`) call `tool` on
    /// `server` (with `env` labels) at time `at`.
    pub fn covers(
        &self,
        principal: &str,
        teams: &[String],
        server: &str,
        env: &[String],
        tool: &str,
        at: Timestamp,
    ) -> bool {
        self.covers_caller(principal, teams, server, env, at) && glob(&self.tool, tool)
    }

    /// Whether this grant lets `principal` use anything on `server` at `at`.
    pub fn covers_caller(
        &self,
        principal: &str,
        teams: &[String],
        server: &str,
        env: &[String],
        at: Timestamp,
    ) -> bool {
        let who = match &self.grantee {
            Grantee::Principal(p) => glob(p, principal),
            Grantee::Team(t) => teams.iter().any(|x| x == t),
        };
        who && glob(&self.server, server)
            && self.env.as_ref().is_none_or(|e| env.iter().any(|x| x == e))
            && self.expires_at.is_none_or(|exp| at.as_nanos() < exp)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// In force, by id (revoked grants are gone; their history is the log).
    pub grants: BTreeMap<String, Grant>,
}

impl Grants {
    pub fn apply(&mut self, event: &Event) {
        let body = &event.body;
        match &event.kind {
            EventKind::GrantIssued => {
                let Some(id) = str_field(body, "grant_id") else { return };
                let grantee = match (str_field(body, "principal"), str_field(body, "team")) {
                    (Some(p), None) => Grantee::Principal(p),
                    (None, Some(t)) => Grantee::Team(t),
                    _ => return,
                };
                let Some(server) = event.subject.server.clone() else {
                    return;
                };
                let expires_at = str_field(body, "expires_at")
                    .and_then(|t| Timestamp::parse_rfc3339(&t).ok())
                    .map(Timestamp::as_nanos);
                self.grants.insert(
                    id.clone(),
                    Grant {
                        id,
                        grantee,
                        server,
                        tool: str_field(body, "tool").unwrap_or_else(|| "*".into()),
                        env: str_field(body, "env"),
                        expires_at,
                        issued_by: event.actor.principal.clone(),
                        issued_seq: event.seq,
                        reason: str_field(body, "reason"),
                    },
                );
            }
            EventKind::GrantRevoked => {
                if let Some(id) = str_field(body, "grant_id") {
                    self.grants.remove(&id);
                }
            }
            _ => {}
        }
    }

    /// The first grant (by id) that covers the call, if any.
    pub fn find(
        &self,
        principal: &str,
        teams: &[String],
        server: &str,
        env: &[String],
        tool: &str,
        at: Timestamp,
    ) -> Option<&Grant> {
        self.grants
            .values()
            .find(|g| g.covers(principal, teams, server, env, tool, at))
    }

    /// The first grant (by id) that lets the caller use anything on
    /// `server`, whatever its tool pattern.
    pub fn find_any(
        &self,
        principal: &str,
        teams: &[String],
        server: &str,
        env: &[String],
        at: Timestamp,
    ) -> Option<&Grant> {
        self.grants
            .values()
            .find(|g| g.covers_caller(principal, teams, server, env, at))
    }
}
