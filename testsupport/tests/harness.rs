//! Tests of the network test harness itself. They need root (network
//! namespaces) and skip otherwise, failing instead under CI=true.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use testsupport::gate::{decide, GateDecision};
use testsupport::pcap::{ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use testsupport::{host_command, netns_exists, Error, Lab, Netns, Segment, Signal};

type R = Result<(), Box<dyn std::error::Error>>;

const T: Duration = Duration::from_secs(10);

/// One ICMP echo with a one-second reply deadline.
fn ping(ns: &Netns, addr: &str) -> Result<bool, Error> {
    Ok(ns
        .command("ping")
        .args(["-n", "-c", "1", "-W", "1", addr])
        .output(T)?
        .status
        .success())
}

/// Ping until one echo succeeds (bounded: `tries` attempts).
fn ping_eventually(ns: &Netns, addr: &str, tries: u32) -> Result<bool, Error> {
    for _ in 0..tries {
        if ping(ns, addr)? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn two_linked(lab: &Lab) -> Result<(Netns, Netns), Error> {
    let a = lab.netns("a")?;
    let b = lab.netns("b")?;
    lab.link(&a, "eth0", &b, "eth0")?;
    a.add_addr("eth0", "10.213.0.1/24")?;
    b.add_addr("eth0", "10.213.0.2/24")?;
    a.add_addr("eth0", "fd00:213::1/64")?;
    b.add_addr("eth0", "fd00:213::2/64")?;
    Ok((a, b))
}

fn gone_or_zombie(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

#[test]
fn gate_decision_is_pure() {
    assert_eq!(decide(true, None), GateDecision::Run);
    assert_eq!(decide(true, Some("true")), GateDecision::Run);
    assert_eq!(decide(false, None), GateDecision::Skip);
    assert_eq!(decide(false, Some("false")), GateDecision::Skip);
    assert_eq!(decide(false, Some("true")), GateDecision::Fail);
}

#[test]
fn veth_pair_pings_ipv4_and_ipv6() -> R {
    testsupport::require_root!();
    let lab = Lab::new("veth")?;
    let (a, b) = two_linked(&lab)?;
    assert!(ping(&a, "10.213.0.2")?, "IPv4 ping a -> b");
    assert!(ping(&b, "10.213.0.1")?, "IPv4 ping b -> a");
    assert!(ping(&a, "fd00:213::2")?, "IPv6 ping a -> b");
    assert!(ping(&b, "fd00:213::1")?, "IPv6 ping b -> a");
    // Nothing was created in the host namespace.
    let host = host_command("ip").args(["-o", "link"]).run(T)?;
    let host = String::from_utf8_lossy(&host.stdout);
    assert!(
        !host.contains(lab.prefix()),
        "host sees lab interfaces:\n{host}"
    );
    Ok(())
}

#[test]
fn three_namespaces_on_a_bridge() -> R {
    testsupport::require_root!();
    let lab = Lab::new("bridge")?;
    let sw = lab.bridge("sw")?;
    let nodes: Vec<Netns> = (1..=3)
        .map(|i| -> Result<Netns, Error> {
            let ns = lab.netns(&format!("n{i}"))?;
            lab.attach(&ns, "eth0", &sw)?;
            ns.add_addr("eth0", &format!("10.213.1.{i}/24"))?;
            Ok(ns)
        })
        .collect::<Result<_, _>>()?;
    assert_eq!(sw.ports()?.len(), 3, "three ports on br0");
    for (i, from) in nodes.iter().enumerate() {
        for j in 1..=3 {
            if j != i + 1 {
                let to = format!("10.213.1.{j}");
                assert!(ping(from, &to)?, "{} -> {to}", from.short_name());
            }
        }
    }
    Ok(())
}

#[test]
fn cut_stops_traffic_and_heal_restores_it() -> R {
    testsupport::require_root!();
    let lab = Lab::new("cut")?;
    let sw = lab.bridge("sw")?;
    let a = lab.netns("a")?;
    let b = lab.netns("b")?;
    let port_a = lab.attach(&a, "eth0", &sw)?;
    lab.attach(&b, "eth0", &sw)?;
    a.add_addr("eth0", "10.213.2.1/24")?;
    b.add_addr("eth0", "10.213.2.2/24")?;
    assert!(ping(&a, "10.213.2.2")?, "before the cut");

    lab.cut(&port_a)?;
    assert!(!ping(&a, "10.213.2.2")?, "traffic passes a cut port");
    assert!(
        !ping(&b, "10.213.2.1")?,
        "traffic passes a cut port (other way)"
    );
    // A cut is silent: the node keeps its carrier.
    assert!(
        a.link("eth0")?.has_carrier(),
        "cut must not drop the carrier"
    );

    lab.heal(&port_a)?;
    assert!(ping_eventually(&a, "10.213.2.2", 5)?, "after heal");

    // Unplugging is visible: no carrier on the node's side.
    port_a.unplug()?;
    assert!(
        !a.link("eth0")?.has_carrier(),
        "unplugged port keeps carrier"
    );
    port_a.plug()?;
    testsupport::wait_until("carrier back", T, Duration::from_millis(20), || {
        let l = a.link("eth0")?;
        Ok(if l.has_carrier() {
            Ok(())
        } else {
            Err(l.flags)
        })
    })?;
    assert!(ping_eventually(&a, "10.213.2.2", 5)?, "after plug");
    Ok(())
}

#[test]
fn direct_link_cut_and_heal() -> R {
    testsupport::require_root!();
    let lab = Lab::new("linkcut")?;
    let a = lab.netns("a")?;
    let b = lab.netns("b")?;
    let link = lab.link(&a, "x0", &b, "y0")?;
    a.add_addr("x0", "10.213.3.1/24")?;
    b.add_addr("y0", "10.213.3.2/24")?;
    assert!(ping(&a, "10.213.3.2")?);
    link.cut()?;
    assert!(!ping(&a, "10.213.3.2")?, "traffic passes a cut link");
    assert!(
        !ping(&b, "10.213.3.1")?,
        "traffic passes a cut link (other way)"
    );
    assert!(b.link("y0")?.has_carrier());
    link.heal()?;
    assert!(ping_eventually(&a, "10.213.3.2", 5)?);
    Ok(())
}

#[test]
fn spawned_process_sees_only_its_namespace() -> R {
    testsupport::require_root!();
    let lab = Lab::new("procview")?;
    let a = lab.netns("a")?;
    let b = lab.netns("b")?;
    lab.link(&a, "only-in-a", &b, "only-in-b")?;
    let mut child = a.command("ip").args(["-o", "link"]).spawn()?;
    let out = child.wait_with_output(T)?;
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n))
        .collect();
    assert_eq!(names, ["lo", "only-in-a"], "full output:\n{text}");
    Ok(())
}

#[test]
fn process_in_namespace_gets_signals_and_dies_with_the_lab() -> R {
    testsupport::require_root!();
    let lab = Lab::new("signals")?;
    let a = lab.netns("a")?;
    // `ip netns exec` execs in place: the shell's $$ is the child's pid.
    let mut child = a
        .command("sh")
        .args(["-c", "echo pid=$$; exec sleep 300"])
        .spawn()?;
    child.wait_for_output("pid=", T)?;
    let out = child.wait_for_output("\n", T)?;
    assert_eq!(out.trim(), format!("pid={}", child.pid()));
    child.signal(Signal::SIGTERM)?;
    let status = child.wait_exit(T)?;
    assert!(!status.success(), "sleep killed by SIGTERM: {status}");

    // A process nobody kills (its handle leaked) still dies with the lab.
    let leaked = a
        .command("sh")
        .args(["-c", "echo inside; exec sleep 300"])
        .spawn()?;
    leaked.wait_for_output("inside", T)?;
    let pid = leaked.pid();
    std::mem::forget(leaked);
    assert!(!gone_or_zombie(pid));
    drop(lab);
    testsupport::wait_until(
        "leaked process to die",
        T,
        Duration::from_millis(20),
        || {
            Ok(if gone_or_zombie(pid) {
                Ok(())
            } else {
                Err(pid)
            })
        },
    )?;
    Ok(())
}

#[test]
fn capture_sees_icmp() -> R {
    testsupport::require_root!();
    testsupport::require_tool!("tcpdump");
    let lab = Lab::new("capture")?;
    let (a, b) = two_linked(&lab)?;
    let cap = b.capture("eth0", "icmp")?;
    a.command("ping")
        .args(["-n", "-c", "3", "-i", "0.2", "-W", "1", "10.213.0.2"])
        .run(T)?;
    let is_echo = |p: &testsupport::Packet, kind: u8| {
        p.ip()
            .is_some_and(|(proto, icmp)| proto == 1 && icmp.first() == Some(&kind))
    };
    cap.wait_for(T, |pkts| pkts.iter().filter(|p| is_echo(p, 8)).count() >= 3)?;
    let packets = cap.stop()?;
    let requests = packets.iter().filter(|p| is_echo(p, 8)).count();
    let replies = packets.iter().filter(|p| is_echo(p, 0)).count();
    assert_eq!((requests, replies), (3, 3), "{packets:?}");
    assert!(packets
        .iter()
        .all(|p| p.ethertype() == Some(ETHERTYPE_IPV4)));
    assert!(packets.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    Ok(())
}

#[test]
fn wait_port_against_listener_inside_namespace() -> R {
    testsupport::require_root!();
    let lab = Lab::new("port")?;
    let (a, b) = two_linked(&lab)?;
    // Bound from a thread inside `b`: 10.213.0.2 exists only there.
    let listener = b.run(|| TcpListener::bind("10.213.0.2:0"))??;
    assert!(
        TcpListener::bind("10.213.0.2:0").is_err(),
        "the address must not exist in the host namespace"
    );
    let addr = listener.local_addr()?;
    a.wait_port(addr, T)?;

    let server = std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
        // wait_port's probe connection comes first.
        let _probe = listener.accept()?;
        let (mut s, _) = listener.accept()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)?;
        Ok(buf)
    });
    a.run(|| -> std::io::Result<()> {
        let mut s = std::net::TcpStream::connect_timeout(&addr, T)?;
        s.write_all(b"hello from a")
    })??;
    let got = server.join().expect("server thread")?;
    assert_eq!(got, b"hello from a");

    // Nobody listens on this port: a bounded wait fails with Timeout.
    let closed = SocketAddr::new(addr.ip(), 1);
    let err = a
        .wait_port(closed, Duration::from_millis(300))
        .expect_err("nothing listens on port 1");
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    Ok(())
}

