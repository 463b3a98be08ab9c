//! The cluster coordinator: a sans-IO core that combines membership,
//! quorum, fencing state and node modes into decisions for the VRRP side.
//!
//! The driver feeds authenticated heartbeats, witness votes, fence results,
//! operator commands and the local VRRP state ([`Input`]), calls
//! [`Coordinator::handle`] with [`Input::Timeout`] at
//! [`Coordinator::poll_timeout`], and executes [`Action`]s: send a
//! heartbeat carrying this node's [`View`] on a link, run a fence agent, or
//! tell a VRRP router to take over at once. It reads
//! [`Coordinator::may_be_master`] per instance and
//! [`Coordinator::must_release_all`].
//!
//! # Who may hold an instance
//!
//! Every node advertises, per instance, its priority, whether it is
//! *eligible* (not standby or in maintenance, priority above 0, and allowed
//! by the no-quorum policy), whether it *holds* it (is master, or has been
//! allowed to become master), and which node it thinks should own it (its
//! *elected* node). The election is the same function on every node:
//! among the eligible nodes that are up, the one with the highest priority
//! (ties: lower node id); the current holder keeps it against equal
//! priorities, and with `failback = "manual"` against any priority until an
//! operator runs `halb node failback` on any node.
//!
//! A node that is elected and does not hold the instance yet *claims* it:
//! it remembers the sequence number of its next heartbeat (the claim
//! start). It may become master only when
//!
//! 1. it is quorate (or the policy is `ignore`),
//! 2. every node that is **down** in its view is known fenced or gracefully
//!    gone, or has no fence device (fencing not configured for it), and
//! 3. every node that is **up** and has the instance reports, in its latest
//!    heartbeat, that it does not hold it, that this node should own it, and
//!    that it received a heartbeat of this node sent at or after the claim
//!    start (the echo, matched on incarnation and sequence number).
//!
//! Two nodes cannot both pass 3 for the same instance at the same time:
//! each would need the other's acknowledgement sent after its own claim
//! started, while the other names itself throughout its claim. Rule 2
//! covers nodes that cannot hear each other both ways: a node out of reach
//! is fenced before anything is taken over. A node that holds an instance
//! keeps it while it stays eligible and elected; when it is no longer
//! (standby, lost quorum under `stop`, a preferred node returned), it lets
//! go and says so, after which the new owner's claim can complete.
//!
//! # Fencing
//!
//! A node with `may_fence` (quorate, or alone in a two-node cluster after
//! wait_for_all) that is the lowest node id of its partition, and whose
//! member set has not changed for 1.5 heartbeat intervals, asks for every
//! down node that is not known fenced or gone and has a fence device to be
//! fenced ([`Action::Fence`]). A failure is retried after `fence_retry`;
//! until a fence succeeds, rule 2 blocks every takeover. Success is
//! announced to the other nodes in heartbeats (`fenced`), so they need not
//! fence the same node again; such records are taken only from quorate
//! peers while quorate, and every record of a node out of reach is dropped
//! when this node loses quorum: another partition may have had quorum
//! meanwhile, and a fenced node may have restarted and taken instances
//! there, so it is fenced again before anything is taken over.
//!
//! # Witness
//!
//! A witness reply counts as one vote while its lease runs (detection time
//! from the send time of the heartbeat it answers) and while it was given
//! to exactly this node's member set; after the member set shrank, a vote
//! for the larger set still counts for one detection time, so a survivor
//! keeps quorum while the witness confirms the new set. With a witness, a
//! down node without fence device counts as gone (rule 2) only after it
//! has been down for the detection time.
//!
//! # Fast takeover
//!
//! When an instance becomes allowed while its last known holder is down
//! (and by rule 2 fenced, gone, or unfenceable), [`Action::Takeover`] tells
//! the VRRP router to become master without waiting for
//! Master_Down_Interval.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::{ClusterConfig, Failback, NoQuorumPolicy};

use super::membership::{self, Membership, MembershipConfig, MembershipError};
use super::quorum::{evaluate, QuorumInput, QuorumParams, QuorumState};
use super::types::{Incarnation, InstanceId, LinkId, NodeId, NodeSet, Seq};
use super::wire::{Echo, HeartbeatBody, InstanceState, NodeFlags};

/// How many sent heartbeats are remembered (for witness leases).
const SENT_RING: usize = 1024;
/// How many fencing results are kept for the status.
const FENCE_LOG: usize = 16;

/// A VRRP instance known to the coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSpec {
    /// `[[vrrp]] name`.
    pub name: String,
    /// The configured priority (the driver updates the effective one).
    pub priority: u8,
}

/// Settings of a [`Coordinator`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorConfig {
    /// This node.
    pub me: NodeId,
    /// Names of all nodes, by [`NodeId`].
    pub node_names: Vec<String>,
    /// This process's incarnation (at least 1; increasing across restarts).
    pub incarnation: Incarnation,
    /// Number of links.
    pub links: usize,
    /// Time between heartbeats.
    pub heartbeat_interval: Duration,
    /// Heartbeats missed before a link is down.
    pub miss_count: u8,
    /// Quorum settings.
    pub quorum: QuorumParams,
    /// What to do without quorum.
    pub no_quorum_policy: NoQuorumPolicy,
    /// Automatic or manual failback.
    pub failback: Failback,
    /// Nodes that some fence device covers.
    pub fenceable: NodeSet,
    /// Wait after a failed fence before trying again.
    pub fence_retry: Duration,
    /// How long a `failback` request stays active at most.
    pub failback_window: Duration,
    /// After start, nodes never heard are neither fenced nor considered
    /// safe for this long (they may simply not have been heard yet; like
    /// Pacemaker's dc-deadtime before startup fencing).
    pub startup_grace: Duration,
    /// The VRRP instances, by [`InstanceId`].
    pub instances: Vec<InstanceSpec>,
}

