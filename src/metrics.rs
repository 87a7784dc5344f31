//! The gateway's OTLP metrics (`[metrics]`; `docs/EXPORT.md`, Metrics).
//!
//! Data flows one way. The request path records only what no event holds
//! (the gateway's added latency, the ledger's append latency) into the
//! atomic histograms here ([`ADDED_LATENCY`], [`APPEND_LATENCY`]); every
//! other value is derived from what the log already says, by [`Derived`]
//! reading the events appended since the last export, on the exporter's
//! own thread. This module reads the gateway's statics and the log; it
//! never calls into the gateway, and it never appends: metrics are derived
//! data.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use exporters::metrics::{Attributes, Data, Histogram, LATENCY_BOUNDS, Metric, MetricsConfig, WAIT_BOUNDS};
use ledger::{Ledger, SealedEvent};

/// The gateway's time around a call that is not the upstream's: gates,
/// appends and relaying, from the call's arrival to its answer, less the
/// time the upstream took. Calls held for a human approval are left out
/// (their wait is `sealgate.approval.wait.duration`).
pub static ADDED_LATENCY: Histogram = Histogram::new(LATENCY_BOUNDS);
/// One append of the gateway (one or two events, durable in one sync).
pub static APPEND_LATENCY: Histogram = Histogram::new(LATENCY_BOUNDS);

/// Entries kept for open sessions and pending approvals; past it the
/// oldest are forgotten (a log whose sessions are never closed, e.g. a
/// gateway killed in a loop).
const MAX_OPEN: usize = 100_000;

/// The values of a decision and an outcome as attributes: the closed sets
/// of the event catalogue, anything else `other` (a value read from the log
/// never makes a new series).
const DECISIONS: &[&str] = &["ALLOW", "DENY", "REQUIRE_APPROVAL", "ALLOW_WITH_CONSTRAINTS"];
const OUTCOMES: &[&str] = &[
    "ok",
    "tool_error",
    "quarantined",
    "error",
    "timeout",
    "cancelled",
    "unavailable",
    "refused_oversize",
];

/// Distinct series a counter keeps; past it new ones count as `other`.
const MAX_SERIES: usize = 256;

/// An MCP method name as an attribute: the gateway relays only the methods
/// of its catalogue, so the names are few; a name that does not look like
/// one (or past [`MAX_SERIES`]) is `other`.
fn method_attr(method: Option<&str>) -> String {
    match method {
        Some(m)
            if !m.is_empty()
                && m.len() <= 64
                && m.bytes().all(|b| b.is_ascii_alphabetic() || b == b'/' || b == b'_') =>
        {
            m.to_owned()
        }
        _ => "other".into(),
    }
}

/// Adds one to the series `key` of `counter`, or to its `other` series
/// once it holds [`MAX_SERIES`].
fn bump(counter: &mut BTreeMap<(&'static str, String), u64>, key: (&'static str, String)) {
    let key = if counter.len() >= MAX_SERIES && !counter.contains_key(&key) {
        (key.0, "other".to_owned())
    } else {
        key
    };
    *counter.entry(key).or_insert(0) += 1;
}

fn closed(value: Option<&str>, set: &[&'static str]) -> &'static str {
    value
        .and_then(|v| set.iter().find(|s| **s == v).copied())
        .unwrap_or("other")
}

fn body_str<'a>(e: &'a SealedEvent, key: &str) -> Option<&'a str> {
    e.event.body.get(key).and_then(ledger::Value::as_str)
}

fn body_u64(e: &SealedEvent, key: &str) -> Option<u64> {
    match e.event.body.get(key) {
        Some(ledger::Value::Int(n)) => u64::try_from(*n).ok(),
        _ => None,
    }
}

