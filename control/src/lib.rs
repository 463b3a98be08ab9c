//! Config model and validation, membership, quorum, fencing, admin API.

pub mod cluster;
pub mod config;
