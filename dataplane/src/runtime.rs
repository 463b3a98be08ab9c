//! The data-plane runtime: one immutable [`Snapshot`] of frontends and
//! backends behind an `ArcSwap`, replaced whole on reload. Runtime state that
//! must outlive a reload (health, counters, the drain timer, admin state)
//! lives in `Arc`'d per-server, per-backend and per-frontend structs that the
//! next snapshot takes over when the object is unchanged.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use control::config::{
    BackendConfig, Config, Forwarding, FrontendConfig, FrontendMode, HashKey, HealthConfig,
    HealthKind, ServerConfig, Transport,
};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::balance::{Algorithm, Balancer, Member, ServerView};
use crate::error::{Error, ProxyError, ProxyErrorKind};
use crate::health::{
    AdminState, Health, HealthParams, OutlierParams, PassiveEvent, ServerState, Transition,
};
use crate::loops::EventLoops;
use crate::metrics::{BackendMetrics, FrontendMetrics, ServerMetrics};
use crate::shutdown::Shutdown;

/// Lock a mutex, recovering from poisoning (a panicked holder cannot leave
/// these small state structs half-updated in a way that matters more than
/// stopping the data plane would).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Operator action on one server (`halb server drain|enable|disable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAction {
    /// No new traffic; in-flight traffic finishes (up to `drain_timeout`).
    Drain,
    /// Back to normal: the checks decide.
    Enable,
    /// Maintenance: no new traffic; in-flight traffic drains as for DRAIN.
    Disable,
}

/// Result of the last active check of a server.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckReport {
    /// Whether it passed.
    pub ok: bool,
    /// Why it failed.
    pub detail: Option<String>,
    /// How long it took, in microseconds.
    pub latency_us: u64,
}

// ---------------------------------------------------------------------------
// Per-server shared state

#[derive(Debug)]
struct DrainCtl {
    token: CancellationToken,
    generation: u64,
}

/// Per-server state that survives reloads while the server keeps its name and
/// address.
#[derive(Debug)]
pub(crate) struct ServerShared {
    pub backend: String,
    pub name: String,
    pub address: SocketAddr,
    health: Mutex<Health>,
    state: AtomicU8,
    /// Active TCP connections / UDP flows / outstanding HTTP requests.
    pub active: AtomicU64,
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    last_check: Mutex<Option<CheckReport>>,
    drain: Mutex<DrainCtl>,
    drain_timeout: Mutex<Duration>,
    /// Pokes the health driver (a new timer after a passive ejection).
    pub wake: Notify,
    /// Whether passive outlier detection is configured for this server's
    /// backend: without it a passive event changes nothing, and the hot
    /// path skips the health lock.
    outlier_on: AtomicBool,
    /// A failure was observed since the last success (so a success has a
    /// streak to reset). Lets a success skip the lock in the common case.
    streak: AtomicBool,
    pub metrics: ServerMetrics,
    rt: tokio::runtime::Handle,
}

fn state_code(s: ServerState) -> u8 {
    match s {
        ServerState::Up => 0,
        ServerState::Down => 1,
        ServerState::Drain => 2,
        ServerState::Maint => 3,
    }
}

fn state_from_code(c: u8) -> ServerState {
    match c {
        0 => ServerState::Up,
        2 => ServerState::Drain,
        3 => ServerState::Maint,
        _ => ServerState::Down,
    }
}

fn health_params(b: &BackendConfig) -> HealthParams {
    HealthParams {
        rise: b.health.rise,
        fall: b.health.fall,
        slow_start: b.slow_start,
        outlier: (b.outlier.consecutive_failures > 0).then(|| OutlierParams {
            consecutive_failures: b.outlier.consecutive_failures,
            base_ejection: b.outlier.ejection_time,
            // Backoff doubles up to 8 times the configured ejection time.
            max_ejection: b.outlier.ejection_time.saturating_mul(8),
        }),
    }
}

impl ServerShared {
    fn new(b: &BackendConfig, s: &ServerConfig, rt: tokio::runtime::Handle) -> Self {
        let metrics = ServerMetrics::new(&b.name, &s.name);
        metrics.state.set(ServerState::Up.gauge());
        ServerShared {
            backend: b.name.clone(),
            name: s.name.clone(),
            address: s.address,
            health: Mutex::new(Health::new(health_params(b))),
            state: AtomicU8::new(state_code(ServerState::Up)),
            active: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            last_check: Mutex::new(None),
            drain: Mutex::new(DrainCtl {
                token: CancellationToken::new(),
                generation: 0,
            }),
            drain_timeout: Mutex::new(b.drain_timeout),
            wake: Notify::new(),
            outlier_on: AtomicBool::new(b.outlier.consecutive_failures > 0),
            streak: AtomicBool::new(false),
            metrics,
            rt,
        }
    }

    fn update_params(&self, b: &BackendConfig) {
        self.outlier_on
            .store(b.outlier.consecutive_failures > 0, Ordering::Relaxed);
        lock(&self.health).set_params(health_params(b));
        *lock(&self.drain_timeout) = b.drain_timeout;
    }

    /// Current effective state.
    pub fn state(&self) -> ServerState {
        state_from_code(self.state.load(Ordering::Relaxed))
    }

    /// Weight in use now; reads the clock (through `now`) only while a
    /// slow start can be ramping.
    fn effective_weight(
        &self,
        now: impl FnOnce() -> Instant,
        weight: u32,
        slow_start: Duration,
    ) -> u32 {
        if slow_start.is_zero() {
            return if self.state() == ServerState::Up {
                weight
            } else {
                0
            };
        }
        lock(&self.health).effective_weight(now(), weight)
    }

    /// Token cancelled when this server's drain deadline passes.
    pub fn drain_token(&self) -> CancellationToken {
        lock(&self.drain).token.clone()
    }

    /// Log, count and publish a transition; arm or disarm the drain deadline.
    pub fn apply_transition(self: &Arc<Self>, tr: Transition) {
        tracing::info!(
            backend = %self.backend,
            server = %self.name,
            from = %tr.from,
            to = %tr.to,
            reason = %tr.reason,
            "server state change"
        );
        self.metrics.transition(tr.to.as_str());
        self.metrics.state.set(tr.to.gauge());
        self.state.store(state_code(tr.to), Ordering::Relaxed);
        if tr.to == ServerState::Up {
            // Back up before the deadline: in-flight traffic may stay.
            lock(&self.drain).generation += 1;
        } else if tr.from == ServerState::Up {
            self.schedule_drain();
        }
    }

