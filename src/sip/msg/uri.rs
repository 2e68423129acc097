//! `sip:`, `sips:` and `tel:` URIs (RFC 3261 §19.1, RFC 3966) with IPv6 references and
//! `%HEX` escapes.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::fmt;
use std::str::FromStr;

use super::error::{err, ParseError};
use super::params::Params;

/// Reason of the error for a URI scheme other than sip, sips and tel.
pub(crate) const UNSUPPORTED_SCHEME: &str = "unsupported URI scheme";

/// URI scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:` (TLS required)
    Sips,
    /// `tel:` (RFC 3966)
    Tel,
}

impl Scheme {
    /// The scheme name, lowercase.
    pub fn as_str(&self) -> &'static str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
            Scheme::Tel => "tel",
        }
    }
}

/// A host: domain name or IP literal. Display puts IPv6 in brackets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A domain name, as written.
    Domain(String),
    /// An IPv4 literal.
    V4(Ipv4Addr),
    /// An IPv6 reference (`[...]` on the wire).
    V6(Ipv6Addr),
}

impl Host {
    /// The IP address when the host is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Domain(_) => None,
            Host::V4(a) => Some(IpAddr::V4(*a)),
            Host::V6(a) => Some(IpAddr::V6(*a)),
        }
    }
}

impl From<IpAddr> for Host {
    fn from(ip: IpAddr) -> Host {
        match ip {
            IpAddr::V4(a) => Host::V4(a),
            IpAddr::V6(a) => Host::V6(a),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

impl FromStr for Host {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Host, ParseError> {
        match parse_host_port(s, false)? {
            (host, None, "") => Ok(host),
            _ => err("bad host"),
        }
    }
}

fn is_host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_'
}

/// Parse `host [":" port]` at the start of `s`; returns the rest. With `lws`, blanks are
/// allowed around the colon (Via sent-by).
pub(crate) fn parse_host_port(s: &str, lws: bool) -> Result<(Host, Option<u16>, &str), ParseError> {
    let (host, rest) = if let Some(inner) = s.strip_prefix('[') {
        let Some(end) = inner.find(']') else {
            return err("unterminated IPv6 reference");
        };
        let addr =
            Ipv6Addr::from_str(&inner[..end]).map_err(|_| ParseError::new("bad IPv6 address"))?;
        (Host::V6(addr), &inner[end + 1..])
    } else {
        let end = s.find(|c| !is_host_char(c)).unwrap_or(s.len());
        let text = &s[..end];
        if text.is_empty() {
            return err("missing host");
        }
        let host = match Ipv4Addr::from_str(text) {
            Ok(a) => Host::V4(a),
            Err(_) => Host::Domain(text.to_string()),
        };
        (host, &s[end..])
    };
    fn skip(t: &str, lws: bool) -> &str {
        if lws {
            t.trim_start_matches([' ', '\t'])
        } else {
            t
        }
    }
    let after = skip(rest, lws);
    let Some(p) = after.strip_prefix(':') else {
        return Ok((host, None, rest));
    };
    let p = skip(p, lws);
    let end = p.find(|c: char| !c.is_ascii_digit()).unwrap_or(p.len());
    if end == 0 || end > 5 {
        return err("bad port");
    }
    let port: u16 = p[..end].parse().map_err(|_| ParseError::new("bad port"))?;
    Ok((host, Some(port), &p[end..]))
}

/// A SIP, SIPS or tel URI. Text parts are stored unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    /// The scheme.
    pub scheme: Scheme,
    /// The user part, unescaped; for `tel:` the number.
    pub user: Option<String>,
    /// The password of the user part, unescaped (deprecated by RFC 3261, but parsed).
    pub password: Option<String>,
    /// The host; `Domain("")` for `tel:`.
    pub host: Host,
    /// The port, when written.
    pub port: Option<u16>,
    /// URI parameters, names and values unescaped.
    pub params: Params,
    /// URI headers (`?name=value&...`), unescaped.
    pub headers: Vec<(String, String)>,
}

impl Uri {
    /// A plain `sip:` URI.
    pub fn sip(user: Option<&str>, host: Host, port: Option<u16>) -> Uri {
        Uri {
            scheme: Scheme::Sip,
            user: user.map(str::to_string),
            password: None,
            host,
            port,
            params: Params::new(),
            headers: Vec::new(),
        }
    }

    /// The socket address when the host is an IP literal (default port 5060, 5061 for sips).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        let default = match self.scheme {
            Scheme::Sip => 5060,
            Scheme::Sips => 5061,
            Scheme::Tel => return None,
        };
        let ip = self.host.ip()?;
        Some(SocketAddr::new(ip, self.port.unwrap_or(default)))
    }

    /// `host[:port]` as written (IPv6 in brackets).
    pub fn host_port(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.to_string(),
        }
    }
}

/// Characters that may appear unescaped, per URI part.
#[derive(Clone, Copy)]
enum Part {
    User,
    Password,
    Param,
    Header,
    /// A tel number: like a user part, but `;` and `?` escaped.
    Tel,
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&c)
}

