//! The TOML config file. Every key is documented in `docs/CONFIG.md`;
//! unknown keys are rejected by name, in the file and in environment
//! overrides alike.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::cli::Global;

pub const DEFAULT_CONFIG: &str = "sealgate.toml";
pub const DEFAULT_DATA_DIR: &str = "sealgate-data";
/// Prefix of environment overrides: `SEALGATE_GATEWAY__LISTEN=...` sets
/// `gateway.listen`; `__` separates the levels of the key path.
const ENV_PREFIX: &str = "SEALGATE_";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the ledger lives. Default `./sealgate-data`.
    pub data_dir: Option<PathBuf>,
    /// Where signing keys live. Default `<data_dir>/keys`.
    pub key_dir: Option<PathBuf>,
    #[serde(default)]
    pub gateway: GatewayConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    /// Upstream MCP servers by name; the name is the URL path segment
    /// (`/mcp/{name}`) and the `--server` of `sealgate stdio`.
    #[serde(default)]
    pub servers: BTreeMap<String, ServerConfig>,
    #[serde(default)]
    pub governance: GovernanceConfig,
    #[serde(default)]
    pub ledger: LedgerConfig,
    /// Grants declared in the config: issued at start (by
    /// `sealgate:config`), and revoked at start once removed from here.
    #[serde(default)]
    pub grants: Vec<GrantConfig>,
    /// Sinks that export every event to a collector (`docs/EXPORT.md`).
    #[serde(default)]
    pub exporters: Vec<exporters::SinkConfig>,
    /// Where the gateway's OTLP metrics go (`docs/EXPORT.md`, Metrics);
    /// absent: none are exported.
    #[serde(default)]
    pub metrics: Option<exporters::MetricsConfig>,
    /// Targets of the governance gates (`sealgate report gates`).
    #[serde(default)]
    pub gates: GatesConfig,
    /// Limits of `sealgate query` and `report`.
    #[serde(default)]
    pub query: QueryConfig,
    /// The alert detections and their thresholds (`docs/ALERTS.md`).
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// Webhooks for approvals waiting and alerts (`docs/ALERTS.md`).
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// When the gateway issues signed checkpoints (`docs/FORMAT.md` §14).
    #[serde(default)]
    pub checkpoints: crate::checkpoints::CheckpointsConfig,
    /// Witnesses the checkpoints are pushed to (`docs/FORMAT.md` §15).
    #[serde(default)]
    pub witnesses: Vec<crate::checkpoints::WitnessConfig>,
}

/// Limits of a query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// A query running longer is stopped.
    pub timeout_sec: u64,
    /// Memory a query's operators (joins, sorts, aggregates) may hold, in MiB.
    pub memory_mb: u64,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            timeout_sec: 60,
            memory_mb: 1024,
        }
    }
}

impl QueryConfig {
    /// The limits, with `timeout_sec` overriding the configured time.
    pub fn limits(&self, timeout_sec: Option<u64>) -> query::Limits {
        query::Limits {
            timeout: std::time::Duration::from_secs(timeout_sec.unwrap_or(self.timeout_sec)),
            memory_bytes: usize::try_from(self.memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX),
        }
    }
}

/// The governance gates' targets, as `sealgate report gates` checks them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatesConfig {
    /// p95 of the gateway's time to decide a call, in ms, at most.
    pub decision_p95_ms: f64,
    /// Median wait of decided approvals, in seconds, at most.
    pub approval_median_wait_sec: f64,
    /// Quarantined results per executed call, at most.
    pub quarantine_ratio: f64,
}

impl Default for GatesConfig {
    fn default() -> Self {
        let t = query::reports::Targets::default();
        GatesConfig {
            decision_p95_ms: t.decision_p95_ms,
            approval_median_wait_sec: t.approval_median_wait_sec,
            quarantine_ratio: t.quarantine_ratio,
        }
    }
}

impl GatesConfig {
    pub fn targets(&self) -> query::reports::Targets {
        query::reports::Targets {
            decision_p95_ms: self.decision_p95_ms,
            approval_median_wait_sec: self.approval_median_wait_sec,
            quarantine_ratio: self.quarantine_ratio,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GovernanceConfig {
    /// A policy file loaded at start when it differs from the policy in
    /// force (a `policy.loaded` event by `sealgate:config`).
    pub policy_file: Option<PathBuf>,
    /// Snapshot the governance state every this many events.
    pub snapshot_every: u64,
    /// While a call waits for approval, send a progress notification this
    /// often (if the client asked for progress).
    pub approval_progress_sec: u64,
}

impl Default for GovernanceConfig {
    fn default() -> Self {
        GovernanceConfig {
            policy_file: None,
            snapshot_every: 10_000,
            approval_progress_sec: 5,
        }
    }
}

/// How the ledger's RocksDB store is tuned.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// MiB of new writes buffered in memory before RocksDB flushes them and
    /// starts a new WAL file.
    pub memtable_mb: u64,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            memtable_mb: (ledger::StoreOptions::default().memtable_bytes >> 20) as u64,
        }
    }
}

#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GrantConfig {
    /// A principal (glob: `*` is any authenticated caller), or
    pub principal: Option<String>,
    /// a team.
    pub team: Option<String>,
    /// Server name (glob).
    pub server: String,
    /// Tool name, prompt name or resource URI (glob). Default `*`.
    #[serde(default = "star")]
    pub tool: String,
    /// Only on servers with this environment label.
    pub env: Option<String>,
}

