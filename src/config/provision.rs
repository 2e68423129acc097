//! Provisioning payloads: what a SIP provider hands out so a softphone sets itself up, usually
//! as a QR code. Two forms are read:
//!
//! - Zoiper-style `key=value` pairs, one per line or `;`/`&`-separated: `server`, `port`,
//!   `username`, `password`, `transport` (`udp`, `tcp`, `tls`, `ws`, `wss`), `protocol` (`sip`),
//!   the `wss_port`/`wss_path` extension that WebSocket clients read from the same code, and
//!   `domain`, `authuser`/`auth_user`, `displayname`, `outbound_proxy`/`proxy`. Unknown keys
//!   are ignored with a warning that names the key (never a value).
//! - The Zoiper OEM URL: a URL whose query carries `u` (user), `h` (host[:port]), `p`
//!   (password), `o` (outbound proxy), `a` (auth user) and `tr` (transport: `0` UDP, `1` TCP,
//!   `2` TLS, or a name).
//!
//! A payload maps to an [`AccountFields`] (the keys of one `[[account]]` table) and back
//! ([`AccountFields::to_payload`]), so `termphone account export` output imports again.
//! Errors and warnings never contain a value from the payload, so a password cannot leak
//! through them.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::Secret;
use crate::sip::transport::Transport;

/// Text payloads larger than this are refused (a payload is a few hundred bytes).
pub const MAX_TEXT_LEN: usize = 64 * 1024;

/// A provisioning payload that could not be used. The text names keys and what was expected,
/// never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvisionError {
    /// Nothing but blank lines or comments.
    Empty,
    /// Neither a PNG/JPEG image nor UTF-8 text.
    NotText,
    /// Text payloads are limited to [`MAX_TEXT_LEN`].
    TooLarge,
    /// No server / host.
    NoHost,
    /// No user name.
    NoUser,
    /// A key's value is not acceptable: (key, what was expected).
    BadValue(String, &'static str),
    /// `protocol` other than SIP (e.g. IAX).
    UnsupportedProtocol,
    /// The image could not be decoded as PNG or JPEG: the decoder's reason.
    BadImage(String),
    /// The image holds no QR code that could be found.
    NoQrCode,
    /// A QR code was found but its content could not be read.
    QrUndecodable,
    /// The payload cannot be written as `key=value` lines: (key, why).
    Unexportable(&'static str, &'static str),
}

impl fmt::Display for ProvisionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProvisionError::Empty => f.write_str(
                "the provisioning payload is empty; expected key=value lines (server=, username=, \
                 password=, ...) or a Zoiper URL with u=, h=, p=",
            ),
            ProvisionError::NotText => f.write_str(
                "the source is neither a PNG or JPEG image nor UTF-8 text; expected key=value \
                 lines, a Zoiper URL, or an image of a QR code",
            ),
            ProvisionError::TooLarge => write!(
                f,
                "the payload is larger than {} KiB; expected a provisioning payload",
                MAX_TEXT_LEN / 1024
            ),
            ProvisionError::NoHost => f.write_str(
                "no server in the payload; expected server=HOST (or h=HOST in a Zoiper URL)",
            ),
            ProvisionError::NoUser => f.write_str(
                "no user name in the payload; expected username=USER (or u=USER in a Zoiper URL)",
            ),
            ProvisionError::BadValue(key, expected) => {
                write!(f, "invalid value for {key}; expected {expected}")
            }
            ProvisionError::UnsupportedProtocol => f.write_str(
                "unsupported protocol; expected protocol=sip (termphone speaks SIP only)",
            ),
            ProvisionError::BadImage(why) => write!(f, "cannot decode the image: {why}"),
            ProvisionError::NoQrCode => f.write_str(
                "no QR code found in the image; expected a sharp, uncropped picture of the code",
            ),
            ProvisionError::QrUndecodable => f.write_str(
                "a QR code was found in the image but could not be read (damaged or blurred)",
            ),
            ProvisionError::Unexportable(key, why) => write!(f, "cannot export {key}: {why}"),
        }
    }
}

impl std::error::Error for ProvisionError {}

const EXPECT_PORT: &str = "a port number from 1 to 65535";
const EXPECT_HOST: &str = "a host name or IP address, optionally with :port";
const EXPECT_TRANSPORT: &str = "udp, tcp, tls, ws or wss (or 0, 1, 2 for UDP, TCP, TLS)";
const EXPECT_USER: &str =
    "a SIP user name (letters, digits and - _ . ! ~ * ' ( ) & = + $ , ; ? / or %XX)";
const EXPECT_TEXT: &str = "text without control characters";
const EXPECT_PROXY: &str = "a host[:port] or a sip: URI";
const EXPECT_PATH: &str = "a path starting with / without spaces";

/// What a provisioning payload says about one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The server: a host name, IPv4 address or bracketed IPv6 address.
    pub host: String,
    /// The SIP port on `host`, when given.
    pub port: Option<u16>,
    /// The SIP domain when it differs from the server (`domain=`), as `host[:port]`.
    pub domain: Option<String>,
    /// The SIP user part.
    pub user: String,
    /// The password, when the payload carries one.
    pub password: Option<Secret>,
    /// Digest user name when it differs from `user`.
    pub auth_user: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// SIP transport (UDP when the payload names none).
    pub transport: Transport,
    /// Outbound proxy as a SIP URI.
    pub outbound_proxy: Option<String>,
    /// WebSocket port (`wss_port`), for ws/wss.
    pub wss_port: Option<u16>,
    /// WebSocket path (`wss_path`), for ws/wss.
    pub ws_path: Option<String>,
}

