//! Active health checks (TCP connect, HTTP) and the per-server health driver
//! that feeds their results, and timer expiries, into the sans-IO
//! [`crate::health::Health`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use control::config::{HealthConfig, HealthKind};
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::health::CheckFailure;
use crate::runtime::{has_active_checks, CheckReport, ServerShared};

/// Most of an HTTP check answer that is read (status line, headers, body).
const MAX_CHECK_RESPONSE: usize = 64 * 1024;

/// TCP check: the connect succeeds within `timeout`.
pub async fn tcp_check(addr: SocketAddr, timeout: Duration) -> Result<(), CheckFailure> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => Err(CheckFailure::Timeout),
        Ok(Err(e)) => Err(CheckFailure::Connect(e.to_string())),
        Ok(Ok(_)) => Ok(()),
    }
}

/// HTTP/1.1 check: `method path` with `Host` (the configured one or the
/// server address) and `Connection: close`; the status must be in
/// `expect_status` and, when set, the body must contain `expect_body`. The
/// whole exchange must finish within `timeout`; at most 64 KiB are read.
pub async fn http_check(addr: SocketAddr, cfg: &HealthConfig) -> Result<(), CheckFailure> {
    match tokio::time::timeout(cfg.timeout, http_exchange(addr, cfg)).await {
        Err(_) => Err(CheckFailure::Timeout),
        Ok(r) => r,
    }
}

async fn http_exchange(addr: SocketAddr, cfg: &HealthConfig) -> Result<(), CheckFailure> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| CheckFailure::Connect(e.to_string()))?;
    let host = cfg.host.clone().unwrap_or_else(|| addr.to_string());
    let request = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: halb-check\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        cfg.method, cfg.path, host
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| CheckFailure::Io(e.to_string()))?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let mut status: Option<u16> = None;
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| CheckFailure::Io(e.to_string()))?;
        buf.extend_from_slice(&chunk[..n]);
        if status.is_none() {
            if let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") {
                let code = parse_status_line(&buf[..line_end]).ok_or(CheckFailure::BadResponse)?;
                if !cfg.expect_status.contains(&code) {
                    return Err(CheckFailure::Status(code));
                }
                status = Some(code);
                if cfg.expect_body.is_none() {
                    return Ok(());
                }
            }
        }
        if let (Some(_), Some(want)) = (status, cfg.expect_body.as_deref()) {
            if let Some(body_at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let body = &buf[body_at + 4..];
                if body
                    .windows(want.len().max(1))
                    .any(|w| w == want.as_bytes())
                    || want.is_empty()
                {
                    return Ok(());
                }
            }
        }
        if n == 0 || buf.len() >= MAX_CHECK_RESPONSE {
            return Err(if status.is_some() {
                CheckFailure::BodyMismatch
            } else {
                CheckFailure::BadResponse
            });
        }
    }
}

fn parse_status_line(line: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

/// Run one check of `addr` as configured.
pub async fn run_check(addr: SocketAddr, cfg: &HealthConfig) -> Result<(), CheckFailure> {
    match cfg.kind {
        HealthKind::Http => http_check(addr, cfg).await,
        HealthKind::Tcp | HealthKind::None => tcp_check(addr, cfg.timeout).await,
    }
}

fn jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::rng().random_range(0..nanos))
}

/// Per-server driver: runs active checks every `interval` (+ random jitter),
/// ends passive ejections when due, until `cancel`.
pub(crate) async fn drive(shared: Arc<ServerShared>, cfg: HealthConfig, cancel: CancellationToken) {
    let active = has_active_checks(&cfg);
    // First check soon, spread over the interval so servers are not checked
    // in lockstep.
    let first = jitter(cfg.jitter.max(cfg.interval / 4));
    let mut next_check = active.then(|| Instant::now() + first);
    loop {
        let timer = shared.poll_timeout();
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = sleep_opt(next_check), if next_check.is_some() => {
                let started = Instant::now();
                let result = tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = run_check(shared.address, &cfg) => r,
                };
                let latency = started.elapsed();
                shared.metrics.check_duration.record(latency.as_secs_f64());
                let report = CheckReport {
                    ok: result.is_ok(),
                    detail: result.as_ref().err().map(|e| e.to_string()),
                    latency_us: u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
                };
                if let Err(e) = &result {
                    tracing::debug!(backend = %shared.backend, server = %shared.name, error = %e, "health check failed");
                }
                shared.on_check(report, result);
                next_check = Some(Instant::now() + cfg.interval + jitter(cfg.jitter));
            }
            _ = sleep_opt(timer), if timer.is_some() => {
                shared.on_timeout();
            }
            _ = shared.wake.notified() => {}
        }
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn status_line() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 503"), Some(503));
        assert_eq!(parse_status_line(b"HTTP/2 200 OK"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 20 OK"), None);
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH"), None);
    }
}
