//! The MCP gateway: a relay between MCP clients and upstream MCP servers
//! that writes every decision and execution to the ledger before it takes
//! effect, and relays only what it recognises.
//!
//! - `mcp`: JSON-RPC messages and the catalogue of MCP methods relayed.
//! - `relay`: one downstream session bridged to one upstream session;
//!   `relay/admission.rs` runs the audit protocol and governance around
//!   each call.
//! - `upstream`: the transports upstream servers are reached by.
//! - `http`, `listener`: the streamable-HTTP front and its listener;
//!   `stdio`: one session on stdin/stdout.
//! - `audit`: the events the gateway writes.
//! - `bootstrap`: the config's governance declarations made into events at
//!   start (it lists upstream tools to pin them, so it lives here).
//! - `safety`: secrets and personal data in what upstreams send.
//! - `findable`: keyed digests of redacted values, and the search by value.
//! - `auth`: bearer tokens and JWTs.
//! - `credentials`: per-user upstream credentials.

mod audit;
mod auth;
mod bootstrap;
pub mod credentials;
pub mod findable;
#[cfg(test)]
mod golden;
mod http;
mod lines;
pub mod listener;
pub mod local;
pub mod mcp;
mod relay;
pub mod safety;
mod sse;
mod stdio;
mod upstream;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use ledger::Ledger;

pub use crate::governance::{AuthMethod, Principal};
pub use auth::{Authenticator, new_token};
pub use bootstrap::bootstrap;
pub use http::{Peer, router};
pub use upstream::INHERITED_ENV;

use crate::config::Config;
use crate::governance::Governance;
use audit::{Audit, Limits};
use relay::{Core, ServerEntry, SessionLimits};
use upstream::{LinkLimits, ProcessLimit, Upstream};

/// Everything sessions share: the ledger, governance and the servers.
#[derive(Clone)]
pub struct Gateway {
    core: Arc<Core>,
    servers: Arc<BTreeMap<String, Arc<ServerEntry>>>,
    labels: Arc<BTreeMap<String, crate::config::ServerConfig>>,
}

impl Gateway {
    /// The gateway on its ledger; `find_key` digests what output safety
    /// redacts (`findable`). Fails if a server's credentials (environment
    /// or header values given by reference, its per-user `credentials`
    /// source) cannot be read.
    pub fn new(
        ledger: Arc<Ledger>,
        config: &Config,
        gov: Arc<Governance>,
        data_dir: &std::path::Path,
        find_key: findable::FindKey,
    ) -> Result<Gateway> {
        let g = &config.gateway;
        let limits = Limits {
            max_argument_bytes: g.max_argument_bytes,
            result_excerpt_bytes: g.result_excerpt_bytes,
        };
        let mut servers = BTreeMap::new();
        for (name, server) in &config.servers {
            let upstream = match server.transport {
                crate::config::TransportKind::Stdio => Upstream::Stdio {
                    command: server.command.clone().unwrap_or_default(),
                    args: server.args.clone(),
                    environment: resolve(name, "environment", &server.environment)?,
                    cwd: server.cwd.clone(),
                    no_network: server.network == Some(crate::config::Network::Isolated),
                },
                crate::config::TransportKind::Http => Upstream::Http {
                    url: server.url.clone().unwrap_or_default(),
                    headers: resolve(name, "headers", &server.headers)?,
                },
            };
            let credentials = server
                .credentials
                .as_ref()
                .map(|c| credentials::Credentials::load(name, server, c).map(Arc::new))
                .transpose()?;
            let entry = ServerEntry {
                name: name.clone(),
                upstream,
                credentials,
                env: server.env.clone(),
                timeout: Duration::from_secs(server.timeout_sec.unwrap_or(g.upstream_timeout_sec)),
                start_timeout: Duration::from_secs(server.start_timeout_sec.unwrap_or(g.upstream_start_timeout_sec)),
                allow_methods: server.allow_methods.iter().cloned().collect::<BTreeSet<_>>(),
            };
            servers.insert(name.clone(), Arc::new(entry));
        }
        Ok(Gateway {
            core: Arc::new(Core {
                audit: Audit::new(Arc::clone(&ledger), limits),
                ledger,
                find_key,
                gov,
                quarantine_dir: data_dir.join("quarantine"),
                data_dir: data_dir.to_owned(),
                approval_progress: Duration::from_secs(config.governance.approval_progress_sec.max(1)),
                link: LinkLimits {
                    max_message_bytes: g.max_upstream_message_bytes,
                },
                processes: ProcessLimit::new(g.max_upstream_processes),
                sessions: Arc::new(SessionLimits::new(g.max_sessions, g.max_sessions_per_principal)),
                drift: Default::default(),
                open: Default::default(),
                limits: Default::default(),
            }),
            servers: Arc::new(servers),
            labels: Arc::new(config.servers.clone()),
        })
    }

