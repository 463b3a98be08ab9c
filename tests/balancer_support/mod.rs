//! Shared pieces of the balancer end-to-end tests (`tests/balancer_*.rs`):
//! backends that run inside a lab namespace (HTTP, TCP echo, UDP echo), a
//! small blocking HTTP/1.1 client that keeps its connection alive, nginx as
//! a real peer, and helpers that read `halb status --json`.
//!
//! Everything listens on 127.0.0.1 inside a namespace the test created, so
//! fixed ports never collide with anything outside the lab.
#![allow(dead_code)]

use std::convert::Infallible;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use testsupport::{Netns, NsChild, NsRuntime};

/// Per-request socket timeout of the test client: far above any expected
/// latency, so a hang is a failure rather than a stuck test.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// HTTP backend

/// Counters of one [`HttpBackend`], shared with its server tasks.
#[derive(Debug, Default)]
pub struct Hits {
    /// Requests other than health checks.
    pub requests: AtomicU64,
    /// Health-check requests (`/healthz`).
    pub checks: AtomicU64,
    /// `/slow/<ms>` requests that have arrived (counted before the sleep).
    pub slow_started: AtomicU64,
    /// `/slow/<ms>` requests answered.
    pub slow_done: AtomicU64,
    /// TCP connections accepted.
    pub connections: AtomicU64,
}

/// An HTTP/1.1 server inside a namespace, answering every request with its
/// own name. `GET /healthz` is the health check, `GET /slow/<ms>` answers
/// after `<ms>` milliseconds. Each response carries `x-server: <name>` and
/// echoes the `X-Forwarded-For` it received as `x-seen-xff`.
///
/// For framing checks: `/big/<n>` answers `n` bytes of [`pattern`] with a
/// `Content-Length`, `/chunked/<n>` the same bytes in chunked coding (length
/// unknown up front), `/echo` returns the request body, `/nobody` is a 204,
/// `/headers` lists the request's header names, one per line.
///
/// It runs on its own runtime thread, so [`HttpBackend::kill`] closes its
/// listener and every connection at once, like a crashed process.
pub struct HttpBackend {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<Hits>,
    rt: Option<NsRuntime>,
}

impl HttpBackend {
    pub fn start(ns: &Netns, name: &str, addr: SocketAddr) -> HttpBackend {
        let rt = ns.tokio_runtime().expect("runtime in namespace");
        let listener = rt
            .block_on(async move { tokio::net::TcpListener::bind(addr).await })
            .unwrap_or_else(|e| panic!("backend {name}: bind {addr}: {e}"));
        let hits = Arc::new(Hits::default());
        let (n, h) = (Arc::<str>::from(name), Arc::clone(&hits));
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                h.connections.fetch_add(1, Ordering::SeqCst);
                let (n, h) = (Arc::clone(&n), Arc::clone(&h));
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let (n, h) = (Arc::clone(&n), Arc::clone(&h));
                        async move { Ok::<_, Infallible>(answer(req, &n, &h).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        HttpBackend {
            name: name.to_string(),
            addr,
            hits,
            rt: Some(rt),
        }
    }

    /// Stop the server abruptly: the listener and every open connection close.
    pub fn kill(&mut self) {
        self.rt.take();
    }

    pub fn requests(&self) -> u64 {
        self.hits.requests.load(Ordering::SeqCst)
    }
}

/// Test body bytes: position modulo 251 (a prime, so chunk boundaries
/// never line up with the pattern).
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A body of `left` pattern bytes in 7,000-byte frames with no length
/// announced, so hyper sends it chunked.
struct Chunks {
    data: Bytes,
    at: usize,
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        if self.at >= self.data.len() {
            return std::task::Poll::Ready(None);
        }
        let end = (self.at + 7000).min(self.data.len());
        let frame = self.data.slice(self.at..end);
        self.at = end;
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(frame))))
    }
}

