//! The validated, typed configuration. Everything here has passed every
//! check in [`super::parse`]; defaults are filled in.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;

use super::duration_serde;

/// A whole halb configuration file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// `[node]`: this machine.
    pub node: NodeConfig,
    /// `[[vrrp]]`: the VRRP instances (virtual routers) this node takes part in.
    pub vrrp: Vec<VrrpConfig>,
    /// `[[frontend]]`: listeners that accept client traffic.
    pub frontends: Vec<FrontendConfig>,
    /// `[[backend]]`: server pools that frontends send traffic to.
    pub backends: Vec<BackendConfig>,
    /// `[cluster]`: membership, quorum and fencing; absent = standalone node.
    pub cluster: Option<ClusterConfig>,
}

impl Config {
    /// The backend with this name, if any.
    pub fn backend(&self, name: &str) -> Option<&BackendConfig> {
        self.backends.iter().find(|b| b.name == name)
    }

    /// The frontend with this name, if any.
    pub fn frontend(&self, name: &str) -> Option<&FrontendConfig> {
        self.frontends.iter().find(|f| f.name == name)
    }

    /// The VRRP instance with this name, if any.
    pub fn vrrp_instance(&self, name: &str) -> Option<&VrrpConfig> {
        self.vrrp.iter().find(|v| v.name == name)
    }
}

/// `[node]`: settings of this machine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeConfig {
    /// `name` (required): this node's name, `[A-Za-z0-9._-]`, at most 64
    /// characters. With a `[cluster]` it must be one of `cluster.nodes`.
    pub name: String,
    /// `admin_socket` (default `/run/halb/admin.sock`): Unix socket of the
    /// admin API used by `halb status`, `halb reload`, ... (at most 107 bytes).
    pub admin_socket: PathBuf,
    /// `metrics_listen` (optional, e.g. `"127.0.0.1:9100"`): address of the
    /// Prometheus `GET /metrics` endpoint and the stats page; absent = no
    /// metrics listener.
    pub metrics_listen: Option<SocketAddr>,
    /// `worker_threads` (1..=1024, default: number of available cores):
    /// data-plane threads; above 1, each an event loop serving client
    /// connections.
    pub worker_threads: u16,
    /// `worker_scaling` (`"auto"` or `"all"`, default `"auto"`): how many of
    /// the `worker_threads` loops take connections. `auto`: one, and one
    /// more while every active loop is saturated and a CPU is idle, one
    /// fewer when the loops wait for CPUs (they would take turns on a CPU)
    /// or the work fits in fewer. `all`: every loop, always.
    pub worker_scaling: WorkerScaling,
    /// `log_level` (optional: `error`, `warn`, `info`, `debug`, `trace`);
    /// absent = the `RUST_LOG` environment variable or `info`.
    pub log_level: Option<LogLevel>,
    /// `shutdown_timeout` (default `"10s"`): how long a graceful stop may take
    /// before the remaining parts are stopped hard.
    #[serde(with = "duration_serde")]
    pub shutdown_timeout: Duration,
}

/// How many data-plane loops take connections (`node.worker_scaling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerScaling {
    /// `"auto"`: as many as the machine has CPU for.
    Auto,
    /// `"all"`: all of them.
    All,
}

impl WorkerScaling {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerScaling::Auto => "auto",
            WorkerScaling::All => "all",
        }
    }
}

/// Log verbosity (`node.log_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// `"error"`
    Error,
    /// `"warn"`
    Warn,
    /// `"info"`
    Info,
    /// `"debug"`
    Debug,
    /// `"trace"`
    Trace,
}

impl LogLevel {
    /// The config spelling, also understood by `tracing` filters.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// VRRP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VrrpVersion {
    /// `version = 2`: RFC 3768, IPv4 only, whole-second advert intervals
    /// (keepalived's default).
    V2,
    /// `version = 3`: RFC 5798, IPv4 and IPv6, centisecond advert intervals.
    V3,
}

impl VrrpVersion {
    /// 2 or 3, as written in the config and in the VRRP header.
    pub fn number(self) -> u8 {
        match self {
            VrrpVersion::V2 => 2,
            VrrpVersion::V3 => 3,
        }
    }
}

impl Serialize for VrrpVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.number())
    }
}

