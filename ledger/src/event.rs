//! The event envelope: one versioned shape for every event in the log.
//!
//! The envelope is protocol-agnostic. Kind names such as
//! `tool_call.requested` exist here so that every writer and reader agrees on
//! them, but the ledger does not interpret the body of any kind except its
//! own (`ledger.genesis`, `key.rotated`); the bodies of gateway and
//! governance kinds are the `sealgate-events` crate's. `x.*` kinds are
//! operators' own ([`EventKind::is_extension`]).
//!
//! Field checks name the path of what is wrong (`actor.principal:
//! expected a string`): one function per structure (`Actor::check`,
//! `Subject::check`, `Correlation::check`, the body's in `canonical.rs`,
//! the envelope's size). The writer applies them before it signs (`submit`
//! refuses a draft, `create` a genesis, the writer a rotation, which is
//! also checked against the key schedule as the verifier checks it) and
//! the decoder to every envelope it reads, so that no write path can sign
//! an event the verifier calls malformed.

use std::fmt;
use std::str::FromStr;

use crate::canonical::{Object, Value};
use crate::timestamp::Timestamp;

/// The envelope version written by this code, `"v"` in canonical bytes.
pub const ENVELOPE_VERSION: i128 = 1;

/// Maximum length, in bytes, of an identifier-like string (principal,
/// team, server, tool, ...): every string of `actor` and `subject` but
/// `subject.resource`.
pub const MAX_NAME_LEN: usize = 1024;

/// Largest canonical envelope, in bytes (1 MiB).
pub const MAX_EVENT_BYTES: usize = 1 << 20;

macro_rules! event_kinds {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal ),+ $(,)?) => {
        /// What an event records. New kinds may be added in later versions; a
        /// reader that does not know a kind keeps its name in
        /// [`EventKind::Other`] and can still verify the event.
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum EventKind {
            $( $(#[$doc])* $variant, )+
            /// A kind this version does not know (written by a newer version).
            Other(String),
        }

        impl EventKind {
            /// Every kind this version knows, in declaration order.
            pub const KNOWN: &'static [EventKind] = &[$(EventKind::$variant),+];

            pub fn as_str(&self) -> &str {
                match self {
                    $( EventKind::$variant => $name, )+
                    EventKind::Other(name) => name,
                }
            }

            /// Parses a kind name; unknown names become [`EventKind::Other`].
            pub fn from_name(name: &str) -> EventKind {
                match name {
                    $( $name => EventKind::$variant, )+
                    other => EventKind::Other(other.to_owned()),
                }
            }
        }
    };
}

event_kinds! {
    /// Sequence 0: binds the ledger id and the first public key.
    LedgerGenesis = "ledger.genesis",
    /// Signed by the outgoing key; introduces the key valid from the next event.
    KeyRotated = "key.rotated",
    ToolCallRequested = "tool_call.requested",
    /// ALLOW, DENY, REQUIRE_APPROVAL or ALLOW_WITH_CONSTRAINTS, with its reason.
    PolicyDecision = "policy.decision",
    ApprovalRequested = "approval.requested",
    ApprovalGranted = "approval.granted",
    ApprovalDenied = "approval.denied",
    ApprovalExpired = "approval.expired",
    ExecutionCompleted = "execution.completed",
    ExecutionFailed = "execution.failed",
    OutputRedacted = "output.redacted",
    OutputQuarantined = "output.quarantined",
    ServerRegistered = "server.registered",
    ServerApproved = "server.approved",
    ServerRevoked = "server.revoked",
    ServerQuarantined = "server.quarantined",
    ToolsPinned = "tools.pinned",
    ToolsDrifted = "tools.drifted",
    GrantIssued = "grant.issued",
    GrantRevoked = "grant.revoked",
    PolicyLoaded = "policy.loaded",
    /// A principal, team, server or session suspended (the kill switch).
    SuspensionIssued = "suspension.issued",
    /// A suspension ended.
    SuspensionLifted = "suspension.lifted",
    /// A data-moving MCP request other than `tools/call` (`resources/read`,
    /// `prompts/get`, and server-to-client `sampling/createMessage`,
    /// `elicitation/create`, `roots/list`); the body names the method.
    McpRequested = "mcp.requested",
    /// A client session through the gateway began: negotiated protocol
    /// version, client and server identity.
    SessionOpened = "session.opened",
    /// A session that opened ended: why (client, idle, upstream, shutdown,
    /// suspension), its counts of calls, its duration.
    SessionClosed = "session.closed",
    /// What an upstream listed (tools, prompts, resources, templates): the
    /// digest of the set it returned.
    ListingObserved = "listing.observed",
    /// A message the gateway did not relay because it did not recognise
    /// it (malformed, unknown method, not the session's, ...).
    MessageRefused = "mcp.refused",
    /// Refused authentications and requests for unknown or unusable
    /// servers, counted per source, reason and server over an interval.
    AccessRefused = "access.refused",
    /// A recorded call that did not run (denied, or its approval denied,
    /// expired or withdrawn): its terminal event, as an execution outcome is
    /// for a call that ran.
    CallRefused = "call.refused",
    /// A detection over the log fired (written by the gateway's alert
    /// detector, naming the events it was computed from).
    AlertRaised = "alert.raised",
    /// A webhook accepted a notification.
    NotificationDelivered = "notification.delivered",
    /// A webhook notification given up on.
    NotificationFailed = "notification.failed",
    /// The gateway issued a signed checkpoint of the log before it (the
    /// note text, its size and root); written by its checkpoint issuer.
    CheckpointIssued = "checkpoint.issued",
    /// A witness's answer about an issued checkpoint: cosigned (with the
    /// cosignature), refused (the alarm for a forked or rewritten log) or
    /// unreachable.
    CheckpointWitnessed = "checkpoint.witnessed",
}

impl EventKind {
    /// Kinds only the ledger itself writes (`init`, key rotation); `append`
    /// refuses them.
    pub fn is_reserved(&self) -> bool {
        matches!(self, EventKind::LedgerGenesis | EventKind::KeyRotated)
    }

    pub fn is_known(&self) -> bool {
        !matches!(self, EventKind::Other(_))
    }

    /// A kind of the extension namespace, for operators' own events (notes,
    /// imports): `x.` and one or more dot-separated segments of `a-z`,
    /// `0-9`, `_` and `-` (`x.note`, `x.import.splunk`). No writer of
    /// Sealgate's own uses it, and `sealgate append` writes nothing else.
    pub fn is_extension(&self) -> bool {
        let EventKind::Other(name) = self else {
            return false;
        };
        name.len() <= MAX_NAME_LEN
            && name.strip_prefix("x.").is_some_and(|rest| {
                rest.split('.').all(|seg| {
                    !seg.is_empty()
                        && seg
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
                })
            })
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A 32-byte BLAKE3 digest, written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub const ZERO: Hash = Hash([0; 32]);

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hex digits, for tables.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl FromStr for Hash {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_hex_array(s).map(Hash).map_err(|e| format!("hash {e}"))
    }
}

/// Identifies a signing key: the first 16 bytes of a BLAKE3 key derivation
/// over the Ed25519 public key (see `docs/FORMAT.md`), 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 16]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_hex_array(s).map(KeyId).map_err(|e| format!("key id {e}"))
    }
}

