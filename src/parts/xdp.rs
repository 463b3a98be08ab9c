//! The XDP L4 balancer as a daemon part.
//!
//! Frontends with `forwarding = "ipip" | "l2-dsr"` and `xdp` on are served
//! in the kernel by `ebpf::XdpBalancer`. When the program cannot be loaded
//! or attached (not built, no CAP_BPF, driver without XDP), those frontends
//! fall back to the user-space L4 path: the data plane gets a copy of the
//! config in which they are plain proxy frontends. The reason is logged
//! once and shown by `halb status`.
//!
//! Health and admin state come from the user-space data plane's checker
//! (one checker for both paths): a sync task pushes every change of a
//! server's state into the kernel's Maglev tables.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use control::config::{Config, Forwarding, XdpMode};
use ebpf::{HandedLink, XdpBalancer, XdpOptions, XdpStatus};

pub struct XdpPart {
    inner: Mutex<Inner>,
}

struct Inner {
    balancer: Option<XdpBalancer>,
    /// Why there is no balancer (logged once).
    off_reason: Option<String>,
    /// Frontends served from user space although they asked for XDP.
    fallback: BTreeSet<String>,
    /// Backends used by XDP frontends, and the last state pushed per server.
    pushed: BTreeMap<(String, String), (bool, bool)>,
    xdp_backends: BTreeSet<String>,
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The config the user-space data plane serves: XDP frontends that fell
/// back become ordinary proxy frontends.
pub fn userspace_config(config: &Config, fallback: &BTreeSet<String>) -> Config {
    let mut c = config.clone();
    for f in &mut c.frontends {
        if fallback.contains(&f.name) {
            f.forwarding = Forwarding::Proxy;
            f.xdp = XdpMode::Off;
        }
    }
    c
}

/// Backends of the frontends served in the kernel (not those that fell
/// back to user space: the kernel has no table for them).
fn xdp_backends(config: &Config, fallback: &BTreeSet<String>) -> BTreeSet<String> {
    config
        .frontends
        .iter()
        .filter(|f| {
            f.forwarding != Forwarding::Proxy
                && f.xdp != XdpMode::Off
                && !fallback.contains(&f.name)
        })
        .map(|f| f.backend.clone())
        .collect()
}

fn all_xdp_frontends(config: &Config) -> BTreeSet<String> {
    config
        .frontends
        .iter()
        .filter(|f| f.forwarding != Forwarding::Proxy)
        .map(|f| f.name.clone())
        .collect()
}

impl XdpPart {
    /// Loads and attaches the program when the config asks for it. Never
    /// fails: what cannot run in the kernel runs in user space.
    ///
    /// `inherited`: the XDP links of the process this one replaces (`halb
    /// run --upgrade`); an interface attached in the same mode takes its
    /// link over (switched to this program in one step) instead of
    /// attaching anew.
    pub fn start(config: &Config, inherited: Vec<HandedLink>) -> XdpPart {
        let mut inner = Inner {
            balancer: None,
            off_reason: None,
            fallback: BTreeSet::new(),
            pushed: BTreeMap::new(),
            xdp_backends: BTreeSet::new(),
        };
        if ebpf::wants_xdp(config) {
            inner.load(config, inherited);
        } else {
            inner.fallback = all_xdp_frontends(config);
        }
        inner.xdp_backends = xdp_backends(config, &inner.fallback);
        XdpPart {
            inner: Mutex::new(inner),
        }
    }

    /// Frontends the user-space data plane must serve in place of XDP.
    pub fn fallback(&self) -> BTreeSet<String> {
        lock(&self.inner).fallback.clone()
    }

    /// Applies a new config (no detach unless an interface or mode
    /// changes). Returns the changes and the new fallback set.
    pub fn reload(&self, config: &Config) -> Result<(Vec<String>, BTreeSet<String>), String> {
        let mut inner = lock(&self.inner);
        inner.pushed.clear();
        let mut changes = Vec::new();
        if let Some(b) = inner.balancer.as_mut() {
            let report = b.apply(config).map_err(|e| format!("xdp: {e}"))?;
            for f in &report.kernel {
                changes.push(format!("frontend {f} served by XDP"));
            }
            inner.fallback = report.fallback.iter().map(|f| f.frontend.clone()).collect();
        } else if ebpf::wants_xdp(config) && inner.off_reason.is_none() {
            inner.load(config, Vec::new());
            if inner.balancer.is_some() {
                changes.push("XDP program loaded".to_string());
            }
        } else {
            inner.fallback = all_xdp_frontends(config);
        }
        inner.xdp_backends = xdp_backends(config, &inner.fallback);
        for f in &inner.fallback {
            changes.push(format!("frontend {f} served by the user-space L4 path"));
        }
        Ok((changes, inner.fallback.clone()))
    }

