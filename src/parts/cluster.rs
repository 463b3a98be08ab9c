//! Cluster control as a daemon part: the `[cluster]` section run by
//! `control::cluster::driver`, wired to the VRRP part and the data plane.
//!
//! - The cluster's [`Decisions`] become one VRRP gate per instance
//!   (`vrrp::driver::Gates`): a router is never master while its instance
//!   is not allowed here, and a takeover hint (the previous master's node
//!   is gone or fenced) makes it master at once.
//! - Every VRRP state change comes back through the gate's reporter to
//!   [`ClusterHandle::report_local`]: `holding` turns false only once the
//!   VIPs are removed, which is what lets another node claim them.
//! - `must_release_all` (no quorum under `no_quorum_policy = "stop"`,
//!   standby, leaving) closes every gate and tells the daemon to stop
//!   accepting new connections: it applies the running config without
//!   frontends ([`gate_frontends`]); existing connections finish.
//! - `halb node standby|unstandby|maintenance|unmaintenance|failback` are
//!   cluster commands; SIGTERM is a graceful leave.
//!
//! Without a `[cluster]` section the part is idle and VRRP runs alone.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use control::cluster::coordinator::{Command, FenceState, InstanceSpec, NodeState};
use control::cluster::driver::{ClusterHandle, ClusterStatus, Decisions, Driver, DriverSettings};
use control::config::{ClusterConfig, Config, NoQuorumPolicy};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;
use vrrp::driver::{Control, Gate, Gates, LocalState, Reporter};

use crate::admin::NodeAction;

/// The running cluster driver and the tasks around it.
struct Running {
    handle: ClusterHandle,
    node: String,
    /// The section the driver was started with (reloads do not change it).
    started: ClusterConfig,
    /// The VRRP instance names the driver knows, in its order.
    instances: Vec<String>,
    gates: watch::Receiver<Gates>,
    accepting: watch::Receiver<bool>,
    driver: Mutex<Option<JoinHandle<()>>>,
    bridge: JoinHandle<()>,
}

pub struct ClusterPart {
    running: Option<Running>,
}

fn instance_specs(config: &Config) -> Vec<InstanceSpec> {
    config
        .vrrp
        .iter()
        .map(|v| InstanceSpec {
            name: v.name.clone(),
            priority: v.priority,
        })
        .collect()
}

/// The gates for the VRRP instances from the cluster's decisions.
pub fn gates(d: &Decisions) -> Gates {
    d.instances
        .iter()
        .map(|(name, i)| {
            (
                name.clone(),
                Gate {
                    may_be_master: i.may_be_master && !d.must_release_all,
                    takeover: i.takeover,
                },
            )
        })
        .collect()
}

/// The data-plane config to apply: `config` as is while accepting, without
/// its frontends otherwise (their listeners close; connections finish).
pub fn gate_frontends(mut config: Config, accepting: bool) -> Config {
    if !accepting {
        config.frontends.clear();
    }
    config
}

/// Follows the driver's decisions: gates for VRRP, the accepting flag for
/// the data plane. When the driver stops, every gate closes.
async fn bridge(
    mut decisions: watch::Receiver<Decisions>,
    gates_tx: watch::Sender<Gates>,
    accepting_tx: watch::Sender<bool>,
) {
    loop {
        let d = decisions.borrow_and_update().clone();
        // The driver's initial value (before its first step) decides
        // nothing: the gates stay closed and the accepting flag keeps its
        // start value until the driver has run.
        if d != Decisions::default() {
            let g = gates(&d);
            gates_tx.send_if_modified(|cur| {
                if *cur == g {
                    false
                } else {
                    *cur = g;
                    true
                }
            });
            let accept = !d.must_release_all;
            accepting_tx.send_if_modified(|cur| {
                if *cur == accept {
                    false
                } else {
                    *cur = accept;
                    true
                }
            });
        }
        if decisions.changed().await.is_err() {
            break;
        }
    }
    gates_tx.send_replace(Gates::new());
    accepting_tx.send_replace(false);
}