#[test]
fn drop_removes_namespaces_even_when_the_test_panics() {
    testsupport::require_root!();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let kept_dir: Arc<Mutex<Option<std::path::PathBuf>>> = Arc::default();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let lab = Lab::new("panic").expect("lab");
        let a = lab.netns("a").expect("netns a");
        let sw = lab.bridge("sw").expect("bridge");
        lab.attach(&a, "eth0", &sw).expect("attach");
        *seen.lock().expect("lock") = lab.namespace_names();
        *kept_dir.lock().expect("lock") = Some(lab.dir().to_path_buf());
        assert!(netns_exists(a.name()));
        panic!("deliberate failure inside a lab");
    }));
    assert!(result.is_err(), "the body panicked");
    let names = seen.lock().expect("lock").clone();
    assert_eq!(names.len(), 2);
    for name in &names {
        assert!(!netns_exists(name), "{name} survived the panic");
    }
    // The scratch directory is kept for post-mortem; tidy it here.
    let dir = kept_dir.lock().expect("lock").take();
    if let Some(dir) = dir {
        assert!(dir.is_dir(), "scratch dir kept after a panic");
        std::fs::remove_dir_all(dir).expect("remove kept dir");
    }
}

#[test]
fn stale_namespaces_of_dead_processes_are_removed() -> R {
    testsupport::require_root!();
    let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")?
        .trim()
        .parse()
        .unwrap_or(32768);
    let dead = (1000..pid_max)
        .rev()
        .find(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
        .expect("some pid is free");
    let stale = format!("{}leftover", testsupport::lab_prefix(dead, 0, "stale"));
    host_command("ip")
        .args(["netns", "add", stale.as_str()])
        .run(T)?;
    // A process left running inside it, like a SIGKILLed test's daemon.
    let mut orphan = host_command("ip")
        .args([
            "netns",
            "exec",
            stale.as_str(),
            "sh",
            "-c",
            "echo inside; exec sleep 300",
        ])
        .spawn()?;
    orphan.wait_for_output("inside", T)?;
    assert!(netns_exists(&stale));

    let _lab = Lab::new("stale")?;
    assert!(!netns_exists(&stale), "stale namespace {stale} not removed");
    let status = orphan.wait_exit(T)?;
    assert!(
        !status.success(),
        "process in the stale namespace was killed"
    );
    Ok(())
}

#[test]
fn sysctl_is_per_namespace() -> R {
    testsupport::require_root!();
    let lab = Lab::new("sysctl")?;
    let a = lab.netns("a")?;
    let b = lab.netns("b")?;
    let host_before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")?;
    a.sysctl("net.ipv4.ip_forward", "1")?;
    assert_eq!(a.sysctl_get("net.ipv4.ip_forward")?, "1");
    let seen = a.exec(&["cat", "/proc/sys/net/ipv4/ip_forward"])?;
    assert_eq!(String::from_utf8_lossy(&seen.stdout).trim(), "1");
    assert_eq!(b.sysctl_get("net.ipv4.ip_forward")?, "0");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")?,
        host_before
    );
    assert!(
        a.sysctl("kernel.pid_max", "1").is_err(),
        "non-net keys refused"
    );
    Ok(())
}

