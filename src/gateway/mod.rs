//! The MCP gateway: a transparent relay between MCP clients and upstream
//! MCP servers that writes every decision and execution to the ledger
//! before it takes effect.
//!
//! - `relay`: one downstream session bridged to one upstream session;
//!   `relay/admission.rs` runs the audit protocol and governance around
//!   each data-moving request.
//! - `upstream`: the transports upstream servers are reached by.
//! - `audit`: the events the gateway writes.
//! - `bootstrap`: the config's governance declarations made into events at
//!   start (it lists upstream tools to pin them, so it lives here).
//! - `safety`: secrets and personal data in results.
//! - `auth`: bearer tokens and JWTs.
//! - `http`: the axum front (streamable HTTP, auth, limits, metadata).

mod audit;
mod auth;
mod bootstrap;
mod http;
mod relay;
mod safety;
mod upstream;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use ledger::Ledger;
use rmcp::ServiceExt;

pub use crate::governance::{AuthMethod, Principal};
pub use auth::{Authenticator, new_token};
pub use bootstrap::bootstrap;
pub use http::router;

use crate::config::Config;
use crate::governance::Governance;
use audit::{Audit, Limits};
use relay::{Core, Downstream, Relay, ServerEntry};

/// Everything sessions share: the ledger, governance and the servers.
#[derive(Clone)]
pub struct Gateway {
    core: Arc<Core>,
    servers: Arc<BTreeMap<String, Arc<ServerEntry>>>,
    labels: Arc<BTreeMap<String, crate::config::ServerConfig>>,
}

impl Gateway {
    pub fn new(ledger: Arc<Ledger>, config: &Config, gov: Arc<Governance>, data_dir: &std::path::Path) -> Gateway {
        let limits = Limits {
            max_argument_bytes: config.gateway.max_argument_bytes,
            result_excerpt_bytes: config.gateway.result_excerpt_bytes,
        };
        let servers = config
            .servers
            .iter()
            .map(|(name, server)| {
                let entry = ServerEntry {
                    name: name.clone(),
                    upstream: server.into(),
                    env: server.env.clone(),
                    timeout: Duration::from_secs(server.timeout_sec.unwrap_or(config.gateway.upstream_timeout_sec)),
                    start_timeout: Duration::from_secs(
                        server
                            .start_timeout_sec
                            .unwrap_or(config.gateway.upstream_start_timeout_sec),
                    ),
                };
                (name.clone(), Arc::new(entry))
            })
            .collect();
        Gateway {
            core: Arc::new(Core {
                audit: Audit::new(ledger, limits),
                gov,
                quarantine_dir: data_dir.join("quarantine"),
                approval_progress: Duration::from_secs(config.governance.approval_progress_sec.max(1)),
            }),
            servers: Arc::new(servers),
            labels: Arc::new(config.servers.clone()),
        }
    }

    pub fn server_names(&self) -> impl Iterator<Item = &str> {
        self.servers.keys().map(String::as_str)
    }

    pub fn governance(&self) -> &Arc<Governance> {
        &self.core.gov
    }

    /// How a configured server runs, for registering it.
    pub fn server_spec(&self, server: &str) -> Option<crate::governance::ServerSpec> {
        let entry = self.servers.get(server)?;
        let labels = self.labels.get(server)?;
        Some(crate::governance::ServerSpec {
            name: server.to_string(),
            transport: entry.upstream.kind().to_string(),
            address: entry.upstream.address(),
            owner: labels.owner.clone(),
            env: entry.env.clone(),
            risk: labels.risk.clone(),
            actions: labels.actions.clone(),
        })
    }

    /// Opens a session of its own to `server` and returns the hash of each
    /// tool it lists: what approving the server pins.
    pub async fn pin_upstream_tools(&self, server: &str) -> Result<BTreeMap<String, String>> {
        let entry = self
            .servers
            .get(server)
            .with_context(|| format!("no server named {server:?} in the config"))?;
        // Every client capability, so that servers that offer some tools
        // only to capable clients list them all for pinning.
        let capabilities = serde_json::from_value(serde_json::json!({
            "roots": {"listChanged": true}, "sampling": {}, "elicitation": {"form": {}, "url": {}}
        }))
        .unwrap_or_default();
        let info = rmcp::model::ClientConfig::new(
            capabilities,
            rmcp::model::Implementation::new("sealgate-approval", env!("CARGO_PKG_VERSION")),
        );
        let running = entry
            .upstream
            .connect(server, info, entry.start_timeout)
            .await
            .map_err(anyhow::Error::msg)?;
        let tools = tokio::time::timeout(entry.timeout, running.peer().list_all_tools())
            .await
            .with_context(|| format!("{server} did not list its tools in time"))?
            .with_context(|| format!("{server} did not list its tools"))?;
        let _ = running.cancel().await;
        Ok(tools
            .iter()
            .filter_map(|t| serde_json::to_value(t).ok())
            .map(|t| {
                let name = t.get("name").and_then(|n| n.as_str()).unwrap_or_default().to_string();
                (name, crate::governance::tool_facts(&t).hash)
            })
            .collect())
    }

    fn relay(&self, server: &str, downstream: Downstream, principal: Option<Principal>) -> Option<Relay> {
        let entry = self.servers.get(server)?.clone();
        Some(Relay::new(self.core.clone(), entry, downstream, principal))
    }

    /// Serves one MCP session on this process's stdin and stdout, relayed
    /// to `server`, as `principal`. Returns when the client closes stdin.
    pub async fn serve_stdio(&self, server: &str, principal: Principal) -> Result<()> {
        let relay = self
            .relay(server, Downstream::Stdio, Some(principal))
            .with_context(|| format!("no server named {server:?} in the config"))?;
        let running = relay
            .serve(rmcp::transport::stdio())
            .await
            .context("stdio session did not start")?;
        running.waiting().await.context("stdio session failed")?;
        Ok(())
    }
}
