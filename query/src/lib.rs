//! SQL over the ledger: the `events` table (one row per event, the envelope
//! flattened and the typed body's fields beside it), kept as Arrow IPC
//! segments under `<data dir>/derived/query/` by a [`Follower`] that reads
//! the log, and queried with DataFusion. `docs/QUERY.md` is the reference.
//!
//! **Architecture invariant:** derived data is never the truth. This crate
//! opens ledgers read-only or reads through a handle it never appends
//! with; everything it writes can be deleted and rebuilt from the log, and
//! every answer names the head it was computed at so that `--verify` can
//! check it against the signed log.
#![deny(unsafe_code, clippy::unwrap_used)]

pub mod extra;
pub mod keys;
pub mod parquet_export;
pub mod reports;
pub mod row;
pub mod store;
pub mod table;
pub mod text;
pub mod views;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{SessionConfig, SessionContext};
use ledger::{Head, Ledger};

pub use extra::{Table, Values};
pub use store::{Cursor, DEFAULT_SEGMENT_EVENTS, Follower, Progress, Repairs, Segment, store_dir};
pub use table::{Bounds, EventsTable, ScanStats, Snapshot, Source};

/// Everything that can go wrong reading the ledger into tables or
/// answering a query.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a readable index file: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("arrow: {context}: {message}")]
    Arrow { context: String, message: String },
    #[error("ledger: {context}: {source}")]
    Ledger {
        context: &'static str,
        source: ledger::Error,
    },
    #[error("{path}: another process keeps this index (a running `sealgate serve`?); stop it first")]
    Busy { path: PathBuf },
    #[error("the log skips from seq {expected} to {found}")]
    Gap { expected: u64, found: u64 },
    #[error("seq {seq}: {what} cannot be a row")]
    Unrepresentable { seq: u64, what: String },
    /// The query did not plan or run: DataFusion's message (with the
    /// position, for a syntax error).
    #[error("query: {message}")]
    Sql { message: String },
    /// The search index could not be read or written.
    #[error("search index: {message}")]
    Search { message: String },
    /// A search query that does not parse (the message names the
    /// position).
    #[error("{message}")]
    BadSearch { message: String },
}

impl Error {
    pub(crate) fn io(context: &'static str, path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            context,
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn arrow(path: &Path, e: impl std::fmt::Display) -> Error {
        Error::Arrow {
            context: path.display().to_string(),
            message: e.to_string(),
        }
    }

    pub(crate) fn ledger(context: &'static str, source: ledger::Error) -> Error {
        Error::Ledger { context, source }
    }
}

/// A query's answer, with the head it was computed at.
#[derive(Debug)]
pub struct Answer {
    pub head: Head,
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub stats: ScanStats,
    /// Why the derived store was not used (the answer then came from the
    /// log alone), if it was not.
    pub store_ignored: Option<String>,
    /// Which columns `--verify` can check against the event the row names.
    pub checkable: Option<Checkable>,
}

/// The columns of an answer that name an event (`seq`, `hash`, from one
/// relation) and the columns taken unchanged from that same event's
/// `events` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkable {
    pub seq: usize,
    pub hash: usize,
    /// Columns that are `events` columns of the same row, unrenamed.
    pub columns: Vec<usize>,
}

impl Answer {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// How long a query may run and how much memory its operators may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub timeout: std::time::Duration,
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            timeout: std::time::Duration::from_secs(60),
            memory_bytes: 1 << 30,
        }
    }
}

/// What a query runs with besides its SQL.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options<'a> {
    /// Tables beside `events` and the views.
    pub tables: &'a [Table],
    pub limits: Limits,
}

/// Runs `sql` over `snap` from `source`. Read-only by construction: DDL,
/// DML and statements are refused.
pub fn run(snap: Arc<Snapshot>, source: Source, sql: &str) -> Result<Answer, Error> {
    run_with(snap, source, sql, &Options::default())
}

