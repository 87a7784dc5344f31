//! Who is calling and what they ask for: what governance decides on
//! (`decide`). The gateway authenticates callers into a [`Principal`].

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
    /// The event catalogue's value.
    pub fn to_event(self) -> events::AuthMethod {
        match self {
            AuthMethod::Token => events::AuthMethod::Token,
            AuthMethod::Jwt => events::AuthMethod::Jwt,
            AuthMethod::Stdio => events::AuthMethod::Stdio,
            AuthMethod::Anonymous => events::AuthMethod::Anonymous,
        }
    }

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
    /// Admin API roles: `admin`, `approver`, `auditor`.
    pub roles: Vec<String>,
}

impl Principal {
    /// One of the gateway's own actors (`sealgate:config`, `sealgate:gateway`).
    pub fn system(name: &str) -> Principal {
        Principal {
            name: name.to_string(),
            teams: Vec::new(),
            method: AuthMethod::Stdio,
            roles: Vec::new(),
        }
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role || r == "admin")
    }
}

/// A request the gateway is about to forward.
#[derive(Debug)]
#[allow(
    dead_code,
    reason = "the policy decider of the governance issue matches on every field"
)]
pub struct CallRequest<'a> {
    pub server: &'a str,
    pub principal: &'a Principal,
    /// `tools/call`, `resources/read`, `sampling/createMessage`, ...
    pub method: &'a str,
    /// The tool, prompt or resource URI, when the method has one.
    pub target: Option<&'a str>,
    /// The gateway session the call arrives in (a session's suspension
    /// stops it here too, not only by closing the session).
    pub session: Option<&'a str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
    RequireApproval,
    AllowWithConstraints,
}

impl Verdict {
    /// The event catalogue's value.
    pub fn to_event(self) -> events::Verdict {
        match self {
            Verdict::Allow => events::Verdict::Allow,
            Verdict::Deny => events::Verdict::Deny,
            Verdict::RequireApproval => events::Verdict::RequireApproval,
            Verdict::AllowWithConstraints => events::Verdict::AllowWithConstraints,
        }
    }
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