fn star() -> String {
    "*".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Address the HTTP gateway listens on.
    pub listen: SocketAddr,
    /// The gateway's external base URL, used in the OAuth protected-resource
    /// metadata and `WWW-Authenticate`. Default `http://{listen}`.
    pub public_url: Option<String>,
    /// Largest accepted HTTP request body; larger bodies get 413.
    pub max_body_bytes: usize,
    /// How long an upstream may take to answer one request before the call
    /// fails with a timeout.
    pub upstream_timeout_sec: u64,
    /// How long an upstream may take to start a session (spawn a stdio
    /// child or connect, and complete `initialize`). Apart from the request
    /// timeout: a server run through `npx` or a Python interpreter can take
    /// seconds to start on a loaded host while its tools answer in
    /// milliseconds.
    pub upstream_start_timeout_sec: u64,
    /// `Host` header values accepted (DNS-rebinding protection). Empty: any.
    pub allowed_hosts: Vec<String>,
    /// Arguments up to this size are stored whole in the ledger; larger ones
    /// as an excerpt plus the digest and size of the whole.
    pub max_argument_bytes: usize,
    /// Size of the result excerpt stored with an execution event.
    pub result_excerpt_bytes: usize,
    /// Principal of `sealgate stdio` callers (a local user).
    pub stdio_principal: String,
    /// Accept unauthenticated HTTP requests as this principal. For test
    /// rigs (e.g. the MCP conformance suite, which cannot send headers);
    /// leave unset in production.
    pub anonymous_principal: Option<String>,
    /// Open client sessions at most, in all.
    pub max_sessions: usize,
    /// Open client sessions at most per principal.
    pub max_sessions_per_principal: usize,
    /// stdio upstream processes running at most (one per session).
    pub max_upstream_processes: usize,
    /// Largest message an upstream may send.
    pub max_upstream_message_bytes: usize,
    /// A session nobody used for this long is closed.
    pub session_idle_sec: u64,
    /// HTTP connections open at most; see docs/GATEWAY.md for who makes
    /// room when a new one arrives.
    pub max_connections: usize,
    /// A request's headers must arrive within this; also how long an idle
    /// keep-alive connection stays open.
    pub header_read_timeout_sec: u64,
    /// A request's body must arrive within this.
    pub body_read_timeout_sec: u64,
    /// Refused authentications and unknown servers are recorded as one
    /// `access.refused` event per source, reason and server this often.
    pub access_log_interval_sec: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            max_body_bytes: 4 << 20,
            upstream_timeout_sec: 120,
            upstream_start_timeout_sec: 120,
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            max_argument_bytes: 64 << 10,
            result_excerpt_bytes: 4 << 10,
            stdio_principal: "local".into(),
            anonymous_principal: None,
            max_sessions: 1024,
            max_sessions_per_principal: 64,
            max_upstream_processes: 256,
            max_upstream_message_bytes: 32 << 20,
            session_idle_sec: 300,
            max_connections: 1024,
            header_read_timeout_sec: 10,
            body_read_timeout_sec: 30,
            access_log_interval_sec: 60,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Static bearer tokens: a TOML file of `[[token]]` entries holding only
    /// SHA-256 hashes (see `sealgate token create`). `sealgate serve`
    /// re-reads it when it changes and on SIGHUP.
    pub tokens_file: Option<PathBuf>,
    /// How often `sealgate serve` checks the tokens file for a change
    /// (inode, size, modification and change times), seconds; 0: only on
    /// SIGHUP. Default 2.
    pub tokens_poll_sec: u64,
    /// JWT issuers whose tokens are accepted.
    pub jwt: Vec<JwtIssuerConfig>,
    /// Authorization servers named in the protected-resource metadata
    /// (RFC 9728). Default: the JWT issuers.
    pub authorization_servers: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            tokens_file: None,
            tokens_poll_sec: 2,
            jwt: Vec::new(),
            authorization_servers: Vec::new(),
        }
    }
}

/// Principals starting with this are the gateway's own actors
/// (`sealgate:config`, `sealgate:gateway`, ...): no caller can be one.
pub const RESERVED_PRINCIPAL_PREFIX: &str = "sealgate:";

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct JwtIssuerConfig {
    /// Expected `iss`.
    pub issuer: String,
    /// Accepted `aud` values (at least one must match).
    pub audience: Vec<String>,
    /// JWKS as a local file, read at start.
    pub jwks_file: Option<PathBuf>,
    /// JWKS fetched from this URL: HTTPS, or plain HTTP to a loopback
    /// address.
    pub jwks_url: Option<String>,
    /// Find the JWKS by OpenID Connect Discovery: the document at
    /// `{issuer}/.well-known/openid-configuration` must name this issuer
    /// exactly and gives `jwks_uri`. Default `false`.
    #[serde(default)]
    pub discovery: bool,
    /// How often a fetched JWKS (`jwks_url`, `discovery`) is fetched again,
    /// seconds; the new set replaces the old one. Default 3600, at least 60.
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_sec: u64,
    /// Least time between two fetches caused by a token whose `kid` is not
    /// in the set, seconds. Default 30, at least 1.
    #[serde(default = "default_jwks_cooldown")]
    pub jwks_cooldown_sec: u64,
    /// PEM file of extra root certificates for the issuer's HTTPS (a
    /// private CA), trusted besides the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Claim holding the principal. Default `sub`.
    #[serde(default = "default_principal_claim")]
    pub principal_claim: String,
    /// The issuer's principals are this followed by the principal claim, so
    /// they cannot be another issuer's nor a static token's. Default: the
    /// issuer and `#` (see [`JwtIssuerConfig::namespace`]).
    pub principal_prefix: Option<String>,
    /// Claim holding the teams (a string or an array of strings). Default `groups`.
    #[serde(default = "default_teams_claim")]
    pub teams_claim: String,
    /// Claim holding admin API roles. Default `roles`.
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Whether the roles claim grants admin API roles (`admin`, `approver`,
    /// `auditor`). Default `false`: the claim is ignored.
    #[serde(default)]
    pub grant_roles: bool,
    /// Clock skew tolerated on `exp` and `nbf`, seconds. Default 30.
    #[serde(default = "default_leeway")]
    pub leeway_sec: u64,
}

impl JwtIssuerConfig {
    /// What the issuer's principal names start with: `principal_prefix`,
    /// else `ISSUER#`. An OIDC `sub` is unique only within its issuer, so
    /// the default is the whole issuer, not its host (Keycloak realms and
    /// Entra tenants share hosts); `#` ends it because an issuer identifier
    /// has no fragment (OpenID Connect Discovery, RFC 8414), so no default
    /// prefix is the start of another.
    pub fn namespace(&self) -> String {
        self.principal_prefix
            .clone()
            .unwrap_or_else(|| format!("{}#", self.issuer))
    }
}

impl AuthConfig {
    /// The authorization servers the protected-resource metadata names:
    /// `authorization_servers`, else the JWT issuers.
    pub fn authorization_servers(&self) -> Vec<String> {
        if self.authorization_servers.is_empty() {
            self.jwt.iter().map(|j| j.issuer.clone()).collect()
        } else {
            self.authorization_servers.clone()
        }
    }

    /// Each issuer needs keys and an audience, and its principals are a
    /// namespace of their own: no issuer's prefix may be empty, start
    /// another's (then one name could come from both), or overlap the
    /// gateway's own `sealgate:` actors. (Static-token principals are
    /// checked against these prefixes when the tokens file is read.)
    pub fn check(&self) -> Result<()> {
        for (i, jwt) in self.jwt.iter().enumerate() {
            let at = || format!("config: auth.jwt[{i}] (issuer {:?})", jwt.issuer);
            let sources =
                usize::from(jwt.jwks_file.is_some()) + usize::from(jwt.jwks_url.is_some()) + usize::from(jwt.discovery);
            if sources != 1 {
                bail!("{} needs exactly one of jwks_file, jwks_url and discovery = true", at());
            }
            if jwt.discovery {
                check_fetch_url(&jwt.issuer).with_context(|| format!("{}: discovery from the issuer", at()))?;
                let issuer = reqwest::Url::parse(&jwt.issuer).with_context(|| format!("{}: issuer", at()))?;
                // OpenID Connect Discovery 3: an issuer is a URL without query or fragment.
                if issuer.query().is_some() || issuer.fragment().is_some() {
                    bail!("{}: an issuer for discovery has no query or fragment", at());
                }
            }
            if let Some(url) = &jwt.jwks_url {
                check_fetch_url(url).with_context(|| format!("{}: jwks_url {url}", at()))?;
            }
            if jwt.jwks_file.is_some() && jwt.ca_file.is_some() {
                bail!(
                    "{}: ca_file is for fetched keys (jwks_url, discovery), not jwks_file",
                    at()
                );
            }
            if jwt.jwks_refresh_sec < MIN_JWKS_REFRESH_SEC {
                bail!(
                    "{}: jwks_refresh_sec {} is below {MIN_JWKS_REFRESH_SEC}",
                    at(),
                    jwt.jwks_refresh_sec
                );
            }
            if jwt.jwks_cooldown_sec == 0 {
                bail!(
                    "{}: jwks_cooldown_sec is 0; every token with an unknown kid would fetch the JWKS",
                    at()
                );
            }
            if jwt.audience.is_empty() {
                bail!("{} needs at least one audience", at());
            }
            let prefix = jwt.namespace();
            if prefix.is_empty() {
                bail!(
                    "{}: principal_prefix is empty; its principals would be indistinguishable from static-token principals and other issuers' (leave it unset for {:?})",
                    at(),
                    format!("{}#", jwt.issuer)
                );
            }
            if prefix.starts_with(RESERVED_PRINCIPAL_PREFIX) || RESERVED_PRINCIPAL_PREFIX.starts_with(&prefix) {
                bail!(
                    "{}: principal_prefix {prefix:?} overlaps {RESERVED_PRINCIPAL_PREFIX:?}, the gateway's own actors",
                    at()
                );
            }
            for (j, other) in self.jwt[..i].iter().enumerate() {
                let theirs = other.namespace();
                if prefix.starts_with(&theirs) || theirs.starts_with(&prefix) {
                    bail!(
                        "{}: principal_prefix {prefix:?} overlaps {theirs:?} of auth.jwt[{j}] (issuer {:?}), so one principal could come from both; give each issuer a prefix that does not start the other's",
                        at(),
                        other.issuer
                    );
                }
            }
        }
        Ok(())
    }
}

fn default_principal_claim() -> String {
    "sub".into()
}
fn default_teams_claim() -> String {
    "groups".into()
}
fn default_roles_claim() -> String {
    "roles".into()
}
fn default_leeway() -> u64 {
    30
}
fn default_jwks_refresh() -> u64 {
    3600
}
fn default_jwks_cooldown() -> u64 {
    30
}

/// The least `jwks_refresh_sec`: an issuer is not asked more often.
pub const MIN_JWKS_REFRESH_SEC: u64 = 60;

/// A URL the gateway fetches an issuer's metadata or keys from: HTTPS, or
/// plain HTTP to this machine. The host is the one the URL parser (and so
/// the fetch) connects to, not a prefix of the authority:
/// `http://localhost:80@example.com/` is example.com. No user info: it
/// would be a credential in the config and the logs.
pub fn check_fetch_url(url: &str) -> Result<()> {
    let parsed = reqwest::Url::parse(url).context("not a URL")?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        bail!("a URL with user info is not accepted");
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let host = parsed
                .host_str()
                .unwrap_or("")
                .trim_start_matches('[')
                .trim_end_matches(']');
            let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                bail!("plain http to host {host:?}, which is not a loopback address; use https");
            }
            Ok(())
        }
        other => bail!("scheme {other:?} is not https (or http to a loopback address)"),
    }
}

