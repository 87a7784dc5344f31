//! What a compiled policy is made of, what evaluation is asked about
//! ([`Facts`]) and what it answers ([`Evaluation`]).

use std::fmt;

use serde::Serialize;

use super::allowlist::Allowlist;
use super::glob::Glob;
use crate::governance::Verdict;

/// What a call does, as the registry classifies the tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Read,
    Write,
    Destructive,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Read, Action::Write, Action::Destructive];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Destructive => "destructive",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// The event catalogue's value.
    pub fn to_event(self) -> events::ActionLabel {
        match self {
            Action::Read => events::ActionLabel::Read,
            Action::Write => events::ActionLabel::Write,
            Action::Destructive => events::ActionLabel::Destructive,
        }
    }

    pub(super) fn bit(self) -> u8 {
        match self {
            Action::Read => 1,
            Action::Write => 2,
            Action::Destructive => 4,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The requests a policy decides on, as `method:` names them.
pub const METHODS: [&str; 6] = [
    "tools/call",
    "resources/read",
    "prompts/get",
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
];

/// What output safety does with a secret or personal data found in the
/// result of an allowed call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputAction {
    /// Replace the finding in the result; the call succeeds.
    Redact,
    /// Withhold the result; the call fails and the result is kept aside.
    Quarantine,
    /// Pass the result through as it is (the finding is still recorded).
    Allow,
}

impl OutputAction {
    pub const ALL: [OutputAction; 3] = [OutputAction::Redact, OutputAction::Quarantine, OutputAction::Allow];

    pub fn as_str(self) -> &'static str {
        match self {
            OutputAction::Redact => "redact",
            OutputAction::Quarantine => "quarantine",
            OutputAction::Allow => "allow",
        }
    }

    pub fn parse(s: &str) -> Option<OutputAction> {
        OutputAction::ALL.into_iter().find(|a| a.as_str() == s)
    }

    pub fn to_event(self) -> events::SafetyAction {
        match self {
            OutputAction::Redact => events::SafetyAction::Redact,
            OutputAction::Quarantine => events::SafetyAction::Quarantine,
            OutputAction::Allow => events::SafetyAction::Allow,
        }
    }
}

impl fmt::Display for OutputAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Output safety for the results of allowed calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct OutputPolicy {
    pub secrets: OutputAction,
    pub pii: OutputAction,
}

impl OutputPolicy {
    pub fn to_event(self) -> events::OutputRule {
        events::OutputRule {
            secrets: self.secrets.to_event(),
            pii: self.pii.to_event(),
        }
    }
}

impl Approval {
    pub fn to_event(&self) -> events::RuleApproval {
        events::RuleApproval {
            timeout_sec: self.timeout_sec,
            approvers: events::Approvers {
                teams: self.approvers.teams.clone(),
                principals: self.approvers.principals.clone(),
            },
        }
    }
}

impl Constraints {
    pub fn to_event(&self) -> events::RuleConstraints {
        events::RuleConstraints {
            max_runtime_sec: self.max_runtime_sec,
            max_retries: self.max_retries,
            max_result_bytes: self.max_result_bytes,
            on_oversize: match self.on_oversize {
                OnOversize::Truncate => events::OnOversize::Truncate,
                OnOversize::Refuse => events::OnOversize::Refuse,
            },
            network_allowlist: self.network_allowlist.as_ref().map(Allowlist::entries),
        }
    }
}

impl Default for OutputPolicy {
    fn default() -> OutputPolicy {
        OutputPolicy {
            secrets: OutputAction::Redact,
            pii: OutputAction::Redact,
        }
    }
}

/// Who may approve, and how long the call waits for them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Approval {
    pub timeout_sec: u64,
    pub approvers: Approvers,
}

/// Any member of `teams` or any of `principals` may approve. At least one
/// of the two lists is non-empty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Approvers {
    pub teams: Vec<String>,
    pub principals: Vec<String>,
}

/// What happens to a result over `max_result_bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnOversize {
    Truncate,
    Refuse,
}

impl OnOversize {
    pub const ALL: [OnOversize; 2] = [OnOversize::Truncate, OnOversize::Refuse];

