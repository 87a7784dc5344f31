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
