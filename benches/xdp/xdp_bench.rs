//! XDP benchmark: packets per second through halb's XDP balancer, through
//! the user-space L4 path (dataplane's UDP proxy) and through a bare XDP_TX
//! reflector (the ceiling of the interface), on the same namespace
//! topology with the same CPU placement. Needs root. Run with
//! `bash benches/xdp/run.sh` (see benches/README.md, section "XDP").
//!
//! Topology: namespace `cl` (veth `c0`) <-> namespace `lb` (veth `l0`).
//! The sender is `BPF_PROG_TEST_RUN` in live-frames mode in `cl`: a program
//! writing the same 64-byte UDP frame and returning XDP_TX transmits it (client
//! 10.0.0.2:40000 -> VIP 10.0.0.100:9000) out of `c0`, pinned to one CPU.
//! Whatever `lb` sends back (encapsulated frames, reflected frames, proxied
//! datagrams to the server 10.0.1.10, routed via 10.0.0.2) arrives on `c0`,
//! where a native XDP sink counts and drops it. The figure is frames
//! delivered to the sink per second of sending.
//!
//! The machine is shared and noisy, so the XDP cases are set up once and
//! measured in `--rounds` rounds (default 5), alternating their order
//! (reflector, xdp / xdp, reflector / ...). Every round prints its figures
//! and its ratio xdp / reflector; the summary gives the median, minimum and
//! maximum of each case and of the per-round ratios. The user-space case
//! is measured once, after the rounds. Every measurement is bounded by
//! `--packets` and `--seconds`. `--prog-stats` turns on the kernel's
//! per-program run-time statistics and prints ns per run of the program
//! on `l0` (slower: diagnostics, not figures).
//!
//! After the rounds, each XDP case's program also runs `--prog-runs` times
//! (default 100000, 0 = off) through BPF_PROG_TEST_RUN without live frames,
//! one frame per call: the kernel-measured time per run isolates the
//! program's own cost (plus a constant harness overhead) from the rest of
//! the pipeline (the balancer on its established-flow path).
//!
//! Cases:
//! * `reflector`: bare MAC-swap + XDP_TX on `l0` (native).
//! * `xdp`: halb's balancer on `l0` (native), ipip to 10.0.1.10.
//! * `userspace`: an XDP_PASS program on `l0` (so the veth accepts the
//!   sender's frames) and dataplane's UDP frontend on the VIP, proxying to
//!   10.0.1.10:9000; its tokio runtime is pinned to the other CPU.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ebpf::bench::{BenchProgram, BenchPrograms, RunStats};
use ebpf::{AttachMode, XdpBalancer, XdpOptions};
use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use testsupport::{Lab, Netns};

const C0_MAC: &str = "02:00:00:00:00:c0";
const L0_MAC: &str = "02:00:00:00:00:10";

struct Args {
    packets: u64,
    seconds: u64,
    rounds: u32,
    sender_cpu: usize,
    proxy_cpu: usize,
    cases: Vec<String>,
    prog_stats: bool,
    prog_runs: u32,
}

const USAGE: &str = "flags: --rounds N --packets N --seconds S --sender-cpu C --proxy-cpu C \
                     --cases reflector,xdp,userspace --prog-stats --prog-runs N";

fn parse_args() -> Args {
    let mut a = Args {
        packets: 20_000_000,
        seconds: 3,
        rounds: 5,
        sender_cpu: 1,
        proxy_cpu: 0,
        cases: vec!["reflector".into(), "xdp".into(), "userspace".into()],
        prog_stats: false,
        prog_runs: 100_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--prog-stats" {
            a.prog_stats = true;
            continue;
        }
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--packets" => a.packets = value.parse().unwrap_or(a.packets),
            "--seconds" => a.seconds = value.parse().unwrap_or(a.seconds).clamp(1, 60),
            "--rounds" => a.rounds = value.parse().unwrap_or(a.rounds).min(50),
            "--prog-runs" => a.prog_runs = value.parse().unwrap_or(a.prog_runs).min(2_000_000),
            "--sender-cpu" => a.sender_cpu = value.parse().unwrap_or(a.sender_cpu),
            "--proxy-cpu" => a.proxy_cpu = value.parse().unwrap_or(a.proxy_cpu),
            "--cases" => a.cases = value.split(',').map(str::to_string).collect(),
            other => {
                eprintln!("unknown flag {other}; {USAGE}");
                std::process::exit(2);
            }
        }
    }
    for case in &a.cases {
        if !["reflector", "xdp", "userspace"].contains(&case.as_str()) {
            eprintln!("unknown case {case}; {USAGE}");
            std::process::exit(2);
        }
    }
    a.packets = a.packets.clamp(1_000, 200_000_000);
    a
}

