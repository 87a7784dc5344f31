//! Exact, strict JSON for the relay: what the gateway checks is what it
//! forwards and what it records.
//!
//! `serde_json::Value` keeps numbers as `u64`, `i64` or `f64`, so
//! `123456789012345678901` comes back as `1.2345678901234567e20`, and a
//! relay built on it forwards and records a number the client never sent.
//! [`Json`] keeps every number as the text it was written in, keeps members
//! in the order they were sent, and [`parse`] refuses what two JSON parsers
//! could read differently:
//!
//! - duplicate member names (after unescaping): `{"name":"x","name":"y"}`
//!   is `x` to some parsers and `y` to others;
//! - invalid UTF-8, unescaped control characters, lone surrogates in `\u`
//!   escapes, leading zeros, trailing commas, anything after the value;
//! - nesting deeper than [`MAX_DEPTH`].
//!
//! Writing a [`Json`] gives its compact form: whitespace between tokens is
//! dropped, strings are escaped minimally (as `serde_json` does), numbers
//! are their original text.

use std::collections::HashSet;
use std::fmt;

/// Deepest nesting of arrays and objects accepted. MCP messages nest a
/// handful of levels; JSON Schemas inside tool listings a few more.
pub const MAX_DEPTH: usize = 128;

/// A JSON value with numbers as written and members in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Json {
    Null,
    Bool(bool),
    /// The number's text, as sent (valid RFC 8259 number grammar).
    Number(Box<str>),
    String(String),
    Array(Vec<Json>),
    /// Members in the order sent; names are unique.
    Object(Vec<(String, Json)>),
}

/// Why a text is not accepted, and where (1-based line and column, byte
/// offset).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason} at line {line} column {column}")]
pub struct JsonError {
    pub reason: String,
    pub line: usize,
    pub column: usize,
    pub offset: usize,
}

