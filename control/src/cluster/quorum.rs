//! Quorum: corosync votequorum semantics as a pure function.
//!
//! - Every node has `votes`; the witness (when configured) has one more.
//! - `expected` = the highest of the configured `expected_votes` (plus the
//!   witness vote) and the votes of every node ever seen since this process
//!   started (plus the witness vote). `quorum = expected / 2 + 1`.
//! - `votes` = the votes of the nodes up in this node's view, plus the
//!   witness vote while the witness grants it to this node's partition.
//! - Quorate when `votes >= quorum`, and, with `wait_for_all`, only once
//!   every node has been up at the same time at least once since start
//!   (corosync's "all nodes visible at the same time").
//! - `two_node` (exactly two nodes): one node alone is quorate only while
//!   the other is known fenced or gracefully gone; before that it may fence
//!   the other ([`QuorumState::may_fence`]) so the pair can break the tie
//!   (fence races are spread by `delay_max`).

use serde::{Deserialize, Serialize};

use crate::config::ClusterConfig;

use super::types::{NodeId, NodeSet};

/// Fixed quorum settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumParams {
    /// Votes of each node, by [`NodeId`].
    pub node_votes: Vec<u8>,
    /// Configured expected votes of the nodes (without the witness).
    pub expected_votes: u32,
    /// `quorum.two_node` (ignored unless there are exactly two nodes).
    pub two_node: bool,
    /// `quorum.wait_for_all`.
    pub wait_for_all: bool,
    /// A witness is configured (it has one vote).
    pub witness: bool,
}

impl QuorumParams {
    /// The parameters of a cluster section.
    pub fn from_config(c: &ClusterConfig) -> QuorumParams {
        QuorumParams {
            node_votes: c.nodes.iter().map(|n| n.votes).collect(),
            expected_votes: c.quorum.expected_votes,
            two_node: c.quorum.two_node,
            wait_for_all: c.quorum.wait_for_all,
            witness: c.witness.is_some(),
        }
    }

    fn votes_of(&self, set: NodeSet) -> u32 {
        set.iter()
            .filter_map(|n| self.node_votes.get(n.index()))
            .map(|v| u32::from(*v))
            .sum()
    }

    fn witness_votes(&self) -> u32 {
        u32::from(self.witness)
    }
}

/// What this node currently knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuorumInput {
    /// This node.
    pub me: NodeId,
    /// Nodes up in this node's view (itself included).
    pub up: NodeSet,
    /// Nodes seen at least once since start (itself included).
    pub ever_seen: NodeSet,
    /// Every node has been up at the same time at least once since start.
    pub all_seen_together: bool,
    /// Nodes known to be fenced or gracefully gone (not up).
    pub gone: NodeSet,
    /// The witness currently grants its vote to this node's partition.
    pub witness_vote: bool,
}

/// The outcome of [`evaluate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumState {
    /// Votes present (nodes up plus a granted witness vote).
    pub votes: u32,
    /// Expected votes.
    pub expected: u32,
    /// Votes needed: `expected / 2 + 1` (1 for a two-node cluster whose
    /// peer is gone).
    pub quorum: u32,
    /// This node has quorum.
    pub quorate: bool,
    /// This node may fence nodes it lost: quorate, or the lone node of a
    /// two-node cluster (after wait_for_all).
    pub may_fence: bool,
    /// wait_for_all is enabled and not yet satisfied.
    pub wait_for_all_pending: bool,
}

