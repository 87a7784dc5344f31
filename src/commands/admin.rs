//! Commands that change governance go through the running gateway's admin
//! API (the gateway is the ledger's only writer): approvals, registry,
//! grants, policy.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::config::Config;

/// Where the admin API is and who calls it.
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(config: &Config, api: Option<String>, token: Option<String>) -> Result<Client> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base = api.unwrap_or_else(|| format!("http://{}", config.gateway.listen));
        let token = token.context("an admin API token is needed: --token or SEALGATE_TOKEN")?;
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::new(),
        })
    }

    /// Sends a request and prints the JSON answer; a non-2xx answer is an
    /// error naming its status and message.
    pub fn call(&self, method: reqwest::Method, path: &str, body: Option<Body>) -> Result<ExitCode> {
        let url = format!("{}{path}", self.base);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (status, text) = rt.block_on(async {
            let mut req = self.http.request(method, &url).bearer_auth(&self.token);
            req = match body {
                Some(Body::Json(v)) => req.json(&v),
                Some(Body::Text(t, origin)) => req.header("x-sealgate-origin", origin).body(t),
                None => req,
            };
            let resp = req
                .send()
                .await
                .with_context(|| format!("cannot reach the admin API at {url}"))?;
            let status = resp.status();
            let text = resp
                .text()
                .await
                .with_context(|| format!("reading the answer of {url}"))?;
            anyhow::Ok((status, text))
        })?;
        let pretty = serde_json::from_str::<serde_json::Value>(&text)
            .map(|v| serde_json::to_string_pretty(&v).unwrap_or(text.clone()))
            .unwrap_or(text.clone());
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or(text);
            bail!("{status}: {message}");
        }
        writeln!(std::io::stdout().lock(), "{pretty}")?;
        Ok(ExitCode::SUCCESS)
    }
}

pub enum Body {
    Json(serde_json::Value),
    Text(String, String),
}
