//! OTLP metrics: the instruments the gateway records into, the OpenTelemetry
//! metrics data model they are read as, and the exporter that sends them
//! to a collector on an interval (`[metrics]`, `docs/EXPORT.md`, Metrics).
//!
//! Recording is an atomic add ([`Histogram::record`]): it never blocks and
//! never fails. The exporter runs on a thread of its own; every `interval`
//! it asks its `collect` callback for the current values and sends them,
//! cumulative, in one request. A request that fails is dropped, counted
//! (`sealgate.metrics.export.failures`) and logged once per change of
//! reason: the next interval sends the cumulative values again, so nothing
//! queues up behind a collector that is down. Metrics are derived data:
//! nothing here writes to the ledger.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::metrics::v1 as otlp;
use serde::Deserialize;

use crate::Error;
use crate::config::{HeaderSource, Protocol, check_header_names, resolve_headers};
use crate::record::{Origin, kv_str};
use crate::transport::{Answer, Client, Signal, Target};

/// How errors name the metrics exporter.
const OWNER: &str = "[metrics]";
/// The scope the gateway's metrics are under.
pub const SCOPE: &str = "sealgate.gateway";

/// `[metrics]`: where and how often the gateway's metrics are sent. Absent
/// (or `enabled = false`): no metrics are exported.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `http://host:4317` (gRPC), `http(s)://host:4318` (HTTP;
    /// `/v1/metrics` is added when the URL has no path).
    pub endpoint: String,
    /// `grpc` (default) or `http` (`file` is for log sinks only).
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default = "yes")]
    pub gzip: bool,
    /// Request headers, each `{ value = ... }`, `{ env = "VAR" }` or
    /// `{ file = "PATH" }`, as a log sink's.
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderSource>,
    /// How often the values are sent.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// One request's deadline (at most the interval).
    #[serde(default = "default_timeout_sec")]
    pub timeout_sec: u64,
    /// The resource's `host.name` (default: the machine's host name).
    #[serde(default)]
    pub node: Option<String>,
}

fn yes() -> bool {
    true
}
fn default_interval_ms() -> u64 {
    10_000
}
fn default_timeout_sec() -> u64 {
    5
}

impl MetricsConfig {
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    /// Where the client sends; a request's deadline is at most the interval.
    pub fn target(&self) -> Target {
        let shown = crate::config::shown_endpoint(&self.endpoint);
        Target {
            name: OWNER.into(),
            endpoint: self.endpoint.clone(),
            protocol: self.protocol,
            gzip: self.gzip,
            timeout: Duration::from_secs(self.timeout_sec.max(1)).min(self.interval().max(Duration::from_secs(1))),
            shown,
        }
    }

    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<(), Error> {
        let url = reqwest::Url::parse(&self.endpoint).map_err(|e| {
            Error::config(
                OWNER,
                format!("the endpoint is not a URL ({e}; not shown: it may hold credentials)"),
            )
        })?;
        match (self.protocol, url.scheme()) {
            (Protocol::Grpc, "http") | (Protocol::Http, "http" | "https") => {}
            (Protocol::Grpc, "https") => {
                return Err(Error::config(
                    OWNER,
                    "gRPC over TLS is not supported yet: use protocol = \"http\" with an https endpoint",
                ));
            }
            (Protocol::File, _) => {
                return Err(Error::config(OWNER, "protocol is grpc or http (file is for log sinks)"));
            }
            (_, other) => {
                return Err(Error::config(
                    OWNER,
                    format!("endpoint scheme {other:?} is not http or https"),
                ));
            }
        }
        if self.interval_ms < 100 {
            return Err(Error::config(OWNER, "interval_ms must be at least 100"));
        }
        check_header_names(OWNER, &self.headers)
    }
}

/// Latency buckets, in seconds: 100 µs to 10 s.
pub const LATENCY_BOUNDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Human waits (approvals) and session lengths, in seconds: 1 s to 1 day.
pub const WAIT_BOUNDS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0,
];

