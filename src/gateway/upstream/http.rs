//! Streamable-HTTP upstreams: the client side of MCP's HTTP transport.
//!
//! Each request is a POST whose answer is either one JSON message or an
//! event stream carrying the server's requests and notifications about it
//! and finally its response; those messages arrive on the link marked as
//! related to the request. Notifications and responses are POSTs answered
//! `202 Accepted`. After the handshake a GET opens the session's own event
//! stream (a server may refuse it with 405); it is reopened when it ends.
//! Closing the link deletes the upstream session (DELETE).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Inbound, LinkLimits};
use crate::gateway::mcp::{Id, Message};
use crate::gateway::sse;

const SESSION_ID: &str = "mcp-session-id";
const PROTOCOL_VERSION: &str = "mcp-protocol-version";

pub struct HttpSession {
    server: String,
    url: String,
    client: reqwest::Client,
    headers: HeaderMap,
    limits: LinkLimits,
    session_id: Mutex<Option<String>>,
    protocol_version: Mutex<Option<String>>,
    inbound: Mutex<Option<mpsc::Sender<Inbound>>>,
    closed: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl HttpSession {
    pub(super) fn new(
        server: &str,
        url: &str,
        headers: &BTreeMap<String, String>,
        credential: Option<(HeaderName, HeaderValue)>,
        limits: LinkLimits,
        inbound: mpsc::Sender<Inbound>,
    ) -> Result<Arc<HttpSession>, String> {
        let mut custom = HeaderMap::new();
        for (k, v) in headers {
            let name =
                HeaderName::try_from(k.as_str()).map_err(|e| format!("upstream {server}: header name {k:?}: {e}"))?;
            let value = HeaderValue::try_from(v.as_str()).map_err(|e| format!("upstream {server}: header {k}: {e}"))?;
            custom.insert(name, value);
        }
        // The caller's own credential, last: no static header replaces it
        // (the config refuses one of the same name anyway).
        if let Some((name, value)) = credential {
            custom.insert(name, value);
        }
        // Redirects are not part of MCP, and a followed one would carry the
        // upstream's credential headers to another origin.
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("upstream {server}: http client: {e}"))?;
        Ok(Arc::new(HttpSession {
            server: server.to_string(),
            url: url.to_string(),
            client,
            headers: custom,
            limits,
            session_id: Mutex::new(None),
            protocol_version: Mutex::new(None),
            inbound: Mutex::new(Some(inbound)),
            closed: CancellationToken::new(),
        }))
    }

    /// The handshake is done: later requests carry the negotiated version.
    pub(super) fn initialized(&self, version: Option<String>) {
        *lock(&self.protocol_version) = version;
    }

