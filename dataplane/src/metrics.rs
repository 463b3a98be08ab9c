//! Metric handles, registered once per frontend, backend and server through
//! the `metrics` facade. Install the recorder (e.g. the Prometheus exporter)
//! **before** creating the [`crate::Runtime`]: handles taken earlier are no-ops.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `halb_frontend_connections_total` | counter | frontend |
//! | `halb_frontend_active_connections` | gauge | frontend |
//! | `halb_frontend_requests_total` | counter | frontend |
//! | `halb_frontend_responses_total` | counter | frontend, class (1xx..5xx) |
//! | `halb_frontend_bytes_in_total` / `_out_total` | counter | frontend |
//! | `halb_frontend_request_duration_seconds` | histogram | frontend |
//! | `halb_backend_queue_length` | gauge | backend |
//! | `halb_backend_no_server_total` | counter | backend |
//! | `halb_backend_retries_total` | counter | backend |
//! | `halb_server_requests_total` | counter | backend, server |
//! | `halb_server_responses_total` | counter | backend, server, class |
//! | `halb_server_active_connections` | gauge | backend, server |
//! | `halb_server_bytes_in_total` / `_out_total` | counter | backend, server |
//! | `halb_server_errors_total` | counter | backend, server |
//! | `halb_server_state` | gauge (0 DOWN, 1 UP, 2 DRAIN, 3 MAINT) | backend, server |
//! | `halb_server_check_duration_seconds` | histogram | backend, server |
//! | `halb_server_transitions_total` | counter | backend, server, to |
//! | `halb_event_loops` | gauge | |
//! | `halb_event_loops_active` | gauge (loops taking connections) | |
//! | `halb_event_loop_changes_total` | counter | reason (saturated, contended, light) |
//! | `halb_event_loop_moves_total` | counter (connections moved between loops) | |
//!
//! "in" is from clients towards servers, "out" is from servers towards clients.

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Index into [`CLASSES`] for an HTTP status (clamped).
pub(crate) fn class_index(status: u16) -> usize {
    usize::from(status / 100).clamp(1, 5) - 1
}

/// Handles of one frontend.
#[derive(Debug, Clone)]
pub(crate) struct FrontendMetrics {
    pub connections: Counter,
    pub active: Gauge,
    pub requests: Counter,
    pub responses: [Counter; 5],
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub duration: Histogram,
}

impl FrontendMetrics {
    pub fn new(frontend: &str) -> Self {
        let f = frontend.to_string();
        FrontendMetrics {
            connections: counter!("halb_frontend_connections_total", "frontend" => f.clone()),
            active: gauge!("halb_frontend_active_connections", "frontend" => f.clone()),
            requests: counter!("halb_frontend_requests_total", "frontend" => f.clone()),
            responses: CLASSES.map(|c| {
                counter!("halb_frontend_responses_total", "frontend" => f.clone(), "class" => c)
            }),
            bytes_in: counter!("halb_frontend_bytes_in_total", "frontend" => f.clone()),
            bytes_out: counter!("halb_frontend_bytes_out_total", "frontend" => f.clone()),
            duration: histogram!("halb_frontend_request_duration_seconds", "frontend" => f),
        }
    }
}

/// Handles of one backend.
#[derive(Debug, Clone)]
pub(crate) struct BackendMetrics {
    pub queue: Gauge,
    pub no_server: Counter,
    pub retries: Counter,
}

impl BackendMetrics {
    pub fn new(backend: &str) -> Self {
        let b = backend.to_string();
        BackendMetrics {
            queue: gauge!("halb_backend_queue_length", "backend" => b.clone()),
            no_server: counter!("halb_backend_no_server_total", "backend" => b.clone()),
            retries: counter!("halb_backend_retries_total", "backend" => b),
        }
    }
}

/// Handles of one server.
#[derive(Debug, Clone)]
pub(crate) struct ServerMetrics {
    backend: String,
    server: String,
    pub requests: Counter,
    pub responses: [Counter; 5],
    pub active: Gauge,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub errors: Counter,
    pub state: Gauge,
    pub check_duration: Histogram,
}

impl ServerMetrics {
    pub fn new(backend: &str, server: &str) -> Self {
        let (b, s) = (backend.to_string(), server.to_string());
        let l = || [("backend", b.clone()), ("server", s.clone())];
        ServerMetrics {
            requests: counter!("halb_server_requests_total", &l()),
            responses: CLASSES.map(|c| {
                counter!("halb_server_responses_total", "backend" => b.clone(), "server" => s.clone(), "class" => c)
            }),
            active: gauge!("halb_server_active_connections", &l()),
            bytes_in: counter!("halb_server_bytes_in_total", &l()),
            bytes_out: counter!("halb_server_bytes_out_total", &l()),
            errors: counter!("halb_server_errors_total", &l()),
            state: gauge!("halb_server_state", &l()),
            check_duration: histogram!("halb_server_check_duration_seconds", &l()),
            backend: b,
            server: s,
        }
    }

    /// Count a transition to `to` (looked up at transition time: rare).
    pub fn transition(&self, to: &'static str) {
        counter!("halb_server_transitions_total", "backend" => self.backend.clone(), "server" => self.server.clone(), "to" => to)
            .increment(1);
    }
}
