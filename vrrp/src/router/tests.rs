//! Unit tests of every row of RFC 9568 sections 6.4.1-6.4.3 (and the halb
//! extensions) with a virtual clock: a base `Instant` plus `Duration`s.
//! Timer values are asserted exactly, in microseconds.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::*;
use crate::wire::{Advert, AdvertInterval, V2Auth, Version};
use crate::{Centisecs, Priority, Secs, VrId};

const ME: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
const LOWER_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const HIGHER_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3));
const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100));

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

fn config(priority: u8) -> RouterConfig {
    RouterConfig {
        priority: Priority(priority),
        ..RouterConfig::new(VrId(42), ME, vec![VIP])
    }
}

fn router(config: RouterConfig) -> Router {
    Router::new(config).expect("valid config")
}

fn drain(r: &mut Router) -> Vec<Action> {
    std::iter::from_fn(|| r.poll_action()).collect()
}

fn advert(priority: u8, interval_cs: u16) -> Advert {
    Advert {
        version: Version::V3,
        vrid: VrId(42),
        priority: Priority(priority),
        interval: AdvertInterval::V3(Centisecs(interval_cs)),
        addresses: vec![VIP],
        auth: None,
    }
}

fn rx(r: &mut Router, now: Instant, from: IpAddr, a: Advert) {
    r.handle(
        now,
        Input::AdvertReceived {
            from,
            advert: a,
            addresses_match: true,
        },
    );
}

fn send(priority: u8) -> Action {
    Action::SendAdvert {
        priority: Priority(priority),
        interval: Centisecs(100),
    }
}

fn changed(from: StateKind, to: StateKind, reason: TransitionReason) -> Action {
    Action::StateChanged { from, to, reason }
}

fn become_master_actions(priority: u8, from: StateKind, reason: TransitionReason) -> Vec<Action> {
    vec![
        send(priority),
        Action::AddVips,
        Action::SendGratuitous,
        changed(from, StateKind::Master, reason),
    ]
}

/// A started backup (priority `p`, 1 s) and the start time.
fn backup(p: u8) -> (Router, Instant) {
    let t0 = Instant::now();
    let mut r = router(config(p));
    r.handle(t0, Input::Startup);
    drain(&mut r);
    (r, t0)
}

/// A master (priority `p`) reached through the down timer, and that time.
fn master(p: u8) -> (Router, Instant) {
    let (mut r, t0) = backup(p);
    let t = r.poll_timeout().expect("down timer");
    assert!(t > t0);
    r.handle_timeout(t);
    drain(&mut r);
    assert!(r.is_master());
    (r, t)
}

fn down_at(r: &Router) -> Option<Instant> {
    match r.state() {
        State::Backup { master_down_at, .. } => master_down_at,
        other => panic!("not backup: {other:?}"),
    }
}

// ---- timer arithmetic -------------------------------------------------------

#[test]
fn timer_values_exact() {
    // Skew_Time = ((256 - 100) * 1_000_000 us) / 256 = 609_375 us.
    assert_eq!(skew_time(Priority(100), Centisecs(100)), us(609_375));
    assert_eq!(
        master_down_interval(Priority(100), Centisecs(100)),
        us(3_609_375)
    );
    // (256 - 200) * 1 s / 256 = 218_750 us.
    assert_eq!(
        master_down_interval(Priority(200), Centisecs(100)),
        us(3_218_750)
    );
    // 10 ms adverts, priority 150: 106 * 10_000 / 256 = 4_140.625 -> 4_140 us.
    assert_eq!(
        master_down_interval(Priority(150), Centisecs(1)),
        us(34_140)
    );
}

// ---- RFC 9568 section 6.4.1 Initialize ---------------------------------------

#[test]
fn init_startup_owner_becomes_master_at_once() {
    let t0 = Instant::now();
    let mut r = router(config(255));
    r.handle(t0, Input::Startup);
    assert_eq!(
        drain(&mut r),
        become_master_actions(255, StateKind::Initialize, TransitionReason::AddressOwner)
    );
    assert_eq!(
        r.state(),
        State::Master {
            advert_at: t0 + us(1_000_000)
        }
    );
    assert_eq!(r.poll_timeout(), Some(t0 + us(1_000_000)));
    assert!(r.accepts_vip_traffic(), "the owner accepts VIP traffic");
}

