//! The golden events (`tests/data/events/`): every gateway and governance
//! kind as its writer wrote it, and whole gateway runs, as drafts that can
//! be appended again to make a real ledger of realistic events.

use std::path::{Path, PathBuf};

use ledger::{Draft, EventKind, Value};

/// `tests/data/events/` of the workspace.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/events")
}

/// The drafts of every golden event but the ledger's own kinds (genesis,
/// rotations), file by file in name order, each with the envelope and body
/// it was written with. The files hold bare events or `sealgate log -o
/// json` records (`{"event": …}`). Panics on a file that is not one of
/// these: the golden files are the test's input.
pub fn drafts() -> Vec<Draft> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("golden dir")
        .map(|e| e.expect("golden dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no golden event files in {}", dir().display());
    let mut drafts = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read golden file");
        for (i, line) in text.lines().enumerate() {
            let at = || format!("{}:{}", f.display(), i + 1);
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{}: {e}", at()));
            let e = v.get("event").unwrap_or(&v);
            let kind = e["kind"].as_str().unwrap_or_else(|| panic!("{}: no kind", at()));
            if EventKind::from_name(kind).is_reserved() {
                continue;
            }
            let draft = serde_json::json!({
                "kind": e["kind"], "actor": e["actor"], "subject": e["subject"],
                "correlation": e["correlation"], "body": e["body"],
            });
            let value = Value::from_json_str(&draft.to_string()).unwrap_or_else(|e| panic!("{}: {e}", at()));
            drafts.push(Draft::from_value(value).unwrap_or_else(|e| panic!("{}: {e}", at())));
        }
    }
    drafts
}
