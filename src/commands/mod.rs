//! One module per subcommand.
//!
//! `append` validates whole batches before writing, pipelines requests to
//! the writer, and prints each acknowledgement as soon as it is durable;
//! it writes only `x.*` kinds. `serve` runs the gateway over HTTP, `stdio`
//! one session on stdin/stdout; both create the ledger (and its find key)
//! with a generated key on first use. `head` and `log` take nothing in
//! `meta` (not signed) on trust: `head` prints the log's own last event and
//! refuses a head in meta that disagrees; `log` runs to the last stored
//! event, and a range asked for by time is found through
//! `Ledger::locate_*`, so an edited time index cannot leave events out (it
//! is named in a warning). `state --as-of TIME` (and the API's `as_of`)
//! resolves its time the same way; `verify` resolves through the index
//! alone and reports a disagreement as `range_mismatch`. `find` reads the
//! log like `log`, with the ledger's find key, and prints the events whose
//! findable digests match a value.

mod admin;
mod append;
mod evidence;
mod export;
mod find;
mod init;
mod log;
mod policy;
mod proof;
mod search;
mod serve;
mod sql;
mod state;
mod verify;
mod witness;

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use ledger::{Actor, Ledger, SigningKey, Timestamp};

use crate::cli::{
    ApprovalsCommand, Cli, Command, GrantsCommand, PolicyCommand, Range, RegistryCommand, ReportFormat, TokenCommand,
    WitnessCommand,
};
use crate::config::{self, Paths};

pub fn run(cli: Cli) -> Result<ExitCode> {
    let config = config::load(&cli.global)?;
    let paths = config::paths(&cli.global, &config);
    match cli.command {
        Command::Init { key, principal } => init::run(&paths, key.as_deref(), principal),
        Command::Keygen { out } => keygen(&out),
        Command::RotateKey {
            new_key,
            reason,
            principal,
        } => rotate_key(&paths, new_key.as_deref(), reason, principal),
        Command::Append { batch_size, output } => append::run(&paths, batch_size, output),
        Command::Log {
            range,
            kind,
            limit,
            output,
        } => log::run(&paths, &range, &kind, limit, output),
        Command::Find {
            value,
            value_stdin,
            range,
            output,
        } => find::run(&paths, value, value_stdin, &range, output),
        Command::Verify {
            range,
            head,
            time_tolerance_ms,
            progress,
            output,
        } => verify::run(&paths, &range, head.as_deref(), time_tolerance_ms, progress, output),
        Command::Head { output } => head(&paths, output),
        Command::Checkpoint { size, issued } => proof::checkpoint(&paths, size, issued),
        Command::KeyHistory => proof::key_history(&paths),
        Command::Prove {
            seq,
            size,
            consistency,
            issued,
        } => proof::prove(&paths, seq, size, consistency.as_deref(), issued),
        Command::VerifyProof {
            proof: file,
            checkpoint,
            key,
            witness,
            min_witnesses,
            output,
        } => proof::verify_proof(&file, checkpoint.as_deref(), &key, &witness, min_witnesses, output),
        Command::Evidence {
            call_id,
            request_id,
            session,
            from,
            to,
            server,
            principal,
            fresh,
            output,
        } => evidence::write(
            &paths,
            evidence::Select {
                call_id,
                request_id,
                session,
                from,
                to,
                server,
                principal,
            },
            fresh,
            &output,
        ),
        Command::VerifyEvidence {
            bundle,
            key,
            witness,
            min_witnesses,
            events,
            output,
        } => evidence::verify(&bundle, &key, &witness, min_witnesses, events, output),
        Command::Witness(WitnessCommand::Serve {
            state,
            listen,
            name,
            log,
            read_timeout_sec,
        }) => witness::serve(
            &state,
            listen,
            &name,
            &log,
            std::time::Duration::from_secs(read_timeout_sec),
        ),
        Command::Witness(WitnessCommand::Push { url, vkey, size }) => witness::push(&paths, &url, &vkey, size),
        Command::Serve => serve::serve(&cli.global, &paths, &config),
        Command::Stdio { server, principal } => serve::stdio(&cli.global, &paths, &config, &server, principal),
        Command::Token(TokenCommand::Create {
            principal,
            team,
            role,
            file,
        }) => serve::token_create(&principal, &team, &role, file.as_deref()),
        Command::Policy(PolicyCommand::Load { file, api }) => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let body = admin::Body::Text(text, file.display().to_string());
            admin::Client::new(&config, api.api, api.token)?.call(reqwest::Method::PUT, "/admin/policy", Some(body))
        }
        Command::Policy(command) => policy::run(command),
        Command::State { part, as_of, snapshots } => state::run(&paths, part.as_str(), as_of.as_deref(), snapshots),
        Command::Approvals(command) => approvals(&config, command),
        Command::Registry(command) => registry(&config, command),
        Command::Grants(command) => grants(&config, command),
        Command::Suspend {
            target,
            name,
            reason,
            api,
        } => admin::Client::new(&config, api.api, api.token)?.call(
            reqwest::Method::POST,
            "/admin/suspensions",
            Some(admin::Body::Json(
                serde_json::json!({"target": target.as_str(), "name": name, "reason": reason}),
            )),
        ),
        Command::Resume {
            target,
            name,
            reason,
            api,
        } => admin::Client::new(&config, api.api, api.token)?.call(
            reqwest::Method::DELETE,
            &format!("/admin/suspensions/{}/{}", target.as_str(), encode_segment(&name)),
            reason_body(reason),
        ),
        Command::Sql {
            query,
            format,
            verify,
            as_of,
            timeout,
        } => sql::run(
            &paths,
            &query,
            format,
            verify,
            as_of.as_deref(),
            config.query.limits(timeout),
        ),
        Command::Search(args) => search::run(&paths, &args),
        Command::Index(command) => sql::index(&paths, command),
        Command::Report {
            name,
            window,
            env,
            format,
            verify,
            sql: print,
            timeout,
        } => {
            let window =
                crate::api::query::window(window.from, window.to, window.last.as_deref(), window.last_quarter)?;
            let params = query::reports::Params {
                window,
                env,
                targets: config.gates.targets(),
            };
            let limits = config.query.limits(timeout);
            sql::report(&paths, name.as_deref(), &params, format, verify, print, limits)
        }
        Command::Export(command) => export::run(&paths, &config, command),
    }
}

