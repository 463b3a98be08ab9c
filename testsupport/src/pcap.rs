//! A small reader for classic libpcap files (not pcapng).
//!
//! ```text
//! global header (24 bytes)            record header (16 bytes) + data
//! +------------+-------+-------+      +---------+----------+---------+----------+
//! | magic   u32| major | minor |      | ts_sec  | ts_frac  | incl_len| orig_len |
//! | thiszone i32 | sigfigs u32 |      +---------+----------+---------+----------+
//! | snaplen u32  | linktype u32|      | incl_len bytes of packet data ...        |
//! +------------+-------+-------+      +------------------------------------------+
//! ```
//! The magic tells the byte order (`a1b2c3d4` written natively) and the
//! timestamp resolution (`a1b23c4d`: nanoseconds instead of microseconds).

use std::path::Path;
use std::time::Duration;

/// Errors reading a capture file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PcapError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("file is {len} bytes, shorter than the 24-byte pcap global header")]
    ShortHeader { len: usize },
    #[error("not a pcap file: magic {magic:#010x} (pcapng is not supported)")]
    BadMagic { magic: u32 },
    #[error("record {index} at byte {offset}: header truncated")]
    TruncatedRecordHeader { index: usize, offset: usize },
    #[error(
        "record {index} at byte {offset}: {incl_len} bytes of data announced, {available} present"
    )]
    TruncatedRecordData {
        index: usize,
        offset: usize,
        incl_len: u32,
        available: usize,
    },
    #[error(
        "record {index} at byte {offset}: captured length {incl_len} exceeds snaplen {snaplen}"
    )]
    RecordTooLong {
        index: usize,
        offset: usize,
        incl_len: u32,
        snaplen: u32,
    },
}

/// The link-layer header type of a capture (`LINKTYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkType(pub u32);

impl LinkType {
    /// `LINKTYPE_ETHERNET`.
    pub const ETHERNET: LinkType = LinkType(1);
    /// `LINKTYPE_RAW`: packets start with an IPv4 or IPv6 header.
    pub const RAW: LinkType = LinkType(101);
    /// `LINKTYPE_LINUX_SLL`: tcpdump's "any" device.
    pub const LINUX_SLL: LinkType = LinkType(113);
}

/// Byte order a file was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    Little,
    Big,
}

/// The global header of a pcap file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcapHeader {
    pub byte_order: ByteOrder,
    /// Timestamps' fractional part is nanoseconds (else microseconds).
    pub nanosecond: bool,
    pub version_major: u16,
    pub version_minor: u16,
    pub snaplen: u32,
    pub linktype: LinkType,
}

/// One captured packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcapRecord {
    /// Capture time since the Unix epoch.
    pub timestamp: Duration,
    /// Length of the packet on the wire (`data` may be shorter if snapped).
    pub orig_len: u32,
    /// Captured bytes, starting with the link-layer header.
    pub data: Vec<u8>,
    /// Link-layer type of the file this record came from.
    pub linktype: LinkType,
}

/// A packet captured by [`Capture`](crate::Capture); the same type.
pub type Packet = PcapRecord;

/// A whole pcap file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcapFile {
    pub header: PcapHeader,
    pub records: Vec<PcapRecord>,
}

const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
/// IPv4 ethertype.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// IPv6 ethertype.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// ARP ethertype.
pub const ETHERTYPE_ARP: u16 = 0x0806;

impl PcapRecord {
    /// The network-layer ethertype and the bytes after the link-layer header.
    ///
    /// Understands Ethernet (with up to two VLAN tags), Linux cooked (SLL)
    /// and raw IP captures. `None` when the frame is too short or the link
    /// type is another one.
    pub fn l3(&self) -> Option<(u16, &[u8])> {
        let d = &self.data;
        match self.linktype {
            LinkType::ETHERNET => {
                let mut off = 12;
                let mut ethertype = be16(d, off)?;
                let mut tags = 0;
                while (ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ) && tags < 2 {
                    off += 4;
                    ethertype = be16(d, off)?;
                    tags += 1;
                }
                Some((ethertype, d.get(off + 2..)?))
            }
            LinkType::LINUX_SLL => Some((be16(d, 14)?, d.get(16..)?)),
            LinkType::RAW => match d.first()? >> 4 {
                4 => Some((ETHERTYPE_IPV4, d)),
                6 => Some((ETHERTYPE_IPV6, d)),
                _ => None,
            },
            _ => None,
        }
    }

