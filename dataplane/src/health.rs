//! Per-server health state, sans-IO.
//!
//! A [`Health`] takes three kinds of input, each with the current time
//! injected: active check results ([`Health::on_check`]), passive
//! observations from live traffic ([`Health::on_passive`]) and admin commands
//! ([`Health::set_admin`]), plus timer expiries ([`Health::on_timeout`] at
//! [`Health::poll_timeout`]). It never reads a clock and never does I/O.
//!
//! # Precedence
//!
//! The effective [`ServerState`] is decided in a fixed order:
//!
//! 1. **Admin state** wins: `disable` gives [`ServerState::Maint`] and
//!    `drain` gives [`ServerState::Drain`], whatever the checks say.
//! 2. **Active check**: after `fall` consecutive failed checks the server is
//!    [`ServerState::Down`]; after `rise` consecutive passed checks it is up
//!    again. A server starts up (checks are optimistic, as in HAProxy), so a
//!    fresh config serves at once; `fall` failures take it down.
//! 3. **Passive ejection**: `consecutive_failures` connect failures or 5xx
//!    responses in a row eject an otherwise healthy server
//!    ([`ServerState::Down`]) for a backoff period that doubles on each
//!    ejection (up to `max_ejection`) and resets after a quiet period of
//!    `max_ejection` without ejection.
//!
//! Only [`ServerState::Up`] takes new traffic. A server that becomes up after
//! being down or in maintenance ramps its weight linearly over `slow_start`
//! ([`Health::effective_weight`]).

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

/// Effective state of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ServerState {
    /// Takes new traffic.
    Up,
    /// Failed its checks or ejected: no new traffic, in-flight traffic drains.
    Down,
    /// Drained by the operator: no new traffic, in-flight traffic drains.
    Drain,
    /// Disabled by the operator (maintenance).
    Maint,
}

impl ServerState {
    /// Upper-case name, as used in logs, status and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Up => "UP",
            ServerState::Down => "DOWN",
            ServerState::Drain => "DRAIN",
            ServerState::Maint => "MAINT",
        }
    }

    /// Numeric code of the `halb_server_state` gauge: UP 1, DOWN 0, DRAIN 2,
    /// MAINT 3.
    pub fn gauge(self) -> f64 {
        match self {
            ServerState::Down => 0.0,
            ServerState::Up => 1.0,
            ServerState::Drain => 2.0,
            ServerState::Maint => 3.0,
        }
    }
}

impl fmt::Display for ServerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Operator-set state of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminState {
    /// Normal operation: checks decide.
    Enabled,
    /// No new traffic; in-flight traffic finishes.
    Drain,
    /// Disabled (maintenance).
    Maint,
}

/// Why an active check failed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum CheckFailure {
    /// TCP connect refused or failed.
    Connect(String),
    /// No answer within the check timeout.
    Timeout,
    /// The HTTP status was not in the expected set.
    Status(u16),
    /// The expected substring was not in the body.
    BodyMismatch,
    /// The answer was not HTTP.
    BadResponse,
    /// An I/O error after connecting.
    Io(String),
}

impl fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckFailure::Connect(e) => write!(f, "connect failed: {e}"),
            CheckFailure::Timeout => f.write_str("timeout"),
            CheckFailure::Status(s) => write!(f, "unexpected status {s}"),
            CheckFailure::BodyMismatch => f.write_str("expected body text missing"),
            CheckFailure::BadResponse => f.write_str("malformed response"),
            CheckFailure::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

/// A passive observation from live traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassiveEvent {
    /// A request or connection completed fine.
    Success,
    /// Connecting to the server failed or timed out.
    ConnectFailure,
    /// The server answered 5xx or reset the connection mid-response.
    ServerError,
}

/// Why a transition happened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// `rise` checks passed in a row.
    ChecksPassed {
        /// The rise count reached.
        rise: u32,
    },
    /// `fall` checks failed in a row; the last failure.
    ChecksFailed {
        /// The fall count reached.
        fall: u32,
        /// The last failure.
        last: CheckFailure,
    },
    /// The operator changed the admin state.
    Admin(AdminState),
    /// Passive outlier detection ejected the server.
    Ejected {
        /// Consecutive failures seen.
        failures: u32,
        /// Ejection length.
        for_: Duration,
    },
    /// The passive ejection period ended.
    EjectionEnded,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::ChecksPassed { rise } => write!(f, "{rise} checks passed"),
            Reason::ChecksFailed { fall, last } => write!(f, "{fall} checks failed, last: {last}"),
            Reason::Admin(AdminState::Enabled) => f.write_str("enabled by admin"),
            Reason::Admin(AdminState::Drain) => f.write_str("drained by admin"),
            Reason::Admin(AdminState::Maint) => f.write_str("disabled by admin"),
            Reason::Ejected { failures, for_ } => {
                write!(
                    f,
                    "ejected for {for_:?} after {failures} consecutive failures"
                )
            }
            Reason::EjectionEnded => f.write_str("ejection period ended"),
        }
    }
}

