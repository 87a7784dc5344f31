//! Evidence bundles (`docs/FORMAT.md` §16): how long `sealgate
//! verify-evidence` takes on a bundle of 1,000 events, against the target
//! of ≤ 1 s (issue 23), beside the floor of its work: 1,000 strict Ed25519
//! verifications alone.
//!
//! The ledger is 100,000 events of realistic gateway traffic
//! (`sealgate_tools::traffic`, 100 principals over a year), with a key
//! rotation in the middle. Two bundles are measured:
//!
//! - **filtered**: every event of one principal over the whole year (about
//!   1,000), each with its own inclusion path;
//! - **complete range**: the 1,000 events of a time window, with one range
//!   proof.
//!
//! For each: the time to write it (`sealgate evidence`'s work, in
//! process), its size, the in-process verification (median and max of 10),
//! and the `sealgate verify-evidence` process end to end (median of 5:
//! start, read, verify, print), which is what the target is about.
//!
//! `cargo bench --bench evidence`.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use ledger::{Actor, EvidencePlan, KeyDir, Ledger, Selection, SigningKey, StoreOptions, Timestamp, verify_evidence};
use sealgate_tools::traffic::{Spec, Traffic};

const EVENTS: u64 = 100_000;
const TARGET: Duration = Duration::from_secs(1);
const SECOND: u64 = 1_000_000_000;

static NOW: AtomicU64 = AtomicU64::new(0);

fn simulated() -> Timestamp {
    Timestamp::from_nanos(NOW.load(SeqCst))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("ledger");
    let keys = KeyDir::new(dir.path().join("keys"));
    // The genesis is dated now; the traffic, on its own clock, from a day
    // later (the writer never dates an event before the one before it).
    drop(Ledger::create(&path, &keys, SigningKey::generate(), Actor::default())?);
    let start_ns = (Timestamp::now().as_nanos() / SECOND + 86_400) * SECOND;
    let ledger = Ledger::open_with_clock(&path, &keys, &StoreOptions::default(), simulated)?;
    let mut spec = Spec::year(EVENTS, start_ns);
    spec.principals = 100;
    let mut traffic = Traffic::new(spec);
    let started = Instant::now();
    let mut next = 1u64;
    let mut rotated = false;
    while let Some((ts, drafts)) = traffic.next_tick(next) {
        NOW.store(ts, SeqCst);
        if !rotated && next >= EVENTS / 2 {
            ledger.rotate_key(SigningKey::generate(), Actor::default(), Some("bench".into()))?;
            rotated = true;
            next += 1;
        }
        next += drafts.len() as u64;
        ledger.submit(drafts)?.wait()?;
    }
    let size = ledger.tree_size();
    println!(
        "ledger: {size} events of gateway traffic with a rotation at {}, built in {:.1} s",
        EVENTS / 2,
        started.elapsed().as_secs_f64()
    );
    let key_id = ledger.current_key_id()?;
    let key = keys.load(key_id)?;
    let history = ledger.key_history()?;
    let history_path = dir.path().join("keys.txt");
    std::fs::write(&history_path, history.to_text())?;

    // The floor: 1,000 strict signature verifications.
    let signer = SigningKey::generate();
    let sigs: Vec<(ledger::Hash, ed25519_dalek::Signature)> = (0..1000u32)
        .map(|i| {
            let h = ledger::Hash(*blake3::hash(&i.to_le_bytes()).as_bytes());
            (h, signer.sign_hash(&h))
        })
        .collect();
    let public = signer.public();
    let t = Instant::now();
    for (h, s) in &sigs {
        public.verify_strict(&h.0, s)?;
    }
    let floor = t.elapsed();
    println!("floor: 1,000 strict Ed25519 verifications on one core: {}", ms(floor));

    // A window of 1,000 events from the middle of the log.
    let first = ledger.get(EVENTS / 4)?.ok_or("no event")?.event.ts;
    let last = ledger.get(EVENTS / 4 + 999)?.ok_or("no event")?.event.ts;
    let cases = [
        (
            "filtered (one principal, a year)",
            Selection::Range {
                from: Timestamp::from_nanos(start_ns),
                to: Timestamp::from_nanos(start_ns + 366 * 86_400 * SECOND),
                server: None,
                principal: Some("user-007".into()),
            },
        ),
        (
            "complete range (a window)",
            Selection::Range {
                from: first,
                to: last,
                server: None,
                principal: None,
            },
        ),
    ];
    let mut verdicts = Vec::new();
    for (name, selection) in cases {
        let t = Instant::now();
        let plan: EvidencePlan = ledger.plan_evidence(&selection, size)?;
        let note = ledger.checkpoint(size, &key)?;
        let mut text = Vec::new();
        ledger.write_evidence(&plan, &note, &key, &["bench".into()], &mut text)?;
        let written = t.elapsed();
        let bundle = dir.path().join("bundle.evidence");
        std::fs::write(&bundle, &text)?;
        let text = String::from_utf8(text)?;
        let mut runs = Vec::new();
        let mut selected = 0;
        for _ in 0..10 {
            let t = Instant::now();
            let v = verify_evidence(&text, &history, &[], 0).map_err(|r| r.to_string())?;
            runs.push(t.elapsed());
            selected = v.events.len();
        }
        let max = runs.iter().max().copied().unwrap_or_default();
        let inproc = median(runs);
        let mut cli = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let out = Command::new(env!("CARGO_BIN_EXE_sealgate"))
                .arg("verify-evidence")
                .arg(&bundle)
                .arg("--key")
                .arg(&history_path)
                .output()?;
            cli.push(t.elapsed());
            if !out.status.success() {
                return Err(format!("verify-evidence: {}", String::from_utf8_lossy(&out.stdout)).into());
            }
        }
        let cli = median(cli);
        println!(
            "{name}: {selected} selected of {} events in the bundle, {:.0} KiB, written in {}; verified in process in {} (max {}), by `sealgate verify-evidence` in {}",
            plan.proved.len() as u64 + plan.range.map_or(0, |(a, e)| e - a),
            text.len() as f64 / 1024.0,
            ms(written),
            ms(inproc),
            ms(max),
            ms(cli)
        );
        verdicts.push((name, selected, cli));
    }
    for (name, selected, cli) in verdicts {
        // Scaled to 1,000 events, the target's size.
        let per_1000 = cli.mul_f64(1000.0 / selected.max(1) as f64);
        println!(
            "{} verify-evidence of 1,000 events, {name}: {} (target <= {}, floor {})",
            if per_1000 <= TARGET { "PASS" } else { "FAIL" },
            ms(per_1000),
            ms(TARGET),
            ms(floor)
        );
    }
    Ok(())
}
