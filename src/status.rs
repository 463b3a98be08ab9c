//! What `halb status` shows: the daemon's own state and one section per
//! running part. The daemon serialises it as JSON over the admin socket;
//! the client renders it as text (or prints the JSON with `--json`).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// The whole status view.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub node: String,
    pub version: String,
    pub pid: u32,
    /// The file the config was read from, or `<embedded …>` for `halb demo`.
    pub config_file: String,
    /// Bumped by each applied reload; the first config is generation 1.
    pub generation: u64,
    /// When the running generation was loaded (RFC 3339).
    pub loaded_at: String,
    pub started_at: String,
    pub uptime_secs: u64,
    /// The last reload attempt, applied or rejected.
    pub last_reload: Option<ReloadReport>,
    pub admin: AdminStatus,
    pub metrics: Option<MetricsStatus>,
    /// Frontends, backends and servers of the user-space data plane.
    pub dataplane: dataplane::Status,
    /// VRRP instances.
    pub vrrp: crate::parts::vrrp::VrrpStatus,
    /// The XDP balancer: mode per interface, frontends, fallbacks.
    pub xdp: Option<ebpf::XdpStatus>,
    /// Cluster control: nodes, quorum, VIP owners, links, fencing.
    pub cluster: Option<crate::parts::cluster::ClusterView>,
}

/// One reload attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// RFC 3339 time of the attempt.
    pub at: String,
    /// `sighup` or `admin`.
    pub trigger: String,
    /// True when the new config was applied.
    pub ok: bool,
    /// The generation running after the attempt.
    pub generation: u64,
    /// `file:line:col: message` lines of a rejected file.
    #[serde(default)]
    pub errors: Vec<String>,
    /// What the applied config changed, one line each.
    #[serde(default)]
    pub changes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminStatus {
    pub socket: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricsStatus {
    pub listen: String,
}

impl Status {
    /// Human-readable text, in the spirit of `pcs status`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "halb {} on node {} (pid {}, up {})",
            self.version,
            self.node,
            self.pid,
            humantime::format_duration(std::time::Duration::from_secs(self.uptime_secs))
        );
        let _ = writeln!(
            out,
            "config: {} (generation {}, loaded {})",
            self.config_file, self.generation, self.loaded_at
        );
        match &self.last_reload {
            None => {
                let _ = writeln!(out, "last reload: none");
            }
            Some(r) => {
                let verdict = if r.ok {
                    "applied"
                } else {
                    "REJECTED, running config kept"
                };
                let _ = writeln!(
                    out,
                    "last reload: {} via {}: {} (generation {})",
                    r.at, r.trigger, verdict, r.generation
                );
                for e in &r.errors {
                    let _ = writeln!(out, "  {e}");
                }
                for c in &r.changes {
                    let _ = writeln!(out, "  {c}");
                }
            }
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "admin socket: {}", self.admin.socket);
        match &self.metrics {
            Some(m) => {
                let _ = writeln!(
                    out,
                    "metrics: http://{}/metrics  stats page: http://{}/",
                    m.listen, m.listen
                );
            }
            None => {
                let _ = writeln!(out, "metrics: off (no node.metrics_listen)");
            }
        }
        if let Some(c) = &self.cluster {
            crate::parts::cluster::render(c, &mut out);
        }
        crate::parts::dataplane::render(&self.dataplane, &mut out);
        crate::parts::vrrp::render(&self.vrrp, &mut out);
        if let Some(x) = &self.xdp {
            crate::parts::xdp::render(x, &mut out);
        }
        out
    }
}
