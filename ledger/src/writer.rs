//! The single writer: a dedicated thread that seals (sequence number,
//! timestamp, hash chain, signature) and commits appends.
//!
//! Group commit: the thread takes every request that is waiting, seals them
//! in order, signs them on all cores, and writes them in one RocksDB
//! `WriteBatch` with one WAL sync. Only after the sync returns are the
//! callers told their sequence numbers. If a write or sync fails the writer
//! is poisoned: the batch's callers get an error, and so does every later
//! append until the process restarts and recovery has checked the tail.

use std::sync::Arc;

use ed25519_dalek::Signature;
use rayon::prelude::*;
use rocksdb::{WriteBatch, WriteOptions};
use tokio::sync::{mpsc, oneshot};

use crate::chain::{Rotation, encode_record, event_hash};
use crate::error::{Error, Result};
use crate::event::{Actor, Draft, Event, EventKind, Hash};
use crate::keys::{KeyDir, SigningKey};
use crate::store::{self, CF_EVENTS, CF_META, CF_TIME, Head, META_CURRENT_KEY, META_HEAD, Store};
use crate::timestamp::Timestamp;

/// Largest canonical envelope accepted, in bytes.
pub const MAX_EVENT_BYTES: usize = 1 << 20;
/// Most events committed in one group.
const MAX_GROUP_EVENTS: usize = 4096;
/// Most bytes committed in one group.
const MAX_GROUP_BYTES: usize = 32 << 20;
/// Below this many events a group is signed on the writer thread alone.
const PARALLEL_SIGN_MIN: usize = 16;
/// Requests that may wait for the writer before senders are held back.
pub(crate) const QUEUE_DEPTH: usize = 16 * 1024;

/// What an acknowledged append returns: the event is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub seq: u64,
    pub hash: Hash,
    pub ts: Timestamp,
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

pub(crate) enum Command {
    Append {
        drafts: Vec<Draft>,
        reply: Reply<Vec<Receipt>>,
    },
    Rotate {
        new_key: Box<SigningKey>,
        actor: Actor,
        reason: Option<String>,
        reply: Reply<Receipt>,
    },
}

impl Command {
    fn events(&self) -> usize {
        match self {
            Command::Append { drafts, .. } => drafts.len(),
            Command::Rotate { .. } => 1,
        }
    }
}

/// The chain position the next event continues from.
struct Tip {
    next_seq: u64,
    prev: Hash,
    last_ts: Timestamp,
}

pub(crate) struct Writer {
    store: Arc<Store>,
    key: SigningKey,
    key_dir: KeyDir,
    tip: Tip,
    poisoned: Option<String>,
    sync: WriteOptions,
}

/// One sealed but unsigned event of a group.
struct Sealed {
    seq: u64,
    ts: Timestamp,
    hash: Hash,
    canonical: Vec<u8>,
    signature: Option<Signature>,
}

impl Writer {
    pub(crate) fn new(store: Arc<Store>, key: SigningKey, key_dir: KeyDir) -> Writer {
        let head = store.head();
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        Writer {
            store,
            key,
            key_dir,
            tip: Tip {
                next_seq: head.seq + 1,
                prev: head.hash,
                last_ts: head.ts,
            },
            poisoned: None,
            sync,
        }
    }

