//! Network-namespace test harness for halb's end-to-end tests.
//!
//! ```no_run
//! use std::time::Duration;
//! use testsupport::Lab;
//!
//! // In a test under the workspace root's tests/, `halb_bin` is
//! // `env!("CARGO_BIN_EXE_halb")`.
//! fn failover(halb_bin: &str) -> Result<(), testsupport::Error> {
//!     testsupport::require_root!();            // SKIP (or fail under CI=true)
//!     testsupport::require_tool!("keepalived");
//!     let lab = Lab::new("failover")?;         // names: hl<pid>-<n>-failover-*
//!     let sw = lab.bridge("sw")?;              // a namespace holding br0
//!     let lb1 = lab.netns("lb1")?;
//!     let port1 = lab.attach(&lb1, "eth0", &sw)?;
//!     lb1.add_addr("eth0", "10.0.0.1/24")?;
//!     let halb = lb1
//!         .command(halb_bin)
//!         .args(["run", "-c", "/path/to/halb.toml"])
//!         .spawn()?;                           // killed on drop
//!     halb.wait_for_output("MASTER", Duration::from_secs(10))?;
//!     lab.cut(&port1)?;                        // silent partition
//!     Ok(())
//! }                                            // lab dropped: everything removed
//! ```
//!
//! # The binary under test
//!
//! A library cannot name the `halb` binary: Cargo sets `CARGO_BIN_EXE_<name>`
//! only while compiling the binary package's own integration tests. Tests
//! under the workspace root's `tests/` pass `env!("CARGO_BIN_EXE_halb")` to
//! [`Netns::command`] or [`host_command`].
//!
//! # Cleanup
//!
//! Dropping a [`Lab`] SIGKILLs every process left in its namespaces and
//! deletes the namespaces (which destroys their interfaces), also while a
//! failing test unwinds. Each [`NsChild`] SIGKILLs its process group on drop.
//! [`Lab::new`] also removes namespaces whose name encodes the pid of a
//! process that no longer exists, so a SIGKILLed test run leaves nothing
//! behind for longer than the next run.
//!
//! # Sockets in a namespace from the test process
//!
//! [`Netns::run`] runs a closure on a thread that entered the namespace;
//! [`Netns::wait_port`] builds on it. With the `tokio` feature (default),
//! [`Netns::block_on`] and [`Netns::tokio_runtime`] do the same for async
//! code (see [`rt`]).

mod capture;
mod error;
pub mod gate;
pub mod inspect;
mod lab;
pub mod pcap;
mod process;
#[cfg(feature = "tokio")]
pub mod rt;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use capture::Capture;
pub use error::{Error, Result};
pub use gate::{require_root, require_tool};
pub use inspect::{IfAddr, LinkInfo, MacAddr, Neighbour};
pub use lab::{
    clean_stale, lab_prefix, netns_exists, netns_list, owner_pid, Bridge, Lab, Link, Netns, Port,
    Segment, IFNAME_MAX, NETNS_DIR,
};
pub use nix::sys::signal::Signal;
pub use pcap::{Packet, PcapRecord};
pub use process::{host_command, NsChild, NsCommand, DEFAULT_TIMEOUT};
#[cfg(feature = "tokio")]
pub use rt::NsRuntime;

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The shared test data directory: `$HALB_SHARED_TESTDATA` if set, else
/// `<workspace root>/../shared/testdata` (the shared repository is a sibling
/// of the halb clone, locally and in CI). An error if it does not exist.
pub fn shared_testdata() -> Result<PathBuf> {
    let path = match std::env::var_os("HALB_SHARED_TESTDATA") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            let root = workspace_root();
            root.parent()
                .unwrap_or(&root)
                .join("shared")
                .join("testdata")
        }
    };
    if path.is_dir() {
        Ok(path)
    } else {
        Err(Error::MissingTestdata { path })
    }
}

/// Poll `check` every `interval` until it returns `Ok(Ok(value))`, for at most
/// `timeout`; [`Error::Timeout`] names `what` and the last `Debug` of the
/// state `check` returned as `Ok(Err(seen))` (use it to say what was seen).
/// An `Err` from `check` itself ends the wait at once.
///
/// ```no_run
/// # use std::time::Duration;
/// # fn demo(ns: &testsupport::Netns) -> Result<(), testsupport::Error> {
/// let ip: std::net::IpAddr = "10.0.0.2".parse().expect("literal");
/// let mac = testsupport::wait_until(
///     "ARP entry for 10.0.0.2",
///     Duration::from_secs(5),
///     Duration::from_millis(50),
///     || {
///         let table = ns.neigh("eth0")?;
///         let found = table.iter().find(|e| e.addr == ip).and_then(|e| e.mac);
///         Ok(found.ok_or(table))
///     },
/// )?;
/// # let _ = mac;
/// # Ok(())
/// # }
/// ```
pub fn wait_until<T, S: std::fmt::Debug>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: impl FnMut() -> Result<std::result::Result<T, S>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check()? {
            Ok(value) => return Ok(value),
            Err(seen) => seen,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::Timeout {
                what: what.to_owned(),
                after: timeout,
                output: format!("last seen: {last:?}"),
            });
        }
        std::thread::sleep(interval.min(deadline - now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_root_holds_this_crate() {
        assert!(workspace_root()
            .join("testsupport")
            .join("Cargo.toml")
            .is_file());
    }

    #[test]
    fn wait_until_succeeds_and_times_out() {
        let mut n = 0;
        let got = wait_until(
            "n to reach 3",
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                n += 1;
                Ok(if n >= 3 { Ok(n) } else { Err(n) })
            },
        )
        .expect("reaches 3");
        assert_eq!(got, 3);

        let err = wait_until::<(), _>(
            "never",
            Duration::from_millis(30),
            Duration::from_millis(5),
            || Ok(Err("still no")),
        )
        .expect_err("times out");
        let msg = err.to_string();
        assert!(msg.contains("never") && msg.contains("still no"), "{msg}");
    }
}
