//! Full-text search over the ledger: a Tantivy index under
//! `<data dir>/derived/search/` that a [`TextFollower`] keeps from the log,
//! searched together with the events past its cursor (indexed in memory
//! from the log at query time), so an answer is current to the head.
//! `docs/QUERY.md` (Full-text search) is the reference.
//!
//! What is indexed is only text the log holds: every string of an event's
//! actor, subject and body except digests, routed into a field by its key
//! ([`Part`]). The index stores each event's `seq` and `hash` and nothing
//! else; excerpts are cut from the event as the log has it.
//!
//! The cursor (ledger id, seq and hash of the last indexed event) is the
//! payload of the index's own commit, so the documents and the cursor are
//! made durable together: after a crash the index is exactly the events up
//! to the cursor, and the follower resumes after it.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ledger::{Head, Ledger, SealedEvent, Value};
use serde::{Deserialize, Serialize};
use tantivy::collector::{DocSetCollector, TopDocs};
use tantivy::query::{
    Bm25StatisticsProvider, BooleanQuery, ConstScoreQuery, Occur, Query, QueryParser, RangeQuery, TermQuery,
};
use tantivy::schema::{Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TEXT, TantivyDocument, Value as _};
use tantivy::snippet::SnippetGenerator;
use tantivy::{DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, Score, Searcher, Term};

use crate::{Error, Finding};

/// Where the search index of the ledger in `data_dir` lives.
pub fn search_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("derived").join("search")
}

/// Events indexed between commits while catching up (each commit makes
/// them and the cursor durable together).
pub const DEFAULT_COMMIT_EVENTS: u64 = 10_000;

/// The writer's memory budget (Tantivy's floor is 15 MB a thread).
const WRITER_BYTES: usize = 64_000_000;
const RAM_WRITER_BYTES: usize = 15_000_000;

/// Where a piece of an event's text goes: one Tantivy field each, named as
/// in queries (`reason:quota`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    /// `actor.principal`, `actor.teams`, `actor.agent`; body `principal`,
    /// `team`, `requester`, `approver_*`, `revealed_by.principal`.
    Principal,
    /// `subject.server`, `subject.env`.
    Server,
    /// `subject.tool`/`.prompt`/`.resource`; body tool, prompt and resource
    /// names, `names` of a listing, the tool names of pins, drift and
    /// server actions.
    Tool,
    /// `arguments.json` and `meta.json` (as stored: redacted, cut).
    Args,
    /// `result.json` (the stored excerpt, redacted).
    Result,
    /// `error.message`, or `error` when it is a string.
    Error,
    /// `reason` and `reason_code`.
    Reason,
    /// Every other string of the body (a policy's YAML, a session's client
    /// and server info, an upstream's masked address, an `x.*` body, ...).
    Body,
}

impl Part {
    pub const ALL: [Part; 8] = [
        Part::Principal,
        Part::Server,
        Part::Tool,
        Part::Args,
        Part::Result,
        Part::Error,
        Part::Reason,
        Part::Body,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Part::Principal => "principal",
            Part::Server => "server",
            Part::Tool => "tool",
            Part::Args => "args",
            Part::Result => "result",
            Part::Error => "error",
            Part::Reason => "reason",
            Part::Body => "body",
        }
    }
}

/// One event as the index sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Doc {
    pub seq: u64,
    pub hash: String,
    pub kind: String,
    pub ts: ledger::Timestamp,
    /// `subject.server`, exact (for `--server`).
    pub server: Option<String>,
    /// `actor.principal`, exact (for `--principal`).
    pub principal: Option<String>,
    pub parts: Vec<(Part, String)>,
}

/// Body keys whose strings are digests, hashes or other opaque values:
/// never indexed.
const OPAQUE_KEYS: &[&str] = &[
    "digest",
    "findable",
    "args_digest",
    "policy_hash",
    "hash",
    "pin",
    "listed",
    "token",
    "quarantine_id",
    "approval_id",
    "grant_id",
    "mcp.session.id",
];

/// Body keys whose strings name a principal or team.
const PRINCIPAL_KEYS: &[&str] = &[
    "principal",
    "team",
    "requester",
    "approver_principals",
    "approver_teams",
];

/// Body keys whose strings name a tool, prompt or resource.
const TOOL_KEYS: &[&str] = &[
    "gen_ai.tool.name",
    "gen_ai.prompt.name",
    "mcp.resource.uri",
    "names",
    "hidden",
    "removed",
    "tool",
];

/// Body objects whose keys are tool names.
const TOOL_MAPS: &[&str] = &["tools", "actions", "changed", "added"];

fn opaque(s: &str) -> bool {
    ["blake3:", "mac:", "sha256:"].iter().any(|p| s.starts_with(p))
}

fn walk(key: &str, parent: &str, v: &Value, out: &mut Vec<(Part, String)>) {
    if OPAQUE_KEYS.contains(&key) {
        return;
    }
    match v {
        Value::String(s) => {
            if s.is_empty() || opaque(s) {
                return;
            }
            let part = if key == "json" && (parent == "arguments" || parent == "meta") {
                Part::Args
            } else if key == "json" && parent == "result" {
                Part::Result
            } else if key == "error" || (parent == "error" && key == "message") {
                Part::Error
            } else if key == "reason" || key == "reason_code" {
                Part::Reason
            } else if PRINCIPAL_KEYS.contains(&key) {
                Part::Principal
            } else if TOOL_KEYS.contains(&key) {
                Part::Tool
            } else {
                Part::Body
            };
            out.push((part, s.clone()));
        }
        Value::Array(items) => items.iter().for_each(|i| walk(key, parent, i, out)),
        Value::Object(map) => {
            for (k, child) in map {
                if TOOL_MAPS.contains(&key) && !k.is_empty() {
                    out.push((Part::Tool, k.clone()));
                }
                walk(k, key, child, out);
            }
        }
        Value::Null | Value::Bool(_) | Value::Int(_) => {}
    }
}