impl CoordinatorConfig {
    /// Settings from a cluster section: `me` is this node's name. Fences are
    /// retried after `max(1 s, detection time)`; a failback request lasts
    /// at most 60 s; the startup grace is twice the detection time.
    pub fn from_cluster(
        c: &ClusterConfig,
        me: &str,
        incarnation: Incarnation,
        instances: Vec<InstanceSpec>,
    ) -> Result<CoordinatorConfig, CoordinatorError> {
        let pos = c
            .nodes
            .iter()
            .position(|n| n.name == me)
            .ok_or_else(|| CoordinatorError::NotAMember(me.to_owned()))?;
        let fenceable: NodeSet = c
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| c.fence_devices.iter().any(|d| d.nodes.contains(&n.name)))
            .map(|(i, _)| NodeId(i as u16))
            .collect();
        let detection = c.heartbeat_interval * u32::from(c.miss_count);
        Ok(CoordinatorConfig {
            me: NodeId(u16::try_from(pos).map_err(|_| CoordinatorError::TooManyNodes(pos))?),
            node_names: c.nodes.iter().map(|n| n.name.clone()).collect(),
            incarnation,
            links: c.nodes.first().map_or(1, |n| n.addresses.len()),
            heartbeat_interval: c.heartbeat_interval,
            miss_count: c.miss_count,
            quorum: QuorumParams::from_config(c),
            no_quorum_policy: c.no_quorum_policy,
            failback: c.failback,
            fenceable,
            fence_retry: detection.max(Duration::from_secs(1)),
            failback_window: Duration::from_secs(60),
            startup_grace: detection * 2,
            instances,
        })
    }

    /// `heartbeat_interval * miss_count`.
    pub fn detection_time(&self) -> Duration {
        self.heartbeat_interval * u32::from(self.miss_count)
    }
}

/// Why a [`Coordinator`] cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoordinatorError {
    /// This node's name is not in `cluster.nodes`.
    #[error("node '{0}' is not listed in cluster.nodes")]
    NotAMember(String),
    /// More nodes than supported.
    #[error("{0} nodes: at most {max} are supported", max = super::types::MAX_NODES)]
    TooManyNodes(usize),
    /// More instances than a heartbeat can carry.
    #[error("{0} VRRP instances: at most 1024 are supported")]
    TooManyInstances(usize),
    /// Node names and node count disagree.
    #[error("{names} node names for {votes} node votes")]
    NodeNames {
        /// Names given.
        names: usize,
        /// Votes given.
        votes: usize,
    },
    /// Incarnation 0 is reserved.
    #[error("incarnation 0 is reserved")]
    ZeroIncarnation,
    /// Invalid membership settings.
    #[error(transparent)]
    Membership(#[from] MembershipError),
}

/// One instance in a [`View`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InstanceView {
    /// The sender's priority.
    pub priority: u8,
    /// The sender could hold it.
    pub eligible: bool,
    /// The sender holds it or is allowed to.
    pub holds: bool,
    /// Who the sender thinks should hold it.
    pub owner: Option<NodeId>,
}

/// What a node tells the others in each heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct View {
    /// Node flags.
    pub flags: NodeFlags,
    /// Nodes the sender sees up (itself included).
    pub members: NodeSet,
    /// Last message received from each peer.
    pub echoes: Vec<Echo>,
    /// Nodes known fenced, with the fenced incarnation (0 = never seen).
    pub fenced: Vec<(NodeId, Incarnation)>,
    /// Nodes known to have left gracefully, with that incarnation.
    pub left: Vec<(NodeId, Incarnation)>,
    /// Per [`InstanceId`] of the receiver; `None` = the sender does not have
    /// this instance.
    pub instances: Vec<Option<InstanceView>>,
}

impl View {
    /// The echo of `node`'s messages.
    pub fn echo_of(&self, node: NodeId) -> Option<Echo> {
        self.echoes.iter().find(|e| e.node == node).copied()
    }

    /// The entry of an instance.
    pub fn instance(&self, id: InstanceId) -> Option<&InstanceView> {
        self.instances.get(id.index()).and_then(|i| i.as_ref())
    }

    /// Equal apart from the echoes (which change with every message).
    pub fn same_state(&self, other: &View) -> bool {
        self.flags == other.flags
            && self.members == other.members
            && self.fenced == other.fenced
            && self.left == other.left
            && self.instances == other.instances
    }

    /// The wire body; `names` are the instance names by [`InstanceId`].
    pub fn to_wire(&self, names: &[String]) -> HeartbeatBody {
        HeartbeatBody {
            flags: self.flags,
            members: self.members.iter().collect(),
            echoes: self.echoes.clone(),
            fenced: self.fenced.clone(),
            left: self.left.clone(),
            instances: self
                .instances
                .iter()
                .zip(names)
                .filter_map(|(i, name)| {
                    i.map(|i| InstanceState {
                        name: name.clone(),
                        priority: i.priority,
                        eligible: i.eligible,
                        holds: i.holds,
                        owner: i.owner,
                    })
                })
                .collect(),
        }
    }

    /// A view from a wire body: instances are matched by name against
    /// `names` (the receiver's instances); unknown names are dropped.
    pub fn from_wire(body: &HeartbeatBody, names: &[String]) -> View {
        let mut instances = vec![None; names.len()];
        for s in &body.instances {
            if let Some(pos) = names.iter().position(|n| *n == s.name) {
                instances[pos] = Some(InstanceView {
                    priority: s.priority,
                    eligible: s.eligible,
                    holds: s.holds,
                    owner: s.owner,
                });
            }
        }
        View {
            flags: body.flags,
            members: body.members.iter().copied().collect(),
            echoes: body.echoes.clone(),
            fenced: body.fenced.clone(),
            left: body.left.clone(),
            instances,
        }
    }
}

/// Operator commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    /// Move every instance away and stay away.
    Standby,
    /// Leave standby.
    Unstandby,
    /// Keep what is held, take nothing new, fence nothing, release nothing.
    Maintenance,
    /// Leave maintenance.
    Unmaintenance,
    /// Give every instance back to its preferred (highest-priority) node,
    /// also with `failback = "manual"`.
    Failback,
    /// Graceful shutdown: release everything, then tell the others.
    Leave,
}

/// Inputs of [`Coordinator::handle`].
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// An authenticated heartbeat.
    Heartbeat {
        /// The link it arrived on.
        link: LinkId,
        /// The sender.
        from: NodeId,
        /// The sender's incarnation.
        incarnation: Incarnation,
        /// Its sequence number.
        seq: Seq,
        /// Its view.
        view: View,
    },
    /// An authenticated witness reply.
    WitnessVote {
        /// Incarnation of the heartbeat it answers (ours).
        echo_incarnation: Incarnation,
        /// Sequence number of the heartbeat it answers.
        echo: Seq,
        /// Whether the witness votes for our partition.
        vote: bool,
        /// The member set it votes for.
        partition: NodeSet,
    },
    /// A fence request ([`Action::Fence`]) finished.
    FenceDone {
        /// The target.
        node: NodeId,
        /// Whether it is fenced.
        ok: bool,
    },
    /// An operator command.
    Command(Command),
    /// The local VRRP state of an instance.
    Local {
        /// The instance.
        instance: InstanceId,
        /// The router is master (its VIPs are configured).
        holding: bool,
        /// Its effective priority (tracking included).
        priority: u8,
    },
    /// Time passed.
    Timeout,
}

