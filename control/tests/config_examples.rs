//! Valid configs: the shipped examples parse, defaults are filled in, and
//! the typed model serializes for `halb status --json`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use control::config::{
    load, parse, Algorithm, Config, FenceAction, ForwardedHeaders, Forwarding, FrontendMode,
    HashKey, HealthKind, IpFamily, NoQuorumPolicy, ProxyProtocol, V3Checksum, VrrpVersion,
    WorkerScaling, XdpMode,
};

fn example(name: &str) -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    match load(&path) {
        Ok(c) => c,
        Err(e) => panic!("{name} must be valid:\n{e}"),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

#[test]
fn minimal_example_parses_with_defaults() {
    let c = example("minimal.toml");
    assert_eq!(c.node.name, "lb1");
    assert_eq!(c.node.admin_socket, PathBuf::from("/run/halb/admin.sock"));
    assert_eq!(c.node.metrics_listen, None);
    assert!(c.node.worker_threads >= 1);
    assert_eq!(c.node.worker_scaling, WorkerScaling::Auto);
    assert_eq!(c.node.shutdown_timeout, Duration::from_secs(10));
    assert!(c.vrrp.is_empty());
    assert!(c.cluster.is_none());

    let f = c.frontend("web").expect("frontend web");
    assert_eq!(f.bind, addr("127.0.0.1:8080"));
    assert_eq!(f.mode, FrontendMode::Http);
    assert_eq!(f.forwarding, Forwarding::Proxy);
    assert_eq!(f.xdp, XdpMode::Off);
    assert_eq!(f.timeouts.client_header, Duration::from_secs(10));
    assert_eq!(f.timeouts.client_idle, Duration::from_secs(60));
    assert_eq!(f.timeouts.connect, Duration::from_secs(3));
    assert_eq!(f.timeouts.server, Duration::from_secs(60));
    assert_eq!(f.timeouts.udp_idle, Duration::from_secs(30));
    assert_eq!(f.buffer_size, 16_384);
    assert_eq!(f.max_header_size, 65_536);
    assert_eq!(f.forwarded_headers, ForwardedHeaders::XForwarded);

    let b = c.backend("web").expect("backend web");
    assert_eq!(b.algorithm, Algorithm::RoundRobin);
    assert_eq!(b.hash_key, HashKey::SourceIp);
    assert_eq!(b.maglev_table_size, 65_537);
    assert_eq!(b.servers.len(), 1);
    assert_eq!(b.servers[0].weight, 1);
    assert!(!b.servers[0].backup);
    assert_eq!(b.health.kind, HealthKind::Tcp);
    assert_eq!(b.health.path, "/");
    assert_eq!(b.health.method, "GET");
    assert_eq!(b.health.expect_status, vec![200]);
    assert_eq!(b.health.interval, Duration::from_secs(2));
    assert_eq!(b.health.timeout, Duration::from_secs(1));
    assert_eq!((b.health.rise, b.health.fall), (2, 3));
    assert_eq!(b.drain_timeout, Duration::from_secs(30));
    assert_eq!(b.slow_start, Duration::ZERO);
    assert_eq!(b.connect_retries, 1);
    assert_eq!(b.queue.max, 0);
    assert_eq!(b.outlier.consecutive_failures, 0);
    assert_eq!(b.send_proxy_protocol, None);
}

#[test]
fn full_example_parses() {
    let c = example("halb.toml");
    assert_eq!(c.node.metrics_listen, Some(addr("127.0.0.1:9100")));
    assert_eq!(c.node.worker_threads, 2);
    assert_eq!(c.node.worker_scaling, WorkerScaling::All);

    assert_eq!(c.vrrp.len(), 2);
    let v4 = c.vrrp_instance("front").expect("front");
    assert_eq!(v4.vrid, 51);
    assert_eq!(v4.priority, 150);
    assert_eq!(v4.version, VrrpVersion::V3);
    assert_eq!(v4.family(), IpFamily::V4);
    assert_eq!(v4.virtual_ips[0].to_string(), "10.0.0.100/24");
    assert_eq!(v4.garp.refresh, Duration::from_secs(60));
    assert_eq!(v4.track_interfaces[0].weight, -50);
    assert_eq!(
        v4.track_scripts[0].command,
        vec!["/usr/local/bin/check-web"]
    );
    assert_eq!(v4.track_scripts[0].rise, 2);
    assert_eq!(v4.notify, vec![PathBuf::from("/etc/halb/notify.sh")]);
    assert_eq!(v4.v3_checksum, V3Checksum::PseudoHeader);
    assert_eq!(v4.sync_group.as_deref(), Some("edge"));

    let v6 = c.vrrp_instance("front6").expect("front6");
    assert_eq!(v6.family(), IpFamily::V6);
    assert_eq!(v6.advert_interval, Duration::from_millis(100));
    assert_eq!(v6.unicast_peers, vec![ip("2001:db8::2"), ip("2001:db8::3")]);
    assert_eq!(v6.unicast_source, Some(ip("2001:db8::1")));

    let dns = c.frontend("dns").expect("dns");
    assert_eq!(dns.mode, FrontendMode::Udp);
    assert_eq!(dns.forwarding, Forwarding::Ipip);
    assert_eq!(dns.xdp, XdpMode::Native);
    assert_eq!(dns.interface.as_deref(), Some("eth0"));

    let web = c.backend("web").expect("web");
    assert_eq!(web.health.kind, HealthKind::Http);
    assert_eq!(web.health.timeout, Duration::from_millis(500));
    assert_eq!(web.health.expect_status, vec![200, 204]);
    assert!(web.servers[2].backup);
    assert_eq!(web.servers[1].max_connections, Some(500));
    assert_eq!(
        c.backend("dns").map(|b| b.algorithm),
        Some(Algorithm::Maglev)
    );
    assert_eq!(
        c.backend("dns").map(|b| b.hash_key.clone()),
        Some(HashKey::SourceIpPort)
    );
    assert_eq!(
        c.backend("db").and_then(|b| b.send_proxy_protocol),
        Some(ProxyProtocol::V2)
    );

    let cl = c.cluster.as_ref().expect("cluster");
    assert_eq!(cl.nodes.len(), 3);
    assert_eq!(cl.nodes[0].addresses, vec![ip("10.0.0.1"), ip("10.9.0.1")]);
    assert_eq!(cl.port, 5405);
    assert_eq!(cl.quorum.expected_votes, 3);
    assert!(cl.quorum.wait_for_all);
    assert_eq!(cl.no_quorum_policy, NoQuorumPolicy::Stop);
    assert_eq!(cl.witness, Some(addr("10.9.0.9:5405")));
    assert_eq!(cl.fence_devices.len(), 2);
    let f = &cl.fence_devices[0];
    assert_eq!(f.action, FenceAction::Off);
    assert_eq!(f.nodes, vec!["lb2"]);
    // Integer and boolean option values are passed to the agent as text.
    assert_eq!(f.options.get("lanplus").map(String::as_str), Some("true"));
    assert_eq!(f.options.get("port").map(String::as_str), Some("623"));
    assert_eq!(cl.fence_devices[1].retries, 2);
    assert_eq!(
        cl.fence_devices[1].monitor_interval,
        Duration::from_secs(60)
    );
}

#[test]
fn bare_vip_is_a_host_route_and_v2_whole_seconds_are_fine() {
    let c = parse(
        "[node]\nname = \"a\"\n[[vrrp]]\nname = \"v\"\ninterface = \"eth0\"\nvrid = 1\nversion = 2\nadvert_interval = \"3s\"\npriority = 255\nvirtual_ips = [\"10.0.0.1\", \"10.0.0.2/24\"]\n",
        "t.toml",
    )
    .expect("valid");
    let v = &c.vrrp[0];
    assert_eq!(v.version, VrrpVersion::V2);
    assert_eq!(v.priority, 255);
    assert_eq!(v.advert_interval, Duration::from_secs(3));
    assert_eq!(v.virtual_ips[0].to_string(), "10.0.0.1/32");
    assert_eq!(v.virtual_ips[1].to_string(), "10.0.0.2/24");
    assert_eq!(v.garp.repeat, 5);
    assert_eq!(v.garp.interval, Duration::from_millis(10));
    assert!(v.preempt);
    assert!(!v.accept_mode);
    assert_eq!(v.auth_pass, None);
}

#[test]
fn v2_auth_pass_is_kept_and_not_serialized() {
    let c = parse(
        "[node]\nname = \"a\"\n[[vrrp]]\nname = \"v\"\ninterface = \"eth0\"\nvrid = 1\nversion = 2\nvirtual_ips = [\"10.0.0.1\"]\nauth_pass = \"s3cret!8\"\n",
        "t.toml",
    )
    .expect("valid");
    assert_eq!(c.vrrp[0].auth_pass.as_deref(), Some("s3cret!8"));
    let json = serde_json::to_string(&c.vrrp[0]).expect("json");
    assert!(
        !json.contains("s3cret") && !json.contains("auth_pass"),
        "{json}"
    );
}

#[test]
fn v3_accepts_the_interval_bounds() {
    for (text, want) in [("10ms", 10), ("40950ms", 40_950), ("40.95s", 40_950)] {
        let c = parse(
            &format!("[node]\nname = \"a\"\n[[vrrp]]\nname = \"v\"\ninterface = \"eth0\"\nvrid = 1\nadvert_interval = \"{text}\"\nvirtual_ips = [\"2001:db8::1/64\"]\n"),
            "t.toml",
        )
        .unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(c.vrrp[0].advert_interval, Duration::from_millis(want));
    }
}

#[test]
fn two_node_cluster_defaults_wait_for_all_and_sums_votes() {
    let c = parse(
        "[node]\nname = \"lb1\"\n[cluster]\nnodes = [{ name = \"lb1\", addresses = [\"10.0.0.1\"] }, { name = \"lb2\", addresses = [\"10.0.0.2\"], votes = 2 }]\nauth_key_file = \"/k\"\nquorum = { two_node = true }\n",
        "t.toml",
    )
    .expect("valid");
    let cl = c.cluster.expect("cluster");
    assert!(cl.quorum.two_node);
    assert!(cl.quorum.wait_for_all);
    assert_eq!(cl.quorum.expected_votes, 3);
    assert_eq!(cl.heartbeat_interval, Duration::from_millis(100));
    assert_eq!(cl.miss_count, 3);
    assert!(cl.fence_devices.is_empty());
}

#[test]
fn fence_device_defaults() {
    let c = parse(
        "[node]\nname = \"lb1\"\n[cluster]\nnodes = [{ name = \"lb1\", addresses = [\"10.0.0.1\"] }]\nauth_key_file = \"/k\"\n[[cluster.fence_device]]\nname = \"d\"\nagent = \"/usr/sbin/fence_dummy\"\nnodes = [\"lb1\"]\noptions = { status_file = \"/tmp/s\", delay = 0 }\n",
        "t.toml",
    )
    .expect("valid");
    let f = &c.cluster.expect("cluster").fence_devices[0];
    assert_eq!(f.timeout, Duration::from_secs(30));
    assert_eq!(f.retries, 2);
    assert_eq!(f.delay_max, Duration::ZERO);
    let want: BTreeMap<String, String> = [("delay", "0"), ("status_file", "/tmp/s")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(f.options, want);
}

#[test]
fn serializes_for_status_json() {
    let c = example("halb.toml");
    let v = serde_json::to_value(&c).expect("json");
    assert_eq!(v["node"]["name"], "lb1");
    assert_eq!(v["node"]["shutdown_timeout"], "10s");
    assert_eq!(v["vrrp"][0]["version"], 3);
    assert_eq!(v["vrrp"][0]["virtual_ips"][0], "10.0.0.100/24");
    assert_eq!(v["vrrp"][1]["advert_interval"], "100ms");
    assert_eq!(v["frontends"][1]["forwarding"], "ipip");
    assert_eq!(v["backends"][0]["health"]["timeout"], "500ms");
    assert_eq!(v["backends"][1]["algorithm"], "maglev");
    assert_eq!(v["cluster"]["quorum"]["expected_votes"], 3);
    assert_eq!(v["cluster"]["fence_devices"][0]["options"]["port"], "623");
}

#[test]
fn parsing_the_same_text_twice_gives_equal_configs() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/halb.toml"),
    )
    .expect("read example");
    let a = parse(&text, "a.toml").expect("valid");
    let b = parse(&text, "b.toml").expect("valid");
    assert_eq!(a, b);
    let mut changed = a.clone();
    changed.vrrp[0].priority = 1;
    assert_ne!(a, changed);
}
