//! The ordered header list of a message, with typed readers.

use super::error::{err, ParseError};
use super::name::HeaderName;
use super::name_addr::{Contacts, NameAddr};
use super::scan::{parse_u32, split_outside, trim_lws};
use super::{CSeq, Via};

/// Headers in wire order; values are raw text with folding undone and outer LWS trimmed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Headers(Vec<(HeaderName, String)>);

impl Headers {
    /// An empty header list.
    pub fn new() -> Headers {
        Headers(Vec::new())
    }

    /// The value of the first header with this name.
    pub fn get(&self, name: &HeaderName) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The values of every header with this name, in order.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Append a header.
    pub fn push(&mut self, name: HeaderName, value: impl Into<String>) {
        self.0.push((name, value.into()));
    }

    /// The value of the first header with this name, to edit in place.
    pub fn get_mut(&mut self, name: &HeaderName) -> Option<&mut String> {
        self.0.iter_mut().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Insert a header before all others (e.g. a new top Via).
    pub fn push_front(&mut self, name: HeaderName, value: impl Into<String>) {
        self.0.insert(0, (name, value.into()));
    }

    /// Replace the topmost Via value (the first element of the first Via line; the other
    /// elements of that line stay), or add one at the front when there is none.
    pub fn set_top_via(&mut self, via: &Via) {
        let Some(line) = self.get_mut(&HeaderName::VIA) else {
            self.push_front(HeaderName::VIA, via.to_string());
            return;
        };
        let rest: Vec<String> = match split_outside(line, ',') {
            Ok(parts) => parts
                .iter()
                .skip(1)
                .map(|p| trim_lws(p).to_string())
                .collect(),
            Err(_) => Vec::new(),
        };
        *line = std::iter::once(via.to_string())
            .chain(rest.into_iter().filter(|p| !p.is_empty()))
            .collect::<Vec<_>>()
            .join(", ");
    }

    /// Replace every header with this name by one (at the position of the first), or append.
    pub fn set(&mut self, name: HeaderName, value: impl Into<String>) {
        let value = value.into();
        match self.0.iter().position(|(n, _)| *n == name) {
            Some(i) => {
                self.0[i].1 = value;
                let mut seen = 0;
                self.0.retain(|(n, _)| {
                    if *n == name {
                        seen += 1;
                        seen == 1
                    } else {
                        true
                    }
                });
            }
            None => self.0.push((name, value)),
        }
    }

    /// Remove every header with this name.
    pub fn remove(&mut self, name: &HeaderName) {
        self.0.retain(|(n, _)| n != name);
    }

    /// Whether a header with this name is present.
    pub fn contains(&self, name: &HeaderName) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    /// All headers in order.
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &str)> {
        self.0.iter().map(|(n, v)| (n, v.as_str()))
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The comma-separated elements of every header with this name (quotes and `<>` respected,
    /// empty elements skipped).
    fn elements<'a>(&'a self, name: &'a HeaderName) -> Result<Vec<&'a str>, ParseError> {
        let mut out = Vec::new();
        for v in self.get_all(name) {
            out.extend(
                split_outside(v, ',')?
                    .into_iter()
                    .map(trim_lws)
                    .filter(|e| !e.is_empty()),
            );
        }
        Ok(out)
    }

    fn required(&self, name: &HeaderName, missing: &'static str) -> Result<&str, ParseError> {
        self.get(name).ok_or_else(|| ParseError::new(missing))
    }

    /// Every Via value, top first.
    pub fn vias(&self) -> Result<Vec<Via>, ParseError> {
        self.elements(&HeaderName::VIA)?
            .into_iter()
            .map(|e| {
                e.parse()
                    .map_err(|e: ParseError| e.context("bad Via header"))
            })
            .collect()
    }

    /// The topmost Via value.
    pub fn top_via(&self) -> Result<Via, ParseError> {
        let first = self.required(&HeaderName::VIA, "missing Via header")?;
        match split_outside(first, ',')?.first() {
            Some(v) => v
                .parse()
                .map_err(|e: ParseError| e.context("bad Via header")),
            None => err("missing Via header"),
        }
    }

    /// The From header.
    pub fn from(&self) -> Result<NameAddr, ParseError> {
        self.required(&HeaderName::FROM, "missing From header")?
            .parse()
            .map_err(|e: ParseError| e.context("bad From header"))
    }

    /// The To header.
    pub fn to(&self) -> Result<NameAddr, ParseError> {
        self.required(&HeaderName::TO, "missing To header")?
            .parse()
            .map_err(|e: ParseError| e.context("bad To header"))
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Result<&str, ParseError> {
        match self.required(&HeaderName::CALL_ID, "missing Call-ID header")? {
            "" => err("empty Call-ID header"),
            id => Ok(id),
        }
    }

    /// The CSeq header.
    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        self.required(&HeaderName::CSEQ, "missing CSeq header")?
            .parse()
            .map_err(|e: ParseError| e.context("bad CSeq header"))
    }

    /// The Contact headers: `*` or a list (empty when there is none).
    pub fn contacts(&self) -> Result<Contacts, ParseError> {
        let elements = self.elements(&HeaderName::CONTACT)?;
        if elements.contains(&"*") {
            return match elements.len() {
                1 => Ok(Contacts::Star),
                _ => err("Contact * mixed with addresses"),
            };
        }
        elements
            .into_iter()
            .map(|e| {
                e.parse()
                    .map_err(|e: ParseError| e.context("bad Contact header"))
            })
            .collect::<Result<_, _>>()
            .map(Contacts::List)
    }

    /// Every address of a name-addr list header (Route, Record-Route, ...), in order.
    pub fn name_addrs(&self, name: &HeaderName) -> Result<Vec<NameAddr>, ParseError> {
        self.elements(name)?
            .into_iter()
            .map(|e| {
                e.parse()
                    .map_err(|e: ParseError| e.context("bad address header"))
            })
            .collect()
    }

    /// Max-Forwards (0..=255).
    pub fn max_forwards(&self) -> Result<Option<u32>, ParseError> {
        match self.get(&HeaderName::MAX_FORWARDS) {
            None => Ok(None),
            Some(v) => match parse_u32(v, "bad Max-Forwards header")? {
                n @ 0..=255 => Ok(Some(n)),
                _ => err("Max-Forwards out of range"),
            },
        }
    }

    /// Expires in seconds.
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        self.get(&HeaderName::EXPIRES)
            .map(|v| parse_u32(v, "bad Expires header"))
            .transpose()
    }

    /// Content-Length, checked: only digits, at most `max`; several headers must agree.
    pub(crate) fn content_length(&self, max: usize) -> Result<Option<usize>, ParseError> {
        let mut found = None;
        for v in self.get_all(&HeaderName::CONTENT_LENGTH) {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return err("bad Content-Length");
            }
            let digits = v.trim_start_matches('0');
            let n = match digits.len() {
                0 => 0,
                1..=10 => digits
                    .parse::<usize>()
                    .map_err(|_| ParseError::new("bad Content-Length"))?,
                _ => usize::MAX,
            };
            if n > max {
                return err("Content-Length too large");
            }
            if found.is_some_and(|f| f != n) {
                return err("conflicting Content-Length headers");
            }
            found = Some(n);
        }
        Ok(found)
    }

