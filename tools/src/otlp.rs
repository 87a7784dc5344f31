//! OTLP test peers: an in-test OTLP/HTTP logs receiver that records what
//! it gets and answers as told (accept, an HTTP status, partial success,
//! slowly), and also records OTLP metrics (`/v1/metrics`, always accepted);
//! and rotel, a real OpenTelemetry collector (installed by
//! `tools/peers.sh`), forwarding to it.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
use prost::Message;

/// One log record as the receiver got it.
#[derive(Clone, Debug)]
pub struct Got {
    pub event_name: String,
    pub attributes: BTreeMap<String, String>,
    pub resource: BTreeMap<String, String>,
    pub body: serde_json::Value,
    pub time_unix_nano: u64,
    pub severity_number: i32,
    pub trace_id: Vec<u8>,
    /// Which request (0, 1, ...) it came in.
    pub request: usize,
}

impl Got {
    pub fn seq(&self) -> u64 {
        self.attributes["sealgate.seq"]
            .parse()
            .expect("sealgate.seq is an integer")
    }
    pub fn hash(&self) -> &str {
        &self.attributes["sealgate.hash"]
    }
}

/// How the receiver answers.
#[derive(Clone, Debug)]
pub enum Mode {
    Accept,
    /// This HTTP status, with a Retry-After if given.
    Status(u16, Option<u64>),
    /// Partial success: rejects this many records of each request.
    Partial(i64, String),
    /// Holds every request this long before accepting it.
    Slow(Duration),
}

/// One metric data point as the receiver got it: a sum's or gauge's value,
/// or a histogram's count (its buckets in `buckets`).
#[derive(Clone, Debug)]
pub struct Point {
    pub name: String,
    pub unit: String,
    /// `sum`, `gauge` or `histogram`.
    pub kind: &'static str,
    pub monotonic: bool,
    pub attributes: BTreeMap<String, String>,
    pub resource: BTreeMap<String, String>,
    pub value: f64,
    pub buckets: Vec<u64>,
    pub bounds: Vec<f64>,
    pub time_unix_nano: u64,
    /// Which metrics request (0, 1, ...) it came in.
    pub request: usize,
}

#[derive(Default)]
pub struct Inbox {
    pub records: Vec<Got>,
    pub points: Vec<Point>,
    pub metrics_requests: usize,
    pub requests: usize,
    pub gzip_requests: usize,
    pub headers: Vec<HeaderMap>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    pub inbox: Arc<Mutex<Inbox>>,
    pub mode: Arc<Mutex<Mode>>,
    _runtime: tokio::runtime::Runtime,
}

fn value_text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(n)) => n.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

