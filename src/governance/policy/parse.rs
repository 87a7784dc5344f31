//! From YAML text to compiled rules, or to an error that says where.
//!
//! Two stages. serde-saphyr deserializes the text into the `Raw*` types,
//! which reject unknown keys, missing keys and wrong types with the line and
//! column of the offending node; every value that needs checking is kept
//! with its location (`Spanned`). Then [`compile`] checks what types cannot
//! say (versions, ids, names, which keys go with which decision) and builds
//! the rules. A deserialization error inside a rule is given the rule's id by
//! a lenient second reading that only looks for rule ids and positions.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, MessageFormatter, Spanned, UserMessageFormatter};

use super::allowlist::{Allowlist, Entry};
use super::glob::Glob;
use super::limits::{KeyPart, Limit, Window, parse_span, span};
use super::model::{
    Action, Approval, Approvers, Conditions, Constraints, METHODS, OnOversize, OutputAction, OutputPolicy, Rule,
};
use crate::governance::Verdict;

/// Why a policy was rejected, and where: `ORIGIN:LINE:COLUMN: rule "ID": MESSAGE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    /// The file name, or `<policy>`.
    pub origin: String,
    /// 1-based; 0 when the error has no position (never for YAML errors).
    pub line: u64,
    /// 1-based, in characters.
    pub column: u64,
    /// The id of the rule the error is in, when known.
    pub rule: Option<String>,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.origin)?;
        if self.line > 0 {
            write!(f, "{}:{}:", self.line, self.column)?;
        }
        if let Some(rule) = &self.rule {
            write!(f, " rule {rule:?}:")?;
        }
        write!(f, " {}", self.message)
    }
}

impl std::error::Error for PolicyError {}

/// The decisions, as a policy spells them.
pub(super) const DECISIONS: [(&str, Verdict); 4] = [
    ("ALLOW", Verdict::Allow),
    ("DENY", Verdict::Deny),
    ("REQUIRE_APPROVAL", Verdict::RequireApproval),
    ("ALLOW_WITH_CONSTRAINTS", Verdict::AllowWithConstraints),
];

const MAX_ID_CHARS: usize = 128;

/// A rate is kept as the times of its calls in the window: this bounds the
/// memory of one counter. Larger counts are quotas.
const MAX_RATE_CALLS: u64 = 100_000;

/// Said of numbers and booleans where names are expected.
fn quote_hint(found: &str) -> &'static str {
    match found {
        "a number" | "a boolean" => " (quote it)",
        _ => "",
    }
}