/// One upstream MCP server.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// `stdio` (a child process per session) or `http` (streamable HTTP).
    pub transport: TransportKind,
    /// stdio: the program to run.
    pub command: Option<String>,
    /// stdio: its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// stdio: the child's environment besides the inherited allowlist
    /// (`PATH`, `HOME`, locale, ...; see docs/CONFIG.md). A value is text,
    /// or read at start from `{ env = "NAME" }` (the gateway's environment)
    /// or `{ file = "PATH" }`, so credentials need not be in the config.
    #[serde(default)]
    pub environment: BTreeMap<String, Secret>,
    /// stdio: working directory of the child.
    pub cwd: Option<PathBuf>,
    /// stdio: `none` runs the child without network access (a new user
    /// and network namespace: only a loopback device of its own, down);
    /// `host` (the default) with the gateway's network.
    pub network: Option<Network>,
    /// http: the endpoint URL.
    pub url: Option<String>,
    /// http: extra headers sent upstream (e.g. its own credentials); values
    /// as for `environment`.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Custom (non-MCP) request methods relayed to this server, gated (a
    /// grant on the server) and recorded like calls. Others are refused.
    #[serde(default)]
    pub allow_methods: Vec<String>,
    /// Environment labels (`prod`, `staging`, ...) recorded on every event.
    #[serde(default)]
    pub env: Vec<String>,
    /// Per-server override of `gateway.upstream_timeout_sec`.
    pub timeout_sec: Option<u64>,
    /// Per-server override of `gateway.upstream_start_timeout_sec`.
    pub start_timeout_sec: Option<u64>,
    /// Who owns the server (recorded in the registry).
    pub owner: Option<String>,
    /// Risk tags (`pii`, `payments`, ...) policies can match on.
    #[serde(default)]
    pub risk: Vec<String>,
    /// Action labels of tools (`read`, `write`, `destructive`), taking
    /// precedence over the tools' own annotations.
    #[serde(default)]
    pub actions: BTreeMap<String, String>,
    /// Register the server at start (default). `false` declares a route
    /// only: calls are denied as shadow MCP until it is registered.
    #[serde(default = "yes")]
    pub register: bool,
    /// Approve the server at start (as `sealgate:config`), pinning the
    /// tools it lists then. Default: approval is an operator's step.
    #[serde(default)]
    pub approve: bool,
    /// Per-user upstream credentials: each session is started with its
    /// caller's own credential, read when the session starts; a caller
    /// with none is refused (`docs/GATEWAY.md`, Upstream credentials).
    pub credentials: Option<CredentialsConfig>,
}

/// `[servers.NAME.credentials]`: where each principal's own credential for
/// the server is kept, and how the upstream is given it.
#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CredentialsConfig {
    /// A directory with one file per principal, named by the principal's
    /// name encoded (`crate::gateway::credentials::file_name`).
    pub dir: Option<PathBuf>,
    /// A TOML file of `"principal" = "secret"` entries.
    pub file: Option<PathBuf>,
    /// http: the request header that carries it. Default `Authorization`.
    pub header: Option<String>,
    /// http: the word before it in the header (`SCHEME secret`); `""` for
    /// the secret alone. Default `Bearer`.
    pub scheme: Option<String>,
    /// stdio: the child's environment variable that holds it (required).
    pub env: Option<String>,
}

fn yes() -> bool {
    true
}

