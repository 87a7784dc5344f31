//! The live governance state of a running gateway, and the only way to
//! change it: by appending events.
//!
//! The state is the [`GovState`] projection folded from the ledger. Every
//! decision reads it with every governance event durable before the call
//! started (a revocation, a quarantine, an approval) folded in: those are
//! appended only here, so the fold catches up whenever this service has
//! appended, not after every event of the gateway's own (`view`). Mutations are checked against the current state
//! and then appended; a refused mutation writes nothing. Mutations are
//! serialized, so two conflicting ones cannot both pass their checks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use ledger::{Actor, Draft, EventKind, Folded, Ledger, Receipt, Snapshots, Timestamp};

use super::approvals::State as ApprovalState;
use super::call::Principal;
use super::policy::Policy;
use super::registry::{DriftChange, Status, allowed};
use super::state::GovState;

/// Why a mutation was refused, or could not be written.
#[derive(Debug, thiserror::Error)]
pub enum GovError {
    /// The request itself is malformed (a bad policy, a bad time).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// It conflicts with the current state (approve a revoked server,
    /// revoke twice).
    #[error("{0}")]
    Conflict(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The ledger could not record or read it; nothing changed. The
    /// ledger's error is in the message, not also the `source()`, so that
    /// `{:#}` tells it once.
    #[error("the audit ledger: {0}")]
    Ledger(ledger::Error),
}

impl From<ledger::Error> for GovError {
    fn from(e: ledger::Error) -> GovError {
        GovError::Ledger(e)
    }
}

pub type Result<T, E = GovError> = std::result::Result<T, E>;

/// What decisions read: the state as of `seq`, and its policy compiled.
#[derive(Debug)]
pub struct View {
    pub state: GovState,
    pub policy: Option<Arc<Policy>>,
    pub seq: Option<u64>,
}

struct Live {
    folded: Folded<GovState>,
    view: Arc<View>,
    last_snapshot: u64,
}

pub struct Governance {
    ledger: Arc<Ledger>,
    snapshots: Snapshots,
    snapshot_every: u64,
    live: Mutex<Live>,
    writes: tokio::sync::Mutex<()>,
    changed: tokio::sync::watch::Sender<u64>,
    /// The newest event this `Governance` appended. Only it appends
    /// governance kinds (one writer process per ledger; `sealgate append`
    /// writes only `x.*`), so events after it (the gateway's own) cannot
    /// change the state.
    appended: std::sync::atomic::AtomicU64,
}

/// How an upstream server runs and how it is labelled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSpec {
    pub name: String,
    pub transport: events::Transport,
    pub address: String,
    pub owner: Option<String>,
    pub env: Vec<String>,
    pub risk: Vec<String>,
    pub actions: BTreeMap<String, String>,
}

/// A grant to issue.
#[derive(Clone, Debug)]
pub struct GrantSpec {
    pub principal: Option<String>,
    pub team: Option<String>,
    pub server: String,
    pub tool: String,
    pub env: Option<String>,
    pub expires_at: Option<Timestamp>,
    pub reason: Option<String>,
}

/// An approval to open for a held call.
#[derive(Clone, Debug)]
pub struct ApprovalSpec {
    pub request_seq: u64,
    pub principal: Principal,
    /// The held call's session and JSON-RPC id.
    pub session: Option<String>,
    pub request_id: Option<ledger::RequestId>,
    /// The held call's id (`correlation.call_id`).
    pub call_id: Option<String>,
    pub server: String,
    /// The server's environment labels.
    pub env: Vec<String>,
    /// The tool, prompt or resource the call names (by `method`).
    pub tool: Option<String>,
    pub method: String,
    pub args_digest: String,
    pub policy_hash: String,
    pub rule: Option<String>,
    pub approver_teams: Vec<String>,
    pub approver_principals: Vec<String>,
    pub expires_at: Timestamp,
}

fn actor(by: &Principal) -> Actor {
    Actor {
        principal: Some(by.name.clone()),
        teams: by.teams.clone(),
        ..Actor::default()
    }
}

/// The session (and its principal) whose traffic showed that an
/// upstream's tools changed; the drift itself is confirmed from the
/// gateway's own listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revealer {
    pub session: String,
    pub principal: String,
}

