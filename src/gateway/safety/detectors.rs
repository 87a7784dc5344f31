//! The detectors. Each finds candidates with a regular expression and keeps
//! only those that pass its validation (token boundaries, checksums, number
//! ranges, structure): the regular expressions are deliberately loose, the
//! validation is where false positives are kept down.
//!
//! Detectors of secrets and emails run over the whole text, each only if its
//! cheap pre-filter (mostly a literal: `-----BEGIN `, `AKIA`, `@`, ...)
//! matches. Detectors of numbers (cards, SSNs, phone numbers) run only
//! inside numeric tokens (runs of `0-9 . - / ( ) +` and spaces) with enough
//! digits, found in one pass over the bytes: everything they match is made
//! of those characters, so the results are the same as over the whole text,
//! at a fraction of the cost. (A `RegexSet` of all pre-filters, or the digit
//! patterns over the whole text, cost 2–4 ms per MiB each: the set cannot
//! stop early and its union DFA is slow, and patterns like
//! `[0-9]{3}-[0-9]{2}-...` make the regex engine use `-` as a pre-filter
//! literal that fires all the time.)
//!
//! Every search loop resumes after a rejected candidate at a position from
//! which no valid match can have been skipped (documented per detector), so
//! a rejected candidate never hides a valid one and each text is searched in
//! linear time.

use std::ops::Range;
use std::sync::LazyLock;

use regex::{Match, Regex};

use super::{Category, Finding};

/// A finding before overlaps are resolved, with the rank of its detector
/// (its index in [`DETECTORS`]; lower is more specific).
#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    pub rank: usize,
    pub finding: Finding,
}

pub struct Detector {
    pub name: &'static str,
    pub category: Category,
    scope: Scope,
    /// Finds candidates in `text[range]` (the context around the range is
    /// looked at for boundaries).
    find: fn(&str, Range<usize>, &mut Sink<'_>),
}

/// Where a detector looks.
enum Scope {
    /// The whole text, if this pre-filter matches somewhere in it.
    Text(&'static str),
    /// Each numeric token with at least `digits` digits (and a `-`, if
    /// `dash`).
    Numbers { digits: usize, dash: bool },
}

/// Where a detector puts what it found.
pub struct Sink<'a> {
    rank: usize,
    name: &'static str,
    category: Category,
    out: &'a mut Vec<Candidate>,
}

impl Sink<'_> {
    fn push(&mut self, start: usize, end: usize) {
        self.out.push(Candidate {
            rank: self.rank,
            finding: Finding {
                detector: self.name,
                category: self.category,
                start,
                end,
            },
        });
    }
}

pub const PRIVATE_KEY_BLOCK: &str = "private_key_block";
pub const PASSWORD_ASSIGNMENT: &str = "password_assignment";

/// Every detector, most specific first: the order is the tie-break of the
/// overlap rule (see the module documentation of `safety`).
pub static DETECTORS: [Detector; 12] = [
    Detector {
        name: PRIVATE_KEY_BLOCK,
        category: Category::Secret,
        scope: Scope::Text(r"-----BEGIN "),
        find: private_key_block,
    },
    Detector {
        name: "jwt",
        category: Category::Secret,
        scope: Scope::Text(r"e[wy][A-Za-z0-9_-]{8}"),
        find: jwt,
    },
    Detector {
        name: "github_token",
        category: Category::Secret,
        scope: Scope::Text(r"gh[pousr]_|github_pat_"),
        find: github_token,
    },
    Detector {
        name: "slack_token",
        category: Category::Secret,
        scope: Scope::Text(r"xox[abprs]-"),
        find: slack_token,
    },
    Detector {
        name: "aws_access_key_id",
        category: Category::Secret,
        scope: Scope::Text(r"A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA"),
        find: aws_access_key_id,
    },
    Detector {
        name: "aws_secret_access_key",
        category: Category::Secret,
        scope: Scope::Text(r"(?i-u)aws|secret"),
        find: aws_secret_access_key,
    },
    Detector {
        name: PASSWORD_ASSIGNMENT,
        category: Category::Secret,
        scope: Scope::Text(r"(?i-u)pass|pwd|secret|token|key|authorization|://"),
        find: password_assignment,
    },
    Detector {
        name: "iban",
        category: Category::Pii,
        scope: Scope::Text(r"[A-Z]{2}[0-9]{2}"),
        find: iban,
    },
    Detector {
        name: "credit_card",
        category: Category::Pii,
        scope: Scope::Numbers {
            digits: 13,
            dash: false,
        },
        find: credit_card,
    },
    Detector {
        name: "us_ssn",
        category: Category::Pii,
        scope: Scope::Numbers { digits: 9, dash: true },
        find: us_ssn,
    },
    Detector {
        name: "email",
        category: Category::Pii,
        scope: Scope::Text(r"@"),
        find: email,
    },
    Detector {
        name: "phone_number",
        category: Category::Pii,
        scope: Scope::Numbers { digits: 8, dash: false },
        find: phone_number,
    },
];

static PREFILTERS: LazyLock<Vec<Option<Regex>>> = LazyLock::new(|| {
    DETECTORS
        .iter()
        .map(|d| match d.scope {
            Scope::Text(prefilter) => Some(re(prefilter)),
            Scope::Numbers { .. } => None,
        })
        .collect()
});

/// Every candidate of every detector in `text`, overlapping.
pub fn candidates(text: &str, out: &mut Vec<Candidate>) {
    if text.is_empty() {
        return;
    }
    for (rank, prefilter) in PREFILTERS.iter().enumerate() {
        if let Some(prefilter) = prefilter
            && prefilter.is_match(text)
        {
            (DETECTORS[rank].find)(text, 0..text.len(), &mut sink(rank, out));
        }
    }
    numeric_tokens(text, |token, digits, dash| {
        for (rank, detector) in DETECTORS.iter().enumerate() {
            if let Scope::Numbers {
                digits: min,
                dash: needs_dash,
            } = detector.scope
                && digits >= min
                && (dash || !needs_dash)
            {
                (detector.find)(text, token.clone(), &mut sink(rank, out));
            }
        }
    });
}

fn sink(rank: usize, out: &mut Vec<Candidate>) -> Sink<'_> {
    Sink {
        rank,
        name: DETECTORS[rank].name,
        category: DETECTORS[rank].category,
        out,
    }
}

/// Calls `f` with each maximal run of `0-9 . - / ( ) +` and spaces that
/// holds a digit, its digit count, and whether it holds a `-`.
fn numeric_tokens(text: &str, mut f: impl FnMut(Range<usize>, usize, bool)) {
    let is_token = |c: u8| c.is_ascii_digit() || matches!(c, b' ' | b'.' | b'-' | b'/' | b'(' | b')' | b'+');
    let b = text.as_bytes();
    let mut done = 0;
    while let Some(k) = b[done..].iter().position(u8::is_ascii_digit) {
        let digit = done + k;
        let mut start = digit;
        while start > done && is_token(b[start - 1]) {
            start -= 1;
        }
        let (mut end, mut digits, mut dash) = (digit, 0, false);
        while end < b.len() && is_token(b[end]) {
            digits += usize::from(b[end].is_ascii_digit());
            dash |= b[end] == b'-';
            end += 1;
        }
        f(start..end, digits, dash);
        done = end;
    }
}

/// The candidate for a whole string stored under a secret-looking key in
/// structured JSON (`{"password": "..."}`), if the string looks like a value.
pub fn structured_assignment(key: &str, value: &str) -> Option<Candidate> {
    if !is_secret_key(key) || !plausible_secret(value) {
        return None;
    }
    let rank = DETECTORS.iter().position(|d| d.name == PASSWORD_ASSIGNMENT)?;
    Some(Candidate {
        rank,
        finding: Finding {
            detector: PASSWORD_ASSIGNMENT,
            category: Category::Secret,
            start: 0,
            end: value.len(),
        },
    })
}

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("detector pattern compiles")
}

/// What a detector decided about a candidate.
enum Step {
    /// A finding at these offsets; the search goes on after it.
    Accept(usize, usize),
    /// Not a finding; the search goes on at this offset.
    Reject(usize),
}

/// Runs `check` on each candidate match of `re` in `text[range]`, left to
/// right. Offsets are into `text`.
fn each(re: &Regex, text: &str, range: Range<usize>, sink: &mut Sink<'_>, mut check: impl FnMut(Match<'_>) -> Step) {
    let end = ceil_boundary(text, range.end);
    let haystack = &text[..end];
    let mut pos = ceil_boundary(text, range.start);
    while pos < end {
        let Some(m) = re.find_at(haystack, pos) else { break };
        let next = match check(m) {
            Step::Accept(start, end) => {
                sink.push(start, end);
                end
            }
            Step::Reject(resume) => resume,
        };
        // Always progress, and stay on a character boundary.
        let mut next = next.max(m.start() + 1);
        while next < text.len() && !text.is_char_boundary(next) {
            next += 1;
        }
        pos = next;
    }
}