    fn request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        let mut builder = self.client.request(method, &self.url).headers(self.headers.clone());
        if let Some(id) = lock(&self.session_id).clone() {
            builder = builder.header(SESSION_ID, id);
        }
        if let Some(v) = lock(&self.protocol_version).clone() {
            builder = builder.header(PROTOCOL_VERSION, v);
        }
        builder
    }

    fn sender(&self) -> Option<mpsc::Sender<Inbound>> {
        lock(&self.inbound).clone()
    }

    pub async fn send(self: &Arc<Self>, message: &Message) -> Result<(), String> {
        if self.closed.is_cancelled() {
            return Err(format!("upstream {} session is closed", self.server));
        }
        let body = message.to_bytes();
        let post = self
            .request(reqwest::Method::POST)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .body(body);
        match message {
            Message::Request { id, .. } => {
                let id = id.clone();
                let this = Arc::clone(self);
                tokio::spawn(async move {
                    let outcome = tokio::select! {
                        outcome = this.exchange(post, &id) => outcome,
                        _ = this.closed.cancelled() => Err("the session closed".to_string()),
                    };
                    if let Err(reason) = outcome
                        && let Some(tx) = this.sender()
                    {
                        let _ = tx.send(Inbound::Failed { id, reason }).await;
                    }
                });
                Ok(())
            }
            _ => {
                let response = post
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await
                    .map_err(|e| format!("upstream {}: {e}", self.server))?;
                let status = response.status();
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("upstream {} answered HTTP {status}", self.server))
                }
            }
        }
    }

    /// POSTs a request and relays what comes back until its response.
    async fn exchange(&self, post: reqwest::RequestBuilder, id: &Id) -> Result<(), String> {
        let server = &self.server;
        let response = post.send().await.map_err(|e| format!("upstream {server}: {e}"))?;
        if let Some(session) = response.headers().get(SESSION_ID).and_then(|v| v.to_str().ok()) {
            let mut current = lock(&self.session_id);
            if current.is_none() {
                *current = Some(session.to_string());
            }
        }
        let status = response.status();
        if !status.is_success() {
            return Err(format!("upstream {server} answered HTTP {status}"));
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let Some(tx) = self.sender() else {
            return Err("the session closed".into());
        };
        let related = Some(id.clone());
        let limit = self.limits.max_message_bytes;
        let mut answered = false;
        let deliver = |bytes: &[u8]| -> (Inbound, bool) {
            match Message::parse(bytes) {
                Ok(message) => {
                    let answers = matches!(
                        &message,
                        Message::Response { id: got, .. } | Message::Error { id: Some(got), .. } if got == id
                    );
                    (
                        Inbound::Message {
                            message,
                            related: related.clone(),
                        },
                        answers,
                    )
                }
                Err(refusal) => (
                    Inbound::Refused {
                        refusal,
                        bytes: bytes.len(),
                    },
                    false,
                ),
            }
        };
        let mut stream = response.bytes_stream();
        if content_type.starts_with("text/event-stream") {
            let mut decoder = sse::Decoder::new(limit);
            loop {
                // Once answered, the stream is read to its end (briefly),
                // so that its connection goes back to the pool instead of
                // being dropped mid-body and a new one opened for the next
                // request. The answer is already on its way.
                let next = if answered {
                    match tokio::time::timeout(Duration::from_secs(1), stream.next()).await {
                        Ok(next) => next,
                        Err(_) => break,
                    }
                } else {
                    stream.next().await
                };
                let Some(chunk) = next else { break };
                let chunk = match chunk {
                    Ok(chunk) => chunk,
                    Err(_) if answered => break,
                    Err(e) => return Err(format!("upstream {server}: event stream broke: {e}")),
                };
                for data in decoder.feed(&chunk).map_err(|e| format!("upstream {server}: {e}"))? {
                    let (item, answers) = deliver(&data);
                    answered |= answers;
                    if tx.send(item).await.is_err() {
                        return Ok(());
                    }
                }
            }
        } else if content_type.starts_with("application/json") {
            let mut body = Vec::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| format!("upstream {server}: response broke: {e}"))?;
                if body.len() + chunk.len() > limit {
                    return Err(format!("upstream {server}: response exceeds {limit} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            let (item, answers) = deliver(&body);
            answered |= answers;
            let _ = tx.send(item).await;
        } else {
            return Err(format!(
                "upstream {server} answered with content type {content_type:?}, not json or an event stream"
            ));
        }
        if answered {
            Ok(())
        } else {
            Err(format!(
                "upstream {server}: the response stream ended without the response"
            ))
        }
    }

    /// Opens (and keeps open) the session's GET event stream.
    pub(super) fn open_stream(self: &Arc<Self>) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(500);
            loop {
                let get = this.request(reqwest::Method::GET).header(ACCEPT, "text/event-stream");
                let result = tokio::select! {
                    r = this.listen(get) => r,
                    _ = this.closed.cancelled() => return,
                };
                match result {
                    // The server offers no stream of its own: fine.
                    Err(Some(status)) if status == 405 || status == 404 => return,
                    Err(_) => backoff = (backoff * 2).min(Duration::from_secs(30)),
                    Ok(()) => backoff = Duration::from_millis(500),
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = this.closed.cancelled() => return,
                }
            }
        });
    }

    /// Relays one GET stream until it ends. `Err(Some(status))` when the
    /// server refused it.
    async fn listen(&self, get: reqwest::RequestBuilder) -> Result<(), Option<u16>> {
        let response = get.send().await.map_err(|_| None)?;
        let status = response.status();
        if !status.is_success() {
            return Err(Some(status.as_u16()));
        }
        let Some(tx) = self.sender() else { return Ok(()) };
        let mut decoder = sse::Decoder::new(self.limits.max_message_bytes);
        let mut stream = response.bytes_stream();
        while let Some(Ok(chunk)) = stream.next().await {
            let Ok(events) = decoder.feed(&chunk) else {
                tracing::warn!(server = %self.server, "upstream event stream: an event over the size limit; reconnecting");
                return Err(None);
            };
            for data in events {
                let item = match Message::parse(&data) {
                    Ok(message) => Inbound::Message { message, related: None },
                    Err(refusal) => Inbound::Refused {
                        refusal,
                        bytes: data.len(),
                    },
                };
                if tx.send(item).await.is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    pub async fn close(&self) {
        if self.closed.is_cancelled() {
            return;
        }
        self.closed.cancel();
        lock(&self.inbound).take();
        if lock(&self.session_id).is_some() {
            let delete = self.request(reqwest::Method::DELETE).timeout(Duration::from_secs(5));
            let _ = delete.send().await;
        }
    }
}
