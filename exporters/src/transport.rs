//! Sending one OTLP request (logs or metrics: a [`Signal`]) and
//! classifying the answer as the OTLP specification says: accepted (maybe
//! partly), retryable (with the collector's delay if it gave one), or
//! refused for good.

use std::future::Future;
use std::io::Write;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;

use crate::Error;
use crate::config::{Header, Protocol, SinkConfig};

/// An OTLP export request of one signal: its HTTP path, its gRPC service
/// and what its answer says was rejected.
pub trait Signal: Message + Clone + Send + Sync + 'static {
    type Response: Message + Default + Send + 'static;
    /// The path an OTLP/HTTP endpoint without one gets (`/v1/logs`).
    const HTTP_PATH: &'static str;
    /// The items a partial success rejected, and the collector's reason.
    fn rejected(response: &Self::Response) -> Option<(i64, String)>;
    /// The gRPC call on `channel`.
    fn export(
        channel: Channel,
        gzip: bool,
        request: tonic::Request<Self>,
    ) -> impl Future<Output = Result<tonic::Response<Self::Response>, tonic::Status>> + Send;
}

impl Signal for ExportLogsServiceRequest {
    type Response = ExportLogsServiceResponse;
    const HTTP_PATH: &'static str = "/v1/logs";

    fn rejected(response: &ExportLogsServiceResponse) -> Option<(i64, String)> {
        response
            .partial_success
            .as_ref()
            .map(|p| (p.rejected_log_records, p.error_message.clone()))
    }

    async fn export(
        channel: Channel,
        gzip: bool,
        request: tonic::Request<Self>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let mut client = LogsServiceClient::new(channel)
            .max_decoding_message_size(1 << 20)
            .accept_compressed(CompressionEncoding::Gzip);
        if gzip {
            client = client.send_compressed(CompressionEncoding::Gzip);
        }
        client.export(request).await
    }
}

impl Signal for ExportMetricsServiceRequest {
    type Response = ExportMetricsServiceResponse;
    const HTTP_PATH: &'static str = "/v1/metrics";

    fn rejected(response: &ExportMetricsServiceResponse) -> Option<(i64, String)> {
        response
            .partial_success
            .as_ref()
            .map(|p| (p.rejected_data_points, p.error_message.clone()))
    }

    async fn export(
        channel: Channel,
        gzip: bool,
        request: tonic::Request<Self>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut client = MetricsServiceClient::new(channel)
            .max_decoding_message_size(1 << 20)
            .accept_compressed(CompressionEncoding::Gzip);
        if gzip {
            client = client.send_compressed(CompressionEncoding::Gzip);
        }
        client.export(request).await
    }
}

/// Where a client sends: a log sink's or the metrics' collector.
#[derive(Clone, Debug)]
pub struct Target {
    /// Names the sender in errors (`exporter NAME`).
    pub name: String,
    pub endpoint: String,
    pub protocol: Protocol,
    pub gzip: bool,
    pub timeout: Duration,
    /// The endpoint as errors name it (no user info, no query).
    pub shown: String,
}

impl SinkConfig {
    /// Where this sink's client sends.
    pub fn target(&self) -> Target {
        Target {
            name: self.name.clone(),
            endpoint: self.endpoint.clone(),
            protocol: self.protocol,
            gzip: self.gzip,
            timeout: self.timeout(),
            shown: self.shown_endpoint(),
        }
    }
}

/// What the collector said to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Accepted; `rejected` records of it were not (partial success), for
    /// `reason`. Not retried either way.
    Accepted { rejected: i64, reason: String },
    /// Failed in a way a later attempt can fix; `after` is the collector's
    /// requested delay.
    Retry { after: Option<Duration>, why: String },
    /// Refused in a way retrying cannot fix.
    Refused { why: String },
}

/// A sink's connection to its collector.
pub enum Client {
    Grpc {
        channel: Channel,
        gzip: bool,
        metadata: Vec<(
            tonic::metadata::MetadataKey<tonic::metadata::Ascii>,
            tonic::metadata::AsciiMetadataValue,
        )>,
        timeout: Duration,
    },
    Http {
        client: reqwest::Client,
        url: reqwest::Url,
        /// The URL as errors name it ([`SinkConfig::shown_endpoint`]).
        shown: String,
        headers: reqwest::header::HeaderMap,
        gzip: bool,
    },
}

