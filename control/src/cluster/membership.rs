//! Liveness of the cluster's nodes over redundant links: a sans-IO core.
//!
//! The driver feeds every authenticated heartbeat as [`Input::Heard`] and
//! calls [`Membership::handle`] with [`Input::Timeout`] at
//! [`Membership::poll_timeout`]; it executes [`Action::SendHeartbeat`]
//! (one message to every peer on that link) and reads the events.
//!
//! Rules (corosync knet's link model, simplified):
//!
//! - a link to a peer is **up** while a heartbeat was heard on it less than
//!   `heartbeat_interval * miss_count` (the *detection time*) ago; it goes
//!   down at `last_heard + detection_time`;
//! - a peer is **up** while any of its links is up;
//! - every `heartbeat_interval` a heartbeat goes out on every link; the
//!   first one at start. [`Input::SendSoon`] asks for an earlier one (when
//!   the local view changed) but never sooner than a quarter interval after
//!   the previous one.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::types::{LinkId, NodeId, NodeSet, MAX_LINKS, MAX_NODES};

/// Settings of a [`Membership`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipConfig {
    /// This node.
    pub me: NodeId,
    /// Number of nodes in the cluster (this one included).
    pub nodes: usize,
    /// Number of links (addresses per node).
    pub links: usize,
    /// Time between two heartbeats on one link.
    pub heartbeat_interval: Duration,
    /// Heartbeats missed on a link before it is down.
    pub miss_count: u8,
}

impl MembershipConfig {
    /// `heartbeat_interval * miss_count`.
    pub fn detection_time(&self) -> Duration {
        self.heartbeat_interval * u32::from(self.miss_count)
    }
}

/// Why a [`MembershipConfig`] is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// No node, or more than [`MAX_NODES`].
    #[error("{0} nodes: between 1 and {MAX_NODES} are supported")]
    NodeCount(usize),
    /// No link, or more than [`MAX_LINKS`].
    #[error("{0} links: between 1 and {MAX_LINKS} are supported")]
    LinkCount(usize),
    /// `me` is not one of the nodes.
    #[error("node id {0} is not below the node count")]
    NotAMember(NodeId),
    /// A zero heartbeat interval or miss count.
    #[error("heartbeat interval and miss count must be positive")]
    ZeroTiming,
}

/// What happened to a peer or link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A heartbeat arrived on a link that was down.
    LinkUp {
        /// The peer.
        node: NodeId,
        /// The link.
        link: LinkId,
    },
    /// Nothing was heard on the link for the detection time.
    LinkDown {
        /// The peer.
        node: NodeId,
        /// The link.
        link: LinkId,
    },
    /// The first link of a down peer came up.
    NodeUp {
        /// The peer.
        node: NodeId,
    },
    /// The last link of a peer went down (or the peer was forgotten).
    NodeDown {
        /// The peer.
        node: NodeId,
    },
}

/// Inputs of [`Membership::handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// An authenticated heartbeat from `node` arrived on `link`.
    Heard {
        /// The sender.
        node: NodeId,
        /// The link it arrived on.
        link: LinkId,
    },
    /// Time passed (call at [`Membership::poll_timeout`]).
    Timeout,
    /// Send the next heartbeat early (the local view changed).
    SendSoon,
    /// Declare a peer down now (it left gracefully or was fenced); it comes
    /// back up with its next heartbeat.
    Forget {
        /// The peer.
        node: NodeId,
    },
}

/// Outputs of [`Membership::poll_action`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send a heartbeat to every peer on this link.
    SendHeartbeat {
        /// The link.
        link: LinkId,
    },
    /// A liveness change.
    Event(Event),
}

/// Per node, per link liveness and the heartbeat schedule.
#[derive(Debug, Clone)]
pub struct Membership {
    config: MembershipConfig,
    detection: Duration,
    /// `last_heard[node * links + link]`.
    last_heard: Vec<Option<Instant>>,
    link_up: Vec<bool>,
    node_up: NodeSet,
    next_send: Instant,
    last_send: Option<Instant>,
    actions: VecDeque<Action>,
}

