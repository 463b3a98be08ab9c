//! The VRRP socket: raw IP protocol 112 on one interface, IPv4 or IPv6,
//! multicast (224.0.0.18 / ff02::12) or unicast to a peer list.
//!
//! - IPv4: received datagrams include the IPv4 header (raw socket); the TTL
//!   and destination also come from `IP_RECVTTL` / `IP_PKTINFO`. Sent with
//!   TTL 255 (unicast and multicast), multicast loop off, bound to the
//!   interface; the source is set per packet with `IP_PKTINFO`, so the socket
//!   still receives multicast (binding a raw socket to an address would
//!   filter out everything not addressed to it).
//! - IPv6: received datagrams are the VRRP message only; hop limit and
//!   destination come from `IPV6_HOPLIMIT` / `IPV6_PKTINFO`. Sent with hop
//!   limit 255 from the configured (link-local) source via `IPV6_PKTINFO`.
//! - Unicast mode (non-empty peer list): no group is joined, adverts go to
//!   each peer, and datagrams from any other source are dropped, counted in
//!   `halb_vrrp_rx_dropped_total{instance,reason="not_from_peer"}` (through
//!   [`crate::wire::record_rx_drop`]) and reported as [`Inbound::NotFromPeer`];
//!   the driver must not count them again.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    SockaddrIn, SockaddrIn6,
};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tracing::debug;

use super::error::IoError;
use super::sys;
use crate::wire::{record_rx_drop, DropReason};

/// IP protocol number of VRRP.
pub const IPPROTO_VRRP: i32 = 112;
/// The IPv4 VRRP multicast group.
pub const VRRP_GROUP_V4: Ipv4Addr = crate::wire::MULTICAST_V4;
/// The IPv6 VRRP multicast group.
pub const VRRP_GROUP_V6: Ipv6Addr = crate::wire::MULTICAST_V6;
/// TTL / hop limit of every VRRP packet sent, and required on receive in multicast mode.
pub const VRRP_TTL: u8 = 255;

/// IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4 (VRRPv2 or v3).
    V4,
    /// IPv6 (VRRPv3).
    V6,
}

impl Family {
    /// The family of `addr`.
    pub fn of(addr: IpAddr) -> Family {
        if addr.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

/// How to open a [`VrrpSocket`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// Instance name, used as the `instance` label of metrics.
    pub instance: String,
    /// The interface to send and receive on.
    pub ifname: String,
    /// Address family.
    pub family: Family,
    /// Source address of sent adverts (keepalived's `unicast_src_ip`; for
    /// IPv6 the interface's link-local address). `None` lets the kernel pick.
    pub source: Option<IpAddr>,
    /// Unicast peers; empty means multicast.
    pub peers: Vec<IpAddr>,
}

/// One received datagram; its bytes are `buf[..len]` of the buffer given to
/// [`VrrpSocket::recv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram {
    /// Bytes received.
    pub len: usize,
    /// True for IPv4: `buf[..len]` starts with the IPv4 header. False for
    /// IPv6: it is the VRRP message alone.
    pub ip_header_included: bool,
    /// Source address.
    pub src: IpAddr,
    /// Destination address (group or our unicast address), when the kernel reported it.
    pub dst: Option<IpAddr>,
    /// Receiving interface index, when the kernel reported it.
    pub ifindex: Option<u32>,
    /// TTL (IPv4) or hop limit (IPv6), when the kernel reported it.
    pub hop_limit: Option<u8>,
}

/// What [`VrrpSocket::recv`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// A datagram to hand to the codec.
    Accepted(Datagram),
    /// Unicast mode: the source is not a configured peer; dropped and counted.
    NotFromPeer {
        /// The rejected source.
        src: IpAddr,
    },
    /// The datagram did not fit in the buffer; dropped and counted.
    Truncated {
        /// Its source.
        src: IpAddr,
    },
}

