//! Link up/down of named interfaces, from an RTNLGRP_LINK subscription.
//!
//! The subscription is opened before the initial dump, so no change between
//! the two is lost. An optional periodic re-dump repairs state after a
//! netlink buffer overrun (events dropped by the kernel).

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::MulticastGroup;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::error::IoError;
use super::netlink::LinkDetails;

/// The state of one watched interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkState {
    /// The interface exists.
    pub present: bool,
    /// IFF_UP.
    pub admin_up: bool,
    /// IFF_RUNNING (carrier).
    pub running: bool,
}

impl LinkState {
    /// The state of an interface that does not exist.
    pub const ABSENT: LinkState = LinkState {
        present: false,
        admin_up: false,
        running: false,
    };

    /// Usable for VRRP: present, administratively up and running.
    pub fn is_up(&self) -> bool {
        self.present && self.admin_up && self.running
    }

    fn of(details: &LinkDetails) -> Self {
        LinkState {
            present: true,
            admin_up: details.admin_up,
            running: details.running,
        }
    }
}

/// A change of a watched interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkEvent {
    /// Interface name.
    pub name: String,
    /// The new state.
    pub state: LinkState,
}

/// A running watch; dropping it stops the watch task.
#[derive(Debug)]
pub struct LinkWatch {
    /// The state of every watched name at start.
    pub initial: BTreeMap<String, LinkState>,
    /// Changes after `initial`, one per actual state change.
    pub events: mpsc::Receiver<LinkEvent>,
    task: JoinHandle<()>,
}

impl Drop for LinkWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching `names` in the calling thread's network namespace, on the
/// current tokio runtime. `resync` re-dumps all links that often, if set.
pub async fn watch_links(
    names: Vec<String>,
    resync: Option<Duration>,
) -> Result<LinkWatch, IoError> {
    let (connection, handle, mut messages) =
        rtnetlink::new_multicast_connection(&[MulticastGroup::Link])
            .map_err(IoError::NetlinkOpen)?;
    let conn_task = tokio::spawn(connection);

    let mut known: BTreeMap<String, LinkState> = names
        .iter()
        .map(|n| (n.clone(), LinkState::ABSENT))
        .collect();
    let first = dump(&handle).await?;
    apply_dump(&mut known, &first);
    let initial = known.clone();

    let (tx, events) = mpsc::channel(64);
    let task = tokio::spawn(async move {
        let _conn = AbortOnDrop(conn_task);
        let mut tick = resync.map(|period| {
            let mut i = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        loop {
            let changes = tokio::select! {
                msg = messages.next() => {
                    let Some((msg, _)) = msg else {
                        warn!("link watch: netlink subscription closed");
                        return;
                    };
                    match msg.payload {
                        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => {
                            update(&mut known, &m, false)
                        }
                        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(m)) => {
                            update(&mut known, &m, true)
                        }
                        NetlinkPayload::Overrun(_) => {
                            warn!("link watch: netlink overrun, events may be lost");
                            Vec::new()
                        }
                        _ => Vec::new(),
                    }
                }
                _ = async { match tick.as_mut() { Some(t) => { t.tick().await; } None => std::future::pending().await } } => {
                    match dump(&handle).await {
                        Ok(d) => apply_dump(&mut known, &d),
                        Err(e) => { warn!(error = %e, "link watch: resync failed"); Vec::new() }
                    }
                }
            };
            for ev in changes {
                debug!(name = %ev.name, up = ev.state.is_up(), "link state changed");
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(LinkWatch {
        initial,
        events,
        task,
    })
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn dump(handle: &rtnetlink::Handle) -> Result<Vec<LinkDetails>, IoError> {
    let msgs: Vec<LinkMessage> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(IoError::netlink("dump links"))?;
    Ok(msgs.iter().filter_map(LinkDetails::from_message).collect())
}

/// Sets every known name from a full dump; names missing from it are absent.
fn apply_dump(known: &mut BTreeMap<String, LinkState>, dump: &[LinkDetails]) -> Vec<LinkEvent> {
    let mut changes = Vec::new();
    for (name, state) in known.iter_mut() {
        let new = dump
            .iter()
            .find(|d| &d.name == name)
            .map_or(LinkState::ABSENT, LinkState::of);
        if new != *state {
            *state = new;
            changes.push(LinkEvent {
                name: name.clone(),
                state: new,
            });
        }
    }
    changes
}

fn update(
    known: &mut BTreeMap<String, LinkState>,
    msg: &LinkMessage,
    deleted: bool,
) -> Vec<LinkEvent> {
    let Some(details) = LinkDetails::from_message(msg) else {
        return Vec::new();
    };
    let Some(state) = known.get_mut(&details.name) else {
        return Vec::new();
    };
    let new = if deleted {
        LinkState::ABSENT
    } else {
        LinkState::of(&details)
    };
    if new == *state {
        return Vec::new();
    }
    *state = new;
    vec![LinkEvent {
        name: details.name,
        state: new,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details(name: &str, admin_up: bool, running: bool) -> LinkDetails {
        LinkDetails {
            ifindex: 3,
            name: name.to_owned(),
            mac: None,
            admin_up,
            running,
            parent: None,
            is_macvlan: false,
        }
    }

    #[test]
    fn dump_reports_only_changes_of_watched_names() {
        let mut known: BTreeMap<String, LinkState> = [
            ("a".to_owned(), LinkState::ABSENT),
            ("b".to_owned(), LinkState::ABSENT),
        ]
        .into();
        let ev = apply_dump(
            &mut known,
            &[details("a", true, true), details("z", true, true)],
        );
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].name, "a");
        assert!(ev[0].state.is_up());
        assert!(apply_dump(&mut known, &[details("a", true, true)]).is_empty());
        let ev = apply_dump(&mut known, &[details("a", true, false)]);
        assert_eq!(ev.len(), 1);
        assert!(!ev[0].state.is_up());
        let ev = apply_dump(&mut known, &[]);
        assert_eq!(ev[0].state, LinkState::ABSENT);
    }
}