pub(crate) fn parse_hex_array<const N: usize>(s: &str) -> Result<[u8; N], String> {
    if s.len() != 2 * N || s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("`{s}` is not {} lowercase hex digits", 2 * N));
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| format!("`{s}` is not {} lowercase hex digits", 2 * N))?;
    Ok(out)
}

/// Who acted: the authenticated principal, their teams, the agent or client
/// software, and the session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Actor {
    pub principal: Option<String>,
    pub teams: Vec<String>,
    pub agent: Option<String>,
    pub session: Option<String>,
}

/// What was acted on: server, tool, resource or prompt, and the environment
/// labels (`prod`, `staging`, ...) of the server at the time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    pub server: Option<String>,
    pub tool: Option<String>,
    pub resource: Option<String>,
    pub prompt: Option<String>,
    pub env: Vec<String>,
}

/// A JSON-RPC request id: an integer or a string, kept apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestId {
    Int(i64),
    Str(String),
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestId::Int(n) => write!(f, "{n}"),
            RequestId::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// Ties an event to others: the protocol request, the distributed trace,
/// and the earlier event this one answers (a decision answers a request, a
/// completion answers a decision).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Correlation {
    pub request_id: Option<RequestId>,
    /// W3C trace id, 32 lowercase hex digits.
    pub trace_id: Option<String>,
    /// W3C span id, 16 lowercase hex digits.
    pub span_id: Option<String>,
    /// Sequence number of the event this one answers.
    pub answers: Option<u64>,
    /// The id its writer gives every event of one call (32 lowercase hex
    /// digits): unique in the log, unlike a JSON-RPC id.
    pub call_id: Option<String>,
}

/// The caller-supplied part of an event; the ledger adds sequence number,
/// timestamp, previous hash, key id, hash and signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draft {
    pub kind: EventKind,
    pub actor: Actor,
    pub subject: Subject,
    pub correlation: Correlation,
    pub body: Object,
}

impl Draft {
    pub fn new(kind: EventKind) -> Draft {
        Draft {
            kind,
            actor: Actor::default(),
            subject: Subject::default(),
            correlation: Correlation::default(),
            body: Object::new(),
        }
    }

