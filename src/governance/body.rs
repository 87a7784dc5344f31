//! Reading event bodies: absent or mistyped fields read as absent, so a
//! fold never fails on what a log holds.

use std::collections::BTreeMap;

use ledger::{Object, Value};

pub fn str_field(body: &Object, key: &str) -> Option<String> {
    body.get(key).and_then(Value::as_str).map(str::to_string)
}

/// A string, or an array of strings, as a list.
pub fn str_list(body: &Object, key: &str) -> Vec<String> {
    match body.get(key) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// An object of strings.
pub fn str_map(body: &Object, key: &str) -> BTreeMap<String, String> {
    body.get(key)
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// A JSON value for an event body; floats (not allowed in signed data)
/// become their decimal text.
pub fn to_ledger_value(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i.into()),
            (_, Some(u)) => Value::Int(u.into()),
            _ => Value::String(n.to_string()),
        },
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(to_ledger_value).collect()),
        serde_json::Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), to_ledger_value(v))).collect()),
    }
}

/// Times the state keeps as nanoseconds since the epoch, written as RFC
/// 3339 (as events write them) wherever the state is shown or
/// snapshotted; read back from either form.
pub mod rfc3339 {
    use ledger::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Nanos(u64),
        Text(String),
    }

    fn read<'de, D: Deserializer<'de>>(v: Either) -> Result<u64, D::Error> {
        match v {
            Either::Nanos(n) => Ok(n),
            Either::Text(t) => Timestamp::parse_rfc3339(&t)
                .map(Timestamp::as_nanos)
                .map_err(serde::de::Error::custom),
        }
    }

    pub fn serialize<S: Serializer>(nanos: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&Timestamp::from_nanos(*nanos))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        read::<D>(Either::deserialize(d)?)
    }

    /// The same for an optional time.
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(nanos: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
            match nanos {
                Some(n) => s.collect_str(&Timestamp::from_nanos(*n)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
            Option::<Either>::deserialize(d)?.map(read::<D>).transpose()
        }
    }
}