    /// Reads back from the log the counts of the quotas of the policy in
    /// force, so that the first call does not wait for it.
    pub async fn recover_quotas(&self) -> Result<()> {
        let view = self.core.gov.view().await?;
        if let Some(policy) = view.policy.as_deref() {
            self.core
                .limits
                .recover(&self.core.ledger, policy)
                .await
                .context("counting the policy's quotas from the ledger")?;
        }
        Ok(())
    }

    /// The ledger the gateway writes (readers use it read-only).
    pub fn ledger(&self) -> Arc<Ledger> {
        Arc::clone(&self.core.ledger)
    }

    /// The data directory (the ledger's, and the derived stores').
    pub fn data_dir(&self) -> &std::path::Path {
        &self.core.data_dir
    }

    pub fn server_names(&self) -> impl Iterator<Item = &str> {
        self.servers.keys().map(String::as_str)
    }

    pub fn governance(&self) -> &Arc<Governance> {
        &self.core.gov
    }

    /// The events from `from` to `to` (inclusive; default the whole log)
    /// that carried `value` in a redacted field (see `findable`). Reads
    /// the ledger off the async workers.
    pub async fn find(
        &self,
        value: String,
        from: Option<u64>,
        to: Option<u64>,
    ) -> Result<findable::Found, findable::FindError> {
        let core = self.core();
        tokio::task::spawn_blocking(move || {
            let last = core.ledger.last_stored_seq()?.unwrap_or(0).max(core.ledger.head().seq);
            let to = to.map_or(last, |t| t.min(last));
            findable::search(&core.ledger, &core.find_key, &value, from.unwrap_or(0), to)
        })
        .await
        .map_err(|e| findable::FindError::Stopped(e.to_string()))?
    }

    /// Closes every open session (each recorded: `session.closed` with
    /// `reason`), all at once; returns when all are recorded.
    pub async fn close_sessions(&self, reason: events::CloseReason, why: &str) {
        let sessions = self.core.open.all();
        if !sessions.is_empty() {
            tracing::info!("closing {} open sessions: {why}", sessions.len());
        }
        futures::future::join_all(sessions.iter().map(|s| s.close(reason, why, None))).await;
    }

    /// Makes a suspension just written effective in the open sessions it
    /// stops: their held calls are withdrawn and running ones cancelled at
    /// the peer, each recorded with the suspension, and the sessions are
    /// closed (`session.closed`, `suspended`): nothing more flows through
    /// them in either direction (calls, listings, pings, notifications, a
    /// server's requests to the client). New sessions and calls are denied
    /// by the decision itself. Returns (sessions closed, calls withdrawn).
    pub async fn enforce_suspension(&self, suspension: &crate::governance::suspensions::Suspension) -> (usize, usize) {
        let why = suspension.describe();
        let stopped: Vec<_> = self
            .core
            .open
            .all()
            .into_iter()
            .filter(|s| s.stopped_by(suspension))
            .collect();
        // Every stopped session's calls are withdrawn at once, then the
        // sessions are closed together: each close waits for its calls to
        // end, and one after another they would leave the later sessions'
        // calls running meanwhile.
        // Callers are told the suspension, not who issued it or why (its
        // id names that in the log).
        let told = suspension.told();
        let withdrawn: usize = stopped.iter().map(|s| s.withdraw_calls(&told)).sum();
        // Closed, whatever the target: an open session would still carry
        // listings, pings and notifications to and from a suspended
        // principal, team or server (and a server's tools/list_changed
        // could start its process again).
        futures::future::join_all(
            stopped
                .iter()
                .map(|s| s.close(events::CloseReason::Suspended, &told, Some(suspension.id.clone()))),
        )
        .await;
        let closed = stopped.len();
        tracing::warn!(
            suspension = %suspension.id,
            "{why}: {closed} sessions closed, {withdrawn} calls withdrawn"
        );
        (closed, withdrawn)
    }

    /// Whether a session of that id is open now.
    pub fn session_open(&self, id: &str) -> bool {
        self.core.open.get(id).is_some()
    }

