//! Queries and reports for the admin API and the CLI (docs/QUERY.md): the
//! governance projections as query tables (`servers`, `pins`, `grants`,
//! `policies`), folded from the log to the head or to an as-of point (here,
//! not in `query`, because the governance model lives in this crate); the
//! report window; and `POST /admin/query`, `GET /admin/reports/{name}`.

use std::sync::Arc;

use anyhow::{Context, Result};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use ledger::{Ledger, Snapshots, Timestamp};
use query::{Table, Values};
use serde::Deserialize;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, Time};

use super::{Api, ApiError, ApiResult, require, state_at};
use crate::gateway::Principal;
use crate::governance::GovState;
use crate::governance::grants::Grantee;

/// Queries the admin API runs at once; one more is answered 503 at once.
/// Each holds a thread and up to `query.memory_mb` of operator memory.
pub const MAX_RUNNING: usize = 2;

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

/// The report window from the command line: `--from`/`--to` (RFC 3339 or a
/// date), `--last 7d|24h|30m`, or `--last-quarter`.
pub fn window(
    from: Option<String>,
    to: Option<String>,
    last: Option<&str>,
    last_quarter: bool,
) -> Result<query::reports::Window> {
    let text = |t: OffsetDateTime| -> Result<String> { Ok(t.format(&Rfc3339)?) };
    // The ledger's timestamps are nanoseconds since 1970 in 64 bits.
    let in_range = |flag: &str, v: &str, t: OffsetDateTime| -> Result<String> {
        if !(1970..=2261).contains(&t.year()) {
            anyhow::bail!("--{flag} {v:?}: outside the years the ledger's timestamps hold (1970 to 2261)");
        }
        text(t)
    };
    let instant = |flag: &str, v: &str| -> Result<String> {
        if let Ok(t) = OffsetDateTime::parse(v, &Rfc3339) {
            return in_range(flag, v, t);
        }
        let format = time::macros::format_description!("[year]-[month]-[day]");
        let day = Date::parse(v, &format)
            .with_context(|| format!("--{flag} {v:?}: not an RFC 3339 time or a YYYY-MM-DD date"))?;
        in_range(flag, v, day.with_time(Time::MIDNIGHT).assume_utc())
    };
    let now = OffsetDateTime::now_utc();
    if let Some(last) = last {
        let (n, unit) = last.split_at(last.find(|c: char| !c.is_ascii_digit()).unwrap_or(last.len()));
        let n: i64 = n
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .with_context(|| format!("--last {last:?}: a positive number then d, h or m (7d, 24h, 30m)"))?;
        let seconds = match unit {
            "d" => n.checked_mul(24 * 3600),
            "h" => n.checked_mul(3600),
            "m" => n.checked_mul(60),
            _ => anyhow::bail!("--last {last:?}: a positive number then d, h or m (7d, 24h, 30m)"),
        };
        // No further back than the ledger's timestamps reach (1970).
        let from = seconds
            .and_then(|s| now.checked_sub(time::Duration::seconds(s)))
            .filter(|t| t.unix_timestamp() >= 0)
            .with_context(|| format!("--last {last:?}: reaches before 1970"))?;
        return Ok(query::reports::Window {
            from: Some(text(from)?),
            to: None,
        });
    }
    if last_quarter {
        let first_month = (u8::from(now.month()) - 1) / 3 * 3 + 1;
        let this = Date::from_calendar_date(now.year(), Month::try_from(first_month)?, 1)?;
        let (y, m) = if first_month == 1 {
            (now.year() - 1, 10)
        } else {
            (now.year(), first_month - 3)
        };
        let prev = Date::from_calendar_date(y, Month::try_from(m)?, 1)?;
        return Ok(query::reports::Window {
            from: Some(text(prev.with_time(Time::MIDNIGHT).assume_utc())?),
            to: Some(text(this.with_time(Time::MIDNIGHT).assume_utc())?),
        });
    }
    Ok(query::reports::Window {
        from: from.map(|v| instant("from", &v)).transpose()?,
        to: to.map(|v| instant("to", &v)).transpose()?,
    })
}

/// `POST /admin/query`: `{"sql": "...", "as_of": SEQ|TIME?, "verify": bool?,
/// "format": "json"|"csv"?}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct QueryRequest {
    sql: String,
    as_of: Option<String>,
    #[serde(default)]
    verify: bool,
    format: Option<String>,
}