impl Membership {
    /// A membership that sends its first heartbeats at `now`.
    pub fn new(config: MembershipConfig, now: Instant) -> Result<Membership, MembershipError> {
        if config.nodes == 0 || config.nodes > MAX_NODES {
            return Err(MembershipError::NodeCount(config.nodes));
        }
        if config.links == 0 || config.links > MAX_LINKS {
            return Err(MembershipError::LinkCount(config.links));
        }
        if config.me.index() >= config.nodes {
            return Err(MembershipError::NotAMember(config.me));
        }
        if config.heartbeat_interval.is_zero() || config.miss_count == 0 {
            return Err(MembershipError::ZeroTiming);
        }
        let slots = config.nodes * config.links;
        Ok(Membership {
            detection: config.detection_time(),
            last_heard: vec![None; slots],
            link_up: vec![false; slots],
            node_up: NodeSet::single(config.me),
            next_send: now,
            last_send: None,
            actions: VecDeque::new(),
            config,
        })
    }

    /// The settings.
    pub fn config(&self) -> &MembershipConfig {
        &self.config
    }

    /// `heartbeat_interval * miss_count`.
    pub fn detection_time(&self) -> Duration {
        self.detection
    }

    /// Handles one input at `now`; timers that are due fire as well.
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Heard { node, link } => self.heard(now, node, link),
            Input::Timeout => {}
            Input::SendSoon => {
                let earliest = match self.last_send {
                    Some(t) => t + self.config.heartbeat_interval / 4,
                    None => now,
                };
                self.next_send = self.next_send.min(earliest.max(now));
            }
            Input::Forget { node } => self.forget(node),
        }
        self.run_timers(now);
    }

    /// The next action to execute, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Membership::handle`] with [`Input::Timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.next_send;
        for (i, up) in self.link_up.iter().enumerate() {
            if *up {
                if let Some(last) = self.last_heard[i] {
                    t = t.min(last + self.detection);
                }
            }
        }
        Some(t)
    }

    /// Whether a node is up (this node always is).
    pub fn node_up(&self, node: NodeId) -> bool {
        self.node_up.contains(node)
    }

    /// The nodes that are up, this one included.
    pub fn up_set(&self) -> NodeSet {
        self.node_up
    }

    /// Whether a link to a peer is up.
    pub fn link_up(&self, node: NodeId, link: LinkId) -> bool {
        self.slot(node, link).is_some_and(|i| self.link_up[i])
    }

    /// When a heartbeat from a peer was last heard on a link.
    pub fn last_heard(&self, node: NodeId, link: LinkId) -> Option<Instant> {
        self.slot(node, link).and_then(|i| self.last_heard[i])
    }

    fn slot(&self, node: NodeId, link: LinkId) -> Option<usize> {
        (node.index() < self.config.nodes && link.index() < self.config.links)
            .then(|| node.index() * self.config.links + link.index())
    }

    fn heard(&mut self, now: Instant, node: NodeId, link: LinkId) {
        if node == self.config.me {
            return;
        }
        let Some(i) = self.slot(node, link) else {
            return;
        };
        // A heartbeat older than the newest one known changes nothing.
        if self.last_heard[i].is_some_and(|t| t > now) {
            return;
        }
        self.last_heard[i] = Some(now);
        if !self.link_up[i] {
            self.link_up[i] = true;
            self.actions
                .push_back(Action::Event(Event::LinkUp { node, link }));
        }
        if !self.node_up.contains(node) {
            self.node_up.insert(node);
            self.actions
                .push_back(Action::Event(Event::NodeUp { node }));
        }
    }

    fn forget(&mut self, node: NodeId) {
        if node == self.config.me || node.index() >= self.config.nodes {
            return;
        }
        for l in 0..self.config.links {
            let link = LinkId(l as u8);
            if let Some(i) = self.slot(node, link) {
                self.last_heard[i] = None;
                if self.link_up[i] {
                    self.link_up[i] = false;
                    self.actions
                        .push_back(Action::Event(Event::LinkDown { node, link }));
                }
            }
        }
        if self.node_up.contains(node) {
            self.node_up.remove(node);
            self.actions
                .push_back(Action::Event(Event::NodeDown { node }));
        }
    }

    fn run_timers(&mut self, now: Instant) {
        for n in 0..self.config.nodes {
            let node = NodeId(n as u16);
            if node == self.config.me {
                continue;
            }
            let mut any_up = false;
            for l in 0..self.config.links {
                let link = LinkId(l as u8);
                let i = n * self.config.links + l;
                if self.link_up[i] {
                    if self.last_heard[i].is_some_and(|t| now >= t + self.detection) {
                        self.link_up[i] = false;
                        self.actions
                            .push_back(Action::Event(Event::LinkDown { node, link }));
                    } else {
                        any_up = true;
                    }
                }
            }
            if !any_up && self.node_up.contains(node) {
                self.node_up.remove(node);
                self.actions
                    .push_back(Action::Event(Event::NodeDown { node }));
            }
        }
        if now >= self.next_send {
            for l in 0..self.config.links {
                self.actions.push_back(Action::SendHeartbeat {
                    link: LinkId(l as u8),
                });
            }
            self.last_send = Some(now);
            let next = self.next_send + self.config.heartbeat_interval;
            self.next_send = if next > now {
                next
            } else {
                now + self.config.heartbeat_interval
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn cfg() -> MembershipConfig {
        MembershipConfig {
            me: NodeId(0),
            nodes: 3,
            links: 2,
            heartbeat_interval: 100 * MS,
            miss_count: 3,
        }
    }

    fn drain(m: &mut Membership) -> Vec<Action> {
        std::iter::from_fn(|| m.poll_action()).collect()
    }

    fn sends(links: u8) -> Vec<Action> {
        (0..links)
            .map(|l| Action::SendHeartbeat { link: LinkId(l) })
            .collect()
    }

    #[test]
    fn config_errors() {
        let t0 = Instant::now();
        let mut c = cfg();
        c.nodes = 0;
        assert_eq!(
            Membership::new(c, t0).err(),
            Some(MembershipError::NodeCount(0))
        );
        let mut c = cfg();
        c.links = 9;
        assert_eq!(
            Membership::new(c, t0).err(),
            Some(MembershipError::LinkCount(9))
        );
        let mut c = cfg();
        c.me = NodeId(3);
        assert_eq!(
            Membership::new(c, t0).err(),
            Some(MembershipError::NotAMember(NodeId(3)))
        );
        let mut c = cfg();
        c.miss_count = 0;
        assert_eq!(
            Membership::new(c, t0).err(),
            Some(MembershipError::ZeroTiming)
        );
    }

    #[test]
    fn heartbeat_schedule_on_every_link() {
        let t0 = Instant::now();
        let mut m = Membership::new(cfg(), t0).expect("valid");
        assert_eq!(m.poll_timeout(), Some(t0));
        m.handle(t0, Input::Timeout);
        assert_eq!(drain(&mut m), sends(2));
        assert_eq!(m.poll_timeout(), Some(t0 + 100 * MS));
        m.handle(t0 + 99 * MS, Input::Timeout);
        assert!(drain(&mut m).is_empty());
        m.handle(t0 + 100 * MS, Input::Timeout);
        assert_eq!(drain(&mut m), sends(2));
        // A late wakeup does not cause a burst of catch-up heartbeats.
        m.handle(t0 + 450 * MS, Input::Timeout);
        assert_eq!(drain(&mut m), sends(2));
        assert_eq!(m.poll_timeout(), Some(t0 + 550 * MS));
    }

    #[test]
    fn send_soon_is_rate_limited_to_a_quarter_interval() {
        let t0 = Instant::now();
        let mut m = Membership::new(cfg(), t0).expect("valid");
        m.handle(t0, Input::Timeout);
        drain(&mut m);
        m.handle(t0 + 10 * MS, Input::SendSoon);
        assert!(drain(&mut m).is_empty());
        assert_eq!(m.poll_timeout(), Some(t0 + 25 * MS));
        m.handle(t0 + 25 * MS, Input::Timeout);
        assert_eq!(drain(&mut m), sends(2));
        m.handle(t0 + 60 * MS, Input::SendSoon);
        assert_eq!(
            drain(&mut m),
            sends(2),
            "more than a quarter interval later: at once"
        );
    }

    #[test]
    fn link_and_node_up_down_at_exactly_the_detection_time() {
        let t0 = Instant::now();
        let mut m = Membership::new(cfg(), t0).expect("valid");
        m.handle(t0, Input::Timeout);
        drain(&mut m);
        let n1 = NodeId(1);
        m.handle(
            t0 + 10 * MS,
            Input::Heard {
                node: n1,
                link: LinkId(0),
            },
        );
        assert_eq!(
            drain(&mut m),
            vec![
                Action::Event(Event::LinkUp {
                    node: n1,
                    link: LinkId(0)
                }),
                Action::Event(Event::NodeUp { node: n1 }),
            ]
        );
        m.handle(
            t0 + 20 * MS,
            Input::Heard {
                node: n1,
                link: LinkId(1),
            },
        );
        assert_eq!(
            drain(&mut m),
            vec![Action::Event(Event::LinkUp {
                node: n1,
                link: LinkId(1)
            })]
        );
        assert!(m.node_up(n1) && m.link_up(n1, LinkId(0)) && m.link_up(n1, LinkId(1)));
        assert_eq!(m.up_set(), NodeSet(0b011));
        // Link 0 expires at 10 + 300 ms; link 1 keeps the node up.
        assert_eq!(m.poll_timeout(), Some(t0 + 100 * MS));
        m.handle(t0 + 100 * MS, Input::Timeout);
        drain(&mut m);
        assert_eq!(m.poll_timeout(), Some(t0 + 200 * MS));
        m.handle(t0 + 309 * MS, Input::Timeout);
        assert!(!drain(&mut m).iter().any(|a| matches!(a, Action::Event(_))));
        m.handle(t0 + 310 * MS, Input::Timeout);
        assert_eq!(
            drain(&mut m),
            vec![Action::Event(Event::LinkDown {
                node: n1,
                link: LinkId(0)
            })]
        );
        assert!(m.node_up(n1));
        m.handle(t0 + 320 * MS, Input::Timeout);
        assert_eq!(
            drain(&mut m),
            vec![
                Action::Event(Event::LinkDown {
                    node: n1,
                    link: LinkId(1)
                }),
                Action::Event(Event::NodeDown { node: n1 }),
            ]
        );
        assert!(!m.node_up(n1));
        assert_eq!(m.last_heard(n1, LinkId(1)), Some(t0 + 20 * MS));
    }

    #[test]
    fn forget_and_ignored_inputs() {
        let t0 = Instant::now();
        let mut m = Membership::new(cfg(), t0).expect("valid");
        m.handle(t0, Input::Timeout);
        drain(&mut m);
        // Own id and out-of-range ids are ignored.
        m.handle(
            t0,
            Input::Heard {
                node: NodeId(0),
                link: LinkId(0),
            },
        );
        m.handle(
            t0,
            Input::Heard {
                node: NodeId(7),
                link: LinkId(0),
            },
        );
        m.handle(
            t0,
            Input::Heard {
                node: NodeId(1),
                link: LinkId(5),
            },
        );
        assert!(drain(&mut m).is_empty());
        m.handle(
            t0,
            Input::Heard {
                node: NodeId(2),
                link: LinkId(1),
            },
        );
        drain(&mut m);
        m.handle(t0 + MS, Input::Forget { node: NodeId(2) });
        assert_eq!(
            drain(&mut m),
            vec![
                Action::Event(Event::LinkDown {
                    node: NodeId(2),
                    link: LinkId(1)
                }),
                Action::Event(Event::NodeDown { node: NodeId(2) }),
            ]
        );
        m.handle(
            t0 + 2 * MS,
            Input::Heard {
                node: NodeId(2),
                link: LinkId(0),
            },
        );
        assert!(m.node_up(NodeId(2)));
    }

    /// Two memberships exchanging heartbeats through a lossy link on a
    /// virtual clock: a node is seen down exactly when every link has been
    /// silent for the detection time.
    #[test]
    fn pair_detects_a_cut_within_detection_time() {
        let t0 = Instant::now();
        let mut a = Membership::new(cfg(), t0).expect("valid");
        let mut b = Membership::new(
            MembershipConfig {
                me: NodeId(1),
                ..cfg()
            },
            t0,
        )
        .expect("valid");
        let cut_at = t0 + Duration::from_millis(1234);
        let mut now = t0;
        let mut down_at = None;
        for _ in 0..1000 {
            let next = a
                .poll_timeout()
                .into_iter()
                .chain(b.poll_timeout())
                .min()
                .expect("always a timer");
            now = next;
            if now > t0 + Duration::from_secs(3) {
                break;
            }
            a.handle(now, Input::Timeout);
            b.handle(now, Input::Timeout);
            while let Some(act) = a.poll_action() {
                match act {
                    Action::SendHeartbeat { link } if now < cut_at => b.handle(
                        now,
                        Input::Heard {
                            node: NodeId(0),
                            link,
                        },
                    ),
                    Action::Event(Event::NodeDown { node: NodeId(1) }) => down_at = Some(now),
                    _ => {}
                }
            }
            while let Some(act) = b.poll_action() {
                if let Action::SendHeartbeat { link } = act {
                    if now < cut_at {
                        a.handle(
                            now,
                            Input::Heard {
                                node: NodeId(1),
                                link,
                            },
                        );
                    }
                }
            }
        }
        let down_at = down_at.expect("node 1 declared down");
        let detection = cfg().detection_time();
        let silent_for = down_at - (cut_at - Duration::from_millis(34));
        // Last heartbeat before the cut was at 1200 ms; down at 1500 ms.
        assert_eq!(down_at, t0 + Duration::from_millis(1500));
        assert!(silent_for <= detection + cfg().heartbeat_interval);
        assert!(now > down_at);
    }
}
