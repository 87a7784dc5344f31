//! The gateway's own view of an upstream's tools: what approval pins and
//! what drift is judged against.
//!
//! A caller's listing is shaped by that caller (a server may offer some
//! tools only to clients with sampling, elicitation or roots), so it never
//! changes the pins or records drift. The gateway lists the tools itself,
//! in a session of its own that declares every capability it relays and
//! follows every page, and records drift from that listing alone, naming
//! the session whose traffic showed the difference. One listing runs per
//! server at a time; the checks asked for while it runs are all served by
//! the next one, so a flood of `tools/list_changed` (or of listings that
//! differ from the pins) starts two listings, not one per message.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{ServerEntry, Session, lock};
use crate::gateway::mcp::{Id, Message};
use crate::gateway::upstream::{Inbound, LinkLimits, ProcessLimit};
use crate::governance::{Revealer, tool_facts};
use crate::json::Json;

/// One trusted listing at a time per server.
#[derive(Default)]
pub struct DriftChecks {
    running: Mutex<HashMap<String, Arc<Turn>>>,
}

/// A server's drift checks: each check asked for takes a ticket; a listing
/// serves every ticket taken before it started.
#[derive(Default)]
struct Turn {
    asked: AtomicU64,
    /// Held while a listing runs: the last ticket the last listing served.
    served: tokio::sync::Mutex<u64>,
}

/// Lists `entry`'s tools in a session of the gateway's own (every client
/// capability, every page), within the server's start and request
/// timeouts.
pub async fn list_tools(
    entry: &ServerEntry,
    limits: LinkLimits,
    processes: &ProcessLimit,
) -> Result<Vec<Json>, String> {
    let name = &entry.name;
    let params = Json::from_serde(&serde_json::json!({
        "protocolVersion": super::HANDSHAKE_VERSIONS[super::HANDSHAKE_VERSIONS.len() - 1],
        "capabilities": {"roots": {"listChanged": true}, "sampling": {}, "elicitation": {"form": {}, "url": {}}},
        "clientInfo": {"name": "sealgate-gateway", "version": env!("CARGO_PKG_VERSION")},
    }));
    // The gateway's own session has no caller: on a server with per-user
    // credentials it uses the gateway's own entry, and lists nothing
    // without one.
    let credential = entry
        .credential(crate::gateway::credentials::GATEWAY_PRINCIPAL)
        .await
        .map_err(|e| format!("the gateway's own session cannot list the tools: {e}"))?;
    let (mut link, _) = entry
        .upstream
        .connect(
            name,
            params,
            limits,
            processes,
            entry.start_timeout,
            credential.as_ref(),
        )
        .await?;
    let listing = async {
        let mut tools = Vec::new();
        let mut gathered = 0;
        let mut cursor: Option<Json> = None;
        for page in 0..1000 {
            let id = Id::Str(format!("sealgate-tools-{page}"));
            let params = cursor.take().map(|c| Json::Object(vec![("cursor".into(), c)]));
            link.sender
                .send(&Message::Request {
                    id: id.clone(),
                    method: "tools/list".into(),
                    params,
                })
                .await?;
            let result = loop {
                match link.recv().await {
                    None => return Err(format!("upstream {name} closed the session while listing its tools")),
                    Some(Inbound::Message { message, .. }) => match message {
                        Message::Response { id: got, result } if got == id => break result,
                        Message::Error { id: Some(got), error } if got == id => {
                            return Err(format!("upstream {name} refused tools/list: {}", error.message));
                        }
                        // The gateway's own session has no user to ask.
                        Message::Request { id: rid, method, .. } => {
                            let answer = match method.as_str() {
                                "ping" => Message::Response {
                                    id: rid,
                                    result: Json::Object(Vec::new()),
                                },
                                "roots/list" => Message::Response {
                                    id: rid,
                                    result: Json::object([("roots", Json::Array(Vec::new()))]),
                                },
                                _ => Message::Error {
                                    id: Some(rid),
                                    error: super::rpc(
                                        crate::gateway::mcp::code::METHOD_NOT_FOUND,
                                        "the gateway's own session does not answer this",
                                    ),
                                },
                            };
                            link.sender.send(&answer).await?;
                        }
                        _ => {}
                    },
                    Some(Inbound::Failed { id: got, reason }) if got == id => return Err(reason),
                    Some(_) => {}
                }
            };
            crate::gateway::mcp::method("tools/list", crate::gateway::mcp::Direction::Up)
                .map_or(Ok(()), |m| m.check_result(&result))
                .map_err(|e| format!("upstream {name}: {e}"))?;
            if let Some(items) = result.get("tools").and_then(Json::as_array) {
                gathered += listed_bytes(items);
                if gathered > limits.max_message_bytes {
                    return Err(format!(
                        "upstream {name} listed more tools than one message may hold (max_upstream_message_bytes)"
                    ));
                }
                tools.extend(items.iter().cloned());
            }
            match result.get("nextCursor") {
                Some(c @ Json::String(_)) => cursor = Some(c.clone()),
                _ => return Ok(tools),
            }
        }
        Err(format!("upstream {name} listed more than 1000 pages of tools"))
    };
    let tools = tokio::time::timeout(entry.timeout, listing)
        .await
        .map_err(|_| format!("{name} did not list its tools within {} ms", entry.timeout.as_millis()))?;
    link.sender.close().await;
    tools
}

