//! Configuration errors with source locations and field paths.

use std::fmt;
use std::ops::Range;

/// One problem found in a configuration file.
///
/// Displays as `LINE:COL: PATH: MESSAGE`; the location and/or path are left
/// out when unknown (e.g. for an I/O error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line of the offending text, if known.
    pub line: Option<usize>,
    /// 1-based column (in characters) of the offending text, if known.
    pub column: Option<usize>,
    /// Field path such as `volumes[1].block_size`; empty for whole-file problems.
    pub path: String,
    /// Human-readable description of the problem (a single line).
    pub message: String,
}

impl ConfigError {
    /// An error at byte offset `offset` of `text`.
    pub(crate) fn at(text: &str, offset: usize, path: String, message: String) -> Self {
        let (line, column) = line_col(text, offset);
        Self {
            line: Some(line),
            column: Some(column),
            path,
            message,
        }
    }

    /// An error without a location (e.g. the file could not be read).
    pub(crate) fn whole_file(message: String) -> Self {
        Self {
            line: None,
            column: None,
            path: String::new(),
            message,
        }
    }

    /// Convert a `toml` syntax or deserialization error, finding the field path
    /// from the error's span.
    pub(crate) fn from_toml(text: &str, err: &toml::de::Error) -> Self {
        // toml messages can span several lines ("invalid table header\nduplicate key ...").
        let message = err.message().trim().replace('\n', "; ");
        let Some(span) = err.span() else {
            return Self::whole_file(message);
        };
        let mut path = path_at(text, span.start).unwrap_or_default();
        // `missing field `x`` points at the enclosing table; name the field itself.
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'))
        {
            path = join(&path, field);
        }
        Self::at(text, span.start, path, message)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{l}:{c}: ")?,
            (Some(l), None) => write!(f, "{l}: ")?,
            _ => {}
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a configuration, ordered by position in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The individual errors.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// Number of errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if there are no errors (never the case for a returned `Err`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sort by location (unknown locations last), keeping insertion order for ties.
    pub(crate) fn sorted(mut errors: Vec<ConfigError>) -> Self {
        errors.sort_by_key(|e| (e.line.unwrap_or(usize::MAX), e.column.unwrap_or(usize::MAX)));
        Self(errors)
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        Self(vec![e])
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    /// One error per line, no trailing newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// 1-based line and column (counted in characters) of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    (line, before[line_start..].chars().count() + 1)
}

/// `prefix.key`, or just `key` at the root.
pub(crate) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The field path (e.g. `volumes[1].size`) of the innermost key or value
/// covering byte `offset`, or `None` if the text does not parse or nothing
/// covers it.
fn path_at(text: &str, offset: usize) -> Option<String> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    in_table(doc.as_table(), offset, "")
}

fn covers(span: Option<Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.contains(&offset))
}

fn in_table(table: &toml_edit::Table, offset: usize, prefix: &str) -> Option<String> {
    for (name, item) in table.iter() {
        let path = join(prefix, name);
        if covers(table.key(name).and_then(|k| k.span()), offset) {
            return Some(path);
        }
        let found = match item {
            toml_edit::Item::Value(v) => in_value(v, offset, &path),
            // Header spans; the body's keys carry their own spans.
            toml_edit::Item::Table(t) => in_table(t, offset, &path)
                .or_else(|| covers(t.span(), offset).then(|| path.clone())),
            toml_edit::Item::ArrayOfTables(a) => a.iter().enumerate().find_map(|(i, t)| {
                let p = format!("{path}[{i}]");
                in_table(t, offset, &p).or_else(|| covers(t.span(), offset).then_some(p))
            }),
            toml_edit::Item::None => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

fn in_value(value: &toml_edit::Value, offset: usize, path: &str) -> Option<String> {
    if !covers(value.span(), offset) {
        return None;
    }
    let inner = match value {
        toml_edit::Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, v)| in_value(v, offset, &format!("{path}[{i}]"))),
        toml_edit::Value::InlineTable(t) => t.iter().find_map(|(name, v)| {
            let p = join(path, name);
            if covers(t.key(name).and_then(|k| k.span()), offset) {
                Some(p)
            } else {
                in_value(v, offset, &p)
            }
        }),
        _ => None,
    };
    inner.or_else(|| Some(path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_chars() {
        let t = "ab\nçd = 1\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 1));
        assert_eq!(line_col(t, 6), (2, 3)); // 'ç' is two bytes
        assert_eq!(line_col(t, 999), (3, 1));
    }

    #[test]
    fn paths_from_offsets() {
        let t = "[server]\nreactors = 1\n[[volumes]]\nname = \"a\"\n[[volumes]]\nname = \"b\"\nx = { y = [1, 2] }\n";
        let at = |needle: &str| path_at(t, t.rfind(needle).unwrap());
        assert_eq!(at("reactors").as_deref(), Some("server.reactors"));
        assert_eq!(at("1\n[[").as_deref(), Some("server.reactors"));
        assert_eq!(at("\"b\"").as_deref(), Some("volumes[1].name"));
        assert_eq!(at("2]").as_deref(), Some("volumes[1].x.y[1]"));
        assert_eq!(at("y =").as_deref(), Some("volumes[1].x.y"));
        assert_eq!(
            at("[[volumes]]\nname = \"b\"").as_deref(),
            Some("volumes[1]")
        );
        assert_eq!(path_at("x = = 1", 4), None);
    }

    #[test]
    fn display_omits_unknown_parts() {
        let e = ConfigError {
            line: Some(3),
            column: Some(7),
            path: "a.b".into(),
            message: "bad".into(),
        };
        assert_eq!(e.to_string(), "3:7: a.b: bad");
        let e = ConfigError::whole_file("cannot read x".into());
        assert_eq!(e.to_string(), "cannot read x");
        let all = ConfigErrors(vec![
            ConfigError {
                line: Some(1),
                column: Some(1),
                path: String::new(),
                message: "m".into(),
            },
            ConfigError::whole_file("n".into()),
        ]);
        assert_eq!(all.to_string(), "1:1: m\nn");
    }
}
