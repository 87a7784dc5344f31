//! The gateway's checkpoints (`docs/FORMAT.md` §14–15, `docs/CONFIG.md`
//! `[checkpoints]` and `[[witnesses]]`): issued every N events or T
//! seconds, at start and on shutdown, each recorded as a
//! `checkpoint.issued` event by the gateway's own writer (actor
//! `sealgate:checkpoints`), pushed to the configured witnesses, whose
//! answers are recorded as `checkpoint.witnessed` and whose cosignatures
//! are kept beside the checkpoint (`<data_dir>/checkpoints/latest.note`).
//!
//! The issuer and one pusher per witness are tasks on the gateway's
//! runtime; the ledger's reads and signing run off the async workers, and
//! no call waits for them. A checkpoint event grows the log it describes:
//! the checkpoint it records is of the log before it (its size is at most
//! its own seq), so with `every_secs` an idle log still gains one event per
//! interval, the heartbeat that makes a cut tail show within T.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use events::{CheckpointIssued, CheckpointWitnessed, WitnessOutcome};
use ledger::witness::{self, Cosigner};
use ledger::{Actor, Checkpoint, Draft, EventKind, Ledger};
use serde::Deserialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The principal of the events the issuer writes.
pub const CHECKPOINTS_ACTOR: &str = "sealgate:checkpoints";

/// `[checkpoints]` (`docs/CONFIG.md`).
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointsConfig {
    /// Issue checkpoints at all.
    pub enabled: bool,
    /// A checkpoint once the log grew by this many events since the last.
    pub every_events: u64,
    /// A checkpoint once this many seconds passed since the last, also
    /// when nothing else was written.
    pub every_secs: u64,
}

impl Default for CheckpointsConfig {
    fn default() -> Self {
        CheckpointsConfig {
            enabled: true,
            every_events: 10_000,
            every_secs: 60,
        }
    }
}

/// `[[witnesses]]` (`docs/CONFIG.md`): a c2sp.org/tlog-witness the issued
/// checkpoints are pushed to.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// What the gateway calls it (in events and logs).
    pub name: String,
    /// The witness's submission prefix: `<url>/add-checkpoint` is posted to.
    pub url: String,
    /// The witness's verifier key (`NAME+ID+KEY`, type 0x04), as
    /// `sealgate witness serve` prints it: answers are checked against it.
    pub vkey: String,
    /// Per request.
    #[serde(default = "default_timeout")]
    pub timeout_sec: u64,
    /// Attempts per checkpoint while the witness does not answer (or
    /// answers 5xx), with a doubling backoff from 1 s.
    #[serde(default = "default_attempts")]
    pub attempts: u64,
}

fn default_timeout() -> u64 {
    10
}

fn default_attempts() -> u64 {
    5
}

