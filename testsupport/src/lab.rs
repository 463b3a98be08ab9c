//! Labs: per-test sets of network namespaces, veth links and bridges.
//!
//! Nothing is created in the test's own (root) namespace: every veth pair is
//! created directly between two namespaces (`ip -n A link add X type veth
//! peer name Y netns B`) and every bridge lives in a namespace of its own.
//! Interface names therefore only need to be unique inside one namespace.

use std::ffi::OsStr;
use std::fmt::Display;
use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::capture::Capture;
use crate::error::{io_err, Error, Result};
use crate::inspect::{self, IfAddr, LinkInfo, MacAddr, Neighbour};
use crate::process::{run_host, NsCommand, DEFAULT_TIMEOUT};

/// Where `ip netns add` puts its bind mounts.
pub const NETNS_DIR: &str = "/run/netns";

/// Every lab's names start with this (then the pid in base 36).
const NAME_MAGIC: &str = "hl";

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

fn base36(mut n: u32) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

/// The prefix of a lab: `hl<pid base36>-<counter base36>-<tag>-`.
pub fn lab_prefix(pid: u32, counter: u32, tag: &str) -> String {
    let mut clean: String = tag
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect();
    if clean.is_empty() {
        clean.push_str("lab");
    }
    format!("{NAME_MAGIC}{}-{}-{clean}-", base36(pid), base36(counter))
}

