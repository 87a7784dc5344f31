//! The follower, the `events` table and `verify`, on real RocksDB ledgers
//! holding the golden events of every kind.

mod support;

use sealgate_query as query;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Array, StringArray, UInt64Array};
use datafusion::arrow::ipc::writer::FileWriter;
use ledger::{Draft, EventKind, Head, Ledger, Value};
use query::{Answer, Follower, Snapshot, Source};

const SEG: usize = 100;

fn head_of(ledger: &Ledger) -> Head {
    ledger.head_checked().expect("head")
}

fn follow(store: &Path, ledger: &Ledger) -> Follower {
    let (mut f, _) = Follower::open(store, ledger, SEG).expect("open follower");
    f.catch_up(ledger, &head_of(ledger), |_| {}).expect("catch up");
    f
}

fn ask(store: &Path, ledger: &Arc<Ledger>, sql: &str) -> (Answer, Arc<Snapshot>) {
    let snap = Arc::new(Snapshot::open(store, ledger.clone(), head_of(ledger)).expect("snapshot"));
    (query::run(snap.clone(), Source::Store, sql).expect("query"), snap)
}

/// Every answer as CSV text, for comparing.
fn csv(a: &Answer) -> String {
    let mut out = Vec::new();
    query::write_answer(a, query::Format::Csv, &mut out).expect("csv");
    String::from_utf8(out).expect("utf8")
}

const QUERIES: &[&str] = &[
    "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY kind",
    "SELECT server, decision, count(*) AS n FROM events WHERE decision IS NOT NULL GROUP BY server, decision ORDER BY server, decision",
    "SELECT * FROM events ORDER BY seq",
];

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for sub in [dir.to_owned(), dir.join("segments")] {
        let Ok(entries) = fs::read_dir(&sub) else { continue };
        for e in entries {
            let p = e.expect("entry").path();
            if p.is_file() {
                out.insert(
                    p.strip_prefix(dir).expect("prefix").display().to_string(),
                    fs::read(&p).expect("read"),
                );
            }
        }
    }
    out
}

#[test]
fn incremental_following_equals_a_rebuild_from_scratch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = support::create(dir.path());
    let inc = dir.path().join("inc");
    let (mut follower, _) = Follower::open(&inc, &live, SEG).expect("open");
    for n in [37, 150, 1, 412] {
        support::append(&live, n);
        follower.catch_up(&live, &head_of(&live), |_| {}).expect("catch up");
    }
    drop(follower);
    drop(live);
    let ledger = Arc::new(Ledger::open_read_only(&dir.path().join("ledger")).expect("open"));
    let fresh = dir.path().join("fresh");
    follow(&fresh, &ledger);
    assert_eq!(files(&inc), files(&fresh), "incremental and rebuilt stores differ");
    assert_eq!(
        query::store::list_segments(&fresh).expect("list").len(),
        6,
        "601 events, 100 a segment"
    );
    for q in QUERIES {
        let (a, _) = ask(&inc, &ledger, q);
        let (b, _) = ask(&fresh, &ledger, q);
        assert_eq!(csv(&a), csv(&b), "{q}");
        // And both equal the log alone (no store at all).
        let (c, _) = ask(&dir.path().join("none"), &ledger, q);
        assert_eq!(csv(&a), csv(&c), "{q}");
    }
    let (all, _) = ask(&inc, &ledger, "SELECT count(*) AS n FROM events");
    assert_eq!(csv(&all), "n\n601\n");
}

