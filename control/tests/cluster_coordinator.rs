//! The coordinator core, several nodes on a virtual clock over a simple
//! network (1 ms latency, cuts per direction), with a fence device that
//! powers nodes off.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use control::cluster::coordinator::{
    Action, Command, Coordinator, CoordinatorConfig, Event, Input, InstanceSpec, NodeState,
};
use control::cluster::quorum::QuorumParams;
use control::cluster::{Incarnation, InstanceId, LinkId, NodeId, NodeSet};
use control::config::{Failback, NoQuorumPolicy};

const MS: Duration = Duration::from_millis(1);
const HB: Duration = Duration::from_millis(100);
const V: InstanceId = InstanceId(0);

#[derive(Clone)]
struct Opts {
    prios: Vec<u8>,
    policy: NoQuorumPolicy,
    failback: Failback,
    fencing: bool,
    two_node: bool,
    wait_for_all: bool,
    witness: bool,
    fence_time: Duration,
    down_at_start: Vec<usize>,
    heartbeat: Duration,
    latency: Duration,
}

impl Opts {
    fn new(prios: &[u8]) -> Opts {
        Opts {
            prios: prios.to_vec(),
            policy: NoQuorumPolicy::Stop,
            failback: Failback::Auto,
            fencing: true,
            two_node: false,
            wait_for_all: false,
            witness: false,
            fence_time: 500 * MS,
            down_at_start: Vec::new(),
            heartbeat: HB,
            latency: MS,
        }
    }
}

struct Node {
    core: Coordinator,
    incarnation: u64,
}

struct Net {
    opts: Opts,
    t0: Instant,
    now: Instant,
    nodes: Vec<Option<Node>>,
    cut: HashSet<(usize, usize)>,
    /// (deliver at, to, input); kept sorted by insertion, scanned for the earliest.
    queue: Vec<(Instant, usize, Input)>,
    /// Fences running: (done at, fencer, target).
    fences: Vec<(Instant, usize, NodeId)>,
    /// Outcomes for the next fences of a target (true = success); empty = success.
    fence_script: BTreeMap<usize, Vec<bool>>,
    fence_log: Vec<(Instant, usize, NodeId, bool)>,
    events: Vec<(Instant, usize, Event)>,
    takeovers: Vec<(Instant, usize)>,
    next_incarnation: u64,
}

impl Net {
    fn new(opts: Opts) -> Net {
        let t0 = Instant::now();
        let n = opts.prios.len();
        let mut net = Net {
            opts,
            t0,
            now: t0,
            nodes: (0..n).map(|_| None).collect(),
            cut: HashSet::new(),
            queue: Vec::new(),
            fences: Vec::new(),
            fence_script: BTreeMap::new(),
            fence_log: Vec::new(),
            events: Vec::new(),
            takeovers: Vec::new(),
            next_incarnation: 1000,
        };
        for i in 0..n {
            if !net.opts.down_at_start.contains(&i) {
                net.start(i);
            }
        }
        net
    }

    fn config(&self, i: usize, incarnation: u64) -> CoordinatorConfig {
        let n = self.opts.prios.len();
        CoordinatorConfig {
            me: NodeId(i as u16),
            node_names: (0..n).map(|i| format!("n{i}")).collect(),
            incarnation: Incarnation(incarnation),
            links: 1,
            heartbeat_interval: self.opts.heartbeat,
            miss_count: 3,
            quorum: QuorumParams {
                node_votes: vec![1; n],
                expected_votes: n as u32,
                two_node: self.opts.two_node,
                wait_for_all: self.opts.wait_for_all,
                witness: self.opts.witness,
            },
            no_quorum_policy: self.opts.policy,
            failback: self.opts.failback,
            fenceable: if self.opts.fencing {
                NodeSet::first(n)
            } else {
                NodeSet::EMPTY
            },
            fence_retry: Duration::from_secs(1),
            failback_window: Duration::from_secs(60),
            startup_grace: self.opts.heartbeat * 6,
            instances: vec![InstanceSpec {
                name: "vip".into(),
                priority: self.opts.prios[i],
            }],
        }
    }

