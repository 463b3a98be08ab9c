//! [`XdpBalancer`]: loads `bpf/halb_xdp.c`, attaches it, and keeps its maps
//! in step with the config and with server health.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use aya::maps::{Array, ArrayOfMaps, HashMap, MapData, PerCpuArray, PerCpuValues};
use aya::programs::Xdp;
use aya::Ebpf;
use control::config::Config;

use crate::abi::{
    self, Backend, BackendStats, Flow, FlowKey, GlobalStats, ProgramConfig, Summable, VipKey,
    VipMeta, VipStats,
};
use crate::error::{chain, load_error, map_error, xdp_program, xdp_program_mut, Error};
use crate::nexthop::{NextHop, Resolution, Resolver};
use crate::plan::{
    build_table, live_servers, plan, AttachMode, ForwardMode, IndexPool, KernelTable,
    ServerCondition, ServerInput, ServerPlan, VipPlan,
};
use crate::testrun::{run_live, run_once, TestOutcome};

/// `BPF_F_INNER_MAP`: inner maps of one outer map may differ in size.
const BPF_F_INNER_MAP: u32 = 1 << 12;
const PROGRAM: &str = "halb_xdp";
/// Smallest share of the flow table per CPU (each CPU has its own LRU).
const MIN_FLOWS_PER_CPU: u32 = 64;

/// Settings of the balancer that are not part of the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpOptions {
    /// /16 prefix of outer IPv4 source addresses (low 16 bits come from the
    /// flow hash). Default `172.16.0.0`.
    pub encap_source_v4: Ipv4Addr,
    /// /64 prefix of outer IPv6 source addresses (low 64 bits = the flow
    /// hash). Default `fd68:616c:6200::`.
    pub encap_source_v6: Ipv6Addr,
    /// Capacity of the flow table (LRU, 5-tuple to backend). Default 262144.
    /// Every possible CPU keeps its own LRU lists with an equal share (at
    /// least 64 entries each; the kernel rounds to a multiple of the CPU
    /// count): a flow stays on the CPU its receive queue maps it to.
    pub flow_table_entries: u32,
}

impl Default for XdpOptions {
    fn default() -> XdpOptions {
        XdpOptions {
            encap_source_v4: Ipv4Addr::new(172, 16, 0, 0),
            encap_source_v6: Ipv6Addr::new(0xfd68, 0x616c, 0x6200, 0, 0, 0, 0, 0),
            flow_table_entries: 1 << 18,
        }
    }
}

/// XDP state of an interface, for `halb status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpState {
    /// Attached in the driver.
    Native,
    /// Attached in the generic path.
    Generic,
    /// Not attached (see the reason).
    Off,
}

impl From<AttachMode> for XdpState {
    fn from(m: AttachMode) -> XdpState {
        match m {
            AttachMode::Native => XdpState::Native,
            AttachMode::Generic => XdpState::Generic,
        }
    }
}

/// One interface in [`XdpStatus`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InterfaceStatus {
    /// Interface name.
    pub interface: String,
    /// Attached mode, or off.
    pub mode: XdpState,
    /// Why it is off, when it should not be.
    pub reason: Option<String>,
    /// Frontends that asked for this interface.
    pub frontends: Vec<String>,
}

/// One server in [`FrontendXdpStatus`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServerXdpStatus {
    /// Server name.
    pub name: String,
    /// Address packets are forwarded to.
    pub address: IpAddr,
    /// Live, drained, down or standby.
    pub condition: ServerCondition,
    /// Maglev slots it holds (0 unless live).
    pub slots: u32,
    /// Whether its next hop (route and neighbour MAC) is known; packets to
    /// an unresolved server are dropped and counted until it is.
    pub resolved: bool,
}

/// One XDP frontend in [`XdpStatus`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FrontendXdpStatus {
    /// Frontend name.
    pub name: String,
    /// VIP and port.
    pub vip: SocketAddr,
    /// `"tcp"` or `"udp"`.
    pub protocol: &'static str,
    /// Forwarding.
    pub forwarding: ForwardMode,
    /// Interface.
    pub interface: String,
    /// Servers.
    pub servers: Vec<ServerXdpStatus>,
    /// Removed servers still carrying pinned flows until their drain ends.
    pub draining_removed: usize,
}

/// A frontend that asked for XDP and is served by user space instead.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Fallback {
    /// Frontend name.
    pub frontend: String,
    /// Why.
    pub reason: String,
}

/// Everything `halb status` shows about XDP.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct XdpStatus {
    /// Interfaces the config names for XDP.
    pub interfaces: Vec<InterfaceStatus>,
    /// Frontends served by the program.
    pub frontends: Vec<FrontendXdpStatus>,
    /// Frontends that fell back to user space.
    pub fallback: Vec<Fallback>,
}

impl XdpStatus {
    /// The status when there is no balancer at all (not built, no
    /// privilege): every XDP interface of `config` is off for `reason`.
    pub fn off(config: &Config, reason: &str) -> XdpStatus {
        let (plans, rejected) = plan(config);
        let mut interfaces: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for p in &plans {
            interfaces
                .entry(p.interface.clone())
                .or_default()
                .push(p.frontend.clone());
        }
        XdpStatus {
            interfaces: interfaces
                .into_iter()
                .map(|(interface, frontends)| InterfaceStatus {
                    interface,
                    mode: XdpState::Off,
                    reason: Some(reason.to_string()),
                    frontends,
                })
                .collect(),
            frontends: Vec::new(),
            fallback: plans
                .iter()
                .map(|p| Fallback {
                    frontend: p.frontend.clone(),
                    reason: reason.to_string(),
                })
                .chain(rejected.into_iter().map(|r| Fallback {
                    frontend: r.frontend,
                    reason: r.reason,
                }))
                .collect(),
        }
    }
}

