//! Evidence bundles (`docs/FORMAT.md` §16): one sealed text file that
//! proves offline that a selection of events is in the log: the events,
//! their inclusion paths (or one range proof for a complete time range),
//! the checkpoint they are proved against with its cosignatures, the events
//! that introduce the ledger's keys, and a seal over every byte.
//!
//! [`Ledger::plan_evidence`] chooses the events, [`Ledger::write_evidence`]
//! writes the file, and [`verify_evidence`] checks one with nothing but the
//! keys the verifier trusts.

use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::Signature;
use sha2::{Digest, Sha256};

use crate::chain::{Genesis, SealedEvent, event_hash};
use crate::checkpoint::{self, Checkpoint, HistoryKey, KeyHistory, RejectKind, Rejection, note_key_id, split_note};
use crate::error::{Error, Result};
use crate::event::{Event, EventKind, Hash, RequestId};
use crate::keys::SigningKey;
use crate::ledger::Ledger;
use crate::merkle::{self, TreeHash, leaf_data};
use crate::schedule::KeySchedule;
use crate::timestamp::Timestamp;
use crate::witness::{Cosigner, require_cosigners};

/// The first line of a bundle, and of its seal's text.
pub const EVIDENCE_HEADER: &str = "sealgate/evidence@v1";
const MAX_PROOF_HASHES: usize = 64;
const MAX_RANGE_HASHES: usize = 128;

/// What a bundle holds: which events of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// One call's story: `correlation.call_id`.
    Call(String),
    /// `actor.session`.
    Session(String),
    /// `correlation.request_id`, in one session or in all.
    Request { id: RequestId, session: Option<String> },
    /// `from ≤ ts ≤ to`; without a filter, a complete range.
    Range {
        from: Timestamp,
        to: Timestamp,
        server: Option<String>,
        principal: Option<String>,
    },
}

impl Selection {
    /// The JSON object of the bundle's `selection` line (members in
    /// alphabetical order).
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        match self {
            Selection::Call(c) => {
                m.insert("call_id".into(), c.as_str().into());
            }
            Selection::Session(s) => {
                m.insert("session".into(), s.as_str().into());
            }
            Selection::Request { id, session } => {
                let id = match id {
                    RequestId::Int(n) => serde_json::Value::from(*n),
                    RequestId::Str(s) => serde_json::Value::from(s.as_str()),
                };
                m.insert("request_id".into(), id);
                if let Some(s) = session {
                    m.insert("session".into(), s.as_str().into());
                }
            }
            Selection::Range {
                from,
                to,
                server,
                principal,
            } => {
                m.insert("from".into(), from.to_string().into());
                if let Some(p) = principal {
                    m.insert("principal".into(), p.as_str().into());
                }
                if let Some(s) = server {
                    m.insert("server".into(), s.as_str().into());
                }
                m.insert("to".into(), to.to_string().into());
            }
        }
        serde_json::Value::Object(m)
    }

    /// Reads a `selection` object: exactly the members of one form.
    pub fn from_json(v: &serde_json::Value) -> std::result::Result<Selection, String> {
        let m = v.as_object().ok_or("the selection is not a JSON object")?;
        let mut keys: Vec<&str> = m.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let text = |k: &str| -> std::result::Result<String, String> {
            match m.get(k) {
                Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                _ => Err(format!("selection member `{k}` is not a non-empty string")),
            }
        };
        let time = |k: &str| -> std::result::Result<Timestamp, String> {
            Timestamp::parse_canonical(&text(k)?).map_err(|e| format!("selection member `{k}`: {e}"))
        };
        match keys.as_slice() {
            ["call_id"] => Ok(Selection::Call(text("call_id")?)),
            ["session"] => Ok(Selection::Session(text("session")?)),
            ["request_id"] | ["request_id", "session"] => {
                let id = match &m["request_id"] {
                    serde_json::Value::String(s) => RequestId::Str(s.clone()),
                    serde_json::Value::Number(n) => {
                        RequestId::Int(n.as_i64().ok_or("selection member `request_id` is not an integer")?)
                    }
                    _ => return Err("selection member `request_id` is not an integer or a string".into()),
                };
                let session = if keys.len() == 2 { Some(text("session")?) } else { None };
                Ok(Selection::Request { id, session })
            }
            ["from", "to"]
            | ["from", "principal", "to"]
            | ["from", "server", "to"]
            | ["from", "principal", "server", "to"] => {
                let (from, to) = (time("from")?, time("to")?);
                if from > to {
                    return Err(format!("selection `from` {from} is after `to` {to}"));
                }
                Ok(Selection::Range {
                    from,
                    to,
                    server: m.contains_key("server").then(|| text("server")).transpose()?,
                    principal: m.contains_key("principal").then(|| text("principal")).transpose()?,
                })
            }
            other => Err(format!("a selection with members {other:?} is none of §16's")),
        }
    }

    /// A time range with no filter: proved complete by a range proof.
    pub fn is_complete_range(&self) -> bool {
        matches!(
            self,
            Selection::Range {
                server: None,
                principal: None,
                ..
            }
        )
    }

    pub fn matches(&self, e: &Event) -> bool {
        match self {
            Selection::Call(c) => e.correlation.call_id.as_deref() == Some(c.as_str()),
            Selection::Session(s) => e.actor.session.as_deref() == Some(s.as_str()),
            Selection::Request { id, session } => {
                e.correlation.request_id.as_ref() == Some(id)
                    && session.as_deref().is_none_or(|s| e.actor.session.as_deref() == Some(s))
            }
            Selection::Range {
                from,
                to,
                server,
                principal,
            } => {
                *from <= e.ts
                    && e.ts <= *to
                    && server.as_deref().is_none_or(|s| e.subject.server.as_deref() == Some(s))
                    && principal
                        .as_deref()
                        .is_none_or(|p| e.actor.principal.as_deref() == Some(p))
            }
        }
    }
}

