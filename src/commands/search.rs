//! `sealgate search` and the search index's part of `sealgate index` and
//! of `serve`'s follower (`sealgate-query`'s `text` module, docs/QUERY.md).
//! `search` writes nothing: it opens the ledger read-only and reads the
//! index as it is.

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ledger::{Head, Ledger};
use query::text::{self, Request, TextFollower};

use crate::cli::{SearchArgs, SearchFormat};
use crate::config::Paths;

pub fn run(paths: &Paths, args: &SearchArgs) -> Result<ExitCode> {
    let ledger = std::sync::Arc::new(super::open_read_only(paths)?);
    let (from, to) = super::checked_seqs(&ledger, &args.range)?;
    let req = Request {
        query: args.query.clone(),
        from,
        to,
        server: args.server.clone(),
        principal: args.principal.clone(),
        limit: args.limit,
    };
    let head = ledger.head_checked()?;
    let snap = text::TextSnapshot::open(&text::search_dir(&paths.data_dir), ledger, head)?;
    let answer = text::search(&snap, &req)?;
    if let Some(why) = &answer.index_ignored {
        eprintln!("note: searching the log alone: {why}");
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.format {
        SearchFormat::Json => {
            serde_json::to_writer(&mut out, &answer)?;
            writeln!(out)?;
        }
        SearchFormat::Table => {
            writeln!(
                out,
                "{:>8}  {:<30}  {:<20}  {:>7}  {:<9}  EXCERPT",
                "SEQ", "TIME", "KIND", "SCORE", "FIELD"
            )?;
            for h in &answer.hits {
                writeln!(
                    out,
                    "{:>8}  {:<30}  {:<20}  {:>7.3}  {:<9}  {}",
                    h.seq,
                    h.ts,
                    h.kind,
                    h.score,
                    h.field,
                    h.marked().replace(['\n', '\r'], " ")
                )?;
            }
            writeln!(out, "({} hits)", answer.hits.len())?;
        }
    }
    out.flush()?;
    eprintln!(
        "head: seq {} hash {} (index to {}, the rest searched from the log)",
        answer.head_seq,
        answer.head_hash,
        answer.indexed_to.map_or("none".to_owned(), |s| format!("seq {s}"))
    );
    if !args.verify {
        return Ok(ExitCode::SUCCESS);
    }
    let findings = text::verify(&snap, &req, &answer)?;
    if findings.is_empty() {
        eprintln!(
            "verified: {} hit(s), and every match in seq {}..={} agree with the signed log at seq {}",
            answer.hits.len(),
            req.from,
            req.to.min(answer.head_seq),
            answer.head_seq
        );
        return Ok(ExitCode::SUCCESS);
    }
    for f in &findings {
        eprintln!("verify: {f}");
    }
    eprintln!("verify: {} disagreement(s) with the signed log", findings.len());
    Ok(ExitCode::from(1))
}

/// `sealgate index rebuild|update`'s search part: opens (repairing) the
/// index, or wipes it first, and catches up to `head` with a progress bar.
pub(crate) fn index(paths: &Paths, ledger: &Ledger, head: &Head, rebuild: bool) -> Result<()> {
    let dir = text::search_dir(&paths.data_dir);
    // Opened (its writer lock taken) before it is cleared: a running
    // follower's index is refused, not pulled from under it.
    let (mut follower, repairs) = TextFollower::open(&dir, ledger, text::DEFAULT_COMMIT_EVENTS)?;
    report_repairs(&repairs);
    if rebuild {
        follower.clear()?;
    }
    let bar = ProgressBar::with_draw_target(Some(head.seq + 1), ProgressDrawTarget::stderr_with_hz(4));
    if let Ok(style) = ProgressStyle::with_template("search index {pos}/{len} events [{bar:30}] {per_sec} eta {eta}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_position(follower.next());
    let started = Instant::now();
    let done = follower.catch_up(ledger, head, |seq| bar.set_position(seq + 1))?;
    bar.finish_and_clear();
    let next = follower.next();
    follower.close()?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "search index: indexed {} event(s) in {:.2} s ({:.0} events/s), to seq {}",
        done.events_read,
        secs,
        done.events_read as f64 / secs.max(1e-9),
        next.checked_sub(1).map_or("none".into(), |s| s.to_string())
    );
    Ok(())
}

/// `sealgate index status`'s search lines.
pub(crate) fn status(out: &mut dyn Write, paths: &Paths, ledger: &Ledger, head: &Head) -> Result<()> {
    let dir = text::search_dir(&paths.data_dir);
    writeln!(out, "search index: {}", dir.display())?;
    match text::read_text_cursor(&dir) {
        Ok(Some(c)) => {
            let ours = ledger.get(c.seq)?.is_some_and(|e| e.hash.to_hex() == c.hash);
            writeln!(
                out,
                "search cursor: seq {} hash {}{}",
                c.seq,
                c.hash,
                if ours { "" } else { " (NOT in this log: rebuild)" }
            )?;
            writeln!(
                out,
                "search lag: {} event(s) searched from the log",
                head.seq.saturating_sub(c.seq)
            )?;
        }
        Ok(None) => {
            writeln!(out, "search cursor: none")?;
            writeln!(out, "search lag: {} event(s) searched from the log", head.seq + 1)?;
        }
        Err(e) => writeln!(out, "search cursor: unreadable ({e}): rebuild")?,
    }
    Ok(())
}

fn report_repairs(r: &text::TextRepairs) {
    if let Some(why) = &r.rebuilt {
        eprintln!("search index: rebuilding from the log: {why}");
    }
}

/// The search index's follower for `serve`, or none (a warning) when its
/// index cannot be opened: the gateway does not depend on it.
pub(crate) fn follower(data_dir: &std::path::Path, ledger: &Ledger) -> Option<TextFollower> {
    match TextFollower::open(&text::search_dir(data_dir), ledger, text::DEFAULT_COMMIT_EVENTS) {
        Ok((f, repairs)) => {
            report_repairs(&repairs);
            Some(f)
        }
        Err(e) => {
            tracing::warn!(error = %e, "search index: not following the log");
            None
        }
    }
}
