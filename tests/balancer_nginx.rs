//! End-to-end interop with nginx (Debian's package), both ways round:
//!
//! * nginx as the servers behind halb: HTTP health checks against nginx,
//!   balancing, X-Forwarded-For as nginx sees it, a 1 MiB static file
//!   streamed through intact, nginx's 404 passed through, and nginx stopped
//!   -> every server DOWN -> halb answers 503.
//! * halb as an upstream of nginx: nginx keeps pooled keep-alive
//!   connections to halb; requests through both proxies are balanced and
//!   survive a halb reload.

mod balancer_support;
mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use balancer_support::{frontend, get_once, server_state, servers_toml, Conn, HttpBackend, Nginx};
use common::Node;
use testsupport::{Lab, Signal};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal address")
}

fn halb_config(front: SocketAddr, servers: &[(&str, SocketAddr)]) -> String {
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

[[backend]]
name = "web"
algorithm = "round-robin"
servers = [
{servers}]
health = {{ kind = "http", path = "/healthz", expect_status = [200], expect_body = "ok", interval = "200ms", timeout = "150ms", rise = 1, fall = 2 }}
drain_timeout = "5s"
"#,
        servers = servers_toml(servers),
    )
}

#[test]
fn nginx_servers_behind_halb() -> Result<(), Box<dyn std::error::Error>> {
    testsupport::require_root!("the daemon runs in a network namespace");
    testsupport::require_tool!("nginx");
    let lab = Lab::new("bngxsrv")?;
    let ns = lab.netns("lb")?;
    let front = addr("127.0.0.1:8080");
    let names = ["n1", "n2", "n3"];
    let addrs: Vec<SocketAddr> = (1..=3)
        .map(|i| addr(&format!("127.0.0.1:820{i}")))
        .collect();

    // A 1 MiB file with a recognisable pattern.
    let www = lab.dir().join("www");
    std::fs::create_dir_all(&www)?;
    let big: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(www.join("big.bin"), &big)?;
    let mut blocks = String::new();
    for (n, a) in names.iter().zip(&addrs) {
        blocks.push_str(&format!(
            "server {{ listen {a}; root {www};\n\
               location = /healthz {{ return 200 \"ok\\n\"; }}\n\
               location = /big.bin {{ add_header x-server {n} always; }}\n\
               location /missing {{ return 404 \"no such thing on {n}\\n\"; }}\n\
               location / {{ add_header x-server {n} always; return 200 \"{n} xff=$http_x_forwarded_for\\n\"; }}\n\
             }}\n",
            www = www.display()
        ));
    }
    let mut nginx = Nginx::start(&ns, lab.dir(), "srv", &blocks, &addrs);

    let servers: Vec<(&str, SocketAddr)> =
        names.iter().copied().zip(addrs.iter().copied()).collect();
    let node = Node::start(&ns, lab.dir(), "lb", &halb_config(front, &servers));
    ns.wait_port(front, Duration::from_secs(10))?;
    node.wait_status(
        "nginx servers UP and checked",
        Duration::from_secs(10),
        |s| {
            names.iter().all(|n| {
                server_state(s, "web", n) == "UP"
                    && balancer_support::server(s, "web", n)["last_check"]["ok"] == true
            })
        },
    );

    let mut conn = Conn::open(&ns, front)?;
    let mut seen = BTreeMap::new();
    for i in 0..30 {
        let r = conn.get(&format!("/page/{i}"))?;
        assert_eq!(r.status, 200, "{}", r.text());
        let body = r.text();
        let who = body.split_whitespace().next().unwrap_or("").to_string();
        assert_eq!(r.header("x-server"), Some(who.as_str()), "{r:?}");
        assert!(
            body.contains("xff=127.0.0.1"),
            "nginx sees the client in X-Forwarded-For: {body}"
        );
        assert!(
            r.header("server").is_some_and(|s| s.starts_with("nginx")),
            "{r:?}"
        );
        *seen.entry(who).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(
        seen.values().all(|&n| n == 10),
        "round-robin over three nginx servers: {seen:?}"
    );

    // A static file streamed through, byte for byte, on the same connection.
    for _ in 0..3 {
        let r = conn.get("/big.bin")?;
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), big.len());
        assert!(
            r.body == big,
            "1 MiB body corrupted on the way through halb"
        );
    }
    // nginx's own 404 passes through; HEAD works.
    let r = conn.get("/missing/x")?;
    assert_eq!(r.status, 404);
    assert!(r.text().starts_with("no such thing on n"), "{}", r.text());
    let r = conn.request("HEAD", "/big.bin", false)?;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1048576"));
    let r = conn.get("/after-head")?;
    assert_eq!(r.status, 200, "the connection is still in sync after HEAD");

    let s = node.status();
    let f = frontend(&s, "web");
    assert_eq!(f["responses"]["c4xx"], 1, "{f:#}");
    assert_eq!(f["responses"]["c5xx"], 0, "{f:#}");
    for n in names {
        assert_eq!(
            balancer_support::server(&s, "web", n)["errors"],
            0,
            "a 404 is not a server error"
        );
    }
    let access = nginx.access_log();
    assert!(
        access.contains("GET /healthz"),
        "halb's checks reached nginx"
    );
    assert!(access.contains("GET /page/29"), "{access}");

    // nginx gone: the checks take every server DOWN, clients get a clean 503.
    nginx.child.kill()?;
    node.wait_status("all DOWN", Duration::from_secs(10), |s| {
        names.iter().all(|n| server_state(s, "web", n) == "DOWN")
    });
    let r = get_once(&ns, front, "/gone")?;
    assert_eq!(r.status, 503);
    assert!(r.text().contains("no server available"), "{}", r.text());
    Ok(())
}

