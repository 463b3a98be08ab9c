//! Cluster heartbeats end to end: forged, malformed and replayed datagrams
//! sent into a running node's heartbeat port are rejected and counted
//! (status and `halb_cluster_rx_rejected_total{reason}`) without disturbing
//! the cluster; and a crashed master's VIP is taken over from membership
//! (reason "takeover"), not after VRRP's Master_Down_Interval.

mod cluster_common;
mod common;
mod vrrp_common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use cluster_common::{
    node_state, quorate, wait_cluster, wait_vrrp, ClusterLab, Opts, CLUSTER_PORT,
};
use control::cluster::wire::{Body, ClusterId, ClusterKey, Codec, Header, HeartbeatBody, Message};
use control::cluster::{Incarnation, LinkId, NodeId, Seq};

const T: Duration = Duration::from_secs(15);

fn udp_payload(p: &testsupport::Packet) -> Option<Vec<u8>> {
    let (proto, l4) = p.ip()?;
    (proto == 17 && l4.len() > 8).then(|| l4[8..].to_vec())
}

#[test]
fn cluster_forged_and_replayed_heartbeats_are_rejected_and_counted() {
    testsupport::require_root!();
    let lab = ClusterLab::new("cla", 2, 1, false);
    let o = Opts {
        priorities: vec![150, 100],
        fencing: false,
        ..Opts::default()
    };
    let n1 = lab.start("n1", &o);
    let n2 = lab.start("n2", &o);
    for n in [&n1, &n2] {
        wait_cluster(n, "quorum", T, quorate);
    }
    wait_vrrp(&n1, "master", T);

    // A genuine heartbeat of n2, as n1 received it.
    let cap = lab
        .member("n1")
        .ns
        .capture(
            "eth1",
            &format!("udp dst port {CLUSTER_PORT} and src host 10.1.0.2"),
        )
        .expect("capture");
    let packets = cap
        .wait_for(T, |p| p.iter().filter_map(udp_payload).count() >= 2)
        .expect("heartbeats captured");
    let _ = cap.stop();
    let genuine = packets
        .iter()
        .find_map(udp_payload)
        .expect("a heartbeat payload");

    // An intruder on the ring: replays it, sends junk, and forges with a
    // wrong key (as n2, with a huge incarnation).
    let mallory = lab.lab.netns("mal").expect("ns");
    lab.lab
        .attach(&mallory, "eth0", &lab.rings[0])
        .expect("attach");
    mallory.add_addr("eth0", "10.1.0.66/24").expect("addr");
    let ids = ClusterId::from_names(["n1", "n2"]);
    let wrong = Codec::new(
        &ClusterKey::from_bytes(&[7u8; 48]).expect("key"),
        ids,
        false,
    );
    let forged = wrong
        .encode(&Message {
            header: Header {
                cluster: ids,
                sender: NodeId(1),
                link: LinkId(0),
                incarnation: Incarnation(u64::MAX - 1),
                seq: Seq(1),
            },
            body: Body::Heartbeat(HeartbeatBody::default()),
        })
        .expect("encode");
    mallory
        .run(move || {
            let s = UdpSocket::bind("10.1.0.66:0").expect("bind");
            let to: SocketAddr = format!("10.1.0.1:{CLUSTER_PORT}").parse().expect("addr");
            for _ in 0..3 {
                s.send_to(&genuine, to).expect("replay");
                std::thread::sleep(Duration::from_millis(5));
            }
            s.send_to(&forged, to).expect("forged");
            s.send_to(b"HB not a heartbeat", to).expect("junk");
        })
        .expect("intruder");

    let c1 = wait_cluster(&n1, "rejections counted", T, |c| {
        let r = &c["counters"]["rx_rejected"];
        r["replay"].as_u64() >= Some(3)
            && r["bad_mac"].as_u64() >= Some(1)
            && r["malformed"].as_u64() >= Some(1)
    });
    // Nothing changed: n2 is online with its real incarnation, n1 master.
    assert!(quorate(&c1), "{c1}");
    assert_eq!(node_state(&c1, "n2"), "online", "{c1}");
    let real = cluster_common::cluster(&n2)["status"]["core"]["incarnation"].clone();
    assert_eq!(c1["core"]["nodes"][1]["incarnation"], real, "{c1}");
    assert_eq!(cluster_common::vrrp_state(&n1), "master");
    let text = cluster_common::metrics(&n1);
    for reason in ["replay", "bad_mac", "malformed"] {
        let v = common::metric(
            &text,
            "halb_cluster_rx_rejected_total",
            &[("reason", reason)],
        );
        assert!(v.is_some_and(|v| v >= 1.0), "{reason}: {v:?} in\n{text}");
    }
    let status = String::from_utf8_lossy(&n1.cli(&["status"]).stdout).to_string();
    assert!(status.contains("rejected: bad_mac 1"), "{status}");
}

#[test]
fn cluster_crashed_master_is_taken_over_from_membership_not_master_down_interval() {
    testsupport::require_root!();
    let lab = ClusterLab::new("clf", 3, 1, false);
    // Adverts every second: VRRP alone would wait about 3.6 s.
    let o = Opts {
        fencing: false,
        heartbeat: "10ms",
        advert: "1s",
        ..Opts::default()
    };
    let mut n1 = lab.start("n1", &o);
    let n2 = lab.start("n2", &o);
    let n3 = lab.start("n3", &o);
    for n in [&n1, &n2, &n3] {
        wait_cluster(n, "quorum", T, |c| {
            quorate(c) && c["core"]["quorum"]["votes"] == 3
        });
    }
    wait_vrrp(&n1, "master", T);
    lab.wait_answer("n1", T);
    n1.crash();
    let m1 = lab.member("n1");
    lab.lab.cut(&m1.lan).expect("cut lan");
    lab.cut_rings("n1");
    let v2 = wait_vrrp(&n2, "master", T);
    assert_eq!(v2["last_transition"]["reason"], "takeover", "{v2}");
    lab.wait_answer("n2", T);
    let c2 = cluster_common::cluster(&n2)["status"].clone();
    assert_eq!(node_state(&c2, "n1"), "offline", "{c2}");
    assert_eq!(c2["core"]["instances"][0]["takeovers"], 1, "{c2}");
    assert_eq!(cluster_common::vrrp_state(&n3), "backup");
}