#[test]
fn neighbours_addresses_and_macs() -> R {
    testsupport::require_root!();
    let lab = Lab::new("inspect")?;
    let (a, b) = two_linked(&lab)?;
    b.set_mac("eth0", "02:00:5e:10:00:02")?;
    assert_eq!(b.mac("eth0")?.to_string(), "02:00:5e:10:00:02");
    assert!(ping(&a, "10.213.0.2")?);
    let peer: IpAddr = "10.213.0.2".parse()?;
    let neigh = a.neigh("eth0")?;
    let entry = neigh
        .iter()
        .find(|n| n.addr == peer)
        .unwrap_or_else(|| panic!("no neighbour entry for {peer}: {neigh:?}"));
    assert_eq!(entry.mac, Some(b.mac("eth0")?));
    assert!(
        ["REACHABLE", "STALE", "DELAY", "PROBE"]
            .iter()
            .any(|s| entry.has_state(s)),
        "{entry:?}"
    );

    let addrs = a.addrs("eth0")?;
    let shown: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    assert!(shown.contains(&"10.213.0.1/24".to_owned()), "{shown:?}");
    let v6 = addrs
        .iter()
        .find(|x| x.to_string() == "fd00:213::1/64")
        .unwrap_or_else(|| panic!("no fd00:213::1/64 in {shown:?}"));
    assert!(!v6.tentative, "nodad address must not be tentative");
    assert_eq!(v6.scope, "global");

    a.del_addr("eth0", "10.213.0.1/24")?;
    assert!(!a
        .addrs("eth0")?
        .iter()
        .any(|x| x.to_string() == "10.213.0.1/24"));
    a.link_down("eth0")?;
    assert!(!a.link("eth0")?.is_up());
    a.link_up("eth0")?;
    assert!(a.link("eth0")?.is_up());
    assert!(matches!(a.mac("lo"), Err(Error::NoMac { .. })));
    assert!(a.neigh("no-such-if").is_err());
    Ok(())
}

