//! PROXY protocol v1 (text) and v2 (binary) header codec, sans-IO
//! (HAProxy's "The PROXY protocol" specification, versions 1 and 2).
//!
//! ```text
//! v1: "PROXY" SP ("TCP4" | "TCP6" | "UNKNOWN") [SP src SP dst SP sport SP dport] CRLF
//!     at most 107 bytes
//!
//! v2:  0                   1                   2                   3
//!     +---------------------------------------------------------------+
//!     |  signature  \r\n\r\n\0\r\nQUIT\n  (12 bytes)                   |
//!     +---------------+---------------+-------------------------------+
//!     | ver 2 | cmd   | family | proto|  length of what follows (BE) |
//!     +---------------+---------------+-------------------------------+
//!     | addresses: IPv4 src(4) dst(4) sport(2) dport(2)               |
//!     |            IPv6 src(16) dst(16) sport(2) dport(2)             |
//!     | then TLVs (skipped)                                           |
//!     +---------------------------------------------------------------+
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 header, CRLF included.
pub const V1_MAX_LEN: usize = 107;
/// Longest v2 header: 16 fixed bytes plus a 16-bit length.
pub const V2_MAX_LEN: usize = 16 + 65_535;

/// Errors parsing a PROXY protocol header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyProtocolError {
    /// The bytes start with neither a v1 nor a v2 signature.
    #[error("no PROXY protocol signature")]
    NoSignature,
    /// A v1 line longer than 107 bytes.
    #[error("PROXY v1 header too long")]
    V1TooLong,
    /// A v1 line that does not follow the grammar.
    #[error("malformed PROXY v1 header")]
    V1Malformed,
    /// v2 version nibble is not 2 or the command is unknown.
    #[error("unsupported PROXY v2 version or command {0:#04x}")]
    V2VersionCommand(u8),
    /// v2 address block shorter than its family needs.
    #[error("PROXY v2 address block too short for family {0:#04x}")]
    V2ShortAddresses(u8),
}

/// Transport of the proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP (`STREAM`).
    Stream,
    /// UDP (`DGRAM`).
    Datagram,
}

/// A parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// Original client and destination, or `None` for v1 `UNKNOWN`, v2
    /// `LOCAL` and unsupported families (use the connection's own addresses).
    pub addresses: Option<(SocketAddr, SocketAddr)>,
    /// Transport (v1 is always stream).
    pub transport: Transport,
}

/// Parse a header at the start of `buf`. `Ok(None)`: not enough bytes yet;
/// `Ok(Some((header, n)))`: the header is the first `n` bytes.
pub fn parse(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyProtocolError> {
    let v2_prefix = buf.len().min(V2_SIGNATURE.len());
    if buf[..v2_prefix] == V2_SIGNATURE[..v2_prefix] && !buf.is_empty() {
        if buf.len() < 16 {
            return Ok(None);
        }
        return parse_v2(buf);
    }
    let v1_prefix = buf.len().min(6);
    if buf[..v1_prefix] == b"PROXY "[..v1_prefix] {
        return parse_v1(buf);
    }
    if buf.is_empty() {
        return Ok(None);
    }
    Err(ProxyProtocolError::NoSignature)
}

fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyProtocolError> {
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= V1_MAX_LEN {
            return Err(ProxyProtocolError::V1TooLong);
        }
        return Ok(None);
    };
    let line = std::str::from_utf8(&buf[..end]).map_err(|_| ProxyProtocolError::V1Malformed)?;
    let mut parts = line.split(' ');
    if parts.next() != Some("PROXY") {
        return Err(ProxyProtocolError::V1Malformed);
    }
    let proto = parts.next().ok_or(ProxyProtocolError::V1Malformed)?;
    let header = match proto {
        "UNKNOWN" => ProxyHeader {
            addresses: None,
            transport: Transport::Stream,
        },
        "TCP4" | "TCP6" => {
            let mut field = || parts.next().ok_or(ProxyProtocolError::V1Malformed);
            let (src, dst, sport, dport) = (field()?, field()?, field()?, field()?);
            if parts.next().is_some() {
                return Err(ProxyProtocolError::V1Malformed);
            }
            let ip = |s: &str| -> Result<IpAddr, ProxyProtocolError> {
                if proto == "TCP4" {
                    s.parse::<Ipv4Addr>().map(IpAddr::V4)
                } else {
                    s.parse::<Ipv6Addr>().map(IpAddr::V6)
                }
                .map_err(|_| ProxyProtocolError::V1Malformed)
            };
            let port = |s: &str| -> Result<u16, ProxyProtocolError> {
                if s.is_empty() || (s.len() > 1 && s.starts_with('0')) {
                    return Err(ProxyProtocolError::V1Malformed);
                }
                s.parse().map_err(|_| ProxyProtocolError::V1Malformed)
            };
            ProxyHeader {
                addresses: Some((
                    SocketAddr::new(ip(src)?, port(sport)?),
                    SocketAddr::new(ip(dst)?, port(dport)?),
                )),
                transport: Transport::Stream,
            }
        }
        _ => return Err(ProxyProtocolError::V1Malformed),
    };
    Ok(Some((header, end + 2)))
}

fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyProtocolError> {
    let ver_cmd = buf[12];
    let fam = buf[13];
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if buf.len() < 16 + len {
        return Ok(None);
    }
    let body = &buf[16..16 + len];
    let local = match ver_cmd {
        0x20 => true,
        0x21 => false,
        other => return Err(ProxyProtocolError::V2VersionCommand(other)),
    };
    let transport = if fam & 0x0f == 0x02 {
        Transport::Datagram
    } else {
        Transport::Stream
    };
    let addresses = match fam >> 4 {
        0x1 => {
            if body.len() < 12 {
                return Err(ProxyProtocolError::V2ShortAddresses(fam));
            }
            let src = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            let dst = Ipv4Addr::new(body[4], body[5], body[6], body[7]);
            let sport = u16::from_be_bytes([body[8], body[9]]);
            let dport = u16::from_be_bytes([body[10], body[11]]);
            Some((
                SocketAddr::new(IpAddr::V4(src), sport),
                SocketAddr::new(IpAddr::V4(dst), dport),
            ))
        }
        0x2 => {
            if body.len() < 36 {
                return Err(ProxyProtocolError::V2ShortAddresses(fam));
            }
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&body[0..16]);
            d.copy_from_slice(&body[16..32]);
            let sport = u16::from_be_bytes([body[32], body[33]]);
            let dport = u16::from_be_bytes([body[34], body[35]]);
            Some((
                SocketAddr::new(IpAddr::V6(Ipv6Addr::from(s)), sport),
                SocketAddr::new(IpAddr::V6(Ipv6Addr::from(d)), dport),
            ))
        }
        // AF_UNSPEC, AF_UNIX: addresses not usable here.
        _ => None,
    };
    Ok(Some((
        ProxyHeader {
            addresses: if local { None } else { addresses },
            transport,
        },
        16 + len,
    )))
}

fn same_family(src: SocketAddr, dst: SocketAddr) -> (SocketAddr, SocketAddr) {
    let v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => (src, dst),
        _ => (v6(src), v6(dst)),
    }
}

/// Encode a v1 header for a TCP connection from `src` to `dst`.
pub fn encode_v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(src, dst);
    let proto = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {proto} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    )
    .into_bytes()
}

