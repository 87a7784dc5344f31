//! Counting calls against the policy's `limits:`.
//!
//! A call the policy admits (ALLOW, ALLOW_WITH_CONSTRAINTS, or sent for
//! approval) is counted by every limit whose `match` holds, under the
//! limit's counters for the call (`Limit::keys`). If any counter is full the
//! call is denied and counted nowhere, so a refused caller does not use up
//! their own window by retrying.
//!
//! - A `rate` is a sliding window kept in memory: the times of the calls in
//!   the last `per`. At most `calls` calls in any window of that length. A
//!   restart forgets it.
//! - A `quota` is a fixed window aligned to the Unix epoch (a `1d` quota
//!   resets at 00:00 UTC). Each admitted call's decision records the quota
//!   counters it used (`quota` in `policy.decision`), so the count is a fold
//!   of the log: on first use of a quota (at start, or when a policy brings
//!   it) its count for the current window is read back from the ledger.
//!
//! Check and count are one step under one lock, so concurrent calls cannot
//! both take the last place.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ledger::{EventKind, Ledger, Timestamp};

use super::policy::{Facts, Limit, LimitKind, Policy, Window};

/// A limit a call would go over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exceeded {
    pub id: String,
    pub kind: LimitKind,
    pub window: Window,
    pub key: String,
}

impl Exceeded {
    /// The decision's reason, deterministic: names the limit, its window
    /// and the counter.
    pub fn reason(&self) -> String {
        let by = if self.key.is_empty() {
            String::new()
        } else {
            format!(" for {}", self.key)
        };
        let what = match self.kind {
            LimitKind::Rate => "rate limit",
            LimitKind::Quota => "quota",
        };
        format!("{what} {:?} reached: {}{by}", self.id, self.window)
    }

    pub fn to_event(&self) -> events::LimitHit {
        events::LimitHit {
            id: self.id.clone(),
            kind: match self.kind {
                LimitKind::Rate => events::LimitKind::Rate,
                LimitKind::Quota => events::LimitKind::Quota,
            },
            calls: self.window.calls,
            per_sec: self.window.per_sec,
            key: self.key.clone(),
        }
    }

    pub fn code(&self) -> events::ReasonCode {
        match self.kind {
            LimitKind::Rate => events::ReasonCode::RateLimited,
            LimitKind::Quota => events::ReasonCode::QuotaExhausted,
        }
    }
}

/// The calls in a sliding window, oldest first.
struct Rate {
    per: Duration,
    times: VecDeque<Instant>,
}

impl Rate {
    fn prune(&mut self, now: Instant) {
        while self.times.front().is_some_and(|t| now.duration_since(*t) >= self.per) {
            self.times.pop_front();
        }
    }
}

/// The calls in the current fixed window.
struct Quota {
    per_sec: u64,
    /// `unix seconds / per_sec` of the window counted.
    window: u64,
    count: u64,
}

#[derive(Default)]
struct Counters {
    rates: HashMap<(String, String), Rate>,
    quotas: HashMap<(String, String), Quota>,
    /// Sizes after the last sweep of idle counters.
    swept_at: usize,
}

/// The counters of a running gateway.
#[derive(Default)]
pub struct Limiter {
    counters: Mutex<Counters>,
    /// Quotas (id, period) whose count was read back from the ledger.
    recovered: tokio::sync::Mutex<HashSet<(String, u64)>>,
    /// The hash of the policy whose quotas are all read back: every call
    /// under it skips [`Limiter::recover`]'s work (and its async lock).
    recovered_policy: Mutex<Option<String>>,
}

