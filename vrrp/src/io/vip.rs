//! The VIP mover: add and remove virtual addresses with rtnetlink.
//!
//! Both operations are idempotent: adding uses `NLM_F_REPLACE` (adding an
//! address that is already there succeeds), deleting treats "not there"
//! (`EADDRNOTAVAIL`, `ENOENT`) as done. IPv6 VIPs are added with
//! `IFA_F_NODAD` so they are usable at once instead of staying tentative
//! for the duration of duplicate address detection.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use rtnetlink::AddressMessageBuilder;
use tracing::{debug, info};

use super::error::{errno_of, IoError};
use super::netlink::{IfAddress, Netlink};

/// A virtual address with its prefix length, e.g. `192.0.2.10/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vip {
    addr: IpAddr,
    prefix_len: u8,
}

impl Vip {
    /// A VIP; fails when `prefix_len` exceeds 32 (IPv4) or 128 (IPv6).
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Self, IoError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(IoError::InvalidPrefix { addr, prefix_len });
        }
        Ok(Vip { addr, prefix_len })
    }

    /// A host VIP: /32 or /128.
    pub fn host(addr: IpAddr) -> Self {
        let prefix_len = if addr.is_ipv4() { 32 } else { 128 };
        Vip { addr, prefix_len }
    }

    /// The address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }
}

impl fmt::Display for Vip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Whether [`VipMover::del`] found the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    /// It was there and is gone.
    Yes,
    /// It was not there: nothing to do.
    WasAbsent,
}

/// Adds and removes VIPs on interfaces.
#[derive(Debug, Clone)]
pub struct VipMover {
    nl: Netlink,
}

fn address_message(ifindex: u32, vip: Vip) -> netlink_packet_route::address::AddressMessage {
    match vip.addr {
        IpAddr::V4(v4) => AddressMessageBuilder::<Ipv4Addr>::new()
            .index(ifindex)
            .address(v4, vip.prefix_len)
            .build(),
        IpAddr::V6(v6) => AddressMessageBuilder::<Ipv6Addr>::new()
            .index(ifindex)
            .address(v6, vip.prefix_len)
            .build(),
    }
}

impl VipMover {
    /// A mover using `nl` (and so acting in `nl`'s network namespace).
    pub fn new(nl: Netlink) -> Self {
        VipMover { nl }
    }

    /// The netlink handle in use.
    pub fn netlink(&self) -> &Netlink {
        &self.nl
    }

    /// Adds `vip` to interface `ifindex`; succeeds when it is already there.
    /// IPv4 gets a broadcast address for prefixes shorter than /31; IPv6
    /// gets `IFA_F_NODAD`.
    pub async fn add(&self, ifindex: u32, vip: Vip) -> Result<(), IoError> {
        let mut req = self
            .nl
            .handle()
            .address()
            .add(ifindex, vip.addr, vip.prefix_len)
            .replace();
        if vip.addr.is_ipv6() {
            let msg = req.message_mut();
            msg.header.flags |= AddressHeaderFlags::Nodad;
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        req.execute()
            .await
            .map_err(IoError::netlink("add address"))?;
        debug!(%vip, ifindex, "VIP added");
        Ok(())
    }

    /// Removes `vip` (same address and prefix length) from interface
    /// `ifindex`; reports [`Removed::WasAbsent`] when it was not there.
    pub async fn del(&self, ifindex: u32, vip: Vip) -> Result<Removed, IoError> {
        let msg = address_message(ifindex, vip);
        match self.nl.handle().address().del(msg).execute().await {
            Ok(()) => {
                debug!(%vip, ifindex, "VIP removed");
                Ok(Removed::Yes)
            }
            Err(e) if matches!(errno_of(&e), Some(libc::EADDRNOTAVAIL | libc::ENOENT)) => {
                Ok(Removed::WasAbsent)
            }
            Err(e) => Err(IoError::netlink("delete address")(e)),
        }
    }

    /// Every address on interface `ifindex`.
    pub async fn list(&self, ifindex: u32) -> Result<Vec<IfAddress>, IoError> {
        self.nl.addresses(ifindex).await
    }

    /// Removes from interface `ifname` every address equal to one of `vips`
    /// (compared by address, whatever its prefix length): VIPs left behind
    /// by a halb that crashed while master. Run before the election starts.
    /// Returns what was removed.
    pub async fn cleanup_stale(
        &self,
        ifname: &str,
        vips: &[Vip],
    ) -> Result<Vec<IfAddress>, IoError> {
        let ifindex = self.nl.ifindex(ifname).await?;
        let mut removed = Vec::new();
        for found in self.list(ifindex).await? {
            if !vips.iter().any(|v| v.addr == found.addr) {
                continue;
            }
            let stale = Vip {
                addr: found.addr,
                prefix_len: found.prefix_len,
            };
            if self.del(ifindex, stale).await? == Removed::Yes {
                info!(vip = %stale, ifname, "removed a stale VIP left by an earlier run");
                removed.push(found);
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_bounds() {
        let v4: IpAddr = Ipv4Addr::new(192, 0, 2, 1).into();
        let v6: IpAddr = Ipv6Addr::LOCALHOST.into();
        assert!(Vip::new(v4, 32).is_ok());
        assert!(matches!(
            Vip::new(v4, 33),
            Err(IoError::InvalidPrefix { prefix_len: 33, .. })
        ));
        assert!(Vip::new(v6, 128).is_ok());
        assert!(Vip::new(v6, 129).is_err());
        assert_eq!(Vip::host(v4).prefix_len(), 32);
        assert_eq!(Vip::host(v6).prefix_len(), 128);
        assert_eq!(Vip::host(v4).to_string(), "192.0.2.1/32");
    }

    #[test]
    fn delete_message_carries_local_and_prefix() {
        let vip = Vip::new(Ipv4Addr::new(10, 1, 2, 3).into(), 24).expect("valid");
        let msg = address_message(7, vip);
        assert_eq!(msg.header.index, 7);
        assert_eq!(msg.header.prefix_len, 24);
        assert!(msg
            .attributes
            .contains(&AddressAttribute::Local(Ipv4Addr::new(10, 1, 2, 3).into())));
        assert!(msg
            .attributes
            .contains(&AddressAttribute::Broadcast(Ipv4Addr::new(10, 1, 2, 255))));
    }
}