    /// The thread's loop: runs until every sender is dropped.
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut carried: Option<Command> = None;
        loop {
            let first = match carried.take() {
                Some(c) => c,
                None => match rx.blocking_recv() {
                    Some(c) => c,
                    None => return,
                },
            };
            let mut group = Vec::new();
            match first {
                Command::Rotate {
                    new_key,
                    actor,
                    reason,
                    reply,
                } => {
                    let result = self.rotate(*new_key, actor, reason);
                    let _ = reply.send(result);
                    continue;
                }
                append => group.push(append),
            }
            let mut events = group[0].events();
            while events < MAX_GROUP_EVENTS {
                match rx.try_recv() {
                    Ok(c @ Command::Append { .. }) => {
                        events += c.events();
                        group.push(c);
                    }
                    Ok(rotate) => {
                        carried = Some(rotate);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group);
        }
    }

    fn commit_group(&mut self, group: Vec<Command>) {
        if let Some(reason) = &self.poisoned {
            for c in group {
                if let Command::Append { reply, .. } = c {
                    let _ = reply.send(Err(Error::Poisoned(reason.clone())));
                }
            }
            return;
        }
        let now = Timestamp::now();
        let mut sealed: Vec<Sealed> = Vec::new();
        // Requests that made it into the group, with the range of `sealed` they own.
        let mut accepted: Vec<(Reply<Vec<Receipt>>, std::ops::Range<usize>)> = Vec::new();
        let mut bytes = 0usize;
        let mut overflow: Vec<Command> = Vec::new();
        for c in group {
            let Command::Append { drafts, reply } = c else { continue };
            if bytes > MAX_GROUP_BYTES {
                overflow.push(Command::Append { drafts, reply });
                continue;
            }
            let start = sealed.len();
            let saved = (self.tip.next_seq, self.tip.prev, self.tip.last_ts);
            match self.seal_request(drafts, now, &mut sealed) {
                Ok(n) => {
                    bytes += n;
                    accepted.push((reply, start..sealed.len()));
                }
                Err(e) => {
                    // Roll back: the rejected request consumed no sequence numbers.
                    sealed.truncate(start);
                    (self.tip.next_seq, self.tip.prev, self.tip.last_ts) = saved;
                    let _ = reply.send(Err(e));
                }
            }
        }
        if !sealed.is_empty() {
            self.sign_all(&mut sealed);
            match self.write(&sealed, None) {
                Ok(()) => {
                    for (reply, range) in accepted {
                        let receipts = sealed[range]
                            .iter()
                            .map(|s| Receipt {
                                seq: s.seq,
                                hash: s.hash,
                                ts: s.ts,
                            })
                            .collect();
                        let _ = reply.send(Ok(receipts));
                    }
                }
                Err(reason) => {
                    for (reply, _) in accepted {
                        let _ = reply.send(Err(Error::WriteFailed(reason.clone())));
                    }
                }
            }
        } else {
            for (reply, _) in accepted {
                let _ = reply.send(Ok(Vec::new()));
            }
        }
        if !overflow.is_empty() {
            self.commit_group(overflow);
        }
    }

    /// Seals the drafts of one request after the current tip. Returns the
    /// bytes added.
    fn seal_request(&mut self, drafts: Vec<Draft>, now: Timestamp, out: &mut Vec<Sealed>) -> Result<usize> {
        let mut bytes = 0;
        for (i, draft) in drafts.into_iter().enumerate() {
            if draft.kind.is_reserved() || !draft.kind.is_known() {
                return Err(Error::InvalidEvent(format!(
                    "event {i} of the request: kind `{}` cannot be appended",
                    draft.kind
                )));
            }
            let s = self.seal(draft, now);
            if s.canonical.len() > MAX_EVENT_BYTES {
                return Err(Error::InvalidEvent(format!(
                    "event {i} of the request is {} bytes, more than the limit of {MAX_EVENT_BYTES}",
                    s.canonical.len()
                )));
            }
            bytes += s.canonical.len();
            out.push(s);
        }
        Ok(bytes)
    }

    /// Assigns sequence number and timestamp and extends the hash chain.
    /// Timestamps never go backwards: if the clock stepped back, the event
    /// keeps its predecessor's timestamp.
    fn seal(&mut self, draft: Draft, now: Timestamp) -> Sealed {
        let ts = now.max(self.tip.last_ts);
        let event = Event::from_draft(draft, self.tip.next_seq, ts, self.tip.prev, self.key.id());
        let canonical = event.canonical_bytes();
        let hash = event_hash(&self.tip.prev, &canonical);
        self.tip = Tip {
            next_seq: self.tip.next_seq + 1,
            prev: hash,
            last_ts: ts,
        };
        Sealed {
            seq: event.seq,
            ts,
            hash,
            canonical,
            signature: None,
        }
    }

    fn sign_all(&self, sealed: &mut [Sealed]) {
        let key = &self.key;
        if sealed.len() >= PARALLEL_SIGN_MIN {
            sealed
                .par_iter_mut()
                .for_each(|s| s.signature = Some(key.sign_hash(&s.hash)));
        } else {
            for s in sealed.iter_mut() {
                s.signature = Some(key.sign_hash(&s.hash));
            }
        }
    }

    /// Writes a signed group (and, for a rotation, the key switch) in one
    /// synced batch. On failure the writer is poisoned and the reason returned.
    fn write(&mut self, sealed: &[Sealed], rotation: Option<&crate::event::KeyId>) -> Result<(), String> {
        let result = self.try_write(sealed, rotation);
        if let Err(reason) = &result {
            tracing::error!(path = %self.store.path.display(), error = %reason, "ledger write failed; writer poisoned");
            self.poisoned = Some(reason.clone());
        }
        result
    }

    fn try_write(&self, sealed: &[Sealed], rotation: Option<&crate::event::KeyId>) -> Result<(), String> {
        let store = &self.store;
        let cf = |name| store.cf(name).map_err(|e| e.to_string());
        let (events, time, meta) = (cf(CF_EVENTS)?, cf(CF_TIME)?, cf(CF_META)?);
        let mut batch = WriteBatch::default();
        for s in sealed {
            let sig = s.signature.ok_or("internal error: unsigned event in a group")?;
            batch.put_cf(
                events,
                store::seq_key(s.seq),
                encode_record(&s.hash, &sig, &s.canonical),
            );
            batch.put_cf(time, store::time_key(s.ts, s.seq), []);
        }
        let last = sealed.last().ok_or("internal error: empty group")?;
        let head = Head {
            seq: last.seq,
            hash: last.hash,
            ts: last.ts,
        };
        batch.put_cf(meta, META_HEAD, head.encode());
        if let Some(new_key) = rotation {
            batch.put_cf(meta, META_CURRENT_KEY, new_key.0);
            batch.put_cf(meta, store::rotation_key(last.seq), new_key.0);
        }
        fail::fail_point!("ledger::before_write", |msg| Err(
            msg.unwrap_or_else(|| "injected write failure".into())
        ));
        store.db.write_opt(batch, &self.sync).map_err(|e| {
            format!(
                "write and sync of seq {}..={} to {}: {e}",
                sealed[0].seq,
                last.seq,
                store.path.display()
            )
        })?;
        // A failure here stands for a sync that failed after the bytes
        // reached the WAL: the batch may or may not survive a restart, and
        // must not be acknowledged.
        fail::fail_point!("ledger::after_write", |msg| Err(
            msg.unwrap_or_else(|| "injected sync failure".into())
        ));
        store.set_head(head);
        Ok(())
    }

    /// Appends a `key.rotated` event signed by the current key, after storing
    /// the new key in the key directory; from the next event on, the new key
    /// signs.
    fn rotate(&mut self, new_key: SigningKey, actor: Actor, reason: Option<String>) -> Result<Receipt> {
        if let Some(r) = &self.poisoned {
            return Err(Error::Poisoned(r.clone()));
        }
        if new_key.id() == self.key.id() {
            return Err(Error::InvalidEvent(format!(
                "key {} is already the current key",
                new_key.id()
            )));
        }
        let body = Rotation {
            new_key: new_key.id(),
            new_public_key: new_key.public(),
            proof: new_key.rotation_proof(&self.store.ledger_id, self.key.id()),
            reason,
        }
        .to_body();
        // The key must be on disk before the event that makes it current.
        self.key_dir.store(&new_key)?;
        let mut draft = Draft::new(EventKind::KeyRotated);
        draft.actor = actor;
        draft.body = body;
        let mut sealed = vec![self.seal(draft, Timestamp::now())];
        self.sign_all(&mut sealed);
        let new_id = new_key.id();
        self.write(&sealed, Some(&new_id)).map_err(Error::WriteFailed)?;
        tracing::info!(old = %self.key.id(), new = %new_id, seq = sealed[0].seq, "signing key rotated");
        self.key = new_key;
        Ok(Receipt {
            seq: sealed[0].seq,
            hash: sealed[0].hash,
            ts: sealed[0].ts,
        })
    }
}
