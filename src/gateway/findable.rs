//! Findable redactions: keyed digests of the values output safety
//! redacted, so that someone who holds a value (a customer id, an email
//! address, a leaked token) and may search can find the calls that carried
//! it, while the ledger and its exports keep only digests.
//!
//! - **The find key**: 32 random bytes per ledger, in the key directory
//!   beside the signing keys, `find-<ledger id>.secret` (mode 0600, the raw
//!   bytes). `sealgate init` creates it; for a ledger made before, the first
//!   `sealgate serve` or `sealgate stdio` that opens it does (written whole
//!   under a temporary name and linked into place, so two processes racing
//!   agree on one key). It is never written into an event, a log line or an
//!   error message.
//! - **Pieces** ([`pieces`]): what of a redacted value is digested: the
//!   whole value and its compact form (separators dropped) for every
//!   detector, and for personal data also its parts (so an email address
//!   is found by its local part, a customer id inside it, or its domain).
//!   Everything is lowercased: finding is case-insensitive.
//! - **Digests**: `mac:` and 16 hex digits (the first 8 bytes of BLAKE3 in
//!   keyed mode under the find key) per piece; per event field sorted,
//!   without repeats, at most [`MAX_DIGESTS`] (whole values first, then
//!   compact forms, then parts), with
//!   `findable_truncated: true` when some were left out.
//! - **Search**: [`FindKey::query`] makes the digests of a searched value
//!   (itself and its compact form), [`matched_fields`] tells which of an
//!   event's fields hold any of them, [`search`] scans a range of the log.
//!
//! Threat model (docs/EVENTS.md, docs/ARCHITECTURE.md): without the key a
//! digest cannot be tested against guesses, however few the candidates
//! (four-digit customer numbers); whoever holds the key, or may ask the
//! gateway to search, can test any candidate, and equal values give equal
//! digests, so events that carried the same value can be linked without
//! the key.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ledger::{Event, EventKind, Ledger, Object, Value};
use serde::Serialize;

use super::safety::{Category, RedactedValues};

/// Digests of one event field at most; whole values come first.
pub const MAX_DIGESTS: usize = 256;
/// Shorter pieces are not digested, and a shorter value cannot be searched.
pub const MIN_PIECE_CHARS: usize = 3;
/// The prefix of every digest.
pub const DIGEST_PREFIX: &str = "mac:";
/// Bytes of the keyed hash kept per digest.
const DIGEST_BYTES: usize = 8;
const KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum FindError {
    #[error("find key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Query(String),
    #[error("the search stopped: {0}")]
    Stopped(String),
    #[error("reading the ledger: {0}")]
    Ledger(#[from] ledger::Error),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> FindError + 'a {
    move |source| FindError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A ledger's find key.
#[derive(Clone)]
pub struct FindKey {
    key: [u8; KEY_BYTES],
}

impl std::fmt::Debug for FindKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FindKey(..)")
    }
}

impl FindKey {
    /// For tests: a key from fixed bytes.
    pub fn from_bytes(key: [u8; KEY_BYTES]) -> FindKey {
        FindKey { key }
    }

    /// Where the find key of ledger `ledger_id` lives in `key_dir`.
    pub fn path(key_dir: &Path, ledger_id: &[u8; 16]) -> PathBuf {
        key_dir.join(format!("find-{}.secret", hex::encode(ledger_id)))
    }

