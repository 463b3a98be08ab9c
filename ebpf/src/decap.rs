//! [`Decap`]: the backend side of IPIP forwarding. Loads
//! `bpf/halb_decap.c` on a backend's interface: packets encapsulated to one
//! of the listed local addresses lose their outer header and reach the
//! stack as the client sent them (the VIP must be on the backend's `lo`,
//! with `arp_ignore = 1` and `arp_announce = 2` on its interfaces). Needed
//! where the kernel has no ipip / ip6_tunnel support, and faster than a
//! tunnel device where it has.

use std::collections::BTreeMap;
use std::net::IpAddr;

use aya::maps::{HashMap, MapData, PerCpuArray};
use aya::programs::{ProgramError, Xdp, XdpMode};
use aya::Ebpf;

use crate::abi::{self, DecapKey, DecapStats};
use crate::error::{chain, load_error, map_error, xdp_program_mut, Error};
use crate::plan::AttachMode;

const PROGRAM: &str = "halb_decap";

/// The decapsulation program, attached to one interface.
pub struct Decap {
    ebpf: Ebpf,
    addrs: HashMap<MapData, DecapKey, u32>,
    stats: PerCpuArray<MapData, DecapStats>,
    interfaces: BTreeMap<String, (AttachMode, aya::programs::xdp::XdpLinkId)>,
}

impl std::fmt::Debug for Decap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decap")
            .field("interfaces", &self.interfaces.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn prog_mut(ebpf: &mut Ebpf) -> Result<&mut Xdp, Error> {
    xdp_program_mut(ebpf, PROGRAM)
}

impl Decap {
    /// Load the program; `local` are the addresses the balancer
    /// encapsulates to (the backend's own addresses).
    pub fn load(local: &[IpAddr]) -> Result<Decap, Error> {
        let object = crate::object::decap().ok_or(Error::ProgramNotBuilt)?;
        let mut ebpf = Ebpf::load(object).map_err(|e| load_error("object", &e))?;
        prog_mut(&mut ebpf)?
            .load()
            .map_err(|e| load_error("verifier", &e))?;
        let map = ebpf
            .take_map("halb_decap_addrs")
            .ok_or(Error::MissingObject {
                kind: "map",
                name: "halb_decap_addrs",
            })?;
        let mut addrs: HashMap<MapData, DecapKey, u32> =
            HashMap::try_from(map).map_err(|e| map_error("halb_decap_addrs", &e))?;
        for ip in local {
            let (addr, family) = abi::addr_bytes(*ip);
            let key = DecapKey {
                addr,
                family,
                reserved: [0; 3],
            };
            addrs
                .insert(key, 1, 0)
                .map_err(|e| map_error("halb_decap_addrs", &e))?;
        }
        let map = ebpf
            .take_map("halb_decap_stats")
            .ok_or(Error::MissingObject {
                kind: "map",
                name: "halb_decap_stats",
            })?;
        let stats = PerCpuArray::try_from(map).map_err(|e| map_error("halb_decap_stats", &e))?;
        Ok(Decap {
            ebpf,
            addrs,
            stats,
            interfaces: BTreeMap::new(),
        })
    }

    /// Attach to `interface` (in the caller's network namespace).
    pub fn attach(&mut self, interface: &str, mode: AttachMode) -> Result<(), Error> {
        let flags = match mode {
            AttachMode::Native => XdpMode::Driver,
            AttachMode::Generic => XdpMode::Skb,
        };
        let link = prog_mut(&mut self.ebpf)?
            .attach(interface, flags)
            .map_err(|e| match e {
                ProgramError::UnknownInterface { name } => Error::UnknownInterface(name),
                other => Error::Attach {
                    interface: interface.to_string(),
                    mode: mode.as_str(),
                    reason: chain(&other),
                },
            })?;
        self.interfaces.insert(interface.to_string(), (mode, link));
        Ok(())
    }

    /// Number of local addresses decapsulated for.
    pub fn address_count(&self) -> usize {
        self.addrs.keys().filter(|k| k.is_ok()).count()
    }

    /// Summed counters.
    pub fn stats(&self) -> Result<DecapStats, Error> {
        let v = self
            .stats
            .get(&0, 0)
            .map_err(|e| map_error("halb_decap_stats", &e))?;
        let mut total = DecapStats::default();
        for s in v.iter() {
            total.decapsulated += s.decapsulated;
            total.passed += s.passed;
        }
        Ok(total)
    }
}