#[test]
fn init_startup_non_owner_becomes_backup_with_master_down_interval() {
    let t0 = Instant::now();
    let mut r = router(config(100));
    assert_eq!(r.poll_timeout(), None);
    r.handle(t0, Input::Startup);
    assert_eq!(
        drain(&mut r),
        vec![changed(
            StateKind::Initialize,
            StateKind::Backup,
            TransitionReason::Startup
        )]
    );
    assert_eq!(
        r.state(),
        State::Backup {
            master_down_at: Some(t0 + us(3_609_375)),
            master_adver_interval: Centisecs(100),
            preempt_at: None,
        }
    );
    // A second Startup is ignored.
    r.handle(t0 + us(5), Input::Startup);
    assert!(drain(&mut r).is_empty());
    assert_eq!(down_at(&r), Some(t0 + us(3_609_375)));
}

#[test]
fn init_startup_with_fault_goes_to_fault() {
    let t0 = Instant::now();
    let mut r = router(config(255));
    r.handle(t0, Input::Fault(true));
    assert!(drain(&mut r).is_empty());
    r.handle(t0, Input::Startup);
    assert_eq!(
        drain(&mut r),
        vec![changed(
            StateKind::Initialize,
            StateKind::Fault,
            TransitionReason::Fault
        )]
    );
    assert_eq!(r.poll_timeout(), None);
}

// ---- RFC 9568 section 6.4.2 Backup ------------------------------------------

#[test]
fn backup_shutdown_cancels_timer_and_goes_initialize() {
    let (mut r, t0) = backup(100);
    r.handle(t0 + us(10), Input::Shutdown);
    assert_eq!(
        drain(&mut r),
        vec![changed(
            StateKind::Backup,
            StateKind::Initialize,
            TransitionReason::Shutdown
        )]
    );
    assert_eq!(r.state(), State::Initialize);
    assert_eq!(r.poll_timeout(), None);
}

#[test]
fn backup_master_down_timer_fires_exactly_at_master_down_interval() {
    let (mut r, t0) = backup(100);
    r.handle_timeout(t0 + us(3_609_374));
    assert!(drain(&mut r).is_empty(), "one microsecond early: nothing");
    assert!(!r.is_master());
    let fire = t0 + us(3_609_375);
    r.handle_timeout(fire);
    assert_eq!(
        drain(&mut r),
        become_master_actions(100, StateKind::Backup, TransitionReason::MasterDownTimer)
    );
    assert_eq!(
        r.state(),
        State::Master {
            advert_at: fire + us(1_000_000)
        }
    );
}

#[test]
fn backup_priority_zero_sets_timer_to_skew_time() {
    let (mut r, t0) = backup(100);
    let t = t0 + us(500_000);
    rx(&mut r, t, LOWER_ADDR, advert(0, 100));
    assert!(drain(&mut r).is_empty());
    assert_eq!(down_at(&r), Some(t + us(609_375)));
    assert_eq!(r.stats().priority_zero_received, 1);
    r.handle_timeout(t + us(609_375));
    assert_eq!(
        drain(&mut r),
        become_master_actions(100, StateKind::Backup, TransitionReason::ResignReceived)
    );
}

#[test]
fn backup_priority_zero_uses_learned_interval_for_skew() {
    let (mut r, t0) = backup(100);
    rx(&mut r, t0, LOWER_ADDR, advert(200, 10)); // master at 100 ms
    let t = t0 + us(50_000);
    rx(&mut r, t, LOWER_ADDR, advert(0, 10));
    // 156 * 100_000 / 256 = 60_937.5 -> 60_937 us.
    assert_eq!(down_at(&r), Some(t + us(60_937)));
}

#[test]
fn backup_higher_priority_advert_learns_interval_and_resets_timer() {
    let (mut r, t0) = backup(100);
    let t = t0 + us(1_000_000);
    rx(&mut r, t, LOWER_ADDR, advert(200, 50));
    assert!(drain(&mut r).is_empty());
    // 3 * 500_000 + 156 * 500_000 / 256 (= 304_687.5 -> 304_687).
    assert_eq!(
        r.state(),
        State::Backup {
            master_down_at: Some(t + us(1_804_687)),
            master_adver_interval: Centisecs(50),
            preempt_at: None,
        }
    );
    assert_eq!(r.status().master, Some(LOWER_ADDR));
    assert_eq!(r.status().master_priority, Some(Priority(200)));
}

#[test]
fn backup_equal_priority_advert_resets_timer() {
    let (mut r, t0) = backup(100);
    let t = t0 + us(2_000_000);
    rx(&mut r, t, LOWER_ADDR, advert(100, 100));
    assert_eq!(down_at(&r), Some(t + us(3_609_375)));
}

