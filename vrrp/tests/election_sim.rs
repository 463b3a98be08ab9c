//! Several `Router`s wired through a simulated link with a virtual clock
//! (quinn's `Pair` idea): `SendAdvert` actions are delivered to the other
//! routers after a fixed delay, and the clock jumps to the next event
//! (a delivery or a `poll_timeout`). Times are asserted exactly.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use vrrp::router::{Action, Input, Router, RouterConfig, StateKind, TransitionReason};
use vrrp::wire::Advert;
use vrrp::{master_down_interval, skew_time, Centisecs, Priority, VrId};

const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100));
const DELAY: Duration = Duration::from_micros(100);

fn addr(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

struct Node {
    router: Router,
    up: bool,
    holds_vips: bool,
    gratuitous: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Change {
    at: Instant,
    node: usize,
    from: StateKind,
    to: StateKind,
    reason: TransitionReason,
}

struct Delivery {
    at: Instant,
    from: usize,
    to: usize,
    advert: Advert,
}

struct Sim {
    t0: Instant,
    now: Instant,
    nodes: Vec<Node>,
    in_flight: Vec<Delivery>,
    /// Pairs of nodes that cannot hear each other.
    cut: Vec<(usize, usize)>,
    changes: Vec<Change>,
    /// (time, from, to, priority) of every delivered advert.
    delivered: Vec<(Instant, usize, usize, Priority)>,
}

impl Sim {
    fn new(configs: Vec<RouterConfig>) -> Sim {
        let t0 = Instant::now();
        let nodes = configs
            .into_iter()
            .map(|c| Node {
                router: Router::new(c).expect("valid config"),
                up: false,
                holds_vips: false,
                gratuitous: 0,
            })
            .collect();
        Sim {
            t0,
            now: t0,
            nodes,
            in_flight: Vec::new(),
            cut: Vec::new(),
            changes: Vec::new(),
            delivered: Vec::new(),
        }
    }

    fn at(&self, micros: u64) -> Instant {
        self.t0 + Duration::from_micros(micros)
    }

    fn input(&mut self, node: usize, input: Input) {
        if matches!(input, Input::Startup) {
            self.nodes[node].up = true;
        }
        let now = self.now;
        self.nodes[node].router.handle(now, input);
        self.process_actions(node);
    }

    /// kill -9: no more actions, no deliveries, its VIPs vanish with it.
    fn crash(&mut self, node: usize) {
        self.nodes[node].up = false;
        self.nodes[node].holds_vips = false;
        self.in_flight.retain(|d| d.from != node && d.to != node);
    }

    /// Restart of a crashed node: a fresh router with the same config.
    fn restart(&mut self, node: usize) {
        let config = self.nodes[node].router.config().clone();
        self.nodes[node].router = Router::new(config).expect("valid");
        self.input(node, Input::Startup);
    }

    fn linked(&self, a: usize, b: usize) -> bool {
        !self.cut.contains(&(a, b)) && !self.cut.contains(&(b, a))
    }

    fn process_actions(&mut self, node: usize) {
        while let Some(action) = self.nodes[node].router.poll_action() {
            match action {
                Action::SendAdvert { priority, .. } => {
                    let advert = self.nodes[node].router.advert(priority);
                    for to in 0..self.nodes.len() {
                        if to != node && self.linked(node, to) {
                            self.in_flight.push(Delivery {
                                at: self.now + DELAY,
                                from: node,
                                to,
                                advert: advert.clone(),
                            });
                        }
                    }
                }
                Action::AddVips => self.nodes[node].holds_vips = true,
                Action::DelVips => self.nodes[node].holds_vips = false,
                Action::SendGratuitous => self.nodes[node].gratuitous += 1,
                Action::StateChanged { from, to, reason } => self.changes.push(Change {
                    at: self.now,
                    node,
                    from,
                    to,
                    reason,
                }),
                Action::Warn(_) => {}
            }
        }
    }

    fn next_event(&self) -> Option<Instant> {
        let timers = self
            .nodes
            .iter()
            .filter(|n| n.up)
            .filter_map(|n| n.router.poll_timeout());
        let deliveries = self.in_flight.iter().map(|d| d.at);
        timers.chain(deliveries).min()
    }

    /// Jumps from event to event until `until` (inclusive); bounded in steps.
    fn run_until(&mut self, until: Instant) {
        for _ in 0..1_000_000 {
            let Some(next) = self.next_event().filter(|t| *t <= until) else {
                self.now = until;
                return;
            };
            self.now = next;
            let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.in_flight)
                .into_iter()
                .partition(|d| d.at <= next);
            self.in_flight = rest;
            for d in due {
                if !self.nodes[d.to].up || !self.linked(d.from, d.to) {
                    continue;
                }
                self.delivered.push((next, d.from, d.to, d.advert.priority));
                let from = self.nodes[d.from].router.config().primary_address;
                self.nodes[d.to].router.handle(
                    next,
                    Input::AdvertReceived {
                        from,
                        advert: d.advert,
                        addresses_match: true,
                    },
                );
                self.process_actions(d.to);
            }
            for i in 0..self.nodes.len() {
                if self.nodes[i].up
                    && self.nodes[i]
                        .router
                        .poll_timeout()
                        .is_some_and(|t| t <= next)
                {
                    self.nodes[i].router.handle_timeout(next);
                    self.process_actions(i);
                }
            }
        }
        panic!("simulation did not settle");
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].up && self.nodes[*i].router.is_master())
            .collect()
    }

    fn vip_holders(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].holds_vips)
            .collect()
    }

    fn last_change_to_master(&self, node: usize) -> Option<Change> {
        self.changes
            .iter()
            .rev()
            .find(|c| c.node == node && c.to == StateKind::Master)
            .copied()
    }

    fn last_delivery(&self, from: usize, to: usize) -> Option<Instant> {
        self.delivered
            .iter()
            .rev()
            .find(|(_, f, t, _)| *f == from && *t == to)
            .map(|(at, ..)| *at)
    }
}

