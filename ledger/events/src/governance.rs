//! What governance writes: the registry, pins, grants, the policy and
//! approvals. Written by `sealgate:config` at start, by an admin through
//! the API, or by the gateway (`sealgate:gateway`).

use std::collections::BTreeMap;

use ledger::EventKind;
use serde::{Deserialize, Serialize};

use crate::{ActionLabel, Body, Transport};

/// Where a registration came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrySource {
    /// The config file, at start.
    Config,
    /// The admin API.
    Api,
}

/// `server.registered`: a server and where it runs (`subject.server`,
/// `subject.env`). Registering again at the same place relabels it;
/// anywhere else it must be approved again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerRegistered {
    pub transport: Transport,
    /// The command line or URL, credentials masked.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default)]
    pub risk: Vec<String>,
    /// The registry's action label per tool (over the tools' own
    /// annotations).
    #[serde(default)]
    pub actions: BTreeMap<String, ActionLabel>,
    /// Absent in logs written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<RegistrySource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Body for ServerRegistered {
    const KINDS: &'static [EventKind] = &[EventKind::ServerRegistered];
}

/// `server.approved` (always in one batch with `tools.pinned`),
/// `server.quarantined`, `server.revoked`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Body for ServerStep {
    const KINDS: &'static [EventKind] = &[
        EventKind::ServerApproved,
        EventKind::ServerQuarantined,
        EventKind::ServerRevoked,
    ];
}

/// `tools.pinned`: tool definitions a server's tools are held to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolsPinned {
    /// Tool → `blake3:` hash of its pinned fields, or `null` to unpin.
    pub tools: BTreeMap<String, Option<String>>,
    /// The set replaces all pins (an approval), rather than adding to them.
    pub replace: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Body for ToolsPinned {
    const KINDS: &'static [EventKind] = &[EventKind::ToolsPinned];
}

/// The session whose traffic showed a drift.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revealer {
    pub principal: String,
    pub session: String,
}

/// `tools.drifted`: the gateway's own listing of a server differs from its
/// pins; the tools named are hidden and refused until re-approved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolsDrifted {
    /// Tool → hash as listed now.
    pub changed: BTreeMap<String, String>,
    pub added: BTreeMap<String, String>,
    pub removed: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revealed_by: Option<Revealer>,
}

impl Body for ToolsDrifted {
    const KINDS: &'static [EventKind] = &[EventKind::ToolsDrifted];
}

/// `grant.issued`: a principal or a team may use tools matching `tool` on
/// `subject.server`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantIssued {
    pub grant_id: String,
    /// Exactly one of `principal` and `team`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// A glob over tool, prompt and resource names.
    pub tool: String,
    /// Only on servers with this environment label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Body for GrantIssued {
    const KINDS: &'static [EventKind] = &[EventKind::GrantIssued];
}

/// `grant.revoked`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRevoked {
    pub grant_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Body for GrantRevoked {
    const KINDS: &'static [EventKind] = &[EventKind::GrantRevoked];
}

/// What a suspension stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuspensionTarget {
    /// Every call of one principal, in every session.
    Principal,
    /// Every call of a team's members.
    Team,
    /// Every call to one server.
    Server,
    /// One session (closed).
    Session,
}

impl SuspensionTarget {
    pub fn as_str(self) -> &'static str {
        match self {
            SuspensionTarget::Principal => "principal",
            SuspensionTarget::Team => "team",
            SuspensionTarget::Server => "server",
            SuspensionTarget::Session => "session",
        }
    }
}

/// `suspension.issued`: the kill switch, pulled by `actor`; in force until
/// a `suspension.lifted` of the same id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuspensionIssued {
    pub suspension_id: String,
    pub target: SuspensionTarget,
    /// The principal, team, server or session id suspended.
    pub name: String,
    pub reason: String,
}

impl Body for SuspensionIssued {
    const KINDS: &'static [EventKind] = &[EventKind::SuspensionIssued];
}

/// `suspension.lifted`: a suspension ends (`sealgate resume`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuspensionLifted {
    pub suspension_id: String,
    pub target: SuspensionTarget,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Body for SuspensionLifted {
    const KINDS: &'static [EventKind] = &[EventKind::SuspensionLifted];
}

/// `policy.loaded`: the policy in force from this event on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyLoaded {
    /// The YAML as loaded.
    pub text: String,
    /// `blake3:` of the text.
    pub hash: String,
    /// Where it came from (a file path, `api`).
    pub origin: String,
    /// How many rules it has.
    pub rules: u64,
}

impl Body for PolicyLoaded {
    const KINDS: &'static [EventKind] = &[EventKind::PolicyLoaded];
}

/// `approval.requested`: a call held for a human decision. Its envelope is
/// the call's (subject, requester as actor, session, request id and call
/// id); it answers the call's request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequested {
    pub approval_id: String,
    #[serde(rename = "mcp.method.name")]
    pub method: String,
    /// `blake3:` of the arguments as the request event keeps them.
    pub args_digest: String,
    pub policy_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default)]
    pub approver_teams: Vec<String>,
    #[serde(default)]
    pub approver_principals: Vec<String>,
    /// RFC 3339: not grantable from then on.
    pub expires_at: String,
}

impl Body for ApprovalRequested {
    const KINDS: &'static [EventKind] = &[EventKind::ApprovalRequested];
}

/// `approval.granted`, `approval.denied` (actor: the approver) and
/// `approval.expired` (actor: `sealgate:gateway`; the deadline passed or
/// the held call was withdrawn). The envelope is the call's: subject,
/// session, request id, call id; it answers the call's request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalDecided {
    pub approval_id: String,
    /// The `approval.requested` event (absent in older logs).
    #[serde(rename = "approval.requested_seq", default, skip_serializing_if = "Option::is_none")]
    pub requested_seq: Option<u64>,
    /// Who asked (absent in older logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<String>,
    #[serde(rename = "mcp.session.id", default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(rename = "mcp.method.name", default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Body for ApprovalDecided {
    const KINDS: &'static [EventKind] = &[
        EventKind::ApprovalGranted,
        EventKind::ApprovalDenied,
        EventKind::ApprovalExpired,
    ];
}
