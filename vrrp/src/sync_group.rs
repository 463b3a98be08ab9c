//! Sync groups, pure: instances that change state together (keepalived's
//! `vrrp_sync_group`). The driver reports each member's transitions and own
//! fault flag; the group answers with [`Input`]s for the members.
//!
//! Rules:
//! - Fault: the group is faulty while any member's own fault is set; every
//!   member then gets `Input::Fault(true)`, and `Input::Fault(false)` when the
//!   last fault clears. For grouped instances the driver sends tracking faults
//!   here ([`SyncGroup::set_fault`]) instead of straight to the router.
//! - Master: when a member becomes master on its own, the other backups get
//!   `Input::Sync(SyncCommand::Master)`. All members must be able to be
//!   master: if another member is in Fault or Initialize, the new master is
//!   sent back with `Input::Sync(SyncCommand::Backup)`.
//! - Backup: when a member leaves master for backup on its own (a higher
//!   priority advert, a lost tie, standby), the other masters get
//!   `Input::Sync(SyncCommand::Backup)`.
//!
//! Transitions with reason [`TransitionReason::SyncGroup`] (caused by the
//! group itself) and fault transitions (caused by the aggregation above) do
//! not cascade, so one event never loops; nor do those of a binary upgrade
//! ([`TransitionReason::Upgrade`]: each member continues as it was).
//!
//! Limitation (as in keepalived): members should use the same priorities on
//! each node; with crossed priorities two nodes can pull a group back and
//! forth every Master_Down_Interval.

use crate::router::SyncCommand;
use crate::{Error, Input, StateKind, TransitionReason};

/// An input for one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOrder {
    pub member: String,
    pub input: Input,
}

#[derive(Debug, Clone)]
struct Member {
    name: String,
    state: StateKind,
    own_fault: bool,
}

/// The coordinator of one sync group.
#[derive(Debug, Clone)]
pub struct SyncGroup {
    name: String,
    members: Vec<Member>,
}

