//! stdio upstreams: a child process per session.
//!
//! - **Clean environment.** The child gets [`INHERITED_ENV`] from the
//!   gateway's environment and the server's configured `environment`,
//!   nothing else: the gateway's own secrets (`SEALGATE_TOKEN`, cloud
//!   credentials) never reach an upstream unless the config hands them on.
//! - **Dies with the gateway.** Each child runs in its own process group
//!   (killed whole when its session ends, so its own children go too) with
//!   `PR_SET_PDEATHSIG = SIGKILL`, so a gateway killed with `kill -9` takes
//!   its children with it. The death signal fires when the *thread* that
//!   forked exits, so children are forked on one long-lived thread,
//!   `sealgate-spawn`, that lives as long as the process.
//! - **Bounded.** [`ProcessLimit`] caps how many children run at once.
//! - **Without network, if asked** (`network = "none"`). Between fork and
//!   exec the child unshares a user namespace and a network namespace
//!   (`CLONE_NEWUSER | CLONE_NEWNET`, which an unprivileged process may
//!   do where the kernel allows user namespaces) and maps its own uid and
//!   gid in it: it keeps its files and sees only a loopback device of its
//!   own, down. If the kernel refuses, the child does not start and the
//!   session fails with the error; it never runs with the network instead.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use super::{Inbound, LinkLimits};
pub use crate::config::INHERITED_ENV;
use crate::gateway::lines::{Line, next_line};
use crate::gateway::mcp::Message;

/// How many stdio children may run at once.
#[derive(Clone)]
pub struct ProcessLimit {
    semaphore: Arc<Semaphore>,
    max: usize,
}

impl ProcessLimit {
    pub fn new(max: usize) -> ProcessLimit {
        ProcessLimit {
            semaphore: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// Children running now.
    pub fn running(&self) -> usize {
        self.max - self.semaphore.available_permits()
    }
}

pub(super) struct Spec<'a> {
    pub server: &'a str,
    pub address: &'a str,
    pub command: &'a str,
    pub args: &'a [String],
    pub environment: &'a BTreeMap<String, String>,
    pub cwd: Option<&'a Path>,
    /// The caller's credential in `environment`: masked in the child's
    /// stderr as the gateway logs it.
    pub mask: Option<String>,
    /// Start the child in a network namespace of its own.
    pub no_network: bool,
}

/// Sends to a child's stdin; owns the child (dropping the last handle kills
/// its process group).
pub struct StdioSender {
    tx: mpsc::Sender<Vec<u8>>,
    child: Mutex<Option<Running>>,
}

struct Running {
    pgid: rustix::process::Pid,
    _child: tokio::process::Child,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Running {
    fn drop(&mut self) {
        // The whole group: a server started through `npx` or a shell has
        // children of its own.
        let _ = rustix::process::kill_process_group(self.pgid, rustix::process::Signal::KILL);
    }
}

impl StdioSender {
    pub async fn send(&self, message: &Message) -> Result<(), String> {
        let mut line = message.to_bytes();
        line.push(b'\n');
        self.tx
            .send(line)
            .await
            .map_err(|_| "upstream closed the session (crashed or exited)".to_string())
    }

    pub fn close(&self) {
        self.child.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

type SpawnRequest = (
    tokio::process::Command,
    oneshot::Sender<std::io::Result<tokio::process::Child>>,
);

/// The thread children are forked on (see the module documentation).
fn spawner() -> &'static std::sync::mpsc::Sender<(SpawnRequest, tokio::runtime::Handle)> {
    static SPAWNER: OnceLock<std::sync::mpsc::Sender<(SpawnRequest, tokio::runtime::Handle)>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<(SpawnRequest, tokio::runtime::Handle)>();
        let spawned = std::thread::Builder::new()
            .name("sealgate-spawn".into())
            .spawn(move || {
                for ((mut cmd, reply), runtime) in rx {
                    let _entered = runtime.enter();
                    let _ = reply.send(cmd.spawn());
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the spawner thread: {e}");
        }
        tx
    })
}

/// The uid and gid maps a child without network writes for itself: its
/// own ids, mapped to themselves. Made before the fork (the child must not
/// allocate).
struct IdMaps {
    uid: Vec<u8>,
    gid: Vec<u8>,
}

impl IdMaps {
    fn current() -> IdMaps {
        let uid = rustix::process::getuid().as_raw();
        let gid = rustix::process::getgid().as_raw();
        IdMaps {
            uid: format!("{uid} {uid} 1\n").into_bytes(),
            gid: format!("{gid} {gid} 1\n").into_bytes(),
        }
    }
}

/// Writes `bytes` to a `/proc/self` file, in the child: two system calls,
/// no allocation.
fn write_proc(path: &std::ffi::CStr, bytes: &[u8]) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
    let written = rustix::io::write(&fd, bytes)?;
    if written != bytes.len() {
        return Err(std::io::Error::from_raw_os_error(rustix::io::Errno::IO.raw_os_error()));
    }
    Ok(())
}

#[allow(
    unsafe_code,
    reason = "pre_exec: async-signal-safe system calls between fork and exec (prctl, getppid, unshare, open, write)"
)]
fn prepare_child(cmd: &mut tokio::process::Command, no_network: bool) {
    let parent = rustix::process::getpid();
    let maps = no_network.then(IdMaps::current);
    // SAFETY: the closure runs in the child between fork and exec; it
    // makes system calls only (prctl, getppid, and for `network = "none"`
    // unshare, open, write, close) and allocates nothing: the maps' bytes
    // were made before the fork. The child has one thread, so unsharing
    // its file table (which `unshare_unsafe` warns of) cannot happen: only
    // the user and network namespaces are unshared.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            // The parent may have died before the signal was set.
            if rustix::process::getppid() != Some(parent) {
                return Err(std::io::Error::other("the gateway exited"));
            }
            if let Some(maps) = &maps {
                use rustix::thread::UnshareFlags;
                rustix::thread::unshare_unsafe(UnshareFlags::NEWUSER | UnshareFlags::NEWNET)?;
                write_proc(c"/proc/self/setgroups", b"deny")?;
                write_proc(c"/proc/self/uid_map", &maps.uid)?;
                write_proc(c"/proc/self/gid_map", &maps.gid)?;
            }
            Ok(())
        });
    }
}

