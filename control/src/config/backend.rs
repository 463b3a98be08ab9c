//! `[[backend]]` checks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use super::check::{is_prime, join, show, Check};
use super::document::Item;
use super::model::{
    Algorithm, BackendConfig, HashKey, HealthConfig, HealthKind, OutlierConfig, ProxyProtocol,
    QueueConfig, ServerConfig,
};
use super::raw::{RawBackend, RawHashKey, RawHealth, RawOutlier, RawQueue};

const ALGORITHMS: &[(&str, Algorithm)] = &[
    ("round-robin", Algorithm::RoundRobin),
    ("weighted-round-robin", Algorithm::WeightedRoundRobin),
    ("least-connections", Algorithm::LeastConnections),
    ("p2c", Algorithm::P2c),
    ("maglev", Algorithm::Maglev),
    ("random", Algorithm::Random),
];
const HEALTH_KINDS: &[(&str, HealthKind)] = &[
    ("tcp", HealthKind::Tcp),
    ("http", HealthKind::Http),
    ("none", HealthKind::None),
];
const PROXY_PROTOCOLS: &[(&str, ProxyProtocol)] =
    &[("v1", ProxyProtocol::V1), ("v2", ProxyProtocol::V2)];

/// Default Maglev lookup table size (a prime).
const MAGLEV_DEFAULT: u32 = 65_537;
/// Largest Maglev table size accepted: the largest prime below 2^24.
const MAGLEV_MAX: i64 = 16_777_213;
const HEALTH_MIN_INTERVAL: Duration = Duration::from_millis(10);

pub(crate) fn check_backends(
    ck: &mut Check<'_, '_>,
    items: &[Item<RawBackend>],
) -> Vec<BackendConfig> {
    let mut names = Vec::new();
    let mut out = Vec::new();
    for item in items {
        let Some(raw) = &item.raw else {
            continue;
        };
        ck.begin_item(&item.removed);
        let (config, name) = check_one(ck, raw, &item.span);
        if let Some(n) = name {
            names.push(n);
        }
        out.push(config);
    }
    ck.unique_names(
        "backend",
        names.iter().map(|(n, s)| (n.as_str(), s.clone())),
    );
    out
}

