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
use ledger::{Cosigner, KeyHistory, Ledger, Proof, SigningKey};

use crate::cli::ReportFormat;
use crate::config::Paths;

/// The read-only ledger and its current signing key.
pub(super) fn open_with_key(paths: &Paths) -> Result<(Ledger, SigningKey)> {
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

/// The latest issued checkpoint (with its cosignatures), and its size.
pub(super) fn issued(paths: &Paths) -> Result<(u64, String)> {
    let note = crate::checkpoints::read_latest(&paths.data_dir)?.with_context(|| {
        format!(
            "no checkpoint issued yet: {} does not exist (sealgate serve issues them)",
            crate::checkpoints::latest_path(&paths.data_dir).display()
        )
    })?;
    let cp = ledger::Checkpoint::parse_text(ledger::witness::note_text(&note)?)?;
    Ok((cp.size, note))
}

/// `note`, with the cosignatures of the latest issued checkpoint when that
/// one is the same checkpoint (signing is deterministic: same key, same
/// tree, same note).
/// `latest`: the latest issued note as read once (else read now).
pub(super) fn with_cosignatures(paths: &Paths, note: String, latest: Option<&str>) -> String {
    let read;
    let latest = match latest {
        Some(l) => Some(l),
        None => {
            read = crate::checkpoints::read_latest(&paths.data_dir).ok().flatten();
            read.as_deref()
        }
    };
    match latest {
        Some(latest) if ledger::witness::note_text(latest).ok() == ledger::witness::note_text(&note).ok() => {
            ledger::witness::add_signatures(&note, latest)
        }
        _ => note,
    }
}

pub fn checkpoint(paths: &Paths, size: Option<u64>, issued_only: bool) -> Result<ExitCode> {
    if issued_only {
        let (_, note) = issued(paths)?;
        std::io::stdout().lock().write_all(note.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let (ledger, key) = open_with_key(paths)?;
    let note = with_cosignatures(paths, ledger.checkpoint(size_or_head(&ledger, size), &key)?, None);
    std::io::stdout().lock().write_all(note.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

pub fn key_history(paths: &Paths) -> Result<ExitCode> {
    let ledger = super::open_read_only(paths)?;
    let history = ledger.key_history()?;
    std::io::stdout().lock().write_all(history.to_text().as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

pub fn prove(
    paths: &Paths,
    seq: Option<u64>,
    size: Option<u64>,
    consistency: Option<&[u64]>,
    issued_tree: bool,
) -> Result<ExitCode> {
    // The issued checkpoint is read once: the gateway may issue the next
    // meanwhile.
    let latest = if issued_tree { Some(issued(paths)?) } else { None };
    let size = latest.as_ref().map(|l| l.0).or(size);
    let latest = latest.as_ref().map(|l| l.1.as_str());
    let (ledger, key) = open_with_key(paths)?;
    let text = match (seq, consistency) {
        (Some(seq), None) => {
            let mut p = ledger.prove_inclusion(seq, size_or_head(&ledger, size), &key)?;
            p.checkpoint = with_cosignatures(paths, p.checkpoint, latest);
            p.to_text()
        }
        (None, Some([old, new])) => {
            let mut p = ledger.prove_consistency(*old, *new, &key)?;
            p.checkpoint = with_cosignatures(paths, p.checkpoint, None);
            p.to_text()
        }
        _ => bail!("give a sequence number, or --consistency OLD NEW"),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn read_text(path: &Path, what: &str) -> Result<String> {
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
pub(super) fn read_keys(spec: &str) -> Result<KeyHistory> {
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

/// `--witness` (repeatable) and `--min-witnesses` (default: every witness
/// given): the trusted witnesses and how many must have cosigned.
pub(super) fn witness_policy(witness_keys: &[String], min_witnesses: Option<usize>) -> Result<(Vec<Cosigner>, usize)> {
    let witnesses = witness_keys
        .iter()
        .map(|w| read_witness(w))
        .collect::<Result<Vec<_>>>()?;
    let min = min_witnesses.unwrap_or(witnesses.len());
    if min > witnesses.len() {
        bail!("--min-witnesses {min}: only {} witness keys given", witnesses.len());
    }
    Ok((witnesses, min))
}

/// `--witness`: a witness's verifier key, inline or in a file.
fn read_witness(spec: &str) -> Result<Cosigner> {
    let path = Path::new(spec);
    let text = if !spec.contains('+') && path.exists() {
        read_text(path, "witness key")?
    } else {
        spec.to_owned()
    };
    Cosigner::parse_vkey(&text).map_err(|e| anyhow::anyhow!("--witness {spec}: {e}"))
}

/// The witnesses' policy: `min` of `witnesses` cosigned the checkpoint
/// the proof rests on (`notes`: the proof's, and the one held, which
/// verification required to be the same tree); returns who did.
fn witnessed(notes: &[&str], witnesses: &[Cosigner], min: usize) -> Result<Vec<String>, ledger::Rejection> {
    let mut names: Vec<String> = Vec::new();
    for note in notes {
        for n in ledger::witness::count_cosigners(note, witnesses)? {
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    if names.len() < min {
        // The same rejection as for one note, naming who did cosign.
        let mut merged = notes.first().map(|n| (*n).to_owned()).unwrap_or_default();
        for note in &notes[1..] {
            merged = ledger::witness::add_signatures(&merged, note);
        }
        ledger::witness::require_cosigners(&merged, witnesses, min)?;
    }
    Ok(names)
}

pub fn verify_proof(
    proof: &Path,
    checkpoint: Option<&Path>,
    key: &str,
    witness_keys: &[String],
    min_witnesses: Option<usize>,
    output: ReportFormat,
) -> Result<ExitCode> {
    let keys = read_keys(key)?;
    let (witnesses, min) = witness_policy(witness_keys, min_witnesses)?;
    let text = read_text(proof, "proof")?;
    let held = checkpoint.map(|p| read_text(p, "checkpoint")).transpose()?;
    let outcome = Proof::parse(&text).and_then(|proof| match proof {
        Proof::Inclusion(p) => p.verify(&keys, held.as_deref()).and_then(|inc| {
            let mut notes = vec![p.checkpoint.as_str()];
            notes.extend(held.as_deref());
            let names = witnessed(&notes, &witnesses, min)?;
            Ok(serde_json::json!({
                "witnesses": names,
                "proof": "inclusion",
                "seq": inc.seq,
                "hash": inc.hash.to_hex(),
                "event": inc.event.as_ref().map(ledger::Event::to_json),
                "origin": inc.checkpoint.origin,
                "tree_size": inc.checkpoint.size,
            }))
        }),
        Proof::Consistency(p) => match held.as_deref() {
            None => Err(ledger::Rejection {
                kind: ledger::RejectKind::Malformed,
                detail: "a consistency proof is checked against the older checkpoint: give it with --checkpoint".into(),
            }),
            Some(old) => p.verify(&keys, old).and_then(|(old, new)| {
                let names = witnessed(&[p.checkpoint.as_str()], &witnesses, min)?;
                Ok(serde_json::json!({
                    "witnesses": names,
                    "proof": "consistency",
                    "origin": new.origin,
                    "old_size": old.size,
                    "new_size": new.size,
                }))
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
    if let (Ok(v), ReportFormat::Text) = (&outcome, output)
        && let Some(names) = v["witnesses"].as_array()
        && !names.is_empty()
    {
        let names: Vec<&str> = names.iter().filter_map(|n| n.as_str()).collect();
        writeln!(
            out,
            "cosigned by {} of the witnesses given: {}",
            names.len(),
            names.join(", ")
        )?;
    }
    Ok(if outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