    fn start(&mut self, i: usize) {
        self.next_incarnation += 1;
        let inc = self.next_incarnation;
        let core = Coordinator::new(self.config(i, inc), self.now).expect("valid config");
        self.nodes[i] = Some(Node {
            core,
            incarnation: inc,
        });
        self.pump(i);
    }

    fn crash(&mut self, i: usize) {
        self.nodes[i] = None;
        self.queue.retain(|(_, to, _)| *to != i);
        self.fences.retain(|(_, by, _)| *by != i);
    }

    fn isolate(&mut self, i: usize) {
        for j in 0..self.nodes.len() {
            if i != j {
                self.cut.insert((i, j));
                self.cut.insert((j, i));
            }
        }
    }

    fn heal(&mut self) {
        self.cut.clear();
    }

    fn input(&mut self, i: usize, input: Input) {
        let now = self.now;
        if let Some(n) = self.nodes[i].as_mut() {
            n.core.handle(now, input);
            self.pump(i);
        }
    }

    fn command(&mut self, i: usize, c: Command) {
        self.input(i, Input::Command(c));
    }

    /// Executes a node's actions; the VIP model: the router is master
    /// exactly while the coordinator allows it.
    fn pump(&mut self, i: usize) {
        loop {
            let now = self.now;
            let Some(node) = self.nodes[i].as_mut() else {
                return;
            };
            let inc = Incarnation(node.incarnation);
            let actions: Vec<Action> = std::iter::from_fn(|| node.core.poll_action()).collect();
            let mut progressed = !actions.is_empty();
            for a in actions {
                match a {
                    Action::Send { seq, view, .. } => {
                        for j in 0..self.nodes.len() {
                            if j != i && !self.cut.contains(&(i, j)) {
                                self.queue.push((
                                    now + self.opts.latency,
                                    j,
                                    Input::Heartbeat {
                                        link: LinkId(0),
                                        from: NodeId(i as u16),
                                        incarnation: inc,
                                        seq,
                                        view: (*view).clone(),
                                    },
                                ));
                            }
                        }
                    }
                    Action::Fence { node: target } => {
                        self.fences.push((now + self.opts.fence_time, i, target));
                    }
                    Action::Takeover { instance } => {
                        assert_eq!(instance, V);
                        self.takeovers.push((now, i));
                    }
                    Action::Event(e) => self.events.push((now, i, e)),
                }
            }
            let node = self.nodes[i].as_mut().expect("still running");
            let allowed = node.core.may_be_master(V);
            let status = node.core.status(now);
            if status.instances[0].holding != allowed {
                progressed = true;
                let prio = status.instances[0].priority;
                node.core.handle(
                    now,
                    Input::Local {
                        instance: V,
                        holding: allowed,
                        priority: prio,
                    },
                );
            }
            if !progressed {
                return;
            }
        }
    }

