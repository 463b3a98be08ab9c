//! The VRRP election state machine of RFC 9568 section 6, sans-IO.
//!
//! API in the quinn-proto style:
//!
//! - [`Router::handle`]`(now, Input)` feeds an event (startup, a received
//!   advert, a priority change, ...);
//! - [`Router::poll_action`] drains the actions it produced, **in order**
//!   (the driver executes them in that order: e.g. `SendAdvert`, `AddVips`,
//!   `SendGratuitous`, `StateChanged` when becoming master);
//! - [`Router::poll_timeout`] says when the next timer is due and
//!   [`Router::handle_timeout`]`(now)` fires whatever is due at `now`.
//!
//! `now` is an opaque [`Instant`] passed in by the caller: nothing here reads
//! a clock, so tests drive it with a virtual clock (a base `Instant` plus
//! `Duration`s). States carry their own deadlines ([`State`]).
//!
//! Timers (RFC 9568 section 6.1), computed in integer microseconds:
//! Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256 and
//! Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time, with the
//! local (effective) priority. A VRRPv3 backup learns Master_Adver_Interval
//! from the master's adverts; a VRRPv2 backup keeps its own (RFC 3768 requires
//! equal intervals and the receive checks drop adverts that differ).
//!
//! Extensions beyond the RFC, each marked `halb:` at its place:
//! - preempt_delay: a higher-priority backup that hears a lower-priority
//!   master keeps treating it as master for `preempt_delay`, then takes over
//!   ([`TransitionReason::Preempted`]). With a zero delay the RFC behaviour
//!   applies (the lower adverts are discarded and the Master_Down_Timer fires).
//! - a master hearing a lower-priority advert answers at once (RFC 9568
//!   section 6.4.3) **and** asks for its gratuitous ARPs / NAs again.
//! - an advert whose address list differs from ours still takes part in the
//!   election; it is counted ([`Stats::address_list_mismatch`]) and reported
//!   once per sender ([`Warning::AddressListMismatch`]).
//! - Fault, Standby, ForceTakeover and sync-group commands.

use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::wire::{
    Advert, AdvertInterval, DropReason, Family, RxPolicy, V2Auth, V3Ipv4Checksum, Version,
};
use crate::{master_down_interval, skew_time, Centisecs, Error, Priority, VrId};

/// Configuration of one virtual router instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterConfig {
    pub vrid: VrId,
    pub version: Version,
    /// Configured (base) priority: 1..=254, or 255 for the address owner.
    /// Tracking changes the effective priority through [`Input::PriorityChanged`].
    pub priority: Priority,
    /// Advertisement_Interval: 1..=4095 cs for v3, whole seconds for v2.
    pub advert_interval: Centisecs,
    /// Preempt_Mode (RFC 9568 section 6.1).
    pub preempt: bool,
    /// halb: how long a higher-priority backup waits before preempting a
    /// lower-priority master. Zero: RFC behaviour.
    pub preempt_delay: Duration,
    /// Accept_Mode (RFC 9568 section 6.1): exposed to the driver through
    /// [`Router::accepts_vip_traffic`]; the state machine itself does not use it.
    pub accept_mode: bool,
    /// This router's primary address on the interface (the advert source),
    /// compared on a priority tie (RFC 9568 section 6.4.3).
    pub primary_address: IpAddr,
    /// The virtual addresses, all of `primary_address`'s family.
    pub virtual_addresses: Vec<IpAddr>,
    /// VRRPv2 authentication sent in adverts and required of received ones
    /// (RFC 2338 simple text, or none). Not used by v3.
    pub v2_auth: V2Auth,
}

impl RouterConfig {
    /// VRRPv3 with the protocol defaults: priority 100, 1 s, preempt on, no delay.
    pub fn new(
        vrid: VrId,
        primary_address: IpAddr,
        virtual_addresses: Vec<IpAddr>,
    ) -> RouterConfig {
        RouterConfig {
            vrid,
            version: Version::V3,
            priority: Priority::DEFAULT,
            advert_interval: Centisecs::DEFAULT,
            preempt: true,
            preempt_delay: Duration::ZERO,
            accept_mode: false,
            primary_address,
            virtual_addresses,
            v2_auth: V2Auth::NONE,
        }
    }