#[test]
fn backup_no_preempt_accepts_lower_priority_advert() {
    let mut c = config(200);
    c.preempt = false;
    let t0 = Instant::now();
    let mut r = router(c);
    r.handle(t0, Input::Startup);
    drain(&mut r);
    let t = t0 + us(3_000_000);
    rx(&mut r, t, LOWER_ADDR, advert(100, 200));
    // Learned 2 s: 3 * 2_000_000 + 56 * 2_000_000 / 256 = 6_437_500.
    assert_eq!(down_at(&r), Some(t + us(6_437_500)));
    r.handle_timeout(t + us(6_437_499));
    assert!(
        !r.is_master(),
        "a non-preempting backup follows the lower master"
    );
}

#[test]
fn backup_preempt_discards_lower_priority_advert_then_preempts() {
    let (mut r, t0) = backup(200);
    let before = down_at(&r);
    assert_eq!(before, Some(t0 + us(3_218_750)));
    rx(&mut r, t0 + us(1_000_000), LOWER_ADDR, advert(100, 50));
    assert!(drain(&mut r).is_empty());
    assert_eq!(
        r.state(),
        State::Backup {
            master_down_at: before,
            master_adver_interval: Centisecs(100),
            preempt_at: None,
        },
        "discarded: neither the timer nor the interval changed"
    );
    r.handle_timeout(t0 + us(3_218_750));
    assert_eq!(
        drain(&mut r),
        become_master_actions(200, StateKind::Backup, TransitionReason::Preempted)
    );
}

#[test]
fn backup_v2_does_not_learn_interval() {
    let mut c = config(100);
    c.version = Version::V2;
    let t0 = Instant::now();
    let mut r = router(c);
    r.handle(t0, Input::Startup);
    drain(&mut r);
    let a = Advert {
        version: Version::V2,
        vrid: VrId(42),
        priority: Priority(200),
        interval: AdvertInterval::V2(Secs(3)),
        addresses: vec![VIP],
        auth: Some(V2Auth::NONE),
    };
    rx(&mut r, t0, LOWER_ADDR, a);
    assert_eq!(
        r.state(),
        State::Backup {
            master_down_at: Some(t0 + us(3_609_375)),
            master_adver_interval: Centisecs(100),
            preempt_at: None,
        }
    );
}

// ---- RFC 9568 section 6.4.3 Master ------------------------------------------

#[test]
fn master_shutdown_sends_priority_zero_and_removes_vips() {
    let (mut r, t) = master(100);
    r.handle(t + us(1), Input::Shutdown);
    assert_eq!(
        drain(&mut r),
        vec![
            send(0),
            Action::DelVips,
            changed(
                StateKind::Master,
                StateKind::Initialize,
                TransitionReason::Shutdown
            )
        ]
    );
    assert_eq!(r.poll_timeout(), None);
    assert_eq!(r.stats().priority_zero_sent, 1);
}

#[test]
fn master_adver_timer_fires_every_interval() {
    let (mut r, t) = master(100);
    for k in 1..=5u64 {
        let due = t + us(1_000_000 * k);
        assert_eq!(r.poll_timeout(), Some(due));
        r.handle_timeout(due - us(1));
        assert!(drain(&mut r).is_empty());
        r.handle_timeout(due);
        assert_eq!(drain(&mut r), vec![send(100)]);
    }
    // A late driver does not cause a burst of catch-up adverts.
    let late = t + us(9_500_000);
    r.handle_timeout(late);
    assert_eq!(drain(&mut r), vec![send(100)]);
    assert_eq!(r.poll_timeout(), Some(late + us(1_000_000)));
}

#[test]
fn master_priority_zero_advert_answers_and_resets_adver_timer() {
    let (mut r, t) = master(100);
    let now = t + us(300_000);
    rx(&mut r, now, LOWER_ADDR, advert(0, 100));
    assert_eq!(drain(&mut r), vec![send(100)]);
    assert_eq!(
        r.state(),
        State::Master {
            advert_at: now + us(1_000_000)
        }
    );
}

