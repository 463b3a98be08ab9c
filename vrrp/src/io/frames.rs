//! Prebuilt Ethernet frames on an AF_PACKET socket: gratuitous ARP and
//! unsolicited neighbour advertisements (built by `crate::wire`, sent here).

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{recv, sendto, MsgFlags};
use socket2::{Domain, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::error::IoError;
use super::sys;

/// Length of an Ethernet header (destination, source, ethertype).
pub const ETH_HEADER_LEN: usize = 14;
/// The largest frame accepted: a 1500-byte payload plus one VLAN tag.
pub const MAX_FRAME_LEN: usize = 1518;

fn raw_packet_socket() -> Result<Socket, IoError> {
    // Protocol 0: the socket receives nothing until bound with a protocol.
    Socket::new(Domain::PACKET, Type::RAW.nonblocking().cloexec(), None)
        .map_err(IoError::socket("AF_PACKET socket"))
}

/// A send-only AF_PACKET socket on one interface.
#[derive(Debug)]
pub struct FrameSocket {
    fd: AsyncFd<Socket>,
    ifindex: u32,
}

impl FrameSocket {
    /// Opens a socket sending on interface `ifindex`. Needs CAP_NET_RAW and a
    /// tokio runtime. Created in the calling thread's network namespace.
    pub fn open(ifindex: u32) -> Result<Self, IoError> {
        let socket = raw_packet_socket()?;
        let fd = sys::register(socket).map_err(IoError::socket("register"))?;
        Ok(FrameSocket { fd, ifindex })
    }

    /// The interface this socket sends on.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Sends one complete Ethernet frame (header included) as is.
    pub async fn send(&self, frame: &[u8]) -> Result<(), IoError> {
        if frame.len() < ETH_HEADER_LEN || frame.len() > MAX_FRAME_LEN {
            return Err(IoError::FrameSize { len: frame.len() });
        }
        let mut dst = [0u8; 6];
        dst.copy_from_slice(&frame[..6]);
        let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
        let addr =
            sys::link_addr(self.ifindex, ethertype, dst).map_err(IoError::socket("sockaddr_ll"))?;
        self.fd
            .async_io(Interest::WRITABLE, |s| {
                sendto(s.as_raw_fd(), frame, &addr, MsgFlags::empty()).map_err(io::Error::from)
            })
            .await
            .map_err(IoError::socket("send frame"))?;
        Ok(())
    }
}

/// An AF_PACKET socket receiving the frames of one ethertype (or all) seen on
/// one interface, in both directions. For tests and diagnostics.
#[derive(Debug)]
pub struct FrameReceiver {
    fd: AsyncFd<Socket>,
}

/// ETH_P_ALL: every ethertype.
pub const ETH_P_ALL: u16 = 0x0003;

impl FrameReceiver {
    /// Opens a receiver bound to interface `ifindex` for `ethertype`
    /// (host byte order, e.g. 0x0806 for ARP, [`ETH_P_ALL`] for all).
    pub fn open(ifindex: u32, ethertype: u16) -> Result<Self, IoError> {
        let socket = raw_packet_socket()?;
        let addr =
            sys::link_addr(ifindex, ethertype, [0; 6]).map_err(IoError::socket("sockaddr_ll"))?;
        nix::sys::socket::bind(socket.as_raw_fd(), &addr).map_err(|e| IoError::Socket {
            op: "bind AF_PACKET",
            source: e.into(),
        })?;
        let fd = sys::register(socket).map_err(IoError::socket("register"))?;
        Ok(FrameReceiver { fd })
    }

    /// Receives one frame into `buf`; returns its length (truncated to `buf`).
    pub async fn recv(&self, buf: &mut [u8]) -> Result<usize, IoError> {
        self.fd
            .async_io(Interest::READABLE, |s| {
                recv(s.as_raw_fd(), buf, MsgFlags::empty()).map_err(io::Error::from)
            })
            .await
            .map_err(IoError::socket("receive frame"))
    }
}

/// How many times and how far apart a set of gratuitous frames is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Burst {
    /// Rounds; each round sends every frame once. 0 sends nothing.
    pub repeat: u32,
    /// Time between the starts of consecutive rounds.
    pub interval: Duration,
}

