//! The VRRP advertisement: a zero-copy view and an owned representation.
//!
//! VRRPv3 (RFC 9568 section 5.1), IPv4 or IPv6:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    IPv4 Fields or IPv6 Fields                 |
//! ...                                                             ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |(rsvd) |     Max Adver Int     |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                                                               +
//! |                       IPvX Address(es)                        |
//! +                                                               +
//! ...                                                             ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! VRRPv2 (RFC 3768 section 5.1), IPv4 only:
//!
//! ```text
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Type  | Virtual Rtr ID|   Priority    | Count IP Addrs|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Auth Type   |   Adver Int   |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         IP Address (1)                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                            .                                  |
//! |                         IP Address (n)                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     Authentication Data (1)                   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     Authentication Data (2)                   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Checksums (the checksum field is zero while computing):
//! - v2: over the VRRP message only (RFC 3768 section 5.3.8);
//! - v3 over IPv6: with the IPv6 pseudo-header (RFC 9568 section 5.2.8);
//! - v3 over IPv4: RFC 9568 section 5.2.8 says over the message only, RFC 5798
//!   and keepalived 2.2.7 include the IPv4 pseudo-header. Emit follows
//!   [`V3Ipv4Checksum`]; parse accepts either and reports which matched.
//!
//! Bytes after the last field (after the authentication data for v2, after the
//! last address for v3) are ignored and not covered by the checksum.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::{DropReason, IP_PROTOCOL};
use crate::{Centisecs, Error, Priority, Secs, VrId};

mod field {
    use std::ops::Range;

    pub const VER_TYPE: usize = 0;
    pub const VRID: usize = 1;
    pub const PRIORITY: usize = 2;
    pub const COUNT: usize = 3;
    /// v2: authentication type.
    pub const V2_AUTH_TYPE: usize = 4;
    /// v2: advertisement interval in seconds.
    pub const V2_ADVER_INT: usize = 5;
    /// v3: 4 reserved bits and the 12-bit Max Adver Int.
    pub const V3_RSVD_INT: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
    pub const ADDRESSES: usize = 8;
}

/// Length of the fixed VRRP header (both versions).
pub const HEADER_LEN: usize = field::ADDRESSES;
/// Length of the VRRPv2 authentication data trailer.
pub const V2_AUTH_DATA_LEN: usize = 8;
/// The only VRRP message type (RFC 9568 section 5.2.2).
pub const TYPE_ADVERTISEMENT: u8 = 1;

/// The VRRP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// RFC 3768 (keepalived's default), IPv4 only, intervals in seconds.
    V2,
    /// RFC 9568, IPv4 and IPv6, intervals in centiseconds.
    V3,
}

impl Version {
    pub const fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }

    pub const fn from_number(n: u8) -> Option<Version> {
        match n {
            2 => Some(Version::V2),
            3 => Some(Version::V3),
            _ => None,
        }
    }
}

/// The IP address family an advert travels in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub const fn addr_len(self) -> usize {
        match self {
            Family::Ipv4 => 4,
            Family::Ipv6 => 16,
        }
    }

    pub const fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }
}

/// The advertisement interval field, in its version's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdvertInterval {
    /// VRRPv2: whole seconds (8 bits).
    V2(Secs),
    /// VRRPv3: centiseconds (12 bits on the wire, 1..=4095).
    V3(Centisecs),
}

impl AdvertInterval {
    pub const fn as_centisecs(self) -> Centisecs {
        match self {
            AdvertInterval::V2(s) => Centisecs::from_secs(s),
            AdvertInterval::V3(c) => c,
        }
    }

    pub const fn version(self) -> Version {
        match self {
            AdvertInterval::V2(_) => Version::V2,
            AdvertInterval::V3(_) => Version::V3,
        }
    }

    /// The field for `version` carrying `interval`; `None` if a v2 interval
    /// is not whole seconds up to 255 or a v3 interval exceeds 4095 cs.
    pub const fn for_version(version: Version, interval: Centisecs) -> Option<AdvertInterval> {
        match version {
            Version::V2 => match interval.to_secs_exact() {
                Some(s) => Some(AdvertInterval::V2(s)),
                None => None,
            },
            Version::V3 => {
                if interval.0 > Centisecs::V3_MAX.0 {
                    None
                } else {
                    Some(AdvertInterval::V3(interval))
                }
            }
        }
    }
}

