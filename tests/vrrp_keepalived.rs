//! Interop with real keepalived 2.2.7 (Debian's package) as the other VRRP
//! router, in both roles, VRRPv2 and VRRPv3 over IPv4: both agree on one
//! master, and the client follows every failover in both directions.

mod common;
mod vrrp_common;

use std::time::Duration;

use common::Node;
use testsupport::{NsChild, Signal};
use vrrp_common::{config, vip, wait_state, Lan, VIP, VIP6};

const T: Duration = Duration::from_secs(15);

/// The VIP of the LAN's family, with its prefix length.
fn vip_cidr(lan: &Lan) -> String {
    if lan.v6 {
        format!("{VIP6}/64")
    } else {
        format!("{VIP}/24")
    }
}

/// keepalived in router `name`'s namespace with a per-test config.
/// `auth`: a VRRPv2 simple-text password (`auth_type PASS`).
fn keepalived(lan: &Lan, name: &str, version: u8, priority: u8, auth: Option<&str>) -> NsChild {
    let dir = lan.lab.dir();
    let conf = dir.join(format!("{name}-keepalived.conf"));
    let advert = if version == 2 { "1" } else { "0.1" };
    let auth = auth.map_or(String::new(), |p| {
        format!("  authentication {{\n    auth_type PASS\n    auth_pass {p}\n  }}\n")
    });
    let vip = vip_cidr(lan);
    std::fs::write(
        &conf,
        format!(
            "global_defs {{\n  router_id {name}\n  vrrp_version {version}\n}}\n\
             vrrp_instance front {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n\
             priority {priority}\n  advert_int {advert}\n{auth}  virtual_ipaddress {{\n    {vip}\n  }}\n}}\n"
        ),
    )
    .expect("keepalived config");
    // Fresh pid files per start: a killed keepalived leaves its own behind.
    static STARTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let pid = dir.join(format!("{name}-keepalived-{n}.pid"));
    let vrrp_pid = dir.join(format!("{name}-vrrp-{n}.pid"));
    lan.router(name)
        .ns
        .command("keepalived")
        .args(["-n", "-l", "-D", "-P", "-f"])
        .arg(&conf)
        .arg("-p")
        .arg(&pid)
        .arg("-r")
        .arg(&vrrp_pid)
        .spawn()
        .expect("spawn keepalived")
}

fn halb_config(lan: &Lan, name: &str, version: u8, priority: u8, auth: Option<&str>) -> String {
    let advert = if version == 2 { "1s" } else { "100ms" };
    let auth = auth.map_or(String::new(), |p| format!("auth_pass = \"{p}\"\n"));
    let vip = vip_cidr(lan);
    config(
        name,
        &format!(
            "[[vrrp]]\nname = \"front\"\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
             version = {version}\nadvert_interval = \"{advert}\"\nvirtual_ips = [\"{vip}\"]\n\
             garp = {{ repeat = 3, interval = \"10ms\" }}\n{auth}"
        ),
    )
}

