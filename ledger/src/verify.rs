//! Verification: every link, every signature, key validity per sequence
//! number, no gaps, timestamps never going backwards.
//!
//! The pipeline works on windows of records: a reader thread reads the next
//! window while this one is checked in three stages:
//! 1. in parallel, each record is decoded and its hash recomputed;
//! 2. in order, sequence numbers, links, keys, timestamps, genesis and key
//!    rotations are checked (cheap, and inherently sequential);
//! 3. in parallel, signatures are checked one by one with `verify_strict`
//!    (`docs/FORMAT.md` §6), not in batches: batch verification takes
//!    signatures that `verify_strict` refuses (a small-order or
//!    non-canonical `R`, or one with a small-order component, which only
//!    the key's holder can make), and whether it takes one depends on the
//!    others in its batch, so a log's verdict would hang on how its windows
//!    fall.
//!
//! The failure reported is the one with the lowest sequence number. A key
//! the schedule does not hold is `key_not_valid` if a `key.rotated` event
//! at or after its use names it (found by reading ahead, once the run has
//! failed there), else `unknown_key`.

use std::sync::mpsc;

use ed25519_dalek::{Signature, VerifyingKey};
use rayon::prelude::*;

use crate::chain::{Genesis, RawRecord, event_hash};
use crate::error::{Error, Result};
use crate::event::{Event, EventKind, Hash, KeyId};
use crate::failure::{Failure, FailureKind};
use crate::ledger::Ledger;
use crate::schedule::KeySchedule;
use crate::timestamp::Timestamp;

/// Records per window.
const WINDOW: usize = 8192;
/// Signatures per parallel task.
const SIG_CHUNK: usize = 64;

/// What to verify.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// First sequence number to verify fully (default 0).
    pub from: Option<u64>,
    /// Last sequence number to verify fully (default: the end of the log).
    pub to: Option<u64>,
    /// A head written down earlier (`seq`, `hash`) that must still be in the log.
    pub pinned_head: Option<(u64, Hash)>,
    /// How far a timestamp may be earlier than its predecessor's, in
    /// nanoseconds. Sealgate's writer never goes backwards, so the default is 0.
    pub time_tolerance_nanos: u64,
    /// The time `from` was resolved from, when the range was asked for by
    /// time. The time index is not signed, so verification then checks that
    /// the range starts exactly there: the event at `from` is at or after
    /// this time and the one before it is earlier (its content is bound by
    /// the link from `from`).
    pub from_time: Option<Timestamp>,
    /// The time `to` was resolved from, likewise: the event at `to` is at or
    /// before it and the one after is later; that one's signature is
    /// checked too, since its time bounds the range.
    pub to_time: Option<Timestamp>,
}

/// Where trust in a range comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    pub seq: u64,
    pub hash: Hash,
    /// `pinned` (given by the caller) or `store` (the head the store records).
    pub source: &'static str,
}

/// The outcome of a verification run.
#[derive(Clone, Debug)]
pub struct Report {
    pub ledger_id: [u8; 16],
    /// First sequence number verified fully.
    pub from: u64,
    /// Last sequence number verified fully, if any.
    pub to: Option<u64>,
    /// Events whose hash, link, key and signature were checked.
    pub verified: u64,
    /// Events outside the range whose hash and link only were checked, to tie
    /// the range to the anchor (after it) or to a pinned head (before it).
    pub linked: u64,
    pub anchor: Option<Anchor>,
    /// The last event seen and its recomputed hash.
    pub last: Option<(u64, Hash)>,
    pub failure: Option<Failure>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }
}

/// The chain position a run starts from.
struct Start {
    seq: u64,
    prev: Hash,
    /// The latest timestamp before `seq` (FORMAT.md §9 `max_ts`): for a run
    /// that starts after genesis, the time of the event before it.
    max_ts: Timestamp,
    schedule: Option<KeySchedule>,
}

struct Plan {
    /// Signatures are checked for `sig_from..=sig_until`; events outside it
    /// (between a pinned head and the range, or after the range up to the
    /// anchor) get hash and link checks only.
    sig_from: u64,
    sig_until: u64,
    read_until: Option<u64>,
    anchor: Option<Anchor>,
    tolerance: u64,
    ledger_id: [u8; 16],
    /// The keys valid before the first event read came from the store's
    /// rotation index, not from the log (a run that starts after genesis).
    keys_from_index: bool,
}

