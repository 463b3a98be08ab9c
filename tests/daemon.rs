//! End-to-end: the real `halb` binary with a config file, its admin socket,
//! SIGHUP reloads (valid and broken), metrics, and SIGTERM.
//!
//! These run without root: the admin socket lives in a temporary directory
//! and metrics listen on 127.0.0.1 port 0 (the status shows the real port).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const HALB: &str = env!("CARGO_BIN_EXE_halb");

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "halb-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The daemon process, killed on drop if still running.
struct Daemon {
    child: Option<Child>,
    socket: PathBuf,
    log: PathBuf,
}

impl Daemon {
    fn start(config: &Path, socket: &Path, log: &Path) -> Daemon {
        let logfile = std::fs::File::create(log).expect("log file");
        let child = Command::new(HALB)
            .args(["run", "-c"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(logfile.try_clone().expect("dup log"))
            .stderr(logfile)
            .spawn()
            .expect("spawn halb run");
        let d = Daemon {
            child: Some(child),
            socket: socket.to_path_buf(),
            log: log.to_path_buf(),
        };
        d.wait_ready();
        d
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("child").id() as i32)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "daemon did not open {}; log:\n{}",
            self.socket.display(),
            self.log_text()
        );
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).expect("signal daemon");
    }

    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut().expect("child");
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// `halb ARGS --socket S`, returning the output.
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(HALB)
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .output()
            .expect("run halb client")
    }

    fn status_json(&self) -> Value {
        let out = self.cli(&["status", "--json"]);
        assert!(
            out.status.success(),
            "halb status --json failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status is JSON")
    }

    /// Polls the status until `pred` holds (bounded).
    fn wait_status(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.status_json();
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last status {s:#}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn config(socket: &Path, name: &str) -> String {
    format!(
        r#"[node]
name = "{name}"
admin_socket = "{}"
metrics_listen = "127.0.0.1:0"
shutdown_timeout = "5s"
worker_threads = 3
"#,
        socket.display()
    )
}

/// An HTTP/1.0 GET on loopback; returns the whole response.
fn http_get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect metrics");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.split([' ', '{']).next() == Some(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn run_status_reload_and_stop() {
    let dir = TempDir::new("daemon");
    let socket = dir.0.join("admin.sock");
    let cfg = dir.0.join("halb.toml");
    std::fs::write(&cfg, config(&socket, "lb1")).unwrap();
    let mut daemon = Daemon::start(&cfg, &socket, &dir.0.join("halb.log"));

    // The socket is private to the daemon's user.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "admin socket mode");

    // Status over the socket, JSON and text.
    let s = daemon.status_json();
    assert_eq!(s["node"], "lb1");
    assert_eq!(s["generation"], 1);
    assert_eq!(s["config_file"], cfg.display().to_string());
    assert!(s["last_reload"].is_null());
    let text = daemon.cli(&["status"]);
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("on node lb1"), "{text}");
    assert!(text.contains("generation 1"), "{text}");

    // Metrics on the bound address.
    let metrics_addr = s["metrics"]["listen"]
        .as_str()
        .expect("metrics address")
        .to_string();
    let m = http_get(&metrics_addr, "/metrics");
    assert!(
        m.starts_with("HTTP/1.0 200") || m.starts_with("HTTP/1.1 200"),
        "{m}"
    );
    assert!(m.contains("halb_build_info{version=\""), "{m}");
    assert_eq!(metric_value(&m, "halb_config_generation"), Some(1.0), "{m}");
    // Three event loops, one taking connections (worker_scaling auto: no
    // load, so no more).
    let loops = &s["dataplane"]["loops"];
    assert_eq!(loops["scaling"], "auto", "{loops}");
    assert_eq!(loops["active"], 1, "{loops}");
    assert_eq!(
        loops["connections"],
        serde_json::json!([0, 0, 0]),
        "{loops}"
    );
    assert_eq!(metric_value(&m, "halb_event_loops"), Some(3.0), "{m}");
    assert_eq!(
        metric_value(&m, "halb_event_loops_active"),
        Some(1.0),
        "{m}"
    );
    let page = http_get(&metrics_addr, "/");
    assert!(page.contains("<title>halb on lb1</title>"), "{page}");

    // SIGHUP with a valid change: generation 2, new name.
    std::fs::write(&cfg, config(&socket, "lb1-renamed")).unwrap();
    daemon.signal(Signal::SIGHUP);
    let s = daemon.wait_status("generation 2", |s| s["generation"] == 2);
    assert_eq!(s["node"], "lb1-renamed");
    assert_eq!(s["last_reload"]["ok"], true);
    assert_eq!(s["last_reload"]["trigger"], "sighup");

    // SIGHUP with a broken file: generation stays 2, errors shown.
    let broken = format!(
        "{}\n[[vrrp]]\nname = \"v\"\ninterface = \"eth0\"\nvrid = 0\nvirtual_ips = [\"10.0.0.1/24\"]\n",
        config(&socket, "lb1-broken")
    );
    std::fs::write(&cfg, &broken).unwrap();
    daemon.signal(Signal::SIGHUP);
    let s = daemon.wait_status("a rejected reload", |s| s["last_reload"]["ok"] == false);
    assert_eq!(
        s["generation"], 2,
        "a broken file must not replace the running config"
    );
    assert_eq!(s["node"], "lb1-renamed");
    let errors = s["last_reload"]["errors"].as_array().expect("errors");
    let expected_prefix = format!("{}:11:8: ", cfg.display());
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().unwrap_or("").starts_with(&expected_prefix)
                && e.as_str().unwrap_or("").contains("vrid")),
        "errors {errors:?} should name {expected_prefix} and vrid"
    );
    let text = String::from_utf8_lossy(&daemon.cli(&["status"]).stdout).to_string();
    assert!(text.contains("REJECTED"), "{text}");
    assert!(text.contains(&expected_prefix), "{text}");
    let m = http_get(&metrics_addr, "/metrics");
    assert_eq!(
        metric_value(&m, "halb_config_reload_failures_total"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(metric_value(&m, "halb_config_generation"), Some(2.0), "{m}");

    // `halb reload` takes the same path and prints the errors.
    let out = daemon.cli(&["reload"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("reload rejected: generation 2 keeps running"),
        "{err}"
    );
    assert!(err.contains(&expected_prefix), "{err}");

    // Fixed again through the admin socket: generation 3.
    std::fs::write(&cfg, config(&socket, "lb1")).unwrap();
    let out = daemon.cli(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("generation 3"));
    assert_eq!(daemon.status_json()["generation"], 3);

    // SIGTERM: exit 0 well within the 5 s deadline, socket removed.
    let t = Instant::now();
    daemon.signal(Signal::SIGTERM);
    let status = daemon
        .wait_exit(Duration::from_secs(6))
        .expect("exit after SIGTERM");
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log_text());
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(!socket.exists(), "admin socket left behind");
}

#[test]
fn malformed_admin_requests_get_errors_and_the_daemon_keeps_serving() {
    let dir = TempDir::new("admin");
    let socket = dir.0.join("admin.sock");
    let cfg = dir.0.join("halb.toml");
    std::fs::write(&cfg, config(&socket, "lb2")).unwrap();
    let daemon = Daemon::start(&cfg, &socket, &dir.0.join("halb.log"));

    let stream = UnixStream::connect(&socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut ask = |line: &str| -> Value {
        writer.write_all(line.as_bytes()).unwrap();
        writer.write_all(b"\n").unwrap();
        let mut answer = String::new();
        reader.read_line(&mut answer).unwrap();
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("answer {answer:?}: {e}"))
    };
    for bad in [
        "{",
        "status",
        "{\"cmd\":\"explode\"}",
        "{\"cmd\":\"status\",\"x\":1}",
        "\u{0}\u{1}",
    ] {
        let a = ask(bad);
        assert_eq!(a["ok"], false, "{bad:?} -> {a}");
        assert!(
            a["error"]
                .as_str()
                .unwrap_or("")
                .contains("malformed request"),
            "{a}"
        );
    }
    // The same connection still works.
    let a = ask("{\"cmd\":\"ping\"}");
    assert_eq!(a["ok"], true);
    assert_eq!(a["result"], "pong");
    // An oversized line is refused and the daemon keeps serving others.
    let mut big = UnixStream::connect(&socket).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = big.write_all(&vec![b'x'; 200 * 1024]);
    let mut answer = String::new();
    let _ = BufReader::new(big).read_line(&mut answer);
    assert!(answer.contains("longer than"), "{answer:?}");
    assert_eq!(daemon.status_json()["node"], "lb2");
    // Unknown server: clear error, exit 1.
    let out = daemon.cli(&["server", "drain", "nope/x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown backend \"nope\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn invalid_config_never_starts_the_daemon() {
    let dir = TempDir::new("badstart");
    let cfg = dir.0.join("bad.toml");
    std::fs::write(&cfg, "[node]\nname = \"x\"\nbogus = 1\n").unwrap();
    let out = Command::new(HALB)
        .args(["run", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:3:1: ", cfg.display())), "{err}");
    let out = Command::new(HALB)
        .args(["check-config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    std::fs::write(&cfg, "[node]\nname = \"x\"\n").unwrap();
    let out = Command::new(HALB)
        .args(["check-config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn check_config_reports_every_error_of_a_file_with_its_position() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sample = root.join("control/tests/configs/multi_error.toml");
    let out = Command::new(HALB)
        .arg("check-config")
        .arg(&sample)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let f = sample.display();
    let expected = [
        format!("{f}:4:18: metrics_listen must be an address with a port"),
        format!("{f}:9:8: vrid must be 1..=255, got 300"),
        format!("{f}:15:11: frontend 'web' names backend 'wbe' which does not exist"),
        format!("{f}:19:54: unknown key 'servers[0].wieght'"),
    ];
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{text}");
    for (line, want) in lines.iter().zip(&expected) {
        assert!(
            line.starts_with(want.as_str()),
            "{line:?} should start with {want:?}"
        );
    }
    for example in ["examples/halb.toml", "examples/minimal.toml"] {
        let out = Command::new(HALB)
            .arg("check-config")
            .arg(root.join(example))
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{example}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
