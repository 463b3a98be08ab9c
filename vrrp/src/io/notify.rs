//! Notify programs on state transitions, with keepalived's arguments.
//!
//! For each transition of an instance (or sync group):
//! 1. every program configured for the new state (keepalived's
//!    `notify_master`, `notify_backup`, `notify_fault`, `notify_stop`) runs
//!    with its own arguments only;
//! 2. then every generic program (keepalived's `notify`) runs with four
//!    arguments appended: `INSTANCE|GROUP <name> MASTER|BACKUP|FAULT|STOP <priority>`.
//!
//! [`Notifier::notify`] never blocks: it queues the transition for the
//! notifier's own task, which runs the programs one after the other, so the
//! programs of one instance run in transition order. Each run has a
//! timeout; a program still running then is killed (with its process group)
//! and logged.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::process::{run_with_timeout, RunOutcome};

/// How many transitions may wait in one notifier's queue; more are dropped (and logged).
pub const NOTIFY_QUEUE: usize = 64;

/// What the notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotifyKind {
    /// A VRRP instance.
    Instance,
    /// A sync group.
    Group,
}

impl NotifyKind {
    /// keepalived's first argument: `INSTANCE` or `GROUP`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyKind::Instance => "INSTANCE",
            NotifyKind::Group => "GROUP",
        }
    }
}

/// The state entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotifyState {
    /// Became master.
    Master,
    /// Became backup.
    Backup,
    /// Entered fault.
    Fault,
    /// Stopped (shutdown).
    Stop,
}

impl NotifyState {
    /// keepalived's third argument.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyState::Master => "MASTER",
            NotifyState::Backup => "BACKUP",
            NotifyState::Fault => "FAULT",
            NotifyState::Stop => "STOP",
        }
    }
}

/// The programs of one instance or group; each is an argv (no shell).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyPrograms {
    /// Generic programs, given the four keepalived arguments.
    pub notify: Vec<Vec<String>>,
    /// Run on entering master, no extra arguments.
    pub master: Vec<Vec<String>>,
    /// Run on entering backup.
    pub backup: Vec<Vec<String>>,
    /// Run on entering fault.
    pub fault: Vec<Vec<String>>,
    /// Run on stop.
    pub stop: Vec<Vec<String>>,
}

impl NotifyPrograms {
    /// True when nothing is configured.
    pub fn is_empty(&self) -> bool {
        self.notify.is_empty()
            && self.master.is_empty()
            && self.backup.is_empty()
            && self.fault.is_empty()
            && self.stop.is_empty()
    }

    /// The command lines to run for one transition, in order.
    pub fn commands(
        &self,
        kind: NotifyKind,
        name: &str,
        state: NotifyState,
        priority: u8,
    ) -> Vec<Vec<String>> {
        let specific = match state {
            NotifyState::Master => &self.master,
            NotifyState::Backup => &self.backup,
            NotifyState::Fault => &self.fault,
            NotifyState::Stop => &self.stop,
        };
        let mut out: Vec<Vec<String>> =
            specific.iter().filter(|a| !a.is_empty()).cloned().collect();
        out.extend(
            self.notify
                .iter()
                .filter(|a| !a.is_empty())
                .map(|argv| notify_argv(argv, kind, name, state, priority)),
        );
        out
    }
}

/// `argv` followed by keepalived's four arguments.
pub fn notify_argv(
    argv: &[String],
    kind: NotifyKind,
    name: &str,
    state: NotifyState,
    priority: u8,
) -> Vec<String> {
    let mut out = argv.to_vec();
    out.extend([
        kind.as_str().to_owned(),
        name.to_owned(),
        state.as_str().to_owned(),
        priority.to_string(),
    ]);
    out
}

/// Configuration of one [`Notifier`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySpec {
    /// Instance or group.
    pub kind: NotifyKind,
    /// Its name (second argument; `instance` label of metrics).
    pub name: String,
    /// What to run.
    pub programs: NotifyPrograms,
    /// Limit per program run.
    pub timeout: Duration,
}

