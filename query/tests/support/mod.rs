//! Ledgers on disk (real RocksDB) holding the golden events: every kind as
//! the gateway's and governance's writers wrote it (`tests/data/events/`),
//! replayed through `Ledger::submit` with their envelopes and bodies as
//! written.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use ledger::{Actor, Draft, KeyDir, Ledger, SigningKey};

pub fn create(dir: &Path) -> Ledger {
    let keys = KeyDir::new(dir.join("keys"));
    let actor = Actor {
        principal: Some("test".into()),
        ..Actor::default()
    };
    Ledger::create(&dir.join("ledger"), &keys, SigningKey::generate(), actor).expect("create ledger")
}

/// Appends `n` golden events (cycling through them), in batches.
pub fn append(ledger: &Ledger, n: usize) {
    let drafts = sealgate_tools::golden::drafts();
    let mut left = n;
    let mut i = 0;
    while left > 0 {
        let take = left.min(500);
        let batch: Vec<Draft> = (0..take).map(|k| drafts[(i + k) % drafts.len()].clone()).collect();
        i += take;
        left -= take;
        ledger.submit(batch).expect("submit").wait().expect("append");
    }
}

/// A ledger with `n` golden events after its genesis, closed, opened again
/// read-only.
pub fn ledger_with(dir: &Path, n: usize) -> Arc<Ledger> {
    {
        let l = create(dir);
        append(&l, n);
    }
    Arc::new(Ledger::open_read_only(&dir.join("ledger")).expect("open read-only"))
}