    pub fn as_str(self) -> &'static str {
        match self {
            OnOversize::Truncate => "truncate",
            OnOversize::Refuse => "refuse",
        }
    }

    pub fn parse(s: &str) -> Option<OnOversize> {
        OnOversize::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// Limits an ALLOW_WITH_CONSTRAINTS call runs under. At least one `max_*`
/// or the allowlist is set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Constraints {
    pub max_runtime_sec: Option<u64>,
    pub max_retries: Option<u32>,
    pub max_result_bytes: Option<u64>,
    pub on_oversize: OnOversize,
    /// The hosts the call may name (`governance::egress`); `None`: any.
    pub network_allowlist: Option<Allowlist>,
}

/// What a decision is about: the call and what is known of its caller and
/// server.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    /// The configured server name.
    pub server: &'a str,
    /// `tools/call`, `resources/read`, `prompts/get`, ...
    pub method: &'a str,
    /// The tool name, prompt name or resource URI, if the method has one.
    pub target: Option<&'a str>,
    pub principal: &'a str,
    pub teams: &'a [String],
    /// The server's environment labels.
    pub env: &'a [String],
    /// The server's risk tags.
    pub risk: &'a [String],
    /// What the tool does; `None` (unknown) never matches an `action:`
    /// condition.
    pub action: Option<Action>,
}

/// The answer for one call: deterministic, the same facts give the same
/// evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    /// The id of the rule that matched; `None` for the default DENY.
    pub rule: Option<String>,
    pub verdict: Verdict,
    /// Names the rule (and carries its `reason:`), or says no rule matched.
    pub reason: String,
    /// Set iff the verdict is REQUIRE_APPROVAL.
    pub approval: Option<Approval>,
    /// Set iff the verdict is ALLOW_WITH_CONSTRAINTS.
    pub constraints: Option<Constraints>,
    /// Output safety for the result, should the call run.
    pub output: OutputPolicy,
}

/// The reason of the default decision.
pub const NO_MATCH_REASON: &str = "no rule matched: default DENY";

/// One rule, compiled.
#[derive(Clone, Debug)]
pub struct Rule {
    pub(super) id: String,
    pub(super) description: Option<String>,
    pub(super) line: u64,
    pub(super) conditions: Conditions,
    pub(super) verdict: Verdict,
    pub(super) approval: Option<Approval>,
    pub(super) constraints: Option<Constraints>,
    /// The policy's output safety with the rule's own `output:` applied.
    pub(super) output: OutputPolicy,
    /// The evaluation's reason, made once.
    pub(super) reason: String,
}

impl Rule {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// The line of the policy text the rule starts on.
    pub fn line(&self) -> u64 {
        self.line
    }

    pub(super) fn evaluation(&self) -> Evaluation {
        Evaluation {
            rule: Some(self.id.clone()),
            verdict: self.verdict,
            reason: self.reason.clone(),
            approval: self.approval.clone(),
            constraints: self.constraints.clone(),
            output: self.output,
        }
    }
}

/// The `match:` of a rule. `None` is a condition not given; a given one is
/// never empty.
#[derive(Clone, Debug, Default)]
pub(super) struct Conditions {
    pub(super) server: Option<Vec<Glob>>,
    pub(super) tool: Option<Vec<Glob>>,
    pub(super) method: Option<Vec<String>>,
    pub(super) principal: Option<Vec<String>>,
    pub(super) team: Option<Vec<String>>,
    pub(super) env: Option<Vec<String>>,
    pub(super) risk: Option<Vec<String>>,
    /// [`Action::bit`]s.
    pub(super) action: Option<u8>,
}

impl Conditions {
    /// Whether every given condition holds: the definition of a match, which
    /// the index only narrows down the rules to try it on.
    pub(super) fn matches(&self, f: &Facts<'_>) -> bool {
        fn one_of(values: &Option<Vec<String>>, x: &str) -> bool {
            values.as_ref().is_none_or(|v| v.iter().any(|s| s == x))
        }
        fn any_of(values: &Option<Vec<String>>, xs: &[String]) -> bool {
            values.as_ref().is_none_or(|v| v.iter().any(|s| xs.contains(s)))
        }
        fn glob(globs: &Option<Vec<Glob>>, x: Option<&str>) -> bool {
            match (globs, x) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(g), Some(x)) => g.iter().any(|g| g.matches(x)),
            }
        }
        one_of(&self.method, f.method)
            && self
                .action
                .is_none_or(|bits| f.action.is_some_and(|a| bits & a.bit() != 0))
            && glob(&self.server, Some(f.server))
            && one_of(&self.principal, f.principal)
            && glob(&self.tool, f.target)
            && any_of(&self.team, f.teams)
            && any_of(&self.env, f.env)
            && any_of(&self.risk, f.risk)
    }
}
