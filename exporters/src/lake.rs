//! `file` sinks: the OCSF records (the bodies the OTLP sinks send) as
//! gzip JSON lines in files for a data lake, with a manifest a lake can
//! check itself against (`docs/EXPORT.md`, Files for lakes).
//!
//! A file covers a range of the log, `first_seq..=last_seq`, and is named
//! after it (`00000000000000000000-00000000000000004095.ocsf.jsonl.gz`,
//! twenty digits each, so names sort as the log does). It is built in
//! memory, written under a hidden temp name (`.NAME.tmp`), fsynced,
//! renamed into place, the directory fsynced; then its manifest line is
//! appended to `manifest.jsonl` and fsynced; only then does the sink's
//! cursor move past it. A crash leaves at most a temp file (removed at the
//! next start) or a whole file the cursor has not passed: the next start
//! checks it against the log and adopts it (its manifest line written if
//! missing) instead of writing it again.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use ledger::{Ledger, SealedEvent};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::Error;

/// The manifest's name in a lake directory.
pub const MANIFEST: &str = "manifest.jsonl";
const SUFFIX: &str = ".ocsf.jsonl.gz";

/// One line of `manifest.jsonl`: a file that is whole and durable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// The file's name, in the manifest's directory.
    pub file: String,
    /// The range of the log the file accounts for: every event of it the
    /// sink's `kinds` take is a line of the file, in order.
    pub first_seq: u64,
    pub last_seq: u64,
    /// The hashes of the log's events at `first_seq` and `last_seq`.
    pub first_hash: String,
    pub last_hash: String,
    /// Lines (records) in the file.
    pub count: u64,
    /// The gzip file's SHA-256 and size.
    pub sha256: String,
    pub bytes: u64,
    /// The ledger the records are of (32 hex digits).
    pub ledger_id: String,
    pub written_at: String,
}

/// A file's name for the range `first..=last`.
pub fn file_name(first: u64, last: u64) -> String {
    format!("{first:020}-{last:020}{SUFFIX}")
}

/// The range a file's name says, if it is a lake file's name.
pub fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(SUFFIX)?;
    let (a, b) = stem.split_once('-')?;
    if a.len() != 20 || b.len() != 20 {
        return None;
    }
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Every line of the manifest in `dir`, in order (a torn last line, from a
/// crash mid-append, is left out).
pub fn read_manifest(dir: &Path) -> Result<Vec<ManifestEntry>, Error> {
    let path = dir.join(MANIFEST);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("cannot read the manifest", &path, e)),
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(entry) => out.push(entry),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {}
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

/// The file being filled.
struct Open {
    gz: GzEncoder<Vec<u8>>,
    first_seq: u64,
    first_hash: String,
    last_seq: u64,
    last_hash: String,
    count: u64,
    /// When its first record was added.
    since: Option<Instant>,
}

/// A `file` sink's writer.
pub struct Lake {
    dir: PathBuf,
    ledger_id: String,
    roll_bytes: u64,
    roll_after: Duration,
    open: Option<Open>,
    line: Vec<u8>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    crate::hex(&sha2::Sha256::digest(bytes))
}

fn fsync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("cannot fsync directory", dir, e))
}

