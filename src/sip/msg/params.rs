//! Ordered `;name=value` parameter lists (Via, From/To/Contact header params, URI params).

use std::fmt;

use super::error::{err, ParseError};
use super::scan::{is_token, parse_quoted, split_outside, trim_lws};

/// Ordered parameters; `None` value = a flag without `=`. Names compare case-insensitively.
/// Header parameter values are kept as written (a quoted value keeps its quotes); URI
/// parameter values are unescaped (the URI printer re-escapes them).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Params(Vec<(String, Option<String>)>);

impl Params {
    /// An empty list.
    pub fn new() -> Params {
        Params(Vec::new())
    }

    /// `Some(None)` for a flag, `Some(Some(v))` for a value, `None` if absent.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// The value of a parameter that has one.
    pub fn get_value(&self, name: &str) -> Option<&str> {
        self.get(name).flatten()
    }

    /// Set (replace in place, or append) a parameter.
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(str::to_string);
        match self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_string(), value)),
        }
    }

    /// Remove every parameter with this name.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Whether a parameter with this name is present (flag or value).
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The parameters in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_deref()))
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn push(&mut self, name: String, value: Option<String>) {
        self.0.push((name, value));
    }

    /// Parse header parameters: `s` is empty or starts (after LWS) with `;`.
    /// LWS around `;` and `=` is allowed; empty parameters (`;;`) are skipped.
    pub(crate) fn parse_header(s: &str) -> Result<Params, ParseError> {
        let s = trim_lws(s);
        let mut params = Params::new();
        if s.is_empty() {
            return Ok(params);
        }
        let Some(s) = s.strip_prefix(';') else {
            return err("expected ; before a parameter");
        };
        for piece in split_outside(s, ';')? {
            let piece = trim_lws(piece);
            if piece.is_empty() {
                continue;
            }
            let (name, value) = match piece.split_once('=') {
                Some((n, v)) => (trim_lws(n), Some(parse_param_value(trim_lws(v))?)),
                None => (piece, None),
            };
            if !is_token(name) {
                return err("bad parameter name");
            }
            params.push(name.to_string(), value);
        }
        Ok(params)
    }
}

/// A header parameter value: a quoted string (kept with its quotes) or a run of
/// characters without LWS, quotes, `;`, `,`, `<`, `>` (token, host, IPv6 reference).
fn parse_param_value(v: &str) -> Result<String, ParseError> {
    if v.starts_with('"') {
        let (_, rest) = parse_quoted(v)?;
        if !trim_lws(rest).is_empty() {
            return err("text after a quoted parameter value");
        }
        return Ok(v.to_string());
    }
    if v.is_empty() || !v.chars().all(is_param_value_char) {
        return err("bad parameter value");
    }
    Ok(v.to_string())
}

fn is_param_value_char(c: char) -> bool {
    !c.is_whitespace() && !c.is_control() && !"\";,<>".contains(c)
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, v) in &self.0 {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_print() {
        let p = Params::parse_header(" ;   tag    = 1918181833n ; lr;q=0.5").unwrap();
        assert_eq!(p.get_value("TAG"), Some("1918181833n"));
        assert_eq!(p.get("lr"), Some(None));
        assert_eq!(p.get("nope"), None);
        assert_eq!(p.to_string(), ";tag=1918181833n;lr;q=0.5");
        let p = Params::parse_header(r#";+sip.instance="<urn:uuid:1;2>";reg-id=1"#).unwrap();
        assert_eq!(p.get_value("+sip.instance"), Some("\"<urn:uuid:1;2>\""));
        assert_eq!(p.to_string(), r#";+sip.instance="<urn:uuid:1;2>";reg-id=1"#);
        let p = Params::parse_header(";received=2001:db8::9:255;rport").unwrap();
        assert_eq!(p.get_value("received"), Some("2001:db8::9:255"));
    }

    #[test]
    fn rejects() {
        assert!(Params::parse_header("tag=1").is_err());
        assert!(Params::parse_header(";=1").is_err());
        assert!(Params::parse_header(";a=").is_err());
        assert!(Params::parse_header(";a=\"x").is_err());
        assert!(Params::parse_header(";a=b c").is_err());
        assert!(Params::parse_header(";a b").is_err());
    }

    #[test]
    fn set_remove() {
        let mut p = Params::new();
        p.set("tag", Some("x"));
        p.set("lr", None);
        p.set("TAG", Some("y"));
        assert_eq!(p.to_string(), ";tag=y;lr");
        p.remove("Tag");
        assert_eq!(p.to_string(), ";lr");
        assert!(p.contains("LR"));
        assert_eq!(p.len(), 1);
    }
}
