//! What the gateway writes: a session's and each call's events, refused
//! messages and refused access.

use std::collections::BTreeMap;

use ledger::EventKind;
use serde::{Deserialize, Serialize};

use crate::{Body, is_false};

/// An open JSON object kept as the peer sent it (a client's `clientInfo`,
/// an upstream's `serverInfo`), floats as their text.
pub type OpenObject = serde_json::Map<String, serde_json::Value>;

/// The body fields every event of a session or call has, named by the
/// OpenTelemetry MCP and GenAI conventions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallFields {
    /// The session id: the `Mcp-Session-Id` the client holds.
    #[serde(rename = "mcp.session.id")]
    pub session_id: String,
    #[serde(rename = "auth.method")]
    pub auth_method: AuthMethod,
    /// The negotiated MCP version (absent on an `initialize`'s own events).
    #[serde(rename = "mcp.protocol.version", default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    /// The JSON-RPC method of the call or message.
    #[serde(rename = "mcp.method.name", default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(rename = "gen_ai.tool.name", default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// `execute_tool` on tool calls.
    #[serde(rename = "gen_ai.operation.name", default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(rename = "gen_ai.prompt.name", default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(rename = "mcp.resource.uri", default, skip_serializing_if = "Option::is_none")]
    pub resource_uri: Option<String>,
}

/// How the caller authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// A static bearer token from the tokens file.
    Token,
    /// A JWT from a configured issuer.
    Jwt,
    /// `sealgate stdio`: the operating-system user that started it.
    Stdio,
    /// No authentication configured (loopback development only).
    Anonymous,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Http,
    Stdio,
}

/// A JSON text the gateway relayed (arguments, params, `_meta`, a result),
/// kept exactly as written (numbers of any size and floats keep their
/// form), possibly cut.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    /// At most the configured number of bytes of the text as the ledger
    /// keeps it (redacted per the policy), cut on a character boundary.
    pub json: String,
    /// Size of the text as kept, before the cut.
    pub bytes: u64,
    /// `blake3:` of the text as kept, before the cut (never of a redacted
    /// original: a digest must not let anyone test guesses at a secret).
    pub digest: String,
    /// `json` is a prefix of the text.
    pub truncated: bool,
    /// Size of the text as it was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_bytes: Option<u64>,
    /// Output safety changed the text before it was kept.
    #[serde(default, skip_serializing_if = "is_false")]
    pub redacted: bool,
    /// The client got the result cut at the policy's `max_result_bytes`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub delivered_truncated: bool,
    /// Keyed digests (`mac:` and 16 hex digits) of the values redacted from
    /// the text, so that someone holding a value and the ledger's find key
    /// can find the event (`sealgate find`); sorted, no repeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub findable: Option<Vec<String>>,
    /// More pieces were redacted than digests are kept.
    #[serde(default, skip_serializing_if = "is_false")]
    pub findable_truncated: bool,
}

/// An error as the caller or the ledger sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// The JSON-RPC error code, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    pub message: String,
    /// Keyed digests of values redacted from a peer's error (as in
    /// [`Blob::findable`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub findable: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub findable_truncated: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    /// The peer answered with a JSON-RPC error.
    JsonrpcError,
    Timeout,
    Cancelled,
    UpstreamUnavailable,
    /// The result exceeded the policy's `max_result_bytes` (refuse).
    MaxResultBytes,
    /// The gateway refused the message.
    Refused,
}

/// `tool_call.requested` (a `tools/call`) and `mcp.requested` (any other
/// audited request, either direction): written before it is forwarded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requested {
    #[serde(flatten)]
    pub call: CallFields,
    /// The arguments (for `initialize`, gated and server-to-client
    /// requests: the params).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Blob>,
    /// The request's `_meta`, which is forwarded too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Blob>,
    /// `server_to_client` on sampling, elicitation and roots requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
}

impl Body for Requested {
    const KINDS: &'static [EventKind] = &[EventKind::ToolCallRequested, EventKind::McpRequested];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Allow,
    Deny,
    RequireApproval,
    AllowWithConstraints,
}

/// The gate that decided a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    /// The server is registered and approved.
    Registry,
    /// The tool is called as it was approved.
    Pin,
    /// The caller holds a grant.
    Grant,
    /// The policy's rules.
    Policy,
    /// A suspension of the caller, a team of theirs or the server (the
    /// kill switch), checked before every other gate.
    Suspension,
}

impl Gate {
    pub fn as_str(self) -> &'static str {
        match self {
            Gate::Registry => "registry",
            Gate::Pin => "pin",
            Gate::Grant => "grant",
            Gate::Policy => "policy",
            Gate::Suspension => "suspension",
        }
    }

    /// The step that refused a call this gate denied.
    pub fn refused_by(self) -> RefusedBy {
        match self {
            Gate::Registry => RefusedBy::Registry,
            Gate::Pin => RefusedBy::Pin,
            Gate::Grant => RefusedBy::Grant,
            Gate::Policy => RefusedBy::Policy,
            Gate::Suspension => RefusedBy::Suspension,
        }
    }
}