/// Which checksum a VRRPv3 IPv4 advert carries (`v3_checksum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum V3Checksum {
    /// `"pseudo-header"`: checksum over an IPv4 pseudo-header plus the VRRP
    /// message, as keepalived computes it (interoperates with keepalived).
    PseudoHeader,
    /// `"rfc"`: checksum over the VRRP message only, as RFC 5798 §5.2.8
    /// reads for IPv4.
    Rfc,
}

/// Address family of a VRRP instance (all its virtual IPs share one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum IpFamily {
    /// IPv4 (multicast group 224.0.0.18).
    V4,
    /// IPv6 (multicast group ff02::12).
    V6,
}

impl IpFamily {
    /// The family of an address.
    pub fn of(addr: &IpAddr) -> IpFamily {
        match addr {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }

    /// `"IPv4"` or `"IPv6"`.
    pub fn name(self) -> &'static str {
        match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        }
    }
}

/// `[[vrrp]]`: one VRRP instance (virtual router).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VrrpConfig {
    /// `name` (required, unique among `[[vrrp]]`, `[A-Za-z0-9._-]`).
    pub name: String,
    /// `interface` (required): the Linux interface the adverts go out on and
    /// the virtual IPs are added to (at most 15 bytes, no `/`, `:` or spaces).
    pub interface: String,
    /// `vrid` (required, 1..=255): virtual router id, shared by all routers of
    /// this instance. (`interface`, `vrid`, family) is unique across instances.
    pub vrid: u8,
    /// `priority` (1..=255, default 100): the highest priority becomes master.
    /// 255 means "address owner": this node owns the virtual IPs and takes
    /// over at once.
    pub priority: u8,
    /// `version` (2 or 3, default 3).
    pub version: VrrpVersion,
    /// `advert_interval` (default `"1s"`): time between adverts. Version 3:
    /// 10ms..=40950ms in steps of 10ms; version 2: whole seconds 1s..=255s.
    #[serde(with = "duration_serde")]
    pub advert_interval: Duration,
    /// `preempt` (default true): a higher-priority backup takes over from a
    /// lower-priority master.
    pub preempt: bool,
    /// `preempt_delay` (default `"0s"`, at most 1000s): how long after start a
    /// backup waits before it preempts.
    #[serde(with = "duration_serde")]
    pub preempt_delay: Duration,
    /// `accept_mode` (default false): the master accepts packets addressed to
    /// the virtual IPs it does not own (RFC 5798 Accept_Mode).
    pub accept_mode: bool,
    /// `virtual_ips` (required, non-empty): the addresses that move, as CIDR
    /// (`"10.0.0.100/24"`, `"2001:db8::1/64"`); a bare address means /32 or
    /// /128. All of one family; version 2 is IPv4 only. No address may be
    /// claimed by two instances.
    pub virtual_ips: Vec<IpNet>,
    /// `unicast_peers` (default empty = multicast): send adverts to these
    /// addresses instead of the multicast group; same family as the virtual IPs.
    pub unicast_peers: Vec<IpAddr>,
    /// `unicast_source` (optional): source address of unicast adverts; same
    /// family as the virtual IPs. Absent = the interface's primary address.
    pub unicast_source: Option<IpAddr>,
    /// `garp`: gratuitous ARP / unsolicited neighbour advertisements sent on
    /// becoming master.
    pub garp: GarpConfig,
    /// `track_interfaces`: interfaces whose state changes the priority.
    pub track_interfaces: Vec<TrackInterface>,
    /// `track_scripts`: health scripts whose result changes the priority.
    pub track_scripts: Vec<TrackScript>,
    /// `track_files`: files holding an integer that, times `weight`, is added
    /// to the priority.
    pub track_files: Vec<TrackFile>,
    /// `notify` (default empty): absolute paths of programs run on every state
    /// change with arguments: instance name, new state, priority.
    pub notify: Vec<PathBuf>,
    /// `notify_timeout` (default `"10s"`): a notify program still running
    /// after this is killed.
    #[serde(with = "duration_serde")]
    pub notify_timeout: Duration,
    /// `use_vmac` (default false): use a macvlan interface with the virtual
    /// router MAC address 00-00-5E-00-01-{vrid} (IPv6: 00-00-5E-00-02-{vrid}).
    pub use_vmac: bool,
    /// `v3_checksum` (default `"pseudo-header"`): see [`V3Checksum`].
    pub v3_checksum: V3Checksum,
    /// `auth_pass` (optional, version 2 only, 1 to 8 bytes): RFC 2338
    /// simple-text authentication, keepalived's `authentication { auth_type
    /// PASS auth_pass ... }`. Adverts carry it, and adverts without this
    /// exact password are dropped (counted). Absent: no authentication
    /// (type 0, keepalived's default). Never shown in status output.
    #[serde(skip_serializing)]
    pub auth_pass: Option<String>,
    /// `sync_group` (optional, `[A-Za-z0-9._-]`): instances with the same
    /// sync group change state together (one faults, all go backup).
    pub sync_group: Option<String>,
}

