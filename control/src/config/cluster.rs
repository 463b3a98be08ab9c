//! `[cluster]` and `[[cluster.fence_device]]` checks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::ops::Range;
use std::time::Duration;

use super::check::{join, Check};
use super::document::{ClusterSection, Item};
use super::model::{
    ClusterConfig, ClusterNode, Failback, FenceAction, FenceDevice, NoQuorumPolicy, QuorumConfig,
};
use super::node::CheckedNode;
use super::raw::RawFenceDevice;

const POLICIES: &[(&str, NoQuorumPolicy)] = &[
    ("stop", NoQuorumPolicy::Stop),
    ("freeze", NoQuorumPolicy::Freeze),
    ("ignore", NoQuorumPolicy::Ignore),
];
const FAILBACKS: &[(&str, Failback)] = &[("auto", Failback::Auto), ("manual", Failback::Manual)];
const FENCE_ACTIONS: &[(&str, FenceAction)] =
    &[("off", FenceAction::Off), ("reboot", FenceAction::Reboot)];

pub(crate) fn check_cluster(
    ck: &mut Check<'_, '_>,
    section: &ClusterSection,
    node: Option<&CheckedNode>,
) -> Option<ClusterConfig> {
    // Names of every cluster node written in the file, valid or not, so that
    // fence devices naming them get no follow-up error.
    let mut all_node_names: HashSet<String> = HashSet::new();
    // False when some node entry could not be read: then "not listed"
    // checks would be guesses and are skipped.
    let mut nodes_complete = true;

    let cluster = section.item.raw.as_ref();
    if cluster.is_none() {
        nodes_complete = false;
    }
    let mut config = cluster.map(|raw| {
        ck.begin_item(&section.item.removed);
        let span = &section.item.span;
        let mut nodes: Vec<ClusterNode> = Vec::new();
        if let Some(list) = ck.required(&raw.nodes, "nodes", span) {
            if list.get_ref().is_empty() {
                ck.err(&list.span(), "nodes must list at least one node");
            }
            for n in list.get_ref() {
                match &n.get_ref().name {
                    Some(name) => {
                        all_node_names.insert(name.get_ref().clone());
                    }
                    None => nodes_complete = false,
                }
            }
        } else {
            nodes_complete = false;
        }
        let mut name_spans: Vec<(String, Range<usize>)> = Vec::new();
        let mut addr_owner: HashMap<IpAddr, String> = HashMap::new();
        let mut links: Option<(usize, String)> = None;
        for (_, n) in ck.each(&raw.nodes, "nodes", |ck, n, path| {
            let raw = n.get_ref();
            let name = ck.name(&raw.name, &join(path, "name"), &n.span());
            if let (Some(name), Some(v)) = (&name, &raw.name) {
                name_spans.push((name.clone(), v.span()));
            }
            let akey = join(path, "addresses");
            if let Some(list) = ck.required(&raw.addresses, &akey, &n.span()) {
                if list.get_ref().is_empty() {
                    ck.err(&list.span(), format!("{akey} must list at least one address"));
                } else {
                    let count = list.get_ref().len();
                    match &links {
                        None => links = Some((count, path.to_owned())),
                        Some((first, first_path)) if *first != count => ck.err(
                            &list.span(),
                            format!(
                                "{akey} has {count} address(es) but {first_path}.addresses has {first}; every node needs one address per link"
                            ),
                        ),
                        Some(_) => {}
                    }
                }
            }
            let mut addresses = Vec::new();
            for (_, (a, aspan, apath)) in ck.each(&raw.addresses, &akey, |ck, v, p| {
                ck.ip_value(v, p).map(|a| (a, v.span(), p.to_owned()))
            }) {
                if let Some(owner) = addr_owner.get(&a) {
                    ck.err(
                        &aspan,
                        format!("{apath} {a} is already used by cluster node '{owner}'"),
                    );
                } else {
                    addr_owner.insert(a, name.clone().unwrap_or_default());
                }
                addresses.push(a);
            }
            let votes = ck.int(&raw.votes, &join(path, "votes"), 0, 255, 1u8);
            Some(ClusterNode {
                name: name.unwrap_or_default(),
                addresses,
                votes: votes.unwrap_or(1),
            })
        }) {
            nodes.push(n);
        }
        ck.unique_names(
            "cluster node",
            name_spans.iter().map(|(n, s)| (n.as_str(), s.clone())),
        );

        let port = ck.int(&raw.port, "port", 1, 65_535, 5405u16);
        let auth_key_file = ck
            .required(&raw.auth_key_file, "auth_key_file", span)
            .and_then(|v| ck.path_value(v, "auth_key_file", false));
        let heartbeat_interval = ck.duration_range(
            &raw.heartbeat_interval,
            "heartbeat_interval",
            Duration::from_millis(100),
            Duration::from_millis(1),
            None,
        );
        let miss_count = ck.int(&raw.miss_count, "miss_count", 2, 100, 3u8);
        let encrypt = ck.boolean(&raw.encrypt, false);

        // Quorum.
        let vote_sum: u32 = nodes.iter().map(|n| u32::from(n.votes)).sum();
        let q = raw.quorum.as_ref().map(|q| q.get_ref());
        let expected_votes = match q.and_then(|q| q.expected_votes.as_ref()) {
            Some(v) => ck.int_value::<u32>(v, "quorum.expected_votes", 1, i64::from(u32::MAX)),
            None => {
                if vote_sum == 0 && !nodes.is_empty() {
                    let at = raw.nodes.as_ref().map(|n| n.span()).unwrap_or(span.clone());
                    ck.err(
                        &at,
                        "the votes of all nodes add up to 0; give nodes votes or set quorum.expected_votes",
                    );
                }
                Some(vote_sum.max(1))
            }
        };
        let two_node = q.map(|q| ck.boolean(&q.two_node, false)).unwrap_or(false);
        if two_node {
            let count = raw.nodes.as_ref().map(|n| n.get_ref().len()).unwrap_or(0);
            if count != 2 {
                if let Some(v) = q.and_then(|q| q.two_node.as_ref()) {
                    ck.err(
                        &v.span(),
                        format!("quorum.two_node needs exactly 2 nodes, nodes has {count}"),
                    );
                }
            }
        }
        let wait_for_all = q
            .map(|q| ck.boolean(&q.wait_for_all, two_node))
            .unwrap_or(two_node);
        let no_quorum_policy =
            ck.choice(&raw.no_quorum_policy, "no_quorum_policy", POLICIES, NoQuorumPolicy::Stop);
        let failback = ck.choice(&raw.failback, "failback", FAILBACKS, Failback::Auto);
        let witness = raw
            .witness
            .as_ref()
            .and_then(|v| ck.socket_addr_value(v, "witness"));

        // This node must be one of the cluster's nodes.
        if let (Some(node), Some(list)) = (node, &raw.nodes) {
            if let Some(me) = &node.name {
                if nodes_complete && !all_node_names.contains(me) {
                    ck.err(
                        &list.span(),
                        format!("node.name '{me}' is not listed in cluster nodes"),
                    );
                }
            }
        }

        ClusterConfig {
            nodes,
            port: port.unwrap_or(5405),
            auth_key_file: auth_key_file.unwrap_or_default(),
            heartbeat_interval: heartbeat_interval.unwrap_or(Duration::from_millis(100)),
            miss_count: miss_count.unwrap_or(3),
            encrypt,
            quorum: QuorumConfig {
                expected_votes: expected_votes.unwrap_or(1),
                two_node,
                wait_for_all,
            },
            no_quorum_policy: no_quorum_policy.unwrap_or(NoQuorumPolicy::Stop),
            failback: failback.unwrap_or(Failback::Auto),
            witness,
            fence_devices: Vec::new(),
        }
    });

    let devices = check_fence_devices(
        ck,
        &section.fence_devices,
        nodes_complete.then_some(&all_node_names),
    );
    if let Some(c) = config.as_mut() {
        c.fence_devices = devices;
    }
    config
}

