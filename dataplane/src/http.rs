//! HTTP frontends: HTTP/1.1 (with Upgrade passthrough, e.g. WebSocket) and
//! cleartext HTTP/2 with prior knowledge, served by hyper 1.x; requests go to
//! servers over HTTP/1.1 on pooled keep-alive connections ([`UpstreamClient`]).
//!
//! Client-side protections: the request head must arrive within
//! `client_header` (slowloris; hyper also applies it to an idle keep-alive
//! connection waiting for its next request), heads larger than `max_header_size` get 431,
//! malformed requests 400 (both answered by hyper's HTTP/1 parser).
//! Server-side: connect failures of idempotent requests without a body are
//! retried on another server; no server up gives 503 with a short body; a
//! server failing before a complete response head gives 502 and counts
//! against it; no answer within `server` gives 504.
//!
//! The per-request path avoids what does not scale with request rate: no
//! header map is cloned, no body is boxed, the request goes out in origin
//! form without re-parsing a URI, the connection pool is one small lock per
//! checkout and check-in, and timers and cancellation waiters are only armed
//! when a response body actually has to wait.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use control::config::{ForwardedHeaders, FrontendConfig, HashKey};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::error::{ProxyError, ProxyErrorKind};
use crate::health::PassiveEvent;
use crate::runtime::{
    lock, BackendRt, FrontendHandle, FrontendRt, FrontendShared, Lease, ServerShared,
};
use crate::shutdown::Shutdown;
use crate::tcp::ConnGuard;

/// Boxed error of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The head-like first part of the HTTP/2 connection preface (RFC 9113
/// section 3.4), which the HTTP/1 fast path passes on to hyper.
const H2_PREFACE_HEAD: &[u8] = b"PRI * HTTP/2.0\r\n\r\n";
/// hyper refuses an HTTP/1 read buffer smaller than this; the buffer is
/// twice the header limit so the limit, not the buffer, decides the 431.
const MIN_H1_BUF: usize = 8192;
/// Idle keep-alive connections kept per server address.
const MAX_IDLE_PER_SERVER: usize = 1024;
/// Longest wait for a server connection to become reusable after a
/// response without a body, before it is given up.
const REUSE_WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// Connection pool to servers

/// Pooled keep-alive HTTP/1.1 connections of one frontend to its servers,
/// per server address. Idle connections older than the frontend's idle
/// timeout (at most 90 s) are dropped at checkout and by a reaper task.
///
/// The pool has one share per event loop (and one for tasks on no loop):
/// a connection is only reused by tasks of the loop whose reactor it is
/// registered with, so its events never cross threads.
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    pool: Arc<Pool>,
}

struct IdleConn {
    tx: SendRequest<UpBody>,
    since: Instant,
}

/// One event loop's share of a [`Pool`].
#[derive(Default)]
struct Share {
    idle: Mutex<HashMap<SocketAddr, Vec<IdleConn>>>,
    /// Plain keep-alive connections of the HTTP/1.1 fast path
    /// ([`crate::h1`]), with the time they went idle.
    raw: Mutex<HashMap<SocketAddr, Vec<(TcpStream, Instant)>>>,
}