/// What [`XdpBalancer::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct ApplyReport {
    /// Frontends now served by the program.
    pub kernel: Vec<String>,
    /// Frontends that asked for XDP but must use the user-space L4 path.
    pub fallback: Vec<Fallback>,
}

impl ApplyReport {
    /// Whether `frontend` is served by the program.
    pub fn in_kernel(&self, frontend: &str) -> bool {
        self.kernel.iter().any(|f| f == frontend)
    }
}

/// A server for [`XdpBalancer::set_backends`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// Name (unique within the frontend).
    pub name: String,
    /// Weight; 0 = drained (keeps pinned flows, gets no new ones).
    pub weight: u16,
    /// Address.
    pub address: IpAddr,
    /// Health.
    pub up: bool,
}

impl ServerSpec {
    /// A server spec.
    pub fn new(name: impl Into<String>, weight: u16, address: IpAddr, up: bool) -> ServerSpec {
        ServerSpec {
            name: name.into(),
            weight,
            address,
            up,
        }
    }
}

/// Summed counters of one frontend and its servers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FrontendStats {
    /// The VIP's counters.
    pub vip: VipStats,
    /// Per server (by name).
    pub servers: BTreeMap<String, BackendStats>,
}

/// Summed counters of the program.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stats {
    /// Packets not forwarded and how forwarded ones left.
    pub global: GlobalStats,
    /// Per frontend.
    pub frontends: BTreeMap<String, FrontendStats>,
}

/// A flow in the flow table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedFlow {
    /// Client address and port.
    pub client: SocketAddr,
    /// VIP and port.
    pub vip: SocketAddr,
    /// IP protocol number.
    pub protocol: u8,
    /// Frontend and server it is pinned to, if the backend index is known.
    pub server: Option<(String, String)>,
}

#[derive(Debug)]
struct ServerEntry {
    name: String,
    address: IpAddr,
    weight: u16,
    backup: bool,
    up: bool,
    drained: bool,
    index: u32,
    generation: u32,
    /// The ACTIVE flag last written to the kernel.
    active: bool,
    /// The resolved next hop, if any.
    hop: Option<NextHop>,
}

#[derive(Debug)]
struct FrontendEntry {
    plan: VipPlan,
    vip_index: u32,
    servers: Vec<ServerEntry>,
    /// The table in the kernel (`None` = the empty table).
    table: Option<KernelTable>,
    /// Removed servers still draining: backend index and until when.
    removed: Vec<(u32, Instant)>,
}

#[derive(Debug)]
struct Attachment {
    mode: AttachMode,
    /// The BPF link (see [`crate::link`]); closing it detaches, unless a
    /// new process holds it too.
    link: Option<OwnedFd>,
    error: Option<String>,
    frontends: Vec<String>,
}

/// An XDP attachment handed from one halb process to the next (`halb run
/// --upgrade`): the interface, its mode, and the BPF link.
#[derive(Debug)]
pub struct HandedLink {
    pub interface: String,
    pub mode: AttachMode,
    pub link: OwnedFd,
}

/// The XDP L4 balancer: one loaded program, attached to every interface the
/// config's XDP frontends name, with maps the daemon drives.
///
/// Lifecycle for the daemon:
/// [`XdpBalancer::new`] (load + first [`apply`](XdpBalancer::apply)),
/// [`apply`](XdpBalancer::apply) on reload (no detach unless an interface or
/// mode changes), [`set_server_health`](XdpBalancer::set_server_health) /
/// [`set_server_drained`](XdpBalancer::set_server_drained) /
/// [`set_backends`](XdpBalancer::set_backends) on health and admin events,
/// [`maintain`](XdpBalancer::maintain) and
/// [`export_metrics`](XdpBalancer::export_metrics) every few seconds,
/// [`status`](XdpBalancer::status) for `halb status`,
/// [`shutdown`](XdpBalancer::shutdown) (or drop) to detach.
pub struct XdpBalancer {
    ebpf: Ebpf,
    vips: HashMap<MapData, VipKey, VipMeta>,
    maglev: ArrayOfMaps<MapData, Array<MapData, u32>>,
    backends: Array<MapData, Backend>,
    flows: HashMap<MapData, FlowKey, Flow>,
    vip_stats: PerCpuArray<MapData, VipStats>,
    backend_stats: PerCpuArray<MapData, BackendStats>,
    global_stats: PerCpuArray<MapData, GlobalStats>,
    nr_cpus: usize,
    vip_pool: IndexPool,
    backend_pool: IndexPool,
    frontends: BTreeMap<String, FrontendEntry>,
    interfaces: BTreeMap<String, Attachment>,
    /// Links of the process this one replaces, taken over (switched to
    /// this program) when their interface is attached in the same mode.
    inherited: BTreeMap<String, (AttachMode, OwnedFd)>,
    fallback: Vec<Fallback>,
    /// Backend index -> (frontend, server), for flows and removed servers.
    owners: BTreeMap<u32, (String, String)>,
    logged: HashSet<(String, String)>,
    resolver: Resolver,
}

