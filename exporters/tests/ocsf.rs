//! The OCSF bodies of every golden event (an event of every kind and whole
//! gateway runs) against the OCSF schema, checked by PyPI's
//! `ocsf-json-schema` with `jsonschema` (`tools/ocsf_check.py`).

mod support;

use sealgate_exporters as exporters;

use std::io::Write;
use std::process::Command;

#[test]
#[ignore = "end-to-end: needs the OCSF schema (tools/peers.sh); tools/test.sh runs it"]
fn every_golden_event_is_a_valid_ocsf_record() {
    let python = match std::env::var("SEALGATE_OCSF_PYTHON").ok().filter(|v| !v.is_empty()) {
        Some(p) => p,
        None => panic!(
            "the OCSF schema is not installed: run the tests with tools/test.sh (it installs it with \
             tools/peers.sh), or export SEALGATE_OCSF_PYTHON=<the OCSF_PYTHON path tools/peers.sh prints>"
        ),
    };
    let site = support::Site::new();
    let mut note = ledger::Draft::new(ledger::EventKind::from_name("x.note"));
    note.body
        .insert("text".into(), ledger::Value::String("an operator's note".into()));
    site.ledger.append_blocking(note).expect("append x.note");
    let id: String = site.ledger.ledger_id().iter().map(|b| format!("{b:02x}")).collect();
    let path = site.dir.path().join("ocsf.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    let mut kinds = std::collections::BTreeSet::new();
    for sealed in site.ledger.events(0, site.ledger.head().seq).expect("events") {
        let sealed = sealed.expect("event");
        kinds.insert(sealed.event.kind.as_str().to_owned());
        writeln!(out, "{}", exporters::ocsf::ocsf(&sealed, &id)).expect("write");
    }
    drop(out);
    for kind in ledger::EventKind::KNOWN {
        if *kind != ledger::EventKind::KeyRotated {
            assert!(kinds.contains(kind.as_str()), "no golden {kind} event to check");
        }
    }
    let check = Command::new(&python)
        .arg(support::repo().join("tools/ocsf_check.py"))
        .arg(&path)
        .output()
        .expect("run tools/ocsf_check.py");
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "OCSF schema violations:\n{text}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        text.contains("api_activity") && text.contains("entity_management") && text.contains("authentication"),
        "{text}"
    );
}