#[test]
fn every_golden_kind_gets_its_typed_columns_and_a_bad_body_keeps_its_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = support::create(dir.path());
    support::append(&live, sealgate_tools::golden::drafts().len());
    // A decision whose body is not a decision's: kept, typed columns NULL.
    let mut bad = Draft::new(EventKind::PolicyDecision);
    bad.body.insert("decision".into(), Value::String("MAYBE".into()));
    live.submit(vec![bad]).expect("submit").wait().expect("append");
    drop(live);
    let ledger = Arc::new(Ledger::open_read_only(&dir.path().join("ledger")).expect("open"));
    let store = dir.path().join("store");
    follow(&store, &ledger);
    let (a, _) = ask(
        &store,
        &ledger,
        "SELECT count(*) AS n FROM events WHERE body_error IS NOT NULL",
    );
    assert_eq!(csv(&a), "n\n1\n", "only the hand-made bad body fails to decode");
    let (a, _) = ask(
        &store,
        &ledger,
        "SELECT decision, body_error IS NOT NULL AS bad, body FROM events WHERE seq = (SELECT max(seq) FROM events)",
    );
    let text = csv(&a);
    assert!(text.contains(",true,") && text.contains("MAYBE"), "{text}");
    assert!(
        text.lines().nth(1).is_some_and(|l| l.starts_with(",true")),
        "decision is NULL: {text}"
    );
    // Typed columns from the golden bodies.
    let (a, _) = ask(
        &store,
        &ledger,
        "SELECT count(*) FILTER (WHERE decision IS NOT NULL) AS decisions, \
                count(*) FILTER (WHERE outcome IS NOT NULL) AS outcomes, \
                count(*) FILTER (WHERE approval_id IS NOT NULL) AS approvals, \
                count(*) FILTER (WHERE args_digest IS NOT NULL) AS args, \
                count(*) FILTER (WHERE duration_ns IS NOT NULL) AS durations \
         FROM events",
    );
    let counts: Vec<u64> = csv(&a)
        .lines()
        .nth(1)
        .expect("row")
        .split(',')
        .map(|n| n.parse().expect("count"))
        .collect();
    assert!(counts.iter().all(|n| *n > 0), "{counts:?}");
}

#[test]
fn a_bounded_range_reads_only_the_segments_that_overlap_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = support::ledger_with(dir.path(), 999);
    let store = dir.path().join("store");
    follow(&store, &ledger);
    let (a, _) = ask(
        &store,
        &ledger,
        "SELECT count(*) AS n FROM events WHERE seq BETWEEN 250 AND 320",
    );
    assert_eq!(csv(&a), "n\n71\n");
    assert_eq!(a.stats.segments_read, vec![(200, 299), (300, 399)]);
    assert_eq!(a.stats.rows_from_segments, 200);
    let (a, _) = ask(&store, &ledger, "SELECT count(*) AS n FROM events WHERE seq > 950");
    assert_eq!(csv(&a), "n\n49\n");
    assert_eq!(a.stats.segments_read, vec![(900, 999)]);
    // By time: the events were appended in batches of 500, each batch one
    // timestamp; a range around seq 700's time reads the segments of that
    // batch only.
    let t = ledger.get(700).expect("get").expect("seq 700").event.ts;
    let sql = format!("SELECT count(*) AS n FROM events WHERE ts BETWEEN '{t}' AND '{t}'");
    let (a, _) = ask(&store, &ledger, &sql);
    let (all, _) = ask(&store, &ledger, "SELECT count(*) AS n FROM events");
    assert!(!a.stats.segments_read.is_empty());
    assert!(
        a.stats.segments_read.len() < 10,
        "a time range read every segment: {:?}",
        a.stats.segments_read
    );
    assert_eq!(all.stats.segments_read.len(), 10);
    // The same count as the log's.
    let want = ledger
        .events(0, 999)
        .expect("events")
        .filter(|e| e.as_ref().expect("event").event.ts == t)
        .count();
    assert_eq!(csv(&a), format!("n\n{want}\n"));
}

#[test]
fn point_lookups_are_answered_from_the_key_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = support::ledger_with(dir.path(), 950);
    let store = dir.path().join("store");
    follow(&store, &ledger);
    let e = ledger.get(555).expect("get").expect("seq 555");
    let (a, _) = ask(
        &store,
        &ledger,
        &format!("SELECT seq, kind FROM events WHERE hash = '{}'", e.hash.to_hex()),
    );
    assert_eq!(csv(&a), format!("seq,kind\n555,{}\n", e.event.kind));
    assert!(a.stats.segments_read.is_empty(), "{:?}", a.stats);
    assert_eq!(a.stats.rows_from_log, 1);
    for column in ["call_id", "session", "request_id", "trace_id"] {
        let (any, _) = ask(
            &store,
            &ledger,
            &format!("SELECT {column} AS k FROM events WHERE {column} IS NOT NULL ORDER BY seq LIMIT 1"),
        );
        let key = csv(&any).lines().nth(1).map(str::to_owned);
        let Some(key) = key else {
            // No golden event carries this key.
            assert_eq!(column, "trace_id", "golden events without {column}");
            continue;
        };
        let key = key.trim_matches('"').to_owned();
        let indexed = format!("SELECT seq FROM events WHERE {column} = '{key}' ORDER BY seq");
        let scanned = format!("SELECT seq FROM events WHERE {column} || '' = '{key}' ORDER BY seq");
        let (a, _) = ask(&store, &ledger, &indexed);
        let (b, _) = ask(&store, &ledger, &scanned);
        assert!(a.rows() > 0);
        assert_eq!(csv(&a), csv(&b), "{column} = {key}");
        assert!(a.stats.segments_read.is_empty(), "{column}: {:?}", a.stats);
        assert_eq!(a.stats.key_lookups.len(), 1);
        assert_eq!(b.stats.segments_read.len(), 9, "the scan reads every segment");
    }
}

