//! One event as an OTLP LogRecord (`docs/EXPORT.md`, The LogRecord): the
//! kind as `event_name`, the event's time, a severity from its decision or
//! outcome, the call's trace and span ids, the OpenTelemetry MCP and GenAI
//! attribute names, the integrity keys (`sealgate.seq`, `sealgate.hash`,
//! `sealgate.prev`), and the event as OCSF JSON in the body.

use ledger::{Event, RequestId, SealedEvent};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;

/// The scope every record is under.
pub const SCOPE: &str = "sealgate.ledger";

/// What every record of one sink shares: its resource.
#[derive(Clone, Debug)]
pub struct Origin {
    /// 32 hex digits.
    pub ledger_id: String,
    /// `host.name`.
    pub node: String,
}

impl Origin {
    pub fn resource(&self) -> Resource {
        Resource {
            attributes: vec![
                kv_str("service.name", "sealgate"),
                kv_str("service.version", env!("CARGO_PKG_VERSION")),
                kv_str("sealgate.ledger.id", &self.ledger_id),
                kv_str("host.name", &self.node),
            ],
            dropped_attributes_count: 0,
            entity_refs: Vec::new(),
        }
    }
}

/// The machine's host name, or `unknown`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// One request holding `records` under the origin's resource.
pub fn request(origin: &Origin, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(origin.resource()),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: SCOPE.to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    attributes: Vec::new(),
                    dropped_attributes_count: 0,
                }),
                log_records: records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

pub(crate) fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

pub(crate) fn kv_str(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.to_owned()))
}

fn body_str<'a>(event: &'a Event, key: &str) -> Option<&'a str> {
    event.body.get(key).and_then(ledger::Value::as_str)
}

/// Severity from the kind and the decision or outcome in its body.
pub fn severity(event: &Event) -> SeverityNumber {
    use SeverityNumber as S;
    match event.kind.as_str() {
        "policy.decision" => match body_str(event, "decision") {
            Some("DENY") => S::Warn,
            _ => S::Info,
        },
        "execution.failed" => S::Error,
        "execution.completed" => match body_str(event, "outcome") {
            Some("ok") => S::Info,
            _ => S::Warn,
        },
        "session.opened" => match body_str(event, "outcome") {
            Some("ok") => S::Info,
            _ => S::Error,
        },
        "call.refused" | "mcp.refused" | "access.refused" | "output.quarantined" | "approval.denied"
        | "approval.expired" | "server.quarantined" | "server.revoked" => S::Warn,
        // The pins no longer match what the server lists: a possible rug pull.
        "tools.drifted" => S::Error,
        // A detection fired (docs/ALERTS.md): high at least, critical for
        // what must never happen.
        "alert.raised" => match body_str(event, "severity") {
            Some("critical") => S::Fatal,
            _ => S::Error,
        },
        "notification.failed" => S::Warn,
        // A witness refused a checkpoint: the alarm for a forked or
        // rewritten log (docs/FORMAT.md §15); unreachable is a warning.
        "checkpoint.witnessed" => match body_str(event, "outcome") {
            Some("cosigned") => S::Info,
            Some("unreachable") => S::Warn,
            _ => S::Fatal,
        },
        _ => S::Info,
    }
}

fn severity_text(s: SeverityNumber) -> &'static str {
    match s {
        SeverityNumber::Warn => "WARN",
        SeverityNumber::Error => "ERROR",
        SeverityNumber::Fatal => "FATAL",
        _ => "INFO",
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The body members copied to attributes under their own (OpenTelemetry)
/// names, when present as strings.
const BODY_ATTRIBUTES: &[&str] = &[
    "mcp.method.name",
    "mcp.session.id",
    "mcp.protocol.version",
    "mcp.resource.uri",
    "gen_ai.tool.name",
    "gen_ai.operation.name",
    "gen_ai.prompt.name",
    "error.type",
];

/// `sealed` as a LogRecord observed at `observed_ns`.
pub fn log_record(sealed: &SealedEvent, origin: &Origin, observed_ns: u64) -> LogRecord {
    let event = &sealed.event;
    let severity = severity(event);
    let mut attributes = vec![
        kv("sealgate.seq", any_value::Value::IntValue(event.seq as i64)),
        kv_str("sealgate.hash", &sealed.hash.to_hex()),
        kv_str("sealgate.prev", &event.prev.to_hex()),
        kv_str("sealgate.key", &event.key.to_string()),
    ];
    for key in BODY_ATTRIBUTES {
        if let Some(v) = body_str(event, key) {
            attributes.push(kv_str(key, v));
        }
    }
    if body_str(event, "mcp.session.id").is_none()
        && let Some(session) = &event.actor.session
    {
        attributes.push(kv_str("mcp.session.id", session));
    }
    if body_str(event, "gen_ai.tool.name").is_none()
        && let Some(tool) = &event.subject.tool
    {
        attributes.push(kv_str("gen_ai.tool.name", tool));
    }
    let c = &event.correlation;
    if let Some(id) = &c.request_id {
        let text = match id {
            RequestId::Int(n) => n.to_string(),
            RequestId::Str(s) => s.clone(),
        };
        attributes.push(kv_str("jsonrpc.request.id", &text));
    }
    if let Some(call) = &c.call_id {
        attributes.push(kv_str("sealgate.call.id", call));
    }
    if let Some(answers) = c.answers {
        attributes.push(kv("sealgate.answers", any_value::Value::IntValue(answers as i64)));
    }
    if let Some(p) = &event.actor.principal {
        attributes.push(kv_str("enduser.id", p));
    }
    if let Some(a) = &event.actor.agent {
        attributes.push(kv_str("user_agent.original", a));
    }
    if let Some(s) = &event.subject.server {
        attributes.push(kv_str("sealgate.server", s));
    }
    for key in ["decision", "outcome", "reason_code", "gate", "rule", "policy_hash"] {
        if let Some(v) = body_str(event, key) {
            attributes.push(kv_str(&format!("sealgate.{key}"), v));
        }
    }
    let body = crate::ocsf::ocsf(sealed, &origin.ledger_id);
    LogRecord {
        time_unix_nano: event.ts.as_nanos(),
        observed_time_unix_nano: observed_ns,
        severity_number: severity as i32,
        severity_text: severity_text(severity).to_owned(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body.to_string())),
        }),
        attributes,
        dropped_attributes_count: 0,
        flags: 0,
        trace_id: c.trace_id.as_deref().and_then(decode_hex).unwrap_or_default(),
        span_id: c.span_id.as_deref().and_then(decode_hex).unwrap_or_default(),
        event_name: event.kind.as_str().to_owned(),
    }
}
