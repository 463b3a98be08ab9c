//! In-process servers and clients for the data-plane tests (127.0.0.1, port 0).
#![allow(dead_code, clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

pub const LONG: Duration = Duration::from_secs(20);

/// Parse a config made of `body` (frontends and backends) under a `[node]`.
pub fn config(body: &str) -> control::config::Config {
    let text = format!("[node]\nname = \"test\"\n\n{body}");
    match control::config::parse(&text, "test.toml") {
        Ok(c) => c,
        Err(e) => panic!("bad test config: {e}\n{text}"),
    }
}

/// An HTTP test server that answers with its name.
pub struct TestServer {
    pub name: String,
    pub addr: SocketAddr,
    pub healthy: Arc<AtomicBool>,
    pub hits: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    pub async fn start(name: &str) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::on(name, listener)
    }

    pub fn on(name: &str, listener: TcpListener) -> TestServer {
        let addr = listener.local_addr().unwrap();
        let healthy = Arc::new(AtomicBool::new(true));
        let hits = Arc::new(AtomicU64::new(0));
        let (n, h, c) = (name.to_string(), healthy.clone(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (n, h, c) = (n.clone(), h.clone(), c.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let (n, h, c) = (n.clone(), h.clone(), c.clone());
                        async move { Ok::<_, Infallible>(answer(req, &n, &h, &c).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        TestServer {
            name: name.to_string(),
            addr,
            healthy,
            hits,
            task,
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

async fn answer(
    mut req: Request<Incoming>,
    name: &str,
    healthy: &AtomicBool,
    hits: &AtomicU64,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    if path == "/healthz" {
        return if healthy.load(Ordering::SeqCst) {
            text(StatusCode::OK, format!("ok {name}"))
        } else {
            text(StatusCode::SERVICE_UNAVAILABLE, "sick".into())
        };
    }
    hits.fetch_add(1, Ordering::SeqCst);
    if path == "/echo" {
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return text(
            StatusCode::OK,
            format!("{name}:{}", String::from_utf8_lossy(&body)),
        );
    }
    match path.as_str() {
        "/slow" => {
            let ms: u64 = query
                .strip_prefix("ms=")
                .and_then(|v| v.parse().ok())
                .unwrap_or(500);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            text(StatusCode::OK, name.to_string())
        }
        "/headers" => {
            let mut out = String::new();
            for h in [
                "host",
                "x-forwarded-for",
                "x-forwarded-proto",
                "x-forwarded-host",
                "forwarded",
                "connection",
            ] {
                if let Some(v) = req.headers().get(h) {
                    out.push_str(&format!("{h}: {}\n", v.to_str().unwrap_or("?")));
                }
            }
            text(StatusCode::OK, out)
        }
        "/status500" => text(StatusCode::INTERNAL_SERVER_ERROR, "boom".into()),
        "/ws" => {
            let up = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = up.await {
                    let mut io = TokioIo::new(up);
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            let mut r = text(StatusCode::SWITCHING_PROTOCOLS, String::new());
            r.headers_mut()
                .insert("upgrade", "websocket".parse().unwrap());
            r.headers_mut()
                .insert("connection", "upgrade".parse().unwrap());
            r
        }
        _ => text(StatusCode::OK, name.to_string()),
    }
}

/// A server that reads a request, sends half a response head, then resets.
pub async fn reset_server() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Le").await;
                let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                drop(s);
            });
        }
    });
    (addr, task)
}

/// A TCP server that reads until EOF, then answers `echo:<all it read>` and
/// closes: it only answers if the half-close reached it.
pub async fn tcp_echo_after_eof() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut all = Vec::new();
                if s.read_to_end(&mut all).await.is_ok() {
                    let mut out = b"echo:".to_vec();
                    out.extend_from_slice(&all);
                    let _ = s.write_all(&out).await;
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    (addr, task)
}

/// A TCP server that records the first bytes it gets (e.g. a PROXY header)
/// and sends them back, then closes.
pub async fn tcp_record_first() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut all = Vec::new();
                let _ = s.read_to_end(&mut all).await;
                let _ = s.write_all(&all).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, task)
}

/// A UDP server that answers `<name>:<payload>`.
pub async fn udp_echo(name: &'static str) -> (SocketAddr, JoinHandle<()>) {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = s.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, peer)) = s.recv_from(&mut buf).await {
            let mut out = format!("{name}:").into_bytes();
            out.extend_from_slice(&buf[..n]);
            let _ = s.send_to(&out, peer).await;
        }
    });
    (addr, task)
}

/// A port on 127.0.0.1 with nothing listening.
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

/// Raw HTTP/1.1 exchange with `Connection: close`: (status, body text).
pub async fn http_raw(addr: SocketAddr, request: &str) -> std::io::Result<(u16, String)> {
    tokio::time::timeout(LONG, async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(request.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        let text = String::from_utf8_lossy(&buf).to_string();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no status in {text:?}")))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    })
    .await
    .map_err(|_| std::io::Error::other("timeout"))?
}

/// GET `path` through `addr`.
pub async fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    http_raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// Poll `f` every 20 ms until it is true or `LONG` passes.
pub async fn wait_until<F: FnMut() -> bool>(mut f: F) -> bool {
    let end = tokio::time::Instant::now() + LONG;
    while tokio::time::Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
