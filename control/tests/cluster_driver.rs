//! The tokio cluster driver over real UDP sockets on 127.0.0.0/8 addresses
//! (every 127.x.y.z is local without any setup), with the real
//! `fence_dummy` agent, forged and replayed datagrams.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use control::cluster::coordinator::{Command, InstanceSpec, NodeState};
use control::cluster::driver::{ClusterHandle, Decisions, Driver, DriverError, DriverSettings};
use control::cluster::wire::{
    Body, ClusterId, ClusterKey, Codec, Header, HeartbeatBody, KeyError, Message,
};
use control::cluster::{Incarnation, LinkId, NodeId, Seq};
use control::config::ClusterConfig;
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const KEY: [u8; 48] = [0x42; 48];

struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("halb-cl-drv-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("scratch dir");
        let key = p.join("cluster.key");
        std::fs::write(&key, KEY).expect("key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port unlikely to collide with other test processes.
fn port() -> u16 {
    20_000 + (std::process::id() % 20_000) as u16
}

fn ip(block: u8, host: u8) -> String {
    format!("127.77.{block}.{host}")
}

/// A cluster section for `n` nodes on 127.77.`block`.(1..=n).
fn cluster(s: &Scratch, block: u8, n: usize, extra: &str, fencing: bool) -> ClusterConfig {
    let nodes: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "{{ name = \"n{i}\", addresses = [\"{}\"] }}",
                ip(block, i as u8 + 1)
            )
        })
        .collect();
    let names: Vec<String> = (0..n).map(|i| format!("\"n{i}\"")).collect();
    let fence = if fencing {
        format!(
            "[[cluster.fence_device]]\nname = \"dummy\"\nagent = \"/usr/sbin/fence_dummy\"\nnodes = [{}]\ntimeout = \"10s\"\nretries = 1\nmonitor_interval = \"1s\"\noptions = {{ status_file = \"{}\", type = \"file\" }}\n",
            names.join(", "),
            s.0.join("power").display()
        )
    } else {
        String::new()
    };
    let text = format!(
        "[node]\nname = \"n0\"\n\n[cluster]\nnodes = [{}]\nport = {}\nauth_key_file = \"{}\"\nheartbeat_interval = \"20ms\"\nmiss_count = 3\n{extra}\n\n{fence}",
        nodes.join(", "),
        port(),
        s.0.join("cluster.key").display()
    );
    match control::config::parse(&text, "test.toml") {
        Ok(c) => c.cluster.expect("cluster section"),
        Err(e) => panic!("test config invalid:\n{e}\n{text}"),
    }
}

fn start(c: &ClusterConfig, node: usize, prio: u8) -> (ClusterHandle, JoinHandle<()>) {
    let settings = DriverSettings {
        fence_retry_pause: Duration::from_millis(50),
        ..DriverSettings::new(
            c.clone(),
            &format!("n{node}"),
            vec![InstanceSpec {
                name: "web".into(),
                priority: prio,
            }],
        )
    };
    let (driver, handle) = Driver::new(settings).expect("driver starts");
    (handle, tokio::spawn(driver.run()))
}

async fn wait_for(
    rx: &mut watch::Receiver<Decisions>,
    what: &str,
    cond: impl Fn(&Decisions) -> bool,
) -> Decisions {
    let r = tokio::time::timeout(Duration::from_secs(10), async {
        rx.wait_for(|d| cond(d)).await.map(|d| d.clone())
    })
    .await;
    match r {
        Ok(Ok(d)) => d,
        _ => panic!("timed out waiting for {what}; last: {:?}", *rx.borrow()),
    }
}

