//! Next hops of backends, resolved in user space over rtnetlink (katran's
//! model: the XDP program only reads MAC addresses that user space keeps
//! current). `bpf_fib_lookup` would do this per packet but refuses to work
//! unless IP forwarding is enabled on the interface (IPv4) or globally
//! (IPv6), a side effect a balancer should not impose.
//!
//! For a backend address: `RTM_GETROUTE` gives the egress interface and
//! gateway, `RTM_GETLINK` the interface's MAC and MTU, `RTM_GETNEIGH` the
//! next hop's MAC. A missing neighbour entry is requested with
//! `RTM_NEWNEIGH` + `NTF_USE`, which makes the kernel resolve it (ARP / ND)
//! as if it had a packet to send.
//!
//! The socket belongs to the network namespace of the thread that created
//! it.

use std::io::{self, Read};
use std::net::IpAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

const NETLINK_ROUTE: i32 = 0;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_VIA: u16 = 18;
const RTN_UNICAST: u8 = 1;
const IFLA_ADDRESS: u16 = 1;
const IFLA_MTU: u16 = 4;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const NTF_USE: u8 = 0x01;
/// REACHABLE | STALE | DELAY | PROBE | NOARP | PERMANENT.
const NUD_VALID: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// Where packets for a backend go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NextHop {
    /// Egress interface.
    pub ifindex: u32,
    /// MAC of the next hop.
    pub dmac: [u8; 6],
    /// MAC of the egress interface.
    pub smac: [u8; 6],
    /// MTU of the egress interface.
    pub mtu: u32,
    /// No gateway between us and the backend.
    pub onlink: bool,
}

/// Result of resolving one backend address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolution {
    /// Ready to forward.
    Ready(NextHop),
    /// No unicast route.
    NoRoute,
    /// Route known, neighbour not (yet) resolved; resolution was requested.
    Pending,
}

/// A route netlink socket.
pub(crate) struct Resolver {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").field("seq", &self.seq).finish()
    }
}

fn family_and_bytes(ip: IpAddr) -> (u8, Vec<u8>) {
    match ip {
        IpAddr::V4(a) => (AF_INET, a.octets().to_vec()),
        IpAddr::V6(a) => (AF_INET6, a.octets().to_vec()),
    }
}

fn ip_from(family: u8, bytes: &[u8]) -> Option<IpAddr> {
    match (family, bytes.len()) {
        (AF_INET, 4) => Some(IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])),
        (AF_INET6, 16) => {
            let mut a = [0u8; 16];
            a.copy_from_slice(bytes);
            Some(IpAddr::from(a))
        }
        _ => None,
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Route attributes `(type, payload)` after a fixed header of `skip` bytes.
pub(crate) fn attributes(payload: &[u8], skip: usize) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = skip;
    while let (Some(len), Some(kind)) = (u16_at(payload, at), u16_at(payload, at + 2)) {
        let len = usize::from(len);
        if len < 4 || at + len > payload.len() {
            break;
        }
        out.push((kind & 0x3fff, &payload[at + 4..at + len]));
        at += (len + 3) & !3;
    }
    out
}