/// Stage 1 output for one record.
struct Decoded {
    key_seq: u64,
    result: Result<DecodedOk, String>,
}

struct DecodedOk {
    event: Event,
    stored_hash: Hash,
    hash: Hash,
    signature: Signature,
}

impl Ledger {
    /// Verifies the log (or a range of it) and reports the first bad event.
    /// `progress` is called after each window with the events checked so far
    /// and the total to check.
    ///
    /// It runs on a read-only open ([`Ledger::open_read_only`], in this
    /// process or another, beside a live writer if need be), which sees the
    /// store as of its open. A handle opened for writing is refused: there
    /// the head, `meta` and the events would be read at different moments,
    /// and an append in flight could be reported as damage.
    pub fn verify(&self, opts: &VerifyOptions, progress: &(dyn Fn(u64, u64) + Sync)) -> Result<Report> {
        if self.has_writer() {
            return Err(Error::InvalidRequest(format!(
                "verification of {} runs on a read-only open (Ledger::open_read_only), not on the handle that writes it",
                self.path().display()
            )));
        }
        let store_head = self.head();
        let last_stored = self.last_stored_seq()?.unwrap_or(0);
        let from = opts.from.unwrap_or(0);
        let to = opts.to.unwrap_or(last_stored.max(store_head.seq));
        if from > to {
            return Err(Error::InvalidRequest(format!(
                "empty range: --from {from} is after --to {to}"
            )));
        }
        let full = from == 0 && opts.to.is_none();
        let bounds = self.check_time_bounds(opts, from, to, last_stored);
        // The event after a range that ends at a time is verified too.
        let sig_until = if opts.to_time.is_some() && to < last_stored {
            to + 1
        } else {
            to
        };
        let ledger_id = self.ledger_id();
        let anchor = match opts.pinned_head {
            Some((seq, hash)) => Anchor {
                seq,
                hash,
                source: "pinned",
            },
            None => Anchor {
                seq: store_head.seq,
                hash: store_head.hash,
                source: "store",
            },
        };
        // Reading starts at the pinned head when it lies before the range, so
        // that the links from it into the range are checked too.
        let read_from = opts.pinned_head.map_or(from, |(seq, _)| seq.min(from));
        let start = if read_from == 0 {
            Start {
                seq: 0,
                prev: Hash::ZERO,
                max_ts: Timestamp::EPOCH,
                schedule: None,
            }
        } else {
            let failed = |failure| Report {
                ledger_id,
                from,
                to: None,
                verified: 0,
                linked: 0,
                anchor: Some(anchor.clone()),
                last: None,
                failure: Some(failure),
            };
            // The range continues the chain from the event before it: one
            // that cannot be read is the range's failure.
            let before = match self.get(read_from - 1) {
                Ok(Some(before)) => before,
                Ok(None) => {
                    return Ok(failed(Failure::new(
                        read_from - 1,
                        FailureKind::Gap,
                        format!("no event at seq {}, before the range", read_from - 1),
                    )));
                }
                Err(Error::Malformed { seq, reason }) => {
                    return Ok(failed(Failure::new(seq, FailureKind::Malformed, reason)));
                }
                Err(e) => return Err(e),
            };
            // The keys of the events before the range come from the
            // rotation index, each rotation checked on its own; one that
            // does not hold fails the range, whose keys depend on it.
            let schedule = match self.checked_key_schedule()? {
                Ok(schedule) => schedule.before(read_from),
                Err(failure) => return Ok(failed(failure)),
            };
            Start {
                seq: read_from,
                prev: event_hash(&before.event.prev, &before.canonical),
                max_ts: before.event.ts,
                schedule: Some(schedule),
            }
        };
        let plan = Plan {
            sig_from: from,
            sig_until,
            // A full run reads to the physical end, so that anything stored
            // past the recorded head is seen.
            read_until: if full { None } else { Some(sig_until.max(anchor.seq)) },
            anchor: Some(anchor.clone()),
            tolerance: opts.time_tolerance_nanos,
            ledger_id,
            keys_from_index: read_from > 0,
        };
        let total = plan.read_until.unwrap_or(last_stored).saturating_sub(read_from) + 1;
        // A read-only open sees the store as of its open (the writing handle
        // is refused above), so the events and the time index read here agree.
        let records = self.raw_records(read_from)?;
        // A full run also walks the time index beside the events, in one
        // pass, which needs their timestamps never to decrease: in a log
        // verified with a tolerance they may, and the index is not checked.
        let index: Option<TimeEntries> = if full && opts.time_tolerance_nanos == 0 {
            Some(Box::new(self.time_entries()?))
        } else {
            None
        };
        let (mut report, schedule, index_failure) = run(records, start, &plan, index, &|done| progress(done, total));
        if let Some(f) = &mut report.failure {
            look_ahead_for_key(f, self.raw_records(f.seq)?.map_while(|r| r.ok()));
        }
        report.from = from;
        report.to = report.to.map(|t| t.min(to));
        if let Some(b) = bounds
            && report.failure.as_ref().is_none_or(|f| b.seq < f.seq)
        {
            report.failure = Some(b);
        }
        if report.failure.is_none() && full {
            // The head recorded in meta must be the last event.
            // (A log that ends before the recorded head was already reported
            // as truncated against the store anchor.)
            match report.last {
                Some((seq, hash)) if seq == store_head.seq && hash == store_head.hash => {
                    // And its time: the writer stamps no event before it.
                    if let Some(e) = self.get(seq)?
                        && e.event.ts != store_head.ts
                    {
                        report.failure = Some(Failure::new(
                            seq,
                            FailureKind::MetaMismatch,
                            format!(
                                "the store records the head's time as {} but the event's is {}",
                                store_head.ts, e.event.ts
                            ),
                        ));
                    }
                }
                Some((seq, _)) if seq > store_head.seq => {
                    report.failure = Some(Failure::new(
                        store_head.seq + 1,
                        FailureKind::MetaMismatch,
                        format!(
                            "the store records head seq {} but events continue to seq {seq}",
                            store_head.seq
                        ),
                    ))
                }
                Some((seq, _)) => {
                    report.failure = Some(Failure::new(
                        seq,
                        FailureKind::MetaMismatch,
                        format!(
                            "the store records head seq {} as {}, which is not the log's last event",
                            store_head.seq,
                            store_head.hash.short()
                        ),
                    ))
                }
                None => report.failure = Some(Failure::new(0, FailureKind::Truncated, "the log holds no events")),
            }
        }
        if report.failure.is_none()
            && full
            && let Some(schedule) = &schedule
        {
            report.failure = self.check_key_meta(schedule)?;
        }
        if report.failure.is_none()
            && full
            && let Some((seq, kind, detail)) = self.acked_disagreement()?
        {
            report.failure = Some(Failure::new(seq, kind, detail));
        }
        if report.failure.is_none() {
            report.failure = index_failure;
        }
        if report.failure.is_none()
            && full
            && let Some((last, _)) = report.last
        {
            report.failure = self.check_tree(last)?;
        }
        Ok(report)
    }
}

