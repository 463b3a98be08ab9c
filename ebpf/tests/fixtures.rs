//! Fixture tests of the XDP program through BPF_PROG_TEST_RUN: an input
//! frame, the expected output frame and the expected XDP action, for each
//! path of `bpf/halb_xdp.c`.
//!
//! The program runs in a namespace of its own whose `eth0` has permanent
//! neighbour entries for the backends, so `bpf_fib_lookup` resolves known
//! MAC addresses and expected frames can be written down byte for byte.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::packets::{self, l4_frame, ACK, PSH, SYN, TCP, UDP};
use common::{backend_mac, mac_str, CLIENT_MAC, GW_MAC, LB_MAC};
use dataplane::maglev::{hash_flow, MaglevTable};
use ebpf::{ServerSpec, TestOutcome, XdpAction, XdpBalancer, XdpOptions};
use testsupport::{Lab, Netns};

const CONFIG: &str = r#"
[node]
name = "fixture"

[[frontend]]
name = "web4"
bind = "10.0.0.100:80"
mode = "tcp"
backend = "pool4"
forwarding = "ipip"
xdp = "generic"
interface = "eth0"

[[frontend]]
name = "dns4"
bind = "10.0.0.100:53"
mode = "udp"
backend = "pool4"
forwarding = "ipip"
xdp = "generic"
interface = "eth0"

[[frontend]]
name = "web6"
bind = "[fd00::100]:80"
mode = "tcp"
backend = "pool6"
forwarding = "ipip"
xdp = "generic"
interface = "eth0"

[[frontend]]
name = "src6"
bind = "[fd00::100]:82"
mode = "tcp"
backend = "pool6src"
forwarding = "ipip"
xdp = "generic"
interface = "eth0"

[[frontend]]
name = "mixed"
bind = "10.0.0.104:80"
mode = "tcp"
backend = "pool6"
forwarding = "ipip"
xdp = "generic"
interface = "eth0"

[[frontend]]
name = "dsr"
bind = "10.0.0.101:80"
mode = "tcp"
backend = "pool4"
forwarding = "l2-dsr"
xdp = "generic"
interface = "eth0"

[[frontend]]
name = "dsr6"
bind = "[fd00::101]:80"
mode = "tcp"
backend = "pool6"
forwarding = "l2-dsr"
xdp = "generic"
interface = "eth0"

[[frontend]]
name = "big"
bind = "10.0.0.105:80"
mode = "tcp"
backend = "big"
forwarding = "ipip"
xdp = "generic"
interface = "eth0"

[[frontend]]
name = "far"
bind = "10.0.0.102:80"
mode = "tcp"
backend = "far"
forwarding = "l2-dsr"
xdp = "generic"
interface = "eth0"

[[frontend]]
name = "farip"
bind = "10.0.0.102:81"
mode = "tcp"
backend = "far"
forwarding = "ipip"
xdp = "generic"
interface = "eth0"

[[frontend]]
name = "noroute"
bind = "10.0.0.103:80"
mode = "tcp"
backend = "nowhere"
forwarding = "ipip"
xdp = "generic"
interface = "eth0"

[[backend]]
name = "pool4"
algorithm = "maglev"
hash_key = "source-ip-port"
maglev_table_size = 251
servers = [
  { name = "a", address = "10.0.0.11:80" },
  { name = "b", address = "10.0.0.12:80" },
  { name = "c", address = "10.0.0.13:80" },
]

[[backend]]
name = "pool6"
algorithm = "maglev"
hash_key = "source-ip-port"
maglev_table_size = 251
servers = [
  { name = "a", address = "[fd00::11]:80" },
  { name = "b", address = "[fd00::12]:80" },
  { name = "c", address = "[fd00::13]:80" },
]

[[backend]]
name = "pool6src"
algorithm = "maglev"
hash_key = "source-ip"
maglev_table_size = 251
servers = [
  { name = "a", address = "[fd00::11]:80" },
  { name = "b", address = "[fd00::12]:80" },
]

[[backend]]
name = "big"
servers = [
  { name = "x", address = "10.0.0.11:80" },
  { name = "y", address = "10.0.0.12:80", weight = 2 },
]

[[backend]]
name = "far"
algorithm = "maglev"
maglev_table_size = 251
servers = [ { name = "f", address = "10.9.0.5:80" } ]

[[backend]]
name = "nowhere"
algorithm = "maglev"
maglev_table_size = 251
servers = [ { name = "n", address = "10.77.0.1:80" } ]
"#;

const VIP4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100);

fn client4() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 1, 0, 7))
}

fn client6() -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 7))
}

