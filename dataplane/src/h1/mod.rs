//! The HTTP/1.1 fast path of `http` frontends.
//!
//! A client connection is served by one task that does the server side
//! inline: it reads a request head into its own buffer, writes the rewritten
//! head (hop-by-hop fields dropped, `X-Forwarded-*` / `Forwarded` added) and
//! the body to a pooled keep-alive server connection, reads the response
//! head, and relays the body as it comes (by `Content-Length`, chunk by
//! chunk without re-encoding, or until the server closes). No task, channel
//! or header map per request; the response head and the first body bytes go
//! out in one write. Between requests a connection holds no buffer at all,
//! which keeps idle keep-alive connections small.
//!
//! Only the common subset of HTTP/1.1 takes this path (see
//! [`parse::parse_request`]); at the first request outside it (HTTP/1.0,
//! `Upgrade`, `Transfer-Encoding`, `Expect`, malformed input, ...) the
//! connection, with the bytes already read, is handed to hyper for good
//! ([`Prefixed`]), so every other behaviour of the frontend stays hyper's.
//!
//! Semantics match the hyper path: the head must arrive within
//! `client_header`, an idle keep-alive connection is closed after
//! `client_idle`, heads over `max_header_size` get 431; connect failures of
//! idempotent requests without a body are retried on another server; no
//! server up gives 503; a server failing before a complete response head
//! gives 502 and counts against it, no head within `server` gives 504, a
//! body stalled for `server` is cut; the drain deadline of the server and
//! the runtime's abort cut what is in flight.

pub(crate) mod parse;

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use control::config::{ForwardedHeaders, HashKey};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::error::{ProxyError, ProxyErrorKind};
use crate::health::PassiveEvent;
use crate::http::UpstreamClient;
use crate::park::{ParkedConn, Parker, PARK_AFTER};
use crate::runtime::{BackendRt, FrontendHandle, FrontendRt, Lease};
use crate::shutdown::{CancelWatch, Shutdown};
use crate::tcp::ConnGuard;
use parse::{eq_ic, tokens, ChunkScanner, Framing, ReqHead, ReqParse, RespHead, RespParse, Scan};
use tokio::sync::OwnedSemaphorePermit;

/// Read size for client request heads and server responses.
pub(crate) const READ_CHUNK: usize = 1024;
/// Largest response head accepted from a server.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Relay buffer for bodies that do not fit the first read.
const BODY_CHUNK: usize = 16 * 1024;

/// Hop-by-hop fields (RFC 9110 section 7.6.1), never relayed.
const HOP_BY_HOP: [&[u8]; 8] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"proxy-authenticate",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
];

fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP.iter().any(|h| eq_ic(h, name))
}

/// The client connection handed to hyper: the bytes already read come
/// first, then the socket.
#[derive(Debug)]
pub(crate) struct Prefixed {
    pre: Vec<u8>,
    pos: usize,
    io: TcpStream,
}

