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
use crate::parts::cluster::{self as cluster_part, ClusterPart};
use crate::parts::dataplane::DataplanePart;
use crate::parts::vrrp::VrrpPart;
use crate::parts::xdp::{self as xdp_part, XdpPart};
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
    telemetry: Telemetry,
    dataplane: DataplanePart,
    vrrp: VrrpPart,
    xdp: XdpPart,
    cluster: ClusterPart,
    stop_tx: tokio::sync::mpsc::UnboundedSender<StopReason>,
}

/// The metrics listener as bound.
struct Telemetry {
    /// The address actually bound (differs when the config says port 0).
    metrics_bound: Option<SocketAddr>,
    /// A duplicate of the listening socket, for `halb run --upgrade`.
    metrics_fd: Option<std::os::fd::OwnedFd>,
}

/// The started parts, handed to [`Daemon::new`].
struct Parts {
    dataplane: DataplanePart,
    vrrp: VrrpPart,
    xdp: XdpPart,
    cluster: ClusterPart,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl Daemon {
    fn new(
        source: ConfigSource,
        config: Config,
        telemetry: Telemetry,
        parts: Parts,
        stop_tx: tokio::sync::mpsc::UnboundedSender<StopReason>,
    ) -> Daemon {
        let Parts {
            dataplane,
            vrrp,
            xdp,
            cluster,
        } = parts;
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
            telemetry,
            dataplane,
            vrrp,
            xdp,
            cluster,
            stop_tx,
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
            self.cluster.check(&config).map_err(|e| vec![e])?;
            let mut changes = self.node_changes(&old.config, &config);
            changes.extend(self.cluster.reload(&config));
            // Without quorum (policy stop) no frontend takes new
            // connections: neither the kernel's nor user space's.
            let gated = cluster_part::gate_frontends(config.clone(), self.cluster.accepting());
            let (xdp_changes, fallback) = self.xdp.reload(&gated).map_err(|e| vec![e])?;
            changes.extend(xdp_changes);
            let userspace = xdp_part::userspace_config(&gated, &fallback);
            let dp = self.dataplane.reload(&userspace).map_err(|e| vec![e])?;
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
        if new.node.worker_scaling != old.node.worker_scaling {
            out.push("node.worker_scaling changed: takes effect on restart".to_string());
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
            metrics: self.telemetry.metrics_bound.map(|l| MetricsStatus {
                listen: l.to_string(),
            }),
            dataplane: self.dataplane.status(),
            vrrp: self.vrrp.status().await,
            xdp: self.xdp.status(&running.config),
            cluster: self.cluster.status(&running.config).await,
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
            // Answered by the admin server itself, which owns the connection.
            Request::Upgrade {} => Response::err("upgrade needs its own admin connection"),
            Request::Node { action } => match self.cluster.node(action) {
                Some(Ok(msg)) => Response::ok(serde_json::Value::String(msg)),
                Some(Err(e)) => Response::err(e),
                None => self.vrrp_node(action).await,
            },
        }
    }

    async fn vrrp_node(&self, action: admin::NodeAction) -> Response {
        match self.vrrp.node(action).await {
            Some(msg) => Response::ok(serde_json::Value::String(msg)),
            None => Response::err(format!(
                "node {action:?} needs a VRRP instance or a cluster section; this config has neither"
            )),
        }
    }
}

/// Options of `halb run` that are not in the config.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Take over the listening sockets of the halb already running with
    /// this config's admin socket (`halb run --upgrade`).
    pub upgrade: bool,
}

/// Why the daemon stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// SIGTERM or SIGINT: a planned stop (VRRP masters resign).
    Signal,
    /// A new process took over (`halb run --upgrade`): drain and exit, but
    /// leave the admin socket path and the node's addresses to the new one.
    Upgraded,
}

/// What the process being replaced hands over (nothing without
/// `--upgrade`).
#[derive(Default)]
struct Inherited {
    listeners: Vec<dataplane::ListenerFd>,
    metrics: Option<std::net::TcpListener>,
    /// VRRP instances the old process is master of.
    vrrp_masters: std::collections::BTreeSet<String>,
    /// Its XDP attachments.
    xdp_links: Vec<ebpf::HandedLink>,
}

