//! What the driver is told to run: one [`InstanceSpec`] per VRRP instance,
//! independent of the config file format (the `halb` binary converts its
//! typed config into these).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::io::{NotifyPrograms, Vip};
use crate::router::RouterConfig;
use crate::track::{TrackConfig, TrackFile, TrackInterface, TrackScript};
use crate::wire::{AuthType, Family, V2Auth, V3Ipv4Checksum, Version};
use crate::{Centisecs, Priority, Router, VrId};

use super::error::DriverError;

/// Gratuitous ARP / unsolicited NA settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GarpSpec {
    /// Rounds sent on becoming master (each round: one frame per VIP). 0: none.
    pub repeat: u32,
    /// Time between the starts of two rounds.
    pub interval: Duration,
    /// While master, send a burst again this often; zero: never.
    pub refresh: Duration,
}

impl Default for GarpSpec {
    fn default() -> Self {
        GarpSpec {
            repeat: 5,
            interval: Duration::from_millis(10),
            refresh: Duration::ZERO,
        }
    }
}

/// A tracked script: run every `interval` with a `timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptTrack {
    /// Unique among the instance's scripts (the part uses the command line).
    pub name: String,
    pub argv: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub weight: i32,
    pub rise: u32,
    pub fall: u32,
}

/// A tracked file holding an integer, read every `interval`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTrack {
    /// Unique among the instance's files (the part uses the path).
    pub name: String,
    pub path: PathBuf,
    pub interval: Duration,
    pub weight: i32,
}

/// One VRRP instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSpec {
    pub name: String,
    /// The interface adverts go out on (and the VIPs, unless `use_vmac`).
    pub interface: String,
    pub vrid: VrId,
    pub version: Version,
    /// Configured (base) priority; tracking adjusts the effective one.
    pub priority: Priority,
    pub advert_interval: Centisecs,
    pub preempt: bool,
    pub preempt_delay: Duration,
    pub accept_mode: bool,
    /// The virtual addresses with their prefix length, all of one family.
    pub vips: Vec<Vip>,
    /// Empty: multicast.
    pub unicast_peers: Vec<IpAddr>,
    /// Source of adverts; `None`: the interface's primary IPv4 address (not
    /// a VIP), or its link-local IPv6 address.
    pub unicast_source: Option<IpAddr>,
    pub garp: GarpSpec,
    pub track_interfaces: Vec<TrackInterface>,
    pub track_scripts: Vec<ScriptTrack>,
    pub track_files: Vec<FileTrack>,
    pub notify: NotifyPrograms,
    pub notify_timeout: Duration,
    /// Put the VIPs on a macvlan with the virtual router MAC.
    pub use_vmac: bool,
    pub v3_checksum: V3Ipv4Checksum,
    /// VRRPv2 simple-text authentication (`auth_pass`), or none.
    pub v2_auth: V2Auth,
    pub sync_group: Option<String>,
}

impl InstanceSpec {
    /// The address family of the VIPs (IPv4 when there are none).
    pub fn family(&self) -> Family {
        self.vips
            .first()
            .map_or(Family::Ipv4, |v| Family::of(&v.addr()))
    }

    pub fn vip_addrs(&self) -> Vec<IpAddr> {
        self.vips.iter().map(|v| v.addr()).collect()
    }

    /// The router configuration once the primary address is known.
    pub fn router_config(&self, primary_address: IpAddr) -> RouterConfig {
        RouterConfig {
            vrid: self.vrid,
            version: self.version,
            priority: self.priority,
            advert_interval: self.advert_interval,
            preempt: self.preempt,
            preempt_delay: self.preempt_delay,
            accept_mode: self.accept_mode,
            primary_address,
            virtual_addresses: self.vip_addrs(),
            v2_auth: self.v2_auth,
        }
    }

    pub fn track_config(&self) -> TrackConfig {
        TrackConfig {
            base_priority: self.priority,
            interfaces: self.track_interfaces.clone(),
            scripts: self
                .track_scripts
                .iter()
                .map(|s| TrackScript {
                    name: s.name.clone(),
                    weight: s.weight,
                    rise: s.rise,
                    fall: s.fall,
                })
                .collect(),
            files: self
                .track_files
                .iter()
                .map(|f| TrackFile {
                    name: f.name.clone(),
                    weight: f.weight,
                })
                .collect(),
        }
    }

