use std::io::Write;
use std::process::ExitCode;

use anyhow::{Result, bail};
use ledger::EventKind;

use crate::cli::{LogFormat, Range};
use crate::config::Paths;

pub fn run(paths: &Paths, range: &Range, kinds: &[String], limit: Option<u64>, output: LogFormat) -> Result<ExitCode> {
    let ledger = super::open_read_only(paths)?;
    let kinds: Vec<EventKind> = kinds.iter().map(|k| EventKind::from_name(k)).collect();
    if let Some(unknown) = kinds.iter().find(|k| !k.is_known() && !k.is_extension()) {
        bail!("--kind {unknown}: unknown event kind");
    }
    let (from, to) = super::checked_seqs(&ledger, range)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if output == LogFormat::Table {
        writeln!(out, "{}  HASH", super::event_cells(super::EVENT_COLUMNS))?;
    }
    let mut shown = 0u64;
    for e in ledger.events(from, to)? {
        let e = e?;
        if !kinds.is_empty() && !kinds.contains(&e.event.kind) {
            continue;
        }
        if limit.is_some_and(|l| shown >= l) {
            break;
        }
        shown += 1;
        match output {
            LogFormat::Json => writeln!(out, "{}", e.to_json())?,
            LogFormat::Table => writeln!(out, "{}  {}", super::event_row(&e.event), e.hash.short())?,
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