impl ClusterPart {
    /// Starts the cluster driver for `[cluster]` (none: an idle part). Binds
    /// one UDP socket per link; the key file is checked here. Needs the
    /// metrics recorder installed first.
    pub fn start(config: &Config) -> Result<ClusterPart, String> {
        let Some(cluster) = &config.cluster else {
            return Ok(ClusterPart { running: None });
        };
        let specs = instance_specs(config);
        let instances: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        let settings = DriverSettings::new(cluster.clone(), &config.node.name, specs);
        let (driver, handle) = Driver::new(settings).map_err(|e| format!("cluster: {e}"))?;
        let (gates_tx, gates) = watch::channel(Gates::new());
        // At start no node is quorate yet: under `stop` nothing is accepted
        // until quorum is reached.
        let (accepting_tx, accepting) =
            watch::channel(cluster.no_quorum_policy != NoQuorumPolicy::Stop);
        let bridge = tokio::spawn(bridge(handle.decisions(), gates_tx, accepting_tx));
        let driver = tokio::spawn(driver.run());
        tracing::info!(
            node = %config.node.name,
            nodes = cluster.nodes.len(),
            heartbeat = ?cluster.heartbeat_interval,
            miss_count = cluster.miss_count,
            "cluster control started"
        );
        Ok(ClusterPart {
            running: Some(Running {
                handle,
                node: config.node.name.clone(),
                started: cluster.clone(),
                instances,
                gates,
                accepting,
                driver: Mutex::new(Some(driver)),
                bridge,
            }),
        })
    }

    /// The control the VRRP driver must start with (`None` without a cluster).
    pub fn vrrp_control(&self) -> Option<Control> {
        let r = self.running.as_ref()?;
        let handle = r.handle.clone();
        let report: Reporter = Arc::new(move |s: &LocalState| {
            if let Err(e) = handle.report_local(&s.instance, s.holding, s.priority) {
                tracing::debug!(instance = %s.instance, error = %e, "local VRRP state not reported");
            }
        });
        Some(Control {
            gates: r.gates.clone(),
            report,
        })
    }

    /// Whether the node accepts new connections (always without a cluster).
    pub fn accepting(&self) -> bool {
        self.running.as_ref().is_none_or(|r| *r.accepting.borrow())
    }

    /// Changes of [`ClusterPart::accepting`] (`None` without a cluster).
    pub fn accepting_changes(&self) -> Option<watch::Receiver<bool>> {
        self.running.as_ref().map(|r| r.accepting.clone())
    }

    /// What a reload may not change while the cluster runs: the set of VRRP
    /// instances (the cluster's heartbeats carry them by position).
    pub fn check(&self, new: &Config) -> Result<(), String> {
        let Some(r) = &self.running else {
            return Ok(());
        };
        let names: Vec<String> = new.vrrp.iter().map(|v| v.name.clone()).collect();
        if names != r.instances {
            return Err(format!(
                "the VRRP instances changed ({} -> {}) while [cluster] is running: restart the node to apply",
                r.instances.join(", "),
                names.join(", ")
            ));
        }
        Ok(())
    }

    /// A reload: `[cluster]` itself takes effect on restart.
    pub fn reload(&self, new: &Config) -> Vec<String> {
        match (&self.running, &new.cluster) {
            (None, None) => Vec::new(),
            (None, Some(_)) => vec!["cluster section added: takes effect on restart".into()],
            (Some(_), None) => {
                vec![
                    "cluster section removed: takes effect on restart; the cluster keeps running"
                        .into(),
                ]
            }
            (Some(r), Some(c)) if *c != r.started => {
                vec!["cluster section changed: takes effect on restart".into()]
            }
            (Some(_), Some(_)) => Vec::new(),
        }
    }