    /// Close this server's in-flight traffic after `drain_timeout`, unless it
    /// comes back up first.
    fn schedule_drain(self: &Arc<Self>) {
        let generation = {
            let mut d = lock(&self.drain);
            d.generation += 1;
            d.generation
        };
        let timeout = *lock(&self.drain_timeout);
        let me = Arc::clone(self);
        self.rt.spawn(async move {
            tokio::time::sleep(timeout).await;
            let mut d = lock(&me.drain);
            if d.generation == generation {
                tracing::info!(backend = %me.backend, server = %me.name, "drain timeout: closing in-flight traffic");
                d.token.cancel();
                d.token = CancellationToken::new();
            }
        });
    }

    /// A passive observation from traffic.
    pub fn passive(self: &Arc<Self>, event: PassiveEvent) {
        // Fast path, taken by nearly every request: a success changes
        // nothing unless outlier detection is on and a failure streak is
        // running; no event changes anything when detection is off.
        if !self.outlier_on.load(Ordering::Relaxed) {
            return;
        }
        if event == PassiveEvent::Success {
            if !self.streak.load(Ordering::Relaxed) {
                return;
            }
            self.streak.store(false, Ordering::Relaxed);
        } else {
            self.streak.store(true, Ordering::Relaxed);
        }
        let tr = lock(&self.health).on_passive(Instant::now(), event);
        if let Some(tr) = tr {
            self.apply_transition(tr);
            self.wake.notify_one();
        }
    }

    /// Count a failure against this server and feed outlier detection.
    pub fn record_error(self: &Arc<Self>, err: &ProxyError) {
        if !err.is_server_fault() {
            return;
        }
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.metrics.errors.increment(1);
        tracing::debug!(backend = %self.backend, server = %self.name, error = %err, "server error");
        if err.is_connect_failure() {
            self.passive(PassiveEvent::ConnectFailure);
        } else {
            self.passive(PassiveEvent::ServerError);
        }
    }

    pub(crate) fn set_admin(self: &Arc<Self>, admin: AdminState) -> ServerState {
        let tr = lock(&self.health).set_admin(Instant::now(), admin);
        if let Some(tr) = tr {
            self.apply_transition(tr);
        }
        self.state()
    }

    pub(crate) fn on_check(
        self: &Arc<Self>,
        report: CheckReport,
        result: Result<(), crate::health::CheckFailure>,
    ) {
        *lock(&self.last_check) = Some(report);
        let tr = lock(&self.health).on_check(Instant::now(), result);
        if let Some(tr) = tr {
            self.apply_transition(tr);
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        lock(&self.health).poll_timeout()
    }

    pub(crate) fn on_timeout(self: &Arc<Self>) {
        let tr = lock(&self.health).on_timeout(Instant::now());
        if let Some(tr) = tr {
            self.apply_transition(tr);
        }
    }

    fn try_reserve(&self, max: Option<u32>) -> bool {
        match max {
            None => {
                self.active.fetch_add(1, Ordering::AcqRel);
                true
            }
            Some(m) => self
                .active
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |a| {
                    (a < u64::from(m)).then_some(a + 1)
                })
                .is_ok(),
        }
    }
}

// ---------------------------------------------------------------------------
// Backends

/// Per-backend state that survives reloads (by name).
#[derive(Debug)]
pub(crate) struct BackendShared {
    queue_len: AtomicU64,
    wake: Notify,
    pub metrics: BackendMetrics,
}

#[derive(Debug)]
pub(crate) struct ServerRt {
    pub cfg: ServerConfig,
    pub shared: Arc<ServerShared>,
}

/// One backend in a snapshot.
#[derive(Debug)]
pub(crate) struct BackendRt {
    pub cfg: BackendConfig,
    pub servers: Vec<ServerRt>,
    balancer: Balancer,
    pub shared: Arc<BackendShared>,
}

/// A reserved slot on a server: released (and queue waiters woken) on drop.
#[derive(Debug)]
pub(crate) struct Lease {
    pub server: Arc<ServerShared>,
    backend: Arc<BackendShared>,
    limited: bool,
    /// Cancelled when the server's drain deadline passes.
    pub drain: CancellationToken,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.server.active.fetch_sub(1, Ordering::AcqRel);
        self.server.metrics.active.decrement(1.0);
        if self.limited {
            self.backend.wake.notify_waiters();
        }
    }
}

struct View<'a> {
    b: &'a BackendRt,
    /// Read at most once per pick, and only for slow start.
    now: std::cell::OnceCell<Instant>,
    primary_up: bool,
}

impl View<'_> {
    fn eligible(&self, i: usize) -> bool {
        let s = &self.b.servers[i];
        s.shared.state() == ServerState::Up
            && s.cfg.weight > 0
            && (!s.cfg.backup || !self.primary_up)
    }
}

impl ServerView for View<'_> {
    fn len(&self) -> usize {
        self.b.servers.len()
    }
    fn available(&self, i: usize) -> bool {
        if !self.eligible(i) {
            return false;
        }
        let s = &self.b.servers[i];
        s.cfg
            .max_connections
            .is_none_or(|m| s.shared.active.load(Ordering::Acquire) < u64::from(m))
    }
    fn weight(&self, i: usize) -> u32 {
        let s = &self.b.servers[i];
        s.shared.effective_weight(
            || *self.now.get_or_init(Instant::now),
            u32::from(s.cfg.weight),
            self.b.cfg.slow_start,
        )
    }
    fn load(&self, i: usize) -> u64 {
        self.b.servers[i].shared.active.load(Ordering::Relaxed)
    }
}

enum PickFail {
    NoServer,
    Full,
}

struct QueueSlot<'a>(&'a BackendShared);

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.queue_len.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.queue.decrement(1.0);
    }
}

impl BackendRt {
    fn try_acquire(&self, key: Option<u64>, exclude: &[usize]) -> Result<(usize, Lease), PickFail> {
        let primary_up = self
            .servers
            .iter()
            .any(|s| !s.cfg.backup && s.cfg.weight > 0 && s.shared.state() == ServerState::Up);
        let view = View {
            b: self,
            now: std::cell::OnceCell::new(),
            primary_up,
        };
        if !(0..self.servers.len()).any(|i| view.eligible(i) && !exclude.contains(&i)) {
            return Err(PickFail::NoServer);
        }
        let mut skip: Vec<usize> = exclude.to_vec();
        let mut rng = rand::rng();
        for _ in 0..=self.servers.len() {
            let Some(i) = self.balancer.pick(&view, key, &skip, &mut rng) else {
                return Err(PickFail::Full);
            };
            let s = &self.servers[i];
            if s.shared.try_reserve(s.cfg.max_connections) {
                s.shared.metrics.active.increment(1.0);
                return Ok((
                    i,
                    Lease {
                        server: Arc::clone(&s.shared),
                        backend: Arc::clone(&self.shared),
                        limited: s.cfg.max_connections.is_some(),
                        drain: s.shared.drain_token(),
                    },
                ));
            }
            // Lost a race for the last slot: try another server.
            skip.push(i);
        }
        Err(PickFail::Full)
    }

