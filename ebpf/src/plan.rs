//! What the kernel should hold for a config: the pure part of the loader.
//!
//! [`plan`] turns `control::config` frontends into [`VipPlan`]s (nothing
//! touches the kernel here), [`live_servers`] applies health, drain and
//! backup rules, [`build_table`] runs `dataplane::maglev` and maps its slots
//! to backend indices, and [`IndexPool`] hands out VIP and backend indices
//! with a generation number and a drain quarantine.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use control::config::{Algorithm, Config, Forwarding, FrontendMode, HashKey, XdpMode};
use dataplane::maglev::{MaglevError, MaglevTable};

use crate::abi::{self, VipKey};

/// How the program is attached to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// In the driver (`XDP_FLAGS_DRV_MODE`).
    Native,
    /// In the kernel's generic receive path (`XDP_FLAGS_SKB_MODE`).
    Generic,
}

impl AttachMode {
    /// `"native"` or `"generic"`.
    pub fn as_str(self) -> &'static str {
        match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
        }
    }
}

/// How packets reach the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardMode {
    /// IPIP / IP6IP6 (4in6 and 6in4 when families differ).
    Ipip,
    /// Rewrite the destination MAC (backends on the same segment).
    L2Dsr,
}

/// One server of a frontend as the balancer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerPlan {
    /// Server name (unique within the frontend).
    pub name: String,
    /// Address packets are encapsulated to (the port of the configured
    /// address is not used: DSR keeps the VIP port).
    pub address: IpAddr,
    /// Weight; 0 = no new flows.
    pub weight: u16,
    /// Used only while no non-backup server is live.
    pub backup: bool,
}

/// One XDP frontend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipPlan {
    /// Frontend name.
    pub frontend: String,
    /// Backend (pool) name.
    pub backend: String,
    /// The VIP, port and protocol.
    pub key: VipKey,
    /// `abi::VIP_*` flags.
    pub flags: u32,
    /// Forwarding.
    pub forward: ForwardMode,
    /// Interface the program must be attached to.
    pub interface: String,
    /// Requested attach mode.
    pub mode: AttachMode,
    /// Maglev table size (a prime).
    pub table_size: u32,
    /// How long a removed server keeps its pinned flows.
    pub drain_timeout: Duration,
    /// Servers, in config order.
    pub servers: Vec<ServerPlan>,
}

/// A frontend asks for XDP but cannot have it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Frontend name.
    pub frontend: String,
    /// Why.
    pub reason: String,
}

/// Whether `config` has any frontend that asks for XDP.
pub fn wants_xdp(config: &Config) -> bool {
    config
        .frontends
        .iter()
        .any(|f| f.xdp != XdpMode::Off && f.forwarding != Forwarding::Proxy)
}