async fn answer(req: Request<Incoming>, name: &str, hits: &Hits) -> Response<TestBody> {
    use http_body_util::BodyExt;
    let path = req.uri().path().to_string();
    let sized = |n: &str| n.parse::<usize>().unwrap_or(0).min(64 << 20);
    if let Some(n) = path.strip_prefix("/big/") {
        hits.requests.fetch_add(1, Ordering::SeqCst);
        let body = Full::new(Bytes::from(pattern(sized(n)))).boxed();
        return with_name(Response::new(body), name);
    }
    if let Some(n) = path.strip_prefix("/chunked/") {
        hits.requests.fetch_add(1, Ordering::SeqCst);
        let body = Chunks {
            data: Bytes::from(pattern(sized(n))),
            at: 0,
        }
        .boxed();
        return with_name(Response::new(body), name);
    }
    if path == "/echo" {
        hits.requests.fetch_add(1, Ordering::SeqCst);
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return with_name(Response::new(Full::new(body).boxed()), name);
    }
    if path == "/nobody" {
        hits.requests.fetch_add(1, Ordering::SeqCst);
        let mut r = Response::new(Full::new(Bytes::new()).boxed());
        *r.status_mut() = StatusCode::NO_CONTENT;
        return with_name(r, name);
    }
    if path == "/headers" {
        hits.requests.fetch_add(1, Ordering::SeqCst);
        let names: String = req
            .headers()
            .keys()
            .map(|k| format!("{}\n", k.as_str()))
            .collect();
        return with_name(Response::new(Full::new(Bytes::from(names)).boxed()), name);
    }
    let resp = answer_text(req, name, hits).await;
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, body.boxed())
}

fn with_name(mut r: Response<TestBody>, name: &str) -> Response<TestBody> {
    if let Ok(v) = hyper::header::HeaderValue::from_str(name) {
        r.headers_mut().insert("x-server", v);
    }
    r
}

async fn answer_text(req: Request<Incoming>, name: &str, hits: &Hits) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    if path == "/healthz" {
        hits.checks.fetch_add(1, Ordering::SeqCst);
        return text(StatusCode::OK, "ok\n".to_string(), name, None);
    }
    hits.requests.fetch_add(1, Ordering::SeqCst);
    let xff = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(ms) = path.strip_prefix("/slow/") {
        let ms: u64 = ms.parse().unwrap_or(0);
        hits.slow_started.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        hits.slow_done.fetch_add(1, Ordering::SeqCst);
    }
    text(StatusCode::OK, format!("{name}\n"), name, xff)
}

fn text(
    status: StatusCode,
    body: String,
    name: &str,
    xff: Option<String>,
) -> Response<Full<Bytes>> {
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .header("x-server", name);
    if let Some(x) = xff {
        b = b.header("x-seen-xff", x);
    }
    b.body(Full::new(Bytes::from(body)))
        .expect("static response parts")
}

// ---------------------------------------------------------------------------
// L4 backends

/// A TCP server inside a namespace: greets with `<name>\n`, echoes every
/// byte it reads, and after the client's FIN writes `bye <name> <n>\n` (n =
/// bytes received) and closes. That last line proves the half-close went
/// through the balancer in both directions.
pub struct TcpEcho {
    pub name: String,
    pub addr: SocketAddr,
    pub connections: Arc<AtomicU64>,
    _rt: NsRuntime,
}

impl TcpEcho {
    pub fn start(ns: &Netns, name: &str, addr: SocketAddr) -> TcpEcho {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let rt = ns.tokio_runtime().expect("runtime in namespace");
        let listener = rt
            .block_on(async move { tokio::net::TcpListener::bind(addr).await })
            .unwrap_or_else(|e| panic!("tcp echo {name}: bind {addr}: {e}"));
        let connections = Arc::new(AtomicU64::new(0));
        let (n, c) = (name.to_string(), Arc::clone(&connections));
        rt.spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let n = n.clone();
                tokio::spawn(async move {
                    if s.write_all(format!("{n}\n").as_bytes()).await.is_err() {
                        return;
                    }
                    let mut total = 0usize;
                    let mut buf = [0u8; 4096];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) => break,
                            Ok(k) => {
                                total += k;
                                if s.write_all(&buf[..k]).await.is_err() {
                                    return;
                                }
                            }
                            Err(_) => return,
                        }
                    }
                    let _ = s.write_all(format!("bye {n} {total}\n").as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        TcpEcho {
            name: name.to_string(),
            addr,
            connections,
            _rt: rt,
        }
    }
}

/// A UDP server inside a namespace answering each datagram `d` with
/// `<name>:d`.
pub struct UdpEcho {
    pub name: String,
    pub addr: SocketAddr,
    pub datagrams: Arc<AtomicU64>,
    _rt: NsRuntime,
}