pub(super) async fn query(
    State(api): State<Api>,
    axum::Extension(p): axum::Extension<Principal>,
    body: axum::body::Bytes,
) -> ApiResult {
    require(&p, "auditor")?;
    let request: QueryRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "the body must be a JSON object {{\"sql\": string, \"as_of\": seq or RFC 3339 time, \"verify\": bool, \"format\": \"json\" or \"csv\"}} (all but sql optional): {e}"
            ),
        )
    })?;
    tracing::info!(principal = %p.name, "admin API: query");
    answer(
        api,
        request.sql,
        request.as_of,
        request.verify,
        request.format.as_deref(),
    )
    .await
}

/// `GET /admin/reports`: the reports, with what each answers.
pub(super) async fn reports(axum::Extension(p): axum::Extension<Principal>) -> ApiResult {
    require(&p, "auditor")?;
    let list: Vec<Value> = ::query::reports::REPORTS
        .iter()
        .map(|r| json!({"name": r.name, "about": r.about}))
        .collect();
    Ok(axum::Json(json!({"reports": list})).into_response())
}

/// `GET /admin/reports/{name}?from=&to=&last=&last_quarter=&env=&verify=&format=&sql=`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReportQuery {
    from: Option<String>,
    to: Option<String>,
    last: Option<String>,
    #[serde(default)]
    last_quarter: bool,
    env: Option<String>,
    #[serde(default)]
    verify: bool,
    format: Option<String>,
    /// Answer with the report's SQL instead of running it.
    #[serde(default)]
    sql: bool,
}

pub(super) async fn report(
    State(api): State<Api>,
    axum::Extension(p): axum::Extension<Principal>,
    Path(name): Path<String>,
    Query(q): Query<ReportQuery>,
) -> ApiResult {
    require(&p, "auditor")?;
    let Some(report) = ::query::reports::find(&name) else {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no report named {name:?}")));
    };
    let bad = |e: anyhow::Error| ApiError(StatusCode::BAD_REQUEST, format!("{e:#}"));
    if q.last.is_some() && (q.from.is_some() || q.to.is_some() || q.last_quarter) {
        return Err(bad(anyhow::anyhow!(
            "last cannot be combined with from, to or last_quarter"
        )));
    }
    if q.last_quarter && (q.from.is_some() || q.to.is_some()) {
        return Err(bad(anyhow::anyhow!("last_quarter cannot be combined with from or to")));
    }
    let params = ::query::reports::Params {
        window: window(q.from, q.to, q.last.as_deref(), q.last_quarter).map_err(bad)?,
        env: q.env.unwrap_or_else(|| "prod".into()),
        targets: api.targets,
    };
    let sql = report.sql(&params);
    if q.sql {
        return Ok(axum::Json(json!({"report": name, "sql": sql})).into_response());
    }
    tracing::info!(principal = %p.name, report = %name, "admin API: report");
    answer(api, sql, None, q.verify, q.format.as_deref()).await
}

