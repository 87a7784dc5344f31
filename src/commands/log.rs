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
    // A time is checked against the events, not taken from the time index
    // alone (it is not signed): an edited index must not leave events out.
    let range = super::resolve_range(&ledger, range, super::Lookup::Checked)?;
    let from = range.from.unwrap_or(0);
    let to = range.to.unwrap_or(super::last_seq(&ledger)?);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if output == LogFormat::Table {
        writeln!(
            out,
            "{:>8}  {:<30}  {:<20}  {:<16}  {:<28}  HASH",
            "SEQ", "TIME", "KIND", "PRINCIPAL", "SUBJECT"
        )?;
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
            LogFormat::Table => {
                let ev = &e.event;
                let subject = [
                    ev.subject.server.as_deref(),
                    ev.subject
                        .tool
                        .as_deref()
                        .or(ev.subject.prompt.as_deref())
                        .or(ev.subject.resource.as_deref()),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("/");
                writeln!(
                    out,
                    "{:>8}  {:<30}  {:<20}  {:<16}  {:<28}  {}",
                    ev.seq,
                    ev.ts.to_string(),
                    ev.kind.as_str(),
                    ev.actor.principal.as_deref().unwrap_or("-"),
                    if subject.is_empty() { "-".to_owned() } else { subject },
                    e.hash.short()
                )?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
