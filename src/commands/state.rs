//! `sealgate state`: the governance state as of any time, read from the
//! ledger (and its snapshots) without a running gateway.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use ledger::Snapshots;

use crate::config::Paths;
use crate::governance::{GovState, render, resolve_as_of};

/// With `use_snapshots`, replay starts from the newest snapshot file that
/// matches the log and is signed by its current key; otherwise from the
/// log's start. The output says which (`snapshot_seq`: the sequence number
/// of the snapshot used, or null).
pub fn run(paths: &Paths, part: &str, as_of: Option<&str>, use_snapshots: bool) -> Result<ExitCode> {
    let ledger = super::open_read_only(paths)?;
    let head = ledger.head().seq;
    let at = match as_of {
        Some(at) => resolve_as_of(&ledger, at)?,
        None => Some(head),
    };
    let (state, seq, snapshot_seq) = match at {
        None => (GovState::default(), None, None),
        Some(seq) => {
            let snapshots = use_snapshots.then(|| Snapshots::new(paths.data_dir.join("snapshots")));
            let folded = ledger::fold_to::<GovState>(&ledger, snapshots.as_ref(), seq)
                .with_context(|| format!("cannot replay the governance state to seq {seq}"))?;
            let (seq, snapshot_seq) = (folded.seq(), folded.snapshot_seq());
            (folded.into_state(), seq, snapshot_seq)
        }
    };
    let value = render(&state, part).map_err(anyhow::Error::msg)?;
    let out = serde_json::json!({
        "as_of": as_of,
        "as_of_seq": seq,
        "head_seq": head,
        "snapshot_seq": snapshot_seq,
        part: value,
    });
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::to_string_pretty(&out)?)?;
    Ok(ExitCode::SUCCESS)
}
