//! The `events` table: segments of the derived store, pruned by seq and
//! time, then the events past the last segment read from the log; a point
//! lookup by key goes through the segments' key indexes and reads its
//! events from the log.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use ledger::{Head, Ledger};

use crate::Error;
use crate::row::{self, KEY_COLUMNS, Row};
use crate::store::{self, Segment};

/// What the table read to answer a query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Segments read, as (from, to) seq ranges.
    pub segments_read: Vec<(u64, u64)>,
    /// Segments that could not be read (their rows came from the log).
    pub segments_unreadable: Vec<(u64, u64)>,
    pub rows_from_segments: u64,
    /// Events read from the log (the tail past the last segment, or a key
    /// lookup's events).
    pub rows_from_log: u64,
    /// Key lookups answered from the index: (column, value, seqs found).
    pub key_lookups: Vec<(String, String, usize)>,
    /// The log's tail scanned, as a (from, to) seq range (every event of
    /// it was read, whatever the filters kept).
    pub tail_read: Option<(u64, u64)>,
}

impl ScanStats {
    /// The seq ranges the answer read every event of (segments and the
    /// tail), merged where they touch, in order: what a range proof can
    /// show complete.
    pub fn ranges_read(&self) -> Vec<(u64, u64)> {
        let mut all: Vec<(u64, u64)> = self.segments_read.iter().copied().chain(self.tail_read).collect();
        all.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (from, to) in all {
            match out.last_mut() {
                Some(last) if from <= last.1.saturating_add(1) => last.1 = last.1.max(to),
                _ => out.push((from, to)),
            }
        }
        out
    }
}

/// Where the table's rows come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Segments and the log's tail (what queries use).
    Store,
    /// Every row rebuilt from the log, for the same ranges (what `--verify`
    /// compares with).
    Log,
}

/// The store and the log at one head.
pub struct Snapshot {
    pub head: Head,
    pub segments: Vec<Segment>,
    /// Rows past the last segment, up to the head, read from the log.
    pub tail: Vec<Row>,
    pub ledger: Arc<Ledger>,
    /// Why the store was not used, if it was not.
    pub store_ignored: Option<String>,
    /// The store's directory (the search index is beside it).
    pub dir: std::path::PathBuf,
}

impl Snapshot {
    /// The store in `dir` as of `head` (the chain of segments from seq 0 up
    /// to the head whose cursor the log has), and the log past it. Writes
    /// nothing.
    pub fn open(dir: &Path, ledger: Arc<Ledger>, head: Head) -> Result<Snapshot, Error> {
        let mut store_ignored = None;
        let mut segments = Vec::new();
        // A store that cannot be read is not used: the log answers.
        let cursor = store::read_cursor(dir).and_then(|c| Ok((c, store::list_segments(dir)?)));
        match cursor {
            Err(e) => store_ignored = Some(format!("the index cannot be read ({e}); run `sealgate index rebuild`")),
            Ok((None, _)) => {
                store_ignored = Some(format!(
                    "no index segment in {} yet (a segment holds {} events; `sealgate serve` and `sealgate index update` cut them)",
                    dir.display(),
                    store::DEFAULT_SEGMENT_EVENTS
                ))
            }
            Ok((Some(c), listed)) => {
                let ours = store::hex(&ledger.ledger_id()) == c.ledger_id
                    && ledger
                        .get(c.seq)
                        .map_err(|e| Error::ledger("reading the cursor's event", e))?
                        .is_some_and(|e| e.hash.to_hex() == c.hash);
                if ours && c.columns != crate::row::fingerprint() {
                    store_ignored = Some(format!(
                        "the index in {} was built with other columns (another version of sealgate); run `sealgate index rebuild`",
                        dir.display()
                    ));
                } else if ours {
                    for s in listed {
                        if s.from != segments.last().map_or(0, |l: &Segment| l.to + 1) || s.to > c.seq.min(head.seq) {
                            break;
                        }
                        // Pruning by time trusts the range in the name: it
                        // must be the log's own (timestamps never go back,
                        // so the first and last events bound the rest).
                        if let Some(why) = misnamed(&ledger, &s)? {
                            store_ignored = Some(format!(
                                "{}: {why}; it and the segments after it are not used, their events are read from the log (run `sealgate index rebuild`)",
                                s.path.display()
                            ));
                            break;
                        }
                        segments.push(s);
                    }
                } else {
                    store_ignored = Some(format!(
                        "the index in {} is of another log (its cursor, seq {}, is not in this one); run `sealgate index rebuild`",
                        dir.display(),
                        c.seq
                    ));
                }
            }
        }
        let from = segments.last().map_or(0, |s| s.to + 1);
        let tail = read_rows(&ledger, from, head.seq)?;
        Ok(Snapshot {
            head,
            segments,
            tail,
            ledger,
            store_ignored,
            dir: dir.to_owned(),
        })
    }
}

