//! The admin socket: a Unix stream socket carrying line-delimited JSON.
//!
//! Every request is one JSON object on one line, tagged by `cmd`:
//!
//! ```text
//! {"cmd":"status"}
//! {"cmd":"reload"}
//! {"cmd":"server","action":"drain","backend":"web","server":"a"}
//! {"cmd":"node","action":"standby"}
//! ```
//!
//! Every answer is one JSON object on one line: `{"ok":true,"result":…}` or
//! `{"ok":false,"error":"…","details":["…"]}`. A malformed, oversized or
//! unknown request gets an error answer and the connection stays usable; the
//! daemon never stops because of what a client sends.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::codec::{Framed, LinesCodec, LinesCodecError};

use crate::daemon::Daemon;
use crate::shutdown::Shutdown;

/// Longest request line accepted, in bytes.
pub const MAX_LINE: usize = 64 * 1024;

/// A request on the admin socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Liveness check; answers `"pong"`.
    Ping {},
    /// The full status of the daemon and of each running part: JSON, or
    /// with `"text": true` the rendered text of `halb status`.
    Status {
        #[serde(default)]
        text: bool,
    },
    /// Re-read and apply the config file, like SIGHUP.
    Reload {},
    /// Runtime control of one server of a backend.
    Server {
        action: ServerAction,
        backend: String,
        server: String,
    },
    /// Node modes.
    Node { action: NodeAction },
    /// Hand the listening sockets to a new halb process (`halb run
    /// --upgrade`): answered with SCM_RIGHTS, see `crate::upgrade`.
    Upgrade {},
}

impl Request {
    /// Parses one request line. Only a JSON object is a request (serde would
    /// also take `["status"]`, which the protocol does not define).
    pub fn from_line(line: &str) -> Result<Request, String> {
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        if !value.is_object() {
            return Err("a request is a JSON object with a \"cmd\" key".to_string());
        }
        serde_json::from_value(value).map_err(|e| e.to_string())
    }
}

/// What to do to one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerAction {
    /// No new connections; connections in flight finish up to drain_timeout.
    Drain,
    /// Back under health-check control.
    Enable,
    /// Maintenance: no traffic at all, health checks keep running.
    Disable,
}

/// What to do to this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeAction {
    Standby,
    Unstandby,
    Maintenance,
    Unmaintenance,
    Failback,
}

/// An answer on the admin socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

impl Response {
    pub fn ok(result: serde_json::Value) -> Self {
        Response {
            ok: true,
            result: Some(result),
            error: None,
            details: Vec::new(),
        }
    }

    pub fn err(error: impl Into<String>) -> Self {
        Response {
            ok: false,
            result: None,
            error: Some(error.into()),
            details: Vec::new(),
        }
    }

    pub fn err_with(error: impl Into<String>, details: Vec<String>) -> Self {
        Response {
            details,
            ..Response::err(error)
        }
    }
}

/// Errors of the admin socket, server and client side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    #[error("admin socket {path}: another halb answers there")]
    InUse { path: PathBuf },
    #[error("admin socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("admin socket {path}: no answer within {timeout:?}")]
    Timeout { path: PathBuf, timeout: Duration },
    #[error("admin socket {path}: the daemon closed the connection without answering")]
    Closed { path: PathBuf },
    #[error("admin socket {path}: unreadable answer: {reason}")]
    BadAnswer { path: PathBuf, reason: String },
}

/// Binds the admin socket at `path` with mode 0600, creating its directory.
/// A stale socket file (nothing answers) is replaced; a live one is an error.
pub async fn bind(path: &Path) -> Result<UnixListener, AdminError> {
    let io_err = |source| AdminError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io_err)?;
        }
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(AdminError::InUse {
                path: path.to_path_buf(),
            });
        }
        std::fs::remove_file(path).map_err(io_err)?;
    }
    let listener = UnixListener::bind(path).map_err(io_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err)?;
    Ok(listener)
}

