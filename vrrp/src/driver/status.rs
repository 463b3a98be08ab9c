//! What an instance reports for `halb status`, the stats page and tests.

use std::net::IpAddr;
use std::time::SystemTime;

use crate::router::Stats;
use crate::StateKind;

/// A state transition as the driver saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionRecord {
    pub at: SystemTime,
    pub from: StateKind,
    pub to: StateKind,
    /// [`crate::TransitionReason::as_str`], or `"reload"` when a reload
    /// changed the state.
    pub reason: String,
}

/// Counters of one instance (the router's plus the driver's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    pub router: Stats,
    /// Received datagrams dropped by the receive checks (all reasons).
    pub rx_dropped: u64,
    /// Adverts the kernel refused to send.
    pub send_errors: u64,
    /// Gratuitous ARP / NA bursts started.
    pub gratuitous_bursts: u64,
    /// VIP add/remove requests that failed.
    pub vip_errors: u64,
    /// State transitions (every `to`).
    pub transitions: u64,
}

/// A snapshot of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceStatus {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    /// 2 or 3.
    pub version: u8,
    /// "ipv4" or "ipv6".
    pub family: &'static str,
    pub state: StateKind,
    pub base_priority: u8,
    pub effective_priority: u8,
    /// The advert source address, once known.
    pub primary_address: Option<IpAddr>,
    /// The master's address: ours when master, the last advertiser's when backup.
    pub master: Option<IpAddr>,
    pub master_priority: Option<u8>,
    pub last_transition: Option<TransitionRecord>,
    /// Configured VIPs, `addr/prefix`.
    pub vips: Vec<String>,
    /// Whether this node holds the VIPs now.
    pub vips_held: bool,
    /// Router fault (interface down, a weight-0 tracker, or the sync group).
    pub fault: bool,
    /// This instance's own fault (without its sync group's).
    pub own_fault: bool,
    /// Administrative standby (`Driver::set_standby`).
    pub standby: bool,
    /// Cluster control does not allow this instance to be master here.
    pub gated: bool,
    /// Why the instance is not running yet (no address, no interface, ...).
    pub waiting: Option<String>,
    pub sync_group: Option<String>,
    /// Multicast or the unicast peers.
    pub unicast_peers: Vec<IpAddr>,
    pub counters: Counters,
}

impl InstanceStatus {
    pub fn is_master(&self) -> bool {
        self.state == StateKind::Master
    }
}
