//! `sealgate witness serve`: a c2sp.org/tlog-witness of Sealgate ledgers
//! (`docs/FORMAT.md` §15), and `sealgate witness push`: the ledger's
//! checkpoint pushed to a witness once (what the gateway does for each
//! checkpoint it issues).
//!
//! The witness has its own Ed25519 key (`STATE/witness.key`, made on first
//! start) and keeps, per log it follows, the last checkpoint it cosigned
//! (`STATE/logs/<sha256(origin) hex>.note`), replaced atomically (temp
//! file, fsync, rename, directory fsync) before it answers, under one lock
//! with the check, so two requests cannot roll it back. A checkpoint not
//! consistent with that one is refused (422), logged as an alarm, and kept
//! as evidence in `STATE/refused/`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ledger::witness::{self, Cosigner, Refusal, WitnessLog};
use ledger::{KeyHistory, SigningKey};
use sha2::{Digest, Sha256};

use crate::checkpoints::{self, WitnessConfig};
use crate::config::Paths;

/// The witness's key: read from `STATE/witness.key`, or made there.
fn key(state: &Path) -> Result<SigningKey> {
    let path = state.join("witness.key");
    if path.exists() {
        return SigningKey::read(&path).with_context(|| format!("cannot read the witness key {}", path.display()));
    }
    std::fs::create_dir_all(state).with_context(|| format!("cannot create {}", state.display()))?;
    let key = SigningKey::generate();
    key.write_new(&path)
        .with_context(|| format!("cannot write the witness key {}", path.display()))?;
    Ok(key)
}

fn origin_hash(origin: &str) -> String {
    hex::encode(Sha256::digest(origin.as_bytes()))
}

struct Witness {
    name: String,
    key: SigningKey,
    state: PathBuf,
    /// Per origin. One lock over check and persist (tlog-witness asks
    /// both to be atomic).
    logs: Mutex<HashMap<String, WitnessLog>>,
}

impl Witness {
    fn state_file(&self, origin: &str) -> PathBuf {
        self.state.join("logs").join(format!("{}.note", origin_hash(origin)))
    }

    /// One `add-checkpoint`: the status and body to answer.
    fn add(&self, body: &str) -> (StatusCode, &'static str, String) {
        let Some(origin) = body.split_once("\n\n").and_then(|(_, cp)| cp.lines().next()) else {
            return (
                StatusCode::BAD_REQUEST,
                "text/plain",
                "not an add-checkpoint body: old size, proof lines, a blank line, a checkpoint\n".into(),
            );
        };
        let mut logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        let Some(log) = logs.get_mut(origin) else {
            return (
                StatusCode::NOT_FOUND,
                "text/plain",
                format!("this witness follows no log `{origin}`\n"),
            );
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match log.add_checkpoint(body, &self.name, &self.key, now) {
            Ok(cosigned) => {
                let path = self.state_file(origin);
                if let Err(e) = checkpoints::write_atomic(&path, cosigned.note.as_bytes()) {
                    tracing::error!(origin, "cannot persist the cosigned checkpoint {}: {e}", path.display());
                    return (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        "the witness cannot persist its state\n".into(),
                    );
                }
                tracing::info!(origin, size = cosigned.checkpoint.size, "cosigned");
                log.last = Some(cosigned.note);
                (StatusCode::OK, "text/plain; charset=utf-8", cosigned.line)
            }
            Err(Refusal::Conflict { size }) => (StatusCode::CONFLICT, "text/x.tlog.size", format!("{size}\n")),
            Err(refusal) => {
                if let Refusal::Inconsistent(why) = &refusal {
                    tracing::error!(
                        origin,
                        "ALARM: a checkpoint signed by the log's key is not consistent with the one this witness cosigned: the log was forked or rewritten: {why}"
                    );
                    // Kept as evidence, named by its content (a refusal in
                    // the same second never overwrites another) and at most
                    // MAX_REFUSED of them (anyone can send a refused request).
                    let dir = self.state.join("refused");
                    let kept = std::fs::read_dir(&dir).map_or(0, |d| d.count());
                    let digest = blake3::hash(body.as_bytes()).to_hex();
                    let file = dir.join(format!("{}-{now}-{}.txt", origin_hash(origin), &digest[..16]));
                    if kept >= MAX_REFUSED {
                        tracing::error!(origin, "{} refused requests kept already: this one is not", kept);
                    } else if let Err(e) = checkpoints::write_atomic(&file, body.as_bytes()) {
                        tracing::error!(origin, "cannot keep the refused request as evidence: {e}");
                    }
                } else {
                    tracing::warn!(origin, "refused: {refusal}");
                }
                let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST);
                (status, "text/plain; charset=utf-8", format!("{refusal}\n"))
            }
        }
    }
}