/// What cannot issue or push a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoints: {0}")]
    Ledger(#[from] ledger::Error),
    #[error("checkpoints: {0}")]
    Format(#[from] ledger::Rejection),
    #[error("checkpoints: {0}")]
    Body(#[from] events::Error),
    #[error("checkpoints: {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("checkpoints: {0}")]
    Config(String),
    #[error("checkpoints: the task stopped: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// The file holding the latest issued checkpoint, with the cosignatures
/// gathered for it.
pub fn latest_path(data_dir: &Path) -> PathBuf {
    data_dir.join("checkpoints").join("latest.note")
}

/// The latest issued checkpoint, cosigned as far as witnesses answered;
/// `None` before the first.
pub fn read_latest(data_dir: &Path) -> Result<Option<String>, CheckpointError> {
    let path = latest_path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CheckpointError::Io { path, source }),
    }
}

/// Writes `bytes` to `path` so that a reader (or a crash) sees the old
/// file or the new one whole: a temp file beside it, fsynced, renamed over
/// it, and the directory fsynced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other(format!("{} has no parent directory", path.display())))?;
    // Directories made here are synced into their parents: a crash must
    // not lose the directory with the file (a witness that forgot what it
    // cosigned would cosign a fork).
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .collect();
    std::fs::create_dir_all(dir)?;
    for made in missing {
        if let Some(parent) = made.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::File::open(parent)?.sync_all()?;
        }
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// An issued checkpoint.
#[derive(Clone, Debug)]
pub struct Issued {
    /// Its `checkpoint.issued` event.
    pub seq: u64,
    pub size: u64,
    /// The log's signed note (without cosignatures).
    pub note: String,
}

/// Signs a checkpoint of the whole log as it is now and records it.
/// Blocking.
pub fn issue(ledger: &Ledger, trigger: &str) -> Result<Issued, CheckpointError> {
    let size = ledger.tree_size();
    let note = ledger.checkpoint_now(Some(size))?;
    let text = witness::note_text(&note)?;
    Checkpoint::parse_text(text)?;
    // The root as the note's third line says it (base64).
    let root = text.lines().nth(2).unwrap_or_default().to_owned();
    let mut d = Draft::new(EventKind::CheckpointIssued);
    d.actor = Actor {
        principal: Some(CHECKPOINTS_ACTOR.into()),
        ..Actor::default()
    };
    d.body = events::encode(&CheckpointIssued {
        size,
        root,
        note: note.clone(),
        trigger: trigger.into(),
    })?;
    let r = ledger.append_blocking(d)?;
    Ok(Issued { seq: r.seq, size, note })
}

/// The issuer's shared state: the latest issued checkpoint with the
/// cosignatures gathered for it, mirrored in `latest.note`.
struct Latest {
    path: PathBuf,
    current: Mutex<Option<(u64, String)>>,
    /// Events the issuer and its pushers appended (`checkpoint.*`): they
    /// do not count towards `every_events`, or with `every_events` at most
    /// one more than the witnesses each checkpoint would make the next.
    own: std::sync::atomic::AtomicU64,
}

impl Latest {
    fn own(&self) -> u64 {
        self.own.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn appended(&self) {
        self.own.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Keeps `note` as the latest (in memory even when the file cannot be
    /// written: the checkpoint is recorded, and its witnesses are still
    /// asked; the error is for the log).
    fn set(&self, size: u64, note: &str) -> Result<(), CheckpointError> {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        *cur = Some((size, note.to_owned()));
        write_atomic(&self.path, note.as_bytes()).map_err(|source| CheckpointError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Adds a cosignature line to the latest checkpoint if it is still of
    /// `size`.
    fn cosigned(&self, size: u64, line: &str) -> Result<(), CheckpointError> {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, note)) = cur.as_ref()
            && *at == size
        {
            let note = witness::add_signatures(note, line);
            *cur = Some((size, note.clone()));
            write_atomic(&self.path, note.as_bytes()).map_err(|source| CheckpointError::Io {
                path: self.path.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

/// The running issuer: [`Issuer::shutdown`] issues the last checkpoint and
/// gives the witnesses a moment to cosign it.
pub struct Issuer {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    pushers: Vec<tokio::task::JoinHandle<()>>,
    ledger: Arc<Ledger>,
    latest: Arc<Latest>,
    tx: Vec<watch::Sender<Option<Arc<Issued>>>>,
    push_stop: CancellationToken,
}

/// A witness as the gateway pushes to it.
pub struct Target {
    pub config: WitnessConfig,
    pub cosigner: Cosigner,
}

/// Checks the witnesses' config: names unique, keys parse, URLs http(s).
pub fn targets(witnesses: &[WitnessConfig]) -> Result<Vec<Target>, CheckpointError> {
    let mut out: Vec<Target> = Vec::new();
    for w in witnesses {
        if out.iter().any(|t| t.config.name == w.name) {
            return Err(CheckpointError::Config(format!(
                "two [[witnesses]] are named `{}`",
                w.name
            )));
        }
        let cosigner =
            Cosigner::parse_vkey(&w.vkey).map_err(|e| CheckpointError::Config(format!("witness `{}`: {e}", w.name)))?;
        if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
            return Err(CheckpointError::Config(format!(
                "witness `{}`: url must be http:// or https://",
                w.name
            )));
        }
        if w.attempts == 0 || w.timeout_sec == 0 {
            return Err(CheckpointError::Config(format!(
                "witness `{}`: attempts and timeout_sec must be at least 1",
                w.name
            )));
        }
        out.push(Target {
            config: w.clone(),
            cosigner,
        });
    }
    Ok(out)
}

/// Starts the issuer and the pushers on the current runtime, once the
/// start checkpoint is recorded (so it precedes whatever the gateway then
/// serves); `None` when `[checkpoints] enabled = false`.
pub async fn start(
    ledger: Arc<Ledger>,
    data_dir: &Path,
    config: &CheckpointsConfig,
    witnesses: &[WitnessConfig],
) -> Result<Option<Issuer>, CheckpointError> {
    if config.every_events == 0 || config.every_secs == 0 {
        return Err(CheckpointError::Config(
            "checkpoints.every_events and checkpoints.every_secs must be at least 1".into(),
        ));
    }
    let targets = targets(witnesses)?;
    if !config.enabled {
        if !targets.is_empty() {
            tracing::warn!("[[witnesses]] are configured but checkpoints.enabled = false: nothing is pushed");
        }
        // A checkpoint left by an earlier run would be served as the latest
        // for ever: a monitor would not see a cut tail.
        let path = latest_path(data_dir);
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::info!("checkpoints are off: {} removed", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(CheckpointError::Io { path, source }),
        }
        return Ok(None);
    }
    let latest = Arc::new(Latest {
        path: latest_path(data_dir),
        current: Mutex::new(None),
        own: std::sync::atomic::AtomicU64::new(0),
    });
    let stop = CancellationToken::new();
    let push_stop = CancellationToken::new();
    let mut tx = Vec::new();
    let mut pushers = Vec::new();
    for t in targets {
        let (s, r) = watch::channel(None);
        tx.push(s);
        pushers.push(tokio::spawn(push_loop(
            Arc::clone(&ledger),
            t,
            r,
            Arc::clone(&latest),
            push_stop.clone(),
        )));
    }
    let first = issue_now(&ledger, "start", &latest, &tx)
        .await
        .map(|i| (i.seq + 1, Instant::now(), latest.own()));
    let task = tokio::spawn(issue_loop(
        first,
        Arc::clone(&ledger),
        config.clone(),
        Arc::clone(&latest),
        tx.clone(),
        stop.clone(),
    ));
    Ok(Some(Issuer {
        stop,
        task,
        pushers,
        ledger,
        latest,
        tx,
        push_stop,
    }))
}

/// Issues one checkpoint off the async workers, keeps it as the latest
/// and hands it to the pushers. Errors are logged: the next tick retries.
async fn issue_now(
    ledger: &Arc<Ledger>,
    trigger: &'static str,
    latest: &Arc<Latest>,
    tx: &[watch::Sender<Option<Arc<Issued>>>],
) -> Option<Arc<Issued>> {
    let l = Arc::clone(ledger);
    let lt = Arc::clone(latest);
    let made = tokio::task::spawn_blocking(move || {
        let issued = issue(&l, trigger)?;
        lt.appended();
        if let Err(e) = lt.set(issued.size, &issued.note) {
            tracing::error!(
                seq = issued.seq,
                "checkpoint recorded but not stored: {e}; it is still pushed to the witnesses, and the well-known URL serves the last one stored"
            );
        }
        Ok::<_, CheckpointError>(issued)
    })
    .await;
    match made {
        Ok(Ok(issued)) => {
            tracing::info!(seq = issued.seq, size = issued.size, trigger, "checkpoint issued");
            let issued = Arc::new(issued);
            for s in tx {
                s.send_replace(Some(Arc::clone(&issued)));
            }
            Some(issued)
        }
        Ok(Err(e)) => {
            tracing::error!("cannot issue a checkpoint ({trigger}): {e}");
            None
        }
        Err(e) => {
            tracing::error!("the checkpoint task failed ({trigger}): {e}");
            None
        }
    }
}

async fn issue_loop(
    mut last: Option<(u64, Instant, u64)>,
    ledger: Arc<Ledger>,
    config: CheckpointsConfig,
    latest: Arc<Latest>,
    tx: Vec<watch::Sender<Option<Arc<Issued>>>>,
    stop: CancellationToken,
) {
    let every = Duration::from_secs(config.every_secs);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        let size = ledger.tree_size();
        let own = latest.own();
        let trigger = match last {
            None => Some("start"),
            Some((at, _, own_at)) if size.saturating_sub(at).saturating_sub(own - own_at) >= config.every_events => {
                Some("events")
            }
            Some((_, when, _)) if when.elapsed() >= every => Some("interval"),
            Some(_) => None,
        };
        if let Some(trigger) = trigger {
            match issue_now(&ledger, trigger, &latest, &tx).await {
                // From the log with this checkpoint's own event: that one
                // does not count (nor do the pushers' answers, in `own`).
                Some(i) => last = Some((i.seq + 1, Instant::now(), latest.own())),
                // Logged; tried again in 5 s, not at every tick (a full
                // disk or a poisoned writer would fill the log otherwise).
                None => tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                },
            }
        }
    }
}

impl Issuer {
    /// Stops the issuer, issues the shutdown checkpoint and waits up to
    /// `grace` for the witnesses to answer about it (then stops retrying).
    pub async fn shutdown(self, grace: Duration) {
        self.stop.cancel();
        let _ = self.task.await;
        issue_now(&self.ledger, "shutdown", &self.latest, &self.tx).await;
        drop(self.tx);
        let mut pushers = self.pushers;
        let all = futures::future::join_all(pushers.iter_mut());
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("witnesses did not all answer within {grace:?} of shutdown");
            self.push_stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(2), futures::future::join_all(pushers)).await;
        }
    }
}

/// One witness's pusher: always pushes the newest issued checkpoint (one
/// at a time, in order), records each answer.
async fn push_loop(
    ledger: Arc<Ledger>,
    target: Target,
    mut rx: watch::Receiver<Option<Arc<Issued>>>,
    latest: Arc<Latest>,
    stop: CancellationToken,
) {
    // A redirect is not followed: the witness is named by its URL.
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(target.config.timeout_sec))
        .timeout(Duration::from_secs(target.config.timeout_sec))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(witness = %target.config.name, "witness pusher stopped: cannot build its HTTP client: {e}");
            return;
        }
    };
    let mut known: Option<u64> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            changed = rx.changed() => if changed.is_err() { return },
        }
        let Some(issued) = rx.borrow_and_update().clone() else {
            continue;
        };
        let answer = push(&client, &ledger, &target, &issued, &mut known, &stop).await;
        if !answer.superseded {
            record(&ledger, &target, &issued, &answer, &latest).await;
        }
    }
}

