//! Event exporters: sinks that follow the ledger and deliver every event to
//! a collector, at least once and in order. `docs/EXPORT.md` is the
//! reference (configuration, the LogRecord and its OCSF body kind by kind,
//! delivery guarantees, the files under `<data dir>/derived/export/`).
//!
//! Each sink runs on a thread of its own with its own single-threaded async
//! runtime ([`spawn`]): it reads the log up to the published head, sends one
//! batch at a time (OTLP logs over gRPC or HTTP/protobuf), and moves its
//! durable cursor only after the collector accepted the whole batch.
//!
//! **Architecture invariant:** exporters never append to the ledger. They
//! read it through a handle they never append with, and everything they
//! write (cursors, status, dead letters) is derived: it can be deleted, and
//! the sink then sends the log again from its start.
#![deny(unsafe_code, clippy::unwrap_used)]

pub mod config;
pub mod lake;
pub mod metrics;
pub mod ocsf;
pub mod record;
pub mod sink;
pub mod state;
pub mod transport;

use std::path::{Path, PathBuf};

pub use config::{HeaderSource, Protocol, SinkConfig};
pub use metrics::MetricsConfig;
pub use sink::{Report, Sink, lag, report, spawn};
pub use state::{Cursor, DeadLetter, SinkState, Status, export_dir, request_replay, sink_dir};

/// Everything that can go wrong configuring or running a sink.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The `[[exporters]]` config is not usable.
    #[error("exporter {sink}: {message}")]
    Config { sink: String, message: String },
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a readable export file: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("ledger: {context}: {source}")]
    Ledger {
        context: &'static str,
        source: ledger::Error,
    },
    #[error("the log skips from seq {expected} to {found}")]
    Gap { expected: u64, found: u64 },
    #[error("no exporter named {0:?} is configured")]
    UnknownSink(String),
}

impl Error {
    pub(crate) fn io(context: &'static str, path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            context,
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn ledger(context: &'static str, source: ledger::Error) -> Error {
        Error::Ledger { context, source }
    }

    pub(crate) fn config(sink: &str, message: impl Into<String>) -> Error {
        Error::Config {
            sink: sink.to_owned(),
            message: message.into(),
        }
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The envelope of `event` as JSON (what `unmapped.event` holds).
pub(crate) fn record_envelope(event: &ledger::Event) -> serde_json::Value {
    let mut actor = serde_json::Map::new();
    let a = &event.actor;
    for (k, v) in [
        ("principal", &a.principal),
        ("agent", &a.agent),
        ("session", &a.session),
    ] {
        if let Some(v) = v {
            actor.insert(k.into(), serde_json::json!(v));
        }
    }
    if !a.teams.is_empty() {
        actor.insert("teams".into(), serde_json::json!(a.teams));
    }
    let mut subject = serde_json::Map::new();
    let s = &event.subject;
    for (k, v) in [
        ("server", &s.server),
        ("tool", &s.tool),
        ("resource", &s.resource),
        ("prompt", &s.prompt),
    ] {
        if let Some(v) = v {
            subject.insert(k.into(), serde_json::json!(v));
        }
    }
    if !s.env.is_empty() {
        subject.insert("env".into(), serde_json::json!(s.env));
    }
    let c = &event.correlation;
    let mut correlation = serde_json::Map::new();
    if let Some(id) = &c.request_id {
        let v = match id {
            ledger::RequestId::Int(n) => serde_json::json!(n),
            ledger::RequestId::Str(s) => serde_json::json!(s),
        };
        correlation.insert("request_id".into(), v);
    }
    for (k, v) in [
        ("trace_id", &c.trace_id),
        ("span_id", &c.span_id),
        ("call_id", &c.call_id),
    ] {
        if let Some(v) = v {
            correlation.insert(k.into(), serde_json::json!(v));
        }
    }
    if let Some(n) = c.answers {
        correlation.insert("answers".into(), serde_json::json!(n));
    }
    serde_json::json!({
        "seq": event.seq,
        "ts": event.ts.to_string(),
        "kind": event.kind.as_str(),
        "actor": actor,
        "subject": subject,
        "correlation": correlation,
        "body": serde_json::Value::Object(event.body.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
    })
}
