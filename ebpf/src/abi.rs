//! `#[repr(C)]` mirrors of the map keys and values in `bpf/halb_structs.h`,
//! and the constants of `bpf/halb_consts.h` that user space needs.
//!
//! The C header is the one definition; the test
//! `abi_layout_matches_object_btf` (tests/fixtures.rs) reads the BTF of the
//! compiled object and checks every size and field offset here.
//! Multi-byte address and port fields are in network byte order.

// aya reads and writes map values as plain bytes: that requires the `Pod`
// marker, an unsafe trait. This module holds only those impls.
#![allow(unsafe_code)]

use std::net::IpAddr;

/// `HALB_MAX_VIPS`: capacity of the VIP table.
pub const MAX_VIPS: u32 = 256;
/// `HALB_MAX_BACKENDS`: capacity of the backend table (all VIPs together).
pub const MAX_BACKENDS: u32 = 4096;
/// `HALB_DEFAULT_FLOWS`: flow-table entries compiled into the object.
pub const DEFAULT_FLOWS: u32 = 65_536;

/// `HALB_FAMILY_V4`.
pub const FAMILY_V4: u8 = 4;
/// `HALB_FAMILY_V6`.
pub const FAMILY_V6: u8 = 6;

/// `HALB_VIP_IPIP`: encapsulate towards the backend.
pub const VIP_IPIP: u32 = 0x1;
/// `HALB_VIP_L2DSR`: rewrite the destination MAC only.
pub const VIP_L2DSR: u32 = 0x2;
/// `HALB_VIP_HASH_PORT`: the flow hash covers the client port.
pub const VIP_HASH_PORT: u32 = 0x4;

/// `HALB_BACKEND_ACTIVE`: flows pinned to the backend may continue.
pub const BACKEND_ACTIVE: u8 = 0x1;
/// `HALB_BACKEND_RESOLVED`: the next-hop fields are valid.
pub const BACKEND_RESOLVED: u8 = 0x2;
/// `HALB_BACKEND_ONLINK`: reachable without a gateway (needed by l2-dsr).
pub const BACKEND_ONLINK: u8 = 0x4;

/// `IPPROTO_TCP`.
pub const PROTO_TCP: u8 = 6;
/// `IPPROTO_UDP`.
pub const PROTO_UDP: u8 = 17;

/// An address as the maps store it: IPv4 in the first 4 bytes.
pub fn addr_bytes(ip: IpAddr) -> ([u8; 16], u8) {
    let mut out = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => {
            out[..4].copy_from_slice(&v4.octets());
            (out, FAMILY_V4)
        }
        IpAddr::V6(v6) => (v6.octets(), FAMILY_V6),
    }
}

/// `struct halb_vip_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VipKey {
    /// Address, IPv4 in `addr[0..4]`.
    pub addr: [u8; 16],
    /// Port, network order.
    pub port: u16,
    /// `PROTO_TCP` or `PROTO_UDP`.
    pub proto: u8,
    /// `FAMILY_V4` or `FAMILY_V6`.
    pub family: u8,
}

impl VipKey {
    /// The key of `ip:port` over `proto`.
    pub fn new(ip: IpAddr, port: u16, proto: u8) -> VipKey {
        let (addr, family) = addr_bytes(ip);
        VipKey {
            addr,
            port: port.to_be(),
            proto,
            family,
        }
    }
}

/// `struct halb_vip_meta`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VipMeta {
    /// Index into the Maglev outer map and the VIP counters.
    pub index: u32,
    /// `VIP_*` flags.
    pub flags: u32,
}

/// `struct halb_backend`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backend {
    /// Address, IPv4 in `addr[0..4]`.
    pub addr: [u8; 16],
    /// MAC of the next hop (the backend or its gateway).
    pub dmac: [u8; 6],
    /// MAC of the egress interface.
    pub smac: [u8; 6],
    /// Egress interface index.
    pub ifindex: u32,
    /// Egress MTU.
    pub mtu: u32,
    /// Changes whenever the index is given to another server.
    pub generation: u32,
    /// `FAMILY_V4` or `FAMILY_V6`.
    pub family: u8,
    /// `BACKEND_*` flags.
    pub flags: u8,
    /// Zero.
    pub reserved: u16,
}