    /// Reads the key at `path`. Refuses a file others may read, and one
    /// that does not hold exactly 32 bytes.
    pub fn read(path: &Path) -> Result<FindKey, FindError> {
        let bad = |reason: String| FindError::Key {
            path: path.to_path_buf(),
            reason,
        };
        let mut file = fs::File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => bad(
                "does not exist: redactions of this ledger cannot be searched (`sealgate init` creates the key; \
                 `sealgate serve` creates it for a ledger made before it existed)"
                    .into(),
            ),
            _ => FindError::Io {
                what: "cannot open find key",
                path: path.to_path_buf(),
                source: e,
            },
        })?;
        let meta = file.metadata().map_err(io("cannot read find key", path))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(bad(format!(
                "mode {mode:04o} lets others read the key; run `chmod 600` on it"
            )));
        }
        if meta.len() != KEY_BYTES as u64 {
            return Err(bad(format!(
                "holds {} bytes, not {KEY_BYTES}: not a sealgate find key (a truncated or foreign file?)",
                meta.len()
            )));
        }
        let mut key = [0u8; KEY_BYTES];
        file.read_exact(&mut key).map_err(io("cannot read find key", path))?;
        Ok(FindKey { key })
    }

    /// The key of ledger `ledger_id` in `key_dir`.
    pub fn open(key_dir: &Path, ledger_id: &[u8; 16]) -> Result<FindKey, FindError> {
        FindKey::read(&FindKey::path(key_dir, ledger_id))
    }

    /// Creates a new key for ledger `ledger_id` in `key_dir`; an existing
    /// one is an error (it is never overwritten).
    pub fn create(key_dir: &Path, ledger_id: &[u8; 16]) -> Result<FindKey, FindError> {
        let path = FindKey::path(key_dir, ledger_id);
        let mut key = [0u8; KEY_BYTES];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut key);
        write_new(&path, &key)?;
        Ok(FindKey { key })
    }

    /// The key of ledger `ledger_id`, created if there is none yet.
    pub fn open_or_create(key_dir: &Path, ledger_id: &[u8; 16]) -> Result<FindKey, FindError> {
        let path = FindKey::path(key_dir, ledger_id);
        if path.exists() {
            return FindKey::read(&path);
        }
        match FindKey::create(key_dir, ledger_id) {
            // Another process created it first: use theirs.
            Err(FindError::Key { .. }) if path.exists() => FindKey::read(&path),
            other => other,
        }
    }

    fn mac(&self, piece: &str) -> String {
        let hash = blake3::keyed_hash(&self.key, piece.as_bytes());
        format!("{DIGEST_PREFIX}{}", hex::encode(&hash.as_bytes()[..DIGEST_BYTES]))
    }

    /// The digests of what output safety redacted, for an event field;
    /// `None` when nothing was.
    pub fn findable(&self, values: &RedactedValues) -> Option<Findable> {
        if values.is_empty() {
            return None;
        }
        // Whole values first, then compact forms, then parts; work stops
        // once the list is full, however many values a result holds.
        let mut seen = std::collections::HashSet::new();
        let mut kept = Vec::new();
        let mut truncated = false;
        'tiers: for tier in 0..3 {
            for (category, text) in values.iter() {
                let (first, parts) = pieces(category, text);
                let tiered: Vec<String> = match tier {
                    0 => first.into_iter().take(1).collect(),
                    1 => first.into_iter().skip(1).collect(),
                    _ => parts,
                };
                for piece in tiered {
                    if seen.contains(&piece) {
                        continue;
                    }
                    if kept.len() == MAX_DIGESTS {
                        truncated = true;
                        break 'tiers;
                    }
                    seen.insert(piece.clone());
                    kept.push(piece);
                }
            }
        }
        let mut digests: Vec<String> = kept.iter().map(|piece| self.mac(piece)).collect();
        digests.sort();
        digests.dedup();
        Some(Findable { digests, truncated })
    }

    /// The digests that find `value`: of the value as given and of its
    /// compact form (lowercased, trimmed). A value shorter than
    /// [`MIN_PIECE_CHARS`] characters is refused: nothing that short is
    /// digested.
    pub fn query(&self, value: &str) -> Result<Vec<String>, FindError> {
        let whole = normalise(value);
        if whole.chars().count() < MIN_PIECE_CHARS {
            return Err(FindError::Query(format!(
                "the value to find must have at least {MIN_PIECE_CHARS} characters (not counting surrounding spaces)"
            )));
        }
        let mut out = vec![self.mac(&whole)];
        let compact = compact(&whole);
        if compact != whole && compact.chars().count() >= MIN_PIECE_CHARS {
            out.push(self.mac(&compact));
        }
        Ok(out)
    }
}

/// Writes `key` to `path` (mode 0600) without ever leaving a partial file
/// there: written and synced under a temporary name, then linked into
/// place, which fails if a key is already there.
fn write_new(path: &Path, key: &[u8; KEY_BYTES]) -> Result<(), FindError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(io("cannot create key directory", dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io("cannot set permissions on", dir))?;
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("find.secret");
    let mut nonce = [0u8; 6];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    let tmp = dir.join(format!(".{name}.{}.tmp", hex::encode(nonce)));
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("cannot create", &tmp))?;
        f.write_all(key).map_err(io("cannot write", &tmp))?;
        f.sync_all().map_err(io("cannot sync", &tmp))?;
        fs::hard_link(&tmp, path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => FindError::Key {
                path: path.to_path_buf(),
                reason: "already exists; refusing to overwrite a find key".into(),
            },
            _ => FindError::Io {
                what: "cannot link find key into place",
                path: path.to_path_buf(),
                source: e,
            },
        })
    })();
    let _ = fs::remove_file(&tmp);
    written?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("cannot sync directory", dir))
}