fn is_key_event(e: &Event) -> bool {
    matches!(e.kind, EventKind::LedgerGenesis | EventKind::KeyRotated)
}

/// The events a bundle will hold, in the tree of `size` events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvidencePlan {
    pub selection: Selection,
    pub size: u64,
    /// A complete range's `[A, END)`.
    pub range: Option<(u64, u64)>,
    /// Every other event, each with an inclusion path: the selected ones
    /// (outside the range) and the key events, in increasing `seq`.
    pub proved: Vec<u64>,
    /// How many events the selection matched.
    pub selected: u64,
}

impl Ledger {
    /// Chooses the events of a bundle of `selection` in the tree of the
    /// first `size` events (`docs/FORMAT.md` §16). A selection that
    /// matches nothing is an error, except a complete range (which proves
    /// that nothing happened).
    pub fn plan_evidence(&self, selection: &Selection, size: u64) -> Result<EvidencePlan> {
        if size == 0 || size > self.tree_size() {
            return Err(Error::InvalidRequest(format!(
                "evidence: a tree of {size} events, the log's tree holds {}",
                self.tree_size()
            )));
        }
        let last = size - 1;
        let key_seqs: Vec<u64> = self
            .key_schedule()?
            .entries()
            .iter()
            .map(|k| k.from.saturating_sub(1))
            .filter(|s| *s < size)
            .collect();
        let (range, scan) = match selection {
            Selection::Range { from, to, .. } => {
                let first = match self.locate_at_or_after(*from)?.seq {
                    Some(s) => s.saturating_sub(1).min(last),
                    None => last,
                };
                let end = match to.as_nanos().checked_add(1) {
                    Some(n) => match self.locate_at_or_after(Timestamp::from_nanos(n))?.seq {
                        Some(s) => s.min(last) + 1,
                        None => size,
                    },
                    None => size,
                }
                .max(first + 1);
                (Some((first, end)), (first, end - 1))
            }
            _ => (None, (0, last)),
        };
        let complete = selection.is_complete_range();
        let mut selected = 0u64;
        let mut proved: Vec<u64> = Vec::new();
        for sealed in self.events(scan.0, scan.1)? {
            let sealed = sealed?;
            if selection.matches(&sealed.event) {
                selected += 1;
                if !complete {
                    proved.push(sealed.event.seq);
                }
            }
        }
        if selected == 0 && !complete {
            return Err(Error::InvalidRequest(format!(
                "evidence: no event of the first {size} matches the selection {}",
                selection.to_json()
            )));
        }
        let in_range = |s: u64| complete && range.is_some_and(|(a, e)| a <= s && s < e);
        proved.extend(key_seqs.into_iter().filter(|s| !in_range(*s)));
        proved.sort_unstable();
        proved.dedup();
        Ok(EvidencePlan {
            selection: selection.clone(),
            size,
            range: if complete { range } else { None },
            proved,
            selected,
        })
    }

