//! Tracking, pure: observations in (interface up/down, script results, file
//! values), effective priority and fault flag out. The driver runs the
//! scripts, reads the files and watches the links, feeds each observation to
//! [`Tracker::observe`], and on a changed [`TrackOutcome`] sends
//! [`Input::PriorityChanged`](crate::Input::PriorityChanged) and
//! [`Input::Fault`](crate::Input::Fault) to the router.
//!
//! Weight semantics follow keepalived:
//! - interface / script with weight `w > 0`: `+w` while up / succeeding;
//! - weight `w < 0`: `+w` (a decrease) while down / failing;
//! - weight `0`: down / failing puts the instance in Fault;
//! - file: `value * weight` is added, whatever its sign; with weight 0 a
//!   non-zero value means Fault.
//!
//! Effective priority = base + the sum above, clamped to 1..=254.
//!
//! The address owner (base priority 255) keeps 255: weights never lower it
//! (keepalived ignores tracking weights for the owner too, since an owner
//! below 255 would no longer be the owner); only weight-0 trackers, through
//! Fault, take it out of service.
//!
//! Scripts use rise/fall: a succeeding script fails after `fall`
//! consecutive failures, a failing one recovers after `rise` consecutive
//! successes. Before any result a script counts as failing but one success
//! away from recovering (keepalived's initial state), so an instance does not
//! claim mastership on a health check it has not run yet.

use crate::{Error, Priority};

/// A tracked interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInterface {
    pub name: String,
    pub weight: i32,
}

/// A tracked script (run by the driver with a timeout; only its results come here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackScript {
    pub name: String,
    pub weight: i32,
    pub rise: u32,
    pub fall: u32,
}

/// A tracked file holding an integer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackFile {
    pub name: String,
    pub weight: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackConfig {
    pub base_priority: Priority,
    pub interfaces: Vec<TrackInterface>,
    pub scripts: Vec<TrackScript>,
    pub files: Vec<TrackFile>,
}