/// The notify queue of one instance or group.
#[derive(Debug)]
pub struct Notifier {
    tx: mpsc::Sender<(NotifyState, u8)>,
    task: JoinHandle<()>,
    name: String,
}

impl Notifier {
    /// Starts the notifier's task on the current tokio runtime.
    pub fn spawn(spec: NotifySpec) -> Self {
        let (tx, mut rx) = mpsc::channel::<(NotifyState, u8)>(NOTIFY_QUEUE);
        let name = spec.name.clone();
        let task = tokio::spawn(async move {
            while let Some((state, priority)) = rx.recv().await {
                for argv in spec
                    .programs
                    .commands(spec.kind, &spec.name, state, priority)
                {
                    let (outcome, elapsed) = run_with_timeout(&argv, spec.timeout).await;
                    metrics::counter!(
                        "halb_vrrp_notify_runs_total",
                        "instance" => spec.name.clone(),
                        "outcome" => outcome.label()
                    )
                    .increment(1);
                    match outcome {
                        RunOutcome::Success => {
                            info!(instance = %spec.name, state = state.as_str(), program = %argv[0], ?elapsed, "notify program ran")
                        }
                        RunOutcome::TimedOut => {
                            error!(instance = %spec.name, state = state.as_str(), program = %argv[0], timeout = ?spec.timeout, "notify program timed out and was killed")
                        }
                        other => {
                            warn!(instance = %spec.name, state = state.as_str(), program = %argv[0], outcome = ?other, "notify program failed")
                        }
                    }
                }
            }
        });
        Notifier { tx, task, name }
    }

    /// Queues the transition to `state` with effective `priority`. Never
    /// blocks; returns false (and logs) when the queue is full or closed.
    pub fn notify(&self, state: NotifyState, priority: u8) -> bool {
        match self.tx.try_send((state, priority)) {
            Ok(()) => true,
            Err(e) => {
                metrics::counter!(
                    "halb_vrrp_notify_runs_total",
                    "instance" => self.name.clone(),
                    "outcome" => "dropped"
                )
                .increment(1);
                error!(instance = %self.name, state = state.as_str(), error = %e, "notify queue full: transition not notified");
                false
            }
        }
    }

    /// Stops accepting transitions and waits until the queued ones have run
    /// (use at shutdown, after queuing STOP).
    pub async fn close(self) {
        let Notifier { tx, task, .. } = self;
        drop(tx);
        let _ = task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn keepalived_argument_order() {
        assert_eq!(
            notify_argv(
                &argv(&["/bin/n", "x"]),
                NotifyKind::Instance,
                "VI_1",
                NotifyState::Master,
                150
            ),
            argv(&["/bin/n", "x", "INSTANCE", "VI_1", "MASTER", "150"])
        );
        assert_eq!(
            notify_argv(
                &argv(&["/bin/n"]),
                NotifyKind::Group,
                "G",
                NotifyState::Stop,
                0
            ),
            argv(&["/bin/n", "GROUP", "G", "STOP", "0"])
        );
    }

    #[test]
    fn specific_programs_first_then_generic() {
        let p = NotifyPrograms {
            notify: vec![argv(&["/g"])],
            master: vec![argv(&["/m", "a"])],
            fault: vec![argv(&["/f"])],
            ..NotifyPrograms::default()
        };
        assert_eq!(
            p.commands(NotifyKind::Instance, "i", NotifyState::Master, 100),
            vec![
                argv(&["/m", "a"]),
                argv(&["/g", "INSTANCE", "i", "MASTER", "100"])
            ]
        );
        assert_eq!(
            p.commands(NotifyKind::Instance, "i", NotifyState::Backup, 90),
            vec![argv(&["/g", "INSTANCE", "i", "BACKUP", "90"])]
        );
        assert!(!p.is_empty());
        assert!(NotifyPrograms::default().is_empty());
    }
}
