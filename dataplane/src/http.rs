//! HTTP frontends: HTTP/1.1 (with Upgrade passthrough, e.g. WebSocket) and
//! cleartext HTTP/2 with prior knowledge, served by hyper 1.x; requests go to
//! servers over HTTP/1.1 through a pooled keep-alive client.
//!
//! Client-side protections: the request head must arrive within
//! `client_header` (slowloris; hyper also applies it to an idle keep-alive
//! connection waiting for its next request), heads larger than `max_header_size` get 431,
//! malformed requests 400 (both answered by hyper's HTTP/1 parser).
//! Server-side: connect failures of idempotent requests without a body are
//! retried on another server; no server up gives 503 with a short body; a
//! server failing before a complete response head gives 502 and counts
//! against it; no answer within `server` gives 504.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use control::config::{ForwardedHeaders, FrontendConfig, HashKey};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::error::{ProxyError, ProxyErrorKind};
use crate::health::PassiveEvent;
use crate::runtime::{BackendRt, FrontendHandle, FrontendRt, FrontendShared, Lease, ServerShared};
use crate::shutdown::Shutdown;
use crate::tcp::{read_proxy_header, ConnGuard};

/// Boxed error of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
type UpBody = BoxBody<Bytes, hyper::Error>;
/// Body of responses sent to clients.
pub type RespBody = BoxBody<Bytes, BoxError>;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// hyper refuses an HTTP/1 read buffer smaller than this; the buffer is
/// twice the header limit so the limit, not the buffer, decides the 431.
const MIN_H1_BUF: usize = 8192;

/// Pooled keep-alive HTTP/1.1 client of one frontend.
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    client: Client<HttpConnector, UpBody>,
}

impl UpstreamClient {
    pub(crate) fn new(fe: &FrontendConfig) -> Self {
        let mut conn = HttpConnector::new();
        conn.set_connect_timeout(Some(fe.timeouts.connect));
        conn.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(fe.timeouts.client_idle.min(Duration::from_secs(90)))
            .build(conn);
        UpstreamClient { client }
    }
}

/// Accept loop of an `http` frontend on an already-bound listener.
pub async fn serve(listener: TcpListener, frontend: FrontendHandle, shutdown: Shutdown) {
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
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(frontend = %frontend.name(), error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let conn = ConnGuard::new(Arc::clone(&fe.shared));
        let (h, sd) = (frontend.clone(), shutdown.clone());
        frontend.inner.tracker.spawn(async move {
            let _permit = permit;
            let _conn = conn;
            serve_conn(stream, peer, h, fe, sd).await;
        });
    }
    tracing::info!(frontend = %frontend.name(), "listener stopped");
}