    pub const fn family(&self) -> Family {
        Family::of(&self.primary_address)
    }

    /// The authentication adverts carry and must carry: `v2_auth` for
    /// VRRPv2, none for v3.
    pub fn adverts_auth(&self) -> Option<V2Auth> {
        match self.version {
            Version::V2 => Some(self.v2_auth),
            Version::V3 => None,
        }
    }

    /// The interval field as sent in adverts.
    pub fn advert_interval_field(&self) -> Result<AdvertInterval, Error> {
        AdvertInterval::for_version(self.version, self.advert_interval).ok_or(match self.version {
            Version::V2 => Error::V2IntervalNotWholeSeconds(self.advert_interval),
            Version::V3 => Error::V3IntervalOutOfRange(self.advert_interval),
        })
    }

    pub fn validate(&self) -> Result<(), Error> {
        if !self.vrid.is_valid() {
            return Err(Error::InvalidVrid);
        }
        if self.priority.is_resign() {
            return Err(Error::InvalidPriority);
        }
        if self.advert_interval.0 == 0 {
            return Err(Error::ZeroInterval);
        }
        self.advert_interval_field()?;
        if self.version == Version::V2 && self.family() == Family::Ipv6 {
            return Err(Error::V2OverIpv6);
        }
        if self.virtual_addresses.is_empty() {
            return Err(Error::NoVirtualAddresses);
        }
        if self.virtual_addresses.len() > usize::from(u8::MAX) {
            return Err(Error::BadAddressCount(self.virtual_addresses.len()));
        }
        if let Some(bad) = self
            .virtual_addresses
            .iter()
            .find(|a| Family::of(a) != self.family())
        {
            return Err(Error::WrongFamily(*bad));
        }
        Ok(())
    }
}

/// Events fed to [`Router::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Start the instance (RFC 9568 section 6.4.1 Startup event).
    Startup,
    /// Stop the instance: a master sends a priority-0 advert and removes its
    /// VIPs (RFC 9568 sections 6.4.2, 6.4.3 Shutdown event).
    Shutdown,
    /// An advert that passed the receive checks ([`crate::wire::rx`]).
    AdvertReceived {
        /// The sender's primary address (IP source).
        from: IpAddr,
        advert: Advert,
        /// Its address list equals ours ([`crate::wire::Received::addresses_match`]).
        addresses_match: bool,
    },
    /// The effective priority from tracking ([`crate::track`]). A master
    /// advertises it at once. 0 is treated as 1 (resignation is `Standby`).
    PriorityChanged(Priority),
    /// Interface down or a weight-0 tracker failing (true), or recovered (false).
    Fault(bool),
    /// Administrative standby: a master resigns with a priority-0 advert and
    /// every state stays backup until `Standby(false)`.
    Standby(bool),
    /// Become master now if eligible (backup, no fault, no standby): used by
    /// cluster control when membership proves the master dead.
    ForceTakeover,
    /// A sync-group command ([`crate::sync_group`]).
    Sync(SyncCommand),
}

/// What a sync group asks a member to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncCommand {
    /// Follow a member that became master: take over if eligible.
    Master,
    /// Follow a member that left master: leave master without a priority-0
    /// advert and restart the master-down timer.
    Backup,
}

/// Actions for the driver, drained with [`Router::poll_action`] in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send an advert with this priority (0: resignation) and interval;
    /// [`Router::advert`] builds it.
    SendAdvert {
        priority: Priority,
        interval: Centisecs,
    },
    /// Add the virtual addresses to the interface.
    AddVips,
    /// Remove the virtual addresses from the interface.
    DelVips,
    /// Send a burst of gratuitous ARPs (IPv4) / unsolicited NAs (IPv6) for
    /// every VIP; the driver owns repeat count, spacing and periodic refresh.
    SendGratuitous,
    /// A state transition, for notify programs, metrics and status.
    StateChanged {
        from: StateKind,
        to: StateKind,
        reason: TransitionReason,
    },
    /// Something worth a log line (rate-limited here: once per cause).
    Warn(Warning),
}

