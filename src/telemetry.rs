//! Metrics and the stats page on `node.metrics_listen`.
//!
//! `GET /metrics` renders the Prometheus text exposition of every `halb_*`
//! metric recorded through the `metrics` facade; `GET /` is a live HTML stats
//! page (no external assets) built from the daemon's status; `GET /status`
//! is the same status as JSON.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

use crate::daemon::Daemon;
use crate::shutdown::Shutdown;
use crate::stats_page;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Buckets (seconds) for latency histograms.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Installs the global Prometheus recorder once and returns its handle.
pub fn recorder() -> Result<PrometheusHandle, String> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let builder = PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)
        .map_err(|e| format!("metrics buckets: {e}"))?;
    let handle = builder
        .install_recorder()
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    let _ = HANDLE.set(handle.clone());
    Ok(HANDLE.get().cloned().unwrap_or(handle))
}

/// Describes the daemon-level metrics and sets build info.
pub fn describe() {
    metrics::describe_gauge!(
        "halb_build_info",
        "Build information; the value is always 1."
    );
    metrics::describe_gauge!(
        "halb_config_generation",
        "Generation of the running config; starts at 1, bumped by each successful reload."
    );
    metrics::describe_counter!(
        "halb_config_reloads_total",
        "Config reloads that were applied."
    );
    metrics::describe_counter!(
        "halb_config_reload_failures_total",
        "Config reloads rejected; the running config was kept."
    );
    metrics::describe_gauge!(
        "halb_config_last_reload_timestamp_seconds",
        "Unix time of the last reload attempt."
    );
    metrics::describe_gauge!(
        "halb_config_last_reload_success",
        "1 if the last reload attempt was applied, 0 if it was rejected."
    );
    metrics::describe_counter!(
        "halb_admin_requests_total",
        "Admin socket requests by result (ok, malformed)."
    );
    metrics::gauge!(
        "halb_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
    )
    .set(1.0);
}

/// Serves `/metrics`, `/status` and `/` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    daemon: Arc<Daemon>,
    shutdown: Shutdown,
) {
    let upkeep = {
        let handle = handle.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = shutdown.wait() => break,
                    _ = tick.tick() => handle.run_upkeep(),
                }
            }
        })
    };
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let handle = handle.clone();
        let daemon = daemon.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let handle = handle.clone();
                let daemon = daemon.clone();
                async move { Ok::<_, Infallible>(route(req, &handle, &daemon).await) }
            });
            let conn = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.wait() => {}
            }
        });
    }
    upkeep.abort();
}

async fn route(
    req: Request<Incoming>,
    handle: &PrometheusHandle,
    daemon: &Daemon,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match req.uri().path() {
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            handle.render(),
        ),
        "/status" => {
            let status = daemon.status().await;
            let body = serde_json::to_string_pretty(&status)
                .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
            reply(StatusCode::OK, "application/json", body)
        }
        "/" => {
            let status = daemon.status().await;
            reply(
                StatusCode::OK,
                "text/html; charset=utf-8",
                stats_page::render(&status),
            )
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /, /metrics or /status\n",
        ),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    reply(status, "text/plain; charset=utf-8", body.to_string())
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    resp
}

/// Binds the metrics listener; the caller reports the error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