fn reason_body(reason: Option<String>) -> Option<admin::Body> {
    Some(admin::Body::Json(serde_json::json!({ "reason": reason })))
}

fn approvals(config: &config::Config, command: ApprovalsCommand) -> Result<ExitCode> {
    use reqwest::Method;
    match command {
        ApprovalsCommand::List { api } => {
            admin::Client::new(config, api.api, api.token)?.call(Method::GET, "/admin/approvals", None)
        }
        ApprovalsCommand::Approve { id, reason, api } => admin::Client::new(config, api.api, api.token)?.call(
            Method::POST,
            &format!("/admin/approvals/{id}/approve"),
            reason_body(reason),
        ),
        ApprovalsCommand::Deny { id, reason, api } => admin::Client::new(config, api.api, api.token)?.call(
            Method::POST,
            &format!("/admin/approvals/{id}/deny"),
            reason_body(reason),
        ),
    }
}

fn registry(config: &config::Config, command: RegistryCommand) -> Result<ExitCode> {
    let (action, server, tools) = match command {
        RegistryCommand::Register(s) => ("register", s, Vec::new()),
        RegistryCommand::Approve(s) => ("approve", s, Vec::new()),
        RegistryCommand::ApproveTools { server, tool } => ("approve-tools", server, tool),
        RegistryCommand::Quarantine(s) => ("quarantine", s, Vec::new()),
        RegistryCommand::Revoke(s) => ("revoke", s, Vec::new()),
    };
    let body = admin::Body::Json(serde_json::json!({"reason": server.reason, "tools": tools}));
    admin::Client::new(config, server.api.api, server.api.token)?.call(
        reqwest::Method::POST,
        &format!("/admin/registry/{}/{action}", server.name),
        Some(body),
    )
}