/// The size of listed tools as text. A listing that follows pages gathers
/// at most as much as one message may hold (`max_upstream_message_bytes`):
/// an upstream that always names a next page would otherwise fill memory,
/// a message's worth per page.
pub(super) fn listed_bytes(tools: &[Json]) -> usize {
    tools.iter().map(|t| t.to_text().len()).sum()
}

/// The name and pinned hash of each listed tool.
pub fn hashes(tools: &[Json]) -> BTreeMap<String, String> {
    tools
        .iter()
        .filter_map(|t| {
            let name = t.get("name").and_then(Json::as_str)?;
            Some((name.to_string(), tool_facts(&t.to_serde()).hash))
        })
        .collect()
}

/// Lists the tools of the session's server in the gateway's own session
/// and records drift from the pins (`tools.drifted`), naming `revealer`.
pub async fn check_drift(session: &Session, revealer: Option<Revealer>) {
    let name = session.server.name.clone();
    let core = &session.core;
    // A closing session asks nothing more of its server, and a suspended
    // server is not started again for the gateway's own listing.
    if session.is_closed() {
        return;
    }
    match core.gov.view().await {
        Ok(view)
            if view
                .state
                .suspensions
                .of(events::SuspensionTarget::Server, &name)
                .is_some() =>
        {
            return;
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(server = %name, "cannot check for drift: {e}");
            return;
        }
    }
    let turn = Arc::clone(lock(&core.drift.running).entry(name.clone()).or_default());
    let ticket = turn.asked.fetch_add(1, Ordering::SeqCst) + 1;
    let mut served = turn.served.lock().await;
    if *served >= ticket {
        // A listing that started after this check was asked for ran.
        return;
    }
    // Every ticket taken so far was taken before this listing starts.
    *served = turn.asked.load(Ordering::SeqCst);
    match list_tools(&session.server, core.link, &core.processes).await {
        Ok(tools) => {
            if let Err(e) = core
                .gov
                .observe_tools(&name, &hashes(&tools), true, revealer.as_ref())
                .await
            {
                tracing::error!(server = %name, "drift not recorded: {e}");
            }
        }
        Err(e) => tracing::warn!(server = %name, "cannot list the upstream's tools to check for drift: {e}"),
    }
}

/// [`check_drift`] in the background.
pub fn check_drift_later(session: Arc<Session>, revealer: Option<Revealer>) {
    tokio::spawn(async move { check_drift(&session, revealer).await });
}
