//! `sealgate append`: JSON lines on stdin become events.
//!
//! Lines are read in batches (`--batch-size`; 0 means the whole input). A
//! batch is validated completely before any of it is written: if one line is
//! bad, every bad line is reported with its number and nothing from that
//! batch (or after it) is written. Valid batches are queued to the writer
//! without waiting, so many appends are in flight and share WAL syncs; a
//! printer thread reports each event (`SEQ HASH`) once it is durable, in
//! input order.
//!
//! It writes only kinds of the extension namespace (`x.<name>`: operators'
//! notes and imports). Gateway, governance and ledger kinds are written by
//! their own writers alone, so that every such event in the log is one
//! they wrote (and folds and queries can trust its shape).

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::mpsc;

use anyhow::{Context, Result};
use ledger::{Draft, Pending};

use crate::cli::AckFormat;
use crate::config::Paths;

/// Events per writer request when a large batch is queued.
const CHUNK: usize = 1024;
/// Requests queued ahead of the printer.
const IN_FLIGHT: usize = 1024;

pub fn run(paths: &Paths, batch_size: usize, output: AckFormat) -> Result<ExitCode> {
    let ledger = super::open_writable(paths)?;
    let (tx, rx) = mpsc::sync_channel::<(Vec<usize>, Pending)>(IN_FLIGHT);
    let printer = std::thread::spawn(move || print_acks(rx, output));

    let stdin = std::io::stdin().lock();
    let mut batch: Vec<(usize, Draft)> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let mut lines = stdin.lines().enumerate();
    let mut submit_error: Option<anyhow::Error> = None;
    loop {
        let next = lines.next();
        let eof = next.is_none();
        if let Some((i, line)) = next {
            let line_no = i + 1;
            let line = line.with_context(|| format!("cannot read stdin at line {line_no}"))?;
            if line.trim().is_empty() {
                continue;
            }
            match Draft::from_json(&line) {
                Ok(d) if !d.kind.is_extension() => errors.push(format!(
                    "line {line_no}: kind: `{}` is written only by Sealgate's own writers; `sealgate append` writes extension kinds, `x.<name>` (docs/EVENTS.md)",
                    d.kind
                )),
                Ok(d) => batch.push((line_no, d)),
                Err(e) => errors.push(format!("line {line_no}: {e}")),
            }
        }
        let full = batch_size > 0 && batch.len() + errors.len() >= batch_size;
        if !(full || eof) {
            continue;
        }
        if !errors.is_empty() {
            break;
        }
        let mut rest = std::mem::take(&mut batch).into_iter().peekable();
        while rest.peek().is_some() {
            let (line_nos, drafts): (Vec<usize>, Vec<Draft>) = rest.by_ref().take(CHUNK).unzip();
            match ledger.submit(drafts) {
                Ok(pending) => {
                    if tx.send((line_nos, pending)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    submit_error = Some(e.into());
                    break;
                }
            }
        }
        if eof || submit_error.is_some() {
            break;
        }
    }
    drop(tx);
    let acked = printer.join().map_err(|_| anyhow::anyhow!("ack printer panicked"))??;
    drop(ledger);

    if !errors.is_empty() {
        for e in &errors {
            eprintln!("error: {e}");
        }
        eprintln!(
            "error: rejected a batch with {} bad line(s); nothing from it was written ({acked} event(s) from earlier batches were)",
            errors.len()
        );
        return Ok(ExitCode::from(1));
    }
    if let Some(e) = submit_error {
        return Err(e.context(format!("{acked} event(s) were written before the failure")));
    }
    Ok(ExitCode::SUCCESS)
}

/// Waits for each queued request in order and prints its events. Returns
/// how many were acknowledged; the first failure ends the run with an error.
fn print_acks(rx: mpsc::Receiver<(Vec<usize>, Pending)>, output: AckFormat) -> Result<u64> {
    let stdout = std::io::stdout();
    let mut acked = 0u64;
    for (line_nos, pending) in rx {
        let receipts = match pending.wait() {
            Ok(r) => r,
            Err(e) => {
                let first = line_nos.first().copied().unwrap_or(0);
                return Err(anyhow::Error::new(e).context(format!(
                    "lines {first}..={} were not written ({acked} event(s) before them were)",
                    line_nos.last().copied().unwrap_or(first)
                )));
            }
        };
        let mut out = stdout.lock();
        for (r, line) in receipts.iter().zip(&line_nos) {
            match output {
                AckFormat::Text => writeln!(out, "{} {}", r.seq, r.hash)?,
                AckFormat::Json => writeln!(
                    out,
                    "{}",
                    serde_json::json!({"line": line, "seq": r.seq, "hash": r.hash.to_hex(), "ts": r.ts.to_string()})
                )?,
            }
        }
        out.flush()?;
        acked += receipts.len() as u64;
    }
    Ok(acked)
}