/// A change of effective state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// Previous state.
    pub from: ServerState,
    /// New state.
    pub to: ServerState,
    /// Why.
    pub reason: Reason,
}

/// Passive outlier detection parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierParams {
    /// Consecutive connect failures / 5xx that eject (>= 1).
    pub consecutive_failures: u32,
    /// First ejection length.
    pub base_ejection: Duration,
    /// Longest ejection; also the quiet period that resets the backoff.
    pub max_ejection: Duration,
}

/// Health parameters of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthParams {
    /// Passed checks in a row to come up.
    pub rise: u32,
    /// Failed checks in a row to go down.
    pub fall: u32,
    /// Weight ramp after coming up (zero: none).
    pub slow_start: Duration,
    /// Passive outlier detection, if enabled.
    pub outlier: Option<OutlierParams>,
}

impl Default for HealthParams {
    fn default() -> Self {
        HealthParams {
            rise: 2,
            fall: 3,
            slow_start: Duration::ZERO,
            outlier: None,
        }
    }
}

/// Health state machine of one server.
#[derive(Debug, Clone)]
pub struct Health {
    params: HealthParams,
    admin: AdminState,
    check_up: bool,
    ok_streak: u32,
    fail_streak: u32,
    passive_streak: u32,
    ejected_until: Option<Instant>,
    ejections: u32,
    last_ejection_end: Option<Instant>,
    up_since: Option<Instant>,
    state: ServerState,
}

impl Health {
    /// A new server: admin enabled, checks optimistic, so state UP.
    pub fn new(params: HealthParams) -> Self {
        Health {
            params: HealthParams {
                rise: params.rise.max(1),
                fall: params.fall.max(1),
                ..params
            },
            admin: AdminState::Enabled,
            check_up: true,
            ok_streak: 0,
            fail_streak: 0,
            passive_streak: 0,
            ejected_until: None,
            ejections: 0,
            last_ejection_end: None,
            up_since: None,
            state: ServerState::Up,
        }
    }

    /// Replace the parameters (config reload of an unchanged server); the
    /// state is kept.
    pub fn set_params(&mut self, params: HealthParams) {
        self.params = HealthParams {
            rise: params.rise.max(1),
            fall: params.fall.max(1),
            ..params
        };
    }

    /// Current effective state.
    pub fn state(&self) -> ServerState {
        self.state
    }

    /// Current admin state.
    pub fn admin(&self) -> AdminState {
        self.admin
    }

    /// Whether the active checks consider the server up.
    pub fn check_up(&self) -> bool {
        self.check_up
    }

    /// End of the current passive ejection, if any.
    pub fn ejected_until(&self) -> Option<Instant> {
        self.ejected_until
    }

    /// When the server last came up (for slow start), if it did after start.
    pub fn up_since(&self) -> Option<Instant> {
        self.up_since
    }

    fn compute(&self) -> ServerState {
        match self.admin {
            AdminState::Maint => ServerState::Maint,
            AdminState::Drain => ServerState::Drain,
            AdminState::Enabled if !self.check_up => ServerState::Down,
            AdminState::Enabled if self.ejected_until.is_some() => ServerState::Down,
            AdminState::Enabled => ServerState::Up,
        }
    }

    fn settle(&mut self, now: Instant, reason: Reason) -> Option<Transition> {
        let to = self.compute();
        let from = self.state;
        if to == from {
            return None;
        }
        self.state = to;
        if to == ServerState::Up && matches!(from, ServerState::Down | ServerState::Maint) {
            self.up_since = Some(now);
        }
        Some(Transition { from, to, reason })
    }

    /// An active check result.
    pub fn on_check(
        &mut self,
        now: Instant,
        result: Result<(), CheckFailure>,
    ) -> Option<Transition> {
        match result {
            Ok(()) => {
                self.fail_streak = 0;
                self.ok_streak = self.ok_streak.saturating_add(1);
                if !self.check_up && self.ok_streak >= self.params.rise {
                    self.check_up = true;
                    return self.settle(
                        now,
                        Reason::ChecksPassed {
                            rise: self.params.rise,
                        },
                    );
                }
                None
            }
            Err(failure) => {
                self.ok_streak = 0;
                self.fail_streak = self.fail_streak.saturating_add(1);
                if self.check_up && self.fail_streak >= self.params.fall {
                    self.check_up = false;
                    return self.settle(
                        now,
                        Reason::ChecksFailed {
                            fall: self.params.fall,
                            last: failure,
                        },
                    );
                }
                None
            }
        }
    }

