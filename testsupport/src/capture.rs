//! Packet captures with tcpdump inside a namespace.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::error::{Error, Result};
use crate::lab::Netns;
use crate::pcap::{self, Packet};
use crate::process::NsChild;

/// How long tcpdump may take to say it is listening.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long tcpdump may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `tcpdump -U -w FILE` on one interface of a namespace.
///
/// Dropping it without [`Capture::stop`] kills tcpdump; the file stays in
/// the lab's scratch directory until the lab is dropped.
#[derive(Debug)]
pub struct Capture {
    child: NsChild,
    path: PathBuf,
}

impl Capture {
    pub(crate) fn start(ns: &Netns, ifname: &str, filter: &str) -> Result<Capture> {
        let stem: String = format!("{}-{ifname}", ns.short_name())
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = ns.lab().scratch_file(&stem, "pcap");
        // -U: write each packet as it arrives, so the file can be read while
        // tcpdump runs. -Z root: Debian's tcpdump otherwise drops to the
        // `tcpdump` user before opening the file.
        let mut cmd = ns
            .command("tcpdump")
            .args([
                "-U",
                "--immediate-mode",
                "-n",
                "-s",
                "0",
                "-Z",
                "root",
                "-i",
                ifname,
                "-w",
            ])
            .arg(&path);
        if !filter.trim().is_empty() {
            cmd = cmd.arg(filter);
        }
        let child = cmd.spawn()?;
        child.wait_for_output("listening on", START_TIMEOUT)?;
        tracing::debug!(netns = ns.name(), ifname, filter, path = %path.display(), "capture started");
        Ok(Capture { child, path })
    }

    /// The pcap file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The packets written so far (an incomplete last record is skipped).
    pub fn packets_so_far(&self) -> Result<Vec<Packet>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => Ok(pcap::parse_partial(&bytes)?.records),
            // tcpdump writes the global header once the first packet
            // arrives or on exit; until then "nothing yet" is the answer.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::Io {
                context: format!("reading {}", self.path.display()),
                source: e,
            }),
        }
    }

    /// Poll (every 20 ms, up to `timeout`) until `done(packets so far)`
    /// holds; returns those packets.
    pub fn wait_for(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&[Packet]) -> bool,
    ) -> Result<Vec<Packet>> {
        let deadline = Instant::now() + timeout;
        loop {
            let packets = self.packets_so_far()?;
            if done(&packets) {
                return Ok(packets);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout {
                    what: format!("the expected packets in {}", self.path.display()),
                    after: timeout,
                    output: format!(
                        "{} packets captured; tcpdump said:\n{}",
                        packets.len(),
                        self.child.output_so_far()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(20).min(deadline - now));
        }
    }

    /// Stop tcpdump (SIGTERM, so it flushes) and return every captured packet.
    pub fn stop(mut self) -> Result<Vec<Packet>> {
        // tcpdump may exit on its own (e.g. interface gone); then there is
        // nobody left to signal.
        if self.child.try_wait()?.is_none() {
            self.child.signal(Signal::SIGTERM)?;
        }
        let clean = self.child.wait_timeout(STOP_TIMEOUT)?.is_some();
        if !clean {
            self.child.kill()?;
        }
        let bytes = std::fs::read(&self.path).map_err(|e| Error::Io {
            context: format!(
                "reading {} (tcpdump said: {})",
                self.path.display(),
                self.child.output_so_far().trim()
            ),
            source: e,
        })?;
        let file = if clean {
            pcap::parse(&bytes)?
        } else {
            pcap::parse_partial(&bytes)?
        };
        Ok(file.records)
    }
}
