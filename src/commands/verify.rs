use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ledger::{Hash, Report, VerifyOptions};

use crate::cli::{Range, ReportFormat};
use crate::config::Paths;

pub fn run(
    paths: &Paths,
    range: &Range,
    head: Option<&str>,
    tolerance_ms: u64,
    progress: bool,
    output: ReportFormat,
) -> Result<ExitCode> {
    let pinned_head = head.map(parse_pin).transpose()?;
    let ledger = super::open_read_only(paths)?;
    let range = super::resolve_range(&ledger, range, super::Lookup::Index)?;
    let opts = VerifyOptions {
        from: range.from,
        to: range.to,
        pinned_head,
        time_tolerance_nanos: tolerance_ms.saturating_mul(1_000_000),
        from_time: range.from_time,
        to_time: range.to_time,
    };

    let bar = ProgressBar::with_draw_target(
        None,
        if progress {
            ProgressDrawTarget::stderr_with_hz(4)
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if !progress && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
    }
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} verifying {pos}/{len} events [{bar:30}] {per_sec} eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    let started = Instant::now();
    let report = ledger.verify(&opts, &|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    print_report(&report, elapsed, output)?;
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Parses `SEQ:HASH`.
fn parse_pin(spec: &str) -> Result<(u64, Hash)> {
    let (seq, hash) = spec
        .split_once(':')
        .with_context(|| format!("--head `{spec}`: expected SEQ:HASH, as printed by `sealgate head`"))?;
    let seq = seq
        .parse()
        .with_context(|| format!("--head `{spec}`: `{seq}` is not a sequence number"))?;
    let hash = hash.parse().map_err(|e| anyhow::anyhow!("--head `{spec}`: {e}"))?;
    Ok((seq, hash))
}

fn print_report(r: &Report, elapsed: std::time::Duration, output: ReportFormat) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        (r.verified + r.linked) as f64 / secs
    } else {
        0.0
    };
    match output {
        ReportFormat::Json => {
            let v = serde_json::json!({
                "ok": r.ok(),
                "ledger_id": hex::encode(r.ledger_id),
                "from": r.from,
                "to": r.to,
                "verified": r.verified,
                "linked": r.linked,
                "anchor": r.anchor.as_ref().map(|a| serde_json::json!({"seq": a.seq, "hash": a.hash.to_hex(), "source": a.source})),
                "last": r.last.map(|(seq, hash)| serde_json::json!({"seq": seq, "hash": hash.to_hex()})),
                "failure": r.failure.as_ref().map(|f| serde_json::json!({"seq": f.seq, "kind": f.kind.as_str(), "detail": f.detail})),
                "elapsed_ms": elapsed.as_millis() as u64,
                "events_per_sec": rate.round() as u64,
            });
            writeln!(out, "{v}")?;
        }
        ReportFormat::Text => {
            match r.to {
                Some(to) => writeln!(
                    out,
                    "checked seq {}..={to}: {} event(s) with hash, link, key and signature; {} more linked to the anchor",
                    r.from, r.verified, r.linked
                )?,
                None => writeln!(out, "checked nothing from seq {}", r.from)?,
            }
            if let Some(a) = &r.anchor {
                writeln!(out, "anchor: {} head seq {} ({})", a.source, a.seq, a.hash)?;
            }
            writeln!(out, "took {:.2} s ({:.0} events/s)", secs, rate)?;
            match &r.failure {
                None => writeln!(out, "OK")?,
                Some(f) => writeln!(out, "FAILED at seq {}: {}: {}", f.seq, f.kind, f.detail)?,
            }
        }
    }
    Ok(())
}
