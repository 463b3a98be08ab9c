//! `halb run --upgrade`: a new process takes the listening sockets of the
//! running one over the admin socket (SCM_RIGHTS); the old one drains and
//! exits; a client hammering the frontend the whole time sees no error.
//! Runs on loopback without root.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

const HALB: &str = env!("CARGO_BIN_EXE_halb");

/// Processes to kill and a scratch directory to remove at the end.
struct Guard(Vec<Child>, PathBuf);

impl Guard {
    /// A fresh scratch directory named `tag`-PID under the temp dir.
    fn scratch(tag: &str) -> Guard {
        let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Guard(Vec::new(), dir)
    }
}
impl Drop for Guard {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

/// A minimal HTTP/1.1 server: answers every request with 200 "ok",
/// keeping connections alive.
fn backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind backend");
    let addr = l.local_addr().expect("backend address");
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            std::thread::spawn(move || {
                let Ok(read_half) = conn.try_clone() else {
                    return;
                };
                let mut r = BufReader::new(read_half);
                let mut w = conn;
                loop {
                    let mut line = String::new();
                    // Request line and headers up to the blank line.
                    loop {
                        line.clear();
                        match r.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    if w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn status(socket: &std::path::Path) -> Option<Value> {
    let out = Command::new(HALB)
        .args(["status", "--json", "--socket"])
        .arg(socket)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

fn get(addr: SocketAddr) -> std::io::Result<bool> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out.starts_with("HTTP/1.1 200") && out.ends_with("ok"))
}

#[test]
fn upgrade_hands_over_listeners_without_a_failed_request() {
    let mut guard = Guard::scratch("halb-upgrade");
    let dir = guard.1.clone();
    let socket = dir.join("admin.sock");
    let cfg = dir.join("halb.toml");
    let be = backend();
    std::fs::write(
        &cfg,
        format!(
            r#"[node]
name = "up"
admin_socket = "{}"
metrics_listen = "127.0.0.1:0"
shutdown_timeout = "5s"

[[frontend]]
name = "web"
bind = "127.0.0.1:0"
mode = "http"
backend = "b"

[[backend]]
name = "b"
servers = [{{ name = "s", address = "{be}" }}]
health = {{ kind = "tcp", interval = "200ms", timeout = "100ms" }}
"#,
            socket.display()
        ),
    )
    .unwrap();

    let old = Command::new(HALB)
        .args(["run", "-c"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let old_pid = old.id();
    guard.0.push(old);
    let deadline = Instant::now() + Duration::from_secs(20);
    let s = loop {
        if let Some(s) = status(&socket) {
            break s;
        }
        assert!(Instant::now() < deadline, "old daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    let front: SocketAddr = s["dataplane"]["frontends"][0]["local_addr"]
        .as_str()
        .expect("frontend address")
        .parse()
        .unwrap();
    let metrics = s["metrics"]["listen"].as_str().unwrap().to_string();
    assert_eq!(s["pid"], old_pid);

    // A client that keeps opening connections during the whole upgrade.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let client = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(30);
            let mut errors = Vec::new();
            for _ in 0..100_000 {
                if stop.load(Ordering::Relaxed) || Instant::now() > end {
                    break;
                }
                match get(front) {
                    Ok(true) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        errors.push(format!("{other:?}"));
                    }
                }
            }
            errors
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let before = ok.load(Ordering::Relaxed);
    assert!(before > 0, "no request succeeded before the upgrade");

    let new = Command::new(HALB)
        .args(["run", "--upgrade", "-c"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let new_pid = new.id();
    guard.0.push(new);

    // The old process exits 0 by itself once the new one is ready.
    let deadline = Instant::now() + Duration::from_secs(15);
    let code = loop {
        if let Some(st) = guard.0[0].try_wait().unwrap() {
            break st.code();
        }
        assert!(
            Instant::now() < deadline,
            "old daemon did not exit after the upgrade"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(0));

    // The new process owns the admin socket, the same frontend and metrics ports.
    let s = status(&socket).expect("new daemon answers on the admin socket");
    assert_eq!(s["pid"], new_pid);
    assert_eq!(
        s["dataplane"]["frontends"][0]["local_addr"].as_str(),
        Some(front.to_string().as_str())
    );
    assert_eq!(s["metrics"]["listen"].as_str(), Some(metrics.as_str()));
    let after_switch = ok.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let errors = client.join().unwrap();
    let total_ok = ok.load(Ordering::Relaxed);
    assert!(
        total_ok > after_switch,
        "no request served by the new process"
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during the upgrade: {:?}",
        &errors[..errors.len().min(5)]
    );

    // Upgrading when nothing runs is a clear startup error.
    let mut new = guard.0.pop().unwrap();
    let _ = new.kill();
    let _ = new.wait();
    let _ = std::fs::remove_file(&socket);
    let out = Command::new(HALB)
        .args(["run", "--upgrade", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reach the running halb"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn upgrade_with_a_cluster_is_refused_before_touching_the_running_daemon() {
    let guard = Guard::scratch("halb-upgrade-cl");
    let dir = guard.1.clone();
    let key = dir.join("cluster.key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").unwrap();
    let cfg = dir.join("halb.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[node]
name = "a"
admin_socket = "{}"

[cluster]
nodes = [
  {{ name = "a", addresses = ["127.0.0.1"] }},
  {{ name = "b", addresses = ["127.0.0.2"] }},
]
port = 5999
auth_key_file = "{}"
"#,
            dir.join("admin.sock").display(),
            key.display()
        ),
    )
    .unwrap();
    let check = Command::new(HALB)
        .arg("check-config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let out = Command::new(HALB)
        .args(["run", "--upgrade", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("--upgrade is not available with [cluster]"),
        "{stderr}"
    );
    // Refused before it tried to reach a running daemon.
    assert!(
        !stderr.contains("cannot reach the running halb"),
        "{stderr}"
    );
}