/// A VRRP socket on one interface. Share it with `Arc`: every method takes `&self`.
#[derive(Debug)]
pub struct VrrpSocket {
    fd: AsyncFd<Socket>,
    cfg: TransportConfig,
    ifindex: u32,
}

fn check_family(family: Family, addr: IpAddr) -> Result<(), IoError> {
    if Family::of(addr) == family {
        Ok(())
    } else {
        Err(IoError::FamilyMismatch(addr))
    }
}

fn nix_err(op: &'static str) -> impl FnOnce(nix::errno::Errno) -> IoError {
    move |e| IoError::Socket {
        op,
        source: e.into(),
    }
}

impl VrrpSocket {
    /// Opens the socket in the calling thread's network namespace. Needs
    /// CAP_NET_RAW and a tokio runtime.
    pub fn open(cfg: TransportConfig) -> Result<Self, IoError> {
        if let Some(src) = cfg.source {
            check_family(cfg.family, src)?;
        }
        for peer in &cfg.peers {
            check_family(cfg.family, *peer)?;
        }
        let ifindex = nix::net::if_::if_nametoindex(cfg.ifname.as_str())
            .map_err(|_| IoError::NoSuchInterface(cfg.ifname.clone()))?;
        let domain = match cfg.family {
            Family::V4 => Domain::IPV4,
            Family::V6 => Domain::IPV6,
        };
        let socket = Socket::new(
            domain,
            Type::RAW.nonblocking().cloexec(),
            Some(Protocol::from(IPPROTO_VRRP)),
        )
        .map_err(IoError::socket("raw socket"))?;
        socket
            .bind_device(Some(cfg.ifname.as_bytes()))
            .map_err(IoError::socket("SO_BINDTODEVICE"))?;
        let multicast = cfg.peers.is_empty();
        let ttl = u32::from(VRRP_TTL);
        match cfg.family {
            Family::V4 => {
                socket.set_ttl_v4(ttl).map_err(IoError::socket("IP_TTL"))?;
                socket
                    .set_multicast_ttl_v4(ttl)
                    .map_err(IoError::socket("IP_MULTICAST_TTL"))?;
                socket
                    .set_multicast_loop_v4(false)
                    .map_err(IoError::socket("IP_MULTICAST_LOOP"))?;
                setsockopt(&socket, sockopt::Ipv4PacketInfo, &true)
                    .map_err(nix_err("IP_PKTINFO"))?;
                setsockopt(&socket, sockopt::Ipv4RecvTtl, &true).map_err(nix_err("IP_RECVTTL"))?;
                if multicast {
                    socket
                        .join_multicast_v4_n(
                            &VRRP_GROUP_V4,
                            &InterfaceIndexOrAddress::Index(ifindex),
                        )
                        .map_err(IoError::socket("IP_ADD_MEMBERSHIP"))?;
                }
            }
            Family::V6 => {
                socket
                    .set_unicast_hops_v6(ttl)
                    .map_err(IoError::socket("IPV6_UNICAST_HOPS"))?;
                socket
                    .set_multicast_hops_v6(ttl)
                    .map_err(IoError::socket("IPV6_MULTICAST_HOPS"))?;
                socket
                    .set_multicast_loop_v6(false)
                    .map_err(IoError::socket("IPV6_MULTICAST_LOOP"))?;
                socket
                    .set_multicast_if_v6(ifindex)
                    .map_err(IoError::socket("IPV6_MULTICAST_IF"))?;
                setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true)
                    .map_err(nix_err("IPV6_RECVPKTINFO"))?;
                setsockopt(&socket, sockopt::Ipv6RecvHopLimit, &true)
                    .map_err(nix_err("IPV6_RECVHOPLIMIT"))?;
                if multicast {
                    socket
                        .join_multicast_v6(&VRRP_GROUP_V6, ifindex)
                        .map_err(IoError::socket("IPV6_JOIN_GROUP"))?;
                }
            }
        }
        let fd = sys::register(socket).map_err(IoError::socket("register"))?;
        debug!(instance = %cfg.instance, ifname = %cfg.ifname, ifindex, family = ?cfg.family, multicast, "VRRP socket open");
        Ok(VrrpSocket { fd, cfg, ifindex })
    }

    /// The configuration this socket was opened with.
    pub fn config(&self) -> &TransportConfig {
        &self.cfg
    }

    /// The interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// True in multicast mode (no peers configured).
    pub fn is_multicast(&self) -> bool {
        self.cfg.peers.is_empty()
    }

    /// Sends one VRRP message (no IP header) to the group, or to every peer
    /// in unicast mode. Every destination is tried; the first failure is
    /// returned after that. Returns how many destinations it was sent to.
    pub async fn send(&self, vrrp: &[u8]) -> Result<usize, IoError> {
        if self.cfg.peers.is_empty() {
            let group = match self.cfg.family {
                Family::V4 => IpAddr::V4(VRRP_GROUP_V4),
                Family::V6 => IpAddr::V6(VRRP_GROUP_V6),
            };
            self.send_to(vrrp, group).await?;
            return Ok(1);
        }
        let mut first_err = None;
        let mut sent = 0;
        for peer in &self.cfg.peers {
            match self.send_to(vrrp, *peer).await {
                Ok(()) => sent += 1,
                Err(e) => {
                    debug!(instance = %self.cfg.instance, error = %e, "advert to a peer not sent");
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(sent),
        }
    }

    /// Sends one VRRP message (no IP header) to `dst`.
    pub async fn send_to(&self, vrrp: &[u8], dst: IpAddr) -> Result<(), IoError> {
        check_family(self.cfg.family, dst)?;
        let send_err = |source| IoError::Send { dst, source };
        match dst {
            IpAddr::V4(dst4) => {
                let addr = SockaddrIn::from(SocketAddrV4::new(dst4, 0));
                let pktinfo = self.cfg.source.map(|src| libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from_ne_bytes(ip4_octets(src)),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                });
                self.fd
                    .async_io(Interest::WRITABLE, |s| {
                        let cmsgs: Vec<ControlMessage<'_>> =
                            pktinfo.iter().map(ControlMessage::Ipv4PacketInfo).collect();
                        sendmsg(
                            s.as_raw_fd(),
                            &[IoSlice::new(vrrp)],
                            &cmsgs,
                            MsgFlags::empty(),
                            Some(&addr),
                        )
                        .map_err(io::Error::from)
                    })
                    .await
                    .map_err(send_err)?;
            }
            IpAddr::V6(dst6) => {
                let scope = if needs_scope(dst6) { self.ifindex } else { 0 };
                let addr = SockaddrIn6::from(SocketAddrV6::new(dst6, 0, 0, scope));
                let pktinfo = self.cfg.source.map(|src| libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: ip6_octets(src),
                    },
                    ipi6_ifindex: self.ifindex,
                });
                self.fd
                    .async_io(Interest::WRITABLE, |s| {
                        let cmsgs: Vec<ControlMessage<'_>> =
                            pktinfo.iter().map(ControlMessage::Ipv6PacketInfo).collect();
                        sendmsg(
                            s.as_raw_fd(),
                            &[IoSlice::new(vrrp)],
                            &cmsgs,
                            MsgFlags::empty(),
                            Some(&addr),
                        )
                        .map_err(io::Error::from)
                    })
                    .await
                    .map_err(send_err)?;
            }
        }
        Ok(())
    }

    /// Receives one datagram into `buf` (give it at least 1500 bytes).
    /// Cancel-safe: dropping the future loses no datagram.
    pub async fn recv(&self, buf: &mut [u8]) -> Result<Inbound, IoError> {
        let got = match self.cfg.family {
            Family::V4 => {
                self.fd
                    .async_io(Interest::READABLE, |s| recv_v4(s, buf))
                    .await
            }
            Family::V6 => {
                self.fd
                    .async_io(Interest::READABLE, |s| recv_v6(s, buf))
                    .await
            }
        }
        .map_err(IoError::socket("recvmsg"))?;
        let (dgram, truncated) = got;
        if truncated {
            record_rx_drop(&self.cfg.instance, DropReason::Truncated);
            return Ok(Inbound::Truncated { src: dgram.src });
        }
        if !self.cfg.peers.is_empty() && !self.cfg.peers.contains(&dgram.src) {
            record_rx_drop(&self.cfg.instance, DropReason::NotFromPeer);
            debug!(instance = %self.cfg.instance, src = %dgram.src, "VRRP datagram from a non-peer dropped");
            return Ok(Inbound::NotFromPeer { src: dgram.src });
        }
        Ok(Inbound::Accepted(dgram))
    }
}