/// An event of `body`'s (first) kind by `by`, about `server`. A body that
/// cannot be built fails the change: nothing is written.
fn draft<B: events::Body>(by: &Principal, server: Option<&str>, body: &B) -> Result<Draft> {
    let mut d = Draft::new(B::kind());
    d.actor = actor(by);
    d.subject.server = server.map(str::to_string);
    d.body = events::encode(body).map_err(|e| GovError::Invalid(e.to_string()))?;
    Ok(d)
}

/// A new identifier for a grant or an approval: `PREFIX-` and 12 hex digits.
fn new_id(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}

impl Governance {
    /// Loads the state: the newest usable snapshot, then the log after it.
    /// Blocking (RocksDB reads); call before serving or on a blocking thread.
    pub fn open(ledger: Arc<Ledger>, snapshots: Snapshots, snapshot_every: u64) -> Result<Governance> {
        let head = ledger.head().seq;
        let folded = ledger::fold_to::<GovState>(&ledger, Some(&snapshots), head)?;
        // Counted from the snapshot the state was loaded from, or from the
        // log's start when none was usable (one not signed by the log's
        // current key is passed over): then one is taken now if the log is
        // long enough, and the next start replays only what comes after it.
        let last_snapshot = folded.snapshot_seq().unwrap_or(0);
        let view = Arc::new(make_view(&folded, None));
        let (changed, _) = tokio::sync::watch::channel(head);
        let gov = Governance {
            ledger,
            snapshots,
            snapshot_every: snapshot_every.max(1),
            live: Mutex::new(Live {
                folded,
                view,
                last_snapshot,
            }),
            writes: tokio::sync::Mutex::new(()),
            changed,
            appended: std::sync::atomic::AtomicU64::new(head),
        };
        gov.maybe_snapshot(&mut gov.lock());
        Ok(gov)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Folds in whatever the ledger holds beyond the current state.
    /// Blocking.
    pub fn catch_up_blocking(&self) -> Result<Arc<View>> {
        let head = self.ledger.head().seq;
        let mut live = self.lock();
        if live.folded.seq().is_some_and(|s| s >= head) {
            return Ok(live.view.clone());
        }
        live.folded.advance(&self.ledger, head)?;
        live.view = Arc::new(make_view(&live.folded, Some(&live.view)));
        self.maybe_snapshot(&mut live);
        let seq = live.folded.seq().unwrap_or(0);
        drop(live);
        self.changed.send_replace(seq);
        Ok(self.lock().view.clone())
    }

    /// The state every event durable now has made: the one decisions
    /// read. It is folded up to the head only when this `Governance` has
    /// appended since the last fold (nothing else can change the state), or
    /// when the fold is a snapshot interval behind the head (so that
    /// snapshots keep being taken): a call's own events move the head, and
    /// folding them before every decision made every call wait on the
    /// fold's lock in turn.
    pub async fn view(self: &Arc<Self>) -> Result<Arc<View>> {
        {
            let live = self.lock();
            let folded = live.folded.seq();
            let appended = self.appended.load(std::sync::atomic::Ordering::Acquire);
            let lag = self.ledger.head().seq.saturating_sub(folded.unwrap_or(0));
            if folded.is_some_and(|s| s >= appended) && lag < self.snapshot_every {
                return Ok(live.view.clone());
            }
        }
        self.view_at_head().await
    }

    /// The state folded up to the ledger's head now (the admin API's
    /// answers name the head they are as of).
    pub async fn view_at_head(self: &Arc<Self>) -> Result<Arc<View>> {
        {
            let live = self.lock();
            if live.folded.seq().is_some_and(|s| s >= self.ledger.head().seq) {
                return Ok(live.view.clone());
            }
        }
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || me.catch_up_blocking())
            .await
            .map_err(|e| GovError::Invalid(format!("state refresh task failed: {e}")))?
    }