fn cfg(last: u8, priority: u8) -> RouterConfig {
    RouterConfig {
        priority: Priority(priority),
        ..RouterConfig::new(VrId(42), addr(last), vec![VIP])
    }
}

fn mdi(p: u8) -> Duration {
    master_down_interval(Priority(p), Centisecs(100))
}

/// A (200), B (100), C (150), all started at t0.
fn three() -> Sim {
    let mut sim = Sim::new(vec![cfg(1, 200), cfg(2, 100), cfg(3, 150)]);
    for i in 0..3 {
        sim.input(i, Input::Startup);
    }
    sim
}

#[test]
fn election_highest_priority_wins_at_its_master_down_interval() {
    let mut sim = three();
    sim.run_for(Duration::from_secs(10));
    assert_eq!(sim.masters(), vec![0]);
    assert_eq!(sim.vip_holders(), vec![0]);
    let c = sim.last_change_to_master(0).expect("A became master");
    // 3 s + (56 * 1 s) / 256 = 3.218750 s after start.
    assert_eq!(c.at, sim.at(3_218_750));
    assert_eq!(c.reason, TransitionReason::MasterDownTimer);
    assert_eq!(
        sim.changes
            .iter()
            .filter(|c| c.to == StateKind::Master)
            .count(),
        1,
        "nobody else ever became master"
    );
}

#[test]
fn master_crash_failover_after_exactly_master_down_interval() {
    let mut sim = three();
    sim.run_for(Duration::from_secs(10));
    sim.crash(0);
    let last_heard = sim.last_delivery(0, 2).expect("C heard A");
    sim.run_for(Duration::from_secs(10));
    assert_eq!(sim.masters(), vec![2], "C (150) takes over, not B (100)");
    let c = sim.last_change_to_master(2).expect("C became master");
    assert_eq!(c.reason, TransitionReason::MasterDownTimer);
    // 3 s + 106 * 1 s / 256 = 3_414_062 us after the last advert C heard.
    assert_eq!(c.at - last_heard, mdi(150));
    assert_eq!(mdi(150), Duration::from_micros(3_414_062));
    assert_eq!(sim.vip_holders(), vec![2]);
    assert!(sim.last_change_to_master(1).is_none());
}

