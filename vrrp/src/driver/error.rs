//! Errors of the driver.

use crate::io::IoError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// A spec that can never run (checked before anything changes).
    #[error("vrrp instance {instance}: {reason}")]
    InvalidSpec { instance: String, reason: String },
    /// Two specs with one name.
    #[error("vrrp instance {0} is defined twice")]
    DuplicateInstance(String),
    /// No instance of that name is running.
    #[error("no vrrp instance named {0}")]
    NoSuchInstance(String),
    /// The netlink connection shared by the instances could not be opened.
    #[error("vrrp: {0}")]
    Io(#[from] IoError),
    /// An instance task is gone (it panicked or was cut at shutdown).
    #[error("vrrp instance {0} is not running")]
    InstanceGone(String),
}
