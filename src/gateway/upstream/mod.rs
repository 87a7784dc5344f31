//! Upstream MCP servers: how the gateway reaches them, and the raw
//! message link it relays over.
//!
//! One closed enum of transports, so every place that opens a connection
//! handles every transport. Each downstream session gets its own upstream
//! session (for stdio, its own child process): sessions carry state (log
//! level, subscriptions, roots), and a crashed child is replaced by the
//! next session.
//!
//! The link carries [`Message`]s, read strictly from the upstream's bytes
//! ([`Message::parse`]): a message the upstream sends that is not one
//! JSON-RPC message (a duplicate key, a batch, an unknown member) arrives
//! as [`Inbound::Refused`], never as a message.
//!
//! What the upstream is told of the gateway's environment is what its
//! config says: a stdio child starts with a clean environment (the
//! [`INHERITED_ENV`] allowlist plus the server's `environment`), in its own
//! process group, and dies with the gateway (`PR_SET_PDEATHSIG`); events and
//! errors name an upstream by [`Upstream::address`], with credentials
//! masked.

mod child;
mod http;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::credentials::Credential;
use super::mcp::{Id, Message, Refusal};
use crate::json::Json;

pub use child::{INHERITED_ENV, ProcessLimit};

/// A configured upstream, with its credentials resolved.
#[derive(Clone, Debug)]
pub enum Upstream {
    Stdio {
        command: String,
        args: Vec<String>,
        /// The child's environment besides [`INHERITED_ENV`].
        environment: BTreeMap<String, String>,
        cwd: Option<PathBuf>,
        /// `network = "none"`: the child gets a network namespace of its
        /// own.
        no_network: bool,
    },
    Http {
        url: String,
        headers: BTreeMap<String, String>,
    },
}

/// Limits of one link.
#[derive(Clone, Copy, Debug)]
pub struct LinkLimits {
    /// Largest message the upstream may send.
    pub max_message_bytes: usize,
}

/// What arrives from an upstream.
#[derive(Debug)]
pub enum Inbound {
    /// A message. `related`: the gateway request on whose response stream
    /// it came (streamable HTTP only).
    Message { message: Message, related: Option<Id> },
    /// Bytes that are not one JSON-RPC message.
    Refused { refusal: Refusal, bytes: usize },
    /// The request `id` could not be delivered, or its response stream
    /// broke before the response.
    Failed { id: Id, reason: String },
}

/// A live upstream session: send with [`Sender`], receive with
/// [`Link::recv`]. Dropping the link ends the session (a stdio child is
/// killed with its process group; an HTTP session is deleted).
pub struct Link {
    pub sender: Sender,
    inbound: mpsc::Receiver<Inbound>,
    /// Messages that arrived during the handshake, before its answer.
    early: VecDeque<Inbound>,
}

impl Link {
    /// The next inbound message; `None` once the upstream is gone.
    pub async fn recv(&mut self) -> Option<Inbound> {
        if let Some(first) = self.early.pop_front() {
            return Some(first);
        }
        self.inbound.recv().await
    }
}

/// The sending half of a link; cheap to clone.
#[derive(Clone)]
pub enum Sender {
    Stdio(Arc<child::StdioSender>),
    Http(Arc<http::HttpSession>),
}

impl Sender {
    /// Sends a message. For a request over HTTP this starts its POST; the
    /// answer arrives through the link.
    pub async fn send(&self, message: &Message) -> Result<(), String> {
        match self {
            Sender::Stdio(s) => s.send(message).await,
            Sender::Http(h) => h.send(message).await,
        }
    }

    /// Ends the upstream session now.
    pub async fn close(&self) {
        match self {
            Sender::Stdio(s) => s.close(),
            Sender::Http(h) => h.close().await,
        }
    }
}

impl Upstream {
    pub fn transport(&self) -> events::Transport {
        match self {
            Upstream::Stdio { .. } => events::Transport::Stdio,
            Upstream::Http { .. } => events::Transport::Http,
        }
    }

    /// Where it is, for events and errors: the command line or the URL,
    /// with credentials masked (URL user info, query values and arguments
    /// that look like credentials).
    pub fn address(&self) -> String {
        match self {
            Upstream::Stdio { command, args, .. } => mask_command(command, args),
            Upstream::Http { url, .. } => mask_url(url),
        }
    }

