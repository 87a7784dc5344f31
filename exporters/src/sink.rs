//! A sink: follows the log from its durable cursor and delivers it, one
//! batch in flight at a time, on a thread of its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ledger::{Ledger, SealedEvent};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use rand_core::RngCore;
use serde::Serialize;

use crate::config::{Protocol, SinkConfig, validate_all};
use crate::lake::Lake;
use crate::record::{self, Origin};
use crate::state::{self, Cursor, DeadLetter, SinkState, Status};
use crate::transport::{Answer, Client};
use crate::{Error, hex};

/// How often a caught-up sink looks at the log's head.
const POLL: Duration = Duration::from_millis(50);
/// The first wait after a retryable failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// How often an OTLP sink's cursor is written while batches flow (each
/// write is two fsyncs; a crash resends at most this much more).
const CURSOR_EVERY: Duration = Duration::from_millis(250);
/// The longest a collector's `Retry-After` / `RetryInfo` is obeyed for.
const MAX_COLLECTOR_DELAY: Duration = Duration::from_secs(600);

/// One sink, ready to run.
pub struct Sink {
    config: SinkConfig,
    dir: PathBuf,
    /// The collector's connection (OTLP sinks).
    client: Option<Client>,
    /// The files' writer (`file` sinks).
    lake: Option<Lake>,
    origin: Origin,
    /// The next seq to send.
    next: u64,
    /// OTLP sinks: the last batch the collector accepted, when the cursor
    /// file is behind it (written at most every [`CURSOR_EVERY`] while
    /// batches flow, at once when caught up or stopping).
    accepted: Option<(u64, String)>,
    cursor_written: Instant,
    status: Status,
}

/// What happened to a batch.
enum Delivery {
    Delivered,
    Stopped,
}

impl Sink {
    /// Builds the sink of `config` (inside a tokio runtime: the gRPC
    /// channel is lazy and spawns its connection task there).
    pub fn new(data_dir: &Path, config: SinkConfig, ledger_id: &[u8]) -> Result<Sink, Error> {
        config.validate()?;
        let origin = Origin {
            ledger_id: hex(ledger_id),
            node: config.node.clone().unwrap_or_else(record::host_name),
        };
        let (client, lake) = match (config.protocol, config.lake_dir(data_dir)) {
            (Protocol::File, Some(dir)) => (
                None,
                Some(Lake::new(dir, &origin.ledger_id, config.roll_bytes, config.roll_sec)),
            ),
            (Protocol::File, None) => return Err(Error::config(&config.name, "a file sink needs path = \"DIR\"")),
            _ => (
                Some(Client::new(
                    &config.target(),
                    &config.resolve_headers()?,
                    <ExportLogsServiceRequest as crate::transport::Signal>::HTTP_PATH,
                )?),
                None,
            ),
        };
        Ok(Sink {
            dir: state::sink_dir(data_dir, &config.name),
            config,
            client,
            lake,
            origin,
            next: 0,
            accepted: None,
            cursor_written: Instant::now(),
            status: Status {
                pid: std::process::id(),
                ..Status::default()
            },
        })
    }

