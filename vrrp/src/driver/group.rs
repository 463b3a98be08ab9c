//! Sync groups on tokio: one coordinator task per group owns the pure
//! [`SyncGroup`] and turns member events into orders for the members.
//!
//! Channels are unbounded in both directions so that a member reporting to
//! its group and the group ordering that member can never block each other.

use std::collections::BTreeMap;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::sync_group::SyncGroup;
use crate::{StateKind, TransitionReason};

use super::instance::Command;

/// What a member tells its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GroupEvent {
    Transition {
        member: String,
        from: StateKind,
        to: StateKind,
        reason: TransitionReason,
    },
    OwnFault {
        member: String,
        fault: bool,
    },
}

/// A member's handle on its group.
#[derive(Debug, Clone)]
pub(crate) struct GroupLink {
    pub(crate) group: String,
    tx: mpsc::UnboundedSender<GroupEvent>,
}

impl GroupLink {
    pub(crate) fn send(&self, event: GroupEvent) {
        if self.tx.send(event).is_err() {
            debug!(group = %self.group, "sync group coordinator gone; event dropped");
        }
    }
}

/// A running coordinator.
#[derive(Debug)]
pub(crate) struct GroupHandle {
    link: GroupLink,
    task: JoinHandle<()>,
}

impl GroupHandle {
    /// Starts the coordinator of `name`. `seed` gives each member's current
    /// state and own fault (empty at first start: all Initialize).
    pub(crate) fn spawn(
        name: &str,
        members: BTreeMap<String, mpsc::UnboundedSender<Command>>,
        seed: &[(String, StateKind, bool)],
    ) -> Result<GroupHandle, crate::Error> {
        let names: Vec<String> = members.keys().cloned().collect();
        let mut group = SyncGroup::new(name, names)?;
        let mut orders = Vec::new();
        for (member, state, fault) in seed {
            orders.extend(group.on_transition(
                member,
                StateKind::Initialize,
                *state,
                TransitionReason::SyncGroup,
            )?);
            orders.extend(group.set_fault(member, *fault)?);
        }
        deliver(&members, orders);
        let (tx, mut rx) = mpsc::unbounded_channel::<GroupEvent>();
        let task = tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                let result = match &ev {
                    GroupEvent::Transition {
                        member,
                        from,
                        to,
                        reason,
                    } => group.on_transition(member, *from, *to, *reason),
                    GroupEvent::OwnFault { member, fault } => group.set_fault(member, *fault),
                };
                match result {
                    Ok(orders) => deliver(&members, orders),
                    Err(e) => warn!(group = %group.name(), error = %e, "sync group event ignored"),
                }
            }
        });
        Ok(GroupHandle {
            link: GroupLink {
                group: name.to_owned(),
                tx,
            },
            task,
        })
    }

    pub(crate) fn link(&self) -> GroupLink {
        self.link.clone()
    }

    pub(crate) fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for GroupHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn deliver(
    members: &BTreeMap<String, mpsc::UnboundedSender<Command>>,
    orders: Vec<crate::sync_group::SyncOrder>,
) {
    for o in orders {
        debug!(member = %o.member, input = ?o.input, "sync group order");
        if let Some(tx) = members.get(&o.member) {
            let _ = tx.send(Command::Input(o.input));
        }
    }
}
