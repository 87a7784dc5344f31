//! A sink's files under `<data dir>/derived/export/NAME/`, all derived:
//!
//! - `cursor.json`: the last event the collector accepted (ledger id, seq,
//!   hash); written to a `.tmp` name, fsynced, renamed, directory fsynced.
//! - `status.json`: what the running sink is doing (state, last error),
//!   for `sealgate export status`; advisory, written without fsync.
//! - `dead-letters.jsonl`: batches the collector partly rejected, one JSON
//!   line each, appended and fsynced; never retried.
//! - `replay.json`: a request to send again from a seq (`sealgate export
//!   replay`), taken by the sink (running, or at its next start).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

/// Where every sink's files are.
pub fn export_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("derived").join("export")
}

/// Where sink `name`'s files are.
pub fn sink_dir(data_dir: &Path, name: &str) -> PathBuf {
    export_dir(data_dir).join(name)
}

/// The last event a collector accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub ledger_id: String,
    pub seq: u64,
    pub hash: String,
}

/// What a sink is doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkState {
    /// Sending, or caught up.
    #[default]
    Running,
    /// The last attempt failed in a way that retrying can fix (collector
    /// down, 429, 503, `UNAVAILABLE`); retrying with backoff.
    Retrying,
    /// The collector refused the batch in a way retrying cannot fix (400,
    /// `INVALID_ARGUMENT`, ...): not advancing; tried again slowly.
    Stalled,
    /// The sink's files or the log could not be read; retried.
    Failed,
    /// The gateway stopped the sink cleanly; it resumes from its cursor at
    /// the next start. (A sink whose process was killed still shows the
    /// state it was in, with that process's pid.)
    Stopped,
}

/// The running sink's view of itself (`status.json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub state: SinkState,
    /// Why it is retrying or stalled (no secret: header values never get
    /// here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<String>,
    /// When the collector last accepted a batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<String>,
    /// Log records accepted since the sink started.
    pub exported: u64,
    /// Requests sent since the sink started (retries included).
    pub requests: u64,
    /// The range of the batch in flight, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<(u64, u64)>,
    pub updated_at: String,
    /// The process running the sink.
    pub pid: u32,
}

/// A batch the collector partly rejected. OTLP says how many records it
/// rejected and why, not which: every record of the batch is listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub at: String,
    pub from_seq: u64,
    pub to_seq: u64,
    /// Records the collector said it rejected.
    pub rejected: i64,
    /// The collector's `error_message`.
    pub reason: String,
    /// The batch's records: seq and hash (`sealgate.seq`, `sealgate.hash`).
    pub records: Vec<(u64, String)>,
}

/// A request to send the log again from `from` (inclusive).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replay {
    pub from: u64,
    pub requested_at: String,
}

pub fn cursor_path(dir: &Path) -> PathBuf {
    dir.join("cursor.json")
}
pub fn status_path(dir: &Path) -> PathBuf {
    dir.join("status.json")
}
pub fn dead_letters_path(dir: &Path) -> PathBuf {
    dir.join("dead-letters.jsonl")
}
pub fn replay_path(dir: &Path) -> PathBuf {
    dir.join("replay.json")
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &'static str) -> Result<Option<T>, Error> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| Error::Corrupt {
            path: path.to_owned(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(what, path, e)),
    }
}

pub fn read_cursor(dir: &Path) -> Result<Option<Cursor>, Error> {
    read_json(&cursor_path(dir), "cannot read cursor")
}
pub fn read_status(dir: &Path) -> Result<Option<Status>, Error> {
    read_json(&status_path(dir), "cannot read status")
}
pub fn read_replay(dir: &Path) -> Result<Option<Replay>, Error> {
    read_json(&replay_path(dir), "cannot read replay request")
}

/// Every dead letter of a sink, in order.
pub fn read_dead_letters(dir: &Path) -> Result<Vec<DeadLetter>, Error> {
    let path = dead_letters_path(dir);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("cannot read dead letters", &path, e)),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        // A torn last line (a crash mid-append) is not a dead letter.
        match serde_json::from_str(line) {
            Ok(d) => out.push(d),
            Err(_) if i + 1 == text.lines().count() => {}
            Err(e) => {
                return Err(Error::Corrupt {
                    path,
                    reason: format!("line {}: {e}", i + 1),
                });
            }
        }
    }
    Ok(out)
}

/// Writes `value` to `path` through a `.tmp` file and a rename; with
/// `sync`, the file and its directory are fsynced.
pub(crate) fn write_json_atomic<T: Serialize>(path: &Path, value: &T, sync: bool) -> Result<(), Error> {
    let bytes = serde_json::to_vec(value).map_err(|e| Error::Corrupt {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = File::create(&tmp).map_err(|e| Error::io("cannot create", &tmp, e))?;
    file.write_all(&bytes).map_err(|e| Error::io("cannot write", &tmp, e))?;
    if sync {
        file.sync_all().map_err(|e| Error::io("cannot fsync", &tmp, e))?;
    }
    drop(file);
    fs::rename(&tmp, path).map_err(|e| Error::io("cannot rename into place", path, e))?;
    if sync {
        let dir = path.parent().unwrap_or(Path::new("."));
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io("cannot fsync directory", dir, e))?;
    }
    Ok(())
}

pub(crate) fn write_cursor(dir: &Path, cursor: &Cursor) -> Result<(), Error> {
    write_json_atomic(&cursor_path(dir), cursor, true)
}

pub(crate) fn remove_cursor(dir: &Path) -> Result<(), Error> {
    remove(&cursor_path(dir))
}

pub(crate) fn write_status(dir: &Path, status: &Status) -> Result<(), Error> {
    write_json_atomic(&status_path(dir), status, false)
}

/// Asks the sink of `dir` to send again from `from`.
pub fn request_replay(dir: &Path, from: u64) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
    write_json_atomic(
        &replay_path(dir),
        &Replay {
            from,
            requested_at: now_rfc3339(),
        },
        true,
    )
}

pub(crate) fn remove(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("cannot remove", path, e)),
    }
}

pub(crate) fn append_dead_letter(dir: &Path, letter: &DeadLetter) -> Result<(), Error> {
    append_json_line(&dead_letters_path(dir), letter)
}

/// Appends `value` as one JSON line to `path` (made if missing) and
/// fsyncs the file.
pub(crate) fn append_json_line(path: &Path, value: &impl Serialize) -> Result<(), Error> {
    let mut line = serde_json::to_vec(value).map_err(|e| Error::Corrupt {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    line.push(b'\n');
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io("cannot open", path, e))?;
    f.write_all(&line).map_err(|e| Error::io("cannot append to", path, e))?;
    f.sync_all().map_err(|e| Error::io("cannot fsync", path, e))
}

pub(crate) fn now_rfc3339() -> String {
    ledger::Timestamp::now().to_string()
}
