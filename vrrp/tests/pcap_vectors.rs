//! Codec vectors from real keepalived 2.2.7 captures (shared/testdata/vrrp):
//! every advert parses, verifies its checksum and re-emits byte for byte;
//! the last advert (sent on SIGTERM) is a priority-0 resignation; the
//! gratuitous ARPs and unsolicited NAs equal what `wire::garp` builds.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use vrrp::wire::garp::{GratuitousArp, MacAddr, UnsolicitedNa};
use vrrp::wire::ipv4::{Ipv4Header, Ipv4Packet};
use vrrp::wire::{
    receive_ipv4, receive_ipv6, ChecksumCtx, ChecksumKind, Family, Ipv6Meta, RxPolicy, V2Auth,
    V3Ipv4Checksum, Version,
};
use vrrp::{Centisecs, Priority, VrId};

const MAC: MacAddr = MacAddr([0x02, 0x00, 0x5e, 0x10, 0x00, 0x01]);
const VIP4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
const PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

#[derive(Default)]
struct Summary {
    adverts: Vec<(Priority, ChecksumKind)>,
    garps: usize,
    nas: usize,
}

fn policy(version: Version, family: Family, unicast: bool) -> RxPolicy {
    RxPolicy {
        version,
        vrid: VrId(42),
        family,
        advert_interval: Centisecs(100),
        v2_auth: V2Auth::NONE,
        virtual_addresses: vec![match family {
            Family::Ipv4 => IpAddr::V4(VIP4),
            Family::Ipv6 => IpAddr::V6(VIP6),
        }],
        unicast_peers: if unicast {
            vec![IpAddr::V4(PEER)]
        } else {
            Vec::new()
        },
        local_addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2))],
        check_ttl: true,
        v3_ipv4_checksum: V3Ipv4Checksum::PseudoHeader,
    }
}

fn ethertype(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[12], frame[13]])
}

fn check_file(name: &str, policy: &RxPolicy) -> Summary {
    let records = common::read_pcap(name);
    assert!(!records.is_empty(), "{name}: no records");
    let mut summary = Summary::default();
    for (i, rec) in records.iter().enumerate() {
        let frame = &rec.data;
        assert!(frame.len() >= 14, "{name}#{i}: short frame");
        let src_mac = MacAddr([frame[6], frame[7], frame[8], frame[9], frame[10], frame[11]]);
        let l3 = &frame[14..];
        match ethertype(frame) {
            0x0800 => {
                let ip = Ipv4Packet::new_checked(l3).expect("valid IPv4");
                if ip.protocol() != 112 {
                    continue;
                }
                let header = Ipv4Header::parse(&ip).expect("valid IPv4 header");
                let rx = receive_ipv4(l3, policy)
                    .unwrap_or_else(|e| panic!("{name}#{i}: advert dropped: {e}"));
                assert!(rx.addresses_match, "{name}#{i}");
                assert_eq!(rx.from, IpAddr::V4(PEER));
                // Re-emit the VRRP message byte for byte, with the checksum form that matched.
                let ctx = ChecksumCtx::Ipv4 {
                    src: header.src,
                    dst: header.dst,
                    v3: match rx.checksum {
                        ChecksumKind::Message => V3Ipv4Checksum::MessageOnly,
                        _ => V3Ipv4Checksum::PseudoHeader,
                    },
                };
                let payload = ip.payload();
                assert_eq!(
                    rx.advert.to_bytes(&ctx).expect("emit"),
                    payload,
                    "{name}#{i}: advert re-emit differs"
                );
                // And the IPv4 header too.
                let mut hdr = [0u8; 20];
                header.emit(&mut hdr).expect("emit header");
                assert_eq!(
                    &hdr[..],
                    &l3[..20],
                    "{name}#{i}: IPv4 header re-emit differs"
                );
                summary.adverts.push((rx.advert.priority, rx.checksum));
            }
            0x86dd => {
                let next_header = l3[6];
                let hop_limit = l3[7];
                let src = Ipv6Addr::from(<[u8; 16]>::try_from(&l3[8..24]).expect("16"));
                let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&l3[24..40]).expect("16"));
                let plen = usize::from(u16::from_be_bytes([l3[4], l3[5]]));
                let payload = &l3[40..40 + plen];
                if next_header == 112 {
                    let meta = Ipv6Meta {
                        src,
                        dst,
                        hop_limit,
                    };
                    let rx = receive_ipv6(payload, meta, policy)
                        .unwrap_or_else(|e| panic!("{name}#{i}: advert dropped: {e}"));
                    assert!(rx.addresses_match);
                    let ctx = ChecksumCtx::Ipv6 { src, dst };
                    assert_eq!(rx.advert.to_bytes(&ctx).expect("emit"), payload);
                    summary.adverts.push((rx.advert.priority, rx.checksum));
                } else if next_header == 58 && payload.first() == Some(&136) {
                    let target = Ipv6Addr::from(<[u8; 16]>::try_from(&payload[8..24]).expect("16"));
                    assert_eq!(target, VIP6);
                    assert_eq!(src_mac, MAC);
                    let built = UnsolicitedNa::new(src_mac, target).frame();
                    assert_eq!(&built[..], &frame[..], "{name}#{i}: NA differs");
                    summary.nas += 1;
                }
            }
            0x0806 => {
                // Gratuitous: sender protocol address == target protocol address.
                let spa = Ipv4Addr::new(l3[14], l3[15], l3[16], l3[17]);
                let tpa = Ipv4Addr::new(l3[24], l3[25], l3[26], l3[27]);
                if spa == tpa {
                    assert_eq!(spa, VIP4);
                    let built = GratuitousArp::new(src_mac, spa).frame();
                    assert_eq!(&built[..], &frame[..], "{name}#{i}: GARP differs");
                    summary.garps += 1;
                }
            }
            _ => {}
        }
    }
    summary
}

