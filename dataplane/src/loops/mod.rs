//! Event loops for client connections: one thread per loop, each the one
//! worker of a tokio runtime of its own whose reactor watches the sockets
//! of the connections it serves, so a connection's events, its task and its
//! pooled server connections stay on one thread (HAProxy's and nginx's
//! model, instead of tasks stolen between threads).
//!
//! `node.worker_threads` loops are started; how many take connections is
//! `node.worker_scaling` ([`WorkerScaling`]): all of them, or (`auto`) as many as the machine has CPU for
//! ([`scale`]): one to begin with, one more when every active loop is
//! saturated and a CPU is idle, one fewer when the loops wait for CPUs
//! (they would take turns on one CPU, each turn up to a scheduler tick
//! long) or the work fits in fewer. A new connection goes to the active
//! loop with the fewest connections; an HTTP/1 connection moves, between
//! two requests, from a loop that stopped taking connections or has two
//! more than the least loaded one.

pub mod scale;

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use control::config::WorkerScaling;
use futures_util::FutureExt as _;
use metrics::{counter, gauge, Gauge};

use scale::{LoopSample, Scaler};

/// How often the loops' figures are read in [`WorkerScaling::Auto`].
pub const WINDOW: Duration = Duration::from_millis(250);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The loop running on this thread: (set id, index).
    static CURRENT: Cell<Option<(u64, usize)>> = const { Cell::new(None) };
}

/// The index of the loop running on this thread, in whichever set.
pub(crate) fn current() -> Option<usize> {
    CURRENT.with(|c| c.get()).map(|(_, i)| i)
}

#[derive(Debug, thiserror::Error)]
pub enum LoopsError {
    #[error("cannot start event loop {index}: {source}")]
    Start {
        index: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("event loop {0} did not run its first task")]
    Vanished(usize),
}

struct Loop {
    handle: tokio::runtime::Handle,
    /// The thread's id, for its scheduler figures.
    tid: i32,
    /// Connection tasks on it.
    conns: Arc<AtomicUsize>,
}

/// The event loops of a data plane. Dropping the last handle stops them
/// (tasks still on them are dropped).
pub struct EventLoops {
    id: u64,
    loops: Box<[Loop]>,
    /// Loops `0..active` take connections.
    active: AtomicUsize,
    scaling: WorkerScaling,
    /// Stopped in the background on drop (no wait: the last handle may
    /// go inside another runtime).
    runtimes: Mutex<Vec<tokio::runtime::Runtime>>,
    active_gauge: Gauge,
    /// Connections moved between loops so far.
    moves: AtomicU64,
}

impl std::fmt::Debug for EventLoops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoops")
            .field("loops", &self.loops.len())
            .field("active", &self.active())
            .field("scaling", &self.scaling)
            .finish()
    }
}

impl Drop for EventLoops {
    fn drop(&mut self) {
        let runtimes = match self.runtimes.get_mut() {
            Ok(r) => std::mem::take(r),
            Err(p) => std::mem::take(p.into_inner()),
        };
        for rt in runtimes {
            rt.shutdown_background();
        }
    }
}