struct Fixture {
    _lab: Lab,
    lb: Netns,
    ifindex: u32,
    xdp: XdpBalancer,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        let lab = Lab::new(tag).unwrap();
        let lb = lab.netns("lb").unwrap();
        let gw = lab.netns("gw").unwrap();
        lab.link(&lb, "eth0", &gw, "eth0").unwrap();
        lb.set_mac("eth0", mac_str(LB_MAC)).unwrap();
        gw.set_mac("eth0", mac_str(GW_MAC)).unwrap();
        lb.add_addr("eth0", "10.0.0.1/24").unwrap();
        lb.add_addr("eth0", "fd00::1/64").unwrap();
        for last in [0x11u8, 0x12, 0x13, 0x14] {
            lb.ip([
                "neigh",
                "replace",
                &format!("10.0.0.{}", last - 0x11 + 11),
                "lladdr",
                &mac_str(backend_mac(last)),
                "dev",
                "eth0",
                "nud",
                "permanent",
            ])
            .unwrap();
            lb.ip([
                "neigh",
                "replace",
                &format!("fd00::{last:x}"),
                "lladdr",
                &mac_str(backend_mac(last)),
                "dev",
                "eth0",
                "nud",
                "permanent",
            ])
            .unwrap();
        }
        lb.ip([
            "neigh",
            "replace",
            "10.0.0.254",
            "lladdr",
            &mac_str(GW_MAC),
            "dev",
            "eth0",
            "nud",
            "permanent",
        ])
        .unwrap();
        lb.add_route("10.9.0.0/24", "10.0.0.254").unwrap();
        // No forwarding sysctl: next hops are resolved in user space.
        assert_eq!(lb.sysctl_get("net.ipv4.conf.eth0.forwarding").unwrap(), "0");
        let ifindex = lb.link("eth0").unwrap().ifindex;
        let config = control::config::parse(CONFIG, "fixture.toml").unwrap();
        let options = XdpOptions {
            flow_table_entries: 4096,
            ..XdpOptions::default()
        };
        let (xdp, report) = lb
            .run(|| XdpBalancer::new(&config, &options))
            .unwrap()
            .unwrap();
        assert!(report.fallback.is_empty(), "{:?}", report.fallback);
        assert_eq!(report.kernel.len(), 11);
        Fixture {
            _lab: lab,
            lb,
            ifindex,
            xdp,
        }
    }

    fn run(&self, frame: &[u8]) -> TestOutcome {
        let xdp = &self.xdp;
        let ifindex = self.ifindex;
        let out = self
            .lb
            .run(|| xdp.test_run(frame, Some(ifindex)))
            .unwrap()
            .unwrap();
        if out.action == XdpAction::Drop {
            eprintln!(
                "XDP_DROP; counters: {:?}",
                self.xdp.stats().map(|s| s.global)
            );
        }
        out
    }
}

macro_rules! gate {
    () => {
        testsupport::require_root!("BPF and network namespaces");
        testsupport::require_tool!("clang");
        assert!(
            ebpf::object::built(),
            "clang is installed but the XDP program was not built"
        );
    };
}

fn pool_table(names: &[&str]) -> MaglevTable {
    let servers: Vec<(&str, u32)> = names.iter().map(|n| (*n, 1)).collect();
    MaglevTable::build(&servers, 251).unwrap()
}

fn v4_of(name: &str) -> Ipv4Addr {
    let last = match name {
        "a" => 11,
        "b" => 12,
        "c" => 13,
        "d" => 14,
        other => panic!("unknown server {other}"),
    };
    Ipv4Addr::new(10, 0, 0, last)
}

fn v6_of(name: &str) -> Ipv6Addr {
    let last = match name {
        "a" => 0x11,
        "b" => 0x12,
        "c" => 0x13,
        other => panic!("unknown server {other}"),
    };
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, last)
}

fn mac_of(addr: IpAddr) -> [u8; 6] {
    let last = match addr {
        IpAddr::V4(a) => a.octets()[3] - 11 + 0x11,
        IpAddr::V6(a) => a.octets()[15],
    };
    backend_mac(last)
}

fn tcp4(sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    l4_frame(
        LB_MAC,
        CLIENT_MAC,
        client4(),
        IpAddr::V4(VIP4),
        TCP,
        sport,
        dport,
        flags,
        payload,
    )
}

/// Expected IPIP frame: outer IPv4 from 172.16.0.0/16 + hash bits.
fn ipip4(backend: Ipv4Addr, hash: u64, inner: &[u8]) -> Vec<u8> {
    let tos = inner[1];
    let mut outer = packets::V4::new(
        Ipv4Addr::new(172, 16, (hash >> 8) as u8, hash as u8),
        backend,
        4,
    );
    outer.tos = tos;
    outer.id = 0;
    outer.frag = 0x4000;
    packets::eth(
        mac_of(IpAddr::V4(backend)),
        LB_MAC,
        packets::ETH_IPV4,
        &outer.build(inner),
    )
}

fn outer6_src(hash: u64) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o[..8].copy_from_slice(&[0xfd, 0x68, 0x61, 0x6c, 0x62, 0, 0, 0]);
    o[8..].copy_from_slice(&hash.to_be_bytes());
    Ipv6Addr::from(o)
}

