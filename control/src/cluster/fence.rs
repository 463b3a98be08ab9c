//! Fencing with ClusterLabs fence agents (the `fence_*` programs of the
//! fence-agents package, as Pacemaker's stonithd runs them).
//!
//! The protocol: exec the agent without arguments, write `key=value` lines
//! on its standard input (`action=`, `nodename=`, `plug=` and the device's
//! `options`), close standard input, wait. Exit status 0 is success. For
//! `status`, 0 means the target is on, 2 that it is off, anything else an
//! error; `monitor` checks the device itself (0 = usable).
//!
//! `plug=` is the node name unless the device's options set `plug` or
//! `port` themselves (single-target devices such as IPMI). Each attempt has
//! the device's `timeout`; an agent still running then is killed with its
//! whole process group. A failed attempt is retried `retries` times after
//! [`Fencer::retry_pause`]. Before the first attempt the caller waits a
//! random delay up to `delay_max` ([`random_delay`]), like Pacemaker's
//! `pcmk_delay_max`, so the two nodes of a pair do not shoot each other at
//! the same moment. Every attempt is counted in
//! `halb_fence_attempts_total{device,result}`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::config::{FenceAction, FenceDevice};

/// Most bytes of agent output kept per attempt.
const OUTPUT_LIMIT: usize = 4096;

/// An agent action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentAction {
    /// Power off / isolate the target.
    Off,
    /// Power on the target.
    On,
    /// Power cycle the target.
    Reboot,
    /// Query the target's power state.
    Status,
    /// Check the device itself.
    Monitor,
}

impl AgentAction {
    /// The `action=` value.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentAction::Off => "off",
            AgentAction::On => "on",
            AgentAction::Reboot => "reboot",
            AgentAction::Status => "status",
            AgentAction::Monitor => "monitor",
        }
    }
}

impl From<FenceAction> for AgentAction {
    fn from(a: FenceAction) -> Self {
        match a {
            FenceAction::Off => AgentAction::Off,
            FenceAction::Reboot => AgentAction::Reboot,
        }
    }
}

/// How one agent run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttemptResult {
    /// Exit status 0.
    Success,
    /// Another exit status (or killed by a signal).
    Failure,
    /// Still running after the timeout; killed.
    Timeout,
    /// The agent could not be started or talked to.
    Error,
}

impl AttemptResult {
    /// The `result` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptResult::Success => "success",
            AttemptResult::Failure => "failure",
            AttemptResult::Timeout => "timeout",
            AttemptResult::Error => "error",
        }
    }
}

/// One agent run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// How it ended.
    pub result: AttemptResult,
    /// Exit status, when it exited.
    pub exit_code: Option<i32>,
    /// How long it ran.
    #[serde(with = "millis")]
    pub duration: Duration,
    /// The start of its standard error and output (for logs and status).
    pub output: String,
}

/// The outcome of fencing one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceReport {
    /// The node.
    pub node: String,
    /// The device that succeeded, or the last one tried.
    pub device: Option<String>,
    /// The action requested.
    pub action: AgentAction,
    /// Whether the node is fenced.
    pub ok: bool,
    /// Random delay waited before the first attempt.
    #[serde(with = "millis")]
    pub delay: Duration,
    /// Every attempt, in order, over every device tried.
    pub attempts: Vec<Attempt>,
}

/// Runs the agent of one device.
#[derive(Debug, Clone)]
pub struct Fencer {
    device: FenceDevice,
    retry_pause: Duration,
}

impl Fencer {
    /// A runner for a device, pausing 500 ms between attempts.
    pub fn new(device: FenceDevice) -> Fencer {
        Fencer {
            device,
            retry_pause: Duration::from_millis(500),
        }
    }

    /// Sets the pause between two attempts.
    pub fn with_retry_pause(mut self, pause: Duration) -> Fencer {
        self.retry_pause = pause;
        self
    }

    /// The pause between two attempts.
    pub fn retry_pause(&self) -> Duration {
        self.retry_pause
    }

    /// The device.
    pub fn device(&self) -> &FenceDevice {
        &self.device
    }

    /// Whether this device can fence `node`.
    pub fn covers(&self, node: &str) -> bool {
        self.device.nodes.iter().any(|n| n == node)
    }

    /// The lines written to the agent's standard input.
    pub fn stdin_lines(&self, action: AgentAction, node: Option<&str>) -> String {
        let mut s = format!("action={}\n", action.as_str());
        if let Some(n) = node {
            s.push_str(&format!("nodename={n}\n"));
            let has_plug = self.device.options.contains_key("plug")
                || self.device.options.contains_key("port");
            if !has_plug {
                s.push_str(&format!("plug={n}\n"));
            }
        }
        for (k, v) in &self.device.options {
            s.push_str(&format!("{k}={v}\n"));
        }
        s
    }

    /// One agent run with the device's timeout. Not counted in metrics.
    pub async fn run(&self, action: AgentAction, node: Option<&str>) -> Attempt {
        run_agent(
            &self.device.agent,
            &self.stdin_lines(action, node),
            self.device.timeout,
        )
        .await
    }