/// Why a call was decided, or refused, as a closed set an auditor can
/// group by; `reason` says the same in words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// Registry: no server of that name is registered (shadow MCP).
    UnregisteredServer,
    /// Registry: registered, not yet approved.
    UnapprovedServer,
    QuarantinedServer,
    RevokedServer,
    /// Pin: the tool's definition drifted from its pin since approval.
    ToolDrifted,
    /// Pin: the tool was never approved.
    ToolUnpinned,
    /// Pin: this session's listing does not offer the tool.
    ToolUnlisted,
    /// Pin: listed now with a definition other than the pinned one.
    ToolChanged,
    /// Grant: no grant covers the caller, server and target.
    NoGrant,
    /// Grant: a grant lets the caller in (sessions and gated requests).
    Granted,
    /// Policy: none is loaded (default DENY).
    NoPolicy,
    /// Policy: no rule matched (default DENY).
    NoRule,
    RuleAllow,
    RuleDeny,
    RuleRequireApproval,
    RuleAllowWithConstraints,
    /// The rule's `max_retries` was used up in this session.
    RetryLimit,
    /// The call names a host the rule's `network_allowlist` does not
    /// allow, or one that cannot be read (`refused_host`).
    HostNotAllowed,
    /// The gateway's session limits (too many sessions).
    SessionLimit,
    /// The rule asks for approval but names no approvers.
    NoApprovers,
    ApprovalDenied,
    ApprovalExpired,
    /// The caller cancelled the held call.
    ApprovalWithdrawn,
    /// Granted, but the policy changed while the call waited.
    ApprovalOutdated,
    /// A suspension in force stops the call (denied, or withdrawn while
    /// held, or cancelled while running).
    Suspended,
    /// A policy `rate` limit: the window already holds its calls.
    RateLimited,
    /// A policy `quota`: this window's calls are used up.
    QuotaExhausted,
    /// The server's per-user `credentials` hold none for the caller (or
    /// theirs cannot be read): the session is not started without it.
    NoCredential,
}

/// Which limit of the policy refused a call, and the counter it counted
/// the call under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitHit {
    /// The limit's `id`.
    pub id: String,
    /// `rate` or `quota`.
    pub kind: LimitKind,
    /// The calls allowed per window.
    pub calls: u64,
    pub per_sec: u64,
    /// The counter: its `by` parts with their values, e.g.
    /// `principal="alice" tool="fetch"`; empty for one counter.
    pub key: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    Rate,
    Quota,
}

/// A quota counter an admitted call was counted under: what a restarted
/// gateway counts again from the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaCount {
    pub id: String,
    pub key: String,
}

/// `read`, `write`, `destructive`: what a tool does, by the registry's
/// label or the tool's own annotations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionLabel {
    Read,
    Write,
    Destructive,
}

/// A server's place in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerStatus {
    Registered,
    Approved,
    Quarantined,
    Revoked,
}

/// A rule's approval settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleApproval {
    pub timeout_sec: u64,
    pub approvers: Approvers,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approvers {
    pub teams: Vec<String>,
    pub principals: Vec<String>,
}

/// A rule's runtime constraints (`ALLOW_WITH_CONSTRAINTS`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleConstraints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_runtime_sec: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_result_bytes: Option<u64>,
    pub on_oversize: OnOversize,
    /// The hosts calls may name, entries normalised; absent: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_allowlist: Option<Vec<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnOversize {
    Truncate,
    Refuse,
}

/// What output safety does with a category of finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SafetyAction {
    Redact,
    Quarantine,
    Allow,
}

/// A rule's output-safety settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRule {
    pub secrets: SafetyAction,
    pub pii: SafetyAction,
}

/// `policy.decision`: the verdict on a request, before it is forwarded.
/// The fields of the gate that decided are always filled: `server_status`
/// for the registry, `pin` (or the tool's drift) for pins, `grant_id` for
/// grants, `rule` (absent only when no rule matched) and `policy_hash`
/// for the policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    #[serde(flatten)]
    pub call: CallFields,
    pub decision: Verdict,
    pub gate: Gate,
    /// Absent in logs written before reason codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<ReasonCode>,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ActionLabel>,
    /// The server's status when the registry gate refused it (absent when
    /// it is not registered at all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_status: Option<ServerStatus>,
    /// The pin the pin gate held the tool to (absent when unpinned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
    /// The tool's definition as listed in this session, when the pin gate
    /// refused it for a change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<RuleApproval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<RuleConstraints>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputRule>,
    /// The gateway's time to decide, in ns: from the call reaching the
    /// gates to its ruling, not counting a listing the gateway asked the
    /// upstream for itself. Absent in logs written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_ns: Option<u64>,
    /// The limit that refused the call (`rate_limited`, `quota_exhausted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<LimitHit>,
    /// The quota counters the call was counted under, when admitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quota: Vec<QuotaCount>,
    /// The host that broke the rule's `network_allowlist` (`host`, or
    /// `host:port` when the port broke it), when that refused the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_host: Option<String>,
    /// The suspension that denied the call (gate `suspension`): the
    /// `suspension_id` of its `suspension.issued`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspension_id: Option<String>,
}