#[test]
fn exec_failure_reports_stderr() -> R {
    testsupport::require_root!();
    let lab = Lab::new("execerr")?;
    let a = lab.netns("a")?;
    let err = a
        .exec(&["sh", "-c", "echo broken-thing >&2; exit 2"])
        .expect_err("exit 2");
    let msg = err.to_string();
    assert!(
        msg.contains("broken-thing") && msg.contains(a.name()),
        "{msg}"
    );
    assert!(matches!(a.exec::<&str>(&[]), Err(Error::EmptyCommand)));
    assert!(matches!(
        lab.link(&a, "this-name-is-too-long", &a, "x"),
        Err(Error::BadIfName { .. })
    ));
    Ok(())
}

#[test]
fn run_propagates_panics() {
    testsupport::require_root!();
    let lab = Lab::new("runpanic").expect("lab");
    let a = lab.netns("a").expect("netns");
    let caught = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let _ = a.run(|| panic!("inside the namespace"));
    }));
    assert!(caught.is_err());
    assert_eq!(a.run(|| 41 + 1).expect("run"), 42);
}

#[cfg(feature = "tokio")]
#[test]
fn tokio_sockets_inside_a_namespace() -> R {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    testsupport::require_root!();
    let lab = Lab::new("tokio")?;
    let (a, b) = two_linked(&lab)?;
    let rt = b.tokio_runtime()?;
    let listener = rt.block_on(async { tokio::net::TcpListener::bind("10.213.0.2:0").await })?;
    let addr = listener.local_addr()?;
    let server = rt.spawn(async move {
        let (mut s, peer) = listener.accept().await?;
        s.write_all(b"hi from b").await?;
        Ok::<_, std::io::Error>(peer)
    });
    let got = a.block_on(async move {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    })??;
    assert_eq!(got, b"hi from b");
    let peer = rt.block_on(server)??;
    assert_eq!(peer.ip().to_string(), "10.213.0.1");
    Ok(())
}

