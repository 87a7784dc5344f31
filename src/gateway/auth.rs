//! Who is calling: bearer tokens, checked against static token hashes and
//! JWT issuers.
//!
//! The tokens file stores only SHA-256 hashes, so a copy of it grants
//! nothing. JWTs are checked for signature (keys from the issuer's JWKS,
//! asymmetric algorithms only), `iss`, `aud`, `exp` and `nbf`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::{AuthConfig, JwtIssuerConfig};
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
    tokens: HashMap<[u8; 32], TokenEntry>,
    issuers: Vec<Issuer>,
    anonymous: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    principal: String,
    #[serde(default)]
    teams: Vec<String>,
    /// Admin API roles (`admin`, `approver`, `auditor`).
    #[serde(default)]
    roles: Vec<String>,
    /// Hex SHA-256 of the token.
    sha256: String,
}

struct Issuer {
    config: JwtIssuerConfig,
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
    /// file, naming it.
    pub async fn load(config: &AuthConfig, anonymous: Option<String>) -> Result<Authenticator> {
        let mut tokens = HashMap::new();
        if let Some(path) = &config.tokens_file {
            for entry in read_tokens(path)? {
                let hash = parse_hash(&entry.sha256)
                    .with_context(|| format!("tokens file {}: principal {:?}", path.display(), entry.principal))?;
                tokens.insert(hash, entry);
            }
        }
        let mut issuers = Vec::new();
        for jwt in &config.jwt {
            let set = fetch_jwks(jwt).await?;
            issuers.push(Issuer {
                config: jwt.clone(),
                keys: Mutex::new(Keys {
                    set,
                    fetched: Instant::now(),
                }),
            });
        }
        Ok(Authenticator {
            tokens,
            issuers,
            anonymous,
        })
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
        let claims = data.claims;
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
        Ok(Principal {
            name: name.to_string(),
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

fn read_tokens(path: &Path) -> Result<Vec<TokenEntry>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read tokens file {}", path.display()))?;
    let file: TokenFile = toml::from_str(&text).map_err(|e| anyhow::anyhow!("tokens file {}: {e}", path.display()))?;
    Ok(file.token)
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
}