impl Prefixed {
    /// Whether the bytes read so far start with `prefix`.
    pub(crate) fn starts_with(&self, prefix: &[u8]) -> bool {
        self.pre[self.pos..].starts_with(prefix)
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.pre.len() {
            let n = (this.pre.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.pre[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.pre.len() {
                this.pre = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// What a connection needs besides its socket and buffer.
struct ConnCtx {
    handle: FrontendHandle,
    client: SocketAddr,
    shutdown: Shutdown,
    /// Where the connection goes when it idles past [`PARK_AFTER`].
    parker: Option<Arc<Parker>>,
}

/// A client connection's whole state, kept in one place: the task future
/// owns it directly, so nothing of it is stored twice.
struct Conn {
    stream: TcpStream,
    inbuf: Vec<u8>,
    ctx: ConnCtx,
    /// Also holds when the connection was accepted (`last_active` until
    /// the first request).
    watch: ConnWatch,
    fe: Arc<FrontendRt>,
    /// Counts the connection as open, and holds its place under the
    /// frontend's `max_connections`, until it closes.
    _open: (ConnGuard, Option<OwnedSemaphorePermit>),
}

enum Fill {
    Data,
    /// Closed, failed, timed out or stopping: the connection ends.
    End,
    /// Idle past [`PARK_AFTER`] with nothing read: leave the task.
    Park,
}

/// How [`serve`] left a connection.
enum Served {
    /// Closed (or to be closed).
    Done,
    /// A request needs hyper: the unread bytes are in `inbuf`.
    Hyper,
    /// Idle: park it.
    Park,
    /// Between two requests, to go on on another event loop.
    Move(usize),
}

/// A client connection of an `http` frontend, from accept to close: PROXY
/// header if configured, HTTP/1.1 requests on the fast path, and the rest
/// (HTTP/2 included) by hyper with the bytes already read.
///
/// This future is the connection's task itself (no wrapper around it); a
/// connection that idles past [`PARK_AFTER`] leaves it for the frontend's
/// [`Parker`] and comes back through [`resume`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn serve_conn(
    stream: TcpStream,
    peer: SocketAddr,
    inbuf: Vec<u8>,
    handle: FrontendHandle,
    fe: Arc<FrontendRt>,
    shutdown: Shutdown,
    open: (ConnGuard, Option<OwnedSemaphorePermit>),
    parker: Option<Arc<Parker>>,
) -> impl std::future::Future<Output = ()> + Send {
    run(Conn {
        stream,
        inbuf,
        watch: ConnWatch::new(&shutdown, Instant::now(), true),
        ctx: ConnCtx {
            handle,
            client: peer,
            shutdown,
            parker,
        },
        fe,
        _open: open,
    })
}

/// Take a parked connection back into a task of its own (bytes arrived, or
/// the client hung up). A frontend removed meanwhile closes it.
pub(crate) fn resume(
    conn: ParkedConn,
    handle: &FrontendHandle,
    shutdown: &Shutdown,
    parker: &Arc<Parker>,
) {
    let Some((fe, _)) = handle.current() else {
        return;
    };
    let ParkedConn {
        stream,
        proxied,
        last_active,
        first,
        open,
    } = conn;
    let client = match proxied {
        Some(c) => *c,
        // Gone meanwhile (reset): nothing to resume.
        None => match stream.peer_addr() {
            Ok(a) => a,
            Err(_) => return,
        },
    };
    let ctx = ConnCtx {
        handle: handle.clone(),
        client,
        shutdown: shutdown.clone(),
        parker: Some(Arc::clone(parker)),
    };
    let resume = (Vec::new(), ctx, (last_active, first), fe, open);
    handle.spawn_conn(stream, client, move |s| taken_back(s, resume));
}

/// Move a connection between two requests to event loop `to` (see
/// [`crate::loops`]): out of this loop's reactor, into a task on the other.
fn move_to(c: Conn, to: usize) {
    let Conn {
        stream,
        inbuf,
        ctx,
        watch,
        fe,
        _open,
    } = c;
    let stream = match stream.into_std() {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(frontend = %fe.cfg.name, client = %ctx.client, error = %e, "cannot move a connection to another event loop");
            return;
        }
    };
    let (handle, client) = (ctx.handle.clone(), ctx.client);
    let resume = (inbuf, ctx, (watch.last_active, watch.first), fe, _open);
    handle.move_conn(to, stream, client, move |s| taken_back(s, resume));
}

/// What a connection's task needs besides its socket when it is taken back
/// into a task (from the parker, or moved from another loop): bytes read,
/// context, `(last_active, first)` of its idle state, frontend, and its
/// place among the open connections.
type Resume = (
    Vec<u8>,
    ConnCtx,
    (Instant, bool),
    Arc<FrontendRt>,
    (ConnGuard, Option<OwnedSemaphorePermit>),
);

/// A connection taken back into a task, its socket registered with the
/// reactor of the thread that runs it.
fn taken_back(
    stream: TcpStream,
    (inbuf, ctx, (last_active, first), fe, open): Resume,
) -> impl Future<Output = ()> + Send {
    after_proxy_header(Conn {
        stream,
        inbuf,
        watch: ConnWatch::new(&ctx.shutdown, last_active, first),
        ctx,
        fe,
        _open: open,
    })
}

/// Not an `async fn`: the arguments of one are moved again into the body's
/// state, which would keep the connection state twice in every task.
#[allow(clippy::manual_async_fn)]
fn run(mut c: Conn) -> impl Future<Output = ()> + Send {
    async move {
        if c.fe.cfg.accept_proxy_protocol {
            let limit = c.fe.cfg.timeouts.client_header;
            // Boxed: only connections behind a balancer pay for this state.
            // (A `let` of its own: a temporary in the awaited expression
            // would keep the unboxed future's space in this task.)
            let read = Box::pin(crate::tcp::read_proxy_header(&mut c.stream, limit));
            match read.await {
                Ok(Some((src, _))) => c.ctx.client = src,
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(frontend = %c.fe.cfg.name, client = %c.ctx.client, error = %e, "bad PROXY header");
                    return;
                }
            }
        }
        after_proxy_header(c).await
    }
}

/// Serve a connection whose PROXY header (if any) was read.
#[allow(clippy::manual_async_fn)]
fn after_proxy_header(mut c: Conn) -> impl Future<Output = ()> + Send {
    async move {
        match serve(&mut c).await {
            Served::Done => {}
            Served::Hyper => to_hyper(c).await,
            Served::Park => park(c),
            Served::Move(to) => move_to(c, to),
        }
    }
}

/// Leave the task: the socket and what the connection needs go to the
/// frontend's parker (closed if it cannot take them).
fn park(c: Conn) {
    let Conn {
        stream,
        ctx,
        watch,
        fe,
        _open,
        ..
    } = c;
    let Some(parker) = ctx.parker else {
        return;
    };
    let timeouts = &fe.cfg.timeouts;
    let timeout = if watch.first {
        timeouts.client_header
    } else {
        timeouts.client_idle
    };
    let stream = match stream.into_std() {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(frontend = %fe.cfg.name, client = %ctx.client, error = %e, "cannot park an idle connection");
            return;
        }
    };
    let conn = ParkedConn {
        stream,
        // Only a client named by a PROXY header is kept; the socket's
        // peer is asked again on resume.
        proxied: fe.cfg.accept_proxy_protocol.then(|| Box::new(ctx.client)),
        last_active: watch.last_active,
        first: watch.first,
        open: _open,
    };
    // Refused: the frontend is stopping; the connection closes.
    let _ = parker.park(conn, timeout);
}

/// A request outside the fast path: hyper takes the connection with the
/// bytes already read.
fn to_hyper(c: Conn) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    let Conn {
        stream,
        inbuf,
        ctx,
        fe,
        ..
    } = c;
    let rest = Prefixed {
        pre: inbuf,
        pos: 0,
        io: stream,
    };
    crate::http::serve_hyper(rest, ctx.client, ctx.handle, fe, ctx.shutdown)
}

/// Serve HTTP/1.1 requests until the connection ends, a request needs
/// hyper (the unread bytes are in `c.inbuf`), or it idles long enough to
/// park.
async fn serve(c: &mut Conn) -> Served {
    loop {
        // Timeouts and limits while waiting for a head.
        let Some((fe, be)) = c.ctx.handle.current() else {
            return Served::Done;
        };
        let t = &fe.cfg.timeouts;
        let max_head = fe.cfg.max_header_size as usize;
        if c.inbuf.is_empty() {
            // Idle between requests: no buffer is held while waiting.
            c.inbuf = Vec::new();
            let limit = if c.watch.first {
                t.client_header
            } else {
                t.client_idle
            };
            // No parking once stopping: the parker is closing.
            let park = c.ctx.parker.is_some() && !c.ctx.shutdown.is_stopping();
            match fill_idle(&mut c.stream, &mut c.inbuf, &mut c.watch, limit, park).await {
                Fill::Data => {}
                Fill::End => return Served::Done,
                Fill::Park => return Served::Park,
            }
        }
        let head_deadline = if c.watch.first {
            // Counted from the accept (`last_active` is still that).
            c.watch.last_active + t.client_header
        } else {
            Instant::now() + t.client_header
        };
        c.watch.first = false;
        let head = loop {
            match parse::parse_request(&c.inbuf) {
                ReqParse::Complete(h) if h.len <= max_head => break h,
                ReqParse::Complete(_) => {
                    let refuse = Box::pin(refuse_431(&mut c.stream, &fe));
                    refuse.await;
                    return Served::Done;
                }
                ReqParse::Unsupported => return Served::Hyper,
                ReqParse::Partial => {
                    if c.inbuf.len() > max_head {
                        let refuse = Box::pin(refuse_431(&mut c.stream, &fe));
                        refuse.await;
                        return Served::Done;
                    }
                    // Boxed: a head in several pieces is the rare case.
                    let more = Box::pin(fill_head(
                        &mut c.stream,
                        &mut c.inbuf,
                        &c.ctx.shutdown,
                        head_deadline,
                    ));
                    if let Fill::End = more.await {
                        return Served::Done;
                    }
                }
            }
        };
        // The config as of the request's arrival (a reload while the
        // connection sat idle must apply to it).
        drop((fe, be));
        let Some((fe, be)) = c.ctx.handle.current() else {
            return Served::Done;
        };
        // Boxed: the per-request state is allocated while a request runs,
        // not kept in every idle connection's task.
        let exchange = Box::pin(exchange(
            &mut c.stream,
            &mut c.inbuf,
            &head,
            &c.ctx,
            &fe,
            &be,
        ));
        let keep = exchange.await;
        c.watch.last_active = Instant::now();
        if !keep || c.ctx.shutdown.is_stopping() {
            return Served::Done;
        }
        if let Some(to) = c
            .ctx
            .handle
            .inner
            .loops
            .as_ref()
            .and_then(|l| l.move_target())
        {
            return Served::Move(to);
        }
    }
}

/// Per-connection watches: graceful stop and the idle timer (the abort is
/// watched per request, so an idle connection does not hold it).
struct ConnWatch {
    stop: CancelWatch,
    /// Armed once and moved forward lazily: when it fires early (the
    /// connection was busy since), it is re-armed from `last_active`.
    idle: Option<Pin<Box<Sleep>>>,
    last_active: Instant,
    /// No request yet (the header deadline counts from the accept).
    first: bool,
    /// When the task took the connection (its accept, or its return from
    /// the parker): it parks [`PARK_AFTER`] after this or `last_active`,
    /// whichever is later.
    awake_since: Instant,
}

impl ConnWatch {
    /// Watches for a connection last active at `last_active`, taken into
    /// its task now.
    fn new(shutdown: &Shutdown, last_active: Instant, first: bool) -> Self {
        ConnWatch {
            stop: shutdown.watch_stopping(),
            idle: None,
            last_active,
            first,
            awake_since: Instant::now(),
        }
    }
}

async fn refuse_431(stream: &mut TcpStream, fe: &FrontendRt) {
    let _ = write_simple(stream, 431, "431 request header fields too large\n", true).await;
    count_local(fe, 431);
    linger_close(stream).await;
}

/// Wait for the next request's first bytes, for at most `limit` after the
/// last activity, or until a graceful stop. The buffer is only allocated
/// once the socket is readable.
///
/// Written as a plain poll function: the readiness is registered on the
/// socket itself (`poll_read_ready`), so an idle connection holds no
/// waiter future at all.
fn fill_idle<'a>(
    stream: &'a mut TcpStream,
    buf: &'a mut Vec<u8>,
    watch: &'a mut ConnWatch,
    limit: std::time::Duration,
    park: bool,
) -> impl Future<Output = Fill> + 'a {
    // When this wait saw the graceful stop, if it has.
    let mut stopping_since = None;
    poll_fn(move |cx| loop {
        match stream.poll_read_ready(cx) {
            Poll::Ready(Err(_)) => return Poll::Ready(Fill::End),
            Poll::Ready(Ok(())) => {
                buf.reserve(READ_CHUNK);
                // A read through `poll_read` (unlike `try_read`) that does
                // not fill the buffer clears the readiness: the next wait
                // starts without a recv that would block.
                match tokio_util::io::poll_read_buf(Pin::new(&mut *stream), cx, buf) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Fill::End),
                    Poll::Ready(Ok(_)) => return Poll::Ready(Fill::Data),
                    // Spurious readiness (now cleared, the waker
                    // registered): give the buffer back and wait.
                    Poll::Pending => *buf = Vec::new(),
                }
            }
            Poll::Pending => {}
        }
        let mut deadline = watch.last_active + limit;
        if watch.stop.poll_cancelled(cx).is_ready() {
            // Stopping: an idle keep-alive connection closes; one still
            // waiting for its first request (accepted before the stop, its
            // request maybe on the way) waits a little longer for it.
            if !watch.first {
                return Poll::Ready(Fill::End);
            }
            let since = *stopping_since.get_or_insert_with(Instant::now);
            deadline = deadline.min(since + FIRST_REQUEST_GRACE);
        }
        let park_at = watch.last_active.max(watch.awake_since) + PARK_AFTER;
        let wake_at = if park {
            deadline.min(park_at)
        } else {
            deadline
        };
        let timer = watch
            .idle
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(wake_at)));
        // The timer moves on lazily: it is re-armed only when it fires
        // before the current wake-up (the connection was busy since), not
        // after every request.
        if timer.deadline() > wake_at {
            timer.as_mut().reset(wake_at);
        }
        if timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            if now >= deadline {
                return Poll::Ready(Fill::End);
            }
            if park && now >= park_at {
                return Poll::Ready(Fill::Park);
            }
            timer.as_mut().reset(wake_at);
            // Already due: the checks above decide on the next turn.
            continue;
        }
        return Poll::Pending;
    })
}

