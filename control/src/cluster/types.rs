//! Small identifier and unit types shared by the cluster modules.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Most cluster nodes supported: node sets are 64-bit masks.
pub const MAX_NODES: usize = 64;

/// Most links (redundant heartbeat networks) per node.
pub const MAX_LINKS: usize = 8;

/// A cluster node: its position in `cluster.nodes` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub u16);

impl NodeId {
    /// The sender id the witness uses in its replies; never a node position.
    pub const WITNESS: NodeId = NodeId(u16::MAX);

    /// The position as an index.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A heartbeat link: the position of the address in `cluster.nodes[*].addresses`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LinkId(pub u8);

impl LinkId {
    /// The position as an index.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One life of a node process: chosen at random when the process starts.
/// A restarted node has a new incarnation; messages of an older one are
/// stale.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Incarnation(pub u64);

/// Message sequence number: strictly increasing over all messages a sender
/// sends in one incarnation (all links share the counter).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Seq(pub u64);

impl Seq {
    /// The following sequence number.
    pub fn next(self) -> Seq {
        Seq(self.0.wrapping_add(1))
    }
}

/// A VRRP instance as the cluster core knows it: its position in the
/// instance list given to the coordinator. On the wire instances travel by
/// name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InstanceId(pub u16);

impl InstanceId {
    /// The position as an index.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// A set of nodes (bit i = `NodeId(i)`), at most [`MAX_NODES`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct NodeSet(pub u64);

impl NodeSet {
    /// No node.
    pub const EMPTY: NodeSet = NodeSet(0);

    /// The nodes 0..count.
    pub fn first(count: usize) -> NodeSet {
        if count >= MAX_NODES {
            NodeSet(u64::MAX)
        } else {
            NodeSet((1u64 << count) - 1)
        }
    }

    /// A set with one node (empty when the id is out of range).
    pub fn single(node: NodeId) -> NodeSet {
        let mut s = NodeSet::EMPTY;
        s.insert(node);
        s
    }

    /// Adds a node; ids at or above [`MAX_NODES`] are ignored.
    pub fn insert(&mut self, node: NodeId) {
        if node.index() < MAX_NODES {
            self.0 |= 1u64 << node.index();
        }
    }

    /// Removes a node.
    pub fn remove(&mut self, node: NodeId) {
        if node.index() < MAX_NODES {
            self.0 &= !(1u64 << node.index());
        }
    }

    /// Whether the node is in the set.
    pub fn contains(self, node: NodeId) -> bool {
        node.index() < MAX_NODES && self.0 & (1u64 << node.index()) != 0
    }

    /// Number of nodes.
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// No node in the set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The lowest node id in the set.
    pub fn lowest(self) -> Option<NodeId> {
        if self.0 == 0 {
            None
        } else {
            Some(NodeId(self.0.trailing_zeros() as u16))
        }
    }

    /// The nodes in increasing order.
    pub fn iter(self) -> impl Iterator<Item = NodeId> {
        (0..MAX_NODES as u16)
            .take_while(move |i| u32::from(*i) < 64 - self.0.leading_zeros())
            .map(NodeId)
            .filter(move |n| self.contains(*n))
    }
}

impl FromIterator<NodeId> for NodeSet {
    fn from_iter<I: IntoIterator<Item = NodeId>>(iter: I) -> Self {
        let mut s = NodeSet::EMPTY;
        for n in iter {
            s.insert(n);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_set_basics() {
        let mut s = NodeSet::EMPTY;
        assert!(s.is_empty());
        s.insert(NodeId(3));
        s.insert(NodeId(0));
        s.insert(NodeId(63));
        s.insert(NodeId(64)); // out of range: ignored
        assert_eq!(s.len(), 3);
        assert!(s.contains(NodeId(3)) && !s.contains(NodeId(1)) && !s.contains(NodeId(64)));
        assert_eq!(s.lowest(), Some(NodeId(0)));
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![NodeId(0), NodeId(3), NodeId(63)]
        );
        s.remove(NodeId(0));
        assert_eq!(s.lowest(), Some(NodeId(3)));
        assert_eq!(NodeSet::first(3), NodeSet(0b111));
        assert_eq!(NodeSet::first(64), NodeSet(u64::MAX));
        assert_eq!(NodeSet::first(0).iter().count(), 0);
        assert_eq!(
            [NodeId(1), NodeId(2)].into_iter().collect::<NodeSet>(),
            NodeSet(0b110)
        );
    }
}