/// A parsed payload and the warnings to show (unknown keys, ...; never a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The payload.
    pub payload: Payload,
    /// Things that were ignored.
    pub warnings: Vec<String>,
}

/// The keys of one `[[account]]` table that provisioning writes and reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountFields {
    /// `name`.
    pub name: String,
    /// `user`.
    pub user: String,
    /// `domain` (host[:port]).
    pub domain: Option<String>,
    /// `registrar` (a plain `sip:host[:port]` URI).
    pub registrar: Option<String>,
    /// `transport`.
    pub transport: Transport,
    /// `outbound_proxy` (a SIP URI).
    pub outbound_proxy: Option<String>,
    /// `auth_user`.
    pub auth_user: Option<String>,
    /// `ws_path` (ws/wss only).
    pub ws_path: Option<String>,
    /// `display_name`.
    pub display_name: Option<String>,
    /// `enabled`.
    pub enabled: bool,
}

/// Parse a text payload: a Zoiper OEM URL or `key=value` pairs.
pub fn parse_payload(text: &str) -> Result<Parsed, ProvisionError> {
    if text.len() > MAX_TEXT_LEN {
        return Err(ProvisionError::TooLarge);
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text).trim();
    if is_url(text) {
        parse_oem_url(text)
    } else {
        parse_key_values(text)
    }
}

/// A URL form: something before a `?` that has no `=` and no line break (`https://host/x?u=..`,
/// `zoiper://..?..`, or a bare `?u=..`).
fn is_url(text: &str) -> bool {
    match text.find('?') {
        Some(i) => {
            let head = &text[..i];
            !head.contains('=') && !head.contains('\n') && !head.contains(';')
        }
        None => false,
    }
}

/// A key as it may be shown: plain identifiers only (a mangled line could otherwise put a
/// value into the "key").
fn shown_key(key: &str) -> String {
    let plain = !key.is_empty()
        && key.len() <= 40
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if plain {
        format!("\"{key}\"")
    } else {
        "with unusual characters".to_string()
    }
}

/// Raw (key, value) pairs before interpretation; keys lower-cased.
struct Pairs {
    pairs: Vec<(String, String)>,
    warnings: Vec<String>,
}

impl Pairs {
    fn push(&mut self, key: &str, value: String) {
        let key = key.trim().to_ascii_lowercase();
        if let Some(slot) = self.pairs.iter_mut().find(|(k, _)| *k == key) {
            self.warnings.push(format!(
                "key {} appears more than once; the last one is used",
                shown_key(&key)
            ));
            slot.1 = value;
        } else {
            self.pairs.push((key, value));
        }
    }

    /// The value of the first of `keys` present (aliases), removing every alias.
    fn take(&mut self, keys: &[&str]) -> Option<String> {
        let mut found = None;
        for k in keys {
            if let Some(i) = self.pairs.iter().position(|(key, _)| key == k) {
                let (_, v) = self.pairs.remove(i);
                found.get_or_insert(v);
            }
        }
        found.filter(|v| !v.is_empty())
    }

    /// Warn about every key not taken.
    fn finish(mut self, what: &str) -> Vec<String> {
        for (k, _) in &self.pairs {
            self.warnings.push(format!(
                "unknown key {} in the {what} ignored",
                shown_key(k)
            ));
        }
        self.warnings
    }
}

fn parse_key_values(text: &str) -> Result<Parsed, ProvisionError> {
    let mut pairs = Pairs {
        pairs: Vec::new(),
        warnings: Vec::new(),
    };
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    // Several lines: one pair per line (values may then hold ; and &). One line: pairs split
    // by & (query style, percent-encoded) or by ;.
    let (items, encoded): (Vec<&str>, bool) = match lines.as_slice() {
        [] => return Err(ProvisionError::Empty),
        [one] if one.contains('&') => (one.split('&').collect(), true),
        [one] => (one.split(';').collect(), false),
        many => (many.to_vec(), false),
    };
    for (i, item) in items.iter().enumerate() {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let Some((k, v)) = item.split_once('=') else {
            pairs
                .warnings
                .push(format!("item {} has no '=' and was ignored", i + 1));
            continue;
        };
        let v = if encoded {
            percent_decode(v).ok_or_else(|| {
                ProvisionError::BadValue(shown_key(k.trim()), "percent-encoded UTF-8 text")
            })?
        } else {
            v.to_string()
        };
        let v = v.trim().to_string();
        pairs.push(k, v);
    }
    if pairs.pairs.is_empty() {
        return Err(ProvisionError::Empty);
    }
    if let Some(p) = pairs.take(&["protocol"]) {
        if !p.eq_ignore_ascii_case("sip") {
            return Err(ProvisionError::UnsupportedProtocol);
        }
    }
    let fields = RawFields {
        server: pairs.take(&["server", "host", "registrar"]),
        port: pairs.take(&["port"]),
        domain: pairs.take(&["domain"]),
        user: pairs.take(&["username", "user"]),
        password: pairs.take(&["password", "pass", "secret"]),
        auth_user: pairs.take(&["authuser", "auth_user", "authusername", "auth_username"]),
        display_name: pairs.take(&["displayname", "display_name"]),
        transport: pairs.take(&["transport"]),
        outbound_proxy: pairs.take(&["outbound_proxy", "outboundproxy", "proxy"]),
        wss_port: pairs.take(&["wss_port", "ws_port"]),
        ws_path: pairs.take(&["wss_path", "ws_path"]),
    };
    let warnings = pairs.finish("payload");
    fields.build(warnings, "server")
}