    /// Reserve a server for a new connection or request, waiting in the
    /// backend's bounded queue when every server is full. `exclude` lists
    /// server indices already tried.
    pub async fn acquire(
        &self,
        key: Option<u64>,
        exclude: &[usize],
    ) -> Result<(usize, Lease), ProxyError> {
        // Fast path: a server is free; no waiter is registered.
        match self.try_acquire(key, exclude) {
            Ok(x) => return Ok(x),
            Err(PickFail::NoServer) => {
                self.shared.metrics.no_server.increment(1);
                return Err(ProxyError::new(ProxyErrorKind::NoServer));
            }
            Err(PickFail::Full) => {}
        }
        let mut slot: Option<QueueSlot<'_>> = None;
        let mut deadline: Option<Instant> = None;
        loop {
            // Registered before the retry, so a release between the retry
            // and the wait is not missed.
            let notified = self.shared.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.try_acquire(key, exclude) {
                Ok(x) => return Ok(x),
                Err(PickFail::NoServer) => {
                    self.shared.metrics.no_server.increment(1);
                    return Err(ProxyError::new(ProxyErrorKind::NoServer));
                }
                Err(PickFail::Full) => {
                    if slot.is_none() {
                        let max = u64::from(self.cfg.queue.max);
                        let queued = self.shared.queue_len.fetch_add(1, Ordering::AcqRel);
                        self.shared.metrics.queue.increment(1.0);
                        let s = QueueSlot(&self.shared);
                        if queued >= max {
                            return Err(ProxyError::new(ProxyErrorKind::QueueFull));
                        }
                        slot = Some(s);
                        deadline = Some(Instant::now() + self.cfg.queue.timeout);
                    }
                    let until = deadline.unwrap_or_else(Instant::now);
                    if tokio::time::timeout_at(until, notified).await.is_err() {
                        return Err(ProxyError::new(ProxyErrorKind::QueueTimeout));
                    }
                }
            }
        }
    }

    /// Index of the server named `name`.
    pub fn server_index(&self, name: &str) -> Option<usize> {
        self.servers.iter().position(|s| s.cfg.name == name)
    }
}

// ---------------------------------------------------------------------------
// Frontends

/// Per-frontend counters that survive reloads (by name).
#[derive(Debug)]
pub(crate) struct FrontendShared {
    pub active: AtomicU64,
    pub connections: AtomicU64,
    pub requests: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub responses: [AtomicU64; 5],
    pub metrics: FrontendMetrics,
}

impl FrontendShared {
    pub fn new(frontend: &str) -> Self {
        FrontendShared {
            active: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            responses: Default::default(),
            metrics: FrontendMetrics::new(frontend),
        }
    }

    pub fn count_response(&self, status: u16) {
        let i = crate::metrics::class_index(status);
        self.responses[i].fetch_add(1, Ordering::Relaxed);
        self.metrics.responses[i].increment(1);
    }
}

/// One frontend in a snapshot.
#[derive(Debug)]
pub(crate) struct FrontendRt {
    pub cfg: FrontendConfig,
    pub shared: Arc<FrontendShared>,
    pub limit: Option<Arc<Semaphore>>,
    pub client: Option<crate::http::UpstreamClient>,
}

/// Everything the data plane serves, replaced whole on reload.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub frontends: HashMap<String, Arc<FrontendRt>>,
    pub backends: HashMap<String, Arc<BackendRt>>,
    frontend_order: Vec<String>,
    backend_order: Vec<String>,
}

// ---------------------------------------------------------------------------
// Reload diff

/// One change made by [`Runtime::apply`] (sozu-style).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Change {
    /// A listener stays open, untouched.
    ListenerKept {
        /// Frontend.
        frontend: String,
        /// Bound address.
        bind: SocketAddr,
    },
    /// A new listener was opened.
    ListenerOpened {
        /// Frontend.
        frontend: String,
        /// Bound address.
        bind: SocketAddr,
    },
    /// A listener was closed (its connections drain).
    ListenerClosed {
        /// Frontend.
        frontend: String,
        /// Bound address.
        bind: SocketAddr,
    },
    /// A frontend is left to the XDP data plane (`forwarding` not `proxy`).
    FrontendSkipped {
        /// Frontend.
        frontend: String,
    },
    /// A backend appeared.
    BackendAdded {
        /// Backend.
        backend: String,
    },
    /// A backend disappeared.
    BackendRemoved {
        /// Backend.
        backend: String,
    },
    /// A server appeared (fresh state).
    ServerAdded {
        /// Backend.
        backend: String,
        /// Server.
        server: String,
    },
    /// A server disappeared (its traffic drains).
    ServerRemoved {
        /// Backend.
        backend: String,
        /// Server.
        server: String,
    },
    /// A server kept its name but changed address: state reset.
    ServerReset {
        /// Backend.
        backend: String,
        /// Server.
        server: String,
    },
    /// A server's settings changed (weight, limits): state kept.
    ServerUpdated {
        /// Backend.
        backend: String,
        /// Server.
        server: String,
    },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::ListenerKept { frontend, bind } => write!(f, "listener {frontend} {bind} kept"),
            Change::ListenerOpened { frontend, bind } => {
                write!(f, "listener {frontend} {bind} opened")
            }
            Change::ListenerClosed { frontend, bind } => {
                write!(f, "listener {frontend} {bind} closed")
            }
            Change::FrontendSkipped { frontend } => write!(f, "frontend {frontend} left to XDP"),
            Change::BackendAdded { backend } => write!(f, "backend {backend} added"),
            Change::BackendRemoved { backend } => write!(f, "backend {backend} removed"),
            Change::ServerAdded { backend, server } => write!(f, "server {backend}/{server} added"),
            Change::ServerRemoved { backend, server } => {
                write!(f, "server {backend}/{server} removed")
            }
            Change::ServerReset { backend, server } => {
                write!(f, "server {backend}/{server} reset (address changed)")
            }
            Change::ServerUpdated { backend, server } => {
                write!(f, "server {backend}/{server} updated")
            }
        }
    }
}

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReloadDiff {
    /// Every change, in order: listeners, backends, servers.
    pub changes: Vec<Change>,
}

