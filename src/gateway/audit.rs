//! The events the gateway writes, and the one place it writes them.
//!
//! Body keys follow the OpenTelemetry MCP semantic conventions where they
//! exist (`mcp.method.name`, `mcp.session.id`, `mcp.protocol.version`,
//! `jsonrpc.request.id`, `gen_ai.tool.name`, `gen_ai.prompt.name`,
//! `mcp.resource.uri`, `error.type`), so an exporter maps them one to one.
//! Each body is the event catalogue's type for its kind (the
//! `sealgate-events` crate, `docs/EVENTS.md`); a body that cannot be built
//! is an error, and the call it belongs to fails closed.

use std::sync::Arc;
use std::time::Duration;

use events::{Blob, CallFields, ErrorInfo, ErrorType, ReasonCode, RefusedBy};
use ledger::{Actor, Correlation, Draft, EventKind, Ledger, Receipt, Subject};

use super::findable::Findable;
use super::mcp::Id;
use super::safety::Report;
use crate::governance::Principal;
use crate::governance::Ruling;
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
    /// Unique in the ledger: every event of the call carries it as
    /// `correlation.call_id`.
    pub call_id: String,
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
            call_id: uuid::Uuid::new_v4().simple().to_string(),
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
    /// The caller cancelled, or (with the reason) the gateway withdrew the
    /// request when the session ended.
    Cancelled { reason: Option<&'a str> },
    /// The peer went away (crashed, closed, unreachable).
    Unavailable { message: &'a str },
}

impl Audit {
    pub fn new(ledger: Arc<Ledger>, limits: Limits) -> Audit {
        Audit { ledger, limits }
    }

    /// Appends `draft` and waits until it is durable. A draft that could
    /// not be built is refused here, as a ledger that cannot record is.
    pub async fn append(&self, draft: ledger::Result<Draft>) -> ledger::Result<Receipt> {
        let draft = draft?;
        let started = std::time::Instant::now();
        let receipt = self.ledger.append(draft).await;
        crate::metrics::APPEND_LATENCY.record(started.elapsed());
        receipt
    }

    /// Appends a call's request and the decision on it (built by
    /// [`Audit::requested`] and [`Audit::decision`]) as one unit, durable
    /// in one sync, the decision answering the request; the request's
    /// receipt. Neither is written if either cannot be built. The decision
    /// needs nothing from the written request, so the call waits for one
    /// sync here instead of two.
    pub async fn append_decided(
        &self,
        requested: ledger::Result<Draft>,
        decision: ledger::Result<Draft>,
    ) -> ledger::Result<Receipt> {
        let drafts = vec![requested?, decision?];
        let started = std::time::Instant::now();
        let appended = self.ledger.append_linked(drafts, vec![(1, 0)]).await;
        crate::metrics::APPEND_LATENCY.record(started.elapsed());
        let mut receipts = appended?;
        match (receipts.len(), receipts.drain(..).next()) {
            (2, Some(requested)) => Ok(requested),
            (n, _) => Err(ledger::Error::InvalidRequest(format!(
                "a request and its decision were appended but {n} receipts came back"
            ))),
        }
    }

    /// The `initialize` call's terminal event, when the session was let in.
    pub fn session_opened(
        &self,
        scope: &Scope,
        call: &CallInfo,
        body: &events::SessionOpened,
    ) -> ledger::Result<Draft> {
        base(scope, Some(call), body)
    }

    /// A session's end (`session.closed`): `scope` is the session's.
    pub fn session_closed(&self, scope: &Scope, body: &events::SessionClosed) -> ledger::Result<Draft> {
        base(scope, None, body)
    }

    /// The fields every event of `scope` (and `call`) carries.
    pub fn fields(scope: &Scope, call: Option<&CallInfo>) -> CallFields {
        CallFields {
            session_id: scope.session_id.clone(),
            auth_method: scope.principal.method.to_event(),
            protocol_version: scope.protocol_version.clone(),
            method: call.map(|c| c.method.clone()),
            tool: call.and_then(|c| c.tool.clone()),
            operation: call.and_then(|c| c.tool.as_ref()).map(|_| "execute_tool".to_string()),
            prompt: call.and_then(|c| c.prompt.clone()),
            resource_uri: call.and_then(|c| c.resource.clone()),
        }
    }

    /// The request; `stored` is the arguments as the ledger may keep them
    /// (redacted per policy). Their size and digest are of the stored text,
    /// so a digest cannot be used to test guesses at a redacted value;
    /// `original_bytes` is the size of the arguments as sent.
    pub fn requested(&self, scope: &Scope, call: &CallInfo, stored: &Stored) -> ledger::Result<Draft> {
        let arguments = call.arguments.as_ref().map(|args| {
            let kept = stored.arguments.as_ref().unwrap_or(args);
            findable(
                Blob {
                    original_bytes: Some(args.to_text().len() as u64),
                    redacted: kept != args,
                    ..blob(&kept.to_text(), self.limits.max_argument_bytes)
                },
                stored.arguments_findable.as_ref(),
            )
        });
        let meta = stored.meta.as_ref().or(call.meta.as_ref()).map(|meta| {
            findable(
                blob(&meta.to_text(), self.limits.max_argument_bytes),
                stored.meta_findable.as_ref(),
            )
        });
        let mut draft = base(
            scope,
            Some(call),
            &events::Requested {
                call: Audit::fields(scope, Some(call)),
                arguments,
                meta,
                direction: (call.direction == Direction::ServerToClient).then_some(events::Direction::ServerToClient),
            },
        )?;
        if call.method != "tools/call" {
            draft.kind = EventKind::McpRequested;
        }
        Ok(draft)
    }

    /// The decision on a call. It answers the call's request: `requested`
    /// if that is already written, else the request it is appended with
    /// by [`Audit::append_decided`]. `took`: the gateway's time to decide.
    pub fn decision(
        &self,
        scope: &Scope,
        call: &CallInfo,
        ruling: &Ruling,
        requested: Option<&Receipt>,
        took: Duration,
    ) -> ledger::Result<Draft> {
        let evaluation = ruling.evaluation.as_ref();
        let mut draft = base(
            scope,
            Some(call),
            &events::Decision {
                call: Audit::fields(scope, Some(call)),
                decision: ruling.verdict.to_event(),
                gate: ruling.gate,
                reason_code: Some(ruling.code),
                reason: ruling.reason.clone(),
                rule: evaluation.and_then(|e| e.rule.clone()),
                policy_hash: ruling.policy_hash.clone(),
                grant_id: ruling.grant.clone(),
                action: ruling.action.map(|a| a.to_event()),
                server_status: ruling.server_status.map(|s| s.to_event()),
                pin: ruling.pin.clone(),
                listed: ruling.listed.clone(),
                approval: evaluation.and_then(|e| e.approval.as_ref()).map(|a| a.to_event()),
                constraints: evaluation.and_then(|e| e.constraints.as_ref()).map(|c| c.to_event()),
                output: evaluation.map(|e| e.output.to_event()),
                decision_ns: Some(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX)),
                limit: ruling.limit.clone(),
                quota: ruling.quota.clone(),
                refused_host: ruling.refused_host.clone(),
                suspension_id: ruling.suspension_id.clone(),
            },
        )?;
        draft.correlation.answers = requested.map(|r| r.seq);
        Ok(draft)
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
    ) -> ledger::Result<Draft> {
        // Findings in a message that answers no recorded request (a
        // notification, a listing) name its method only.
        let joined = requested.map(|_| call);
        let mut fields = Audit::fields(scope, joined);
        if requested.is_none() {
            fields.method = Some(call.method.clone());
        }
        let mut draft = base(
            scope,
            joined,
            &events::OutputFound {
                call: fields,
                findings: report.to_event(),
                quarantine_id: quarantine_id.map(str::to_string),
            },
        )?;
        if quarantine_id.is_some() {
            draft.kind = EventKind::OutputQuarantined;
        }
        draft.correlation.answers = requested.map(|r| r.seq);
        Ok(draft)
    }

    pub fn outcome(
        &self,
        scope: &Scope,
        call: &CallInfo,
        requested: &Receipt,
        elapsed: Duration,
        outcome: &Outcome<'_>,
        ruling: Option<&Ruling>,
    ) -> ledger::Result<Draft> {
        let mut body = events::Executed {
            call: Audit::fields(scope, Some(call)),
            outcome: events::Outcome::Ok,
            duration_ns: u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            is_error: None,
            result: None,
            constraints: None,
            quarantine_id: None,
            error: None,
            error_type: None,
        };
        let failed = |body: &mut events::Executed, outcome, error_type, code: Option<i64>, message: Option<String>| {
            body.outcome = outcome;
            body.error_type = Some(error_type);
            body.error = message.map(|message| ErrorInfo {
                code,
                message,
                findable: None,
                findable_truncated: false,
            });
        };
        match outcome {
            Outcome::Result {
                json,
                is_error,
                original_bytes,
                truncated,
                findable: findable_digests,
            } => {
                if is_error.unwrap_or(false) {
                    body.outcome = events::Outcome::ToolError;
                }
                body.is_error = *is_error;
                body.result = Some(findable(
                    Blob {
                        original_bytes: Some(*original_bytes as u64),
                        delivered_truncated: *truncated,
                        ..blob(&json.to_text(), self.limits.result_excerpt_bytes)
                    },
                    *findable_digests,
                ));
                body.constraints = ruling
                    .and_then(|r| r.evaluation.as_ref())
                    .and_then(|e| e.constraints.as_ref())
                    .map(|c| c.to_event());
            }
            Outcome::Quarantined { id } => {
                body.outcome = events::Outcome::Quarantined;
                body.quarantine_id = Some(id.to_string());
            }
            Outcome::Oversize { bytes, limit } => failed(
                &mut body,
                events::Outcome::RefusedOversize,
                ErrorType::MaxResultBytes,
                None,
                Some(format!("result of {bytes} bytes exceeds max_result_bytes {limit}")),
            ),
            Outcome::Error {
                code,
                message,
                findable: digests,
            } => {
                failed(
                    &mut body,
                    events::Outcome::Error,
                    ErrorType::JsonrpcError,
                    Some(i64::from(*code)),
                    Some(message.to_string()),
                );
                if let (Some(error), Some(f)) = (&mut body.error, digests) {
                    error.findable = Some(f.digests.clone());
                    error.findable_truncated = f.truncated;
                }
            }
            Outcome::Timeout { after } => failed(
                &mut body,
                events::Outcome::Timeout,
                ErrorType::Timeout,
                None,
                Some(format!("no answer within {} ms; request cancelled", after.as_millis())),
            ),
            Outcome::Cancelled { reason } => failed(
                &mut body,
                events::Outcome::Cancelled,
                ErrorType::Cancelled,
                None,
                reason.map(str::to_string),
            ),
            Outcome::Unavailable { message } => failed(
                &mut body,
                events::Outcome::Unavailable,
                ErrorType::UpstreamUnavailable,
                None,
                Some(message.to_string()),
            ),
        }
        let completed = matches!(
            body.outcome,
            events::Outcome::Ok | events::Outcome::ToolError | events::Outcome::Quarantined
        );
        let mut draft = base(scope, Some(call), &body)?;
        if !completed {
            draft.kind = EventKind::ExecutionFailed;
        }
        draft.correlation.answers = Some(requested.seq);
        Ok(draft)
    }

    /// A listing's result: the digest of the set (in the order listed), its
    /// size, and the names.
    pub fn listing(&self, scope: &Scope, method: &str, request_id: &Id, items: &Listing) -> ledger::Result<Draft> {
        let call = CallInfo::new(method, request_id.clone(), Direction::ClientToServer);
        let differs = !items.changed.is_empty() || !items.added.is_empty();
        base(
            scope,
            Some(&call),
            &events::ListingObserved {
                call: Audit::fields(scope, Some(&call)),
                digest: digest(items.items.to_text().as_bytes()),
                count: items.names.len() as u64,
                names: items.names.clone(),
                hidden: items.hidden.clone(),
                cursor: items.cursor.clone(),
                next_cursor: items.next_cursor.clone(),
                differs_from_pins: differs.then(|| events::PinDiff {
                    changed: items.changed.clone(),
                    added: items.added.clone(),
                }),
            },
        )
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
    pub reason: events::AccessReason,
    pub server: Option<String>,
    /// Counted with others past the gateway's cap on distinct keys per
    /// interval (token, server and principal dropped).
    pub aggregated: bool,
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
    pub fn refused(&self, scope: &Scope, refused: &Refused<'_>) -> ledger::Result<Draft> {
        let mut fields = Audit::fields(scope, None);
        fields.method = refused.method.map(str::to_string);
        let mut draft = base(
            scope,
            None,
            &events::MessageRefused {
                call: fields,
                direction: refused.direction.to_event(),
                error: ErrorInfo {
                    code: Some(refused.code),
                    message: refused.reason.to_string(),
                    ..ErrorInfo::default()
                },
                error_type: ErrorType::Refused,
                bytes: refused.bytes as u64,
            },
        )?;
        draft.correlation.request_id = refused.request_id.map(request_id);
        Ok(draft)
    }

    pub fn access_refused(&self, count: &AccessCount, interval: Duration) -> ledger::Result<Draft> {
        let body = events::AccessRefused {
            source_address: count.source.clone(),
            principal: count.principal.clone(),
            token: count.token.clone(),
            reason: count.reason,
            count: count.count,
            first: count.first.to_string(),
            last: count.last.to_string(),
            interval_sec: interval.as_secs(),
            aggregated: count.aggregated,
        };
        let mut draft = Draft::new(EventKind::AccessRefused);
        draft.actor.principal = Some(count.principal.clone().unwrap_or_else(|| "sealgate:gateway".into()));
        draft.subject.server = count.server.clone();
        draft.body = encode(&body)?;
        Ok(draft)
    }

    /// The terminal event of a recorded call that did not run: why, the
    /// gate or step that refused it, and the error its caller got.
    pub fn call_refused(
        &self,
        scope: &Scope,
        call: &CallInfo,
        requested: &Receipt,
        refusal: &Refusal,
    ) -> ledger::Result<Draft> {
        let mut draft = base(
            scope,
            Some(call),
            &events::CallRefused {
                call: Audit::fields(scope, Some(call)),
                outcome: events::RefusedOutcome::Refused,
                refused_by: refusal.by,
                reason_code: Some(refusal.code),
                reason: refusal.message.clone(),
                error: ErrorInfo {
                    code: Some(refusal.rpc_code),
                    message: refusal.message.clone(),
                    ..ErrorInfo::default()
                },
            },
        )?;
        draft.correlation.answers = Some(requested.seq);
        Ok(draft)
    }
}

/// Why a recorded call did not run: the step, its code, and what the caller
/// was answered.
#[derive(Clone, Debug)]
pub struct Refusal {
    pub by: RefusedBy,
    pub code: ReasonCode,
    pub rpc_code: i64,
    pub message: String,
}

impl Direction {
    pub fn to_event(self) -> events::Direction {
        match self {
            Direction::ClientToServer => events::Direction::ClientToServer,
            Direction::ServerToClient => events::Direction::ServerToClient,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::ClientToServer => "client_to_server",
            Direction::ServerToClient => "server_to_client",
        }
    }
}

/// The ledger body of `body`; a body that cannot be built is refused.
fn encode<B: events::Body>(body: &B) -> ledger::Result<ledger::Object> {
    events::encode(body).map_err(|e| ledger::Error::InvalidEvent(e.to_string()))
}

/// An event of `body`'s (first) kind for `scope` and `call`: the envelope
/// every gateway event shares (actor, subject, request id, call id).
fn base<B: events::Body>(scope: &Scope, call: Option<&CallInfo>, body: &B) -> ledger::Result<Draft> {
    let mut draft = Draft::new(B::kind());
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
    if let Some(call) = call {
        draft.correlation = Correlation {
            request_id: Some(request_id(&call.request_id)),
            call_id: Some(call.call_id.clone()),
            ..Correlation::default()
        };
    }
    draft.body = encode(body)?;
    Ok(draft)
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

/// `blob` with the keyed digests of what was redacted from it, if any.
fn findable(mut blob: Blob, digests: Option<&Findable>) -> Blob {
    if let Some(f) = digests {
        blob.findable = Some(f.digests.clone());
        blob.findable_truncated = f.truncated;
    }
    blob
}

/// A JSON text stored as it is (so numbers of any size and floats keep
/// their written form), with size and digest of the whole and at most
/// `limit` bytes of it.
fn blob(text: &str, limit: usize) -> Blob {
    let mut cut = limit.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    Blob {
        json: text[..cut].to_string(),
        bytes: text.len() as u64,
        digest: digest(text.as_bytes()),
        truncated: text.len() > limit,
        original_bytes: None,
        redacted: false,
        delivered_truncated: false,
        findable: None,
        findable_truncated: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_keep_whole_digest_and_cut_on_char_boundaries() {
        let text = r#"{"n":1.5,"text":"ééééé"}"#.to_string();
        let cut = blob(&text, 12);
        assert_eq!(cut.bytes, text.len() as u64);
        assert_eq!(cut.digest, digest(text.as_bytes()));
        assert!(cut.truncated);
        assert!(cut.json.len() <= 12 && text.starts_with(cut.json.as_str()));
        let whole = blob(&text, 1 << 20);
        assert_eq!(whole.json, text);
        assert!(!whole.truncated);
    }
}