fn pin(cpu: usize) {
    let mut set = CpuSet::new();
    if set.set(cpu).is_ok() {
        if let Err(e) = sched_setaffinity(Pid::from_raw(0), &set) {
            eprintln!("cannot pin to CPU {cpu}: {e}");
        }
    }
}

fn mac(s: &str) -> [u8; 6] {
    let mut m = [0u8; 6];
    for (i, part) in s.split(':').enumerate().take(6) {
        m[i] = u8::from_str_radix(part, 16).unwrap_or(0);
    }
    m
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// 64-byte Ethernet frame: UDP 10.0.0.2:40000 -> 10.0.0.100:9000.
fn frame() -> Vec<u8> {
    let payload = [0x42u8; 22];
    let udp_len = 8 + payload.len();
    let ip_len = 20 + udp_len;
    let mut ip = vec![0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&Ipv4Addr::new(10, 0, 0, 2).octets());
    ip[16..20].copy_from_slice(&Ipv4Addr::new(10, 0, 0, 100).octets());
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut udp = vec![0u8; 8];
    udp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&9000u16.to_be_bytes());
    udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&payload);
    let mut f = Vec::new();
    f.extend_from_slice(&mac(L0_MAC));
    f.extend_from_slice(&mac(C0_MAC));
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&udp);
    f
}

const CONFIG: &str = r#"
[node]
name = "bench"

[[frontend]]
name = "bench"
bind = "10.0.0.100:9000"
mode = "udp"
backend = "pool"
forwarding = "FORWARDING"
XDP_LINES

[[backend]]
name = "pool"
algorithm = "maglev"
hash_key = "source-ip-port"
health = { kind = "none" }
servers = [ { name = "s1", address = "10.0.1.10:9000" } ]
"#;

fn config(xdp: bool) -> control::config::Config {
    let text = if xdp {
        CONFIG
            .replace("FORWARDING", "ipip")
            .replace("XDP_LINES", "xdp = \"native\"\ninterface = \"l0\"")
    } else {
        CONFIG
            .replace("FORWARDING", "proxy")
            .replace("XDP_LINES", "")
    };
    match control::config::parse(&text, "bench.toml") {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bench config: {e}");
            std::process::exit(1);
        }
    }
}

type Fallible<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

struct Topo {
    _lab: Lab,
    cl: Netns,
    lb: Netns,
    c0_index: u32,
    l0_index: u32,
}

fn topology(tag: &str) -> Fallible<Topo> {
    let lab = Lab::new(tag)?;
    let cl = lab.netns("cl")?;
    let lb = lab.netns("lb")?;
    lab.link(&cl, "c0", &lb, "l0")?;
    cl.set_mac("c0", C0_MAC)?;
    lb.set_mac("l0", L0_MAC)?;
    cl.add_addr("c0", "10.0.0.2/24")?;
    lb.add_addr("l0", "10.0.0.1/24")?;
    lb.add_addr("lo", "10.0.0.100/32")?;
    lb.ip([
        "neigh",
        "replace",
        "10.0.0.2",
        "lladdr",
        C0_MAC,
        "dev",
        "l0",
        "nud",
        "permanent",
    ])?;
    lb.add_route("10.0.1.0/24", "10.0.0.2")?;
    let c0_index = cl.link("c0")?.ifindex;
    let l0_index = lb.link("l0")?.ifindex;
    Ok(Topo {
        _lab: lab,
        cl,
        lb,
        c0_index,
        l0_index,
    })
}