/// The document of a sealed event.
pub fn doc(sealed: &SealedEvent) -> Doc {
    let e = &sealed.event;
    let mut parts = Vec::new();
    let mut push = |part: Part, s: &Option<String>| {
        if let Some(s) = s.as_ref().filter(|s| !s.is_empty()) {
            parts.push((part, s.clone()));
        }
    };
    push(Part::Principal, &e.actor.principal);
    push(Part::Principal, &e.actor.agent);
    push(Part::Server, &e.subject.server);
    push(Part::Tool, &e.subject.tool);
    push(Part::Tool, &e.subject.prompt);
    push(Part::Tool, &e.subject.resource);
    for t in &e.actor.teams {
        parts.push((Part::Principal, t.clone()));
    }
    for env in &e.subject.env {
        parts.push((Part::Server, env.clone()));
    }
    for (k, v) in &e.body {
        walk(k, "", v, &mut parts);
    }
    Doc {
        seq: e.seq,
        hash: sealed.hash.to_hex(),
        kind: e.kind.as_str().to_owned(),
        ts: e.ts,
        server: e.subject.server.clone(),
        principal: e.actor.principal.clone(),
        parts,
    }
}

/// The index's fields.
#[derive(Clone, Copy, Debug)]
struct Fields {
    seq: Field,
    hash: Field,
    kind: Field,
    at_server: Field,
    by_principal: Field,
    parts: [Field; 8],
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let seq = b.add_u64_field("seq", INDEXED | STORED | tantivy::schema::FAST);
    let hash = b.add_text_field("hash", STRING | STORED);
    let kind = b.add_text_field("kind", STRING);
    let at_server = b.add_text_field("at_server", STRING);
    let by_principal = b.add_text_field("by_principal", STRING);
    let parts = Part::ALL.map(|p| b.add_text_field(p.name(), TEXT));
    (
        b.build(),
        Fields {
            seq,
            hash,
            kind,
            at_server,
            by_principal,
            parts,
        },
    )
}

fn fields_of(schema: &Schema) -> Option<Fields> {
    let (want, fields) = self::schema();
    (schema == &want).then_some(fields)
}

fn tantivy_doc(f: &Fields, d: &Doc) -> TantivyDocument {
    let mut t = TantivyDocument::new();
    t.add_u64(f.seq, d.seq);
    t.add_text(f.hash, &d.hash);
    t.add_text(f.kind, &d.kind);
    if let Some(s) = &d.server {
        t.add_text(f.at_server, s);
    }
    if let Some(p) = &d.principal {
        t.add_text(f.by_principal, p);
    }
    for (part, text) in &d.parts {
        t.add_text(f.parts[*part as usize], text);
    }
    t
}

fn tv(context: &str, e: tantivy::TantivyError) -> Error {
    Error::Search {
        message: format!("{context}: {e}"),
    }
}

/// The last event in the index: the payload of its last commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextCursor {
    pub ledger_id: String,
    pub seq: u64,
    pub hash: String,
}

fn index_dir(dir: &Path) -> PathBuf {
    dir.join("index")
}

/// Reads the cursor of the index in `dir` (from its last commit), if there
/// is an index with one.
pub fn read_text_cursor(dir: &Path) -> Result<Option<TextCursor>, Error> {
    let path = index_dir(dir);
    if !path.join("meta.json").exists() {
        return Ok(None);
    }
    let index = Index::open_in_dir(&path).map_err(|e| tv(&format!("opening {}", path.display()), e))?;
    cursor_of(&index, &path)
}

fn cursor_of(index: &Index, path: &Path) -> Result<Option<TextCursor>, Error> {
    let metas = index
        .load_metas()
        .map_err(|e| tv(&format!("reading {}", path.display()), e))?;
    metas
        .payload
        .map(|p| {
            serde_json::from_str(&p).map_err(|e| Error::Corrupt {
                path: path.join("meta.json"),
                reason: format!("the commit's cursor: {e}"),
            })
        })
        .transpose()
}

/// Why the index's cursor is not this log's (the index must then be
/// rebuilt or not be used), if it is not.
fn not_ours(ledger: &Ledger, c: &TextCursor) -> Result<Option<String>, Error> {
    let id = crate::store::hex(&ledger.ledger_id());
    if c.ledger_id != id {
        return Ok(Some(format!(
            "its cursor is of ledger {}, the log is {id}",
            c.ledger_id
        )));
    }
    Ok(
        match ledger
            .get(c.seq)
            .map_err(|e| Error::ledger("reading the search cursor's event", e))?
        {
            Some(e) if e.hash.to_hex() == c.hash => None,
            Some(e) => Some(format!(
                "its cursor's event seq {} has hash {} in the log, {} in the cursor",
                c.seq,
                e.hash.to_hex(),
                c.hash
            )),
            None => Some(format!("the log has no seq {} (its cursor)", c.seq)),
        },
    )
}

/// What [`TextFollower::open`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TextRepairs {
    /// The index was wiped to be rebuilt from the log; why.
    pub rebuilt: Option<String>,
}

