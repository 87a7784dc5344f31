//! The detections as a pure state machine over the log: events go in, in
//! `seq` order ([`Detector::observe`]), with the clock ticking between
//! them ([`Detector::tick`]); alerts come out. No I/O and no clock of its
//! own, so a replay of the same events gives the same alerts with the same
//! keys, which is what lets the runner resume from the log
//! (`super::run`). `docs/ALERTS.md` says what each detection means.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use events::{AlertRaised, AlertSeverity, Detection, Evidence};
use ledger::{EventKind, SealedEvent};

/// The most evidence events an alert lists.
pub const MAX_EVIDENCE: usize = 32;
/// Held calls (REQUIRE_APPROVAL decisions without a terminal event) and
/// pending approvals kept; past it the oldest are forgotten (a log whose
/// calls are never settled, e.g. a gateway killed in a loop).
const MAX_OPEN: usize = 100_000;
/// Keys with a window kept per counting detection; past it the key with the
/// oldest activity is dropped.
const MAX_KEYS: usize = 10_000;

const NS: u64 = 1_000_000_000;

/// The detections' thresholds (`[alerts]`, `docs/CONFIG.md`).
#[derive(Clone, Debug)]
pub struct Thresholds {
    pub disabled: BTreeSet<Detection>,
    /// Registry refusals for one server in the window that raise an alert.
    pub unknown_server: u64,
    pub unknown_server_window_sec: u64,
    /// Refused authentications from one source in the window.
    pub auth_burst: u64,
    pub auth_burst_window_sec: u64,
    /// Quarantined results per call that ran, over the window, above which
    /// an alert is raised (the `[gates]` target by default).
    pub quarantine_ratio: f64,
    pub quarantine_window_sec: u64,
    /// Calls that ran in the window before the ratio is judged.
    pub quarantine_min_calls: u64,
    /// An approval unresolved this long raises an alert.
    pub approval_wait_sec: u64,
}

impl Thresholds {
    /// How far back of the last alert a resumed detector must read to
    /// rebuild the state it had then: every window twice, and an approval's
    /// wait.
    pub fn lookback_sec(&self) -> u64 {
        let windows = self
            .unknown_server_window_sec
            .max(self.auth_burst_window_sec)
            .max(self.quarantine_window_sec);
        windows.saturating_mul(2).saturating_add(self.approval_wait_sec)
    }
}

/// One event as evidence, with the time it was written.
#[derive(Clone, Debug)]
struct Seen {
    seq: u64,
    hash: String,
    kind: String,
    ts: u64,
}

impl Seen {
    fn of(e: &SealedEvent) -> Seen {
        Seen {
            seq: e.event.seq,
            hash: e.hash.to_hex(),
            kind: e.event.kind.to_string(),
            ts: e.event.ts.as_nanos(),
        }
    }

    fn evidence(&self) -> Evidence {
        Evidence {
            seq: self.seq,
            hash: self.hash.clone(),
            kind: self.kind.clone(),
        }
    }
}

/// An alert to write: its body and the server it is about.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub body: AlertRaised,
    pub server: Option<String>,
}

/// Alerts of one counting detection raised in its window before the rest
/// of the window's are folded into one: a scan across many server names
/// or source addresses raises a few alerts, not one per name.
pub const MAX_ALERTS_PER_WINDOW: usize = 10;

/// Counts per key over a sliding window, and when each key last alerted.
#[derive(Default)]
struct Windows {
    keys: BTreeMap<String, Window>,
    /// When this detection's alerts of the window were raised.
    raised: VecDeque<u64>,
    /// When the window's alerts were last folded into one.
    folded_at: Option<u64>,
}

/// What a key over its threshold raises.
enum Admit {
    /// Its own alert.
    Alert,
    /// The one alert that stands for the rest of the window's.
    Fold,
    /// Nothing: folded into the window's alert already raised.
    Quiet,
}

#[derive(Default)]
struct Window {
    items: VecDeque<(Seen, u64)>,
    sum: u64,
    /// The time of the last alert for this key: none again until a window
    /// has passed.
    alerted_at: Option<u64>,
}

impl Windows {
    /// Whether a key over its threshold at `now` raises its alert: at most
    /// [`MAX_ALERTS_PER_WINDOW`] in a window, then one that stands for the
    /// rest, then none until the window has passed.
    fn admit(&mut self, now: u64, window_ns: u64) -> Admit {
        while self.raised.front().is_some_and(|t| now.saturating_sub(*t) >= window_ns) {
            self.raised.pop_front();
        }
        if self.raised.len() < MAX_ALERTS_PER_WINDOW {
            self.raised.push_back(now);
            return Admit::Alert;
        }
        if self.folded_at.is_some_and(|t| now.saturating_sub(t) < window_ns) {
            return Admit::Quiet;
        }
        self.folded_at = Some(now);
        Admit::Fold
    }

    /// [`Windows::add`], then [`Windows::admit`]: what `key` crossing its
    /// threshold raises (its own alert or the window's fold), with the
    /// window's items and sum; nothing below the threshold or when quiet.
    fn cross(
        &mut self,
        key: &str,
        seen: Seen,
        n: u64,
        window_ns: u64,
        threshold: u64,
    ) -> Option<(Admit, Vec<Seen>, u64)> {
        let now = seen.ts;
        let (items, sum) = self.add(key, seen, n, window_ns, threshold)?;
        match self.admit(now, window_ns) {
            Admit::Quiet => None,
            admit => Some((admit, items, sum)),
        }
    }

