//! Gates for tests that need root or an external program.
//!
//! Outside CI a test that cannot run prints `SKIP <test>: <reason>` to stderr
//! and returns early. Under CI (`CI=true`) a skip would hide a broken
//! environment, so the gate panics instead and the test fails.

use std::path::{Path, PathBuf};

/// What a gate decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateDecision {
    /// The requirement is met: run the test.
    Run,
    /// Not met, not under CI: print a skip line and return.
    Skip,
    /// Not met under CI: fail the test.
    Fail,
}

/// Whether the value of the `CI` environment variable means "running under CI".
///
/// `true`, `1` and `yes` (any case) count; unset, empty, `false` and `0` do not.
pub fn ci_enabled(ci: Option<&str>) -> bool {
    match ci {
        Some(value) => {
            let v = value.trim();
            v.eq_ignore_ascii_case("true") || v == "1" || v.eq_ignore_ascii_case("yes")
        }
        None => false,
    }
}

/// The pure decision behind every gate: `met` is whether the requirement
/// holds (root, tool present), `ci` is the raw value of the `CI` variable.
pub fn decide(met: bool, ci: Option<&str>) -> GateDecision {
    if met {
        GateDecision::Run
    } else if ci_enabled(ci) {
        GateDecision::Fail
    } else {
        GateDecision::Skip
    }
}

/// The name of the running test (cargo names each test's thread after it).
pub fn current_test_name() -> String {
    std::thread::current()
        .name()
        .map(str::to_owned)
        .unwrap_or_else(|| "<unnamed test>".to_owned())
}

fn apply(decision: GateDecision, what: &str) -> bool {
    let test = current_test_name();
    match decision {
        GateDecision::Run => true,
        GateDecision::Skip => {
            // Straight to the stderr handle, not eprintln!: libtest captures
            // the print macros of passing tests, and a skip must be visible.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIP {test}: {what}");
            false
        }
        GateDecision::Fail => {
            panic!("{test}: {what}, and CI=true forbids skipping");
        }
    }
}

/// Whether the effective user is root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `true` when running as root. Otherwise prints
/// `SKIP <test>: needs root (<reason>)` and returns `false`, or panics when
/// `CI=true`.
pub fn require_root(reason: &str) -> bool {
    let ci = std::env::var("CI").ok();
    apply(
        decide(is_root(), ci.as_deref()),
        &format!("needs root ({reason})"),
    )
}

/// Where `program` would be found: an absolute/relative path that exists, or
/// the first match in `PATH` followed by `/usr/sbin` and `/sbin` (which a
/// non-login root shell may lack in `PATH`).
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = Path::new(program);
        return is_executable(p).then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// `true` when `program` is installed. Otherwise prints
/// `SKIP <test>: needs <program> (not found in PATH)` and returns `false`, or
/// panics when `CI=true`.
pub fn require_tool(program: &str) -> bool {
    let ci = std::env::var("CI").ok();
    apply(
        decide(find_program(program).is_some(), ci.as_deref()),
        &format!("needs {program} (not found in PATH)"),
    )
}

/// The value a gated test returns when it skips: `()` or `Ok(())`.
///
/// Lets [`require_root!`](macro@crate::require_root) and
/// [`require_tool!`](macro@crate::require_tool) work in tests returning `()` and in
/// tests returning `Result<(), E>`.
pub trait SkipValue {
    /// The "nothing happened" value.
    fn skip_value() -> Self;
}

impl SkipValue for () {
    fn skip_value() -> Self {}
}

impl<T: SkipValue, E> SkipValue for Result<T, E> {
    fn skip_value() -> Self {
        Ok(T::skip_value())
    }
}

/// Return early from a test unless running as root.
///
/// ```
/// fn plain_test() {
///     testsupport::require_root!(); // reason: "network namespaces"
///     // ... only reached as root ...
/// }
/// fn result_test() -> Result<(), testsupport::Error> {
///     testsupport::require_root!("raw sockets");
///     Ok(())
/// }
/// plain_test();
/// assert!(result_test().is_ok());
/// ```
/// Works in tests returning `()` and `Result<(), E>`.
#[macro_export]
macro_rules! require_root {
    () => {
        $crate::require_root!("network namespaces")
    };
    ($reason:expr) => {
        if !$crate::gate::require_root($reason) {
            return $crate::gate::SkipValue::skip_value();
        }
    };
}

/// Return early from a test unless each named program is installed
/// (same CI semantics as [`require_root!`](macro@crate::require_root)).
///
/// ```
/// fn uses_tools() {
///     testsupport::require_tool!("sh", "ip");
///     // ... only reached when both are installed ...
/// }
/// uses_tools();
/// ```
#[macro_export]
macro_rules! require_tool {
    ($($program:expr),+ $(,)?) => {
        $(
            if !$crate::gate::require_tool($program) {
                return $crate::gate::SkipValue::skip_value();
            }
        )+
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_runs_regardless_of_ci() {
        assert_eq!(decide(true, None), GateDecision::Run);
        assert_eq!(decide(true, Some("true")), GateDecision::Run);
    }

    #[test]
    fn non_root_skips_outside_ci() {
        assert_eq!(decide(false, None), GateDecision::Skip);
        assert_eq!(decide(false, Some("")), GateDecision::Skip);
        assert_eq!(decide(false, Some("false")), GateDecision::Skip);
        assert_eq!(decide(false, Some("0")), GateDecision::Skip);
    }

    #[test]
    fn non_root_fails_under_ci() {
        assert_eq!(decide(false, Some("true")), GateDecision::Fail);
        assert_eq!(decide(false, Some("TRUE")), GateDecision::Fail);
        assert_eq!(decide(false, Some("1")), GateDecision::Fail);
        assert_eq!(decide(false, Some("yes")), GateDecision::Fail);
    }

    #[test]
    fn skip_prints_and_returns_false() {
        assert!(!apply(GateDecision::Skip, "needs root (unit test)"));
        assert!(apply(GateDecision::Run, "unused"));
    }

    #[test]
    #[should_panic(expected = "CI=true forbids skipping")]
    fn fail_panics() {
        apply(GateDecision::Fail, "needs root (unit test)");
    }

    #[test]
    fn finds_sh_and_not_nonsense() {
        assert!(find_program("sh").is_some());
        assert!(find_program("/bin/sh").is_some());
        assert!(find_program("definitely-not-a-program-halb").is_none());
        assert!(find_program("/nonexistent/sh").is_none());
    }

    fn gated_unit() -> u32 {
        // A helper that mimics the macro's expansion in a function returning a
        // value, to check SkipValue for Result.
        fn inner(run: bool) -> Result<u32, String> {
            if !run {
                return <Result<(), String> as SkipValue>::skip_value().map(|()| 0);
            }
            Ok(7)
        }
        inner(false).unwrap_or(99) + inner(true).unwrap_or(99)
    }

    #[test]
    fn skip_value_is_ok() {
        assert_eq!(gated_unit(), 7);
        let skipped: Result<(), String> = SkipValue::skip_value();
        assert_eq!(skipped, Ok(()));
    }
}