// ---------------------------------------------------------------------------
// Status

/// Responses by status class.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClassCounts {
    /// 1xx.
    pub c1xx: u64,
    /// 2xx.
    pub c2xx: u64,
    /// 3xx.
    pub c3xx: u64,
    /// 4xx.
    pub c4xx: u64,
    /// 5xx.
    pub c5xx: u64,
}

/// One frontend in [`Status`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FrontendStatus {
    /// Name.
    pub name: String,
    /// Configured bind address.
    pub bind: SocketAddr,
    /// Actually bound address (differs with port 0).
    pub local_addr: Option<SocketAddr>,
    /// Mode.
    pub mode: FrontendMode,
    /// Backend name.
    pub backend: String,
    /// Open client connections (TCP/HTTP) or flows (UDP).
    pub active_connections: u64,
    /// Accepted connections / flows.
    pub total_connections: u64,
    /// HTTP requests.
    pub requests: u64,
    /// Bytes from clients.
    pub bytes_in: u64,
    /// Bytes to clients.
    pub bytes_out: u64,
    /// HTTP responses by class.
    pub responses: ClassCounts,
}

/// One server in [`Status`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ServerStatus {
    /// Name.
    pub name: String,
    /// Address.
    pub address: SocketAddr,
    /// Effective state.
    pub state: ServerState,
    /// Admin state.
    pub admin: AdminState,
    /// Whether active checks say up.
    pub check_up: bool,
    /// Configured weight.
    pub weight: u16,
    /// Weight in use now (slow start; 0 when not up).
    pub effective_weight: u32,
    /// Backup server.
    pub backup: bool,
    /// Active connections / outstanding requests.
    pub active_connections: u64,
    /// Connections or requests sent.
    pub total_requests: u64,
    /// Failures counted against the server.
    pub errors: u64,
    /// Bytes sent to the server.
    pub bytes_in: u64,
    /// Bytes received from the server.
    pub bytes_out: u64,
    /// Last active check, if any ran.
    pub last_check: Option<CheckReport>,
    /// Remaining passive ejection, in milliseconds.
    pub ejected_for_ms: Option<u64>,
}

/// One backend in [`Status`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BackendStatus {
    /// Name.
    pub name: String,
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Servers UP.
    pub servers_up: usize,
    /// Requests waiting in the queue.
    pub queue_length: u64,
    /// Servers, in configuration order.
    pub servers: Vec<ServerStatus>,
}

/// `halb status` view of the data plane.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Status {
    /// Frontends served in user space, in configuration order.
    pub frontends: Vec<FrontendStatus>,
    /// Backends, in configuration order.
    pub backends: Vec<BackendStatus>,
    /// The event loops serving client connections, if any (else they run
    /// on the caller's runtime).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loops: Option<LoopsStatus>,
}

/// `halb status` view of the event loops ([`crate::loops`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoopsStatus {
    /// `node.worker_scaling` as applied (`all` also when the kernel gives
    /// no scheduler figures).
    pub scaling: control::config::WorkerScaling,
    /// Loops taking connections.
    pub active: usize,
    /// Connection tasks on each loop (idle parked connections are on none).
    pub connections: Vec<usize>,
    /// Connections moved between loops so far.
    pub moves: u64,
}

/// What [`Runtime::shutdown`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ShutdownReport {
    /// Whether every connection finished before the deadline.
    pub drained: bool,
    /// Connections still open at the deadline and closed.
    pub aborted: usize,
}

// ---------------------------------------------------------------------------
// Runtime

/// A listening socket, for handing over to a new process (SCM_RIGHTS).
#[derive(Debug)]
pub struct ListenerFd {
    /// Frontend name.
    pub frontend: String,
    /// Configured bind address.
    pub bind: SocketAddr,
    /// TCP or UDP.
    pub transport: Transport,
    /// A duplicate of the listening socket.
    pub fd: OwnedFd,
}

#[derive(Debug)]
struct ListenerEntry {
    bind: SocketAddr,
    transport: Transport,
    local: SocketAddr,
    /// A duplicate of the listening socket, until its accept loop ends.
    fd: ListenerSlot,
    stop: Shutdown,
}

/// A duplicate of a listener's socket, dropped when its accept loop ends:
/// a listener removed by one reload and wanted again by the next, before
/// its loop has let go of the socket (the cluster gates frontends off and
/// on again within milliseconds), takes the same socket back instead of
/// failing to bind an address still in use.
type ListenerSlot = Arc<Mutex<Option<OwnedFd>>>;

#[derive(Debug)]
struct CheckerEntry {
    shared: Arc<ServerShared>,
    health: HealthConfig,
    token: CancellationToken,
}

#[derive(Debug, Default)]
struct Control {
    listeners: HashMap<String, ListenerEntry>,
    checkers: HashMap<(String, String), CheckerEntry>,
    inherited: Vec<ListenerFd>,
    /// Removed listeners whose accept loop may still hold their socket.
    closing: Vec<ListenerEntry>,
    shutting_down: bool,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub snapshot: ArcSwap<Snapshot>,
    control: Mutex<Control>,
    pub shutdown: Shutdown,
    pub tracker: TaskTracker,
    pub rt: tokio::runtime::Handle,
    /// Event loops for client connections; `None`: they run on `rt`.
    pub loops: Option<Arc<EventLoops>>,
}

/// The user-space data plane. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<Inner>,
}

/// A bound listener of one frontend, for [`serve`].
#[derive(Debug)]
pub enum Listener {
    /// TCP (modes `tcp` and `http`).
    Tcp(tokio::net::TcpListener),
    /// UDP (mode `udp`).
    Udp(tokio::net::UdpSocket),
}

/// Handle of one frontend of a [`Runtime`]: what a `serve` loop needs.
#[derive(Debug, Clone)]
pub struct FrontendHandle {
    pub(crate) inner: Arc<Inner>,
    pub(crate) name: Arc<str>,
}

impl FrontendHandle {
    /// The frontend's current config and backend, if both still exist.
    pub(crate) fn current(&self) -> Option<(Arc<FrontendRt>, Arc<BackendRt>)> {
        let snap = self.inner.snapshot.load();
        let fe = snap.frontends.get(&*self.name)?;
        let be = snap.backends.get(&fe.cfg.backend)?;
        Some((Arc::clone(fe), Arc::clone(be)))
    }

