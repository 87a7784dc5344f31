//! Acknowledging async callers through their own runtime.
//!
//! When a group is durable, each of its callers is told its receipts. A
//! blocking caller is woken directly. An async caller, told directly from
//! the sync thread, has its task woken from outside the runtime: tokio
//! unparks a worker thread for it, the worker finds the task and (being the
//! last one searching) unparks another, and both run a few microseconds and
//! park again before the sync thread goes on to the next caller. With
//! dozens of callers in a group that is a storm of futex wake-ups and
//! context switches, most of them on the core the sync thread shares.
//!
//! So a group's async receipts go, with one wake-up, to one task on the
//! callers' runtime, the *pump*, which sends them from a worker thread:
//! there, waking a task only puts it on that worker's run queue.
//!
//! Only a caller that awaits its answer ([`crate::Pending::recv`]) inside a
//! tokio runtime is routed this way; one that blocks in
//! [`crate::Pending::wait`] is always answered directly, so a blocked
//! runtime cannot hold back its own acknowledgement. A sync with a single
//! routed caller answers it directly too: there is nothing to batch.
//!
//! The pump lives on the runtime of the first routed caller. If that runtime
//! shuts down, the pump's drop answers what it still held and the next
//! routed caller starts a new one; until then receipts go directly. When the
//! ledger closes, the pump ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

use super::{Receipt, Reply};

/// How a caller wants its receipts: set by [`crate::Pending::recv`] when it
/// awaits them on a runtime with a pump.
#[derive(Clone, Default)]
pub(crate) struct Route(Arc<AtomicBool>);