fn check_one(
    ck: &mut Check<'_, '_>,
    raw: &RawBackend,
    span: &Range<usize>,
) -> (BackendConfig, Option<(String, Range<usize>)>) {
    let name = ck
        .name(&raw.name, "name", span)
        .zip(raw.name.as_ref().map(|n| n.span()));
    let algorithm = ck.choice(
        &raw.algorithm,
        "algorithm",
        ALGORITHMS,
        Algorithm::RoundRobin,
    );
    let maglev = algorithm == Some(Algorithm::Maglev);
    let known_algorithm = algorithm.is_some();

    let hash_key = match &raw.hash_key {
        None => Some(HashKey::SourceIp),
        Some(v) => {
            if known_algorithm && !maglev {
                ck.err(
                    &v.span(),
                    "hash_key is only used with algorithm = \"maglev\"",
                );
            }
            check_hash_key(ck, v.get_ref(), &v.span())
        }
    };

    // Servers: at least one, names and addresses unique.
    if let Some(list) = ck.required(&raw.servers, "servers", span) {
        if list.get_ref().is_empty() {
            ck.err(&list.span(), "servers must list at least one server");
        }
    }
    let mut server_names: HashMap<String, Range<usize>> = HashMap::new();
    let mut server_addrs: HashMap<SocketAddr, String> = HashMap::new();
    let servers: Vec<ServerConfig> = ck
        .each(&raw.servers, "servers", |ck, s, path| {
            let raw = s.get_ref();
            let sname = ck.name(&raw.name, &join(path, "name"), &s.span());
            if let (Some(n), Some(v)) = (&sname, &raw.name) {
                if let Some(first) = server_names.get(n) {
                    let line = ck.line_of(first);
                    ck.err(
                        &v.span(),
                        format!("duplicate server name '{n}' (first used on line {line})"),
                    );
                } else {
                    server_names.insert(n.clone(), v.span());
                }
            }
            let akey = join(path, "address");
            let address = ck
                .required(&raw.address, &akey, &s.span())
                .and_then(|v| ck.socket_addr_value(v, &akey).map(|a| (a, v.span())));
            if let Some((a, aspan)) = &address {
                if let Some(first) = server_addrs.get(a) {
                    ck.err(
                        aspan,
                        format!("{akey} {a} is already used by server '{first}'"),
                    );
                } else {
                    server_addrs.insert(*a, sname.clone().unwrap_or_default());
                }
            }
            let weight = ck.int(&raw.weight, &join(path, "weight"), 0, 256, 1u16);
            let max_connections = raw.max_connections.as_ref().and_then(|v| {
                ck.int_value::<u32>(v, &join(path, "max_connections"), 1, i64::from(u32::MAX))
            });
            Some(ServerConfig {
                name: sname.unwrap_or_default(),
                address: address
                    .map(|(a, _)| a)
                    .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
                weight: weight.unwrap_or(1),
                max_connections,
                backup: ck.boolean(&raw.backup, false),
            })
        })
        .into_iter()
        .map(|(_, s)| s)
        .collect();

    let maglev_table_size = match &raw.maglev_table_size {
        None => Some(MAGLEV_DEFAULT),
        Some(v) => {
            if known_algorithm && !maglev {
                ck.err(
                    &v.span(),
                    "maglev_table_size is only used with algorithm = \"maglev\"",
                );
            }
            match ck.int_value::<u32>(v, "maglev_table_size", 2, MAGLEV_MAX) {
                Some(n) if !is_prime(u64::from(n)) => {
                    ck.err(
                        &v.span(),
                        format!("maglev_table_size must be a prime number, got {n}"),
                    );
                    None
                }
                Some(n) if usize::try_from(n).unwrap_or(usize::MAX) <= servers.len() => {
                    ck.err(
                        &v.span(),
                        format!(
                            "maglev_table_size must be larger than the number of servers ({}), got {n}",
                            servers.len()
                        ),
                    );
                    None
                }
                other => other,
            }
        }
    };

    let health = check_health(ck, raw.health.as_ref().map(|h| (h.get_ref(), h.span())));
    let drain_timeout = ck.duration(&raw.drain_timeout, "drain_timeout", Duration::from_secs(30));
    let slow_start = ck.duration(&raw.slow_start, "slow_start", Duration::ZERO);
    let connect_retries = ck.int(&raw.connect_retries, "connect_retries", 0, 10, 1u8);
    let queue = check_queue(ck, raw.queue.as_ref().map(|q| q.get_ref()));
    let outlier = check_outlier(ck, raw.outlier.as_ref().map(|o| o.get_ref()));
    let send_proxy_protocol = raw
        .send_proxy_protocol
        .as_ref()
        .and_then(|v| ck.choice_value(v, "send_proxy_protocol", PROXY_PROTOCOLS));

    let config = BackendConfig {
        name: name.as_ref().map(|(n, _)| n.clone()).unwrap_or_default(),
        algorithm: algorithm.unwrap_or(Algorithm::RoundRobin),
        hash_key: hash_key.unwrap_or(HashKey::SourceIp),
        maglev_table_size: maglev_table_size.unwrap_or(MAGLEV_DEFAULT),
        servers,
        health,
        drain_timeout: drain_timeout.unwrap_or_default(),
        slow_start: slow_start.unwrap_or_default(),
        connect_retries: connect_retries.unwrap_or(1),
        queue,
        outlier,
        send_proxy_protocol,
    };
    (config, name)
}

/// An HTTP header name or cookie name: a non-empty RFC 9110 token.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(ch))
}

fn check_hash_key(
    ck: &mut Check<'_, '_>,
    raw: &RawHashKey,
    span: &Range<usize>,
) -> Option<HashKey> {
    match raw {
        RawHashKey::Name(n) => match n.as_str() {
            "source-ip" => Some(HashKey::SourceIp),
            "source-ip-port" => Some(HashKey::SourceIpPort),
            other => {
                ck.err(
                    span,
                    format!(
                        "hash_key must be one of: source-ip, source-ip-port, {{ header = \"...\" }}, {{ cookie = \"...\" }}, got {other:?}"
                    ),
                );
                None
            }
        },
        RawHashKey::Table(t) => match (&t.header, &t.cookie) {
            (Some(h), None) => {
                if is_token(h.get_ref()) {
                    Some(HashKey::Header(h.get_ref().clone()))
                } else {
                    ck.err(
                        &h.span(),
                        format!(
                            "hash_key.header must be an HTTP header name, got {:?}",
                            h.get_ref()
                        ),
                    );
                    None
                }
            }
            (None, Some(c)) => {
                if is_token(c.get_ref()) {
                    Some(HashKey::Cookie(c.get_ref().clone()))
                } else {
                    ck.err(
                        &c.span(),
                        format!(
                            "hash_key.cookie must be a cookie name, got {:?}",
                            c.get_ref()
                        ),
                    );
                    None
                }
            }
            _ => {
                ck.err(
                    span,
                    "hash_key table must have exactly one of: header, cookie",
                );
                None
            }
        },
    }
}

