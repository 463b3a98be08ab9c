//! The crate's error type.

use std::io;

/// Errors of the XDP loader.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// This build of halb has no XDP program: clang or the BPF headers were
    /// missing when it was compiled (see the build warning). XDP frontends
    /// must use the user-space L4 path.
    #[error(
        "this halb was built without its XDP program (clang or libbpf-dev missing at build time)"
    )]
    ProgramNotBuilt,
    /// The kernel refused for lack of privilege (CAP_BPF / CAP_NET_ADMIN).
    #[error("{what}: permission denied (needs CAP_BPF and CAP_NET_ADMIN): {reason}")]
    PermissionDenied {
        /// What was being done.
        what: &'static str,
        /// The kernel's or aya's message.
        reason: String,
    },
    /// Loading the object or a program failed (verifier, BTF, map creation).
    #[error("loading the XDP program failed ({what}): {reason}")]
    Load {
        /// What was being done.
        what: &'static str,
        /// The kernel's or aya's message.
        reason: String,
    },
    /// The object lacks a map or program the loader expects.
    #[error("the XDP object has no {kind} named {name:?}")]
    MissingObject {
        /// `"map"` or `"program"`.
        kind: &'static str,
        /// Its name.
        name: &'static str,
    },
    /// A map operation failed.
    #[error("map {map}: {reason}")]
    Map {
        /// Map name.
        map: &'static str,
        /// The kernel's or aya's message.
        reason: String,
    },
    /// The interface does not exist.
    #[error("interface {0:?} does not exist")]
    UnknownInterface(String),
    /// Attaching to an interface failed (driver without XDP support, ...).
    #[error("attaching XDP in {mode} mode to {interface} failed: {reason}")]
    Attach {
        /// Interface name.
        interface: String,
        /// `"native"` or `"generic"`.
        mode: &'static str,
        /// The kernel's or aya's message.
        reason: String,
    },
    /// No XDP frontend of that name.
    #[error("no XDP frontend named {0:?}")]
    UnknownFrontend(String),
    /// No server of that name in an XDP frontend using that backend.
    #[error("no server {server:?} in backend {backend:?} of an XDP frontend")]
    UnknownServer {
        /// Backend name.
        backend: String,
        /// Server name.
        server: String,
    },
    /// Two servers of one frontend share a name.
    #[error("server {0:?} is listed twice")]
    DuplicateServer(String),
    /// All VIP indices are in use.
    #[error("more than {0} XDP VIPs")]
    TooManyVips(u32),
    /// All backend indices are in use (or in drain quarantine).
    #[error("more than {0} XDP backends (including draining ones)")]
    TooManyBackends(u32),
    /// The Maglev table could not be built.
    #[error("maglev table of frontend {frontend:?}: {source}")]
    Maglev {
        /// Frontend name.
        frontend: String,
        /// Why.
        #[source]
        source: dataplane::maglev::MaglevError,
    },
    /// `BPF_PROG_TEST_RUN` failed.
    #[error("BPF_PROG_TEST_RUN failed: {0}")]
    TestRun(String),
    /// A frame handed to a test run is unusable.
    #[error("invalid test frame: {0}")]
    BadFrame(&'static str),
    /// Reading system state (CPU count, interface index) failed.
    #[error("{what}: {source}")]
    System {
        /// What was being read.
        what: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Whether an error chain contains `EPERM` / `EACCES`.
pub(crate) fn is_permission(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if matches!(io.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) {
                return true;
            }
        }
        cur = e.source();
    }
    false
}

/// The whole chain of an error as one line.
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

/// Map an aya load error to [`Error::PermissionDenied`] or [`Error::Load`].
pub(crate) fn load_error(what: &'static str, err: &(dyn std::error::Error + 'static)) -> Error {
    if is_permission(err) {
        Error::PermissionDenied {
            what,
            reason: chain(err),
        }
    } else {
        Error::Load {
            what,
            reason: chain(err),
        }
    }
}

/// Map an aya map error.
pub(crate) fn map_error(map: &'static str, err: &(dyn std::error::Error + 'static)) -> Error {
    Error::Map {
        map,
        reason: chain(err),
    }
}

/// The XDP program `name` of a loaded object.
pub(crate) fn xdp_program<'a>(
    ebpf: &'a aya::Ebpf,
    name: &'static str,
) -> Result<&'a aya::programs::Xdp, Error> {
    let prog = ebpf.program(name).ok_or(missing_program(name))?;
    prog.try_into().map_err(not_xdp)
}

/// The XDP program `name` of a loaded object, to load or attach.
pub(crate) fn xdp_program_mut<'a>(
    ebpf: &'a mut aya::Ebpf,
    name: &'static str,
) -> Result<&'a mut aya::programs::Xdp, Error> {
    let prog = ebpf.program_mut(name).ok_or(missing_program(name))?;
    prog.try_into().map_err(not_xdp)
}

fn missing_program(name: &'static str) -> Error {
    Error::MissingObject {
        kind: "program",
        name,
    }
}

fn not_xdp(e: aya::programs::ProgramError) -> Error {
    Error::Load {
        what: "program type",
        reason: chain(&e),
    }
}