/// One measurement: frames sent and delivered to the sink, time spent
/// sending, and (with `--prog-stats`) the balancer-side program's runs.
struct Sample {
    sent: u64,
    delivered: u64,
    elapsed: Duration,
    /// CPU time of the sending thread while it sent: in the XDP cases the
    /// whole path (sender, both veth ends, balancer or reflector, sink)
    /// runs as softirq work in its context, so this excludes time other
    /// processes took from its CPU.
    cpu: Option<Duration>,
    prog: Option<RunStats>,
}

impl Sample {
    fn pps(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Frames delivered per CPU-second of the sending thread.
    fn pps_cpu(&self) -> Option<f64> {
        let cpu = self.cpu?.as_secs_f64();
        (cpu > 0.0).then(|| self.delivered as f64 / cpu)
    }
}

/// `USER_HZ`: the unit of utime / stime in `/proc` (100 on Linux's
/// mainstream architectures).
const USER_HZ: u64 = 100;

/// User + system CPU time of the calling thread (`/proc/thread-self/stat`,
/// resolution 10 ms; softirq work done in its context counts as its own
/// on kernels without IRQ time accounting, like this one).
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

/// Send for at most `seconds` or `packets`.
fn measure(topo: &Topo, sink: &mut BenchPrograms, args: &Args) -> Fallible<Sample> {
    let f = frame();
    let ifindex = topo.c0_index;
    let sender_cpu = args.sender_cpu;
    let limit = Duration::from_secs(args.seconds);
    let packets = args.packets;
    let chunk: u32 = 1_000_000;
    let result = topo.cl.run(|| -> Fallible<Sample> {
        pin(sender_cpu);
        // Warm-up: caches, flow table, the proxy's flow.
        sink.send(&f, ifindex, 100_000, 64)?;
        std::thread::sleep(Duration::from_millis(300));
        let before = sink.sink_stats()?.packets;
        let cpu_before = thread_cpu();
        let start = Instant::now();
        let mut sent = 0u64;
        while sent < packets && start.elapsed() < limit {
            let n = chunk.min(u32::try_from(packets - sent).unwrap_or(chunk));
            sink.send(&f, ifindex, n, 64)?;
            sent += u64::from(n);
        }
        let elapsed = start.elapsed();
        let cpu = match (cpu_before, thread_cpu()) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b)),
            _ => None,
        };
        std::thread::sleep(Duration::from_millis(300));
        let after = sink.sink_stats()?.packets;
        Ok(Sample {
            sent,
            delivered: after.saturating_sub(before),
            elapsed,
            cpu,
            prog: None,
        })
    })??;
    Ok(result)
}

fn load_sink(topo: &Topo) -> Fallible<BenchPrograms> {
    let p = topo.cl.run(|| -> Result<BenchPrograms, ebpf::Error> {
        let mut p = BenchPrograms::load()?;
        p.attach(BenchProgram::Sink, "c0", AttachMode::Native)?;
        Ok(p)
    })??;
    Ok(p)
}

/// A case set up once and measured in every round.
enum Rig {
    Reflector {
        topo: Topo,
        sink: BenchPrograms,
        lb: Box<BenchPrograms>,
    },
    Xdp {
        topo: Topo,
        sink: BenchPrograms,
        xdp: Box<XdpBalancer>,
    },
}