    /// Parses one JSON object with the fields `kind`, `actor`, `subject`,
    /// `correlation` and `body` (only `kind` is required). Errors name the
    /// field, or give serde_json's line and column for syntax errors.
    pub fn from_json(text: &str) -> Result<Draft, String> {
        let value = Value::from_json_str(text).map_err(|e| {
            // A draft is usually one line: name the column, and the line only
            // when the text has several.
            let msg = e.to_string();
            let msg = msg.rsplit_once(" at line ").map_or(msg.as_str(), |(m, _)| m).to_owned();
            if text.contains('\n') {
                format!("line {} column {}: {msg}", e.line(), e.column())
            } else {
                format!("column {}: {msg}", e.column())
            }
        })?;
        Draft::from_value(value)
    }

    pub fn from_value(value: Value) -> Result<Draft, String> {
        let mut f = Fields::new("", value)?;
        let kind_name = f.req_str("kind")?;
        let kind = EventKind::from_name(&kind_name);
        if !kind.is_known() && !kind.is_extension() {
            return Err(format!(
                "kind: unknown event kind `{kind_name}` (extension kinds are `x.<name>`; known: {})",
                EventKind::KNOWN
                    .iter()
                    .filter(|k| !k.is_reserved())
                    .map(EventKind::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if kind.is_reserved() {
            return Err(format!("kind: `{kind_name}` is written only by the ledger itself"));
        }
        let actor = f.opt_object("actor", actor_from)?.unwrap_or_default();
        let subject = f.opt_object("subject", subject_from)?.unwrap_or_default();
        let correlation = f.opt_object("correlation", correlation_from)?.unwrap_or_default();
        let body = f.opt_object("body", |f| Ok(f.take_rest()))?.unwrap_or_default();
        f.finish()?;
        let draft = Draft {
            kind,
            actor,
            subject,
            correlation,
            body,
        };
        draft.check()?;
        Ok(draft)
    }

    /// Whether the ledger can sign this draft into an event that its own
    /// decoder, and so its verifier, accepts: every field by the rules of
    /// `docs/FORMAT.md` §2–3 (names of 1 to [`MAX_NAME_LEN`] bytes, lowercase
    /// hex ids, body integers in `i64::MIN ..= u64::MAX`, nesting within 64
    /// levels, a non-empty kind). The error names the field
    /// (`actor.principal: must not be empty ...`). The decoder applies this
    /// very check to what it reads; the envelope's size limit
    /// ([`MAX_EVENT_BYTES`]) is checked once the event is sealed.
    ///
    /// It does not say whether a kind may be appended: `ledger.genesis` and
    /// `key.rotated` are written only by the ledger itself, and kinds this
    /// version does not know are refused by [`crate::Ledger::submit`].
    pub fn check(&self) -> Result<(), String> {
        check_fields(&self.kind, &self.actor, &self.subject, &self.correlation, &self.body)
    }
}

/// The field rules of an envelope (`docs/FORMAT.md` §2–3): what the ledger
/// checks before it signs a draft, and what the decoder checks on every
/// envelope it reads, so that the two cannot disagree.
pub(crate) fn check_fields(
    kind: &EventKind,
    actor: &Actor,
    subject: &Subject,
    correlation: &Correlation,
    body: &Object,
) -> Result<(), String> {
    if kind.as_str().is_empty() {
        return Err("kind: must not be empty".into());
    }
    actor.check()?;
    subject.check()?;
    correlation.check()?;
    crate::canonical::check_body(body)
}

/// The size rule of an envelope: its canonical encoding is at most
/// [`MAX_EVENT_BYTES`]. Checked by every writer once an event is sealed,
/// and by the decoder on every envelope it reads.
pub(crate) fn check_size(canonical_len: usize) -> Result<(), String> {
    if canonical_len > MAX_EVENT_BYTES {
        return Err(format!(
            "the envelope is {canonical_len} bytes, more than the limit of {MAX_EVENT_BYTES}"
        ));
    }
    Ok(())
}

impl Actor {
    /// `actor`'s rules: each string 1 to [`MAX_NAME_LEN`] bytes, the
    /// elements of `teams` included. See [`Draft::check`].
    pub fn check(&self) -> Result<(), String> {
        check_name("actor.principal", self.principal.as_deref())?;
        check_names("actor.teams", &self.teams)?;
        check_name("actor.agent", self.agent.as_deref())?;
        check_name("actor.session", self.session.as_deref())
    }
}

impl Subject {
    /// `subject`'s rules: each string 1 to [`MAX_NAME_LEN`] bytes, the
    /// elements of `env` included, but `resource` (a URI), which need only
    /// be non-empty. See [`Draft::check`].
    pub fn check(&self) -> Result<(), String> {
        check_name("subject.server", self.server.as_deref())?;
        check_name("subject.tool", self.tool.as_deref())?;
        check_non_empty("subject.resource", self.resource.as_deref())?;
        check_name("subject.prompt", self.prompt.as_deref())?;
        check_names("subject.env", &self.env)
    }
}

impl Correlation {
    /// `correlation`'s rules: `trace_id` 32 and `span_id` 16 lowercase hex
    /// digits (`request_id` and `answers` are whatever their types hold).
    /// See [`Draft::check`].
    pub fn check(&self) -> Result<(), String> {
        check_hex_id("correlation.trace_id", self.trace_id.as_deref(), 32)?;
        check_hex_id("correlation.span_id", self.span_id.as_deref(), 16)?;
        check_hex_id("correlation.call_id", self.call_id.as_deref(), 32)
    }
}

fn check_non_empty(path: &str, s: Option<&str>) -> Result<(), String> {
    match s {
        Some("") => Err(format!("{path}: must not be empty (omit the field instead)")),
        _ => Ok(()),
    }
}

/// A name: 1 to [`MAX_NAME_LEN`] bytes.
fn check_name(path: &str, s: Option<&str>) -> Result<(), String> {
    check_non_empty(path, s)?;
    match s {
        Some(s) if s.len() > MAX_NAME_LEN => Err(format!("{path}: longer than {MAX_NAME_LEN} bytes")),
        _ => Ok(()),
    }
}

/// A list of names (an empty list is written as no list).
fn check_names(path: &str, items: &[String]) -> Result<(), String> {
    for (i, s) in items.iter().enumerate() {
        match s.len() {
            0 => return Err(format!("{path}[{i}]: must not be empty")),
            n if n > MAX_NAME_LEN => return Err(format!("{path}[{i}]: longer than {MAX_NAME_LEN} bytes")),
            _ => {}
        }
    }
    Ok(())
}

fn check_hex_id(path: &str, s: Option<&str>, digits: usize) -> Result<(), String> {
    match s {
        Some(s) if s.len() != digits || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) => Err(
            format!("{path}: expected {digits} lowercase hex digits, found `{}`", shown(s)),
        ),
        _ => Ok(()),
    }
}

/// `s` for an error message: at most its first 64 bytes.
pub(crate) fn shown(s: &str) -> std::borrow::Cow<'_, str> {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.into();
    }
    let end = (0..=MAX).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
    format!("{}... ({} bytes)", &s[..end], s.len()).into()
}

/// A complete event: the draft plus what the ledger assigned. The canonical
/// encoding of this struct is what gets hashed and signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub seq: u64,
    pub ts: Timestamp,
    pub kind: EventKind,
    pub actor: Actor,
    pub subject: Subject,
    pub correlation: Correlation,
    pub body: Object,
    /// Hash of the event at `seq - 1`; all zeros for the genesis event.
    pub prev: Hash,
    /// The key that signs this event.
    pub key: KeyId,
}

