//! VRRP as a daemon part: the `[[vrrp]]` instances of the config run by
//! `vrrp::driver`, reloaded as a diff, `node standby|unstandby`, and a
//! status section for `halb status` and the stats page.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use control::config::{Config, V3Checksum, VrrpConfig, VrrpVersion};
use serde::{Deserialize, Serialize};
use vrrp::driver::{
    Control, Driver, FileTrack, GarpSpec, InstanceSpec, InstanceStatus, ScriptTrack,
};
use vrrp::io::{NotifyPrograms, Vip};
use vrrp::track::TrackInterface;
use vrrp::wire::{V2Auth, V3Ipv4Checksum, Version};
use vrrp::{Centisecs, Priority, VrId};

use crate::admin::NodeAction;

/// How often a track file is read (the config has no setting for it).
const TRACK_FILE_INTERVAL: Duration = Duration::from_millis(500);

/// The typed config of one instance as the driver takes it.
pub fn spec(c: &VrrpConfig) -> Result<InstanceSpec, String> {
    let err = |m: String| format!("vrrp {}: {m}", c.name);
    let advert_interval = Centisecs::try_from(c.advert_interval).map_err(|e| err(e.to_string()))?;
    let vips = c
        .virtual_ips
        .iter()
        .map(|n| Vip::new(n.addr(), n.prefix_len()).map_err(|e| err(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let notify = NotifyPrograms {
        notify: c
            .notify
            .iter()
            .map(|p| vec![p.display().to_string()])
            .collect(),
        ..NotifyPrograms::default()
    };
    Ok(InstanceSpec {
        name: c.name.clone(),
        interface: c.interface.clone(),
        vrid: VrId(c.vrid),
        version: match c.version {
            VrrpVersion::V2 => Version::V2,
            VrrpVersion::V3 => Version::V3,
        },
        priority: Priority(c.priority),
        advert_interval,
        preempt: c.preempt,
        preempt_delay: c.preempt_delay,
        accept_mode: c.accept_mode,
        vips,
        unicast_peers: c.unicast_peers.clone(),
        unicast_source: c.unicast_source,
        garp: GarpSpec {
            repeat: u32::from(c.garp.repeat),
            interval: c.garp.interval,
            refresh: c.garp.refresh,
        },
        track_interfaces: c
            .track_interfaces
            .iter()
            .map(|t| TrackInterface {
                name: t.name.clone(),
                weight: i32::from(t.weight),
            })
            .collect(),
        track_scripts: c
            .track_scripts
            .iter()
            .map(|t| ScriptTrack {
                name: t.command.join(" "),
                argv: t.command.clone(),
                interval: t.interval,
                timeout: t.timeout,
                weight: i32::from(t.weight),
                rise: t.rise,
                fall: t.fall,
            })
            .collect(),
        track_files: c
            .track_files
            .iter()
            .map(|t| FileTrack {
                name: t.path.display().to_string(),
                path: t.path.clone(),
                interval: TRACK_FILE_INTERVAL,
                weight: i32::from(t.weight),
            })
            .collect(),
        notify,
        notify_timeout: c.notify_timeout,
        use_vmac: c.use_vmac,
        v3_checksum: match c.v3_checksum {
            V3Checksum::PseudoHeader => V3Ipv4Checksum::PseudoHeader,
            V3Checksum::Rfc => V3Ipv4Checksum::MessageOnly,
        },
        v2_auth: c
            .auth_pass
            .as_ref()
            .map_or(V2Auth::NONE, |p| V2Auth::simple_text(p.as_bytes())),
        sync_group: c.sync_group.clone(),
    })
}

fn specs(config: &Config) -> Result<Vec<InstanceSpec>, String> {
    config.vrrp.iter().map(spec).collect()
}

pub struct VrrpPart {
    driver: tokio::sync::Mutex<Driver>,
}

impl VrrpPart {
    /// Starts every `[[vrrp]]` instance (none: an idle part), under cluster
    /// control when `control` is given. Needs the metrics recorder
    /// installed first.
    ///
    /// `masters`: instances the process this one replaces was master of
    /// (`halb run --upgrade`); they continue as master at once.
    pub async fn start(
        config: &Config,
        control: Option<Control>,
        masters: &BTreeSet<String>,
    ) -> Result<VrrpPart, String> {
        let specs = specs(config)?;
        let driver = Driver::start_adopting(specs, false, control, masters)
            .await
            .map_err(|e| e.to_string())?;
        Ok(VrrpPart {
            driver: tokio::sync::Mutex::new(driver),
        })
    }

    /// Everything a reload could reject, checked before any part changes.
    pub fn check(config: &Config) -> Result<(), String> {
        vrrp::driver::check(&specs(config)?).map_err(|e| e.to_string())
    }

    /// Applies a checked config as a diff; returns what changed.
    pub async fn reload(&self, config: &Config) -> Result<Vec<String>, String> {
        let specs = specs(config)?;
        self.driver
            .lock()
            .await
            .reload(specs)
            .await
            .map_err(|e| e.to_string())
    }

    pub async fn status(&self) -> VrrpStatus {
        let d = self.driver.lock().await;
        VrrpStatus {
            standby: d.is_standby(),
            instances: d.status().iter().map(InstanceView::from).collect(),
        }
    }

    /// `node standby` / `node unstandby`; `None` for actions that are not VRRP's.
    pub async fn node(&self, action: NodeAction) -> Option<String> {
        let on = match action {
            NodeAction::Standby => true,
            NodeAction::Unstandby => false,
            _ => return None,
        };
        let mut d = self.driver.lock().await;
        let n = d.status().len();
        if n == 0 {
            return None;
        }
        d.set_standby(on);
        Some(if on {
            format!("standby: {n} VRRP instance(s) give up their VIPs and stay backup")
        } else {
            format!("unstandby: {n} VRRP instance(s) take part in the election again")
        })
    }

    /// The instances that are master now (handed to a new process by
    /// `halb run --upgrade`).
    pub async fn masters(&self) -> Vec<String> {
        self.driver
            .lock()
            .await
            .status()
            .iter()
            .filter(|i| i.state == vrrp::router::StateKind::Master)
            .map(|i| i.name.clone())
            .collect()
    }

    /// After `halb run --upgrade`: stop without resigning, leaving the VIPs
    /// to the new process, which continues as master.
    pub async fn detach(&self, deadline: tokio::time::Instant) {
        self.driver.lock().await.detach(deadline).await;
        tracing::info!("vrrp handed over to the new process");
    }

    /// Masters resign (priority 0) and release their VIPs, by `deadline`.
    pub async fn shutdown(&self, deadline: tokio::time::Instant) {
        self.driver.lock().await.shutdown(deadline).await;
        tracing::info!("vrrp stopped");
    }
}

/// The VRRP section of `halb status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VrrpStatus {
    /// `node standby` is in effect.
    pub standby: bool,
    pub instances: Vec<InstanceView>,
}

/// One instance in `halb status --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceView {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub version: u8,
    pub family: String,
    /// `initialize`, `backup`, `master` or `fault`.
    pub state: String,
    pub base_priority: u8,
    pub effective_priority: u8,
    pub primary_address: Option<IpAddr>,
    pub master: Option<IpAddr>,
    pub master_priority: Option<u8>,
    pub last_transition: Option<TransitionView>,
    pub vips: Vec<String>,
    pub vips_held: bool,
    pub fault: bool,
    pub standby: bool,
    /// Cluster control does not allow this node to be master now.
    #[serde(default)]
    pub gated: bool,
    pub waiting: Option<String>,
    pub sync_group: Option<String>,
    pub unicast_peers: Vec<IpAddr>,
    pub counters: CountersView,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransitionView {
    /// RFC 3339.
    pub at: String,
    pub from: String,
    pub to: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CountersView {
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub priority_zero_sent: u64,
    pub priority_zero_received: u64,
    pub address_list_mismatch: u64,
    pub became_master: u64,
    pub released_master: u64,
    pub rx_dropped: u64,
    pub send_errors: u64,
    pub gratuitous_bursts: u64,
    pub vip_errors: u64,
    pub transitions: u64,
}

impl From<&InstanceStatus> for InstanceView {
    fn from(s: &InstanceStatus) -> Self {
        let c = &s.counters;
        InstanceView {
            name: s.name.clone(),
            interface: s.interface.clone(),
            vrid: s.vrid,
            version: s.version,
            family: s.family.to_string(),
            state: s.state.as_str().to_string(),
            base_priority: s.base_priority,
            effective_priority: s.effective_priority,
            primary_address: s.primary_address,
            master: s.master,
            master_priority: s.master_priority,
            last_transition: s.last_transition.as_ref().map(|t| TransitionView {
                at: humantime::format_rfc3339_millis(t.at).to_string(),
                from: t.from.as_str().to_string(),
                to: t.to.as_str().to_string(),
                reason: t.reason.clone(),
            }),
            vips: s.vips.clone(),
            vips_held: s.vips_held,
            fault: s.fault,
            standby: s.standby,
            gated: s.gated,
            waiting: s.waiting.clone(),
            sync_group: s.sync_group.clone(),
            unicast_peers: s.unicast_peers.clone(),
            counters: CountersView {
                adverts_sent: c.router.adverts_sent,
                adverts_received: c.router.adverts_received,
                priority_zero_sent: c.router.priority_zero_sent,
                priority_zero_received: c.router.priority_zero_received,
                address_list_mismatch: c.router.address_list_mismatch,
                became_master: c.router.became_master,
                released_master: c.router.released_master,
                rx_dropped: c.rx_dropped,
                send_errors: c.send_errors,
                gratuitous_bursts: c.gratuitous_bursts,
                vip_errors: c.vip_errors,
                transitions: c.transitions,
            },
        }
    }
}

/// The VRRP section of `halb status` (text).
pub fn render(status: &VrrpStatus, out: &mut String) {
    if status.instances.is_empty() {
        return;
    }
    let standby = if status.standby {
        " (node in STANDBY)"
    } else {
        ""
    };
    let _ = writeln!(out, "\nVRRP instances:{standby}");
    for i in &status.instances {
        let master = match (i.master, i.state.as_str()) {
            (Some(m), "master") => format!("{m} (this node)"),
            (Some(m), _) => format!(
                "{m} (priority {})",
                i.master_priority.map_or("?".into(), |p| p.to_string())
            ),
            (None, _) => "unknown".to_string(),
        };
        let mode = if i.unicast_peers.is_empty() {
            "multicast".to_string()
        } else {
            format!(
                "unicast to {}",
                i.unicast_peers
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let _ = writeln!(
            out,
            "  {:<12} {:<7} priority {}/{}  {} vrid {} v{} {} {}",
            i.name,
            i.state.to_uppercase(),
            i.effective_priority,
            i.base_priority,
            i.interface,
            i.vrid,
            i.version,
            i.family,
            mode
        );
        let _ = writeln!(out, "      master: {master}");
        let held = if i.vips_held { "held here" } else { "not held" };
        let _ = writeln!(out, "      VIPs: {} ({held})", i.vips.join(", "));
        match &i.last_transition {
            Some(t) => {
                let _ = writeln!(
                    out,
                    "      last transition: {} {} -> {} ({})",
                    t.at, t.from, t.to, t.reason
                );
            }
            None => {
                let _ = writeln!(out, "      last transition: none");
            }
        }
        let mut flags = Vec::new();
        if i.fault {
            flags.push("FAULT".to_string());
        }
        if i.standby {
            flags.push("standby".to_string());
        }
        if i.gated {
            flags.push("held back by cluster control".to_string());
        }
        if let Some(w) = &i.waiting {
            flags.push(format!("waiting: {w}"));
        }
        if let Some(g) = &i.sync_group {
            flags.push(format!("sync group {g}"));
        }
        if !flags.is_empty() {
            let _ = writeln!(out, "      {}", flags.join("; "));
        }
        let c = &i.counters;
        let _ = writeln!(
            out,
            "      adverts sent {} received {} dropped {}, transitions {}, gratuitous bursts {}",
            c.adverts_sent, c.adverts_received, c.rx_dropped, c.transitions, c.gratuitous_bursts
        );
    }
}

/// The VRRP table of the stats page.
pub fn render_html(status: &VrrpStatus, out: &mut String) {
    use crate::stats_page::esc;
    if status.instances.is_empty() {
        return;
    }
    out.push_str(
        "<h2>VRRP</h2><table><tr><th class=\"l\">instance</th><th class=\"l\">state</th>\
         <th>priority</th><th class=\"l\">interface</th><th>vrid</th><th class=\"l\">master</th>\
         <th class=\"l\">VIPs</th><th class=\"l\">last transition</th><th>adverts out/in</th>\
         <th>dropped</th></tr>",
    );
    for i in &status.instances {
        let class = match i.state.as_str() {
            "master" => "up",
            "fault" => "down",
            _ if i.standby => "maint",
            _ => "drain",
        };
        let last = i
            .last_transition
            .as_ref()
            .map(|t| {
                format!(
                    "{} {} &rarr; {} ({})",
                    esc(&t.at),
                    esc(&t.from),
                    esc(&t.to),
                    esc(&t.reason)
                )
            })
            .unwrap_or_default();
        let _ = write!(
            out,
            "<tr class=\"{class}\"><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}/{}</td>\
             <td class=\"l\">{}</td><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td>\
             <td class=\"l\">{last}</td><td>{}/{}</td><td>{}</td></tr>",
            esc(&i.name),
            esc(&i.state),
            i.effective_priority,
            i.base_priority,
            esc(&i.interface),
            i.vrid,
            i.master.map(|m| m.to_string()).unwrap_or_default(),
            esc(&i.vips.join(", ")),
            i.counters.adverts_sent,
            i.counters.adverts_received,
            i.counters.rx_dropped,
        );
    }
    out.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
[node]
name = "lb1"

[[vrrp]]
name = "front"
interface = "eth0"
vrid = 51
priority = 150
version = 2
advert_interval = "1s"
virtual_ips = ["10.0.0.100/24", "10.0.0.101"]
unicast_peers = ["10.0.0.2"]
garp = { repeat = 3, interval = "20ms", refresh = "60s" }
track_interfaces = [{ name = "eth1", weight = -50 }]
track_scripts = [{ command = ["/bin/check", "web"], interval = "1s", weight = -60, rise = 2, fall = 3 }]
track_files = [{ path = "/run/prio", weight = 5 }]
notify = ["/usr/local/bin/notify"]
v3_checksum = "rfc"
sync_group = "g1"
"#;

    #[test]
    fn config_to_spec() {
        let cfg = control::config::parse(SAMPLE, "t.toml").expect("valid sample");
        let s = spec(&cfg.vrrp[0]).expect("spec");
        assert_eq!(s.vrid, VrId(51));
        assert_eq!(s.version, Version::V2);
        assert_eq!(s.advert_interval, Centisecs(100));
        assert_eq!(s.priority, Priority(150));
        assert_eq!(
            s.vips.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
            vec!["10.0.0.100/24", "10.0.0.101/32"]
        );
        assert_eq!(s.garp.repeat, 3);
        assert_eq!(s.garp.refresh, Duration::from_secs(60));
        assert_eq!(s.track_interfaces[0].weight, -50);
        assert_eq!(s.track_scripts[0].name, "/bin/check web");
        assert_eq!((s.track_scripts[0].rise, s.track_scripts[0].fall), (2, 3));
        assert_eq!(s.track_files[0].name, "/run/prio");
        assert_eq!(
            s.notify.notify,
            vec![vec!["/usr/local/bin/notify".to_string()]]
        );
        assert_eq!(s.v3_checksum, V3Ipv4Checksum::MessageOnly);
        assert_eq!(s.sync_group.as_deref(), Some("g1"));
        assert!(vrrp::driver::check(&[s]).is_ok());
    }

    #[test]
    fn status_text_names_state_master_and_reason() {
        let view = VrrpStatus {
            standby: false,
            instances: vec![InstanceView {
                name: "front".into(),
                interface: "eth0".into(),
                vrid: 51,
                version: 3,
                family: "ipv4".into(),
                state: "backup".into(),
                base_priority: 100,
                effective_priority: 40,
                primary_address: Some("10.0.0.2".parse().expect("ip")),
                master: Some("10.0.0.1".parse().expect("ip")),
                master_priority: Some(150),
                last_transition: Some(TransitionView {
                    at: "2026-01-01T00:00:00.000Z".into(),
                    from: "initialize".into(),
                    to: "backup".into(),
                    reason: "startup".into(),
                }),
                vips: vec!["10.0.0.100/24".into()],
                vips_held: false,
                fault: false,
                standby: false,
                gated: false,
                waiting: None,
                sync_group: None,
                unicast_peers: vec![],
                counters: CountersView::default(),
            }],
        };
        let mut out = String::new();
        render(&view, &mut out);
        assert!(
            out.contains("front        BACKUP  priority 40/100"),
            "{out}"
        );
        assert!(out.contains("master: 10.0.0.1 (priority 150)"), "{out}");
        assert!(out.contains("initialize -> backup (startup)"), "{out}");
        let mut html = String::new();
        render_html(&view, &mut html);
        assert!(html.contains("<td class=\"l\">front</td>"), "{html}");
    }
}
