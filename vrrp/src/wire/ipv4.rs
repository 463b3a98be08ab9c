//! The IPv4 header around a received VRRP advert (a raw IPv4 socket hands
//! the whole datagram, header included, to user space).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version|  IHL  |Type of Service|          Total Length         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Identification        |Flags|      Fragment Offset    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Time to Live |    Protocol   |         Header Checksum       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       Source Address                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Destination Address                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Options                    |    Padding    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! (RFC 791 section 3.1)

use std::net::Ipv4Addr;

use super::checksum;
use super::DropReason;
use crate::Error;

mod field {
    use std::ops::Range;

    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;

/// A zero-copy view of an IPv4 header and its payload.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps a buffer without checks: accessors may panic until
    /// [`check_len`](Self::check_len) succeeds.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps a buffer and checks that the header and the declared total
    /// length fit. After this no accessor panics.
    pub fn new_checked(buffer: T) -> Result<Self, DropReason> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    pub fn check_len(&self) -> Result<(), DropReason> {
        let data = self.buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(DropReason::Truncated);
        }
        if self.version() != 4 {
            return Err(DropReason::BadIpHeader);
        }
        let header_len = self.header_len();
        let total_len = usize::from(self.total_len());
        if header_len < HEADER_LEN || total_len < header_len {
            return Err(DropReason::BadIpHeader);
        }
        if data.len() < total_len {
            return Err(DropReason::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    pub fn total_len(&self) -> u16 {
        let d = &self.buffer.as_ref()[field::LENGTH];
        u16::from_be_bytes([d[0], d[1]])
    }

    pub fn ident(&self) -> u16 {
        let d = &self.buffer.as_ref()[field::IDENT];
        u16::from_be_bytes([d[0], d[1]])
    }

    pub fn dont_frag(&self) -> bool {
        self.buffer.as_ref()[field::FLG_OFF.start] & 0x40 != 0
    }

    pub fn more_frags(&self) -> bool {
        self.buffer.as_ref()[field::FLG_OFF.start] & 0x20 != 0
    }

    /// Fragment offset in 8-byte units.
    pub fn frag_offset(&self) -> u16 {
        let d = &self.buffer.as_ref()[field::FLG_OFF];
        u16::from_be_bytes([d[0], d[1]]) & 0x1fff
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    pub fn checksum(&self) -> u16 {
        let d = &self.buffer.as_ref()[field::CHECKSUM];
        u16::from_be_bytes([d[0], d[1]])
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        let d = &self.buffer.as_ref()[field::SRC];
        Ipv4Addr::new(d[0], d[1], d[2], d[3])
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        let d = &self.buffer.as_ref()[field::DST];
        Ipv4Addr::new(d[0], d[1], d[2], d[3])
    }

    /// True if the header checksum (options included) verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::finish(checksum::accumulate(
            0,
            &self.buffer.as_ref()[..self.header_len()],
        )) == 0
    }

    /// The payload, up to the declared total length (link padding excluded).
    pub fn payload(&self) -> &[u8] {
        let total = usize::from(self.total_len());
        &self.buffer.as_ref()[self.header_len()..total]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    pub fn set_version_ihl(&mut self, version: u8, header_len: usize) {
        let ihl = (header_len / 4) as u8 & 0x0f;
        self.buffer.as_mut()[field::VER_IHL] = (version << 4) | ihl;
    }

    pub fn set_tos(&mut self, tos: u8) {
        self.buffer.as_mut()[field::TOS] = tos;
    }

    pub fn set_total_len(&mut self, len: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&len.to_be_bytes());
    }

    pub fn set_ident(&mut self, ident: u16) {
        self.buffer.as_mut()[field::IDENT].copy_from_slice(&ident.to_be_bytes());
    }

    pub fn set_flags_frag(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let mut v = offset & 0x1fff;
        if dont_frag {
            v |= 0x4000;
        }
        if more_frags {
            v |= 0x2000;
        }
        self.buffer.as_mut()[field::FLG_OFF].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    pub fn set_protocol(&mut self, protocol: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol;
    }

    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }

    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.octets());
    }

    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.octets());
    }

    /// Computes and stores the header checksum.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let len = self.header_len();
        let value = checksum::checksum(&self.buffer.as_ref()[..len]);
        self.set_checksum(value);
    }
}

/// An owned IPv4 header (options are skipped on parse and never emitted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Header {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub tos: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub ttl: u8,
    pub protocol: u8,
    /// Payload length in bytes (total length minus header length).
    pub payload_len: u16,
}

