//! The gateway's local socket: how several `sealgate stdio` processes (a
//! desktop client starts one per server) and a running `sealgate serve`
//! share one ledger, which only one process may write.
//!
//! The process that writes the ledger (`serve`, or the first `stdio`) holds
//! the host lock (`DATA_DIR/gateway.lock`, `flock`) and listens on
//! `DATA_DIR/gateway.sock` (mode 0600; a connecting process must run as the
//! same user). Every other `stdio` process attaches: it sends one header
//! line naming the server and the principal, reads one answer line, and
//! from then on copies its stdin to the socket and the socket to its stdout.
//! The host runs the session exactly as it runs its own stdio session.
//!
//! ```text
//! -> {"server":"everything","principal":"alice"}     (principal optional)
//! <- {"ok":true}            or    {"error":"no server named \"x\" ..."}
//! <> MCP messages, one per line, as on stdio
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use super::Gateway;
use crate::governance::{AuthMethod, Principal};

/// Longest header line accepted.
const MAX_HEADER_BYTES: usize = 4096;
/// How long a connection may take to send its header.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("gateway.sock")
}

fn lock_path(data_dir: &Path) -> PathBuf {
    data_dir.join("gateway.lock")
}

/// Held by the one process that writes the ledger and serves the socket;
/// released when the process ends, however it ends.
pub struct HostLock {
    _file: std::fs::File,
}

