//! The signing pool: dedicated threads that sign chunks of sealed events,
//! with the writer thread helping while it waits for a group.
//!
//! The writer seals a group and hands it out in chunks as it goes, so that
//! signing starts after the first chunk instead of after the whole group.
//! Idle signers park at once (no spinning or yielding): on two cores every
//! cycle a parked thread spends polling is taken from the threads that sign,
//! write or answer callers. The writer never waits for a group: it asks
//! whether the oldest one is done, and when it has nothing else to do it
//! takes an unclaimed chunk off the queue and signs it itself. A signer that
//! completes a group unparks the thread that started it.
//!
//! Signers run at a lower scheduling priority than the rest of the process
//! (nice +[`SIGNER_NICE`]). Signing is the ledger's throughput work; the
//! writer, the sync thread and the callers waiting for acknowledgements are
//! on the latency path, and each of them runs for a few microseconds at a
//! time. On two cores, a woken writer or sync thread that has to wait for a
//! signer's time slice stalls the whole pipeline; at a lower priority the
//! signers still get every cycle nobody else wants.
//!
//! A chunk is always returned to its group, signed or not: a signer that
//! panics drops its job, and the drop marks the group failed, so the writer
//! never waits for a chunk that will not come back.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{JoinHandle, Thread};

use crate::error::{Error, Result};
use crate::keys::SigningKey;

/// How much nicer than the process the signing threads run.
const SIGNER_NICE: i32 = 10;

/// What the pool signs: anything that knows how to sign itself with a key.
pub(crate) trait Signable: Send + 'static {
    fn sign_with(&mut self, key: &SigningKey);
}

/// One chunk of a group, out for signing.
struct Job<T: Signable> {
    chunk: Option<Vec<T>>,
    index: usize,
    key: Arc<SigningKey>,
    batch: Arc<Batch<T>>,
}

impl<T: Signable> Job<T> {
    fn run(mut self) {
        // The chunk stays in the job while it is signed, so that a panic
        // drops it through `Drop` below.
        if let Some(chunk) = self.chunk.as_mut() {
            chunk.iter_mut().for_each(|item| item.sign_with(&self.key));
        }
        if let Some(chunk) = self.chunk.take() {
            self.batch.deposit(self.index, Some(chunk));
        }
    }
}

impl<T: Signable> Drop for Job<T> {
    fn drop(&mut self) {
        // Dropped before `run` finished (a panic while signing, or the pool
        // shutting down with work queued): the group cannot complete.
        if self.chunk.take().is_some() {
            self.batch.deposit(self.index, None);
        }
    }
}

/// The chunks of one group, in chain order.
struct Batch<T> {
    state: Mutex<BatchState<T>>,
    /// The thread that started the group, unparked when it completes.
    owner: Thread,
}

struct BatchState<T> {
    /// `None` while the chunk is out for signing.
    chunks: Vec<Option<Vec<T>>>,
    outstanding: usize,
    failed: bool,
}

impl<T> Batch<T> {
    fn lock(&self) -> MutexGuard<'_, BatchState<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn deposit(&self, index: usize, chunk: Option<Vec<T>>) {
        let mut state = self.lock();
        match chunk {
            Some(chunk) => {
                if let Some(slot) = state.chunks.get_mut(index) {
                    *slot = Some(chunk);
                } else {
                    state.failed = true;
                }
            }
            None => state.failed = true,
        }
        state.outstanding = state.outstanding.saturating_sub(1);
        if state.outstanding == 0 {
            drop(state);
            self.owner.unpark();
        }
    }
}

type Queue<T> = VecDeque<Job<T>>;

struct Shared<T: Signable> {
    queue: Mutex<PoolState<T>>,
    available: Condvar,
}

struct PoolState<T: Signable> {
    jobs: Queue<T>,
    /// Signer threads parked on `available`.
    idle: usize,
    shutdown: bool,
}

impl<T: Signable> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, PoolState<T>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The pool's threads and queue.
pub(crate) struct SignPool<T: Signable> {
    shared: Arc<Shared<T>>,
    threads: Vec<JoinHandle<()>>,
}

