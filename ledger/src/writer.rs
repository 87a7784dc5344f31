//! The single writer: a dedicated thread that seals (sequence number,
//! timestamp, hash chain), signs and commits appends.
//!
//! Group commit, pipelined: the thread takes every request that is waiting
//! and seals them in order into a *group*. While that group is being signed
//! on the signing pool (all cores), the thread writes the previous group,
//! with its time-index entries and the new head, in one RocksDB `WriteBatch`
//! with one WAL sync, and acknowledges it; groups are written strictly in
//! chain order. Small groups are signed on the thread itself, so a lone
//! writer pays no hand-off. Only after the sync returns is a caller told its
//! sequence number. (A deeper pipeline, several groups signing while the
//! oldest is written, measured slower on 2 cores: see docs/PERFORMANCE.md.)
//!
//! If a write or sync fails the writer is poisoned: the group's callers get
//! an error, and so does every later append (including a group already
//! sealed on top of the failed one) until the process restarts and recovery
//! has checked the tail.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::Signature;
use rayon::prelude::*;
use rocksdb::{WriteBatch, WriteOptions};
use tokio::sync::{mpsc, oneshot};

use crate::chain::{RECORD_HASH, RECORD_HEADER_LEN, RECORD_SIGNATURE, RECORD_VERSION, Rotation, event_hash};
use crate::error::{Error, Result};
use crate::event::{Actor, Draft, Event, EventKind, Hash, KeyId};
use crate::keys::{KeyDir, SigningKey};
use crate::store::{self, CF_EVENTS, CF_META, CF_TIME, Head, META_CURRENT_KEY, META_HEAD, Store};
use crate::timestamp::Timestamp;

/// Largest canonical envelope accepted, in bytes.
pub const MAX_EVENT_BYTES: usize = 1 << 20;
/// Most events sealed into one group.
const MAX_GROUP_EVENTS: usize = 4096;
/// Most bytes sealed into one group.
const MAX_GROUP_BYTES: usize = 32 << 20;
/// Groups this small are signed on the writer thread itself.
const PARALLEL_SIGN_MIN: usize = 16;
/// How long the idle writer polls for the next request before it parks: a
/// caller that appends again right after its acknowledgement is then picked
/// up without a wake-up.
const SPIN: Duration = Duration::from_micros(50);
/// Groups with at least this many callers are acknowledged by the ack thread.
const ACK_OFFLOAD_MIN: usize = 8;
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

/// One sealed event of a group, already laid out as its stored record
/// (`version ‖ hash ‖ signature ‖ canonical`); the signature bytes are
/// filled in when it is signed, before the group is written.
struct Sealed {
    seq: u64,
    ts: Timestamp,
    hash: Hash,
    record: Vec<u8>,
    signed: bool,
}

impl Sealed {
    fn canonical_len(&self) -> usize {
        self.record.len() - RECORD_HEADER_LEN
    }

    fn set_signature(&mut self, sig: &Signature) {
        self.record[RECORD_SIGNATURE].copy_from_slice(&sig.to_bytes());
        self.signed = true;
    }
}

/// Who waits for which events of a group.
enum Waiter {
    Append(Reply<Vec<Receipt>>, Range<usize>),
    Rotate(Reply<Receipt>),
}

impl Waiter {
    fn fail(self, err: impl Fn() -> Error) {
        match self {
            Waiter::Append(reply, _) => {
                let _ = reply.send(Err(err()));
            }
            Waiter::Rotate(reply) => {
                let _ = reply.send(Err(err()));
            }
        }
    }
}

/// Sealed events in chain order and who waits for them.
struct Group {
    sealed: Vec<Sealed>,
    waiters: Vec<Waiter>,
    /// Set when the group is one key rotation: the key it introduces.
    rotation: Option<KeyId>,
}

/// A group whose signatures are being made on the signing pool.
struct Signing {
    group: Group,
    done: std::sync::mpsc::Receiver<Vec<Sealed>>,
}

impl Signing {
    fn finish(mut self) -> Result<Group, (Group, String)> {
        match self.done.recv() {
            Ok(sealed) => {
                self.group.sealed = sealed;
                Ok(self.group)
            }
            Err(_) => Err((self.group, "the signing pool dropped a group".into())),
        }
    }
}

