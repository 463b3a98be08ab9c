//! The tokio driver: runs [`InstanceSpec`]s as VRRP instances on the
//! network, around the sans-IO [`crate::Router`].
//!
//! - One task per instance ([`instance`]): the VRRP socket, the router's
//!   timer, a command channel, tracking (scripts, files, links) and notify
//!   programs; it executes the router's actions (adverts with the configured
//!   checksum, VIPs through rtnetlink, gratuitous ARP / NA bursts and
//!   refresh) and reports a [`InstanceStatus`] on a watch channel.
//! - One coordinator task per sync group ([`group`]).
//! - [`Driver`] starts them, applies reloads as a diff (an unchanged VIP is
//!   never moved and no spurious transition is reported), passes standby and
//!   takeover commands, and stops everything with a deadline (a master
//!   resigns with a priority-0 advert, then removes its VIPs).
//! - Under cluster control ([`Driver::start_controlled`], [`gate`]) each
//!   instance follows a [`Gate`] and reports its [`LocalState`].
//!
//! Metrics (all labelled by `instance`): `halb_vrrp_state` (0 initialize,
//! 1 backup, 2 master, 3 fault), `halb_vrrp_transitions_total{to}`,
//! `halb_vrrp_rx_dropped_total{reason}`, `halb_vrrp_priority`,
//! `halb_vrrp_adverts_sent_total`, `halb_vrrp_adverts_received_total`,
//! `halb_vrrp_send_errors_total`, `halb_vrrp_vip_errors_total`,
//! `halb_vrrp_gratuitous_bursts_total`; see [`metrics::describe`].

mod error;
pub mod gate;
mod group;
mod instance;
pub mod metrics;
mod spec;
mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::io::Netlink;
use crate::wire::Family;

pub use error::DriverError;
pub use gate::{Control, Gate, Gates, LocalState, Reporter};
pub use spec::{FileTrack, GarpSpec, InstanceSpec, ScriptTrack};
pub use status::{Counters, InstanceStatus, TransitionRecord};

use group::GroupHandle;
use instance::{Command, Instance, LocalVrids, StartAs};

struct Handle {
    spec: InstanceSpec,
    cmd: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<InstanceStatus>,
    task: JoinHandle<()>,
}

/// The running VRRP instances of this node.
pub struct Driver {
    nl: Netlink,
    instances: BTreeMap<String, Handle>,
    groups: BTreeMap<String, GroupHandle>,
    standby: bool,
    local_vrids: LocalVrids,
    control: Option<Control>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("instances", &self.instances.keys().collect::<Vec<_>>())
            .field("standby", &self.standby)
            .finish()
    }
}

/// How long a removed or restarted instance may take to resign on reload.
const RELOAD_STOP: Duration = Duration::from_secs(5);

/// Checks a whole set of specs: each valid, names unique.
pub fn check(specs: &[InstanceSpec]) -> Result<(), DriverError> {
    let mut names = BTreeSet::new();
    for s in specs {
        s.validate()?;
        if !names.insert(s.name.as_str()) {
            return Err(DriverError::DuplicateInstance(s.name.clone()));
        }
    }
    Ok(())
}

fn group_members(specs: &[InstanceSpec]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in specs {
        if let Some(g) = &s.sync_group {
            out.entry(g.clone()).or_default().push(s.name.clone());
        }
    }
    for m in out.values_mut() {
        m.sort();
    }
    out
}

fn vrid_keys(specs: &[InstanceSpec]) -> BTreeSet<(String, bool, u8)> {
    specs
        .iter()
        .map(|s| (s.interface.clone(), s.family() == Family::Ipv6, s.vrid.0))
        .collect()
}

impl Driver {
    /// Starts every instance; must run inside a tokio runtime, in the
    /// network namespace the instances live in. Nothing is started when a
    /// spec is invalid.
    pub async fn start(specs: Vec<InstanceSpec>, standby: bool) -> Result<Driver, DriverError> {
        Driver::start_controlled(specs, standby, None).await
    }

    /// [`Driver::start`] under cluster control: every instance (also those a
    /// reload adds) follows its gate from the start and reports its local
    /// state (see [`gate`]).
    pub async fn start_controlled(
        specs: Vec<InstanceSpec>,
        standby: bool,
        control: Option<Control>,
    ) -> Result<Driver, DriverError> {
        Driver::start_adopting(specs, standby, control, &BTreeSet::new()).await
    }