fn parse_oem_url(text: &str) -> Result<Parsed, ProvisionError> {
    let query = text.split_once('?').map_or("", |(_, q)| q);
    let query = query.split('#').next().unwrap_or("");
    let mut pairs = Pairs {
        pairs: Vec::new(),
        warnings: Vec::new(),
    };
    for item in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = item.split_once('=').unwrap_or((item, ""));
        let key = percent_decode(k).unwrap_or_default();
        let v = percent_decode(v).ok_or_else(|| {
            ProvisionError::BadValue(shown_key(&key), "percent-encoded UTF-8 text")
        })?;
        pairs.push(&key, v.trim().to_string());
    }
    if pairs.pairs.is_empty() {
        return Err(ProvisionError::Empty);
    }
    // Known OEM variables that need Zoiper's own servers (provider id, token, provisioning
    // server): named in a warning, like unknown keys.
    let fields = RawFields {
        server: pairs.take(&["h"]),
        port: None,
        domain: None,
        user: pairs.take(&["u"]),
        password: pairs.take(&["p"]),
        auth_user: pairs.take(&["a"]),
        display_name: None,
        transport: pairs.take(&["tr"]),
        outbound_proxy: pairs.take(&["o"]),
        wss_port: None,
        ws_path: None,
    };
    let warnings = pairs.finish("URL");
    fields.build(warnings, "h")
}

/// Values by meaning, before checks.
struct RawFields {
    server: Option<String>,
    port: Option<String>,
    domain: Option<String>,
    user: Option<String>,
    password: Option<String>,
    auth_user: Option<String>,
    display_name: Option<String>,
    transport: Option<String>,
    outbound_proxy: Option<String>,
    wss_port: Option<String>,
    ws_path: Option<String>,
}

impl RawFields {
    fn build(
        self,
        warnings: Vec<String>,
        host_key: &'static str,
    ) -> Result<Parsed, ProvisionError> {
        let transport = match &self.transport {
            Some(t) => parse_transport(t)
                .ok_or_else(|| ProvisionError::BadValue("transport".into(), EXPECT_TRANSPORT))?,
            None => Transport::Udp,
        };
        let mut user = self.user;
        let mut server = self.server;
        // username=1001@pbx.example.com: the host may come with the user.
        if let Some(u) = user.clone() {
            if let Some((name, host)) = u.split_once('@') {
                user = Some(name.to_string());
                if server.is_none() {
                    server = Some(host.to_string());
                }
            }
        }
        let server = server.ok_or(ProvisionError::NoHost)?;
        let (host, host_port) = split_host_port(strip_sip_scheme(&server))
            .ok_or_else(|| ProvisionError::BadValue(host_key.into(), EXPECT_HOST))?;
        let port = match self.port {
            Some(p) => Some(parse_port(&p, "port")?),
            None => host_port,
        };
        let user = user
            .filter(|u| !u.is_empty())
            .ok_or(ProvisionError::NoUser)?;
        if !sip_user(&user) {
            return Err(ProvisionError::BadValue("username".into(), EXPECT_USER));
        }
        let auth_user = match self.auth_user {
            Some(a) if !no_control(&a) || a.contains(char::is_whitespace) => {
                return Err(ProvisionError::BadValue("auth user".into(), EXPECT_TEXT));
            }
            other => other.filter(|a| *a != user),
        };
        let domain = match self.domain {
            Some(d) => {
                let (h, p) = split_host_port(strip_sip_scheme(&d))
                    .ok_or_else(|| ProvisionError::BadValue("domain".into(), EXPECT_HOST))?;
                Some(join_host_port(&h, p))
            }
            None => None,
        };
        let display_name = match self.display_name {
            Some(d) if !no_control(&d) => {
                return Err(ProvisionError::BadValue("displayname".into(), EXPECT_TEXT));
            }
            other => other,
        };
        let outbound_proxy =
            match self.outbound_proxy {
                Some(o) => Some(proxy_uri(&o).ok_or_else(|| {
                    ProvisionError::BadValue("outbound proxy".into(), EXPECT_PROXY)
                })?),
                None => None,
            };
        let wss_port = match self.wss_port {
            Some(p) => Some(parse_port(&p, "wss_port")?),
            None => None,
        };
        let ws_path = match self.ws_path {
            Some(p) => {
                let p = if p.starts_with('/') {
                    p
                } else {
                    format!("/{p}")
                };
                if !no_control(&p) || p.contains(char::is_whitespace) {
                    return Err(ProvisionError::BadValue("wss_path".into(), EXPECT_PATH));
                }
                Some(p)
            }
            None => None,
        };
        let password = match self.password {
            // A password with a line break could not be exported again, nor typed.
            Some(p) if p.contains(['\n', '\r', '\0']) => {
                return Err(ProvisionError::BadValue(
                    "password".into(),
                    "a password without line breaks",
                ))
            }
            other => other.map(Secret::new),
        };
        Ok(Parsed {
            payload: Payload {
                host,
                port,
                domain,
                user,
                password,
                auth_user,
                display_name,
                transport,
                outbound_proxy,
                wss_port,
                ws_path,
            },
            warnings,
        })
    }
}