impl VrrpConfig {
    /// The family of this instance's virtual IPs.
    pub fn family(&self) -> IpFamily {
        self.virtual_ips
            .first()
            .map(|n| IpFamily::of(&n.addr()))
            .unwrap_or(IpFamily::V4)
    }
}

/// `garp = { ... }` of a `[[vrrp]]` instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GarpConfig {
    /// `repeat` (0..=100, default 5): how many gratuitous ARPs / NAs are sent
    /// per virtual IP on becoming master.
    pub repeat: u8,
    /// `interval` (default `"10ms"`): gap between two repeats.
    #[serde(with = "duration_serde")]
    pub interval: Duration,
    /// `refresh` (default `"0s"` = off): while master, send them again this often.
    #[serde(with = "duration_serde")]
    pub refresh: Duration,
}

/// One entry of `track_interfaces`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackInterface {
    /// `name` (required): the Linux interface to watch.
    pub name: String,
    /// `weight` (-254..=254, default 0): added to the priority while the
    /// interface is down; 0 means the instance goes to FAULT instead.
    pub weight: i16,
}

/// One entry of `track_scripts`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackScript {
    /// `command` (required, non-empty): program and arguments, run without a
    /// shell; exit status 0 = success.
    pub command: Vec<String>,
    /// `interval` (default `"1s"`): time between two runs.
    #[serde(with = "duration_serde")]
    pub interval: Duration,
    /// `timeout` (default `"2s"`): a run that takes longer is killed and counts
    /// as a failure.
    #[serde(with = "duration_serde")]
    pub timeout: Duration,
    /// `weight` (-254..=254, default 0): added to the priority while the script
    /// fails; 0 means the instance goes to FAULT instead.
    pub weight: i16,
    /// `rise` (>= 1, default 1): successes in a row before the script counts as up.
    pub rise: u32,
    /// `fall` (>= 1, default 1): failures in a row before the script counts as down.
    pub fall: u32,
}

/// One entry of `track_files`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackFile {
    /// `path` (required): file holding an integer.
    pub path: PathBuf,
    /// `weight` (-254..=254, default 1): the file's value times this is added
    /// to the priority.
    pub weight: i16,
}

/// `mode` of a frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FrontendMode {
    /// `"tcp"`: layer-4 TCP.
    Tcp,
    /// `"udp"`: layer-4 UDP datagrams.
    Udp,
    /// `"http"`: layer-7 HTTP/1.1 and HTTP/2.
    Http,
}

impl FrontendMode {
    /// The transport protocol a frontend of this mode listens on.
    pub fn transport(self) -> Transport {
        match self {
            FrontendMode::Udp => Transport::Udp,
            FrontendMode::Tcp | FrontendMode::Http => Transport::Tcp,
        }
    }
}

/// Transport protocol of a listening address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TCP (modes `tcp` and `http`).
    Tcp,
    /// UDP (mode `udp`).
    Udp,
}

/// `forwarding` of a frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Forwarding {
    /// `"proxy"`: user-space proxy, a new connection to the server.
    Proxy,
    /// `"ipip"`: XDP encapsulates packets in IP-in-IP to the server, which
    /// answers the client directly (modes tcp and udp only).
    Ipip,
    /// `"l2-dsr"`: XDP rewrites the destination MAC; layer-2 direct server
    /// return (modes tcp and udp only).
    L2Dsr,
}

/// `xdp` attach mode of a frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// `"native"`: in the driver.
    Native,
    /// `"generic"`: in the kernel's generic path (works on every interface,
    /// slower).
    Generic,
    /// `"off"`: no XDP program.
    Off,
}

