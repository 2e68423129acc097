//! name-addr / addr-spec values of From, To, Contact, Route, Record-Route (RFC 3261 §20.10).

use std::fmt;
use std::str::FromStr;

use super::error::{err, ParseError};
use super::params::Params;
use super::scan::{parse_quoted, split_outside, trim_lws, write_quoted};
use super::uri::Uri;

/// A URI with an optional display name and header parameters (`;tag=`, `;expires=`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name, unquoted and unescaped.
    pub display: Option<String>,
    /// The address.
    pub uri: Uri,
    /// Header parameters (after `>`, or after the URI in the addr-spec form).
    pub params: Params,
}

impl NameAddr {
    /// A name-addr without display name or parameters.
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display: None,
            uri,
            params: Params::new(),
        }
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        self.params.get_value("tag")
    }

    /// Set the `tag` parameter.
    pub fn set_tag(&mut self, tag: &str) {
        self.params.set("tag", Some(tag));
    }
}

/// Parse `<uri>rest` and return the URI and the rest.
fn parse_angle(s: &str) -> Result<(Uri, &str), ParseError> {
    let Some(inner) = s.strip_prefix('<') else {
        return err("expected <");
    };
    let Some(end) = inner.find('>') else {
        return err("unterminated <");
    };
    Ok((trim_lws(&inner[..end]).parse()?, &inner[end + 1..]))
}

impl FromStr for NameAddr {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<NameAddr, ParseError> {
        let s = trim_lws(s);
        let (display, uri, rest) = if s.starts_with('"') {
            let (display, rest) = parse_quoted(s)?;
            let (uri, rest) = parse_angle(trim_lws(rest))?;
            (Some(display), uri, rest)
        } else if let Some(lt) = s.find('<') {
            let words = &s[..lt];
            if words.contains(['"', '>', ',', ';', '\\']) || words.contains(char::is_control) {
                return err("bad display name");
            }
            let display = words
                .split([' ', '\t'])
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            let (uri, rest) = parse_angle(&s[lt..])?;
            ((!display.is_empty()).then_some(display), uri, rest)
        } else {
            // addr-spec: every `;` parameter belongs to the header, not the URI.
            let (uri, rest) = match s.find(';') {
                Some(i) => s.split_at(i),
                None => (s, ""),
            };
            (None, trim_lws(uri).parse()?, rest)
        };
        Ok(NameAddr {
            display,
            uri,
            params: Params::parse_header(rest)?,
        })
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            let mut q = String::new();
            write_quoted(&mut q, d);
            write!(f, "{q} ")?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

/// The Contact header of a message: `*` or a list of addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contacts {
    /// `Contact: *` (all bindings, in a REGISTER with Expires: 0).
    Star,
    /// The addresses, in order.
    List(Vec<NameAddr>),
}

impl FromStr for Contacts {
    type Err = ParseError;
    /// One Contact header value: `*` or comma-separated addresses.
    fn from_str(s: &str) -> Result<Contacts, ParseError> {
        if trim_lws(s) == "*" {
            return Ok(Contacts::Star);
        }
        split_outside(s, ',')?
            .into_iter()
            .filter(|e| !trim_lws(e).is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map(Contacts::List)
    }
}

impl fmt::Display for Contacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Contacts::Star => f.write_str("*"),
            Contacts::List(list) => {
                for (i, a) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::msg::uri::Host;

    fn rt(s: &str) -> NameAddr {
        let n: NameAddr = s.parse().unwrap();
        let printed = n.to_string();
        assert_eq!(printed.parse::<NameAddr>().unwrap(), n, "{printed}");
        n
    }

    #[test]
    fn print_name_addr() {
        let mut n = NameAddr::new(Uri::sip(
            Some("alice"),
            Host::Domain("example.com".into()),
            None,
        ));
        assert_eq!(n.to_string(), "<sip:alice@example.com>");
        n.set_tag("abc");
        n.display = Some("Doe, John \"JD\"".into());
        assert_eq!(
            n.to_string(),
            r#""Doe, John \"JD\"" <sip:alice@example.com>;tag=abc"#
        );
        assert_eq!(n.tag(), Some("abc"));
    }

    #[test]
    fn quoted_display() {
        let n = rt(r#""Doe, John \"JD\"" <sip:jd@example.com>;tag=abc"#);
        assert_eq!(n.display.as_deref(), Some("Doe, John \"JD\""));
        assert_eq!(n.tag(), Some("abc"));
        let n = rt(r#""J Rosenberg \\\""       <sip:jdrosen@example.com>  ;  tag = 98asjd8"#);
        assert_eq!(n.display.as_deref(), Some("J Rosenberg \\\""));
        assert_eq!(n.tag(), Some("98asjd8"));
        let n = rt("\"Zoë Müller\" <sip:zoe@example.org>");
        assert_eq!(n.display.as_deref(), Some("Zoë Müller"));
        let n = rt("\"\" <sip:a@b>");
        assert_eq!(n.display.as_deref(), Some(""));
    }

    #[test]
    fn token_display() {
        let n = rt("Alice   Smith <sip:alice@client.example.com>");
        assert_eq!(n.display.as_deref(), Some("Alice Smith"));
        let n = rt("caller<sip:caller@example.com>;tag=323");
        assert_eq!(n.display.as_deref(), Some("caller"));
        let n = rt("<sip:a@b;lr>");
        assert_eq!(n.display, None);
        assert!(n.uri.params.contains("lr"));
    }

    #[test]
    fn addr_spec_params_belong_to_header() {
        let n = rt("sip:user@example.com;tag=11141343");
        assert_eq!(n.tag(), Some("11141343"));
        assert!(n.uri.params.is_empty());
        let n = rt("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n");
        assert_eq!(n.tag(), Some("1918181833n"));
        let n = rt("tel:+15550001111;tag=x");
        assert_eq!(n.uri.user.as_deref(), Some("+15550001111"));
        assert_eq!(n.tag(), Some("x"));
        assert_eq!(n.to_string(), "<tel:+15550001111>;tag=x");
    }

    #[test]
    fn contacts_print_parse() {
        assert_eq!(" * ".parse::<Contacts>().unwrap(), Contacts::Star);
        assert_eq!(Contacts::Star.to_string(), "*");
        let text = r#"<sip:a@192.0.2.10:5060>;expires=3600;+sip.instance="<urn:uuid:1,2>", "Desk, phone" <sip:a@[2001:db8::9:1]>;q=0.5"#;
        let c: Contacts = text.parse().unwrap();
        let Contacts::List(list) = &c else { panic!() };
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].display.as_deref(), Some("Desk, phone"));
        assert_eq!(c.to_string(), text);
        assert_eq!(c.to_string().parse::<Contacts>().unwrap(), c);
        assert!("<sip:a@b>, junk".parse::<Contacts>().is_err());
    }

    #[test]
    fn rejects() {
        for bad in [
            "\"Mr. J. User <sip:j.user@example.com>",
            "\"a\" sip:a@b",
            "<sip:a@b",
            "a\"b <sip:a@b>",
            "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            "<sip:a@b> junk",
            "<>",
            "",
        ] {
            assert!(bad.parse::<NameAddr>().is_err(), "{bad}");
        }
    }
}