/// The pid encoded in a lab-made name, if `name` is one.
pub fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(NAME_MAGIC)?;
    let (pid, rest) = rest.split_once('-')?;
    // The counter must follow, so unrelated names starting with "hl" and a
    // dash are not mistaken for ours.
    let (counter, _) = rest.split_once('-')?;
    if pid.is_empty() || counter.is_empty() || !counter.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    u32::from_str_radix(pid, 36).ok()
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn validate_ifname(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() > IFNAME_MAX {
        Some("longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("reserved")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        Some("contains '/', ':' or whitespace")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::BadIfName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

fn validate_short(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() > 32 {
        Some("longer than 32 bytes")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        Some("only ASCII letters, digits, '-', '_' and '.' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::BadName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Pids of processes (other than this one) whose network namespace is `name`.
fn pids_in_netns(name: &str) -> Vec<i32> {
    let Ok(target) = std::fs::metadata(Path::new(NETNS_DIR).join(name)) else {
        return Vec::new();
    };
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .map(|m| m.dev() == target.dev() && m.ino() == target.ino())
                .unwrap_or(false)
        })
        .filter_map(|pid| i32::try_from(pid).ok())
        .collect()
}

/// SIGKILL every process in the namespace and delete it.
fn destroy_netns(name: &str) -> Result<()> {
    for pid in pids_in_netns(name) {
        tracing::debug!(netns = name, pid, "killing process left in namespace");
        let _ = signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    run_host("ip", ["netns", "del", name]).map(drop)
}

fn scratch_root() -> PathBuf {
    std::env::temp_dir().join("halb-testsupport")
}

/// Remove namespaces and scratch directories left by labs of processes
/// that no longer exist (a test run that was SIGKILLed).
pub fn clean_stale() {
    if let Ok(entries) = std::fs::read_dir(NETNS_DIR) {
        for entry in entries.filter_map(|e| e.ok()) {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            match owner_pid(&name) {
                Some(pid) if !pid_alive(pid) => {
                    tracing::info!(netns = %name, pid, "removing stale namespace of a dead test process");
                    // Another lab starting concurrently may have removed it
                    // first; only a namespace that is still there is a problem.
                    if let Err(e) = destroy_netns(&name) {
                        if Path::new(NETNS_DIR).join(&name).exists() {
                            eprintln!("testsupport: cannot remove stale namespace {name}: {e}");
                        }
                    }
                }
                _ => {}
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(scratch_root()) {
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(owner_pid) else {
                continue;
            };
            if !pid_alive(pid) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

pub(crate) struct LabShared {
    prefix: String,
    dir: PathBuf,
    files: AtomicU32,
}

impl LabShared {
    /// A fresh file path inside the lab's scratch directory.
    pub(crate) fn scratch_file(&self, stem: &str, ext: &str) -> PathBuf {
        let n = self.files.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("{stem}-{n}.{ext}"))
    }
}

/// One test's network world. Dropping it kills every process left in its
/// namespaces and deletes the namespaces (and so every interface in them),
/// also while unwinding from a panic.
///
/// "Left in its namespaces" means processes whose network namespace is one
/// of the lab's at drop time. A process spawned a moment before the drop may
/// not have entered its namespace yet; [`NsChild`](crate::NsChild) handles
/// kill their own process group on drop, which covers that case.
pub struct Lab {
    shared: Arc<LabShared>,
    namespaces: Mutex<Vec<String>>,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("prefix", &self.shared.prefix)
            .finish()
    }
}

impl Lab {
    /// A new lab whose names start with `hl<pid>-<n>-<tag>-`. Also removes
    /// what earlier, killed test processes left behind.
    pub fn new(tag: &str) -> Result<Lab> {
        clean_stale();
        let counter = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = lab_prefix(std::process::id(), counter, tag);
        let dir = scratch_root().join(prefix.trim_end_matches('-'));
        std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        tracing::debug!(%prefix, "lab created");
        Ok(Lab {
            shared: Arc::new(LabShared {
                prefix,
                dir,
                files: AtomicU32::new(0),
            }),
            namespaces: Mutex::new(Vec::new()),
        })
    }

    /// The prefix of every namespace name of this lab.
    pub fn prefix(&self) -> &str {
        &self.shared.prefix
    }

    /// Scratch directory for this lab's files (captures, configs); removed on
    /// drop unless the test is panicking (then it is kept and printed).
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Full names of the namespaces created so far.
    pub fn namespace_names(&self) -> Vec<String> {
        self.namespaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Create namespace `<prefix><name>` with its loopback up.
    pub fn netns(&self, name: &str) -> Result<Netns> {
        validate_short(name)?;
        let full = format!("{}{name}", self.shared.prefix);
        run_host("ip", ["netns", "add", full.as_str()])?;
        self.namespaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(full.clone());
        let ns = Netns {
            inner: Arc::new(NsInner {
                name: full,
                short: name.to_owned(),
                lab: Arc::clone(&self.shared),
            }),
        };
        ns.link_up("lo")?;
        Ok(ns)
    }

    /// Create a namespace holding a Linux bridge `br0` (STP off, multicast
    /// snooping off so it floods like a hub for multicast, IPv6 disabled on
    /// the bridge side so it adds no traffic of its own).
    pub fn bridge(&self, name: &str) -> Result<Bridge> {
        let ns = self.netns(name)?;
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
        ns.ip([
            "link",
            "add",
            "name",
            Bridge::DEV,
            "type",
            "bridge",
            "stp_state",
            "0",
            "mcast_snooping",
            "0",
        ])?;
        ns.link_up(Bridge::DEV)?;
        Ok(Bridge {
            ns,
            ports: Arc::new(AtomicU32::new(0)),
        })
    }

    /// A veth pair: `a_if` in `a`, `b_if` in `b`, both brought up.
    pub fn link(&self, a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<Link> {
        veth(a, a_if, b, b_if)?;
        a.link_up(a_if)?;
        b.link_up(b_if)?;
        Ok(Link {
            a: a.clone(),
            a_if: a_if.to_owned(),
            b: b.clone(),
            b_if: b_if.to_owned(),
        })
    }

    /// Plug interface `ifname` of `ns` into `bridge` (see [`Bridge::attach`]).
    pub fn attach(&self, ns: &Netns, ifname: &str, bridge: &Bridge) -> Result<Port> {
        bridge.attach(ns, ifname)
    }

    /// Silently drop all traffic through `segment` (see [`Segment::cut`]).
    pub fn cut(&self, segment: &impl Segment) -> Result<()> {
        segment.cut()
    }

    /// Undo [`Lab::cut`].
    pub fn heal(&self, segment: &impl Segment) -> Result<()> {
        segment.heal()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let names = std::mem::take(&mut *self.namespaces.lock().unwrap_or_else(|e| e.into_inner()));
        for name in names.iter().rev() {
            if let Err(e) = destroy_netns(name) {
                eprintln!("testsupport: cannot delete namespace {name}: {e}");
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "testsupport: test failed; lab files kept in {}",
                self.shared.dir.display()
            );
        } else if let Err(e) = std::fs::remove_dir_all(&self.shared.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!(
                    "testsupport: cannot remove {}: {e}",
                    self.shared.dir.display()
                );
            }
        }
    }
}

fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    validate_ifname(a_if)?;
    validate_ifname(b_if)?;
    a.ip([
        "link",
        "add",
        "name",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])
    .map(drop)
}

struct NsInner {
    name: String,
    short: String,
    lab: Arc<LabShared>,
}

/// A network namespace of a [`Lab`]. Cheap to clone; it does not own the
/// namespace (the lab deletes it).
#[derive(Clone)]
pub struct Netns {
    inner: Arc<NsInner>,
}

impl std::fmt::Debug for Netns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Netns").field(&self.inner.name).finish()
    }
}

impl Netns {
    /// Full namespace name (`ip netns exec <name>`).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The name given to [`Lab::netns`].
    pub fn short_name(&self) -> &str {
        &self.inner.short
    }

    /// `/run/netns/<name>`, the file to `setns` into.
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.inner.name)
    }

    pub(crate) fn lab(&self) -> &LabShared {
        &self.inner.lab
    }

    /// `ip -n <ns> ARGS...`, required to succeed.
    pub fn ip<I, S>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        crate::process::host_command("ip")
            .args(["-n", self.name()])
            .args(args)
            .run(DEFAULT_TIMEOUT)
    }

    /// `ip -j -n <ns> ARGS...`, stdout as text.
    fn ip_json<I, S>(&self, args: I) -> Result<(String, String)>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let cmd = crate::process::host_command("ip")
            .args(["-j", "-n", self.name()])
            .args(args);
        let out = cmd.run(DEFAULT_TIMEOUT)?;
        Ok((
            cmd.display(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    }

    /// A command that will run inside this namespace (`ip netns exec`).
    pub fn command(&self, program: impl AsRef<OsStr>) -> NsCommand {
        NsCommand::new(Some(self.name().to_owned()), program)
    }

    /// Run `argv` (program first) inside the namespace with
    /// [`DEFAULT_TIMEOUT`]; a non-zero exit is an error carrying stderr.
    pub fn exec<S: AsRef<OsStr>>(&self, argv: &[S]) -> Result<Output> {
        let (program, args) = argv.split_first().ok_or(Error::EmptyCommand)?;
        self.command(program).args(args).run(DEFAULT_TIMEOUT)
    }

    /// Add an address (`10.0.0.1/24`, `fd00::1/64`) to `ifname`. IPv6
    /// addresses are added with `nodad` so they are usable at once.
    pub fn add_addr(&self, ifname: &str, cidr: &str) -> Result<()> {
        let mut args = vec!["addr", "add", cidr, "dev", ifname];
        if cidr.contains(':') {
            args.push("nodad");
        }
        self.ip(args).map(drop)
    }

    /// Remove an address from `ifname`.
    pub fn del_addr(&self, ifname: &str, cidr: &str) -> Result<()> {
        self.ip(["addr", "del", cidr, "dev", ifname]).map(drop)
    }

    /// Add a route: `add_route("default", "10.0.0.1")`, `add_route("10.1.0.0/16", "10.0.0.254")`.
    pub fn add_route(&self, dest: &str, via: &str) -> Result<()> {
        self.ip(["route", "add", dest, "via", via]).map(drop)
    }

    /// Set the MAC address of `ifname`.
    pub fn set_mac(&self, ifname: &str, mac: impl Display) -> Result<()> {
        let mac = mac.to_string();
        self.ip(["link", "set", "dev", ifname, "address", mac.as_str()])
            .map(drop)
    }

    /// `ip link set dev IFNAME up`.
    pub fn link_up(&self, ifname: &str) -> Result<()> {
        self.ip(["link", "set", "dev", ifname, "up"]).map(drop)
    }

    /// `ip link set dev IFNAME down`.
    pub fn link_down(&self, ifname: &str) -> Result<()> {
        self.ip(["link", "set", "dev", ifname, "down"]).map(drop)
    }

    /// Set a sysctl of this namespace, e.g. `sysctl("net.ipv4.ip_forward", "1")`.
    ///
    /// Written through `/proc/sys` from a thread inside the namespace (the
    /// `net.*` tree is per namespace). Only `net.*` keys are per namespace;
    /// others would change the host and are refused.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = sysctl_path(key)?;
        let value = value.to_owned();
        self.run(move || {
            std::fs::write(&path, value).map_err(io_err(format!("writing {}", path.display())))
        })?
    }

    /// Read a `net.*` sysctl of this namespace (trimmed).
    pub fn sysctl_get(&self, key: &str) -> Result<String> {
        let path = sysctl_path(key)?;
        self.run(move || {
            std::fs::read_to_string(&path)
                .map(|s| s.trim().to_owned())
                .map_err(io_err(format!("reading {}", path.display())))
        })?
    }

    /// Run `f` on a fresh thread that has entered this namespace
    /// (`setns(CLONE_NEWNET)`), and return its result. Sockets created by
    /// `f` belong to the namespace. A panic in `f` propagates.
    pub fn run<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let file = self.open()?;
        let name = self.name().to_owned();
        std::thread::scope(|scope| {
            let handle = std::thread::Builder::new()
                .name(format!("netns-{}", self.short_name()))
                .spawn_scoped(scope, move || -> Result<R> {
                    enter(&file, &name)?;
                    Ok(f())
                })
                .map_err(io_err("spawning a namespace thread"))?;
            match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Like [`Netns::run`], but the thread keeps running in the background
    /// (e.g. a blocking test server); join the handle to get `f`'s result.
    pub fn spawn_thread<F, R>(&self, f: F) -> Result<std::thread::JoinHandle<Result<R>>>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let file = self.open()?;
        let name = self.name().to_owned();
        std::thread::Builder::new()
            .name(format!("netns-{}", self.short_name()))
            .spawn(move || -> Result<R> {
                enter(&file, &name)?;
                Ok(f())
            })
            .map_err(io_err("spawning a namespace thread"))
    }

    fn open(&self) -> Result<File> {
        let path = self.path();
        File::open(&path).map_err(io_err(format!("opening {}", path.display())))
    }

    /// Wait until a TCP connect to `addr` from inside the namespace succeeds.
    pub fn wait_port(&self, addr: SocketAddr, timeout: Duration) -> Result<()> {
        let netns = self.name().to_owned();
        self.run(move || {
            let deadline = Instant::now() + timeout;
            let mut last_error = String::from("no attempt made");
            loop {
                let now = Instant::now();
                if now >= deadline {
                    return Err(Error::Timeout {
                        what: format!("TCP port {addr} to accept in netns {netns}"),
                        after: timeout,
                        output: format!("last connect error: {last_error}"),
                    });
                }
                let attempt = (deadline - now).min(Duration::from_millis(500));
                match TcpStream::connect_timeout(&addr, attempt) {
                    Ok(_) => return Ok(()),
                    Err(e) => last_error = e.to_string(),
                }
                std::thread::sleep(
                    Duration::from_millis(20)
                        .min(deadline.saturating_duration_since(Instant::now())),
                );
            }
        })?
    }

    /// Start `tcpdump` on `ifname` with a BPF `filter` ("" for everything);
    /// returns once tcpdump is listening.
    pub fn capture(&self, ifname: &str, filter: &str) -> Result<Capture> {
        Capture::start(self, ifname, filter)
    }

    /// The neighbour (ARP/NDP) table of `ifname` (`ip -j neigh show dev`).
    pub fn neigh(&self, ifname: &str) -> Result<Vec<Neighbour>> {
        let (cmd, json) = self.ip_json(["neigh", "show", "dev", ifname])?;
        inspect::parse_neigh(&cmd, &json)
    }

    /// The addresses on `ifname` (`ip -j addr show dev`).
    pub fn addrs(&self, ifname: &str) -> Result<Vec<IfAddr>> {
        let (cmd, json) = self.ip_json(["addr", "show", "dev", ifname])?;
        inspect::parse_addrs(&cmd, &json)
    }

    /// Link facts of `ifname` (`ip -j link show dev`).
    pub fn link(&self, ifname: &str) -> Result<LinkInfo> {
        let (cmd, json) = self.ip_json(["link", "show", "dev", ifname])?;
        inspect::parse_links(&cmd, &json)?
            .into_iter()
            .next()
            .ok_or_else(|| Error::NoSuchInterface {
                netns: self.name().to_owned(),
                ifname: ifname.to_owned(),
            })
    }

    /// Every interface of the namespace.
    pub fn links(&self) -> Result<Vec<LinkInfo>> {
        let (cmd, json) = self.ip_json(["link", "show"])?;
        inspect::parse_links(&cmd, &json)
    }

    /// The MAC address of `ifname`.
    pub fn mac(&self, ifname: &str) -> Result<MacAddr> {
        self.link(ifname)?.mac.ok_or_else(|| Error::NoMac {
            netns: self.name().to_owned(),
            ifname: ifname.to_owned(),
        })
    }
}

fn enter(file: &File, netns: &str) -> Result<()> {
    nix::sched::setns(file, CloneFlags::CLONE_NEWNET).map_err(|source| Error::Setns {
        netns: netns.to_owned(),
        source,
    })
}

fn sysctl_path(key: &str) -> Result<PathBuf> {
    let bad = |reason| Error::BadName {
        name: key.to_owned(),
        reason,
    };
    if !key.starts_with("net.") {
        return Err(bad("only net.* sysctls are per network namespace"));
    }
    if key.contains("..") || key.contains('/') {
        return Err(bad("malformed sysctl key"));
    }
    Ok(Path::new("/proc/sys").join(key.replace('.', "/")))
}

/// Something that can be cut (all traffic silently dropped) and healed.
pub trait Segment {
    /// Drop all traffic through this segment, without any carrier change.
    fn cut(&self) -> Result<()>;
    /// Restore traffic.
    fn heal(&self) -> Result<()>;
}

/// A namespace holding a Linux bridge named `br0`.
#[derive(Debug, Clone)]
pub struct Bridge {
    ns: Netns,
    ports: Arc<AtomicU32>,
}

impl Bridge {
    /// The bridge device's name inside its namespace.
    pub const DEV: &'static str = "br0";

    /// The namespace holding the bridge (e.g. to capture on `br0`).
    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    /// Create a veth with `ifname` in `ns` and its peer `p<n>-<ns short
    /// name>` (truncated to 15 bytes) in the bridge namespace, enslave the
    /// peer to `br0` and bring both up.
    pub fn attach(&self, ns: &Netns, ifname: &str) -> Result<Port> {
        let n = self.ports.fetch_add(1, Ordering::Relaxed);
        let mut port = format!("p{n}-{}", ns.short_name());
        port.truncate(IFNAME_MAX);
        veth(ns, ifname, &self.ns, &port)?;
        self.ns
            .ip(["link", "set", "dev", port.as_str(), "master", Self::DEV])?;
        self.ns.link_up(&port)?;
        ns.link_up(ifname)?;
        Ok(Port {
            bridge: self.ns.clone(),
            port,
            node: ns.clone(),
            node_if: ifname.to_owned(),
        })
    }

    /// Names of the ports currently enslaved to the bridge.
    pub fn ports(&self) -> Result<Vec<String>> {
        Ok(self
            .ns
            .links()?
            .into_iter()
            .filter(|l| l.master.as_deref() == Some(Self::DEV))
            .map(|l| l.ifname)
            .collect())
    }
}

/// A node's interface plugged into a [`Bridge`].
#[derive(Debug, Clone)]
pub struct Port {
    bridge: Netns,
    port: String,
    node: Netns,
    node_if: String,
}

impl Port {
    /// The bridge-side interface name (in the bridge's namespace).
    pub fn port_name(&self) -> &str {
        &self.port
    }

    /// The node's namespace.
    pub fn node(&self) -> &Netns {
        &self.node
    }

    /// The node-side interface name.
    pub fn node_ifname(&self) -> &str {
        &self.node_if
    }

    /// Pull the cable: the bridge-side end goes down, so the node sees
    /// NO-CARRIER on its interface.
    pub fn unplug(&self) -> Result<()> {
        self.bridge.link_down(&self.port)
    }

    /// Undo [`Port::unplug`].
    pub fn plug(&self) -> Result<()> {
        self.bridge.link_up(&self.port)
    }
}

impl Segment for Port {
    /// Detach the bridge-side end from the bridge: the node keeps its
    /// carrier, its frames leave it and vanish, nothing reaches it.
    fn cut(&self) -> Result<()> {
        self.bridge
            .ip(["link", "set", "dev", self.port.as_str(), "nomaster"])
            .map(drop)
    }

    fn heal(&self) -> Result<()> {
        self.bridge
            .ip([
                "link",
                "set",
                "dev",
                self.port.as_str(),
                "master",
                Bridge::DEV,
            ])
            .map(drop)
    }
}

/// A veth pair between two namespaces.
#[derive(Debug, Clone)]
pub struct Link {
    a: Netns,
    a_if: String,
    b: Netns,
    b_if: String,
}

impl Link {
    /// `(namespace, interface)` of the first end.
    pub fn a(&self) -> (&Netns, &str) {
        (&self.a, &self.a_if)
    }

    /// `(namespace, interface)` of the second end.
    pub fn b(&self) -> (&Netns, &str) {
        (&self.b, &self.b_if)
    }

    fn tc(ns: &Netns, args: &[&str]) -> Result<()> {
        crate::process::host_command("tc")
            .args(["-n", ns.name()])
            .args(args)
            .run(DEFAULT_TIMEOUT)
            .map(drop)
    }
}

impl Segment for Link {
    /// Install a zero-length `pfifo` as root qdisc on both ends: every
    /// frame is dropped on egress, carriers stay up. Local senders may see
    /// `ENOBUFS` from `send` (the kernel reports qdisc drops); a bridge
    /// [`Port`] cut does not have that artefact.
    fn cut(&self) -> Result<()> {
        for (ns, ifname) in [(&self.a, &self.a_if), (&self.b, &self.b_if)] {
            Self::tc(
                ns,
                &[
                    "qdisc", "replace", "dev", ifname, "root", "pfifo", "limit", "0",
                ],
            )?;
        }
        Ok(())
    }

    /// Remove the dropping qdiscs (an error if the link was not cut).
    fn heal(&self) -> Result<()> {
        for (ns, ifname) in [(&self.a, &self.a_if), (&self.b, &self.b_if)] {
            Self::tc(ns, &["qdisc", "del", "dev", ifname, "root"])?;
        }
        Ok(())
    }
}

/// Names of all namespaces on the host (`/run/netns`).
pub fn netns_list() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(NETNS_DIR)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Whether namespace `name` exists.
pub fn netns_exists(name: &str) -> bool {
    netns_list().iter().any(|n| n == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_encodes_pid_and_round_trips() {
        let p = lab_prefix(123_456, 7, "Two Nodes!");
        assert_eq!(p, "hl2n9c-7-twonodes-");
        assert_eq!(owner_pid(&p), Some(123_456));
        assert_eq!(owner_pid(&format!("{p}r1")), Some(123_456));
        assert_eq!(owner_pid(&lab_prefix(1, 0, "")), Some(1));
        assert_eq!(lab_prefix(1, 0, ""), "hl1-0-lab-");
        assert_eq!(owner_pid(&lab_prefix(u32::MAX, 40, "x")), Some(u32::MAX));
    }

    #[test]
    fn foreign_names_are_not_ours() {
        for name in [
            "",
            "hl",
            "hlx",
            "hl-1-",
            "hl12",
            "hl12-",
            "hl12--x",
            "r1",
            "keepalived",
            "hl??-1-x",
        ] {
            assert_eq!(owner_pid(name), None, "{name:?}");
        }
    }

    #[test]
    fn ifname_rules() {
        assert!(validate_ifname("eth0").is_ok());
        assert!(validate_ifname("p15-abcdefghijk").is_ok());
        for bad in ["", "sixteen-chars-xx", "a/b", "a b", "eth0:1", ".", ".."] {
            assert!(validate_ifname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn short_name_rules() {
        assert!(validate_short("r1").is_ok());
        assert!(validate_short("lb-1_a.b").is_ok());
        for bad in ["", "a/b", "a b", &"x".repeat(33)] {
            assert!(validate_short(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sysctl_paths() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward").expect("net key"),
            Path::new("/proc/sys/net/ipv4/ip_forward")
        );
        assert!(sysctl_path("kernel.pid_max").is_err());
        assert!(sysctl_path("net/../kernel").is_err());
    }
}