/// `forwarded_headers` of an HTTP frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeaders {
    /// `"x-forwarded"`: `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host`.
    XForwarded,
    /// `"forwarded"`: RFC 7239 `Forwarded`.
    Forwarded,
    /// `"both"`: both of the above.
    Both,
    /// `"none"`: add no header.
    None,
}

/// `[[frontend]]`: a listener.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrontendConfig {
    /// `name` (required, unique among `[[frontend]]`, `[A-Za-z0-9._-]`).
    pub name: String,
    /// `bind` (required, e.g. `"10.0.0.100:80"`): listening address. No two
    /// frontends bind the same address, port and transport (tcp and http
    /// share TCP).
    pub bind: SocketAddr,
    /// `mode` (default `"http"`).
    pub mode: FrontendMode,
    /// `backend` (required): name of the `[[backend]]` that gets the traffic.
    pub backend: String,
    /// `forwarding` (default `"proxy"`); `ipip` and `l2-dsr` only with mode
    /// `tcp` or `udp`.
    pub forwarding: Forwarding,
    /// `xdp` (default `"off"`); must be `"off"` with `forwarding = "proxy"`.
    pub xdp: XdpMode,
    /// `interface` (optional; required when `xdp` is not `"off"`): the
    /// interface the XDP program is attached to.
    pub interface: Option<String>,
    /// `timeouts = { ... }`.
    pub timeouts: FrontendTimeouts,
    /// `buffer_size` (bytes, 1024..=16777216, default 16384): per-direction
    /// copy buffer of a proxied connection.
    pub buffer_size: u32,
    /// `max_connections` (optional, >= 1): concurrent connections accepted;
    /// absent = unlimited.
    pub max_connections: Option<u32>,
    /// `forwarded_headers` (default `"x-forwarded"`, mode http only).
    pub forwarded_headers: ForwardedHeaders,
    /// `accept_proxy_protocol` (default false): expect a PROXY protocol (v1 or
    /// v2) header from the client side.
    pub accept_proxy_protocol: bool,
    /// `max_header_size` (bytes, 1024..=1048576, default 65536): largest HTTP
    /// request head accepted.
    pub max_header_size: u32,
}

/// `timeouts = { ... }` of a frontend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrontendTimeouts {
    /// `client_header` (default `"10s"`): time to receive a full HTTP request head.
    #[serde(with = "duration_serde")]
    pub client_header: Duration,
    /// `client_idle` (default `"60s"`): idle client connection (keep-alive) lifetime.
    #[serde(with = "duration_serde")]
    pub client_idle: Duration,
    /// `connect` (default `"3s"`): time to connect to a server.
    #[serde(with = "duration_serde")]
    pub connect: Duration,
    /// `server` (default `"60s"`): time without data from a server.
    #[serde(with = "duration_serde")]
    pub server: Duration,
    /// `udp_idle` (default `"30s"`): a UDP flow without packets is forgotten after this.
    #[serde(with = "duration_serde")]
    pub udp_idle: Duration,
}

/// `algorithm` of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// `"round-robin"`
    RoundRobin,
    /// `"weighted-round-robin"` (uses `weight`)
    WeightedRoundRobin,
    /// `"least-connections"`
    LeastConnections,
    /// `"p2c"`: power of two random choices on active connections.
    P2c,
    /// `"maglev"`: consistent hashing on `hash_key` (Maglev table).
    Maglev,
    /// `"random"`
    Random,
}

/// `hash_key` of a maglev backend: what a connection is hashed on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HashKey {
    /// `"source-ip"`: the client address.
    SourceIp,
    /// `"source-ip-port"`: the client address and port.
    SourceIpPort,
    /// `{ header = "X-User" }`: an HTTP request header (mode http).
    Header(String),
    /// `{ cookie = "sid" }`: an HTTP cookie (mode http).
    Cookie(String),
}