/// What a witness answered about one checkpoint, after every attempt.
#[derive(Debug, Clone)]
pub struct Answer {
    pub outcome: WitnessOutcome,
    pub attempts: u64,
    pub status: Option<u16>,
    /// The cosignature line.
    pub cosignature: Option<String>,
    pub error: Option<String>,
    /// The witness holds a newer tree of this log than the checkpoint
    /// pushed (another pusher, or `sealgate witness push`, was first):
    /// nothing to cosign and nothing wrong; not recorded.
    pub superseded: bool,
}

/// At most 300 bytes of a witness's answer, on one line.
fn excerpt(text: &str) -> String {
    let one: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut cut = one.len().min(300);
    while !one.is_char_boundary(cut) {
        cut -= 1;
    }
    one[..cut].to_owned()
}

/// Pushes `issued` to the witness (c2sp.org/tlog-witness `add-checkpoint`)
/// with a consistency proof from the size the witness holds (`known`,
/// learnt from its 409 answers; 0 at first), retrying while it does not
/// answer. `known` becomes the checkpoint's size once cosigned.
pub async fn push(
    client: &reqwest::Client,
    ledger: &Arc<Ledger>,
    target: &Target,
    issued: &Issued,
    known: &mut Option<u64>,
    stop: &CancellationToken,
) -> Answer {
    let name = &target.config.name;
    let url = format!("{}/add-checkpoint", target.config.url.trim_end_matches('/'));
    let mut attempts = 0;
    let mut conflicts = 0;
    let mut backoff = Duration::from_secs(1);
    let refused = |attempts, status: Option<u16>, error: String| {
        tracing::error!(
            witness = %name,
            size = issued.size,
            "WITNESS REFUSED the checkpoint of {} events: {error}; if it says the tree is not consistent with one it cosigned, the log was forked or rewritten",
            issued.size
        );
        Answer {
            outcome: WitnessOutcome::Refused,
            attempts,
            status,
            cosignature: None,
            error: Some(error),
            superseded: false,
        }
    };
    let local_failure = |attempts, error: String| {
        tracing::error!(witness = %name, size = issued.size, "cannot push the checkpoint: {error}");
        Answer {
            outcome: WitnessOutcome::Unreachable,
            attempts,
            status: None,
            cosignature: None,
            error: Some(error),
            superseded: false,
        }
    };
    loop {
        attempts += 1;
        let old = known.unwrap_or(0);
        if old > issued.size && old <= ledger.tree_size() {
            tracing::info!(
                witness = %name,
                "the witness holds a tree of {old} events of this log, newer than this checkpoint of {}: superseded",
                issued.size
            );
            return Answer {
                outcome: WitnessOutcome::Cosigned,
                attempts,
                status: Some(409),
                cosignature: None,
                error: None,
                superseded: true,
            };
        }
        if old > issued.size {
            // The witness's 409 named a tree this log does not reach: a
            // rollback (a backup restored, the tail cut), the alarm.
            return refused(
                attempts,
                Some(409),
                format!(
                    "the witness holds a tree of {old} events, the log issued one of {}: the log lost events it had",
                    issued.size
                ),
            );
        }
        let l = Arc::clone(ledger);
        let new = issued.size;
        // From 0 the proof is empty (the empty tree is a prefix of any).
        let made = tokio::task::spawn_blocking(move || {
            if old == 0 {
                Ok(Vec::new())
            } else {
                l.consistency_proof(old, new).map_err(|e| e.to_string())
            }
        })
        .await;
        let hashes = match made {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => return local_failure(attempts, format!("no consistency proof from {old} to {new}: {e}")),
            Err(e) => return local_failure(attempts, format!("the proof task failed: {e}")),
        };
        // The add-checkpoint body is a consistency proof's text without
        // its first line (docs/FORMAT.md §14).
        let proof = ledger::ConsistencyProof {
            old,
            hashes,
            checkpoint: issued.note.clone(),
        }
        .to_text();
        let body = proof.split_once('\n').map(|(_, b)| b.to_owned()).unwrap_or_default();
        let sent = client.post(&url).body(body).send().await;
        let transient = match sent {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = match bounded_text(resp).await {
                    Ok(t) => t,
                    Err(why) => return refused(attempts, Some(status), why),
                };
                match status {
                    200 => {
                        let with = witness::add_signatures(&issued.note, &text);
                        return match target.cosigner.verify(&with) {
                            Ok(Some(_)) => {
                                *known = Some(issued.size);
                                let line = text
                                    .lines()
                                    .find(|l| {
                                        target
                                            .cosigner
                                            .verify(&witness::add_signatures(&issued.note, l))
                                            .is_ok_and(|t| t.is_some())
                                    })
                                    .map(|l| format!("{l}\n"));
                                Answer {
                                    outcome: WitnessOutcome::Cosigned,
                                    attempts,
                                    status: Some(200),
                                    cosignature: line,
                                    error: None,
                                    superseded: false,
                                }
                            }
                            Ok(None) => refused(
                                attempts,
                                Some(200),
                                "the answer holds no cosignature by the configured witness key".into(),
                            ),
                            Err(e) => refused(attempts, Some(200), format!("the answer's cosignature: {e}")),
                        };
                    }
                    409 => {
                        conflicts += 1;
                        match text.trim().parse::<u64>() {
                            Ok(size) if conflicts <= 3 => {
                                tracing::info!(witness = %name, "the witness holds a tree of {size} events: proving from there");
                                *known = Some(size);
                                attempts -= 1;
                                continue;
                            }
                            _ => {
                                return refused(
                                    attempts,
                                    Some(409),
                                    format!("409 without a usable size: {}", excerpt(&text)),
                                );
                            }
                        }
                    }
                    // Not followed (the client has no redirect policy): the
                    // witness is named by its URL; retrying cannot help.
                    300..=399 => {
                        return refused(attempts, Some(status), format!("{status}: a redirect, not followed"));
                    }
                    // Too many requests, or too slow: a busy witness, not
                    // a refusal; tried again like a 5xx.
                    408 | 429 => (Some(status), format!("{status} {}", excerpt(&text))),
                    400..=499 => return refused(attempts, Some(status), format!("{status} {}", excerpt(&text))),
                    _ => (Some(status), format!("{status} {}", excerpt(&text))),
                }
            }
            Err(e) => (
                None,
                if e.is_timeout() {
                    format!("no answer within {} s", target.config.timeout_sec)
                } else {
                    format!("cannot reach the witness: {}", e.without_url())
                },
            ),
        };
        if attempts >= target.config.attempts {
            tracing::error!(witness = %name, size = issued.size, "witness unreachable: {}", transient.1);
            return Answer {
                outcome: WitnessOutcome::Unreachable,
                attempts,
                status: transient.0,
                cosignature: None,
                error: Some(transient.1),
                superseded: false,
            };
        }
        tracing::warn!(witness = %name, "witness did not answer ({}); retrying in {backoff:?}", transient.1);
        tokio::select! {
            () = stop.cancelled() => {
                return Answer {
                    outcome: WitnessOutcome::Unreachable,
                    attempts,
                    status: transient.0,
                    cosignature: None,
                    error: Some(format!("{} (stopped)", transient.1)),
                    superseded: false,
                };
            }
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// The `checkpoint.witnessed` draft of a witness's answer.
pub fn witnessed_draft(witness: &str, issued: &Issued, answer: &Answer) -> Result<Draft, events::Error> {
    let mut d = Draft::new(EventKind::CheckpointWitnessed);
    d.actor = Actor {
        principal: Some(CHECKPOINTS_ACTOR.into()),
        ..Actor::default()
    };
    d.body = events::encode(&CheckpointWitnessed {
        witness: witness.to_owned(),
        outcome: answer.outcome,
        size: issued.size,
        issued_seq: issued.seq,
        attempts: answer.attempts,
        status: answer.status.map(u64::from),
        cosignature: answer.cosignature.as_ref().map(|l| l.trim_end().to_owned()),
        error: answer.error.clone(),
    })?;
    Ok(d)
}

/// Records the answer as `checkpoint.witnessed` and keeps a cosignature.
/// The most of a witness's answer read: a cosignature or a size is a line.
const MAX_ANSWER: usize = 64 * 1024;

/// A witness's answer as text, read up to [`MAX_ANSWER`] bytes: a larger
/// one is no witness's answer, and is not read on (a hostile witness could
/// otherwise stream until the gateway runs out of memory).
async fn bounded_text(mut resp: reqwest::Response) -> Result<String, String> {
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_ANSWER {
                    return Err(format!("the answer is larger than {MAX_ANSWER} bytes: not read"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(String::from_utf8_lossy(&body).into_owned()),
            Err(e) => return Err(format!("cannot read the answer: {}", e.without_url())),
        }
    }
}

/// Records a witness's answer, then keeps its cosignature: a cosignature
/// the log does not record is never served.
async fn record(ledger: &Arc<Ledger>, target: &Target, issued: &Issued, answer: &Answer, latest: &Arc<Latest>) {
    let d = match witnessed_draft(&target.config.name, issued, answer) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(witness = %target.config.name, "cannot build a checkpoint.witnessed body: {e}");
            return;
        }
    };
    match ledger.append(d).await {
        Ok(_) => latest.appended(),
        Err(e) => {
            tracing::error!(witness = %target.config.name, "cannot record the witness's answer: {e}; its cosignature is not kept");
            return;
        }
    }
    if let Some(line) = &answer.cosignature {
        let lt = Arc::clone(latest);
        let (size, line) = (issued.size, line.clone());
        match tokio::task::spawn_blocking(move || lt.cosigned(size, &line)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(witness = %target.config.name, "cannot keep the cosignature: {e}"),
            Err(e) => tracing::error!(witness = %target.config.name, "cannot keep the cosignature: {e}"),
        }
    }
}

/// What the latest issued checkpoint proves of the seq ranges an answer
/// read (`sql --verify`, `POST /admin/query` with `verify`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeProofs {
    /// The checkpoint's size and root (base64), when one was issued.
    pub checkpoint: Option<(u64, String)>,
    /// Signature lines on it besides the log's own (witnesses'
    /// cosignatures, as `latest.note` holds them): counted, not checked
    /// here (`verify-proof --witness` checks them).
    pub other_signatures: usize,
    /// Ranges (first, last seq) proved complete: their events verify
    /// (hashes, links, signatures) and are the tree's whole range there.
    pub complete: Vec<(u64, u64)>,
    /// Ranges past the checkpoint (under no signed tree yet).
    pub past: Vec<(u64, u64)>,
    /// What failed: a checkpoint not signed by the log's key, one larger
    /// than the log, a range whose events or proof do not verify.
    pub failures: Vec<String>,
}