    /// Adds `n` for `key` at `seen`; the window's items and sum when that
    /// reaches `threshold` and the key is not cooling down.
    fn add(&mut self, key: &str, seen: Seen, n: u64, window_ns: u64, threshold: u64) -> Option<(Vec<Seen>, u64)> {
        if !self.keys.contains_key(key) && self.keys.len() >= MAX_KEYS {
            let oldest = self
                .keys
                .iter()
                .min_by_key(|(_, w)| w.items.back().map_or(0, |(s, _)| s.ts))
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.keys.remove(&k);
            }
        }
        let now = seen.ts;
        let w = self.keys.entry(key.to_owned()).or_default();
        w.items.push_back((seen, n));
        w.sum = w.sum.saturating_add(n);
        while let Some((first, m)) = w.items.front() {
            if now.saturating_sub(first.ts) >= window_ns {
                w.sum = w.sum.saturating_sub(*m);
                w.items.pop_front();
            } else {
                break;
            }
        }
        let cooling = w.alerted_at.is_some_and(|t| now.saturating_sub(t) < window_ns);
        if w.sum >= threshold.max(1) && !cooling {
            w.alerted_at = Some(now);
            Some((w.items.iter().map(|(s, _)| s.clone()).collect(), w.sum))
        } else {
            None
        }
    }
}

/// A call (a request read from the log) waiting for its terminal event.
#[derive(Default)]
struct Open {
    /// `None` when the decision came first in what was read (its request
    /// lies before the detector's first event).
    request: Option<Seen>,
    /// The request's `mcp.method.name`.
    method: Option<String>,
    decision: Option<(Seen, Permit)>,
}

/// What a call's decision let it do.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Permit {
    /// ALLOW, ALLOW_WITH_CONSTRAINTS.
    Run,
    /// REQUIRE_APPROVAL: `granted` once an `approval.granted` answers it
    /// before any other resolution; `settled` once any resolution did.
    Held { granted: bool, settled: bool },
    /// DENY, or a decision this detector does not know: never runs.
    No,
}

/// An `approval.requested` not yet resolved.
struct Pending {
    requested: Seen,
    /// The held call's request (what the `approval.requested` answers).
    request: Option<u64>,
    approval_id: String,
    server: Option<String>,
    tool: Option<String>,
    requester: Option<String>,
    /// When it is raised if still undecided (UTC ns): after the gate's
    /// wait, or half-way to its expiry if that comes first (an approval
    /// that expires before the gate's wait is raised while it can still
    /// be decided).
    due_ns: u64,
    alerted: bool,
}

/// The detections' state.
pub struct Detector {
    t: Thresholds,
    /// Calls without a terminal event yet, by their request's seq.
    open: BTreeMap<u64, Open>,
    /// The newest request forgotten past `MAX_OPEN`: an execution answering
    /// it or an older one is not judged.
    forgotten: Option<u64>,
    /// The first event read: an execution answering a request before it
    /// is not judged (its story began before what was read).
    first_seq: Option<u64>,
    /// Approvals not yet resolved, by the `approval.requested` seq.
    pending: BTreeMap<u64, Pending>,
    unknown: Windows,
    auth: Windows,
    /// Calls that ran in the quarantine window: (evidence, quarantined).
    ran: VecDeque<(Seen, bool)>,
    quarantined: u64,
    quarantine_alerted_at: Option<u64>,
    /// Keys of the alerts already in the log (seen as `alert.raised`).
    written: BTreeSet<String>,
    /// The last event read.
    at_seq: u64,
}

fn body_str<'a>(e: &'a SealedEvent, key: &str) -> Option<&'a str> {
    e.event.body.get(key).and_then(ledger::Value::as_str)
}

fn body_u64(e: &SealedEvent, key: &str) -> Option<u64> {
    match e.event.body.get(key) {
        Some(ledger::Value::Int(n)) => u64::try_from(*n).ok(),
        _ => None,
    }
}

