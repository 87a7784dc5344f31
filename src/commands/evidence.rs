//! `evidence` and `verify-evidence`: sealed bundles that prove offline
//! that a call, a session or a time range is in the log
//! (`docs/FORMAT.md` §16).
//!
//! `evidence` opens the ledger read-only (beside a running gateway) and
//! seals with the current key from the key directory; it proves against the
//! gateway's last issued checkpoint, whose witnesses' cosignatures then go
//! into the bundle, when that checkpoint covers the selection, else against
//! a fresh checkpoint of the head. `verify-evidence` needs no ledger.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use ledger::{EvidencePlan, RequestId, Selection, Timestamp};

use super::proof::{issued, open_with_key, read_keys, with_cosignatures, witness_policy};
use crate::cli::ReportFormat;
use crate::config::Paths;

/// The selection flags as given.
pub struct Select {
    pub call_id: Option<String>,
    pub request_id: Option<String>,
    pub session: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub server: Option<String>,
    pub principal: Option<String>,
}

impl Select {
    fn selection(self) -> Result<Selection> {
        let time = |flag: &str, t: &str| Timestamp::parse_rfc3339(t).map_err(|e| anyhow::anyhow!("{flag} {t}: {e}"));
        match self {
            Select {
                call_id: Some(c),
                session: None,
                ..
            } => Ok(Selection::Call(c)),
            Select {
                request_id: Some(r),
                session,
                ..
            } => {
                // An integer, or a string in JSON quotes; anything else is
                // taken as the string it is.
                let id = match serde_json::from_str::<serde_json::Value>(&r) {
                    Ok(serde_json::Value::Number(n)) => RequestId::Int(
                        n.as_i64()
                            .with_context(|| format!("--request-id {r}: not a 64-bit integer"))?,
                    ),
                    Ok(serde_json::Value::String(s)) => RequestId::Str(s),
                    _ => RequestId::Str(r),
                };
                Ok(Selection::Request { id, session })
            }
            Select {
                from: Some(from),
                to: Some(to),
                session: None,
                server,
                principal,
                ..
            } => {
                let (from, to) = (time("--from", &from)?, time("--to", &to)?);
                if from > to {
                    bail!("--from {from} is after --to {to}");
                }
                Ok(Selection::Range {
                    from,
                    to,
                    server,
                    principal,
                })
            }
            Select {
                session: Some(s),
                call_id: None,
                from: None,
                ..
            } => Ok(Selection::Session(s)),
            _ => bail!(
                "select the events: --call-id ID, --session ID, --request-id ID [--session ID], or --from T1 --to T2 [--server S] [--principal P]"
            ),
        }
    }
}

