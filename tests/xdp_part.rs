//! The XDP part of the daemon: a frontend with `forwarding = "ipip"` is
//! served in the kernel (status shows the interface's XDP mode), server
//! admin changes reach the kernel's tables, and a frontend whose interface
//! cannot take XDP falls back to the user-space L4 path and still serves.

mod common;

use std::time::{Duration, Instant};

use common::Node;
use testsupport::Lab;

/// The admin socket line and an XDP frontend "vipu" (10.0.0.100:9000 on
/// eth0, generic mode) over backend "b".
const VIPU: &str = r#"admin_socket = "{socket}"

[[frontend]]
name = "vipu"
bind = "10.0.0.100:9000"
mode = "udp"
backend = "b"
forwarding = "ipip"
xdp = "generic"
interface = "eth0"
"#;

#[test]
fn xdp_frontend_in_kernel_and_fallback_to_user_space() -> Result<(), Box<dyn std::error::Error>> {
    testsupport::require_root!("XDP attach in a network namespace");
    let lab = Lab::new("xdpp")?;
    let lb = lab.netns("lb")?;
    let cl = lab.netns("cl")?;
    lab.link(&lb, "eth0", &cl, "eth0")?;
    lb.add_addr("eth0", "10.0.0.1/24")?;
    cl.add_addr("eth0", "10.0.0.2/24")?;
    cl.add_addr("eth0", "10.0.0.3/24")?;

    // A UDP echo server for the fallback frontend, on the balancer's loopback.
    let _echo = lb.spawn_thread(|| -> std::io::Result<()> {
        let s = std::net::UdpSocket::bind("127.0.0.1:5301")?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut buf = [0u8; 1500];
        for _ in 0..100 {
            let (n, from) = s.recv_from(&mut buf)?;
            s.send_to(&buf[..n], from)?;
        }
        Ok(())
    })?;

    let head = format!("[node]\nname = \"xdp1\"\n{VIPU}");
    let config = head
        + r#"
[[frontend]]
name = "fb"
bind = "127.0.0.1:5300"
mode = "udp"
backend = "echo"
forwarding = "ipip"
xdp = "native"
interface = "nosuch0"

[[backend]]
name = "b"
algorithm = "maglev"
servers = [
  { name = "s1", address = "10.0.0.2:9000" },
  { name = "s2", address = "10.0.0.3:9000" },
]
health = { kind = "none" }

[[backend]]
name = "echo"
servers = [{ name = "e", address = "127.0.0.1:5301" }]
health = { kind = "none" }
"#;
    let node = Node::start(&lb, lab.dir(), "xdp1", &config);

    let s = node.status();
    let xdp = &s["xdp"];
    let eth0 = xdp["interfaces"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["interface"] == "eth0"))
        .unwrap_or_else(|| panic!("no eth0 in {xdp:#}"));
    assert_eq!(eth0["mode"], "generic", "{xdp:#}");
    let frontends: Vec<&str> = xdp["frontends"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(frontends, vec!["vipu"], "{xdp:#}");
    let fallback: Vec<&str> = xdp["fallback"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f["frontend"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(fallback, vec!["fb"], "{xdp:#}");
    // The text status names the mode too.
    let text = String::from_utf8_lossy(&node.cli(&["status"]).stdout).to_string();
    assert!(
        text.contains("interface eth0") && text.contains("generic"),
        "{text}"
    );

    // The fallback frontend is served by the user-space UDP proxy.
    let reply = lb.run(|| -> std::io::Result<Vec<u8>> {
        let s = std::net::UdpSocket::bind("127.0.0.1:0")?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.send_to(b"ping-through-fallback", "127.0.0.1:5300")?;
        let mut buf = [0u8; 64];
        let n = s.recv(&mut buf)?;
        Ok(buf[..n].to_vec())
    })??;
    assert_eq!(reply, b"ping-through-fallback");

    // `halb server disable` reaches the kernel's table: s1 leaves it.
    let out = node.cli(&["server", "disable", "b/s1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = node.status();
        let servers = s["xdp"]["frontends"][0]["servers"].clone();
        let s1 = servers
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == "s1"))
            .cloned()
            .unwrap_or_default();
        let s2_slots = servers
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == "s2"))
            .and_then(|x| x["slots"].as_u64())
            .unwrap_or(0);
        if s1["condition"] == "down" && s1["slots"] == 0 && s2_slots == 65537 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "s1 still in the kernel table: {servers:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The id of the XDP program on `ifname` in `ns`, if one is attached.
fn xdp_prog_id(ns: &testsupport::Netns, ifname: &str) -> Option<u64> {
    let out = ns.ip(["-j", "-d", "link", "show", ifname]).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v[0]["xdp"]["prog"]["id"].as_u64()
}

#[test]
fn xdp_upgrade_switches_the_program_in_one_step() -> Result<(), Box<dyn std::error::Error>> {
    testsupport::require_root!("XDP attach in a network namespace");
    let lab = Lab::new("xdpu")?;
    let lb = lab.netns("lb")?;
    let cl = lab.netns("cl")?;
    lab.link(&lb, "eth0", &cl, "eth0")?;
    lb.add_addr("eth0", "10.0.0.1/24")?;
    let head = format!("[node]\nname = \"xdpu\"\n{VIPU}");
    let config = head
        + r#"
[[backend]]
name = "b"
algorithm = "maglev"
servers = [{ name = "s1", address = "10.0.0.2:9000" }]
health = { kind = "none" }
"#;
    let mut old = Node::start(&lb, lab.dir(), "xdpu", &config);
    let first = xdp_prog_id(&lb, "eth0").expect("program attached");

    // Sample the interface's program through the whole upgrade.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (ns, stop) = (lb.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..5000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                seen.push(xdp_prog_id(&ns, "eth0"));
            }
            seen
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let (mut new, _) = old.upgrade();
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = sampler.join().expect("sampler");

    let second = xdp_prog_id(&lb, "eth0").expect("program attached after the upgrade");
    assert_ne!(
        first, second,
        "the new process's program is not the one attached"
    );
    assert!(seen.len() > 10, "only {} samples", seen.len());
    assert!(
        seen.iter().all(|s| *s == Some(first) || *s == Some(second)),
        "the interface was without halb's program during the upgrade: {seen:?}"
    );
    // One switch, from the old program to the new one.
    let mut ids: Vec<u64> = seen.iter().flatten().copied().collect();
    ids.dedup();
    assert_eq!(ids.last(), Some(&second), "{ids:?}");
    assert!(ids.len() <= 2, "{ids:?}");
    assert!(
        new.log().contains("taken_over=true"),
        "the new process attached anew instead of taking the link over:\n{}",
        new.log()
    );

    // The new process serves the frontend in the kernel, nothing falls back.
    let s = new.status();
    let xdp = &s["xdp"];
    assert_eq!(xdp["interfaces"][0]["interface"], "eth0", "{xdp:#}");
    assert_eq!(xdp["interfaces"][0]["mode"], "generic", "{xdp:#}");
    assert_eq!(xdp["frontends"][0]["name"], "vipu", "{xdp:#}");
    assert_eq!(xdp["fallback"].as_array().map(Vec::len), Some(0), "{xdp:#}");

    // Its stop detaches: it held the last reference to the link.
    assert_eq!(new.stop(Duration::from_secs(15)), Some(0));
    assert_eq!(xdp_prog_id(&lb, "eth0"), None);
    Ok(())
}