/// Proves each of `ranges` (first, last seq: what an answer read every
/// event of) complete under the latest checkpoint issued in `data_dir`:
/// the checkpoint verifies under the log's key history, the ranges'
/// events verify, and a range proof leads from their leaves to its root.
/// The keys and the checkpoint come from this data dir: this shows the
/// answer's input is the whole of those seqs in the tree the log's key
/// signed, as far as that key is trusted (a witness's cosignature, checked
/// by `verify-proof --witness`, is what ties it to anything outside).
/// `ledger` must be a read-only open (verification refuses a writer).
/// Blocking; reads the log from the first range to its head once.
pub fn prove_ranges(ledger: &Ledger, data_dir: &Path, ranges: &[(u64, u64)]) -> Result<RangeProofs, CheckpointError> {
    let mut out = RangeProofs::default();
    let Some(note) = read_latest(data_dir)? else {
        out.past = ranges.to_vec();
        return Ok(out);
    };
    let checkpoint = match ledger.key_history()?.verify_checkpoint(&note) {
        Ok(c) => c,
        Err(r) => {
            out.failures.push(format!(
                "the latest checkpoint ({}) does not verify under the log's keys: {r}",
                latest_path(data_dir).display()
            ));
            return Ok(out);
        }
    };
    let text = witness::note_text(&note)?;
    out.other_signatures = note[text.len()..]
        .lines()
        .filter(|l| l.starts_with('\u{2014}'))
        .count()
        .saturating_sub(1);
    let size = checkpoint.size;
    out.checkpoint = Some((size, text.lines().nth(2).unwrap_or_default().to_owned()));
    let held = ledger.tree_size();
    if size > held {
        out.failures.push(format!(
            "the log holds {held} events, fewer than its signed checkpoint of {size} ({}): its tail was cut or rolled back",
            latest_path(data_dir).display()
        ));
        return Ok(out);
    }
    let mut under = Vec::new();
    for &(first, last) in ranges {
        if last >= size {
            out.past.push((first.max(size), last));
        }
        if first < size {
            under.push((first, (last + 1).min(size)));
        }
    }
    let (Some(from), Some(to)) = (under.iter().map(|r| r.0).min(), under.iter().map(|r| r.1).max()) else {
        return Ok(out);
    };
    // One pass over the log for every range (their signatures, and the
    // hashes and links around them).
    let report = ledger.verify(
        &ledger::VerifyOptions {
            from: Some(from),
            to: Some(to - 1),
            ..ledger::VerifyOptions::default()
        },
        &|_, _| {},
    )?;
    if let Some(f) = &report.failure {
        out.failures.push(format!("the log does not verify: {f}"));
        return Ok(out);
    }
    for (first, end) in under {
        let leaves = (first..end)
            .map(|seq| ledger.leaf_hash(seq))
            .collect::<Result<Vec<_>, _>>()?;
        let proof = ledger.range_proof(first, end, size)?;
        match ledger::merkle::verify_range(&leaves, first, size, &proof, &checkpoint.root) {
            Ok(()) => out.complete.push((first, end - 1)),
            Err(e) => out.failures.push(format!(
                "seq {first} to {}: not the whole range of the checkpoint's tree of {size} events: {e}",
                end - 1
            )),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(dir: &Path) -> Arc<Ledger> {
        let keys = ledger::KeyDir::new(dir.join("keys"));
        Arc::new(
            Ledger::create(
                &dir.join("ledger"),
                &keys,
                ledger::SigningKey::generate(),
                Actor::default(),
            )
            .expect("create"),
        )
    }

    fn issued(l: &Ledger) -> usize {
        l.events(0, l.head().seq)
            .expect("events")
            .filter(|e| e.as_ref().is_ok_and(|e| e.event.kind == EventKind::CheckpointIssued))
            .count()
    }

    /// The issuer's own `checkpoint.issued` events do not count towards
    /// `every_events`: at 1, an idle log gets no checkpoint per tick (each
    /// grew the log by one and so called for the next), only the start's
    /// and the shutdown's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_checkpoint_does_not_call_for_the_next() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = ledger(dir.path());
        let config = CheckpointsConfig {
            enabled: true,
            every_events: 1,
            every_secs: 3600,
        };
        let issuer = start(Arc::clone(&l), dir.path(), &config, &[])
            .await
            .expect("start")
            .expect("enabled");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(issued(&l), 1, "an idle log got checkpoints beyond the start's");
        // Another writer's event does call for one.
        let d = Draft::new(EventKind::from_name("x.test"));
        l.append(d).await.expect("append");
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(issued(&l), 2);
        issuer.shutdown(Duration::from_secs(1)).await;
    }

    /// A witness's answer is read up to 64 KiB, no further.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_witness_answer_is_read_up_to_its_bound() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    let _ = sock
                        .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                        .await;
                    let chunk = vec![b'a'; 16 * 1024];
                    // 100 MB, unless the reader stops.
                    for _ in 0..6400 {
                        let head = format!("{:x}\r\n", chunk.len());
                        if sock.write_all(head.as_bytes()).await.is_err()
                            || sock.write_all(&chunk).await.is_err()
                            || sock.write_all(b"\r\n").await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        let resp = reqwest::Client::new()
            .get(format!("http://{addr}/"))
            .send()
            .await
            .expect("answer");
        let why = bounded_text(resp).await.expect_err("too large");
        assert!(why.contains("larger than 65536 bytes"), "{why}");
    }

    /// A fake witness answering every request with `status` and `body`.
    async fn answering(status: u16, reason: &'static str, body: String) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = vec![0u8; 65536];
                let _ = sock.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(body.as_bytes()).await;
            }
        });
        format!("http://{addr}")
    }

    fn target(url: String) -> Target {
        let key = ledger::SigningKey::generate();
        targets(&[WitnessConfig {
            name: "w".into(),
            url,
            vkey: witness::cosigner_vkey("w.example", &key.public()),
            timeout_sec: 5,
            attempts: 1,
        }])
        .expect("target")
        .pop()
        .expect("one")
    }

    /// A witness answering 429 or 408 is busy, not refusing: the push is
    /// retried and, out of attempts, unreachable (WARN), not refused (FATAL).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_busy_witness_is_no_refusal() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("tempdir");
        let l = ledger(dir.path());
        let issued = tokio::task::block_in_place(|| issue(&l, "test")).expect("issue");
        for (status, reason) in [(429, "Too Many Requests"), (408, "Request Timeout")] {
            let t = target(answering(status, reason, "slow down\n".into()).await);
            let answer = push(
                &reqwest::Client::new(),
                &l,
                &t,
                &issued,
                &mut None,
                &CancellationToken::new(),
            )
            .await;
            assert_eq!(answer.outcome, WitnessOutcome::Unreachable, "{status}: {answer:?}");
        }
    }

    /// A witness that already holds a newer tree of this log (another
    /// pusher was first) answers 409 with its size: the older checkpoint is
    /// superseded, not refused (no FATAL `checkpoint.witnessed`); a size
    /// past the log's own is still the refusal "the log lost events".
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_witness_ahead_of_the_pusher_supersedes_and_is_no_refusal() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("tempdir");
        let l = ledger(dir.path());
        let old = tokio::task::block_in_place(|| issue(&l, "test")).expect("issue");
        for _ in 0..3 {
            l.append(Draft::new(EventKind::from_name("x.test")))
                .await
                .expect("append");
        }
        let size_now = l.tree_size();
        for (size, superseded) in [(size_now, true), (size_now + 5, false)] {
            let target = target(answering(409, "Conflict", format!("{size}\n")).await);
            let client = reqwest::Client::new();
            let mut known = None;
            let answer = push(&client, &l, &target, &old, &mut known, &CancellationToken::new()).await;
            assert_eq!(answer.superseded, superseded, "{size}: {answer:?}");
            if !superseded {
                assert_eq!(answer.outcome, WitnessOutcome::Refused, "{answer:?}");
                assert!(
                    answer.error.as_deref().is_some_and(|e| e.contains("lost events")),
                    "{answer:?}"
                );
            }
        }
    }

    /// A `latest.note` that cannot be written (a full disk, here a
    /// directory in its place) does not keep a recorded checkpoint from
    /// the witnesses: it is still handed to the pushers, and a cosignature
    /// is still gathered for it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_checkpoint_that_cannot_be_stored_is_still_witnessed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = ledger(dir.path());
        let path = latest_path(dir.path());
        std::fs::create_dir_all(path.join("in-the-way")).expect("a directory in the note's place");
        let latest = Arc::new(Latest {
            path,
            current: Mutex::new(None),
            own: std::sync::atomic::AtomicU64::new(0),
        });
        let (tx, rx) = watch::channel(None);
        let issued = issue_now(&l, "start", &latest, &[tx]).await;
        let issued = issued.expect("issued although latest.note cannot be written");
        assert_eq!(
            rx.borrow().as_ref().map(|i| i.seq),
            Some(issued.seq),
            "handed to the pushers"
        );
        latest.cosigned(issued.size, "\u{2014} w.example AAAA\n").ok();
        let kept = latest.current.lock().expect("lock").clone();
        assert!(
            kept.is_some_and(|(_, note)| note.contains("w.example")),
            "the cosignature is kept in memory"
        );
    }

    /// With checkpoints off, an earlier run's latest checkpoint is removed,
    /// not served for ever as the latest.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checkpoints_off_serve_no_stale_checkpoint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = ledger(dir.path());
        let on = CheckpointsConfig {
            enabled: true,
            every_events: 100,
            every_secs: 3600,
        };
        let issuer = start(Arc::clone(&l), dir.path(), &on, &[])
            .await
            .expect("start")
            .expect("on");
        issuer.shutdown(Duration::from_secs(1)).await;
        assert!(latest_path(dir.path()).exists());
        let off = CheckpointsConfig { enabled: false, ..on };
        assert!(
            start(Arc::clone(&l), dir.path(), &off, &[])
                .await
                .expect("start")
                .is_none()
        );
        assert!(
            !latest_path(dir.path()).exists(),
            "a stale checkpoint is left to be served"
        );
    }
}