struct Pool {
    shares: Box<[Share]>,
    connect_timeout: Duration,
    idle_timeout: Duration,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut idle = 0;
        let mut raw = 0;
        for s in self.shares.iter() {
            idle += lock(&s.idle).values().map(Vec::len).sum::<usize>();
            raw += lock(&s.raw).values().map(Vec::len).sum::<usize>();
        }
        f.debug_struct("Pool")
            .field("shares", &self.shares.len())
            .field("idle", &idle)
            .field("raw", &raw)
            .field("connect_timeout", &self.connect_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

impl Pool {
    /// The share of the event loop running this thread (the last share
    /// off the loops).
    fn share(&self) -> &Share {
        let n = self.shares.len();
        let i = crate::loops::current().map_or(n - 1, |w| w % n);
        &self.shares[i]
    }

    fn reap(&self, now: Instant) {
        for share in self.shares.iter() {
            let mut idle = lock(&share.idle);
            idle.retain(|_, list| {
                list.retain(|c| {
                    !c.tx.is_closed() && now.saturating_duration_since(c.since) < self.idle_timeout
                });
                !list.is_empty()
            });
            drop(idle);
            let mut raw = lock(&share.raw);
            raw.retain(|_, list| {
                list.retain(|(_, since)| now.saturating_duration_since(*since) < self.idle_timeout);
                !list.is_empty()
            });
        }
    }
}

/// Why a request did not get a response head from a server; carries the
/// request back when it was never sent, so it can go to another server.
struct SendFail {
    error: ProxyError,
    request: Option<Request<UpBody>>,
}

/// A server connection lent out for one request: checked back in when the
/// response has been read to the end.
struct Checkout {
    client: UpstreamClient,
    addr: SocketAddr,
    tx: SendRequest<UpBody>,
    /// When the request started: the idle age of the connection counts
    /// from about then (saves a clock read per request).
    at: Instant,
}

impl UpstreamClient {
    /// A pool with `shares` shares (at least one).
    pub(crate) fn new(fe: &FrontendConfig, shares: usize) -> Self {
        let pool = Arc::new(Pool {
            shares: (0..shares.max(1)).map(|_| Share::default()).collect(),
            connect_timeout: fe.timeouts.connect,
            idle_timeout: fe.timeouts.client_idle.min(Duration::from_secs(90)),
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let weak: Weak<Pool> = Arc::downgrade(&pool);
            let every = (pool.idle_timeout / 2).max(Duration::from_secs(1));
            rt.spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let Some(pool) = weak.upgrade() else {
                        break;
                    };
                    pool.reap(Instant::now());
                }
            });
        }
        UpstreamClient { pool }
    }

    /// The frontend's connect timeout.
    pub(crate) fn connect_timeout(&self) -> Duration {
        self.pool.connect_timeout
    }

    /// A plain idle connection to `addr` for the fast path, if any. One the
    /// server has closed shows as readable (end of stream) and is dropped;
    /// no system call is made for a connection with nothing pending.
    pub(crate) fn raw_checkout(&self, addr: SocketAddr, now: Instant) -> Option<TcpStream> {
        let mut raw = lock(&self.pool.share().raw);
        let list = raw.get_mut(&addr)?;
        while let Some((s, since)) = list.pop() {
            if now.saturating_duration_since(since) >= self.pool.idle_timeout {
                continue;
            }
            let mut probe = [0u8; 1];
            match s.try_read(&mut probe) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Some(s),
                // Closed, failed, or sent something unasked: not reusable.
                _ => continue,
            }
        }
        None
    }

    /// Return a fast-path connection whose last response was read exactly.
    pub(crate) fn raw_checkin(&self, addr: SocketAddr, s: TcpStream, now: Instant) {
        let mut raw = lock(&self.pool.share().raw);
        let list = raw.entry(addr).or_default();
        if list.len() >= MAX_IDLE_PER_SERVER {
            list.remove(0);
        }
        list.push((s, now));
    }

    /// An idle, reusable connection to `addr`, if any (most recent first).
    fn checkout(&self, addr: SocketAddr, now: Instant) -> Option<SendRequest<UpBody>> {
        let mut idle = lock(&self.pool.share().idle);
        let list = idle.get_mut(&addr)?;
        while let Some(c) = list.pop() {
            if c.tx.is_ready() && now.saturating_duration_since(c.since) < self.pool.idle_timeout {
                return Some(c.tx);
            }
            // Closed by the server, or idle too long: dropping closes it.
        }
        None
    }

    /// Return a connection whose last response was read to the end.
    fn checkin(&self, addr: SocketAddr, tx: SendRequest<UpBody>, since: Instant) {
        if !tx.is_ready() {
            return;
        }
        let mut idle = lock(&self.pool.share().idle);
        let list = idle.entry(addr).or_default();
        if list.len() >= MAX_IDLE_PER_SERVER {
            // The oldest goes.
            list.remove(0);
        }
        list.push(IdleConn { tx, since });
    }

    async fn connect(&self, addr: SocketAddr) -> Result<SendRequest<UpBody>, ProxyError> {
        let stream = crate::tcp::connect(addr, self.pool.connect_timeout).await?;
        let (tx, conn) = hyper::client::conn::http1::Builder::new()
            .handshake::<_, UpBody>(TokioIo::new(stream))
            .await
            .map_err(|e| ProxyError::new(ProxyErrorKind::ConnectFailed(e.to_string())))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(server = %addr, error = %e, "server connection ended with an error");
            }
        });
        Ok(tx)
    }

    /// Send `req` to `addr` on an idle pooled connection, or a new one. A
    /// pooled connection that turns out to be closed before the request
    /// was written is replaced by a new connection transparently.
    async fn send(
        &self,
        addr: SocketAddr,
        req: Request<UpBody>,
        at: Instant,
    ) -> Result<(Response<Incoming>, Checkout), SendFail> {
        let mut req = req;
        let mut pooled = self.checkout(addr, at);
        loop {
            let reused = pooled.is_some();
            let mut tx = match pooled.take() {
                Some(tx) => tx,
                // Boxed: the connect state stays out of every request's
                // future, which hyper moves around.
                None => match Box::pin(self.connect(addr)).await {
                    Ok(tx) => tx,
                    Err(error) => {
                        return Err(SendFail {
                            error,
                            request: Some(req),
                        })
                    }
                },
            };
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    return Ok((
                        resp,
                        Checkout {
                            client: self.clone(),
                            addr,
                            tx,
                            at,
                        },
                    ))
                }
                Err(mut e) => {
                    let unsent = e.take_message();
                    let err = e.into_error();
                    match unsent {
                        // The server closed an idle connection just now:
                        // nothing was sent, try a fresh one.
                        Some(r) if reused => {
                            tracing::debug!(server = %addr, error = %err, "pooled connection was closed; reconnecting");
                            req = r;
                        }
                        request => {
                            return Err(SendFail {
                                error: ProxyError::new(ProxyErrorKind::ServerReset(
                                    err.to_string(),
                                )),
                                request,
                            })
                        }
                    }
                }
            }
        }
    }
}