/// The first character boundary at or after `i` (at most `text.len()`).
fn ceil_boundary(text: &str, i: usize) -> usize {
    let mut i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// The last character boundary at or before `i`.
fn floor_boundary(text: &str, i: usize) -> usize {
    let mut i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

// ---------------------------------------------------------------------------
// Byte-level helpers. All boundaries are ASCII: a non-ASCII neighbour counts
// as a separator.

fn before(text: &str, i: usize) -> Option<u8> {
    i.checked_sub(1).and_then(|j| text.as_bytes().get(j).copied())
}

fn at(text: &str, i: usize) -> Option<u8> {
    text.as_bytes().get(i).copied()
}

fn is_alnum(b: Option<u8>) -> bool {
    b.is_some_and(|b| b.is_ascii_alphanumeric())
}

fn is_word(b: Option<u8>) -> bool {
    b.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn is_digit(b: Option<u8>) -> bool {
    b.is_some_and(|b| b.is_ascii_digit())
}

/// End of the run of bytes satisfying `f` that starts at `i`.
fn run_end(text: &str, mut i: usize, f: impl Fn(u8) -> bool) -> usize {
    let b = text.as_bytes();
    while i < b.len() && f(b[i]) {
        i += 1;
    }
    i
}

/// A number-like token starts at `i`: not glued to a word, nor continuing a
/// number, a date or a time (`12.`, `12-`, `12/`, `12,`, `12:` before it).
fn number_starts(text: &str, i: usize) -> bool {
    let prev = before(text, i);
    if is_word(prev) {
        return false;
    }
    !(matches!(prev, Some(b'.' | b'-' | b'/' | b',' | b':')) && is_digit(before(text, i - 1)))
}

/// A number-like token ends at `i`: not glued to a word, nor continued by a
/// number, a date or a time (`.5`, `-5`, `/5`, `,5`, `:5` after it).
fn number_ends(text: &str, i: usize) -> bool {
    let next = at(text, i);
    if is_word(next) {
        return false;
    }
    !(matches!(next, Some(b'.' | b'-' | b'/' | b',' | b':')) && is_digit(at(text, i + 1)))
}

// ---------------------------------------------------------------------------
// Secrets

static KEY_BEGIN: LazyLock<Regex> = LazyLock::new(|| re(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"));
static KEY_END: LazyLock<Regex> = LazyLock::new(|| re(r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"));

/// `-----BEGIN ... PRIVATE KEY-----` to the next `-----END ... PRIVATE
/// KEY-----` (any key type, PGP's `PRIVATE KEY BLOCK` too). A block without
/// an END before the next BEGIN (a truncated result) extends over the lines
/// that look like its body: base64 lines, `Name: value` headers, and one
/// blank line at a time; lines may end in real newlines or escaped `\n`. A
/// header with no body at all is not a finding.
fn private_key_block(text: &str, range: Range<usize>, sink: &mut Sink<'_>) {
    each(&KEY_BEGIN, text, range.clone(), sink, |m| {
        // The END is looked for up to the next BEGIN only: linear time
        // however many headers there are.
        let next_begin = KEY_BEGIN.find_at(text, m.end()).map_or(text.len(), |b| b.start());
        match KEY_END.find_at(&text[..next_begin], m.end()) {
            Some(e) => Step::Accept(m.start(), e.end()),
            None => match unterminated_body_end(&text[..next_begin], m.end()) {
                // A header alone (documentation, code) holds no key.
                end if end == m.end() => Step::Reject(m.end()),
                end => Step::Accept(m.start(), end),
            },
        }
    });
}

fn unterminated_body_end(text: &str, from: usize) -> usize {
    let b = text.as_bytes();
    let mut end = from;
    let mut i = from;
    let mut blanks = 0;
    while i < b.len() {
        // A line ends at a newline or at an escaped newline (`\n`, two bytes).
        let mut j = i;
        let mut next = b.len();
        while j < b.len() {
            if b[j] == b'\n' {
                next = j + 1;
                break;
            }
            if b[j] == b'\\' && b.get(j + 1) == Some(&b'n') {
                next = j + 2;
                break;
            }
            j += 1;
        }
        let mut line = &b[i..j];
        let mut line_end = j;
        while let Some((&last, rest)) = line.split_last() {
            if last.is_ascii_whitespace() {
                line = rest;
                line_end -= 1;
            } else if last == b'r' && rest.last() == Some(&b'\\') {
                line = &rest[..rest.len() - 1];
                line_end -= 2;
            } else {
                break;
            }
        }
        let trimmed = line.trim_ascii_start();
        if trimmed.is_empty() {
            blanks += 1;
            if blanks > 1 {
                break;
            }
        } else if trimmed
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='))
            || is_pem_header(trimmed)
        {
            blanks = 0;
            end = line_end;
        } else {
            break;
        }
        i = next;
    }
    end
}

/// `Proc-Type: 4,ENCRYPTED`, `DEK-Info: ...`, `Comment: ...`.
fn is_pem_header(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&c| c == b':') else {
        return false;
    };
    colon > 0
        && line[..colon].iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
        && line[colon..].iter().all(|&c| c.is_ascii_graphic() || c == b' ')
}

static JWT: LazyLock<Regex> = LazyLock::new(|| {
    re(r"e[wy][A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*)?")
});

fn is_b64url(b: Option<u8>) -> bool {
    b.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A JWS (3 segments) or JWE (5) in compact form whose header is base64url
/// of a JSON object with a string `alg`. Segments are unpadded base64url of
/// valid lengths. Rejected candidates resume at their end: a JWT cannot
/// start inside a run of base64url and dots.
fn jwt(text: &str, range: Range<usize>, sink: &mut Sink<'_>) {
    each(&JWT, text, range.clone(), sink, |m| {
        let (start, end) = (m.start(), m.end());
        let glued_before = is_b64url(before(text, start)) || before(text, start) == Some(b'.');
        let glued_after = at(text, end) == Some(b'.') && is_b64url(at(text, end + 1));
        let segments: Vec<&str> = m.as_str().split('.').collect();
        let ok = !glued_before
            && !glued_after
            && matches!(segments.len(), 3 | 5)
            && segments.iter().all(|s| s.len() % 4 != 1)
            && jose_header(segments[0]);
        if ok {
            Step::Accept(start, end)
        } else {
            Step::Reject(end)
        }
    });
}

fn jose_header(segment: &str) -> bool {
    let Some(bytes) = base64url_decode(segment) else {
        return false;
    };
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(header)) => header.get("alg").is_some_and(serde_json::Value::is_string),
        _ => false,
    }
}

/// Unpadded base64url (RFC 4648 §5), as JOSE uses it.
pub fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (bits < 6).then_some(out)
}

static GITHUB: LazyLock<Regex> = LazyLock::new(|| re(r"gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{30,}"));

/// Classic tokens `ghp_`/`gho_`/`ghu_`/`ghs_`/`ghr_` + 36 or more
/// alphanumerics, fine-grained `github_pat_...`; at most 255 characters, as
/// a whole word. The CRC32 that GitHub embeds in the last six characters is
/// not required (see the module documentation).
fn github_token(text: &str, range: Range<usize>, sink: &mut Sink<'_>) {
    each(&GITHUB, text, range.clone(), sink, |m| {
        let ok = !is_word(before(text, m.start())) && !is_word(at(text, m.end())) && m.len() <= 255;
        if ok {
            Step::Accept(m.start(), m.end())
        } else {
            Step::Reject(m.end())
        }
    });
}

static SLACK: LazyLock<Regex> = LazyLock::new(|| re(r"(?:xoxe\.)?xox[abprs]-[A-Za-z0-9-]{10,}"));

/// `xoxb-`, `xoxp-`, `xoxa-`, `xoxr-`, `xoxs-` (and rotating `xoxe.xoxp-`)
/// tokens: dash-separated parts, the first numeric, at least 15 characters
/// after the prefix, as a whole word.
fn slack_token(text: &str, range: Range<usize>, sink: &mut Sink<'_>) {
    each(&SLACK, text, range.clone(), sink, |m| {
        let s = m.as_str().trim_end_matches('-');
        let end = m.start() + s.len();
        let body = s.split_once('-').map_or("", |(_, rest)| rest);
        let mut parts = body.split('-');
        let first_numeric = parts
            .next()
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        let ok = !is_word(before(text, m.start()))
            && !is_word(at(text, m.end()))
            && first_numeric
            && parts.next().is_some()
            && body.len() >= 15;
        if ok {
            Step::Accept(m.start(), end)
        } else {
            Step::Reject(m.end())
        }
    });
}

static AWS_KEY_ID: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA)[A-Z0-9]{16}[A-Za-z0-9]*")
});

/// An access key id: a known four-character prefix and 16 more uppercase
/// alphanumerics, exactly 20 characters as a whole word.
fn aws_access_key_id(text: &str, range: Range<usize>, sink: &mut Sink<'_>) {
    each(&AWS_KEY_ID, text, range.clone(), sink, |m| {
        let ok = m.len() == 20 && !is_alnum(before(text, m.start()));
        if ok {
            Step::Accept(m.start(), m.end())
        } else {
            Step::Reject(m.end())
        }
    });
}

static AWS_SECRET: LazyLock<Regex> = LazyLock::new(|| re(r"[A-Za-z0-9/+]{40,}"));
static AWS_KEYWORD: LazyLock<Regex> = LazyLock::new(|| re(r"(?i-u)aws|secret"));

/// How far before a 40-character candidate an `aws` or `secret` keyword may be.
const AWS_KEYWORD_WINDOW: usize = 96;

/// A secret access key: exactly 40 base64 characters as a whole word, with
/// lowercase, uppercase and a digit or `/`/`+` (which rules out hex digests
/// such as git SHA-1s), only within [`AWS_KEYWORD_WINDOW`] bytes after `aws`
/// or `secret` (any case: `aws_secret_access_key = ...`, `"SecretAccessKey":
/// "..."`).
fn aws_secret_access_key(text: &str, range: Range<usize>, sink: &mut Sink<'_>) {
    // Only the stretches where a candidate would have a keyword before it.
    let mut windows: Vec<Range<usize>> = Vec::new();
    for k in AWS_KEYWORD.find_iter(&text[..ceil_boundary(text, range.end)]) {
        let window = k.end()..(k.start() + AWS_KEYWORD_WINDOW + 40).min(range.end);
        match windows.last_mut() {
            Some(last) if window.start <= last.end => last.end = last.end.max(window.end),
            _ => windows.push(window),
        }
    }
    let is_b64 = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'/' || b == b'+');
    for window in windows {
        each(&AWS_SECRET, text, window, sink, |m| {
            let s = m.as_str().as_bytes();
            let ok = m.len() == 40
                && !is_b64(before(text, m.start()))
                && at(text, m.end()) != Some(b'=')
                && s.iter().any(u8::is_ascii_lowercase)
                && s.iter().any(u8::is_ascii_uppercase)
                && s.iter().any(|&b| b.is_ascii_digit() || b == b'/' || b == b'+')
                && AWS_KEYWORD
                    .is_match(&text[floor_boundary(text, m.start().saturating_sub(AWS_KEYWORD_WINDOW))..m.start()]);
            if ok {
                Step::Accept(m.start(), m.end())
            } else {
                Step::Reject(m.end())
            }
        });
    }
}