    /// Everything that can be checked before any I/O: the router and
    /// tracking configurations, families, peers.
    pub fn validate(&self) -> Result<(), DriverError> {
        let invalid = |reason: String| DriverError::InvalidSpec {
            instance: self.name.clone(),
            reason,
        };
        if self.name.is_empty() {
            return Err(invalid("empty instance name".into()));
        }
        let family = self.family();
        let unspecified = match family {
            Family::Ipv4 => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            Family::Ipv6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        };
        Router::new(self.router_config(unspecified)).map_err(|e| invalid(e.to_string()))?;
        crate::track::Tracker::new(self.track_config()).map_err(|e| invalid(e.to_string()))?;
        let wrong = self
            .unicast_peers
            .iter()
            .chain(self.unicast_source.iter())
            .find(|a| Family::of(a) != family);
        if let Some(a) = wrong {
            return Err(invalid(format!("address {a} is not of the VIPs' family")));
        }
        if let Some(s) = self.track_scripts.iter().find(|s| s.argv.is_empty()) {
            return Err(invalid(format!("track script {:?} has no command", s.name)));
        }
        Ok(())
    }

    /// Fields that cannot change without restarting the instance (the
    /// socket, the interface, the VRID or the protocol version change).
    pub(crate) fn identity_differs(&self, other: &InstanceSpec) -> bool {
        self.interface != other.interface
            || self.vrid != other.vrid
            || self.version != other.version
            || self.family() != other.family()
            || self.use_vmac != other.use_vmac
    }

    pub(crate) fn tracking_differs(&self, other: &InstanceSpec) -> bool {
        self.priority != other.priority
            || self.track_interfaces != other.track_interfaces
            || self.track_scripts != other.track_scripts
            || self.track_files != other.track_files
    }

    pub(crate) fn transport_differs(&self, other: &InstanceSpec) -> bool {
        self.unicast_peers != other.unicast_peers || self.unicast_source != other.unicast_source
    }