    /// `halb node ...`; `None` without a cluster (VRRP handles it then).
    pub fn node(&self, action: NodeAction) -> Option<Result<String, String>> {
        let r = self.running.as_ref()?;
        let (cmd, msg) = match action {
            NodeAction::Standby => (
                Command::Standby,
                "standby: this node gives up its VIPs and new connections and stays away until `halb node unstandby`",
            ),
            NodeAction::Unstandby => (
                Command::Unstandby,
                "unstandby: this node takes part in the cluster's elections again",
            ),
            NodeAction::Maintenance => (
                Command::Maintenance,
                "maintenance: this node keeps what it holds and stops managing (no takeover, no release, no fencing)",
            ),
            NodeAction::Unmaintenance => (
                Command::Unmaintenance,
                "unmaintenance: this node manages its VIPs again",
            ),
            NodeAction::Failback => (
                Command::Failback,
                "failback: every VIP goes back to its preferred node",
            ),
        };
        Some(
            r.handle
                .command(cmd)
                .map(|()| msg.to_string())
                .map_err(|e| format!("cluster: {e}")),
        )
    }

    /// The cluster section of `halb status`, with each instance's VIPs.
    pub async fn status(&self, config: &Config) -> Option<ClusterView> {
        let r = self.running.as_ref()?;
        let accepting = *r.accepting.borrow();
        match r.handle.status().await {
            Ok(status) => Some(ClusterView::new(status, config, accepting)),
            Err(e) => Some(ClusterView {
                node: r.node.clone(),
                error: Some(e.to_string()),
                accepting,
                instances: Vec::new(),
                status: None,
            }),
        }
    }

    /// A graceful leave: every VIP is released, the others are told, then
    /// the driver stops; cut at `deadline`.
    pub async fn shutdown(&self, deadline: tokio::time::Instant) {
        let Some(r) = &self.running else {
            return;
        };
        let Some(mut task) = r.driver.lock().await.take() else {
            return;
        };
        if r.handle.leave().is_ok() {
            tracing::info!("leaving the cluster");
        }
        if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
            tracing::warn!("cluster leave not finished by the deadline; stopping");
            let _ = r.handle.stop();
            let grace = tokio::time::Instant::now() + Duration::from_millis(200);
            if tokio::time::timeout_at(grace, &mut task).await.is_err() {
                task.abort();
            }
        } else {
            tracing::info!("left the cluster");
        }
        r.bridge.abort();
    }
}

/// One VRRP instance in the cluster view: its VIPs and who holds them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterInstanceView {
    pub name: String,
    pub vips: Vec<String>,
    /// The node(s) holding it as far as this node knows (more than one only
    /// for a moment during a handover seen from outside).
    pub owners: Vec<String>,
    /// The node this node's view elects for it.
    pub elected: Option<String>,
    /// This node may be master.
    pub may_be_master: bool,
    /// Nodes whose fencing a takeover waits for.
    pub waiting_for_fence: Vec<String>,
}

/// The cluster section of `halb status` (`--json`: `cluster`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterView {
    pub node: String,
    /// The data plane accepts new connections (false while
    /// `must_release_all`).
    pub accepting: bool,
    /// The driver's status; `None` with `error` when it did not answer.
    pub status: Option<ClusterStatus>,
    pub error: Option<String>,
    pub instances: Vec<ClusterInstanceView>,
}

impl ClusterView {
    fn new(status: ClusterStatus, config: &Config, accepting: bool) -> ClusterView {
        let name_of = |id: control::cluster::NodeId| {
            status
                .core
                .nodes
                .get(id.index())
                .map_or_else(|| id.to_string(), |n| n.name.clone())
        };
        let instances = status
            .core
            .instances
            .iter()
            .map(|i| ClusterInstanceView {
                name: i.name.clone(),
                vips: config
                    .vrrp_instance(&i.name)
                    .map(|v| v.virtual_ips.iter().map(|n| n.to_string()).collect())
                    .unwrap_or_default(),
                owners: i.holders.iter().map(|n| name_of(*n)).collect(),
                elected: i.elected.map(name_of),
                may_be_master: i.may_be_master,
                waiting_for_fence: i.waiting_for_fence.iter().map(|n| name_of(*n)).collect(),
            })
            .collect();
        ClusterView {
            node: status.node.clone(),
            accepting,
            status: Some(status),
            error: None,
            instances,
        }
    }
}

