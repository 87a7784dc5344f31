//! The least core time an append needs besides its signature, measured part
//! by part on this machine: what no arrangement of the ledger's threads can
//! avoid, and so the highest share of the sign-only bound that the 64- and
//! 512-writer cases could reach here.
//!
//! Each part is measured alone, by the simplest code that does it, with a
//! commit group of `group` events (every one of `group` writers in one
//! sync: the most a sync can carry with that many writers, so each part's
//! share per append is the smallest it can be):
//!
//! - **store**: RocksDB write batches (the ledger's store options) of
//!   `group` records of the bench's size, one time-index entry and a head
//!   each, without sync, then the memtable flush they need: the core time
//!   of every thread (the writing one and RocksDB's), per record;
//! - **sync**: one in-place `write_at` of the group's bytes and
//!   `sync_data`, the core time of the syncing thread (on this VM the
//!   kernel's work for a sync runs on the caller's core), per event;
//! - **hand-off**: `group` callers each queue a request with a tokio mpsc
//!   channel and wait on a oneshot answer, as `Ledger::submit` and
//!   `Pending` do; one server takes every queued request and answers them
//!   all, and each caller asks again at once. The core time of every
//!   thread per round trip. For OS threads the server is a thread and each
//!   caller blocks (a futex wake per answer); for tasks the server is a
//!   task on the callers' runtime, so no thread is woken from outside it:
//!   cheaper than the ledger's path, whose writer is a thread of its own.
//!
//! With sealing (`per_event_costs`), these are a floor: the real pipeline
//! also hands events to the signers and back, and its cores idle at times.
//! The signature is taken at its one-core cost (the cheapest it comes),
//! so the best share printed is an upper bound.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::{mpsc, oneshot};

use super::{open_bare_rocksdb, threads_cpu, total_cpu};

/// Round trips timed per hand-off case, after the warm-up.
const HANDOFF_WINDOW: Duration = Duration::from_millis(800);
const HANDOFF_WARMUP: Duration = Duration::from_millis(200);
/// Syncs timed per group size, after as many warm-up syncs.
const SYNCS: usize = 300;
/// Events written for the store part.
const STORE_EVENTS: usize = 128 * 1024;

/// Core time per append of each part, for one group size.
pub(crate) struct Parts {
    pub(crate) group: usize,
    pub(crate) store: Duration,
    pub(crate) sync: Duration,
    pub(crate) threads: Duration,
    pub(crate) tasks: Duration,
}

/// Measures every part for a group of `group` events of `record` bytes.
pub(crate) fn parts(base: &Path, group: usize, record: usize, cores: usize) -> Result<Parts> {
    Ok(Parts {
        group,
        store: store_write(base, group, record)?,
        sync: sync_cpu(base, group, record)?,
        threads: handoff_threads(group)?,
        tasks: handoff_tasks(group, cores)?,
    })
}

/// Core time of all threads per event written to RocksDB, flush included.
fn store_write(base: &Path, group: usize, record: usize) -> Result<Duration> {
    let dir = tempfile::tempdir_in(base).with_context(|| format!("cannot create a temp dir in {}", base.display()))?;
    let db = open_bare_rocksdb(dir.path())?;
    let cf = |name: &str| db.cf_handle(name).with_context(|| format!("no column family {name}"));
    let (events, time, meta) = (cf("events")?, cf("time")?, cf("meta")?);
    // Bytes that compress about as an event record does: mostly text.
    let value: Vec<u8> = (0..record)
        .map(|i| b"sealgate,event,record;"[i % 22] ^ (i % 7) as u8)
        .collect();
    let before = threads_cpu();
    let mut seq = 0u64;
    while (seq as usize) < STORE_EVENTS {
        let mut batch = rocksdb::WriteBatch::default();
        for _ in 0..group {
            batch.put_cf(&events, seq.to_be_bytes(), &value);
            seq += 1;
        }
        batch.put_cf(&time, [seq.to_be_bytes(), seq.to_be_bytes()].concat(), []);
        batch.put_cf(&meta, b"head", [0u8; 48]);
        db.write(batch).context("store part: write failed")?;
    }
    for name in ["events", "time", "meta"] {
        db.flush_cf(&cf(name)?).context("store part: flush failed")?;
    }
    let used = total_cpu(&before, &threads_cpu()).context("no per-thread CPU figures")?;
    Ok(used / seq as u32)
}

/// This thread's on-CPU time (`/proc/thread-self/schedstat`).
fn own_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok().map(Duration::from_nanos)
}

/// Core time per event of making a group's bytes durable in place.
fn sync_cpu(base: &Path, group: usize, record: usize) -> Result<Duration> {
    let dir = tempfile::tempdir_in(base).with_context(|| format!("cannot create a temp dir in {}", base.display()))?;
    let path = dir.path().join("group-sync");
    let file = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let bytes = vec![0x5au8; group * record];
    file.set_len(bytes.len() as u64)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot lay out {}", path.display()))?;
    let sync = || {
        file.write_all_at(&bytes, 0)
            .and_then(|()| file.sync_data())
            .with_context(|| format!("cannot overwrite and sync {}", path.display()))
    };
    for _ in 0..SYNCS {
        sync()?;
    }
    let before = own_cpu().context("no per-thread CPU figures")?;
    for _ in 0..SYNCS {
        sync()?;
    }
    let used = own_cpu().context("no per-thread CPU figures")?.saturating_sub(before);
    Ok(used / (SYNCS * group) as u32)
}

