//! From text to raw sections: the TOML syntax check, the split of the
//! document into sections and items, and one serde pass per item so that a
//! problem in one item does not hide the problems of the others. Serde's
//! messages are rewritten into the config's own style, naming the key.

use std::collections::HashSet;
use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::error::Collector;
use super::raw::{RawBackend, RawCluster, RawFenceDevice, RawFrontend, RawNode, RawVrrp};

/// The keys allowed at the top of a config file.
const TOP_KEYS: &[&str] = &["node", "vrrp", "frontend", "backend", "cluster"];

/// One item of a section: its span (the table header or inline table) and,
/// when it deserialized, its raw form. `name` is the item's `name` string
/// when it has one, even when the item failed to deserialize, so that
/// references to it do not cause follow-up errors.
///
/// When serde rejects a key (unknown, or of the wrong type), the error is
/// recorded, the key is taken out and the item is deserialized again, so
/// that every bad key is reported and the rest of the item is still checked.
/// `removed` holds the key paths taken out (`vrid`, `garp.repeat`,
/// `servers[1].x`); the checks do not report them again as missing.
#[derive(Debug)]
pub(crate) struct Item<T> {
    pub(crate) span: Range<usize>,
    pub(crate) raw: Option<T>,
    pub(crate) name: Option<String>,
    pub(crate) removed: HashSet<String>,
}

/// The `[cluster]` table: its own keys and, separately, each fence device.
#[derive(Debug)]
pub(crate) struct ClusterSection {
    pub(crate) item: Item<RawCluster>,
    pub(crate) fence_devices: Vec<Item<RawFenceDevice>>,
}

/// A document split into sections.
#[derive(Debug, Default)]
pub(crate) struct Sections {
    /// True when the file has a `node` key (valid or not).
    pub(crate) has_node: bool,
    pub(crate) node: Option<Item<RawNode>>,
    pub(crate) vrrp: Vec<Item<RawVrrp>>,
    pub(crate) frontends: Vec<Item<RawFrontend>>,
    pub(crate) backends: Vec<Item<RawBackend>>,
    pub(crate) cluster: Option<ClusterSection>,
}

/// Parses the TOML syntax. On syntax errors every error the parser found is
/// recorded and `None` is returned.
pub(crate) fn parse_toml<'t>(text: &'t str, c: &mut Collector<'_>) -> Option<Spanned<DeTable<'t>>> {
    let (root, errors) = DeTable::parse_recoverable(text);
    if errors.is_empty() {
        return Some(root);
    }
    for e in errors {
        let span = e.span().unwrap_or(0..0);
        let message = if e.message() == "duplicate key" {
            let key = text.get(span.clone()).unwrap_or("").trim();
            format!(
                "duplicate key '{}'",
                key.trim_matches(|ch| ch == '"' || ch == '\'')
            )
        } else {
            format!("invalid TOML: {}", e.message())
        };
        c.at(&span, message);
    }
    None
}

/// Splits the document into sections and deserializes each item on its own.
pub(crate) fn sections(root: &Spanned<DeTable<'_>>, c: &mut Collector<'_>) -> Sections {
    let mut out = Sections::default();
    for (key, value) in root.get_ref().iter() {
        match key.get_ref().as_ref() {
            "node" => {
                out.has_node = true;
                out.node = table_item(value, "node", c);
            }
            "vrrp" => out.vrrp = array_items(value, "vrrp", c),
            "frontend" => out.frontends = array_items(value, "frontend", c),
            "backend" => out.backends = array_items(value, "backend", c),
            "cluster" => out.cluster = cluster_section(value, c),
            other => c.at(
                &key.span(),
                format!(
                    "unknown key '{other}', expected one of: {}",
                    TOP_KEYS.join(", ")
                ),
            ),
        }
    }
    out
}