impl std::fmt::Debug for XdpBalancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpBalancer")
            .field("frontends", &self.frontends.keys().collect::<Vec<_>>())
            .field("interfaces", &self.interfaces)
            .finish_non_exhaustive()
    }
}

fn take_map<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, Error>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or(Error::MissingObject { kind: "map", name })?;
    T::try_from(map).map_err(|e| map_error(name, &e))
}

fn program_mut(ebpf: &mut Ebpf) -> Result<&mut Xdp, Error> {
    xdp_program_mut(ebpf, PROGRAM)
}

fn zeroed<T: aya::Pod + Default>(nr_cpus: usize) -> Result<PerCpuValues<T>, Error> {
    PerCpuValues::try_from(vec![T::default(); nr_cpus]).map_err(|e| Error::System {
        what: "per-CPU values",
        source: e,
    })
}

fn sum<T: Summable + aya::Pod>(values: &PerCpuValues<T>) -> T {
    let mut total = T::default();
    for v in values.iter() {
        total.add(v);
    }
    total
}

fn ip_from(addr: &[u8; 16], family: u8) -> IpAddr {
    if family == abi::FAMILY_V4 {
        IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*addr))
    }
}

fn proto_name(proto: u8) -> &'static str {
    if proto == abi::PROTO_UDP {
        "udp"
    } else {
        "tcp"
    }
}

impl XdpBalancer {
    /// Load the program with `options` and apply `config`. Errors here mean
    /// no XDP at all ([`Error::ProgramNotBuilt`], [`Error::PermissionDenied`],
    /// [`Error::Load`]): the caller logs once and serves every XDP frontend
    /// from user space. Per-interface attach failures are not errors: they
    /// are in the returned report's `fallback`.
    pub fn new(config: &Config, options: &XdpOptions) -> Result<(XdpBalancer, ApplyReport), Error> {
        let mut lb = XdpBalancer::load(options)?;
        let report = lb.apply(config)?;
        Ok((lb, report))
    }

    /// Load the program and create its maps; nothing is attached and no
    /// VIP is configured.
    pub fn load(options: &XdpOptions) -> Result<XdpBalancer, Error> {
        let object = crate::object::balancer().ok_or(Error::ProgramNotBuilt)?;
        let nr_cpus =
            aya::util::nr_cpus().map_err(|(what, source)| Error::System { what, source })?;
        let per_cpu_floor = u32::try_from(nr_cpus)
            .unwrap_or(u32::MAX)
            .saturating_mul(MIN_FLOWS_PER_CPU);
        let flows = options.flow_table_entries.max(per_cpu_floor);
        let mut ebpf = aya::EbpfLoader::new()
            .map_max_entries("halb_flows", flows)
            .load(object)
            .map_err(|e| load_error("object", &e))?;
        program_mut(&mut ebpf)?
            .load()
            .map_err(|e| load_error("verifier", &e))?;
        let mut config: Array<MapData, ProgramConfig> = take_map(&mut ebpf, "halb_config")?;
        let v4 = options.encap_source_v4.octets();
        let mut v6 = [0u8; 8];
        v6.copy_from_slice(&options.encap_source_v6.octets()[..8]);
        let program_config = ProgramConfig {
            encap_src_v6: v6,
            encap_src_v4: u32::from_ne_bytes([v4[0], v4[1], 0, 0]),
            reserved: 0,
        };
        config
            .set(0, program_config, 0)
            .map_err(|e| map_error("halb_config", &e))?;
        let lb = XdpBalancer {
            vips: take_map(&mut ebpf, "halb_vips")?,
            maglev: take_map(&mut ebpf, "halb_maglev")?,
            backends: take_map(&mut ebpf, "halb_backends")?,
            flows: take_map(&mut ebpf, "halb_flows")?,
            vip_stats: take_map(&mut ebpf, "halb_vip_stats")?,
            backend_stats: take_map(&mut ebpf, "halb_backend_stats")?,
            global_stats: take_map(&mut ebpf, "halb_global_stats")?,
            ebpf,
            nr_cpus,
            vip_pool: IndexPool::new(abi::MAX_VIPS),
            backend_pool: IndexPool::new(abi::MAX_BACKENDS),
            frontends: BTreeMap::new(),
            interfaces: BTreeMap::new(),
            inherited: BTreeMap::new(),
            fallback: Vec::new(),
            owners: BTreeMap::new(),
            logged: HashSet::new(),
            resolver: Resolver::new().map_err(|source| Error::System {
                what: "route netlink socket",
                source,
            })?,
        };
        tracing::info!(flow_table = flows, "XDP balancer program loaded");
        Ok(lb)
    }

