//! The vote decision of `halb witness`: a pure core, like corosync-qnetd's
//! `ffsplit` algorithm.
//!
//! Nodes send their heartbeats to the witness too; each carries the
//! sender's member set (the nodes it sees up, itself included). A node is
//! *alive* at the witness while heard within the lease (the cluster's
//! detection time). Alive nodes that report the same member set form a
//! candidate partition; the witness gives its single vote to one:
//!
//! 1. the candidate reported by the most alive nodes;
//! 2. on a tie, the one it already votes for (no flapping);
//! 3. then the one containing the lowest node id;
//! 4. then the lowest member bit mask (determinism only).
//!
//! Every heartbeat is answered: `vote = true` when the sender's reported
//! member set is the one voted for. A node counts the vote for as long as
//! its members equal that set and the lease runs: the lease starts when the
//! node *sent* the heartbeat the reply echoes, so delays only shorten it.
//!
//! Moving the vote to a set that is a subset or superset of the current one
//! (a node joined or was lost) is immediate: a node still counting the old
//! vote sees every member of the new set. Moving it to an unrelated set
//! waits until the lease of the last "yes" given to the old set has run out,
//! plus an eighth for clock-rate differences, so two partitions that cannot
//! see each other never both count the witness.

use std::time::{Duration, Instant};

use super::types::{NodeId, NodeSet};

/// Settings of a [`Witness`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessConfig {
    /// Number of cluster nodes.
    pub nodes: usize,
    /// How long a node stays alive without heartbeats, and how long a node
    /// counts a vote: the cluster's detection time.
    pub lease: Duration,
}

impl WitnessConfig {
    /// The wait before the vote moves to an unrelated set.
    pub fn hold(&self) -> Duration {
        self.lease + self.lease / 8
    }
}

/// The answer to one heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// The vote goes to the sender's partition.
    pub vote: bool,
    /// The set voted for (empty while none).
    pub partition: NodeSet,
}

/// (support, currently granted, lowest node id first, lower mask first, set)
type RankKey = (
    usize,
    bool,
    std::cmp::Reverse<u16>,
    std::cmp::Reverse<u64>,
    NodeSet,
);

#[derive(Debug, Clone, Copy)]
struct Report {
    at: Instant,
    members: NodeSet,
}

/// The witness state. See the module documentation.
#[derive(Debug, Clone)]
pub struct Witness {
    cfg: WitnessConfig,
    reports: Vec<Option<Report>>,
    granted: Option<NodeSet>,
    last_yes: Option<Instant>,
}

impl Witness {
    /// A witness that votes for nobody yet.
    pub fn new(cfg: WitnessConfig) -> Witness {
        Witness {
            reports: vec![None; cfg.nodes],
            cfg,
            granted: None,
            last_yes: None,
        }
    }

    /// The set currently voted for.
    pub fn granted(&self) -> Option<NodeSet> {
        self.granted
    }