/// Expected IP6IP6 (or 4in6) frame.
fn ip6ip(backend: Ipv6Addr, hash: u64, next: u8, tclass: u8, inner: &[u8]) -> Vec<u8> {
    let outer = packets::ipv6(
        outer6_src(hash),
        backend,
        next,
        tclass,
        (hash & 0xfffff) as u32,
        inner,
    );
    packets::eth(
        mac_of(IpAddr::V6(backend)),
        LB_MAC,
        packets::ETH_IPV6,
        &outer,
    )
}

fn assert_frames_eq(got: &[u8], want: &[u8]) {
    if got != want {
        let first = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "frames differ (got {} bytes, want {}; first difference at {first:?})\n got: {got:02x?}\nwant: {want:02x?}",
            got.len(),
            want.len()
        );
    }
}

#[test]
fn ipv4_tcp_to_vip_is_encapsulated_in_ipip() {
    gate!();
    let fx = Fixture::new("fx-ipip4");
    let mut inner_v4 = packets::V4::new(Ipv4Addr::new(10, 1, 0, 7), VIP4, TCP);
    inner_v4.tos = 0x28;
    let l4 = packets::tcp(client4(), IpAddr::V4(VIP4), 40000, 80, SYN, b"");
    let inner = inner_v4.build(&l4);
    let frame = packets::eth(LB_MAC, CLIENT_MAC, packets::ETH_IPV4, &inner);
    let out = fx.run(&frame);
    assert_eq!(out.action, XdpAction::Tx);
    let hash = hash_flow(client4(), Some(40000));
    let server = pool_table(&["a", "b", "c"]).lookup_name(hash).to_string();
    assert_frames_eq(&out.frame, &ipip4(v4_of(&server), hash, &inner));

    // UDP to the UDP frontend on the same VIP.
    let frame = l4_frame(
        LB_MAC,
        CLIENT_MAC,
        client4(),
        IpAddr::V4(VIP4),
        UDP,
        5353,
        53,
        0,
        b"query",
    );
    let out = fx.run(&frame);
    assert_eq!(out.action, XdpAction::Tx);
    let hash = hash_flow(client4(), Some(5353));
    let server = pool_table(&["a", "b", "c"]).lookup_name(hash).to_string();
    assert_frames_eq(&out.frame, &ipip4(v4_of(&server), hash, &frame[14..]));
}

#[test]
fn ipv6_to_vip_is_encapsulated_in_ip6ip6_and_v4_in_v6() {
    gate!();
    let fx = Fixture::new("fx-ip6ip6");
    let l4 = packets::tcp(client6(), IpAddr::V6(VIP6), 41000, 80, SYN, b"");
    let inner = packets::ipv6(
        Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 7),
        VIP6,
        TCP,
        0xb8,
        0x12345,
        &l4,
    );
    let frame = packets::eth(LB_MAC, CLIENT_MAC, packets::ETH_IPV6, &inner);
    let out = fx.run(&frame);
    assert_eq!(out.action, XdpAction::Tx);
    let hash = hash_flow(client6(), Some(41000));
    let server = pool_table(&["a", "b", "c"]).lookup_name(hash).to_string();
    assert_frames_eq(&out.frame, &ip6ip(v6_of(&server), hash, 41, 0xb8, &inner));

    // An IPv4 VIP whose servers are IPv6: 4in6 (next header 4).
    let frame = l4_frame(
        LB_MAC,
        CLIENT_MAC,
        client4(),
        "10.0.0.104".parse().unwrap(),
        TCP,
        42000,
        80,
        SYN,
        b"",
    );
    let out = fx.run(&frame);
    assert_eq!(out.action, XdpAction::Tx);
    let hash = hash_flow(client4(), Some(42000));
    let server = pool_table(&["a", "b", "c"]).lookup_name(hash).to_string();
    assert_frames_eq(&out.frame, &ip6ip(v6_of(&server), hash, 4, 0, &frame[14..]));
}