impl Ledger {
    /// After a full run: the rotation index and the current key in `meta`
    /// (not signed) must be what the log says, since the writer and range
    /// verification take the keys from them. `schedule` is the one the run
    /// built from the log's own rotations.
    fn check_key_meta(&self, schedule: &KeySchedule) -> Result<Option<Failure>> {
        let logged: Vec<(u64, KeyId)> = schedule.entries().iter().skip(1).map(|k| (k.from - 1, k.id)).collect();
        if let Some(failure) = rotation_index_mismatch(&logged, &self.rotation_index()?) {
            return Ok(Some(failure));
        }
        let current = match self.current_key_id() {
            Ok(current) => current,
            Err(Error::Damaged { reason, .. }) => {
                return Ok(Some(Failure::new(self.head().seq, FailureKind::MetaMismatch, reason)));
            }
            Err(e) => return Err(e),
        };
        if current != schedule.current() {
            return Ok(Some(Failure::new(
                self.head().seq,
                FailureKind::MetaMismatch,
                format!(
                    "the store names key {current} as current, but the log's last rotation introduced {}",
                    schedule.current()
                ),
            )));
        }
        Ok(None)
    }

    /// For a range asked for by time, the first event (lowest seq) that
    /// shows the range is not exactly that span. Events are read as stored;
    /// the run then authenticates them (the one before the range through the
    /// link from its first event, the one after it by its signature), and a
    /// record that cannot be read is left for the run to report. Times are
    /// compared with the run's tolerance: in a log whose timestamps may step
    /// back that far, the index can honestly resolve a time to an event whose
    /// predecessor is a little later.
    fn check_time_bounds(&self, opts: &VerifyOptions, from: u64, to: u64, last_stored: u64) -> Option<Failure> {
        // `a` + tolerance, in nanoseconds.
        let slack = |a: Timestamp| a.as_nanos().saturating_add(opts.time_tolerance_nanos);
        let ts_at = |seq: u64| self.get(seq).ok().flatten().map(|e| e.event.ts);
        let mismatch = |seq: u64, detail: String| Some(Failure::new(seq, FailureKind::RangeMismatch, detail));
        let index = "the time index does not match the log";
        if let Some(t) = opts.from_time {
            if from > 0
                && let Some(ts) = ts_at(from - 1)
                && ts.as_nanos() >= slack(t)
            {
                return mismatch(
                    from - 1,
                    format!(
                        "the range from {t} starts at seq {from}, but seq {} is at {ts}, not before {t}: {index}",
                        from - 1
                    ),
                );
            }
            if let Some(ts) = ts_at(from)
                && slack(ts) < t.as_nanos()
            {
                return mismatch(
                    from,
                    format!("seq {from} is at {ts}, before {t}, where the range starts: {index}"),
                );
            }
        }
        if let Some(t) = opts.to_time {
            if let Some(ts) = ts_at(to)
                && ts.as_nanos() > slack(t)
            {
                return mismatch(
                    to,
                    format!("seq {to} is at {ts}, after {t}, where the range ends: {index}"),
                );
            }
            if to < last_stored
                && let Some(ts) = ts_at(to + 1)
                && slack(ts) <= t.as_nanos()
            {
                return mismatch(
                    to + 1,
                    format!(
                        "the range to {t} ends at seq {to}, but seq {} is at {ts}, not after {t}: {index}",
                        to + 1
                    ),
                );
            }
        }
        None
    }
}