    /// Nodes alive at `now`.
    pub fn alive(&self, now: Instant) -> NodeSet {
        self.reports
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_some_and(|r| now < r.at + self.cfg.lease))
            .map(|(i, _)| NodeId(i as u16))
            .collect()
    }

    /// Handles a heartbeat of `from` reporting `members` and returns the
    /// answer. Unknown node ids get `vote = false`.
    pub fn heartbeat(&mut self, now: Instant, from: NodeId, members: NodeSet) -> Reply {
        let Some(slot) = self.reports.get_mut(from.index()) else {
            return Reply {
                vote: false,
                partition: self.granted.unwrap_or_default(),
            };
        };
        let mut members = NodeSet(members.0 & NodeSet::first(self.cfg.nodes).0);
        members.insert(from);
        *slot = Some(Report { at: now, members });
        self.decide(now);
        let vote = self.granted == Some(members);
        if vote {
            self.last_yes = Some(now);
        }
        Reply {
            vote,
            partition: self.granted.unwrap_or_default(),
        }
    }

    /// The best candidate at `now` (rules 1-4).
    pub fn best(&self, now: Instant) -> Option<NodeSet> {
        let alive = self.alive(now);
        let mut best: Option<RankKey> = None;
        for n in alive.iter() {
            let Some(r) = self.reports[n.index()] else {
                continue;
            };
            let set = r.members;
            let support = alive
                .iter()
                .filter(|m| self.reports[m.index()].is_some_and(|x| x.members == set))
                .count();
            let key = (
                support,
                self.granted == Some(set),
                std::cmp::Reverse(set.lowest().map_or(u16::MAX, |l| l.0)),
                std::cmp::Reverse(set.0),
                set,
            );
            if best.as_ref().is_none_or(|b| key > *b) {
                best = Some(key);
            }
        }
        best.map(|b| b.4)
    }

    fn decide(&mut self, now: Instant) {
        let Some(best) = self.best(now) else {
            return;
        };
        match self.granted {
            Some(g) if g == best => {}
            Some(g) if g.0 & best.0 == g.0 || g.0 & best.0 == best.0 => {
                self.granted = Some(best);
            }
            _ => {
                let free = self.last_yes.is_none_or(|t| now >= t + self.cfg.hold());
                self.granted = if free { Some(best) } else { None };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn set(ids: &[u16]) -> NodeSet {
        ids.iter().map(|i| NodeId(*i)).collect()
    }

    fn w(nodes: usize) -> Witness {
        Witness::new(WitnessConfig {
            nodes,
            lease: 300 * MS,
        })
    }

    #[test]
    fn whole_cluster_gets_the_vote() {
        let t = Instant::now();
        let mut w = w(2);
        let r = w.heartbeat(t, NodeId(0), set(&[0, 1]));
        assert_eq!(
            r,
            Reply {
                vote: true,
                partition: set(&[0, 1])
            }
        );
        assert!(w.heartbeat(t + MS, NodeId(1), set(&[0, 1])).vote);
        assert_eq!(w.alive(t + MS), set(&[0, 1]));
    }

    #[test]
    fn split_tie_goes_to_the_lowest_node_at_once_when_nested() {
        let t = Instant::now();
        let mut w = w(2);
        w.heartbeat(t, NodeId(0), set(&[0, 1]));
        w.heartbeat(t, NodeId(1), set(&[0, 1]));
        // The link between the nodes breaks; both report themselves alone.
        // Node 0's last report still supports {0,1}: a 1:1 tie that the
        // current vote keeps, so node 1 gets no.
        let r1 = w.heartbeat(t + 100 * MS, NodeId(1), set(&[1]));
        assert_eq!(
            r1,
            Reply {
                vote: false,
                partition: set(&[0, 1])
            }
        );
        // Node 0 reports {0}: {0} and {1} tie; the lowest node id wins, and
        // {0} is nested in {0,1} so it gets the vote at once.
        let r0 = w.heartbeat(t + 110 * MS, NodeId(0), set(&[0]));
        assert!(r0.vote, "{{0}} wins the tie by the lowest node id");
        assert_eq!(w.granted(), Some(set(&[0])));
        let r1 = w.heartbeat(t + 120 * MS, NodeId(1), set(&[1]));
        assert_eq!(
            r1,
            Reply {
                vote: false,
                partition: set(&[0])
            }
        );
        // Node 0 dies: {1} alone is alive; {1} is not nested in {0}, so it
        // waits for the hold after the last yes to node 0 (t + 110 ms).
        assert!(!w.heartbeat(t + 447 * MS, NodeId(1), set(&[1])).vote);
        assert!(w.heartbeat(t + 448 * MS, NodeId(1), set(&[1])).vote);
    }

    #[test]
    fn more_nodes_win() {
        let t = Instant::now();
        let mut w = w(3);
        w.heartbeat(t, NodeId(0), set(&[0]));
        // {0} was alone and got the vote; {1,2} appears with two nodes, not
        // nested with {0}: it waits for the hold after the last yes to {0}.
        assert_eq!(w.granted(), Some(set(&[0])));
        assert!(!w.heartbeat(t + MS, NodeId(1), set(&[1, 2])).vote);
        assert!(!w.heartbeat(t + 2 * MS, NodeId(2), set(&[1, 2])).vote);
        assert_eq!(w.granted(), None, "revoked from {{0}}, waiting");
        assert!(!w.heartbeat(t + 100 * MS, NodeId(0), set(&[0])).vote);
        assert!(!w.heartbeat(t + 200 * MS, NodeId(2), set(&[1, 2])).vote);
        // Hold = 300 + 37.5 ms after the last yes (at t).
        assert!(!w.heartbeat(t + 337 * MS, NodeId(1), set(&[1, 2])).vote);
        assert!(w.heartbeat(t + 338 * MS, NodeId(1), set(&[1, 2])).vote);
        assert!(!w.heartbeat(t + 339 * MS, NodeId(0), set(&[0])).vote);
    }

    #[test]
    fn dead_nodes_stop_counting_and_sticky_ties() {
        let t = Instant::now();
        let mut w = w(4);
        w.heartbeat(t, NodeId(2), set(&[2, 3]));
        w.heartbeat(t, NodeId(3), set(&[2, 3]));
        w.heartbeat(t, NodeId(0), set(&[0, 1]));
        w.heartbeat(t, NodeId(1), set(&[0, 1]));
        // {2,3} was granted first and keeps the vote on a 2:2 tie.
        assert_eq!(w.granted(), Some(set(&[2, 3])));
        assert!(!w.heartbeat(t + 100 * MS, NodeId(0), set(&[0, 1])).vote);
        // Nodes 2 and 3 go silent: after the lease they are dead and the
        // vote moves once the hold after the last yes (t) is over.
        assert!(!w.heartbeat(t + 310 * MS, NodeId(0), set(&[0, 1])).vote);
        assert!(w.heartbeat(t + 340 * MS, NodeId(0), set(&[0, 1])).vote);
        assert_eq!(w.alive(t + 340 * MS), set(&[0]));
    }

    #[test]
    fn unknown_sender_and_foreign_bits() {
        let t = Instant::now();
        let mut w = w(2);
        assert!(!w.heartbeat(t, NodeId(5), set(&[5])).vote);
        // Bits of nodes beyond the cluster are ignored; the sender is added.
        let r = w.heartbeat(t, NodeId(1), set(&[9]));
        assert_eq!(
            r,
            Reply {
                vote: true,
                partition: set(&[1])
            }
        );
    }
}
