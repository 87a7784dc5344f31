//! `[[exporters]]`: one table per sink (`docs/CONFIG.md`, Exporters).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::Error;

/// The OTLP transport of a sink.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// OTLP/gRPC (`opentelemetry.proto.collector.logs.v1.LogsService/Export`).
    #[default]
    Grpc,
    /// OTLP/HTTP with binary protobuf bodies (`POST .../v1/logs`).
    Http,
    /// No collector: the same OCSF records as gzip JSON lines in files for
    /// a data lake (`path`, rolled by `roll_bytes` / `roll_sec`, with a
    /// manifest; `docs/EXPORT.md`, Files for lakes).
    File,
}

/// Where a header's value comes from. Secrets are given by reference: the
/// value is read when the gateway starts and never written to a log line,
/// an event or an error.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeaderSource {
    /// A value that is no secret (a tenant name), written in the config.
    Value(String),
    /// The value of an environment variable of the gateway's process.
    Env(String),
    /// The contents of a file, without a trailing newline.
    File(PathBuf),
}

/// One sink.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Names the sink in `sealgate export` and its files
    /// (`<data dir>/derived/export/NAME/`): `a-z`, `0-9`, `_`, `-`.
    pub name: String,
    /// `http://host:4317` (gRPC), `http(s)://host:4318` (HTTP; `/v1/logs`
    /// is added when the URL has no path). Not for `file` sinks.
    #[serde(default)]
    pub endpoint: String,
    #[serde(default)]
    pub protocol: Protocol,
    /// Compress requests with gzip.
    #[serde(default = "yes")]
    pub gzip: bool,
    /// Request headers (gRPC metadata), each a `{ value = ... }`,
    /// `{ env = "VAR" }` or `{ file = "PATH" }`.
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderSource>,
    /// Events per request at most.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// A batch smaller than `batch_size` is sent once this much time has
    /// passed since the last one.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Which kinds to send: names (`policy.decision`), prefixes
    /// (`execution.*`, `x.*`), or empty for every kind.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// One request's deadline.
    #[serde(default = "default_timeout_sec")]
    pub timeout_sec: u64,
    /// The longest wait between retries of a retryable failure (the first
    /// is 250 ms, doubling, with jitter; a collector's `Retry-After` or
    /// `RetryInfo` is honoured up to this).
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// After a refusal that retrying cannot fix (HTTP 400, gRPC
    /// `INVALID_ARGUMENT`, ...), the sink stops and tries the same batch
    /// again this often.
    #[serde(default = "default_stalled_retry_sec")]
    pub stalled_retry_sec: u64,
    /// The resource's `host.name` (default: the machine's host name).
    #[serde(default)]
    pub node: Option<String>,
    /// `file` sinks: the directory the files and `manifest.jsonl` are
    /// written to (relative: to the data dir).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `file` sinks: a file is closed once its gzip bytes reach this.
    #[serde(default = "default_roll_bytes")]
    pub roll_bytes: u64,
    /// `file` sinks: a file holding records is closed once it has been
    /// open this long, so a quiet log still reaches the lake.
    #[serde(default = "default_roll_sec")]
    pub roll_sec: u64,
}

fn yes() -> bool {
    true
}
fn default_batch_size() -> usize {
    512
}
fn default_interval_ms() -> u64 {
    1000
}
fn default_timeout_sec() -> u64 {
    10
}
fn default_max_backoff_ms() -> u64 {
    30_000
}
fn default_stalled_retry_sec() -> u64 {
    60
}
fn default_roll_bytes() -> u64 {
    64 << 20
}
fn default_roll_sec() -> u64 {
    300
}

/// A header with its value read: the value is never printed.
#[derive(Clone)]
pub struct Header {
    pub name: String,
    pub value: String,
}

impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: <{} bytes>", self.name, self.value.len())
    }
}

impl SinkConfig {
    /// The endpoint as status, errors and logs name it: scheme, host, port
    /// and path; user info and query (where collectors' tokens go) left out.
    pub fn shown_endpoint(&self) -> String {
        shown_endpoint(&self.endpoint)
    }