impl Limiter {
    fn lock(&self) -> MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts the call under every limit that applies, or says which one it
    /// would go over (then nothing is counted). `now` and `unix_sec` are
    /// the same moment on the monotonic and the wall clock. Returns the
    /// quota counters used, for the decision to record.
    pub fn admit(
        &self,
        limits: &[Limit],
        facts: &Facts<'_>,
        now: Instant,
        unix_sec: u64,
    ) -> Result<Vec<events::QuotaCount>, Exceeded> {
        let applying: Vec<(&Limit, Vec<String>)> = limits
            .iter()
            .filter(|l| l.applies(facts))
            .map(|l| (l, l.keys(facts)))
            .collect();
        if applying.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.lock();
        for (limit, keys) in &applying {
            for key in keys {
                if let Some(w) = limit.rate()
                    && let Some(rate) = c.rates.get_mut(&(limit.id().to_string(), key.clone()))
                    && rate.per == Duration::from_secs(w.per_sec)
                {
                    rate.prune(now);
                    if rate.times.len() as u64 >= w.calls {
                        return Err(exceeded(limit, LimitKind::Rate, w, key));
                    }
                }
                if let Some(w) = limit.quota()
                    && let Some(q) = c.quotas.get(&(limit.id().to_string(), key.clone()))
                    && q.per_sec == w.per_sec
                    && q.window == unix_sec / w.per_sec
                    && q.count >= w.calls
                {
                    return Err(exceeded(limit, LimitKind::Quota, w, key));
                }
            }
        }
        let mut used = Vec::new();
        for (limit, keys) in applying {
            for key in keys {
                if let Some(w) = limit.rate() {
                    let per = Duration::from_secs(w.per_sec);
                    let rate = c
                        .rates
                        .entry((limit.id().to_string(), key.clone()))
                        .or_insert_with(|| Rate {
                            per,
                            times: VecDeque::new(),
                        });
                    if rate.per != per {
                        *rate = Rate {
                            per,
                            times: VecDeque::new(),
                        };
                    }
                    rate.times.push_back(now);
                }
                if let Some(w) = limit.quota() {
                    let window = unix_sec / w.per_sec;
                    let q = c.quotas.entry((limit.id().to_string(), key.clone())).or_insert(Quota {
                        per_sec: w.per_sec,
                        window,
                        count: 0,
                    });
                    if q.per_sec != w.per_sec || q.window != window {
                        *q = Quota {
                            per_sec: w.per_sec,
                            window,
                            count: 0,
                        };
                    }
                    q.count += 1;
                    used.push(events::QuotaCount {
                        id: limit.id().to_string(),
                        key,
                    });
                }
            }
        }
        sweep(&mut c, now, unix_sec);
        Ok(used)
    }

