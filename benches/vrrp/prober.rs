//! The failover prober of the VRRP benchmark (std only; built by run.sh
//! with `rustc -O`).
//!
//! - `prober respond NAME PORT`: UDP responder; answers each datagram with
//!   `NAME SEQ` so the client sees which router holds the VIP.
//! - `prober probe ADDR PORT DURATION_MS INTERVAL_US`: sends a numbered probe
//!   every INTERVAL_US for DURATION_MS and prints one line of `key=value`:
//!   probes sent and answered, lost (unanswered, ignoring the last 200 ms
//!   still in flight), the largest outage (over the runs of lost probes:
//!   send time of the first answered probe after it minus send time of the
//!   last answered one before it, minus one interval), and who answered
//!   before and after it.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

fn usage() -> ! {
    eprintln!("usage: prober respond NAME PORT | prober probe ADDR PORT DURATION_MS INTERVAL_US");
    std::process::exit(2)
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize) -> T {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| usage())
}

fn respond(name: &str, port: u16) -> std::io::Result<()> {
    let sock = UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], port)))?;
    let mut buf = [0u8; 64];
    loop {
        let (n, from) = sock.recv_from(&mut buf)?;
        let mut reply = Vec::with_capacity(n + name.len() + 1);
        reply.extend_from_slice(name.as_bytes());
        reply.push(b' ');
        reply.extend_from_slice(&buf[..n]);
        let _ = sock.send_to(&reply, from);
    }
}

fn probe(addr: SocketAddr, duration: Duration, interval: Duration) -> std::io::Result<()> {
    let sock = UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], 0)))?;
    sock.set_nonblocking(true)?;
    let start = Instant::now();
    let end = start + duration;
    let mut sent: Vec<Instant> = Vec::new();
    let mut answered: HashMap<u64, String> = HashMap::new();
    let mut next = start;
    let mut buf = [0u8; 128];
    loop {
        let now = Instant::now();
        if now >= end + Duration::from_millis(200) {
            break;
        }
        if now >= next && now < end {
            let seq = sent.len() as u64;
            sent.push(now);
            let _ = sock.send_to(seq.to_string().as_bytes(), addr);
            next += interval;
            if next < now {
                next = now + interval;
            }
        }
        loop {
            match sock.recv_from(&mut buf) {
                Ok((n, _)) => {
                    let text = String::from_utf8_lossy(&buf[..n]);
                    let mut parts = text.split(' ');
                    let who = parts.next().unwrap_or("?").to_string();
                    if let Some(seq) = parts.next().and_then(|s| s.trim().parse::<u64>().ok()) {
                        answered.entry(seq).or_insert(who);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    let counted = sent
        .iter()
        .take_while(|t| **t + Duration::from_millis(200) <= end)
        .count();
    let lost = (0..counted as u64)
        .filter(|s| !answered.contains_key(s))
        .count();
    let mut last: Option<(u64, &String)> = None;
    let mut max_gap = Duration::ZERO;
    let mut before = String::from("-");
    let mut after = String::from("-");
    let mut first = String::from("-");
    for seq in 0..sent.len() as u64 {
        let Some(who) = answered.get(&seq) else {
            continue;
        };
        if first == "-" {
            first = who.clone();
        }
        // Only a silence with lost probes is an outage (a longer step
        // between two answered probes is this prober's own scheduling).
        if let Some((p, pwho)) = last.filter(|(p, _)| seq > p + 1) {
            let gap = sent[seq as usize]
                .duration_since(sent[p as usize])
                .saturating_sub(interval);
            if gap > max_gap {
                max_gap = gap;
                before = pwho.clone();
                after = who.clone();
            }
        }
        last = Some((seq, who));
    }
    let final_who = last.map(|(_, w)| w.clone()).unwrap_or_else(|| "-".into());
    println!(
        "sent={} answered={} lost={} max_gap_ms={:.1} before={} after={} first={} last={}",
        sent.len(),
        answered.len(),
        lost,
        max_gap.as_secs_f64() * 1000.0,
        before,
        after,
        first,
        final_who
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("respond") => respond(&arg::<String>(&args, 2), arg(&args, 3)),
        Some("probe") => {
            let ip: std::net::IpAddr = arg(&args, 2);
            let port: u16 = arg(&args, 3);
            let ms: u64 = arg(&args, 4);
            let us: u64 = arg(&args, 5);
            probe(
                SocketAddr::new(ip, port),
                Duration::from_millis(ms),
                Duration::from_micros(us.max(100)),
            )
        }
        _ => usage(),
    };
    if let Err(e) = result {
        eprintln!("prober: {e}");
        std::process::exit(1);
    }
}