/// `udp`, `TCP`, ... or Zoiper's numbers (0 UDP, 1 TCP, 2 TLS).
fn parse_transport(s: &str) -> Option<Transport> {
    match s.trim() {
        "0" => Some(Transport::Udp),
        "1" => Some(Transport::Tcp),
        "2" => Some(Transport::Tls),
        other => Transport::from_name(other),
    }
}

fn parse_port(s: &str, key: &str) -> Result<u16, ProvisionError> {
    s.trim()
        .parse::<u16>()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| ProvisionError::BadValue(key.to_string(), EXPECT_PORT))
}

fn strip_sip_scheme(s: &str) -> &str {
    let s = s.trim();
    for scheme in ["sip:", "sips:"] {
        if s.get(..scheme.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(scheme))
        {
            return &s[scheme.len()..];
        }
    }
    s
}

fn no_control(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// RFC 3261 `user`: unreserved / escaped / user-unreserved.
fn sip_user(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
        } else if b[i].is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    !s.is_empty()
}

/// A host name (letters, digits, `-`, dot-separated labels) or an IPv4 address.
fn valid_name(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Split `host[:port]` (IPv6 bracketed, or bare when there is no port); the host comes back
/// lower-cased, IPv6 bracketed. `None` when either part is invalid.
pub(crate) fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let s = s.trim().trim_end_matches('/');
    if s.is_empty() {
        return None;
    }
    // A bare IPv6 address (no brackets, no port).
    if let Ok(v6) = s.parse::<Ipv6Addr>() {
        return Some((format!("[{v6}]"), None));
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (format!("[{}]", v6.to_ascii_lowercase()), port)
    } else {
        let (h, p) = match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        if h.parse::<Ipv4Addr>().is_err() && !valid_name(h) {
            return None;
        }
        (h.to_ascii_lowercase(), p)
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|&p| p > 0)?),
        None => None,
    };
    Some((host, port))
}

