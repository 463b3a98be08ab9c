//! Shared pieces of the end-to-end tests: a `halb` node running inside a
//! test namespace, driven through its CLI like an operator would.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use testsupport::{Netns, NsChild, Signal};

pub const HALB: &str = env!("CARGO_BIN_EXE_halb");

/// A `halb run` process inside a namespace, with its config and socket in
/// the lab's scratch directory.
pub struct Node {
    pub ns: Netns,
    pub name: String,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub child: Option<NsChild>,
}

impl Node {
    /// Writes `config` (with `{socket}` replaced by this node's admin socket)
    /// and starts `halb run`; waits until the admin socket answers.
    pub fn start(ns: &Netns, dir: &std::path::Path, name: &str, config: &str) -> Node {
        let socket = dir.join(format!("{name}.sock"));
        let path = dir.join(format!("{name}.toml"));
        let text = config.replace("{socket}", &socket.display().to_string());
        std::fs::write(&path, text).expect("write config");
        let child = ns
            .command(HALB)
            .args(["run", "-c"])
            .arg(&path)
            .env("RUST_LOG", "info,halb=debug,vrrp=debug")
            .spawn()
            .expect("spawn halb");
        let node = Node {
            ns: ns.clone(),
            name: name.to_string(),
            config: path,
            socket,
            child: Some(child),
        };
        node.wait_ready();
        node
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.cli(&["status", "--json"]);
            if out.status.success() {
                return;
            }
            if let Some(c) = &self.child {
                assert!(
                    Instant::now() < deadline,
                    "{}: daemon not ready; output:\n{}",
                    self.name,
                    c.output_so_far()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// `halb ARGS --socket S` run inside the node's namespace.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.ns
            .command(HALB)
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .output(Duration::from_secs(30))
            .expect("run halb client")
    }

    pub fn status(&self) -> Value {
        let out = self.cli(&["status", "--json"]);
        assert!(
            out.status.success(),
            "{}: halb status failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status JSON")
    }

    /// The status, or `None` if the daemon did not answer with one.
    pub fn try_status(&self) -> Option<Value> {
        let out = self.cli(&["status", "--json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    /// Polls the status until `pred` holds, up to `limit`.
    pub fn wait_status(&self, what: &str, limit: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let s = self.status();
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{}: timed out waiting for {what}; status {s:#}\nlog:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn log(&self) -> String {
        self.child
            .as_ref()
            .map(|c| c.output_so_far())
            .unwrap_or_default()
    }

    pub fn signal(&self, sig: Signal) {
        self.child
            .as_ref()
            .expect("running")
            .signal(sig)
            .expect("signal");
    }

    /// SIGTERM and wait for the exit code.
    pub fn stop(&mut self, limit: Duration) -> Option<i32> {
        let mut child = self.child.take().expect("running");
        child.signal(Signal::SIGTERM).expect("SIGTERM");
        child.wait_exit(limit).expect("exit after SIGTERM").code()
    }

    /// `halb run --upgrade` with this node's config, in its namespace.
    /// Returns the new process once it answers on the admin socket and
    /// this (old) one has exited by itself with code 0, with the old
    /// process's output.
    pub fn upgrade(&mut self) -> (Node, String) {
        let child = self
            .ns
            .command(HALB)
            .args(["run", "--upgrade", "-c"])
            .arg(&self.config)
            .env("RUST_LOG", "info,halb=debug,vrrp=debug")
            .spawn()
            .expect("spawn halb --upgrade");
        let pid = child.pid();
        let new = Node {
            ns: self.ns.clone(),
            name: format!("{}-new", self.name),
            config: self.config.clone(),
            socket: self.socket.clone(),
            child: Some(child),
        };
        // While the socket path changes hands, a status request may reach
        // the old process as it goes: only the new one's answer counts.
        let deadline = Instant::now() + Duration::from_secs(20);
        while new.try_status().is_none_or(|s| s["pid"] != pid) {
            assert!(
                Instant::now() < deadline,
                "{}: the new process never answered; log:\n{}",
                new.name,
                new.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        let mut old = self.child.take().expect("running");
        let status = old.wait_exit(Duration::from_secs(15));
        let log = old.output_so_far();
        let code = status
            .unwrap_or_else(|e| panic!("{}: did not exit: {e}\nlog:\n{log}", self.name))
            .code();
        assert_eq!(code, Some(0), "old process log:\n{log}");
        (new, log)
    }

    /// SIGKILL: a crash.
    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
        }
    }
}

/// A plain HTTP/1.0 GET from inside `ns`; returns the whole response text.
pub fn http_get(ns: &Netns, addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let path = path.to_string();
    ns.run(move || -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
    .map_err(|e| std::io::Error::other(e.to_string()))?
}

/// The value of an unlabelled Prometheus sample, or of the first sample
/// whose labels contain every `k="v"` pair in `labels`.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split([' ', '{']).next() == Some(name))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
