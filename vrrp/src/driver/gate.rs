//! Cluster control's hold on the instances ([`Control`]): a gate per
//! instance that says whether its router may be master, and a report of
//! each instance's local state back to cluster control.
//!
//! The VRRP crate does not know the cluster: the daemon maps the cluster's
//! decisions to [`Gates`] on a watch channel and forwards the
//! [`LocalState`] reports to it.
//!
//! Per instance, while a [`Control`] is installed:
//!
//! - gate closed (`may_be_master == false`, or the instance is missing from
//!   the map, or the sender is gone): the router is held in standby; a
//!   master resigns with a priority-0 advert and removes its VIPs at once
//!   (no deferred release: the next owner waits for this node's report that
//!   it let go);
//! - gate opening: the router takes part in the election again; when it
//!   knows no live master (none heard, or the last one resigned) it becomes
//!   master at once: cluster control has already established that no other
//!   cluster node holds the instance;
//! - `takeover` growing while open: become master now (the previous master's
//!   node is gone or fenced), without waiting for Master_Down_Interval.
//!
//! Reports go out whenever `holding` (master, or VIPs still configured) or
//! the effective priority changes; `holding` turns false only once the VIPs
//! are really removed.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;

/// What cluster control allows one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Gate {
    /// The router may be (or become) master.
    pub may_be_master: bool,
    /// Takeover hints: when it grows while the gate is open, become master
    /// now.
    pub takeover: u64,
}

/// The gates by instance name. An instance missing from the map is closed.
pub type Gates = BTreeMap<String, Gate>;

/// One instance's local state, reported to cluster control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalState {
    /// The instance name.
    pub instance: String,
    /// Master, or its VIPs are still configured here.
    pub holding: bool,
    /// The effective priority (tracking included).
    pub priority: u8,
}

/// Receives [`LocalState`] reports; called from the instance tasks, must not
/// block.
pub type Reporter = Arc<dyn Fn(&LocalState) + Send + Sync>;

/// Cluster control of a [`super::Driver`]: installed at start with
/// [`super::Driver::start_controlled`], applies to every instance
/// (reloads included).
#[derive(Clone)]
pub struct Control {
    /// The gates.
    pub gates: watch::Receiver<Gates>,
    /// Where the local states go.
    pub report: Reporter,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("gates", &*self.gates.borrow())
            .finish_non_exhaustive()
    }
}

/// The per-instance side of a [`Control`].
pub(crate) struct InstanceGate {
    name: String,
    gates: Option<watch::Receiver<Gates>>,
    report: Reporter,
    /// The gate in force.
    pub(crate) current: Gate,
    last_report: Option<(bool, u8)>,
}

impl InstanceGate {
    pub(crate) fn new(name: &str, control: &Control) -> InstanceGate {
        let mut gates = control.gates.clone();
        let current = gates
            .borrow_and_update()
            .get(name)
            .copied()
            .unwrap_or_default();
        InstanceGate {
            name: name.to_owned(),
            gates: Some(gates),
            report: control.report.clone(),
            current,
            last_report: None,
        }
    }

    /// Waits for the next change of the gates; returns this instance's new
    /// gate (closed when the sender is gone, after which it never changes).
    pub(crate) async fn changed(&mut self) -> Gate {
        let Some(rx) = self.gates.as_mut() else {
            return std::future::pending().await;
        };
        match rx.changed().await {
            Ok(()) => rx
                .borrow_and_update()
                .get(&self.name)
                .copied()
                .unwrap_or_default(),
            Err(_) => {
                self.gates = None;
                Gate {
                    may_be_master: false,
                    takeover: self.current.takeover,
                }
            }
        }
    }

    /// A gate change that has arrived but was not seen yet, if any: the
    /// instance applies it before any other event, so a router never acts
    /// on a timer or an advert with a stale gate.
    pub(crate) fn take_pending(&mut self) -> Option<Gate> {
        let rx = self.gates.as_mut()?;
        match rx.has_changed() {
            Ok(true) => Some(
                rx.borrow_and_update()
                    .get(&self.name)
                    .copied()
                    .unwrap_or_default(),
            ),
            Ok(false) => None,
            Err(_) => {
                self.gates = None;
                Some(Gate {
                    may_be_master: false,
                    takeover: self.current.takeover,
                })
            }
        }
    }