impl Body for Decision {
    const KINDS: &'static [EventKind] = &[EventKind::PolicyDecision];
}

/// How a forwarded call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    /// A tool result with `isError: true`.
    ToolError,
    Quarantined,
    /// A JSON-RPC error from the peer.
    Error,
    Timeout,
    Cancelled,
    Unavailable,
    RefusedOversize,
}

/// `execution.completed` (`ok`, `tool_error`, `quarantined`) and
/// `execution.failed` (the rest): written before the answer goes back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Executed {
    #[serde(flatten)]
    pub call: CallFields,
    pub outcome: Outcome,
    /// From forwarding to the answer.
    pub duration_ns: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
    /// An excerpt of the result as the ledger may keep it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Blob>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<RuleConstraints>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    #[serde(rename = "error.type", default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<ErrorType>,
}

impl Body for Executed {
    const KINDS: &'static [EventKind] = &[EventKind::ExecutionCompleted, EventKind::ExecutionFailed];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Secret,
    Pii,
}

/// What one detector found in a message: where, never what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub detector: String,
    pub category: Category,
    pub action: SafetyAction,
    /// Every match, also beyond the listed locations.
    pub count: u64,
    pub locations: Vec<Location>,
    /// More locations than are listed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub truncated: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// RFC 6901 pointer to the string (for a key: to its member).
    pub pointer: String,
    /// Byte offset of the match in the string.
    pub offset: u64,
    /// In the member's key, not its value.
    #[serde(default, skip_serializing_if = "is_false")]
    pub key: bool,
}

/// `output.redacted`, `output.quarantined`: output safety found something
/// in what an upstream said (a call's answer, which it answers; or a
/// notification, listing or `initialize` answer, named by
/// `mcp.method.name`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFound {
    #[serde(flatten)]
    pub call: CallFields,
    pub findings: Vec<Finding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine_id: Option<String>,
}

impl Body for OutputFound {
    const KINDS: &'static [EventKind] = &[EventKind::OutputRedacted, EventKind::OutputQuarantined];
}

/// The step that refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusedBy {
    Registry,
    Pin,
    Grant,
    Policy,
    /// Its approval was denied, expired, withdrawn or outdated.
    Approval,
    /// A gateway limit (sessions, retries).
    Limit,
    /// A suspension (the kill switch).
    Suspension,
    /// The server's per-user credentials hold none for the caller.
    Credential,
}

/// The one value of `call.refused`'s `outcome`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusedOutcome {
    Refused,
}

/// `call.refused`: the terminal event of a recorded call (or session) that
/// did not run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRefused {
    #[serde(flatten)]
    pub call: CallFields,
    pub outcome: RefusedOutcome,
    pub refused_by: RefusedBy,
    /// Absent in logs written before reason codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<ReasonCode>,
    pub reason: String,
    /// What the caller was answered.
    pub error: ErrorInfo,
}

impl Body for CallRefused {
    const KINDS: &'static [EventKind] = &[EventKind::CallRefused];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionOutcome {
    Ok,
    Unavailable,
}

/// `session.opened`: a session began (or its upstream could not start),
/// answering its `initialize` request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionOpened {
    #[serde(flatten)]
    pub call: CallFields,
    #[serde(rename = "downstream.transport")]
    pub downstream_transport: Transport,
    #[serde(rename = "upstream.transport")]
    pub upstream_transport: Transport,
    /// The command line or URL, credentials masked.
    #[serde(rename = "upstream.address")]
    pub upstream_address: String,
    #[serde(rename = "mcp.protocol.version.requested")]
    pub protocol_version_requested: String,
    /// The client's `clientInfo`.
    pub client: OpenObject,
    /// The client capabilities relayed (roots, sampling, elicitation).
    #[serde(rename = "client.capabilities")]
    pub client_capabilities: OpenObject,
    /// The upstream's `serverInfo`, through output safety.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<OpenObject>,
    pub outcome: SessionOutcome,
    /// Why the upstream could not start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(rename = "error.type", default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<ErrorType>,
    /// Where the caller's own upstream credential came from (servers
    /// with `credentials`); never the credential itself.
    #[serde(
        rename = "upstream.credential.source",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub credential_source: Option<CredentialSource>,
    /// `sha256:` and the first 16 hex digits of the SHA-256 of the
    /// credential the upstream session was started with.
    #[serde(
        rename = "upstream.credential.fingerprint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub credential_fingerprint: Option<String>,
}