/// Runs `sql` off the async workers and answers with its rows, the head it
/// was computed at, and, with `verify`, the findings of the check against
/// the log (`verified` true when there are none). Without `verify` the rows
/// are streamed as they are computed (a large answer is never held whole);
/// an error after the first byte cuts the answer off, so that a client
/// cannot take a partial answer for a complete one.
async fn answer(api: Api, sql: String, as_of: Option<String>, verify: bool, format: Option<&str>) -> ApiResult {
    let csv = match format {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("format {other:?}: json or csv"),
            ));
        }
    };
    let state = if wanted(&sql) || as_of.is_some() {
        Some(state_at(&api, as_of.as_deref()).await?.0)
    } else {
        None
    };
    let Ok(permit) = Arc::clone(&api.queries).try_acquire_owned() else {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("busy: {MAX_RUNNING} queries are running; retry when one has finished"),
        ));
    };
    if !verify {
        return stream_answer(api, permit, state, sql, csv).await;
    }
    let limits = api.query_limits;
    let ledger = api.gateway.ledger();
    let data_dir = api.gateway.data_dir().to_path_buf();
    let ledger_dir = ledger.path().to_path_buf();
    let store = ::query::store_dir(api.gateway.data_dir());
    let done = tokio::task::spawn_blocking(
        move || -> Result<(::query::Answer, Vec<String>, crate::checkpoints::RangeProofs), QueryFailed> {
            let _permit = permit;
            let tables = match &state {
                Some(state) => tables(&ledger, state).map_err(|e| QueryFailed::Log(format!("{e:#}")))?,
                None => Vec::new(),
            };
            let head = ledger.head_checked().map_err(|e| QueryFailed::Log(e.to_string()))?;
            let snap = Arc::new(::query::Snapshot::open(&store, ledger, head).map_err(QueryFailed::from)?);
            let opts = ::query::Options {
                tables: &tables,
                limits,
            };
            let answer = ::query::run_with(snap.clone(), ::query::Source::Store, &sql, &opts)?;
            let mut findings: Vec<String> = ::query::verify_with(snap, &answer, &sql, &opts)?
                .iter()
                .map(ToString::to_string)
                .collect();
            // Verification reads a read-only open of the log (the
            // gateway's own handle writes).
            let reader = ledger::Ledger::open_read_only(&ledger_dir).map_err(|e| QueryFailed::Log(e.to_string()))?;
            let proofs = crate::checkpoints::prove_ranges(&reader, &data_dir, &answer.stats.ranges_read())
                .map_err(|e| QueryFailed::Log(e.to_string()))?;
            findings.extend(proofs.failures.iter().cloned());
            Ok((answer, findings, proofs))
        },
    )
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("the query task failed: {e}")))?;
    let (answer, findings, proofs) = done.map_err(QueryFailed::into_api)?;
    let internal = |e: String| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e);
    let mut out = Vec::new();
    let format = if csv {
        ::query::Format::Csv
    } else {
        ::query::Format::Json
    };
    ::query::write_answer(&answer, format, &mut out).map_err(|e| internal(e.to_string()))?;
    let verdict = if findings.is_empty() { "verified" } else { "disagrees" };
    if csv {
        let mut r = csv_response(&answer.head, axum::body::Body::from(out));
        r.headers_mut().insert(
            header::HeaderName::from_static("sealgate-verify"),
            header::HeaderValue::from_static(verdict),
        );
        return Ok(r);
    }
    let mut doc: Value = serde_json::from_slice(&out).map_err(|e| internal(e.to_string()))?;
    if let Some(why) = &answer.store_ignored {
        doc["store_ignored"] = json!(why);
    }
    doc["verified"] = json!(findings.is_empty());
    doc["findings"] = json!(findings);
    doc["ranges"] = json!({
        "checkpoint": proofs.checkpoint.as_ref().map(|(size, root)| json!({"size": size, "root": root, "other_signatures_unchecked": proofs.other_signatures})),
        "complete": proofs.complete,
        "past_checkpoint": proofs.past,
    });
    Ok(axum::Json(doc).into_response())
}

fn csv_response(head: &ledger::Head, body: axum::body::Body) -> axum::response::Response {
    let head = format!("{} {}", head.seq, head.hash.to_hex());
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::HeaderName::from_static("sealgate-head"), head),
        ],
        body,
    )
        .into_response()
}

/// Batches of an answer in flight between the query and the client: the
/// query waits when the client reads slowly, and stops when it goes away.
const STREAM_DEPTH: usize = 4;