impl UdpEcho {
    pub fn start(ns: &Netns, name: &str, addr: SocketAddr) -> UdpEcho {
        let rt = ns.tokio_runtime().expect("runtime in namespace");
        let socket = rt
            .block_on(async move { tokio::net::UdpSocket::bind(addr).await })
            .unwrap_or_else(|e| panic!("udp echo {name}: bind {addr}: {e}"));
        let datagrams = Arc::new(AtomicU64::new(0));
        let (n, d) = (name.to_string(), Arc::clone(&datagrams));
        rt.spawn(async move {
            let mut buf = vec![0u8; 65_535];
            loop {
                let Ok((k, peer)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                d.fetch_add(1, Ordering::SeqCst);
                let mut out = format!("{n}:").into_bytes();
                out.extend_from_slice(&buf[..k]);
                let _ = socket.send_to(&out, peer).await;
            }
        });
        UdpEcho {
            name: name.to_string(),
            addr,
            datagrams,
            _rt: rt,
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP client

/// One HTTP response as the client saw it.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the server said it closes the connection after this response.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// A client connection that sends HTTP/1.1 requests one after another on
/// the same TCP connection (keep-alive), like wrk does.
pub struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    /// Connect from inside `ns`. The socket belongs to the namespace and can
    /// then be used from any thread.
    pub fn open(ns: &Netns, addr: SocketAddr) -> io::Result<Conn> {
        ns.run(move || Conn::connect(addr))
            .map_err(|e| io::Error::other(e.to_string()))?
    }

    /// Connect from the calling thread's namespace.
    pub fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        s.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        })
    }

    /// `GET path` keeping the connection open.
    pub fn get(&mut self, path: &str) -> io::Result<Resp> {
        self.request("GET", path, false)
    }

    /// One request; `close` asks the server to close afterwards.
    pub fn request(&mut self, method: &str, path: &str, close: bool) -> io::Result<Resp> {
        let conn = if close { "close" } else { "keep-alive" };
        write!(
            self.writer,
            "{method} {path} HTTP/1.1\r\nHost: test\r\nUser-Agent: halb-e2e\r\nConnection: {conn}\r\n\r\n"
        )?;
        self.writer.flush()?;
        read_response(&mut self.reader, method == "HEAD")
    }

    /// Write raw bytes (e.g. several pipelined requests).
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)?;
        self.writer.flush()
    }

    /// Read one response; `head_only` for the answer to a HEAD.
    pub fn response(&mut self, head_only: bool) -> io::Result<Resp> {
        read_response(&mut self.reader, head_only)
    }

    /// `POST path` with `body`, keeping the connection open.
    pub fn post(&mut self, path: &str, body: &[u8]) -> io::Result<Resp> {
        write!(
            self.writer,
            "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )?;
        self.writer.write_all(body)?;
        self.writer.flush()?;
        read_response(&mut self.reader, false)
    }

    /// Read until the server closes; the bytes that came.
    pub fn read_to_close(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.reader.read_to_end(&mut out)?;
        Ok(out)
    }

    /// The local address (tells connections apart).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.writer.local_addr()
    }

    /// Whether the peer closed the connection (a read would return EOF now).
    pub fn peer_closed(&mut self) -> bool {
        let _ = self.writer.set_nonblocking(true);
        let mut b = [0u8; 1];
        let closed = matches!(self.writer.peek(&mut b), Ok(0));
        let _ = self.writer.set_nonblocking(false);
        closed
    }

    pub fn shutdown(&self) {
        let _ = self.writer.shutdown(Shutdown::Both);
    }
}

/// One request on a fresh connection from inside `ns`.
pub fn get_once(ns: &Netns, addr: SocketAddr, path: &str) -> io::Result<Resp> {
    let path = path.to_string();
    ns.run(move || Conn::connect(addr)?.request("GET", &path, true))
        .map_err(|e| io::Error::other(e.to_string()))?
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    let n = r.read_line(&mut line)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a complete response",
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Reads one response: status line, headers, and a body delimited by
/// `Transfer-Encoding: chunked`, `Content-Length` or the end of the stream.
pub fn read_response(r: &mut impl BufRead, head_only: bool) -> io::Result<Resp> {
    let status_line = read_line(r)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(bad(format!("not an HTTP/1 status line: {status_line:?}")));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line: {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            break;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header line: {line:?}")))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(resp);
    }
    let chunked = resp
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            let size_line = read_line(r)?;
            let size_hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| bad(format!("bad chunk size {size_line:?}")))?;
            if size == 0 {
                // Trailers, then the empty line.
                while !read_line(r)?.is_empty() {}
                break;
            }
            let at = resp.body.len();
            resp.body.resize(at + size, 0);
            r.read_exact(&mut resp.body[at..])?;
            if !read_line(r)?.is_empty() {
                return Err(bad("chunk not followed by CRLF".into()));
            }
        }
    } else if let Some(len) = resp.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| bad(format!("bad content-length {len:?}")))?;
        resp.body.resize(len, 0);
        r.read_exact(&mut resp.body)?;
    } else {
        r.read_to_end(&mut resp.body)?;
    }
    Ok(resp)
}