    /// Fences `node` with this device: the configured action, up to
    /// `1 + retries` attempts. Counts every attempt.
    pub async fn fence(&self, node: &str) -> (bool, Vec<Attempt>) {
        let action = AgentAction::from(self.device.action);
        let mut attempts = Vec::new();
        for i in 0..=u32::from(self.device.retries) {
            if i > 0 {
                tokio::time::sleep(self.retry_pause).await;
            }
            let a = self.run(action, Some(node)).await;
            metrics::counter!(
                "halb_fence_attempts_total",
                "device" => self.device.name.clone(),
                "result" => a.result.as_str()
            )
            .increment(1);
            let ok = a.result == AttemptResult::Success;
            if ok {
                tracing::info!(device = %self.device.name, node, attempt = i + 1, "fence succeeded");
            } else {
                tracing::warn!(
                    device = %self.device.name,
                    node,
                    attempt = i + 1,
                    result = a.result.as_str(),
                    exit_code = ?a.exit_code,
                    output = %a.output,
                    "fence attempt failed"
                );
            }
            attempts.push(a);
            if ok {
                return (true, attempts);
            }
        }
        (false, attempts)
    }

    /// Runs the `monitor` action; `Ok` when the device is usable.
    pub async fn monitor(&self) -> Result<(), Attempt> {
        let a = self.run(AgentAction::Monitor, None).await;
        metrics::counter!(
            "halb_fence_monitor_total",
            "device" => self.device.name.clone(),
            "result" => a.result.as_str()
        )
        .increment(1);
        if a.result == AttemptResult::Success {
            Ok(())
        } else {
            Err(a)
        }
    }

    /// Runs the `status` action for a node: `Some(true)` = on, `Some(false)`
    /// = off, `None` = the agent failed.
    pub async fn status(&self, node: &str) -> Option<bool> {
        let a = self.run(AgentAction::Status, Some(node)).await;
        match a.exit_code {
            Some(0) => Some(true),
            Some(2) => Some(false),
            _ => None,
        }
    }
}

/// A random delay in `0..=max` (whole milliseconds).
pub fn random_delay(max: Duration) -> Duration {
    let ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(rand::rng().random_range(0..=ms))
}

/// Fences `node` with the devices that cover it, in order: the first one
/// that succeeds ends it. Waits `delay` first (see [`random_delay`]).
pub async fn fence_node(fencers: &[Fencer], node: &str, delay: Duration) -> FenceReport {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut report = FenceReport {
        node: node.to_owned(),
        device: None,
        action: AgentAction::Off,
        ok: false,
        delay,
        attempts: Vec::new(),
    };
    for f in fencers.iter().filter(|f| f.covers(node)) {
        report.device = Some(f.device.name.clone());
        report.action = f.device.action.into();
        let (ok, attempts) = f.fence(node).await;
        report.attempts.extend(attempts);
        if ok {
            report.ok = true;
            break;
        }
    }
    if report.device.is_none() {
        tracing::warn!(node, "no fence device covers this node");
    }
    report
}

async fn read_limited<R: tokio::io::AsyncRead + Unpin>(mut r: R) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if out.len() < OUTPUT_LIMIT {
                    let take = n.min(OUTPUT_LIMIT - out.len());
                    out.extend_from_slice(&buf[..take]);
                }
            }
        }
    }
    out
}

fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Runs an agent: writes `input` on its standard input, closes it, waits up
/// to `timeout`; on timeout kills its process group.
pub async fn run_agent(agent: &Path, input: &str, timeout: Duration) -> Attempt {
    let started = tokio::time::Instant::now();
    let error = |msg: String| Attempt {
        result: AttemptResult::Error,
        exit_code: None,
        duration: started.elapsed(),
        output: msg,
    };
    let mut child = match Command::new(agent)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return error(format!("cannot start {}: {e}", agent.display())),
    };
    let pid = child.id();
    let stdout = child.stdout.take().map(|s| tokio::spawn(read_limited(s)));
    let stderr = child.stderr.take().map(|s| tokio::spawn(read_limited(s)));
    let stdin = child.stdin.take();
    let write = async move {
        if let Some(mut stdin) = stdin {
            // An agent that exits without reading gives EPIPE: not an error
            // of ours; its exit status decides.
            let _ = stdin.write_all(input.as_bytes()).await;
            let _ = stdin.shutdown().await;
        }
    };
    let outcome = tokio::time::timeout(timeout, async {
        write.await;
        child.wait().await
    })
    .await;
    let (result, exit_code) = match outcome {
        Ok(Ok(status)) => match status.code() {
            Some(0) => (AttemptResult::Success, Some(0)),
            code => (AttemptResult::Failure, code),
        },
        Ok(Err(e)) => {
            kill_group(pid);
            return error(format!("waiting for {}: {e}", agent.display()));
        }
        Err(_) => {
            kill_group(pid);
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            (AttemptResult::Timeout, None)
        }
    };
    // The pipes close when the group is gone; bound the wait anyway.
    let mut output = Vec::new();
    for h in [stderr, stdout].into_iter().flatten() {
        let abort = h.abort_handle();
        match tokio::time::timeout(Duration::from_secs(1), h).await {
            Ok(Ok(bytes)) => output.extend_from_slice(&bytes),
            _ => abort.abort(),
        }
    }
    output.truncate(OUTPUT_LIMIT);
    Attempt {
        result,
        exit_code,
        duration: started.elapsed(),
        output: String::from_utf8_lossy(&output).trim().to_owned(),
    }
}

mod millis {
    use std::time::Duration;

    pub(crate) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Duration, D::Error> {
        let ms = <u64 as serde::Deserialize>::deserialize(d)?;
        Ok(Duration::from_millis(ms))
    }
}
