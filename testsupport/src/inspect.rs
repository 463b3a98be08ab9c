//! Typed views of `ip -j` output: neighbours, addresses, links.
//!
//! The parsers are pure functions over the JSON text so they are unit-tested
//! without a namespace.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde_json::Value;

use crate::error::{Error, Result};

/// An Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(|| Error::BadMac(s.to_owned()))?;
            if part.len() != 2 {
                return Err(Error::BadMac(s.to_owned()));
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| Error::BadMac(s.to_owned()))?;
        }
        if parts.next().is_some() {
            return Err(Error::BadMac(s.to_owned()));
        }
        Ok(MacAddr(out))
    }
}

/// One entry of a neighbour (ARP / NDP) table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub addr: IpAddr,
    /// `None` for entries without a link-layer address (INCOMPLETE, FAILED).
    pub mac: Option<MacAddr>,
    /// NUD states as printed by iproute2, e.g. `["REACHABLE"]`, `["STALE"]`.
    pub states: Vec<String>,
    /// Whether the entry is flagged as a router (IPv6).
    pub router: bool,
}

impl Neighbour {
    /// Whether one of the entry's states is `state` (case-insensitive).
    pub fn has_state(&self, state: &str) -> bool {
        self.states.iter().any(|s| s.eq_ignore_ascii_case(state))
    }
}

/// One address configured on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfAddr {
    pub addr: IpAddr,
    pub prefix_len: u8,
    /// `global`, `link`, `host`, ...
    pub scope: String,
    /// IPv6 duplicate address detection still running.
    pub tentative: bool,
    /// IPv6 duplicate address detection failed.
    pub dad_failed: bool,
}

impl fmt::Display for IfAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Link-level facts about an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub ifname: String,
    pub ifindex: u32,
    pub mac: Option<MacAddr>,
    /// `UP`, `DOWN`, `LOWERLAYERDOWN`, `UNKNOWN`, ...
    pub operstate: String,
    /// Flags such as `UP`, `LOWER_UP`, `NO-CARRIER`.
    pub flags: Vec<String>,
    pub mtu: u32,
    /// Bridge (or other master) this interface is enslaved to.
    pub master: Option<String>,
}

impl LinkInfo {
    /// Administratively up (`UP` flag).
    pub fn is_up(&self) -> bool {
        self.flags.iter().any(|f| f == "UP")
    }

    /// Carrier present (`LOWER_UP` flag).
    pub fn has_carrier(&self) -> bool {
        self.flags.iter().any(|f| f == "LOWER_UP")
    }
}

fn bad(command: &str, reason: impl Into<String>) -> Error {
    Error::BadJson {
        command: command.to_owned(),
        reason: reason.into(),
    }
}

fn parse_array(command: &str, json: &str) -> Result<Vec<Value>> {
    // iproute2 prints nothing at all for some empty tables.
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Array(items)) => Ok(items),
        Ok(other) => Err(bad(command, format!("expected a JSON array, got {other}"))),
        Err(e) => Err(bad(command, e.to_string())),
    }
}

fn str_field<'a>(item: &'a Value, key: &str) -> Option<&'a str> {
    item.get(key).and_then(Value::as_str)
}

