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
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::{AuthConfig, JwtIssuerConfig, RESERVED_PRINCIPAL_PREFIX};
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
    keys: Mutex<Keys>,
}

struct Keys {
    set: JwkSet,
    fetched: Instant,
}

/// How long before an unknown `kid` may trigger another JWKS fetch.
const JWKS_REFETCH: Duration = Duration::from_secs(60);

impl Authenticator {
    /// Loads the tokens file and every issuer's JWKS. Fails on a malformed
    /// file, naming it (and the line), and on a static-token or anonymous
    /// principal in an issuer's namespace.
    pub async fn load(config: &AuthConfig, anonymous: Option<String>) -> Result<Authenticator> {
        config.check()?;
        let mut issuers = Vec::new();
        for jwt in &config.jwt {
            let set = fetch_jwks(jwt).await?;
            issuers.push(Issuer {
                config: jwt.clone(),
                namespace: jwt.namespace(),
                keys: Mutex::new(Keys {
                    set,
                    fetched: Instant::now(),
                }),
            });
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
        if key.is_none() && header.kid.is_some() && self.may_refetch() {
            if let Ok(set) = fetch_jwks(&self.config).await {
                *self.keys.lock().unwrap_or_else(|p| p.into_inner()) = Keys {
                    set,
                    fetched: Instant::now(),
                };
            }
            key = self.key(header.kid.as_deref(), header.alg);
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
        let candidates: Vec<_> = match kid {
            Some(kid) => keys.set.find(kid).into_iter().collect(),
            None => keys.set.keys.iter().collect(),
        };
        candidates
            .into_iter()
            // A key that names its algorithm is only good for that one.
            .filter(|jwk| {
                jwk.common
                    .key_algorithm
                    .is_none_or(|a| a.to_string() == format!("{alg:?}"))
            })
            .find_map(|jwk| DecodingKey::from_jwk(jwk).ok())
    }

    fn may_refetch(&self) -> bool {
        self.config.jwks_url.is_some()
            && self.keys.lock().unwrap_or_else(|p| p.into_inner()).fetched.elapsed() > JWKS_REFETCH
    }
}

fn parse_hash(hex_text: &str) -> Result<[u8; 32]> {
    let bytes = hex::decode(hex_text.trim()).context("sha256 is not hex")?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| anyhow::anyhow!("sha256 has {} bytes, want 32", b.len()))
}

async fn fetch_jwks(config: &JwtIssuerConfig) -> Result<JwkSet> {
    let text = match (&config.jwks_file, &config.jwks_url) {
        (Some(path), _) => std::fs::read_to_string(path)
            .with_context(|| format!("issuer {}: cannot read jwks_file {}", config.issuer, path.display()))?,
        (None, Some(url)) => {
            check_loopback(url).with_context(|| format!("issuer {}: jwks_url {url}", config.issuer))?;
            let response = reqwest::Client::new()
                .get(url)
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .with_context(|| format!("issuer {}: cannot fetch jwks_url {url}", config.issuer))?;
            if !response.status().is_success() {
                bail!(
                    "issuer {}: jwks_url {url} answered {}",
                    config.issuer,
                    response.status()
                );
            }
            response
                .text()
                .await
                .with_context(|| format!("issuer {}: reading jwks_url {url}", config.issuer))?
        }
        (None, None) => bail!("issuer {}: no jwks_file or jwks_url", config.issuer),
    };
    serde_json::from_str(&text).with_context(|| format!("issuer {}: jwks is not a valid JWK set", config.issuer))
}

/// JWKS over plain HTTP is only trusted from this machine. The host is
/// the one the URL parser (and so the fetch) connects to, not a prefix of
/// the authority: `http://localhost:80@example.com/` is example.com.
fn check_loopback(url: &str) -> Result<()> {
    let parsed = reqwest::Url::parse(url).context("not a URL")?;
    if !matches!(parsed.scheme(), "http" | "https") {
        bail!("not an http(s) URL");
    }
    let host = parsed
        .host_str()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("host {host:?} is not a loopback address");
    }
    Ok(())
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

    #[test]
    fn loopback_hosts_only() {
        assert!(check_loopback("http://127.0.0.1:8080/jwks.json").is_ok());
        assert!(check_loopback("http://localhost/jwks").is_ok());
        assert!(check_loopback("http://[::1]:9/jwks").is_ok());
        assert!(check_loopback("http://10.0.0.1/jwks").is_err());
        assert!(check_loopback("http://example.com/jwks").is_err());
        assert!(check_loopback("http://localhost:80@example.com/jwks").is_err());
        assert!(check_loopback("http://127.0.0.1@10.0.0.1/jwks").is_err());
        assert!(check_loopback("http://127.0.0.1.nip.io/jwks").is_err());
        assert!(check_loopback("ftp://127.0.0.1/jwks").is_err());
    }

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
}
