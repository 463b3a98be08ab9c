//! The one error type of [`crate::io`].

use std::net::IpAddr;

/// What went wrong in the VRRP driver's I/O layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IoError {
    /// The rtnetlink socket could not be opened.
    #[error("cannot open an rtnetlink socket: {0}")]
    NetlinkOpen(#[source] std::io::Error),
    /// A netlink request was refused by the kernel or could not be sent.
    #[error("netlink {op} failed: {source}")]
    Netlink {
        /// The operation, e.g. "add address".
        op: &'static str,
        /// What rtnetlink reported.
        #[source]
        source: rtnetlink::Error,
    },
    /// No interface has this name.
    #[error("no interface named {0:?}")]
    NoSuchInterface(String),
    /// The interface has no usable Ethernet address.
    #[error("interface {0:?} has no 6-byte hardware address")]
    NoHardwareAddress(String),
    /// The prefix length does not fit the address family.
    #[error("invalid prefix length /{prefix_len} for {addr}")]
    InvalidPrefix {
        /// The address.
        addr: IpAddr,
        /// The rejected prefix length.
        prefix_len: u8,
    },
    /// An address of the wrong family for this socket (IPv4 on an IPv6 socket or the reverse).
    #[error("address {0} does not match the socket's address family")]
    FamilyMismatch(IpAddr),
    /// An interface exists under the requested virtual MAC name but is not a macvlan.
    #[error("interface {0:?} exists and is not a macvlan, refusing to touch it")]
    NotMacvlan(String),
    /// A socket system call failed.
    #[error("socket {op} failed: {source}")]
    Socket {
        /// The call, e.g. "bind_device".
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Sending a VRRP datagram to one destination failed.
    #[error("sending to {dst} failed: {source}")]
    Send {
        /// The destination address.
        dst: IpAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An Ethernet frame is shorter than an Ethernet header or longer than the buffer allows.
    #[error("frame of {len} bytes is not a sendable Ethernet frame")]
    FrameSize {
        /// The frame length.
        len: usize,
    },
    /// A command line (notify program, track script) is empty.
    #[error("empty command line")]
    EmptyCommand,
}

impl IoError {
    pub(crate) fn socket(op: &'static str) -> impl FnOnce(std::io::Error) -> IoError {
        move |source| IoError::Socket { op, source }
    }

    pub(crate) fn netlink(op: &'static str) -> impl FnOnce(rtnetlink::Error) -> IoError {
        move |source| IoError::Netlink { op, source }
    }

    /// The errno carried by a netlink refusal, if this is one.
    pub fn netlink_errno(&self) -> Option<i32> {
        match self {
            IoError::Netlink {
                source: rtnetlink::Error::NetlinkError(msg),
                ..
            } => Some(msg.raw_code().abs()),
            _ => None,
        }
    }
}

/// The errno of an rtnetlink refusal (positive), if it is one.
pub(crate) fn errno_of(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => Some(msg.raw_code().abs()),
        _ => None,
    }
}
