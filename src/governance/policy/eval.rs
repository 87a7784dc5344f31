//! Finding the first matching rule without trying every rule.
//!
//! The index narrows the rules down, per condition, to those that *could*
//! match; the first of them (in policy order) that really matches
//! ([`Conditions::matches`], the definition) decides. Narrowing never drops a
//! rule that could match, so the answer is the same as trying every rule in
//! order, which the property test checks.
//!
//! For each indexed condition (`server`, `tool`, `method`, `principal`,
//! `action`, `team`, `env`, `risk`) a rule is either
//!
//! - *absent*: it has no such condition, so any call passes it;
//! - *literal*: every value it lists is a plain name (every `method`,
//!   `principal`, `action`, `team`, `env` and `risk` value; a `server` or
//!   `tool` glob without `*` or `?`), so only calls with one of those names
//!   can pass it;
//! - *wild*: a `server` or `tool` list with a real glob, which any call with
//!   a name might pass.
//!
//! Per condition the index keeps two bitsets over rule positions (absent,
//! and absent-or-wild) and, per literal name, the positions of the rules
//! listing it. The candidates for a call are, for every condition, "the
//! rules it cannot rule out", ANDed together: a few word operations per
//! condition plus one bit per literal hit. Memory is linear in the size of
//! the policy.

use std::collections::HashMap;

use super::model::{Action, Conditions, Facts, Rule};

const WORD: usize = 64;

#[derive(Debug)]
pub(super) struct Index {
    words: usize,
    /// Bits of every rule position.
    all: Vec<u64>,
    dims: Vec<Dim>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Server,
    Tool,
    Method,
    Principal,
    Action,
    Team,
    Env,
    Risk,
}

const KEYS: [Key; 8] = [
    Key::Server,
    Key::Tool,
    Key::Method,
    Key::Principal,
    Key::Action,
    Key::Team,
    Key::Env,
    Key::Risk,
];

/// What a rule's condition on one key lets through, for the index.
enum Shape<'a> {
    Absent,
    Literal(Vec<&'a str>),
    Wild,
}

fn shape(c: &Conditions, key: Key) -> Shape<'_> {
    fn globs(g: &Option<Vec<super::glob::Glob>>) -> Shape<'_> {
        match g {
            None => Shape::Absent,
            Some(g) => match g.iter().map(|g| g.literal()).collect::<Option<Vec<_>>>() {
                Some(names) => Shape::Literal(names),
                None => Shape::Wild,
            },
        }
    }
    fn names(v: &Option<Vec<String>>) -> Shape<'_> {
        match v {
            None => Shape::Absent,
            Some(v) => Shape::Literal(v.iter().map(String::as_str).collect()),
        }
    }
    match key {
        Key::Server => globs(&c.server),
        Key::Tool => globs(&c.tool),
        Key::Method => names(&c.method),
        Key::Principal => names(&c.principal),
        Key::Action => match c.action {
            None => Shape::Absent,
            Some(bits) => Shape::Literal(
                Action::ALL
                    .into_iter()
                    .filter(|a| bits & a.bit() != 0)
                    .map(Action::as_str)
                    .collect(),
            ),
        },
        Key::Team => names(&c.team),
        Key::Env => names(&c.env),
        Key::Risk => names(&c.risk),
    }
}

#[derive(Debug)]
struct Dim {
    key: Key,
    /// Rules without this condition.
    absent: Vec<u64>,
    /// Rules without it, or with a glob in it.
    unnamed: Vec<u64>,
    /// For each literal name, the rules listing it, in order.
    named: HashMap<Box<str>, Vec<usize>>,
}

/// The call's values for one key.
enum Values<'a> {
    One(Option<&'a str>),
    Many(&'a [String]),
}

fn values<'a>(f: &Facts<'a>, key: Key) -> Values<'a> {
    match key {
        Key::Server => Values::One(Some(f.server)),
        Key::Tool => Values::One(f.target),
        Key::Method => Values::One(Some(f.method)),
        Key::Principal => Values::One(Some(f.principal)),
        Key::Action => Values::One(f.action.map(Action::as_str)),
        Key::Team => Values::Many(f.teams),
        Key::Env => Values::Many(f.env),
        Key::Risk => Values::Many(f.risk),
    }
}

fn set(bits: &mut [u64], i: usize) {
    bits[i / WORD] |= 1 << (i % WORD);
}

impl Index {
    pub(super) fn new(rules: &[Rule]) -> Index {
        let words = rules.len().div_ceil(WORD);
        let mut all = vec![0u64; words];
        for i in 0..rules.len() {
            set(&mut all, i);
        }
        let mut dims = Vec::new();
        for key in KEYS {
            let mut dim = Dim {
                key,
                absent: vec![0; words],
                unnamed: vec![0; words],
                named: HashMap::new(),
            };
            for (i, rule) in rules.iter().enumerate() {
                match shape(&rule.conditions, key) {
                    Shape::Absent => {
                        set(&mut dim.absent, i);
                        set(&mut dim.unnamed, i);
                    }
                    Shape::Wild => set(&mut dim.unnamed, i),
                    Shape::Literal(names) => {
                        for name in names {
                            let positions = dim.named.entry(name.into()).or_default();
                            if positions.last() != Some(&i) {
                                positions.push(i);
                            }
                        }
                    }
                }
            }
            // A key no rule has a condition on rules nothing out.
            if dim.absent != all {
                dims.push(dim);
            }
        }
        Index { words, all, dims }
    }

    /// The position of the first rule that matches, as a scan in order would
    /// find it.
    pub(super) fn first_match(&self, rules: &[Rule], f: &Facts<'_>) -> Option<usize> {
        let mut candidates = self.all.clone();
        let mut passing = vec![0u64; self.words];
        for dim in &self.dims {
            dim.passing(values(f, dim.key), &mut passing);
            let mut any = 0;
            for (c, p) in candidates.iter_mut().zip(&passing) {
                *c &= p;
                any |= *c;
            }
            if any == 0 {
                return None;
            }
        }
        for (w, word) in candidates.iter().enumerate() {
            let mut bits = *word;
            while bits != 0 {
                let i = w * WORD + bits.trailing_zeros() as usize;
                if rules.get(i).is_some_and(|r| r.conditions.matches(f)) {
                    return Some(i);
                }
                bits &= bits - 1;
            }
        }
        None
    }
}

impl Dim {
    /// Writes into `out` the rules a call with these values is not ruled
    /// out by.
    fn passing(&self, values: Values<'_>, out: &mut [u64]) {
        match values {
            Values::One(None) => out.copy_from_slice(&self.absent),
            Values::One(Some(name)) => {
                out.copy_from_slice(&self.unnamed);
                self.mark(name, out);
            }
            Values::Many(names) => {
                // No globs on these keys: unnamed is absent.
                out.copy_from_slice(&self.unnamed);
                for name in names {
                    self.mark(name, out);
                }
            }
        }
    }

    fn mark(&self, name: &str, out: &mut [u64]) {
        if let Some(positions) = self.named.get(name) {
            for &i in positions {
                set(out, i);
            }
        }
    }
}

/// The definition: try every rule in order. The reference for the index in
/// the property test and the benchmark.
#[allow(dead_code, reason = "the reference for the property test and the benchmark")]
pub(super) fn first_match_linear(rules: &[Rule], f: &Facts<'_>) -> Option<usize> {
    rules.iter().position(|r| r.conditions.matches(f))
}
