//! Byte builders for the frames a new master sends so that neighbours update
//! their caches: gratuitous ARP (IPv4) and unsolicited neighbour
//! advertisements (IPv6). The driver sends these over an `AF_PACKET` socket
//! as they are, Ethernet header included.
//!
//! Gratuitous ARP (RFC 826 packet, RFC 5227 section 3 "ARP Announcement"),
//! 42 bytes:
//!
//! ```text
//! +-------------------+-------------------+------+
//! | dst ff:ff:ff:ff:ff:ff | src MAC       | 0806 |   Ethernet
//! +------+------+----+----+------+--------------+
//! | 0001 | 0800 | 06 | 04 | 0001 | sender MAC   |   htype ptype hlen plen op=request
//! +------+------+----+----+------+--------------+
//! | sender IP = VIP | target MAC | target IP = VIP |
//! +-----------------+------------+-----------------+
//! ```
//!
//! Unsolicited neighbour advertisement (RFC 4861 sections 4.4 and 7.2.6),
//! 86 bytes: Ethernet to 33:33:00:00:00:01, IPv6 (hop limit 255) to ff02::1,
//! ICMPv6 type 136 with the Override flag and a Target Link-Layer Address option.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Type      |     Code      |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|S|O|                     Reserved                            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! +                       Target Address                          +
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Type = 2     |  Length = 1   |    Link-Layer Address ...     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Differences between what RFC 9568 asks and what keepalived 2.2.7 sends
//! (the defaults here follow keepalived, so the frames are byte-identical
//! to its captures; the RFC forms are one field away):
//! - GARP target hardware address: keepalived puts ff:ff:ff:ff:ff:ff, RFC 9568
//!   section 6.4.2 (erratum 7949) says the virtual router MAC
//!   ([`ArpTargetHw::SenderMac`]); RFC 5227 suggests zero ([`ArpTargetHw::Zero`]).
//! - NA Router flag: RFC 9568 section 6.4.2 says set it; keepalived leaves it
//!   clear ([`UnsolicitedNa::router_flag`]).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::checksum;
use crate::{Error, VrId};

/// A 48-bit Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// The IPv4 virtual router MAC 00-00-5E-00-01-{VRID} (RFC 9568 section 7.3).
    pub const fn vrrp_v4(vrid: VrId) -> MacAddr {
        MacAddr([0x00, 0x00, 0x5e, 0x00, 0x01, vrid.0])
    }

    /// The IPv6 virtual router MAC 00-00-5E-00-02-{VRID} (RFC 9568 section 7.3).
    pub const fn vrrp_v6(vrid: VrId) -> MacAddr {
        MacAddr([0x00, 0x00, 0x5e, 0x00, 0x02, vrid.0])
    }

    /// The Ethernet multicast address for an IPv6 multicast group (RFC 2464 section 7).
    pub const fn ipv6_multicast(group: Ipv6Addr) -> MacAddr {
        let o = group.octets();
        MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETH_HEADER_LEN: usize = 14;
const ICMPV6: u8 = 58;
const ICMPV6_NEIGHBOR_ADVERT: u8 = 136;
const NDP_OPT_TARGET_LLADDR: u8 = 2;
/// ff02::1, all nodes.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// What goes in the ARP target hardware address field of a gratuitous ARP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ArpTargetHw {
    /// ff:ff:ff:ff:ff:ff, as keepalived 2.2.7 sends.
    #[default]
    Broadcast,
    /// 00:00:00:00:00:00 (RFC 5227 section 2.1.1 style).
    Zero,
    /// The sender's (virtual router's) MAC, RFC 9568 section 6.4.2 with erratum 7949.
    SenderMac,
}

/// A gratuitous ARP request: sender = target = the VIP, to broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GratuitousArp {
    /// Ethernet source and ARP sender hardware address.
    pub mac: MacAddr,
    pub vip: Ipv4Addr,
    pub target_hw: ArpTargetHw,
}

impl GratuitousArp {
    pub const FRAME_LEN: usize = 42;

    /// keepalived's form (broadcast target hardware address).
    pub const fn new(mac: MacAddr, vip: Ipv4Addr) -> GratuitousArp {
        GratuitousArp {
            mac,
            vip,
            target_hw: ArpTargetHw::Broadcast,
        }
    }

    /// The complete Ethernet frame (no padding: the NIC pads to 60 bytes).
    pub fn frame(&self) -> [u8; Self::FRAME_LEN] {
        let mut f = [0u8; Self::FRAME_LEN];
        let target_hw = match self.target_hw {
            ArpTargetHw::Broadcast => MacAddr::BROADCAST,
            ArpTargetHw::Zero => MacAddr::ZERO,
            ArpTargetHw::SenderMac => self.mac,
        };
        f[0..6].copy_from_slice(&MacAddr::BROADCAST.0);
        f[6..12].copy_from_slice(&self.mac.0);
        f[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        f[14..16].copy_from_slice(&1u16.to_be_bytes()); // htype Ethernet
        f[16..18].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes()); // ptype IPv4
        f[18] = 6; // hlen
        f[19] = 4; // plen
        f[20..22].copy_from_slice(&1u16.to_be_bytes()); // op request
        f[22..28].copy_from_slice(&self.mac.0);
        f[28..32].copy_from_slice(&self.vip.octets());
        f[32..38].copy_from_slice(&target_hw.0);
        f[38..42].copy_from_slice(&self.vip.octets());
        f
    }

    /// Writes the frame into `buf`; returns the bytes written.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        emit_into(buf, &self.frame())
    }
}

