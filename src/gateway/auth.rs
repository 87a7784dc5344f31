//! Who is calling: bearer tokens, checked against static token hashes and
//! JWT issuers.
//!
//! The tokens file stores only SHA-256 hashes, so a copy of it grants
//! nothing. `sealgate serve` re-reads it when it changes and on SIGHUP
//! ([`Authenticator::watch`]); a file that does not load (unreadable, not
//! TOML, a bad entry) changes nothing: the last good set stays in force.
//! JWTs are checked for signature (keys from the issuer's JWKS, asymmetric
//! algorithms only), `iss`, `aud`, `exp` and `nbf`.
//!
//! An issuer's keys come from a file (read at start), a JWKS URL, or OpenID
//! Connect Discovery (the issuer's `/.well-known/openid-configuration`,
//! which must name the issuer exactly, gives the JWKS URL). Fetched keys
//! are fetched again every `jwks_refresh_sec` and when a token names a
//! `kid` the set lacks (at most once per `jwks_cooldown_sec`); a new set
//! replaces the old one whole, so a key the issuer removed stops working,
//! and a fetch that fails, or finds no signature key, changes nothing. At
//! start any of these failures stops the gateway. Fetches are HTTPS with
//! the system's roots and the issuer's `ca_file` (plain HTTP only to a
//! loopback address), follow no redirect, time out, and read a bounded
//! answer.
//!
//! Identities cannot collide: a JWT principal is its issuer's namespace
//! (`principal_prefix`, default `ISSUER#`) followed by the principal claim;
//! no issuer's namespace starts another's (checked with the config), and no
//! static-token or anonymous principal starts with an issuer's namespace or
//! with `sealgate:`, the gateway's own actors (checked here). An issuer's
//! roles claim counts only with `grant_roles = true`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::{AuthConfig, JwtIssuerConfig, RESERVED_PRINCIPAL_PREFIX, check_fetch_url};
use crate::governance::{AuthMethod, Principal};

/// Why a request was not authenticated; both become 401.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token was presented and rejected; the reason is for the log and
    /// the `error_description`, never the token itself.
    Invalid(String),
}

pub struct Authenticator {
    /// The static tokens in force, by hash; replaced whole on reload.
    tokens: RwLock<Arc<Tokens>>,
    tokens_file: Option<PathBuf>,
    /// How often the tokens file is checked for a change; `None`: only on SIGHUP.
    poll: Option<Duration>,
    /// The tokens file as it was when last read, loaded or not: a change
    /// from this is what a poll reloads on.
    seen: Mutex<Option<Fingerprint>>,
    issuers: Vec<Issuer>,
    anonymous: Option<String>,
}

type Tokens = HashMap<[u8; 32], TokenEntry>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    token: Vec<RawTokenEntry>,
}

/// A `[[token]]` as written, with where its keys are for error messages.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokenEntry {
    principal: toml::Spanned<String>,
    #[serde(default)]
    teams: Vec<String>,
    /// Admin API roles (`admin`, `approver`, `auditor`).
    #[serde(default)]
    roles: Vec<String>,
    /// Hex SHA-256 of the token.
    sha256: toml::Spanned<String>,
}

#[derive(Clone, Debug)]
struct TokenEntry {
    principal: String,
    teams: Vec<String>,
    roles: Vec<String>,
}

struct Issuer {
    config: JwtIssuerConfig,
    /// What its principals' names start with.
    namespace: String,
    source: KeySource,
    /// For fetched keys: no redirects, time limits, the system's roots and
    /// those of `ca_file`.
    client: Option<reqwest::Client>,
    keys: Mutex<Keys>,
    /// Held while keys are fetched: tokens with an unknown `kid` that
    /// arrive meanwhile wait for that fetch instead of starting another.
    fetching: tokio::sync::Mutex<()>,
}

/// Where an issuer's keys come from.
enum KeySource {
    File(PathBuf),
    Url(String),
    /// The discovery document's URL; its `jwks_uri` is where the keys are.
    Discovery(String),
}

impl KeySource {
    /// The URL the config names (for discovery, the document's).
    fn url(&self) -> Option<&str> {
        match self {
            KeySource::File(_) => None,
            KeySource::Url(url) | KeySource::Discovery(url) => Some(url),
        }
    }
}

struct Keys {
    /// The signature keys in force.
    set: JwkSet,
    /// Where they were read (the JWKS URL, or the file).
    from: String,
    /// When a fetch last started, whatever came of it: the unknown-`kid`
    /// cooldown counts from here.
    attempted: Instant,
}

/// The most of a discovery document or JWK set that is read; real ones
/// are a few KiB.
const MAX_FETCHED_BYTES: usize = 512 * 1024;
/// Time limits of each fetch of a discovery document or JWK set.
const FETCH_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

impl Authenticator {
    /// Loads the tokens file and every issuer's JWKS. Fails on a malformed
    /// file, naming it (and the line), and on a static-token or anonymous
    /// principal in an issuer's namespace.
    pub async fn load(config: &AuthConfig, anonymous: Option<String>) -> Result<Authenticator> {
        config.check()?;
        let mut issuers = Vec::new();
        for jwt in &config.jwt {
            issuers.push(Issuer::load(jwt).await?);
        }
        let auth = Authenticator {
            tokens: RwLock::new(Arc::new(Tokens::new())),
            tokens_file: config.tokens_file.clone(),
            poll: (config.tokens_poll_sec > 0).then(|| Duration::from_secs(config.tokens_poll_sec)),
            seen: Mutex::new(None),
            issuers,
            anonymous,
        };
        if let Some(name) = &auth.anonymous {
            auth.check_local_principal(name)
                .context("config: gateway.anonymous_principal")?;
        }
        let tokens = auth.read_tokens_file()?;
        *auth.tokens.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(tokens);
        Ok(auth)
    }