/// Computes the quorum state. Pure and deterministic.
pub fn evaluate(p: &QuorumParams, i: &QuorumInput) -> QuorumState {
    let witness_vote = p.witness && i.witness_vote;
    let votes = p.votes_of(i.up) + u32::from(witness_vote);
    let configured = p.expected_votes.saturating_add(p.witness_votes());
    let seen = p.votes_of(i.ever_seen) + p.witness_votes();
    let expected = configured.max(seen).max(1);
    let mut quorum = expected / 2 + 1;
    let wfa_pending = p.wait_for_all && !i.all_seen_together;
    let two_node = p.two_node && p.node_votes.len() == 2;
    let peer = NodeId(if i.me.0 == 0 { 1 } else { 0 });
    let peer_absent = two_node && !i.up.contains(peer);
    let peer_gone = peer_absent && i.gone.contains(peer);
    if peer_gone {
        quorum = quorum.min(p.votes_of(NodeSet::single(i.me)).max(1));
    }
    let quorate = !wfa_pending && (votes >= quorum || peer_gone);
    QuorumState {
        votes,
        expected,
        quorum,
        quorate,
        may_fence: quorate || (peer_absent && !wfa_pending),
        wait_for_all_pending: wfa_pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u16]) -> NodeSet {
        ids.iter().map(|i| NodeId(*i)).collect()
    }

    struct Row {
        name: &'static str,
        votes: &'static [u8],
        expected: u32,
        two_node: bool,
        wfa: bool,
        witness: bool,
        me: u16,
        up: &'static [u16],
        seen: &'static [u16],
        all_seen: bool,
        gone: &'static [u16],
        witness_vote: bool,
        // votes, expected, quorum, quorate, may_fence, wfa_pending
        out: (u32, u32, u32, bool, bool, bool),
    }

    #[rustfmt::skip]
    const ROWS: &[Row] = &[
        Row { name: "3 nodes all up", votes: &[1, 1, 1], expected: 3, two_node: false, wfa: false, witness: false, me: 0, up: &[0, 1, 2], seen: &[0, 1, 2], all_seen: true, gone: &[], witness_vote: false, out: (3, 3, 2, true, true, false) },
        Row { name: "3 nodes majority", votes: &[1, 1, 1], expected: 3, two_node: false, wfa: false, witness: false, me: 0, up: &[0, 2], seen: &[0, 1, 2], all_seen: true, gone: &[], witness_vote: false, out: (2, 3, 2, true, true, false) },
        Row { name: "3 nodes minority", votes: &[1, 1, 1], expected: 3, two_node: false, wfa: false, witness: false, me: 1, up: &[1], seen: &[0, 1, 2], all_seen: true, gone: &[], witness_vote: false, out: (1, 3, 2, false, false, false) },
        Row { name: "4 nodes half is not enough", votes: &[1, 1, 1, 1], expected: 4, two_node: false, wfa: false, witness: false, me: 0, up: &[0, 1], seen: &[0, 1, 2, 3], all_seen: true, gone: &[], witness_vote: false, out: (2, 4, 3, false, false, false) },
        Row { name: "weighted votes", votes: &[3, 1, 1], expected: 5, two_node: false, wfa: false, witness: false, me: 0, up: &[0], seen: &[0], all_seen: false, gone: &[], witness_vote: false, out: (3, 5, 3, true, true, false) },
        Row { name: "zero-vote node counts nothing", votes: &[1, 1, 0], expected: 2, two_node: false, wfa: false, witness: false, me: 2, up: &[1, 2], seen: &[0, 1, 2], all_seen: true, gone: &[], witness_vote: false, out: (1, 2, 2, false, false, false) },
        Row { name: "expected raised by seen votes", votes: &[1, 1, 1, 1, 1], expected: 3, two_node: false, wfa: false, witness: false, me: 0, up: &[0, 1], seen: &[0, 1, 2, 3, 4], all_seen: true, gone: &[], witness_vote: false, out: (2, 5, 3, false, false, false) },
        Row { name: "configured expected below seen, not yet seen", votes: &[1, 1, 1, 1, 1], expected: 3, two_node: false, wfa: false, witness: false, me: 0, up: &[0, 1], seen: &[0, 1], all_seen: false, gone: &[], witness_vote: false, out: (2, 3, 2, true, true, false) },
        Row { name: "wait_for_all pending blocks quorum", votes: &[1, 1, 1], expected: 3, two_node: false, wfa: true, witness: false, me: 0, up: &[0, 1], seen: &[0, 1], all_seen: false, gone: &[], witness_vote: false, out: (2, 3, 2, false, false, true) },
        Row { name: "wait_for_all satisfied", votes: &[1, 1, 1], expected: 3, two_node: false, wfa: true, witness: false, me: 0, up: &[0, 1], seen: &[0, 1, 2], all_seen: true, gone: &[], witness_vote: false, out: (2, 3, 2, true, true, false) },
        Row { name: "two_node both up", votes: &[1, 1], expected: 2, two_node: true, wfa: true, witness: false, me: 0, up: &[0, 1], seen: &[0, 1], all_seen: true, gone: &[], witness_vote: false, out: (2, 2, 2, true, true, false) },
        Row { name: "two_node alone, peer not fenced: may fence only", votes: &[1, 1], expected: 2, two_node: true, wfa: true, witness: false, me: 1, up: &[1], seen: &[0, 1], all_seen: true, gone: &[], witness_vote: false, out: (1, 2, 2, false, true, false) },
        Row { name: "two_node alone, peer fenced", votes: &[1, 1], expected: 2, two_node: true, wfa: true, witness: false, me: 1, up: &[1], seen: &[0, 1], all_seen: true, gone: &[0], witness_vote: false, out: (1, 2, 1, true, true, false) },
        Row { name: "two_node alone after restart: wait_for_all", votes: &[1, 1], expected: 2, two_node: true, wfa: true, witness: false, me: 0, up: &[0], seen: &[0], all_seen: false, gone: &[1], witness_vote: false, out: (1, 2, 1, false, false, true) },
        Row { name: "two_node without wait_for_all alone at start may fence", votes: &[1, 1], expected: 2, two_node: true, wfa: false, witness: false, me: 0, up: &[0], seen: &[0], all_seen: false, gone: &[], witness_vote: false, out: (1, 2, 2, false, true, false) },
        Row { name: "witness breaks a two-node tie", votes: &[1, 1], expected: 2, two_node: false, wfa: false, witness: true, me: 0, up: &[0], seen: &[0, 1], all_seen: true, gone: &[], witness_vote: true, out: (2, 3, 2, true, true, false) },
        Row { name: "witness vote for the other side", votes: &[1, 1], expected: 2, two_node: false, wfa: false, witness: true, me: 1, up: &[1], seen: &[0, 1], all_seen: true, gone: &[], witness_vote: false, out: (1, 3, 2, false, false, false) },
        Row { name: "witness vote ignored when not configured", votes: &[1, 1, 1], expected: 3, two_node: false, wfa: false, witness: false, me: 0, up: &[0], seen: &[0, 1, 2], all_seen: true, gone: &[], witness_vote: true, out: (1, 3, 2, false, false, false) },
        Row { name: "two_node flag with three nodes is plain majority", votes: &[1, 1, 1], expected: 3, two_node: true, wfa: false, witness: false, me: 0, up: &[0], seen: &[0, 1, 2], all_seen: true, gone: &[1, 2], witness_vote: false, out: (1, 3, 2, false, false, false) },
        Row { name: "gone nodes do not count for majorities", votes: &[1, 1, 1], expected: 3, two_node: false, wfa: false, witness: false, me: 0, up: &[0], seen: &[0, 1, 2], all_seen: true, gone: &[1, 2], witness_vote: false, out: (1, 3, 2, false, false, false) },
    ];

    #[test]
    fn table() {
        for r in ROWS {
            let p = QuorumParams {
                node_votes: r.votes.to_vec(),
                expected_votes: r.expected,
                two_node: r.two_node,
                wait_for_all: r.wfa,
                witness: r.witness,
            };
            let i = QuorumInput {
                me: NodeId(r.me),
                up: set(r.up),
                ever_seen: set(r.seen),
                all_seen_together: r.all_seen,
                gone: set(r.gone),
                witness_vote: r.witness_vote,
            };
            let s = evaluate(&p, &i);
            assert_eq!(
                (
                    s.votes,
                    s.expected,
                    s.quorum,
                    s.quorate,
                    s.may_fence,
                    s.wait_for_all_pending
                ),
                r.out,
                "row {:?}",
                r.name
            );
        }
    }

    /// No two disjoint node sets can both be quorate with plain majority
    /// (the basis of split-brain avoidance), for every split of up to 6 nodes.
    #[test]
    fn disjoint_sets_never_both_quorate() {
        for n in 1..=6usize {
            let votes: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
            let total: u32 = votes.iter().map(|v| u32::from(*v)).sum();
            let p = QuorumParams {
                node_votes: votes,
                expected_votes: total.max(1),
                two_node: false,
                wait_for_all: false,
                witness: false,
            };
            let all = NodeSet::first(n);
            for mask in 0..(1u64 << n) {
                let a = NodeSet(mask);
                let b = NodeSet(all.0 & !mask);
                let eval = |s: NodeSet| {
                    s.lowest().map(|me| {
                        evaluate(
                            &p,
                            &QuorumInput {
                                me,
                                up: s,
                                ever_seen: all,
                                all_seen_together: true,
                                gone: NodeSet::EMPTY,
                                witness_vote: false,
                            },
                        )
                        .quorate
                    })
                };
                assert!(
                    !(eval(a) == Some(true) && eval(b) == Some(true)),
                    "n={n} split {a:?}/{b:?}"
                );
            }
        }
    }
}