impl Route {
    fn via_pump(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    pub(crate) fn set_via_pump(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// One caller's answer, waiting to be sent.
pub(crate) struct Ack {
    pub(crate) reply: Reply<Vec<Receipt>>,
    pub(crate) receipts: Vec<Receipt>,
    pub(crate) route: Route,
}

impl Ack {
    fn send(self) {
        let _ = self.reply.send(Ok(self.receipts));
    }
}

#[derive(Default)]
struct State {
    queue: Vec<Ack>,
    waker: Option<Waker>,
    /// A pump task exists (spawned, and not yet dropped).
    running: bool,
    /// The ledger is closed: a running pump ends, none is started.
    closed: bool,
}

/// The hand-off between the threads that acknowledge and the pump.
#[derive(Default)]
pub(crate) struct Acks {
    state: Mutex<State>,
    /// Mirrors `State::running`, read without the lock on every await.
    running: AtomicBool,
}

impl Acks {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends a sync's answers: those of routed callers through the pump
    /// when there are at least two of them and a pump runs, all others
    /// directly.
    pub(crate) fn deliver(&self, acks: Vec<Ack>) {
        let mut routed = Vec::with_capacity(acks.len());
        for a in acks {
            if a.route.via_pump() { routed.push(a) } else { a.send() }
        }
        if routed.len() < 2 {
            return routed.into_iter().for_each(Ack::send);
        }
        let mut state = self.lock();
        if !state.running {
            drop(state);
            return routed.into_iter().for_each(Ack::send);
        }
        state.queue.extend(routed);
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Makes sure a pump runs, starting one on the current tokio runtime if
    /// none does. Returns whether one runs (false outside a runtime, or
    /// once the ledger is closed).
    pub(crate) fn ensure_pump(self: &Arc<Self>) -> bool {
        if self.running.load(Ordering::Acquire) {
            return true;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        {
            let mut state = self.lock();
            if state.closed {
                return false;
            }
            if state.running {
                return true;
            }
            state.running = true;
            self.running.store(true, Ordering::Release);
        }
        // The guard is moved into the task before it first runs, so a task
        // that a shutting-down runtime drops unpolled still clears
        // `running` (spawned outside the lock, since that drop takes it).
        let guard = PumpGuard(self.clone());
        drop(runtime.spawn(async move { guard.run().await }));
        true
    }

    /// Ends the pump once the ledger has stopped acknowledging.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Owns the pump's claim on [`Acks`]: whatever way the task ends, its drop
/// answers what is still queued and lets a new pump start.
struct PumpGuard(Arc<Acks>);

impl PumpGuard {
    async fn run(&self) {
        std::future::poll_fn(|cx| {
            let (batch, closed) = {
                let mut state = self.0.lock();
                if !state.closed {
                    state.waker = Some(cx.waker().clone());
                }
                (std::mem::take(&mut state.queue), state.closed)
            };
            batch.into_iter().for_each(Ack::send);
            if closed { Poll::Ready(()) } else { Poll::Pending }
        })
        .await
    }
}

impl Drop for PumpGuard {
    fn drop(&mut self) {
        let queue = {
            let mut state = self.0.lock();
            state.running = false;
            self.0.running.store(false, Ordering::Release);
            state.waker = None;
            std::mem::take(&mut state.queue)
        };
        queue.into_iter().for_each(Ack::send);
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;
    use crate::event::Hash;
    use crate::timestamp::Timestamp;

    type Rx = oneshot::Receiver<crate::error::Result<Vec<Receipt>>>;

    /// An answer for seq `seq`, routed through the pump or not.
    fn ack(seq: u64, via_pump: bool) -> (Ack, Rx) {
        let (reply, rx) = oneshot::channel();
        let route = Route::default();
        if via_pump {
            route.set_via_pump();
        }
        let receipts = vec![Receipt {
            seq,
            hash: Hash::ZERO,
            ts: Timestamp::from_nanos(0),
        }];
        (Ack { reply, receipts, route }, rx)
    }

    /// Delivers two routed answers, `seq` and `seq + 1`, in one hand-off.
    fn deliver_two(acks: &Acks, seq: u64) -> (Rx, Rx) {
        let (a, rx_a) = ack(seq, true);
        let (b, rx_b) = ack(seq + 1, true);
        acks.deliver(vec![a, b]);
        (rx_a, rx_b)
    }

    fn answered(rx: &mut Rx) -> Option<u64> {
        match rx.try_recv() {
            Ok(Ok(receipts)) => receipts.first().map(|r| r.seq),
            _ => None,
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().build().expect("runtime")
    }

    /// A runtime with a pump started on it, not running until driven.
    fn pumped(acks: &Arc<Acks>) -> tokio::runtime::Runtime {
        let rt = runtime();
        assert!(rt.block_on(async { acks.ensure_pump() }));
        rt
    }

    #[test]
    fn routed_answers_wait_for_the_pump_and_the_others_do_not() {
        let acks = Arc::new(Acks::default());
        let rt = pumped(&acks);
        let (a, mut rx_a) = ack(1, true);
        let (b, mut rx_b) = ack(2, true);
        let (c, mut rx_c) = ack(3, false);
        acks.deliver(vec![a, b, c]);
        // The runtime has not run since: only the direct answer is there.
        assert_eq!(answered(&mut rx_c), Some(3));
        assert_eq!(answered(&mut rx_a), None);
        assert_eq!(answered(&mut rx_b), None);
        rt.block_on(tokio::task::yield_now());
        assert_eq!(answered(&mut rx_a), Some(1));
        assert_eq!(answered(&mut rx_b), Some(2));
    }

    #[test]
    fn a_lone_routed_answer_is_sent_directly() {
        let acks = Arc::new(Acks::default());
        let _rt = pumped(&acks);
        let (a, mut rx) = ack(1, true);
        acks.deliver(vec![a]);
        assert_eq!(answered(&mut rx), Some(1));
    }

    #[test]
    fn a_runtime_that_shuts_down_answers_what_its_pump_held() {
        let acks = Arc::new(Acks::default());
        let rt = pumped(&acks);
        let (mut rx_a, mut rx_b) = deliver_two(&acks, 1);
        assert_eq!(answered(&mut rx_a), None);
        drop(rt);
        assert_eq!(answered(&mut rx_a), Some(1));
        assert_eq!(answered(&mut rx_b), Some(2));
        // With no pump, routed answers go directly ...
        let (mut rx_c, mut rx_d) = deliver_two(&acks, 3);
        assert_eq!((answered(&mut rx_c), answered(&mut rx_d)), (Some(3), Some(4)));
        // ... until a caller on another runtime starts a new one.
        let rt = pumped(&acks);
        let (mut rx_e, mut rx_f) = deliver_two(&acks, 5);
        assert_eq!(answered(&mut rx_e), None);
        rt.block_on(tokio::task::yield_now());
        assert_eq!((answered(&mut rx_e), answered(&mut rx_f)), (Some(5), Some(6)));
    }

    #[test]
    fn a_pump_spawned_on_a_runtime_that_is_gone_is_not_waited_for() {
        let acks = Arc::new(Acks::default());
        let rt = runtime();
        let handle = rt.handle().clone();
        drop(rt);
        // Spawning on a shut-down runtime drops the task unpolled.
        let _guard = handle.enter();
        acks.ensure_pump();
        let (mut rx_a, mut rx_b) = deliver_two(&acks, 1);
        assert_eq!((answered(&mut rx_a), answered(&mut rx_b)), (Some(1), Some(2)));
    }

    #[test]
    fn closing_ends_the_pump_and_no_new_one_starts() {
        let acks = Arc::new(Acks::default());
        let rt = pumped(&acks);
        let (mut rx_a, mut rx_b) = deliver_two(&acks, 1);
        acks.close();
        rt.block_on(tokio::task::yield_now());
        assert_eq!((answered(&mut rx_a), answered(&mut rx_b)), (Some(1), Some(2)));
        assert!(!acks.running.load(Ordering::Acquire), "the pump ended");
        assert_eq!(rt.metrics().num_alive_tasks(), 0);
        assert!(!rt.block_on(async { acks.ensure_pump() }));
    }
}
