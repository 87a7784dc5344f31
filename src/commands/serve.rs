//! `sealgate serve` (HTTP) and `sealgate stdio` (one session on stdin and
//! stdout): the gateway on the configured servers.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use ledger::{Actor, Ledger, SigningKey};

use crate::cli::Global;
use crate::config::{Config, Paths};
use crate::gateway::findable::FindKey;
use crate::gateway::local::HostLock;
use crate::gateway::{AuthMethod, Authenticator, Gateway, Principal};
use crate::governance::Governance;

/// Opens the ledger for writing, creating it (with a generated key) on
/// first use so the gateway runs on embedded defaults.
fn open_or_create(paths: &Paths) -> Result<Ledger> {
    let dir = paths.ledger_dir();
    // A damaged ledger is an error here, never a reason to create one.
    if Ledger::exists(&dir).with_context(|| format!("cannot open ledger {}", dir.display()))? {
        return Ledger::open_with(&dir, &paths.key_dir(), &paths.store)
            .with_context(|| format!("cannot open ledger {}", dir.display()));
    }
    std::fs::create_dir_all(&paths.data_dir)
        .with_context(|| format!("cannot create data dir {}", paths.data_dir.display()))?;
    let actor = Actor {
        principal: Some("sealgate:serve".into()),
        ..Actor::default()
    };
    let ledger = Ledger::create_with(&dir, &paths.key_dir(), SigningKey::generate(), actor, &paths.store)
        .with_context(|| format!("cannot initialize {}", paths.data_dir.display()))?;
    tracing::warn!(
        data_dir = %paths.data_dir.display(),
        key_dir = %paths.key_dir.display(),
        "created a new ledger with a generated signing key"
    );
    Ok(ledger)
}

/// The gateway on its ledger, with the governance state loaded (from the
/// newest snapshot and the log after it), and the ledger it writes (for
/// readers beside it). Blocking.
fn gateway_on(paths: &Paths, config: &Config) -> Result<(Gateway, Arc<Ledger>)> {
    if config.servers.is_empty() {
        bail!("no servers configured: add a [servers.NAME] table to the config (see docs/CONFIG.md)");
    }
    let ledger = Arc::new(open_or_create(paths)?);
    let gov = Arc::new(
        Governance::open(
            ledger.clone(),
            ledger::Snapshots::new(paths.data_dir.join("snapshots")),
            config.governance.snapshot_every,
        )
        .context("cannot load the governance state")?,
    );
    // A ledger made before find keys existed gets one now.
    let find_key = FindKey::open_or_create(&paths.key_dir, &ledger.ledger_id())
        .context("cannot open or create the ledger's find key")?;
    Ok((
        Gateway::new(ledger.clone(), config, gov, &paths.data_dir, find_key)?,
        ledger,
    ))
}

