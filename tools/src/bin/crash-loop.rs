//! Long-running SIGKILL torture: kills `sealgate append` at random moments,
//! round after round, and checks after each kill that the log verifies and
//! lost nothing acknowledged.
//!
//! cargo run -p sealgate-tools --bin crash-loop -- --sealgate target/debug/sealgate --rounds 1000

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use clap::Parser;
use sealgate_tools::crash::{self, CrashOptions};

#[derive(Parser)]
struct Args {
    /// The sealgate binary under test.
    #[arg(long)]
    sealgate: PathBuf,
    /// Data directory to use (created with `sealgate init` if it has no ledger). Default: a temporary one.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 1000)]
    rounds: u32,
    /// Seed of the kill schedule (default: from the clock; printed so it can be replayed).
    #[arg(long)]
    seed: Option<u64>,
    /// Kills land uniformly between 0 and this many milliseconds after the
    /// child's start (one round in four) or its first acknowledgement.
    #[arg(long, default_value_t = 500)]
    max_delay_ms: u64,
    /// The child's `ledger.memtable_mb`: 1 makes RocksDB switch (and reuse)
    /// WAL files every ~1,300 events, so kills land in reused WAL files.
    #[arg(long)]
    memtable_mb: Option<u64>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let tmp;
    let data_dir = match args.data_dir {
        Some(d) => d,
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().join("data")
        }
    };
    if !data_dir.join("ledger").exists() {
        let st = Command::new(&args.sealgate)
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("init")
            .status()?;
        ensure!(st.success(), "sealgate init failed");
    }
    println!(
        "crash-loop: seed {seed}, {} rounds, data dir {}",
        args.rounds,
        data_dir.display()
    );
    let opts = CrashOptions {
        sealgate: args.sealgate,
        data_dir,
        rounds: args.rounds,
        seed,
        max_delay: Duration::from_millis(args.max_delay_ms),
        memtable_mb: args.memtable_mb,
    };
    let summary = crash::run(&opts, |round, o| {
        println!(
            "round {round:>5}: killed {}, {:>6} acknowledged, head {}",
            o.kill, o.acked, o.head
        );
    })
    .with_context(|| format!("replay with --seed {seed}"))?;
    println!(
        "crash-loop: {} rounds, {} with acknowledged appends, {} killed in a reused WAL, {} events acknowledged, all present; head {}",
        summary.rounds, summary.rounds_with_acks, summary.rounds_in_recycled_wal, summary.acked, summary.head
    );
    Ok(())
}
