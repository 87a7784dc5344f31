//! The HTTP listener, with the limits an exposed service needs:
//!
//! - a request's headers must arrive within `header_read_timeout`; the
//!   same timer closes keep-alive connections idle that long (hyper starts
//!   it whenever it waits for a request's head);
//! - at most `max_connections` connections at once. At the cap, the source
//!   holding the most connections (an IPv4 address, or an IPv6 /48) gives
//!   one up to the newcomer: its oldest connection with no request in
//!   progress (still sending its headers, or idle between requests); if it
//!   has none, the oldest such connection of any source holding more than
//!   the newcomer's, else of the newcomer's own source; if there is none,
//!   the biggest source's oldest busy one, but only when the newcomer's
//!   source would still hold fewer connections than it after the move;
//!   otherwise the newcomer is closed. A flood from one source, of slow, half-open or
//!   busy connections, therefore closes only its own connections and never
//!   locks out a client elsewhere, however slow that client is to send its
//!   request. Clients behind the flood's own address (one NAT, one reverse
//!   proxy) share its fate: among one source's connections, the oldest idle
//!   one goes first;
//! - the body of a request is read within `gateway.body_read_timeout_sec`
//!   (in the MCP handler);
//! - accept errors (out of file descriptors) pause accepting for a moment
//!   instead of ending the server.
//!
//! Each request carries the peer's address ([`super::http::Peer`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
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

/// Where connections come from, for sharing the cap: an IPv4 address
/// (IPv4-mapped IPv6 included), or an IPv6 /48, the most one customer
/// (one site) is usually given: grouping by /64 would let a customer's
/// /48 count as 65,536 sources.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Source {
    V4(std::net::Ipv4Addr),
    V6(u64),
}

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(a) => Source::V4(a),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4),
                None => Source::V6((u128::from(a) >> 80) as u64),
            },
        }
    }
}

struct Conn {
    source: Source,
    /// Requests whose response (body included) is not finished.
    busy: Arc<AtomicUsize>,
    close: CancellationToken,
}

impl Conn {
    fn idle(&self) -> bool {
        self.busy.load(Ordering::SeqCst) == 0
    }
}

#[derive(Default)]
struct Conns {
    next: u64,
    /// By arrival order.
    open: BTreeMap<u64, Conn>,
    /// The same connections by source, each set in arrival order.
    by_source: HashMap<Source, BTreeSet<u64>>,
}

impl Conns {
    fn insert(&mut self, conn: Conn) -> u64 {
        self.next += 1;
        let id = self.next;
        self.by_source.entry(conn.source).or_default().insert(id);
        self.open.insert(id, conn);
        id
    }