#[test]
fn master_higher_priority_advert_goes_backup() {
    let (mut r, t) = master(100);
    let now = t + us(300_000);
    rx(&mut r, now, LOWER_ADDR, advert(150, 20));
    assert_eq!(
        drain(&mut r),
        vec![
            Action::DelVips,
            changed(
                StateKind::Master,
                StateKind::Backup,
                TransitionReason::HigherPriorityAdvert
            )
        ]
    );
    // Learned 200 ms: 3 * 200_000 + 156 * 200_000 / 256 (= 121_875).
    assert_eq!(
        r.state(),
        State::Backup {
            master_down_at: Some(now + us(721_875)),
            master_adver_interval: Centisecs(20),
            preempt_at: None,
        }
    );
    assert_eq!(r.status().master, Some(LOWER_ADDR));
}

#[test]
fn master_equal_priority_higher_address_goes_backup() {
    let (mut r, t) = master(100);
    rx(&mut r, t, HIGHER_ADDR, advert(100, 100));
    assert_eq!(
        drain(&mut r),
        vec![
            Action::DelVips,
            changed(
                StateKind::Master,
                StateKind::Backup,
                TransitionReason::TieBreakLost
            )
        ]
    );
    assert_eq!(down_at(&r), Some(t + us(3_609_375)));
}

#[test]
fn master_equal_priority_lower_address_is_answered() {
    let (mut r, t) = master(100);
    rx(&mut r, t, LOWER_ADDR, advert(100, 100));
    assert_eq!(drain(&mut r), vec![send(100), Action::SendGratuitous]);
    assert!(r.is_master());
}

#[test]
fn master_lower_priority_advert_answered_with_advert_and_gratuitous() {
    let (mut r, t) = master(200);
    let timer = r.poll_timeout();
    rx(&mut r, t + us(10), LOWER_ADDR, advert(100, 100));
    assert_eq!(drain(&mut r), vec![send(200), Action::SendGratuitous]);
    assert!(r.is_master());
    assert_eq!(r.poll_timeout(), timer, "the Adver_Timer is not reset");
    assert_eq!(r.stats().lower_priority_answered, 1);
}

// ---- halb extensions ----------------------------------------------------------

#[test]
fn preempt_delay_holds_lower_master_then_preempts() {
    let mut c = config(200);
    c.preempt_delay = Duration::from_secs(10);
    let t0 = Instant::now();
    let mut r = router(c);
    r.handle(t0, Input::Startup);
    drain(&mut r);
    // The lower master advertises every second; the down timer never fires.
    let first = t0 + us(100_000);
    for k in 0..10u64 {
        let t = first + us(1_000_000 * k);
        r.handle_timeout(t);
        rx(&mut r, t, LOWER_ADDR, advert(100, 100));
        assert!(drain(&mut r).is_empty(), "no takeover at {k}");
        assert_eq!(
            r.state(),
            State::Backup {
                master_down_at: Some(t + us(3_218_750)),
                master_adver_interval: Centisecs(100),
                preempt_at: Some(first + us(10_000_000)),
            }
        );
    }
    assert_eq!(r.poll_timeout(), Some(first + us(10_000_000)));
    r.handle_timeout(first + us(10_000_000));
    assert_eq!(
        drain(&mut r),
        become_master_actions(200, StateKind::Backup, TransitionReason::Preempted)
    );
}

#[test]
fn preempt_delay_cancelled_by_higher_advert() {
    let mut c = config(200);
    c.preempt_delay = Duration::from_secs(10);
    let (t0, mut r) = (Instant::now(), router(c));
    r.handle(t0, Input::Startup);
    rx(&mut r, t0, LOWER_ADDR, advert(100, 100));
    assert!(matches!(
        r.state(),
        State::Backup {
            preempt_at: Some(_),
            ..
        }
    ));
    rx(&mut r, t0 + us(1), HIGHER_ADDR, advert(250, 100));
    assert!(matches!(
        r.state(),
        State::Backup {
            preempt_at: None,
            ..
        }
    ));
}

#[test]
fn address_mismatch_counted_warned_once_and_still_elected() {
    let (mut r, t0) = backup(100);
    for k in 0..3u64 {
        let t = t0 + us(1_000_000 * k);
        r.handle(
            t,
            Input::AdvertReceived {
                from: LOWER_ADDR,
                advert: advert(200, 100),
                addresses_match: false,
            },
        );
        assert_eq!(
            down_at(&r),
            Some(t + us(3_609_375)),
            "still used in the election"
        );
    }
    assert_eq!(
        drain(&mut r),
        vec![Action::Warn(Warning::AddressListMismatch {
            from: LOWER_ADDR
        })]
    );
    assert_eq!(r.stats().address_list_mismatch, 3);
    // It matches again, then mismatches again: warned again.
    rx(&mut r, t0, LOWER_ADDR, advert(200, 100));
    r.handle(
        t0,
        Input::AdvertReceived {
            from: LOWER_ADDR,
            advert: advert(200, 100),
            addresses_match: false,
        },
    );
    assert_eq!(drain(&mut r).len(), 1);
}