fn needs_scope(addr: Ipv6Addr) -> bool {
    addr.is_unicast_link_local() || (addr.is_multicast() && (addr.segments()[0] & 0x000f) <= 2)
}

fn ip4_octets(addr: IpAddr) -> [u8; 4] {
    match addr {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(_) => [0; 4],
    }
}

fn ip6_octets(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(_) => [0; 16],
    }
}

fn recv_v4(s: &Socket, buf: &mut [u8]) -> io::Result<(Datagram, bool)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(libc::in_pktinfo, libc::c_int);
    let msg = recvmsg::<SockaddrIn>(s.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())?;
    let src = msg.address.map(|a| IpAddr::V4(a.ip())).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "datagram without source address",
        )
    })?;
    let mut dgram = Datagram {
        len: msg.bytes,
        ip_header_included: true,
        src,
        dst: None,
        ifindex: None,
        hop_limit: None,
    };
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::Ipv4PacketInfo(info) => {
                dgram.ifindex = u32::try_from(info.ipi_ifindex).ok();
                dgram.dst = Some(IpAddr::V4(Ipv4Addr::from(
                    info.ipi_addr.s_addr.to_ne_bytes(),
                )));
            }
            ControlMessageOwned::Ipv4Ttl(ttl) => dgram.hop_limit = u8::try_from(ttl).ok(),
            _ => {}
        }
    }
    Ok((dgram, msg.flags.contains(MsgFlags::MSG_TRUNC)))
}

