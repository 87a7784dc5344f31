//! The events the gateway writes, and the one place it writes them.
//!
//! Body keys follow the OpenTelemetry MCP semantic conventions where they
//! exist (`mcp.method.name`, `mcp.session.id`, `mcp.protocol.version`,
//! `jsonrpc.request.id`, `gen_ai.tool.name`, `gen_ai.prompt.name`,
//! `mcp.resource.uri`, `error.type`), so an exporter maps them one to one.
//! `docs/GATEWAY.md` lists every body.

use std::sync::Arc;
use std::time::Duration;

use ledger::{Actor, Correlation, Draft, EventKind, Ledger, Object, Receipt, Subject, Value};

use super::findable::Findable;
use super::mcp::Id;
use super::safety::Report;
use crate::governance::Ruling;
use crate::governance::{Principal, to_ledger_value as to_value};
use crate::json::Json;

/// Where the gateway's events go. Every append waits until the event is
/// durable; an error means the event is not in the log and the caller must
/// not go ahead.
#[derive(Clone)]
pub struct Audit {
    ledger: Arc<Ledger>,
    limits: Limits,
}

/// How much of arguments and results is stored in events.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_argument_bytes: usize,
    pub result_excerpt_bytes: usize,
}

/// Who and where, shared by every event of one call.
#[derive(Clone, Debug)]
pub struct Scope {
    pub principal: Principal,
    pub agent: Option<String>,
    pub session_id: String,
    pub server: String,
    pub env: Vec<String>,
    pub protocol_version: Option<String>,
}

/// One audited request: what was asked, of what.
#[derive(Clone, Debug)]
pub struct CallInfo {
    pub method: String,
    /// The JSON-RPC id as its sender wrote it (the client's; for
    /// server-to-client requests, the upstream's).
    pub request_id: Id,
    pub tool: Option<String>,
    pub prompt: Option<String>,
    pub resource: Option<String>,
    /// Arguments (or params) exactly as sent.
    pub arguments: Option<Json>,
    /// A call's `_meta` (for the requests whose `arguments` are not their
    /// whole params): recorded too, since it is forwarded.
    pub meta: Option<Json>,
    /// `server_to_client` for sampling, elicitation and roots.
    pub direction: Direction,
}

/// What the request event keeps of a call's arguments and `_meta`:
/// redacted as the policy redacts output, with the keyed digests of what
/// was redacted (`findable`).
#[derive(Clone, Debug, Default)]
pub struct Stored {
    pub arguments: Option<Json>,
    pub meta: Option<Json>,
    pub arguments_findable: Option<Findable>,
    pub meta_findable: Option<Findable>,
}