/// Polls a node's status until `cond` holds.
async fn wait_status(
    h: &ClusterHandle,
    what: &str,
    cond: impl Fn(&control::cluster::driver::ClusterStatus) -> bool,
) -> control::cluster::driver::ClusterStatus {
    for _ in 0..500 {
        let st = h.status().await.expect("status");
        if cond(&st) {
            return st;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}: {:?}", h.status().await);
}

fn master(d: &Decisions) -> bool {
    d.instances.get("web").is_some_and(|i| i.may_be_master)
}

#[tokio::test]
async fn two_drivers_elect_one_master_plain_and_encrypted() {
    for (block, encrypt) in [(1u8, false), (2u8, true)] {
        let s = Scratch::new(&format!("two{block}"));
        let c = cluster(&s, block, 2, &format!("encrypt = {encrypt}"), false);
        let (h0, j0) = start(&c, 0, 100);
        let (h1, j1) = start(&c, 1, 150);
        let mut d1 = h1.decisions();
        wait_for(&mut d1, "n1 master", master).await;
        let d0 = h0.decisions().borrow().clone();
        assert!(!master(&d0), "only the higher priority is master");
        assert!(d0.quorate && !d0.must_release_all);
        let st = wait_status(&h0, "n1 seen as holder", |st| {
            st.core.instances[0].holders == vec![NodeId(1)]
        })
        .await;
        assert_eq!(st.node, "n0");
        assert_eq!(st.core.quorum.votes, 2);
        assert!(st.core.nodes.iter().all(|n| n.state == NodeState::Online));
        assert!(st.core.nodes[1].links[0].up);
        assert!(st.counters.rx > 0 && st.counters.tx > 0);
        assert!(
            st.counters.rx_rejected.values().all(|v| *v == 0),
            "{:?}",
            st.counters
        );
        assert_eq!(
            st.links[0].local.to_string(),
            format!("{}:{}", ip(block, 1), port())
        );
        let json = serde_json::to_string(&st).expect("serializes");
        let back: control::cluster::driver::ClusterStatus =
            serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, st);
        h0.stop().expect("stop");
        h1.stop().expect("stop");
        j0.await.expect("n0 ends");
        j1.await.expect("n1 ends");
        assert!(matches!(h0.status().await, Err(DriverError::Stopped)));
    }
}

#[tokio::test]
async fn crashed_master_is_fenced_with_fence_dummy_then_taken_over() {
    let s = Scratch::new("fence");
    let c = cluster(&s, 3, 3, "", true);
    let (h0, _j0) = start(&c, 0, 100);
    let (h1, j1) = start(&c, 1, 150);
    let (h2, _j2) = start(&c, 2, 120);
    wait_for(&mut h1.decisions(), "n1 master", master).await;
    wait_status(&h2, "n1 seen as holder", |st| {
        st.core.instances[0].holders == vec![NodeId(1)]
    })
    .await;
    std::fs::write(s.0.join("power"), "on").expect("power on");
    // Crash n1: its driver stops without a word.
    h1.stop().expect("stop");
    j1.await.expect("n1 ends");
    let d2 = wait_for(&mut h2.decisions(), "n2 takes over", master).await;
    assert_eq!(d2.instances["web"].takeover, 1, "fast takeover hint");
    assert_eq!(
        std::fs::read_to_string(s.0.join("power")).expect("status file"),
        "off",
        "fence_dummy powered n1 off before the takeover"
    );
    let st0 = h0.status().await.expect("status");
    let f = st0.fencing.last().expect("n0 fenced");
    assert_eq!((f.node.as_str(), f.ok, f.by.as_deref()), ("n1", true, None));
    assert_eq!(f.device.as_deref(), Some("dummy"));
    let st2 = h2.status().await.expect("status");
    assert_eq!(st2.core.nodes[1].state, NodeState::Fenced);
    assert!(st2
        .fencing
        .iter()
        .any(|f| f.node == "n1" && f.ok && f.by.as_deref() == Some("n0")));
    assert!(!master(&h0.decisions().borrow()));
    // The device monitor ran (every second) and found fence_dummy usable.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let st0 = h0.status().await.expect("status");
    assert_eq!(st0.devices[0].ok, Some(true), "{:?}", st0.devices);
}

