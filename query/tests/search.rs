//! Full-text search: the follower, `search`, `verify` and SQL's `search()`,
//! on real RocksDB ledgers holding the golden events of every kind (as the
//! gateway's and governance's writers wrote them, `tests/data/events/`),
//! with the stored arguments of tool calls varied so that tokens are rare
//! and common. Answers are checked against a straightforward scan of the
//! log's JSON.

mod support;

use sealgate_query as query;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use ledger::{Draft, EventKind, Head, Ledger, Value};
use query::text::{self, Request, SearchAnswer, TextFollower, TextSnapshot};

fn head_of(ledger: &Ledger) -> Head {
    ledger.head_checked().expect("head")
}

/// The golden drafts, `n` of them cycling, each `tool_call.requested`'s
/// stored arguments naming a customer `cust-<k>` (k counts the calls), and
/// every 50th call's also the word `kumquat`.
fn drafts(n: usize, first_call: &mut usize) -> Vec<Draft> {
    let golden = sealgate_tools::golden::drafts();
    (0..n)
        .map(|i| {
            let mut d = golden[i % golden.len()].clone();
            if d.kind == EventKind::from_name("tool_call.requested")
                && let Some(Value::Object(args)) = d.body.get_mut("arguments")
            {
                let k = *first_call;
                *first_call += 1;
                let extra = if k.is_multiple_of(50) { " kumquat" } else { "" };
                let json = format!("{{\"path\":\"/srv/cust-{k}.txt\",\"note\":\"order{extra}\"}}");
                args.insert("json".into(), Value::String(json));
            }
            d
        })
        .collect()
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    calls: usize,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_owned();
        drop(support::create(&root));
        Fixture {
            _dir: dir,
            root,
            calls: 0,
        }
    }

    fn append(&mut self, n: usize) {
        let live =
            Ledger::open(&self.root.join("ledger"), &ledger::KeyDir::new(self.root.join("keys"))).expect("open live");
        let mut left = n;
        while left > 0 {
            let take = left.min(400);
            live.submit(drafts(take, &mut self.calls))
                .expect("submit")
                .wait()
                .expect("append");
            left -= take;
        }
    }

    fn ledger(&self) -> Arc<Ledger> {
        Arc::new(Ledger::open_read_only(&self.root.join("ledger")).expect("open read-only"))
    }

    fn dir(&self, name: &str) -> std::path::PathBuf {
        self.root.join(name)
    }
}

fn follow(dir: &Path, ledger: &Ledger, commit_events: u64) {
    let (mut f, _) = TextFollower::open(dir, ledger, commit_events).expect("open follower");
    f.catch_up(ledger, &head_of(ledger), |_| {}).expect("catch up");
    f.close().expect("close");
}

fn ask(dir: &Path, ledger: &Arc<Ledger>, req: &Request) -> (SearchAnswer, TextSnapshot) {
    let snap = TextSnapshot::open(dir, ledger.clone(), head_of(ledger)).expect("snapshot");
    (text::search(&snap, req).expect("search"), snap)
}

fn all(q: &str) -> Request {
    let mut r = Request::new(q);
    r.limit = 1_000_000;
    r
}

/// The seqs whose event JSON (actor, subject, body), cut into lowercase
/// alphanumeric runs, holds every word of `words` in order somewhere
/// (adjacent): the reference a search is checked against.
fn scan(ledger: &Ledger, words: &[&str], keep: impl Fn(&ledger::Event) -> bool) -> BTreeSet<u64> {
    let head = head_of(ledger);
    let mut out = BTreeSet::new();
    for e in ledger.events(0, head.seq).expect("events") {
        let e = e.expect("event");
        if !keep(&e.event) {
            continue;
        }
        let mut text = String::new();
        for s in [
            e.event.actor.principal.clone().unwrap_or_default(),
            e.event.actor.teams.join(" "),
            e.event.subject.server.clone().unwrap_or_default(),
            e.event.subject.tool.clone().unwrap_or_default(),
            e.event.subject.env.join(" "),
            Value::Object(e.event.body.clone()).to_json().to_string(),
        ] {
            text.push(' ');
            text.push_str(&s);
        }
        // The body's JSON escapes the arguments' own JSON: unescape once.
        let text = text.replace("\\\"", "\"").to_lowercase();
        let tokens: Vec<&str> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|t| !t.is_empty())
            .collect();
        if tokens.windows(words.len()).any(|w| w == words) {
            out.insert(e.event.seq);
        }
    }
    out
}

fn seqs(a: &SearchAnswer) -> BTreeSet<u64> {
    a.hits.iter().map(|h| h.seq).collect()
}

