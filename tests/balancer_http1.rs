//! End-to-end: HTTP/1.1 through the real `halb` binary, byte for byte.
//!
//! Bodies of every framing (Content-Length over many reads, chunked relayed
//! as chunks, request bodies larger than one read, HEAD and 204 without a
//! body), pipelined requests, hop-by-hop fields, and the server connection
//! pool, all on one client connection; then the requests halb hands to
//! hyper (HTTP/1.0, chunked request bodies, malformed heads) and the
//! oversized head it refuses itself; and a graceful stop closing an idle
//! keep-alive connection at once.

mod balancer_support;
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use balancer_support::{frontend, pattern, server_state, servers_toml, Conn, HttpBackend};
use common::Node;
use testsupport::{Lab, Netns, Signal};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal address")
}

fn start(lab: &Lab, ns: &Netns, backend: &HttpBackend, front: SocketAddr) -> Node {
    let servers = [(backend.name.as_str(), backend.addr)];
    let config = format!(
        r#"[node]
name = "lb"
admin_socket = "{{socket}}"
worker_threads = 2
shutdown_timeout = "5s"

[[frontend]]
name = "web"
bind = "{front}"
mode = "http"
backend = "web"
max_header_size = 8192

[[backend]]
name = "web"
servers = [
{servers}]
health = {{ kind = "none" }}
"#,
        servers = servers_toml(&servers),
    );
    let node = Node::start(ns, lab.dir(), "lb", &config);
    node.wait_status("server UP", Duration::from_secs(10), |s| {
        server_state(s, "web", &backend.name) == "UP"
    });
    node
}

#[test]
fn bodies_of_every_framing_pipelining_and_pooling_on_one_connection(
) -> Result<(), Box<dyn std::error::Error>> {
    testsupport::require_root!("the daemon runs in a network namespace");
    let lab = Lab::new("bh1")?;
    let ns = lab.netns("lb")?;
    let front = addr("127.0.0.1:8080");
    let b = HttpBackend::start(&ns, "s1", addr("127.0.0.1:8101"));
    let node = start(&lab, &ns, &b, front);
    ns.wait_port(front, Duration::from_secs(10))?;
    let before = frontend(&node.status(), "web")["total_connections"]
        .as_u64()
        .expect("count");
    let mut c = Conn::open(&ns, front)?;

    // Content-Length body over many reads.
    let r = c.get("/big/1048576")?;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1048576"));
    assert!(r.body == pattern(1_048_576), "1 MiB body differs");

    // Chunked: relayed as chunks, decoded here.
    let r = c.get("/chunked/300000")?;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("transfer-encoding"),
        Some("chunked"),
        "{:?}",
        r.headers
    );
    assert!(r.body == pattern(300_000), "chunked body differs");

    // A request body far larger than one read.
    let up = pattern(2 << 20);
    let r = c.post("/echo", &up)?;
    assert_eq!(r.status, 200);
    assert!(
        r.body == up,
        "echoed body differs ({} bytes back)",
        r.body.len()
    );

    // No body: HEAD and 204; the connection stays in step.
    let r = c.request("HEAD", "/big/5000", false)?;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("5000"));
    let r = c.get("/nobody")?;
    assert_eq!(r.status, 204);
    assert_eq!(c.get("/big/7")?.body, pattern(7));

    // Three pipelined requests in one write, answered in order.
    c.send(
        b"GET /big/10 HTTP/1.1\r\nHost: t\r\n\r\nGET /chunked/20000 HTTP/1.1\r\nHost: t\r\n\r\nGET /big/30 HTTP/1.1\r\nHost: t\r\n\r\n",
    )?;
    for n in [10usize, 20_000, 30] {
        let r = c.response(false)?;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, pattern(n), "pipelined response of {n} bytes");
    }

    // Hop-by-hop fields (and those named in Connection) stay here; the
    // forwarding fields are added.
    c.send(
        b"GET /headers HTTP/1.1\r\nHost: example.org\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: x\r\nTE: trailers\r\nX-Kept: yes\r\n\r\n",
    )?;
    let r = c.response(false)?;
    let seen = r.text();
    for gone in [
        "x-secret",
        "keep-alive",
        "proxy-connection",
        "connection",
        "te",
    ] {
        assert!(
            !seen.lines().any(|l| l == gone),
            "{gone} reached the server:\n{seen}"
        );
    }
    for kept in [
        "host",
        "x-kept",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
    ] {
        assert!(seen.lines().any(|l| l == kept), "{kept} missing:\n{seen}");
    }

    // All of it on one client connection, over pooled server connections.
    let s = node.status();
    let f = frontend(&s, "web");
    assert_eq!(
        f["total_connections"].as_u64().expect("count") - before,
        1,
        "{f:#}"
    );
    assert_eq!(f["requests"], 10, "{f:#}");
    assert_eq!(f["responses"]["c2xx"], 10, "{f:#}");
    let server_conns = b.hits.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        server_conns <= 2,
        "{server_conns} server connections for 10 sequential requests"
    );
    assert!(!c.peer_closed(), "halb closed a keep-alive connection");
    Ok(())
}

