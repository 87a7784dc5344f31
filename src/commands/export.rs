//! `sealgate export status` and `sealgate export replay`: the sinks of
//! `[[exporters]]` (`sealgate-exporters`, docs/EXPORT.md), seen from their
//! files under `<data dir>/derived/export/` and the log opened read-only.
//! Neither writes to the ledger; `replay` writes a request file that the
//! sink takes.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use ledger::Timestamp;

use crate::cli::{ExportCommand, ReportFormat};
use crate::config::{Config, Paths};

pub fn run(paths: &Paths, config: &Config, command: ExportCommand) -> Result<ExitCode> {
    match command {
        ExportCommand::Parquet { out, window } => {
            let window =
                crate::api::query::window(window.from, window.to, window.last.as_deref(), window.last_quarter)?;
            super::sql::export_parquet(paths, &out, &window, config.query.limits(None))
        }
        ExportCommand::Status { output } => {
            exporters::config::validate_all(&config.exporters)?;
            status(paths, config, output)
        }
        ExportCommand::Replay { sink, from, since } => {
            exporters::config::validate_all(&config.exporters)?;
            replay(paths, config, &sink, from, since.as_deref())
        }
    }
}

fn status(paths: &Paths, config: &Config, output: ReportFormat) -> Result<ExitCode> {
    if config.exporters.is_empty() {
        eprintln!("no exporters configured ([[exporters]] in the config; docs/EXPORT.md)");
    }
    let ledger = super::open_read_only(paths)?;
    let reports = exporters::report(&paths.data_dir, &ledger, &config.exporters)?;
    let mut out = std::io::stdout().lock();
    match output {
        ReportFormat::Json => {
            for r in &reports {
                serde_json::to_writer(&mut out, r)?;
                writeln!(out)?;
            }
        }
        ReportFormat::Text => {
            for r in &reports {
                let cursor = r.cursor.map_or_else(|| "none".to_string(), |c| c.to_string());
                writeln!(out, "{} -> {}", r.name, r.endpoint)?;
                writeln!(
                    out,
                    "  cursor {cursor} of head {}: lag {} event(s), {:.1} s",
                    r.head, r.lag_events, r.lag_seconds
                )?;
                match &r.status {
                    Some(s) => {
                        let state = serde_json::to_value(s.state)?;
                        let sends = if r.protocol == exporters::Protocol::File {
                            "file(s) written"
                        } else {
                            "request(s)"
                        };
                        writeln!(
                            out,
                            "  state {} (pid {}, updated {}); {} record(s) exported, {} {sends}",
                            state.as_str().unwrap_or("?"),
                            s.pid,
                            s.updated_at,
                            s.exported,
                            s.requests
                        )?;
                        if r.process_alive == Some(false) {
                            writeln!(
                                out,
                                "  its process is gone: the gateway was killed, not stopped (the state is the one it was in)"
                            )?;
                        }
                        if let Some((from, to)) = s.in_flight {
                            let what = if r.protocol == exporters::Protocol::File {
                                "file being filled"
                            } else {
                                "batch in flight"
                            };
                            writeln!(out, "  {what}: seq {from} to {to}")?;
                        }
                        if let Some(e) = &s.last_error {
                            writeln!(out, "  last error ({}): {e}", s.last_error_at.as_deref().unwrap_or("?"))?;
                        }
                    }
                    None => writeln!(out, "  never run")?,
                }
                writeln!(
                    out,
                    "  dead letters: {} batch(es), {} record(s) rejected",
                    r.dead_letter_batches, r.dead_letter_records
                )?;
                if let Some(files) = r.lake_files {
                    writeln!(out, "  lake files in the manifest: {files}")?;
                }
                if let Some(from) = r.replay_from {
                    writeln!(out, "  replay from seq {from} requested")?;
                }
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn replay(paths: &Paths, config: &Config, sink: &str, from: Option<u64>, since: Option<&str>) -> Result<ExitCode> {
    if !config.exporters.iter().any(|s| s.name == sink) {
        return Err(exporters::Error::UnknownSink(sink.to_string()).into());
    }
    let ledger = super::open_read_only(paths)?;
    let head = ledger.head_checked()?;
    let from = match (from, since) {
        (Some(seq), _) => {
            if seq > head.seq {
                bail!("seq {seq} is past the log's head (seq {})", head.seq);
            }
            seq
        }
        (None, Some(t)) => {
            let ts = Timestamp::parse_rfc3339(t).map_err(|e| anyhow::anyhow!("--since {t}: {e}"))?;
            let found = ledger.locate_at_or_after(ts)?;
            if let Some(damage) = &found.index_damage {
                eprintln!("warning: the time index disagrees with the events ({damage}); found by the events");
            }
            match found.seq {
                Some(seq) => seq,
                None => bail!("no event at or after {t}"),
            }
        }
        (None, None) => bail!("give --from SEQ or --since TIME"),
    };
    let dir = exporters::sink_dir(&paths.data_dir, sink);
    exporters::request_replay(&dir, from)
        .with_context(|| format!("cannot write the replay request in {}", dir.display()))?;
    println!("{sink}: replay from seq {from} requested (head is seq {})", head.seq);
    Ok(ExitCode::SUCCESS)
}
