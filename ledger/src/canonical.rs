//! Canonical JSON: the one deterministic encoding of signed data.
//!
//! The rules are written down in `docs/FORMAT.md` ("Canonical JSON"); this
//! module is their only implementation. In short: no whitespace, object keys
//! sorted by their UTF-8 bytes and unique, integers only (no fractions, no
//! exponents, no floats at all), strings with the minimal escaping of
//! RFC 8785, absent optional fields omitted rather than written as `null`.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// A JSON value that can be signed: JSON without floating-point numbers.
///
/// Integers span `i64::MIN ..= u64::MAX`. Objects are `BTreeMap`s, so their
/// keys are always in canonical (bytewise) order.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i128),
    String(String),
    Array(Vec<Value>),
    Object(BTreeMap<String, Value>),
}

/// An object body: the kind-specific part of an event.
pub type Object = BTreeMap<String, Value>;

/// How deep values nest in signed data, counting the envelope (or a
/// draft's JSON) as level 0: its members are level 1, a body's members
/// level 2.
pub(crate) const MAX_DEPTH: usize = 64;

/// The integers signed data holds.
pub(crate) const INT_MIN: i128 = i64::MIN as i128;
pub(crate) const INT_MAX: i128 = u64::MAX as i128;

/// The rules of a body that its type does not enforce, which the parser
/// ([`Value::from_json_slice`]) applies as it reads: integers in
/// `i64::MIN ..= u64::MAX`, and no value deeper than [`MAX_DEPTH`] (the
/// body is level 1). What passes this check, the parser reads back from its
/// canonical encoding; the error names the value's path (`body.a[2]`).
pub(crate) fn check_body(body: &Object) -> Result<(), String> {
    check_members(body, 1).map_err(|(mut at, reason)| {
        // The path was gathered from the offending value outwards.
        let mut path = String::from("body");
        while let Some(step) = at.pop() {
            match step {
                Step::Key(key) => push_key(&mut path, key),
                Step::Index(i) => path.push_str(&format!("[{i}]")),
            }
        }
        format!("{path}: {reason}")
    })
}

/// One step of the path to a value that breaks a rule.
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

type Broken<'a> = (Vec<Step<'a>>, String);

/// The members of an object at level `depth`.
fn check_members(map: &Object, depth: usize) -> Result<(), Broken<'_>> {
    for (key, value) in map {
        check_value(value, depth + 1).map_err(|(mut at, reason)| {
            at.push(Step::Key(key));
            (at, reason)
        })?;
    }
    Ok(())
}

fn check_value(value: &Value, depth: usize) -> Result<(), Broken<'_>> {
    if depth > MAX_DEPTH {
        return Err((
            Vec::new(),
            format!("nested deeper than {MAX_DEPTH} levels (the envelope is level 0, the body level 1)"),
        ));
    }
    match value {
        Value::Int(n) if !(INT_MIN..=INT_MAX).contains(n) => Err((
            Vec::new(),
            format!(
                "the integer {n} is outside the range signed data holds ({INT_MIN} to {INT_MAX}); write it as a string"
            ),
        )),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_value(item, depth + 1).map_err(|(mut at, reason)| {
                    at.push(Step::Index(i));
                    (at, reason)
                })?;
            }
            Ok(())
        }
        Value::Object(map) => check_members(map, depth),
        _ => Ok(()),
    }
}

/// `.key` for a plain key, `["key"]` (JSON-escaped, cut short) for any other.
fn push_key(path: &mut String, key: &str) {
    let plain =
        !key.is_empty() && key.len() <= 64 && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        path.push('.');
        path.push_str(key);
    } else {
        let mut quoted = Vec::new();
        write_string(&crate::event::shown(key), &mut quoted);
        path.push('[');
        path.push_str(&String::from_utf8_lossy(&quoted));
        path.push(']');
    }
}

