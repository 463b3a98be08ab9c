//! Processes run inside a namespace (through `ip netns exec`) or on the host.
//!
//! Every process is started in its own process group so that dropping its
//! [`NsChild`] kills it and everything it forked.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::error::{io_err, Error, Result};

/// Timeout of [`Netns::exec`](crate::Netns::exec) and of the harness's own
/// `ip`/`tc` invocations.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// Captured output beyond this many bytes is dropped (a marker notes it).
const OUTPUT_CAP: usize = 64 * 1024 * 1024;

/// How often bounded waits poll a child's exit status.
const POLL: Duration = Duration::from_millis(10);

/// A command to run inside a network namespace, or on the host.
///
/// Built by [`Netns::command`](crate::Netns::command) or [`host_command`].
#[derive(Debug, Clone)]
pub struct NsCommand {
    netns: Option<String>,
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
}

/// A command run in the test's own (root) network namespace, with the same
/// output capture and kill-on-drop as namespaced ones.
pub fn host_command(program: impl AsRef<OsStr>) -> NsCommand {
    NsCommand::new(None, program)
}

impl NsCommand {
    pub(crate) fn new(netns: Option<String>, program: impl AsRef<OsStr>) -> Self {
        NsCommand {
            netns,
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
            cwd: None,
            stdin: None,
        }
    }

    /// Append one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Append arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Set an environment variable (the rest of the environment is inherited).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Working directory of the process.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Bytes written to the process's stdin, which is then closed.
    /// Without this, stdin is `/dev/null`.
    pub fn stdin_bytes(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// The command line as a human-readable string (for errors and logs).
    pub fn display(&self) -> String {
        let mut parts = Vec::new();
        if let Some(ns) = &self.netns {
            parts.push(format!("[netns {ns}]"));
        }
        parts.push(self.program.to_string_lossy().into_owned());
        parts.extend(self.args.iter().map(|a| a.to_string_lossy().into_owned()));
        parts.join(" ")
    }

    fn build(&self) -> Command {
        let mut cmd = match &self.netns {
            Some(ns) => {
                // `ip netns exec` execs the program in place (no extra
                // fork), so the child's pid is the program's pid.
                let mut c = Command::new("ip");
                c.arg("netns").arg("exec").arg(ns).arg(&self.program);
                c
            }
            None => Command::new(&self.program),
        };
        cmd.args(&self.args);
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.process_group(0);
        cmd
    }

    fn start(&self) -> Result<(Child, Arc<OutputBuf>)> {
        let mut child = self.build().spawn().map_err(|source| Error::Spawn {
            command: self.display(),
            source,
        })?;
        tracing::debug!(pid = child.id(), command = %self.display(), "spawned");
        let buf = Arc::new(OutputBuf::default());
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        spawn_reader(stdout, Arc::clone(&buf), Stream::Stdout);
        spawn_reader(stderr, Arc::clone(&buf), Stream::Stderr);
        if let (Some(bytes), Some(mut stdin)) = (self.stdin.clone(), child.stdin.take()) {
            // A separate thread so a child that does not read cannot block us.
            std::thread::spawn(move || {
                use std::io::Write;
                if let Err(e) = stdin.write_all(&bytes) {
                    tracing::debug!(error = %e, "child closed stdin early");
                }
            });
        }
        Ok((child, buf))
    }

    /// Start the process; its stdout and stderr are captured.
    pub fn spawn(&self) -> Result<NsChild> {
        let (child, buf) = self.start()?;
        Ok(NsChild {
            command: self.display(),
            child,
            buf,
            status: None,
        })
    }

    /// Run to completion within `timeout`; any exit status is returned.
    /// On timeout the process group is killed and [`Error::Timeout`] carries
    /// the output so far.
    pub fn output(&self, timeout: Duration) -> Result<Output> {
        self.spawn()?.wait_with_output(timeout)
    }

    /// Run to completion within `timeout` and require a zero exit status;
    /// otherwise [`Error::CommandFailed`] with stdout and stderr.
    pub fn run(&self, timeout: Duration) -> Result<Output> {
        let out = self.output(timeout)?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(Error::CommandFailed {
                command: self.display(),
                status: out.status,
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).trim_end().to_owned(),
            })
        }
    }
}

#[derive(Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

#[derive(Default)]
struct Streams {
    /// Both streams interleaved in arrival order.
    combined: Vec<u8>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    truncated: bool,
    open: u8,
}

#[derive(Default)]
struct OutputBuf {
    state: Mutex<Streams>,
    changed: Condvar,
}