/// [`run`], with `opts`: extra tables, and limits on time and memory
/// (over either, the query fails with an error saying which).
pub fn run_with(snap: Arc<Snapshot>, source: Source, sql: &str, opts: &Options<'_>) -> Result<Answer, Error> {
    let mut started = None;
    let mut batches = Vec::new();
    let stats = run_each(
        snap,
        source,
        sql,
        opts,
        std::future::pending(),
        |s| {
            started = Some(s.clone());
            Ok(())
        },
        |b| {
            batches.push(b);
            Ok(())
        },
    )?;
    let s = started.ok_or_else(|| Error::Sql {
        message: "the query ended before it started".into(),
    })?;
    Ok(Answer {
        head: s.head,
        schema: s.schema,
        batches,
        stats,
        store_ignored: s.store_ignored,
        checkable: s.checkable,
    })
}

/// What an answer is, known once its query is planned: before any row.
#[derive(Clone, Debug)]
pub struct Started {
    pub head: Head,
    pub schema: SchemaRef,
    pub store_ignored: Option<String>,
    pub checkable: Option<Checkable>,
}

/// [`run_with`], handing the answer over as it is computed instead of
/// holding it: `start` once the query is planned (an error in the query
/// itself comes before it), then `each` with every batch of rows in order.
/// An error from either stops the query and is returned, and so does
/// `until` completing (the one who wanted the answer went away), even
/// while no row is ready. The time limit covers the whole run, the
/// callbacks included.
pub fn run_each(
    snap: Arc<Snapshot>,
    source: Source,
    sql: &str,
    opts: &Options<'_>,
    until: impl std::future::Future<Output = ()>,
    start: impl FnOnce(&Started) -> Result<(), Error>,
    mut each: impl FnMut(RecordBatch) -> Result<(), Error>,
) -> Result<ScanStats, Error> {
    use futures::StreamExt;
    // Two workers: DataFusion runs a query's partitions as tasks, so a
    // single-threaded runtime would use one core however many it plans for.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("query")
        .enable_time()
        .build()
        .map_err(|e| Error::Sql {
            message: format!("cannot start the query runtime: {e}"),
        })?;
    let table = Arc::new(EventsTable::new(snap.clone(), source));
    let stats = table.stats();
    let config = SessionConfig::new()
        .with_target_partitions(2)
        .with_information_schema(false);
    // A hard memory limit, and no spilling: a query writes no file.
    let no_spill = datafusion::execution::disk_manager::DiskManagerBuilder::default()
        .with_mode(datafusion::execution::disk_manager::DiskManagerMode::Disabled);
    let memory = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_memory_limit(opts.limits.memory_bytes, 1.0)
        .with_disk_manager_builder(no_spill)
        .build_arc()
        .map_err(sql_error)?;
    let ctx = SessionContext::new_with_config_rt(config, memory);
    ctx.register_table("events", table).map_err(sql_error)?;
    for t in opts.tables {
        let batch = t.batch()?;
        let mem = datafusion::datasource::MemTable::try_new(batch.schema(), vec![vec![batch]]).map_err(sql_error)?;
        ctx.register_table(t.name.as_str(), Arc::new(mem)).map_err(sql_error)?;
    }
    ctx.register_udtf("search", Arc::new(text::SearchFunction::new(snap.clone(), source)));
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let answer = runtime.block_on(async {
        // Only the views the query names (and those they use) are planned:
        // a point lookup need not plan four joins first.
        for (name, definition) in views::VIEWS.iter().filter(|(name, _)| views::wanted(sql, name)) {
            ctx.sql(&format!("CREATE VIEW {name} AS {definition}"))
                .await
                .map_err(|e| Error::Sql {
                    message: format!("the view {name} does not plan: {}", e.strip_backtrace()),
                })?;
        }
        let timeout = opts.limits.timeout;
        let work = async {
            let frame = ctx.sql_with_options(sql, options).await.map_err(sql_error)?;
            let checkable = checkable(frame.schema(), frame.logical_plan());
            let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
            let mut stream = frame.execute_stream().await.map_err(sql_error)?;
            start(&Started {
                head: snap.head,
                schema,
                store_ignored: snap.store_ignored.clone(),
                checkable,
            })?;
            // The plan runs on a worker; this thread only hands its batches
            // on and watches the clock, so the time limit and `until` stop
            // the query on time even while an operator computes for long
            // without yielding a batch.
            let (batches, mut received) = tokio::sync::mpsc::channel(2);
            let pump = tokio::spawn(async move {
                while let Some(batch) = stream.next().await {
                    if batches.send(batch).await.is_err() {
                        break;
                    }
                }
            });
            let _abort = AbortOnDrop(pump);
            while let Some(batch) = received.recv().await {
                each(batch.map_err(sql_error)?)?;
            }
            Ok::<_, Error>(())
        };
        let answer = tokio::time::timeout(timeout, async {
            tokio::select! {
                done = work => done,
                () = until => Err(Error::Sql { message: "stopped: the answer is no longer wanted".into() }),
            }
        });
        answer.await.map_err(|_| Error::Sql {
            message: format!(
                "the query ran longer than its time limit of {:.1} s (query.timeout_sec, --timeout) and was stopped",
                timeout.as_secs_f64()
            ),
        })?
    });
    // A worker may still be inside an operator that has not yielded: the
    // runtime is left to wind down on its own rather than waited for.
    runtime.shutdown_background();
    answer?;
    let stats = stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    Ok(stats)
}