impl Value {
    /// Parses JSON text, rejecting floats, duplicate keys and nesting deeper
    /// than 64 levels. Errors carry serde_json's line and column.
    pub fn from_json_str(text: &str) -> Result<Value, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_str(text);
        let value = ValueSeed { depth: 0 }.deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }

    /// Parses JSON bytes with the same rules as [`Value::from_json_str`].
    pub fn from_json_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let value = ValueSeed { depth: 0 }.deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }

    /// The canonical encoding of this value.
    pub fn to_canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write_canonical(&mut out);
        out
    }

    pub fn write_canonical(&self, out: &mut Vec<u8>) {
        match self {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Bool(true) => out.extend_from_slice(b"true"),
            Value::Bool(false) => out.extend_from_slice(b"false"),
            Value::Int(n) => {
                use std::io::Write;
                // Writing to a Vec cannot fail.
                let _ = write!(out, "{n}");
            }
            Value::String(s) => write_string(s, out),
            Value::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write_canonical(out);
                }
                out.push(b']');
            }
            Value::Object(map) => write_object(map, out),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// A short name of the value's JSON type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }

    /// Converts to a `serde_json::Value` (for display and export).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(n) => {
                if let Ok(v) = i64::try_from(*n) {
                    serde_json::Value::from(v)
                } else if let Ok(v) = u64::try_from(*n) {
                    serde_json::Value::from(v)
                } else {
                    serde_json::Value::String(n.to_string())
                }
            }
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Array(a) => serde_json::Value::Array(a.iter().map(Value::to_json).collect()),
            Value::Object(o) => serde_json::Value::Object(o.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_canonical()))
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<u64> for Value {
    fn from(n: u64) -> Self {
        Value::Int(i128::from(n))
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(i128::from(n))
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<Object> for Value {
    fn from(o: Object) -> Self {
        Value::Object(o)
    }
}

pub(crate) fn write_object(map: &Object, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(k, out);
        out.push(b':');
        v.write_canonical(out);
    }
    out.push(b'}');
}

/// RFC 8785 string escaping: `"` and `\` escaped, the control characters
/// U+0000..U+001F written as `\b \t \n \f \r` where those exist and as
/// `\u00xx` (lowercase hex) otherwise; every other character as its UTF-8.
pub(crate) fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x09 => b"\\t",
            0x0a => b"\\n",
            0x0c => b"\\f",
            0x0d => b"\\r",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

struct ValueSeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.depth > MAX_DEPTH {
            return Err(de::Error::custom(format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        d.deserialize_any(ValueVisitor { depth: self.depth })
    }
}

struct ValueVisitor {
    depth: usize,
}

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value without floating-point numbers")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Int(i128::from(n)))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Int(i128::from(n)))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        // serde_json hands integers beyond 64 bits over as floats too.
        let what = if n.fract() == 0.0 && n.abs() >= 9.2e18 {
            "an integer beyond the 64-bit range".to_owned()
        } else {
            format!("the number {n}")
        };
        Err(E::custom(format!(
            "{what} cannot be signed: signed data holds no floats and integers fit in 64 bits (write it as a string)"
        )))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(ValueSeed { depth: self.depth + 1 })? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(ValueSeed { depth: self.depth + 1 })?;
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        let v = Value::from_json_str(text).expect("valid json");
        String::from_utf8(v.to_canonical()).expect("utf8")
    }

    #[test]
    fn sorts_keys_and_strips_whitespace() {
        assert_eq!(
            canon(r#"{ "b": 1, "a": [true, null, -3] }"#),
            r#"{"a":[true,null,-3],"b":1}"#
        );
    }

    #[test]
    fn sorts_keys_bytewise() {
        // 'Z' (0x5a) < 'a' (0x61) < 'é' (0xc3 0xa9)
        assert_eq!(canon(r#"{"é":1,"a":2,"Z":3}"#), r#"{"Z":3,"a":2,"é":1}"#);
    }

    /// The example of `docs/FORMAT.md` §2 rule 2: members in the order of
    /// their keys' UTF-8 bytes (code point order), where RFC 8785's UTF-16
    /// order would put U+1F600 (`d83d de00`) before U+E000.
    #[test]
    fn format_md_key_order_example() {
        let v = Value::from_json_str(r#"{"\ud83d\ude00":1,"\ue000":2,"\u00e9":3,"z":4}"#).expect("valid json");
        assert_eq!(
            hex::encode(v.to_canonical()),
            "7b227a223a342c22c3a9223a332c22ee8080223a322c22f09f9880223a317d"
        );
    }

    #[test]
    fn escapes_minimally() {
        assert_eq!(
            canon(r#""a\"b\\c\n\u0001\u2028é/""#),
            "\"a\\\"b\\\\c\\n\\u0001\u{2028}é/\""
        );
        assert_eq!(canon(r#""\u001f\b\f\r\t""#), r#""\u001f\b\f\r\t""#);
    }

    #[test]
    fn integers_span_i64_min_to_u64_max() {
        assert_eq!(canon("18446744073709551615"), "18446744073709551615");
        assert_eq!(canon("-9223372036854775808"), "-9223372036854775808");
    }

    #[test]
    fn rejects_floats_and_duplicates() {
        for bad in ["1.5", "1e3", "18446744073709551616", r#"{"x":0.0}"#] {
            let err = Value::from_json_str(bad).expect_err(bad).to_string();
            assert!(err.contains("no floats"), "{bad}: {err}");
        }
        let err = Value::from_json_str(r#"{"a":1,"a":2}"#).expect_err("dup").to_string();
        assert!(err.contains("duplicate key `a`"), "{err}");
    }

    #[test]
    fn rejects_deep_nesting() {
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert!(Value::from_json_str(&deep).is_err());
    }

    /// `0` inside `depth` arrays, or objects.
    fn nested(depth: usize, objects: bool) -> Value {
        (0..depth).fold(Value::Int(0), |inner, _| {
            if objects {
                Value::Object(Object::from([("k".to_owned(), inner)]))
            } else {
                Value::Array(vec![inner])
            }
        })
    }

    /// Whether the parser reads `body` back as an envelope's body (level 1).
    fn parses_as_a_body(body: &Object) -> bool {
        let mut text = b"{\"body\":".to_vec();
        write_object(body, &mut text);
        text.push(b'}');
        Value::from_json_slice(&text).is_ok()
    }

    #[test]
    fn check_body_names_the_value_and_the_rule() {
        let cases = [
            (
                Object::from([("n".to_owned(), Value::Int(INT_MAX + 1))]),
                "body.n: the integer 18446744073709551616 is outside the range",
            ),
            (
                Object::from([(
                    "a b".to_owned(),
                    Value::Array(vec![Value::Null, Value::Int(INT_MIN - 1)]),
                )]),
                "body[\"a b\"][1]: the integer -9223372036854775809 is outside",
            ),
            (Object::from([("d".to_owned(), nested(63, false))]), "body.d[0][0]"),
            (
                Object::from([("d".to_owned(), nested(63, true))]),
                "nested deeper than 64 levels",
            ),
        ];
        for (body, want) in cases {
            let err = check_body(&body).expect_err(want);
            assert!(err.contains(want), "`{err}` does not say `{want}`");
        }
        assert_eq!(check_body(&Object::from([("d".to_owned(), nested(62, true))])), Ok(()));
    }

    fn any_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<i128>().prop_map(Value::Int),
            any::<i64>().prop_map(|n| Value::Int(i128::from(n))),
            any::<u64>().prop_map(|n| Value::Int(i128::from(n))),
            "\\PC{0,4}".prop_map(Value::String),
            (58usize..=66, any::<bool>()).prop_map(|(depth, objects)| nested(depth, objects)),
        ];
        leaf.prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                proptest::collection::btree_map("\\PC{0,4}", inner, 0..3).prop_map(Value::Object),
            ]
        })
    }

    proptest::proptest! {
        /// The writer's check of a body and the parser, which the decoder
        /// reads it with, never disagree.
        #[test]
        fn check_body_accepts_exactly_what_the_parser_reads_back(
            body in proptest::collection::btree_map("\\PC{0,4}", any_value(), 0..3),
        ) {
            proptest::prop_assert_eq!(check_body(&body).is_ok(), parses_as_a_body(&body), "{:?}", check_body(&body));
        }
    }
}