#[test]
fn a_crash_at_any_step_of_writing_is_repaired_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = support::ledger_with(dir.path(), 640);
    let reference = dir.path().join("reference");
    follow(&reference, &ledger);
    let q = "SELECT * FROM events ORDER BY seq";
    let want = csv(&ask(&reference, &ledger, q).0);

    // A half-written temp file, a segment torn short, a cursor ahead of the
    // segments, a segment whose cursor was never written, a stray key index.
    let store = dir.path().join("store");
    follow(&store, &ledger);
    let segs = query::store::list_segments(&store).expect("list");
    let last = segs.last().expect("a segment").clone();
    fs::write(store.join("segments/junk.arrow.tmp"), b"half").expect("tmp");
    let bytes = fs::read(&last.path).expect("read");
    fs::write(&last.path, &bytes[..bytes.len() / 2]).expect("tear");
    let (_, repairs) = Follower::open(&store, &ledger, SEG).expect("reopen");
    assert!(
        repairs.removed.iter().any(|p| p.ends_with("junk.arrow.tmp")),
        "{repairs:?}"
    );
    assert!(
        repairs.removed.contains(&last.path),
        "torn segment not removed: {repairs:?}"
    );
    assert_eq!(
        repairs.cursor_moved_from,
        Some(last.to),
        "cursor ahead of the segments pulled back"
    );
    assert_eq!(csv(&ask(&store, &ledger, q).0), want);
    let cursor = query::store::read_cursor(&store).expect("cursor").expect("some");
    assert_eq!(cursor.seq, last.from - 1);
    // Catching up again rewrites the same segment.
    follow(&store, &ledger);
    assert_eq!(files(&store), files(&reference));

    // The cursor one segment behind (crash between segment and cursor).
    let prev = &segs[segs.len() - 2];
    let behind = query::Cursor {
        seq: prev.to,
        hash: ledger.get(prev.to).expect("get").expect("ev").hash.to_hex(),
        ..cursor
    };
    fs::write(store.join("cursor.json"), serde_json::to_vec(&behind).expect("json")).expect("cursor");
    let (_, repairs) = Follower::open(&store, &ledger, SEG).expect("reopen");
    assert_eq!(repairs.cursor_moved_from, Some(prev.to));
    assert_eq!(files(&store), files(&reference));
}

#[test]
fn a_replaced_ledger_is_noticed_and_the_store_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = support::ledger_with(&dir.path().join("a"), 300);
    let b = support::ledger_with(&dir.path().join("b"), 250);
    let store = dir.path().join("store");
    follow(&store, &a);
    // Read with b before any follower ran on it: the store is not used.
    let (ans, _) = ask(&store, &b, "SELECT count(*) AS n FROM events");
    assert_eq!(csv(&ans), "n\n251\n");
    assert!(ans.store_ignored.is_some());
    let (mut f, repairs) = Follower::open(&store, &b, SEG).expect("open");
    assert!(
        repairs.rebuilt.as_deref().is_some_and(|w| w.contains("ledger")),
        "{repairs:?}"
    );
    assert!(f.segments().is_empty());
    f.catch_up(&b, &head_of(&b), |_| {}).expect("catch up");
    let fresh = dir.path().join("fresh");
    follow(&fresh, &b);
    assert_eq!(files(&store), files(&fresh));
}

/// A store built with other columns (an older version: its cursor names
/// other columns, or none) is not read, and the follower rebuilds it.
#[test]
fn a_store_built_with_other_columns_is_rebuilt_not_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = Arc::new(support::ledger_with(&dir.path().join("l"), 300));
    let store = dir.path().join("store");
    follow(&store, &ledger);
    let reference = files(&store);
    let mut cursor: serde_json::Value =
        serde_json::from_slice(&fs::read(store.join("cursor.json")).expect("cursor")).expect("json");
    cursor.as_object_mut().expect("object").remove("columns");
    fs::write(store.join("cursor.json"), cursor.to_string()).expect("write cursor");
    let (ans, _) = ask(&store, &ledger, "SELECT count(*) AS n FROM events");
    assert_eq!(csv(&ans), "n\n301\n");
    assert!(
        ans.store_ignored
            .as_deref()
            .is_some_and(|w| w.contains("other columns")),
        "{:?}",
        ans.store_ignored
    );
    assert_eq!(ans.stats.segments_read.len(), 0);
    let (mut f, repairs) = Follower::open(&store, &ledger, SEG).expect("open");
    assert!(
        repairs.rebuilt.as_deref().is_some_and(|w| w.contains("other columns")),
        "{repairs:?}"
    );
    f.catch_up(&ledger, &head_of(&ledger), |_| {}).expect("catch up");
    assert_eq!(files(&store), reference);
}

