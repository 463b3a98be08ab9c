//! The tokio driver of the cluster cores: one UDP socket per link, the
//! [`Coordinator`], fence agents, status and a watch channel of decisions.
//!
//! ```text
//! let (driver, handle) = Driver::new(DriverSettings::new(cluster, "lb1", instances))?;
//! tokio::spawn(driver.run());
//! let mut decisions = handle.decisions();        // watch::Receiver<Decisions>
//! handle.report_local("front", is_master, prio)?; // from the VRRP router
//! let status = handle.status().await?;           // for `halb status`
//! handle.command(Command::Standby)?;             // `halb node standby`
//! handle.leave()?;                               // graceful stop; run() returns
//! ```
//!
//! Each link's socket is bound to this node's address for that link and
//! `cluster.port`. A heartbeat is sent to every peer's address on its link
//! and to the witness; datagrams are checked by [`Codec::open`] (MAC,
//! cluster, sender, replay) before the cores see them, and rejected ones
//! are counted per reason in the status and in
//! `halb_cluster_rx_rejected_total{reason}`.
//!
//! Metrics: `halb_cluster_rx_total`, `halb_cluster_tx_total`,
//! `halb_cluster_tx_errors_total`, `halb_cluster_rx_rejected_total{reason}`,
//! `halb_cluster_quorate`, `halb_cluster_votes`, `halb_cluster_expected_votes`,
//! `halb_cluster_node_up{node}`, `halb_cluster_link_up{node,link}`,
//! `halb_cluster_may_be_master{instance}`, `halb_cluster_takeovers_total{instance}`,
//! `halb_cluster_fence_total{node,result}`, `halb_fence_device_up{device}`
//! (and the fence module's `halb_fence_attempts_total{device,result}`).

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::ClusterConfig;

use super::coordinator::{
    Action, Command, Coordinator, CoordinatorConfig, CoordinatorError, CoreStatus, Event, Input,
    InstanceSpec, View,
};
use super::fence::{fence_node, random_delay, FenceReport, Fencer};
use super::membership;
use super::types::{Incarnation, InstanceId, LinkId, NodeId, NodeSet, Seq};
use super::wire::{
    count_rejected, Body, ClusterId, ClusterKey, Codec, Header, KeyError, Message, RejectReason,
    ReplayGuard,
};

/// Fence results kept for the status.
const FENCE_HISTORY: usize = 16;
/// Largest datagram read.
const RECV_BUF: usize = 65_536;

/// Why the driver cannot start or a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The key file is unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The coordinator settings are invalid.
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
    /// A link socket could not be bound.
    #[error("cannot bind cluster link {link} to {addr}: {source}")]
    Bind {
        /// The link.
        link: LinkId,
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The driver is not running any more.
    #[error("the cluster driver has stopped")]
    Stopped,
    /// No such VRRP instance.
    #[error("unknown VRRP instance '{0}'")]
    UnknownInstance(String),
}

/// What [`Driver::new`] needs.
#[derive(Debug, Clone)]
pub struct DriverSettings {
    /// The cluster section.
    pub cluster: ClusterConfig,
    /// This node's name (`node.name`).
    pub node: String,
    /// The VRRP instances and their configured priorities.
    pub instances: Vec<InstanceSpec>,
    /// The key; `None` = read `cluster.auth_key_file`.
    pub key: Option<ClusterKey>,
    /// This process's incarnation; `None` = microseconds since the Unix
    /// epoch (increasing across restarts while the clock is sane).
    pub incarnation: Option<Incarnation>,
    /// Pause between fence attempts.
    pub fence_retry_pause: Duration,
}

impl DriverSettings {
    /// Settings with the key from the file, a clock incarnation and a 500 ms
    /// pause between fence attempts.
    pub fn new(cluster: ClusterConfig, node: &str, instances: Vec<InstanceSpec>) -> DriverSettings {
        DriverSettings {
            cluster,
            node: node.to_owned(),
            instances,
            key: None,
            incarnation: None,
            fence_retry_pause: Duration::from_millis(500),
        }
    }
}

