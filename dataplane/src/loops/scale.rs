//! How many event loops serve client connections: the pure decision, fed
//! with what the kernel says about the loop threads and the CPUs (sans-IO,
//! the caller's clock).
//!
//! A second loop only helps when it gets a CPU of its own. On a machine
//! whose CPUs are already busy (other processes, or the clients and
//! servers of a benchmark on the same cores), two loops of ours end up
//! taking turns on one CPU, and the connections of the loop that waits
//! wait for the scheduler tick (4 ms at HZ=250): the tail latency grows
//! and nothing is gained. So a loop is added when every active loop is
//! saturated **and** there is an idle CPU for it, and one is taken away
//! when the active loops spend a good part of their time runnable but not
//! running (waiting on a run queue), or when their work fits in one loop
//! fewer. After a loop is taken away for contention, adding one is held
//! back for a while that doubles each time (so a busy machine does not see
//! loops come and go every few hundred milliseconds).

use std::time::{Duration, Instant};

/// A loop is saturated from this share of the window on a CPU.
pub const SATURATED: f64 = 0.85;
/// At least this much idle CPU (in CPUs) to add a loop.
pub const IDLE_FOR_ONE_MORE: f64 = 0.5;
/// Active loops waiting on a run queue this share of the window (their
/// mean) are contended: one goes.
pub const CONTENDED: f64 = 0.25;
/// The work fits in one loop fewer when the active loops' run time adds up
/// to less than this share of one loop fewer.
pub const FITS_IN_FEWER: f64 = 0.5;
/// First hold-back of additions after a removal for contention, doubled
/// each time up to [`HOLD_MAX`].
pub const HOLD_FIRST: Duration = Duration::from_secs(5);
pub const HOLD_MAX: Duration = Duration::from_secs(120);
/// Without a contention removal for this long, the hold-back starts over
/// from [`HOLD_FIRST`].
pub const HOLD_RESET: Duration = Duration::from_secs(300);
/// After a change, the next one waits this long (the connections need to
/// move and the figures to settle).
pub const SETTLE: Duration = Duration::from_secs(1);

/// One active loop over the last window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoopSample {
    /// Share of the window the loop's thread ran on a CPU (0..=1).
    pub run: f64,
    /// Share of the window it was runnable but waiting for a CPU.
    pub wait: f64,
}

/// Why the number of active loops changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Every active loop was saturated and a CPU was idle.
    Saturated,
    /// The active loops waited for a CPU: they were sharing CPUs.
    Contended,
    /// The work fits in fewer loops.
    Light,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Saturated => "saturated",
            Reason::Contended => "contended",
            Reason::Light => "light",
        }
    }
}

/// The decision state: how many loops are active out of how many.
#[derive(Debug, Clone)]
pub struct Scaler {
    max: usize,
    active: usize,
    /// No change before this (settling after the last one).
    settle_until: Option<Instant>,
    /// No addition before this (after a removal for contention).
    hold_until: Option<Instant>,
    hold: Duration,
    last_contended: Option<Instant>,
}

impl Scaler {
    /// `max` loops (at least one), starting with one active.
    pub fn new(max: usize) -> Self {
        Scaler {
            max: max.max(1),
            active: 1,
            settle_until: None,
            hold_until: None,
            hold: HOLD_FIRST,
            last_contended: None,
        }
    }

    pub fn active(&self) -> usize {
        self.active
    }