fn cluster_section(value: &Spanned<DeValue<'_>>, c: &mut Collector<'_>) -> Option<ClusterSection> {
    let item = table_item::<RawCluster>(value, "cluster", c)?;
    let mut fence_devices = Vec::new();
    if let DeValue::Table(table) = value.get_ref() {
        for (k, v) in table.iter() {
            if k.get_ref() == "fence_device" {
                fence_devices = array_items(v, "cluster.fence_device", c);
            }
        }
    }
    Some(ClusterSection {
        item,
        fence_devices,
    })
}

/// A section that is one table (`[node]`, `[cluster]`).
fn table_item<T: DeserializeOwned>(
    value: &Spanned<DeValue<'_>>,
    section: &str,
    c: &mut Collector<'_>,
) -> Option<Item<T>> {
    if !value.get_ref().is_table() {
        c.at(
            &value.span(),
            format!(
                "{section} must be a table ([{section}]), got {}",
                describe(value.get_ref())
            ),
        );
        return None;
    }
    Some(deserialize_item(value, c))
}

/// A section that is an array of tables (`[[vrrp]]`, ...).
fn array_items<T: DeserializeOwned>(
    value: &Spanned<DeValue<'_>>,
    section: &str,
    c: &mut Collector<'_>,
) -> Vec<Item<T>> {
    let DeValue::Array(items) = value.get_ref() else {
        c.at(
            &value.span(),
            format!(
                "{section} must be an array of tables ([[{section}]]), got {}",
                describe(value.get_ref())
            ),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if item.get_ref().is_table() {
            out.push(deserialize_item(item, c));
        } else {
            c.at(
                &item.span(),
                format!(
                    "{section}[{i}] must be a table, got {}",
                    describe(item.get_ref())
                ),
            );
        }
    }
    out
}

fn deserialize_item<T: DeserializeOwned>(
    value: &Spanned<DeValue<'_>>,
    c: &mut Collector<'_>,
) -> Item<T> {
    let span = value.span();
    let name = name_of(value.get_ref());
    let mut removed = HashSet::new();
    let mut current = value.clone();
    // Every round either succeeds or takes one key out of the item, so the
    // loop ends; the count bound is a second guard.
    for _ in 0..=count_keys(value.get_ref()) {
        match T::deserialize(ValueDeserializer::from(current.clone())) {
            Ok(raw) => {
                return Item {
                    span,
                    raw: Some(raw),
                    name,
                    removed,
                }
            }
            Err(e) => {
                let at = e.span().unwrap_or_else(|| span.clone());
                let message = translate(e.message(), &current, &at);
                c.at(&at, message);
                match remove_at(&mut current, &at, "") {
                    Some(path) => {
                        removed.insert(path);
                    }
                    None => break,
                }
            }
        }
    }
    Item {
        span,
        raw: None,
        name,
        removed,
    }
}

/// Number of keys in a value, nested tables included.
fn count_keys(v: &DeValue<'_>) -> usize {
    match v {
        DeValue::Table(t) => t.iter().map(|(_, v)| 1 + count_keys(v.get_ref())).sum(),
        DeValue::Array(a) => a.iter().map(|v| count_keys(v.get_ref())).sum(),
        _ => 0,
    }
}

/// Takes out the key that an error at `span` is about: the key itself, its
/// value, or an array value one of whose elements is at `span`. Returns the
/// path of the removed key.
fn remove_at(v: &mut Spanned<DeValue<'_>>, span: &Range<usize>, path: &str) -> Option<String> {
    match v.get_mut() {
        DeValue::Table(t) => {
            let hit = t
                .iter()
                .find(|(k, val)| {
                    k.span() == *span
                        || val.span() == *span
                        || matches!(val.get_ref(), DeValue::Array(a) if a.iter().any(|e| e.span() == *span))
                })
                .map(|(k, _)| k.clone());
            if let Some(k) = hit {
                t.remove(&k);
                return Some(super::check::join(path, k.get_ref()));
            }
            t.iter_mut()
                .find_map(|(k, val)| remove_at(val, span, &super::check::join(path, k.get_ref())))
        }
        DeValue::Array(a) => a
            .iter_mut()
            .enumerate()
            .find_map(|(i, el)| remove_at(el, span, &format!("{path}[{i}]"))),
        _ => None,
    }
}

/// The `name` string of a table, if it has one.
fn name_of(value: &DeValue<'_>) -> Option<String> {
    let DeValue::Table(t) = value else {
        return None;
    };
    t.iter()
        .find(|(k, _)| k.get_ref() == "name")
        .and_then(|(_, v)| v.get_ref().as_str().map(str::to_owned))
}

/// What the user wrote, for "got ..." in messages.
pub(crate) fn describe(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => format!("{:?}", s.as_ref()),
        DeValue::Integer(i) => i.as_str().to_owned(),
        DeValue::Float(f) => f.as_str().to_owned(),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::Datetime(d) => format!("datetime {d}"),
        DeValue::Array(_) => "an array".to_owned(),
        DeValue::Table(_) => "a table".to_owned(),
    }
}