impl<T: Signable> SignPool<T> {
    pub(crate) fn new(threads: usize) -> Result<SignPool<T>> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(PoolState {
                jobs: VecDeque::new(),
                idle: 0,
                shutdown: false,
            }),
            available: Condvar::new(),
        });
        let mut pool = SignPool {
            shared,
            threads: Vec::with_capacity(threads),
        };
        for i in 0..threads {
            let shared = pool.shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("ledger-sign-{i}"))
                .spawn(move || {
                    lower_priority();
                    signer(&shared)
                })
                .map_err(|cause| Error::Thread {
                    what: "ledger signer",
                    cause,
                })?;
            pool.threads.push(handle);
        }
        Ok(pool)
    }

    /// Starts a group that will be handed out chunk by chunk; the calling
    /// thread is unparked when the group completes.
    pub(crate) fn start(&self, key: Arc<SigningKey>) -> Group<T> {
        Group {
            batch: Arc::new(Batch {
                state: Mutex::new(BatchState {
                    chunks: Vec::new(),
                    outstanding: 0,
                    failed: false,
                }),
                owner: std::thread::current(),
            }),
            key,
        }
    }

    /// Queues one chunk of `group` for signing.
    pub(crate) fn dispatch(&self, group: &Group<T>, chunk: Vec<T>) {
        if chunk.is_empty() {
            return;
        }
        let index = {
            let mut state = group.batch.lock();
            state.chunks.push(None);
            state.outstanding += 1;
            state.chunks.len() - 1
        };
        let job = Job {
            chunk: Some(chunk),
            index,
            key: group.key.clone(),
            batch: group.batch.clone(),
        };
        let mut pool = self.shared.lock();
        pool.jobs.push_back(job);
        if pool.idle > 0 {
            drop(pool);
            self.shared.available.notify_one();
        }
    }

    /// Signs one queued chunk on the calling thread, if there is one.
    pub(crate) fn help(&self) -> bool {
        let job = self.shared.lock().jobs.pop_front();
        job.map(Job::run).is_some()
    }

    /// Whether every chunk of `group` is back (signed, or lost).
    pub(crate) fn done(&self, group: &Group<T>) -> bool {
        group.batch.lock().outstanding == 0
    }

    /// The items of a group whose chunks are all back, in the order they
    /// were dispatched, or an error if a chunk was lost. Call it only once
    /// [`SignPool::done`] says so.
    pub(crate) fn finish(&self, group: Group<T>) -> std::result::Result<Vec<T>, String> {
        let mut state = group.batch.lock();
        if state.outstanding > 0 {
            return Err("internal error: a group was finished before it was signed".into());
        }
        if state.failed {
            return Err("a signing thread lost part of a group".into());
        }
        let mut items = Vec::with_capacity(state.chunks.iter().flatten().map(Vec::len).sum());
        for chunk in state.chunks.drain(..) {
            match chunk {
                Some(chunk) => items.extend(chunk),
                None => return Err("a chunk of a group came back unsigned".into()),
            }
        }
        Ok(items)
    }
}

impl<T: Signable> Drop for SignPool<T> {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.available.notify_all();
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}

/// A group being handed out; finish it with [`SignPool::finish`].
pub(crate) struct Group<T> {
    batch: Arc<Batch<T>>,
    key: Arc<SigningKey>,
}

/// Raises the calling thread's nice value by [`SIGNER_NICE`] (allowed
/// without privileges; on Linux, nice is per thread). A failure only costs
/// latency, so it is logged and ignored.
fn lower_priority() {
    use rustix::process::{getpriority_process, setpriority_process};
    let tid = Some(rustix::thread::gettid());
    let nice = getpriority_process(tid).unwrap_or(0);
    if let Err(e) = setpriority_process(tid, (nice + SIGNER_NICE).min(19)) {
        tracing::debug!(error = %e, "cannot lower the priority of a ledger signing thread");
    }
}

fn signer<T: Signable>(shared: &Shared<T>) {
    let mut pool = shared.lock();
    loop {
        if let Some(job) = pool.jobs.pop_front() {
            drop(pool);
            job.run();
            pool = shared.lock();
            continue;
        }
        if pool.shutdown {
            return;
        }
        pool.idle += 1;
        pool = shared.available.wait(pool).unwrap_or_else(PoisonError::into_inner);
        pool.idle -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Item {
        n: usize,
        signed: bool,
        panic: bool,
    }

    impl Signable for Item {
        fn sign_with(&mut self, _key: &SigningKey) {
            assert!(!self.panic, "injected signer panic");
            self.signed = true;
        }
    }

    /// What the writer does: help, then park until the group is done.
    fn wait(pool: &SignPool<Item>, group: Group<Item>) -> std::result::Result<Vec<Item>, String> {
        while !pool.done(&group) {
            if !pool.help() {
                std::thread::park_timeout(std::time::Duration::from_millis(10));
            }
        }
        pool.finish(group)
    }

    fn items(range: std::ops::Range<usize>) -> Vec<Item> {
        range
            .map(|n| Item {
                n,
                signed: false,
                panic: false,
            })
            .collect()
    }

    #[test]
    fn chunks_come_back_signed_and_in_order() -> std::result::Result<(), String> {
        let pool = SignPool::<Item>::new(2).map_err(|e| e.to_string())?;
        let key = Arc::new(SigningKey::from_seed([3; 32]));
        for round in 0..50 {
            let group = pool.start(key.clone());
            let mut next = 0;
            for size in [1, 7, 8, 3, 16, round % 9] {
                pool.dispatch(&group, items(next..next + size));
                next += size;
            }
            let out = wait(&pool, group)?;
            assert_eq!(out.len(), next);
            assert!(out.iter().enumerate().all(|(i, item)| item.n == i && item.signed));
        }
        Ok(())
    }

    #[test]
    fn a_panicking_signer_fails_the_group_instead_of_hanging() -> std::result::Result<(), String> {
        let pool = SignPool::<Item>::new(1).map_err(|e| e.to_string())?;
        let key = Arc::new(SigningKey::from_seed([3; 32]));
        let group = pool.start(key.clone());
        let mut bad = items(0..4);
        bad[2].panic = true;
        pool.dispatch(&group, bad);
        // Let the signer thread take the bad chunk (the caller of `finish`
        // would otherwise sign it itself).
        while !pool.shared.lock().jobs.is_empty() {
            std::thread::yield_now();
        }
        pool.dispatch(&group, items(4..8));
        let err = wait(&pool, group).err();
        assert!(err.is_some(), "a lost chunk must fail the group");
        Ok(())
    }
}