/// Read more of a request head before `deadline` (or an abort).
async fn fill_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    shutdown: &Shutdown,
    deadline: Instant,
) -> Fill {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
    tokio::select! {
        biased;
        r = stream.read_buf(buf) => match r {
            Ok(0) | Err(_) => Fill::End,
            Ok(_) => Fill::Data,
        },
        _ = tokio::time::sleep_until(deadline) => Fill::End,
        _ = shutdown.aborted() => Fill::End,
    }
}

/// At a graceful stop, how long a connection accepted before it may still
/// take to send its first request (which is then served).
pub(crate) const FIRST_REQUEST_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Longest a refused client may go on sending before the socket closes.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);
/// Most bytes read and dropped while lingering.
const LINGER_BYTES: usize = 1 << 20;

/// Close after an error answer without resetting the connection: a close
/// with unread input sends a reset, which can destroy the answer before
/// the client reads it. Stop writing, then read and drop what the client is
/// still sending, for a bounded time and amount (nginx's lingering close).
async fn linger_close(stream: &mut TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    let mut dropped = 0usize;
    let deadline = Instant::now() + LINGER;
    while dropped < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => dropped += n,
            _ => break,
        }
    }
}

/// Counts a response halb made itself before any server was involved.
fn count_local(fe: &FrontendRt, status: u16) {
    fe.shared.requests.fetch_add(1, Ordering::Relaxed);
    fe.shared.metrics.requests.increment(1);
    fe.shared.count_response(status);
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// A short plain-text answer made by halb.
async fn write_simple(
    stream: &mut TcpStream,
    status: u16,
    msg: &str,
    close: bool,
) -> io::Result<()> {
    let conn = if close { "connection: close\r\n" } else { "" };
    let text = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n{conn}\r\n{msg}",
        reason(status),
        msg.len()
    );
    stream.write_all(text.as_bytes()).await
}

