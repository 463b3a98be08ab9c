//! VRRP v2/v3 for halb: pure, sans-IO protocol logic.
//!
//! - [`wire`]: zero-copy packet views and owned representations for VRRP
//!   adverts (RFC 9568 / RFC 3768), the surrounding IPv4 header, receive
//!   checks with typed [`wire::DropReason`]s, and byte builders for gratuitous
//!   ARP and unsolicited neighbour advertisements ([`wire::garp`]).
//! - [`router`]: the RFC 9568 section 6 state machine in the quinn-proto style:
//!   `handle(now, Input)`, `poll_action()`, `poll_timeout()`, `handle_timeout(now)`.
//! - [`track`]: effective priority and fault from tracked interfaces, scripts and files.
//! - [`sync_group`]: instances that change state together.
//!
//! Nothing in those modules opens a socket, reads a clock or spawns a task:
//! the driver passes `now` in and executes the returned actions.
//!
//! - [`io`]: the kernel side (VRRP sockets, AF_PACKET frames, rtnetlink VIPs,
//!   virtual MACs, link watch, track probes, notify programs).
//! - [`driver`]: the tokio driver that runs instances with all of the above.

pub mod driver;
mod error;
pub mod io;
pub mod router;
pub mod sync_group;
pub mod track;
mod units;
pub mod wire;

pub use error::Error;
pub use router::{Action, Input, Router, RouterConfig, State, StateKind, TransitionReason};
pub use units::{master_down_interval, skew_time, Centisecs, Priority, Secs, VrId};