    /// Advances to the next event (delivery, fence completion, timer).
    fn step(&mut self, limit: Instant) -> bool {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        for (t, _, _) in &self.queue {
            consider(*t);
        }
        for (t, _, _) in &self.fences {
            consider(*t);
        }
        for n in self.nodes.iter().flatten() {
            if let Some(t) = n.core.poll_timeout() {
                consider(t);
            }
        }
        let Some(t) = next else { return false };
        if t > limit {
            return false;
        }
        self.now = self.now.max(t);
        let now = self.now;
        // Deliveries due.
        let mut due = Vec::new();
        let mut k = 0;
        while k < self.queue.len() {
            if self.queue[k].0 <= now {
                due.push(self.queue.remove(k));
            } else {
                k += 1;
            }
        }
        for (_, to, input) in due {
            self.input(to, input);
        }
        // Fences due.
        let mut done = Vec::new();
        let mut k = 0;
        while k < self.fences.len() {
            if self.fences[k].0 <= now {
                done.push(self.fences.remove(k));
            } else {
                k += 1;
            }
        }
        for (_, by, target) in done {
            if self.nodes[by].is_none() {
                continue;
            }
            let ok = self
                .fence_script
                .get_mut(&target.index())
                .and_then(|v| {
                    if v.is_empty() {
                        None
                    } else {
                        Some(v.remove(0))
                    }
                })
                .unwrap_or(true);
            self.fence_log.push((now, by, target, ok));
            if ok {
                self.crash(target.index());
            }
            self.input(by, Input::FenceDone { node: target, ok });
        }
        // Timers.
        for i in 0..self.nodes.len() {
            let due = self.nodes[i]
                .as_ref()
                .and_then(|n| n.core.poll_timeout())
                .is_some_and(|t| t <= now);
            if due {
                self.input(i, Input::Timeout);
            }
        }
        self.check_single_holder();
        true
    }

    fn run_for(&mut self, d: Duration) {
        let limit = self.now + d;
        let mut steps = 0;
        while self.step(limit) {
            steps += 1;
            assert!(steps < 1_000_000, "runaway");
        }
        self.now = limit;
    }

    fn run_until(&mut self, d: Duration, mut cond: impl FnMut(&Net) -> bool) -> Option<Instant> {
        let limit = self.now + d;
        let mut steps = 0;
        loop {
            if cond(self) {
                return Some(self.now);
            }
            if !self.step(limit) {
                return if cond(self) { Some(self.now) } else { None };
            }
            steps += 1;
            assert!(steps < 1_000_000, "runaway");
        }
    }

    fn holders(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| {
                self.nodes[*i]
                    .as_ref()
                    .is_some_and(|n| n.core.may_be_master(V))
            })
            .collect()
    }

    fn core(&self, i: usize) -> &Coordinator {
        &self.nodes[i].as_ref().expect("node running").core
    }

    fn quorate(&self, i: usize) -> bool {
        self.nodes[i]
            .as_ref()
            .is_some_and(|n| n.core.quorum().quorate)
    }

    fn check_single_holder(&self) {
        let q: Vec<usize> = self
            .holders()
            .into_iter()
            .filter(|i| self.quorate(*i))
            .collect();
        assert!(
            q.len() <= 1,
            "two quorate holders {q:?} at {:?}",
            self.now - self.t0
        );
    }

    fn elapsed(&self, t: Instant) -> Duration {
        t - self.t0
    }
}

#[test]
fn three_nodes_elect_the_highest_priority() {
    let mut net = Net::new(Opts::new(&[100, 150, 120]));
    let t = net
        .run_until(Duration::from_secs(2), |n| n.holders() == vec![1])
        .expect("node 1 holds the VIP");
    assert!(
        net.elapsed(t) < Duration::from_millis(500),
        "{:?}",
        net.elapsed(t)
    );
    net.run_for(Duration::from_secs(5));
    assert_eq!(net.holders(), vec![1]);
    for i in 0..3 {
        assert!(net.quorate(i));
        assert_eq!(net.core(i).elected(V), Some(NodeId(1)));
        assert_eq!(net.core(i).quorum().votes, 3);
    }
    assert!(net.fence_log.is_empty());
    let s = net.core(0).status(net.now);
    assert_eq!(s.instances[0].holders, vec![NodeId(1)]);
    assert!(s.nodes.iter().all(|n| n.state == NodeState::Online));
}