/// `[[backend]]`: a pool of servers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendConfig {
    /// `name` (required, unique among `[[backend]]`, `[A-Za-z0-9._-]`).
    pub name: String,
    /// `algorithm` (default `"round-robin"`).
    pub algorithm: Algorithm,
    /// `hash_key` (default `"source-ip"`; may only be set with
    /// `algorithm = "maglev"`).
    pub hash_key: HashKey,
    /// `maglev_table_size` (default 65537; only with `algorithm = "maglev"`):
    /// a prime larger than the number of servers, at most 16777213.
    pub maglev_table_size: u32,
    /// `servers` (required, at least one).
    pub servers: Vec<ServerConfig>,
    /// `health = { ... }` (absent = TCP connect checks with the defaults).
    pub health: HealthConfig,
    /// `drain_timeout` (default `"30s"`): how long a drained or removed server
    /// keeps its open connections.
    #[serde(with = "duration_serde")]
    pub drain_timeout: Duration,
    /// `slow_start` (default `"0s"` = off): a server that comes up ramps its
    /// weight up over this time.
    #[serde(with = "duration_serde")]
    pub slow_start: Duration,
    /// `connect_retries` (0..=10, default 1): further servers tried when a
    /// connect fails.
    pub connect_retries: u8,
    /// `queue = { ... }`: waiting room when every server is full.
    pub queue: QueueConfig,
    /// `outlier = { ... }`: passive ejection of failing servers.
    pub outlier: OutlierConfig,
    /// `send_proxy_protocol` (optional `"v1"` or `"v2"`): send a PROXY
    /// protocol header to the servers.
    pub send_proxy_protocol: Option<ProxyProtocol>,
}

/// PROXY protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    /// `"v1"`: text header.
    V1,
    /// `"v2"`: binary header.
    V2,
}

/// One entry of a backend's `servers`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerConfig {
    /// `name` (required, unique within the backend, `[A-Za-z0-9._-]`): used in
    /// `halb server drain BACKEND/SERVER`.
    pub name: String,
    /// `address` (required, e.g. `"10.0.1.10:8080"`; unique within the backend).
    pub address: SocketAddr,
    /// `weight` (0..=256, default 1): share of traffic for weighted
    /// algorithms; 0 = no new traffic.
    pub weight: u16,
    /// `max_connections` (optional, >= 1): concurrent connections to this
    /// server; absent = unlimited.
    pub max_connections: Option<u32>,
    /// `backup` (default false): used only when no non-backup server is up.
    pub backup: bool,
}

/// `kind` of health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthKind {
    /// `"tcp"`: a TCP connect succeeds.
    Tcp,
    /// `"http"`: an HTTP request gets an expected status (and body).
    Http,
    /// `"none"`: no active check; servers are always up.
    None,
}

/// `health = { ... }` of a backend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthConfig {
    /// `kind` (default `"tcp"`).
    pub kind: HealthKind,
    /// `path` (default `"/"`, must start with `/`): HTTP request target.
    pub path: String,
    /// `method` (default `"GET"`): HTTP method, upper-case letters.
    pub method: String,
    /// `host` (optional): HTTP `Host` header; absent = the server address.
    pub host: Option<String>,
    /// `expect_status` (default `[200]`, each 100..=599): statuses counted as healthy.
    pub expect_status: Vec<u16>,
    /// `expect_body` (optional): a substring the response body must contain.
    pub expect_body: Option<String>,
    /// `interval` (default `"2s"`, at least 10ms): time between checks of one server.
    #[serde(with = "duration_serde")]
    pub interval: Duration,
    /// `timeout` (default `"1s"`, more than 0 and at most `interval`).
    #[serde(with = "duration_serde")]
    pub timeout: Duration,
    /// `jitter` (default `"0s"`, less than `interval`): random extra delay
    /// added to each interval.
    #[serde(with = "duration_serde")]
    pub jitter: Duration,
    /// `rise` (>= 1, default 2): successes in a row before a server is up.
    pub rise: u32,
    /// `fall` (>= 1, default 3): failures in a row before a server is down.
    pub fall: u32,
}

/// `queue = { ... }` of a backend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueConfig {
    /// `max` (default 0 = no queue): requests waiting for a free server.
    pub max: u32,
    /// `timeout` (default `"5s"`): a queued request waiting longer is refused.
    #[serde(with = "duration_serde")]
    pub timeout: Duration,
}

/// `outlier = { ... }` of a backend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutlierConfig {
    /// `consecutive_failures` (default 0 = off): failed connects or 5xx
    /// answers in a row that eject a server.
    pub consecutive_failures: u32,
    /// `ejection_time` (default `"30s"`): how long an ejected server stays out.
    #[serde(with = "duration_serde")]
    pub ejection_time: Duration,
}

