//! Cluster control end to end: three `halb run` nodes in namespaces with a
//! client LAN and two heartbeat rings. The master's rings are cut: the
//! minority releases the VIP, the majority fences it with Debian's
//! fence_dummy and takes over; the client never sees two machines answer
//! ARP for the VIP in turn; after healing, with `failback = "manual"`, the
//! VIP stays where it is.

mod cluster_common;
mod common;
mod vrrp_common;

use std::time::Duration;

use cluster_common::{
    arping, assert_claims_in_order, node_state, quorate, vip_claims, wait_cluster, wait_vrrp,
    ClusterLab, Opts,
};

const T: Duration = Duration::from_secs(15);

#[test]
fn cluster_partition_minority_releases_majority_fences_and_takes_over_no_flap_back() {
    testsupport::require_root!();
    testsupport::require_tool!("arping");
    let lab = ClusterLab::new("clp", 3, 2, false);
    let o = Opts::default();
    let n1 = lab.start("n1", &o);
    let n2 = lab.start("n2", &o);
    let n3 = lab.start("n3", &o);
    for n in [&n1, &n2, &n3] {
        wait_cluster(n, "quorum of 3", T, |c| {
            quorate(c) && c["core"]["quorum"]["votes"] == 3
        });
    }
    wait_vrrp(&n1, "master", T);
    wait_vrrp(&n2, "backup", T);
    wait_vrrp(&n3, "backup", T);
    lab.wait_answer("n1", T);
    assert!(lab.holds("n1") && !lab.holds("n2") && !lab.holds("n3"));
    let text = n2.cli(&["status"]);
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(
        text.contains("partition WITH quorum, 3 of 3 expected votes"),
        "{text}"
    );
    assert!(text.contains("front (10.0.0.100/24): Started n1"), "{text}");

    // Watch who answers ARP for the VIP from here on.
    let capture = lab.client.capture("eth0", "arp").expect("capture");
    let mut pinger = arping(&lab, 600);

    // Partition: n1 loses both heartbeat rings; the LAN (and VRRP) stays.
    lab.cut_rings("n1");

    // Minority: no quorum under `stop`: the VIP goes, the router is held.
    let c1 = wait_cluster(&n1, "n1 without quorum", T, |c| !quorate(c));
    assert_eq!(c1["core"]["must_release_all"], true, "{c1}");
    let s1 = n1.wait_status("n1 released the VIP", T, |s| {
        s["vrrp"]["instances"][0]["vips_held"] == false
    });
    assert_eq!(s1["vrrp"]["instances"][0]["gated"], true, "{s1}");
    assert_eq!(s1["cluster"]["accepting"], false, "{s1}");

    // Majority: n1 fenced with fence_dummy, then n2 (next priority) takes over.
    let c2 = wait_cluster(&n2, "n1 fenced", T, |c| node_state(c, "n1") == "fenced");
    assert!(quorate(&c2), "{c2}");
    assert_eq!(
        lab.power("n1"),
        "off",
        "fence_dummy did not record the fence"
    );
    let fencing = c2["fencing"].as_array().cloned().unwrap_or_default();
    assert!(
        fencing.iter().any(|f| f["node"] == "n1" && f["ok"] == true),
        "no successful fence of n1 in {c2}"
    );
    let v2 = wait_vrrp(&n2, "master", T);
    assert_eq!(v2["last_transition"]["reason"], "takeover", "{v2}");
    lab.wait_answer("n2", T);
    assert!(!lab.holds("n1"), "the minority kept the VIP");
    let c3 = wait_cluster(&n3, "n3 sees n1 fenced", T, |c| {
        node_state(c, "n1") == "fenced"
    });
    assert!(quorate(&c3), "{c3}");
    assert_eq!(vrrp_state_of(&n3), "backup");

    // Heal: n1 is heard again and rejoins; failback is manual, so the VIP
    // stays on n2 although n1 has the higher priority.
    lab.heal_rings("n1");
    wait_cluster(&n1, "n1 quorate again", T, |c| {
        quorate(c) && c["core"]["quorum"]["votes"] == 3
    });
    wait_cluster(&n2, "n2 sees n1 online", T, |c| {
        node_state(c, "n1") == "online"
    });
    wait_vrrp(&n1, "backup", T);
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(lab.probe().as_deref(), Some("n2"), "the VIP flapped back");
        assert!(!lab.holds("n1"), "n1 took the VIP back");
    }
    assert_eq!(vrrp_state_of(&n2), "master");

    let _ = pinger.kill();
    let packets = capture.stop().expect("capture stop");
    let claims = vip_claims(&packets);
    assert!(
        claims.len() >= 10,
        "too few ARP answers for the VIP captured: {}",
        claims.len()
    );
    assert_claims_in_order(&lab, &claims, &["n1", "n2"]);

    // `halb node failback` (on any node) gives the VIP back to its
    // preferred node.
    let out = n3.cli(&["node", "failback"]);
    assert!(out.status.success(), "{out:?}");
    wait_vrrp(&n1, "master", T);
    wait_vrrp(&n2, "backup", T);
    lab.wait_answer("n1", T);
    assert!(!lab.holds("n2"));
}

fn vrrp_state_of(n: &common::Node) -> String {
    cluster_common::vrrp_state(n)
}