impl Client {
    /// A client for `config` (connects lazily: a collector that is down
    /// now is a retryable failure of the first request, not an error).
    /// `http_path` is the path an HTTP endpoint without one gets
    /// ([`Signal::HTTP_PATH`]).
    pub fn new(config: &Target, headers: &[Header], http_path: &str) -> Result<Client, Error> {
        let timeout = config.timeout;
        match config.protocol {
            Protocol::Grpc => {
                let endpoint = Channel::from_shared(config.endpoint.clone())
                    .map_err(|e| Error::config(&config.name, format!("endpoint: {e}")))?
                    .connect_timeout(timeout)
                    .timeout(timeout);
                let channel = endpoint.connect_lazy();
                let mut metadata = Vec::new();
                for h in headers {
                    let key = tonic::metadata::MetadataKey::from_bytes(h.name.to_ascii_lowercase().as_bytes())
                        .map_err(|_| {
                            Error::config(&config.name, format!("header {}: not a gRPC metadata key", h.name))
                        })?;
                    let value = tonic::metadata::AsciiMetadataValue::try_from(h.value.as_str()).map_err(|_| {
                        Error::config(
                            &config.name,
                            format!("header {}: the value is not visible ASCII", h.name),
                        )
                    })?;
                    metadata.push((key, value));
                }
                Ok(Client::Grpc {
                    channel,
                    gzip: config.gzip,
                    metadata,
                    timeout,
                })
            }
            Protocol::File => Err(Error::config(&config.name, "a file sink has no collector")),
            Protocol::Http => {
                // One crypto provider per process for https endpoints (the
                // gateway installs the same; whoever is first wins).
                let _ = rustls::crypto::ring::default_provider().install_default();
                let mut url = reqwest::Url::parse(&config.endpoint)
                    .map_err(|e| Error::config(&config.name, format!("endpoint: {e}")))?;
                if url.path() == "/" || url.path().is_empty() {
                    url.set_path(http_path);
                }
                let mut map = reqwest::header::HeaderMap::new();
                for h in headers {
                    let name = reqwest::header::HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
                        Error::config(&config.name, format!("header {}: not an HTTP header name", h.name))
                    })?;
                    let mut value = reqwest::header::HeaderValue::from_str(&h.value).map_err(|_| {
                        Error::config(
                            &config.name,
                            format!("header {}: not a valid HTTP header value", h.name),
                        )
                    })?;
                    value.set_sensitive(true);
                    map.insert(name, value);
                }
                let client = reqwest::Client::builder()
                    .timeout(timeout)
                    .connect_timeout(timeout)
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| Error::config(&config.name, format!("http client: {e}")))?;
                Ok(Client::Http {
                    client,
                    url,
                    shown: config.shown.clone(),
                    headers: map,
                    gzip: config.gzip,
                })
            }
        }
    }

    /// Sends one request; never errors: every failure is an [`Answer`].
    pub async fn send<S: Signal>(&mut self, request: &S) -> Answer {
        match self {
            Client::Grpc {
                channel,
                gzip,
                metadata,
                timeout,
            } => {
                let mut req = tonic::Request::new(request.clone());
                req.set_timeout(*timeout);
                for (k, v) in metadata.iter() {
                    req.metadata_mut().insert(k.clone(), v.clone());
                }
                match S::export(channel.clone(), *gzip, req).await {
                    Ok(resp) => accepted::<S>(&resp.into_inner()),
                    Err(status) => grpc_failure(&status),
                }
            }
            Client::Http {
                client,
                url,
                shown,
                headers,
                gzip,
            } => {
                let (body, zipped) = http_body(request, *gzip);
                let mut builder = client
                    .post(url.clone())
                    .headers(headers.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf");
                if zipped {
                    builder = builder.header(reqwest::header::CONTENT_ENCODING, "gzip");
                }
                let resp = match builder.body(body).send().await {
                    Ok(r) => r,
                    Err(e) => {
                        return Answer::Retry {
                            after: None,
                            why: format!("POST {shown}: {}", error_chain(&e.without_url())),
                        };
                    }
                };
                let status = resp.status();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                let gzipped = resp
                    .headers()
                    .get(reqwest::header::CONTENT_ENCODING)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
                let bytes = match resp.bytes().await {
                    Ok(b) => b.to_vec(),
                    Err(e) if status.is_success() => {
                        return Answer::Retry {
                            after: None,
                            why: format!("POST {shown}: reading the answer: {}", error_chain(&e.without_url())),
                        };
                    }
                    Err(_) => Vec::new(),
                };
                let bytes = if gzipped {
                    gunzip(&bytes).unwrap_or(bytes)
                } else {
                    bytes
                };
                if status.is_success() {
                    return match S::Response::decode(bytes.as_slice()) {
                        Ok(r) => accepted::<S>(&r),
                        // Accepted all the same: the status says so.
                        Err(_) => Answer::Accepted {
                            rejected: 0,
                            reason: String::new(),
                        },
                    };
                }
                let detail = http_detail(&bytes);
                let why = format!("POST {shown}: HTTP {}{detail}", status.as_u16());
                match status.as_u16() {
                    429 | 502 | 503 | 504 => Answer::Retry {
                        after: retry_after,
                        why,
                    },
                    _ => Answer::Refused { why },
                }
            }
        }
    }
}

/// An OTLP/HTTP request body: the request as protobuf, gzipped (level
/// `fast`) when asked; the flag says whether it is gzipped.
pub fn http_body(request: &impl Message, gzip: bool) -> (Vec<u8>, bool) {
    let body = request.encode_to_vec();
    if gzip && let Some(zipped) = gzip_bytes(&body, 1) {
        return (zipped, true);
    }
    (body, false)
}