#[test]
fn partitioned_master_releases_and_majority_fences_before_taking_over() {
    let mut net = Net::new(Opts::new(&[100, 150, 120]));
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.holders(), vec![1]);
    let cut_at = net.now;
    net.isolate(1);
    // The minority releases within one detection time (plus a heartbeat).
    let released = net
        .run_until(Duration::from_secs(2), |n| !n.core(1).may_be_master(V))
        .expect("released");
    assert!(
        released - cut_at <= Duration::from_millis(400),
        "{:?}",
        released - cut_at
    );
    assert!(net.core(1).must_release_all());
    // Node 0 (lowest id of the majority) fences node 1; node 2 takes over
    // only after the fence completes.
    let taken = net
        .run_until(Duration::from_secs(5), |n| n.holders() == vec![2])
        .expect("node 2 takes over");
    assert_eq!(net.fence_log.len(), 1);
    let (fenced_at, by, target, ok) = net.fence_log[0];
    assert_eq!((by, target, ok), (0, NodeId(1), true));
    assert!(taken >= fenced_at, "takeover before the fence");
    assert!(
        // detection, settle (1.5 intervals), fence, handshake
        taken - cut_at <= Duration::from_millis(300 + 150 + 500 + 100),
        "{:?}",
        taken - cut_at
    );
    assert!(
        net.takeovers.iter().any(|(_, i)| *i == 2),
        "fast takeover hint"
    );
    assert!(net.core(2).is_fenced(NodeId(1)));
    assert!(
        net.core(2).is_fenced(NodeId(1)) && net.core(0).is_fenced(NodeId(1)),
        "the fence is known on both"
    );
    assert_eq!(
        net.core(2).status(net.now).nodes[1].state,
        NodeState::Fenced
    );
}

#[test]
fn failed_fence_blocks_takeover_and_is_retried() {
    let mut net = Net::new(Opts::new(&[100, 150, 120]));
    net.run_for(Duration::from_secs(2));
    net.fence_script.insert(1, vec![false, false, true]);
    net.crash(1);
    let crash_at = net.now;
    net.run_for(Duration::from_millis(1500));
    assert!(net.holders().is_empty(), "no takeover while fencing fails");
    assert!(net.core(2).fence_needed(NodeId(1)));
    assert_eq!(
        net.core(0).status(net.now).instances[0].waiting_for_fence,
        vec![NodeId(1)]
    );
    let taken = net
        .run_until(Duration::from_secs(10), |n| n.holders() == vec![2])
        .expect("taken after the third attempt");
    let attempts: Vec<bool> = net.fence_log.iter().map(|f| f.3).collect();
    assert_eq!(attempts, vec![false, false, true]);
    // Detection 300 ms, then 3 x 500 ms fence + 2 x 1 s retry pause.
    assert!(taken - crash_at >= Duration::from_millis(300 + 1500 + 2000));
    assert!(net
        .events
        .iter()
        .any(|(_, i, e)| *i == 0 && *e == Event::FenceFailed { node: NodeId(1) }));
}

#[test]
fn without_fencing_a_crash_is_taken_over_at_detection_time() {
    let mut o = Opts::new(&[100, 150, 120]);
    o.fencing = false;
    let mut net = Net::new(o);
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.holders(), vec![1]);
    net.crash(1);
    let crash_at = net.now;
    let taken = net
        .run_until(Duration::from_secs(2), |n| n.holders() == vec![2])
        .expect("taken");
    // The last heartbeat of node 1 was at most one interval before the
    // crash; detection is 300 ms after it; the claim handshake adds a
    // quarter interval plus round trips.
    // crash, plus up to two rate-limited early heartbeats (a quarter
    // interval each) and the latency for the claim handshake.
    assert!(
        taken - crash_at <= Duration::from_millis(300 + 50 + 5),
        "{:?}",
        taken - crash_at
    );
    assert_eq!(net.takeovers.last().map(|t| t.1), Some(2));
    assert!(net.fence_log.is_empty());
}