    /// Frontend name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Run a client connection's task on the least loaded active event
    /// loop (on the runtime's own threads without loops): `stream` is
    /// registered with the reactor of the thread that runs the task, then
    /// handed to `serve`.
    pub(crate) fn spawn_conn<F, Fut>(
        &self,
        stream: std::net::TcpStream,
        client: SocketAddr,
        serve: F,
    ) where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let task = self.conn_task(stream, client, serve);
        match &self.inner.loops {
            Some(l) => l.spawn(task),
            None => {
                self.inner.rt.spawn(task);
            }
        }
    }

    /// Like [`FrontendHandle::spawn_conn`], on event loop `to`: a
    /// connection moved there from another loop.
    pub(crate) fn move_conn<F, Fut>(
        &self,
        to: usize,
        stream: std::net::TcpStream,
        client: SocketAddr,
        serve: F,
    ) where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let task = self.conn_task(stream, client, serve);
        match &self.inner.loops {
            Some(l) => l.spawn_moved(to, task),
            None => {
                self.inner.rt.spawn(task);
            }
        }
    }

    /// A connection's task, tracked for a graceful stop. Not an `async`
    /// block around `serve`'s future: that would keep what `serve` takes
    /// twice in every task (once captured, once in the future). Here the
    /// future replaces the closure in place.
    fn conn_task<F, Fut>(
        &self,
        stream: std::net::TcpStream,
        client: SocketAddr,
        serve: F,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        use futures_util::future::{lazy, Either, FutureExt as _};
        let frontend = Arc::clone(&self.name);
        let task = lazy(move |_| match TcpStream::from_std(stream) {
            Ok(s) => Either::Left(serve(s)),
            Err(e) => {
                tracing::warn!(%frontend, %client, error = %e, "cannot register a connection");
                Either::Right(std::future::ready(()))
            }
        })
        .flatten();
        self.inner.tracker.track_future(task)
    }
}

impl Inner {
    /// How many shares the server connection pools have: one per event
    /// loop, and one for tasks on no loop.
    fn pool_shares(&self) -> usize {
        self.loops.as_ref().map_or(0, |l| l.len()) + 1
    }
}

/// Serve one frontend on an already-bound listener until `shutdown`. The
/// frontend's mode decides the protocol; a TCP listener of an `http`
/// frontend serves HTTP.
pub async fn serve(listener: Listener, frontend: FrontendHandle, shutdown: Shutdown) {
    let mode = frontend.current().map(|(fe, _)| fe.cfg.mode);
    match (listener, mode) {
        (Listener::Tcp(l), Some(FrontendMode::Http)) => {
            crate::http::serve(l, frontend, shutdown).await
        }
        (Listener::Tcp(l), Some(FrontendMode::Tcp)) => {
            crate::tcp::serve(l, frontend, shutdown).await
        }
        (Listener::Udp(s), Some(FrontendMode::Udp)) => {
            crate::udp::serve(s, frontend, shutdown).await
        }
        (_, mode) => {
            tracing::warn!(frontend = %frontend.name, ?mode, "listener does not match the frontend's mode; not serving");
        }
    }
}

/// Lets a frontend bind a virtual IP this node does not hold yet (a VRRP
/// backup): the listener is ready the moment the VIP arrives, like
/// `ip_nonlocal_bind`, but for halb's sockets only.
fn set_freebind(s: &socket2::Socket, bind: SocketAddr) -> std::io::Result<()> {
    match bind {
        SocketAddr::V4(_) => s.set_freebind_v4(true),
        SocketAddr::V6(_) => s.set_freebind_v6(true),
    }
}

fn bind_socket(fe: &FrontendConfig) -> std::io::Result<(Listener, OwnedFd, SocketAddr)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = Domain::for_address(fe.bind);
    match fe.mode.transport() {
        Transport::Tcp => {
            let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
            s.set_reuse_address(true)?;
            set_freebind(&s, fe.bind)?;
            s.set_nonblocking(true)?;
            s.bind(&fe.bind.into())?;
            s.listen(1024)?;
            let std: std::net::TcpListener = s.into();
            let fd = std.as_fd().try_clone_to_owned()?;
            let l = tokio::net::TcpListener::from_std(std)?;
            let local = l.local_addr()?;
            Ok((Listener::Tcp(l), fd, local))
        }
        Transport::Udp => {
            let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
            s.set_reuse_address(true)?;
            set_freebind(&s, fe.bind)?;
            s.set_nonblocking(true)?;
            s.bind(&fe.bind.into())?;
            let std: std::net::UdpSocket = s.into();
            let fd = std.as_fd().try_clone_to_owned()?;
            let u = tokio::net::UdpSocket::from_std(std)?;
            let local = u.local_addr()?;
            Ok((Listener::Udp(u), fd, local))
        }
    }
}

fn adopt_socket(
    fd: OwnedFd,
    transport: Transport,
) -> std::io::Result<(Listener, OwnedFd, SocketAddr)> {
    let dup = fd.try_clone()?;
    match transport {
        Transport::Tcp => {
            let std = std::net::TcpListener::from(fd);
            std.set_nonblocking(true)?;
            let l = tokio::net::TcpListener::from_std(std)?;
            let local = l.local_addr()?;
            Ok((Listener::Tcp(l), dup, local))
        }
        Transport::Udp => {
            let std = std::net::UdpSocket::from(fd);
            std.set_nonblocking(true)?;
            let u = tokio::net::UdpSocket::from_std(std)?;
            let local = u.local_addr()?;
            Ok((Listener::Udp(u), dup, local))
        }
    }
}

fn algorithm(a: control::config::Algorithm) -> Algorithm {
    use control::config::Algorithm as C;
    match a {
        C::RoundRobin => Algorithm::RoundRobin,
        C::WeightedRoundRobin => Algorithm::WeightedRoundRobin,
        C::LeastConnections => Algorithm::LeastConnections,
        C::P2c => Algorithm::P2c,
        C::Maglev => Algorithm::Maglev,
        C::Random => Algorithm::Random,
    }
}

/// Flow hash for an L4 connection under the backend's `hash_key` (header and
/// cookie keys fall back to the source address here).
pub(crate) fn l4_key(b: &BackendConfig, client: SocketAddr) -> Option<u64> {
    if b.algorithm != control::config::Algorithm::Maglev {
        return None;
    }
    Some(match b.hash_key {
        HashKey::SourceIpPort => crate::maglev::hash_flow(client.ip(), Some(client.port())),
        _ => crate::maglev::hash_flow(client.ip(), None),
    })
}

