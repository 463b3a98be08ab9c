//! HTTP frontends end to end with in-process servers.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use dataplane::{Runtime, ServerState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn http_config(
    servers: &[(&str, std::net::SocketAddr)],
    extra_backend: &str,
    extra_frontend: &str,
) -> String {
    let list: Vec<String> = servers
        .iter()
        .map(|(n, a)| format!("{{ name = \"{n}\", address = \"{a}\" }}"))
        .collect();
    format!(
        r#"
[[frontend]]
name = "web"
bind = "127.0.0.1:0"
mode = "http"
backend = "web"
{extra_frontend}

[[backend]]
name = "web"
servers = [ {} ]
health = {{ kind = "none" }}
{extra_backend}
"#,
        list.join(", ")
    )
}

async fn start(cfg: &str) -> (Runtime, std::net::SocketAddr) {
    let rt = Runtime::new().unwrap();
    rt.apply(&config(cfg)).unwrap();
    let addr = rt.local_addr("web").unwrap();
    (rt, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_over_three_servers_and_status_counts() {
    let s: Vec<TestServer> = vec![
        TestServer::start("s1").await,
        TestServer::start("s2").await,
        TestServer::start("s3").await,
    ];
    let (rt, addr) = start(&http_config(
        &[("s1", s[0].addr), ("s2", s[1].addr), ("s3", s[2].addr)],
        "",
        "",
    ))
    .await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for _ in 0..30 {
        let (status, body) = get(addr, "/").await.unwrap();
        assert_eq!(status, 200);
        *seen.entry(body).or_default() += 1;
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.values().all(|&c| c == 10), "{seen:?}");
    let st = rt.status();
    assert_eq!(st.frontends[0].requests, 30);
    assert_eq!(st.frontends[0].responses.c2xx, 30);
    let total: u64 = st.backends[0]
        .servers
        .iter()
        .map(|s| s.total_requests)
        .sum();
    assert_eq!(total, 30);
    assert!(st.frontends[0].bytes_out > 0);
    let json = serde_json::to_value(&st).unwrap();
    assert_eq!(json["backends"][0]["servers"][0]["state"], "UP");
    rt.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn forwarded_headers_are_added() {
    let s = TestServer::start("s1").await;
    let (rt, addr) = start(&http_config(
        &[("s1", s.addr)],
        "",
        "forwarded_headers = \"both\"",
    ))
    .await;
    let (status, body) = http_raw(
        addr,
        "GET /headers HTTP/1.1\r\nHost: example.org\r\nX-Forwarded-For: 10.9.9.9\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains("x-forwarded-for: 10.9.9.9, 127.0.0.1"),
        "{body}"
    );
    assert!(body.contains("x-forwarded-proto: http"), "{body}");
    assert!(body.contains("x-forwarded-host: example.org"), "{body}");
    assert!(
        body.contains("forwarded: for=127.0.0.1;proto=http;host=\"example.org\""),
        "{body}"
    );
    assert!(body.contains("host: example.org"), "{body}");
    rt.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn no_server_up_gives_503_with_short_body() {
    let s = TestServer::start("s1").await;
    let (rt, addr) = start(&http_config(&[("s1", s.addr)], "", "")).await;
    assert_eq!(
        rt.server_admin("web", "s1", dataplane::AdminAction::Disable)
            .unwrap(),
        ServerState::Maint
    );
    let (status, body) = get(addr, "/").await.unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("no server available"), "{body}");
    assert!(body.len() < 100);
    assert!(rt
        .server_admin("web", "nope", dataplane::AdminAction::Enable)
        .is_err());
    assert!(rt
        .server_admin("nope", "s1", dataplane::AdminAction::Enable)
        .is_err());
    rt.server_admin("web", "s1", dataplane::AdminAction::Enable)
        .unwrap();
    assert_eq!(get(addr, "/").await.unwrap().0, 200);
    rt.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn connect_failure_is_retried_on_another_server() {
    let good = TestServer::start("good").await;
    let dead = dead_addr().await;
    let (rt, addr) = start(&http_config(
        &[("dead", dead), ("good", good.addr)],
        "connect_retries = 1",
        "",
    ))
    .await;
    for _ in 0..6 {
        let (status, body) = get(addr, "/").await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, "good");
    }
    let st = rt.status();
    let dead_st = &st.backends[0].servers[0];
    assert!(dead_st.errors >= 3, "{dead_st:?}");
    // A POST with a body is not retried: it may fail, but never hangs.
    rt.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn server_reset_mid_response_gives_502_and_counts_against_server() {
    let (reset_addr, _t) = reset_server().await;
    let (rt, addr) = start(&http_config(
        &[("bad", reset_addr)],
        "connect_retries = 0",
        "",
    ))
    .await;
    let (status, _) = get(addr, "/").await.unwrap();
    assert_eq!(status, 502);
    let st = rt.status();
    assert_eq!(st.backends[0].servers[0].errors, 1);
    assert_eq!(st.frontends[0].responses.c5xx, 1);
    rt.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn passive_ejection_after_consecutive_5xx() {
    let s1 = TestServer::start("s1").await;
    let s2 = TestServer::start("s2").await;
    let (rt, addr) = start(&http_config(
        &[("s1", s1.addr), ("s2", s2.addr)],
        "outlier = { consecutive_failures = 2, ejection_time = \"30s\" }",
        "",
    ))
    .await;
    // Round robin: each server sees one 500; a second round ejects both.
    for _ in 0..4 {
        assert_eq!(get(addr, "/status500").await.unwrap().0, 500);
    }
    let st = rt.status();
    for s in &st.backends[0].servers {
        assert_eq!(s.state, ServerState::Down, "{s:?}");
        assert!(s.ejected_for_ms.is_some());
    }
    assert_eq!(get(addr, "/").await.unwrap().0, 503);
    rt.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn slowloris_is_cut_at_header_timeout() {
    let s = TestServer::start("s1").await;
    let (rt, addr) = start(&http_config(
        &[("s1", s.addr)],
        "",
        "timeouts = { client_header = \"300ms\" }",
    ))
    .await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = tokio::time::Instant::now();
    let mut closed = false;
    for b in head.iter() {
        if c.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if started.elapsed() > Duration::from_secs(10) {
            break;
        }
    }
    if !closed {
        // The write may have gone into the buffer; the read must see the close.
        let mut buf = Vec::new();
        let r = tokio::time::timeout(LONG, c.read_to_end(&mut buf)).await;
        let text = String::from_utf8_lossy(&buf).to_string();
        assert!(r.is_ok(), "connection still open");
        assert!(!text.contains("200 OK"), "slow request was served: {text}");
    }
    // The full head takes about 3.5 s to send; it was cut well before.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(s.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    rt.shutdown(Duration::from_secs(5)).await;
}

/// One response on a keep-alive connection: (status, body).
async fn read_response(c: &mut TcpStream) -> (u16, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = tokio::time::timeout(LONG, c.read(&mut buf))
            .await
            .expect("a response within LONG")
            .unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if body.len() >= len {
                let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                return (status, body.to_string());
            }
        }
    }
}

/// Seconds until the proxy closes `c` (reads nothing else).
async fn closed_after(c: &mut TcpStream, from: tokio::time::Instant) -> Duration {
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(LONG, c.read(&mut buf))
        .await
        .expect("closed within LONG")
        .unwrap_or(0);
    assert_eq!(n, 0, "unexpected bytes {:?}", &buf[..n]);
    from.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_park_resume_and_keep_their_timeouts() {
    let s = TestServer::start("s1").await;
    let (rt, addr) = start(&http_config(
        &[("s1", s.addr)],
        "",
        "timeouts = { client_header = \"1s\", client_idle = \"2s\" }",
    ))
    .await;
    let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    // Keep-alive requests after idle gaps longer than the park delay: each
    // gap parks the connection, each request brings it back.
    let mut c = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for round in 0..3 {
        c.write_all(req).await.unwrap();
        let (status, body) = read_response(&mut c).await;
        assert_eq!((status, body.as_str()), (200, "s1"), "round {round}");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // Idle after a request: closed at client_idle (2 s), parked meanwhile.
    let t = tokio::time::Instant::now();
    let after = closed_after(&mut c, t).await;
    assert!(
        after > Duration::from_millis(1000) && after < Duration::from_millis(3500),
        "idle keep-alive closed after {after:?} (client_idle 2s, 0.4 s already idle)"
    );

    // First request: the header deadline counts from the accept, across
    // the park. A head completed in time is served...
    let t = tokio::time::Instant::now();
    let mut c = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.write_all(b"Host: x\r\n\r\n").await.unwrap();
    assert_eq!(read_response(&mut c).await.0, 200);
    assert!(t.elapsed() < Duration::from_secs(1));
    // ...one that never sends a byte is closed at client_header (1 s).
    let t = tokio::time::Instant::now();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let after = closed_after(&mut silent, t).await;
    assert!(
        after > Duration::from_millis(800) && after < Duration::from_millis(2500),
        "silent connection closed after {after:?} (client_header 1s)"
    );
    // A head started after a park and never finished is cut at the
    // deadline counted from the accept, not from its first byte.
    let t = tokio::time::Instant::now();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    slow.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let after = closed_after(&mut slow, t).await;
    assert!(
        after > Duration::from_millis(800) && after < Duration::from_millis(1500),
        "unfinished head cut after {after:?} (client_header 1s from the accept)"
    );
    assert_eq!(s.hits.load(std::sync::atomic::Ordering::SeqCst), 4);

    // A graceful stop closes parked connections at once.
    let mut parked = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = tokio::time::Instant::now();
    let report = tokio::time::timeout(LONG, rt.shutdown(Duration::from_secs(10)))
        .await
        .unwrap();
    let after = closed_after(&mut parked, t).await;
    assert!(
        after < Duration::from_secs(2),
        "parked connection closed after {after:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{report:?}");
}

/// `Upgrade: h2c` (deprecated by RFC 9113 section 3.1; HAProxy and nginx
/// ignore it too) is answered over HTTP/1.1 and the connection stays
/// HTTP/1.1; HTTP/2 cleartext is served with prior knowledge (see
/// `h2c_prior_knowledge`).
#[tokio::test]
async fn h2c_upgrade_request_is_answered_over_http1() {
    let s = TestServer::start("s1").await;
    let (rt, addr) = start(&http_config(&[("s1", s.addr)], "", "")).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    )
    .await
    .unwrap();
    let (status, body) = read_response(&mut c).await;
    assert_eq!((status, body.as_str()), (200, "s1"));
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (status, body) = read_response(&mut c).await;
    assert_eq!((status, body.as_str()), (200, "s1"));
    assert_eq!(s.hits.load(std::sync::atomic::Ordering::SeqCst), 2);
    drop(c);
    rt.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let s = TestServer::start("s1").await;
    let (rt, addr) = start(&http_config(
        &[("s1", s.addr)],
        "",
        "max_header_size = 8192",
    ))
    .await;
    let big = "a".repeat(20_000);
    let (status, _) = http_raw(
        addr,
        &format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\nConnection: close\r\n\r\n"),
    )
    .await
    .unwrap();
    assert_eq!(status, 431);
    rt.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn malformed_request_gets_400() {
    let s = TestServer::start("s1").await;
    let (rt, addr) = start(&http_config(&[("s1", s.addr)], "", "")).await;
    let (status, _) = http_raw(addr, "GET / HTTP/1.1\r\nHost x\r\nBad Header\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert_eq!(s.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    rt.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn h2c_prior_knowledge() {
    use http_body_util::{BodyExt, Empty};
    let s = TestServer::start("s1").await;
    let (rt, addr) = start(&http_config(&[("s1", s.addr)], "", "")).await;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    for _ in 0..3 {
        let req = hyper::Request::builder()
            .uri(format!("http://{addr}/headers"))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), hyper::Version::HTTP_2);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains(&format!("host: {addr}")), "{body}");
    }
    rt.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn websocket_upgrade_passthrough() {
    let s = TestServer::start("s1").await;
    let (rt, addr) = start(&http_config(&[("s1", s.addr)], "", "")).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(LONG, c.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            n,
            1,
            "closed during head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for msg in [&b"hello"[..], b"second frame"] {
        c.write_all(msg).await.unwrap();
        let mut buf = vec![0u8; msg.len()];
        tokio::time::timeout(LONG, c.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(buf, msg);
    }
    drop(c);
    let report = rt.shutdown(Duration::from_secs(5)).await;
    assert!(report.drained, "the tunnel ends when the client closes");
}

#[tokio::test]
async fn post_body_reaches_server() {
    let s = TestServer::start("s1").await;
    let (rt, addr) = start(&http_config(&[("s1", s.addr)], "", "")).await;
    let (status, body) = http_raw(
        addr,
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await
    .unwrap();
    assert_eq!((status, body.as_str()), (200, "s1:hello"));
    assert_eq!(rt.status().frontends[0].bytes_in, 5);
    rt.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn maglev_header_key_is_sticky() {
    let s: Vec<TestServer> = vec![
        TestServer::start("a").await,
        TestServer::start("b").await,
        TestServer::start("c").await,
    ];
    let (rt, addr) = start(&http_config(
        &[("a", s[0].addr), ("b", s[1].addr), ("c", s[2].addr)],
        "algorithm = \"maglev\"\nhash_key = { header = \"x-user\" }\nmaglev_table_size = 251",
        "",
    ))
    .await;
    let mut owners = HashMap::new();
    for round in 0..3 {
        for user in 0..12 {
            let (status, body) = http_raw(
                addr,
                &format!(
                    "GET / HTTP/1.1\r\nHost: x\r\nX-User: u{user}\r\nConnection: close\r\n\r\n"
                ),
            )
            .await
            .unwrap();
            assert_eq!(status, 200);
            let prev = owners.insert(user, body.clone());
            if round > 0 {
                assert_eq!(prev.as_deref(), Some(body.as_str()), "user {user} moved");
            }
        }
    }
    let distinct: std::collections::HashSet<_> = owners.values().collect();
    assert!(distinct.len() >= 2, "all users on one server: {owners:?}");
    rt.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn proxy_protocol_accepted_on_http_frontend() {
    let s = TestServer::start("s1").await;
    let (rt, addr) = start(&http_config(
        &[("s1", s.addr)],
        "",
        "accept_proxy_protocol = true",
    ))
    .await;
    let (status, body) = http_raw(
        addr,
        "PROXY TCP4 203.0.113.9 198.51.100.1 5555 80\r\nGET /headers HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("x-forwarded-for: 203.0.113.9"), "{body}");
    rt.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn backup_server_only_when_primaries_are_down() {
    let p = TestServer::start("primary").await;
    let b = TestServer::start("backup").await;
    let cfg = format!(
        r#"
[[frontend]]
name = "web"
bind = "127.0.0.1:0"
mode = "http"
backend = "web"

[[backend]]
name = "web"
servers = [ {{ name = "p", address = "{}" }}, {{ name = "b", address = "{}", backup = true }} ]
health = {{ kind = "none" }}
"#,
        p.addr, b.addr
    );
    let (rt, addr) = start(&cfg).await;
    for _ in 0..4 {
        assert_eq!(get(addr, "/").await.unwrap().1, "primary");
    }
    rt.server_admin("web", "p", dataplane::AdminAction::Disable)
        .unwrap();
    for _ in 0..4 {
        assert_eq!(get(addr, "/").await.unwrap().1, "backup");
    }
    rt.shutdown(Duration::from_secs(5)).await;
}

/// A graceful stop (reload or upgrade of the process) closes idle
/// keep-alive connections at once, but a connection accepted before it and
/// still without its first request gets that request served if it
/// arrives within the grace: it may have been on its way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_serves_a_first_request_still_on_its_way() {
    let s = TestServer::start("s1").await;
    let (rt, addr) = start(&http_config(
        &[("s1", s.addr)],
        "",
        "timeouts = { client_header = \"10s\", client_idle = \"10s\" }",
    ))
    .await;
    let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(req).await.unwrap();
    assert_eq!(read_response(&mut idle).await.0, 200);
    // Accepted (and parked: no bytes yet) before the stop.
    let mut fresh = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let stop = tokio::spawn(async move { rt.shutdown(Duration::from_secs(10)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    fresh.write_all(req).await.unwrap();
    let (status, body) = read_response(&mut fresh).await;
    assert_eq!((status, body.as_str()), (200, "s1"));
    // The idle keep-alive connection was closed by the stop.
    let t = tokio::time::Instant::now();
    let after = closed_after(&mut idle, t).await;
    assert!(
        after < Duration::from_millis(500),
        "idle closed after {after:?}"
    );
    let report = tokio::time::timeout(LONG, stop).await.unwrap().unwrap();
    assert!(report.drained, "{report:?}");
}