/// `no_quorum_policy` of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NoQuorumPolicy {
    /// `"stop"`: release VIPs and stop traffic without quorum.
    Stop,
    /// `"freeze"`: keep what is held, take over nothing new.
    Freeze,
    /// `"ignore"`: act as if quorate.
    Ignore,
}

/// `failback` of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Failback {
    /// `"auto"`: a recovered node takes its role back by itself.
    Auto,
    /// `"manual"`: only on `halb node unstandby`.
    Manual,
}

/// `[cluster]`: membership, quorum and fencing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterConfig {
    /// `nodes` (required, non-empty): every member, this node included.
    pub nodes: Vec<ClusterNode>,
    /// `port` (1..=65535, default 5405): UDP port of heartbeats on every link.
    pub port: u16,
    /// `auth_key_file` (required): file with the shared key that
    /// authenticates heartbeats.
    pub auth_key_file: PathBuf,
    /// `heartbeat_interval` (default `"100ms"`, at least 1ms).
    #[serde(with = "duration_serde")]
    pub heartbeat_interval: Duration,
    /// `miss_count` (2..=100, default 3): heartbeats missed on every link
    /// before a node is declared lost.
    pub miss_count: u8,
    /// `encrypt` (default false): encrypt heartbeats, not only authenticate.
    pub encrypt: bool,
    /// `quorum = { ... }`.
    pub quorum: QuorumConfig,
    /// `no_quorum_policy` (default `"stop"`).
    pub no_quorum_policy: NoQuorumPolicy,
    /// `failback` (default `"auto"`).
    pub failback: Failback,
    /// `witness` (optional, e.g. `"10.9.0.9:5405"`): a `halb witness` that
    /// gives one tie-breaking vote.
    pub witness: Option<SocketAddr>,
    /// `[[cluster.fence_device]]`: devices that can power off or isolate nodes.
    pub fence_devices: Vec<FenceDevice>,
}

/// One entry of `cluster.nodes`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterNode {
    /// `name` (required, unique, `[A-Za-z0-9._-]`): equals that node's `node.name`.
    pub name: String,
    /// `addresses` (required, non-empty): one address per link (redundant
    /// rings); every node has the same number of links.
    pub addresses: Vec<IpAddr>,
    /// `votes` (0..=255, default 1).
    pub votes: u8,
}

/// `quorum = { ... }` of the cluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuorumConfig {
    /// `expected_votes` (>= 1, default: the sum of the nodes' votes); quorum is
    /// more than half of it.
    pub expected_votes: u32,
    /// `two_node` (default false; only with exactly two nodes): one node alone
    /// is quorate (fencing decides).
    pub two_node: bool,
    /// `wait_for_all` (default = `two_node`): after a cold start, wait until
    /// every node has been seen once before becoming quorate.
    pub wait_for_all: bool,
}

/// `action` of a fence device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FenceAction {
    /// `"off"`: power off (or isolate) the node.
    Off,
    /// `"reboot"`: power cycle the node.
    Reboot,
}

/// `[[cluster.fence_device]]`: a ClusterLabs-style fence agent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FenceDevice {
    /// `name` (required, unique, `[A-Za-z0-9._-]`).
    pub name: String,
    /// `agent` (required, absolute path): the agent program; it gets
    /// `key=value` lines on stdin.
    pub agent: PathBuf,
    /// `nodes` (required, non-empty): the cluster nodes this device can fence.
    pub nodes: Vec<String>,
    /// `action` (default `"off"`).
    pub action: FenceAction,
    /// `timeout` (default `"30s"`): one agent run.
    #[serde(with = "duration_serde")]
    pub timeout: Duration,
    /// `retries` (0..=100, default 2): further runs after a failed one.
    pub retries: u8,
    /// `delay_max` (default `"0s"`): random delay before fencing, up to this
    /// (avoids both nodes of a pair fencing each other at once).
    #[serde(with = "duration_serde")]
    pub delay_max: Duration,
    /// `monitor_interval` (default `"60s"`): how often the agent's `monitor`
    /// action is run.
    #[serde(with = "duration_serde")]
    pub monitor_interval: Duration,
    /// `options` (default empty): extra `key=value` lines passed to the agent;
    /// integer and boolean values are passed as their text. May not set
    /// `action` (halb sets it per operation).
    pub options: BTreeMap<String, String>,
}
