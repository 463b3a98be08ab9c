//! Shared pieces of the cluster end-to-end tests: halb nodes in namespaces
//! with a client LAN (VRRP and client traffic), one or two cluster rings
//! (the heartbeat links), optionally a witness network, per-node fence_dummy
//! devices, and the client's view of who answers ARP for the VIP.
#![allow(dead_code)]

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use testsupport::{Bridge, Lab, MacAddr, Netns, NsChild, Packet, Port};

use crate::common::{Node, HALB};
use crate::vrrp_common::{probe_once, Responder};

pub const VIP: &str = "10.0.0.100";
/// The UDP port of the heartbeats.
pub const CLUSTER_PORT: u16 = 5405;
/// The witness's address on the witness network.
pub const WITNESS: &str = "10.3.0.9";

pub fn vip() -> IpAddr {
    VIP.parse().expect("ip")
}

/// One halb machine: a namespace with eth0 on the LAN, eth1.. on the rings
/// and (with a witness) eth9 on the witness network.
pub struct Member {
    pub name: String,
    pub ns: Netns,
    pub lan: Port,
    pub rings: Vec<Port>,
    pub wnet: Option<Port>,
    pub lan_addr: IpAddr,
    pub mac: MacAddr,
    _responder: Responder,
}

/// Settings of a test cluster's config.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Priority of node i (1-based) is `priorities[i - 1]`.
    pub priorities: Vec<u8>,
    pub heartbeat: &'static str,
    pub miss_count: u8,
    pub failback: &'static str,
    /// The `quorum = {...}` value, empty for the default.
    pub quorum: String,
    /// One fence_dummy device per node.
    pub fencing: bool,
    /// VRRP advert interval.
    pub advert: &'static str,
    /// Extra text after the `[node]` keys (e.g. frontends and backends).
    pub extra: String,
}

impl Default for Opts {
    fn default() -> Opts {
        Opts {
            priorities: vec![150, 100, 50],
            heartbeat: "30ms",
            miss_count: 3,
            failback: "manual",
            quorum: String::new(),
            fencing: true,
            advert: "50ms",
            extra: String::new(),
        }
    }
}

/// A client and halb machines n1..nN.
pub struct ClusterLab {
    pub lab: Lab,
    pub lan: Bridge,
    pub rings: Vec<Bridge>,
    pub wnet: Option<Bridge>,
    pub client: Netns,
    pub members: Vec<Member>,
    pub witness_ns: Option<Netns>,
    pub key: PathBuf,
}

fn write_key(path: &std::path::Path) {
    let key: Vec<u8> = (0u8..48)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    std::fs::write(path, key).expect("write key");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
}

impl ClusterLab {
    /// `n` machines with `links` rings; a witness network when `witness`.
    pub fn new(tag: &str, n: usize, links: usize, witness: bool) -> ClusterLab {
        let lab = Lab::new(tag).expect("lab");
        let lan = lab.bridge("lan").expect("bridge");
        let rings: Vec<Bridge> = (0..links)
            .map(|l| lab.bridge(&format!("ring{l}")).expect("ring bridge"))
            .collect();
        let wnet = witness.then(|| lab.bridge("wnet").expect("witness bridge"));
        let client = lab.netns("cl").expect("client ns");
        lab.attach(&client, "eth0", &lan).expect("attach client");
        client.add_addr("eth0", "10.0.0.10/24").expect("addr");
        let mut members = Vec::new();
        for i in 1..=n {
            let name = format!("n{i}");
            let ns = lab.netns(&name).expect("node ns");
            let lan_port = lab.attach(&ns, "eth0", &lan).expect("attach lan");
            ns.add_addr("eth0", &format!("10.0.0.{i}/24"))
                .expect("addr");
            let mut ring_ports = Vec::new();
            for (l, ring) in rings.iter().enumerate() {
                let ifname = format!("eth{}", l + 1);
                ring_ports.push(lab.attach(&ns, &ifname, ring).expect("attach ring"));
                ns.add_addr(&ifname, &format!("10.{}.0.{i}/24", l + 1))
                    .expect("ring addr");
            }
            let wnet_port = wnet.as_ref().map(|w| {
                let p = lab.attach(&ns, "eth9", w).expect("attach wnet");
                ns.add_addr("eth9", &format!("10.3.0.{i}/24"))
                    .expect("wnet addr");
                p
            });
            let mac = ns.mac("eth0").expect("mac");
            let responder = Responder::start(&ns, &name, false);
            members.push(Member {
                name,
                ns,
                lan: lan_port,
                rings: ring_ports,
                wnet: wnet_port,
                lan_addr: format!("10.0.0.{i}").parse().expect("ip"),
                mac,
                _responder: responder,
            });
        }
        let witness_ns = wnet.as_ref().map(|w| {
            let ns = lab.netns("wit").expect("witness ns");
            lab.attach(&ns, "eth0", w).expect("attach witness");
            ns.add_addr("eth0", &format!("{WITNESS}/24"))
                .expect("witness addr");
            // Heartbeats come from the nodes' ring addresses: answer them
            // through each node's witness-network address.
            for i in 1..=n {
                for l in 1..=links {
                    ns.add_route(&format!("10.{l}.0.{i}/32"), &format!("10.3.0.{i}"))
                        .expect("witness route");
                }
            }
            ns
        });
        let key = lab.dir().join("cluster.key");
        write_key(&key);
        let c = ClusterLab {
            lab,
            lan,
            rings,
            wnet,
            client,
            members,
            witness_ns,
            key,
        };
        for m in &c.members {
            c.power_on(&m.name);
        }
        c
    }