#[test]
fn priority_zero_resignation_hands_over_after_skew_time() {
    let mut sim = three();
    sim.run_for(Duration::from_secs(10));
    let stop = sim.now;
    sim.input(0, Input::Shutdown);
    assert!(
        !sim.nodes[0].holds_vips,
        "the resigning master removed its VIPs"
    );
    sim.run_for(Duration::from_secs(5));
    assert_eq!(sim.masters(), vec![2]);
    let c = sim.last_change_to_master(2).expect("C became master");
    assert_eq!(c.reason, TransitionReason::ResignReceived);
    // Delivered DELAY after the shutdown, then Skew_Time(150) = 414_062 us.
    assert_eq!(
        c.at,
        stop + DELAY + skew_time(Priority(150), Centisecs(100))
    );
    assert_eq!(c.at - stop, Duration::from_micros(414_162));
    assert!(
        sim.last_change_to_master(1).is_none(),
        "B heard C before its skew ran out"
    );
}

#[test]
fn preempt_on_restarted_higher_priority_router_takes_back() {
    let mut sim = three();
    sim.run_for(Duration::from_secs(10));
    sim.crash(0);
    sim.run_for(Duration::from_secs(10));
    assert_eq!(sim.masters(), vec![2]);
    let restart = sim.now;
    sim.restart(0);
    sim.run_for(Duration::from_secs(10));
    assert_eq!(sim.masters(), vec![0]);
    let a = sim.last_change_to_master(0).expect("A preempted");
    assert_eq!(a.reason, TransitionReason::Preempted);
    // A discards C's lower adverts and its own down timer fires.
    assert_eq!(a.at, restart + mdi(200));
    let c_down = sim
        .changes
        .iter()
        .rev()
        .find(|c| c.node == 2)
        .copied()
        .expect("C changed");
    assert_eq!(c_down.to, StateKind::Backup);
    assert_eq!(c_down.reason, TransitionReason::HigherPriorityAdvert);
    assert_eq!(c_down.at, a.at + DELAY);
    assert_eq!(sim.vip_holders(), vec![0]);
}

#[test]
fn no_preempt_keeps_the_current_master() {
    let configs = [cfg(1, 200), cfg(2, 100), cfg(3, 150)]
        .into_iter()
        .map(|mut c| {
            c.preempt = false;
            c
        })
        .collect();
    let mut sim = Sim::new(configs);
    for i in 0..3 {
        sim.input(i, Input::Startup);
    }
    sim.run_for(Duration::from_secs(10));
    assert_eq!(sim.masters(), vec![0]);
    sim.crash(0);
    sim.run_for(Duration::from_secs(10));
    assert_eq!(sim.masters(), vec![2]);
    sim.restart(0);
    sim.run_for(Duration::from_secs(60));
    assert_eq!(sim.masters(), vec![2], "no failback without preempt");
    assert_eq!(sim.vip_holders(), vec![2]);
}

#[test]
fn preempt_delay_waits_before_taking_back() {
    let mut a = cfg(1, 200);
    a.preempt_delay = Duration::from_secs(20);
    let mut sim = Sim::new(vec![a, cfg(3, 150)]);
    sim.input(1, Input::Startup);
    sim.run_for(Duration::from_secs(10));
    assert_eq!(sim.masters(), vec![1]);
    sim.input(0, Input::Startup);
    let start = sim.now;
    sim.run_for(Duration::from_secs(19));
    assert_eq!(sim.masters(), vec![1], "still within preempt_delay");
    sim.run_for(Duration::from_secs(10));
    assert_eq!(sim.masters(), vec![0]);
    let first_heard = sim
        .delivered
        .iter()
        .find(|(at, f, t, _)| *at >= start && *f == 1 && *t == 0)
        .map(|(at, ..)| *at)
        .expect("A heard B");
    let change = sim.last_change_to_master(0).expect("A took over");
    assert_eq!(change.reason, TransitionReason::Preempted);
    assert_eq!(change.at, first_heard + Duration::from_secs(20));
}