/// Makes what the config declares into events (see `governance::bootstrap`).
async fn bootstrap(gateway: &Gateway, config: &Config, global: &Global) -> Result<()> {
    let origin = global.config.as_ref().map_or_else(
        || crate::config::DEFAULT_CONFIG.to_string(),
        |p| p.display().to_string(),
    );
    crate::gateway::bootstrap(gateway.governance(), gateway, config, &origin)
        .await
        .context("cannot apply the config's governance declarations")?;
    gateway.recover_quotas().await
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    // rustls needs one process-wide crypto provider for https upstreams
    // and JWKS URLs; ring builds without a C toolchain beyond cc.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The host lock of `paths.data_dir`, or a clear error naming who may hold
/// it.
/// Serves `DATA_DIR/gateway.sock`, where `sealgate stdio` processes attach
/// (docs/GATEWAY.md, Desktop clients).
fn listen_local(gateway: &Gateway, paths: &Paths, config: &Config) -> Result<crate::gateway::local::Listening> {
    crate::gateway::local::listen(
        gateway,
        &paths.data_dir,
        &config.gateway.stdio_principal,
        crate::gateway::stdio_reserved(config),
        config.gateway.max_body_bytes,
    )
}

fn host_lock(paths: &Paths) -> Result<HostLock> {
    HostLock::try_take(&paths.data_dir)?.with_context(|| {
        format!(
            "another sealgate writes the ledger in {} (a `sealgate serve`, or a `sealgate stdio` serving desktop clients): stop it first, or attach to it with `sealgate stdio`",
            paths.data_dir.display()
        )
    })
}

/// What runs beside the gateway on the log it writes, in `serve` and in a
/// `stdio` host alike (docs/ARCHITECTURE.md): the query follower, the
/// exporters, the metrics, the alert detector and the webhooks, each on a
/// thread of its own, and the checkpoint issuer on the runtime.
struct Beside {
    /// Stops the readers (follower, exporters, metrics).
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<(&'static str, std::thread::JoinHandle<()>)>,
    /// Stops the threads that append (the alert detector, and the webhooks,
    /// which record each delivery): before the shutdown checkpoint.
    stop_writers: Arc<std::sync::atomic::AtomicBool>,
    writers: Vec<(&'static str, std::thread::JoinHandle<()>)>,
    issuer: Option<crate::checkpoints::Issuer>,
}

impl Beside {
    /// Starts the threads. A config that cannot work stops the start; a
    /// collector or a webhook that is down does not.
    fn start(paths: &Paths, config: &Config, ledger: &Arc<Ledger>) -> Result<Beside> {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_writers = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut beside = Beside {
            stop: stop.clone(),
            threads: Vec::new(),
            stop_writers: stop_writers.clone(),
            writers: Vec::new(),
            issuer: None,
        };
        // On an error below, the threads already started stop with it.
        let started = (|| -> Result<()> {
            // The query index (docs/QUERY.md).
            if let Some(t) = super::sql::spawn_follower(paths, ledger.clone(), stop.clone()) {
                beside.threads.push(("query follower", t));
            }
            // Each exporter (docs/EXPORT.md).
            for t in exporters::spawn(&paths.data_dir, ledger.clone(), &config.exporters, stop.clone())
                .context("cannot start the exporters")?
            {
                beside.threads.push(("exporter", t));
            }
            // The metrics: derived from the log and the request path's
            // histograms (docs/EXPORT.md, Metrics).
            if let Some(t) = crate::metrics::spawn(
                config.metrics.as_ref(),
                ledger.clone(),
                &paths.data_dir,
                &config.exporters,
                stop.clone(),
            )
            .context("cannot start the metrics exporter")?
            {
                beside.threads.push(("metrics", t));
            }
            // The alert detector appends through this process's writer
            // (docs/ALERTS.md).
            if let Some(t) = crate::alerts::spawn(ledger.clone(), &config.alerts, &config.gates, stop_writers.clone())
                .map_err(anyhow::Error::msg)?
            {
                beside.writers.push(("alerts", t));
            }
            Ok(())
        })();
        match started {
            Ok(()) => Ok(beside),
            Err(e) => {
                beside.join();
                Err(e)
            }
        }
    }

    /// Starts the webhooks, whose default link is the admin API at
    /// `admin_url` (none: no link), and the checkpoint issuer
    /// (docs/FORMAT.md §14). On the runtime.
    async fn start_on_runtime(
        &mut self,
        paths: &Paths,
        config: &Config,
        ledger: &Arc<Ledger>,
        admin_url: Option<&str>,
    ) -> Result<()> {
        if let Some(t) =
            crate::alerts::notify::spawn(ledger.clone(), &config.webhooks, admin_url, self.stop_writers.clone())
                .map_err(anyhow::Error::msg)?
        {
            self.writers.push(("webhooks", t));
        }
        self.issuer =
            crate::checkpoints::start(ledger.clone(), &paths.data_dir, &config.checkpoints, &config.witnesses).await?;
        Ok(())
    }

    /// Once the gateway's last session has ended: stops the threads that
    /// append, then issues the shutdown checkpoint and pushes it to the
    /// witnesses (within a grace period), so that it covers every event
    /// this process wrote but the witnesses' answers to it. On a
    /// multi-threaded runtime.
    async fn finish(&mut self) {
        self.stop_writers.store(true, std::sync::atomic::Ordering::Relaxed);
        let writers = std::mem::take(&mut self.writers);
        tokio::task::block_in_place(|| join_all(writers));
        if let Some(issuer) = self.issuer.take() {
            issuer.shutdown(std::time::Duration::from_secs(5)).await;
        }
    }

    /// Gives the collector sinks until `grace` to send what the log holds
    /// (the sessions' last events and the shutdown checkpoint): a short
    /// lived `stdio` host would otherwise leave its tail to its next start.
    /// A sink that cannot deliver in time resumes from its cursor then (at
    /// least once); file sinks close their file when they stop.
    fn drain(&self, paths: &Paths, config: &Config, ledger: &Ledger, grace: std::time::Duration) {
        let deadline = std::time::Instant::now() + grace;
        let behind = |sink: &exporters::SinkConfig| {
            sink.protocol != exporters::Protocol::File
                && exporters::lag(&paths.data_dir, ledger, &sink.name).map_or(true, |(_, events, _)| events > 0)
        };
        while config.exporters.iter().any(behind) {
            if std::time::Instant::now() >= deadline {
                let names: Vec<&str> = config
                    .exporters
                    .iter()
                    .filter(|s| behind(s))
                    .map(|s| s.name.as_str())
                    .collect();
                tracing::warn!(sinks = ?names, "exporters still behind the log at shutdown: they resume from their cursors at the next start");
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// After the runtime: lets the collector sinks send the log's tail
    /// ([`Beside::drain`]), then stops every thread and waits for it.
    fn stop(self, paths: &Paths, config: &Config, ledger: &Ledger) {
        self.drain(paths, config, ledger, EXPORT_GRACE);
        self.join();
    }

    /// Stops the threads and waits for them.
    fn join(self) {
        self.stop_writers.store(true, std::sync::atomic::Ordering::Relaxed);
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        join_all(self.writers);
        join_all(self.threads);
    }
}

fn join_all(threads: Vec<(&'static str, std::thread::JoinHandle<()>)>) {
    for (what, t) in threads {
        if t.join().is_err() {
            tracing::warn!("the {what} thread panicked");
        }
    }
}

pub fn serve(global: &Global, paths: &Paths, config: &Config) -> Result<ExitCode> {
    raise_open_files();
    let runtime = runtime()?;
    // Who may call comes first: an issuer that cannot be reached (or a
    // tokens file that does not load) stops the start before the ledger is
    // opened or anything in the config is applied.
    let anonymous = config.gateway.anonymous_principal.clone();
    let auth = Arc::new(runtime.block_on(Authenticator::load(&config.auth, anonymous.clone()))?);
    let _host = host_lock(paths)?;
    let (gateway, ledger) = gateway_on(paths, config)?;
    let mut beside = Beside::start(paths, config, &ledger)?;
    let served = runtime.block_on(async {
        if let Some(name) = &anonymous {
            tracing::warn!(principal = %name, "unauthenticated HTTP requests are accepted (gateway.anonymous_principal)");
        }
        // The tokens file is re-read on change and on SIGHUP, and issuers'
        // keys fetched again, from here on.
        auth.watch();
        bootstrap(&gateway, config, global).await?;
        let listener = tokio::net::TcpListener::bind(config.gateway.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.gateway.listen))?;
        let addr = listener.local_addr()?;
        let admin_url = config
            .gateway
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        // Checkpoints are issued (and pushed to the witnesses) beside the
        // gateway from here to after its last request (docs/FORMAT.md §14).
        beside.start_on_runtime(paths, config, &ledger, Some(&admin_url)).await?;
        // `sealgate stdio` processes attach here (docs/GATEWAY.md, Desktop
        // clients).
        let mut local = listen_local(&gateway, paths, config)?;
        let app = crate::api::app(&gateway, auth, config, addr);
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "listening on http://{addr}")?;
            for name in gateway.server_names() {
                writeln!(out, "  /mcp/{name}")?;
            }
            out.flush()?;
        }
        let shutdown = tokio_util::sync::CancellationToken::new();
        let stop = shutdown.clone();
        let closing = gateway.clone();
        let closer = tokio::spawn(async move {
            let signal = shutdown_signal().await;
            tracing::info!("{signal}: shutting down");
            stop.cancel();
            // Open sessions end now, each recorded, while the listener
            // lets their connections finish.
            let why = format!("the gateway shut down ({signal})");
            closing.close_sessions(events::CloseReason::GatewayShutdown, &why).await;
            why
        });
        let limits = crate::gateway::listener::ListenerLimits {
            max_connections: config.gateway.max_connections,
            header_read_timeout: std::time::Duration::from_secs(config.gateway.header_read_timeout_sec),
        };
        crate::gateway::listener::serve(listener, app, limits, shutdown, std::time::Duration::from_secs(10)).await;
        local.stop_accepting().await;
        // Every session ends recorded before the ledger's writer stops:
        // those closed above, then any opened while connections finished.
        let why = closer
            .await
            .unwrap_or_else(|_| "the gateway shut down".to_string());
        gateway
            .close_sessions(events::CloseReason::GatewayShutdown, &why)
            .await;
        beside.finish().await;
        Ok(ExitCode::SUCCESS)
    });
    drop(runtime);
    beside.stop(paths, config, &ledger);
    served
}

/// How long a stopping gateway waits for its collector sinks to send the
/// log's tail.
const EXPORT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// SIGINT or SIGTERM, whichever comes first: both shut down gracefully.
async fn shutdown_signal() -> &'static str {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot watch SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term => "SIGTERM",
    }
}

/// As many open files as the hard limit allows: every connection and every
/// upstream child's pipes are file descriptors.
fn raise_open_files() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!("cannot raise the open-files limit: {e}");
        }
    }
}