fn node_state(s: NodeState) -> &'static str {
    match s {
        NodeState::Online => "Online",
        NodeState::Standby => "Standby",
        NodeState::Maintenance => "Maintenance",
        NodeState::Offline => "OFFLINE",
        NodeState::Unclean => "UNCLEAN",
        NodeState::Fenced => "Fenced",
        NodeState::Left => "Left",
    }
}

fn rfc3339_ms(unix_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(unix_ms)).to_string()
}

/// The cluster section of `halb status` (text), in the spirit of `pcs status`.
pub fn render(view: &ClusterView, out: &mut String) {
    let _ = writeln!(out, "\nCluster:");
    let Some(s) = &view.status else {
        let _ = writeln!(
            out,
            "  cluster driver not answering: {}",
            view.error.as_deref().unwrap_or("unknown error")
        );
        return;
    };
    let c = &s.core;
    let q = &c.quorum;
    let _ = writeln!(
        out,
        "  * Current node: {} (incarnation {})",
        s.node, c.incarnation.0
    );
    let verdict = if q.quorate {
        "partition WITH quorum"
    } else {
        "partition WITHOUT quorum"
    };
    let mut extra = Vec::new();
    if q.wait_for_all_pending {
        extra.push("wait_for_all: waiting for every node".to_string());
    }
    if let Some(w) = s.witness {
        extra.push(format!(
            "witness {w}: {}",
            if c.witness_vote {
                "vote counted"
            } else {
                "no vote"
            }
        ));
    }
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(" ({})", extra.join("; "))
    };
    let _ = writeln!(
        out,
        "  * Quorum: {verdict}, {} of {} expected votes, {} needed{extra}",
        q.votes, q.expected, q.quorum
    );
    let mut modes = Vec::new();
    if c.standby {
        modes.push("STANDBY");
    }
    if c.maintenance {
        modes.push("MAINTENANCE");
    }
    if c.leaving {
        modes.push("LEAVING");
    }
    if c.failback_requested {
        modes.push("failback requested");
    }
    let _ = writeln!(
        out,
        "  * Policy: no-quorum {}, failback {}{}; new connections: {}",
        c.policy,
        c.failback,
        if modes.is_empty() {
            String::new()
        } else {
            format!("; this node {}", modes.join(", "))
        },
        if view.accepting {
            "accepted"
        } else {
            "REFUSED (VIPs released)"
        }
    );
    let _ = writeln!(out, "\n  Node List:");
    let mut by_state: BTreeMap<&'static str, Vec<&str>> = BTreeMap::new();
    for n in &c.nodes {
        by_state
            .entry(node_state(n.state))
            .or_default()
            .push(n.name.as_str());
    }
    for (state, names) in &by_state {
        let _ = writeln!(out, "    * {state}: [ {} ]", names.join(" "));
    }
    let _ = writeln!(out, "\n  Nodes and links:");
    for n in &c.nodes {
        let me = if n.id == c.me { " (this node)" } else { "" };
        let links: Vec<String> = n
            .links
            .iter()
            .map(|l| {
                let local = s
                    .links
                    .iter()
                    .find(|x| x.link == l.link)
                    .map(|x| format!(" {}", x.local.ip()))
                    .filter(|_| n.id == c.me)
                    .unwrap_or_default();
                let heard = match (n.id == c.me, l.last_heard_ms) {
                    (true, _) => String::new(),
                    (false, Some(ms)) => format!(", heard {ms} ms ago"),
                    (false, None) => ", never heard".to_string(),
                };
                format!(
                    "link {}{local} {}{heard}",
                    l.link.0,
                    if l.up { "up" } else { "DOWN" }
                )
            })
            .collect();
        let fence = match n.fence {
            FenceState::Idle => "",
            FenceState::Running => ", fencing in progress",
            FenceState::Failed => ", last fence FAILED (retrying)",
        };
        let _ = writeln!(
            out,
            "    * {}{me}: {}, {} vote(s){fence}; {}",
            n.name,
            node_state(n.state),
            n.votes,
            links.join("; ")
        );
    }
    if !view.instances.is_empty() {
        let _ = writeln!(out, "\n  VIPs:");
        for i in &view.instances {
            let owner = if i.owners.is_empty() {
                "Stopped".to_string()
            } else {
                format!("Started {}", i.owners.join(" "))
            };
            let mut notes = Vec::new();
            if let Some(e) = &i.elected {
                notes.push(format!("elected {e}"));
            }
            if !i.waiting_for_fence.is_empty() {
                notes.push(format!(
                    "takeover waits for fencing of {}",
                    i.waiting_for_fence.join(", ")
                ));
            }
            let _ = writeln!(
                out,
                "    * {} ({}): {owner}{}",
                i.name,
                i.vips.join(", "),
                if notes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", notes.join("; "))
                }
            );
        }
    }
    if !s.devices.is_empty() {
        let _ = writeln!(out, "\n  Fence devices:");
        for d in &s.devices {
            let state = match (d.ok, d.checked_unix_ms) {
                (Some(true), Some(t)) => format!("Started (monitor ok {})", rfc3339_ms(t)),
                (Some(false), Some(t)) => format!("FAILED (monitor {})", rfc3339_ms(t)),
                _ => "not checked yet".to_string(),
            };
            let _ = writeln!(out, "    * {}: {state}", d.name);
        }
    }
    let _ = writeln!(out, "\n  Fencing History:");
    if s.fencing.is_empty() {
        let _ = writeln!(out, "    * none");
    }
    for f in s.fencing.iter().rev() {
        let by = f.by.as_deref().unwrap_or(&s.node);
        let how = match (&f.device, f.attempts) {
            (Some(d), n) => format!(" with {d} ({n} attempt(s))"),
            (None, 0) => String::new(),
            (None, n) => format!(" ({n} attempt(s))"),
        };
        let _ = writeln!(
            out,
            "    * turning off {} {} by {by}{how} at {}",
            f.node,
            if f.ok { "successful" } else { "FAILED" },
            rfc3339_ms(f.at_unix_ms)
        );
    }
    let k = &s.counters;
    let rejected: Vec<String> = k
        .rx_rejected
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    let _ = writeln!(
        out,
        "\n  Heartbeats: received {}, sent {}, send errors {}, rejected: {}",
        k.rx,
        k.tx,
        k.tx_errors,
        if rejected.is_empty() {
            "none".to_string()
        } else {
            rejected.join(", ")
        }
    );
}