/// Aborts the task when dropped: a query stopped early stops its plan.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Which output columns come unchanged from one `events` row: those
/// qualified by a relation that is a plain scan of `events` (`events`
/// itself, or an alias of it), the same one as the `seq` and `hash`
/// columns. A view, a join partner, a renamed or computed column is not;
/// a view's `seq` and `hash` still name its event.
fn checkable(schema: &datafusion::common::DFSchema, plan: &datafusion::logical_expr::LogicalPlan) -> Option<Checkable> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    use datafusion::logical_expr::LogicalPlan;
    // Every relation name the plan defines (scans, aliases, CTEs, views'
    // insides), and those that are a plain scan of `events`. A name
    // defined more than once (an alias reused inside a view, a CTE called
    // `events`) is not trusted: its columns are checked by the rerun only.
    let mut names: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    let mut scans = std::collections::BTreeSet::new();
    let _ = plan.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::TableScan(t) => {
                *names.entry(t.table_name.to_string()).or_default() += 1;
                if t.table_name.table() == "events" {
                    scans.insert(t.table_name.to_string());
                }
            }
            LogicalPlan::SubqueryAlias(a) => {
                *names.entry(a.alias.to_string()).or_default() += 1;
                if let LogicalPlan::TableScan(t) = a.input.as_ref()
                    && t.table_name.table() == "events"
                {
                    scans.insert(a.alias.to_string());
                }
            }
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    });
    scans.retain(|n| names.get(n) == Some(&1));
    let fields: Vec<(Option<String>, String)> = schema
        .iter()
        .map(|(q, f)| (q.map(ToString::to_string), f.name().clone()))
        .collect();
    let find = |name: &str| fields.iter().position(|(q, n)| q.is_some() && n == name);
    let seq = find("seq")?;
    let qualifier = fields[seq].0.clone();
    let hash = fields.iter().position(|(q, n)| *q == qualifier && n == "hash")?;
    let events = row::schema();
    let columns = match &qualifier {
        Some(q) if scans.contains(q) => fields
            .iter()
            .enumerate()
            .filter(|(_, (fq, n))| *fq == qualifier && events.index_of(n).is_ok())
            .map(|(i, _)| i)
            .collect(),
        _ => Vec::new(),
    };
    Some(Checkable { seq, hash, columns })
}

fn sql_error(e: datafusion::error::DataFusionError) -> Error {
    // An error of ours raised inside a scan keeps its own words.
    match e.find_root() {
        datafusion::error::DataFusionError::External(inner) => Error::Sql {
            message: inner.to_string(),
        },
        datafusion::error::DataFusionError::ResourcesExhausted(why) => Error::Sql {
            message: format!("the query needs more memory than its limit (query.memory_mb) and was stopped: {why}"),
        },
        root => Error::Sql {
            message: root.strip_backtrace(),
        },
    }
}

/// Opens the ledger at `ledger_dir` read-only and the store in `store`, and
/// answers `sql` at the log's head.
pub fn query(ledger_dir: &Path, store: &Path, sql: &str) -> Result<(Answer, Arc<Snapshot>), Error> {
    let ledger = Arc::new(Ledger::open_read_only(ledger_dir).map_err(|e| Error::ledger("opening the ledger", e))?);
    let head = ledger
        .head_checked()
        .map_err(|e| Error::ledger("reading the head", e))?;
    let snap = Arc::new(Snapshot::open(store, ledger, head)?);
    Ok((run(snap.clone(), Source::Store, sql)?, snap))
}

