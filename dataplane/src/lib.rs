//! User-space L4/L7 balancing, algorithms, health checks, draining.

pub mod balance;
pub mod health;
pub mod maglev;
pub mod proxy_protocol;