/// Keeps the search index up to date with a ledger, reading it only.
pub struct TextFollower {
    dir: PathBuf,
    index: Index,
    writer: IndexWriter,
    fields: Fields,
    ledger_id: String,
    /// The next seq to read from the log.
    next: u64,
    commit_events: u64,
    /// Documents added since the last commit, and the last one's hash.
    uncommitted: u64,
    last_hash: Option<String>,
}

/// Removes the index in `dir` (it is rebuilt from the log).
pub fn wipe_text(dir: &Path) -> Result<(), Error> {
    let path = index_dir(dir);
    match std::fs::remove_dir_all(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("cannot remove", &path, e)),
    }
}

impl TextFollower {
    /// Opens (creating) the index in `dir` for `ledger`. Tantivy drops what
    /// an interrupted write left past the last commit. An index that does
    /// not open or is of another schema is removed and created again; then,
    /// holding the index's writer lock (one follower at a time, so no one
    /// commits while it is checked), an index of another log, without a
    /// cursor, or whose document count is not its cursor's, is cleared to
    /// be rebuilt.
    pub fn open(dir: &Path, ledger: &Ledger, commit_events: u64) -> Result<(TextFollower, TextRepairs), Error> {
        let path = index_dir(dir);
        let mut repairs = TextRepairs::default();
        let existing = if path.join("meta.json").exists() {
            match Index::open_in_dir(&path) {
                Ok(index) if fields_of(&index.schema()).is_some() => Some(index),
                Ok(_) => {
                    repairs.rebuilt = Some("its schema is not this version's".into());
                    None
                }
                Err(e) => {
                    repairs.rebuilt = Some(format!("it does not open: {e}"));
                    None
                }
            }
        } else {
            None
        };
        let index = match existing {
            Some(index) => index,
            None => {
                wipe_text(dir)?;
                std::fs::create_dir_all(&path).map_err(|e| Error::io("cannot create", &path, e))?;
                Index::create_in_dir(&path, schema().0).map_err(|e| tv(&format!("creating {}", path.display()), e))?
            }
        };
        let fields = fields_of(&index.schema()).ok_or_else(|| Error::Corrupt {
            path: path.clone(),
            reason: "its schema is not this version's".into(),
        })?;
        let writer = index.writer_with_num_threads(1, WRITER_BYTES).map_err(|e| match e {
            tantivy::TantivyError::LockFailure(..) => Error::Search {
                message: format!(
                    "{} is being written by another process (a running `sealgate serve`, or `sealgate index`): {e}",
                    path.display()
                ),
            },
            e => tv("opening the search index's writer", e),
        })?;
        let mut follower = TextFollower {
            dir: dir.to_owned(),
            index,
            writer,
            fields,
            ledger_id: crate::store::hex(&ledger.ledger_id()),
            next: 0,
            commit_events: commit_events.max(1),
            uncommitted: 0,
            last_hash: None,
        };
        if let Some(why) = follower.why_not(ledger)? {
            follower.clear()?;
            repairs.rebuilt = Some(why);
        }
        follower.next = cursor_of(&follower.index, &path)?.map_or(0, |c| c.seq + 1);
        Ok((follower, repairs))
    }

    /// Why the committed index cannot be followed from its cursor, if it
    /// cannot.
    fn why_not(&self, ledger: &Ledger) -> Result<Option<String>, Error> {
        let path = index_dir(&self.dir);
        let reader: IndexReader = self
            .index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| tv("opening the search index", e))?;
        let docs = reader.searcher().num_docs();
        Ok(match cursor_of(&self.index, &path)? {
            None if docs == 0 => None,
            None => Some(format!("{docs} document(s) and no cursor")),
            Some(c) => match not_ours(ledger, &c)? {
                Some(why) => Some(why),
                None => (docs != c.seq + 1).then(|| {
                    format!(
                        "{docs} document(s) for a cursor at seq {} ({} expected)",
                        c.seq,
                        c.seq + 1
                    )
                }),
            },
        })
    }

    /// Deletes every document and the cursor (committed), keeping the
    /// writer lock: `sealgate index rebuild`, or an index that cannot be
    /// followed.
    pub fn clear(&mut self) -> Result<(), Error> {
        self.writer
            .delete_all_documents()
            .map_err(|e| tv("clearing the search index", e))?;
        // No payload: no cursor.
        self.writer
            .prepare_commit()
            .and_then(|c| c.commit())
            .map_err(|e| tv("clearing the search index", e))?;
        self.next = 0;
        self.uncommitted = 0;
        self.last_hash = None;
        Ok(())
    }

    /// The first seq not in the index (committed or not).
    pub fn next(&self) -> u64 {
        self.next
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads the log from where it stopped to `head`, committing every
    /// `commit_events` events and at the end; `progress` is called with the
    /// last seq of each commit.
    pub fn catch_up(
        &mut self,
        ledger: &Ledger,
        head: &Head,
        mut progress: impl FnMut(u64),
    ) -> Result<crate::Progress, Error> {
        let mut done = crate::Progress::default();
        if self.next > head.seq {
            return Ok(done);
        }
        let iter = ledger
            .events(self.next, head.seq)
            .map_err(|e| Error::ledger("reading the log", e))?;
        for sealed in iter {
            let sealed = sealed.map_err(|e| Error::ledger("reading the log", e))?;
            if sealed.event.seq != self.next {
                return Err(Error::Gap {
                    expected: self.next,
                    found: sealed.event.seq,
                });
            }
            let d = doc(&sealed);
            self.writer
                .add_document(tantivy_doc(&self.fields, &d))
                .map_err(|e| tv("indexing", e))?;
            self.next += 1;
            self.uncommitted += 1;
            self.last_hash = Some(d.hash);
            done.events_read += 1;
            done.read_to = Some(sealed.event.seq);
            if self.uncommitted >= self.commit_events {
                self.commit()?;
                done.segments_written += 1;
                progress(self.next - 1);
            }
        }
        if self.uncommitted > 0 {
            self.commit()?;
            done.segments_written += 1;
            progress(self.next - 1);
        }
        Ok(done)
    }

    /// Makes the documents added and the cursor durable, together.
    fn commit(&mut self) -> Result<(), Error> {
        let Some(hash) = self.last_hash.clone() else {
            return Ok(());
        };
        let cursor = TextCursor {
            ledger_id: self.ledger_id.clone(),
            seq: self.next - 1,
            hash,
        };
        let payload = serde_json::to_string(&cursor).map_err(|e| Error::Search {
            message: format!("the search cursor: {e}"),
        })?;
        let mut prepared = self.writer.prepare_commit().map_err(|e| tv("committing", e))?;
        prepared.set_payload(&payload);
        prepared.commit().map_err(|e| tv("committing", e))?;
        self.uncommitted = 0;
        Ok(())
    }

    /// Waits for the writer's merges to end (before the process exits).
    pub fn close(self) -> Result<(), Error> {
        self.writer
            .wait_merging_threads()
            .map_err(|e| tv("finishing the search index's merges", e))?;
        drop(self.index);
        Ok(())
    }
}

