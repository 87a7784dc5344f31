//! Upstream MCP servers: the transports the gateway can reach them by.
//!
//! One closed enum, so every place that opens a connection handles every
//! transport. Each downstream session gets its own upstream session (for
//! stdio, its own child process): sessions carry state (log level,
//! subscriptions, roots), and a crashed child is replaced by the next
//! session.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use rmcp::service::{RoleClient, RunningService, Service, ServiceExt};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use tokio::io::AsyncBufReadExt;

use crate::config::{ServerConfig, TransportKind};

#[derive(Clone, Debug)]
pub enum Upstream {
    Stdio {
        command: String,
        args: Vec<String>,
        environment: BTreeMap<String, String>,
        cwd: Option<PathBuf>,
    },
    Http {
        url: String,
        headers: BTreeMap<String, String>,
    },
}

impl From<&ServerConfig> for Upstream {
    fn from(config: &ServerConfig) -> Upstream {
        match config.transport {
            TransportKind::Stdio => Upstream::Stdio {
                command: config.command.clone().unwrap_or_default(),
                args: config.args.clone(),
                environment: config.environment.clone(),
                cwd: config.cwd.clone(),
            },
            TransportKind::Http => Upstream::Http {
                url: config.url.clone().unwrap_or_default(),
                headers: config.headers.clone(),
            },
        }
    }
}

impl Upstream {
    pub fn kind(&self) -> &'static str {
        match self {
            Upstream::Stdio { .. } => "stdio",
            Upstream::Http { .. } => "http",
        }
    }

    /// Where it is, for events and errors: the command line or the URL.
    pub fn address(&self) -> String {
        match self {
            Upstream::Stdio { command, args, .. } => std::iter::once(command.as_str())
                .chain(args.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" "),
            Upstream::Http { url, .. } => url.clone(),
        }
    }

    /// Opens a session: starts the transport and runs the `initialize`
    /// handshake with `client`'s info, within `timeout`.
    pub async fn connect<S: Service<RoleClient>>(
        &self,
        server: &str,
        client: S,
        timeout: Duration,
    ) -> Result<RunningService<RoleClient, S>, String> {
        let started = async {
            match self {
                Upstream::Stdio {
                    command,
                    args,
                    environment,
                    cwd,
                } => {
                    let mut cmd = tokio::process::Command::new(command);
                    cmd.args(args).envs(environment).kill_on_drop(true);
                    if let Some(dir) = cwd {
                        cmd.current_dir(dir);
                    }
                    let (transport, stderr) = TokioChildProcess::builder(cmd)
                        .stderr(Stdio::piped())
                        .spawn()
                        .map_err(|e| format!("cannot start upstream {server} ({}): {e}", self.address()))?;
                    if let Some(stderr) = stderr {
                        let name = server.to_string();
                        // The child's stderr is its log; keep it in ours.
                        tokio::spawn(async move {
                            let mut lines = tokio::io::BufReader::new(stderr).lines();
                            let mut in_key = false;
                            while let Ok(Some(line)) = lines.next_line().await {
                                // Servers print what they handle; the log
                                // must not keep secrets the results may not.
                                // A private key printed over several lines is
                                // no finding line by line: its lines are
                                // withheld from its header to its end.
                                let line = if in_key {
                                    in_key = !line.contains("-----END ");
                                    "[REDACTED:private_key_block]".to_string()
                                } else {
                                    in_key = line.contains("-----BEGIN ")
                                        && line.contains("PRIVATE KEY")
                                        && !line.contains("-----END ");
                                    super::safety::redact_text_for_log(&line)
                                };
                                tracing::info!(server = %name, "upstream stderr: {line}");
                            }
                        });
                    }
                    client
                        .serve(transport)
                        .await
                        .map_err(|e| format!("upstream {server} failed to initialize: {e}"))
                }
                Upstream::Http { url, headers } => {
                    let mut custom = HashMap::new();
                    for (k, v) in headers {
                        let name = http::HeaderName::try_from(k.as_str())
                            .map_err(|e| format!("upstream {server}: header name {k:?}: {e}"))?;
                        let value = http::HeaderValue::try_from(v.as_str())
                            .map_err(|e| format!("upstream {server}: header {k}: {e}"))?;
                        custom.insert(name, value);
                    }
                    let config = StreamableHttpClientTransportConfig::with_uri(url.as_str()).custom_headers(custom);
                    let transport = StreamableHttpClientTransport::with_client(reqwest::Client::new(), config);
                    client
                        .serve(transport)
                        .await
                        .map_err(|e| format!("upstream {server} ({url}) failed to initialize: {e}"))
                }
            }
        };
        match tokio::time::timeout(timeout, started).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "upstream {server} ({}) did not complete initialize within {} ms",
                self.address(),
                timeout.as_millis()
            )),
        }
    }
}