impl Event {
    pub fn from_draft(draft: Draft, seq: u64, ts: Timestamp, prev: Hash, key: KeyId) -> Event {
        Event {
            seq,
            ts,
            kind: draft.kind,
            actor: draft.actor,
            subject: draft.subject,
            correlation: draft.correlation,
            body: draft.body,
            prev,
            key,
        }
    }

    /// The field rules of the envelope ([`Draft::check`]'s): checked before
    /// the ledger signs an event, and on every envelope decoded.
    pub(crate) fn check(&self) -> Result<(), String> {
        check_fields(&self.kind, &self.actor, &self.subject, &self.correlation, &self.body)
    }

    /// The canonical bytes of the envelope (see `docs/FORMAT.md`).
    ///
    /// Written field by field in canonical order (this is the writer's hot
    /// path); `canonical_bytes_match_the_generic_encoder` checks it against
    /// the generic encoder of [`Value`].
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(384 + 64 * self.body.len());
        self.write_canonical(&mut out);
        out
    }

    /// Appends the canonical bytes of the envelope to `out`.
    pub fn write_canonical(&self, out: &mut Vec<u8>) {
        use crate::canonical::{write_object, write_string};
        let a = &self.actor;
        out.extend_from_slice(b"{\"actor\":{");
        let mut sep = Sep::default();
        opt_field(out, &mut sep, "agent", a.agent.as_deref());
        opt_field(out, &mut sep, "principal", a.principal.as_deref());
        opt_field(out, &mut sep, "session", a.session.as_deref());
        list_field(out, &mut sep, "teams", &a.teams);
        out.extend_from_slice(b"},\"body\":");
        write_object(&self.body, out);
        out.extend_from_slice(b",\"correlation\":{");
        let c = &self.correlation;
        let mut sep = Sep::default();
        if let Some(n) = c.answers {
            sep.key(out, "answers");
            push_int(out, n);
        }
        opt_field(out, &mut sep, "call_id", c.call_id.as_deref());
        match &c.request_id {
            Some(RequestId::Int(n)) => {
                sep.key(out, "request_id");
                push_int(out, *n);
            }
            Some(RequestId::Str(s)) => opt_field(out, &mut sep, "request_id", Some(s)),
            None => {}
        }
        opt_field(out, &mut sep, "span_id", c.span_id.as_deref());
        opt_field(out, &mut sep, "trace_id", c.trace_id.as_deref());
        out.extend_from_slice(b"},\"key\":\"");
        push_hex(out, &self.key.0);
        out.extend_from_slice(b"\",\"kind\":");
        write_string(self.kind.as_str(), out);
        out.extend_from_slice(b",\"prev\":\"");
        push_hex(out, &self.prev.0);
        out.extend_from_slice(b"\",\"seq\":");
        push_int(out, self.seq);
        out.extend_from_slice(b",\"subject\":{");
        let s = &self.subject;
        let mut sep = Sep::default();
        list_field(out, &mut sep, "env", &s.env);
        opt_field(out, &mut sep, "prompt", s.prompt.as_deref());
        opt_field(out, &mut sep, "resource", s.resource.as_deref());
        opt_field(out, &mut sep, "server", s.server.as_deref());
        opt_field(out, &mut sep, "tool", s.tool.as_deref());
        out.extend_from_slice(b"},\"ts\":\"");
        self.ts.write_canonical(out);
        out.extend_from_slice(b"\",\"v\":");
        push_int(out, ENVELOPE_VERSION as i64);
        out.push(b'}');
    }

    fn to_object(&self) -> Object {
        let mut o = Object::new();
        o.insert("actor".into(), actor_to(&self.actor));
        o.insert("body".into(), Value::Object(self.body.clone()));
        o.insert("correlation".into(), correlation_to(&self.correlation));
        o.insert("key".into(), self.key.to_string().into());
        o.insert("kind".into(), self.kind.as_str().into());
        o.insert("prev".into(), self.prev.to_hex().into());
        o.insert("seq".into(), self.seq.into());
        o.insert("subject".into(), subject_to(&self.subject));
        o.insert("ts".into(), self.ts.to_string().into());
        o.insert("v".into(), Value::Int(ENVELOPE_VERSION));
        o
    }

    /// [`Event::decode`] (in `reader.rs`, which tries its fast reader first)
    /// through `serde_json` and a [`Value`] tree: slower, and the one that
    /// names what is wrong.
    pub(crate) fn decode_general(bytes: &[u8]) -> Result<Event, String> {
        check_size(bytes.len())?;
        let value = Value::from_json_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
        let event = Event::from_value(value)?;
        if event.canonical_bytes() != bytes {
            return Err("envelope is valid JSON but not in canonical form".into());
        }
        Ok(event)
    }

    fn from_value(value: Value) -> Result<Event, String> {
        let mut f = Fields::new("", value)?;
        match f.take("v") {
            Some(Value::Int(ENVELOPE_VERSION)) => {}
            Some(Value::Int(v)) => {
                return Err(format!(
                    "unsupported envelope version {v} (this build reads {ENVELOPE_VERSION})"
                ));
            }
            Some(other) => return Err(format!("v: expected an integer, found {}", other.type_name())),
            None => return Err("missing field `v` (envelope version)".into()),
        }
        let seq = f.req_u64("seq")?;
        let ts = Timestamp::parse_canonical(&f.req_str("ts")?).map_err(|e| format!("ts: {e}"))?;
        let kind = EventKind::from_name(&f.req_str("kind")?);
        let prev = f.req_str("prev")?.parse::<Hash>().map_err(|e| format!("prev: {e}"))?;
        let key = f.req_str("key")?.parse::<KeyId>().map_err(|e| format!("key: {e}"))?;
        let actor = f.req_object("actor", actor_from)?;
        let subject = f.req_object("subject", subject_from)?;
        let correlation = f.req_object("correlation", correlation_from)?;
        let body = f.req_object("body", |f| Ok(f.take_rest()))?;
        f.finish()?;
        let event = Event {
            seq,
            ts,
            kind,
            actor,
            subject,
            correlation,
            body,
            prev,
            key,
        };
        event.check()?;
        Ok(event)
    }

    /// The envelope as plain JSON, for display and export.
    pub fn to_json(&self) -> serde_json::Value {
        Value::Object(self.to_object()).to_json()
    }
}