/// One observation from the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation<'a> {
    Interface { name: &'a str, up: bool },
    Script { name: &'a str, success: bool },
    File { name: &'a str, value: i64 },
}

/// What the router should be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackOutcome {
    pub priority: Priority,
    pub fault: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ScriptState {
    ok: bool,
    /// Consecutive results against the current status.
    streak: u32,
}

/// Tracking state of one instance.
#[derive(Debug, Clone)]
pub struct Tracker {
    config: TrackConfig,
    interfaces_up: Vec<bool>,
    scripts: Vec<ScriptState>,
    files: Vec<i64>,
    outcome: TrackOutcome,
}

impl Tracker {
    /// Interfaces start up, files at 0, scripts failing but one success
    /// from recovering; the driver reports the real states at start.
    pub fn new(config: TrackConfig) -> Result<Tracker, Error> {
        let mut names = std::collections::BTreeSet::new();
        let all = config
            .interfaces
            .iter()
            .map(|t| ("interface", &t.name))
            .chain(config.scripts.iter().map(|t| ("script", &t.name)))
            .chain(config.files.iter().map(|t| ("file", &t.name)));
        for (kind, name) in all {
            if !names.insert((kind, name.clone())) {
                return Err(Error::DuplicateTracker(name.clone()));
            }
        }
        if let Some(s) = config.scripts.iter().find(|s| s.rise == 0 || s.fall == 0) {
            return Err(Error::ZeroRiseFall(s.name.clone()));
        }
        let scripts = config
            .scripts
            .iter()
            .map(|s| ScriptState {
                ok: false,
                streak: s.rise - 1,
            })
            .collect();
        let mut tracker = Tracker {
            interfaces_up: vec![true; config.interfaces.len()],
            files: vec![0; config.files.len()],
            scripts,
            outcome: TrackOutcome {
                priority: config.base_priority,
                fault: false,
            },
            config,
        };
        tracker.outcome = tracker.compute();
        Ok(tracker)
    }

    pub fn outcome(&self) -> TrackOutcome {
        self.outcome
    }

    /// Applies one observation; returns the new outcome if it changed.
    pub fn observe(&mut self, observation: Observation<'_>) -> Result<Option<TrackOutcome>, Error> {
        match observation {
            Observation::Interface { name, up } => {
                let i = position(self.config.interfaces.iter().map(|t| &t.name), name)?;
                self.interfaces_up[i] = up;
            }
            Observation::Script { name, success } => {
                let i = position(self.config.scripts.iter().map(|t| &t.name), name)?;
                let cfg = &self.config.scripts[i];
                let state = &mut self.scripts[i];
                if success == state.ok {
                    state.streak = 0;
                } else {
                    state.streak += 1;
                    let needed = if state.ok { cfg.fall } else { cfg.rise };
                    if state.streak >= needed {
                        state.ok = success;
                        state.streak = 0;
                    }
                }
            }
            Observation::File { name, value } => {
                let i = position(self.config.files.iter().map(|t| &t.name), name)?;
                self.files[i] = value;
            }
        }
        let outcome = self.compute();
        if outcome == self.outcome {
            return Ok(None);
        }
        tracing::debug!(
            priority = outcome.priority.0,
            fault = outcome.fault,
            "tracking outcome changed"
        );
        self.outcome = outcome;
        Ok(Some(outcome))
    }

    fn compute(&self) -> TrackOutcome {
        let mut fault = false;
        let mut delta: i64 = 0;
        let mut apply = |weight: i32, ok: bool| {
            let w = i64::from(weight);
            match (w.signum(), ok) {
                (0, false) => fault = true,
                (1, true) | (-1, false) => delta += w,
                _ => {}
            }
        };
        for (t, up) in self.config.interfaces.iter().zip(&self.interfaces_up) {
            apply(t.weight, *up);
        }
        for (t, s) in self.config.scripts.iter().zip(&self.scripts) {
            apply(t.weight, s.ok);
        }
        for (t, value) in self.config.files.iter().zip(&self.files) {
            if t.weight == 0 {
                fault |= *value != 0;
            } else {
                delta = delta.saturating_add(value.saturating_mul(i64::from(t.weight)));
            }
        }
        let base = self.config.base_priority;
        let priority = if base.is_owner() {
            base
        } else {
            let p = i64::from(base.0).saturating_add(delta).clamp(1, 254);
            Priority(u8::try_from(p).unwrap_or(Priority::MAX_BACKUP.0))
        };
        TrackOutcome { priority, fault }
    }
}

fn position<'a>(mut names: impl Iterator<Item = &'a String>, name: &str) -> Result<usize, Error> {
    names
        .position(|n| n == name)
        .ok_or_else(|| Error::UnknownTracker(name.to_owned()))
}

/// Parses a track file's content: an optional sign and decimal digits,
/// surrounding whitespace allowed (keepalived reads the leading integer).
pub fn parse_track_file(content: &str) -> Result<i64, Error> {
    let trimmed = content.trim();
    let first = trimmed.split_whitespace().next().unwrap_or("");
    first
        .parse::<i64>()
        .map_err(|_| Error::TrackFileNotInteger(trimmed.chars().take(32).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, weight: i32) -> TrackInterface {
        TrackInterface {
            name: name.into(),
            weight,
        }
    }

    fn script(name: &str, weight: i32, rise: u32, fall: u32) -> TrackScript {
        TrackScript {
            name: name.into(),
            weight,
            rise,
            fall,
        }
    }

    fn config(base: u8) -> TrackConfig {
        TrackConfig {
            base_priority: Priority(base),
            interfaces: vec![iface("eth1", -50), iface("eth2", 0), iface("bond0", 10)],
            scripts: vec![script("web", -60, 2, 3)],
            files: vec![TrackFile {
                name: "prio".into(),
                weight: 5,
            }],
        }
    }

    fn outcome(p: u8, fault: bool) -> TrackOutcome {
        TrackOutcome {
            priority: Priority(p),
            fault,
        }
    }

    fn iface_obs(name: &str, up: bool) -> Observation<'_> {
        Observation::Interface { name, up }
    }

    fn script_obs(success: bool) -> Observation<'static> {
        Observation::Script {
            name: "web",
            success,
        }
    }

    #[test]
    fn initial_outcome_counts_unrun_scripts_as_failing() {
        let t = Tracker::new(config(150)).expect("valid");
        // 150 + 10 (bond0 up, positive weight) - 60 (script not yet succeeded).
        assert_eq!(t.outcome(), outcome(100, false));
    }

    #[test]
    fn interface_weights_and_fault() {
        let mut t = Tracker::new(config(150)).expect("valid");
        t.observe(script_obs(true)).expect("known");
        assert_eq!(
            t.outcome(),
            outcome(160, false),
            "one success recovers the script"
        );
        assert_eq!(
            t.observe(iface_obs("eth1", false)).expect("known"),
            Some(outcome(110, false))
        );
        assert_eq!(
            t.observe(iface_obs("bond0", false)).expect("known"),
            Some(outcome(100, false))
        );
        assert_eq!(
            t.observe(iface_obs("eth2", false)).expect("known"),
            Some(outcome(100, true)),
            "weight 0 interface down: fault"
        );
        assert_eq!(t.observe(iface_obs("eth2", false)).expect("known"), None);
        assert_eq!(
            t.observe(iface_obs("eth2", true)).expect("known"),
            Some(outcome(100, false))
        );
        assert_eq!(
            t.observe(iface_obs("nope", true)),
            Err(Error::UnknownTracker("nope".into()))
        );
    }

    #[test]
    fn script_rise_and_fall() {
        let mut t = Tracker::new(config(150)).expect("valid");
        t.observe(script_obs(true)).expect("known");
        assert_eq!(t.outcome().priority, Priority(160));
        // fall = 3: two failures are not enough, a success resets the count.
        t.observe(script_obs(false)).expect("known");
        t.observe(script_obs(false)).expect("known");
        t.observe(script_obs(true)).expect("known");
        t.observe(script_obs(false)).expect("known");
        t.observe(script_obs(false)).expect("known");
        assert_eq!(t.outcome().priority, Priority(160));
        assert_eq!(
            t.observe(script_obs(false)).expect("known"),
            Some(outcome(100, false))
        );
        // rise = 2.
        assert_eq!(t.observe(script_obs(true)).expect("known"), None);
        assert_eq!(
            t.observe(script_obs(true)).expect("known"),
            Some(outcome(160, false))
        );
    }

    #[test]
    fn file_value_times_weight_and_clamping() {
        let mut t = Tracker::new(config(150)).expect("valid");
        t.observe(script_obs(true)).expect("known");
        let file = |value| Observation::File {
            name: "prio",
            value,
        };
        assert_eq!(
            t.observe(file(4)).expect("known"),
            Some(outcome(180, false))
        );
        assert_eq!(
            t.observe(file(100)).expect("known"),
            Some(outcome(254, false))
        );
        assert_eq!(
            t.observe(file(-100)).expect("known"),
            Some(outcome(1, false))
        );
        assert_eq!(
            t.observe(file(i64::MIN)).expect("known"),
            None,
            "saturates, still 1"
        );
    }

    #[test]
    fn file_with_weight_zero_faults_on_non_zero() {
        let mut t = Tracker::new(TrackConfig {
            base_priority: Priority(100),
            interfaces: vec![],
            scripts: vec![],
            files: vec![TrackFile {
                name: "maint".into(),
                weight: 0,
            }],
        })
        .expect("valid");
        let file = |value| Observation::File {
            name: "maint",
            value,
        };
        assert_eq!(t.observe(file(1)).expect("known"), Some(outcome(100, true)));
        assert_eq!(
            t.observe(file(0)).expect("known"),
            Some(outcome(100, false))
        );
    }

    #[test]
    fn owner_keeps_255_but_faults() {
        let mut t = Tracker::new(config(255)).expect("valid");
        assert_eq!(t.outcome(), outcome(255, false));
        assert_eq!(t.observe(iface_obs("eth1", false)).expect("known"), None);
        assert_eq!(
            t.observe(iface_obs("eth2", false)).expect("known"),
            Some(outcome(255, true))
        );
    }

    #[test]
    fn invalid_configs() {
        let mut c = config(100);
        c.scripts.push(script("web", 1, 1, 1));
        assert_eq!(
            Tracker::new(c).err(),
            Some(Error::DuplicateTracker("web".into()))
        );
        let mut c = config(100);
        c.scripts[0].rise = 0;
        assert_eq!(
            Tracker::new(c).err(),
            Some(Error::ZeroRiseFall("web".into()))
        );
    }

    #[test]
    fn track_file_parsing() {
        assert_eq!(parse_track_file("42\n"), Ok(42));
        assert_eq!(parse_track_file("  -7 trailing"), Ok(-7));
        assert_eq!(parse_track_file("+3"), Ok(3));
        assert!(matches!(
            parse_track_file(""),
            Err(Error::TrackFileNotInteger(_))
        ));
        assert!(matches!(
            parse_track_file("abc"),
            Err(Error::TrackFileNotInteger(_))
        ));
    }
}
