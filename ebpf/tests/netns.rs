//! End-to-end in network namespaces with real packets: a client, one or two
//! balancers running the XDP program on their veth, and backends that
//! decapsulate (ebpf::Decap on their eth0; this kernel has no ipip module),
//! hold the VIP on `lo` with arp_ignore / arp_announce, and answer the
//! client directly (DSR). All on one bridge.
//!
//! The client reaches the VIP through a static neighbour entry pointing at
//! the active balancer's MAC, which is what VRRP's gratuitous ARP sets up;
//! "moving the VIP" rewrites that entry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ebpf::bench::{BenchProgram, BenchPrograms};
use ebpf::{AttachMode, Decap, ServerSpec, XdpBalancer, XdpOptions, XdpState};
use testsupport::{Bridge, Lab, Netns};

const VIP4: &str = "10.0.0.100";
const VIP6: &str = "fd00::100";
const DSR_VIP: &str = "10.0.0.101";
const IO_TIMEOUT: Duration = Duration::from_secs(3);

fn gate() -> bool {
    if !testsupport::gate::require_root("BPF and network namespaces")
        || !testsupport::gate::require_tool("clang")
        || !testsupport::gate::require_tool("ethtool")
    {
        return false;
    }
    assert!(
        ebpf::object::built(),
        "clang is installed but the XDP program was not built"
    );
    true
}

/// A backend: namespace, decapsulator and a TCP server on the VIPs.
struct BackendNode {
    _ns: Netns,
    _decap: Decap,
    stop: Arc<AtomicBool>,
}

