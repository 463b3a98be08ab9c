//! Unit newtypes: intervals, virtual router ids and priorities.
//!
//! Timing never goes through floats: intervals are integer centiseconds
//! (VRRPv3's unit) or whole seconds (VRRPv2's unit) and timer arithmetic is
//! done in integer microseconds.

use std::fmt;
use std::time::Duration;

use crate::Error;

/// A duration in centiseconds (1/100 s), the unit of VRRPv3's
/// Max Advertise Interval (RFC 9568 section 5.2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Centisecs(pub u16);

impl Centisecs {
    /// The largest value the 12-bit VRRPv3 Max Advertise Interval field holds.
    pub const V3_MAX: Centisecs = Centisecs(0x0fff);
    /// The protocol default advertisement interval: 1 second.
    pub const DEFAULT: Centisecs = Centisecs(100);

    /// Whole seconds to centiseconds (exact: 255 s is 25 500 cs).
    pub const fn from_secs(secs: Secs) -> Centisecs {
        Centisecs(secs.0 as u16 * 100)
    }

    /// Microseconds, the unit used for timer arithmetic.
    pub const fn as_micros(self) -> u64 {
        self.0 as u64 * 10_000
    }

    pub const fn as_duration(self) -> Duration {
        Duration::from_micros(self.as_micros())
    }

    /// Exact whole seconds, if this interval is a multiple of one second.
    pub const fn to_secs_exact(self) -> Option<Secs> {
        if !self.0.is_multiple_of(100) || self.0 / 100 > u8::MAX as u16 {
            None
        } else {
            Some(Secs((self.0 / 100) as u8))
        }
    }
}

impl TryFrom<Duration> for Centisecs {
    type Error = Error;

    /// Accepts only whole multiples of 10 ms that fit in a `u16`.
    fn try_from(d: Duration) -> Result<Self, Error> {
        let micros = d.as_micros();
        if !micros.is_multiple_of(10_000) {
            return Err(Error::IntervalNotCentisecond { micros });
        }
        let cs = micros / 10_000;
        u16::try_from(cs)
            .map(Centisecs)
            .map_err(|_| Error::IntervalOutOfRange { centisecs: cs })
    }
}

impl fmt::Display for Centisecs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}cs", self.0)
    }
}

/// Whole seconds, the unit of VRRPv2's Advertisement Interval (RFC 3768 section 5.3.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Secs(pub u8);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0)
    }
}

/// Virtual Router Identifier (RFC 9568 section 5.2.3). Valid values are 1..=255;
/// 0 is representable because it can arrive on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VrId(pub u8);

impl VrId {
    pub const fn is_valid(self) -> bool {
        self.0 != 0
    }
}

impl fmt::Display for VrId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// VRRP router priority (RFC 9568 section 5.2.4): 255 is the address owner,
/// 1..=254 a backup router, 0 a master resigning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(pub u8);

impl Priority {
    /// Sent by a master that stops participating (RFC 9568 section 5.2.4).
    pub const RESIGN: Priority = Priority(0);
    /// The address owner's priority.
    pub const OWNER: Priority = Priority(255);
    /// The protocol default for backup routers.
    pub const DEFAULT: Priority = Priority(100);
    /// The highest priority a non-owner may use.
    pub const MAX_BACKUP: Priority = Priority(254);
    pub const MIN_BACKUP: Priority = Priority(1);

    pub const fn is_owner(self) -> bool {
        self.0 == 255
    }

    pub const fn is_resign(self) -> bool {
        self.0 == 0
    }
}

impl Default for Priority {
    fn default() -> Self {
        Priority::DEFAULT
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256 (RFC 9568 section 6.1),
/// computed in integer microseconds (the same unit keepalived uses).
///
/// Priority 100 with a 1 s interval gives exactly 609 375 us.
pub fn skew_time(priority: Priority, master_adver_interval: Centisecs) -> Duration {
    let weight = 256 - u64::from(priority.0);
    Duration::from_micros(weight * master_adver_interval.as_micros() / 256)
}

/// Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time (RFC 9568 section 6.1).
pub fn master_down_interval(priority: Priority, master_adver_interval: Centisecs) -> Duration {
    Duration::from_micros(3 * master_adver_interval.as_micros())
        + skew_time(priority, master_adver_interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_and_down_interval_exact() {
        assert_eq!(
            skew_time(Priority(100), Centisecs(100)),
            Duration::from_micros(609_375)
        );
        assert_eq!(
            master_down_interval(Priority(100), Centisecs(100)),
            Duration::from_micros(3_609_375)
        );
        assert_eq!(
            skew_time(Priority(200), Centisecs(100)),
            Duration::from_micros(218_750)
        );
        // 10 ms adverts, priority 254: (2 * 10_000) / 256 = 78.125 -> 78 us.
        assert_eq!(
            skew_time(Priority(254), Centisecs(1)),
            Duration::from_micros(78)
        );
        assert_eq!(
            master_down_interval(Priority(254), Centisecs(1)),
            Duration::from_micros(30_078)
        );
        assert_eq!(
            skew_time(Priority::OWNER, Centisecs(100)),
            Duration::from_micros(3_906)
        );
    }

    #[test]
    fn centisecs_conversions() {
        assert_eq!(Centisecs::from_secs(Secs(255)), Centisecs(25_500));
        assert_eq!(Centisecs(300).to_secs_exact(), Some(Secs(3)));
        assert_eq!(Centisecs(150).to_secs_exact(), None);
        assert_eq!(Centisecs(10).as_duration(), Duration::from_millis(100));
        assert_eq!(
            Centisecs::try_from(Duration::from_millis(10)).ok(),
            Some(Centisecs(1))
        );
        assert!(matches!(
            Centisecs::try_from(Duration::from_millis(15)),
            Err(Error::IntervalNotCentisecond { .. })
        ));
        assert!(matches!(
            Centisecs::try_from(Duration::from_secs(1000)),
            Err(Error::IntervalOutOfRange { .. })
        ));
    }
}