    fn remove(&mut self, id: u64) -> Option<Conn> {
        let conn = self.open.remove(&id)?;
        if let Some(ids) = self.by_source.get_mut(&conn.source) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_source.remove(&conn.source);
            }
        }
        Some(conn)
    }

    /// How a newcomer from `newcomer` gets a place: the oldest idle
    /// connection of the source holding the most (the newcomer's own among
    /// equals); else the oldest idle connection of a source holding more
    /// than the newcomer's; else the newcomer's own source's oldest idle
    /// one; else, if the newcomer's source would still hold fewer than the
    /// biggest source after the move, that source's oldest busy
    /// connection; else none.
    fn room(&self, newcomer: Source, max: usize) -> Room {
        if self.open.len() < max {
            return Room::Free;
        }
        let idle_of = |ids: &BTreeSet<u64>| ids.iter().copied().find(|id| self.open.get(id).is_some_and(Conn::idle));
        let top = self.by_source.values().map(BTreeSet::len).max().unwrap_or(0);
        let mine = self.by_source.get(&newcomer);
        let mine_len = mine.map_or(0, BTreeSet::len);
        if mine_len == top
            && let Some(id) = mine.and_then(idle_of)
        {
            return Room::Close(id);
        }
        let tops = || self.by_source.values().filter(|ids| ids.len() == top);
        if let Some(id) = tops().filter_map(idle_of).min() {
            return Room::Close(id);
        }
        // An idle connection of a source no smaller than the newcomer's
        // would be (so a hog cannot close a smaller source's idle ones).
        let size = |c: &Conn| self.by_source.get(&c.source).map_or(0, BTreeSet::len);
        if let Some((id, _)) = self.open.iter().find(|(_, c)| c.idle() && size(c) > mine_len) {
            return Room::Close(*id);
        }
        // The newcomer's own source makes room itself (a client's finished
        // connection not yet gone, or a flood's own slow one).
        if let Some(id) = mine.and_then(idle_of) {
            return Room::Close(id);
        }
        match tops().filter_map(|ids| ids.first().copied()).min() {
            Some(id) if mine_len + 1 < top => Room::Close(id),
            _ => Room::Refuse,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Room {
    Free,
    /// Close this connection to make room.
    Close(u64),
    Refuse,
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
        let Some((id, busy, close)) = admit(&conns, peer.ip().into(), limits.max_connections, &closing) else {
            tracing::warn!(%peer, "connection limit of {} reached and no connection can make room: refused", limits.max_connections);
            drop(stream);
            continue;
        };
        let app = app.clone();
        // The connection leaves the count however its task ends (a panic
        // included).
        let leave = Leave(Arc::clone(&conns), id);
        tokio::spawn(async move {
            let _leave = leave;
            serve_connection(stream, peer, app, limits, Arc::clone(&busy), close).await;
        });
    }
    closing.cancel();
    let deadline = tokio::time::Instant::now() + grace;
    while !lock(&conns).open.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Removes a connection from the count when dropped.
struct Leave(Arc<Mutex<Conns>>, u64);

impl Drop for Leave {
    fn drop(&mut self) {
        lock(&self.0).remove(self.1);
    }
}

/// A place for a new connection from `source`, making room if needed.
fn admit(
    conns: &Mutex<Conns>,
    source: Source,
    max: usize,
    closing: &CancellationToken,
) -> Option<(u64, Arc<AtomicUsize>, CancellationToken)> {
    let mut c = lock(conns);
    match c.room(source, max) {
        Room::Free => {}
        Room::Close(id) => {
            if let Some(conn) = c.remove(id) {
                conn.close.cancel();
            }
        }
        Room::Refuse => return None,
    }
    let busy = Arc::new(AtomicUsize::new(0));
    let close = closing.child_token();
    let id = c.insert(Conn {
        source,
        busy: Arc::clone(&busy),
        close: close.clone(),
    });
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

#[cfg(test)]
mod tests {
    use super::*;

    fn source(ip: &str) -> Source {
        ip.parse::<IpAddr>().expect("ip").into()
    }

    /// Connections from `ip`, `busy` of them serving a request.
    fn open(conns: &mut Conns, ip: &str, n: usize, busy: usize) -> Vec<u64> {
        (0..n)
            .map(|i| {
                conns.insert(Conn {
                    source: source(ip),
                    busy: Arc::new(AtomicUsize::new(usize::from(i < busy))),
                    close: CancellationToken::new(),
                })
            })
            .collect()
    }

    #[test]
    fn below_the_cap_there_is_room() {
        let mut c = Conns::default();
        open(&mut c, "10.0.0.1", 3, 0);
        assert_eq!(c.room(source("10.0.0.2"), 4), Room::Free);
    }

    #[test]
    fn a_flood_from_one_source_closes_only_its_own_connections() {
        let mut c = Conns::default();
        let alice = open(&mut c, "10.0.0.1", 1, 0)[0];
        let flood = open(&mut c, "10.0.0.2", 7, 0);
        // alice's connection is the oldest idle one, yet the flood's oldest
        // makes room, whoever comes next.
        assert_eq!(c.room(source("10.0.0.2"), 8), Room::Close(flood[0]));
        assert_eq!(c.room(source("10.0.0.1"), 8), Room::Close(flood[0]));
        assert_eq!(c.room(source("10.0.0.3"), 8), Room::Close(flood[0]));
        // Only when every source holds as many as alice's is hers at stake.
        let mut even = Conns::default();
        let first = open(&mut even, "10.0.0.1", 1, 0)[0];
        for i in 2..=8 {
            open(&mut even, &format!("10.0.0.{i}"), 1, 0);
        }
        assert_eq!(even.room(source("10.0.0.9"), 8), Room::Close(first));
        assert!(c.remove(alice).is_some());
    }

    #[test]
    fn the_biggest_source_gives_up_a_busy_connection_only_to_a_smaller_one() {
        let mut c = Conns::default();
        let alice = open(&mut c, "10.0.0.1", 2, 2);
        let hog = open(&mut c, "10.0.0.2", 6, 6);
        // The hog may not take more, nor close alice's busy connections.
        assert_eq!(c.room(source("10.0.0.2"), 8), Room::Refuse);
        // alice (2, then 3) stays below the hog (6, then 5): its oldest goes.
        assert_eq!(c.room(source("10.0.0.1"), 8), Room::Close(hog[0]));
        assert_eq!(c.room(source("10.0.0.3"), 8), Room::Close(hog[0]));
        // Between even sources nothing busy is closed; a third source gets
        // its share from the oldest of them.
        let mut even = Conns::default();
        let first = open(&mut even, "10.0.0.1", 4, 4);
        open(&mut even, "10.0.0.2", 4, 4);
        assert_eq!(even.room(source("10.0.0.1"), 8), Room::Refuse);
        assert_eq!(even.room(source("10.0.0.2"), 8), Room::Refuse);
        assert_eq!(even.room(source("10.0.0.3"), 8), Room::Close(first[0]));
        // An idle connection of the biggest source goes before any busy one.
        hog[3..]
            .iter()
            .for_each(|id| c.open[id].busy.store(0, Ordering::SeqCst));
        assert_eq!(c.room(source("10.0.0.2"), 8), Room::Close(hog[3]));
        assert!(alice.iter().all(|id| c.open.contains_key(id)));
    }

    #[test]
    fn sources_are_ipv4_addresses_and_ipv6_slash_48s() {
        assert_eq!(source("::ffff:10.0.0.1"), source("10.0.0.1"));
        assert_eq!(source("2001:db8:1:2::1"), source("2001:db8:1:ffff::9"));
        assert_ne!(source("2001:db8:1::1"), source("2001:db8:2::1"));
        assert_ne!(source("10.0.0.1"), source("10.0.0.2"));
    }

    /// The review's case: a source holding idle connections cannot make
    /// room by cutting another's request in progress (it gives up its own
    /// idle one), nor can a hog close a smaller source's idle connection.
    /// And a client whose finished connection lingers idle while the
    /// biggest source is all busy still gets in (found in CI).
    #[test]
    fn an_idle_holder_cannot_cut_a_busy_request_nor_a_hog_a_smaller_sources_idle_one() {
        let mut c = Conns::default();
        let busy = open(&mut c, "10.0.0.1", 6, 6);
        let idle = open(&mut c, "10.0.0.2", 2, 0);
        // It closes its own idle connection instead.
        assert_eq!(c.room(source("10.0.0.2"), 8), Room::Close(idle[0]));
        // A fresh source takes an idle place, not a busy one.
        assert_eq!(c.room(source("10.0.0.3"), 8), Room::Close(idle[0]));
        assert!(busy.iter().all(|id| c.open.contains_key(id)));
        let mut h = Conns::default();
        open(&mut h, "10.0.0.1", 7, 7);
        let alice = open(&mut h, "10.0.0.2", 1, 0);
        assert_eq!(h.room(source("10.0.0.1"), 8), Room::Refuse);
        assert_eq!(h.room(source("10.0.0.2"), 8), Room::Close(alice[0]));
    }

    /// Between sources holding as many, the newcomer's own gives way.
    #[test]
    fn among_equals_the_newcomers_own_source_gives_way() {
        let mut c = Conns::default();
        let a = open(&mut c, "10.0.0.1", 4, 0);
        let b = open(&mut c, "10.0.0.2", 4, 0);
        assert_eq!(c.room(source("10.0.0.2"), 8), Room::Close(b[0]));
        assert_eq!(c.room(source("10.0.0.1"), 8), Room::Close(a[0]));
    }
    #[test]
    fn closed_connections_leave_their_source() {
        let mut c = Conns::default();
        let ids = open(&mut c, "10.0.0.1", 2, 0);
        ids.iter().for_each(|id| {
            c.remove(*id);
        });
        assert!(c.by_source.is_empty() && c.open.is_empty());
    }
}
