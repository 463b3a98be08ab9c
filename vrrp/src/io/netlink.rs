//! A thin rtnetlink handle: interface lookup, link attributes and addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::TryStreamExt;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};

use super::error::{errno_of, IoError};

/// A cloneable rtnetlink handle bound to the network namespace of the thread
/// that called [`Netlink::connect`]; its connection task runs on the current
/// tokio runtime and ends when the last clone is dropped.
#[derive(Clone)]
pub struct Netlink {
    handle: rtnetlink::Handle,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Netlink")
    }
}

/// What [`Netlink::link`] reports about one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkDetails {
    /// Interface index.
    pub ifindex: u32,
    /// Interface name.
    pub name: String,
    /// Hardware address, when it is a 6-byte (Ethernet) one.
    pub mac: Option<[u8; 6]>,
    /// IFF_UP: administratively up.
    pub admin_up: bool,
    /// IFF_RUNNING: operationally up (carrier present).
    pub running: bool,
    /// The `IFLA_LINK` parent index (macvlan, vlan, veth peer), if any.
    pub parent: Option<u32>,
    /// True when the link kind is macvlan.
    pub is_macvlan: bool,
}

impl LinkDetails {
    pub(crate) fn from_message(msg: &LinkMessage) -> Option<Self> {
        let mut name = None;
        let mut mac = None;
        let mut parent = None;
        let mut is_macvlan = false;
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => name = Some(n.clone()),
                LinkAttribute::Address(bytes) => mac = <[u8; 6]>::try_from(bytes.as_slice()).ok(),
                LinkAttribute::Link(idx) => parent = Some(*idx),
                LinkAttribute::LinkInfo(infos) => {
                    is_macvlan = infos
                        .iter()
                        .any(|i| matches!(i, LinkInfo::Kind(InfoKind::MacVlan)));
                }
                _ => {}
            }
        }
        Some(LinkDetails {
            ifindex: msg.header.index,
            name: name?,
            mac,
            admin_up: msg.header.flags.contains(LinkFlags::Up),
            running: msg.header.flags.contains(LinkFlags::Running),
            parent,
            is_macvlan,
        })
    }
}

/// One address configured on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfAddress {
    /// Interface index.
    pub ifindex: u32,
    /// The local address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix_len: u8,
    /// IFA_F_SECONDARY (IPv4) / IFA_F_TEMPORARY-style secondary flag.
    pub secondary: bool,
    /// IFA_F_TENTATIVE: IPv6 duplicate address detection still running, not usable as a source.
    pub tentative: bool,
    /// IFA_F_NODAD.
    pub nodad: bool,
    /// Scope link (IPv6 fe80::/10, IPv4 169.254/16 with scope link).
    pub link_scope: bool,
}

impl IfAddress {
    pub(crate) fn from_message(msg: &AddressMessage) -> Option<Self> {
        let mut local = None;
        let mut address = None;
        let mut flags = AddressFlags::from_bits_retain(u32::from(msg.header.flags.bits()));
        for attr in &msg.attributes {
            match attr {
                AddressAttribute::Local(a) => local = Some(*a),
                AddressAttribute::Address(a) => address = Some(*a),
                AddressAttribute::Flags(f) => flags = *f,
                _ => {}
            }
        }
        Some(IfAddress {
            ifindex: msg.header.index,
            addr: local.or(address)?,
            prefix_len: msg.header.prefix_len,
            secondary: flags.contains(AddressFlags::Secondary),
            tentative: flags.contains(AddressFlags::Tentative),
            nodad: flags.contains(AddressFlags::Nodad)
                || msg.header.flags.contains(AddressHeaderFlags::Nodad),
            link_scope: msg.header.scope == AddressScope::Link,
        })
    }
}

/// The first IPv4 address in `addrs` that is not in `exclude` (the VIPs):
/// the source keepalived uses for adverts when no `unicast_src_ip` is set.
/// Primary (non-secondary) addresses are preferred.
pub fn primary_ipv4(addrs: &[IfAddress], exclude: &[IpAddr]) -> Option<Ipv4Addr> {
    let candidates = || {
        addrs.iter().filter_map(|a| match a.addr {
            IpAddr::V4(v4) if !exclude.contains(&a.addr) => Some((a, v4)),
            _ => None,
        })
    };
    candidates()
        .find(|(a, _)| !a.secondary)
        .or_else(|| candidates().next())
        .map(|(_, v4)| v4)
}