    /// Writes the bundle of `plan` to `out`, proved against `checkpoint`
    /// (a note of the tree of `plan.size` events, with whatever
    /// cosignatures it carries) and sealed with `key`, the key that signs
    /// that tree. `comments`: the README lines (each written after `# `).
    pub fn write_evidence(
        &self,
        plan: &EvidencePlan,
        checkpoint_note: &str,
        key: &SigningKey,
        comments: &[String],
        out: &mut dyn Write,
    ) -> Result<()> {
        let text =
            split_note(checkpoint_note).map_err(|r| Error::InvalidRequest(format!("evidence checkpoint: {r}")))?;
        let cp =
            Checkpoint::parse_text(text.0).map_err(|r| Error::InvalidRequest(format!("evidence checkpoint: {r}")))?;
        let origin = checkpoint::origin(&self.ledger_id());
        if cp.origin != origin || cp.size != plan.size || cp.root != self.tree_root(plan.size)? {
            return Err(Error::InvalidRequest(format!(
                "evidence: the checkpoint given is not this ledger's tree of {} events",
                plan.size
            )));
        }
        let mut w = BundleWriter::start(out, comments, &plan.selection, checkpoint_note)?;
        let proved_line = |seq: u64, w: &mut BundleWriter<'_>| -> Result<()> {
            let sealed = self
                .get(seq)?
                .ok_or_else(|| Error::InvalidRequest(format!("evidence: no event at seq {seq}")))?;
            w.event(&sealed, Some(&self.inclusion_proof(seq, plan.size)?))
        };
        match plan.range {
            None => {
                for &seq in &plan.proved {
                    proved_line(seq, &mut w)?;
                }
            }
            Some((first, end)) => {
                w.range(first, end, &self.range_proof(first, end, plan.size)?)?;
                for &seq in plan.proved.iter().filter(|s| **s < first) {
                    proved_line(seq, &mut w)?;
                }
                for sealed in self.events(first, end - 1)? {
                    w.event(&sealed?, None)?;
                }
                for &seq in plan.proved.iter().filter(|s| **s >= end) {
                    proved_line(seq, &mut w)?;
                }
            }
        }
        w.seal(&origin, key)
    }
}

fn io(cause: std::io::Error) -> Error {
    Error::Io {
        context: "cannot write the evidence bundle",
        path: "(its output)".into(),
        cause,
    }
}

/// Writes a bundle's lines in order (§16), hashing every byte before the
/// seal: `start`, then an optional `range`, the `event`s, and `seal`.
pub(crate) struct BundleWriter<'a> {
    out: &'a mut dyn Write,
    sha: Sha256,
}

impl<'a> BundleWriter<'a> {
    /// The header, the comment lines (each after `# `), the selection and
    /// the checkpoint note.
    pub(crate) fn start(
        out: &'a mut dyn Write,
        comments: &[String],
        selection: &Selection,
        checkpoint_note: &str,
    ) -> Result<BundleWriter<'a>> {
        let mut w = BundleWriter {
            out,
            sha: Sha256::new(),
        };
        w.line(EVIDENCE_HEADER)?;
        for c in comments {
            let c = c.replace(['\n', '\r'], " ");
            w.line(&if c.is_empty() { "#".to_owned() } else { format!("# {c}") })?;
        }
        w.line(&format!("selection {}", selection.to_json()))?;
        let note_lines: Vec<&str> = checkpoint_note.trim_end_matches('\n').split('\n').collect();
        w.line(&format!("checkpoint {}", note_lines.len()))?;
        for l in &note_lines {
            w.line(l)?;
        }
        Ok(w)
    }

    fn line(&mut self, line: &str) -> Result<()> {
        self.sha.update(line.as_bytes());
        self.sha.update(b"\n");
        self.out.write_all(line.as_bytes()).map_err(io)?;
        self.out.write_all(b"\n").map_err(io)?;
        Ok(())
    }

    /// An `event` line, and its `proof` line unless it is in the range.
    pub(crate) fn event(&mut self, e: &SealedEvent, proof: Option<&[TreeHash]>) -> Result<()> {
        let canonical = std::str::from_utf8(&e.canonical)
            .map_err(|_| Error::InvalidRequest(format!("the event at seq {} is not UTF-8", e.event.seq)))?;
        self.line(&format!(
            "event {} {} {canonical}",
            e.hash.to_hex(),
            hex::encode(e.signature.to_bytes())
        ))?;
        match proof {
            Some(p) => self.hashes("proof", p),
            None => Ok(()),
        }
    }

    pub(crate) fn range(&mut self, first: u64, end: u64, proof: &[TreeHash]) -> Result<()> {
        self.hashes(&format!("range {first} {end}"), proof)
    }

    fn hashes(&mut self, head: &str, hashes: &[TreeHash]) -> Result<()> {
        let mut line = head.to_owned();
        for h in hashes {
            line.push(' ');
            line.push_str(&B64.encode(h));
        }
        self.line(&line)
    }

    /// The seal over every byte written, signed by `key` (the key that
    /// signs the checkpoint's tree).
    pub(crate) fn seal(self, origin: &str, key: &SigningKey) -> Result<()> {
        let seal = format!("{EVIDENCE_HEADER}\n{origin}\n{}\n", B64.encode(self.sha.finalize()));
        let mut sig = note_key_id(origin, &key.public()).to_be_bytes().to_vec();
        sig.extend_from_slice(&key.sign_note(seal.as_bytes()).to_bytes());
        write!(self.out, "seal 5\n{seal}\n\u{2014} {origin} {}\n", B64.encode(sig)).map_err(io)?;
        self.out.flush().map_err(io)
    }
}

