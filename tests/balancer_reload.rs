//! End-to-end: hitless reload of the real `halb` binary.
//!
//! * Under load: keep-alive clients and a new-connection-per-request client
//!   run while 20 SIGHUPs alternate between a config with three servers and
//!   one with a fourth. Zero failed requests, the keep-alive connections are
//!   never closed, and the listener is kept by every reload.
//! * A reload whose new listener cannot bind (port taken) is rejected as a
//!   whole: `halb reload` prints the error, the generation stays, traffic
//!   goes on; once the port is free the same file applies.

mod balancer_support;
mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use balancer_support::{
    frontend, get_once, server_names, servers_toml, write_atomic, Conn, HttpBackend,
};
use common::Node;
use testsupport::{Lab, Signal};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal address")
}

fn config(front: SocketAddr, servers: &[(&str, SocketAddr)], extra: &str) -> String {
    format!(
        r#"[node]
name = "lb"
admin_socket = "{{socket}}"
worker_threads = 2

[[frontend]]
name = "web"
bind = "{front}"
mode = "http"
backend = "web"
{extra}
[[backend]]
name = "web"
algorithm = "round-robin"
servers = [
{servers}]
health = {{ kind = "http", path = "/healthz", interval = "200ms", timeout = "100ms", rise = 1, fall = 2 }}
drain_timeout = "10s"
"#,
        servers = servers_toml(servers),
    )
}

#[derive(Debug, Default)]
struct Report {
    ok: u64,
    failures: Vec<String>,
    /// Connections opened (1 for a keep-alive worker that never reconnects).
    connections: u64,
    /// Responses that announced `Connection: close` on a keep-alive worker.
    closed_by_server: u64,
    by_server: BTreeMap<String, u64>,
}

impl Report {
    fn record(&mut self, i: u64, r: std::io::Result<balancer_support::Resp>) -> bool {
        match r {
            Ok(r) if r.status == 200 => {
                self.ok += 1;
                *self
                    .by_server
                    .entry(r.text().trim().to_string())
                    .or_insert(0) += 1;
                true
            }
            Ok(r) => {
                self.failures.push(format!(
                    "request {i}: status {} {}",
                    r.status,
                    r.text().trim()
                ));
                false
            }
            Err(e) => {
                self.failures.push(format!("request {i}: {e}"));
                false
            }
        }
    }
}

/// Upper bounds of a load loop: it stops at whichever comes first.
const MAX_REQUESTS: u64 = 200_000;
const MAX_TIME: Duration = Duration::from_secs(60);