    /// A passive observation from traffic.
    pub fn on_passive(&mut self, now: Instant, event: PassiveEvent) -> Option<Transition> {
        let outlier = self.params.outlier?;
        match event {
            PassiveEvent::Success => {
                self.passive_streak = 0;
                None
            }
            PassiveEvent::ConnectFailure | PassiveEvent::ServerError => {
                self.passive_streak = self.passive_streak.saturating_add(1);
                if self.ejected_until.is_some()
                    || self.passive_streak < outlier.consecutive_failures.max(1)
                {
                    return None;
                }
                if self
                    .last_ejection_end
                    .is_some_and(|end| now.saturating_duration_since(end) >= outlier.max_ejection)
                {
                    self.ejections = 0;
                }
                let factor = 1u32 << self.ejections.min(16);
                let length = outlier
                    .base_ejection
                    .saturating_mul(factor)
                    .min(outlier.max_ejection.max(outlier.base_ejection));
                self.ejections = self.ejections.saturating_add(1);
                self.ejected_until = Some(now + length);
                let failures = self.passive_streak;
                self.passive_streak = 0;
                self.settle(
                    now,
                    Reason::Ejected {
                        failures,
                        for_: length,
                    },
                )
            }
        }
    }

    /// The operator sets the admin state.
    pub fn set_admin(&mut self, now: Instant, admin: AdminState) -> Option<Transition> {
        self.admin = admin;
        self.settle(now, Reason::Admin(admin))
    }

    /// Next deadline at which [`Health::on_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.ejected_until
    }

    /// Timer expiry: ends a passive ejection whose period is over.
    pub fn on_timeout(&mut self, now: Instant) -> Option<Transition> {
        match self.ejected_until {
            Some(until) if now >= until => {
                self.ejected_until = None;
                self.last_ejection_end = Some(now);
                self.passive_streak = 0;
                self.settle(now, Reason::EjectionEnded)
            }
            _ => None,
        }
    }

    /// Weight to balance with at `now`: the configured weight, ramped
    /// linearly from 1 over `slow_start` after the server came up. Zero when
    /// the server is not up.
    pub fn effective_weight(&self, now: Instant, weight: u32) -> u32 {
        if self.state != ServerState::Up {
            return 0;
        }
        slow_start_weight(weight, self.up_since, now, self.params.slow_start)
    }
}

