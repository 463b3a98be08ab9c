//! The parts of the daemon. Each part has the same shape: `start` from the
//! first config, `reload` with a validated new config (returning what
//! changed, or an error that leaves it as it was), `status`, and a graceful
//! `shutdown` bounded by a deadline.

pub mod cluster;
pub mod dataplane;
pub mod vrrp;
pub mod xdp;