fn recv_v6(s: &Socket, buf: &mut [u8]) -> io::Result<(Datagram, bool)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
    let msg = recvmsg::<SockaddrIn6>(s.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())?;
    let src = msg.address.map(|a| IpAddr::V6(a.ip())).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "datagram without source address",
        )
    })?;
    let mut dgram = Datagram {
        len: msg.bytes,
        ip_header_included: false,
        src,
        dst: None,
        ifindex: None,
        hop_limit: None,
    };
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::Ipv6PacketInfo(info) => {
                dgram.ifindex = Some(info.ipi6_ifindex);
                dgram.dst = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
            }
            ControlMessageOwned::Ipv6HopLimit(hops) => dgram.hop_limit = u8::try_from(hops).ok(),
            _ => {}
        }
    }
    Ok((dgram, msg.flags.contains(MsgFlags::MSG_TRUNC)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_needed_for_link_local_and_link_scoped_multicast() {
        assert!(needs_scope(VRRP_GROUP_V6));
        assert!(needs_scope("fe80::1".parse().expect("addr")));
        assert!(!needs_scope("2001:db8::1".parse().expect("addr")));
        assert!(!needs_scope("ff05::12".parse().expect("addr")));
    }

    #[test]
    fn family_checks() {
        assert_eq!(Family::of(IpAddr::V4(VRRP_GROUP_V4)), Family::V4);
        assert!(check_family(Family::V6, IpAddr::V4(VRRP_GROUP_V4)).is_err());
        assert!(check_family(Family::V6, IpAddr::V6(VRRP_GROUP_V6)).is_ok());
    }
}