// ---------------------------------------------------------------------------
// Status JSON

/// The server entry `backend/server` of a `halb status --json` document.
pub fn server<'a>(status: &'a Value, backend: &str, server: &str) -> &'a Value {
    status["dataplane"]["backends"]
        .as_array()
        .and_then(|bs| bs.iter().find(|b| b["name"] == backend))
        .and_then(|b| b["servers"].as_array())
        .and_then(|ss| ss.iter().find(|s| s["name"] == server))
        .unwrap_or(&Value::Null)
}

/// The effective state ("UP", "DOWN", "DRAIN", "MAINT") of a server.
pub fn server_state(status: &Value, backend: &str, name: &str) -> String {
    server(status, backend, name)["state"]
        .as_str()
        .unwrap_or("absent")
        .to_string()
}

/// The frontend entry called `name`.
pub fn frontend<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["dataplane"]["frontends"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["name"] == name))
        .unwrap_or(&Value::Null)
}

/// Names of the servers of `backend` in the status.
pub fn server_names(status: &Value, backend: &str) -> Vec<String> {
    status["dataplane"]["backends"]
        .as_array()
        .and_then(|bs| bs.iter().find(|b| b["name"] == backend))
        .and_then(|b| b["servers"].as_array())
        .map(|ss| {
            ss.iter()
                .filter_map(|s| s["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `servers = [...]` entries for a backend.
pub fn servers_toml(servers: &[(&str, SocketAddr)]) -> String {
    servers
        .iter()
        .map(|(n, a)| format!("  {{ name = \"{n}\", address = \"{a}\" }},\n"))
        .collect()
}

/// Replace a file atomically (the daemon may read it at any time).
pub fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(&tmp, path).expect("rename config");
}

/// Poll `f` until it returns `Some`, at most `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------
// nginx

/// An nginx master process inside a namespace, with its prefix, config,
/// pid file, temp directories and error log under `dir` (the lab's scratch
/// directory). Killed with its workers on drop.
pub struct Nginx {
    pub prefix: PathBuf,
    pub child: NsChild,
}

impl Nginx {
    /// Start nginx with `http_body` inside `http { }`; waits for `wait_for`
    /// to accept.
    pub fn start(
        ns: &Netns,
        dir: &Path,
        tag: &str,
        http_body: &str,
        wait_for: &[SocketAddr],
    ) -> Nginx {
        let prefix = dir.join(format!("nginx-{tag}"));
        for sub in ["logs", "tmp"] {
            std::fs::create_dir_all(prefix.join(sub)).expect("nginx dirs");
        }
        let p = prefix.display();
        let conf = format!(
            "user root;\n\
             worker_processes 1;\n\
             error_log {p}/logs/error.log info;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n\
               access_log {p}/logs/access.log;\n\
               client_body_temp_path {p}/tmp/body;\n\
               proxy_temp_path {p}/tmp/proxy;\n\
               fastcgi_temp_path {p}/tmp/fastcgi;\n\
               uwsgi_temp_path {p}/tmp/uwsgi;\n\
               scgi_temp_path {p}/tmp/scgi;\n\
               {http_body}\n\
             }}\n"
        );
        let conf_path = prefix.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let child = ns
            .command("nginx")
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf_path)
            .arg("-g")
            .arg(format!("daemon off; pid {p}/nginx.pid;"))
            .spawn()
            .expect("spawn nginx");
        for a in wait_for {
            if let Err(e) = ns.wait_port(*a, Duration::from_secs(10)) {
                let log =
                    std::fs::read_to_string(prefix.join("logs/error.log")).unwrap_or_default();
                panic!(
                    "nginx did not listen on {a}: {e}\noutput: {}\nerror.log:\n{log}",
                    child.output_so_far()
                );
            }
        }
        Nginx { prefix, child }
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.prefix.join("logs/error.log")).unwrap_or_default()
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.prefix.join("logs/access.log")).unwrap_or_default()
    }
}