fn grants(config: &config::Config, command: GrantsCommand) -> Result<ExitCode> {
    match command {
        GrantsCommand::Issue {
            principal,
            team,
            server,
            tool,
            env,
            expires_at,
            reason,
            api,
        } => {
            let body = serde_json::json!({
                "principal": principal, "team": team, "server": server, "tool": tool,
                "env": env, "expires_at": expires_at, "reason": reason,
            });
            admin::Client::new(config, api.api, api.token)?.call(
                reqwest::Method::POST,
                "/admin/grants",
                Some(admin::Body::Json(body)),
            )
        }
        GrantsCommand::Revoke { id, reason, api } => admin::Client::new(config, api.api, api.token)?.call(
            reqwest::Method::DELETE,
            &format!("/admin/grants/{id}"),
            reason_body(reason),
        ),
    }
}

/// A path segment with everything but unreserved characters
/// percent-encoded (a principal may hold `/` or `:`).
fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn keygen(path: &std::path::Path) -> Result<ExitCode> {
    let key = SigningKey::generate();
    key.write_new(path)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "key_id {}", key.id())?;
    writeln!(out, "public_key {}", key.public_hex())?;
    writeln!(out, "written to {} (mode 0600)", path.display())?;
    Ok(ExitCode::SUCCESS)
}

fn rotate_key(
    paths: &Paths,
    new_key: Option<&std::path::Path>,
    reason: Option<String>,
    principal: String,
) -> Result<ExitCode> {
    let ledger = open_writable(paths)?;
    let key = match new_key {
        Some(path) => SigningKey::read(path)?,
        None => SigningKey::generate(),
    };
    let new_id = key.id();
    let old_id = ledger.current_key_id()?;
    let actor = Actor {
        principal: Some(principal),
        ..Actor::default()
    };
    let receipt = ledger.rotate_key(key, actor, reason)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "rotated {old_id} -> {new_id} at seq {} ({})",
        receipt.seq, receipt.hash
    )?;
    Ok(ExitCode::SUCCESS)
}