/// A value given in the config, or by reference to where it is kept. Its
/// `Debug` never shows a value written in the config.
#[derive(Deserialize, Clone, PartialEq, Eq)]
#[serde(untagged)]
pub enum Secret {
    Text(String),
    /// `{ env = "NAME" }`: the gateway's environment variable `NAME`.
    Env {
        env: String,
    },
    /// `{ file = "PATH" }`: the file's content, without a final newline.
    File {
        file: PathBuf,
    },
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Text(s) => write!(f, "Text(<{} bytes>)", s.len()),
            Secret::Env { env } => write!(f, "Env({env:?})"),
            Secret::File { file } => write!(f, "File({})", file.display()),
        }
    }
}

impl Secret {
    /// The value, read now.
    pub fn resolve(&self) -> Result<String> {
        match self {
            Secret::Text(s) => Ok(s.clone()),
            Secret::Env { env } => std::env::var(env).with_context(|| format!("environment variable {env} is not set")),
            Secret::File { file } => {
                let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
                Ok(text.strip_suffix('\n').unwrap_or(&text).to_string())
            }
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    Stdio,
    Http,
}

/// The network a stdio upstream's child runs with.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// The gateway's own.
    #[default]
    #[serde(rename = "host")]
    Host,
    /// None: a network namespace of its own.
    #[serde(rename = "none")]
    Isolated,
}

/// Paths after flags, environment, config file and defaults are applied
/// (in that order of precedence).
#[derive(Debug, Clone)]
pub struct Paths {
    pub data_dir: PathBuf,
    pub key_dir: PathBuf,
    /// How the ledger's store is opened for writing.
    pub store: ledger::StoreOptions,
}

impl Paths {
    pub fn ledger_dir(&self) -> PathBuf {
        self.data_dir.join("ledger")
    }

    pub fn key_dir(&self) -> ledger::KeyDir {
        ledger::KeyDir::new(&self.key_dir)
    }
}

/// Reads the config file (if any), applies `SEALGATE_SECTION__KEY`
/// environment overrides and checks every key.
pub fn load(global: &Global) -> Result<Config> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    load_with_env(global, &env)
}

fn load_with_env(global: &Global, env: &[(String, String)]) -> Result<Config> {
    let (mut table, origin) = match &global.config {
        Some(path) => (read_table(path)?, path.display().to_string()),
        None if Path::new(DEFAULT_CONFIG).exists() => (read_table(Path::new(DEFAULT_CONFIG))?, DEFAULT_CONFIG.into()),
        None => (toml::Table::new(), "built-in defaults".into()),
    };
    let overridden = apply_env_overrides(&mut table, env)?;
    // Errors in the file itself were reported with line and column by
    // `read_table`; what fails here comes from an override.
    let config: Config = toml::Value::Table(table)
        .try_into()
        .map_err(|e| anyhow::anyhow!("config {origin} with overrides {}: {e}", overridden.join(", ")))?;
    config.check()?;
    Ok(config)
}

fn read_table(path: &Path) -> Result<toml::Table> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
    // Parse straight into `Config` first so errors carry line and column.
    toml::from_str::<Config>(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?;
    text.parse::<toml::Table>()
        .map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))
}

/// `SEALGATE_GATEWAY__LISTEN=127.0.0.1:9000` sets `gateway.listen`. Values
/// are read as TOML (numbers, booleans, arrays) and otherwise as strings.
/// Only variables with a `__` are overrides; `SEALGATE_DATA_DIR` and the
/// like are flags' environment names.
fn apply_env_overrides(table: &mut toml::Table, env: &[(String, String)]) -> Result<Vec<String>> {
    let mut applied = Vec::new();
    for (name, value) in env {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if !path.contains("__") {
            continue;
        }
        let keys: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        if keys.iter().any(String::is_empty) {
            bail!("environment override {name}: empty key segment");
        }
        let parsed = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.clone()));
        let mut node = &mut *table;
        for key in &keys[..keys.len() - 1] {
            let entry = node
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            node = match entry {
                toml::Value::Table(t) => t,
                _ => bail!("environment override {name}: `{key}` is not a table"),
            };
        }
        if let Some(last) = keys.last() {
            node.insert(last.clone(), parsed);
        }
        applied.push(name.clone());
    }
    applied.sort();
    Ok(applied)
}

impl Config {
    fn check(&self) -> Result<()> {
        if self.query.timeout_sec == 0 || self.query.memory_mb == 0 {
            bail!("config: query.timeout_sec and query.memory_mb must be at least 1");
        }
        let g = &self.gates;
        for (key, v) in [
            ("decision_p95_ms", g.decision_p95_ms),
            ("approval_median_wait_sec", g.approval_median_wait_sec),
            ("quarantine_ratio", g.quarantine_ratio),
        ] {
            if !v.is_finite() || v < 0.0 {
                bail!("config: gates.{key} = {v}: must be a finite number, 0 or more");
            }
        }
        self.alerts
            .check(&self.gates)
            .map_err(|e| anyhow::anyhow!("config: {e}"))?;
        if self.checkpoints.every_events == 0 || self.checkpoints.every_secs == 0 {
            bail!("config: checkpoints.every_events and checkpoints.every_secs must be at least 1");
        }
        crate::checkpoints::targets(&self.witnesses).map_err(|e| anyhow::anyhow!("config: {e}"))?;
        if let Some(metrics) = self.metrics.as_ref().filter(|m| m.enabled) {
            metrics.validate().map_err(|e| anyhow::anyhow!("config: {e}"))?;
        }
        let mut names = std::collections::BTreeSet::new();
        for hook in &self.webhooks {
            hook.check().map_err(|e| anyhow::anyhow!("config: {e}"))?;
            if !names.insert(hook.name.as_str()) {
                bail!("config: two webhooks are named {:?}", hook.name);
            }
        }
        for (name, server) in &self.servers {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                bail!("config: server name {name:?} must be non-empty ASCII letters, digits, '-', '_' or '.'");
            }
            let stdio_keys = server.command.is_some()
                || !server.args.is_empty()
                || !server.environment.is_empty()
                || server.cwd.is_some()
                || server.network.is_some();
            let http_keys = server.url.is_some() || !server.headers.is_empty();
            match server.transport {
                TransportKind::Stdio => {
                    if server.command.is_none() {
                        bail!("config: servers.{name} has transport \"stdio\" but no command");
                    }
                    if http_keys {
                        bail!("config: servers.{name} has transport \"stdio\"; url and headers are for \"http\"");
                    }
                }
                TransportKind::Http => {
                    let Some(url) = &server.url else {
                        bail!("config: servers.{name} has transport \"http\" but no url");
                    };
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        bail!("config: servers.{name}.url {url:?} is not an http(s) URL");
                    }
                    if stdio_keys {
                        bail!(
                            "config: servers.{name} has transport \"http\"; command, args, environment, cwd and network are for \"stdio\""
                        );
                    }
                }
            }
            if let Some(credentials) = &server.credentials {
                credentials
                    .check(name, server)
                    .map_err(|e| anyhow::anyhow!("config: {e}"))?;
            }
        }
        self.auth.check()?;
        for (i, g) in self.grants.iter().enumerate() {
            if g.principal.is_some() == g.team.is_some() {
                bail!("config: grants[{i}] needs exactly one of principal and team");
            }
        }
        for (name, server) in &self.servers {
            if server.approve && !server.register {
                bail!("config: servers.{name} has approve = true but register = false");
            }
            for (key, value) in [
                ("timeout_sec", server.timeout_sec),
                ("start_timeout_sec", server.start_timeout_sec),
            ] {
                if value == Some(0) {
                    bail!("config: servers.{name}.{key} must be at least 1 second");
                }
            }
        }
        let g = &self.gateway;
        for (key, value) in [
            ("upstream_timeout_sec", g.upstream_timeout_sec),
            ("upstream_start_timeout_sec", g.upstream_start_timeout_sec),
            ("session_idle_sec", g.session_idle_sec),
            ("header_read_timeout_sec", g.header_read_timeout_sec),
            ("body_read_timeout_sec", g.body_read_timeout_sec),
            ("access_log_interval_sec", g.access_log_interval_sec),
        ] {
            if value == 0 {
                bail!("config: gateway.{key} must be at least 1 second");
            }
        }
        for (key, value) in [
            ("max_sessions", g.max_sessions),
            ("max_sessions_per_principal", g.max_sessions_per_principal),
            ("max_upstream_processes", g.max_upstream_processes),
            ("max_upstream_message_bytes", g.max_upstream_message_bytes),
            ("max_connections", g.max_connections),
        ] {
            if value == 0 {
                bail!("config: gateway.{key} must be positive");
            }
        }
        for (name, server) in &self.servers {
            for method in &server.allow_methods {
                if crate::gateway::mcp::is_mcp_method(method) {
                    bail!(
                        "config: servers.{name}.allow_methods: {method:?} is an MCP method; only custom methods can be allowed"
                    );
                }
            }
        }
        if self.gateway.max_body_bytes == 0 {
            bail!("config: gateway.max_body_bytes must be positive");
        }
        if !(1..=65_536).contains(&self.ledger.memtable_mb) {
            bail!(
                "config: ledger.memtable_mb must be between 1 and 65536, not {}",
                self.ledger.memtable_mb
            );
        }
        Ok(())
    }
}

