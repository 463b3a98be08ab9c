//! The virtual MAC (keepalived's `use_vmac`): a macvlan on the VRRP
//! interface carrying the RFC 9568 section 7.3 virtual router MAC
//! (00-00-5E-00-01-{VRID} for IPv4, 00-00-5E-00-02-{VRID} for IPv6).
//!
//! Not done here: keepalived also sets `arp_ignore`/`arp_filter` sysctls on
//! the parent so it does not answer ARP for the VIP with its own MAC.

use futures_util::TryStreamExt;
use netlink_packet_route::link::{
    InfoData, InfoMacVlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, MacVlanMode,
};
use rtnetlink::{LinkMacVlan, LinkUnspec};
use tracing::info;

use super::error::{errno_of, IoError};
use super::netlink::Netlink;
use super::transport::Family;
use crate::wire::garp::MacAddr;
use crate::VrId;

/// Macvlan mode of the virtual MAC interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VmacMode {
    /// No traffic between macvlans of the same parent (keepalived's default).
    #[default]
    Private,
    /// Macvlans of the same parent reach each other directly.
    Bridge,
}

impl VmacMode {
    fn to_netlink(self) -> MacVlanMode {
        match self {
            VmacMode::Private => MacVlanMode::Private,
            VmacMode::Bridge => MacVlanMode::Bridge,
        }
    }
}

/// The virtual router MAC for `vrid` (RFC 9568 section 7.3).
pub fn vmac_address(vrid: u8, family: Family) -> [u8; 6] {
    let mac = match family {
        Family::V4 => MacAddr::vrrp_v4(VrId(vrid)),
        Family::V6 => MacAddr::vrrp_v6(VrId(vrid)),
    };
    mac.0
}

/// keepalived's default name for the virtual MAC interface: `vrrp.<vrid>`.
pub fn default_vmac_name(vrid: u8) -> String {
    format!("vrrp.{vrid}")
}

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmacSpec {
    /// Parent interface (the VRRP interface).
    pub parent: String,
    /// Virtual router id.
    pub vrid: u8,
    /// Family: selects the 01 or 02 MAC.
    pub family: Family,
    /// Interface name; [`default_vmac_name`] when `None`.
    pub name: Option<String>,
    /// Macvlan mode.
    pub mode: VmacMode,
}

impl VmacSpec {
    /// The interface name that will be used.
    pub fn ifname(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| default_vmac_name(self.vrid))
    }
}

/// A virtual MAC interface that exists and is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmacLink {
    /// Its name.
    pub name: String,
    /// Its index.
    pub ifindex: u32,
    /// Its MAC (the virtual router MAC).
    pub mac: [u8; 6],
}

/// Creates and removes virtual MAC interfaces.
#[derive(Debug, Clone)]
pub struct Vmacs {
    nl: Netlink,
}

fn macvlan_mode(msg: &LinkMessage) -> Option<MacVlanMode> {
    msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Data(InfoData::MacVlan(data)) => data.iter().find_map(|d| match d {
                InfoMacVlan::Mode(m) => Some(*m),
                _ => None,
            }),
            _ => None,
        }),
        _ => None,
    })
}

impl Vmacs {
    /// Acting through `nl`.
    pub fn new(nl: Netlink) -> Self {
        Vmacs { nl }
    }

    async fn get_message(&self, name: &str) -> Result<Option<LinkMessage>, IoError> {
        let mut stream = self.nl.handle().link().get().match_name(name).execute();
        match stream.try_next().await {
            Ok(m) => Ok(m),
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(IoError::netlink("get link")(e)),
        }
    }