    /// Bring attachments, VIPs and tables in line with `config` (first
    /// start and every reload). The program stays attached to interfaces
    /// whose mode did not change; established flows keep their servers;
    /// removed servers keep their pinned flows for the backend's
    /// `drain_timeout`. Health and drain states of servers that are still
    /// configured are kept.
    pub fn apply(&mut self, config: &Config) -> Result<ApplyReport, Error> {
        let now = Instant::now();
        let (plans, rejected) = plan(config);
        let mut fallback: Vec<Fallback> = rejected
            .into_iter()
            .map(|r| Fallback {
                frontend: r.frontend,
                reason: r.reason,
            })
            .collect();

        // Interfaces: one mode each.
        let mut wanted: BTreeMap<String, (Result<AttachMode, String>, Vec<String>)> =
            BTreeMap::new();
        for p in &plans {
            let entry = wanted
                .entry(p.interface.clone())
                .or_insert_with(|| (Ok(p.mode), Vec::new()));
            if let Ok(mode) = entry.0 {
                if mode != p.mode {
                    entry.0 = Err(format!(
                        "frontends ask for both {} and {} mode on {}",
                        mode.as_str(),
                        p.mode.as_str(),
                        p.interface
                    ));
                }
            }
            entry.1.push(p.frontend.clone());
        }
        // Detach what is no longer wanted or changes mode.
        let current: Vec<String> = self.interfaces.keys().cloned().collect();
        for name in current {
            let keep = match (wanted.get(&name), self.interfaces.get(&name)) {
                (Some((Ok(mode), _)), Some(a)) => a.link.is_some() && a.mode == *mode,
                _ => false,
            };
            if !keep {
                self.detach_interface(&name);
            }
        }
        for (name, (mode, frontends)) in &wanted {
            match mode {
                Ok(mode) => {
                    if !self.interfaces.contains_key(name) {
                        let attachment = self.attach_interface(name, *mode);
                        self.interfaces.insert(name.clone(), attachment);
                    }
                    if let Some(a) = self.interfaces.get_mut(name) {
                        a.frontends = frontends.clone();
                    }
                }
                Err(reason) => {
                    self.interfaces.insert(
                        name.clone(),
                        Attachment {
                            mode: AttachMode::Generic,
                            link: None,
                            error: Some(reason.clone()),
                            frontends: frontends.clone(),
                        },
                    );
                }
            }
        }

        // Handed-over links no interface of this config took are closed
        // (the replaced process detaches them when it exits).
        self.inherited.clear();

        // Frontends served by an attached interface.
        let mut served: Vec<VipPlan> = Vec::new();
        for p in plans {
            match self.interfaces.get(&p.interface) {
                Some(a) if a.link.is_some() => served.push(p),
                Some(a) => fallback.push(Fallback {
                    frontend: p.frontend.clone(),
                    reason: a
                        .error
                        .clone()
                        .unwrap_or_else(|| format!("not attached to {}", p.interface)),
                }),
                None => fallback.push(Fallback {
                    frontend: p.frontend.clone(),
                    reason: format!("not attached to {}", p.interface),
                }),
            }
        }
        let served_names: BTreeSet<String> = served.iter().map(|p| p.frontend.clone()).collect();
        let gone: Vec<String> = self
            .frontends
            .keys()
            .filter(|n| !served_names.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            self.remove_frontend(&name, now)?;
        }
        let mut kernel = Vec::new();
        for p in served {
            let name = p.frontend.clone();
            match self.upsert_frontend(p, now) {
                Ok(()) => kernel.push(name),
                Err(e @ (Error::Map { .. } | Error::System { .. })) => return Err(e),
                Err(e) => {
                    // This frontend cannot be served (table, capacity):
                    // make sure nothing of it stays in the kernel.
                    self.remove_frontend(&name, now)?;
                    fallback.push(Fallback {
                        frontend: name,
                        reason: e.to_string(),
                    });
                }
            }
        }
        self.expire_retired(now)?;
        self.refresh_next_hops(true)?;
        for f in &fallback {
            if self.logged.insert((f.frontend.clone(), f.reason.clone())) {
                tracing::warn!(
                    frontend = %f.frontend,
                    reason = %f.reason,
                    "XDP unavailable for frontend; using the user-space L4 path"
                );
            }
        }
        self.fallback = fallback.clone();
        Ok(ApplyReport { kernel, fallback })
    }

    fn attach_interface(&mut self, name: &str, mode: AttachMode) -> Attachment {
        let result = self.link_interface(name, mode);
        match result {
            Ok((link, taken_over)) => {
                tracing::info!(
                    interface = name,
                    mode = mode.as_str(),
                    taken_over,
                    "XDP program attached"
                );
                Attachment {
                    mode,
                    link: Some(link),
                    error: None,
                    frontends: Vec::new(),
                }
            }
            Err(e) => Attachment {
                mode,
                link: None,
                error: Some(e.to_string()),
                frontends: Vec::new(),
            },
        }
    }

    /// A link of this program on `name`: the replaced process's link
    /// switched over to this program (true), or a new one.
    fn link_interface(&mut self, name: &str, mode: AttachMode) -> Result<(OwnedFd, bool), Error> {
        let attach_error = |reason: String| Error::Attach {
            interface: name.to_string(),
            mode: mode.as_str(),
            reason,
        };
        let inherited = self.inherited.remove(name);
        let prog = program_mut(&mut self.ebpf)?;
        let prog_fd = prog.fd().map_err(|e| attach_error(chain(&e)))?;
        match inherited {
            Some((m, link)) if m == mode => {
                crate::link::update(link.as_fd(), prog_fd.as_fd())
                    .map_err(|e| attach_error(e.to_string()))?;
                Ok((link, true))
            }
            other => {
                if let Some((m, _)) = other {
                    tracing::warn!(
                        interface = name,
                        from = m.as_str(),
                        to = mode.as_str(),
                        "the replaced process attached XDP in another mode; not taking its link over"
                    );
                }
                let ifindex = crate::link::ifindex(name).map_err(|e| {
                    if e.raw_os_error() == Some(libc::ENODEV) {
                        Error::UnknownInterface(name.to_string())
                    } else {
                        attach_error(e.to_string())
                    }
                })?;
                let link = crate::link::create(prog_fd.as_fd(), ifindex, mode)
                    .map_err(|e| attach_error(e.to_string()))?;
                Ok((link, false))
            }
        }
    }

