//! End-to-end: `halb server drain BACKEND/SERVER` through the CLI while a
//! slow request is in flight on that server. The slow request completes
//! with 200 from the drained server; every new request goes to the others;
//! no client sees an error. Then `disable` and `enable` round the cycle off.

mod balancer_support;
mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use balancer_support::{
    frontend, get_once, server, server_state, servers_toml, wait_for, Conn, HttpBackend,
};
use common::Node;
use testsupport::{Lab, Netns};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal address")
}

fn spread(conn: &mut Conn, ns: &Netns, front: SocketAddr, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for i in 0..n {
        let r = conn
            .get(&format!("/ka/{i}"))
            .unwrap_or_else(|e| panic!("keep-alive request {i} failed: {e}"));
        assert_eq!(r.status, 200, "keep-alive request {i}: {}", r.text());
        *seen.entry(r.text().trim().to_string()).or_insert(0) += 1;
        let r = get_once(ns, front, &format!("/fresh/{i}"))
            .unwrap_or_else(|e| panic!("request {i} on a new connection failed: {e}"));
        assert_eq!(
            r.status,
            200,
            "request {i} on a new connection: {}",
            r.text()
        );
        *seen.entry(r.text().trim().to_string()).or_insert(0) += 1;
    }
    seen
}

#[test]
fn drain_lets_the_slow_request_finish_and_sends_new_ones_elsewhere(
) -> Result<(), Box<dyn std::error::Error>> {
    testsupport::require_root!("the daemon runs in a network namespace");
    let lab = Lab::new("bdrain")?;
    let ns = lab.netns("lb")?;
    let front = addr("127.0.0.1:8080");
    let backends: Vec<HttpBackend> = [
        ("s1", "127.0.0.1:8101"),
        ("s2", "127.0.0.1:8102"),
        ("s3", "127.0.0.1:8103"),
    ]
    .iter()
    .map(|(n, a)| HttpBackend::start(&ns, n, addr(a)))
    .collect();
    let servers: Vec<(&str, SocketAddr)> =
        backends.iter().map(|b| (b.name.as_str(), b.addr)).collect();
    let config = format!(
        r#"[node]
name = "lb"
admin_socket = "{{socket}}"
worker_threads = 2

[[frontend]]
name = "web"
bind = "{front}"
mode = "http"
backend = "web"

[[backend]]
name = "web"
algorithm = "round-robin"
servers = [
{servers}]
health = {{ kind = "http", path = "/healthz", interval = "200ms", timeout = "100ms", rise = 1, fall = 2 }}
drain_timeout = "20s"
"#,
        servers = servers_toml(&servers),
    );
    let node = Node::start(&ns, lab.dir(), "lb", &config);
    ns.wait_port(front, Duration::from_secs(10))?;
    node.wait_status("servers UP", Duration::from_secs(10), |s| {
        ["s1", "s2", "s3"]
            .iter()
            .all(|n| server_state(s, "web", n) == "UP")
    });

    // A slow request (3 s) in flight.
    let slow_ns = ns.clone();
    let slow = std::thread::spawn(move || get_once(&slow_ns, front, "/slow/3000"));
    let target = wait_for(
        "the slow request to reach a server",
        Duration::from_secs(10),
        || {
            backends
                .iter()
                .find(|b| b.hits.slow_started.load(Ordering::SeqCst) == 1)
                .map(|b| b.name.clone())
        },
    );
    let t = backends.iter().find(|b| b.name == target).expect("target");

    // Drain it through the CLI.
    let out = node.cli(&["server", "drain", &format!("web/{target}")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "halb server drain failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("web/{target} is now DRAIN")),
        "{stdout}"
    );
    let s = node.status();
    assert_eq!(server_state(&s, "web", &target), "DRAIN");
    assert_eq!(server(&s, "web", &target)["admin"], "drain", "{s:#}");
    assert_eq!(
        server(&s, "web", &target)["active_connections"],
        1,
        "the slow request is in flight: {s:#}"
    );
    assert_eq!(
        t.hits.slow_done.load(Ordering::SeqCst),
        0,
        "drain came after the slow request finished"
    );

    // New requests go elsewhere while the slow one is still running.
    let mut conn = Conn::open(&ns, front)?;
    let during = spread(&mut conn, &ns, front, 15);
    assert!(
        !during.contains_key(&target),
        "drained {target} got new traffic: {during:?}"
    );
    assert_eq!(during.len(), 2, "{during:?}");
    assert_eq!(
        t.hits.slow_done.load(Ordering::SeqCst),
        0,
        "the check above ran while the slow request was in flight"
    );

    // The slow request completes with 200, answered by the drained server.
    let r = slow.join().expect("slow thread")?;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text().trim(), target);
    let s = node.wait_status("drained server idle", Duration::from_secs(5), |s| {
        server(s, "web", &target)["active_connections"] == 0
    });
    assert_eq!(server_state(&s, "web", &target), "DRAIN");
    assert_eq!(server(&s, "web", &target)["errors"], 0, "{s:#}");
    let f = frontend(&s, "web");
    assert_eq!(f["responses"]["c5xx"], 0, "{f:#}");
    assert_eq!(f["responses"]["c4xx"], 0, "{f:#}");

    // Disable (MAINT): still no traffic. Enable: back in rotation.
    let out = node.cli(&["server", "disable", &format!("web/{target}")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("MAINT"));
    let maint = spread(&mut conn, &ns, front, 6);
    assert!(!maint.contains_key(&target), "{maint:?}");
    let out = node.cli(&["server", "enable", &format!("web/{target}")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    node.wait_status("enabled server UP", Duration::from_secs(5), |s| {
        server_state(s, "web", &target) == "UP"
    });
    let back = spread(&mut conn, &ns, front, 15);
    assert!(
        back.get(&target).copied().unwrap_or(0) >= 5,
        "{target} is back in rotation: {back:?}"
    );

    // An unknown server is an error from the CLI, not a crash.
    let out = node.cli(&["server", "drain", "web/nope"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nope"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