impl Drop for BackendNode {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Serve: per line "ping" -> "<name>\n"; "bulk N" -> read N bytes, "got N\n".
fn serve(name: String, listener: TcpListener, stop: Arc<AtomicBool>) {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        match listener.accept() {
            Ok((stream, _)) => {
                let name = name.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                    let mut writer = stream.try_clone().unwrap();
                    let mut reader = BufReader::new(stream);
                    for _ in 0..10_000 {
                        let mut line = String::new();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        let line = line.trim();
                        if line == "ping" {
                            if writer.write_all(format!("{name}\n").as_bytes()).is_err() {
                                return;
                            }
                        } else if let Some(n) = line.strip_prefix("bulk ") {
                            let n: usize = n.parse().unwrap_or(0);
                            let mut buf = vec![0u8; n];
                            if reader.read_exact(&mut buf).is_err() {
                                return;
                            }
                            let _ = writer.write_all(format!("got {n}\n").as_bytes());
                        }
                    }
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return,
        }
    }
}

struct Topology {
    lab: Lab,
    _sw: Bridge,
    client: Netns,
    lbs: Vec<(Netns, XdpBalancer)>,
    backends: BTreeMap<String, BackendNode>,
    _peers: Vec<BenchPrograms>,
}

fn config(servers: &[&str], mode: &str) -> control::config::Config {
    let list = |family6: bool| -> String {
        servers
            .iter()
            .map(|s| {
                let n: u8 = s[1..].parse().unwrap();
                if family6 {
                    format!("{{ name = \"{s}\", address = \"[fd00::{}]:80\" }}", 10 + n)
                } else {
                    format!("{{ name = \"{s}\", address = \"10.0.0.{}:80\" }}", 10 + n)
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = format!(
        r#"
[node]
name = "lb"

[[frontend]]
name = "web4"
bind = "{VIP4}:80"
mode = "tcp"
backend = "pool4"
forwarding = "ipip"
xdp = "{mode}"
interface = "eth0"

[[frontend]]
name = "web6"
bind = "[{VIP6}]:80"
mode = "tcp"
backend = "pool6"
forwarding = "ipip"
xdp = "{mode}"
interface = "eth0"

[[frontend]]
name = "dsr"
bind = "{DSR_VIP}:80"
mode = "tcp"
backend = "pool4"
forwarding = "l2-dsr"
xdp = "{mode}"
interface = "eth0"

[[backend]]
name = "pool4"
algorithm = "maglev"
hash_key = "source-ip-port"
maglev_table_size = 251
drain_timeout = "60s"
servers = [ {v4} ]

[[backend]]
name = "pool6"
algorithm = "maglev"
hash_key = "source-ip-port"
maglev_table_size = 251
servers = [ {v6} ]
"#,
        v4 = list(false),
        v6 = list(true)
    );
    control::config::parse(&text, "e2e.toml").unwrap()
}

impl Topology {
    /// `backends`: names "b1".."b9" (address 10.0.0.1N); `balancers`: 1 or 2;
    /// the balancers start with `servers` configured.
    fn new(
        tag: &str,
        backends: &[&str],
        servers: &[&str],
        balancers: usize,
        mode: AttachMode,
    ) -> Topology {
        let lab = Lab::new(tag).unwrap();
        let sw = lab.bridge("sw").unwrap();
        let client = lab.netns("cl").unwrap();
        lab.attach(&client, "eth0", &sw).unwrap();
        client.add_addr("eth0", "10.0.0.2/24").unwrap();
        client.add_addr("eth0", "fd00::2/64").unwrap();
        // Real NICs hand XDP one frame per packet with complete checksums; a
        // veth passes 64 KiB GSO frames and partial checksums (which native
        // XDP forwards as they are, so backends would drop them).
        client
            .exec(&[
                "ethtool", "-K", "eth0", "tso", "off", "gso", "off", "tx", "off",
            ])
            .unwrap();

        let mut backend_nodes = BTreeMap::new();
        for name in backends {
            let n: u8 = name[1..].parse().unwrap();
            let ns = lab.netns(name).unwrap();
            lab.attach(&ns, "eth0", &sw).unwrap();
            let v4: IpAddr = format!("10.0.0.{}", 10 + n).parse().unwrap();
            let v6: IpAddr = format!("fd00::{}", 10 + n).parse().unwrap();
            ns.add_addr("eth0", &format!("{v4}/24")).unwrap();
            ns.add_addr("eth0", &format!("{v6}/64")).unwrap();
            for vip in [VIP4, DSR_VIP] {
                ns.add_addr("lo", &format!("{vip}/32")).unwrap();
            }
            ns.add_addr("lo", &format!("{VIP6}/128")).unwrap();
            for (k, v) in [
                ("net.ipv4.conf.all.arp_ignore", "1"),
                ("net.ipv4.conf.all.arp_announce", "2"),
                ("net.ipv4.conf.eth0.arp_ignore", "1"),
                ("net.ipv4.conf.eth0.arp_announce", "2"),
                ("net.ipv4.conf.all.rp_filter", "0"),
                ("net.ipv4.conf.eth0.rp_filter", "0"),
            ] {
                ns.sysctl(k, v).unwrap();
            }
            let decap = ns
                .run(move || -> Result<Decap, ebpf::Error> {
                    let mut d = Decap::load(&[v4, v6])?;
                    d.attach("eth0", AttachMode::Generic)?;
                    Ok(d)
                })
                .unwrap()
                .unwrap();
            assert_eq!(decap.address_count(), 2);
            let stop = Arc::new(AtomicBool::new(false));
            // Dual-stack: IPv4 clients arrive as IPv4-mapped addresses.
            let listener = ns.run(|| TcpListener::bind("[::]:80").unwrap()).unwrap();
            {
                let (name, stop) = (name.to_string(), stop.clone());
                std::thread::spawn(move || serve(name, listener, stop));
            }
            backend_nodes.insert(
                name.to_string(),
                BackendNode {
                    _ns: ns,
                    _decap: decap,
                    stop,
                },
            );
        }

        let mode_str = match mode {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
        };
        let mut lbs = Vec::new();
        let mut peers = Vec::new();
        for i in 0..balancers {
            let ns = lab.netns(&format!("lb{}", i + 1)).unwrap();
            let port = lab.attach(&ns, "eth0", &sw).unwrap();
            ns.add_addr("eth0", &format!("10.0.0.{}/24", i + 1 + 200))
                .unwrap();
            ns.add_addr("eth0", &format!("fd00::{}/64", i + 1 + 200))
                .unwrap();
            if mode == AttachMode::Native {
                // Native XDP_TX on a veth needs NAPI on the peer: an XDP
                // program there (GRO alone did not deliver the frames here).
                let port_name = port.port_name().to_string();
                let pass = sw
                    .netns()
                    .run(move || -> Result<BenchPrograms, ebpf::Error> {
                        let mut p = BenchPrograms::load()?;
                        p.attach(BenchProgram::Pass, &port_name, AttachMode::Native)?;
                        Ok(p)
                    })
                    .unwrap()
                    .unwrap();
                peers.push(pass);
            }
            let cfg = config(servers, mode_str);
            let options = XdpOptions {
                flow_table_entries: 4096,
                ..XdpOptions::default()
            };
            let (xdp, report) = ns
                .run(|| XdpBalancer::new(&cfg, &options))
                .unwrap()
                .unwrap();
            assert!(report.fallback.is_empty(), "{:?}", report.fallback);
            lbs.push((ns, xdp));
        }
        // IPv6 neighbours answer only once the backend's link-local
        // address has passed DAD; the daemon's periodic maintain() picks
        // them up, here we wait for it.
        for (_, xdp) in lbs.iter_mut() {
            testsupport::wait_until(
                "next hops resolved",
                Duration::from_secs(10),
                Duration::from_millis(50),
                || {
                    xdp.maintain(Instant::now()).unwrap();
                    let unresolved: Vec<String> = xdp
                        .status()
                        .frontends
                        .iter()
                        .flat_map(|f| {
                            f.servers
                                .iter()
                                .filter(|s| !s.resolved)
                                .map(|s| format!("{}/{}", f.name, s.name))
                        })
                        .collect();
                    Ok(if unresolved.is_empty() {
                        Ok(())
                    } else {
                        Err(unresolved)
                    })
                },
            )
            .unwrap();
        }
        let topo = Topology {
            lab,
            _sw: sw,
            client,
            lbs,
            backends: backend_nodes,
            _peers: peers,
        };
        topo.point_vip_at(0);
        topo
    }

    /// What VRRP's gratuitous ARP / unsolicited NA does: the client sends
    /// VIP traffic to balancer `i`.
    fn point_vip_at(&self, i: usize) {
        let mac = self.lbs[i].0.mac("eth0").unwrap().to_string();
        for vip in [VIP4, VIP6, DSR_VIP] {
            self.client
                .ip([
                    "neigh",
                    "replace",
                    vip,
                    "lladdr",
                    &mac,
                    "dev",
                    "eth0",
                    "nud",
                    "permanent",
                ])
                .unwrap();
        }
    }

    fn connect(&self, vip: &str) -> TcpStream {
        let addr = SocketAddr::new(vip.parse().unwrap(), 80);
        let s = self
            .client
            .run(move || TcpStream::connect_timeout(&addr, IO_TIMEOUT))
            .unwrap()
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        s
    }

    fn lb(&mut self, i: usize) -> &mut XdpBalancer {
        &mut self.lbs[i].1
    }
}

/// Send "ping", return the backend's name.
fn ping(s: &mut TcpStream) -> String {
    s.write_all(b"ping\n").unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 64 {
        match s.read(&mut byte) {
            Ok(1) if byte[0] == b'\n' => break,
            Ok(1) => line.push(byte[0]),
            Ok(_) => panic!(
                "connection closed after {:?}",
                String::from_utf8_lossy(&line)
            ),
            Err(e) => panic!("reading reply: {e}"),
        }
    }
    String::from_utf8(line).unwrap()
}

fn open(topo: &Topology, vip: &str, n: usize) -> Vec<(TcpStream, String)> {
    (0..n)
        .map(|_| {
            let mut s = topo.connect(vip);
            let name = ping(&mut s);
            (s, name)
        })
        .collect()
}

fn tally<'a>(names: impl Iterator<Item = &'a String>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for n in names {
        *m.entry(n.clone()).or_insert(0) += 1;
    }
    m
}

#[test]
fn ipip_distributes_sticks_across_server_changes_and_drains() {
    if !gate() {
        return;
    }
    let mut topo = Topology::new(
        "e2e-ipip",
        &["b1", "b2", "b3"],
        &["b1", "b2"],
        1,
        AttachMode::Generic,
    );

    // Distribution over the configured servers.
    let mut first = open(&topo, VIP4, 24);
    let counts = tally(first.iter().map(|(_, n)| n));
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        ["b1", "b2"],
        "{counts:?}"
    );

    // Server-set change: b3 joins. Established connections stay put.
    let cfg = config(&["b1", "b2", "b3"], "generic");
    let report = topo.lb(0).apply(&cfg).unwrap();
    assert!(report.in_kernel("web4"));
    for (s, name) in first.iter_mut() {
        assert_eq!(&ping(s), name, "an established connection changed backend");
    }
    let second = open(&topo, VIP4, 30);
    let counts = tally(second.iter().map(|(_, n)| n));
    assert!(
        counts.get("b3").copied().unwrap_or(0) > 0,
        "b3 got no new connection: {counts:?}"
    );

    // Drain b1: its connections keep working, new ones avoid it.
    assert!(topo.lb(0).set_server_drained("pool4", "b1", true).unwrap());
    let mut on_b1 = 0;
    for (s, name) in first
        .iter_mut()
        .chain(second.into_iter().collect::<Vec<_>>().iter_mut())
    {
        assert_eq!(&ping(s), name);
        on_b1 += usize::from(name == "b1");
    }
    assert!(on_b1 > 0);
    let third = open(&topo, VIP4, 30);
    assert!(
        third.iter().all(|(_, n)| n != "b1"),
        "new connection on drained b1"
    );

    // Counters saw it all; nothing was dropped.
    let stats = topo.lb(0).stats().unwrap();
    let web4 = &stats.frontends["web4"];
    assert_eq!(web4.vip.new_flows, 24 + 30 + 30);
    assert_eq!(web4.vip.dropped, 0);
    assert!(web4.servers["b3"].packets > 0);
    let decapsulated: u64 = topo
        .backends
        .values()
        .map(|b| b._decap.stats().unwrap().decapsulated)
        .sum();
    assert!(
        decapsulated >= web4.vip.packets - web4.vip.icmp_too_big,
        "{decapsulated} vs {}",
        web4.vip.packets
    );

    // Non-VIP traffic is untouched: the balancer's own address answers.
    let before = topo.lb(0).stats().unwrap().global.pass_not_vip;
    topo.client
        .exec(&["ping", "-c", "2", "-i", "0.2", "-W", "2", "10.0.0.201"])
        .unwrap();
    let after = topo.lb(0).stats().unwrap().global.pass_not_vip;
    assert!(after >= before + 2, "{before} -> {after}");
    let status = topo.lb(0).status();
    assert_eq!(status.interfaces[0].mode, XdpState::Generic);
}

#[test]
fn ipv6_and_l2_dsr_reach_every_backend() {
    if !gate() {
        return;
    }
    let mut topo = Topology::new(
        "e2e-v6",
        &["b1", "b2", "b3"],
        &["b1", "b2", "b3"],
        1,
        AttachMode::Generic,
    );
    let mut six = open(&topo, VIP6, 30);
    let counts = tally(six.iter().map(|(_, n)| n));
    assert_eq!(counts.len(), 3, "IPv6 connections: {counts:?}");
    // Stickiness over IPv6 when a server leaves the set.
    topo.lb(0)
        .set_backends(
            "web6",
            &[
                ServerSpec::new("b1", 1, "fd00::11".parse().unwrap(), true),
                ServerSpec::new("b2", 1, "fd00::12".parse().unwrap(), true),
                ServerSpec::new("b3", 0, "fd00::13".parse().unwrap(), true),
            ],
        )
        .unwrap();
    for (s, name) in six.iter_mut() {
        assert_eq!(&ping(s), name);
    }
    let dsr = open(&topo, DSR_VIP, 30);
    let counts = tally(dsr.iter().map(|(_, n)| n));
    assert_eq!(counts.len(), 3, "l2-dsr connections: {counts:?}");
    let stats = topo.lb(0).stats().unwrap();
    assert_eq!(stats.frontends["dsr"].vip.dropped, 0);
    assert_eq!(stats.frontends["web6"].vip.new_flows, 30);
}

#[test]
fn connections_survive_moving_the_vip_to_a_second_balancer() {
    if !gate() {
        return;
    }
    let mut topo = Topology::new(
        "e2e-move",
        &["b1", "b2", "b3"],
        &["b1", "b2", "b3"],
        2,
        AttachMode::Generic,
    );
    let mut conns = open(&topo, VIP4, 20);
    let mut conns6 = open(&topo, VIP6, 10);
    assert_eq!(topo.lb(1).stats().unwrap().frontends["web4"].vip.packets, 0);
    topo.point_vip_at(1);
    for (s, name) in conns.iter_mut().chain(conns6.iter_mut()) {
        assert_eq!(&ping(s), name, "connection moved to another backend");
    }
    // lb2 never saw the handshakes: it found every flow through Maglev.
    let stats = topo.lb(1).stats().unwrap();
    let web4 = &stats.frontends["web4"];
    assert!(web4.vip.packets >= 20);
    assert_eq!(web4.vip.new_flows, 0);
    assert!(web4.vip.lru_misses >= 20);
    assert_eq!(web4.vip.dropped, 0);
    // And new connections through lb2 work too.
    let fresh = open(&topo, VIP4, 5);
    assert_eq!(fresh.len(), 5);
}

#[test]
fn bulk_upload_learns_the_path_mtu_from_icmp() {
    if !gate() {
        return;
    }
    let mut topo = Topology::new("e2e-mtu", &["b1"], &["b1"], 1, AttachMode::Generic);
    let mut s = topo.connect(VIP4);
    let n = 200_000;
    s.write_all(format!("bulk {n}\n").as_bytes()).unwrap();
    s.write_all(&vec![0x5a; n]).unwrap();
    let mut reply = String::new();
    BufReader::new(&mut s).read_line(&mut reply).unwrap();
    assert_eq!(reply.trim(), format!("got {n}"));
    let stats = topo.lb(0).stats().unwrap();
    assert!(stats.frontends["web4"].vip.icmp_too_big >= 1, "{stats:?}");
}

#[test]
fn native_mode_on_veth_with_xdp_on_the_peer() {
    if !gate() {
        return;
    }
    let mut topo = Topology::new(
        "e2e-native",
        &["b1", "b2"],
        &["b1", "b2"],
        1,
        AttachMode::Native,
    );
    assert_eq!(topo.lb(0).modes().get("eth0"), Some(&XdpState::Native));
    let conns = open(&topo, VIP4, 16);
    let counts = tally(conns.iter().map(|(_, n)| n));
    assert_eq!(counts.len(), 2, "{counts:?}");
    let _ = &topo.lab;
}