impl Receiver {
    /// An OTLP/HTTP receiver on 127.0.0.1 (`POST /v1/logs`, protobuf,
    /// gzip or not).
    pub fn start(mode: Mode) -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let mode = Arc::new(Mutex::new(mode));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (i, m) = (inbox.clone(), mode.clone());
        let mi = inbox.clone();
        let app = axum::Router::new()
            .route(
                "/v1/logs",
                axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                    let (inbox, mode) = (i.clone(), m.clone());
                    async move { receive(inbox, mode, headers, body).await }
                }),
            )
            .route(
                "/v1/metrics",
                axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                    let inbox = mi.clone();
                    async move { receive_metrics(inbox, headers, body) }
                }),
            );
        runtime.spawn(async move { axum::serve(listener, app).await });
        Receiver {
            addr,
            inbox,
            mode,
            _runtime: runtime,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().expect("mode") = mode;
    }

    pub fn records(&self) -> Vec<Got> {
        self.inbox.lock().expect("inbox").records.clone()
    }

    /// Every metric data point received, in arrival order.
    pub fn points(&self) -> Vec<Point> {
        self.inbox.lock().expect("inbox").points.clone()
    }

    /// The latest point of each series (name and attributes) received.
    pub fn latest_points(&self) -> BTreeMap<(String, BTreeMap<String, String>), Point> {
        let mut out = BTreeMap::new();
        for p in self.points() {
            let key = (p.name.clone(), p.attributes.clone());
            let newer = out
                .get(&key)
                .is_none_or(|q: &Point| p.time_unix_nano >= q.time_unix_nano);
            if newer {
                out.insert(key, p);
            }
        }
        out
    }

    pub fn metrics_requests(&self) -> usize {
        self.inbox.lock().expect("inbox").metrics_requests
    }

    pub fn requests(&self) -> usize {
        self.inbox.lock().expect("inbox").requests
    }

    /// Waits until records for every seq of `0..=last` arrived.
    pub fn wait_for_all(&self, last: u64, within: Duration) -> Vec<Got> {
        let end = Instant::now() + within;
        loop {
            let got = self.records();
            let seqs: std::collections::BTreeSet<u64> = got.iter().map(Got::seq).collect();
            if (0..=last).all(|s| seqs.contains(&s)) {
                return got;
            }
            assert!(
                Instant::now() < end,
                "the receiver has {} of {} events after {within:?} (missing e.g. {:?})",
                seqs.len(),
                last + 1,
                (0..=last).find(|s| !seqs.contains(s))
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

async fn receive(
    inbox: Arc<Mutex<Inbox>>,
    mode: Arc<Mutex<Mode>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let gzip = headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let bytes = if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .expect("gzip body");
        out
    } else {
        body.to_vec()
    };
    let mode = mode.lock().expect("mode").clone();
    let mut out_headers = HeaderMap::new();
    if let Mode::Status(code, retry_after) = &mode {
        inbox.lock().expect("inbox").requests += 1;
        if let Some(s) = retry_after {
            out_headers.insert("retry-after", s.to_string().parse().expect("header"));
        }
        return (
            StatusCode::from_u16(*code).expect("status"),
            out_headers,
            b"the test receiver refuses this".to_vec(),
        );
    }
    let request = ExportLogsServiceRequest::decode(bytes.as_slice()).expect("an OTLP logs request");
    {
        let mut inbox = inbox.lock().expect("inbox");
        let n = inbox.requests;
        inbox.requests += 1;
        inbox.gzip_requests += usize::from(gzip);
        inbox.headers.push(headers.clone());
        for rl in &request.resource_logs {
            let resource: BTreeMap<String, String> = rl
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .map(|kv| (kv.key.clone(), value_text(&kv.value)))
                .collect();
            for sl in &rl.scope_logs {
                for r in &sl.log_records {
                    let body = value_text(&r.body);
                    inbox.records.push(Got {
                        event_name: r.event_name.clone(),
                        attributes: r
                            .attributes
                            .iter()
                            .map(|kv| (kv.key.clone(), value_text(&kv.value)))
                            .collect(),
                        resource: resource.clone(),
                        body: serde_json::from_str(&body).expect("the body is JSON"),
                        time_unix_nano: r.time_unix_nano,
                        severity_number: r.severity_number,
                        trace_id: r.trace_id.clone(),
                        request: n,
                    });
                }
            }
        }
    }
    if let Mode::Slow(d) = &mode {
        tokio::time::sleep(*d).await;
    }
    let response = match mode {
        Mode::Partial(rejected, message) => ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: rejected,
                error_message: message,
            }),
        },
        _ => ExportLogsServiceResponse { partial_success: None },
    };
    out_headers.insert("content-type", "application/x-protobuf".parse().expect("header"));
    (StatusCode::OK, out_headers, response.encode_to_vec())
}

fn receive_metrics(inbox: Arc<Mutex<Inbox>>, headers: HeaderMap, body: Bytes) -> (StatusCode, HeaderMap, Vec<u8>) {
    let gzip = headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let bytes = if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .expect("gzip body");
        out
    } else {
        body.to_vec()
    };
    let request = ExportMetricsServiceRequest::decode(bytes.as_slice()).expect("an OTLP metrics request");
    let attrs = |kvs: &[opentelemetry_proto::tonic::common::v1::KeyValue]| -> BTreeMap<String, String> {
        kvs.iter().map(|kv| (kv.key.clone(), value_text(&kv.value))).collect()
    };
    let number = |v: &Option<number_data_point::Value>| match v {
        Some(number_data_point::Value::AsInt(n)) => *n as f64,
        Some(number_data_point::Value::AsDouble(d)) => *d,
        None => f64::NAN,
    };
    {
        let mut inbox = inbox.lock().expect("inbox");
        let n = inbox.metrics_requests;
        inbox.metrics_requests += 1;
        for rm in &request.resource_metrics {
            let resource = rm.resource.as_ref().map(|r| attrs(&r.attributes)).unwrap_or_default();
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    let point = |kind, monotonic, a, value, buckets, bounds, time_unix_nano| Point {
                        name: m.name.clone(),
                        unit: m.unit.clone(),
                        kind,
                        monotonic,
                        attributes: a,
                        resource: resource.clone(),
                        value,
                        buckets,
                        bounds,
                        time_unix_nano,
                        request: n,
                    };
                    let points: Vec<Point> = match &m.data {
                        Some(Data::Sum(s)) => s
                            .data_points
                            .iter()
                            .map(|p| {
                                point(
                                    "sum",
                                    s.is_monotonic,
                                    attrs(&p.attributes),
                                    number(&p.value),
                                    Vec::new(),
                                    Vec::new(),
                                    p.time_unix_nano,
                                )
                            })
                            .collect(),
                        Some(Data::Gauge(g)) => g
                            .data_points
                            .iter()
                            .map(|p| {
                                point(
                                    "gauge",
                                    false,
                                    attrs(&p.attributes),
                                    number(&p.value),
                                    Vec::new(),
                                    Vec::new(),
                                    p.time_unix_nano,
                                )
                            })
                            .collect(),
                        Some(Data::Histogram(h)) => h
                            .data_points
                            .iter()
                            .map(|p| {
                                point(
                                    "histogram",
                                    false,
                                    attrs(&p.attributes),
                                    p.count as f64,
                                    p.bucket_counts.clone(),
                                    p.explicit_bounds.clone(),
                                    p.time_unix_nano,
                                )
                            })
                            .collect(),
                        _ => Vec::new(),
                    };
                    inbox.points.extend(points);
                }
            }
        }
    }
    let mut out_headers = HeaderMap::new();
    out_headers.insert("content-type", "application/x-protobuf".parse().expect("header"));
    let response = ExportMetricsServiceResponse { partial_success: None };
    (StatusCode::OK, out_headers, response.encode_to_vec())
}

