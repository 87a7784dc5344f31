//! Projection replay and restart, against the governance targets:
//! - replay throughput of the projection machinery (read, decode, hash and
//!   link check, fold) over a log of gateway traffic: target ≥ 500,000
//!   events/s;
//! - restart with a snapshot: open the ledger (with its recovery tail
//!   check), load the newest snapshot, fold the tail: target ≤ 1 s at
//!   10 million events.
//!
//! `cargo bench --bench replay` builds a log of 1 million events;
//! `SEALGATE_BENCH_EVENTS=10000000 cargo bench --bench replay` the full
//! size (building it takes minutes). The fold is the gateway's own
//! governance state (`GovState`, the registry, grants, policy and
//! approvals); 1 event in 100 issues or revokes a grant, the rest are tool
//! calls it does not fold.

use std::time::Instant;

use ledger::{Actor, Draft, Folded, KeyDir, Ledger, SigningKey, Snapshots, fold_to};
use sealgate::governance::GovState;

fn traffic(i: u64) -> Draft {
    let json = match i % 100 {
        0 => format!(
            r#"{{"kind":"grant.issued","actor":{{"principal":"admin"}},"subject":{{"server":"fs"}},"body":{{"grant_id":"g-{i}","principal":"p{}","tool":"*"}}}}"#,
            i % 50
        ),
        1 => format!(
            r#"{{"kind":"grant.revoked","actor":{{"principal":"admin"}},"subject":{{"server":"fs"}},"body":{{"grant_id":"g-{}"}}}}"#,
            i.saturating_sub(1)
        ),
        n => format!(
            r#"{{"kind":"tool_call.requested","actor":{{"principal":"p{}","session":"s{}"}},"subject":{{"server":"fs","tool":"read_file"}},"correlation":{{"request_id":{i}}},"body":{{"mcp.method.name":"tools/call","jsonrpc.request.id":"{i}","arguments":{{"json":"{{\"path\":\"/srv/data/file-{n}.txt\"}}","bytes":40,"digest":"blake3:0000000000000000000000000000000000000000000000000000000000000000","truncated":false}}}}}}"#,
            i % 50,
            i % 97
        ),
    };
    Draft::from_json(&json).expect("draft")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::var("SEALGATE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("ledger");
    let keys = KeyDir::new(dir.path().join("keys"));
    let snapshots = Snapshots::new(dir.path().join("snapshots"));

    let started = Instant::now();
    {
        let ledger = Ledger::create(&path, &keys, SigningKey::generate(), Actor::default())?;
        let mut next = 0u64;
        let mut pending = std::collections::VecDeque::new();
        while next < n {
            let batch: Vec<Draft> = (next..(next + 2000).min(n)).map(traffic).collect();
            next += batch.len() as u64;
            pending.push_back(ledger.submit(batch)?);
            if pending.len() > 4
                && let Some(p) = pending.pop_front()
            {
                p.wait()?;
            }
        }
        for p in pending {
            p.wait()?;
        }
    }
    println!("built a log of {n} events in {:.1} s", started.elapsed().as_secs_f64());

    let ledger = Ledger::open(&path, &keys)?;
    let head = ledger.head().seq;
    let mut best = f64::MAX;
    for _ in 0..2 {
        let t = Instant::now();
        let mut folded = Folded::<GovState>::default();
        folded.advance(&ledger, head)?;
        best = best.min(t.elapsed().as_secs_f64());
        assert_eq!(folded.seq(), Some(head));
    }
    let rate = (head + 1) as f64 / best;
    println!(
        "replay: {:.0} events/s (target ≥ 500000: {:.2} of target, {})",
        rate,
        rate / 500_000.0,
        if rate >= 500_000.0 { "PASS" } else { "FAIL" }
    );

    // A snapshot 10,000 events before the head, as a gateway that snapshots
    // every 10,000 events would leave at worst.
    let at = head.saturating_sub(10_000);
    let folded = fold_to::<GovState>(&ledger, None, at)?;
    snapshots.save(&ledger, &folded)?;
    drop(ledger);

    let t = Instant::now();
    let ledger = Ledger::open(&path, &keys)?;
    let opened = t.elapsed().as_secs_f64();
    let restored = fold_to::<GovState>(&ledger, Some(&snapshots), ledger.head().seq)?;
    let total = t.elapsed().as_secs_f64();
    assert_eq!(restored.seq(), Some(head));
    println!(
        "restart at {} events with a snapshot 10000 behind the head: {:.3} s (open {:.3} s) (target ≤ 1 s at 10M: {})",
        head + 1,
        total,
        opened,
        if total <= 1.0 { "PASS" } else { "FAIL" }
    );
    Ok(())
}