fn check_health(ck: &mut Check<'_, '_>, raw: Option<(&RawHealth, Range<usize>)>) -> HealthConfig {
    let mut h = HealthConfig {
        kind: HealthKind::Tcp,
        path: "/".to_owned(),
        method: "GET".to_owned(),
        host: None,
        expect_status: vec![200],
        expect_body: None,
        interval: Duration::from_secs(2),
        timeout: Duration::from_secs(1),
        jitter: Duration::ZERO,
        rise: 2,
        fall: 3,
    };
    let Some((raw, span)) = raw else {
        return h;
    };
    if let Some(k) = ck.choice(&raw.kind, "health.kind", HEALTH_KINDS, h.kind) {
        h.kind = k;
    }
    if let Some(p) = &raw.path {
        if p.get_ref().starts_with('/') {
            h.path = p.get_ref().clone();
        } else {
            ck.err(
                &p.span(),
                format!("health.path must start with '/', got {:?}", p.get_ref()),
            );
        }
    }
    if let Some(m) = &raw.method {
        let s = m.get_ref();
        if !s.is_empty() && s.chars().all(|ch| ch.is_ascii_uppercase()) {
            h.method = s.clone();
        } else {
            ck.err(
                &m.span(),
                format!(
                    "health.method must be an HTTP method in upper case such as \"GET\", got {s:?}"
                ),
            );
        }
    }
    h.host = raw
        .host
        .as_ref()
        .and_then(|v| ck.non_empty(v, "health.host"));
    if let Some(list) = &raw.expect_status {
        if list.get_ref().is_empty() {
            ck.err(
                &list.span(),
                "health.expect_status must list at least one status",
            );
        }
        h.expect_status = ck
            .each(&raw.expect_status, "health.expect_status", |ck, v, path| {
                ck.int_value::<u16>(v, path, 100, 599)
            })
            .into_iter()
            .map(|(_, s)| s)
            .collect();
    }
    h.expect_body = raw.expect_body.as_ref().map(|v| v.get_ref().clone());
    let interval = ck.duration_range(
        &raw.interval,
        "health.interval",
        h.interval,
        HEALTH_MIN_INTERVAL,
        None,
    );
    let timeout = ck.duration_positive(&raw.timeout, "health.timeout", h.timeout);
    let jitter = ck.duration(&raw.jitter, "health.jitter", h.jitter);
    if let (Some(interval), Some(timeout)) = (interval, timeout) {
        if timeout > interval {
            let at = raw
                .timeout
                .as_ref()
                .or(raw.interval.as_ref())
                .map(|v| v.span())
                .unwrap_or(span.clone());
            ck.err(
                &at,
                format!(
                    "health.timeout ({}) must not be longer than health.interval ({})",
                    show(timeout),
                    show(interval)
                ),
            );
        }
    }
    if let (Some(interval), Some(jitter)) = (interval, jitter) {
        if jitter >= interval && !jitter.is_zero() {
            let at = raw
                .jitter
                .as_ref()
                .or(raw.interval.as_ref())
                .map(|v| v.span())
                .unwrap_or(span.clone());
            ck.err(
                &at,
                format!(
                    "health.jitter ({}) must be shorter than health.interval ({})",
                    show(jitter),
                    show(interval)
                ),
            );
        }
    }
    h.interval = interval.unwrap_or(h.interval);
    h.timeout = timeout.unwrap_or(h.timeout);
    h.jitter = jitter.unwrap_or(h.jitter);
    h.rise = ck
        .at_least_u32(&raw.rise, "health.rise", 1, h.rise)
        .unwrap_or(h.rise);
    h.fall = ck
        .at_least_u32(&raw.fall, "health.fall", 1, h.fall)
        .unwrap_or(h.fall);
    h
}

fn check_queue(ck: &mut Check<'_, '_>, raw: Option<&RawQueue>) -> QueueConfig {
    let d = QueueConfig {
        max: 0,
        timeout: Duration::from_secs(5),
    };
    let Some(raw) = raw else {
        return d;
    };
    QueueConfig {
        max: ck
            .at_least_u32(&raw.max, "queue.max", 0, d.max)
            .unwrap_or(d.max),
        timeout: ck
            .duration_positive(&raw.timeout, "queue.timeout", d.timeout)
            .unwrap_or(d.timeout),
    }
}

fn check_outlier(ck: &mut Check<'_, '_>, raw: Option<&RawOutlier>) -> OutlierConfig {
    let d = OutlierConfig {
        consecutive_failures: 0,
        ejection_time: Duration::from_secs(30),
    };
    let Some(raw) = raw else {
        return d;
    };
    OutlierConfig {
        consecutive_failures: ck
            .at_least_u32(
                &raw.consecutive_failures,
                "outlier.consecutive_failures",
                0,
                d.consecutive_failures,
            )
            .unwrap_or(d.consecutive_failures),
        ejection_time: ck
            .duration_positive(&raw.ejection_time, "outlier.ejection_time", d.ejection_time)
            .unwrap_or(d.ejection_time),
    }
}
