//! The Via header value (RFC 3261 §20.42): `SIP/2.0/UDP host:port;branch=...`.

use std::fmt;
use std::str::FromStr;

use super::error::{err, ParseError};
use super::params::Params;
use super::scan::{is_token, is_token_char, trim_lws};
use super::uri::{parse_host_port, Host};

/// One Via value (a header line may carry several, comma-separated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Transport, uppercase ("UDP", "TCP", "TLS", ...).
    pub transport: String,
    /// sent-by host.
    pub host: Host,
    /// sent-by port, when written.
    pub port: Option<u16>,
    /// Parameters (branch, received, rport, ...), values as written.
    pub params: Params,
}

impl Via {
    /// A Via with a branch parameter.
    pub fn new(transport: &str, host: Host, port: Option<u16>, branch: &str) -> Via {
        let mut params = Params::new();
        params.set("branch", Some(branch));
        Via {
            transport: transport.to_ascii_uppercase(),
            host,
            port,
            params,
        }
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&str> {
        self.params.get_value("branch")
    }

    /// The `received` parameter.
    pub fn received(&self) -> Option<&str> {
        self.params.get_value("received")
    }

    /// `Some(None)` = "rport" flag without value (or a value that is not a port).
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|v| v.parse().ok()))
    }

    /// `host[:port]` as written (no default port added).
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.to_string(),
        }
    }
}

/// Split `s` at the next `/` with LWS around the part.
fn slash_part(s: &str) -> Result<(&str, &str), ParseError> {
    match s.split_once('/') {
        Some((a, b)) => Ok((trim_lws(a), b)),
        None => err("bad Via protocol"),
    }
}

impl FromStr for Via {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Via, ParseError> {
        let (name, rest) = slash_part(s)?;
        let (version, rest) = slash_part(rest)?;
        if !name.eq_ignore_ascii_case("SIP") || version != "2.0" {
            return err("bad Via protocol");
        }
        let rest = rest.trim_start_matches([' ', '\t']);
        let end = rest.find(|c| !is_token_char(c)).unwrap_or(rest.len());
        let transport = &rest[..end];
        let rest = &rest[end..];
        let trimmed = rest.trim_start_matches([' ', '\t']);
        if !is_token(transport) || trimmed.len() == rest.len() {
            return err("bad Via transport");
        }
        let (host, port, rest) = parse_host_port(trimmed, true)?;
        let params = Params::parse_header(rest)?;
        Ok(Via {
            transport: transport.to_ascii_uppercase(),
            host,
            port,
            params,
        })
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn print_via() {
        let v = Via::new(
            "udp",
            Host::V4("192.0.2.10".parse().unwrap()),
            Some(5060),
            "z9hG4bK1",
        );
        assert_eq!(v.to_string(), "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK1");
        let mut v = Via::new("TLS", Host::V6("::1".parse().unwrap()), None, "z9hG4bK2");
        v.params.set("rport", None);
        assert_eq!(v.to_string(), "SIP/2.0/TLS [::1];branch=z9hG4bK2;rport");
        assert_eq!(v.sent_by(), "[::1]");
    }

    #[test]
    fn parse_via() {
        let v: Via = "SIP/2.0/UDP [2001:db8::9:1]:5060;branch=z9hG4bKas3-111;received=2001:db8::9:255;rport=5060"
            .parse()
            .unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, Host::V6("2001:db8::9:1".parse().unwrap()));
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch(), Some("z9hG4bKas3-111"));
        assert_eq!(v.received(), Some("2001:db8::9:255"));
        assert_eq!(v.rport(), Some(Some(5060)));
        assert_eq!(v.sent_by(), "[2001:db8::9:1]:5060");
        assert_eq!(v.to_string().parse::<Via>().unwrap(), v);
    }

    #[test]
    fn parse_lws_everywhere() {
        let v: Via = "SIP  / 2.0  / tcp     spindle.example.com   ;   branch  =   z9hG4bK9ikj8  "
            .parse()
            .unwrap();
        assert_eq!(v.transport, "TCP");
        assert_eq!(v.host, Host::Domain("spindle.example.com".into()));
        assert_eq!(v.branch(), Some("z9hG4bK9ikj8"));
        assert_eq!(v.rport(), None);
        let v: Via = "SIP/2.0/UDP host : 5062 ;rport".parse().unwrap();
        assert_eq!(v.port, Some(5062));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.to_string(), "SIP/2.0/UDP host:5062;rport");
    }

    #[test]
    fn reject_via() {
        for bad in [
            "SIP/2.0 UDP host",
            "SIP/3.0/UDP host",
            "HTTP/2.0/UDP host",
            "SIP/2.0/UDP",
            "SIP/2.0/UDPhost",
            "SIP/2.0/UDP host;branch=",
            "SIP/2.0/UDP host junk",
            "SIP/2.0/UDP [::1",
        ] {
            assert!(bad.parse::<Via>().is_err(), "{bad}");
        }
    }
}
