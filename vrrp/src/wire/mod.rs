//! Wire formats, in the smoltcp style: a zero-copy [`Packet`] view with a
//! private `field` module of byte ranges, and an owned [`Advert`]
//! representation with `parse`, `buffer_len` and `emit`.
//!
//! - [`Packet`] / [`Advert`]: the VRRP advertisement, v2 (RFC 3768) and v3 (RFC 9568).
//! - [`ipv4`]: the IPv4 header that a raw socket hands over with each advert.
//! - [`rx`]: every receive check, producing [`Received`] or a [`DropReason`].
//! - [`garp`]: gratuitous ARP and unsolicited neighbour advertisement frames.

mod advert;
pub mod checksum;
pub mod garp;
pub mod ipv4;
pub mod rx;

pub use advert::{
    Advert, AdvertInterval, AuthType, ChecksumCtx, ChecksumKind, Family, Packet, Parsed, V2Auth,
    V3Ipv4Checksum, Version, HEADER_LEN, V2_AUTH_DATA_LEN,
};
pub use rx::{receive_ipv4, receive_ipv6, Ipv6Meta, Received, RxPolicy};

use std::net::{Ipv4Addr, Ipv6Addr};

/// IP protocol number of VRRP (RFC 9568 section 5.1.1.4).
pub const IP_PROTOCOL: u8 = 112;
/// TTL / hop limit of every advert (RFC 9568 sections 5.1.1.3 and 5.1.2.3).
pub const TTL: u8 = 255;
/// The VRRP IPv4 multicast group (RFC 9568 section 5.1.1.2).
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The VRRP IPv6 multicast group (RFC 9568 section 5.1.2.2).
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// Why a received packet was dropped. Each variant has a stable, bounded
/// metric label ([`as_label`](Self::as_label)) for
/// `halb_vrrp_rx_dropped_total{instance,reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum DropReason {
    /// TTL (IPv4) or hop limit (IPv6) is not 255 (RFC 9568 sections 5.1.1.3, 5.1.2.3).
    #[error("TTL or hop limit is not 255")]
    TtlNot255,
    /// The VRRP version is neither 2 nor 3, or not the configured one.
    #[error("bad or unexpected VRRP version")]
    BadVersion,
    /// The type is not 1 (ADVERTISEMENT) (RFC 9568 section 5.2.2).
    #[error("VRRP type is not ADVERTISEMENT")]
    BadType,
    /// The VRID is not configured here (RFC 9568 section 7.1).
    #[error("VRID does not match")]
    VridMismatch,
    /// The address count is zero (RFC 9568 section 5.2.5, erratum 8299).
    #[error("address count is zero")]
    BadAddressCount,
    /// The packet is shorter than its header, its declared length or its address list.
    #[error("packet truncated")]
    Truncated,
    /// The VRRP checksum does not verify (RFC 9568 section 5.2.8).
    #[error("bad VRRP checksum")]
    BadChecksum,
    /// A VRRPv2 advert interval differs from the local one (RFC 3768 section 7.1).
    #[error("VRRPv2 advert interval mismatch")]
    IntervalMismatch,
    /// A VRRPv3 Max Advertise Interval of zero (RFC 9568 section 7.1, erratum 8301).
    #[error("advert interval is zero")]
    ZeroInterval,
    /// A VRRPv2 authentication type or data mismatch (RFC 3768 section 7.1).
    #[error("VRRPv2 authentication mismatch")]
    AuthMismatch,
    /// The advert's address family is not the instance's (or v2 over IPv6).
    #[error("wrong address family")]
    WrongFamily,
    /// A unicast advert from an address that is not a configured peer.
    #[error("sender is not a configured peer")]
    NotFromPeer,
    /// A multicast-mode advert not sent to the VRRP group.
    #[error("destination is not the VRRP group")]
    BadDestination,
    /// Our own advert looped back.
    #[error("advert from this router")]
    OwnAdvert,
    /// A malformed IPv4 header (version, lengths, header checksum, fragment).
    #[error("malformed IPv4 header")]
    BadIpHeader,
    /// The IP protocol is not 112.
    #[error("IP protocol is not VRRP")]
    BadProtocol,
}

impl DropReason {
    /// Every reason, for pre-registering metric series.
    pub const ALL: [DropReason; 16] = [
        DropReason::TtlNot255,
        DropReason::BadVersion,
        DropReason::BadType,
        DropReason::VridMismatch,
        DropReason::BadAddressCount,
        DropReason::Truncated,
        DropReason::BadChecksum,
        DropReason::IntervalMismatch,
        DropReason::ZeroInterval,
        DropReason::AuthMismatch,
        DropReason::WrongFamily,
        DropReason::NotFromPeer,
        DropReason::BadDestination,
        DropReason::OwnAdvert,
        DropReason::BadIpHeader,
        DropReason::BadProtocol,
    ];