fn join_host_port(host: &str, port: Option<u16>) -> String {
    match port {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// An outbound proxy as a SIP URI: `host[:port]` gets `sip:`; a `sip:`/`sips:` URI is kept
/// when its host part is valid (parameters such as `;lr` are kept).
fn proxy_uri(s: &str) -> Option<String> {
    let s = s.trim();
    let lower = s.to_ascii_lowercase();
    let (scheme, rest) = if lower.starts_with("sips:") {
        ("sips:", &s[5..])
    } else if lower.starts_with("sip:") {
        ("sip:", &s[4..])
    } else {
        ("sip:", s)
    };
    let (hostport, params) = match rest.split_once(';') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    // A user part is allowed in a URI but not needed for a proxy.
    let hostport = hostport.rsplit_once('@').map_or(hostport, |(_, h)| h);
    let (host, port) = split_host_port(hostport)?;
    if let Some(p) = params {
        if !no_control(p) || p.contains(char::is_whitespace) {
            return None;
        }
    }
    let mut uri = format!("{scheme}{}", join_host_port(&host, port));
    if let Some(p) = params {
        uri.push(';');
        uri.push_str(p);
    }
    Some(uri)
}

/// `%XX` decoding; `None` if the result is not UTF-8. A `%` not followed by two hex digits is
/// kept as it is.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

impl Payload {
    /// The account this payload describes; `name` defaults to `user@host`.
    pub fn to_account(&self, name: Option<&str>) -> AccountFields {
        let ws = self.transport.is_websocket();
        let registrar_port = if ws {
            self.wss_port.or(self.port)
        } else {
            self.port
        };
        AccountFields {
            name: name
                .map(str::to_string)
                .unwrap_or_else(|| format!("{}@{}", self.user, self.host)),
            user: self.user.clone(),
            domain: Some(
                self.domain
                    .clone()
                    .unwrap_or_else(|| join_host_port(&self.host, self.port)),
            ),
            registrar: Some(format!(
                "sip:{}",
                join_host_port(&self.host, registrar_port)
            )),
            transport: self.transport,
            outbound_proxy: self.outbound_proxy.clone(),
            auth_user: self.auth_user.clone(),
            ws_path: ws.then(|| self.ws_path.clone().unwrap_or_else(|| "/".to_string())),
            display_name: self.display_name.clone(),
            enabled: true,
        }
    }
}

impl AccountFields {
    /// The `key=value` payload (one pair per line) that imports back into this account;
    /// `password` is included when given.
    pub fn to_payload(&self, password: Option<&Secret>) -> Result<String, ProvisionError> {
        let registrar = self
            .registrar
            .as_deref()
            .map(|r| {
                let hostport = strip_sip_scheme(r);
                let hostport = hostport.split(';').next().unwrap_or(hostport);
                let hostport = hostport.rsplit_once('@').map_or(hostport, |(_, h)| h);
                split_host_port(hostport).ok_or(ProvisionError::Unexportable(
                    "registrar",
                    "it is not a sip:host[:port] URI",
                ))
            })
            .transpose()?;
        let domain = self
            .domain
            .as_deref()
            .map(|d| {
                split_host_port(d).ok_or(ProvisionError::Unexportable(
                    "domain",
                    "it is not host[:port]",
                ))
            })
            .transpose()?;
        let ws = self.transport.is_websocket();
        // The server is the registrar's host (else the domain); the SIP port is the domain's
        // when the registrar is reached over WebSocket.
        let (host, registrar_port) = match (&registrar, &domain) {
            (Some((h, p)), _) => (h.clone(), *p),
            (None, Some((h, p))) => (h.clone(), *p),
            (None, None) => {
                return Err(ProvisionError::Unexportable(
                    "the account",
                    "it has neither a registrar nor a domain (a serverless account)",
                ))
            }
        };
        let (port, wss_port) = if ws {
            let dom_port = domain
                .as_ref()
                .filter(|(h, _)| *h == host)
                .and_then(|(_, p)| *p);
            (dom_port, registrar_port)
        } else {
            (registrar_port, None)
        };
        let mut lines = vec![("protocol", "sip".to_string()), ("server", host.clone())];
        if let Some(p) = port {
            lines.push(("port", p.to_string()));
        }
        // domain only when import would not derive the same one from server and port.
        if let Some(d) = &self.domain {
            if *d != join_host_port(&host, port) {
                lines.push(("domain", d.clone()));
            }
        }
        lines.push(("username", self.user.clone()));
        if let Some(a) = &self.auth_user {
            lines.push(("authuser", a.clone()));
        }
        lines.push(("transport", self.transport.param_name().to_string()));
        if let Some(p) = wss_port {
            lines.push(("wss_port", p.to_string()));
        }
        if ws {
            if let Some(p) = &self.ws_path {
                lines.push(("wss_path", p.clone()));
            }
        }
        if let Some(o) = &self.outbound_proxy {
            lines.push(("outbound_proxy", o.clone()));
        }
        if let Some(d) = &self.display_name {
            lines.push(("displayname", d.clone()));
        }
        let mut out = String::new();
        for (k, v) in &lines {
            if v.contains(['\n', '\r']) {
                return Err(ProvisionError::Unexportable(
                    k,
                    "its value has a line break",
                ));
            }
            out.push_str(&format!("{k}={v}\n"));
        }
        if let Some(pw) = password {
            if pw.expose().contains(['\n', '\r']) {
                return Err(ProvisionError::Unexportable(
                    "password",
                    "it has a line break",
                ));
            }
            out.push_str(&format!("password={}\n", pw.expose()));
        }
        Ok(out)
    }
}

/// What kind of image `bytes` is, by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// PNG (`\x89PNG\r\n\x1a\n`).
    Png,
    /// JPEG (`FF D8 FF`).
    Jpeg,
}

/// Recognize a PNG or JPEG by its first bytes.
pub fn image_kind(bytes: &[u8]) -> Option<ImageKind> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageKind::Png)
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some(ImageKind::Jpeg)
    } else {
        None
    }
}

/// Read the first QR code in a PNG or JPEG image; its text content.
pub fn decode_qr_image(bytes: &[u8], kind: ImageKind) -> Result<String, ProvisionError> {
    let format = match kind {
        ImageKind::Png => image::ImageFormat::Png,
        ImageKind::Jpeg => image::ImageFormat::Jpeg,
    };
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    // A screenshot or photo is at most a few thousand pixels a side; refuse decompression bombs.
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(16_384);
    limits.max_image_height = Some(16_384);
    limits.max_alloc = Some(512 * 1024 * 1024);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| ProvisionError::BadImage(e.to_string()))?;
    let luma = img.to_luma8();
    let (w, h) = (luma.width() as usize, luma.height() as usize);
    if w == 0 || h == 0 {
        return Err(ProvisionError::NoQrCode);
    }
    // rqrr works on the whole image; a failure inside it is reported as unreadable rather
    // than taking the process down.
    let result = std::panic::catch_unwind(|| {
        let mut prepared = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
            luma.get_pixel(x as u32, y as u32).0[0]
        });
        let grids = prepared.detect_grids();
        if grids.is_empty() {
            return Err(ProvisionError::NoQrCode);
        }
        grids
            .iter()
            .find_map(|g| g.decode().ok().map(|(_, text)| text))
            .ok_or(ProvisionError::QrUndecodable)
    });
    result.unwrap_or(Err(ProvisionError::QrUndecodable))
}

/// Turn source bytes (a text payload or a PNG/JPEG of a QR code) into a parsed payload.
pub fn parse_source(bytes: &[u8]) -> Result<Parsed, ProvisionError> {
    let text = match image_kind(bytes) {
        Some(kind) => decode_qr_image(bytes, kind)?,
        None => {
            if bytes.len() > MAX_TEXT_LEN {
                return Err(ProvisionError::TooLarge);
            }
            String::from_utf8(bytes.to_vec()).map_err(|_| ProvisionError::NotText)?
        }
    };
    parse_payload(&text)
}