/// The decision for one VRRP instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InstanceDecision {
    /// The router may be (or become) master. When false it must not be
    /// master: release the VIPs.
    pub may_be_master: bool,
    /// Counts takeover hints: when it grows while `may_be_master`, become
    /// master now without waiting for Master_Down_Interval (the previous
    /// master's node is gone).
    pub takeover: u64,
}

/// What the VRRP side must do; published on a watch channel.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Decisions {
    /// This node is quorate.
    pub quorate: bool,
    /// Release every VIP and stop accepting new connections (no quorum
    /// under `stop`, standby, or leaving).
    pub must_release_all: bool,
    /// Per instance name.
    pub instances: BTreeMap<String, InstanceDecision>,
}

/// A fencing action in [`ClusterStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceEntry {
    /// The target node.
    pub node: String,
    /// Success.
    pub ok: bool,
    /// Milliseconds since the Unix epoch when it finished.
    pub at_unix_ms: u64,
    /// The node that fenced it; `None` = this node.
    pub by: Option<String>,
    /// The device used (this node's fences only).
    pub device: Option<String>,
    /// Agent runs (this node's fences only).
    pub attempts: usize,
}

/// A fence device in [`ClusterStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStatus {
    /// The device name.
    pub name: String,
    /// Result of the last `monitor` run (`None` = not run yet).
    pub ok: Option<bool>,
    /// Milliseconds since the Unix epoch of that run.
    pub checked_unix_ms: Option<u64>,
}

/// A link socket in [`ClusterStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkSocket {
    /// The link.
    pub link: LinkId,
    /// The local address.
    pub local: SocketAddr,
}

/// Message counters in [`ClusterStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counters {
    /// Datagrams accepted.
    pub rx: u64,
    /// Datagrams rejected, per reason (`bad_mac`, `replay`, ...).
    pub rx_rejected: BTreeMap<String, u64>,
    /// Datagrams sent.
    pub tx: u64,
    /// Datagrams that could not be sent.
    pub tx_errors: u64,
}

/// The cluster part of `halb status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// This node's name.
    pub node: String,
    /// Nodes, links, quorum, instances and modes.
    pub core: CoreStatus,
    /// Local sockets.
    pub links: Vec<LinkSocket>,
    /// The witness address, if any.
    pub witness: Option<SocketAddr>,
    /// Recent fencing actions, oldest first.
    pub fencing: Vec<FenceEntry>,
    /// Fence devices.
    pub devices: Vec<DeviceStatus>,
    /// Message counters.
    pub counters: Counters,
}

enum Request {
    Status(oneshot::Sender<ClusterStatus>),
    Command(Command),
    Local {
        instance: InstanceId,
        holding: bool,
        priority: u8,
    },
    Stop,
}

/// Talks to a running [`Driver`]. Cheap to clone.
#[derive(Clone)]
pub struct ClusterHandle {
    tx: mpsc::UnboundedSender<Request>,
    decisions: watch::Receiver<Decisions>,
    instances: Arc<Vec<String>>,
}

impl ClusterHandle {
    /// The decisions channel (the current value is available at once).
    pub fn decisions(&self) -> watch::Receiver<Decisions> {
        self.decisions.clone()
    }