/// The values derived from the log, from the events read so far.
pub struct Derived {
    /// `policy.decision` by decision and method.
    decisions: BTreeMap<(&'static str, String), u64>,
    /// `execution.completed` / `execution.failed` by outcome and method.
    outcomes: BTreeMap<(&'static str, String), u64>,
    decision_latency: Histogram,
    /// Pending approvals: id → when it was asked (ns).
    pending: BTreeMap<String, u64>,
    approval_wait: Histogram,
    /// Open sessions: id → opened at (ns).
    sessions: BTreeMap<String, u64>,
    session_duration: Histogram,
}

impl Default for Derived {
    fn default() -> Self {
        Derived {
            decisions: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            decision_latency: Histogram::new(LATENCY_BOUNDS),
            pending: BTreeMap::new(),
            approval_wait: Histogram::new(WAIT_BOUNDS),
            sessions: BTreeMap::new(),
            session_duration: Histogram::new(WAIT_BOUNDS),
        }
    }
}

fn forget_oldest(map: &mut BTreeMap<String, u64>) {
    while map.len() > MAX_OPEN {
        let Some(oldest) = map.iter().min_by_key(|(_, ts)| **ts).map(|(k, _)| k.clone()) else {
            return;
        };
        map.remove(&oldest);
    }
}

impl Derived {
    /// Folds one event in (events in `seq` order).
    pub fn observe(&mut self, e: &SealedEvent) {
        let ts = e.event.ts.as_nanos();
        match e.event.kind.as_str() {
            "policy.decision" => {
                bump(
                    &mut self.decisions,
                    (
                        closed(body_str(e, "decision"), DECISIONS),
                        method_attr(body_str(e, "mcp.method.name")),
                    ),
                );
                if let Some(ns) = body_u64(e, "decision_ns") {
                    self.decision_latency.record(Duration::from_nanos(ns));
                }
            }
            "execution.completed" | "execution.failed" => {
                bump(
                    &mut self.outcomes,
                    (
                        closed(body_str(e, "outcome"), OUTCOMES),
                        method_attr(body_str(e, "mcp.method.name")),
                    ),
                );
            }
            "approval.requested" => {
                if let Some(id) = body_str(e, "approval_id") {
                    self.pending.insert(id.to_owned(), ts);
                    forget_oldest(&mut self.pending);
                }
            }
            "approval.granted" | "approval.denied" | "approval.expired" => {
                if let Some(asked) = body_str(e, "approval_id").and_then(|id| self.pending.remove(id)) {
                    self.approval_wait
                        .record(Duration::from_nanos(ts.saturating_sub(asked)));
                }
            }
            "session.opened" if body_str(e, "outcome") == Some("ok") => {
                if let Some(id) = &e.event.actor.session {
                    self.sessions.insert(id.clone(), ts);
                    forget_oldest(&mut self.sessions);
                }
            }
            "session.closed" => {
                if let Some(id) = &e.event.actor.session
                    && self.sessions.remove(id).is_some()
                {
                    let ns = body_u64(e, "duration_ns").unwrap_or(0);
                    self.session_duration.record(Duration::from_nanos(ns));
                }
            }
            _ => {}
        }
    }

    /// The derived metrics now.
    pub fn metrics(&self) -> Vec<Metric> {
        let by = |key: &'static str, m: &BTreeMap<(&'static str, String), u64>| -> Vec<(Attributes, u64)> {
            m.iter()
                .map(|((v, method), n)| (vec![(key, (*v).to_owned()), ("mcp.method.name", method.clone())], *n))
                .collect()
        };
        vec![
            Metric {
                name: "sealgate.calls.decided",
                unit: "{call}",
                description: "Calls the gates decided (policy.decision events), by decision and method",
                data: Data::Counter(by("sealgate.decision", &self.decisions)),
            },
            Metric {
                name: "sealgate.calls.executed",
                unit: "{call}",
                description: "Calls forwarded and answered (execution.completed and execution.failed events), by outcome and method",
                data: Data::Counter(by("sealgate.outcome", &self.outcomes)),
            },
            Metric {
                name: "sealgate.policy.decision.duration",
                unit: "s",
                description: "The gates' time to decide a call (decision_ns of policy.decision)",
                data: Data::Histogram(vec![(Vec::new(), self.decision_latency.values())]),
            },
            Metric {
                name: "sealgate.approvals.pending",
                unit: "{approval}",
                description: "Approvals asked and not yet granted, denied or expired",
                data: Data::Gauge(vec![(Vec::new(), self.pending.len() as f64)]),
            },
            Metric {
                name: "sealgate.approval.wait.duration",
                unit: "s",
                description: "From approval.requested to its grant, denial or expiry",
                data: Data::Histogram(vec![(Vec::new(), self.approval_wait.values())]),
            },
            Metric {
                name: "sealgate.sessions.open",
                unit: "{session}",
                description: "MCP sessions opened and not yet closed",
                data: Data::Gauge(vec![(Vec::new(), self.sessions.len() as f64)]),
            },
            Metric {
                name: "mcp.server.session.duration",
                unit: "s",
                description: "The length of the MCP sessions that closed",
                data: Data::Histogram(vec![(Vec::new(), self.session_duration.values())]),
            },
        ]
    }
}

/// The request path's histograms, as metrics.
pub fn recorded() -> Vec<Metric> {
    vec![
        Metric {
            name: "sealgate.gateway.added.duration",
            unit: "s",
            description: "The gateway's time around a call less the upstream's (calls held for approval left out)",
            data: Data::Histogram(vec![(Vec::new(), ADDED_LATENCY.values())]),
        },
        Metric {
            name: "sealgate.ledger.append.duration",
            unit: "s",
            description: "One append of the gateway to the ledger, until durable",
            data: Data::Histogram(vec![(Vec::new(), APPEND_LATENCY.values())]),
        },
    ]
}

/// What the exporter's thread reads each interval: the log after `next`,
/// and the sinks' cursors.
struct Collector {
    ledger: Arc<Ledger>,
    data_dir: PathBuf,
    sinks: Vec<exporters::SinkConfig>,
    derived: Derived,
    next: u64,
    warned: bool,
}

impl Collector {
    fn collect(&mut self) -> Vec<Metric> {
        let head = self.ledger.head().seq;
        if self.next <= head {
            let ledger = self.ledger.clone();
            let mut failed = None;
            match ledger.events(self.next, head) {
                Ok(events) => {
                    for e in events {
                        match e {
                            Ok(e) => {
                                self.next = e.event.seq + 1;
                                self.derived.observe(&e);
                            }
                            Err(err) => {
                                failed = Some(format!("reading the log at seq {}: {err}", self.next));
                                break;
                            }
                        }
                    }
                }
                Err(err) => failed = Some(format!("reading the log from seq {}: {err}", self.next)),
            }
            if let Some(what) = failed {
                self.warn(&what);
            }
        }
        let mut out = self.derived.metrics();
        out.extend(recorded());
        out.push(Metric {
            name: "sealgate.ledger.head",
            unit: "{seq}",
            description: "The seq of the log's last event",
            data: Data::Gauge(vec![(Vec::new(), head as f64)]),
        });
        if !self.sinks.is_empty() {
            // Each sink on its own, from its cursor alone: a sink whose
            // state cannot be read is left out, not every sink with it, and
            // nothing else of its state (dead letters, manifests) is read
            // every interval.
            let sink = |name: &str| vec![("sealgate.exporter.name", name.to_owned())];
            let mut events = Vec::new();
            let mut seconds = Vec::new();
            let names: Vec<String> = self.sinks.iter().map(|c| c.name.clone()).collect();
            for name in names {
                match exporters::lag(&self.data_dir, &self.ledger, &name) {
                    Ok((_, lag_events, lag_seconds)) => {
                        events.push((sink(&name), lag_events as f64));
                        seconds.push((sink(&name), lag_seconds));
                    }
                    Err(err) => self.warn(&format!("reading sink {name}'s cursor: {err}")),
                }
            }
            out.push(Metric {
                name: "sealgate.export.lag",
                unit: "{event}",
                description: "Events of the log a sink has not delivered yet",
                data: Data::Gauge(events),
            });
            out.push(Metric {
                name: "sealgate.export.lag.duration",
                unit: "s",
                description: "The age of the oldest event a sink has not delivered yet (0 when caught up)",
                data: Data::Gauge(seconds),
            });
        }
        out
    }