    /// Reads the cursor (and a replay request), checked against the log: a
    /// cursor of another ledger, or at an event the log does not have, is
    /// dropped and the log sent from its start.
    pub fn open(&mut self, ledger: &Ledger) -> Result<(), Error> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io("cannot create", &self.dir, e))?;
        for name in ["cursor.json.tmp", "status.json.tmp", "replay.json.tmp"] {
            state::remove(&self.dir.join(name))?;
        }
        let cursor = match state::read_cursor(&self.dir) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(sink = %self.config.name, error = %e, "export: unreadable cursor; sending the log from its start");
                None
            }
        };
        self.next = match cursor {
            None => 0,
            Some(c) if c.ledger_id != self.origin.ledger_id => {
                tracing::warn!(sink = %self.config.name, cursor_ledger = %c.ledger_id, "export: the cursor is of another ledger; sending this log from its start");
                0
            }
            Some(c) => match ledger
                .get(c.seq)
                .map_err(|e| Error::ledger("reading the cursor's event", e))?
            {
                Some(e) if e.hash.to_hex() == c.hash => c.seq + 1,
                _ => {
                    tracing::warn!(sink = %self.config.name, seq = c.seq, "export: the log does not have the cursor's event; sending the log from its start");
                    0
                }
            },
        };
        // Whole files a crash left past the cursor are adopted, not
        // written again.
        if let Some(lake) = &mut self.lake {
            let adopted = lake.recover(self.next, ledger)?;
            if let Some(last) = adopted.last() {
                tracing::info!(sink = %self.config.name, files = adopted.len(), to = last.last_seq, "export: adopting lake files written before a crash");
                let (seq, hash) = (last.last_seq, last.last_hash.clone());
                self.write_cursor(seq, &hash)?;
                self.next = seq + 1;
            }
        }
        self.take_replay(ledger).map(|_| ())
    }

    /// Applies a `sealgate export replay` request, if there is one; whether
    /// there was one.
    fn take_replay(&mut self, ledger: &Ledger) -> Result<bool, Error> {
        let Some(replay) = state::read_replay(&self.dir)? else {
            return Ok(false);
        };
        let from = replay.from.min(ledger.head().seq + 1);
        // An accepted position not yet written must not undo the replay.
        self.accepted = None;
        tracing::info!(sink = %self.config.name, from, "export: replaying");
        self.set_cursor_before(ledger, from)?;
        self.next = from;
        if let Some(lake) = &mut self.lake {
            lake.discard();
        }
        state::remove(&state::replay_path(&self.dir))?;
        Ok(true)
    }

    fn set_cursor_before(&self, ledger: &Ledger, from: u64) -> Result<(), Error> {
        match from.checked_sub(1) {
            None => state::remove_cursor(&self.dir),
            Some(seq) => {
                let event = ledger
                    .get(seq)
                    .map_err(|e| Error::ledger("reading the replay's start", e))?
                    .ok_or(Error::Gap {
                        expected: seq,
                        found: ledger.head().seq,
                    })?;
                self.write_cursor(seq, &event.hash.to_hex())
            }
        }
    }

    fn write_cursor(&self, seq: u64, hash: &str) -> Result<(), Error> {
        state::write_cursor(
            &self.dir,
            &Cursor {
                ledger_id: self.origin.ledger_id.clone(),
                seq,
                hash: hash.to_owned(),
            },
        )
    }

    fn save_status(&mut self) {
        self.status.updated_at = state::now_rfc3339();
        if let Err(e) = state::write_status(&self.dir, &self.status) {
            tracing::warn!(sink = %self.config.name, error = %e, "export: cannot write status");
        }
    }

    fn set_error(&mut self, state: SinkState, why: String) {
        let changed = self.status.state != state || self.status.last_error.as_deref() != Some(why.as_str());
        if changed {
            match state {
                SinkState::Stalled | SinkState::Failed => {
                    tracing::error!(sink = %self.config.name, error = %why, "export: not advancing")
                }
                _ => tracing::warn!(sink = %self.config.name, error = %why, "export: retrying"),
            }
        }
        self.status.state = state;
        self.status.last_error = Some(why);
        self.status.last_error_at = Some(state::now_rfc3339());
        self.save_status();
    }

    /// Reads `[next, to]` from the log.
    fn read(&self, ledger: &Ledger, to: u64) -> Result<Vec<SealedEvent>, Error> {
        read(ledger, self.next, to)
    }

    /// Follows the log until `stop` is set.
    pub async fn run(self, ledger: Arc<Ledger>, stop: Arc<AtomicBool>) {
        if self.lake.is_some() {
            self.run_lake(ledger, stop).await
        } else {
            self.run_otlp(ledger, stop).await
        }
    }

    /// A `file` sink: reads the log in batches into the file being filled,
    /// closes it (durably, with its manifest line) when it is due, and
    /// only then moves the cursor. The work is on this sink's own thread.
    async fn run_lake(mut self, ledger: Arc<Ledger>, stop: Arc<AtomicBool>) {
        self.save_status();
        while !stop.load(Ordering::Relaxed) {
            match self.take_replay(&ledger) {
                Ok(_) => {}
                Err(e) => self.set_error(SinkState::Failed, format!("replay request: {e}")),
            }
            if let Err(e) = self.lake_step(&ledger) {
                self.set_error(SinkState::Failed, e.to_string());
                // The file being filled is dropped: the next attempt
                // starts again from the cursor.
                self.reset_to_cursor(&ledger);
                nap(Duration::from_secs(1), &stop).await;
                continue;
            }
            if self.next > ledger.head().seq {
                nap(POLL, &stop).await;
            }
        }
        // A clean stop closes the file being filled, so a restart does
        // not write it again.
        if let Err(e) = self.close_lake_file() {
            self.set_error(SinkState::Failed, e.to_string());
        }
        self.status.in_flight = None;
        self.status.state = SinkState::Stopped;
        self.save_status();
    }

    /// One round of a `file` sink: a file that is due is closed; else one
    /// batch of the log, if any, goes into the file being filled.
    fn lake_step(&mut self, ledger: &Ledger) -> Result<(), Error> {
        if self.lake.as_ref().is_some_and(Lake::due) {
            return self.close_lake_file();
        }
        let head = ledger.head();
        if self.next > head.seq {
            return Ok(());
        }
        let to = head.seq.min(self.next + self.config.batch_size as u64 - 1);
        let events = self.read(ledger, to)?;
        let Some(lake) = &mut self.lake else {
            return Ok(());
        };
        for sealed in &events {
            lake.add(sealed, self.config.wants(sealed.event.kind.as_str()))?;
        }
        lake.end_batch()?;
        self.next = to + 1;
        self.status.in_flight = lake.open_range();
        // Caught up: `export status` shows the open file's range.
        if self.next > head.seq {
            self.save_status();
        }
        Ok(())
    }

    /// Closes the file being filled (if it holds records) and moves the
    /// cursor past it.
    fn close_lake_file(&mut self) -> Result<(), Error> {
        let Some(lake) = &mut self.lake else {
            return Ok(());
        };
        let Some(entry) = lake.finish()? else {
            return Ok(());
        };
        self.write_cursor(entry.last_seq, &entry.last_hash)?;
        self.status.exported += entry.count;
        self.status.requests += 1;
        self.status.last_success_at = Some(state::now_rfc3339());
        self.status.state = SinkState::Running;
        self.status.last_error = None;
        self.status.in_flight = None;
        self.save_status();
        Ok(())
    }

    /// After a failure: forget what was read past the cursor.
    fn reset_to_cursor(&mut self, ledger: &Ledger) {
        if let Some(lake) = &mut self.lake {
            lake.discard();
        }
        self.next = match state::read_cursor(&self.dir) {
            Ok(Some(c)) if c.ledger_id == self.origin.ledger_id => match ledger.get(c.seq) {
                Ok(Some(e)) if e.hash.to_hex() == c.hash => c.seq + 1,
                _ => self.next.min(c.seq + 1),
            },
            _ => 0,
        };
    }

    /// An OTLP sink: one batch in flight at a time, the next one read and
    /// encoded meanwhile on a thread of its own ([`Producer`]), so that
    /// the log's reading and the records' building overlap the
    /// collector's round trip; order is kept (batches come through a queue
    /// of one, and are sent one at a time).
    async fn run_otlp(mut self, ledger: Arc<Ledger>, stop: Arc<AtomicBool>) {
        self.save_status();
        let mut producer = self.producer(&ledger);
        while !stop.load(Ordering::Relaxed) {
            match self.take_replay(&ledger) {
                Ok(false) => {}
                // What was read ahead is of the old position.
                Ok(true) => producer = self.producer(&ledger),
                Err(e) => self.set_error(SinkState::Failed, format!("replay request: {e}")),
            }
            let batch = match tokio::time::timeout(POLL, producer.batches.recv()).await {
                Err(_) => {
                    // Nothing new: the cursor catches up with what was accepted.
                    if let Err(e) = self.write_accepted() {
                        self.set_error(SinkState::Failed, e.to_string());
                    }
                    continue;
                }
                Ok(Some(Ok(batch))) if batch.from == self.next => batch,
                Ok(Some(Ok(_))) | Ok(None) => {
                    // Not where the sink is (cannot happen), or the thread
                    // ended: start reading again from the sink's position.
                    producer = self.producer(&ledger);
                    continue;
                }
                Ok(Some(Err(e))) => {
                    self.set_error(SinkState::Failed, e.to_string());
                    nap(Duration::from_secs(1), &stop).await;
                    producer = self.producer(&ledger);
                    continue;
                }
            };
            match self.deliver(batch, &stop).await {
                Ok(Delivery::Delivered) => {
                    let caught_up = self.next > ledger.head().seq;
                    if (caught_up || self.cursor_written.elapsed() >= CURSOR_EVERY)
                        && let Err(e) = self.write_accepted()
                    {
                        self.set_error(SinkState::Failed, e.to_string());
                    }
                }
                Ok(Delivery::Stopped) => break,
                Err(e) => {
                    self.set_error(SinkState::Failed, e.to_string());
                    nap(Duration::from_secs(1), &stop).await;
                    producer = self.producer(&ledger);
                }
            }
        }
        producer.halt();
        if let Err(e) = self.write_accepted() {
            self.set_error(SinkState::Failed, e.to_string());
        }
        self.status.in_flight = None;
        self.status.state = SinkState::Stopped;
        self.save_status();
    }

    /// Writes the cursor at the last accepted batch, if it is behind.
    fn write_accepted(&mut self) -> Result<(), Error> {
        if let Some((seq, hash)) = self.accepted.take() {
            if let Err(e) = self.write_cursor(seq, &hash) {
                self.accepted = Some((seq, hash));
                return Err(e);
            }
            self.cursor_written = Instant::now();
        }
        Ok(())
    }

    /// A reader from the sink's position (the one before is halted when
    /// the returned one replaces it).
    fn producer(&self, ledger: &Arc<Ledger>) -> Producer {
        Producer::start(ledger.clone(), self.config.clone(), self.origin.clone(), self.next)
    }

    /// Sends a batch (the records the sink wants) until the collector
    /// accepts it, then moves the cursor past it.
    async fn deliver(&mut self, batch: Batch, stop: &AtomicBool) -> Result<Delivery, Error> {
        let Batch {
            from,
            to,
            last_hash,
            request,
            wanted,
        } = batch;
        if let Some(request) = request {
            let mut backoff = FIRST_BACKOFF;
            loop {
                if stop.load(Ordering::Relaxed) {
                    return Ok(Delivery::Stopped);
                }
                self.status.in_flight = Some((from, to));
                self.status.requests += 1;
                let answer = match self.client.as_mut() {
                    Some(client) => client.send(&request).await,
                    None => return Err(Error::config(&self.config.name, "not an OTLP sink")),
                };
                match answer {
                    Answer::Accepted { rejected, reason } => {
                        if rejected > 0 {
                            tracing::warn!(sink = %self.config.name, from, to, rejected, reason = %reason, "export: the collector rejected records; dead-lettered");
                            state::append_dead_letter(
                                &self.dir,
                                &DeadLetter {
                                    at: state::now_rfc3339(),
                                    from_seq: from,
                                    to_seq: to,
                                    rejected,
                                    reason,
                                    records: wanted.clone(),
                                },
                            )?;
                        } else if !reason.is_empty() {
                            tracing::warn!(sink = %self.config.name, from, to, message = %reason, "export: the collector accepted the batch with a warning");
                        }
                        self.status.exported += (wanted.len() as u64).saturating_sub(rejected.max(0) as u64);
                        self.status.last_success_at = Some(state::now_rfc3339());
                        break;
                    }
                    Answer::Retry { after, why } => {
                        self.set_error(SinkState::Retrying, why);
                        let wait = match after {
                            Some(d) => d.min(MAX_COLLECTOR_DELAY),
                            None => jitter(backoff),
                        };
                        backoff = (backoff * 2).min(Duration::from_millis(self.config.max_backoff_ms.max(1)));
                        nap(wait, stop).await;
                    }
                    Answer::Refused { why } => {
                        self.set_error(SinkState::Stalled, why);
                        nap(Duration::from_secs(self.config.stalled_retry_sec.max(1)), stop).await;
                    }
                }
            }
        }
        self.accepted = Some((to, last_hash));
        self.next = to + 1;
        self.status.state = SinkState::Running;
        self.status.last_error = None;
        self.status.in_flight = None;
        self.save_status();
        Ok(Delivery::Delivered)
    }
}

