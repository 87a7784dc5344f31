//! `sealgate sql` and `sealgate index`: the read side of the ledger
//! (`sealgate-query`, docs/QUERY.md). `sql` writes nothing: it opens the
//! ledger read-only and reads the index as it is; `index` keeps the index.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use query::{Follower, Format};

use crate::cli::{IndexCommand, SqlFormat};
use crate::config::Paths;

pub fn run(
    paths: &Paths,
    sql: &str,
    format: SqlFormat,
    verify: bool,
    as_of: Option<&str>,
    limits: query::Limits,
) -> Result<ExitCode> {
    let store = query::store_dir(&paths.data_dir);
    let ledger = Arc::new(super::open_read_only(paths)?);
    let head = ledger.head_checked()?;
    // The projections, folded to the head (or --as-of) when asked for.
    let tables = if crate::api::query::wanted(sql) || as_of.is_some() {
        let at = match as_of {
            Some(at) => crate::governance::resolve_as_of(&ledger, at)?,
            None => Some(head.seq),
        };
        if let Some(text) = as_of {
            let seq = at.map_or("none (before the first event)".to_string(), |s| s.to_string());
            eprintln!("projections as of {text}: seq {seq}");
        }
        let snapshots = ledger::Snapshots::new(paths.data_dir.join("snapshots"));
        let state = crate::api::query::fold(&ledger, &snapshots, at)?;
        crate::api::query::tables(&ledger, &state)?
    } else {
        Vec::new()
    };
    let snap = Arc::new(query::Snapshot::open(&store, ledger, head)?);
    let opts = query::Options {
        tables: &tables,
        limits,
    };
    let format = match format {
        SqlFormat::Table => Format::Table,
        SqlFormat::Json => Format::Json,
        SqlFormat::Csv => Format::Csv,
    };
    if !verify && format != Format::Table {
        return stream(snap, sql, &opts, format == Format::Csv);
    }
    let answer = query::run_with(snap.clone(), query::Source::Store, sql, &opts)?;
    if let Some(why) = &answer.store_ignored {
        eprintln!("note: answering from the log alone: {why}");
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    query::write_answer(&answer, format, &mut out)?;
    out.flush()?;
    eprintln!("head: seq {} hash {}", answer.head.seq, answer.head.hash.to_hex());
    if !verify {
        return Ok(ExitCode::SUCCESS);
    }
    let ledger = snap.ledger.clone();
    let mut findings: Vec<String> = query::verify_with(snap, &answer, sql, &opts)?
        .iter()
        .map(ToString::to_string)
        .collect();
    let proofs = crate::checkpoints::prove_ranges(&ledger, &paths.data_dir, &answer.stats.ranges_read())?;
    for line in range_lines(&proofs) {
        eprintln!("{line}");
    }
    findings.extend(proofs.failures);
    if findings.is_empty() {
        eprintln!(
            "verified: {} row(s) and {} index segment(s) agree with the signed log at seq {}",
            answer.rows(),
            answer.stats.segments_read.len(),
            answer.head.seq
        );
        return Ok(ExitCode::SUCCESS);
    }
    for f in &findings {
        eprintln!("verify: {f}");
    }
    eprintln!("verify: {} disagreement(s) with the signed log", findings.len());
    Ok(ExitCode::from(1))
}

/// What the latest checkpoint proves of the ranges an answer read, one
/// line each (failures are reported as findings).
fn range_lines(p: &crate::checkpoints::RangeProofs) -> Vec<String> {
    let mut out = Vec::new();
    if let Some((size, root)) = &p.checkpoint {
        for (a, b) in &p.complete {
            out.push(format!(
                "complete: seq {a} to {b} are every event there of the tree the log's key signed (checkpoint of {size} events, root {root}; {} other signature line(s), not checked here)",
                p.other_signatures
            ));
        }
    }
    for (a, b) in &p.past {
        out.push(match &p.checkpoint {
            Some((size, _)) => format!("not yet under a checkpoint: seq {a} to {b} (the latest is of {size} events)"),
            None => format!("not under a checkpoint: seq {a} to {b} (no checkpoints/latest.note in the data dir)"),
        });
    }
    out
}

/// JSON or CSV rows written to stdout as the query makes them, so a large
/// answer is never held whole. An error after the first rows leaves the
/// output cut off (JSON that does not parse) and the exit status non-zero.
fn stream(snap: Arc<query::Snapshot>, sql: &str, opts: &query::Options<'_>, csv: bool) -> Result<ExitCode> {
    // Both callbacks write through these, one at a time.
    let out = std::cell::RefCell::new(std::io::stdout().lock());
    let streamed = std::cell::RefCell::new(query::Streamed::new(csv));
    let mut head = None;
    let write = |bytes: &[u8]| {
        out.borrow_mut().write_all(bytes).map_err(|e| query::Error::Io {
            context: "cannot write the answer to",
            path: "<stdout>".into(),
            source: e,
        })
    };
    let ran = query::run_each(
        snap,
        query::Source::Store,
        sql,
        opts,
        std::future::pending(),
        |s| {
            if let Some(why) = &s.store_ignored {
                eprintln!("note: answering from the log alone: {why}");
            }
            head = Some(s.head);
            write(&streamed.borrow_mut().start(&s.head, s.schema.clone()))
        },
        |batch| write(&streamed.borrow_mut().rows(&batch)?),
    );
    let ended = ran.and_then(|_| write(&streamed.borrow_mut().end(None)?));
    // What was written is shown even when the answer was cut off.
    let flushed = out.borrow_mut().flush();
    ended?;
    flushed.context("cannot write the answer to stdout")?;
    if let Some(head) = head {
        eprintln!("head: seq {} hash {}", head.seq, head.hash.to_hex());
    }
    Ok(ExitCode::SUCCESS)
}

/// `sealgate report`: the list, one report's SQL, or its answer.
pub fn report(
    paths: &Paths,
    name: Option<&str>,
    params: &query::reports::Params,
    format: SqlFormat,
    verify: bool,
    print: bool,
    limits: query::Limits,
) -> Result<ExitCode> {
    let Some(name) = name else {
        for r in query::reports::REPORTS {
            println!("{:<20} {}", r.name, r.about);
        }
        return Ok(ExitCode::SUCCESS);
    };
    let Some(report) = query::reports::find(name) else {
        let names: Vec<&str> = query::reports::REPORTS.iter().map(|r| r.name).collect();
        anyhow::bail!("no report named {name:?}; the reports are: {}", names.join(", "));
    };
    let sql = report.sql(params);
    if print {
        println!("{sql};");
        return Ok(ExitCode::SUCCESS);
    }
    let w = &params.window;
    eprintln!(
        "report {name}: from {} to {}",
        w.from.as_deref().unwrap_or("the first event"),
        w.to.as_deref().unwrap_or("the head")
    );
    run(paths, &sql, format, verify, None, limits)
}

/// `sealgate export parquet`.
pub fn export_parquet(
    paths: &Paths,
    out: &std::path::Path,
    window: &query::reports::Window,
    limits: query::Limits,
) -> Result<ExitCode> {
    let store = query::store_dir(&paths.data_dir);
    let ledger = Arc::new(super::open_read_only(paths)?);
    let head = ledger.head_checked()?;
    let snap = Arc::new(query::Snapshot::open(&store, ledger, head)?);
    if let Some(why) = &snap.store_ignored {
        eprintln!("note: reading the log alone: {why}");
    }
    let opts = query::Options { tables: &[], limits };
    let manifest = query::parquet_export::export(snap, out, window, &opts)?;
    for f in &manifest.files {
        eprintln!("{}: {} row(s)", out.join(&f.file).display(), f.rows);
    }
    eprintln!("head: seq {} hash {}", manifest.head_seq, manifest.head_hash);
    Ok(ExitCode::SUCCESS)
}

pub fn index(paths: &Paths, command: IndexCommand) -> Result<ExitCode> {
    let store = query::store_dir(&paths.data_dir);
    let ledger = super::open_read_only(paths)?;
    let head = ledger.head_checked()?;
    match command {
        IndexCommand::Rebuild | IndexCommand::Update => {
            if matches!(command, IndexCommand::Rebuild) {
                query::store::wipe(&store).with_context(|| format!("cannot clear {}", store.display()))?;
            }
            let (mut follower, repairs) = Follower::open(&store, &ledger, query::DEFAULT_SEGMENT_EVENTS)?;
            report_repairs(&repairs);
            let bar = ProgressBar::with_draw_target(Some(head.seq + 1), ProgressDrawTarget::stderr_with_hz(4));
            if let Ok(style) =
                ProgressStyle::with_template("indexing {pos}/{len} events [{bar:30}] {per_sec} eta {eta}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_position(follower.indexed_to());
            let started = Instant::now();
            let done = follower.catch_up(&ledger, &head, |seq| bar.set_position(seq + 1))?;
            bar.finish_and_clear();
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "indexed {} event(s) in {:.2} s ({:.0} events/s): {} segment(s) to seq {}, {} event(s) past them answered from the log",
                done.events_read,
                secs,
                done.events_read as f64 / secs.max(1e-9),
                follower.segments().len(),
                follower.indexed_to().saturating_sub(1),
                (head.seq + 1).saturating_sub(follower.indexed_to())
            );
            super::search::index(paths, &ledger, &head, matches!(command, IndexCommand::Rebuild))?;
            Ok(ExitCode::SUCCESS)
        }
        IndexCommand::Status => {
            let cursor = query::store::read_cursor(&store)?;
            let segments = query::store::list_segments(&store)?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "index:   {}", store.display())?;
            writeln!(out, "head:    seq {} hash {}", head.seq, head.hash.to_hex())?;
            match &cursor {
                Some(c) => {
                    let ours = ledger.get(c.seq)?.is_some_and(|e| e.hash.to_hex() == c.hash);
                    writeln!(
                        out,
                        "cursor:  seq {} hash {}{}",
                        c.seq,
                        c.hash,
                        if ours { "" } else { " (NOT in this log: rebuild)" }
                    )?;
                    writeln!(
                        out,
                        "lag:     {} event(s) answered from the log",
                        head.seq.saturating_sub(c.seq)
                    )?;
                }
                None => {
                    writeln!(out, "cursor:  none (no segment yet)")?;
                    writeln!(out, "lag:     {} event(s) answered from the log", head.seq + 1)?;
                }
            }
            writeln!(out, "segments: {}", segments.len())?;
            super::search::status(&mut out, paths, &ledger, &head)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn report_repairs(r: &query::Repairs) {
    if let Some(why) = &r.rebuilt {
        eprintln!("index: rebuilding from the log: {why}");
    }
    for p in &r.removed {
        eprintln!("index: removed {} (left by an interrupted write)", p.display());
    }
    if let Some(from) = r.cursor_moved_from {
        eprintln!("index: cursor moved from seq {from} to the last segment's end");
    }
}

/// Events a follower indexes between two looks at its stop flag: a
/// stopping gateway waits for at most about this much indexing.
const FOLLOW_STEP: u64 = 20_000;

/// The SQL store's follower, or none (a warning) when its store cannot be
/// opened (the counterpart of `search::follower`).
fn follower(data_dir: &std::path::Path, ledger: &ledger::Ledger) -> Option<Follower> {
    match Follower::open(&query::store_dir(data_dir), ledger, query::DEFAULT_SEGMENT_EVENTS) {
        Ok((f, repairs)) => {
            report_repairs(&repairs);
            Some(f)
        }
        Err(e) => {
            tracing::warn!(error = %e, "query index: not following the log");
            None
        }
    }
}

/// `head`, or the event `FOLLOW_STEP` past `next` if the head is further.
fn step_to(ledger: &ledger::Ledger, head: ledger::Head, next: u64) -> ledger::Head {
    let seq = next.saturating_add(FOLLOW_STEP - 1);
    if head.seq <= seq {
        return head;
    }
    match ledger.get(seq) {
        Ok(Some(e)) => ledger::Head {
            seq,
            hash: e.hash,
            ts: e.event.ts,
        },
        _ => head,
    }
}

/// Keeps the index of a live ledger current: a thread (off the async
/// workers) that opens the indexes (which may repair what an interrupted
/// write left) and catches up every 250 ms, in steps of [`FOLLOW_STEP`]
/// events so that `stop` is seen soon even while it indexes a long log.
/// The gateway does not depend on it: a store that cannot be opened is a
/// warning and no follower (queries then read more of the log).
pub(crate) fn spawn_follower(
    paths: &Paths,
    ledger: Arc<ledger::Ledger>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Option<std::thread::JoinHandle<()>> {
    let data_dir = paths.data_dir.clone();
    let spawned = std::thread::Builder::new()
        .name("query-follower".into())
        .spawn(move || {
            let mut follower = follower(&data_dir, &ledger);
            let mut text = super::search::follower(&data_dir, &ledger);
            if follower.is_none() && text.is_none() {
                return;
            }
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let head = ledger.head();
                let mut behind = false;
                if let Some(f) = &mut follower {
                    let to = step_to(&ledger, head, f.next());
                    behind |= to.seq < head.seq;
                    if let Err(e) = f.catch_up(&ledger, &to, |_| {}) {
                        tracing::warn!(error = %e, "query index: catching up failed; retrying");
                    }
                }
                if let Some(t) = &mut text {
                    let to = step_to(&ledger, head, t.next());
                    behind |= to.seq < head.seq;
                    if let Err(e) = t.catch_up(&ledger, &to, |_| {}) {
                        tracing::warn!(error = %e, "search index: catching up failed; retrying");
                    }
                }
                if !behind {
                    std::thread::sleep(std::time::Duration::from_millis(250));
                }
            }
            if let Some(t) = text
                && let Err(e) = t.close()
            {
                tracing::warn!(error = %e, "search index: closing");
            }
        });
    match spawned {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::warn!(error = %e, "query index: cannot start the follower thread");
            None
        }
    }
}