/// A QR code of `text` drawn with Unicode half blocks, two module rows per text line, with a
/// quiet zone of 4 modules. Dark modules are drawn (`▀`, `▄`, `█`), light ones are spaces; with
/// `ansi`, the whole code is painted black on white so it reads the same on dark terminals.
pub fn render_qr(text: &str, ansi: bool) -> Result<String, String> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| format!("cannot make a QR code of the payload: {e}"))?;
    let width = code.width();
    let colors = code.to_colors();
    const QUIET: usize = 4;
    let size = width + 2 * QUIET;
    let dark = |x: usize, y: usize| -> bool {
        if x < QUIET || y < QUIET || x >= QUIET + width || y >= QUIET + width {
            return false;
        }
        colors[(y - QUIET) * width + (x - QUIET)] == qrcode::Color::Dark
    };
    let mut out = String::new();
    for row in (0..size).step_by(2) {
        if ansi {
            out.push_str("\x1b[30;107m");
        }
        for x in 0..size {
            let top = dark(x, row);
            let bottom = row + 1 < size && dark(x, row + 1);
            out.push(match (top, bottom) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        if ansi {
            out.push_str("\x1b[0m");
        }
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> Parsed {
        parse_payload(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    #[test]
    fn key_values_one_per_line() {
        let p = parse(
            "protocol=sip\nserver=PBX.example.com\nport=5080\nusername=1001\npassword=s3cr;et&x\n\
             transport=TCP\ndisplayname=Alice A\nauthuser=a1001\nproxy=proxy.example.com:5070\n",
        );
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        let pl = &p.payload;
        assert_eq!(pl.host, "pbx.example.com");
        assert_eq!(pl.port, Some(5080));
        assert_eq!(pl.user, "1001");
        assert_eq!(pl.password.as_ref().unwrap().expose(), "s3cr;et&x");
        assert_eq!(pl.transport, Transport::Tcp);
        assert_eq!(pl.auth_user.as_deref(), Some("a1001"));
        assert_eq!(pl.display_name.as_deref(), Some("Alice A"));
        assert_eq!(
            pl.outbound_proxy.as_deref(),
            Some("sip:proxy.example.com:5070")
        );
        let a = pl.to_account(None);
        assert_eq!(a.name, "1001@pbx.example.com");
        assert_eq!(a.domain.as_deref(), Some("pbx.example.com:5080"));
        assert_eq!(a.registrar.as_deref(), Some("sip:pbx.example.com:5080"));
        assert_eq!(a.ws_path, None);
        assert!(a.enabled);
    }

    #[test]
    fn key_values_separated_by_semicolons_or_ampersands() {
        let p = parse("server=10.0.0.1:5062;username=bob;password=pw;transport=udp");
        assert_eq!(
            (p.payload.host.as_str(), p.payload.port),
            ("10.0.0.1", Some(5062))
        );
        assert_eq!(p.payload.password.unwrap().expose(), "pw");
        // & form is percent-encoded like a query string.
        let p = parse("server=h.example&username=bob&password=p%26w%3Bx&transport=tls");
        assert_eq!(p.payload.password.unwrap().expose(), "p&w;x");
        assert_eq!(p.payload.transport, Transport::Tls);
    }

    #[test]
    fn websocket_extension_sets_registrar_port_and_path() {
        let p = parse("server=ws.example.com\nport=5060\nusername=u\ntransport=wss\nwss_port=8089\nwss_path=ws\n");
        let a = p.payload.to_account(Some("web"));
        assert_eq!(a.name, "web");
        assert_eq!(a.transport, Transport::Wss);
        assert_eq!(a.registrar.as_deref(), Some("sip:ws.example.com:8089"));
        assert_eq!(a.domain.as_deref(), Some("ws.example.com:5060"));
        assert_eq!(a.ws_path.as_deref(), Some("/ws"));
        // Without wss_path: "/".
        let p = parse("server=ws.example.com\nusername=u\ntransport=ws\n");
        let a = p.payload.to_account(None);
        assert_eq!(a.ws_path.as_deref(), Some("/"));
        assert_eq!(a.registrar.as_deref(), Some("sip:ws.example.com"));
    }

    #[test]
    fn unknown_keys_are_warned_by_name_never_value() {
        let p = parse("server=h\nusername=u\nfoo=topsecretvalue\nbadline topsecretvalue\nx y=topsecretvalue\n");
        let all = p.warnings.join("\n");
        assert!(all.contains("\"foo\""), "{all}");
        assert!(all.contains("item 4 has no '='"), "{all}");
        assert!(all.contains("with unusual characters"), "{all}");
        assert!(!all.contains("topsecretvalue"), "{all}");
    }

    #[test]
    fn errors_are_clear_and_never_echo_the_password() {
        let pw = "Pw-never-shown";
        for (text, want) in [
            (format!("username=u\npassword={pw}"), "no server"),
            (format!("server=h\npassword={pw}"), "no user name"),
            (
                format!("server=h\nport=99999\nusername=u\npassword={pw}"),
                "invalid value for port",
            ),
            (
                format!("server=h\nport=x\nusername=u\npassword={pw}"),
                "invalid value for port",
            ),
            (
                format!("server=h:0\nusername=u\npassword={pw}"),
                "invalid value for server",
            ),
            (
                format!("server=h\nusername=u\ntransport=sctp\npassword={pw}"),
                "invalid value for transport",
            ),
            (
                format!("server=h\nusername=u\nprotocol=iax\npassword={pw}"),
                "unsupported protocol",
            ),
            (
                format!("server=bad host\nusername=u\npassword={pw}"),
                "invalid value for server",
            ),
            (
                format!("server=h\nusername=a b\npassword={pw}"),
                "invalid value for username",
            ),
            (format!("https://x/?u=u&p={pw}"), "no server"),
            (
                format!("https://x/?h=h&u=u&tr=7&p={pw}"),
                "invalid value for transport",
            ),
            ("\n# only a comment\n".to_string(), "empty"),
        ] {
            let e = parse_payload(&text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains(pw), "{e}");
        }
    }

    #[test]
    fn oem_url() {
        let p = parse(
            "https://oem.zoiper.com/qr.php?provider_id=abc123&u=1001&h=sip.example.com:5070&p=pa%20ss%26w&o=proxy.example.com&a=auth1001&tr=1&t=tok",
        );
        let pl = &p.payload;
        assert_eq!((pl.host.as_str(), pl.port), ("sip.example.com", Some(5070)));
        assert_eq!(pl.user, "1001");
        assert_eq!(pl.password.as_ref().unwrap().expose(), "pa ss&w");
        assert_eq!(pl.outbound_proxy.as_deref(), Some("sip:proxy.example.com"));
        assert_eq!(pl.auth_user.as_deref(), Some("auth1001"));
        assert_eq!(pl.transport, Transport::Tcp);
        let all = p.warnings.join("\n");
        assert!(
            all.contains("\"provider_id\"") && all.contains("\"t\""),
            "{all}"
        );
        assert!(!all.contains("abc123") && !all.contains("tok"), "{all}");
        // Transport names and 0/2, a bare query.
        assert_eq!(parse("?h=h&u=u&tr=2").payload.transport, Transport::Tls);
        assert_eq!(parse("?h=h&u=u&tr=0").payload.transport, Transport::Udp);
        assert_eq!(
            parse("zoiper://x?h=h&u=u&tr=wss").payload.transport,
            Transport::Wss
        );
        // An auth user equal to the user is not repeated.
        assert_eq!(parse("?h=h&u=u&a=u").payload.auth_user, None);
    }

    #[test]
    fn hosts_and_ports() {
        assert_eq!(
            split_host_port("[::1]:5060"),
            Some(("[::1]".into(), Some(5060)))
        );
        assert_eq!(split_host_port("::1"), Some(("[::1]".into(), None)));
        assert_eq!(
            split_host_port("Example.COM"),
            Some(("example.com".into(), None))
        );
        assert_eq!(
            split_host_port("1.2.3.4:1"),
            Some(("1.2.3.4".into(), Some(1)))
        );
        for bad in [
            "", "h:", "h:0", "h:65536", "[::1", "[zz]:5", "a..b", "a b", "[::1]x",
        ] {
            assert_eq!(split_host_port(bad), None, "{bad}");
        }
        let p = parse("server=sip:[::1]:5070\nusername=u\n").payload;
        assert_eq!(
            p.to_account(None).registrar.as_deref(),
            Some("sip:[::1]:5070")
        );
        assert_eq!(p.to_account(None).name, "u@[::1]");
        // username=user@host gives the host.
        let p = parse("username=1001@pbx.example.com\n").payload;
        assert_eq!(
            (p.user.as_str(), p.host.as_str()),
            ("1001", "pbx.example.com")
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("100%").as_deref(), Some("100%"));
        assert_eq!(percent_decode("%zz%4").as_deref(), Some("%zz%4"));
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn export_round_trips_through_import() {
        let pw = Secret::new("p;w&=x y");
        for text in [
            "server=pbx.example.com\nport=5080\nusername=1001\ntransport=tcp\nauthuser=a1\nproxy=sip:op.example.com;lr\ndisplayname=Al Ice\n",
            "server=127.0.0.1\nusername=alice\n",
            "server=ws.example.com\nport=5062\nusername=u\ntransport=wss\nwss_port=8089\nwss_path=/ws\n",
            "server=ws.example.com\nusername=u\ntransport=ws\n",
            "server=pbx.example.com\ndomain=example.com\nusername=u\n",
        ] {
            let a = parse(text).payload.to_account(Some("n"));
            let out = a.to_payload(Some(&pw)).unwrap();
            let back = parse(&out);
            assert!(back.warnings.is_empty(), "{:?}", back.warnings);
            assert_eq!(back.payload.to_account(Some("n")), a, "{text}\n{out}");
            assert_eq!(back.payload.password.unwrap(), pw);
            assert!(!a.to_payload(None).unwrap().contains("password"));
        }
        let mut serverless = parse("server=h\nusername=u\n").payload.to_account(None);
        serverless.domain = None;
        serverless.registrar = None;
        assert!(serverless.to_payload(None).is_err());
    }

    #[test]
    fn image_magic() {
        assert_eq!(image_kind(b"\x89PNG\r\n\x1a\nrest"), Some(ImageKind::Png));
        assert_eq!(image_kind(&[0xff, 0xd8, 0xff, 0xe0]), Some(ImageKind::Jpeg));
        assert_eq!(image_kind(b"server=x"), None);
        let e = parse_source(b"\x89PNG\r\n\x1a\ngarbage").unwrap_err();
        assert!(matches!(e, ProvisionError::BadImage(_)), "{e}");
        assert_eq!(
            parse_source(&[0xc3, 0x28]).unwrap_err(),
            ProvisionError::NotText
        );
    }

    /// Draw `text` as a QR code into a greyscale PNG (scale pixels per module).
    fn qr_png(text: &str, scale: u32) -> Vec<u8> {
        let code = qrcode::QrCode::new(text.as_bytes()).unwrap();
        let w = code.width() as u32;
        let colors = code.to_colors();
        let size = (w + 8) * scale;
        let img = image::GrayImage::from_fn(size, size, |x, y| {
            let (mx, my) = (x / scale, y / scale);
            let dark = (4..4 + w).contains(&mx)
                && (4..4 + w).contains(&my)
                && colors[((my - 4) * w + (mx - 4)) as usize] == qrcode::Color::Dark;
            image::Luma([if dark { 0 } else { 255 }])
        });
        let mut out = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn qr_png_decodes_to_the_payload() {
        let text = "server=127.0.0.1\nport=5060\nusername=alice\npassword=alicepw\n";
        let png = qr_png(text, 6);
        assert_eq!(decode_qr_image(&png, ImageKind::Png).unwrap(), text);
        assert_eq!(parse_source(&png).unwrap().payload.user, "alice");
        // A blank image: no QR code.
        let blank = image::GrayImage::from_pixel(64, 64, image::Luma([255]));
        let mut out = Vec::new();
        blank
            .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        assert_eq!(parse_source(&out).unwrap_err(), ProvisionError::NoQrCode);
    }

    #[test]
    fn qr_jpeg_decodes_too() {
        let text = "?h=127.0.0.1&u=bob&p=bobpw&tr=0";
        let png = qr_png(text, 8);
        let img = image::load_from_memory_with_format(&png, image::ImageFormat::Png).unwrap();
        let mut jpeg = Vec::new();
        img.to_luma8()
            .write_to(
                &mut std::io::Cursor::new(&mut jpeg),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        assert_eq!(image_kind(&jpeg), Some(ImageKind::Jpeg));
        let p = parse_source(&jpeg).unwrap().payload;
        assert_eq!((p.user.as_str(), p.host.as_str()), ("bob", "127.0.0.1"));
    }

    #[test]
    fn rendered_qr_reads_back() {
        let text = "server=h.example\nusername=u\n";
        let art = render_qr(text, false).unwrap();
        // Back to modules: each char is two rows.
        let lines: Vec<Vec<char>> = art.lines().map(|l| l.chars().collect()).collect();
        let w = lines[0].len();
        assert!(lines.iter().all(|l| l.len() == w));
        let h = lines.len() * 2;
        let dark = |x: usize, y: usize| match lines[y / 2][x] {
            '█' => true,
            '▀' => y.is_multiple_of(2),
            '▄' => y % 2 == 1,
            _ => false,
        };
        // The quiet zone is light.
        assert!((0..w).all(|x| !dark(x, 0) && !dark(x, 3)));
        let scale = 4;
        let mut prepared =
            rqrr::PreparedImage::prepare_from_bitmap(w * scale, h * scale, |x, y| {
                dark(x / scale, y / scale)
            });
        let grids = prepared.detect_grids();
        assert_eq!(grids.len(), 1);
        assert_eq!(grids[0].decode().unwrap().1, text);
        let ansi = render_qr(text, true).unwrap();
        assert!(ansi.starts_with("\x1b[30;107m") && ansi.contains("\x1b[0m\n"));
    }

    #[test]
    fn multibyte_text_where_a_scheme_would_be() {
        // Found by proptest: slicing 4 bytes into a multibyte character.
        assert!(parse_payload("server=Ⱥ\u{5f774}x\nusername=u").is_err());
        assert_eq!(strip_sip_scheme("Ⱥ\u{5f774}"), "Ⱥ\u{5f774}");
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in ".{0,300}") {
            let _ = parse_payload(&s);
        }

        #[test]
        fn arbitrary_key_values_never_panic(
            pairs in proptest::collection::vec(
                (
                    prop_oneof![
                        prop::sample::select(vec![
                            "server", "port", "username", "password", "transport", "protocol",
                            "wss_port", "wss_path", "domain", "authuser", "displayname", "proxy",
                        ])
                        .prop_map(str::to_string),
                        "[a-z_]{0,12}",
                    ],
                    prop_oneof!["[ -~]{0,30}", "\\PC{0,12}", "[a-z0-9.:\\[\\]]{1,20}"],
                ),
                0..12,
            ),
            sep in prop::sample::select(vec!["\n", ";", "&"]),
        ) {
            let text: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let text = text.join(sep);
            if let Ok(p) = parse_payload(&text) {
                // Whatever parses maps to an account that exports and parses again.
                let a = p.payload.to_account(None);
                if let Ok(out) = a.to_payload(p.payload.password.as_ref()) {
                    let back = parse_payload(&out).unwrap();
                    prop_assert_eq!(back.payload.to_account(None), a);
                }
            }
        }

        #[test]
        fn arbitrary_urls_never_panic(q in "[a-z%&=?0-9:/.\\[\\]]{0,80}") {
            let _ = parse_payload(&format!("https://x/?{q}"));
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_source(&b);
            let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
            png.extend_from_slice(&b);
            let _ = parse_source(&png);
        }
    }
}