/// A range of the log read and encoded, ready to send.
struct Batch {
    from: u64,
    to: u64,
    /// The hash of the event at `to` (the cursor's, once accepted).
    last_hash: String,
    /// `None` when the sink wants none of the range's kinds.
    request: Option<ExportLogsServiceRequest>,
    /// Seq and hash of each record in `request` (for the dead letters).
    wanted: Vec<(u64, String)>,
}

/// An OTLP sink's reader: a thread that follows the log from a position,
/// cutting batches as the sink's config says (`batch_size` events, or
/// fewer once `interval_ms` passed), building their records and handing
/// them over through a queue of one. Halted (or dropped), it ends within a
/// poll; it never touches the cursor.
struct Producer {
    batches: tokio::sync::mpsc::Receiver<Result<Batch, Error>>,
    halted: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Producer {
    fn start(ledger: Arc<Ledger>, config: SinkConfig, origin: Origin, from: u64) -> Producer {
        let (tx, batches) = tokio::sync::mpsc::channel(1);
        let halted = Arc::new(AtomicBool::new(false));
        let flag = halted.clone();
        let name = format!("export-{}-read", config.name);
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || produce(&ledger, &config, &origin, from, &flag, &tx))
            .map_err(|e| tracing::error!(error = %e, "export: cannot start a reader thread"))
            .ok();
        Producer {
            batches,
            halted,
            thread,
        }
    }

