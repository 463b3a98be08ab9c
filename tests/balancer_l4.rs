//! End-to-end: layer-4 frontends of the real `halb` binary.
//!
//! * TCP mode: connections balanced round-robin over two echo servers; data
//!   echoed both ways; the client's half-close reaches the server, whose
//!   last words come back before the close; 4 MiB streamed through intact.
//! * UDP mode: one flow per client address, sticky to its server, spread
//!   over the servers, forgotten after `udp_idle`.

mod balancer_support;
mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use balancer_support::{frontend, server_state, servers_toml, TcpEcho, UdpEcho};
use common::Node;
use testsupport::Lab;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal address")
}

fn l4_config(
    mode: &str,
    front: SocketAddr,
    servers: &[(&str, SocketAddr)],
    health: &str,
    timeouts: &str,
) -> String {
    format!(
        r#"[node]
name = "lb"
admin_socket = "{{socket}}"
worker_threads = 2

[[frontend]]
name = "l4"
bind = "{front}"
mode = "{mode}"
backend = "pool"
{timeouts}

[[backend]]
name = "pool"
algorithm = "round-robin"
servers = [
{servers}]
health = {health}
"#,
        servers = servers_toml(servers),
    )
}

/// One TCP session through the balancer: greeting, echo, half-close,
/// goodbye. Returns the server's name.
fn session(front: SocketAddr, payload: &[u8]) -> std::io::Result<String> {
    let s = TcpStream::connect_timeout(&front, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    let mut greeting = String::new();
    r.read_line(&mut greeting)?;
    let name = greeting.trim().to_string();
    // The writer runs beside the reader so a large payload cannot deadlock
    // on full socket buffers.
    let data = payload.to_vec();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        w.write_all(&data)?;
        // Half-close: we are done sending, still reading.
        w.shutdown(Shutdown::Write)
    });
    let mut echoed = vec![0u8; payload.len()];
    r.read_exact(&mut echoed)?;
    writer
        .join()
        .map_err(|_| std::io::Error::other("writer panicked"))??;
    assert!(
        echoed == payload,
        "echo differs from what was sent ({} bytes)",
        payload.len()
    );
    let mut rest = String::new();
    r.read_to_string(&mut rest)?;
    assert_eq!(
        rest,
        format!("bye {name} {}\n", payload.len()),
        "server's last words after our FIN"
    );
    Ok(name)
}

#[test]
fn tcp_frontend_balances_echoes_and_half_closes() -> Result<(), Box<dyn std::error::Error>> {
    testsupport::require_root!("the daemon runs in a network namespace");
    let lab = Lab::new("btcp")?;
    let ns = lab.netns("lb")?;
    let front = addr("127.0.0.1:9000");
    let echoes: Vec<TcpEcho> = [("e1", "127.0.0.1:9101"), ("e2", "127.0.0.1:9102")]
        .iter()
        .map(|(n, a)| TcpEcho::start(&ns, n, addr(a)))
        .collect();
    let servers: Vec<(&str, SocketAddr)> =
        echoes.iter().map(|e| (e.name.as_str(), e.addr)).collect();
    let config = l4_config(
        "tcp",
        front,
        &servers,
        "{ kind = \"tcp\", interval = \"200ms\", timeout = \"100ms\", rise = 1, fall = 2 }",
        "",
    );
    let node = Node::start(&ns, lab.dir(), "lb", &config);
    ns.wait_port(front, Duration::from_secs(10))?;
    node.wait_status("echo servers UP", Duration::from_secs(10), |s| {
        server_state(s, "pool", "e1") == "UP" && server_state(s, "pool", "e2") == "UP"
    });
    let base: Vec<u64> = echoes
        .iter()
        .map(|e| e.connections.load(std::sync::atomic::Ordering::SeqCst))
        .collect();

    let mut seen = BTreeMap::new();
    for i in 0..6 {
        let name = ns.run(move || session(front, format!("hello {i}\n").as_bytes()))??;
        *seen.entry(name).or_insert(0) += 1;
    }
    assert_eq!(seen.get("e1"), Some(&3), "{seen:?}");
    assert_eq!(seen.get("e2"), Some(&3), "{seen:?}");

    // 4 MiB through one connection, both ways at once.
    let big: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let payload = big.clone();
    ns.run(move || session(front, &payload))??;

    // Health checks are connections too; count only proxied ones via halb's status.
    let s = node.wait_status("connections closed", Duration::from_secs(5), |s| {
        frontend(s, "l4")["active_connections"] == 0
    });
    let f = frontend(&s, "l4");
    assert_eq!(f["mode"], "tcp");
    assert!(f["total_connections"].as_u64().unwrap_or(0) >= 7, "{f:#}");
    assert!(
        f["bytes_in"].as_u64().unwrap_or(0) >= big.len() as u64,
        "{f:#}"
    );
    assert!(
        f["bytes_out"].as_u64().unwrap_or(0) >= big.len() as u64,
        "{f:#}"
    );
    let now: Vec<u64> = echoes
        .iter()
        .map(|e| e.connections.load(std::sync::atomic::Ordering::SeqCst))
        .collect();
    assert!(
        now[0] - base[0] >= 3 && now[1] - base[1] >= 3,
        "{base:?} -> {now:?}"
    );
    Ok(())
}