impl Lake {
    pub fn new(dir: PathBuf, ledger_id: &str, roll_bytes: u64, roll_sec: u64) -> Lake {
        Lake {
            dir,
            ledger_id: ledger_id.to_owned(),
            roll_bytes,
            roll_after: Duration::from_secs(roll_sec.max(1)),
            open: None,
            line: Vec::with_capacity(4096),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The range of the file being filled, if any.
    pub fn open_range(&self) -> Option<(u64, u64)> {
        self.open.as_ref().map(|o| (o.first_seq, o.last_seq))
    }

    /// Adds `sealed` to the file being filled (a line when `wanted`; the
    /// range grows either way). Events must come in seq order.
    pub fn add(&mut self, sealed: &SealedEvent, wanted: bool) -> Result<(), Error> {
        let seq = sealed.event.seq;
        let open = self.open.get_or_insert_with(|| Open {
            gz: GzEncoder::new(Vec::with_capacity(1 << 20), Compression::fast()),
            first_seq: seq,
            first_hash: sealed.hash.to_hex(),
            last_seq: seq,
            last_hash: String::new(),
            count: 0,
            since: None,
        });
        open.last_seq = seq;
        open.last_hash = sealed.hash.to_hex();
        if wanted {
            self.line.clear();
            serde_json::to_writer(&mut self.line, &crate::ocsf::ocsf(sealed, &self.ledger_id)).map_err(|e| {
                Error::Corrupt {
                    path: self.dir.clone(),
                    reason: format!("seq {seq}: {e}"),
                }
            })?;
            self.line.push(b'\n');
            open.gz
                .write_all(&self.line)
                .map_err(|e| Error::io("cannot compress a record for", &self.dir, e))?;
            open.count += 1;
            open.since.get_or_insert_with(Instant::now);
        }
        Ok(())
    }

    /// Ends a batch: what was added is compressed out (a sync flush), so
    /// the file's size is known for [`Lake::due`].
    pub fn end_batch(&mut self) -> Result<(), Error> {
        if let Some(open) = &mut self.open {
            open.gz
                .flush()
                .map_err(|e| Error::io("cannot compress a record for", &self.dir, e))?;
        }
        Ok(())
    }

    /// Whether the file being filled should be closed now: it holds
    /// records and reached `roll_bytes`, or has been open `roll_sec`.
    pub fn due(&self) -> bool {
        self.open.as_ref().is_some_and(|o| {
            o.count > 0
                && (o.gz.get_ref().len() as u64 >= self.roll_bytes
                    || o.since.is_some_and(|t| t.elapsed() >= self.roll_after))
        })
    }

    /// Forgets the file being filled (a replay moved the cursor).
    pub fn discard(&mut self) {
        self.open = None;
    }

    /// Writes the file being filled, if it holds records, durably under its
    /// final name, and appends its manifest line. The cursor may then move
    /// to its `last_seq`.
    pub fn finish(&mut self) -> Result<Option<ManifestEntry>, Error> {
        match &self.open {
            Some(o) if o.count > 0 => {}
            _ => return Ok(None),
        }
        let Some(open) = self.open.take() else {
            return Ok(None);
        };
        fs::create_dir_all(&self.dir).map_err(|e| Error::io("cannot create", &self.dir, e))?;
        let bytes = open
            .gz
            .finish()
            .map_err(|e| Error::io("cannot compress a file for", &self.dir, e))?;
        let name = file_name(open.first_seq, open.last_seq);
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let mut f = File::create(&tmp).map_err(|e| Error::io("cannot create", &tmp, e))?;
        f.write_all(&bytes).map_err(|e| Error::io("cannot write", &tmp, e))?;
        f.sync_all().map_err(|e| Error::io("cannot fsync", &tmp, e))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(|e| Error::io("cannot rename into place", &path, e))?;
        fsync_dir(&self.dir)?;
        let entry = ManifestEntry {
            file: name,
            first_seq: open.first_seq,
            last_seq: open.last_seq,
            first_hash: open.first_hash,
            last_hash: open.last_hash,
            count: open.count,
            sha256: sha256_hex(&bytes),
            bytes: bytes.len() as u64,
            ledger_id: self.ledger_id.clone(),
            written_at: crate::state::now_rfc3339(),
        };
        self.append_manifest(&entry)?;
        Ok(Some(entry))
    }

    fn append_manifest(&self, entry: &ManifestEntry) -> Result<(), Error> {
        let path = self.dir.join(MANIFEST);
        // A torn last line (a crash mid-append) is cut off first, so the
        // new line starts a line.
        if let Ok(meta) = fs::metadata(&path)
            && meta.len() > 0
        {
            let text = fs::read(&path).map_err(|e| Error::io("cannot read the manifest", &path, e))?;
            if text.last() != Some(&b'\n') {
                let keep = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| Error::io("cannot open", &path, e))?;
                f.set_len(keep as u64)
                    .map_err(|e| Error::io("cannot cut a torn line off", &path, e))?;
                f.sync_all().map_err(|e| Error::io("cannot fsync", &path, e))?;
            }
        }
        crate::state::append_json_line(&path, entry)?;
        fsync_dir(&self.dir)
    }

    /// At a start with the cursor before `next`: removes temp files, and
    /// adopts the whole files a crash left past the cursor (each checked
    /// record by record against the log, its manifest line written if
    /// missing), in order. Returns the adopted files: the cursor moves to
    /// the last one's `last_seq`.
    pub fn recover(&mut self, next: u64, ledger: &Ledger) -> Result<Vec<ManifestEntry>, Error> {
        self.open = None;
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("cannot list", &self.dir, e)),
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("cannot list", &self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                crate::state::remove(&entry.path())?;
            } else if let Some((first, last)) = parse_name(&name)
                && first >= next
            {
                files.push((first, last, name));
            }
        }
        files.sort();
        let manifest = read_manifest(&self.dir)?;
        let mut adopted = Vec::new();
        let mut next = next;
        for (first, last, name) in files {
            if first != next {
                break;
            }
            let path = self.dir.join(&name);
            let entry = self.check_file(&path, &name, first, last, ledger)?;
            if !manifest.iter().any(|m| m.file == name && m.sha256 == entry.sha256) {
                self.append_manifest(&entry)?;
            }
            next = last + 1;
            adopted.push(entry);
        }
        Ok(adopted)
    }

    /// A whole file's manifest entry, after checking every record in it is
    /// the log's event of that seq, within the range, in order.
    fn check_file(
        &self,
        path: &Path,
        name: &str,
        first: u64,
        last: u64,
        ledger: &Ledger,
    ) -> Result<ManifestEntry, Error> {
        let corrupt = |reason: String| Error::Corrupt {
            path: path.to_owned(),
            reason,
        };
        let bytes = fs::read(path).map_err(|e| Error::io("cannot read", path, e))?;
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_end(&mut text)
            .map_err(|e| corrupt(format!("gzip: {e}")))?;
        let hash_at = |seq: u64| -> Result<String, Error> {
            ledger
                .get(seq)
                .map_err(|e| Error::ledger("checking a lake file", e))?
                .map(|e| e.hash.to_hex())
                .ok_or_else(|| corrupt(format!("seq {seq} is past the log's head")))
        };
        let mut count = 0;
        let mut prev: Option<u64> = None;
        for line in text.lines() {
            let line = line.map_err(|e| corrupt(e.to_string()))?;
            let record: serde_json::Value = serde_json::from_str(&line).map_err(|e| corrupt(e.to_string()))?;
            let seq = record["metadata"]["sequence"]
                .as_u64()
                .ok_or_else(|| corrupt("a record without metadata.sequence".into()))?;
            if seq < first || seq > last || prev.is_some_and(|p| seq <= p) {
                return Err(corrupt(format!("seq {seq} is out of order or out of the name's range")));
            }
            if record["metadata"]["uid"].as_str() != Some(hash_at(seq)?.as_str()) {
                return Err(corrupt(format!(
                    "seq {seq}: the record's hash is not the log's (a file of another log?)"
                )));
            }
            prev = Some(seq);
            count += 1;
        }
        if count == 0 {
            return Err(corrupt("no records".into()));
        }
        Ok(ManifestEntry {
            file: name.to_owned(),
            first_seq: first,
            last_seq: last,
            first_hash: hash_at(first)?,
            last_hash: hash_at(last)?,
            count,
            sha256: sha256_hex(&bytes),
            bytes: bytes.len() as u64,
            ledger_id: self.ledger_id.clone(),
            written_at: crate::state::now_rfc3339(),
        })
    }
}