/// Writes `,` between object members.
#[derive(Default)]
struct Sep(bool);

impl Sep {
    fn key(&mut self, out: &mut Vec<u8>, key: &str) {
        if std::mem::replace(&mut self.0, true) {
            out.push(b',');
        }
        crate::canonical::write_string(key, out);
        out.push(b':');
    }
}

fn opt_field(out: &mut Vec<u8>, sep: &mut Sep, key: &str, v: Option<&str>) {
    if let Some(v) = v {
        sep.key(out, key);
        crate::canonical::write_string(v, out);
    }
}

fn list_field(out: &mut Vec<u8>, sep: &mut Sep, key: &str, v: &[String]) {
    if !v.is_empty() {
        sep.key(out, key);
        out.push(b'[');
        for (i, s) in v.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            crate::canonical::write_string(s, out);
        }
        out.push(b']');
    }
}

fn push_int(out: &mut Vec<u8>, n: impl itoa_like::Int) {
    n.push(out);
}

fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
}

mod itoa_like {
    /// Decimal formatting of integers without going through `fmt`.
    pub trait Int {
        fn push(self, out: &mut Vec<u8>);
    }

    impl Int for u64 {
        fn push(self, out: &mut Vec<u8>) {
            let mut buf = [0u8; 20];
            let mut i = buf.len();
            let mut n = self;
            loop {
                i -= 1;
                buf[i] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            out.extend_from_slice(&buf[i..]);
        }
    }

