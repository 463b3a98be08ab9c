//! Shared pieces of the VRRP end-to-end tests: a LAN (bridge) with a client
//! and routers, a UDP responder per router that answers with the router's
//! name, probes from the client, and the client's neighbour table.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use testsupport::{Bridge, Lab, MacAddr, Netns, Port};

use crate::common::Node;

/// The port of the responders.
pub const PORT: u16 = 7007;

/// Runs on a thread inside a router's namespace: answers every UDP datagram
/// on PORT with the router's name, from whatever address it holds.
pub struct Responder {
    stop: Arc<AtomicBool>,
}

impl Responder {
    pub fn start(ns: &Netns, name: &str, v6: bool) -> Responder {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let name = name.to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        ns.spawn_thread(move || {
            let bind: SocketAddr = if v6 {
                SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, PORT))
            } else {
                SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, PORT))
            };
            let sock = UdpSocket::bind(bind).expect("responder bind");
            sock.set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            let _ = tx.send(());
            let mut buf = [0u8; 64];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    let mut reply = name.as_bytes().to_vec();
                    reply.push(b' ');
                    reply.extend_from_slice(&buf[..n]);
                    let _ = sock.send_to(&reply, from);
                }
            }
        })
        .expect("responder thread");
        rx.recv_timeout(Duration::from_secs(5))
            .expect("responder started");
        Responder { stop }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One router of the LAN.
pub struct Router {
    pub name: String,
    pub ns: Netns,
    pub port: Port,
    pub addr: IpAddr,
    pub mac: MacAddr,
    _responder: Responder,
}

/// A client and routers on one bridge.
pub struct Lan {
    pub lab: Lab,
    pub sw: Bridge,
    pub client: Netns,
    pub routers: Vec<Router>,
    pub v6: bool,
}

impl Lan {
    /// `n` routers r1..rn (10.0.0.1.. / fd00::1..) and a client (.10 / ::10).
    pub fn new(tag: &str, n: usize, v6: bool) -> Lan {
        let lab = Lab::new(tag).expect("lab");
        let sw = lab.bridge("sw").expect("bridge");
        let client = lab.netns("cl").expect("client ns");
        prepare(&client, v6);
        lab.attach(&client, "eth0", &sw).expect("attach client");
        client.add_addr("eth0", &addr_cidr(10, v6)).expect("addr");
        let mut routers = Vec::new();
        for i in 1..=n {
            let name = format!("r{i}");
            let ns = lab.netns(&name).expect("router ns");
            prepare(&ns, v6);
            let port = lab.attach(&ns, "eth0", &sw).expect("attach router");
            ns.add_addr("eth0", &addr_cidr(i as u8, v6)).expect("addr");
            let mac = ns.mac("eth0").expect("mac");
            let responder = Responder::start(&ns, &name, v6);
            routers.push(Router {
                name,
                ns,
                port,
                addr: host(i as u8, v6),
                mac,
                _responder: responder,
            });
        }
        Lan {
            lab,
            sw,
            client,
            routers,
            v6,
        }
    }

    pub fn router(&self, name: &str) -> &Router {
        self.routers
            .iter()
            .find(|r| r.name == name)
            .expect("router name")
    }

    /// Starts `halb run` on router `name` with `config` (`{socket}` is filled in).
    pub fn start(&self, name: &str, config: &str) -> Node {
        let r = self.router(name);
        Node::start(&r.ns, self.lab.dir(), name, config)
    }

    /// One UDP probe from the client to `vip`: the answering router's name.
    pub fn probe(&self, vip: IpAddr) -> Option<String> {
        self.client
            .run(move || probe_once(vip))
            .expect("probe thread")
    }

    /// Probes until the answer comes from `router`, up to `limit`.
    pub fn wait_answer(&self, vip: IpAddr, router: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut last = None;
        while Instant::now() < deadline {
            last = self.probe(vip);
            if last.as_deref() == Some(router) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "client never reached {vip} through {router} within {limit:?}; last answer {last:?}"
        );
    }