    /// One window's figures: `loops` holds the active loops (in order),
    /// `idle_cpus` how many CPUs (of those the process may run on) were
    /// idle on average. Returns the new count and why, if it changes.
    pub fn decide(
        &mut self,
        now: Instant,
        loops: &[LoopSample],
        idle_cpus: f64,
    ) -> Option<(usize, Reason)> {
        if loops.is_empty() || self.settle_until.is_some_and(|t| now < t) {
            return None;
        }
        if self
            .last_contended
            .is_some_and(|t| now.saturating_duration_since(t) >= HOLD_RESET)
        {
            self.hold = HOLD_FIRST;
            self.last_contended = None;
        }
        let n = loops.len() as f64;
        let run: f64 = loops.iter().map(|l| l.run).sum();
        let wait = loops.iter().map(|l| l.wait).sum::<f64>() / n;
        let change = if self.active > 1 && wait >= CONTENDED {
            self.hold_until = Some(now + self.hold);
            self.hold = (self.hold * 2).min(HOLD_MAX);
            self.last_contended = Some(now);
            Some((self.active - 1, Reason::Contended))
        } else if self.active > 1 && run < FITS_IN_FEWER * (self.active - 1) as f64 {
            Some((self.active - 1, Reason::Light))
        } else if self.active < self.max
            && loops.iter().all(|l| l.run >= SATURATED)
            && idle_cpus >= IDLE_FOR_ONE_MORE
            && self.hold_until.is_none_or(|t| now >= t)
        {
            Some((self.active + 1, Reason::Saturated))
        } else {
            None
        };
        if let Some((n, _)) = change {
            self.active = n;
            self.settle_until = Some(now + SETTLE);
        }
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(run: f64, wait: f64) -> LoopSample {
        LoopSample { run, wait }
    }

    #[test]
    fn starts_with_one_and_adds_one_for_a_saturated_loop_with_an_idle_cpu() {
        let t0 = Instant::now();
        let mut sc = Scaler::new(4);
        assert_eq!(sc.active(), 1);
        assert_eq!(
            sc.decide(t0, &[s(0.97, 0.01)], 0.9),
            Some((2, Reason::Saturated))
        );
        // Settling: nothing for a second, whatever the figures.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(sc.decide(t1, &[s(0.95, 0.0), s(0.95, 0.0)], 1.5), None);
        let t2 = t0 + SETTLE;
        assert_eq!(
            sc.decide(t2, &[s(0.95, 0.0), s(0.9, 0.0)], 1.5),
            Some((3, Reason::Saturated))
        );
    }

    #[test]
    fn a_saturated_loop_on_a_busy_machine_stays_alone() {
        // The benchmark shape: the loop runs 94 % of the time, the CPUs
        // are 4 % idle.
        let t0 = Instant::now();
        let mut sc = Scaler::new(2);
        for i in 0..20 {
            let now = t0 + Duration::from_millis(250 * i);
            assert_eq!(sc.decide(now, &[s(0.94, 0.02)], 0.04), None);
        }
        assert_eq!(sc.active(), 1);
    }

    #[test]
    fn never_more_than_max_nor_fewer_than_one() {
        let t0 = Instant::now();
        let mut sc = Scaler::new(1);
        assert_eq!(sc.decide(t0, &[s(1.0, 0.0)], 8.0), None);
        let mut sc = Scaler::new(0);
        assert_eq!(sc.active(), 1);
        assert_eq!(sc.decide(t0, &[s(1.0, 0.9)], 8.0), None);
        assert_eq!(sc.decide(t0, &[s(0.0, 0.0)], 8.0), None);
    }

    #[test]
    fn loops_taking_turns_on_a_cpu_lose_one_and_additions_are_held_back() {
        let t0 = Instant::now();
        let mut sc = Scaler::new(2);
        assert_eq!(
            sc.decide(t0, &[s(0.95, 0.0)], 1.0),
            Some((2, Reason::Saturated))
        );
        // Two loops on one CPU: each runs half the time and waits the
        // other half (measured: 47 % and 45 %).
        let t1 = t0 + SETTLE;
        assert_eq!(
            sc.decide(t1, &[s(0.47, 0.45), s(0.47, 0.46)], 0.05),
            Some((1, Reason::Contended))
        );
        // An idle CPU shows up again at once: held back for HOLD_FIRST.
        let t2 = t1 + SETTLE;
        assert_eq!(sc.decide(t2, &[s(0.95, 0.0)], 1.0), None);
        let t3 = t1 + HOLD_FIRST;
        assert_eq!(
            sc.decide(t3, &[s(0.95, 0.0)], 1.0),
            Some((2, Reason::Saturated))
        );
        // Contended again: held back twice as long.
        let t4 = t3 + SETTLE;
        assert_eq!(
            sc.decide(t4, &[s(0.5, 0.4), s(0.5, 0.4)], 0.0),
            Some((1, Reason::Contended))
        );
        let t5 = t4 + HOLD_FIRST;
        assert_eq!(sc.decide(t5, &[s(0.95, 0.0)], 1.0), None);
        let t6 = t4 + HOLD_FIRST * 2;
        assert_eq!(
            sc.decide(t6, &[s(0.95, 0.0)], 1.0),
            Some((2, Reason::Saturated))
        );
    }

    #[test]
    fn the_hold_back_starts_over_after_a_quiet_while() {
        let t0 = Instant::now();
        let mut sc = Scaler::new(2);
        sc.active = 2;
        assert_eq!(
            sc.decide(t0, &[s(0.5, 0.5), s(0.5, 0.5)], 0.0),
            Some((1, Reason::Contended))
        );
        assert_eq!(sc.hold, HOLD_FIRST * 2);
        let later = t0 + HOLD_RESET;
        assert_eq!(
            sc.decide(later, &[s(0.95, 0.0)], 1.0),
            Some((2, Reason::Saturated))
        );
        assert_eq!(sc.hold, HOLD_FIRST);
    }

    #[test]
    fn light_work_goes_back_to_fewer_loops() {
        let t0 = Instant::now();
        let mut sc = Scaler::new(3);
        sc.active = 3;
        // 0.9 CPU of work on three loops: fits in two (below 0.5 x 2 = 1.0).
        assert_eq!(
            sc.decide(t0, &[s(0.3, 0.0), s(0.3, 0.0), s(0.3, 0.0)], 1.0),
            Some((2, Reason::Light))
        );
        // 1.2 CPU on two loops: does not fit in one at half load: stays.
        let t1 = t0 + SETTLE;
        assert_eq!(sc.decide(t1, &[s(0.6, 0.0), s(0.6, 0.0)], 0.8), None);
        assert_eq!(sc.active(), 2);
        // Light work is not held back: more comes back at once.
        assert_eq!(
            sc.decide(t1, &[s(0.2, 0.0), s(0.2, 0.0)], 1.6),
            Some((1, Reason::Light))
        );
        let t2 = t1 + SETTLE;
        assert_eq!(
            sc.decide(t2, &[s(0.9, 0.0)], 1.1),
            Some((2, Reason::Saturated))
        );
    }
}
