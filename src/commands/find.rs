//! `sealgate find`: the events that carried a value output safety
//! redacted, found by the keyed digests recorded beside it
//! (`gateway::findable`). Reads the ledger read-only, like `sealgate log`,
//! and the ledger's find key; the value searched for is never printed.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::{LogFormat, Range};
use crate::config::Paths;
use crate::gateway::findable::{FindKey, Match, matched_fields};

pub fn run(
    paths: &Paths,
    value: Option<String>,
    value_stdin: bool,
    range: &Range,
    output: LogFormat,
) -> Result<ExitCode> {
    let value = match value {
        Some(v) if !value_stdin => v,
        _ => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the value from stdin")?;
            // One value; a trailing newline is not part of it.
            text.trim_end_matches(['\n', '\r']).to_string()
        }
    };
    let ledger = super::open_read_only(paths)?;
    let key = FindKey::open(&paths.key_dir, &ledger.ledger_id())?;
    let digests = key.query(&value)?;
    let (from, to) = super::checked_seqs(&ledger, range)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if output == LogFormat::Table {
        writeln!(
            out,
            "{}  {:>8}  FOUND IN",
            super::event_cells(super::EVENT_COLUMNS),
            "REQUEST"
        )?;
    }
    let (mut found, mut read) = (0u64, 0u64);
    for sealed in ledger.events(from, to)? {
        let sealed = sealed?;
        read += 1;
        let fields = matched_fields(&sealed.event, &digests);
        if fields.is_empty() {
            continue;
        }
        found += 1;
        match output {
            LogFormat::Json => {
                let mut line = sealed.to_json();
                line["found_in"] = serde_json::json!(fields);
                writeln!(out, "{line}")?;
            }
            LogFormat::Table => {
                let m = Match::new(&sealed.event, fields);
                writeln!(
                    out,
                    "{}  {:>8}  {}",
                    super::event_row(&sealed.event),
                    m.request_seq.map_or_else(|| "-".to_owned(), |s| s.to_string()),
                    m.fields.join(",")
                )?;
            }
        }
    }
    out.flush()?;
    eprintln!("{found} of {read} events (seq {from} to {to}) carried the value");
    Ok(ExitCode::SUCCESS)
}
