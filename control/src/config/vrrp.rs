//! `[[vrrp]]` checks, per instance and across instances.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;
use std::time::Duration;

use super::check::{join, Check};
use super::document::Item;
use super::model::{
    GarpConfig, IpFamily, TrackFile, TrackInterface, TrackScript, V3Checksum, VrrpConfig,
    VrrpVersion,
};
use super::raw::{RawGarp, RawVrrp};

const CHECKSUMS: &[(&str, V3Checksum)] = &[
    ("pseudo-header", V3Checksum::PseudoHeader),
    ("rfc", V3Checksum::Rfc),
];

/// Shortest VRRPv3 advert interval (1 centisecond).
const V3_MIN: Duration = Duration::from_millis(10);
/// Longest VRRPv3 advert interval (12-bit centisecond field: 4095 cs).
const V3_MAX: Duration = Duration::from_millis(40_950);
const PREEMPT_DELAY_MAX: Duration = Duration::from_secs(1000);

/// Facts about one instance that the cross-instance checks need; `None`
/// where the value itself was invalid (already reported).
struct Checked {
    config: VrrpConfig,
    name: Option<(String, Range<usize>)>,
    interface: Option<String>,
    vrid: Option<(u8, Range<usize>)>,
    family: Option<IpFamily>,
    vips: Vec<(IpAddr, Range<usize>)>,
}

pub(crate) fn check_vrrp(ck: &mut Check<'_, '_>, items: &[Item<RawVrrp>]) -> Vec<VrrpConfig> {
    let checked: Vec<Checked> = items
        .iter()
        .filter_map(|item| {
            ck.begin_item(&item.removed);
            item.raw.as_ref().map(|raw| check_one(ck, raw, &item.span))
        })
        .collect();

    ck.unique_names(
        "vrrp",
        checked
            .iter()
            .filter_map(|c| c.name.as_ref().map(|(n, s)| (n.as_str(), s.clone()))),
    );

    // (interface, vrid, family) identifies a virtual router on a link.
    let mut routers: HashMap<(String, u8, IpFamily), String> = HashMap::new();
    for c in &checked {
        let (Some(iface), Some((vrid, span)), Some(family)) = (&c.interface, &c.vrid, c.family)
        else {
            continue;
        };
        let owner = c.config.name.clone();
        if let Some(first) = routers.get(&(iface.clone(), *vrid, family)) {
            ck.err(
                span,
                format!(
                    "vrid {vrid} on {iface} ({}) is already used by vrrp instance '{first}'",
                    family.name()
                ),
            );
        } else {
            routers.insert((iface.clone(), *vrid, family), owner);
        }
    }

    // No virtual IP address may be claimed by two instances.
    let mut claimed: HashMap<IpAddr, String> = HashMap::new();
    for c in &checked {
        for (addr, span) in &c.vips {
            // Addresses are unique within one instance (checked above), so
            // an earlier claim is always another instance's.
            match claimed.get(addr) {
                Some(first) => ck.err(
                    span,
                    format!("virtual ip {addr} is already claimed by vrrp instance '{first}'"),
                ),
                None => {
                    claimed.insert(*addr, c.config.name.clone());
                }
            }
        }
    }

    checked.into_iter().map(|c| c.config).collect()
}