/// One part of a searched snapshot: an index and how far it goes.
struct Part0 {
    searcher: Searcher,
    /// Its seqs are `from..=to` (none if `from > to`).
    from: u64,
    to: u64,
}

/// The search index and the log at one head.
pub struct TextSnapshot {
    pub head: Head,
    pub ledger: Arc<Ledger>,
    /// The index on disk, up to its cursor (if it is used).
    disk: Option<Part0>,
    /// The events past it, indexed in memory from the log.
    tail: Part0,
    fields: Fields,
    /// Why the index on disk was not used, if it was not.
    pub index_ignored: Option<String>,
    pub cursor: Option<TextCursor>,
}

/// Indexes the log's events `from..=to` in memory.
fn ram_index(ledger: &Ledger, from: u64, to: u64) -> Result<Searcher, Error> {
    let docs = read_docs(ledger, from, to)?;
    ram_index_of(&docs)
}

fn read_docs(ledger: &Ledger, from: u64, to: u64) -> Result<Vec<Doc>, Error> {
    let mut docs = Vec::new();
    if from > to {
        return Ok(docs);
    }
    for e in ledger
        .events(from, to)
        .map_err(|e| Error::ledger("reading the log", e))?
    {
        docs.push(doc(&e.map_err(|e| Error::ledger("reading the log", e))?));
    }
    Ok(docs)
}

fn ram_index_of(docs: &[Doc]) -> Result<Searcher, Error> {
    let (schema, fields) = schema();
    let index = Index::create_in_ram(schema);
    let mut w: IndexWriter = index
        .writer_with_num_threads(1, RAM_WRITER_BYTES)
        .map_err(|e| tv("indexing the log's tail", e))?;
    for d in docs {
        w.add_document(tantivy_doc(&fields, d))
            .map_err(|e| tv("indexing the log's tail", e))?;
    }
    w.commit().map_err(|e| tv("indexing the log's tail", e))?;
    let reader: IndexReader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .map_err(|e| tv("reading the log's tail", e))?;
    Ok(reader.searcher())
}

impl TextSnapshot {
    /// The index in `dir` as of `head`, and the log past its cursor.
    /// Writes nothing.
    pub fn open(dir: &Path, ledger: Arc<Ledger>, head: Head) -> Result<TextSnapshot, Error> {
        let (_, fields) = schema();
        let path = index_dir(dir);
        let mut index_ignored = None;
        let mut disk = None;
        let mut cursor = None;
        if !path.join("meta.json").exists() {
            index_ignored = Some(format!(
                "no search index in {} (run `sealgate index rebuild`)",
                dir.display()
            ));
        } else {
            match Self::open_disk(&path, &ledger, &head)? {
                Ok((part, c)) => {
                    disk = Some(part);
                    cursor = Some(c);
                }
                Err(why) => {
                    index_ignored = Some(format!(
                        "the search index in {} is not used: {why}; run `sealgate index rebuild`",
                        dir.display()
                    ))
                }
            }
        }
        let from = disk.as_ref().map_or(0, |d: &Part0| d.to + 1);
        let tail = Part0 {
            searcher: ram_index(&ledger, from, head.seq)?,
            from,
            to: head.seq,
        };
        Ok(TextSnapshot {
            head,
            ledger,
            disk,
            tail,
            fields,
            index_ignored,
            cursor,
        })
    }

    /// A snapshot of the log alone (what `--verify` compares with).
    pub fn from_log(ledger: Arc<Ledger>, head: Head) -> Result<TextSnapshot, Error> {
        let (_, fields) = schema();
        Ok(TextSnapshot {
            tail: Part0 {
                searcher: ram_index(&ledger, 0, head.seq)?,
                from: 0,
                to: head.seq,
            },
            head,
            ledger,
            disk: None,
            fields,
            index_ignored: None,
            cursor: None,
        })
    }