    /// The state as of `at`: an RFC 3339 time (the last event at or before
    /// it) or a sequence number, from the newest usable snapshot and the log
    /// after it. Blocking.
    pub fn state_as_of(&self, at: &str) -> Result<(GovState, Option<u64>)> {
        let seq = resolve_as_of(&self.ledger, at)?;
        let Some(seq) = seq else {
            return Ok((GovState::default(), None));
        };
        let folded = ledger::fold_to::<GovState>(&self.ledger, Some(&self.snapshots), seq)?;
        let seq = folded.seq();
        Ok((folded.into_state(), seq))
    }

    /// Notified with the applied sequence number whenever the state moves.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn maybe_snapshot(&self, live: &mut Live) {
        let Some(seq) = live.folded.seq() else { return };
        if seq >= live.last_snapshot + self.snapshot_every {
            match self.snapshots.save(&self.ledger, &live.folded) {
                Ok(_) => live.last_snapshot = seq,
                // A missing snapshot costs replay time, not correctness.
                Err(e) => tracing::warn!(seq, "governance snapshot not written: {e}"),
            }
        }
    }

    /// Appends `drafts` as one atomic unit and folds them in.
    async fn commit(self: &Arc<Self>, drafts: Vec<Draft>) -> Result<Vec<Receipt>> {
        let receipts = self.ledger.submit_async(drafts).await?.recv().await?;
        if let Some(last) = receipts.last() {
            self.appended.fetch_max(last.seq, std::sync::atomic::Ordering::AcqRel);
        }
        self.view_at_head().await?;
        Ok(receipts)
    }

    async fn commit_one(self: &Arc<Self>, d: Draft) -> Result<Receipt> {
        let mut receipts = self.commit(vec![d]).await?;
        receipts
            .pop()
            .ok_or_else(|| GovError::Invalid("the ledger acknowledged no event".into()))
    }

    // ---- registry ----------------------------------------------------

    /// Refuses a change by a principal a suspension stops. Checked under
    /// the write lock, so a suspension and a change by its target are
    /// ordered: whatever let the request in (the admin API checked its
    /// principal before the suspension was written), it writes nothing.
    async fn refuse_suspended(self: &Arc<Self>, by: &Principal) -> Result<()> {
        let view = self.view().await?;
        match view.state.suspensions.stopping_principal(&by.name, &by.teams) {
            Some(s) => Err(GovError::Forbidden(format!(
                "{:?} is suspended ({}): it may change nothing",
                by.name, s.id
            ))),
            None => Ok(()),
        }
    }

    /// Registers a server, or updates its labels. Re-registering a server
    /// at another transport or address (or a revoked one) starts it over as
    /// registered. Writes nothing when nothing changed.
    pub async fn register(
        self: &Arc<Self>,
        by: &Principal,
        spec: &ServerSpec,
        reason: Option<String>,
        source: events::RegistrySource,
    ) -> Result<Option<Receipt>> {
        if spec.name.is_empty() {
            return Err(GovError::Invalid("server name is empty".into()));
        }
        let mut actions = BTreeMap::new();
        for (tool, action) in &spec.actions {
            let label = match super::policy::Action::parse(action) {
                Some(super::policy::Action::Read) => events::ActionLabel::Read,
                Some(super::policy::Action::Write) => events::ActionLabel::Write,
                Some(super::policy::Action::Destructive) => events::ActionLabel::Destructive,
                None => {
                    return Err(GovError::Invalid(format!(
                        "server {}: action {action:?} of tool {tool:?} is not read, write or destructive",
                        spec.name
                    )));
                }
            };
            actions.insert(tool.clone(), label);
        }
        let _w = self.writes.lock().await;
        self.refuse_suspended(by).await?;
        let view = self.view().await?;
        if let Some(s) = view.state.registry.get(&spec.name)
            && s.status != Status::Revoked
            && s.transport == spec.transport
            && s.address == spec.address
            && s.owner == spec.owner
            && s.env == spec.env
            && s.risk == spec.risk
            && s.actions == actions
        {
            return Ok(None);
        }
        let mut d = draft(
            by,
            Some(&spec.name),
            &events::ServerRegistered {
                transport: spec.transport,
                address: spec.address.clone(),
                owner: spec.owner.clone(),
                risk: spec.risk.clone(),
                actions,
                source: Some(source),
                reason,
            },
        )?;
        d.subject.env = spec.env.clone();
        Ok(Some(self.commit_one(d).await?))
    }

    /// Approves a server and pins its tools (`tools`: name → definition
    /// hash, as listed now), in one atomic write.
    pub async fn approve_server(
        self: &Arc<Self>,
        by: &Principal,
        name: &str,
        reason: Option<String>,
        tools: &BTreeMap<String, String>,
    ) -> Result<Vec<Receipt>> {
        let _w = self.writes.lock().await;
        self.refuse_suspended(by).await?;
        self.check_transition(name, Status::Approved).await?;
        let approve = step_draft(EventKind::ServerApproved, by, name, reason.clone())?;
        let pins = pin_draft(
            by,
            name,
            tools.iter().map(|(k, v)| (k.clone(), Some(v.clone()))),
            true,
            reason,
        )?;
        self.commit(vec![approve, pins]).await
    }

    /// Quarantines or revokes a server.
    pub async fn set_status(
        self: &Arc<Self>,
        by: &Principal,
        name: &str,
        to: Status,
        reason: Option<String>,
    ) -> Result<Receipt> {
        let kind = match to {
            Status::Quarantined => EventKind::ServerQuarantined,
            Status::Revoked => EventKind::ServerRevoked,
            other => {
                return Err(GovError::Invalid(format!(
                    "servers become {} by registration or approval",
                    other.as_str()
                )));
            }
        };
        let _w = self.writes.lock().await;
        self.refuse_suspended(by).await?;
        self.check_transition(name, to).await?;
        self.commit_one(step_draft(kind, by, name, reason)?).await
    }

    async fn check_transition(self: &Arc<Self>, name: &str, to: Status) -> Result<()> {
        let view = self.view().await?;
        let server = registered(&view, name)?;
        allowed(server.status, to)
            .map_err(|why| GovError::Conflict(format!("server {name:?} cannot become {}: {why}", to.as_str())))
    }

    /// Re-approves drifted tools: pins each at the definition the drift
    /// recorded (a removed tool loses its pin). `tools` empty: all drifted.
    pub async fn approve_tools(
        self: &Arc<Self>,
        by: &Principal,
        name: &str,
        tools: &[String],
        reason: Option<String>,
    ) -> Result<Receipt> {
        let _w = self.writes.lock().await;
        self.refuse_suspended(by).await?;
        let view = self.view().await?;
        let server = registered(&view, name)?;
        if server.status != Status::Approved {
            return Err(GovError::Conflict(format!(
                "server {name:?} is {}: approve the server, not its tools",
                server.status.as_str()
            )));
        }
        let wanted: Vec<String> = if tools.is_empty() {
            server.drift.keys().cloned().collect()
        } else {
            tools.to_vec()
        };
        if wanted.is_empty() {
            return Err(GovError::Conflict(format!(
                "server {name:?} has no drifted tools to approve"
            )));
        }
        let mut pins = Vec::new();
        for tool in wanted {
            let drift = server
                .drift
                .get(&tool)
                .ok_or_else(|| GovError::Conflict(format!("tool {tool:?} on {name:?} has not drifted")))?;
            pins.push((tool, drift.hash.clone()));
        }
        self.commit_one(pin_draft(by, name, pins, false, reason)?).await
    }

    /// Records what an upstream listing shows that differs from the pins,
    /// unless already recorded. Returns the receipt if anything was new.
    /// Only a `complete` listing (every page, not one of several) can show
    /// that a pinned tool was removed.
    pub async fn observe_tools(
        self: &Arc<Self>,
        name: &str,
        listed: &BTreeMap<String, String>,
        complete: bool,
        revealed_by: Option<&Revealer>,
    ) -> Result<Option<Receipt>> {
        let _w = self.writes.lock().await;
        let view = self.view().await?;
        let Some(server) = view.state.registry.get(name).filter(|s| s.status == Status::Approved) else {
            return Ok(None);
        };
        let known = |tool: &str, change: DriftChange, hash: Option<&String>| {
            server
                .drift
                .get(tool)
                .is_some_and(|d| d.change == change && d.hash.as_ref() == hash)
        };
        let mut changed = BTreeMap::new();
        let mut added = BTreeMap::new();
        for (tool, hash) in listed {
            match server.pins.get(tool) {
                Some(pin) if pin == hash => {}
                Some(_) if !known(tool, DriftChange::Changed, Some(hash)) => {
                    changed.insert(tool.clone(), hash.clone());
                }
                None if !known(tool, DriftChange::Added, Some(hash)) => {
                    added.insert(tool.clone(), hash.clone());
                }
                _ => {}
            }
        }
        let removed: Vec<String> = server
            .pins
            .keys()
            .filter(|t| complete && !listed.contains_key(*t) && !known(t, DriftChange::Removed, None))
            .cloned()
            .collect();
        if changed.is_empty() && added.is_empty() && removed.is_empty() {
            return Ok(None);
        }
        let system = Principal::system("sealgate:gateway");
        let mut d = draft(
            &system,
            Some(name),
            &events::ToolsDrifted {
                changed,
                added,
                removed,
                revealed_by: revealed_by.map(|r| events::Revealer {
                    principal: r.principal.clone(),
                    session: r.session.clone(),
                }),
            },
        )?;
        if let Some(r) = revealed_by {
            d.actor.session = Some(r.session.clone());
        }
        Ok(Some(self.commit_one(d).await?))
    }

    // ---- grants ------------------------------------------------------

    pub async fn issue_grant(self: &Arc<Self>, by: &Principal, spec: &GrantSpec) -> Result<(String, Receipt)> {
        let grantee = match (&spec.principal, &spec.team) {
            (Some(p), None) if !p.is_empty() => ("principal", p.clone()),
            (None, Some(t)) if !t.is_empty() => ("team", t.clone()),
            _ => {
                return Err(GovError::Invalid(
                    "a grant names exactly one of principal and team".into(),
                ));
            }
        };
        if spec.server.is_empty() || spec.tool.is_empty() {
            return Err(GovError::Invalid("a grant names a server and a tool pattern".into()));
        }
        if let Some(exp) = spec.expires_at
            && exp <= Timestamp::now()
        {
            return Err(GovError::Invalid(format!("expires_at {exp} is in the past")));
        }
        let _w = self.writes.lock().await;
        self.refuse_suspended(by).await?;
        let id = new_id("g");
        let (principal, team) = match grantee {
            ("principal", p) => (Some(p), None),
            (_, t) => (None, Some(t)),
        };
        let mut d = draft(
            by,
            Some(&spec.server),
            &events::GrantIssued {
                grant_id: id.clone(),
                principal,
                team,
                tool: spec.tool.clone(),
                env: spec.env.clone(),
                expires_at: spec.expires_at.map(|t| t.to_string()),
                reason: spec.reason.clone(),
            },
        )?;
        d.subject.tool = Some(spec.tool.clone());
        Ok((id, self.commit_one(d).await?))
    }

    pub async fn revoke_grant(self: &Arc<Self>, by: &Principal, id: &str, reason: Option<String>) -> Result<Receipt> {
        let _w = self.writes.lock().await;
        self.refuse_suspended(by).await?;
        let view = self.view().await?;
        let grant = view
            .state
            .grants
            .grants
            .get(id)
            .ok_or_else(|| GovError::NotFound(format!("no grant {id:?} is in force (never issued, or revoked)")))?;
        let d = draft(
            by,
            Some(&grant.server),
            &events::GrantRevoked {
                grant_id: id.to_string(),
                reason,
            },
        )?;
        self.commit_one(d).await
    }

    // ---- suspensions (the kill switch) --------------------------------

    /// Suspends `target` `name` (which the caller has checked exists):
    /// writes `suspension.issued`, and returns its id. A reason is
    /// required; a target suspended already is a conflict (nothing
    /// written).
    pub async fn suspend(
        self: &Arc<Self>,
        by: &Principal,
        target: events::SuspensionTarget,
        name: &str,
        reason: &str,
    ) -> Result<(String, Receipt)> {
        if name.trim().is_empty() {
            return Err(GovError::Invalid(format!(
                "a suspension names the {} to suspend",
                target.as_str()
            )));
        }
        if reason.trim().is_empty() {
            return Err(GovError::Invalid("a suspension needs a reason (--reason)".into()));
        }
        // The admin API refuses suspended principals, so an issuer that
        // stopped itself could not lift its own suspension: with no other
        // admin, the kill switch would be stuck on.
        let own = match target {
            events::SuspensionTarget::Principal => by.name == name,
            events::SuspensionTarget::Team => by.teams.iter().any(|t| t == name),
            events::SuspensionTarget::Server | events::SuspensionTarget::Session => false,
        };
        if own {
            return Err(GovError::Invalid(format!(
                "suspending {} {name:?} would stop its own issuer {:?}, who could then not lift it; \
                 another admin must issue it",
                target.as_str(),
                by.name
            )));
        }
        let _w = self.writes.lock().await;
        self.refuse_suspended(by).await?;
        let view = self.view().await?;
        if let Some(s) = view.state.suspensions.of(target, name) {
            return Err(GovError::Conflict(format!(
                "{} {name:?} is suspended already ({})",
                target.as_str(),
                s.id
            )));
        }
        let id = new_id("s");
        let server = (target == events::SuspensionTarget::Server).then_some(name);
        let d = draft(
            by,
            server,
            &events::SuspensionIssued {
                suspension_id: id.clone(),
                target,
                name: name.to_string(),
                reason: reason.to_string(),
            },
        )?;
        Ok((id, self.commit_one(d).await?))
    }

    /// Lifts the suspension of `target` `name`: writes `suspension.lifted`
    /// and returns the suspension's id. None in force is not found
    /// (nothing written).
    pub async fn resume(
        self: &Arc<Self>,
        by: &Principal,
        target: events::SuspensionTarget,
        name: &str,
        reason: Option<String>,
    ) -> Result<(String, Receipt)> {
        let _w = self.writes.lock().await;
        self.refuse_suspended(by).await?;
        let view = self.view().await?;
        let Some(s) = view.state.suspensions.of(target, name) else {
            return Err(GovError::NotFound(format!(
                "{} {name:?} is not suspended",
                target.as_str()
            )));
        };
        let id = s.id.clone();
        let server = (target == events::SuspensionTarget::Server).then_some(name);
        let d = draft(
            by,
            server,
            &events::SuspensionLifted {
                suspension_id: id.clone(),
                target,
                name: name.to_string(),
                reason,
            },
        )?;
        Ok((id, self.commit_one(d).await?))
    }

    // ---- policy ------------------------------------------------------

    /// Loads a policy: it must parse (errors name line and column); the
    /// policy in force stays otherwise. Writes nothing if it is the one in
    /// force already.
    pub async fn load_policy(self: &Arc<Self>, by: &Principal, text: &str, origin: &str) -> Result<Option<Receipt>> {
        let policy = Policy::parse(text, origin).map_err(|e| GovError::Invalid(e.to_string()))?;
        let _w = self.writes.lock().await;
        self.refuse_suspended(by).await?;
        let view = self.view().await?;
        if view.state.policy.as_ref().is_some_and(|p| p.hash == policy.hash()) {
            return Ok(None);
        }
        let d = draft(
            by,
            None,
            &events::PolicyLoaded {
                text: text.to_string(),
                hash: policy.hash().to_string(),
                origin: origin.to_string(),
                rules: policy.rules().len() as u64,
            },
        )?;
        Ok(Some(self.commit_one(d).await?))
    }

    // ---- approvals ---------------------------------------------------

    pub async fn request_approval(self: &Arc<Self>, spec: &ApprovalSpec) -> Result<(String, Receipt)> {
        let _w = self.writes.lock().await;
        let id = new_id("a");
        let mut d = draft(
            &spec.principal,
            Some(&spec.server),
            &events::ApprovalRequested {
                approval_id: id.clone(),
                method: spec.method.clone(),
                args_digest: spec.args_digest.clone(),
                policy_hash: spec.policy_hash.clone(),
                rule: spec.rule.clone(),
                approver_teams: spec.approver_teams.clone(),
                approver_principals: spec.approver_principals.clone(),
                expires_at: spec.expires_at.to_string(),
            },
        )?;
        d.subject = call_subject(&spec.server, &spec.method, spec.tool.clone(), &spec.env);
        d.actor.session = spec.session.clone();
        d.correlation.answers = Some(spec.request_seq);
        d.correlation.request_id = spec.request_id.clone();
        d.correlation.call_id = spec.call_id.clone();
        Ok((id, self.commit_one(d).await?))
    }

    /// Grants or denies a pending approval, as `by`.
    pub async fn decide_approval(
        self: &Arc<Self>,
        by: &Principal,
        id: &str,
        grant: bool,
        reason: Option<String>,
    ) -> Result<Receipt> {
        let _w = self.writes.lock().await;
        self.refuse_suspended(by).await?;
        let view = self.view().await?;
        let item = view
            .state
            .approvals
            .items
            .get(id)
            .ok_or_else(|| GovError::NotFound(format!("no approval {id:?}")))?;
        if item.state != ApprovalState::Pending {
            return Err(GovError::Conflict(format!(
                "approval {id:?} is no longer pending: {:?}",
                item.state
            )));
        }
        if Timestamp::now().as_nanos() >= item.expires_at {
            return Err(GovError::Conflict(format!("approval {id:?} has expired")));
        }
        if let Some(why) = item.refuse_approver(&by.name, &by.teams) {
            return Err(GovError::Forbidden(why));
        }
        let kind = if grant {
            EventKind::ApprovalGranted
        } else {
            EventKind::ApprovalDenied
        };
        self.commit_one(decided_draft(kind, by, item, reason)?).await
    }

    /// Marks a pending approval expired (its deadline passed, or the held
    /// call went away). Writes nothing if it was decided meanwhile.
    pub async fn expire_approval(self: &Arc<Self>, id: &str, reason: &str) -> Result<Option<Receipt>> {
        let _w = self.writes.lock().await;
        let view = self.view().await?;
        let Some(item) = view
            .state
            .approvals
            .items
            .get(id)
            .filter(|a| a.state == ApprovalState::Pending)
        else {
            return Ok(None);
        };
        let system = Principal::system("sealgate:gateway");
        let d = decided_draft(EventKind::ApprovalExpired, &system, item, Some(reason.to_string()))?;
        Ok(Some(self.commit_one(d).await?))
    }
}