#[test]
fn foreign_adverts_are_ignored() {
    let (mut r, t0) = backup(100);
    let before = r.state();
    let mut a = advert(200, 100);
    a.vrid = VrId(7);
    rx(&mut r, t0, LOWER_ADDR, a);
    rx(&mut r, t0, ME, advert(200, 100));
    assert_eq!(r.state(), before);
    assert_eq!(
        drain(&mut r),
        vec![
            Action::Warn(Warning::IgnoredAdvert {
                from: LOWER_ADDR,
                reason: DropReason::VridMismatch
            }),
            Action::Warn(Warning::IgnoredAdvert {
                from: ME,
                reason: DropReason::OwnAdvert
            })
        ]
    );
    assert_eq!(r.stats().adverts_ignored, 2);
}

#[test]
fn priority_change_as_master_is_advertised_at_once() {
    let (mut r, t) = master(150);
    let now = t + us(400_000);
    r.handle(now, Input::PriorityChanged(Priority(90)));
    assert_eq!(drain(&mut r), vec![send(90)]);
    assert_eq!(r.poll_timeout(), Some(now + us(1_000_000)));
    r.handle(now, Input::PriorityChanged(Priority(90)));
    assert!(drain(&mut r).is_empty(), "no change, no advert");
    r.handle(now, Input::PriorityChanged(Priority(0)));
    assert_eq!(drain(&mut r), vec![send(1)], "0 is clamped to 1");
}

#[test]
fn priority_rise_above_lower_master_starts_preempt_delay() {
    let mut c = config(100);
    c.preempt_delay = Duration::from_secs(2);
    let (t0, mut r) = (Instant::now(), router(c));
    r.handle(t0, Input::Startup);
    rx(&mut r, t0, LOWER_ADDR, advert(150, 100));
    assert!(matches!(
        r.state(),
        State::Backup {
            preempt_at: None,
            ..
        }
    ));
    let t = t0 + us(100);
    r.handle(t, Input::PriorityChanged(Priority(200)));
    assert!(
        matches!(r.state(), State::Backup { preempt_at: Some(p), .. } if p == t + us(2_000_000))
    );
    r.handle(t, Input::PriorityChanged(Priority(120)));
    assert!(matches!(
        r.state(),
        State::Backup {
            preempt_at: None,
            ..
        }
    ));
}

#[test]
fn fault_as_master_resigns_and_recovers_to_backup() {
    let (mut r, t) = master(100);
    r.handle(t, Input::Fault(true));
    assert_eq!(
        drain(&mut r),
        vec![
            send(0),
            Action::DelVips,
            changed(StateKind::Master, StateKind::Fault, TransitionReason::Fault)
        ]
    );
    assert_eq!(r.poll_timeout(), None);
    rx(&mut r, t, LOWER_ADDR, advert(200, 100));
    assert_eq!(r.state(), State::Fault, "adverts are ignored in Fault");
    let later = t + us(5_000_000);
    r.handle(later, Input::Fault(false));
    assert_eq!(
        drain(&mut r),
        vec![changed(
            StateKind::Fault,
            StateKind::Backup,
            TransitionReason::FaultCleared
        )]
    );
    assert_eq!(down_at(&r), Some(later + us(3_609_375)));
}

#[test]
fn standby_resigns_and_never_promotes_until_cleared() {
    let (mut r, t) = master(100);
    r.handle(t, Input::Standby(true));
    assert_eq!(
        drain(&mut r),
        vec![
            send(0),
            Action::DelVips,
            changed(
                StateKind::Master,
                StateKind::Backup,
                TransitionReason::Standby
            )
        ]
    );
    assert_eq!(r.poll_timeout(), None);
    r.handle_timeout(t + us(100_000_000));
    rx(&mut r, t, LOWER_ADDR, advert(0, 100));
    r.handle(t, Input::ForceTakeover);
    assert!(drain(&mut r).is_empty());
    assert!(!r.is_master());
    let later = t + us(200_000_000);
    r.handle(later, Input::Standby(false));
    assert_eq!(down_at(&r), Some(later + us(3_609_375)));
}