/// The digests of one event field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Findable {
    /// Sorted, no repeats.
    pub digests: Vec<String>,
    /// Some pieces were left out ([`MAX_DIGESTS`]).
    pub truncated: bool,
}

impl Findable {
    /// Adds `findable` (and `findable_truncated`) to an event field.
    pub fn insert_into(&self, field: &mut Object) {
        let list = self.digests.iter().cloned().map(Value::String).collect();
        field.insert("findable".into(), Value::Array(list));
        if self.truncated {
            field.insert("findable_truncated".into(), true.into());
        }
    }
}

/// Trimmed and lowercased.
fn normalise(text: &str) -> String {
    text.trim().to_lowercase()
}

/// Letters and digits only.
fn compact(text: &str) -> String {
    text.chars().filter(|c| c.is_alphanumeric()).collect()
}

/// What of a redacted value is digested, lowercased: the whole value and
/// its compact form (letters and digits only: `4111 1111 1111 1111` is
/// found as `4111111111111111` too); and, for personal data, its parts of
/// at least [`MIN_PIECE_CHARS`] characters, split at every character other
/// than a letter, digit, `_`, `.` or `-` (`billing`, `cust-4711`,
/// `example.com`, each also compact: `cust4711`), and again at `.` and `-`
/// (`cust`, `4711`, `example`, `com`). Secrets are digested whole only: a part of a token identifies
/// nothing. Returns (whole and compact, parts), without repeats.
pub fn pieces(category: Category, text: &str) -> (Vec<String>, Vec<String>) {
    let whole = normalise(text);
    let mut first = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut keep = |piece: &str, into: &mut Vec<String>| {
        if piece.chars().count() >= MIN_PIECE_CHARS && seen.insert(piece.to_string()) {
            into.push(piece.to_string());
        }
    };
    keep(&whole, &mut first);
    keep(&compact(&whole), &mut first);
    let mut parts = Vec::new();
    if category == Category::Pii {
        let coarse = |c: char| !(c.is_alphanumeric() || matches!(c, '_' | '.' | '-'));
        for part in whole.split(coarse) {
            let part = part.trim_matches(['.', '-', '_']);
            keep(part, &mut parts);
            keep(&compact(part), &mut parts);
        }
        let fine = |c: char| !(c.is_alphanumeric() || c == '_');
        for part in whole.split(fine) {
            keep(part.trim_matches('_'), &mut parts);
        }
    }
    (first, parts)
}

/// The body fields of `event` (`arguments`, `meta`, `result`, `error`, ...)
/// whose `findable` list holds any of `digests`.
pub fn matched_fields(event: &Event, digests: &[String]) -> Vec<String> {
    event
        .body
        .iter()
        .filter_map(|(name, field)| {
            let Value::Object(obj) = field else { return None };
            let Some(Value::Array(list)) = obj.get("findable") else {
                return None;
            };
            let hit = list
                .iter()
                .any(|d| matches!(d, Value::String(s) if digests.iter().any(|q| q == s)));
            hit.then(|| name.clone())
        })
        .collect()
}

/// One event that carried a searched value: who, what, and which call.
#[derive(Clone, Debug, Serialize)]
pub struct Match {
    pub seq: u64,
    /// RFC 3339, as in the event.
    pub ts: String,
    pub kind: String,
    pub principal: Option<String>,
    pub session: Option<String>,
    pub server: Option<String>,
    /// The tool, prompt or resource.
    pub target: Option<String>,
    /// The call's request event: this one, or the one it answers.
    pub request_seq: Option<u64>,
    /// The event's correlation (request id, answers, ...), as recorded.
    pub correlation: serde_json::Value,
    /// The body fields the value was found in.
    pub fields: Vec<String>,
}

impl Match {
    pub fn new(event: &Event, fields: Vec<String>) -> Match {
        let request = matches!(event.kind, EventKind::ToolCallRequested | EventKind::McpRequested);
        Match {
            seq: event.seq,
            ts: event.ts.to_string(),
            kind: event.kind.as_str().to_string(),
            principal: event.actor.principal.clone(),
            session: event.actor.session.clone(),
            server: event.subject.server.clone(),
            target: event
                .subject
                .tool
                .clone()
                .or_else(|| event.subject.prompt.clone())
                .or_else(|| event.subject.resource.clone()),
            request_seq: if request {
                Some(event.seq)
            } else {
                event.correlation.answers
            },
            correlation: event.to_json()["correlation"].clone(),
            fields,
        }
    }
}