    /// One line per changed setting, for the reload report.
    pub fn describe_changes(&self, new: &InstanceSpec) -> Vec<String> {
        let n = &self.name;
        let mut out = Vec::new();
        let mut field = |what: &str, old: String, new: String| {
            if old != new {
                out.push(format!("vrrp {n}: {what} {old} -> {new}"));
            }
        };
        field("interface", self.interface.clone(), new.interface.clone());
        field("vrid", self.vrid.to_string(), new.vrid.to_string());
        field(
            "version",
            self.version.number().to_string(),
            new.version.number().to_string(),
        );
        field(
            "priority",
            self.priority.to_string(),
            new.priority.to_string(),
        );
        field(
            "advert_interval",
            format!("{:?}", self.advert_interval.as_duration()),
            format!("{:?}", new.advert_interval.as_duration()),
        );
        field("preempt", self.preempt.to_string(), new.preempt.to_string());
        field(
            "preempt_delay",
            format!("{:?}", self.preempt_delay),
            format!("{:?}", new.preempt_delay),
        );
        field(
            "accept_mode",
            self.accept_mode.to_string(),
            new.accept_mode.to_string(),
        );
        field(
            "use_vmac",
            self.use_vmac.to_string(),
            new.use_vmac.to_string(),
        );
        field(
            "sync_group",
            format!("{:?}", self.sync_group),
            format!("{:?}", new.sync_group),
        );
        field(
            "unicast_peers",
            format!("{:?}", self.unicast_peers),
            format!("{:?}", new.unicast_peers),
        );
        field(
            "unicast_source",
            format!("{:?}", self.unicast_source),
            format!("{:?}", new.unicast_source),
        );
        field(
            "v3_checksum",
            format!("{:?}", self.v3_checksum),
            format!("{:?}", new.v3_checksum),
        );
        // The password itself stays out of the report.
        let auth = |a: &V2Auth| match a.auth_type {
            AuthType::None => "none".to_string(),
            AuthType::SimpleText => "a password".to_string(),
            other => format!("type {}", other.to_u8()),
        };
        let (old_auth, mut new_auth) = (auth(&self.v2_auth), auth(&new.v2_auth));
        if self.v2_auth != new.v2_auth && old_auth == new_auth {
            new_auth = "another password".to_string();
        }
        field("auth_pass", old_auth, new_auth);
        let added: Vec<String> = new
            .vips
            .iter()
            .filter(|v| !self.vips.contains(v))
            .map(|v| v.to_string())
            .collect();
        let removed: Vec<String> = self
            .vips
            .iter()
            .filter(|v| !new.vips.contains(v))
            .map(|v| v.to_string())
            .collect();
        if !added.is_empty() {
            out.push(format!("vrrp {n}: virtual IPs added {}", added.join(", ")));
        }
        if !removed.is_empty() {
            out.push(format!(
                "vrrp {n}: virtual IPs removed {}",
                removed.join(", ")
            ));
        }
        if self.garp != new.garp {
            out.push(format!("vrrp {n}: garp settings changed"));
        }
        if self.track_interfaces != new.track_interfaces
            || self.track_scripts != new.track_scripts
            || self.track_files != new.track_files
        {
            out.push(format!("vrrp {n}: tracking changed"));
        }
        if self.notify != new.notify || self.notify_timeout != new.notify_timeout {
            out.push(format!("vrrp {n}: notify programs changed"));
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn spec(name: &str) -> InstanceSpec {
        InstanceSpec {
            name: name.into(),
            interface: "eth0".into(),
            vrid: VrId(51),
            version: Version::V3,
            priority: Priority(100),
            advert_interval: Centisecs(100),
            preempt: true,
            preempt_delay: Duration::ZERO,
            accept_mode: false,
            vips: vec![Vip::new("10.0.0.100".parse().expect("ip"), 24).expect("vip")],
            unicast_peers: vec![],
            unicast_source: None,
            garp: GarpSpec::default(),
            track_interfaces: vec![],
            track_scripts: vec![],
            track_files: vec![],
            notify: NotifyPrograms::default(),
            notify_timeout: Duration::from_secs(10),
            use_vmac: false,
            v3_checksum: V3Ipv4Checksum::PseudoHeader,
            v2_auth: V2Auth::NONE,
            sync_group: None,
        }
    }

    #[test]
    fn validate_catches_router_tracking_and_family_errors() {
        assert!(spec("a").validate().is_ok());
        let mut s = spec("a");
        s.vips.clear();
        assert!(matches!(s.validate(), Err(DriverError::InvalidSpec { .. })));
        let mut s = spec("a");
        s.version = Version::V2;
        s.advert_interval = Centisecs(150);
        assert!(s.validate().is_err(), "v2 needs whole seconds");
        let mut s = spec("a");
        s.unicast_peers = vec!["2001:db8::1".parse().expect("ip")];
        assert!(s.validate().is_err(), "peer of the other family");
        let mut s = spec("a");
        s.track_scripts = vec![ScriptTrack {
            name: "x".into(),
            argv: vec!["/bin/true".into()],
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            weight: -10,
            rise: 0,
            fall: 1,
        }];
        assert!(s.validate().is_err(), "rise 0");
    }

    #[test]
    fn change_lines_name_what_changed() {
        let old = spec("a");
        let mut new = spec("a");
        assert!(old.describe_changes(&new).is_empty());
        new.priority = Priority(150);
        new.vips
            .push(Vip::new("10.0.0.101".parse().expect("ip"), 24).expect("vip"));
        let lines = old.describe_changes(&new);
        assert_eq!(
            lines,
            vec![
                "vrrp a: priority 100 -> 150".to_string(),
                "vrrp a: virtual IPs added 10.0.0.101/24".to_string()
            ]
        );
        assert!(!old.identity_differs(&new));
        assert!(old.tracking_differs(&new));
        new.vrid = VrId(52);
        assert!(old.identity_differs(&new));
    }
}