#[test]
fn established_flows_keep_their_hash_until_the_hash_key_changes() {
    gate!();
    let mut fx = Fixture::new("fx-flowhash");
    let table = pool_table(&["a", "b", "c"]);

    // IPv4: the first packet pins the flow (miss), the next ones hit and
    // are encapsulated with the hash stored in the flow table.
    let syn = tcp4(44000, 80, SYN, b"");
    let ack = tcp4(44000, 80, ACK, b"established");
    let hash4 = hash_flow(client4(), Some(44000));
    let server4 = v4_of(table.lookup_name(hash4));
    for frame in [&syn, &ack, &ack] {
        let out = fx.run(frame);
        assert_eq!(out.action, XdpAction::Tx);
        assert_frames_eq(&out.frame, &ipip4(server4, hash4, &frame[14..]));
    }
    let stats = fx.xdp.stats().unwrap();
    assert_eq!(stats.frontends["web4"].vip.packets, 3);
    assert_eq!(
        stats.frontends["web4"].vip.lru_misses, 1,
        "two flow-table hits"
    );

    // IPv6: the outer source carries all 64 bits of the hash.
    let src = client6();
    let frame = |flags: u8, payload: &[u8]| {
        l4_frame(
            LB_MAC,
            CLIENT_MAC,
            src,
            IpAddr::V6(VIP6),
            TCP,
            44001,
            80,
            flags,
            payload,
        )
    };
    let (syn6, ack6) = (frame(SYN, b""), frame(ACK, b"established"));
    let hash6 = hash_flow(src, Some(44001));
    let server6 = v6_of(table.lookup_name(hash6));
    for f in [&syn6, &ack6] {
        let out = fx.run(f);
        assert_eq!(out.action, XdpAction::Tx);
        assert_frames_eq(&out.frame, &ip6ip(server6, hash6, 41, 0, &f[14..]));
    }
    let misses = fx.xdp.stats().unwrap().frontends["web6"].vip.lru_misses;
    assert_eq!(misses, 1);

    // Reload with pool6 hashing the source address only: the flow keeps
    // its server (a hit), and its outer source follows the new hash key,
    // as it did when every packet was hashed.
    let edited = CONFIG.replacen(
        "name = \"pool6\"\nalgorithm = \"maglev\"\nhash_key = \"source-ip-port\"",
        "name = \"pool6\"\nalgorithm = \"maglev\"\nhash_key = \"source-ip\"",
        1,
    );
    assert_ne!(edited, CONFIG);
    let config = control::config::parse(&edited, "edited.toml").unwrap();
    let report = fx.xdp.apply(&config).unwrap();
    assert!(report.in_kernel("web6"));
    let out = fx.run(&ack6);
    assert_eq!(out.action, XdpAction::Tx);
    let rehash = hash_flow(src, None);
    assert_ne!(rehash, hash6);
    assert_frames_eq(&out.frame, &ip6ip(server6, rehash, 41, 0, &ack6[14..]));
}

#[test]
fn rust_and_c_flow_hashes_agree() {
    gate!();
    let fx = Fixture::new("fx-hash");
    // The outer IPv6 source carries the program's 64-bit flow hash.
    let mut checked = 0;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..40u32 {
        let r = next();
        let port = (r >> 16) as u16 | 1;
        let (src, vip, dport, with_port): (IpAddr, IpAddr, u16, bool) = match i % 4 {
            0 => (
                IpAddr::V4(Ipv4Addr::from(r as u32)),
                "10.0.0.104".parse().unwrap(),
                80,
                true,
            ),
            1 => (
                IpAddr::V6(Ipv6Addr::from(u128::from(r) << 64 | u128::from(next()))),
                IpAddr::V6(VIP6),
                80,
                true,
            ),
            2 => (
                IpAddr::V6(Ipv4Addr::from(r as u32).to_ipv6_mapped()),
                IpAddr::V6(VIP6),
                80,
                true,
            ),
            _ => (
                IpAddr::V6(Ipv6Addr::from(u128::from(r) << 32)),
                IpAddr::V6(VIP6),
                82,
                false,
            ),
        };
        let frame = l4_frame(LB_MAC, CLIENT_MAC, src, vip, TCP, port, dport, SYN, b"");
        let out = fx.run(&frame);
        assert_eq!(out.action, XdpAction::Tx, "tuple {i}");
        assert_eq!(&out.frame[12..14], &[0x86, 0xdd]);
        let outer_src: [u8; 8] = out.frame[14 + 8 + 8..14 + 8 + 16].try_into().unwrap();
        let want = hash_flow(src, with_port.then_some(port));
        assert_eq!(
            u64::from_be_bytes(outer_src),
            want,
            "tuple {i}: {src} port {port}"
        );
        let label = u32::from_be_bytes([0, out.frame[15] & 0x0f, out.frame[16], out.frame[17]]);
        assert_eq!(u64::from(label), want & 0xfffff, "tuple {i}: flow label");
        checked += 1;
    }
    assert_eq!(checked, 40);
}