#[test]
fn standby_moves_the_vip_and_auto_failback_returns_it() {
    let mut net = Net::new(Opts::new(&[100, 150, 120]));
    net.run_for(Duration::from_secs(2));
    net.command(1, Command::Standby);
    net.run_until(Duration::from_secs(1), |n| n.holders() == vec![2])
        .expect("moved to node 2");
    assert!(net.core(1).must_release_all());
    assert_eq!(
        net.core(0).status(net.now).nodes[1].state,
        NodeState::Standby
    );
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.holders(), vec![2], "standby stays away");
    net.command(1, Command::Unstandby);
    net.run_until(Duration::from_secs(1), |n| n.holders() == vec![1])
        .expect("auto failback");
    assert!(net.takeovers.is_empty(), "graceful moves are not takeovers");
}

#[test]
fn manual_failback_waits_for_the_command() {
    let mut o = Opts::new(&[100, 150, 120]);
    o.failback = Failback::Manual;
    o.fencing = false;
    let mut net = Net::new(o);
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.holders(), vec![1]);
    net.crash(1);
    net.run_until(Duration::from_secs(2), |n| n.holders() == vec![2])
        .expect("failover");
    net.start(1);
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.holders(), vec![2], "no automatic failback");
    assert!(
        net.events
            .iter()
            .any(|(_, i, e)| *i == 2 && *e == Event::NodeRestarted { node: NodeId(1) })
            || net.core(2).peer_incarnation(NodeId(1)).is_some()
    );
    // The command may be given on any node.
    net.command(0, Command::Failback);
    net.run_until(Duration::from_secs(1), |n| n.holders() == vec![1])
        .expect("failback on command");
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.holders(), vec![1]);
    assert!(
        !net.core(0).status(net.now).failback_requested,
        "request cleared"
    );
}

#[test]
fn freeze_keeps_what_is_held_and_ignore_acts_quorate() {
    let mut o = Opts::new(&[100, 150, 120]);
    o.policy = NoQuorumPolicy::Freeze;
    o.fencing = true;
    o.fence_time = Duration::from_secs(3600);
    let mut net = Net::new(o);
    net.run_for(Duration::from_secs(2));
    net.isolate(1);
    net.run_for(Duration::from_secs(2));
    assert!(!net.quorate(1));
    assert!(net.core(1).may_be_master(V), "freeze keeps the VIP");
    assert!(!net.core(1).must_release_all());
    assert!(
        !net.core(2).may_be_master(V),
        "the majority waits for the fence"
    );

    let mut o = Opts::new(&[100, 150, 120]);
    o.policy = NoQuorumPolicy::Ignore;
    o.fencing = false;
    let mut net = Net::new(o);
    net.run_for(Duration::from_secs(1));
    net.crash(1);
    net.crash(2);
    net.run_until(Duration::from_secs(2), |n| n.holders() == vec![0])
        .expect("ignore: the lone node takes the VIP");
    assert!(!net.quorate(0));
}

#[test]
fn two_node_wait_for_all_and_fence_race() {
    let mut o = Opts::new(&[100, 150]);
    o.two_node = true;
    o.wait_for_all = true;
    o.down_at_start = vec![1];
    let mut net = Net::new(o);
    net.run_for(Duration::from_secs(2));
    assert!(
        !net.quorate(0),
        "wait_for_all: not quorate before both were seen"
    );
    assert!(net.fence_log.is_empty(), "and does not fence");
    assert!(net.holders().is_empty());
    net.start(1);
    net.run_until(Duration::from_secs(2), |n| n.holders() == vec![1])
        .expect("both up: node 1 holds");
    // Split: each alone is not quorate until the other is fenced.
    net.isolate(1);
    net.run_until(Duration::from_secs(2), |n| {
        n.nodes[0].is_none() || n.nodes[1].is_none()
    })
    .expect("one of them is fenced");
    let survivor = if net.nodes[0].is_some() { 0 } else { 1 };
    net.run_until(Duration::from_secs(2), |n| n.holders() == vec![survivor])
        .expect("the survivor holds the VIP");
    assert!(net.quorate(survivor));
    assert_eq!(net.core(survivor).quorum().quorum, 1);
}