async fn add_checkpoint(State(w): State<Arc<Witness>>, body: Body, read_timeout: Duration) -> Response {
    // The body within the read timeout (a client that stops sending would
    // otherwise hold its connection for ever), and within the size limit.
    let body = match tokio::time::timeout(read_timeout, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => return (StatusCode::BAD_REQUEST, format!("cannot read the body: {e}\n")).into_response(),
        Err(_) => {
            let mut r = (StatusCode::REQUEST_TIMEOUT, "the body did not arrive in time\n").into_response();
            r.headers_mut()
                .insert(header::CONNECTION, header::HeaderValue::from_static("close"));
            return r;
        }
    };
    let Ok(body) = String::from_utf8(body.to_vec()) else {
        return (StatusCode::BAD_REQUEST, "the body is not UTF-8\n").into_response();
    };
    match tokio::task::spawn_blocking(move || w.add(&body)).await {
        Ok((status, ctype, text)) => (status, [(header::CONTENT_TYPE, ctype)], text).into_response(),
        Err(e) => {
            tracing::error!("the add-checkpoint task failed: {e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// `GET /<sha256(origin) hex>/checkpoint`: the last checkpoint cosigned.
async fn latest(State(w): State<Arc<Witness>>, UrlPath(hash): UrlPath<String>) -> Response {
    let logs = w.logs.lock().unwrap_or_else(|p| p.into_inner());
    match logs
        .iter()
        .find(|(origin, _)| origin_hash(origin) == hash)
        .and_then(|(_, l)| l.last.clone())
    {
        Some(note) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response(),
        None => (StatusCode::NOT_FOUND, "no checkpoint cosigned for this log\n").into_response(),
    }
}

/// `--log`: a key history file, or one verifier key.
fn log_keys(spec: &str) -> Result<KeyHistory> {
    let path = Path::new(spec);
    let text = if path.exists() {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    } else {
        spec.to_owned()
    };
    KeyHistory::parse(&text).map_err(|r| anyhow::anyhow!("--log {spec}: {r}"))
}

/// Refused requests kept as evidence, at most.
const MAX_REFUSED: usize = 1000;
/// The largest `add-checkpoint` body read: a checkpoint with its
/// cosignatures and a proof of at most 64 hashes are a few KiB.
const MAX_BODY: usize = 64 * 1024;
/// Connections at once, shared fairly between sources (the gateway's
/// listener).
const MAX_CONNECTIONS: usize = 256;

pub fn serve(
    state: &Path,
    listen: SocketAddr,
    name: &str,
    logs: &[String],
    read_timeout: Duration,
) -> Result<ExitCode> {
    if logs.is_empty() {
        bail!("give the logs to witness with --log KEY_HISTORY_OR_VKEY (sealgate key-history prints it)");
    }
    let key = key(state)?;
    // One witness per state directory: two processes, each checking against
    // its own copy of the state, could each cosign a branch of a fork.
    let lock_path = state.join("lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another witness serves the state directory {} (it holds {}): two would each cosign a branch of a fork",
            state.display(),
            lock_path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", lock_path.display()));
        }
    }
    let vkey = witness::cosigner_vkey(name, &key.public());
    Cosigner::parse_vkey(&vkey).map_err(|e| anyhow::anyhow!("--name {name}: {e}"))?;
    std::fs::write(state.join("witness.vkey"), format!("{vkey}\n"))
        .with_context(|| format!("cannot write {}", state.join("witness.vkey").display()))?;
    let mut map = HashMap::new();
    for spec in logs {
        let keys = log_keys(spec)?;
        let file = state.join("logs").join(format!("{}.note", origin_hash(&keys.origin)));
        let last = match std::fs::read_to_string(&file) {
            Ok(s) => {
                keys.verify_checkpoint(&s)
                    .map_err(|r| anyhow::anyhow!("the state {} does not verify: {r}", file.display()))?;
                Some(s)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
        };
        if map.contains_key(&keys.origin) {
            bail!(
                "--log {spec}: the log {} is given twice (its key history once, with every key)",
                keys.origin
            );
        }
        map.insert(keys.origin.clone(), WitnessLog { keys, last });
    }
    let w = Arc::new(Witness {
        name: name.to_owned(),
        key,
        state: state.to_owned(),
        logs: Mutex::new(map),
    });
    let app = Router::new()
        .route(
            "/add-checkpoint",
            post(move |state, body| add_checkpoint(state, body, read_timeout)),
        )
        .route("/{hash}/checkpoint", get(latest))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(w);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        println!("listening on http://{addr}");
        println!("witness vkey {vkey}");
        use std::io::Write;
        std::io::stdout().flush()?;
        // The gateway's listener: headers within the read timeout, a
        // connection cap shared fairly between sources.
        let shutdown = tokio_util::sync::CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
        });
        let limits = crate::gateway::listener::ListenerLimits {
            max_connections: MAX_CONNECTIONS,
            header_read_timeout: read_timeout,
        };
        crate::gateway::listener::serve(listener, app, limits, shutdown, Duration::from_secs(5)).await;
        Ok(ExitCode::SUCCESS)
    })
}