    /// Whether events of `kind` go to this sink.
    pub fn wants(&self, kind: &str) -> bool {
        self.kinds.is_empty()
            || self.kinds.iter().any(|k| {
                k == "*"
                    || k == kind
                    || k.strip_suffix('*')
                        .is_some_and(|prefix| prefix.ends_with('.') && kind.starts_with(prefix))
            })
    }

    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_sec.max(1))
    }

    /// Where a `file` sink writes (`path`, relative to `data_dir`).
    pub fn lake_dir(&self, data_dir: &std::path::Path) -> Option<PathBuf> {
        self.path.as_ref().map(|p| data_dir.join(p))
    }

    /// What `export status` names as the sink's destination.
    pub fn destination(&self, data_dir: &std::path::Path) -> String {
        match self.lake_dir(data_dir) {
            Some(dir) if self.protocol == Protocol::File => format!("file://{}", dir.display()),
            _ => self.shown_endpoint(),
        }
    }

    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<(), Error> {
        let name = &self.name;
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(Error::config(
                name,
                "name must be 1 to 64 of a-z, 0-9, _ and - (it names a directory)",
            ));
        }
        if self.protocol == Protocol::File {
            if !self.endpoint.is_empty() {
                return Err(Error::config(name, "a file sink has a path, not an endpoint"));
            }
            match &self.path {
                Some(p) if !p.as_os_str().is_empty() => {}
                _ => return Err(Error::config(name, "a file sink needs path = \"DIR\"")),
            }
            if self.roll_bytes < 1024 || self.roll_sec == 0 {
                return Err(Error::config(
                    name,
                    "roll_bytes must be at least 1024 and roll_sec at least 1",
                ));
            }
        } else if self.path.is_some() {
            return Err(Error::config(name, "path is for file sinks (protocol = \"file\")"));
        }
        let url = if self.protocol == Protocol::File {
            None
        } else {
            Some(reqwest::Url::parse(&self.endpoint).map_err(|e| {
                Error::config(
                    name,
                    format!("the endpoint is not a URL ({e}; not shown: it may hold credentials)"),
                )
            })?)
        };
        match (
            self.protocol,
            url.as_ref().map(reqwest::Url::scheme).unwrap_or_default(),
        ) {
            (Protocol::File, _) => {}
            (Protocol::Grpc, "http") | (Protocol::Http, "http" | "https") => {}
            (Protocol::Grpc, "https") => {
                return Err(Error::config(
                    name,
                    "gRPC over TLS is not supported yet: use protocol = \"http\" with an https endpoint, \
                     or a plaintext endpoint on a trusted network",
                ));
            }
            (_, other) => {
                return Err(Error::config(
                    name,
                    format!("endpoint scheme {other:?} is not http or https"),
                ));
            }
        }
        if self.batch_size == 0 || self.batch_size > 100_000 {
            return Err(Error::config(name, "batch_size must be 1 to 100000"));
        }
        for k in &self.kinds {
            let ok = k == "*" || !k.contains('*') || (k.ends_with(".*") && k.matches('*').count() == 1);
            if !ok {
                return Err(Error::config(
                    name,
                    format!("kinds: {k:?}: a kind, a prefix ending in \".*\", or \"*\""),
                ));
            }
        }
        check_header_names(name, &self.headers)
    }

    /// The headers with their values read (environment, files). Errors
    /// name the header and where its value should be, never a value.
    pub fn resolve_headers(&self) -> Result<Vec<Header>, Error> {
        resolve_headers(&self.name, &self.headers)
    }
}

/// An endpoint as status, errors and logs name it: scheme, host, port and
/// path; user info and query (where collectors' tokens go) left out.
pub fn shown_endpoint(endpoint: &str) -> String {
    match reqwest::Url::parse(endpoint) {
        Ok(u) => format!(
            "{}://{}{}{}",
            u.scheme(),
            u.host_str().unwrap_or("?"),
            u.port().map(|p| format!(":{p}")).unwrap_or_default(),
            if u.path() == "/" { "" } else { u.path() }
        ),
        Err(_) => "(invalid endpoint)".into(),
    }
}

/// `headers` with their values read (environment, files), for the sender
/// `owner` (a sink's name, `[metrics]`). Errors name the header and where
/// its value should be, never a value.
pub fn resolve_headers(owner: &str, headers: &BTreeMap<String, HeaderSource>) -> Result<Vec<Header>, Error> {
    let mut out = Vec::new();
    for (header, source) in headers {
        let value = match source {
            HeaderSource::Value(v) => v.clone(),
            HeaderSource::Env(var) => std::env::var(var).map_err(|_| {
                Error::config(
                    owner,
                    format!("header {header}: environment variable {var} is not set (or not UTF-8)"),
                )
            })?,
            HeaderSource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| {
                    Error::config(
                        owner,
                        format!("header {header}: cannot read {}: {}", path.display(), e.kind()),
                    )
                })?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
        };
        if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(Error::config(
                owner,
                format!("header {header}: the value holds control characters"),
            ));
        }
        out.push(Header {
            name: header.clone(),
            value,
        });
    }
    Ok(out)
}

/// Header names are letters, digits, `-` and `_` (HTTP and gRPC alike).
pub fn check_header_names(owner: &str, headers: &BTreeMap<String, HeaderSource>) -> Result<(), Error> {
    for header in headers.keys() {
        let ok = !header.is_empty()
            && header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(Error::config(
                owner,
                format!("header {header:?}: names are letters, digits, - and _"),
            ));
        }
    }
    Ok(())
}

