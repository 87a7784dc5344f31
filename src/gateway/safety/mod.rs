//! Output safety: finds secrets and personal data in what upstream servers
//! return, so that the gateway can redact them, withhold the result
//! (quarantine) or let it through, before a result reaches a client and
//! before it is excerpted into the ledger.
//!
//! - [`scan`] finds non-overlapping [`Finding`]s in a string, [`redact`]
//!   replaces them with `[REDACTED:<detector>]`, [`redact_text_for_log`]
//!   does both (for error messages and log lines).
//! - [`scan_json`] walks a JSON value (an MCP result) and applies a
//!   [`ScanPolicy`]; its [`Report`] says what was found where, never what.
//!   What it redacted is kept in memory ([`ScanOutcome::values`], never
//!   serialised) for the keyed digests that make it findable
//!   (`gateway::findable`).
//!
//! The detectors (`detectors.rs`) are secrets — `private_key_block`, `jwt`,
//! `github_token`, `slack_token`, `aws_access_key_id`,
//! `aws_secret_access_key`, `password_assignment` — and personal data —
//! `iban`, `credit_card`, `us_ssn`, `email`, `phone_number`. Each finds
//! candidates with a loose regular expression and keeps those that pass a
//! validation (checksums: Luhn for cards, mod-97 for IBANs; ranges for SSNs;
//! a JOSE header for JWTs; token boundaries for all).
//!
//! **Overlaps.** Candidates of all detectors are resolved greedily in this
//! order, each keeping the parts of it that nothing kept before covers (so
//! every byte any validated candidate covers is redacted, and each is
//! attributed to one detector):
//!
//! 1. secrets before personal data (a secret is never let through because it
//!    also looks like an email or a phone number);
//! 2. longer before shorter (a private key block swallows everything in it;
//!    a password value longer than a token inside it is redacted whole);
//! 3. the more specific detector first, in the order listed above (a JWT or
//!    an AWS key that is exactly a `password_assignment` value is reported
//!    as `jwt` or `aws_access_key_id`);
//! 4. earlier first.
//!
//! **JSON.** Every string is scanned, object keys included (maps keyed by
//! email address are common in structured content). A string member whose
//! key names a secret (`{"password": "..."}`, see
//! [`detectors::is_secret_key`]) is a `password_assignment` as a whole.
//! Locations are RFC 6901 pointers to the string plus a byte offset in it;
//! a finding in a key has `key: true` and the pointer of its member. Pointer
//! segments are keys with their own findings replaced by placeholders, so a
//! report never carries matched text, whatever the policy (with
//! [`Action::Allow`] such a key stays as it was in the redacted value, and a
//! pointer through it does not resolve there). Two keys that redact to the
//! same name are kept apart with a ` #2` suffix. Numbers, booleans and nulls
//! are not scanned.
//!
//! **Cost.** Linear in the text, whatever it holds (an upstream controls
//! what it returns; `pathological_inputs_scan_in_linear_time` guards this):
//! ~5 ms per MiB of ordinary text and ~10 ms per MiB dense with findings,
//! optimised, on the 2-core development box (`benches/safety.rs`).
//!
//! **Not required:** the CRC32 in GitHub tokens. The `gh?_` and
//! `github_pat_` prefixes with the exact length already make false positives
//! negligible, and requiring the checksum would only let truncated or
//! hand-typed real tokens through.
//!
//! The module depends on nothing in the crate but [`crate::json`].

mod detectors;

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::json::Json;
use serde::{Deserialize, Serialize};

use detectors::Candidate;

/// What kind of data a detector finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Secret,
    Pii,
}

/// One finding: byte offsets into the scanned string (on character
/// boundaries, `start < end`). For `password_assignment` the range is the
/// value only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finding {
    pub detector: &'static str,
    pub category: Category,
    pub start: usize,
    pub end: usize,
}

/// What to do with a category of findings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Replace each finding with `[REDACTED:<detector>]`.
    Redact,
    /// Withhold the whole result; the findings are redacted in
    /// [`ScanOutcome::redacted`] too, so that it can still be recorded.
    Quarantine,
    /// Let the findings through (they are still reported).
    Allow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanPolicy {
    pub secrets: Action,
    pub pii: Action,
}