#[test]
fn unusual_requests_go_to_hyper_and_oversized_heads_get_431(
) -> Result<(), Box<dyn std::error::Error>> {
    testsupport::require_root!("the daemon runs in a network namespace");
    let lab = Lab::new("bh1odd")?;
    let ns = lab.netns("lb")?;
    let front = addr("127.0.0.1:8080");
    let b = HttpBackend::start(&ns, "s1", addr("127.0.0.1:8101"));
    let _node = start(&lab, &ns, &b, front);
    ns.wait_port(front, Duration::from_secs(10))?;

    // HTTP/1.0 without keep-alive: answered, then closed.
    let mut c = Conn::open(&ns, front)?;
    c.send(b"GET /big/100 HTTP/1.0\r\nHost: t\r\n\r\n")?;
    let raw = c.read_to_close()?;
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
    assert!(raw.ends_with(&pattern(100)), "HTTP/1.0 body");

    // A chunked request body (hyper decodes it) after a fast-path request
    // on the same connection: the hand-over keeps the bytes in order.
    let mut c = Conn::open(&ns, front)?;
    assert_eq!(c.get("/big/3")?.body, pattern(3));
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")?;
    let r = c.response(false)?;
    assert_eq!((r.status, r.text().as_str()), (200, "hello world"));
    assert_eq!(
        c.get("/big/4")?.body,
        pattern(4),
        "hyper keeps the connection going"
    );

    // Malformed: 400 from hyper, nothing reaches the server.
    let before = b.requests();
    let mut c = Conn::open(&ns, front)?;
    c.send(b"GET / HTTP/1.1\r\nHost x\r\nBad Header\r\n\r\n")?;
    assert_eq!(c.response(false)?.status, 400);
    assert_eq!(b.requests(), before);

    // Too large a head: 431, and the answer is read in full even though the
    // client was still sending (no reset before it).
    let mut c = Conn::open(&ns, front)?;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40_000)
    );
    let _ = c.send(big.as_bytes());
    let r = c.response(false)?;
    assert_eq!(r.status, 431);
    assert_eq!(b.requests(), before);
    Ok(())
}

#[test]
fn graceful_stop_closes_idle_keep_alive_connections_at_once(
) -> Result<(), Box<dyn std::error::Error>> {
    testsupport::require_root!("the daemon runs in a network namespace");
    let lab = Lab::new("bh1stop")?;
    let ns = lab.netns("lb")?;
    let front = addr("127.0.0.1:8080");
    let b = HttpBackend::start(&ns, "s1", addr("127.0.0.1:8101"));
    let mut node = start(&lab, &ns, &b, front);
    ns.wait_port(front, Duration::from_secs(10))?;
    let mut idle = Conn::open(&ns, front)?;
    assert_eq!(idle.get("/big/5")?.status, 200);
    let mut fresh = Conn::open(&ns, front)?; // connected, nothing sent yet
    let stopped = Instant::now();
    node.signal(Signal::SIGTERM);
    // Both idle connections see the close well before any timeout (the
    // client_idle default is 60 s, shutdown_timeout 5 s).
    assert!(idle.read_to_close()?.is_empty());
    assert!(fresh.read_to_close()?.is_empty());
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "idle connections closed after {took:?}"
    );
    let mut child = node.child.take().expect("running");
    let code = child.wait_exit(Duration::from_secs(10))?.code();
    assert_eq!(code, Some(0), "graceful stop exit code");
    Ok(())
}