/// Queries and the words a scan looks for.
const CASES: &[(&str, &[&str])] = &[
    ("kumquat", &["kumquat"]),
    ("shadow", &["shadow"]),
    ("drifted", &["drifted"]),
    ("successfully", &["successfully"]),
    ("cancelled", &["cancelled"]),
    ("onboarding", &["onboarding"]),
    ("\"still there\"", &["still", "there"]),
    ("cust-7", &["cust", "7"]),
    ("cust-123", &["cust", "123"]),
    ("alice", &["alice"]),
    ("expired", &["expired"]),
];

#[test]
fn search_finds_what_a_scan_of_the_log_finds_index_and_tail_alike() {
    let mut fx = Fixture::new();
    fx.append(1500);
    let dir = fx.dir("search");
    follow(&dir, &fx.ledger(), 400);
    // Past the index's cursor: found from the log.
    fx.append(700);
    let ledger = fx.ledger();
    let head = head_of(&ledger);
    let mut with_tail_hits = 0;
    for (q, words) in CASES {
        let (a, snap) = ask(&dir, &ledger, &all(q));
        assert_eq!(a.head_seq, head.seq);
        assert_eq!(a.indexed_to, Some(1500), "the index answered up to its cursor");
        assert_eq!(snap.tail_events(), 700);
        let want = scan(&ledger, words, |_| true);
        assert!(!want.is_empty(), "{q}: the fixture has no match");
        assert_eq!(seqs(&a), want, "{q}");
        with_tail_hits += usize::from(want.iter().any(|s| *s > 1500));
        // Each hit: the log's hash, kind and time; ranked by score.
        for h in &a.hits {
            let e = ledger.get(h.seq).expect("get").expect("event");
            assert_eq!(h.hash, e.hash.to_hex(), "{q} seq {}", h.seq);
            assert_eq!(h.kind, e.event.kind.as_str());
            assert_eq!(h.ts, e.event.ts.to_string());
            assert!(
                !h.highlighted.is_empty(),
                "{q} seq {}: nothing highlighted in {:?}",
                h.seq,
                h.excerpt
            );
            for (s, e) in &h.highlighted {
                let marked = h.excerpt[*s..*e].to_lowercase();
                assert!(
                    words.contains(&marked.as_str()),
                    "{q}: marked {marked:?} in {:?}",
                    h.excerpt
                );
            }
        }
        assert!(a.hits.windows(2).all(|w| w[0].score >= w[1].score), "{q}: not ranked");
        assert!(text::verify(&snap, &all(q), &a).expect("verify").is_empty(), "{q}");
    }
    assert!(with_tail_hits >= 6, "only {with_tail_hits} queries matched in the tail");
    // Filters, against the scan with the same filter.
    let mut r = all("alice");
    r.principal = Some("alice".into());
    let (a, _) = ask(&dir, &ledger, &r);
    let want = scan(&ledger, &["alice"], |e| e.actor.principal.as_deref() == Some("alice"));
    assert_eq!(seqs(&a), want);
    let mut r = all("matched");
    r.server = Some("fs".into());
    r.from = 1000;
    r.to = 1900;
    let (a, _) = ask(&dir, &ledger, &r);
    let want = scan(&ledger, &["matched"], |e| {
        e.subject.server.as_deref() == Some("fs") && (1000..=1900).contains(&e.seq)
    });
    assert!(!want.is_empty());
    assert_eq!(seqs(&a), want);
    // A limit keeps the best-scored.
    let mut r = all("alice");
    r.limit = 5;
    let (top, _) = ask(&dir, &ledger, &r);
    let (every, _) = ask(&dir, &ledger, &all("alice"));
    assert_eq!(top.hits, every.hits[..5]);
}

#[test]
fn a_rebuilt_index_and_the_log_alone_give_identical_answers() {
    let mut fx = Fixture::new();
    let inc = fx.dir("inc");
    for n in [300, 17, 900, 1] {
        fx.append(n);
        follow(&inc, &fx.ledger(), 250);
    }
    fx.append(333);
    let ledger = fx.ledger();
    let fresh = fx.dir("fresh");
    follow(&fresh, &ledger, 100_000);
    let none = fx.dir("none");
    for (q, _) in CASES
        .iter()
        .chain(&[("rule AND NOT alice", &[][..]), ("reason:deny", &[][..])])
    {
        let mut r = all(q);
        r.limit = 7;
        let (a, _) = ask(&inc, &ledger, &r);
        let (mut b, _) = ask(&fresh, &ledger, &r);
        let (mut c, _) = ask(&none, &ledger, &r);
        // The incremental index stopped 333 events short: found in the tail.
        assert_eq!((a.indexed_to, b.indexed_to), (Some(1218), Some(1551)));
        b.indexed_to = a.indexed_to;
        for (x, y) in a.hits.iter().zip(&b.hits) {
            assert_eq!(x, y, "{q}: incremental and rebuilt differ");
        }
        assert_eq!(a, b, "{q}: incremental and rebuilt differ");
        assert!(c.index_ignored.is_some());
        c.indexed_to = a.indexed_to;
        c.index_ignored = None;
        assert_eq!(a, c, "{q}: the index and the log alone differ");
    }
}

