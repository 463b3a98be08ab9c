//! Two-node clusters end to end: `two_node` with `wait_for_all` (a node
//! alone after a cold start waits for its peer; a lone survivor is quorate
//! only after fencing the other), and a `halb witness` breaking the tie
//! when the two nodes cannot hear each other.

mod cluster_common;
mod common;
mod vrrp_common;

use std::time::Duration;

use cluster_common::{node_state, quorate, wait_cluster, wait_vrrp, ClusterLab, Opts};

const T: Duration = Duration::from_secs(15);

#[test]
fn cluster_two_node_waits_for_all_then_fences_before_taking_over() {
    testsupport::require_root!();
    let lab = ClusterLab::new("cl2", 2, 1, false);
    let o = Opts {
        priorities: vec![150, 100],
        quorum: "{ two_node = true, wait_for_all = true }".into(),
        ..Opts::default()
    };
    let mut n1 = lab.start("n1", &o);
    // Alone after a cold start: never quorate, never master, however long
    // it waits (many detection times here).
    let c1 = wait_cluster(&n1, "wait_for_all pending", T, |c| {
        c["core"]["quorum"]["wait_for_all_pending"] == true
    });
    assert!(!quorate(&c1), "{c1}");
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(100));
        let s = n1.status();
        assert_eq!(s["cluster"]["status"]["core"]["quorum"]["quorate"], false);
        assert_ne!(s["vrrp"]["instances"][0]["state"], "master", "{s}");
        assert!(!lab.holds("n1"));
    }
    assert_eq!(
        lab.power("n2"),
        "on",
        "n2 was fenced before it was ever seen"
    );
    let text = String::from_utf8_lossy(&n1.cli(&["status"]).stdout).to_string();
    assert!(
        text.contains("wait_for_all: waiting for every node"),
        "{text}"
    );

    let n2 = lab.start("n2", &o);
    for n in [&n1, &n2] {
        wait_cluster(n, "both quorate", T, |c| {
            quorate(c) && c["core"]["quorum"]["wait_for_all_pending"] == false
        });
    }
    wait_vrrp(&n1, "master", T);
    lab.wait_answer("n1", T);

    // n1's machine dies: process killed and every cable pulled.
    n1.crash();
    let m1 = lab.member("n1");
    lab.lab.cut(&m1.lan).expect("cut lan");
    lab.cut_rings("n1");
    // n2, alone, is quorate only once n1 is fenced; then it takes over.
    let c2 = wait_cluster(&n2, "n1 fenced", T, |c| node_state(c, "n1") == "fenced");
    assert!(quorate(&c2), "{c2}");
    assert_eq!(lab.power("n1"), "off");
    let v2 = wait_vrrp(&n2, "master", T);
    assert_eq!(v2["last_transition"]["reason"], "takeover", "{v2}");
    lab.wait_answer("n2", T);
}

#[test]
fn cluster_witness_breaks_a_two_node_tie() {
    testsupport::require_root!();
    let lab = ClusterLab::new("clw", 2, 1, true);
    // n2 is the master; after the split the witness votes for the
    // partition with the lowest node id (n1).
    let o = Opts {
        priorities: vec![100, 150],
        ..Opts::default()
    };
    let mut witness = lab.start_witness(&o);
    let n1 = lab.start("n1", &o);
    let n2 = lab.start("n2", &o);
    for n in [&n1, &n2] {
        wait_cluster(n, "quorum with the witness", T, |c| {
            quorate(c) && c["core"]["quorum"]["votes"] == 3
        });
    }
    wait_vrrp(&n2, "master", T);
    lab.wait_answer("n2", T);

    // The ring between the nodes breaks; both still reach the witness.
    lab.cut_rings("n2");
    let c1 = wait_cluster(&n1, "n1 quorate with the witness's vote", T, |c| {
        quorate(c) && c["core"]["witness_vote"] == true && node_state(c, "n2") == "fenced"
    });
    assert_eq!(c1["core"]["quorum"]["votes"], 2, "{c1}");
    let c2 = wait_cluster(&n2, "n2 without quorum", T, |c| !quorate(c));
    assert_eq!(c2["core"]["witness_vote"], false, "{c2}");
    n2.wait_status("n2 released the VIP", T, |s| {
        s["vrrp"]["instances"][0]["vips_held"] == false
    });
    assert_eq!(lab.power("n2"), "off");
    let v1 = wait_vrrp(&n1, "master", T);
    assert_eq!(v1["last_transition"]["reason"], "takeover", "{v1}");
    lab.wait_answer("n1", T);
    assert!(!lab.holds("n2"));
    let text = String::from_utf8_lossy(&n1.cli(&["status"]).stdout).to_string();
    assert!(
        text.contains("witness 10.3.0.9:5405: vote counted"),
        "{text}"
    );
    let _ = witness.kill();
}