/// One `event` line and the `proof` line after it, if any.
#[derive(Clone, Debug)]
struct Line {
    number: usize,
    hash: Hash,
    signature: [u8; 64],
    canonical: Vec<u8>,
    proof: Option<Vec<TreeHash>>,
}

/// A bundle as read, before any check but its grammar.
struct Parsed {
    selection: Selection,
    checkpoint: String,
    range: Option<(u64, u64, Vec<TreeHash>)>,
    events: Vec<Line>,
    seal: String,
    /// Bytes before the `seal` line: what the seal's digest covers.
    sealed_len: usize,
}

fn malformed(detail: impl Into<String>) -> Rejection {
    Rejection::new(RejectKind::Malformed, detail)
}

fn parse_hashes(
    fields: std::str::Split<'_, char>,
    max: usize,
    n: usize,
) -> std::result::Result<Vec<TreeHash>, Rejection> {
    let mut out = Vec::new();
    for f in fields {
        if out.len() == max {
            return Err(malformed(format!("line {n}: more than {max} hashes")));
        }
        let bytes = B64
            .decode(f)
            .map_err(|e| malformed(format!("line {n}: `{f}` is not base64: {e}")))?;
        out.push(
            TreeHash::try_from(&bytes[..]).map_err(|_| malformed(format!("line {n}: `{f}` is not a 32-byte hash")))?,
        );
    }
    Ok(out)
}

fn decimal(s: &str, n: usize) -> std::result::Result<u64, Rejection> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return Err(malformed(format!("line {n}: `{s}` is not a decimal number")));
    }
    s.parse()
        .map_err(|_| malformed(format!("line {n}: `{s}` is out of range")))
}

fn fixed_hex<const N: usize>(s: &str, what: &str, n: usize) -> std::result::Result<[u8; N], Rejection> {
    let bad = || malformed(format!("line {n}: the {what} is not {} lowercase hex digits", 2 * N));
    if s.len() != 2 * N || s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(bad());
    }
    let v = hex::decode(s).map_err(|_| bad())?;
    v.try_into().map_err(|_| bad())
}

/// The bundle's lines: (line number from 1, byte offset, text without
/// its newline).
struct Lines<'a> {
    lines: Vec<(usize, &'a str)>,
    at: usize,
}

impl<'a> Lines<'a> {
    fn next(&mut self, what: &str) -> std::result::Result<(usize, usize, &'a str), Rejection> {
        let (offset, l) = *self
            .lines
            .get(self.at)
            .ok_or_else(|| malformed(format!("the bundle ends before its {what}")))?;
        self.at += 1;
        Ok((self.at, offset, l))
    }

    /// `HEAD N` then N lines, returned as one text (each with its newline).
    fn block(&mut self, (n, _, l): (usize, usize, &str), head: &str) -> std::result::Result<String, Rejection> {
        let count = l
            .strip_prefix(head)
            .and_then(|c| c.strip_prefix(' '))
            .ok_or_else(|| malformed(format!("line {n}: expected `{head} N`")))?;
        let count = decimal(count, n)?;
        if count == 0 || count > 1000 {
            return Err(malformed(format!("line {n}: a {head} of {count} lines")));
        }
        let mut note = String::new();
        for _ in 0..count {
            note.push_str(self.next(head)?.2);
            note.push('\n');
        }
        Ok(note)
    }
}