fn check_one(ck: &mut Check<'_, '_>, raw: &RawVrrp, span: &Range<usize>) -> Checked {
    let name = ck.name(&raw.name, "name", span);
    let name = name.zip(raw.name.as_ref().map(|n| n.span()));
    let interface = ck
        .required(&raw.interface, "interface", span)
        .and_then(|v| ck.ifname_value(v, "interface"));
    let vrid = ck
        .required(&raw.vrid, "vrid", span)
        .and_then(|v| ck.int_value::<u8>(v, "vrid", 1, 255).map(|n| (n, v.span())));
    let priority = ck.int(&raw.priority, "priority", 1, 255, 100u8);
    let version = match &raw.version {
        None => Some(VrrpVersion::V3),
        Some(v) => match *v.get_ref() {
            2 => Some(VrrpVersion::V2),
            3 => Some(VrrpVersion::V3),
            n => {
                ck.err(&v.span(), format!("version must be 2 or 3, got {n}"));
                None
            }
        },
    };
    let advert_interval = check_advert(ck, raw, version);
    let preempt = ck.boolean(&raw.preempt, true);
    let preempt_delay = ck.duration_range(
        &raw.preempt_delay,
        "preempt_delay",
        Duration::ZERO,
        Duration::ZERO,
        Some(PREEMPT_DELAY_MAX),
    );
    let accept_mode = ck.boolean(&raw.accept_mode, false);

    // Virtual IPs: one family, unique within the instance.
    let mut vips = Vec::new();
    let mut vip_spans = Vec::new();
    let mut family: Option<(IpFamily, String)> = None;
    if let Some(list) = ck.required(&raw.virtual_ips, "virtual_ips", span) {
        if list.get_ref().is_empty() {
            ck.err(&list.span(), "virtual_ips must list at least one address");
        }
    }
    let parsed = ck.each(&raw.virtual_ips, "virtual_ips", |ck, v, path| {
        ck.cidr_value(v, path).map(|net| (net, v.span()))
    });
    for (i, (net, vspan)) in parsed {
        let addr = net.addr();
        let fam = IpFamily::of(&addr);
        let path = format!("virtual_ips[{i}]");
        match &family {
            None => family = Some((fam, path.clone())),
            Some((first, first_path)) if *first != fam => {
                ck.err(
                    &vspan,
                    format!(
                        "{path} is {} but {first_path} is {}; one vrrp instance carries one address family",
                        fam.name(),
                        first.name()
                    ),
                );
                continue;
            }
            Some(_) => {}
        }
        if fam == IpFamily::V6 && version == Some(VrrpVersion::V2) {
            ck.err(
                &vspan,
                format!("{path} is IPv6 but version 2 carries IPv4 only; use version = 3"),
            );
            continue;
        }
        if vip_spans
            .iter()
            .any(|(a, _): &(IpAddr, Range<usize>)| *a == addr)
        {
            ck.err(&vspan, format!("{path} {addr} is listed twice"));
            continue;
        }
        vips.push(net);
        vip_spans.push((addr, vspan));
    }
    let family = family.map(|(f, _)| f);

    let same_family = |ck: &mut Check<'_, '_>, addr: &IpAddr, path: &str, at: &Range<usize>| {
        if let Some(f) = family {
            let fam = IpFamily::of(addr);
            if fam != f {
                ck.err(
                    at,
                    format!(
                        "{path} {addr} is {} but the virtual_ips are {}",
                        fam.name(),
                        f.name()
                    ),
                );
                return false;
            }
        }
        true
    };

    let mut unicast_peers: Vec<IpAddr> = Vec::new();
    let peers = ck.each(&raw.unicast_peers, "unicast_peers", |ck, v, path| {
        ck.ip_value(v, path).map(|a| (a, v.span()))
    });
    for (i, (addr, pspan)) in peers {
        let path = format!("unicast_peers[{i}]");
        if !same_family(ck, &addr, &path, &pspan) {
            continue;
        }
        if vip_spans.iter().any(|(a, _)| *a == addr) {
            ck.err(
                &pspan,
                format!("{path} {addr} is one of this instance's own virtual_ips"),
            );
            continue;
        }
        if unicast_peers.contains(&addr) {
            ck.err(&pspan, format!("{path} {addr} is listed twice"));
            continue;
        }
        unicast_peers.push(addr);
    }
    let unicast_source = raw.unicast_source.as_ref().and_then(|v| {
        let a = ck.ip_value(v, "unicast_source")?;
        same_family(ck, &a, "unicast_source", &v.span()).then_some(a)
    });

    let garp = check_garp(ck, raw.garp.as_ref().map(|g| g.get_ref()));

    let track_interfaces = ck
        .each(&raw.track_interfaces, "track_interfaces", |ck, t, path| {
            let raw = t.get_ref();
            let name = ck
                .required(&raw.name, &join(path, "name"), &t.span())
                .and_then(|v| ck.ifname_value(v, &join(path, "name")));
            let weight = ck.int(&raw.weight, &join(path, "weight"), -254, 254, 0i16);
            Some(TrackInterface {
                name: name.unwrap_or_default(),
                weight: weight.unwrap_or(0),
            })
        })
        .into_iter()
        .map(|(_, t)| t)
        .collect();

    let track_scripts = ck
        .each(&raw.track_scripts, "track_scripts", |ck, t, path| {
            let raw = t.get_ref();
            let cmd_key = join(path, "command");
            let mut command = Vec::new();
            if let Some(list) = ck.required(&raw.command, &cmd_key, &t.span()) {
                if list.get_ref().is_empty() {
                    ck.err(
                        &list.span(),
                        format!("{cmd_key} must name a program to run"),
                    );
                }
            }
            for (_, arg) in ck.each(&raw.command, &cmd_key, |ck, a, p| ck.non_empty(a, p)) {
                command.push(arg);
            }
            let interval = ck.duration_positive(
                &raw.interval,
                &join(path, "interval"),
                Duration::from_secs(1),
            );
            let timeout =
                ck.duration_positive(&raw.timeout, &join(path, "timeout"), Duration::from_secs(2));
            let weight = ck.int(&raw.weight, &join(path, "weight"), -254, 254, 0i16);
            let rise = ck.at_least_u32(&raw.rise, &join(path, "rise"), 1, 1);
            let fall = ck.at_least_u32(&raw.fall, &join(path, "fall"), 1, 1);
            Some(TrackScript {
                command,
                interval: interval.unwrap_or_default(),
                timeout: timeout.unwrap_or_default(),
                weight: weight.unwrap_or(0),
                rise: rise.unwrap_or(1),
                fall: fall.unwrap_or(1),
            })
        })
        .into_iter()
        .map(|(_, t)| t)
        .collect();

    let track_files = ck
        .each(&raw.track_files, "track_files", |ck, t, path| {
            let raw = t.get_ref();
            let key = join(path, "path");
            let p = ck
                .required(&raw.path, &key, &t.span())
                .and_then(|v| ck.path_value(v, &key, false));
            let weight = ck.int(&raw.weight, &join(path, "weight"), -254, 254, 1i16);
            Some(TrackFile {
                path: p.unwrap_or_default(),
                weight: weight.unwrap_or(1),
            })
        })
        .into_iter()
        .map(|(_, t)| t)
        .collect();

    let notify = ck
        .each(&raw.notify, "notify", |ck, v, path| {
            ck.path_value(v, path, true)
        })
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    let notify_timeout = ck.duration_positive(
        &raw.notify_timeout,
        "notify_timeout",
        Duration::from_secs(10),
    );
    let use_vmac = ck.boolean(&raw.use_vmac, false);
    let v3_checksum = ck.choice(
        &raw.v3_checksum,
        "v3_checksum",
        CHECKSUMS,
        V3Checksum::PseudoHeader,
    );
    let sync_group = raw
        .sync_group
        .as_ref()
        .and_then(|v| ck.name_value(v, "sync_group"));
    let auth_pass = raw.auth_pass.as_ref().and_then(|v| {
        // The password itself never goes into an error message.
        let pass = ck.non_empty(v, "auth_pass")?;
        if version == Some(VrrpVersion::V3) {
            ck.err(
                &v.span(),
                "auth_pass is VRRPv2 authentication; version 3 adverts carry none (RFC 5798); set version = 2 or remove it",
            );
            return None;
        }
        if pass.len() > 8 {
            ck.err(
                &v.span(),
                format!(
                    "auth_pass is {} bytes; VRRPv2 carries at most 8 (keepalived silently uses the first 8)",
                    pass.len()
                ),
            );
            return None;
        }
        Some(pass)
    });

    let config = VrrpConfig {
        name: name.as_ref().map(|(n, _)| n.clone()).unwrap_or_default(),
        interface: interface.clone().unwrap_or_default(),
        vrid: vrid.as_ref().map(|(n, _)| *n).unwrap_or(1),
        priority: priority.unwrap_or(100),
        version: version.unwrap_or(VrrpVersion::V3),
        advert_interval: advert_interval.unwrap_or(Duration::from_secs(1)),
        preempt,
        preempt_delay: preempt_delay.unwrap_or_default(),
        accept_mode,
        virtual_ips: vips,
        unicast_peers,
        unicast_source,
        garp,
        track_interfaces,
        track_scripts,
        track_files,
        notify,
        notify_timeout: notify_timeout.unwrap_or_default(),
        use_vmac,
        v3_checksum: v3_checksum.unwrap_or(V3Checksum::PseudoHeader),
        auth_pass,
        sync_group,
    };
    Checked {
        config,
        name,
        interface,
        vrid,
        family,
        vips: vip_spans,
    }
}

