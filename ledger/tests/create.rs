//! Creating a ledger is all or nothing: an interrupted create leaves no
//! ledger at the path, and running it again succeeds.

mod common;

use common::*;
use ledger::{Error, KeyDir, Ledger, SigningKey};

/// A directory to create a ledger in: its path, where its partial is built,
/// and a key directory.
struct Site {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    partial: std::path::PathBuf,
    keys: KeyDir,
}

fn site() -> Site {
    let dir = tempfile::tempdir().expect("tempdir");
    Site {
        path: dir.path().join("ledger"),
        partial: dir.path().join("ledger.partial"),
        keys: KeyDir::new(dir.path().join("keys")),
        _dir: dir,
    }
}

#[test]
fn an_interrupted_create_leaves_no_ledger_and_can_be_run_again() {
    let scenario = fail::FailScenario::setup();
    let Site {
        path, partial, keys, ..
    } = &site();

    // Interrupted after the genesis is durable, before the rename: the
    // state a crash at the last moment leaves.
    fail::cfg("ledger::create_before_rename", "return(killed)").expect("arm fail point");
    let err = Ledger::create(path, keys, SigningKey::from_seed(KEY_A), actor("init"))
        .err()
        .expect("the interrupted create fails");
    fail::remove("ledger::create_before_rename");
    assert!(
        err.to_string().contains("ledger.partial"),
        "the error names where: {err}"
    );
    assert!(!path.exists(), "no ledger at the path after an interrupted create");
    assert!(partial.join("CURRENT").exists(), "what it built is beside the path");

    let ledger = Ledger::create(path, keys, SigningKey::from_seed(KEY_A), actor("init")).expect("create again");
    assert!(!partial.exists(), "the half-made ledger is removed");
    ledger.append_blocking(draft(1)).expect("append");
    drop(ledger);
    let report = verify(path, None);
    assert!(report.ok(), "{:?}", report.failure);

    // A ledger in place is never replaced.
    match Ledger::create(path, keys, SigningKey::from_seed(KEY_B), actor("init")) {
        Err(Error::AlreadyInitialized(p)) => assert_eq!(&p, path),
        other => panic!("create over a ledger must be refused: {:?}", other.map(|l| l.head())),
    }
    assert_eq!(Ledger::open_read_only(path).expect("open").head().seq, 1);
    scenario.teardown();
}

#[test]
fn a_create_interrupted_while_making_the_database_is_cleaned_up() {
    // Fail points are global: wait for the other test's to be gone.
    let scenario = fail::FailScenario::setup();
    let Site {
        path, partial, keys, ..
    } = &site();
    // What a crash inside RocksDB's own creation can leave: some of its
    // files, no genesis.
    std::fs::create_dir_all(partial).expect("mkdir");
    std::fs::write(partial.join("CURRENT"), "MANIFEST-000001\n").expect("write");
    std::fs::write(partial.join("000003.log"), [0u8; 100]).expect("write");
    let ledger = Ledger::create(path, keys, SigningKey::from_seed(KEY_A), actor("init")).expect("create");
    assert_eq!(ledger.head().seq, 0);
    assert!(!partial.exists());
    scenario.teardown();
}

#[test]
fn two_creates_of_one_ledger_never_run_at_once() {
    let scenario = fail::FailScenario::setup();
    let Site { path, keys, .. } = &site();
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                s.spawn(move || {
                    Ledger::create(path, keys, SigningKey::from_seed([i + 1; 32]), actor("init")).map(|l| l.ledger_id())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let made: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(made.len(), 1, "exactly one create succeeds: {results:?}");
    for err in results.iter().filter_map(|r| r.as_ref().err()) {
        let text = err.to_string();
        assert!(
            text.contains("is already being created") || text.contains("already exists"),
            "{text}"
        );
    }
    let ledger = Ledger::open_read_only(path).expect("open");
    assert_eq!(&ledger.ledger_id(), made[0]);
    assert_eq!(ledger.head().seq, 0);
    drop(ledger);
    scenario.teardown();
}