pub(crate) struct Writer {
    store: Arc<Store>,
    key: Arc<SigningKey>,
    key_dir: KeyDir,
    tip: Tip,
    poisoned: Option<String>,
    sync: WriteOptions,
    pool: rayon::ThreadPool,
    /// The thread that acknowledges large written groups.
    acker: Option<(std::sync::mpsc::Sender<Group>, std::thread::JoinHandle<()>)>,
    /// Commands taken from the queue that belong to the next group.
    carried: VecDeque<Command>,
}

impl Writer {
    pub(crate) fn new(store: Arc<Store>, key: SigningKey, key_dir: KeyDir) -> Result<Writer> {
        let head = store.head();
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("ledger-sign-{i}"))
            .build()
            .map_err(|e| Error::Thread {
                what: "signing pool",
                source: std::io::Error::other(e.to_string()),
            })?;
        let (ack_tx, ack_rx) = std::sync::mpsc::channel::<Group>();
        let acker = std::thread::Builder::new()
            .name("ledger-ack".into())
            .spawn(move || ack_rx.into_iter().for_each(acknowledge))
            .map_err(|source| Error::Thread {
                what: "ledger ack",
                source,
            })?;
        Ok(Writer {
            acker: Some((ack_tx, acker)),
            store,
            key: Arc::new(key),
            key_dir,
            tip: Tip {
                next_seq: head.seq + 1,
                prev: head.hash,
                last_ts: head.ts,
            },
            poisoned: None,
            sync,
            pool,
            carried: VecDeque::new(),
        })
    }

    /// The thread's loop: runs until every sender is dropped and everything
    /// queued has been committed.
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        // Sealed and signed, waiting to be written.
        let mut ready: Option<Group> = None;
        loop {
            // Park only when nothing is waiting to be written; otherwise take
            // just what is already queued.
            let commands = self.take_commands(&mut rx, ready.is_none());
            if commands.is_empty() && ready.is_none() {
                return;
            }
            // Seal the next group and start signing it, then write the
            // previous one while the signatures are made.
            let next = self.prepare(commands);
            if let Some(group) = ready.take() {
                self.commit(group);
            }
            ready = match next.map(Prepared::finish) {
                None => None,
                Some(Ok(group)) => Some(group),
                Some(Err((group, reason))) => {
                    self.poison(reason);
                    self.fail(group);
                    None
                }
            };
        }
    }

    /// Takes the next group's commands: one rotation on its own, or appends
    /// up to the group limit. With `block`, waits for at least one.
    fn take_commands(&mut self, rx: &mut mpsc::Receiver<Command>, block: bool) -> Vec<Command> {
        let first = match self.carried.pop_front() {
            Some(c) => c,
            None => match rx.try_recv() {
                Ok(c) => c,
                Err(mpsc::error::TryRecvError::Disconnected) => return Vec::new(),
                Err(mpsc::error::TryRecvError::Empty) if !block => return Vec::new(),
                Err(mpsc::error::TryRecvError::Empty) => match spin_then_park(rx) {
                    Some(c) => c,
                    None => return Vec::new(),
                },
            },
        };
        if matches!(first, Command::Rotate { .. }) {
            return vec![first];
        }
        let mut events = first.events();
        let mut commands = vec![first];
        while events < MAX_GROUP_EVENTS {
            let next = match self.carried.pop_front() {
                Some(c) => c,
                None => match rx.try_recv() {
                    Ok(c) => c,
                    Err(_) => break,
                },
            };
            if matches!(next, Command::Rotate { .. }) {
                self.carried.push_front(next);
                break;
            }
            events += next.events();
            commands.push(next);
        }
        commands
    }

    /// Seals commands into the next group and starts signing it.
    fn prepare(&mut self, mut commands: Vec<Command>) -> Option<Prepared> {
        if let Some(reason) = self.poisoned.clone() {
            for c in commands {
                waiter_of(c).fail(|| Error::Poisoned(reason.clone()));
            }
            return None;
        }
        let group = match commands.pop() {
            None => return None,
            Some(Command::Rotate {
                new_key,
                actor,
                reason,
                reply,
            }) => self.seal_rotation(*new_key, actor, reason, reply)?,
            Some(last) => {
                commands.push(last);
                self.seal_appends(commands)?
            }
        };
        Some(self.sign(group))
    }

    /// Seals append requests in order. A request that is rejected (an event
    /// too large, a reserved kind) is answered at once and consumes no
    /// sequence numbers; the others form the group.
    fn seal_appends(&mut self, commands: Vec<Command>) -> Option<Group> {
        let now = Timestamp::now();
        let mut group = Group {
            sealed: Vec::new(),
            waiters: Vec::with_capacity(commands.len()),
            rotation: None,
        };
        let mut bytes = 0usize;
        let mut commands = commands.into_iter();
        for c in commands.by_ref() {
            let Command::Append { drafts, reply } = c else {
                continue;
            };
            let start = group.sealed.len();
            let saved = (self.tip.next_seq, self.tip.prev, self.tip.last_ts);
            match self.seal_request(drafts, now, &mut group.sealed) {
                Ok(n) => {
                    bytes += n;
                    group.waiters.push(Waiter::Append(reply, start..group.sealed.len()));
                }
                Err(e) => {
                    group.sealed.truncate(start);
                    (self.tip.next_seq, self.tip.prev, self.tip.last_ts) = saved;
                    let _ = reply.send(Err(e));
                }
            }
            if bytes > MAX_GROUP_BYTES {
                break;
            }
        }
        // What did not fit goes first into the next group.
        for (i, c) in commands.enumerate() {
            self.carried.insert(i, c);
        }
        (!group.waiters.is_empty()).then_some(group)
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
            if s.canonical_len() > MAX_EVENT_BYTES {
                return Err(Error::InvalidEvent(format!(
                    "event {i} of the request is {} bytes, more than the limit of {MAX_EVENT_BYTES}",
                    s.canonical_len()
                )));
            }
            bytes += s.record.len();
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
        let mut record = Vec::with_capacity(RECORD_HEADER_LEN + 512);
        record.push(RECORD_VERSION);
        record.resize(RECORD_HEADER_LEN, 0);
        event.write_canonical(&mut record);
        let hash = event_hash(&self.tip.prev, &record[RECORD_HEADER_LEN..]);
        record[RECORD_HASH].copy_from_slice(&hash.0);
        self.tip = Tip {
            next_seq: self.tip.next_seq + 1,
            prev: hash,
            last_ts: ts,
        };
        Sealed {
            seq: event.seq,
            ts,
            hash,
            record,
            signed: false,
        }
    }

    /// Seals a `key.rotated` event, signed by the current key, after storing
    /// the new key in the key directory; events sealed after it are signed by
    /// the new key.
    fn seal_rotation(
        &mut self,
        new_key: SigningKey,
        actor: Actor,
        reason: Option<String>,
        reply: Reply<Receipt>,
    ) -> Option<Group> {
        let new_id = new_key.id();
        if new_id == self.key.id() {
            let _ = reply.send(Err(Error::InvalidEvent(format!(
                "key {new_id} is already the current key"
            ))));
            return None;
        }
        // The key must be on disk before the event that makes it current.
        if let Err(e) = self.key_dir.store(&new_key) {
            let _ = reply.send(Err(e));
            return None;
        }
        let mut draft = Draft::new(EventKind::KeyRotated);
        draft.actor = actor;
        draft.body = Rotation {
            new_key: new_id,
            new_public_key: new_key.public(),
            proof: new_key.rotation_proof(&self.store.ledger_id, self.key.id()),
            reason,
        }
        .to_body();
        let mut sealed = self.seal(draft, Timestamp::now());
        let sig = self.key.sign_hash(&sealed.hash);
        sealed.set_signature(&sig);
        self.key = Arc::new(new_key);
        Some(Group {
            sealed: vec![sealed],
            waiters: vec![Waiter::Rotate(reply)],
            rotation: Some(new_id),
        })
    }

    /// Signs a group: here if it is small, else on the signing pool while
    /// this thread commits the group before it.
    fn sign(&self, mut group: Group) -> Prepared {
        let key = self.key.clone();
        let sign = move |s: &mut Sealed| {
            if !s.signed {
                let sig = key.sign_hash(&s.hash);
                s.set_signature(&sig);
            }
        };
        if group.sealed.len() < PARALLEL_SIGN_MIN {
            group.sealed.iter_mut().for_each(sign);
            return Prepared::Signed(group);
        }
        let mut sealed = std::mem::take(&mut group.sealed);
        let (tx, rx) = std::sync::mpsc::channel();
        self.pool.spawn(move || {
            sealed.par_iter_mut().for_each(sign);
            let _ = tx.send(sealed);
        });
        Prepared::Signing(Signing { group, done: rx })
    }

    /// Writes a signed group and answers its callers.
    fn commit(&mut self, group: Group) {
        if self.poisoned.is_some() {
            return self.fail(group);
        }
        match self.write(&group.sealed, group.rotation) {
            Ok(()) => {
                if let (Some(new), Some(s)) = (group.rotation, group.sealed.first()) {
                    tracing::info!(new = %new, seq = s.seq, "signing key rotated");
                }
                // Waking many callers costs the writer more than the write
                // itself: a large group is acknowledged by the ack thread
                // while the writer goes on; a small one right here, so a
                // lone caller pays no extra hand-off.
                let group = match (&self.acker, group.waiters.len() >= ACK_OFFLOAD_MIN) {
                    (Some((tx, _)), true) => match tx.send(group) {
                        Ok(()) => return,
                        Err(std::sync::mpsc::SendError(group)) => group,
                    },
                    _ => group,
                };
                acknowledge(group);
            }
            Err(reason) => {
                self.poison(reason.clone());
                for w in group.waiters {
                    w.fail(|| Error::WriteFailed(reason.clone()));
                }
            }
        }
    }

    fn poison(&mut self, reason: String) {
        tracing::error!(path = %self.store.path.display(), error = %reason, "ledger write failed; writer poisoned");
        self.poisoned.get_or_insert(reason);
    }

    /// Answers every caller of a group that will not be written.
    fn fail(&self, group: Group) {
        let reason = self.poisoned.clone().unwrap_or_default();
        for w in group.waiters {
            w.fail(|| Error::Poisoned(reason.clone()));
        }
    }

    /// Writes a signed group (and, for a rotation, the key switch) in one
    /// synced batch, then moves the head.
    fn write(&self, sealed: &[Sealed], rotation: Option<KeyId>) -> Result<(), String> {
        let store = &self.store;
        let cf = |name| store.cf(name).map_err(|e| e.to_string());
        let (events, time, meta) = (cf(CF_EVENTS)?, cf(CF_TIME)?, cf(CF_META)?);
        let (first, last) = match (sealed.first(), sealed.last()) {
            (Some(f), Some(l)) => (f, l),
            _ => return Err("internal error: empty group".into()),
        };
        let mut batch = WriteBatch::default();
        // The time index gets one entry per run of equal timestamps (a group
        // shares one): lookups seek to the first event at or after a time.
        let mut last_ts = None;
        for s in sealed {
            if !s.signed {
                return Err("internal error: unsigned event in a group".into());
            }
            batch.put_cf(events, store::seq_key(s.seq), &s.record);
            if last_ts != Some(s.ts) {
                batch.put_cf(time, store::time_key(s.ts, s.seq), []);
                last_ts = Some(s.ts);
            }
        }
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
                first.seq,
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
}