/// `advert_interval`: v3 10ms..=40950ms in whole centiseconds; v2 whole
/// seconds 1..=255.
fn check_advert(
    ck: &mut Check<'_, '_>,
    raw: &RawVrrp,
    version: Option<VrrpVersion>,
) -> Option<Duration> {
    let Some(v) = &raw.advert_interval else {
        return Some(Duration::from_secs(1));
    };
    let d = ck.duration_value(v, "advert_interval")?;
    let text = &v.get_ref().0;
    match version? {
        VrrpVersion::V3 => {
            if d < V3_MIN || d > V3_MAX {
                ck.err(
                    &v.span(),
                    format!("advert_interval must be 10ms..=40.95s for version 3, got {text:?}"),
                );
                return None;
            }
            if d.as_nanos() % V3_MIN.as_nanos() != 0 {
                ck.err(
                    &v.span(),
                    format!(
                        "advert_interval must be a multiple of 10ms for version 3, got {text:?}"
                    ),
                );
                return None;
            }
        }
        VrrpVersion::V2 => {
            if d.subsec_nanos() != 0 || d.as_secs() < 1 || d.as_secs() > 255 {
                ck.err(
                    &v.span(),
                    format!(
                        "advert_interval must be whole seconds 1s..=255s for version 2, got {text:?}"
                    ),
                );
                return None;
            }
        }
    }
    Some(d)
}

fn check_garp(ck: &mut Check<'_, '_>, raw: Option<&RawGarp>) -> GarpConfig {
    let defaults = GarpConfig {
        repeat: 5,
        interval: Duration::from_millis(10),
        refresh: Duration::ZERO,
    };
    let Some(raw) = raw else {
        return defaults;
    };
    GarpConfig {
        repeat: ck
            .int(&raw.repeat, "garp.repeat", 0, 100, defaults.repeat)
            .unwrap_or(defaults.repeat),
        interval: ck
            .duration(&raw.interval, "garp.interval", defaults.interval)
            .unwrap_or(defaults.interval),
        refresh: ck
            .duration(&raw.refresh, "garp.refresh", defaults.refresh)
            .unwrap_or(defaults.refresh),
    }
}