/// The XDP frontends of `config`, and those that ask for XDP but cannot be
/// served by it.
pub fn plan(config: &Config) -> (Vec<VipPlan>, Vec<Rejected>) {
    let mut plans = Vec::new();
    let mut rejected = Vec::new();
    for f in &config.frontends {
        let forward = match f.forwarding {
            Forwarding::Proxy => continue,
            Forwarding::Ipip => ForwardMode::Ipip,
            Forwarding::L2Dsr => ForwardMode::L2Dsr,
        };
        let mode = match f.xdp {
            XdpMode::Off => continue,
            XdpMode::Native => AttachMode::Native,
            XdpMode::Generic => AttachMode::Generic,
        };
        let reject = |reason: String| Rejected {
            frontend: f.name.clone(),
            reason,
        };
        let Some(interface) = f.interface.clone() else {
            rejected.push(reject("no interface configured".into()));
            continue;
        };
        let proto = match f.mode {
            FrontendMode::Tcp => abi::PROTO_TCP,
            FrontendMode::Udp => abi::PROTO_UDP,
            FrontendMode::Http => {
                rejected.push(reject("mode \"http\" cannot be forwarded by XDP".into()));
                continue;
            }
        };
        if f.bind.ip().is_unspecified() || f.bind.port() == 0 {
            rejected.push(reject(format!(
                "bind {} is not a specific address and port",
                f.bind
            )));
            continue;
        }
        let Some(backend) = config.backend(&f.backend) else {
            rejected.push(reject(format!("backend {:?} does not exist", f.backend)));
            continue;
        };
        let mut flags = match forward {
            ForwardMode::Ipip => abi::VIP_IPIP,
            ForwardMode::L2Dsr => abi::VIP_L2DSR,
        };
        // A maglev backend hashing on the client address alone keeps that
        // choice; every other backend is balanced per connection.
        let source_only =
            backend.algorithm == Algorithm::Maglev && backend.hash_key == HashKey::SourceIp;
        if !source_only {
            flags |= abi::VIP_HASH_PORT;
        }
        let table_size = if backend.algorithm == Algorithm::Maglev {
            backend.maglev_table_size
        } else {
            dataplane::maglev::DEFAULT_TABLE_SIZE
        };
        plans.push(VipPlan {
            frontend: f.name.clone(),
            backend: backend.name.clone(),
            key: VipKey::new(f.bind.ip(), f.bind.port(), proto),
            flags,
            forward,
            interface,
            mode,
            table_size,
            drain_timeout: backend.drain_timeout,
            servers: backend
                .servers
                .iter()
                .map(|s| ServerPlan {
                    name: s.name.clone(),
                    address: s.address.ip(),
                    weight: s.weight,
                    backup: s.backup,
                })
                .collect(),
        });
    }
    (plans, rejected)
}

/// Health and admin state of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerCondition {
    /// Up and taking new flows.
    Live,
    /// Up, weight 0 or drained: keeps its flows, gets no new ones.
    Drained,
    /// Down: its flows move to live servers.
    Down,
    /// A standby (`backup = true`) not needed while other servers are live.
    Standby,
}

/// A server's inputs to the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInput<'a> {
    /// Name.
    pub name: &'a str,
    /// Weight (0 = drained).
    pub weight: u16,
    /// Backup server.
    pub backup: bool,
    /// Health.
    pub up: bool,
    /// Administratively drained.
    pub drained: bool,
}

/// The condition of each server (same order as `servers`): backups are
/// live only while no regular server is.
pub fn live_servers(servers: &[ServerInput<'_>]) -> Vec<ServerCondition> {
    let usable = |s: &ServerInput<'_>| s.up && !s.drained && s.weight > 0;
    let regular_live = servers.iter().any(|s| !s.backup && usable(s));
    servers
        .iter()
        .map(|s| {
            if !s.up {
                ServerCondition::Down
            } else if !usable(s) {
                ServerCondition::Drained
            } else if s.backup && regular_live {
                ServerCondition::Standby
            } else {
                ServerCondition::Live
            }
        })
        .collect()
}

/// A built table ready for the kernel: `slots[0]` is the size `M`,
/// `slots[1..=M]` backend indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelTable {
    /// Slot 0 = M, then M backend indices.
    pub slots: Vec<u32>,
    /// Slots held by each live server (by name).
    pub slot_counts: Vec<(String, u32)>,
}

/// Build the Maglev table over the live servers `(name, weight, backend
/// index)`; `Ok(None)` when no server is live.
pub fn build_table(
    live: &[(&str, u16, u32)],
    size: u32,
) -> Result<Option<KernelTable>, MaglevError> {
    if live.is_empty() {
        return Ok(None);
    }
    let weights: Vec<(&str, u32)> = live.iter().map(|(n, w, _)| (*n, u32::from(*w))).collect();
    let table = MaglevTable::build(&weights, size)?;
    // `table.names()` is sorted; map each name to its backend index.
    let index_of: Vec<u32> = table
        .names()
        .iter()
        .map(|n| {
            live.iter()
                .find(|(name, _, _)| name == n)
                .map(|(_, _, i)| *i)
                .unwrap_or(u32::MAX)
        })
        .collect();
    let mut slots = Vec::with_capacity(table.slots.len() + 1);
    slots.push(table.size());
    slots.extend(
        table
            .slots
            .iter()
            .map(|s| index_of.get(*s as usize).copied().unwrap_or(u32::MAX)),
    );
    let slot_counts = table
        .names()
        .iter()
        .cloned()
        .zip(table.slot_counts())
        .collect();
    Ok(Some(KernelTable { slots, slot_counts }))
}