/// Why `s`'s name does not describe its events in the log (its time range
/// is not theirs), if it does not.
fn misnamed(ledger: &Ledger, s: &Segment) -> Result<Option<String>, Error> {
    let ts = |seq: u64| -> Result<Option<i64>, Error> {
        let e = ledger
            .get(seq)
            .map_err(|e| Error::ledger("checking a segment's range", e))?;
        Ok(e.and_then(|e| i64::try_from(e.event.ts.as_nanos()).ok()))
    };
    let (first, last) = (ts(s.from)?, ts(s.to)?);
    Ok((first != Some(s.ts_min) || last != Some(s.ts_max)).then(|| {
        format!(
            "its name's time range ({}..{} ns) is not its events' ({}..{})",
            s.ts_min,
            s.ts_max,
            first.map_or("none".into(), |t| t.to_string()),
            last.map_or("none".into(), |t| t.to_string())
        )
    }))
}

/// Rows of the log's events `from..=to` (none if `from > to`).
pub fn read_rows(ledger: &Ledger, from: u64, to: u64) -> Result<Vec<Row>, Error> {
    if from > to {
        return Ok(Vec::new());
    }
    let mut rows = Vec::new();
    for e in ledger
        .events(from, to)
        .map_err(|e| Error::ledger("reading the log", e))?
    {
        rows.push(row::row(&e.map_err(|e| Error::ledger("reading the log", e))?)?);
    }
    Ok(rows)
}

/// The `events` table over a snapshot.
pub struct EventsTable {
    snap: Arc<Snapshot>,
    source: Source,
    stats: Arc<Mutex<ScanStats>>,
}

impl fmt::Debug for EventsTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventsTable").field("source", &self.source).finish()
    }
}

impl EventsTable {
    pub fn new(snap: Arc<Snapshot>, source: Source) -> EventsTable {
        EventsTable {
            snap,
            source,
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> Arc<Mutex<ScanStats>> {
        self.stats.clone()
    }
}

/// Inclusive seq and time bounds a query's filters imply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub seq: (u64, u64),
    pub ts: (i64, i64),
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds {
            seq: (0, u64::MAX),
            ts: (i64::MIN, i64::MAX),
        }
    }
}

impl Bounds {
    pub fn from_filters(filters: &[Expr]) -> Bounds {
        let mut b = Bounds::default();
        for f in filters {
            b.add(f);
        }
        b
    }

    fn add(&mut self, e: &Expr) {
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) if *op == Operator::And => {
                self.add(left);
                self.add(right);
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (col, op, lit) = match (column(left), right.as_ref()) {
                    (Some(c), Expr::Literal(v, _)) => (c, *op, v),
                    _ => match (left.as_ref(), column(right)) {
                        (Expr::Literal(v, _), Some(c)) => match op.swap() {
                            Some(op) => (c, op, v),
                            None => return,
                        },
                        _ => return,
                    },
                };
                self.compare(col, op, lit);
            }
            Expr::Between(between) if !between.negated => {
                if let (Some(c), Expr::Literal(lo, _), Expr::Literal(hi, _)) =
                    (column(&between.expr), between.low.as_ref(), between.high.as_ref())
                {
                    self.compare(c, Operator::GtEq, lo);
                    self.compare(c, Operator::LtEq, hi);
                }
            }
            _ => {}
        }
    }

    fn compare(&mut self, col: &str, op: Operator, lit: &ScalarValue) {
        match col {
            "seq" => {
                let Some(v) = as_i128(lit) else { return };
                let clamp = |v: i128| u64::try_from(v.max(0)).unwrap_or(u64::MAX);
                narrow(&mut self.seq, op, v, clamp);
            }
            "ts" => {
                let Some(v) = ts_nanos(lit) else { return };
                let clamp = |v: i128| i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX });
                narrow(&mut self.ts, op, v, clamp);
            }
            _ => {}
        }
    }

    fn overlaps(&self, seq: (u64, u64), ts: (i64, i64)) -> bool {
        seq.0 <= self.seq.1 && seq.1 >= self.seq.0 && ts.0 <= self.ts.1 && ts.1 >= self.ts.0
    }

    fn holds(&self, r: &Row) -> bool {
        self.overlaps((r.seq, r.seq), (r.ts, r.ts))
    }
}

