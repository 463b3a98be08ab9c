//! Config errors with `FILE:LINE:COL` positions, and the collector that the
//! checks push into.

use std::fmt;
use std::ops::Range;

/// One problem found in a config file.
///
/// `line` and `col` are 1-based; `col` counts characters (not bytes) from the
/// start of the line. An error that has no position inside the file (the file
/// cannot be read at all) has `line == 0` and `col == 0` and displays as
/// `FILE: message`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, thiserror::Error)]
pub struct ConfigError {
    /// The file name as given to [`super::load`] or [`super::parse`].
    pub file: String,
    /// 1-based line, or 0 when the error is about the file as a whole.
    pub line: usize,
    /// 1-based column in characters, or 0 when the error is about the file as a whole.
    pub col: usize,
    /// Lower-case description that names the offending key.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.col, self.message
            )
        }
    }
}

/// Every problem found in one config file, sorted by position.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
pub struct ConfigErrors {
    /// The errors, sorted by (line, col); never empty when returned by this module.
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    /// A single error about the file as a whole (no position).
    pub(crate) fn whole_file(file: &str, message: String) -> Self {
        ConfigErrors {
            errors: vec![ConfigError {
                file: file.to_owned(),
                line: 0,
                col: 0,
                message,
            }],
        }
    }
}

/// Maps byte offsets of a text to 1-based line and character column.
#[derive(Debug)]
pub(crate) struct LineIndex<'t> {
    text: &'t str,
    /// Byte offset of the start of every line.
    starts: Vec<usize>,
}

impl<'t> LineIndex<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    /// 1-based (line, column-in-characters) of a byte offset; offsets past the
    /// end map to just after the last character.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        // Offsets come from the TOML parser and fall on character boundaries;
        // be safe anyway and count characters of the valid prefix.
        let mut end = offset;
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        let col = self.text[start..end].chars().count() + 1;
        (line, col)
    }

    pub(crate) fn line(&self, offset: usize) -> usize {
        self.position(offset).0
    }
}

/// Collects errors as (byte offset, message) while checking one file.
#[derive(Debug)]
pub(crate) struct Collector<'t> {
    pub(crate) index: LineIndex<'t>,
    errors: Vec<(usize, String)>,
}

impl<'t> Collector<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        Collector {
            index: LineIndex::new(text),
            errors: Vec::new(),
        }
    }

    /// Records an error at the start of `span`.
    pub(crate) fn at(&mut self, span: &Range<usize>, message: impl Into<String>) {
        self.errors.push((span.start, message.into()));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub(crate) fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// Line number of a span start, used to point at a first definition.
    pub(crate) fn line_of(&self, span: &Range<usize>) -> usize {
        self.index.line(span.start)
    }

    /// Sorted, de-duplicated errors with positions.
    pub(crate) fn finish(self, file: &str) -> ConfigErrors {
        let mut errors: Vec<ConfigError> = self
            .errors
            .into_iter()
            .map(|(offset, message)| {
                let (line, col) = self.index.position(offset);
                ConfigError {
                    file: file.to_owned(),
                    line,
                    col,
                    message,
                }
            })
            .collect();
        // Stable: errors at the same position keep the order they were found in.
        errors.sort_by_key(|e| (e.line, e.col));
        errors.dedup();
        ConfigErrors { errors }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let idx = LineIndex::new("ab\nçé = 1\n");
        assert_eq!(idx.position(0), (1, 1));
        assert_eq!(idx.position(2), (1, 3));
        assert_eq!(idx.position(3), (2, 1));
        // 'ç' and 'é' are two bytes each: byte 7 is the space after them.
        assert_eq!(idx.position(7), (2, 3));
        assert_eq!(idx.position(100), (3, 1));
    }

    #[test]
    fn display_formats() {
        let e = ConfigError {
            file: "halb.toml".into(),
            line: 12,
            col: 9,
            message: "vrid must be 1..=255, got 0".into(),
        };
        assert_eq!(e.to_string(), "halb.toml:12:9: vrid must be 1..=255, got 0");
        let w = ConfigErrors::whole_file("x.toml", "cannot read file: gone".into());
        assert_eq!(w.to_string(), "x.toml: cannot read file: gone");
        let two = ConfigErrors {
            errors: vec![e.clone(), e],
        };
        assert_eq!(
            two.to_string(),
            "halb.toml:12:9: vrid must be 1..=255, got 0\nhalb.toml:12:9: vrid must be 1..=255, got 0"
        );
    }
}
