//! Who is calling: bearer tokens, checked against static token hashes and
//! JWT issuers.
//!
//! The tokens file stores only SHA-256 hashes, so a copy of it grants
//! nothing. JWTs are checked for signature (keys from the issuer's JWKS,
//! asymmetric algorithms only), `iss`, `aud`, `exp` and `nbf`.
//!
//! Identities cannot collide: a JWT principal is its issuer's namespace
//! (`principal_prefix`, default `ISSUER#`) followed by the principal claim;
//! no issuer's namespace starts another's (checked with the config), and no
//! static-token or anonymous principal starts with an issuer's namespace or
//! with `sealgate:`, the gateway's own actors (checked here). An issuer's
//! roles claim counts only with `grant_roles = true`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    tokens: Tokens,
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
        let mut auth = Authenticator {
            tokens: Tokens::new(),
            issuers,
            anonymous,
        };
        if let Some(name) = &auth.anonymous {
            auth.check_local_principal(name)
                .context("config: gateway.anonymous_principal")?;
        }
        if let Some(path) = &config.tokens_file {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read tokens file {}", path.display()))?;
            auth.tokens = auth.parse_tokens(path, &text)?;
        }
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
        if let Some(entry) = self.tokens.get(&hash) {
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

        fn tokens_file(&self) -> std::path::PathBuf {
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
}
