//! Proofs for incident responders at scale (issue 23's benchmark): proof
//! generation on a 10M-event ledger, and what maintaining the Merkle tree
//! costs the write path.
//!
//! 1. **Proof generation.** A ledger of `SEALGATE_BENCH_EVENTS` events
//!    (default 10,000,000; 1,000,000 with `--quick`) of small events,
//!    appended by the real writer in `submit` batches, built once and kept
//!    under `$SEALGATE_BENCH_DIR` (default `$HOME/.cache/sealgate/bench`,
//!    `proofs-N-v1/`). Reopened read-only with the current key loaded
//!    from its key directory, as `sealgate prove` does, it times
//!    [`Ledger::prove_inclusion`] (random `seq` in a tree of random size,
//!    and in the whole tree, `sealgate prove SEQ`'s default) and
//!    [`Ledger::prove_consistency`] (random `old ≤ new`): p50, p99 and max
//!    against 1 ms p99. The measured call is the whole proof as the CLI
//!    gets it: the tree reads, the event's record, the key schedule
//!    (genesis and rotations, their signatures checked) and the signed
//!    checkpoint. A second pass, over other random samples, times the parts
//!    alone (tree reads, key schedule, signing) to show the split. Range
//!    proofs ([`Ledger::range_proof`]) of a few lengths are a diagnostic.
//! 2. **The tree's cost on the write path.** The 64-writer append case of
//!    the ledger benchmark (`benches/ledger/appends.rs`, its code), with OS
//!    threads and with tokio tasks, on two ledgers in service: one normal,
//!    one whose writer does not maintain the tree
//!    ([`Ledger::create_without_tree`], a throwaway ledger). The two
//!    alternate in rounds (the order swapped each round) so that the
//!    machine's drift falls on both; per round the cost is
//!    `1 − on / off`, and the verdict is on the median over rounds against
//!    10 %. The core time per append of the writer thread, the signers and
//!    RocksDB's threads, with the tree and without, says where it goes;
//!    the tree's hashing alone (a leaf hash and a node hash per event, on
//!    one core) is printed as its floor.
//!
//! ```text
//! export CARGO_TARGET_DIR=$HOME/.cache/sealgate/target
//! cargo bench --bench proofs                      # 10M events (built once, ~3.7 GB), 5 rounds
//! cargo bench --bench proofs -- --quick           # 1M events, 3 rounds of shorter windows
//! cargo bench --bench proofs -- --only proofs     # or --only tree
//! ```
//!
//! Missing a target is reported, not an error.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use ledger::merkle::{leaf_data, leaf_hash, node_hash};
use ledger::{Actor, Checkpoint, Draft, EventKind, Hash, KeyDir, Ledger, RequestId, SigningKey};

// The ledger benchmark's append cases; this bench uses some of its helpers.
#[allow(dead_code)]
#[path = "ledger/appends.rs"]
mod appends;

use appends::{Appends, Stage, durable_appends_async_on, durable_appends_on, fill_with, ledger_in_service_with};

/// Bump when the cached ledger's events change, so that it is rebuilt.
const LEDGER_VERSION: u32 = 1;
/// The target: proof generation p99.
const PROOF_P99: Duration = Duration::from_millis(1);
/// The target: the tree's share of the append throughput at 64 writers.
const TREE_COST: f64 = 0.10;
/// Writers of the side-by-side append case.
const WRITERS: usize = 64;