/// What happened, for logs and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A link or node liveness change.
    Membership(membership::Event),
    /// A peer restarted (new incarnation).
    NodeRestarted {
        /// The peer.
        node: NodeId,
    },
    /// A peer left gracefully.
    NodeLeft {
        /// The peer.
        node: NodeId,
    },
    /// A peer that was fenced is heard again in the same incarnation: the
    /// fence did not take effect.
    FencedNodeHeard {
        /// The peer.
        node: NodeId,
    },
    /// The quorum state changed.
    Quorum(QuorumState),
    /// A fence succeeded (by this node, or learnt from `by`).
    Fenced {
        /// The target.
        node: NodeId,
        /// The node that reported it, `None` = this node.
        by: Option<NodeId>,
    },
    /// A fence by this node failed; retried after `fence_retry`.
    FenceFailed {
        /// The target.
        node: NodeId,
    },
    /// `may_be_master` of an instance changed.
    Permission {
        /// The instance.
        instance: InstanceId,
        /// The new value.
        may_be_master: bool,
    },
}

/// Outputs of [`Coordinator::poll_action`].
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this view to every peer (and the witness) on `link`, as message
    /// `seq` of this incarnation.
    Send {
        /// The link.
        link: LinkId,
        /// The message's sequence number.
        seq: Seq,
        /// The view.
        view: Arc<View>,
    },
    /// Fence this node, then report [`Input::FenceDone`].
    Fence {
        /// The target.
        node: NodeId,
    },
    /// Become master of this instance now (skip Master_Down_Interval): its
    /// holder is gone.
    Takeover {
        /// The instance.
        instance: InstanceId,
    },
    /// For logs and status.
    Event(Event),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gone {
    No,
    Fenced(Incarnation),
    Left(Incarnation),
}

/// Fencing progress for one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FenceState {
    /// Nothing running.
    Idle,
    /// An [`Action::Fence`] is being executed.
    Running,
    /// The last attempt failed; retried later.
    Failed,
}

#[derive(Debug, Clone)]
struct Peer {
    incarnation: Option<Incarnation>,
    view_seq: Option<Seq>,
    view: Option<Arc<View>>,
    last_rx: Option<Seq>,
    gone: Gone,
    fence: FenceState,
    fence_retry_at: Option<Instant>,
    down_since: Option<Instant>,
}

#[derive(Debug, Clone)]
struct Local {
    priority: u8,
    reported_holding: bool,
    permitted: bool,
    claim_start: Option<Seq>,
    elected: Option<NodeId>,
    last_holder: Option<NodeId>,
    takeovers: u64,
}

/// A fencing result remembered for the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceRecord {
    /// The target.
    pub node: NodeId,
    /// Success.
    pub ok: bool,
    /// When it was reported.
    pub at: Instant,
    /// Who reported it (`None` = this node).
    pub by: Option<NodeId>,
}

/// The coordinator core. See the module documentation.
#[derive(Debug, Clone)]
pub struct Coordinator {
    cfg: CoordinatorConfig,
    all: NodeSet,
    membership: Membership,
    peers: Vec<Peer>,
    locals: Vec<Local>,
    next_seq: Seq,
    sent: Vec<(Seq, Instant)>,
    standby: bool,
    maintenance: bool,
    leaving: bool,
    left_announced: bool,
    failback_until: Option<Instant>,
    ever_seen: NodeSet,
    all_seen_together: bool,
    quorum: QuorumState,
    witness_until: Option<Instant>,
    witness_partition: NodeSet,
    actions: VecDeque<Action>,
    last_sent: Option<Arc<View>>,
    fence_log: VecDeque<FenceRecord>,
    fence_log_total: u64,
    grace_until: Option<Instant>,
    last_up: NodeSet,
    members_changed_at: Instant,
    /// The next moment a rule that depends on elapsed time may change.
    wake_at: Option<Instant>,
}

impl Coordinator {
    /// A coordinator starting at `now`.
    pub fn new(cfg: CoordinatorConfig, now: Instant) -> Result<Coordinator, CoordinatorError> {
        let n = cfg.quorum.node_votes.len();
        if cfg.node_names.len() != n {
            return Err(CoordinatorError::NodeNames {
                names: cfg.node_names.len(),
                votes: n,
            });
        }
        if cfg.instances.len() > 1024 {
            return Err(CoordinatorError::TooManyInstances(cfg.instances.len()));
        }
        if cfg.incarnation.0 == 0 {
            return Err(CoordinatorError::ZeroIncarnation);
        }
        let membership = Membership::new(
            MembershipConfig {
                me: cfg.me,
                nodes: n,
                links: cfg.links,
                heartbeat_interval: cfg.heartbeat_interval,
                miss_count: cfg.miss_count,
            },
            now,
        )?;
        let peer = Peer {
            incarnation: None,
            view_seq: None,
            view: None,
            last_rx: None,
            gone: Gone::No,
            fence: FenceState::Idle,
            fence_retry_at: None,
            down_since: Some(now),
        };
        let locals = cfg
            .instances
            .iter()
            .map(|i| Local {
                priority: i.priority,
                reported_holding: false,
                permitted: false,
                claim_start: None,
                elected: None,
                last_holder: None,
                takeovers: 0,
            })
            .collect();
        let mut c = Coordinator {
            all: NodeSet::first(n),
            membership,
            peers: vec![peer; n],
            locals,
            next_seq: Seq(1),
            sent: vec![(Seq(0), now); SENT_RING],
            standby: false,
            maintenance: false,
            leaving: false,
            left_announced: false,
            failback_until: None,
            ever_seen: NodeSet::single(cfg.me),
            all_seen_together: false,
            quorum: QuorumState {
                votes: 0,
                expected: 0,
                quorum: 0,
                quorate: false,
                may_fence: false,
                wait_for_all_pending: false,
            },
            witness_until: None,
            witness_partition: NodeSet::EMPTY,
            actions: VecDeque::new(),
            last_sent: None,
            fence_log: VecDeque::new(),
            fence_log_total: 0,
            grace_until: Some(now + cfg.startup_grace),
            last_up: NodeSet::single(cfg.me),
            members_changed_at: now,
            wake_at: None,
            cfg,
        };
        c.step(now);
        Ok(c)
    }

