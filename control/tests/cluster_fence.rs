//! The fence-agent runner against Debian's real `fence_dummy` (fence-agents),
//! a failing agent, a hanging agent and the stdin protocol.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use control::cluster::fence::{
    fence_node, random_delay, run_agent, AgentAction, AttemptResult, Fencer,
};
use control::config::{FenceAction, FenceDevice};
use metrics_exporter_prometheus::PrometheusBuilder;

const FENCE_DUMMY: &str = "/usr/sbin/fence_dummy";

/// Scripts are written and executed under this lock: executing a file that
/// another thread's fork still holds open for writing fails with ETXTBSY.
static EXEC_LOCK: Mutex<()> = Mutex::new(());

struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("halb-cl-fence-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("scratch dir");
        Scratch(p)
    }
    fn script(&self, name: &str, body: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn device(name: &str, agent: &Path, options: &[(&str, &str)]) -> FenceDevice {
    FenceDevice {
        name: name.into(),
        agent: agent.to_path_buf(),
        nodes: vec!["n1".into(), "n2".into()],
        action: FenceAction::Off,
        timeout: Duration::from_secs(20),
        retries: 0,
        delay_max: Duration::ZERO,
        monitor_interval: Duration::from_secs(60),
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[test]
fn fence_dummy_off_on_status_monitor_and_reboot() {
    assert!(
        Path::new(FENCE_DUMMY).exists(),
        "fence-agents must be installed"
    );
    let _g = EXEC_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let s = Scratch::new("dummy");
    let status = s.0.join("power");
    let status_s = status.to_string_lossy().into_owned();
    let f = Fencer::new(device(
        "dummy",
        Path::new(FENCE_DUMMY),
        &[("status_file", &status_s), ("type", "file")],
    ));
    let rt = rt();

    let on = rt.block_on(f.run(AgentAction::On, Some("n1")));
    assert_eq!(on.result, AttemptResult::Success, "{on:?}");
    assert_eq!(read(&status), "on");
    assert_eq!(rt.block_on(f.status("n1")), Some(true));

    let (ok, attempts) = rt.block_on(f.fence("n1"));
    assert!(ok, "{attempts:?}");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].exit_code, Some(0));
    assert_eq!(
        read(&status),
        "off",
        "fence_dummy wrote the new power state"
    );
    assert_eq!(
        rt.block_on(f.status("n1")),
        Some(false),
        "status exit 2 = off"
    );
    assert_eq!(rt.block_on(f.monitor()), Ok(()));

    let mut rebooter = device(
        "dummy",
        Path::new(FENCE_DUMMY),
        &[("status_file", &status_s)],
    );
    rebooter.action = FenceAction::Reboot;
    let (ok, _) = rt.block_on(Fencer::new(rebooter).fence("n2"));
    assert!(ok);
    assert_eq!(read(&status), "on", "reboot powers the target back on");

    // The fail type of fence_dummy never sees the power go off: it gives up
    // after power_timeout and exits 1.
    let failing = Fencer::new(device(
        "dummyfail",
        Path::new(FENCE_DUMMY),
        &[("type", "fail"), ("power_timeout", "1")],
    ));
    let (ok, attempts) = rt.block_on(failing.fence("n1"));
    assert!(!ok, "{attempts:?}");
    assert_eq!(attempts[0].result, AttemptResult::Failure);
    assert_eq!(attempts[0].exit_code, Some(1));
    assert!(
        attempts[0]
            .output
            .contains("Timed out waiting to power OFF"),
        "{attempts:?}"
    );
}

#[test]
fn stdin_protocol_lines() {
    let _g = EXEC_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let s = Scratch::new("stdin");
    let seen = s.0.join("stdin.txt");
    let agent = s.script("agent", &format!("cat > '{}'\nexit 0", seen.display()));
    let f = Fencer::new(device(
        "rec",
        &agent,
        &[("ipaddr", "10.0.0.9"), ("login", "admin")],
    ));
    assert_eq!(
        f.stdin_lines(AgentAction::Off, Some("n2")),
        "action=off\nnodename=n2\nplug=n2\nipaddr=10.0.0.9\nlogin=admin\n"
    );
    let rt = rt();
    let (ok, _) = rt.block_on(f.fence("n2"));
    assert!(ok);
    assert_eq!(
        read(&seen),
        "action=off\nnodename=n2\nplug=n2\nipaddr=10.0.0.9\nlogin=admin\n",
        "the agent got the lines and end of file"
    );
    // A device that sets its own plug/port: no plug= from halb.
    let f = Fencer::new(device("ipmi", &agent, &[("port", "7")]));
    assert_eq!(
        f.stdin_lines(AgentAction::Reboot, Some("n1")),
        "action=reboot\nnodename=n1\nport=7\n"
    );
    assert_eq!(
        f.stdin_lines(AgentAction::Monitor, None),
        "action=monitor\nport=7\n"
    );
}

#[test]
fn failing_agent_is_retried_and_counted() {
    let _g = EXEC_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let s = Scratch::new("fail");
    let count = s.0.join("count");
    let agent = s.script(
        "agent",
        &format!(
            "cat > /dev/null\necho run >> '{}'\necho 'power switch unreachable' >&2\nexit 1",
            count.display()
        ),
    );
    let mut d = device("flaky", &agent, &[]);
    d.retries = 2;
    let f = Fencer::new(d).with_retry_pause(Duration::from_millis(50));
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let rt = rt();
    let started = Instant::now();
    let (ok, attempts) = metrics::with_local_recorder(&recorder, || rt.block_on(f.fence("n1")));
    assert!(!ok);
    assert_eq!(attempts.len(), 3, "1 + retries");
    assert!(attempts
        .iter()
        .all(|a| a.result == AttemptResult::Failure && a.exit_code == Some(1)));
    assert_eq!(attempts[0].output, "power switch unreachable");
    assert_eq!(read(&count).lines().count(), 3);
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "two retry pauses"
    );
    let text = handle.render();
    assert!(
        text.contains(r#"halb_fence_attempts_total{device="flaky",result="failure"} 3"#),
        "{text}"
    );
}

#[test]
fn hanging_agent_is_killed_with_its_children() {
    let _g = EXEC_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let s = Scratch::new("hang");
    let pidfile = s.0.join("pid");
    let agent = s.script(
        "agent",
        &format!("sleep 30 &\necho $! > '{}'\nwait", pidfile.display()),
    );
    let mut d = device("hung", &agent, &[]);
    d.timeout = Duration::from_millis(300);
    d.retries = 1;
    let f = Fencer::new(d).with_retry_pause(Duration::from_millis(10));
    let rt = rt();
    let started = Instant::now();
    let (ok, attempts) = rt.block_on(f.fence("n1"));
    let took = started.elapsed();
    assert!(!ok);
    assert_eq!(attempts.len(), 2);
    assert!(attempts
        .iter()
        .all(|a| a.result == AttemptResult::Timeout && a.exit_code.is_none()));
    assert!(took >= Duration::from_millis(600), "{took:?}");
    assert!(
        took < Duration::from_secs(5),
        "killed, not waited for: {took:?}"
    );
    let pid = read(&pidfile).trim().to_owned();
    assert!(!pid.is_empty());
    // The grandchild `sleep` was killed with the process group.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        state.is_empty() || state.contains(") Z"),
        "sleep {pid} still running: {state}"
    );
}