    /// Pushes the data plane's server states into the kernel tables and
    /// exports the `halb_xdp_*` counters.
    pub fn sync(&self, dp: &dataplane::Status, export: bool) {
        let mut inner = lock(&self.inner);
        let Inner {
            balancer,
            pushed,
            xdp_backends,
            ..
        } = &mut *inner;
        let Some(b) = balancer.as_mut() else {
            return;
        };
        for backend in dp
            .backends
            .iter()
            .filter(|b| xdp_backends.contains(&b.name))
        {
            for s in &backend.servers {
                let state = (
                    matches!(
                        s.state,
                        dataplane::ServerState::Up | dataplane::ServerState::Drain
                    ),
                    s.state == dataplane::ServerState::Drain,
                );
                let key = (backend.name.clone(), s.name.clone());
                if pushed.get(&key) == Some(&state) {
                    continue;
                }
                let (up, drained) = state;
                let health = b.set_server_health(&backend.name, &s.name, up);
                let drain = b.set_server_drained(&backend.name, &s.name, drained);
                match (health, drain) {
                    (Ok(_), Ok(_)) => {
                        pushed.insert(key, state);
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        tracing::warn!(backend = %backend.name, server = %s.name, error = %e, "xdp: cannot update server state");
                    }
                }
            }
        }
        if export {
            if let Err(e) = b.export_metrics() {
                tracing::debug!(error = %e, "xdp: metrics export failed");
            }
        }
    }

    pub fn status(&self, config: &Config) -> Option<XdpStatus> {
        let inner = lock(&self.inner);
        match (&inner.balancer, &inner.off_reason) {
            (Some(b), _) => Some(b.status()),
            (None, Some(reason)) => Some(XdpStatus::off(config, reason)),
            (None, None) => None,
        }
    }

    /// Duplicates of the XDP links, for `halb run --upgrade`.
    pub fn link_fds(&self) -> std::io::Result<Vec<HandedLink>> {
        match &lock(&self.inner).balancer {
            Some(b) => b.link_fds(),
            None => Ok(Vec::new()),
        }
    }

    /// Detaches the program everywhere (links a new process took over
    /// stay, with its program).
    pub fn shutdown(&self) {
        if let Some(b) = lock(&self.inner).balancer.take() {
            b.shutdown();
        }
    }
}

impl Inner {
    fn load(&mut self, config: &Config, inherited: Vec<HandedLink>) {
        let loaded = XdpBalancer::load(&XdpOptions::default()).and_then(|mut b| {
            b.adopt_links(inherited);
            let report = b.apply(config)?;
            Ok((b, report))
        });
        match loaded {
            Ok((b, report)) => {
                self.fallback = report.fallback.iter().map(|f| f.frontend.clone()).collect();
                tracing::info!(kernel = ?report.kernel, fallback = ?self.fallback, "XDP program attached");
                self.balancer = Some(b);
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::warn!(
                    reason = %reason,
                    "XDP unavailable; the XDP frontends are served by the user-space L4 path"
                );
                self.off_reason = Some(reason);
                self.fallback = all_xdp_frontends(config);
            }
        }
    }
}

/// The XDP section of `halb status`.
pub fn render(status: &XdpStatus, out: &mut String) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "\nXDP:");
    for i in &status.interfaces {
        let _ = writeln!(
            out,
            "  interface {:<10} mode {:<8} frontends {}{}",
            i.interface,
            format!("{:?}", i.mode).to_lowercase(),
            i.frontends.join(", "),
            i.reason
                .as_ref()
                .map(|r| format!("  ({r})"))
                .unwrap_or_default()
        );
    }
    for f in &status.frontends {
        let _ = writeln!(
            out,
            "  {} {} {:?} on {}: {} servers",
            f.name,
            f.vip,
            f.forwarding,
            f.interface,
            f.servers.len()
        );
    }
    for fb in &status.fallback {
        let _ = writeln!(out, "  {} -> user space: {}", fb.frontend, fb.reason);
    }
}