    /// [`Driver::start_controlled`] in a process that replaces another one
    /// (`halb run --upgrade`): the instances named in `masters` were master
    /// there and continue as master here at once, on the VIPs already on
    /// the interface, without an election (unless a fault, standby or
    /// gate forbids it; then they start as backup). The old process
    /// stops with [`Driver::detach`].
    pub async fn start_adopting(
        specs: Vec<InstanceSpec>,
        standby: bool,
        control: Option<Control>,
        masters: &BTreeSet<String>,
    ) -> Result<Driver, DriverError> {
        check(&specs)?;
        metrics::describe();
        let nl = Netlink::connect()?;
        let mut d = Driver {
            nl,
            instances: BTreeMap::new(),
            groups: BTreeMap::new(),
            standby,
            local_vrids: Arc::new(RwLock::new(vrid_keys(&specs))),
            control,
        };
        d.spawn_all(specs, &[], masters).await?;
        Ok(d)
    }

    /// Spawns `specs` (new instances), with their groups: groups named in
    /// `specs` are (re)built including the already running members.
    async fn spawn_all(
        &mut self,
        specs: Vec<InstanceSpec>,
        regroup: &[String],
        masters: &BTreeSet<String>,
    ) -> Result<(), DriverError> {
        let mut channels = BTreeMap::new();
        for s in &specs {
            channels.insert(s.name.clone(), mpsc::unbounded_channel::<Command>());
        }
        // Every group that a new instance joins, plus those asked for.
        let mut all_specs: Vec<InstanceSpec> =
            self.instances.values().map(|h| h.spec.clone()).collect();
        all_specs.extend(specs.iter().cloned());
        let members = group_members(&all_specs);
        let mut touched: BTreeSet<String> =
            specs.iter().filter_map(|s| s.sync_group.clone()).collect();
        touched.extend(regroup.iter().cloned());
        for g in touched {
            let Some(names) = members.get(&g) else {
                if let Some(old) = self.groups.remove(&g) {
                    old.stop();
                }
                continue;
            };
            let mut senders = BTreeMap::new();
            let mut seed = Vec::new();
            for n in names {
                if let Some((tx, _)) = channels.get(n) {
                    senders.insert(n.clone(), tx.clone());
                } else if let Some(h) = self.instances.get(n) {
                    senders.insert(n.clone(), h.cmd.clone());
                    let st = h.status.borrow().clone();
                    seed.push((n.clone(), st.state, st.own_fault));
                }
            }
            let handle =
                GroupHandle::spawn(&g, senders, &seed).map_err(|e| DriverError::InvalidSpec {
                    instance: g.clone(),
                    reason: e.to_string(),
                })?;
            for n in names {
                if let Some(h) = self.instances.get(n) {
                    let _ = h.cmd.send(Command::SetGroup(Some(handle.link())));
                }
            }
            if let Some(old) = self.groups.insert(g.clone(), handle) {
                old.stop();
            }
        }
        for s in specs {
            let Some((tx, rx)) = channels.remove(&s.name) else {
                continue;
            };
            let link = s
                .sync_group
                .as_ref()
                .and_then(|g| self.groups.get(g))
                .map(|g| g.link());
            let (status, task) = Instance::spawn(
                s.clone(),
                self.nl.clone(),
                self.local_vrids.clone(),
                StartAs {
                    standby: self.standby,
                    adopt_master: masters.contains(&s.name),
                },
                self.control.as_ref(),
                link,
                rx,
            )
            .await
            .map_err(|e| DriverError::InvalidSpec {
                instance: s.name.clone(),
                reason: e.to_string(),
            })?;
            self.instances.insert(
                s.name.clone(),
                Handle {
                    spec: s,
                    cmd: tx,
                    status,
                    task,
                },
            );
        }
        Ok(())
    }