    fn halt(mut self) {
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        self.halted.store(true, Ordering::Relaxed);
        // A thread waiting to hand a batch over sees the queue closed.
        self.batches.close();
        while self.batches.try_recv().is_ok() {}
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

fn produce(
    ledger: &Ledger,
    config: &SinkConfig,
    origin: &Origin,
    from: u64,
    halted: &AtomicBool,
    tx: &tokio::sync::mpsc::Sender<Result<Batch, Error>>,
) {
    let mut next = from;
    let mut last_cut = Instant::now()
        .checked_sub(config.interval())
        .unwrap_or_else(Instant::now);
    let sleep = |d: Duration| std::thread::sleep(d.min(POLL));
    while !halted.load(Ordering::Relaxed) {
        let head = ledger.head();
        if next > head.seq {
            sleep(POLL);
            continue;
        }
        let available = head.seq - next + 1;
        let since = last_cut.elapsed();
        if available < config.batch_size as u64 && since < config.interval() {
            sleep(config.interval() - since);
            continue;
        }
        let to = head.seq.min(next + config.batch_size as u64 - 1);
        let batch = read(ledger, next, to).map(|events| build(&events, config, origin));
        last_cut = Instant::now();
        let failed = batch.is_err();
        if tx.blocking_send(batch).is_err() {
            return;
        }
        if failed {
            // The sink restarts a reader after its pause.
            return;
        }
        next = to + 1;
    }
}

/// `events` (a range, in order, not empty) as a batch.
fn build(events: &[SealedEvent], config: &SinkConfig, origin: &Origin) -> Batch {
    let observed = ledger::Timestamp::now().as_nanos();
    let mut records = Vec::with_capacity(events.len());
    let mut wanted = Vec::with_capacity(events.len());
    for s in events {
        if config.wants(s.event.kind.as_str()) {
            records.push(record::log_record(s, origin, observed));
            wanted.push((s.event.seq, s.hash.to_hex()));
        }
    }
    let (from, to, last_hash) = match (events.first(), events.last()) {
        (Some(f), Some(l)) => (f.event.seq, l.event.seq, l.hash.to_hex()),
        _ => (0, 0, String::new()),
    };
    Batch {
        from,
        to,
        last_hash,
        request: (!records.is_empty()).then(|| record::request(origin, records)),
        wanted,
    }
}

/// Reads `[from, to]` from the log, checking there is no gap.
fn read(ledger: &Ledger, from: u64, to: u64) -> Result<Vec<SealedEvent>, Error> {
    let mut out = Vec::with_capacity((to - from + 1) as usize);
    let mut expected = from;
    for sealed in ledger
        .events(from, to)
        .map_err(|e| Error::ledger("reading the log", e))?
    {
        let sealed = sealed.map_err(|e| Error::ledger("reading the log", e))?;
        if sealed.event.seq != expected {
            return Err(Error::Gap {
                expected,
                found: sealed.event.seq,
            });
        }
        expected += 1;
        out.push(sealed);
    }
    if expected != to + 1 {
        return Err(Error::Gap {
            expected,
            found: to + 1,
        });
    }
    Ok(out)
}

/// A wait of `d` scaled by a random factor in [0.5, 1].
fn jitter(d: Duration) -> Duration {
    let r = rand_core::OsRng.next_u32() as f64 / u32::MAX as f64;
    d.mul_f64(0.5 + r / 2.0)
}

/// Sleeps `d`, waking early when `stop` is set.
async fn nap(d: Duration, stop: &AtomicBool) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= end {
            return;
        }
        tokio::time::sleep((end - now).min(POLL)).await;
    }
}

