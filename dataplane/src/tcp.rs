//! TCP frontends: accept, pick a server (queue when full), connect with a
//! timeout and retry on another server when the connect fails, optionally
//! send a PROXY protocol header, then copy both ways with correct half-close.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use control::config::ProxyProtocol;
use metrics::Counter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::error::{ProxyError, ProxyErrorKind};
use crate::health::PassiveEvent;
use crate::proxy_protocol::{self, ProxyProtocolError};
use crate::runtime::{l4_key, BackendRt, FrontendHandle, FrontendRt, FrontendShared, Lease};
use crate::shutdown::{CancelWatch, Shutdown};

/// Accept loop of a `tcp` frontend on an already-bound listener, until
/// `shutdown` stops accepting. Connections go on until they end, their
/// server's drain deadline passes, or `shutdown` aborts.
pub async fn serve(listener: TcpListener, frontend: FrontendHandle, shutdown: Shutdown) {
    // Accepted without tokio: the socket is registered by the event loop that
    // serves it.
    let listener = match listener.into_std().and_then(crate::park::register_listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(frontend = %frontend.name(), error = %e, "cannot watch the listener; not serving");
            return;
        }
    };
    loop {
        let Some((fe, _)) = frontend.current() else {
            // The frontend vanished in a reload; its listener is being stopped.
            shutdown.stopping().await;
            break;
        };
        let permit = match &fe.limit {
            Some(sem) => tokio::select! {
                _ = shutdown.stopping() => break,
                p = Arc::clone(sem).acquire_owned() => p.ok(),
            },
            None => None,
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.stopping() => break,
            r = crate::http::accept(&listener) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(frontend = %frontend.name(), error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some((fe, be)) = frontend.current() else {
            continue;
        };
        let conn = ConnGuard::new(Arc::clone(&fe.shared));
        let sd = shutdown.clone();
        frontend.spawn_conn(stream, peer, move |stream| async move {
            let _permit = permit;
            let _conn = conn;
            if let Err(e) = handle(stream, peer, &fe, &be, &sd).await {
                tracing::debug!(frontend = %fe.cfg.name, client = %peer, error = %e, "tcp connection ended with error");
            }
        });
    }
    tracing::info!(frontend = %frontend.name(), "listener stopped");
}

/// Counts an open client connection of a frontend.
pub(crate) struct ConnGuard(Arc<FrontendShared>);

impl ConnGuard {
    pub(crate) fn new(s: Arc<FrontendShared>) -> Self {
        s.active.fetch_add(1, Ordering::Relaxed);
        s.connections.fetch_add(1, Ordering::Relaxed);
        s.metrics.active.increment(1.0);
        s.metrics.connections.increment(1);
        ConnGuard(s)
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
        self.0.metrics.active.decrement(1.0);
    }
}

/// Read a PROXY protocol header (v1 or v2) from the start of `stream`
/// without reading past it. Returns the original `(source, destination)`, or
/// `None` for `LOCAL` / `UNKNOWN`.
pub(crate) async fn read_proxy_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<Option<(SocketAddr, SocketAddr)>, ProxyError> {
    let read = async {
        // 15 bytes is the shortest header ("PROXY UNKNOWN\r\n").
        let mut buf = vec![0u8; 15];
        stream.read_exact(&mut buf).await?;
        loop {
            match proxy_protocol::parse(&buf) {
                Ok(Some((h, _))) => return Ok::<_, std::io::Error>(Ok(h.addresses)),
                Err(e) => return Ok(Err(e)),
                Ok(None) => {
                    let want = if buf.starts_with(&proxy_protocol::V2_SIGNATURE) && buf.len() >= 16
                    {
                        16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]))
                    } else {
                        buf.len() + 1
                    };
                    let at = buf.len();
                    buf.resize(want, 0);
                    stream.read_exact(&mut buf[at..]).await?;
                }
            }
        }
    };
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(ProxyError::new(ProxyErrorKind::ClientTimeout)),
        Ok(Err(e)) => Err(ProxyError::new(ProxyErrorKind::ClientIo(e.to_string()))),
        Ok(Ok(Err::<_, ProxyProtocolError>(e))) => {
            Err(ProxyError::new(ProxyErrorKind::ClientProxyProtocol(e)))
        }
        Ok(Ok(Ok(a))) => Ok(a),
    }
}

/// Connect to `addr` within `timeout`.
pub(crate) async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ProxyError> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => Err(ProxyError::new(ProxyErrorKind::ConnectTimeout)),
        Ok(Err(e)) => Err(ProxyError::new(ProxyErrorKind::ConnectFailed(
            e.to_string(),
        ))),
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}

/// Pick and connect, retrying on other servers when the connect fails (up
/// to `connect_retries` more servers).
pub(crate) async fn connect_with_retries(
    be: &BackendRt,
    key: Option<u64>,
    timeout: Duration,
) -> Result<(Lease, TcpStream), ProxyError> {
    let mut tried = Vec::new();
    loop {
        let (i, lease) = be.acquire(key, &tried).await?;
        lease.server.requests.fetch_add(1, Ordering::Relaxed);
        lease.server.metrics.requests.increment(1);
        match connect(lease.server.address, timeout).await {
            Ok(s) => return Ok((lease, s)),
            Err(e) => {
                tracing::debug!(backend = %be.cfg.name, server = %lease.server.name, error = %e, "connect failed");
                lease.server.record_error(&e);
                tried.push(i);
                if tried.len() > usize::from(be.cfg.connect_retries) {
                    return Err(e);
                }
                be.shared.metrics.retries.increment(1);
            }
        }
    }
}