/// Where a per-user upstream credential is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialSource {
    /// One TOML file of principal = secret entries.
    File,
    /// A directory with one file per principal.
    Dir,
}

impl Body for SessionOpened {
    const KINDS: &'static [EventKind] = &[EventKind::SessionOpened];
}

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The client ended it (HTTP `DELETE` with its `Mcp-Session-Id`).
    ClientDelete,
    /// The client closed its input (`sealgate stdio`: end of stdin).
    ClientEof,
    /// Nothing was sent in it for `gateway.session_idle_sec`.
    IdleTimeout,
    /// The upstream session ended on its own (the child exited or the
    /// HTTP upstream went away).
    UpstreamExit,
    /// The gateway shut down (SIGINT, SIGTERM).
    GatewayShutdown,
    /// A suspension of its principal, team, server or session.
    Suspended,
    /// The gateway could not go on with it: its governance state could not
    /// be read when the session opened (fail closed).
    GatewayError,
}

/// What one session did, as the session counted it: every count is of
/// events it wrote (none is a default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCounts {
    /// Client requests received after `initialize`, of every method (pings
    /// and listings included, refused ones too).
    pub requests: u64,
    /// Calls recorded (`tool_call.requested`, `mcp.requested`), in both
    /// directions.
    pub calls: u64,
    /// Calls let run (allowed outright or after approval).
    pub allowed: u64,
    /// Calls that ended refused (`call.refused`).
    pub denied: u64,
    /// Calls that ended `execution.completed`.
    pub completed: u64,
    /// Calls that ended `execution.failed`.
    pub failed: u64,
    /// Calls with no terminal event when the session closed (still running,
    /// or their end could not be recorded): `calls` minus the three above.
    pub unfinished: u64,
}

/// `session.closed`: a session that opened (`session.opened` with outcome
/// `ok`) ended. A session ended by a crash of the gateway has none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClosed {
    #[serde(flatten)]
    pub call: CallFields,
    pub reason: CloseReason,
    /// The `seq` of the session's `session.opened`.
    pub opened_seq: u64,
    /// From the session's opening to its close.
    pub duration_ns: u64,
    pub counts: SessionCounts,
    /// The suspension that closed it (reason `suspended`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspension_id: Option<String>,
}

impl Body for SessionClosed {
    const KINDS: &'static [EventKind] = &[EventKind::SessionClosed];
}

/// Tools listed with another definition than their pin, or unpinned.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinDiff {
    /// Tool → hash as listed.
    pub changed: BTreeMap<String, String>,
    pub added: BTreeMap<String, String>,
}

/// `listing.observed`: what an upstream listed to a caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingObserved {
    #[serde(flatten)]
    pub call: CallFields,
    /// `blake3:` of the items as returned, in order.
    pub digest: String,
    pub count: u64,
    /// Names (URIs for resources, URI templates for templates).
    pub names: Vec<String>,
    /// Not passed on to the caller.
    pub hidden: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub differs_from_pins: Option<PinDiff>,
}

impl Body for ListingObserved {
    const KINDS: &'static [EventKind] = &[EventKind::ListingObserved];
}

/// `mcp.refused`: a message not relayed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRefused {
    #[serde(flatten)]
    pub call: CallFields,
    pub direction: Direction,
    /// The refusal (the reason with upstream words redacted).
    pub error: ErrorInfo,
    #[serde(rename = "error.type")]
    pub error_type: ErrorType,
    /// Size of the message as received.
    pub bytes: u64,
}

impl Body for MessageRefused {
    const KINDS: &'static [EventKind] = &[EventKind::MessageRefused];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessReason {
    MissingToken,
    InvalidToken,
    UnknownServer,
}

/// `access.refused`: refused authentications and requests for unknown
/// servers, counted per source, reason and server over an interval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRefused {
    #[serde(rename = "source.address")]
    pub source_address: String,
    /// The authenticated principal (an unknown server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// `sha256:` and 16 hex digits of the presented token's hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub reason: AccessReason,
    pub count: u64,
    /// RFC 3339.
    pub first: String,
    pub last: String,
    pub interval_sec: u64,
    /// Counted together with other refusals once the interval had more
    /// distinct keys than the gateway keeps (token, server and principal
    /// dropped; `source.address` is `many` past twice that).
    #[serde(default, skip_serializing_if = "crate::is_false")]
    pub aggregated: bool,
}

impl Body for AccessRefused {
    const KINDS: &'static [EventKind] = &[EventKind::AccessRefused];
}