#[test]
fn bad_sql_is_a_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = support::ledger_with(dir.path(), 120);
    let store = dir.path().join("store");
    follow(&store, &ledger);
    let before = files(&store);
    let snap = Arc::new(Snapshot::open(&store, ledger.clone(), head_of(&ledger)).expect("snap"));
    let err = |sql: &str| query::run(snap.clone(), Source::Store, sql).expect_err(sql).to_string();
    let e = err("SELEC kind FROM events");
    assert!(e.contains("SELEC") && e.contains("Line: 1, Column: 1"), "{e}");
    let e = err("SELECT kind FROM events WHERE");
    assert!(e.contains("Expected"), "{e}");
    let e = err("SELECT nope FROM events");
    assert!(e.contains("nope"), "{e}");
    let e = err("SELECT * FROM nope");
    assert!(e.contains("nope") && e.contains("not found"), "{e}");
    for write in [
        "DELETE FROM events",
        "INSERT INTO events (seq) VALUES (1)",
        "CREATE TABLE t AS SELECT * FROM events",
        "DROP TABLE events",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let e = err(write);
        assert!(
            e.contains("not supported") || e.contains("not allowed") || e.contains("Unsupported"),
            "{write}: {e}"
        );
    }
    assert_eq!(files(&store), before, "a refused query changed the store");
}

/// Rewrites the segment holding `seq` through `edit` of its rows.
fn tamper(store: &Path, ledger: &Ledger, seq: u64, edit: impl FnOnce(&mut Vec<query::row::Row>)) {
    let seg = query::store::list_segments(store)
        .expect("list")
        .into_iter()
        .find(|s| (s.from..=s.to).contains(&seq))
        .expect("segment");
    let mut rows = query::table::read_rows(ledger, seg.from, seg.to).expect("rows");
    edit(&mut rows);
    let batch = query::row::batch(&rows).expect("batch");
    let file = fs::File::create(&seg.path).expect("create");
    let mut w = FileWriter::try_new(file, &batch.schema()).expect("writer");
    w.write(&batch).expect("write");
    w.finish().expect("finish");
}

fn verify(store: &Path, ledger: &Arc<Ledger>, sql: &str) -> Vec<String> {
    let (a, snap) = ask(store, ledger, sql);
    query::verify(snap, &a, sql)
        .expect("verify")
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn verify_names_each_row_an_edited_index_changed_dropped_or_invented() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = support::ledger_with(dir.path(), 500);
    let store = dir.path().join("store");
    follow(&store, &ledger);
    let rows = "SELECT seq, hash, kind, server, principal FROM events WHERE seq BETWEEN 150 AND 260 ORDER BY seq";
    let counts = "SELECT kind, count(*) AS n FROM events WHERE seq BETWEEN 150 AND 260 GROUP BY kind";
    assert_eq!(verify(&store, &ledger, rows), Vec::<String>::new());
    assert_eq!(verify(&store, &ledger, counts), Vec::<String>::new());
    // A renamed column, a join partner's column and a view's columns are
    // not taken for the named event's own (no false alarm); a view's seq
    // and hash still name its event.
    for sql in [
        "SELECT seq, hash, kind AS decision FROM events WHERE seq BETWEEN 150 AND 260",
        "SELECT r.seq, r.hash, d.decision FROM events r JOIN events d ON d.answers = r.seq WHERE r.seq BETWEEN 150 AND 260",
        "SELECT seq, hash, decision, end_kind FROM calls",
        "SELECT seq, hash, status FROM approvals",
        // The review's cases: a CTE named events, an alias reused inside a
        // view, a view under an alias of its own insides.
        "WITH events AS (SELECT seq, hash, upper(kind) AS kind FROM events) SELECT * FROM events",
        "SELECT q.seq, q.hash, q.kind FROM (SELECT seq, hash, 'zzz' AS kind FROM events) q CROSS JOIN (SELECT count(*) AS n FROM calls) y",
        "SELECT q.seq, q.hash, q.decision FROM calls q",
    ] {
        assert_eq!(verify(&store, &ledger, sql), Vec::<String>::new(), "{sql}");
    }

    // Changed: a value in seq 160's row.
    tamper(&store, &ledger, 160, |rows| rows[60].principal = Some("mallory".into()));
    let found = verify(&store, &ledger, rows);
    assert!(
        found.iter().any(|f| f.starts_with("seq 160: changed: principal")),
        "{found:#?}"
    );
    let found = verify(&store, &ledger, counts);
    assert!(
        found.iter().any(|f| f.starts_with("seq 160: changed: principal")),
        "{found:#?}"
    );

    // Dropped: seq 170's row deleted.
    tamper(&store, &ledger, 170, |rows| {
        rows.remove(70);
    });
    let found = verify(&store, &ledger, counts);
    assert!(found.iter().any(|f| f.starts_with("seq 170: dropped")), "{found:#?}");
    assert!(found.iter().any(|f| f.contains("answers differently")), "{found:#?}");

    // Invented: a row added (a copy of seq 180 under a seq of its own, and
    // a second row for seq 181).
    tamper(&store, &ledger, 180, |rows| {
        let mut fake = rows[80].clone();
        fake.seq = 100_000;
        rows.push(fake);
        let again = rows[81].clone();
        rows.push(again);
    });
    let found = verify(&store, &ledger, rows);
    assert!(
        found.iter().any(|f| f.starts_with("seq 100000: invented")),
        "{found:#?}"
    );
    assert!(found.iter().any(|f| f.starts_with("seq 181: invented")), "{found:#?}");
}