fn narrow<T: Copy + Ord>(range: &mut (T, T), op: Operator, v: i128, clamp: impl Fn(i128) -> T) {
    match op {
        Operator::Eq => {
            range.0 = range.0.max(clamp(v));
            range.1 = range.1.min(clamp(v));
        }
        Operator::Gt => range.0 = range.0.max(clamp(v.saturating_add(1))),
        Operator::GtEq => range.0 = range.0.max(clamp(v)),
        Operator::Lt => range.1 = range.1.min(clamp(v.saturating_sub(1))),
        Operator::LtEq => range.1 = range.1.min(clamp(v)),
        _ => {}
    }
}

/// The column `e` names, also through a cast (a cast of an integer column
/// to a wider type keeps its order, which is all the bounds need).
fn column(e: &Expr) -> Option<&str> {
    match e {
        Expr::Column(c) => Some(c.name.as_str()),
        Expr::Cast(c) => column(&c.expr),
        Expr::TryCast(c) => column(&c.expr),
        _ => None,
    }
}

fn as_i128(v: &ScalarValue) -> Option<i128> {
    Some(match v {
        ScalarValue::Decimal128(Some(n), _, 0) => *n,
        ScalarValue::UInt16(Some(n)) => i128::from(*n),
        ScalarValue::Int16(Some(n)) => i128::from(*n),
        ScalarValue::UInt64(Some(n)) => i128::from(*n),
        ScalarValue::UInt32(Some(n)) => i128::from(*n),
        ScalarValue::Int64(Some(n)) => i128::from(*n),
        ScalarValue::Int32(Some(n)) => i128::from(*n),
        _ => return None,
    })
}

fn ts_nanos(v: &ScalarValue) -> Option<i128> {
    Some(match v {
        ScalarValue::TimestampNanosecond(Some(n), _) => i128::from(*n),
        ScalarValue::TimestampMicrosecond(Some(n), _) => i128::from(*n) * 1_000,
        ScalarValue::TimestampMillisecond(Some(n), _) => i128::from(*n) * 1_000_000,
        ScalarValue::TimestampSecond(Some(n), _) => i128::from(*n) * 1_000_000_000,
        _ => return None,
    })
}