/// Encode a v2 `PROXY` header (no TLVs).
pub fn encode_v2(src: SocketAddr, dst: SocketAddr, transport: Transport) -> Vec<u8> {
    let (src, dst) = same_family(src, dst);
    let proto = match transport {
        Transport::Stream => 0x1,
        Transport::Datagram => 0x2,
    };
    let mut out = Vec::with_capacity(16 + 36);
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x10 | proto);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let six = |a: IpAddr| match a {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.push(0x20 | proto);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&six(s).octets());
            out.extend_from_slice(&six(d).octets());
        }
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_round_trip_and_bytes() {
        let h = encode_v1(sa("192.0.2.1:56324"), sa("198.51.100.2:443"));
        assert_eq!(h, b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n");
        let (p, n) = parse(&h).unwrap().unwrap();
        assert_eq!(n, h.len());
        assert_eq!(
            p.addresses,
            Some((sa("192.0.2.1:56324"), sa("198.51.100.2:443")))
        );
        let h6 = encode_v1(sa("[2001:db8::1]:1000"), sa("[2001:db8::2]:80"));
        assert_eq!(h6, b"PROXY TCP6 2001:db8::1 2001:db8::2 1000 80\r\n");
        let mixed = encode_v1(sa("10.0.0.1:1"), sa("[::1]:2"));
        assert!(mixed.starts_with(b"PROXY TCP6 ::ffff:10.0.0.1 ::1 1 2"));
    }

    #[test]
    fn v1_partial_unknown_and_errors() {
        let full = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nGET / HTTP/1.1\r\n";
        for cut in 0..32 {
            assert_eq!(parse(&full[..cut]), Ok(None), "cut {cut}");
        }
        assert_eq!(parse(full).unwrap().unwrap().1, 32);
        let (p, n) = parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap();
        assert_eq!((p.addresses, n), (None, 15));
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n"),
            Err(ProxyProtocolError::NoSignature)
        );
        assert_eq!(
            parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"),
            Err(ProxyProtocolError::V1Malformed)
        );
        assert_eq!(
            parse(b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n"),
            Err(ProxyProtocolError::V1Malformed)
        );
        assert_eq!(
            parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"),
            Err(ProxyProtocolError::V1Malformed)
        );
        let long = [b"PROXY ".as_slice(), &[b'x'; 120]].concat();
        assert_eq!(parse(&long), Err(ProxyProtocolError::V1TooLong));
    }

    #[test]
    fn v2_bytes_and_round_trip() {
        let h = encode_v2(
            sa("192.0.2.1:56324"),
            sa("198.51.100.2:443"),
            Transport::Stream,
        );
        let expect: Vec<u8> = [
            &V2_SIGNATURE[..],
            &[0x21, 0x11, 0x00, 0x0c],
            &[192, 0, 2, 1, 198, 51, 100, 2],
            &56324u16.to_be_bytes(),
            &443u16.to_be_bytes(),
        ]
        .concat();
        assert_eq!(h, expect);
        let (p, n) = parse(&h).unwrap().unwrap();
        assert_eq!(n, 28);
        assert_eq!(p.transport, Transport::Stream);
        assert_eq!(
            p.addresses,
            Some((sa("192.0.2.1:56324"), sa("198.51.100.2:443")))
        );
        for cut in 0..h.len() {
            assert_eq!(parse(&h[..cut]), Ok(None), "cut {cut}");
        }
        let h6 = encode_v2(
            sa("[2001:db8::1]:7"),
            sa("[2001:db8::2]:8"),
            Transport::Datagram,
        );
        assert_eq!(h6[13], 0x22);
        let (p, n) = parse(&h6).unwrap().unwrap();
        assert_eq!(n, 52);
        assert_eq!(p.transport, Transport::Datagram);
        assert_eq!(
            p.addresses,
            Some((sa("[2001:db8::1]:7"), sa("[2001:db8::2]:8")))
        );
    }

    #[test]
    fn v2_local_tlvs_and_errors() {
        // LOCAL with AF_UNSPEC and 3 bytes of TLV that must be skipped.
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0x00, 0x03, 1, 2, 3, b'X']);
        let (p, n) = parse(&local).unwrap().unwrap();
        assert_eq!((p.addresses, n), (None, 19));
        let mut bad = V2_SIGNATURE.to_vec();
        bad.extend_from_slice(&[0x31, 0x11, 0x00, 0x0c]);
        bad.extend_from_slice(&[0; 12]);
        assert_eq!(parse(&bad), Err(ProxyProtocolError::V2VersionCommand(0x31)));
        let mut short = V2_SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0x00, 0x04, 1, 2, 3, 4]);
        assert_eq!(
            parse(&short),
            Err(ProxyProtocolError::V2ShortAddresses(0x11))
        );
    }
}