/// Asks the running daemon at `socket` for its listening sockets; also
/// returns the channel that tells it we are ready (it then drains and
/// exits).
async fn take_over(
    socket: &std::path::Path,
) -> Result<(std::os::unix::net::UnixStream, Inherited), String> {
    let socket = socket.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut stream = std::os::unix::net::UnixStream::connect(&socket).map_err(|e| {
            format!(
                "--upgrade: cannot reach the running halb at {}: {e}",
                socket.display()
            )
        })?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        stream
            .write_all(b"{\"cmd\":\"upgrade\"}\n")
            .map_err(|e| format!("--upgrade: {e}"))?;
        let (meta, fds) =
            crate::upgrade::receive(&stream).map_err(|e| format!("--upgrade: {e}"))?;
        let mut fds = fds.into_iter();
        let mut listeners = Vec::new();
        for l in meta.listeners {
            let transport = match l.transport.as_str() {
                "udp" => control::config::Transport::Udp,
                _ => control::config::Transport::Tcp,
            };
            let fd = fds.next().ok_or("--upgrade: a socket is missing")?;
            listeners.push(dataplane::ListenerFd {
                frontend: l.frontend,
                bind: l.bind,
                transport,
                fd,
            });
        }
        let metrics = match meta.metrics {
            Some(_) => fds.next().map(std::net::TcpListener::from),
            None => None,
        };
        let mut xdp_links = Vec::new();
        for l in meta.xdp_links {
            let link = fds.next().ok_or("--upgrade: an XDP link is missing")?;
            xdp_links.push(ebpf::HandedLink {
                interface: l.interface,
                mode: l.mode,
                link,
            });
        }
        let inherited = Inherited {
            listeners,
            metrics,
            vrrp_masters: meta.vrrp_masters.into_iter().collect(),
            xdp_links,
        };
        Ok((stream, inherited))
    })
    .await
    .map_err(|e| format!("--upgrade: {e}"))?
}

impl Daemon {
    /// Old side of `halb run --upgrade`: hands every listening socket to the
    /// new process, waits for its `ready`, then stops (draining). If the new
    /// process goes away before `ready`, nothing changes here.
    pub async fn hand_over(&self, stream: tokio::net::UnixStream) {
        let fds = match self.dataplane.listener_fds() {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "upgrade: cannot duplicate the listening sockets");
                return;
            }
        };
        let metrics_fd = self
            .telemetry
            .metrics_fd
            .as_ref()
            .and_then(|fd| fd.try_clone().ok());
        let xdp_links = match self.xdp.link_fds() {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "upgrade: cannot duplicate the XDP links");
                return;
            }
        };
        let meta = crate::upgrade::Handoff {
            listeners: fds
                .iter()
                .map(|l| crate::upgrade::HandedListener {
                    frontend: l.frontend.clone(),
                    bind: l.bind,
                    transport: match l.transport {
                        control::config::Transport::Udp => "udp".to_string(),
                        control::config::Transport::Tcp => "tcp".to_string(),
                    },
                })
                .collect(),
            metrics: metrics_fd.as_ref().and(self.telemetry.metrics_bound),
            vrrp_masters: self.vrrp.masters().await,
            xdp_links: xdp_links
                .iter()
                .map(|l| crate::upgrade::HandedXdpLink {
                    interface: l.interface.clone(),
                    mode: l.mode,
                })
                .collect(),
        };
        let std_stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "upgrade: admin connection unusable");
                return;
            }
        };
        tracing::info!(
            sockets = meta.listeners.len(),
            vrrp_masters = ?meta.vrrp_masters,
            "upgrade: handing over the listening sockets and VRRP mastership"
        );
        let outcome = tokio::task::spawn_blocking(move || -> std::io::Result<bool> {
            use std::io::BufRead as _;
            use std::os::fd::AsFd as _;
            std_stream.set_nonblocking(false)?;
            let mut borrowed: Vec<std::os::fd::BorrowedFd<'_>> =
                fds.iter().map(|l| l.fd.as_fd()).collect();
            if let Some(m) = &metrics_fd {
                borrowed.push(m.as_fd());
            }
            borrowed.extend(xdp_links.iter().map(|l| l.link.as_fd()));
            crate::upgrade::send(&std_stream, &meta, &borrowed)?;
            // The new process may take a while to start its parts.
            std_stream.set_read_timeout(Some(Duration::from_secs(120)))?;
            let mut line = String::new();
            std::io::BufReader::new(&std_stream).read_line(&mut line)?;
            Ok(line.trim() == "ready")
        })
        .await;
        match outcome {
            Ok(Ok(true)) => {
                tracing::info!("upgrade: the new process is serving; draining and exiting");
                let _ = self.stop_tx.send(StopReason::Upgraded);
            }
            Ok(Ok(false)) => {
                tracing::warn!(
                    "upgrade: the new process went away before it was ready; still serving"
                )
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "upgrade: hand-over failed; still serving"),
            Err(e) => tracing::warn!(error = %e, "upgrade: hand-over task failed; still serving"),
        }
    }
}

