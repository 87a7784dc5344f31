//! The governance projections as query tables (`servers`, `pins`,
//! `grants`, `policies`), folded from the log to the head or to `--as-of`,
//! for `sealgate query` (docs/QUERY.md, Projections). They are folded
//! here, not in `query`, because the governance model lives in this crate.

use anyhow::{Context, Result};
use ledger::{Ledger, Snapshots, Timestamp};
use query::{Table, Values};

use crate::governance::GovState;
use crate::governance::grants::Grantee;

/// The projection tables' names.
pub const NAMES: &[&str] = &["servers", "pins", "grants", "policies"];

/// Whether `sql` names a projection table (a word of its text, any case):
/// only then is the state folded.
pub fn wanted(sql: &str) -> bool {
    sql.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|w| NAMES.iter().any(|n| w.eq_ignore_ascii_case(n)))
}

/// The governance state at `seq` (none: before the first event), folded
/// from the newest snapshot the log's key signed at or before it.
pub fn fold(ledger: &Ledger, snapshots: &Snapshots, seq: Option<u64>) -> Result<GovState> {
    match seq {
        None => Ok(GovState::default()),
        Some(seq) => Ok(ledger::fold_to::<GovState>(ledger, Some(snapshots), seq)
            .with_context(|| format!("cannot replay the governance state to seq {seq}"))?
            .into_state()),
    }
}

fn text(v: impl Into<String>) -> Option<String> {
    Some(v.into())
}

fn joined(v: &[String]) -> Option<String> {
    (!v.is_empty()).then(|| v.join(","))
}

fn nanos(rfc3339: &str) -> Option<i64> {
    Timestamp::parse_rfc3339(rfc3339)
        .ok()
        .and_then(|t| i64::try_from(t.as_nanos()).ok())
}

/// The hash of the event at `seq`, which every row names with its seq.
fn hash_at(ledger: &Ledger, seq: u64) -> Result<Option<String>> {
    Ok(ledger
        .get(seq)
        .with_context(|| format!("cannot read seq {seq}"))?
        .map(|e| e.hash.to_hex()))
}

/// The tables of `state`; each row's `seq` and `hash` name the event that
/// last set it.
pub fn tables(ledger: &Ledger, state: &GovState) -> Result<Vec<Table>> {
    Ok(vec![
        servers(ledger, state)?,
        pins(state),
        grants(ledger, state)?,
        policies(ledger, state)?,
    ])
}

fn servers(ledger: &Ledger, state: &GovState) -> Result<Table> {
    let mut c: [Vec<Option<String>>; 10] = Default::default();
    let (mut seq, mut first, mut pins, mut drifted, mut at) = (vec![], vec![], vec![], vec![], vec![]);
    for s in state.registry.servers.values() {
        let last = s.history.last();
        let step_seq = last.map(|l| l.seq);
        seq.push(step_seq);
        first.push(s.history.first().map(|f| f.seq));
        c[0].push(match step_seq {
            Some(q) => hash_at(ledger, q)?,
            None => None,
        });
        c[1].push(text(&s.name));
        c[2].push(text(s.status.as_str()));
        c[3].push(serde_json::to_value(s.transport)?.as_str().map(str::to_string));
        c[4].push(text(&s.address));
        c[5].push(s.owner.clone());
        c[6].push(joined(&s.env));
        c[7].push(joined(&s.risk));
        c[8].push(last.and_then(|l| l.by.clone()));
        c[9].push(last.and_then(|l| l.reason.clone()));
        at.push(last.and_then(|l| nanos(&l.ts)));
        pins.push(Some(s.pins.len() as u64));
        drifted.push(Some(s.drift.len() as u64));
    }
    let [hash, name, status, transport, address, owner, env, risk, by, reason] = c;
    Ok(Table {
        name: "servers".into(),
        columns: vec![
            ("seq".into(), Values::Count(seq)),
            ("hash".into(), Values::Text(hash)),
            ("server".into(), Values::Text(name)),
            ("status".into(), Values::Text(status)),
            ("status_at".into(), Values::Time(at)),
            ("status_by".into(), Values::Text(by)),
            ("status_reason".into(), Values::Text(reason)),
            ("registered_seq".into(), Values::Count(first)),
            ("transport".into(), Values::Text(transport)),
            ("address".into(), Values::Text(address)),
            ("owner".into(), Values::Text(owner)),
            ("env".into(), Values::Text(env)),
            ("risk".into(), Values::Text(risk)),
            ("pins".into(), Values::Count(pins)),
            ("drifted".into(), Values::Count(drifted)),
        ],
    })
}