/// Replaces the document of `seq` in the index in `dir` by one built from
/// `edit`ed event text, keeping the commit's cursor (what someone editing
/// the index with Tantivy itself would do).
fn forge(dir: &Path, ledger: &Ledger, seq: u64, edit: impl FnOnce(&mut text::Doc)) {
    let index = tantivy::Index::open_in_dir(dir.join("index")).expect("open index");
    let schema = index.schema();
    let f = |n: &str| schema.get_field(n).expect(n);
    let payload = index.load_metas().expect("metas").payload.expect("payload");
    let mut w: tantivy::IndexWriter = index.writer_with_num_threads(1, 15_000_000).expect("writer");
    w.delete_term(tantivy::Term::from_field_u64(f("seq"), seq));
    let mut d = text::doc(&ledger.get(seq).expect("get").expect("event"));
    edit(&mut d);
    let mut t = tantivy::TantivyDocument::new();
    t.add_u64(f("seq"), d.seq);
    t.add_text(f("hash"), &d.hash);
    t.add_text(f("kind"), &d.kind);
    for (p, s) in &d.parts {
        t.add_text(f(p.name()), s);
    }
    w.add_document(t).expect("add");
    let mut c = w.prepare_commit().expect("prepare");
    c.set_payload(&payload);
    c.commit().expect("commit");
    w.wait_merging_threads().expect("merge");
}

fn findings(dir: &Path, ledger: &Arc<Ledger>, q: &str) -> Vec<String> {
    let (a, snap) = ask(dir, ledger, &all(q));
    text::verify(&snap, &all(q), &a)
        .expect("verify")
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn verify_catches_an_edited_index() {
    let mut fx = Fixture::new();
    fx.append(1200);
    let ledger = fx.ledger();
    let dir = fx.dir("search");
    follow(&dir, &ledger, 100_000);
    let want = scan(&ledger, &["kumquat"], |_| true);
    let dropped = *want.iter().next().expect("a kumquat");
    let invented = 1100;
    assert!(!want.contains(&invented));
    assert!(findings(&dir, &ledger, "kumquat").is_empty());

    // Dropped: the matching event's document no longer has the word.
    forge(&dir, &ledger, dropped, |d| {
        for (_, s) in &mut d.parts {
            *s = s.replace("kumquat", "pear");
        }
    });
    let (a, _) = ask(&dir, &ledger, &all("kumquat"));
    assert!(!seqs(&a).contains(&dropped), "the forged index hides it");
    let f = findings(&dir, &ledger, "kumquat");
    assert!(
        f.iter().any(|f| f.starts_with(&format!("seq {dropped}: dropped"))),
        "{f:?}"
    );
    // Invented: a document claims a word its event does not have.
    forge(&dir, &ledger, invented, |d| {
        d.parts.push((text::Part::Body, "kumquat".into()))
    });
    let f = findings(&dir, &ledger, "kumquat");
    assert!(
        f.iter().any(|f| f.starts_with(&format!("seq {invented}: invented"))),
        "{f:?}"
    );
    // Changed: a hash that is not the log's.
    let changed = *want.iter().nth(1).expect("a second kumquat");
    forge(&dir, &ledger, changed, |d| d.hash = "00".repeat(32));
    let f = findings(&dir, &ledger, "kumquat");
    assert!(
        f.iter().any(|f| f.starts_with(&format!("seq {changed}: hash 0000"))),
        "{f:?}"
    );

    // A byte changed in a file of the index: its checksum says so.
    follow(&fx.dir("clean"), &ledger, 100_000);
    let files: Vec<_> = std::fs::read_dir(fx.dir("clean").join("index"))
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "store"))
        .collect();
    let file = files.first().expect("a doc store file");
    let mut bytes = std::fs::read(file).expect("read");
    bytes[10] ^= 0x55;
    std::fs::write(file, bytes).expect("write");
    let f = findings(&fx.dir("clean"), &ledger, "kumquat");
    assert!(f.iter().any(|f| f.contains("fails its checksum")), "{f:?}");
}