    /// Checks an `Authorization` header value.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        let Some(header) = authorization else {
            return match &self.anonymous {
                Some(name) => Ok(Principal {
                    name: name.clone(),
                    teams: Vec::new(),
                    method: AuthMethod::Anonymous,
                    roles: Vec::new(),
                }),
                None => Err(AuthError::Missing),
            };
        };
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| AuthError::Invalid("authorization header is not a bearer token".into()))?;
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let tokens = self.tokens.read().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(entry) = tokens.get(&hash) {
            return Ok(Principal {
                name: entry.principal.clone(),
                teams: entry.teams.clone(),
                method: AuthMethod::Token,
                roles: entry.roles.clone(),
            });
        }
        if token.split('.').count() != 3 || self.issuers.is_empty() {
            return Err(AuthError::Invalid("unknown token".into()));
        }
        let mut last = String::from("no issuer accepted the token");
        for issuer in &self.issuers {
            match issuer.verify(token).await {
                Ok(principal) => return Ok(principal),
                Err(e) => last = e,
            }
        }
        Err(AuthError::Invalid(last))
    }

    /// A principal that is not an issuer's (a static token's, the anonymous
    /// one) must be outside every issuer's namespace and the gateway's own.
    fn check_local_principal(&self, name: &str) -> Result<()> {
        if name.is_empty() {
            bail!("the principal is empty");
        }
        if name.starts_with(RESERVED_PRINCIPAL_PREFIX) {
            bail!("principal {name:?} is in the namespace {RESERVED_PRINCIPAL_PREFIX:?} of the gateway's own actors");
        }
        if let Some(issuer) = self.issuers.iter().find(|i| name.starts_with(&i.namespace)) {
            bail!(
                "principal {name:?} is in the namespace of JWT issuer {:?} (principal_prefix {:?}); a static-token principal must not start with an issuer's prefix",
                issuer.config.issuer,
                issuer.namespace
            );
        }
        Ok(())
    }

    /// Reads and checks the tokens file (none configured: no tokens),
    /// noting what it looked like first so that a change while it is read
    /// is seen at the next poll.
    fn read_tokens_file(&self) -> Result<Tokens> {
        let Some(path) = &self.tokens_file else {
            return Ok(Tokens::new());
        };
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = fingerprint(path);
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read tokens file {}", path.display()))?;
        self.parse_tokens(path, &text)
    }

    fn parse_tokens(&self, path: &Path, text: &str) -> Result<Tokens> {
        let file: TokenFile = toml::from_str(text).map_err(|e| {
            // toml's message may span lines (an excerpt of the file); a log line should not.
            let message = e.message().trim().replace('\n', "; ");
            match e.span() {
                Some(span) => {
                    let (line, column) = line_column(text, span.start);
                    anyhow::anyhow!("tokens file {} line {line}, column {column}: {message}", path.display())
                }
                None => anyhow::anyhow!("tokens file {}: {message}", path.display()),
            }
        })?;
        let mut tokens = Tokens::new();
        let mut lines: HashMap<[u8; 32], usize> = HashMap::new();
        for raw in file.token {
            let line = line_column(text, raw.principal.span().start).0;
            let principal = raw.principal.into_inner();
            self.check_local_principal(&principal)
                .with_context(|| format!("tokens file {} line {line}", path.display()))?;
            let hash = parse_hash(raw.sha256.get_ref()).with_context(|| {
                format!(
                    "tokens file {} line {}: principal {principal:?}",
                    path.display(),
                    line_column(text, raw.sha256.span().start).0
                )
            })?;
            if let Some(first) = lines.insert(hash, line) {
                bail!(
                    "tokens file {} line {line}: principal {principal:?} has the same sha256 as the entry at line {first}",
                    path.display()
                );
            }
            tokens.insert(
                hash,
                TokenEntry {
                    principal,
                    teams: raw.teams,
                    roles: raw.roles,
                },
            );
        }
        Ok(tokens)
    }

    /// Re-reads the tokens file and puts it in force; on any error the set
    /// in force stays as it was. Returns how many tokens are now accepted.
    /// Whether `name` can be a principal here: a static token names it,
    /// it is the anonymous principal, or it lies in a JWT issuer's
    /// namespace (any subject of that issuer may come).
    pub fn may_be_principal(&self, name: &str) -> bool {
        let tokens = self.tokens.read().unwrap_or_else(|p| p.into_inner()).clone();
        tokens.values().any(|t| t.principal == name)
            || self.anonymous.as_deref() == Some(name)
            || self.issuers.iter().any(|i| name.starts_with(&i.namespace))
    }

    /// Whether a static token names `team`.
    pub fn names_team(&self, team: &str) -> bool {
        let tokens = self.tokens.read().unwrap_or_else(|p| p.into_inner()).clone();
        tokens.values().any(|t| t.teams.iter().any(|x| x == team))
    }

    pub fn reload_tokens(&self) -> Result<usize> {
        let tokens = self.read_tokens_file()?;
        let count = tokens.len();
        *self.tokens.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(tokens);
        Ok(count)
    }

    /// [`reload_tokens`](Self::reload_tokens), logged: `trigger` says why.
    fn reload_logged(&self, trigger: &str) {
        let Some(path) = &self.tokens_file else {
            tracing::info!(trigger, "no auth.tokens_file to reload");
            return;
        };
        match self.reload_tokens() {
            Ok(count) => tracing::info!(file = %path.display(), tokens = count, trigger, "tokens file reloaded"),
            Err(e) => {
                let kept = self.tokens.read().unwrap_or_else(PoisonError::into_inner).len();
                tracing::error!(
                    trigger,
                    "{e:#}; the last good set of {kept} tokens stays in force until the file loads"
                );
            }
        }
    }

    /// Reloads the tokens file if it changed since it was last read.
    fn reload_if_changed(&self) {
        let Some(path) = &self.tokens_file else { return };
        let now = fingerprint(path);
        if now != *self.seen.lock().unwrap_or_else(PoisonError::into_inner) {
            self.reload_logged("changed");
        }
    }

    /// Keeps the tokens file in force while the authenticator lives: it is
    /// re-read when it changes (checked every `auth.tokens_poll_sec`) and
    /// on SIGHUP, at once. Call within a Tokio runtime; SIGHUP is caught
    /// from the moment this returns.
    pub fn watch(self: &Arc<Self>) {
        for (i, issuer) in self.issuers.iter().enumerate() {
            if issuer.client.is_some() {
                self.refresh_every(i, Duration::from_secs(issuer.config.jwks_refresh_sec));
            }
        }
        let auth = Arc::downgrade(self);
        let poll = if self.tokens_file.is_some() { self.poll } else { None };
        let mut hangup = Hangup::new();
        tokio::spawn(async move {
            let mut ticks = poll.map(|every| {
                let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticks
            });
            loop {
                let hup = tokio::select! {
                    () = async {
                        match &mut ticks {
                            Some(ticks) => {
                                ticks.tick().await;
                            }
                            None => std::future::pending().await,
                        }
                    } => false,
                    () = hangup.next() => true,
                };
                let Some(auth) = auth.upgrade() else { return };
                // File system calls, which may block (a network mount).
                let _ = tokio::task::spawn_blocking(move || {
                    if hup {
                        auth.reload_logged("SIGHUP");
                    } else {
                        auth.reload_if_changed();
                    }
                })
                .await;
            }
        });
    }
}