// ---------------------------------------------------------------------------
// What the YAML must look like.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: Spanned<String>,
    rules: Vec<Spanned<RawRule>>,
    #[serde(default, deserialize_with = "present")]
    output: Option<Spanned<RawOutput>>,
    #[serde(default, deserialize_with = "present")]
    limits: Option<Vec<Spanned<RawLimit>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    id: Spanned<String>,
    #[serde(default, deserialize_with = "present")]
    description: Option<String>,
    #[serde(rename = "match", default, deserialize_with = "present")]
    conditions: Option<RawMatch>,
    #[serde(default, deserialize_with = "present")]
    by: Option<Spanned<Names>>,
    #[serde(default, deserialize_with = "present")]
    rate: Option<Spanned<RawWindow>>,
    #[serde(default, deserialize_with = "present")]
    quota: Option<Spanned<RawWindow>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    calls: Spanned<Int>,
    per: Spanned<Names>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    #[serde(default, deserialize_with = "present")]
    description: Option<String>,
    #[serde(rename = "match", default, deserialize_with = "present")]
    conditions: Option<RawMatch>,
    decision: Spanned<String>,
    #[serde(default, deserialize_with = "present")]
    approval: Option<Spanned<RawApproval>>,
    #[serde(default, deserialize_with = "present")]
    constraints: Option<Spanned<RawConstraints>>,
    #[serde(default, deserialize_with = "present")]
    reason: Option<String>,
    #[serde(default, deserialize_with = "present")]
    output: Option<Spanned<RawOutput>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    #[serde(default, deserialize_with = "present")]
    server: Option<Spanned<Names>>,
    #[serde(default, deserialize_with = "present")]
    tool: Option<Spanned<Names>>,
    #[serde(default, deserialize_with = "present")]
    method: Option<Spanned<Names>>,
    #[serde(default, deserialize_with = "present")]
    principal: Option<Spanned<Names>>,
    #[serde(default, deserialize_with = "present")]
    team: Option<Spanned<Names>>,
    #[serde(default, deserialize_with = "present")]
    env: Option<Spanned<Names>>,
    #[serde(default, deserialize_with = "present")]
    risk: Option<Spanned<Names>>,
    #[serde(default, deserialize_with = "present")]
    action: Option<Spanned<Names>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApproval {
    timeout_sec: Spanned<Int>,
    approvers: Spanned<RawApprovers>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApprovers {
    #[serde(default, deserialize_with = "present")]
    team: Option<Spanned<Names>>,
    #[serde(default, deserialize_with = "present")]
    principal: Option<Spanned<Names>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConstraints {
    #[serde(default, deserialize_with = "present")]
    max_runtime_sec: Option<Spanned<Int>>,
    #[serde(default, deserialize_with = "present")]
    max_retries: Option<Spanned<Int>>,
    #[serde(default, deserialize_with = "present")]
    max_result_bytes: Option<Spanned<Int>>,
    #[serde(default, deserialize_with = "present")]
    on_oversize: Option<Spanned<String>>,
    #[serde(default, deserialize_with = "present")]
    network_allowlist: Option<Spanned<Names>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    #[serde(default, deserialize_with = "present")]
    secrets: Option<Spanned<String>>,
    #[serde(default, deserialize_with = "present")]
    pii: Option<Spanned<String>>,
}

/// An optional key that, when given, must have a value: `key:` with nothing
/// after it (null) is an error rather than the key's absence.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// A string, or a list of strings meaning "any of". Numbers, booleans and
/// null are refused rather than turned into text (`0x10` would become
/// `16`): quote them. Refused values are kept as [`Names::Bad`] so that
/// [`compile`] reports them at their own position.
enum Names {
    One(String),
    Many(Vec<Spanned<Name>>),
    /// What was found instead ("an integer", "a mapping", ...).
    Bad(&'static str),
}

/// One string of a list, or what was found instead.
struct Name(Result<String, &'static str>);

/// Accepts any node, and says what it is when it is not a string.
struct Scalar<T>(std::marker::PhantomData<T>);

trait FromScalar: Sized {
    fn string(s: &str) -> Self;
    fn bad(found: &'static str) -> Self;
    fn seq<'de, A: SeqAccess<'de>>(seq: A) -> Result<Self, A::Error>;
}

impl FromScalar for Name {
    fn string(s: &str) -> Name {
        Name(Ok(s.to_string()))
    }
    fn bad(found: &'static str) -> Name {
        Name(Err(found))
    }
    fn seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Name, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Name(Err("a list")))
    }
}

impl FromScalar for Names {
    fn string(s: &str) -> Names {
        Names::One(s.to_string())
    }
    fn bad(found: &'static str) -> Names {
        Names::Bad(found)
    }
    fn seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Names, A::Error> {
        let mut names = Vec::new();
        while let Some(name) = seq.next_element::<Spanned<Name>>()? {
            names.push(name);
        }
        Ok(Names::Many(names))
    }
}

impl<'de, T: FromScalar> Visitor<'de> for Scalar<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or a list of strings")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        Ok(T::string(v))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<T, E> {
        Ok(T::bad("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<T, E> {
        Ok(T::bad("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<T, E> {
        Ok(T::bad("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<T, E> {
        Ok(T::bad("a number"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Ok(T::bad("null"))
    }
    fn visit_none<E: de::Error>(self) -> Result<T, E> {
        Ok(T::bad("null"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<T, A::Error> {
        T::seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(T::bad("a mapping"))
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Name, D::Error> {
        d.deserialize_any(Scalar(std::marker::PhantomData))
    }
}

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Names, D::Error> {
        d.deserialize_any(Scalar(std::marker::PhantomData))
    }
}

/// A whole number, or what was found instead; range-checked by [`compile`]
/// so that the message can say what the number is for.
struct Int(Result<i128, &'static str>);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Int, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Int;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
                Ok(Int(Ok(v.into())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
                Ok(Int(Ok(v.into())))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Int, E> {
                Ok(Int(Err("a fraction")))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Int, E> {
                Ok(Int(Err("a string")))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Int, E> {
                Ok(Int(Err("a boolean")))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Int, E> {
                Ok(Int(Err("null")))
            }
            fn visit_none<E: de::Error>(self) -> Result<Int, E> {
                Ok(Int(Err("null")))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Int, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Int(Err("a list")))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Int, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Int(Err("a mapping")))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------
// Reading.

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        with_snippet: false,
        // YAML 1.2: `no`, `on`, `off` are strings, not booleans.
        strict_booleans: true,
        // Names keep their spelling: `0123` and `1_000` stay text.
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
        reject_unsupported_tags: true,
        // `<<` would hide which keys a rule has from a reviewer.
        merge_keys: serde_saphyr::MergeKeyPolicy::Error,
    }
}

/// What [`compile`] produces.
pub(super) struct Compiled {
    pub(super) rules: Vec<Rule>,
    pub(super) output: OutputPolicy,
    pub(super) limits: Vec<Limit>,
}

pub(super) fn parse(text: &str, origin: &str) -> Result<Compiled, PolicyError> {
    let raw: RawPolicy = match serde_saphyr::from_str_with_options(text, options()) {
        Ok(raw) => raw,
        Err(e) => return Err(yaml_error(text, origin, &e)),
    };
    compile(raw, origin)
}

fn yaml_error(text: &str, origin: &str, e: &serde_saphyr::Error) -> PolicyError {
    let e = e.without_snippet();
    let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
    let message = match e {
        serde_saphyr::Error::DuplicateMappingKey { key: Some(key), .. } => format!("duplicate key `{key}`"),
        serde_saphyr::Error::Eof { .. } if text.trim().is_empty() => "the policy is empty".to_string(),
        serde_saphyr::Error::Unexpected { expected, .. } => match *expected {
            "mapping start" => "expected a mapping".to_string(),
            "sequence start" => "expected a list".to_string(),
            "string scalar" | "scalar" => "expected a string".to_string(),
            other => format!("expected {other}"),
        },
        e => tidy(&UserMessageFormatter.format_message(e)),
    };
    PolicyError {
        origin: origin.to_string(),
        line,
        column,
        rule: if line > 0 { rule_at(text, line, column) } else { None },
        message,
    }
}

/// Lowercase first letter (unless an acronym), no trailing period.
fn tidy(message: &str) -> String {
    let message = message.trim().trim_end_matches('.');
    let mut chars = message.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if first.is_uppercase() && second.is_lowercase() => {
            first.to_lowercase().chain(message.chars().skip(1)).collect()
        }
        _ => message.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Which rule a position is in: a lenient reading of the same text.

/// Where each rule starts and its id, and where the rules end (the next
/// top-level key), read without any checks.
#[derive(Default)]
struct Outline {
    rules: Vec<(Position, Option<String>)>,
    end: Option<Position>,
}

type Position = (u64, u64);

fn position(l: &Location) -> Position {
    (l.line(), l.column())
}

fn rule_at(text: &str, line: u64, column: u64) -> Option<String> {
    let mut lenient = options();
    lenient.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::FirstWins;
    lenient.merge_keys = serde_saphyr::MergeKeyPolicy::AsOrdinary;
    let outline: Outline = serde_saphyr::from_str_with_options(text, lenient).ok()?;
    let at = (line, column);
    if outline.end.is_some_and(|end| at >= end) {
        return None;
    }
    outline
        .rules
        .iter()
        .rev()
        .find(|(start, _)| *start <= at)
        .and_then(|(_, id)| id.clone())
}

impl<'de> Deserialize<'de> for Outline {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Outline, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Outline;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Outline, A::Error> {
                let mut outline = Outline::default();
                let mut in_rules = false;
                while let Some(key) = map.next_key::<Spanned<Lenient>>()? {
                    if in_rules && outline.end.is_none() {
                        outline.end = Some(position(&key.referenced));
                    }
                    if key.value.scalar.as_deref() == Some("rules") {
                        // Not a list: the outline fails, and no error names a rule.
                        let rules = map.next_value::<Vec<Spanned<Lenient>>>()?;
                        outline.rules = rules
                            .into_iter()
                            .map(|r| (position(&r.referenced), r.value.id))
                            .collect();
                        in_rules = true;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(outline)
            }
        }
        d.deserialize_map(V)
    }
}

/// Any node, read without checks: the text of a scalar, or the `id` of a
/// mapping (when that is a scalar).
#[derive(Default)]
struct Lenient {
    scalar: Option<String>,
    id: Option<String>,
}

impl<'de> Deserialize<'de> for Lenient {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Lenient, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Lenient;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("anything")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Lenient, E> {
                Ok(Lenient {
                    scalar: Some(v.to_string()),
                    id: None,
                })
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Lenient, E> {
                Ok(Lenient::default())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Lenient, E> {
                Ok(Lenient::default())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Lenient, E> {
                Ok(Lenient::default())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Lenient, E> {
                Ok(Lenient::default())
            }
            fn visit_unit<E: de::Error>(self) -> Result<Lenient, E> {
                Ok(Lenient::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Lenient, E> {
                Ok(Lenient::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Lenient, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Lenient::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Lenient, A::Error> {
                let mut id = None;
                while let Some(key) = map.next_key::<Lenient>()? {
                    if key.scalar.as_deref() == Some("id") && id.is_none() {
                        id = map.next_value::<Lenient>()?.scalar;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Lenient { scalar: None, id })
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------
// Checking and compiling.

struct Ctx<'a> {
    origin: &'a str,
    rule: Option<&'a str>,
}

impl Ctx<'_> {
    fn err(&self, at: &Location, message: impl Into<String>) -> PolicyError {
        PolicyError {
            origin: self.origin.to_string(),
            line: at.line(),
            column: at.column(),
            rule: self.rule.map(str::to_string),
            message: message.into(),
        }
    }
}

fn compile(raw: RawPolicy, origin: &str) -> Result<Compiled, PolicyError> {
    let top = Ctx { origin, rule: None };
    if raw.version.value != "v1" {
        return Err(top.err(
            &raw.version.referenced,
            format!("unsupported policy version {:?}, expected v1", raw.version.value),
        ));
    }
    let output = match &raw.output {
        Some(o) => output_policy(&top, o, OutputPolicy::default())?,
        None => OutputPolicy::default(),
    };
    let mut seen: HashMap<String, Location> = HashMap::new();
    let mut rules = Vec::with_capacity(raw.rules.len());
    for raw_rule in &raw.rules {
        let id = &raw_rule.value.id;
        let ctx = Ctx {
            origin,
            rule: Some(&id.value),
        };
        check_id(&ctx, id)?;
        if let Some(first) = seen.get(&id.value) {
            return Err(ctx.err(
                &id.referenced,
                format!(
                    "duplicate rule id (first used at line {}, column {})",
                    first.line(),
                    first.column()
                ),
            ));
        }
        seen.insert(id.value.clone(), id.referenced);
        rules.push(rule(&ctx, raw_rule, output)?);
    }
    let mut limits = Vec::new();
    let mut seen: HashMap<String, Location> = HashMap::new();
    for raw_limit in raw.limits.iter().flatten() {
        let id = &raw_limit.value.id;
        check_id(&top, id).map_err(|e| PolicyError {
            message: format!("limit {:?}: {}", id.value, e.message.replace("rule id", "limit id")),
            ..e
        })?;
        let ctx = Ctx { origin, rule: None };
        let named = |e: PolicyError| PolicyError {
            message: format!("limit {:?}: {}", id.value, e.message),
            ..e
        };
        if let Some(first) = seen.get(&id.value) {
            return Err(named(ctx.err(
                &id.referenced,
                format!(
                    "duplicate limit id (first used at line {}, column {})",
                    first.line(),
                    first.column()
                ),
            )));
        }
        seen.insert(id.value.clone(), id.referenced);
        limits.push(limit(&ctx, raw_limit).map_err(named)?);
    }
    Ok(Compiled { rules, output, limits })
}

fn limit(ctx: &Ctx<'_>, raw: &Spanned<RawLimit>) -> Result<Limit, PolicyError> {
    let l = &raw.value;
    let conditions = match &l.conditions {
        Some(m) => conditions(ctx, m)?,
        None => Conditions::default(),
    };
    let mut by = Vec::new();
    if let Some(n) = &l.by {
        for (s, at) in names(ctx, "by", n)? {
            let Some(part) = KeyPart::parse(s) else {
                return Err(ctx.err(
                    &at,
                    format!(
                        "unknown `by` {s:?}, expected one of {}",
                        KeyPart::ALL.map(KeyPart::as_str).join(", ")
                    ),
                ));
            };
            if by.contains(&part) {
                return Err(ctx.err(&at, format!("`by` names {s:?} twice")));
            }
            by.push(part);
        }
    }
    by.sort_unstable();
    let window = |key: &str, w: &Spanned<RawWindow>, max_calls: u64, min_sec: u64, max_sec: u64| {
        let calls = int(ctx, &format!("{key}.calls"), &w.value.calls, 1, max_calls)?;
        let per = names(ctx, &format!("{key}.per"), &w.value.per)?;
        let [(text, at)] = per[..] else {
            return Err(ctx.err(
                &w.value.per.referenced,
                format!("`{key}.per` is a list, expected one period"),
            ));
        };
        let per_sec = parse_span(text).ok_or_else(|| {
            ctx.err(
                &at,
                format!("`{key}.per` {text:?} is not a period: a whole number and s, m, h or d, as in 30s, 1m, 1d"),
            )
        })?;
        if per_sec < min_sec || per_sec > max_sec {
            return Err(ctx.err(
                &at,
                format!(
                    "`{key}.per` must be between {} and {}, got {text}",
                    span(min_sec),
                    span(max_sec)
                ),
            ));
        }
        Ok(Window { calls, per_sec })
    };
    let rate = l
        .rate
        .as_ref()
        .map(|w| window("rate", w, MAX_RATE_CALLS, 1, 86_400))
        .transpose()?;
    let quota = l
        .quota
        .as_ref()
        .map(|w| window("quota", w, u64::from(u32::MAX), 60, 366 * 86_400))
        .transpose()?;
    match (rate, quota, &l.quota) {
        (None, None, _) => {
            return Err(ctx.err(&raw.referenced, "a limit needs `rate`, `quota` or both"));
        }
        (Some(r), Some(q), Some(at)) if r.per_sec >= q.per_sec || r.calls >= q.calls => {
            return Err(ctx.err(
                &at.referenced,
                format!(
                    "`rate` ({r}) and `quota` ({q}) conflict: the quota must be over a longer period and allow more calls, else one of them never applies"
                ),
            ));
        }
        _ => {}
    }
    Ok(Limit {
        id: l.id.value.clone(),
        description: l.description.clone(),
        line: raw.referenced.line(),
        conditions,
        by,
        rate,
        quota,
    })
}

fn check_id(ctx: &Ctx<'_>, id: &Spanned<String>) -> Result<(), PolicyError> {
    let s = &id.value;
    if s.is_empty() {
        return Err(ctx.err(&id.referenced, "rule id is empty"));
    }
    if s.chars().count() > MAX_ID_CHARS {
        return Err(ctx.err(
            &id.referenced,
            format!("rule id is longer than {MAX_ID_CHARS} characters"),
        ));
    }
    if let Some(bad) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')))
    {
        return Err(ctx.err(
            &id.referenced,
            format!("rule id has {bad:?}: ids use only a-z, 0-9, '-', '_' and '.'"),
        ));
    }
    Ok(())
}

fn rule(ctx: &Ctx<'_>, raw: &Spanned<RawRule>, policy_output: OutputPolicy) -> Result<Rule, PolicyError> {
    let r = &raw.value;
    let Some(verdict) = DECISIONS
        .iter()
        .find(|(name, _)| *name == r.decision.value)
        .map(|(_, v)| *v)
    else {
        return Err(ctx.err(
            &r.decision.referenced,
            format!(
                "unknown decision {:?}, expected one of {}",
                r.decision.value,
                DECISIONS.map(|(name, _)| name).join(", ")
            ),
        ));
    };
    let conditions = match &r.conditions {
        Some(m) => conditions(ctx, m)?,
        None => Conditions::default(),
    };

    let approval = match (&r.approval, verdict) {
        (Some(a), Verdict::RequireApproval) => Some(approval(ctx, a)?),
        (None, Verdict::RequireApproval) => {
            return Err(ctx.err(&r.decision.referenced, "REQUIRE_APPROVAL needs `approval`"));
        }
        (Some(a), _) => {
            return Err(ctx.err(
                &a.referenced,
                format!("`approval` is only for REQUIRE_APPROVAL, not {verdict}"),
            ));
        }
        (None, _) => None,
    };
    let constraints = match (&r.constraints, verdict) {
        (Some(c), Verdict::AllowWithConstraints) => Some(constraints(ctx, c)?),
        (None, Verdict::AllowWithConstraints) => {
            return Err(ctx.err(&r.decision.referenced, "ALLOW_WITH_CONSTRAINTS needs `constraints`"));
        }
        (Some(c), _) => {
            return Err(ctx.err(
                &c.referenced,
                format!("`constraints` is only for ALLOW_WITH_CONSTRAINTS, not {verdict}"),
            ));
        }
        (None, _) => None,
    };
    let output = match (&r.output, verdict) {
        (Some(o), Verdict::Deny) => {
            return Err(ctx.err(
                &o.referenced,
                "`output` does not apply to DENY: a denied call has no result",
            ));
        }
        (Some(o), _) => output_policy(ctx, o, policy_output)?,
        (None, _) => policy_output,
    };

    let id = r.id.value.clone();
    let reason = match &r.reason {
        Some(text) if !text.trim().is_empty() => format!("rule {id:?} matched: {}", text.trim()),
        _ => format!("rule {id:?} matched"),
    };
    Ok(Rule {
        id,
        description: r.description.clone(),
        line: raw.referenced.line(),
        conditions,
        verdict,
        approval,
        constraints,
        output,
        reason,
    })
}

/// The names of a condition with where each is, checked to be non-empty.
fn names<'a>(ctx: &Ctx<'_>, key: &str, n: &'a Spanned<Names>) -> Result<Vec<(&'a str, Location)>, PolicyError> {
    let list: Vec<(&str, Location)> = match &n.value {
        Names::One(s) => vec![(s.as_str(), n.referenced)],
        Names::Bad("null") => {
            return Err(ctx.err(
                &n.referenced,
                format!("`{key}` has no value, expected a string or a list of strings"),
            ));
        }
        Names::Bad(found) => {
            return Err(ctx.err(
                &n.referenced,
                format!(
                    "`{key}` is {found}, expected a string or a list of strings{}",
                    quote_hint(found)
                ),
            ));
        }
        Names::Many(v) => {
            let mut list = Vec::with_capacity(v.len());
            for name in v {
                match &name.value.0 {
                    Ok(s) => list.push((s.as_str(), name.referenced)),
                    Err(found) => {
                        return Err(ctx.err(
                            &name.referenced,
                            format!("`{key}` has {found} in its list, expected strings{}", quote_hint(found)),
                        ));
                    }
                }
            }
            list
        }
    };
    if list.is_empty() {
        return Err(ctx.err(
            &n.referenced,
            format!("`{key}` is an empty list: leave the condition out to match any"),
        ));
    }
    if let Some((_, at)) = list.iter().find(|(s, _)| s.is_empty()) {
        return Err(ctx.err(at, format!("`{key}` has an empty string")));
    }
    Ok(list)
}

fn plain(ctx: &Ctx<'_>, key: &str, n: &Option<Spanned<Names>>) -> Result<Option<Vec<String>>, PolicyError> {
    n.as_ref()
        .map(|n| Ok(names(ctx, key, n)?.into_iter().map(|(s, _)| s.to_string()).collect()))
        .transpose()
}

fn globs(ctx: &Ctx<'_>, key: &str, n: &Option<Spanned<Names>>) -> Result<Option<Vec<Glob>>, PolicyError> {
    n.as_ref()
        .map(|n| Ok(names(ctx, key, n)?.into_iter().map(|(s, _)| Glob::new(s)).collect()))
        .transpose()
}

fn conditions(ctx: &Ctx<'_>, m: &RawMatch) -> Result<Conditions, PolicyError> {
    let method = match &m.method {
        Some(n) => {
            let list = names(ctx, "method", n)?;
            if let Some((bad, at)) = list.iter().find(|(s, _)| !METHODS.contains(s)) {
                return Err(ctx.err(
                    at,
                    format!("unknown method {bad:?}, expected one of {}", METHODS.join(", ")),
                ));
            }
            Some(list.into_iter().map(|(s, _)| s.to_string()).collect())
        }
        None => None,
    };
    let action = match &m.action {
        Some(n) => {
            let mut bits = 0u8;
            for (s, at) in names(ctx, "action", n)? {
                let Some(a) = Action::parse(s) else {
                    return Err(ctx.err(
                        &at,
                        format!(
                            "unknown action {s:?}, expected one of {}",
                            Action::ALL.map(Action::as_str).join(", ")
                        ),
                    ));
                };
                bits |= a.bit();
            }
            Some(bits)
        }
        None => None,
    };
    Ok(Conditions {
        server: globs(ctx, "server", &m.server)?,
        tool: globs(ctx, "tool", &m.tool)?,
        method,
        principal: plain(ctx, "principal", &m.principal)?,
        team: plain(ctx, "team", &m.team)?,
        env: plain(ctx, "env", &m.env)?,
        risk: plain(ctx, "risk", &m.risk)?,
        action,
    })
}

/// A number in `min..=max`, or an error naming the key.
fn int<T: TryFrom<i128>>(ctx: &Ctx<'_>, key: &str, n: &Spanned<Int>, min: i128, max: T) -> Result<T, PolicyError>
where
    i128: From<T>,
{
    let max = i128::from(max);
    let v = match n.value.0 {
        Ok(v) => v,
        Err(found) => {
            return Err(ctx.err(&n.referenced, format!("`{key}` is {found}, expected a whole number")));
        }
    };
    if v < min || v > max {
        return Err(ctx.err(
            &n.referenced,
            format!("`{key}` must be between {min} and {max}, got {v}"),
        ));
    }
    T::try_from(v).map_err(|_| ctx.err(&n.referenced, format!("`{key}` is out of range")))
}

fn approval(ctx: &Ctx<'_>, a: &Spanned<RawApproval>) -> Result<Approval, PolicyError> {
    let raw = &a.value;
    let timeout_sec = int(ctx, "timeout_sec", &raw.timeout_sec, 1, u64::MAX)?;
    let approvers = &raw.approvers;
    let teams = plain(ctx, "approvers.team", &approvers.value.team)?.unwrap_or_default();
    let principals = plain(ctx, "approvers.principal", &approvers.value.principal)?.unwrap_or_default();
    if teams.is_empty() && principals.is_empty() {
        return Err(ctx.err(
            &approvers.referenced,
            "`approvers` needs at least one of `team` or `principal`",
        ));
    }
    Ok(Approval {
        timeout_sec,
        approvers: Approvers { teams, principals },
    })
}

fn constraints(ctx: &Ctx<'_>, c: &Spanned<RawConstraints>) -> Result<Constraints, PolicyError> {
    let raw = &c.value;
    let max_runtime_sec = raw
        .max_runtime_sec
        .as_ref()
        .map(|n| int(ctx, "max_runtime_sec", n, 1, u64::MAX))
        .transpose()?;
    let max_retries = raw
        .max_retries
        .as_ref()
        .map(|n| int(ctx, "max_retries", n, 0, u32::MAX))
        .transpose()?;
    let max_result_bytes = raw
        .max_result_bytes
        .as_ref()
        .map(|n| int(ctx, "max_result_bytes", n, 1, u64::MAX))
        .transpose()?;
    let network_allowlist = raw.network_allowlist.as_ref().map(|n| allowlist(ctx, n)).transpose()?;
    if max_runtime_sec.is_none() && max_retries.is_none() && max_result_bytes.is_none() && network_allowlist.is_none() {
        return Err(ctx.err(
            &c.referenced,
            "`constraints` needs at least one of `max_runtime_sec`, `max_retries`, `max_result_bytes` or `network_allowlist`",
        ));
    }
    let on_oversize = match &raw.on_oversize {
        None => OnOversize::Truncate,
        Some(s) => {
            if max_result_bytes.is_none() {
                return Err(ctx.err(&s.referenced, "`on_oversize` needs `max_result_bytes`"));
            }
            OnOversize::parse(&s.value).ok_or_else(|| {
                ctx.err(
                    &s.referenced,
                    format!(
                        "unknown `on_oversize` {:?}, expected one of {}",
                        s.value,
                        OnOversize::ALL.map(OnOversize::as_str).join(", ")
                    ),
                )
            })?
        }
    };
    Ok(Constraints {
        max_runtime_sec,
        max_retries,
        max_result_bytes,
        on_oversize,
        network_allowlist,
    })
}

/// `network_allowlist`: a list of entries (one string is a list of one),
/// each checked where it is written. An empty list allows no host.
fn allowlist(ctx: &Ctx<'_>, n: &Spanned<Names>) -> Result<Allowlist, PolicyError> {
    const KEY: &str = "network_allowlist";
    let written: Vec<(&str, Location)> = match &n.value {
        Names::Many(v) if v.is_empty() => Vec::new(),
        _ => names(ctx, KEY, n)?,
    };
    let mut entries = Vec::with_capacity(written.len());
    for (text, at) in written {
        let entry = Entry::parse(text).map_err(|why| ctx.err(&at, format!("`{KEY}` entry {text:?} {why}")))?;
        entries.push(entry);
    }
    Ok(Allowlist::new(entries))
}

/// `base` with the keys `o` gives replaced.
fn output_policy(ctx: &Ctx<'_>, o: &Spanned<RawOutput>, base: OutputPolicy) -> Result<OutputPolicy, PolicyError> {
    let action = |key: &str, s: &Option<Spanned<String>>, default: OutputAction| match s {
        None => Ok(default),
        Some(s) => OutputAction::parse(&s.value).ok_or_else(|| {
            ctx.err(
                &s.referenced,
                format!(
                    "unknown `output.{key}` action {:?}, expected one of {}",
                    s.value,
                    OutputAction::ALL.map(OutputAction::as_str).join(", ")
                ),
            )
        }),
    };
    Ok(OutputPolicy {
        secrets: action("secrets", &o.value.secrets, base.secrets)?,
        pii: action("pii", &o.value.pii, base.pii)?,
    })
}
