//! Tracking probes: periodic scripts and files. Each result is reported on
//! a channel as is; rise/fall and weights are the pure logic's business.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::debug;

use super::error::IoError;
use super::process::{run_with_timeout, RunOutcome};

/// A tracking script (keepalived's `vrrp_script`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptSpec {
    /// Its name (the `script` label of metrics).
    pub name: String,
    /// Program and arguments, run without a shell.
    pub argv: Vec<String>,
    /// Time between the starts of consecutive runs (a run that overlaps the
    /// next start delays it).
    pub interval: Duration,
    /// A run still going after this is killed and counts as a failure.
    pub timeout: Duration,
}

/// One run of a tracking script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptResult {
    /// The script's name.
    pub name: String,
    /// How it ended.
    pub outcome: RunOutcome,
    /// How long it ran.
    pub elapsed: Duration,
}

impl ScriptResult {
    /// Success is exit status 0; failure, timeout and spawn errors are failures.
    pub fn success(&self) -> bool {
        self.outcome.is_success()
    }
}

/// A running probe task; dropping it stops the probe (and kills a running script).
#[derive(Debug)]
pub struct ProbeTask {
    task: JoinHandle<()>,
}

impl ProbeTask {
    /// Stops the probe.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for ProbeTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn ticker(period: Duration) -> tokio::time::Interval {
    let mut i = tokio::time::interval_at(Instant::now(), period);
    i.set_missed_tick_behavior(MissedTickBehavior::Delay);
    i
}

/// Runs `spec` now and then every `interval`, sending each result to `tx`.
/// Stops when `tx`'s receiver is dropped. Needs a tokio runtime.
pub fn spawn_track_script(
    spec: ScriptSpec,
    tx: mpsc::Sender<ScriptResult>,
) -> Result<ProbeTask, IoError> {
    if spec.argv.is_empty() {
        return Err(IoError::EmptyCommand);
    }
    let task = tokio::spawn(async move {
        let mut tick = ticker(spec.interval);
        loop {
            tick.tick().await;
            let (outcome, elapsed) = run_with_timeout(&spec.argv, spec.timeout).await;
            metrics::counter!(
                "halb_vrrp_track_script_runs_total",
                "script" => spec.name.clone(),
                "outcome" => outcome.label()
            )
            .increment(1);
            debug!(script = %spec.name, outcome = outcome.label(), ?elapsed, "track script ran");
            let result = ScriptResult {
                name: spec.name.clone(),
                outcome,
                elapsed,
            };
            if tx.send(result).await.is_err() {
                return;
            }
        }
    });
    Ok(ProbeTask { task })
}

/// A tracked file (keepalived's `track_file`): holds one integer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// Its name.
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// Time between reads.
    pub interval: Duration,
}

/// Why a tracked file gave no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FileReadError {
    /// The file does not exist.
    #[error("file missing")]
    Missing,
    /// It exists but could not be read.
    #[error("unreadable: {0}")]
    Unreadable(String),
    /// Its content (first line, trimmed) is not an integer.
    #[error("not an integer: {0:?}")]
    NotAnInteger(String),
}

/// One read of a tracked file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReading {
    /// The file's name.
    pub name: String,
    /// The integer, or why there is none.
    pub value: Result<i64, FileReadError>,
}

/// Parses a tracked file's content: the first line, trimmed, as a decimal
/// integer (an empty file is an error). Longer content is cut to 64 bytes in the error.
pub fn parse_track_file(content: &str) -> Result<i64, FileReadError> {
    let line = content.lines().next().unwrap_or("").trim();
    line.parse::<i64>().map_err(|_| {
        let shown: String = line.chars().take(64).collect();
        FileReadError::NotAnInteger(shown)
    })
}

/// Reads a tracked file once.
pub async fn read_track_file(path: &std::path::Path) -> Result<i64, FileReadError> {
    match tokio::fs::read(path).await {
        Ok(bytes) => parse_track_file(&String::from_utf8_lossy(&bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(FileReadError::Missing),
        Err(e) => Err(FileReadError::Unreadable(e.to_string())),
    }
}

/// Reads `spec.path` now and then every `interval`, sending each reading to
/// `tx`. Stops when `tx`'s receiver is dropped. Needs a tokio runtime.
pub fn spawn_track_file(spec: FileSpec, tx: mpsc::Sender<FileReading>) -> ProbeTask {
    let task = tokio::spawn(async move {
        let mut tick = ticker(spec.interval);
        loop {
            tick.tick().await;
            let value = read_track_file(&spec.path).await;
            let reading = FileReading {
                name: spec.name.clone(),
                value,
            };
            if tx.send(reading).await.is_err() {
                return;
            }
        }
    });
    ProbeTask { task }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_integers_and_rejects_garbage() {
        assert_eq!(parse_track_file("42\n"), Ok(42));
        assert_eq!(parse_track_file("  -7  \nrest"), Ok(-7));
        assert_eq!(
            parse_track_file(""),
            Err(FileReadError::NotAnInteger(String::new()))
        );
        assert_eq!(
            parse_track_file("abc"),
            Err(FileReadError::NotAnInteger("abc".to_owned()))
        );
        assert!(parse_track_file("99999999999999999999999").is_err());
    }
}