    impl Int for i64 {
        fn push(self, out: &mut Vec<u8>) {
            if self < 0 {
                out.push(b'-');
            }
            self.unsigned_abs().push(out);
        }
    }
}

fn actor_to(a: &Actor) -> Value {
    let mut o = Object::new();
    put_opt(&mut o, "principal", &a.principal);
    put_list(&mut o, "teams", &a.teams);
    put_opt(&mut o, "agent", &a.agent);
    put_opt(&mut o, "session", &a.session);
    Value::Object(o)
}

/// Reads `actor`: the types of its fields; their values are [`Actor::check`]'s.
fn actor_from(f: &mut Fields) -> Result<Actor, String> {
    Ok(Actor {
        principal: f.opt_string("principal")?,
        teams: f.string_list("teams")?,
        agent: f.opt_string("agent")?,
        session: f.opt_string("session")?,
    })
}

fn subject_to(s: &Subject) -> Value {
    let mut o = Object::new();
    put_opt(&mut o, "server", &s.server);
    put_opt(&mut o, "tool", &s.tool);
    put_opt(&mut o, "resource", &s.resource);
    put_opt(&mut o, "prompt", &s.prompt);
    put_list(&mut o, "env", &s.env);
    Value::Object(o)
}

/// Reads `subject`: the types of its fields; their values are [`Subject::check`]'s.
fn subject_from(f: &mut Fields) -> Result<Subject, String> {
    Ok(Subject {
        server: f.opt_string("server")?,
        tool: f.opt_string("tool")?,
        resource: f.opt_string("resource")?,
        prompt: f.opt_string("prompt")?,
        env: f.string_list("env")?,
    })
}

fn correlation_to(c: &Correlation) -> Value {
    let mut o = Object::new();
    match &c.request_id {
        Some(RequestId::Int(n)) => {
            o.insert("request_id".into(), (*n).into());
        }
        Some(RequestId::Str(s)) => {
            o.insert("request_id".into(), s.as_str().into());
        }
        None => {}
    }
    put_opt(&mut o, "trace_id", &c.trace_id);
    put_opt(&mut o, "span_id", &c.span_id);
    put_opt(&mut o, "call_id", &c.call_id);
    if let Some(seq) = c.answers {
        o.insert("answers".into(), seq.into());
    }
    Value::Object(o)
}

/// Reads `correlation`: the types of its fields; their values are [`Correlation::check`]'s.
fn correlation_from(f: &mut Fields) -> Result<Correlation, String> {
    let request_id = match f.take("request_id") {
        None => None,
        Some(Value::Int(n)) => {
            Some(RequestId::Int(i64::try_from(n).map_err(|_| {
                f.err("request_id", "integer out of the 64-bit signed range")
            })?))
        }
        Some(Value::String(s)) => Some(RequestId::Str(s)),
        Some(other) => {
            return Err(f.err(
                "request_id",
                &format!("expected a string or an integer, found {}", other.type_name()),
            ));
        }
    };
    let trace_id = f.opt_string("trace_id")?;
    let span_id = f.opt_string("span_id")?;
    let answers = f.opt_u64("answers")?;
    let call_id = f.opt_string("call_id")?;
    Ok(Correlation {
        request_id,
        trace_id,
        span_id,
        answers,
        call_id,
    })
}

fn put_opt(o: &mut Object, key: &str, v: &Option<String>) {
    if let Some(v) = v {
        o.insert(key.into(), v.as_str().into());
    }
}

fn put_list(o: &mut Object, key: &str, v: &[String]) {
    if !v.is_empty() {
        o.insert(key.into(), Value::Array(v.iter().map(|s| s.as_str().into()).collect()));
    }
}

/// Takes fields out of a JSON object one by one, so that whatever is left at
/// the end can be reported as unknown. Error messages carry the field path.
struct Fields {
    path: String,
    map: Object,
}

impl Fields {
    fn new(path: &str, value: Value) -> Result<Fields, String> {
        match value {
            Value::Object(map) => Ok(Fields {
                path: path.to_owned(),
                map,
            }),
            other => Err(format!(
                "{}expected an object, found {}",
                if path.is_empty() {
                    String::new()
                } else {
                    format!("{path}: ")
                },
                other.type_name()
            )),
        }
    }

