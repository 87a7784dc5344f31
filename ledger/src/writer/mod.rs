//! The single writer: a dedicated thread that seals (sequence number,
//! timestamp, hash chain), has signed, and commits appends.
//!
//! Group commit, pipelined, in three stages that run at once:
//!
//! 1. **Seal.** The writer thread takes every request that is waiting and
//!    seals them in order into a *group*, handing the sealed events to the
//!    signing pool in chunks as it goes (`signer.rs`). It does not wait for
//!    the signatures: while earlier groups are being signed it goes on
//!    sealing whatever arrives.
//! 2. **Write.** As soon as the oldest groups are fully signed, the writer
//!    writes them (events, a time-index entry, the new head) in one RocksDB
//!    `WriteBatch` *without* waiting for the WAL sync, and hands them to the
//!    sync thread.
//! 3. **Sync.** The sync thread (`sync.rs`) syncs the WAL, covering every
//!    group written before the sync began, and only then publishes the new
//!    head and tells those groups' callers their receipts (async callers in
//!    one hand-off to a task on their runtime, `acks.rs`).
//!
//! When none of that has anything to do, the writer signs a queued chunk
//! itself, or parks; senders and signers unpark it. Groups are written
//! strictly in chain order, and a caller hears of its sequence number only
//! after a sync that began after its group was written. A lone caller's
//! group, when nothing else is in flight, is signed, written with a synced
//! write and acknowledged on the writer thread itself: no hand-off.
//!
//! If a write or sync fails the writer is poisoned: the group's callers get
//! an error, and so does every later append (including a group already
//! sealed on top of the failed one) until the process restarts and recovery
//! has checked the tail.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ed25519_dalek::Signature;
use rocksdb::{WriteBatch, WriteOptions};
use tokio::sync::{mpsc, oneshot};

use crate::chain::{RECORD_HASH, RECORD_HEADER_LEN, RECORD_SIGNATURE, RECORD_VERSION, Rotation, event_hash};
use crate::error::{Error, Result};
use crate::event::{Actor, Draft, Event, EventKind, Hash, KeyId, check_size};
use crate::keys::{KeyDir, SigningKey};
use crate::merkle::{Frontier, TreeHash, leaf_data, leaf_hash};
use crate::schedule::KeySchedule;
use crate::signer::{self, SignPool, Signable};
use crate::store::{self, CF_EVENTS, CF_META, CF_TIME, Head, META_CURRENT_KEY, META_HEAD, Store};
use crate::timestamp::Timestamp;
use crate::tree::{CF_TREE, node_key};
use crate::views::Watcher;

mod acks;
mod sync;
use acks::Ack;
pub(crate) use acks::{Acks, Route};
use sync::{Poison, Syncer};

/// Most events sealed into one group.
const MAX_GROUP_EVENTS: usize = 4096;
/// Bytes reserved for an event's canonical form when it is sealed: most
/// gateway events fit, so the record is not reallocated while it is laid out.
const RECORD_CAPACITY: usize = 1024;
/// Most bytes sealed into one group.
const MAX_GROUP_BYTES: usize = 32 << 20;
/// Events handed to the signing pool at a time. A group of at most this
/// many, when no other group is in flight, is signed on the writer thread.
const SIGN_CHUNK: usize = 8;
/// How long the idle writer polls for the next request before it parks: a
/// caller that appends again right after its acknowledgement is then picked
/// up without a wake-up.
const SPIN: Duration = Duration::from_micros(50);
/// Groups with at least this many callers are always synced and
/// acknowledged by the sync thread.
const SYNC_OFFLOAD_MIN: usize = 8;
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
        /// `(i, j)`: draft `i` answers draft `j` (`j < i`) of this request;
        /// the writer sets its `correlation.answers` to `j`'s sequence number.
        links: Vec<(usize, usize)>,
        reply: Reply<Vec<Receipt>>,
        route: Route,
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

/// The key that signs the next event, shared by the writer with its
/// [`crate::Ledger`] handle, which signs statements about the log (snapshot
/// files) with it. The writer switches it when it seals a rotation.
pub(crate) struct CurrentKey(Mutex<Arc<SigningKey>>);

