//! Receive checks: everything RFC 9568 section 7.1 / RFC 3768 section 7.1
//! asks of a received advert, in one place, with a typed [`DropReason`].
//!
//! IPv4: a raw `IPPROTO_VRRP` socket delivers the IPv4 header with the
//! payload, so [`receive_ipv4`] parses both. IPv6: the kernel strips the
//! header, so the driver passes source, destination and hop limit
//! (from `IPV6_RECVHOPLIMIT` / `IPV6_RECVPKTINFO` ancillary data) in [`Ipv6Meta`].

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv6Addr};

use super::advert::{Advert, ChecksumCtx, ChecksumKind, Family, V2Auth, V3Ipv4Checksum, Version};
use super::ipv4::{Ipv4Header, Ipv4Packet};
use super::{AdvertInterval, AuthType, DropReason, IP_PROTOCOL, MULTICAST_V4, MULTICAST_V6, TTL};
use crate::{Centisecs, VrId};

/// What the local instance expects of received adverts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RxPolicy {
    pub version: Version,
    pub vrid: VrId,
    pub family: Family,
    /// The local advert interval: VRRPv2 adverts must carry the same (RFC 3768 section 7.1).
    pub advert_interval: Centisecs,
    /// VRRPv2 authentication expected (type must match; for simple text the data too).
    pub v2_auth: V2Auth,
    /// The local virtual addresses: compared (as a set) to the advert's to
    /// fill [`Received::addresses_match`]. A mismatch does not drop.
    pub virtual_addresses: Vec<IpAddr>,
    /// Unicast peers. Empty: multicast mode, the destination must be the VRRP
    /// group. Otherwise the source must be one of these.
    pub unicast_peers: Vec<IpAddr>,
    /// This router's own addresses: an advert from one of them is our own
    /// looped back and is dropped.
    pub local_addresses: Vec<IpAddr>,
    /// Require TTL / hop limit 255 (RFC 9568 sections 5.1.1.3, 5.1.2.3). Only a
    /// unicast setup across a router would turn this off.
    pub check_ttl: bool,
    /// Which v3-over-IPv4 checksum form to try first (both are accepted).
    pub v3_ipv4_checksum: V3Ipv4Checksum,
}

/// Source, destination and hop limit of a received IPv6 advert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Meta {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
}

/// An advert that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The sender's primary address (the IP source), used for the tie-break.
    pub from: IpAddr,
    pub to: IpAddr,
    pub advert: Advert,
    pub checksum: ChecksumKind,
    /// The advert's address set equals the local one. A mismatch is logged
    /// and counted by the caller but the advert still takes part in the election.
    pub addresses_match: bool,
}

/// Checks a datagram from a raw IPv4 socket (IPv4 header included).
pub fn receive_ipv4(datagram: &[u8], policy: &RxPolicy) -> Result<Received, DropReason> {
    let packet = Ipv4Packet::new_checked(datagram)?;
    let header = Ipv4Header::parse(&packet)?;
    if header.protocol != IP_PROTOCOL {
        return Err(DropReason::BadProtocol);
    }
    if policy.family != Family::Ipv4 {
        return Err(DropReason::WrongFamily);
    }
    if policy.check_ttl && header.ttl != TTL {
        return Err(DropReason::TtlNot255);
    }
    let from = IpAddr::V4(header.src);
    let to = IpAddr::V4(header.dst);
    check_addressing(policy, from, to == IpAddr::V4(MULTICAST_V4))?;
    let ctx = ChecksumCtx::Ipv4 {
        src: header.src,
        dst: header.dst,
        v3: policy.v3_ipv4_checksum,
    };
    check_advert(packet.payload(), &ctx, policy, from, to)
}

/// Checks the payload of a received IPv6 advert.
pub fn receive_ipv6(
    payload: &[u8],
    meta: Ipv6Meta,
    policy: &RxPolicy,
) -> Result<Received, DropReason> {
    if policy.family != Family::Ipv6 {
        return Err(DropReason::WrongFamily);
    }
    if policy.check_ttl && meta.hop_limit != TTL {
        return Err(DropReason::TtlNot255);
    }
    let from = IpAddr::V6(meta.src);
    let to = IpAddr::V6(meta.dst);
    check_addressing(policy, from, meta.dst == MULTICAST_V6)?;
    let ctx = ChecksumCtx::Ipv6 {
        src: meta.src,
        dst: meta.dst,
    };
    check_advert(payload, &ctx, policy, from, to)
}