#[test]
fn equal_priority_tie_broken_by_higher_address() {
    let mut sim = Sim::new(vec![cfg(2, 100), cfg(3, 100)]);
    sim.input(0, Input::Startup);
    sim.input(1, Input::Startup);
    sim.run_for(Duration::from_secs(10));
    // Both timers fire together; each hears the other; .3 wins.
    assert_eq!(sim.masters(), vec![1]);
    assert_eq!(sim.vip_holders(), vec![1]);
    let lost = sim
        .changes
        .iter()
        .find(|c| c.node == 0 && c.from == StateKind::Master)
        .copied()
        .expect(".2 stepped down");
    assert_eq!(lost.reason, TransitionReason::TieBreakLost);
    assert_eq!(lost.at, sim.at(3_609_375) + DELAY);
}

#[test]
fn split_brain_heals_and_master_re_announces() {
    let mut sim = Sim::new(vec![cfg(1, 200), cfg(2, 100)]);
    sim.input(0, Input::Startup);
    sim.input(1, Input::Startup);
    sim.run_for(Duration::from_secs(10));
    assert_eq!(sim.masters(), vec![0]);
    sim.cut.push((0, 1));
    sim.run_for(Duration::from_secs(10));
    assert_eq!(sim.masters(), vec![0, 1], "partitioned: two masters");
    // Heal just after A's advert was lost in the partition, so that B's
    // (lower-priority) advert is the first to cross the healed link.
    let a_next = sim.nodes[0].router.poll_timeout().expect("A advert timer");
    let b_next = sim.nodes[1].router.poll_timeout().expect("B advert timer");
    assert_ne!(a_next, b_next);
    if a_next < b_next {
        sim.run_until(a_next + Duration::from_micros(1));
    }
    let b_next = sim.nodes[1].router.poll_timeout().expect("B advert timer");
    let garps_before = sim.nodes[0].gratuitous;
    let heal = sim.now;
    sim.cut.clear();
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.masters(), vec![0]);
    assert_eq!(sim.vip_holders(), vec![0]);
    assert!(
        sim.nodes[0].gratuitous > garps_before,
        "A re-sent gratuitous ARPs when it heard B's lower-priority advert"
    );
    let b = sim
        .changes
        .iter()
        .rev()
        .find(|c| c.node == 1)
        .copied()
        .expect("B changed");
    assert_eq!(b.to, StateKind::Backup);
    assert_eq!(b.reason, TransitionReason::HigherPriorityAdvert);
    // B's advert reaches A, A answers at once, B hears the answer.
    assert_eq!(b.at, b_next + DELAY + DELAY);
    assert!(
        b.at - heal <= Duration::from_secs(1) + DELAY * 2,
        "healed within one advert interval"
    );
    assert_eq!(sim.nodes[0].router.stats().lower_priority_answered, 1);
}

#[test]
fn fast_adverts_fail_over_in_tens_of_milliseconds() {
    let mk = |last, p| {
        let mut c = cfg(last, p);
        c.advert_interval = Centisecs(1); // 10 ms
        c
    };
    let mut sim = Sim::new(vec![mk(1, 200), mk(2, 100)]);
    sim.input(0, Input::Startup);
    sim.input(1, Input::Startup);
    sim.run_for(Duration::from_secs(1));
    sim.crash(0);
    let last = sim.last_delivery(0, 1).expect("heard");
    sim.run_for(Duration::from_secs(1));
    let b = sim.last_change_to_master(1).expect("B took over");
    // 3 * 10 ms + 156 * 10 ms / 256 = 36_093 us.
    assert_eq!(b.at - last, Duration::from_micros(36_093));
}