    /// The `reason` label of `halb_vrrp_rx_dropped_total`.
    pub fn as_label(&self) -> &'static str {
        match self {
            DropReason::TtlNot255 => "ttl",
            DropReason::BadVersion => "version",
            DropReason::BadType => "type",
            DropReason::VridMismatch => "vrid",
            DropReason::BadAddressCount => "address_count",
            DropReason::Truncated => "truncated",
            DropReason::BadChecksum => "checksum",
            DropReason::IntervalMismatch => "interval",
            DropReason::ZeroInterval => "zero_interval",
            DropReason::AuthMismatch => "auth",
            DropReason::WrongFamily => "family",
            DropReason::NotFromPeer => "not_from_peer",
            DropReason::BadDestination => "destination",
            DropReason::OwnAdvert => "own_advert",
            DropReason::BadIpHeader => "ip_header",
            DropReason::BadProtocol => "protocol",
        }
    }
}

/// Counts one dropped packet in `halb_vrrp_rx_dropped_total{instance,reason}`
/// (a no-op until the binary installs a metrics recorder).
pub fn record_rx_drop(instance: &str, reason: DropReason) {
    metrics::counter!(
        "halb_vrrp_rx_dropped_total",
        "instance" => instance.to_owned(),
        "reason" => reason.as_label(),
    )
    .increment(1);
}

/// The entry point shared by the cargo-fuzz target (`fuzz/`) and the
/// arbitrary-bytes property test: runs every parser on `data` and checks
/// that whatever parses re-emits to something that parses to the same value.
/// Panics only if that round-trip invariant is broken.
#[doc(hidden)]
pub fn fuzz_entry(data: &[u8]) {
    let policy_v4 = RxPolicy {
        version: Version::V3,
        vrid: crate::VrId(42),
        family: Family::Ipv4,
        advert_interval: crate::Centisecs(100),
        v2_auth: V2Auth::NONE,
        virtual_addresses: vec![std::net::IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100))],
        unicast_peers: Vec::new(),
        local_addresses: Vec::new(),
        check_ttl: true,
        v3_ipv4_checksum: V3Ipv4Checksum::PseudoHeader,
    };
    let _ = receive_ipv4(data, &policy_v4);
    let policy_v2 = RxPolicy {
        version: Version::V2,
        ..policy_v4.clone()
    };
    let _ = receive_ipv4(data, &policy_v2);
    let policy_v6 = RxPolicy {
        family: Family::Ipv6,
        virtual_addresses: vec![std::net::IpAddr::V6(Ipv6Addr::new(
            0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100,
        ))],
        ..policy_v4.clone()
    };
    let meta = Ipv6Meta {
        src: Ipv6Addr::new(0xfe80, 0, 0, 0, 0x5eff, 0xfe10, 0, 1),
        dst: MULTICAST_V6,
        hop_limit: TTL,
    };
    let _ = receive_ipv6(data, meta, &policy_v6);

    let ctxs = [
        ChecksumCtx::Ipv4 {
            src: Ipv4Addr::new(192, 0, 2, 1),
            dst: MULTICAST_V4,
            v3: V3Ipv4Checksum::PseudoHeader,
        },
        ChecksumCtx::Ipv4 {
            src: Ipv4Addr::new(192, 0, 2, 1),
            dst: MULTICAST_V4,
            v3: V3Ipv4Checksum::MessageOnly,
        },
        ChecksumCtx::Ipv6 {
            src: meta.src,
            dst: meta.dst,
        },
    ];
    for ctx in &ctxs {
        if let Ok(packet) = Packet::new_checked(data, ctx.family()) {
            // Every accessor must be panic-free after new_checked.
            let _ = (
                packet.version(),
                packet.msg_type(),
                packet.vrid(),
                packet.priority(),
                packet.addr_count(),
                packet.v2_auth_type(),
                packet.v2_adver_int(),
                packet.v3_max_adver_int(),
                packet.checksum(),
                packet.addresses().count(),
                packet.v2_auth_data(),
                packet.message().len(),
                packet.verify_checksum(ctx),
            );
        }
        if let Ok(parsed) = Advert::parse(data, ctx) {
            let mut buf = vec![0u8; parsed.advert.buffer_len()];
            let emit_ctx = ctx.with_v3_mode(match parsed.checksum {
                ChecksumKind::Message => V3Ipv4Checksum::MessageOnly,
                _ => V3Ipv4Checksum::PseudoHeader,
            });
            let written = parsed.advert.emit(&mut buf, &emit_ctx);
            assert_eq!(written, Ok(buf.len()), "a parsed advert must re-emit");
            let again = Advert::parse(&buf, &emit_ctx);
            assert_eq!(
                again.map(|p| p.advert),
                Ok(parsed.advert),
                "re-emitted advert must parse back to the same value"
            );
        }
    }
    let _ = ipv4::Ipv4Packet::new_checked(data).map(|p| ipv4::Ipv4Header::parse(&p));
}