/// The end of a secret-looking key and its separator; the key itself is
/// the identifier that ends in the keyword (found backwards: a leading
/// `[A-Za-z0-9_.-]*` in the pattern would keep the regex engine from
/// searching for the keywords as literals).
static SECRET_KEY: LazyLock<Regex> = LazyLock::new(|| {
    re(r#"(?i-u)(?:pass(?:word|wd|phrase)?|pwd|secret|token|key|authorization)(?:\\?["'])?[ \t]*[:=]"#)
});

static URL_USERINFO: LazyLock<Regex> = LazyLock::new(|| re(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@:]*:[^\s/?#@]+@"));

/// `key=value`, `key: value`, `"key": "value"` (and `'key': 'value'`,
/// `key := "value"`, `key => 'value'`) where the key is secret-looking (see
/// [`is_secret_key`]); also the password of `scheme://user:password@host`.
/// The finding is the value only. Quoted values are always taken; unquoted
/// ones:
///
/// - `key=value` with no spaces around `=` (`.env`, URLs, flags, logfmt):
///   the value up to whitespace or `& ; , ( ) [ ] { } < > \` quotes;
/// - `key: value` and `key = value`: only if the value is alone on the rest
///   of its line (so prose such as `password: it must be long` is not
///   taken); with `=`, not if it is a bare identifier without a digit (a
///   variable in code: `password = user_input`).
///
/// Either way, a value followed by `(` (a call), a dotted path
/// (`config.password`), a literal (`true`, `null`, ...), a reference or
/// template (`$VAR`, `${VAR}`, `%s`, `{{x}}`, `<password>`), a masked value
/// (`****`) or one of our placeholders is not a finding. `Authorization:
/// Bearer x` (also `Basic`, `Token`, `Bot`) yields just `x`.
fn password_assignment(text: &str, range: Range<usize>, sink: &mut Sink<'_>) {
    each(&SECRET_KEY, text, range.clone(), sink, |m| {
        // The key is the identifier that ends in the keyword.
        let b = text.as_bytes();
        let mut key_start = m.start();
        while key_start > 0
            && (b[key_start - 1].is_ascii_alphanumeric() || matches!(b[key_start - 1], b'_' | b'.' | b'-'))
        {
            key_start -= 1;
        }
        // Part of a path (`Input::Token:`, `crate::token::X`) or of a URL
        // (`user@pass:host`, `/token:`): not a key.
        if matches!(before(text, key_start), Some(b':' | b'@' | b'/')) {
            return Step::Reject(m.end());
        }
        match assignment_value(text, key_start, m.end()) {
            Some((start, end)) => Step::Accept(start, end),
            None => Step::Reject(m.end()),
        }
    });
    if text.contains("://") {
        each(&URL_USERINFO, text, range.clone(), sink, |m| {
            let s = m.as_str();
            let authority = s.find("://").map_or(0, |i| i + 3);
            let colon = authority + s[authority..].find(':').unwrap_or(0);
            let (start, end) = (m.start() + colon + 1, m.end() - 1);
            // `http://localhost:80@evil.example`: a port, not a password.
            let port = end - start <= 5 && text[start..end].bytes().all(|c| c.is_ascii_digit());
            if start < end && !port && plausible_secret(&text[start..end]) {
                Step::Accept(start, end)
            } else {
                Step::Reject(m.end())
            }
        });
    }
}

/// The value assigned to the key at `key_start`, whose separator (`:` or
/// `=`) ends at `sep_end`.
fn assignment_value(text: &str, key_start: usize, sep_end: usize) -> Option<(usize, usize)> {
    let b = text.as_bytes();
    let mut sep = b[sep_end - 1];
    // The key: without the separator, spaces and closing quote.
    let mut key_end = sep_end - 1;
    while key_end > key_start && matches!(b[key_end - 1], b' ' | b'\t') {
        key_end -= 1;
    }
    let spaced_before = key_end < sep_end - 1;
    if key_end > key_start && matches!(b[key_end - 1], b'"' | b'\'') {
        key_end -= 1;
        if key_end > key_start && b[key_end - 1] == b'\\' {
            key_end -= 1;
        }
    }
    if !is_secret_key(&text[key_start..key_end]) {
        return None;
    }
    let mut v = sep_end;
    match (sep, at(text, v)) {
        (b':', Some(b':')) => return None,
        (b':', Some(b'=')) => {
            sep = b'=';
            v += 1;
        }
        (b'=', Some(b'>')) => v += 1,
        (b'=', Some(b'=')) => return None,
        _ => {}
    }
    let after_sep = v;
    v = run_end(text, v, |c| c == b' ' || c == b'\t');
    let compact = sep == b'=' && !spaced_before && v == after_sep;

    let quoted = matches!(at(text, v), Some(b'"' | b'\'' | b'\\'));
    let (start, end) = match at(text, v) {
        Some(q @ (b'"' | b'\'')) => {
            let close = closing_quote(b, v + 1, q)?;
            skip_auth_scheme(text, v + 1, close)
        }
        Some(b'\\') if at(text, v + 1) == Some(b'"') => {
            let close = text[v + 2..].find("\\\"")? + v + 2;
            if text[v + 2..close].contains('\n') {
                return None;
            }
            skip_auth_scheme(text, v + 2, close)
        }
        _ => {
            let end = unquoted_end(text, v);
            // Nothing, a call, or a reference or template (`$VAR`, `${VAR}`,
            // `%s`, `{{ x }}`, `<password>`).
            if end == v || at(text, end) == Some(b'(') || matches!(at(text, v), Some(b'$' | b'%' | b'{' | b'<')) {
                return None;
            }
            if compact {
                (v, end)
            } else {
                let (start, end) = match auth_scheme_len(&text[v..]) {
                    Some(n) if unquoted_end(text, v + n) > v + n => (v + n, unquoted_end(text, v + n)),
                    _ => (v, end),
                };
                if looks_like_code(&text[start..end]) || !rest_of_line_empty(text, end) {
                    return None;
                }
                (start, end)
            }
        }
    };
    let value = &text[start..end];
    let field = !quoted && is_field_access(value);
    (end - start >= 3 && !field && !is_dotted_path(value) && plausible_secret(value)).then_some((start, end))
}

/// `node.colon2_token`, `self.api_key`: reading another secret-named field,
/// in code.
fn is_field_access(value: &str) -> bool {
    value.contains('.') && value.split('.').all(is_identifier) && value.rsplit('.').next().is_some_and(is_secret_key)
}

/// An unquoted value in `key: value` or `key = value` form that is code
/// rather than a secret: a number (`NETKIT_PASS = 0,`, `X_PASS = 0x04`), a path
/// (`token::Brace`), a dereference (`*semi`), a type (`String`, `__u32`,
/// `usize`), or any identifier without a digit (`token: Token`,
/// `password = user_input`, `id-token: write`). The price: unquoted
/// all-letter values such as `password: letmein` are not findings (quoted
/// ones are).
fn looks_like_code(value: &str) -> bool {
    let numeric = value
        .trim_start_matches('-')
        .bytes()
        .all(|c| c.is_ascii_digit() || c == b'.')
        || value
            .strip_prefix("0x")
            .is_some_and(|hex| hex.bytes().all(|c| c.is_ascii_hexdigit() || c == b'_'));
    let primitive = {
        let t = value.trim_start_matches('_');
        let width = t.get(1..).unwrap_or("");
        matches!(t.as_bytes().first(), Some(b'u' | b'i' | b'f' | b's'))
            && matches!(width, "8" | "16" | "32" | "64" | "128" | "size")
    };
    let identifier = is_identifier(value) && !value.bytes().any(|c| c.is_ascii_digit());
    numeric || primitive || identifier || value.contains("::") || value.starts_with('*')
}

fn closing_quote(b: &[u8], mut i: usize, q: u8) -> Option<usize> {
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'\n' => return None,
            c if c == q => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// The end of an unquoted value: whitespace or one of these.
const VALUE_STOPS: &[u8] = b"\"'`&;,()[]{}<>\\";

fn unquoted_end(text: &str, from: usize) -> usize {
    run_end(text, from, |c| !c.is_ascii_whitespace() && !VALUE_STOPS.contains(&c))
}

/// In a quoted value, `Bearer x` → `x` (also `Basic`, `Token`, `Bot`) when
/// `x` is one token.
fn skip_auth_scheme(text: &str, start: usize, end: usize) -> (usize, usize) {
    let content = &text[start..end];
    match auth_scheme_len(content) {
        Some(n) if n < content.len() && !content[n..].contains(char::is_whitespace) => (start + n, end),
        _ => (start, end),
    }
}

/// The length of `Bearer ` (with its spaces) at the start of `s`.
fn auth_scheme_len(s: &str) -> Option<usize> {
    let word = s.bytes().take_while(u8::is_ascii_alphabetic).count();
    let scheme = ["bearer", "basic", "token", "bot"]
        .iter()
        .any(|x| s[..word].eq_ignore_ascii_case(x));
    (scheme && s.as_bytes().get(word) == Some(&b' '))
        .then(|| word + s[word..].bytes().take_while(|&c| c == b' ').count())
}

/// Nothing but spaces, one `,` or `;`, and spaces up to the end of the line
/// (a newline, an escaped `\n`, or the end of the text).
fn rest_of_line_empty(text: &str, from: usize) -> bool {
    let mut i = run_end(text, from, |c| c == b' ' || c == b'\t');
    if matches!(at(text, i), Some(b',' | b';')) {
        i = run_end(text, i + 1, |c| c == b' ' || c == b'\t');
    }
    match at(text, i) {
        None | Some(b'\n' | b'\r') => true,
        Some(b'\\') => matches!(at(text, i + 1), Some(b'n' | b'r')),
        _ => false,
    }
}

fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_' || c == b'$')
        && bytes.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'$')
}

/// `config.password`, `os.environ`, `self.token`: code, not a value.
fn is_dotted_path(s: &str) -> bool {
    s.contains('.') && s.split('.').all(is_identifier) && !s.bytes().any(|c| c.is_ascii_digit())
}

/// Whether a key names a secret: its letters and digits, lowercased, end in
/// `password`, `passwd`, `passphrase`, `secret`, `token`, `apikey`,
/// `accesskey`, `secretkey`, `privatekey`, `signingkey`, `encryptionkey` or
/// `authorization`, or its last word is `pass` or `pwd` (`DB_PASS`,
/// `dbPwd`, not `bypass`). Not: pagination and idempotency tokens
/// (`nextToken`, `next_page_token`, `pageToken`, `continuation_token`,
/// `sync_token`, `ClientToken`, `idempotency_token`, `resume_token`,
/// `cancellation_token`), the shell's `PWD`/`OLDPWD`; keys that go on after
/// the keyword (`token_type`, `max_tokens`, `secret_name`) never match.
pub fn is_secret_key(key: &str) -> bool {
    let norm: String = key
        .bytes()
        .filter(u8::is_ascii_alphanumeric)
        .map(|c| char::from(c.to_ascii_lowercase()))
        .collect();
    const NOT_SECRET: [&str; 10] = [
        // MCP's own: a progress notification's correlation id.
        "progresstoken",
        "nexttoken",
        "pagetoken",
        "continuationtoken",
        "synctoken",
        "clienttoken",
        "idempotencytoken",
        "resumetoken",
        "cancellationtoken",
        "paginationtoken",
    ];
    if norm == "pwd" || norm == "oldpwd" || NOT_SECRET.iter().any(|s| norm.ends_with(s)) {
        return false;
    }
    const SUFFIXES: [&str; 12] = [
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "apikey",
        "accesskey",
        "secretkey",
        "privatekey",
        "signingkey",
        "encryptionkey",
        "authorization",
    ];
    if SUFFIXES.iter().any(|s| norm.ends_with(s)) {
        return true;
    }
    let last = last_word(key);
    last.eq_ignore_ascii_case("pass") || last.eq_ignore_ascii_case("pwd")
}

/// The last word of an identifier: after the last non-alphanumeric, and
/// after the last camel-case hump (`dbPass` → `Pass`, `DBPass` → `Pass`).
fn last_word(key: &str) -> &str {
    let piece = key.rsplit(|c: char| !c.is_ascii_alphanumeric()).next().unwrap_or(key);
    let b = piece.as_bytes();
    let mut start = 0;
    for i in 1..b.len() {
        let hump = b[i].is_ascii_uppercase()
            && (b[i - 1].is_ascii_lowercase() || b.get(i + 1).is_some_and(u8::is_ascii_lowercase));
        if hump {
            start = i;
        }
    }
    &piece[start..]
}

/// Whether an assigned value could be a secret rather than a literal, a
/// reference, a template, a mask or an earlier redaction.
pub fn plausible_secret(v: &str) -> bool {
    const LITERALS: [&str; 11] = [
        "true",
        "false",
        "null",
        "none",
        "nil",
        "undefined",
        "yes",
        "no",
        "on",
        "off",
        "redacted",
    ];
    let t = v.trim();
    if t.is_empty() || LITERALS.iter().any(|l| t.eq_ignore_ascii_case(l)) || t.starts_with("[REDACTED") {
        return false;
    }
    let reference = (t.starts_with("${") && t.ends_with('}'))
        || (t.starts_with('$') && is_identifier(&t[1..]))
        || (t.starts_with('%') && t.len() <= 3)
        || (t.len() > 2 && t.starts_with('%') && t.ends_with('%') && is_identifier(&t[1..t.len() - 1]))
        || (t.starts_with('{') && t.ends_with('}'))
        || (t.starts_with('<') && t.ends_with('>'));
    let masked = t
        .chars()
        .all(|c| matches!(c, '*' | '•' | '●' | 'x' | 'X' | '.' | '#' | '-' | '_'));
    !reference && !masked
}

// ---------------------------------------------------------------------------
// PII

/// The country codes as literals, so that the regex engine searches for them.
static IBAN: LazyLock<Regex> = LazyLock::new(|| {
    let countries: Vec<&str> = IBAN_LENGTHS.iter().map(|(c, _)| *c).collect();
    re(&format!(
        r"(?:{})[0-9]{{2}}(?: ?[A-Z0-9]{{4}}){{2,8}}(?: ?[A-Z0-9]{{1,3}})?",
        countries.join("|")
    ))
});

/// An IBAN, electronic (`DE89370400440532013000`) or printed in groups of
/// four (`DE89 3704 0044 0532 0130 00`): a country of the IBAN registry, the
/// exact length for that country, mod-97 = 1, as a whole word. Uppercase
/// only. Rejected candidates resume after their first word.
fn iban(text: &str, range: Range<usize>, sink: &mut Sink<'_>) {
    each(&IBAN, text, range.clone(), sink, |m| {
        let first_word_end = run_end(text, m.start(), |c| c.is_ascii_alphanumeric());
        let s = m.as_str().as_bytes();
        let Some(len) = iban_length(&s[..2]) else {
            return Step::Reject(first_word_end);
        };
        // Take exactly `len` characters, skipping the group spaces.
        let mut chars = Vec::with_capacity(len);
        let mut end = m.start();
        for (i, &c) in s.iter().enumerate() {
            if chars.len() == len {
                break;
            }
            if c != b' ' {
                chars.push(c);
                end = m.start() + i + 1;
            }
        }
        let ok = chars.len() == len && !is_alnum(before(text, m.start())) && !is_alnum(at(text, end)) && {
            let (head, bban) = chars.split_at(4);
            mod97(bban.iter().chain(head)) == 1
        };
        if ok {
            Step::Accept(m.start(), end)
        } else {
            Step::Reject(first_word_end)
        }
    });
}

fn mod97<'a>(chars: impl Iterator<Item = &'a u8>) -> u32 {
    chars.fold(0, |r, &c| match c {
        b'0'..=b'9' => (r * 10 + u32::from(c - b'0')) % 97,
        _ => (r * 100 + u32::from(c - b'A') + 10) % 97,
    })
}

/// IBAN lengths by country (SWIFT IBAN registry).
#[rustfmt::skip]
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24), ("AE", 23), ("AL", 28), ("AT", 20), ("AZ", 28), ("BA", 20), ("BE", 16), ("BG", 22), ("BH", 22),
    ("BI", 27), ("BR", 29), ("BY", 28), ("CH", 21), ("CR", 22), ("CY", 28), ("CZ", 24), ("DE", 22), ("DJ", 27),
    ("DK", 18), ("DO", 28), ("EE", 20), ("EG", 29), ("ES", 24), ("FI", 18), ("FK", 18), ("FO", 18), ("FR", 27),
    ("GB", 22), ("GE", 22), ("GI", 23), ("GL", 18), ("GR", 27), ("GT", 28), ("HN", 28), ("HR", 21), ("HU", 28),
    ("IE", 22), ("IL", 23), ("IQ", 23), ("IS", 26), ("IT", 27), ("JO", 30), ("KW", 30), ("KZ", 20), ("LB", 28),
    ("LC", 32), ("LI", 21), ("LT", 20), ("LU", 20), ("LV", 21), ("LY", 25), ("MC", 27), ("MD", 24), ("ME", 22),
    ("MK", 19), ("MN", 20), ("MR", 27), ("MT", 31), ("MU", 30), ("NI", 28), ("NL", 18), ("NO", 15), ("OM", 23),
    ("PK", 24), ("PL", 28), ("PS", 29), ("PT", 25), ("QA", 29), ("RO", 24), ("RS", 22), ("RU", 33), ("SA", 24),
    ("SC", 31), ("SD", 18), ("SE", 24), ("SI", 19), ("SK", 24), ("SM", 27), ("SO", 23), ("ST", 25), ("SV", 28),
    ("TL", 23), ("TN", 24), ("TR", 26), ("UA", 29), ("VA", 22), ("VG", 24), ("XK", 20), ("YE", 30),
];