/// VRRPv2 authentication type (RFC 3768 section 5.3.6; types 1 and 2 come
/// from RFC 2338 and are still sent by keepalived's `auth_type PASS|AH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthType {
    None,
    SimpleText,
    IpAh,
    Other(u8),
}

impl AuthType {
    pub const fn from_u8(v: u8) -> AuthType {
        match v {
            0 => AuthType::None,
            1 => AuthType::SimpleText,
            2 => AuthType::IpAh,
            other => AuthType::Other(other),
        }
    }

    pub const fn to_u8(self) -> u8 {
        match self {
            AuthType::None => 0,
            AuthType::SimpleText => 1,
            AuthType::IpAh => 2,
            AuthType::Other(v) => v,
        }
    }
}

/// VRRPv2 authentication type and data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct V2Auth {
    pub auth_type: AuthType,
    pub data: [u8; V2_AUTH_DATA_LEN],
}

impl V2Auth {
    /// No authentication: type 0, zero data (keepalived's default).
    pub const NONE: V2Auth = V2Auth {
        auth_type: AuthType::None,
        data: [0; V2_AUTH_DATA_LEN],
    };

    /// Simple text password, truncated or zero-padded to 8 bytes.
    pub fn simple_text(password: &[u8]) -> V2Auth {
        let mut data = [0u8; V2_AUTH_DATA_LEN];
        for (d, s) in data.iter_mut().zip(password) {
            *d = *s;
        }
        V2Auth {
            auth_type: AuthType::SimpleText,
            data,
        }
    }
}

impl Default for V2Auth {
    fn default() -> Self {
        V2Auth::NONE
    }
}

/// Which VRRPv3-over-IPv4 checksum to emit (and try first on receive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum V3Ipv4Checksum {
    /// Include the IPv4 pseudo-header: RFC 5798 and keepalived 2.2.7.
    #[default]
    PseudoHeader,
    /// The VRRP message only: RFC 9568 section 5.2.8.
    MessageOnly,
}

/// The IP context a checksum is computed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumCtx {
    Ipv4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        /// Emit mode for v3 (ignored for v2, which is always message-only).
        v3: V3Ipv4Checksum,
    },
    Ipv6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
    },
}

impl ChecksumCtx {
    pub const fn family(&self) -> Family {
        match self {
            ChecksumCtx::Ipv4 { .. } => Family::Ipv4,
            ChecksumCtx::Ipv6 { .. } => Family::Ipv6,
        }
    }

    /// The same context with another v3-over-IPv4 mode (IPv6 unchanged).
    pub const fn with_v3_mode(self, mode: V3Ipv4Checksum) -> ChecksumCtx {
        match self {
            ChecksumCtx::Ipv4 { src, dst, .. } => ChecksumCtx::Ipv4 { src, dst, v3: mode },
            other => other,
        }
    }
}

/// Which checksum form a received advert carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumKind {
    /// Over the VRRP message only (all v2; v3/IPv4 per RFC 9568).
    Message,
    /// v3/IPv4 including the IPv4 pseudo-header (keepalived, RFC 5798).
    Ipv4PseudoHeader,
    /// v3/IPv6 including the IPv6 pseudo-header.
    Ipv6PseudoHeader,
}