#[test]
fn maintenance_keeps_the_vip_releases_nothing_and_fences_nothing() {
    let mut o = Opts::new(&[100, 150, 120]);
    o.fence_time = Duration::from_secs(3600);
    let mut net = Net::new(o);
    net.run_for(Duration::from_secs(2));
    net.command(1, Command::Maintenance);
    net.isolate(1);
    net.run_for(Duration::from_secs(1));
    assert!(!net.quorate(1));
    assert!(net.core(1).may_be_master(V), "maintenance does not release");
    assert!(!net.core(1).must_release_all());
    assert_eq!(
        net.core(0).status(net.now).nodes[1].state,
        NodeState::Unclean
    );
    net.heal();
    net.fences.clear();
    net.input(
        0,
        Input::FenceDone {
            node: NodeId(1),
            ok: false,
        },
    );
    net.run_for(Duration::from_secs(1));
    assert_eq!(
        net.core(0).status(net.now).nodes[1].state,
        NodeState::Maintenance
    );
    net.command(1, Command::Unmaintenance);
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.holders(), vec![1]);

    // Node 0, the lowest id, is the fencer; in maintenance it fences nothing.
    net.command(0, Command::Maintenance);
    net.run_for(Duration::from_millis(500));
    net.crash(2);
    net.run_for(Duration::from_secs(2));
    assert!(
        net.fences.is_empty(),
        "no fence requested by a node in maintenance"
    );
    assert!(net.core(0).fence_needed(NodeId(2)));
    assert_eq!(net.holders(), vec![1]);
}

#[test]
fn leave_hands_over_without_fencing() {
    let mut net = Net::new(Opts::new(&[100, 150, 120]));
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.holders(), vec![1]);
    net.command(1, Command::Leave);
    assert!(!net.core(1).may_be_master(V));
    assert!(net.core(1).must_release_all());
    net.run_until(Duration::from_secs(1), |n| n.holders() == vec![2])
        .expect("taken over after leave");
    assert!(net.core(1).leave_complete());
    assert!(net.core(2).has_left(NodeId(1)));
    assert!(
        net.takeovers.iter().any(|(_, i)| *i == 2),
        "fast takeover hint"
    );
    net.crash(1);
    net.run_for(Duration::from_secs(2));
    assert!(net.fence_log.is_empty(), "a node that left is not fenced");
    assert_eq!(net.holders(), vec![2]);
    assert_eq!(net.core(0).status(net.now).nodes[1].state, NodeState::Left);
    // It comes back with a new incarnation and, with auto failback, takes
    // the VIP back.
    net.start(1);
    net.run_until(Duration::from_secs(2), |n| n.holders() == vec![1])
        .expect("back");
}

#[test]
fn witness_lease_counts_only_for_its_partition_and_expires() {
    let mut o = Opts::new(&[100, 150]);
    o.witness = true;
    o.fencing = false;
    let mut net = Net::new(o);
    net.run_for(Duration::from_secs(1));
    net.crash(1);
    net.run_for(Duration::from_secs(1));
    assert!(!net.quorate(0), "1 of 3 votes");
    // Find a heartbeat seq node 0 sent recently: its next one.
    let seq = {
        let n = net.nodes[0].as_mut().expect("running");
        let now = net.now;
        n.core.handle(now + HB, Input::Timeout);
        let mut s = None;
        while let Some(a) = n.core.poll_action() {
            if let Action::Send { seq, .. } = a {
                s = Some(seq);
            }
        }
        s.expect("a heartbeat")
    };
    net.now += HB;
    let inc = Incarnation(net.nodes[0].as_ref().expect("running").incarnation);
    net.input(
        0,
        Input::WitnessVote {
            echo_incarnation: inc,
            echo: seq,
            vote: true,
            partition: NodeSet::single(NodeId(0)).union_for_test(NodeId(1)),
        },
    );
    assert!(
        !net.quorate(0),
        "a vote for another member set does not count"
    );
    net.input(
        0,
        Input::WitnessVote {
            echo_incarnation: Incarnation(inc.0 + 1),
            echo: seq,
            vote: true,
            partition: NodeSet::single(NodeId(0)),
        },
    );
    assert!(
        !net.quorate(0),
        "a vote echoing another incarnation does not count"
    );
    net.input(
        0,
        Input::WitnessVote {
            echo_incarnation: inc,
            echo: seq,
            vote: true,
            partition: NodeSet::single(NodeId(0)),
        },
    );
    assert!(net.quorate(0), "2 of 3 votes with the witness");
    assert_eq!(net.core(0).quorum().votes, 2);
    assert!(net.core(0).may_be_master(V));
    // The lease runs from the send time of the echoed heartbeat.
    net.run_for(Duration::from_millis(290));
    assert!(net.quorate(0));
    net.run_for(Duration::from_millis(20));
    assert!(!net.quorate(0), "lease expired after the detection time");
    assert!(!net.core(0).may_be_master(V));
}

