//! HTTP digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760), sans-IO.
//!
//! - [`parse_challenges`] reads one WWW-Authenticate / Proxy-Authenticate value (several
//!   challenges per value are allowed, any scheme; only `Digest` ones are returned).
//! - [`Authenticator`] (one per account or dialog) remembers the chosen challenge per
//!   realm, keeps the nonce count, makes cnonces from the RNG it is given and writes the
//!   Authorization / Proxy-Authorization values for a request.
//!
//! Choice rules: per realm (and per header kind), the strongest supported algorithm wins
//! (SHA-512-256 > SHA-256 > MD5; `-sess` ranks like its base; on a tie the first listed);
//! `qop=auth` is preferred, `auth-int` is used only when it is the only one offered (the
//! real body is hashed); no qop = RFC 2069 compatibility.
//!
//! Wrong password: after we answered a realm's challenge, a new challenge for that realm
//! that is not `stale=true` means the credentials were refused. With the SAME nonce it is
//! [`AuthError::WrongPassword`] at once; with a fresh nonce (some servers rotate nonces
//! without `stale`) we try once more, and the second refusal is `WrongPassword`. So a
//! caller never loops.
//!
//! The password lives in [`Secret`], whose `Debug` and `Display` never show it; no error
//! carries it.

use std::fmt;

use md5::Md5;
use rand::Rng;
use sha2::{Digest, Sha256, Sha512_256};

use crate::sip::msg::{HeaderName, Method, Request, Response};

/// A password: `Debug` and `Display` print `***`, never the value.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wrap a password.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The password itself, for hashing only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the password is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret::new(s)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret::new(s)
    }
}

/// A user name and password for digest authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The authentication user name (`username=` in the answer).
    pub username: String,
    /// The password.
    pub password: Secret,
}

impl Credentials {
    /// Credentials from a user name and a password.
    pub fn new(username: impl Into<String>, password: impl Into<Secret>) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }
}

/// Digest hash algorithms (RFC 7616 §3.3, RFC 8760).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5` (also the default when `algorithm` is absent).
    Md5,
    /// `MD5-sess`.
    Md5Sess,
    /// `SHA-256`.
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
    /// `SHA-512-256`.
    Sha512_256,
    /// `SHA-512-256-sess`.
    Sha512_256Sess,
}

impl Algorithm {
    /// Parse the `algorithm` token (case-insensitive); None when unsupported.
    pub fn from_token(s: &str) -> Option<Algorithm> {
        const ALL: [Algorithm; 6] = [
            Algorithm::Md5,
            Algorithm::Md5Sess,
            Algorithm::Sha256,
            Algorithm::Sha256Sess,
            Algorithm::Sha512_256,
            Algorithm::Sha512_256Sess,
        ];
        ALL.into_iter().find(|a| a.as_str().eq_ignore_ascii_case(s))
    }

    /// The token as written in headers.
    pub fn as_str(&self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
            Algorithm::Sha512_256 => "SHA-512-256",
            Algorithm::Sha512_256Sess => "SHA-512-256-sess",
        }
    }

    /// Whether this is a `-sess` variant (HA1 includes nonce and cnonce).
    pub fn is_sess(&self) -> bool {
        matches!(
            self,
            Algorithm::Md5Sess | Algorithm::Sha256Sess | Algorithm::Sha512_256Sess
        )
    }

    /// Rank for choosing among challenges: higher is stronger.
    pub fn strength(&self) -> u8 {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => 1,
            Algorithm::Sha256 | Algorithm::Sha256Sess => 2,
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => 3,
        }
    }

    /// The hash of `data` as lowercase hex.
    pub fn hash_hex(&self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => hex(&Md5::digest(data)),
            Algorithm::Sha256 | Algorithm::Sha256Sess => hex(&Sha256::digest(data)),
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => hex(&Sha512_256::digest(data)),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 15)] as char);
    }
    s
}

/// Quality of protection (RFC 7616 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Qop {
    /// `auth`: method and URI are protected.
    Auth,
    /// `auth-int`: the body is protected too.
    AuthInt,
}

