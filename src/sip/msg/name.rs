//! Header names: case-insensitive, compact forms expanded (RFC 3261 §7.3.3).

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};

/// A header name, kept in its canonical long form when it is a known header.
#[derive(Debug, Clone)]
pub struct HeaderName(Cow<'static, str>);

macro_rules! known_headers {
    ($($id:ident = $text:literal),* $(,)?) => {
        impl HeaderName {
            $(
                #[doc = concat!("The `", $text, "` header.")]
                pub const $id: HeaderName = HeaderName(Cow::Borrowed($text));
            )*
        }
        const KNOWN: &[&str] = &[$($text),*];
    };
}

known_headers! {
    VIA = "Via",
    FROM = "From",
    TO = "To",
    CALL_ID = "Call-ID",
    CSEQ = "CSeq",
    CONTACT = "Contact",
    MAX_FORWARDS = "Max-Forwards",
    CONTENT_TYPE = "Content-Type",
    CONTENT_LENGTH = "Content-Length",
    ROUTE = "Route",
    RECORD_ROUTE = "Record-Route",
    EXPIRES = "Expires",
    MIN_EXPIRES = "Min-Expires",
    ALLOW = "Allow",
    ACCEPT = "Accept",
    SUPPORTED = "Supported",
    REQUIRE = "Require",
    PROXY_REQUIRE = "Proxy-Require",
    UNSUPPORTED = "Unsupported",
    USER_AGENT = "User-Agent",
    SERVER = "Server",
    WWW_AUTHENTICATE = "WWW-Authenticate",
    PROXY_AUTHENTICATE = "Proxy-Authenticate",
    AUTHORIZATION = "Authorization",
    PROXY_AUTHORIZATION = "Proxy-Authorization",
    AUTHENTICATION_INFO = "Authentication-Info",
    REASON = "Reason",
    EVENT = "Event",
    SUBSCRIPTION_STATE = "Subscription-State",
    REFER_TO = "Refer-To",
    REFERRED_BY = "Referred-By",
    RSEQ = "RSeq",
    RACK = "RAck",
    SESSION_EXPIRES = "Session-Expires",
    MIN_SE = "Min-SE",
    P_ASSERTED_IDENTITY = "P-Asserted-Identity",
    P_PREFERRED_IDENTITY = "P-Preferred-Identity",
    CONTENT_DISPOSITION = "Content-Disposition",
    RETRY_AFTER = "Retry-After",
    WARNING = "Warning",
    ORGANIZATION = "Organization",
    ALLOW_EVENTS = "Allow-Events",
    ACCEPT_ENCODING = "Accept-Encoding",
    ACCEPT_LANGUAGE = "Accept-Language",
    CONTENT_ENCODING = "Content-Encoding",
    CONTENT_LANGUAGE = "Content-Language",
    TIMESTAMP = "Timestamp",
    REPLACES = "Replaces",
    SUBJECT = "Subject",
    DATE = "Date",
    PRIORITY = "Priority",
    ACCEPT_CONTACT = "Accept-Contact",
    REJECT_CONTACT = "Reject-Contact",
    REQUEST_DISPOSITION = "Request-Disposition",
    IDENTITY = "Identity",
    PATH = "Path",
    SERVICE_ROUTE = "Service-Route",
    PRIVACY = "Privacy",
    MIME_VERSION = "MIME-Version",
    IN_REPLY_TO = "In-Reply-To",
    REPLY_TO = "Reply-To",
    ALERT_INFO = "Alert-Info",
    CALL_INFO = "Call-Info",
    ERROR_INFO = "Error-Info",
}

/// Compact forms (RFC 3261 §7.3.3 and later RFCs).
const COMPACT: &[(u8, HeaderName)] = &[
    (b'v', HeaderName::VIA),
    (b'f', HeaderName::FROM),
    (b't', HeaderName::TO),
    (b'i', HeaderName::CALL_ID),
    (b'm', HeaderName::CONTACT),
    (b'l', HeaderName::CONTENT_LENGTH),
    (b'c', HeaderName::CONTENT_TYPE),
    (b'k', HeaderName::SUPPORTED),
    (b's', HeaderName::SUBJECT),
    (b'e', HeaderName::CONTENT_ENCODING),
    (b'o', HeaderName::EVENT),
    (b'r', HeaderName::REFER_TO),
    (b'u', HeaderName::ALLOW_EVENTS),
    (b'a', HeaderName::ACCEPT_CONTACT),
    (b'b', HeaderName::REFERRED_BY),
    (b'j', HeaderName::REJECT_CONTACT),
    (b'd', HeaderName::REQUEST_DISPOSITION),
    (b'x', HeaderName::SESSION_EXPIRES),
    (b'y', HeaderName::IDENTITY),
];

impl HeaderName {
    /// A header name from text: compact forms and known names become the canonical long
    /// form ("v" -> "Via", "call-id" -> "Call-ID"); unknown names are kept as given.
    pub fn new(name: &str) -> HeaderName {
        if let [b] = name.as_bytes() {
            let b = b.to_ascii_lowercase();
            if let Some((_, h)) = COMPACT.iter().find(|(c, _)| *c == b) {
                return h.clone();
            }
        }
        match KNOWN.iter().find(|k| k.eq_ignore_ascii_case(name)) {
            Some(k) => HeaderName(Cow::Borrowed(k)),
            None => HeaderName(Cow::Owned(name.to_string())),
        }
    }

    /// The canonical long form (or the name as given when unknown).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &HeaderName) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl Eq for HeaderName {}

impl Hash for HeaderName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for b in self.0.bytes() {
            state.write_u8(b.to_ascii_lowercase());
        }
        state.write_u8(0xff);
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for HeaderName {
    fn from(s: &str) -> HeaderName {
        HeaderName::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn compact_and_case() {
        assert_eq!(HeaderName::new("v").as_str(), "Via");
        assert_eq!(HeaderName::new("I").as_str(), "Call-ID");
        assert_eq!(HeaderName::new("call-id").as_str(), "Call-ID");
        assert_eq!(HeaderName::new("CSEQ").as_str(), "CSeq");
        assert_eq!(
            HeaderName::new("www-authenticate").as_str(),
            "WWW-Authenticate"
        );
        assert_eq!(HeaderName::new("X-Foo").as_str(), "X-Foo");
        assert_eq!(HeaderName::new("C%6Fntact").as_str(), "C%6Fntact");
        assert_eq!(HeaderName::new("x-foo"), HeaderName::new("X-FOO"));
        assert_eq!(HeaderName::new("l"), HeaderName::CONTENT_LENGTH);
    }

    #[test]
    fn known_names_are_canonical() {
        for k in KNOWN {
            assert_eq!(HeaderName::new(&k.to_lowercase()).as_str(), *k);
            assert_eq!(HeaderName::new(&k.to_uppercase()).as_str(), *k);
        }
        for (c, h) in COMPACT {
            assert_eq!(HeaderName::new(&(*c as char).to_string()), *h);
            assert_eq!(
                HeaderName::new(&(*c as char).to_ascii_uppercase().to_string()),
                *h
            );
        }
        assert_eq!(HeaderName::RSEQ.as_str(), "RSeq");
        assert_eq!(HeaderName::new("rack").as_str(), "RAck");
        assert_eq!(HeaderName::new("min-se").as_str(), "Min-SE");
    }

    #[test]
    fn hash_is_case_insensitive() {
        let mut set = HashSet::new();
        set.insert(HeaderName::new("X-Foo"));
        assert!(set.contains(&HeaderName::new("x-FOO")));
        assert!(set.contains(&HeaderName::new("x-foo")));
    }
}