/// The result of one burst.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BurstReport {
    /// Frames handed to the kernel.
    pub sent: u32,
    /// Frames the kernel refused (logged; the burst goes on).
    pub failed: u32,
}

/// Sends gratuitous ARP / unsolicited NA bursts on one interface.
#[derive(Debug)]
pub struct GratuitousSender {
    socket: FrameSocket,
}

impl GratuitousSender {
    /// A sender on interface `ifindex`.
    pub fn open(ifindex: u32) -> Result<Self, IoError> {
        Ok(GratuitousSender {
            socket: FrameSocket::open(ifindex)?,
        })
    }

    /// The socket in use.
    pub fn socket(&self) -> &FrameSocket {
        &self.socket
    }

    /// Sends every frame of `frames`, `burst.repeat` times, rounds starting
    /// `burst.interval` apart (anchored at the first round, so no drift).
    /// A refused frame is logged and counted; the burst continues.
    /// Cancel by dropping the future: no round starts after that.
    pub async fn burst<F: AsRef<[u8]>>(&self, frames: &[F], burst: Burst) -> BurstReport {
        let mut report = BurstReport::default();
        let start = Instant::now();
        for round in 0..burst.repeat {
            if round > 0 {
                tokio::time::sleep_until(start + burst.interval * round).await;
            }
            for frame in frames {
                match self.socket.send(frame.as_ref()).await {
                    Ok(()) => report.sent += 1,
                    Err(e) => {
                        report.failed += 1;
                        warn!(ifindex = self.socket.ifindex, error = %e, "gratuitous frame not sent");
                    }
                }
            }
        }
        debug!(
            ifindex = self.socket.ifindex,
            sent = report.sent,
            failed = report.failed,
            "burst done"
        );
        report
    }

    /// [`GratuitousSender::burst`] on a task of its own; cancel it with
    /// [`BurstHandle::cancel`] (e.g. when leaving master state).
    pub fn spawn_burst(self: &Arc<Self>, frames: Vec<Vec<u8>>, burst: Burst) -> BurstHandle {
        let sender = Arc::clone(self);
        BurstHandle {
            task: tokio::spawn(async move { sender.burst(&frames, burst).await }),
        }
    }
}

impl GratuitousSender {
    /// Periodic refresh while master (keepalived's `garp_master_refresh`):
    /// every `every`, one burst of `burst`; the first one `every` after the
    /// call (the initial burst on becoming master is [`GratuitousSender::burst`]).
    /// Runs until cancelled through the handle. `every` of zero is raised to 1 ms.
    pub fn spawn_refresh(
        self: &Arc<Self>,
        frames: Vec<Vec<u8>>,
        burst: Burst,
        every: Duration,
    ) -> BurstHandle {
        let sender = Arc::clone(self);
        let every = every.max(Duration::from_millis(1));
        BurstHandle {
            task: tokio::spawn(refresh_loop(sender, frames, burst, every)),
        }
    }
}

/// Never returns: bursts every `every` until its task is aborted.
async fn refresh_loop(
    sender: Arc<GratuitousSender>,
    frames: Vec<Vec<u8>>,
    burst: Burst,
    every: Duration,
) -> BurstReport {
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        sender.burst(&frames, burst).await;
    }
}

/// A burst running on its own task.
#[derive(Debug)]
pub struct BurstHandle {
    task: JoinHandle<BurstReport>,
}

impl BurstHandle {
    /// Stops the burst: no further frame is sent.
    pub fn cancel(&self) {
        self.task.abort();
    }

    /// True once the burst has finished or was cancelled.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits for the burst; `None` when it was cancelled.
    pub async fn wait(self) -> Option<BurstReport> {
        self.task.await.ok()
    }
}
