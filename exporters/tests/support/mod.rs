//! The exporter tests' harness: a real ledger of golden gateway events and
//! sinks running on it; the receiver and rotel are `sealgate_tools::otlp`.
#![allow(dead_code, reason = "each test binary uses part of the harness")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use ledger::{Actor, Ledger, SigningKey};
use sealgate_exporters as exporters;
pub use sealgate_tools::otlp::*;

/// A ledger in a temp dir holding every golden event (the gateway runs of
/// `tests/data/events/` and an event of every kind).
pub struct Site {
    pub dir: tempfile::TempDir,
    pub ledger: Arc<Ledger>,
}

impl Site {
    pub fn new() -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = ledger::KeyDir::new(dir.path().join("keys"));
        let ledger = Ledger::create(
            &dir.path().join("ledger"),
            &keys,
            SigningKey::generate(),
            Actor {
                principal: Some("test".into()),
                ..Actor::default()
            },
        )
        .expect("create ledger");
        let site = Site {
            dir,
            ledger: Arc::new(ledger),
        };
        site.append_golden();
        site
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// Appends every golden draft once more; the new head.
    pub fn append_golden(&self) -> u64 {
        let drafts = sealgate_tools::golden::drafts();
        self.ledger.submit(drafts).expect("submit").wait().expect("append");
        self.ledger.head().seq
    }

    pub fn sink_dir(&self, name: &str) -> PathBuf {
        exporters::sink_dir(self.dir.path(), name)
    }
}

/// A sink config.
pub fn sink(name: &str, endpoint: &str, protocol: exporters::Protocol) -> exporters::SinkConfig {
    let proto = match protocol {
        exporters::Protocol::Grpc => "grpc",
        exporters::Protocol::Http => "http",
        exporters::Protocol::File => "file",
    };
    let text = format!(
        "[[exporters]]\nname = \"{name}\"\nendpoint = \"{endpoint}\"\nprotocol = \"{proto}\"\nbatch_size = 64\ninterval_ms = 50\nmax_backoff_ms = 300\nstalled_retry_sec = 1\ntimeout_sec = 5\n"
    );
    #[derive(serde::Deserialize)]
    struct W {
        exporters: Vec<exporters::SinkConfig>,
    }
    let w: W = toml::from_str(&text).expect("sink config");
    w.exporters.into_iter().next().expect("one")
}

/// Sinks running until dropped.
pub struct Running {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    pub fn start(site: &Site, sinks: &[exporters::SinkConfig]) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = exporters::spawn(&site.data_dir(), site.ledger.clone(), sinks, stop.clone()).expect("spawn");
        Running { stop, threads }
    }

    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().expect("exporter thread");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Every seq of `0..=last` arrived, first arrivals in order, duplicates
/// only as the same event (same hash as the log's).
pub fn assert_complete_in_order(got: &[Got], site: &Site, last: u64) {
    let hashes: Vec<String> = (0..=last)
        .map(|seq| site.ledger.get(seq).expect("get").expect("event").hash.to_hex())
        .collect();
    assert_every_once_in_order(got, &hashes);
}

/// The workspace's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}