/// [`answer`] without `verify`: the rows go out as the query makes them, as
/// JSON (`{"head": …, "rows": [`, the rows, `], "store_ignored"?}`) or CSV.
async fn stream_answer(
    api: Api,
    permit: tokio::sync::OwnedSemaphorePermit,
    state: Option<GovState>,
    sql: String,
    csv: bool,
) -> ApiResult {
    type Chunk = Result<bytes::Bytes, std::io::Error>;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<Result<ledger::Head, QueryFailed>>();
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(STREAM_DEPTH);
    let limits = api.query_limits;
    let ledger = api.gateway.ledger();
    let store = ::query::store_dir(api.gateway.data_dir());
    tokio::task::spawn_blocking(move || {
        let mut started_tx = Some(started_tx);
        // The receiver goes with the response, or with the handler if the
        // client left before it: either way the query stops.
        let gone_away = {
            let tx = tx.clone();
            async move { tx.closed().await }
        };
        // The query's own runtime calls these from inside it; a bounded
        // channel's send, waited for on this thread, is the backpressure.
        let send = |chunk: Chunk| futures::executor::block_on(tx.send(chunk)).is_ok();
        let gone = || ::query::Error::Sql {
            message: "the client went away".into(),
        };
        let run = || -> Result<Vec<u8>, QueryFailed> {
            let tables = match &state {
                Some(state) => tables(&ledger, state).map_err(|e| QueryFailed::Log(format!("{e:#}")))?,
                None => Vec::new(),
            };
            let head = ledger.head_checked().map_err(|e| QueryFailed::Log(e.to_string()))?;
            let snap = Arc::new(::query::Snapshot::open(&store, ledger.clone(), head).map_err(QueryFailed::from)?);
            let opts = ::query::Options {
                tables: &tables,
                limits,
            };
            // Both callbacks write through it, one at a time.
            let streamed = std::cell::RefCell::new(::query::Streamed::new(csv));
            let mut ignored = None;
            ::query::run_each(
                snap,
                ::query::Source::Store,
                &sql,
                &opts,
                gone_away,
                |s| {
                    ignored = s.store_ignored.clone();
                    let open = streamed.borrow_mut().start(&s.head, s.schema.clone());
                    if !open.is_empty() && !send(Ok(open.into())) {
                        return Err(gone());
                    }
                    if let Some(tx) = started_tx.take() {
                        let _ = tx.send(Ok(s.head));
                    }
                    Ok(())
                },
                |batch| {
                    let chunk = streamed.borrow_mut().rows(&batch)?;
                    if !chunk.is_empty() && !send(Ok(chunk.into())) {
                        return Err(gone());
                    }
                    Ok(())
                },
            )?;
            Ok(streamed.into_inner().end(ignored.as_deref())?)
        };
        let ran = run();
        // The place is free before the client hears the end (or the
        // error): its next query must not find this one still running.
        drop(permit);
        match ran {
            Ok(close) => {
                if !close.is_empty() {
                    send(Ok(close.into()));
                }
            }
            Err(e) => match started_tx.take() {
                // Before the first byte: the client gets the error.
                Some(tx) => {
                    let _ = tx.send(Err(e));
                }
                // After it: the answer is cut off.
                None => {
                    let why = match e {
                        QueryFailed::Query(m) | QueryFailed::Log(m) => m,
                    };
                    tracing::warn!(error = %why, "admin API: a streamed answer was cut off");
                    send(Err(std::io::Error::other(why)));
                }
            },
        }
    });
    let head = started_rx
        .await
        .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "the query task failed".into()))?
        .map_err(QueryFailed::into_api)?;
    let body = axum::body::Body::from_stream(tokio_stream_of(rx));
    if csv {
        return Ok(csv_response(&head, body));
    }
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The receiving end of a channel as a stream.
fn tokio_stream_of<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// `GET /admin/search?q=&from=&to=&server=&principal=&limit=&verify=`: as
/// `sealgate search -o json`; `from`/`to` are sequence numbers or RFC 3339
/// times.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SearchQuery {
    q: String,
    from: Option<String>,
    to: Option<String>,
    server: Option<String>,
    principal: Option<String>,
    limit: Option<usize>,
    #[serde(default)]
    verify: bool,
}

/// The most hits one search answers with.
const MAX_HITS: usize = 1000;