impl Rig {
    fn new(name: &str) -> Fallible<Rig> {
        let topo = topology(&format!("xb-{name}"))?;
        let sink = load_sink(&topo)?;
        match name {
            "reflector" => {
                let lb = topo.lb.run(|| -> Result<BenchPrograms, ebpf::Error> {
                    let mut p = BenchPrograms::load()?;
                    p.attach(BenchProgram::Reflect, "l0", AttachMode::Native)?;
                    Ok(p)
                })??;
                Ok(Rig::Reflector {
                    topo,
                    sink,
                    lb: Box::new(lb),
                })
            }
            "xdp" => {
                let cfg = config(true);
                let options = XdpOptions {
                    flow_table_entries: 65_536,
                    ..XdpOptions::default()
                };
                let (xdp, report) = topo.lb.run(|| XdpBalancer::new(&cfg, &options))??;
                if !report.fallback.is_empty() {
                    return Err(format!("XDP fallback: {:?}", report.fallback).into());
                }
                Ok(Rig::Xdp {
                    topo,
                    sink,
                    xdp: Box::new(xdp),
                })
            }
            other => Err(format!("no rig for case {other}").into()),
        }
    }

    fn prog_stats(&self) -> Fallible<RunStats> {
        Ok(match self {
            Rig::Reflector { lb, .. } => lb.run_stats(BenchProgram::Reflect)?,
            Rig::Xdp { xdp, .. } => xdp.run_stats()?,
        })
    }

    fn measure(&mut self, args: &Args) -> Fallible<Sample> {
        let before = if args.prog_stats {
            Some(self.prog_stats()?)
        } else {
            None
        };
        let mut sample = match self {
            Rig::Reflector { topo, sink, .. } | Rig::Xdp { topo, sink, .. } => {
                measure(topo, sink, args)?
            }
        };
        if let Some(before) = before {
            sample.prog = Some(self.prog_stats()?.since(before));
        }
        Ok(sample)
    }

    /// The program on `l0` run `runs` times through BPF_PROG_TEST_RUN (not
    /// live: one frame per call, nothing sent, at most `limit`): the
    /// kernel's measured time of each run. The balancer's first run pins
    /// the flow; the others take the established-flow path.
    fn prog_cost(&self, runs: u32, limit: Duration) -> Fallible<Vec<Duration>> {
        let f = frame();
        let topo = match self {
            Rig::Reflector { topo, .. } | Rig::Xdp { topo, .. } => topo,
        };
        let ingress = Some(topo.l0_index);
        topo.lb.run(|| -> Fallible<Vec<Duration>> {
            let mut v = Vec::new();
            let start = Instant::now();
            while v.len() < runs as usize && start.elapsed() < limit {
                let o = match self {
                    Rig::Reflector { lb, .. } => lb.test_run(BenchProgram::Reflect, &f, ingress)?,
                    Rig::Xdp { xdp, .. } => xdp.test_run(&f, ingress)?,
                };
                if o.action != ebpf::XdpAction::Tx {
                    return Err(format!("the program returned {:?}", o.action).into());
                }
                v.push(o.duration);
            }
            Ok(v)
        })?
    }

    fn report(&self) {
        if let Rig::Xdp { xdp, .. } = self {
            match xdp.stats() {
                Ok(stats) => eprintln!(
                    "  xdp: balancer counted {} packets, {} dropped, {} tx; {:?}",
                    stats.frontends["bench"].vip.packets,
                    stats.frontends["bench"].vip.dropped,
                    stats.global.tx,
                    stats.global
                ),
                Err(e) => eprintln!("  xdp: no counters: {e}"),
            }
        }
    }
}

/// The user-space case, set up, measured once and torn down (it is slow).
fn run_userspace(args: &Args) -> Fallible<Sample> {
    let topo = topology("xb-userspace")?;
    let mut sink = load_sink(&topo)?;
    let _pass = topo.lb.run(|| -> Result<BenchPrograms, ebpf::Error> {
        let mut p = BenchPrograms::load()?;
        p.attach(BenchProgram::Pass, "l0", AttachMode::Native)?;
        Ok(p)
    })??;
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let cfg = config(false);
    let proxy_cpu = args.proxy_cpu;
    let stop2 = stop.clone();
    let proxy = topo.lb.spawn_thread(move || {
        pin(proxy_cpu);
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready_tx.send(Err(e.to_string()));
                return;
            }
        };
        rt.block_on(async move {
            let runtime = match dataplane::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            if let Err(e) = runtime.apply(&cfg) {
                let _ = ready_tx.send(Err(e.to_string()));
                return;
            }
            let _ = ready_tx.send(Ok(()));
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = runtime.shutdown(Duration::from_secs(1)).await;
        });
    })?;
    ready_rx.recv_timeout(Duration::from_secs(10))??;
    let r = measure(&topo, &mut sink, args);
    stop.store(true, Ordering::Relaxed);
    let _ = proxy.join();
    r
}