/// `known_nodes` is `None` when the node list could not be read completely.
fn check_fence_devices(
    ck: &mut Check<'_, '_>,
    items: &[Item<RawFenceDevice>],
    known_nodes: Option<&HashSet<String>>,
) -> Vec<FenceDevice> {
    let mut names = Vec::new();
    let mut out = Vec::new();
    for item in items {
        let Some(raw) = &item.raw else {
            continue;
        };
        ck.begin_item(&item.removed);
        let span = &item.span;
        let name = ck.name(&raw.name, "name", span);
        if let (Some(n), Some(v)) = (&name, &raw.name) {
            names.push((n.clone(), v.span()));
        }
        let agent = ck
            .required(&raw.agent, "agent", span)
            .and_then(|v| ck.path_value(v, "agent", true));
        if let Some(list) = ck.required(&raw.nodes, "nodes", span) {
            if list.get_ref().is_empty() {
                ck.err(&list.span(), "nodes must list at least one cluster node");
            }
        }
        let label = name.clone().unwrap_or_default();
        let nodes: Vec<String> = ck
            .each(&raw.nodes, "nodes", |ck, v, _| {
                let n = v.get_ref();
                if let Some(known) = known_nodes {
                    if !known.contains(n) {
                        ck.err(
                            &v.span(),
                            format!(
                                "fence_device '{label}' names node '{n}' which is not in cluster nodes"
                            ),
                        );
                        return None;
                    }
                }
                Some(n.clone())
            })
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        let action = ck.choice(&raw.action, "action", FENCE_ACTIONS, FenceAction::Off);
        let timeout = ck.duration_positive(&raw.timeout, "timeout", Duration::from_secs(30));
        let retries = ck.int(&raw.retries, "retries", 0, 100, 2u8);
        let delay_max = ck.duration(&raw.delay_max, "delay_max", Duration::ZERO);
        let monitor_interval = ck.duration_positive(
            &raw.monitor_interval,
            "monitor_interval",
            Duration::from_secs(60),
        );
        let mut options = BTreeMap::new();
        if let Some(opts) = &raw.options {
            for (k, v) in opts.get_ref() {
                let value = &v.get_ref().0;
                if k == "action" {
                    ck.err(
                        &v.span(),
                        "options.action is set by halb for each operation; use the action key",
                    );
                } else if k.is_empty() || k.contains(['=', '\n', '\r']) {
                    ck.err(
                        &v.span(),
                        format!("options key {k:?} must be non-empty without '=' or line breaks"),
                    );
                } else if value.contains(['\n', '\r']) {
                    ck.err(
                        &v.span(),
                        format!("options.{k} must not contain line breaks"),
                    );
                } else {
                    options.insert(k.clone(), value.clone());
                }
            }
        }
        out.push(FenceDevice {
            name: name.unwrap_or_default(),
            agent: agent.unwrap_or_default(),
            nodes,
            action: action.unwrap_or(FenceAction::Off),
            timeout: timeout.unwrap_or_default(),
            retries: retries.unwrap_or(2),
            delay_max: delay_max.unwrap_or_default(),
            monitor_interval: monitor_interval.unwrap_or_default(),
            options,
        });
    }
    ck.unique_names(
        "fence_device",
        names.iter().map(|(n, s)| (n.as_str(), s.clone())),
    );
    out
}