    fn warn(&mut self, what: &str) {
        if !self.warned {
            tracing::warn!("metrics: {what}; the values derived from it stay as they were");
            self.warned = true;
        }
    }
}

/// Starts the metrics exporter when `[metrics]` is configured and
/// enabled: values derived from the log appended from now on (counters
/// count from the gateway's start, as OpenTelemetry's cumulative sums do).
pub fn spawn(
    config: Option<&MetricsConfig>,
    ledger: Arc<Ledger>,
    data_dir: &std::path::Path,
    sinks: &[exporters::SinkConfig],
    stop: Arc<AtomicBool>,
) -> Result<Option<std::thread::JoinHandle<()>>, exporters::Error> {
    let Some(config) = config.filter(|c| c.enabled) else {
        return Ok(None);
    };
    let next = ledger.head().seq + 1;
    let id = ledger.ledger_id();
    let mut collector = Collector {
        ledger,
        data_dir: data_dir.to_owned(),
        sinks: sinks.to_vec(),
        derived: Derived::default(),
        next,
        warned: false,
    };
    let (handle, _) = exporters::metrics::spawn(config, &id, move || collector.collect(), stop)?;
    tracing::info!(collector = %exporters::config::shown_endpoint(&config.endpoint), every_ms = config.interval_ms, "metrics: exporting");
    Ok(Some(handle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::{Actor, EventKind, SigningKey};

    fn counter(metrics: &[Metric], name: &str) -> BTreeMap<String, u64> {
        let m = metrics.iter().find(|m| m.name == name).expect(name);
        let Data::Counter(points) = &m.data else {
            panic!("{name} is a counter");
        };
        points
            .iter()
            .map(|(a, v)| (format!("{} {}", a[0].1, a[1].1), *v))
            .collect()
    }

    fn gauge(metrics: &[Metric], name: &str) -> f64 {
        let m = metrics.iter().find(|m| m.name == name).expect(name);
        let Data::Gauge(points) = &m.data else {
            panic!("{name} is a gauge");
        };
        points[0].1
    }

    fn histogram(metrics: &[Metric], name: &str) -> exporters::metrics::HistogramValues {
        let m = metrics.iter().find(|m| m.name == name).expect(name);
        let Data::Histogram(points) = &m.data else {
            panic!("{name} is a histogram");
        };
        points[0].1.clone()
    }

    /// Counters after N calls of each decision and outcome, approvals and
    /// sessions opened and closed, from real events in a real ledger.
    #[test]
    fn values_are_derived_from_the_events() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = Ledger::create(
            &dir.path().join("ledger"),
            &ledger::KeyDir::new(dir.path().join("keys")),
            SigningKey::generate(),
            Actor::default(),
        )
        .expect("ledger");
        let start = ledger.head().seq + 1;
        let append = |kind: EventKind, session: Option<&str>, body: &[(&str, ledger::Value)]| {
            let mut d = ledger::Draft::new(kind);
            d.actor.session = session.map(str::to_owned);
            for (k, v) in body {
                d.body.insert((*k).into(), v.clone());
            }
            ledger.append_blocking(d).expect("append");
        };
        let s = |v: &str| ledger::Value::from(v);
        for (decision, n) in [("ALLOW", 3), ("DENY", 2), ("REQUIRE_APPROVAL", 1), ("MADE_UP", 1)] {
            for _ in 0..n {
                append(
                    EventKind::PolicyDecision,
                    None,
                    &[
                        ("decision", s(decision)),
                        ("mcp.method.name", s("tools/call")),
                        ("decision_ns", ledger::Value::Int(3_000_000)),
                    ],
                );
            }
        }
        for outcome in ["ok", "ok", "tool_error", "timeout"] {
            append(
                EventKind::ExecutionCompleted,
                None,
                &[("outcome", s(outcome)), ("mcp.method.name", s("tools/call"))],
            );
        }
        // A method name that is no method's is no new series.
        append(
            EventKind::PolicyDecision,
            None,
            &[("decision", s("DENY")), ("mcp.method.name", s("tools/call?id=123"))],
        );
        append(EventKind::ApprovalRequested, None, &[("approval_id", s("a1"))]);
        append(EventKind::ApprovalRequested, None, &[("approval_id", s("a2"))]);
        append(EventKind::ApprovalGranted, None, &[("approval_id", s("a1"))]);
        append(EventKind::SessionOpened, Some("s1"), &[("outcome", s("ok"))]);
        append(EventKind::SessionOpened, Some("s2"), &[("outcome", s("ok"))]);
        append(EventKind::SessionOpened, Some("s3"), &[("outcome", s("unavailable"))]);
        append(
            EventKind::SessionClosed,
            Some("s1"),
            &[("duration_ns", ledger::Value::Int(2_000_000_000))],
        );
        let mut derived = Derived::default();
        for e in ledger.events(start, ledger.head().seq).expect("events") {
            derived.observe(&e.expect("event"));
        }
        let m = derived.metrics();
        let decided = counter(&m, "sealgate.calls.decided");
        assert_eq!(
            decided,
            BTreeMap::from([
                ("ALLOW tools/call".to_string(), 3),
                ("DENY tools/call".to_string(), 2),
                ("DENY other".to_string(), 1),
                ("REQUIRE_APPROVAL tools/call".to_string(), 1),
                ("other tools/call".to_string(), 1),
            ])
        );
        let executed = counter(&m, "sealgate.calls.executed");
        assert_eq!(executed.get("ok tools/call"), Some(&2));
        assert_eq!(executed.get("tool_error tools/call"), Some(&1));
        assert_eq!(executed.get("timeout tools/call"), Some(&1));
        let latency = histogram(&m, "sealgate.policy.decision.duration");
        assert_eq!(latency.count, 7);
        // 3 ms: in (2.5 ms, 5 ms], the sixth bucket.
        assert_eq!(latency.buckets[5], 7, "{latency:?}");
        assert_eq!(gauge(&m, "sealgate.approvals.pending"), 1.0);
        assert_eq!(histogram(&m, "sealgate.approval.wait.duration").count, 1);
        assert_eq!(gauge(&m, "sealgate.sessions.open"), 1.0);
        let sessions = histogram(&m, "mcp.server.session.duration");
        assert_eq!((sessions.count, sessions.buckets[0], sessions.buckets[1]), (1, 0, 1));
    }
}
