//! End-to-end: the real `halb` binary balancing HTTP over three servers with
//! active HTTP health checks. A server is killed: the status shows it DOWN
//! within fall x interval (plus polling slack), and from then on every
//! request goes to the two survivors with zero client errors.

mod balancer_support;
mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use balancer_support::{server, server_state, servers_toml, Conn, HttpBackend};
use common::{http_get, metric, Node};
use testsupport::Lab;

const INTERVAL: Duration = Duration::from_millis(200);
const FALL: u32 = 2;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal address")
}

/// Which servers answered `n` requests sent on one keep-alive connection
/// plus `n` requests on fresh connections; panics on any failed request.
fn spread(
    conn: &mut Conn,
    ns: &testsupport::Netns,
    front: SocketAddr,
    n: usize,
) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for i in 0..n {
        let r = conn
            .get(&format!("/ka/{i}"))
            .unwrap_or_else(|e| panic!("keep-alive request {i} failed: {e}"));
        assert_eq!(r.status, 200, "keep-alive request {i}: {}", r.text());
        *seen.entry(r.text().trim().to_string()).or_insert(0) += 1;
        let r = balancer_support::get_once(ns, front, &format!("/fresh/{i}"))
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
fn killed_server_goes_down_within_fall_times_interval_and_gets_no_traffic(
) -> Result<(), Box<dyn std::error::Error>> {
    testsupport::require_root!("the daemon runs in a network namespace");
    let lab = Lab::new("bhealth")?;
    let ns = lab.netns("lb")?;
    let front = addr("127.0.0.1:8080");
    let mut backends: Vec<HttpBackend> = [
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
metrics_listen = "127.0.0.1:9100"
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
health = {{ kind = "http", path = "/healthz", expect_status = [200], interval = "{interval}ms", timeout = "100ms", rise = 2, fall = {FALL} }}
drain_timeout = "5s"
"#,
        servers = servers_toml(&servers),
        interval = INTERVAL.as_millis(),
    );
    let node = Node::start(&ns, lab.dir(), "lb", &config);
    ns.wait_port(front, Duration::from_secs(10))?;

    // Every server has passed a check.
    node.wait_status(
        "three servers checked and UP",
        Duration::from_secs(10),
        |s| {
            ["s1", "s2", "s3"].iter().all(|n| {
                server_state(s, "web", n) == "UP" && server(s, "web", n)["last_check"]["ok"] == true
            })
        },
    );
    for b in &backends {
        assert!(
            b.hits.checks.load(std::sync::atomic::Ordering::SeqCst) >= 1,
            "{} was never checked",
            b.name
        );
    }

    // Round-robin over the three.
    let mut conn = Conn::open(&ns, front)?;
    let before = spread(&mut conn, &ns, front, 15);
    assert_eq!(before.len(), 3, "all three servers answer: {before:?}");
    for (name, n) in &before {
        assert!(*n >= 5, "round-robin gives {name} a fair share: {before:?}");
    }

    // Kill s2 and time how long until the status says DOWN.
    let killed_at = Instant::now();
    backends[1].kill();
    let status = node.wait_status("s2 DOWN", Duration::from_secs(10), |s| {
        server_state(s, "web", "s2") == "DOWN"
    });
    let took = killed_at.elapsed();
    let limit = INTERVAL * FALL;
    // One status poll is a process start and an admin round trip; allow one
    // more interval plus that for the poll that observed it.
    let slack = INTERVAL + Duration::from_millis(500);
    eprintln!("s2 DOWN after {took:?} (fall x interval = {limit:?})");
    assert!(
        took <= limit + slack,
        "s2 went DOWN after {took:?}; fall x interval is {limit:?} (+{slack:?} polling slack)"
    );
    let s2 = server(&status, "web", "s2");
    assert_eq!(s2["last_check"]["ok"], false, "{s2:#}");
    assert_eq!(s2["effective_weight"], 0, "{s2:#}");
    assert_eq!(
        status["dataplane"]["backends"][0]["servers_up"], 2,
        "{status:#}"
    );
    assert_eq!(server_state(&status, "web", "s1"), "UP");
    assert_eq!(server_state(&status, "web", "s3"), "UP");

    // From now on: zero client errors, nothing for s2. The keep-alive client
    // connection opened before the kill is still usable.
    let s2_hits = backends[1].requests();
    let after = spread(&mut conn, &ns, front, 30);
    assert!(
        !after.contains_key("s2"),
        "traffic still reaches the DOWN server: {after:?}"
    );
    assert_eq!(after.len(), 2, "both survivors take traffic: {after:?}");
    assert_eq!(backends[1].requests(), s2_hits);

    // The transition is logged with its reason and counted.
    let log = node.log();
    let line = log
        .lines()
        .find(|l| l.contains("server state change") && l.contains("s2") && l.contains("DOWN"))
        .unwrap_or_else(|| panic!("no state-change log line for s2; log:\n{log}"));
    assert!(
        line.contains("reason"),
        "transition logged without a reason: {line}"
    );
    let m = http_get(&ns, addr("127.0.0.1:9100"), "/metrics")?;
    let downs = metric(
        &m,
        "halb_server_transitions_total",
        &[("server", "s2"), ("to", "DOWN")],
    );
    assert_eq!(downs, Some(1.0), "{m}");
    assert_eq!(
        metric(&m, "halb_server_state", &[("server", "s1")]),
        metric(&m, "halb_server_state", &[("server", "s3")])
    );

    // The server comes back: rise checks later it is UP and gets traffic again.
    backends[1] = HttpBackend::start(&ns, "s2", addr("127.0.0.1:8102"));
    node.wait_status("s2 UP again", Duration::from_secs(10), |s| {
        server_state(s, "web", "s2") == "UP"
    });
    let back = spread(&mut conn, &ns, front, 15);
    assert!(
        back.get("s2").copied().unwrap_or(0) >= 5,
        "s2 is back in rotation: {back:?}"
    );
    Ok(())
}