/// `bytes` gzipped at `level` (1 fast to 9 best; tonic's gRPC gzip is 6).
pub fn gzip_bytes(bytes: &[u8], level: u32) -> Option<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(bytes.len() / 4), flate2::Compression::new(level));
    enc.write_all(bytes).ok()?;
    enc.finish().ok()
}

fn accepted<S: Signal>(resp: &S::Response) -> Answer {
    match S::rejected(resp) {
        Some((rejected, reason)) if rejected > 0 || !reason.is_empty() => Answer::Accepted { rejected, reason },
        _ => Answer::Accepted {
            rejected: 0,
            reason: String::new(),
        },
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}

fn gunzip(bytes: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).ok()?;
    Some(out)
}

/// `google.rpc.Status` and `google.rpc.RetryInfo`, the two messages OTLP
/// failure answers carry (declared here rather than pulling in a crate of
/// well-known types for three fields).
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<Any>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Any {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

fn retry_info(details: &[u8]) -> Option<Duration> {
    let status = RpcStatus::decode(details).ok()?;
    status
        .details
        .iter()
        .find(|a| a.type_url.ends_with("google.rpc.RetryInfo"))
        .and_then(|a| RetryInfo::decode(a.value.as_slice()).ok())
        .and_then(|r| r.retry_delay)
        .map(|d| Duration::new(d.seconds.max(0) as u64, d.nanos.clamp(0, 999_999_999) as u32))
}

/// A short text of an HTTP failure's body: a `google.rpc.Status` message,
/// or the start of a text body.
fn http_detail(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return String::new();
    }
    if let Ok(s) = RpcStatus::decode(bytes)
        && !s.message.is_empty()
    {
        return format!(": {}", excerpt(&s.message));
    }
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.trim().is_empty() => format!(": {}", excerpt(text.trim())),
        _ => String::new(),
    }
}

pub(crate) fn excerpt(s: &str) -> String {
    let mut end = s.len().min(300);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].replace(['\n', '\r'], " ")
}

/// The OTLP specification's retryable gRPC codes; `RESOURCE_EXHAUSTED`
/// only when the collector says when to come back (`RetryInfo`).
fn grpc_failure(status: &tonic::Status) -> Answer {
    use tonic::Code;
    let after = retry_info(status.details());
    let why = format!("gRPC {:?}: {}", status.code(), excerpt(status.message()));
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => Answer::Retry { after, why },
        Code::ResourceExhausted if after.is_some() => Answer::Retry { after, why },
        _ => Answer::Refused { why },
    }
}

/// `Retry-After`: seconds, or an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
    let now = time::OffsetDateTime::now_utc();
    Some(Duration::try_from(when - now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An endpoint's user info and query (where a collector's token may
    /// be) appear in no error: the status file and the admin API show them.
    #[test]
    fn errors_do_not_show_the_endpoints_secrets() {
        let config: SinkConfig = toml::from_str(
            "name = \"a\"\nprotocol = \"http\"\nendpoint = \"http://user:hunter2@127.0.0.1:1/v1/logs?token=s3cret\"\ntimeout_sec = 2\n",
        )
        .expect("config");
        assert_eq!(config.shown_endpoint(), "http://127.0.0.1:1/v1/logs");
        let mut client = Client::new(&config.target(), &[], "/v1/logs").expect("client");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let answer = runtime.block_on(client.send(&ExportLogsServiceRequest::default()));
        let Answer::Retry { why, .. } = answer else {
            panic!("a refused connection is retried");
        };
        assert!(why.starts_with("POST http://127.0.0.1:1/v1/logs: "), "{why}");
        assert!(
            !why.contains("hunter2") && !why.contains("s3cret") && !why.contains("user"),
            "{why}"
        );
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn grpc_codes_follow_the_otlp_specification() {
        use tonic::Code;
        for code in [
            Code::Unavailable,
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::OutOfRange,
            Code::DataLoss,
        ] {
            assert!(
                matches!(grpc_failure(&tonic::Status::new(code, "x")), Answer::Retry { .. }),
                "{code:?}"
            );
        }
        for code in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::Unknown,
            Code::ResourceExhausted,
        ] {
            assert!(
                matches!(grpc_failure(&tonic::Status::new(code, "x")), Answer::Refused { .. }),
                "{code:?}"
            );
        }
        let details = RpcStatus {
            code: 8,
            message: "slow down".into(),
            details: vec![Any {
                type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                value: RetryInfo {
                    retry_delay: Some(ProtoDuration { seconds: 3, nanos: 0 }),
                }
                .encode_to_vec(),
            }],
        }
        .encode_to_vec();
        let st = tonic::Status::with_details(Code::ResourceExhausted, "slow down", details.into());
        assert_eq!(
            grpc_failure(&st),
            Answer::Retry {
                after: Some(Duration::from_secs(3)),
                why: "gRPC ResourceExhausted: slow down".into()
            }
        );
    }
}
