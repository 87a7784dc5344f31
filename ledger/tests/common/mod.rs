//! Shared fixtures: ledgers on a real RocksDB directory, and raw access to
//! that directory for tampering.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ledger::{Actor, Draft, EventKind, KeyDir, Ledger, Object, Report, SigningKey, Value, VerifyOptions};
use proptest::prelude::*;

pub const KEY_A: [u8; 32] = [0xa1; 32];
pub const KEY_B: [u8; 32] = [0xb2; 32];
pub const KEY_C: [u8; 32] = [0xc3; 32];

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub path: PathBuf,
    pub keys: KeyDir,
    /// Sequence number of the `key.rotated` event (A → B), if any.
    pub rotation: Option<u64>,
    /// Last sequence number.
    pub head: u64,
}

/// A new ledger signed by key A in a temp dir, open for writing.
pub struct Fresh {
    /// Keep it alive: dropping it removes the ledger.
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub keys: KeyDir,
    pub ledger: Ledger,
}

pub fn fresh() -> Fresh {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger");
    let keys = KeyDir::new(dir.path().join("keys"));
    let ledger = Ledger::create(&path, &keys, SigningKey::from_seed(KEY_A), actor("init")).expect("create");
    Fresh {
        dir,
        path,
        keys,
        ledger,
    }
}

/// Creates a ledger signed by key A, appends `before` drafts, optionally
/// rotates to key B and appends `after` drafts.
pub fn build(before: Vec<Draft>, rotate: bool, after: Vec<Draft>) -> Fixture {
    let Fresh {
        dir,
        path,
        keys,
        ledger,
    } = fresh();
    if !before.is_empty() {
        ledger.submit(before).expect("submit").wait().expect("append before");
    }
    let rotation = if rotate {
        Some(
            ledger
                .rotate_key(SigningKey::from_seed(KEY_B), actor("ops"), Some("scheduled".into()))
                .expect("rotate")
                .seq,
        )
    } else {
        None
    };
    if !after.is_empty() {
        ledger.submit(after).expect("submit").wait().expect("append after");
    }
    let head = ledger.head().seq;
    drop(ledger);
    Fixture {
        _dir: dir,
        path,
        keys,
        rotation,
        head,
    }
}

pub fn actor(principal: &str) -> Actor {
    Actor {
        principal: Some(principal.into()),
        ..Actor::default()
    }
}

pub fn draft(i: usize) -> Draft {
    Draft::from_json(&format!(
        r#"{{"kind":"tool_call.requested","actor":{{"principal":"p{i}"}},"subject":{{"server":"s","tool":"t{i}"}},"body":{{"i":{i}}}}}"#
    ))
    .expect("draft")
}

pub fn drafts(n: usize) -> Vec<Draft> {
    (0..n).map(draft).collect()
}

pub fn verify(path: &Path, pinned: Option<(u64, ledger::Hash)>) -> Report {
    let ledger = Ledger::open_read_only(path).expect("open read-only");
    let opts = VerifyOptions {
        pinned_head: pinned,
        ..VerifyOptions::default()
    };
    ledger.verify(&opts, &|_, _| {}).expect("verify runs")
}

/// Opens the store directly, as an attacker with disk access would.
pub fn raw_db(path: &Path) -> rocksdb::DB {
    let opts = rocksdb::Options::default();
    rocksdb::DB::open_cf(&opts, path, ["events", "time", "meta", "tree"]).expect("open raw db")
}

pub fn get_record(db: &rocksdb::DB, seq: u64) -> Vec<u8> {
    let cf = db.cf_handle("events").expect("events cf");
    db.get_cf(cf, seq.to_be_bytes()).expect("get").expect("record exists")
}

pub fn put_record(db: &rocksdb::DB, seq: u64, bytes: &[u8]) {
    let cf = db.cf_handle("events").expect("events cf");
    db.put_cf(cf, seq.to_be_bytes(), bytes).expect("put");
}

pub fn delete_record(db: &rocksdb::DB, seq: u64) {
    let cf = db.cf_handle("events").expect("events cf");
    db.delete_cf(cf, seq.to_be_bytes()).expect("delete");
}

/// Rewrites the head in `meta` as an attacker covering a truncation would.
pub fn set_meta_head(db: &rocksdb::DB, seq: u64, hash: ledger::Hash, ts_nanos: u64) {
    let cf = db.cf_handle("meta").expect("meta cf");
    let mut v = Vec::with_capacity(48);
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&hash.0);
    v.extend_from_slice(&ts_nanos.to_be_bytes());
    db.put_cf(cf, b"head", v).expect("put head");
}