impl Runtime {
    /// A runtime with nothing configured. Must be called inside a tokio
    /// runtime (its handle is kept for the tasks the data plane spawns).
    /// Install the metrics recorder before this.
    pub fn new() -> Result<Runtime, Error> {
        Self::build(None)
    }

    /// Like [`Runtime::new`], with client connections served on `loops`
    /// instead of on the calling runtime, which keeps the accept loops and
    /// health checks.
    pub fn with_loops(loops: Arc<EventLoops>) -> Result<Runtime, Error> {
        Self::build(Some(loops))
    }

    fn build(loops: Option<Arc<EventLoops>>) -> Result<Runtime, Error> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| Error::NoTokioRuntime)?;
        Ok(Runtime {
            inner: Arc::new(Inner {
                snapshot: ArcSwap::from_pointee(Snapshot::default()),
                control: Mutex::new(Control::default()),
                shutdown: Shutdown::new(),
                tracker: TaskTracker::new(),
                rt,
                loops,
            }),
        })
    }

    /// Hand over listening sockets inherited from a previous process
    /// (`halb run --upgrade`). The next [`Runtime::apply`] uses a socket
    /// whose bind address and transport match a frontend instead of binding.
    pub fn adopt_listeners(&self, fds: Vec<ListenerFd>) {
        lock(&self.inner.control).inherited.extend(fds);
    }

    /// Duplicates of every listening socket, for a new process to adopt.
    pub fn listener_fds(&self) -> std::io::Result<Vec<ListenerFd>> {
        let c = lock(&self.inner.control);
        let mut out = Vec::new();
        for (name, l) in &c.listeners {
            // A listener whose accept loop has ended (it could not be
            // watched) has no socket left to hand over; the new process
            // binds that address itself.
            let Some(fd) = lock(&l.fd).as_ref().map(|fd| fd.try_clone()).transpose()? else {
                continue;
            };
            out.push(ListenerFd {
                frontend: name.clone(),
                bind: l.bind,
                transport: l.transport,
                fd,
            });
        }
        Ok(out)
    }

    /// The address a frontend's listener is bound to (useful with port 0).
    pub fn local_addr(&self, frontend: &str) -> Option<SocketAddr> {
        lock(&self.inner.control)
            .listeners
            .get(frontend)
            .map(|l| l.local)
    }

    /// A handle for serving `frontend` on a listener of your own with [`serve`].
    pub fn frontend_handle(&self, frontend: &str) -> FrontendHandle {
        FrontendHandle {
            inner: Arc::clone(&self.inner),
            name: Arc::from(frontend),
        }
    }

    /// Apply a (validated) config as a diff against the running one. New
    /// listeners are bound first: if one fails nothing changes. Unchanged
    /// servers keep health, counters and pooled connections; listeners that
    /// stay are never closed; removed listeners stop accepting and their
    /// connections finish; removed servers drain for `drain_timeout`.
    pub fn apply(&self, config: &Config) -> Result<ReloadDiff, Error> {
        let inner = &self.inner;
        // Sockets are registered with the runtime kept at construction, so
        // this works from any thread.
        let _enter = inner.rt.enter();
        let mut control = lock(&inner.control);
        if control.shutting_down {
            return Err(Error::ShuttingDown);
        }
        let old = inner.snapshot.load_full();
        let mut changes = Vec::new();

        // Frontends served here.
        let mut served: Vec<&FrontendConfig> = Vec::new();
        let mut skipped = Vec::new();
        for fe in &config.frontends {
            if fe.forwarding != Forwarding::Proxy {
                skipped.push(Change::FrontendSkipped {
                    frontend: fe.name.clone(),
                });
                continue;
            }
            if config.backend(&fe.backend).is_none() {
                return Err(Error::FrontendBackend {
                    frontend: fe.name.clone(),
                    backend: fe.backend.clone(),
                });
            }
            served.push(fe);
        }

        // Backends.
        let mut backends = HashMap::new();
        let mut server_changes = Vec::new();
        for b in &config.backends {
            let old_b = old.backends.get(&b.name);
            if old_b.is_none() {
                changes.push(Change::BackendAdded {
                    backend: b.name.clone(),
                });
            }
            let members: Vec<Member> = b
                .servers
                .iter()
                .map(|s| Member {
                    name: s.name.clone(),
                    weight: u32::from(s.weight),
                })
                .collect();
            let balancer = Balancer::new(algorithm(b.algorithm), &members, b.maglev_table_size)
                .map_err(|source| Error::Maglev {
                    backend: b.name.clone(),
                    source,
                })?;
            let mut servers = Vec::new();
            for s in &b.servers {
                let prev = old_b.and_then(|ob| ob.servers.iter().find(|os| os.cfg.name == s.name));
                let shared = match prev {
                    Some(p) if p.cfg.address == s.address => {
                        if p.cfg != *s {
                            server_changes.push(Change::ServerUpdated {
                                backend: b.name.clone(),
                                server: s.name.clone(),
                            });
                        }
                        p.shared.update_params(b);
                        Arc::clone(&p.shared)
                    }
                    Some(_) => {
                        server_changes.push(Change::ServerReset {
                            backend: b.name.clone(),
                            server: s.name.clone(),
                        });
                        Arc::new(ServerShared::new(b, s, inner.rt.clone()))
                    }
                    None => {
                        if old_b.is_some() {
                            server_changes.push(Change::ServerAdded {
                                backend: b.name.clone(),
                                server: s.name.clone(),
                            });
                        }
                        Arc::new(ServerShared::new(b, s, inner.rt.clone()))
                    }
                };
                servers.push(ServerRt {
                    cfg: s.clone(),
                    shared,
                });
            }
            let shared = old_b.map(|ob| Arc::clone(&ob.shared)).unwrap_or_else(|| {
                Arc::new(BackendShared {
                    queue_len: AtomicU64::new(0),
                    wake: Notify::new(),
                    metrics: BackendMetrics::new(&b.name),
                })
            });
            backends.insert(
                b.name.clone(),
                Arc::new(BackendRt {
                    cfg: b.clone(),
                    servers,
                    balancer,
                    shared,
                }),
            );
        }
        // Servers and backends that went away.
        let mut removed_servers: Vec<Arc<ServerShared>> = Vec::new();
        for name in &old.backend_order {
            let Some(ob) = old.backends.get(name) else {
                continue;
            };
            let nb = backends.get(name);
            if nb.is_none() {
                changes.push(Change::BackendRemoved {
                    backend: name.clone(),
                });
            }
            for os in &ob.servers {
                let kept = nb.is_some_and(|nb| {
                    nb.servers
                        .iter()
                        .any(|ns| Arc::ptr_eq(&ns.shared, &os.shared))
                });
                if !kept {
                    if nb.is_some_and(|nb| nb.server_index(&os.cfg.name).is_none()) {
                        server_changes.push(Change::ServerRemoved {
                            backend: name.clone(),
                            server: os.cfg.name.clone(),
                        });
                    }
                    removed_servers.push(Arc::clone(&os.shared));
                }
            }
        }

        // Frontends and listeners: bind what is new before changing anything.
        let mut frontends = HashMap::new();
        let mut new_listeners: Vec<(String, Listener, ListenerEntry)> = Vec::new();
        let mut listener_changes = Vec::new();
        let mut keep_listeners = HashSet::new();
        for fe in &served {
            let old_fe = old.frontends.get(&fe.name);
            let shared = old_fe
                .map(|o| Arc::clone(&o.shared))
                .unwrap_or_else(|| Arc::new(FrontendShared::new(&fe.name)));
            let limit = match old_fe {
                Some(o) if o.cfg.max_connections == fe.max_connections => o.limit.clone(),
                _ => fe
                    .max_connections
                    .map(|m| Arc::new(Semaphore::new(m as usize))),
            };
            let client = if fe.mode == FrontendMode::Http {
                match old_fe.and_then(|o| o.client.as_ref().map(|c| (o, c))) {
                    Some((o, c)) if o.cfg.timeouts.connect == fe.timeouts.connect => {
                        Some(c.clone())
                    }
                    _ => Some(crate::http::UpstreamClient::new(
                        fe,
                        self.inner.pool_shares(),
                    )),
                }
            } else {
                None
            };
            frontends.insert(
                fe.name.clone(),
                Arc::new(FrontendRt {
                    cfg: (*fe).clone(),
                    shared,
                    limit,
                    client,
                }),
            );
            let transport = fe.mode.transport();
            match control.listeners.get(&fe.name) {
                Some(l) if l.bind == fe.bind && l.transport == transport => {
                    keep_listeners.insert(fe.name.clone());
                    listener_changes.push(Change::ListenerKept {
                        frontend: fe.name.clone(),
                        bind: fe.bind,
                    });
                }
                _ => {
                    let inherited = control
                        .inherited
                        .iter()
                        .position(|i| i.bind == fe.bind && i.transport == transport)
                        .map(|i| control.inherited.swap_remove(i).fd);
                    // A listener of the same address still closing.
                    let reopened = || {
                        control
                            .closing
                            .iter()
                            .filter(|c| c.bind == fe.bind && c.transport == transport)
                            .find_map(|c| lock(&c.fd).take())
                    };
                    let bound = match inherited.or_else(reopened) {
                        Some(fd) => adopt_socket(fd, transport),
                        None => bind_socket(fe),
                    };
                    let (listener, fd, local) = bound.map_err(|source| Error::Bind {
                        frontend: fe.name.clone(),
                        addr: fe.bind,
                        source,
                    })?;
                    listener_changes.push(Change::ListenerOpened {
                        frontend: fe.name.clone(),
                        bind: fe.bind,
                    });
                    new_listeners.push((
                        fe.name.clone(),
                        listener,
                        ListenerEntry {
                            bind: fe.bind,
                            transport,
                            local,
                            fd: Arc::new(Mutex::new(Some(fd))),
                            stop: inner.shutdown.child(),
                        },
                    ));
                }
            }
        }

        // Commit: swap the snapshot, then start and stop things.
        let snapshot = Snapshot {
            frontends,
            backends,
            frontend_order: served.iter().map(|f| f.name.clone()).collect(),
            backend_order: config.backends.iter().map(|b| b.name.clone()).collect(),
        };
        inner.snapshot.store(Arc::new(snapshot));

        let closing: Vec<String> = control
            .listeners
            .keys()
            .filter(|k| !keep_listeners.contains(*k))
            .cloned()
            .collect();
        for name in closing {
            if let Some(l) = control.listeners.remove(&name) {
                tracing::info!(frontend = %name, bind = %l.bind, "closing listener");
                l.stop.stop_accepting();
                listener_changes.push(Change::ListenerClosed {
                    frontend: name,
                    bind: l.bind,
                });
                control.closing.push(l);
            }
        }
        for (name, listener, entry) in new_listeners {
            tracing::info!(frontend = %name, bind = %entry.bind, local = %entry.local, "listening");
            let handle = self.frontend_handle(&name);
            let stop = entry.stop.clone();
            let slot = Arc::clone(&entry.fd);
            control.listeners.insert(name, entry);
            inner.rt.spawn(async move {
                serve(listener, handle, stop).await;
                // The loop has dropped its socket: ours goes too, so a
                // removed listener really stops listening.
                drop(lock(&slot).take());
            });
        }
        control.closing.retain(|c| lock(&c.fd).is_some());

        // Health drivers.
        let snap = inner.snapshot.load_full();
        let mut wanted = HashSet::new();
        for b in snap.backends.values() {
            for s in &b.servers {
                let key = (b.cfg.name.clone(), s.cfg.name.clone());
                wanted.insert(key.clone());
                let keep = control
                    .checkers
                    .get(&key)
                    .is_some_and(|c| Arc::ptr_eq(&c.shared, &s.shared) && c.health == b.cfg.health);
                if keep {
                    continue;
                }
                if let Some(old) = control.checkers.remove(&key) {
                    old.token.cancel();
                }
                let token = CancellationToken::new();
                inner.rt.spawn(crate::check::drive(
                    Arc::clone(&s.shared),
                    b.cfg.health.clone(),
                    token.clone(),
                ));
                control.checkers.insert(
                    key,
                    CheckerEntry {
                        shared: Arc::clone(&s.shared),
                        health: b.cfg.health.clone(),
                        token,
                    },
                );
            }
        }
        control.checkers.retain(|k, c| {
            let keep = wanted.contains(k);
            if !keep {
                c.token.cancel();
            }
            keep
        });
        for s in removed_servers {
            s.schedule_drain();
        }

        changes.extend(server_changes);
        let mut all = listener_changes;
        all.extend(skipped);
        all.extend(changes);
        for c in &all {
            tracing::info!(change = %c, "reload");
        }
        Ok(ReloadDiff { changes: all })
    }

    /// Drain, enable or disable one server. Returns its new effective state.
    pub fn server_admin(
        &self,
        backend: &str,
        server: &str,
        action: AdminAction,
    ) -> Result<ServerState, Error> {
        let snap = self.inner.snapshot.load();
        let b = snap
            .backends
            .get(backend)
            .ok_or_else(|| Error::UnknownBackend(backend.to_string()))?;
        let s = b
            .servers
            .iter()
            .find(|s| s.cfg.name == server)
            .ok_or_else(|| Error::UnknownServer {
                backend: backend.to_string(),
                server: server.to_string(),
            })?;
        let admin = match action {
            AdminAction::Drain => AdminState::Drain,
            AdminAction::Enable => AdminState::Enabled,
            AdminAction::Disable => AdminState::Maint,
        };
        tracing::info!(backend, server, ?action, "admin action");
        let state = s.shared.set_admin(admin);
        b.shared.wake.notify_waiters();
        Ok(state)
    }

    /// A serializable view of frontends, backends and servers.
    pub fn status(&self) -> Status {
        let snap = self.inner.snapshot.load();
        let locals: HashMap<String, SocketAddr> = lock(&self.inner.control)
            .listeners
            .iter()
            .map(|(k, l)| (k.clone(), l.local))
            .collect();
        let now = Instant::now();
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let frontends = snap
            .frontend_order
            .iter()
            .filter_map(|n| snap.frontends.get(n))
            .map(|f| {
                let r = &f.shared.responses;
                FrontendStatus {
                    name: f.cfg.name.clone(),
                    bind: f.cfg.bind,
                    local_addr: locals.get(&f.cfg.name).copied(),
                    mode: f.cfg.mode,
                    backend: f.cfg.backend.clone(),
                    active_connections: ld(&f.shared.active),
                    total_connections: ld(&f.shared.connections),
                    requests: ld(&f.shared.requests),
                    bytes_in: ld(&f.shared.bytes_in),
                    bytes_out: ld(&f.shared.bytes_out),
                    responses: ClassCounts {
                        c1xx: ld(&r[0]),
                        c2xx: ld(&r[1]),
                        c3xx: ld(&r[2]),
                        c4xx: ld(&r[3]),
                        c5xx: ld(&r[4]),
                    },
                }
            })
            .collect();
        let backends = snap
            .backend_order
            .iter()
            .filter_map(|n| snap.backends.get(n))
            .map(|b| {
                let servers: Vec<ServerStatus> = b
                    .servers
                    .iter()
                    .map(|s| {
                        let h = lock(&s.shared.health).clone();
                        ServerStatus {
                            name: s.cfg.name.clone(),
                            address: s.cfg.address,
                            state: h.state(),
                            admin: h.admin(),
                            check_up: h.check_up(),
                            weight: s.cfg.weight,
                            effective_weight: h.effective_weight(now, u32::from(s.cfg.weight)),
                            backup: s.cfg.backup,
                            active_connections: ld(&s.shared.active),
                            total_requests: ld(&s.shared.requests),
                            errors: ld(&s.shared.errors),
                            bytes_in: ld(&s.shared.bytes_in),
                            bytes_out: ld(&s.shared.bytes_out),
                            last_check: lock(&s.shared.last_check).clone(),
                            ejected_for_ms: h.ejected_until().map(|u| {
                                u64::try_from(u.saturating_duration_since(now).as_millis())
                                    .unwrap_or(u64::MAX)
                            }),
                        }
                    })
                    .collect();
                BackendStatus {
                    name: b.cfg.name.clone(),
                    algorithm: algorithm(b.cfg.algorithm),
                    servers_up: servers
                        .iter()
                        .filter(|s| s.state == ServerState::Up)
                        .count(),
                    queue_length: ld(&b.shared.queue_len),
                    servers,
                }
            })
            .collect();
        let loops = self.inner.loops.as_ref().map(|l| LoopsStatus {
            scaling: l.scaling(),
            active: l.active(),
            connections: l.connections(),
            moves: l.moves(),
        });
        Status {
            frontends,
            backends,
            loops,
        }
    }

    /// Stop accepting on every listener, let in-flight connections and
    /// requests finish for up to `deadline`, then close what remains and stop
    /// the health checks.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        {
            let mut c = lock(&self.inner.control);
            c.shutting_down = true;
            for l in c.listeners.values() {
                l.stop.stop_accepting();
            }
            c.listeners.clear();
        }
        self.inner.shutdown.stop_accepting();
        self.inner.tracker.close();
        let drained = tokio::time::timeout(deadline, self.inner.tracker.wait())
            .await
            .is_ok();
        let aborted = self.inner.tracker.len();
        if !drained {
            tracing::warn!(
                open = aborted,
                "shutdown deadline passed: closing connections"
            );
            self.inner.shutdown.abort();
            let _ = tokio::time::timeout(Duration::from_secs(5), self.inner.tracker.wait()).await;
        }
        let mut c = lock(&self.inner.control);
        for (_, ch) in c.checkers.drain() {
            ch.token.cancel();
        }
        ShutdownReport {
            drained,
            aborted: if drained { 0 } else { aborted },
        }
    }
}

/// Whether the health kind runs active checks.
pub(crate) fn has_active_checks(h: &HealthConfig) -> bool {
    h.kind != HealthKind::None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection's task holds what its serving future holds once, not
    /// twice (an `async` block around the future would keep both).
    #[tokio::test]
    async fn a_connection_task_holds_its_state_once() {
        let rt = Runtime::new().expect("runtime");
        let handle = rt.frontend_handle("web");
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let connect = || {
            let s = std::net::TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
            s.set_nonblocking(true).expect("nonblocking");
            s
        };
        let state = [7u8; 4096];
        let serve = move |s: TcpStream| async move {
            tokio::task::yield_now().await;
            std::hint::black_box((&state, &s));
        };
        let alone =
            std::mem::size_of_val(&serve(TcpStream::from_std(connect()).expect("register")));
        let stream = connect();
        let client = stream.local_addr().expect("addr");
        let task = handle.conn_task(stream, client, serve);
        let size = std::mem::size_of_val(&task);
        assert!(alone >= 4096, "{alone}");
        assert!(
            size < alone + 256,
            "task {size} bytes for a {alone}-byte future"
        );
        task.await;
    }
}
