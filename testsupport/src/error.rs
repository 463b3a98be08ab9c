//! The harness's error type.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Everything that can go wrong while building or driving a lab.
///
/// Messages carry the command line and its stderr so that a failing test
/// explains itself without re-running anything.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A program could not be started at all (not installed, not executable).
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// A command ran and exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}{stdout_note}", stdout_note = stdout_note(stdout))]
    CommandFailed {
        command: String,
        status: ExitStatus,
        stdout: String,
        stderr: String,
    },
    /// A bounded wait ran out of time.
    #[error("timed out after {after:?} waiting for {what}; output so far:\n{output}")]
    Timeout {
        what: String,
        after: Duration,
        output: String,
    },
    /// A process closed its output (or exited) before printing what was awaited.
    #[error("{command} ended its output without printing {needle:?}; output:\n{output}")]
    OutputNotFound {
        command: String,
        needle: String,
        output: String,
    },
    /// A file-system or process-control operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Sending a signal or another system call through nix failed.
    #[error("{context}: {source}")]
    Sys {
        context: String,
        #[source]
        source: nix::Error,
    },
    /// Entering a network namespace from a thread failed.
    #[error("setns into network namespace {netns}: {source}")]
    Setns {
        netns: String,
        #[source]
        source: nix::Error,
    },
    /// [`Netns::exec`](crate::Netns::exec) was given no program.
    #[error("empty command line")]
    EmptyCommand,
    /// `ip -j ...` printed something that is not the JSON we expect.
    #[error("cannot parse output of `{command}`: {reason}")]
    BadJson { command: String, reason: String },
    /// An interface name is empty, longer than 15 bytes, or has forbidden characters.
    #[error("invalid interface name {name:?}: {reason}")]
    BadIfName { name: String, reason: &'static str },
    /// A lab-local name (namespace or bridge tag) is empty or has forbidden characters.
    #[error("invalid name {name:?}: {reason}")]
    BadName { name: String, reason: &'static str },
    /// A MAC address string is malformed.
    #[error("invalid MAC address {0:?}")]
    BadMac(String),
    /// The shared test data directory is missing.
    #[error("shared test data not found at {}; clone the shared repository next to the workspace (../shared) or set HALB_SHARED_TESTDATA", path.display())]
    MissingTestdata { path: PathBuf },
    /// An interface asked about does not exist in the namespace.
    #[error("no interface {ifname} in network namespace {netns}")]
    NoSuchInterface { netns: String, ifname: String },
    /// An interface has no MAC address (loopback, tunnels).
    #[error("interface {ifname} in network namespace {netns} has no MAC address")]
    NoMac { netns: String, ifname: String },
    /// A capture file could not be read.
    #[error(transparent)]
    Pcap(#[from] crate::pcap::PcapError),
}

fn stdout_note(stdout: &str) -> String {
    if stdout.trim().is_empty() {
        String::new()
    } else {
        format!("\nstdout: {}", stdout.trim_end())
    }
}

/// Result with the harness's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io {
        context: context.into(),
        source,
    }
}
