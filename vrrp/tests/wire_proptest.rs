//! Property tests for the codecs: round trips, and arbitrary bytes never panic
//! (the same entry function as the cargo-fuzz target in fuzz/).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use vrrp::wire::ipv4::{Ipv4Header, Ipv4Packet};
use vrrp::wire::{
    Advert, AdvertInterval, AuthType, ChecksumCtx, ChecksumKind, Packet, V2Auth, V3Ipv4Checksum,
    Version,
};
use vrrp::{Centisecs, Priority, Secs, VrId};

fn v4_addrs() -> impl Strategy<Value = Vec<IpAddr>> {
    prop::collection::vec(
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        1..=20,
    )
}

fn v6_addrs() -> impl Strategy<Value = Vec<IpAddr>> {
    prop::collection::vec(
        any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
        1..=20,
    )
}

fn v2_advert() -> impl Strategy<Value = Advert> {
    (
        any::<u8>(),
        any::<u8>(),
        1u8..=255,
        v4_addrs(),
        any::<u8>(),
        any::<[u8; 8]>(),
    )
        .prop_map(|(vrid, prio, secs, addresses, auth_type, data)| Advert {
            version: Version::V2,
            vrid: VrId(vrid),
            priority: Priority(prio),
            interval: AdvertInterval::V2(Secs(secs)),
            addresses,
            auth: Some(V2Auth {
                auth_type: AuthType::from_u8(auth_type),
                data,
            }),
        })
}

fn v3_advert(addrs: impl Strategy<Value = Vec<IpAddr>>) -> impl Strategy<Value = Advert> {
    (any::<u8>(), any::<u8>(), 1u16..=0x0fff, addrs).prop_map(|(vrid, prio, cs, addresses)| {
        Advert {
            version: Version::V3,
            vrid: VrId(vrid),
            priority: Priority(prio),
            interval: AdvertInterval::V3(Centisecs(cs)),
            addresses,
            auth: None,
        }
    })
}

fn ctx4() -> impl Strategy<Value = ChecksumCtx> {
    (any::<[u8; 4]>(), any::<[u8; 4]>(), any::<bool>()).prop_map(|(s, d, pseudo)| {
        ChecksumCtx::Ipv4 {
            src: Ipv4Addr::from(s),
            dst: Ipv4Addr::from(d),
            v3: if pseudo {
                V3Ipv4Checksum::PseudoHeader
            } else {
                V3Ipv4Checksum::MessageOnly
            },
        }
    })
}

fn ctx6() -> impl Strategy<Value = ChecksumCtx> {
    (any::<[u8; 16]>(), any::<[u8; 16]>()).prop_map(|(s, d)| ChecksumCtx::Ipv6 {
        src: Ipv6Addr::from(s),
        dst: Ipv6Addr::from(d),
    })
}

proptest! {
    #[test]
    fn v2_round_trip(advert in v2_advert(), ctx in ctx4()) {
        let bytes = advert.to_bytes(&ctx).expect("emit");
        prop_assert_eq!(bytes.len(), advert.buffer_len());
        let parsed = Advert::parse(&bytes, &ctx).expect("parse");
        prop_assert_eq!(parsed.checksum, ChecksumKind::Message);
        prop_assert_eq!(parsed.advert, advert);
    }

    #[test]
    fn v3_ipv4_round_trip(advert in v3_advert(v4_addrs()), ctx in ctx4()) {
        let bytes = advert.to_bytes(&ctx).expect("emit");
        let parsed = Advert::parse(&bytes, &ctx).expect("parse");
        let expected = match ctx {
            ChecksumCtx::Ipv4 { v3: V3Ipv4Checksum::MessageOnly, .. } => ChecksumKind::Message,
            _ => ChecksumKind::Ipv4PseudoHeader,
        };
        prop_assert_eq!(parsed.checksum, expected);
        prop_assert_eq!(parsed.advert, advert);
        // Receive accepts the other mode too.
        let other = ctx.with_v3_mode(match expected {
            ChecksumKind::Message => V3Ipv4Checksum::PseudoHeader,
            _ => V3Ipv4Checksum::MessageOnly,
        });
        prop_assert!(Advert::parse(&bytes, &other).is_ok());
    }

    #[test]
    fn v3_ipv6_round_trip(advert in v3_advert(v6_addrs()), ctx in ctx6()) {
        let bytes = advert.to_bytes(&ctx).expect("emit");
        let parsed = Advert::parse(&bytes, &ctx).expect("parse");
        prop_assert_eq!(parsed.checksum, ChecksumKind::Ipv6PseudoHeader);
        prop_assert_eq!(parsed.advert, advert);
    }

    #[test]
    fn ipv4_header_round_trip(
        src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), tos in any::<u8>(), ident in any::<u16>(),
        df in any::<bool>(), ttl in any::<u8>(), protocol in any::<u8>(), payload_len in 0u16..1400,
    ) {
        let h = Ipv4Header {
            src: Ipv4Addr::from(src), dst: Ipv4Addr::from(dst), tos, ident, dont_frag: df, ttl,
            protocol, payload_len,
        };
        let mut buf = vec![0u8; 20 + usize::from(payload_len)];
        h.emit(&mut buf).expect("emit");
        let p = Ipv4Packet::new_checked(&buf[..]).expect("checked");
        prop_assert_eq!(Ipv4Header::parse(&p), Ok(h));
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..600)) {
        vrrp::wire::fuzz_entry(&data);
    }

    #[test]
    fn arbitrary_payload_behind_valid_ipv4_header_never_panics(
        payload in prop::collection::vec(any::<u8>(), 0..300),
        ttl in prop::sample::select(vec![1u8, 64, 255]),
    ) {
        let header = Ipv4Header {
            src: Ipv4Addr::new(192, 0, 2, 1),
            dst: vrrp::wire::MULTICAST_V4,
            tos: 0xc0,
            ident: 1,
            dont_frag: false,
            ttl,
            protocol: vrrp::wire::IP_PROTOCOL,
            payload_len: payload.len() as u16,
        };
        let mut datagram = vec![0u8; 20];
        header.emit(&mut datagram).expect("emit");
        datagram.extend_from_slice(&payload);
        vrrp::wire::fuzz_entry(&datagram);
    }

    #[test]
    fn flipped_bytes_never_panic(advert in v3_advert(v4_addrs()), ctx in ctx4(), at in any::<usize>(), bit in 0u8..8) {
        let mut bytes = advert.to_bytes(&ctx).expect("emit");
        let i = at % bytes.len();
        bytes[i] ^= 1 << bit;
        vrrp::wire::fuzz_entry(&bytes);
        // A flipped bit never parses back to the original advert (except the
        // v3 reserved bits, which are ignored on receive).
        let reserved_bit = i == 4 && bit >= 4;
        if let (Ok(p), false) = (Advert::parse(&bytes, &ctx), reserved_bit) {
            prop_assert_ne!(p.advert, advert);
        }
        if let Ok(p) = Packet::new_checked(&bytes[..], vrrp::wire::Family::Ipv4) {
            prop_assert!(p.message_len() <= bytes.len());
        }
    }
}