/// Waits until keepalived's log shows `needle` at least `times` times.
fn wait_log(k: &NsChild, needle: &str, times: usize, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let out = k.output_so_far();
        if out.matches(needle).count() >= times {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "keepalived never logged {needle:?} {times} time(s):\n{out}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// halb is the higher-priority master; keepalived backs it up, takes over
/// when halb is killed, and gives the VIP back when halb returns.
fn halb_master_keepalived_backup(version: u8) {
    let lan = Lan::new(&format!("ka{version}h"), 2, false);
    let mut halb = lan.start("r1", &halb_config(&lan, "r1", version, 150, None));
    let ka = keepalived(&lan, "r2", version, 100, None);
    wait_state(&halb, "front", "master", T);
    wait_log(&ka, "Entering BACKUP STATE", 1, T);
    let s = halb.wait_status("keepalived's adverts heard", T, |s| {
        s["vrrp"]["instances"][0]["counters"]["rx_dropped"] == 0
    });
    assert_eq!(s["vrrp"]["instances"][0]["state"], "master");
    lan.assert_via(vip(), "r1");
    assert!(!lan.holds("r2", vip()));

    halb.crash();
    wait_log(&ka, "Entering MASTER STATE", 1, T);
    lan.assert_via(vip(), "r2");

    let halb = lan.start("r1", &halb_config(&lan, "r1", version, 150, None));
    let s = wait_state(&halb, "front", "master", T);
    assert_eq!(s["last_transition"]["reason"], "preempted", "{s}");
    wait_log(&ka, "Entering BACKUP STATE", 2, T);
    lan.assert_via(vip(), "r1");
    let s = halb.wait_status("no dropped advert", T, |s| {
        s["vrrp"]["instances"][0]["counters"]["adverts_received"]
            .as_u64()
            .is_some_and(|n| n >= 1)
    });
    assert_eq!(
        s["vrrp"]["instances"][0]["counters"]["rx_dropped"], 0,
        "halb dropped some of keepalived's adverts: {s}"
    );
    drop(ka);
}

/// keepalived is the higher-priority master; halb backs it up, takes over
/// when keepalived is killed, and gives the VIP back when it returns.
fn keepalived_master_halb_backup(version: u8) {
    let lan = Lan::new(&format!("ka{version}k"), 2, false);
    let mut ka = keepalived(&lan, "r1", version, 150, None);
    let halb: Node = lan.start("r2", &halb_config(&lan, "r2", version, 100, None));
    wait_log(&ka, "Entering MASTER STATE", 1, T);
    let s = wait_state(&halb, "front", "backup", T);
    let s = if s["master"] == "10.0.0.1" {
        s
    } else {
        halb.wait_status("keepalived seen as master", T, |s| {
            s["vrrp"]["instances"][0]["master"] == "10.0.0.1"
        })["vrrp"]["instances"][0]
            .clone()
    };
    assert_eq!(s["master_priority"], 150, "{s}");
    lan.assert_via(vip(), "r1");
    assert!(!lan.holds("r2", vip()));

    ka.kill().expect("kill keepalived");
    let s = wait_state(&halb, "front", "master", T);
    assert_eq!(s["last_transition"]["reason"], "master_down_timer", "{s}");
    lan.assert_via(vip(), "r2");

    // keepalived comes back with the higher priority and preempts.
    let ka = keepalived(&lan, "r1", version, 150, None);
    wait_log(&ka, "Entering MASTER STATE", 1, T);
    let s = wait_state(&halb, "front", "backup", T);
    assert_eq!(
        s["last_transition"]["reason"], "higher_priority_advert",
        "{s}"
    );
    lan.assert_via(vip(), "r1");
    assert!(!lan.holds("r2", vip()));
    // A planned stop of keepalived: priority 0, halb takes over at once.
    ka.signal(Signal::SIGTERM).expect("SIGTERM keepalived");
    let s = wait_state(&halb, "front", "master", T);
    assert_eq!(s["last_transition"]["reason"], "resign_received", "{s}");
    lan.assert_via(vip(), "r2");
}

#[test]
fn vrrp_keepalived_v3_halb_master_keepalived_backup() {
    testsupport::require_root!();
    testsupport::require_tool!("keepalived");
    halb_master_keepalived_backup(3);
}

#[test]
fn vrrp_keepalived_v3_keepalived_master_halb_backup() {
    testsupport::require_root!();
    testsupport::require_tool!("keepalived");
    keepalived_master_halb_backup(3);
}

#[test]
fn vrrp_keepalived_v2_halb_master_keepalived_backup() {
    testsupport::require_root!();
    testsupport::require_tool!("keepalived");
    halb_master_keepalived_backup(2);
}

#[test]
fn vrrp_keepalived_v2_keepalived_master_halb_backup() {
    testsupport::require_root!();
    testsupport::require_tool!("keepalived");
    keepalived_master_halb_backup(2);
}

/// keepalived's `authentication { auth_type PASS }` (VRRPv2) both ways:
/// keepalived at a lower priority stays backup behind halb (it accepts
/// halb's adverts), halb at a lower priority stays backup behind
/// keepalived (it accepts keepalived's), and a wrong password is dropped
/// and counted.
#[test]
fn vrrp_keepalived_v2_auth_pass_both_ways() {
    testsupport::require_root!();
    testsupport::require_tool!("keepalived");
    let lan = Lan::new("ka2p", 2, false);
    let pass = Some("s3cret");
    let mut halb = lan.start("r1", &halb_config(&lan, "r1", 2, 150, pass));
    let ka = keepalived(&lan, "r2", 2, 100, pass);
    wait_state(&halb, "front", "master", T);
    wait_log(&ka, "Entering BACKUP STATE", 1, T);
    // Longer than keepalived's master-down interval (3 x 1 s + skew): had it
    // refused halb's adverts, it would have become master by now.
    std::thread::sleep(Duration::from_millis(4500));
    assert!(
        !ka.output_so_far().contains("Entering MASTER STATE"),
        "keepalived did not accept halb's authenticated adverts:\n{}",
        ka.output_so_far()
    );
    lan.assert_via(vip(), "r1");

    halb.crash();
    wait_log(&ka, "Entering MASTER STATE", 1, T);
    let mut halb = lan.start("r1", &halb_config(&lan, "r1", 2, 50, pass));
    let s = halb.wait_status("keepalived's authenticated adverts", T, |s| {
        s["vrrp"]["instances"][0]["counters"]["adverts_received"]
            .as_u64()
            .is_some_and(|n| n >= 2)
    });
    let i = &s["vrrp"]["instances"][0];
    assert_eq!(i["state"], "backup", "{i}");
    assert_eq!(i["master"], "10.0.0.2", "{i}");
    assert_eq!(i["counters"]["rx_dropped"], 0, "{i}");
    lan.assert_via(vip(), "r2");

    // A wrong password: keepalived's adverts are dropped and counted.
    halb.crash();
    let halb = lan.start("r1", &halb_config(&lan, "r1", 2, 50, Some("wrong")));
    let s = halb.wait_status("dropped adverts", T, |s| {
        s["vrrp"]["instances"][0]["counters"]["rx_dropped"]
            .as_u64()
            .is_some_and(|n| n >= 2)
    });
    assert_eq!(
        s["vrrp"]["instances"][0]["counters"]["adverts_received"], 0,
        "{s}"
    );
}

/// VRRPv3 over IPv6 with keepalived: adverts from link-local addresses,
/// unsolicited neighbour advertisements, both roles.
#[test]
fn vrrp_keepalived_v3_ipv6_both_roles() {
    testsupport::require_root!();
    testsupport::require_tool!("keepalived");
    let lan = Lan::new("ka6", 2, true);
    let vip6: std::net::IpAddr = VIP6.parse().expect("vip");

    // keepalived master, halb backup: halb accepts its adverts.
    let mut ka = keepalived(&lan, "r1", 3, 150, None);
    let mut halb = lan.start("r2", &halb_config(&lan, "r2", 3, 100, None));
    wait_log(&ka, "Entering MASTER STATE", 1, T);
    let s = halb.wait_status("keepalived's IPv6 adverts", T, |s| {
        s["vrrp"]["instances"][0]["counters"]["adverts_received"]
            .as_u64()
            .is_some_and(|n| n >= 3)
    });
    let i = &s["vrrp"]["instances"][0];
    assert_eq!(i["state"], "backup", "{i}");
    assert_eq!(i["master_priority"], 150, "{i}");
    assert_eq!(i["counters"]["rx_dropped"], 0, "{i}");
    lan.assert_via(vip6, "r1");

    // keepalived gone: halb takes over.
    ka.kill().expect("kill keepalived");
    let s = wait_state(&halb, "front", "master", T);
    assert_eq!(s["last_transition"]["reason"], "master_down_timer", "{s}");
    lan.assert_via(vip6, "r2");

    // keepalived back with a lower priority stays backup behind halb.
    let ka = keepalived(&lan, "r1", 3, 50, None);
    wait_log(&ka, "Entering BACKUP STATE", 1, T);
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        !ka.output_so_far().contains("Entering MASTER STATE"),
        "keepalived did not accept halb's IPv6 adverts:\n{}",
        ka.output_so_far()
    );
    lan.assert_via(vip6, "r2");
    halb.crash();
}