impl Checkout {
    /// The response was read to the end: give the connection back once
    /// hyper has finished with it. `Pending` while it finishes.
    fn poll_release(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        match self.tx.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(true),
            Poll::Ready(Err(_)) => Poll::Ready(false),
            Poll::Pending => Poll::Pending,
        }
    }

    fn release(self) {
        self.client.checkin(self.addr, self.tx, self.at);
    }

    /// Give the connection back when it becomes ready (responses whose
    /// body was never polled: HEAD, 204, 304, empty bodies).
    fn release_when_ready(mut self) {
        if self.tx.is_ready() {
            self.release();
            return;
        }
        if self.tx.is_closed() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Ok(Ok(())) = tokio::time::timeout(REUSE_WAIT, self.tx.ready()).await {
                    self.release();
                }
            });
        }
    }
}

// ---------------------------------------------------------------------------
// Bodies

/// Body of a request sent to a server: nothing, or the client's body,
/// counted on its way.
pub struct UpBody {
    inner: Option<Incoming>,
    fs: Option<Arc<FrontendShared>>,
    server: Option<Arc<ServerShared>>,
}

impl UpBody {
    fn empty() -> Self {
        UpBody {
            inner: None,
            fs: None,
            server: None,
        }
    }
}

impl Body for UpBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let r = Pin::new(inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r {
            if let Some(d) = f.data_ref() {
                let n = d.len() as u64;
                if let Some(fs) = &this.fs {
                    fs.bytes_in.fetch_add(n, Ordering::Relaxed);
                    fs.metrics.bytes_in.increment(n);
                }
                if let Some(s) = &this.server {
                    s.bytes_in.fetch_add(n, Ordering::Relaxed);
                    s.metrics.bytes_in.increment(n);
                }
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(b) => b.size_hint(),
            None => SizeHint::with_exact(0),
        }
    }
}

/// Body of responses sent to clients: a short text made by halb, a
/// server's body, or nothing.
pub struct RespBody {
    kind: RespKind,
}

enum RespKind {
    Full(Option<Bytes>),
    Upstream(UpstreamBody),
}

impl RespBody {
    fn full(b: Bytes) -> Self {
        RespBody {
            kind: RespKind::Full(Some(b)),
        }
    }

    fn empty() -> Self {
        RespBody {
            kind: RespKind::Full(None),
        }
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().kind {
            RespKind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            RespKind::Upstream(u) => Pin::new(u).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            RespKind::Full(b) => b.is_none(),
            RespKind::Upstream(u) => u.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            RespKind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            RespKind::Upstream(u) => u.size_hint(),
        }
    }
}

