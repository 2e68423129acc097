//! Small lexical helpers shared by the header and URI parsers (RFC 3261 §25.1).

use super::error::{err, ParseError};

/// `token` characters of RFC 3261.
pub(crate) fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

/// A non-empty RFC 3261 token.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_token_char)
}

/// Linear white space inside one (unfolded) header value.
pub(crate) fn is_lws(c: char) -> bool {
    c == ' ' || c == '\t'
}

pub(crate) fn trim_lws(s: &str) -> &str {
    s.trim_matches(is_lws)
}

/// Split `s` on `sep` where it is outside quoted strings and outside `<...>`.
/// Errors on an unterminated quoted string or `<`.
pub(crate) fn split_outside(s: &str, sep: char) -> Result<Vec<&str>, ParseError> {
    let mut parts = Vec::new();
    let (mut quoted, mut escaped, mut angle) = (false, false, false);
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if quoted {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                quoted = false;
            }
        } else if angle {
            if c == '>' {
                angle = false;
            }
        } else if c == '"' {
            quoted = true;
        } else if c == '<' {
            angle = true;
        } else if c == sep {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    if quoted {
        return err("unterminated quoted string");
    }
    if angle {
        return err("unterminated <");
    }
    parts.push(&s[start..]);
    Ok(parts)
}

/// Parse a quoted string at the start of `s` (which starts with `"`): the unescaped
/// content and the rest after the closing quote.
pub(crate) fn parse_quoted(s: &str) -> Result<(String, &str), ParseError> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    if !matches!(chars.next(), Some((_, '"'))) {
        return err("expected a quoted string");
    }
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, e)) => out.push(e),
                None => break,
            },
            '"' => return Ok((out, &s[i + 1..])),
            _ => out.push(c),
        }
    }
    err("unterminated quoted string")
}

/// Write `s` as a quoted string, escaping `"` and `\` (CR and LF cannot be quoted: spaces).
pub(crate) fn write_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\r' | '\n' => out.push(' '),
            _ => out.push(c),
        }
    }
    out.push('"');
}

/// Parse a decimal number made only of ASCII digits (no sign, no spaces).
pub(crate) fn parse_u32(s: &str, what: &'static str) -> Result<u32, ParseError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::new(what));
    }
    s.parse().map_err(|_| ParseError::new(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_respects_quotes_and_angles() {
        let v = split_outside(r#""a,\"b" <sip:x?y=1,2>;p, c"#, ',').unwrap();
        assert_eq!(v, vec![r#""a,\"b" <sip:x?y=1,2>;p"#, " c"]);
        assert!(split_outside("\"abc", ',').is_err());
        assert!(split_outside("<sip:a", ',').is_err());
    }

    #[test]
    fn quoted_round_trip() {
        let (s, rest) = parse_quoted(r#""Doe, John \"JD\"" <x>"#).unwrap();
        assert_eq!(s, "Doe, John \"JD\"");
        assert_eq!(rest, " <x>");
        let mut out = String::new();
        write_quoted(&mut out, &s);
        assert_eq!(out, r#""Doe, John \"JD\"""#);
        assert!(parse_quoted("\"abc\\").is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u32("0009", "x").unwrap(), 9);
        assert!(parse_u32("-1", "x").is_err());
        assert!(parse_u32("4294967296", "x").is_err());
        assert!(parse_u32("", "x").is_err());
    }
}
