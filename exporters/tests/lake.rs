//! `file` sinks (lake files), end to end on a real ledger of golden
//! gateway events: the files hold the OCSF records the OTLP bodies carry,
//! roll by size and time, are named by their range and listed in a
//! manifest a lake can check, and a crash at any step of closing a file
//! neither loses events nor leaves a file written twice.

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sealgate_exporters as exporters;

use exporters::lake::{self, ManifestEntry};
use support::{Running, Site};

fn lake_sink(name: &str, path: &Path, roll_bytes: u64, roll_sec: u64, batch: usize) -> exporters::SinkConfig {
    let text = format!(
        "[[exporters]]\nname = \"{name}\"\nprotocol = \"file\"\npath = {:?}\nroll_bytes = {roll_bytes}\nroll_sec = {roll_sec}\nbatch_size = {batch}\n",
        path.display().to_string()
    );
    #[derive(serde::Deserialize)]
    struct W {
        exporters: Vec<exporters::SinkConfig>,
    }
    let w: W = toml::from_str(&text).expect("sink config");
    w.exporters.into_iter().next().expect("one")
}

fn wait_cursor(site: &Site, name: &str, seq: u64) {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let at = exporters::state::read_cursor(&site.sink_dir(name))
            .expect("cursor")
            .map(|c| c.seq);
        if at == Some(seq) {
            return;
        }
        assert!(
            Instant::now() < end,
            "the file sink's cursor is at {at:?}, not {seq}: {:?}",
            exporters::state::read_status(&site.sink_dir(name))
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the sink read the log up to `seq` (into a file still open,
/// or closed).
fn wait_read(site: &Site, name: &str, seq: u64) {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let dir = site.sink_dir(name);
        let cursor = exporters::state::read_cursor(&dir).expect("cursor").map(|c| c.seq);
        let open = exporters::state::read_status(&dir)
            .expect("status")
            .and_then(|s| s.in_flight)
            .map(|r| r.1);
        if cursor == Some(seq) || open == Some(seq) {
            return;
        }
        assert!(
            Instant::now() < end,
            "the file sink did not read up to {seq}: {cursor:?} {open:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn gunzip_lines(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).expect("read file");
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes.as_slice())
        .read_to_string(&mut text)
        .expect("gzip");
    text.lines().map(str::to_owned).collect()
}

/// The lake's final files, sorted by name.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".ocsf.jsonl.gz"))
        .collect();
    out.sort();
    out
}

fn ledger_hex(site: &Site) -> String {
    site.ledger.ledger_id().iter().map(|b| format!("{b:02x}")).collect()
}

/// The lines of every file, in order, are the bodies the OTLP sinks send,
/// one per event, and the manifest checks.
#[test]
fn records_round_trip_as_the_otlp_bodies() {
    let site = Site::new();
    site.append_golden();
    let last = site.ledger.head().seq;
    let dir = site.data_dir().join("lake");
    let running = Running::start(&site, &[lake_sink("lake", Path::new("lake"), 1 << 20, 1, 64)]);
    // Closed by time (roll_sec = 1), not by a stop.
    wait_cursor(&site, "lake", last);
    let manifest = lake::read_manifest(&dir).expect("manifest");
    running.stop();
    let origin = exporters::record::Origin {
        ledger_id: ledger_hex(&site),
        node: "n".into(),
    };
    let mut lines = Vec::new();
    for m in &manifest {
        lines.extend(gunzip_lines(&dir.join(&m.file)));
    }
    assert_eq!(lines.len() as u64, last + 1, "one line per event");
    for (seq, line) in lines.iter().enumerate() {
        let sealed = site.ledger.get(seq as u64).expect("get").expect("event");
        let record = exporters::record::log_record(&sealed, &origin, 0);
        let body = match record.body.and_then(|b| b.value) {
            Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => s,
            other => panic!("seq {seq}: the LogRecord body is not a string: {other:?}"),
        };
        assert_eq!(line, &body, "seq {seq}: the line is not the OTLP body");
    }
    let check = lake::check_dir(&dir).expect("check");
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    assert_eq!(check.covered, Some((0, last)));
    assert_eq!(check.records, last + 1);
    // The manifest's hashes are the log's.
    let first = &manifest[0];
    assert_eq!(
        first.first_hash,
        site.ledger.get(0).expect("get").expect("e").hash.to_hex()
    );
    let end = manifest.last().expect("a file");
    assert_eq!(
        end.last_hash,
        site.ledger.get(last).expect("get").expect("e").hash.to_hex()
    );
    assert_eq!(end.ledger_id, ledger_hex(&site));
    // `export status` sees it.
    let reports = exporters::report(
        &site.data_dir(),
        &site.ledger,
        &[lake_sink("lake", Path::new("lake"), 1 << 20, 1, 64)],
    )
    .expect("report");
    assert_eq!(reports[0].lag_events, 0);
    assert_eq!(reports[0].lake_files, Some(manifest.len()));
    assert!(reports[0].endpoint.starts_with("file://"), "{}", reports[0].endpoint);
}

/// A file is closed once its gzip bytes reach `roll_bytes`: many files,
/// named by their ranges, one after the other.
#[test]
fn files_roll_by_size() {
    let site = Site::new();
    for _ in 0..4 {
        site.append_golden();
    }
    let last = site.ledger.head().seq;
    let dir = site.data_dir().join("lake");
    let running = Running::start(&site, &[lake_sink("lake", &dir, 4096, 3600, 4)]);
    // roll_sec is an hour: only size closes files until the stop.
    let end = Instant::now() + Duration::from_secs(60);
    while lake::read_manifest(&dir).expect("manifest").len() < 3 {
        assert!(Instant::now() < end, "fewer than 3 files rolled by size");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A clean stop closes the last file.
    wait_read(&site, "lake", last);
    running.stop();
    let manifest = lake::read_manifest(&dir).expect("manifest");
    let on_disk = files(&dir);
    assert_eq!(on_disk.len(), manifest.len(), "a file for each manifest line");
    for (i, m) in manifest.iter().enumerate() {
        assert_eq!(m.file, lake::file_name(m.first_seq, m.last_seq));
        if i + 1 < manifest.len() {
            assert!(
                m.bytes >= 4096,
                "{}: closed at {} bytes, under roll_bytes",
                m.file,
                m.bytes
            );
            // At most one batch (4 events) past the threshold.
            assert!(m.bytes < 4096 + 8192, "{}: {} bytes", m.file, m.bytes);
        }
    }
    let check = lake::check_dir(&dir).expect("check");
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    assert_eq!(check.covered, Some((0, last)));
    let cursor = exporters::state::read_cursor(&site.sink_dir("lake"))
        .expect("c")
        .expect("c");
    assert_eq!(cursor.seq, last, "the stop closed the last file and moved the cursor");
}

/// The crash windows of closing a file, each made on disk as a crash
/// leaves it, then a restart: a temp file (crash before the rename) is
/// removed and its range written again; a whole file without its manifest
/// line and with the cursor before it (crash after the rename) is adopted,
/// not written again; a torn manifest line (crash mid-append) is cut off.
/// No event is lost, no file written twice, the manifest checks.
#[test]
fn a_crash_while_closing_a_file_loses_nothing_and_writes_no_file_twice() {
    let site = Site::new();
    site.append_golden();
    let dir = site.data_dir().join("lake");
    let config = lake_sink("lake", &dir, 4096, 3600, 8);
    let running = Running::start(&site, std::slice::from_ref(&config));
    let end = Instant::now() + Duration::from_secs(60);
    while lake::read_manifest(&dir).expect("manifest").len() < 3 {
        assert!(Instant::now() < end, "fewer than 3 files");
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_read(&site, "lake", site.ledger.head().seq);
    running.stop();
    let manifest = lake::read_manifest(&dir).expect("manifest");
    let n = manifest.len();
    assert!(n >= 3);
    // The crash: the last file is whole under its name, but its manifest
    // line and the cursor's move never happened; the next file's temp
    // file is half written; the manifest ends in a torn line.
    let adopted: &ManifestEntry = &manifest[n - 1];
    let before: &ManifestEntry = &manifest[n - 2];
    let text = std::fs::read_to_string(dir.join(lake::MANIFEST)).expect("manifest");
    let kept: Vec<&str> = text.lines().take(n - 1).collect();
    std::fs::write(
        dir.join(lake::MANIFEST),
        format!("{}\n{{\"file\":\"000", kept.join("\n")),
    )
    .expect("tear");
    let cursor = exporters::Cursor {
        ledger_id: ledger_hex(&site),
        seq: before.last_seq,
        hash: before.last_hash.clone(),
    };
    std::fs::write(
        site.sink_dir("lake").join("cursor.json"),
        serde_json::to_vec(&cursor).expect("json"),
    )
    .expect("cursor");
    let tmp = dir.join(format!(
        ".{}.tmp",
        lake::file_name(adopted.last_seq + 1, adopted.last_seq + 9)
    ));
    std::fs::write(&tmp, b"\x1f\x8b half a file").expect("tmp");
    let adopted_mtime = std::fs::metadata(dir.join(&adopted.file))
        .expect("meta")
        .modified()
        .expect("mtime");

    // More events, and the restart.
    let last = site.append_golden();
    let running = Running::start(&site, std::slice::from_ref(&config));
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let c = exporters::state::read_cursor(&site.sink_dir("lake"))
            .expect("c")
            .map(|c| c.seq);
        if c.is_some_and(|c| c > adopted.last_seq) {
            break;
        }
        assert!(
            Instant::now() < end,
            "the restarted sink did not move past the adopted file: {c:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_read(&site, "lake", last);
    running.stop();
    assert!(!tmp.exists(), "the temp file of the crash is removed");
    assert_eq!(
        std::fs::metadata(dir.join(&adopted.file))
            .expect("meta")
            .modified()
            .expect("mtime"),
        adopted_mtime,
        "the whole file is adopted, not written again"
    );
    let manifest = lake::read_manifest(&dir).expect("manifest");
    let names: Vec<&str> = manifest.iter().map(|m| m.file.as_str()).collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "a manifest line per file, once: {names:?}");
    assert_eq!(files(&dir).len(), manifest.len(), "no stray file");
    let check = lake::check_dir(&dir).expect("check");
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    assert_eq!(check.covered, Some((0, last)));
    assert_eq!(check.records, last + 1, "every event once");
}

/// The manifest check finds a missing file, a changed file and a hole.
#[test]
fn the_manifest_check_finds_missing_changed_and_skipped_files() {
    let site = Site::new();
    site.append_golden();
    let dir = site.data_dir().join("lake");
    let running = Running::start(&site, &[lake_sink("lake", &dir, 2048, 3600, 4)]);
    let end = Instant::now() + Duration::from_secs(60);
    while lake::read_manifest(&dir).expect("manifest").len() < 4 {
        assert!(Instant::now() < end, "fewer than 4 files");
        std::thread::sleep(Duration::from_millis(20));
    }
    running.stop();
    let manifest = lake::read_manifest(&dir).expect("manifest");
    assert!(lake::check_dir(&dir).expect("check").problems.is_empty());

    // A changed byte.
    let changed = dir.join(&manifest[0].file);
    let mut bytes = std::fs::read(&changed).expect("read");
    let i = bytes.len() / 2;
    bytes[i] ^= 1;
    std::fs::write(&changed, bytes).expect("write");
    // A missing file.
    std::fs::remove_file(dir.join(&manifest[1].file)).expect("rm");
    // A hole: the third file's line is gone.
    let text = std::fs::read_to_string(dir.join(lake::MANIFEST)).expect("manifest");
    let kept: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != 2)
        .map(|(_, l)| l)
        .collect();
    std::fs::write(dir.join(lake::MANIFEST), format!("{}\n", kept.join("\n"))).expect("write");

    let problems = lake::check_dir(&dir).expect("check").problems;
    let has = |what: &str, file: &str| problems.iter().any(|p| p.contains(what) && p.starts_with(file));
    assert!(has("SHA-256", &manifest[0].file), "{problems:?}");
    assert!(has("not found", &manifest[1].file), "{problems:?}");
    assert!(has("starts at seq", &manifest[3].file), "{problems:?}");
}
