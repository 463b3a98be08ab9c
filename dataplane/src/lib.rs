//! User-space L4/L7 balancing for halb: balancing algorithms and Maglev,
//! sans-IO server health, active checks, draining, and TCP / UDP / HTTP
//! frontends behind one [`Runtime`] whose configuration is an immutable
//! snapshot swapped on reload.
//!
//! Entry points for the daemon: [`Runtime::new`] (or
//! [`Runtime::with_loops`], client connections on event loops of their own), [`Runtime::apply`],
//! [`Runtime::server_admin`], [`Runtime::status`], [`Runtime::shutdown`],
//! and for socket hand-over [`Runtime::listener_fds`] /
//! [`Runtime::adopt_listeners`].

pub mod balance;
pub mod check;
pub mod error;
mod h1;
pub mod health;
pub mod http;
pub mod loops;
pub mod maglev;
mod metrics;
mod park;
pub mod proxy_protocol;
pub mod runtime;
pub mod shutdown;
pub mod tcp;
pub mod udp;

pub use error::{Error, ErrorSource, ProxyError, ProxyErrorKind};
pub use health::{AdminState, ServerState};
pub use loops::{EventLoops, LoopsError};
pub use runtime::{
    serve, AdminAction, BackendStatus, Change, CheckReport, FrontendHandle, FrontendStatus,
    Listener, ListenerFd, LoopsStatus, ReloadDiff, Runtime, ServerStatus, ShutdownReport, Status,
};
pub use shutdown::Shutdown;
