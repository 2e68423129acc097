//! SIP request methods.

use std::fmt;
use std::hash::{Hash, Hasher};

/// A request method; extension methods are kept as `Other`.
#[derive(Debug, Clone)]
pub enum Method {
    /// INVITE (RFC 3261).
    Invite,
    /// ACK (RFC 3261).
    Ack,
    /// BYE (RFC 3261).
    Bye,
    /// CANCEL (RFC 3261).
    Cancel,
    /// OPTIONS (RFC 3261).
    Options,
    /// REGISTER (RFC 3261).
    Register,
    /// INFO (RFC 6086).
    Info,
    /// PRACK (RFC 3262).
    Prack,
    /// UPDATE (RFC 3311).
    Update,
    /// REFER (RFC 3515).
    Refer,
    /// NOTIFY (RFC 6665).
    Notify,
    /// SUBSCRIBE (RFC 6665).
    Subscribe,
    /// MESSAGE (RFC 3428).
    Message,
    /// PUBLISH (RFC 3903).
    Publish,
    /// Any other method token, as written.
    Other(String),
}

const KNOWN: [(Method, &str); 14] = [
    (Method::Invite, "INVITE"),
    (Method::Ack, "ACK"),
    (Method::Bye, "BYE"),
    (Method::Cancel, "CANCEL"),
    (Method::Options, "OPTIONS"),
    (Method::Register, "REGISTER"),
    (Method::Info, "INFO"),
    (Method::Prack, "PRACK"),
    (Method::Update, "UPDATE"),
    (Method::Refer, "REFER"),
    (Method::Notify, "NOTIFY"),
    (Method::Subscribe, "SUBSCRIBE"),
    (Method::Message, "MESSAGE"),
    (Method::Publish, "PUBLISH"),
];

impl Method {
    /// The method token as sent on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Info => "INFO",
            Method::Prack => "PRACK",
            Method::Update => "UPDATE",
            Method::Refer => "REFER",
            Method::Notify => "NOTIFY",
            Method::Subscribe => "SUBSCRIBE",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }

    /// Map a method token to a `Method` (case-sensitive, RFC 3261 §7.1).
    pub fn from_token(s: &str) -> Method {
        KNOWN
            .iter()
            .find(|(_, name)| *name == s)
            .map(|(m, _)| m.clone())
            .unwrap_or_else(|| Method::Other(s.to_string()))
    }
}

impl PartialEq for Method {
    fn eq(&self, other: &Method) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Method {}

impl Hash for Method {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_case_sensitive() {
        assert_eq!(Method::from_token("INVITE"), Method::Invite);
        assert_eq!(Method::from_token("invite"), Method::Other("invite".into()));
        assert_ne!(Method::from_token("invite"), Method::Invite);
        assert_eq!(Method::Other("BYE".into()), Method::Bye);
        for (m, s) in KNOWN.iter() {
            assert_eq!(m.as_str(), *s);
            assert_eq!(&Method::from_token(s), m);
            assert_eq!(m.to_string(), *s);
        }
    }
}