async fn handle(
    mut client: TcpStream,
    peer: SocketAddr,
    fe: &FrontendRt,
    be: &BackendRt,
    shutdown: &Shutdown,
) -> Result<(), ProxyError> {
    let _ = client.set_nodelay(true);
    let local = client
        .local_addr()
        .map_err(|e| ProxyError::new(ProxyErrorKind::ClientIo(e.to_string())))?;
    let (mut src, mut dst) = (peer, local);
    if fe.cfg.accept_proxy_protocol {
        if let Some((s, d)) = read_proxy_header(&mut client, fe.cfg.timeouts.client_header).await? {
            (src, dst) = (s, d);
        }
    }
    let key = l4_key(&be.cfg, src);
    let (lease, mut server) = connect_with_retries(be, key, fe.cfg.timeouts.connect).await?;
    if let Some(version) = be.cfg.send_proxy_protocol {
        let header = match version {
            ProxyProtocol::V1 => proxy_protocol::encode_v1(src, dst),
            ProxyProtocol::V2 => {
                proxy_protocol::encode_v2(src, dst, proxy_protocol::Transport::Stream)
            }
        };
        server.write_all(&header).await.map_err(|e| {
            let err = ProxyError::new(ProxyErrorKind::ServerReset(e.to_string()));
            lease.server.record_error(&err);
            err
        })?;
    }
    let idle = fe.cfg.timeouts.client_idle.max(fe.cfg.timeouts.server);
    let result = splice(
        &mut client,
        &mut server,
        fe.cfg.buffer_size as usize,
        idle,
        &fe.shared,
        &lease,
        shutdown,
    )
    .await;
    match &result {
        Ok(()) => lease.server.passive(PassiveEvent::Success),
        Err(e) => lease.server.record_error(e),
    }
    result
}

/// Where a copy failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

struct Counters<'a> {
    frontend: &'a AtomicU64,
    server: &'a AtomicU64,
    fe_metric: &'a Counter,
    server_metric: &'a Counter,
}

async fn pump<R, W>(
    mut r: R,
    mut w: W,
    size: usize,
    read_side: Side,
    counters: Counters<'_>,
    activity: &AtomicU64,
    start: Instant,
) -> Result<(), (Side, std::io::Error)>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let write_side = match read_side {
        Side::Client => Side::Server,
        Side::Server => Side::Client,
    };
    let mut buf = vec![0u8; size.max(1024)];
    loop {
        let n = r.read(&mut buf).await.map_err(|e| (read_side, e))?;
        if n == 0 {
            // Half-close: pass the FIN on and keep the other direction open.
            let _ = w.shutdown().await;
            return Ok(());
        }
        w.write_all(&buf[..n]).await.map_err(|e| (write_side, e))?;
        let n64 = n as u64;
        counters.frontend.fetch_add(n64, Ordering::Relaxed);
        counters.server.fetch_add(n64, Ordering::Relaxed);
        counters.fe_metric.increment(n64);
        counters.server_metric.increment(n64);
        activity.store(millis_since(start), Ordering::Relaxed);
    }
}

fn millis_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Copy both ways until both sides closed, the connection idles for `idle`,
/// the server's drain deadline passes or the runtime aborts.
async fn splice(
    client: &mut TcpStream,
    server: &mut TcpStream,
    size: usize,
    idle: Duration,
    fs: &FrontendShared,
    lease: &Lease,
    shutdown: &Shutdown,
) -> Result<(), ProxyError> {
    let start = Instant::now();
    let activity = AtomicU64::new(0);
    let (cr, cw) = client.split();
    let (sr, sw) = server.split();
    let s = &lease.server;
    let up = pump(
        cr,
        sw,
        size,
        Side::Client,
        Counters {
            frontend: &fs.bytes_in,
            server: &s.bytes_in,
            fe_metric: &fs.metrics.bytes_in,
            server_metric: &s.metrics.bytes_in,
        },
        &activity,
        start,
    );
    let down = pump(
        sr,
        cw,
        size,
        Side::Server,
        Counters {
            frontend: &fs.bytes_out,
            server: &s.bytes_out,
            fe_metric: &fs.metrics.bytes_out,
            server_metric: &s.metrics.bytes_out,
        },
        &activity,
        start,
    );
    let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
    let watchdog = async {
        let tick = (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        loop {
            tokio::time::sleep(tick).await;
            let since = millis_since(start).saturating_sub(activity.load(Ordering::Relaxed));
            if since >= idle_ms {
                return;
            }
        }
    };
    // Watches rather than `cancelled()` futures: this select runs at every
    // wake-up of the connection, and a waiting `cancelled()` takes a lock
    // shared with every other connection each time it is polled.
    let mut drain = CancelWatch::new(lease.drain.clone());
    let mut abort = shutdown.watch_aborted();
    let cancelled = std::future::poll_fn(|cx| {
        if drain.poll_cancelled(cx).is_ready() || abort.poll_cancelled(cx).is_ready() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    });
    tokio::select! {
        r = async { tokio::try_join!(up, down) } => match r {
            Ok(_) => Ok(()),
            Err((Side::Server, e)) => Err(ProxyError::new(ProxyErrorKind::ServerReset(e.to_string()))),
            Err((Side::Client, e)) => Err(ProxyError::new(ProxyErrorKind::ClientIo(e.to_string()))),
        },
        _ = watchdog => Err(ProxyError::new(ProxyErrorKind::ClientTimeout)),
        _ = cancelled => Err(ProxyError::new(ProxyErrorKind::DrainTimeout)),
    }
}
