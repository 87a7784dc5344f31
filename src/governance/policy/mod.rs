//! The policy language: YAML rules, reviewable like code, that decide each
//! call. The first rule whose `match` holds decides; when none does, the
//! call is denied. `docs/POLICY.md` is the language's reference.
//!
//! - `parse`: YAML to compiled rules, errors with line, column and rule id.
//! - `model`: rules, [`Facts`] (what a decision is about), [`Evaluation`].
//! - `glob`: the globs of `server:` and `tool:`.
//! - `eval`: the index that finds the first match without trying every
//!   rule.
//!
//! ```text
//! let policy = Policy::parse(&text, "policy.yaml")?;
//! let evaluation = policy.evaluate(&facts);
//! ```

mod allowlist;
mod eval;
mod glob;
mod limits;
mod model;
mod parse;

use std::fmt;

pub use allowlist::{Allowlist, Dest, Entry};
#[allow(
    unused_imports,
    reason = "grants use it; the policy bench includes this module without them"
)]
pub use glob::glob_matches;
pub use limits::{KeyPart, Limit, LimitKind, Window, span};
#[allow(
    unused_imports,
    reason = "the policy API; the gateway uses all of it with the governance work"
)]
pub use model::{
    Action, Approval, Approvers, Constraints, Evaluation, Facts, METHODS, NO_MATCH_REASON, OnOversize, OutputAction,
    OutputPolicy, Rule,
};
pub use parse::PolicyError;

use crate::governance::Verdict;
use eval::Index;

/// A parsed, checked and indexed policy, with the text it came from.
pub struct Policy {
    text: String,
    hash: String,
    origin: String,
    rules: Vec<Rule>,
    output: OutputPolicy,
    limits: Vec<Limit>,
    index: Index,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("origin", &self.origin)
            .field("hash", &self.hash)
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// Parses and checks a policy. `origin` (a file name, or `<policy>`)
    /// starts every error message.
    pub fn parse(text: &str, origin: &str) -> Result<Policy, PolicyError> {
        let compiled = parse::parse(text, origin)?;
        let index = Index::new(&compiled.rules);
        Ok(Policy {
            text: text.to_string(),
            hash: format!("blake3:{}", blake3::hash(text.as_bytes()).to_hex()),
            origin: origin.to_string(),
            rules: compiled.rules,
            output: compiled.output,
            limits: compiled.limits,
            index,
        })
    }

    /// [`Policy::parse`] of bytes as loaded from a file: they must be UTF-8.
    pub fn parse_bytes(bytes: &[u8], origin: &str) -> Result<Policy, PolicyError> {
        match std::str::from_utf8(bytes) {
            Ok(text) => Policy::parse(text, origin),
            Err(e) => {
                let valid = &bytes[..e.valid_up_to()];
                let line = valid.iter().filter(|b| **b == b'\n').count() as u64 + 1;
                let line_start = valid.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                let column = String::from_utf8_lossy(&valid[line_start..]).chars().count() as u64 + 1;
                Err(PolicyError {
                    origin: origin.to_string(),
                    line,
                    column,
                    rule: None,
                    message: "the policy is not valid UTF-8".to_string(),
                })
            }
        }
    }

    /// `blake3:<hex>` of the text, byte for byte: what decisions record as
    /// the policy in force.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The text as given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The file name or `<policy>` given to [`Policy::parse`].
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The rules in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rate limits and quotas, in order. Every limit whose `match`
    /// holds counts a call (not only the first).
    pub fn limits(&self) -> &[Limit] {
        &self.limits
    }

    /// The policy-wide output safety (rules may override it).
    pub fn output(&self) -> OutputPolicy {
        self.output
    }

    /// Decides a call: the first rule that matches, else DENY.
    pub fn evaluate(&self, facts: &Facts<'_>) -> Evaluation {
        match self.index.first_match(&self.rules, facts) {
            Some(i) => self.rules[i].evaluation(),
            None => self.no_match(),
        }
    }

    /// [`Policy::evaluate`] by trying every rule in order, without the index:
    /// the definition, kept for the property test and the benchmark.
    #[allow(dead_code, reason = "the reference for the property test and the benchmark")]
    pub fn evaluate_linear(&self, facts: &Facts<'_>) -> Evaluation {
        match eval::first_match_linear(&self.rules, facts) {
            Some(i) => self.rules[i].evaluation(),
            None => self.no_match(),
        }
    }

    fn no_match(&self) -> Evaluation {
        Evaluation {
            rule: None,
            verdict: Verdict::Deny,
            reason: NO_MATCH_REASON.to_string(),
            approval: None,
            constraints: None,
            output: self.output,
        }
    }
}

#[cfg(test)]
mod tests;