impl OutputBuf {
    fn lock(&self) -> MutexGuard<'_, Streams> {
        // A panicking reader thread cannot leave the byte buffers in a
        // state worse than "some bytes missing", so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, stream: Stream, bytes: &[u8]) {
        let mut s = self.lock();
        if s.combined.len() + bytes.len() > OUTPUT_CAP {
            if !s.truncated {
                s.truncated = true;
                s.combined
                    .extend_from_slice(b"\n[testsupport: output cap reached, rest dropped]\n");
            }
        } else {
            s.combined.extend_from_slice(bytes);
            match stream {
                Stream::Stdout => s.stdout.extend_from_slice(bytes),
                Stream::Stderr => s.stderr.extend_from_slice(bytes),
            }
        }
        drop(s);
        self.changed.notify_all();
    }

    fn close(&self) {
        let mut s = self.lock();
        s.open = s.open.saturating_sub(1);
        drop(s);
        self.changed.notify_all();
    }

    fn combined(&self) -> String {
        String::from_utf8_lossy(&self.lock().combined).into_owned()
    }

    /// Wait (bounded) until both pipes reached EOF, then return the streams.
    fn wait_streams_closed(&self, timeout: Duration) -> (Vec<u8>, Vec<u8>) {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        while s.open > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            s = self
                .changed
                .wait_timeout(s, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        (s.stdout.clone(), s.stderr.clone())
    }
}

fn spawn_reader<R: Read + Send + 'static>(pipe: Option<R>, buf: Arc<OutputBuf>, stream: Stream) {
    let Some(mut pipe) = pipe else {
        return;
    };
    buf.lock().open += 1;
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => buf.push(stream, &chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        buf.close();
    });
}

/// A running process whose stdout and stderr are captured.
///
/// Dropping it sends SIGKILL to its whole process group and reaps it.
pub struct NsChild {
    command: String,
    child: Child,
    buf: Arc<OutputBuf>,
    status: Option<ExitStatus>,
}

impl std::fmt::Debug for NsChild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NsChild")
            .field("command", &self.command)
            .field("pid", &self.child.id())
            .field("status", &self.status)
            .finish()
    }
}

impl NsChild {
    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn nix_pid(&self) -> Result<Pid> {
        let raw = i32::try_from(self.child.id()).map_err(|_| Error::Sys {
            context: format!("pid {} of `{}` out of range", self.child.id(), self.command),
            source: nix::Error::ERANGE,
        })?;
        Ok(Pid::from_raw(raw))
    }

    /// The command line it was started with.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Everything printed on stdout and stderr so far, interleaved in arrival order.
    pub fn output_so_far(&self) -> String {
        self.buf.combined()
    }

    /// Only what was printed on stdout so far.
    pub fn stdout_so_far(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().stdout).into_owned()
    }

    /// Only what was printed on stderr so far.
    pub fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().stderr).into_owned()
    }

    /// Wait until the combined output contains `needle`; returns the output
    /// so far. Fails early if the process closes both pipes (usually: exits)
    /// without printing it, and with [`Error::Timeout`] after `timeout`.
    pub fn wait_for_output(&self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let mut s = self.buf.lock();
        loop {
            let text = String::from_utf8_lossy(&s.combined);
            if text.contains(needle) {
                return Ok(text.into_owned());
            }
            if s.open == 0 {
                return Err(Error::OutputNotFound {
                    command: self.command.clone(),
                    needle: needle.to_owned(),
                    output: text.into_owned(),
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout {
                    what: format!("{needle:?} in the output of `{}`", self.command),
                    after: timeout,
                    output: text.into_owned(),
                });
            }
            s = self
                .buf
                .changed
                .wait_timeout(s, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// Send `sig` to the process (not to its group).
    pub fn signal(&self, sig: Signal) -> Result<()> {
        signal::kill(self.nix_pid()?, sig).map_err(|source| Error::Sys {
            context: format!("sending {sig} to `{}`", self.command),
            source,
        })
    }

    /// Send `sig` to the process's whole group (it and everything it forked).
    pub fn signal_group(&self, sig: Signal) -> Result<()> {
        signal::killpg(self.nix_pid()?, sig).map_err(|source| Error::Sys {
            context: format!("sending {sig} to the group of `{}`", self.command),
            source,
        })
    }

    /// The exit status if the process has exited (non-blocking).
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .map_err(io_err(format!("waiting for `{}`", self.command)))?;
        }
        Ok(self.status)
    }

    /// Wait up to `timeout` for the process to exit. `Ok(None)`: still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            std::thread::sleep(POLL.min(deadline - now));
        }
    }

    /// Wait up to `timeout` for the process to exit; [`Error::Timeout`] if it does not.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.wait_timeout(timeout)?.ok_or_else(|| Error::Timeout {
            what: format!("`{}` to exit", self.command),
            after: timeout,
            output: self.output_so_far(),
        })
    }

    /// Wait up to `timeout` for the process to exit, then (up to 2 s more)
    /// for its pipes to close, and return its status and complete output.
    pub fn wait_with_output(&mut self, timeout: Duration) -> Result<Output> {
        let status = self.wait_exit(timeout)?;
        let (stdout, stderr) = self.buf.wait_streams_closed(Duration::from_secs(2));
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }

    /// SIGKILL the process group and reap the process.
    ///
    /// If the process was already reaped (by `try_wait`/`wait_timeout`),
    /// its group is left alone: once reaped, its pid (and so the group id)
    /// may belong to an unrelated process. Until then the zombie reserves it.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let pid = self.nix_pid()?;
        if signal::killpg(pid, Signal::SIGKILL).is_err() {
            let _ = signal::kill(pid, Signal::SIGKILL);
        }
        let status = self
            .child
            .wait()
            .map_err(io_err(format!("reaping `{}`", self.command)))?;
        self.status = Some(status);
        Ok(status)
    }
}