pub fn paths(global: &Global, config: &Config) -> Paths {
    let data_dir = global
        .data_dir
        .clone()
        .or_else(|| config.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let key_dir = global
        .key_dir
        .clone()
        .or_else(|| config.key_dir.clone())
        .unwrap_or_else(|| ledger::Ledger::default_key_dir(&data_dir));
    let store = ledger::StoreOptions {
        memtable_bytes: usize::try_from(config.ledger.memtable_mb)
            .unwrap_or(usize::MAX >> 20)
            .saturating_mul(1 << 20),
    };
    Paths {
        data_dir,
        key_dir,
        store,
    }
}

/// What a child inherits from the gateway's environment (besides its
/// server's `environment`): where programs are, whose home, the locale,
/// the time zone, the temp dir.
pub const INHERITED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TZ",
    "TMPDIR",
];

/// Header names the HTTP transport sets itself.
const RESERVED_HEADERS: [&str; 9] = [
    "host",
    "content-length",
    "content-type",
    "accept",
    "transfer-encoding",
    "connection",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
];

impl CredentialsConfig {
    /// Checks a server's `credentials` table against the rest of its config
    /// (no file is read here).
    pub fn check(&self, server: &str, config: &ServerConfig) -> Result<(), String> {
        let c = self;
        let at = |detail: String| format!("servers.{server}.credentials: {detail}");
        if c.dir.is_some() == c.file.is_some() {
            return Err(at("needs exactly one of dir and file".into()));
        }
        match config.transport {
            TransportKind::Stdio => {
                if c.header.is_some() || c.scheme.is_some() {
                    return Err(at(
                        "header and scheme are for http upstreams; a stdio upstream takes env".into(),
                    ));
                }
                let Some(env) = &c.env else {
                    return Err(at(
                        "a stdio upstream needs env, the variable that holds the credential".into()
                    ));
                };
                if env.is_empty()
                    || env.starts_with(|ch: char| ch.is_ascii_digit())
                    || !env.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
                {
                    return Err(at(format!(
                        "env {env:?} is not a variable name (ASCII letters, digits and '_', not first a digit)"
                    )));
                }
                if INHERITED_ENV.contains(&env.as_str()) {
                    return Err(at(format!("env {env:?} would replace the inherited {env}")));
                }
                if config.environment.contains_key(env) {
                    return Err(at(format!(
                        "env {env:?} is also set in servers.{server}.environment; the credential would be overridden or override it"
                    )));
                }
            }
            TransportKind::Http => {
                if c.env.is_some() {
                    return Err(at(
                        "env is for stdio upstreams; an http upstream takes header and scheme".into(),
                    ));
                }
                let header = c.header.as_deref().unwrap_or("Authorization");
                let name = reqwest::header::HeaderName::try_from(header)
                    .map_err(|_| at(format!("header {header:?} is not a header name")))?;
                if RESERVED_HEADERS.contains(&name.as_str()) {
                    return Err(at(format!("header {header:?} is set by the transport itself")));
                }
                if let Some(other) = config.headers.keys().find(|k| k.eq_ignore_ascii_case(header)) {
                    return Err(at(format!(
                        "header {header:?} is also set in servers.{server}.headers.{other}; a static value must not stand in for the caller's own"
                    )));
                }
                let scheme = c.scheme.as_deref().unwrap_or("Bearer");
                if !scheme.bytes().all(is_token_char) {
                    return Err(at(format!("scheme {scheme:?} is not one word (an HTTP token)")));
                }
            }
        }
        Ok(())
    }
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `[alerts]` (`docs/CONFIG.md`).
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Run the detector at all.
    pub enabled: bool,
    /// Detections not to run, by name (`tool_drift`, ...).
    pub disabled: Vec<events::Detection>,
    /// How often the detector looks for new events, in ms.
    pub poll_ms: u64,
    pub unknown_server_threshold: u64,
    pub unknown_server_window_sec: u64,
    pub auth_burst_threshold: u64,
    pub auth_burst_window_sec: u64,
    /// Default: `gates.quarantine_ratio`.
    pub quarantine_ratio: Option<f64>,
    pub quarantine_window_sec: u64,
    pub quarantine_min_calls: u64,
    /// Default: `gates.approval_median_wait_sec`.
    pub approval_wait_sec: Option<u64>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            disabled: Vec::new(),
            poll_ms: 200,
            unknown_server_threshold: 1,
            unknown_server_window_sec: 300,
            auth_burst_threshold: 20,
            auth_burst_window_sec: 60,
            quarantine_ratio: None,
            quarantine_window_sec: 3600,
            quarantine_min_calls: 20,
            approval_wait_sec: None,
        }
    }
}

