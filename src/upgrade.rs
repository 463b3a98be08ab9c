//! Binary upgrade without a dropped connection.
//!
//! `halb run --upgrade -c FILE` connects to the running daemon's admin
//! socket and sends `{"cmd":"upgrade"}`. The running daemon answers with one
//! message carrying a JSON description of its listening sockets and the
//! sockets themselves (SCM_RIGHTS). The new process serves on those very
//! sockets (they are never closed, so no connection attempt is refused),
//! takes over the admin socket path, and writes `ready`. Only then does the
//! old process stop accepting, let its connections finish and exit. If the
//! new process dies before `ready`, the old one reads end-of-file and keeps
//! running as if nothing happened.
//!
//! Message layout: a 4-byte big-endian length, then that many bytes of JSON
//! ([`Handoff`]); the descriptors ride on the first byte, in the order of
//! `Handoff::listeners`, then the metrics listener if there is one, then
//! the XDP links of `Handoff::xdp_links`.
//!
//! The description also names the VRRP instances the old process is master
//! of. The new process continues as their master at once (an advert, no
//! election, the VIPs never leave the interface), and the old one stops its
//! instances without resigning, so a peer never sees the master go and the
//! VIPs never move.
#![allow(unsafe_code)]

use std::io::{self, IoSlice, IoSliceMut, Read};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::{Deserialize, Serialize};

/// Most descriptors one hand-over carries.
pub const MAX_FDS: usize = 252;
/// Longest description accepted.
const MAX_META: usize = 1 << 20;

/// What the descriptors are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handoff {
    pub listeners: Vec<HandedListener>,
    /// The bound address of the metrics listener, when one is handed over.
    pub metrics: Option<SocketAddr>,
    /// VRRP instances the old process is master of: the new one continues
    /// as their master at once (they carry no descriptor). Absent from an
    /// older halb: none.
    #[serde(default)]
    pub vrrp_masters: Vec<String>,
    /// XDP attachments (BPF links), whose descriptors follow the metrics
    /// listener's: the new process switches each to its own program.
    #[serde(default)]
    pub xdp_links: Vec<HandedXdpLink>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandedXdpLink {
    pub interface: String,
    pub mode: ebpf::AttachMode,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandedListener {
    pub frontend: String,
    pub bind: SocketAddr,
    /// "tcp" or "udp".
    pub transport: String,
}

impl Handoff {
    fn fd_count(&self) -> usize {
        self.listeners.len() + usize::from(self.metrics.is_some()) + self.xdp_links.len()
    }
}

/// Sends the description and the descriptors in one message.
pub fn send(stream: &UnixStream, meta: &Handoff, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.len() != meta.fd_count() {
        return Err(io::Error::other(format!(
            "hand-over describes {} sockets but carries {}",
            meta.fd_count(),
            fds.len()
        )));
    }
    if fds.len() > MAX_FDS {
        return Err(io::Error::other(format!(
            "too many sockets to hand over: {} (at most {MAX_FDS})",
            fds.len()
        )));
    }
    let json = serde_json::to_vec(meta).map_err(io::Error::other)?;
    let len = u32::try_from(json.len()).map_err(io::Error::other)?;
    let mut payload = len.to_be_bytes().to_vec();
    payload.extend_from_slice(&json);
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsgs = if raw.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(&raw)]
    };
    let mut sent = sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(&payload)],
        &cmsgs,
        MsgFlags::empty(),
        None,
    )
    .map_err(io::Error::from)?;
    // The descriptors went with the first byte; the rest is plain data.
    while sent < payload.len() {
        let n = sendmsg::<()>(
            stream.as_raw_fd(),
            &[IoSlice::new(&payload[sent..])],
            &[],
            MsgFlags::empty(),
            None,
        )
        .map_err(io::Error::from)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        sent += n;
    }
    Ok(())
}

/// Receives a hand-over sent by [`send`].
pub fn receive(stream: &UnixStream) -> io::Result<(Handoff, Vec<OwnedFd>)> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (got, fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        let mut fds = Vec::new();
        for c in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                for fd in raw {
                    // SAFETY: the kernel just installed `fd` in this process
                    // for this message; nothing else owns it.
                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        (msg.bytes, fds)
    };
    if got == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the running daemon closed the connection without handing over its sockets",
        ));
    }
    let mut data = buf[..got].to_vec();
    while data.len() < 4 {
        read_more(stream, &mut data)?;
    }
    let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
    if len > MAX_META {
        return Err(io::Error::other(format!(
            "hand-over description of {len} bytes"
        )));
    }
    while data.len() < 4 + len {
        read_more(stream, &mut data)?;
    }
    let meta: Handoff = serde_json::from_slice(&data[4..4 + len]).map_err(io::Error::other)?;
    if meta.fd_count() != fds.len() {
        return Err(io::Error::other(format!(
            "hand-over describes {} sockets but carried {}",
            meta.fd_count(),
            fds.len()
        )));
    }
    Ok((meta, fds))
}

fn read_more(mut stream: &UnixStream, data: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 8192];
    let n = stream.read(&mut chunk)?;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    data.extend_from_slice(&chunk[..n]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn sockets_cross_a_unix_socket_and_still_listen() {
        let (a, b) = UnixStream::pair().unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp_addr = tcp.local_addr().unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let udp_addr = udp.local_addr().unwrap();
        let meta = Handoff {
            listeners: vec![
                HandedListener {
                    frontend: "web".into(),
                    bind: tcp_addr,
                    transport: "tcp".into(),
                },
                HandedListener {
                    frontend: "dns".into(),
                    bind: udp_addr,
                    transport: "udp".into(),
                },
            ],
            metrics: None,
            vrrp_masters: vec!["front".into()],
            xdp_links: vec![],
        };
        send(&a, &meta, &[tcp.as_fd(), udp.as_fd()]).unwrap();
        let (got, fds) = receive(&b).unwrap();
        assert_eq!(got, meta);
        assert_eq!(fds.len(), 2);
        let mut fds = fds.into_iter();
        let tcp2 = std::net::TcpListener::from(fds.next().unwrap());
        let udp2 = std::net::UdpSocket::from(fds.next().unwrap());
        // The received sockets are the same sockets: same addresses, and a
        // connection made now is accepted through the received descriptor.
        assert_eq!(tcp2.local_addr().unwrap(), tcp_addr);
        assert_eq!(udp2.local_addr().unwrap(), udp_addr);
        drop(tcp);
        let _client = std::net::TcpStream::connect(tcp_addr).unwrap();
        let (_conn, _) = tcp2.accept().unwrap();
    }

    #[test]
    fn mismatched_descriptions_are_refused() {
        let (a, _b) = UnixStream::pair().unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let meta = Handoff {
            listeners: vec![],
            metrics: None,
            vrrp_masters: vec![],
            xdp_links: vec![],
        };
        assert!(send(&a, &meta, &[tcp.as_fd()]).is_err());
    }

    #[test]
    fn a_description_from_an_older_halb_names_no_vrrp_master() {
        let meta: Handoff = serde_json::from_str(r#"{"listeners":[],"metrics":null}"#).unwrap();
        assert!(meta.vrrp_masters.is_empty());
        assert!(meta.xdp_links.is_empty());
    }

    #[test]
    fn a_closed_peer_is_an_error_not_a_hang() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(a);
        let err = receive(&b).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