/// A zero-copy view of a VRRP message (the IP payload). The address family
/// comes from the IP layer, so it is given at construction.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
    family: Family,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checks: accessors may panic until
    /// [`check_len`](Self::check_len) succeeds.
    pub const fn new_unchecked(buffer: T, family: Family) -> Self {
        Packet { buffer, family }
    }

    /// Wraps a buffer and checks the header, the version (which fixes the
    /// layout) and that the whole message fits. After this no accessor panics.
    pub fn new_checked(buffer: T, family: Family) -> Result<Self, DropReason> {
        let packet = Self::new_unchecked(buffer, family);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the fixed header, the addresses and (v2) the
    /// authentication data are all present.
    pub fn check_len(&self) -> Result<(), DropReason> {
        let data = self.buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(DropReason::Truncated);
        }
        let version = match Version::from_number(data[field::VER_TYPE] >> 4) {
            Some(v) => v,
            None => return Err(DropReason::BadVersion),
        };
        if version == Version::V2 && self.family == Family::Ipv6 {
            return Err(DropReason::WrongFamily);
        }
        if data.len() < self.message_len_for(version) {
            return Err(DropReason::Truncated);
        }
        Ok(())
    }

    fn message_len_for(&self, version: Version) -> usize {
        let count = usize::from(self.buffer.as_ref()[field::COUNT]);
        let auth = match version {
            Version::V2 => V2_AUTH_DATA_LEN,
            Version::V3 => 0,
        };
        HEADER_LEN + count * self.family.addr_len() + auth
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub const fn family(&self) -> Family {
        self.family
    }

    /// The version nibble as sent.
    pub fn version_number(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] >> 4
    }

    /// The version (after `check_len`, always 2 or 3).
    pub fn version(&self) -> Version {
        Version::from_number(self.version_number()).unwrap_or(Version::V3)
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] & 0x0f
    }

    pub fn vrid(&self) -> VrId {
        VrId(self.buffer.as_ref()[field::VRID])
    }

    pub fn priority(&self) -> Priority {
        Priority(self.buffer.as_ref()[field::PRIORITY])
    }

    pub fn addr_count(&self) -> u8 {
        self.buffer.as_ref()[field::COUNT]
    }

    /// v2 only: the authentication type byte.
    pub fn v2_auth_type(&self) -> AuthType {
        AuthType::from_u8(self.buffer.as_ref()[field::V2_AUTH_TYPE])
    }

    /// v2 only: the advertisement interval.
    pub fn v2_adver_int(&self) -> Secs {
        Secs(self.buffer.as_ref()[field::V2_ADVER_INT])
    }

    /// v3 only: the 4 reserved bits (ignored on receive, RFC 9568 section 5.2.6).
    pub fn v3_reserved(&self) -> u8 {
        self.buffer.as_ref()[field::V3_RSVD_INT.start] >> 4
    }

    /// v3 only: the 12-bit Max Advertise Interval.
    pub fn v3_max_adver_int(&self) -> Centisecs {
        let d = &self.buffer.as_ref()[field::V3_RSVD_INT];
        Centisecs(u16::from_be_bytes([d[0], d[1]]) & 0x0fff)
    }

    /// The interval in this packet's version's unit.
    pub fn interval(&self) -> AdvertInterval {
        match self.version() {
            Version::V2 => AdvertInterval::V2(self.v2_adver_int()),
            Version::V3 => AdvertInterval::V3(self.v3_max_adver_int()),
        }
    }

    pub fn checksum(&self) -> u16 {
        let d = &self.buffer.as_ref()[field::CHECKSUM];
        u16::from_be_bytes([d[0], d[1]])
    }

    /// The addresses, as many as the count field says.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let len = self.family.addr_len();
        let count = usize::from(self.addr_count());
        let start = field::ADDRESSES;
        let data = self.buffer.as_ref();
        let end = (start + count * len).min(data.len());
        let family = self.family;
        data.get(start..end)
            .unwrap_or(&[])
            .chunks_exact(len)
            .map(move |c| match family {
                Family::Ipv4 => IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3])),
                Family::Ipv6 => {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(c);
                    IpAddr::V6(Ipv6Addr::from(o))
                }
            })
    }

    /// v2 only: the 8 bytes of authentication data after the addresses.
    pub fn v2_auth_data(&self) -> [u8; V2_AUTH_DATA_LEN] {
        let start = HEADER_LEN + usize::from(self.addr_count()) * self.family.addr_len();
        let mut out = [0u8; V2_AUTH_DATA_LEN];
        if let Some(src) = self.buffer.as_ref().get(start..start + V2_AUTH_DATA_LEN) {
            out.copy_from_slice(src);
        }
        out
    }

    /// Length of the VRRP message proper (trailing bytes excluded).
    pub fn message_len(&self) -> usize {
        self.message_len_for(self.version())
    }

    /// The VRRP message proper (the bytes the checksum covers).
    pub fn message(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        &data[..self.message_len().min(data.len())]
    }

    /// Verifies the checksum in `ctx`; returns which form matched, if any.
    /// For v3 over IPv4 both forms are tried, the one `ctx` prefers first.
    pub fn verify_checksum(&self, ctx: &ChecksumCtx) -> Option<ChecksumKind> {
        let msg = self.message();
        let Ok(len) = u16::try_from(msg.len()) else {
            return None;
        };
        let ok = |acc: u32| checksum::finish(checksum::accumulate(acc, msg)) == 0;
        match (self.version(), ctx) {
            (Version::V2, ChecksumCtx::Ipv4 { .. }) => ok(0).then_some(ChecksumKind::Message),
            (Version::V2, ChecksumCtx::Ipv6 { .. }) => None,
            (Version::V3, ChecksumCtx::Ipv6 { src, dst }) => ok(checksum::ipv6_pseudo(
                *src,
                *dst,
                IP_PROTOCOL,
                u32::from(len),
            ))
            .then_some(ChecksumKind::Ipv6PseudoHeader),
            (Version::V3, ChecksumCtx::Ipv4 { src, dst, v3 }) => {
                let pseudo = ok(checksum::ipv4_pseudo(*src, *dst, IP_PROTOCOL, len))
                    .then_some(ChecksumKind::Ipv4PseudoHeader);
                let plain = ok(0).then_some(ChecksumKind::Message);
                match v3 {
                    V3Ipv4Checksum::PseudoHeader => pseudo.or(plain),
                    V3Ipv4Checksum::MessageOnly => plain.or(pseudo),
                }
            }
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_version_type(&mut self, version: Version, msg_type: u8) {
        self.buffer.as_mut()[field::VER_TYPE] = (version.number() << 4) | (msg_type & 0x0f);
    }

    pub fn set_vrid(&mut self, vrid: VrId) {
        self.buffer.as_mut()[field::VRID] = vrid.0;
    }

    pub fn set_priority(&mut self, priority: Priority) {
        self.buffer.as_mut()[field::PRIORITY] = priority.0;
    }

    pub fn set_addr_count(&mut self, count: u8) {
        self.buffer.as_mut()[field::COUNT] = count;
    }

    pub fn set_v2_auth_type(&mut self, auth_type: AuthType) {
        self.buffer.as_mut()[field::V2_AUTH_TYPE] = auth_type.to_u8();
    }

    pub fn set_v2_adver_int(&mut self, interval: Secs) {
        self.buffer.as_mut()[field::V2_ADVER_INT] = interval.0;
    }

    /// Sets the 12-bit interval and clears the reserved bits (RFC 9568 section 5.2.6).
    pub fn set_v3_max_adver_int(&mut self, interval: Centisecs) {
        let v = interval.0 & 0x0fff;
        self.buffer.as_mut()[field::V3_RSVD_INT].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }

    /// Writes address `index` (the buffer must hold it); an address of the
    /// other family is refused and nothing is written.
    pub fn set_address(&mut self, index: usize, addr: &IpAddr) -> Result<(), Error> {
        let len = self.family.addr_len();
        let start = field::ADDRESSES + index * len;
        let out = &mut self.buffer.as_mut()[start..start + len];
        match (addr, self.family) {
            (IpAddr::V4(a), Family::Ipv4) => out.copy_from_slice(&a.octets()),
            (IpAddr::V6(a), Family::Ipv6) => out.copy_from_slice(&a.octets()),
            _ => return Err(Error::WrongFamily(*addr)),
        }
        Ok(())
    }

    pub fn set_v2_auth_data(&mut self, data: &[u8; V2_AUTH_DATA_LEN]) {
        let start = HEADER_LEN + usize::from(self.addr_count()) * self.family.addr_len();
        self.buffer.as_mut()[start..start + V2_AUTH_DATA_LEN].copy_from_slice(data);
    }

    /// Computes and stores the checksum for `ctx` (v2 always message-only).
    pub fn fill_checksum(&mut self, ctx: &ChecksumCtx) {
        self.set_checksum(0);
        let len = self.message_len();
        let msg = &self.buffer.as_ref()[..len];
        let len16 = u16::try_from(len).unwrap_or(u16::MAX);
        let acc = match (self.version(), ctx) {
            (Version::V2, _) => 0,
            (Version::V3, ChecksumCtx::Ipv6 { src, dst }) => {
                checksum::ipv6_pseudo(*src, *dst, IP_PROTOCOL, u32::from(len16))
            }
            (Version::V3, ChecksumCtx::Ipv4 { src, dst, v3 }) => match v3 {
                V3Ipv4Checksum::PseudoHeader => {
                    checksum::ipv4_pseudo(*src, *dst, IP_PROTOCOL, len16)
                }
                V3Ipv4Checksum::MessageOnly => 0,
            },
        };
        let value = checksum::finish(checksum::accumulate(acc, msg));
        self.set_checksum(value);
    }
}

/// An owned VRRP advertisement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Advert {
    pub version: Version,
    pub vrid: VrId,
    pub priority: Priority,
    pub interval: AdvertInterval,
    /// The virtual addresses, all of the IP family the advert travels in.
    pub addresses: Vec<IpAddr>,
    /// VRRPv2 authentication; `None` for v3 (and treated as [`V2Auth::NONE`] when emitting v2).
    pub auth: Option<V2Auth>,
}