/// Whether the client starts with the HTTP/2 preface. `None`: it closed.
async fn is_h2(stream: &TcpStream) -> Option<bool> {
    let mut buf = [0u8; 24];
    loop {
        let n = stream.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Some(false);
        }
        if n == H2_PREFACE.len() {
            return Some(true);
        }
        // A partial preface: wait for more bytes (bounded by the caller).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn serve_conn(
    mut stream: TcpStream,
    peer: SocketAddr,
    handle: FrontendHandle,
    fe: Arc<FrontendRt>,
    shutdown: Shutdown,
) {
    let _ = stream.set_nodelay(true);
    let mut client = peer;
    if fe.cfg.accept_proxy_protocol {
        match read_proxy_header(&mut stream, fe.cfg.timeouts.client_header).await {
            Ok(Some((src, _))) => client = src,
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(frontend = %fe.cfg.name, client = %peer, error = %e, "bad PROXY header");
                return;
            }
        }
    }
    let h2 = match tokio::time::timeout(fe.cfg.timeouts.client_header, is_h2(&stream)).await {
        Ok(Some(h2)) => h2,
        _ => return,
    };
    let ctx = Arc::new(Ctx {
        handle,
        client,
        shutdown: shutdown.clone(),
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
}

struct Ctx {
    handle: FrontendHandle,
    client: SocketAddr,
    shutdown: Shutdown,
}

/// A short plain-text answer generated by halb.
pub(crate) fn simple(status: StatusCode, msg: &'static str) -> Response<RespBody> {
    let mut r = Response::new(
        Full::new(Bytes::from_static(msg.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
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

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        if keep_upgrade && name == header::UPGRADE {
            continue;
        }
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        if keep_upgrade && (name == "connection" || name == "upgrade") {
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

fn add_forwarded(
    headers: &mut HeaderMap,
    mode: ForwardedHeaders,
    client: SocketAddr,
    host: Option<&str>,
) {
    let ip = client.ip().to_canonical();
    if matches!(mode, ForwardedHeaders::XForwarded | ForwardedHeaders::Both) {
        let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prev) => format!("{prev}, {ip}"),
            None => ip.to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            headers.insert("x-forwarded-for", v);
        }
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        if let Some(v) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
            headers.insert("x-forwarded-host", v);
        }
    }
    if matches!(mode, ForwardedHeaders::Forwarded | ForwardedHeaders::Both) {
        let node = if ip.is_ipv6() {
            format!("\"[{ip}]\"")
        } else {
            ip.to_string()
        };
        let mut elem = format!("for={node};proto=http");
        if let Some(h) = host {
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
        let resp = self.forward(req, &fe, &be).await;
        fe.shared.count_response(resp.status().as_u16());
        fe.shared
            .metrics
            .duration
            .record(start.elapsed().as_secs_f64());
        resp
    }

    async fn forward(
        &self,
        mut req: Request<Incoming>,
        fe: &Arc<FrontendRt>,
        be: &Arc<BackendRt>,
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

        // The request head sent to servers.
        let method = parts.method.clone();
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".to_string());
        let mut headers = parts.headers;
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| parts.uri.authority().map(|a| a.to_string()));
        strip_hop_by_hop(&mut headers, upgrade);
        if !headers.contains_key(header::HOST) {
            if let Some(v) = host.as_deref().and_then(|h| HeaderValue::from_str(h).ok()) {
                headers.insert(header::HOST, v);
            }
        }
        add_forwarded(
            &mut headers,
            fe.cfg.forwarded_headers,
            self.client,
            host.as_deref(),
        );

        let body_empty = req_body.is_end_stream();
        let retryable = is_idempotent(&method) && body_empty;
        let mut body = (!body_empty).then_some(req_body);

        let mut tried = Vec::new();
        loop {
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
            let uri: Uri = match format!("http://{}{}", server.address, pq).parse() {
                Ok(u) => u,
                Err(_) => return simple(StatusCode::BAD_REQUEST, "400 bad request target\n"),
            };
            let up_body: UpBody = match body.take() {
                Some(b) => count_request_body(b, &fe.shared, &server),
                None => Empty::new().map_err(|never| match never {}).boxed(),
            };
            let mut up = Request::new(up_body);
            *up.method_mut() = method.clone();
            *up.uri_mut() = uri;
            *up.version_mut() = Version::HTTP_11;
            *up.headers_mut() = headers.clone();

            let sent = tokio::select! {
                r = tokio::time::timeout(fe.cfg.timeouts.server, client.client.request(up)) => r,
                _ = lease.drain.cancelled() => {
                    return error_response(&ProxyError::new(ProxyErrorKind::DrainTimeout));
                }
                _ = self.shutdown.aborted() => {
                    return error_response(&ProxyError::new(ProxyErrorKind::DrainTimeout));
                }
            };
            let resp = match sent {
                Err(_) => {
                    let e = ProxyError::new(ProxyErrorKind::ServerTimeout);
                    server.record_error(&e);
                    return error_response(&e);
                }
                Ok(Err(err)) => {
                    let e = if err.is_connect() {
                        ProxyError::new(ProxyErrorKind::ConnectFailed(err.to_string()))
                    } else {
                        ProxyError::new(ProxyErrorKind::ServerReset(err.to_string()))
                    };
                    tracing::debug!(backend = %be.cfg.name, server = %server.name, error = %e, "request to server failed");
                    server.record_error(&e);
                    tried.push(i);
                    if e.retry && retryable && tried.len() <= usize::from(be.cfg.connect_retries) {
                        be.shared.metrics.retries.increment(1);
                        continue;
                    }
                    return error_response(&e);
                }
                Ok(Ok(resp)) => resp,
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
                fe.cfg.timeouts.server,
                Arc::clone(&fe.shared),
            );
            return Response::from_parts(parts, body.boxed());
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
        Response::from_parts(parts, Empty::new().map_err(|never| match never {}).boxed())
    }
}

fn count_request_body(b: Incoming, fs: &Arc<FrontendShared>, server: &Arc<ServerShared>) -> UpBody {
    let (fs, server) = (Arc::clone(fs), Arc::clone(server));
    b.map_frame(move |f| {
        if let Some(d) = f.data_ref() {
            let n = d.len() as u64;
            fs.bytes_in.fetch_add(n, Ordering::Relaxed);
            fs.metrics.bytes_in.increment(n);
            server.bytes_in.fetch_add(n, Ordering::Relaxed);
            server.metrics.bytes_in.increment(n);
        }
        f
    })
    .boxed()
}

/// A server's response body on its way to the client: counts bytes, holds
/// the server lease until the end, fails on server idle timeout or when the
/// server's drain deadline passes, and counts a mid-body failure against the
/// server.
struct UpstreamBody {
    inner: Incoming,
    lease: Option<Lease>,
    drain: Pin<Box<WaitForCancellationFutureOwned>>,
    idle: Pin<Box<Sleep>>,
    idle_for: Duration,
    fs: Arc<FrontendShared>,
}

impl UpstreamBody {
    fn new(inner: Incoming, lease: Lease, idle_for: Duration, fs: Arc<FrontendShared>) -> Self {
        let drain = Box::pin(lease.drain.clone().cancelled_owned());
        UpstreamBody {
            inner,
            lease: Some(lease),
            drain,
            idle: Box::pin(tokio::time::sleep(idle_for)),
            idle_for,
            fs,
        }
    }

    fn fail(&mut self, e: ProxyError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(lease) = self.lease.take() {
            lease.server.record_error(&e);
        }
        Poll::Ready(Some(Err(Box::new(e))))
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
        if this.lease.is_none() {
            return Poll::Ready(None);
        }
        if this.drain.as_mut().poll(cx).is_ready() {
            return this.fail(ProxyError::new(ProxyErrorKind::DrainTimeout));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let deadline = Instant::now() + this.idle_for;
                this.idle.as_mut().reset(deadline);
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
            Poll::Ready(None) => {
                this.lease = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.idle.as_mut().poll(cx).is_ready() {
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
