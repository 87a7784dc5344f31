//! Between serde's JSON values and the ledger's signed values.

use ledger::Value;

/// A JSON value as signed data. Signed data has no floats: a float becomes
/// its decimal text (the gateway keeps JSON it relays as exact text
/// anyway; floats reach here only from a client's `clientInfo` and the
/// like).
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

/// A signed value as JSON; an integer beyond 64 bits becomes its text.
pub fn from_ledger_value(value: &Value) -> serde_json::Value {
    value.to_json()
}
