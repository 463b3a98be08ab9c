//! The config file as written: serde structs that mirror the TOML tables one
//! to one, with the span of every value. Every table denies unknown keys.
//! Every key is optional here so that a missing required key is reported by
//! the checks in `validate` together with all other problems of the table,
//! and integers are `i64` so that ranges are checked with our own messages.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// A string value with its span.
pub(crate) type Str = Spanned<String>;
/// An integer value with its span.
pub(crate) type Int = Spanned<i64>;
/// A boolean value with its span.
pub(crate) type Bool = Spanned<bool>;
/// A duration string (`"10ms"`) with its span, parsed in `validate`.
pub(crate) type Dur = Spanned<DurText>;
/// An array with its span and the span of every element.
pub(crate) type List<T> = Spanned<Vec<Spanned<T>>>;

/// The text of a duration value. Its own type only so that a wrong TOML type
/// is reported as "must be a duration string ...".
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DurText(pub(crate) String);

impl<'de> Deserialize<'de> for DurText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"10ms\" or \"1s\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurText, E> {
                Ok(DurText(v.to_owned()))
            }
        }
        deserializer.deserialize_str(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNode {
    pub(crate) name: Option<Str>,
    pub(crate) admin_socket: Option<Str>,
    pub(crate) metrics_listen: Option<Str>,
    pub(crate) worker_threads: Option<Int>,
    pub(crate) worker_scaling: Option<Str>,
    pub(crate) log_level: Option<Str>,
    pub(crate) shutdown_timeout: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVrrp {
    pub(crate) name: Option<Str>,
    pub(crate) interface: Option<Str>,
    pub(crate) vrid: Option<Int>,
    pub(crate) priority: Option<Int>,
    pub(crate) version: Option<Int>,
    pub(crate) advert_interval: Option<Dur>,
    pub(crate) preempt: Option<Bool>,
    pub(crate) preempt_delay: Option<Dur>,
    pub(crate) accept_mode: Option<Bool>,
    pub(crate) virtual_ips: Option<List<String>>,
    pub(crate) unicast_peers: Option<List<String>>,
    pub(crate) unicast_source: Option<Str>,
    pub(crate) garp: Option<Spanned<RawGarp>>,
    pub(crate) track_interfaces: Option<List<RawTrackInterface>>,
    pub(crate) track_scripts: Option<List<RawTrackScript>>,
    pub(crate) track_files: Option<List<RawTrackFile>>,
    pub(crate) notify: Option<List<String>>,
    pub(crate) notify_timeout: Option<Dur>,
    pub(crate) use_vmac: Option<Bool>,
    pub(crate) v3_checksum: Option<Str>,
    pub(crate) auth_pass: Option<Str>,
    pub(crate) sync_group: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGarp {
    pub(crate) repeat: Option<Int>,
    pub(crate) interval: Option<Dur>,
    pub(crate) refresh: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrackInterface {
    pub(crate) name: Option<Str>,
    pub(crate) weight: Option<Int>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrackScript {
    pub(crate) command: Option<List<String>>,
    pub(crate) interval: Option<Dur>,
    pub(crate) timeout: Option<Dur>,
    pub(crate) weight: Option<Int>,
    pub(crate) rise: Option<Int>,
    pub(crate) fall: Option<Int>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrackFile {
    pub(crate) path: Option<Str>,
    pub(crate) weight: Option<Int>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFrontend {
    pub(crate) name: Option<Str>,
    pub(crate) bind: Option<Str>,
    pub(crate) mode: Option<Str>,
    pub(crate) backend: Option<Str>,
    pub(crate) forwarding: Option<Str>,
    pub(crate) xdp: Option<Str>,
    pub(crate) interface: Option<Str>,
    pub(crate) timeouts: Option<Spanned<RawFrontendTimeouts>>,
    pub(crate) buffer_size: Option<Int>,
    pub(crate) max_connections: Option<Int>,
    pub(crate) forwarded_headers: Option<Str>,
    pub(crate) accept_proxy_protocol: Option<Bool>,
    pub(crate) max_header_size: Option<Int>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFrontendTimeouts {
    pub(crate) client_header: Option<Dur>,
    pub(crate) client_idle: Option<Dur>,
    pub(crate) connect: Option<Dur>,
    pub(crate) server: Option<Dur>,
    pub(crate) udp_idle: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackend {
    pub(crate) name: Option<Str>,
    pub(crate) algorithm: Option<Str>,
    pub(crate) hash_key: Option<Spanned<RawHashKey>>,
    pub(crate) maglev_table_size: Option<Int>,
    pub(crate) servers: Option<List<RawServer>>,
    pub(crate) health: Option<Spanned<RawHealth>>,
    pub(crate) drain_timeout: Option<Dur>,
    pub(crate) slow_start: Option<Dur>,
    pub(crate) connect_retries: Option<Int>,
    pub(crate) queue: Option<Spanned<RawQueue>>,
    pub(crate) outlier: Option<Spanned<RawOutlier>>,
    pub(crate) send_proxy_protocol: Option<Str>,
}

/// `hash_key`: either a name (`"source-ip"`) or a one-key table
/// (`{ header = "X-User" }`).
#[derive(Debug)]
pub(crate) enum RawHashKey {
    Name(String),
    Table(RawHashKeyTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHashKeyTable {
    pub(crate) header: Option<Str>,
    pub(crate) cookie: Option<Str>,
}

impl<'de> Deserialize<'de> for RawHashKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawHashKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "\"source-ip\", \"source-ip-port\", { header = \"...\" } or { cookie = \"...\" }",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawHashKey, E> {
                Ok(RawHashKey::Name(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawHashKey, A::Error> {
                RawHashKeyTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawHashKey::Table)
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub(crate) name: Option<Str>,
    pub(crate) address: Option<Str>,
    pub(crate) weight: Option<Int>,
    pub(crate) max_connections: Option<Int>,
    pub(crate) backup: Option<Bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealth {
    pub(crate) kind: Option<Str>,
    pub(crate) path: Option<Str>,
    pub(crate) method: Option<Str>,
    pub(crate) host: Option<Str>,
    pub(crate) expect_status: Option<List<i64>>,
    pub(crate) expect_body: Option<Str>,
    pub(crate) interval: Option<Dur>,
    pub(crate) timeout: Option<Dur>,
    pub(crate) jitter: Option<Dur>,
    pub(crate) rise: Option<Int>,
    pub(crate) fall: Option<Int>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQueue {
    pub(crate) max: Option<Int>,
    pub(crate) timeout: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutlier {
    pub(crate) consecutive_failures: Option<Int>,
    pub(crate) ejection_time: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    pub(crate) nodes: Option<List<RawClusterNode>>,
    pub(crate) port: Option<Int>,
    pub(crate) auth_key_file: Option<Str>,
    pub(crate) heartbeat_interval: Option<Dur>,
    pub(crate) miss_count: Option<Int>,
    pub(crate) encrypt: Option<Bool>,
    pub(crate) quorum: Option<Spanned<RawQuorum>>,
    pub(crate) no_quorum_policy: Option<Str>,
    pub(crate) failback: Option<Str>,
    pub(crate) witness: Option<Str>,
    /// `[[cluster.fence_device]]` items are deserialized one by one on their
    /// own (see `document`); the key is listed here so that it is allowed.
    #[allow(dead_code)]
    pub(crate) fence_device: Option<de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClusterNode {
    pub(crate) name: Option<Str>,
    pub(crate) addresses: Option<List<String>>,
    pub(crate) votes: Option<Int>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQuorum {
    pub(crate) expected_votes: Option<Int>,
    pub(crate) two_node: Option<Bool>,
    pub(crate) wait_for_all: Option<Bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFenceDevice {
    pub(crate) name: Option<Str>,
    pub(crate) agent: Option<Str>,
    pub(crate) nodes: Option<List<String>>,
    pub(crate) action: Option<Str>,
    pub(crate) timeout: Option<Dur>,
    pub(crate) retries: Option<Int>,
    pub(crate) delay_max: Option<Dur>,
    pub(crate) monitor_interval: Option<Dur>,
    pub(crate) options: Option<Spanned<BTreeMap<String, Spanned<RawOptionValue>>>>,
}

/// A fence agent option value: a string, or an integer or boolean that is
/// passed on as text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawOptionValue(pub(crate) String);

impl<'de> Deserialize<'de> for RawOptionValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawOptionValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, an integer or a boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawOptionValue, E> {
                Ok(RawOptionValue(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawOptionValue, E> {
                Ok(RawOptionValue(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawOptionValue, E> {
                Ok(RawOptionValue(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawOptionValue, E> {
                Ok(RawOptionValue(v.to_string()))
            }
        }
        deserializer.deserialize_any(V)
    }
}