/// Parses one JSON text (surrounding whitespace allowed) strictly.
pub fn parse(bytes: &[u8]) -> Result<Json, JsonError> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let mut p = Parser::new(&bytes[..e.valid_up_to()]);
            p.pos = e.valid_up_to();
            return Err(p.error("invalid utf-8".into()));
        }
    };
    let mut p = Parser::new(text.as_bytes());
    p.skip_ws();
    let value = p.value(0)?;
    p.skip_ws();
    if p.pos != p.bytes.len() {
        return Err(p.error("trailing characters after the json value".into()));
    }
    Ok(value)
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(bytes: &'a [u8]) -> Parser<'a> {
        Parser { bytes, pos: 0 }
    }

    fn error(&self, reason: String) -> JsonError {
        let upto = &self.bytes[..self.pos.min(self.bytes.len())];
        let line = upto.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = upto.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        // Columns count characters, not bytes.
        let column = String::from_utf8_lossy(&upto[line_start..]).chars().count() + 1;
        JsonError {
            reason,
            line,
            column,
            offset: self.pos,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect_literal(&mut self, literal: &str, value: Json) -> Result<Json, JsonError> {
        if self.bytes[self.pos..].starts_with(literal.as_bytes()) {
            self.pos += literal.len();
            Ok(value)
        } else {
            Err(self.error("expected a json value".into()))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, JsonError> {
        match self.peek() {
            None => Err(self.error("unexpected end of input".into())),
            Some(b'n') => self.expect_literal("null", Json::Null),
            Some(b't') => self.expect_literal("true", Json::Bool(true)),
            Some(b'f') => self.expect_literal("false", Json::Bool(false)),
            Some(b'"') => Ok(Json::String(self.string()?)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'[') => {
                if depth >= MAX_DEPTH {
                    return Err(self.error(format!("nesting deeper than {MAX_DEPTH} levels")));
                }
                self.pos += 1;
                let mut items = Vec::new();
                self.skip_ws();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(Json::Array(items));
                }
                loop {
                    self.skip_ws();
                    items.push(self.value(depth + 1)?);
                    self.skip_ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(Json::Array(items));
                        }
                        _ => return Err(self.error("expected ',' or ']' in an array".into())),
                    }
                }
            }
            Some(b'{') => {
                if depth >= MAX_DEPTH {
                    return Err(self.error(format!("nesting deeper than {MAX_DEPTH} levels")));
                }
                self.pos += 1;
                let mut members: Vec<(String, Json)> = Vec::new();
                // Small objects are checked by a scan, larger ones by a set.
                let mut seen: Option<HashSet<String>> = None;
                self.skip_ws();
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                    return Ok(Json::Object(members));
                }
                loop {
                    self.skip_ws();
                    if self.peek() != Some(b'"') {
                        return Err(self.error("expected a member name (a string)".into()));
                    }
                    let at = self.pos;
                    let name = self.string()?;
                    let duplicate = match &mut seen {
                        Some(set) => !set.insert(name.clone()),
                        None => {
                            let dup = members.iter().any(|(k, _)| *k == name);
                            if members.len() >= 16 {
                                let mut set: HashSet<String> = members.iter().map(|(k, _)| k.clone()).collect();
                                set.insert(name.clone());
                                seen = Some(set);
                            }
                            dup
                        }
                    };
                    if duplicate {
                        self.pos = at;
                        return Err(self.error(format!("duplicate member name {name:?}")));
                    }
                    self.skip_ws();
                    if self.peek() != Some(b':') {
                        return Err(self.error("expected ':' after a member name".into()));
                    }
                    self.pos += 1;
                    self.skip_ws();
                    let value = self.value(depth + 1)?;
                    members.push((name, value));
                    self.skip_ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {
                            self.pos += 1;
                            return Ok(Json::Object(members));
                        }
                        _ => return Err(self.error("expected ',' or '}' in an object".into())),
                    }
                }
            }
            Some(_) => Err(self.error("expected a json value".into())),
        }
    }

    fn number(&mut self) -> Result<Json, JsonError> {
        let start = self.pos;
        let digits = |p: &mut Parser<'_>| {
            let from = p.pos;
            while let Some(b'0'..=b'9') = p.peek() {
                p.pos += 1;
            }
            p.pos - from
        };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(self.error("leading zero in a number".into()));
                }
            }
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(self.error("expected a digit".into())),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if digits(self) == 0 {
                return Err(self.error("expected a digit after the decimal point".into()));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if digits(self) == 0 {
                return Err(self.error("expected a digit in the exponent".into()));
            }
        }
        // The grammar admits only ASCII here.
        let text = String::from_utf8_lossy(&self.bytes[start..self.pos]);
        Ok(Json::Number(text.into()))
    }

    fn hex4(&mut self) -> Result<u16, JsonError> {
        let Some(digits) = self.bytes.get(self.pos..self.pos + 4) else {
            return Err(self.error("truncated \\u escape".into()));
        };
        let mut n: u16 = 0;
        for &d in digits {
            let v = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err(self.error("invalid \\u escape".into())),
            };
            n = n << 4 | u16::from(v);
        }
        self.pos += 4;
        Ok(n)
    }

    /// A string, the cursor on its opening quote.
    fn string(&mut self) -> Result<String, JsonError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            // Copy the run up to the next quote, backslash or control char.
            let from = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            // The input was checked as UTF-8 and runs end on ASCII bytes.
            out.push_str(&String::from_utf8_lossy(&self.bytes[from..self.pos]));
            match self.peek() {
                None => return Err(self.error("unterminated string".into())),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let Some(e) = self.peek() else {
                        return Err(self.error("unterminated string".into()));
                    };
                    self.pos += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let first = self.hex4()?;
                            let c = match first {
                                0xD800..=0xDBFF => {
                                    if !self.bytes[self.pos..].starts_with(b"\\u") {
                                        return Err(self.error("lone leading surrogate in a \\u escape".into()));
                                    }
                                    self.pos += 2;
                                    let second = self.hex4()?;
                                    if !(0xDC00..=0xDFFF).contains(&second) {
                                        return Err(self.error("lone leading surrogate in a \\u escape".into()));
                                    }
                                    let code =
                                        0x10000 + ((u32::from(first) - 0xD800) << 10) + (u32::from(second) - 0xDC00);
                                    char::from_u32(code)
                                }
                                0xDC00..=0xDFFF => {
                                    return Err(self.error("lone trailing surrogate in a \\u escape".into()));
                                }
                                n => char::from_u32(u32::from(n)),
                            };
                            match c {
                                Some(c) => out.push(c),
                                None => return Err(self.error("invalid \\u escape".into())),
                            }
                        }
                        _ => {
                            self.pos -= 1;
                            return Err(self.error("invalid escape in a string".into()));
                        }
                    }
                }
                Some(_) => return Err(self.error("control character in a string".into())),
            }
        }
    }
}

