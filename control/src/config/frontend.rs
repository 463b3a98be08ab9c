//! `[[frontend]]` checks, per frontend and across frontends.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use super::check::{join, Check};
use super::document::Item;
use super::model::{
    ForwardedHeaders, Forwarding, FrontendConfig, FrontendMode, FrontendTimeouts, Transport,
    XdpMode,
};
use super::raw::{RawFrontend, RawFrontendTimeouts};

const MODES: &[(&str, FrontendMode)] = &[
    ("tcp", FrontendMode::Tcp),
    ("udp", FrontendMode::Udp),
    ("http", FrontendMode::Http),
];
const FORWARDINGS: &[(&str, Forwarding)] = &[
    ("proxy", Forwarding::Proxy),
    ("ipip", Forwarding::Ipip),
    ("l2-dsr", Forwarding::L2Dsr),
];
const XDP_MODES: &[(&str, XdpMode)] = &[
    ("native", XdpMode::Native),
    ("generic", XdpMode::Generic),
    ("off", XdpMode::Off),
];
const FORWARDED_HEADERS: &[(&str, ForwardedHeaders)] = &[
    ("x-forwarded", ForwardedHeaders::XForwarded),
    ("forwarded", ForwardedHeaders::Forwarded),
    ("both", ForwardedHeaders::Both),
    ("none", ForwardedHeaders::None),
];

struct Checked {
    config: FrontendConfig,
    name: Option<(String, Range<usize>)>,
    bind: Option<(SocketAddr, Transport, Range<usize>)>,
    backend: Option<(String, Range<usize>)>,
}

/// Checks every frontend; `backend_names` are the names of all
/// `[[backend]]` items (also those with errors of their own).
pub(crate) fn check_frontends(
    ck: &mut Check<'_, '_>,
    items: &[Item<RawFrontend>],
    backend_names: &HashSet<String>,
) -> Vec<FrontendConfig> {
    let checked: Vec<Checked> = items
        .iter()
        .filter_map(|item| {
            ck.begin_item(&item.removed);
            item.raw.as_ref().map(|raw| check_one(ck, raw, &item.span))
        })
        .collect();

    ck.unique_names(
        "frontend",
        checked
            .iter()
            .filter_map(|c| c.name.as_ref().map(|(n, s)| (n.as_str(), s.clone()))),
    );

    let mut binds: HashMap<(SocketAddr, Transport), String> = HashMap::new();
    for c in &checked {
        if let Some((addr, transport, span)) = &c.bind {
            if let Some(first) = binds.get(&(*addr, *transport)) {
                let proto = match transport {
                    Transport::Tcp => "tcp",
                    Transport::Udp => "udp",
                };
                ck.err(
                    span,
                    format!("bind {addr} ({proto}) is already used by frontend '{first}'"),
                );
            } else {
                binds.insert((*addr, *transport), c.config.name.clone());
            }
        }
        if let Some((backend, span)) = &c.backend {
            if !backend_names.contains(backend) {
                ck.err(
                    span,
                    format!(
                        "frontend '{}' names backend '{backend}' which does not exist",
                        c.config.name
                    ),
                );
            }
        }
    }

    checked.into_iter().map(|c| c.config).collect()
}