/// Serves admin requests until `shutdown` fires.
pub async fn serve(listener: UnixListener, daemon: Arc<Daemon>, shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let daemon = daemon.clone();
                    let shutdown = shutdown.clone();
                    tokio::spawn(async move { connection(stream, daemon, shutdown).await });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admin socket accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn connection(stream: UnixStream, daemon: Arc<Daemon>, shutdown: Shutdown) {
    let mut framed = Framed::new(stream, LinesCodec::new_with_max_length(MAX_LINE));
    loop {
        let line = tokio::select! {
            _ = shutdown.wait() => return,
            line = framed.next() => line,
        };
        let response = match line {
            None => return,
            Some(Ok(line)) if line.trim().is_empty() => continue,
            Some(Ok(line)) => match Request::from_line(&line) {
                Ok(Request::Upgrade {}) => {
                    metrics::counter!("halb_admin_requests_total", "result" => "ok").increment(1);
                    let stream = framed.into_inner();
                    daemon.hand_over(stream).await;
                    return;
                }
                Ok(request) => {
                    metrics::counter!("halb_admin_requests_total", "result" => "ok").increment(1);
                    daemon.handle_admin(request).await
                }
                Err(e) => {
                    metrics::counter!("halb_admin_requests_total", "result" => "malformed")
                        .increment(1);
                    tracing::debug!(error = %e, "malformed admin request");
                    Response::err(format!("malformed request: {e}"))
                }
            },
            Some(Err(LinesCodecError::MaxLineLengthExceeded)) => {
                metrics::counter!("halb_admin_requests_total", "result" => "malformed")
                    .increment(1);
                let r = Response::err(format!("request longer than {MAX_LINE} bytes"));
                // The rest of the oversized line cannot be resynchronised: answer, then close.
                let _ = send(&mut framed, &r).await;
                return;
            }
            Some(Err(LinesCodecError::Io(e))) => {
                tracing::debug!(error = %e, "admin connection read failed");
                return;
            }
        };
        if send(&mut framed, &response).await.is_err() {
            return;
        }
    }
}

async fn send(
    framed: &mut Framed<UnixStream, LinesCodec>,
    response: &Response,
) -> Result<(), LinesCodecError> {
    let text = serde_json::to_string(response)
        .unwrap_or_else(|e| format!(r#"{{"ok":false,"error":"cannot encode answer: {e}"}}"#));
    framed.send(text).await
}

/// Sends one request and waits for its answer.
pub async fn request(
    path: &Path,
    request: &Request,
    timeout: Duration,
) -> Result<Response, AdminError> {
    let work = async {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| AdminError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        let mut framed = Framed::new(stream, LinesCodec::new_with_max_length(64 * MAX_LINE));
        let line = serde_json::to_string(request).map_err(|e| AdminError::BadAnswer {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        framed.send(line).await.map_err(|e| AdminError::Io {
            path: path.to_path_buf(),
            source: io::Error::other(e.to_string()),
        })?;
        match framed.next().await {
            None => Err(AdminError::Closed {
                path: path.to_path_buf(),
            }),
            Some(Err(e)) => Err(AdminError::BadAnswer {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }),
            Some(Ok(text)) => serde_json::from_str(&text).map_err(|e| AdminError::BadAnswer {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }),
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(AdminError::Timeout {
            path: path.to_path_buf(),
            timeout,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_from_their_documented_form() {
        let r = Request::from_line(r#"{"cmd":"status"}"#).unwrap();
        assert_eq!(r, Request::Status { text: false });
        let r: Request = serde_json::from_str(
            r#"{"cmd":"server","action":"drain","backend":"web","server":"a"}"#,
        )
        .unwrap();
        assert_eq!(
            r,
            Request::Server {
                action: ServerAction::Drain,
                backend: "web".into(),
                server: "a".into()
            }
        );
        let r: Request = serde_json::from_str(r#"{"cmd":"node","action":"standby"}"#).unwrap();
        assert_eq!(
            r,
            Request::Node {
                action: NodeAction::Standby
            }
        );
    }

    #[test]
    fn unknown_and_malformed_requests_are_errors() {
        for bad in [
            r#"{"cmd":"explode"}"#,
            r#"{"cmd":"status","extra":1}"#,
            r#"{"cmd":"server","action":"drain","backend":"web"}"#,
            r#"{"cmd":"server","action":"melt","backend":"web","server":"a"}"#,
            r#"["status"]"#,
            "status",
            "{",
        ] {
            assert!(Request::from_line(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn responses_round_trip() {
        let r = Response::err_with("bad config", vec!["f:1:2: x".into()]);
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"ok":false,"error":"bad config","details":["f:1:2: x"]}"#
        );
        assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), r);
    }
}
