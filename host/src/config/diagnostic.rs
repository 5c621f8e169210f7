//! Errors that point at a file and line.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::util::suggest;

/// One problem in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The pipeline file.
    pub file: PathBuf,
    /// 1-based line number the problem is on.
    pub line: usize,
    /// What is wrong and, where possible, how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// Every problem found in a pipeline file; parsing does not stop at the first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Collects errors for one file, turning byte offsets into line numbers.
pub(crate) struct Diagnostics<'a> {
    file: &'a Path,
    text: &'a str,
    pub(crate) errors: Vec<ConfigError>,
}

impl<'a> Diagnostics<'a> {
    pub(crate) fn new(file: &'a Path, text: &'a str) -> Self {
        Diagnostics {
            file,
            text,
            errors: Vec::new(),
        }
    }

    /// The 1-based line holding byte `offset`.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    pub(crate) fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let line = self.line_of(span.start);
        self.at_line(line, message);
    }

    pub(crate) fn at_line(&mut self, line: usize, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            message: message.into(),
        });
    }
}

/// Rewrites serde's "unknown field `x`, expected one of `a`, `b`" into a
/// message with a suggestion.
pub(crate) fn improve_message(message: &str) -> String {
    let message = message.trim_end();
    for (prefix, what) in [("unknown field `", "key"), ("unknown variant `", "value")] {
        let Some(rest) = message.strip_prefix(prefix) else {
            continue;
        };
        let Some(end) = rest.find('`') else { continue };
        let word = &rest[..end];
        let expected: Vec<&str> = rest[end + 1..].split('`').skip(1).step_by(2).collect();
        let mut out = format!("unknown {what} `{word}`");
        if let Some(s) = suggest(word, expected.iter().copied()) {
            out.push_str(&format!(" (did you mean `{s}`?)"));
        } else if !expected.is_empty() {
            out.push_str(&format!("; expected one of {}", list(&expected)));
        }
        return out;
    }
    message.to_owned()
}

/// `a`, `b` or `c`
pub(crate) fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_only() {
        assert_eq!(suggest("brokrs", ["brokers", "topic"]), Some("brokers"));
        assert_eq!(suggest("Plugin", ["plugin", "config"]), Some("plugin"));
        assert_eq!(suggest("zzzzzz", ["brokers", "topic"]), None);
    }

    #[test]
    fn unknown_field_messages_get_suggestions() {
        assert_eq!(
            improve_message("unknown field `pth`, expected one of `path`, `format`"),
            "unknown key `pth` (did you mean `path`?)"
        );
        assert_eq!(
            improve_message("unknown field `zzz`, expected `path`"),
            "unknown key `zzz`; expected one of `path`"
        );
        assert_eq!(
            improve_message("unknown variant `jsonn`, expected one of `csv`, `jsonl`"),
            "unknown value `jsonn` (did you mean `jsonl`?)"
        );
    }
}