fn parse(text: &str) -> std::result::Result<Parsed, Rejection> {
    if !text.ends_with('\n') {
        return Err(malformed("the bundle does not end in a newline"));
    }
    if text.contains('\r') {
        return Err(malformed("the bundle holds a carriage return"));
    }
    let mut offset = 0usize;
    let mut lines = Lines {
        lines: text
            .split_inclusive('\n')
            .map(|l| {
                let start = offset;
                offset += l.len();
                (start, &l[..l.len() - 1])
            })
            .collect(),
        at: 0,
    };
    let (_, _, header) = lines.next("header")?;
    if header != EVIDENCE_HEADER {
        return Err(malformed(format!("line 1: a bundle starts with `{EVIDENCE_HEADER}`")));
    }
    let mut line = lines.next("selection")?;
    while line.2 == "#" || line.2.starts_with("# ") {
        line = lines.next("selection")?;
    }
    let (n, _, l) = line;
    let selection = l
        .strip_prefix("selection ")
        .ok_or_else(|| malformed(format!("line {n}: expected `selection {{...}}`")))?;
    let selection: serde_json::Value =
        serde_json::from_str(selection).map_err(|e| malformed(format!("line {n}: the selection is not JSON: {e}")))?;
    let selection = Selection::from_json(&selection).map_err(|e| malformed(format!("line {n}: {e}")))?;
    let cp_line = lines.next("checkpoint")?;
    let checkpoint = lines.block(cp_line, "checkpoint")?;
    let mut range = None;
    let mut events: Vec<Line> = Vec::new();
    let mut line = lines.next("seal")?;
    if let Some(rest) = line.2.strip_prefix("range ") {
        let n = line.0;
        let mut f = rest.split(' ');
        let a = decimal(f.next().unwrap_or_default(), n)?;
        let end = decimal(f.next().unwrap_or_default(), n)?;
        if a >= end {
            return Err(malformed(format!("line {n}: the range [{a}, {end}) is empty")));
        }
        range = Some((a, end, parse_hashes(f, MAX_RANGE_HASHES, n)?));
        line = lines.next("seal")?;
    }
    loop {
        let (n, at, l) = line;
        if let Some(rest) = l.strip_prefix("event ") {
            let mut f = rest.splitn(3, ' ');
            let hash = fixed_hex::<32>(f.next().unwrap_or_default(), "event hash", n)?;
            let signature = fixed_hex::<64>(f.next().unwrap_or_default(), "signature", n)?;
            let canonical = f
                .next()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| malformed(format!("line {n}: the event line has no event")))?;
            events.push(Line {
                number: n,
                hash: Hash(hash),
                signature,
                canonical: canonical.as_bytes().to_vec(),
                proof: None,
            });
        } else if l == "proof" || l.starts_with("proof ") {
            let hashes = match l.strip_prefix("proof ") {
                None => Vec::new(),
                Some(fields) => parse_hashes(fields.split(' '), MAX_PROOF_HASHES, n)?,
            };
            match events.last_mut() {
                Some(e) if e.proof.is_none() && e.number + 1 == n => e.proof = Some(hashes),
                _ => {
                    return Err(malformed(format!(
                        "line {n}: a proof line that does not follow an event line"
                    )));
                }
            }
        } else if l.starts_with("seal ") {
            let seal = lines.block(line, "seal")?;
            if lines.at < lines.lines.len() {
                return Err(malformed(format!(
                    "line {}: the bundle goes on after its seal",
                    lines.at + 1
                )));
            }
            return Ok(Parsed {
                selection,
                checkpoint,
                range,
                events,
                seal,
                sealed_len: at,
            });
        } else {
            return Err(malformed(format!(
                "line {n}: expected an `event`, `proof` or `seal` line, found `{}`",
                l.chars().take(40).collect::<String>()
            )));
        }
        line = lines.next("seal")?;
    }
}

/// What a complete range shows: every event from `first` to `last` is in
/// the bundle, so no event from the window's start up to `through` is left
/// out. `through` is the window's end, or, when the tree ends before it, a
/// nanosecond before the tree's last event (a later event may share its
/// time): then `whole_window` is false, and the bundle says nothing about
/// the rest of the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Complete {
    pub first: u64,
    pub last: u64,
    pub through: Timestamp,
    pub whole_window: bool,
}

/// What a verified bundle shows.
#[derive(Clone, Debug)]
pub struct Verified {
    pub checkpoint: Checkpoint,
    pub selection: Selection,
    /// The selected events, in increasing `seq`.
    pub events: Vec<SealedEvent>,
    /// The key events the bundle carries (genesis and rotations).
    pub key_events: usize,
    /// A complete range: what it shows.
    pub complete: Option<Complete>,
    /// The witnesses (among those given) that cosigned the checkpoint.
    pub witnesses: Vec<String>,
}