#[test]
fn devices_in_order_delay_and_missing_agent() {
    let _g = EXEC_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let s = Scratch::new("order");
    let bad = s.script("bad", "cat >/dev/null; exit 1");
    let good = s.script("good", "cat >/dev/null; exit 0");
    let fencers = vec![
        Fencer::new(device("first", &bad, &[])),
        Fencer::new(device("second", &good, &[])),
    ];
    let rt = rt();
    let started = Instant::now();
    let r = rt.block_on(fence_node(&fencers, "n2", Duration::from_millis(200)));
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "the delay is waited"
    );
    assert!(r.ok);
    assert_eq!(r.device.as_deref(), Some("second"));
    assert_eq!(r.attempts.len(), 2);
    assert_eq!(r.delay, Duration::from_millis(200));

    let r = rt.block_on(fence_node(&fencers, "n9", Duration::ZERO));
    assert!(
        !r.ok && r.device.is_none() && r.attempts.is_empty(),
        "no device covers n9"
    );

    let missing = Fencer::new(device("gone", &s.0.join("no-such-agent"), &[]));
    let a = rt.block_on(run_agent(
        &s.0.join("no-such-agent"),
        "action=off\n",
        Duration::from_secs(1),
    ));
    assert_eq!(a.result, AttemptResult::Error);
    assert!(a.output.contains("cannot start"), "{}", a.output);
    assert_eq!(rt.block_on(missing.status("n1")), None);

    for _ in 0..200 {
        assert!(random_delay(Duration::from_millis(50)) <= Duration::from_millis(50));
    }
    assert_eq!(random_delay(Duration::ZERO), Duration::ZERO);
}
