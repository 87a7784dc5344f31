//! Alerts and notifications (`docs/ALERTS.md`): detections over the log
//! the gateway writes, each written back to the ledger as an `alert.raised`
//! event by the gateway's own writer, and webhooks for approvals waiting
//! and for alerts, whose outcome is written as `notification.*`.
//!
//! - `detect`: the detections, a pure state machine over events.
//! - this module: the detector's thread, following the published head,
//!   and where it resumes after a restart.
//! - `notify`: the webhooks' deliveries.
//!
//! Both run beside the gateway in its process, on threads of their own:
//! they read what the gateway made durable and append through the same
//! ledger handle; a call never waits for them, and a failure to write an
//! alert or an outcome is logged and retried, never a call's failure.
//! They depend on `ledger` and `events` only (`commands::serve` starts
//! them).

pub mod detect;
pub mod notify;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::config::{AlertsConfig, GatesConfig};
use ledger::{Actor, Draft, EventKind, Ledger, Receipt, Subject, Timestamp};

pub use detect::{Alert, Detector, Thresholds};

/// The principal of the alerts the detector writes.
pub const ALERTS_ACTOR: &str = "sealgate:alerts";

/// The detector's thresholds from a checked `[alerts]` (`Config::check`
/// refused any that cannot work), with the gates' targets where it leaves
/// them unset.
pub fn thresholds(config: &AlertsConfig, gates: &GatesConfig) -> Thresholds {
    Thresholds {
        disabled: config.disabled.iter().copied().collect(),
        unknown_server: config.unknown_server_threshold,
        unknown_server_window_sec: config.unknown_server_window_sec,
        auth_burst: config.auth_burst_threshold,
        auth_burst_window_sec: config.auth_burst_window_sec,
        quarantine_ratio: config.quarantine_ratio_or(gates),
        quarantine_window_sec: config.quarantine_window_sec,
        quarantine_min_calls: config.quarantine_min_calls,
        approval_wait_sec: config.approval_wait_sec_or(gates),
    }
}