/// Holds a connection's place in its loop's count while its task lives.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl EventLoops {
    /// Start `n` loops (at least one). With [`WorkerScaling::Auto`] (and more
    /// than one loop) a task on the calling tokio runtime adjusts how many
    /// take connections; without a runtime, or when the kernel gives no
    /// scheduler figures (`/proc/<pid>/task/<tid>/schedstat`), all do.
    pub fn start(n: usize, scaling: WorkerScaling) -> Result<Arc<EventLoops>, LoopsError> {
        let n = n.max(1);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let mut loops = Vec::with_capacity(n);
        let mut runtimes = Vec::with_capacity(n);
        for index in 0..n {
            // A one-worker multi-thread runtime: the worker's scheduler
            // (with its LIFO slot: a task woken by the one running goes
            // next) does better for relays than the current-thread one.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name(format!("halb-loop-{index}"))
                .on_thread_start(move || CURRENT.with(|c| c.set(Some((id, index)))))
                .enable_all()
                .build()
                .map_err(|source| LoopsError::Start { index, source })?;
            let (tx, rx) = std::sync::mpsc::channel();
            rt.spawn(async move {
                let _ = tx.send(nix::unistd::gettid().as_raw());
            });
            let tid = rx
                .recv_timeout(Duration::from_secs(10))
                .map_err(|_| LoopsError::Vanished(index))?;
            loops.push(Loop {
                handle: rt.handle().clone(),
                tid,
                conns: Arc::new(AtomicUsize::new(0)),
            });
            runtimes.push(rt);
        }
        // `auto` needs a runtime for its adjusting task and the kernel's
        // figures for the loop threads.
        let ticker = tokio::runtime::Handle::try_current().ok();
        let scaling = match scaling {
            WorkerScaling::Auto if ticker.is_none() => WorkerScaling::All,
            WorkerScaling::Auto if !loops.iter().all(|l| read_schedstat(l.tid).is_some()) => {
                tracing::warn!(
                    "no scheduler figures for threads (/proc/<pid>/task/<tid>/schedstat): all {n} event loops take connections"
                );
                WorkerScaling::All
            }
            s => s,
        };
        let active = match scaling {
            WorkerScaling::All => n,
            WorkerScaling::Auto => 1,
        };
        let active_gauge = gauge!("halb_event_loops_active");
        active_gauge.set(active as f64);
        gauge!("halb_event_loops").set(n as f64);
        let set = Arc::new(EventLoops {
            id,
            loops: loops.into_boxed_slice(),
            active: AtomicUsize::new(active),
            scaling,
            runtimes: Mutex::new(runtimes),
            active_gauge,
            moves: AtomicU64::new(0),
        });
        if let (WorkerScaling::Auto, Some(rt), true) = (scaling, ticker, n > 1) {
            rt.spawn(adjust(Arc::downgrade(&set), Scaler::new(n)));
        }
        Ok(set)
    }

    /// How many loops there are.
    pub(crate) fn len(&self) -> usize {
        self.loops.len()
    }

    /// How many take connections now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    pub fn scaling(&self) -> WorkerScaling {
        self.scaling
    }

    /// Connection tasks on each loop.
    pub fn connections(&self) -> Vec<usize> {
        self.loops
            .iter()
            .map(|l| l.conns.load(Ordering::Relaxed))
            .collect()
    }

    /// Connections moved between loops so far.
    pub fn moves(&self) -> u64 {
        self.moves.load(Ordering::Relaxed)
    }

    /// The active loop with the fewest connections.
    fn least_loaded(&self) -> usize {
        let active = self.active();
        (0..active)
            .min_by_key(|&i| self.loops[i].conns.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Run a connection's task on the least loaded active loop. Sockets it
    /// registers when first polled belong to that loop's reactor.
    pub fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn_on(self.least_loaded(), fut);
    }

    fn spawn_on<F>(&self, index: usize, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let l = &self.loops[index];
        l.conns.fetch_add(1, Ordering::Relaxed);
        let counted = Counted(Arc::clone(&l.conns));
        // Not an `async` block awaiting `fut`: that would hold the task's
        // future twice. The guard goes when the future ends or is dropped.
        l.handle.spawn(fut.map(move |()| drop(counted)));
    }

    /// Called by a connection task between two requests: the loop it
    /// should move to, if any (its own loop stopped taking connections,
    /// or has at least two more than the least loaded one).
    pub(crate) fn move_target(&self) -> Option<usize> {
        let (id, here) = CURRENT.with(|c| c.get())?;
        if id != self.id {
            return None;
        }
        let to = self.least_loaded();
        if to == here {
            return None;
        }
        if here >= self.active() {
            return Some(to);
        }
        let load = |i: usize| self.loops[i].conns.load(Ordering::Relaxed);
        (load(here) >= load(to) + 2).then_some(to)
    }

    /// Run a connection task on loop `index` (a move).
    pub(crate) fn spawn_moved<F>(&self, index: usize, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        counter!("halb_event_loop_moves_total").increment(1);
        self.moves.fetch_add(1, Ordering::Relaxed);
        self.spawn_on(index, fut);
    }

    fn set_active(&self, n: usize) {
        self.active.store(n, Ordering::Relaxed);
        self.active_gauge.set(n as f64);
    }
}

/// Run time and run-queue wait time of a thread, in nanoseconds.
fn read_schedstat(tid: i32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    let mut it = s.split_ascii_whitespace().map(|f| f.parse::<u64>().ok());
    Some((it.next()??, it.next()??))
}

/// Idle and total time (jiffies) of the CPUs this process may run on.
#[derive(Debug, Clone, Copy)]
struct CpuTimes {
    idle: u64,
    total: u64,
    cpus: usize,
}

/// What [`adjust`] read at the end of a window.
struct Reading {
    at: Instant,
    /// Run and wait time of each loop's thread (ns).
    threads: Vec<(u64, u64)>,
    cpu: CpuTimes,
}