    /// Reports the local state if it changed since the last report.
    pub(crate) fn report(&mut self, holding: bool, priority: u8) {
        if self.last_report == Some((holding, priority)) {
            return;
        }
        self.last_report = Some((holding, priority));
        (self.report)(&LocalState {
            instance: self.name.clone(),
            holding,
            priority,
        });
    }
}

/// Waits for the next gate change of an optional gate.
pub(crate) async fn gate_changed(gate: &mut Option<InstanceGate>) -> Gate {
    match gate {
        Some(g) => g.changed().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn control(gates: watch::Receiver<Gates>) -> (Control, Arc<Mutex<Vec<LocalState>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let report: Reporter = Arc::new(move |s: &LocalState| {
            sink.lock().expect("lock").push(s.clone());
        });
        (Control { gates, report }, seen)
    }

    fn open(takeover: u64) -> Gate {
        Gate {
            may_be_master: true,
            takeover,
        }
    }

    #[tokio::test]
    async fn a_missing_instance_is_closed_and_changes_are_seen() {
        let (tx, rx) = watch::channel(Gates::new());
        let (c, _) = control(rx);
        let mut g = InstanceGate::new("web", &c);
        assert_eq!(g.current, Gate::default());
        tx.send_replace(Gates::from([("web".to_owned(), open(0))]));
        assert_eq!(g.changed().await, open(0));
        // Another instance's gate changes: ours is still what it was.
        tx.send_replace(Gates::from([
            ("web".to_owned(), open(0)),
            ("dns".to_owned(), open(3)),
        ]));
        assert_eq!(g.changed().await, open(0));
        tx.send_replace(Gates::from([("web".to_owned(), open(1))]));
        assert_eq!(g.changed().await, open(1));
    }

    #[tokio::test]
    async fn the_initial_value_applies_at_once() {
        let (_tx, rx) = watch::channel(Gates::from([("web".to_owned(), open(2))]));
        let (c, _) = control(rx);
        let g = InstanceGate::new("web", &c);
        assert_eq!(g.current, open(2));
    }

    #[tokio::test]
    async fn a_dropped_sender_closes_the_gate_for_good() {
        let (tx, rx) = watch::channel(Gates::from([("web".to_owned(), open(4))]));
        let (c, _) = control(rx);
        let mut g = InstanceGate::new("web", &c);
        g.current = open(4);
        drop(tx);
        assert_eq!(
            g.changed().await,
            Gate {
                may_be_master: false,
                takeover: 4
            }
        );
        let later = tokio::time::timeout(std::time::Duration::from_millis(20), g.changed()).await;
        assert!(
            later.is_err(),
            "a gone sender must not produce more changes"
        );
    }

    #[tokio::test]
    async fn a_pending_change_is_taken_once() {
        let (tx, rx) = watch::channel(Gates::new());
        let (c, _) = control(rx);
        let mut g = InstanceGate::new("web", &c);
        assert_eq!(g.take_pending(), None);
        tx.send_replace(Gates::from([("web".to_owned(), open(1))]));
        assert_eq!(g.take_pending(), Some(open(1)));
        assert_eq!(g.take_pending(), None);
        drop(tx);
        assert_eq!(g.take_pending().map(|x| x.may_be_master), Some(false));
        assert_eq!(g.take_pending(), None);
    }

    #[test]
    fn reports_only_changes() {
        let (_tx, rx) = watch::channel(Gates::new());
        let (c, seen) = control(rx);
        let mut g = InstanceGate::new("web", &c);
        g.report(false, 100);
        g.report(false, 100);
        g.report(true, 100);
        g.report(true, 90);
        g.report(true, 90);
        let got: Vec<(bool, u8)> = seen
            .lock()
            .expect("lock")
            .iter()
            .map(|s| {
                assert_eq!(s.instance, "web");
                (s.holding, s.priority)
            })
            .collect();
        assert_eq!(got, vec![(false, 100), (true, 100), (true, 90)]);
    }
}