impl Qop {
    /// The token as written in headers.
    pub fn as_str(&self) -> &'static str {
        match self {
            Qop::Auth => "auth",
            Qop::AuthInt => "auth-int",
        }
    }
}

/// One parsed `Digest` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// From Proxy-Authenticate (answer in Proxy-Authorization) rather than WWW-Authenticate.
    pub proxy: bool,
    /// `realm` (unquoted).
    pub realm: String,
    /// `nonce` (unquoted).
    pub nonce: String,
    /// `opaque`, echoed back when present.
    pub opaque: Option<String>,
    /// `stale=true`: the previous answer was good but its nonce is old.
    pub stale: bool,
    /// `algorithm`, or `None` when the token is not one we support.
    pub algorithm: Option<Algorithm>,
    /// The algorithm token as written (for messages about unsupported ones).
    pub algorithm_token: Option<String>,
    /// The qop values offered that we know, in order; empty with `qop_present` false = RFC 2069.
    pub qop: Vec<Qop>,
    /// Whether a `qop` parameter was present at all.
    pub qop_present: bool,
}

impl Challenge {
    /// Whether we can answer this challenge (known algorithm; a usable qop when qop was offered).
    pub fn is_supported(&self) -> bool {
        self.algorithm.is_some() && (!self.qop_present || !self.qop.is_empty())
    }

    /// The qop we answer with: `auth` if offered, else `auth-int` if offered, else none.
    pub fn chosen_qop(&self) -> Option<Qop> {
        if self.qop.contains(&Qop::Auth) {
            Some(Qop::Auth)
        } else if self.qop.contains(&Qop::AuthInt) {
            Some(Qop::AuthInt)
        } else {
            None
        }
    }
}

/// Why a challenge value could not be read, or why authentication cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The header text is malformed (what is wrong, never the text).
    #[error("malformed authentication header: {0}")]
    Malformed(&'static str),
    /// The server refused our credentials (a second challenge after we answered).
    #[error("wrong password (credentials refused for realm \"{realm}\")")]
    WrongPassword {
        /// The realm that refused them.
        realm: String,
    },
    /// A 401/407 without any Digest challenge we can answer.
    #[error("no supported authentication challenge ({0})")]
    Unsupported(String),
}

/// A raw challenge: scheme and `name=value` parameters (values unquoted).
type RawChallenge = (String, Vec<(String, String)>);

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

/// Split a WWW-Authenticate value into challenges (scheme + params). A token followed by
/// `=` is a parameter; any other token starts a new challenge. token68 credentials of other
/// schemes are read as a parameter without a name and ignored.
fn parse_raw(value: &str) -> Result<Vec<RawChallenge>, AuthError> {
    let chars: Vec<char> = value.chars().collect();
    let mut i = 0;
    let mut out: Vec<RawChallenge> = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && matches!(chars[*i], ' ' | '\t' | '\r' | '\n') {
            *i += 1;
        }
    };
    loop {
        while i < chars.len() && matches!(chars[i], ' ' | '\t' | '\r' | '\n' | ',') {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        let start = i;
        while i < chars.len() && is_token_char(chars[i]) {
            i += 1;
        }
        if i == start {
            return Err(AuthError::Malformed("expected a token"));
        }
        let token: String = chars[start..i].iter().collect();
        skip_ws(&mut i);
        if i < chars.len() && chars[i] == '=' {
            i += 1;
            skip_ws(&mut i);
            let mut v = String::new();
            if i < chars.len() && chars[i] == '"' {
                i += 1;
                let mut closed = false;
                while i < chars.len() {
                    match chars[i] {
                        '\\' if i + 1 < chars.len() => {
                            v.push(chars[i + 1]);
                            i += 2;
                        }
                        '"' => {
                            i += 1;
                            closed = true;
                            break;
                        }
                        c => {
                            v.push(c);
                            i += 1;
                        }
                    }
                }
                if !closed {
                    return Err(AuthError::Malformed("unterminated quoted string"));
                }
            } else {
                while i < chars.len() && !matches!(chars[i], ',' | ' ' | '\t' | '"') {
                    v.push(chars[i]);
                    i += 1;
                }
            }
            match out.last_mut() {
                Some((_, params)) => params.push((token.to_ascii_lowercase(), v)),
                None => return Err(AuthError::Malformed("parameter before a scheme")),
            }
        } else {
            out.push((token, Vec::new()));
        }
    }
    Ok(out)
}