impl CallInfo {
    /// A request of `method` with nothing named yet.
    pub fn new(method: &str, request_id: Id, direction: Direction) -> CallInfo {
        CallInfo {
            method: method.to_string(),
            request_id,
            tool: None,
            prompt: None,
            resource: None,
            arguments: None,
            meta: None,
            direction,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

/// How a forwarded request ended.
#[derive(Debug)]
pub enum Outcome<'a> {
    /// The peer answered with a result (which may still be a tool error):
    /// `json` as the ledger may keep it (redacted per policy), the size of
    /// the original, and whether the client got it truncated.
    Result {
        json: &'a Json,
        is_error: Option<bool>,
        original_bytes: usize,
        truncated: bool,
        findable: Option<&'a Findable>,
    },
    /// The result was withheld and kept for review under `id`.
    Quarantined { id: &'a str },
    /// The result was refused for its size.
    Oversize { bytes: u64, limit: u64 },
    /// The peer answered with a JSON-RPC error.
    Error {
        code: i32,
        message: &'a str,
        findable: Option<&'a Findable>,
    },
    /// No answer in time; the request was cancelled upstream.
    Timeout { after: Duration },
    /// The caller cancelled.
    Cancelled,
    /// The peer went away (crashed, closed, unreachable).
    Unavailable { message: &'a str },
}

impl Audit {
    pub fn new(ledger: Arc<Ledger>, limits: Limits) -> Audit {
        Audit { ledger, limits }
    }

    pub async fn append(&self, draft: Draft) -> ledger::Result<Receipt> {
        self.ledger.append(draft).await
    }

    pub fn session_opened(&self, scope: &Scope, body: Object) -> Draft {
        let mut draft = base(EventKind::SessionOpened, scope, None);
        draft.body.extend(body);
        draft
    }

    /// The request; `stored` is the arguments as the ledger may keep them
    /// (redacted per policy). Their size and digest are of the stored text,
    /// so a digest cannot be used to test guesses at a redacted value;
    /// `original_bytes` is the size of the arguments as sent.
    pub fn requested(&self, scope: &Scope, call: &CallInfo, stored: &Stored) -> Draft {
        let kind = if call.method == "tools/call" {
            EventKind::ToolCallRequested
        } else {
            EventKind::McpRequested
        };
        let mut draft = base(kind, scope, Some(call));
        if let Some(args) = &call.arguments {
            let kept = stored.arguments.as_ref().unwrap_or(args);
            let mut b = blob(&kept.to_text(), self.limits.max_argument_bytes);
            if let Value::Object(obj) = &mut b {
                obj.insert("original_bytes".into(), Value::Int(args.to_text().len() as i128));
                if kept != args {
                    obj.insert("redacted".into(), true.into());
                }
                stored.arguments_findable.iter().for_each(|f| f.insert_into(obj));
            }
            draft.body.insert("arguments".into(), b);
        }
        if let Some(meta) = stored.meta.as_ref().or(call.meta.as_ref()) {
            let mut b = blob(&meta.to_text(), self.limits.max_argument_bytes);
            if let (Value::Object(obj), Some(f)) = (&mut b, &stored.meta_findable) {
                f.insert_into(obj);
            }
            draft.body.insert("meta".into(), b);
        }
        if call.direction == Direction::ServerToClient {
            draft.body.insert("direction".into(), "server_to_client".into());
        }
        draft
    }

    pub fn decision(&self, scope: &Scope, call: &CallInfo, requested: &Receipt, ruling: &Ruling) -> Draft {
        let mut draft = base(EventKind::PolicyDecision, scope, Some(call));
        draft.correlation.answers = Some(requested.seq);
        let evaluation = ruling.evaluation.as_ref();
        let body = &mut draft.body;
        body.insert("decision".into(), ruling.verdict.to_string().into());
        body.insert("reason".into(), ruling.reason.clone().into());
        body.insert("gate".into(), ruling.gate.as_str().into());
        body.insert("rule".into(), opt(evaluation.and_then(|e| e.rule.clone())));
        body.insert("policy_hash".into(), opt(ruling.policy_hash.clone()));
        body.insert("grant_id".into(), opt(ruling.grant.clone()));
        body.insert("action".into(), opt(ruling.action.map(|a| a.as_str().to_string())));
        if let Some(e) = evaluation {
            if let Some(a) = &e.approval {
                body.insert(
                    "approval".into(),
                    to_value(&serde_json::to_value(a).unwrap_or_default()),
                );
            }
            if let Some(c) = &e.constraints {
                body.insert(
                    "constraints".into(),
                    to_value(&serde_json::to_value(c).unwrap_or_default()),
                );
            }
            body.insert(
                "output".into(),
                to_value(&serde_json::to_value(e.output).unwrap_or_default()),
            );
        }
        draft
    }

    /// What output safety found in a result (never the data itself), and
    /// whether the result was redacted or quarantined.
    pub fn output(
        &self,
        scope: &Scope,
        call: &CallInfo,
        requested: Option<&Receipt>,
        report: &Report,
        quarantine_id: Option<&str>,
    ) -> Draft {
        let kind = if quarantine_id.is_some() {
            EventKind::OutputQuarantined
        } else {
            EventKind::OutputRedacted
        };
        // Findings in a message that answers no recorded request (a
        // notification, a listing) name its method only.
        let mut draft = base(kind, scope, requested.map(|_| call));
        if requested.is_none() {
            draft.body.insert("mcp.method.name".into(), call.method.clone().into());
        }
        draft.correlation.answers = requested.map(|r| r.seq);
        draft.body.insert(
            "findings".into(),
            to_value(&serde_json::to_value(report).unwrap_or_default()),
        );
        if let Some(id) = quarantine_id {
            draft.body.insert("quarantine_id".into(), id.to_string().into());
        }
        draft
    }

    pub fn outcome(
        &self,
        scope: &Scope,
        call: &CallInfo,
        requested: &Receipt,
        elapsed: Duration,
        outcome: &Outcome<'_>,
        ruling: Option<&Ruling>,
    ) -> Draft {
        let ok = matches!(outcome, Outcome::Result { .. } | Outcome::Quarantined { .. });
        let kind = if ok {
            EventKind::ExecutionCompleted
        } else {
            EventKind::ExecutionFailed
        };
        let mut draft = base(kind, scope, Some(call));
        draft.correlation.answers = Some(requested.seq);
        let body = &mut draft.body;
        body.insert(
            "duration_ns".into(),
            Value::Int(elapsed.as_nanos().min(i128::MAX as u128) as i128),
        );
        match outcome {
            Outcome::Result {
                json,
                is_error,
                original_bytes,
                truncated,
                findable,
            } => {
                let tool_error = is_error.unwrap_or(false);
                body.insert("outcome".into(), if tool_error { "tool_error" } else { "ok" }.into());
                if let Some(flag) = is_error {
                    body.insert("is_error".into(), (*flag).into());
                }
                let mut result = blob(&json.to_text(), self.limits.result_excerpt_bytes);
                if let Value::Object(obj) = &mut result {
                    obj.insert("original_bytes".into(), Value::Int(*original_bytes as i128));
                    if *truncated {
                        obj.insert("delivered_truncated".into(), true.into());
                    }
                    findable.iter().for_each(|f| f.insert_into(obj));
                }
                body.insert("result".into(), result);
                if let Some(c) = ruling.and_then(|r| r.evaluation.as_ref()).and_then(|e| e.constraints) {
                    body.insert(
                        "constraints".into(),
                        to_value(&serde_json::to_value(c).unwrap_or_default()),
                    );
                }
            }
            Outcome::Quarantined { id } => {
                body.insert("outcome".into(), "quarantined".into());
                body.insert("quarantine_id".into(), id.to_string().into());
            }
            Outcome::Oversize { bytes, limit } => {
                body.insert("outcome".into(), "refused_oversize".into());
                body.insert("error.type".into(), "max_result_bytes".into());
                let message = format!("result of {bytes} bytes exceeds max_result_bytes {limit}");
                body.insert("error".into(), error_obj(None, &message));
            }
            Outcome::Error {
                code,
                message,
                findable,
            } => {
                body.insert("outcome".into(), "error".into());
                body.insert("error.type".into(), "jsonrpc_error".into());
                let mut error = error_obj(Some(*code), message);
                if let (Value::Object(obj), Some(f)) = (&mut error, findable) {
                    f.insert_into(obj);
                }
                body.insert("error".into(), error);
            }
            Outcome::Timeout { after } => {
                body.insert("outcome".into(), "timeout".into());
                body.insert("error.type".into(), "timeout".into());
                let message = format!("no answer within {} ms; request cancelled", after.as_millis());
                body.insert("error".into(), error_obj(None, &message));
            }
            Outcome::Cancelled => {
                body.insert("outcome".into(), "cancelled".into());
                body.insert("error.type".into(), "cancelled".into());
            }
            Outcome::Unavailable { message } => {
                body.insert("outcome".into(), "unavailable".into());
                body.insert("error.type".into(), "upstream_unavailable".into());
                body.insert("error".into(), error_obj(None, message));
            }
        }
        draft
    }

    /// A listing's result: the digest of the set (in the order listed), its
    /// size, and the names.
    pub fn listing(&self, scope: &Scope, method: &str, request_id: &Id, items: &Listing) -> Draft {
        let call = CallInfo::new(method, request_id.clone(), Direction::ClientToServer);
        let mut draft = base(EventKind::ListingObserved, scope, Some(&call));
        let body = &mut draft.body;
        body.insert("digest".into(), digest(items.items.to_text().as_bytes()).into());
        body.insert("count".into(), Value::Int(items.names.len() as i128));
        body.insert(
            "names".into(),
            Value::Array(items.names.iter().cloned().map(Value::String).collect()),
        );
        body.insert(
            "hidden".into(),
            Value::Array(items.hidden.iter().cloned().map(Value::String).collect()),
        );
        if let Some(cursor) = &items.cursor {
            body.insert("cursor".into(), cursor.clone().into());
        }
        if let Some(next) = &items.next_cursor {
            body.insert("next_cursor".into(), next.clone().into());
        }
        if !items.changed.is_empty() || !items.added.is_empty() {
            let map = |m: &std::collections::BTreeMap<String, String>| {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
            };
            let mut differs = Object::new();
            differs.insert("changed".into(), map(&items.changed));
            differs.insert("added".into(), map(&items.added));
            body.insert("differs_from_pins".into(), Value::Object(differs));
        }
        draft
    }
}

/// A message the gateway did not relay.
#[derive(Debug)]
pub struct Refused<'a> {
    /// `client_to_server` or `server_to_client`.
    pub direction: Direction,
    pub method: Option<&'a str>,
    pub request_id: Option<&'a Id>,
    /// The JSON-RPC error code the refusal carries.
    pub code: i64,
    pub reason: &'a str,
    /// Size of the message as received.
    pub bytes: usize,
}

/// Refused authentications or requests for unknown or unusable servers,
/// counted over an interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessCount {
    /// The peer's IP address.
    pub source: String,
    /// The authenticated principal, when the refusal came after
    /// authentication (an unknown server).
    pub principal: Option<String>,
    /// `sha256:` of the first 16 hex digits of the presented token's
    /// SHA-256: enough to tell tokens apart, useless to replay one.
    pub token: Option<String>,
    pub reason: String,
    pub server: Option<String>,
    pub count: u64,
    pub first: ledger::Timestamp,
    pub last: ledger::Timestamp,
}

/// A page of a listing, as the upstream returned it.
pub struct Listing {
    pub items: Json,
    pub names: Vec<String>,
    pub cursor: Option<String>,
    pub next_cursor: Option<String>,
    /// Names not passed to the client (drifted, unpinned, or not granted).
    pub hidden: Vec<String>,
    /// Tools listed with a definition other than the pinned one (name →
    /// hash as listed).
    pub changed: std::collections::BTreeMap<String, String>,
    /// Tools listed that are not pinned.
    pub added: std::collections::BTreeMap<String, String>,
}

impl Audit {
    pub fn refused(&self, scope: &Scope, refused: &Refused<'_>) -> Draft {
        let mut draft = base(EventKind::MessageRefused, scope, None);
        if let Some(id) = refused.request_id {
            draft.correlation.request_id = Some(request_id(id));
            draft.body.insert("jsonrpc.request.id".into(), id.to_string().into());
        }
        let body = &mut draft.body;
        body.insert("direction".into(), refused.direction.as_str().into());
        if let Some(method) = refused.method {
            body.insert("mcp.method.name".into(), method.to_string().into());
        }
        body.insert("error.type".into(), "refused".into());
        body.insert("error".into(), error_obj(Some(refused.code as i32), refused.reason));
        body.insert("bytes".into(), Value::Int(refused.bytes as i128));
        draft
    }

    pub fn access_refused(&self, count: &AccessCount, interval: Duration) -> Draft {
        let mut draft = Draft::new(EventKind::AccessRefused);
        draft.actor.principal = Some(count.principal.clone().unwrap_or_else(|| "sealgate:gateway".into()));
        draft.subject.server = count.server.clone();
        let body = &mut draft.body;
        body.insert("source.address".into(), count.source.clone().into());
        if let Some(p) = &count.principal {
            body.insert("principal".into(), p.clone().into());
        }
        if let Some(t) = &count.token {
            body.insert("token".into(), t.clone().into());
        }
        body.insert("reason".into(), count.reason.clone().into());
        body.insert("count".into(), Value::Int(i128::from(count.count)));
        body.insert("first".into(), count.first.to_string().into());
        body.insert("last".into(), count.last.to_string().into());
        body.insert("interval_sec".into(), Value::Int(i128::from(interval.as_secs())));
        draft
    }
}

impl Audit {
    /// The terminal event of a recorded call that did not run: why, the
    /// gate or step that refused it, and the error its caller got.
    pub fn call_refused(
        &self,
        scope: &Scope,
        call: &CallInfo,
        requested: &Receipt,
        step: &str,
        code: i64,
        reason: &str,
    ) -> Draft {
        let mut draft = base(EventKind::CallRefused, scope, Some(call));
        draft.correlation.answers = Some(requested.seq);
        let body = &mut draft.body;
        body.insert("outcome".into(), "refused".into());
        body.insert("refused_by".into(), step.to_string().into());
        body.insert("reason".into(), reason.to_string().into());
        body.insert("error".into(), error_obj(Some(code as i32), reason));
        draft
    }
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::ClientToServer => "client_to_server",
            Direction::ServerToClient => "server_to_client",
        }
    }
}