/// Warnings surfaced as [`Action::Warn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Warning {
    /// An advert's address list differs from ours. It still takes part in
    /// the election. Reported when a sender starts mismatching.
    AddressListMismatch { from: IpAddr },
    /// An advert handed to the router that does not belong to this instance
    /// (the driver's receive checks should have dropped it).
    IgnoredAdvert { from: IpAddr, reason: DropReason },
}

/// The RFC state with its deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not started, or shut down.
    Initialize,
    Backup {
        /// When the Master_Down_Timer fires. `None` while in standby.
        master_down_at: Option<Instant>,
        /// Master_Adver_Interval: learned from the master's adverts (v3).
        master_adver_interval: Centisecs,
        /// halb: when a pending preemption of a lower-priority master happens.
        preempt_at: Option<Instant>,
    },
    Master {
        /// When the Adver_Timer fires.
        advert_at: Instant,
    },
    /// Interface down or a weight-0 tracker failing.
    Fault,
}

impl State {
    pub const fn kind(&self) -> StateKind {
        match self {
            State::Initialize => StateKind::Initialize,
            State::Backup { .. } => StateKind::Backup,
            State::Master { .. } => StateKind::Master,
            State::Fault => StateKind::Fault,
        }
    }
}

/// The state without its data: for transitions, metrics and notify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateKind {
    Initialize,
    Backup,
    Master,
    Fault,
}

impl StateKind {
    /// Lower-case name (`halb_vrrp_state` label, notify argument in upper case).
    pub const fn as_str(self) -> &'static str {
        match self {
            StateKind::Initialize => "initialize",
            StateKind::Backup => "backup",
            StateKind::Master => "master",
            StateKind::Fault => "fault",
        }
    }
}

impl fmt::Display for StateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a transition happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransitionReason {
    /// Initialize -> Backup on startup (RFC 9568 section 6.4.1).
    Startup,
    /// Initialize -> Master: priority 255 (RFC 9568 section 6.4.1).
    AddressOwner,
    /// Backup -> Master: no advert for Master_Down_Interval (section 6.4.2).
    MasterDownTimer,
    /// Backup -> Master: Skew_Time after a priority-0 advert (section 6.4.2).
    ResignReceived,
    /// Backup -> Master: preemption of a lower-priority master.
    Preempted,
    /// Master -> Backup: a higher-priority advert (section 6.4.3).
    HigherPriorityAdvert,
    /// Master -> Backup: equal priority, higher sender address (section 6.4.3).
    TieBreakLost,
    /// Any -> Initialize (sections 6.4.2, 6.4.3).
    Shutdown,
    /// Any -> Fault.
    Fault,
    /// Fault -> Backup / Master.
    FaultCleared,
    /// Master -> Backup: administrative standby.
    Standby,
    /// Backup -> Master: [`Input::ForceTakeover`].
    Takeover,
    /// Followed a sync-group member.
    SyncGroup,
    /// Initialize -> Master: a new halb process took over the instance its
    /// predecessor was master of (`halb run --upgrade`); the VIPs never
    /// left the interface.
    Upgrade,
}

impl TransitionReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            TransitionReason::Startup => "startup",
            TransitionReason::AddressOwner => "address_owner",
            TransitionReason::MasterDownTimer => "master_down_timer",
            TransitionReason::ResignReceived => "resign_received",
            TransitionReason::Preempted => "preempted",
            TransitionReason::HigherPriorityAdvert => "higher_priority_advert",
            TransitionReason::TieBreakLost => "tie_break_lost",
            TransitionReason::Shutdown => "shutdown",
            TransitionReason::Fault => "fault",
            TransitionReason::FaultCleared => "fault_cleared",
            TransitionReason::Standby => "standby",
            TransitionReason::Takeover => "takeover",
            TransitionReason::SyncGroup => "sync_group",
            TransitionReason::Upgrade => "upgrade",
        }
    }
}