fn pins(state: &GovState) -> Table {
    let (mut server, mut tool, mut pin, mut change, mut listed, mut drift_seq) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for s in state.registry.servers.values() {
        let names: std::collections::BTreeSet<&String> = s.pins.keys().chain(s.drift.keys()).collect();
        for name in names {
            let d = s.drift.get(name);
            server.push(text(&s.name));
            tool.push(text(name));
            pin.push(s.pins.get(name).cloned());
            change.push(d.map(|d| d.change.as_str().to_string()));
            listed.push(d.and_then(|d| d.hash.clone()));
            drift_seq.push(d.map(|d| d.seq));
        }
    }
    Table {
        name: "pins".into(),
        columns: vec![
            ("server".into(), Values::Text(server)),
            ("tool".into(), Values::Text(tool)),
            ("pin".into(), Values::Text(pin)),
            ("drift".into(), Values::Text(change)),
            ("listed".into(), Values::Text(listed)),
            ("drift_seq".into(), Values::Count(drift_seq)),
        ],
    }
}

fn grants(ledger: &Ledger, state: &GovState) -> Result<Table> {
    let mut c: [Vec<Option<String>>; 9] = Default::default();
    let (mut seq, mut expires) = (vec![], vec![]);
    for g in state.grants.grants.values() {
        seq.push(Some(g.issued_seq));
        c[0].push(hash_at(ledger, g.issued_seq)?);
        c[1].push(text(&g.id));
        let (principal, team) = match &g.grantee {
            Grantee::Principal(p) => (text(p), None),
            Grantee::Team(t) => (None, text(t)),
        };
        c[2].push(principal);
        c[3].push(team);
        c[4].push(text(&g.server));
        c[5].push(text(&g.tool));
        c[6].push(g.env.clone());
        c[7].push(g.issued_by.clone());
        c[8].push(g.reason.clone());
        expires.push(g.expires_at.and_then(|t| i64::try_from(t).ok()));
    }
    let [hash, id, principal, team, server, tool, env, by, reason] = c;
    Ok(Table {
        name: "grants".into(),
        columns: vec![
            ("seq".into(), Values::Count(seq)),
            ("hash".into(), Values::Text(hash)),
            ("grant_id".into(), Values::Text(id)),
            ("principal".into(), Values::Text(principal)),
            ("team".into(), Values::Text(team)),
            ("server".into(), Values::Text(server)),
            ("tool".into(), Values::Text(tool)),
            ("env".into(), Values::Text(env)),
            ("expires_at".into(), Values::Time(expires)),
            ("issued_by".into(), Values::Text(by)),
            ("reason".into(), Values::Text(reason)),
        ],
    })
}

fn policies(ledger: &Ledger, state: &GovState) -> Result<Table> {
    let p = state.policy.as_ref();
    let hash = match p {
        Some(p) => vec![hash_at(ledger, p.seq)?],
        None => vec![],
    };
    let one = |f: fn(&crate::governance::state::PolicyRecord) -> Option<String>| p.map(f).into_iter().collect();
    Ok(Table {
        name: "policies".into(),
        columns: vec![
            (
                "seq".into(),
                Values::Count(p.map(|p| Some(p.seq)).into_iter().collect()),
            ),
            ("hash".into(), Values::Text(hash)),
            ("policy_hash".into(), Values::Text(one(|p| Some(p.hash.clone())))),
            (
                "loaded_at".into(),
                Values::Time(p.map(|p| nanos(&p.ts)).into_iter().collect()),
            ),
            ("loaded_by".into(), Values::Text(one(|p| p.by.clone()))),
            ("origin".into(), Values::Text(one(|p| p.origin.clone()))),
            ("text".into(), Values::Text(one(|p| Some(p.text.clone())))),
        ],
    })
}