/// `struct halb_flow_key`. Its first 20 bytes have the layout of
/// [`VipKey`] (the program looks the VIP up with that prefix).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    /// VIP.
    pub dst: [u8; 16],
    /// VIP port, network order.
    pub dport: u16,
    /// Protocol.
    pub proto: u8,
    /// Family.
    pub family: u8,
    /// Client address.
    pub src: [u8; 16],
    /// Client port, network order.
    pub sport: u16,
    /// Zero.
    pub reserved: u16,
}

/// `struct halb_flow`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flow {
    /// Backend index.
    pub backend: u32,
    /// The backend's generation when the flow was pinned.
    pub generation: u32,
    /// The client's flow hash (`dataplane::maglev::hash_flow`) computed
    /// when the flow was pinned.
    pub hash: u64,
    /// `VIP_HASH_PORT` if `hash` covers the client port, else 0.
    pub hash_flags: u32,
    /// Zero.
    pub reserved: u32,
}

/// `struct halb_config`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProgramConfig {
    /// /64 prefix of outer IPv6 sources.
    pub encap_src_v6: [u8; 8],
    /// /16 prefix of outer IPv4 sources, network order.
    pub encap_src_v4: u32,
    /// Zero.
    pub reserved: u32,
}

/// `struct halb_vip_stats` (one CPU's share, or a sum).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VipStats {
    /// Packets to the VIP.
    pub packets: u64,
    /// Bytes of those frames.
    pub bytes: u64,
    /// TCP SYN / UDP packets that started a flow.
    pub new_flows: u64,
    /// Packets not found in the flow table.
    pub lru_misses: u64,
    /// ICMP "too big" replies sent.
    pub icmp_too_big: u64,
    /// Packets dropped: no live backend, no route or neighbour.
    pub dropped: u64,
}

/// `struct halb_backend_stats`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackendStats {
    /// Packets forwarded to the backend.
    pub packets: u64,
    /// Bytes of those frames (as received).
    pub bytes: u64,
    /// New flows pinned to the backend.
    pub new_flows: u64,
    /// Packets pinned after a flow-table miss.
    pub lru_misses: u64,
}

/// `struct halb_global_stats`: packets the balancer did not forward, and
/// how forwarded ones left.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GlobalStats {
    /// Not IPv4/IPv6.
    pub pass_not_ip: u64,
    /// IP but not to a VIP.
    pub pass_not_vip: u64,
    /// Fragments.
    pub pass_fragment: u64,
    /// IPv4 options or IPv6 extension headers.
    pub pass_ip_options: u64,
    /// Truncated or inconsistent headers.
    pub pass_malformed: u64,
    /// VIP without a live backend.
    pub drop_no_backend: u64,
    /// Next hop of the backend not resolved (no route or neighbour).
    pub drop_no_route: u64,
    /// l2-dsr backend not on-link.
    pub drop_not_onlink: u64,
    /// Head or tail adjustment failed.
    pub drop_error: u64,
    /// Sent back out the receiving interface.
    pub tx: u64,
    /// Redirected to another interface.
    pub redirect: u64,
    /// ICMP "too big" replies.
    pub icmp_too_big: u64,
}

/// `struct halb_decap_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DecapKey {
    /// Local address that encapsulated packets are sent to.
    pub addr: [u8; 16],
    /// Family.
    pub family: u8,
    /// Zero.
    pub reserved: [u8; 3],
}

/// `struct halb_decap_stats`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecapStats {
    /// Packets whose outer header was removed.
    pub decapsulated: u64,
    /// Packets passed untouched.
    pub passed: u64,
}

/// `struct halb_bench_stats`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BenchStats {
    /// Frames seen by the sink.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// `HALB_BENCH_FRAME_LEN`: length of the benchmark sender's frames.
pub const BENCH_FRAME_LEN: usize = 64;