/// A `key = 'value'` filter on a key column.
fn key_equality(filters: &[Expr]) -> Option<(String, String)> {
    fn find(e: &Expr) -> Option<(String, String)> {
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) if *op == Operator::And => {
                find(left).or_else(|| find(right))
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) if *op == Operator::Eq => {
                match (left.as_ref(), right.as_ref()) {
                    (Expr::Column(c), Expr::Literal(ScalarValue::Utf8(Some(v)), _))
                    | (Expr::Literal(ScalarValue::Utf8(Some(v)), _), Expr::Column(c))
                        if KEY_COLUMNS.contains(&c.name.as_str()) =>
                    {
                        Some((c.name.clone(), v.clone()))
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }
    filters.iter().find_map(find)
}

fn df(e: Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// What a scan reads, in seq order: segments, then the rows past them.
#[derive(Clone)]
enum Piece {
    Segment(Segment),
    /// The rows the filters keep, and the seq range of the whole tail.
    Tail(Vec<Row>, Option<(u64, u64)>),
}

/// A scan of `events` without a key lookup: its pieces, read one at a time
/// when the plan pulls rows, each cut to the projected columns.
struct Scan {
    snap: Arc<Snapshot>,
    source: Source,
    stats: Arc<Mutex<ScanStats>>,
    pieces: Vec<Piece>,
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
}

impl fmt::Debug for Scan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scan")
            .field("source", &self.source)
            .field("pieces", &self.pieces.len())
            .field("projection", &self.projection)
            .finish()
    }
}

impl Scan {
    fn new(table: &EventsTable, filters: &[Expr], projection: Option<&[usize]>) -> Result<Scan, DataFusionError> {
        let bounds = Bounds::from_filters(filters);
        let snap = &table.snap;
        let mut pieces: Vec<Piece> = snap
            .segments
            .iter()
            .filter(|s| bounds.overlaps((s.from, s.to), (s.ts_min, s.ts_max)))
            .map(|s| Piece::Segment(s.clone()))
            .collect();
        let tail = snap.tail.first().zip(snap.tail.last()).map(|(a, b)| (a.seq, b.seq));
        pieces.push(Piece::Tail(
            snap.tail.iter().filter(|r| bounds.holds(r)).cloned().collect(),
            tail,
        ));
        let full = row::schema();
        let schema = match projection {
            Some(p) => Arc::new(full.project(p)?),
            None => full,
        };
        Ok(Scan {
            snap: snap.clone(),
            source: table.source,
            stats: table.stats.clone(),
            pieces,
            projection: projection.map(<[usize]>::to_vec),
            schema,
        })
    }

    /// One piece's rows, projected, and what reading it cost.
    fn read(&self, piece: &Piece) -> Result<Vec<RecordBatch>, Error> {
        let mut stats = ScanStats::default();
        let from_rows = |rows: &[Row]| -> Result<RecordBatch, Error> {
            if self.projection.as_deref() == Some(&[]) {
                return no_columns(Path::new("<log>"), rows.len());
            }
            let b = row::batch(rows)?;
            match &self.projection {
                Some(p) => b.project(p).map_err(|e| Error::Arrow {
                    context: "projecting rows".into(),
                    message: e.to_string(),
                }),
                None => Ok(b),
            }
        };
        let out = match piece {
            Piece::Segment(s) => {
                stats.segments_read.push((s.from, s.to));
                // A plan that needs no column (`count(*)`) still needs the
                // row count: one column is read, then dropped.
                let columns = match self.projection.as_deref() {
                    Some([]) => Some(&[0][..]),
                    p => p,
                };
                let stored = match self.source {
                    Source::Store => match s.read_columns(columns) {
                        Ok(batches) if self.projection.as_deref() == Some(&[]) => Some(
                            batches
                                .iter()
                                .map(|b| no_columns(&s.path, b.num_rows()))
                                .collect::<Result<_, _>>()?,
                        ),
                        Ok(batches) => Some(batches),
                        // An unreadable segment costs speed, not the
                        // answer: its range is read from the log.
                        Err(e) => {
                            tracing::warn!(error = %e, "query index: a segment cannot be read; its events are read from the log (run `sealgate index rebuild`)");
                            stats.segments_unreadable.push((s.from, s.to));
                            None
                        }
                    },
                    Source::Log => None,
                };
                match stored {
                    Some(batches) => {
                        stats.rows_from_segments += batches.iter().map(|b| b.num_rows() as u64).sum::<u64>();
                        let narrowed = self
                            .projection
                            .as_ref()
                            .is_some_and(|p| !p.is_empty() && p.len() < row::schema().fields().len());
                        if narrowed {
                            batches
                                .into_iter()
                                .map(|b| detached(&s.path, b))
                                .collect::<Result<_, _>>()?
                        } else {
                            batches
                        }
                    }
                    None => {
                        let rows = read_rows(&self.snap.ledger, s.from, s.to)?;
                        stats.rows_from_log += rows.len() as u64;
                        vec![from_rows(&rows)?]
                    }
                }
            }
            Piece::Tail(rows, range) => {
                stats.rows_from_log += rows.len() as u64;
                stats.tail_read = *range;
                vec![from_rows(rows)?]
            }
        };
        let mut s = self.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        s.segments_read.extend(stats.segments_read);
        s.segments_unreadable.extend(stats.segments_unreadable);
        s.rows_from_segments += stats.rows_from_segments;
        s.rows_from_log += stats.rows_from_log;
        if stats.tail_read.is_some() {
            s.tail_read = stats.tail_read;
        }
        Ok(out)
    }
}

/// A batch of `rows` rows and no column (what `count(*)` scans).
fn no_columns(path: &Path, rows: usize) -> Result<RecordBatch, Error> {
    RecordBatch::try_new_with_options(
        Arc::new(datafusion::arrow::datatypes::Schema::empty()),
        Vec::new(),
        &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .map_err(|e| Error::arrow(path, e))
}

/// `b`'s columns copied out of the segment's block: a projected column read
/// from an IPC file shares the buffer of the whole record (every column),
/// which would stay in memory as long as any operator kept the column.
fn detached(path: &Path, b: RecordBatch) -> Result<RecordBatch, Error> {
    use datafusion::arrow::array::{MutableArrayData, make_array};
    let columns = b
        .columns()
        .iter()
        .map(|c| {
            let data = c.to_data();
            let mut copy = MutableArrayData::new(vec![&data], false, data.len());
            copy.extend(0, 0, data.len());
            make_array(copy.freeze())
        })
        .collect();
    RecordBatch::try_new(b.schema(), columns).map_err(|e| Error::arrow(path, e))
}

impl datafusion::physical_plan::streaming::PartitionStream for Scan {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(
        &self,
        _ctx: Arc<datafusion::execution::TaskContext>,
    ) -> datafusion::execution::SendableRecordBatchStream {
        let me = Scan {
            snap: self.snap.clone(),
            source: self.source,
            stats: self.stats.clone(),
            pieces: Vec::new(),
            projection: self.projection.clone(),
            schema: self.schema.clone(),
        };
        let pieces = self.pieces.clone();
        // Reads block the query's own runtime (lib.rs), one piece at a time.
        let batches = pieces.into_iter().flat_map(move |p| match me.read(&p) {
            Ok(batches) => batches.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => vec![Err(df(e))],
        });
        Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::iter(batches),
        ))
    }
}

