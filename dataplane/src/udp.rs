//! UDP frontends: one flow per client address, each with its own connected
//! socket to the chosen server; a flow is forgotten after `udp_idle` without
//! packets in either direction.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::error::{ProxyError, ProxyErrorKind};
use crate::health::PassiveEvent;
use crate::runtime::{l4_key, lock, FrontendHandle, Lease};
use crate::shutdown::Shutdown;
use crate::tcp::ConnGuard;

/// Largest datagram relayed.
const MAX_DATAGRAM: usize = 65_535;

struct Flow {
    upstream: Arc<UdpSocket>,
    lease: Arc<Lease>,
    last: AtomicU64,
    start: Instant,
}

impl Flow {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
    fn idle_for(&self) -> Duration {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(now.saturating_sub(self.last.load(Ordering::Relaxed)))
    }
}

type Flows = Arc<Mutex<HashMap<SocketAddr, Arc<Flow>>>>;

/// Serve a `udp` frontend on an already-bound socket until `shutdown` stops
/// accepting; flows then end at their idle timeout or at abort.
pub async fn serve(socket: UdpSocket, frontend: FrontendHandle, shutdown: Shutdown) {
    let socket = Arc::new(socket);
    let flows: Flows = Arc::new(Mutex::new(HashMap::new()));
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, peer) = tokio::select! {
            _ = shutdown.stopping() => break,
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(frontend = %frontend.name(), error = %e, "udp recv failed");
                    continue;
                }
            },
        };
        let existing = lock(&flows).get(&peer).cloned();
        let flow = match existing {
            Some(f) => f,
            None => match new_flow(&frontend, &socket, &flows, peer, &shutdown).await {
                Ok(f) => f,
                Err(e) => {
                    tracing::debug!(frontend = %frontend.name(), client = %peer, error = %e, "udp flow refused");
                    continue;
                }
            },
        };
        flow.touch();
        match flow.upstream.send(&buf[..n]).await {
            Ok(sent) => {
                if let Some((fe, _)) = frontend.current() {
                    fe.shared.bytes_in.fetch_add(sent as u64, Ordering::Relaxed);
                    fe.shared.metrics.bytes_in.increment(sent as u64);
                }
                flow.lease
                    .server
                    .bytes_in
                    .fetch_add(sent as u64, Ordering::Relaxed);
                flow.lease.server.metrics.bytes_in.increment(sent as u64);
            }
            Err(e) => {
                let err = ProxyError::new(ProxyErrorKind::ServerReset(e.to_string()));
                flow.lease.server.record_error(&err);
            }
        }
    }
    tracing::info!(frontend = %frontend.name(), "udp listener stopped");
}

async fn new_flow(
    frontend: &FrontendHandle,
    socket: &Arc<UdpSocket>,
    flows: &Flows,
    peer: SocketAddr,
    shutdown: &Shutdown,
) -> Result<Arc<Flow>, ProxyError> {
    let Some((fe, be)) = frontend.current() else {
        return Err(ProxyError::new(ProxyErrorKind::Unconfigured));
    };
    let permit = match &fe.limit {
        Some(sem) => Some(
            Arc::clone(sem)
                .try_acquire_owned()
                .map_err(|_| ProxyError::new(ProxyErrorKind::QueueFull))?,
        ),
        None => None,
    };
    let (_, lease) = be.acquire(l4_key(&be.cfg, peer), &[]).await?;
    lease.server.requests.fetch_add(1, Ordering::Relaxed);
    lease.server.metrics.requests.increment(1);
    let server = lease.server.address;
    let any = match server.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let io = |e: std::io::Error| ProxyError::new(ProxyErrorKind::ConnectFailed(e.to_string()));
    let upstream = UdpSocket::bind(SocketAddr::new(any, 0)).await.map_err(io)?;
    upstream.connect(server).await.map_err(io)?;
    let flow = Arc::new(Flow {
        upstream: Arc::new(upstream),
        lease: Arc::new(lease),
        last: AtomicU64::new(0),
        start: Instant::now(),
    });
    lock(flows).insert(peer, Arc::clone(&flow));
    let conn = ConnGuard::new(Arc::clone(&fe.shared));
    let idle = fe.cfg.timeouts.udp_idle;
    let (socket, flows, flow2, sd) = (
        Arc::clone(socket),
        Arc::clone(flows),
        Arc::clone(&flow),
        shutdown.clone(),
    );
    frontend.inner.tracker.spawn(async move {
        let _permit = permit;
        let _conn = conn;
        relay_back(&socket, &flow2, peer, idle, &fe.shared, &sd).await;
        let mut map = lock(&flows);
        if map.get(&peer).is_some_and(|f| Arc::ptr_eq(f, &flow2)) {
            map.remove(&peer);
        }
    });
    Ok(flow)
}

async fn relay_back(
    socket: &UdpSocket,
    flow: &Flow,
    peer: SocketAddr,
    idle: Duration,
    fs: &crate::runtime::FrontendShared,
    shutdown: &Shutdown,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let server = &flow.lease.server;
    loop {
        let wait = idle
            .saturating_sub(flow.idle_for())
            .max(Duration::from_millis(1));
        tokio::select! {
            _ = shutdown.aborted() => return,
            _ = flow.lease.drain.cancelled() => return,
            r = tokio::time::timeout(wait, flow.upstream.recv(&mut buf)) => match r {
                Err(_) => {
                    if flow.idle_for() >= idle {
                        server.passive(PassiveEvent::Success);
                        return;
                    }
                }
                Ok(Err(e)) => {
                    // ICMP port unreachable shows up here on a connected socket.
                    let err = ProxyError::new(ProxyErrorKind::ConnectFailed(e.to_string()));
                    server.record_error(&err);
                    return;
                }
                Ok(Ok(n)) => {
                    flow.touch();
                    if socket.send_to(&buf[..n], peer).await.is_ok() {
                        fs.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                        fs.metrics.bytes_out.increment(n as u64);
                        server.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                        server.metrics.bytes_out.increment(n as u64);
                    }
                }
            }
        }
    }
}
