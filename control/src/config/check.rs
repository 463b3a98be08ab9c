//! Small typed checks shared by the section validators. Each one records a
//! precise error (naming the key) in the [`Collector`] and returns `None`
//! when the value is unusable, so that validation carries on and every
//! problem of a file is reported.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use super::error::Collector;
use super::raw::{Bool, Dur, Int, List, Str};

/// Longest Linux interface name (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;
/// Longest name of a node, instance, frontend, backend, server or device.
const NAME_MAX: usize = 64;

/// A key path for messages: `prefix` joined with `key` (`garp.repeat`,
/// `servers[1].address`).
pub(crate) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// A duration as written back in messages (`1s 500ms`).
pub(crate) fn show(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

pub(crate) struct Check<'c, 't> {
    pub(crate) c: &'c mut Collector<'t>,
    /// Key paths of the current item that were taken out after a serde error
    /// (already reported); they are not reported again as missing.
    removed: HashSet<String>,
}

impl<'c, 't> Check<'c, 't> {
    pub(crate) fn new(c: &'c mut Collector<'t>) -> Self {
        Check {
            c,
            removed: HashSet::new(),
        }
    }

    /// Starts checking an item whose `removed` keys were already reported.
    pub(crate) fn begin_item(&mut self, removed: &HashSet<String>) {
        self.removed.clone_from(removed);
    }

    /// True when `v` is absent and was not taken out after an earlier error.
    pub(crate) fn absent<T>(&self, v: &Option<T>, key: &str) -> bool {
        v.is_none() && !self.removed.contains(key)
    }

    pub(crate) fn err(&mut self, span: &Range<usize>, message: impl Into<String>) {
        self.c.at(span, message);
    }

    pub(crate) fn line_of(&self, span: &Range<usize>) -> usize {
        self.c.line_of(span)
    }

    /// Reports `key` missing from the table at `table` when `v` is absent.
    pub(crate) fn required<'v, T>(
        &mut self,
        v: &'v Option<T>,
        key: &str,
        table: &Range<usize>,
    ) -> Option<&'v T> {
        if self.absent(v, key) {
            self.err(table, format!("missing required key '{key}'"));
        }
        v.as_ref()
    }

    /// An identifier: non-empty, `[A-Za-z0-9._-]`, at most 64 characters.
    pub(crate) fn name_value(&mut self, v: &Str, key: &str) -> Option<String> {
        let s = v.get_ref();
        if s.is_empty() {
            self.err(&v.span(), format!("{key} must not be empty"));
            return None;
        }
        if let Some(bad) = s
            .chars()
            .find(|ch| !(ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-')))
        {
            self.err(
                &v.span(),
                format!(
                    "{key} may contain only letters, digits, '.', '_' and '-', got {s:?} (with {bad:?})"
                ),
            );
            return None;
        }
        if s.len() > NAME_MAX {
            self.err(
                &v.span(),
                format!(
                    "{key} must be at most {NAME_MAX} characters, got {}",
                    s.len()
                ),
            );
            return None;
        }
        Some(s.clone())
    }

    /// A required identifier (see [`Check::name_value`]).
    pub(crate) fn name(
        &mut self,
        v: &Option<Str>,
        key: &str,
        table: &Range<usize>,
    ) -> Option<String> {
        let v = self.required(v, key, table)?;
        self.name_value(v, key)
    }

    /// A Linux interface name: 1..=15 bytes, no '/', ':', whitespace or
    /// control characters, not "." or "..".
    pub(crate) fn ifname_value(&mut self, v: &Str, key: &str) -> Option<String> {
        let s = v.get_ref();
        let ok = !s.is_empty()
            && s.len() <= IFNAME_MAX
            && s != "."
            && s != ".."
            && !s
                .chars()
                .any(|ch| ch == '/' || ch == ':' || ch.is_whitespace() || ch.is_control());
        if ok {
            Some(s.clone())
        } else {
            self.err(
                &v.span(),
                format!(
                    "{key} must be a Linux interface name (1 to {IFNAME_MAX} bytes, no '/', ':' or spaces), got {s:?}"
                ),
            );
            None
        }
    }

    /// A non-empty string.
    pub(crate) fn non_empty(&mut self, v: &Str, key: &str) -> Option<String> {
        if v.get_ref().is_empty() {
            self.err(&v.span(), format!("{key} must not be empty"));
            None
        } else {
            Some(v.get_ref().clone())
        }
    }

    /// A non-empty path; `absolute` also requires a leading '/'.
    pub(crate) fn path_value(&mut self, v: &Str, key: &str, absolute: bool) -> Option<PathBuf> {
        let s = v.get_ref();
        if s.is_empty() {
            self.err(&v.span(), format!("{key} must not be empty"));
            return None;
        }
        if absolute && !s.starts_with('/') {
            self.err(
                &v.span(),
                format!("{key} must be an absolute path, got {s:?}"),
            );
            return None;
        }
        Some(PathBuf::from(s))
    }

    /// An integer in `lo..=hi` converted to `T`; absent = `default`.
    pub(crate) fn int<T: TryFrom<i64>>(
        &mut self,
        v: &Option<Int>,
        key: &str,
        lo: i64,
        hi: i64,
        default: T,
    ) -> Option<T> {
        match v {
            None => Some(default),
            Some(v) => self.int_value(v, key, lo, hi),
        }
    }

    /// A present integer in `lo..=hi` converted to `T`.
    pub(crate) fn int_value<T: TryFrom<i64>>(
        &mut self,
        v: &Int,
        key: &str,
        lo: i64,
        hi: i64,
    ) -> Option<T> {
        let n = *v.get_ref();
        if n < lo || n > hi {
            self.err(&v.span(), format!("{key} must be {lo}..={hi}, got {n}"));
            return None;
        }
        match T::try_from(n) {
            Ok(t) => Some(t),
            Err(_) => {
                // Unreachable with sane bounds; reported rather than panicking.
                self.err(&v.span(), format!("{key} is out of range, got {n}"));
                None
            }
        }
    }

    /// An integer of at least `lo` that fits in a `u32`; absent = `default`.
    pub(crate) fn at_least_u32(
        &mut self,
        v: &Option<Int>,
        key: &str,
        lo: u32,
        default: u32,
    ) -> Option<u32> {
        let Some(v) = v else {
            return Some(default);
        };
        let n = *v.get_ref();
        if n < i64::from(lo) {
            self.err(&v.span(), format!("{key} must be at least {lo}, got {n}"));
            return None;
        }
        match u32::try_from(n) {
            Ok(t) => Some(t),
            Err(_) => {
                self.err(
                    &v.span(),
                    format!("{key} must be at most {}, got {n}", u32::MAX),
                );
                None
            }
        }
    }

    /// A boolean; absent = `default`.
    pub(crate) fn boolean(&mut self, v: &Option<Bool>, default: bool) -> bool {
        v.as_ref().map(|b| *b.get_ref()).unwrap_or(default)
    }

    /// A present duration string.
    pub(crate) fn duration_value(&mut self, v: &Dur, key: &str) -> Option<Duration> {
        let text = &v.get_ref().0;
        match humantime::parse_duration(text.trim()) {
            Ok(d) if !text.trim().is_empty() => Some(d),
            _ => {
                self.err(
                    &v.span(),
                    format!("{key} must be a duration such as \"10ms\" or \"1s\", got {text:?}"),
                );
                None
            }
        }
    }

    /// A duration; absent = `default`.
    pub(crate) fn duration(
        &mut self,
        v: &Option<Dur>,
        key: &str,
        default: Duration,
    ) -> Option<Duration> {
        match v {
            None => Some(default),
            Some(v) => self.duration_value(v, key),
        }
    }

    /// A duration of more than zero; absent = `default`.
    pub(crate) fn duration_positive(
        &mut self,
        v: &Option<Dur>,
        key: &str,
        default: Duration,
    ) -> Option<Duration> {
        self.duration_range(v, key, default, Duration::from_nanos(1), None)
    }

    /// A duration in `min..=max` (no upper bound when `max` is `None`);
    /// absent = `default`.
    pub(crate) fn duration_range(
        &mut self,
        v: &Option<Dur>,
        key: &str,
        default: Duration,
        min: Duration,
        max: Option<Duration>,
    ) -> Option<Duration> {
        let Some(raw) = v else {
            return Some(default);
        };
        let d = self.duration_value(raw, key)?;
        let text = &raw.get_ref().0;
        if d < min {
            let msg = if min == Duration::from_nanos(1) {
                format!("{key} must be more than 0s, got {text:?}")
            } else {
                format!("{key} must be at least {}, got {text:?}", show(min))
            };
            self.err(&raw.span(), msg);
            return None;
        }
        if let Some(max) = max {
            if d > max {
                self.err(
                    &raw.span(),
                    format!("{key} must be at most {}, got {text:?}", show(max)),
                );
                return None;
            }
        }
        Some(d)
    }

    /// One of a fixed set of words; absent = `default`.
    pub(crate) fn choice<E: Copy>(
        &mut self,
        v: &Option<Str>,
        key: &str,
        options: &[(&str, E)],
        default: E,
    ) -> Option<E> {
        match v {
            None => Some(default),
            Some(v) => self.choice_value(v, key, options),
        }
    }

    /// A present word out of a fixed set.
    pub(crate) fn choice_value<E: Copy>(
        &mut self,
        v: &Str,
        key: &str,
        options: &[(&str, E)],
    ) -> Option<E> {
        if let Some((_, e)) = options.iter().find(|(word, _)| word == v.get_ref()) {
            return Some(*e);
        }
        let words: Vec<&str> = options.iter().map(|(w, _)| *w).collect();
        self.err(
            &v.span(),
            format!(
                "{key} must be one of: {}, got {:?}",
                words.join(", "),
                v.get_ref()
            ),
        );
        None
    }

    /// An IP address (no prefix).
    pub(crate) fn ip_value(&mut self, v: &Str, key: &str) -> Option<IpAddr> {
        match v.get_ref().parse::<IpAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    &v.span(),
                    format!(
                        "{key} must be an IP address such as \"10.0.0.1\" or \"2001:db8::1\", got {:?}",
                        v.get_ref()
                    ),
                );
                None
            }
        }
    }

    /// An address with prefix length; a bare address is a host route (/32, /128).
    pub(crate) fn cidr_value(&mut self, v: &Str, key: &str) -> Option<IpNet> {
        let s = v.get_ref();
        let parsed = if s.contains('/') {
            s.parse::<IpNet>().ok()
        } else {
            s.parse::<IpAddr>().ok().map(IpNet::from)
        };
        if parsed.is_none() {
            self.err(
                &v.span(),
                format!(
                    "{key} must be an address or CIDR such as \"10.0.0.100/24\" or \"2001:db8::1/64\", got {s:?}"
                ),
            );
        }
        parsed
    }

    /// An address with a port.
    pub(crate) fn socket_addr_value(&mut self, v: &Str, key: &str) -> Option<SocketAddr> {
        match v.get_ref().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    &v.span(),
                    format!(
                        "{key} must be an address with a port such as \"10.0.0.1:80\" or \"[2001:db8::1]:80\", got {:?}",
                        v.get_ref()
                    ),
                );
                None
            }
        }
    }

    /// Checks each element of an optional list with `f`; keeps the good ones
    /// with their index. `f` gets the element and its key path (`key[i]`).
    pub(crate) fn each<T, U>(
        &mut self,
        list: &Option<List<T>>,
        key: &str,
        mut f: impl FnMut(&mut Self, &toml::Spanned<T>, &str) -> Option<U>,
    ) -> Vec<(usize, U)> {
        let mut out = Vec::new();
        if let Some(list) = list {
            for (i, item) in list.get_ref().iter().enumerate() {
                let path = format!("{key}[{i}]");
                if let Some(u) = f(self, item, &path) {
                    out.push((i, u));
                }
            }
        }
        out
    }

    /// Reports `what` names that appear twice, at the second occurrence.
    pub(crate) fn unique_names<'a>(
        &mut self,
        what: &str,
        names: impl IntoIterator<Item = (&'a str, Range<usize>)>,
    ) {
        let mut seen: HashMap<&str, Range<usize>> = HashMap::new();
        for (name, span) in names {
            if let Some(first) = seen.get(name) {
                let line = self.line_of(first);
                self.err(
                    &span,
                    format!("duplicate {what} name '{name}' (first used on line {line})"),
                );
            } else {
                seen.insert(name, span);
            }
        }
    }
}

/// True when `n` is prime (trial division; config-sized numbers only).
pub(crate) fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let mut d = 3u64;
    while d.saturating_mul(d) <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes() {
        let small: Vec<u64> = (0..30).filter(|&n| is_prime(n)).collect();
        assert_eq!(small, vec![2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
        assert!(is_prime(65537));
        assert!(!is_prime(65536));
        assert!(is_prime(16_777_213));
        assert!(!is_prime(16_777_215));
    }

    #[test]
    fn join_paths() {
        assert_eq!(join("", "vrid"), "vrid");
        assert_eq!(join("garp", "repeat"), "garp.repeat");
    }
}
