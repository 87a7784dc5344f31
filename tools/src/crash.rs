//! The SIGKILL crash harness.
//!
//! Each round starts `sealgate append --batch-size 1 -o json` on an existing
//! data directory, feeds it events as fast as it takes them (so hundreds of
//! appends are in flight in the writer's group commit), records every
//! acknowledgement it prints, and kills it with SIGKILL at a random moment:
//! during start-up and recovery, mid-group, mid-sync. One round in four is
//! timed from the child's start, so kills land in start-up and recovery; the
//! others from its first acknowledgement, so they land while appends flow
//! however long the start took (a loaded machine starts the child slower,
//! and kills timed from the start alone then mostly hit it before it had
//! acknowledged anything). Every other round is timed by events instead:
//! its kill lands once the child has acknowledged a few thousand events
//! (with a small random delay), which with a small memtable is past two
//! or more WAL switches, so that kills land in reused WAL files however
//! fast or slow the machine is. After every kill the log must open,
//! verify, and hold every acknowledged event with the hash that was
//! acknowledged.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use ledger::{Ledger, RequestId, VerifyOptions};

#[derive(Clone, Debug)]
pub struct CrashOptions {
    /// The `sealgate` binary to run as the child.
    pub sealgate: PathBuf,
    /// An initialized data directory (`sealgate init`).
    pub data_dir: PathBuf,
    pub rounds: u32,
    pub seed: u64,
    /// Kills land uniformly in `0..=max_delay` after the child starts (one
    /// round in four) or after its first acknowledgement (the others).
    pub max_delay: Duration,
    /// The child's `ledger.memtable_mb`, if set: a small one makes RocksDB
    /// flush and move to a new WAL file every few thousand events, so that
    /// kills land while the child writes into reused (recycled) WAL files.
    pub memtable_mb: Option<u64>,
}

/// When a round's kill lands.
#[derive(Clone, Copy, Debug)]
pub struct KillAt {
    pub delay: Duration,
    /// `delay` counts from the child's acknowledgement number `after_acks`
    /// (1: the first), or from its start if 0.
    pub after_acks: usize,
}

impl std::fmt::Display for KillAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.delay.as_secs_f64() * 1e3;
        match self.after_acks {
            0 => write!(f, "{ms:.1} ms after start"),
            1 => write!(f, "{ms:.1} ms after the first acknowledgement"),
            n => write!(f, "{ms:.1} ms after acknowledgement {n}"),
        }
    }
}

/// Waits at most this long for the acknowledgement a kill is timed from
/// (a guard against a hung child, not a bound on speed: past it, the kill
/// lands anyway).
const ACK_PATIENCE: Duration = Duration::from_secs(300);

/// Every this many rounds, one is timed by events: killed after
/// `EVENT_TIMED_ACKS` acknowledgements (plus up to an eighth of the
/// maximum delay).
const EVENT_TIMED_EVERY: u32 = 2;
/// With a 1 MiB memtable RocksDB switches WAL files every ~1,300 events; a
/// child starts with no flushed WAL to reuse, so its first reuse comes
/// with its second switch at the earliest.
const EVENT_TIMED_ACKS: std::ops::Range<u64> = 3_000..9_000;

/// What one round saw.
#[derive(Clone, Debug)]
pub struct RoundOutcome {
    /// Events the child acknowledged before it was killed.
    pub acked: usize,
    /// The head after recovery.
    pub head: u64,
    pub kill: KillAt,
    /// The child was killed while it wrote into a reused (recycled) WAL
    /// file, so recovery met that file's earlier records after its new ones.
    pub in_recycled_wal: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub rounds: u32,
    pub acked: u64,
    /// Rounds in which the kill landed after at least one acknowledgement.
    pub rounds_with_acks: u32,
    /// Rounds in which the child was killed while writing into a reused
    /// WAL file.
    pub rounds_in_recycled_wal: u32,
    /// Rounds timed by events (killed after thousands of acknowledgements),
    /// and how many of them were killed in a reused WAL file.
    pub event_timed_rounds: u32,
    pub event_timed_in_recycled_wal: u32,
    pub head: u64,
}

/// A small deterministic generator (xorshift64*), so a failing seed can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

/// The request id that marks line `line` of round `round`.
fn marker(round: u32, line: u64) -> String {
    format!("crash-r{round}-l{line}")
}

