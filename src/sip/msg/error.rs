//! The error every parser of the message layer returns.

use std::borrow::Cow;
use std::fmt;

use super::Headers;

/// Why a message, header or URI could not be parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    reason: Cow<'static, str>,
    headers: Option<Box<Headers>>,
}

impl ParseError {
    pub(crate) fn new(reason: impl Into<Cow<'static, str>>) -> ParseError {
        ParseError {
            reason: reason.into(),
            headers: None,
        }
    }

    pub(crate) fn with_headers(mut self, headers: Headers) -> ParseError {
        self.headers = Some(Box::new(headers));
        self
    }

    /// Prefix the reason with what was being parsed ("bad Via header: bad port").
    pub(crate) fn context(self, what: &str) -> ParseError {
        ParseError {
            reason: format!("{what}: {}", self.reason).into(),
            headers: self.headers,
        }
    }

    /// Human text for a log or a 400 reason phrase (never contains input bytes or CR/LF).
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// When the start line was a request line and the headers parsed, the headers, so the
    /// caller can answer 400 (needs Via, From, To, Call-ID, CSeq).
    pub fn request_headers(&self) -> Option<&Headers> {
        self.headers.as_deref()
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for ParseError {}

/// Shorthand for a `ParseError` with a static reason.
pub(crate) fn err<T>(reason: &'static str) -> Result<T, ParseError> {
    Err(ParseError::new(reason))
}