fn head(paths: &Paths, output: ReportFormat) -> Result<ExitCode> {
    let ledger = open_read_only(paths)?;
    // What an auditor writes down: the log's own head, not meta's unchecked.
    let head = ledger.head_checked()?;
    let signed_by = ledger
        .get(head.seq)?
        .with_context(|| {
            format!(
                "head event seq {} is missing from {}",
                head.seq,
                ledger.path().display()
            )
        })?
        .event
        .key;
    let current = ledger.current_key_id()?;
    let mut out = std::io::stdout().lock();
    match output {
        ReportFormat::Text => {
            writeln!(out, "seq {}", head.seq)?;
            writeln!(out, "hash {}", head.hash)?;
            writeln!(out, "key_id {signed_by}")?;
            if current != signed_by {
                writeln!(out, "next_key_id {current}")?;
            }
            writeln!(out, "ts {}", head.ts)?;
            writeln!(out, "ledger_id {}", hex::encode(ledger.ledger_id()))?;
            writeln!(out, "pin {}:{}", head.seq, head.hash)?;
        }
        ReportFormat::Json => {
            let v = serde_json::json!({
                "seq": head.seq,
                "hash": head.hash.to_hex(),
                "key_id": signed_by.to_string(),
                "next_key_id": current.to_string(),
                "ts": head.ts.to_string(),
                "ledger_id": hex::encode(ledger.ledger_id()),
                "pin": format!("{}:{}", head.seq, head.hash),
            });
            writeln!(out, "{v}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn open_writable(paths: &Paths) -> Result<Ledger> {
    let dir = paths.ledger_dir();
    Ledger::open_with(&dir, &paths.key_dir(), &paths.store)
        .with_context(|| format!("cannot open the ledger in {}", paths.data_dir.display()))
}

pub(crate) fn open_read_only(paths: &Paths) -> Result<Ledger> {
    let dir = paths.ledger_dir();
    Ledger::open_read_only(&dir).with_context(|| format!("cannot open the ledger in {}", paths.data_dir.display()))
}

/// `--from`/`--to` resolved against the log: sequence numbers, and the
/// times they were resolved from when given as times.
pub(crate) struct Resolved {
    pub from: Option<u64>,
    pub to: Option<u64>,
    pub from_time: Option<Timestamp>,
    pub to_time: Option<Timestamp>,
}

/// The last event: meta's head or the last stored event, whichever is
/// later, so that an altered head in meta (not signed) hides nothing.
pub(crate) fn last_seq(ledger: &Ledger) -> Result<u64> {
    Ok(ledger.last_stored_seq()?.unwrap_or(0).max(ledger.head().seq))
}

/// How `--from`/`--to` times are turned into sequence numbers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Through the time index alone: for `verify`, which checks the range's
    /// edges against the events and reports a disagreement as a failure.
    Index,
    /// Checked against the events, which are searched instead when the
    /// index (not signed) disagrees with them, with a warning: for readers
    /// that show what happened in a span of time.
    Checked,
}

/// Resolves `--from`/`--to` (a sequence number or an RFC 3339 time) to
/// sequence numbers. A time resolves to the first event at or after it
/// (`--from`) or the last event at or before it (`--to`).
pub(crate) fn resolve_range(ledger: &Ledger, range: &Range, lookup: Lookup) -> Result<Resolved> {
    let head = last_seq(ledger)?;
    let pos = |spec: &str, flag: &str, end: bool| -> Result<(Option<u64>, Option<Timestamp>)> {
        if spec.bytes().all(|b| b.is_ascii_digit()) {
            let seq: u64 = spec
                .parse()
                .with_context(|| format!("{flag} {spec}: sequence number out of range"))?;
            return Ok((Some(seq), None));
        }
        let ts = Timestamp::parse_rfc3339(spec).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
        let seq = match (lookup, end) {
            (Lookup::Index, true) => ledger.last_seq_at_or_before(ts)?,
            (Lookup::Index, false) => ledger.first_seq_at_or_after(ts)?,
            (Lookup::Checked, end) => {
                let located = if end {
                    ledger.locate_at_or_before(ts)?
                } else {
                    ledger.locate_at_or_after(ts)?
                };
                if let Some(damage) = located.index_damage {
                    eprintln!(
                        "warning: {flag} {spec}: {damage}; the range was found from the events' own timestamps instead; run `sealgate verify`"
                    );
                }
                located.seq
            }
        };
        match seq {
            Some(s) => Ok((Some(s), Some(ts))),
            None if end => bail!("{flag} {spec}: no event at or before that time"),
            None => bail!("{flag} {spec}: no event at or after that time (the head is seq {head})"),
        }
    };
    let (from, from_time) = range
        .from
        .as_deref()
        .map(|s| pos(s, "--from", false))
        .transpose()?
        .unwrap_or_default();
    let (to, to_time) = range
        .to
        .as_deref()
        .map(|s| pos(s, "--to", true))
        .transpose()?
        .unwrap_or_default();
    if let Some(f) = from
        && f > head
    {
        bail!("--from {f} is past the head (seq {head})");
    }
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        bail!("--from seq {f} is after --to seq {t}");
    }
    Ok(Resolved {
        from,
        to: to.map(|t| t.min(head)),
        from_time,
        to_time,
    })
}

/// The sequence numbers a `--from`/`--to` range covers, found from the
/// events (the time index is not signed: an edited one must not leave
/// events out); the whole log when open-ended.
pub(crate) fn checked_seqs(ledger: &ledger::Ledger, range: &crate::cli::Range) -> anyhow::Result<(u64, u64)> {
    let range = resolve_range(ledger, range, Lookup::Checked)?;
    Ok((range.from.unwrap_or(0), range.to.map_or_else(|| last_seq(ledger), Ok)?))
}

/// The columns every event table starts with (`log`, `find`).
const EVENT_COLUMNS: [&str; 5] = ["SEQ", "TIME", "KIND", "PRINCIPAL", "SUBJECT"];

/// Those columns' header, or one event's cells, aligned.
fn event_cells(cells: [&str; 5]) -> String {
    let [seq, ts, kind, principal, subject] = cells;
    format!("{seq:>8}  {ts:<30}  {kind:<20}  {principal:<16}  {subject:<28}")
}

/// One event's cells: seq, time, kind, principal, server/target.
fn event_row(event: &ledger::Event) -> String {
    let subject = [
        event.subject.server.as_deref(),
        event
            .subject
            .tool
            .as_deref()
            .or(event.subject.prompt.as_deref())
            .or(event.subject.resource.as_deref()),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join("/");
    event_cells([
        &event.seq.to_string(),
        &event.ts.to_string(),
        event.kind.as_str(),
        event.actor.principal.as_deref().unwrap_or("-"),
        if subject.is_empty() { "-" } else { &subject },
    ])
}