fn allowed(part: Part, c: u8) -> bool {
    is_unreserved(c)
        || match part {
            Part::User => b"&=+$,;?/".contains(&c),
            Part::Password | Part::Tel => b"&=+$,".contains(&c),
            Part::Param => b"[]/:&+$".contains(&c),
            Part::Header => b"[]/?:+$".contains(&c),
        }
}

fn escape(out: &mut fmt::Formatter<'_>, part: Part, s: &str) -> fmt::Result {
    for &b in s.as_bytes() {
        if allowed(part, b) {
            write!(out, "{}", b as char)?;
        } else {
            write!(out, "%{b:02X}")?;
        }
    }
    Ok(())
}

/// Decode `%HH` escapes; a `%` not followed by two hex digits is kept as is.
/// The result must be UTF-8.
fn unescape(s: &str) -> Result<String, ParseError> {
    if !s.contains('%') {
        return Ok(s.to_string());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
        {
            let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
            out.push(hex(b[i + 1]) * 16 + hex(b[i + 2]));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ParseError::new("escaped bytes in URI are not UTF-8"))
}

/// Parse `;name[=value]...` URI parameters (unescaping).
fn parse_uri_params(s: &str) -> Result<Params, ParseError> {
    let mut params = Params::new();
    for piece in s.split(';') {
        if piece.is_empty() {
            continue;
        }
        let (name, value) = match piece.split_once('=') {
            Some((n, v)) => (n, Some(unescape(v)?)),
            None => (piece, None),
        };
        if name.is_empty() {
            return err("empty URI parameter name");
        }
        params.push(unescape(name)?, value);
    }
    Ok(params)
}

impl FromStr for Uri {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Uri, ParseError> {
        if s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>\"".contains(c))
        {
            return err("bad character in URI");
        }
        let Some((scheme, rest)) = s.split_once(':') else {
            return err("URI without scheme");
        };
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "sip" => Scheme::Sip,
            "sips" => Scheme::Sips,
            "tel" => Scheme::Tel,
            _ => return err(UNSUPPORTED_SCHEME),
        };
        if scheme == Scheme::Tel {
            let (number, params) = rest.split_once(';').unwrap_or((rest, ""));
            if number.is_empty() || number.contains(['?', '@']) {
                return err("bad tel URI");
            }
            let mut uri = Uri::sip(Some(&unescape(number)?), Host::Domain(String::new()), None);
            uri.scheme = Scheme::Tel;
            uri.params = parse_uri_params(params)?;
            return Ok(uri);
        }
        let (user, password, hostport) = match rest.split_once('@') {
            Some((userinfo, hostport)) => {
                let (user, password) = match userinfo.split_once(':') {
                    Some((u, p)) => (u, Some(unescape(p)?)),
                    None => (userinfo, None),
                };
                if user.is_empty() {
                    return err("empty user in URI");
                }
                (Some(unescape(user)?), password, hostport)
            }
            None => (None, None, rest),
        };
        let (host, port, rest) = parse_host_port(hostport, false)?;
        let (params, headers) = match rest.split_once('?') {
            Some((p, h)) => (p, Some(h)),
            None => (rest, None),
        };
        if !params.is_empty() && !params.starts_with(';') {
            return err("bad character after URI host");
        }
        let mut uri = Uri::sip(None, host, port);
        uri.scheme = scheme;
        uri.user = user;
        uri.password = password;
        uri.params = parse_uri_params(params)?;
        if let Some(h) = headers {
            for piece in h.split('&').filter(|p| !p.is_empty()) {
                let (n, v) = piece.split_once('=').unwrap_or((piece, ""));
                if n.is_empty() {
                    return err("empty URI header name");
                }
                uri.headers.push((unescape(n)?, unescape(v)?));
            }
        }
        Ok(uri)
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme.as_str())?;
        if self.scheme == Scheme::Tel {
            escape(f, Part::Tel, self.user.as_deref().unwrap_or(""))?;
        } else {
            if let Some(user) = &self.user {
                escape(f, Part::User, user)?;
                if let Some(pw) = &self.password {
                    f.write_str(":")?;
                    escape(f, Part::Password, pw)?;
                }
                f.write_str("@")?;
            }
            write!(f, "{}", self.host)?;
            if let Some(p) = self.port {
                write!(f, ":{p}")?;
            }
        }
        for (n, v) in self.params.iter() {
            f.write_str(";")?;
            escape(f, Part::Param, n)?;
            if let Some(v) = v {
                f.write_str("=")?;
                escape(f, Part::Param, v)?;
            }
        }
        for (i, (n, v)) in self.headers.iter().enumerate() {
            f.write_str(if i == 0 { "?" } else { "&" })?;
            escape(f, Part::Header, n)?;
            f.write_str("=")?;
            escape(f, Part::Header, v)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(s: &str) -> Uri {
        let u: Uri = s.parse().unwrap();
        let printed = u.to_string();
        assert_eq!(printed.parse::<Uri>().unwrap(), u, "{printed}");
        u
    }

    #[test]
    fn plain() {
        let u = rt("sip:alice@example.com:5070;transport=tcp;lr");
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.host, Host::Domain("example.com".into()));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.params.get_value("transport"), Some("tcp"));
        assert!(u.params.contains("lr"));
        assert_eq!(u.to_string(), "sip:alice@example.com:5070;transport=tcp;lr");
        assert_eq!(u.host_port(), "example.com:5070");
        assert_eq!(u.socket_addr(), None);
    }

    #[test]
    fn ipv6_and_ipv4() {
        let u = rt("sip:bob@[2001:db8::10]:5070");
        assert_eq!(u.host, Host::V6("2001:db8::10".parse().unwrap()));
        assert_eq!(u.to_string(), "sip:bob@[2001:db8::10]:5070");
        assert_eq!(
            u.socket_addr(),
            Some("[2001:db8::10]:5070".parse().unwrap())
        );
        let u = rt("sips:192.0.2.1");
        assert_eq!(u.socket_addr(), Some("192.0.2.1:5061".parse().unwrap()));
        assert_eq!(
            rt("sip:[::1]").socket_addr(),
            Some("[::1]:5060".parse().unwrap())
        );
        assert!("sip:bob@[2001:db8::10".parse::<Uri>().is_err());
        assert!("sip:bob@[zz]".parse::<Uri>().is_err());
        assert!("sip:bob@host:".parse::<Uri>().is_err());
        assert!("sip:bob@host:70000".parse::<Uri>().is_err());
        assert!("sip:bob@".parse::<Uri>().is_err());
    }

    #[test]
    fn escapes() {
        let u = rt("sip:sips%3Auser%40example.com@example.net");
        assert_eq!(u.user.as_deref(), Some("sips:user@example.com"));
        assert_eq!(u.to_string(), "sip:sips%3Auser%40example.com@example.net");
        let u = rt("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31");
        assert_eq!(u.user.as_deref(), Some("caller"));
        assert!(u.params.contains("lr"));
        assert_eq!(u.params.get_value("name"), Some("value%41"));
        assert_eq!(
            u.to_string(),
            "sip:caller@host5.example.net;lr;name=value%2541"
        );
        let u = rt("sip:I%20have%20spaces@example.net");
        assert_eq!(u.user.as_deref(), Some("I have spaces"));
        let u = rt("sip:null-%00-null@example.com");
        assert_eq!(u.user.as_deref(), Some("null-\0-null"));
        let u = rt("sip:a%ZZ@h");
        assert_eq!(u.user.as_deref(), Some("a%ZZ"));
        assert!("sip:%FF@h".parse::<Uri>().is_err());
    }

    #[test]
    fn user_with_odd_chars_and_password() {
        let u = rt("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user.as_deref(), Some("user;par=u@example.net"));
        assert_eq!(u.host, Host::Domain("example.com".into()));
        let u = rt("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com");
        assert_eq!(
            u.user.as_deref(),
            Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        );
        assert_eq!(
            u.password.as_deref(),
            Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
        );
    }

    #[test]
    fn headers() {
        let u = rt("sip:carol@example.net?Replaces=12345%40192.0.2.30%3Bto-tag%3D12345%3Bfrom-tag%3D5FFE-3994");
        assert_eq!(
            u.headers,
            vec![(
                "Replaces".to_string(),
                "12345@192.0.2.30;to-tag=12345;from-tag=5FFE-3994".to_string()
            )]
        );
        assert_eq!(
            u.to_string(),
            "sip:carol@example.net?Replaces=12345%40192.0.2.30%3Bto-tag%3D12345%3Bfrom-tag%3D5FFE-3994"
        );
        let u = rt("sip:a@b;lr?subject=hi%20there&priority=urgent");
        assert_eq!(u.headers.len(), 2);
        assert_eq!(u.headers[0].1, "hi there");
    }

    #[test]
    fn tel() {
        let u = rt("tel:+1-201-555-0123;phone-context=example.com");
        assert_eq!(u.scheme, Scheme::Tel);
        assert_eq!(u.user.as_deref(), Some("+1-201-555-0123"));
        assert_eq!(u.host, Host::Domain(String::new()));
        assert_eq!(u.params.get_value("phone-context"), Some("example.com"));
        assert_eq!(
            u.to_string(),
            "tel:+1-201-555-0123;phone-context=example.com"
        );
        assert_eq!(u.socket_addr(), None);
        assert!("tel:".parse::<Uri>().is_err());
        let mut odd = Uri::sip(Some("+1;2?3@4"), Host::Domain(String::new()), None);
        odd.scheme = Scheme::Tel;
        assert_eq!(odd.to_string(), "tel:+1%3B2%3F3%404");
        assert_eq!(odd.to_string().parse::<Uri>().unwrap(), odd);
    }

    #[test]
    fn rejects() {
        for bad in [
            "<sip:user@example.com>",
            "sip:user@example.com>",
            "http://example.com",
            "example.com",
            "sip:user@exa mple.com",
            "sip:@example.com",
            "sip:a@b;=x",
            "sip:a@b!c",
            "",
        ] {
            assert!(bad.parse::<Uri>().is_err(), "{bad}");
        }
    }

    #[test]
    fn scheme_case_insensitive() {
        assert_eq!(rt("SIP:a@b").to_string(), "sip:a@b");
    }
}