/// Accept loop of an `http` frontend on an already-bound listener.
pub async fn serve(listener: TcpListener, frontend: FrontendHandle, shutdown: Shutdown) {
    // Idle connections of this listener wait in its parker, outside
    // tokio; it closes them when the listener ends.
    let parker = match crate::park::Parker::new(frontend.name()) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(frontend = %frontend.name(), error = %e, "cannot create the idle-connection parker; idle connections stay in their tasks");
            None
        }
    };
    let done = tokio_util::sync::CancellationToken::new();
    let _done = done.clone().drop_guard();
    if let Some(p) = &parker {
        frontend
            .inner
            .tracker
            .spawn(Arc::clone(p).run(frontend.clone(), shutdown.clone(), done));
    }
    // Accepted without tokio: a connection with nothing to read yet goes
    // straight to the parker, without a task or a reactor entry.
    let listener = match listener.into_std().and_then(crate::park::register_listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(frontend = %frontend.name(), error = %e, "cannot watch the listener; not serving");
            return;
        }
    };
    loop {
        let Some((fe, _)) = frontend.current() else {
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
            r = accept(&listener) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(frontend = %frontend.name(), error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let open = (ConnGuard::new(Arc::clone(&fe.shared)), permit);
        // The request is usually there already; if not, park (unless a
        // PROXY header is expected: the task reads that first).
        let (stream, inbuf, open) = match &parker {
            Some(p) if !fe.cfg.accept_proxy_protocol => match first_bytes(&stream) {
                First::Data(buf) => (stream, buf, open),
                First::Closed => continue,
                First::Nothing => {
                    let conn = crate::park::ParkedConn {
                        stream,
                        proxied: None,
                        last_active: tokio::time::Instant::now(),
                        first: true,
                        open,
                    };
                    match p.park(conn, fe.cfg.timeouts.client_header) {
                        Ok(()) => continue,
                        // Refused (the parker is stopping): a task takes it.
                        Err(c) => (c.stream, Vec::new(), c.open),
                    }
                }
            },
            _ => (stream, Vec::new(), open),
        };
        let (handle, stop, parker) = (frontend.clone(), shutdown.clone(), parker.clone());
        frontend.spawn_conn(stream, peer, move |stream| {
            crate::h1::serve_conn(stream, peer, inbuf, handle, fe, stop, open, parker)
        });
    }
    tracing::info!(frontend = %frontend.name(), "listener stopped");
}

/// Accept one connection, non-blocking and close-on-exec, without
/// registering it with tokio.
pub(crate) async fn accept(
    listener: &tokio::io::unix::AsyncFd<std::net::TcpListener>,
) -> std::io::Result<(std::net::TcpStream, SocketAddr)> {
    loop {
        let mut guard = listener.readable().await?;
        let r = guard.try_io(|l| {
            socket2::SockRef::from(l.get_ref())
                .accept4(nix::libc::SOCK_NONBLOCK | nix::libc::SOCK_CLOEXEC)
        });
        match r {
            Ok(Ok((sock, addr))) => {
                let peer = addr
                    .as_socket()
                    .ok_or_else(|| std::io::Error::other("accepted a non-IP socket"))?;
                return Ok((sock.into(), peer));
            }
            Ok(Err(e)) => return Err(e),
            // Would block: readiness cleared, wait again.
            Err(_) => continue,
        }
    }
}

/// What a just-accepted connection has sent.
enum First {
    Data(Vec<u8>),
    Nothing,
    Closed,
}

fn first_bytes(stream: &std::net::TcpStream) -> First {
    use std::io::Read;
    let mut buf = vec![0u8; crate::h1::READ_CHUNK];
    match (&*stream).read(&mut buf) {
        Ok(0) => First::Closed,
        Ok(n) => {
            buf.truncate(n);
            First::Data(buf)
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => First::Nothing,
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => First::Nothing,
        Err(_) => First::Closed,
    }
}

/// Serve a client connection with hyper: HTTP/2 (prior knowledge) when
/// the bytes read so far start with the HTTP/2 preface, HTTP/1 otherwise.
pub(crate) fn serve_hyper(
    rest: crate::h1::Prefixed,
    client: SocketAddr,
    handle: FrontendHandle,
    fe: Arc<FrontendRt>,
    shutdown: Shutdown,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    let h2 = rest.starts_with(H2_PREFACE_HEAD);
    serve_protocol(rest, client, handle, fe, shutdown, h2)
}

fn serve_protocol<I>(
    stream: I,
    client: SocketAddr,
    handle: FrontendHandle,
    fe: Arc<FrontendRt>,
    shutdown: Shutdown,
    h2: bool,
) -> Pin<Box<dyn Future<Output = ()> + Send>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    Box::pin(async move {
        let ctx = Arc::new(Ctx {
            handle,
            client,
            client_ip: HeaderValue::from_str(&client.ip().to_canonical().to_string()).ok(),
            shutdown: shutdown.clone(),
            h2,
        });
        let svc = hyper::service::service_fn(move |req| {
            let ctx = Arc::clone(&ctx);
            async move { Ok::<_, Infallible>(ctx.handle(req).await) }
        });
        let io = TokioIo::new(stream);
        let max_header = fe.cfg.max_header_size as usize;
        if h2 {
            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .max_header_list_size(fe.cfg.max_header_size)
                .serve_connection(io, svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = shutdown.stopping() => conn.as_mut().graceful_shutdown(),
            }
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.aborted() => {}
            }
        } else {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(fe.cfg.timeouts.client_header)
                .max_header_size(max_header)
                .max_buf_size(max_header.max(MIN_H1_BUF).saturating_mul(2))
                .keep_alive(true)
                .serve_connection(io, svc)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = shutdown.stopping() => conn.as_mut().graceful_shutdown(),
            }
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.aborted() => {}
            }
        }
    })
}