fn base(kind: EventKind, scope: &Scope, call: Option<&CallInfo>) -> Draft {
    let mut draft = Draft::new(kind);
    draft.actor = Actor {
        principal: Some(scope.principal.name.clone()),
        teams: scope.principal.teams.clone(),
        agent: scope.agent.clone(),
        session: Some(scope.session_id.clone()),
    };
    draft.subject = Subject {
        server: Some(scope.server.clone()),
        tool: call.and_then(|c| c.tool.clone()),
        resource: call.and_then(|c| c.resource.clone()),
        prompt: call.and_then(|c| c.prompt.clone()),
        env: scope.env.clone(),
    };
    let body = &mut draft.body;
    body.insert("mcp.session.id".into(), scope.session_id.clone().into());
    body.insert("auth.method".into(), scope.principal.method.as_str().into());
    if let Some(v) = &scope.protocol_version {
        body.insert("mcp.protocol.version".into(), v.clone().into());
    }
    if let Some(call) = call {
        draft.correlation = Correlation {
            request_id: Some(request_id(&call.request_id)),
            ..Correlation::default()
        };
        body.insert("mcp.method.name".into(), call.method.clone().into());
        body.insert("jsonrpc.request.id".into(), call.request_id.to_string().into());
        if let Some(tool) = &call.tool {
            body.insert("gen_ai.tool.name".into(), tool.clone().into());
            body.insert("gen_ai.operation.name".into(), "execute_tool".into());
        }
        if let Some(prompt) = &call.prompt {
            body.insert("gen_ai.prompt.name".into(), prompt.clone().into());
        }
        if let Some(uri) = &call.resource {
            body.insert("mcp.resource.uri".into(), uri.clone().into());
        }
    }
    draft
}

