//! VRRP end to end: `halb run` routers in network namespaces on one bridge
//! with a client. Every test checks which router the client really reaches
//! (a UDP responder per router answers with its name, and the client's
//! neighbour table holds that router's MAC for the VIP).

mod common;
mod vrrp_common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{http_get, metric, Node};
use vrrp_common::{
    config, config_with_metrics, front, instance, probe_once, vip, wait_state, Lan, VIP,
};

const T: Duration = Duration::from_secs(10);

#[test]
fn vrrp_election_failover_on_kill_and_preempting_failback() {
    testsupport::require_root!();
    let lan = Lan::new("vel", 2, false);
    let vips = format!("\"{VIP}/24\"");
    let mut r1 = lan.start("r1", &config("r1", &front(150, &vips, "")));
    let r2 = lan.start("r2", &config("r2", &front(100, &vips, "")));
    let s1 = wait_state(&r1, "front", "master", T);
    let s2 = wait_state(&r2, "front", "backup", T);
    assert_eq!(s1["vips_held"], true);
    assert_eq!(s2["master"], "10.0.0.1", "{s2}");
    lan.assert_via(vip(), "r1");
    assert!(!lan.holds("r2", vip()));

    // kill -9: the VIP stays behind on r1, but r2 takes over and the
    // client follows its gratuitous ARP.
    r1.crash();
    let s2 = wait_state(&r2, "front", "master", T);
    assert_eq!(s2["last_transition"]["reason"], "master_down_timer", "{s2}");
    lan.assert_via(vip(), "r2");

    // r1 comes back: the stale VIP is removed before the election, then r1
    // (higher priority, preempt) takes over again.
    let r1 = lan.start("r1", &config("r1", &front(150, &vips, "")));
    let s1 = wait_state(&r1, "front", "master", T);
    assert_eq!(s1["last_transition"]["reason"], "preempted", "{s1}");
    let s2 = wait_state(&r2, "front", "backup", T);
    assert_eq!(
        s2["last_transition"]["reason"], "higher_priority_advert",
        "{s2}"
    );
    lan.assert_via(vip(), "r1");
    assert!(
        r1.log().contains("stale VIP removed"),
        "no stale VIP cleanup in the log:\n{}",
        r1.log()
    );
    assert!(!lan.holds("r2", vip()));
    let _ = instance(&r1, "front");
}

#[test]
fn vrrp_link_down_fails_over_and_no_failback_without_preempt() {
    testsupport::require_root!();
    let lan = Lan::new("vln", 2, false);
    let vips = format!("\"{VIP}/24\"");
    let r1 = lan.start("r1", &config("r1", &front(150, &vips, "preempt = false")));
    wait_state(&r1, "front", "master", T);
    let r2 = lan.start("r2", &config("r2", &front(100, &vips, "preempt = false")));
    wait_state(&r2, "front", "backup", T);
    lan.assert_via(vip(), "r1");

    // r1's cable is pulled: r1 goes to fault, r2 takes over.
    lan.router("r1").port.unplug().expect("unplug");
    let s1 = wait_state(&r1, "front", "fault", T);
    assert_eq!(s1["vips_held"], false, "{s1}");
    let s2 = wait_state(&r2, "front", "master", T);
    assert_eq!(s2["last_transition"]["reason"], "master_down_timer");
    lan.assert_via(vip(), "r2");

    // Cable back: r1 has the higher priority but preempt is off, so it
    // stays backup and the client keeps reaching r2.
    lan.router("r1").port.plug().expect("plug");
    let s1 = wait_state(&r1, "front", "backup", T);
    assert_eq!(s1["last_transition"]["reason"], "fault_cleared", "{s1}");
    r1.wait_status("r2 seen as master", T, |s| {
        s["vrrp"]["instances"][0]["master"] == "10.0.0.2"
    });
    // Several master-down intervals (~180 ms each) later, still r2.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(instance(&r1, "front")["state"], "backup");
    assert_eq!(instance(&r2, "front")["state"], "master");
    lan.assert_via(vip(), "r2");
    assert!(!lan.holds("r1", vip()));
}

