//! halb's XDP L4 balancer: the C program under `bpf/` (built by build.rs
//! with clang) and its aya loader.
//!
//! Katran's model: the program only looks things up. User space
//! ([`XdpBalancer`]) builds each frontend's Maglev table with
//! `dataplane::maglev` (the same table and the same flow hash as the
//! user-space balancer, so both pick the same server for a client) and
//! swaps it into a map-in-map slot atomically. The program keeps an LRU
//! flow table so established flows stay on their server when the server
//! set changes, forwards with IPIP / IP6IP6 encapsulation or layer-2 DSR,
//! passes everything that is not a VIP untouched, and answers packets that
//! would not fit after encapsulation with ICMP "too big".
//!
//! The daemon's calls:
//!
//! | when | call |
//! |---|---|
//! | start | [`XdpBalancer::new`]`(&config, &XdpOptions::default())`; on `Err` log once and serve every XDP frontend from user space ([`XdpStatus::off`] for status); on `Ok` serve `report.fallback` from user space |
//! | reload | [`XdpBalancer::apply`]`(&config)` (no detach unless interface or mode changes) |
//! | health change | [`XdpBalancer::set_server_health`]`(backend, server, up)` |
//! | drain / enable | [`XdpBalancer::set_server_drained`]`(backend, server, drained)` |
//! | every few seconds | [`XdpBalancer::export_metrics`] (`halb_xdp_*`, runs [`XdpBalancer::maintain`]) |
//! | `halb status` | [`XdpBalancer::status`] (mode per interface: native, generic, off) |
//! | `halb run --upgrade`, old process | [`XdpBalancer::link_fds`] (sent to the new one) |
//! | `halb run --upgrade`, new process | [`XdpBalancer::load`], [`XdpBalancer::adopt_links`], then `apply` |
//! | stop | [`XdpBalancer::shutdown`] (or drop) |
//!
//! Backends of `forwarding = "ipip"` frontends decapsulate: with kernel
//! tunnel devices (tunl0 / ip6tnl0) or with [`Decap`], this crate's XDP
//! decapsulator.

pub mod abi;
mod balancer;
pub mod bench;
mod decap;
mod error;
mod link;
mod metrics;
mod nexthop;
pub mod object;
pub mod plan;
mod testrun;

pub use balancer::{
    ApplyReport, Fallback, FrontendStats, FrontendXdpStatus, HandedLink, InterfaceStatus,
    PinnedFlow, ServerSpec, ServerXdpStatus, Stats, XdpBalancer, XdpOptions, XdpState, XdpStatus,
};
pub use decap::Decap;
pub use error::Error;
pub use plan::{wants_xdp, AttachMode, ForwardMode, ServerCondition};
pub use testrun::{TestOutcome, XdpAction};
