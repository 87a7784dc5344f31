//! The sync thread: makes written groups durable and acknowledges them.
//!
//! The writer writes a group to RocksDB without waiting for the WAL sync and
//! hands it here. This thread takes every group handed over so far, syncs
//! the WAL once (`FlushWAL(sync)`: everything written before the call is on
//! disk when it returns), then publishes the newest head and answers the
//! groups' callers. While it syncs, the writer goes on writing the next
//! groups, which the next sync covers: the syncs run back to back and group
//! themselves.
//!
//! A written but unsynced group is visible to RocksDB reads but not part of
//! the log yet: every reader is bounded by the published head, which moves
//! only after the sync.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use super::{Acks, Group, durable, fail};
use crate::error::{Error, Result};
use crate::store::{Head, Store};

/// The first write or sync failure, shared by the writer and sync threads.
#[derive(Default)]
pub(super) struct Poison(Mutex<Option<String>>);

impl Poison {
    pub(super) fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(super) fn set(&self, store: &Store, reason: &str) {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            tracing::error!(path = %store.path.display(), error = %reason, "ledger write failed; writer poisoned");
            *slot = Some(reason.to_string());
        }
    }
}

/// Stands for a sync that failed after the bytes reached the WAL: the
/// groups may or may not survive a restart, and must not be acknowledged.
pub(super) fn after_sync() -> Result<(), String> {
    fail::fail_point!("ledger::after_write", |msg| Err(
        msg.unwrap_or_else(|| "injected sync failure".into())
    ));
    Ok(())
}

struct State {
    /// Written, not yet synced, in chain order, with the head each write
    /// makes.
    written: Vec<(Vec<Group>, Head)>,
    syncing: bool,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(super) struct Syncer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    pub(super) fn start(store: Arc<Store>, poison: Arc<Poison>, acks: Arc<Acks>) -> Result<Syncer> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                written: Vec::new(),
                syncing: false,
                closed: false,
            }),
            wake: Condvar::new(),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("ledger-sync".into())
                .spawn(move || run(&shared, &store, &poison, &acks))
                .map_err(|cause| Error::Thread {
                    what: "ledger sync",
                    cause,
                })?
        };
        Ok(Syncer {
            shared,
            thread: Some(thread),
        })
    }

    /// Nothing written is waiting for a sync, and none is running.
    pub(super) fn idle(&self) -> bool {
        let state = self.shared.lock();
        !state.syncing && state.written.is_empty()
    }

    /// Hands over a group that was written without a sync.
    pub(super) fn push(&self, groups: Vec<Group>, head: Head) {
        let mut state = self.shared.lock();
        state.written.push((groups, head));
        if !state.syncing {
            drop(state);
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        // Everything handed over is synced and answered before the writer
        // is gone.
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(shared: &Shared, store: &Store, poison: &Poison, acks: &Acks) {
    loop {
        let mut writes = {
            let mut state = shared.lock();
            state.syncing = false;
            loop {
                if !state.written.is_empty() {
                    state.syncing = true;
                    break std::mem::take(&mut state.written);
                }
                if state.closed {
                    return;
                }
                state = shared.wake.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
        };
        let groups: Vec<Group> = writes.iter_mut().flat_map(|(g, _)| std::mem::take(g)).collect();
        if let Some(reason) = poison.get() {
            groups.into_iter().for_each(|g| fail(g, &reason));
            continue;
        }
        let last = match writes.last() {
            Some((_, head)) => *head,
            None => continue,
        };
        let first = groups
            .first()
            .and_then(|g| g.sealed.first())
            .map_or(last.seq, |s| s.seq);
        let started = Instant::now();
        let synced = store
            .db
            .flush_wal(true)
            .map_err(|e| format!("sync of seq {first}..={} to {}: {e}", last.seq, store.path.display()))
            .and_then(|()| after_sync());
        match synced {
            Ok(()) => {
                let events = groups.iter().map(|g| g.sealed.len()).sum();
                store.commits.record(events, started.elapsed());
                store.set_head(last);
                durable(groups, acks);
                store.record_acked(last);
            }
            Err(reason) => {
                poison.set(store, &reason);
                for w in groups.into_iter().flat_map(|g| g.waiters) {
                    w.fail(|| Error::WriteFailed(reason.clone()));
                }
            }
        }
    }
}