#[test]
fn force_takeover_only_when_eligible() {
    let (mut r, t0) = backup(100);
    r.handle(t0, Input::ForceTakeover);
    assert_eq!(
        drain(&mut r),
        become_master_actions(100, StateKind::Backup, TransitionReason::Takeover)
    );
    let mut idle = router(config(100));
    idle.handle(t0, Input::ForceTakeover);
    assert!(drain(&mut idle).is_empty(), "not started: not eligible");
}

#[test]
fn sync_backup_leaves_master_without_resignation() {
    let (mut r, t) = master(100);
    r.handle(t, Input::Sync(SyncCommand::Backup));
    assert_eq!(
        drain(&mut r),
        vec![
            Action::DelVips,
            changed(
                StateKind::Master,
                StateKind::Backup,
                TransitionReason::SyncGroup
            )
        ]
    );
    assert_eq!(down_at(&r), Some(t + us(3_609_375)));
    r.handle(t, Input::Sync(SyncCommand::Master));
    assert_eq!(
        drain(&mut r),
        become_master_actions(100, StateKind::Backup, TransitionReason::SyncGroup)
    );
}

#[test]
fn status_and_accept_mode() {
    let mut c = config(100);
    c.accept_mode = true;
    let t0 = Instant::now();
    let mut r = router(c);
    r.handle(t0, Input::Startup);
    assert!(!r.accepts_vip_traffic(), "backups never accept VIP traffic");
    r.handle(t0, Input::ForceTakeover);
    assert!(r.accepts_vip_traffic());
    let s = r.status();
    assert_eq!(s.state, StateKind::Master);
    assert_eq!(s.master, Some(ME));
    assert_eq!(
        s.last_transition,
        Some(Transition {
            at: t0,
            from: StateKind::Backup,
            to: StateKind::Master,
            reason: TransitionReason::Takeover
        })
    );
    let (m, _) = master(100);
    assert!(!m.accepts_vip_traffic(), "accept_mode off, not owner");
}

#[test]
fn advert_builder_matches_config() {
    let r = router(config(100));
    let a = r.advert(Priority(100));
    assert_eq!(a, advert(100, 100));
    let mut c = config(100);
    c.version = Version::V2;
    let a = router(c).advert(Priority(0));
    assert_eq!(a.interval, AdvertInterval::V2(Secs(1)));
    assert_eq!(a.auth, Some(V2Auth::NONE));
    assert!(a.is_resignation());
}

#[test]
fn v2_password_goes_into_adverts_and_the_receive_policy() {
    let mut c = config(100);
    c.version = Version::V2;
    c.v2_auth = V2Auth::simple_text(b"pw");
    let r = router(c.clone());
    assert_eq!(
        r.advert(Priority(100)).auth,
        Some(V2Auth::simple_text(b"pw"))
    );
    assert_eq!(r.rx_policy().v2_auth, V2Auth::simple_text(b"pw"));
    // v3 carries no authentication whatever the config says.
    c.version = Version::V3;
    let r = router(c);
    assert_eq!(r.advert(Priority(100)).auth, None);
    assert_eq!(r.rx_policy().v2_auth, V2Auth::NONE);
}

#[test]
fn config_validation() {
    let ok = config(100);
    assert_eq!(ok.validate(), Ok(()));
    let mut c = ok.clone();
    c.vrid = VrId(0);
    assert_eq!(Router::new(c).err(), Some(Error::InvalidVrid));
    let mut c = ok.clone();
    c.priority = Priority(0);
    assert_eq!(c.validate(), Err(Error::InvalidPriority));
    let mut c = ok.clone();
    c.advert_interval = Centisecs(4096);
    assert_eq!(
        c.validate(),
        Err(Error::V3IntervalOutOfRange(Centisecs(4096)))
    );
    let mut c = ok.clone();
    c.version = Version::V2;
    c.advert_interval = Centisecs(150);
    assert_eq!(
        c.validate(),
        Err(Error::V2IntervalNotWholeSeconds(Centisecs(150)))
    );
    let mut c = ok.clone();
    c.virtual_addresses.clear();
    assert_eq!(c.validate(), Err(Error::NoVirtualAddresses));
    let mut c = ok.clone();
    c.virtual_addresses
        .push("2001:db8::1".parse().expect("addr"));
    assert!(matches!(c.validate(), Err(Error::WrongFamily(_))));
    let mut c = ok;
    c.advert_interval = Centisecs(0);
    assert_eq!(c.validate(), Err(Error::ZeroInterval));
}