#[test]
fn l2_dsr_rewrites_only_the_destination_mac() {
    gate!();
    let fx = Fixture::new("fx-dsr");
    let frame = l4_frame(
        LB_MAC,
        CLIENT_MAC,
        client4(),
        "10.0.0.101".parse().unwrap(),
        TCP,
        43000,
        80,
        SYN,
        b"",
    );
    let out = fx.run(&frame);
    assert_eq!(out.action, XdpAction::Tx);
    let hash = hash_flow(client4(), Some(43000));
    let server = pool_table(&["a", "b", "c"]).lookup_name(hash).to_string();
    let mut want = frame.clone();
    want[..6].copy_from_slice(&mac_of(IpAddr::V4(v4_of(&server))));
    want[6..12].copy_from_slice(&LB_MAC);
    assert_frames_eq(&out.frame, &want);

    let frame = l4_frame(
        LB_MAC,
        CLIENT_MAC,
        client6(),
        "fd00::101".parse().unwrap(),
        TCP,
        43001,
        80,
        SYN,
        b"x",
    );
    let out = fx.run(&frame);
    assert_eq!(out.action, XdpAction::Tx);
    let hash = hash_flow(client6(), Some(43001));
    let server = pool_table(&["a", "b", "c"]).lookup_name(hash).to_string();
    let mut want = frame.clone();
    want[..6].copy_from_slice(&mac_of(IpAddr::V6(v6_of(&server))));
    want[6..12].copy_from_slice(&LB_MAC);
    assert_frames_eq(&out.frame, &want);

    // A backend behind a gateway cannot be reached by MAC rewrite.
    let before = fx.xdp.stats().unwrap().global.drop_not_onlink;
    let frame = l4_frame(
        LB_MAC,
        CLIENT_MAC,
        client4(),
        "10.0.0.102".parse().unwrap(),
        TCP,
        43002,
        80,
        SYN,
        b"",
    );
    assert_eq!(fx.run(&frame).action, XdpAction::Drop);
    assert_eq!(fx.xdp.stats().unwrap().global.drop_not_onlink, before + 1);
    // ... but IPIP goes through the gateway.
    let frame = l4_frame(
        LB_MAC,
        CLIENT_MAC,
        client4(),
        "10.0.0.102".parse().unwrap(),
        TCP,
        43003,
        81,
        SYN,
        b"",
    );
    let out = fx.run(&frame);
    assert_eq!(out.action, XdpAction::Tx);
    assert_eq!(&out.frame[..6], &GW_MAC);
    assert_eq!(&out.frame[14 + 16..14 + 20], &[10, 9, 0, 5]);
}

#[test]
fn traffic_that_is_not_for_a_vip_passes_untouched() {
    gate!();
    let fx = Fixture::new("fx-pass");
    let mut arp = packets::eth([0xff; 6], CLIENT_MAC, packets::ETH_ARP, &[0u8; 28]);
    arp[14..16].copy_from_slice(&[0, 1]);
    let icmp_echo = {
        let mut icmp = vec![8, 0, 0, 0, 0, 1, 0, 1];
        let c = packets::checksum(&icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        packets::eth(
            LB_MAC,
            CLIENT_MAC,
            packets::ETH_IPV4,
            &packets::V4::new(Ipv4Addr::new(10, 1, 0, 7), VIP4, 1).build(&icmp),
        )
    };
    let frames = [
        tcp4(44000, 81, SYN, b""), // configured VIP, other port
        l4_frame(
            LB_MAC,
            CLIENT_MAC,
            client4(),
            "10.0.0.200".parse().unwrap(),
            TCP,
            44000,
            80,
            SYN,
            b"",
        ),
        l4_frame(
            LB_MAC,
            CLIENT_MAC,
            client4(),
            IpAddr::V4(VIP4),
            UDP,
            44000,
            80,
            0,
            b"u",
        ), // TCP VIP port over UDP
        l4_frame(
            LB_MAC,
            CLIENT_MAC,
            client6(),
            "fd00::200".parse().unwrap(),
            TCP,
            44000,
            80,
            SYN,
            b"",
        ),
        icmp_echo,
        arp,
    ];
    let before = fx.xdp.stats().unwrap().global;
    for (i, f) in frames.iter().enumerate() {
        let out = fx.run(f);
        assert_eq!(out.action, XdpAction::Pass, "frame {i}");
        assert_frames_eq(&out.frame, f);
    }
    let after = fx.xdp.stats().unwrap().global;
    assert_eq!(after.pass_not_vip, before.pass_not_vip + 5);
    assert_eq!(after.pass_not_ip, before.pass_not_ip + 1);
    assert_eq!(after.tx, before.tx);
}

#[test]
fn fragments_and_ip_options_go_to_the_stack() {
    gate!();
    let fx = Fixture::new("fx-frag");
    let l4 = packets::tcp(client4(), IpAddr::V4(VIP4), 45000, 80, SYN, b"");
    let mut first = packets::V4::new(Ipv4Addr::new(10, 1, 0, 7), VIP4, TCP);
    first.frag = 0x2000; // MF
    let mut later = first.clone();
    later.frag = 0x0010; // offset 128 bytes
    let mut options = packets::V4::new(Ipv4Addr::new(10, 1, 0, 7), VIP4, TCP);
    options.options = vec![1, 1, 1, 0]; // NOP NOP NOP EOL
    let v6l4 = packets::tcp(client6(), IpAddr::V6(VIP6), 45000, 80, SYN, b"");
    let mut frag6 = vec![TCP, 0, 0, 1, 0, 0, 0, 42]; // fragment header, M = 1
    frag6.extend_from_slice(&v6l4);
    let mut hbh = vec![TCP, 0, 1, 4, 0, 0, 0, 0]; // hop-by-hop, PadN
    hbh.extend_from_slice(&v6l4);
    let src6 = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 7);
    let cases = [
        (
            "v4 first fragment",
            packets::eth(LB_MAC, CLIENT_MAC, packets::ETH_IPV4, &first.build(&l4)),
            "frag",
        ),
        (
            "v4 later fragment",
            packets::eth(LB_MAC, CLIENT_MAC, packets::ETH_IPV4, &later.build(&l4)),
            "frag",
        ),
        (
            "v4 options",
            packets::eth(LB_MAC, CLIENT_MAC, packets::ETH_IPV4, &options.build(&l4)),
            "opt",
        ),
        (
            "v6 fragment",
            packets::eth(
                LB_MAC,
                CLIENT_MAC,
                packets::ETH_IPV6,
                &packets::ipv6(src6, VIP6, 44, 0, 0, &frag6),
            ),
            "frag",
        ),
        (
            "v6 hop-by-hop",
            packets::eth(
                LB_MAC,
                CLIENT_MAC,
                packets::ETH_IPV6,
                &packets::ipv6(src6, VIP6, 0, 0, 0, &hbh),
            ),
            "opt",
        ),
    ];
    let before = fx.xdp.stats().unwrap().global;
    for (what, frame, _) in &cases {
        let out = fx.run(frame);
        assert_eq!(out.action, XdpAction::Pass, "{what}");
        assert_frames_eq(&out.frame, frame);
    }
    let after = fx.xdp.stats().unwrap().global;
    assert_eq!(after.pass_fragment - before.pass_fragment, 3);
    assert_eq!(after.pass_ip_options - before.pass_ip_options, 2);
    // A truncated header is not forwarded either.
    let short = tcp4(45001, 80, SYN, b"");
    let out = fx.run(&short[..14 + 20 + 10]);
    assert_eq!(out.action, XdpAction::Pass);
}