/// What was found at a span inside an item.
enum Found<'a, 'i> {
    /// A value, with its key path.
    Value(String, &'a DeValue<'i>),
    /// A key, with its full path.
    Key(String),
}

fn find<'a, 'i>(
    v: &'a Spanned<DeValue<'i>>,
    span: &Range<usize>,
    path: &str,
) -> Option<Found<'a, 'i>> {
    if v.span() == *span {
        return Some(Found::Value(path.to_owned(), v.get_ref()));
    }
    match v.get_ref() {
        DeValue::Table(t) => {
            for (k, child) in t.iter() {
                let child_path = super::check::join(path, k.get_ref());
                if k.span() == *span {
                    return Some(Found::Key(child_path));
                }
                if let Some(f) = find(child, span, &child_path) {
                    return Some(f);
                }
            }
            None
        }
        DeValue::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, child)| find(child, span, &format!("{path}[{i}]"))),
        _ => None,
    }
}

/// Rewrites one serde error message of an item into the config's style.
fn translate(message: &str, item: &Spanned<DeValue<'_>>, at: &Range<usize>) -> String {
    let found = find(item, at, "");
    let (path, value) = match &found {
        Some(Found::Value(p, v)) => (p.clone(), Some(*v)),
        Some(Found::Key(p)) => (p.clone(), None),
        None => (String::new(), None),
    };

    if let Some(rest) = message.strip_prefix("unknown field `") {
        // "unknown field `x`, expected one of `a`, `b`" / "expected `a` or `b`" /
        // "expected `a`" / "there are no fields"
        let (field, tail) = rest.split_once('`').unwrap_or((rest, ""));
        let key = if path.is_empty() {
            field.to_owned()
        } else {
            path
        };
        let expected: Vec<&str> = tail
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, s)| s)
            .collect();
        return if expected.is_empty() {
            format!("unknown key '{key}'")
        } else {
            format!(
                "unknown key '{key}', expected one of: {}",
                expected.join(", ")
            )
        };
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        return format!(
            "missing required key '{}'",
            super::check::join(&path, field)
        );
    }
    let subject = if path.is_empty() {
        "value".to_owned()
    } else {
        path
    };
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some((unexpected, expected)) = rest.rsplit_once(", expected ") {
                let expected = expected_in_words(expected);
                if let (Some(v @ DeValue::Integer(_)), "an integer") = (value, expected.as_str()) {
                    // An integer was wanted and given, but it does not fit in 64 bits.
                    return format!("{subject} is out of range, got {}", describe(v));
                }
                let got = value.map(describe).unwrap_or_else(|| unexpected.to_owned());
                return format!("{subject} must be {expected}, got {got}");
            }
        }
    }
    format!("{subject}: {message}")
}

/// Serde's "expected" phrase in config words.
fn expected_in_words(expected: &str) -> String {
    match expected {
        "i64" | "u64" | "i32" | "u32" | "u16" | "u8" => "an integer".to_owned(),
        "a sequence" => "an array".to_owned(),
        "a map" => "a table".to_owned(),
        e if e.starts_with("struct ") => "a table".to_owned(),
        e => e.to_owned(),
    }
}