impl Json {
    pub fn object<I: IntoIterator<Item = (&'static str, Json)>>(members: I) -> Json {
        Json::Object(members.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    pub fn str(s: impl Into<String>) -> Json {
        Json::String(s.into())
    }

    pub fn int(n: i64) -> Json {
        Json::Number(n.to_string().into())
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Json> {
        match self {
            Json::Object(members) => members.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Sets member `key` of an object (in place if present, else last).
    /// Does nothing to other values.
    pub fn set(&mut self, key: &str, value: Json) {
        if let Json::Object(members) = self {
            match members.iter_mut().find(|(k, _)| k == key) {
                Some((_, v)) => *v = value,
                None => members.push((key.to_string(), value)),
            }
        }
    }

    /// Removes member `key` of an object.
    pub fn remove(&mut self, key: &str) -> Option<Json> {
        match self {
            Json::Object(members) => {
                let at = members.iter().position(|(k, _)| k == key)?;
                Some(members.remove(at).1)
            }
            _ => None,
        }
    }

    /// The value at an RFC 6901 pointer (`/a/0/b`).
    pub fn pointer(&self, pointer: &str) -> Option<&Json> {
        if pointer.is_empty() {
            return Some(self);
        }
        let mut at = self;
        for raw in pointer.strip_prefix('/')?.split('/') {
            let segment = raw.replace("~1", "/").replace("~0", "~");
            at = match at {
                Json::Object(_) => at.get(&segment)?,
                Json::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(at)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Vec<Json>> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Vec<(String, Json)>> {
        match self {
            Json::Object(members) => Some(members),
            _ => None,
        }
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Json::Object(_))
    }

    /// The number as an `i64`, if it is an integer written without
    /// fraction or exponent that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Number(text) => text.parse().ok(),
            _ => None,
        }
    }

    /// The compact text.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_text().into_bytes()
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(true) => out.push_str("true"),
            Json::Bool(false) => out.push_str("false"),
            Json::Number(text) => out.push_str(text),
            Json::String(s) => write_string(s, out),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(k, out);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }

    /// A `serde_json::Value` of this value, for code that reads fields and
    /// for the record. Numbers that `serde_json` cannot hold exactly lose
    /// precision there (never in this value); numbers it cannot hold at all
    /// (`1e400`) become their text as a string. Not for typed checks: a
    /// check that wants a string would take such a number for one (see
    /// [`Json::to_serde_typed`]).
    pub fn to_serde(&self) -> serde_json::Value {
        self.serde_value(false)
    }

    /// A `serde_json::Value` of this value for a typed check (does it fit
    /// a method's params?): what the check sees has the types that were
    /// sent. A number `serde_json` cannot hold (`1e400`) is the nearest
    /// one it can (`±f64::MAX`), still a number, so a check that wants a
    /// string refuses it, as the peer that reads the number would.
    pub fn to_serde_typed(&self) -> serde_json::Value {
        self.serde_value(true)
    }

    fn serde_value(&self, typed: bool) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(text) => serde_json::from_str::<Value>(text)
                .ok()
                .filter(Value::is_number)
                .unwrap_or_else(|| {
                    if typed {
                        // Only magnitudes too large fail (underflow reads as 0).
                        let nearest = if text.starts_with('-') { f64::MIN } else { f64::MAX };
                        serde_json::Number::from_f64(nearest).map_or(Value::Null, Value::Number)
                    } else {
                        Value::String(text.to_string())
                    }
                }),
            Json::String(s) => Value::String(s.clone()),
            Json::Array(items) => Value::Array(items.iter().map(|i| i.serde_value(typed)).collect()),
            Json::Object(members) => {
                Value::Object(members.iter().map(|(k, v)| (k.clone(), v.serde_value(typed))).collect())
            }
        }
    }

    /// This value from a `serde_json::Value` (for messages the gateway
    /// writes itself).
    pub fn from_serde(value: &serde_json::Value) -> Json {
        use serde_json::Value;
        match value {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => Json::Number(n.to_string().into()),
            Value::String(s) => Json::String(s.clone()),
            Value::Array(items) => Json::Array(items.iter().map(Json::from_serde).collect()),
            Value::Object(members) => {
                Json::Object(members.iter().map(|(k, v)| (k.clone(), Json::from_serde(v))).collect())
            }
        }
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl From<&str> for Json {
    fn from(s: &str) -> Json {
        Json::String(s.to_string())
    }
}

impl From<String> for Json {
    fn from(s: String) -> Json {
        Json::String(s)
    }
}

impl From<bool> for Json {
    fn from(b: bool) -> Json {
        Json::Bool(b)
    }
}

/// A JSON string literal, escaped as `serde_json` escapes it.
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    let mut from = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[from..i]);
        if escape.is_empty() {
            out.push_str(&format!("\\u{b:04x}"));
        } else {
            out.push_str(escape);
        }
        from = i + 1;
    }
    out.push_str(&s[from..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(text: &str) -> Result<Json, JsonError> {
        parse(text.as_bytes())
    }

    #[test]
    fn numbers_keep_their_text() {
        let v = p(r#"{"n": 123456789012345678901, "f": 1.50, "e": -0.0e-7, "big": 1e400}"#).expect("parse");
        assert_eq!(
            v.to_text(),
            r#"{"n":123456789012345678901,"f":1.50,"e":-0.0e-7,"big":1e400}"#
        );
        // The serde view loses what it must, and says so with a string.
        assert_eq!(v.to_serde()["big"], serde_json::json!("1e400"));
        // The view for typed checks keeps it a number: a check that wants
        // a string must not take it for one.
        assert_eq!(v.to_serde_typed()["big"], serde_json::json!(f64::MAX));
        let neg = p("[-1e999, 1e-999, 7]").expect("parse").to_serde_typed();
        assert_eq!(neg, serde_json::json!([f64::MIN, 0.0, 7]));
        assert!(serde_json::from_value::<String>(p("1e400").expect("parse").to_serde_typed()).is_err());
    }

    #[test]
    fn duplicate_names_are_refused_with_where() {
        let e = p(r#"{"name":"x","arguments":{},"name":"echo"}"#).expect_err("duplicate");
        assert_eq!(e.reason, "duplicate member name \"name\"");
        assert_eq!((e.line, e.column), (1, 28));
        // The same name spelt with an escape is the same name.
        assert!(p(r#"{"a":1,"\u0061":2}"#).is_err());
        // Deep inside, and in large objects (past the linear scan).
        assert!(p(r#"{"params":{"arguments":{"x":1,"x":2}}}"#).is_err());
        let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        let text = format!("{{{},\"k39\":0}}", many.join(","));
        assert!(p(&text).expect_err("dup").reason.contains("k39"));
        assert!(p(&format!("{{{}}}", many.join(","))).is_ok());
    }

    #[test]
    fn what_other_parsers_might_read_differently_is_refused() {
        for bad in [
            "",
            " ",
            "{",
            "[1,]",
            "{\"a\":1,}",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "+1",
            "NaN",
            "\"\u{1}\"",
            "\"\\x\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "{} {}",
            "[1] x",
            "tru",
            "{'a':1}",
            "{\"a\" 1}",
        ] {
            assert!(p(bad).is_err(), "accepted {bad:?}");
        }
        assert!(parse(b"\"\xff\"").expect_err("utf-8").reason.contains("utf-8"));
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(p(&deep).expect_err("deep").reason.contains("nesting"));
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(p(&ok).is_ok());
    }

    #[test]
    fn strings_unescape_and_write_back_as_serde_json_does() {
        let v = p(r#""a\"b\\c\/d\u00e9\ud83d\ude00\n\u0001""#).expect("parse");
        assert_eq!(v, Json::String("a\"b\\c/dé😀\n\u{1}".into()));
        assert_eq!(v.to_text(), serde_json::to_string("a\"b\\c/dé😀\n\u{1}").expect("json"));
    }

    #[test]
    fn pointers_and_members() {
        let mut v = p(r#"{"a":{"b/c":[10,{"~d":true}]}}"#).expect("parse");
        assert_eq!(v.pointer("/a/b~1c/1/~0d"), Some(&Json::Bool(true)));
        assert_eq!(v.pointer("/a/b~1c/0").and_then(Json::as_i64), Some(10));
        v.set("z", Json::int(1));
        v.set("a", Json::Null);
        assert_eq!(v.to_text(), r#"{"a":null,"z":1}"#);
        assert_eq!(v.remove("a"), Some(Json::Null));
        assert_eq!(v.to_text(), r#"{"z":1}"#);
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            any::<u64>().prop_map(|n| serde_json::json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| serde_json::json!(f)),
            any::<String>().prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..8)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Whatever serde_json writes, we read to the same value, and write
        /// back byte for byte.
        #[test]
        fn agrees_with_serde_json(value in arb_json()) {
            let text = serde_json::to_string(&value).expect("json");
            let ours = parse(text.as_bytes()).expect("parse");
            prop_assert_eq!(ours.to_text(), text.clone());
            // serde_json's own reading (its float parsing may differ from
            // the value it wrote by one unit in the last place).
            let theirs: serde_json::Value = serde_json::from_str(&text).expect("serde_json reads its own text");
            prop_assert_eq!(ours.to_serde(), theirs);
            let pretty = serde_json::to_string_pretty(&value).expect("json");
            prop_assert_eq!(parse(pretty.as_bytes()).expect("pretty").to_text(), text);
        }

        /// Bytes either parse to what serde_json reads, or are refused;
        /// never a panic. (serde_json accepts duplicates; we do not.)
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(ours) = parse(&bytes) {
                match serde_json::from_slice::<serde_json::Value>(&bytes) {
                    Ok(theirs) => prop_assert_eq!(ours.to_serde(), theirs),
                    // We keep numbers serde_json cannot hold (`1e400`).
                    Err(e) => prop_assert!(e.to_string().contains("number out of range"), "{}", e),
                }
            }
        }
    }
}