    /// The index on disk, if it is usable: its searcher at a commit whose
    /// cursor is this log's and at or before the head, with one document a
    /// seq up to it.
    #[allow(clippy::type_complexity)]
    fn open_disk(path: &Path, ledger: &Ledger, head: &Head) -> Result<Result<(Part0, TextCursor), String>, Error> {
        let index = match Index::open_in_dir(path) {
            Ok(i) => i,
            Err(e) => return Ok(Err(format!("it does not open: {e}"))),
        };
        if fields_of(&index.schema()).is_none() {
            return Ok(Err("its schema is not this version's".into()));
        }
        // The cursor and the searcher must be of one commit: a follower may
        // commit in between; read the cursor again after the searcher, and
        // retry if it moved (commits only move it forward).
        let mut last_error = None;
        for _ in 0..10 {
            let before = cursor_of(&index, path)?;
            // A follower's merge may remove a segment file between the
            // commit read and the files opened: try again.
            let reader: IndexReader = match index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into() {
                Ok(r) => r,
                Err(e) => {
                    last_error = Some(e.to_string());
                    continue;
                }
            };
            let searcher = reader.searcher();
            let after = cursor_of(&index, path)?;
            if before != after {
                continue;
            }
            let Some(c) = after else {
                return Ok(Err("it has no cursor (no commit yet)".into()));
            };
            if let Some(why) = not_ours(ledger, &c)? {
                return Ok(Err(why));
            }
            if c.seq > head.seq {
                return Ok(Err(format!(
                    "its cursor (seq {}) is past the head (seq {})",
                    c.seq, head.seq
                )));
            }
            let docs = searcher.num_docs();
            if docs != c.seq + 1 {
                return Ok(Err(format!(
                    "it holds {docs} document(s) for a cursor at seq {} ({} expected)",
                    c.seq,
                    c.seq + 1
                )));
            }
            return Ok(Ok((
                Part0 {
                    searcher,
                    from: 0,
                    to: c.seq,
                },
                c,
            )));
        }
        Ok(Err(match last_error {
            Some(e) => format!("it kept changing while being opened ({e})"),
            None => "it kept changing while being opened".into(),
        }))
    }

    /// The seq up to which the index on disk answered (the rest came from
    /// the log), if it was used.
    pub fn indexed_to(&self) -> Option<u64> {
        self.disk.as_ref().map(|d| d.to)
    }

    /// Events read from the log for this snapshot (past the index).
    pub fn tail_events(&self) -> u64 {
        (self.tail.to + 1).saturating_sub(self.tail.from)
    }

    fn parts(&self) -> Vec<&Part0> {
        self.disk.iter().chain(std::iter::once(&self.tail)).collect()
    }
}

/// The scoring statistics of several searchers as if they were one index,
/// so that a hit scores the same whether it was in the index or the tail.
struct Combined<'a>(Vec<&'a Searcher>);

impl Bm25StatisticsProvider for Combined<'_> {
    fn total_num_tokens(&self, field: Field) -> tantivy::Result<u64> {
        self.0.iter().map(|s| s.total_num_tokens(field)).sum()
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        self.0.iter().map(|s| Bm25StatisticsProvider::total_num_docs(*s)).sum()
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        self.0.iter().map(|s| Bm25StatisticsProvider::doc_freq(*s, term)).sum()
    }
}

/// A search: the query text and the filters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub query: String,
    /// Inclusive seq range (`--from`/`--to` resolved).
    pub from: u64,
    pub to: u64,
    pub server: Option<String>,
    pub principal: Option<String>,
    pub limit: usize,
}

impl Request {
    pub fn new(query: &str) -> Request {
        Request {
            query: query.to_owned(),
            from: 0,
            to: u64::MAX,
            server: None,
            principal: None,
            limit: 20,
        }
    }
}

/// One ranked hit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hit {
    pub seq: u64,
    /// The hash the index gave (the log's, unless the index was edited:
    /// `--verify` checks).
    pub hash: String,
    pub kind: String,
    /// RFC 3339, from the log.
    pub ts: String,
    pub score: f32,
    /// The field the excerpt is from (`args`, `reason`, ...).
    pub field: String,
    /// Cut from the event as the log has it.
    pub excerpt: String,
    /// Byte ranges of the matched terms in `excerpt`.
    pub highlighted: Vec<(usize, usize)>,
}

impl Hit {
    /// The excerpt with each matched term between `«` and `»`.
    pub fn marked(&self) -> String {
        let mut out = String::new();
        let mut at = 0;
        for (s, e) in &self.highlighted {
            if *s < at || *e > self.excerpt.len() {
                continue;
            }
            out.push_str(&self.excerpt[at..*s]);
            out.push('«');
            out.push_str(&self.excerpt[*s..*e]);
            out.push('»');
            at = *e;
        }
        out.push_str(&self.excerpt[at..]);
        out
    }
}

/// A search's answer, with the head it was computed at.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SearchAnswer {
    pub head_seq: u64,
    pub head_hash: String,
    /// The index answered up to this seq; the events after it up to the
    /// head were indexed from the log for this answer.
    pub indexed_to: Option<u64>,
    pub hits: Vec<Hit>,
    /// Why the index was not used, if it was not.
    pub index_ignored: Option<String>,
}