#[test]
fn reads_the_shared_keepalived_captures() -> R {
    let dir = testsupport::shared_testdata()?.join("vrrp");
    let cases = [
        ("keepalived-v2-ipv4-multicast.pcap", 15, ETHERTYPE_IPV4),
        ("keepalived-v3-ipv4-multicast.pcap", 15, ETHERTYPE_IPV4),
        ("keepalived-v3-ipv4-unicast.pcap", 17, ETHERTYPE_IPV4),
        ("keepalived-v3-ipv6-multicast.pcap", 15, ETHERTYPE_IPV6),
    ];
    for (file, count, ethertype) in cases {
        let pcap = testsupport::pcap::read_file(dir.join(file))?;
        assert_eq!(
            pcap.header.linktype,
            testsupport::pcap::LinkType::ETHERNET,
            "{file}"
        );
        assert_eq!(pcap.records.len(), count, "{file}");
        let vrrp: Vec<_> = pcap
            .records
            .iter()
            .filter(|r| r.ip_proto() == Some(112))
            .collect();
        assert_eq!(vrrp.len(), 5, "{file}: VRRP adverts");
        let first = vrrp[0];
        assert_eq!(first.ethertype(), Some(ethertype), "{file}");
        // Sent from keepalived's interface MAC (see the README).
        assert_eq!(
            &first.data[6..12],
            &[0x02, 0x00, 0x5e, 0x10, 0x00, 0x01],
            "{file}"
        );
        let (_, payload) = first.ip().expect("VRRP has an IP header");
        assert_eq!(payload.get(1), Some(&42), "{file}: VRID");
        assert_eq!(payload.get(2), Some(&200), "{file}: priority");
        // The last VRRP packet is the priority-0 resignation.
        let last = vrrp[vrrp.len() - 1].ip().expect("ip").1;
        assert_eq!(last.get(2), Some(&0), "{file}: resign");
    }
    // The first record of the v2 file, as tcpdump -tt prints it.
    let v2 = testsupport::pcap::read(dir.join(cases[0].0))?;
    assert_eq!(v2[0].timestamp, Duration::new(1_795_308_299, 902_029_000));
    assert_eq!(v2[4].ip_proto(), Some(112));
    assert_eq!(v2[4].data.len(), 54);
    Ok(())
}
