//! One VRRP instance on a tokio task: the socket, the timers, tracking and
//! the commands, around one sans-IO [`Router`].
//!
//! The task `select!`s on the command channel, the VRRP socket, the router's
//! next deadline (`sleep_until(poll_timeout)`), tracking results and link
//! events, feeds the router and executes what it asks, in order, with two
//! deliberate changes of order (each marked `halb:` below):
//!
//! - on becoming master the VIPs are added and the first gratuitous round is
//!   sent *before* the first advert, so that clients have moved to us
//!   before the old master hears the advert and lets go (no lost packet on
//!   a preemption);
//! - on a planned resignation (shutdown, standby) the priority-0 advert goes
//!   out at once but the VIPs are kept until the new master is heard (plus a
//!   short grace for its gratuitous ARPs) or one advert interval has passed,
//!   so a planned switchover loses (almost) nothing.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::io::track::FileReadError;
use crate::io::{
    link_local_v6, primary_ipv4, spawn_track_file, spawn_track_script, watch_links, Burst,
    BurstHandle, FileReading, FileSpec, GratuitousSender, Inbound, IoError, LinkEvent, LinkWatch,
    Netlink, Notifier, NotifyKind, NotifySpec, NotifyState, ProbeTask, ScriptResult, ScriptSpec,
    TransportConfig, Vip, VipMover, VmacLink, VmacMode, VmacSpec, Vmacs, VrrpSocket,
};
use crate::router::{Action, Warning};
use crate::track::{Observation, Tracker};
use crate::wire::garp::{GratuitousArp, MacAddr, UnsolicitedNa};
use crate::wire::{
    receive_ipv4, receive_ipv6, record_rx_drop, ChecksumCtx, DropReason, Family, Ipv6Meta,
    RxPolicy, MULTICAST_V4, MULTICAST_V6,
};
use crate::{Input, Priority, Router, StateKind, TransitionReason};

use super::gate::{gate_changed, Control, Gate, InstanceGate};
use super::group::{GroupEvent, GroupLink};
use super::metrics;
use super::spec::InstanceSpec;
use super::status::{Counters, InstanceStatus, TransitionRecord};

/// VRIDs configured on this node, per (interface, family): adverts of a
/// sibling instance arriving on our raw socket are not "dropped" packets.
pub(crate) type LocalVrids = Arc<RwLock<BTreeSet<(String, bool, u8)>>>;

/// Commands from the driver (and from the sync group) to one instance.
#[derive(Debug)]
pub(crate) enum Command {
    /// Resign (priority 0 as master), release the VIPs, stop. `done` fires
    /// when the task has finished.
    Shutdown {
        deadline: Instant,
        done: oneshot::Sender<()>,
    },
    /// Stop without resigning and without touching the interface: the VIPs
    /// (and a virtual MAC interface) stay for the process that takes this
    /// instance over (`halb run --upgrade`). No notify program runs.
    Detach {
        done: oneshot::Sender<()>,
    },
    /// Apply a new spec of the same identity (see `InstanceSpec::identity_differs`).
    Reload {
        spec: Box<InstanceSpec>,
        done: oneshot::Sender<()>,
    },
    Standby(bool),
    Takeover,
    /// An order of the sync group.
    Input(Input),
    SetGroup(Option<GroupLink>),
}

/// Grace after hearing the new master before a resigning master lets go.
const RELEASE_GRACE: Duration = Duration::from_millis(5);
/// Retry period while the interface or its address is missing.
const SETUP_RETRY: Duration = Duration::from_millis(250);
/// Recent results kept per track script (replayed when tracking is rebuilt).
const SCRIPT_HISTORY: usize = 16;

struct Io {
    socket: Arc<VrrpSocket>,
    garp: Arc<GratuitousSender>,
    frames: Vec<Vec<u8>>,
    mac: MacAddr,
    primary: IpAddr,
    vip_ifindex: u32,
    vmac: Option<VmacLink>,
}

struct Tracking {
    tracker: Tracker,
    _probes: Vec<ProbeTask>,
    /// Kept so that the channels stay open when there is no probe.
    _senders: (mpsc::Sender<ScriptResult>, mpsc::Sender<FileReading>),
    scripts: mpsc::Receiver<ScriptResult>,
    files: mpsc::Receiver<FileReading>,
    links: Option<LinkWatch>,
    history: BTreeMap<String, VecDeque<bool>>,
    file_values: BTreeMap<String, i64>,
    link_up: BTreeMap<String, bool>,
}

/// How a batch of router actions is executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    /// A planned resignation: keep the VIPs until the new master is heard.
    Resign,
    /// A router rebuilt by a reload: no transitions are reported, VIPs
    /// already held are left alone.
    Rebuild,
}

enum Event {
    Command(Option<Command>),
    Rx(Result<Inbound, IoError>),
    Timer,
    Script(Option<ScriptResult>),
    File(Option<FileReading>),
    Link(Option<LinkEvent>),
    Gate(Gate),
}

pub(crate) struct Instance {
    spec: InstanceSpec,
    nl: Netlink,
    mover: VipMover,
    local_vrids: LocalVrids,
    io: Option<Io>,
    router: Option<Router>,
    policy: Option<RxPolicy>,
    tracking: Tracking,
    own_link_up: bool,
    /// Administrative standby (`halb node standby` without a cluster).
    standby: bool,
    /// Cluster control's gate, when the driver is controlled.
    gate: Option<InstanceGate>,
    group: Option<GroupLink>,
    group_fault: bool,
    notifier: Option<Notifier>,
    status_tx: watch::Sender<InstanceStatus>,
    held: Vec<Vip>,
    burst: Option<JoinHandle<()>>,
    refresh: Option<BurstHandle>,
    release_at: Option<Instant>,
    stopping: Option<(Instant, Option<oneshot::Sender<()>>)>,
    waiting: Option<String>,
    retry_at: Option<Instant>,
    cleaned_up: bool,
    /// Take over as master at the first setup, without an election: the
    /// process this one replaces was master (`halb run --upgrade`).
    adopt_master: bool,
    /// Detached: the task ends without releasing anything.
    detached: bool,
    rx_pause_until: Option<Instant>,
    send_failing: bool,
    last_transition: Option<TransitionRecord>,
    counters: Counters,
}

fn now_std() -> std::time::Instant {
    Instant::now().into_std()
}

fn family_tag(f: Family) -> bool {
    f == Family::Ipv6
}