/// Runs the daemon until SIGTERM/SIGINT (or until a new process took
/// over); returns the process exit code.
pub async fn run(source: ConfigSource, config: Config, opts: RunOptions) -> u8 {
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

    if opts.upgrade && config.cluster.is_some() {
        // The heartbeat sockets and the membership state are not handed
        // over: a new process would rejoin as a new incarnation while the
        // old one still speaks for the node.
        tracing::error!(
            "--upgrade is not available with [cluster]: the cluster membership is not handed over; \
             move the node's work away (`halb node standby`), restart it, then `halb node unstandby`"
        );
        return exit::STARTUP;
    }
    let (upgrade_channel, inherited) = if opts.upgrade {
        match take_over(&config.node.admin_socket).await {
            Ok((channel, i)) => {
                tracing::info!(
                    sockets = i.listeners.len(),
                    "upgrade: received the listening sockets"
                );
                (Some(channel), i)
            }
            Err(e) => {
                tracing::error!("{e}");
                return exit::STARTUP;
            }
        }
    } else {
        (None, Inherited::default())
    };

    let metrics_listener = match (config.node.metrics_listen, inherited.metrics) {
        (None, _) => None,
        (Some(addr), Some(l)) if l.local_addr().is_ok_and(|a| a == addr || addr.port() == 0) => {
            match l
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpListener::from_std(l))
            {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::error!("metrics listener {addr}: {e}");
                    return exit::STARTUP;
                }
            }
        }
        (Some(addr), _) => match telemetry::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::error!("metrics listener {addr}: {e}");
                return exit::STARTUP;
            }
        },
    };
    let metrics_fd = metrics_listener.as_ref().and_then(|l| {
        use std::os::fd::AsFd as _;
        l.as_fd().try_clone_to_owned().ok()
    });

    let xdp = XdpPart::start(&config, inherited.xdp_links);
    let userspace = xdp_part::userspace_config(&config, &xdp.fallback());
    let dataplane = match DataplanePart::start(&userspace, inherited.listeners) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("{e}");
            return exit::STARTUP;
        }
    };

    // Cluster control before VRRP: the routers start held by its gates.
    let cluster = match ClusterPart::start(&config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return exit::STARTUP;
        }
    };
    let vrrp = match VrrpPart::start(&config, cluster.vrrp_control(), &inherited.vrrp_masters).await
    {
        Ok(v) => v,
        Err(e) => {
            tracing::error!("{e}");
            return exit::STARTUP;
        }
    };

    // The admin socket last: until it is bound, a failed start leaves the
    // running daemon (if any) untouched and reachable.
    if upgrade_channel.is_some() {
        let _ = std::fs::remove_file(&config.node.admin_socket);
    }
    let admin_listener = match admin::bind(&config.node.admin_socket).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("{e}");
            return exit::STARTUP;
        }
    };

    let node_name = config.node.name.clone();
    let metrics_bound = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    let (stop_tx, mut stop_rx) = tokio::sync::mpsc::unbounded_channel();
    let daemon = Arc::new(Daemon::new(
        source.clone(),
        config,
        Telemetry {
            metrics_bound,
            metrics_fd,
        },
        Parts {
            dataplane,
            vrrp,
            xdp,
            cluster,
        },
        stop_tx,
    ));
    let (trigger, shutdown) = shutdown::channel();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(admin::serve(
        admin_listener,
        daemon.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(sync_xdp(daemon.clone(), shutdown.clone()));
    tasks.spawn(sync_cluster(daemon.clone(), shutdown.clone()));
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
    if let Some(mut channel) = upgrade_channel {
        use std::io::Write as _;
        if let Err(e) = channel.write_all(b"ready\n") {
            tracing::warn!(error = %e, "upgrade: could not tell the old process we are ready");
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tracing::info!(
        node = %node_name,
        config = %source.display(),
        admin_socket = %daemon.admin_socket.display(),
        metrics = ?daemon.telemetry.metrics_bound,
        "halb running"
    );

    let reason = loop {
        tokio::select! {
            _ = hup.recv() => {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
                daemon.reload("sighup").await;
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
            }
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break StopReason::Signal; }
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); break StopReason::Signal; }
            Some(reason) = stop_rx.recv() => break reason,
        }
    };

    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    let deadline = tokio::time::Instant::now() + shutdown_timeout;
    // Parts first (connections drain while the admin socket still answers),
    // then the daemon's own tasks.
    // VRRP masters resign (the peer takes the VIPs) while connections drain;
    // under cluster control the node leaves the cluster first (its VIPs are
    // released and handed over through the cluster).
    // After an upgrade the new process is already master of what this
    // one was: VRRP only stops here, leaving the VIPs in place.
    tokio::join!(daemon.dataplane.shutdown(shutdown_timeout), async {
        daemon.cluster.shutdown(deadline).await;
        if reason == StopReason::Upgraded {
            daemon.vrrp.detach(deadline).await
        } else {
            daemon.vrrp.shutdown(deadline).await
        }
    });
    trigger.trigger();
    daemon.xdp.shutdown();
    let code = stop_parts(
        &mut tasks,
        deadline.saturating_duration_since(tokio::time::Instant::now()),
    )
    .await;
    if reason != StopReason::Upgraded {
        // After an upgrade the path belongs to the new process.
        let _ = std::fs::remove_file(&daemon.admin_socket);
    }
    tracing::info!(code, ?reason, "halb stopped");
    code
}

