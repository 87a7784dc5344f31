//! The MCP gateway: a transparent relay between MCP clients and upstream
//! MCP servers that writes every decision and execution to the ledger
//! before it takes effect.
//!
//! - `relay`: one downstream session bridged to one upstream session.
//! - `upstream`: the transports upstream servers are reached by.
//! - `audit`: the events the gateway writes.
//! - `decision`: principals and the [`Decider`] interface governance fills.
//! - `auth`: bearer tokens and JWTs.
//! - `http`: the axum front (streamable HTTP, auth, limits, metadata).

mod audit;
mod auth;
mod decision;
mod http;
mod relay;
mod upstream;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use ledger::Ledger;
use rmcp::ServiceExt;

pub use auth::{Authenticator, new_token};
pub use decision::{AuthMethod, ConfiguredServers, Decider, Principal};
pub use http::router;

use crate::config::Config;
use audit::{Audit, Limits};
use relay::{Core, Downstream, Relay, ServerEntry};

/// Everything sessions share: the ledger, the decider and the servers.
#[derive(Clone)]
pub struct Gateway {
    core: Arc<Core>,
    servers: Arc<BTreeMap<String, Arc<ServerEntry>>>,
}

impl Gateway {
    pub fn new(ledger: Arc<Ledger>, config: &Config, decider: Arc<dyn Decider>) -> Gateway {
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
                };
                (name.clone(), Arc::new(entry))
            })
            .collect();
        Gateway {
            core: Arc::new(Core {
                audit: Audit::new(ledger, limits),
                decider,
            }),
            servers: Arc::new(servers),
        }
    }

    pub fn server_names(&self) -> impl Iterator<Item = &str> {
        self.servers.keys().map(String::as_str)
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