    /// A status snapshot.
    pub async fn status(&self) -> Result<ClusterStatus, DriverError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Status(tx))
            .map_err(|_| DriverError::Stopped)?;
        rx.await.map_err(|_| DriverError::Stopped)
    }

    /// An operator command (`halb node standby`, ...).
    pub fn command(&self, c: Command) -> Result<(), DriverError> {
        self.tx
            .send(Request::Command(c))
            .map_err(|_| DriverError::Stopped)
    }

    /// Reports the local VRRP state of an instance: whether its router is
    /// master (VIPs configured) and its effective priority.
    pub fn report_local(
        &self,
        instance: &str,
        holding: bool,
        priority: u8,
    ) -> Result<(), DriverError> {
        let pos = self
            .instances
            .iter()
            .position(|n| n == instance)
            .ok_or_else(|| DriverError::UnknownInstance(instance.to_owned()))?;
        self.tx
            .send(Request::Local {
                instance: InstanceId(pos as u16),
                holding,
                priority,
            })
            .map_err(|_| DriverError::Stopped)
    }

    /// Graceful stop: release everything, tell the other nodes, then
    /// [`Driver::run`] returns.
    pub fn leave(&self) -> Result<(), DriverError> {
        self.command(Command::Leave)
    }

    /// Stops at once (the other nodes see this node vanish).
    pub fn stop(&self) -> Result<(), DriverError> {
        self.tx
            .send(Request::Stop)
            .map_err(|_| DriverError::Stopped)
    }
}

struct Node {
    name: String,
    addrs: Vec<IpAddr>,
}

/// The driver; see the module documentation.
pub struct Driver {
    core: Coordinator,
    codec: Codec,
    guard: ReplayGuard,
    me: NodeId,
    incarnation: Incarnation,
    nodes: Vec<Node>,
    port: u16,
    witness: Option<SocketAddr>,
    sockets: Vec<Arc<UdpSocket>>,
    instance_names: Arc<Vec<String>>,
    fencers: Arc<Vec<Fencer>>,
    requests: mpsc::UnboundedReceiver<Request>,
    decisions: watch::Sender<Decisions>,
    takeovers: Vec<u64>,
    counters: Counters,
    fencing: VecDeque<FenceEntry>,
    devices: Vec<DeviceStatus>,
    seen_core_fences: u64,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn bind(link: LinkId, addr: SocketAddr) -> Result<UdpSocket, DriverError> {
    let err = |source| DriverError::Bind { link, addr, source };
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))
        .map_err(err)?;
    // No SO_REUSEADDR: a second process on the same address must fail
    // loudly instead of sharing the heartbeats.
    s.set_nonblocking(true).map_err(err)?;
    s.bind(&addr.into()).map_err(err)?;
    UdpSocket::from_std(s.into()).map_err(err)
}

impl Driver {
    /// Loads the key (unless given), binds one socket per link and builds
    /// the cores. Must be called inside a tokio runtime.
    pub fn new(settings: DriverSettings) -> Result<(Driver, ClusterHandle), DriverError> {
        let c = &settings.cluster;
        let key = match settings.key {
            Some(k) => k,
            None => ClusterKey::load(&c.auth_key_file)?,
        };
        let incarnation = settings.incarnation.unwrap_or_else(|| {
            let micros = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
                .unwrap_or(1);
            Incarnation(micros.max(1))
        });
        let cfg = CoordinatorConfig::from_cluster(
            c,
            &settings.node,
            incarnation,
            settings.instances.clone(),
        )?;
        let me = cfg.me;
        let core = Coordinator::new(cfg, Instant::now().into_std())?;
        let nodes: Vec<Node> = c
            .nodes
            .iter()
            .map(|n| Node {
                name: n.name.clone(),
                addrs: n.addresses.clone(),
            })
            .collect();
        let mut sockets = Vec::new();
        for (l, ip) in nodes[me.index()].addrs.iter().enumerate() {
            let link = LinkId(l as u8);
            let addr = SocketAddr::new(*ip, c.port);
            sockets.push(Arc::new(bind(link, addr)?));
        }
        let codec = Codec::new(
            &key,
            ClusterId::from_names(c.nodes.iter().map(|n| n.name.as_str())),
            c.encrypt,
        );
        let guard = ReplayGuard::new(nodes.len(), Some(me), c.witness.is_some());
        let instance_names: Arc<Vec<String>> =
            Arc::new(settings.instances.iter().map(|i| i.name.clone()).collect());
        let fencers = Arc::new(
            c.fence_devices
                .iter()
                .map(|d| Fencer::new(d.clone()).with_retry_pause(settings.fence_retry_pause))
                .collect::<Vec<_>>(),
        );
        let devices = c
            .fence_devices
            .iter()
            .map(|d| DeviceStatus {
                name: d.name.clone(),
                ok: None,
                checked_unix_ms: None,
            })
            .collect();
        let (tx, requests) = mpsc::unbounded_channel();
        let (decisions, decisions_rx) = watch::channel(Decisions::default());
        let mut counters = Counters::default();
        for r in RejectReason::ALL {
            counters.rx_rejected.insert(r.as_str().to_owned(), 0);
        }
        let mut d = Driver {
            takeovers: vec![0; instance_names.len()],
            core,
            codec,
            guard,
            me,
            incarnation,
            nodes,
            port: c.port,
            witness: c.witness,
            sockets,
            instance_names: instance_names.clone(),
            fencers,
            requests,
            decisions,
            counters,
            fencing: VecDeque::new(),
            devices,
            seen_core_fences: 0,
        };
        d.publish();
        let handle = ClusterHandle {
            tx,
            decisions: decisions_rx,
            instances: instance_names,
        };
        Ok((d, handle))
    }