/// The subject of a call: its server, environment, and the tool, prompt or
/// resource its method names.
fn call_subject(server: &str, method: &str, target: Option<String>, env: &[String]) -> ledger::Subject {
    let mut subject = ledger::Subject {
        server: Some(server.to_string()),
        env: env.to_vec(),
        ..ledger::Subject::default()
    };
    match method {
        "prompts/get" => subject.prompt = target,
        "resources/read" => subject.resource = target,
        _ => subject.tool = target,
    }
    subject
}

/// An approval's decision joined to its call in one hop: it answers the
/// call's request event and names the call's subject, JSON-RPC id, session
/// and requester; `approval.requested_seq` links the approval itself.
/// An approval's decision, joined to its call: the call's subject,
/// request, JSON-RPC id and call id.
fn decided_draft(
    kind: EventKind,
    by: &Principal,
    item: &super::approvals::Approval,
    reason: Option<String>,
) -> Result<Draft> {
    let mut d = draft(
        by,
        Some(&item.server),
        &events::ApprovalDecided {
            approval_id: item.id.clone(),
            requested_seq: Some(item.requested_seq),
            requester: Some(item.principal.clone()),
            session_id: item.session.clone(),
            method: Some(item.method.clone()),
            reason,
        },
    )?;
    d.kind = kind;
    d.subject = call_subject(&item.server, &item.method, item.tool.clone(), &item.env);
    d.correlation.answers = Some(item.request_seq.unwrap_or(item.requested_seq));
    d.correlation.request_id = item.request_id.as_ref().map(|id| id.to_ledger());
    d.correlation.call_id = item.call_id.clone();
    Ok(d)
}

