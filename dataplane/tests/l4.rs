//! TCP and UDP frontends end to end.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use dataplane::proxy_protocol;
use dataplane::Runtime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

fn tcp_config(servers: &[(&str, SocketAddr)], extra_backend: &str, extra_frontend: &str) -> String {
    let list: Vec<String> = servers
        .iter()
        .map(|(n, a)| format!("{{ name = \"{n}\", address = \"{a}\" }}"))
        .collect();
    format!(
        r#"
[[frontend]]
name = "l4"
bind = "127.0.0.1:0"
mode = "tcp"
backend = "pool"
{extra_frontend}

[[backend]]
name = "pool"
servers = [ {} ]
health = {{ kind = "none" }}
{extra_backend}
"#,
        list.join(", ")
    )
}

async fn exchange(addr: SocketAddr, prefix: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(prefix).await.unwrap();
    c.write_all(payload).await.unwrap();
    // Half-close: the server answers only once it sees our FIN.
    // A refused connection may already be reset: that reads as empty.
    let _ = c.shutdown().await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(LONG, c.read_to_end(&mut out))
        .await
        .unwrap();
    out
}

#[tokio::test]
async fn tcp_half_close_is_passed_both_ways() {
    let (echo, _t) = tcp_echo_after_eof().await;
    let rt = Runtime::new().unwrap();
    rt.apply(&config(&tcp_config(
        &[("e", echo)],
        "",
        "buffer_size = 1024",
    )))
    .unwrap();
    let addr = rt.local_addr("l4").unwrap();
    let payload = vec![b'x'; 100_000];
    let out = exchange(addr, b"", &payload).await;
    assert_eq!(out.len(), 5 + payload.len());
    assert!(out.starts_with(b"echo:"));
    let st = rt.status();
    assert!(common::wait_until(|| rt.status().frontends[0].active_connections == 0).await);
    assert_eq!(st.frontends[0].bytes_in, 100_000);
    assert_eq!(st.backends[0].servers[0].total_requests, 1);
    rt.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn tcp_retry_on_connect_failure() {
    let (echo, _t) = tcp_echo_after_eof().await;
    let dead = dead_addr().await;
    let rt = Runtime::new().unwrap();
    rt.apply(&config(&tcp_config(
        &[("a-dead", dead), ("b-echo", echo)],
        "connect_retries = 2",
        "",
    )))
    .unwrap();
    let addr = rt.local_addr("l4").unwrap();
    for _ in 0..4 {
        assert_eq!(exchange(addr, b"", b"hi").await, b"echo:hi");
    }
    assert!(rt.status().backends[0].servers[0].errors >= 2);
    rt.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn proxy_protocol_v1_and_v2_sent_to_server() {
    let (rec, _t) = tcp_record_first().await;
    for (version, v2) in [("v1", false), ("v2", true)] {
        let rt = Runtime::new().unwrap();
        rt.apply(&config(&tcp_config(
            &[("r", rec)],
            &format!("send_proxy_protocol = \"{version}\""),
            "",
        )))
        .unwrap();
        let addr = rt.local_addr("l4").unwrap();
        let mut c = TcpStream::connect(addr).await.unwrap();
        let me = c.local_addr().unwrap();
        c.write_all(b"data").await.unwrap();
        c.shutdown().await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(LONG, c.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
        let (h, n) = proxy_protocol::parse(&out).unwrap().unwrap();
        assert_eq!(h.addresses, Some((me, addr)), "{version}");
        assert_eq!(&out[n..], b"data");
        assert_eq!(out.starts_with(&proxy_protocol::V2_SIGNATURE), v2);
        rt.shutdown(Duration::from_secs(5)).await;
    }
}

#[tokio::test]
async fn proxy_protocol_accepted_from_client_and_forwarded() {
    let (rec, _t) = tcp_record_first().await;
    let rt = Runtime::new().unwrap();
    rt.apply(&config(&tcp_config(
        &[("r", rec)],
        "send_proxy_protocol = \"v1\"",
        "accept_proxy_protocol = true",
    )))
    .unwrap();
    let addr = rt.local_addr("l4").unwrap();
    let orig: SocketAddr = "192.0.2.7:40000".parse().unwrap();
    let dst: SocketAddr = "198.51.100.1:443".parse().unwrap();
    // Client speaks v2; the server gets v1 with the original client.
    let header = proxy_protocol::encode_v2(orig, dst, proxy_protocol::Transport::Stream);
    let out = exchange(addr, &header, b"payload").await;
    assert_eq!(
        out,
        b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\npayload".to_vec()
    );
    // A client without the header is refused.
    let out = exchange(addr, b"", b"GET / HTTP/1.1\r\n\r\n").await;
    assert!(out.is_empty());
    rt.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn max_connections_queue_then_timeout() {
    let (echo, _t) = tcp_echo_after_eof().await;
    let rt = Runtime::new().unwrap();
    let cfg = format!(
        r#"
[[frontend]]
name = "l4"
bind = "127.0.0.1:0"
mode = "tcp"
backend = "pool"

[[backend]]
name = "pool"
servers = [ {{ name = "one", address = "{echo}", max_connections = 1 }} ]
health = {{ kind = "none" }}
queue = {{ max = 1, timeout = "300ms" }}
"#
    );
    rt.apply(&config(&cfg)).unwrap();
    let addr = rt.local_addr("l4").unwrap();
    // First connection holds the only slot (no FIN yet).
    let mut first = TcpStream::connect(addr).await.unwrap();
    first.write_all(b"1").await.unwrap();
    assert!(wait_until(|| rt.status().backends[0].servers[0].active_connections == 1).await);
    // Second waits in the queue, third is refused at once (queue full).
    let second = tokio::spawn(exchange(addr, b"", b"2"));
    assert!(wait_until(|| rt.status().backends[0].queue_length == 1).await);
    let third = exchange(addr, b"", b"3").await;
    assert!(third.is_empty(), "queue full must refuse");
    // Release the slot before the queue timeout: the second gets served.
    first.shutdown().await.unwrap();
    let mut out = Vec::new();
    first.read_to_end(&mut out).await.unwrap();
    assert_eq!(out, b"echo:1");
    assert_eq!(second.await.unwrap(), b"echo:2");
    // Hold the slot again: a queued connection now times out.
    let mut hold = TcpStream::connect(addr).await.unwrap();
    hold.write_all(b"h").await.unwrap();
    assert!(wait_until(|| rt.status().backends[0].servers[0].active_connections == 1).await);
    let timed_out = exchange(addr, b"", b"4").await;
    assert!(timed_out.is_empty());
    assert_eq!(rt.status().backends[0].queue_length, 0);
    drop(hold);
    rt.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn udp_echo_through_proxy_with_flows() {
    let (u1, _t1) = udp_echo("u1").await;
    let (u2, _t2) = udp_echo("u2").await;
    let cfg = format!(
        r#"
[[frontend]]
name = "dns"
bind = "127.0.0.1:0"
mode = "udp"
backend = "dns"
timeouts = {{ udp_idle = "300ms" }}

[[backend]]
name = "dns"
servers = [ {{ name = "u1", address = "{u1}" }}, {{ name = "u2", address = "{u2}" }} ]
health = {{ kind = "none" }}
"#
    );
    let rt = Runtime::new().unwrap();
    rt.apply(&config(&cfg)).unwrap();
    let addr = rt.local_addr("dns").unwrap();
    let mut answers = Vec::new();
    for _ in 0..2 {
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.connect(addr).await.unwrap();
        let mut first_server = None;
        for i in 0..3 {
            c.send(format!("q{i}").as_bytes()).await.unwrap();
            let mut buf = [0u8; 100];
            let n = tokio::time::timeout(LONG, c.recv(&mut buf))
                .await
                .unwrap()
                .unwrap();
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            let (server, payload) = text.split_once(':').unwrap();
            assert_eq!(payload, format!("q{i}"));
            // One flow per client: the same server answers every packet.
            if let Some(prev) = &first_server {
                assert_eq!(prev, server);
            }
            first_server = Some(server.to_string());
        }
        answers.push(first_server.unwrap());
    }
    assert_ne!(
        answers[0], answers[1],
        "two clients, round robin, two servers"
    );
    assert_eq!(rt.status().frontends[0].active_connections, 2);
    // Flows are forgotten after the idle timeout.
    assert!(wait_until(|| rt.status().frontends[0].active_connections == 0).await);
    rt.shutdown(Duration::from_secs(5)).await;
}