    /// Applies a new set of specs as a diff: removed instances resign and
    /// stop, new ones start, changed ones are reconfigured in place (or
    /// restarted when the interface, VRID, version, family or use_vmac
    /// changed). Returns one line per change. On an invalid set nothing
    /// changes.
    pub async fn reload(&mut self, specs: Vec<InstanceSpec>) -> Result<Vec<String>, DriverError> {
        check(&specs)?;
        let mut changes = Vec::new();
        let old_groups = group_members(
            &self
                .instances
                .values()
                .map(|h| h.spec.clone())
                .collect::<Vec<_>>(),
        );
        let new_groups = group_members(&specs);
        // Stop removed instances and those whose identity changed.
        let mut stop = Vec::new();
        for (name, h) in &self.instances {
            match specs.iter().find(|s| &s.name == name) {
                None => {
                    changes.push(format!("vrrp {name}: removed"));
                    stop.push(name.clone());
                }
                Some(s) if h.spec.identity_differs(s) => {
                    changes.extend(h.spec.describe_changes(s));
                    changes.push(format!("vrrp {name}: restarted"));
                    stop.push(name.clone());
                }
                Some(_) => {}
            }
        }
        let deadline = Instant::now() + RELOAD_STOP;
        for name in &stop {
            if let Some(h) = self.instances.remove(name) {
                stop_instance(name, h, deadline, Stop::Resign).await;
            }
        }
        *self.local_vrids.write().unwrap_or_else(|e| e.into_inner()) = vrid_keys(&specs);
        // Reconfigure the others in place.
        let mut fresh = Vec::new();
        for s in specs {
            match self.instances.get_mut(&s.name) {
                Some(h) => {
                    if h.spec != s {
                        changes.extend(h.spec.describe_changes(&s));
                        let (done, wait) = oneshot::channel();
                        let cmd = Command::Reload {
                            spec: Box::new(s.clone()),
                            done,
                        };
                        if h.cmd.send(cmd).is_ok() {
                            let _ = wait.await;
                        }
                        h.spec = s;
                    }
                }
                None => {
                    if !stop.contains(&s.name) {
                        changes.push(format!("vrrp {}: added", s.name));
                    }
                    fresh.push(s);
                }
            }
        }
        // Groups whose membership changed are rebuilt.
        let mut regroup: Vec<String> = Vec::new();
        for g in old_groups.keys().chain(new_groups.keys()) {
            if old_groups.get(g) != new_groups.get(g) && !regroup.contains(g) {
                regroup.push(g.clone());
            }
        }
        // Instances that left every group fall back to their own fault.
        for (name, h) in &self.instances {
            let was = old_groups.values().any(|m| m.contains(name));
            if was && h.spec.sync_group.is_none() {
                let _ = h.cmd.send(Command::SetGroup(None));
            }
        }
        self.spawn_all(fresh, &regroup, &BTreeSet::new()).await?;
        for c in &changes {
            info!("{c}");
        }
        Ok(changes)
    }

    /// A snapshot of every instance, by name.
    pub fn status(&self) -> Vec<InstanceStatus> {
        self.instances
            .values()
            .map(|h| h.status.borrow().clone())
            .collect()
    }

    /// A watch on one instance's status (for tests and waiting).
    pub fn watch(&self, instance: &str) -> Option<watch::Receiver<InstanceStatus>> {
        self.instances.get(instance).map(|h| h.status.clone())
    }

    pub fn is_standby(&self) -> bool {
        self.standby
    }

    /// Administrative standby of every instance: masters resign (priority 0)
    /// and nothing takes over until `set_standby(false)`. Kept across reloads.
    pub fn set_standby(&mut self, on: bool) {
        self.standby = on;
        for h in self.instances.values() {
            let _ = h.cmd.send(Command::Standby(on));
        }
    }

    /// Become master of `instance` now if eligible (cluster control).
    pub fn takeover(&self, instance: &str) -> Result<(), DriverError> {
        let h = self
            .instances
            .get(instance)
            .ok_or_else(|| DriverError::NoSuchInstance(instance.to_owned()))?;
        h.cmd
            .send(Command::Takeover)
            .map_err(|_| DriverError::InstanceGone(instance.to_owned()))
    }

    /// Stops every instance: masters send a priority-0 advert and keep their
    /// VIPs until a new master is heard (at most one advert interval), then
    /// remove them. Tasks still running at `deadline` are cut.
    pub async fn shutdown(&mut self, deadline: Instant) {
        self.stop_all(deadline, Stop::Resign).await;
    }

    /// Stops every instance without resigning and without touching the
    /// interfaces: the VIPs stay for the process that took over (`halb run
    /// --upgrade`), which continues as master where this one was.
    pub async fn detach(&mut self, deadline: Instant) {
        self.stop_all(deadline, Stop::Detach).await;
    }

    async fn stop_all(&mut self, deadline: Instant, how: Stop) {
        let all = std::mem::take(&mut self.instances);
        let mut waits = Vec::new();
        for (name, h) in all {
            waits.push(tokio::spawn(async move {
                stop_instance(&name, h, deadline, how).await;
            }));
        }
        for w in waits {
            let _ = w.await;
        }
        for (_, g) in std::mem::take(&mut self.groups) {
            g.stop();
        }
    }
}

/// How an instance stops.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// Resign (priority 0 as master) and release the VIPs.
    Resign,
    /// Leave everything to the process that took over.
    Detach,
}

async fn stop_instance(name: &str, h: Handle, deadline: Instant, how: Stop) {
    let (done, wait) = oneshot::channel();
    let mut task = h.task;
    let cmd = match how {
        Stop::Resign => Command::Shutdown { deadline, done },
        Stop::Detach => Command::Detach { done },
    };
    if h.cmd.send(cmd).is_ok() {
        let _ = tokio::time::timeout_at(deadline, wait).await;
    }
    // A little beyond the deadline for the task to return after `done`.
    let grace = deadline + Duration::from_millis(100);
    if tokio::time::timeout_at(grace, &mut task).await.is_err() {
        warn!(instance = %name, "vrrp instance did not stop by the deadline; cut");
        task.abort();
    }
}

#[cfg(test)]
mod tests;