/// Parses `text` with every text field as a default field and terms
/// joined by AND; a syntax error names its position.
fn parse(fields: &Fields, schema: &Schema, text: &str) -> Result<Box<dyn Query>, Error> {
    let mut defaults = fields.parts.to_vec();
    defaults.push(fields.kind);
    let tokenizers = tantivy::tokenizer::TokenizerManager::default();
    let mut parser = QueryParser::new(schema.clone(), defaults, tokenizers);
    parser.set_conjunction_by_default();
    match parser.parse_query(text) {
        Ok(q) => Ok(q),
        Err(strict) => {
            let (_, errors) = tantivy::query_grammar::parse_query_lenient(text);
            let message = match errors.first() {
                Some(e) => format!("bad search syntax at position {} (of {:?}): {}", e.pos, text, e.message),
                None => format!("bad search {:?}: {strict}", text),
            };
            Err(Error::BadSearch { message })
        }
    }
}

/// The query with the request's filters (scoring nothing) and a seq range.
fn filtered(fields: &Fields, q: Box<dyn Query>, req: &Request, from: u64, to: u64) -> Box<dyn Query> {
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, q)];
    let zero = |q: Box<dyn Query>| -> Box<dyn Query> { Box::new(ConstScoreQuery::new(q, 0.0)) };
    clauses.push((
        Occur::Must,
        zero(Box::new(RangeQuery::new(
            Bound::Included(Term::from_field_u64(fields.seq, from)),
            Bound::Included(Term::from_field_u64(fields.seq, to)),
        ))),
    ));
    if let Some(s) = &req.server {
        clauses.push((
            Occur::Must,
            zero(Box::new(TermQuery::new(
                Term::from_field_text(fields.at_server, s),
                IndexRecordOption::Basic,
            ))),
        ));
    }
    if let Some(p) = &req.principal {
        clauses.push((
            Occur::Must,
            zero(Box::new(TermQuery::new(
                Term::from_field_text(fields.by_principal, p),
                IndexRecordOption::Basic,
            ))),
        ));
    }
    Box::new(BooleanQuery::new(clauses))
}

/// The seq and hash the index holds for a document.
fn stored(searcher: &Searcher, fields: &Fields, addr: DocAddress) -> Result<(u64, String), Error> {
    let d: TantivyDocument = searcher.doc(addr).map_err(|e| tv("reading a hit", e))?;
    let seq = d.get_first(fields.seq).and_then(|v| v.as_u64());
    let hash = d.get_first(fields.hash).and_then(|v| v.as_str().map(str::to_owned));
    match (seq, hash) {
        (Some(seq), Some(hash)) => Ok((seq, hash)),
        _ => Err(Error::Search {
            message: format!("a hit of the search index has no seq or hash ({addr:?})"),
        }),
    }
}