/// Starts every configured sink on a thread of its own (named
/// `export-NAME`, with a single-threaded runtime), following `ledger`
/// until `stop` is set. A config that cannot work (a header's variable
/// unset, a bad endpoint) is an error here, before anything runs; a
/// collector that is down is not.
pub fn spawn(
    data_dir: &Path,
    ledger: Arc<Ledger>,
    configs: &[SinkConfig],
    stop: Arc<AtomicBool>,
) -> Result<Vec<std::thread::JoinHandle<()>>, Error> {
    validate_all(configs)?;
    let mut handles = Vec::new();
    for config in configs {
        let name = config.name.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("cannot start a runtime for exporter", Path::new(&name), e))?;
        let sink = runtime.block_on(async { Sink::new(data_dir, config.clone(), &ledger.ledger_id()) })?;
        let ledger = ledger.clone();
        let stop = stop.clone();
        let handle = std::thread::Builder::new()
            .name(format!("export-{name}"))
            .spawn(move || {
                let mut sink = sink;
                // Opening reads the log: retried until it works or we stop.
                loop {
                    match sink.open(&ledger) {
                        Ok(()) => break,
                        Err(e) => {
                            sink.set_error(SinkState::Failed, e.to_string());
                            if stop.load(Ordering::Relaxed) {
                                return;
                            }
                            std::thread::sleep(Duration::from_secs(1));
                        }
                    }
                }
                runtime.block_on(sink.run(ledger, stop));
            })
            .map_err(|e| Error::io("cannot start the thread of exporter", Path::new(&name), e))?;
        handles.push(handle);
    }
    Ok(handles)
}