fn string_list(item: &Value, key: &str) -> Vec<String> {
    item.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Parse `ip -j neigh show [dev X]`.
pub fn parse_neigh(command: &str, json: &str) -> Result<Vec<Neighbour>> {
    parse_array(command, json)?
        .iter()
        .map(|item| {
            let dst = str_field(item, "dst").ok_or_else(|| bad(command, "entry without dst"))?;
            let addr = dst
                .parse::<IpAddr>()
                .map_err(|e| bad(command, format!("dst {dst:?}: {e}")))?;
            let mac = str_field(item, "lladdr")
                .map(MacAddr::from_str)
                .transpose()?;
            Ok(Neighbour {
                addr,
                mac,
                states: string_list(item, "state"),
                router: item.get("router").is_some(),
            })
        })
        .collect()
}

/// Parse the `addr_info` of every interface in `ip -j addr show [dev X]`.
pub fn parse_addrs(command: &str, json: &str) -> Result<Vec<IfAddr>> {
    let mut out = Vec::new();
    for link in parse_array(command, json)? {
        let Some(infos) = link.get("addr_info").and_then(Value::as_array) else {
            continue;
        };
        for info in infos {
            // Entries without "local" are lifetime-only fragments iproute2
            // sometimes emits; they carry no address.
            let Some(local) = str_field(info, "local") else {
                continue;
            };
            let addr = local
                .parse::<IpAddr>()
                .map_err(|e| bad(command, format!("local {local:?}: {e}")))?;
            let prefix_len = info
                .get("prefixlen")
                .and_then(Value::as_u64)
                .and_then(|p| u8::try_from(p).ok())
                .ok_or_else(|| {
                    bad(
                        command,
                        format!("address {local} without a valid prefixlen"),
                    )
                })?;
            out.push(IfAddr {
                addr,
                prefix_len,
                scope: str_field(info, "scope").unwrap_or("").to_owned(),
                tentative: info.get("tentative").is_some(),
                dad_failed: info.get("dadfailed").is_some(),
            });
        }
    }
    Ok(out)
}

/// Parse `ip -j link show [dev X]`.
pub fn parse_links(command: &str, json: &str) -> Result<Vec<LinkInfo>> {
    parse_array(command, json)?
        .iter()
        .map(|item| {
            let ifname = str_field(item, "ifname")
                .ok_or_else(|| bad(command, "link without ifname"))?
                .to_owned();
            let ifindex = item
                .get("ifindex")
                .and_then(Value::as_u64)
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| bad(command, format!("link {ifname} without ifindex")))?;
            let mac = match (str_field(item, "link_type"), str_field(item, "address")) {
                (Some("ether"), Some(a)) => Some(MacAddr::from_str(a)?),
                _ => None,
            };
            Ok(LinkInfo {
                ifindex,
                mac,
                operstate: str_field(item, "operstate").unwrap_or("").to_owned(),
                flags: string_list(item, "flags"),
                mtu: item
                    .get("mtu")
                    .and_then(Value::as_u64)
                    .and_then(|m| u32::try_from(m).ok())
                    .unwrap_or(0),
                master: str_field(item, "master").map(str::to_owned),
                ifname,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip_and_errors() {
        let m: MacAddr = "02:00:5e:10:00:01".parse().expect("valid mac");
        assert_eq!(m.0, [2, 0, 0x5e, 0x10, 0, 1]);
        assert_eq!(m.to_string(), "02:00:5e:10:00:01");
        for bad in [
            "",
            "02:00:5e:10:00",
            "02:00:5e:10:00:01:02",
            "2:00:5e:10:00:01",
            "zz:00:5e:10:00:01",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn neigh_table() {
        let json = r#"[{"dst":"10.9.0.2","lladdr":"fa:1e:0f:d0:ac:4e","state":["REACHABLE"]},
                       {"dst":"10.9.0.3","state":["FAILED"]},
                       {"dst":"fe80::1","lladdr":"02:00:00:00:00:01","router":null,"state":["STALE"]}]"#;
        let n = parse_neigh("ip -j neigh", json).expect("parses");
        assert_eq!(n.len(), 3);
        assert_eq!(n[0].addr, "10.9.0.2".parse::<IpAddr>().expect("ip"));
        assert_eq!(
            n[0].mac,
            Some(MacAddr([0xfa, 0x1e, 0x0f, 0xd0, 0xac, 0x4e]))
        );
        assert!(n[0].has_state("reachable"));
        assert!(!n[0].router);
        assert_eq!(n[1].mac, None);
        assert!(n[1].has_state("FAILED"));
        assert!(n[2].router);
        assert!(parse_neigh("x", "").expect("empty").is_empty());
        assert!(parse_neigh("x", "{}").is_err());
        assert!(parse_neigh("x", r#"[{"dst":"nonsense"}]"#).is_err());
    }

    #[test]
    fn addr_list() {
        let json = r#"[{"ifindex":2,"ifname":"a","addr_info":[
            {"family":"inet","local":"10.0.0.1","prefixlen":24,"scope":"global"},
            {"family":"inet6","local":"fd00::1","prefixlen":64,"scope":"global","nodad":true},
            {"family":"inet6","local":"fe80::1","prefixlen":64,"scope":"link","tentative":true},
            {"valid_life_time":4294967295}]}]"#;
        let a = parse_addrs("ip -j addr", json).expect("parses");
        assert_eq!(a.len(), 3);
        assert_eq!(a[0].to_string(), "10.0.0.1/24");
        assert_eq!(a[1].scope, "global");
        assert!(!a[1].tentative);
        assert!(a[2].tentative);
        assert!(parse_addrs("x", r#"[{"addr_info":[{"local":"10.0.0.1"}]}]"#).is_err());
    }

    #[test]
    fn link_list() {
        let json = r#"[{"ifindex":2,"ifname":"a","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,
            "operstate":"UP","link_type":"ether","address":"d6:20:d2:8b:9f:c9","master":"br0"},
            {"ifindex":1,"ifname":"lo","flags":["LOOPBACK"],"mtu":65536,"operstate":"DOWN","link_type":"loopback","address":"00:00:00:00:00:00"}]"#;
        let l = parse_links("ip -j link", json).expect("parses");
        assert_eq!(l[0].ifname, "a");
        assert_eq!(l[0].ifindex, 2);
        assert!(l[0].is_up() && l[0].has_carrier());
        assert_eq!(l[0].master.as_deref(), Some("br0"));
        assert_eq!(
            l[0].mac.map(|m| m.to_string()).as_deref(),
            Some("d6:20:d2:8b:9f:c9")
        );
        assert_eq!(l[1].mac, None);
        assert!(!l[1].is_up());
    }
}