/// Runs `req` over `snap`: the top `req.limit` events by score (ties by
/// seq), each with an excerpt cut from the log.
pub fn search(snap: &TextSnapshot, req: &Request) -> Result<SearchAnswer, Error> {
    let (schema, _) = schema();
    let fields = snap.fields;
    let q = parse(&fields, &schema, &req.query)?;
    let to = req.to.min(snap.head.seq);
    let parts = snap.parts();
    let stats = Combined(parts.iter().map(|p| &p.searcher).collect());
    let mut ranked: Vec<(Score, u64, String)> = Vec::new();
    if req.from <= to && req.limit > 0 {
        for p in &parts {
            let (lo, hi) = (req.from.max(p.from), to.min(p.to));
            if lo > hi {
                continue;
            }
            let query = filtered(&fields, q.box_clone(), req, lo, hi);
            // Ties are broken by seq (lower first), not by where a
            // document happens to sit in the index's segments, so that a
            // rebuilt index keeps the same hits at the limit.
            let collector = TopDocs::with_limit(req.limit).tweak_score(|segment: &tantivy::SegmentReader| {
                let seqs = segment.fast_fields().u64("seq").ok();
                move |doc: tantivy::DocId, score: Score| {
                    let seq = seqs.as_ref().and_then(|c| c.first(doc)).unwrap_or(u64::MAX);
                    (score, std::cmp::Reverse(seq))
                }
            });
            let top = p
                .searcher
                .search_with_statistics_provider(query.as_ref(), &collector, &stats)
                .map_err(|e| tv("searching", e))?;
            for ((score, _), addr) in top {
                let (seq, hash) = stored(&p.searcher, &fields, addr)?;
                ranked.push((score, seq, hash));
            }
        }
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    ranked.truncate(req.limit);
    let snippets = Snippets::new(&schema, &fields, q.as_ref())?;
    let mut hits = Vec::with_capacity(ranked.len());
    for (score, seq, hash) in ranked {
        let sealed = snap
            .ledger
            .get(seq)
            .map_err(|e| Error::ledger("reading a hit", e))?
            .filter(|_| seq <= snap.head.seq);
        let (kind, ts, field, excerpt, highlighted) = match sealed {
            Some(sealed) => {
                let d = doc(&sealed);
                let (field, excerpt, highlighted) = snippets.best(&d);
                (d.kind, d.ts.to_string(), field, excerpt, highlighted)
            }
            // An index that names an event the log does not have: shown,
            // and reported by `--verify`.
            None => (String::new(), String::new(), String::new(), String::new(), Vec::new()),
        };
        hits.push(Hit {
            seq,
            hash,
            kind,
            ts,
            score,
            field,
            excerpt,
            highlighted,
        });
    }
    Ok(SearchAnswer {
        head_seq: snap.head.seq,
        head_hash: snap.head.hash.to_hex(),
        indexed_to: snap.indexed_to(),
        hits,
        index_ignored: snap.index_ignored.clone(),
    })
}

/// An excerpt: the field it is from, its text, the matched byte ranges.
type Excerpt = (String, String, Vec<(usize, usize)>);

/// Cuts excerpts: one generator a text field, with the query's terms of
/// every field (a term found in `args` is marked wherever it occurs).
struct Snippets {
    generators: Vec<(Part, SnippetGenerator)>,
}

impl Snippets {
    fn new(schema: &Schema, fields: &Fields, q: &dyn Query) -> Result<Snippets, Error> {
        let mut terms: BTreeMap<String, Score> = BTreeMap::new();
        q.query_terms(&mut |term, _| {
            if let Some(s) = term.value().as_str() {
                terms.insert(s.to_owned(), 1.0);
            }
        });
        let manager = tantivy::tokenizer::TokenizerManager::default();
        let tokenizer = manager.get("default").ok_or_else(|| Error::Search {
            message: "the default tokenizer is missing".into(),
        })?;
        let _ = schema;
        let generators = Part::ALL
            .iter()
            .map(|p| {
                let mut g = SnippetGenerator::new(terms.clone(), tokenizer.clone(), fields.parts[*p as usize], 160);
                g.set_max_num_chars(160);
                (*p, g)
            })
            .collect();
        Ok(Snippets { generators })
    }

    /// The excerpt of `d` with the most matched terms: field, text, ranges.
    fn best(&self, d: &Doc) -> Excerpt {
        let mut best: Option<Excerpt> = None;
        for (part, text) in &d.parts {
            let Some((_, g)) = self.generators.iter().find(|(p, _)| p == part) else {
                continue;
            };
            let s = g.snippet(text);
            let ranges: Vec<(usize, usize)> = s.highlighted().iter().map(|r| (r.start, r.end)).collect();
            if best.as_ref().is_none_or(|b| ranges.len() > b.2.len()) {
                best = Some((part.name().to_owned(), s.fragment().to_owned(), ranges));
            }
        }
        best.unwrap_or_else(|| (String::new(), String::new(), Vec::new()))
    }
}

/// Every seq of `searcher` within `from..=to` that matches `q` (unranked).
fn all_matches(
    searcher: &Searcher,
    fields: &Fields,
    q: &dyn Query,
    req: &Request,
    from: u64,
    to: u64,
) -> Result<BTreeMap<u64, String>, Error> {
    let mut out = BTreeMap::new();
    if from > to {
        return Ok(out);
    }
    let query = filtered(fields, q.box_clone(), req, from, to);
    let docs = searcher
        .search(query.as_ref(), &DocSetCollector)
        .map_err(|e| tv("searching", e))?;
    for addr in docs {
        let (seq, hash) = stored(searcher, fields, addr)?;
        out.insert(seq, hash);
    }
    Ok(out)
}

/// Checks `answer` (of `req` over `snap`) against the signed log:
///
/// 1. each hit: the log has an event at its seq, with its hash, and that
///    event (rebuilt from the log) matches the query;
/// 2. the range: every event of `req`'s range that matches the query when
///    indexed from the log is matched by the index (or the tail), and the
///    other way round (`dropped`, `invented`);
/// 3. the index's files: their checksums.
pub fn verify(snap: &TextSnapshot, req: &Request, answer: &SearchAnswer) -> Result<Vec<Finding>, Error> {
    let (schema, _) = schema();
    let fields = snap.fields;
    let q = parse(&fields, &schema, &req.query)?;
    let mut findings = Vec::new();
    // 1. each hit
    let mut rebuilt = Vec::new();
    for h in &answer.hits {
        let Some(sealed) = snap
            .ledger
            .get(h.seq)
            .map_err(|e| Error::ledger("verifying a hit", e))?
            .filter(|_| h.seq <= snap.head.seq)
        else {
            findings.push(Finding {
                seq: Some(h.seq),
                what: format!("invented: the log has no seq {} (head {})", h.seq, snap.head.seq),
            });
            continue;
        };
        if sealed.hash.to_hex() != h.hash {
            findings.push(Finding {
                seq: Some(h.seq),
                what: format!("hash {} returned, the log's is {}", h.hash, sealed.hash.to_hex()),
            });
        }
        rebuilt.push(doc(&sealed));
    }
    let hit_index = ram_index_of(&rebuilt)?;
    let matching = all_matches(&hit_index, &fields, q.as_ref(), req, 0, u64::MAX)?;
    for d in &rebuilt {
        if !matching.contains_key(&d.seq) {
            findings.push(Finding {
                seq: Some(d.seq),
                what: "invented: the event in the log does not match the query (or the filters)".into(),
            });
        }
    }
    // 2. the range, both ways
    let to = req.to.min(snap.head.seq);
    if req.from <= to {
        let mut ours = BTreeMap::new();
        for p in snap.parts() {
            ours.extend(all_matches(
                &p.searcher,
                &fields,
                q.as_ref(),
                req,
                req.from.max(p.from),
                to.min(p.to),
            )?);
        }
        let log = ram_index(&snap.ledger, req.from, to)?;
        let theirs = all_matches(&log, &fields, q.as_ref(), req, req.from, to)?;
        for (seq, hash) in &theirs {
            match ours.get(seq) {
                None => findings.push(Finding {
                    seq: Some(*seq),
                    what: "dropped: the event matches the query in the log, not in the index".into(),
                }),
                Some(h) if h != hash => findings.push(Finding {
                    seq: Some(*seq),
                    what: format!("hash {h} in the index, the log's is {hash}"),
                }),
                Some(_) => {}
            }
        }
        let reported: BTreeSet<u64> = findings.iter().filter_map(|f| f.seq).collect();
        for seq in ours.keys() {
            if !theirs.contains_key(seq) && !reported.contains(seq) {
                findings.push(Finding {
                    seq: Some(*seq),
                    what: "invented: the index matches it, the event in the log does not match the query".into(),
                });
            }
        }
    }
    // 3. the files
    if let Some(d) = &snap.disk {
        let bad = d
            .searcher
            .index()
            .validate_checksum()
            .map_err(|e| tv("checking the search index's files", e))?;
        let mut bad: Vec<_> = bad.into_iter().collect();
        bad.sort();
        for path in bad {
            findings.push(Finding {
                seq: None,
                what: format!("the search index's file {} fails its checksum", path.display()),
            });
        }
    }
    Ok(findings)
}

/// Opens the ledger at `ledger_dir` read-only and the index in `dir`, and
/// answers `req` at the log's head.
pub fn query(ledger_dir: &Path, dir: &Path, req: &Request) -> Result<(SearchAnswer, TextSnapshot), Error> {
    let ledger = Arc::new(Ledger::open_read_only(ledger_dir).map_err(|e| Error::ledger("opening the ledger", e))?);
    let head = ledger
        .head_checked()
        .map_err(|e| Error::ledger("reading the head", e))?;
    let snap = TextSnapshot::open(dir, ledger, head)?;
    Ok((search(&snap, req)?, snap))
}

/// The SQL table function `search('query' [, limit])`: the hits of a
/// search at the query's head, as rows `(seq, hash, score, excerpt)`,
/// ranked, to join with `events` on `seq`. Over [`Source::Store`] it reads
/// the search index beside the query store (and the log past it); over
/// [`Source::Log`] (what `sql --verify` compares with) the log alone.
pub struct SearchFunction {
    snap: Arc<crate::Snapshot>,
    source: crate::Source,
}

impl std::fmt::Debug for SearchFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchFunction").field("source", &self.source).finish()
    }
}