/// What a search found, and where it looked.
#[derive(Clone, Debug, Serialize)]
pub struct Found {
    /// The range searched (inclusive).
    pub from: u64,
    pub to: u64,
    pub events_read: u64,
    pub matches: Vec<Match>,
}

/// The events from `from` to `to` (inclusive) that carried `value`, in
/// order. Reads every event of the range: there is no index of digests.
/// Blocking.
pub fn search(ledger: &Ledger, key: &FindKey, value: &str, from: u64, to: u64) -> Result<Found, FindError> {
    let digests = key.query(value)?;
    let mut found = Found {
        from,
        to,
        events_read: 0,
        matches: Vec::new(),
    };
    for sealed in ledger.events(from, to)? {
        let sealed = sealed?;
        found.events_read += 1;
        let fields = matched_fields(&sealed.event, &digests);
        if !fields.is_empty() {
            found.matches.push(Match::new(&sealed.event, fields));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    #[test]
    fn an_email_is_found_whole_and_by_its_parts() {
        let (whole, parts) = pieces(Category::Pii, "Billing+Cust-4711@Example.com");
        assert_eq!(
            strs(&whole),
            ["billing+cust-4711@example.com", "billingcust4711examplecom"]
        );
        assert_eq!(
            strs(&parts),
            [
                "billing",
                "cust-4711",
                "cust4711",
                "example.com",
                "examplecom",
                "cust",
                "4711",
                "example",
                "com"
            ]
        );
    }

    #[test]
    fn numbers_are_found_with_or_without_separators() {
        let (whole, parts) = pieces(Category::Pii, "4111 1111 1111 1111");
        assert_eq!(strs(&whole), ["4111 1111 1111 1111", "4111111111111111"]);
        assert_eq!(strs(&parts), ["4111", "1111"]);
        let (whole, parts) = pieces(Category::Pii, "+1 (415) 555-0100");
        assert_eq!(strs(&whole), ["+1 (415) 555-0100", "14155550100"]);
        assert_eq!(strs(&parts), ["415", "555-0100", "5550100", "555", "0100"]);
    }

    #[test]
    fn secrets_are_digested_whole_only() {
        let (whole, parts) = pieces(Category::Secret, "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(strs(&whole), ["akiaiosfodnn7example"]);
        assert!(parts.is_empty());
        let (whole, parts) = pieces(Category::Secret, "xoxb-1234567890-abc");
        assert_eq!(strs(&whole), ["xoxb-1234567890-abc", "xoxb1234567890abc"]);
        assert!(parts.is_empty());
    }

    #[test]
    fn short_pieces_are_not_digested() {
        let (whole, parts) = pieces(Category::Pii, "a.b@c.de");
        assert_eq!(strs(&whole), ["a.b@c.de", "abcde"]);
        assert_eq!(strs(&parts), ["a.b", "c.de", "cde"]);
        let (whole, parts) = pieces(Category::Pii, "ab");
        assert!(whole.is_empty() && parts.is_empty());
    }

    /// What a scan of `list` (strings, each one finding) keeps to digest.
    fn values(list: &[(Category, &str)]) -> RedactedValues {
        let json = crate::json::Json::Array(
            list.iter()
                .map(|(_, v)| crate::json::Json::String((*v).to_string()))
                .collect(),
        );
        let policy = super::super::safety::ScanPolicy {
            secrets: super::super::safety::Action::Redact,
            pii: super::super::safety::Action::Redact,
        };
        let outcome = super::super::safety::scan_json(&json, &policy);
        let got: Vec<(Category, &str)> = outcome.values.iter().collect();
        assert_eq!(got, list, "the scan keeps what it redacted");
        outcome.values
    }

    #[test]
    fn a_query_finds_the_whole_value_and_its_parts_and_nothing_else() {
        let key = FindKey::from_bytes([7; 32]);
        let field = key
            .findable(&values(&[(Category::Pii, "billing+cust-4711@example.com")]))
            .expect("digests");
        let hit = |v: &str| {
            let q = key.query(v).expect("query");
            field.digests.iter().any(|d| q.contains(d))
        };
        for v in [
            "billing+cust-4711@example.com",
            "BILLING+CUST-4711@EXAMPLE.COM",
            "  cust-4711 ",
            "cust4711",
            "4711",
            "example.com",
        ] {
            assert!(hit(v), "{v:?} must find the call");
        }
        for v in ["cust-4712", "billing+cust-4712@example.com", "cust-47", "ample"] {
            assert!(!hit(v), "{v:?} must not find the call");
        }
        assert!(key.query("ab").is_err());
        // Another ledger's key gives other digests.
        let other = FindKey::from_bytes([8; 32]);
        let q = other.query("cust-4711").expect("query");
        assert!(!field.digests.iter().any(|d| q.contains(d)));
        // Sorted, without repeats, in the documented shape.
        assert!(field.digests.windows(2).all(|w| w[0] < w[1]));
        assert!(field.digests.iter().all(|d| d.len() == DIGEST_PREFIX.len() + 16
            && d.starts_with(DIGEST_PREFIX)
            && d[DIGEST_PREFIX.len()..].bytes().all(|b| b.is_ascii_hexdigit())));
        assert!(!field.truncated);
        assert_eq!(key.findable(&RedactedValues::default()), None);
    }

    #[test]
    fn allowed_findings_are_not_digested() {
        let json = crate::json::Json::String("mail bob@example.com, key AKIAIOSFODNN7EXAMPLE".into());
        let policy = super::super::safety::ScanPolicy {
            secrets: super::super::safety::Action::Redact,
            pii: super::super::safety::Action::Allow,
        };
        let outcome = super::super::safety::scan_json(&json, &policy);
        let got: Vec<(Category, &str)> = outcome.values.iter().collect();
        assert_eq!(got, [(Category::Secret, "AKIAIOSFODNN7EXAMPLE")]);
        assert_eq!(format!("{:?}", outcome.values), "RedactedValues(1 values)");
    }

    #[test]
    fn whole_values_come_first_when_digests_are_capped() {
        let key = FindKey::from_bytes([1; 32]);
        let list: Vec<String> = (0..200).map(|i| format!("user{i}.x@example.com")).collect();
        let pairs: Vec<(Category, &str)> = list.iter().map(|v| (Category::Pii, v.as_str())).collect();
        let field = key.findable(&values(&pairs)).expect("digests");
        assert_eq!(field.digests.len(), MAX_DIGESTS);
        assert!(field.truncated);
        let whole = key.query(&list[199]).expect("query");
        assert!(field.digests.contains(&whole[0]), "every whole value is kept");
        let mut obj = Object::new();
        field.insert_into(&mut obj);
        assert_eq!(obj.get("findable_truncated"), Some(&Value::Bool(true)));
    }

    #[test]
    fn the_key_file_is_private_whole_and_never_overwritten() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("keys");
        let id = [3u8; 16];
        let path = FindKey::path(&dir, &id);
        assert!(path.ends_with("find-03030303030303030303030303030303.secret"));
        let err = FindKey::open(&dir, &id).expect_err("no key yet").to_string();
        assert!(
            err.contains("does not exist") && err.contains(&path.display().to_string()),
            "{err}"
        );

        let key = FindKey::open_or_create(&dir, &id).expect("created");
        let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(fs::read(&path).expect("read").len(), 32);
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(&dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");

        let again = FindKey::open_or_create(&dir, &id).expect("opened");
        assert_eq!(again.key, key.key);
        let err = FindKey::create(&dir, &id).expect_err("exists").to_string();
        assert!(err.contains("refusing to overwrite"), "{err}");
        assert_eq!(FindKey::open(&dir, &id).expect("still there").key, key.key);
        // The key never shows in its Debug form.
        assert_eq!(format!("{key:?}"), "FindKey(..)");

        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
        let err = FindKey::open(&dir, &id).expect_err("0640").to_string();
        assert!(err.contains("chmod 600"), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");

        for size in [0usize, 31, 33, 64] {
            fs::remove_file(&path).expect("remove");
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut f| f.write_all(&vec![b'a'; size]))
                .expect("write a wrong-size key");
            let err = FindKey::open(&dir, &id).expect_err("wrong size").to_string();
            assert!(
                err.contains(&format!("holds {size} bytes, not 32")) && err.contains(&path.display().to_string()),
                "{err}"
            );
        }
    }

    #[test]
    fn racing_creators_agree_on_one_key() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let id = [9u8; 16];
        let keys: Vec<[u8; 32]> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| FindKey::open_or_create(&dir, &id).expect("key").key))
                .collect();
            handles.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        assert!(
            keys.iter().all(|k| *k == keys[0]),
            "every process uses the one key on disk"
        );
        assert_eq!(FindKey::open(&dir, &id).expect("open").key, keys[0]);
    }
}