impl HostLock {
    /// Takes the lock, or `None` when another process holds it.
    ///
    /// The lock file is the owner's only (0600, never through a symlink),
    /// and one owned by another user is refused: anyone who could open it
    /// could hold the lock and keep every gateway from starting.
    pub fn try_take(data_dir: &Path) -> Result<Option<HostLock>> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
        let path = lock_path(data_dir);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
            .with_context(|| format!("cannot open {} (a symlink is refused)", path.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("cannot read {}", path.display()))?;
        let me = rustix::process::getuid().as_raw();
        if meta.uid() != me || meta.mode() & 0o077 != 0 {
            bail!(
                "{} is owned by uid {} with mode {:o}: it must be this user's (uid {me}) and private (0600)",
                path.display(),
                meta.uid(),
                meta.mode() & 0o7777
            );
        }
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(HostLock { _file: file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(std::io::Error::from(e)).with_context(|| format!("cannot lock {}", path.display())),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    principal: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ok: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The socket a host serves, and the sessions attached to it now.
pub struct Listening {
    path: PathBuf,
    attached: Arc<AtomicUsize>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Listening {
    /// Sessions attached now.
    pub fn attached(&self) -> usize {
        self.attached.load(Ordering::SeqCst)
    }

    /// Stops accepting and removes the socket; attached sessions go on.
    pub async fn stop_accepting(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let _ = std::fs::remove_file(&self.path);
    }

    /// Waits until no session is attached (polling: attachments are few).
    pub async fn drained(&self) {
        while self.attached() > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Serves `DATA_DIR/gateway.sock` for `gateway`. The caller holds the
/// [`HostLock`], so a socket file already there is a dead host's: it is
/// replaced. The socket is created under a temporary name, made owner-only,
/// then renamed into place, so it is never reachable with wider rights.
pub fn listen(
    gateway: &Gateway,
    data_dir: &Path,
    default_principal: &str,
    reserved: Vec<String>,
    max_message_bytes: usize,
) -> Result<Listening> {
    let path = socket_path(data_dir);
    let staging = data_dir.join(format!(".gateway.sock.{}", std::process::id()));
    let _ = std::fs::remove_file(&staging);
    let listener = UnixListener::bind(&staging).with_context(|| {
        format!(
            "cannot listen on {} (a socket path has at most 107 bytes)",
            staging.display()
        )
    })?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", staging.display()))?;
    std::fs::rename(&staging, &path).with_context(|| format!("cannot move the socket to {}", path.display()))?;
    let attached = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let task = tokio::spawn(accept(
        listener,
        gateway.clone(),
        default_principal.to_string(),
        Arc::new(reserved),
        max_message_bytes,
        attached.clone(),
        stop.clone(),
    ));
    Ok(Listening {
        path,
        attached,
        stop,
        task: Some(task),
    })
}

async fn accept(
    listener: UnixListener,
    gateway: Gateway,
    default_principal: String,
    reserved: Arc<Vec<String>>,
    max_message_bytes: usize,
    attached: Arc<AtomicUsize>,
    stop: CancellationToken,
) {
    let me = rustix::process::getuid().as_raw();
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("local socket: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Mode 0600 already keeps other users out; the peer's uid is
        // checked too, in case the file's mode was changed.
        match stream.peer_cred() {
            Ok(cred) if cred.uid() == me => {}
            Ok(cred) => {
                tracing::warn!(uid = cred.uid(), "local socket: refused a connection from another user");
                continue;
            }
            Err(e) => {
                tracing::warn!("local socket: cannot read the peer's credentials: {e}");
                continue;
            }
        }
        let gateway = gateway.clone();
        let default_principal = default_principal.clone();
        let reserved = reserved.clone();
        let attached = attached.clone();
        attached.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            if let Err(e) = session(stream, &gateway, &default_principal, &reserved, max_message_bytes).await {
                tracing::info!("local socket: {e:#}");
            }
            attached.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

async fn refuse(write: &mut tokio::net::unix::OwnedWriteHalf, why: String) -> Result<()> {
    let answer = Answer {
        ok: None,
        error: Some(why.clone()),
    };
    let mut text = serde_json::to_vec(&answer)?;
    text.push(b'\n');
    let _ = write.write_all(&text).await;
    bail!("refused an attachment: {why}")
}

async fn session(
    stream: UnixStream,
    gateway: &Gateway,
    default_principal: &str,
    reserved: &[String],
    max_message_bytes: usize,
) -> Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = Vec::new();
    let header = tokio::time::timeout(HEADER_TIMEOUT, async {
        (&mut read)
            .take(MAX_HEADER_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .await
    })
    .await;
    match header {
        Err(_) => return refuse(&mut write, format!("no header within {HEADER_TIMEOUT:?}")).await,
        Ok(Err(e)) => bail!("reading the header: {e}"),
        Ok(Ok(_)) if line.last() != Some(&b'\n') => {
            return refuse(
                &mut write,
                format!("the header is not one line of at most {MAX_HEADER_BYTES} bytes"),
            )
            .await;
        }
        Ok(Ok(_)) => {}
    }
    let header: Header = match serde_json::from_slice(&line) {
        Ok(h) => h,
        Err(e) => {
            return refuse(
                &mut write,
                format!("the header is not {{\"server\", \"principal\"}} JSON: {e}"),
            )
            .await;
        }
    };
    let Some(entry) = gateway.entry(&header.server) else {
        let why = format!("no server named {:?} in the gateway's config", header.server);
        return refuse(&mut write, why).await;
    };
    let principal = Principal {
        name: header.principal.unwrap_or_else(|| default_principal.to_string()),
        teams: Vec::new(),
        method: AuthMethod::Stdio,
        roles: Vec::new(),
    };
    if let Err(why) = super::check_stdio_principal(&principal.name, reserved) {
        return refuse(&mut write, why).await;
    }
    let mut ok = serde_json::to_vec(&Answer {
        ok: Some(true),
        error: None,
    })?;
    ok.push(b'\n');
    write.write_all(&ok).await?;
    super::stdio::serve_lines(gateway.core(), entry, principal, max_message_bytes, read, write).await
}

/// What [`attach`] found.
pub enum Attached {
    /// The session ran through the host and has ended.
    Done,
    /// No host answers on the socket.
    NoHost,
}

/// Attaches this process's stdin and stdout to the host's session for
/// `server`, if a host answers on the socket.
pub async fn attach(data_dir: &Path, server: &str, principal: Option<&str>) -> Result<Attached> {
    let path = socket_path(data_dir);
    let stream = match UnixStream::connect(&path).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(Attached::NoHost);
        }
        Err(e) => return Err(e).with_context(|| format!("cannot connect to {}", path.display())),
    };
    // The host must be this user: a socket put in a data dir others can
    // write would otherwise hear the session and answer as the gateway.
    let me = rustix::process::getuid().as_raw();
    let host = stream
        .peer_cred()
        .with_context(|| format!("cannot read the credentials of {}'s host", path.display()))?;
    if host.uid() != me {
        bail!(
            "{} is served by uid {}, not this user (uid {me}): refusing to attach",
            path.display(),
            host.uid()
        );
    }
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut header = serde_json::to_vec(&Header {
        server: server.to_string(),
        principal: principal.map(str::to_string),
    })?;
    header.push(b'\n');
    write
        .write_all(&header)
        .await
        .with_context(|| format!("cannot write to {}", path.display()))?;
    let mut line = Vec::new();
    tokio::time::timeout(
        HEADER_TIMEOUT,
        (&mut read).take(MAX_HEADER_BYTES as u64).read_until(b'\n', &mut line),
    )
    .await
    .with_context(|| {
        format!(
            "the gateway on {} did not answer within {HEADER_TIMEOUT:?}",
            path.display()
        )
    })?
    .with_context(|| format!("reading the gateway's answer on {}", path.display()))?;
    let answer: Answer = serde_json::from_slice(&line).with_context(|| {
        format!(
            "the gateway on {} answered {:?}, not an attachment answer",
            path.display(),
            String::from_utf8_lossy(&line)
        )
    })?;
    if let Some(error) = answer.error {
        bail!("the gateway on {} refused the session: {error}", path.display());
    }
    // stdin to the socket; at its end the socket's write side closes and
    // the host ends the session, answering what is still in flight. The
    // socket to stdout until the host closes it: then this process ends,
    // whatever stdin still holds (the host ended the session: its upstream
    // exited, or it shut down).
    let up = async move {
        let mut stdin = tokio::io::stdin();
        let copied = tokio::io::copy(&mut stdin, &mut write).await;
        let _ = write.shutdown().await;
        copied
    };
    let down = async move {
        let mut stdout = tokio::io::stdout();
        let copied = tokio::io::copy(&mut read, &mut stdout).await;
        let _ = stdout.flush().await;
        copied
    };
    tokio::pin!(up, down);
    let relayed = tokio::select! {
        down = &mut down => down,
        up = &mut up => match up {
            Ok(_) => down.await,
            Err(e) => Err(e),
        },
    };
    relayed.with_context(|| format!("relaying through {}", path.display()))?;
    Ok(Attached::Done)
}