impl AlertsConfig {
    /// `quarantine_ratio`, or the gate's.
    pub fn quarantine_ratio_or(&self, gates: &GatesConfig) -> f64 {
        self.quarantine_ratio.unwrap_or(gates.quarantine_ratio)
    }

    /// `approval_wait_sec`, or the gate's median held to whole seconds,
    /// at least 1 (an approval alone is held to it).
    pub fn approval_wait_sec_or(&self, gates: &GatesConfig) -> u64 {
        match self.approval_wait_sec {
            Some(w) => w,
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "the gates are checked finite, >= 0"
            )]
            None => (gates.approval_median_wait_sec.ceil() as u64).max(1),
        }
    }

    /// Refuses thresholds that cannot work, naming the key.
    pub fn check(&self, gates: &GatesConfig) -> Result<(), String> {
        let ratio = self.quarantine_ratio_or(gates);
        if !ratio.is_finite() || ratio < 0.0 {
            return Err(format!(
                "alerts.quarantine_ratio = {ratio}: must be a finite number, 0 or more"
            ));
        }
        for (key, v) in [
            ("poll_ms", self.poll_ms),
            ("unknown_server_window_sec", self.unknown_server_window_sec),
            ("auth_burst_window_sec", self.auth_burst_window_sec),
            ("quarantine_window_sec", self.quarantine_window_sec),
            ("unknown_server_threshold", self.unknown_server_threshold),
            ("auth_burst_threshold", self.auth_burst_threshold),
        ] {
            if v == 0 {
                return Err(format!("alerts.{key} must be at least 1"));
            }
        }
        if self.approval_wait_sec_or(gates) == 0 {
            return Err("alerts.approval_wait_sec must be at least 1".into());
        }
        Ok(())
    }
}

/// The body a webhook receives.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `{"topic", "text", "event", "approval" | "alert"}`.
    Generic,
    /// `{"text", "blocks"}`, what a Slack incoming webhook takes.
    Slack,
}

/// What a webhook is told about.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Topic {
    Approvals,
    Alerts,
}

/// One `[[webhooks]]` table (`docs/CONFIG.md`).
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Names the webhook in outcomes and logs.
    pub name: String,
    /// Text, or by reference like a header (a Slack webhook's URL is its
    /// secret).
    pub url: Secret,
    #[serde(default = "generic")]
    pub format: Format,
    #[serde(default = "both")]
    pub events: Vec<Topic>,
    /// Extra headers (an `Authorization`), values as text or by reference
    /// (`{ env = "NAME" }`, `{ file = "PATH" }`), read at start.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// The admin API as approvers reach it, for the link and the commands
    /// in approval notifications. Default: `http://` and `gateway.listen`.
    pub admin_url: Option<String>,
    #[serde(default = "six")]
    pub max_attempts: u64,
    /// The first retry's wait, doubled at each attempt (at most 60 s).
    #[serde(default = "thousand")]
    pub backoff_ms: u64,
    #[serde(default = "ten")]
    pub timeout_sec: u64,
    /// Events older than this are not notified (after a long outage).
    #[serde(default = "hour")]
    pub max_age_sec: u64,
}

fn generic() -> Format {
    Format::Generic
}
fn both() -> Vec<Topic> {
    vec![Topic::Approvals, Topic::Alerts]
}
fn six() -> u64 {
    6
}
fn thousand() -> u64 {
    1000
}
fn ten() -> u64 {
    10
}
fn hour() -> u64 {
    3600
}

impl WebhookConfig {
    pub fn check(&self) -> Result<(), String> {
        let at = format!("webhooks {:?}", self.name);
        if self.name.is_empty() {
            return Err("webhooks: name must not be empty".into());
        }
        if let Secret::Text(url) = &self.url {
            check_url(&at, url)?;
        }
        // A backoff of 0 would retry a failing receiver in a tight loop.
        for (key, v) in [
            ("max_attempts", self.max_attempts),
            ("backoff_ms", self.backoff_ms),
            ("timeout_sec", self.timeout_sec),
            ("max_age_sec", self.max_age_sec),
        ] {
            if v == 0 {
                return Err(format!("{at}: {key} must be at least 1"));
            }
        }
        if self.events.is_empty() {
            return Err(format!("{at}: events must name approvals, alerts or both"));
        }
        Ok(())
    }
}

