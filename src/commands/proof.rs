//! `checkpoint`, `key-history`, `prove` and `verify-proof`: the Merkle
//! tree's signed checkpoints and proofs (`docs/FORMAT.md`, "The Merkle
//! tree", "Checkpoints and proofs").
//!
//! `checkpoint` and `prove` open the ledger read-only (beside a running
//! gateway) and sign with the current key from the key directory.
//! `verify-proof` needs no ledger: only the proof, a checkpoint and the
//! ledger's keys.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use ledger::{KeyHistory, Ledger, Proof, SigningKey};

use crate::cli::ReportFormat;
use crate::config::Paths;

/// The read-only ledger and its current signing key.
fn open_with_key(paths: &Paths) -> Result<(Ledger, SigningKey)> {
    let ledger = super::open_read_only(paths)?;
    let current = ledger.current_key_id()?;
    let key = paths
        .key_dir()
        .load(current)
        .with_context(|| format!("checkpoints are signed with the ledger's current key {current}"))?;
    Ok((ledger, key))
}

fn size_or_head(ledger: &Ledger, size: Option<u64>) -> u64 {
    size.unwrap_or_else(|| ledger.tree_size())
}

pub fn checkpoint(paths: &Paths, size: Option<u64>) -> Result<ExitCode> {
    let (ledger, key) = open_with_key(paths)?;
    let note = ledger.checkpoint(size_or_head(&ledger, size), &key)?;
    std::io::stdout().lock().write_all(note.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

pub fn key_history(paths: &Paths) -> Result<ExitCode> {
    let ledger = super::open_read_only(paths)?;
    let history = ledger.key_history()?;
    std::io::stdout().lock().write_all(history.to_text().as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

pub fn prove(paths: &Paths, seq: Option<u64>, size: Option<u64>, consistency: Option<&[u64]>) -> Result<ExitCode> {
    let (ledger, key) = open_with_key(paths)?;
    let text = match (seq, consistency) {
        (Some(seq), None) => ledger
            .prove_inclusion(seq, size_or_head(&ledger, size), &key)?
            .to_text(),
        (None, Some([old, new])) => ledger.prove_consistency(*old, *new, &key)?.to_text(),
        _ => bail!("give a sequence number, or --consistency OLD NEW"),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn read_text(path: &Path, what: &str) -> Result<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .with_context(|| format!("cannot read the {what} from stdin"))?;
        return Ok(s);
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read the {what} {}", path.display()))
}

/// `--key`: a key history file, or one verifier key (inline or in a file).
fn read_keys(spec: &str) -> Result<KeyHistory> {
    let path = Path::new(spec);
    let text = if path.exists() {
        read_text(path, "key history")?
    } else if spec.contains('+') {
        spec.to_owned()
    } else {
        bail!("--key {spec}: no such file, and not a verifier key (NAME+ID+KEY)");
    };
    KeyHistory::parse(&text).map_err(|r| anyhow::anyhow!("--key {spec}: {r}"))
}

pub fn verify_proof(proof: &Path, checkpoint: Option<&Path>, key: &str, output: ReportFormat) -> Result<ExitCode> {
    let keys = read_keys(key)?;
    let text = read_text(proof, "proof")?;
    let held = checkpoint.map(|p| read_text(p, "checkpoint")).transpose()?;
    let outcome = Proof::parse(&text).and_then(|proof| match proof {
        Proof::Inclusion(p) => p.verify(&keys, held.as_deref()).map(|inc| {
            serde_json::json!({
                "proof": "inclusion",
                "seq": inc.seq,
                "hash": inc.hash.to_hex(),
                "event": inc.event.as_ref().map(ledger::Event::to_json),
                "origin": inc.checkpoint.origin,
                "tree_size": inc.checkpoint.size,
            })
        }),
        Proof::Consistency(p) => match held.as_deref() {
            None => Err(ledger::Rejection {
                kind: ledger::RejectKind::Malformed,
                detail: "a consistency proof is checked against the older checkpoint: give it with --checkpoint".into(),
            }),
            Some(old) => p.verify(&keys, old).map(|(old, new)| {
                serde_json::json!({
                    "proof": "consistency",
                    "origin": new.origin,
                    "old_size": old.size,
                    "new_size": new.size,
                })
            }),
        },
    });
    let mut out = std::io::stdout().lock();
    match (&outcome, output) {
        (Ok(v), ReportFormat::Json) => writeln!(out, "{}", serde_json::json!({"ok": true, "verified": v}))?,
        (Err(r), ReportFormat::Json) => writeln!(
            out,
            "{}",
            serde_json::json!({"ok": false, "reason": r.kind.as_str(), "detail": r.detail})
        )?,
        (Ok(v), ReportFormat::Text) => match v["proof"].as_str() {
            Some("inclusion") => writeln!(
                out,
                "OK: seq {} (hash {}) is in the tree of {} events of {}",
                v["seq"],
                v["hash"].as_str().unwrap_or_default(),
                v["tree_size"],
                v["origin"].as_str().unwrap_or_default()
            )?,
            _ => writeln!(
                out,
                "OK: the tree of {} events is a prefix of the tree of {} events of {}",
                v["old_size"],
                v["new_size"],
                v["origin"].as_str().unwrap_or_default()
            )?,
        },
        (Err(r), ReportFormat::Text) => writeln!(out, "FAILED: {r}")?,
    }
    Ok(if outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