fn io_family(f: Family) -> crate::io::Family {
    match f {
        Family::Ipv4 => crate::io::Family::V4,
        Family::Ipv6 => crate::io::Family::V6,
    }
}

fn notify_state(kind: StateKind) -> NotifyState {
    match kind {
        StateKind::Initialize => NotifyState::Stop,
        StateKind::Backup => NotifyState::Backup,
        StateKind::Master => NotifyState::Master,
        StateKind::Fault => NotifyState::Fault,
    }
}

/// The VRID byte of a received datagram, if long enough.
fn vrid_of(bytes: &[u8], ip_header_included: bool) -> Option<u8> {
    let offset = if ip_header_included {
        usize::from(bytes.first()? & 0x0f) * 4
    } else {
        0
    };
    bytes.get(offset + 1).copied()
}

fn gratuitous_frames(mac: MacAddr, vips: &[Vip]) -> Vec<Vec<u8>> {
    vips.iter()
        .map(|v| match v.addr() {
            IpAddr::V4(a) => GratuitousArp::new(mac, a).frame().to_vec(),
            IpAddr::V6(a) => UnsolicitedNa::new(mac, a).frame().to_vec(),
        })
        .collect()
}

async fn recv_opt(socket: Option<Arc<VrrpSocket>>, buf: &mut [u8]) -> Result<Inbound, IoError> {
    match socket {
        Some(s) => s.recv(buf).await,
        None => std::future::pending().await,
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn link_event(watch: &mut Option<LinkWatch>) -> Option<LinkEvent> {
    match watch {
        Some(w) => w.events.recv().await,
        None => std::future::pending().await,
    }
}

impl Tracking {
    /// Starts the probes and the link watch for `spec`, replaying the
    /// results of `previous` (a reload) so that a script that was up stays up.
    async fn start(
        spec: &InstanceSpec,
        previous: Option<&Tracking>,
    ) -> Result<Tracking, crate::Error> {
        let mut tracker = Tracker::new(spec.track_config())?;
        let (script_tx, scripts) = mpsc::channel(64);
        let (file_tx, files) = mpsc::channel(64);
        let mut probes = Vec::new();
        for s in &spec.track_scripts {
            let probe = spawn_track_script(
                ScriptSpec {
                    name: s.name.clone(),
                    argv: s.argv.clone(),
                    interval: s.interval,
                    timeout: s.timeout,
                },
                script_tx.clone(),
            );
            match probe {
                Ok(p) => probes.push(p),
                Err(e) => {
                    error!(instance = %spec.name, script = %s.name, error = %e, "track script not started")
                }
            }
        }
        for f in &spec.track_files {
            probes.push(spawn_track_file(
                FileSpec {
                    name: f.name.clone(),
                    path: f.path.clone(),
                    interval: f.interval,
                },
                file_tx.clone(),
            ));
        }
        let mut history = BTreeMap::new();
        let mut file_values = BTreeMap::new();
        if let Some(prev) = previous {
            for s in &spec.track_scripts {
                if let Some(h) = prev.history.get(&s.name) {
                    for ok in h {
                        let _ = tracker.observe(Observation::Script {
                            name: &s.name,
                            success: *ok,
                        });
                    }
                    history.insert(s.name.clone(), h.clone());
                }
            }
            for f in &spec.track_files {
                if let Some(v) = prev.file_values.get(&f.name) {
                    let _ = tracker.observe(Observation::File {
                        name: &f.name,
                        value: *v,
                    });
                    file_values.insert(f.name.clone(), *v);
                }
            }
        }
        let mut names: Vec<String> = spec
            .track_interfaces
            .iter()
            .map(|t| t.name.clone())
            .collect();
        if !names.contains(&spec.interface) {
            names.push(spec.interface.clone());
        }
        let mut link_up = BTreeMap::new();
        let links = match watch_links(names.clone(), Some(Duration::from_secs(5))).await {
            Ok(w) => {
                for (name, state) in &w.initial {
                    link_up.insert(name.clone(), state.is_up());
                }
                Some(w)
            }
            Err(e) => {
                error!(instance = %spec.name, error = %e, "link watch not started; links assumed up");
                None
            }
        };
        for t in &spec.track_interfaces {
            let up = link_up.get(&t.name).copied().unwrap_or(true);
            let _ = tracker.observe(Observation::Interface { name: &t.name, up });
        }
        Ok(Tracking {
            tracker,
            _probes: probes,
            _senders: (script_tx, file_tx),
            scripts,
            files,
            links,
            history,
            file_values,
            link_up,
        })
    }
}

/// How an instance starts.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StartAs {
    /// Administrative standby (`halb node standby`).
    pub(crate) standby: bool,
    /// Continue as the master a replaced process was (`halb run --upgrade`).
    pub(crate) adopt_master: bool,
}

impl Instance {
    pub(crate) async fn spawn(
        spec: InstanceSpec,
        nl: Netlink,
        local_vrids: LocalVrids,
        start: StartAs,
        control: Option<&Control>,
        group: Option<GroupLink>,
        cmd_rx: mpsc::UnboundedReceiver<Command>,
    ) -> Result<(watch::Receiver<InstanceStatus>, JoinHandle<()>), crate::Error> {
        let StartAs {
            standby,
            adopt_master,
        } = start;
        let tracking = Tracking::start(&spec, None).await?;
        let own_link_up = tracking
            .link_up
            .get(&spec.interface)
            .copied()
            .unwrap_or(true);
        let notifier = new_notifier(&spec);
        let mut inst = Instance {
            mover: VipMover::new(nl.clone()),
            nl,
            local_vrids,
            io: None,
            router: None,
            policy: None,
            tracking,
            own_link_up,
            standby,
            gate: control.map(|c| InstanceGate::new(&spec.name, c)),
            group,
            group_fault: false,
            notifier,
            status_tx: watch::channel(blank_status(&spec)).0,
            held: Vec::new(),
            burst: None,
            refresh: None,
            release_at: None,
            stopping: None,
            waiting: Some("starting".into()),
            retry_at: Some(Instant::now()),
            cleaned_up: adopt_master,
            adopt_master,
            detached: false,
            rx_pause_until: None,
            send_failing: false,
            last_transition: None,
            counters: Counters::default(),
            spec,
        };
        let status_rx = inst.status_tx.subscribe();
        inst.publish();
        metrics::set_state(&inst.spec.name, StateKind::Initialize);
        let task = tokio::spawn(async move { inst.run(cmd_rx).await });
        Ok((status_rx, task))
    }

    /// Whether cluster control allows this instance to be master (always
    /// without cluster control).
    fn gate_open(&self) -> bool {
        self.gate.as_ref().is_none_or(|g| g.current.may_be_master)
    }

    /// The standby the router must have: administrative, or held by the gate.
    fn router_standby(&self) -> bool {
        self.standby || !self.gate_open()
    }

    fn own_fault(&self) -> bool {
        !self.own_link_up || self.tracking.tracker.outcome().fault
    }

    /// The fault the router should have: the group's verdict when grouped.
    fn router_fault(&self) -> bool {
        if self.group.is_some() {
            self.group_fault
        } else {
            self.own_fault()
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let router = self
            .router
            .as_ref()
            .and_then(|r| r.poll_timeout())
            .map(Instant::from_std);
        [
            router,
            self.release_at,
            self.retry_at,
            self.stopping.as_ref().map(|s| s.0),
            self.rx_pause_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut buf = vec![0u8; 2048];
        loop {
            if self.stopping.is_none()
                && self.router.is_none()
                && self.retry_at.is_some_and(|t| t <= Instant::now())
            {
                self.setup().await;
            }
            let wake = self.next_wake();
            let socket = match self.rx_pause_until {
                Some(t) if t > Instant::now() => None,
                _ => self.io.as_ref().map(|io| io.socket.clone()),
            };
            let event = tokio::select! {
                c = commands.recv() => Event::Command(c),
                r = recv_opt(socket, &mut buf) => Event::Rx(r),
                () = sleep_opt(wake) => Event::Timer,
                s = self.tracking.scripts.recv() => Event::Script(s),
                f = self.tracking.files.recv() => Event::File(f),
                l = link_event(&mut self.tracking.links) => Event::Link(l),
                g = gate_changed(&mut self.gate) => Event::Gate(g),
            };
            // halb: a gate change that arrived meanwhile is applied first.
            if !matches!(event, Event::Gate(_)) {
                if let Some(g) = self.gate.as_mut().and_then(InstanceGate::take_pending) {
                    self.on_gate(g).await;
                }
            }
            match event {
                Event::Command(None) => {
                    // The driver is gone: stop as on a shutdown.
                    if self.stopping.is_none() {
                        self.begin_shutdown(Instant::now() + Duration::from_secs(5), None)
                            .await;
                    }
                }
                Event::Command(Some(c)) => self.on_command(c).await,
                Event::Rx(r) => self.on_rx(r, &buf).await,
                Event::Timer => self.on_timer().await,
                Event::Script(Some(r)) => self.on_script(r).await,
                Event::File(Some(f)) => self.on_file(f).await,
                Event::Link(Some(l)) => self.on_link(l).await,
                // The channels stay open (their senders are kept): unreachable.
                Event::Script(None) | Event::File(None) => {}
                Event::Link(None) => self.link_watch_ended(),
                Event::Gate(g) => self.on_gate(g).await,
            }
            if self.finish_if_done().await {
                return;
            }
            self.publish();
        }
    }

    fn link_watch_ended(&mut self) {
        warn!(instance = %self.spec.name, "link watch stopped; link states are no longer followed");
        self.tracking.links = None;
    }

    // ----- setup -------------------------------------------------------

    async fn setup(&mut self) {
        match self.try_setup().await {
            Ok(()) => {
                self.waiting = None;
                self.retry_at = None;
            }
            Err(reason) => {
                if self.waiting.as_deref() != Some(reason.as_str()) {
                    warn!(instance = %self.spec.name, %reason, "vrrp instance waiting");
                }
                self.waiting = Some(reason);
                self.retry_at = Some(Instant::now() + SETUP_RETRY);
            }
        }
    }

    async fn try_setup(&mut self) -> Result<(), String> {
        let spec = self.spec.clone();
        let link = self
            .nl
            .find_link(&spec.interface)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("interface {} not found", spec.interface))?;
        let family = spec.family();
        let (vip_ifindex, vip_ifname, mac, vmac) = if spec.use_vmac {
            let vspec = VmacSpec {
                parent: spec.interface.clone(),
                vrid: spec.vrid.0,
                family: io_family(family),
                name: None,
                mode: VmacMode::Private,
            };
            let v = Vmacs::new(self.nl.clone())
                .ensure(&vspec)
                .await
                .map_err(|e| format!("virtual MAC interface: {e}"))?;
            if family == Family::Ipv4 {
                // The parent must not answer ARP for the VIPs on the macvlan
                // with its own MAC (keepalived sets the same).
                let path = format!("/proc/sys/net/ipv4/conf/{}/arp_ignore", spec.interface);
                if let Err(e) = std::fs::write(&path, "1") {
                    warn!(instance = %spec.name, %path, error = %e, "cannot set arp_ignore");
                }
            }
            (v.ifindex, v.name.clone(), MacAddr(v.mac), Some(v))
        } else {
            let mac = link
                .mac
                .ok_or_else(|| format!("interface {} has no MAC address", spec.interface))?;
            (link.ifindex, spec.interface.clone(), MacAddr(mac), None)
        };
        if !self.cleaned_up {
            // VIPs left by a crashed run are removed before the election.
            match self.mover.cleanup_stale(&vip_ifname, &spec.vips).await {
                Ok(removed) => {
                    for r in removed {
                        info!(instance = %spec.name, vip = %r.addr, "stale VIP removed at start");
                    }
                }
                Err(e) => warn!(instance = %spec.name, error = %e, "stale VIP cleanup failed"),
            }
            self.cleaned_up = true;
        }
        let primary = self.resolve_primary(link.ifindex).await?;
        let socket = VrrpSocket::open(TransportConfig {
            instance: spec.name.clone(),
            ifname: spec.interface.clone(),
            family: io_family(family),
            source: Some(primary),
            peers: spec.unicast_peers.clone(),
        })
        .map_err(|e| format!("VRRP socket: {e}"))?;
        let garp = GratuitousSender::open(vip_ifindex)
            .map_err(|e| format!("gratuitous ARP socket: {e}"))?;
        let router = Router::new(spec.router_config(primary)).map_err(|e| e.to_string())?;
        self.io = Some(Io {
            socket: Arc::new(socket),
            garp: Arc::new(garp),
            frames: gratuitous_frames(mac, &spec.vips),
            mac,
            primary,
            vip_ifindex,
            vmac,
        });
        self.policy = Some(self.rx_policy(&router));
        self.router = Some(router);
        info!(
            instance = %spec.name, interface = %spec.interface, vrid = spec.vrid.0,
            version = spec.version.number(), %primary, vip_interface = %vip_ifname,
            multicast = spec.unicast_peers.is_empty(), "vrrp instance started"
        );
        let now = now_std();
        let outcome = self.tracking.tracker.outcome();
        let fault = self.router_fault();
        let standby = self.router_standby();
        if let Some(r) = self.router.as_mut() {
            r.handle(now, Input::PriorityChanged(outcome.priority));
            if fault {
                r.handle(now, Input::Fault(true));
            }
            if standby {
                r.handle(now, Input::Standby(true));
            }
            r.handle(now, Input::Startup);
        }
        if let Some(g) = &self.group {
            g.send(GroupEvent::OwnFault {
                member: self.spec.name.clone(),
                fault: self.own_fault(),
            });
        }
        metrics::priority(&self.spec.name, outcome.priority.0);
        if std::mem::take(&mut self.adopt_master) {
            self.adopt(now).await;
            return Ok(());
        }
        self.run_actions(Mode::Normal).await;
        Ok(())
    }

    /// Continue as the master the replaced process was: an advert at once,
    /// the VIPs (still on the interface) taken as held, no election and no
    /// notify. A router that may not be master (fault, standby, a gate)
    /// stays backup like at any start.
    async fn adopt(&mut self, now: std::time::Instant) {
        let Some(r) = self.router.as_mut() else {
            return;
        };
        if !r.is_master() {
            r.handle(now, Input::ForceTakeover);
        }
        if !r.is_master() {
            // The old process leaves the VIPs on the interface: take them
            // off, or this backup would answer for them beside the master.
            warn!(instance = %self.spec.name, state = %r.state_kind(), "cannot continue as master after the upgrade (fault, standby or cluster gate); releasing the VIPs");
            self.run_actions(Mode::Normal).await;
            self.del_vips().await;
            return;
        }
        self.run_actions(Mode::Rebuild).await;
        info!(instance = %self.spec.name, "vrrp instance taken over from the previous process as master");
        self.on_transition(
            StateKind::Initialize,
            StateKind::Master,
            TransitionReason::Upgrade.as_str(),
            TransitionReason::Upgrade,
        );
    }

    async fn resolve_primary(&self, ifindex: u32) -> Result<IpAddr, String> {
        if let Some(src) = self.spec.unicast_source {
            return Ok(src);
        }
        let addrs = self
            .nl
            .addresses(ifindex)
            .await
            .map_err(|e| e.to_string())?;
        match self.spec.family() {
            Family::Ipv4 => primary_ipv4(&addrs, &self.spec.vip_addrs())
                .map(IpAddr::V4)
                .ok_or_else(|| format!("no IPv4 address on {}", self.spec.interface)),
            Family::Ipv6 => link_local_v6(&addrs).map(IpAddr::V6).ok_or_else(|| {
                format!(
                    "no usable link-local IPv6 address on {} yet",
                    self.spec.interface
                )
            }),
        }
    }

    fn rx_policy(&self, router: &Router) -> RxPolicy {
        let mut p = router.rx_policy();
        p.unicast_peers = self.spec.unicast_peers.clone();
        p.v3_ipv4_checksum = self.spec.v3_checksum;
        p
    }

    // ----- events ------------------------------------------------------

    async fn on_command(&mut self, c: Command) {
        match c {
            Command::Shutdown { deadline, done } => {
                if self.stopping.is_none() {
                    self.begin_shutdown(deadline, Some(done)).await;
                } else if let Some(s) = self.stopping.as_mut() {
                    s.0 = s.0.min(deadline);
                    let _ = done.send(());
                }
            }
            Command::Detach { done } => {
                self.detach();
                let _ = done.send(());
            }
            Command::Reload { spec, done } => {
                if self.stopping.is_none() {
                    self.reload(*spec).await;
                }
                let _ = done.send(());
            }
            Command::Standby(on) => {
                self.standby = on;
                let mode = if on { Mode::Resign } else { Mode::Normal };
                let effective = self.router_standby();
                self.feed(Input::Standby(effective), mode).await;
            }
            Command::Takeover => self.feed(Input::ForceTakeover, Mode::Normal).await,
            Command::Input(input) => {
                if let Input::Fault(f) = input {
                    self.group_fault = f;
                }
                self.feed(input, Mode::Normal).await;
            }
            Command::SetGroup(link) => {
                self.group = link;
                self.group_fault = false;
                // A fault imposed by the old group is lifted; the new group
                // orders it again if one of its members is faulty.
                let stale_fault = self.router.as_ref().is_some_and(|r| r.status().fault);
                if stale_fault && !self.own_fault() {
                    self.feed(Input::Fault(false), Mode::Normal).await;
                }
                match &self.group {
                    Some(g) => {
                        g.send(GroupEvent::OwnFault {
                            member: self.spec.name.clone(),
                            fault: self.own_fault(),
                        });
                        if let Some(r) = &self.router {
                            g.send(GroupEvent::Transition {
                                member: self.spec.name.clone(),
                                from: StateKind::Initialize,
                                to: r.state_kind(),
                                reason: TransitionReason::SyncGroup,
                            });
                        }
                    }
                    None => {
                        let f = self.own_fault();
                        self.feed(Input::Fault(f), Mode::Normal).await;
                    }
                }
            }
        }
    }

    /// Feeds one input to the router (if running) and executes its actions.
    async fn feed(&mut self, input: Input, mode: Mode) {
        if self.stopping.is_some() && !matches!(input, Input::AdvertReceived { .. }) {
            return;
        }
        let Some(r) = self.router.as_mut() else {
            return;
        };
        r.handle(now_std(), input);
        self.run_actions(mode).await;
    }

    async fn on_rx(&mut self, r: Result<Inbound, IoError>, buf: &[u8]) {
        let d = match r {
            Ok(Inbound::Accepted(d)) => d,
            // Counted by the transport already.
            Ok(Inbound::NotFromPeer { .. } | Inbound::Truncated { .. }) => {
                self.counters.rx_dropped += 1;
                return;
            }
            Err(e) => {
                debug!(instance = %self.spec.name, error = %e, "VRRP receive failed");
                self.rx_pause_until = Some(Instant::now() + Duration::from_millis(10));
                return;
            }
        };
        let Some(policy) = self.policy.as_ref() else {
            return;
        };
        let bytes = buf.get(..d.len).unwrap_or(buf);
        let result = if d.ip_header_included {
            receive_ipv4(bytes, policy)
        } else {
            let src = match d.src {
                IpAddr::V6(a) => a,
                IpAddr::V4(_) => Ipv6Addr::UNSPECIFIED,
            };
            let dst = match d.dst {
                Some(IpAddr::V6(a)) => a,
                _ => Ipv6Addr::UNSPECIFIED,
            };
            let meta = Ipv6Meta {
                src,
                dst,
                hop_limit: d.hop_limit.unwrap_or(0),
            };
            receive_ipv6(bytes, meta, policy)
        };
        match result {
            Ok(rx) => {
                metrics::count("halb_vrrp_adverts_received_total", &self.spec.name);
                if self.release_at.is_some() && !rx.advert.priority.is_resign() {
                    // halb: the new master is there; let go after a short grace.
                    let soon = Instant::now() + RELEASE_GRACE;
                    self.release_at = self.release_at.map(|t| t.min(soon));
                }
                let input = Input::AdvertReceived {
                    from: rx.from,
                    advert: rx.advert,
                    addresses_match: rx.addresses_match,
                };
                self.feed(input, Mode::Normal).await;
            }
            Err(DropReason::VridMismatch) if self.is_sibling(bytes, d.ip_header_included) => {}
            Err(reason) => {
                self.counters.rx_dropped += 1;
                record_rx_drop(&self.spec.name, reason);
                debug!(instance = %self.spec.name, src = %d.src, reason = reason.as_label(), "VRRP packet dropped");
            }
        }
    }

    fn is_sibling(&self, bytes: &[u8], ip_header_included: bool) -> bool {
        let Some(vrid) = vrid_of(bytes, ip_header_included) else {
            return false;
        };
        let key = (
            self.spec.interface.clone(),
            family_tag(self.spec.family()),
            vrid,
        );
        self.local_vrids
            .read()
            .map(|s| s.contains(&key))
            .unwrap_or(false)
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        if self.rx_pause_until.is_some_and(|t| t <= now) {
            self.rx_pause_until = None;
        }
        if self.release_at.is_some_and(|t| t <= now) {
            self.release_at = None;
            self.del_vips().await;
        }
        if let Some(r) = self.router.as_mut() {
            if r.poll_timeout().is_some_and(|t| t <= now.into_std()) {
                r.handle_timeout(now.into_std());
                self.run_actions(Mode::Normal).await;
            }
        }
    }

    async fn on_script(&mut self, r: ScriptResult) {
        let ok = r.success();
        let h = self.tracking.history.entry(r.name.clone()).or_default();
        h.push_back(ok);
        while h.len() > SCRIPT_HISTORY {
            h.pop_front();
        }
        let obs = Observation::Script {
            name: &r.name,
            success: ok,
        };
        self.observe(obs).await;
    }

    async fn on_file(&mut self, f: FileReading) {
        let value = match &f.value {
            Ok(v) => *v,
            Err(FileReadError::Missing) => 0,
            Err(e) => {
                debug!(instance = %self.spec.name, file = %f.name, error = %e, "track file unreadable: counts as 0");
                0
            }
        };
        self.tracking.file_values.insert(f.name.clone(), value);
        self.observe(Observation::File {
            name: &f.name,
            value,
        })
        .await;
    }

    async fn on_link(&mut self, ev: LinkEvent) {
        let up = ev.state.is_up();
        self.tracking.link_up.insert(ev.name.clone(), up);
        info!(instance = %self.spec.name, interface = %ev.name, up, "link state");
        if ev.name == self.spec.interface && up != self.own_link_up {
            let before = self.own_fault();
            self.own_link_up = up;
            self.fault_changed(before).await;
        }
        if self.spec.track_interfaces.iter().any(|t| t.name == ev.name) {
            self.observe(Observation::Interface { name: &ev.name, up })
                .await;
        }
    }

    async fn observe(&mut self, obs: Observation<'_>) {
        let before_fault = self.own_fault();
        match self.tracking.tracker.observe(obs) {
            Ok(Some(outcome)) => {
                info!(
                    instance = %self.spec.name,
                    priority = outcome.priority.0,
                    fault = outcome.fault,
                    "tracking changed the effective priority / fault"
                );
                metrics::priority(&self.spec.name, outcome.priority.0);
                self.feed(Input::PriorityChanged(outcome.priority), Mode::Normal)
                    .await;
                self.fault_changed(before_fault).await;
            }
            Ok(None) => {}
            Err(e) => {
                debug!(instance = %self.spec.name, error = %e, "observation for an unknown tracker")
            }
        }
    }

    async fn fault_changed(&mut self, before: bool) {
        let now = self.own_fault();
        if now == before {
            return;
        }
        match &self.group {
            Some(g) => g.send(GroupEvent::OwnFault {
                member: self.spec.name.clone(),
                fault: now,
            }),
            None => self.feed(Input::Fault(now), Mode::Normal).await,
        }
    }

    /// A new gate from cluster control (see [`super::gate`]).
    async fn on_gate(&mut self, new: Gate) {
        let Some(g) = self.gate.as_mut() else {
            return;
        };
        let old = std::mem::replace(&mut g.current, new);
        if old.may_be_master != new.may_be_master {
            info!(instance = %self.spec.name, may_be_master = new.may_be_master, "cluster gate");
        }
        if self.standby {
            // Administrative standby wins; the gate applies when it ends.
            return;
        }
        if old.may_be_master && !new.may_be_master {
            // Release at once: the next owner waits for our report.
            self.feed(Input::Standby(true), Mode::Normal).await;
            return;
        }
        if !new.may_be_master {
            return;
        }
        if !old.may_be_master {
            self.feed(Input::Standby(false), Mode::Normal).await;
            // No live master known (none heard, or it resigned): cluster
            // control has established that no other node holds the
            // instance, so there is nothing to wait for.
            let no_master = self.router.as_ref().is_some_and(|r| {
                r.state_kind() == StateKind::Backup && r.status().master.is_none()
            });
            if no_master {
                self.feed(Input::ForceTakeover, Mode::Normal).await;
                return;
            }
        }
        if new.takeover > old.takeover {
            info!(instance = %self.spec.name, "cluster takeover: the previous master's node is gone");
            self.feed(Input::ForceTakeover, Mode::Normal).await;
        }
    }

    // ----- actions -----------------------------------------------------

    async fn run_actions(&mut self, mode: Mode) {
        let mut actions = Vec::new();
        if let Some(r) = self.router.as_mut() {
            while let Some(a) = r.poll_action() {
                actions.push(a);
            }
        }
        if actions.is_empty() {
            return;
        }
        // halb: add the VIPs and send the first gratuitous round before the
        // advert that makes the old master let go.
        let becoming_master = actions.contains(&Action::AddVips);
        let mut garp_done = false;
        if becoming_master {
            let added = self.add_vips(mode == Mode::Rebuild).await;
            if mode != Mode::Rebuild || added {
                self.start_gratuitous().await;
            }
            garp_done = true;
        }
        for a in actions {
            match a {
                Action::SendAdvert { priority, .. } => self.send_advert(priority).await,
                Action::AddVips => {}
                Action::DelVips => {
                    if mode == Mode::Resign || (self.stopping.is_some() && mode != Mode::Rebuild) {
                        // halb: keep the VIPs until the new master is heard.
                        let hold = self.spec.advert_interval.as_duration() + RELEASE_GRACE * 4;
                        let mut at = Instant::now() + hold;
                        if let Some((deadline, _)) = &self.stopping {
                            at = at.min(*deadline);
                        }
                        self.stop_refresh();
                        self.release_at = Some(at);
                    } else {
                        self.del_vips().await;
                    }
                }
                Action::SendGratuitous => {
                    if garp_done {
                        garp_done = false;
                    } else {
                        self.start_gratuitous().await;
                    }
                }
                Action::StateChanged { from, to, reason } => {
                    if mode != Mode::Rebuild {
                        self.on_transition(from, to, reason.as_str(), reason);
                    }
                }
                Action::Warn(Warning::AddressListMismatch { from }) => {
                    warn!(instance = %self.spec.name, %from, "advert address list differs from ours; it still takes part in the election");
                }
                Action::Warn(w) => {
                    debug!(instance = %self.spec.name, warning = ?w, "router warning")
                }
            }
        }
    }

    fn on_transition(
        &mut self,
        from: StateKind,
        to: StateKind,
        reason_text: &str,
        reason: TransitionReason,
    ) {
        let priority = self
            .router
            .as_ref()
            .map_or(self.spec.priority, |r| r.priority());
        info!(
            instance = %self.spec.name, %from, %to, reason = reason_text,
            priority = priority.0, "vrrp state changed"
        );
        self.counters.transitions += 1;
        metrics::set_state(&self.spec.name, to);
        metrics::transition(&self.spec.name, to);
        self.last_transition = Some(TransitionRecord {
            at: SystemTime::now(),
            from,
            to,
            reason: reason_text.to_owned(),
        });
        // A hand-over between processes changes nothing a notify program
        // acts on: the node stays master.
        if reason != TransitionReason::Upgrade {
            if let Some(n) = &self.notifier {
                n.notify(notify_state(to), priority.0);
            }
        }
        if let Some(g) = &self.group {
            g.send(GroupEvent::Transition {
                member: self.spec.name.clone(),
                from,
                to,
                reason,
            });
        }
        if to == StateKind::Master {
            self.start_refresh();
        } else {
            self.stop_refresh();
        }
    }

    async fn send_advert(&mut self, priority: Priority) {
        let (Some(router), Some(io)) = (self.router.as_ref(), self.io.as_ref()) else {
            return;
        };
        let advert = router.advert(priority);
        let dsts: Vec<IpAddr> = if self.spec.unicast_peers.is_empty() {
            match self.spec.family() {
                Family::Ipv4 => vec![IpAddr::V4(MULTICAST_V4)],
                Family::Ipv6 => vec![IpAddr::V6(MULTICAST_V6)],
            }
        } else {
            self.spec.unicast_peers.clone()
        };
        let mut failed = None;
        for dst in dsts {
            let ctx = match (io.primary, dst) {
                (IpAddr::V4(src), IpAddr::V4(dst)) => ChecksumCtx::Ipv4 {
                    src,
                    dst,
                    v3: self.spec.v3_checksum,
                },
                (IpAddr::V6(src), IpAddr::V6(dst)) => ChecksumCtx::Ipv6 { src, dst },
                _ => continue,
            };
            let bytes = match advert.to_bytes(&ctx) {
                Ok(b) => b,
                Err(e) => {
                    error!(instance = %self.spec.name, error = %e, "advert not built");
                    failed = Some(e.to_string());
                    continue;
                }
            };
            match io.socket.send_to(&bytes, dst).await {
                Ok(()) => metrics::count("halb_vrrp_adverts_sent_total", &self.spec.name),
                Err(e) => failed = Some(e.to_string()),
            }
        }
        match failed {
            Some(e) => {
                self.counters.send_errors += 1;
                metrics::count("halb_vrrp_send_errors_total", &self.spec.name);
                if !self.send_failing {
                    warn!(instance = %self.spec.name, error = %e, "advert not sent");
                }
                self.send_failing = true;
            }
            None => {
                if self.send_failing {
                    info!(instance = %self.spec.name, "adverts are sent again");
                }
                self.send_failing = false;
            }
        }
    }

    /// Adds the VIPs; with `only_missing`, those not held yet. Returns
    /// whether any was added.
    async fn add_vips(&mut self, only_missing: bool) -> bool {
        self.release_at = None;
        let Some(io) = self.io.as_ref() else {
            return false;
        };
        let ifindex = io.vip_ifindex;
        let mut added = false;
        for vip in self.spec.vips.clone() {
            if only_missing && self.held.contains(&vip) {
                continue;
            }
            match self.mover.add(ifindex, vip).await {
                Ok(()) => added = true,
                Err(e) => {
                    self.counters.vip_errors += 1;
                    metrics::count("halb_vrrp_vip_errors_total", &self.spec.name);
                    error!(instance = %self.spec.name, %vip, error = %e, "VIP not added");
                }
            }
        }
        self.held = self.spec.vips.clone();
        added
    }

    async fn del_vips(&mut self) {
        self.release_at = None;
        self.stop_bursts();
        let Some(io) = self.io.as_ref() else {
            self.held.clear();
            return;
        };
        let ifindex = io.vip_ifindex;
        let mut all = self.held.clone();
        for v in &self.spec.vips {
            if !all.contains(v) {
                all.push(*v);
            }
        }
        for vip in all {
            if let Err(e) = self.mover.del(ifindex, vip).await {
                self.counters.vip_errors += 1;
                metrics::count("halb_vrrp_vip_errors_total", &self.spec.name);
                error!(instance = %self.spec.name, %vip, error = %e, "VIP not removed");
            }
        }
        self.held.clear();
    }

    fn stop_bursts(&mut self) {
        if let Some(b) = self.burst.take() {
            b.abort();
        }
        self.stop_refresh();
    }

    fn stop_refresh(&mut self) {
        if let Some(r) = self.refresh.take() {
            r.cancel();
        }
    }

    fn start_refresh(&mut self) {
        self.stop_refresh();
        let g = self.spec.garp;
        if g.refresh.is_zero() || g.repeat == 0 {
            return;
        }
        if let Some(io) = self.io.as_ref() {
            let burst = Burst {
                repeat: g.repeat,
                interval: g.interval,
            };
            self.refresh = Some(io.garp.spawn_refresh(io.frames.clone(), burst, g.refresh));
        }
    }

    /// First round now (inline), the other rounds on a task; a burst in
    /// progress is restarted.
    async fn start_gratuitous(&mut self) {
        if let Some(b) = self.burst.take() {
            b.abort();
        }
        let g = self.spec.garp;
        let Some(io) = self.io.as_ref() else {
            return;
        };
        if g.repeat == 0 || io.frames.is_empty() {
            return;
        }
        self.counters.gratuitous_bursts += 1;
        metrics::count("halb_vrrp_gratuitous_bursts_total", &self.spec.name);
        for f in &io.frames {
            if let Err(e) = io.garp.socket().send(f).await {
                warn!(instance = %self.spec.name, error = %e, "gratuitous frame not sent");
            }
        }
        if g.repeat > 1 {
            let sender = Arc::clone(&io.garp);
            let frames = io.frames.clone();
            let burst = Burst {
                repeat: g.repeat - 1,
                interval: g.interval,
            };
            self.burst = Some(tokio::spawn(async move {
                tokio::time::sleep(burst.interval).await;
                sender.burst(&frames, burst).await;
            }));
        }
    }

    // ----- reload ------------------------------------------------------

    async fn reload(&mut self, new: InstanceSpec) {
        let old = std::mem::replace(&mut self.spec, new);
        if old == self.spec {
            return;
        }
        if old.notify != self.spec.notify || old.notify_timeout != self.spec.notify_timeout {
            if let Some(n) = self.notifier.take() {
                tokio::spawn(n.close());
            }
            self.notifier = new_notifier(&self.spec);
        }
        if old.tracking_differs(&self.spec) {
            let before_fault = self.own_fault();
            match Tracking::start(&self.spec, Some(&self.tracking)).await {
                Ok(t) => self.tracking = t,
                Err(e) => {
                    error!(instance = %self.spec.name, error = %e, "new tracking rejected; the old one keeps running")
                }
            }
            self.own_link_up = self
                .tracking
                .link_up
                .get(&self.spec.interface)
                .copied()
                .unwrap_or(self.own_link_up);
            let p = self.tracking.tracker.outcome().priority;
            metrics::priority(&self.spec.name, p.0);
            self.feed(Input::PriorityChanged(p), Mode::Normal).await;
            self.fault_changed(before_fault).await;
        }
        if self.io.is_none() {
            // Not running yet: the next setup uses the new spec.
            self.retry_at = Some(Instant::now());
            return;
        }
        if old.transport_differs(&self.spec) {
            if let Err(e) = self.reopen_transport().await {
                error!(instance = %self.spec.name, error = %e, "new unicast settings not applied; the old socket is kept");
            }
        }
        if old.vips != self.spec.vips {
            if let Some(io) = self.io.as_mut() {
                io.frames = gratuitous_frames(io.mac, &self.spec.vips);
            }
            // VIPs no longer configured go now; new ones come with the rebuild.
            let gone: Vec<Vip> = self
                .held
                .iter()
                .filter(|v| !self.spec.vips.contains(v))
                .copied()
                .collect();
            if let Some(io) = self.io.as_ref() {
                for vip in &gone {
                    if let Err(e) = self.mover.del(io.vip_ifindex, *vip).await {
                        error!(instance = %self.spec.name, %vip, error = %e, "VIP not removed");
                    }
                }
            }
            self.held.retain(|v| !gone.contains(v));
        }
        self.rebuild_router().await;
        let master = self.router.as_ref().is_some_and(|r| r.is_master());
        if master && (old.garp != self.spec.garp || old.vips != self.spec.vips) {
            self.start_refresh();
        }
    }

    async fn reopen_transport(&mut self) -> Result<(), String> {
        let link = self
            .nl
            .link(&self.spec.interface)
            .await
            .map_err(|e| e.to_string())?;
        let primary = self.resolve_primary(link.ifindex).await?;
        let socket = VrrpSocket::open(TransportConfig {
            instance: self.spec.name.clone(),
            ifname: self.spec.interface.clone(),
            family: io_family(self.spec.family()),
            source: Some(primary),
            peers: self.spec.unicast_peers.clone(),
        })
        .map_err(|e| e.to_string())?;
        if let Some(io) = self.io.as_mut() {
            io.socket = Arc::new(socket);
            io.primary = primary;
        }
        Ok(())
    }

    /// Replaces the router by one built from the new spec, in the same
    /// state, without reporting a transition unless the state really changes.
    async fn rebuild_router(&mut self) {
        let (Some(old), Some(io)) = (self.router.as_ref(), self.io.as_ref()) else {
            return;
        };
        let rc = self.spec.router_config(io.primary);
        if old.config() == &rc {
            self.policy = Some(self.rx_policy(old));
            return;
        }
        let old_kind = old.state_kind();
        let mut r = match Router::new(rc) {
            Ok(r) => r,
            Err(e) => {
                error!(instance = %self.spec.name, error = %e, "new router config rejected; the old one keeps running");
                return;
            }
        };
        let now = now_std();
        r.handle(
            now,
            Input::PriorityChanged(self.tracking.tracker.outcome().priority),
        );
        if self.router_fault() {
            r.handle(now, Input::Fault(true));
        }
        if self.router_standby() {
            r.handle(now, Input::Standby(true));
        }
        r.handle(now, Input::Startup);
        if old_kind == StateKind::Master && !r.is_master() {
            r.handle(now, Input::ForceTakeover);
        }
        self.policy = Some(self.rx_policy(&r));
        self.router = Some(r);
        self.run_actions(Mode::Rebuild).await;
        let new_kind = self
            .router
            .as_ref()
            .map_or(StateKind::Initialize, |r| r.state_kind());
        if new_kind != old_kind {
            if new_kind != StateKind::Master && !self.held.is_empty() {
                self.del_vips().await;
            }
            self.on_transition(old_kind, new_kind, "reload", TransitionReason::Takeover);
        }
    }

    // ----- shutdown ----------------------------------------------------

    /// Leave the instance to the process that replaces this one: stop
    /// sending (adverts, gratuitous ARP) and end, keeping the VIPs and the
    /// virtual MAC interface.
    fn detach(&mut self) {
        self.stop_bursts();
        self.stop_refresh();
        self.release_at = None;
        self.retry_at = None;
        self.notifier = None;
        self.detached = true;
        let state = self
            .router
            .as_ref()
            .map_or(StateKind::Initialize, |r| r.state_kind());
        info!(instance = %self.spec.name, %state, "vrrp instance handed over to the new process");
    }

    async fn begin_shutdown(&mut self, deadline: Instant, done: Option<oneshot::Sender<()>>) {
        self.stopping = Some((deadline, done));
        self.retry_at = None;
        if let Some(r) = self.router.as_mut() {
            r.handle(now_std(), Input::Shutdown);
        }
        self.run_actions(Mode::Resign).await;
        if self.router.is_none() {
            // Never started: report the stop all the same.
            metrics::set_state(&self.spec.name, StateKind::Initialize);
        }
    }

    /// Ends the task once a shutdown has released the VIPs (or its deadline passed).
    async fn finish_if_done(&mut self) -> bool {
        if self.detached {
            return true;
        }
        let Some((deadline, _)) = &self.stopping else {
            return false;
        };
        let deadline = *deadline;
        if self.release_at.is_some() && Instant::now() < deadline {
            return false;
        }
        if self.release_at.is_some() || !self.held.is_empty() {
            self.del_vips().await;
        }
        self.stop_bursts();
        if let Some(n) = self.notifier.take() {
            if tokio::time::timeout_at(deadline, n.close()).await.is_err() {
                warn!(instance = %self.spec.name, "notify programs still running at the shutdown deadline");
            }
        }
        if let Some(v) = self.io.as_ref().and_then(|io| io.vmac.clone()) {
            match Vmacs::new(self.nl.clone()).remove(&v.name).await {
                Ok(_) => {
                    debug!(instance = %self.spec.name, vmac = %v.name, "virtual MAC interface removed")
                }
                Err(e) => {
                    warn!(instance = %self.spec.name, vmac = %v.name, error = %e, "virtual MAC interface not removed")
                }
            }
        }
        self.publish();
        info!(instance = %self.spec.name, "vrrp instance stopped");
        if let Some((_, Some(done))) = self.stopping.take() {
            let _ = done.send(());
        }
        true
    }

    // ----- status ------------------------------------------------------

    fn publish(&mut self) {
        let mut s = blank_status(&self.spec);
        if let Some(r) = &self.router {
            let st = r.status();
            s.state = st.state;
            s.effective_priority = st.effective_priority.0;
            s.master = st.master;
            s.master_priority = st.master_priority.map(|p| p.0);
            s.fault = st.fault;
            self.counters_into(&mut s.counters, r);
        } else {
            s.effective_priority = self.tracking.tracker.outcome().priority.0;
            s.counters = self.counters;
        }
        s.primary_address = self.io.as_ref().map(|io| io.primary);
        s.last_transition = self.last_transition.clone();
        s.vips_held = !self.held.is_empty();
        s.own_fault = self.own_fault();
        s.waiting = self.waiting.clone();
        // Administrative standby; a router held back by the gate is `gated`.
        s.standby = self.standby;
        s.gated = !self.gate_open();
        if let Some(g) = self.gate.as_mut() {
            g.report(
                s.state == StateKind::Master || s.vips_held,
                s.effective_priority,
            );
        }
        self.status_tx.send_replace(s);
    }

    fn counters_into(&self, out: &mut Counters, r: &Router) {
        *out = self.counters;
        out.router = r.stats();
    }
}

fn new_notifier(spec: &InstanceSpec) -> Option<Notifier> {
    if spec.notify.is_empty() {
        return None;
    }
    Some(Notifier::spawn(NotifySpec {
        kind: NotifyKind::Instance,
        name: spec.name.clone(),
        programs: spec.notify.clone(),
        timeout: spec.notify_timeout,
    }))
}

pub(crate) fn blank_status(spec: &InstanceSpec) -> InstanceStatus {
    InstanceStatus {
        name: spec.name.clone(),
        interface: spec.interface.clone(),
        vrid: spec.vrid.0,
        version: spec.version.number(),
        family: match spec.family() {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        },
        state: StateKind::Initialize,
        base_priority: spec.priority.0,
        effective_priority: spec.priority.0,
        primary_address: None,
        master: None,
        master_priority: None,
        last_transition: None,
        vips: spec.vips.iter().map(|v| v.to_string()).collect(),
        vips_held: false,
        fault: false,
        own_fault: false,
        standby: false,
        gated: false,
        waiting: None,
        sync_group: spec.sync_group.clone(),
        unicast_peers: spec.unicast_peers.clone(),
        counters: Counters::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vrid_byte_with_and_without_ip_header() {
        let mut v4 = vec![0x45u8; 20];
        v4.extend_from_slice(&[0x31, 51, 100, 1]);
        assert_eq!(vrid_of(&v4, true), Some(51));
        assert_eq!(vrid_of(&[0x31, 7, 100], false), Some(7));
        assert_eq!(vrid_of(&[0x46], true), None);
        assert_eq!(vrid_of(&[], false), None);
    }

    #[test]
    fn frames_per_family() {
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let vips = [
            Vip::host("10.0.0.1".parse().expect("ip")),
            Vip::host("2001:db8::1".parse().expect("ip")),
        ];
        let f = gratuitous_frames(mac, &vips);
        assert_eq!(f[0].len(), GratuitousArp::FRAME_LEN);
        assert_eq!(&f[0][12..14], &[0x08, 0x06]);
        assert_eq!(f[1].len(), UnsolicitedNa::FRAME_LEN);
        assert_eq!(&f[1][12..14], &[0x86, 0xdd]);
    }

    #[test]
    fn notify_states_map_like_keepalived() {
        assert_eq!(notify_state(StateKind::Initialize), NotifyState::Stop);
        assert_eq!(notify_state(StateKind::Master), NotifyState::Master);
        assert_eq!(notify_state(StateKind::Backup), NotifyState::Backup);
        assert_eq!(notify_state(StateKind::Fault), NotifyState::Fault);
    }
}
