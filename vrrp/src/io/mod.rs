//! The VRRP driver's I/O: everything that touches the kernel, kept thin so
//! the protocol logic stays sans-IO. Tokio-based; every socket and netlink
//! handle is created in the network namespace of the calling thread.
//!
//! - [`vip`]: add/remove VIPs over rtnetlink, idempotently; remove stale VIPs at start.
//! - [`frames`]: send prebuilt Ethernet frames (gratuitous ARP, unsolicited
//!   NA) on AF_PACKET, in timed bursts.
//! - [`transport`]: the VRRP socket (raw IP protocol 112), multicast or unicast.
//! - [`vmac`]: the virtual MAC macvlan.
//! - [`link_watch`]: link up/down of tracked interfaces.
//! - [`track`]: tracking scripts and files.
//! - [`notify`]: notify programs on transitions.
//! - [`netlink`]: the shared rtnetlink handle and interface queries.

mod error;
pub mod frames;
pub mod link_watch;
pub mod netlink;
pub mod notify;
pub mod process;
mod sys;
pub mod track;
pub mod transport;
pub mod vip;
pub mod vmac;

pub use error::IoError;
pub use frames::{Burst, BurstHandle, BurstReport, FrameReceiver, FrameSocket, GratuitousSender};
pub use link_watch::{watch_links, LinkEvent, LinkState, LinkWatch};
pub use netlink::{link_local_v6, primary_ipv4, IfAddress, LinkDetails, Netlink};
pub use notify::{Notifier, NotifyKind, NotifyPrograms, NotifySpec, NotifyState};
pub use process::{run_with_timeout, RunOutcome};
pub use track::{
    spawn_track_file, spawn_track_script, FileReading, FileSpec, ProbeTask, ScriptResult,
    ScriptSpec,
};
pub use transport::{Datagram, Family, Inbound, TransportConfig, VrrpSocket};
pub use vip::{Removed, Vip, VipMover};
pub use vmac::{VmacLink, VmacMode, VmacSpec, Vmacs};