/// Indices of a fixed-size kernel array, each handed out with a fresh
/// generation. Released indices wait in quarantine until their drain time
/// is over, then join the back of the free list so reuse comes as late as
/// possible.
#[derive(Debug, Clone)]
pub struct IndexPool {
    free: VecDeque<u32>,
    quarantine: Vec<(u32, Instant)>,
    next_generation: u32,
}

impl IndexPool {
    /// Indices `0..capacity`.
    pub fn new(capacity: u32) -> IndexPool {
        IndexPool {
            free: (0..capacity).collect(),
            quarantine: Vec::new(),
            next_generation: 1,
        }
    }

    /// A free index and its new generation, or `None` when all are taken.
    pub fn alloc(&mut self) -> Option<(u32, u32)> {
        let index = self.free.pop_front()?;
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        Some((index, generation))
    }

    /// Give `index` back once `until` has passed.
    pub fn release(&mut self, index: u32, until: Instant) {
        self.quarantine.push((index, until));
    }

    /// Give `index` back now.
    pub fn release_now(&mut self, index: u32) {
        self.free.push_back(index);
    }

    /// Indices whose quarantine ended at `now`; they are free again (the
    /// caller clears their kernel entries first).
    pub fn expire(&mut self, now: Instant) -> Vec<u32> {
        let mut done = Vec::new();
        self.quarantine.retain(|(i, until)| {
            if *until <= now {
                done.push(*i);
                false
            } else {
                true
            }
        });
        done.sort_unstable();
        self.free.extend(done.iter().copied());
        done
    }

    /// Indices in quarantine.
    pub fn quarantined(&self) -> usize {
        self.quarantine.len()
    }

    /// Indices free now.
    pub fn available(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[node]
name = "lb1"

[[frontend]]
name = "web"
bind = "10.0.0.100:80"
mode = "tcp"
backend = "web"
forwarding = "ipip"
xdp = "native"
interface = "eth0"

[[frontend]]
name = "dns"
bind = "[fd00::100]:53"
mode = "udp"
backend = "dns"
forwarding = "l2-dsr"
xdp = "generic"
interface = "eth1"

[[frontend]]
name = "proxy"
bind = "10.0.0.100:8080"
mode = "tcp"
backend = "web"

[[backend]]
name = "web"
servers = [ { name = "a", address = "10.0.1.10:80" }, { name = "b", address = "10.0.1.11:80", weight = 3, backup = true } ]

[[backend]]
name = "dns"
algorithm = "maglev"
hash_key = "source-ip"
maglev_table_size = 251
drain_timeout = "5s"
servers = [ { name = "x", address = "[fd00::10]:53" } ]
"#;

    fn config() -> Config {
        control::config::parse(CONFIG, "test.toml").unwrap()
    }

    #[test]
    fn plans_only_xdp_frontends() {
        let c = config();
        assert!(wants_xdp(&c));
        let (plans, rejected) = plan(&c);
        assert!(rejected.is_empty(), "{rejected:?}");
        assert_eq!(plans.len(), 2);
        let web = &plans[0];
        assert_eq!(web.frontend, "web");
        assert_eq!(web.forward, ForwardMode::Ipip);
        assert_eq!(web.mode, AttachMode::Native);
        assert_eq!(web.interface, "eth0");
        assert_eq!(web.flags, abi::VIP_IPIP | abi::VIP_HASH_PORT);
        assert_eq!(web.table_size, dataplane::maglev::DEFAULT_TABLE_SIZE);
        assert_eq!(web.key.proto, abi::PROTO_TCP);
        assert_eq!(&web.key.addr[..4], &[10, 0, 0, 100]);
        assert_eq!(web.servers[1].weight, 3);
        assert!(web.servers[1].backup);
        let dns = &plans[1];
        assert_eq!(dns.forward, ForwardMode::L2Dsr);
        assert_eq!(dns.mode, AttachMode::Generic);
        assert_eq!(
            dns.flags,
            abi::VIP_L2DSR,
            "source-ip maglev hashes without the port"
        );
        assert_eq!(dns.table_size, 251);
        assert_eq!(dns.drain_timeout, Duration::from_secs(5));
        assert_eq!(dns.key.family, abi::FAMILY_V6);
    }

    #[test]
    fn config_without_xdp_wants_none() {
        let c = control::config::parse(
            "[node]\nname = \"a\"\n[[frontend]]\nname = \"f\"\nbind = \"127.0.0.1:80\"\nmode = \"tcp\"\nbackend = \"b\"\n[[backend]]\nname = \"b\"\nservers = [ { name = \"s\", address = \"127.0.0.1:81\" } ]\n",
            "t.toml",
        )
        .unwrap();
        assert!(!wants_xdp(&c));
        assert!(plan(&c).0.is_empty());
    }

    fn input(name: &str, weight: u16, backup: bool, up: bool, drained: bool) -> ServerInput<'_> {
        ServerInput {
            name,
            weight,
            backup,
            up,
            drained,
        }
    }