fn read_cpu_idle() -> Option<CpuTimes> {
    let allowed = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok();
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let (mut idle, mut total, mut cpus) = (0u64, 0u64, 0usize);
    for line in stat.lines() {
        let mut f = line.split_ascii_whitespace();
        let Some(name) = f.next() else { continue };
        let Some(n) = name.strip_prefix("cpu").filter(|n| !n.is_empty()) else {
            continue;
        };
        let Ok(n) = n.parse::<usize>() else { continue };
        if let Some(set) = &allowed {
            if !set.is_set(n).unwrap_or(false) {
                continue;
            }
        }
        let v: Vec<u64> = f.filter_map(|x| x.parse().ok()).collect();
        if v.len() < 5 {
            continue;
        }
        // user nice system idle iowait irq softirq steal (guest is in user).
        idle += v[3] + v[4];
        total += v.iter().take(8).sum::<u64>();
        cpus += 1;
    }
    (cpus > 0).then_some(CpuTimes { idle, total, cpus })
}

/// Every [`WINDOW`]: read the figures, decide, apply. Ends with the loops.
async fn adjust(set: Weak<EventLoops>, mut scaler: Scaler) {
    let mut tick = tokio::time::interval(WINDOW);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<Reading> = None;
    loop {
        tick.tick().await;
        let Some(set) = set.upgrade() else { return };
        let at = Instant::now();
        let threads: Option<Vec<(u64, u64)>> =
            set.loops.iter().map(|l| read_schedstat(l.tid)).collect();
        let (Some(threads), Some(cpu)) = (threads, read_cpu_idle()) else {
            continue;
        };
        let now = Reading { at, threads, cpu };
        if let Some(before) = &last {
            decide(&set, &mut scaler, before, &now);
        }
        last = Some(now);
    }
}