struct Ctx {
    handle: FrontendHandle,
    client: SocketAddr,
    /// The client's address as a header value, made once per connection.
    client_ip: Option<HeaderValue>,
    shutdown: Shutdown,
    /// HTTP/2: hyper runs each stream as its own task, which closing the
    /// connection does not stop, so requests watch the abort signal
    /// themselves. HTTP/1 requests end with their connection.
    h2: bool,
}

/// A short plain-text answer generated by halb.
pub(crate) fn simple(status: StatusCode, msg: &'static str) -> Response<RespBody> {
    let mut r = Response::new(RespBody::full(Bytes::from_static(msg.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn error_response(e: &ProxyError) -> Response<RespBody> {
    match e.kind {
        ProxyErrorKind::NoServer | ProxyErrorKind::Unconfigured => {
            simple(StatusCode::SERVICE_UNAVAILABLE, "503 no server available\n")
        }
        ProxyErrorKind::QueueFull | ProxyErrorKind::QueueTimeout => {
            simple(StatusCode::SERVICE_UNAVAILABLE, "503 all servers busy\n")
        }
        ProxyErrorKind::ServerTimeout | ProxyErrorKind::ConnectTimeout => {
            simple(StatusCode::GATEWAY_TIMEOUT, "504 server timeout\n")
        }
        _ => simple(StatusCode::BAD_GATEWAY, "502 bad gateway\n"),
    }
}

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.iter().any(|h| h == name)
}

fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most messages carry at most `Connection: keep-alive`: look before
    // touching the map.
    if !headers.keys().any(is_hop_by_hop) {
        if keep_upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| !is_hop_by_hop(n))
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        if keep_upgrade && (name == header::CONNECTION || name == header::UPGRADE) {
            continue;
        }
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then_some(v.as_bytes())
        })
}

fn request_key(be: &BackendRt, client: SocketAddr, headers: &HeaderMap) -> Option<u64> {
    if be.cfg.algorithm != control::config::Algorithm::Maglev {
        return None;
    }
    let by_bytes = |b: Option<&[u8]>| b.map(crate::maglev::hash_key);
    let h = match &be.cfg.hash_key {
        HashKey::SourceIp => None,
        HashKey::SourceIpPort => Some(crate::maglev::hash_flow(client.ip(), Some(client.port()))),
        HashKey::Header(name) => by_bytes(headers.get(name.as_str()).map(|v| v.as_bytes())),
        HashKey::Cookie(name) => by_bytes(cookie(headers, name)),
    };
    Some(h.unwrap_or_else(|| crate::maglev::hash_flow(client.ip(), None)))
}

/// The request target in origin form (`/path?query`), as HTTP/1.1 servers
/// expect it; an origin-form URI is reused as it is.
fn origin_form(uri: Uri) -> Uri {
    if uri.scheme().is_none() && uri.authority().is_none() {
        return uri;
    }
    let pq = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::from(pq)
}