    /// Reads back, once per quota (id and period), the calls counted in its
    /// current window from the ledger: at start, and when a newly loaded
    /// policy brings a quota. The scan runs off the async workers; calls
    /// wait for it.
    pub async fn recover(&self, ledger: &std::sync::Arc<Ledger>, policy: &Policy) -> Result<(), ledger::Error> {
        let current = || {
            self.recovered_policy
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if current().as_deref() == Some(policy.hash()) {
            return Ok(());
        }
        self.recover_quotas(ledger, policy).await?;
        *current() = Some(policy.hash().to_string());
        Ok(())
    }

    async fn recover_quotas(&self, ledger: &std::sync::Arc<Ledger>, policy: &Policy) -> Result<(), ledger::Error> {
        let wanted: Vec<(String, u64)> = policy
            .limits()
            .iter()
            .filter_map(|l| l.quota().map(|q| (l.id().to_string(), q.per_sec)))
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let mut done = self.recovered.lock().await;
        // A quota the policy no longer has (or has with another period) is
        // forgotten, so that bringing it back reads it again.
        done.retain(|w| wanted.contains(w));
        let missing: Vec<(String, u64)> = wanted.into_iter().filter(|w| !done.contains(w)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let now = unix_sec(Timestamp::now());
        let ledger = ledger.clone();
        let scan = missing.clone();
        let counts = tokio::task::spawn_blocking(move || count_in_windows(&ledger, &scan, now))
            .await
            .map_err(|e| ledger::Error::Thread {
                what: "quota count",
                cause: std::io::Error::other(e.to_string()),
            })??;
        let mut c = self.lock();
        for ((id, per_sec), keys) in missing.iter().zip(counts) {
            c.quotas.retain(|(qid, _), _| qid != id);
            for (key, count) in keys {
                c.quotas.insert(
                    (id.clone(), key),
                    Quota {
                        per_sec: *per_sec,
                        window: now / per_sec,
                        count,
                    },
                );
            }
        }
        drop(c);
        done.extend(missing);
        Ok(())
    }
}

fn exceeded(limit: &Limit, kind: LimitKind, window: Window, key: &str) -> Exceeded {
    Exceeded {
        id: limit.id().to_string(),
        kind,
        window,
        key: key.to_string(),
    }
}

/// Drops counters with nothing in their window, when the maps have doubled
/// since the last sweep: memory follows the callers active now.
fn sweep(c: &mut Counters, now: Instant, unix_sec: u64) {
    let size = c.rates.len() + c.quotas.len();
    if size < 1024 || size < c.swept_at * 2 {
        return;
    }
    c.rates.retain(|_, r| {
        r.prune(now);
        !r.times.is_empty()
    });
    c.quotas.retain(|_, q| q.window == unix_sec / q.per_sec);
    c.swept_at = c.rates.len() + c.quotas.len();
}

pub fn unix_sec(ts: Timestamp) -> u64 {
    ts.as_nanos() / 1_000_000_000
}

/// For each quota (id, period), the calls counted per key in its window
/// holding `now`, from the decisions' `quota` records.
fn count_in_windows(
    ledger: &Ledger,
    quotas: &[(String, u64)],
    now: u64,
) -> Result<Vec<HashMap<String, u64>>, ledger::Error> {
    let mut counts = vec![HashMap::new(); quotas.len()];
    let starts: Vec<u64> = quotas.iter().map(|(_, per)| now / per * per).collect();
    let Some(earliest) = starts.iter().min().copied() else {
        return Ok(counts);
    };
    let from = ledger.locate_at_or_after(Timestamp::from_nanos(earliest.saturating_mul(1_000_000_000)))?;
    let (Some(from), Some(to)) = (from.seq, ledger.last_stored_seq()?) else {
        return Ok(counts);
    };
    for sealed in ledger.events(from, to)? {
        let event = sealed?.event;
        if event.kind != EventKind::PolicyDecision {
            continue;
        }
        let at = unix_sec(event.ts);
        let decision = events::decode::<events::Decision>(&event).map_err(|e| ledger::Error::Malformed {
            seq: event.seq,
            reason: format!("policy.decision does not decode: {e}"),
        })?;
        for counted in decision.quota {
            for (i, (id, _)) in quotas.iter().enumerate() {
                if *id == counted.id && at >= starts[i] {
                    *counts[i].entry(counted.key.clone()).or_insert(0) += 1;
                }
            }
        }
    }
    Ok(counts)
}

impl Limiter {
    /// Applies the policy's limits to a call the policy admitted: counts it
    /// (recording the quota counters in the ruling), or turns the ruling
    /// into a DENY that names the limit. Rulings of other gates, denials,
    /// and the server's own requests to the client (sampling, elicitation,
    /// roots: an upstream must not use up its caller's limits) are left
    /// alone.
    pub fn apply(
        &self,
        policy: &Policy,
        state: &super::GovState,
        call: &super::CallRequest<'_>,
        server_to_client: bool,
        ruling: &mut super::Ruling,
        now: Timestamp,
    ) {
        if server_to_client
            || ruling.gate != super::Gate::Policy
            || ruling.verdict == super::Verdict::Deny
            || ruling.evaluation.is_none()
            || policy.limits().is_empty()
        {
            return;
        }
        // The registry gate let the call through, so the server is there;
        // were it not, the limits could not be matched: deny.
        let Some(server) = state.registry.get(call.server) else {
            ruling.verdict = super::Verdict::Deny;
            ruling.code = events::ReasonCode::UnregisteredServer;
            ruling.reason = format!(
                "server {:?} is not in the registry: its limits cannot be counted",
                call.server
            );
            return;
        };
        let facts = super::decide::facts(call, server, ruling.action);
        match self.admit(policy.limits(), &facts, Instant::now(), unix_sec(now)) {
            Ok(used) => ruling.quota = used,
            Err(hit) => {
                let rule = ruling.evaluation.as_ref().and_then(|e| e.rule.as_deref()).unwrap_or("");
                ruling.verdict = super::Verdict::Deny;
                ruling.code = hit.code();
                ruling.reason = format!("{} (rule {rule:?} matched)", hit.reason());
                ruling.limit = Some(hit.to_event());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::governance::policy::Facts;

    fn policy(limits: &str) -> Policy {
        Policy::parse(&format!("version: v1\nrules: []\nlimits:\n{limits}"), "<policy>").expect("policy")
    }

    fn facts<'a>(principal: &'a str, teams: &'a [String]) -> Facts<'a> {
        Facts {
            server: "fs",
            method: "tools/call",
            target: Some("read_file"),
            principal,
            teams,
            env: &[],
            risk: &[],
            action: None,
        }
    }

    #[test]
    fn a_rate_refuses_the_call_after_its_count_within_any_window() {
        let p = policy("  - id: m\n    by: principal\n    rate: { calls: 3, per: 1m }\n");
        let l = Limiter::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        for s in [0, 10, 20] {
            assert_eq!(l.admit(p.limits(), &facts("alice", &[]), at(s), 1_000 + s), Ok(vec![]));
        }
        let hit = l
            .admit(p.limits(), &facts("alice", &[]), at(30), 1_030)
            .expect_err("4th in a minute");
        assert_eq!(
            (hit.id.as_str(), hit.kind, hit.key.as_str()),
            ("m", LimitKind::Rate, "principal=\"alice\"")
        );
        assert_eq!(
            hit.reason(),
            "rate limit \"m\" reached: 3 calls per 1m for principal=\"alice\""
        );
        // Another caller has a counter of their own.
        assert!(l.admit(p.limits(), &facts("bob", &[]), at(30), 1_030).is_ok());
        // Refusals are not counted: at 60 s the first call leaves the window
        // and one place opens, not more.
        assert!(l.admit(p.limits(), &facts("alice", &[]), at(59), 1_059).is_err());
        assert!(l.admit(p.limits(), &facts("alice", &[]), at(60), 1_060).is_ok());
        assert!(l.admit(p.limits(), &facts("alice", &[]), at(61), 1_061).is_err());
    }

    #[test]
    fn a_quota_resets_with_its_epoch_aligned_window_and_is_recorded() {
        let p = policy("  - id: d\n    quota: { calls: 2, per: 1d }\n");
        let l = Limiter::default();
        let now = Instant::now();
        let day = 86_400 * 20_000;
        let used = l.admit(p.limits(), &facts("a", &[]), now, day + 5).expect("first");
        assert_eq!(
            used,
            vec![events::QuotaCount {
                id: "d".into(),
                key: String::new()
            }]
        );
        assert!(l.admit(p.limits(), &facts("b", &[]), now, day + 86_399).is_ok());
        let hit = l
            .admit(p.limits(), &facts("c", &[]), now, day + 86_399)
            .expect_err("full");
        assert_eq!(hit.code(), events::ReasonCode::QuotaExhausted);
        assert!(
            l.admit(p.limits(), &facts("c", &[]), now, day + 86_400).is_ok(),
            "next UTC day"
        );
    }

    #[test]
    fn a_call_one_limit_refuses_is_counted_by_none() {
        let p = policy(
            "  - id: wide\n    rate: { calls: 10, per: 1m }\n  - id: narrow\n    by: principal\n    rate: { calls: 1, per: 1m }\n",
        );
        let l = Limiter::default();
        let now = Instant::now();
        assert!(l.admit(p.limits(), &facts("a", &[]), now, 0).is_ok());
        for _ in 0..20 {
            assert_eq!(
                l.admit(p.limits(), &facts("a", &[]), now, 0).expect_err("narrow").id,
                "narrow"
            );
        }
        // `wide` counted one call only: nine more callers fit.
        for who in ["b", "c", "d", "e", "f", "g", "h", "i", "j"] {
            assert!(l.admit(p.limits(), &facts(who, &[]), now, 0).is_ok(), "{who}");
        }
        assert_eq!(
            l.admit(p.limits(), &facts("k", &[]), now, 0).expect_err("wide").id,
            "wide"
        );
    }

    #[test]
    fn a_team_limit_refuses_when_any_of_the_callers_teams_is_full() {
        let p = policy("  - id: t\n    by: team\n    rate: { calls: 1, per: 1h }\n");
        let l = Limiter::default();
        let now = Instant::now();
        let ops = vec!["ops".to_string()];
        let both = vec!["eng".to_string(), "ops".to_string()];
        assert!(l.admit(p.limits(), &facts("a", &ops), now, 0).is_ok());
        let hit = l
            .admit(p.limits(), &facts("b", &both), now, 0)
            .expect_err("ops is full");
        assert_eq!(hit.key, "team=\"ops\"");
    }

    #[test]
    fn concurrent_callers_never_take_more_places_than_there_are() {
        let p = std::sync::Arc::new(policy("  - id: m\n    rate: { calls: 100, per: 1h }\n"));
        let l = std::sync::Arc::new(Limiter::default());
        let admitted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (p, l) = (p.clone(), l.clone());
                    s.spawn(move || {
                        (0..50)
                            .filter(|_| l.admit(p.limits(), &facts("a", &[]), Instant::now(), 0).is_ok())
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("thread")).sum()
        });
        assert_eq!(admitted, 100);
    }
}