/// Decimal text of a ratio, for signed data (no floats there).
fn ratio_text(r: f64) -> String {
    let s = format!("{r:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() { "0".into() } else { s.to_owned() }
}

fn evidence(seen: &[Seen]) -> (Vec<Evidence>, bool) {
    let truncated = seen.len() > MAX_EVIDENCE;
    // The first and the newest matter most: the first names the episode,
    // the newest what tipped it.
    let list = if truncated {
        seen.iter()
            .take(MAX_EVIDENCE / 2)
            .chain(seen.iter().skip(seen.len() - MAX_EVIDENCE / 2))
            .map(Seen::evidence)
            .collect()
    } else {
        seen.iter().map(Seen::evidence).collect()
    };
    (list, truncated)
}

impl Detector {
    pub fn new(t: Thresholds) -> Detector {
        Detector {
            t,
            open: BTreeMap::new(),
            forgotten: None,
            first_seq: None,
            pending: BTreeMap::new(),
            unknown: Windows::default(),
            auth: Windows::default(),
            ran: VecDeque::new(),
            quarantined: 0,
            quarantine_alerted_at: None,
            written: BTreeSet::new(),
            at_seq: 0,
        }
    }

    pub fn thresholds(&self) -> &Thresholds {
        &self.t
    }

    /// An alert of this key is in the log already: it is never raised again.
    pub fn seed_written(&mut self, key: String) {
        self.written.insert(key);
    }

    /// Whether an alert of this key is already in the log.
    pub fn is_written(&self, key: &str) -> bool {
        self.written.contains(key)
    }

    fn on(&self, d: Detection) -> bool {
        !self.t.disabled.contains(&d)
    }

    #[allow(clippy::too_many_arguments, reason = "one alert's fields, named at each call")]
    fn alert(
        &self,
        detection: Detection,
        severity: AlertSeverity,
        key: String,
        summary: String,
        seen: &[Seen],
        threshold: String,
        observed: String,
        window_sec: Option<u64>,
        server: Option<String>,
    ) -> Alert {
        let (evidence, evidence_truncated) = evidence(seen);
        Alert {
            body: AlertRaised {
                detection,
                severity,
                summary,
                at_seq: self.at_seq,
                key,
                evidence,
                evidence_truncated,
                threshold,
                observed,
                window_sec,
            },
            server,
        }
    }

    /// Reads the next event of the log; the alerts it raises.
    pub fn observe(&mut self, e: &SealedEvent) -> Vec<Alert> {
        self.at_seq = e.event.seq;
        self.first_seq.get_or_insert(e.event.seq);
        let mut out = Vec::new();
        let answers = e.event.correlation.answers;
        let server = e.event.subject.server.clone();
        match &e.event.kind {
            // No alert is ever about an alert or a notification.
            // Only the detector's own alerts, about events before them,
            // count as written: another writer's cannot silence one.
            EventKind::AlertRaised => {
                let ours = e.event.actor.principal.as_deref() == Some(super::ALERTS_ACTOR);
                let before = body_u64(e, "at_seq").is_some_and(|at| at < e.event.seq);
                if ours
                    && before
                    && let Some(key) = body_str(e, "key")
                {
                    self.written.insert(key.to_owned());
                }
            }
            EventKind::NotificationDelivered | EventKind::NotificationFailed => {}
            EventKind::ToolCallRequested | EventKind::McpRequested => {
                let call = self.open_call(e.event.seq);
                call.request = Some(Seen::of(e));
                call.method = body_str(e, "mcp.method.name").map(str::to_owned);
            }
            EventKind::PolicyDecision => {
                let decision = body_str(e, "decision");
                if let Some(r) = answers {
                    let permit = match decision {
                        Some("ALLOW" | "ALLOW_WITH_CONSTRAINTS") => Permit::Run,
                        Some("REQUIRE_APPROVAL") => Permit::Held {
                            granted: false,
                            settled: false,
                        },
                        _ => Permit::No,
                    };
                    self.open_call(r).decision = Some((Seen::of(e), permit));
                }
                if decision == Some("DENY") && body_str(e, "gate") == Some("registry") {
                    self.unknown_server(e, server.as_deref().unwrap_or("?"), 1, &mut out);
                }
            }
            EventKind::ApprovalRequested => {
                if self.pending.len() >= MAX_OPEN {
                    self.pending.pop_first();
                }
                let at = e.event.ts.as_nanos();
                let gate = at.saturating_add(self.t.approval_wait_sec.saturating_mul(NS));
                let half_way = body_str(e, "expires_at")
                    .and_then(|x| ledger::Timestamp::parse_rfc3339(x).ok())
                    .map(|x| at + x.as_nanos().saturating_sub(at) / 2);
                let due_ns = half_way.map_or(gate, |h| h.min(gate));
                self.pending.insert(
                    e.event.seq,
                    Pending {
                        due_ns,
                        requested: Seen::of(e),
                        request: answers,
                        approval_id: body_str(e, "approval_id").unwrap_or("?").to_owned(),
                        server,
                        tool: e
                            .event
                            .subject
                            .tool
                            .clone()
                            .or_else(|| e.event.subject.prompt.clone())
                            .or_else(|| e.event.subject.resource.clone()),
                        requester: e.event.actor.principal.clone(),
                        alerted: false,
                    },
                );
            }
            EventKind::ApprovalGranted | EventKind::ApprovalDenied | EventKind::ApprovalExpired => {
                // It answers the call's request; in logs written before
                // 2026-12-07, the `approval.requested` event.
                let request = answers.map(|a| self.pending.get(&a).and_then(|p| p.request).unwrap_or(a));
                // Only the first resolution counts: a grant after a denial or
                // an expiry does not let the call run.
                if let Some((_, Permit::Held { granted, settled })) = request
                    .and_then(|r| self.open.get_mut(&r))
                    .and_then(|c| c.decision.as_mut())
                    && !*settled
                {
                    *settled = true;
                    *granted = e.event.kind == EventKind::ApprovalGranted;
                }
                let id = body_str(e, "approval_id");
                match body_u64(e, "approval.requested_seq") {
                    Some(s) => {
                        self.pending.remove(&s);
                    }
                    None => self.pending.retain(|_, p| Some(p.approval_id.as_str()) != id),
                }
            }
            EventKind::ExecutionCompleted | EventKind::ExecutionFailed => {
                if self.on(Detection::ApprovalBypassed)
                    && let Some(alert) = self.unpermitted(e, answers)
                {
                    out.push(alert);
                }
                self.ran(e, &mut out);
            }
            // The other terminal events.
            EventKind::CallRefused | EventKind::SessionOpened => {
                if let Some(r) = answers {
                    self.open.remove(&r);
                }
            }
            EventKind::AccessRefused => {
                let n = body_u64(e, "count").unwrap_or(1);
                match body_str(e, "reason") {
                    Some("unknown_server") => {
                        self.unknown_server(e, server.as_deref().unwrap_or("?"), n, &mut out);
                    }
                    Some(_) => self.auth_burst(e, n, &mut out),
                    None => {}
                }
            }
            EventKind::CheckpointWitnessed
                if self.on(Detection::WitnessRefused) && body_str(e, "outcome") == Some("refused") =>
            {
                let seen = Seen::of(e);
                let status = body_u64(e, "status");
                let witness = body_str(e, "witness").unwrap_or("?");
                let why = body_str(e, "error").unwrap_or("no reason given");
                // 422 and 409 say the log is not the one the witness saw
                // (not consistent with it, or shorter than it); the rest
                // are a witness that does not know this log or key.
                let (severity, meaning) = if status == Some(422) {
                    (
                        AlertSeverity::Critical,
                        "the log is not consistent with the one it cosigned before: it was forked, or its tail \
                         cut and rewritten; treat it as an incident",
                    )
                } else if status == Some(409) {
                    (
                        AlertSeverity::Critical,
                        "the witness cosigned a longer tree of this log than the log now holds: it lost events \
                         (a backup restored, its tail cut); treat it as an incident",
                    )
                } else {
                    (
                        AlertSeverity::High,
                        "it does not accept this log's checkpoints (unknown log or key, or a bad request): \
                         until fixed, nothing witnesses this log",
                    )
                };
                out.push(self.alert(
                    Detection::WitnessRefused,
                    severity,
                    format!("witness_refused:{}", seen.seq),
                    format!(
                        "witness {witness} refused the checkpoint of {} events ({}: {}): {meaning}",
                        body_u64(e, "size").unwrap_or(0),
                        status.map_or_else(|| "no status".to_owned(), |s| s.to_string()),
                        excerpt(why),
                    ),
                    &[seen],
                    "0".into(),
                    "1".into(),
                    None,
                    None,
                ));
            }
            EventKind::ToolsDrifted if self.on(Detection::ToolDrift) => {
                let seen = Seen::of(e);
                let names = |key: &str| -> Vec<String> {
                    match e.event.body.get(key) {
                        Some(ledger::Value::Object(o)) => o.keys().cloned().collect(),
                        Some(ledger::Value::Array(a)) => {
                            a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
                        }
                        _ => Vec::new(),
                    }
                };
                let (changed, added, removed) = (names("changed"), names("added"), names("removed"));
                let count = changed.len() + added.len() + removed.len();
                // Tool names come from the upstream: a summary names a few,
                // each cut short, so that no listing can make an alert too
                // large to write.
                let (changed, added, removed) = (few(&changed), few(&added), few(&removed));
                let who = match e.event.body.get("revealed_by") {
                    Some(ledger::Value::Object(r)) => r.get("principal").and_then(ledger::Value::as_str),
                    _ => None,
                }
                .or(e.event.actor.principal.as_deref())
                .unwrap_or("?");
                out.push(self.alert(
                    Detection::ToolDrift,
                    AlertSeverity::High,
                    format!("tool_drift:{}", seen.seq),
                    format!(
                        "server {} lists tools that differ from their pins (changed {changed:?}, added {added:?}, \
                         removed {removed:?}; revealed to {who}): calls to them are refused until re-approved; \
                         read the new definitions before `sealgate registry approve-tools`",
                        server.as_deref().unwrap_or("?"),
                    ),
                    &[seen],
                    "0".into(),
                    count.to_string(),
                    None,
                    server.clone(),
                ));
            }
            _ => {}
        }
        out.extend(self.tick(e.event.ts.as_nanos()));
        out.retain(|a| !self.written.contains(&a.body.key));
        out
    }

    fn unknown_server(&mut self, e: &SealedEvent, server: &str, n: u64, out: &mut Vec<Alert>) {
        if !self.on(Detection::UnknownServer) {
            return;
        }
        let window = self.t.unknown_server_window_sec;
        let Some((admit, seen, sum)) =
            self.unknown
                .cross(server, Seen::of(e), n, window.saturating_mul(NS), self.t.unknown_server)
        else {
            return;
        };
        let first = seen.first().map_or(0, |s| s.seq);
        match admit {
            Admit::Alert | Admit::Quiet => {}
            Admit::Fold => {
                out.push(self.alert(
                    Detection::UnknownServer,
                    AlertSeverity::High,
                    format!("unknown_server:many:{}", e.event.seq),
                    format!(
                        "more than {MAX_ALERTS_PER_WINDOW} servers the registry does not let in were asked for \
                         in {window} s (the latest {server:?}): a scan of server names or a misconfigured \
                         client; the window's other unknown servers raise no alert of their own: find them \
                         with `sealgate report refused-access`"
                    ),
                    &seen,
                    self.t.unknown_server.to_string(),
                    sum.to_string(),
                    Some(window),
                    None,
                ));
                return;
            }
        }
        out.push(self.alert(
            Detection::UnknownServer,
            AlertSeverity::High,
            format!("unknown_server:{server}:{first}"),
            format!(
                "{sum} request(s) in {window} s for server {server:?}, which the registry does not let in \
                 (unregistered, unapproved, quarantined or revoked): a shadow or stale MCP server; find the \
                 callers in the evidence, register the server or stop them"
            ),
            &seen,
            self.t.unknown_server.to_string(),
            sum.to_string(),
            Some(window),
            Some(server.to_owned()).filter(|s| s != "?"),
        ));
    }

    fn auth_burst(&mut self, e: &SealedEvent, n: u64, out: &mut Vec<Alert>) {
        if !self.on(Detection::AuthBurst) {
            return;
        }
        let source = body_str(e, "source.address").unwrap_or("?").to_owned();
        let window = self.t.auth_burst_window_sec;
        let Some((admit, seen, sum)) =
            self.auth
                .cross(&source, Seen::of(e), n, window.saturating_mul(NS), self.t.auth_burst)
        else {
            return;
        };
        let first = seen.first().map_or(0, |s| s.seq);
        match admit {
            Admit::Alert | Admit::Quiet => {}
            Admit::Fold => {
                out.push(self.alert(
                    Detection::AuthBurst,
                    AlertSeverity::High,
                    format!("auth_burst:many:{}", e.event.seq),
                    format!(
                        "bursts of refused authentication from more than {MAX_ALERTS_PER_WINDOW} sources in \
                         {window} s (the latest {source}): a distributed guessing attempt or many clients with \
                         a revoked token; the window's other sources raise no alert of their own: find them \
                         with `sealgate report refused-access`"
                    ),
                    &seen,
                    self.t.auth_burst.to_string(),
                    sum.to_string(),
                    Some(window),
                    None,
                ));
                return;
            }
        }
        out.push(self.alert(
            Detection::AuthBurst,
            AlertSeverity::High,
            format!("auth_burst:{source}:{first}"),
            format!(
                "{sum} refused authentication(s) from {source} in {window} s: someone guessing or replaying \
                 tokens, or a client with a revoked one; check the token hashes in the evidence and block \
                 the source if it is not yours"
            ),
            &seen,
            self.t.auth_burst.to_string(),
            sum.to_string(),
            Some(window),
            None,
        ));
    }

    /// The open call of request `r`, made if new (the oldest forgotten
    /// past `MAX_OPEN`).
    fn open_call(&mut self, r: u64) -> &mut Open {
        if !self.open.contains_key(&r)
            && self.open.len() >= MAX_OPEN
            && let Some((old, _)) = self.open.pop_first()
        {
            self.forgotten = self.forgotten.max(Some(old));
        }
        self.open.entry(r).or_default()
    }

    /// An execution answering request `answers`: the alert if the log's
    /// own story says it must not have run. It ran although its decision
    /// was DENY (or one not known), or REQUIRE_APPROVAL without a grant
    /// first; or with no decision; or it answers no request read (a second
    /// terminal event, or no request at all). A call whose request lies
    /// before what was read or was forgotten is not judged.
    fn unpermitted(&mut self, e: &SealedEvent, answers: Option<u64>) -> Option<Alert> {
        let exec = Seen::of(e);
        let judged = |r: u64| self.first_seq.is_some_and(|f| r >= f) && self.forgotten.is_none_or(|f| r > f);
        let (call, why) = match answers {
            None => (Open::default(), "it answers no request".to_string()),
            Some(r) => match self.open.remove(&r) {
                Some(call) => {
                    let why = match &call.decision {
                        Some((_, Permit::Run | Permit::Held { granted: true, .. })) => return None,
                        Some((d, Permit::Held { .. })) => format!(
                            "its decision (seq {}) required approval and no approval.granted answers it first",
                            d.seq
                        ),
                        Some((d, Permit::No)) => format!("its decision (seq {}) did not allow it", d.seq),
                        None if call.request.is_some() => "no policy.decision answers its request".to_string(),
                        None => return None,
                    };
                    (call, why)
                }
                None if judged(r) => (
                    Open::default(),
                    format!("its request (seq {r}) is not an open call: it already ended, or is no request"),
                ),
                None => return None,
            },
        };
        let server = e.event.subject.server.clone();
        // What ran: the tool, prompt or resource, else the request's method.
        let subject = &e.event.subject;
        let tool = subject
            .tool
            .as_deref()
            .or(subject.prompt.as_deref())
            .or(subject.resource.as_deref())
            .or(call.method.as_deref())
            .unwrap_or("?")
            .to_owned();
        let mut seen: Vec<Seen> = call.request.into_iter().collect();
        seen.extend(call.decision.map(|(d, _)| d));
        seen.push(exec.clone());
        Some(self.alert(
            Detection::ApprovalBypassed,
            AlertSeverity::Critical,
            format!("approval_bypassed:{}", exec.seq),
            format!(
                "call of {tool} on {} ran (seq {}) although {why}: this must never happen; stop the gateway, \
                 keep the ledger and verify it",
                server.as_deref().unwrap_or("?"),
                exec.seq,
            ),
            &seen,
            "0".into(),
            "1".into(),
            None,
            server,
        ))
    }

    fn ran(&mut self, e: &SealedEvent, out: &mut Vec<Alert>) {
        let seen = Seen::of(e);
        let now = seen.ts;
        let window_ns = self.t.quarantine_window_sec.saturating_mul(NS);
        let quarantined = body_str(e, "outcome") == Some("quarantined");
        self.ran.push_back((seen, quarantined));
        self.quarantined += u64::from(quarantined);
        while let Some((first, q)) = self.ran.front() {
            if now.saturating_sub(first.ts) >= window_ns {
                self.quarantined -= u64::from(*q);
                self.ran.pop_front();
            } else {
                break;
            }
        }
        if !self.on(Detection::QuarantineRatio) {
            return;
        }
        let calls = self.ran.len() as u64;
        let cooling = self
            .quarantine_alerted_at
            .is_some_and(|t| now.saturating_sub(t) < window_ns);
        #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
        let ratio = self.quarantined as f64 / calls.max(1) as f64;
        if calls < self.t.quarantine_min_calls.max(1) || ratio <= self.t.quarantine_ratio || cooling {
            return;
        }
        self.quarantine_alerted_at = Some(now);
        let window = self.t.quarantine_window_sec;
        let q: Vec<Seen> = self.ran.iter().filter(|(_, q)| *q).map(|(s, _)| s.clone()).collect();
        let first = q.first().map_or(0, |s| s.seq);
        out.push(self.alert(
            Detection::QuarantineRatio,
            AlertSeverity::High,
            format!("quarantine_ratio:{first}"),
            format!(
                "{} of {calls} call(s) in {window} s had their result quarantined (ratio {}, gate {}): an \
                 upstream returning secrets or personal data; review the quarantined results and the servers \
                 in the evidence",
                self.quarantined,
                ratio_text(ratio),
                ratio_text(self.t.quarantine_ratio)
            ),
            &q,
            ratio_text(self.t.quarantine_ratio),
            ratio_text(ratio),
            Some(window),
            None,
        ));
    }

    /// The clock reached `now_ns` (UTC ns): approvals waiting longer than
    /// the gate, or half their time to expire.
    pub fn tick(&mut self, now_ns: u64) -> Vec<Alert> {
        if !self.on(Detection::ApprovalWaiting) {
            return Vec::new();
        }
        let due: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| !p.alerted && now_ns >= p.due_ns)
            .map(|(s, _)| *s)
            .collect();
        let mut out = Vec::new();
        for s in due {
            let Some(p) = self.pending.get_mut(&s) else {
                continue;
            };
            p.alerted = true;
            let waited = now_ns.saturating_sub(p.requested.ts) / NS;
            let limit = p.due_ns.saturating_sub(p.requested.ts) / NS;
            let (id, server, tool, requester, seen) = (
                p.approval_id.clone(),
                p.server.clone(),
                p.tool.clone(),
                p.requester.clone(),
                p.requested.clone(),
            );
            out.push(self.alert(
                Detection::ApprovalWaiting,
                AlertSeverity::High,
                format!("approval_waiting:{s}"),
                format!(
                    "approval {id} ({} on {}, asked by {}) has waited {waited} s, over {limit} s (the gate of {} s, \
                     or half its time to expire): an approver should decide it (`sealgate approvals approve {id}` \
                     or `deny`)",
                    tool.as_deref().unwrap_or("?"),
                    server.as_deref().unwrap_or("?"),
                    requester.as_deref().unwrap_or("?"),
                    self.t.approval_wait_sec
                ),
                &[seen],
                limit.to_string(),
                waited.to_string(),
                None,
                server,
            ));
        }
        out.retain(|a| !self.written.contains(&a.body.key));
        out
    }
}

