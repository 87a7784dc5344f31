//! Who is calling, what they ask for, and the one interface that decides.
//!
//! [`Decider`] is the seam the governance projections (registry, grants,
//! policy, approvals) plug into. Until then [`ConfiguredServers`] allows
//! authenticated callers on configured servers and denies everything else.

use std::collections::BTreeSet;
use std::fmt;

/// How a caller proved who they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// A static bearer token from the tokens file.
    Token,
    /// A JWT from a configured issuer.
    Jwt,
    /// The local user of `sealgate stdio`.
    Stdio,
    /// An unauthenticated HTTP caller, accepted only when
    /// `gateway.anonymous_principal` is set.
    Anonymous,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Token => "token",
            AuthMethod::Jwt => "jwt",
            AuthMethod::Stdio => "stdio",
            AuthMethod::Anonymous => "anonymous",
        }
    }
}

/// The authenticated caller: what every event names as its actor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub teams: Vec<String>,
    pub method: AuthMethod,
}

/// A request the gateway is about to forward.
#[derive(Debug)]
#[allow(
    dead_code,
    reason = "the policy decider of the governance issue matches on every field"
)]
pub struct CallRequest<'a> {
    pub server: &'a str,
    pub env: &'a [String],
    pub principal: &'a Principal,
    /// `tools/call`, `resources/read`, `sampling/createMessage`, ...
    pub method: &'a str,
    /// The tool, prompt or resource URI, when the method has one.
    pub target: Option<&'a str>,
    /// The arguments as sent.
    pub arguments: Option<&'a serde_json::Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code, reason = "approvals and constraints arrive with the governance issue")]
pub enum Verdict {
    Allow,
    Deny,
    RequireApproval,
    AllowWithConstraints,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Allow => "ALLOW",
            Verdict::Deny => "DENY",
            Verdict::RequireApproval => "REQUIRE_APPROVAL",
            Verdict::AllowWithConstraints => "ALLOW_WITH_CONSTRAINTS",
        })
    }
}

/// A decision and why: written to the ledger before anything is forwarded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// Deterministic, human-readable: the same inputs give the same text.
    pub reason: String,
    /// The policy rule that matched, if a policy decided.
    pub rule: Option<String>,
    /// Hash of the policy in force, if a policy decided.
    pub policy_hash: Option<String>,
}

/// Decides whether a call may go ahead. Must be deterministic and must not
/// block: it runs on the request path, after the request event is durable
/// and before the decision event is written.
pub trait Decider: Send + Sync {
    fn decide(&self, call: &CallRequest<'_>) -> Decision;
}

/// The decision before governance exists: ALLOW for an authenticated caller
/// on a server declared in the config, DENY otherwise.
pub struct ConfiguredServers {
    servers: BTreeSet<String>,
}

impl ConfiguredServers {
    pub fn new(servers: impl IntoIterator<Item = String>) -> ConfiguredServers {
        ConfiguredServers {
            servers: servers.into_iter().collect(),
        }
    }
}

impl Decider for ConfiguredServers {
    fn decide(&self, call: &CallRequest<'_>) -> Decision {
        let (verdict, reason) = if !self.servers.contains(call.server) {
            (Verdict::Deny, format!("server {:?} is not configured", call.server))
        } else if call.principal.method == AuthMethod::Anonymous {
            (
                Verdict::Allow,
                format!(
                    "server {:?} is configured; anonymous caller accepted as {:?} by gateway.anonymous_principal",
                    call.server, call.principal.name
                ),
            )
        } else {
            (
                Verdict::Allow,
                format!(
                    "server {:?} is configured and caller {:?} is authenticated ({})",
                    call.server,
                    call.principal.name,
                    call.principal.method.as_str()
                ),
            )
        };
        Decision {
            verdict,
            reason,
            rule: None,
            policy_hash: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call<'a>(server: &'a str, principal: &'a Principal) -> CallRequest<'a> {
        CallRequest {
            server,
            env: &[],
            principal,
            method: "tools/call",
            target: Some("echo"),
            arguments: None,
        }
    }

    #[test]
    fn configured_servers_allow_and_others_deny_deterministically() {
        let d = ConfiguredServers::new(["everything".to_string()]);
        let alice = Principal {
            name: "alice".into(),
            teams: vec![],
            method: AuthMethod::Token,
        };
        let allow = d.decide(&call("everything", &alice));
        assert_eq!(allow.verdict, Verdict::Allow);
        let deny = d.decide(&call("shadow", &alice));
        assert_eq!(deny.verdict, Verdict::Deny);
        assert_eq!(deny.reason, "server \"shadow\" is not configured");
        assert_eq!(deny, d.decide(&call("shadow", &alice)));
    }
}
