//! The HTTP listener, with the limits an exposed service needs:
//!
//! - a request's headers must arrive within `header_read_timeout`; the
//!   same timer closes keep-alive connections idle that long (hyper starts
//!   it whenever it waits for a request's head);
//! - at most `max_connections` connections at once. When a new one arrives
//!   at the cap, the oldest connection with no request in progress (still
//!   sending its headers, or idle between requests) is closed to make room;
//!   if every connection is serving a request, the new one is closed. A
//!   flood of slow or half-open connections therefore never locks out a
//!   client that completes its requests;
//! - the body of a request is read within `gateway.body_read_timeout_sec`
//!   (in the MCP handler);
//! - accept errors (out of file descriptors) pause accepting for a moment
//!   instead of ending the server.
//!
//! Each request carries the peer's address ([`super::http::Peer`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::http::Peer;

#[derive(Clone, Copy, Debug)]
pub struct ListenerLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

struct Conn {
    /// Requests whose response (body included) is not finished.
    busy: Arc<AtomicUsize>,
    close: CancellationToken,
}

#[derive(Default)]
struct Conns {
    next: u64,
    /// By arrival order.
    open: BTreeMap<u64, Conn>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Serves `app` on `listener` until `shutdown` is cancelled; then stops
/// accepting and gives open connections `grace` to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ListenerLimits,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let conns = Arc::new(Mutex::new(Conns::default()));
    let closing = CancellationToken::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!("accept failed: {e}; pausing");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some((id, busy, close)) = admit(&conns, limits.max_connections, &closing) else {
            tracing::warn!(%peer, "connection limit of {} reached and every connection is busy: refused", limits.max_connections);
            drop(stream);
            continue;
        };
        let app = app.clone();
        let conns = Arc::clone(&conns);
        tokio::spawn(async move {
            serve_connection(stream, peer, app, limits, Arc::clone(&busy), close).await;
            lock(&conns).open.remove(&id);
        });
    }
    closing.cancel();
    let deadline = tokio::time::Instant::now() + grace;
    while !lock(&conns).open.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A place for a new connection, making room if needed.
fn admit(
    conns: &Mutex<Conns>,
    max: usize,
    closing: &CancellationToken,
) -> Option<(u64, Arc<AtomicUsize>, CancellationToken)> {
    let mut c = lock(conns);
    if c.open.len() >= max {
        let idle = c
            .open
            .iter()
            .find(|(_, conn)| conn.busy.load(Ordering::SeqCst) == 0)
            .map(|(id, _)| *id)?;
        if let Some(conn) = c.open.remove(&idle) {
            conn.close.cancel();
        }
    }
    c.next += 1;
    let id = c.next;
    let busy = Arc::new(AtomicUsize::new(0));
    let close = closing.child_token();
    c.open.insert(
        id,
        Conn {
            busy: Arc::clone(&busy),
            close: close.clone(),
        },
    );
    Some((id, busy, close))
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: ListenerLimits,
    busy: Arc<AtomicUsize>,
    close: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(Peer(peer));
        let guard = Busy::new(Arc::clone(&busy));
        let app = app.clone();
        async move {
            let response = app.oneshot(request.map(Body::new)).await?;
            // The connection stays busy until the body is sent in full
            // (event streams included).
            Ok::<_, std::convert::Infallible>(response.map(|body| Body::new(Guarded { body, _guard: guard })))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        }
        _ = close.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
        }
    }
}

/// Marks a connection busy while one of its responses is unfinished.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn new(count: Arc<AtomicUsize>) -> Busy {
        count.fetch_add(1, Ordering::SeqCst);
        Busy(count)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its connection marked busy until dropped.
struct Guarded {
    body: Body,
    _guard: Busy,
}

impl http_body::Body for Guarded {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