/// One sink as `sealgate export status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub name: String,
    /// The collector's URL, or `file://DIR` for a file sink.
    pub endpoint: String,
    pub protocol: Protocol,
    /// The last event the collector accepted.
    pub cursor: Option<u64>,
    /// The log's head.
    pub head: u64,
    /// Events of the log not yet accepted.
    pub lag_events: u64,
    /// Age of the oldest event not yet accepted (0 when caught up).
    pub lag_seconds: f64,
    pub status: Option<Status>,
    /// Whether the process that wrote `status` is still running: false when
    /// its gateway was killed rather than stopped (the status then shows
    /// the state it was in). It is this process, or a process named
    /// `sealgate` with that pid on this host. None: no status, a clean stop
    /// (state `stopped`), or no `/proc` to look in.
    pub process_alive: Option<bool>,
    /// Dead-lettered batches and the records the collector said it rejected.
    pub dead_letter_batches: usize,
    pub dead_letter_records: i64,
    /// A replay waiting to be taken by the sink.
    pub replay_from: Option<u64>,
    /// File sinks: the files the manifest lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lake_files: Option<usize>,
}

/// See [`Report::process_alive`].
fn process_alive(status: &Status) -> Option<bool> {
    if status.state == SinkState::Stopped || !Path::new("/proc/self").exists() {
        return None;
    }
    if status.pid == std::process::id() {
        return Some(true);
    }
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", status.pid));
    Some(comm.is_ok_and(|c| c.trim_end() == "sealgate"))
}