struct Plan {
    quick: bool,
    events: u64,
    samples: usize,
    range_samples: usize,
    rounds: usize,
    warmup: Duration,
    window: Duration,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only = args.iter().skip_while(|a| *a != "--only").nth(1).cloned();
    let events = match std::env::var("SEALGATE_BENCH_EVENTS") {
        Ok(v) => v.parse().with_context(|| format!("SEALGATE_BENCH_EVENTS={v}"))?,
        Err(_) if quick => 1_000_000,
        Err(_) => 10_000_000,
    };
    let plan = Plan {
        quick,
        events,
        samples: if quick { 1_000 } else { 5_000 },
        range_samples: if quick { 100 } else { 300 },
        rounds: if quick { 3 } else { 5 },
        warmup: Duration::from_millis(if quick { 300 } else { 500 }),
        window: Duration::from_secs(if quick { 2 } else { 3 }),
    };
    let root = match std::env::var_os("SEALGATE_BENCH_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var("HOME").context("HOME is not set")?).join(".cache/sealgate/bench"),
    };
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .context("cannot read the number of cores")?;
    println!(
        "sealgate proofs benchmark ({} run): {cores} cores, bench dir {}",
        if quick { "quick" } else { "full" },
        root.display()
    );
    println!();
    let mut verdicts = Vec::new();
    if only.as_deref().is_none_or(|o| o == "proofs") {
        verdicts.extend(proofs(&root, &plan)?);
    }
    if only.as_deref().is_none_or(|o| o == "tree") {
        verdicts.extend(tree_cost(&root, &plan, cores)?);
    }
    println!("Targets");
    for (name, measured, target, pass) in &verdicts {
        println!(
            "  {name:<46} {measured:>16}  target {target:<12} {}",
            if *pass { "PASS" } else { "FAIL" }
        );
    }
    let met = verdicts.iter().filter(|v| v.3).count();
    println!("{met} of {} targets met", verdicts.len());
    Ok(())
}

type Verdict = (String, String, String, bool);

// ---------------------------------------------------------------------------
// 1. Proof generation

/// The smallest event the gateway could write: a kind and a request id.
fn small_draft() -> Draft {
    let mut d = Draft::new(EventKind::ToolCallRequested);
    d.correlation.request_id = Some(RequestId::Int(0));
    d
}

/// Bytes of every file under `dir`.
fn size_on_disk(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            size_on_disk(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// The cached ledger of at least `n` events, built if missing. Returns its
/// directory and the build's seconds (as recorded when it was built).
fn cached_ledger(root: &Path, n: u64) -> Result<(PathBuf, f64)> {
    let dir = root.join(format!("proofs-{n}-v{LEDGER_VERSION}"));
    let done = dir.join("complete");
    if let Ok(text) = std::fs::read_to_string(&done) {
        let secs = text
            .trim()
            .parse()
            .with_context(|| format!("{}: not seconds", done.display()))?;
        return Ok((dir, secs));
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let keys = KeyDir::new(dir.join("keys"));
    let path = dir.join("ledger");
    let ledger = Ledger::create(&path, &keys, SigningKey::generate(), Actor::default())
        .with_context(|| format!("cannot create a ledger in {}", path.display()))?;
    let started = Instant::now();
    let target = usize::try_from(n.saturating_sub(1))?;
    let mut shown = 0;
    fill_with(&ledger, target, &small_draft(), |done| {
        if done * 20 / target.max(1) > shown {
            shown = done * 20 / target.max(1);
            eprintln!(
                "  building the ledger: {done} events ({:.0} events/s)",
                done as f64 / started.elapsed().as_secs_f64()
            );
        }
    })?;
    drop(ledger);
    let secs = started.elapsed().as_secs_f64();
    std::fs::write(&done, format!("{secs}\n"))?;
    Ok((dir, secs))
}

/// splitmix64: reproducible random sequence numbers and sizes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi]`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// p50, p99, max and mean of samples (sorted in place).
struct Spread {
    p50: Duration,
    p99: Duration,
    max: Duration,
    mean: Duration,
}

fn spread(samples: &mut [Duration]) -> Spread {
    samples.sort_unstable();
    let pct = |p: f64| {
        let rank = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len().max(1));
        samples.get(rank - 1).copied().unwrap_or_default()
    };
    Spread {
        p50: pct(0.50),
        p99: pct(0.99),
        max: samples.last().copied().unwrap_or_default(),
        mean: samples.iter().sum::<Duration>() / samples.len().max(1) as u32,
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn print_spread(name: &str, s: &Spread, extra: &str) {
    println!(
        "  {name:<44} {:>9.1} {:>9.1} {:>9.1} {:>9.1}  {extra}",
        us(s.p50),
        us(s.p99),
        us(s.max),
        us(s.mean)
    );
}

/// Times `f` over `samples` calls, each given the sample's index.
fn timed(samples: usize, mut f: impl FnMut(usize) -> Result<()>) -> Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(samples);
    for i in 0..samples {
        let t = Instant::now();
        f(i)?;
        out.push(t.elapsed());
    }
    Ok(out)
}

/// This thread's time waiting for a core so far: the run-queue wait of
/// `/proc/thread-self/schedstat` (its second field, nanoseconds).
fn run_queue_wait() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().nth(1)?.parse().ok().map(Duration::from_nanos)
}

/// [`timed`], also returning each sample's time less what the thread spent
/// waiting for a core meanwhile (another process had it): what the proof
/// took on a core, or waiting for I/O.
fn timed_on_core(samples: usize, mut f: impl FnMut() -> Result<()>) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let (mut wall, mut on_core) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    for _ in 0..samples {
        let waited = run_queue_wait();
        let t = Instant::now();
        f()?;
        let elapsed = t.elapsed();
        let waited = match (waited, run_queue_wait()) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => Duration::ZERO,
        };
        wall.push(elapsed);
        on_core.push(elapsed.saturating_sub(waited));
    }
    Ok((wall, on_core))
}

