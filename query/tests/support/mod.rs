//! Ledgers on disk (real RocksDB) holding the golden events: every kind as
//! the gateway's and governance's writers wrote it (`tests/data/events/`),
//! replayed through `Ledger::submit` with their envelopes and bodies as
//! written.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ledger::{Actor, Draft, EventKind, KeyDir, Ledger, SigningKey, Value};

pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/events")
}

/// The drafts of every golden event but the ledger's own kinds.
pub fn golden_drafts() -> Vec<Draft> {
    let mut drafts = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("golden dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no golden event files in {}", golden_dir().display());
    for f in files {
        for line in std::fs::read_to_string(&f).expect("read golden").lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("golden json");
            let e = v.get("event").unwrap_or(&v); // wrapped (`sealgate log -o json`) or bare
            let kind = EventKind::from_name(e["kind"].as_str().expect("kind"));
            if kind.is_reserved() {
                continue;
            }
            let draft = serde_json::json!({
                "kind": e["kind"], "actor": e["actor"], "subject": e["subject"],
                "correlation": e["correlation"], "body": e["body"],
            });
            let value = Value::from_json_str(&draft.to_string()).expect("value");
            drafts.push(Draft::from_value(value).expect("draft"));
        }
    }
    drafts
}

pub fn create(dir: &Path) -> Ledger {
    let keys = KeyDir::new(dir.join("keys"));
    let actor = Actor {
        principal: Some("test".into()),
        ..Actor::default()
    };
    Ledger::create(&dir.join("ledger"), &keys, SigningKey::generate(), actor).expect("create ledger")
}

/// Appends `n` golden events (cycling through them), in batches.
pub fn append(ledger: &Ledger, n: usize) {
    let drafts = golden_drafts();
    let mut left = n;
    let mut i = 0;
    while left > 0 {
        let take = left.min(500);
        let batch: Vec<Draft> = (0..take).map(|k| drafts[(i + k) % drafts.len()].clone()).collect();
        i += take;
        left -= take;
        ledger.submit(batch).expect("submit").wait().expect("append");
    }
}

/// A ledger with `n` golden events after its genesis, closed, opened again
/// read-only.
pub fn ledger_with(dir: &Path, n: usize) -> Arc<Ledger> {
    {
        let l = create(dir);
        append(&l, n);
    }
    Arc::new(Ledger::open_read_only(&dir.join("ledger")).expect("open read-only"))
}
