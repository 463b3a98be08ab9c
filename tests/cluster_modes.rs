//! Cluster node modes end to end: `halb node standby` moves the VIP and the
//! new connections away and they stay away until `halb node unstandby`;
//! maintenance keeps what is held and takes nothing new; SIGTERM is a
//! graceful leave (handed over without fencing).

mod cluster_common;
mod common;
mod vrrp_common;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use cluster_common::{node_state, quorate, wait_cluster, wait_vrrp, ClusterLab, Opts};

const T: Duration = Duration::from_secs(15);

const FRONTEND: &str =
    "[[frontend]]\nname = \"tcp\"\nbind = \"0.0.0.0:8081\"\nmode = \"tcp\"\nbackend = \"b\"\n\n\
[[backend]]\nname = \"b\"\nservers = [ { name = \"a\", address = \"127.0.0.1:9\" } ]\n";

/// Whether a TCP connection from the client to `addr` is accepted.
fn connects(lab: &ClusterLab, addr: &str) -> bool {
    let addr: SocketAddr = addr.parse().expect("addr");
    lab.client
        .run(move || TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok())
        .expect("client thread")
}

fn wait_connects(lab: &ClusterLab, addr: &str, want: bool) {
    for _ in 0..200 {
        if connects(lab, addr) == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("connecting to {addr} never became {want}");
}

fn text_status(n: &common::Node) -> String {
    String::from_utf8_lossy(&n.cli(&["status"]).stdout).to_string()
}

#[test]
fn cluster_standby_moves_vip_and_connections_away_until_unstandby() {
    testsupport::require_root!();
    let lab = ClusterLab::new("cls", 3, 1, false);
    let o = Opts {
        failback: "auto",
        extra: FRONTEND.to_string(),
        ..Opts::default()
    };
    let n1 = lab.start("n1", &o);
    let n2 = lab.start("n2", &o);
    let n3 = lab.start("n3", &o);
    for n in [&n1, &n2, &n3] {
        wait_cluster(n, "quorum", T, quorate);
    }
    wait_vrrp(&n1, "master", T);
    lab.wait_answer("n1", T);
    wait_connects(&lab, "10.0.0.1:8081", true);

    let out = n1.cli(&["node", "standby"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("standby"),
        "{out:?}"
    );
    let c1 = wait_cluster(&n1, "n1 in standby", T, |c| c["core"]["standby"] == true);
    assert_eq!(c1["core"]["must_release_all"], true, "{c1}");
    let v2 = wait_vrrp(&n2, "master", T);
    assert_eq!(v2["last_transition"]["reason"], "takeover", "{v2}");
    lab.wait_answer("n2", T);
    wait_cluster(&n2, "n2 sees n1 in standby", T, |c| {
        node_state(c, "n1") == "standby"
    });
    assert!(
        text_status(&n2).contains("Standby: [ n1 ]"),
        "{}",
        text_status(&n2)
    );
    // New connections to the standby node are refused; n2 takes them.
    wait_connects(&lab, "10.0.0.1:8081", false);
    wait_connects(&lab, "10.0.0.2:8081", true);
    assert_eq!(lab.power("n1"), "on", "a standby node must not be fenced");

    // It stays away: many detection times later n2 still holds the VIP,
    // although n1 has the higher priority and failback is automatic.
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(lab.probe().as_deref(), Some("n2"));
        assert!(!lab.holds("n1"));
    }
    assert_eq!(cluster_common::vrrp_state(&n1), "backup");

    // Unstandby: automatic failback brings the VIP back to n1.
    let out = n1.cli(&["node", "unstandby"]);
    assert!(out.status.success(), "{out:?}");
    wait_vrrp(&n1, "master", T);
    wait_vrrp(&n2, "backup", T);
    lab.wait_answer("n1", T);
    wait_connects(&lab, "10.0.0.1:8081", true);
    assert!(!lab.holds("n2"));
}

#[test]
fn cluster_maintenance_keeps_what_it_holds_and_sigterm_leaves_without_fencing() {
    testsupport::require_root!();
    let lab = ClusterLab::new("clm", 3, 1, false);
    let o = Opts::default();
    let mut n1 = lab.start("n1", &o);
    let n2 = lab.start("n2", &o);
    let n3 = lab.start("n3", &o);
    for n in [&n1, &n2, &n3] {
        wait_cluster(n, "quorum", T, quorate);
    }
    wait_vrrp(&n1, "master", T);
    lab.wait_answer("n1", T);

    // n2 (next in line) goes into maintenance: it takes nothing new.
    let out = n2.cli(&["node", "maintenance"]);
    assert!(out.status.success(), "{out:?}");
    wait_cluster(&n1, "n1 sees n2 in maintenance", T, |c| {
        node_state(c, "n2") == "maintenance"
    });

    // n1 stops gracefully: it leaves the cluster, nobody fences it, and n3
    // (not n2, in maintenance) takes the VIP over.
    assert_eq!(n1.stop(T), Some(0), "log:\n{}", n1.log());
    let c3 = wait_cluster(&n3, "n3 sees n1 gone", T, |c| node_state(c, "n1") == "left");
    assert!(quorate(&c3), "{c3}");
    let v3 = wait_vrrp(&n3, "master", T);
    assert_eq!(v3["last_transition"]["reason"], "takeover", "{v3}");
    lab.wait_answer("n3", T);
    assert_eq!(cluster_common::vrrp_state(&n2), "backup");
    assert!(!lab.holds("n1"), "n1 kept the VIP after SIGTERM");
    assert_eq!(lab.power("n1"), "on", "a node that left must not be fenced");
    let fencing = c3["fencing"].as_array().cloned().unwrap_or_default();
    assert!(fencing.is_empty(), "unexpected fencing: {c3}");

    // Out of maintenance, n2 manages again.
    let out = n2.cli(&["node", "unmaintenance"]);
    assert!(out.status.success(), "{out:?}");
    wait_cluster(&n3, "n3 sees n2 online", T, |c| {
        node_state(c, "n2") == "online"
    });

    // Reloads: a new VRRP instance cannot join a running cluster (rejected,
    // the running config stays); a changed [cluster] waits for a restart.
    let original = std::fs::read_to_string(&n2.config).expect("config");
    let extra = original.replacen(
        "[cluster]",
        "[[vrrp]]\nname = \"back\"\ninterface = \"eth0\"\nvrid = 52\npriority = 100\n\
         virtual_ips = [\"10.0.0.101/24\"]\n\n[cluster]",
        1,
    );
    std::fs::write(&n2.config, extra).expect("config");
    let out = n2.cli(&["reload"]);
    assert!(!out.status.success(), "{out:?}");
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(err.contains("VRRP instances changed"), "{err}");
    assert_eq!(n2.status()["generation"], 1);
    std::fs::write(
        &n2.config,
        original.replace(
            "heartbeat_interval = \"30ms\"",
            "heartbeat_interval = \"40ms\"",
        ),
    )
    .expect("config");
    let out = n2.cli(&["reload"]);
    assert!(out.status.success(), "{out:?}");
    let s = n2.status();
    assert_eq!(s["generation"], 2, "{s}");
    let changes = s["last_reload"]["changes"].to_string();
    assert!(
        changes.contains("cluster section changed: takes effect on restart"),
        "{changes}"
    );
}