/// One disagreement between an answer and the signed log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The event it is about, when one is named.
    pub seq: Option<u64>,
    pub what: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "seq {seq}: {}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

/// Checks `answer` (computed over `snap` from the store) against the log:
///
/// 1. every returned row with `seq` and `hash` columns: the log's event at
///    that seq has that hash, and each returned column that is an `events`
///    column equals the row rebuilt from the event;
/// 2. every segment the answer read, row by row against rows rebuilt from
///    the log: a row changed, missing (dropped) or not in the segment's
///    range or repeated (invented), each named by seq;
/// 3. the same query over rows rebuilt from the log for the same ranges:
///    a different answer is reported even when no seq is returned.
pub fn verify(snap: Arc<Snapshot>, answer: &Answer, sql: &str) -> Result<Vec<Finding>, Error> {
    verify_with(snap, answer, sql, &Options::default())
}

/// [`verify`] of an answer computed with `opts` (its tables come from the
/// log, and are given to the rerun as they are).
pub fn verify_with(snap: Arc<Snapshot>, answer: &Answer, sql: &str, opts: &Options<'_>) -> Result<Vec<Finding>, Error> {
    let mut findings = Vec::new();
    check_rows(&snap, answer, &mut findings)?;
    for (from, to) in &answer.stats.segments_read {
        // A segment that could not be read was not used: the log answered.
        if answer.stats.segments_unreadable.contains(&(*from, *to)) {
            continue;
        }
        let Some(s) = snap.segments.iter().find(|s| s.from == *from && s.to == *to) else {
            continue;
        };
        check_segment(&snap, s, &mut findings)?;
    }
    let again = run_with(snap, Source::Log, sql, opts)?;
    let (ours, theirs) = (render(&answer.batches)?, render(&again.batches)?);
    if ours != theirs {
        let mut extra = ours.clone();
        let mut missing = theirs.clone();
        for r in &theirs {
            if let Some(i) = extra.iter().position(|x| x == r) {
                extra.swap_remove(i);
            }
        }
        for r in &ours {
            if let Some(i) = missing.iter().position(|x| x == r) {
                missing.swap_remove(i);
            }
        }
        findings.push(Finding {
            seq: None,
            what: format!(
                "the query over rows rebuilt from the log answers differently: {} row(s) only in the answer {:?}, {} only in the log's {:?}",
                extra.len(),
                extra.iter().take(5).collect::<Vec<_>>(),
                missing.len(),
                missing.iter().take(5).collect::<Vec<_>>()
            ),
        });
    }
    Ok(findings)
}

/// Each row of `batches` as text, sorted.
fn render(batches: &[RecordBatch]) -> Result<Vec<String>, Error> {
    let mut rows = Vec::new();
    for b in batches {
        for i in 0..b.num_rows() {
            let mut cells = Vec::new();
            for c in b.columns() {
                let v = ScalarValue::try_from_array(c, i).map_err(|e| Error::Arrow {
                    context: "rendering an answer".into(),
                    message: e.to_string(),
                })?;
                cells.push(v.to_string());
            }
            rows.push(cells.join("|"));
        }
    }
    rows.sort();
    Ok(rows)
}

