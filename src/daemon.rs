//! The daemon: owns the running config, the parts, reloads and shutdown.
//!
//! The running config is one immutable snapshot behind an `ArcSwap`; a reload
//! validates the new file completely before anything changes, so a broken
//! file never replaces a running config. SIGHUP and `halb reload` take the
//! same path ([`Daemon::reload`]), serialised by a lock.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use control::config::Config;
use tokio::signal::unix::{signal, SignalKind};

use crate::admin::{self, Request, Response};
use crate::parts::dataplane::DataplanePart;
use crate::parts::vrrp::VrrpPart;
use crate::shutdown;
use crate::status::{AdminStatus, MetricsStatus, ReloadReport, Status};
use crate::telemetry;

/// Where the config comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A file, re-read on each reload.
    File(PathBuf),
    /// An embedded config (`halb demo`); reloads re-parse the same text.
    Embedded { name: String, text: String },
}

impl ConfigSource {
    pub fn display(&self) -> String {
        match self {
            ConfigSource::File(p) => p.display().to_string(),
            ConfigSource::Embedded { name, .. } => name.clone(),
        }
    }

    /// Reads and validates the config; the error lines are `file:line:col: message`.
    pub fn load(&self) -> Result<Config, Vec<String>> {
        let result = match self {
            ConfigSource::File(p) => control::config::load(p),
            ConfigSource::Embedded { name, text } => control::config::parse(text, name),
        };
        result.map_err(|errs| errs.errors.iter().map(|e| e.to_string()).collect())
    }
}

/// The config that is running now.
#[derive(Debug)]
pub struct Running {
    pub generation: u64,
    pub config: Arc<Config>,
    pub loaded_at: SystemTime,
}

/// Exit codes of `halb run`, documented in its `--help`.
pub mod exit {
    /// Stopped by SIGTERM/SIGINT after a graceful shutdown.
    pub const OK: u8 = 0;
    /// The config file is invalid; nothing was started.
    pub const CONFIG: u8 = 1;
    /// Command-line usage error (from clap).
    pub const USAGE: u8 = 2;
    /// A part could not start (admin socket, metrics listener, a frontend…).
    pub const STARTUP: u8 = 3;
    /// Shutdown did not finish within `node.shutdown_timeout`; parts were cut.
    pub const SHUTDOWN_TIMEOUT: u8 = 4;
}