impl EventsTable {
    /// The rows of a key lookup (`filters` hold `key = 'value'`) from the
    /// store's key indexes, and what was read.
    fn batches(&self, filters: &[Expr]) -> Result<Vec<RecordBatch>, Error> {
        let bounds = Bounds::from_filters(filters);
        let snap = &self.snap;
        let mut stats = ScanStats::default();
        let mut out = Vec::new();
        // Key indexes serve the store's answers only: the log's (what
        // `--verify` compares with) never reads them, so an edited key
        // index cannot hide a row from both.
        let Some((column, value)) = key_equality(filters) else {
            return Ok(out);
        };
        let mut seqs = BTreeSet::new();
        for s in snap
            .segments
            .iter()
            .filter(|s| bounds.overlaps((s.from, s.to), (s.ts_min, s.ts_max)))
        {
            match s.lookup(&column, &value) {
                Ok(found) => {
                    seqs.extend(found.into_iter().filter(|q| (s.from..=s.to).contains(q)));
                }
                // An unreadable key index: the segment's range is
                // searched in the log instead.
                Err(e) => {
                    tracing::warn!(error = %e, "query index: a key index cannot be read; its range is searched in the log (run `sealgate index rebuild`)");
                    stats.segments_unreadable.push((s.from, s.to));
                    for r in read_rows(&snap.ledger, s.from, s.to)? {
                        if row::key_of(&r, &column) == Some(value.as_str()) {
                            seqs.insert(r.seq);
                        }
                    }
                }
            }
        }
        let mut rows: Vec<Row> = Vec::new();
        for seq in seqs {
            let e = snap
                .ledger
                .get(seq)
                .map_err(|e| Error::ledger("reading a looked-up event", e))?
                .ok_or(Error::Gap {
                    expected: seq,
                    found: snap.head.seq,
                })?;
            let r = row::row(&e)?;
            // The index names candidates: the event must hold the key.
            if bounds.holds(&r) && row::key_of(&r, &column) == Some(value.as_str()) {
                rows.push(r);
            }
        }
        stats.rows_from_log += rows.len() as u64;
        let tail: Vec<Row> = snap
            .tail
            .iter()
            .filter(|r| bounds.holds(r) && row::key_of(r, &column) == Some(value.as_str()))
            .cloned()
            .collect();
        stats.key_lookups.push((column, value, rows.len() + tail.len()));
        rows.extend(tail);
        out.push(row::batch(&rows)?);
        let mut s = self.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        s.segments_read.extend(stats.segments_read);
        s.segments_unreadable.extend(stats.segments_unreadable);
        s.rows_from_segments += stats.rows_from_segments;
        s.rows_from_log += stats.rows_from_log;
        s.key_lookups.extend(stats.key_lookups);
        Ok(out)
    }
}

#[async_trait::async_trait]
impl TableProvider for EventsTable {
    fn schema(&self) -> SchemaRef {
        row::schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        // Filters only narrow what is read; DataFusion applies every one.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        // A key lookup reads a few events: they are read now. A scan reads
        // its segments one at a time as the plan asks for rows, only the
        // columns it needs, so that memory holds what the plan's operators
        // keep (which the memory limit counts), not the table.
        if key_equality(filters).is_some() && self.source == Source::Store {
            let batches = self.batches(filters).map_err(df)?;
            let plan: Arc<dyn ExecutionPlan> =
                MemorySourceConfig::try_new_exec(&[batches], row::schema(), projection.cloned())?;
            return Ok(plan);
        }
        let scan = Arc::new(Scan::new(self, filters, projection.map(Vec::as_slice))?);
        let schema = scan.schema.clone();
        let plan = datafusion::physical_plan::streaming::StreamingTableExec::try_new(
            schema,
            vec![scan],
            None,
            Vec::new(),
            false,
            None,
        )?;
        Ok(Arc::new(plan))
    }
}
