//! Interop with real keepalived 2.2.7 (Debian's package) as the other VRRP
//! router, in both roles, VRRPv2 and VRRPv3 over IPv4: both agree on one
//! master, and the client follows every failover in both directions.

mod common;
mod vrrp_common;

use std::time::Duration;

use common::Node;
use testsupport::{NsChild, Signal};
use vrrp_common::{config, vip, wait_state, Lan, VIP};

const T: Duration = Duration::from_secs(15);

/// keepalived in router `name`'s namespace with a per-test config.
fn keepalived(lan: &Lan, name: &str, version: u8, priority: u8) -> NsChild {
    let dir = lan.lab.dir();
    let conf = dir.join(format!("{name}-keepalived.conf"));
    let advert = if version == 2 { "1" } else { "0.1" };
    std::fs::write(
        &conf,
        format!(
            "global_defs {{\n  router_id {name}\n  vrrp_version {version}\n}}\n\
             vrrp_instance front {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n\
             priority {priority}\n  advert_int {advert}\n  virtual_ipaddress {{\n    {VIP}/24\n  }}\n}}\n"
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

fn halb_config(name: &str, version: u8, priority: u8) -> String {
    let advert = if version == 2 { "1s" } else { "100ms" };
    config(
        name,
        &format!(
            "[[vrrp]]\nname = \"front\"\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
             version = {version}\nadvert_interval = \"{advert}\"\nvirtual_ips = [\"{VIP}/24\"]\n\
             garp = {{ repeat = 3, interval = \"10ms\" }}\n"
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
    let mut halb = lan.start("r1", &halb_config("r1", version, 150));
    let ka = keepalived(&lan, "r2", version, 100);
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

    let halb = lan.start("r1", &halb_config("r1", version, 150));
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
    let mut ka = keepalived(&lan, "r1", version, 150);
    let halb: Node = lan.start("r2", &halb_config("r2", version, 100));
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
    let ka = keepalived(&lan, "r1", version, 150);
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