    /// Starts a session: spawns or connects, sends `initialize` with
    /// `params`, waits for its result and sends `notifications/initialized`,
    /// all within `timeout`. `credential`, the caller's own, goes in its
    /// configured header (HTTP) or variable (stdio). Returns the link and
    /// the result as the upstream sent it.
    pub async fn connect(
        &self,
        server: &str,
        params: Json,
        limits: LinkLimits,
        processes: &ProcessLimit,
        timeout: Duration,
        credential: Option<&Credential>,
    ) -> Result<(Link, Json), String> {
        let address = self.address();
        let started = async {
            let (tx, rx) = mpsc::channel(256);
            let sender = match self {
                Upstream::Stdio {
                    command,
                    args,
                    environment,
                    cwd,
                    no_network,
                } => {
                    // A credential that cannot be given is an error, never
                    // a session without it.
                    let mut environment = environment.clone();
                    let mut mask = None;
                    if let Some(credential) = credential {
                        let (name, value) = credential.env().ok_or_else(|| {
                            format!("upstream {server}: the caller's credential is not configured for a variable")
                        })?;
                        environment.insert(name.to_string(), value.to_string());
                        mask = Some(value.to_string());
                    }
                    let spec = child::Spec {
                        server,
                        address: &address,
                        command,
                        args,
                        environment: &environment,
                        cwd: cwd.as_deref(),
                        mask,
                        no_network: *no_network,
                    };
                    Sender::Stdio(child::start(&spec, processes, limits, tx).await?)
                }
                Upstream::Http { url, headers } => {
                    let credential = credential
                        .map(|c| {
                            c.header().ok_or_else(|| {
                                format!("upstream {server}: the caller's credential cannot be sent in a header")
                            })
                        })
                        .transpose()?;
                    Sender::Http(http::HttpSession::new(server, url, headers, credential, limits, tx)?)
                }
            };
            let mut link = Link {
                sender,
                inbound: rx,
                early: VecDeque::new(),
            };
            let id = Id::Str("sealgate-initialize".into());
            link.sender
                .send(&Message::Request {
                    id: id.clone(),
                    method: "initialize".into(),
                    params: Some(params),
                })
                .await?;
            let mut early = VecDeque::new();
            let result = loop {
                match link.inbound.recv().await {
                    None => {
                        return Err(format!(
                            "upstream {server} ({address}) closed the session during initialize"
                        ));
                    }
                    Some(Inbound::Message {
                        message: Message::Response { id: got, result },
                        ..
                    }) if got == id => break result,
                    Some(Inbound::Message {
                        message: Message::Error { id: Some(got), error },
                        ..
                    }) if got == id => {
                        return Err(format!(
                            "upstream {server} refused initialize: {} ({})",
                            error.message, error.code
                        ));
                    }
                    Some(Inbound::Failed { id: got, reason }) if got == id => {
                        return Err(format!("upstream {server} ({address}): {reason}"));
                    }
                    Some(other) => {
                        if early.len() >= 64 {
                            return Err(format!(
                                "upstream {server} sent more than 64 messages before answering initialize"
                            ));
                        }
                        early.push_back(other);
                    }
                }
            };
            link.early = early;
            if let Sender::Http(h) = &link.sender {
                let version = result.get("protocolVersion").and_then(Json::as_str).map(str::to_string);
                h.initialized(version);
            }
            link.sender
                .send(&Message::Notification {
                    method: "notifications/initialized".into(),
                    params: None,
                })
                .await?;
            if let Sender::Http(h) = &link.sender {
                h.open_stream();
            }
            Ok((link, result))
        };
        match tokio::time::timeout(timeout, started).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "upstream {server} ({address}) did not complete initialize within {} ms",
                timeout.as_millis()
            )),
        }
    }
}

const MASK: &str = "***";

/// A command line with arguments that look like credentials masked: a
/// value the output-safety detectors find a secret in, the value of a
/// `--name=value` or `--name value` flag whose name is a secret's, and
/// URL user info and query values in arguments.
fn mask_command(command: &str, args: &[String]) -> String {
    let mut words = vec![command.to_string()];
    let mut secret_next = false;
    for arg in args {
        let masked = if secret_next {
            secret_next = false;
            MASK.to_string()
        } else if let Some((name, _)) = arg.split_once('=')
            && name.starts_with('-')
            && super::safety::is_secret_name(name)
        {
            format!("{name}={MASK}")
        } else if arg.starts_with('-') && super::safety::is_secret_name(arg) {
            secret_next = true;
            arg.clone()
        } else if arg.contains("://") {
            mask_url(arg)
        } else {
            mask_findings(arg)
        };
        words.push(masked);
    }
    words.join(" ")
}

/// Secrets the detectors find, masked.
fn mask_findings(text: &str) -> String {
    let findings: Vec<_> = super::safety::scan(text)
        .into_iter()
        .filter(|f| f.category == super::safety::Category::Secret)
        .collect();
    if findings.is_empty() {
        text.to_string()
    } else {
        super::safety::redact(text, &findings)
    }
}

/// A URL with its user info and every query value masked.
fn mask_url(url: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return mask_findings(url);
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        let _ = parsed.set_username(MASK);
        let _ = parsed.set_password(None);
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, _)| (k.into_owned(), MASK.to_string()))
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.set_fragment(None);
    mask_findings(parsed.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_mask_credentials() {
        let up = Upstream::Http {
            url: "https://bob:hunter2@mcp.example.com/mcp?api_key=sk-123&region=eu".into(),
            headers: BTreeMap::new(),
        };
        let shown = up.address();
        assert!(
            !shown.contains("hunter2") && !shown.contains("bob") && !shown.contains("sk-123"),
            "{shown}"
        );
        assert!(shown.contains("mcp.example.com/mcp"), "{shown}");
        let stdio = Upstream::Stdio {
            command: "node".into(),
            args: vec![
                "server.js".into(),
                "--api-key".into(),
                "plain-looking-value".into(),
                "--token=abc".into(),
                "postgres://admin:pw@db/x".into(),
                "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB".into(),
                "--verbose".into(),
            ],
            environment: BTreeMap::new(),
            cwd: None,
            no_network: false,
        };
        let shown = stdio.address();
        for secret in ["plain-looking-value", "abc", "admin:pw", "ghp_0123"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.starts_with("node server.js --api-key *** --token=***"), "{shown}");
        assert!(shown.ends_with("--verbose"), "{shown}");
    }
}