fn print_sample(label: &str, s: &Sample) {
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    let prog = match s.prog.and_then(RunStats::per_run) {
        Some(d) => format!("; program {} ns/run", d.as_nanos()),
        None => String::new(),
    };
    let cpu = match (s.cpu, s.pps_cpu()) {
        (Some(c), Some(p)) => format!(
            "; sender thread on CPU {:.0}% of the time: {:.3} Mpps per CPU-second",
            100.0 * c.as_secs_f64() / secs,
            p / 1e6
        ),
        _ => String::new(),
    };
    println!(
        "{label:>10}: {:>8.3} Mpps delivered ({} of {} frames sent in {secs:.2} s; offered {:.3} Mpps{cpu}{prog})",
        s.pps() / 1e6,
        s.delivered,
        s.sent,
        s.sent as f64 / secs / 1e6
    );
}

/// Median, minimum and maximum (`None` for no values).
fn spread(values: &[f64]) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some((median, v[0], v[n - 1]))
}

fn main() {
    if !testsupport::gate::is_root() {
        eprintln!("xdp_bench needs root (BPF, network namespaces)");
        std::process::exit(1);
    }
    let args = parse_args();
    println!(
        "XDP benchmark: 64-byte UDP frames, sender on CPU {}, user-space proxy on CPU {}; \
         {} rounds alternating the XDP cases, at most {} packets or {} s per case and round",
        args.sender_cpu, args.proxy_cpu, args.rounds, args.packets, args.seconds
    );
    // Keep the descriptor open for the whole run: statistics stay on.
    let _stats_fd = if args.prog_stats {
        match ebpf::bench::enable_run_stats() {
            Ok(fd) => {
                println!("program run-time statistics on (they slow every case down)");
                Some(fd)
            }
            Err(e) => {
                eprintln!("cannot enable program statistics: {e}");
                None
            }
        }
    } else {
        None
    };

    let mut rigs: Vec<(String, Rig)> = Vec::new();
    for case in args.cases.iter().filter(|c| *c != "userspace") {
        match Rig::new(case) {
            Ok(rig) => rigs.push((case.clone(), rig)),
            Err(e) => println!("{case:>10}: setup failed: {e}"),
        }
    }
    // Per case: packets/s of every round; per round: xdp / reflector.
    let mut pps: Vec<(String, Vec<f64>)> =
        rigs.iter().map(|(c, _)| (c.clone(), Vec::new())).collect();
    let mut ratios: Vec<f64> = Vec::new();
    let mut cpu_ratios: Vec<f64> = Vec::new();
    for round in 0..args.rounds {
        // Alternate the order (ABBA) so a slow drift does not favour a case.
        let order: Vec<usize> = if round % 2 == 0 {
            (0..rigs.len()).collect()
        } else {
            (0..rigs.len()).rev().collect()
        };
        println!("round {}:", round + 1);
        let mut this_round: Vec<(String, f64)> = Vec::new();
        let mut this_round_cpu: Vec<(String, f64)> = Vec::new();
        for i in order {
            let (case, rig) = &mut rigs[i];
            match rig.measure(&args) {
                Ok(s) => {
                    print_sample(case, &s);
                    pps[i].1.push(s.pps());
                    this_round.push((case.clone(), s.pps()));
                    if let Some(p) = s.pps_cpu() {
                        this_round_cpu.push((case.clone(), p));
                    }
                }
                Err(e) => println!("{case:>10}: failed: {e}"),
            }
        }
        let get = |n: &str| this_round.iter().find(|(c, _)| c == n).map(|(_, p)| *p);
        if let (Some(x), Some(r)) = (get("xdp"), get("reflector")) {
            let ratio = x / r.max(1.0);
            ratios.push(ratio);
            let get_cpu = |n: &str| this_round_cpu.iter().find(|(c, _)| c == n).map(|(_, p)| *p);
            match (get_cpu("xdp"), get_cpu("reflector")) {
                (Some(xc), Some(rc)) => {
                    let cpu_ratio = xc / rc.max(1.0);
                    cpu_ratios.push(cpu_ratio);
                    println!(
                        "  xdp / reflector this round: {:.1}% (per sender CPU-second: {:.1}%)",
                        100.0 * ratio,
                        100.0 * cpu_ratio
                    );
                }
                _ => println!("  xdp / reflector this round: {:.1}%", 100.0 * ratio),
            }
        }
    }
    for (_, rig) in &rigs {
        rig.report();
    }
    if args.prog_runs > 0 {
        println!(
            "program cost (BPF_PROG_TEST_RUN, one frame per call, {} calls; kernel-measured ns per run incl. harness):",
            args.prog_runs
        );
        for (case, rig) in &rigs {
            match rig.prog_cost(args.prog_runs, Duration::from_secs(args.seconds)) {
                Ok(mut d) if !d.is_empty() => {
                    d.sort();
                    let q = |p: usize| d[(d.len() - 1) * p / 100].as_nanos();
                    // Mean of the middle 80 %: the timer ticks in steps of
                    // about 10 ns, so the median alone is coarse.
                    let mid = &d[d.len() / 10..d.len() - d.len() / 10];
                    let mean = mid.iter().map(Duration::as_nanos).sum::<u128>()
                        / (mid.len().max(1) as u128);
                    println!(
                        "{case:>10}: {mean} ns trimmed mean (median {} ns, p10 {} ns, p90 {} ns, {} runs)",
                        q(50),
                        q(10),
                        q(90),
                        d.len()
                    );
                }
                Ok(_) => println!("{case:>10}: no runs"),
                Err(e) => println!("{case:>10}: program cost failed: {e}"),
            }
        }
    }
    drop(rigs);

    let mut userspace = None;
    if args.cases.iter().any(|c| c == "userspace") {
        println!("user space (once):");
        match run_userspace(&args) {
            Ok(s) => {
                print_sample("userspace", &s);
                userspace = Some(s.pps());
            }
            Err(e) => println!(" userspace: failed: {e}"),
        }
    }

    println!("summary over {} rounds (median, min-max):", args.rounds);
    let mut medians: Vec<(String, f64)> = Vec::new();
    for (case, values) in &pps {
        if let Some((med, lo, hi)) = spread(values) {
            println!(
                "{case:>10}: {:.3} Mpps ({:.3}-{:.3}, {} rounds)",
                med / 1e6,
                lo / 1e6,
                hi / 1e6,
                values.len()
            );
            medians.push((case.clone(), med));
        }
    }
    if let Some((med, lo, hi)) = spread(&ratios) {
        println!(
            "xdp / reflector = {:.1}% median of per-round ratios ({:.1}%-{:.1}%, {} rounds; target >= 70%)",
            100.0 * med,
            100.0 * lo,
            100.0 * hi,
            ratios.len()
        );
    }
    if let Some((med, lo, hi)) = spread(&cpu_ratios) {
        println!(
            "xdp / reflector per sender CPU-second = {:.1}% median ({:.1}%-{:.1}%, {} rounds)",
            100.0 * med,
            100.0 * lo,
            100.0 * hi,
            cpu_ratios.len()
        );
    }
    let xdp = medians.iter().find(|(c, _)| c == "xdp").map(|(_, p)| *p);
    if let (Some(x), Some(u)) = (xdp, userspace) {
        println!(
            "xdp / userspace = {:.1}x (median XDP round vs the one user-space run; target >= 10x)",
            x / u.max(1.0)
        );
    }
}
