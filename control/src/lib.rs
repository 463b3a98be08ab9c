//! Config model and validation, membership, quorum, fencing, admin API.

pub mod config;