/// Tells every caller of a written group its receipts.
fn acknowledge(group: Group) {
    let receipt = |s: &Sealed| Receipt {
        seq: s.seq,
        hash: s.hash,
        ts: s.ts,
    };
    for w in group.waiters {
        match w {
            Waiter::Append(reply, range) => {
                let _ = reply.send(Ok(group.sealed[range].iter().map(receipt).collect()));
            }
            Waiter::Rotate(reply) => {
                let _ = reply.send(group.sealed.first().map(receipt).ok_or(Error::Closed));
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Every acknowledgement handed to the ack thread is sent before the
        // writer is gone.
        if let Some((tx, handle)) = self.acker.take() {
            drop(tx);
            let _ = handle.join();
        }
    }
}

/// A group ready to be written, or still being signed.
enum Prepared {
    Signed(Group),
    Signing(Signing),
}

impl Prepared {
    /// Waits for the signatures.
    fn finish(self) -> Result<Group, (Group, String)> {
        match self {
            Prepared::Signed(group) => Ok(group),
            Prepared::Signing(signing) => signing.finish(),
        }
    }
}

fn waiter_of(c: Command) -> Waiter {
    match c {
        Command::Append { reply, .. } => Waiter::Append(reply, 0..0),
        Command::Rotate { reply, .. } => Waiter::Rotate(reply),
    }
}

/// Polls the queue for [`SPIN`], then parks until a command arrives.
fn spin_then_park(rx: &mut mpsc::Receiver<Command>) -> Option<Command> {
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            match rx.try_recv() {
                Ok(c) => return Some(c),
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
                Err(mpsc::error::TryRecvError::Empty) => std::hint::spin_loop(),
            }
        }
        if start.elapsed() > SPIN {
            return rx.blocking_recv();
        }
    }
}