#[test]
fn udp_frontend_keeps_flows_sticky_and_forgets_them_when_idle(
) -> Result<(), Box<dyn std::error::Error>> {
    testsupport::require_root!("the daemon runs in a network namespace");
    let lab = Lab::new("budp")?;
    let ns = lab.netns("lb")?;
    let front = addr("127.0.0.1:5300");
    let echoes: Vec<UdpEcho> = [("u1", "127.0.0.1:5301"), ("u2", "127.0.0.1:5302")]
        .iter()
        .map(|(n, a)| UdpEcho::start(&ns, n, addr(a)))
        .collect();
    let servers: Vec<(&str, SocketAddr)> =
        echoes.iter().map(|e| (e.name.as_str(), e.addr)).collect();
    let config = l4_config(
        "udp",
        front,
        &servers,
        "{ kind = \"none\" }",
        "timeouts = { udp_idle = \"1s\" }",
    );
    let node = Node::start(&ns, lab.dir(), "lb", &config);
    let s = node.status();
    assert_eq!(frontend(&s, "l4")["mode"], "udp", "{s:#}");

    // Four clients, three datagrams each.
    let clients: Vec<UdpSocket> = ns.run(|| -> std::io::Result<Vec<UdpSocket>> {
        (0..4)
            .map(|_| {
                let c = UdpSocket::bind("127.0.0.1:0")?;
                c.set_read_timeout(Some(Duration::from_secs(3)))?;
                Ok(c)
            })
            .collect()
    })??;
    let ask = |c: &UdpSocket, msg: &str| -> std::io::Result<String> {
        c.send_to(msg.as_bytes(), front)?;
        let mut buf = [0u8; 1500];
        let (n, from) = c.recv_from(&mut buf)?;
        assert_eq!(from, front, "the answer comes from the frontend address");
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    let mut owner = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let mut names = Vec::new();
        for k in 0..3 {
            let msg = format!("c{i}-{k}");
            let answer = ask(c, &msg)?;
            let (name, echoed) = answer.split_once(':').expect("name:payload");
            assert_eq!(echoed, msg);
            names.push(name.to_string());
        }
        assert!(
            names.iter().all(|n| *n == names[0]),
            "client {i} changed server mid-flow: {names:?}"
        );
        owner.push(names[0].clone());
    }
    let on_u1 = owner.iter().filter(|n| *n == "u1").count();
    assert_eq!(on_u1, 2, "round-robin spreads flows: {owner:?}");
    let s = node.status();
    let f = frontend(&s, "l4");
    assert_eq!(f["active_connections"], 4, "one flow per client: {f:#}");
    assert_eq!(f["total_connections"], 4, "{f:#}");

    // Idle flows are forgotten; the next datagram opens a new flow.
    node.wait_status("flows expired", Duration::from_secs(10), |s| {
        frontend(s, "l4")["active_connections"] == 0
    });
    let answer = ask(&clients[0], "again")?;
    assert!(answer.ends_with(":again"), "{answer}");
    let s = node.status();
    assert_eq!(frontend(&s, "l4")["total_connections"], 5, "{s:#}");
    Ok(())
}