#[test]
fn the_follower_resumes_after_its_cursor_and_rebuilds_an_index_of_another_log() {
    let mut fx = Fixture::new();
    fx.append(500);
    let dir = fx.dir("search");
    follow(&dir, &fx.ledger(), 100);
    assert_eq!(text::read_text_cursor(&dir).expect("cursor").expect("some").seq, 500);

    // Caught up to seq 650 only, then reopened: resumes after its cursor,
    // without a gap or a repeat (a kill -9 mid-build: tests/search.rs).
    fx.append(250);
    {
        let ledger = fx.ledger();
        let (mut f, repairs) = TextFollower::open(&dir, &ledger, 1_000_000).expect("open");
        assert_eq!(repairs.rebuilt, None);
        assert_eq!(f.next(), 501);
        let e = ledger.get(650).expect("get").expect("event");
        let short = Head {
            seq: 650,
            hash: e.hash,
            ts: e.event.ts,
        };
        f.catch_up(&ledger, &short, |_| {}).expect("catch up");
        // One follower at a time: a second is refused, and nothing is
        // cleared under the first.
        let second = TextFollower::open(&dir, &ledger, 100).err().map(|e| e.to_string());
        assert!(
            second.as_deref().is_some_and(|e| e.contains("another process")),
            "{second:?}"
        );
        assert_eq!(text::read_text_cursor(&dir).expect("cursor").expect("some").seq, 650);
        f.close().expect("close");
    }
    let ledger = fx.ledger();
    let (f, _) = TextFollower::open(&dir, &ledger, 1_000_000).expect("reopen");
    assert_eq!(f.next(), 651);
    f.close().expect("close");
    follow(&dir, &ledger, 100);
    let (a, _) = ask(&dir, &ledger, &all("kumquat"));
    assert_eq!(a.indexed_to, Some(750));
    assert_eq!(seqs(&a), scan(&ledger, &["kumquat"], |_| true));

    // Another ledger's index: wiped and rebuilt.
    let mut other = Fixture::new();
    other.append(30);
    let (f, repairs) = TextFollower::open(&dir, &other.ledger(), 100).expect("open on another log");
    assert!(
        repairs.rebuilt.as_deref().is_some_and(|w| w.contains("ledger")),
        "{repairs:?}"
    );
    assert_eq!(f.next(), 0);
}

#[test]
fn bad_syntax_is_an_error_naming_the_position_and_changes_nothing() {
    let mut fx = Fixture::new();
    fx.append(100);
    let ledger = fx.ledger();
    let dir = fx.dir("search");
    follow(&dir, &ledger, 100);
    let before = std::fs::read(dir.join("index").join("meta.json")).expect("meta");
    let snap = TextSnapshot::open(&dir, ledger.clone(), head_of(&ledger)).expect("snap");
    for (q, want) in [
        ("alice AND (", "position"),
        ("\"unclosed", "position"),
        ("nosuchfield:x", "nosuchfield"),
    ] {
        let e = text::search(&snap, &Request::new(q)).expect_err(q).to_string();
        assert!(e.contains(want), "{q}: {e}");
        assert!(matches!(
            text::search(&snap, &Request::new(q)),
            Err(query::Error::BadSearch { .. })
        ));
    }
    assert_eq!(
        std::fs::read(dir.join("index").join("meta.json")).expect("meta"),
        before
    );
}

#[test]
fn sql_search_joins_with_events_and_verifies() {
    let mut fx = Fixture::new();
    fx.append(900);
    let ledger = fx.ledger();
    let data_like = fx.dir("derived");
    let store = data_like.join("query");
    let search = data_like.join("search");
    let (mut f, _) = query::Follower::open(&store, &ledger, 100).expect("sql follower");
    f.catch_up(&ledger, &head_of(&ledger), |_| {}).expect("catch up");
    follow(&search, &ledger, 100);
    let sql = "SELECT e.seq, e.hash, e.kind, e.principal, s.score, s.excerpt \
               FROM search('kumquat') s JOIN events e ON e.seq = s.seq ORDER BY s.score DESC, e.seq";
    let snap = Arc::new(query::Snapshot::open(&store, ledger.clone(), head_of(&ledger)).expect("snap"));
    let a = query::run(snap.clone(), query::Source::Store, sql).expect("sql");
    let want = scan(&ledger, &["kumquat"], |_| true);
    assert_eq!(a.rows(), want.len());
    let mut out = Vec::new();
    query::write_answer(&a, query::Format::Csv, &mut out).expect("csv");
    let out = String::from_utf8(out).expect("utf8");
    assert!(out.contains("«kumquat»"), "{out}");
    assert!(out.contains("tool_call.requested"), "{out}");
    assert!(query::verify(snap.clone(), &a, sql).expect("verify").is_empty());
    let e = query::run(snap, query::Source::Store, "SELECT * FROM search(1)").expect_err("bad args");
    assert!(e.to_string().contains("search() takes"), "{e}");
}
