//! Where messages for a client go: stdout for a stdio session; for an HTTP
//! session, the event stream of the client request a message belongs to,
//! else the session's own GET stream, else a short backlog until the client
//! opens one (bounded in messages and in bytes: the oldest go first).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::gateway::mcp::{Id, Message};

/// Messages kept for an HTTP client that has no stream open.
const BACKLOG: usize = 256;

/// Bytes kept for it at most (the newest message is kept whatever its size).
const BACKLOG_BYTES: usize = 8 << 20;

pub enum ClientSink {
    /// One line per message (stdout).
    Lines(mpsc::Sender<Vec<u8>>),
    Http(Streams),
}

#[derive(Default)]
pub struct Streams {
    /// Open response streams, by the client request they answer.
    requests: Mutex<HashMap<Id, mpsc::Sender<Bytes>>>,
    get: Mutex<Option<mpsc::Sender<Bytes>>>,
    backlog: Mutex<VecDeque<Bytes>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Streams {
    /// A response stream for client request `id`.
    pub fn open_request(&self, id: &Id, tx: mpsc::Sender<Bytes>) {
        lock(&self.requests).insert(id.clone(), tx);
    }

    pub fn close_request(&self, id: &Id) {
        lock(&self.requests).remove(id);
    }

    /// The session's GET stream (replacing an older one), with what waited
    /// for it.
    pub fn open_get(&self, tx: mpsc::Sender<Bytes>) {
        let waiting: Vec<Bytes> = lock(&self.backlog).drain(..).collect();
        for message in waiting {
            if tx.try_send(message).is_err() {
                break;
            }
        }
        *lock(&self.get) = Some(tx);
    }

    /// Ends the GET stream (the session ended); response streams end with
    /// their requests.
    pub fn close_get(&self) {
        lock(&self.get).take();
    }

    async fn send(&self, data: Bytes, related: Option<&Id>) -> Result<(), String> {
        let on_request = related.and_then(|id| lock(&self.requests).get(id).cloned());
        if let Some(tx) = on_request
            && tx.send_timeout(data.clone(), SEND_PATIENCE).await.is_ok()
        {
            return Ok(());
        }
        let get = lock(&self.get).clone();
        if let Some(tx) = get {
            if tx.send_timeout(data.clone(), SEND_PATIENCE).await.is_ok() {
                return Ok(());
            }
            lock(&self.get).take();
        }
        let mut backlog = lock(&self.backlog);
        backlog.push_back(data);
        let mut held: usize = backlog.iter().map(Bytes::len).sum();
        while backlog.len() > BACKLOG || (held > BACKLOG_BYTES && backlog.len() > 1) {
            if let Some(oldest) = backlog.pop_front() {
                held -= oldest.len();
            }
        }
        Ok(())
    }
}

/// How long a message waits for room in a stream the client does not read.
const SEND_PATIENCE: Duration = Duration::from_secs(10);

impl ClientSink {
    /// Sends a message towards the client; `related` is the client request
    /// it belongs to, if any.
    pub async fn send(&self, message: &Message, related: Option<&Id>) -> Result<(), String> {
        match self {
            ClientSink::Lines(tx) => {
                let mut line = message.to_bytes();
                line.push(b'\n');
                tx.send(line).await.map_err(|_| "the client is gone".to_string())
            }
            ClientSink::Http(streams) => streams.send(Bytes::from(message.to_bytes()), related).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream decides what waits for a client that has no stream open
    /// (its notifications, its requests while no client request is in
    /// flight), and a message may be as large as
    /// `max_upstream_message_bytes`: the backlog is bounded in bytes too,
    /// not only in messages.
    #[tokio::test]
    async fn the_backlog_is_bounded_in_bytes() {
        let streams = Streams::default();
        let big = Bytes::from(vec![b'x'; 1 << 20]);
        for _ in 0..BACKLOG {
            streams.send(big.clone(), None).await.expect("send");
        }
        let held: usize = lock(&streams.backlog).iter().map(Bytes::len).sum();
        assert!(held <= BACKLOG_BYTES, "{} MiB wait for the client", held >> 20);
        // The newest is kept, even alone over the limit.
        let huge = Bytes::from(vec![b'y'; BACKLOG_BYTES + 1]);
        streams.send(huge.clone(), None).await.expect("send");
        let backlog = lock(&streams.backlog);
        assert_eq!(backlog.back(), Some(&huge));
        assert_eq!(backlog.len(), 1);
    }
}