fn push_attr(buf: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    // Attribute payloads here are at most 16 bytes.
    buf.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(data);
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

/// One reply: a message of the expected type, or an errno (0 = ack).
enum Reply {
    Message(Vec<u8>),
    Errno(i32),
}

impl Resolver {
    /// A socket in the calling thread's network namespace.
    pub(crate) fn new() -> io::Result<Resolver> {
        let socket = Socket::new(
            Domain::from(libc::AF_NETLINK),
            Type::RAW,
            Some(Protocol::from(NETLINK_ROUTE)),
        )?;
        socket.set_read_timeout(Some(Duration::from_secs(1)))?;
        Ok(Resolver {
            socket,
            seq: 1,
            buf: vec![0u8; 16 * 1024],
        })
    }

    fn request(&mut self, kind: u16, flags: u16, body: &[u8], want: u16) -> io::Result<Reply> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let len =
            u32::try_from(16 + body.len()).map_err(|_| io::Error::other("request too long"))?;
        let mut msg = Vec::with_capacity(16 + body.len());
        msg.extend_from_slice(&len.to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(body);
        self.socket.send(&msg)?;
        // Bounded: a reply for our sequence number or an error within the
        // read timeout; stale datagrams of earlier requests are skipped.
        for _ in 0..16 {
            let n = (&self.socket).read(&mut self.buf)?;
            let data = &self.buf[..n];
            let mut at = 0;
            while let (Some(mlen), Some(mtype), Some(mseq)) =
                (u32_at(data, at), u16_at(data, at + 4), u32_at(data, at + 8))
            {
                let mlen = mlen as usize;
                if mlen < 16 || at + mlen > data.len() {
                    break;
                }
                let payload = &data[at + 16..at + mlen];
                if mseq == seq {
                    if mtype == NLMSG_ERROR {
                        let errno = u32_at(payload, 0).map(|e| e as i32).unwrap_or(-libc::EIO);
                        return Ok(Reply::Errno(-errno));
                    }
                    if mtype == want {
                        return Ok(Reply::Message(payload.to_vec()));
                    }
                    if mtype == NLMSG_DONE {
                        return Ok(Reply::Errno(libc::ENOENT));
                    }
                }
                at += (mlen + 3) & !3;
            }
        }
        Err(io::Error::other("no netlink reply"))
    }

    /// `(egress ifindex, gateway)` of the unicast route to `dst`.
    fn route(&mut self, dst: IpAddr) -> io::Result<Option<(u32, Option<IpAddr>)>> {
        let (family, bytes) = family_and_bytes(dst);
        let dst_len = u8::try_from(bytes.len() * 8).unwrap_or(128);
        let mut body = vec![family, dst_len, 0, 0, 0, 0, 0, 0];
        body.extend_from_slice(&0u32.to_ne_bytes());
        push_attr(&mut body, RTA_DST, &bytes);
        let payload = match self.request(RTM_GETROUTE, 0, &body, RTM_NEWROUTE)? {
            Reply::Message(p) => p,
            Reply::Errno(e)
                if e == libc::ENETUNREACH || e == libc::EHOSTUNREACH || e == libc::ENOENT =>
            {
                return Ok(None)
            }
            Reply::Errno(e) => return Err(io::Error::from_raw_os_error(e)),
        };
        if payload.get(7) != Some(&RTN_UNICAST) {
            return Ok(None);
        }
        let mut oif = None;
        let mut gateway = None;
        for (kind, data) in attributes(&payload, 12) {
            match kind {
                RTA_OIF => oif = u32_at(data, 0),
                RTA_GATEWAY => gateway = ip_from(family, data),
                RTA_VIA => {
                    let f = u16_at(data, 0).and_then(|f| u8::try_from(f).ok());
                    gateway = f.and_then(|f| ip_from(f, data.get(2..).unwrap_or(&[])));
                }
                _ => {}
            }
        }
        Ok(oif.map(|o| (o, gateway)))
    }

    /// MAC and MTU of interface `ifindex`.
    fn link(&mut self, ifindex: u32) -> io::Result<Option<([u8; 6], u32)>> {
        let mut body = vec![0u8, 0, 0, 0];
        body.extend_from_slice(&ifindex.to_ne_bytes());
        body.extend_from_slice(&0u32.to_ne_bytes());
        body.extend_from_slice(&0u32.to_ne_bytes());
        let payload = match self.request(RTM_GETLINK, 0, &body, RTM_NEWLINK)? {
            Reply::Message(p) => p,
            Reply::Errno(e) if e == libc::ENODEV || e == libc::ENOENT => return Ok(None),
            Reply::Errno(e) => return Err(io::Error::from_raw_os_error(e)),
        };
        let mut mac = None;
        let mut mtu = None;
        for (kind, data) in attributes(&payload, 16) {
            match kind {
                IFLA_ADDRESS => mac = <[u8; 6]>::try_from(data).ok(),
                IFLA_MTU => mtu = u32_at(data, 0),
                _ => {}
            }
        }
        Ok(mac.zip(mtu))
    }

    fn ndmsg(family: u8, ifindex: u32, state: u16, flags: u8) -> Vec<u8> {
        let mut body = vec![family, 0, 0, 0];
        body.extend_from_slice(&ifindex.to_ne_bytes());
        body.extend_from_slice(&state.to_ne_bytes());
        body.push(flags);
        body.push(0);
        body
    }

    /// The MAC of neighbour `addr` on `ifindex`, if resolved.
    fn neighbour(&mut self, ifindex: u32, addr: IpAddr) -> io::Result<Option<[u8; 6]>> {
        let (family, bytes) = family_and_bytes(addr);
        let mut body = Self::ndmsg(family, ifindex, 0, 0);
        push_attr(&mut body, NDA_DST, &bytes);
        let payload = match self.request(RTM_GETNEIGH, 0, &body, RTM_NEWNEIGH)? {
            Reply::Message(p) => p,
            Reply::Errno(e) if e == libc::ENOENT => return Ok(None),
            Reply::Errno(e) => return Err(io::Error::from_raw_os_error(e)),
        };
        let state = u16_at(&payload, 8).unwrap_or(0);
        if state & NUD_VALID == 0 {
            return Ok(None);
        }
        Ok(attributes(&payload, 12)
            .into_iter()
            .find(|(k, _)| *k == NDA_LLADDR)
            .and_then(|(_, d)| <[u8; 6]>::try_from(d).ok()))
    }

    /// Ask the kernel to resolve neighbour `addr` on `ifindex`.
    fn solicit(&mut self, ifindex: u32, addr: IpAddr) -> io::Result<()> {
        let (family, bytes) = family_and_bytes(addr);
        let mut body = Self::ndmsg(family, ifindex, 0, NTF_USE);
        push_attr(&mut body, NDA_DST, &bytes);
        match self.request(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_ACK, &body, NLMSG_ERROR)? {
            Reply::Errno(0) | Reply::Message(_) => Ok(()),
            Reply::Errno(e) => Err(io::Error::from_raw_os_error(e)),
        }
    }

    /// Resolve the next hop of `dst`; requests neighbour resolution when
    /// the route is known but the neighbour is not.
    pub(crate) fn resolve(&mut self, dst: IpAddr) -> io::Result<Resolution> {
        let Some((ifindex, gateway)) = self.route(dst)? else {
            return Ok(Resolution::NoRoute);
        };
        let Some((smac, mtu)) = self.link(ifindex)? else {
            return Ok(Resolution::NoRoute);
        };
        let via = gateway.unwrap_or(dst);
        match self.neighbour(ifindex, via)? {
            Some(dmac) => Ok(Resolution::Ready(NextHop {
                ifindex,
                dmac,
                smac,
                mtu,
                onlink: gateway.is_none(),
            })),
            None => {
                self.solicit(ifindex, via)?;
                Ok(Resolution::Pending)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_parsed_and_padded() {
        let mut b = vec![0u8; 12];
        push_attr(&mut b, RTA_DST, &[10, 0, 0, 1]);
        push_attr(&mut b, RTA_OIF, &7u32.to_ne_bytes());
        push_attr(&mut b, 99, &[1, 2, 3]);
        push_attr(&mut b, RTA_GATEWAY, &[10, 0, 0, 254]);
        assert_eq!(b.len() % 4, 0);
        let attrs = attributes(&b, 12);
        assert_eq!(attrs.len(), 4);
        assert_eq!(attrs[0], (RTA_DST, &[10u8, 0, 0, 1][..]));
        assert_eq!(u32_at(attrs[1].1, 0), Some(7));
        assert_eq!(attrs[2].1, &[1, 2, 3]);
        assert_eq!(attrs[3].1, &[10, 0, 0, 254]);
        // Truncated input stops the walk instead of panicking.
        assert_eq!(attributes(&b[..b.len() - 2], 12).len(), 3);
        assert!(attributes(&[1, 0], 0).is_empty());
    }

    #[test]
    fn addresses_from_attribute_bytes() {
        assert_eq!(
            ip_from(AF_INET, &[10, 0, 0, 1]),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(ip_from(AF_INET, &[10, 0, 0]), None);
        assert!(ip_from(AF_INET6, &[0; 16]).is_some());
    }

    #[test]
    fn loopback_has_no_unicast_route_to_itself() {
        // Works unprivileged: route lookups are open to everyone.
        let mut r = Resolver::new().unwrap();
        let res = r.resolve("127.0.0.1".parse().unwrap());
        assert!(matches!(res, Ok(Resolution::NoRoute)), "{res:?}");
    }
}