fn registered<'a>(view: &'a View, name: &str) -> Result<&'a super::registry::Server> {
    view.state
        .registry
        .get(name)
        .ok_or_else(|| GovError::NotFound(format!("server {name:?} is not registered")))
}

/// `at` as a sequence number: itself, or the last event at or before an
/// RFC 3339 time (`None`: before the log began).
pub fn resolve_as_of(ledger: &Ledger, at: &str) -> Result<Option<u64>> {
    if let Ok(seq) = at.parse::<u64>() {
        let head = ledger.head().seq;
        if seq > head {
            return Err(GovError::Invalid(format!(
                "as of seq {seq}: the log ends at seq {head}"
            )));
        }
        return Ok(Some(seq));
    }
    let ts = Timestamp::parse_rfc3339(at)
        .map_err(|e| GovError::Invalid(format!("as of {at:?}: not a sequence number or an RFC 3339 time: {e}")))?;
    // Checked against the events: the time index is not signed, and an
    // edited one must not answer for another moment's state.
    let located = ledger.locate_at_or_before(ts)?;
    if let Some(damage) = &located.index_damage {
        tracing::warn!(
            as_of = at,
            seq = ?located.seq,
            "{damage}; the state was found from the events' own timestamps instead; run `sealgate verify`"
        );
    }
    Ok(located.seq)
}