pub struct Daemon {
    source: ConfigSource,
    running: ArcSwap<Running>,
    last_reload: Mutex<Option<ReloadReport>>,
    reload_lock: tokio::sync::Mutex<()>,
    started_at: SystemTime,
    admin_socket: PathBuf,
    /// `node.metrics_listen` as started (reloads do not move it).
    metrics_listen: Option<SocketAddr>,
    /// The address actually bound (differs when the config says port 0).
    metrics_bound: Option<SocketAddr>,
    dataplane: DataplanePart,
    vrrp: VrrpPart,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl Daemon {
    fn new(
        source: ConfigSource,
        config: Config,
        metrics_bound: Option<SocketAddr>,
        dataplane: DataplanePart,
        vrrp: VrrpPart,
    ) -> Daemon {
        let now = SystemTime::now();
        let admin_socket = config.node.admin_socket.clone();
        let metrics_listen = config.node.metrics_listen;
        Daemon {
            source,
            running: ArcSwap::from_pointee(Running {
                generation: 1,
                config: Arc::new(config),
                loaded_at: now,
            }),
            last_reload: Mutex::new(None),
            reload_lock: tokio::sync::Mutex::new(()),
            started_at: now,
            admin_socket,
            metrics_listen,
            metrics_bound,
            dataplane,
            vrrp,
        }
    }

    /// Re-reads the config and applies it if valid; keeps the running one if not.
    pub async fn reload(&self, trigger: &str) -> ReloadReport {
        let _serial = self.reload_lock.lock().await;
        let at = SystemTime::now();
        metrics::gauge!("halb_config_last_reload_timestamp_seconds").set(
            at.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64(),
        );
        let old = self.running.load_full();
        let loaded = self.source.load().and_then(|config| {
            VrrpPart::check(&config).map_err(|e| vec![e])?;
            let mut changes = self.node_changes(&old.config, &config);
            let dp = self.dataplane.reload(&config).map_err(|e| vec![e])?;
            changes.extend(dp);
            Ok((config, changes))
        });
        let loaded = match loaded {
            Ok((config, mut changes)) => match self.vrrp.reload(&config).await {
                Ok(v) => {
                    changes.extend(v);
                    Ok((config, changes))
                }
                Err(e) => Err(vec![e]),
            },
            Err(e) => Err(e),
        };
        let report = match loaded {
            Err(errors) => {
                metrics::counter!("halb_config_reload_failures_total").increment(1);
                metrics::gauge!("halb_config_last_reload_success").set(0.0);
                tracing::error!(
                    trigger,
                    errors = errors.len(),
                    generation = old.generation,
                    "config reload rejected; the running config is kept"
                );
                for e in &errors {
                    tracing::error!("{e}");
                }
                ReloadReport {
                    at: rfc3339(at),
                    trigger: trigger.to_string(),
                    ok: false,
                    generation: old.generation,
                    errors,
                    changes: Vec::new(),
                }
            }
            Ok((config, changes)) => {
                let generation = old.generation + 1;
                self.running.store(Arc::new(Running {
                    generation,
                    config: Arc::new(config),
                    loaded_at: at,
                }));
                metrics::counter!("halb_config_reloads_total").increment(1);
                metrics::gauge!("halb_config_last_reload_success").set(1.0);
                metrics::gauge!("halb_config_generation").set(generation as f64);
                tracing::info!(trigger, generation, "config reloaded");
                for c in &changes {
                    tracing::info!("{c}");
                }
                ReloadReport {
                    at: rfc3339(at),
                    trigger: trigger.to_string(),
                    ok: true,
                    generation,
                    errors: Vec::new(),
                    changes,
                }
            }
        };
        if let Ok(mut last) = self.last_reload.lock() {
            *last = Some(report.clone());
        }
        report
    }

    /// Node-level settings that only take effect on restart.
    fn node_changes(&self, old: &Config, new: &Config) -> Vec<String> {
        let mut out = Vec::new();
        if new.node.admin_socket != self.admin_socket {
            out.push(format!(
                "node.admin_socket changed to {}: takes effect on restart, still serving {}",
                new.node.admin_socket.display(),
                self.admin_socket.display()
            ));
        }
        if new.node.metrics_listen != self.metrics_listen {
            out.push("node.metrics_listen changed: takes effect on restart".to_string());
        }
        if new.node.worker_threads != old.node.worker_threads {
            out.push("node.worker_threads changed: takes effect on restart".to_string());
        }
        if new.node.name != old.node.name {
            out.push(format!(
                "node.name changed from {} to {}",
                old.node.name, new.node.name
            ));
        }
        out
    }

    pub async fn status(&self) -> Status {
        let running = self.running.load_full();
        let last_reload = self.last_reload.lock().ok().and_then(|l| l.clone());
        Status {
            node: running.config.node.name.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            config_file: self.source.display(),
            generation: running.generation,
            loaded_at: rfc3339(running.loaded_at),
            started_at: rfc3339(self.started_at),
            uptime_secs: self.started_at.elapsed().unwrap_or_default().as_secs(),
            last_reload,
            admin: AdminStatus {
                socket: self.admin_socket.display().to_string(),
            },
            metrics: self.metrics_bound.map(|l| MetricsStatus {
                listen: l.to_string(),
            }),
            dataplane: self.dataplane.status(),
            vrrp: self.vrrp.status().await,
        }
    }

    pub async fn handle_admin(&self, request: Request) -> Response {
        match request {
            Request::Ping {} => Response::ok(serde_json::json!("pong")),
            Request::Status { text: true } => {
                Response::ok(serde_json::Value::String(self.status().await.render()))
            }
            Request::Status { text: false } => match serde_json::to_value(self.status().await) {
                Ok(v) => Response::ok(v),
                Err(e) => Response::err(format!("cannot encode status: {e}")),
            },
            Request::Reload {} => {
                let report = self.reload("admin").await;
                let value = serde_json::to_value(&report).unwrap_or(serde_json::Value::Null);
                if report.ok {
                    Response::ok(value)
                } else {
                    Response {
                        result: Some(value),
                        ..Response::err_with(
                            format!(
                                "config rejected; generation {} keeps running",
                                report.generation
                            ),
                            report.errors.clone(),
                        )
                    }
                }
            }
            Request::Server {
                action,
                backend,
                server,
            } => match self.dataplane.server_admin(&backend, &server, action) {
                Ok(msg) => Response::ok(serde_json::Value::String(msg)),
                Err(e) => Response::err(e),
            },
            Request::Node { action } => match self.vrrp.node(action).await {
                Some(msg) => Response::ok(serde_json::Value::String(msg)),
                None => Response::err(format!(
                    "node {action:?} needs a VRRP instance or a cluster section; this config has neither"
                )),
            },
        }
    }
}

/// Options of `halb run` that are not in the config.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {}

/// Runs the daemon until SIGTERM/SIGINT; returns the process exit code.
pub async fn run(source: ConfigSource, config: Config, _opts: RunOptions) -> u8 {
    let prometheus = match telemetry::recorder() {
        Ok(h) => h,
        Err(e) => {
            tracing::error!("{e}");
            return exit::STARTUP;
        }
    };
    telemetry::describe();
    metrics::gauge!("halb_config_generation").set(1.0);
    let shutdown_timeout = config.node.shutdown_timeout;

    let admin_listener = match admin::bind(&config.node.admin_socket).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("{e}");
            return exit::STARTUP;
        }
    };
    let metrics_listener = match config.node.metrics_listen {
        None => None,
        Some(addr) => match telemetry::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::error!("metrics listener {addr}: {e}");
                let _ = std::fs::remove_file(&config.node.admin_socket);
                return exit::STARTUP;
            }
        },
    };

    let dataplane = match DataplanePart::start(&config) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("{e}");
            let _ = std::fs::remove_file(&config.node.admin_socket);
            return exit::STARTUP;
        }
    };
    let vrrp = match VrrpPart::start(&config).await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!("{e}");
            let _ = std::fs::remove_file(&config.node.admin_socket);
            return exit::STARTUP;
        }
    };
    let node_name = config.node.name.clone();
    let metrics_bound = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    let daemon = Arc::new(Daemon::new(
        source.clone(),
        config,
        metrics_bound,
        dataplane,
        vrrp,
    ));
    let (trigger, shutdown) = shutdown::channel();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(admin::serve(
        admin_listener,
        daemon.clone(),
        shutdown.clone(),
    ));
    if let Some(listener) = metrics_listener {
        tasks.spawn(telemetry::serve(
            listener,
            prometheus,
            daemon.clone(),
            shutdown.clone(),
        ));
    }

    let (mut hup, mut term, mut int) = match (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(h), Ok(t), Ok(i)) => (h, t, i),
        _ => {
            tracing::error!("cannot install signal handlers");
            return exit::STARTUP;
        }
    };
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tracing::info!(
        node = %node_name,
        config = %source.display(),
        admin_socket = %daemon.admin_socket.display(),
        metrics = ?daemon.metrics_bound,
        "halb running"
    );

    loop {
        tokio::select! {
            _ = hup.recv() => {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
                daemon.reload("sighup").await;
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
            }
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
        }
    }

    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    let deadline = tokio::time::Instant::now() + shutdown_timeout;
    // Parts first (connections drain while the admin socket still answers),
    // then the daemon's own tasks.
    // VRRP masters resign (the peer takes the VIPs) while connections drain.
    tokio::join!(
        daemon.dataplane.shutdown(shutdown_timeout),
        daemon.vrrp.shutdown(deadline)
    );
    trigger.trigger();
    let code = stop_parts(
        &mut tasks,
        deadline.saturating_duration_since(tokio::time::Instant::now()),
    )
    .await;
    let _ = std::fs::remove_file(&daemon.admin_socket);
    tracing::info!(code, "halb stopped");
    code
}