#[test]
fn vrrp_preempt_delay_holds_the_lower_master_for_the_delay() {
    testsupport::require_root!();
    let lan = Lan::new("vpd", 2, false);
    let vips = format!("\"{VIP}/24\"");
    let r2 = lan.start("r2", &config("r2", &front(100, &vips, "")));
    wait_state(&r2, "front", "master", T);
    lan.assert_via(vip(), "r2");
    let started = std::time::Instant::now();
    let r1 = lan.start(
        "r1",
        &config("r1", &front(150, &vips, "preempt_delay = \"2s\"")),
    );
    wait_state(&r1, "front", "backup", T);
    // Well inside the delay (and many master-down intervals after start):
    // r1 has not taken over.
    let until = started + Duration::from_millis(1200);
    while std::time::Instant::now() < until {
        assert_eq!(instance(&r1, "front")["state"], "backup");
        assert_eq!(lan.probe(vip()).as_deref(), Some("r2"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let s1 = wait_state(&r1, "front", "master", T);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "preempted after {:?}",
        started.elapsed()
    );
    assert_eq!(s1["last_transition"]["reason"], "preempted", "{s1}");
    wait_state(&r2, "front", "backup", T);
    lan.assert_via(vip(), "r1");
}

#[test]
fn vrrp_sigterm_is_a_planned_switchover() {
    testsupport::require_root!();
    let lan = Lan::new("vst", 2, false);
    let vips = format!("\"{VIP}/24\"");
    let mut r1 = lan.start("r1", &config("r1", &front(150, &vips, "")));
    wait_state(&r1, "front", "master", T);
    let r2 = lan.start("r2", &config("r2", &front(100, &vips, "")));
    wait_state(&r2, "front", "backup", T);
    lan.assert_via(vip(), "r1");
    assert_eq!(r1.stop(T), Some(0), "log:\n{}", r1.log());
    // r1 resigned with priority 0: r2 took over after its skew time, and r1
    // removed the VIP on the way out.
    let s2 = wait_state(&r2, "front", "master", T);
    assert_eq!(s2["last_transition"]["reason"], "resign_received", "{s2}");
    assert_eq!(s2["counters"]["priority_zero_received"], 1, "{s2}");
    assert!(!lan.holds("r1", vip()), "r1 kept the VIP after SIGTERM");
    lan.assert_via(vip(), "r2");
}

#[test]
fn vrrp_unicast_peers_elect_and_fail_over_without_multicast() {
    testsupport::require_root!();
    let lan = Lan::new("vuc", 3, false);
    let vips = format!("\"{VIP}/24\"");
    let cap = lan
        .router("r2")
        .ns
        .capture("eth0", "ip proto 112")
        .expect("capture");
    let mut r1 = lan.start(
        "r1",
        &config_with_metrics("r1", &front(150, &vips, "unicast_peers = [\"10.0.0.2\"]")),
    );
    let r2 = lan.start(
        "r2",
        &config("r2", &front(100, &vips, "unicast_peers = [\"10.0.0.1\"]")),
    );
    wait_state(&r1, "front", "master", T);
    let s2 = wait_state(&r2, "front", "backup", T);
    assert_eq!(s2["master"], "10.0.0.1");
    lan.assert_via(vip(), "r1");
    // An intruder with a higher priority that is not in r1's peer list
    // (its own VIP, so that it does not disturb the client): r1 drops its
    // adverts and stays master.
    let _r3 = lan.start(
        "r3",
        &config(
            "r3",
            &front(200, "\"10.0.0.200/24\"", "unicast_peers = [\"10.0.0.1\"]"),
        ),
    );
    let m = testsupport::wait_until(
        "r1 dropping r3's adverts",
        T,
        Duration::from_millis(50),
        || {
            let m = http_get(
                &lan.router("r1").ns,
                "127.0.0.1:9100".parse().expect("addr"),
                "/metrics",
            )
            .map_err(|e| testsupport::Error::Io {
                context: "metrics".into(),
                source: e,
            })?;
            let dropped = metric(
                &m,
                "halb_vrrp_rx_dropped_total",
                &[("instance", "front"), ("reason", "not_from_peer")],
            );
            Ok(if dropped.is_some_and(|d| d >= 3.0) {
                Ok(m)
            } else {
                Err(dropped)
            })
        },
    )
    .expect("dropped adverts counted");
    assert_eq!(
        metric(&m, "halb_vrrp_state", &[("instance", "front")]),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "halb_vrrp_transitions_total",
            &[("instance", "front"), ("to", "master")]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "halb_vrrp_priority", &[("instance", "front")]),
        Some(150.0)
    );
    assert_eq!(instance(&r1, "front")["state"], "master");
    lan.assert_via(vip(), "r1");
    // tcpdump hands packets over in blocks (up to 1 s late): wait for them.
    let packets = cap
        .wait_for(T, |p| {
            p.iter().filter(|p| p.ip_proto() == Some(112)).count() >= 5
        })
        .expect("VRRP packets seen on r2");
    for p in packets.iter().filter(|p| p.ip_proto() == Some(112)) {
        let (_, l3) = p.l3().expect("l3");
        assert_ne!(
            &l3[16..20],
            &[224, 0, 0, 18],
            "a multicast advert in unicast mode"
        );
    }
    r1.crash();
    wait_state(&r2, "front", "master", T);
    lan.assert_via(vip(), "r2");
}

#[test]
fn vrrp_ipv6_election_and_failover() {
    testsupport::require_root!();
    let lan = Lan::new("v6", 2, true);
    let vip6: std::net::IpAddr = vrrp_common::VIP6.parse().expect("ip");
    let vips = format!("\"{}/64\"", vrrp_common::VIP6);
    let mut r1 = lan.start("r1", &config("r1", &front(150, &vips, "")));
    let r2 = lan.start("r2", &config("r2", &front(100, &vips, "")));
    let s1 = wait_state(&r1, "front", "master", T);
    assert_eq!(s1["family"], "ipv6");
    let primary = s1["primary_address"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(primary.starts_with("fe80:"), "advert source {primary}");
    let s2 = wait_state(&r2, "front", "backup", T);
    assert_eq!(s2["master"].as_str(), Some(primary.as_str()));
    lan.assert_via(vip6, "r1");
    r1.crash();
    wait_state(&r2, "front", "master", T);
    lan.assert_via(vip6, "r2");
}

#[test]
fn vrrp_track_script_failure_lowers_priority_and_switches_over() {
    testsupport::require_root!();
    let lan = Lan::new("vts", 2, false);
    let vips = format!("\"{VIP}/24\"");
    let flag = lan.lab.dir().join("r1-unhealthy");
    let track = format!(
        "track_scripts = [{{ command = [\"/bin/sh\", \"-c\", \"test ! -e {}\"], interval = \"50ms\", timeout = \"1s\", weight = -100, rise = 1, fall = 2 }}]",
        flag.display()
    );
    let r1 = lan.start("r1", &config("r1", &front(150, &vips, &track)));
    wait_state(&r1, "front", "master", T);
    let r2 = lan.start("r2", &config("r2", &front(100, &vips, "")));
    wait_state(&r2, "front", "backup", T);
    lan.assert_via(vip(), "r1");
    assert_eq!(instance(&r1, "front")["effective_priority"], 150);

    std::fs::write(&flag, "1").expect("flag");
    let s2 = wait_state(&r2, "front", "master", T);
    assert_eq!(s2["last_transition"]["reason"], "preempted", "{s2}");
    let s1 = wait_state(&r1, "front", "backup", T);
    assert_eq!(s1["effective_priority"], 50, "{s1}");
    assert_eq!(s1["base_priority"], 150);
    assert_eq!(
        s1["last_transition"]["reason"], "higher_priority_advert",
        "{s1}"
    );
    lan.assert_via(vip(), "r2");

    // Healthy again: priority back to 150 and r1 preempts.
    std::fs::remove_file(&flag).expect("unflag");
    wait_state(&r1, "front", "master", T);
    lan.assert_via(vip(), "r1");
}

#[test]
fn vrrp_sync_group_members_move_together() {
    testsupport::require_root!();
    let lan = Lan::new("vsg", 2, false);
    // r1 tracks a dummy interface with weight 0 on instance "b" only.
    let r1ns = &lan.router("r1").ns;
    r1ns.ip([
        "link", "add", "trk0", "type", "veth", "peer", "name", "trk1",
    ])
    .expect("veth");
    r1ns.link_up("trk1").expect("up");
    r1ns.link_up("trk0").expect("up");
    let two = |prio: u8, track: &str| {
        let a = front(prio, &format!("\"{VIP}/24\""), "sync_group = \"g\"");
        format!(
            "{a}[[vrrp]]\nname = \"b\"\ninterface = \"eth0\"\nvrid = 52\npriority = {prio}\n\
             advert_interval = \"50ms\"\nvirtual_ips = [\"10.0.0.101/24\"]\nsync_group = \"g\"\n{track}\n"
        )
    };
    let vip_b: std::net::IpAddr = "10.0.0.101".parse().expect("ip");
    let r1 = lan.start(
        "r1",
        &config(
            "r1",
            &two(150, "track_interfaces = [{ name = \"trk0\", weight = 0 }]"),
        ),
    );
    wait_state(&r1, "front", "master", T);
    wait_state(&r1, "b", "master", T);
    let r2 = lan.start("r2", &config("r2", &two(100, "")));
    wait_state(&r2, "front", "backup", T);
    wait_state(&r2, "b", "backup", T);
    lan.assert_via(vip(), "r1");
    lan.assert_via(vip_b, "r1");

    // Only "b" tracks trk0, but the whole group goes to fault on r1.
    r1ns.link_down("trk0").expect("down");
    wait_state(&r1, "b", "fault", T);
    let s = wait_state(&r1, "front", "fault", T);
    assert_eq!(s["fault"], true);
    wait_state(&r2, "front", "master", T);
    wait_state(&r2, "b", "master", T);
    lan.assert_via(vip(), "r2");
    lan.assert_via(vip_b, "r2");

    r1ns.link_up("trk0").expect("up");
    wait_state(&r1, "front", "master", T);
    wait_state(&r1, "b", "master", T);
    lan.assert_via(vip(), "r1");
    lan.assert_via(vip_b, "r1");
    // Each raw socket also sees the sibling instance's adverts (VRID 52 on
    // the same interface): those are not counted as dropped.
    for name in ["front", "b"] {
        let s = instance(&r2, name);
        assert_eq!(s["counters"]["rx_dropped"], 0, "{s}");
        assert!(s["counters"]["adverts_received"].as_u64() > Some(0), "{s}");
    }
}

/// A notify program that appends its arguments to a log file in the lab:
/// the log's path, and the `notify = [...]` config line.
fn notify_logger(lan: &Lan) -> (std::path::PathBuf, String) {
    use std::os::unix::fs::PermissionsExt;
    let log = lan.lab.dir().join("notify.log");
    let script = lan.lab.dir().join("notify.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$@\" >> {}\n", log.display()),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (log, format!("notify = [\"{}\"]", script.display()))
}

#[test]
fn vrrp_notify_program_gets_keepalived_arguments() {
    testsupport::require_root!();
    let lan = Lan::new("vnt", 1, false);
    let (log, extra) = notify_logger(&lan);
    let vips = format!("\"{VIP}/24\"");
    let mut r1 = lan.start("r1", &config("r1", &front(120, &vips, &extra)));
    wait_state(&r1, "front", "master", T);
    lan.assert_via(vip(), "r1");
    assert_eq!(r1.stop(T), Some(0));
    let text = std::fs::read_to_string(&log).expect("notify log");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        vec![
            "INSTANCE front BACKUP 120",
            "INSTANCE front MASTER 120",
            "INSTANCE front STOP 120"
        ],
        "notify calls"
    );
}

#[test]
fn vrrp_sighup_reload_keeps_an_unchanged_vip_in_place() {
    testsupport::require_root!();
    let lan = Lan::new("vrl", 2, false);
    let vips = format!("\"{VIP}/24\"");
    let r1 = lan.start("r1", &config("r1", &front(150, &vips, "")));
    wait_state(&r1, "front", "master", T);
    let r2 = lan.start("r2", &config("r2", &front(100, &vips, "")));
    wait_state(&r2, "front", "backup", T);
    lan.assert_via(vip(), "r1");
    let before = instance(&r1, "front");
    let before2 = instance(&r2, "front");

    // Watch r1's addresses while both reload with changed settings (r1: a
    // new priority and a second VIP; r2: a new priority).
    let monitor = lan
        .router("r1")
        .ns
        .command("ip")
        .args(["monitor", "address"])
        .spawn()
        .expect("ip monitor");
    std::thread::sleep(Duration::from_millis(200));
    let vips2 = format!("\"{VIP}/24\", \"10.0.0.102/24\"");
    std::fs::write(
        &r1.config,
        config("r1", &front(160, &vips2, "")).replace("{socket}", &r1.socket.display().to_string()),
    )
    .expect("write");
    std::fs::write(
        &r2.config,
        config("r2", &front(110, &vips2, "")).replace("{socket}", &r2.socket.display().to_string()),
    )
    .expect("write");
    r1.signal(testsupport::Signal::SIGHUP);
    r2.signal(testsupport::Signal::SIGHUP);
    let s1 = r1.wait_status("reload applied", T, |s| s["generation"] == 2);
    r2.wait_status("reload applied", T, |s| s["generation"] == 2);
    let changes = s1["last_reload"]["changes"].to_string();
    assert!(
        changes.contains("vrrp front: priority 150 -> 160"),
        "{changes}"
    );
    // The second VIP arrives, the first never left.
    let deadline = std::time::Instant::now() + T;
    while !lan.holds("r1", "10.0.0.102".parse().expect("ip")) {
        assert!(std::time::Instant::now() < deadline, "new VIP not added");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = instance(&r1, "front");
    let after2 = instance(&r2, "front");
    assert_eq!(after["state"], "master");
    assert_eq!(after["effective_priority"], 160);
    assert_eq!(
        after["counters"]["transitions"], before["counters"]["transitions"],
        "{after}"
    );
    assert_eq!(after["last_transition"], before["last_transition"]);
    assert_eq!(after2["state"], "backup");
    assert_eq!(
        after2["counters"]["transitions"], before2["counters"]["transitions"],
        "{after2}"
    );
    let events = monitor.output_so_far();
    assert!(
        events.contains("10.0.0.102"),
        "ip monitor did not see the new VIP (so it would not see a removal either):\n{events}"
    );
    assert!(
        !events
            .lines()
            .any(|l| l.starts_with("Deleted") && l.contains(VIP)),
        "the VIP was removed during the reload:\n{events}"
    );
    lan.assert_via(vip(), "r1");
    lan.assert_via("10.0.0.102".parse().expect("ip"), "r1");
}

#[test]
fn vrrp_node_standby_gives_up_and_takes_back_the_vips() {
    testsupport::require_root!();
    let lan = Lan::new("vsb", 2, false);
    let vips = format!("\"{VIP}/24\"");
    let r1 = lan.start("r1", &config("r1", &front(150, &vips, "")));
    wait_state(&r1, "front", "master", T);
    let r2 = lan.start("r2", &config("r2", &front(100, &vips, "")));
    wait_state(&r2, "front", "backup", T);
    lan.assert_via(vip(), "r1");
    let out = r1.cli(&["node", "standby"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s1 = wait_state(&r1, "front", "backup", T);
    assert_eq!(s1["standby"], true);
    assert_eq!(s1["last_transition"]["reason"], "standby");
    wait_state(&r2, "front", "master", T);
    lan.assert_via(vip(), "r2");
    let text = r1.cli(&["status"]);
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(text.contains("VRRP instances: (node in STANDBY)"), "{text}");
    assert!(text.contains("front        BACKUP"), "{text}");
    let out = r1.cli(&["node", "unstandby"]);
    assert!(out.status.success());
    wait_state(&r1, "front", "master", T);
    lan.assert_via(vip(), "r1");
}

/// r1 master and r2 backup of "front" with `use_vmac`, the client reaching
/// the VIP through r1; the virtual MAC.
fn vmac_pair(lan: &Lan) -> (Node, Node, testsupport::MacAddr) {
    let vips = format!("\"{VIP}/24\"");
    let r1 = lan.start("r1", &config("r1", &front(150, &vips, "use_vmac = true")));
    wait_state(&r1, "front", "master", T);
    let r2 = lan.start("r2", &config("r2", &front(100, &vips, "use_vmac = true")));
    wait_state(&r2, "front", "backup", T);
    lan.wait_answer(vip(), "r1", T);
    (r1, r2, "00:00:5e:00:01:33".parse().expect("mac"))
}

#[test]
fn vrrp_use_vmac_clients_hold_the_virtual_mac() {
    testsupport::require_root!();
    let lan = Lan::new("vvm", 2, false);
    let (mut r1, r2, vmac) = vmac_pair(&lan);
    assert_eq!(lan.client_mac_for(vip()), Some(vmac));
    // The backup's macvlan (same MAC) sends nothing: no IPv6 on it, so no
    // duplicate address detection or router solicitation that would teach
    // the bridge the virtual MAC is behind r2. The VIP stays reachable
    // while r2's interface comes up (about 2 s of probes, every one
    // answered by r1).
    let sysctl = lan
        .router("r2")
        .ns
        .exec(&["cat", "/proc/sys/net/ipv6/conf/vrrp.51/disable_ipv6"])
        .expect("cat");
    assert_eq!(String::from_utf8_lossy(&sysctl.stdout).trim(), "1");
    let v = vip();
    let answers = lan
        .client
        .run(move || {
            (0..200)
                .map(|_| {
                    std::thread::sleep(Duration::from_millis(10));
                    probe_once(v)
                })
                .collect::<Vec<_>>()
        })
        .expect("prober");
    let missed = answers
        .iter()
        .filter(|a| a.as_deref() != Some("r1"))
        .count();
    assert_eq!(
        missed,
        0,
        "{missed} of {} probes not answered by r1",
        answers.len()
    );
    r1.crash();
    wait_state(&r2, "front", "master", T);
    lan.wait_answer(vip(), "r2", T);
    assert_eq!(
        lan.client_mac_for(vip()),
        Some(vmac),
        "same virtual MAC after failover"
    );
    let _ = r2;
}

#[test]
fn vrrp_track_file_value_times_weight_moves_the_master() {
    testsupport::require_root!();
    let lan = Lan::new("vtf", 2, false);
    let vips = format!("\"{VIP}/24\"");
    let file = lan.lab.dir().join("r1-weight");
    std::fs::write(&file, "0\n").expect("file");
    let track = format!(
        "track_files = [{{ path = \"{}\", weight = 30 }}]",
        file.display()
    );
    let r1 = lan.start("r1", &config("r1", &front(150, &vips, &track)));
    wait_state(&r1, "front", "master", T);
    let r2 = lan.start("r2", &config("r2", &front(100, &vips, "")));
    wait_state(&r2, "front", "backup", T);
    lan.assert_via(vip(), "r1");
    // -3 x 30: effective priority 60, below r2's 100.
    std::fs::write(&file, "-3\n").expect("file");
    let s1 = wait_state(&r1, "front", "backup", T);
    assert_eq!(s1["effective_priority"], 60, "{s1}");
    wait_state(&r2, "front", "master", T);
    lan.assert_via(vip(), "r2");
    std::fs::write(&file, "1\n").expect("file");
    let s1 = wait_state(&r1, "front", "master", T);
    assert_eq!(s1["effective_priority"], 180, "{s1}");
    lan.assert_via(vip(), "r1");
}

#[test]
fn vrrp_upgrade_keeps_the_master_without_an_election_or_a_lost_probe() {
    testsupport::require_root!();
    let lan = Lan::new("vup", 2, false);
    let (log, extra) = notify_logger(&lan);
    let vips = format!("\"{VIP}/24\"");
    let mut r1 = lan.start("r1", &config("r1", &front(150, &vips, &extra)));
    wait_state(&r1, "front", "master", T);
    let r2 = lan.start("r2", &config("r2", &front(100, &vips, "")));
    wait_state(&r2, "front", "backup", T);
    lan.assert_via(vip(), "r1");
    let r2_before = instance(&r2, "front");

    // The client probes the VIP every 10 ms through the whole upgrade.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let vip = vip();
    let prober = lan
        .client
        .spawn_thread(move || {
            let mut answers = Vec::new();
            for _ in 0..3000 {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                answers.push(probe_once(vip));
                std::thread::sleep(Duration::from_millis(10));
            }
            answers
        })
        .expect("prober");
    std::thread::sleep(Duration::from_millis(200));

    let (new, old_log) = r1.upgrade();
    assert!(
        old_log.contains("handed over to the new process"),
        "old process log:\n{old_log}"
    );
    let s1 = wait_state(&new, "front", "master", T);
    assert_eq!(s1["last_transition"]["reason"], "upgrade", "{s1}");
    assert_eq!(s1["last_transition"]["from"], "initialize", "{s1}");
    assert_eq!(s1["vips_held"], true, "{s1}");
    // A few advert intervals of the new master alone, then stop probing.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let answers = prober
        .join()
        .expect("prober thread")
        .expect("prober result");
    assert!(answers.len() > 20, "only {} probes", answers.len());
    let not_r1: Vec<_> = answers
        .iter()
        .enumerate()
        .filter(|(_, a)| a.as_deref() != Some("r1"))
        .collect();
    assert!(
        not_r1.is_empty(),
        "{} of {} probes not answered by r1: {:?}",
        not_r1.len(),
        answers.len(),
        &not_r1[..not_r1.len().min(5)]
    );

    // r2 never left backup: no transition, no mastership, no VIP.
    let r2_after = wait_state(&r2, "front", "backup", T);
    assert_eq!(
        r2_after["last_transition"], r2_before["last_transition"],
        "r2 changed state during the upgrade: {r2_after}"
    );
    assert_eq!(r2_after["counters"]["became_master"], 0, "{r2_after}");
    assert_eq!(r2_after["master"], "10.0.0.1", "{r2_after}");
    assert!(!lan.holds("r2", vip));
    assert!(lan.holds("r1", vip));
    lan.assert_via(vip, "r1");

    // No notify program ran for the hand-over.
    let text = std::fs::read_to_string(&log).expect("notify log");
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        vec!["INSTANCE front BACKUP 150", "INSTANCE front MASTER 150"],
        "notify calls"
    );

    // The new process is a full master: SIGTERM resigns to r2.
    let mut new = new;
    assert_eq!(new.stop(T), Some(0), "log:\n{}", new.log());
    let s2 = wait_state(&r2, "front", "master", T);
    assert_eq!(s2["last_transition"]["reason"], "resign_received", "{s2}");
    lan.assert_via(vip, "r2");
    let text = std::fs::read_to_string(&log).expect("notify log");
    assert_eq!(text.lines().last(), Some("INSTANCE front STOP 150"));
}

#[test]
fn vrrp_upgrade_keeps_a_whole_sync_group_master() {
    testsupport::require_root!();
    let lan = Lan::new("vug", 2, false);
    let two = |prio: u8| {
        let group = "sync_group = \"g\"";
        format!(
            "{}{}",
            front(prio, &format!("\"{VIP}/24\""), group),
            front(prio, "\"10.0.0.101/24\"", group)
                .replace("name = \"front\"", "name = \"back\"")
                .replace("vrid = 51", "vrid = 52")
        )
    };
    let mut r1 = lan.start("r1", &config("r1", &two(150)));
    let r2 = lan.start("r2", &config("r2", &two(100)));
    for i in ["front", "back"] {
        wait_state(&r1, i, "master", T);
        wait_state(&r2, i, "backup", T);
    }
    lan.assert_via(vip(), "r1");
    // The peer's counters before the upgrade (under load it may have been
    // master for a moment at its start, before r1's adverts reached it).
    let before: Vec<_> = ["front", "back"]
        .iter()
        .map(|i| wait_state(&r2, i, "backup", T))
        .collect();

    let (new, _) = r1.upgrade();
    // Both members continue as master; neither is sent back by the group
    // while the other starts, and the peer never moves.
    std::thread::sleep(Duration::from_millis(300));
    for (i, b0) in ["front", "back"].iter().zip(&before) {
        let s = wait_state(&new, i, "master", T);
        assert_eq!(s["last_transition"]["reason"], "upgrade", "{s}");
        assert_eq!(s["counters"]["released_master"], 0, "{s}");
        let b = wait_state(&r2, i, "backup", T);
        assert_eq!(
            b["counters"]["transitions"], b0["counters"]["transitions"],
            "{b0}\n{b}"
        );
    }
    assert!(lan.holds("r1", vip()));
    assert!(!lan.holds("r2", vip()));
    lan.assert_via(vip(), "r1");
}

#[test]
fn vrrp_upgrade_keeps_the_virtual_mac_interface() {
    testsupport::require_root!();
    let lan = Lan::new("vuv", 2, false);
    let (mut r1, r2, vmac) = vmac_pair(&lan);
    let links_before = lan.router("r1").ns.ip(["-o", "link", "show"]).expect("ip");
    let before = String::from_utf8_lossy(&links_before.stdout).to_string();

    let (new, _) = r1.upgrade();
    let s = wait_state(&new, "front", "master", T);
    assert_eq!(s["last_transition"]["reason"], "upgrade", "{s}");
    // The same macvlan (same ifindex) carries the VIP: it was reused, not
    // recreated, and the client still holds the virtual MAC.
    let links_after = lan.router("r1").ns.ip(["-o", "link", "show"]).expect("ip");
    let after = String::from_utf8_lossy(&links_after.stdout).to_string();
    let vlink = |text: &str| {
        text.lines()
            .find(|l| l.contains("00:00:5e:00:01:33"))
            .and_then(|l| l.split(':').next())
            .map(str::to_owned)
    };
    assert!(vlink(&before).is_some(), "no macvlan before:\n{before}");
    assert_eq!(
        vlink(&before),
        vlink(&after),
        "before:\n{before}\nafter:\n{after}"
    );
    lan.assert_answers(vip(), "r1", 10);
    assert_eq!(lan.client_mac_for(vip()), Some(vmac));
    let addrs = lan.router("r1").ns.ip(["-o", "addr", "show"]).expect("ip");
    let addrs = String::from_utf8_lossy(&addrs.stdout).to_string();
    assert!(
        addrs
            .lines()
            .any(|l| l.contains("vrrp.51") && l.contains(&format!(" {VIP}/24"))),
        "the VIP is not on the macvlan:\n{addrs}"
    );
    let b = wait_state(&r2, "front", "backup", T);
    assert_eq!(b["counters"]["became_master"], 0, "{b}");
}