    /// The settings.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.cfg
    }

    /// Handles one input at `now`.
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Heartbeat {
                link,
                from,
                incarnation,
                seq,
                view,
            } => self.on_heartbeat(now, link, from, incarnation, seq, view),
            Input::WitnessVote {
                echo_incarnation,
                echo,
                vote,
                partition,
            } => self.on_witness(echo_incarnation, echo, vote, partition),
            Input::FenceDone { node, ok } => self.on_fence_done(now, node, ok),
            Input::Command(c) => self.on_command(now, c),
            Input::Local {
                instance,
                holding,
                priority,
            } => {
                if let Some(l) = self.locals.get_mut(instance.index()) {
                    l.reported_holding = holding;
                    l.priority = priority;
                }
            }
            Input::Timeout => {}
        }
        self.membership.handle(now, membership::Input::Timeout);
        self.step(now);
    }

    /// The next action, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Input::Timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.membership.poll_timeout();
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        for p in &self.peers {
            if p.fence == FenceState::Failed {
                consider(p.fence_retry_at);
            }
        }
        consider(self.witness_until);
        consider(self.failback_until);
        consider(self.grace_until);
        consider(self.wake_at);
        t
    }

    /// Whether the VRRP router of `instance` may be (or become) master.
    pub fn may_be_master(&self, instance: InstanceId) -> bool {
        self.locals
            .get(instance.index())
            .is_some_and(|l| l.permitted)
    }

    /// Release every VIP and stop accepting new connections: no quorum under
    /// `stop`, standby, or leaving (never in maintenance).
    pub fn must_release_all(&self) -> bool {
        !self.maintenance
            && (self.leaving
                || self.standby
                || (self.cfg.no_quorum_policy == NoQuorumPolicy::Stop && !self.quorum.quorate))
    }

    /// Whether `node` must be fenced before its instances can be taken
    /// over: it is down, not known fenced or gone, and a device covers it.
    pub fn fence_needed(&self, node: NodeId) -> bool {
        node != self.cfg.me
            && node.index() < self.peers.len()
            && !self.membership.node_up(node)
            && self.peers[node.index()].gone == Gone::No
            && self.cfg.fenceable.contains(node)
    }

    /// Still in the startup grace for a node never heard.
    fn in_grace(&self, now: Instant, node: NodeId) -> bool {
        self.grace_until.is_some_and(|t| now < t) && !self.ever_seen.contains(node)
    }

    /// The current quorum state.
    pub fn quorum(&self) -> QuorumState {
        self.quorum
    }

    /// Nodes up in this node's view.
    pub fn members(&self) -> NodeSet {
        self.membership.up_set()
    }

    /// The liveness core.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The node elected for an instance in this node's view.
    pub fn elected(&self, instance: InstanceId) -> Option<NodeId> {
        self.locals.get(instance.index()).and_then(|l| l.elected)
    }

    /// How many [`Action::Takeover`] hints were given for an instance.
    pub fn takeovers(&self, instance: InstanceId) -> u64 {
        self.locals.get(instance.index()).map_or(0, |l| l.takeovers)
    }

    /// Standby, maintenance, leaving flags.
    pub fn modes(&self) -> (bool, bool, bool) {
        (self.standby, self.maintenance, self.leaving)
    }

    /// After [`Command::Leave`]: everything is released and the others were
    /// told; the process may stop.
    pub fn leave_complete(&self) -> bool {
        self.left_announced
    }

    /// Whether every node has been up at the same time once (wait_for_all).
    pub fn all_seen_together(&self) -> bool {
        self.all_seen_together
    }

    /// Whether the node is known fenced (and not heard since).
    pub fn is_fenced(&self, node: NodeId) -> bool {
        self.peers
            .get(node.index())
            .is_some_and(|p| matches!(p.gone, Gone::Fenced(_)))
    }

    /// Whether the node left gracefully (and not heard since).
    pub fn has_left(&self, node: NodeId) -> bool {
        self.peers
            .get(node.index())
            .is_some_and(|p| matches!(p.gone, Gone::Left(_)))
    }

    /// Fencing progress for a node.
    pub fn fence_state(&self, node: NodeId) -> FenceState {
        self.peers
            .get(node.index())
            .map_or(FenceState::Idle, |p| p.fence)
    }

    /// The latest view received from a peer (current incarnation).
    pub fn peer_view(&self, node: NodeId) -> Option<&View> {
        self.peers.get(node.index()).and_then(|p| p.view.as_deref())
    }

    /// A peer's incarnation, when heard.
    pub fn peer_incarnation(&self, node: NodeId) -> Option<Incarnation> {
        self.peers.get(node.index()).and_then(|p| p.incarnation)
    }

    /// Recent fencing results (the last 16), oldest first.
    pub fn fence_log(&self) -> impl DoubleEndedIterator<Item = &FenceRecord> {
        self.fence_log.iter()
    }

    /// How many fencing results were logged since start.
    pub fn fence_log_total(&self) -> u64 {
        self.fence_log_total
    }

    /// The view the next heartbeat would carry.
    pub fn view(&self) -> View {
        self.build_view()
    }

    /// A snapshot for `halb status`.
    pub fn status(&self, now: Instant) -> CoreStatus {
        let up = self.membership.up_set();
        let nodes = (0..self.peers.len())
            .map(|i| {
                let id = NodeId(i as u16);
                let p = &self.peers[i];
                let view = p.view.as_deref();
                let state = if id == self.cfg.me {
                    self.own_state()
                } else if up.contains(id) {
                    match view.map(|v| v.flags) {
                        Some(f) if f.maintenance => NodeState::Maintenance,
                        Some(f) if f.standby => NodeState::Standby,
                        _ => NodeState::Online,
                    }
                } else {
                    match p.gone {
                        Gone::Fenced(_) => NodeState::Fenced,
                        Gone::Left(_) => NodeState::Left,
                        Gone::No if self.cfg.fenceable.contains(id) => NodeState::Unclean,
                        Gone::No => NodeState::Offline,
                    }
                };
                let links = (0..self.cfg.links)
                    .map(|l| {
                        let link = LinkId(l as u8);
                        LinkStatus {
                            link,
                            up: id == self.cfg.me || self.membership.link_up(id, link),
                            last_heard_ms: self.membership.last_heard(id, link).map(|t| {
                                u64::try_from(now.saturating_duration_since(t).as_millis())
                                    .unwrap_or(u64::MAX)
                            }),
                        }
                    })
                    .collect();
                NodeStatus {
                    id,
                    name: self.cfg.node_names[i].clone(),
                    state,
                    votes: self.cfg.quorum.node_votes.get(i).copied().unwrap_or(0),
                    incarnation: if id == self.cfg.me {
                        Some(self.cfg.incarnation)
                    } else {
                        p.incarnation
                    },
                    fence: p.fence,
                    links,
                }
            })
            .collect();
        let instances = self
            .cfg
            .instances
            .iter()
            .zip(&self.locals)
            .enumerate()
            .map(|(i, (spec, l))| {
                let id = InstanceId(i as u16);
                let mut holders = Vec::new();
                if l.permitted || l.reported_holding {
                    holders.push(self.cfg.me);
                }
                for n in up.iter().filter(|n| *n != self.cfg.me) {
                    if self.peers[n.index()]
                        .view
                        .as_deref()
                        .and_then(|v| v.instance(id))
                        .is_some_and(|iv| iv.holds)
                    {
                        holders.push(n);
                    }
                }
                InstanceStatus {
                    name: spec.name.clone(),
                    priority: l.priority,
                    may_be_master: l.permitted,
                    holding: l.reported_holding,
                    elected: l.elected,
                    holders,
                    waiting_for_fence: (0..self.peers.len())
                        .map(|n| NodeId(n as u16))
                        .filter(|n| self.fence_needed(*n))
                        .collect(),
                    takeovers: l.takeovers,
                }
            })
            .collect();
        CoreStatus {
            me: self.cfg.me,
            incarnation: self.cfg.incarnation,
            quorum: self.quorum,
            policy: match self.cfg.no_quorum_policy {
                NoQuorumPolicy::Stop => "stop",
                NoQuorumPolicy::Freeze => "freeze",
                NoQuorumPolicy::Ignore => "ignore",
            }
            .to_owned(),
            failback: match self.cfg.failback {
                Failback::Auto => "auto",
                Failback::Manual => "manual",
            }
            .to_owned(),
            standby: self.standby,
            maintenance: self.maintenance,
            leaving: self.leaving,
            failback_requested: self.failback_until.is_some(),
            witness_vote: self.witness_counts(now),
            must_release_all: self.must_release_all(),
            nodes,
            instances,
        }
    }

    fn own_state(&self) -> NodeState {
        if self.maintenance {
            NodeState::Maintenance
        } else if self.standby {
            NodeState::Standby
        } else if self.leaving {
            NodeState::Left
        } else {
            NodeState::Online
        }
    }

    fn on_heartbeat(
        &mut self,
        now: Instant,
        link: LinkId,
        from: NodeId,
        incarnation: Incarnation,
        seq: Seq,
        view: View,
    ) {
        if from == self.cfg.me || from.index() >= self.peers.len() {
            return;
        }
        let p = &mut self.peers[from.index()];
        match p.incarnation {
            Some(known) if incarnation < known => return,
            Some(known) if incarnation > known => {
                p.view = None;
                p.view_seq = None;
                p.last_rx = None;
                p.gone = Gone::No;
                p.incarnation = Some(incarnation);
                self.actions
                    .push_back(Action::Event(Event::NodeRestarted { node: from }));
            }
            Some(_) => {}
            None => {
                p.incarnation = Some(incarnation);
                p.gone = Gone::No;
            }
        }
        let p = &mut self.peers[from.index()];
        match p.gone {
            Gone::Left(i) if i == incarnation => return,
            Gone::Fenced(i) if i == incarnation => {
                p.gone = Gone::No;
                self.actions
                    .push_back(Action::Event(Event::FencedNodeHeard { node: from }));
            }
            _ => {}
        }
        let p = &mut self.peers[from.index()];
        p.last_rx = Some(p.last_rx.map_or(seq, |s| s.max(seq)));
        let newer = p.view_seq.is_none_or(|s| seq > s);
        let mut changed = false;
        if newer {
            changed = p.view.as_deref().is_none_or(|old| !old.same_state(&view));
            p.view_seq = Some(seq);
            p.view = Some(Arc::new(view));
        }
        let Some(view) = p.view.clone() else {
            return;
        };
        if newer && view.flags.leaving && view.instances.iter().flatten().all(|i| !i.holds) {
            p.gone = Gone::Left(incarnation);
            self.membership
                .handle(now, membership::Input::Forget { node: from });
            self.actions
                .push_back(Action::Event(Event::NodeLeft { node: from }));
            return;
        }
        self.membership
            .handle(now, membership::Input::Heard { node: from, link });
        if !newer {
            return;
        }
        for (i, iv) in view.instances.iter().enumerate() {
            if let (Some(iv), Some(l)) = (iv, self.locals.get_mut(i)) {
                if iv.holds {
                    l.last_holder = Some(from);
                } else if l.last_holder == Some(from) {
                    l.last_holder = None;
                }
            }
        }
        // A peer heard a newer life of some node: what we know of the older
        // one (including that it was fenced) no longer applies.
        for e in &view.echoes {
            self.learn_incarnation(e.node, e.incarnation);
        }
        // Fence records are taken only from a quorate peer while quorate
        // (see forget_gone).
        if self.quorum.quorate && view.flags.quorate {
            for (x, finc) in &view.fenced {
                self.learn_fenced(now, *x, *finc, from);
            }
            for (x, linc) in &view.left {
                self.learn_left(*x, *linc);
            }
        }
        if changed {
            self.membership.handle(now, membership::Input::SendSoon);
        }
    }

    /// Fence and leave records hold only while this node stays quorate:
    /// once it is not, another partition may have been quorate and a
    /// fenced node may have restarted and taken instances there. Nodes out
    /// of reach must then be fenced again before anything is taken over.
    fn forget_gone(&mut self, up: NodeSet) {
        for (i, p) in self.peers.iter_mut().enumerate() {
            if !up.contains(NodeId(i as u16)) && p.gone != Gone::No {
                p.gone = Gone::No;
            }
        }
    }

    /// On becoming quorate: take over the fence records of quorate peers.
    fn relearn_fenced(&mut self, now: Instant, up: NodeSet) {
        let mut acks = Vec::new();
        for n in up.iter().filter(|n| *n != self.cfg.me) {
            if let Some(v) = self.peers[n.index()].view.as_deref() {
                if v.flags.quorate {
                    acks.extend(v.fenced.iter().map(|(x, i)| (*x, *i, Some(n))));
                    acks.extend(v.left.iter().map(|(x, i)| (*x, *i, None)));
                }
            }
        }
        for (x, i, fenced_by) in acks {
            match fenced_by {
                Some(from) => self.learn_fenced(now, x, i, from),
                None => self.learn_left(x, i),
            }
        }
    }

    fn learn_incarnation(&mut self, x: NodeId, inc: Incarnation) {
        if x == self.cfg.me || x.index() >= self.peers.len() {
            return;
        }
        let p = &mut self.peers[x.index()];
        if p.incarnation.is_none_or(|known| inc > known) {
            let restarted = p.incarnation.is_some();
            p.incarnation = Some(inc);
            p.view = None;
            p.view_seq = None;
            p.last_rx = None;
            if matches!(p.gone, Gone::Fenced(i) | Gone::Left(i) if i < inc) {
                p.gone = Gone::No;
            }
            if restarted {
                self.actions
                    .push_back(Action::Event(Event::NodeRestarted { node: x }));
            }
        }
    }

    /// A quorate peer saw `x` leave gracefully in incarnation `inc`.
    fn learn_left(&mut self, x: NodeId, inc: Incarnation) {
        if x == self.cfg.me || x.index() >= self.peers.len() || self.membership.node_up(x) {
            return;
        }
        let p = &mut self.peers[x.index()];
        if p.gone == Gone::No && p.incarnation.is_none_or(|j| j <= inc) {
            p.incarnation = Some(inc);
            p.gone = Gone::Left(inc);
            self.actions
                .push_back(Action::Event(Event::NodeLeft { node: x }));
        }
    }

    fn learn_fenced(&mut self, now: Instant, x: NodeId, finc: Incarnation, from: NodeId) {
        if x == self.cfg.me || x.index() >= self.peers.len() || self.membership.node_up(x) {
            return;
        }
        let p = &mut self.peers[x.index()];
        if p.gone != Gone::No {
            return;
        }
        if p.incarnation.is_none_or(|j| j <= finc) {
            p.gone = Gone::Fenced(finc);
            if p.fence == FenceState::Failed {
                p.fence = FenceState::Idle;
            }
            self.log_fence(now, x, true, Some(from));
            self.actions.push_back(Action::Event(Event::Fenced {
                node: x,
                by: Some(from),
            }));
        }
    }

    fn on_witness(&mut self, echo_inc: Incarnation, echo: Seq, vote: bool, partition: NodeSet) {
        if !self.cfg.quorum.witness || echo_inc != self.cfg.incarnation {
            return;
        }
        if !vote {
            self.witness_until = None;
            return;
        }
        let slot = (echo.0 % SENT_RING as u64) as usize;
        let (s, sent_at) = self.sent[slot];
        if s != echo || echo.0 == 0 {
            return;
        }
        let until = sent_at + self.cfg.detection_time();
        if partition != self.witness_partition {
            self.witness_partition = partition;
            self.witness_until = Some(until);
        } else {
            self.witness_until = Some(self.witness_until.map_or(until, |u| u.max(until)));
        }
    }

    fn on_fence_done(&mut self, now: Instant, node: NodeId, ok: bool) {
        if node == self.cfg.me || node.index() >= self.peers.len() {
            return;
        }
        let retry = self.cfg.fence_retry;
        let p = &mut self.peers[node.index()];
        if ok {
            p.gone = Gone::Fenced(p.incarnation.unwrap_or(Incarnation(0)));
            p.fence = FenceState::Idle;
            p.fence_retry_at = None;
            self.membership
                .handle(now, membership::Input::Forget { node });
            self.actions
                .push_back(Action::Event(Event::Fenced { node, by: None }));
        } else {
            p.fence = FenceState::Failed;
            p.fence_retry_at = Some(now + retry);
            self.actions
                .push_back(Action::Event(Event::FenceFailed { node }));
        }
        self.log_fence(now, node, ok, None);
    }

    fn log_fence(&mut self, now: Instant, node: NodeId, ok: bool, by: Option<NodeId>) {
        if self.fence_log.len() == FENCE_LOG {
            self.fence_log.pop_front();
        }
        self.fence_log_total += 1;
        self.fence_log.push_back(FenceRecord {
            node,
            ok,
            at: now,
            by,
        });
    }

    fn on_command(&mut self, now: Instant, c: Command) {
        match c {
            Command::Standby => self.standby = true,
            Command::Unstandby => self.standby = false,
            Command::Maintenance => self.maintenance = true,
            Command::Unmaintenance => self.maintenance = false,
            Command::Failback => self.failback_until = Some(now + self.cfg.failback_window),
            Command::Leave => self.leaving = true,
        }
        self.membership.handle(now, membership::Input::SendSoon);
    }

    /// The witness vote counts while its lease runs and it was given to
    /// exactly this node's member set, or to a superset of it for up to one
    /// detection time after the member set shrank (the time to get the
    /// witness's answer for the new set without a quorum dip).
    fn witness_counts(&self, now: Instant) -> bool {
        let up = self.membership.up_set();
        let p = self.witness_partition;
        self.cfg.quorum.witness
            && self.witness_until.is_some_and(|t| now < t)
            && (p == up
                || (up.0 & p.0 == up.0
                    && now < self.members_changed_at + self.cfg.detection_time()))
    }

    /// Whether a down node without fence device may be treated as safe:
    /// at once without a witness; with a witness only after the detection
    /// time, when a vote it might still count has run out.
    fn unfenced_safe(&self, now: Instant, node: NodeId) -> bool {
        !self.cfg.quorum.witness
            || self.peers[node.index()]
                .down_since
                .is_some_and(|t| now >= t + self.cfg.detection_time())
    }

    /// Everything after an input: membership events, quorum, elections,
    /// permissions, fencing, heartbeats.
    fn step(&mut self, now: Instant) {
        let mut sends: Vec<LinkId> = Vec::new();
        self.drain_membership(&mut sends);
        self.recompute(now);
        let view = Arc::new(self.build_view());
        let changed = self
            .last_sent
            .as_deref()
            .is_none_or(|v| !v.same_state(&view));
        if changed {
            self.membership.handle(now, membership::Input::SendSoon);
            self.drain_membership(&mut sends);
        }
        if sends.is_empty() {
            return;
        }
        for link in sends {
            let seq = self.next_seq;
            self.next_seq = seq.next();
            self.sent[(seq.0 % SENT_RING as u64) as usize] = (seq, now);
            self.actions.push_back(Action::Send {
                link,
                seq,
                view: view.clone(),
            });
        }
        if self.leaving && view.instances.iter().flatten().all(|i| !i.holds) {
            self.left_announced = true;
        }
        self.last_sent = Some(view);
    }

    fn drain_membership(&mut self, sends: &mut Vec<LinkId>) {
        while let Some(a) = self.membership.poll_action() {
            match a {
                membership::Action::SendHeartbeat { link } => {
                    if !sends.contains(&link) {
                        sends.push(link);
                    }
                }
                membership::Action::Event(e) => {
                    self.actions.push_back(Action::Event(Event::Membership(e)));
                }
            }
        }
    }

    fn eligible(&self, l: &Local) -> bool {
        if self.standby || self.maintenance || self.leaving || l.priority == 0 {
            return false;
        }
        match self.cfg.no_quorum_policy {
            NoQuorumPolicy::Stop => self.quorum.quorate,
            NoQuorumPolicy::Freeze => self.quorum.quorate || l.permitted,
            NoQuorumPolicy::Ignore => true,
        }
    }

    fn recompute(&mut self, now: Instant) {
        let me = self.cfg.me;
        let up = self.membership.up_set();
        if up != self.last_up {
            self.members_changed_at = now;
            for (i, p) in self.peers.iter_mut().enumerate() {
                let n = NodeId(i as u16);
                if up.contains(n) {
                    p.down_since = None;
                } else if p.down_since.is_none() {
                    p.down_since = Some(now);
                }
            }
            self.last_up = up;
        }
        self.ever_seen.0 |= up.0;
        if up == self.all {
            self.all_seen_together = true;
        }
        let gone: NodeSet = (0..self.peers.len())
            .map(|i| NodeId(i as u16))
            .filter(|n| !up.contains(*n) && self.peers[n.index()].gone != Gone::No)
            .collect();
        if self.failback_until.is_some_and(|t| now >= t) {
            self.failback_until = None;
        }
        if self.grace_until.is_some_and(|t| now >= t) || self.ever_seen == self.all {
            self.grace_until = None;
        }
        if self.witness_until.is_some_and(|t| now >= t) {
            self.witness_until = None;
        }
        // Every timer poll_timeout reports is cleared once it has passed.
        // A failed fence whose pause is over is retried as soon as this node
        // may fence (below); one for a node that is back up is dropped.
        for (i, p) in self.peers.iter_mut().enumerate() {
            if p.fence == FenceState::Failed && p.fence_retry_at.is_some_and(|t| now >= t) {
                p.fence_retry_at = None;
            }
            if p.fence == FenceState::Failed && up.contains(NodeId(i as u16)) {
                p.fence = FenceState::Idle;
                p.fence_retry_at = None;
            }
        }
        let q = evaluate(
            &self.cfg.quorum,
            &QuorumInput {
                me,
                up,
                ever_seen: self.ever_seen,
                all_seen_together: self.all_seen_together,
                gone,
                witness_vote: self.witness_counts(now),
            },
        );
        if q != self.quorum {
            let was_quorate = self.quorum.quorate;
            let quorate_changed = q.quorate != self.quorum.quorate
                || q.votes != self.quorum.votes
                || q.expected != self.quorum.expected;
            self.quorum = q;
            if quorate_changed {
                self.actions.push_back(Action::Event(Event::Quorum(q)));
            }
            if was_quorate && !q.quorate && self.cfg.no_quorum_policy != NoQuorumPolicy::Ignore {
                self.forget_gone(up);
            }
            if !was_quorate && q.quorate {
                self.relearn_fenced(now, up);
            }
        }

        let failback_any = self.failback_until.is_some()
            || up.iter().any(|n| {
                n != me
                    && self.peers[n.index()]
                        .view
                        .as_deref()
                        .is_some_and(|v| v.flags.failback_request)
            });
        let mut failback_satisfied = true;
        for i in 0..self.locals.len() {
            let id = InstanceId(i as u16);
            let my_eligible = self.eligible(&self.locals[i]);
            let (elected, best, holder) = self.elect(id, up, my_eligible, failback_any);
            if let (Some(h), Some(b)) = (holder, best) {
                if h != b && self.priority_of(id, h) < self.priority_of(id, b) {
                    failback_satisfied = false;
                }
            }
            let next_seq = self.next_seq;
            let l = &mut self.locals[i];
            l.elected = elected;
            if elected == Some(me) {
                if l.claim_start.is_none() && !l.permitted {
                    l.claim_start = Some(next_seq);
                }
            } else {
                l.claim_start = None;
            }
            let may_take = elected == Some(me) && self.may_take(now, id, up);
            let l = &mut self.locals[i];
            let before = l.permitted;
            l.permitted = if self.maintenance {
                l.reported_holding
            } else if !my_eligible || elected != Some(me) {
                false
            } else {
                l.permitted || may_take
            };
            if l.permitted {
                l.claim_start = None;
            }
            if l.permitted != before {
                self.actions.push_back(Action::Event(Event::Permission {
                    instance: id,
                    may_be_master: l.permitted,
                }));
                if l.permitted && !self.maintenance {
                    if let Some(h) = l.last_holder {
                        if h != me && !up.contains(h) {
                            l.takeovers += 1;
                            self.actions.push_back(Action::Takeover { instance: id });
                        }
                    }
                }
            }
        }
        if self.failback_until.is_some() && failback_satisfied {
            self.failback_until = None;
        }

        // Time-based rules that may change without any input.
        let mut wake: Option<Instant> = None;
        if self.cfg.quorum.witness {
            let d = self.cfg.detection_time();
            let mut future = |t: Instant| {
                if t > now {
                    wake = Some(wake.map_or(t, |w| w.min(t)));
                }
            };
            future(self.members_changed_at + d);
            for (i, p) in self.peers.iter().enumerate() {
                if !up.contains(NodeId(i as u16)) {
                    if let Some(t) = p.down_since {
                        future(t + d);
                    }
                }
            }
        }
        self.wake_at = wake;

        // Fencing: the lowest node of a partition that may fence, once its
        // member set has settled (heartbeat phases spread the detection of
        // one partition over up to an interval; a node must not fence with
        // a half-updated view).
        let settle = self.cfg.heartbeat_interval * 3 / 2;
        let settled = now >= self.members_changed_at + settle;
        if !settled {
            let t = self.members_changed_at + settle;
            self.wake_at = Some(self.wake_at.map_or(t, |w| w.min(t)));
        }
        if self.quorum.may_fence
            && settled
            && !self.maintenance
            && !self.leaving
            && up.lowest() == Some(me)
        {
            for i in 0..self.peers.len() {
                let node = NodeId(i as u16);
                if !self.fence_needed(node) || self.in_grace(now, node) {
                    continue;
                }
                let p = &mut self.peers[i];
                let start = match p.fence {
                    FenceState::Idle => true,
                    FenceState::Failed => p.fence_retry_at.is_none_or(|t| now >= t),
                    FenceState::Running => false,
                };
                if start {
                    p.fence = FenceState::Running;
                    p.fence_retry_at = None;
                    self.actions.push_back(Action::Fence { node });
                }
            }
        }
    }

    fn priority_of(&self, id: InstanceId, n: NodeId) -> u8 {
        if n == self.cfg.me {
            return self.locals[id.index()].priority;
        }
        self.peers[n.index()]
            .view
            .as_deref()
            .and_then(|v| v.instance(id))
            .map_or(0, |i| i.priority)
    }

    /// Returns (elected, best by priority, current holder) among eligible
    /// up nodes.
    fn elect(
        &self,
        id: InstanceId,
        up: NodeSet,
        my_eligible: bool,
        failback: bool,
    ) -> (Option<NodeId>, Option<NodeId>, Option<NodeId>) {
        let me = self.cfg.me;
        let key = |prio: u8, n: NodeId| (prio, std::cmp::Reverse(n));
        let mut best: Option<(u8, NodeId)> = None;
        let mut holder: Option<(u8, NodeId)> = None;
        for n in up.iter() {
            let (eligible, prio, holds) = if n == me {
                let l = &self.locals[id.index()];
                (my_eligible, l.priority, l.permitted || l.reported_holding)
            } else {
                match self.peers[n.index()]
                    .view
                    .as_deref()
                    .and_then(|v| v.instance(id))
                {
                    Some(iv) => (iv.eligible, iv.priority, iv.holds),
                    None => continue,
                }
            };
            if !eligible {
                continue;
            }
            if best.is_none_or(|(bp, bn)| key(prio, n) > key(bp, bn)) {
                best = Some((prio, n));
            }
            if holds && holder.is_none_or(|(hp, hn)| key(prio, n) > key(hp, hn)) {
                holder = Some((prio, n));
            }
        }
        let elected = match (holder, best) {
            (Some((hp, hn)), Some((bp, bn))) => {
                let auto = self.cfg.failback == Failback::Auto || failback;
                if !auto || hp >= bp {
                    Some(hn)
                } else {
                    Some(bn)
                }
            }
            (None, Some((_, bn))) => Some(bn),
            (_, None) => None,
        };
        (elected, best.map(|b| b.1), holder.map(|h| h.1))
    }

    /// Rules 1-3 of the module documentation.
    fn may_take(&self, now: Instant, id: InstanceId, up: NodeSet) -> bool {
        let me = self.cfg.me;
        let Some(claim) = self.locals[id.index()].claim_start else {
            return false;
        };
        if !self.quorum.quorate && self.cfg.no_quorum_policy != NoQuorumPolicy::Ignore {
            return false;
        }
        for (i, p) in self.peers.iter().enumerate() {
            let n = NodeId(i as u16);
            if n == me {
                continue;
            }
            if up.contains(n) {
                let Some(view) = p.view.as_deref() else {
                    return false;
                };
                let Some(iv) = view.instance(id) else {
                    continue;
                };
                if iv.holds || iv.owner != Some(me) {
                    return false;
                }
                match view.echo_of(me) {
                    Some(e) if e.incarnation == self.cfg.incarnation && e.seq >= claim => {}
                    _ => return false,
                }
            } else if self.in_grace(now, n)
                || (p.gone == Gone::No
                    && (self.cfg.fenceable.contains(n) || !self.unfenced_safe(now, n)))
            {
                return false;
            }
        }
        true
    }

    fn build_view(&self) -> View {
        let me = self.cfg.me;
        let echoes = self
            .peers
            .iter()
            .enumerate()
            // Seq 0 = the incarnation is known (maybe second-hand) but
            // nothing of it was received; it still tells others it exists.
            .filter_map(|(i, p)| match p.incarnation {
                Some(inc) if i != me.index() => Some(Echo {
                    node: NodeId(i as u16),
                    incarnation: inc,
                    seq: p.last_rx.unwrap_or(Seq(0)),
                }),
                _ => None,
            })
            .collect();
        let fenced = self
            .peers
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match p.gone {
                Gone::Fenced(inc) => Some((NodeId(i as u16), inc)),
                _ => None,
            })
            .collect();
        let left = self
            .peers
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match p.gone {
                Gone::Left(inc) => Some((NodeId(i as u16), inc)),
                _ => None,
            })
            .collect();
        let instances = self
            .locals
            .iter()
            .map(|l| {
                Some(InstanceView {
                    priority: l.priority,
                    eligible: self.eligible(l),
                    holds: l.permitted || l.reported_holding,
                    owner: l.elected,
                })
            })
            .collect();
        View {
            flags: NodeFlags {
                quorate: self.quorum.quorate,
                standby: self.standby,
                maintenance: self.maintenance,
                leaving: self.leaving,
                failback_request: self.failback_until.is_some(),
            },
            members: self.membership.up_set(),
            echoes,
            fenced,
            left,
            instances,
        }
    }
}