impl Drop for NsChild {
    fn drop(&mut self) {
        if let Err(e) = self.kill() {
            eprintln!("testsupport: cannot kill `{}`: {e}", self.command);
        }
    }
}

/// Run `cmd` on the host with [`DEFAULT_TIMEOUT`], requiring success.
pub(crate) fn run_host<I, S>(program: &str, args: I) -> Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    host_command(program).args(args).run(DEFAULT_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_output_and_failure() {
        let out = host_command("sh")
            .args(["-c", "echo out; echo err >&2; exit 0"])
            .run(DEFAULT_TIMEOUT)
            .expect("sh runs");
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");

        let err = host_command("sh")
            .args(["-c", "echo boom >&2; exit 3"])
            .run(DEFAULT_TIMEOUT)
            .expect_err("exit 3 is a failure");
        let msg = err.to_string();
        assert!(
            msg.contains("boom") && msg.contains("exit status: 3"),
            "{msg}"
        );

        let out = host_command("sh")
            .args(["-c", "exit 4"])
            .output(DEFAULT_TIMEOUT)
            .expect("output() accepts failures");
        assert_eq!(out.status.code(), Some(4));
    }

    #[test]
    fn missing_program_is_spawn_error() {
        let err = host_command("/nonexistent/halb-nothing")
            .spawn()
            .expect_err("cannot spawn");
        assert!(matches!(err, Error::Spawn { .. }), "{err}");
    }

    #[test]
    fn timeout_kills() {
        let started = Instant::now();
        let err = host_command("sleep")
            .arg("30")
            .output(Duration::from_millis(200))
            .expect_err("times out");
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn stdin_is_fed() {
        let out = host_command("cat")
            .stdin_bytes("hello\n")
            .run(DEFAULT_TIMEOUT)
            .expect("cat runs");
        assert_eq!(out.stdout, b"hello\n");
    }

    #[test]
    fn wait_for_output_signal_and_drop() {
        let mut child = host_command("sh")
            .args([
                "-c",
                "echo ready; trap 'echo got-term; exit 7' TERM; while :; do sleep 0.05; done",
            ])
            .spawn()
            .expect("spawns");
        child
            .wait_for_output("ready", Duration::from_secs(10))
            .expect("prints ready");
        assert_eq!(
            child.wait_timeout(Duration::from_millis(50)).expect("wait"),
            None
        );
        child.signal(Signal::SIGTERM).expect("signal");
        let status = child.wait_exit(Duration::from_secs(10)).expect("exits");
        assert_eq!(status.code(), Some(7));
        child
            .wait_for_output("got-term", Duration::from_secs(5))
            .expect("trap output");

        let early = host_command("sh")
            .args(["-c", "echo nope"])
            .spawn()
            .expect("spawns");
        let err = early
            .wait_for_output("never printed", Duration::from_secs(10))
            .expect_err("process ends first");
        assert!(matches!(err, Error::OutputNotFound { .. }), "{err}");
    }

    #[test]
    fn drop_kills_the_group() {
        // The shell forks a grandchild sleep; dropping must kill both.
        let child = host_command("sh")
            .args(["-c", "sleep 300 & echo $!; wait"])
            .spawn()
            .expect("spawns");
        let out = child
            .wait_for_output("\n", Duration::from_secs(10))
            .expect("prints pid");
        let grandchild: i32 = out.trim().parse().expect("pid");
        let pid = child.pid();
        drop(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        // The grandchild is reparented to init (or a subreaper) which reaps
        // it; poll until it is gone or a zombie.
        let gone = |p: i32| match std::fs::read_to_string(format!("/proc/{p}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
                .unwrap_or(false),
        };
        while !gone(grandchild) && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        assert!(gone(grandchild), "grandchild {grandchild} survived");
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "child {pid} not reaped"
        );
    }
}