/// Keeps the kernel's server tables in step with the data plane's health
/// checks, and exports the XDP counters every 5 s.
async fn sync_xdp(daemon: Arc<Daemon>, shutdown: shutdown::Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {
                n += 1;
                daemon.xdp.sync(&daemon.dataplane.status(), n.is_multiple_of(25));
            }
        }
    }
}

/// Under cluster control: no new connections while the cluster says release
/// everything (no quorum under `no_quorum_policy = "stop"`, standby,
/// leaving): the running config is applied without its frontends, and with
/// them again afterwards.
async fn sync_cluster(daemon: Arc<Daemon>, shutdown: shutdown::Shutdown) {
    let Some(mut rx) = daemon.cluster.accepting_changes() else {
        return;
    };
    loop {
        let accepting = *rx.borrow_and_update();
        daemon.apply_accepting(accepting).await;
        tokio::select! {
            _ = shutdown.wait() => return,
            r = rx.changed() => if r.is_err() { return },
        }
    }
}

impl Daemon {
    async fn apply_accepting(&self, accepting: bool) {
        let _serial = self.reload_lock.lock().await;
        let running = self.running.load_full();
        let gated = cluster_part::gate_frontends(running.config.as_ref().clone(), accepting);
        let fallback = match self.xdp.reload(&gated) {
            Ok((_, fallback)) => fallback,
            Err(e) => {
                tracing::error!(accepting, error = %e, "cluster: XDP not updated");
                self.xdp.fallback()
            }
        };
        let userspace = xdp_part::userspace_config(&gated, &fallback);
        match self.dataplane.reload(&userspace) {
            Ok(changes) => {
                if accepting {
                    tracing::info!("cluster: accepting new connections");
                } else {
                    tracing::warn!("cluster: VIPs released; new connections refused");
                }
                for c in changes {
                    tracing::debug!(change = %c, "cluster: data plane");
                }
            }
            Err(e) => tracing::error!(accepting, error = %e, "cluster: data plane not updated"),
        }
    }
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