/// A node's state in [`CoreStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Up and managing.
    Online,
    /// Up, in standby.
    Standby,
    /// Up, in maintenance mode.
    Maintenance,
    /// Down, no fence device covers it.
    Offline,
    /// Down and not yet fenced: its instances cannot be taken over.
    Unclean,
    /// Down and fenced.
    Fenced,
    /// Left gracefully.
    Left,
}

/// A link in [`NodeStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    /// The link.
    pub link: LinkId,
    /// Up (always for this node).
    pub up: bool,
    /// Milliseconds since the last heartbeat on it.
    pub last_heard_ms: Option<u64>,
}

/// A node in [`CoreStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Its id.
    pub id: NodeId,
    /// Its name.
    pub name: String,
    /// Its state.
    pub state: NodeState,
    /// Its votes.
    pub votes: u8,
    /// Its incarnation, when known.
    pub incarnation: Option<Incarnation>,
    /// Fencing progress.
    pub fence: FenceState,
    /// Its links.
    pub links: Vec<LinkStatus>,
}

/// An instance in [`CoreStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// Its name.
    pub name: String,
    /// This node's effective priority.
    pub priority: u8,
    /// This node may be master.
    pub may_be_master: bool,
    /// This node's router reports being master.
    pub holding: bool,
    /// The node this node thinks should hold it.
    pub elected: Option<NodeId>,
    /// Nodes holding it, as far as this node knows.
    pub holders: Vec<NodeId>,
    /// Nodes whose fencing a takeover waits for.
    pub waiting_for_fence: Vec<NodeId>,
    /// Takeover hints given.
    pub takeovers: u64,
}

/// The coordinator's part of `halb status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreStatus {
    /// This node.
    pub me: NodeId,
    /// This process's incarnation.
    pub incarnation: Incarnation,
    /// Quorum.
    pub quorum: QuorumState,
    /// No-quorum policy: `stop`, `freeze` or `ignore`.
    pub policy: String,
    /// Failback policy: `auto` or `manual`.
    pub failback: String,
    /// This node is in standby.
    pub standby: bool,
    /// This node is in maintenance.
    pub maintenance: bool,
    /// This node is leaving.
    pub leaving: bool,
    /// A failback request of this node is active.
    pub failback_requested: bool,
    /// The witness vote counts now.
    pub witness_vote: bool,
    /// [`Coordinator::must_release_all`].
    pub must_release_all: bool,
    /// Every node.
    pub nodes: Vec<NodeStatus>,
    /// Every instance.
    pub instances: Vec<InstanceStatus>,
}