    /// The owners (name, teams) of the sessions open now.
    pub fn session_owners(&self) -> Vec<(String, Vec<String>)> {
        self.core.open.all().iter().map(|s| s.owner()).collect()
    }

    /// Whether `server` is configured here.
    pub fn has_server(&self, server: &str) -> bool {
        self.servers.contains_key(server)
    }

    fn core(&self) -> Arc<Core> {
        Arc::clone(&self.core)
    }

    fn entry(&self, server: &str) -> Option<Arc<ServerEntry>> {
        self.servers.get(server).cloned()
    }

    /// Upstream processes running now.
    pub fn upstream_processes(&self) -> usize {
        self.core.processes.running()
    }

    /// How a configured server runs, for registering it (its address with
    /// credentials masked).
    pub fn server_spec(&self, server: &str) -> Option<crate::governance::ServerSpec> {
        let entry = self.servers.get(server)?;
        let labels = self.labels.get(server)?;
        Some(crate::governance::ServerSpec {
            name: server.to_string(),
            transport: entry.upstream.transport(),
            address: entry.upstream.address(),
            owner: labels.owner.clone(),
            env: entry.env.clone(),
            risk: labels.risk.clone(),
            actions: labels.actions.clone(),
        })
    }

    /// Lists the server's tools in a session of the gateway's own and
    /// returns the hash of each: what approving the server pins.
    pub async fn pin_upstream_tools(&self, server: &str) -> Result<BTreeMap<String, String>> {
        let entry = self
            .servers
            .get(server)
            .with_context(|| format!("no server named {server:?} in the config"))?;
        let tools = relay::list_tools(entry, self.core.link, &self.core.processes)
            .await
            .map_err(anyhow::Error::msg)?;
        Ok(relay::tool_hashes(&tools))
    }

    /// Serves one MCP session on this process's stdin and stdout, relayed
    /// to `server`, as `principal`. Returns when the client closes stdin.
    pub async fn serve_stdio(&self, server: &str, principal: Principal, max_message_bytes: usize) -> Result<()> {
        let entry = self
            .entry(server)
            .with_context(|| format!("no server named {server:?} in the config"))?;
        stdio::serve(self.core(), entry, principal, max_message_bytes).await
    }
}

/// A principal `sealgate stdio` may record (given with `--principal`, in
/// an attachment's header, or `gateway.stdio_principal`): not empty, not
/// one of the gateway's own actors, and not in a JWT issuer's namespace
/// (`reserved`: what [`stdio_reserved`] gives), so a local process cannot
/// pose as an issuer's user.
pub fn check_stdio_principal(name: &str, reserved: &[String]) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("the principal is empty".into());
    }
    if let Some(prefix) = reserved.iter().find(|p| name.starts_with(p.as_str())) {
        return Err(format!(
            "principal {name:?} is in the namespace {prefix:?} of a JWT issuer: a stdio session cannot claim it"
        ));
    }
    if name.starts_with(crate::config::RESERVED_PRINCIPAL_PREFIX) {
        return Err(format!(
            "principal {name:?} is reserved: names starting with {:?} are the gateway's own actors",
            crate::config::RESERVED_PRINCIPAL_PREFIX
        ));
    }
    Ok(())
}

/// The JWT issuers' namespaces, which stdio principals may not enter.
pub fn stdio_reserved(config: &crate::config::Config) -> Vec<String> {
    config.auth.jwt.iter().map(|j| j.namespace()).collect()
}

/// A server's `environment` or `headers`, with values given by reference
/// (`{ env = "NAME" }`, `{ file = "PATH" }`) read now.
fn resolve(
    server: &str,
    key: &str,
    values: &BTreeMap<String, crate::config::Secret>,
) -> Result<BTreeMap<String, String>> {
    values
        .iter()
        .map(|(k, v)| {
            v.resolve()
                .map(|value| (k.clone(), value))
                .with_context(|| format!("servers.{server}.{key}.{k}"))
        })
        .collect()
}

#[cfg(test)]
mod stdio_principal_tests {
    use super::check_stdio_principal;

    #[test]
    fn stdio_principals_stay_out_of_the_gateways_and_the_issuers_names() {
        let reserved = vec!["https://idp.example#".to_string(), "corp:".to_string()];
        assert!(check_stdio_principal("alice", &reserved).is_ok());
        for bad in ["", "sealgate:config", "https://idp.example#alice", "corp:bob"] {
            let e = check_stdio_principal(bad, &reserved).expect_err(bad);
            assert!(e.contains("principal") && (bad.is_empty() || e.contains(bad)), "{e}");
        }
    }
}