impl Authenticator {
    /// Fetches issuer `i`'s keys every `every` while the authenticator
    /// lives.
    fn refresh_every(self: &Arc<Self>, i: usize, every: Duration) {
        let auth = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(auth) = auth.upgrade() else { return };
                let Some(issuer) = auth.issuers.get(i) else { return };
                let _fetching = issuer.fetching.lock().await;
                issuer.refresh_logged("periodic").await;
            }
        });
    }
}

/// SIGHUP, where there is one.
struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    fn new() -> Hangup {
        #[cfg(unix)]
        {
            let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .inspect_err(|e| {
                    tracing::warn!("cannot catch SIGHUP ({e}); the tokens file is reloaded only when polled")
                })
                .ok();
            Hangup { signal }
        }
        #[cfg(not(unix))]
        Hangup {}
    }

    /// The next SIGHUP; never, if there are none.
    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.signal {
            if signal.recv().await.is_some() {
                return;
            }
            self.signal = None;
        }
        std::future::pending().await
    }
}

/// What the tokens file looks like from outside: a change of any part is
/// a change of the file (an edit in place, a file renamed over it, a
/// symlink pointed elsewhere). `None`: it cannot be seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    inode: (u64, u64),
    #[cfg(unix)]
    changed: (i64, i64),
}

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    use std::os::unix::fs::MetadataExt;
    Some(Fingerprint {
        len: meta.len(),
        modified: meta.modified().ok(),
        #[cfg(unix)]
        inode: (meta.dev(), meta.ino()),
        #[cfg(unix)]
        changed: (meta.ctime(), meta.ctime_nsec()),
    })
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