impl fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The last transition, for `halb status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub at: Instant,
    pub from: StateKind,
    pub to: StateKind,
    pub reason: TransitionReason,
}

/// Counters kept by the router (the driver exports them as metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub adverts_received: u64,
    pub adverts_sent: u64,
    pub priority_zero_received: u64,
    pub priority_zero_sent: u64,
    /// Adverts whose address list differs from ours (still used in the election).
    pub address_list_mismatch: u64,
    /// Adverts handed in that do not belong to this instance.
    pub adverts_ignored: u64,
    /// Lower-priority adverts a master answered (split-brain heal).
    pub lower_priority_answered: u64,
    pub became_master: u64,
    pub released_master: u64,
}

/// A snapshot for `halb status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: StateKind,
    pub effective_priority: Priority,
    /// The current master's address: ours when master, the last accepted
    /// advert's sender when backup, `None` when unknown.
    pub master: Option<IpAddr>,
    pub master_priority: Option<Priority>,
    pub fault: bool,
    pub standby: bool,
    pub last_transition: Option<Transition>,
}

/// Why the Master_Down_Timer has its current value (to label the transition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DownCause {
    Timer,
    Resign,
    /// Preempt on, zero delay, lower-priority adverts being discarded.
    PreemptPending,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PeerMaster {
    address: IpAddr,
    priority: Priority,
}

/// One VRRP virtual router instance.
#[derive(Debug, Clone)]
pub struct Router {
    config: RouterConfig,
    interval_field: AdvertInterval,
    state: State,
    priority: Priority,
    fault: bool,
    standby: bool,
    down_cause: DownCause,
    master: Option<PeerMaster>,
    mismatch_warned: Option<IpAddr>,
    actions: VecDeque<Action>,
    stats: Stats,
    last_transition: Option<Transition>,
}

impl Router {
    /// A router in [`State::Initialize`]; send [`Input::Startup`] to start it.
    pub fn new(config: RouterConfig) -> Result<Router, Error> {
        config.validate()?;
        let interval_field = config.advert_interval_field()?;
        Ok(Router {
            priority: config.priority,
            interval_field,
            config,
            state: State::Initialize,
            fault: false,
            standby: false,
            down_cause: DownCause::Timer,
            master: None,
            mismatch_warned: None,
            actions: VecDeque::new(),
            stats: Stats::default(),
            last_transition: None,
        })
    }

    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn state_kind(&self) -> StateKind {
        self.state.kind()
    }

    /// The effective priority (base priority adjusted by tracking).
    pub fn priority(&self) -> Priority {
        self.priority
    }