pub(super) async fn search(
    State(api): State<Api>,
    axum::Extension(p): axum::Extension<Principal>,
    Query(q): Query<SearchQuery>,
) -> ApiResult {
    require(&p, "auditor")?;
    let limit = q.limit.unwrap_or(20);
    if limit == 0 || limit > MAX_HITS {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("limit {limit}: from 1 to {MAX_HITS}"),
        ));
    }
    let Ok(permit) = Arc::clone(&api.queries).try_acquire_owned() else {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("busy: {MAX_RUNNING} queries are running; retry when one has finished"),
        ));
    };
    tracing::info!(principal = %p.name, "admin API: search");
    let ledger = api.gateway.ledger();
    let dir = ::query::text::search_dir(api.gateway.data_dir());
    let done = tokio::task::spawn_blocking(move || -> Result<Value, ApiError> {
        let _permit = permit;
        let unavailable = |e: String| ApiError(StatusCode::SERVICE_UNAVAILABLE, e);
        let head = ledger.head_checked().map_err(|e| unavailable(e.to_string()))?;
        let from = q
            .from
            .as_deref()
            .map(|v| seq_of(&ledger, "from", v, false))
            .transpose()?;
        let to = q.to.as_deref().map(|v| seq_of(&ledger, "to", v, true)).transpose()?;
        let (from, to) = (from.unwrap_or(0), to.unwrap_or(head.seq));
        if from > to {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("from (seq {from}) is after to (seq {to})"),
            ));
        }
        let req = ::query::text::Request {
            query: q.q,
            from,
            to,
            server: q.server,
            principal: q.principal,
            limit,
        };
        let failed = |e: ::query::Error| match e {
            ::query::Error::BadSearch { .. } => ApiError(StatusCode::BAD_REQUEST, e.to_string()),
            other => unavailable(other.to_string()),
        };
        let snap = ::query::text::TextSnapshot::open(&dir, ledger, head).map_err(failed)?;
        let answer = ::query::text::search(&snap, &req).map_err(failed)?;
        let mut doc =
            serde_json::to_value(&answer).map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        if q.verify {
            let findings = ::query::text::verify(&snap, &req, &answer).map_err(failed)?;
            doc["verified"] = json!(findings.is_empty());
            doc["findings"] = json!(findings.iter().map(ToString::to_string).collect::<Vec<_>>());
        }
        Ok(doc)
    })
    .await
    .map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the search task failed: {e}"),
        )
    })??;
    Ok(axum::Json(done).into_response())
}

/// The seq a range bound names: a sequence number, or an RFC 3339 time
/// (the first event at or after it for `from`, the last at or before it
/// for `to`).
fn seq_of(ledger: &Ledger, name: &str, v: &str, end: bool) -> Result<u64, ApiError> {
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return v
            .parse()
            .map_err(|e| bad(format!("{name} {v}: sequence number out of range: {e}")));
    }
    let ts = Timestamp::parse_rfc3339(v).map_err(|e| bad(format!("{name} {v:?}: {e}")))?;
    let found = if end {
        ledger.last_seq_at_or_before(ts)
    } else {
        ledger.first_seq_at_or_after(ts)
    };
    match found.map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("{name} {v}: {e}")))? {
        Some(seq) => Ok(seq),
        None if end => Err(bad(format!("{name} {v}: no event at or before that time"))),
        None => Err(bad(format!("{name} {v}: no event at or after that time"))),
    }
}

/// Why a query through the API failed: the query itself (400), or reading
/// the log (503).
enum QueryFailed {
    Query(String),
    Log(String),
}

impl QueryFailed {
    fn into_api(self) -> ApiError {
        match self {
            QueryFailed::Query(m) => ApiError(StatusCode::BAD_REQUEST, m),
            QueryFailed::Log(m) => ApiError(StatusCode::SERVICE_UNAVAILABLE, m),
        }
    }
}

impl From<::query::Error> for QueryFailed {
    fn from(e: ::query::Error) -> QueryFailed {
        match e {
            ::query::Error::Sql { .. } => QueryFailed::Query(e.to_string()),
            other => QueryFailed::Log(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::window;

    #[test]
    fn windows_out_of_the_ledgers_range_are_errors_not_panics() {
        for last in ["999999999999999d", "5000000d", "9223372036854775807m", "0d", "7x", "d"] {
            assert!(window(None, None, Some(last), false).is_err(), "--last {last}");
        }
        for from in ["9999-12-31", "1969-12-31", "0001-01-01T00:00:00Z", "yesterday"] {
            assert!(window(Some(from.into()), None, None, false).is_err(), "--from {from}");
        }
        assert!(window(None, None, Some("7d"), false).is_ok());
        let w = window(
            Some("2026-01-01".into()),
            Some("2026-04-01T00:00:00Z".into()),
            None,
            false,
        )
        .expect("window");
        assert_eq!(w.from.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(w.to.as_deref(), Some("2026-04-01T00:00:00Z"));
        let q = window(None, None, None, true).expect("last quarter");
        assert!(q.from.is_some() && q.to.is_some() && q.from < q.to);
    }
}