fn proofs(root: &Path, plan: &Plan) -> Result<Vec<Verdict>> {
    let (dir, build_secs) = cached_ledger(root, plan.events)?;
    let bytes = size_on_disk(&dir.join("ledger"))?;
    let opened = Instant::now();
    let ledger = Ledger::open_read_only(&dir.join("ledger"))
        .with_context(|| format!("cannot open the ledger in {}", dir.display()))?;
    let current = ledger.current_key_id()?;
    let key = KeyDir::new(dir.join("keys"))
        .load(current)
        .with_context(|| format!("the ledger's current key {current}"))?;
    let open_ms = opened.elapsed().as_secs_f64() * 1e3;
    let n = ledger.tree_size();
    println!(
        "Proof generation: {n} events of {} canonical bytes (the cached ledger {}, built by the writer in {build_secs:.0} s, {:.0} events/s; {:.2} GiB on disk, {:.0} B per event)",
        canonical_len(&small_draft()),
        dir.display(),
        n as f64 / build_secs,
        gib(bytes),
        bytes as f64 / n as f64
    );
    println!("  read-only open and key load as `sealgate prove` does: {open_ms:.1} ms (not in the figures below)");

    // Proofs must verify: a few of each, checked offline.
    let history = ledger.key_history()?;
    let mut rng = Rng(0x5ea1_6a7e);
    for _ in 0..20 {
        let size = rng.between(1, n);
        let seq = rng.between(0, size - 1);
        let proof = ledger.prove_inclusion(seq, size, &key)?;
        proof
            .verify(&history, None)
            .with_context(|| format!("the inclusion proof of {seq} in {size} does not verify"))?;
        let old = rng.between(1, size);
        let note = ledger.checkpoint(old, &key)?;
        ledger
            .prove_consistency(old, size, &key)?
            .verify(&history, &note)
            .with_context(|| format!("the consistency proof {old} -> {size} does not verify"))?;
    }

    let samples = plan.samples;
    let draw = |rng: &mut Rng| {
        let size = rng.between(1, n);
        (rng.between(0, size - 1), size)
    };
    let draw_old_new = |rng: &mut Rng| {
        let old = rng.between(1, n);
        (old, rng.between(old, n))
    };
    let mut rng = Rng(1);
    let (mut inclusion, mut inclusion_core) = timed_on_core(samples, || {
        let (seq, size) = draw(&mut rng);
        ledger.prove_inclusion(seq, size, &key).map(drop).map_err(Into::into)
    })?;
    let (mut at_head, mut at_head_core) = timed_on_core(samples, || {
        let seq = rng.between(0, n - 1);
        ledger.prove_inclusion(seq, n, &key).map(drop).map_err(Into::into)
    })?;
    let (mut consistency, mut consistency_core) = timed_on_core(samples, || {
        let (old, new) = draw_old_new(&mut rng);
        ledger.prove_consistency(old, new, &key).map(drop).map_err(Into::into)
    })?;

    // The parts alone, over other samples: the tree reads (the proof's
    // path, the event's record and the checkpoint's root), the key
    // schedule read from the log (genesis and rotations, signatures
    // checked), and the checkpoint's signature.
    let mut rng = Rng(2);
    let (mut reads, mut keys, mut sign) = (Vec::new(), Vec::new(), Vec::new());
    // One stored node per set bit of the size: a root's reads, one each.
    let mut per_node = Vec::new();
    let mut consistency_reads = Vec::new();
    for _ in 0..samples {
        let (seq, size) = draw(&mut rng);
        let t = Instant::now();
        let path = ledger.inclusion_proof(seq, size)?;
        let leaf = ledger.leaf_hash(seq)?;
        let r = Instant::now();
        let root = ledger.tree_root(size)?;
        reads.push(t.elapsed());
        per_node.push(r.elapsed() / size.count_ones());
        std::hint::black_box((path, leaf));
        let t = Instant::now();
        let schedule = ledger.key_schedule()?;
        keys.push(t.elapsed());
        ensure!(schedule.current() == key.id(), "the key is not the log's current key");
        let t = Instant::now();
        let note = Checkpoint {
            origin: ledger::checkpoint::origin(&ledger.ledger_id()),
            size,
            root,
        }
        .sign(&key);
        sign.push(t.elapsed());
        std::hint::black_box(note);
        let (old, new) = draw_old_new(&mut rng);
        let t = Instant::now();
        let proof = ledger.consistency_proof(old, new)?;
        let root = ledger.tree_root(new)?;
        consistency_reads.push(t.elapsed());
        std::hint::black_box((proof, root));
    }

    println!(
        "  {:<44} {:>9} {:>9} {:>9} {:>9}   (µs; {samples} random samples each)",
        "", "p50", "p99", "max", "mean"
    );
    let inclusion = spread(&mut inclusion);
    let at_head = spread(&mut at_head);
    let consistency = spread(&mut consistency);
    print_spread("prove_inclusion, random seq < random size", &inclusion, "");
    print_spread("prove_inclusion, random seq, the whole tree", &at_head, "");
    print_spread("prove_consistency, random old <= new", &consistency, "");
    println!("  the same samples, less the time the thread waited for a core (run-queue wait, schedstat):");
    print_spread("  prove_inclusion, random size", &spread(&mut inclusion_core), "");
    print_spread("  prove_inclusion, the whole tree", &spread(&mut at_head_core), "");
    print_spread("  prove_consistency", &spread(&mut consistency_core), "");
    println!("  the parts, alone (other samples):");
    print_spread("  inclusion: tree reads (path, record, root)", &spread(&mut reads), "");
    print_spread(
        "  consistency: tree reads (proof, root)",
        &spread(&mut consistency_reads),
        "",
    );
    print_spread("  key schedule (genesis + rotations, checked)", &spread(&mut keys), "");
    print_spread("  checkpoint signature (Ed25519 note)", &spread(&mut sign), "");
    print_spread(
        "  one stored node read (tree_root / its nodes)",
        &spread(&mut per_node),
        "(a proof reads ~log2 n to 2 log2 n nodes)",
    );

    // Range proofs: a diagnostic (no target).
    println!("  range proofs (Ledger::range_proof, hashes only, no leaves), in the whole tree:");
    let mut rng = Rng(3);
    for len in [1u64, 1_000, 100_000, 1_000_000] {
        if len > n {
            continue;
        }
        let mut hashes = 0;
        let mut t = timed(plan.range_samples, |_| {
            let first = rng.between(0, n - len);
            hashes = hashes.max(ledger.range_proof(first, first + len, n)?.len());
            Ok(())
        })?;
        print_spread(
            &format!("  {len} events"),
            &spread(&mut t),
            &format!("(at most {hashes} hashes; {} samples)", plan.range_samples),
        );
    }
    println!(
        "  (signing is inside every prove_* figure: it is part of what a proof costs. The ledger is {:.2} GiB and the machine has {:.1} GiB of RAM: its files may be in the page cache, which is not dropped here)",
        gib(bytes),
        gib(ram_bytes().unwrap_or(0))
    );
    println!();
    let pass = |s: &Spread| s.p99 <= PROOF_P99;
    let label = |s: &Spread| format!("p99 {:.0} µs", us(s.p99));
    Ok(vec![
        (
            format!("inclusion proof, {n} events (random sizes)"),
            label(&inclusion),
            "p99 ≤ 1 ms".into(),
            pass(&inclusion),
        ),
        (
            format!("inclusion proof, {n} events (whole tree)"),
            label(&at_head),
            "p99 ≤ 1 ms".into(),
            pass(&at_head),
        ),
        (
            format!("consistency proof, {n} events"),
            label(&consistency),
            "p99 ≤ 1 ms".into(),
            pass(&consistency),
        ),
    ])
}