    /// The ethertype of the network-layer payload (see [`PcapRecord::l3`]).
    pub fn ethertype(&self) -> Option<u16> {
        self.l3().map(|(t, _)| t)
    }

    /// The IP protocol number (IPv4 `protocol`, IPv6 `next header` of the
    /// fixed header) and the bytes after the IP header.
    pub fn ip(&self) -> Option<(u8, &[u8])> {
        let (ethertype, l3) = self.l3()?;
        match ethertype {
            ETHERTYPE_IPV4 => {
                let ihl = usize::from(l3.first()? & 0x0f) * 4;
                if ihl < 20 {
                    return None;
                }
                Some((*l3.get(9)?, l3.get(ihl..)?))
            }
            ETHERTYPE_IPV6 => Some((*l3.get(6)?, l3.get(40..)?)),
            _ => None,
        }
    }

    /// The IP protocol number (see [`PcapRecord::ip`]), e.g. 1 for ICMP, 112 for VRRP.
    pub fn ip_proto(&self) -> Option<u8> {
        self.ip().map(|(p, _)| p)
    }
}

fn be16(d: &[u8], off: usize) -> Option<u16> {
    let b = d.get(off..off + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

struct Reader {
    order: ByteOrder,
}

impl Reader {
    fn u32(&self, b: &[u8], off: usize) -> u32 {
        let a = [b[off], b[off + 1], b[off + 2], b[off + 3]];
        match self.order {
            ByteOrder::Little => u32::from_le_bytes(a),
            ByteOrder::Big => u32::from_be_bytes(a),
        }
    }

    fn u16(&self, b: &[u8], off: usize) -> u16 {
        let a = [b[off], b[off + 1]];
        match self.order {
            ByteOrder::Little => u16::from_le_bytes(a),
            ByteOrder::Big => u16::from_be_bytes(a),
        }
    }
}

const MAGIC_MICRO: u32 = 0xa1b2_c3d4;
const MAGIC_NANO: u32 = 0xa1b2_3c4d;

fn parse_header(bytes: &[u8]) -> Result<(PcapHeader, Reader), PcapError> {
    if bytes.len() < 24 {
        return Err(PcapError::ShortHeader { len: bytes.len() });
    }
    let le = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let be = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let (order, nanosecond) = match (le, be) {
        (MAGIC_MICRO, _) => (ByteOrder::Little, false),
        (MAGIC_NANO, _) => (ByteOrder::Little, true),
        (_, MAGIC_MICRO) => (ByteOrder::Big, false),
        (_, MAGIC_NANO) => (ByteOrder::Big, true),
        _ => return Err(PcapError::BadMagic { magic: be }),
    };
    let r = Reader { order };
    let header = PcapHeader {
        byte_order: order,
        nanosecond,
        version_major: r.u16(bytes, 4),
        version_minor: r.u16(bytes, 6),
        snaplen: r.u32(bytes, 16),
        linktype: LinkType(r.u32(bytes, 20)),
    };
    Ok((header, r))
}

fn parse_impl(bytes: &[u8], tolerate_partial_tail: bool) -> Result<PcapFile, PcapError> {
    let (header, r) = parse_header(bytes)?;
    let mut records = Vec::new();
    let mut off = 24;
    while off < bytes.len() {
        let index = records.len();
        if bytes.len() - off < 16 {
            if tolerate_partial_tail {
                break;
            }
            return Err(PcapError::TruncatedRecordHeader { index, offset: off });
        }
        let ts_sec = r.u32(bytes, off);
        let ts_frac = r.u32(bytes, off + 4);
        let incl_len = r.u32(bytes, off + 8);
        let orig_len = r.u32(bytes, off + 12);
        // Writers store at most snaplen bytes; a larger length means a
        // corrupt record (and would make us allocate from garbage). A
        // snaplen of 0 is treated as "unknown" by some writers.
        if header.snaplen != 0 && incl_len > header.snaplen.max(262_144) {
            return Err(PcapError::RecordTooLong {
                index,
                offset: off,
                incl_len,
                snaplen: header.snaplen,
            });
        }
        let start = off + 16;
        let available = bytes.len() - start;
        let len = usize::try_from(incl_len).unwrap_or(usize::MAX);
        if len > available {
            if tolerate_partial_tail {
                break;
            }
            return Err(PcapError::TruncatedRecordData {
                index,
                offset: off,
                incl_len,
                available,
            });
        }
        let frac = if header.nanosecond {
            Duration::from_nanos(u64::from(ts_frac))
        } else {
            Duration::from_micros(u64::from(ts_frac))
        };
        records.push(PcapRecord {
            timestamp: Duration::from_secs(u64::from(ts_sec)) + frac,
            orig_len,
            data: bytes[start..start + len].to_vec(),
            linktype: header.linktype,
        });
        off = start + len;
    }
    Ok(PcapFile { header, records })
}

/// Parse a complete pcap file held in memory. A truncated last record is an error.
pub fn parse(bytes: &[u8]) -> Result<PcapFile, PcapError> {
    parse_impl(bytes, false)
}

/// Parse a pcap file that a writer may still be appending to: an incomplete
/// last record is ignored instead of being an error.
pub fn parse_partial(bytes: &[u8]) -> Result<PcapFile, PcapError> {
    parse_impl(bytes, true)
}

/// Read a pcap file: its header and records.
pub fn read_file(path: impl AsRef<Path>) -> Result<PcapFile, PcapError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| PcapError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse(&bytes)
}

/// Read a pcap file's records (each carries the file's link type).
pub fn read(path: impl AsRef<Path>) -> Result<Vec<PcapRecord>, PcapError> {
    read_file(path).map(|f| f.records)
}

/// Serialise records as a little-endian, microsecond pcap file (for tests
/// that need to build a capture, and for round-trip checks of the reader).
pub fn write(linktype: LinkType, snaplen: u32, records: &[(Duration, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC_MICRO.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&snaplen.to_le_bytes());
    out.extend_from_slice(&linktype.0.to_le_bytes());
    for (ts, data) in records {
        let secs = u32::try_from(ts.as_secs()).unwrap_or(u32::MAX);
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&secs.to_le_bytes());
        out.extend_from_slice(&ts.subsec_micros().to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(data);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet + IPv4 frame carrying protocol `proto`.
    fn eth_ipv4(proto: u8) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[9] = proto;
        f.extend_from_slice(&ip);
        f.extend_from_slice(b"payload");
        f
    }

    fn to_big_endian(le: &[u8]) -> Vec<u8> {
        // Rewrite a little-endian file written by `write` in big-endian order.
        let mut out = Vec::new();
        let swap32 = |b: &[u8]| [b[3], b[2], b[1], b[0]];
        out.extend_from_slice(&swap32(&le[0..4]));
        out.extend_from_slice(&[le[5], le[4], le[7], le[6]]);
        for i in (8..24).step_by(4) {
            out.extend_from_slice(&swap32(&le[i..i + 4]));
        }
        let mut off = 24;
        while off < le.len() {
            for i in (off..off + 16).step_by(4) {
                out.extend_from_slice(&swap32(&le[i..i + 4]));
            }
            let len =
                u32::from_le_bytes([le[off + 8], le[off + 9], le[off + 10], le[off + 11]]) as usize;
            out.extend_from_slice(&le[off + 16..off + 16 + len]);
            off += 16 + len;
        }
        out
    }

    #[test]
    fn round_trip_both_byte_orders() {
        let a = eth_ipv4(112);
        let b = eth_ipv4(1);
        let file = write(
            LinkType::ETHERNET,
            65535,
            &[
                (Duration::new(1_700_000_000, 123_456_000), &a),
                (Duration::new(1_700_000_001, 0), &b),
            ],
        );
        for bytes in [file.clone(), to_big_endian(&file)] {
            let parsed = parse(&bytes).expect("parses");
            assert_eq!(parsed.header.linktype, LinkType::ETHERNET);
            assert_eq!(parsed.header.snaplen, 65535);
            assert_eq!(
                (parsed.header.version_major, parsed.header.version_minor),
                (2, 4)
            );
            assert_eq!(parsed.records.len(), 2);
            assert_eq!(
                parsed.records[0].timestamp,
                Duration::new(1_700_000_000, 123_456_000)
            );
            assert_eq!(parsed.records[0].data, a);
            assert_eq!(parsed.records[0].ethertype(), Some(ETHERTYPE_IPV4));
            assert_eq!(parsed.records[0].ip_proto(), Some(112));
            assert_eq!(parsed.records[1].ip_proto(), Some(1));
            assert_eq!(
                parsed.records[1].ip().map(|(_, p)| p),
                Some(&b"payload"[..])
            );
        }
        assert_eq!(
            parse(&to_big_endian(&file)).expect("be").header.byte_order,
            ByteOrder::Big
        );
        assert_eq!(
            parse(&file).expect("le").header.byte_order,
            ByteOrder::Little
        );
    }

    #[test]
    fn nanosecond_magic() {
        let a = eth_ipv4(6);
        let mut file = write(LinkType::ETHERNET, 65535, &[(Duration::new(5, 0), &a)]);
        file[0..4].copy_from_slice(&MAGIC_NANO.to_le_bytes());
        // Fraction field of record 0 is at 24 + 4.
        file[28..32].copy_from_slice(&7u32.to_le_bytes());
        let parsed = parse(&file).expect("parses");
        assert!(parsed.header.nanosecond);
        assert_eq!(parsed.records[0].timestamp, Duration::new(5, 7));
    }

    #[test]
    fn truncation_and_garbage_are_errors() {
        let a = eth_ipv4(6);
        let file = write(
            LinkType::ETHERNET,
            65535,
            &[(Duration::ZERO, &a), (Duration::ZERO, &a)],
        );
        assert!(matches!(
            parse(&file[..10]),
            Err(PcapError::ShortHeader { len: 10 })
        ));
        assert!(matches!(
            parse(&[0u8; 24]),
            Err(PcapError::BadMagic { magic: 0 })
        ));
        let cut_header = &file[..file.len() - a.len() - 8];
        assert!(matches!(
            parse(cut_header),
            Err(PcapError::TruncatedRecordHeader { index: 1, .. })
        ));
        let cut_data = &file[..file.len() - 3];
        assert!(matches!(
            parse(cut_data),
            Err(PcapError::TruncatedRecordData { index: 1, .. })
        ));
        // The tolerant parser keeps the complete records.
        assert_eq!(parse_partial(cut_data).expect("partial").records.len(), 1);
        assert_eq!(parse_partial(cut_header).expect("partial").records.len(), 1);
        // A huge announced length is rejected before allocating.
        let mut huge = file.clone();
        huge[24 + 8..24 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            parse(&huge),
            Err(PcapError::RecordTooLong { index: 0, .. })
        ));
    }

    #[test]
    fn vlan_sll_and_raw_link_types() {
        let mut tagged = vec![0u8; 12];
        tagged.extend_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
        tagged.extend_from_slice(&[0, 5]);
        tagged.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
        let mut ip6 = [0u8; 40];
        ip6[0] = 0x60;
        ip6[6] = 112;
        tagged.extend_from_slice(&ip6);
        let rec = PcapRecord {
            timestamp: Duration::ZERO,
            orig_len: 0,
            data: tagged,
            linktype: LinkType::ETHERNET,
        };
        assert_eq!(rec.ethertype(), Some(ETHERTYPE_IPV6));
        assert_eq!(rec.ip_proto(), Some(112));

        let raw = PcapRecord {
            timestamp: Duration::ZERO,
            orig_len: 0,
            data: ip6.to_vec(),
            linktype: LinkType::RAW,
        };
        assert_eq!(raw.ip_proto(), Some(112));

        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        sll.extend_from_slice(&[0u8; 28]);
        let sll = PcapRecord {
            timestamp: Duration::ZERO,
            orig_len: 0,
            data: sll,
            linktype: LinkType::LINUX_SLL,
        };
        assert_eq!(sll.ethertype(), Some(ETHERTYPE_ARP));
        assert_eq!(sll.ip_proto(), None);

        let short = PcapRecord {
            timestamp: Duration::ZERO,
            orig_len: 0,
            data: vec![0; 5],
            linktype: LinkType::ETHERNET,
        };
        assert_eq!(short.ethertype(), None);
        assert_eq!(short.ip_proto(), None);
    }
}