#[test]
fn answers_name_their_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = support::ledger_with(dir.path(), 10);
    let (a, _) = ask(&dir.path().join("store"), &ledger, "SELECT seq FROM events");
    let head = head_of(&ledger);
    assert_eq!(a.head, head);
    let mut out = Vec::new();
    query::write_answer(&a, query::Format::Json, &mut out).expect("json");
    let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(v["head"]["seq"], 10);
    assert_eq!(v["head"]["hash"], head.hash.to_hex());
    assert_eq!(v["rows"].as_array().map(Vec::len), Some(11));
    let seqs = a.batches[0]
        .column_by_name("seq")
        .and_then(|c| c.as_any().downcast_ref::<UInt64Array>().map(|a| a.len()));
    assert!(seqs.is_some());
    let _ = StringArray::from(vec!["unused"]).len();
}

/// The store's answers trust its key indexes and its segments' names (that
/// is what makes lookups and time ranges fast), but neither can hide an
/// event: `verify` rebuilds the answer from the log without them, and a
/// segment whose name's time range is not its events' is not used at all.
#[test]
fn an_edited_key_index_or_segment_name_cannot_hide_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = support::ledger_with(dir.path(), 950);
    let store = dir.path().join("store");
    follow(&store, &ledger);
    let segment_of = |seq: u64| {
        query::store::list_segments(&store)
            .expect("list")
            .into_iter()
            .find(|s| (s.from..=s.to).contains(&seq))
            .expect("segment")
    };

    // A key index with seq 555's hash taken out: the store's lookup misses
    // it, and verify says so.
    let hash = ledger.get(555).expect("get").expect("seq 555").hash.to_hex();
    let lookup = format!("SELECT seq, hash FROM events WHERE hash = '{hash}'");
    assert_eq!(verify(&store, &ledger, &lookup), Vec::<String>::new());
    let seg = segment_of(555);
    let mut rows = query::table::read_rows(&ledger, seg.from, seg.to).expect("rows");
    rows[(555 - seg.from) as usize].hash = "left out".into();
    fs::write(seg.keys_path(), query::keys::encode(&rows)).expect("write");
    let (a, _) = ask(&store, &ledger, &lookup);
    assert_eq!(a.rows(), 0, "the edited index hid the event from the store's answer");
    let found = verify(&store, &ledger, &lookup);
    assert!(found.iter().any(|f| f.contains("answers differently")), "{found:#?}");

    // A segment renamed to claim another time range: not used; its events
    // come from the log, and the answer says why.
    let seg = segment_of(700);
    let t = ledger.get(700).expect("get").expect("seq 700").event.ts;
    let by_time = format!("SELECT count(*) AS n FROM events WHERE ts BETWEEN '{t}' AND '{t}'");
    let (before, _) = ask(&store, &ledger, &by_time);
    let forged = seg
        .path
        .with_file_name(format!("{:020}-{:020}-{:020}-{:020}.arrow", seg.from, seg.to, 0, 0));
    fs::rename(seg.keys_path(), forged.with_extension("keys")).expect("rename keys");
    fs::rename(&seg.path, &forged).expect("rename segment");
    let (after, _) = ask(&store, &ledger, &by_time);
    assert_eq!(
        csv(&after),
        csv(&before),
        "a renamed segment hid events from a time range"
    );
    assert!(
        after.store_ignored.as_deref().is_some_and(|w| w.contains("time range")),
        "{:?}",
        after.store_ignored
    );
    assert_eq!(verify(&store, &ledger, &by_time), Vec::<String>::new());
}