    pub fn is_master(&self) -> bool {
        matches!(self.state, State::Master { .. })
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Whether, as master, this router accepts packets addressed to the VIPs
    /// (RFC 9568 section 6.4.3: the address owner or Accept_Mode).
    pub fn accepts_vip_traffic(&self) -> bool {
        self.is_master() && (self.config.priority.is_owner() || self.config.accept_mode)
    }

    pub fn status(&self) -> Status {
        let (master, master_priority) = match self.state {
            State::Master { .. } => (Some(self.config.primary_address), Some(self.priority)),
            State::Backup { .. } => match self.master {
                Some(m) => (Some(m.address), Some(m.priority)),
                None => (None, None),
            },
            State::Initialize | State::Fault => (None, None),
        };
        Status {
            state: self.state.kind(),
            effective_priority: self.priority,
            master,
            master_priority,
            fault: self.fault,
            standby: self.standby,
            last_transition: self.last_transition,
        }
    }

    /// The advert for an [`Action::SendAdvert`] with `priority`.
    pub fn advert(&self, priority: Priority) -> Advert {
        Advert {
            version: self.config.version,
            vrid: self.config.vrid,
            priority,
            interval: self.interval_field,
            addresses: self.config.virtual_addresses.clone(),
            auth: self.config.adverts_auth(),
        }
    }

    /// Receive checks for this instance, in multicast mode with our primary
    /// address as the only local address; the driver adds unicast peers
    /// and other local addresses as configured.
    pub fn rx_policy(&self) -> RxPolicy {
        RxPolicy {
            version: self.config.version,
            vrid: self.config.vrid,
            family: self.config.family(),
            advert_interval: self.config.advert_interval,
            v2_auth: self.config.adverts_auth().unwrap_or(V2Auth::NONE),
            virtual_addresses: self.config.virtual_addresses.clone(),
            unicast_peers: Vec::new(),
            local_addresses: vec![self.config.primary_address],
            check_ttl: true,
            v3_ipv4_checksum: V3Ipv4Checksum::PseudoHeader,
        }
    }

    /// The next action to execute, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Master { advert_at } => Some(advert_at),
            State::Backup {
                master_down_at,
                preempt_at,
                ..
            } => match (master_down_at, preempt_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            State::Initialize | State::Fault => None,
        }
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Master { advert_at } if advert_at <= now => {
                // RFC 9568 section 6.4.3: "If the Adver_Timer fires": send an
                // ADVERTISEMENT, reset the Adver_Timer to Advertisement_Interval.
                self.send_advert(self.priority);
                let interval = self.config.advert_interval.as_duration();
                let mut next = advert_at + interval;
                if next <= now {
                    next = now + interval;
                }
                self.state = State::Master { advert_at: next };
            }
            State::Backup {
                master_down_at,
                preempt_at,
                ..
            } => {
                if self.standby {
                    return;
                }
                if preempt_at.is_some_and(|t| t <= now) {
                    // halb: preempt_delay elapsed with a lower-priority master present.
                    self.become_master(now, TransitionReason::Preempted);
                } else if master_down_at.is_some_and(|t| t <= now) {
                    // RFC 9568 section 6.4.2: "If the Master_Down_Timer fires".
                    let reason = match self.down_cause {
                        DownCause::Timer => TransitionReason::MasterDownTimer,
                        DownCause::Resign => TransitionReason::ResignReceived,
                        DownCause::PreemptPending => TransitionReason::Preempted,
                    };
                    self.become_master(now, reason);
                }
            }
            _ => {}
        }
    }

    /// Feeds one event.
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Startup => {
                if self.state == State::Initialize {
                    self.startup(now, TransitionReason::Startup);
                }
            }
            Input::Shutdown => self.shutdown(now),
            Input::AdvertReceived {
                from,
                advert,
                addresses_match,
            } => self.on_advert(now, from, &advert, addresses_match),
            Input::PriorityChanged(p) => self.on_priority(now, p),
            Input::Fault(on) => self.on_fault(now, on),
            Input::Standby(on) => self.on_standby(now, on),
            Input::ForceTakeover => {
                if self.eligible_for_master() {
                    self.become_master(now, TransitionReason::Takeover);
                }
            }
            Input::Sync(SyncCommand::Master) => {
                if self.eligible_for_master() {
                    self.become_master(now, TransitionReason::SyncGroup);
                }
            }
            Input::Sync(SyncCommand::Backup) => {
                if self.is_master() {
                    self.leave_master_to_backup(now, TransitionReason::SyncGroup, None);
                }
            }
        }
    }

    fn eligible_for_master(&self) -> bool {
        matches!(self.state, State::Backup { .. }) && !self.standby && !self.fault
    }

    fn mdi(&self, master_adver_interval: Centisecs) -> Duration {
        master_down_interval(self.priority, master_adver_interval)
    }

    /// RFC 9568 section 6.4.1, the Startup event.
    fn startup(&mut self, now: Instant, reason: TransitionReason) {
        let from = self.state.kind();
        if self.fault {
            self.state = State::Fault;
            self.transition(now, from, TransitionReason::Fault);
        } else if self.priority.is_owner() && !self.standby {
            // "If the Priority = 255": send an ADVERTISEMENT, gratuitous ARP /
            // unsolicited NA, set the Adver_Timer, transition to Master.
            let reason = if reason == TransitionReason::Startup {
                TransitionReason::AddressOwner
            } else {
                reason
            };
            self.become_master(now, reason);
        } else {
            // "else": Master_Adver_Interval = Advertisement_Interval,
            // Master_Down_Timer = Master_Down_Interval, transition to Backup.
            self.enter_backup(now, self.config.advert_interval);
            self.transition(now, from, reason);
        }
    }

    fn shutdown(&mut self, now: Instant) {
        let from = self.state.kind();
        match self.state {
            State::Initialize => return,
            State::Master { .. } => {
                // RFC 9568 section 6.4.3 Shutdown: cancel the Adver_Timer, send
                // an ADVERTISEMENT with Priority = 0, transition to Initialize.
                self.send_advert(Priority::RESIGN);
                self.actions.push_back(Action::DelVips);
                self.stats.released_master += 1;
            }
            // RFC 9568 section 6.4.2 Shutdown: cancel the Master_Down_Timer.
            State::Backup { .. } | State::Fault => {}
        }
        self.state = State::Initialize;
        self.master = None;
        self.transition(now, from, TransitionReason::Shutdown);
    }

    fn enter_backup(&mut self, now: Instant, master_adver_interval: Centisecs) {
        let master_down_at = (!self.standby).then(|| now + self.mdi(master_adver_interval));
        self.state = State::Backup {
            master_down_at,
            master_adver_interval,
            preempt_at: None,
        };
        self.down_cause = DownCause::Timer;
    }

    fn become_master(&mut self, now: Instant, reason: TransitionReason) {
        let from = self.state.kind();
        self.state = State::Master {
            advert_at: now + self.config.advert_interval.as_duration(),
        };
        self.master = None;
        self.send_advert(self.priority);
        self.actions.push_back(Action::AddVips);
        self.actions.push_back(Action::SendGratuitous);
        self.stats.became_master += 1;
        self.transition(now, from, reason);
    }

    /// Master -> Backup, optionally after a priority-0 advert; `learned` is the
    /// Master_Adver_Interval from the advert that caused it (v3).
    fn leave_master_to_backup(
        &mut self,
        now: Instant,
        reason: TransitionReason,
        learned: Option<Centisecs>,
    ) {
        let from = self.state.kind();
        self.actions.push_back(Action::DelVips);
        self.stats.released_master += 1;
        let mai = learned.unwrap_or(self.config.advert_interval);
        self.enter_backup(now, mai);
        self.transition(now, from, reason);
    }

    fn send_advert(&mut self, priority: Priority) {
        self.stats.adverts_sent += 1;
        if priority.is_resign() {
            self.stats.priority_zero_sent += 1;
        }
        self.actions.push_back(Action::SendAdvert {
            priority,
            interval: self.config.advert_interval,
        });
    }

    fn transition(&mut self, now: Instant, from: StateKind, reason: TransitionReason) {
        let to = self.state.kind();
        if from == to {
            return;
        }
        tracing::info!(
            vrid = self.config.vrid.0,
            %from,
            %to,
            %reason,
            priority = self.priority.0,
            "vrrp transition"
        );
        self.last_transition = Some(Transition {
            at: now,
            from,
            to,
            reason,
        });
        self.actions
            .push_back(Action::StateChanged { from, to, reason });
    }

    fn ignore(&mut self, from: IpAddr, reason: DropReason) {
        self.stats.adverts_ignored += 1;
        self.actions
            .push_back(Action::Warn(Warning::IgnoredAdvert { from, reason }));
    }

    fn learned_interval(&self, advert: &Advert, current: Centisecs) -> Centisecs {
        match advert.interval {
            // RFC 9568 section 6.4.2: Master_Adver_Interval from the advert.
            AdvertInterval::V3(cs) => cs,
            // RFC 3768: no learning (equal intervals are enforced on receive).
            AdvertInterval::V2(_) => current,
        }
    }

    fn on_advert(&mut self, now: Instant, from: IpAddr, advert: &Advert, addresses_match: bool) {
        self.stats.adverts_received += 1;
        if advert.vrid != self.config.vrid {
            return self.ignore(from, DropReason::VridMismatch);
        }
        if advert.version != self.config.version || advert.interval.version() != self.config.version
        {
            return self.ignore(from, DropReason::BadVersion);
        }
        if Family::of(&from) != self.config.family() {
            return self.ignore(from, DropReason::WrongFamily);
        }
        if from == self.config.primary_address {
            return self.ignore(from, DropReason::OwnAdvert);
        }
        if advert.interval.as_centisecs().0 == 0 {
            return self.ignore(from, DropReason::ZeroInterval);
        }
        if advert.priority.is_resign() {
            self.stats.priority_zero_received += 1;
        }
        if addresses_match {
            if self.mismatch_warned == Some(from) {
                self.mismatch_warned = None;
            }
        } else {
            // halb: counted and reported, but the advert still takes part.
            self.stats.address_list_mismatch += 1;
            if self.mismatch_warned != Some(from) {
                self.mismatch_warned = Some(from);
                tracing::warn!(vrid = self.config.vrid.0, %from, "advert address list differs from ours");
                self.actions
                    .push_back(Action::Warn(Warning::AddressListMismatch { from }));
            }
        }
        match self.state {
            State::Initialize | State::Fault => {}
            State::Backup {
                master_down_at,
                master_adver_interval,
                preempt_at,
            } => self.backup_advert(
                now,
                from,
                advert,
                master_down_at,
                master_adver_interval,
                preempt_at,
            ),
            State::Master { .. } => self.master_advert(now, from, advert),
        }
    }

    /// RFC 9568 section 6.4.2, "If an ADVERTISEMENT is received".
    fn backup_advert(
        &mut self,
        now: Instant,
        from: IpAddr,
        advert: &Advert,
        master_down_at: Option<Instant>,
        master_adver_interval: Centisecs,
        preempt_at: Option<Instant>,
    ) {
        let armed = !self.standby;
        if advert.priority.is_resign() {
            // "If the Priority in the ADVERTISEMENT is zero, then:
            //  Set the Master_Down_Timer to Skew_Time".
            if self.master.is_some_and(|m| m.address == from) {
                self.master = None;
            }
            self.state = State::Backup {
                master_down_at: armed
                    .then(|| now + skew_time(self.priority, master_adver_interval)),
                master_adver_interval,
                preempt_at: None,
            };
            self.down_cause = DownCause::Resign;
            return;
        }
        self.master = Some(PeerMaster {
            address: from,
            priority: advert.priority,
        });
        if !self.config.preempt || advert.priority >= self.priority {
            // "If Preempt_Mode is False, or if the Priority in the ADVERTISEMENT
            //  is greater than or equal to the local Priority": set
            //  Master_Adver_Interval from the advert, recompute Skew_Time and
            //  Master_Down_Interval, reset the Master_Down_Timer.
            let mai = self.learned_interval(advert, master_adver_interval);
            self.state = State::Backup {
                master_down_at: armed.then(|| now + self.mdi(mai)),
                master_adver_interval: mai,
                preempt_at: None,
            };
            self.down_cause = DownCause::Timer;
        } else if !self.config.preempt_delay.is_zero() && armed {
            // halb: preempt_delay. Hold the lower-priority master as master
            // (reset the down timer like an accepted advert) and preempt when
            // the delay, started by the first such advert, has elapsed.
            let mai = self.learned_interval(advert, master_adver_interval);
            self.state = State::Backup {
                master_down_at: Some(now + self.mdi(mai)),
                master_adver_interval: mai,
                preempt_at: Some(preempt_at.unwrap_or(now + self.config.preempt_delay)),
            };
            self.down_cause = DownCause::Timer;
        } else {
            // "else (preempt was true and priority was less than the local
            //  priority): Discard the ADVERTISEMENT". The Master_Down_Timer
            // keeps running and its expiry is a preemption.
            self.state = State::Backup {
                master_down_at,
                master_adver_interval,
                preempt_at: None,
            };
            if armed {
                self.down_cause = DownCause::PreemptPending;
            }
        }
    }

    /// RFC 9568 section 6.4.3, "If an ADVERTISEMENT is received".
    fn master_advert(&mut self, now: Instant, from: IpAddr, advert: &Advert) {
        if advert.priority.is_resign() {
            // "If the Priority in the ADVERTISEMENT is zero, then: Send an
            //  ADVERTISEMENT, Reset the Adver_Timer to Advertisement_Interval".
            self.send_advert(self.priority);
            self.state = State::Master {
                advert_at: now + self.config.advert_interval.as_duration(),
            };
            return;
        }
        let higher = advert.priority > self.priority;
        // Addresses of one family compare as unsigned integers in network
        // byte order, which is what `Ord` on Ipv4Addr / Ipv6Addr does.
        let tie_lost = advert.priority == self.priority && from > self.config.primary_address;
        if higher || tie_lost {
            // "Cancel Adver_Timer, set Master_Adver_Interval to the advert's,
            //  recompute Skew_Time and Master_Down_Interval, set the
            //  Master_Down_Timer, transition to Backup".
            let mai = self.learned_interval(advert, self.config.advert_interval);
            let reason = if higher {
                TransitionReason::HigherPriorityAdvert
            } else {
                TransitionReason::TieBreakLost
            };
            self.leave_master_to_backup(now, reason, Some(mai));
            self.master = Some(PeerMaster {
                address: from,
                priority: advert.priority,
            });
        } else {
            // "else: Discard the ADVERTISEMENT, Send an ADVERTISEMENT
            //  immediately to assert the Active state". halb: and repeat the
            // gratuitous ARPs / NAs, so that no client keeps the other
            // master's MAC after a dual-master period.
            self.stats.lower_priority_answered += 1;
            self.send_advert(self.priority);
            self.actions.push_back(Action::SendGratuitous);
        }
    }

    fn on_priority(&mut self, now: Instant, priority: Priority) {
        let priority = if priority.is_resign() {
            tracing::warn!(
                vrid = self.config.vrid.0,
                "effective priority 0 treated as 1"
            );
            Priority::MIN_BACKUP
        } else {
            priority
        };
        if priority == self.priority {
            return;
        }
        self.priority = priority;
        match self.state {
            State::Master { .. } => {
                // Advertise the new priority at once.
                self.send_advert(priority);
                self.state = State::Master {
                    advert_at: now + self.config.advert_interval.as_duration(),
                };
            }
            State::Backup {
                master_down_at,
                master_adver_interval,
                preempt_at,
            } => {
                if self.standby {
                    return;
                }
                let lower_master = self
                    .master
                    .is_some_and(|m| m.priority < priority && self.config.preempt);
                let preempt_at = if !lower_master {
                    if self.down_cause == DownCause::PreemptPending {
                        self.down_cause = DownCause::Timer;
                    }
                    None
                } else if self.config.preempt_delay.is_zero() {
                    self.down_cause = DownCause::PreemptPending;
                    None
                } else {
                    Some(preempt_at.unwrap_or(now + self.config.preempt_delay))
                };
                self.state = State::Backup {
                    master_down_at,
                    master_adver_interval,
                    preempt_at,
                };
            }
            State::Initialize | State::Fault => {}
        }
    }

    fn on_fault(&mut self, now: Instant, on: bool) {
        if on == self.fault {
            return;
        }
        self.fault = on;
        let from = self.state.kind();
        if on {
            match self.state {
                State::Initialize | State::Fault => return,
                State::Master { .. } => {
                    // Like keepalived: resign so that a backup takes over after Skew_Time.
                    self.send_advert(Priority::RESIGN);
                    self.actions.push_back(Action::DelVips);
                    self.stats.released_master += 1;
                }
                State::Backup { .. } => {}
            }
            self.state = State::Fault;
            self.master = None;
            self.transition(now, from, TransitionReason::Fault);
        } else if self.state == State::Fault {
            self.startup(now, TransitionReason::FaultCleared);
        }
    }

    fn on_standby(&mut self, now: Instant, on: bool) {
        if on == self.standby {
            return;
        }
        self.standby = on;
        match self.state {
            State::Master { .. } if on => {
                let from = self.state.kind();
                self.send_advert(Priority::RESIGN);
                self.actions.push_back(Action::DelVips);
                self.stats.released_master += 1;
                self.enter_backup(now, self.config.advert_interval);
                self.transition(now, from, TransitionReason::Standby);
            }
            State::Backup {
                master_adver_interval,
                ..
            } => {
                if on {
                    self.state = State::Backup {
                        master_down_at: None,
                        master_adver_interval,
                        preempt_at: None,
                    };
                } else if self.priority.is_owner() {
                    self.become_master(now, TransitionReason::AddressOwner);
                } else {
                    self.enter_backup(now, master_adver_interval);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