/// A key as `name+id` (its verifier key without the key material).
fn short_vkey(origin: &str, key: &ed25519_dalek::VerifyingKey) -> String {
    let v = checkpoint::vkey(origin, key);
    v.rsplit_once('+').map_or(v.clone(), |(head, _)| head.to_owned())
}

fn reject(kind: RejectKind, detail: impl Into<String>) -> Rejection {
    Rejection::new(kind, detail)
}

/// Checks a bundle offline (`docs/FORMAT.md` §16, "Verification", in its
/// order): `trusted` are the keys the verifier holds (a history, or one
/// verifier key), `witnesses` and `min` its witness policy.
pub fn verify_evidence(
    text: &str,
    trusted: &KeyHistory,
    witnesses: &[Cosigner],
    min: usize,
) -> std::result::Result<Verified, Rejection> {
    // 1. Grammar.
    let b = parse(text)?;
    let decoded: Vec<Option<Event>> = b.events.iter().map(|l| Event::decode(&l.canonical).ok()).collect();

    // 2. Keys, from the genesis and the rotations the bundle holds.
    let genesis = decoded
        .iter()
        .flatten()
        .find(|e| e.seq == 0)
        .ok_or_else(|| malformed("the bundle holds no event at seq 0 (its genesis): its keys cannot be learned"))?;
    let g = Genesis::from_event(genesis).map_err(|e| malformed(format!("the event at seq 0: {e}")))?;
    let origin = checkpoint::origin(&g.ledger_id);
    let cp_origin = split_note(&b.checkpoint)
        .ok()
        .and_then(|(t, _)| t.split('\n').next().map(str::to_owned));
    if cp_origin.as_deref() != Some(origin.as_str()) {
        return Err(malformed(format!(
            "the genesis names the ledger {origin}, the checkpoint {}",
            cp_origin.unwrap_or_else(|| "nothing readable".into())
        )));
    }
    let mut schedule = KeySchedule::from_genesis(genesis).map_err(|e| malformed(format!("the event at seq 0: {e}")))?;
    for (line, e) in b.events.iter().zip(&decoded) {
        let Some(e) = e else { continue };
        if e.kind != EventKind::KeyRotated {
            continue;
        }
        schedule
            .verify_one(e.seq, e.key, &line.hash, &Signature::from_bytes(&line.signature))
            .map_err(|f| {
                reject(
                    RejectKind::BadRotation,
                    format!("the rotation at seq {}: {}", e.seq, f.detail),
                )
            })?;
        schedule
            .apply_rotation(e, &g.ledger_id)
            .map_err(|d| reject(RejectKind::BadRotation, format!("the rotation at seq {}: {d}", e.seq)))?;
    }
    let keys = KeyHistory::from_schedule(&g.ledger_id, &schedule);
    if trusted.origin != keys.origin {
        return Err(reject(
            RejectKind::OriginMismatch,
            format!(
                "the bundle is from {}, the keys trusted are for {}",
                keys.origin, trusted.origin
            ),
        ));
    }
    // The tree's size, read now (its signature is step 3's): the trusted
    // keys are compared with the bundle's up to that size only, since a
    // bundle holds the rotations of its own tree and none after it.
    let size = split_note(&b.checkpoint)
        .and_then(|(text, _)| Checkpoint::parse_text(text))
        .map_err(|r| malformed(format!("the checkpoint: {}", r.detail)))?
        .size;
    if trusted.keys.len() > 1 {
        // A history: up to the tree, exactly the bundle's keys (a rotation
        // left out or forged shows here); later keys are the history's own.
        let upto: Vec<&HistoryKey> = trusted.keys.iter().filter(|k| k.from <= size).collect();
        let same = upto.len() == keys.keys.len()
            && upto
                .iter()
                .zip(&keys.keys)
                .all(|(t, k)| t.key == k.key && t.from == k.from);
        if !same {
            let show = |ks: &mut dyn Iterator<Item = &HistoryKey>| {
                ks.map(|k| format!("{} from {}", short_vkey(&keys.origin, &k.key), k.from))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(reject(
                RejectKind::UnknownKey,
                format!(
                    "the bundle's keys for its tree of {size} events ({}) are not the trusted history's ({}): a rotation is missing or forged",
                    show(&mut keys.keys.iter()),
                    show(&mut upto.into_iter())
                ),
            ));
        }
    } else if let Some(t) = trusted.keys.first()
        && !keys.keys.iter().any(|k| k.key == t.key)
    {
        return Err(reject(
            RejectKind::UnknownKey,
            format!(
                "the trusted key {} is not one of the keys of the bundle's tree of {size} events (if it is newer than that tree, give the key history: sealgate key-history)",
                checkpoint::vkey(&trusted.origin, &t.key)
            ),
        ));
    }

    // 3. The checkpoint.
    let cp = keys.verify_checkpoint(&b.checkpoint)?;

    // 4. Each event: bytes, hash, link, signature, inclusion path.
    let in_range = |s: u64| b.range.as_ref().is_some_and(|(a, e, _)| *a <= s && s < *e);
    let mut events: Vec<&Event> = Vec::with_capacity(decoded.len());
    let mut prev: Option<(u64, Hash)> = None;
    for (line, e) in b.events.iter().zip(&decoded) {
        let n = line.number;
        let e = e.as_ref().ok_or_else(|| {
            let why = Event::decode(&line.canonical).err().unwrap_or_default();
            reject(
                RejectKind::LeafMismatch,
                format!("line {n}: the event cannot be read: {why}"),
            )
        })?;
        let seq = e.seq;
        if prev.is_some_and(|(p, _)| seq <= p) {
            return Err(malformed(format!(
                "line {n}: seq {seq} does not follow the event before it"
            )));
        }
        if seq >= cp.size {
            return Err(reject(
                RejectKind::BadProof,
                format!(
                    "line {n}: seq {seq} is not in the checkpoint's tree of {} events",
                    cp.size
                ),
            ));
        }
        if event_hash(&e.prev, &line.canonical) != line.hash {
            return Err(reject(
                RejectKind::LeafMismatch,
                format!(
                    "line {n}: the event at seq {seq} does not hash to {}",
                    line.hash.short()
                ),
            ));
        }
        if let Some((p, h)) = prev
            && p + 1 == seq
            && e.prev != h
        {
            return Err(reject(
                RejectKind::LeafMismatch,
                format!("line {n}: the event at seq {seq} does not link to the event at seq {p}"),
            ));
        }
        let key = keys
            .key_at(seq)
            .ok_or_else(|| reject(RejectKind::UnknownKey, format!("no key signs seq {seq}")))?;
        key.verify_strict(&line.hash.0, &Signature::from_bytes(&line.signature))
            .map_err(|_| {
                reject(
                    RejectKind::BadEventSignature,
                    format!("line {n}: the signature of seq {seq} does not verify under the key valid at it"),
                )
            })?;
        match (&line.proof, in_range(seq)) {
            (Some(path), false) => {
                let leaf = merkle::leaf_hash(&leaf_data(seq, &line.hash, &line.signature));
                merkle::verify_inclusion(&leaf, seq, cp.size, path, &cp.root).map_err(|x| {
                    reject(
                        RejectKind::BadProof,
                        format!("line {n}: seq {seq} in the tree of {} events: {x}", cp.size),
                    )
                })?;
            }
            (None, false) => return Err(malformed(format!("line {n}: the event at seq {seq} has no proof line"))),
            (Some(_), true) => {
                return Err(malformed(format!(
                    "line {n}: the event at seq {seq} is in the range and has a proof line"
                )));
            }
            (None, true) => {}
        }
        prev = Some((seq, line.hash));
        events.push(e);
    }

    // 5. The range.
    if let Some((a, end, proof)) = &b.range {
        let held: Vec<(&Line, &Event)> = b
            .events
            .iter()
            .zip(&events)
            .filter(|(_, e)| in_range(e.seq))
            .map(|(l, e)| (l, *e))
            .collect();
        let expected = end - a;
        if held.len() as u64 != expected || held.first().is_some_and(|(_, e)| e.seq != *a) {
            return Err(malformed(format!(
                "the range [{a}, {end}) is {expected} events, the bundle holds {} of them",
                held.len()
            )));
        }
        let leaves: Vec<TreeHash> = held
            .iter()
            .map(|(l, e)| merkle::leaf_hash(&leaf_data(e.seq, &l.hash, &l.signature)))
            .collect();
        merkle::verify_range(&leaves, *a, cp.size, proof, &cp.root).map_err(|x| {
            reject(
                RejectKind::BadProof,
                format!("the range [{a}, {end}) in the tree of {} events: {x}", cp.size),
            )
        })?;
    }

    // 6. Witnesses.
    let witnessed = if witnesses.is_empty() && min == 0 {
        Vec::new()
    } else {
        require_cosigners(&b.checkpoint, witnesses, min)?
    };

    // 7. The selection.
    let complete = b.selection.is_complete_range();
    match (&b.range, complete) {
        (None, true) => {
            return Err(reject(
                RejectKind::IncompleteRange,
                "a time range without a filter is proved complete by a range line, and the bundle has none",
            ));
        }
        (Some(_), false) => {
            return Err(malformed(
                "a range line in a bundle whose selection is not a complete range",
            ));
        }
        _ => {}
    }
    let mut selected: Vec<SealedEvent> = Vec::new();
    for (line, e) in b.events.iter().zip(&events) {
        let chosen = b.selection.matches(e);
        if !in_range(e.seq) && !chosen && !is_key_event(e) {
            return Err(reject(
                RejectKind::SelectionMismatch,
                format!("line {}: the event at seq {} is not selected", line.number, e.seq),
            ));
        }
        if chosen {
            selected.push(SealedEvent {
                event: (*e).clone(),
                hash: line.hash,
                signature: Signature::from_bytes(&line.signature),
                canonical: line.canonical.clone(),
            });
        }
    }
    if selected.is_empty() && !complete {
        return Err(reject(
            RejectKind::SelectionMismatch,
            "the bundle holds no selected event",
        ));
    }
    let mut covered = None;
    if let (Some((a, end, _)), Selection::Range { from, to, .. }) = (&b.range, &b.selection) {
        let at = |s: u64| events.iter().find(|e| e.seq == s).map(|e| e.ts);
        let (first_ts, last_ts) = (at(*a), at(end - 1));
        if *a != 0 && first_ts.is_none_or(|t| t >= *from) {
            return Err(reject(
                RejectKind::IncompleteRange,
                format!(
                    "the range starts at seq {a}, which is not before {from}: earlier events of the window may be left out"
                ),
            ));
        }
        let last = end - 1;
        let (upto, whole) = match last_ts {
            Some(t) if t > *to => (*to, true),
            Some(t) if last + 1 == cp.size => (Timestamp::from_nanos(t.as_nanos().saturating_sub(1)), false),
            _ => {
                return Err(reject(
                    RejectKind::IncompleteRange,
                    format!(
                        "the range ends at seq {last}, which is not after {to} nor the tree's last event: later events of the window may be left out"
                    ),
                ));
            }
        };
        covered = Some(Complete {
            first: *a,
            last,
            through: upto,
            whole_window: whole,
        });
    }

    // 8. The seal.
    check_seal(&b.seal, &text.as_bytes()[..b.sealed_len], &keys, &cp)?;

    Ok(Verified {
        key_events: events.iter().filter(|e| is_key_event(e)).count(),
        checkpoint: cp,
        selection: b.selection,
        events: selected,
        complete: covered,
        witnesses: witnessed,
    })
}

fn check_seal(seal: &str, sealed: &[u8], keys: &KeyHistory, cp: &Checkpoint) -> std::result::Result<(), Rejection> {
    let bad = |d: String| reject(RejectKind::BadSeal, d);
    let (text, sigs) = split_note(seal).map_err(|r| bad(format!("the seal is not a signed note: {}", r.detail)))?;
    let want = format!(
        "{EVIDENCE_HEADER}\n{}\n{}\n",
        keys.origin,
        B64.encode(Sha256::digest(sealed))
    );
    if text != want {
        return Err(bad(
            "the seal is not over this bundle: a byte before the seal line differs from what was sealed".into(),
        ));
    }
    let key = keys
        .key_at(cp.size)
        .ok_or_else(|| bad(format!("no key signs the tree of {} events", cp.size)))?;
    let [(name, sig)] = sigs.as_slice() else {
        return Err(bad(format!("the seal carries {} signature lines, not one", sigs.len())));
    };
    let id = note_key_id(&keys.origin, key).to_be_bytes();
    if *name != keys.origin || sig.len() != 68 || sig[..4] != id {
        return Err(bad(format!(
            "the seal is not signed by the key that signs the tree of {} events",
            cp.size
        )));
    }
    let signature = <[u8; 64]>::try_from(&sig[4..]).map_err(|_| bad("not a 64-byte signature".into()))?;
    key.verify_strict(text.as_bytes(), &Signature::from_bytes(&signature))
        .map_err(|_| bad("the seal's signature does not verify".into()))
}