/// A successfully parsed advert and the checksum form it carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub advert: Advert,
    pub checksum: ChecksumKind,
}

impl Advert {
    /// Parses and verifies a VRRP message in `ctx`. Checks, in order:
    /// length and version ([`Packet::check_len`]), type 1, a non-zero address
    /// count, a non-zero interval, the checksum.
    pub fn parse(bytes: &[u8], ctx: &ChecksumCtx) -> Result<Parsed, DropReason> {
        let packet = Packet::new_checked(bytes, ctx.family())?;
        if packet.msg_type() != TYPE_ADVERTISEMENT {
            return Err(DropReason::BadType);
        }
        if packet.addr_count() == 0 {
            return Err(DropReason::BadAddressCount);
        }
        let interval = packet.interval();
        if interval.as_centisecs().0 == 0 {
            return Err(DropReason::ZeroInterval);
        }
        let checksum = packet.verify_checksum(ctx).ok_or(DropReason::BadChecksum)?;
        let version = packet.version();
        let auth = match version {
            Version::V2 => Some(V2Auth {
                auth_type: packet.v2_auth_type(),
                data: packet.v2_auth_data(),
            }),
            Version::V3 => None,
        };
        Ok(Parsed {
            advert: Advert {
                version,
                vrid: packet.vrid(),
                priority: packet.priority(),
                interval,
                addresses: packet.addresses().collect(),
                auth,
            },
            checksum,
        })
    }