/// What the alert thread could not do.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("alerts: reading the ledger: {0}")]
    Ledger(#[from] ledger::Error),
    #[error("alerts: {0}")]
    Body(#[from] events::Error),
}

/// The draft of an `alert.raised` event.
pub fn draft(alert: &Alert) -> Result<Draft, events::Error> {
    let mut d = Draft::new(EventKind::AlertRaised);
    d.actor = Actor {
        principal: Some(ALERTS_ACTOR.into()),
        ..Actor::default()
    };
    d.subject = Subject {
        server: alert.server.clone(),
        ..Subject::default()
    };
    d.body = events::encode(&alert.body)?;
    Ok(d)
}

/// Where a detector starts: the state it had rebuilt from the log, the seq
/// to read from, and the newest `at_seq` of the alerts already written
/// (nothing computed at or before it is written again).
pub struct Resumed {
    pub detector: Detector,
    pub from: u64,
    pub written_up_to: Option<u64>,
}

/// A detector resumed on `ledger`: it reads back from the published head
/// over the thresholds' lookback, learning the alerts already written (their
/// keys, the newest `at_seq`), and starts far enough before the first of
/// them to rebuild the windows it had when it wrote it. Blocking.
pub fn resume(ledger: &Ledger, t: Thresholds, stop: &AtomicBool) -> Result<Resumed, AlertError> {
    let head = ledger.head();
    let lookback = t.lookback_sec().saturating_mul(1_000_000_000);
    let locate = |ns: u64| -> Result<u64, AlertError> {
        Ok(ledger
            .locate_at_or_after(Timestamp::from_nanos(ns))?
            .seq
            .unwrap_or(head.seq + 1)
            .min(head.seq + 1))
    };
    let mut from = locate(head.ts.as_nanos().saturating_sub(lookback))?;
    let mut detector = Detector::new(t);
    let mut first_at: Option<u64> = None;
    let mut last_at: Option<u64> = None;
    if from <= head.seq {
        for e in ledger.events(from, head.seq)? {
            let e = e?;
            if stop.load(Ordering::Relaxed) {
                break;
            }
            // Only the detector's own alerts, about events before them.
            if e.event.kind == EventKind::AlertRaised
                && e.event.actor.principal.as_deref() == Some(ALERTS_ACTOR)
                && let Ok(a) = events::decode::<events::AlertRaised>(&e.event)
                && a.at_seq < e.event.seq
            {
                detector.seed_written(a.key);
                first_at = Some(first_at.map_or(a.at_seq, |f| f.min(a.at_seq)));
                last_at = Some(last_at.map_or(a.at_seq, |l| l.max(a.at_seq)));
            }
        }
    }
    if let Some(first) = first_at
        && let Some(at) = ledger.get(first)?
    {
        from = from.min(locate(at.event.ts.as_nanos().saturating_sub(lookback))?);
    }
    Ok(Resumed {
        detector,
        from,
        written_up_to: last_at,
    })
}

/// Appends `alert`, retrying with backoff until it is durable or `stop`
/// is set: a failed append (a full disk, a poisoned writer) is logged and
/// retried, and never reaches a call.
fn write(ledger: &Ledger, alert: &Alert, stop: &AtomicBool) -> Option<Receipt> {
    let draft = match draft(alert) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(key = %alert.body.key, "alerts: cannot build an alert.raised body: {e}");
            return None;
        }
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        match ledger.append_blocking(draft.clone()) {
            Ok(r) => {
                tracing::warn!(
                    seq = r.seq,
                    detection = alert.body.detection.as_str(),
                    severity = ?alert.body.severity,
                    "alert: {}",
                    alert.body.summary
                );
                return Some(r);
            }
            // The ledger refused this event itself (its shape or size):
            // retrying cannot help, and must not stop every later alert.
            Err(e @ ledger::Error::InvalidEvent(_)) => {
                tracing::error!(key = %alert.body.key, "alerts: the ledger refuses this alert.raised event; it is not written: {e}");
                return None;
            }
            Err(e) => {
                tracing::error!(key = %alert.body.key, "alerts: cannot write an alert.raised event (retrying in {backoff:?}): {e}");
                let until = std::time::Instant::now() + backoff;
                while std::time::Instant::now() < until {
                    if stop.load(Ordering::Relaxed) {
                        return None;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// The alerts `detector` raises reading `from..=to` of the log (nothing is
/// written). Blocking.
pub fn scan(ledger: &Ledger, detector: &mut Detector, from: u64, to: u64) -> Result<Vec<Alert>, AlertError> {
    let mut out = Vec::new();
    if from <= to {
        for e in ledger.events(from, to)? {
            out.extend(detector.observe(&e?));
        }
    }
    Ok(out)
}

/// The detector's loop: read up to the published head, raise, write, tick
/// the clock, sleep `poll`; until `stop`. Blocking.
pub fn run(ledger: &Ledger, resumed: Resumed, poll: Duration, stop: &AtomicBool) -> Result<(), AlertError> {
    let Resumed {
        mut detector,
        from,
        written_up_to,
    } = resumed;
    let mut next = from;
    // Several alerts may share an `at_seq`: one of them written before a
    // crash does not make the others old (their keys tell which were).
    let fresh = |a: &Alert| written_up_to.is_none_or(|w| a.body.at_seq >= w);
    while !stop.load(Ordering::Relaxed) {
        let head = ledger.head().seq;
        if next <= head {
            for e in ledger.events(next, head)? {
                let e = e?;
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                next = e.event.seq + 1;
                for a in detector.observe(&e) {
                    if fresh(&a) && !detector.is_written(&a.body.key) {
                        write(ledger, &a, stop);
                    }
                }
            }
        }
        for a in detector.tick(Timestamp::now().as_nanos()) {
            if fresh(&a) && !detector.is_written(&a.body.key) {
                write(ledger, &a, stop);
            }
        }
        std::thread::sleep(poll);
    }
    Ok(())
}

/// Starts the detector on a thread of its own (`sealgate-alerts`): resumes
/// from the log, then follows it until `stop`. A detector that cannot read
/// the log logs why and stops; the gateway keeps serving.
pub fn spawn(
    ledger: Arc<Ledger>,
    config: &AlertsConfig,
    gates: &GatesConfig,
    stop: Arc<AtomicBool>,
) -> Result<Option<std::thread::JoinHandle<()>>, String> {
    if !config.enabled {
        return Ok(None);
    }
    let t = thresholds(config, gates);
    let poll = Duration::from_millis(config.poll_ms);
    std::thread::Builder::new()
        .name("sealgate-alerts".into())
        .spawn(move || {
            let result = resume(&ledger, t, &stop).and_then(|r| {
                tracing::info!(from = r.from, "alerts: detector following the log");
                run(&ledger, r, poll, &stop)
            });
            if let Err(e) = result {
                tracing::error!("{e}; no more alerts are raised until the gateway restarts");
            }
        })
        .map(Some)
        .map_err(|e| format!("cannot start the alerts thread: {e}"))
}
