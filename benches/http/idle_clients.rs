//! Opens N TCP connections to a proxy and keeps them idle, for the memory
//! benchmark (benches/http/run.sh). Std only; built with `rustc -O`.
//!
//! Phases, each announced on stdout and held for HOLD seconds:
//!   `PHASE connected N`  N connections open, nothing sent
//!   `PHASE requested N`  one keep-alive GET answered on each, then idle
//! Usage: idle_clients ADDR N HOLD_SECS

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: idle_clients ADDR N HOLD_SECS");
        std::process::exit(2);
    }
    let addr: SocketAddr = match args[1].parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bad address {}: {e}", args[1]);
            std::process::exit(2);
        }
    };
    let n: usize = args[2].parse().unwrap_or(10_000);
    let hold = Duration::from_secs(args[3].parse().unwrap_or(8));
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(s) => conns.push(s),
            Err(e) => {
                eprintln!("connection {i}: {e}");
                std::process::exit(1);
            }
        }
    }
    println!("PHASE connected {}", conns.len());
    let _ = std::io::stdout().flush();
    std::thread::sleep(hold);

    // One request at a time, so the proxy needs only a few pooled server
    // connections: what stays is the idle client connection.
    let req = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
    let mut failed = 0usize;
    let mut buf = [0u8; 4096];
    for s in &mut conns {
        if s.write_all(req).is_err() {
            failed += 1;
            continue;
        }
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        // Read until the end of the head and the Content-Length body.
        let mut got = Vec::new();
        let ok = loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break false,
                Ok(k) => got.extend_from_slice(&buf[..k]),
            }
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if got.len() >= end + 4 + len {
                    break head.starts_with("http/1.1 200");
                }
            }
        };
        if !ok {
            failed += 1;
        }
    }
    println!("PHASE requested {} failed {failed}", conns.len());
    let _ = std::io::stdout().flush();
    std::thread::sleep(hold);
    println!("PHASE done");
}