/// What a lake's check of a directory found ([`check_dir`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Check {
    pub files: usize,
    pub records: u64,
    /// The log range the manifest covers without a hole, from its first
    /// line (`None` when empty).
    pub covered: Option<(u64, u64)>,
    /// Everything wrong: a missing file, a checksum or count that does not
    /// match, a hole or overlap between consecutive ranges.
    pub problems: Vec<String>,
}

/// Checks a lake directory against its manifest, as a lake would: every
/// listed file is there with its SHA-256 and line count, and the ranges
/// follow each other without a hole (a file written again by a replay is
/// listed again; its last line counts).
pub fn check_dir(dir: &Path) -> Result<Check, Error> {
    let manifest = read_manifest(dir)?;
    let mut latest: std::collections::BTreeMap<u64, ManifestEntry> = std::collections::BTreeMap::new();
    for m in manifest {
        latest.insert(m.first_seq, m);
    }
    let mut check = Check::default();
    let mut expect: Option<u64> = None;
    for m in latest.values() {
        let path = dir.join(&m.file);
        check.files += 1;
        match fs::read(&path) {
            Ok(bytes) => {
                if sha256_hex(&bytes) != m.sha256 {
                    check
                        .problems
                        .push(format!("{}: SHA-256 differs from the manifest's", m.file));
                }
                let mut text = Vec::new();
                match flate2::read::GzDecoder::new(bytes.as_slice()).read_to_end(&mut text) {
                    Ok(_) => {
                        let lines = text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count() as u64;
                        if lines != m.count {
                            check
                                .problems
                                .push(format!("{}: {lines} lines, the manifest says {}", m.file, m.count));
                        }
                        check.records += lines;
                    }
                    Err(e) => check.problems.push(format!("{}: gzip: {e}", m.file)),
                }
            }
            Err(e) => check.problems.push(format!("{}: {}", m.file, e.kind())),
        }
        if let Some(want) = expect
            && m.first_seq != want
        {
            check.problems.push(format!(
                "{}: starts at seq {}, the file before ends at {}",
                m.file,
                m.first_seq,
                want - 1
            ));
        }
        expect = Some(m.last_seq + 1);
        check.covered = Some((check.covered.map_or(m.first_seq, |c| c.0), m.last_seq));
    }
    Ok(check)
}