fn pin_draft(
    by: &Principal,
    name: &str,
    tools: impl IntoIterator<Item = (String, Option<String>)>,
    replace: bool,
    reason: Option<String>,
) -> Result<Draft> {
    draft(
        by,
        Some(name),
        &events::ToolsPinned {
            tools: tools.into_iter().collect(),
            replace,
            reason,
        },
    )
}

fn step_draft(kind: EventKind, by: &Principal, name: &str, reason: Option<String>) -> Result<Draft> {
    let mut d = draft(by, Some(name), &events::ServerStep { reason })?;
    d.kind = kind;
    Ok(d)
}

/// The view of `folded`, reusing `previous`'s compiled policy when the
/// policy did not change.
fn make_view(folded: &Folded<GovState>, previous: Option<&View>) -> View {
    let state = folded.state().clone();
    let reuse = previous
        .and_then(|v| v.policy.clone())
        .filter(|p| state.policy.as_ref().is_some_and(|record| record.hash == p.hash()));
    if reuse.is_some() {
        return View {
            state,
            policy: reuse,
            seq: folded.seq(),
        };
    }
    let policy = state
        .policy
        .as_ref()
        .and_then(|p| match Policy::parse(&p.text, "policy in force") {
            Ok(policy) => Some(Arc::new(policy)),
            Err(e) => {
                tracing::error!(
                    seq = p.seq,
                    "the logged policy does not parse, every call is denied: {e}"
                );
                None
            }
        });
    View {
        state,
        policy,
        seq: folded.seq(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ledger::{Actor, Draft, EventKind, KeyDir, Ledger, SigningKey, Snapshots};

    use super::*;

    /// A decision's view is not refolded for events that cannot change the
    /// state (the gateway's own), and is for every change governance makes.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_view_moves_with_governance_events_not_with_the_gateways() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = Arc::new(
            Ledger::create(
                &dir.path().join("ledger"),
                &KeyDir::new(dir.path().join("keys")),
                SigningKey::generate(),
                Actor::default(),
            )
            .expect("create"),
        );
        let gov = Arc::new(
            Governance::open(Arc::clone(&ledger), Snapshots::new(dir.path().join("snap")), 1000).expect("open"),
        );
        let before = gov.view().await.expect("view");
        for _ in 0..5 {
            ledger
                .append(Draft::new(EventKind::from_name("x.gateway.traffic")))
                .await
                .expect("append");
        }
        let after = gov.view().await.expect("view");
        assert!(Arc::ptr_eq(&before, &after), "refolded for events that change nothing");
        assert_eq!(gov.view_at_head().await.expect("view").seq, Some(ledger.head().seq));

        let root = Principal::system("root");
        let policy = "version: v1\nrules:\n  - id: all\n    decision: ALLOW\n";
        gov.load_policy(&root, policy, "test").await.expect("policy");
        let view = gov.view().await.expect("view");
        assert!(
            view.policy.is_some(),
            "a governance change is in the next decision's view"
        );
        assert_eq!(view.seq, Some(ledger.head().seq));
    }
}