fn assert_adverts(name: &str, s: &Summary, kind: ChecksumKind) {
    assert!(
        s.adverts.len() >= 4,
        "{name}: only {} adverts",
        s.adverts.len()
    );
    let (last, rest) = s.adverts.split_last().expect("non-empty");
    assert!(
        last.0.is_resign(),
        "{name}: last advert must be the priority-0 resignation"
    );
    for (prio, _) in rest {
        assert_eq!(*prio, Priority(200), "{name}");
    }
    for (_, k) in &s.adverts {
        assert_eq!(*k, kind, "{name}: checksum form");
    }
}

#[test]
fn keepalived_v2_ipv4_multicast() {
    let name = "keepalived-v2-ipv4-multicast.pcap";
    let s = check_file(name, &policy(Version::V2, Family::Ipv4, false));
    assert_adverts(name, &s, ChecksumKind::Message);
    assert!(s.garps >= 2, "{name}: gratuitous ARPs");
}

#[test]
fn keepalived_v3_ipv4_multicast_uses_pseudo_header() {
    let name = "keepalived-v3-ipv4-multicast.pcap";
    let s = check_file(name, &policy(Version::V3, Family::Ipv4, false));
    assert_adverts(name, &s, ChecksumKind::Ipv4PseudoHeader);
    assert!(s.garps >= 2, "{name}: gratuitous ARPs");
}

#[test]
fn keepalived_v3_ipv4_unicast() {
    let name = "keepalived-v3-ipv4-unicast.pcap";
    let s = check_file(name, &policy(Version::V3, Family::Ipv4, true));
    assert_adverts(name, &s, ChecksumKind::Ipv4PseudoHeader);
    assert!(s.garps >= 2, "{name}: gratuitous ARPs");
    // In multicast mode the same unicast adverts are refused.
    let records = common::read_pcap(name);
    let multicast = policy(Version::V3, Family::Ipv4, false);
    let dropped = records
        .iter()
        .filter(|r| ethertype(&r.data) == 0x0800 && r.data[14 + 9] == 112)
        .map(|r| receive_ipv4(&r.data[14..], &multicast))
        .filter(|r| r == &Err(vrrp::wire::DropReason::BadDestination))
        .count();
    assert_eq!(dropped, s.adverts.len());
}

#[test]
fn keepalived_v3_ipv6_multicast() {
    let name = "keepalived-v3-ipv6-multicast.pcap";
    let s = check_file(name, &policy(Version::V3, Family::Ipv6, false));
    assert_adverts(name, &s, ChecksumKind::Ipv6PseudoHeader);
    assert!(s.nas >= 2, "{name}: unsolicited NAs");
}

#[test]
fn corrupted_capture_adverts_are_dropped_with_checksum_reason() {
    let name = "keepalived-v3-ipv4-multicast.pcap";
    let p = policy(Version::V3, Family::Ipv4, false);
    let mut seen = 0;
    for rec in common::read_pcap(name) {
        if ethertype(&rec.data) != 0x0800 || rec.data[14 + 9] != 112 {
            continue;
        }
        let mut l3 = rec.data[14..].to_vec();
        l3[20 + 2] ^= 0x01; // priority bit flip: checksum no longer matches
        assert_eq!(
            receive_ipv4(&l3, &p),
            Err(vrrp::wire::DropReason::BadChecksum)
        );
        seen += 1;
    }
    assert!(seen > 0);
}