/// The answer for an error before any response head was sent.
fn error_status(e: &ProxyError) -> (u16, &'static str) {
    match e.kind {
        ProxyErrorKind::NoServer | ProxyErrorKind::Unconfigured => {
            (503, "503 no server available\n")
        }
        ProxyErrorKind::QueueFull | ProxyErrorKind::QueueTimeout => (503, "503 all servers busy\n"),
        ProxyErrorKind::ServerTimeout | ProxyErrorKind::ConnectTimeout => {
            (504, "504 server timeout\n")
        }
        _ => (502, "502 bad gateway\n"),
    }
}

fn is_idempotent(method: &[u8]) -> bool {
    matches!(
        method,
        b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
    )
}

fn field<'a>(buf: &'a [u8], head: &ReqHead, name: &[u8]) -> Option<&'a [u8]> {
    head.fields
        .iter()
        .find(|f| eq_ic(&buf[f.name.clone()], name))
        .map(|f| &buf[f.value.clone()])
}

/// The Maglev key of a request (as the hyper path computes it).
fn request_key(be: &BackendRt, client: SocketAddr, buf: &[u8], head: &ReqHead) -> Option<u64> {
    if be.cfg.algorithm != control::config::Algorithm::Maglev {
        return None;
    }
    let h = match &be.cfg.hash_key {
        HashKey::SourceIp => None,
        HashKey::SourceIpPort => Some(crate::maglev::hash_flow(client.ip(), Some(client.port()))),
        HashKey::Header(name) => field(buf, head, name.as_bytes()).map(crate::maglev::hash_key),
        HashKey::Cookie(name) => head
            .fields
            .iter()
            .filter(|f| eq_ic(&buf[f.name.clone()], b"cookie"))
            .flat_map(|f| buf[f.value.clone()].split(|&b| b == b';'))
            .find_map(|kv| {
                let kv = kv.trim_ascii();
                let eq = kv.iter().position(|&b| b == b'=')?;
                (&kv[..eq] == name.as_bytes()).then(|| crate::maglev::hash_key(&kv[eq + 1..]))
            }),
    };
    Some(h.unwrap_or_else(|| crate::maglev::hash_flow(client.ip(), None)))
}

/// Names listed in `Connection` fields (to be dropped with it).
fn connection_listed<'a>(buf: &'a [u8], fields: &[parse::Field]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    for f in fields {
        if eq_ic(&buf[f.name.clone()], b"connection") {
            for t in tokens(&buf[f.value.clone()]) {
                if !eq_ic(t, b"close") && !eq_ic(t, b"keep-alive") {
                    out.push(t);
                }
            }
        }
    }
    out
}

