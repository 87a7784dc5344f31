//! The Parquet export (`sealgate export parquet`): `events` and the views,
//! over a time window, as Parquet files other engines (DuckDB, Spark,
//! Athena) read, with a manifest naming the head they were computed at.
//! A copy for others, like every derived file: rebuildable from the log and
//! never read back by Sealgate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::arrow::ArrowWriter;
use serde::Serialize;

use crate::reports::Window;
use crate::{Error, Options, Snapshot, Source, run_with, store};

/// What is exported: each table or view with the time column its window
/// is on.
pub const TABLES: &[(&str, &str)] = &[
    ("events", "ts"),
    ("calls", "ts"),
    ("decisions", "ts"),
    ("approvals", "requested_at"),
    ("sessions", "opened_at"),
];

/// `manifest.json`: the head the files were computed at, the window, and
/// each file's rows.
#[derive(Clone, Debug, Serialize)]
pub struct Manifest {
    pub head_seq: u64,
    pub head_hash: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub files: Vec<ExportedFile>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExportedFile {
    pub table: String,
    pub file: String,
    pub rows: usize,
}

/// Writes every table of [`TABLES`] within `window` to `dir` (created; it
/// must not hold an export already), then `manifest.json`. Each file is
/// written to a `.tmp`, fsynced and renamed, the manifest last: a directory
/// without a manifest is an export that did not finish.
pub fn export(snap: Arc<Snapshot>, dir: &Path, window: &Window, opts: &Options<'_>) -> Result<Manifest, Error> {
    export_tables(snap, dir, window, opts, TABLES)
}

/// [`export`] of `tables` only (names and time columns, as in [`TABLES`]).
pub fn export_tables(
    snap: Arc<Snapshot>,
    dir: &Path,
    window: &Window,
    opts: &Options<'_>,
    tables: &[(&str, &str)],
) -> Result<Manifest, Error> {
    let manifest_path = dir.join("manifest.json");
    if manifest_path.exists() {
        return Err(Error::Corrupt {
            path: manifest_path,
            reason: "the directory already holds an export; choose another".into(),
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
    let mut files = Vec::new();
    for (table, column) in tables {
        let sql = format!("SELECT * FROM {table} WHERE {} ORDER BY seq", window.on(column));
        let answer = run_with(snap.clone(), Source::Store, &sql, opts)?;
        let path: PathBuf = dir.join(format!("{table}.parquet"));
        store::write_atomic(&path, |f| {
            let mut w = ArrowWriter::try_new(f, answer.schema.clone(), None).map_err(|e| Error::arrow(&path, e))?;
            for b in &answer.batches {
                w.write(b).map_err(|e| Error::arrow(&path, e))?;
            }
            w.close().map(|_| ()).map_err(|e| Error::arrow(&path, e))
        })?;
        files.push(ExportedFile {
            table: (*table).to_string(),
            file: format!("{table}.parquet"),
            rows: answer.rows(),
        });
    }
    let manifest = Manifest {
        head_seq: snap.head.seq,
        head_hash: snap.head.hash.to_hex(),
        from: window.from.clone(),
        to: window.to.clone(),
        files,
    };
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Corrupt {
        path: manifest_path.clone(),
        reason: e.to_string(),
    })?;
    store::write_atomic(&manifest_path, |f| {
        std::io::Write::write_all(f, &text).map_err(|e| Error::io("cannot write", &manifest_path, e))
    })?;
    Ok(manifest)
}