pub fn write(paths: &Paths, select: Select, fresh: bool, output: &Path) -> Result<ExitCode> {
    let selection = select.selection()?;
    if output.exists() {
        bail!("{} exists: a bundle is never overwritten", output.display());
    }
    let (ledger, key) = open_with_key(paths)?;
    let head = ledger.tree_size();
    let at_head = ledger.plan_evidence(&selection, head)?;
    // The issued checkpoint, when it proves exactly the same events.
    let latest = if fresh { None } else { issued(paths).ok() };
    let (plan, note): (EvidencePlan, String) = match latest {
        Some((size, note))
            if size > 0
                && size <= head
                && ledger.plan_evidence(&selection, size).ok().is_some_and(|p| {
                    p.proved == at_head.proved && p.range == at_head.range && p.selected == at_head.selected
                }) =>
        {
            let plan = ledger.plan_evidence(&selection, size)?;
            let signed = with_cosignatures(paths, ledger.checkpoint(size, &key)?, Some(&note));
            (plan, signed)
        }
        latest => {
            if let Some((size, _)) = latest {
                eprintln!(
                    "note: the gateway's last issued checkpoint (tree of {size} events) does not cover the selection: proved against a fresh checkpoint of the head ({head} events), which no witness has cosigned yet; run again after the next issued checkpoint to have their cosignatures"
                );
            }
            let signed = with_cosignatures(paths, ledger.checkpoint(head, &key)?, None);
            (at_head, signed)
        }
    };
    let origin = ledger::checkpoint::origin(&ledger.ledger_id());
    let cosigned = note
        .lines()
        .filter(|l| l.starts_with('\u{2014}'))
        .count()
        .saturating_sub(1);
    // A window the tree does not reach to its end: complete only up to the
    // tree's last event, and the README says so.
    let partial = match (&plan.selection, plan.range) {
        (Selection::Range { to, .. }, Some((_, end))) if end == plan.size => {
            ledger.get(end - 1)?.map(|e| e.event.ts).filter(|t| t <= to)
        }
        _ => None,
    };
    if let Some(t) = partial {
        eprintln!(
            "note: the log ends at {t}, before the window does: the bundle proves the window complete only up to then"
        );
    }
    let readme = readme(&origin, &plan, cosigned, partial);
    let tmp = output.with_file_name(format!(
        ".{}.{}.partial",
        output.file_name().and_then(|n| n.to_str()).unwrap_or("bundle"),
        std::process::id()
    ));
    let result = (|| -> Result<()> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut out = std::io::BufWriter::new(file);
        ledger
            .write_evidence(&plan, &note, &key, &readme, &mut out)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
            .with_context(|| format!("cannot sync {}", tmp.display()))?;
        // Linked, not renamed: a file that appeared meanwhile is kept.
        std::fs::hard_link(&tmp, output).with_context(|| format!("cannot create {}", output.display()))?;
        Ok(())
    })();
    let _ = std::fs::remove_file(&tmp);
    result?;
    let range = match plan.range {
        Some((a, end)) => format!(", the complete range of seq {a} to {}", end - 1),
        None => String::new(),
    };
    eprintln!(
        "wrote {}: {} selected events{range}, {} events with their own proof, in the tree of {} events ({cosigned} cosignatures)",
        output.display(),
        plan.selected,
        plan.proved.len(),
        plan.size
    );
    Ok(ExitCode::SUCCESS)
}

/// The bundle file's bytes (`-`: stdin).
fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)
            .context("cannot read the evidence bundle from stdin")?;
        return Ok(b);
    }
    std::fs::read(path).with_context(|| format!("cannot read the evidence bundle {}", path.display()))
}

/// The bundle's README: its comment lines.
fn readme(origin: &str, plan: &EvidencePlan, cosigned: usize, partial: Option<Timestamp>) -> Vec<String> {
    let what = match &plan.selection {
        Selection::Call(c) => format!("every event of the call {c} (correlation.call_id)"),
        Selection::Session(s) => format!("every event of the session {s}"),
        Selection::Request { id, session: Some(s) } => format!("every event of request {id} in session {s}"),
        Selection::Request { id, session: None } => format!("every event of request {id}, in any session"),
        Selection::Range {
            from,
            to,
            server: None,
            principal: None,
        } => match partial {
            None => format!("every event from {from} to {to}, proved complete"),
            Some(t) => format!(
                "every event from {from} to {to} that the log held when this was made, proved complete up to its last event at {t} (nothing about the window after it)"
            ),
        },
        Selection::Range {
            from,
            to,
            server,
            principal,
        } => format!(
            "the events from {from} to {to}{}{} (filtered: not proved complete)",
            server.as_ref().map(|s| format!(" on server {s}")).unwrap_or_default(),
            principal.as_ref().map(|p| format!(" by {p}")).unwrap_or_default()
        ),
    };
    [
        "Sealgate evidence bundle (docs/FORMAT.md section 16).".to_owned(),
        format!("Ledger: {origin}"),
        format!("Holds: {what};"),
        format!(
            "{} selected events, proved against a checkpoint of the first {} events ({cosigned} witness cosignatures),",
            plan.selected, plan.size
        ),
        "with the events that introduce the ledger's keys, sealed with its key.".to_owned(),
        String::new(),
        "Verify it offline with the ledger's key history, got from its operator beforehand and".to_owned(),
        "never from this file (`sealgate key-history` prints it), and require witnesses' cosignatures:".to_owned(),
        "whoever holds a retired key can forge a bundle that a single old key accepts.".to_owned(),
        "  sealgate verify-evidence THIS_FILE --key KEYS [--witness VKEY ... --min-witnesses M]".to_owned(),
        "  python3 tools/verify_evidence.py THIS_FILE --keys KEYS".to_owned(),
        "Add --events to print the verified events. Any byte changed fails verification.".to_owned(),
        String::new(),
        "Lines: `event HASH SIGNATURE ENVELOPE` (the signed JSON), `proof` (its inclusion path),".to_owned(),
        "`range` (a range proof), the checkpoint, and the seal at the end.".to_owned(),
    ]
    .into()
}