/// The cluster table of the stats page.
pub fn render_html(view: &ClusterView, out: &mut String) {
    use crate::stats_page::esc;
    let Some(s) = &view.status else {
        return;
    };
    let q = &s.core.quorum;
    let _ = write!(
        out,
        "<h2>Cluster</h2><p>quorum: <b>{}</b>, {} of {} votes ({} needed); new connections {}</p>\
         <table><tr><th class=\"l\">node</th><th class=\"l\">state</th><th>votes</th>\
         <th class=\"l\">links</th></tr>",
        if q.quorate { "yes" } else { "NO" },
        q.votes,
        q.expected,
        q.quorum,
        if view.accepting {
            "accepted"
        } else {
            "refused"
        }
    );
    for n in &s.core.nodes {
        let class = match n.state {
            NodeState::Online => "up",
            NodeState::Standby | NodeState::Maintenance => "maint",
            NodeState::Left => "drain",
            _ => "down",
        };
        let links: Vec<String> = n
            .links
            .iter()
            .map(|l| format!("{} {}", l.link.0, if l.up { "up" } else { "down" }))
            .collect();
        let _ = write!(
            out,
            "<tr class=\"{class}\"><td class=\"l\">{}{}</td><td class=\"l\">{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
            esc(&n.name),
            if n.id == s.core.me { " (this node)" } else { "" },
            node_state(n.state),
            n.votes,
            esc(&links.join(", "))
        );
    }
    out.push_str("</table>");
    if !view.instances.is_empty() {
        out.push_str(
            "<table><tr><th class=\"l\">instance</th><th class=\"l\">VIPs</th><th class=\"l\">owner</th></tr>",
        );
        for i in &view.instances {
            let _ = write!(
                out,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td></tr>",
                esc(&i.name),
                esc(&i.vips.join(", ")),
                esc(&i.owners.join(", "))
            );
        }
        out.push_str("</table>");
    }
}