    /// This process's incarnation.
    pub fn incarnation(&self) -> Incarnation {
        self.incarnation
    }

    /// The local address of each link socket.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// Runs until [`ClusterHandle::stop`], a completed
    /// [`ClusterHandle::leave`], or every handle is dropped.
    pub async fn run(mut self) {
        let (dgram_tx, mut dgram_rx) = mpsc::channel::<(LinkId, Vec<u8>)>(4096);
        let (fence_tx, mut fence_rx) = mpsc::unbounded_channel::<(NodeId, FenceReport)>();
        let (monitor_tx, mut monitor_rx) = mpsc::unbounded_channel::<(usize, bool)>();
        let mut tasks = JoinSet::new();
        for (l, s) in self.sockets.iter().enumerate() {
            let s = s.clone();
            let tx = dgram_tx.clone();
            tasks.spawn(async move {
                let mut buf = vec![0u8; RECV_BUF];
                loop {
                    match s.recv_from(&mut buf).await {
                        Ok((n, _)) => {
                            // A full queue drops the datagram like a full
                            // socket buffer would.
                            let _ = tx.try_send((LinkId(l as u8), buf[..n].to_vec()));
                        }
                        Err(e) => {
                            tracing::debug!(link = l, error = %e, "cluster socket receive error");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            });
        }
        drop(dgram_tx);
        let mut monitor_at: Vec<Instant> = self
            .fencers
            .iter()
            .map(|f| Instant::now() + f.device().monitor_interval.min(Duration::from_secs(5)))
            .collect();
        tracing::info!(
            node = %self.nodes[self.me.index()].name,
            incarnation = self.incarnation.0,
            links = self.sockets.len(),
            "cluster driver started"
        );
        loop {
            let wake = self
                .core
                .poll_timeout()
                .map(Instant::from_std)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let next_monitor = monitor_at.iter().min().copied();
            let monitor_sleep =
                next_monitor.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                req = self.requests.recv() => {
                    match req {
                        None | Some(Request::Stop) => break,
                        Some(Request::Status(reply)) => {
                            let _ = reply.send(self.status());
                        }
                        Some(Request::Command(c)) => {
                            tracing::info!(command = ?c, "cluster command");
                            self.core.handle(Instant::now().into_std(), Input::Command(c));
                        }
                        Some(Request::Local { instance, holding, priority }) => {
                            self.core.handle(
                                Instant::now().into_std(),
                                Input::Local { instance, holding, priority },
                            );
                        }
                    }
                }
                Some((node, report)) = fence_rx.recv() => {
                    self.fence_finished(node, report);
                }
                Some((i, ok)) = monitor_rx.recv() => {
                    if let Some(d) = self.devices.get_mut(i) {
                        d.ok = Some(ok);
                        d.checked_unix_ms = Some(unix_ms(SystemTime::now()));
                        metrics::gauge!("halb_fence_device_up", "device" => d.name.clone())
                            .set(if ok { 1.0 } else { 0.0 });
                        if !ok {
                            tracing::warn!(device = %d.name, "fence device monitor failed");
                        }
                    }
                }
                Some((link, data)) = dgram_rx.recv() => {
                    self.datagram(link, &data);
                }
                _ = tokio::time::sleep_until(wake) => {
                    self.core.handle(Instant::now().into_std(), Input::Timeout);
                }
                _ = tokio::time::sleep_until(monitor_sleep), if next_monitor.is_some() => {
                    let now = Instant::now();
                    for (i, at) in monitor_at.iter_mut().enumerate() {
                        if *at <= now {
                            *at = now + self.fencers[i].device().monitor_interval;
                            let f = self.fencers[i].clone();
                            let tx = monitor_tx.clone();
                            tasks.spawn(async move {
                                let ok = f.monitor().await.is_ok();
                                let _ = tx.send((i, ok));
                            });
                        }
                    }
                }
            }
            self.actions(&mut tasks, &fence_tx);
            self.publish();
            if self.core.leave_complete() {
                tracing::info!("left the cluster");
                break;
            }
        }
        tasks.abort_all();
    }

    fn datagram(&mut self, link: LinkId, data: &[u8]) {
        let now = Instant::now().into_std();
        match self.codec.open(data, Some(link), &mut self.guard) {
            Err(reason) => self.reject(reason),
            Ok(Message { header, body }) => match body {
                Body::Heartbeat(b) if header.sender != NodeId::WITNESS => {
                    self.counters.rx += 1;
                    metrics::counter!("halb_cluster_rx_total").increment(1);
                    let view = View::from_wire(&b, &self.instance_names);
                    self.core.handle(
                        now,
                        Input::Heartbeat {
                            link,
                            from: header.sender,
                            incarnation: header.incarnation,
                            seq: header.seq,
                            view,
                        },
                    );
                }
                Body::WitnessVote(v) if header.sender == NodeId::WITNESS => {
                    self.counters.rx += 1;
                    metrics::counter!("halb_cluster_rx_total").increment(1);
                    self.core.handle(
                        now,
                        Input::WitnessVote {
                            echo_incarnation: v.echo_incarnation,
                            echo: v.echo,
                            vote: v.vote,
                            partition: v.partition.iter().copied().collect::<NodeSet>(),
                        },
                    );
                }
                _ => self.reject(RejectReason::Malformed),
            },
        }
    }

    fn reject(&mut self, reason: RejectReason) {
        count_rejected(reason);
        *self
            .counters
            .rx_rejected
            .entry(reason.as_str().to_owned())
            .or_insert(0) += 1;
        tracing::debug!(reason = reason.as_str(), "cluster datagram rejected");
    }

    fn send(&mut self, link: LinkId, seq: Seq, view: &View) {
        let msg = Message {
            header: Header {
                cluster: self.codec.cluster(),
                sender: self.me,
                link,
                incarnation: self.incarnation,
                seq,
            },
            body: Body::Heartbeat(view.to_wire(&self.instance_names)),
        };
        let bytes = match self.codec.encode(&msg) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode heartbeat");
                return;
            }
        };
        let Some(sock) = self.sockets.get(link.index()).cloned() else {
            return;
        };
        let mut dests: Vec<SocketAddr> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != self.me.index())
            .filter_map(|(_, n)| n.addrs.get(link.index()))
            .map(|ip| SocketAddr::new(*ip, self.port))
            .collect();
        dests.extend(self.witness);
        for d in dests {
            match sock.try_send_to(&bytes, d) {
                Ok(_) => {
                    self.counters.tx += 1;
                    metrics::counter!("halb_cluster_tx_total").increment(1);
                }
                Err(e) => {
                    self.counters.tx_errors += 1;
                    metrics::counter!("halb_cluster_tx_errors_total").increment(1);
                    tracing::trace!(dest = %d, error = %e, "heartbeat send failed");
                }
            }
        }
    }

    fn actions(
        &mut self,
        tasks: &mut JoinSet<()>,
        fence_tx: &mpsc::UnboundedSender<(NodeId, FenceReport)>,
    ) {
        while let Some(a) = self.core.poll_action() {
            match a {
                Action::Send { link, seq, view } => self.send(link, seq, &view),
                Action::Fence { node } => {
                    let name = self.nodes[node.index()].name.clone();
                    let delay_max = self
                        .fencers
                        .iter()
                        .filter(|f| f.covers(&name))
                        .map(|f| f.device().delay_max)
                        .max()
                        .unwrap_or_default();
                    let delay = random_delay(delay_max);
                    tracing::warn!(node = %name, delay_ms = delay.as_millis() as u64, "fencing node");
                    let fencers = self.fencers.clone();
                    let tx = fence_tx.clone();
                    tasks.spawn(async move {
                        let report = fence_node(&fencers, &name, delay).await;
                        let _ = tx.send((node, report));
                    });
                }
                Action::Takeover { instance } => {
                    if let Some(t) = self.takeovers.get_mut(instance.index()) {
                        *t += 1;
                    }
                    let name = self.instance_names[instance.index()].clone();
                    tracing::info!(instance = %name, "takeover: previous master's node is gone");
                    metrics::counter!("halb_cluster_takeovers_total", "instance" => name)
                        .increment(1);
                }
                Action::Event(e) => self.event(e),
            }
        }
    }

    fn node_name(&self, n: NodeId) -> String {
        self.nodes
            .get(n.index())
            .map_or_else(|| n.to_string(), |x| x.name.clone())
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::Membership(m) => match m {
                membership::Event::NodeUp { node } => {
                    let name = self.node_name(node);
                    tracing::info!(node = %name, "cluster node up");
                    metrics::gauge!("halb_cluster_node_up", "node" => name).set(1.0);
                }
                membership::Event::NodeDown { node } => {
                    let name = self.node_name(node);
                    tracing::warn!(node = %name, "cluster node down");
                    metrics::gauge!("halb_cluster_node_up", "node" => name).set(0.0);
                }
                membership::Event::LinkUp { node, link } => {
                    let name = self.node_name(node);
                    tracing::info!(node = %name, link = link.0, "cluster link up");
                    metrics::gauge!("halb_cluster_link_up", "node" => name, "link" => link.0.to_string())
                        .set(1.0);
                }
                membership::Event::LinkDown { node, link } => {
                    let name = self.node_name(node);
                    tracing::warn!(node = %name, link = link.0, "cluster link down");
                    metrics::gauge!("halb_cluster_link_up", "node" => name, "link" => link.0.to_string())
                        .set(0.0);
                }
            },
            Event::NodeRestarted { node } => {
                tracing::info!(node = %self.node_name(node), "cluster node restarted");
            }
            Event::NodeLeft { node } => {
                tracing::info!(node = %self.node_name(node), "cluster node left");
            }
            Event::FencedNodeHeard { node } => {
                tracing::warn!(node = %self.node_name(node), "a fenced node is heard again: the fence did not take effect");
            }
            Event::Quorum(q) => {
                tracing::info!(
                    quorate = q.quorate,
                    votes = q.votes,
                    expected = q.expected,
                    quorum = q.quorum,
                    "quorum"
                );
                metrics::gauge!("halb_cluster_quorate").set(if q.quorate { 1.0 } else { 0.0 });
                metrics::gauge!("halb_cluster_votes").set(f64::from(q.votes));
                metrics::gauge!("halb_cluster_expected_votes").set(f64::from(q.expected));
            }
            Event::Fenced { node, by } => {
                let name = self.node_name(node);
                match by {
                    Some(b) => {
                        tracing::info!(node = %name, by = %self.node_name(b), "node fenced by a peer")
                    }
                    None => tracing::warn!(node = %name, "node fenced"),
                }
            }
            Event::FenceFailed { node } => {
                tracing::error!(node = %self.node_name(node), "fencing failed; takeover blocked, will retry");
            }
            Event::Permission {
                instance,
                may_be_master,
            } => {
                let name = self.instance_names[instance.index()].clone();
                tracing::info!(instance = %name, may_be_master, "cluster decision");
                metrics::gauge!("halb_cluster_may_be_master", "instance" => name)
                    .set(if may_be_master { 1.0 } else { 0.0 });
            }
        }
    }

    fn fence_finished(&mut self, node: NodeId, report: FenceReport) {
        let name = self.node_name(node);
        metrics::counter!(
            "halb_cluster_fence_total",
            "node" => name.clone(),
            "result" => if report.ok { "success" } else { "failure" }
        )
        .increment(1);
        self.push_fence(FenceEntry {
            node: name,
            ok: report.ok,
            at_unix_ms: unix_ms(SystemTime::now()),
            by: None,
            device: report.device.clone(),
            attempts: report.attempts.len(),
        });
        self.core.handle(
            Instant::now().into_std(),
            Input::FenceDone {
                node,
                ok: report.ok,
            },
        );
    }

    fn push_fence(&mut self, e: FenceEntry) {
        if self.fencing.len() == FENCE_HISTORY {
            self.fencing.pop_front();
        }
        self.fencing.push_back(e);
    }

    fn publish(&mut self) {
        // Fences learnt from peers (this node's own come with details from
        // fence_finished).
        let total = self.core.fence_log_total();
        if total != self.seen_core_fences {
            let new = usize::try_from(total - self.seen_core_fences).unwrap_or(usize::MAX);
            let mut log: Vec<_> = self.core.fence_log().rev().take(new).cloned().collect();
            log.reverse();
            let now_std = Instant::now().into_std();
            let now_wall = SystemTime::now();
            for r in &log {
                if let Some(by) = r.by {
                    let at = now_wall - now_std.saturating_duration_since(r.at);
                    let entry = FenceEntry {
                        node: self.node_name(r.node),
                        ok: r.ok,
                        at_unix_ms: unix_ms(at),
                        by: Some(self.node_name(by)),
                        device: None,
                        attempts: 0,
                    };
                    self.push_fence(entry);
                }
            }
            self.seen_core_fences = total;
        }
        let q = self.core.quorum();
        let mut d = Decisions {
            quorate: q.quorate,
            must_release_all: self.core.must_release_all(),
            instances: BTreeMap::new(),
        };
        for (i, name) in self.instance_names.iter().enumerate() {
            d.instances.insert(
                name.clone(),
                InstanceDecision {
                    may_be_master: self.core.may_be_master(InstanceId(i as u16)),
                    takeover: self.takeovers[i],
                },
            );
        }
        self.decisions.send_if_modified(|cur| {
            if *cur == d {
                false
            } else {
                *cur = d;
                true
            }
        });
    }

    fn status(&self) -> ClusterStatus {
        ClusterStatus {
            node: self.nodes[self.me.index()].name.clone(),
            core: self.core.status(Instant::now().into_std()),
            links: self
                .sockets
                .iter()
                .enumerate()
                .filter_map(|(l, s)| {
                    s.local_addr().ok().map(|local| LinkSocket {
                        link: LinkId(l as u8),
                        local,
                    })
                })
                .collect(),
            witness: self.witness,
            fencing: self.fencing.iter().cloned().collect(),
            devices: self.devices.clone(),
            counters: self.counters.clone(),
        }
    }
}
