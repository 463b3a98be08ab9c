//! The UDP server of `halb witness`: receives the nodes' authenticated
//! heartbeats on `cluster.witness`, feeds the [`Witness`] core and answers
//! each one with a vote message to the address it came from.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::config::ClusterConfig;

use super::types::{Incarnation, NodeId, NodeSet, Seq};
use super::wire::{
    count_rejected, Body, ClusterId, ClusterKey, Codec, Header, KeyError, Message, ReplayGuard,
    WitnessVoteBody,
};
use super::witness::{Witness, WitnessConfig};

/// Why the witness cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessError {
    /// `cluster.witness` is not set and no listen address was given.
    #[error("cluster.witness is not set: the witness does not know its listen address")]
    NoAddress,
    /// The key file is unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The socket could not be bound.
    #[error("cannot bind the witness to {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// Counters of a witness run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessStats {
    /// Heartbeats answered.
    pub answered: u64,
    /// Of which with a "yes".
    pub votes_given: u64,
    /// Datagrams rejected (any reason; also counted per reason in
    /// `halb_cluster_rx_rejected_total{reason}`).
    pub rejected: u64,
}

/// A bound witness server.
pub struct WitnessServer {
    socket: UdpSocket,
    codec: Codec,
    guard: ReplayGuard,
    core: Witness,
    incarnation: Incarnation,
    seq: Seq,
    names: Vec<String>,
    stats: WitnessStats,
}

impl WitnessServer {
    /// Binds `listen` (default: `cluster.witness`) with the key from
    /// `cluster.auth_key_file` unless `key` is given. Must be called in a
    /// tokio runtime.
    pub fn bind(
        cluster: &ClusterConfig,
        key: Option<ClusterKey>,
        listen: Option<SocketAddr>,
    ) -> Result<WitnessServer, WitnessError> {
        let addr = listen.or(cluster.witness).ok_or(WitnessError::NoAddress)?;
        let key = match key {
            Some(k) => k,
            None => ClusterKey::load(&cluster.auth_key_file)?,
        };
        let std = std::net::UdpSocket::bind(addr)
            .map_err(|source| WitnessError::Bind { addr, source })?;
        std.set_nonblocking(true)
            .map_err(|source| WitnessError::Bind { addr, source })?;
        let socket =
            UdpSocket::from_std(std).map_err(|source| WitnessError::Bind { addr, source })?;
        let lease = cluster.heartbeat_interval * u32::from(cluster.miss_count);
        let incarnation = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(1)
            .max(1);
        Ok(WitnessServer {
            socket,
            codec: Codec::new(
                &key,
                ClusterId::from_names(cluster.nodes.iter().map(|n| n.name.as_str())),
                cluster.encrypt,
            ),
            guard: ReplayGuard::new(cluster.nodes.len(), None, false),
            core: Witness::new(WitnessConfig {
                nodes: cluster.nodes.len(),
                lease,
            }),
            incarnation: Incarnation(incarnation),
            seq: Seq(1),
            names: cluster.nodes.iter().map(|n| n.name.clone()).collect(),
            stats: WitnessStats::default(),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.socket.local_addr().ok()
    }

    /// Serves until `shutdown` completes; returns the counters.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> WitnessStats {
        tokio::pin!(shutdown);
        let mut buf = vec![0u8; 65_536];
        let mut granted: Option<NodeSet> = None;
        tracing::info!(addr = ?self.local_addr(), nodes = self.names.len(), "witness started");
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        let data = buf[..n].to_vec();
                        self.datagram(&data, from);
                        let g = self.core.granted();
                        if g != granted {
                            granted = g;
                            let members: Vec<&str> = g
                                .unwrap_or_default()
                                .iter()
                                .filter_map(|n| self.names.get(n.index()).map(String::as_str))
                                .collect();
                            tracing::info!(?members, "witness vote");
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "witness receive error");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }
        self.stats
    }

    fn datagram(&mut self, data: &[u8], from: SocketAddr) {
        let msg = match self.codec.open(data, None, &mut self.guard) {
            Ok(m) => m,
            Err(reason) => {
                count_rejected(reason);
                self.stats.rejected += 1;
                return;
            }
        };
        let Body::Heartbeat(hb) = msg.body else {
            count_rejected(super::wire::RejectReason::Malformed);
            self.stats.rejected += 1;
            return;
        };
        let members: NodeSet = hb.members.iter().copied().collect();
        let reply = self
            .core
            .heartbeat(Instant::now().into_std(), msg.header.sender, members);
        let answer = Message {
            header: Header {
                cluster: self.codec.cluster(),
                sender: NodeId::WITNESS,
                link: msg.header.link,
                incarnation: self.incarnation,
                seq: self.seq,
            },
            body: Body::WitnessVote(WitnessVoteBody {
                echo_incarnation: msg.header.incarnation,
                echo: msg.header.seq,
                vote: reply.vote,
                partition: reply.partition.iter().collect(),
            }),
        };
        self.seq = self.seq.next();
        match self.codec.encode(&answer) {
            Ok(bytes) => {
                if self.socket.try_send_to(&bytes, from).is_ok() {
                    self.stats.answered += 1;
                    if reply.vote {
                        self.stats.votes_given += 1;
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot encode witness vote"),
        }
    }
}