/// A sink's lag: its cursor (the last seq delivered), and the events and
/// seconds it is behind the log's head. Reads the cursor file and at most
/// one event, nothing else (what the metrics read every interval).
pub fn lag(data_dir: &Path, ledger: &Ledger, sink: &str) -> Result<(Option<u64>, u64, f64), Error> {
    let head = ledger.head();
    let id = hex(&ledger.ledger_id());
    let dir = state::sink_dir(data_dir, sink);
    let cursor = state::read_cursor(&dir)?.filter(|cur| cur.ledger_id == id);
    let next = cursor.as_ref().map_or(0, |cur| cur.seq + 1);
    let lag_events = (head.seq + 1).saturating_sub(next);
    let lag_seconds = if lag_events == 0 {
        0.0
    } else {
        match ledger
            .get(next)
            .map_err(|e| Error::ledger("reading the first unsent event", e))?
        {
            Some(e) => {
                ledger::Timestamp::now()
                    .as_nanos()
                    .saturating_sub(e.event.ts.as_nanos()) as f64
                    / 1e9
            }
            None => 0.0,
        }
    };
    Ok((cursor.map(|c| c.seq), lag_events, lag_seconds))
}

/// What each configured sink has done, from its files and the log.
pub fn report(data_dir: &Path, ledger: &Ledger, configs: &[SinkConfig]) -> Result<Vec<Report>, Error> {
    let head = ledger.head();
    let mut out = Vec::new();
    for c in configs {
        let dir = state::sink_dir(data_dir, &c.name);
        let (cursor, lag_events, lag_seconds) = lag(data_dir, ledger, &c.name)?;
        let letters = state::read_dead_letters(&dir)?;
        let status = state::read_status(&dir)?;
        out.push(Report {
            name: c.name.clone(),
            endpoint: c.destination(data_dir),
            protocol: c.protocol,
            cursor,
            head: head.seq,
            lag_events,
            lag_seconds,
            process_alive: status.as_ref().and_then(process_alive),
            status,
            dead_letter_batches: letters.len(),
            dead_letter_records: letters.iter().map(|d| d.rejected).sum(),
            replay_from: state::read_replay(&dir)?.map(|r| r.from),
            lake_files: match c.lake_dir(data_dir) {
                Some(lake) if c.protocol == Protocol::File => Some(crate::lake::read_manifest(&lake)?.len()),
                _ => None,
            },
        });
    }
    Ok(out)
}