/// The first usable (not tentative) IPv6 link-local address in `addrs`: the
/// mandatory source of VRRP over IPv6 (RFC 9568 section 5.1.2.1).
pub fn link_local_v6(addrs: &[IfAddress]) -> Option<Ipv6Addr> {
    addrs.iter().find_map(|a| match a.addr {
        IpAddr::V6(v6) if v6.is_unicast_link_local() && !a.tentative => Some(v6),
        _ => None,
    })
}

impl Netlink {
    /// Opens an rtnetlink socket in the calling thread's network namespace
    /// and spawns its connection task on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime (as `tokio::spawn` does).
    pub fn connect() -> Result<Self, IoError> {
        let (connection, handle, _unsolicited) =
            rtnetlink::new_connection().map_err(IoError::NetlinkOpen)?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }

    /// The underlying rtnetlink handle.
    pub fn handle(&self) -> &rtnetlink::Handle {
        &self.handle
    }

    /// The interface named `name`, or `Ok(None)` when there is none.
    pub async fn find_link(&self, name: &str) -> Result<Option<LinkDetails>, IoError> {
        let mut stream = self.handle.link().get().match_name(name).execute();
        match stream.try_next().await {
            Ok(Some(msg)) => Ok(LinkDetails::from_message(&msg)),
            Ok(None) => Ok(None),
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(IoError::netlink("get link")(e)),
        }
    }

    /// The interface named `name`.
    pub async fn link(&self, name: &str) -> Result<LinkDetails, IoError> {
        self.find_link(name)
            .await?
            .ok_or_else(|| IoError::NoSuchInterface(name.to_owned()))
    }

    /// The index of the interface named `name`.
    pub async fn ifindex(&self, name: &str) -> Result<u32, IoError> {
        Ok(self.link(name).await?.ifindex)
    }

    /// The Ethernet address of the interface named `name`.
    pub async fn mac(&self, name: &str) -> Result<[u8; 6], IoError> {
        self.link(name)
            .await?
            .mac
            .ok_or_else(|| IoError::NoHardwareAddress(name.to_owned()))
    }

    /// Every interface (one dump).
    pub async fn links(&self) -> Result<Vec<LinkDetails>, IoError> {
        let msgs: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(IoError::netlink("dump links"))?;
        Ok(msgs.iter().filter_map(LinkDetails::from_message).collect())
    }

    /// Every address on interface `ifindex`, both families.
    pub async fn addresses(&self, ifindex: u32) -> Result<Vec<IfAddress>, IoError> {
        let msgs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(ifindex)
            .execute()
            .try_collect()
            .await
            .map_err(IoError::netlink("dump addresses"))?;
        Ok(msgs.iter().filter_map(IfAddress::from_message).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(a: &str, secondary: bool, tentative: bool) -> IfAddress {
        IfAddress {
            ifindex: 2,
            addr: a.parse().expect("test address"),
            prefix_len: 24,
            secondary,
            tentative,
            nodad: false,
            link_scope: false,
        }
    }

    #[test]
    fn primary_ipv4_skips_vips_and_prefers_primary() {
        let addrs = [
            addr("fe80::1", false, false),
            addr("10.0.0.100", true, false),
            addr("10.0.0.5", false, false),
        ];
        let vip: IpAddr = Ipv4Addr::new(10, 0, 0, 100).into();
        assert_eq!(
            primary_ipv4(&addrs, &[vip]),
            Some(Ipv4Addr::new(10, 0, 0, 5))
        );
        assert_eq!(
            primary_ipv4(&addrs[..2], &[]),
            Some(Ipv4Addr::new(10, 0, 0, 100))
        );
        assert_eq!(primary_ipv4(&addrs[..2], &[vip]), None);
    }

    #[test]
    fn link_local_skips_tentative_and_global() {
        let addrs = [
            addr("2001:db8::1", false, false),
            addr("fe80::1", false, true),
            addr("fe80::2", false, false),
        ];
        assert_eq!(
            link_local_v6(&addrs),
            Some("fe80::2".parse().expect("test address"))
        );
        assert_eq!(link_local_v6(&addrs[..2]), None);
    }
}