#[cfg(test)]
mod tests {
    use control::cluster::coordinator::{CoreStatus, InstanceStatus, LinkStatus, NodeStatus};
    use control::cluster::driver::{
        Counters, DeviceStatus, FenceEntry, InstanceDecision, LinkSocket,
    };
    use control::cluster::quorum::QuorumState;
    use control::cluster::{Incarnation, LinkId, NodeId};

    use super::*;

    const SAMPLE: &str = r#"
[node]
name = "lb1"

[[vrrp]]
name = "front"
interface = "eth0"
vrid = 51
priority = 150
virtual_ips = ["10.0.0.100/24"]

[[frontend]]
name = "web"
bind = "10.0.0.100:80"
mode = "http"
backend = "web"

[[backend]]
name = "web"
servers = [ { name = "a", address = "10.0.1.10:8080" } ]
"#;

    #[test]
    fn gates_follow_the_decisions_and_release_all_closes_them() {
        let mut d = Decisions {
            quorate: true,
            must_release_all: false,
            instances: BTreeMap::from([
                (
                    "front".to_owned(),
                    InstanceDecision {
                        may_be_master: true,
                        takeover: 2,
                    },
                ),
                ("back".to_owned(), InstanceDecision::default()),
            ]),
        };
        let g = gates(&d);
        assert_eq!(
            g["front"],
            Gate {
                may_be_master: true,
                takeover: 2
            }
        );
        assert!(!g["back"].may_be_master);
        d.must_release_all = true;
        assert!(!gates(&d)["front"].may_be_master);
        assert_eq!(gates(&d)["front"].takeover, 2);
    }

    #[test]
    fn not_accepting_drops_only_the_frontends() {
        let cfg = control::config::parse(SAMPLE, "t.toml").expect("valid sample");
        let open = gate_frontends(cfg.clone(), true);
        assert_eq!(open, cfg);
        let closed = gate_frontends(cfg.clone(), false);
        assert!(closed.frontends.is_empty());
        assert_eq!(closed.backends, cfg.backends);
        assert_eq!(closed.vrrp, cfg.vrrp);
    }

    fn node(id: u16, name: &str, state: NodeState, up: bool) -> NodeStatus {
        NodeStatus {
            id: NodeId(id),
            name: name.into(),
            state,
            votes: 1,
            incarnation: Some(Incarnation(7)),
            fence: FenceState::Idle,
            links: vec![
                LinkStatus {
                    link: LinkId(0),
                    up,
                    last_heard_ms: Some(12),
                },
                LinkStatus {
                    link: LinkId(1),
                    up,
                    last_heard_ms: None,
                },
            ],
        }
    }