    /// True for a priority-0 advert: the master is resigning (RFC 9568 section 5.2.4).
    pub const fn is_resignation(&self) -> bool {
        self.priority.is_resign()
    }

    /// Bytes [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        let addrs: usize = self
            .addresses
            .iter()
            .map(|a| Family::of(a).addr_len())
            .sum();
        let auth = match self.version {
            Version::V2 => V2_AUTH_DATA_LEN,
            Version::V3 => 0,
        };
        HEADER_LEN + addrs + auth
    }

    /// Checks that this advert can be emitted in `family`.
    pub fn check(&self, family: Family) -> Result<(), Error> {
        if self.interval.version() != self.version {
            return Err(Error::VersionIntervalMismatch);
        }
        match self.interval {
            AdvertInterval::V2(Secs(0)) => return Err(Error::ZeroInterval),
            AdvertInterval::V3(c) if c.0 == 0 => return Err(Error::ZeroInterval),
            AdvertInterval::V3(c) if c > Centisecs::V3_MAX => {
                return Err(Error::V3IntervalOutOfRange(c))
            }
            _ => {}
        }
        if self.version == Version::V3 && self.auth.is_some() {
            return Err(Error::AuthOnV3);
        }
        if self.version == Version::V2 && family == Family::Ipv6 {
            return Err(Error::V2OverIpv6);
        }
        if self.addresses.is_empty() || self.addresses.len() > usize::from(u8::MAX) {
            return Err(Error::BadAddressCount(self.addresses.len()));
        }
        if let Some(bad) = self.addresses.iter().find(|a| Family::of(a) != family) {
            return Err(Error::WrongFamily(*bad));
        }
        Ok(())
    }

    /// Writes the advert with its checksum into `buf`; returns the bytes written.
    pub fn emit(&self, buf: &mut [u8], ctx: &ChecksumCtx) -> Result<usize, Error> {
        self.check(ctx.family())?;
        let len = self.buffer_len();
        let Some(out) = buf.get_mut(..len) else {
            return Err(Error::BufferTooSmall {
                needed: len,
                available: buf.len(),
            });
        };
        let count = u8::try_from(self.addresses.len())
            .map_err(|_| Error::BadAddressCount(self.addresses.len()))?;
        let mut packet = Packet::new_unchecked(out, ctx.family());
        packet.set_version_type(self.version, TYPE_ADVERTISEMENT);
        packet.set_vrid(self.vrid);
        packet.set_priority(self.priority);
        packet.set_addr_count(count);
        match self.interval {
            AdvertInterval::V2(secs) => {
                let auth = self.auth.unwrap_or(V2Auth::NONE);
                packet.set_v2_auth_type(auth.auth_type);
                packet.set_v2_adver_int(secs);
                packet.set_v2_auth_data(&auth.data);
            }
            AdvertInterval::V3(cs) => packet.set_v3_max_adver_int(cs),
        }
        for (i, addr) in self.addresses.iter().enumerate() {
            packet.set_address(i, addr)?;
        }
        packet.fill_checksum(ctx);
        Ok(len)
    }

    /// Emits into a fresh vector.
    pub fn to_bytes(&self, ctx: &ChecksumCtx) -> Result<Vec<u8>, Error> {
        let mut buf = vec![0u8; self.buffer_len()];
        self.emit(&mut buf, ctx)?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const VIP4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);

    fn ctx4(v3: V3Ipv4Checksum) -> ChecksumCtx {
        ChecksumCtx::Ipv4 {
            src: SRC4,
            dst: super::super::MULTICAST_V4,
            v3,
        }
    }

    fn ctx6() -> ChecksumCtx {
        ChecksumCtx::Ipv6 {
            src: Ipv6Addr::new(0xfe80, 0, 0, 0, 0x5eff, 0xfe10, 0, 1),
            dst: super::super::MULTICAST_V6,
        }
    }

    // keepalived 2.2.7, VRRPv2, VRID 42, priority 200, 1 s, VIP 192.0.2.100.
    const V2_BYTES: [u8; 20] = [
        0x21, 0x2a, 0xc8, 0x01, 0x00, 0x01, 0x54, 0x6e, 0xc0, 0x00, 0x02, 0x64, 0, 0, 0, 0, 0, 0,
        0, 0,
    ];
    // keepalived 2.2.7, VRRPv3 over IPv4 with the pseudo-header, to 224.0.0.18.
    const V3_V4_BYTES: [u8; 12] = [
        0x31, 0x2a, 0xc8, 0x01, 0x00, 0x64, 0xa1, 0x7a, 0xc0, 0x00, 0x02, 0x64,
    ];
    // keepalived 2.2.7, VRRPv3 over IPv6 from fe80::5eff:fe10:1 to ff02::12.
    const V3_V6_BYTES: [u8; 24] = [
        0x31, 0x2a, 0xc8, 0x01, 0x00, 0x64, 0x7c, 0x87, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0x01, 0x00,
    ];

    fn v2_repr() -> Advert {
        Advert {
            version: Version::V2,
            vrid: VrId(42),
            priority: Priority(200),
            interval: AdvertInterval::V2(Secs(1)),
            addresses: vec![IpAddr::V4(VIP4)],
            auth: Some(V2Auth::NONE),
        }
    }

    fn v3_repr(addr: IpAddr) -> Advert {
        Advert {
            version: Version::V3,
            vrid: VrId(42),
            priority: Priority(200),
            interval: AdvertInterval::V3(Centisecs(100)),
            addresses: vec![addr],
            auth: None,
        }
    }

    #[test]
    fn v2_parse_and_emit() {
        let parsed = Advert::parse(&V2_BYTES, &ctx4(V3Ipv4Checksum::PseudoHeader)).expect("ok");
        assert_eq!(parsed.advert, v2_repr());
        assert_eq!(parsed.checksum, ChecksumKind::Message);
        let bytes = v2_repr()
            .to_bytes(&ctx4(V3Ipv4Checksum::PseudoHeader))
            .expect("emit");
        assert_eq!(bytes, V2_BYTES);
    }

    #[test]
    fn v3_ipv4_parse_and_emit_both_checksum_forms() {
        let parsed = Advert::parse(&V3_V4_BYTES, &ctx4(V3Ipv4Checksum::MessageOnly)).expect("ok");
        assert_eq!(parsed.advert, v3_repr(IpAddr::V4(VIP4)));
        assert_eq!(parsed.checksum, ChecksumKind::Ipv4PseudoHeader);
        let bytes = v3_repr(IpAddr::V4(VIP4))
            .to_bytes(&ctx4(V3Ipv4Checksum::PseudoHeader))
            .expect("emit");
        assert_eq!(bytes, V3_V4_BYTES);

        // The RFC 9568 form: message only.
        let plain = v3_repr(IpAddr::V4(VIP4))
            .to_bytes(&ctx4(V3Ipv4Checksum::MessageOnly))
            .expect("emit");
        assert_ne!(plain[6..8], V3_V4_BYTES[6..8]);
        assert_eq!(checksum::checksum(&plain), 0);
        let parsed = Advert::parse(&plain, &ctx4(V3Ipv4Checksum::PseudoHeader)).expect("ok");
        assert_eq!(parsed.checksum, ChecksumKind::Message);
    }

    #[test]
    fn v3_ipv6_parse_and_emit() {
        let vip6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100));
        let parsed = Advert::parse(&V3_V6_BYTES, &ctx6()).expect("ok");
        assert_eq!(parsed.advert, v3_repr(vip6));
        assert_eq!(parsed.checksum, ChecksumKind::Ipv6PseudoHeader);
        assert_eq!(v3_repr(vip6).to_bytes(&ctx6()).expect("emit"), V3_V6_BYTES);
        // The pseudo-header matters: another source fails.
        let other = ChecksumCtx::Ipv6 {
            src: Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2),
            dst: super::super::MULTICAST_V6,
        };
        assert_eq!(
            Advert::parse(&V3_V6_BYTES, &other),
            Err(DropReason::BadChecksum)
        );
    }

    #[test]
    fn view_accessors() {
        let p = Packet::new_checked(&V3_V4_BYTES[..], Family::Ipv4).expect("ok");
        assert_eq!(p.version(), Version::V3);
        assert_eq!(p.msg_type(), 1);
        assert_eq!(p.vrid(), VrId(42));
        assert_eq!(p.priority(), Priority(200));
        assert_eq!(p.addr_count(), 1);
        assert_eq!(p.v3_max_adver_int(), Centisecs(100));
        assert_eq!(p.v3_reserved(), 0);
        assert_eq!(p.checksum(), 0xa17a);
        assert_eq!(p.message_len(), 12);
        let p = Packet::new_checked(&V2_BYTES[..], Family::Ipv4).expect("ok");
        assert_eq!(p.v2_auth_type(), AuthType::None);
        assert_eq!(p.v2_adver_int(), Secs(1));
        assert_eq!(p.v2_auth_data(), [0; 8]);
    }

    #[test]
    fn receive_checks_in_parse() {
        let c = ctx4(V3Ipv4Checksum::PseudoHeader);
        assert_eq!(
            Advert::parse(&V3_V4_BYTES[..7], &c),
            Err(DropReason::Truncated)
        );
        assert_eq!(
            Advert::parse(&V3_V4_BYTES[..11], &c),
            Err(DropReason::Truncated)
        );
        assert_eq!(
            Advert::parse(&V2_BYTES[..19], &c),
            Err(DropReason::Truncated)
        );
        let mut b = V3_V4_BYTES;
        b[0] = 0x41;
        assert_eq!(Advert::parse(&b, &c), Err(DropReason::BadVersion));
        let mut b = V3_V4_BYTES;
        b[0] = 0x32;
        assert_eq!(Advert::parse(&b, &c), Err(DropReason::BadType));
        let mut b = V3_V4_BYTES;
        b[3] = 0;
        assert_eq!(Advert::parse(&b, &c), Err(DropReason::BadAddressCount));
        let mut b = V3_V4_BYTES;
        b[4] = 0xf0; // reserved bits set, interval zero
        b[5] = 0;
        assert_eq!(Advert::parse(&b, &c), Err(DropReason::ZeroInterval));
        let mut b = V3_V4_BYTES;
        b[2] = 201;
        assert_eq!(Advert::parse(&b, &c), Err(DropReason::BadChecksum));
        assert_eq!(
            Advert::parse(&V2_BYTES, &ctx6()),
            Err(DropReason::WrongFamily)
        );
        // Reserved bits are ignored (but covered by the checksum).
        let mut b = V3_V4_BYTES;
        b[4] |= 0xa0;
        b[6] = 0;
        b[7] = 0;
        let mut p = Packet::new_unchecked(&mut b[..], Family::Ipv4);
        p.set_checksum(0);
        let acc = checksum::ipv4_pseudo(SRC4, super::super::MULTICAST_V4, 112, 12);
        let sum = checksum::finish(checksum::accumulate(acc, &b));
        b[6..8].copy_from_slice(&sum.to_be_bytes());
        let parsed = Advert::parse(&b, &c).expect("reserved bits ignored");
        assert_eq!(parsed.advert.interval, AdvertInterval::V3(Centisecs(100)));
        // Trailing bytes are ignored.
        let mut long = V3_V4_BYTES.to_vec();
        long.extend_from_slice(&[0xde, 0xad]);
        assert!(Advert::parse(&long, &c).is_ok());
    }

    #[test]
    fn emit_rejects_inconsistent_adverts() {
        let c = ctx4(V3Ipv4Checksum::PseudoHeader);
        let mut buf = [0u8; 64];
        let mut a = v2_repr();
        a.interval = AdvertInterval::V3(Centisecs(100));
        assert_eq!(a.emit(&mut buf, &c), Err(Error::VersionIntervalMismatch));
        let mut a = v3_repr(IpAddr::V4(VIP4));
        a.auth = Some(V2Auth::NONE);
        assert_eq!(a.emit(&mut buf, &c), Err(Error::AuthOnV3));
        let mut a = v3_repr(IpAddr::V4(VIP4));
        a.interval = AdvertInterval::V3(Centisecs(4096));
        assert_eq!(
            a.emit(&mut buf, &c),
            Err(Error::V3IntervalOutOfRange(Centisecs(4096)))
        );
        let mut a = v3_repr(IpAddr::V4(VIP4));
        a.addresses.clear();
        assert_eq!(a.emit(&mut buf, &c), Err(Error::BadAddressCount(0)));
        let a = v3_repr(IpAddr::V4(VIP4));
        assert!(matches!(
            a.emit(&mut buf, &ctx6()),
            Err(Error::WrongFamily(_))
        ));
        assert_eq!(v2_repr().emit(&mut buf, &ctx6()), Err(Error::V2OverIpv6));
        assert_eq!(
            a.emit(&mut buf[..11], &c),
            Err(Error::BufferTooSmall {
                needed: 12,
                available: 11
            })
        );
    }

    #[test]
    fn setters_refuse_the_other_family() {
        let mut buf = [0u8; 24];
        let mut p = Packet::new_unchecked(&mut buf[..], Family::Ipv6);
        assert_eq!(
            p.set_address(0, &IpAddr::V4(VIP4)),
            Err(Error::WrongFamily(IpAddr::V4(VIP4)))
        );
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(p.set_address(0, &v6), Ok(()));
        p.set_addr_count(1);
        assert_eq!(p.addresses().collect::<Vec<_>>(), vec![v6]);
    }

    #[test]
    fn v2_simple_text_auth_round_trip() {
        let mut a = v2_repr();
        a.auth = Some(V2Auth::simple_text(b"secret"));
        let c = ctx4(V3Ipv4Checksum::PseudoHeader);
        let bytes = a.to_bytes(&c).expect("emit");
        assert_eq!(bytes[4], 1);
        assert_eq!(&bytes[12..20], b"secret\0\0");
        assert_eq!(Advert::parse(&bytes, &c).expect("parse").advert, a);
    }
}