    fn field_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn err(&self, key: &str, msg: &str) -> String {
        format!("{}: {msg}", self.field_path(key))
    }

    fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key)
    }

    /// An optional string, of any value.
    fn opt_string(&mut self, key: &str) -> Result<Option<String>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.err(key, &format!("expected a string, found {}", other.type_name()))),
        }
    }

    /// A required, non-empty string.
    fn req_str(&mut self, key: &str) -> Result<String, String> {
        match self.opt_string(key)? {
            None => Err(format!("missing field `{}`", self.field_path(key))),
            Some(s) if s.is_empty() => Err(self.err(key, "must not be empty")),
            Some(s) => Ok(s),
        }
    }

    fn opt_u64(&mut self, key: &str) -> Result<Option<u64>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Int(n)) => u64::try_from(n)
                .map(Some)
                .map_err(|_| self.err(key, "expected a non-negative 64-bit integer")),
            Some(other) => Err(self.err(key, &format!("expected an integer, found {}", other.type_name()))),
        }
    }

    fn req_u64(&mut self, key: &str) -> Result<u64, String> {
        self.opt_u64(key)?
            .ok_or_else(|| format!("missing field `{}`", self.field_path(key)))
    }

    /// An optional array of strings, of any value. An empty array is not
    /// how an empty list is written (it is left out), so it is refused.
    fn string_list(&mut self, key: &str) -> Result<Vec<String>, String> {
        match self.take(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s),
                        other => {
                            return Err(self.err(
                                &format!("{key}[{i}]"),
                                &format!("expected a string, found {}", other.type_name()),
                            ));
                        }
                    }
                }
                if out.is_empty() {
                    return Err(self.err(key, "must not be empty (omit the field instead)"));
                }
                Ok(out)
            }
            Some(other) => Err(self.err(
                key,
                &format!("expected an array of strings, found {}", other.type_name()),
            )),
        }
    }

    fn opt_object<T>(
        &mut self,
        key: &str,
        parse: impl FnOnce(&mut Fields) -> Result<T, String>,
    ) -> Result<Option<T>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => {
                let mut inner = Fields::new(&self.field_path(key), v)?;
                let out = parse(&mut inner)?;
                inner.finish()?;
                Ok(Some(out))
            }
        }
    }

    fn req_object<T>(&mut self, key: &str, parse: impl FnOnce(&mut Fields) -> Result<T, String>) -> Result<T, String> {
        self.opt_object(key, parse)?
            .ok_or_else(|| format!("missing field `{}`", self.field_path(key)))
    }

    /// Everything not yet taken (for free-form bodies).
    fn take_rest(&mut self) -> Object {
        std::mem::take(&mut self.map)
    }

    fn finish(self) -> Result<(), String> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(k) => Err(format!("unknown field `{}`", self.field_path(k))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Event {
        let draft = Draft::from_json(
            r#"{"kind":"tool_call.requested","actor":{"principal":"alice","teams":["sre"],"session":"s1"},
                "subject":{"server":"fs","tool":"write_file","env":["prod"]},
                "correlation":{"request_id":7,"trace_id":"0af7651916cd43dd8448eb211c80319c"},
                "body":{"arguments":"{\"path\":\"/tmp/x\"}","n":3}}"#,
        )
        .expect("valid draft");
        Event::from_draft(
            draft,
            5,
            Timestamp::from_nanos(1_795_000_000_000_000_001),
            Hash([7; 32]),
            KeyId([9; 16]),
        )
    }

    #[test]
    fn canonical_bytes_are_stable() {
        let e = sample();
        let text = String::from_utf8(e.canonical_bytes()).expect("utf8");
        assert_eq!(
            text,
            concat!(
                r#"{"actor":{"principal":"alice","session":"s1","teams":["sre"]},"#,
                r#""body":{"arguments":"{\"path\":\"/tmp/x\"}","n":3},"#,
                r#""correlation":{"request_id":7,"trace_id":"0af7651916cd43dd8448eb211c80319c"},"#,
                r#""key":"09090909090909090909090909090909","kind":"tool_call.requested","#,
                r#""prev":"0707070707070707070707070707070707070707070707070707070707070707","#,
                r#""seq":5,"subject":{"env":["prod"],"server":"fs","tool":"write_file"},"#,
                r#""ts":"2026-11-18T11:06:40.000000001Z","v":1}"#
            )
        );
        assert_eq!(Event::decode(text.as_bytes()), Ok(e));
    }

    #[test]
    fn canonical_bytes_match_the_generic_encoder() {
        let mut e = sample();
        let generic = |e: &Event| Value::Object(e.to_object()).to_canonical();
        assert_eq!(e.canonical_bytes(), generic(&e));
        e.actor = Actor {
            principal: None,
            teams: vec![],
            agent: Some("a\"b".into()),
            session: None,
        };
        e.subject = Subject {
            resource: Some("file:///x".into()),
            prompt: Some("p".into()),
            ..Subject::default()
        };
        e.correlation = Correlation {
            request_id: Some(RequestId::Int(-9)),
            span_id: Some("00f067aa0ba902b7".into()),
            answers: Some(u64::MAX),
            trace_id: None,
            call_id: Some("0123456789abcdef0123456789abcdef".into()),
        };
        e.seq = 0;
        assert_eq!(e.canonical_bytes(), generic(&e));
        e.correlation.request_id = Some(RequestId::Str("x\u{1}".into()));
        e.actor = Actor::default();
        e.subject = Subject::default();
        e.body = Object::new();
        assert_eq!(e.canonical_bytes(), generic(&e));
    }

    #[test]
    fn the_extension_namespace_is_x_dot_and_lowercase_segments() {
        for ok in ["x.note", "x.import.splunk", "x.a-b_c.9"] {
            assert!(EventKind::from_name(ok).is_extension(), "{ok}");
        }
        for no in [
            "x.",
            "x",
            "x..a",
            "x.Note",
            "x.a.",
            "y.note",
            "xx.note",
            "x.a b",
            "tool_call.requested",
        ] {
            assert!(!EventKind::from_name(no).is_extension(), "{no}");
        }
        let d = Draft::from_json(r#"{"kind":"x.note","body":{"text":"hi"}}"#).expect("extension kind");
        assert_eq!(d.kind, EventKind::Other("x.note".into()));
        let err = Draft::from_json(r#"{"kind":"x.Note"}"#).expect_err("not an extension");
        assert!(err.contains("extension kinds are `x.<name>`"), "{err}");
    }

    #[test]
    fn decode_rejects_non_canonical_and_unknown_versions() {
        let e = sample();
        let text = String::from_utf8(e.canonical_bytes()).expect("utf8");
        let spaced = text.replacen(",", ", ", 1);
        assert!(
            Event::decode(spaced.as_bytes())
                .expect_err("spaced")
                .contains("canonical")
        );
        let v2 = text.replace(r#""v":1"#, r#""v":2"#);
        assert!(
            Event::decode(v2.as_bytes())
                .expect_err("v2")
                .contains("unsupported envelope version 2")
        );
    }

    #[test]
    fn unknown_kinds_still_decode() {
        let mut e = sample();
        e.kind = EventKind::Other("future.kind".into());
        let bytes = e.canonical_bytes();
        assert_eq!(
            Event::decode(&bytes).expect("decodes").kind,
            EventKind::Other("future.kind".into())
        );
    }

    #[test]
    fn draft_errors_name_the_field() {
        let cases = [
            (r#"{"actor":{}}"#, "missing field `kind`"),
            (r#"{"kind":"nope"}"#, "unknown event kind `nope`"),
            (r#"{"kind":"ledger.genesis"}"#, "written only by the ledger"),
            (
                r#"{"kind":"grant.issued","actor":{"principal":5}}"#,
                "actor.principal: expected a string",
            ),
            (
                r#"{"kind":"grant.issued","actor":{"name":"x"}}"#,
                "unknown field `actor.name`",
            ),
            (r#"{"kind":"grant.issued","extra":1}"#, "unknown field `extra`"),
            (
                r#"{"kind":"grant.issued","subject":{"env":[1]}}"#,
                "subject.env[0]: expected a string",
            ),
            (
                r#"{"kind":"grant.issued","correlation":{"trace_id":"XYZ"}}"#,
                "correlation.trace_id: expected 32",
            ),
            (r#"{"kind":"grant.issued","body":{"x":1.5}}"#, "no floats"),
            (r#"{"kind":"grant.issued","body":[]}"#, "body: expected an object"),
            (r#"{"kind": "grant.issued""#, "EOF while parsing"),
            (
                r#"{"kind":"grant.issued","actor":{"principal":""}}"#,
                "actor.principal: must not be empty",
            ),
            (
                r#"{"kind":"grant.issued","subject":{"env":["prod",""]}}"#,
                "subject.env[1]: must not be empty",
            ),
            (
                r#"{"kind":"grant.issued","correlation":{"span_id":"00F067AA0BA902B7"}}"#,
                "correlation.span_id: expected 16 lowercase hex digits",
            ),
        ];
        for (input, want) in cases {
            let err = Draft::from_json(input).expect_err(input);
            assert!(err.contains(want), "{input}: got `{err}`, want `{want}`");
        }
    }
}
