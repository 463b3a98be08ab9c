//! Running an external program with a timeout: shared by track scripts and
//! notify programs.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::Command;
use tokio::time::Instant;
use tracing::debug;

/// How a program run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Exit status 0.
    Success,
    /// Non-zero exit status (`code`), or killed by a signal (`code` is `None`).
    Failed {
        /// The exit code, if it exited.
        code: Option<i32>,
    },
    /// Still running at the timeout: its whole process group was killed.
    TimedOut,
    /// It could not be started (missing program, permission...).
    SpawnError(String),
}

impl RunOutcome {
    /// True for [`RunOutcome::Success`].
    pub fn is_success(&self) -> bool {
        matches!(self, RunOutcome::Success)
    }

    /// A short bounded label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            RunOutcome::Success => "ok",
            RunOutcome::Failed { .. } => "failed",
            RunOutcome::TimedOut => "timeout",
            RunOutcome::SpawnError(_) => "spawn_error",
        }
    }
}

/// Runs `argv` (program then arguments; no shell) in its own process group
/// with stdin/stdout/stderr on /dev/null. At `timeout` the whole group gets
/// SIGKILL, so a shell script's children die with it. Returns the outcome and
/// how long it took.
pub async fn run_with_timeout(argv: &[String], timeout: Duration) -> (RunOutcome, Duration) {
    let start = Instant::now();
    let Some((program, args)) = argv.split_first() else {
        return (
            RunOutcome::SpawnError("empty command".to_owned()),
            start.elapsed(),
        );
    };
    let spawned = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            return (
                RunOutcome::SpawnError(format!("{program}: {e}")),
                start.elapsed(),
            )
        }
    };
    let pgid = child.id().and_then(|id| i32::try_from(id).ok());
    let outcome = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => RunOutcome::Success,
        Ok(Ok(status)) => RunOutcome::Failed {
            code: status.code(),
        },
        Ok(Err(e)) => RunOutcome::SpawnError(format!("{program}: wait: {e}")),
        Err(_elapsed) => {
            if let Some(pgid) = pgid {
                if let Err(e) = killpg(Pid::from_raw(pgid), Signal::SIGKILL) {
                    debug!(program, error = %e, "killpg after timeout");
                }
            }
            // Reap it; SIGKILL cannot be ignored, so this ends promptly.
            let _ = child.kill().await;
            RunOutcome::TimedOut
        }
    };
    (outcome, start.elapsed())
}