impl Issuer {
    async fn verify(&self, token: &str) -> Result<Principal, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("malformed jwt: {e}"))?;
        if matches!(header.alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            return Err(format!(
                "jwt algorithm {:?} is not accepted (asymmetric only)",
                header.alg
            ));
        }
        let mut key = self.key(header.kid.as_deref(), header.alg);
        if key.is_none() && header.kid.is_some() && self.client.is_some() && self.claims_to_be_its(token) {
            // The issuer may have added a key: fetch once per cooldown,
            // unless a fetch just finished brought it.
            let _fetching = self.fetching.lock().await;
            key = self.key(header.kid.as_deref(), header.alg);
            if key.is_none() && self.cooled_down() {
                self.refresh_logged("unknown kid").await;
                key = self.key(header.kid.as_deref(), header.alg);
            }
        }
        let key = key.ok_or_else(|| {
            format!(
                "no key in the jwks of {} for kid {:?} and algorithm {:?}",
                self.config.issuer, header.kid, header.alg
            )
        })?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&self.config.audience);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = self.config.leeway_sec;
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map_err(|e| format!("jwt rejected by issuer {}: {e}", self.config.issuer))?;
        self.principal(&data.claims)
    }

    /// The principal a verified token's claims name: the issuer's
    /// namespace and the principal claim; roles only if the issuer may
    /// grant them.
    fn principal(&self, claims: &serde_json::Value) -> Result<Principal, String> {
        let name = claims
            .get(&self.config.principal_claim)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("jwt has no string claim {:?}", self.config.principal_claim))?;
        let teams = match claims.get(&self.config.teams_claim) {
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            _ => Vec::new(),
        };
        let roles = match claims.get(&self.config.roles_claim) {
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            _ => Vec::new(),
        };
        let name = format!("{}{name}", self.namespace);
        let roles = if self.config.grant_roles {
            roles
        } else {
            if !roles.is_empty() {
                tracing::debug!(
                    issuer = %self.config.issuer,
                    principal = %name,
                    ?roles,
                    "roles claim ignored: the issuer is not configured with grant_roles = true"
                );
            }
            Vec::new()
        };
        Ok(Principal {
            name,
            teams,
            method: AuthMethod::Jwt,
            roles,
        })
    }

    fn key(&self, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.set
            .keys
            .iter()
            // Every key with the kid, not only the first.
            .filter(|jwk| kid.is_none() || jwk.common.key_id.as_deref() == kid)
            // A key that names its algorithm is only good for that one.
            .filter(|jwk| {
                jwk.common
                    .key_algorithm
                    .is_none_or(|a| a.to_string() == format!("{alg:?}"))
            })
            .find_map(|jwk| DecodingKey::from_jwk(jwk).ok())
    }

    /// Whether the token's unverified `iss` is this issuer: only then may
    /// its unknown `kid` make this issuer fetch keys (a token of another
    /// issuer tried here is not a reason to). Trusted for nothing else.
    fn claims_to_be_its(&self, token: &str) -> bool {
        #[derive(Deserialize)]
        struct Iss {
            iss: Option<String>,
        }
        jsonwebtoken::dangerous::insecure_decode_claims::<Iss>(token)
            .is_ok_and(|c| c.iss.as_deref() == Some(self.config.issuer.as_str()))
    }

    /// Whether a token with an unknown `kid` may fetch the keys now.
    fn cooled_down(&self) -> bool {
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).attempted.elapsed()
            >= Duration::from_secs(self.config.jwks_cooldown_sec)
    }

    /// The issuer as configured, its keys read or fetched: any failure is
    /// an error naming the issuer and the file or URL.
    async fn load(config: &JwtIssuerConfig) -> Result<Issuer> {
        let source = match (&config.jwks_file, &config.jwks_url, config.discovery) {
            (Some(path), None, false) => KeySource::File(path.clone()),
            (None, Some(url), false) => KeySource::Url(url.clone()),
            (None, None, true) => KeySource::Discovery(format!(
                "{}/.well-known/openid-configuration",
                config.issuer.trim_end_matches('/')
            )),
            _ => bail!(
                "issuer {}: needs exactly one of jwks_file, jwks_url and discovery = true",
                config.issuer
            ),
        };
        let client = match source {
            KeySource::File(_) => None,
            _ => Some(fetch_client(config)?),
        };
        let issuer = Issuer {
            config: config.clone(),
            namespace: config.namespace(),
            source,
            client,
            keys: Mutex::new(Keys {
                set: JwkSet { keys: Vec::new() },
                from: String::new(),
                attempted: Instant::now(),
            }),
            fetching: tokio::sync::Mutex::new(()),
        };
        let (set, from) = issuer.fetch().await?;
        tracing::info!(issuer = %config.issuer, from = %from, keys = ?key_ids(&set), "jwt issuer keys loaded");
        *issuer.keys.lock().unwrap_or_else(|p| p.into_inner()) = Keys {
            set,
            from,
            attempted: Instant::now(),
        };
        Ok(issuer)
    }

    /// Reads or fetches the issuer's signature keys; where they came from.
    /// Fetched keys must hold at least one signature key.
    async fn fetch(&self) -> Result<(JwkSet, String)> {
        let issuer = &self.config.issuer;
        match &self.source {
            KeySource::File(path) => {
                let text = std::fs::read(path)
                    .with_context(|| format!("issuer {issuer}: cannot read jwks_file {}", path.display()))?;
                let set =
                    signature_keys(&text).with_context(|| format!("issuer {issuer}: jwks_file {}", path.display()))?;
                Ok((set, path.display().to_string()))
            }
            KeySource::Url(url) => Ok((self.fetch_jwks(url).await?, url.clone())),
            KeySource::Discovery(url) => {
                let document = self.get(url, "the discovery document").await?;
                let jwks_uri = discovered_jwks_uri(issuer, &document)
                    .with_context(|| format!("issuer {issuer}: discovery document {url}"))?;
                Ok((self.fetch_jwks(&jwks_uri).await?, jwks_uri))
            }
        }
    }

    async fn fetch_jwks(&self, url: &str) -> Result<JwkSet> {
        let issuer = &self.config.issuer;
        let body = self.get(url, "the jwks").await?;
        let set = signature_keys(&body).with_context(|| format!("issuer {issuer}: jwks {url}"))?;
        if set.keys.is_empty() {
            bail!("issuer {issuer}: jwks {url} holds no signature key this gateway can use");
        }
        Ok(set)
    }

    /// One GET: a success status and at most [`MAX_FETCHED_BYTES`].
    async fn get(&self, url: &str, what: &str) -> Result<Vec<u8>> {
        let issuer = &self.config.issuer;
        let Some(client) = &self.client else {
            bail!("issuer {issuer}: no http client for {url}");
        };
        let fail = |e: reqwest::Error| anyhow::Error::new(e.without_url());
        let mut response = client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(fail)
            .with_context(|| format!("issuer {issuer}: cannot fetch {what} {url}"))?;
        let status = response.status();
        if !status.is_success() {
            // A redirect is not followed: it could lead anywhere.
            bail!("issuer {issuer}: {what} {url} answered {status}");
        }
        if response.content_length().is_some_and(|n| n > MAX_FETCHED_BYTES as u64) {
            bail!("issuer {issuer}: {what} {url} is larger than {MAX_FETCHED_BYTES} bytes");
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(fail)
            .with_context(|| format!("issuer {issuer}: cannot read {what} {url}"))?
        {
            if body.len() + chunk.len() > MAX_FETCHED_BYTES {
                bail!("issuer {issuer}: {what} {url} is larger than {MAX_FETCHED_BYTES} bytes");
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Fetches the keys and puts them in force, whole; on any error the
    /// set in force stays. The caller holds `fetching`.
    async fn refresh(&self) -> Result<usize> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).attempted = Instant::now();
        let (set, from) = self.fetch().await?;
        let count = set.keys.len();
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let (before, after) = (key_ids(&keys.set), key_ids(&set));
        if before != after || keys.from != from {
            tracing::info!(issuer = %self.config.issuer, from = %from, keys = ?after, previous = ?before, "jwt issuer keys changed");
        }
        keys.set = set;
        keys.from = from;
        Ok(count)
    }

    /// [`refresh`](Self::refresh), logged: `trigger` says why.
    async fn refresh_logged(&self, trigger: &str) {
        if let Err(e) = self.refresh().await {
            let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
            tracing::warn!(
                issuer = %self.config.issuer,
                url = self.source.url().unwrap_or_default(),
                trigger,
                "{e:#}; the last good set of {} keys (from {}) stays in force",
                keys.set.keys.len(),
                keys.from
            );
        }
    }
}

/// The key ids of a set, for the log.
fn key_ids(set: &JwkSet) -> Vec<String> {
    set.keys
        .iter()
        .map(|k| k.common.key_id.clone().unwrap_or_else(|| "(no kid)".into()))
        .collect()
}

/// The client that fetches an issuer's discovery document and keys: the
/// system's roots (rustls-platform-verifier, as reqwest is built) and
/// those of `ca_file`; no redirects; time limits.
fn fetch_client(config: &JwtIssuerConfig) -> Result<reqwest::Client> {
    // One process-wide crypto provider (a second install is refused, harmlessly).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(FETCH_CONNECT_TIMEOUT)
        .timeout(FETCH_TIMEOUT);
    if let Some(path) = &config.ca_file {
        let at = || format!("issuer {}: ca_file {}", config.issuer, path.display());
        let pem = std::fs::read(path).with_context(|| format!("{}: cannot read it", at()))?;
        let roots =
            reqwest::Certificate::from_pem_bundle(&pem).with_context(|| format!("{}: not PEM certificates", at()))?;
        if roots.is_empty() {
            bail!("{}: holds no certificate", at());
        }
        builder = builder.tls_certs_merge(roots);
    }
    builder
        .build()
        .with_context(|| format!("issuer {}: cannot make an https client", config.issuer))
}

/// The `jwks_uri` of a discovery document, which must be a JSON object
/// naming `issuer` exactly (OpenID Connect Discovery 4.3: otherwise its
/// keys are another issuer's) and a `jwks_uri` the gateway may fetch.
fn discovered_jwks_uri(issuer: &str, document: &[u8]) -> Result<String> {
    let document: serde_json::Value = serde_json::from_slice(document).context("not JSON")?;
    let named = document
        .get("issuer")
        .and_then(serde_json::Value::as_str)
        .context("no string member \"issuer\"")?;
    if named != issuer {
        bail!("it is issuer {named:?}'s, not {issuer:?}'s (OpenID Connect Discovery 4.3: they must be equal)");
    }
    let jwks_uri = document
        .get("jwks_uri")
        .and_then(serde_json::Value::as_str)
        .context("no string member \"jwks_uri\"")?;
    check_fetch_url(jwks_uri).with_context(|| format!("jwks_uri {jwks_uri}"))?;
    Ok(jwks_uri.to_string())
}

/// The keys of a JWK set that may check a token's signature. The set must
/// be a JSON object with a `keys` array; a key is left out, not an error,
/// when it is for something else or unknown here (issuers publish
/// encryption keys beside signing keys: Keycloak's `RSA-OAEP` key): `use`
/// other than `sig`, `key_ops` without `verify`, a symmetric key, an
/// encryption algorithm, or a key that does not parse.
fn signature_keys(text: &[u8]) -> Result<JwkSet> {
    #[derive(Deserialize)]
    struct Raw {
        keys: Vec<serde_json::Value>,
    }
    let raw: Raw = serde_json::from_slice(text).context("not a JSON JWK set")?;
    let keys = raw
        .keys
        .into_iter()
        .filter_map(|key| serde_json::from_value::<Jwk>(key).ok())
        .filter(|jwk| {
            let common = &jwk.common;
            common
                .public_key_use
                .as_ref()
                .is_none_or(|u| *u == PublicKeyUse::Signature)
                && common
                    .key_operations
                    .as_ref()
                    .is_none_or(|ops| ops.contains(&KeyOperations::Verify))
                && common.key_algorithm.is_none_or(|a| {
                    Algorithm::try_from(a)
                        .is_ok_and(|a| !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
                })
                && !matches!(
                    jwk.algorithm,
                    AlgorithmParameters::OctetKey(_) | AlgorithmParameters::Other(_)
                )
                && DecodingKey::from_jwk(jwk).is_ok()
        })
        .collect();
    Ok(JwkSet { keys })
}

fn parse_hash(hex_text: &str) -> Result<[u8; 32]> {
    let bytes = hex::decode(hex_text.trim()).context("sha256 is not hex")?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| anyhow::anyhow!("sha256 has {} bytes, want 32", b.len()))
}

/// A new random token and the tokens-file entry that accepts it.
pub fn new_token(principal: &str, teams: &[String], roles: &[String]) -> (String, String) {
    let mut raw = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut raw);
    let token = format!("sg_{}", hex::encode(raw));
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    let entry = toml::to_string(&toml::Table::from_iter([(
        "token".to_string(),
        toml::Value::Array(vec![toml::Value::Table(toml::Table::from_iter([
            ("principal".to_string(), toml::Value::String(principal.into())),
            (
                "teams".to_string(),
                toml::Value::Array(teams.iter().cloned().map(toml::Value::String).collect()),
            ),
            (
                "roles".to_string(),
                toml::Value::Array(roles.iter().cloned().map(toml::Value::String).collect()),
            ),
            ("sha256".to_string(), toml::Value::String(hash)),
        ]))]),
    )]))
    .unwrap_or_default();
    (token, entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_tokens_match_by_hash_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (token, entry) = new_token("alice", &["security".to_string()], &[]);
        let path = dir.path().join("tokens.toml");
        std::fs::write(&path, &entry).expect("write");
        assert!(!entry.contains(&token), "the file must not hold the token");
        let config = AuthConfig {
            tokens_file: Some(path),
            ..AuthConfig::default()
        };
        let auth = Authenticator::load(&config, None).await.expect("load");
        let p = auth
            .authenticate(Some(&format!("Bearer {token}")))
            .await
            .expect("accepted");
        assert_eq!(
            (p.name.as_str(), p.teams.as_slice()),
            ("alice", &["security".to_string()][..])
        );
        assert_eq!(auth.authenticate(None).await, Err(AuthError::Missing));
        assert!(matches!(
            auth.authenticate(Some("Bearer sg_nope")).await,
            Err(AuthError::Invalid(_))
        ));
    }

    /// `[[auth.jwt]]` tables (`extra` lines each) with an empty JWKS file,
    /// a tokens file, and the authenticator on them.
    struct Rig {
        dir: tempfile::TempDir,
        config: AuthConfig,
    }

    impl Rig {
        fn new(issuers: &[(&str, &str)]) -> Rig {
            let dir = tempfile::tempdir().expect("tempdir");
            let jwks = dir.path().join("jwks.json");
            std::fs::write(&jwks, r#"{"keys": []}"#).expect("write jwks");
            let mut text = format!("tokens_file = {:?}\n", dir.path().join("tokens.toml"));
            for (issuer, extra) in issuers {
                text.push_str(&format!(
                    "[[jwt]]\nissuer = {issuer:?}\naudience = [\"sealgate\"]\njwks_file = {jwks:?}\n{extra}\n"
                ));
            }
            let config: AuthConfig = toml::from_str(&text).expect("auth config");
            std::fs::write(dir.path().join("tokens.toml"), "").expect("write tokens file");
            Rig { dir, config }
        }

        fn tokens_file(&self) -> PathBuf {
            self.dir.path().join("tokens.toml")
        }

        /// Writes the tokens file: an entry per (principal, roles); the tokens.
        fn write_tokens(&self, entries: &[(&str, &[&str])]) -> Vec<String> {
            let mut text = String::new();
            let mut tokens = Vec::new();
            for (principal, roles) in entries {
                let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
                let (token, entry) = new_token(principal, &[], &roles);
                text.push_str(&entry);
                tokens.push(token);
            }
            std::fs::write(self.tokens_file(), text).expect("write tokens file");
            tokens
        }

        async fn load(&self, anonymous: Option<&str>) -> Result<Authenticator> {
            Authenticator::load(&self.config, anonymous.map(str::to_string)).await
        }
    }

    async fn who(auth: &Authenticator, token: &str) -> Option<String> {
        auth.authenticate(Some(&format!("Bearer {token}")))
            .await
            .ok()
            .map(|p| p.name)
    }

    #[tokio::test]
    async fn jwt_principals_are_namespaced_by_their_issuer() {
        let rig = Rig::new(&[("https://a.test", ""), ("https://b.test", "principal_prefix = \"b:\"")]);
        let alice = rig.write_tokens(&[("alice", &[])]);
        let auth = rig.load(None).await.expect("load");
        let claims = serde_json::json!({"sub": "alice", "groups": ["eng"]});
        let from_a = auth.issuers[0].principal(&claims).expect("a");
        let from_b = auth.issuers[1].principal(&claims).expect("b");
        assert_eq!(from_a.name, "https://a.test#alice");
        assert_eq!(from_b.name, "b:alice");
        assert_eq!(
            (from_a.method, from_a.teams.as_slice()),
            (AuthMethod::Jwt, &["eng".to_string()][..])
        );
        assert_eq!(who(&auth, &alice[0]).await.as_deref(), Some("alice"));
        // Whatever the claim, the name stays in the issuer's namespace.
        let sneaky = serde_json::json!({"sub": "#alice"});
        assert_eq!(
            auth.issuers[0].principal(&sneaky).expect("a").name,
            "https://a.test##alice"
        );
        assert!(auth.issuers[0].principal(&serde_json::json!({"sub": ""})).is_err());
    }

    #[tokio::test]
    async fn a_roles_claim_counts_only_for_an_issuer_that_grants_roles() {
        let rig = Rig::new(&[("https://a.test", ""), ("https://b.test", "grant_roles = true")]);
        let auth = rig.load(None).await.expect("load");
        for roles in [serde_json::json!(["admin"]), serde_json::json!("admin")] {
            let claims = serde_json::json!({"sub": "root", "roles": roles});
            assert_eq!(
                auth.issuers[0].principal(&claims).expect("a").roles,
                Vec::<String>::new()
            );
            assert_eq!(
                auth.issuers[1].principal(&claims).expect("b").roles,
                vec!["admin".to_string()]
            );
        }
    }

    #[tokio::test]
    async fn local_principals_in_an_issuers_namespace_are_refused_naming_file_and_line() {
        let rig = Rig::new(&[("https://a.test", ""), ("https://b.test", "principal_prefix = \"b:\"")]);
        let path = rig.tokens_file().display().to_string();
        for (principal, why) in [
            ("https://a.test#alice", "namespace of JWT issuer \"https://a.test\""),
            ("b:alice", "namespace of JWT issuer \"https://b.test\""),
            ("sealgate:config", "the gateway's own actors"),
            ("", "empty"),
        ] {
            rig.write_tokens(&[("bob", &[]), (principal, &[])]);
            let line = std::fs::read_to_string(rig.tokens_file())
                .expect("read")
                .lines()
                .position(|l| l == format!("principal = {principal:?}"))
                .expect("the entry's line")
                + 1;
            let msg = format!("{:#}", rig.load(None).await.err().expect("refused"));
            assert!(
                msg.contains(&format!("tokens file {path} line {line}")) && msg.contains(why),
                "{principal:?}: {msg}"
            );
        }
        rig.write_tokens(&[("alice", &[])]);
        for (anonymous, why) in [("b:guest", "https://b.test"), ("sealgate:gateway", "own actors")] {
            let msg = format!("{:#}", rig.load(Some(anonymous)).await.err().expect("refused"));
            assert!(
                msg.contains("gateway.anonymous_principal") && msg.contains(why),
                "{msg}"
            );
        }
        // Near misses are other names.
        rig.write_tokens(&[("https://a.test", &[]), ("b", &[]), ("https://a.test/alice", &[])]);
        rig.load(Some("guest")).await.expect("load");
    }

    #[tokio::test]
    async fn a_tokens_file_that_does_not_load_keeps_the_last_good_set() {
        let rig = Rig::new(&[]);
        let path = rig.tokens_file().display().to_string();
        let alice = rig.write_tokens(&[("alice", &["auditor"])]);
        let auth = rig.load(None).await.expect("load");
        let good = std::fs::read_to_string(rig.tokens_file()).expect("read");
        let bob_entry = new_token("bob", &[], &["admin".to_string()]);
        for (text, why) in [
            (
                format!("{good}{}[[token]\n", bob_entry.1),
                "line 11, column 9: unclosed array table",
            ),
            (
                format!("{good}{}[[token]]\nprincipal = \"eve\"\n", bob_entry.1),
                "line 11, column 1: missing field `sha256`",
            ),
            (
                format!("{good}{}{good}", bob_entry.1),
                "line 12: principal \"alice\" has the same sha256 as the entry at line 2",
            ),
            (
                format!("{}[[token]]\nprincipal = \"eve\"\nsha256 = \"abc\"\n", bob_entry.1),
                "line 8: principal \"eve\": sha256 is not hex",
            ),
            (
                format!("{}[[token]]\nprincipal = \"eve\"\nsha256 = \"abcd\"\n", bob_entry.1),
                "sha256 has 2 bytes, want 32",
            ),
            (
                format!("{}[[token]]\nprincipal = \"eve\"\nsha = \"abcd\"\n", bob_entry.1),
                "unknown field `sha`",
            ),
        ] {
            std::fs::write(rig.tokens_file(), &text).expect("write");
            let msg = format!("{:#}", auth.reload_tokens().expect_err(why));
            assert!(
                msg.contains(&format!("tokens file {path}")) && msg.contains(why),
                "{why}: {msg}"
            );
            assert_eq!(who(&auth, &alice[0]).await.as_deref(), Some("alice"), "{why}");
            assert_eq!(who(&auth, &bob_entry.0).await, None, "{why}");
        }
        // A file that is gone is not an empty one: nothing changes.
        std::fs::remove_file(rig.tokens_file()).expect("remove");
        let msg = format!("{:#}", auth.reload_tokens().expect_err("gone"));
        assert!(msg.contains(&format!("cannot read tokens file {path}")), "{msg}");
        assert_eq!(who(&auth, &alice[0]).await.as_deref(), Some("alice"));
        // An empty one revokes every token.
        std::fs::write(rig.tokens_file(), "").expect("write");
        assert_eq!(auth.reload_tokens().expect("empty file"), 0);
        assert_eq!(who(&auth, &alice[0]).await, None);
        let bob = rig.write_tokens(&[("bob", &[])]);
        assert_eq!(auth.reload_tokens().expect("reload"), 1);
        assert_eq!(who(&auth, &bob[0]).await.as_deref(), Some("bob"));
    }

    #[tokio::test]
    async fn the_watcher_reloads_a_changed_file_and_stops_with_the_authenticator() {
        let mut rig = Rig::new(&[]);
        rig.config.tokens_poll_sec = 1;
        let alice = rig.write_tokens(&[("alice", &[])]);
        let auth = Arc::new(rig.load(None).await.expect("load"));
        auth.watch();
        // An edit in place, then a file renamed over it.
        let bob = rig.write_tokens(&[("bob", &[])]);
        let carol = {
            let (token, entry) = new_token("carol", &[], &[]);
            let new = rig.dir.path().join("tokens.new");
            std::fs::write(&new, entry).expect("write");
            std::fs::rename(&new, rig.tokens_file()).expect("rename");
            token
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while who(&auth, &carol).await.is_none() {
            assert!(Instant::now() < deadline, "the changed file was not reloaded");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(who(&auth, &alice[0]).await, None);
        assert_eq!(who(&auth, &bob[0]).await, None);
        // The watcher holds it only while it reloads.
        let weak = Arc::downgrade(&auth);
        drop(auth);
        let deadline = Instant::now() + Duration::from_secs(5);
        while weak.strong_count() > 0 {
            assert!(Instant::now() < deadline, "the watcher keeps the authenticator alive");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // ------------------------------------------------------------ fetched keys

    /// An Ed25519 signing key with a kid, its JWK and the tokens it signs.
    struct Signer {
        key: jsonwebtoken::EncodingKey,
        jwk: serde_json::Value,
        kid: String,
    }

    impl Signer {
        fn new(kid: &str) -> Signer {
            let seed = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
            // PKCS#8 v1 of an Ed25519 seed (RFC 8410): a fixed prefix, then the seed.
            let mut der = vec![
                0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
            ];
            der.extend_from_slice(&seed.to_bytes());
            let key = jsonwebtoken::EncodingKey::from_ed_der(&der);
            let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA).expect("jwk");
            jwk.common.key_id = Some(kid.to_string());
            jwk.common.public_key_use = Some(PublicKeyUse::Signature);
            Signer {
                key,
                jwk: serde_json::to_value(&jwk).expect("jwk json"),
                kid: kid.to_string(),
            }
        }

        fn token(&self, issuer: &str, sub: &str) -> String {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .expect("clock")
                .as_secs();
            let claims = serde_json::json!({"iss": issuer, "aud": "sealgate", "sub": sub, "exp": now + 600});
            let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
            header.kid = Some(self.kid.clone());
            jsonwebtoken::encode(&header, &claims, &self.key).expect("sign")
        }
    }

    fn jwks_of(keys: &[&Signer]) -> String {
        serde_json::json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
    }

    /// A real HTTP server on loopback answering every GET with the status
    /// and body it is given; counts the requests.
    struct Answers {
        url: String,
        answer: Arc<Mutex<(u16, String)>>,
        hits: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Answers {
        fn start(status: u16, body: &str) -> Answers {
            use std::io::{Read, Write};
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let url = format!("http://{}/jwks", listener.local_addr().expect("addr"));
            let answer = Arc::new(Mutex::new((status, body.to_string())));
            let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let (a, h) = (answer.clone(), hits.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    let Ok(mut conn) = conn else { continue };
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let (status, body) = a.lock().expect("answer").clone();
                    let _ = conn.write_all(
                        format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nLocation: http://127.0.0.1:9/elsewhere\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    );
                }
            });
            Answers { url, answer, hits }
        }

        fn set(&self, status: u16, body: &str) {
            *self.answer.lock().expect("answer") = (status, body.to_string());
        }

        fn hits(&self) -> usize {
            self.hits.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    const ISSUER: &str = "https://idp.sealgate.test";

    fn url_config(url: &str, extra: &str) -> AuthConfig {
        toml::from_str(&format!(
            "[[jwt]]\nissuer = {ISSUER:?}\naudience = [\"sealgate\"]\njwks_url = {url:?}\n{extra}"
        ))
        .expect("auth config")
    }

    #[test]
    fn only_signature_keys_are_kept() {
        let good = Signer::new("good");
        let mut with_verify = Signer::new("ops").jwk;
        with_verify["key_ops"] = serde_json::json!(["verify"]);
        with_verify.as_object_mut().expect("object").remove("use");
        let mut enc = Signer::new("enc").jwk;
        enc["use"] = "enc".into();
        let mut sign_only = Signer::new("sign-only").jwk;
        sign_only.as_object_mut().expect("object").remove("use");
        sign_only["key_ops"] = serde_json::json!(["sign"]);
        let mut oaep = Signer::new("oaep").jwk;
        oaep["alg"] = "RSA-OAEP".into();
        let set = serde_json::json!({"keys": [
            good.jwk,
            with_verify,
            enc,
            sign_only,
            oaep,
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac-alg", "alg": "HS256"},
            {"kty": "EC", "crv": "P-256", "x": "not base64!", "y": "", "kid": "broken"},
            {"kty": "XYZ", "kid": "unknown-type"},
            "not a key",
        ], "extra": "members are allowed"});
        let kept = signature_keys(set.to_string().as_bytes()).expect("a JWK set");
        assert_eq!(key_ids(&kept), vec!["good".to_string(), "ops".to_string()]);
        for (text, why) in [
            ("<html>", "not a JSON JWK set"),
            ("{\"keys\": {}}", "not a JSON JWK set"),
            ("[]", "not a JSON JWK set"),
        ] {
            let msg = format!("{:#}", signature_keys(text.as_bytes()).expect_err(text));
            assert!(msg.contains(why), "{text}: {msg}");
        }
    }

    #[test]
    fn a_discovery_document_must_name_its_issuer_exactly() {
        let doc = |issuer: &str, jwks: &str| serde_json::json!({"issuer": issuer, "jwks_uri": jwks}).to_string();
        assert_eq!(
            discovered_jwks_uri(ISSUER, doc(ISSUER, "https://keys.idp.test/jwks").as_bytes()).expect("good"),
            "https://keys.idp.test/jwks"
        );
        assert_eq!(
            discovered_jwks_uri(ISSUER, doc(ISSUER, "http://127.0.0.1:8080/jwks").as_bytes()).expect("loopback"),
            "http://127.0.0.1:8080/jwks"
        );
        for (document, why) in [
            (
                doc("https://idp.sealgate.test/", "https://k/j"),
                "it is issuer \"https://idp.sealgate.test/\"'s",
            ),
            (
                doc("https://IDP.sealgate.test", "https://k/j"),
                "not \"https://idp.sealgate.test\"'s",
            ),
            (doc("https://evil.test", "https://k/j"), "4.3"),
            (
                doc(ISSUER, "http://keys.idp.test/jwks"),
                "jwks_uri http://keys.idp.test/jwks: plain http",
            ),
            (doc(ISSUER, "file:///etc/passwd"), "scheme \"file\""),
            (
                serde_json::json!({"issuer": ISSUER}).to_string(),
                "no string member \"jwks_uri\"",
            ),
            (
                serde_json::json!({"jwks_uri": "https://k/j"}).to_string(),
                "no string member \"issuer\"",
            ),
            ("<html>".to_string(), "not JSON"),
        ] {
            let msg = format!(
                "{:#}",
                discovered_jwks_uri(ISSUER, document.as_bytes()).expect_err(&document)
            );
            assert!(msg.contains(why), "{document}: {msg}");
        }
    }

    /// The periodic refresh replaces the set whole (a removed key stops
    /// working, a new one works); a refresh that fails or finds no key
    /// changes nothing.
    #[tokio::test]
    async fn a_refreshed_set_replaces_the_old_one_and_a_failed_refresh_keeps_it() {
        let (k1, k2) = (Signer::new("k1"), Signer::new("k2"));
        let server = Answers::start(200, &jwks_of(&[&k1]));
        let auth = Arc::new(
            Authenticator::load(&url_config(&server.url, "jwks_cooldown_sec = 3600\n"), None)
                .await
                .expect("load"),
        );
        assert_eq!(
            who(&auth, &k1.token(ISSUER, "ann")).await.as_deref(),
            Some("https://idp.sealgate.test#ann")
        );
        server.set(200, &jwks_of(&[&k2]));
        // The cooldown has not passed: an unknown kid fetches nothing.
        let hits = server.hits();
        assert_eq!(who(&auth, &k2.token(ISSUER, "ann")).await, None);
        assert_eq!(server.hits(), hits);
        auth.refresh_every(0, Duration::from_millis(100));
        let deadline = Instant::now() + Duration::from_secs(10);
        while who(&auth, &k2.token(ISSUER, "ann")).await.is_none() {
            assert!(Instant::now() < deadline, "the set was not refreshed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            who(&auth, &k1.token(ISSUER, "ann")).await,
            None,
            "a removed key still works"
        );
        for (status, body) in [
            (500, jwks_of(&[&k1])),
            (302, jwks_of(&[&k1])),
            (200, "<html>".to_string()),
            (200, "{\"keys\": []}".to_string()),
            (
                200,
                jwks_of(&[]).replace("[]", "[{\"kty\": \"oct\", \"k\": \"c2VjcmV0\"}]"),
            ),
            (
                200,
                format!("{{\"keys\": [], \"pad\": \"{}\"}}", "x".repeat(MAX_FETCHED_BYTES)),
            ),
        ] {
            server.set(status, &body);
            let before = server.hits();
            let deadline = Instant::now() + Duration::from_secs(10);
            while server.hits() < before + 2 {
                assert!(Instant::now() < deadline, "no refresh");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(
                who(&auth, &k2.token(ISSUER, "ann")).await.as_deref(),
                Some("https://idp.sealgate.test#ann"),
                "{status} {}",
                &body[..body.len().min(80)]
            );
            assert_eq!(who(&auth, &k1.token(ISSUER, "ann")).await, None, "{status}");
        }
    }

    /// A token with an unknown kid fetches the set once per cooldown; the
    /// tokens that arrive meanwhile fetch nothing.
    #[tokio::test]
    async fn an_unknown_kid_fetches_once_per_cooldown() {
        let (k1, k2, k3) = (Signer::new("k1"), Signer::new("k2"), Signer::new("k3"));
        let server = Answers::start(200, &jwks_of(&[&k1]));
        let auth = Authenticator::load(&url_config(&server.url, "jwks_cooldown_sec = 1\n"), None)
            .await
            .expect("load");
        server.set(200, &jwks_of(&[&k2]));
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let hits = server.hits();
        // Another issuer's token with an unknown kid is no reason to fetch.
        assert_eq!(who(&auth, &k2.token("https://other.sealgate.test", "bo")).await, None);
        assert_eq!(server.hits(), hits);
        assert_eq!(
            who(&auth, &k2.token(ISSUER, "bo")).await.as_deref(),
            Some("https://idp.sealgate.test#bo")
        );
        assert_eq!(server.hits(), hits + 1);
        // Unknown kids within the cooldown: no fetch.
        for _ in 0..5 {
            assert_eq!(who(&auth, &k3.token(ISSUER, "bo")).await, None);
        }
        assert_eq!(server.hits(), hits + 1);
        assert_eq!(
            who(&auth, &k1.token(ISSUER, "bo")).await,
            None,
            "a removed key still works"
        );
        // A failed fetch counts toward the cooldown too.
        server.set(500, "");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        for _ in 0..5 {
            assert_eq!(who(&auth, &k3.token(ISSUER, "bo")).await, None);
        }
        assert_eq!(server.hits(), hits + 2);
        assert_eq!(
            who(&auth, &k2.token(ISSUER, "bo")).await.as_deref(),
            Some("https://idp.sealgate.test#bo")
        );
    }

    /// At start, an issuer whose keys cannot be had stops the load, naming
    /// the issuer and the URL.
    #[tokio::test]
    async fn an_issuer_without_keys_at_start_is_an_error_naming_it() {
        let k1 = Signer::new("k1");
        let server = Answers::start(200, &jwks_of(&[&k1]));
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let closed = format!("http://127.0.0.1:{port}/jwks");
        for (url, status, body, why) in [
            (closed.as_str(), 200, String::new(), "cannot fetch the jwks"),
            (server.url.as_str(), 404, String::new(), "answered 404"),
            (server.url.as_str(), 301, String::new(), "answered 301"),
            (server.url.as_str(), 200, "not json".to_string(), "not a JSON JWK set"),
            (
                server.url.as_str(),
                200,
                "{\"keys\": []}".to_string(),
                "holds no signature key",
            ),
        ] {
            server.set(status, &body);
            let msg = format!(
                "{:#}",
                Authenticator::load(&url_config(url, ""), None).await.err().expect(why)
            );
            assert!(
                msg.contains(&format!("issuer {ISSUER}")) && msg.contains(url) && msg.contains(why),
                "{why}: {msg}"
            );
        }
    }
}