fn add_forwarded(
    headers: &mut HeaderMap,
    mode: ForwardedHeaders,
    client: SocketAddr,
    client_ip: Option<&HeaderValue>,
    host: Option<&HeaderValue>,
) {
    let ip = client.ip().to_canonical();
    if matches!(mode, ForwardedHeaders::XForwarded | ForwardedHeaders::Both) {
        let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prev) => HeaderValue::from_str(&format!("{prev}, {ip}")).ok(),
            None => client_ip.cloned(),
        };
        if let Some(v) = xff {
            headers.insert(HeaderName::from_static("x-forwarded-for"), v);
        }
        headers.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static("http"),
        );
        if let Some(h) = host {
            headers.insert(HeaderName::from_static("x-forwarded-host"), h.clone());
        }
    }
    if matches!(mode, ForwardedHeaders::Forwarded | ForwardedHeaders::Both) {
        let node = if ip.is_ipv6() {
            format!("\"[{ip}]\"")
        } else {
            ip.to_string()
        };
        let mut elem = format!("for={node};proto=http");
        if let Some(h) = host.and_then(|h| h.to_str().ok()) {
            if !h.contains('"') {
                elem.push_str(&format!(";host=\"{h}\""));
            }
        }
        let value = match headers.get(header::FORWARDED).and_then(|v| v.to_str().ok()) {
            Some(prev) => format!("{prev}, {elem}"),
            None => elem,
        };
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(header::FORWARDED, v);
        }
    }
}

impl Ctx {
    async fn handle(&self, req: Request<Incoming>) -> Response<RespBody> {
        let Some((fe, be)) = self.handle.current() else {
            return simple(StatusCode::SERVICE_UNAVAILABLE, "503 no server available\n");
        };
        let start = Instant::now();
        fe.shared.requests.fetch_add(1, Ordering::Relaxed);
        fe.shared.metrics.requests.increment(1);
        // Boxed: hyper keeps and moves the service future; a small one is
        // cheap to move and to keep per idle connection.
        let forward = Box::pin(self.forward(req, &fe, &be, start));
        let resp = forward.await;
        fe.shared.count_response(resp.status().as_u16());
        fe.shared
            .metrics
            .duration
            .record(start.elapsed().as_secs_f64());
        resp
    }

    /// Send to a server, racing the server timeout, the server's drain
    /// deadline and (HTTP/2) the runtime's abort.
    async fn send(
        &self,
        client: &UpstreamClient,
        addr: SocketAddr,
        req: Request<UpBody>,
        start: Instant,
        server_timeout: Duration,
        lease: &Lease,
    ) -> Option<Result<Result<(Response<Incoming>, Checkout), SendFail>, tokio::time::error::Elapsed>>
    {
        let sent = tokio::time::timeout_at(start + server_timeout, client.send(addr, req, start));
        if self.h2 {
            tokio::select! {
                r = sent => Some(r),
                _ = lease.drain.cancelled() => None,
                _ = self.shutdown.aborted() => None,
            }
        } else {
            tokio::select! {
                r = sent => Some(r),
                _ = lease.drain.cancelled() => None,
            }
        }
    }