/// At most 20 of `names`, each cut to 128 characters, and how many more.
fn few(names: &[String]) -> String {
    const MOST: usize = 20;
    const LONGEST: usize = 128;
    let mut shown: Vec<String> = names
        .iter()
        .take(MOST)
        .map(|n| {
            let cut: String = n.chars().take(LONGEST).collect();
            if cut.len() < n.len() { format!("{cut}…") } else { cut }
        })
        .collect();
    if names.len() > MOST {
        shown.push(format!("and {} more", names.len() - MOST));
    }
    format!("{shown:?}")
}

/// A witness's words, cut short: at most 256 characters.
fn excerpt(text: &str) -> String {
    const LONGEST: usize = 256;
    let cut: String = text.chars().take(LONGEST).collect();
    if cut.len() < text.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(seq: u64, sec: u64) -> Seen {
        Seen {
            seq,
            hash: format!("{seq:064x}"),
            kind: "access.refused".into(),
            ts: sec * NS,
        }
    }

    /// A window raises at the threshold, not before; then not again for
    /// the same key until a window has passed; old counts leave the window.
    #[test]
    fn a_window_raises_once_per_episode() {
        let mut w = Windows::default();
        let window = 60 * NS;
        assert!(w.add("a", seen(1, 0), 2, window, 5).is_none());
        assert!(
            w.add("b", seen(2, 1), 9, window, 5).is_some(),
            "another key counts alone"
        );
        let (items, sum) = w.add("a", seen(3, 10), 3, window, 5).expect("at the threshold");
        assert_eq!((items.len(), sum), (2, 5));
        assert!(w.add("a", seen(4, 20), 9, window, 5).is_none(), "cooling down");
        // At 75 s the first two have left the window and the cooldown is over.
        let (items, sum) = w.add("a", seen(5, 75), 1, window, 5).expect("a new episode");
        assert_eq!(items.iter().map(|s| s.seq).collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(sum, 10);
        assert!(w.add("c", seen(6, 80), 4, window, 5).is_none(), "under the threshold");
    }

    /// A drift's summary names at most 20 tools, each at most 128
    /// characters: an upstream's listing cannot make it too large to write.
    #[test]
    fn a_drift_summary_names_a_few_tools_cut_short() {
        let names: Vec<String> = (0..50).map(|i| format!("{i}{}", "\"".repeat(300_000))).collect();
        let text = few(&names);
        assert!(text.len() < 20 * 2 * 140 + 100, "{} bytes", text.len());
        assert!(text.contains("and 30 more"), "{}", &text[text.len() - 40..]);
        assert_eq!(few(&["a".into(), "b".into()]), r#"["a", "b"]"#);
    }

    #[test]
    fn ratios_are_decimal_text() {
        assert_eq!(ratio_text(2.0 / 3.0), "0.6667");
        assert_eq!(ratio_text(0.3), "0.3");
        assert_eq!(ratio_text(0.0), "0");
        assert_eq!(ratio_text(1.0), "1");
    }

    /// One event of a story: its kind, the seq it answers, its body.
    type Step<'a> = (EventKind, Option<u64>, &'a [(&'a str, &'a str)]);

    /// A story's events from seq 1, one second apart, as the detector
    /// reads them.
    fn story(events: &[Step<'_>]) -> Vec<SealedEvent> {
        events
            .iter()
            .enumerate()
            .map(|(i, (kind, answers, body))| {
                let mut d = ledger::Draft::new(kind.clone());
                d.subject.server = Some("fs".into());
                d.subject.tool = Some("write_file".into());
                d.correlation.answers = *answers;
                for (k, v) in *body {
                    d.body.insert((*k).into(), ledger::Value::from(*v));
                }
                sealed(i as u64 + 1, d)
            })
            .collect()
    }

    /// `d` as the event at `seq`, at `seq` seconds, as the detector reads
    /// it (hash and signature placeholders: the detector checks neither).
    fn sealed(seq: u64, d: ledger::Draft) -> SealedEvent {
        SealedEvent {
            event: ledger::Event::from_draft(
                d,
                seq,
                ledger::Timestamp::from_nanos(seq * NS),
                ledger::Hash([0; 32]),
                ledger::KeyId([0; 16]),
            ),
            hash: ledger::Hash([seq as u8; 32]),
            signature: ed25519_dalek::Signature::from_bytes(&[0; 64]),
            canonical: Vec::new(),
        }
    }

    fn thresholds() -> Thresholds {
        Thresholds {
            disabled: BTreeSet::new(),
            unknown_server: 100,
            unknown_server_window_sec: 60,
            auth_burst: 100,
            auth_burst_window_sec: 60,
            quarantine_ratio: 1.0,
            quarantine_window_sec: 60,
            quarantine_min_calls: 100,
            approval_wait_sec: 3600,
        }
    }

    /// A witness's refusal is an alert, critical when it is the alarm for
    /// a rewritten log (422); a cosignature or an unreachable witness is
    /// not.
    #[test]
    fn a_witness_refusal_is_an_alert() {
        let answers: Vec<SealedEvent> = [
            ("cosigned", Some(200)),
            ("unreachable", None),
            ("refused", Some(422)),
            ("refused", Some(403)),
            ("refused", Some(409)),
        ]
        .iter()
        .enumerate()
        .map(|(i, (outcome, status))| {
            let mut d = ledger::Draft::new(EventKind::CheckpointWitnessed);
            for (k, v) in [("witness", "w1"), ("outcome", *outcome), ("error", "not consistent")] {
                d.body.insert(k.into(), ledger::Value::from(v));
            }
            d.body.insert("size".into(), ledger::Value::Int(7));
            if let Some(s) = status {
                d.body.insert("status".into(), ledger::Value::Int(*s));
            }
            sealed(i as u64 + 1, d)
        })
        .collect();
        let mut d = Detector::new(thresholds());
        let raised: Vec<(u64, AlertSeverity)> = answers
            .iter()
            .flat_map(|e| d.observe(e))
            .map(|a| (a.body.evidence[0].seq, a.body.severity))
            .collect();
        assert_eq!(
            raised,
            vec![
                (3, AlertSeverity::Critical),
                (4, AlertSeverity::High),
                (5, AlertSeverity::Critical)
            ]
        );
        let mut off = thresholds();
        off.disabled.insert(Detection::WitnessRefused);
        let mut d = Detector::new(off);
        assert!(answers.iter().all(|e| d.observe(e).is_empty()), "disabled");
    }

    /// An undecided approval is raised after the gate's wait, or half-way
    /// to its expiry when that comes first (with the default gate of an
    /// hour, a 10-minute approval would otherwise expire unseen); once.
    #[test]
    fn an_approval_waiting_is_raised_before_it_can_expire_unseen() {
        let requested = |seq: u64, expires_in: Option<u64>| {
            let mut d = ledger::Draft::new(EventKind::ApprovalRequested);
            d.body.insert("approval_id".into(), ledger::Value::from("a-1"));
            if let Some(secs) = expires_in {
                let at = ledger::Timestamp::from_nanos((seq + secs) * NS);
                d.body
                    .insert("expires_at".into(), ledger::Value::from(at.to_string().as_str()));
            }
            sealed(seq, d)
        };
        // Requested at 10 s; expires 600 s later: due at 310 s, not 3610 s.
        let mut d = Detector::new(thresholds());
        assert!(d.observe(&requested(10, Some(600))).is_empty());
        assert!(d.tick(309 * NS).is_empty(), "before half-way");
        let raised = d.tick(310 * NS);
        assert_eq!(raised.len(), 1, "half-way to its expiry");
        assert_eq!(raised[0].body.detection, Detection::ApprovalWaiting);
        assert!(d.tick(400 * NS).is_empty(), "once");
        // No expiry, or one past the gate: the gate's wait.
        for expires_in in [None, Some(100_000)] {
            let mut d = Detector::new(thresholds());
            assert!(d.observe(&requested(10, expires_in)).is_empty());
            assert!(d.tick(3_609 * NS).is_empty(), "{expires_in:?}");
            assert_eq!(d.tick(3_610 * NS).len(), 1, "{expires_in:?}");
        }
    }

    fn bypassed(events: &[SealedEvent]) -> Vec<Vec<u64>> {
        let mut d = Detector::new(thresholds());
        events
            .iter()
            .flat_map(|e| d.observe(e))
            .filter(|a| a.body.detection == Detection::ApprovalBypassed)
            .map(|a| a.body.evidence.iter().map(|e| e.seq).collect())
            .collect()
    }

    /// An execution is judged against its call's own story: it may run on
    /// ALLOW, ALLOW_WITH_CONSTRAINTS, or REQUIRE_APPROVAL granted first;
    /// anything else that ran is an alert naming the request, the decision
    /// and the execution. A call whose request lies before what was read
    /// is not judged.
    #[test]
    fn an_execution_must_be_permitted_by_its_own_story() {
        use EventKind::*;
        let decision = |d: &'static str| -> &'static [(&'static str, &'static str)] {
            match d {
                "ALLOW" => &[("decision", "ALLOW")],
                "ALLOW_WITH_CONSTRAINTS" => &[("decision", "ALLOW_WITH_CONSTRAINTS")],
                "REQUIRE_APPROVAL" => &[("decision", "REQUIRE_APPROVAL")],
                "DENY" => &[("decision", "DENY"), ("gate", "policy")],
                _ => &[("decision", "MAYBE")],
            }
        };
        let ran: &[(&str, &str)] = &[("outcome", "ok")];
        for ok in ["ALLOW", "ALLOW_WITH_CONSTRAINTS"] {
            let e = story(&[
                (ToolCallRequested, None, &[]),
                (PolicyDecision, Some(1), decision(ok)),
                (ExecutionCompleted, Some(1), ran),
            ]);
            assert_eq!(bypassed(&e), Vec::<Vec<u64>>::new(), "{ok}");
        }
        let granted = story(&[
            (ToolCallRequested, None, &[]),
            (PolicyDecision, Some(1), decision("REQUIRE_APPROVAL")),
            (ApprovalRequested, Some(1), &[("approval_id", "a1")]),
            (ApprovalGranted, Some(1), &[("approval_id", "a1")]),
            (ExecutionFailed, Some(1), ran),
        ]);
        assert_eq!(bypassed(&granted), Vec::<Vec<u64>>::new());
        for not in ["REQUIRE_APPROVAL", "DENY", "MAYBE"] {
            let e = story(&[
                (ToolCallRequested, None, &[]),
                (PolicyDecision, Some(1), decision(not)),
                (ExecutionCompleted, Some(1), ran),
            ]);
            assert_eq!(bypassed(&e), vec![vec![1, 2, 3]], "{not}");
        }
        // Granted only after it was denied (or expired): not a grant.
        for first in [ApprovalDenied, ApprovalExpired] {
            let e = story(&[
                (ToolCallRequested, None, &[]),
                (PolicyDecision, Some(1), decision("REQUIRE_APPROVAL")),
                (ApprovalRequested, Some(1), &[("approval_id", "a1")]),
                (first.clone(), Some(1), &[("approval_id", "a1")]),
                (ApprovalGranted, Some(1), &[("approval_id", "a1")]),
                (ExecutionCompleted, Some(1), ran),
            ]);
            assert_eq!(bypassed(&e), vec![vec![1, 2, 6]], "{first}");
        }
        // No decision; run twice; answering no request; answering an event
        // that is no request.
        let none = story(&[(McpRequested, None, &[]), (ExecutionCompleted, Some(1), ran)]);
        assert_eq!(bypassed(&none), vec![vec![1, 2]]);
        let twice = story(&[
            (ToolCallRequested, None, &[]),
            (PolicyDecision, Some(1), decision("ALLOW")),
            (ExecutionCompleted, Some(1), ran),
            (ExecutionCompleted, Some(1), ran),
        ]);
        assert_eq!(bypassed(&twice), vec![vec![4]]);
        let orphan = story(&[(ExecutionCompleted, None, ran)]);
        assert_eq!(bypassed(&orphan), vec![vec![1]]);
        let refused_then_ran = story(&[
            (ToolCallRequested, None, &[]),
            (PolicyDecision, Some(1), decision("DENY")),
            (CallRefused, Some(1), &[]),
            (ExecutionCompleted, Some(1), ran),
        ]);
        assert_eq!(bypassed(&refused_then_ran), vec![vec![4]]);
        // Read from the middle: the request and decision lie before.
        let e = story(&[
            (ToolCallRequested, None, &[]),
            (PolicyDecision, Some(1), decision("DENY")),
            (ExecutionCompleted, Some(1), ran),
        ]);
        assert_eq!(bypassed(&e[2..]), Vec::<Vec<u64>>::new(), "not judged");
        assert_eq!(bypassed(&e[1..]), vec![vec![2, 3]], "the decision alone is enough");
    }

    /// A scan over many server names raises ten alerts and then one that
    /// stands for the rest of its window; a window later, alerts again.
    #[test]
    fn a_scan_of_server_names_raises_a_few_alerts_not_one_per_name() {
        let steps: Vec<Step<'_>> = (0..100)
            .map(|_| (EventKind::AccessRefused, None, &[("reason", "unknown_server")][..]))
            .collect();
        let mut events = story(&steps);
        for (i, e) in events.iter_mut().enumerate() {
            e.event.subject.server = Some(format!("shadow-{i}"));
        }
        let mut d = Detector::new(Thresholds {
            disabled: BTreeSet::new(),
            unknown_server: 1,
            unknown_server_window_sec: 60,
            auth_burst: 100,
            auth_burst_window_sec: 60,
            quarantine_ratio: 1.0,
            quarantine_window_sec: 60,
            quarantine_min_calls: 100,
            approval_wait_sec: 3600,
        });
        // Seq 1..=100, one a second: the window of 60 s begins again at 61.
        let keys: Vec<String> = events.iter().flat_map(|e| d.observe(e)).map(|a| a.body.key).collect();
        let mut want: Vec<String> = (0..10)
            .map(|i| format!("unknown_server:shadow-{i}:{}", i + 1))
            .collect();
        want.push("unknown_server:many:11".into());
        want.extend((60..70).map(|i| format!("unknown_server:shadow-{i}:{}", i + 1)));
        want.push("unknown_server:many:71".into());
        assert_eq!(keys, want);
    }

    /// A real gateway run (the recorded golden runs) raises no alert of it.
    #[test]
    fn recorded_gateway_runs_raise_no_bypass() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/events");
        for name in ["gateway-run-2026-12-06.jsonl", "gateway-run-2026-12-06-withdrawn.jsonl"] {
            let text = std::fs::read_to_string(dir.join(name)).expect("golden run");
            let events: Vec<SealedEvent> = text
                .lines()
                .map(|line| {
                    let v: serde_json::Value = serde_json::from_str(line).expect("json");
                    let envelope = ledger::Value::from_json_str(&v["event"].to_string()).expect("value");
                    let event = ledger::Event::decode(&envelope.to_canonical()).expect("event");
                    SealedEvent {
                        event,
                        hash: ledger::Hash([0; 32]),
                        signature: ed25519_dalek::Signature::from_bytes(&[0; 64]),
                        canonical: Vec::new(),
                    }
                })
                .collect();
            let execs = events
                .iter()
                .filter(|e| matches!(e.event.kind, EventKind::ExecutionCompleted | EventKind::ExecutionFailed))
                .count();
            assert!(execs > 0 || name.contains("withdrawn"), "{name}: no execution to judge");
            assert_eq!(bypassed(&events), Vec::<Vec<u64>>::new(), "{name}");
        }
    }

    /// At most 32 evidence events: the first and the last 16.
    #[test]
    fn evidence_keeps_the_first_and_the_last() {
        let many: Vec<Seen> = (0..40).map(|i| seen(i, i)).collect();
        let (list, truncated) = evidence(&many);
        assert!(truncated);
        let seqs: Vec<u64> = list.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (0..16).chain(24..40).collect::<Vec<_>>());
        let (list, truncated) = evidence(&many[..3]);
        assert_eq!((list.len(), truncated), (3, false));
    }
}