#[tokio::test]
async fn graceful_leave_hands_over_without_fencing() {
    let s = Scratch::new("leave");
    let c = cluster(&s, 4, 3, "", true);
    let (h0, _j0) = start(&c, 0, 100);
    let (h1, j1) = start(&c, 1, 150);
    let (h2, _j2) = start(&c, 2, 120);
    wait_for(&mut h1.decisions(), "n1 master", master).await;
    h1.report_local("web", true, 150).expect("report");
    assert!(matches!(
        h1.report_local("nope", true, 1),
        Err(DriverError::UnknownInstance(_))
    ));
    h1.leave().expect("leave");
    let d1 = wait_for(&mut h1.decisions(), "n1 releases", |d| !master(d)).await;
    assert!(d1.must_release_all);
    // The VRRP side reports the VIP gone; then the driver says goodbye.
    h1.report_local("web", false, 150).expect("report");
    tokio::time::timeout(Duration::from_secs(5), j1)
        .await
        .expect("run() returns after leaving")
        .expect("joins");
    wait_for(&mut h2.decisions(), "n2 takes over", master).await;
    let st2 = h2.status().await.expect("status");
    assert_eq!(st2.core.nodes[1].state, NodeState::Left);
    assert!(st2.fencing.is_empty() && h0.status().await.expect("status").fencing.is_empty());
    assert!(!s.0.join("power").exists(), "fence_dummy never ran");
}

#[tokio::test]
async fn standby_command_moves_the_vip() {
    let s = Scratch::new("standby");
    let c = cluster(&s, 5, 2, "", false);
    let (h0, _j0) = start(&c, 0, 100);
    let (h1, _j1) = start(&c, 1, 150);
    wait_for(&mut h1.decisions(), "n1 master", master).await;
    h1.command(Command::Standby).expect("standby");
    wait_for(&mut h0.decisions(), "n0 master", master).await;
    assert!(!master(&h1.decisions().borrow()));
    let st = h0.status().await.expect("status");
    assert_eq!(st.core.nodes[1].state, NodeState::Standby);
}

fn forged(cluster: ClusterId, sender: u16, link: u8, inc: u64, seq: u64) -> Message {
    Message {
        header: Header {
            cluster,
            sender: NodeId(sender),
            link: LinkId(link),
            incarnation: Incarnation(inc),
            seq: Seq(seq),
        },
        body: Body::Heartbeat(HeartbeatBody::default()),
    }
}