fn iban_length(country: &[u8]) -> Option<usize> {
    IBAN_LENGTHS
        .iter()
        .find(|(c, _)| c.as_bytes() == country)
        .map(|&(_, len)| len)
}

static CARD: LazyLock<Regex> = LazyLock::new(|| re(r"[0-9]{4}(?:(?:[ -][0-9]{1,6}){2,4}|[0-9]{9,})"));

/// A payment card number: 13–19 digits, contiguous or in groups separated
/// by one kind of separator (space or dash) in a card layout (4-4-4-4,
/// 4-4-4-4-3, 4-6-5, 4-6-4, ...), passing Luhn, with an issuer prefix and
/// length of a known scheme (Visa, Mastercard, Amex, Discover, Diners, JCB,
/// UnionPay, Maestro, Mir, RuPay), not glued to a word or another number.
/// Visa's old 13-digit numbers are left out: ~1% of all 13-digit numbers
/// (millisecond timestamps, ids) would pass as one. If the groups are too
/// many, the longest valid leading groups count (`4111 1111 1111 1111
/// 2029`). Rejected candidates resume after their first group (so `2024
/// 4111 1111 1111 1111` still finds the card).
fn credit_card(text: &str, range: Range<usize>, sink: &mut Sink<'_>) {
    each(&CARD, text, range.clone(), sink, |m| {
        let start = m.start();
        let first_group_end = run_end(text, start, |c| c.is_ascii_digit());
        // Not glued, and not signed (`-4386812962460287` is a number).
        if !number_starts(text, start) || matches!(before(text, start), Some(b'-' | b'+')) {
            return Step::Reject(first_group_end);
        }
        let s = m.as_str();
        if !s.contains([' ', '-']) {
            let ok =
                number_ends(text, m.end()) && valid_card(s.as_bytes()) && !among_other_numbers(text, start, m.end());
            return if ok {
                Step::Accept(start, m.end())
            } else {
                Step::Reject(first_group_end)
            };
        }
        let sep = s.as_bytes()[4];
        if s.bytes().any(|c| !c.is_ascii_digit() && c != sep) {
            return Step::Reject(first_group_end);
        }
        let groups: Vec<&str> = s.split(char::from(sep)).collect();
        for k in (3..=groups.len()).rev() {
            let sizes: Vec<usize> = groups[..k].iter().map(|g| g.len()).collect();
            let end = start + sizes.iter().sum::<usize>() + k - 1;
            let digits: Vec<u8> = groups[..k].iter().flat_map(|g| g.bytes()).collect();
            if card_layout(&sizes) && valid_card(&digits) && number_ends(text, end) {
                return Step::Accept(start, end);
            }
        }
        Step::Reject(first_group_end)
    });
}