/// The most bounds a histogram has.
pub const MAX_BOUNDS: usize = 15;

/// An explicit-bucket histogram of durations, recorded with atomic adds
/// only: cheap enough for the request path, and never blocking.
pub struct Histogram {
    bounds: &'static [f64],
    /// `buckets[i]` counts values `<= bounds[i]` and `> bounds[i-1]`; the
    /// one past the bounds counts the rest.
    buckets: [AtomicU64; MAX_BOUNDS + 1],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

/// A histogram's values at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramValues {
    pub bounds: Vec<f64>,
    /// One more than `bounds`.
    pub buckets: Vec<u64>,
    pub count: u64,
    /// Seconds.
    pub sum: f64,
}

impl Histogram {
    /// `bounds` in seconds, increasing, at most [`MAX_BOUNDS`] of them
    /// (more are ignored).
    pub const fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: [const { AtomicU64::new(0) }; MAX_BOUNDS + 1],
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
        }
    }

    fn bounds(&self) -> &'static [f64] {
        let n = self.bounds.len().min(MAX_BOUNDS);
        &self.bounds[..n]
    }

    pub fn record(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let bounds = self.bounds();
        let i = bounds.iter().position(|b| secs <= *b).unwrap_or(bounds.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The values now. Read while others record, the buckets and the count
    /// may differ by the records in flight; the count is made their sum.
    pub fn values(&self) -> HistogramValues {
        let bounds = self.bounds();
        let buckets: Vec<u64> = self.buckets[..=bounds.len()]
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        HistogramValues {
            bounds: bounds.to_vec(),
            count: buckets.iter().sum(),
            buckets,
            sum: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// Attribute pairs of a data point: names and values from closed sets
/// (no ids, no arguments).
pub type Attributes = Vec<(&'static str, String)>;

/// One instrument's points, as the collect callback reports them.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// A monotonic cumulative sum.
    Counter(Vec<(Attributes, u64)>),
    Gauge(Vec<(Attributes, f64)>),
    Histogram(Vec<(Attributes, HistogramValues)>),
}

/// One metric as it is sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    pub unit: &'static str,
    pub description: &'static str,
    pub data: Data,
}

/// The OTLP request of `metrics`: cumulative since `start_ns`, read at
/// `now_ns`.
pub fn request(origin: &Origin, metrics: &[Metric], start_ns: u64, now_ns: u64) -> ExportMetricsServiceRequest {
    let attrs = |a: &Attributes| a.iter().map(|(k, v)| kv_str(k, v)).collect::<Vec<_>>();
    let number = |a: &Attributes, value: otlp::number_data_point::Value| otlp::NumberDataPoint {
        attributes: attrs(a),
        start_time_unix_nano: start_ns,
        time_unix_nano: now_ns,
        value: Some(value),
        ..Default::default()
    };
    let cumulative = otlp::AggregationTemporality::Cumulative as i32;
    let out = metrics
        .iter()
        .map(|m| otlp::Metric {
            name: m.name.into(),
            unit: m.unit.into(),
            description: m.description.into(),
            metadata: Vec::new(),
            data: Some(match &m.data {
                Data::Counter(points) => otlp::metric::Data::Sum(otlp::Sum {
                    data_points: points
                        .iter()
                        .map(|(a, v)| {
                            number(
                                a,
                                otlp::number_data_point::Value::AsInt(i64::try_from(*v).unwrap_or(i64::MAX)),
                            )
                        })
                        .collect(),
                    aggregation_temporality: cumulative,
                    is_monotonic: true,
                }),
                Data::Gauge(points) => otlp::metric::Data::Gauge(otlp::Gauge {
                    data_points: points
                        .iter()
                        .map(|(a, v)| number(a, otlp::number_data_point::Value::AsDouble(*v)))
                        .collect(),
                }),
                Data::Histogram(points) => otlp::metric::Data::Histogram(otlp::Histogram {
                    data_points: points
                        .iter()
                        .map(|(a, h)| otlp::HistogramDataPoint {
                            attributes: attrs(a),
                            start_time_unix_nano: start_ns,
                            time_unix_nano: now_ns,
                            count: h.count,
                            sum: Some(h.sum),
                            bucket_counts: h.buckets.clone(),
                            explicit_bounds: h.bounds.clone(),
                            ..Default::default()
                        })
                        .collect(),
                    aggregation_temporality: cumulative,
                }),
            }),
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![otlp::ResourceMetrics {
            resource: Some(origin.resource()),
            scope_metrics: vec![otlp::ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: SCOPE.into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics: out,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn now_ns() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    )
    .unwrap_or(u64::MAX)
}

/// What the exporter has done, for its own metric and for tests.
#[derive(Default)]
pub struct ExportCounts {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
}

/// Starts the exporter of `config` on a thread of its own
/// (`sealgate-metrics`): every interval, `collect` (run on that thread; it
/// may block) gives the values and one request sends them. Until `stop`.
/// A config that cannot work (a header's variable unset, a bad endpoint)
/// is an error here; a collector that is down is not.
pub fn spawn<F>(
    config: &MetricsConfig,
    ledger_id: &[u8],
    mut collect: F,
    stop: Arc<AtomicBool>,
) -> Result<(std::thread::JoinHandle<()>, Arc<ExportCounts>), Error>
where
    F: FnMut() -> Vec<Metric> + Send + 'static,
{
    config.validate()?;
    let headers = resolve_headers(OWNER, &config.headers)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start a runtime for", std::path::Path::new(OWNER), e))?;
    let target = config.target();
    let mut client = runtime
        .block_on(async { Client::new(&target, &headers, <ExportMetricsServiceRequest as Signal>::HTTP_PATH) })?;
    let origin = Origin {
        ledger_id: crate::hex(ledger_id),
        node: config.node.clone().unwrap_or_else(crate::record::host_name),
    };
    let interval = config.interval();
    let shown = target.shown;
    let counts = Arc::new(ExportCounts::default());
    let mine = counts.clone();
    let handle = std::thread::Builder::new()
        .name("sealgate-metrics".into())
        .spawn(move || {
            let start_ns = now_ns();
            let mut last_error: Option<String> = None;
            let mut last_rejection: Option<String> = None;
            let mut next = Instant::now() + interval;
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                if now < next {
                    std::thread::sleep((next - now).min(Duration::from_millis(50)));
                    continue;
                }
                next = now + interval;
                let mut metrics = collect();
                metrics.push(Metric {
                    name: "sealgate.metrics.export.failures",
                    unit: "{request}",
                    description: "Metrics requests the collector did not accept (each dropped; the next sends the cumulative values again)",
                    data: Data::Counter(vec![(Vec::new(), mine.failed.load(Ordering::Relaxed))]),
                });
                let req = request(&origin, &metrics, start_ns, now_ns());
                let answer = runtime.block_on(client.send(&req));
                match answer {
                    Answer::Accepted { rejected, reason } => {
                        mine.sent.fetch_add(1, Ordering::Relaxed);
                        // Once per reason (cut short), not every interval.
                        let reason = crate::transport::excerpt(&reason);
                        if rejected > 0 && last_rejection.as_deref() != Some(reason.as_str()) {
                            tracing::warn!(collector = %shown, rejected, reason = %reason, "metrics: the collector rejected data points");
                            last_rejection = Some(reason);
                        } else if rejected == 0 {
                            last_rejection = None;
                        }
                        if last_error.take().is_some() {
                            tracing::info!(collector = %shown, "metrics: the collector accepts them again");
                        }
                    }
                    Answer::Retry { why, .. } | Answer::Refused { why } => {
                        mine.failed.fetch_add(1, Ordering::Relaxed);
                        if last_error.as_deref() != Some(why.as_str()) {
                            tracing::warn!(collector = %shown, error = %why, "metrics: not sent (dropped; the next interval sends the totals again)");
                            last_error = Some(why);
                        }
                    }
                }
            }
        })
        .map_err(|e| Error::io("cannot start the thread of", std::path::Path::new(OWNER), e))?;
    Ok((handle, counts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_take_values_up_to_their_bound() {
        static H: Histogram = Histogram::new(&[0.001, 0.01, 0.1]);
        for ms in [0, 1, 2, 10, 50, 100, 101, 5000] {
            H.record(Duration::from_millis(ms));
        }
        let v = H.values();
        // <= 1 ms: 0, 1; <= 10 ms: 2, 10; <= 100 ms: 50, 100; more: 101, 5000.
        assert_eq!(v.buckets, vec![2, 2, 2, 2]);
        assert_eq!(v.count, 8);
        assert!((v.sum - 5.264).abs() < 1e-9, "{}", v.sum);
        assert_eq!(v.bounds, vec![0.001, 0.01, 0.1]);
    }

    #[test]
    fn histograms_record_from_many_threads_without_loss() {
        let h = Arc::new(Histogram::new(LATENCY_BOUNDS));
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for n in 0..10_000u64 {
                        h.record(Duration::from_micros(n % 1000 + i));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let v = h.values();
        assert_eq!(v.count, 40_000);
        assert_eq!(v.buckets.len(), LATENCY_BOUNDS.len() + 1);
    }

    #[test]
    fn the_request_is_cumulative_with_monotonic_counters() {
        let origin = Origin {
            ledger_id: "00".repeat(16),
            node: "n".into(),
        };
        let h = Histogram::new(LATENCY_BOUNDS);
        h.record(Duration::from_millis(3));
        let metrics = vec![
            Metric {
                name: "c",
                unit: "1",
                description: "",
                data: Data::Counter(vec![(vec![("sealgate.decision", "ALLOW".into())], 3)]),
            },
            Metric {
                name: "h",
                unit: "s",
                description: "",
                data: Data::Histogram(vec![(Vec::new(), h.values())]),
            },
        ];
        let req = request(&origin, &metrics, 1, 2);
        let scope = &req.resource_metrics[0].scope_metrics[0];
        let Some(otlp::metric::Data::Sum(sum)) = &scope.metrics[0].data else {
            panic!("a counter is a sum");
        };
        assert!(sum.is_monotonic);
        assert_eq!(
            sum.aggregation_temporality,
            otlp::AggregationTemporality::Cumulative as i32
        );
        assert_eq!(sum.data_points[0].value, Some(otlp::number_data_point::Value::AsInt(3)));
        assert_eq!(sum.data_points[0].attributes[0].key, "sealgate.decision");
        let Some(otlp::metric::Data::Histogram(hist)) = &scope.metrics[1].data else {
            panic!("a histogram");
        };
        let p = &hist.data_points[0];
        assert_eq!(p.bucket_counts.len(), p.explicit_bounds.len() + 1);
        assert_eq!(p.count, 1);
        assert_eq!(p.bucket_counts[5], 1, "3 ms is in (2.5 ms, 5 ms]");
    }

    #[test]
    fn configs_are_checked() {
        let parse = |s: &str| toml::from_str::<MetricsConfig>(s).expect("parse");
        parse("endpoint = \"http://127.0.0.1:4317\"").validate().expect("grpc");
        parse("endpoint = \"https://c:4318\"\nprotocol = \"http\"")
            .validate()
            .expect("http");
        for (body, want) in [
            ("endpoint = \"https://c:4317\"", "TLS"),
            (
                "endpoint = \"http://c:1\"\nprotocol = \"file\"",
                "file is for log sinks",
            ),
            ("endpoint = \"http://c:1\"\ninterval_ms = 5", "interval_ms"),
            (
                "endpoint = \"http://c:1\"\nheaders = { \"a b\" = { value = \"x\" } }",
                "header",
            ),
        ] {
            let err = parse(body).validate().expect_err(body).to_string();
            assert!(err.contains(want), "{body}: {err}");
        }
        assert!(toml::from_str::<MetricsConfig>("endpoint = \"http://c:1\"\nbatch_size = 3").is_err());
    }
}
