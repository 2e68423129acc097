//! Config errors and warnings: every one names the file, the line and column, and the key,
//! and none ever contains a value from the file (so a password can never leak into a message).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A 1-based line and column (in characters) in a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, counted in characters (a tab counts as one).
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One thing wrong in a config file: where, which key, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where the offending key or value starts.
    pub location: Location,
    /// Dotted key path such as `general.listen` or `account[1].codecs[0]`; `None` for syntax errors.
    pub key: Option<String>,
    /// What is wrong and what was expected; never contains a value from the file.
    pub message: String,
}

/// A config file problem that does not stop loading (for example a password stored in the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The file the warning is about.
    pub path: PathBuf,
    /// Where the offending key starts.
    pub location: Location,
    /// Dotted key path such as `account[0].password`.
    pub key: String,
    /// What is wrong and what to do about it; never contains a value from the file.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: warning: {}: {}",
            self.path.display(),
            self.location,
            self.key,
            self.message
        )
    }
}

/// Why a config could not be loaded.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, a directory, ...).
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The file was read but is not a valid termphone config: one or more problems.
    Invalid {
        /// The file the problems are in.
        path: PathBuf,
        /// Every problem found, in file order (never empty).
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    pub(crate) fn invalid(path: &Path, problems: Vec<Problem>) -> ConfigError {
        ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        }
    }

    /// The file this error is about.
    pub fn path(&self) -> &Path {
        match self {
            ConfigError::Read { path, .. } | ConfigError::Invalid { path, .. } => path,
        }
    }

    /// The problems found in the file (empty for a read error).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { problems, .. } => problems,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => {
                write!(f, "{}: cannot read config file: {source}", path.display())
            }
            ConfigError::Invalid { path, problems } => {
                for (i, p) in problems.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "{}:{}: ", path.display(), p.location)?;
                    if let Some(key) = &p.key {
                        write!(f, "{key}: ")?;
                    }
                    write!(f, "{}", p.message)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            ConfigError::Invalid { .. } => None,
        }
    }
}

/// Maps byte offsets in a text to 1-based line and column numbers.
pub(crate) struct LineIndex<'s> {
    text: &'s str,
    /// Byte offset of the start of each line.
    starts: Vec<usize>,
}

impl<'s> LineIndex<'s> {
    pub(crate) fn new(text: &'s str) -> LineIndex<'s> {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    /// The location of a byte offset (clamped to the text; safe inside a character).
    pub(crate) fn location(&self, offset: usize) -> Location {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line - 1];
        let column = self.text[start..offset].chars().count() + 1;
        Location { line, column }
    }

    /// The line holding `offset`, split at `offset` (line ending not included).
    pub(crate) fn split_line(&self, offset: usize) -> (&'s str, &'s str) {
        let (start, at, end) = self.line_bounds(offset);
        (&self.text[start..at], &self.text[at..end])
    }

    /// (line start, offset clamped into the line, line end without `\r\n`).
    fn line_bounds(&self, offset: usize) -> (usize, usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line - 1];
        let mut end = self
            .starts
            .get(line)
            .map_or(self.text.len(), |&next| next - 1);
        if self.text[start..end].ends_with('\r') {
            end -= 1;
        }
        (start, offset.min(end), end)
    }
}

/// The location of the first invalid byte of a non-UTF-8 file.
pub(crate) fn utf8_error_location(bytes: &[u8], err: &std::str::Utf8Error) -> Location {
    let valid = &bytes[..err.valid_up_to()];
    // The prefix is valid UTF-8 by definition of valid_up_to.
    let text = std::str::from_utf8(valid).unwrap_or_default();
    LineIndex::new(text).location(text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_one_based_and_count_characters() {
        let text = "ab\nçd = 1\r\n\nx";
        let idx = LineIndex::new(text);
        assert_eq!(idx.location(0), Location { line: 1, column: 1 });
        assert_eq!(idx.location(2), Location { line: 1, column: 3 });
        assert_eq!(idx.location(3), Location { line: 2, column: 1 });
        // "ç" is two bytes, one column.
        assert_eq!(idx.location(5), Location { line: 2, column: 2 });
        // Inside the two-byte character: clamped back to its start.
        assert_eq!(idx.location(4), Location { line: 2, column: 1 });
        assert_eq!(idx.location(text.len()), Location { line: 4, column: 2 });
        assert_eq!(idx.location(1000), Location { line: 4, column: 2 });
        assert_eq!(idx.split_line(12), ("", ""));
        assert_eq!(idx.split_line(13), ("", "x"));
        assert_eq!(idx.split_line(5), ("ç", "d = 1"));
        assert_eq!(idx.split_line(10), ("çd = 1", ""));
    }

    #[test]
    fn utf8_error_points_at_the_bad_byte() {
        let bytes = std::hint::black_box(b"a = 1\nb = \"\xff\"".to_vec());
        let err = std::str::from_utf8(&bytes).unwrap_err();
        assert_eq!(
            utf8_error_location(&bytes, &err),
            Location { line: 2, column: 6 }
        );
    }

    #[test]
    fn display_lists_every_problem_with_its_place() {
        let err = ConfigError::invalid(
            Path::new("/x/config.toml"),
            vec![
                Problem {
                    location: Location {
                        line: 2,
                        column: 10,
                    },
                    key: Some("general.listen".into()),
                    message: "expected a socket address".into(),
                },
                Problem {
                    location: Location { line: 5, column: 1 },
                    key: None,
                    message: "invalid TOML".into(),
                },
            ],
        );
        assert_eq!(
            err.to_string(),
            "/x/config.toml:2:10: general.listen: expected a socket address\n\
             /x/config.toml:5:1: invalid TOML"
        );
    }
}