    async fn forward(
        &self,
        mut req: Request<Incoming>,
        fe: &Arc<FrontendRt>,
        be: &Arc<BackendRt>,
        start: Instant,
    ) -> Response<RespBody> {
        let Some(client) = fe.client.as_ref() else {
            return simple(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 frontend is not http\n",
            );
        };
        let upgrade = is_upgrade(&req);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (parts, req_body) = req.into_parts();
        let key = request_key(be, self.client, &parts.headers);

        // The request head sent to servers: built once, moved into the
        // request, and handed back by the pool if it was never sent.
        let mut headers = parts.headers;
        let host = match headers.get(header::HOST) {
            Some(h) => Some(h.clone()),
            None => parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
        };
        strip_hop_by_hop(&mut headers, upgrade);
        if !headers.contains_key(header::HOST) {
            if let Some(v) = &host {
                headers.insert(header::HOST, v.clone());
            }
        }
        add_forwarded(
            &mut headers,
            fe.cfg.forwarded_headers,
            self.client,
            self.client_ip.as_ref(),
            host.as_ref(),
        );

        let body_empty = req_body.is_end_stream();
        let retryable = is_idempotent(&parts.method) && body_empty;
        let up_body = if body_empty {
            UpBody::empty()
        } else {
            UpBody {
                inner: Some(req_body),
                fs: Some(Arc::clone(&fe.shared)),
                server: None,
            }
        };
        let mut up = Request::new(up_body);
        *up.method_mut() = parts.method;
        *up.uri_mut() = origin_form(parts.uri);
        *up.version_mut() = Version::HTTP_11;
        *up.headers_mut() = headers;
        let mut pending = Some(up);

        let mut tried = Vec::new();
        loop {
            let Some(mut up) = pending.take() else {
                return simple(StatusCode::INTERNAL_SERVER_ERROR, "500 request lost\n");
            };
            let (i, lease) = match be.acquire(key, &tried).await {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(frontend = %fe.cfg.name, backend = %be.cfg.name, error = %e, "no server");
                    return error_response(&e);
                }
            };
            let server = Arc::clone(&lease.server);
            server.requests.fetch_add(1, Ordering::Relaxed);
            server.metrics.requests.increment(1);
            if !up.headers().contains_key(header::HOST) {
                // A client that named no host at all: name the server.
                if let Ok(v) = HeaderValue::from_str(&server.address.to_string()) {
                    up.headers_mut().insert(header::HOST, v);
                }
            }
            up.body_mut().server = Some(Arc::clone(&server));

            let sent = self
                .send(
                    client,
                    server.address,
                    up,
                    start,
                    fe.cfg.timeouts.server,
                    &lease,
                )
                .await;
            let (resp, checkout) = match sent {
                None => return error_response(&ProxyError::new(ProxyErrorKind::DrainTimeout)),
                Some(Err(_)) => {
                    let e = ProxyError::new(ProxyErrorKind::ServerTimeout);
                    server.record_error(&e);
                    return error_response(&e);
                }
                Some(Ok(Err(SendFail { error, request }))) => {
                    tracing::debug!(backend = %be.cfg.name, server = %server.name, error = %error, "request to server failed");
                    server.record_error(&error);
                    tried.push(i);
                    if error.retry
                        && retryable
                        && tried.len() <= usize::from(be.cfg.connect_retries)
                    {
                        if let Some(r) = request {
                            be.shared.metrics.retries.increment(1);
                            pending = Some(r);
                            continue;
                        }
                    }
                    return error_response(&error);
                }
                Some(Ok(Ok(x))) => x,
            };
            let status = resp.status();
            let class = crate::metrics::class_index(status.as_u16());
            server.metrics.responses[class].increment(1);
            if status.is_server_error() {
                server.passive(PassiveEvent::ServerError);
            } else {
                server.passive(PassiveEvent::Success);
            }
            if status == StatusCode::SWITCHING_PROTOCOLS {
                return self.finish_upgrade(resp, client_upgrade, lease, fe);
            }
            let (mut parts, incoming) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers, false);
            let body = UpstreamBody::new(
                incoming,
                lease,
                checkout,
                fe.cfg.timeouts.server,
                Arc::clone(&fe.shared),
            );
            return Response::from_parts(
                parts,
                RespBody {
                    kind: RespKind::Upstream(body),
                },
            );
        }
    }

    fn finish_upgrade(
        &self,
        mut resp: Response<Incoming>,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
        lease: Lease,
        fe: &Arc<FrontendRt>,
    ) -> Response<RespBody> {
        let Some(client_upgrade) = client_upgrade else {
            // 101 to a request that did not ask to upgrade.
            let e = ProxyError::new(ProxyErrorKind::ServerProtocol("unsolicited 101".into()));
            lease.server.record_error(&e);
            return error_response(&e);
        };
        let server_upgrade = hyper::upgrade::on(&mut resp);
        let shutdown = self.shutdown.clone();
        let fs = Arc::clone(&fe.shared);
        self.handle.inner.tracker.spawn(async move {
            let (c, s) = tokio::join!(client_upgrade, server_upgrade);
            let (Ok(c), Ok(s)) = (c, s) else {
                tracing::debug!("upgrade failed on one side");
                return;
            };
            let mut c = TokioIo::new(c);
            let mut s = TokioIo::new(s);
            tokio::select! {
                r = tokio::io::copy_bidirectional(&mut c, &mut s) => {
                    if let Ok((up, down)) = r {
                        fs.bytes_in.fetch_add(up, Ordering::Relaxed);
                        fs.bytes_out.fetch_add(down, Ordering::Relaxed);
                        lease.server.bytes_in.fetch_add(up, Ordering::Relaxed);
                        lease.server.bytes_out.fetch_add(down, Ordering::Relaxed);
                    }
                }
                _ = lease.drain.cancelled() => {}
                _ = shutdown.aborted() => {}
            }
        });
        let (parts, _) = resp.into_parts();
        Response::from_parts(parts, RespBody::empty())
    }
}