/// Slow start ramp: `weight * elapsed / slow_start` (at least 1) while
/// `elapsed < slow_start`, `weight` after. Pure integer arithmetic.
pub fn slow_start_weight(
    weight: u32,
    up_since: Option<Instant>,
    now: Instant,
    slow_start: Duration,
) -> u32 {
    let Some(since) = up_since else {
        return weight;
    };
    let elapsed = now.saturating_duration_since(since);
    if slow_start.is_zero() || elapsed >= slow_start || weight == 0 {
        return weight;
    }
    let ramp = u128::from(weight) * elapsed.as_nanos() / slow_start.as_nanos();
    u32::try_from(ramp).unwrap_or(weight).clamp(1, weight)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn params() -> HealthParams {
        HealthParams {
            rise: 2,
            fall: 3,
            slow_start: Duration::from_secs(10),
            outlier: Some(OutlierParams {
                consecutive_failures: 3,
                base_ejection: Duration::from_secs(1),
                max_ejection: Duration::from_secs(8),
            }),
        }
    }

    fn fail() -> Result<(), CheckFailure> {
        Err(CheckFailure::Timeout)
    }

    #[test]
    fn fall_then_rise() {
        let t0 = Instant::now();
        let mut h = Health::new(params());
        assert_eq!(h.state(), ServerState::Up);
        assert_eq!(h.on_check(t0, fail()), None);
        assert_eq!(h.on_check(t0, fail()), None);
        let tr = h.on_check(t0, fail()).unwrap();
        assert_eq!((tr.from, tr.to), (ServerState::Up, ServerState::Down));
        assert!(matches!(tr.reason, Reason::ChecksFailed { fall: 3, .. }));
        assert_eq!(h.on_check(t0, Ok(())), None);
        // A failure in between resets the rise streak.
        assert_eq!(h.on_check(t0, fail()), None);
        assert_eq!(h.on_check(t0, Ok(())), None);
        let tr = h.on_check(t0 + MS, Ok(())).unwrap();
        assert_eq!(tr.to, ServerState::Up);
        assert_eq!(tr.reason, Reason::ChecksPassed { rise: 2 });
        assert_eq!(h.up_since(), Some(t0 + MS));
    }

    #[test]
    fn admin_overrides_checks() {
        let t0 = Instant::now();
        let mut h = Health::new(params());
        let tr = h.set_admin(t0, AdminState::Drain).unwrap();
        assert_eq!(tr.to, ServerState::Drain);
        // Checks failing while drained change nothing visible.
        for _ in 0..3 {
            assert_eq!(h.on_check(t0, fail()), None);
        }
        assert_eq!(h.state(), ServerState::Drain);
        let tr = h.set_admin(t0, AdminState::Maint).unwrap();
        assert_eq!((tr.from, tr.to), (ServerState::Drain, ServerState::Maint));
        // Enabling shows what the checks say: down.
        let tr = h.set_admin(t0, AdminState::Enabled).unwrap();
        assert_eq!(tr.to, ServerState::Down);
        assert_eq!(h.set_admin(t0, AdminState::Enabled), None);
    }

    #[test]
    fn checks_override_passive() {
        let t0 = Instant::now();
        let mut h = Health::new(params());
        for _ in 0..3 {
            h.on_check(t0, fail());
        }
        assert_eq!(h.state(), ServerState::Down);
        // Ejection while down: no transition; recovering checks still show
        // the ejection (down) until it ends.
        for _ in 0..3 {
            assert_eq!(h.on_passive(t0, PassiveEvent::ServerError), None);
        }
        h.on_check(t0, Ok(()));
        assert_eq!(h.on_check(t0, Ok(())), None);
        assert_eq!(h.state(), ServerState::Down);
        let tr = h.on_timeout(t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(tr.to, ServerState::Up);
        assert_eq!(tr.reason, Reason::EjectionEnded);
    }

    #[test]
    fn passive_ejection_with_backoff() {
        let t0 = Instant::now();
        let mut h = Health::new(params());
        assert_eq!(h.on_passive(t0, PassiveEvent::ConnectFailure), None);
        assert_eq!(h.on_passive(t0, PassiveEvent::Success), None);
        assert_eq!(h.on_passive(t0, PassiveEvent::ConnectFailure), None);
        assert_eq!(h.on_passive(t0, PassiveEvent::ServerError), None);
        let tr = h.on_passive(t0, PassiveEvent::ServerError).unwrap();
        assert_eq!(tr.to, ServerState::Down);
        assert_eq!(h.poll_timeout(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(h.on_timeout(t0 + Duration::from_millis(999)), None);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(h.on_timeout(t1).unwrap().to, ServerState::Up);
        // Second ejection soon after: twice as long.
        for _ in 0..3 {
            h.on_passive(t1, PassiveEvent::ServerError);
        }
        assert_eq!(h.poll_timeout(), Some(t1 + Duration::from_secs(2)));
        let t2 = t1 + Duration::from_secs(2);
        h.on_timeout(t2);
        // After a quiet period of max_ejection the backoff resets.
        let t3 = t2 + Duration::from_secs(8);
        for _ in 0..3 {
            h.on_passive(t3, PassiveEvent::ServerError);
        }
        assert_eq!(h.poll_timeout(), Some(t3 + Duration::from_secs(1)));
    }

    #[test]
    fn no_outlier_detection_when_disabled() {
        let t0 = Instant::now();
        let mut h = Health::new(HealthParams {
            outlier: None,
            ..params()
        });
        for _ in 0..100 {
            assert_eq!(h.on_passive(t0, PassiveEvent::ServerError), None);
        }
        assert_eq!(h.state(), ServerState::Up);
    }

    #[test]
    fn slow_start_ramp() {
        let t0 = Instant::now();
        let mut h = Health::new(params());
        // Up from the start: full weight, no ramp.
        assert_eq!(h.effective_weight(t0, 100), 100);
        h.set_admin(t0, AdminState::Maint);
        assert_eq!(h.effective_weight(t0, 100), 0);
        h.set_admin(t0, AdminState::Enabled);
        assert_eq!(h.effective_weight(t0, 100), 1);
        assert_eq!(h.effective_weight(t0 + Duration::from_secs(5), 100), 50);
        assert_eq!(h.effective_weight(t0 + Duration::from_secs(10), 100), 100);
        assert_eq!(h.effective_weight(t0 + Duration::from_secs(60), 100), 100);
        assert_eq!(
            slow_start_weight(3, Some(t0), t0 + MS, Duration::from_secs(1)),
            1
        );
        assert_eq!(slow_start_weight(3, Some(t0), t0, Duration::ZERO), 3);
    }

    #[test]
    fn drain_to_up_does_not_ramp() {
        let t0 = Instant::now();
        let mut h = Health::new(params());
        h.set_admin(t0, AdminState::Drain);
        h.set_admin(t0 + MS, AdminState::Enabled);
        assert_eq!(h.effective_weight(t0 + MS, 10), 10);
    }
}
