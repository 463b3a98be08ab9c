//! The only `unsafe` of [`crate::io`]: registering an owned socket with
//! tokio's reactor, and building a `sockaddr_ll` for AF_PACKET sockets.
#![allow(unsafe_code)]

use std::io;

use nix::sys::socket::{LinkAddr, SockaddrLike};
use socket2::Socket;
use tokio::io::unix::AsyncFd;

/// Registers `socket` with the current tokio reactor.
///
/// Must be called inside a tokio runtime.
pub(crate) fn register(socket: Socket) -> io::Result<AsyncFd<Socket>> {
    // SAFETY: `socket2::Socket` owns its descriptor: it is open and refers to
    // the same socket until the `Socket` is dropped, and the `AsyncFd` owns the
    // `Socket` for its whole life. Nothing in this module replaces the inner
    // value through `get_mut`.
    unsafe { AsyncFd::register(socket) }.map_err(|e| e.into_parts().1)
}

/// A `sockaddr_ll` for interface `ifindex`, Ethernet protocol `ethertype`
/// (host byte order; 0 = none) and link-layer destination `mac`.
pub(crate) fn link_addr(ifindex: u32, ethertype: u16, mac: [u8; 6]) -> io::Result<LinkAddr> {
    let sll_ifindex = i32::try_from(ifindex)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index out of range"))?;
    let mut sll_addr = [0u8; 8];
    sll_addr[..6].copy_from_slice(&mac);
    let sll = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as libc::c_ushort,
        sll_protocol: ethertype.to_be(),
        sll_ifindex,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr,
    };
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `sll` is a fully initialised `sockaddr_ll` that lives across the
    // call, `len` is exactly its size, and `from_raw` copies it out (it checks
    // the length and the AF_PACKET family itself).
    unsafe { LinkAddr::from_raw((&raw const sll).cast::<libc::sockaddr>(), Some(len)) }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad sockaddr_ll"))
}