/// The request head as sent to servers.
fn write_request_head(
    out: &mut Vec<u8>,
    buf: &[u8],
    head: &ReqHead,
    mode: ForwardedHeaders,
    client: SocketAddr,
) {
    use std::io::Write as _;
    let ip = client.ip().to_canonical();
    let xf = matches!(mode, ForwardedHeaders::XForwarded | ForwardedHeaders::Both);
    let fwd = matches!(mode, ForwardedHeaders::Forwarded | ForwardedHeaders::Both);
    let listed = connection_listed(buf, &head.fields);
    out.extend_from_slice(&buf[head.method.clone()]);
    out.push(b' ');
    out.extend_from_slice(&buf[head.target.clone()]);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut xff: Option<&[u8]> = None;
    let mut prev_forwarded: Option<&[u8]> = None;
    for f in &head.fields {
        let name = &buf[f.name.clone()];
        let value = &buf[f.value.clone()];
        if is_hop_by_hop(name) || listed.iter().any(|l| eq_ic(l, name)) {
            continue;
        }
        if xf {
            if eq_ic(name, b"x-forwarded-for") {
                xff.get_or_insert(value);
                continue;
            }
            if eq_ic(name, b"x-forwarded-proto") || eq_ic(name, b"x-forwarded-host") {
                continue;
            }
        }
        if fwd && eq_ic(name, b"forwarded") {
            prev_forwarded.get_or_insert(value);
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    let host = head.host.map(|i| &buf[head.fields[i].value.clone()]);
    if xf {
        out.extend_from_slice(b"x-forwarded-for: ");
        if let Some(prev) = xff {
            out.extend_from_slice(prev);
            out.extend_from_slice(b", ");
        }
        let _ = write!(out, "{ip}");
        out.extend_from_slice(b"\r\nx-forwarded-proto: http\r\n");
        if let Some(h) = host {
            out.extend_from_slice(b"x-forwarded-host: ");
            out.extend_from_slice(h);
            out.extend_from_slice(b"\r\n");
        }
    }
    if fwd {
        out.extend_from_slice(b"forwarded: ");
        if let Some(prev) = prev_forwarded {
            out.extend_from_slice(prev);
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(b"for=");
        if ip.is_ipv6() {
            let _ = write!(out, "\"[{ip}]\"");
        } else {
            let _ = write!(out, "{ip}");
        }
        out.extend_from_slice(b";proto=http");
        if let Some(h) = host.filter(|h| !h.contains(&b'"')) {
            out.extend_from_slice(b";host=\"");
            out.extend_from_slice(h);
            out.push(b'"');
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The response head as sent to the client.
fn write_response_head(out: &mut Vec<u8>, buf: &[u8], head: &RespHead, close: bool) {
    let listed = connection_listed(buf, &head.fields);
    out.extend_from_slice(b"HTTP/1.1 ");
    // The status code is bytes 9..12 of a parsed status line.
    out.extend_from_slice(&buf[9..12]);
    out.push(b' ');
    out.extend_from_slice(&buf[head.reason.clone()]);
    out.extend_from_slice(b"\r\n");
    let chunked = head.framing == Framing::Chunked;
    for f in &head.fields {
        let name = &buf[f.name.clone()];
        // Transfer-Encoding is relayed as it is when the chunks are; a
        // Content-Length beside chunked coding is dropped (RFC 9112 6.3).
        let drop_it = if eq_ic(name, b"transfer-encoding") {
            !chunked
        } else {
            is_hop_by_hop(name)
                || listed.iter().any(|l| eq_ic(l, name))
                || (chunked && eq_ic(name, b"content-length"))
        };
        if drop_it {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(&buf[f.value.clone()]);
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// How one attempt at a server ended before a usable response head.
enum Attempt {
    /// A complete response head is at the start of `rbuf`.
    Head(RespHead),
    /// The same, with the connection it came on.
    Ready(RespHead, TcpStream),
    /// A pooled connection had been closed by the server: nothing came back.
    Stale,
    Fail(ProxyError),
    /// The drain deadline passed or the runtime aborted.
    Cancelled,
    /// The client went away while its body was being relayed.
    ClientGone,
}

/// What a request races against: the runtime's abort and the drain
/// deadline of its server.
struct ReqWatch<'a> {
    abort: &'a mut CancelWatch,
    drain: CancelWatch,
}

enum Interrupt {
    Cancelled,
    Expired,
}

impl ReqWatch<'_> {
    fn poll_cancelled(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.abort.poll_cancelled(cx).is_ready() || self.drain.poll_cancelled(cx).is_ready() {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Ready when the request is cancelled or `deadline` passes.
    fn poll_interrupted(
        &mut self,
        deadline: &mut Pin<&mut Sleep>,
        cx: &mut Context<'_>,
    ) -> Poll<Interrupt> {
        if self.poll_cancelled(cx).is_ready() {
            return Poll::Ready(Interrupt::Cancelled);
        }
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Interrupt::Expired);
        }
        Poll::Pending
    }
}

fn interrupted(i: Interrupt) -> Attempt {
    match i {
        Interrupt::Cancelled => Attempt::Cancelled,
        Interrupt::Expired => Attempt::Fail(ProxyError::new(ProxyErrorKind::ServerTimeout)),
    }
}

/// One request: returns whether the client connection stays open.
async fn exchange(
    stream: &mut TcpStream,
    inbuf: &mut Vec<u8>,
    head: &ReqHead,
    ctx: &ConnCtx,
    fe: &Arc<FrontendRt>,
    be: &Arc<BackendRt>,
) -> bool {
    let mut abort = ctx.shutdown.watch_aborted();
    let abort = &mut abort;
    let start = Instant::now();
    fe.shared.requests.fetch_add(1, Ordering::Relaxed);
    fe.shared.metrics.requests.increment(1);
    let Some(pool) = fe.client.as_ref() else {
        let _ = write_simple(stream, 500, "500 frontend is not http\n", true).await;
        fe.shared.count_response(500);
        return false;
    };
    // Three stages, each boxed on its own so that every allocation of a
    // request stays under 1 KiB, where the allocator's fast paths are.
    let send = Box::pin(proxy(stream, inbuf, head, ctx, abort, fe, be, pool, start));
    let sent = send.await;
    let (status, keep) = match sent {
        Sent::Head {
            resp,
            up,
            lease,
            watch,
            rbuf,
        } => {
            let relay = Box::pin(relay_response(
                stream, up, rbuf, resp, lease, watch, head, fe, pool, start,
            ));
            relay.await
        }
        Sent::Error { error, close } => {
            let (status, msg) = error_status(&error);
            let ok = write_simple(stream, status, msg, close).await.is_ok();
            (Some(status), ok && !close)
        }
        Sent::ClientGone => (None, false),
    };
    if let Some(status) = status {
        fe.shared.count_response(status);
    }
    fe.shared
        .metrics
        .duration
        .record(start.elapsed().as_secs_f64());
    keep
}

/// How sending a request ended.
enum Sent<'a> {
    /// A response head (at the start of `rbuf`) to relay.
    Head {
        resp: RespHead,
        up: TcpStream,
        lease: Lease,
        watch: ReqWatch<'a>,
        rbuf: Vec<u8>,
    },
    /// No response: answer the client with an error, then close it if
    /// `close`.
    Error { error: ProxyError, close: bool },
    /// The client went away.
    ClientGone,
}

/// Pick a server and send the request (retrying as configured) until a
/// response head arrives.
#[allow(clippy::too_many_arguments)]
async fn proxy<'a>(
    stream: &mut TcpStream,
    inbuf: &mut Vec<u8>,
    head: &ReqHead,
    ctx: &ConnCtx,
    abort: &'a mut CancelWatch,
    fe: &Arc<FrontendRt>,
    be: &Arc<BackendRt>,
    pool: &UpstreamClient,
    start: Instant,
) -> Sent<'a> {
    let method = &inbuf[head.method.clone()];
    let head_request = method == b"HEAD";
    let retryable = is_idempotent(method) && head.content_length == 0;
    let key = request_key(be, ctx.client, inbuf, head);

    // The request as sent: head, then the body bytes already read.
    let mut out = Vec::with_capacity(head.len + 160);
    write_request_head(&mut out, inbuf, head, fe.cfg.forwarded_headers, ctx.client);
    let avail = inbuf.len() - head.len;
    let first_body = usize::try_from(head.content_length).map_or(avail, |n| n.min(avail));
    out.extend_from_slice(&inbuf[head.len..head.len + first_body]);
    // What is left of the body is read from the client while relaying.
    let mut body_left = head.content_length - first_body as u64;
    // The request leaves the client buffer once sent; bytes after it (a
    // pipelined request) stay.
    inbuf.drain(..head.len + first_body);
    if first_body > 0 {
        fe.shared
            .bytes_in
            .fetch_add(first_body as u64, Ordering::Relaxed);
        fe.shared.metrics.bytes_in.increment(first_body as u64);
    }

    // One timer for the whole wait for a response head (connect, send,
    // retries included), as the hyper path's timeout around the send.
    let mut deadline_box = Box::pin(tokio::time::sleep_until(start + fe.cfg.timeouts.server));
    let mut deadline = deadline_box.as_mut();
    let mut tried: Vec<usize> = Vec::new();
    let mut rbuf: Vec<u8> = Vec::new();
    let mut abort = Some(abort);
    let result: Result<(RespHead, TcpStream, Lease, ReqWatch<'_>), ProxyError> = loop {
        let (i, lease) = match be.acquire(key, &tried).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(frontend = %fe.cfg.name, backend = %be.cfg.name, error = %e, "no server");
                break Err(e);
            }
        };
        let server = Arc::clone(&lease.server);
        server.requests.fetch_add(1, Ordering::Relaxed);
        server.metrics.requests.increment(1);
        if first_body > 0 {
            server
                .bytes_in
                .fetch_add(first_body as u64, Ordering::Relaxed);
            server.metrics.bytes_in.increment(first_body as u64);
        }
        let Some(abort_ref) = abort.take() else {
            break Err(ProxyError::new(ProxyErrorKind::Unconfigured));
        };
        let mut watch = ReqWatch {
            abort: abort_ref,
            drain: CancelWatch::new(lease.drain.clone()),
        };

        let mut conn = pool.raw_checkout(server.address, start);
        let mut fresh_tries = 0;
        let attempt = loop {
            let reused = conn.is_some();
            let mut up = match conn.take() {
                Some(c) => c,
                None => {
                    // Boxed: with pooled connections, connecting is rare.
                    let connect =
                        Box::pin(crate::tcp::connect(server.address, pool.connect_timeout()));
                    let r = tokio::select! {
                        biased;
                        r = connect => r,
                        i = poll_fn(|cx| watch.poll_interrupted(&mut deadline, cx)) => break interrupted(i),
                    };
                    match r {
                        Ok(s) => s,
                        Err(e) => break Attempt::Fail(e),
                    }
                }
            };
            rbuf.clear();
            let a = send_and_read_head(
                &mut up,
                stream,
                &out,
                &mut body_left,
                &mut rbuf,
                head_request,
                &mut watch,
                &mut deadline,
                fe,
                &server,
            )
            .await;
            match a {
                Attempt::Head(h) => break Attempt::Ready(h, up),
                // Only when the whole request is still in hand can it go again.
                Attempt::Stale if reused && body_left == 0 && fresh_tries == 0 => {
                    tracing::debug!(server = %server.address, "pooled connection was closed; reconnecting");
                    fresh_tries += 1;
                }
                Attempt::Stale => {
                    break Attempt::Fail(ProxyError::new(ProxyErrorKind::ServerReset(
                        "closed before a response".into(),
                    )))
                }
                a => break a,
            }
        };
        match attempt {
            Attempt::Ready(h, up) => break Ok((h, up, lease, watch)),
            Attempt::Cancelled => break Err(ProxyError::new(ProxyErrorKind::DrainTimeout)),
            Attempt::ClientGone => return Sent::ClientGone,
            Attempt::Fail(e) => {
                tracing::debug!(backend = %be.cfg.name, server = %server.name, error = %e, "request to server failed");
                server.record_error(&e);
                tried.push(i);
                if e.retry && retryable && tried.len() <= usize::from(be.cfg.connect_retries) {
                    be.shared.metrics.retries.increment(1);
                    // The abort watch goes on to the next attempt.
                    let ReqWatch { abort: a, .. } = watch;
                    abort = Some(a);
                    continue;
                }
                break Err(e);
            }
            Attempt::Head(_) | Attempt::Stale => {
                break Err(ProxyError::new(ProxyErrorKind::ServerReset(
                    "no response".into(),
                )))
            }
        }
    };
    drop(out);

    match result {
        Ok((resp, up, lease, watch)) => Sent::Head {
            resp,
            up,
            lease,
            watch,
            rbuf,
        },
        Err(error) => Sent::Error {
            error,
            // An unread request body leaves the connection out of step.
            close: head.close || body_left > 0,
        },
    }
}

/// Write the request (and the rest of its body from the client) to the
/// server and read the response head into `rbuf`; interim 1xx responses
/// are passed to the client on the way.
#[allow(clippy::too_many_arguments)]
async fn send_and_read_head(
    up: &mut TcpStream,
    client: &mut TcpStream,
    out: &[u8],
    body_left: &mut u64,
    rbuf: &mut Vec<u8>,
    head_request: bool,
    watch: &mut ReqWatch<'_>,
    deadline: &mut Pin<&mut Sleep>,
    fe: &FrontendRt,
    server: &crate::runtime::ServerShared,
) -> Attempt {
    let reset =
        |e: io::Error| Attempt::Fail(ProxyError::new(ProxyErrorKind::ServerReset(e.to_string())));
    let w = tokio::select! {
        biased;
        r = up.write_all(out) => r,
        i = poll_fn(|cx| watch.poll_interrupted(deadline, cx)) => return interrupted(i),
    };
    match w {
        // A pooled connection the server had closed fails here or below.
        Err(_) if *body_left == 0 => return Attempt::Stale,
        Err(e) => return reset(e),
        Ok(()) => {}
    }
    if *body_left > 0 {
        // Boxed: most requests have no body, or one that came with the head.
        let sent = Box::pin(send_rest_of_body(
            up, client, body_left, watch, deadline, fe, server,
        ));
        if let Some(a) = sent.await {
            return a;
        }
    }
    loop {
        if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
            rbuf.reserve(READ_CHUNK);
        }
        let r = tokio::select! {
            biased;
            r = up.read_buf(rbuf) => r,
            i = poll_fn(|cx| watch.poll_interrupted(deadline, cx)) => return interrupted(i),
        };
        match r {
            Ok(0) | Err(_) if rbuf.is_empty() => return Attempt::Stale,
            Ok(0) => {
                return Attempt::Fail(ProxyError::new(ProxyErrorKind::ServerReset(
                    "closed in the response head".into(),
                )))
            }
            Err(e) => return reset(e),
            Ok(_) => {}
        }
        loop {
            match parse::parse_response(rbuf, head_request) {
                RespParse::Partial => {
                    if rbuf.len() > MAX_RESPONSE_HEAD {
                        return Attempt::Fail(ProxyError::new(ProxyErrorKind::ServerProtocol(
                            "response head too large".into(),
                        )));
                    }
                    break;
                }
                RespParse::Invalid(why) => {
                    return Attempt::Fail(ProxyError::new(ProxyErrorKind::ServerProtocol(
                        why.into(),
                    )))
                }
                RespParse::Complete(h) if h.status == 101 => {
                    return Attempt::Fail(ProxyError::new(ProxyErrorKind::ServerProtocol(
                        "unsolicited 101".into(),
                    )))
                }
                RespParse::Complete(h) if h.status < 200 => {
                    // Interim response (e.g. 103): relay it, then read on.
                    let interim: Vec<u8> = rbuf.drain(..h.len).collect();
                    if client.write_all(&interim).await.is_err() {
                        return Attempt::ClientGone;
                    }
                }
                RespParse::Complete(h) => return Attempt::Head(h),
            }
        }
    }
}

/// Send the response head and relay the body; returns the status and
/// whether the client connection stays open.
///
/// Not an `async fn`: the arguments taken by value would be stored twice in
/// the request's future.
#[allow(clippy::too_many_arguments, clippy::manual_async_fn)]
fn relay_response<'a>(
    stream: &'a mut TcpStream,
    mut up: TcpStream,
    rbuf: Vec<u8>,
    resp: RespHead,
    lease: Lease,
    mut watch: ReqWatch<'a>,
    head: &'a ReqHead,
    fe: &'a Arc<FrontendRt>,
    pool: &'a UpstreamClient,
    start: Instant,
) -> impl Future<Output = (Option<u16>, bool)> + Send + 'a {
    async move {
        let server = Arc::clone(&lease.server);
        let status = resp.status;
        server.metrics.responses[crate::metrics::class_index(status)].increment(1);
        if (500..600).contains(&status) {
            server.passive(PassiveEvent::ServerError);
        } else {
            server.passive(PassiveEvent::Success);
        }
        let close_client = head.close || resp.framing == Framing::Close;
        let mut out = Vec::with_capacity(resp.len + 64 + rbuf.len().saturating_sub(resp.len));
        write_response_head(&mut out, &rbuf, &resp, close_client);

        // Body bytes that came with the head.
        let extra = &rbuf[resp.len..];
        let mut scanner = ChunkScanner::default();
        let (take, done, left) = match resp.framing {
            Framing::None => (0, true, 0u64),
            Framing::Length(n) => {
                let t = usize::try_from(n).map_or(extra.len(), |n| n.min(extra.len()));
                (t, t as u64 == n, n - t as u64)
            }
            Framing::Chunked => match scanner.feed(extra) {
                Scan::End(k) => (k, true, 0),
                Scan::More => (extra.len(), false, 0),
                Scan::Invalid => {
                    let e =
                        ProxyError::new(ProxyErrorKind::ServerProtocol("bad chunked body".into()));
                    server.record_error(&e);
                    let (st, msg) = error_status(&e);
                    let _ = write_simple(stream, st, msg, true).await;
                    return (Some(st), false);
                }
            },
            Framing::Close => (extra.len(), false, 0),
        };
        // Bytes after the response: the server is out of step.
        let mut reusable = resp.keep_alive && extra.len() == take;
        out.extend_from_slice(&extra[..take]);
        count_out(fe, &server, take);
        drop(rbuf);

        let w = tokio::select! {
            biased;
            r = stream.write_all(&out) => r,
            _ = poll_fn(|cx| watch.poll_cancelled(cx)) => return (Some(status), false),
        };
        if w.is_err() {
            return (Some(status), false);
        }
        drop(out);

        if !done {
            // Boxed: most responses came whole with their head.
            let rest = Box::pin(relay_rest(
                stream,
                &mut up,
                &mut watch,
                resp.framing,
                left,
                scanner,
                &server,
                fe,
            ));
            match rest.await {
                Ok(r) => reusable &= r,
                Err(()) => return (Some(status), false),
            }
        }
        drop(watch);
        drop(lease);
        if reusable {
            pool.raw_checkin(server.address, up, start);
        }
        (Some(status), !close_client)
    }
}