/// Waits for every part to finish, up to `timeout`; aborts the rest.
async fn stop_parts(tasks: &mut tokio::task::JoinSet<()>, timeout: Duration) -> u8 {
    let all = async { while tasks.join_next().await.is_some() {} };
    match tokio::time::timeout(timeout, all).await {
        Ok(()) => exit::OK,
        Err(_) => {
            tracing::warn!(
                ?timeout,
                remaining = tasks.len(),
                "shutdown deadline passed; cutting the remaining parts"
            );
            tasks.abort_all();
            exit::SHUTDOWN_TIMEOUT
        }
    }
}

/// The admin socket when neither the command line nor a config names one.
pub const DEFAULT_ADMIN_SOCKET: &str = "/run/halb/admin.sock";

/// Resolves the admin socket path for client commands: `--socket`, else the
/// config's `node.admin_socket` (`-c`), else `$HALB_ADMIN_SOCKET`, else the
/// default path if a daemon made it, else a running `halb demo`'s socket.
pub fn client_socket(
    explicit: Option<PathBuf>,
    config: Option<PathBuf>,
) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return Ok(p);
    }
    if let Some(c) = config {
        return control::config::load(&c)
            .map(|cfg| cfg.node.admin_socket)
            .map_err(|e| e.to_string());
    }
    if let Ok(p) = std::env::var("HALB_ADMIN_SOCKET") {
        if !p.is_empty() {
            return Ok(PathBuf::from(p));
        }
    }
    let default = PathBuf::from(DEFAULT_ADMIN_SOCKET);
    if default.exists() {
        return Ok(default);
    }
    let demo = crate::demo::admin_socket_path();
    if demo.exists() {
        return Ok(demo);
    }
    Ok(default)
}

/// Shared by the client commands: one request with a timeout.
pub async fn client_request(
    socket: &std::path::Path,
    request: &Request,
) -> Result<Response, String> {
    admin::request(socket, request, Duration::from_secs(30))
        .await
        .map_err(|e| e.to_string())
}