/// One follower writes a store at a time: a second one, and a wipe (what
/// `sealgate index rebuild` starts with), are refused while it runs.
#[test]
fn the_store_is_written_by_one_follower_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = support::ledger_with(&dir.path().join("l"), 150);
    let store = dir.path().join("store");
    let first = follow(&store, &ledger);
    let second = Follower::open(&store, &ledger, SEG)
        .err()
        .expect("a second follower refused");
    assert!(matches!(second, query::Error::Busy { .. }), "{second}");
    assert!(
        second.to_string().contains("another process keeps this index"),
        "{second}"
    );
    let wipe = query::store::wipe(&store).expect_err("a wipe refused");
    assert!(matches!(wipe, query::Error::Busy { .. }), "{wipe}");
    assert_eq!(first.segments().len(), 1, "nothing was wiped");
    drop(first);
    follow(&store, &ledger);
}

/// A damaged index costs speed, not the answer: an unreadable cursor, a
/// segment or a key index that does not parse, each is passed over and
/// its events are read from the log, and `--verify` agrees.
#[test]
fn a_damaged_index_costs_speed_not_the_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = support::ledger_with(&dir.path().join("l"), 500);
    let store = dir.path().join("store");
    follow(&store, &ledger);
    let sql = "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY kind";
    let lookup = "SELECT seq FROM events WHERE call_id = (SELECT call_id FROM events WHERE call_id IS NOT NULL AND seq > 250 ORDER BY seq LIMIT 1) ORDER BY seq";
    let want = csv(&ask(&store, &ledger, sql).0);
    let want_lookup = csv(&ask(&store, &ledger, lookup).0);
    let segs = query::store::list_segments(&store).expect("list");
    // A segment that does not parse.
    fs::write(&segs[1].path, b"not arrow").expect("damage a segment");
    let (a, _) = ask(&store, &ledger, sql);
    assert_eq!(csv(&a), want);
    assert_eq!(a.stats.segments_unreadable, vec![(segs[1].from, segs[1].to)]);
    assert_eq!(verify(&store, &ledger, sql), Vec::<String>::new());
    // A key index that does not parse.
    fs::write(segs[2].keys_path(), b"{").expect("damage a key index");
    let (a, _) = ask(&store, &ledger, lookup);
    assert_eq!(csv(&a), want_lookup);
    // A cursor that does not parse: the store is not used at all.
    fs::write(store.join("cursor.json"), b"{").expect("damage the cursor");
    let (a, _) = ask(&store, &ledger, sql);
    assert_eq!(csv(&a), want);
    assert!(
        a.store_ignored.as_deref().is_some_and(|w| w.contains("cannot be read")),
        "{:?}",
        a.store_ignored
    );
}

/// A segment whose write fails (here its directory is not a directory)
/// keeps its rows pending: once the fault is gone, the next catch-up
/// writes it, and the store equals one built without the fault.
#[test]
fn a_failed_segment_write_keeps_its_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = support::ledger_with(&dir.path().join("l"), 250);
    let reference = dir.path().join("reference");
    follow(&reference, &ledger);
    let store = dir.path().join("store");
    let (mut f, _) = Follower::open(&store, &ledger, SEG).expect("open");
    let segs = store.join("segments");
    let aside = dir.path().join("aside");
    fs::rename(&segs, &aside).expect("move the segments away");
    fs::write(&segs, b"in the way").expect("a file in their place");
    assert!(
        f.catch_up(&ledger, &head_of(&ledger), |_| {}).is_err(),
        "the write must fail"
    );
    fs::remove_file(&segs).expect("remove the file");
    fs::rename(&aside, &segs).expect("put them back");
    f.catch_up(&ledger, &head_of(&ledger), |_| {}).expect("catch up");
    drop(f);
    assert_eq!(files(&store), files(&reference));
}
