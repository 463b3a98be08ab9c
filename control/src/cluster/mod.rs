//! Cluster control: authenticated heartbeats over redundant links, liveness,
//! votequorum-style quorum, fencing, and the coordinator that turns them
//! into decisions for the VRRP side.
//!
//! Layers, from the bytes up:
//!
//! - [`wire`]: the heartbeat codec (HMAC-SHA256, optional XChaCha20-Poly1305),
//!   the key-file loader and the per-sender replay guard.
//! - [`membership`]: sans-IO liveness: per node, per link last-heard times,
//!   heartbeat schedule, link/node up and down events.
//! - [`quorum`]: pure votequorum arithmetic (votes, expected votes, two_node,
//!   wait_for_all, a witness vote).
//! - [`fence`]: the ClusterLabs fence-agent protocol runner (tokio).
//! - [`coordinator`]: sans-IO core combining the above with node modes and
//!   the VIP ownership handshake; answers `may_be_master(instance)`.
//! - [`witness`]: the pure vote decision of `halb witness` (corosync-qnetd
//!   ffsplit-like); [`witness_server`]: its UDP server.
//! - [`driver`]: the tokio driver: UDP sockets per link, the cores, status and
//!   a watch channel of decisions.
//!
//! Nodes are identified by their position in `cluster.nodes` ([`NodeId`]);
//! every node must list the nodes in the same order (the [`wire::ClusterId`]
//! hash covers the names in order, so a mismatch is rejected and counted).

pub mod coordinator;
pub mod driver;
pub mod fence;
pub mod membership;
pub mod quorum;
pub mod wire;
pub mod witness;
pub mod witness_server;

mod types;

pub use types::*;
