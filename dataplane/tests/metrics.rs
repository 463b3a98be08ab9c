//! Metrics reach a Prometheus recorder with `halb_` names and bounded labels.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use dataplane::{AdminAction, Runtime};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_recorded() {
    // The recorder must be installed before the runtime registers handles.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).unwrap();

    let s1 = TestServer::start("s1").await;
    let s2 = TestServer::start("s2").await;
    let cfg = format!(
        r#"
[[frontend]]
name = "web"
bind = "127.0.0.1:0"
mode = "http"
backend = "pool"

[[backend]]
name = "pool"
servers = [ {{ name = "s1", address = "{}" }}, {{ name = "s2", address = "{}" }} ]
health = {{ kind = "http", path = "/healthz", interval = "50ms", timeout = "40ms", rise = 1, fall = 1 }}
"#,
        s1.addr, s2.addr
    );
    let rt = Runtime::new().unwrap();
    rt.apply(&config(&cfg)).unwrap();
    let addr = rt.local_addr("web").unwrap();
    for _ in 0..4 {
        assert_eq!(get(addr, "/").await.unwrap().0, 200);
    }
    assert_eq!(get(addr, "/status500").await.unwrap().0, 500);
    rt.server_admin("pool", "s2", AdminAction::Drain).unwrap();
    assert!(
        wait_until(|| rt.status().backends[0]
            .servers
            .iter()
            .all(|s| s.last_check.is_some()))
        .await
    );
    // Idle client connections leave their tasks for the frontend's parker
    // (after 100 ms without a byte); a request brings one back, and when
    // the clients hang up the parked count goes back to 0.
    let idle: Vec<tokio::net::TcpStream> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        v
    };
    let parked = |n: usize| {
        let needle = format!("halb_frontend_parked_connections{{frontend=\"web\"}} {n}");
        handle.render().lines().any(|l| l == needle)
    };
    assert!(wait_until(|| parked(3)).await, "{}", handle.render());
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut c = idle.into_iter().collect::<Vec<_>>();
        c[0].write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(LONG, c[0].read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
        assert!(wait_until(|| parked(3)).await, "{}", handle.render());
        drop(c);
        assert!(wait_until(|| parked(0)).await, "{}", handle.render());
    }

    let text = handle.render();
    let has = |needle: &str| text.lines().any(|l| l.starts_with(needle));
    assert!(
        has("halb_frontend_requests_total{frontend=\"web\"} 6"),
        "{text}"
    );
    assert!(
        has("halb_frontend_responses_total{frontend=\"web\",class=\"2xx\"} 5"),
        "{text}"
    );
    assert!(
        has("halb_frontend_responses_total{frontend=\"web\",class=\"5xx\"} 1"),
        "{text}"
    );
    assert!(
        has("halb_server_requests_total{backend=\"pool\",server=\"s1\"}"),
        "{text}"
    );
    assert!(
        has("halb_server_state{backend=\"pool\",server=\"s2\"} 2"),
        "{text}"
    );
    assert!(
        has("halb_server_transitions_total{backend=\"pool\",server=\"s2\",to=\"DRAIN\"} 1"),
        "{text}"
    );
    assert!(
        has("halb_frontend_bytes_out_total{frontend=\"web\"}"),
        "{text}"
    );
    assert!(
        has("halb_server_active_connections{backend=\"pool\",server=\"s1\"} 0"),
        "{text}"
    );
    assert!(
        has("halb_backend_queue_length{backend=\"pool\"} 0"),
        "{text}"
    );
    assert!(has("halb_server_check_duration_seconds"), "{text}");
    assert!(has("halb_frontend_request_duration_seconds"), "{text}");
    assert!(
        has("halb_frontend_active_connections{frontend=\"web\"}"),
        "{text}"
    );
    // Every halb metric uses only the bounded label names.
    for line in text.lines().filter(|l| l.starts_with("halb_")) {
        if let Some(labels) = line
            .split_once('{')
            .map(|(_, r)| r.split_once('}').map(|(l, _)| l).unwrap_or(""))
        {
            for kv in labels.split(',').filter(|s| !s.is_empty()) {
                let key = kv.split('=').next().unwrap();
                assert!(
                    ["frontend", "backend", "server", "class", "to", "quantile", "le"]
                        .contains(&key),
                    "unexpected label {key} in {line}"
                );
            }
        }
    }
    rt.shutdown(Duration::from_secs(5)).await;
}