/// `sealgate witness push`: the ledger's checkpoint of its whole log (or
/// the latest issued one with `--issued`) to a witness; prints the note
/// cosigned, or exits 1 with the witness's refusal.
pub fn push(paths: &Paths, url: &str, vkey: &str, size: Option<u64>) -> Result<ExitCode> {
    let ledger = Arc::new(super::open_read_only(paths)?);
    let current = ledger.current_key_id()?;
    let signing = paths
        .key_dir()
        .load(current)
        .with_context(|| format!("checkpoints are signed with the ledger's current key {current}"))?;
    let size = size.unwrap_or_else(|| ledger.tree_size());
    let note = ledger.checkpoint(size, &signing)?;
    let target = checkpoints::targets(&[WitnessConfig {
        name: "cli".into(),
        url: url.to_owned(),
        vkey: vkey.to_owned(),
        timeout_sec: 10,
        attempts: 3,
    }])?
    .pop()
    .context("one witness")?;
    let issued = checkpoints::Issued {
        seq: size,
        size,
        note: note.clone(),
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let answer = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .context("cannot build the HTTP client")?;
        let mut known = None;
        let stop = tokio_util::sync::CancellationToken::new();
        Ok::<_, anyhow::Error>(checkpoints::push(&client, &ledger, &target, &issued, &mut known, &stop).await)
    })?;
    if answer.superseded {
        eprintln!("the witness holds a newer tree of this log than this checkpoint: nothing to cosign");
        return Ok(ExitCode::from(1));
    }
    match answer.cosignature {
        Some(line) => {
            print!("{}", witness::add_signatures(&note, &line));
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!(
                "the witness did not cosign ({:?}): {}",
                answer.outcome,
                answer.error.unwrap_or_default()
            );
            Ok(ExitCode::from(1))
        }
    }
}