#[test]
fn too_big_after_encapsulation_gets_icmp_replies() {
    gate!();
    let fx = Fixture::new("fx-mtu");
    // 1480-byte IP packets fit a 1500 MTU after IPIP; 1500-byte ones do not.
    let fits = tcp4(46000, 80, ACK, &vec![0xab; 1480 - 40]);
    assert_eq!(fx.run(&fits).action, XdpAction::Tx);

    let big = tcp4(46001, 80, ACK | PSH, &vec![0xcd; 1500 - 40]);
    let out = fx.run(&big);
    assert_eq!(out.action, XdpAction::Tx);
    let quote = &big[14..14 + 20 + 64];
    let mut icmp = vec![3, 4, 0, 0, 0, 0];
    icmp.extend_from_slice(&1480u16.to_be_bytes());
    icmp.extend_from_slice(quote);
    let c = packets::checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut ip = packets::V4::new(VIP4, Ipv4Addr::new(10, 1, 0, 7), 1);
    ip.tos = 0xc0;
    ip.id = 0;
    ip.frag = 0;
    let want = packets::eth(CLIENT_MAC, LB_MAC, packets::ETH_IPV4, &ip.build(&icmp));
    assert_frames_eq(&out.frame, &want);

    // IPv6: packet too big with MTU 1500 - 40.
    let l4 = packets::tcp(
        client6(),
        IpAddr::V6(VIP6),
        46002,
        80,
        ACK,
        &vec![0xef; 1500 - 40 - 20],
    );
    let src6 = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 7);
    let big6 = packets::eth(
        LB_MAC,
        CLIENT_MAC,
        packets::ETH_IPV6,
        &packets::ipv6(src6, VIP6, TCP, 0, 0, &l4),
    );
    let out = fx.run(&big6);
    assert_eq!(out.action, XdpAction::Tx);
    let mut icmp6 = vec![2, 0, 0, 0];
    icmp6.extend_from_slice(&1460u32.to_be_bytes());
    icmp6.extend_from_slice(&big6[14..14 + 40 + 64]);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&VIP6.octets());
    pseudo.extend_from_slice(&src6.octets());
    pseudo.extend_from_slice(&(icmp6.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    let c = !packets::fold(packets::sum(&icmp6, packets::sum(&pseudo, 0)));
    icmp6[2..4].copy_from_slice(&c.to_be_bytes());
    let want6 = packets::eth(
        CLIENT_MAC,
        LB_MAC,
        packets::ETH_IPV6,
        &packets::ipv6(VIP6, src6, 58, 0, 0, &icmp6),
    );
    assert_frames_eq(&out.frame, &want6);

    let stats = fx.xdp.stats().unwrap();
    assert_eq!(stats.frontends["web4"].vip.icmp_too_big, 1);
    assert_eq!(stats.frontends["web6"].vip.icmp_too_big, 1);
    assert_eq!(stats.global.icmp_too_big, 2);
}

/// The outer IPv4 destination of an encapsulated frame, as a server name.
fn server_of(out: &TestOutcome) -> String {
    assert_eq!(out.action, XdpAction::Tx);
    let d = &out.frame[14 + 16..14 + 20];
    match d {
        [10, 0, 0, 11] => "a",
        [10, 0, 0, 12] => "b",
        [10, 0, 0, 13] => "c",
        [10, 0, 0, 14] => "d",
        other => panic!("unexpected outer destination {other:?}"),
    }
    .to_string()
}

fn specs(names: &[&str]) -> Vec<ServerSpec> {
    names
        .iter()
        .map(|n| ServerSpec::new(*n, 1, IpAddr::V4(v4_of(n)), true))
        .collect()
}

#[test]
fn flows_stay_on_their_server_across_a_table_swap() {
    gate!();
    let mut fx = Fixture::new("fx-sticky");
    let old = pool_table(&["a", "b", "c"]);
    let new = pool_table(&["a", "b", "c", "d"]);
    // A client port that the new table sends to the new server d.
    let moved = (30000u16..40000)
        .find(|p| new.lookup_name(hash_flow(client4(), Some(*p))) == "d")
        .unwrap();
    let before = old
        .lookup_name(hash_flow(client4(), Some(moved)))
        .to_string();
    let out = fx.run(&tcp4(moved, 80, SYN, b""));
    assert_eq!(server_of(&out), before);

    fx.xdp
        .set_backends("web4", &specs(&["a", "b", "c", "d"]))
        .unwrap();

    // Established: same server as before the swap.
    for _ in 0..3 {
        let out = fx.run(&tcp4(moved, 80, ACK, b"data"));
        assert_eq!(server_of(&out), before, "pinned flow moved");
    }
    // A new flow that hashes like the moved one goes to d.
    let fresh = (moved + 1..50000)
        .find(|p| new.lookup_name(hash_flow(client4(), Some(*p))) == "d")
        .unwrap();
    assert_eq!(server_of(&fx.run(&tcp4(fresh, 80, SYN, b""))), "d");
    let flows = fx.xdp.pinned_flows().unwrap();
    assert!(flows.iter().any(
        |f| f.client.port() == moved && f.server == Some(("web4".to_string(), before.clone()))
    ));
}

#[test]
fn drained_servers_keep_flows_and_get_no_new_ones_down_servers_lose_them() {
    gate!();
    let mut fx = Fixture::new("fx-drain");
    let table = pool_table(&["a", "b", "c"]);
    let port = (30000u16..40000)
        .find(|p| table.lookup_name(hash_flow(client4(), Some(*p))) == "b")
        .unwrap();
    assert_eq!(server_of(&fx.run(&tcp4(port, 80, SYN, b""))), "b");
    assert!(fx.xdp.set_server_drained("pool4", "b", true).unwrap());
    assert!(
        !fx.xdp.set_server_drained("pool4", "b", true).unwrap(),
        "no change the second time"
    );
    assert_eq!(server_of(&fx.run(&tcp4(port, 80, ACK, b"more"))), "b");
    for p in 50000u16..50200 {
        assert_ne!(
            server_of(&fx.run(&tcp4(p, 80, SYN, b""))),
            "b",
            "new flow {p} went to drained b"
        );
    }
    let status = fx.xdp.status();
    let web4 = status.frontends.iter().find(|f| f.name == "web4").unwrap();
    let b = web4.servers.iter().find(|s| s.name == "b").unwrap();
    assert_eq!(b.condition, ebpf::ServerCondition::Drained);
    assert_eq!(b.slots, 0);

    // Down: the pinned flow is re-balanced to a live server.
    assert!(fx.xdp.set_server_health("pool4", "b", false).unwrap());
    let moved_to = server_of(&fx.run(&tcp4(port, 80, ACK, b"again")));
    assert_ne!(moved_to, "b");
    assert_eq!(
        moved_to,
        pool_table(&["a", "c"]).lookup_name(hash_flow(client4(), Some(port)))
    );
    // Unknown servers are errors.
    assert!(matches!(
        fx.xdp.set_server_health("pool4", "zz", true),
        Err(ebpf::Error::UnknownServer { .. })
    ));
}

#[test]
fn counters_count_packets_flows_and_misses() {
    gate!();
    let fx = Fixture::new("fx-count");
    let table = pool_table(&["a", "b", "c"]);
    let mut expect: std::collections::BTreeMap<String, u64> = Default::default();
    let mut bytes = 0u64;
    for p in 0..20u16 {
        let syn = tcp4(20000 + p, 80, SYN, b"");
        let ack = tcp4(20000 + p, 80, ACK, b"payload");
        bytes += (syn.len() + ack.len()) as u64;
        fx.run(&syn);
        fx.run(&ack);
        let s = table.lookup_name(hash_flow(client4(), Some(20000 + p)));
        *expect.entry(s.to_string()).or_default() += 2;
    }
    // A mid-flow packet of an unknown flow is a miss but not a new flow.
    fx.run(&tcp4(29999, 80, ACK, b"orphan"));
    let stats = fx.xdp.stats().unwrap();
    let web4 = &stats.frontends["web4"];
    assert_eq!(web4.vip.packets, 41);
    assert_eq!(web4.vip.new_flows, 20);
    assert_eq!(web4.vip.lru_misses, 21);
    assert_eq!(
        web4.vip.bytes,
        bytes + tcp4(29999, 80, ACK, b"orphan").len() as u64
    );
    let orphan = table
        .lookup_name(hash_flow(client4(), Some(29999)))
        .to_string();
    *expect.entry(orphan).or_default() += 1;
    for (name, n) in &expect {
        assert_eq!(web4.servers[name].packets, *n, "server {name}");
    }
    let new_flows: u64 = web4.servers.values().map(|s| s.new_flows).sum();
    assert_eq!(new_flows, 20);
    assert_eq!(stats.global.tx, 41);
    // Metrics export runs against the global recorder without error.
    let mut xdp = fx.xdp;
    xdp.export_metrics().unwrap();
}

#[test]
fn unroutable_and_serverless_vips_drop() {
    gate!();
    let mut fx = Fixture::new("fx-drop");
    let frame = l4_frame(
        LB_MAC,
        CLIENT_MAC,
        client4(),
        "10.0.0.103".parse().unwrap(),
        TCP,
        47000,
        80,
        SYN,
        b"",
    );
    assert_eq!(fx.run(&frame).action, XdpAction::Drop);
    assert_eq!(fx.xdp.stats().unwrap().global.drop_no_route, 1);
    fx.xdp.set_server_health("nowhere", "n", false).unwrap();
    assert_eq!(fx.run(&frame).action, XdpAction::Drop);
    let stats = fx.xdp.stats().unwrap();
    assert_eq!(stats.global.drop_no_backend, 1);
    assert_eq!(stats.frontends["noroute"].vip.dropped, 2);
}

#[test]
fn full_size_table_of_a_weighted_backend() {
    gate!();
    let fx = Fixture::new("fx-big");
    let servers = [("x", 1u32), ("y", 2)];
    let table = MaglevTable::build(&servers, dataplane::maglev::DEFAULT_TABLE_SIZE).unwrap();
    let mut counts = [0u32; 2];
    for p in 0..300u16 {
        let frame = l4_frame(
            LB_MAC,
            CLIENT_MAC,
            client4(),
            "10.0.0.105".parse().unwrap(),
            TCP,
            10000 + p,
            80,
            SYN,
            b"",
        );
        let out = fx.run(&frame);
        let want = table.lookup_name(hash_flow(client4(), Some(10000 + p)));
        let got = match &out.frame[14 + 16..14 + 20] {
            [10, 0, 0, 11] => "x",
            [10, 0, 0, 12] => "y",
            other => panic!("{other:?}"),
        };
        assert_eq!(got, want);
        counts[usize::from(got == "y")] += 1;
    }
    // Weight 2 takes about two thirds.
    assert!(counts[1] > 160 && counts[1] < 240, "{counts:?}");
}

#[test]
fn reload_keeps_the_program_attached_and_updates_vips() {
    gate!();
    let mut fx = Fixture::new("fx-reload");
    let link_before = fx.lb.link("eth0").unwrap();
    let frame = l4_frame(
        LB_MAC,
        CLIENT_MAC,
        client4(),
        "10.0.0.105".parse().unwrap(),
        TCP,
        48000,
        80,
        SYN,
        b"",
    );
    assert_eq!(fx.run(&frame).action, XdpAction::Tx);
    // Turn "big" into a proxy frontend and move web4 to port 8080.
    let edited = CONFIG
        .replace("forwarding = \"ipip\"\nxdp = \"generic\"\ninterface = \"eth0\"\n\n[[frontend]]\nname = \"far\"", "\n[[frontend]]\nname = \"far\"")
        .replace("bind = \"10.0.0.100:80\"", "bind = \"10.0.0.100:8080\"");
    let config = control::config::parse(&edited, "edited.toml").unwrap();
    let report = fx.xdp.apply(&config).unwrap();
    assert!(!report.in_kernel("big"), "big is now a proxy frontend");
    assert!(report.in_kernel("web4"));
    assert_eq!(fx.run(&frame).action, XdpAction::Pass);
    assert_eq!(fx.run(&tcp4(48001, 80, SYN, b"")).action, XdpAction::Pass);
    assert_eq!(fx.run(&tcp4(48001, 8080, SYN, b"")).action, XdpAction::Tx);
    let link_after = fx.lb.link("eth0").unwrap();
    assert_eq!(link_before.ifindex, link_after.ifindex);
    assert_eq!(fx.xdp.modes().get("eth0"), Some(&ebpf::XdpState::Generic));
}