/// The number at `start..end` is an element of a comma-separated list of
/// numbers (`[375514548584082, 1312887672223536, ...]`, constants in code)
/// with a neighbour that is not a card number. A list of card numbers (a
/// dump) still counts.
fn among_other_numbers(text: &str, start: usize, end: usize) -> bool {
    let b = text.as_bytes();
    let skip_back = |mut i: usize| {
        while i > 0 && start - i < 64 && b[i - 1].is_ascii_whitespace() {
            i -= 1;
        }
        i
    };
    let skip_forward = |mut i: usize| {
        while i < b.len() && i - end < 64 && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let not_card = |digits: &[u8]| !digits.is_empty() && !valid_card(digits);
    // The neighbour before: `..., 123456,` + whitespace.
    let i = skip_back(start);
    let before_is_other = i > 0 && b[i - 1] == b',' && {
        let j = skip_back(i - 1);
        let mut k = j;
        while k > 0 && j - k < 20 && b[k - 1].is_ascii_digit() {
            k -= 1;
        }
        k < j && not_card(&b[k..j])
    };
    // The neighbour after: whitespace + `, 123456, ...`.
    let i = skip_forward(end);
    let after_is_other = i < b.len() && b[i] == b',' && {
        let j = skip_forward(i + 1);
        let k = run_end(text, j, |c| c.is_ascii_digit());
        k > j && k - j <= 20 && not_card(&b[j..k])
    };
    before_is_other || after_is_other
}

fn card_layout(sizes: &[usize]) -> bool {
    let (last, init) = sizes.split_last().unwrap_or((&0, &[]));
    let fours = init.iter().all(|&n| n == 4) && (1..=4).contains(last);
    fours || sizes == [4, 6, 5] || sizes == [4, 6, 4]
}

fn valid_card(digits: &[u8]) -> bool {
    (13..=19).contains(&digits.len()) && luhn(digits) && known_issuer(digits)
}

pub fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &c)| {
            let d = u32::from(c - b'0');
            if i % 2 == 1 {
                let d = d * 2;
                if d > 9 { d - 9 } else { d }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Issuer identification number ranges: (first, last, digits compared,
/// allowed lengths).
const ISSUERS: [(u32, u32, usize, &[usize]); 23] = [
    (4, 4, 1, &[16, 19]),                           // Visa (13-digit PANs are no longer issued)
    (51, 55, 2, &[16]),                             // Mastercard
    (2221, 2720, 4, &[16]),                         // Mastercard
    (34, 34, 2, &[15]),                             // American Express
    (37, 37, 2, &[15]),                             // American Express
    (6011, 6011, 4, &[16, 17, 18, 19]),             // Discover
    (644, 649, 3, &[16, 17, 18, 19]),               // Discover
    (65, 65, 2, &[16, 17, 18, 19]),                 // Discover, RuPay
    (300, 305, 3, &[14, 15, 16, 17, 18, 19]),       // Diners Club
    (36, 36, 2, &[14, 15, 16, 17, 18, 19]),         // Diners Club International
    (38, 39, 2, &[14, 15, 16, 17, 18, 19]),         // Diners Club
    (3528, 3589, 4, &[16, 17, 18, 19]),             // JCB
    (62, 62, 2, &[16, 17, 18, 19]),                 // UnionPay
    (2200, 2204, 4, &[16, 17, 18, 19]),             // Mir
    (60, 60, 2, &[16]),                             // RuPay
    (5018, 5018, 4, &[13, 14, 15, 16, 17, 18, 19]), // Maestro
    (5020, 5020, 4, &[13, 14, 15, 16, 17, 18, 19]), // Maestro
    (5038, 5038, 4, &[13, 14, 15, 16, 17, 18, 19]), // Maestro
    (5893, 5893, 4, &[13, 14, 15, 16, 17, 18, 19]), // Maestro
    (6304, 6304, 4, &[13, 14, 15, 16, 17, 18, 19]), // Maestro
    (6759, 6759, 4, &[13, 14, 15, 16, 17, 18, 19]), // Maestro
    (6761, 6763, 4, &[13, 14, 15, 16, 17, 18, 19]), // Maestro
    (508, 508, 3, &[16]),                           // RuPay
];

fn known_issuer(digits: &[u8]) -> bool {
    ISSUERS.iter().any(|&(lo, hi, n, lengths)| {
        let prefix = digits[..n].iter().fold(0, |acc, &c| acc * 10 + u32::from(c - b'0'));
        (lo..=hi).contains(&prefix) && lengths.contains(&digits.len())
    })
}

static SSN: LazyLock<Regex> = LazyLock::new(|| re(r"[0-9]{3}-[0-9]{2}-[0-9]{4}"));

/// `AAA-GG-SSSS`, dashes only, not glued to a word or another number; area
/// not 000, 666 or 900–999, group not 00, serial not 0000.
fn us_ssn(text: &str, range: Range<usize>, sink: &mut Sink<'_>) {
    each(&SSN, text, range.clone(), sink, |m| {
        let s = m.as_str().as_bytes();
        let num = |r: std::ops::Range<usize>| s[r].iter().fold(0u32, |acc, &c| acc * 10 + u32::from(c - b'0'));
        let (area, group, serial) = (num(0..3), num(4..6), num(7..11));
        let ok = area != 0
            && area != 666
            && area < 900
            && group != 0
            && serial != 0
            && number_starts(text, m.start())
            && number_ends(text, m.end());
        if ok {
            Step::Accept(m.start(), m.end())
        } else {
            Step::Reject(m.start() + 3)
        }
    });
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    re(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,63}")
});

/// File extensions that show up as "TLDs" in `icon@2x.png` and friends and
/// are not top-level domains.
const NOT_TLDS: [&str; 20] = [
    "png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "css", "js", "ts", "json", "html", "htm", "txt", "pdf",
    "xml", "yaml", "yml", "toml",
];

/// `local@domain.tld`: local part without leading, trailing or doubled
/// dots (leading dots are left out of the finding), at most 64 bytes;
/// domain labels not starting or ending with `-`; an alphabetic TLD that is
/// not a file extension (`icon@2x.png` is not an email); as a whole word.
fn email(text: &str, range: Range<usize>, sink: &mut Sink<'_>) {
    each(&EMAIL, text, range.clone(), sink, |m| {
        let s = m.as_str();
        let Some((local, domain)) = s.split_once('@') else {
            return Step::Reject(m.end());
        };
        let trimmed = local.trim_start_matches('.');
        let start = m.start() + (local.len() - trimmed.len());
        let tld = domain.rsplit('.').next().unwrap_or("");
        // `scheme://user:password@host`: credentials, not an address.
        let userinfo = before(text, start) == Some(b':') && {
            let b = text.as_bytes();
            let mut i = start - 1;
            while i > 0 && start - i < 256 && !b[i - 1].is_ascii_whitespace() && b[i - 1] != b'/' {
                i -= 1;
            }
            text[..i].ends_with("://")
        };
        let ok = !userinfo
            && !trimmed.is_empty()
            && trimmed.len() <= 64
            && !trimmed.ends_with('.')
            && !trimmed.contains("..")
            && domain.len() <= 253
            && domain
                .split('.')
                .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'))
            && !NOT_TLDS.iter().any(|t| tld.eq_ignore_ascii_case(t))
            && !is_alnum(at(text, m.end()))
            && at(text, m.end()) != Some(b'-')
            && !(at(text, m.end()) == Some(b'.') && is_alnum(at(text, m.end() + 1)));
        if ok {
            Step::Accept(start, m.end())
        } else {
            Step::Reject(m.end())
        }
    });
}

static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"\+[1-9][0-9]{0,3}(?:[ .-]?(?:\([0-9]{1,4}\)|[0-9]{1,12})){1,6}",
        r"|\([2-9][0-9]{2}\) ?[2-9][0-9]{2}[ .-][0-9]{4}",
        r"|(?:1[.-])?[2-9][0-9]{2}[.-][2-9][0-9]{2}[.-][0-9]{4}",
        r"|0[1-9][0-9]{0,4}(?:[ /.-][0-9]{2,8}){1,4}",
    ))
});