impl Ipv4Header {
    /// Parses and validates a header: version 4, sane lengths, a correct
    /// header checksum and no fragmentation (VRRP adverts are never fragmented).
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Ipv4Header, DropReason> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(DropReason::BadIpHeader);
        }
        if packet.more_frags() || packet.frag_offset() != 0 {
            return Err(DropReason::BadIpHeader);
        }
        let payload_len = packet.total_len() - packet.header_len() as u16;
        Ok(Ipv4Header {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            tos: packet.tos(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            ttl: packet.ttl(),
            protocol: packet.protocol(),
            payload_len,
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header with a correct checksum into `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let total = HEADER_LEN + usize::from(self.payload_len);
        let total = u16::try_from(total).map_err(|_| Error::BufferTooSmall {
            needed: total,
            available: usize::from(u16::MAX),
        })?;
        let Some(header) = buf.get_mut(..HEADER_LEN) else {
            return Err(Error::BufferTooSmall {
                needed: HEADER_LEN,
                available: buf.len(),
            });
        };
        let mut packet = Ipv4Packet::new_unchecked(header);
        packet.set_version_ihl(4, HEADER_LEN);
        packet.set_tos(self.tos);
        packet.set_total_len(total);
        packet.set_ident(self.ident);
        packet.set_flags_frag(self.dont_frag, false, 0);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src);
        packet.set_dst_addr(self.dst);
        packet.fill_checksum();
        Ok(HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // keepalived's first VRRPv2 advert header (ttl 255, proto 112, tos 0xc0).
    const HEADER: [u8; 20] = [
        0x45, 0xc0, 0x00, 0x28, 0x00, 0x01, 0x00, 0x00, 0xff, 0x70, 0x18, 0x91, 0xc0, 0x00, 0x02,
        0x01, 0xe0, 0x00, 0x00, 0x12,
    ];

    fn with_payload() -> Vec<u8> {
        let mut v = HEADER.to_vec();
        v.resize(0x28, 0);
        v
    }

    #[test]
    fn parse_known_header() {
        let bytes = with_payload();
        let packet = Ipv4Packet::new_checked(&bytes[..]).expect("valid");
        let header = Ipv4Header::parse(&packet).expect("valid");
        assert_eq!(
            header,
            Ipv4Header {
                src: Ipv4Addr::new(192, 0, 2, 1),
                dst: Ipv4Addr::new(224, 0, 0, 18),
                tos: 0xc0,
                ident: 1,
                dont_frag: false,
                ttl: 255,
                protocol: 112,
                payload_len: 20,
            }
        );
        assert_eq!(packet.payload().len(), 20);
    }

    #[test]
    fn emit_known_header() {
        let header = Ipv4Header {
            src: Ipv4Addr::new(192, 0, 2, 1),
            dst: Ipv4Addr::new(224, 0, 0, 18),
            tos: 0xc0,
            ident: 1,
            dont_frag: false,
            ttl: 255,
            protocol: 112,
            payload_len: 20,
        };
        let mut buf = [0u8; 20];
        assert_eq!(header.emit(&mut buf), Ok(20));
        assert_eq!(buf, HEADER);
        assert!(matches!(
            header.emit(&mut [0u8; 19]),
            Err(Error::BufferTooSmall { needed: 20, .. })
        ));
    }

    #[test]
    fn rejects_bad_headers() {
        let mut bytes = with_payload();
        bytes[10] ^= 1; // checksum
        let packet = Ipv4Packet::new_unchecked(&bytes[..]);
        assert_eq!(Ipv4Header::parse(&packet), Err(DropReason::BadIpHeader));

        let bytes = with_payload();
        assert_eq!(
            Ipv4Packet::new_checked(&bytes[..30]).map(|_| ()),
            Err(DropReason::Truncated)
        );
        let mut bytes = with_payload();
        bytes[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&bytes[..]).map(|_| ()),
            Err(DropReason::BadIpHeader)
        );
        let mut bytes = with_payload();
        bytes[0] = 0x44; // IHL 4 < 5
        assert_eq!(
            Ipv4Packet::new_checked(&bytes[..]).map(|_| ()),
            Err(DropReason::BadIpHeader)
        );
        let mut bytes = with_payload();
        bytes[6] = 0x20; // more fragments
        let mut p = Ipv4Packet::new_unchecked(&mut bytes[..]);
        p.fill_checksum();
        let p = Ipv4Packet::new_unchecked(&bytes[..]);
        assert_eq!(Ipv4Header::parse(&p), Err(DropReason::BadIpHeader));
    }
}
