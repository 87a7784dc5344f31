//! One `events` row per ledger event: the envelope flattened, and the
//! fields of the typed body (`sealgate-events`) that people filter and
//! group by. `docs/QUERY.md` lists every column with its EVENTS.md field.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, RecordBatch, StringBuilder, TimestampNanosecondBuilder, UInt64Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use events::Body;
use ledger::{Event, RequestId, SealedEvent};
use serde::Serialize;

use crate::Error;

/// One row of `events`. Typed columns are `None` when the event's kind has
/// no such field, or its body did not decode (then `body_error` says why).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Row {
    pub seq: u64,
    pub ts: i64,
    pub kind: String,
    pub hash: String,
    pub prev: String,
    pub key: String,
    pub principal: Option<String>,
    pub teams: Option<String>,
    pub agent: Option<String>,
    pub session: Option<String>,
    pub server: Option<String>,
    pub env: Option<String>,
    pub tool: Option<String>,
    pub prompt: Option<String>,
    pub resource: Option<String>,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub call_id: Option<String>,
    pub answers: Option<u64>,
    pub typed: Typed,
    pub body_error: Option<String>,
    pub body: String,
}

/// The columns taken from the typed body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Typed {
    pub method: Option<String>,
    pub auth_method: Option<String>,
    pub decision: Option<String>,
    pub gate: Option<String>,
    pub reason_code: Option<String>,
    pub reason: Option<String>,
    pub rule: Option<String>,
    pub policy_hash: Option<String>,
    pub grant_id: Option<String>,
    pub action: Option<String>,
    pub decision_ns: Option<u64>,
    pub refused_by: Option<String>,
    pub outcome: Option<String>,
    pub duration_ns: Option<u64>,
    pub is_error: Option<bool>,
    pub error_type: Option<String>,
    pub args_digest: Option<String>,
    pub args_bytes: Option<u64>,
    pub args_original_bytes: Option<u64>,
    pub result_digest: Option<String>,
    pub result_bytes: Option<u64>,
    pub result_original_bytes: Option<u64>,
    pub approval_id: Option<String>,
    pub count: Option<u64>,
}

enum Get {
    U64(fn(&Row) -> Option<u64>),
    Ts(fn(&Row) -> i64),
    Str(fn(&Row) -> Option<&str>),
    Bool(fn(&Row) -> Option<bool>),
}

macro_rules! s {
    ($($f:ident).+) => {
        Get::Str(|r: &Row| r.$($f).+.as_deref())
    };
}
macro_rules! u {
    ($($f:ident).+) => {
        Get::U64(|r: &Row| r.$($f).+)
    };
}

/// Every column, in table order: name, whether it may be NULL, getter.
static COLUMNS: &[(&str, bool, Get)] = &[
    ("seq", false, Get::U64(|r| Some(r.seq))),
    ("ts", false, Get::Ts(|r| r.ts)),
    ("kind", false, Get::Str(|r| Some(r.kind.as_str()))),
    ("hash", false, Get::Str(|r| Some(r.hash.as_str()))),
    ("prev", false, Get::Str(|r| Some(r.prev.as_str()))),
    ("key", false, Get::Str(|r| Some(r.key.as_str()))),
    ("principal", true, s!(principal)),
    ("teams", true, s!(teams)),
    ("agent", true, s!(agent)),
    ("session", true, s!(session)),
    ("server", true, s!(server)),
    ("env", true, s!(env)),
    ("tool", true, s!(tool)),
    ("prompt", true, s!(prompt)),
    ("resource", true, s!(resource)),
    ("request_id", true, s!(request_id)),
    ("trace_id", true, s!(trace_id)),
    ("span_id", true, s!(span_id)),
    ("call_id", true, s!(call_id)),
    ("answers", true, u!(answers)),
    ("method", true, s!(typed.method)),
    ("auth_method", true, s!(typed.auth_method)),
    ("decision", true, s!(typed.decision)),
    ("gate", true, s!(typed.gate)),
    ("reason_code", true, s!(typed.reason_code)),
    ("reason", true, s!(typed.reason)),
    ("rule", true, s!(typed.rule)),
    ("policy_hash", true, s!(typed.policy_hash)),
    ("grant_id", true, s!(typed.grant_id)),
    ("action", true, s!(typed.action)),
    ("decision_ns", true, u!(typed.decision_ns)),
    ("refused_by", true, s!(typed.refused_by)),
    ("outcome", true, s!(typed.outcome)),
    ("duration_ns", true, u!(typed.duration_ns)),
    ("is_error", true, Get::Bool(|r| r.typed.is_error)),
    ("error_type", true, s!(typed.error_type)),
    ("args_digest", true, s!(typed.args_digest)),
    ("args_bytes", true, u!(typed.args_bytes)),
    ("args_original_bytes", true, u!(typed.args_original_bytes)),
    ("result_digest", true, s!(typed.result_digest)),
    ("result_bytes", true, u!(typed.result_bytes)),
    ("result_original_bytes", true, u!(typed.result_original_bytes)),
    ("approval_id", true, s!(typed.approval_id)),
    ("count", true, u!(typed.count)),
    ("body_error", true, s!(body_error)),
    ("body", false, Get::Str(|r| Some(r.body.as_str()))),
];