/// One window, from `before` to `now`: decide and apply.
fn decide(set: &EventLoops, scaler: &mut Scaler, before: &Reading, now: &Reading) {
    let secs = now.at.saturating_duration_since(before.at).as_secs_f64();
    let total = now.cpu.total.saturating_sub(before.cpu.total);
    if secs <= 0.0 || total == 0 {
        return;
    }
    let idle = now.cpu.idle.saturating_sub(before.cpu.idle);
    let idle_cpus = now.cpu.cpus as f64 * idle as f64 / total as f64;
    let samples: Vec<LoopSample> = now
        .threads
        .iter()
        .zip(&before.threads)
        .take(scaler.active())
        .map(|(a, b)| LoopSample {
            run: a.0.saturating_sub(b.0) as f64 / 1e9 / secs,
            wait: a.1.saturating_sub(b.1) as f64 / 1e9 / secs,
        })
        .collect();
    let Some((n, reason)) = scaler.decide(now.at, &samples, idle_cpus) else {
        return;
    };
    let figures = |f: fn(&LoopSample) -> f64| {
        samples
            .iter()
            .map(|s| format!("{:.2}", f(s)))
            .collect::<Vec<_>>()
            .join(",")
    };
    tracing::info!(
        active = n,
        of = set.len(),
        reason = reason.as_str(),
        run = %figures(|s| s.run),
        wait = %figures(|s| s.wait),
        idle_cpus = format!("{idle_cpus:.2}"),
        "event loops taking connections changed"
    );
    counter!("halb_event_loop_changes_total", "reason" => reason.as_str()).increment(1);
    set.set_active(n);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    #[test]
    fn spreads_over_all_loops_and_counts_tasks_until_they_end() {
        let set = EventLoops::start(3, WorkerScaling::All).expect("start");
        assert_eq!(set.active(), 3);
        let (tx, rx) = std::sync::mpsc::channel();
        let mut ends = Vec::new();
        for _ in 0..6 {
            let (end_tx, end_rx) = oneshot::channel::<()>();
            ends.push(end_tx);
            let tx = tx.clone();
            set.spawn(async move {
                let _ = tx.send(current());
                let _ = end_rx.await;
            });
        }
        let mut on: Vec<usize> = (0..6)
            .map(|_| {
                rx.recv_timeout(Duration::from_secs(5))
                    .expect("task ran")
                    .expect("on a loop")
            })
            .collect();
        on.sort_unstable();
        assert_eq!(on, vec![0, 0, 1, 1, 2, 2]);
        assert_eq!(set.connections(), vec![2, 2, 2]);
        drop(ends);
        let deadline = Instant::now() + Duration::from_secs(5);
        while set.connections() != vec![0, 0, 0] {
            assert!(Instant::now() < deadline, "counts: {:?}", set.connections());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn moves_off_an_inactive_or_crowded_loop() {
        let set = EventLoops::start(2, WorkerScaling::All).expect("start");
        // Not on a loop: nowhere to move from.
        assert_eq!(set.move_target(), None);
        let (tx, rx) = std::sync::mpsc::channel();
        let (end_tx, end_rx) = tokio::sync::watch::channel(());
        let ask = |set: &Arc<EventLoops>, i: usize| {
            let (tx, set2, mut end) = (tx.clone(), Arc::clone(set), end_rx.clone());
            set.spawn_on(i, async move {
                let _ = tx.send(set2.move_target());
                let _ = end.changed().await;
            });
            rx.recv_timeout(Duration::from_secs(5)).expect("task ran")
        };
        // 1 on loop 0, none on 1: the difference is 1, no move.
        assert_eq!(ask(&set, 0), None);
        // 2 on loop 0: two more than loop 1.
        assert_eq!(ask(&set, 0), Some(1));
        // Loop 1 stops taking connections: a task on it moves to 0.
        set.set_active(1);
        assert_eq!(ask(&set, 1), Some(0));
        // And nothing on loop 0 moves (it is the only active one).
        assert_eq!(ask(&set, 0), None);
        drop(end_tx);
    }

    #[test]
    fn scheduler_figures_are_readable_here() {
        // Some work and a switch, so the run time is accounted.
        let mut x = 0u64;
        for i in 0..1_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        std::thread::sleep(Duration::from_millis(2));
        let tid = nix::unistd::gettid().as_raw();
        let Some((run, _)) = read_schedstat(tid) else {
            println!("skip: no /proc/self/task/{tid}/schedstat on this kernel");
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI kernel has no schedstat"
            );
            return;
        };
        assert!(run > 0);
        let cpu = read_cpu_idle().expect("/proc/stat");
        assert!(cpu.cpus >= 1 && cpu.idle <= cpu.total && cpu.total > 0);
    }

    /// A server answering every request after `ms` milliseconds, on
    /// keep-alive connections.
    async fn slow_server(ms: u64) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                            let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                            if s.write_all(ok).await.is_err() {
                                return;
                            }
                        }
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        addr
    }

    async fn send(c: &mut tokio::net::TcpStream) {
        use tokio::io::AsyncWriteExt;
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("send");
    }

    /// One response on a keep-alive connection: its status line.
    async fn response(c: &mut tokio::net::TcpStream) -> String {
        use tokio::io::AsyncReadExt;
        let mut got = Vec::new();
        let mut chunk = [0u8; 1024];
        while !got.ends_with(b"\r\n\r\nok") {
            let n = tokio::time::timeout(Duration::from_secs(20), c.read(&mut chunk))
                .await
                .expect("a response within 20 s")
                .expect("read");
            assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&got)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    }

    async fn exchange(c: &mut tokio::net::TcpStream) -> String {
        send(c).await;
        response(c).await
    }

    /// End to end through a data plane: two connections busy on loop 0
    /// while loop 1 starts taking connections; after its response one of
    /// them moves to loop 1 (exactly one: then they are even), and both
    /// go on serving requests.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_busy_connection_moves_to_a_loop_that_starts_taking_connections() {
        let server = slow_server(400).await;
        let loops = EventLoops::start(2, WorkerScaling::All).expect("start");
        loops.set_active(1);
        let rt = crate::Runtime::with_loops(Arc::clone(&loops)).expect("runtime");
        let text = format!(
            "[node]\nname = \"t\"\n[[frontend]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\nmode = \"http\"\nbackend = \"web\"\n\
             [[backend]]\nname = \"web\"\nservers = [ {{ name = \"s1\", address = \"{server}\" }} ]\nhealth = {{ kind = \"none\" }}\n"
        );
        let config = control::config::parse(&text, "t.toml").expect("config");
        rt.apply(&config).expect("apply");
        let addr = rt.local_addr("web").expect("bound");
        let mut a = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut b = tokio::net::TcpStream::connect(addr).await.expect("connect");
        // Both requests in flight on loop 0, then loop 1 opens.
        send(&mut a).await;
        send(&mut b).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(loops.connections(), vec![2, 0]);
        loops.set_active(2);
        assert_eq!(response(&mut a).await, "HTTP/1.1 200 OK");
        assert_eq!(response(&mut b).await, "HTTP/1.1 200 OK");
        let deadline = Instant::now() + Duration::from_secs(5);
        while loops.moves() == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(loops.moves(), 1);
        for _ in 0..3 {
            assert_eq!(exchange(&mut a).await, "HTTP/1.1 200 OK");
            assert_eq!(exchange(&mut b).await, "HTTP/1.1 200 OK");
        }
        assert_eq!(loops.moves(), 1);
        let st = rt.status();
        assert_eq!(st.frontends[0].responses.c2xx, 8);
        drop((a, b));
        rt.shutdown(Duration::from_secs(5)).await;
    }
}
