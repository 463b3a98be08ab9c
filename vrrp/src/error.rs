//! The crate's error type: configuration and emit errors. Received packets
//! that fail a check are not errors but [`DropReason`](crate::wire::DropReason)s.

/// Errors from building configuration values and emitting packets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("buffer too small: need {needed} bytes, have {available}")]
    BufferTooSmall { needed: usize, available: usize },
    #[error("interval of {micros} us is not a whole number of centiseconds")]
    IntervalNotCentisecond { micros: u128 },
    #[error("interval of {centisecs} cs is out of range")]
    IntervalOutOfRange { centisecs: u128 },
    #[error("VRRPv2 intervals are whole seconds of at most 255 s, got {0}")]
    V2IntervalNotWholeSeconds(crate::Centisecs),
    #[error("VRRPv3 intervals are 1..=4095 cs, got {0}")]
    V3IntervalOutOfRange(crate::Centisecs),
    #[error("advert interval must not be zero")]
    ZeroInterval,
    #[error("VRID 0 is not valid (1..=255)")]
    InvalidVrid,
    #[error("priority 0 is reserved for resignation")]
    InvalidPriority,
    #[error("advert version and interval unit disagree")]
    VersionIntervalMismatch,
    #[error("VRRPv3 adverts carry no authentication")]
    AuthOnV3,
    #[error("VRRPv2 is defined for IPv4 only")]
    V2OverIpv6,
    #[error("an advert carries 1..=255 addresses, got {0}")]
    BadAddressCount(usize),
    #[error("address {0} is not of the advert's address family")]
    WrongFamily(std::net::IpAddr),
    #[error("no virtual addresses configured")]
    NoVirtualAddresses,
    #[error("unknown tracker {0:?}")]
    UnknownTracker(String),
    #[error("duplicate tracker {0:?}")]
    DuplicateTracker(String),
    #[error("rise and fall must be at least 1 (tracker {0:?})")]
    ZeroRiseFall(String),
    #[error("track file content is not an integer: {0:?}")]
    TrackFileNotInteger(String),
    #[error("duplicate sync group member {0:?}")]
    DuplicateMember(String),
    #[error("unknown sync group member {0:?}")]
    UnknownMember(String),
}