    pub fn member(&self, name: &str) -> &Member {
        self.members
            .iter()
            .find(|m| m.name == name)
            .expect("member name")
    }

    /// The fence_dummy status file of node `name`.
    pub fn power_file(&self, name: &str) -> PathBuf {
        self.lab.dir().join(format!("{name}.power"))
    }

    pub fn power_on(&self, name: &str) {
        std::fs::write(self.power_file(name), "on").expect("power file");
    }

    /// What fence_dummy recorded for `name` ("on" or "off").
    pub fn power(&self, name: &str) -> String {
        std::fs::read_to_string(self.power_file(name))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// The whole config of node `name`.
    pub fn config(&self, name: &str, o: &Opts) -> String {
        let n = self.members.len();
        let links = self.rings.len();
        let idx: usize = name
            .trim_start_matches('n')
            .parse()
            .expect("node name n<i>");
        let nodes: Vec<String> = (1..=n)
            .map(|i| {
                let addrs: Vec<String> = (1..=links).map(|l| format!("\"10.{l}.0.{i}\"")).collect();
                format!("{{ name = \"n{i}\", addresses = [{}] }}", addrs.join(", "))
            })
            .collect();
        let mut text = format!(
            "[node]\nname = \"{name}\"\nadmin_socket = \"{{socket}}\"\nshutdown_timeout = \"5s\"\n\
             metrics_listen = \"127.0.0.1:9100\"\n\n{extra}\n\n\
             [[vrrp]]\nname = \"front\"\ninterface = \"eth0\"\nvrid = 51\npriority = {prio}\n\
             advert_interval = \"{adv}\"\nvirtual_ips = [\"{VIP}/24\"]\n\
             garp = {{ repeat = 3, interval = \"10ms\" }}\n\n\
             [cluster]\nnodes = [{nodes}]\nport = {CLUSTER_PORT}\nauth_key_file = \"{key}\"\n\
             heartbeat_interval = \"{hb}\"\nmiss_count = {miss}\nfailback = \"{fb}\"\n",
            extra = o.extra,
            prio = o.priorities[idx - 1],
            adv = o.advert,
            nodes = nodes.join(", "),
            key = self.key.display(),
            hb = o.heartbeat,
            miss = o.miss_count,
            fb = o.failback,
        );
        if !o.quorum.is_empty() {
            text.push_str(&format!("quorum = {}\n", o.quorum));
        }
        if self.wnet.is_some() {
            text.push_str(&format!("witness = \"{WITNESS}:{CLUSTER_PORT}\"\n"));
        }
        if o.fencing {
            for i in 1..=n {
                text.push_str(&format!(
                    "\n[[cluster.fence_device]]\nname = \"power-n{i}\"\nagent = \"/usr/sbin/fence_dummy\"\n\
                     nodes = [\"n{i}\"]\ntimeout = \"20s\"\nmonitor_interval = \"10s\"\n\
                     options = {{ status_file = \"{}\", type = \"file\" }}\n",
                    self.power_file(&format!("n{i}")).display()
                ));
            }
        }
        text
    }

    /// Starts `halb run` on node `name`.
    pub fn start(&self, name: &str, o: &Opts) -> Node {
        let m = self.member(name);
        Node::start(&m.ns, self.lab.dir(), name, &self.config(name, o))
    }

    /// Starts `halb witness` in the witness namespace with node n1's config.
    pub fn start_witness(&self, o: &Opts) -> NsChild {
        let ns = self.witness_ns.as_ref().expect("lab with a witness");
        let path = self.lab.dir().join("witness.toml");
        std::fs::write(
            &path,
            self.config("n1", o).replace("{socket}", "/nonexistent"),
        )
        .expect("witness config");
        let child = ns
            .command(HALB)
            .args(["witness", "-c"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .spawn()
            .expect("spawn witness");
        child
            .wait_for_output("witness", Duration::from_secs(10))
            .expect("witness started");
        child
    }

    /// Cuts every ring port of `name` (its heartbeat links); the LAN stays.
    pub fn cut_rings(&self, name: &str) {
        for p in &self.member(name).rings {
            self.lab.cut(p).expect("cut ring");
        }
    }

    pub fn heal_rings(&self, name: &str) {
        for p in &self.member(name).rings {
            self.lab.heal(p).expect("heal ring");
        }
    }

    /// One UDP probe from the client to the VIP: the answering node's name.
    pub fn probe(&self) -> Option<String> {
        let vip = vip();
        self.client
            .run(move || probe_once(vip))
            .expect("probe thread")
    }

    /// Probes until node `name` answers, up to `limit`.
    pub fn wait_answer(&self, name: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut last = None;
        while Instant::now() < deadline {
            last = self.probe();
            if last.as_deref() == Some(name) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the VIP never answered from {name} within {limit:?}; last answer {last:?}");
    }

    /// Whether node `name` has the VIP on its eth0.
    pub fn holds(&self, name: &str) -> bool {
        self.member(name)
            .ns
            .addrs("eth0")
            .expect("addrs")
            .iter()
            .any(|a| a.addr == vip())
    }

    /// The node whose MAC this is.
    pub fn owner_of(&self, mac: MacAddr) -> Option<&str> {
        self.members
            .iter()
            .find(|m| m.mac == mac)
            .map(|m| m.name.as_str())
    }
}

/// Who claimed the VIP on the wire: ARP replies and gratuitous ARPs whose
/// sender address is the VIP, as (capture time, sender MAC), in order.
pub fn vip_claims(packets: &[Packet]) -> Vec<(Duration, MacAddr)> {
    let vip = match vip() {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(_) => return Vec::new(),
    };
    let mut out = Vec::new();
    for p in packets {
        let Some((ethertype, arp)) = p.l3() else {
            continue;
        };
        if ethertype != testsupport::pcap::ETHERTYPE_ARP || arp.len() < 28 {
            continue;
        }
        let op = u16::from_be_bytes([arp[6], arp[7]]);
        let sha: [u8; 6] = arp[8..14].try_into().expect("6 bytes");
        let spa = &arp[14..18];
        let tpa = &arp[24..28];
        let reply = op == 2 && spa == vip;
        let garp = op == 1 && spa == vip && tpa == vip;
        if reply || garp {
            out.push((p.timestamp, MacAddr(sha)));
        }
    }
    out
}

/// Checks that the VIP's owner on the wire changed at most as `expected`
/// (a list of node names in order) and never went back: two machines never
/// answered for the VIP in interleaved fashion.
pub fn assert_claims_in_order(lab: &ClusterLab, claims: &[(Duration, MacAddr)], expected: &[&str]) {
    let mut seq: Vec<&str> = Vec::new();
    for (t, mac) in claims {
        let who = lab.owner_of(*mac).unwrap_or("unknown");
        if seq.last() != Some(&who) {
            seq.push(who);
            eprintln!("VIP claimed by {who} at {t:?}");
        }
    }
    assert_eq!(
        seq, expected,
        "the VIP's owner on the wire changed as {seq:?}, expected {expected:?}"
    );
}

/// `status.cluster` of a node.
pub fn cluster(node: &Node) -> Value {
    node.status()["cluster"].clone()
}

/// Waits until `pred(status.cluster.status)` holds.
pub fn wait_cluster(
    node: &Node,
    what: &str,
    limit: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let s = node.wait_status(what, limit, |s| pred(&s["cluster"]["status"]));
    s["cluster"]["status"].clone()
}

/// The state ("online", "fenced", ...) of node `name` in `cluster`.
pub fn node_state(cluster: &Value, name: &str) -> String {
    cluster["core"]["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["name"] == name))
        .and_then(|n| n["state"].as_str())
        .unwrap_or("")
        .to_string()
}

pub fn quorate(cluster: &Value) -> bool {
    cluster["core"]["quorum"]["quorate"] == true
}

/// The VRRP state of instance "front" of a node.
pub fn vrrp_state(node: &Node) -> String {
    node.status()["vrrp"]["instances"][0]["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Waits until instance "front" of `node` is in `state`; returns it.
pub fn wait_vrrp(node: &Node, state: &str, limit: Duration) -> Value {
    let s = node.wait_status(&format!("front {state}"), limit, |s| {
        s["vrrp"]["instances"][0]["state"] == state
    });
    s["vrrp"]["instances"][0].clone()
}

/// Runs `arping` from the client at the VIP every 20 ms for `secs`
/// seconds, so that every machine that thinks it holds the VIP answers.
pub fn arping(lab: &ClusterLab, count: u32) -> NsChild {
    lab.client
        .command("arping")
        .args(["-i", "eth0", "-W", "0.02", "-c", &count.to_string(), VIP])
        .spawn()
        .expect("spawn arping")
}

/// The Prometheus text of a node (its metrics listener is 127.0.0.1:9100
/// inside its namespace).
pub fn metrics(node: &Node) -> String {
    crate::common::http_get(
        &node.ns,
        "127.0.0.1:9100".parse().expect("addr"),
        "/metrics",
    )
    .expect("GET /metrics")
}