/// A free port on 127.0.0.1 (bound and released: good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Why the rotel tests are ignored by a plain `cargo test`.
pub const E2E: &str = "end-to-end: needs rotel (tools/peers.sh); tools/test.sh runs it";

/// rotel-agent's path: `SEALGATE_ROTEL_AGENT` (set by `tools/test.sh` from
/// `tools/peers.sh`).
pub fn rotel_agent() -> String {
    match std::env::var("SEALGATE_ROTEL_AGENT").ok().filter(|v| !v.is_empty()) {
        Some(p) => p,
        None => panic!(
            "rotel not installed: run the tests with tools/test.sh (it installs rotel with tools/peers.sh), \
             or export SEALGATE_ROTEL_AGENT=<the ROTEL_AGENT path tools/peers.sh prints>"
        ),
    }
}

/// A real rotel collector receiving OTLP on gRPC and HTTP and forwarding
/// what it receives to `forward_to` over OTLP/HTTP.
pub struct Rotel {
    child: Child,
    pub grpc: u16,
    pub http: u16,
    pub log: PathBuf,
}

impl Rotel {
    pub fn start(dir: &Path, forward_to: &str, grpc: u16, http: u16) -> Rotel {
        Rotel::with_exporter(
            dir,
            &[
                "--exporter",
                "otlp",
                "--otlp-exporter-endpoint",
                forward_to,
                "--otlp-exporter-protocol",
                "http",
            ],
            grpc,
            http,
        )
    }

    /// A real rotel collector that receives OTLP on gRPC and HTTP and
    /// drops it (`--exporter blackhole`): the benchmark's collector.
    pub fn blackhole(dir: &Path, grpc: u16, http: u16) -> Rotel {
        Rotel::with_exporter(dir, &["--exporter", "blackhole"], grpc, http)
    }

    fn with_exporter(dir: &Path, exporter: &[&str], grpc: u16, http: u16) -> Rotel {
        let log = dir.join(format!("rotel-{grpc}.log"));
        let out = std::fs::File::create(&log).expect("rotel log");
        let child = Command::new(rotel_agent())
            .args(["start", "--otlp-grpc-endpoint"])
            .arg(format!("127.0.0.1:{grpc}"))
            .arg("--otlp-http-endpoint")
            .arg(format!("127.0.0.1:{http}"))
            .args(exporter)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("start rotel-agent");
        let rotel = Rotel { child, grpc, http, log };
        let end = Instant::now() + Duration::from_secs(20);
        for port in [grpc, http] {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    Instant::now() < end,
                    "rotel did not listen on {port}: {}",
                    std::fs::read_to_string(&rotel.log).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        rotel
    }

    pub fn stop(mut self) {
        self.kill();
    }

    /// The collector's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        self.kill();
    }
}

/// At-least-once in order, as a receiver sees it: the first arrivals are
/// seqs `0..hashes.len()` in order, every record carries its event's hash
/// (`hashes[seq]`), and a duplicate is the same event.
pub fn assert_every_once_in_order(got: &[Got], hashes: &[String]) {
    let mut first_seen = Vec::new();
    let mut seen: BTreeMap<u64, String> = BTreeMap::new();
    for g in got {
        let seq = g.seq();
        assert!((seq as usize) < hashes.len(), "seq {seq} is past the log's head");
        assert_eq!(
            g.hash(),
            hashes[seq as usize],
            "seq {seq}: sealgate.hash is not the event's hash"
        );
        if seen.insert(seq, g.hash().to_owned()).is_none() {
            first_seen.push(seq);
        }
    }
    let want: Vec<u64> = (0..hashes.len() as u64).collect();
    assert_eq!(first_seen, want, "first arrivals are not every seq in order");
}