pub fn verify(
    bundle: &Path,
    key: &str,
    witness_keys: &[String],
    min_witnesses: Option<usize>,
    print_events: bool,
    output: ReportFormat,
) -> Result<ExitCode> {
    let keys = read_keys(key)?;
    let (witnesses, min) = witness_policy(witness_keys, min_witnesses)?;
    // Bytes, not text: a byte that is not UTF-8 is a bundle refused
    // (`malformed`), not an error reading it.
    let bytes = read_bytes(bundle)?;
    let outcome = match std::str::from_utf8(&bytes) {
        Ok(text) => ledger::verify_evidence(text, &keys, &witnesses, min),
        Err(e) => Err(ledger::Rejection {
            kind: ledger::RejectKind::Malformed,
            detail: format!("the bundle is not UTF-8: {e}"),
        }),
    };
    let mut out = std::io::stdout().lock();
    match (&outcome, output) {
        (Ok(v), ReportFormat::Json) => {
            let complete = v.complete.map(|c| {
                serde_json::json!({"first_seq": c.first, "last_seq": c.last, "through": c.through.to_string(), "whole_window": c.whole_window})
            });
            writeln!(
                out,
                "{}",
                serde_json::json!({"ok": true, "verified": {
                    "origin": v.checkpoint.origin,
                    "tree_size": v.checkpoint.size,
                    "selection": v.selection.to_json(),
                    "selected": v.events.len(),
                    "seqs": v.events.iter().map(|e| e.event.seq).collect::<Vec<_>>(),
                    "key_events": v.key_events,
                    "complete": complete,
                    "witnesses": v.witnesses,
                }})
            )?;
        }
        (Err(r), ReportFormat::Json) => writeln!(
            out,
            "{}",
            serde_json::json!({"ok": false, "reason": r.kind.as_str(), "detail": r.detail})
        )?,
        (Ok(v), ReportFormat::Text) => {
            writeln!(
                out,
                "OK: {} selected events ({}) are in the tree of {} events of {}",
                v.events.len(),
                v.selection.to_json(),
                v.checkpoint.size,
                v.checkpoint.origin
            )?;
            if let Some(c) = v.complete {
                writeln!(
                    out,
                    "complete: the bundle holds every event from seq {} to {}, so none of the window up to {} is left out",
                    c.first, c.last, c.through
                )?;
                if !c.whole_window {
                    writeln!(
                        out,
                        "PARTIAL: the checkpoint's tree ends before the window does: the bundle says nothing about the window after {}",
                        c.through
                    )?;
                }
            }
            if !v.witnesses.is_empty() {
                writeln!(
                    out,
                    "cosigned by {} of the witnesses given: {}",
                    v.witnesses.len(),
                    v.witnesses.join(", ")
                )?;
            }
        }
        (Err(r), ReportFormat::Text) => writeln!(out, "FAILED: {r}")?,
    }
    if let (Ok(v), true) = (&outcome, print_events) {
        for e in &v.events {
            writeln!(out, "{}", e.to_json())?;
        }
    }
    Ok(if outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