    #[tokio::test]
    async fn status_text_reads_like_pcs_status() {
        let cfg = control::config::parse(SAMPLE, "t.toml").expect("valid sample");
        let status = ClusterStatus {
            node: "lb1".into(),
            core: CoreStatus {
                me: NodeId(0),
                incarnation: Incarnation(7),
                quorum: QuorumState {
                    votes: 2,
                    expected: 3,
                    quorum: 2,
                    quorate: true,
                    may_fence: true,
                    wait_for_all_pending: false,
                },
                policy: "stop".into(),
                failback: "manual".into(),
                standby: false,
                maintenance: false,
                leaving: false,
                failback_requested: false,
                witness_vote: false,
                must_release_all: false,
                nodes: vec![
                    node(0, "lb1", NodeState::Online, true),
                    node(1, "lb2", NodeState::Standby, true),
                    node(2, "lb3", NodeState::Fenced, false),
                ],
                instances: vec![InstanceStatus {
                    name: "front".into(),
                    priority: 150,
                    may_be_master: true,
                    holding: true,
                    elected: Some(NodeId(0)),
                    holders: vec![NodeId(0)],
                    waiting_for_fence: vec![],
                    takeovers: 1,
                }],
            },
            links: vec![LinkSocket {
                link: LinkId(0),
                local: "10.1.0.1:5405".parse().expect("addr"),
            }],
            witness: None,
            fencing: vec![FenceEntry {
                node: "lb3".into(),
                ok: true,
                at_unix_ms: 1_700_000_000_000,
                by: None,
                device: Some("dummy".into()),
                attempts: 1,
            }],
            devices: vec![DeviceStatus {
                name: "dummy".into(),
                ok: Some(true),
                checked_unix_ms: Some(1_700_000_000_000),
            }],
            counters: Counters {
                rx: 10,
                rx_rejected: BTreeMap::from([("bad_mac".to_owned(), 3), ("replay".to_owned(), 0)]),
                tx: 20,
                tx_errors: 0,
            },
        };
        let view = ClusterView::new(status, &cfg, true);
        assert_eq!(view.instances[0].owners, vec!["lb1".to_string()]);
        assert_eq!(view.instances[0].vips, vec!["10.0.0.100/24".to_string()]);
        let mut out = String::new();
        render(&view, &mut out);
        for want in [
            "Quorum: partition WITH quorum, 2 of 3 expected votes, 2 needed",
            "* Online: [ lb1 ]",
            "* Standby: [ lb2 ]",
            "* Fenced: [ lb3 ]",
            "lb1 (this node): Online, 1 vote(s); link 0 10.1.0.1 up",
            "lb2: Standby, 1 vote(s); link 0 up, heard 12 ms ago; link 1 up, never heard",
            "lb3: Fenced, 1 vote(s); link 0 DOWN",
            "front (10.0.0.100/24): Started lb1 (elected lb1)",
            "dummy: Started (monitor ok 2023-11-14T22:13:20.000Z)",
            "turning off lb3 successful by lb1 with dummy (1 attempt(s))",
            "rejected: bad_mac 3\n",
            "failback manual",
        ] {
            assert!(out.contains(want), "missing {want:?} in:\n{out}");
        }
        let mut html = String::new();
        render_html(&view, &mut html);
        assert!(
            html.contains("<td class=\"l\">lb1 (this node)</td>"),
            "{html}"
        );
        let json = serde_json::to_value(&view).expect("json");
        assert_eq!(json["status"]["core"]["quorum"]["quorate"], true);
        assert_eq!(json["instances"][0]["owners"][0], "lb1");
    }

    #[tokio::test]
    async fn idle_without_a_cluster_section() {
        let cfg = control::config::parse(SAMPLE, "t.toml").expect("valid sample");
        let part = ClusterPart::start(&cfg).expect("idle part");
        assert!(part.vrrp_control().is_none());
        assert!(part.accepting());
        assert!(part.node(NodeAction::Standby).is_none());
        assert!(part.status(&cfg).await.is_none());
        assert!(part.check(&cfg).is_ok());
        assert!(part.reload(&cfg).is_empty());
    }
}
