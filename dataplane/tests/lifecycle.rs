//! Draining, health checks, reload diffs, listener hand-over and shutdown.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use dataplane::{AdminAction, Change, Runtime, ServerState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn servers_toml(servers: &[(&str, SocketAddr)]) -> String {
    servers
        .iter()
        .map(|(n, a)| format!("{{ name = \"{n}\", address = \"{a}\" }}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn web(servers: &[(&str, SocketAddr)], backend_extra: &str) -> String {
    format!(
        r#"
[[frontend]]
name = "web"
bind = "127.0.0.1:0"
mode = "http"
backend = "web"

[[backend]]
name = "web"
servers = [ {} ]
{backend_extra}
"#,
        servers_toml(servers)
    )
}

fn state(rt: &Runtime, server: &str) -> ServerState {
    let st = rt.status();
    st.backends[0]
        .servers
        .iter()
        .find(|s| s.name == server)
        .map(|s| s.state)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_lets_in_flight_request_finish_and_moves_new_traffic() {
    let s1 = TestServer::start("s1").await;
    let s2 = TestServer::start("s2").await;
    let rt = Runtime::new().unwrap();
    rt.apply(&config(&web(
        &[("s1", s1.addr), ("s2", s2.addr)],
        "health = { kind = \"none\" }\ndrain_timeout = \"20s\"",
    )))
    .unwrap();
    let addr = rt.local_addr("web").unwrap();
    // Round robin starts with s1: the slow request lands there.
    let slow = tokio::spawn(get(addr, "/slow?ms=1500"));
    assert!(wait_until(|| rt.status().backends[0].servers[0].active_connections == 1).await);
    assert_eq!(
        rt.server_admin("web", "s1", AdminAction::Drain).unwrap(),
        ServerState::Drain
    );
    for _ in 0..20 {
        let (status, body) = get(addr, "/").await.unwrap();
        assert_eq!((status, body.as_str()), (200, "s2"));
    }
    let (status, body) = slow.await.unwrap().unwrap();
    assert_eq!((status, body.as_str()), (200, "s1"));
    let st = rt.status();
    assert_eq!(st.frontends[0].responses.c5xx, 0);
    assert_eq!(st.frontends[0].responses.c2xx, 21);
    assert!(st.backends[0].servers.iter().all(|s| s.errors == 0));
    assert_eq!(
        st.backends[0].servers[0].admin,
        dataplane::AdminState::Drain
    );
    rt.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn drain_timeout_closes_what_is_still_in_flight() {
    let s1 = TestServer::start("s1").await;
    let (echo, _t) = tcp_echo_after_eof().await;
    let cfg = format!(
        r#"
[[frontend]]
name = "web"
bind = "127.0.0.1:0"
mode = "http"
backend = "web"

[[frontend]]
name = "l4"
bind = "127.0.0.2:0"
mode = "tcp"
backend = "l4"

[[backend]]
name = "web"
servers = [ {{ name = "s1", address = "{}" }} ]
health = {{ kind = "none" }}
drain_timeout = "300ms"

[[backend]]
name = "l4"
servers = [ {{ name = "e", address = "{echo}" }} ]
health = {{ kind = "none" }}
drain_timeout = "300ms"
"#,
        s1.addr
    );
    let rt = Runtime::new().unwrap();
    rt.apply(&config(&cfg)).unwrap();
    let web = rt.local_addr("web").unwrap();
    let l4 = rt.local_addr("l4").unwrap();
    let started = tokio::time::Instant::now();
    let slow = tokio::spawn(get(web, "/slow?ms=8000"));
    let mut tcp = TcpStream::connect(l4).await.unwrap();
    tcp.write_all(b"x").await.unwrap();
    assert!(
        wait_until(|| {
            let st = rt.status();
            st.backends[0].servers[0].active_connections == 1
                && st.backends[1].servers[0].active_connections == 1
        })
        .await
    );
    rt.server_admin("web", "s1", AdminAction::Disable).unwrap();
    rt.server_admin("l4", "e", AdminAction::Drain).unwrap();
    let (status, _) = slow.await.unwrap().unwrap();
    assert_eq!(status, 502);
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(LONG, tcp.read_to_end(&mut buf))
        .await
        .unwrap();
    assert!(buf.is_empty(), "tcp connection closed without the echo");
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "{:?}",
        started.elapsed()
    );
    rt.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn http_health_check_rise_and_fall() {
    let s1 = TestServer::start("s1").await;
    let s2 = TestServer::start("s2").await;
    let rt = Runtime::new().unwrap();
    rt.apply(&config(&web(
        &[("s1", s1.addr), ("s2", s2.addr)],
        "health = { kind = \"http\", path = \"/healthz\", expect_status = [200], expect_body = \"ok\", interval = \"50ms\", timeout = \"40ms\", rise = 2, fall = 2 }",
    )))
    .unwrap();
    let addr = rt.local_addr("web").unwrap();
    assert!(wait_until(|| rt.status().backends[0].servers[0].last_check.is_some()).await);
    assert_eq!(state(&rt, "s1"), ServerState::Up);
    s1.healthy.store(false, Ordering::SeqCst);
    assert!(wait_until(|| state(&rt, "s1") == ServerState::Down).await);
    let st = rt.status();
    let s1_st = &st.backends[0].servers[0];
    assert!(!s1_st.check_up);
    let check = s1_st.last_check.clone().unwrap();
    assert!(!check.ok);
    assert!(check.detail.unwrap().contains("503"));
    // Traffic goes to s2 only.
    for _ in 0..6 {
        assert_eq!(get(addr, "/").await.unwrap().1, "s2");
    }
    s1.healthy.store(true, Ordering::SeqCst);
    assert!(wait_until(|| state(&rt, "s1") == ServerState::Up).await);
    rt.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn tcp_health_check_takes_dead_server_down() {
    let s1 = TestServer::start("s1").await;
    let dead = dead_addr().await;
    let rt = Runtime::new().unwrap();
    rt.apply(&config(&web(
        &[("s1", s1.addr), ("dead", dead)],
        "health = { kind = \"tcp\", interval = \"50ms\", timeout = \"40ms\", rise = 1, fall = 1 }",
    )))
    .unwrap();
    assert!(wait_until(|| state(&rt, "dead") == ServerState::Down).await);
    assert_eq!(state(&rt, "s1"), ServerState::Up);
    let st = rt.status();
    assert_eq!(st.backends[0].servers_up, 1);
    assert!(st.backends[0].servers[1]
        .last_check
        .as_ref()
        .unwrap()
        .detail
        .as_ref()
        .unwrap()
        .contains("connect"));
    rt.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn reload_diff_keeps_listeners_and_server_state() {
    let s1 = TestServer::start("s1").await;
    let s2 = TestServer::start("s2").await;
    let s3 = TestServer::start("s3").await;
    let rt = Runtime::new().unwrap();
    let hc = "health = { kind = \"none\" }";
    let diff = rt
        .apply(&config(&web(&[("s1", s1.addr), ("s2", s2.addr)], hc)))
        .unwrap();
    assert!(diff
        .changes
        .iter()
        .any(|c| matches!(c, Change::ListenerOpened { frontend, .. } if frontend == "web")));
    let addr = rt.local_addr("web").unwrap();
    rt.server_admin("web", "s2", AdminAction::Drain).unwrap();

    // A keep-alive client connection stays open across the reload.
    let mut keep = TcpStream::connect(addr).await.unwrap();
    let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    keep.write_all(req).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = keep.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    let b = format!(
        r#"{}
[[frontend]]
name = "web2"
bind = "127.0.0.3:0"
mode = "http"
backend = "web"
"#,
        web(&[("s1", s1.addr), ("s2", s2.addr), ("s3", s3.addr)], hc,).replace(
            &format!("{{ name = \"s1\", address = \"{}\" }}", s1.addr),
            &format!("{{ name = \"s1\", address = \"{}\", weight = 5 }}", s1.addr)
        )
    );
    let diff = rt.apply(&config(&b)).unwrap();
    let has = |want: &Change| diff.changes.contains(want);
    assert!(
        has(&Change::ListenerKept {
            frontend: "web".into(),
            bind: "127.0.0.1:0".parse().unwrap()
        }),
        "{diff:?}"
    );
    assert!(
        has(&Change::ListenerOpened {
            frontend: "web2".into(),
            bind: "127.0.0.3:0".parse().unwrap()
        }),
        "{diff:?}"
    );
    assert!(
        has(&Change::ServerUpdated {
            backend: "web".into(),
            server: "s1".into()
        }),
        "{diff:?}"
    );
    assert!(
        has(&Change::ServerAdded {
            backend: "web".into(),
            server: "s3".into()
        }),
        "{diff:?}"
    );
    assert_eq!(rt.local_addr("web"), Some(addr));
    assert_eq!(
        state(&rt, "s2"),
        ServerState::Drain,
        "admin state survives reload"
    );
    let web2 = rt.local_addr("web2").unwrap();
    assert_eq!(get(web2, "/").await.unwrap().0, 200);

    keep.write_all(req).await.unwrap();
    let n = keep.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "keep-alive connection survived"
    );

    // Remove web2 and s3, move s1: listener closed, server removed / reset.
    let moved = TestServer::start("s1-moved").await;
    let diff = rt
        .apply(&config(&web(&[("s1", moved.addr), ("s2", s2.addr)], hc)))
        .unwrap();
    assert!(
        diff.changes.contains(&Change::ListenerClosed {
            frontend: "web2".into(),
            bind: "127.0.0.3:0".parse().unwrap()
        }),
        "{diff:?}"
    );
    assert!(
        diff.changes.contains(&Change::ServerRemoved {
            backend: "web".into(),
            server: "s3".into()
        }),
        "{diff:?}"
    );
    assert!(
        diff.changes.contains(&Change::ServerReset {
            backend: "web".into(),
            server: "s1".into()
        }),
        "{diff:?}"
    );
    assert!(wait_until(|| std::net::TcpStream::connect(web2).is_err()).await);
    assert_eq!(get(addr, "/").await.unwrap().1, "s1-moved");
    rt.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn failed_bind_changes_nothing() {
    let s1 = TestServer::start("s1").await;
    let rt = Runtime::new().unwrap();
    rt.apply(&config(&web(&[("s1", s1.addr)], ""))).unwrap();
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = taken.local_addr().unwrap();
    let bad = format!(
        "{}\n[[frontend]]\nname = \"clash\"\nbind = \"{port}\"\nmode = \"tcp\"\nbackend = \"web\"\n",
        web(&[("s1", s1.addr), ("s9", dead_addr().await)], "")
    );
    let err = rt.apply(&config(&bad));
    assert!(matches!(err, Err(dataplane::Error::Bind { .. })), "{err:?}");
    let st = rt.status();
    assert_eq!(st.frontends.len(), 1);
    assert_eq!(st.backends[0].servers.len(), 1);
    rt.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_hand_over_to_a_new_runtime() {
    let s1 = TestServer::start("s1").await;
    let cfg = config(&web(&[("s1", s1.addr)], "health = { kind = \"none\" }"));
    let old = Runtime::new().unwrap();
    old.apply(&cfg).unwrap();
    let addr = old.local_addr("web").unwrap();
    let fds = old.listener_fds().unwrap();
    assert_eq!(fds.len(), 1);
    let new = Runtime::new().unwrap();
    new.adopt_listeners(fds);
    let diff = new.apply(&cfg).unwrap();
    assert!(diff
        .changes
        .iter()
        .any(|c| matches!(c, Change::ListenerOpened { .. })));
    assert_eq!(new.local_addr("web"), Some(addr));
    let report = old.shutdown(Duration::from_secs(5)).await;
    assert!(report.drained);
    for _ in 0..5 {
        assert_eq!(get(addr, "/").await.unwrap().0, 200);
    }
    assert_eq!(new.status().frontends[0].requests, 5);
    new.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_then_aborts() {
    let s1 = TestServer::start("s1").await;
    let rt = Runtime::new().unwrap();
    rt.apply(&config(&web(
        &[("s1", s1.addr)],
        "health = { kind = \"none\" }",
    )))
    .unwrap();
    let addr = rt.local_addr("web").unwrap();
    let slow = tokio::spawn(get(addr, "/slow?ms=800"));
    assert!(wait_until(|| rt.status().backends[0].servers[0].active_connections == 1).await);
    let report = rt.shutdown(Duration::from_secs(10)).await;
    assert!(report.drained);
    assert_eq!(slow.await.unwrap().unwrap().0, 200);
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
    assert!(rt.apply(&config(&web(&[("s1", s1.addr)], ""))).is_err());

    let rt = Runtime::new().unwrap();
    rt.apply(&config(&web(
        &[("s1", s1.addr)],
        "health = { kind = \"none\" }",
    )))
    .unwrap();
    let addr = rt.local_addr("web").unwrap();
    let slow = tokio::spawn(get(addr, "/slow?ms=10000"));
    assert!(wait_until(|| rt.status().backends[0].servers[0].active_connections == 1).await);
    let report = rt.shutdown(Duration::from_millis(200)).await;
    assert!(!report.drained);
    assert_eq!(report.aborted, 1);
    // The client sees the connection closed, not a 200.
    let r = slow.await.unwrap();
    assert!(r.map(|(s, _)| s != 200).unwrap_or(true));
}

#[tokio::test]
async fn a_listener_removed_and_wanted_again_at_once_keeps_its_socket() {
    let s1 = TestServer::start("s1").await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let backend = format!(
        "[[backend]]\nname = \"web\"\nservers = [ {} ]\nhealth = {{ kind = \"none\" }}\n",
        servers_toml(&[("s1", s1.addr)])
    );
    let with = config(&format!(
        "[[frontend]]\nname = \"web\"\nbind = \"{port}\"\nmode = \"http\"\nbackend = \"web\"\n\n{backend}"
    ));
    let without = config(&backend);
    let rt = Runtime::new().unwrap();
    rt.apply(&with).unwrap();
    assert_eq!(get(port, "/").await.unwrap().0, 200);
    // Off and on again before the accept loop has run (the cluster gates
    // frontends like this): the second apply must not fail to bind.
    rt.apply(&without).unwrap();
    let diff = rt.apply(&with).unwrap();
    assert!(diff
        .changes
        .iter()
        .any(|c| matches!(c, Change::ListenerOpened { .. })));
    for _ in 0..3 {
        assert_eq!(get(port, "/").await.unwrap().0, 200);
    }
    // Removed for good: once its loop has ended, the port is closed.
    rt.apply(&without).unwrap();
    let mut refused = false;
    for _ in 0..100 {
        if TcpStream::connect(port).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "the removed listener still accepts connections");
    rt.shutdown(Duration::from_secs(5)).await;
}