/// `search()`'s default row limit.
pub const SQL_DEFAULT_LIMIT: usize = 1000;

impl SearchFunction {
    pub fn new(snap: Arc<crate::Snapshot>, source: crate::Source) -> SearchFunction {
        SearchFunction { snap, source }
    }

    fn rows(&self, req: &Request) -> Result<datafusion::arrow::array::RecordBatch, Error> {
        use datafusion::arrow::array::{ArrayRef, Float32Array, StringArray, UInt64Array};
        let snap = match self.source {
            crate::Source::Store => {
                let dir = self
                    .snap
                    .dir
                    .parent()
                    .map_or_else(|| PathBuf::from("search"), |p| p.join("search"));
                TextSnapshot::open(&dir, self.snap.ledger.clone(), self.snap.head)?
            }
            crate::Source::Log => TextSnapshot::from_log(self.snap.ledger.clone(), self.snap.head)?,
        };
        let answer = search(&snap, req)?;
        let hits = &answer.hits;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(hits.iter().map(|h| h.seq))),
            Arc::new(StringArray::from_iter_values(hits.iter().map(|h| h.hash.as_str()))),
            Arc::new(Float32Array::from_iter_values(hits.iter().map(|h| h.score))),
            Arc::new(StringArray::from_iter_values(hits.iter().map(Hit::marked))),
        ];
        datafusion::arrow::array::RecordBatch::try_new(sql_schema(), columns).map_err(|e| Error::Arrow {
            context: "search()".into(),
            message: e.to_string(),
        })
    }
}

fn sql_schema() -> datafusion::arrow::datatypes::SchemaRef {
    use datafusion::arrow::datatypes::{DataType, Field as F, Schema as S};
    Arc::new(S::new(vec![
        F::new("seq", DataType::UInt64, false),
        F::new("hash", DataType::Utf8, false),
        F::new("score", DataType::Float32, false),
        F::new("excerpt", DataType::Utf8, false),
    ]))
}

impl datafusion::catalog::TableFunctionImpl for SearchFunction {
    fn call_with_args(
        &self,
        args: datafusion::catalog::TableFunctionArgs,
    ) -> datafusion::error::Result<Arc<dyn datafusion::catalog::TableProvider>> {
        use datafusion::common::ScalarValue;
        use datafusion::error::DataFusionError;
        use datafusion::logical_expr::Expr;
        let usage = || {
            DataFusionError::Plan("search() takes a query text and an optional row limit: search('text' [, n])".into())
        };
        let exprs = args.exprs();
        let query = match exprs.first() {
            Some(Expr::Literal(
                ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)),
                _,
            )) => s.clone(),
            _ => return Err(usage()),
        };
        let limit = match exprs.get(1) {
            None => SQL_DEFAULT_LIMIT,
            Some(Expr::Literal(v, _)) => match v {
                ScalarValue::Int64(Some(n)) => usize::try_from(*n).map_err(|_| usage())?,
                ScalarValue::Int32(Some(n)) => usize::try_from(*n).map_err(|_| usage())?,
                ScalarValue::UInt64(Some(n)) => usize::try_from(*n).map_err(|_| usage())?,
                _ => return Err(usage()),
            },
            Some(_) => return Err(usage()),
        };
        if exprs.len() > 2 {
            return Err(usage());
        }
        let mut req = Request::new(&query);
        req.limit = limit;
        let batch = self.rows(&req).map_err(|e| DataFusionError::External(Box::new(e)))?;
        let table = datafusion::datasource::MemTable::try_new(sql_schema(), vec![vec![batch]])?;
        Ok(Arc::new(table))
    }
}