fn check_rows(snap: &Snapshot, answer: &Answer, findings: &mut Vec<Finding>) -> Result<(), Error> {
    let Some(check) = &answer.checkable else {
        return Ok(());
    };
    let events = row::schema();
    for b in &answer.batches {
        let seqs = b.column(check.seq).as_any().downcast_ref::<UInt64Array>();
        let hashes = b.column(check.hash).as_any().downcast_ref::<StringArray>();
        let (Some(seqs), Some(hashes)) = (seqs, hashes) else {
            return Ok(());
        };
        for i in 0..b.num_rows() {
            if !seqs.is_valid(i) || !hashes.is_valid(i) {
                continue;
            }
            let seq = seqs.value(i);
            let Some(sealed) = snap
                .ledger
                .get(seq)
                .map_err(|e| Error::ledger("verifying a row", e))?
                .filter(|_| seq <= snap.head.seq)
            else {
                findings.push(Finding {
                    seq: Some(seq),
                    what: format!("invented: the log has no seq {seq} (head {})", snap.head.seq),
                });
                continue;
            };
            if sealed.hash.to_hex() != hashes.value(i) {
                findings.push(Finding {
                    seq: Some(seq),
                    what: format!(
                        "hash {} returned, the log's is {}",
                        hashes.value(i),
                        sealed.hash.to_hex()
                    ),
                });
                continue;
            }
            if check.columns.is_empty() {
                continue;
            }
            let rebuilt = row::batch(&[row::row(&sealed)?])?;
            let schema = b.schema();
            for &j in &check.columns {
                let field = schema.field(j);
                let Ok(k) = events.index_of(field.name()) else { continue };
                if events.field(k).data_type() != field.data_type() {
                    continue;
                }
                let got = ScalarValue::try_from_array(b.column(j), i);
                let want = ScalarValue::try_from_array(rebuilt.column(k), 0);
                if let (Ok(got), Ok(want)) = (got, want)
                    && got != want
                {
                    findings.push(Finding {
                        seq: Some(seq),
                        what: format!("changed: {} is {got} in the answer, {want} in the log", field.name()),
                    });
                }
            }
        }
    }
    Ok(())
}

fn check_segment(snap: &Snapshot, s: &Segment, findings: &mut Vec<Finding>) -> Result<(), Error> {
    let stored = s.read()?;
    let rebuilt = row::batch(&table::read_rows(&snap.ledger, s.from, s.to)?)?;
    let log_seqs = column_u64(&rebuilt);
    let by_seq: BTreeMap<u64, usize> = log_seqs.iter().enumerate().map(|(i, q)| (*q, i)).collect();
    let mut seen = BTreeMap::new();
    for b in &stored {
        if b.schema().fields() != rebuilt.schema().fields() {
            findings.push(Finding {
                seq: None,
                what: format!("segment {}: its columns are not the events table's", s.path.display()),
            });
            return Ok(());
        }
        let seqs = column_u64(b);
        for (i, seq) in seqs.iter().enumerate() {
            let Some(&k) = by_seq.get(seq) else {
                findings.push(Finding {
                    seq: Some(*seq),
                    what: format!(
                        "invented: a row in segment {}-{} the log does not have there",
                        s.from, s.to
                    ),
                });
                continue;
            };
            if std::mem::replace(seen.entry(*seq).or_insert(false), true) {
                findings.push(Finding {
                    seq: Some(*seq),
                    what: format!("invented: a second row for it in segment {}-{}", s.from, s.to),
                });
                continue;
            }
            for (c, field) in rebuilt.schema().fields().iter().enumerate() {
                let got = ScalarValue::try_from_array(b.column(c), i);
                let want = ScalarValue::try_from_array(rebuilt.column(c), k);
                if let (Ok(got), Ok(want)) = (got, want)
                    && got != want
                {
                    findings.push(Finding {
                        seq: Some(*seq),
                        what: format!("changed: {} is {got} in the index, {want} in the log", field.name()),
                    });
                }
            }
        }
    }
    for seq in log_seqs {
        if !seen.contains_key(&seq) {
            findings.push(Finding {
                seq: Some(seq),
                what: format!("dropped: no row for it in segment {}-{}", s.from, s.to),
            });
        }
    }
    Ok(())
}

fn column_u64(b: &RecordBatch) -> Vec<u64> {
    b.column_by_name("seq")
        .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
        .map(|a| a.iter().flatten().collect())
        .unwrap_or_default()
}

/// How an answer is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Boxed table, as `psql`/`duckdb` print.
    Table,
    /// `{"head": {"seq", "hash"}, "rows": [...]}`.
    Json,
    /// RFC 4180, with a header line.
    Csv,
}