type Request = oneshot::Sender<u64>;

/// Answers every queued request at once, until the callers are gone.
fn serve(rx: &mut mpsc::Receiver<Request>, first: Request, n: &mut u64) {
    let _ = first.send(*n);
    *n += 1;
    while let Ok(next) = rx.try_recv() {
        let _ = next.send(*n);
        *n += 1;
    }
}

/// Counts round trips between `warm` and `stop` and the core time of every
/// thread meanwhile; the callers run until `done` is set.
fn timed(count: &AtomicU64, done: &AtomicBool) -> Result<Duration> {
    std::thread::sleep(HANDOFF_WARMUP);
    let (before, from) = (threads_cpu(), count.load(Ordering::Relaxed));
    std::thread::sleep(HANDOFF_WINDOW);
    let (after, to) = (threads_cpu(), count.load(Ordering::Relaxed));
    done.store(true, Ordering::Relaxed);
    let used = total_cpu(&before, &after).context("no per-thread CPU figures")?;
    Ok(used / (to - from).max(1) as u32)
}

/// Core time per round trip, `callers` OS threads and a server thread.
fn handoff_threads(callers: usize) -> Result<Duration> {
    let (tx, mut rx) = mpsc::channel::<Request>(callers.max(1));
    let count = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let server = std::thread::Builder::new()
        .name("floor-server".into())
        .spawn(move || {
            let mut n = 0;
            while let Some(first) = rx.blocking_recv() {
                serve(&mut rx, first, &mut n);
            }
        })
        .context("cannot start the hand-off server thread")?;
    let mut threads = Vec::with_capacity(callers);
    for _ in 0..callers {
        let (tx, count, done) = (tx.clone(), count.clone(), done.clone());
        threads.push(
            std::thread::Builder::new()
                .name("floor-caller".into())
                .stack_size(super::WRITER_STACK)
                .spawn(move || {
                    while !done.load(Ordering::Relaxed) {
                        let (answer, wait) = oneshot::channel();
                        if tx.blocking_send(answer).is_err() || wait.blocking_recv().is_err() {
                            return;
                        }
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .context("cannot start a hand-off caller thread")?,
        );
    }
    drop(tx);
    let per = timed(&count, &done);
    for t in threads {
        let _ = t.join();
    }
    let _ = server.join();
    per
}

/// Core time per round trip, `callers` tasks and a server task on one
/// runtime with a worker per core.
fn handoff_tasks(callers: usize, cores: usize) -> Result<Duration> {
    let runtime = super::task_runtime(cores)?;
    let (tx, mut rx) = mpsc::channel::<Request>(callers.max(1));
    let count = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    runtime.spawn(async move {
        let mut n = 0;
        while let Some(first) = rx.recv().await {
            serve(&mut rx, first, &mut n);
        }
    });
    for _ in 0..callers {
        let (tx, count, done) = (tx.clone(), count.clone(), done.clone());
        runtime.spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let (answer, wait) = oneshot::channel();
                if tx.send(answer).await.is_err() || wait.await.is_err() {
                    return;
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    drop(tx);
    let per = timed(&count, &done);
    runtime.shutdown_timeout(Duration::from_secs(1));
    per
}

/// Prints the parts and what they leave of each target; returns the best
/// share of the sign bound, by (kind, writers), for the targets table.
pub(crate) fn print(
    parts: &[Parts],
    seal: Duration,
    one_sign: Duration,
    sign_all: f64,
    cores: usize,
) -> Vec<(&'static str, usize, f64)> {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "Least core time an append needs besides its signature, part by part (us per append; benches/ledger/floor.rs)"
    );
    println!(
        "  {:>7} {:>7} {:>7} {:>7} {:>15} {:>15}   {:>24}",
        "group", "seal", "store", "sync", "hand-off thr", "hand-off task", "best share of sign bound"
    );
    let mut best = Vec::new();
    for p in parts {
        let floor = seal + p.store + p.sync;
        // With every core busy and nothing but the signature and these
        // parts per append: cores / (signature + parts) appends a second.
        let share = |handoff: Duration| cores as f64 / (one_sign + floor + handoff).as_secs_f64() / sign_all;
        let (thr, task) = (share(p.threads), share(p.tasks));
        println!(
            "  {:>7} {:>7.2} {:>7.2} {:>7.2} {:>15.2} {:>15.2}   {:>10.1}% thr {:>6.1}% task",
            p.group,
            us(seal),
            us(p.store),
            us(p.sync),
            us(p.threads),
            us(p.tasks),
            100.0 * thr,
            100.0 * task
        );
        best.push(("threads", p.group, thr));
        best.push(("tasks", p.group, task));
    }
    println!(
        "  (group = events per sync and writers waiting; a signature taken at its one-core cost, {:.2} us; no idle core, no hand-off to signers)",
        us(one_sign)
    );
    println!();
    best
}