    /// Makes sure the macvlan of `spec` exists with the right parent, MAC and
    /// mode, and is up. An existing macvlan that differs is recreated; an
    /// existing interface of another kind is an error.
    pub async fn ensure(&self, spec: &VmacSpec) -> Result<VmacLink, IoError> {
        let name = spec.ifname();
        let parent = self.nl.ifindex(&spec.parent).await?;
        let mac = vmac_address(spec.vrid, spec.family);
        if let Some(msg) = self.get_message(&name).await? {
            let details = super::netlink::LinkDetails::from_message(&msg)
                .ok_or_else(|| IoError::NoSuchInterface(name.clone()))?;
            if !details.is_macvlan {
                return Err(IoError::NotMacvlan(name));
            }
            let matches = details.parent == Some(parent)
                && details.mac == Some(mac)
                && macvlan_mode(&msg) == Some(spec.mode.to_netlink());
            if matches {
                quiet_ipv6(&name, spec.family);
                if !msg.header.flags.contains(LinkFlags::Up) {
                    self.set_up(details.ifindex).await?;
                }
                return Ok(VmacLink {
                    name,
                    ifindex: details.ifindex,
                    mac,
                });
            }
            info!(
                name,
                "existing macvlan differs from the configuration: recreating it"
            );
            self.nl
                .handle()
                .link()
                .del(details.ifindex)
                .execute()
                .await
                .map_err(IoError::netlink("delete link"))?;
        }
        // Created down: IPv6 is quieted before the link can send anything.
        let msg = LinkMacVlan::new(&name, parent, spec.mode.to_netlink())
            .address(mac.to_vec())
            .build();
        self.nl
            .handle()
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(IoError::netlink("add macvlan"))?;
        let ifindex = self.nl.ifindex(&name).await?;
        quiet_ipv6(&name, spec.family);
        self.set_up(ifindex).await?;
        info!(name, parent = %spec.parent, "virtual MAC interface created");
        Ok(VmacLink { name, ifindex, mac })
    }

    async fn set_up(&self, ifindex: u32) -> Result<(), IoError> {
        self.nl
            .handle()
            .link()
            .change(LinkUnspec::new_with_index(ifindex).up().build())
            .execute()
            .await
            .map_err(IoError::netlink("set link up"))
    }

    /// Deletes the macvlan named `name`; `Ok(false)` when there is none.
    /// Refuses to delete an interface that is not a macvlan.
    pub async fn remove(&self, name: &str) -> Result<bool, IoError> {
        let Some(details) = self.nl.find_link(name).await? else {
            return Ok(false);
        };
        if !details.is_macvlan {
            return Err(IoError::NotMacvlan(name.to_owned()));
        }
        match self.nl.handle().link().del(details.ifindex).execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(IoError::netlink("delete link")(e)),
        }
    }
}

/// Keeps a virtual MAC interface from sending anything on its own. Every
/// router of the VRID has one with the same MAC; a frame a backup's
/// interface sends (IPv6 duplicate address detection, router or multicast
/// listener messages of its link-local address) teaches the switches that
/// the MAC is behind the backup, and traffic for the VIPs goes there until
/// the master sends from it again. So: no IPv6 at all on the interface of
/// an IPv4 instance, and no link-local address on that of an IPv6 instance
/// (adverts leave from the parent's link-local address). Best effort: a
/// kernel without IPv6 has nothing to quiet.
fn quiet_ipv6(name: &str, family: Family) {
    let (key, value) = match family {
        Family::V4 => ("disable_ipv6", "1"),
        // IN6_ADDR_GEN_MODE_NONE.
        Family::V6 => ("addr_gen_mode", "1"),
    };
    let path = format!("/proc/sys/net/ipv6/conf/{name}/{key}");
    if let Err(e) = std::fs::write(&path, value) {
        tracing::debug!(%path, error = %e, "cannot quiet IPv6 on the virtual MAC interface");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_macs() {
        assert_eq!(vmac_address(51, Family::V4), [0, 0, 0x5e, 0, 1, 51]);
        assert_eq!(vmac_address(255, Family::V6), [0, 0, 0x5e, 0, 2, 255]);
        assert_eq!(default_vmac_name(7), "vrrp.7");
    }
}