pub(super) async fn start(
    spec: &Spec<'_>,
    processes: &super::ProcessLimit,
    limits: LinkLimits,
    inbound: mpsc::Sender<Inbound>,
) -> Result<Arc<StdioSender>, String> {
    let server = spec.server;
    let permit = processes.semaphore.clone().try_acquire_owned().map_err(|_| {
        format!(
            "upstream {server}: the limit of {} upstream processes is reached (gateway.max_upstream_processes)",
            processes.max
        )
    })?;
    let mut cmd = tokio::process::Command::new(spec.command);
    cmd.args(spec.args)
        .env_clear()
        .envs(
            INHERITED_ENV
                .iter()
                .filter_map(|k| std::env::var_os(k).map(|v| (*k, v))),
        )
        .envs(spec.environment)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = spec.cwd {
        cmd.current_dir(dir);
    }
    prepare_child(&mut cmd, spec.no_network);
    let (reply, spawned) = oneshot::channel();
    spawner()
        .send(((cmd, reply), tokio::runtime::Handle::current()))
        .map_err(|_| format!("cannot start upstream {server}: the spawner thread is gone"))?;
    let child = spawned
        .await
        .map_err(|_| format!("cannot start upstream {server}: the spawner thread is gone"))?
        .map_err(|e| {
            if spec.no_network {
                format!(
                    "cannot start upstream {server} ({}) with network = \"none\" (a new user and network namespace): {e}",
                    spec.address
                )
            } else {
                format!("cannot start upstream {server} ({}): {e}", spec.address)
            }
        })?;
    let mut child = child;
    let pid = child.id().and_then(|id| rustix::process::Pid::from_raw(id as i32));
    let Some(pgid) = pid else {
        return Err(format!("upstream {server} exited at once"));
    };
    let (Some(mut stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(format!("upstream {server}: no pipes to the child"));
    };
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(256);
    tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            if stdin.write_all(&line).await.is_err() || stdin.flush().await.is_err() {
                break;
            }
        }
    });
    let name = server.to_string();
    tokio::spawn(async move {
        let mut reader = tokio::io::BufReader::new(stdout);
        loop {
            let item = match next_line(&mut reader, limits.max_message_bytes).await {
                Ok(Some(Line::Text(bytes))) => match Message::parse(&bytes) {
                    Ok(message) => Inbound::Message { message, related: None },
                    Err(refusal) => Inbound::Refused {
                        refusal,
                        bytes: bytes.len(),
                    },
                },
                Ok(Some(Line::TooLong(n))) => {
                    tracing::warn!(server = %name, "upstream sent a message of {n} bytes, over the limit: session ended");
                    break;
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(server = %name, "reading the upstream's stdout: {e}");
                    break;
                }
            };
            if inbound.send(item).await.is_err() {
                break;
            }
        }
    });
    log_stderr(server, stderr, spec.mask.clone());
    Ok(Arc::new(StdioSender {
        tx,
        child: Mutex::new(Some(Running {
            pgid,
            _child: child,
            _permit: permit,
        })),
    }))
}

/// The child's stderr is its log; keep it in ours, without the secrets
/// results may not carry either, nor the caller's credential it was given
/// (`mask`).
fn log_stderr(server: &str, stderr: tokio::process::ChildStderr, mask: Option<String>) {
    let name = server.to_string();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let mut in_key = false;
        while let Ok(Some(line)) = lines.next_line().await {
            // A private key printed over several lines is no finding line
            // by line: its lines are withheld from its header to its end.
            let line = if in_key {
                in_key = !line.contains("-----END ");
                "[REDACTED:private_key_block]".to_string()
            } else {
                in_key = line.contains("-----BEGIN ") && line.contains("PRIVATE KEY") && !line.contains("-----END ");
                let line = match &mask {
                    Some(secret) => line.replace(secret.as_str(), "[REDACTED:upstream_credential]"),
                    None => line,
                };
                crate::gateway::safety::redact_text_for_log(&line)
            };
            tracing::info!(server = %name, "upstream stderr: {line}");
        }
    });
}