#[test]
fn twenty_sighups_under_keep_alive_load_lose_no_request() -> Result<(), Box<dyn std::error::Error>>
{
    testsupport::require_root!("the daemon runs in a network namespace");
    let lab = Lab::new("breload")?;
    let ns = lab.netns("lb")?;
    let front = addr("127.0.0.1:8080");
    let backends: Vec<HttpBackend> = (1..=4)
        .map(|i| HttpBackend::start(&ns, &format!("s{i}"), addr(&format!("127.0.0.1:810{i}"))))
        .collect();
    let all: Vec<(&str, SocketAddr)> = backends.iter().map(|b| (b.name.as_str(), b.addr)).collect();
    let three = config(front, &all[..3], "");
    let four = config(front, &all, "");
    let mut node = Node::start(&ns, lab.dir(), "lb", &three);
    ns.wait_port(front, Duration::from_secs(10))?;
    let conns_before = frontend(&node.status(), "web")["total_connections"]
        .as_u64()
        .expect("total_connections");

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut workers = Vec::new();
    // Four keep-alive clients: one connection each, never reopened.
    for w in 0..4 {
        let mut conn = Conn::open(&ns, front)?;
        let stop = Arc::clone(&stop);
        let wns = ns.clone();
        workers.push(std::thread::spawn(move || {
            let mut rep = Report {
                connections: 1,
                ..Report::default()
            };
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) && i < MAX_REQUESTS && started.elapsed() < MAX_TIME {
                let r = conn.get(&format!("/w{w}/{i}"));
                if let Ok(resp) = &r {
                    if resp.closes() {
                        rep.closed_by_server += 1;
                    }
                }
                if !rep.record(i, r) {
                    // Keep measuring on a new connection.
                    match Conn::open(&wns, front) {
                        Ok(c) => {
                            conn = c;
                            rep.connections += 1;
                        }
                        Err(e) => {
                            rep.failures.push(format!("reconnect: {e}"));
                            break;
                        }
                    }
                }
                i += 1;
            }
            rep
        }));
    }
    // One client opening a new connection for every request.
    {
        let stop = Arc::clone(&stop);
        let handle = ns.spawn_thread(move || {
            let mut rep = Report::default();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) && i < MAX_REQUESTS && started.elapsed() < MAX_TIME {
                rep.connections += 1;
                let r = Conn::connect(front)
                    .and_then(|mut c| c.request("GET", &format!("/new/{i}"), true));
                rep.record(i, r);
                i += 1;
            }
            rep
        })?;
        workers.push(std::thread::spawn(move || {
            handle.join().expect("fresh worker").expect("in namespace")
        }));
    }

    // 20 reloads by SIGHUP, alternating: add s4, remove s4, ...
    for k in 0..20u64 {
        std::thread::sleep(Duration::from_millis(150));
        let (text, want) = if k % 2 == 0 { (&four, 4) } else { (&three, 3) };
        write_atomic(
            &node.config,
            &text.replace("{socket}", &node.socket.display().to_string()),
        );
        node.signal(Signal::SIGHUP);
        let s = node.wait_status("reload applied", Duration::from_secs(10), |s| {
            s["generation"] == 2 + k
        });
        assert_eq!(s["last_reload"]["ok"], true, "{s:#}");
        assert_eq!(server_names(&s, "web").len(), want, "{s:#}");
        let changes = s["last_reload"]["changes"].to_string();
        let expect = if want == 4 {
            "server web/s4 added"
        } else {
            "server web/s4 removed"
        };
        assert!(changes.contains(expect), "reload {k}: {changes}");
        assert!(
            !changes.contains("listener"),
            "reload {k} touched a listener: {changes}"
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let reports: Vec<Report> = workers
        .into_iter()
        .map(|w| w.join().expect("worker"))
        .collect();
    let elapsed = started.elapsed();

    let mut failures = Vec::new();
    let (mut ok, mut conns) = (0, 0);
    let mut by_server: BTreeMap<String, u64> = BTreeMap::new();
    for (w, r) in reports.iter().enumerate() {
        failures.extend(r.failures.iter().map(|f| format!("worker {w}: {f}")));
        ok += r.ok;
        conns += r.connections;
        for (k, v) in &r.by_server {
            *by_server.entry(k.clone()).or_insert(0) += v;
        }
    }
    eprintln!("{ok} requests in {elapsed:?} across 20 reloads; by server {by_server:?}");
    assert!(
        failures.is_empty(),
        "{} failed requests:\n{}\nlog:\n{}",
        failures.len(),
        failures.join("\n"),
        node.log()
    );
    assert!(ok >= 200, "too little load to mean anything: {ok} requests");
    for (w, r) in reports.iter().take(4).enumerate() {
        assert_eq!(r.connections, 1, "keep-alive worker {w} had to reconnect");
        assert_eq!(
            r.closed_by_server, 0,
            "halb closed keep-alive worker {w}'s connection"
        );
    }
    assert!(
        by_server.get("s4").copied().unwrap_or(0) > 0,
        "the added server took traffic: {by_server:?}"
    );

    // Every client connection was accepted on the one listener, which no
    // reload closed or reopened.
    let s = node.status();
    let f = frontend(&s, "web");
    assert_eq!(s["generation"], 21);
    assert_eq!(
        f["total_connections"].as_u64().expect("count") - conns_before,
        conns,
        "{f:#}"
    );
    assert_eq!(f["responses"]["c5xx"], 0, "{f:#}");
    let log = node.log();
    // The data plane logs each change of each apply as `msg=reload change=...`.
    let applied = |what: &str| {
        log.lines()
            .filter(|l| {
                l.contains("msg=reload")
                    && l.contains(&format!("listener web 127.0.0.1:8080 {what}"))
            })
            .count()
    };
    let (opened, kept) = (applied("opened"), applied("kept"));
    assert_eq!(opened, 1, "the listener was opened once, at start:\n{log}");
    assert_eq!(kept, 20, "each reload kept the listener:\n{log}");
    assert!(!log.contains("closing listener"), "{log}");
    assert_eq!(node.stop(Duration::from_secs(15)), Some(0));
    Ok(())
}

#[test]
fn reload_with_a_taken_port_is_rejected_and_changes_nothing(
) -> Result<(), Box<dyn std::error::Error>> {
    testsupport::require_root!("the daemon runs in a network namespace");
    let lab = Lab::new("bport")?;
    let ns = lab.netns("lb")?;
    let front = addr("127.0.0.1:8080");
    let taken = addr("127.0.0.1:8090");
    let b = HttpBackend::start(&ns, "s1", addr("127.0.0.1:8101"));
    let servers = [("s1", b.addr)];
    let mut node = Node::start(&ns, lab.dir(), "lb", &config(front, &servers, ""));
    ns.wait_port(front, Duration::from_secs(10))?;
    let mut conn = Conn::open(&ns, front)?;
    assert_eq!(conn.get("/one")?.status, 200);

    // Another process holds 8090.
    let holder = ns.run(move || std::net::TcpListener::bind(taken))??;
    let second = format!(
        "\n[[frontend]]\nname = \"api\"\nbind = \"{taken}\"\nmode = \"http\"\nbackend = \"web\"\n"
    );
    write_atomic(
        &node.config,
        &config(front, &servers, &second).replace("{socket}", &node.socket.display().to_string()),
    );
    let out = node.cli(&["reload"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "reload with a taken port must fail; stdout {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains("reload rejected: generation 1 keeps running"),
        "{stderr}"
    );
    assert!(stderr.contains("cannot bind 127.0.0.1:8090"), "{stderr}");
    assert!(stderr.contains("api"), "{stderr}");

    let s = node.status();
    assert_eq!(s["generation"], 1, "{s:#}");
    assert_eq!(s["last_reload"]["ok"], false);
    assert!(
        frontend(&s, "api").is_null(),
        "the rejected frontend must not appear: {s:#}"
    );
    // The running frontend is untouched, on the same connection.
    assert_eq!(conn.get("/two")?.status, 200);
    assert_eq!(get_once(&ns, front, "/three")?.status, 200);

    // SIGHUP takes the same path.
    node.signal(Signal::SIGHUP);
    let s = node.wait_status("second rejection", Duration::from_secs(10), |s| {
        s["last_reload"]["trigger"] == "sighup"
    });
    assert_eq!(s["generation"], 1);
    assert_eq!(s["last_reload"]["ok"], false);

    // Port freed: the same file applies.
    drop(holder);
    let out = node.cli(&["reload"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("reload applied: generation 2"), "{stdout}");
    assert!(
        stdout.contains("listener api 127.0.0.1:8090 opened"),
        "{stdout}"
    );
    let r = get_once(&ns, taken, "/api")?;
    assert_eq!(r.status, 200);
    assert_eq!(r.text().trim(), "s1");
    assert_eq!(
        conn.get("/four")?.status,
        200,
        "the first listener's client is still served"
    );
    assert_eq!(node.stop(Duration::from_secs(15)), Some(0));
    Ok(())
}