/// A webhook URL written in the config or read by reference: http(s);
/// errors do not quote it (it may be secret).
pub fn check_url(at: &str, url: &str) -> Result<(), String> {
    // The URL itself may be secret: errors do not quote it.
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{at}: url: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{at}: url must be http or https"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global(config: Option<PathBuf>) -> Global {
        Global {
            config,
            data_dir: None,
            key_dir: None,
        }
    }

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sealgate.toml");
        std::fs::write(&path, text).expect("write config");
        (dir, path)
    }

    #[test]
    fn the_ledger_memtable_comes_from_the_config_and_is_checked() {
        let config = load_with_env(&global(None), &[]).expect("config");
        assert_eq!(paths(&global(None), &config).store, ledger::StoreOptions::default());
        let env = vec![("SEALGATE_LEDGER__MEMTABLE_MB".to_string(), "8".to_string())];
        let config = load_with_env(&global(None), &env).expect("config");
        assert_eq!(paths(&global(None), &config).store.memtable_bytes, 8 << 20);
        let (_d, path) = write("[ledger]\nmemtable_mb = 0\n");
        let msg = format!("{:#}", load_with_env(&global(Some(path)), &[]).expect_err("zero"));
        assert!(msg.contains("ledger.memtable_mb"), "{msg}");
    }

    /// A secret written in the config never shows in a debug print (of the
    /// config, in a log line or a panic); a webhook retried without a wait
    /// is refused.
    #[test]
    fn secrets_are_not_debug_printed_and_webhooks_wait_between_retries() {
        let (_d, path) = write(
            "[[webhooks]]\nname = \"ops\"\nurl = \"https://hooks.example.com/T0/B0/xoxb-s3cret\"\n\
             headers = { authorization = \"Bearer hunter2\" }\n",
        );
        let config = load_with_env(&global(Some(path)), &[]).expect("config");
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret") && !shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("Text(<14 bytes>)"), "{shown}");
        let (_d, path) = write("[[webhooks]]\nname = \"ops\"\nurl = \"https://hooks.example.com/x\"\nbackoff_ms = 0\n");
        let msg = format!("{:#}", load_with_env(&global(Some(path)), &[]).expect_err("no wait"));
        assert!(msg.contains("backoff_ms must be at least 1"), "{msg}");
    }

    /// `[metrics]` is off unless configured, can be set from the
    /// environment, and is checked when the config is read.
    #[test]
    fn metrics_are_off_by_default_and_checked() {
        let config = load_with_env(&global(None), &[]).expect("config");
        assert!(config.metrics.is_none());
        let env = |endpoint: &str| {
            vec![
                ("SEALGATE_METRICS__ENDPOINT".to_string(), endpoint.to_string()),
                ("SEALGATE_METRICS__INTERVAL_MS".to_string(), "500".to_string()),
            ]
        };
        let config = load_with_env(&global(None), &env("http://127.0.0.1:4317")).expect("config");
        let metrics = config.metrics.expect("[metrics] from the environment");
        assert_eq!(
            (metrics.interval_ms, metrics.protocol),
            (500, exporters::Protocol::Grpc)
        );
        let err = format!(
            "{:#}",
            load_with_env(&global(None), &env("ftp://127.0.0.1:4317")).expect_err("a bad endpoint")
        );
        assert!(err.contains("[metrics]") && err.contains("scheme"), "{err}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = toml::from_str::<Config>("data_dir = \"x\"\ndata_dri = \"y\"\n").expect_err("unknown key");
        let msg = err.to_string();
        assert!(msg.contains("data_dri"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn unknown_server_keys_are_named_with_their_line() {
        let (_d, path) = write("[servers.a]\ntransport = \"stdio\"\ncommand = \"x\"\nargz = []\n");
        let msg = format!(
            "{:#}",
            load_with_env(&global(Some(path)), &[]).expect_err("unknown key")
        );
        assert!(msg.contains("argz") && msg.contains("line 4"), "{msg}");
    }

    #[test]
    fn servers_parse_both_transports() {
        let (_d, path) = write(
            "[servers.local]\ntransport = \"stdio\"\ncommand = \"node\"\nargs = [\"x.js\", \"stdio\"]\nenv = [\"dev\"]\n\
             [servers.remote]\ntransport = \"http\"\nurl = \"http://127.0.0.1:3001/mcp\"\ntimeout_sec = 5\n",
        );
        let config = load_with_env(&global(Some(path)), &[]).expect("config");
        assert_eq!(config.servers["local"].transport, TransportKind::Stdio);
        assert_eq!(config.servers["local"].args.len(), 2);
        assert_eq!(config.servers["local"].env, vec!["dev".to_string()]);
        assert_eq!(config.servers["remote"].timeout_sec, Some(5));
    }

    #[test]
    fn zero_timeouts_are_refused_naming_the_key() {
        for (toml, key) in [
            ("[gateway]\nupstream_timeout_sec = 0\n", "gateway.upstream_timeout_sec"),
            (
                "[gateway]\nupstream_start_timeout_sec = 0\n",
                "gateway.upstream_start_timeout_sec",
            ),
            (
                "[servers.a]\ntransport = \"stdio\"\ncommand = \"x\"\ntimeout_sec = 0\n",
                "servers.a.timeout_sec",
            ),
            (
                "[servers.a]\ntransport = \"stdio\"\ncommand = \"x\"\nstart_timeout_sec = 0\n",
                "servers.a.start_timeout_sec",
            ),
        ] {
            let (_d, path) = write(toml);
            let msg = format!("{:#}", load_with_env(&global(Some(path)), &[]).expect_err(key));
            assert!(msg.contains(key) && msg.contains("at least 1"), "{key}: {msg}");
        }
        let (_d, path) = write("[servers.a]\ntransport = \"stdio\"\ncommand = \"x\"\nstart_timeout_sec = 90\n");
        let config = load_with_env(&global(Some(path)), &[]).expect("config");
        assert_eq!(config.servers["a"].start_timeout_sec, Some(90));
        assert_eq!(config.gateway.upstream_start_timeout_sec, 120);
    }

    #[test]
    fn environment_overrides_apply_and_unknown_ones_are_named() {
        let env = vec![
            ("SEALGATE_GATEWAY__LISTEN".to_string(), "127.0.0.1:9999".to_string()),
            ("SEALGATE_GATEWAY__UPSTREAM_TIMEOUT_SEC".to_string(), "7".to_string()),
            ("SEALGATE_DATA_DIR".to_string(), "ignored-here".to_string()),
        ];
        let config = load_with_env(&global(None), &env).expect("config");
        assert_eq!(config.gateway.listen.port(), 9999);
        assert_eq!(config.gateway.upstream_timeout_sec, 7);

        let env = vec![("SEALGATE_GATEWAY__LISTN".to_string(), "x".to_string())];
        let msg = format!("{:#}", load_with_env(&global(None), &env).expect_err("unknown"));
        assert!(
            msg.contains("listn") && msg.contains("SEALGATE_GATEWAY__LISTN"),
            "{msg}"
        );
    }

    #[test]
    fn bad_server_names_and_urls_are_rejected() {
        let (_d, path) = write("[servers.\"a/b\"]\ntransport = \"http\"\nurl = \"http://x\"\n");
        let msg = format!("{:#}", load_with_env(&global(Some(path)), &[]).expect_err("bad name"));
        assert!(msg.contains("a/b"), "{msg}");
        let (_d, path) = write("[servers.a]\ntransport = \"http\"\nurl = \"ftp://x\"\n");
        let msg = format!("{:#}", load_with_env(&global(Some(path)), &[]).expect_err("bad url"));
        assert!(msg.contains("servers.a.url"), "{msg}");
        let (_d, path) = write("[servers.a]\ntransport = \"stdio\"\nurl = \"http://x\"\n");
        let msg = format!("{:#}", load_with_env(&global(Some(path)), &[]).expect_err("no command"));
        assert!(msg.contains("servers.a") && msg.contains("no command"), "{msg}");
    }

    #[test]
    fn network_is_host_or_none_and_only_for_stdio() {
        let (_d, path) = write("[servers.a]\ntransport = \"stdio\"\ncommand = \"x\"\nnetwork = \"none\"\n");
        let config = load_with_env(&global(Some(path)), &[]).expect("network none");
        assert_eq!(config.servers["a"].network, Some(Network::Isolated));
        let (_d, path) = write("[servers.a]\ntransport = \"stdio\"\ncommand = \"x\"\nnetwork = \"off\"\n");
        let msg = format!(
            "{:#}",
            load_with_env(&global(Some(path)), &[]).expect_err("unknown network")
        );
        assert!(msg.contains("off") && msg.contains("none"), "{msg}");
        let (_d, path) = write("[servers.a]\ntransport = \"http\"\nurl = \"http://x\"\nnetwork = \"none\"\n");
        let msg = format!(
            "{:#}",
            load_with_env(&global(Some(path)), &[]).expect_err("network on http")
        );
        assert!(
            msg.contains("servers.a") && msg.contains("network are for \"stdio\""),
            "{msg}"
        );
    }

    /// `[[auth.jwt]]` tables, one per (issuer, extra lines).
    fn issuers(list: &[(&str, &str)]) -> String {
        list.iter()
            .map(|(issuer, extra)| {
                format!("[[auth.jwt]]\nissuer = {issuer:?}\naudience = [\"a\"]\njwks_file = \"k.json\"\n{extra}\n")
            })
            .collect()
    }

    #[test]
    fn issuer_namespaces_default_to_the_issuer_and_must_not_overlap() {
        // Defaults: a namespace per issuer, even on one host; roles off; polling every 2 s.
        let (_d, path) = write(&issuers(&[
            ("https://login.example.com/realms/a", ""),
            ("https://login.example.com/realms/ab", ""),
            ("https://login.example.com/realms/a/", "principal_prefix = \"a-slash:\""),
        ]));
        let config = load_with_env(&global(Some(path)), &[]).expect("config");
        let namespaces: Vec<String> = config.auth.jwt.iter().map(JwtIssuerConfig::namespace).collect();
        assert_eq!(
            namespaces,
            [
                "https://login.example.com/realms/a#",
                "https://login.example.com/realms/ab#",
                "a-slash:"
            ]
        );
        assert!(config.auth.jwt.iter().all(|j| !j.grant_roles));
        assert_eq!(config.auth.tokens_poll_sec, 2);
        for (list, want) in [
            (
                vec![
                    ("https://a.test", "principal_prefix = \"corp:\""),
                    ("https://b.test", "principal_prefix = \"corp:\""),
                ],
                "auth.jwt[1] (issuer \"https://b.test\"): principal_prefix \"corp:\" overlaps \"corp:\" of auth.jwt[0] (issuer \"https://a.test\")",
            ),
            (
                vec![
                    ("https://a.test", "principal_prefix = \"corp:eu:\""),
                    ("https://b.test", "principal_prefix = \"corp:\""),
                ],
                "overlaps \"corp:eu:\" of auth.jwt[0]",
            ),
            (
                vec![
                    ("https://a.test", ""),
                    ("https://b.test", "principal_prefix = \"https://a.test#x\""),
                ],
                "overlaps \"https://a.test#\"",
            ),
            (
                vec![("https://a.test", "principal_prefix = \"\"")],
                "principal_prefix is empty",
            ),
            (
                vec![("https://a.test", "principal_prefix = \"sealgate:idp:\"")],
                "the gateway's own actors",
            ),
            (
                vec![("https://a.test", "principal_prefix = \"seal\"")],
                "the gateway's own actors",
            ),
        ] {
            let (_d, path) = write(&issuers(&list));
            let msg = format!("{:#}", load_with_env(&global(Some(path)), &[]).expect_err(want));
            assert!(msg.contains(want), "{want}: {msg}");
        }
    }

    #[test]
    fn fetch_urls_are_https_or_plain_http_to_loopback() {
        for url in [
            "https://login.example.com/realms/a",
            "https://10.0.0.1/jwks",
            "http://127.0.0.1:8080/jwks.json",
            "http://localhost/jwks",
            "http://[::1]:9/jwks",
        ] {
            assert!(check_fetch_url(url).is_ok(), "{url}");
        }
        for (url, why) in [
            ("http://10.0.0.1/jwks", "not a loopback address"),
            ("http://example.com/jwks", "not a loopback address"),
            ("http://localhost:80@example.com/jwks", "user info"),
            ("http://127.0.0.1@10.0.0.1/jwks", "user info"),
            ("http://127.0.0.1.nip.io/jwks", "not a loopback address"),
            ("ftp://127.0.0.1/jwks", "scheme \"ftp\""),
            ("https://user:secret@idp.example.com/", "user info"),
            ("idp.example.com", "not a URL"),
        ] {
            let msg = format!("{:#}", check_fetch_url(url).expect_err(url));
            assert!(msg.contains(why), "{url}: {msg}");
        }
    }

    /// An issuer's keys come from exactly one place; discovery needs an
    /// issuer it may fetch from; refresh and cooldown have floors; a CA
    /// file is for fetched keys.
    #[test]
    fn an_issuers_key_source_is_checked_with_the_config() {
        let jwt = |lines: &str| {
            format!("[[auth.jwt]]\nissuer = \"https://idp.example.com/realms/a\"\naudience = [\"a\"]\n{lines}\n")
        };
        let (_d, path) = write(&jwt("discovery = true\nca_file = \"ca.pem\""));
        let config = load_with_env(&global(Some(path)), &[]).expect("config");
        let issuer = &config.auth.jwt[0];
        assert_eq!(
            (issuer.discovery, issuer.jwks_refresh_sec, issuer.jwks_cooldown_sec),
            (true, 3600, 30)
        );
        let (_d, path) = write(&jwt(
            "jwks_url = \"https://idp.example.com/keys\"\njwks_refresh_sec = 60",
        ));
        load_with_env(&global(Some(path)), &[]).expect("https anywhere, a refresh of 60 s");
        for (lines, why) in [
            ("", "needs exactly one of jwks_file, jwks_url and discovery = true"),
            ("discovery = true\njwks_file = \"k.json\"", "needs exactly one of"),
            (
                "discovery = true\njwks_url = \"https://idp.example.com/keys\"",
                "needs exactly one of",
            ),
            (
                "jwks_url = \"http://idp.example.com/keys\"",
                "jwks_url http://idp.example.com/keys: plain http to host \"idp.example.com\"",
            ),
            (
                "jwks_file = \"k.json\"\nca_file = \"ca.pem\"",
                "ca_file is for fetched keys",
            ),
            (
                "discovery = true\njwks_refresh_sec = 59",
                "jwks_refresh_sec 59 is below 60",
            ),
            ("discovery = true\njwks_cooldown_sec = 0", "jwks_cooldown_sec is 0"),
            ("discovery = true\ndiscover = true", "unknown field `discover`"),
        ] {
            let (_d, path) = write(&jwt(lines));
            let msg = format!("{:#}", load_with_env(&global(Some(path)), &[]).expect_err(why));
            assert!(msg.contains(why), "{lines:?}: {msg}");
        }
        for (issuer, why) in [
            (
                "http://idp.example.com/realms/a",
                "discovery from the issuer: plain http to host \"idp.example.com\"",
            ),
            ("https://idp.example.com/a?tenant=x", "no query or fragment"),
            ("idp.example.com", "discovery from the issuer: not a URL"),
        ] {
            let (_d, path) = write(&format!(
                "[[auth.jwt]]\nissuer = {issuer:?}\naudience = [\"a\"]\ndiscovery = true\n"
            ));
            let msg = format!("{:#}", load_with_env(&global(Some(path)), &[]).expect_err(why));
            assert!(msg.contains(why) && msg.contains(issuer), "{issuer}: {msg}");
        }
        let (_d, path) =
            write("[[auth.jwt]]\nissuer = \"http://127.0.0.1:8443\"\naudience = [\"a\"]\ndiscovery = true\n");
        load_with_env(&global(Some(path)), &[]).expect("discovery from a loopback issuer over plain http");
    }
}
