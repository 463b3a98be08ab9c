//! The user-space data plane as a daemon part: frontends, backends, health
//! checks and draining, from `dataplane::Runtime`.

use std::fmt::Write as _;
use std::time::Duration;

use control::config::Config;
use dataplane::{AdminAction, EventLoops, ListenerFd, Runtime, ServerState};

use crate::admin::ServerAction;

pub struct DataplanePart {
    rt: Runtime,
}

impl DataplanePart {
    /// Binds every frontend and starts the health checks. Needs the metrics
    /// recorder installed first (handles are registered here).
    /// `inherited` are listening sockets handed over by the process this one
    /// replaces (`halb run --upgrade`); matching frontends serve on them.
    pub fn start(config: &Config, inherited: Vec<ListenerFd>) -> Result<DataplanePart, String> {
        // With more than one data-plane thread, client connections are
        // served on event loops of their own, one per thread; accept loops
        // and checks stay on this runtime. With one, there is nothing to
        // spread: they run on this runtime's one thread.
        let rt = if config.node.worker_threads > 1 {
            let loops = EventLoops::start(
                usize::from(config.node.worker_threads),
                config.node.worker_scaling,
            )
            .map_err(|e| format!("data plane: {e}"))?;
            Runtime::with_loops(loops)
        } else {
            Runtime::new()
        }
        .map_err(|e| format!("data plane: {e}"))?;
        if !inherited.is_empty() {
            rt.adopt_listeners(inherited);
        }
        let diff = rt.apply(config).map_err(|e| format!("data plane: {e}"))?;
        for c in &diff.changes {
            tracing::debug!(change = %c, "data plane start");
        }
        Ok(DataplanePart { rt })
    }

    /// Applies a validated config as a diff; on error nothing changed.
    pub fn reload(&self, config: &Config) -> Result<Vec<String>, String> {
        match self.rt.apply(config) {
            Ok(diff) => Ok(diff
                .changes
                .iter()
                .filter(|c| !matches!(c, dataplane::Change::ListenerKept { .. }))
                .map(|c| c.to_string())
                .collect()),
            Err(e) => Err(format!("data plane: {e}")),
        }
    }

    /// Duplicates of every listening socket, for `halb run --upgrade`.
    pub fn listener_fds(&self) -> std::io::Result<Vec<ListenerFd>> {
        self.rt.listener_fds()
    }

    pub fn status(&self) -> dataplane::Status {
        self.rt.status()
    }

    pub fn server_admin(
        &self,
        backend: &str,
        server: &str,
        action: ServerAction,
    ) -> Result<String, String> {
        let action = match action {
            ServerAction::Drain => AdminAction::Drain,
            ServerAction::Enable => AdminAction::Enable,
            ServerAction::Disable => AdminAction::Disable,
        };
        self.rt
            .server_admin(backend, server, action)
            .map(|state: ServerState| format!("{backend}/{server} is now {}", state.as_str()))
            .map_err(|e| e.to_string())
    }

    /// Stops accepting, lets connections finish up to `deadline`.
    pub async fn shutdown(&self, deadline: Duration) {
        let report = self.rt.shutdown(deadline).await;
        if report.drained {
            tracing::info!("data plane drained");
        } else {
            tracing::warn!(
                aborted = report.aborted,
                "data plane: connections still open at the deadline were closed"
            );
        }
    }
}

/// The data plane section of `halb status`.
pub fn render(status: &dataplane::Status, out: &mut String) {
    if status.frontends.is_empty() && status.backends.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nFrontends:");
    for f in &status.frontends {
        let addr = f.local_addr.unwrap_or(f.bind);
        let _ = writeln!(
            out,
            "  {:<12} {:<5} {:<22} -> {:<12} conns {} active / {} total, requests {}, 2xx {} 4xx {} 5xx {}",
            f.name,
            format!("{:?}", f.mode).to_lowercase(),
            addr,
            f.backend,
            f.active_connections,
            f.total_connections,
            f.requests,
            f.responses.c2xx,
            f.responses.c4xx,
            f.responses.c5xx,
        );
    }
    if let Some(l) = &status.loops {
        let per: Vec<String> = l.connections.iter().map(usize::to_string).collect();
        let _ = writeln!(
            out,
            "  event loops: {} of {} taking connections (worker_scaling {}), connections per loop {}, moved {}",
            l.active,
            l.connections.len(),
            l.scaling.as_str(),
            per.join("/"),
            l.moves,
        );
    }
    let _ = writeln!(out, "\nBackends:");
    for b in &status.backends {
        let _ = writeln!(
            out,
            "  {} ({:?}, {} of {} servers up, queue {})",
            b.name,
            b.algorithm,
            b.servers_up,
            b.servers.len(),
            b.queue_length
        );
        for s in &b.servers {
            let check = match &s.last_check {
                None => "no check yet".to_string(),
                Some(c) if c.ok => format!("check ok {} us", c.latency_us),
                Some(c) => format!("check FAILED: {}", c.detail.as_deref().unwrap_or("failed")),
            };
            let _ = writeln!(
                out,
                "    {:<10} {:<22} {:<5} weight {}/{} active {} total {} errors {}  {}{}",
                s.name,
                s.address,
                s.state.as_str(),
                s.effective_weight,
                s.weight,
                s.active_connections,
                s.total_requests,
                s.errors,
                check,
                if s.backup { "  (backup)" } else { "" }
            );
        }
    }
}
