//! `[node]` checks.

use std::path::PathBuf;
use std::time::Duration;

use super::check::Check;
use super::document::Item;
use super::model::{LogLevel, NodeConfig, WorkerScaling};
use super::raw::RawNode;

/// Longest Unix socket path (`sun_path` is 108 bytes with the NUL).
const SOCKET_PATH_MAX: usize = 107;

pub(crate) const DEFAULT_ADMIN_SOCKET: &str = "/run/halb/admin.sock";

const WORKER_SCALING: &[(&str, WorkerScaling)] =
    &[("auto", WorkerScaling::Auto), ("all", WorkerScaling::All)];

const LOG_LEVELS: &[(&str, LogLevel)] = &[
    ("error", LogLevel::Error),
    ("warn", LogLevel::Warn),
    ("info", LogLevel::Info),
    ("debug", LogLevel::Debug),
    ("trace", LogLevel::Trace),
];

/// The node section and where its `name` is (for the cluster cross check).
pub(crate) struct CheckedNode {
    pub(crate) config: NodeConfig,
    /// The valid node name, if any.
    pub(crate) name: Option<String>,
}

/// Default worker thread count: the available cores, at least 1, at most 1024.
fn default_workers() -> u16 {
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    u16::try_from(n.min(1024)).unwrap_or(1024)
}

pub(crate) fn check_node(ck: &mut Check<'_, '_>, item: &Item<RawNode>) -> Option<CheckedNode> {
    let raw = item.raw.as_ref()?;
    ck.begin_item(&item.removed);
    let span = &item.span;
    let name = ck.name(&raw.name, "name", span);

    let admin_socket = match &raw.admin_socket {
        None => Some(PathBuf::from(DEFAULT_ADMIN_SOCKET)),
        Some(v) => {
            let p = ck.path_value(v, "admin_socket", false);
            if p.is_some() && v.get_ref().len() > SOCKET_PATH_MAX {
                ck.err(
                    &v.span(),
                    format!(
                        "admin_socket must be at most {SOCKET_PATH_MAX} bytes (a Unix socket path), got {}",
                        v.get_ref().len()
                    ),
                );
                None
            } else {
                p
            }
        }
    };
    let metrics_listen = raw
        .metrics_listen
        .as_ref()
        .and_then(|v| ck.socket_addr_value(v, "metrics_listen"));
    let worker_threads = ck.int(
        &raw.worker_threads,
        "worker_threads",
        1,
        1024,
        default_workers(),
    );
    let worker_scaling = raw
        .worker_scaling
        .as_ref()
        .and_then(|v| ck.choice_value(v, "worker_scaling", WORKER_SCALING));
    let log_level = raw
        .log_level
        .as_ref()
        .and_then(|v| ck.choice_value(v, "log_level", LOG_LEVELS));
    let shutdown_timeout = ck.duration(
        &raw.shutdown_timeout,
        "shutdown_timeout",
        Duration::from_secs(10),
    );

    Some(CheckedNode {
        config: NodeConfig {
            name: name.clone().unwrap_or_default(),
            admin_socket: admin_socket.unwrap_or_default(),
            metrics_listen,
            worker_threads: worker_threads.unwrap_or(1),
            worker_scaling: worker_scaling.unwrap_or(WorkerScaling::Auto),
            log_level,
            shutdown_timeout: shutdown_timeout.unwrap_or_default(),
        },
        name,
    })
}