/// The columns a point lookup can be answered for from the key index.
pub const KEY_COLUMNS: &[&str] = &["request_id", "trace_id", "session", "call_id", "hash"];

/// The key value of `row` in key column `column`.
pub fn key_of<'a>(row: &'a Row, column: &str) -> Option<&'a str> {
    match column {
        "request_id" => row.request_id.as_deref(),
        "trace_id" => row.trace_id.as_deref(),
        "session" => row.session.as_deref(),
        "call_id" => row.call_id.as_deref(),
        "hash" => Some(&row.hash),
        _ => None,
    }
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(
        COLUMNS
            .iter()
            .map(|(name, nullable, get)| {
                let ty = match get {
                    Get::U64(_) => DataType::UInt64,
                    Get::Ts(_) => DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                    Get::Str(_) => DataType::Utf8,
                    Get::Bool(_) => DataType::Boolean,
                };
                Field::new(*name, ty, *nullable)
            })
            .collect::<Vec<_>>(),
    ))
});

/// The `events` table's schema.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// The columns as `name:type` joined by `,`: what the cursor records, so
/// that a store built with other columns (another version) is rebuilt, not
/// read.
pub fn fingerprint() -> String {
    let columns = SCHEMA
        .fields()
        .iter()
        .map(|f| format!("{}:{}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(",");
    // The key indexes' format is part of what a store was built with.
    format!("{columns};keys:SGKEYS01")
}

/// `rows` as one batch of the `events` schema.
pub fn batch(rows: &[Row]) -> Result<RecordBatch, Error> {
    let columns: Vec<ArrayRef> = COLUMNS
        .iter()
        .map(|(_, _, get)| -> ArrayRef {
            match get {
                Get::U64(f) => {
                    let mut b = UInt64Builder::with_capacity(rows.len());
                    rows.iter().for_each(|r| b.append_option(f(r)));
                    Arc::new(b.finish())
                }
                Get::Ts(f) => {
                    let mut b = TimestampNanosecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
                    rows.iter().for_each(|r| b.append_value(f(r)));
                    Arc::new(b.finish())
                }
                Get::Str(f) => {
                    let mut b = StringBuilder::new();
                    rows.iter().for_each(|r| b.append_option(f(r)));
                    Arc::new(b.finish())
                }
                Get::Bool(f) => {
                    let mut b = BooleanBuilder::with_capacity(rows.len());
                    rows.iter().for_each(|r| b.append_option(f(r)));
                    Arc::new(b.finish())
                }
            }
        })
        .collect();
    RecordBatch::try_new(schema(), columns).map_err(|e| Error::Arrow {
        context: "building an events batch".into(),
        message: e.to_string(),
    })
}

/// The row of a sealed event.
pub fn row(sealed: &SealedEvent) -> Result<Row, Error> {
    let e = &sealed.event;
    let ts = i64::try_from(e.ts.as_nanos()).map_err(|_| Error::Unrepresentable {
        seq: e.seq,
        what: format!("timestamp {} past the year 2262", e.ts),
    })?;
    let list = |v: &[String]| (!v.is_empty()).then(|| v.join(","));
    let body = serde_json::to_string(&ledger::Value::Object(e.body.clone()).to_json()).map_err(|err| {
        Error::Unrepresentable {
            seq: e.seq,
            what: format!("body as JSON: {err}"),
        }
    })?;
    let (typed, body_error) = match typed(e) {
        Ok(t) => (t, None),
        Err(message) => (Typed::default(), Some(message)),
    };
    Ok(Row {
        seq: e.seq,
        ts,
        kind: e.kind.as_str().to_owned(),
        hash: sealed.hash.to_hex(),
        prev: e.prev.to_hex(),
        key: e.key.to_string(),
        principal: e.actor.principal.clone(),
        teams: list(&e.actor.teams),
        agent: e.actor.agent.clone(),
        session: e.actor.session.clone(),
        server: e.subject.server.clone(),
        env: list(&e.subject.env),
        tool: e.subject.tool.clone(),
        prompt: e.subject.prompt.clone(),
        resource: e.subject.resource.clone(),
        request_id: e.correlation.request_id.as_ref().map(|id| match id {
            RequestId::Int(n) => n.to_string(),
            RequestId::Str(s) => s.clone(),
        }),
        trace_id: e.correlation.trace_id.clone(),
        span_id: e.correlation.span_id.clone(),
        call_id: e.correlation.call_id.clone(),
        answers: e.correlation.answers,
        typed,
        body_error,
        body,
    })
}

/// The wire name of a closed-set value (`ALLOW`, `tool_error`, ...).
fn name<T: Serialize>(v: &T) -> Result<String, String> {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        Ok(other) => Err(format!("expected a name, found {other}")),
        Err(e) => Err(e.to_string()),
    }
}

fn opt_name<T: Serialize>(v: &Option<T>) -> Result<Option<String>, String> {
    v.as_ref().map(name).transpose()
}

fn call(t: &mut Typed, c: &events::CallFields) -> Result<(), String> {
    t.method = c.method.clone();
    t.auth_method = Some(name(&c.auth_method)?);
    Ok(())
}

fn is<B: Body>(e: &Event) -> bool {
    B::KINDS.contains(&e.kind)
}

/// The typed columns of `e`'s body; an error when its kind has a body type
/// and the body does not decode as it.
fn typed(e: &Event) -> Result<Typed, String> {
    let mut t = Typed::default();
    let b = &e.body;
    if is::<events::Requested>(e) {
        let r: events::Requested = events::decode_body(b)?;
        call(&mut t, &r.call)?;
        if let Some(a) = &r.arguments {
            t.args_digest = Some(a.digest.clone());
            t.args_bytes = Some(a.bytes);
            t.args_original_bytes = a.original_bytes;
        }
    } else if is::<events::Decision>(e) {
        let d: events::Decision = events::decode_body(b)?;
        call(&mut t, &d.call)?;
        t.decision = Some(name(&d.decision)?);
        t.gate = Some(name(&d.gate)?);
        t.reason_code = opt_name(&d.reason_code)?;
        t.reason = Some(d.reason);
        t.rule = d.rule;
        t.policy_hash = d.policy_hash;
        t.grant_id = d.grant_id;
        t.action = opt_name(&d.action)?;
        t.decision_ns = d.decision_ns;
    } else if is::<events::Executed>(e) {
        let x: events::Executed = events::decode_body(b)?;
        call(&mut t, &x.call)?;
        t.outcome = Some(name(&x.outcome)?);
        t.duration_ns = Some(x.duration_ns);
        t.is_error = x.is_error;
        t.error_type = opt_name(&x.error_type)?;
        if let Some(r) = &x.result {
            t.result_digest = Some(r.digest.clone());
            t.result_bytes = Some(r.bytes);
            t.result_original_bytes = r.original_bytes;
        }
    } else if is::<events::OutputFound>(e) {
        let o: events::OutputFound = events::decode_body(b)?;
        call(&mut t, &o.call)?;
    } else if is::<events::CallRefused>(e) {
        let c: events::CallRefused = events::decode_body(b)?;
        call(&mut t, &c.call)?;
        t.outcome = Some(name(&c.outcome)?);
        t.refused_by = Some(name(&c.refused_by)?);
        t.reason_code = opt_name(&c.reason_code)?;
        t.reason = Some(c.reason);
    } else if is::<events::SessionOpened>(e) {
        let s: events::SessionOpened = events::decode_body(b)?;
        call(&mut t, &s.call)?;
        t.outcome = Some(name(&s.outcome)?);
        t.error_type = opt_name(&s.error_type)?;
    } else if is::<events::SessionClosed>(e) {
        let s: events::SessionClosed = events::decode_body(b)?;
        call(&mut t, &s.call)?;
        t.reason = Some(name(&s.reason)?);
        t.duration_ns = Some(s.duration_ns);
    } else if is::<events::ListingObserved>(e) {
        let l: events::ListingObserved = events::decode_body(b)?;
        call(&mut t, &l.call)?;
    } else if is::<events::MessageRefused>(e) {
        let m: events::MessageRefused = events::decode_body(b)?;
        call(&mut t, &m.call)?;
        t.error_type = Some(name(&m.error_type)?);
    } else if is::<events::AccessRefused>(e) {
        let a: events::AccessRefused = events::decode_body(b)?;
        t.reason = Some(name(&a.reason)?);
        t.count = Some(a.count);
    } else if is::<events::ApprovalRequested>(e) {
        let a: events::ApprovalRequested = events::decode_body(b)?;
        t.method = Some(a.method);
        t.approval_id = Some(a.approval_id);
        t.args_digest = Some(a.args_digest);
        t.policy_hash = Some(a.policy_hash);
        t.rule = a.rule;
    } else if is::<events::ApprovalDecided>(e) {
        let a: events::ApprovalDecided = events::decode_body(b)?;
        t.method = a.method;
        t.approval_id = Some(a.approval_id);
        t.reason = a.reason;
    } else if is::<events::GrantIssued>(e) {
        let g: events::GrantIssued = events::decode_body(b)?;
        t.grant_id = Some(g.grant_id);
        t.reason = g.reason;
    } else if is::<events::GrantRevoked>(e) {
        let g: events::GrantRevoked = events::decode_body(b)?;
        t.grant_id = Some(g.grant_id);
        t.reason = g.reason;
    } else if is::<events::PolicyLoaded>(e) {
        let p: events::PolicyLoaded = events::decode_body(b)?;
        t.policy_hash = Some(p.hash);
    } else {
        // The other governance kinds (server steps, pins, drift) and the
        // ledger's and operators' own: checked to decode, columns from the
        // envelope and `body` only.
        events::check_event(e, events::Check::Decodes)?;
    }
    Ok(t)
}