/// Phone numbers in forms that plain digit runs, dates, times, versions and
/// timestamps do not take:
///
/// - international, `+` and country code: 8–15 digits (E.164), at least 10
///   when written without separators; `+44 (0)20 7946 0958` style trunk
///   zeros are allowed;
/// - North American with separators: `(415) 555-2671`, `415-555-2671`,
///   `415.555.2671`, `1-415-555-2671` (one kind of separator; area code and
///   exchange 2–9; spaces only after a parenthesised area code);
/// - national with a trunk `0` and separators: `020 7946 0958`,
///   `06 12 34 56 78`, `030/1234567`: 9–12 digits, so `01.02.2023` is not
///   one.
///
/// Not glued to a word, another number, a date or a time; a trunk-0 number
/// not followed by more space-separated digits (a list), not preceded by a
/// space-separated number (`DE89 3704 0044 0532 0130 01`). Rejected
/// candidates resume after their first digit run.
fn phone_number(text: &str, range: Range<usize>, sink: &mut Sink<'_>) {
    each(&PHONE, text, range.clone(), sink, |m| {
        let s = m.as_str().as_bytes();
        let digits_from = if s[0] == b'+' || s[0] == b'(' { 1 } else { 0 };
        let resume = run_end(text, m.start() + digits_from, |c| c.is_ascii_digit()).max(m.start() + 1);
        let starts = if s[0] == b'+' {
            !is_word(before(text, m.start())) && before(text, m.start()) != Some(b'+')
        } else {
            number_starts(text, m.start())
                && before(text, m.start()) != Some(b'+')
                // A trunk-0 number does not continue a space-grouped one
                // (`DE89 3704 0044 0532 0130 01`).
                && !(s[0] == b'0' && before(text, m.start()) == Some(b' ') && is_digit(before(text, m.start() - 1)))
        };
        // A trunk-0 number does not go on into a list (`01 02 03 04 05 06`).
        let listed = s[0] == b'0' && at(text, m.end()) == Some(b' ') && is_digit(at(text, m.end() + 1));
        if !starts || listed || !number_ends(text, m.end()) || at(text, m.end()) == Some(b'(') {
            return Step::Reject(resume);
        }
        let digits = s.iter().filter(|c| c.is_ascii_digit()).count();
        let ok = match s[0] {
            b'+' => {
                let trunk = m.as_str().contains("(0)");
                let digits = digits - usize::from(trunk);
                let separated = s.iter().any(|c| matches!(c, b' ' | b'.' | b'-' | b'('));
                // With dots, short groups only: `+1441497364.649` is a number.
                let dotted_groups_short = !s.contains(&b'.')
                    || m.as_str()[1..]
                        .split(|c: char| !c.is_ascii_digit())
                        .all(|g| g.len() <= 4);
                (8..=15).contains(&digits) && (separated || digits >= 10) && dotted_groups_short
            }
            b'(' => true,
            b'0' => (9..=12).contains(&digits),
            _ => {
                let seps: Vec<u8> = s.iter().copied().filter(|c| !c.is_ascii_digit()).collect();
                seps.windows(2).all(|w| w[0] == w[1])
            }
        };
        if ok {
            Step::Accept(m.start(), m.end())
        } else {
            Step::Reject(resume)
        }
    });
}

#[cfg(test)]
mod tests {
    use super::super::scan;
    use super::*;

    /// `(detector, matched text)` for each finding of `text`.
    fn found(text: &str) -> Vec<(&'static str, &str)> {
        scan(text)
            .into_iter()
            .map(|f| (f.detector, &text[f.start..f.end]))
            .collect()
    }

    /// Collects every failed expectation of a test, and reports them all.
    #[derive(Default)]
    struct Expect(Vec<String>);

    impl Expect {
        fn finds(&mut self, detector: &str, text: &str, matched: &str) {
            let got = found(text);
            if got != vec![(detector, matched)] {
                self.0
                    .push(format!("{text:?}: expected {detector} {matched:?}, got {got:?}"));
            }
        }

        fn finds_itself(&mut self, detector: &str, text: &str) {
            self.finds(detector, text, text);
        }

        fn clean(&mut self, text: &str) {
            let got = found(text);
            if !got.is_empty() {
                self.0.push(format!("{text:?}: expected nothing, got {got:?}"));
            }
        }

        #[track_caller]
        fn done(self) {
            assert!(self.0.is_empty(), "{} failures:\n{}", self.0.len(), self.0.join("\n"));
        }
    }

    /// `prefix` + `body` + the Luhn check digit.
    fn with_luhn(prefix_and_body: &str) -> String {
        (0..10)
            .map(|d| format!("{prefix_and_body}{d}"))
            .find(|s| luhn(s.as_bytes()))
            .expect("one check digit fits")
    }

    #[test]
    fn aws_access_key_ids() {
        let mut e = Expect::default();
        e.finds_itself("aws_access_key_id", "AKIAIOSFODNN7EXAMPLE");
        e.finds("aws_access_key_id", "id=ASIAY34FZKBOKMUTVV7A,", "ASIAY34FZKBOKMUTVV7A");
        e.finds("aws_access_key_id", "key_AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE");
        e.clean("AKIAIOSFODNN7EXAMPL"); // 19
        e.clean("AKIAIOSFODNN7EXAMPLEX"); // 21
        e.clean("xAKIAIOSFODNN7EXAMPLE");
        e.clean("akiaiosfodnn7example");
        e.clean("AKIAIOSFODNN7EXAMPLe");
        e.done();
    }

    #[test]
    fn aws_secret_access_keys() {
        let mut e = Expect::default();
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        for text in [
            format!("aws_secret_access_key = {secret}"),
            format!("{{\"SecretAccessKey\": \"{secret}\"}}"),
            format!("AWS credentials:\n  id AKIAIOSFODNN7EXAMPLE\n  key {secret}\n"),
        ] {
            assert!(
                found(&text).contains(&("aws_secret_access_key", secret)),
                "{text:?}: {:?}",
                found(&text)
            );
        }
        // No keyword nearby, a hex digest, wrong lengths, padding.
        e.clean(&format!("value {secret} here"));
        e.clean("secret sha 0123456789abcdef0123456789abcdef01234567");
        e.clean(&format!("aws {secret}A"));
        e.clean(&format!("aws {}", &secret[1..]));
        e.clean(&format!("aws {secret}=="));
        let far = format!("aws {} {secret}", "filler ".repeat(20));
        e.clean(&far);
        e.done();
    }