trait UnionForTest {
    fn union_for_test(self, n: NodeId) -> NodeSet;
}

impl UnionForTest for NodeSet {
    fn union_for_test(mut self, n: NodeId) -> NodeSet {
        self.insert(n);
        self
    }
}

#[test]
fn stale_incarnations_are_ignored_and_restarts_reported() {
    let mut net = Net::new(Opts::new(&[100, 150, 120]));
    net.run_for(Duration::from_secs(1));
    let old = net.core(0).peer_incarnation(NodeId(1)).expect("known");
    net.crash(1);
    net.start(1);
    net.run_for(Duration::from_millis(300));
    let new = net.core(0).peer_incarnation(NodeId(1)).expect("known");
    assert!(new > old);
    assert!(net
        .events
        .iter()
        .any(|(_, i, e)| *i == 0 && *e == Event::NodeRestarted { node: NodeId(1) }));
    // A heartbeat of the old incarnation claiming to hold the VIP is ignored.
    let mut view = net.core(1).view();
    view.instances[0] = Some(control::cluster::coordinator::InstanceView {
        priority: 255,
        eligible: true,
        holds: true,
        owner: Some(NodeId(1)),
    });
    net.input(
        0,
        Input::Heartbeat {
            link: LinkId(0),
            from: NodeId(1),
            incarnation: old,
            seq: control::cluster::Seq(u64::MAX),
            view,
        },
    );
    assert_eq!(net.core(0).peer_incarnation(NodeId(1)), Some(new));
    assert_ne!(
        net.core(0)
            .peer_view(NodeId(1))
            .and_then(|v| v.instance(V))
            .map(|i| i.priority),
        Some(255)
    );
}

/// Point 9 of the design: with 1 ms heartbeats and no fencing, a backup
/// learns of the master's crash from membership and is allowed to take
/// over (with a takeover hint, so VRRP skips Master_Down_Interval) a few
/// milliseconds after the crash.
#[test]
fn one_ms_heartbeats_fast_takeover() {
    let mut o = Opts::new(&[100, 150, 120]);
    o.fencing = false;
    o.heartbeat = MS;
    o.latency = Duration::from_micros(100);
    let mut net = Net::new(o);
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.holders(), vec![1]);
    net.crash(1);
    let crash_at = net.now;
    let taken = net
        .run_until(Duration::from_millis(100), |n| n.holders() == vec![2])
        .expect("taken over");
    let gap = taken - crash_at;
    // Detection 3 ms after the last heartbeat (at most 1 ms before the
    // crash), then the claim handshake: two early heartbeats (a quarter
    // interval each) and two latencies.
    assert!(
        gap <= Duration::from_micros(3000 + 500 + 200 + 100),
        "{gap:?}"
    );
    assert_eq!(net.takeovers.last().map(|t| t.1), Some(2));
}