    /// The Content-Type value.
    pub fn content_type(&self) -> Option<&str> {
        self.get(&HeaderName::CONTENT_TYPE)
    }

    /// Comma-separated tokens of every header with this name (Allow, Supported, Require, ...).
    pub fn tokens(&self, name: &HeaderName) -> Vec<String> {
        self.get_all(name)
            .flat_map(|v| v.split(','))
            .map(trim_lws)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::msg::{Host, Method};

    fn hs(lines: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in lines {
            h.push(HeaderName::new(n), *v);
        }
        h
    }

    #[test]
    fn list_ops() {
        let mut h = hs(&[("Via", "a"), ("X-A", "1"), ("v", "b"), ("Via", "c")]);
        assert_eq!(h.get(&HeaderName::VIA), Some("a"));
        assert_eq!(
            h.get_all(&HeaderName::VIA).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        h.set(HeaderName::VIA, "z");
        assert_eq!(
            h.iter()
                .map(|(n, v)| format!("{n}:{v}"))
                .collect::<Vec<_>>(),
            ["Via:z", "X-A:1"]
        );
        h.set(HeaderName::new("y-new"), "2");
        assert_eq!(h.len(), 3);
        h.remove(&HeaderName::new("x-a"));
        assert!(!h.contains(&HeaderName::new("X-A")));
        assert!(h.contains(&HeaderName::new("Y-NEW")));
    }

    #[test]
    fn edit_top_via() {
        let mut h = hs(&[
            (
                "Via",
                "SIP/2.0/UDP a;branch=z9hG4bK1 , SIP/2.0/UDP b;branch=z9hG4bK2",
            ),
            ("Via", "SIP/2.0/UDP c;branch=z9hG4bK3"),
        ]);
        let mut top = h.top_via().unwrap();
        top.params.set("received", Some("192.0.2.1"));
        h.set_top_via(&top);
        assert_eq!(
            h.get(&HeaderName::VIA),
            Some("SIP/2.0/UDP a;branch=z9hG4bK1;received=192.0.2.1, SIP/2.0/UDP b;branch=z9hG4bK2")
        );
        assert_eq!(h.vias().unwrap().len(), 3);
        let mut empty = hs(&[("To", "<sip:a@b>")]);
        empty.set_top_via(&top);
        assert_eq!(empty.iter().next().unwrap().0, &HeaderName::VIA);
        empty.get_mut(&HeaderName::TO).unwrap().push_str(";tag=x");
        assert_eq!(empty.to().unwrap().tag(), Some("x"));
    }

    #[test]
    fn vias_across_lines_and_commas() {
        let h = hs(&[
            ("Via", "SIP/2.0/UDP proxy2.example.org:5060;branch=z9hG4bK2d4790.1, SIP/2.0/UDP proxy1.example.org;branch=z9hG4bKa"),
            ("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKb;received=192.0.2.9"),
        ]);
        let vias = h.vias().unwrap();
        assert_eq!(vias.len(), 3);
        assert_eq!(vias[0].host, Host::Domain("proxy2.example.org".into()));
        assert_eq!(vias[2].received(), Some("192.0.2.9"));
        assert_eq!(h.top_via().unwrap(), vias[0]);
        assert!(hs(&[]).top_via().is_err());
        assert!(hs(&[("Via", "SIP/2.0/UDP a, garbage")]).vias().is_err());
    }

    #[test]
    fn from_to_call_id_cseq() {
        let h = hs(&[
            ("f", "\"Alice\" <sip:alice@example.com>;tag=1"),
            ("t", "sip:bob@example.com"),
            ("i", "abc@host"),
            ("CSeq", "4 BYE"),
        ]);
        assert_eq!(h.from().unwrap().tag(), Some("1"));
        assert_eq!(h.to().unwrap().tag(), None);
        assert_eq!(h.call_id().unwrap(), "abc@host");
        assert_eq!(
            h.cseq().unwrap(),
            CSeq {
                seq: 4,
                method: Method::Bye
            }
        );
        let empty = hs(&[]);
        assert!(
            empty.from().is_err()
                && empty.to().is_err()
                && empty.call_id().is_err()
                && empty.cseq().is_err()
        );
    }

    #[test]
    fn contacts() {
        let h = hs(&[
            ("Contact", "<sip:a@192.0.2.10:5060>;expires=3600;+sip.instance=\"<urn:uuid:0-1>\";reg-id=1, <sip:a@[2001:db8::9:1]:5062;transport=tcp>;q=0.5"),
            ("m", "\"Desk, phone\" <sip:a@192.0.2.99>;expires=60"),
        ]);
        match h.contacts().unwrap() {
            Contacts::List(l) => {
                assert_eq!(l.len(), 3);
                assert_eq!(l[0].params.get_value("expires"), Some("3600"));
                assert_eq!(l[2].display.as_deref(), Some("Desk, phone"));
            }
            Contacts::Star => panic!("star"),
        }
        assert_eq!(
            hs(&[("Contact", " * ")]).contacts().unwrap(),
            Contacts::Star
        );
        assert_eq!(hs(&[]).contacts().unwrap(), Contacts::List(vec![]));
        assert!(hs(&[("Contact", "*, <sip:a@b>")]).contacts().is_err());
    }

    #[test]
    fn routes_and_numbers() {
        let h = hs(&[
            (
                "Record-Route",
                "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
            ),
            ("Record-Route", "<sip:p3.example.com;lr>"),
            ("Max-Forwards", "70"),
            ("Expires", "0"),
            ("Allow", "INVITE, ACK,BYE"),
            ("Allow", "OPTIONS"),
            ("c", "application/sdp"),
        ]);
        let rr = h.name_addrs(&HeaderName::RECORD_ROUTE).unwrap();
        assert_eq!(rr.len(), 3);
        assert!(rr[0].uri.params.contains("lr"));
        assert_eq!(h.max_forwards().unwrap(), Some(70));
        assert_eq!(h.expires().unwrap(), Some(0));
        assert_eq!(
            h.tokens(&HeaderName::ALLOW),
            ["INVITE", "ACK", "BYE", "OPTIONS"]
        );
        assert_eq!(h.content_type(), Some("application/sdp"));
        assert!(hs(&[("Max-Forwards", "300")]).max_forwards().is_err());
        assert!(hs(&[("Max-Forwards", "-1")]).max_forwards().is_err());
        assert!(hs(&[("Expires", "1038293888472394239389")])
            .expires()
            .is_err());
        assert_eq!(hs(&[]).max_forwards().unwrap(), None);
    }

    #[test]
    fn content_length() {
        let cl = |v: &str| hs(&[("l", v)]).content_length(65535);
        assert_eq!(cl("0009").unwrap(), Some(9));
        assert_eq!(cl("0").unwrap(), Some(0));
        assert!(cl("-999").is_err());
        assert!(cl("9x").is_err());
        assert!(cl("65536").is_err());
        assert!(cl("99999999999999999999999").is_err());
        assert!(hs(&[("l", "1"), ("Content-Length", "2")])
            .content_length(100)
            .is_err());
        assert_eq!(hs(&[]).content_length(100).unwrap(), None);
    }
}