#[test]
fn halb_as_an_nginx_upstream() -> Result<(), Box<dyn std::error::Error>> {
    testsupport::require_root!("the daemon runs in a network namespace");
    testsupport::require_tool!("nginx");
    let lab = Lab::new("bngxup")?;
    let ns = lab.netns("lb")?;
    let edge = addr("127.0.0.1:8000");
    let front = addr("127.0.0.1:8080");
    let backends: Vec<HttpBackend> = [("s1", "127.0.0.1:8101"), ("s2", "127.0.0.1:8102")]
        .iter()
        .map(|(n, a)| HttpBackend::start(&ns, n, addr(a)))
        .collect();
    let servers: Vec<(&str, SocketAddr)> =
        backends.iter().map(|b| (b.name.as_str(), b.addr)).collect();
    let mut node = Node::start(&ns, lab.dir(), "lb", &halb_config(front, &servers));
    ns.wait_port(front, Duration::from_secs(10))?;
    let conns_before = frontend(&node.status(), "web")["total_connections"]
        .as_u64()
        .expect("count");

    let http = format!(
        "upstream halb {{ server {front}; keepalive 8; }}\n\
         server {{ listen {edge};\n\
           location / {{ proxy_pass http://halb; proxy_http_version 1.1;\n\
             proxy_set_header Connection \"\";\n\
             proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; }}\n\
         }}\n"
    );
    let nginx = Nginx::start(&ns, lab.dir(), "edge", &http, &[edge]);

    let mut conn = Conn::open(&ns, edge)?;
    let mut seen = BTreeMap::new();
    let mut get = |conn: &mut Conn, i: usize| -> Result<(), Box<dyn std::error::Error>> {
        let r = conn.get(&format!("/via-nginx/{i}"))?;
        assert_eq!(
            r.status,
            200,
            "{} / nginx error.log:\n{}",
            r.text(),
            nginx.error_log()
        );
        // nginx added the client; halb appended nginx's address.
        assert_eq!(
            r.header("x-seen-xff"),
            Some("127.0.0.1, 127.0.0.1"),
            "{r:?}"
        );
        *seen.entry(r.text().trim().to_string()).or_insert(0) += 1;
        Ok(())
    };
    for i in 0..40 {
        get(&mut conn, i)?;
    }
    // A reload of halb under nginx's pooled connections loses nothing.
    let text = std::fs::read_to_string(&node.config)?;
    std::fs::write(
        &node.config,
        text.replace("drain_timeout = \"5s\"", "drain_timeout = \"6s\""),
    )?;
    node.signal(Signal::SIGHUP);
    node.wait_status("reload", Duration::from_secs(10), |s| s["generation"] == 2);
    for i in 40..80 {
        get(&mut conn, i)?;
    }
    assert_eq!(seen.get("s1"), Some(&40), "{seen:?}");
    assert_eq!(seen.get("s2"), Some(&40), "{seen:?}");

    let s = node.status();
    let f = frontend(&s, "web");
    assert_eq!(f["requests"], 80, "{f:#}");
    let opened = f["total_connections"].as_u64().expect("count") - conns_before;
    assert!(
        (1..=8).contains(&opened),
        "nginx reuses its keep-alive connections to halb: {opened} for 80 requests"
    );
    assert!(
        !nginx.error_log().contains("upstream prematurely closed"),
        "{}",
        nginx.error_log()
    );
    assert_eq!(node.stop(Duration::from_secs(15)), Some(0));
    Ok(())
}