/// An answer written as its batches come, JSON or CSV, the same bytes as
/// [`write_answer`] writes of the whole answer: [`Streamed::start`] once the
/// query is planned, [`Streamed::rows`] for each batch in order,
/// [`Streamed::end`] after the last. Bytes cut off before `end` are not a
/// whole answer (JSON does not parse; a reader of CSV must be told apart,
/// by the error that stopped it).
pub struct Streamed {
    csv: bool,
    rows: usize,
    schema: Option<SchemaRef>,
}

impl Streamed {
    /// JSON (`{"head": …, "rows": [`, the rows, `]}`) or, if `csv`, CSV.
    pub fn new(csv: bool) -> Streamed {
        Streamed {
            csv,
            rows: 0,
            schema: None,
        }
    }

    /// The opening: JSON's head and the start of its rows; nothing for CSV
    /// (its header comes with the first rows).
    pub fn start(&mut self, head: &Head, schema: SchemaRef) -> Vec<u8> {
        self.schema = Some(schema);
        if self.csv {
            return Vec::new();
        }
        format!(
            "{{\"head\":{{\"seq\":{},\"hash\":\"{}\"}},\"rows\":[",
            head.seq,
            head.hash.to_hex()
        )
        .into_bytes()
    }

    /// One batch's rows: JSON objects, comma-separated; CSV lines, after
    /// the header line before the first.
    pub fn rows(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, Error> {
        let csv = self.csv;
        let arrow = move |e: datafusion::arrow::error::ArrowError| Error::Arrow {
            context: if csv {
                "writing the answer as CSV"
            } else {
                "writing the answer as JSON"
            }
            .into(),
            message: e.to_string(),
        };
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        if self.csv {
            let mut w = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(self.rows == 0)
                .build(&mut out);
            w.write(batch).map_err(arrow)?;
        } else {
            let mut lines = Vec::new();
            let mut w = datafusion::arrow::json::LineDelimitedWriter::new(&mut lines);
            w.write(batch).map_err(arrow)?;
            w.finish().map_err(arrow)?;
            out.reserve(lines.len() + 1);
            for (i, line) in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()).enumerate() {
                if self.rows > 0 || i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(line);
            }
        }
        self.rows += batch.num_rows();
        Ok(out)
    }

    /// The close: JSON's end (with why the store was not used, if it was
    /// not and `store_ignored` is given); CSV's header if no row came.
    pub fn end(&mut self, store_ignored: Option<&str>) -> Result<Vec<u8>, Error> {
        if self.csv {
            return match (&self.schema, self.rows) {
                (Some(schema), 0) => {
                    let mut out = Vec::new();
                    let mut w = datafusion::arrow::csv::WriterBuilder::new()
                        .with_header(true)
                        .build(&mut out);
                    w.write(&RecordBatch::new_empty(schema.clone()))
                        .map_err(|e| Error::Arrow {
                            context: "writing the answer as CSV".into(),
                            message: e.to_string(),
                        })?;
                    drop(w);
                    Ok(out)
                }
                _ => Ok(Vec::new()),
            };
        }
        Ok(match store_ignored {
            Some(why) => format!("],\"store_ignored\":{}}}\n", serde_json::Value::from(why)),
            None => "]}\n".to_string(),
        }
        .into_bytes())
    }
}

/// Writes `answer` to `out` as `format`.
pub fn write_answer(answer: &Answer, format: Format, out: &mut dyn std::io::Write) -> Result<(), Error> {
    let io = |e: std::io::Error| Error::Io {
        context: "cannot write the answer to",
        path: PathBuf::from("<stdout>"),
        source: e,
    };
    let csv = match format {
        Format::Json => false,
        Format::Csv => true,
        Format::Table => {
            let text =
                datafusion::arrow::util::pretty::pretty_format_batches(&answer.batches).map_err(|e| Error::Arrow {
                    context: "writing the answer as a table".into(),
                    message: e.to_string(),
                })?;
            writeln!(out, "{text}").map_err(io)?;
            writeln!(out, "({} rows)", answer.rows()).map_err(io)?;
            return Ok(());
        }
    };
    let mut streamed = Streamed::new(csv);
    out.write_all(&streamed.start(&answer.head, answer.schema.clone()))
        .map_err(io)?;
    for b in &answer.batches {
        out.write_all(&streamed.rows(b)?).map_err(io)?;
    }
    out.write_all(&streamed.end(None)?).map_err(io)
}