/// Runs the rounds; calls `on_round` after each one has been checked.
pub fn run(opts: &CrashOptions, mut on_round: impl FnMut(u32, &RoundOutcome)) -> Result<Summary> {
    let mut rng = Rng::new(opts.seed);
    let mut summary = Summary::default();
    let ledger_dir = opts.data_dir.join("ledger");
    // The head checked after the previous kill: each round verifies what is
    // new since then, anchored to it (every tenth round, and the last, verify
    // the whole log).
    let mut pinned: Option<(u64, ledger::Hash)> = None;
    let mut wals = Wals::default();
    for round in 0..opts.rounds {
        let max_us = opts.max_delay.as_micros() as u64;
        let event_timed = round % EVENT_TIMED_EVERY == EVENT_TIMED_EVERY - 1;
        let kill = if event_timed {
            KillAt {
                after_acks: (EVENT_TIMED_ACKS.start + rng.below(EVENT_TIMED_ACKS.end - EVENT_TIMED_ACKS.start))
                    as usize,
                delay: Duration::from_micros(rng.below(max_us / 8 + 1)),
            }
        } else {
            KillAt {
                after_acks: usize::from(rng.below(4) != 0),
                delay: Duration::from_micros(rng.below(max_us + 1)),
            }
        };
        let started = std::time::SystemTime::now();
        let acks =
            kill_one(opts, round, kill, &mut rng).with_context(|| format!("round {round} (seed {})", opts.seed))?;
        let in_recycled_wal = wals.child_wrote_a_reused_one(&ledger_dir, started)?;
        let full = round % 10 == 0 || round + 1 == opts.rounds;
        let (head, hash) = check(&ledger_dir, round, &acks, if full { None } else { pinned }).with_context(|| {
            format!(
                "round {round} (seed {}, killed {kill}, {} acknowledged)",
                opts.seed,
                acks.len()
            )
        })?;
        summary.rounds += 1;
        summary.acked += acks.len() as u64;
        summary.rounds_with_acks += u32::from(!acks.is_empty());
        summary.rounds_in_recycled_wal += u32::from(in_recycled_wal);
        summary.event_timed_rounds += u32::from(event_timed);
        summary.event_timed_in_recycled_wal += u32::from(event_timed && in_recycled_wal);
        summary.head = head;
        pinned = Some((head, hash));
        on_round(
            round,
            &RoundOutcome {
                acked: acks.len(),
                head,
                kill,
                in_recycled_wal,
            },
        );
    }
    // The last kill must also leave a log the writer can continue.
    let keys = ledger::KeyDir::new(opts.data_dir.join("keys"));
    let ledger = Ledger::open(&ledger_dir, &keys).context("open for writing after the last kill")?;
    drop(ledger);
    Ok(summary)
}

/// The WAL files (`NNNNNN.log`) of the ledger between rounds.
#[derive(Default)]
struct Wals {
    /// The newest WAL name after the previous kill.
    newest_before: Option<OsString>,
}

impl Wals {
    /// Whether the child just killed (started at `child_started`) was
    /// writing into a reused WAL file: the newest WAL is one the child made
    /// (a number greater than any before it ran) and was created before the
    /// child started, or before a WAL with a smaller number. RocksDB reuses
    /// a flushed WAL file by renaming it to the next WAL's number, so the
    /// file keeps its creation time. False where the filesystem keeps no
    /// creation time.
    fn child_wrote_a_reused_one(&mut self, dir: &Path, child_started: std::time::SystemTime) -> Result<bool> {
        let mut wals = Vec::new();
        for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            let name = entry.file_name();
            if name.to_string_lossy().ends_with(".log") {
                let born = entry.metadata().ok().and_then(|m| m.created().ok());
                wals.push((name, born));
            }
        }
        // WAL names are zero-padded numbers: they sort as the numbers do.
        wals.sort();
        let Some((newest, born)) = wals.last().cloned() else {
            return Ok(false);
        };
        let made_by_child = self.newest_before.as_ref().is_none_or(|before| newest > *before);
        let reused =
            born.is_some_and(|born| born < child_started || wals.iter().any(|(_, b)| b.is_some_and(|b| b > born)));
        self.newest_before = Some(newest);
        Ok(made_by_child && reused)
    }
}

/// An acknowledgement printed by the child.
struct Ack {
    line: u64,
    seq: u64,
    hash: String,
}