/// `sealgate stdio`: one MCP session on stdin and stdout. If a gateway
/// writes this data dir already (`serve`, or another `stdio`), the session
/// runs there, through its local socket; else this process becomes that
/// gateway: it takes the host lock, serves its own session and the socket,
/// and exits once its own session and every attached one have ended.
pub fn stdio(
    global: &Global,
    paths: &Paths,
    config: &Config,
    server: &str,
    principal: Option<String>,
) -> Result<ExitCode> {
    let name = principal.unwrap_or_else(|| config.gateway.stdio_principal.clone());
    let reserved = crate::gateway::stdio_reserved(config);
    crate::gateway::check_stdio_principal(&name, &reserved).map_err(anyhow::Error::msg)?;
    let rt = runtime()?;
    // Attach to the host, or become it. Two processes starting at once:
    // one takes the lock, the other finds its socket a moment later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let host = loop {
        let attached = rt.block_on(crate::gateway::local::attach(&paths.data_dir, server, Some(&name)))?;
        if let crate::gateway::local::Attached::Done = attached {
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(lock) = HostLock::try_take(&paths.data_dir)? {
            break lock;
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "another sealgate holds {} but does not answer on {}",
                paths.data_dir.display(),
                crate::gateway::local::socket_path(&paths.data_dir).display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let (gateway, ledger) = gateway_on(paths, config)?;
    // The host runs what `serve` runs beside the gateway: its events are
    // indexed, exported, watched for alerts and checkpointed the same.
    let mut beside = Beside::start(paths, config, &ledger)?;
    let principal = Principal {
        name,
        teams: Vec::new(),
        method: AuthMethod::Stdio,
        roles: Vec::new(),
    };
    let served = rt.block_on(async {
        bootstrap(&gateway, config, global).await?;
        // No admin API here: the webhooks link only to one the config
        // names (`gateway.public_url`, or the hook's own `admin_url`).
        beside
            .start_on_runtime(paths, config, &ledger, config.gateway.public_url.as_deref())
            .await?;
        let mut local = listen_local(&gateway, paths, config)?;
        let own = gateway
            .serve_stdio(server, principal, config.gateway.max_body_bytes)
            .await;
        // Sessions attached to this process end before it does: it accepts
        // until none is left, then stops, then waits for any that came in
        // the meantime.
        local.drained().await;
        local.stop_accepting().await;
        local.drained().await;
        beside.finish().await;
        own
    });
    drop(rt);
    beside.stop(paths, config, &ledger);
    served?;
    // The lock goes last, once the ledger is closed: a process that takes
    // it must be able to open the ledger.
    drop(ledger);
    drop(gateway);
    drop(host);
    Ok(ExitCode::SUCCESS)
}

pub fn token_create(
    principal: &str,
    teams: &[String],
    roles: &[String],
    file: Option<&std::path::Path>,
) -> Result<ExitCode> {
    let (token, entry) = crate::gateway::new_token(principal, teams, roles);
    if let Some(path) = file {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open tokens file {}", path.display()))?;
        writeln!(f, "\n{entry}").with_context(|| format!("cannot write tokens file {}", path.display()))?;
        eprintln!(
            "added a token for {principal:?} to {} (only its hash is stored)",
            path.display()
        );
    } else {
        eprintln!("add this entry to the tokens file (only the hash is stored):\n{entry}");
    }
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}