/// An unsolicited neighbour advertisement for a VIP, to all nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnsolicitedNa {
    /// Ethernet source and target link-layer address option.
    pub mac: MacAddr,
    /// The target address: the VIP.
    pub target: Ipv6Addr,
    /// The IPv6 source. keepalived uses the VIP itself.
    pub source: Ipv6Addr,
    /// The R flag: RFC 9568 says set, keepalived 2.2.7 leaves it clear.
    pub router_flag: bool,
}

impl UnsolicitedNa {
    pub const FRAME_LEN: usize = 86;
    const ICMP_LEN: usize = 32;

    /// keepalived's form: source = target = the VIP, R flag clear, O flag set.
    pub const fn new(mac: MacAddr, vip: Ipv6Addr) -> UnsolicitedNa {
        UnsolicitedNa {
            mac,
            target: vip,
            source: vip,
            router_flag: false,
        }
    }

    /// The complete Ethernet frame with a correct ICMPv6 checksum.
    pub fn frame(&self) -> [u8; Self::FRAME_LEN] {
        let mut f = [0u8; Self::FRAME_LEN];
        f[0..6].copy_from_slice(&MacAddr::ipv6_multicast(ALL_NODES).0);
        f[6..12].copy_from_slice(&self.mac.0);
        f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
        let ip = ETH_HEADER_LEN;
        f[ip] = 0x60; // version 6, traffic class 0, flow label 0
        f[ip + 4..ip + 6].copy_from_slice(&(Self::ICMP_LEN as u16).to_be_bytes());
        f[ip + 6] = ICMPV6;
        f[ip + 7] = 255; // hop limit (RFC 4861 section 7.1.2)
        f[ip + 8..ip + 24].copy_from_slice(&self.source.octets());
        f[ip + 24..ip + 40].copy_from_slice(&ALL_NODES.octets());
        let icmp = ip + 40;
        f[icmp] = ICMPV6_NEIGHBOR_ADVERT;
        f[icmp + 1] = 0;
        let mut flags = 0x20u8; // Override
        if self.router_flag {
            flags |= 0x80;
        }
        f[icmp + 4] = flags;
        f[icmp + 8..icmp + 24].copy_from_slice(&self.target.octets());
        f[icmp + 24] = NDP_OPT_TARGET_LLADDR;
        f[icmp + 25] = 1; // length in units of 8 bytes
        f[icmp + 26..icmp + 32].copy_from_slice(&self.mac.0);
        let acc = checksum::ipv6_pseudo(self.source, ALL_NODES, ICMPV6, Self::ICMP_LEN as u32);
        let sum = checksum::finish(checksum::accumulate(acc, &f[icmp..icmp + Self::ICMP_LEN]));
        f[icmp + 2..icmp + 4].copy_from_slice(&sum.to_be_bytes());
        f
    }

    /// Writes the frame into `buf`; returns the bytes written.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        emit_into(buf, &self.frame())
    }
}

fn emit_into(buf: &mut [u8], frame: &[u8]) -> Result<usize, Error> {
    let Some(out) = buf.get_mut(..frame.len()) else {
        return Err(Error::BufferTooSmall {
            needed: frame.len(),
            available: buf.len(),
        });
    };
    out.copy_from_slice(frame);
    Ok(frame.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddr = MacAddr([0x02, 0x00, 0x5e, 0x10, 0x00, 0x01]);

    #[test]
    fn garp_bytes() {
        let f = GratuitousArp::new(MAC, Ipv4Addr::new(192, 0, 2, 100)).frame();
        let expected: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x5e, 0x10, 0x00, 0x01, 0x08, 0x06,
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x5e, 0x10, 0x00, 0x01,
            0xc0, 0x00, 0x02, 0x64, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc0, 0x00, 0x02, 0x64,
        ];
        assert_eq!(f, expected);
        let rfc = GratuitousArp {
            target_hw: ArpTargetHw::SenderMac,
            ..GratuitousArp::new(MAC, Ipv4Addr::new(192, 0, 2, 100))
        }
        .frame();
        assert_eq!(rfc[32..38], MAC.0);
        assert_eq!(rfc[..32], expected[..32]);
    }

    #[test]
    fn na_bytes_and_checksum() {
        let vip = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
        let f = UnsolicitedNa::new(MAC, vip).frame();
        assert_eq!(f[0..6], [0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(f[54], 136);
        assert_eq!(f[56..58], [0x99, 0x1c]); // as captured from keepalived
        assert_eq!(f[58], 0x20);
        let acc = checksum::ipv6_pseudo(vip, ALL_NODES, 58, 32);
        assert_eq!(checksum::finish(checksum::accumulate(acc, &f[54..86])), 0);
        let r = UnsolicitedNa {
            router_flag: true,
            ..UnsolicitedNa::new(MAC, vip)
        }
        .frame();
        assert_eq!(r[58], 0xa0);
        let acc = checksum::ipv6_pseudo(vip, ALL_NODES, 58, 32);
        assert_eq!(checksum::finish(checksum::accumulate(acc, &r[54..86])), 0);
    }

    #[test]
    fn virtual_macs_and_emit() {
        assert_eq!(MacAddr::vrrp_v4(VrId(42)).to_string(), "00:00:5e:00:01:2a");
        assert_eq!(MacAddr::vrrp_v6(VrId(1)).0, [0, 0, 0x5e, 0, 2, 1]);
        let g = GratuitousArp::new(MAC, Ipv4Addr::new(10, 0, 0, 1));
        let mut buf = [0u8; 64];
        assert_eq!(g.emit(&mut buf), Ok(42));
        assert_eq!(
            g.emit(&mut buf[..41]),
            Err(Error::BufferTooSmall {
                needed: 42,
                available: 41
            })
        );
    }
}