/// The first place where the store's rotation index (sequence number, key
/// id) differs from the rotations in the log; both are sorted.
fn rotation_index_mismatch(logged: &[(u64, KeyId)], indexed: &[(u64, Option<KeyId>)]) -> Option<Failure> {
    let (mut l, mut i) = (0, 0);
    loop {
        let fail = |seq, detail: String| Some(Failure::new(seq, FailureKind::MetaMismatch, detail));
        match (logged.get(l), indexed.get(i)) {
            (None, None) => return None,
            (Some(&(ls, id)), Some(&(is, named))) if ls == is => {
                if named != Some(id) {
                    let named = named.map_or("a malformed key id".to_owned(), |k| format!("key {k}"));
                    return fail(
                        ls,
                        format!(
                            "the store's rotation index names {named} for the rotation at seq {ls}, which introduced key {id}"
                        ),
                    );
                }
                (l, i) = (l + 1, i + 1);
            }
            (Some(&(ls, id)), next) if next.is_none_or(|&(is, _)| ls < is) => {
                return fail(
                    ls,
                    format!("the store's rotation index lacks the rotation at seq {ls} (to key {id})"),
                );
            }
            (_, next) => {
                let is = next.map_or(0, |&(is, _)| is);
                return fail(
                    is,
                    format!("the store's rotation index lists seq {is}, which is not a rotation in the log"),
                );
            }
        }
    }
}

/// Verifies `records` (sequence number, stored record), which must start at
/// the genesis, with the checks [`Ledger::verify`] runs on every record
/// (decoding, hashes, links, keys and rotations, timestamps, signatures:
/// the same stages), as `sealgate verify --from FROM --head PIN` would:
/// events before `from` get every check but their signature (a rotation's
/// is checked too), and the log must reach `pinned_head`, if given. What
/// only a store has is not checked: `meta`, the time index, the
/// acknowledged mark. `ledger_id` stands for the store's, which the genesis
/// must name. For tests that try a change to a record many thousand times,
/// where writing each into a store and opening it would take hours.
#[doc(hidden)]
pub fn verify_records(
    ledger_id: [u8; 16],
    records: Vec<(u64, Box<[u8]>)>,
    from: u64,
    pinned_head: Option<(u64, Hash)>,
) -> Report {
    let start = Start {
        seq: 0,
        prev: Hash::ZERO,
        max_ts: Timestamp::EPOCH,
        schedule: None,
    };
    let plan = Plan {
        sig_from: from,
        sig_until: u64::MAX,
        read_until: None,
        anchor: pinned_head.map(|(seq, hash)| Anchor {
            seq,
            hash,
            source: "pinned",
        }),
        tolerance: 0,
        ledger_id,
        keys_from_index: false,
    };
    // One window, on this thread: the stages and the anchor check of
    // `run`, without its reader threads (a whole log fits one window here).
    let mut state = SeqState::new(start, ledger_id);
    let mut failure = check_stages(&mut state, records.clone(), &plan).or_else(|| anchor_failure(&state, &plan));
    if let Some(f) = &mut failure {
        let from = f.seq;
        look_ahead_for_key(f, records.into_iter().filter(|(seq, _)| *seq >= from));
    }
    Report {
        ledger_id,
        from,
        to: state.last.map(|(s, _)| s),
        verified: state.verified,
        linked: state.linked,
        anchor: plan.anchor.clone(),
        last: state.last,
        failure,
    }
}

