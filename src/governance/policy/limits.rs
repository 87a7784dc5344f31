//! Rate limits and quotas (`limits:` in a policy): how many calls a scope of
//! calls may make in a window, counted per principal, team, server or tool.
//! The model and what a call counts under; the counting is
//! `governance::limits`.

use std::fmt;

use super::model::{Conditions, Facts};

/// What a limit counts separately: one counter per distinct value of each
/// part (`by: [principal, tool]` is a counter per principal and tool).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyPart {
    Principal,
    Team,
    Server,
    Tool,
}

impl KeyPart {
    /// In the order keys are written.
    pub const ALL: [KeyPart; 4] = [KeyPart::Principal, KeyPart::Team, KeyPart::Server, KeyPart::Tool];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyPart::Principal => "principal",
            KeyPart::Team => "team",
            KeyPart::Server => "server",
            KeyPart::Tool => "tool",
        }
    }

    pub fn parse(s: &str) -> Option<KeyPart> {
        KeyPart::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// `calls` per `per_sec` seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub calls: u64,
    pub per_sec: u64,
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} calls per {}", self.calls, span(self.per_sec))
    }
}

/// A period as a policy writes it: `90s`, `1m`, `2h`, `1d`.
pub fn span(secs: u64) -> String {
    for (unit, n) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs >= n && secs.is_multiple_of(n) {
            return format!("{}{unit}", secs / n);
        }
    }
    format!("{secs}s")
}

/// Parses `span`'s format: a whole number followed by `s`, `m`, `h` or `d`.
pub fn parse_span(s: &str) -> Option<u64> {
    let unit = s.chars().last()?;
    let n: u64 = s[..s.len() - unit.len_utf8()].parse().ok()?;
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return None,
    };
    // `+5m` and `05m` parse as numbers; a policy spells them plainly.
    if !s.starts_with(|c: char| c.is_ascii_digit() && c != '0') {
        return None;
    }
    n.checked_mul(scale).filter(|&v| v > 0)
}

/// A sliding window (`rate`, kept in memory) or a fixed window aligned to
/// the Unix epoch (`quota`, recovered from the ledger).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitKind {
    Rate,
    Quota,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Rate => "rate",
            LimitKind::Quota => "quota",
        }
    }
}

/// One entry of `limits:`, compiled.
#[derive(Clone, Debug)]
pub struct Limit {
    pub(super) id: String,
    pub(super) description: Option<String>,
    pub(super) line: u64,
    pub(super) conditions: Conditions,
    /// Sorted, without repeats.
    pub(super) by: Vec<KeyPart>,
    pub(super) rate: Option<Window>,
    pub(super) quota: Option<Window>,
}

impl Limit {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    pub fn line(&self) -> u64 {
        self.line
    }

    pub fn by(&self) -> &[KeyPart] {
        &self.by
    }

    pub fn rate(&self) -> Option<Window> {
        self.rate
    }

    pub fn quota(&self) -> Option<Window> {
        self.quota
    }

    /// Whether the call is in the limit's scope.
    pub fn applies(&self, facts: &Facts<'_>) -> bool {
        self.conditions.matches(facts)
    }

    /// The counters the call counts under: one, or one per team of the
    /// caller's when the limit counts by team (the teams `match.team`
    /// names, when it names some). A caller in no team counts under the
    /// empty team, shared by every such caller: leaving a team does not
    /// leave the limit.
    pub fn keys(&self, facts: &Facts<'_>) -> Vec<String> {
        let mut keys = vec![String::new()];
        for part in &self.by {
            let values: Vec<&str> = match part {
                KeyPart::Principal => vec![facts.principal],
                KeyPart::Server => vec![facts.server],
                KeyPart::Tool => vec![facts.target.unwrap_or("")],
                KeyPart::Team => {
                    let mut teams: Vec<&str> = facts
                        .teams
                        .iter()
                        .filter(|t| self.conditions.team.as_ref().is_none_or(|only| only.contains(t)))
                        .map(String::as_str)
                        .collect();
                    teams.sort_unstable();
                    teams.dedup();
                    if teams.is_empty() {
                        teams.push("");
                    }
                    teams
                }
            };
            keys = keys
                .iter()
                .flat_map(|k| {
                    values.iter().map(move |v| {
                        let sep = if k.is_empty() { "" } else { " " };
                        format!("{k}{sep}{}={v:?}", part.as_str())
                    })
                })
                .collect();
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_and_print_alike() {
        for (text, secs) in [
            ("1s", 1),
            ("90s", 90),
            ("1m", 60),
            ("2h", 7_200),
            ("1d", 86_400),
            ("7d", 604_800),
        ] {
            assert_eq!(parse_span(text), Some(secs), "{text}");
        }
        assert_eq!(span(90), "90s");
        assert_eq!(span(120), "2m");
        assert_eq!(span(86_400), "1d");
        for bad in [
            "",
            "m",
            "0m",
            "05m",
            "+5m",
            "-1m",
            "1",
            "1w",
            "1.5h",
            "1 m",
            "1M",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_span(bad), None, "{bad:?}");
        }
    }
}
