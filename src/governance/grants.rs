//! Grants: tool-level access for a principal or a team on a server,
//! optionally limited to an environment and until a time.

use std::collections::BTreeMap;

use ledger::{Event, EventKind, Timestamp};
use serde::{Deserialize, Serialize};

use super::policy::glob_matches as glob;
use events::{GrantIssued, GrantRevoked, decode};

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
    #[serde(default, with = "super::times::rfc3339::option")]
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
    /// Folds one grant event; an event whose body is not its kind's shape
    /// (or names no grantee, or a bad expiry) changes nothing and is
    /// reported: a grant is never read wider than it was written.
    pub fn apply(&mut self, event: &Event) -> Result<(), events::Error> {
        let bad = |message: String| events::Error::Decode {
            seq: event.seq,
            kind: event.kind.to_string(),
            message,
        };
        match &event.kind {
            EventKind::GrantIssued => {
                let body: GrantIssued = decode(event)?;
                let grantee = match (body.principal, body.team) {
                    (Some(p), None) => Grantee::Principal(p),
                    (None, Some(t)) => Grantee::Team(t),
                    _ => return Err(bad("a grant names exactly one of principal and team".into())),
                };
                let Some(server) = event.subject.server.clone() else {
                    return Err(bad("a grant names its server in subject.server".into()));
                };
                let expires_at = match body.expires_at {
                    Some(t) => Some(
                        Timestamp::parse_rfc3339(&t)
                            .map_err(|e| bad(format!("expires_at {t:?}: {e}")))?
                            .as_nanos(),
                    ),
                    None => None,
                };
                self.grants.insert(
                    body.grant_id.clone(),
                    Grant {
                        id: body.grant_id,
                        grantee,
                        server,
                        tool: body.tool,
                        env: body.env,
                        expires_at,
                        issued_by: event.actor.principal.clone(),
                        issued_seq: event.seq,
                        reason: body.reason,
                    },
                );
            }
            EventKind::GrantRevoked => {
                let body: GrantRevoked = decode(event)?;
                self.grants.remove(&body.grant_id);
            }
            _ => {}
        }
        Ok(())
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