impl CurrentKey {
    pub(crate) fn get(&self) -> Arc<SigningKey> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn set(&self, key: Arc<SigningKey>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = key;
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
    /// The event's Merkle leaf hash, made with its signature (on the
    /// signing pool, off the writer thread).
    leaf: TreeHash,
    /// Whether the leaf hash is wanted: always, but in a benchmark's
    /// writer with the tree off ([`Writer::tree`]).
    tree: bool,
}

impl Signable for Sealed {
    fn sign_with(&mut self, key: &SigningKey) {
        if !self.signed {
            let sig = key.sign_hash(&self.hash);
            self.set_signature(&sig);
        }
    }
}

impl Sealed {
    fn canonical_len(&self) -> usize {
        self.record.len() - RECORD_HEADER_LEN
    }

    fn set_signature(&mut self, sig: &Signature) {
        let sig = sig.to_bytes();
        self.record[RECORD_SIGNATURE].copy_from_slice(&sig);
        if self.tree {
            self.leaf = leaf_hash(&leaf_data(self.seq, &self.hash, &sig));
        }
        self.signed = true;
    }
}

/// Who waits for which events of a group.
enum Waiter {
    Append(Reply<Vec<Receipt>>, Range<usize>, Route),
    Rotate(Reply<Receipt>),
}

impl Waiter {
    fn fail(self, err: impl Fn() -> Error) {
        match self {
            Waiter::Append(reply, ..) => {
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

pub(crate) struct Writer {
    store: Arc<Store>,
    key: Arc<SigningKey>,
    /// `key`, as the ledger handle sees it.
    current_key: Arc<CurrentKey>,
    key_dir: KeyDir,
    /// The log's keys, genesis and rotations: what a rotation is checked
    /// against before it is signed, as the verifier checks it.
    schedule: KeySchedule,
    tip: Tip,
    /// Set by whichever thread sees a write or sync fail.
    poison: Arc<Poison>,
    pool: SignPool<Sealed>,
    /// The thread that syncs written groups and acknowledges them.
    syncer: Syncer,
    /// Commands taken from the queue that belong to the next group.
    carried: VecDeque<Command>,
    /// Where the time of each group comes from: the system clock, except
    /// where a caller chose another ([`crate::Ledger::open_with_clock`]).
    now: fn() -> Timestamp,
    /// The clock was behind the last timestamp at the last group.
    clock_behind: bool,
    /// Where async callers' answers are handed to their runtime.
    acks: Arc<Acks>,
    /// The right edge of the Merkle tree over every event written: the
    /// tree's new nodes go into each group's batch.
    frontier: Frontier,
    /// Whether the writer maintains the tree: always, but in a benchmark's
    /// throwaway ledger that measures what the tree costs
    /// ([`crate::Ledger::create_without_tree`], feature `bench-tree-off`),
    /// whose tree marker is removed before the first event without it.
    tree: bool,
    /// Pauses file deletions for read-only opens.
    _views: Option<Watcher>,
}

impl Writer {
    /// A writer that continues the log in `store`, whose keys are
    /// `schedule`, signing with `key`, the schedule's current key.
    pub(crate) fn new(
        store: Arc<Store>,
        schedule: KeySchedule,
        key: SigningKey,
        key_dir: KeyDir,
        acks: Arc<Acks>,
        now: fn() -> Timestamp,
        tree: bool,
    ) -> Result<Writer> {
        if schedule.current() != key.id() {
            return Err(Error::Recovery {
                path: store.path.clone(),
                reason: format!(
                    "the writer was given key {} but the log's current key is {}",
                    key.id(),
                    schedule.current()
                ),
            });
        }
        let head = store.head();
        let frontier = if tree {
            store.frontier(head.seq + 1)?
        } else {
            Frontier::default()
        };
        // The writer signs too (a lone caller's group, and any queued chunk
        // when it has nothing else to do): with one signer less than there
        // are cores, the signing threads match the cores instead of
        // outnumbering them and preempting each other.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let pool = SignPool::new(cores.saturating_sub(1).max(1))?;
        let poison = Arc::new(Poison::default());
        let syncer = Syncer::start(store.clone(), poison.clone(), acks.clone())?;
        let views = Watcher::start(store.clone())?;
        let key = Arc::new(key);
        Ok(Writer {
            store,
            current_key: Arc::new(CurrentKey(Mutex::new(key.clone()))),
            key,
            key_dir,
            schedule,
            tip: Tip {
                next_seq: head.seq + 1,
                prev: head.hash,
                last_ts: head.ts,
            },
            poison,
            pool,
            syncer,
            carried: VecDeque::new(),
            now,
            clock_behind: false,
            acks,
            frontier,
            tree,
            _views: views,
        })
    }

    /// The signing key as the ledger handle sees it.
    pub(crate) fn current_key(&self) -> Arc<CurrentKey> {
        self.current_key.clone()
    }

    /// The thread's loop: runs until every sender is dropped and everything
    /// queued has been committed. It never blocks on one stage: each round
    /// it seals what is queued, writes the oldest groups whose signatures
    /// are all made, and only when neither had anything to do does it sign
    /// a chunk itself or park (senders and signers unpark it).
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        // Sealed groups in chain order, signed or being signed.
        let mut inflight: VecDeque<Prepared> = VecDeque::new();
        let mut open = true;
        // Whether the last group written was a lone caller's.
        let mut lone = false;
        loop {
            let mut progress = false;
            if open {
                match self.take_commands(&mut rx) {
                    Taken::Commands(commands) => {
                        progress = true;
                        inflight.extend(self.prepare(commands, !inflight.is_empty()));
                    }
                    Taken::Nothing => {}
                    Taken::Closed => open = false,
                }
            }
            let mut ready = Vec::new();
            while inflight.front().is_some_and(|p| p.signed(&self.pool)) {
                match inflight.pop_front().map(|p| p.finish(&self.pool)) {
                    Some(Ok(group)) => ready.push(group),
                    Some(Err((group, reason))) => {
                        self.poison.set(&self.store, &reason);
                        fail(group, &reason);
                    }
                    None => break,
                }
            }
            if !ready.is_empty() {
                progress = true;
                lone = ready.len() == 1 && ready.iter().all(|g| g.waiters.len() == 1);
                self.commit(ready);
            }
            if progress || self.pool.help() {
                continue;
            }
            if inflight.is_empty() {
                if !open {
                    return;
                }
                // A lone caller usually appends again right after its
                // acknowledgement: poll for it a moment before parking.
                if lone {
                    spin_for_command(&rx);
                    lone = false;
                }
                if rx.is_empty() && !rx.is_closed() {
                    std::thread::park();
                }
            } else {
                std::thread::park();
            }
        }
    }

    /// Takes the next group's commands: one rotation on its own, or appends
    /// up to the group limit.
    fn take_commands(&mut self, rx: &mut mpsc::Receiver<Command>) -> Taken {
        let first = match self.carried.pop_front() {
            Some(c) => c,
            None => match rx.try_recv() {
                Ok(c) => c,
                Err(mpsc::error::TryRecvError::Disconnected) => return Taken::Closed,
                Err(mpsc::error::TryRecvError::Empty) => return Taken::Nothing,
            },
        };
        if matches!(first, Command::Rotate { .. }) {
            return Taken::Commands(vec![first]);
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
        Taken::Commands(commands)
    }

    /// Seals commands into the next group and starts signing it. `busy`
    /// says other groups are in flight, so even a small one goes to the
    /// signing pool rather than being signed here.
    fn prepare(&mut self, mut commands: Vec<Command>, busy: bool) -> Option<Prepared> {
        if let Some(reason) = self.poison.get() {
            for c in commands {
                waiter_of(c).fail(|| Error::Poisoned(reason.clone()));
            }
            return None;
        }
        match commands.pop() {
            None => None,
            Some(Command::Rotate {
                new_key,
                actor,
                reason,
                reply,
            }) => self.seal_rotation(*new_key, actor, reason, reply).map(Prepared::Signed),
            Some(last) => {
                commands.push(last);
                self.seal_appends(commands, busy)
            }
        }
    }

    /// Seals append requests in order. A request that is rejected (an event
    /// too large) is answered at once and consumes no sequence numbers; the
    /// others form the group. Their drafts were checked by
    /// [`crate::Ledger::submit`] before they were queued. A group larger than one
    /// chunk goes to the signing pool a chunk at a time while it is sealed;
    /// a smaller one is signed here.
    fn seal_appends(&mut self, commands: Vec<Command>, busy: bool) -> Option<Prepared> {
        let now = self.clock();
        let events: usize = commands.iter().map(Command::events).sum();
        let signing = (busy || events > SIGN_CHUNK).then(|| self.pool.start(self.key.clone()));
        let mut group = Group {
            sealed: Vec::new(),
            waiters: Vec::with_capacity(commands.len()),
            rotation: None,
        };
        // Events already handed to the pool; `group.sealed` holds the rest.
        let mut dispatched = 0usize;
        let mut bytes = 0usize;
        let mut commands = commands.into_iter();
        for c in commands.by_ref() {
            let Command::Append {
                drafts,
                links,
                reply,
                route,
            } = c
            else {
                continue;
            };
            let start = group.sealed.len();
            let saved = (self.tip.next_seq, self.tip.prev, self.tip.last_ts);
            match self.seal_request(drafts, &links, now, &mut group.sealed) {
                Ok(n) => {
                    bytes += n;
                    let range = dispatched + start..dispatched + group.sealed.len();
                    group.waiters.push(Waiter::Append(reply, range, route));
                }
                Err(e) => {
                    group.sealed.truncate(start);
                    (self.tip.next_seq, self.tip.prev, self.tip.last_ts) = saved;
                    let _ = reply.send(Err(e));
                }
            }
            if let Some(signing) = &signing
                && group.sealed.len() >= SIGN_CHUNK
            {
                dispatched += group.sealed.len();
                self.pool.dispatch(signing, std::mem::take(&mut group.sealed));
            }
            if bytes > MAX_GROUP_BYTES {
                break;
            }
        }
        // What did not fit goes first into the next group.
        for (i, c) in commands.enumerate() {
            self.carried.insert(i, c);
        }
        match signing {
            Some(signing) => {
                self.pool.dispatch(&signing, std::mem::take(&mut group.sealed));
                // A group whose every request was rejected dispatched
                // nothing: it is dropped here.
                Some(Prepared::Signing(group, signing)).filter(|p| p.has_waiters())
            }
            None => {
                let key = self.key.clone();
                group.sealed.iter_mut().for_each(|s| s.sign_with(&key));
                (!group.waiters.is_empty()).then_some(Prepared::Signed(group))
            }
        }
    }

    /// Seals the drafts of one request after the current tip, filling in
    /// the `answers` of linked drafts. Returns the bytes added.
    fn seal_request(
        &mut self,
        drafts: Vec<Draft>,
        links: &[(usize, usize)],
        now: Timestamp,
        out: &mut Vec<Sealed>,
    ) -> Result<usize> {
        let mut bytes = 0;
        let first = self.tip.next_seq;
        for (i, mut draft) in drafts.into_iter().enumerate() {
            if let Some(&(_, j)) = links.iter().find(|&&(from, _)| from == i) {
                draft.correlation.answers = Some(first + j as u64);
            }
            let s = self.seal(draft, now);
            check_size(s.canonical_len()).map_err(|e| Error::InvalidEvent(format!("event {i} of the request: {e}")))?;
            bytes += s.record.len();
            out.push(s);
        }
        Ok(bytes)
    }

    /// The time for the next group. If the system clock is behind the last
    /// event's timestamp (it stepped back), events keep that timestamp until
    /// the clock catches up (see [`Writer::seal`]); the step is logged once
    /// when it is noticed and once when it is over, since for that while
    /// the log's timestamps say less than usual about when events happened.
    fn clock(&mut self) -> Timestamp {
        let now = (self.now)();
        let last = self.tip.last_ts;
        match (now < last, self.clock_behind) {
            (true, false) => {
                self.clock_behind = true;
                tracing::warn!(
                    behind_ms = (last.as_nanos() - now.as_nanos()) / 1_000_000,
                    seq = self.tip.next_seq,
                    last = %last,
                    "system clock is behind the last event's timestamp; events keep that timestamp until it catches up"
                );
            }
            (false, true) => {
                self.clock_behind = false;
                tracing::info!(
                    seq = self.tip.next_seq,
                    "system clock caught up with the log's timestamps"
                );
            }
            _ => {}
        }
        now
    }

    /// Assigns sequence number and timestamp and extends the hash chain.
    /// Timestamps never go backwards: if the clock stepped back, the event
    /// keeps its predecessor's timestamp.
    fn seal(&mut self, draft: Draft, now: Timestamp) -> Sealed {
        let event = self.envelope(draft, now);
        self.seal_event(&event)
    }

    /// The event `draft` becomes after the tip, at `now` (or the last
    /// event's time, if the clock is behind it).
    fn envelope(&self, draft: Draft, now: Timestamp) -> Event {
        let ts = now.max(self.tip.last_ts);
        Event::from_draft(draft, self.tip.next_seq, ts, self.tip.prev, self.key.id())
    }

    /// Lays out `event`, made by [`Writer::envelope`], as a record and
    /// extends the hash chain with it.
    fn seal_event(&mut self, event: &Event) -> Sealed {
        let ts = event.ts;
        let mut record = Vec::with_capacity(RECORD_HEADER_LEN + RECORD_CAPACITY);
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
            leaf: [0; 32],
            tree: self.tree,
        }
    }

    /// Seals a `key.rotated` event, signed by the current key, after storing
    /// the new key in the key directory; events sealed after it are signed by
    /// the new key. The event is first checked as the verifier checks it
    /// (its fields and size, and the rotation against the log's keys): one
    /// it would refuse is answered with an error, and nothing is stored.
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
        let mut draft = Draft::new(EventKind::KeyRotated);
        draft.actor = actor;
        draft.body = Rotation {
            new_key: new_id,
            new_public_key: new_key.public(),
            proof: new_key.rotation_proof(&self.store.ledger_id, self.key.id()),
            reason,
        }
        .to_body();
        let now = self.clock();
        let event = self.envelope(draft, now);
        let mut schedule = self.schedule.clone();
        let checked = event
            .check()
            .and_then(|()| check_size(event.canonical_bytes().len()))
            .and_then(|()| schedule.apply_rotation(&event, &self.store.ledger_id));
        if let Err(e) = checked {
            let _ = reply.send(Err(Error::InvalidEvent(format!("key rotation: {e}"))));
            return None;
        }
        // The key must be on disk before the event that makes it current.
        if let Err(e) = self.key_dir.store(&new_key) {
            let _ = reply.send(Err(e));
            return None;
        }
        let mut sealed = self.seal_event(&event);
        let sig = self.key.sign_hash(&sealed.hash);
        sealed.set_signature(&sig);
        self.schedule = schedule;
        self.key = Arc::new(new_key);
        self.current_key.set(self.key.clone());
        Some(Group {
            sealed: vec![sealed],
            waiters: vec![Waiter::Rotate(reply)],
            rotation: Some(new_id),
        })
    }

    /// Writes signed groups, in chain order, in one batch. A small write,
    /// when the sync thread is idle, is synced and acknowledged here; any
    /// other is written without waiting for the sync and handed to the sync
    /// thread.
    fn commit(&mut self, groups: Vec<Group>) {
        if let Some(reason) = self.poison.get() {
            return groups.into_iter().for_each(|g| fail(g, &reason));
        }
        let callers: usize = groups.iter().map(|g| g.waiters.len()).sum();
        let here = callers < SYNC_OFFLOAD_MIN && self.syncer.idle();
        let started = Instant::now();
        let frontier = self.tree.then_some(&mut self.frontier);
        match write(&self.store, &groups, here, frontier) {
            Ok(head) if here => {
                let events = groups.iter().map(|g| g.sealed.len()).sum();
                self.store.commits.record(events, started.elapsed());
                self.store.set_head(head);
                durable(groups, &self.acks);
                self.store.record_acked(head);
            }
            Ok(head) => self.syncer.push(groups, head),
            Err(reason) => {
                self.poison.set(&self.store, &reason);
                for w in groups.into_iter().flat_map(|g| g.waiters) {
                    w.fail(|| Error::WriteFailed(reason.clone()));
                }
            }
        }
    }
}

/// Writes signed groups (and, for a rotation, the key switch) in one
/// batch, with the Merkle tree nodes they complete; with `sync`, waits for
/// the WAL sync. Returns the head they make, which the caller publishes
/// once they are durable. `frontier` moves on with the events; if the
/// write fails the writer is poisoned and never uses it again. It is
/// `None` only in a benchmark's writer with the tree off.
fn write(store: &Store, groups: &[Group], sync: bool, mut frontier: Option<&mut Frontier>) -> Result<Head, String> {
    let cf = |name| store.cf(name).map_err(|e| e.to_string());
    let (events, time, meta, tree) = (cf(CF_EVENTS)?, cf(CF_TIME)?, cf(CF_META)?, cf(CF_TREE)?);
    let mut sealed = groups.iter().flat_map(|g| &g.sealed);
    let (first, last) = match (sealed.next(), groups.iter().flat_map(|g| &g.sealed).next_back()) {
        (Some(f), Some(l)) => (f, l),
        _ => return Err("internal error: empty group".into()),
    };
    // Per event: the record and its time key, its leaf and on average one
    // inner node (9-byte key, 32-byte hash, batch framing each).
    let bytes: usize = groups
        .iter()
        .flat_map(|g| &g.sealed)
        .map(|s| s.record.len() + 32 + 2 * 48)
        .sum();
    let mut batch = WriteBatch::with_capacity_bytes(bytes + 256);
    // The time index gets one entry per run of equal timestamps (a group
    // shares one): lookups seek to the first event at or after a time.
    let mut last_ts = None;
    for s in groups.iter().flat_map(|g| &g.sealed) {
        if !s.signed {
            return Err(format!("internal error: seq {} is unsigned", s.seq));
        }
        batch.put_cf(events, store::seq_key(s.seq), &s.record);
        if let Some(frontier) = frontier.as_deref_mut() {
            if frontier.size() != s.seq {
                return Err(format!(
                    "internal error: seq {} does not follow the Merkle tree of {} events",
                    s.seq,
                    frontier.size()
                ));
            }
            frontier.push(s.leaf, |level, index, node| {
                batch.put_cf(tree, node_key(level, index), node)
            });
        }
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
    for group in groups {
        if let (Some(new_key), Some(s)) = (group.rotation, group.sealed.first()) {
            batch.put_cf(meta, META_CURRENT_KEY, new_key.0);
            batch.put_cf(meta, store::rotation_key(s.seq), new_key.0);
        }
    }
    fail::fail_point!("ledger::before_write", |msg| Err(
        msg.unwrap_or_else(|| "injected write failure".into())
    ));
    let mut options = WriteOptions::default();
    options.set_sync(sync);
    store.db.write_opt(batch, &options).map_err(|e| {
        format!(
            "write{} of seq {}..={} to {}: {e}",
            if sync { " and sync" } else { "" },
            first.seq,
            last.seq,
            store.path.display()
        )
    })?;
    if sync {
        sync::after_sync()?;
    }
    Ok(head)
}

/// Groups are durable: log a key switch and tell every caller its
/// receipts, the async ones in one hand-off (see `acks.rs`).
fn durable(groups: Vec<Group>, acks: &Acks) {
    let receipt = |s: &Sealed| Receipt {
        seq: s.seq,
        hash: s.hash,
        ts: s.ts,
    };
    let mut answers = Vec::with_capacity(groups.iter().map(|g| g.waiters.len()).sum());
    for group in groups {
        if let (Some(new), Some(s)) = (group.rotation, group.sealed.first()) {
            tracing::info!(new = %new, seq = s.seq, "signing key rotated");
        }
        for w in group.waiters {
            match w {
                Waiter::Append(reply, range, route) => answers.push(Ack {
                    reply,
                    receipts: group.sealed[range].iter().map(receipt).collect(),
                    route,
                }),
                Waiter::Rotate(reply) => {
                    let _ = reply.send(group.sealed.first().map(receipt).ok_or(Error::Closed));
                }
            }
        }
    }
    acks.deliver(answers);
}

/// Answers every caller of a group that will not be written.
fn fail(group: Group, reason: &str) {
    for w in group.waiters {
        w.fail(|| Error::Poisoned(reason.to_string()));
    }
}

/// A group ready to be written, or still being signed.
enum Prepared {
    Signed(Group),
    Signing(Group, signer::Group<Sealed>),
}

impl Prepared {
    /// Whether every signature of the group is made.
    fn signed(&self, pool: &SignPool<Sealed>) -> bool {
        match self {
            Prepared::Signed(_) => true,
            Prepared::Signing(_, signing) => pool.done(signing),
        }
    }

    fn has_waiters(&self) -> bool {
        match self {
            Prepared::Signed(g) | Prepared::Signing(g, _) => !g.waiters.is_empty(),
        }
    }

    /// The signed group; call it once [`Prepared::signed`] says so.
    fn finish(self, pool: &SignPool<Sealed>) -> Result<Group, (Group, String)> {
        match self {
            Prepared::Signed(group) => Ok(group),
            Prepared::Signing(mut group, signing) => match pool.finish(signing) {
                Ok(sealed) => {
                    group.sealed = sealed;
                    Ok(group)
                }
                Err(reason) => Err((group, reason)),
            },
        }
    }
}

fn waiter_of(c: Command) -> Waiter {
    match c {
        Command::Append { reply, route, .. } => Waiter::Append(reply, 0..0, route),
        Command::Rotate { reply, .. } => Waiter::Rotate(reply),
    }
}

/// What [`Writer::take_commands`] found.
enum Taken {
    Commands(Vec<Command>),
    Nothing,
    Closed,
}

/// Polls the queue for up to [`SPIN`], until a command is there.
fn spin_for_command(rx: &mpsc::Receiver<Command>) {
    let start = Instant::now();
    while rx.is_empty() && !rx.is_closed() && start.elapsed() < SPIN {
        for _ in 0..64 {
            std::hint::spin_loop();
        }
    }
}
