//! JWTs as an issuer signs them (Ed25519, with a key id) and the JWKS that
//! publishes their keys: for the tests of JWT authentication.

use serde_json::{Value, json};

/// An Ed25519 signing key with a key id, as an issuer would hold it.
pub struct JwtKey {
    pub key: ed25519_dalek::SigningKey,
    pub kid: String,
}

impl JwtKey {
    pub fn generate(kid: &str) -> JwtKey {
        JwtKey {
            key: ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng),
            kid: kid.to_string(),
        }
    }

    /// The public half as a JWK (RFC 8037 OKP).
    pub fn jwk(&self) -> Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": base64url(self.key.verifying_key().as_bytes()),
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        })
    }

    pub fn sign(&self, claims: &Value) -> String {
        // PKCS#8 v1 of an Ed25519 seed (RFC 8410): a fixed prefix, then the seed.
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
        ];
        der.extend_from_slice(&self.key.to_bytes());
        let key = jsonwebtoken::EncodingKey::from_ed_der(&der);
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &key).expect("sign the JWT")
    }
}

pub fn jwks(keys: &[&JwtKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()})
}

pub fn base64url(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Seconds since the Unix epoch, as JWT times are written.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Claims of a token from `issuer` for `sub` for audience `sealgate`,
/// valid from 5 s ago for ten minutes, with `extra` claims added or
/// replacing these.
pub fn claims(issuer: &str, sub: &str, extra: Value) -> Value {
    let now = unix_now();
    let mut claims =
        json!({"iss": issuer, "aud": "sealgate", "sub": sub, "iat": now, "nbf": now - 5, "exp": now + 600});
    if let (Some(base), Value::Object(extra)) = (claims.as_object_mut(), extra) {
        base.extend(extra);
    }
    claims
}

/// Claims of a token carol (groups `payments`, `oncall`) may use now,
/// from `issuer`, with `changes` applied.
pub fn carol(issuer: &str, changes: Value) -> Value {
    let mut extra = json!({"groups": ["payments", "oncall"]});
    if let (Some(base), Value::Object(changes)) = (extra.as_object_mut(), changes) {
        base.extend(changes);
    }
    claims(issuer, "carol", extra)
}