    #[test]
    fn conditions_follow_health_drain_and_backup() {
        use ServerCondition::*;
        let s = [
            input("a", 1, false, true, false),
            input("b", 0, false, true, false),
            input("c", 1, false, true, true),
            input("d", 1, false, false, false),
            input("e", 1, true, true, false),
        ];
        assert_eq!(
            live_servers(&s),
            vec![Live, Drained, Drained, Down, Standby]
        );
        // Without a live regular server the backup takes over.
        let s = [
            input("a", 1, false, false, false),
            input("e", 1, true, true, false),
        ];
        assert_eq!(live_servers(&s), vec![Down, Live]);
    }

    #[test]
    fn table_maps_maglev_slots_to_backend_indices() {
        let t = build_table(&[("c", 1, 70), ("a", 1, 50), ("b", 1, 60)], 7)
            .unwrap()
            .unwrap();
        // dataplane's reference table for a, b, c with M = 7 is
        // [1, 2, 1, 2, 0, 0, 0] (indices into the sorted names).
        assert_eq!(t.slots, vec![7, 60, 70, 60, 70, 50, 50, 50]);
        assert_eq!(
            t.slot_counts,
            vec![
                ("a".to_string(), 3),
                ("b".to_string(), 2),
                ("c".to_string(), 2)
            ]
        );
        assert_eq!(build_table(&[], 7).unwrap(), None);
        assert!(build_table(&[("a", 1, 0)], 8).is_err());
    }

    #[test]
    fn pool_quarantines_and_reuses_late() {
        let mut p = IndexPool::new(3);
        let (a, ga) = p.alloc().unwrap();
        let (b, gb) = p.alloc().unwrap();
        assert_ne!(ga, gb);
        let t0 = Instant::now();
        p.release(a, t0 + Duration::from_secs(10));
        assert_eq!(p.quarantined(), 1);
        assert!(p.expire(t0 + Duration::from_secs(9)).is_empty());
        let (c, _) = p.alloc().unwrap();
        assert!(c != a && c != b);
        assert!(p.alloc().is_none(), "a is still in quarantine");
        assert_eq!(p.expire(t0 + Duration::from_secs(10)), vec![a]);
        let (again, g2) = p.alloc().unwrap();
        assert_eq!(again, a);
        assert!(g2 > gb, "a reused index gets a new generation");
        p.release_now(b);
        assert_eq!(p.available(), 1);
    }
}
