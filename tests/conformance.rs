//! The official MCP conformance suite, run in the same test against
//! `server-everything` alone and against the gateway in front of that same
//! server (both over streamable HTTP), must give the same result check by
//! check: the same scenarios, the same checks, each with the same status
//! and, where it fails, the same error message. A transparent relay
//! neither loses nor adds behaviour, and cannot fail a scenario the server
//! fails for a reason of its own.
//!
//! The suite cannot send headers, so this gateway accepts unauthenticated
//! requests (`gateway.anonymous_principal`), and it disables Host
//! validation (`allowed_hosts = []`) because server-everything has none:
//! with the default loopback allow-list the gateway also passes
//! `dns-rebinding-protection`, which server-everything fails.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::*;

/// One check's outcome: its status and, if it did not pass, the message.
type Outcome = (String, Option<String>);

/// Runs the suite against `url`, writing its results to `out`; returns
/// what it printed (its exit status is not the verdict: server-everything
/// fails some scenarios).
fn run_suite(peers: &Peers, url: &str, out: &Path) -> String {
    let mut words = peers.conformance.split_whitespace();
    let program = words.next().expect("conformance command");
    let run = Command::new(program)
        .args(words)
        .args(["server", "--url", url, "--output-dir"])
        .arg(out)
        .output()
        .expect("run the conformance suite");
    format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    )
}

/// The suite's per-check results in `dir`: one folder per scenario,
/// `server-SCENARIO-TIMESTAMP/checks.json`, holding its checks (`id`,
/// `status`, `errorMessage`). Keyed by scenario, then check id.
fn results(dir: &Path) -> BTreeMap<String, BTreeMap<String, Outcome>> {
    let mut all = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        // server-SCENARIO-2026-12-06T23-50-10-826Z
        let scenario = name
            .strip_prefix("server-")
            .and_then(|rest| rest.len().checked_sub(25).map(|cut| (rest, cut)))
            .filter(|(rest, cut)| rest.ends_with('Z') && rest.as_bytes()[*cut] == b'-')
            .map(|(rest, cut)| rest[..cut].to_string())
            .unwrap_or_else(|| panic!("not a scenario's results: {name}"));
        let text = std::fs::read_to_string(path.join("checks.json")).expect("checks.json");
        let checks: Vec<Value> = serde_json::from_str(&text).expect("checks JSON");
        let mut by_id = BTreeMap::new();
        for c in checks {
            let id = c["id"].as_str().expect("check id").to_string();
            let status = c["status"].as_str().expect("check status").to_string();
            let message = c["errorMessage"].as_str().map(str::to_string);
            assert!(
                by_id.insert(id.clone(), (status, message)).is_none(),
                "{scenario}: check {id} twice"
            );
        }
        assert!(
            all.insert(scenario.clone(), by_id).is_none(),
            "{scenario}: results twice"
        );
    }
    all
}

#[test]
#[ignore = "end-to-end: needs the MCP peers; tools/test.sh runs it"]
fn conformance_matches_server_everything_alone() {
    let peers = peers();
    let upstream = everything_http(&peers);
    let site = Site::new(&format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\nanonymous_principal = \"conformance\"\nallowed_hosts = []\n{}",
        http_server("everything", &upstream.url)
    ));
    let gw = site.serve();

    let alone_dir = site.path("alone");
    let alone_text = run_suite(&peers, &upstream.url, &alone_dir);
    let through_dir = site.path("through");
    let through_text = run_suite(&peers, &gw.url("everything"), &through_dir);
    gw.stop();
    let alone = results(&alone_dir);
    let through = results(&through_dir);

    // The suite ran: many scenarios, and server-everything passes some and
    // fails some of them on its own (it lacks the suite's fixtures).
    let statuses: Vec<&str> = alone
        .values()
        .flat_map(|checks| checks.values().map(|(s, _)| s.as_str()))
        .collect();
    assert!(alone.len() >= 20, "only {} scenarios ran:\n{alone_text}", alone.len());
    assert!(
        statuses.contains(&"SUCCESS") && statuses.contains(&"FAILURE"),
        "{statuses:?}\n{alone_text}"
    );

    let mut differences = Vec::new();
    for scenario in alone.keys().chain(through.keys().filter(|s| !alone.contains_key(*s))) {
        let (a, t) = (alone.get(scenario), through.get(scenario));
        match (a, t) {
            (Some(a), Some(t)) if a == t => {}
            (Some(a), Some(t)) => {
                for id in a.keys().chain(t.keys().filter(|id| !a.contains_key(*id))) {
                    if a.get(id) != t.get(id) {
                        differences.push(format!(
                            "{scenario} / {id}: alone {:?}, through the gateway {:?}",
                            a.get(id),
                            t.get(id)
                        ));
                    }
                }
            }
            _ => differences.push(format!(
                "{scenario}: ran alone {}, through the gateway {}",
                a.is_some(),
                t.is_some()
            )),
        }
    }
    assert!(
        differences.is_empty(),
        "the gateway changes the suite's results:\n{}\n\nalone:\n{alone_text}\nthrough the gateway:\n{through_text}\ngateway log:\n{}",
        differences.join("\n"),
        site.log()
    );
    site.verify();
    // Every execution of the run is permitted by its own call's story
    // (sampling, elicitation and every other request the suite makes).
    assert_eq!(site.bypasses(), Vec::<String>::new());
}