fn kill_one(opts: &CrashOptions, round: u32, kill: KillAt, rng: &mut Rng) -> Result<Vec<Ack>> {
    let mut child = Command::new(&opts.sealgate)
        .arg("--data-dir")
        .arg(&opts.data_dir)
        .args(["append", "--batch-size", "1", "-o", "json"])
        .envs(
            opts.memtable_mb
                .map(|mb| ("SEALGATE_LEDGER__MEMTABLE_MB", mb.to_string())),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", opts.sealgate.display()))?;
    let stdin = child.stdin.take().context("child stdin")?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut stderr = child.stderr.take().context("child stderr")?;
    let pad_seed = rng.next_u64();

    let feeder = std::thread::spawn(move || {
        let mut w = BufWriter::with_capacity(64 * 1024, stdin);
        let mut pad = Rng::new(pad_seed);
        for line in 1u64.. {
            let pad_len = pad.below(600) as usize;
            let text = format!(
                r#"{{"kind":"x.crash.call","actor":{{"principal":"crash-harness","session":"r{round}"}},"subject":{{"server":"crash","tool":"t{}"}},"correlation":{{"request_id":"{}"}},"body":{{"line":{line},"pad":"{}"}}}}"#,
                line % 13,
                marker(round, line),
                "p".repeat(pad_len)
            );
            if writeln!(w, "{text}").is_err() || (line % 32 == 0 && w.flush().is_err()) {
                return;
            }
        }
    });
    let (timed_ack, acked) = mpsc::channel::<()>();
    let wanted = kill.after_acks;
    let reader = std::thread::spawn(move || -> Result<Vec<Ack>> {
        let mut acks = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // A kill can cut the last line short: it was never fully printed,
            // so it was never an acknowledgement the caller could rely on.
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                break;
            };
            let field = |k: &str| v.get(k).with_context(|| format!("ack without `{k}`: {line}"));
            acks.push(Ack {
                line: field("line")?.as_u64().context("line")?,
                seq: field("seq")?.as_u64().context("seq")?,
                hash: field("hash")?.as_str().context("hash")?.to_owned(),
            });
            if acks.len() == wanted {
                let _ = timed_ack.send(());
            }
        }
        Ok(acks)
    });

    if kill.after_acks > 0 {
        // Ends early, without that acknowledgement, if the child exits (the
        // reader then drops the sender): the check below says why.
        let _ = acked.recv_timeout(ACK_PATIENCE);
    }
    std::thread::sleep(kill.delay);
    let exited_early = child.try_wait()?.is_some();
    let _ = child.kill();
    let status = child.wait()?;
    let acks = reader.join().map_err(|_| anyhow::anyhow!("reader panicked"))??;
    let _ = feeder.join();
    if exited_early && !status.success() {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        bail!("the child failed on its own before the kill ({status}): {}", err.trim());
    }
    Ok(acks)
}

/// Opens the killed log read-only, verifies it (all of it, or what follows
/// the head `pinned` after the previous round, anchored to that head), and
/// finds every acknowledged event with its acknowledged hash and content.
fn check(
    ledger_dir: &Path,
    round: u32,
    acks: &[Ack],
    pinned: Option<(u64, ledger::Hash)>,
) -> Result<(u64, ledger::Hash)> {
    let ledger = Ledger::open_read_only(ledger_dir).context("open after kill")?;
    let opts = VerifyOptions {
        from: pinned.map(|(seq, _)| seq),
        pinned_head: pinned,
        ..VerifyOptions::default()
    };
    let report = ledger.verify(&opts, &|_, _| {})?;
    if let Some(f) = &report.failure {
        bail!("verification failed after the kill: {f}");
    }
    for (i, ack) in acks.iter().enumerate() {
        ensure!(
            ack.line == i as u64 + 1,
            "acks out of order: ack {i} is for line {}",
            ack.line
        );
        let e = ledger
            .get(ack.seq)?
            .with_context(|| format!("acknowledged seq {} (line {}) is missing", ack.seq, ack.line))?;
        ensure!(
            e.hash.to_hex() == ack.hash,
            "seq {}: stored hash differs from the acknowledged one",
            ack.seq
        );
        let want = RequestId::Str(marker(round, ack.line));
        ensure!(
            e.event.correlation.request_id.as_ref() == Some(&want),
            "seq {} holds {:?}, but line {} was acknowledged there",
            ack.seq,
            e.event.correlation.request_id,
            ack.line
        );
    }
    let head = ledger.head();
    Ok((head.seq, head.hash))
}