impl ScanPolicy {
    pub fn action(&self, category: Category) -> Action {
        match category {
            Category::Secret => self.secrets,
            Category::Pii => self.pii,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ScanOutcome {
    /// The value with every finding whose category is not
    /// [`Action::Allow`] redacted; safe to excerpt into the ledger under the
    /// policy.
    pub redacted: Json,
    /// Some finding's category maps to [`Action::Quarantine`]: withhold the
    /// result.
    pub quarantine: bool,
    pub report: Report,
    /// The text of every finding the policy did not allow (so redacted in
    /// [`ScanOutcome::redacted`]): what findable digests are made of
    /// (`gateway::findable`). Never serialised; `Debug` shows the count.
    pub values: RedactedValues,
}

/// The original text of redacted findings, each with its category, in the
/// order they were found. Held in memory only, to digest them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RedactedValues(Vec<(Category, String)>);

impl RedactedValues {
    pub fn iter(&self) -> impl Iterator<Item = (Category, &str)> {
        self.0.iter().map(|(c, s)| (*c, s.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Both lists, `self`'s first.
    pub fn extend(&mut self, other: RedactedValues) {
        self.0.extend(other.0);
    }
}

impl std::fmt::Debug for RedactedValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedactedValues({} values)", self.0.len())
    }
}

/// At most this many locations are listed per detector; `count` is always
/// the full count.
pub const MAX_LOCATIONS: usize = 100;

/// What was found, where, and what was done: never the matched text.
/// Detectors are sorted by name, locations by pointer (numeric segments
/// numerically), then key before value, then offset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub findings: Vec<DetectorReport>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DetectorReport {
    pub detector: &'static str,
    pub category: Category,
    pub action: Action,
    pub count: usize,
    pub locations: Vec<Location>,
    /// More than [`MAX_LOCATIONS`] locations; the first are listed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Location {
    /// RFC 6901 pointer to the string (for a key: to its member).
    pub pointer: String,
    /// Byte offset of the finding in the string.
    pub offset: usize,
    /// The finding is in the member's key, not in a string value.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub key: bool,
}

impl Report {
    pub fn is_empty(&self) -> bool {
        self.findings.is_empty()
    }

    /// The findings as the event catalogue has them.
    pub fn to_event(&self) -> Vec<events::Finding> {
        self.findings
            .iter()
            .map(|f| events::Finding {
                detector: f.detector.to_string(),
                category: match f.category {
                    Category::Secret => events::Category::Secret,
                    Category::Pii => events::Category::Pii,
                },
                action: match f.action {
                    Action::Redact => events::SafetyAction::Redact,
                    Action::Quarantine => events::SafetyAction::Quarantine,
                    Action::Allow => events::SafetyAction::Allow,
                },
                count: f.count as u64,
                locations: f
                    .locations
                    .iter()
                    .map(|l| events::Location {
                        pointer: l.pointer.clone(),
                        offset: l.offset as u64,
                        key: l.key,
                    })
                    .collect(),
                truncated: f.truncated,
            })
            .collect()
    }
}

/// The findings in `text`, non-overlapping, in order (see the module
/// documentation for how overlaps are resolved).
pub fn scan(text: &str) -> Vec<Finding> {
    let mut candidates = Vec::new();
    detectors::candidates(text, &mut candidates);
    resolve(candidates)
}

/// `text` with each finding replaced by `[REDACTED:<detector>]`; everything
/// else byte for byte. Findings may come in any order; ranges are widened
/// to character boundaries, and overlapping ones merge into the first
/// placeholder.
pub fn redact(text: &str, findings: &[Finding]) -> String {
    let mut spans: Vec<(usize, usize, &str)> = findings
        .iter()
        .map(|f| {
            let mut start = f.start.min(text.len());
            while !text.is_char_boundary(start) {
                start -= 1;
            }
            let mut end = f.end.min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            (start, end, f.detector)
        })
        .filter(|(start, end, _)| start < end)
        .collect();
    spans.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut out = String::with_capacity(text.len());
    let mut cursor = 0;
    for (start, end, detector) in spans {
        if start < cursor {
            // Overlaps the previous placeholder, which now covers it.
            cursor = cursor.max(end);
            continue;
        }
        out.push_str(&text[cursor..start]);
        out.push_str("[REDACTED:");
        out.push_str(detector);
        out.push(']');
        cursor = end;
    }
    out.push_str(&text[cursor..]);
    out
}

/// Whether a name (a JSON key, a command-line flag, a query parameter)
/// names a secret: `password`, `api_key`, `--token`, ...
pub fn is_secret_name(name: &str) -> bool {
    detectors::is_secret_key(name)
}

/// `text` with every finding redacted: for error messages and log lines.
pub fn redact_text_for_log(text: &str) -> String {
    let findings = scan(text);
    if findings.is_empty() {
        return text.to_string();
    }
    redact(text, &findings)
}

/// Scans every string of `value` (object keys included), redacts per
/// `policy`, and reports.
pub fn scan_json(value: &Json, policy: &ScanPolicy) -> ScanOutcome {
    let mut walk = Walk {
        policy: *policy,
        pointer: String::new(),
        hits: Vec::new(),
        quarantine: false,
        values: Vec::new(),
    };
    let redacted = walk.value(value, None);
    ScanOutcome {
        redacted,
        quarantine: walk.quarantine,
        report: report(walk.hits, policy),
        values: RedactedValues(walk.values),
    }
}

/// [`scan_json`] off the async workers when the value is large (over
/// 64 KiB of text): a scan costs ~5-10 ms per MiB.
pub async fn scan_json_async(value: Json, policy: ScanPolicy) -> ScanOutcome {
    if approximate_size(&value, 0) < 64 << 10 {
        return scan_json(&value, &policy);
    }
    match tokio::task::spawn_blocking(move || scan_json(&value, &policy)).await {
        Ok(outcome) => outcome,
        // Only a panic in the scan gets here: withhold everything.
        Err(e) => ScanOutcome {
            redacted: Json::String(format!("[REDACTED: the value could not be scanned: {e}]")),
            quarantine: true,
            report: Report {
                findings: vec![DetectorReport {
                    detector: "scan_failed",
                    category: Category::Secret,
                    action: Action::Quarantine,
                    count: 1,
                    locations: Vec::new(),
                    truncated: false,
                }],
            },
            values: RedactedValues::default(),
        },
    }
}

/// The text size of a value, roughly; stops counting past 64 KiB.
fn approximate_size(value: &Json, so_far: usize) -> usize {
    if so_far >= 64 << 10 {
        return so_far;
    }
    match value {
        Json::String(s) => so_far + s.len() + 2,
        Json::Number(n) => so_far + n.len(),
        Json::Array(items) => items.iter().fold(so_far + 2, |n, i| approximate_size(i, n)),
        Json::Object(members) => members
            .iter()
            .fold(so_far + 2, |n, (k, v)| approximate_size(v, n + k.len() + 3)),
        _ => so_far + 4,
    }
}

/// Greedy resolution in the documented order: each candidate keeps the
/// parts of it that no finding kept before covers.
fn resolve(mut candidates: Vec<Candidate>) -> Vec<Finding> {
    candidates.sort_by(|a, b| {
        let (fa, fb) = (&a.finding, &b.finding);
        fa.category
            .cmp(&fb.category)
            .then((fb.end - fb.start).cmp(&(fa.end - fa.start)))
            .then(a.rank.cmp(&b.rank))
            .then(fa.start.cmp(&fb.start))
    });
    let mut kept: BTreeMap<usize, Finding> = BTreeMap::new();
    for Candidate { finding, .. } in candidates {
        // Kept findings are disjoint: walk those that can overlap this one.
        let from = kept
            .range(..=finding.start)
            .next_back()
            .map_or(finding.start, |(&start, _)| start);
        let mut pieces = Vec::new();
        let mut cursor = finding.start;
        for k in kept.range(from..finding.end).map(|(_, k)| k) {
            if k.end <= cursor {
                continue;
            }
            if k.start > cursor {
                pieces.push((cursor, k.start));
            }
            cursor = k.end;
        }
        if cursor < finding.end {
            pieces.push((cursor, finding.end));
        }
        for (start, end) in pieces {
            kept.insert(start, Finding { start, end, ..finding });
        }
    }
    kept.into_values().collect()
}

struct Hit {
    detector: &'static str,
    category: Category,
    location: Location,
}

struct Walk {
    policy: ScanPolicy,
    /// The pointer of the value being walked.
    pointer: String,
    hits: Vec<Hit>,
    quarantine: bool,
    /// The text of each finding redacted.
    values: Vec<(Category, String)>,
}

impl Walk {
    /// `key` is the member name when `v` is a member's value.
    fn value(&mut self, v: &Json, key: Option<&str>) -> Json {
        match v {
            Json::String(s) => {
                let mut candidates = Vec::new();
                detectors::candidates(s, &mut candidates);
                if let Some(whole) = key.and_then(|k| detectors::structured_assignment(k, s)) {
                    candidates.push(whole);
                }
                let findings = resolve(candidates);
                self.record(&findings, false);
                Json::String(self.apply(s, &findings))
            }
            Json::Array(items) => {
                let len = self.pointer.len();
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    self.pointer.push('/');
                    self.pointer.push_str(&i.to_string());
                    out.push(self.value(item, None));
                    self.pointer.truncate(len);
                }
                Json::Array(out)
            }
            Json::Object(members) => {
                let len = self.pointer.len();
                let mut out: Vec<(String, Json)> = Vec::with_capacity(members.len());
                for (k, item) in members {
                    let findings = scan(k);
                    let segment = if findings.is_empty() {
                        k.clone()
                    } else {
                        redact(k, &findings)
                    };
                    self.pointer.push('/');
                    self.pointer.push_str(&segment.replace('~', "~0").replace('/', "~1"));
                    self.record(&findings, true);
                    let name = self.apply(k, &findings);
                    let child = self.value(item, Some(k));
                    insert_unique(&mut out, name, child);
                    self.pointer.truncate(len);
                }
                Json::Object(out)
            }
            other => other.clone(),
        }
    }

    fn record(&mut self, findings: &[Finding], key: bool) {
        for f in findings {
            if self.policy.action(f.category) == Action::Quarantine {
                self.quarantine = true;
            }
            self.hits.push(Hit {
                detector: f.detector,
                category: f.category,
                location: Location {
                    pointer: self.pointer.clone(),
                    offset: f.start,
                    key,
                },
            });
        }
    }

    /// `s` with the findings the policy does not allow redacted (their
    /// text kept in `values`).
    fn apply(&mut self, s: &str, findings: &[Finding]) -> String {
        let hidden: Vec<Finding> = findings
            .iter()
            .filter(|f| self.policy.action(f.category) != Action::Allow)
            .copied()
            .collect();
        for f in &hidden {
            if let Some(text) = s.get(f.start..f.end) {
                self.values.push((f.category, text.to_string()));
            }
        }
        if hidden.is_empty() {
            s.to_string()
        } else {
            redact(s, &hidden)
        }
    }
}

/// Inserts without overwriting: two keys that redact to the same name are
/// kept apart with a ` #2`, ` #3`, ... suffix.
fn insert_unique(members: &mut Vec<(String, Json)>, name: String, value: Json) {
    let taken = |members: &Vec<(String, Json)>, n: &str| members.iter().any(|(k, _)| k == n);
    if !taken(members, &name) {
        members.push((name, value));
        return;
    }
    let mut n = 2;
    loop {
        let candidate = format!("{name} #{n}");
        if !taken(members, &candidate) {
            members.push((candidate, value));
            return;
        }
        n += 1;
    }
}

fn report(hits: Vec<Hit>, policy: &ScanPolicy) -> Report {
    let mut by_detector: BTreeMap<&'static str, (Category, Vec<Location>)> = BTreeMap::new();
    for hit in hits {
        by_detector
            .entry(hit.detector)
            .or_insert_with(|| (hit.category, Vec::new()))
            .1
            .push(hit.location);
    }
    let findings = by_detector
        .into_iter()
        .map(|(detector, (category, mut locations))| {
            locations.sort_by(|a, b| {
                compare_pointers(&a.pointer, &b.pointer)
                    .then(b.key.cmp(&a.key))
                    .then(a.offset.cmp(&b.offset))
            });
            let count = locations.len();
            locations.truncate(MAX_LOCATIONS);
            DetectorReport {
                detector,
                category,
                action: policy.action(category),
                count,
                locations,
                truncated: count > MAX_LOCATIONS,
            }
        })
        .collect();
    Report { findings }
}

/// Segment by segment; two decimal segments compare as numbers.
fn compare_pointers(a: &str, b: &str) -> Ordering {
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    let mut sa = a.split('/');
    let mut sb = b.split('/');
    loop {
        match (sa.next(), sb.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = if numeric(x) && numeric(y) {
                    x.len().cmp(&y.len()).then(x.cmp(y))
                } else {
                    x.cmp(y)
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    /// [`super::ScanOutcome`] with the redacted value as a
    /// `serde_json::Value`, so the cases read as JSON literals.
    struct ScanOutcome {
        redacted: Value,
        quarantine: bool,
        report: Report,
    }

    fn scan_json(value: &Value, policy: &ScanPolicy) -> ScanOutcome {
        let outcome = super::scan_json(&Json::from_serde(value), policy);
        ScanOutcome {
            redacted: outcome.redacted.to_serde(),
            quarantine: outcome.quarantine,
            report: outcome.report,
        }
    }

    const JWS: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    const REDACT: ScanPolicy = ScanPolicy {
        secrets: Action::Redact,
        pii: Action::Redact,
    };

    fn found(text: &str) -> Vec<(&'static str, &str)> {
        scan(text)
            .into_iter()
            .map(|f| (f.detector, &text[f.start..f.end]))
            .collect()
    }

    #[test]
    fn overlaps_resolve_by_category_then_length_then_specificity() {
        // A private key block swallows everything inside it.
        let block = "-----BEGIN RSA PRIVATE KEY-----\nAKIAIOSFODNN7EXAMPLE alice@example.com\npassword=hunter2 4111 1111 1111 1111\n-----END RSA PRIVATE KEY-----";
        assert_eq!(found(block), vec![("private_key_block", block)]);
        // A token that is exactly the assigned value: the specific detector.
        assert_eq!(found(&format!("token={JWS}")), vec![("jwt", JWS)]);
        assert_eq!(
            found("AWS_ACCESS_KEY=AKIAIOSFODNN7EXAMPLE"),
            vec![("aws_access_key_id", "AKIAIOSFODNN7EXAMPLE")]
        );
        // A value longer than the token inside it is redacted whole.
        assert_eq!(
            found("password=x-AKIAIOSFODNN7EXAMPLE"),
            vec![("password_assignment", "x-AKIAIOSFODNN7EXAMPLE")]
        );
        // A secret beats personal data it overlaps, even when shorter.
        assert_eq!(
            found("password=alice@example.com"),
            vec![("password_assignment", "alice@example.com")]
        );
        assert_eq!(
            found("postgres://admin:hunter2@db.example.com/app"),
            vec![("password_assignment", "hunter2")]
        );
        // Partial overlap: the loser keeps what the winner does not cover,
        // so no part of either is left in the clear.
        let glued = "password=abc123.-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA0Z3V\n";
        assert_eq!(
            found(glued),
            vec![
                ("password_assignment", "abc123."),
                (
                    "private_key_block",
                    "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA0Z3V"
                )
            ]
        );
        assert_eq!(
            redact_text_for_log(glued),
            "password=[REDACTED:password_assignment][REDACTED:private_key_block]\n"
        );
        // Disjoint findings are all kept, in order.
        assert_eq!(
            found("mail alice@example.com or call +1 415 555 2671, SSN 123-45-6789"),
            vec![
                ("email", "alice@example.com"),
                ("phone_number", "+1 415 555 2671"),
                ("us_ssn", "123-45-6789")
            ]
        );
    }

    #[test]
    fn redaction_keeps_everything_else_byte_for_byte() {
        let text = "Grüße 🙂 key AKIAIOSFODNN7EXAMPLE, mail bob@example.com\r\n\tpassword=hunter2 日本";
        assert_eq!(
            redact_text_for_log(text),
            "Grüße 🙂 key [REDACTED:aws_access_key_id], mail [REDACTED:email]\r\n\tpassword=[REDACTED:password_assignment] 日本"
        );
        // Redacting again changes nothing: placeholders are not findings.
        let once = redact_text_for_log(text);
        assert_eq!(redact_text_for_log(&once), once);
        assert_eq!(redact_text_for_log("nothing here"), "nothing here");
    }

    #[test]
    fn redact_tolerates_unsorted_overlapping_and_odd_ranges() {
        let f = |detector, start, end| Finding {
            detector,
            category: Category::Secret,
            start,
            end,
        };
        let text = "0123456789é";
        let findings = [f("b", 6, 8), f("a", 2, 5), f("c", 4, 7), f("d", 10, 11), f("e", 3, 3)];
        // c overlaps a and b: it merges into a's placeholder, b's remainder too.
        assert_eq!(redact(text, &findings), "01[REDACTED:a]89[REDACTED:d]");
        assert_eq!(redact(text, &[f("x", 5, 99)]), "01234[REDACTED:x]");
    }

    #[test]
    fn json_walk_reports_pointers_and_offsets() {
        let result = json!({
            "content": [
                {"type": "text", "text": "hello"},
                {"type": "text", "text": "mail alice@example.com, key AKIAIOSFODNN7EXAMPLE"}
            ],
            "structuredContent": {
                "users": [{"name": "bob", "email": "bob@example.com"}, {"phone": "+44 20 7946 0958"}],
                "db": {"password": "hunter2", "token_type": "Bearer", "v2/api~key": "s3cr3t"},
                "carol@example.com": {"n": 1},
                "count": 4111111111111111u64
            },
            "isError": false
        });
        let outcome = scan_json(&result, &REDACT);
        assert!(!outcome.quarantine);
        assert_eq!(
            outcome.redacted,
            json!({
                "content": [
                    {"type": "text", "text": "hello"},
                    {"type": "text", "text": "mail [REDACTED:email], key [REDACTED:aws_access_key_id]"}
                ],
                "structuredContent": {
                    "users": [{"name": "bob", "email": "[REDACTED:email]"}, {"phone": "[REDACTED:phone_number]"}],
                    "db": {
                        "password": "[REDACTED:password_assignment]",
                        "token_type": "Bearer",
                        "v2/api~key": "[REDACTED:password_assignment]"
                    },
                    "[REDACTED:email]": {"n": 1},
                    "count": 4111111111111111u64
                },
                "isError": false
            })
        );
        let report = serde_json::to_value(&outcome.report).expect("report serializes");
        assert_eq!(
            report,
            json!({"findings": [
                {"detector": "aws_access_key_id", "category": "secret", "action": "redact", "count": 1,
                 "locations": [{"pointer": "/content/1/text", "offset": 28}]},
                {"detector": "email", "category": "pii", "action": "redact", "count": 3,
                 "locations": [
                    {"pointer": "/content/1/text", "offset": 5},
                    {"pointer": "/structuredContent/[REDACTED:email]", "offset": 0, "key": true},
                    {"pointer": "/structuredContent/users/0/email", "offset": 0}
                 ]},
                {"detector": "password_assignment", "category": "secret", "action": "redact", "count": 2,
                 "locations": [
                    {"pointer": "/structuredContent/db/password", "offset": 0},
                    {"pointer": "/structuredContent/db/v2~1api~0key", "offset": 0}
                 ]},
                {"detector": "phone_number", "category": "pii", "action": "redact", "count": 1,
                 "locations": [{"pointer": "/structuredContent/users/1/phone", "offset": 0}]}
            ]})
        );
        // Every pointer (keys unredacted where the segment had no finding)
        // resolves in the redacted value.
        for detector in &outcome.report.findings {
            for location in &detector.locations {
                assert!(
                    outcome.redacted.pointer(&location.pointer).is_some(),
                    "{}",
                    location.pointer
                );
            }
        }
    }

    #[test]
    fn policies_redact_quarantine_or_allow_per_category() {
        let result = json!({"content": [{"type": "text", "text": "alice@example.com ghp_abcdefghijklmnopqrstuvwxyz0123456789"}]});
        let text = |o: &ScanOutcome| {
            o.redacted["content"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };

        let allow_pii = scan_json(
            &result,
            &ScanPolicy {
                secrets: Action::Redact,
                pii: Action::Allow,
            },
        );
        assert_eq!(text(&allow_pii), "alice@example.com [REDACTED:github_token]");
        assert!(!allow_pii.quarantine);
        assert_eq!(allow_pii.report.findings.len(), 2);
        assert_eq!(allow_pii.report.findings[0].action, Action::Allow);

        let quarantine = scan_json(
            &result,
            &ScanPolicy {
                secrets: Action::Quarantine,
                pii: Action::Allow,
            },
        );
        assert!(quarantine.quarantine);
        assert_eq!(text(&quarantine), "alice@example.com [REDACTED:github_token]");

        let allow = scan_json(
            &result,
            &ScanPolicy {
                secrets: Action::Allow,
                pii: Action::Allow,
            },
        );
        assert_eq!(allow.redacted, result);
        assert!(!allow.quarantine);
        assert_eq!(allow.report.findings.iter().map(|d| d.count).sum::<usize>(), 2);

        let clean = scan_json(&json!({"content": [{"type": "text", "text": "fine"}]}), &REDACT);
        assert!(clean.report.is_empty());
        assert_eq!(
            serde_json::to_string(&clean.report).expect("json"),
            r#"{"findings":[]}"#
        );
    }

    #[test]
    fn keys_that_redact_alike_stay_apart() {
        let value = json!({"a@example.com": 1, "b@example.com": 2, "[REDACTED:email] #2": 3});
        let outcome = scan_json(&value, &REDACT);
        let keys: Vec<&String> = outcome.redacted.as_object().expect("object").keys().collect();
        assert_eq!(keys.len(), 3);
        assert_eq!(outcome.report.findings[0].count, 2);
    }

    #[test]
    fn reports_are_sorted_and_capped() {
        let items: Vec<Value> = (0..150).map(|i| json!(format!("user{i}@example.com"))).collect();
        let outcome = scan_json(&json!({ "list": items }), &REDACT);
        let email = &outcome.report.findings[0];
        assert_eq!(
            (email.count, email.locations.len(), email.truncated),
            (150, MAX_LOCATIONS, true)
        );
        let pointers: Vec<&str> = email.locations.iter().map(|l| l.pointer.as_str()).collect();
        assert_eq!(&pointers[..3], ["/list/0", "/list/1", "/list/2"]);
        assert_eq!(pointers[10], "/list/10");
        let json = serde_json::to_string(&outcome.report).expect("json");
        assert!(json.contains(r#""truncated":true"#));
        assert_eq!(
            json,
            serde_json::to_string(&scan_json(&json!({ "list": items }), &REDACT).report).expect("json")
        );
    }

    #[test]
    fn policy_deserializes() {
        let policy: ScanPolicy =
            serde_json::from_value(json!({"secrets": "quarantine", "pii": "allow"})).expect("policy");
        assert_eq!(policy.action(Category::Secret), Action::Quarantine);
        assert!(serde_json::from_value::<ScanPolicy>(json!({"secrets": "redact", "pii": "allow", "x": 1})).is_err());
    }

    // -----------------------------------------------------------------------
    // Planted secrets: whatever the surrounding text, the secret is gone, the
    // report does not contain it, and everything else is kept.

    /// Text that cannot form a finding on its own: lowercase words, spaces,
    /// newlines, some punctuation and non-ASCII.
    fn filler() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            "[a-z]{1,9}",
            Just(" ".to_string()),
            Just("\n".to_string()),
            Just(", ".to_string()),
            Just("! ".to_string()),
            Just("(é)".to_string()),
            Just("日本語".to_string()),
            Just("🙂".to_string()),
        ];
        proptest::collection::vec(piece, 0..16).prop_map(|v| v.concat())
    }

    fn b64url(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            }
        }
        out
    }

    fn check_digit(digits: &str) -> char {
        (b'0'..=b'9')
            .map(char::from)
            .find(|d| detectors::luhn(format!("{digits}{d}").as_bytes()))
            .unwrap_or('0')
    }

    fn iban_check(country: &str, bban: &str) -> String {
        let rearranged = format!("{bban}{country}00");
        let r = rearranged.bytes().fold(0u32, |r, c| match c {
            b'0'..=b'9' => (r * 10 + u32::from(c - b'0')) % 97,
            _ => (r * 100 + u32::from(c - b'A') + 10) % 97,
        });
        format!("{country}{:02}{bban}", 98 - r)
    }

    fn grouped(s: &str, sep: &str) -> String {
        s.as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(sep)
    }

    /// `(detector, before, secret, after)`: `before` and `after` belong to
    /// the planted text and must survive (the key of an assignment, quotes).
    fn planted() -> impl Strategy<Value = (&'static str, String, String, String)> {
        let none = || (String::new(), String::new());
        let value = "[A-Za-z0-9!#^*+_.-]{5,22}".prop_map(|v| format!("k{v}7"));
        prop_oneof![
            ("(AKIA|ASIA|AROA)", "[A-Z0-9]{16}").prop_map(move |(p, r)| (
                "aws_access_key_id",
                none().0,
                format!("{p}{r}"),
                none().1
            )),
            "[A-Za-z0-9/+]{37}".prop_map(|r| (
                "aws_secret_access_key",
                "aws_secret_access_key = ".to_string(),
                format!("{r}aZ7"),
                String::new()
            )),
            ("gh[pousr]_", "[A-Za-z0-9]{36}").prop_map(|(p, r)| (
                "github_token",
                String::new(),
                format!("{p}{r}"),
                String::new()
            )),
            ("xox[abprs]", "[0-9]{10,13}", "[0-9]{10,13}", "[A-Za-z0-9]{24}").prop_map(|(p, a, b, c)| (
                "slack_token",
                String::new(),
                format!("{p}-{a}-{b}-{c}"),
                String::new()
            )),
            (
                "(RSA |EC |OPENSSH |ENCRYPTED |)",
                proptest::collection::vec("[A-Za-z0-9+/]{1,64}", 1..6)
            )
                .prop_map(|(kind, lines)| (
                    "private_key_block",
                    String::new(),
                    format!(
                        "-----BEGIN {kind}PRIVATE KEY-----\n{}\n-----END {kind}PRIVATE KEY-----",
                        lines.join("\n")
                    ),
                    String::new()
                )),
            ("(HS256|RS256|ES384|none)", "[a-z0-9 ]{0,40}", "[A-Za-z0-9_-]{0,86}").prop_map(|(alg, sub, sig)| {
                let header = b64url(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
                let claims = b64url(json!({"sub": sub, "iat": 1516239022}).to_string().as_bytes());
                let sig = if sig.len() % 4 == 1 { &sig[1..] } else { &sig[..] };
                ("jwt", String::new(), format!("{header}.{claims}.{sig}"), String::new())
            }),
            (0..4usize, value).prop_map(|(form, v)| {
                let (before, after) = [
                    ("password=", ""),
                    (r#"{"api_key": ""#, r#""}"#),
                    ("client_secret: ", "\n"),
                    ("Authorization: Bearer ", "\n"),
                ][form];
                ("password_assignment", before.to_string(), v, after.to_string())
            }),
            (
                "[a-z0-9]{1,10}(\\.[a-z0-9]{1,10})?",
                "[a-z][a-z0-9-]{0,8}[a-z0-9]",
                "(com|org|net|io|de|example)"
            )
                .prop_map(|(l, d, t)| ("email", String::new(), format!("{l}@{d}.{t}"), String::new())),
            prop_oneof![
                "\\+[1-9][0-9] [0-9]{3} [0-9]{3} [0-9]{4}",
                "\\([2-9][0-9]{2}\\) [2-9][0-9]{2}-[0-9]{4}",
                "[2-9][0-9]{2}-[2-9][0-9]{2}-[0-9]{4}",
                "0[1-9][0-9] [0-9]{4} [0-9]{4}",
            ]
            .prop_map(|p| ("phone_number", String::new(), p, String::new())),
            (
                prop_oneof![
                    Just("4"),
                    Just("51"),
                    Just("2221"),
                    Just("6011"),
                    Just("3530"),
                    Just("62")
                ],
                "[0-9]{14}",
                any::<bool>()
            )
                .prop_map(|(iin, body, spaced)| {
                    let digits = format!("{iin}{}", &body[..15 - iin.len()]);
                    let card = format!("{digits}{}", check_digit(&digits));
                    let card = if spaced { grouped(&card, " ") } else { card };
                    ("credit_card", String::new(), card, String::new())
                }),
            ("[0-9]{8}", "[0-9]{10}", any::<bool>()).prop_map(|(bank, account, spaced)| {
                let iban = iban_check("DE", &format!("{bank}{account}"));
                let iban = if spaced { grouped(&iban, " ") } else { iban };
                ("iban", String::new(), iban, String::new())
            }),
            ("[A-Z]{4}", "[0-9]{14}").prop_map(|(bank, rest)| {
                (
                    "iban",
                    String::new(),
                    iban_check("GB", &format!("{bank}{rest}")),
                    String::new(),
                )
            }),
            (1..900u32, 1..100u32, 1..10000u32)
                .prop_filter("not 666", |(a, _, _)| *a != 666)
                .prop_map(|(a, g, s)| { ("us_ssn", String::new(), format!("{a:03}-{g:02}-{s:04}"), String::new()) }),
        ]
    }

    /// Text made of the pieces detectors look for, glued at random, with
    /// multi-byte characters everywhere.
    fn soup() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("é".to_string()),
            Just("日本".to_string()),
            Just("🙂".to_string()),
            Just(" ".to_string()),
            Just("\n".to_string()),
            Just("aws secret ".to_string()),
            Just("password=".to_string()),
            Just("\"token\": \"".to_string()),
            Just("-----BEGIN RSA PRIVATE KEY-----\n".to_string()),
            Just("-----END RSA PRIVATE KEY-----".to_string()),
            Just("eyJhbGciOiJIUzI1NiJ9.".to_string()),
            Just("AKIA".to_string()),
            Just("ghp_".to_string()),
            Just("xoxb-".to_string()),
            Just("://u:".to_string()),
            Just("@".to_string()),
            Just("DE89".to_string()),
            Just("+1 ".to_string()),
            Just("-".to_string()),
            "[A-Za-z0-9/+=._-]{1,50}",
            "[0-9 ()./+-]{1,20}",
            any::<String>(),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn findings_are_sorted_disjoint_and_on_char_boundaries(text in soup()) {
            let findings = scan(&text);
            for f in &findings {
                prop_assert!(f.start < f.end && f.end <= text.len());
                prop_assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
            }
            for pair in findings.windows(2) {
                prop_assert!(pair[0].end <= pair[1].start, "{:?}", pair);
            }
            // Everything between findings is kept byte for byte.
            let mut expected = String::new();
            let mut cursor = 0;
            for f in &findings {
                expected.push_str(&text[cursor..f.start]);
                expected.push_str(&format!("[REDACTED:{}]", f.detector));
                cursor = f.end;
            }
            expected.push_str(&text[cursor..]);
            prop_assert_eq!(redact(&text, &findings), expected);
            let outcome = scan_json(&json!({ text.clone(): [text] }), &REDACT);
            prop_assert_eq!(outcome.report.findings.iter().map(|d| d.count).sum::<usize>(), 2 * findings.len());
        }

        #[test]
        fn planted_secrets_are_redacted_and_never_reported(
            head in filler(),
            tail in filler(),
            (detector, before, secret, after) in planted(),
        ) {
            let prefix = format!("{head} {before}");
            let suffix = format!("{after} {tail}");
            let text = format!("{prefix}{secret}{suffix}");
            let expected = format!("{prefix}[REDACTED:{detector}]{suffix}");

            let findings = scan(&text);
            prop_assert_eq!(findings.len(), 1, "{:?} in {:?}", findings, text);
            prop_assert_eq!(findings[0].detector, detector);
            let redacted = redact(&text, &findings);
            prop_assert_eq!(&redacted, &expected);
            prop_assert!(!redacted.contains(&secret));
            prop_assert_eq!(redact_text_for_log(&redacted), redacted.clone());

            let value = json!({
                "content": [{"type": "text", "text": text}],
                "structuredContent": {"result": {"password": secret}},
            });
            for policy in [
                REDACT,
                ScanPolicy { secrets: Action::Quarantine, pii: Action::Quarantine },
                ScanPolicy { secrets: Action::Allow, pii: Action::Allow },
            ] {
                let outcome = scan_json(&value, &policy);
                let report = serde_json::to_string(&outcome.report).expect("report serializes");
                // Not the secret, nor any 8 bytes of it.
                let bytes = secret.as_bytes();
                for window in bytes.windows(8.min(bytes.len())) {
                    prop_assert!(!report.as_bytes().windows(window.len()).any(|w| w == window),
                        "report {} contains part of {:?}", report, secret);
                }
                prop_assert_eq!(outcome.report.findings.iter().map(|d| d.count).sum::<usize>(), 2);
                if policy.secrets == Action::Allow {
                    prop_assert_eq!(&outcome.redacted, &value);
                } else {
                    prop_assert_eq!(outcome.redacted["content"][0]["text"].as_str(), Some(expected.as_str()));
                    let structured = outcome.redacted["structuredContent"]["result"]["password"].as_str();
                    prop_assert!(structured.is_some_and(|s| s.starts_with("[REDACTED:") && s.ends_with(']')));
                }
                prop_assert_eq!(outcome.quarantine, policy.secrets == Action::Quarantine);
            }
        }
    }
}