fn check_addressing(policy: &RxPolicy, from: IpAddr, to_group: bool) -> Result<(), DropReason> {
    if policy.local_addresses.contains(&from) {
        return Err(DropReason::OwnAdvert);
    }
    if policy.unicast_peers.is_empty() {
        if !to_group {
            return Err(DropReason::BadDestination);
        }
    } else if !policy.unicast_peers.contains(&from) {
        return Err(DropReason::NotFromPeer);
    }
    Ok(())
}

fn check_advert(
    payload: &[u8],
    ctx: &ChecksumCtx,
    policy: &RxPolicy,
    from: IpAddr,
    to: IpAddr,
) -> Result<Received, DropReason> {
    let parsed = Advert::parse(payload, ctx)?;
    let advert = parsed.advert;
    if advert.version != policy.version {
        return Err(DropReason::BadVersion);
    }
    if advert.vrid != policy.vrid {
        return Err(DropReason::VridMismatch);
    }
    if let AdvertInterval::V2(_) = advert.interval {
        if advert.interval.as_centisecs() != policy.advert_interval {
            return Err(DropReason::IntervalMismatch);
        }
        let auth = advert.auth.unwrap_or(V2Auth::NONE);
        let want = policy.v2_auth;
        let data_ok = want.auth_type != AuthType::SimpleText || auth.data == want.data;
        if auth.auth_type != want.auth_type || !data_ok {
            return Err(DropReason::AuthMismatch);
        }
    }
    let theirs: BTreeSet<&IpAddr> = advert.addresses.iter().collect();
    let ours: BTreeSet<&IpAddr> = policy.virtual_addresses.iter().collect();
    Ok(Received {
        from,
        to,
        checksum: parsed.checksum,
        addresses_match: theirs == ours,
        advert,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::Ipv4Header;
    use crate::{Priority, Secs};
    use std::net::Ipv4Addr;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);

    fn policy(version: Version) -> RxPolicy {
        RxPolicy {
            version,
            vrid: VrId(42),
            family: Family::Ipv4,
            advert_interval: Centisecs(100),
            v2_auth: V2Auth::NONE,
            virtual_addresses: vec![IpAddr::V4(VIP)],
            unicast_peers: Vec::new(),
            local_addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2))],
            check_ttl: true,
            v3_ipv4_checksum: V3Ipv4Checksum::PseudoHeader,
        }
    }

    fn advert(version: Version) -> Advert {
        Advert {
            version,
            vrid: VrId(42),
            priority: Priority(200),
            interval: match version {
                Version::V2 => AdvertInterval::V2(Secs(1)),
                Version::V3 => AdvertInterval::V3(Centisecs(100)),
            },
            addresses: vec![IpAddr::V4(VIP)],
            auth: match version {
                Version::V2 => Some(V2Auth::NONE),
                Version::V3 => None,
            },
        }
    }

    fn datagram(a: &Advert, src: Ipv4Addr, dst: Ipv4Addr, ttl: u8) -> Vec<u8> {
        let ctx = ChecksumCtx::Ipv4 {
            src,
            dst,
            v3: V3Ipv4Checksum::PseudoHeader,
        };
        let payload = a.to_bytes(&ctx).expect("emit");
        let header = Ipv4Header {
            src,
            dst,
            tos: 0xc0,
            ident: 7,
            dont_frag: false,
            ttl,
            protocol: IP_PROTOCOL,
            payload_len: payload.len() as u16,
        };
        let mut out = vec![0u8; 20];
        header.emit(&mut out).expect("emit");
        out.extend_from_slice(&payload);
        out
    }

    #[test]
    fn accepts_valid_and_reports_address_match() {
        let d = datagram(&advert(Version::V3), SRC, MULTICAST_V4, 255);
        let r = receive_ipv4(&d, &policy(Version::V3)).expect("valid");
        assert_eq!(r.from, IpAddr::V4(SRC));
        assert!(r.addresses_match);
        assert_eq!(r.checksum, ChecksumKind::Ipv4PseudoHeader);

        let mut other = advert(Version::V3);
        other.addresses = vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 101))];
        let d = datagram(&other, SRC, MULTICAST_V4, 255);
        let r = receive_ipv4(&d, &policy(Version::V3)).expect("still accepted");
        assert!(!r.addresses_match);
    }

    #[test]
    fn each_drop_reason() {
        let p3 = policy(Version::V3);
        let d = datagram(&advert(Version::V3), SRC, MULTICAST_V4, 254);
        assert_eq!(receive_ipv4(&d, &p3), Err(DropReason::TtlNot255));
        let mut no_ttl = p3.clone();
        no_ttl.check_ttl = false;
        assert!(receive_ipv4(&d, &no_ttl).is_ok());

        let d = datagram(&advert(Version::V3), SRC, Ipv4Addr::new(192, 0, 2, 2), 255);
        assert_eq!(receive_ipv4(&d, &p3), Err(DropReason::BadDestination));
        let mut uni = p3.clone();
        uni.unicast_peers = vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3))];
        assert_eq!(receive_ipv4(&d, &uni), Err(DropReason::NotFromPeer));
        uni.unicast_peers.push(IpAddr::V4(SRC));
        assert!(receive_ipv4(&d, &uni).is_ok());

        let d = datagram(
            &advert(Version::V3),
            Ipv4Addr::new(192, 0, 2, 2),
            MULTICAST_V4,
            255,
        );
        assert_eq!(receive_ipv4(&d, &p3), Err(DropReason::OwnAdvert));

        let d = datagram(&advert(Version::V2), SRC, MULTICAST_V4, 255);
        assert_eq!(receive_ipv4(&d, &p3), Err(DropReason::BadVersion));
        let p2 = policy(Version::V2);
        assert!(receive_ipv4(&d, &p2).is_ok());
        let mut slow = p2.clone();
        slow.advert_interval = Centisecs(200);
        assert_eq!(receive_ipv4(&d, &slow), Err(DropReason::IntervalMismatch));
        let mut pass = p2.clone();
        pass.v2_auth = V2Auth::simple_text(b"pw");
        assert_eq!(receive_ipv4(&d, &pass), Err(DropReason::AuthMismatch));
        let mut with_pw = advert(Version::V2);
        with_pw.auth = Some(V2Auth::simple_text(b"pw"));
        let d_pw = datagram(&with_pw, SRC, MULTICAST_V4, 255);
        assert!(receive_ipv4(&d_pw, &pass).is_ok());
        with_pw.auth = Some(V2Auth::simple_text(b"px"));
        let d_px = datagram(&with_pw, SRC, MULTICAST_V4, 255);
        assert_eq!(receive_ipv4(&d_px, &pass), Err(DropReason::AuthMismatch));

        let mut a = advert(Version::V3);
        a.vrid = VrId(43);
        let d = datagram(&a, SRC, MULTICAST_V4, 255);
        assert_eq!(receive_ipv4(&d, &p3), Err(DropReason::VridMismatch));

        let mut d = datagram(&advert(Version::V3), SRC, MULTICAST_V4, 255);
        d[9] = 17;
        let mut p = Ipv4Packet::new_unchecked(&mut d[..]);
        p.fill_checksum();
        assert_eq!(receive_ipv4(&d, &p3), Err(DropReason::BadProtocol));

        let mut v6 = p3.clone();
        v6.family = Family::Ipv6;
        let d = datagram(&advert(Version::V3), SRC, MULTICAST_V4, 255);
        assert_eq!(receive_ipv4(&d, &v6), Err(DropReason::WrongFamily));

        let mut d = datagram(&advert(Version::V3), SRC, MULTICAST_V4, 255);
        let last = d.len() - 1;
        d[last] ^= 0xff;
        assert_eq!(receive_ipv4(&d, &p3), Err(DropReason::BadChecksum));
        assert_eq!(receive_ipv4(&d[..10], &p3), Err(DropReason::Truncated));
    }

    #[test]
    fn ipv6_hop_limit_and_family() {
        let vip6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100));
        let mut a = advert(Version::V3);
        a.addresses = vec![vip6];
        let meta = Ipv6Meta {
            src: Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
            dst: MULTICAST_V6,
            hop_limit: 255,
        };
        let payload = a
            .to_bytes(&ChecksumCtx::Ipv6 {
                src: meta.src,
                dst: meta.dst,
            })
            .expect("emit");
        let mut p = policy(Version::V3);
        p.family = Family::Ipv6;
        p.virtual_addresses = vec![vip6];
        let r = receive_ipv6(&payload, meta, &p).expect("valid");
        assert!(r.addresses_match);
        assert_eq!(r.checksum, ChecksumKind::Ipv6PseudoHeader);
        let low = Ipv6Meta {
            hop_limit: 1,
            ..meta
        };
        assert_eq!(receive_ipv6(&payload, low, &p), Err(DropReason::TtlNot255));
        assert_eq!(
            receive_ipv6(&payload, meta, &policy(Version::V3)),
            Err(DropReason::WrongFamily)
        );
    }
}