impl SyncGroup {
    pub fn new(
        name: impl Into<String>,
        members: impl IntoIterator<Item = String>,
    ) -> Result<SyncGroup, Error> {
        let mut list: Vec<Member> = Vec::new();
        for m in members {
            if list.iter().any(|x| x.name == m) {
                return Err(Error::DuplicateMember(m));
            }
            list.push(Member {
                name: m,
                state: StateKind::Initialize,
                own_fault: false,
            });
        }
        Ok(SyncGroup {
            name: name.into(),
            members: list,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// True while any member reports its own fault.
    pub fn group_fault(&self) -> bool {
        self.members.iter().any(|m| m.own_fault)
    }

    /// The last reported state of a member.
    pub fn member_state(&self, member: &str) -> Option<StateKind> {
        self.members
            .iter()
            .find(|m| m.name == member)
            .map(|m| m.state)
    }

    fn index(&self, member: &str) -> Result<usize, Error> {
        self.members
            .iter()
            .position(|m| m.name == member)
            .ok_or_else(|| Error::UnknownMember(member.to_owned()))
    }

    /// A member's own fault flag (from its tracker) changed.
    pub fn set_fault(&mut self, member: &str, fault: bool) -> Result<Vec<SyncOrder>, Error> {
        let i = self.index(member)?;
        let before = self.group_fault();
        self.members[i].own_fault = fault;
        let after = self.group_fault();
        if before == after {
            return Ok(Vec::new());
        }
        tracing::info!(group = %self.name, %member, fault = after, "sync group fault changed");
        Ok(self
            .members
            .iter()
            .map(|m| SyncOrder {
                member: m.name.clone(),
                input: Input::Fault(after),
            })
            .collect())
    }

    /// A member's router reported `Action::StateChanged`.
    pub fn on_transition(
        &mut self,
        member: &str,
        from: StateKind,
        to: StateKind,
        reason: TransitionReason,
    ) -> Result<Vec<SyncOrder>, Error> {
        let i = self.index(member)?;
        self.members[i].state = to;
        // Upgrade: every member the replaced process was master of
        // continues as master on its own; one that is still starting is
        // not a reason to send the first one back.
        if matches!(
            reason,
            TransitionReason::SyncGroup
                | TransitionReason::Fault
                | TransitionReason::FaultCleared
                | TransitionReason::Upgrade
        ) {
            return Ok(Vec::new());
        }
        let mut orders = Vec::new();
        let others = self.members.iter().enumerate().filter(|(j, _)| *j != i);
        if to == StateKind::Master {
            let blocked = others
                .clone()
                .any(|(_, m)| matches!(m.state, StateKind::Fault | StateKind::Initialize));
            if blocked {
                orders.push(SyncOrder {
                    member: member.to_owned(),
                    input: Input::Sync(SyncCommand::Backup),
                });
            } else {
                orders.extend(others.filter(|(_, m)| m.state == StateKind::Backup).map(
                    |(_, m)| SyncOrder {
                        member: m.name.clone(),
                        input: Input::Sync(SyncCommand::Master),
                    },
                ));
            }
        } else if from == StateKind::Master && to == StateKind::Backup {
            orders.extend(
                others
                    .filter(|(_, m)| m.state == StateKind::Master)
                    .map(|(_, m)| SyncOrder {
                        member: m.name.clone(),
                        input: Input::Sync(SyncCommand::Backup),
                    }),
            );
        }
        Ok(orders)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::{Action, Router, RouterConfig};
    use crate::{Priority, VrId};
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Instant;

    fn group() -> SyncGroup {
        SyncGroup::new("g", ["a".to_owned(), "b".to_owned()]).expect("valid")
    }

    fn order(member: &str, input: Input) -> SyncOrder {
        SyncOrder {
            member: member.into(),
            input,
        }
    }

    use StateKind::{Backup, Fault, Initialize, Master};

    #[test]
    fn master_pulls_backups_up_without_echo() {
        let mut g = group();
        g.on_transition("a", Initialize, Backup, TransitionReason::Startup)
            .expect("ok");
        g.on_transition("b", Initialize, Backup, TransitionReason::Startup)
            .expect("ok");
        assert_eq!(
            g.on_transition("a", Backup, Master, TransitionReason::MasterDownTimer),
            Ok(vec![order("b", Input::Sync(SyncCommand::Master))])
        );
        assert_eq!(
            g.on_transition("b", Backup, Master, TransitionReason::SyncGroup),
            Ok(vec![]),
            "a transition caused by the group does not cascade"
        );
    }

    #[test]
    fn leaving_master_pulls_the_others_down() {
        let mut g = group();
        for m in ["a", "b"] {
            g.on_transition(m, Backup, Master, TransitionReason::SyncGroup)
                .expect("ok");
        }
        assert_eq!(
            g.on_transition("b", Master, Backup, TransitionReason::HigherPriorityAdvert),
            Ok(vec![order("a", Input::Sync(SyncCommand::Backup))])
        );
    }

    #[test]
    fn an_upgraded_master_is_not_sent_back_while_the_others_start() {
        let mut g = group();
        assert_eq!(
            g.on_transition("a", Initialize, Master, TransitionReason::Upgrade),
            Ok(vec![]),
            "b is still initializing: a stays master"
        );
        assert_eq!(
            g.on_transition("b", Initialize, Master, TransitionReason::Upgrade),
            Ok(vec![])
        );
        // Afterwards the group works as before.
        assert_eq!(
            g.on_transition("b", Master, Backup, TransitionReason::HigherPriorityAdvert),
            Ok(vec![order("a", Input::Sync(SyncCommand::Backup))])
        );
    }

    #[test]
    fn cannot_be_master_while_a_member_is_faulty() {
        let mut g = group();
        g.on_transition("b", Backup, Fault, TransitionReason::Fault)
            .expect("ok");
        assert_eq!(
            g.on_transition("a", Backup, Master, TransitionReason::Takeover),
            Ok(vec![order("a", Input::Sync(SyncCommand::Backup))])
        );
    }

    #[test]
    fn fault_is_aggregated() {
        let mut g = group();
        assert_eq!(
            g.set_fault("a", true),
            Ok(vec![
                order("a", Input::Fault(true)),
                order("b", Input::Fault(true))
            ])
        );
        assert_eq!(g.set_fault("b", true), Ok(vec![]), "already faulty");
        assert_eq!(g.set_fault("a", false), Ok(vec![]), "b still faulty");
        assert_eq!(
            g.set_fault("b", false),
            Ok(vec![
                order("a", Input::Fault(false)),
                order("b", Input::Fault(false))
            ])
        );
        assert_eq!(
            g.set_fault("zz", true),
            Err(Error::UnknownMember("zz".into()))
        );
        assert_eq!(
            SyncGroup::new("g", ["a".to_owned(), "a".to_owned()]).err(),
            Some(Error::DuplicateMember("a".into()))
        );
    }

    #[test]
    fn drives_real_routers() {
        let t0 = Instant::now();
        let mk = |vrid, last| {
            let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, last));
            let vip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, last));
            let mut c = RouterConfig::new(VrId(vrid), ip, vec![vip]);
            c.priority = Priority(100);
            Router::new(c).expect("valid")
        };
        let mut routers = [("a", mk(1, 1)), ("b", mk(2, 1))];
        let mut g = group();
        let mut queue: Vec<(usize, Input)> = vec![(0, Input::Startup), (1, Input::Startup)];
        // Bounded loop: route actions to the group and its orders back.
        for _ in 0..100 {
            let Some((i, input)) = queue.pop() else { break };
            routers[i].1.handle(t0, input);
            while let Some(action) = routers[i].1.poll_action() {
                if let Action::StateChanged { from, to, reason } = action {
                    for o in g
                        .on_transition(routers[i].0, from, to, reason)
                        .expect("member")
                    {
                        let j = routers
                            .iter()
                            .position(|r| r.0 == o.member)
                            .expect("member");
                        queue.push((j, o.input));
                    }
                }
            }
            if queue.is_empty() && !routers[0].1.is_master() {
                queue.push((0, Input::ForceTakeover));
            }
        }
        assert!(routers[0].1.is_master());
        assert!(routers[1].1.is_master(), "b followed a");
        assert_eq!(
            routers[1].1.status().last_transition.map(|t| t.reason),
            Some(TransitionReason::SyncGroup)
        );
        // a faults: the whole group faults.
        for o in g.set_fault("a", true).expect("member") {
            let j = routers
                .iter()
                .position(|r| r.0 == o.member)
                .expect("member");
            routers[j].1.handle(t0, o.input);
        }
        assert_eq!(routers[0].1.state_kind(), Fault);
        assert_eq!(routers[1].1.state_kind(), Fault);
    }
}