    #[test]
    fn github_tokens() {
        let mut e = Expect::default();
        let classic = format!("ghp_{}", "a1B2c3D4e5F6g7H8i9J0".repeat(2).get(..36).expect("36"));
        e.finds_itself("github_token", &classic);
        for prefix in ["gho_", "ghu_", "ghs_", "ghr_"] {
            let token = format!("{prefix}{}", &classic[4..]);
            e.finds("github_token", &format!("token {token}."), &token);
        }
        let pat = format!("github_pat_11ABCDEFG0{}_{}", "x".repeat(12), "Y7".repeat(29));
        e.finds("github_token", &format!("GH_PAT {pat}\n"), &pat);
        e.clean(&classic[..classic.len() - 1]); // 35 after the prefix
        e.clean(&format!("x{classic}"));
        e.clean(&format!("{classic}_suffix"));
        e.clean("ghx_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        e.done();
    }

    #[test]
    fn slack_tokens() {
        let mut e = Expect::default();
        e.finds_itself(
            "slack_token",
            "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        );
        e.finds_itself(
            "slack_token",
            "xoxp-1234567890-1234567890-1234567890-0123456789abcdef0123456789abcdef",
        );
        e.finds(
            "slack_token",
            "xoxe.xoxp-1-Mi0yLTEyMzQ1Njc4OTAxMi0x.",
            "xoxe.xoxp-1-Mi0yLTEyMzQ1Njc4OTAxMi0x",
        );
        e.clean("xoxb-abcdefghijklmnop-1234");
        e.clean("xoxb-1234-5678");
        e.clean("xoxq-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx");
        e.done();
    }

    #[test]
    fn private_key_blocks() {
        let mut e = Expect::default();
        let body = "MIIEpAIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgwLjx2TWaijRub\nAKIAIOSFODNN7EXAMPLE alice@example.com 4111 1111 1111 1111\n";
        for kind in ["RSA ", "EC ", "OPENSSH ", "ENCRYPTED ", "DSA ", ""] {
            let block = format!("-----BEGIN {kind}PRIVATE KEY-----\n{body}-----END {kind}PRIVATE KEY-----");
            e.finds("private_key_block", &format!("key:\n{block}\ndone"), &block);
        }
        let pgp = "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF0\n=abcd\n-----END PGP PRIVATE KEY BLOCK-----";
        e.finds_itself("private_key_block", pgp);
        // Escaped newlines, as in JSON text inside a result.
        let escaped = r"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----";
        e.finds("private_key_block", &format!(r#"{{"key": "{escaped}\n"}}"#), escaped);
        // Truncated: the body lines, not the prose after them.
        let truncated = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,3F17\n\nMIIEpAIBAAKCAQEA0Z3VS5JJ\nMIIEpAIBAAKCAQEA0Z";
        e.finds(
            "private_key_block",
            &format!("{truncated}\n... (truncated, 4 KiB more)"),
            truncated,
        );
        e.clean("it starts with -----BEGIN OPENSSH PRIVATE KEY----- and ends with the END line");
        e.clean("consistent!(click_1, r\"-----BEGIN PRIVATE KEY-----\");");
        e.clean("-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----");
        e.clean("-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIE\n-----END CERTIFICATE-----");
        e.done();
    }

    #[test]
    fn jwts() {
        let mut e = Expect::default();
        let jws = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
        e.finds_itself("jwt", jws);
        e.finds("jwt", &format!("Authorization: Bearer {jws}\n"), jws);
        e.finds("jwt", &format!("token {jws}. Next"), jws);
        // alg none, empty signature.
        let unsecured = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.";
        e.finds("jwt", &format!("{unsecured} "), unsecured);
        // JWE: five segments.
        let jwe = "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.OKOawDo13gRp2ojaHV7LFpZcgV7T6DVZKTyKOMTYUmKoTCVJRgckCL9kiMT03JGe.48V1_ALb6US04U3b.5eym8TW_c8SuK0ltJ3rpYIzOeDQz7TALvtu6UG9oMo4vpzs9tX_EFShS8iB7j6jiSdiwkIr3ajwQzaBtQD_A.XFBoMYUZodetZdvTiFvSkQ";
        e.finds_itself("jwt", jwe);
        // Header without alg, not JSON, wrong segment counts, glued.
        e.clean("eyJmb28iOiJiYXIifQ.eyJ4IjoxfQ.c2lnbmF0dXJl");
        e.clean("ewogICJ4IjogMQp9Cg.eyJ4IjoxfQ.c2ln");
        e.clean(&format!("{jws}.extra"));
        e.clean(&format!("x{jws}"));
        e.clean("eyJhbGciOiJIUzI1NiJ9.e30");
        e.clean("they.were.here journey.example.com");
        e.done();
    }

    #[test]
    fn password_assignments() {
        let mut e = Expect::default();
        let cases = [
            ("password=hunter2", "hunter2"),
            ("export DB_PASSWORD=s3cr3t!", "s3cr3t!"),
            ("passwd: correcthorse9", "correcthorse9"),
            ("api_key=AbC123xyz&page=2", "AbC123xyz"),
            ("apikey: 9f8e7d6c\nnext: 1", "9f8e7d6c"),
            ("secret=topsecretvalue", "topsecretvalue"),
            (r#"{"password": "hunter2", "user": "bob"}"#, "hunter2"),
            (
                r#"{"password":"with \"escaped\" quotes"}"#,
                r#"with \"escaped\" quotes"#,
            ),
            ("{'client_secret': 'xyz123'}", "xyz123"),
            ("GET /v1?access_token=ya29.a0AfH6SM&x=1", "ya29.a0AfH6SM"),
            ("Authorization: Bearer abc123def456\r\n", "abc123def456"),
            (r#""Authorization": "Basic dXNlcjpwYXNz""#, "dXNlcjpwYXNz"),
            (
                r#"password = "correct horse battery staple""#,
                "correct horse battery staple",
            ),
            (r#"password := "x1y2z3""#, "x1y2z3"),
            ("'password' => 'hunter2',", "hunter2"),
            ("DB_PASS=hunter2", "hunter2"),
            ("dbPwd=hunter2", "hunter2"),
            ("user.password: hunter2", "hunter2"),
            ("password = hunter2", "hunter2"),
            ("db:\n  password: l3tmein\n", "l3tmein"),
            ("db:\n  password: correct-horse\n", "correct-horse"),
            ("NETKIT_PASS=0x7f3a", "0x7f3a"),
            (r#"{\"token\":\"abc123\"}"#, "abc123"),
            ("{\"access_token\": \"Bearer abc123def456\"}", "abc123def456"),
            ("postgres://admin:hunter2@db.internal:5432/app", "hunter2"),
            ("https://:tok3n@example.com/", "tok3n"),
        ];
        for (text, value) in cases {
            e.finds("password_assignment", text, value);
        }
        e.done();
    }

    #[test]
    fn password_near_misses() {
        for text in [
            "password: it must be at least 8 characters",
            "Enter your password:",
            "password = getpass()",
            "password = user_input",
            "token = request.headers.get(\"x\")",
            "password = config.password",
            "password=self.password",
            "if password == \"x\":",
            r#"{"max_tokens": 1024, "token_type": "Bearer", "tokens": 7}"#,
            r#"{"nextToken": "abc123", "next_page_token": "CiAKGjBp", "pageToken": "x9", "ClientToken": "u1"}"#,
            "PWD=/home/alice\nOLDPWD=/tmp",
            "password=${DB_PASSWORD}",
            "password=$DB_PASSWORD",
            "password=<your-password>",
            "password=********",
            "password: xxxxxxxx",
            "password=%s",
            "password={{ .Values.password }}",
            "secret: true",
            "password: null",
            "password=[REDACTED:password_assignment]",
            "bypass=yes1",
            "passport=X1234567",
            "secret_name=prod-db",
            "password_policy: strong",
            "token_count=12",
            "see https://example.com/docs?page=2",
            "ssh git@github.com:org/repo.git",
            // Code.
            "NL80211_ATTR_SAE_PASSWORD = 277,",
            "NETKIT_PASS = 0,",
            "    token: Token,",
            "pub secret_key: String,",
            "pub log_passwd: __u32,",
            "semi_token: Some,",
            "semi_token: *semi,",
            "pub brace_token: token::Brace,",
            "use crate::token::Token;",
            "use jsonwebtoken::jwk::JwkSet;",
            "        Input::Token: PartialEq,",
            "AuthMethod::Token => \"token\",",
            "I: winnow::stream::Stream<Token=O>,",
            "permissions:\n  id-token: write\n",
            "token: pending_wake_token,",
            "colon2_token: node.colon2_token,",
            "token=self.api_token",
            "    DEVSTAT_MATCH_PASS = 0x04,",
            "/// https://user@pass:example.com:1234/foo/bar?baz#quux",
            "authority: `http://localhost:80@example.com`",
            // Documented trade-off: unquoted all-letter values.
            "password: letmein",
        ] {
            let found: Vec<_> = found(text)
                .into_iter()
                .filter(|(d, _)| *d == "password_assignment")
                .collect();
            assert_eq!(found, vec![], "in {text:?}");
        }
    }

    #[test]
    fn secret_keys() {
        for key in [
            "password",
            "DB_PASSWORD",
            "clientSecret",
            "client_secret",
            "x-api-key",
            "APIKey",
            "apiKey",
            "SecretAccessKey",
            "access_token",
            "refreshToken",
            "Authorization",
            "dbPass",
            "DB_PWD",
            "private_key",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in [
            "token_type",
            "max_tokens",
            "nextToken",
            "NextPageToken",
            "secretName",
            "aws_access_key_id",
            "PWD",
            "OLDPWD",
            "bypass",
            "compass",
            "passport",
            "public_key",
            "key",
        ] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn emails() {
        let mut e = Expect::default();
        e.finds_itself("email", "alice@example.com");
        e.finds(
            "email",
            "Contact: <first.last+tag@mail.example.co.uk>.",
            "first.last+tag@mail.example.co.uk",
        );
        e.finds("email", "mailto:bob_99@example.org?subject=x", "bob_99@example.org");
        e.finds("email", "...alice@example.com", "alice@example.com");
        e.clean("icon@2x.png and logo@3x.webp");
        e.clean("user@localhost");
        e.clean("a..b@example.com");
        e.clean("alice.@example.com");
        e.clean("alice@-example.com");
        e.clean("npm i lodash@4.17.21");
        e.clean("@decorator.method");
        e.done();
    }

    #[test]
    fn phone_numbers() {
        let mut e = Expect::default();
        for phone in [
            "+1 415 555 2671",
            "+14155552671",
            "+1 (415) 555-2671",
            "+44 20 7946 0958",
            "+44 (0)20 7946 0958",
            "+49 30 12345678",
            "+33 1 23 45 67 89",
            "(415) 555-2671",
            "(415)555-2671",
            "415-555-2671",
            "415.555.2671",
            "1-415-555-2671",
            "020 7946 0958",
            "07700 900123",
            "06 12 34 56 78",
            "030/1234567",
        ] {
            e.finds("phone_number", &format!("call {phone}."), phone);
        }
        for text in [
            "2024-01-15T10:30:00Z",
            "2024-01-15T10:30:00.123456+05:30",
            "2024-01-15 10:30:00",
            "20240115T103000Z",
            "1705314600",
            "1705314600123",
            "ts=1705314600123456789",
            "+12345",
            "+1234567",
            "01.02.2023",
            "05/11/2023",
            "415 555 2671",
            "415-555.2671",
            "415-555-26710",
            "version 1.2.3 build 4567",
            "192.168.100.200",
            "call 4155552671 now",
            "a+14155552671",
            "123-456-7890",
            "array_impls! { 01 02 03 04 05 06 07 08 }",
            "\"09:08:07.1234567\"",
            "\"+1441497364.649\"",
            "datetime!(+999999-12-31 23:59:59.999 +10)",
        ] {
            e.clean(text);
        }
        e.done();
    }

    #[test]
    fn credit_cards() {
        let mut e = Expect::default();
        for card in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "4012888888881881",
            "5555555555554444",
            "5105 1051 0510 5100",
            "2223003122003222",
            "378282246310005",
            "3782 822463 10005",
            "371449635398431",
            "6011111111111117",
            "6011000990139424",
            "30569309025904",
            "3056 930902 5904",
            "38520000023237",
            "3530111333300000",
            "3566002020360505",
            "6200000000000005",
        ] {
            e.finds("credit_card", &format!("card: {card}, exp 12/29"), card);
        }
        // A list of card numbers (a dump) is still a list of cards.
        for card in found("4111111111111111, 5555555555554444,\n378282246310005") {
            assert_eq!(card.0, "credit_card");
        }
        assert_eq!(found("4111111111111111, 5555555555554444,\n378282246310005").len(), 3);
        // The card, not the year before it nor the one after.
        e.finds("credit_card", "2024 4111 1111 1111 1111", "4111 1111 1111 1111");
        e.finds("credit_card", "4111 1111 1111 1111 2029", "4111 1111 1111 1111");
        let unknown_issuer = with_luhn("123456789012345");
        assert!(luhn(unknown_issuer.as_bytes()));
        for text in [
            "4111 1111 1111 1112",                                       // Luhn
            "4111111111111112",                                          // Luhn
            "0000000000000000",                                          // Luhn-valid, no issuer
            unknown_issuer.as_str(),                                     // Luhn-valid, no issuer
            "4111 1111-1111 1111",                                       // mixed separators
            "41 11 11 11 11 11 11 11",                                   // not a card layout
            "x4111111111111111",                                         // glued
            "4111111111111111x",                                         // glued
            "3.4111111111111111",                                        // a decimal
            "41111111111111111",                                         // Visa with 17 digits
            "3782822463100055",                                          // Amex is 15
            "1705314600123456789",                                       // a nanosecond timestamp
            "new_const(\n    375514548584082,\n    1312887672223536,\n", // constants in code
            "mantissa -4386812962460287, base 2",                        // a signed number
            "4222222222222", // 13-digit Visa: no longer issued, and looks like any 13-digit id
        ] {
            e.clean(text);
        }
        e.done();
    }

    #[test]
    fn ibans() {
        let mut e = Expect::default();
        for iban in [
            "DE89370400440532013000",
            "DE89 3704 0044 0532 0130 00",
            "GB82 WEST 1234 5698 7654 32",
            "GB82WEST12345698765432",
            "FR14 2004 1010 0505 0001 3M02 606",
            "NL91ABNA0417164300",
            "BE68539007547034",
            "CH9300762011623852957",
            "ES9121000418450200051332",
            "IT60X0542811101000000123456",
            "NO9386011117947",
            "AT611904300234573201",
            "PL61109010140000071219812874",
        ] {
            e.finds("iban", &format!("IBAN: {iban}."), iban);
        }
        e.finds("iban", "BE68 5390 0754 7034 THEN more", "BE68 5390 0754 7034");
        for text in [
            "DE88370400440532013000",      // check digits
            "DE89 3704 0044 0532 0130 01", // check digits
            "DE89 3704 0044 0532 0130 0",  // length
            "DE893704004405320130001",     // glued to more
            "XX89370400440532013000",      // no such country
            "de89370400440532013000",      // lowercase
            "ADE89370400440532013000",     // glued
            "GB82 WEST 1234 5698 7654 3",  // length
        ] {
            e.clean(text);
        }
        e.done();
    }

    #[test]
    fn us_ssns() {
        let mut e = Expect::default();
        e.finds("us_ssn", "SSN: 123-45-6789.", "123-45-6789");
        e.finds_itself("us_ssn", "899-99-9999");
        for text in [
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "999-12-3456",
            "123-00-6789",
            "123-45-0000",
            "1123-45-6789",
            "123-45-67890",
            "0-123-45-6789",
            "123-45-6789-1",
            "2024-01-15",
            "123 45 6789",
        ] {
            e.clean(text);
        }
        e.done();
    }

    #[test]
    fn identifiers_and_timestamps_are_not_flagged() {
        let mut e = Expect::default();
        for text in [
            "550e8400-e29b-41d4-a716-446655440000",
            "12345678-1234-5678-1234-567812345678",
            "00000000-0000-0000-0000-000000000000",
            "2024-01-15T10:30:00Z",
            "2024-01-15T10:30:00.123456789+01:00",
            "Mon, 15 Jan 2024 10:30:00 GMT",
            "commit 8bf67fa3c1d2e4f5a6b7c8d9e0f1a2b3c4d5e6f7",
            "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
            "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
            "https://example.com/a/b?c=d&e=f#g",
            "v1.2.3-rc.4+build.5678",
            "elapsed 1234567 ns, 12,345,678 bytes, 3.14159265358979",
            r#"{"id": 1705314600123, "count": 42, "ratio": 0.123456789}"#,
            "fn main() { let token_count = tokens.len(); }",
            "The quick brown fox jumps over the lazy dog. Ünïcödé 日本語 🙂",
        ] {
            e.clean(text);
        }
        e.done();
    }

    /// Inputs built to make a careless scanner quadratic (an upstream
    /// controls what it returns; before the fixes 512 KiB of some of them
    /// took minutes). Linear time is checked as a ratio, not a deadline:
    /// 8 times the text must cost well under 64 times the time (a
    /// quadratic scan's growth), measured as this thread's CPU time, the
    /// least of three runs, so that other load on the machine does not
    /// decide the outcome. The smaller text is grown until it costs at
    /// least [`MEASURABLE`], since some kernels count a thread's time in
    /// scheduler ticks (4 ms steps were seen on the development VM).
    #[test]
    fn pathological_inputs_scan_in_linear_time() {
        const GROWTH: usize = 8;
        // Linear is 8; quadratic work that is a fair part of the cost at
        // the smaller size is far above.
        const MOST: f64 = 24.0;
        const MEASURABLE: std::time::Duration = std::time::Duration::from_millis(20);
        let fill = |unit: &str, size: usize| unit.repeat(size / unit.len());
        let cost = |text: &str| {
            (0..3)
                .map(|_| {
                    let started = thread_cpu();
                    std::hint::black_box(scan(text));
                    thread_cpu().saturating_sub(started)
                })
                .min()
                .unwrap_or_default()
        };
        let mut e = Expect::default();
        for unit in [
            "-----BEGIN RSA PRIVATE KEY-----",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n",
            "x:a@b.com",
            "password:\\\"x",
            "password: \"",
            "aws secret ",
            "1",
            "1 ",
            "1-",
            "4111 ",
            "a",
            "eyJhbGciOiJIUzI1NiJ9.",
            "DE89 ",
            "+1 ",
            "token=token=",
        ] {
            let mut size = 16 << 10;
            let mut small = cost(&fill(unit, size));
            while small < MEASURABLE && size < 8 << 20 {
                size *= 2;
                small = cost(&fill(unit, size));
            }
            let large = cost(&fill(unit, size * GROWTH));
            let growth = large.as_secs_f64() / small.as_secs_f64().max(1e-9);
            if growth > MOST {
                e.0.push(format!(
                    "{unit:?} repeated: {small:?} for {} KiB, {large:?} for {} KiB ({growth:.1}x for {GROWTH}x the text)",
                    size >> 10,
                    (size * GROWTH) >> 10
                ));
            }
        }
        e.done();
    }

    /// This thread's CPU time (`/proc/thread-self/schedstat`), or the wall
    /// clock where that cannot be read.
    fn thread_cpu() -> std::time::Duration {
        static START: LazyLock<std::time::Instant> = LazyLock::new(std::time::Instant::now);
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .map_or_else(|| START.elapsed(), std::time::Duration::from_nanos)
    }

    #[test]
    fn base64url() {
        assert_eq!(
            base64url_decode("eyJhbGciOiJIUzI1NiJ9").as_deref(),
            Some(&b"{\"alg\":\"HS256\"}"[..])
        );
        assert_eq!(base64url_decode("YQ").as_deref(), Some(&b"a"[..]));
        assert_eq!(base64url_decode("Y"), None);
        assert_eq!(base64url_decode("a+b/"), None);
    }
}