fn canonical_len(draft: &Draft) -> usize {
    let key = SigningKey::from_seed([1; 32]);
    ledger::Event::from_draft(
        draft.clone(),
        1_000_000,
        ledger::Timestamp::now(),
        Hash([0xab; 32]),
        key.id(),
    )
    .canonical_bytes()
    .len()
}

/// Total RAM (`/proc/meminfo`).
fn ram_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

// ---------------------------------------------------------------------------
// 2. The tree's cost on the write path

/// One measured window of a case.
struct Window {
    per_sec: f64,
    /// Core time per append of the writer thread, the signers and
    /// RocksDB's threads (µs).
    writer: f64,
    signers: f64,
    store: f64,
    all: f64,
}

fn window_of(a: &Appends) -> Window {
    let per = |stage: Stage| a.stage(stage).map_or(f64::NAN, |d| us(d) / a.count.max(1) as f64);
    Window {
        per_sec: a.per_sec,
        writer: per(Stage::Writer),
        signers: per(Stage::Signers),
        store: per(Stage::Store),
        all: a.cpu.map_or(f64::NAN, |d| us(d) / a.count.max(1) as f64),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The tree's hashing alone, per event on one core: the leaf hash (on the
/// signing pool) and one node hash on average (on the writer thread).
fn hashing_floor() -> Duration {
    let n = 200_000u64;
    let sig = [7u8; 64];
    let t = Instant::now();
    let mut acc = [0u8; 32];
    for i in 0..n {
        let leaf = leaf_hash(&leaf_data(i, &Hash(acc), &sig));
        acc = node_hash(&acc, &leaf);
    }
    std::hint::black_box(acc);
    t.elapsed() / n as u32
}

fn tree_cost(root: &Path, plan: &Plan, cores: usize) -> Result<Vec<Verdict>> {
    let floor = hashing_floor();
    println!(
        "The tree's cost on the write path: {WRITERS} writers (the ledger bench's case), a ledger with the tree and one without, alternating, {} rounds of {:.1} s windows after {:.1} s warm-up",
        plan.rounds,
        plan.window.as_secs_f64(),
        plan.warmup.as_secs_f64()
    );
    let (_on_dir, on) = ledger_in_service_with(root, true)?;
    let (_off_dir, off) = ledger_in_service_with(root, false)?;
    let (on, off) = (Arc::new(on), Arc::new(off));
    println!(
        "  {:>5} {:>6} {:>5} {:>11} {:>10} {:>10} {:>10} {:>10}",
        "round", "case", "tree", "appends/s", "writer us", "signers us", "store us", "all us"
    );
    let mut verdicts = Vec::new();
    for kind in ["threads", "tasks"] {
        let mut rows: Vec<(Window, Window)> = Vec::new();
        for round in 0..plan.rounds {
            let mut measured: [Option<Window>; 2] = [None, None];
            let order = if round % 2 == 0 { [true, false] } else { [false, true] };
            for tree in order {
                let ledger = if tree { &on } else { &off };
                let a = if kind == "threads" {
                    durable_appends_on(ledger, WRITERS, plan.warmup, plan.window)?
                } else {
                    durable_appends_async_on(ledger.clone(), WRITERS, plan.warmup, plan.window, cores)?
                };
                let w = window_of(&a);
                println!(
                    "  {:>5} {:>6} {:>5} {:>11.0} {:>10.2} {:>10.2} {:>10.2} {:>10.2}",
                    round + 1,
                    format!("{WRITERS} {}", if kind == "threads" { "t" } else { "k" }),
                    if tree { "on" } else { "off" },
                    w.per_sec,
                    w.writer,
                    w.signers,
                    w.store,
                    w.all
                );
                measured[usize::from(!tree)] = Some(w);
            }
            if let [Some(a), Some(b)] = measured {
                rows.push((a, b));
            }
        }
        let costs: Vec<f64> = rows.iter().map(|(on, off)| 1.0 - on.per_sec / off.per_sec).collect();
        let cost = median(costs.clone());
        let med =
            |f: fn(&Window) -> f64, tree: bool| median(rows.iter().map(|(a, b)| f(if tree { a } else { b })).collect());
        // On cores that are all busy, appends/s goes as 1 / core time per
        // append: the tree's share of the core time is a second estimate
        // of its cost, steadier than the throughput on a shared machine.
        let by_core = 1.0 - med(|w| w.all, false) / med(|w| w.all, true);
        println!(
            "  {WRITERS} {kind}: medians {:.0} appends/s with the tree, {:.0} without; cost per round {}; median {:.1} %",
            med(|w| w.per_sec, true),
            med(|w| w.per_sec, false),
            costs
                .iter()
                .map(|c| format!("{:.1} %", 100.0 * c))
                .collect::<Vec<_>>()
                .join(", "),
            100.0 * cost
        );
        println!(
            "    core time per append, with - without (medians): writer thread {:+.2} µs, signers {:+.2} µs, RocksDB threads {:+.2} µs, all threads {:+.2} µs",
            med(|w| w.writer, true) - med(|w| w.writer, false),
            med(|w| w.signers, true) - med(|w| w.signers, false),
            med(|w| w.store, true) - med(|w| w.store, false),
            med(|w| w.all, true) - med(|w| w.all, false)
        );
        println!(
            "    the tree's share of the core time per append (1 - without/with, medians {:.2} / {:.2} µs): {:.1} %",
            med(|w| w.all, false),
            med(|w| w.all, true),
            100.0 * by_core
        );
        verdicts.push((
            format!("tree maintenance, {WRITERS} {kind}"),
            format!("{:.1} % of appends/s", 100.0 * cost),
            "≤ 10 %".into(),
            cost <= TREE_COST,
        ));
    }
    println!(
        "  the tree's hashing alone (a leaf hash and a node hash, SHA-256, one core): {:.2} µs per event",
        us(floor)
    );
    println!(
        "  (writer us etc. = core time per append of that thread kind over the window, /proc/self/task/*/schedstat; all = the whole process; each ledger filled with {} events first, both open throughout{})",
        appends::SERVICE_FILL,
        if plan.quick { "; quick run" } else { "" }
    );
    drop((on, off));
    println!();
    Ok(verdicts)
}