/// Relay the rest of a body that did not come with its head: `Ok(reusable)`
/// when it ended (whether the server connection can serve another
/// request), `Err` when the exchange was cut (counted against the server
/// when it was the server's doing).
#[allow(clippy::too_many_arguments)]
async fn relay_rest(
    stream: &mut TcpStream,
    up: &mut TcpStream,
    watch: &mut ReqWatch<'_>,
    framing: Framing,
    mut left: u64,
    mut scanner: ChunkScanner,
    server: &Arc<crate::runtime::ServerShared>,
    fe: &FrontendRt,
) -> Result<bool, ()> {
    let idle = fe.cfg.timeouts.server;
    let mut buf = vec![0u8; BODY_CHUNK];
    loop {
        let want = match framing {
            Framing::Length(_) => buf.len().min(usize::try_from(left).unwrap_or(buf.len())),
            _ => buf.len(),
        };
        let r = tokio::select! {
            biased;
            r = tokio::time::timeout(idle, up.read(&mut buf[..want])) => r,
            _ = poll_fn(|cx| watch.poll_cancelled(cx)) => {
                server.record_error(&ProxyError::new(ProxyErrorKind::DrainTimeout));
                return Err(());
            }
        };
        let n = match r {
            Err(_) => {
                server.record_error(&ProxyError::new(ProxyErrorKind::ServerTimeout));
                return Err(());
            }
            Ok(Err(e)) => {
                server.record_error(&ProxyError::new(ProxyErrorKind::ServerReset(e.to_string())));
                return Err(());
            }
            Ok(Ok(0)) => {
                if framing == Framing::Close {
                    return Ok(false);
                }
                server.record_error(&ProxyError::new(ProxyErrorKind::ServerReset(
                    "closed in the response body".into(),
                )));
                return Err(());
            }
            Ok(Ok(n)) => n,
        };
        let (send, end, reusable) = match framing {
            Framing::Length(_) => {
                left -= n as u64;
                (n, left == 0, true)
            }
            Framing::Chunked => match scanner.feed(&buf[..n]) {
                Scan::End(k) => (k, true, k == n),
                Scan::More => (n, false, true),
                Scan::Invalid => {
                    server.record_error(&ProxyError::new(ProxyErrorKind::ServerProtocol(
                        "bad chunked body".into(),
                    )));
                    return Err(());
                }
            },
            _ => (n, false, false),
        };
        count_out(fe, server, send);
        let w = tokio::select! {
            biased;
            r = stream.write_all(&buf[..send]) => r,
            _ = poll_fn(|cx| watch.poll_cancelled(cx)) => return Err(()),
        };
        if w.is_err() {
            return Err(());
        }
        if end {
            return Ok(reusable);
        }
    }
}