/// Checks a whole `[[exporters]]` list: each sink, and names unique.
pub fn validate_all(sinks: &[SinkConfig]) -> Result<(), Error> {
    let mut seen = std::collections::BTreeSet::new();
    for s in sinks {
        s.validate()?;
        if !seen.insert(s.name.as_str()) {
            return Err(Error::config(&s.name, "two exporters have this name"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(toml_text: &str) -> SinkConfig {
        #[derive(Deserialize)]
        struct W {
            exporters: Vec<SinkConfig>,
        }
        let w: W = toml::from_str(toml_text).expect("parse");
        w.exporters.into_iter().next().expect("one sink")
    }

    #[test]
    fn kinds_match_names_and_prefixes() {
        let s = sink(
            "[[exporters]]\nname = \"a\"\nendpoint = \"http://127.0.0.1:4317\"\nkinds = [\"policy.decision\", \"execution.*\"]\n",
        );
        assert!(s.wants("policy.decision"));
        assert!(s.wants("execution.failed"));
        assert!(!s.wants("execution"));
        assert!(!s.wants("tool_call.requested"));
        let all = sink("[[exporters]]\nname = \"a\"\nendpoint = \"http://127.0.0.1:4317\"\n");
        assert!(all.wants("x.note"));
    }

    /// An endpoint that is not a URL is refused without being echoed: it
    /// may carry credentials (`http://user:TOKEN@host:99x`).
    #[test]
    fn a_bad_endpoint_is_not_echoed() {
        for protocol in ["grpc", "http"] {
            let s = sink(&format!(
                "[[exporters]]\nname = \"a\"\nendpoint = \"http://u:S3CRET@collector:99x\"\nprotocol = \"{protocol}\"\n"
            ));
            let err = s.validate().expect_err("not a URL").to_string();
            assert!(!err.contains("S3CRET"), "{err}");
            assert!(err.contains("endpoint"), "{err}");
        }
        let m: crate::metrics::MetricsConfig =
            toml::from_str("endpoint = \"http://u:S3CRET@collector:99x\"\n").expect("parse");
        let err = m.validate().expect_err("not a URL").to_string();
        assert!(!err.contains("S3CRET"), "{err}");
    }

    #[test]
    fn headers_by_reference_never_show_their_value() {
        // A variable name nothing sets.
        let s = sink(
            "[[exporters]]\nname = \"a\"\nendpoint = \"http://127.0.0.1:4318\"\nprotocol = \"http\"\n\
             headers = { authorization = { env = \"SEALGATE_TEST_NO_SUCH_VAR_7\" }, x-tenant = { value = \"acme\" } }\n",
        );
        s.validate().expect("valid");
        let err = s.resolve_headers().expect_err("missing env var").to_string();
        assert!(
            err.contains("SEALGATE_TEST_NO_SUCH_VAR_7") && err.contains("authorization"),
            "{err}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("token");
        std::fs::write(&file, "Bearer s3cret\n").expect("write");
        let s = sink(&format!(
            "[[exporters]]\nname = \"a\"\nendpoint = \"http://127.0.0.1:4318\"\nprotocol = \"http\"\n\
             headers = {{ authorization = {{ file = {:?} }} }}\n",
            file.display().to_string()
        ));
        let h = s.resolve_headers().expect("resolve");
        assert_eq!(h[0].value, "Bearer s3cret");
        assert!(!format!("{h:?}").contains("s3cret"));
    }

    #[test]
    fn bad_configs_are_refused_by_name() {
        for (body, want) in [
            ("name = \"A b\"\nendpoint = \"http://h:1\"", "name must be"),
            ("name = \"a\"\nendpoint = \"https://h:1\"", "TLS"),
            ("name = \"a\"\nendpoint = \"ftp://h:1\"\nprotocol = \"http\"", "scheme"),
            ("name = \"a\"\nendpoint = \"http://h:1\"\nbatch_size = 0", "batch_size"),
            ("name = \"a\"\nendpoint = \"http://h:1\"\nkinds = [\"exec*\"]", "kinds"),
            ("name = \"a\"\nprotocol = \"file\"", "needs path"),
            (
                "name = \"a\"\nprotocol = \"file\"\npath = \"l\"\nendpoint = \"http://h:1\"",
                "not an endpoint",
            ),
            (
                "name = \"a\"\nendpoint = \"http://h:1\"\npath = \"l\"",
                "path is for file sinks",
            ),
            (
                "name = \"a\"\nprotocol = \"file\"\npath = \"l\"\nroll_bytes = 10",
                "roll_bytes",
            ),
        ] {
            let err = sink(&format!("[[exporters]]\n{body}\n"))
                .validate()
                .expect_err(body)
                .to_string();
            assert!(err.contains(want), "{body}: {err}");
        }
    }
}