/// An integer id that fits `i64` is recorded as one; a larger one as its
/// text.
pub fn request_id(id: &Id) -> ledger::RequestId {
    match id {
        Id::Int(text) => text
            .parse()
            .map_or_else(|_| ledger::RequestId::Str(text.to_string()), ledger::RequestId::Int),
        Id::Str(s) => ledger::RequestId::Str(s.clone()),
    }
}

/// `blake3:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("blake3:{}", blake3::hash(bytes).to_hex())
}

/// A JSON text stored as it is (so numbers of any size and floats keep
/// their written form), with size and digest of the whole and at most
/// `limit` bytes of it.
fn blob(text: &str, limit: usize) -> Value {
    let mut obj = Object::new();
    obj.insert("bytes".into(), Value::Int(text.len() as i128));
    obj.insert("digest".into(), digest(text.as_bytes()).into());
    let truncated = text.len() > limit;
    let mut cut = limit.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    obj.insert("json".into(), text[..cut].to_string().into());
    obj.insert("truncated".into(), truncated.into());
    Value::Object(obj)
}

fn error_obj(code: Option<i32>, message: &str) -> Value {
    let mut obj = Object::new();
    if let Some(code) = code {
        obj.insert("code".into(), Value::Int(code.into()));
    }
    obj.insert("message".into(), message.to_string().into());
    Value::Object(obj)
}

fn opt(v: Option<String>) -> Value {
    v.map(Value::String).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_keep_whole_digest_and_cut_on_char_boundaries() {
        let text = r#"{"n":1.5,"text":"ééééé"}"#.to_string();
        let Value::Object(obj) = blob(&text, 12) else {
            panic!("object")
        };
        assert_eq!(obj["bytes"], Value::Int(text.len() as i128));
        assert_eq!(obj["digest"], Value::String(digest(text.as_bytes())));
        assert_eq!(obj["truncated"], Value::Bool(true));
        let Value::String(cut) = &obj["json"] else {
            panic!("string")
        };
        assert!(cut.len() <= 12 && text.starts_with(cut.as_str()));
        let Value::Object(whole) = blob(&text, 1 << 20) else {
            panic!("object")
        };
        assert_eq!(whole["json"], Value::String(text));
        assert_eq!(whole["truncated"], Value::Bool(false));
    }

    #[test]
    fn floats_become_text() {
        assert_eq!(to_value(&serde_json::json!(1.5)), Value::String("1.5".into()));
        assert_eq!(to_value(&serde_json::json!(-3)), Value::Int(-3));
    }
}
