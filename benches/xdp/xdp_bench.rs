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

use ebpf::bench::{BenchProgram, BenchPrograms};
use ebpf::{AttachMode, XdpBalancer, XdpOptions};
use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use testsupport::{Lab, Netns};

const C0_MAC: &str = "02:00:00:00:00:c0";
const L0_MAC: &str = "02:00:00:00:00:10";

struct Args {
    packets: u64,
    seconds: u64,
    sender_cpu: usize,
    proxy_cpu: usize,
    cases: Vec<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        packets: 20_000_000,
        seconds: 5,
        sender_cpu: 1,
        proxy_cpu: 0,
        cases: vec!["reflector".into(), "xdp".into(), "userspace".into()],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--packets" => a.packets = value.parse().unwrap_or(a.packets),
            "--seconds" => a.seconds = value.parse().unwrap_or(a.seconds).clamp(1, 60),
            "--sender-cpu" => a.sender_cpu = value.parse().unwrap_or(a.sender_cpu),
            "--proxy-cpu" => a.proxy_cpu = value.parse().unwrap_or(a.proxy_cpu),
            "--cases" => a.cases = value.split(',').map(str::to_string).collect(),
            other => {
                eprintln!("unknown flag {other}; flags: --packets N --seconds S --sender-cpu C --proxy-cpu C --cases a,b");
                std::process::exit(2);
            }
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
    Ok(Topo {
        _lab: lab,
        cl,
        lb,
        c0_index,
    })
}

/// Send for at most `seconds` or `packets`, return (sent, delivered, elapsed).
fn measure(topo: &Topo, sink: &mut BenchPrograms, args: &Args) -> Fallible<(u64, u64, Duration)> {
    let f = frame();
    let ifindex = topo.c0_index;
    let sender_cpu = args.sender_cpu;
    let limit = Duration::from_secs(args.seconds);
    let packets = args.packets;
    let chunk: u32 = 1_000_000;
    let result = topo.cl.run(|| -> Fallible<(u64, u64, Duration)> {
        pin(sender_cpu);
        // Warm-up: caches, flow table, the proxy's flow.
        sink.send(&f, ifindex, 100_000, 64)?;
        std::thread::sleep(Duration::from_millis(300));
        let before = sink.sink_stats()?.packets;
        let start = Instant::now();
        let mut sent = 0u64;
        while sent < packets && start.elapsed() < limit {
            let n = chunk.min(u32::try_from(packets - sent).unwrap_or(chunk));
            sink.send(&f, ifindex, n, 64)?;
            sent += u64::from(n);
        }
        let elapsed = start.elapsed();
        std::thread::sleep(Duration::from_millis(300));
        let after = sink.sink_stats()?.packets;
        Ok((sent, after.saturating_sub(before), elapsed))
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

fn run_case(name: &str, args: &Args) -> Fallible<(u64, u64, Duration)> {
    let topo = topology(&format!("xb-{name}"))?;
    let mut sink = load_sink(&topo)?;
    match name {
        "reflector" => {
            let _lb = topo.lb.run(|| -> Result<BenchPrograms, ebpf::Error> {
                let mut p = BenchPrograms::load()?;
                p.attach(BenchProgram::Reflect, "l0", AttachMode::Native)?;
                Ok(p)
            })??;
            measure(&topo, &mut sink, args)
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
            let r = measure(&topo, &mut sink, args)?;
            let stats = xdp.stats()?;
            eprintln!(
                "  xdp: balancer counted {} packets, {} dropped, {} tx; {:?}",
                stats.frontends["bench"].vip.packets,
                stats.frontends["bench"].vip.dropped,
                stats.global.tx,
                stats.global
            );
            Ok(r)
        }
        "userspace" => {
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
        other => Err(format!("unknown case {other}").into()),
    }
}

fn main() {
    if !testsupport::gate::is_root() {
        eprintln!("xdp_bench needs root (BPF, network namespaces)");
        std::process::exit(1);
    }
    let args = parse_args();
    println!(
        "XDP benchmark: 64-byte UDP frames, sender on CPU {}, user-space proxy on CPU {}, at most {} packets or {} s per case",
        args.sender_cpu, args.proxy_cpu, args.packets, args.seconds
    );
    let mut results = Vec::new();
    for case in args.cases.clone() {
        match run_case(&case, &args) {
            Ok((sent, delivered, elapsed)) => {
                let secs = elapsed.as_secs_f64().max(1e-9);
                let pps = delivered as f64 / secs;
                println!(
                    "{case:>10}: {:>8.3} Mpps delivered ({delivered} of {sent} frames sent in {:.2} s; offered {:.3} Mpps)",
                    pps / 1e6,
                    secs,
                    sent as f64 / secs / 1e6
                );
                results.push((case, pps));
            }
            Err(e) => {
                println!("{case:>10}: failed: {e}");
            }
        }
    }
    let get = |n: &str| results.iter().find(|(c, _)| c == n).map(|(_, p)| *p);
    if let (Some(x), Some(u)) = (get("xdp"), get("userspace")) {
        println!("xdp / userspace = {:.1}x (target >= 10x)", x / u.max(1.0));
    }
    if let (Some(x), Some(r)) = (get("xdp"), get("reflector")) {
        println!(
            "xdp / reflector = {:.0}% (target >= 70%)",
            100.0 * x / r.max(1.0)
        );
    }
}
