//! Errors: [`Error`] for the runtime API (reload, admin), [`ProxyError`] for
//! one proxied connection or request, which records who failed and whether a
//! retry on another server is allowed (the decision retries and outlier
//! detection need, as pingora's `Error { etype, esource, retry }`).

use std::fmt;
use std::net::SocketAddr;

use crate::maglev::MaglevError;
use crate::proxy_protocol::ProxyProtocolError;

/// Runtime API errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No backend of that name.
    #[error("unknown backend {0:?}")]
    UnknownBackend(String),
    /// No server of that name in the backend.
    #[error("unknown server {backend}/{server}")]
    UnknownServer {
        /// Backend name.
        backend: String,
        /// Server name.
        server: String,
    },
    /// A frontend names a backend that does not exist.
    #[error("frontend {frontend:?} uses unknown backend {backend:?}")]
    FrontendBackend {
        /// Frontend name.
        frontend: String,
        /// Backend name.
        backend: String,
    },
    /// Binding a new listener failed (the reload is not applied).
    #[error("frontend {frontend:?}: cannot bind {addr}: {source}")]
    Bind {
        /// Frontend name.
        frontend: String,
        /// Address.
        addr: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
    /// The Maglev table of a backend cannot be built.
    #[error("backend {backend:?}: {source}")]
    Maglev {
        /// Backend name.
        backend: String,
        /// Why.
        source: MaglevError,
    },
    /// The frontend uses a forwarding mode the user-space data plane does not
    /// serve (XDP `ipip` / `l2-dsr` belong to the ebpf crate).
    #[error("frontend {0:?}: forwarding mode is handled by XDP, not the user-space proxy")]
    NotUserSpace(String),
    /// The runtime is shutting down.
    #[error("the data plane is shutting down")]
    ShuttingDown,
    /// No tokio runtime is running on this thread.
    #[error("no tokio runtime: the data plane must be created inside one")]
    NoTokioRuntime,
}

/// Who failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorSource {
    /// The client (malformed request, went away, too slow).
    Client,
    /// The server (refused, reset, timed out, bad answer).
    Server,
    /// halb itself (no server available, queue full, drained).
    Internal,
}

/// What went wrong with one connection or request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyErrorKind {
    /// No server of the backend can take traffic.
    NoServer,
    /// Every server is full and the queue is full.
    QueueFull,
    /// Waited in the queue longer than the queue timeout.
    QueueTimeout,
    /// Connecting to the server failed (refused, unreachable).
    ConnectFailed(String),
    /// Connecting to the server took longer than the connect timeout.
    ConnectTimeout,
    /// The server closed or reset the connection before a full response.
    ServerReset(String),
    /// The server sent nothing for longer than the server timeout.
    ServerTimeout,
    /// The server's answer was not valid.
    ServerProtocol(String),
    /// The client's PROXY protocol header was invalid.
    ClientProxyProtocol(ProxyProtocolError),
    /// The client did not send what was expected in time.
    ClientTimeout,
    /// The client went away or its stream failed.
    ClientIo(String),
    /// The server was drained or taken down and the drain timeout passed.
    DrainTimeout,
    /// The frontend or backend vanished in a reload.
    Unconfigured,
}

/// A proxying error: kind, source and retry decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyError {
    /// What happened.
    pub kind: ProxyErrorKind,
    /// Who failed.
    pub source: ErrorSource,
    /// Whether the same request may be sent to another server: only when
    /// nothing reached a server (connection failures).
    pub retry: bool,
}

impl ProxyError {
    /// Build from a kind; source and retry follow from it.
    pub fn new(kind: ProxyErrorKind) -> Self {
        let (source, retry) = match &kind {
            ProxyErrorKind::NoServer
            | ProxyErrorKind::QueueFull
            | ProxyErrorKind::QueueTimeout
            | ProxyErrorKind::DrainTimeout
            | ProxyErrorKind::Unconfigured => (ErrorSource::Internal, false),
            ProxyErrorKind::ConnectFailed(_) | ProxyErrorKind::ConnectTimeout => {
                (ErrorSource::Server, true)
            }
            ProxyErrorKind::ServerReset(_)
            | ProxyErrorKind::ServerTimeout
            | ProxyErrorKind::ServerProtocol(_) => (ErrorSource::Server, false),
            ProxyErrorKind::ClientProxyProtocol(_)
            | ProxyErrorKind::ClientTimeout
            | ProxyErrorKind::ClientIo(_) => (ErrorSource::Client, false),
        };
        ProxyError {
            kind,
            source,
            retry,
        }
    }

    /// Whether this counts against the server for outlier detection.
    pub fn is_server_fault(&self) -> bool {
        self.source == ErrorSource::Server
    }

    /// Whether the failure happened while connecting.
    pub fn is_connect_failure(&self) -> bool {
        matches!(
            self.kind,
            ProxyErrorKind::ConnectFailed(_) | ProxyErrorKind::ConnectTimeout
        )
    }

    /// Short label for the `kind` label of `halb_server_errors_total`.
    pub fn label(&self) -> &'static str {
        match self.kind {
            ProxyErrorKind::NoServer => "no-server",
            ProxyErrorKind::QueueFull => "queue-full",
            ProxyErrorKind::QueueTimeout => "queue-timeout",
            ProxyErrorKind::ConnectFailed(_) => "connect",
            ProxyErrorKind::ConnectTimeout => "connect-timeout",
            ProxyErrorKind::ServerReset(_) => "reset",
            ProxyErrorKind::ServerTimeout => "timeout",
            ProxyErrorKind::ServerProtocol(_) => "protocol",
            ProxyErrorKind::ClientProxyProtocol(_) => "client-proxy-protocol",
            ProxyErrorKind::ClientTimeout => "client-timeout",
            ProxyErrorKind::ClientIo(_) => "client-io",
            ProxyErrorKind::DrainTimeout => "drain-timeout",
            ProxyErrorKind::Unconfigured => "unconfigured",
        }
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match self.source {
            ErrorSource::Client => "client",
            ErrorSource::Server => "server",
            ErrorSource::Internal => "internal",
        };
        match &self.kind {
            ProxyErrorKind::ConnectFailed(e)
            | ProxyErrorKind::ServerReset(e)
            | ProxyErrorKind::ServerProtocol(e)
            | ProxyErrorKind::ClientIo(e) => write!(f, "{source}: {}: {e}", self.label()),
            ProxyErrorKind::ClientProxyProtocol(e) => write!(f, "{source}: {e}"),
            _ => write!(f, "{source}: {}", self.label()),
        }?;
        if self.retry {
            f.write_str(" (retryable)")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProxyError {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn source_and_retry_follow_kind() {
        let e = ProxyError::new(ProxyErrorKind::ConnectTimeout);
        assert_eq!((e.source, e.retry), (ErrorSource::Server, true));
        assert!(e.is_connect_failure() && e.is_server_fault());
        let e = ProxyError::new(ProxyErrorKind::ServerReset("rst".into()));
        assert_eq!((e.source, e.retry), (ErrorSource::Server, false));
        let e = ProxyError::new(ProxyErrorKind::ClientTimeout);
        assert_eq!(e.source, ErrorSource::Client);
        assert!(!e.is_server_fault());
        let e = ProxyError::new(ProxyErrorKind::NoServer);
        assert_eq!((e.source, e.retry), (ErrorSource::Internal, false));
        assert_eq!(
            ProxyError::new(ProxyErrorKind::ConnectFailed("refused".into())).to_string(),
            "server: connect: refused (retryable)"
        );
    }
}