fn check_one(ck: &mut Check<'_, '_>, raw: &RawFrontend, span: &Range<usize>) -> Checked {
    let name = ck
        .name(&raw.name, "name", span)
        .zip(raw.name.as_ref().map(|n| n.span()));
    let bind = ck
        .required(&raw.bind, "bind", span)
        .and_then(|v| ck.socket_addr_value(v, "bind").map(|a| (a, v.span())));
    let mode = ck.choice(&raw.mode, "mode", MODES, FrontendMode::Http);
    let backend = ck
        .required(&raw.backend, "backend", span)
        .and_then(|v| ck.non_empty(v, "backend").map(|b| (b, v.span())));
    let forwarding = ck.choice(
        &raw.forwarding,
        "forwarding",
        FORWARDINGS,
        Forwarding::Proxy,
    );
    let xdp = ck.choice(&raw.xdp, "xdp", XDP_MODES, XdpMode::Off);
    let interface = raw
        .interface
        .as_ref()
        .and_then(|v| ck.ifname_value(v, "interface"));

    // Forwarding, XDP and mode must fit together.
    if let (Some(f), Some(v)) = (forwarding, &raw.forwarding) {
        if f != Forwarding::Proxy {
            if mode == Some(FrontendMode::Http) {
                ck.err(
                    &v.span(),
                    format!(
                        "forwarding = {:?} works only with mode \"tcp\" or \"udp\", this frontend has mode \"http\"",
                        v.get_ref()
                    ),
                );
            }
            if xdp == Some(XdpMode::Off) {
                ck.err(
                    &v.span(),
                    format!(
                        "forwarding = {:?} is done by XDP and needs xdp = \"native\" or \"generic\"",
                        v.get_ref()
                    ),
                );
            }
        }
    }
    if let (Some(x), Some(v)) = (xdp, &raw.xdp) {
        if x != XdpMode::Off {
            if forwarding == Some(Forwarding::Proxy) {
                ck.err(&v.span(), "xdp must be \"off\" when forwarding = \"proxy\"");
            }
            if ck.absent(&raw.interface, "interface") {
                ck.err(
                    span,
                    format!(
                        "missing required key 'interface' (the XDP program of xdp = {:?} needs an interface)",
                        v.get_ref()
                    ),
                );
            }
        }
    }

    let timeouts = check_timeouts(ck, raw.timeouts.as_ref().map(|t| t.get_ref()));
    let buffer_size = ck.int(&raw.buffer_size, "buffer_size", 1024, 16_777_216, 16_384u32);
    let max_connections = raw
        .max_connections
        .as_ref()
        .and_then(|v| ck.int_value::<u32>(v, "max_connections", 1, i64::from(u32::MAX)));
    let forwarded_headers = ck.choice(
        &raw.forwarded_headers,
        "forwarded_headers",
        FORWARDED_HEADERS,
        ForwardedHeaders::XForwarded,
    );
    let accept_proxy_protocol = ck.boolean(&raw.accept_proxy_protocol, false);
    let max_header_size = ck.int(
        &raw.max_header_size,
        "max_header_size",
        1024,
        1_048_576,
        65_536u32,
    );

    let mode = mode.unwrap_or(FrontendMode::Http);
    Checked {
        config: FrontendConfig {
            name: name.as_ref().map(|(n, _)| n.clone()).unwrap_or_default(),
            bind: bind
                .as_ref()
                .map(|(a, _)| *a)
                .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
            mode,
            backend: backend.as_ref().map(|(b, _)| b.clone()).unwrap_or_default(),
            forwarding: forwarding.unwrap_or(Forwarding::Proxy),
            xdp: xdp.unwrap_or(XdpMode::Off),
            interface,
            timeouts,
            buffer_size: buffer_size.unwrap_or(16_384),
            max_connections,
            forwarded_headers: forwarded_headers.unwrap_or(ForwardedHeaders::XForwarded),
            accept_proxy_protocol,
            max_header_size: max_header_size.unwrap_or(65_536),
        },
        name,
        bind: bind.map(|(a, s)| (a, mode.transport(), s)),
        backend,
    }
}

fn check_timeouts(ck: &mut Check<'_, '_>, raw: Option<&RawFrontendTimeouts>) -> FrontendTimeouts {
    let d = FrontendTimeouts {
        client_header: Duration::from_secs(10),
        client_idle: Duration::from_secs(60),
        connect: Duration::from_secs(3),
        server: Duration::from_secs(60),
        udp_idle: Duration::from_secs(30),
    };
    let Some(raw) = raw else {
        return d;
    };
    let mut one = |v, key: &str, default: Duration| {
        ck.duration_positive(v, &join("timeouts", key), default)
            .unwrap_or(default)
    };
    FrontendTimeouts {
        client_header: one(&raw.client_header, "client_header", d.client_header),
        client_idle: one(&raw.client_idle, "client_idle", d.client_idle),
        connect: one(&raw.connect, "connect", d.connect),
        server: one(&raw.server, "server", d.server),
        udp_idle: one(&raw.udp_idle, "udp_idle", d.udp_idle),
    }
}