/// Parse one WWW-Authenticate or Proxy-Authenticate value and return its `Digest`
/// challenges (other schemes are skipped). `proxy` says which header it came from.
/// A Digest challenge without realm or nonce is an error.
pub fn parse_challenges(value: &str, proxy: bool) -> Result<Vec<Challenge>, AuthError> {
    let mut out = Vec::new();
    for (scheme, params) in parse_raw(value)? {
        if !scheme.eq_ignore_ascii_case("digest") {
            continue;
        }
        let get = |name: &str| {
            params
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let realm = get("realm").ok_or(AuthError::Malformed("Digest without realm"))?;
        let nonce = get("nonce").ok_or(AuthError::Malformed("Digest without nonce"))?;
        let algorithm_token = get("algorithm").map(str::to_string);
        let algorithm = match &algorithm_token {
            None => Some(Algorithm::Md5),
            Some(t) => Algorithm::from_token(t),
        };
        let qop_raw = get("qop");
        let qop = qop_raw
            .map(|q| {
                q.split(',')
                    .filter_map(|t| match t.trim().to_ascii_lowercase().as_str() {
                        "auth" => Some(Qop::Auth),
                        "auth-int" => Some(Qop::AuthInt),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Challenge {
            proxy,
            realm: realm.to_string(),
            nonce: nonce.to_string(),
            opaque: get("opaque").map(str::to_string),
            stale: get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
            algorithm,
            algorithm_token,
            qop,
            qop_present: qop_raw.is_some(),
        });
    }
    Ok(out)
}

/// Every Digest challenge of a response (WWW-Authenticate and Proxy-Authenticate lines),
/// skipping lines that do not parse.
pub fn response_challenges(resp: &Response) -> Vec<Challenge> {
    let mut out = Vec::new();
    for (name, proxy) in [
        (HeaderName::WWW_AUTHENTICATE, false),
        (HeaderName::PROXY_AUTHENTICATE, true),
    ] {
        for v in resp.headers.get_all(&name) {
            if let Ok(cs) = parse_challenges(v, proxy) {
                out.extend(cs);
            }
        }
    }
    out
}

/// Inputs of one digest computation (RFC 7616 §3.4.1).
#[derive(Debug, Clone, Copy)]
pub struct DigestInput<'a> {
    /// Hash algorithm.
    pub algorithm: Algorithm,
    /// User name.
    pub username: &'a str,
    /// Realm.
    pub realm: &'a str,
    /// Password.
    pub password: &'a Secret,
    /// Request method.
    pub method: &'a str,
    /// Digest URI (the Request-URI as printed).
    pub uri: &'a str,
    /// Server nonce.
    pub nonce: &'a str,
    /// Client nonce (used with qop and with `-sess`).
    pub cnonce: &'a str,
    /// Nonce count.
    pub nc: u32,
    /// qop, or None for RFC 2069 mode.
    pub qop: Option<Qop>,
    /// Request body (hashed for auth-int).
    pub body: &'a [u8],
}

/// The `response=` value of a digest answer (lowercase hex).
pub fn digest_response(d: &DigestInput<'_>) -> String {
    let h = |s: &str| d.algorithm.hash_hex(s.as_bytes());
    let mut ha1 = h(&format!(
        "{}:{}:{}",
        d.username,
        d.realm,
        d.password.expose()
    ));
    if d.algorithm.is_sess() {
        ha1 = h(&format!("{ha1}:{}:{}", d.nonce, d.cnonce));
    }
    let ha2 = match d.qop {
        Some(Qop::AuthInt) => h(&format!(
            "{}:{}:{}",
            d.method,
            d.uri,
            d.algorithm.hash_hex(d.body)
        )),
        _ => h(&format!("{}:{}", d.method, d.uri)),
    };
    match d.qop {
        Some(q) => h(&format!(
            "{ha1}:{}:{:08x}:{}:{}:{ha2}",
            d.nonce,
            d.nc,
            d.cnonce,
            q.as_str()
        )),
        None => h(&format!("{ha1}:{}:{ha2}", d.nonce)),
    }
}

fn push_quoted(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
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

#[derive(Debug, Clone)]
struct RealmState {
    challenge: Challenge,
    algorithm: Algorithm,
    nc: u32,
    /// We sent an answer for this realm and have not seen a non-challenge response since.
    answered: bool,
    /// Refusals with a fresh nonce since the last success.
    refusals: u32,
}

/// Digest client state for one account or dialog: the cached challenge per realm, nonce
/// counts and the wrong-password rule. See the module docs for the rules.
#[derive(Debug, Clone)]
pub struct Authenticator {
    credentials: Credentials,
    realms: Vec<RealmState>,
}

impl Authenticator {
    /// An authenticator with no challenge cached yet.
    pub fn new(credentials: Credentials) -> Authenticator {
        Authenticator {
            credentials,
            realms: Vec::new(),
        }
    }

    /// The user name used in answers.
    pub fn username(&self) -> &str {
        &self.credentials.username
    }

    /// Whether a challenge is cached (requests will carry credentials).
    pub fn has_challenges(&self) -> bool {
        !self.realms.is_empty()
    }

    /// Forget every cached challenge (e.g. after the account's password changed).
    pub fn clear(&mut self) {
        self.realms.clear();
    }

    /// Feed a final response to a request we sent. Returns `Ok(true)` for a 401/407 whose
    /// challenges we took (resend the request with [`Authenticator::authorize`]),
    /// `Ok(false)` for any other response (any final non-challenge clears the wrong-password
    /// bookkeeping), or an error: wrong password, or nothing we can answer.
    pub fn handle_response(&mut self, resp: &Response) -> Result<bool, AuthError> {
        if resp.code != 401 && resp.code != 407 {
            if resp.code >= 200 {
                for r in &mut self.realms {
                    r.answered = false;
                    r.refusals = 0;
                }
            }
            return Ok(false);
        }
        let all = response_challenges(resp);
        // Strongest supported challenge per (proxy, realm), first listed on a tie.
        let mut best: Vec<(Challenge, Algorithm)> = Vec::new();
        for c in all.iter().filter(|c| c.is_supported()) {
            let Some(alg) = c.algorithm else { continue };
            match best
                .iter_mut()
                .find(|(b, _)| b.proxy == c.proxy && b.realm == c.realm)
            {
                Some(slot) if alg.strength() > slot.1.strength() => *slot = (c.clone(), alg),
                Some(_) => {}
                None => best.push((c.clone(), alg)),
            }
        }
        if best.is_empty() {
            let what = match all.first() {
                Some(c) if c.algorithm.is_none() => {
                    format!("algorithm {}", c.algorithm_token.as_deref().unwrap_or("?"))
                }
                Some(_) => "qop".to_string(),
                None => "no Digest challenge".to_string(),
            };
            return Err(AuthError::Unsupported(what));
        }
        for (c, alg) in best {
            let slot = self
                .realms
                .iter_mut()
                .find(|r| r.challenge.proxy == c.proxy && r.challenge.realm == c.realm);
            match slot {
                Some(r) => {
                    if r.answered && !c.stale {
                        if r.challenge.nonce == c.nonce || r.refusals >= 1 {
                            return Err(AuthError::WrongPassword {
                                realm: c.realm.clone(),
                            });
                        }
                        r.refusals += 1;
                    }
                    let same_nonce = r.challenge.nonce == c.nonce;
                    r.challenge = c;
                    r.algorithm = alg;
                    r.answered = false;
                    if !same_nonce {
                        r.nc = 0;
                    }
                }
                None => self.realms.push(RealmState {
                    challenge: c,
                    algorithm: alg,
                    nc: 0,
                    answered: false,
                    refusals: 0,
                }),
            }
        }
        Ok(true)
    }

    /// The Authorization / Proxy-Authorization headers for a request, one per cached realm
    /// (nonce count incremented, fresh cnonce from `rng`). Empty when nothing is cached.
    pub fn authorize<R: Rng + ?Sized>(
        &mut self,
        rng: &mut R,
        method: &Method,
        uri: &str,
        body: &[u8],
    ) -> Vec<(HeaderName, String)> {
        let mut out = Vec::new();
        for r in &mut self.realms {
            let c = &r.challenge;
            let qop = c.chosen_qop();
            r.nc = r.nc.wrapping_add(1).max(1);
            r.answered = true;
            let cnonce = cnonce(rng);
            let response = digest_response(&DigestInput {
                algorithm: r.algorithm,
                username: &self.credentials.username,
                realm: &c.realm,
                password: &self.credentials.password,
                method: method.as_str(),
                uri,
                nonce: &c.nonce,
                cnonce: &cnonce,
                nc: r.nc,
                qop,
                body,
            });
            let mut v = String::from("Digest ");
            push_quoted(&mut v, "username", &self.credentials.username);
            v.push_str(", ");
            push_quoted(&mut v, "realm", &c.realm);
            v.push_str(", ");
            push_quoted(&mut v, "nonce", &c.nonce);
            v.push_str(", ");
            push_quoted(&mut v, "uri", uri);
            v.push_str(", ");
            push_quoted(&mut v, "response", &response);
            v.push_str(", algorithm=");
            v.push_str(r.algorithm.as_str());
            if qop.is_some() || r.algorithm.is_sess() {
                v.push_str(", ");
                push_quoted(&mut v, "cnonce", &cnonce);
            }
            if let Some(o) = &c.opaque {
                v.push_str(", ");
                push_quoted(&mut v, "opaque", o);
            }
            if let Some(q) = qop {
                v.push_str(&format!(", qop={}, nc={:08x}", q.as_str(), r.nc));
            }
            let name = if c.proxy {
                HeaderName::PROXY_AUTHORIZATION
            } else {
                HeaderName::AUTHORIZATION
            };
            out.push((name, v));
        }
        out
    }

    /// Replace the request's Authorization / Proxy-Authorization headers with fresh answers
    /// for its method, Request-URI and body.
    pub fn authorize_request<R: Rng + ?Sized>(&mut self, rng: &mut R, req: &mut Request) {
        req.headers.remove(&HeaderName::AUTHORIZATION);
        req.headers.remove(&HeaderName::PROXY_AUTHORIZATION);
        let uri = req.uri.to_string();
        for (name, value) in self.authorize(rng, &req.method, &uri, &req.body) {
            req.headers.push(name, value);
        }
    }
}

/// A client nonce: 16 lowercase hex characters.
fn cnonce<R: Rng + ?Sized>(rng: &mut R) -> String {
    let v: u64 = rng.random();
    format!("{v:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_never_printed() {
        let c = Credentials::new("alice", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.password.to_string(), "***");
        assert_eq!(c.password.expose(), "hunter2");
    }

    #[test]
    fn raw_parse_several_schemes() {
        let r =
            parse_raw(r#"Basic realm="x", Digest realm="a\"b", nonce=abc , qop="auth,auth-int""#)
                .unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].1[0], ("realm".into(), "a\"b".into()));
        assert_eq!(r[1].1[1], ("nonce".into(), "abc".into()));
        assert!(parse_raw("realm=x").is_err());
        assert!(parse_raw("Digest realm=\"x").is_err());
        assert_eq!(parse_raw("Negotiate abc==").unwrap().len(), 1);
    }

    #[test]
    fn algorithm_tokens() {
        assert_eq!(Algorithm::from_token("sha-256"), Some(Algorithm::Sha256));
        assert_eq!(
            Algorithm::from_token("SHA-512-256-SESS"),
            Some(Algorithm::Sha512_256Sess)
        );
        assert_eq!(Algorithm::from_token("sha256"), None);
    }
}