/// Relay the rest of a request body from the client to the server, read
/// exactly (a pipelined request behind it stays in the socket). `Some` if
/// it could not be sent.
async fn send_rest_of_body(
    up: &mut TcpStream,
    client: &mut TcpStream,
    body_left: &mut u64,
    watch: &mut ReqWatch<'_>,
    deadline: &mut Pin<&mut Sleep>,
    fe: &FrontendRt,
    server: &crate::runtime::ServerShared,
) -> Option<Attempt> {
    let mut buf = vec![0u8; BODY_CHUNK.min(usize::try_from(*body_left).unwrap_or(BODY_CHUNK))];
    while *body_left > 0 {
        let want = buf
            .len()
            .min(usize::try_from(*body_left).unwrap_or(buf.len()));
        let r = tokio::select! {
            biased;
            r = tokio::time::timeout(fe.cfg.timeouts.client_idle, client.read(&mut buf[..want])) => r,
            _ = poll_fn(|cx| watch.poll_cancelled(cx)) => return Some(Attempt::Cancelled),
        };
        let n = match r {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Some(Attempt::ClientGone),
            Ok(Ok(n)) => n,
        };
        *body_left -= n as u64;
        fe.shared.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        fe.shared.metrics.bytes_in.increment(n as u64);
        server.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        server.metrics.bytes_in.increment(n as u64);
        let w = tokio::select! {
            biased;
            r = up.write_all(&buf[..n]) => r,
            i = poll_fn(|cx| watch.poll_interrupted(deadline, cx)) => return Some(interrupted(i)),
        };
        if let Err(e) = w {
            return Some(Attempt::Fail(ProxyError::new(ProxyErrorKind::ServerReset(
                e.to_string(),
            ))));
        }
    }
    None
}

fn count_out(fe: &FrontendRt, server: &crate::runtime::ServerShared, n: usize) {
    if n == 0 {
        return;
    }
    let n = n as u64;
    fe.shared.bytes_out.fetch_add(n, Ordering::Relaxed);
    fe.shared.metrics.bytes_out.increment(n);
    server.bytes_out.fetch_add(n, Ordering::Relaxed);
    server.metrics.bytes_out.increment(n);
}