/// A server's response body on its way to the client: counts bytes, holds
/// the server lease until the end, fails on server idle timeout or when the
/// server's drain deadline passes, counts a mid-body failure against the
/// server, and gives the server connection back to the pool once read to
/// the end.
///
/// The idle timer and the drain waiter are only armed when the body has to
/// wait for the server; data arriving only records the time, and the timer
/// catches up when it fires (no timer re-arm per frame).
pub struct UpstreamBody {
    inner: Incoming,
    lease: Option<Lease>,
    checkout: Option<Checkout>,
    /// The body ended; the connection is being handed back.
    finishing: bool,
    drain: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    /// Armed the first time the body waits; from then on each frame
    /// records its arrival time in `last_data`.
    idle: Option<Pin<Box<Sleep>>>,
    last_data: Option<Instant>,
    idle_for: Duration,
    fs: Arc<FrontendShared>,
}

impl UpstreamBody {
    fn new(
        inner: Incoming,
        lease: Lease,
        checkout: Checkout,
        idle_for: Duration,
        fs: Arc<FrontendShared>,
    ) -> Self {
        UpstreamBody {
            inner,
            lease: Some(lease),
            checkout: Some(checkout),
            finishing: false,
            drain: None,
            idle: None,
            last_data: None,
            idle_for,
            fs,
        }
    }

    fn fail(&mut self, e: ProxyError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // A connection in the middle of a response cannot be reused.
        self.checkout = None;
        if let Some(lease) = self.lease.take() {
            lease.server.record_error(&e);
        }
        Poll::Ready(Some(Err(Box::new(e))))
    }

    /// Whether the idle deadline has passed; arms or re-arms the timer
    /// otherwise (registering the waker).
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let last = *self.last_data.get_or_insert_with(Instant::now);
        let deadline = last + self.idle_for;
        let idle = self
            .idle
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if idle.deadline() != deadline {
            idle.as_mut().reset(deadline);
        }
        idle.as_mut().poll(cx).is_ready()
    }

    /// The body ended: hand the connection back, then end the stream.
    fn finish(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.finishing = true;
        self.lease = None;
        if let Some(c) = self.checkout.as_mut() {
            match c.poll_release(cx) {
                Poll::Ready(true) => {
                    if let Some(c) = self.checkout.take() {
                        c.release();
                    }
                }
                Poll::Ready(false) => self.checkout = None,
                Poll::Pending => {
                    if !self.idle_expired(cx) {
                        return Poll::Pending;
                    }
                    self.checkout = None;
                }
            }
        }
        Poll::Ready(None)
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // Responses whose body hyper never polls (HEAD, 204, 304, empty):
        // the connection is still good.
        if let Some(c) = self.checkout.take() {
            if self.finishing || self.inner.is_end_stream() {
                c.release_when_ready();
            }
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.finishing {
            return this.finish(cx);
        }
        let Some(lease) = this.lease.as_ref() else {
            return Poll::Ready(None);
        };
        if lease.drain.is_cancelled() {
            return this.fail(ProxyError::new(ProxyErrorKind::DrainTimeout));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if this.idle.is_some() {
                    this.last_data = Some(Instant::now());
                }
                if let (Some(d), Some(lease)) = (frame.data_ref(), this.lease.as_ref()) {
                    let n = d.len() as u64;
                    this.fs.bytes_out.fetch_add(n, Ordering::Relaxed);
                    this.fs.metrics.bytes_out.increment(n);
                    lease.server.bytes_out.fetch_add(n, Ordering::Relaxed);
                    lease.server.metrics.bytes_out.increment(n);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.fail(ProxyError::new(ProxyErrorKind::ServerReset(e.to_string())))
            }
            Poll::Ready(None) => this.finish(cx),
            Poll::Pending => {
                // Waiting for the server: watch the drain deadline and the
                // idle timeout.
                if this.drain.is_none() {
                    let token = lease.drain.clone();
                    this.drain = Some(Box::pin(token.cancelled_owned()));
                }
                if let Some(d) = this.drain.as_mut() {
                    if d.as_mut().poll(cx).is_ready() {
                        return this.fail(ProxyError::new(ProxyErrorKind::DrainTimeout));
                    }
                }
                if this.idle_expired(cx) {
                    return this.fail(ProxyError::new(ProxyErrorKind::ServerTimeout));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.lease.is_none() || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