    /// Links of the process this one replaces (`halb run --upgrade`), to
    /// take over at the next [`XdpBalancer::apply`] instead of attaching.
    /// Call before the first `apply`; links left unused are closed then.
    pub fn adopt_links(&mut self, links: Vec<HandedLink>) {
        for l in links {
            self.inherited.insert(l.interface, (l.mode, l.link));
        }
    }

    /// Duplicates of every XDP link, for a new process to take over.
    pub fn link_fds(&self) -> std::io::Result<Vec<HandedLink>> {
        let mut out = Vec::new();
        for (name, a) in &self.interfaces {
            if let Some(link) = &a.link {
                out.push(HandedLink {
                    interface: name.clone(),
                    mode: a.mode,
                    link: link.try_clone()?,
                });
            }
        }
        Ok(out)
    }

    fn detach_interface(&mut self, name: &str) {
        if let Some(a) = self.interfaces.remove(name) {
            if a.link.is_some() {
                // Closing the link detaches it (unless a new process
                // holds it: then that process's program stays).
                drop(a.link);
                tracing::info!(interface = name, "XDP program detached");
            }
        }
    }

    fn write_backend(&mut self, s: &ServerEntry, active: bool) -> Result<(), Error> {
        let (addr, family) = abi::addr_bytes(s.address);
        let mut flags = if active { abi::BACKEND_ACTIVE } else { 0 };
        let mut value = Backend {
            addr,
            generation: s.generation,
            family,
            ..Backend::default()
        };
        if let Some(hop) = s.hop {
            value.dmac = hop.dmac;
            value.smac = hop.smac;
            value.ifindex = hop.ifindex;
            value.mtu = hop.mtu;
            flags |= abi::BACKEND_RESOLVED;
            if hop.onlink {
                flags |= abi::BACKEND_ONLINK;
            }
        }
        value.flags = flags;
        self.backends
            .set(s.index, value, 0)
            .map_err(|e| map_error("halb_backends", &e))
    }

    fn new_server(
        &mut self,
        frontend: &str,
        s: &ServerPlan,
        up: bool,
        drained: bool,
    ) -> Result<ServerEntry, Error> {
        let (index, generation) = self
            .backend_pool
            .alloc()
            .ok_or(Error::TooManyBackends(abi::MAX_BACKENDS))?;
        self.backend_stats
            .set(index, zeroed(self.nr_cpus)?, 0)
            .map_err(|e| map_error("halb_backend_stats", &e))?;
        self.owners
            .insert(index, (frontend.to_string(), s.name.clone()));
        let hop = self.resolve(s.address);
        Ok(ServerEntry {
            name: s.name.clone(),
            address: s.address,
            weight: s.weight,
            backup: s.backup,
            up,
            drained,
            index,
            generation,
            active: false,
            hop,
        })
    }

    /// The next hop of `addr`, or `None` (logged) when not resolvable now.
    fn resolve(&mut self, addr: IpAddr) -> Option<NextHop> {
        match self.resolver.resolve(addr) {
            Ok(Resolution::Ready(hop)) => Some(hop),
            Ok(Resolution::NoRoute) => {
                tracing::debug!(%addr, "XDP backend has no route");
                None
            }
            Ok(Resolution::Pending) => None,
            Err(e) => {
                tracing::warn!(%addr, error = %e, "XDP next-hop lookup failed");
                None
            }
        }
    }