    /// Several probes in a row all answered by `router`.
    pub fn assert_answers(&self, vip: IpAddr, router: &str, times: usize) {
        for i in 0..times {
            let got = self.probe(vip);
            assert_eq!(
                got.as_deref(),
                Some(router),
                "probe {i} to {vip} answered by {got:?}, expected {router}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The MAC the client's neighbour table holds for `ip`.
    pub fn client_mac_for(&self, ip: IpAddr) -> Option<MacAddr> {
        self.client
            .neigh("eth0")
            .expect("neigh")
            .into_iter()
            .find(|n| n.addr == ip)
            .and_then(|n| n.mac)
    }

    /// The client reaches `vip` through `router`: it answers, and the
    /// client's neighbour entry for the VIP is that router's MAC.
    pub fn assert_via(&self, vip: IpAddr, router: &str) {
        self.wait_answer(vip, router, Duration::from_secs(10));
        self.assert_answers(vip, router, 3);
        let want = self.router(router).mac;
        assert_eq!(
            self.client_mac_for(vip),
            Some(want),
            "client's neighbour entry for {vip} is not {router}'s MAC"
        );
    }

    /// Whether router `name` has `vip` on its eth0.
    pub fn holds(&self, name: &str, vip: IpAddr) -> bool {
        self.router(name)
            .ns
            .addrs("eth0")
            .expect("addrs")
            .iter()
            .any(|a| a.addr == vip)
    }
}

fn prepare(ns: &Netns, v6: bool) {
    if v6 {
        // No DAD: link-local addresses are usable at once.
        ns.sysctl("net.ipv6.conf.all.accept_dad", "0")
            .expect("sysctl");
        ns.sysctl("net.ipv6.conf.default.accept_dad", "0")
            .expect("sysctl");
    }
}

pub fn host(i: u8, v6: bool) -> IpAddr {
    if v6 {
        format!("fd00::{i}").parse().expect("ip")
    } else {
        format!("10.0.0.{i}").parse().expect("ip")
    }
}

fn addr_cidr(i: u8, v6: bool) -> String {
    if v6 {
        format!("fd00::{i}/64")
    } else {
        format!("10.0.0.{i}/24")
    }
}

/// The status of the first (or the named) VRRP instance of a node.
pub fn instance(node: &Node, name: &str) -> Value {
    let s = node.status();
    s["vrrp"]["instances"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

/// Waits until instance `name` of `node` is in `state`; returns its status.
pub fn wait_state(node: &Node, name: &str, state: &str, limit: Duration) -> Value {
    let s = node.wait_status(&format!("{name} {state}"), limit, |s| {
        s["vrrp"]["instances"]
            .as_array()
            .is_some_and(|a| a.iter().any(|i| i["name"] == name && i["state"] == state))
    });
    s["vrrp"]["instances"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

/// A `[[vrrp]]` config for a node.
pub fn config(node: &str, instances: &str) -> String {
    format!(
        "[node]\nname = \"{node}\"\nadmin_socket = \"{{socket}}\"\nshutdown_timeout = \"5s\"\n\n{instances}"
    )
}

/// Like [`config`], with the metrics endpoint on 127.0.0.1:9100 (inside
/// the node's namespace).
pub fn config_with_metrics(node: &str, instances: &str) -> String {
    config(node, instances).replace(
        "shutdown_timeout",
        "metrics_listen = \"127.0.0.1:9100\"\nshutdown_timeout",
    )
}

/// One instance: name "front", vrid 51, 50 ms adverts, the given extra lines.
pub fn front(priority: u8, vips: &str, extra: &str) -> String {
    format!(
        "[[vrrp]]\nname = \"front\"\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
         advert_interval = \"50ms\"\nvirtual_ips = [{vips}]\ngarp = {{ repeat = 3, interval = \"10ms\" }}\n{extra}\n"
    )
}

pub const VIP: &str = "10.0.0.100";
pub const VIP6: &str = "fd00::100";

pub fn vip() -> IpAddr {
    VIP.parse().expect("ip")
}

/// One UDP probe to `vip`:`PORT` from the calling thread's namespace: the
/// first word of the answer (the responder's name).
pub fn probe_once(vip: IpAddr) -> Option<String> {
    let bind: SocketAddr = if vip.is_ipv6() {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0))
    };
    let sock = UdpSocket::bind(bind).ok()?;
    sock.set_read_timeout(Some(Duration::from_millis(150)))
        .ok()?;
    sock.send_to(b"probe", (vip, PORT)).ok()?;
    let mut buf = [0u8; 64];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    text.split(' ').next().map(str::to_string)
}