/// Deletes the writer's acknowledged mark (`SEALGATE-ACKED`), as an attacker
/// who rewrites or cuts the log's tail would, since the mark names the last
/// acknowledged event; it is not signed, so only a pinned head stops them.
pub fn remove_acked_mark(path: &Path) {
    std::fs::remove_file(path.join("SEALGATE-ACKED")).expect("remove the acknowledged mark");
}

/// Re-signs the event at `seq` with `key`, as someone holding that key
/// would: the key id in the envelope, the hash and the signature all change.
pub fn resign(db: &rocksdb::DB, seq: u64, key: &SigningKey) {
    let sealed = ledger::SealedEvent::decode(&get_record(db, seq)).expect("decode");
    let mut event = sealed.event;
    event.key = key.id();
    let (_, rec) = signed_record(&event, key);
    put_record(db, seq, &rec);
}

/// The stored record of `event` as `key` would sign it, and its hash: what
/// someone holding that key can write in place of any event.
pub fn signed_record(event: &ledger::Event, key: &SigningKey) -> (ledger::Hash, Vec<u8>) {
    let canonical = event.canonical_bytes();
    let hash = ledger::event_hash(&event.prev, &canonical);
    let mut rec = vec![ledger::RECORD_VERSION];
    rec.extend_from_slice(&hash.0);
    rec.extend_from_slice(&key.sign_hash(&hash).to_bytes());
    rec.extend_from_slice(&canonical);
    (hash, rec)
}

/// Proptest settings with `cases` cases, or as many as `PROPTEST_CASES`
/// asks for: these tests build a real RocksDB ledger per case, so CI runs a
/// few dozen and a soak run (`PROPTEST_CASES=2000 cargo test -p
/// sealgate-ledger --test tamper`) many more.
pub fn proptest_config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    }
}

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_.-]{0,11}"
}

fn body_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        "\\PC{0,40}".prop_map(Value::String),
        // Control characters, quotes and backslashes exercise escaping.
        "[\\x00-\\x1f\"\\\\é\u{2028}]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,8}", inner, 0..4).prop_map(Value::Object),
        ]
    })
}

/// Any draft a caller could append.
pub fn any_draft() -> impl Strategy<Value = Draft> {
    let kinds: Vec<EventKind> = EventKind::KNOWN.iter().filter(|k| !k.is_reserved()).cloned().collect();
    (
        prop::sample::select(kinds),
        prop::option::of(name()),
        prop::collection::vec(name(), 0..3),
        prop::option::of(name()),
        prop::collection::vec(name(), 0..3),
        prop::option::of(any::<u64>()),
        prop::collection::btree_map("[a-z_]{1,10}", body_value(), 0..5),
    )
        .prop_map(|(kind, principal, teams, tool, env, answers, body)| {
            let mut d = Draft::new(kind);
            d.actor.principal = principal;
            d.actor.teams = teams;
            d.subject.tool = tool;
            d.subject.env = env;
            d.correlation.answers = answers;
            d.body = body.into_iter().collect::<Object>();
            d
        })
}

/// The stored key of Merkle tree node `(level, index)`, from FORMAT.md §10:
/// the last leaf it covers (8 bytes BE), then its level.
pub fn tree_key(level: u8, index: u64) -> Vec<u8> {
    let last = ((index + 1) << level) - 1;
    let mut key = last.to_be_bytes().to_vec();
    key.push(level);
    key
}

/// Rewrites the Merkle tree from the events as they now are, as an
/// attacker with disk access who changed or cut them would: every node of
/// every complete subtree, and nothing else.
pub fn rewrite_tree(db: &rocksdb::DB) {
    use ledger::merkle::{leaf_data, leaf_hash, node_hash};
    let events = db.cf_handle("events").expect("events cf");
    let mut level: Vec<[u8; 32]> = db
        .iterator_cf(events, rocksdb::IteratorMode::Start)
        .map(|kv| {
            let (k, v) = kv.expect("read record");
            let seq = u64::from_be_bytes((*k).try_into().expect("8-byte key"));
            let raw = ledger::RawRecord::parse(&v).expect("record");
            leaf_hash(&leaf_data(seq, &raw.hash, &raw.signature))
        })
        .collect();
    let tree = db.cf_handle("tree").expect("tree cf");
    let old: Vec<Box<[u8]>> = db
        .iterator_cf(tree, rocksdb::IteratorMode::Start)
        .map(|kv| kv.expect("read node").0)
        .collect();
    for k in old {
        db.delete_cf(tree, k).expect("delete node");
    }
    let mut height = 0u8;
    loop {
        for (i, h) in level.iter().enumerate() {
            db.put_cf(tree, tree_key(height, i as u64), h).expect("put node");
        }
        if level.len() < 2 {
            break;
        }
        level = level.chunks_exact(2).map(|c| node_hash(&c[0], &c[1])).collect();
        height += 1;
    }
}