#[test]
fn forged_and_replayed_heartbeats_are_rejected_and_counted() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let prom = recorder.handle();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let status = metrics::with_local_recorder(&recorder, || {
        rt.block_on(async {
            let s = Scratch::new("forge");
            let c = cluster(&s, 6, 3, "", false);
            let (h0, _j0) = start(&c, 0, 100);
            let target = format!("{}:{}", ip(6, 1), port());
            // Send from n2's address: n2 is not running.
            let sock = UdpSocket::bind(format!("{}:0", ip(6, 3)))
                .await
                .expect("bind");
            let id = ClusterId::from_names(["n0", "n1", "n2"]);
            let good = Codec::new(&ClusterKey::from_bytes(&KEY).expect("key"), id, false);
            let bad = Codec::new(&ClusterKey::from_bytes(&[1u8; 48]).expect("key"), id, false);
            let send = |b: Vec<u8>| {
                let sock = &sock;
                let target = target.clone();
                async move {
                    sock.send_to(&b, &target).await.expect("send");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            let enc = |c: &Codec, m: Message| c.encode(&m).expect("encodes");
            send(enc(&bad, forged(id, 2, 0, 1000, 1))).await; // bad_mac
            let genuine = enc(&good, forged(id, 2, 0, 1000, 5));
            send(genuine.clone()).await; // accepted
            send(genuine).await; // replay
            send(enc(&good, forged(id, 2, 0, 1000, 4))).await; // replay
            send(enc(&good, forged(id, 2, 0, 999, 50))).await; // stale_incarnation
            send(enc(&good, forged(ClusterId(7), 2, 0, 1000, 6))).await; // wrong_cluster
            send(enc(&good, forged(id, 9, 0, 1, 1))).await; // unknown_node
            send(enc(&good, forged(id, 2, 1, 1000, 7))).await; // wrong_link
            send(b"HB junk".to_vec()).await; // malformed
            let st = h0.status().await.expect("status");
            h0.stop().expect("stop");
            st
        })
    });
    let r = &status.counters.rx_rejected;
    assert_eq!(r["bad_mac"], 1, "{r:?}");
    assert_eq!(r["replay"], 2, "{r:?}");
    assert_eq!(r["stale_incarnation"], 1, "{r:?}");
    assert_eq!(r["wrong_cluster"], 1, "{r:?}");
    assert_eq!(r["unknown_node"], 1, "{r:?}");
    assert_eq!(r["wrong_link"], 1, "{r:?}");
    assert_eq!(r["malformed"], 1, "{r:?}");
    assert_eq!(r["decrypt"], 0, "{r:?}");
    assert_eq!(
        status.counters.rx, 1,
        "only the genuine heartbeat got through"
    );
    let text = prom.render();
    for line in [
        r#"halb_cluster_rx_rejected_total{reason="bad_mac"} 1"#,
        r#"halb_cluster_rx_rejected_total{reason="replay"} 2"#,
        r#"halb_cluster_rx_rejected_total{reason="stale_incarnation"} 1"#,
        "halb_cluster_rx_total 1",
    ] {
        assert!(text.contains(line), "missing {line} in:\n{text}");
    }
    assert!(text.contains("halb_cluster_tx_total"), "{text}");
}

#[tokio::test]
async fn startup_errors_are_clear() {
    let s = Scratch::new("errors");
    let mut c = cluster(&s, 7, 2, "", false);
    let settings = |c: &ClusterConfig, node: &str| DriverSettings::new(c.clone(), node, vec![]);
    match Driver::new(settings(&c, "n9")) {
        Err(DriverError::Coordinator(e)) => assert!(e.to_string().contains("n9"), "{e}"),
        other => panic!("expected not-a-member, got {:?}", other.err()),
    }
    c.auth_key_file = s.0.join("missing.key");
    match Driver::new(settings(&c, "n0")) {
        Err(DriverError::Key(KeyError::Missing { .. })) => {}
        other => panic!("expected missing key, got {:?}", other.err()),
    }
    std::fs::set_permissions(
        s.0.join("cluster.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    c.auth_key_file = s.0.join("cluster.key");
    match Driver::new(settings(&c, "n0")) {
        Err(DriverError::Key(KeyError::Permissions { mode: 0o644, .. })) => {}
        other => panic!("expected permissions error, got {:?}", other.err()),
    }
    // An address that is not local cannot be bound.
    c.nodes[0].addresses = vec!["192.0.2.1".parse().expect("ip")];
    let mut with_key = settings(&c, "n0");
    with_key.key = ClusterKey::from_bytes(&KEY);
    match Driver::new(with_key) {
        Err(e @ DriverError::Bind { .. }) => assert!(e.to_string().contains("192.0.2.1"), "{e}"),
        other => panic!("expected bind error, got {:?}", other.err()),
    }
}

/// 1 ms heartbeats, no fencing: the backup's decision to take over (with a
/// takeover hint) follows the master's crash within a few milliseconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ms_heartbeats_fast_failover_over_udp() {
    let s = Scratch::new("fast");
    let mut c = cluster(&s, 10, 3, "", false);
    c.heartbeat_interval = Duration::from_millis(1);
    // Detection after 10 missed 1 ms heartbeats: with 3 a scheduling stall
    // of a few ms on a loaded 2-core CI machine made the steady cluster flap
    // before the crash (and the takeover hint then counts from that flap).
    c.miss_count = 10;
    let (_h0, _j0) = start(&c, 0, 100);
    let (h1, j1) = start(&c, 1, 150);
    let (h2, _j2) = start(&c, 2, 120);
    wait_for(&mut h1.decisions(), "n1 master", master).await;
    wait_status(&h2, "n1 seen as holder", |st| {
        st.core.instances[0].holders == vec![NodeId(1)]
    })
    .await;
    // Let the cluster run steadily for a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    h1.stop().expect("stop");
    j1.await.expect("n1 ends");
    let crashed = tokio::time::Instant::now();
    let d = wait_for(&mut h2.decisions(), "n2 takes over", master).await;
    let gap = crashed.elapsed();
    eprintln!("takeover decision {gap:?} after the crash (detection 10 ms)");
    assert_eq!(d.instances["web"].takeover, 1, "takeover hint");
    assert!(gap < Duration::from_millis(100), "{gap:?}");
}
