//! Track scripts, track files and notify programs: real processes, no root needed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use vrrp::io::track::FileReadError;
use vrrp::io::{
    run_with_timeout, spawn_track_file, spawn_track_script, FileSpec, Notifier, NotifyKind,
    NotifyPrograms, NotifySpec, NotifyState, RunOutcome, ScriptSpec,
};

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "vio-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes a shell script; it is run as `/bin/sh <path>` (never exec'd
    /// directly, which can fail with ETXTBSY while another test thread forks).
    fn script(&self, name: &str, body: &str) -> Vec<String> {
        let p = self.path(name);
        std::fs::write(&p, body).expect("write script");
        vec!["/bin/sh".to_owned(), p.display().to_string()]
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sh(cmd: &str) -> Vec<String> {
    vec!["/bin/sh".to_owned(), "-c".to_owned(), cmd.to_owned()]
}

#[tokio::test]
async fn io_run_outcomes() {
    assert_eq!(
        run_with_timeout(&sh("exit 0"), Duration::from_secs(5))
            .await
            .0,
        RunOutcome::Success
    );
    assert_eq!(
        run_with_timeout(&sh("exit 3"), Duration::from_secs(5))
            .await
            .0,
        RunOutcome::Failed { code: Some(3) }
    );
    assert!(matches!(
        run_with_timeout(
            &["/nonexistent/halb-probe".to_owned()],
            Duration::from_secs(5)
        )
        .await
        .0,
        RunOutcome::SpawnError(_)
    ));
    assert!(matches!(
        run_with_timeout(&[], Duration::from_secs(5)).await.0,
        RunOutcome::SpawnError(_)
    ));
}

fn process_gone_or_zombie(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state is the field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[tokio::test]
async fn io_track_script_timeout_is_a_failure_and_kills_the_group() {
    let dir = TempDir::new("trackto");
    let pidfile = dir.path("child.pid");
    // A shell whose child would outlive it if only the shell were killed.
    let argv = sh(&format!("sleep 30 & echo $! > {}; wait", pidfile.display()));
    let (tx, mut rx) = mpsc::channel(4);
    let _probe = spawn_track_script(
        ScriptSpec {
            name: "slow".to_owned(),
            argv,
            interval: Duration::from_secs(60),
            timeout: Duration::from_millis(300),
        },
        tx,
    )
    .expect("spawn");
    let result = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a result within 5 s")
        .expect("channel open");
    assert_eq!(result.name, "slow");
    assert_eq!(result.outcome, RunOutcome::TimedOut);
    assert!(!result.success());
    assert!(
        result.elapsed >= Duration::from_millis(300) && result.elapsed < Duration::from_secs(3),
        "{:?}",
        result.elapsed
    );
    let pid = std::fs::read_to_string(&pidfile)
        .expect("pid file")
        .trim()
        .to_owned();
    let mut gone = false;
    for _ in 0..40 {
        if process_gone_or_zombie(&pid) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the script's child {pid} was killed with its group");
}

#[tokio::test]
async fn io_track_script_reports_each_run() {
    let dir = TempDir::new("trackrun");
    let counter = dir.path("n");
    // Succeeds on the first two runs, fails from the third on.
    let argv = sh(&format!(
        "echo x >> {c}; test $(wc -l < {c}) -le 2",
        c = counter.display()
    ));
    let (tx, mut rx) = mpsc::channel(8);
    let probe = spawn_track_script(
        ScriptSpec {
            name: "chk".to_owned(),
            argv,
            interval: Duration::from_millis(100),
            timeout: Duration::from_secs(2),
        },
        tx,
    )
    .expect("spawn");
    let mut outcomes = Vec::new();
    for _ in 0..4 {
        let r = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("result in time")
            .expect("open");
        outcomes.push(r.success());
    }
    probe.stop();
    assert_eq!(outcomes, vec![true, true, false, false]);
    assert!(spawn_track_script(
        ScriptSpec {
            name: "empty".to_owned(),
            argv: vec![],
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
        },
        mpsc::channel(1).0,
    )
    .is_err());
}

async fn next_matching(
    rx: &mut mpsc::Receiver<vrrp::io::FileReading>,
    want: &Result<i64, FileReadError>,
) -> bool {
    for _ in 0..100 {
        match tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
            Ok(Some(r)) if &r.value == want => return true,
            Ok(Some(_)) => {}
            _ => return false,
        }
    }
    false
}

#[tokio::test]
async fn io_track_file_reads_values_and_errors() {
    let dir = TempDir::new("trackfile");
    let path = dir.path("weight");
    std::fs::write(&path, "12\n").expect("write");
    let (tx, mut rx) = mpsc::channel(4);
    let _probe = spawn_track_file(
        FileSpec {
            name: "w".to_owned(),
            path: path.clone(),
            interval: Duration::from_millis(20),
        },
        tx,
    );
    assert!(next_matching(&mut rx, &Ok(12)).await);
    std::fs::write(&path, "-40").expect("write");
    assert!(next_matching(&mut rx, &Ok(-40)).await);
    std::fs::write(&path, "lots").expect("write");
    assert!(
        next_matching(
            &mut rx,
            &Err(FileReadError::NotAnInteger("lots".to_owned()))
        )
        .await
    );
    std::fs::remove_file(&path).expect("remove");
    assert!(next_matching(&mut rx, &Err(FileReadError::Missing)).await);
}

fn read_lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn io_notify_runs_programs_in_order_with_keepalived_arguments() {
    let dir = TempDir::new("notify");
    let out = dir.path("out");
    let generic = dir.script("notify.sh", &format!("echo \"$*\" >> {}\n", out.display()));
    let mut generic_with_arg = generic.clone();
    generic_with_arg.push("first-arg".to_owned());
    let hook = dir.script(
        "master.sh",
        &format!("echo \"master-hook argc=$#\" >> {}\n", out.display()),
    );
    let notifier = Notifier::spawn(NotifySpec {
        kind: NotifyKind::Instance,
        name: "VI_1".to_owned(),
        programs: NotifyPrograms {
            notify: vec![generic_with_arg],
            master: vec![hook],
            ..NotifyPrograms::default()
        },
        timeout: Duration::from_secs(5),
    });
    let start = std::time::Instant::now();
    assert!(notifier.notify(NotifyState::Backup, 100));
    assert!(notifier.notify(NotifyState::Master, 100));
    assert!(notifier.notify(NotifyState::Fault, 0));
    assert!(notifier.notify(NotifyState::Stop, 0));
    assert!(
        start.elapsed() < Duration::from_millis(50),
        "notify does not block"
    );
    tokio::time::timeout(Duration::from_secs(20), notifier.close())
        .await
        .expect("queue drained");
    assert_eq!(
        read_lines(&out),
        vec![
            "first-arg INSTANCE VI_1 BACKUP 100",
            "master-hook argc=0",
            "first-arg INSTANCE VI_1 MASTER 100",
            "first-arg INSTANCE VI_1 FAULT 0",
            "first-arg INSTANCE VI_1 STOP 0",
        ]
    );
}

#[tokio::test]
async fn io_notify_timeout_kills_and_the_queue_goes_on() {
    let dir = TempDir::new("notifyto");
    let out = dir.path("out");
    let generic = dir.script("notify.sh", &format!("echo \"$*\" >> {}\n", out.display()));
    let notifier = Notifier::spawn(NotifySpec {
        kind: NotifyKind::Group,
        name: "G1".to_owned(),
        programs: NotifyPrograms {
            notify: vec![generic],
            fault: vec![sh("sleep 30")],
            ..NotifyPrograms::default()
        },
        timeout: Duration::from_millis(300),
    });
    let start = std::time::Instant::now();
    notifier.notify(NotifyState::Fault, 0);
    notifier.notify(NotifyState::Backup, 50);
    tokio::time::timeout(Duration::from_secs(10), notifier.close())
        .await
        .expect("queue drained");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(
        read_lines(&out),
        vec!["GROUP G1 FAULT 0", "GROUP G1 BACKUP 50"]
    );
}