/// Runs the pipeline over records in key order.
/// Also returns the key schedule as the run left it: every rotation it
/// passed, for a full run all of the log's.
/// With `index`, also walks the time index beside the events, and returns
/// what it found wrong there, if anything, separately.
fn run<'a, I>(
    records: I,
    start: Start,
    plan: &Plan,
    index: Option<TimeEntries<'a>>,
    progress: &(dyn Fn(u64) + Sync),
) -> (Report, Option<KeySchedule>, Option<Failure>)
where
    I: Iterator<Item = Result<(u64, Box<[u8]>)>> + Send + 'a,
{
    let from = start.seq;
    let mut state = SeqState::new(start, plan.ledger_id);
    let mut failure: Option<Failure> = None;
    let mut index_failure: Option<Failure> = None;
    let read_until = plan.read_until;

    std::thread::scope(|scope| {
        // The time index is read ahead on a thread of its own, so that the
        // sequential stage only compares.
        if let Some(source) = index {
            let (itx, irx) = mpsc::sync_channel::<Vec<std::result::Result<(u64, u64), String>>>(2);
            scope.spawn(move || {
                let mut chunk = Vec::with_capacity(WINDOW);
                for entry in source {
                    chunk.push(entry);
                    if chunk.len() == WINDOW
                        && itx
                            .send(std::mem::replace(&mut chunk, Vec::with_capacity(WINDOW)))
                            .is_err()
                    {
                        return;
                    }
                }
                if !chunk.is_empty() {
                    let _ = itx.send(chunk);
                }
            });
            state.index = Some(IndexWalk::new(Box::new(irx.into_iter().flatten())));
        }
        let (tx, rx) = mpsc::sync_channel::<Result<Vec<(u64, Box<[u8]>)>>>(2);
        scope.spawn(move || {
            let mut window = Vec::with_capacity(WINDOW);
            for item in records {
                match item {
                    Ok((seq, _)) if read_until.is_some_and(|u| seq > u) => break,
                    Ok(rec) => {
                        window.push(rec);
                        if window.len() == WINDOW
                            && tx
                                .send(Ok(std::mem::replace(&mut window, Vec::with_capacity(WINDOW))))
                                .is_err()
                        {
                            return;
                        }
                    }
                    Err(e) => {
                        // What was read before the error goes first, so
                        // that the error is reported at the first record
                        // that could not be read.
                        if !window.is_empty() && tx.send(Ok(std::mem::take(&mut window))).is_err() {
                            return;
                        }
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
            if !window.is_empty() {
                let _ = tx.send(Ok(window));
            }
        });

        for window in rx.iter() {
            let window = match window {
                Ok(w) => w,
                Err(e) => {
                    failure = Some(Failure::new(
                        state.expected,
                        FailureKind::Malformed,
                        format!("cannot read the records from seq {} on: {e}", state.expected),
                    ));
                    break;
                }
            };
            let first = check_stages(&mut state, window, plan);
            progress(state.verified + state.linked);
            if first.is_some() {
                failure = first;
                break;
            }
        }
        // The walk's leftovers, once every event has been seen.
        if let Some(walk) = state.index.take()
            && failure.is_none()
        {
            index_failure = walk.finish(state.last.map(|(seq, _)| seq));
        }
        // Dropping rx (and the walk) stops the readers.
    });

    if failure.is_none() {
        failure = anchor_failure(&state, plan);
    }
    let report = Report {
        ledger_id: plan.ledger_id,
        from,
        to: state.last.map(|(s, _)| s.min(plan.sig_until)),
        verified: state.verified,
        linked: state.linked,
        anchor: plan.anchor.clone(),
        last: state.last,
        failure,
    };
    (report, state.schedule, index_failure)
}

/// The three stages over one window of records (see the module's doc);
/// the failure with the lowest sequence number, if any.
fn check_stages(state: &mut SeqState<'_>, window: Vec<(u64, Box<[u8]>)>, plan: &Plan) -> Option<Failure> {
    // Stage 1: decode and hash, in parallel.
    let decoded: Vec<Decoded> = window.par_iter().map(|(k, bytes)| decode(*k, bytes)).collect();
    drop(window);
    // Stage 2: sequential checks; collect signatures for stage 3.
    let mut sigs: Vec<(u64, VerifyingKey, Hash, Signature)> = Vec::with_capacity(decoded.len());
    let seq_failure = state.check_window(decoded, plan, &mut sigs);
    // Stage 3: signatures in parallel batches.
    let sig_failure = verify_signatures(&sigs);
    state.verified += sigs.len() as u64;
    match (seq_failure, sig_failure) {
        (Some(a), Some(b)) => Some(if b.seq < a.seq { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// After the last record: the log must reach the anchor.
fn anchor_failure(state: &SeqState<'_>, plan: &Plan) -> Option<Failure> {
    let anchor = plan.anchor.as_ref()?;
    let last_seq = state.last.map(|(s, _)| s);
    last_seq.is_none_or(|s| s < anchor.seq).then(|| {
        let next = last_seq.map_or(state.expected, |s| s + 1);
        Failure::new(
            next,
            FailureKind::Truncated,
            format!(
                "the log ends before the {} head at seq {} ({})",
                anchor.source,
                anchor.seq,
                anchor.hash.short()
            ),
        )
    })
}

/// The time index's entries as `(ts nanos, seq)`, or why one cannot be read.
type TimeEntries<'a> = Box<dyn Iterator<Item = std::result::Result<(u64, u64), String>> + Send + 'a>;

/// A full run's walk over the time index beside the events (FORMAT.md §10):
/// every event whose time differs from its predecessor's has the entry
/// `ts ‖ seq`, and every entry names an event at its time. A missing entry
/// is reported at its event, a wrong one at the seq it names. The index is in
/// the events' order because their timestamps never decrease (the walk runs
/// only with a tolerance of zero, where a step back fails the run anyway).
struct IndexWalk<'a> {
    entries: std::iter::Peekable<TimeEntries<'a>>,
    last_ts: Option<Timestamp>,
    failure: Option<Failure>,
}

impl<'a> IndexWalk<'a> {
    fn new(entries: TimeEntries<'a>) -> IndexWalk<'a> {
        IndexWalk {
            entries: entries.peekable(),
            last_ts: None,
            failure: None,
        }
    }

    /// The next event of the log, already checked.
    fn observe(&mut self, seq: u64, ts: Timestamp) {
        if self.failure.is_some() {
            return;
        }
        let first_at_ts = self.last_ts != Some(ts);
        self.last_ts = Some(ts);
        let here = (ts.as_nanos(), seq);
        let fail = |at: u64, detail: String| Some(Failure::new(at, FailureKind::TimeIndexMismatch, detail));
        match self.entries.peek() {
            Some(Ok(entry)) if *entry == here => {
                self.entries.next();
            }
            Some(&Ok((t, s))) if (t, s) < here => {
                self.failure = fail(
                    s,
                    format!(
                        "the time index lists seq {s} at {}, where the log has no such event",
                        Timestamp::from_nanos(t)
                    ),
                );
            }
            Some(Err(reason)) => {
                self.failure = fail(seq, format!("{reason} in the time index, before seq {seq}'s entry"));
            }
            _ if first_at_ts => {
                self.failure = fail(
                    seq,
                    format!("the time index has no entry for seq {seq}, the first event at {ts}"),
                );
            }
            _ => {}
        }
    }

    /// After the last event (`last`): any entry left over names no event.
    fn finish(mut self, last: Option<u64>) -> Option<Failure> {
        if self.failure.is_some() {
            return self.failure;
        }
        let last = last?;
        let fail = |at: u64, detail: String| Some(Failure::new(at, FailureKind::TimeIndexMismatch, detail));
        match self.entries.next()? {
            Ok((t, s)) if s > last => fail(
                s,
                format!(
                    "the time index lists seq {s} at {}, past the log's last event (seq {last})",
                    Timestamp::from_nanos(t)
                ),
            ),
            Ok((t, s)) => fail(
                s,
                format!(
                    "the time index lists seq {s} at {}, where the log has no such event",
                    Timestamp::from_nanos(t)
                ),
            ),
            Err(reason) => fail(
                last,
                format!("{reason} in the time index, after the last event's entry"),
            ),
        }
    }
}

fn decode(key_seq: u64, bytes: &[u8]) -> Decoded {
    let result = RawRecord::parse(bytes).and_then(|raw| {
        let event = Event::decode(raw.canonical)?;
        let hash = event_hash(&event.prev, raw.canonical);
        Ok(DecodedOk {
            event,
            stored_hash: raw.hash,
            hash,
            signature: Signature::from_bytes(&raw.signature),
        })
    });
    Decoded { key_seq, result }
}

struct SeqState<'a> {
    /// A full run's walk over the time index.
    index: Option<IndexWalk<'a>>,
    expected: u64,
    prev: Hash,
    /// The latest timestamp seen (FORMAT.md §9 `max_ts`).
    max_ts: Timestamp,
    schedule: Option<KeySchedule>,
    ledger_id: [u8; 16],
    verified: u64,
    linked: u64,
    last: Option<(u64, Hash)>,
}

impl<'a> SeqState<'a> {
    /// The state before the first record of a run that begins at `start`.
    fn new(start: Start, ledger_id: [u8; 16]) -> SeqState<'a> {
        SeqState {
            index: None,
            expected: start.seq,
            prev: start.prev,
            max_ts: start.max_ts,
            schedule: start.schedule,
            ledger_id,
            verified: 0,
            linked: 0,
            last: None,
        }
    }
}

impl SeqState<'_> {
    fn check_window(
        &mut self,
        decoded: Vec<Decoded>,
        plan: &Plan,
        sigs: &mut Vec<(u64, VerifyingKey, Hash, Signature)>,
    ) -> Option<Failure> {
        for d in decoded {
            if let Err(f) = self.check_one(d, plan, sigs) {
                return Some(f);
            }
        }
        None
    }

    fn check_one(
        &mut self,
        d: Decoded,
        plan: &Plan,
        sigs: &mut Vec<(u64, VerifyingKey, Hash, Signature)>,
    ) -> Result<(), Failure> {
        let seq = self.expected;
        if d.key_seq != seq {
            return Err(Failure::new(
                seq,
                FailureKind::Gap,
                format!("no event at seq {seq}; the next stored event is at seq {}", d.key_seq),
            ));
        }
        let ok = d.result.map_err(|r| Failure::new(seq, FailureKind::Malformed, r))?;
        let e = &ok.event;
        if e.seq != seq {
            return Err(Failure::new(
                seq,
                FailureKind::SequenceMismatch,
                format!("the record stored at seq {seq} says it is seq {}", e.seq),
            ));
        }
        if ok.hash != ok.stored_hash {
            return Err(Failure::hash_mismatch(seq, ok.stored_hash, ok.hash));
        }
        if e.prev != self.prev {
            return Err(Failure::new(
                seq,
                FailureKind::BadLink,
                format!(
                    "prev is {} but the event at seq {} hashes to {}",
                    e.prev.short(),
                    seq.wrapping_sub(1),
                    self.prev.short()
                ),
            ));
        }
        if e.ts.as_nanos().saturating_add(plan.tolerance) < self.max_ts.as_nanos() {
            return Err(Failure::new(
                seq,
                FailureKind::TimeWentBackwards,
                format!("timestamp {} is before the latest earlier one, {}", e.ts, self.max_ts),
            ));
        }
        if seq == 0 {
            let schedule = KeySchedule::from_genesis(e).map_err(|r| Failure::new(0, FailureKind::BadGenesis, r))?;
            let g = Genesis::from_event(e).map_err(|r| Failure::new(0, FailureKind::BadGenesis, r))?;
            if g.ledger_id != self.ledger_id {
                return Err(Failure::new(
                    0,
                    FailureKind::BadGenesis,
                    format!(
                        "genesis names ledger {} but the store is ledger {}",
                        hex::encode(g.ledger_id),
                        hex::encode(self.ledger_id)
                    ),
                ));
            }
            self.schedule = Some(schedule);
        } else if e.kind == EventKind::LedgerGenesis {
            return Err(Failure::new(seq, FailureKind::BadGenesis, "a second genesis event"));
        }
        let schedule = self
            .schedule
            .as_mut()
            .ok_or_else(|| Failure::new(seq, FailureKind::UnknownKey, "no key schedule"))?;
        // An `unknown_key` here may yet be a key a later rotation names:
        // `look_ahead_for_key` tells, once the run has stopped.
        let key = *schedule.key_for(seq, e.key).map_err(|f| {
            match () {
                _ if f.kind == FailureKind::UnknownKey && plan.keys_from_index => Failure::new(
                    seq,
                    f.kind,
                    format!(
                        "{}; the keys before this range come from the store's rotation index, which a full verification checks against the log",
                        f.detail
                    ),
                ),
                _ => f,
            }
        })?;
        if e.kind == EventKind::KeyRotated {
            schedule
                .apply_rotation(e, &self.ledger_id)
                .map_err(|r| Failure::new(seq, FailureKind::BadRotation, r))?;
        }
        if let Some(anchor) = &plan.anchor
            && anchor.seq == seq
            && anchor.hash != ok.hash
        {
            return Err(Failure::new(
                seq,
                FailureKind::HeadMismatch,
                format!(
                    "the {} head says seq {seq} is {} but the log's event there hashes to {}",
                    anchor.source,
                    anchor.hash.short(),
                    ok.hash.short()
                ),
            ));
        }
        // A rotation between a pinned head and the range gets its signature
        // checked too: the keys that sign the range depend on it.
        let before_range = seq < plan.sig_from && e.kind == EventKind::KeyRotated;
        if (plan.sig_from..=plan.sig_until).contains(&seq) || before_range {
            sigs.push((seq, key, ok.hash, ok.signature));
        } else {
            self.linked += 1;
        }
        if let Some(walk) = &mut self.index {
            walk.observe(seq, e.ts);
        }
        self.prev = ok.hash;
        // Against the latest time seen, so steps back within the tolerance
        // cannot add up.
        self.max_ts = self.max_ts.max(e.ts);
        self.last = Some((seq, ok.hash));
        self.expected = seq + 1;
        Ok(())
    }
}

/// Checks signatures in parallel, each with `verify_strict` (see the
/// module's doc), and returns the first bad one.
fn verify_signatures(sigs: &[(u64, VerifyingKey, Hash, Signature)]) -> Option<Failure> {
    sigs.par_chunks(SIG_CHUNK)
        .filter_map(|chunk| {
            chunk.iter().find_map(|(seq, key, hash, sig)| {
                key.verify_strict(&hash.0, sig).is_err().then(|| {
                    Failure::new(
                        *seq,
                        FailureKind::BadSignature,
                        "signature does not verify under the key valid at this position",
                    )
                })
            })
        })
        .min_by_key(|f| f.seq)
}

/// Turns an `unknown_key` failure into `key_not_valid` if a `key.rotated`
/// event at or after it names the key as its `new_key`: a real key of the
/// log, used before (or by) the rotation that introduces it (FORMAT.md §9
/// step 8). `records` run from the failure's sequence number on. They are
/// read as plain JSON and nothing else about them is checked: verification
/// stopped before them, and a rotation need not be valid to name a key.
fn look_ahead_for_key(failure: &mut Failure, records: impl Iterator<Item = (u64, Box<[u8]>)>) {
    if failure.kind != FailureKind::UnknownKey {
        return;
    }
    let mut key: Option<String> = None;
    for (seq, bytes) in records {
        let Some(v) = RawRecord::parse(&bytes)
            .ok()
            .and_then(|raw| serde_json::from_slice::<serde_json::Value>(raw.canonical).ok())
        else {
            continue;
        };
        if seq == failure.seq {
            key = v["key"].as_str().map(str::to_owned);
        }
        // The failure's own record comes first; without its key, nothing to find.
        let Some(key) = &key else {
            return;
        };
        if v["kind"] == EventKind::KeyRotated.as_str() && v["body"]["new_key"].as_str() == Some(key) {
            *failure = Failure::new(
                failure.seq,
                FailureKind::KeyNotValid,
                format!(
                    "signed by key {key}, which the log introduces only from seq {} (the rotation at seq {seq})",
                    seq + 1
                ),
            );
            return;
        }
    }
}
