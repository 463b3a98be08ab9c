//! The halb config file: TOML in, a validated [`Config`] out, or every
//! problem of the file as `FILE:LINE:COL: message`.
//!
//! How a file is read:
//!
//! 1. TOML syntax ([`toml::de::DeTable`], spans kept). A syntax error stops
//!    here; every syntax error the parser can recover from is reported.
//! 2. The top-level keys are split into sections (`[node]`, `[[vrrp]]`,
//!    `[[frontend]]`, `[[backend]]`, `[cluster]`, `[[cluster.fence_device]]`)
//!    and each table or array item is deserialized on its own into a "raw"
//!    serde struct (`#[serde(deny_unknown_fields)]`, every value
//!    [`toml::Spanned`]). An unknown key or a wrong type in one item is
//!    reported without hiding the problems of the other items.
//! 3. Every value of every raw item is checked (ranges, durations, addresses,
//!    names, choices), then the cross checks run: unique names, frontends
//!    naming existing backends, no virtual IP claimed twice, unicast peers of
//!    the instance's family, this node listed in the cluster, fence devices
//!    naming cluster nodes, ... All errors are collected and sorted by position.
//!
//! Durations are human strings (`"10ms"`, `"1s"`, `"1m 30s"`); unknown keys
//! are errors everywhere.

mod backend;
mod check;
mod cluster;
mod document;
mod error;
mod frontend;
mod model;
mod node;
mod raw;
mod vrrp;

use std::collections::HashSet;
use std::path::Path;

pub use error::{ConfigError, ConfigErrors};
pub use model::*;

/// The admin socket path used when `node.admin_socket` is not set.
pub const DEFAULT_ADMIN_SOCKET: &str = node::DEFAULT_ADMIN_SOCKET;

/// Reads and validates a config file. A file that cannot be read (or is not
/// UTF-8) is one error naming the file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path)
        .map_err(|e| ConfigErrors::whole_file(&file, format!("cannot read file: {e}")))?;
    match String::from_utf8(bytes) {
        Ok(text) => parse(&text, &file),
        Err(e) => {
            // Point at the first bad byte: line and column of the valid prefix.
            let valid = e.utf8_error().valid_up_to();
            let bytes = e.into_bytes();
            let prefix = String::from_utf8_lossy(&bytes[..valid]).into_owned();
            let mut c = error::Collector::new(&prefix);
            c.at(&(valid..valid), "file is not valid UTF-8");
            Err(c.finish(&file))
        }
    }
}

/// Validates config text; `file_name` is used in the error positions.
pub fn parse(text: &str, file_name: &str) -> Result<Config, ConfigErrors> {
    let mut c = error::Collector::new(text);
    let config = parse_into(text, &mut c);
    match config {
        Some(config) if c.is_empty() => {
            tracing::debug!(
                file = file_name,
                vrrp = config.vrrp.len(),
                frontends = config.frontends.len(),
                backends = config.backends.len(),
                cluster = config.cluster.is_some(),
                "config valid"
            );
            Ok(config)
        }
        _ => {
            tracing::debug!(file = file_name, errors = c.error_count(), "config invalid");
            Err(c.finish(file_name))
        }
    }
}

fn parse_into(text: &str, c: &mut error::Collector<'_>) -> Option<Config> {
    let root = document::parse_toml(text, c)?;
    let sections = document::sections(&root, c);
    let mut ck = check::Check::new(c);

    let node = match &sections.node {
        Some(item) => node::check_node(&mut ck, item),
        None => {
            if !sections.has_node {
                ck.err(&(0..0), "missing required table [node]");
            }
            None
        }
    };
    let vrrp = vrrp::check_vrrp(&mut ck, &sections.vrrp);
    let backends = backend::check_backends(&mut ck, &sections.backends);
    let backend_names: HashSet<String> = sections
        .backends
        .iter()
        .filter_map(|b| b.name.clone())
        .collect();
    let frontends = frontend::check_frontends(&mut ck, &sections.frontends, &backend_names);
    let cluster = sections
        .cluster
        .as_ref()
        .and_then(|s| cluster::check_cluster(&mut ck, s, node.as_ref()));

    Some(Config {
        node: node?.config,
        vrrp,
        frontends,
        backends,
        cluster,
    })
}

/// Serializes a [`std::time::Duration`] as a human string (`"1s 500ms"`).
mod duration_serde {
    use std::time::Duration;

    pub(crate) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }
}