    /// Re-resolve every server's next hop; write the ones that changed.
    /// With `wait`, servers whose neighbour is being resolved are polled a
    /// few times (at most 100 ms in all) so a new backend works at once.
    fn refresh_next_hops(&mut self, wait: bool) -> Result<(), Error> {
        let names: Vec<String> = self.frontends.keys().cloned().collect();
        let rounds = if wait { 10 } else { 1 };
        for round in 0..rounds {
            let mut pending = false;
            for name in &names {
                let Some(mut entry) = self.frontends.remove(name) else {
                    continue;
                };
                let mut result = Ok(());
                for i in 0..entry.servers.len() {
                    if round > 0 && entry.servers[i].hop.is_some() {
                        continue;
                    }
                    let hop = self.resolve(entry.servers[i].address);
                    // Keep a known MAC while the neighbour is re-resolved.
                    let hop = hop.or(if round == 0 {
                        entry.servers[i].hop
                    } else {
                        None
                    });
                    pending |= hop.is_none();
                    if hop != entry.servers[i].hop {
                        entry.servers[i].hop = hop;
                        let active = entry.servers[i].active;
                        result = result.and(self.write_backend(&entry.servers[i], active));
                    }
                }
                self.frontends.insert(name.clone(), entry);
                result?;
            }
            if !pending || round + 1 == rounds {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Retire a server: its pinned flows continue until `until` if it was
    /// active, else it is released now.
    fn retire(
        &mut self,
        fe_removed: &mut Vec<(u32, Instant)>,
        s: ServerEntry,
        until: Instant,
    ) -> Result<(), Error> {
        if s.active {
            self.backend_pool.release(s.index, until);
            fe_removed.push((s.index, until));
        } else {
            self.write_backend(&s, false)?;
            self.owners.remove(&s.index);
            self.backend_pool.release_now(s.index);
        }
        Ok(())
    }

    fn upsert_frontend(&mut self, p: VipPlan, now: Instant) -> Result<(), Error> {
        let mut seen = HashSet::new();
        for s in &p.servers {
            if !seen.insert(s.name.as_str()) {
                return Err(Error::DuplicateServer(s.name.clone()));
            }
        }
        let mut entry = match self.frontends.remove(&p.frontend) {
            Some(e) => e,
            None => {
                let (vip_index, _) = self
                    .vip_pool
                    .alloc()
                    .ok_or(Error::TooManyVips(abi::MAX_VIPS))?;
                self.vip_stats
                    .set(vip_index, zeroed(self.nr_cpus)?, 0)
                    .map_err(|e| map_error("halb_vip_stats", &e))?;
                FrontendEntry {
                    plan: p.clone(),
                    vip_index,
                    servers: Vec::new(),
                    table: Some(KernelTable {
                        slots: Vec::new(),
                        slot_counts: Vec::new(),
                    }),
                    removed: Vec::new(),
                }
            }
        };
        if entry.plan.key != p.key {
            self.vips
                .remove(&entry.plan.key)
                .or_else(|e| match e {
                    aya::maps::MapError::KeyNotFound => Ok(()),
                    other => Err(other),
                })
                .map_err(|e| map_error("halb_vips", &e))?;
        }
        let until = now + p.drain_timeout;
        let mut old: Vec<ServerEntry> = std::mem::take(&mut entry.servers);
        let mut servers = Vec::with_capacity(p.servers.len());
        let mut removed = std::mem::take(&mut entry.removed);
        for s in &p.servers {
            let existing = old
                .iter()
                .position(|o| o.name == s.name && o.address == s.address)
                .map(|i| old.swap_remove(i));
            let server = match existing {
                Some(mut e) => {
                    e.weight = s.weight;
                    e.backup = s.backup;
                    e
                }
                None => {
                    // A renamed or re-addressed server starts as a new one;
                    // keep the health of a same-named entry.
                    let up = old.iter().find(|o| o.name == s.name).is_none_or(|o| o.up);
                    match self.new_server(&p.frontend, s, up, false) {
                        Ok(e) => e,
                        Err(err) => {
                            // Put back what we took so nothing leaks.
                            entry.servers = servers;
                            entry.servers.extend(old);
                            entry.removed = removed;
                            self.frontends.insert(p.frontend.clone(), entry);
                            return Err(err);
                        }
                    }
                }
            };
            servers.push(server);
        }
        for o in old {
            self.retire(&mut removed, o, until)?;
        }
        entry.servers = servers;
        entry.removed = removed;
        entry.plan = p;
        let name = entry.plan.frontend.clone();
        self.sync_frontend(&mut entry)?;
        self.vips
            .insert(
                entry.plan.key,
                VipMeta {
                    index: entry.vip_index,
                    flags: entry.plan.flags,
                },
                0,
            )
            .map_err(|e| map_error("halb_vips", &e))?;
        self.frontends.insert(name, entry);
        Ok(())
    }

    fn remove_frontend(&mut self, name: &str, now: Instant) -> Result<(), Error> {
        let Some(mut entry) = self.frontends.remove(name) else {
            return Ok(());
        };
        match self.vips.remove(&entry.plan.key) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
            Err(e) => return Err(map_error("halb_vips", &e)),
        }
        // No VIP key: no packet reaches these backends any more.
        self.install_table(entry.vip_index, None)?;
        self.vip_pool.release_now(entry.vip_index);
        let mut removed = std::mem::take(&mut entry.removed);
        for s in std::mem::take(&mut entry.servers) {
            self.retire(&mut removed, s, now)?;
        }
        tracing::info!(frontend = name, "XDP frontend removed");
        Ok(())
    }

    /// Write server flags and the table in an order that never sends a new
    /// flow to an inactive backend: activate, swap the table, deactivate.
    fn sync_frontend(&mut self, entry: &mut FrontendEntry) -> Result<(), Error> {
        let inputs: Vec<ServerInput<'_>> = entry
            .servers
            .iter()
            .map(|s| ServerInput {
                name: &s.name,
                weight: s.weight,
                backup: s.backup,
                up: s.up,
                drained: s.drained,
            })
            .collect();
        let conditions = live_servers(&inputs);
        let live: Vec<(&str, u16, u32)> = entry
            .servers
            .iter()
            .zip(&conditions)
            .filter(|(_, c)| **c == ServerCondition::Live)
            .map(|(s, _)| (s.name.as_str(), s.weight, s.index))
            .collect();
        let live_count = live.len();
        let table = build_table(&live, entry.plan.table_size).map_err(|source| Error::Maglev {
            frontend: entry.plan.frontend.clone(),
            source,
        })?;
        let mut servers = std::mem::take(&mut entry.servers);
        for s in servers.iter_mut() {
            // Down servers lose their flows; drained ones keep them.
            if s.up && !s.active {
                self.write_backend(s, true)?;
                s.active = true;
            }
        }
        let swapped = entry.table != table;
        if swapped {
            self.install_table(entry.vip_index, table.as_ref())?;
            tracing::debug!(
                frontend = %entry.plan.frontend,
                live = live_count,
                "XDP maglev table swapped"
            );
            entry.table = table;
        }
        for s in servers.iter_mut() {
            if !s.up && s.active {
                self.write_backend(s, false)?;
                s.active = false;
            }
        }
        entry.servers = servers;
        Ok(())
    }

    fn install_table(&mut self, vip_index: u32, table: Option<&KernelTable>) -> Result<(), Error> {
        let slots: &[u32] = match table {
            Some(t) => &t.slots,
            None => &[0],
        };
        let len = u32::try_from(slots.len()).map_err(|_| Error::Map {
            map: "halb_maglev",
            reason: "table too large".into(),
        })?;
        let mut inner: Array<MapData, u32> = Array::create(len, BPF_F_INNER_MAP)
            .map_err(|e| map_error("halb_maglev (inner)", &e))?;
        for (i, v) in slots.iter().enumerate() {
            // `i < len`, which fits u32.
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            inner
                .set(i, v, 0)
                .map_err(|e| map_error("halb_maglev (inner)", &e))?;
        }
        self.maglev
            .set(vip_index, &inner, 0)
            .map_err(|e| map_error("halb_maglev", &e))
    }

    fn frontend_mut_with_server(
        &mut self,
        backend: &str,
        server: &str,
        mut f: impl FnMut(&mut ServerEntry) -> bool,
    ) -> Result<bool, Error> {
        let names: Vec<String> = self
            .frontends
            .iter()
            .filter(|(_, e)| e.plan.backend == backend)
            .map(|(n, _)| n.clone())
            .collect();
        let mut found = false;
        let mut changed = false;
        for name in names {
            let Some(mut entry) = self.frontends.remove(&name) else {
                continue;
            };
            let mut touched = false;
            for s in entry.servers.iter_mut().filter(|s| s.name == server) {
                found = true;
                touched |= f(s);
            }
            let result = if touched {
                self.sync_frontend(&mut entry)
            } else {
                Ok(())
            };
            self.frontends.insert(name, entry);
            result?;
            changed |= touched;
        }
        if found {
            Ok(changed)
        } else {
            Err(Error::UnknownServer {
                backend: backend.to_string(),
                server: server.to_string(),
            })
        }
    }

    /// Health of `backend/server` changed (from the data plane's health
    /// checker). Down: it leaves the Maglev table and its pinned flows move
    /// to live servers. Up: it rejoins. Returns whether anything changed.
    pub fn set_server_health(
        &mut self,
        backend: &str,
        server: &str,
        up: bool,
    ) -> Result<bool, Error> {
        let changed = self.frontend_mut_with_server(backend, server, |s| {
            let c = s.up != up;
            s.up = up;
            c
        })?;
        if changed {
            tracing::info!(backend, server, up, "XDP server health changed");
        }
        Ok(changed)
    }

    /// `halb server drain` / `enable`: a drained server gets no new flows
    /// and keeps the flows pinned to it. Returns whether anything changed.
    pub fn set_server_drained(
        &mut self,
        backend: &str,
        server: &str,
        drained: bool,
    ) -> Result<bool, Error> {
        self.frontend_mut_with_server(backend, server, |s| {
            let c = s.drained != drained;
            s.drained = drained;
            c
        })
    }

    /// Replace the server set of `frontend` (name, weight, address, up):
    /// rebuild its Maglev table with `dataplane::maglev` and swap it in
    /// atomically. Servers kept by name and address keep their pinned
    /// flows; weight 0 drains; dropped servers drain for the backend's
    /// `drain_timeout`. The next [`apply`](XdpBalancer::apply) returns to
    /// the config's servers.
    pub fn set_backends(&mut self, frontend: &str, servers: &[ServerSpec]) -> Result<(), Error> {
        let Some(entry) = self.frontends.get(frontend) else {
            return Err(Error::UnknownFrontend(frontend.to_string()));
        };
        let mut p = entry.plan.clone();
        p.servers = servers
            .iter()
            .map(|s| ServerPlan {
                name: s.name.clone(),
                address: s.address,
                weight: s.weight,
                backup: false,
            })
            .collect();
        self.upsert_frontend(p, Instant::now())?;
        // Health comes with the spec.
        if let Some(mut entry) = self.frontends.remove(frontend) {
            for s in entry.servers.iter_mut() {
                if let Some(spec) = servers.iter().find(|x| x.name == s.name) {
                    s.up = spec.up;
                }
            }
            let result = self.sync_frontend(&mut entry);
            self.frontends.insert(frontend.to_string(), entry);
            result?;
        }
        Ok(())
    }

    /// Refresh the next hops of all servers (route, neighbour MAC, MTU;
    /// missing neighbours are re-requested) and end the drain of removed
    /// servers whose time is up (their pinned flows are re-balanced from
    /// then on), freeing their indices. Called by
    /// [`apply`](XdpBalancer::apply) and
    /// [`export_metrics`](XdpBalancer::export_metrics); call it every few
    /// seconds.
    pub fn maintain(&mut self, now: Instant) -> Result<(), Error> {
        self.refresh_next_hops(false)?;
        self.expire_retired(now)
    }

    fn expire_retired(&mut self, now: Instant) -> Result<(), Error> {
        let done = self.backend_pool.expire(now);
        for index in done {
            self.backends
                .set(index, Backend::default(), 0)
                .map_err(|e| map_error("halb_backends", &e))?;
            self.owners.remove(&index);
            for e in self.frontends.values_mut() {
                e.removed.retain(|(i, _)| *i != index);
            }
        }
        Ok(())
    }

    /// Per-interface and per-frontend state for `halb status`.
    pub fn status(&self) -> XdpStatus {
        let interfaces = self
            .interfaces
            .iter()
            .map(|(name, a)| InterfaceStatus {
                interface: name.clone(),
                mode: if a.link.is_some() {
                    a.mode.into()
                } else {
                    XdpState::Off
                },
                reason: a.error.clone(),
                frontends: a.frontends.clone(),
            })
            .collect();
        let frontends = self
            .frontends
            .values()
            .map(|e| {
                let inputs: Vec<ServerInput<'_>> = e
                    .servers
                    .iter()
                    .map(|s| ServerInput {
                        name: &s.name,
                        weight: s.weight,
                        backup: s.backup,
                        up: s.up,
                        drained: s.drained,
                    })
                    .collect();
                let conditions = live_servers(&inputs);
                FrontendXdpStatus {
                    name: e.plan.frontend.clone(),
                    vip: SocketAddr::new(
                        ip_from(&e.plan.key.addr, e.plan.key.family),
                        u16::from_be(e.plan.key.port),
                    ),
                    protocol: proto_name(e.plan.key.proto),
                    forwarding: e.plan.forward,
                    interface: e.plan.interface.clone(),
                    servers: e
                        .servers
                        .iter()
                        .zip(conditions)
                        .map(|(s, condition)| ServerXdpStatus {
                            name: s.name.clone(),
                            address: s.address,
                            condition,
                            slots: e
                                .table
                                .as_ref()
                                .and_then(|t| t.slot_counts.iter().find(|(n, _)| *n == s.name))
                                .map(|(_, c)| *c)
                                .unwrap_or(0),
                            resolved: s.hop.is_some(),
                        })
                        .collect(),
                    draining_removed: e.removed.len(),
                }
            })
            .collect();
        XdpStatus {
            interfaces,
            frontends,
            fallback: self.fallback.clone(),
        }
    }

    /// The attach mode of each interface (`native`, `generic`, `off`).
    pub fn modes(&self) -> BTreeMap<String, XdpState> {
        self.status()
            .interfaces
            .into_iter()
            .map(|i| (i.interface, i.mode))
            .collect()
    }

    /// Read and sum the per-CPU counters.
    pub fn stats(&self) -> Result<Stats, Error> {
        let global = self
            .global_stats
            .get(&0, 0)
            .map_err(|e| map_error("halb_global_stats", &e))?;
        let mut out = Stats {
            global: sum(&global),
            frontends: BTreeMap::new(),
        };
        for (name, e) in &self.frontends {
            let vip = self
                .vip_stats
                .get(&e.vip_index, 0)
                .map_err(|err| map_error("halb_vip_stats", &err))?;
            let mut fs = FrontendStats {
                vip: sum(&vip),
                servers: BTreeMap::new(),
            };
            for s in &e.servers {
                let b = self
                    .backend_stats
                    .get(&s.index, 0)
                    .map_err(|err| map_error("halb_backend_stats", &err))?;
                fs.servers.insert(s.name.clone(), sum(&b));
            }
            out.frontends.insert(name.clone(), fs);
        }
        Ok(out)
    }

    /// Publish the counters as `halb_xdp_*` metrics (absolute values of the
    /// kernel's counters) and run [`maintain`](XdpBalancer::maintain).
    pub fn export_metrics(&mut self) -> Result<(), Error> {
        self.maintain(Instant::now())?;
        let stats = self.stats()?;
        crate::metrics::export(&stats, &self.status());
        Ok(())
    }

    /// The flows in the flow table (bounded by its capacity).
    pub fn pinned_flows(&self) -> Result<Vec<PinnedFlow>, Error> {
        let mut out = Vec::new();
        for item in self.flows.iter() {
            let (k, v) = item.map_err(|e| map_error("halb_flows", &e))?;
            out.push(PinnedFlow {
                client: SocketAddr::new(ip_from(&k.src, k.family), u16::from_be(k.sport)),
                vip: SocketAddr::new(ip_from(&k.dst, k.family), u16::from_be(k.dport)),
                protocol: k.proto,
                server: self.owners.get(&v.backend).cloned(),
            });
        }
        Ok(out)
    }

    /// Run the program once on `frame` with `BPF_PROG_TEST_RUN` (in the
    /// caller's network namespace; `ingress_ifindex` names the receiving
    /// interface there). For fixture tests.
    pub fn test_run(
        &self,
        frame: &[u8],
        ingress_ifindex: Option<u32>,
    ) -> Result<TestOutcome, Error> {
        run_once(self.program()?, frame, ingress_ifindex)
    }

    /// Inject `frame` `repeat` times as if received on `ingress_ifindex`,
    /// in live-frames mode: forwarded frames are really sent. For
    /// benchmarks. Returns the kernel's time per frame.
    pub fn run_live(
        &self,
        frame: &[u8],
        ingress_ifindex: u32,
        repeat: u32,
        batch: u32,
    ) -> Result<Duration, Error> {
        run_live(self.program()?, frame, ingress_ifindex, repeat, batch)
    }

    /// The kernel's run-time statistics of the balancer program (counted
    /// only while [`crate::bench::enable_run_stats`] is in effect).
    pub fn run_stats(&self) -> Result<crate::bench::RunStats, Error> {
        crate::bench::run_stats(self.program()?)
    }

    fn program(&self) -> Result<&Xdp, Error> {
        xdp_program(&self.ebpf, PROGRAM)
    }

    /// Detach from every interface and unload (dropping does the same).
    pub fn shutdown(mut self) {
        let names: Vec<String> = self.interfaces.keys().cloned().collect();
        for name in names {
            self.detach_interface(&name);
        }
        tracing::info!("XDP balancer stopped");
    }
}