/// `struct halb_bench_frame`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchFrame {
    /// The frame.
    pub bytes: [u8; BENCH_FRAME_LEN],
}

macro_rules! pod {
    ($($t:ty),* $(,)?) => {
        $(
            // SAFETY: `#[repr(C)]`, only integer and byte-array fields, no
            // implicit padding (checked against the C layout by the BTF
            // test), and every bit pattern is a valid value.
            unsafe impl aya::Pod for $t {}
        )*
    };
}

pod!(
    VipKey,
    VipMeta,
    Backend,
    FlowKey,
    Flow,
    ProgramConfig,
    VipStats,
    BackendStats,
    GlobalStats,
    DecapKey,
    DecapStats,
    BenchStats,
    BenchFrame,
);

/// Sum per-CPU values field by field.
pub(crate) trait Summable: Copy + Default {
    fn add(&mut self, other: &Self);
}

macro_rules! summable {
    ($t:ty { $($f:ident),* }) => {
        impl Summable for $t {
            fn add(&mut self, other: &Self) {
                $( self.$f = self.$f.wrapping_add(other.$f); )*
            }
        }
    };
}

summable!(VipStats {
    packets,
    bytes,
    new_flows,
    lru_misses,
    icmp_too_big,
    dropped
});
summable!(BackendStats {
    packets,
    bytes,
    new_flows,
    lru_misses
});
summable!(GlobalStats {
    pass_not_ip,
    pass_not_vip,
    pass_fragment,
    pass_ip_options,
    pass_malformed,
    drop_no_backend,
    drop_no_route,
    drop_not_onlink,
    drop_error,
    tx,
    redirect,
    icmp_too_big
});
summable!(DecapStats {
    decapsulated,
    passed
});
summable!(BenchStats { packets, bytes });

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn sizes_have_no_padding() {
        assert_eq!(size_of::<VipKey>(), 20);
        assert_eq!(size_of::<VipMeta>(), 8);
        assert_eq!(size_of::<Backend>(), 44);
        assert_eq!(size_of::<FlowKey>(), 40);
        assert_eq!(size_of::<Flow>(), 24);
        assert_eq!(size_of::<ProgramConfig>(), 16);
        assert_eq!(size_of::<VipStats>(), 48);
        assert_eq!(size_of::<BackendStats>(), 32);
        assert_eq!(size_of::<GlobalStats>(), 96);
        assert_eq!(size_of::<DecapKey>(), 20);
    }

    #[test]
    fn vip_key_is_a_prefix_of_flow_key() {
        use std::mem::offset_of;
        assert_eq!(offset_of!(FlowKey, dst), offset_of!(VipKey, addr));
        assert_eq!(offset_of!(FlowKey, dport), offset_of!(VipKey, port));
        assert_eq!(offset_of!(FlowKey, proto), offset_of!(VipKey, proto));
        assert_eq!(offset_of!(FlowKey, family), offset_of!(VipKey, family));
        assert_eq!(offset_of!(FlowKey, src), size_of::<VipKey>());
    }

    #[test]
    fn vip_keys_store_addresses_and_ports_in_network_order() {
        let k = VipKey::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100)), 80, PROTO_TCP);
        assert_eq!(&k.addr[..4], &[10, 0, 0, 100]);
        assert!(k.addr[4..].iter().all(|b| *b == 0));
        assert_eq!(k.port.to_ne_bytes(), [0, 80]);
        assert_eq!(k.family, FAMILY_V4);
        let v6 = VipKey::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 443, PROTO_UDP);
        assert_eq!(v6.addr[15], 1);
        assert_eq!(v6.family, FAMILY_V6);
        assert_eq!(v6.port.to_ne_bytes(), [1, 187]);
    }

    #[test]
    fn sums_add_every_field() {
        let mut a = GlobalStats {
            tx: 1,
            icmp_too_big: 2,
            ..Default::default()
        };
        a.add(&GlobalStats {
            tx: 3,
            pass_not_ip: 5,
            ..Default::default()
        });
        assert_eq!((a.tx, a.icmp_too_big, a.pass_not_ip), (4, 2, 5));
    }
}
