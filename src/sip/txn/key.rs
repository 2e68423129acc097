//! Transaction keys and how messages map to them (RFC 3261 §17.1.3, §17.2.3).

use std::fmt;
use std::hash::{Hash, Hasher};

use crate::sip::msg::{Method, Request, Response};

use super::MAGIC_COOKIE;

/// Identifies a transaction: top Via branch + sent-by + method (§17.1.3/§17.2.3).
///
/// On the server side an ACK maps to the INVITE's key (it belongs to the INVITE
/// transaction) while a CANCEL has its own key (method CANCEL); see [`TxnKey::cancel_target`].
/// `sent_by` is lowercased; the branch is compared exactly.
#[derive(Debug, Clone, Eq)]
pub struct TxnKey {
    /// The top Via's branch parameter (for RFC 2543 peers without one: a synthetic value).
    pub branch: String,
    /// The top Via's sent-by ("host:port" as written, lowercased).
    pub sent_by: String,
    /// The transaction's method (never ACK on the server side).
    pub method: Method,
}

impl PartialEq for TxnKey {
    fn eq(&self, other: &Self) -> bool {
        self.branch == other.branch
            && self.sent_by == other.sent_by
            && self.method.as_str() == other.method.as_str()
    }
}

impl Hash for TxnKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.branch.hash(state);
        self.sent_by.hash(state);
        self.method.as_str().hash(state);
    }
}

impl fmt::Display for TxnKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.method, self.sent_by, self.branch)
    }
}

impl TxnKey {
    /// The key of a client transaction for an outgoing request (top Via branch + sent-by + method).
    /// None when the request has no readable top Via or no branch.
    pub fn for_client_request(req: &Request) -> Option<TxnKey> {
        let via = req.headers.top_via().ok()?;
        let branch = via.branch()?.to_string();
        if branch.is_empty() {
            return None;
        }
        Some(TxnKey {
            branch,
            sent_by: via.sent_by().to_ascii_lowercase(),
            method: req.method.clone(),
        })
    }

    /// The client transaction key an incoming response matches (§17.1.3): top Via branch and
    /// sent-by, and the CSeq method.
    pub fn for_response(resp: &Response) -> Result<TxnKey, &'static str> {
        let via = resp
            .headers
            .top_via()
            .map_err(|_| "response without a readable Via")?;
        let branch = via.branch().ok_or("response Via without a branch")?;
        let cseq = resp
            .headers
            .cseq()
            .map_err(|_| "response without a readable CSeq")?;
        Ok(TxnKey {
            branch: branch.to_string(),
            sent_by: via.sent_by().to_ascii_lowercase(),
            method: cseq.method,
        })
    }

    /// The server transaction key an incoming request matches (§17.2.3): top Via branch,
    /// sent-by and method, ACK mapped to INVITE.
    ///
    /// For a branch without the RFC 3261 magic cookie (an RFC 2543 peer) a synthetic branch is
    /// built from Request-URI, Call-ID, From tag and CSeq number — a simplification of
    /// §17.2.3's backward-compatible rules that still matches retransmissions, the ACK for a
    /// non-2xx and a CANCEL to their INVITE.
    pub fn for_server_request(req: &Request) -> Result<TxnKey, &'static str> {
        let via = req
            .headers
            .top_via()
            .map_err(|_| "request without a readable Via")?;
        let method = match req.method {
            Method::Ack => Method::Invite,
            ref m => m.clone(),
        };
        let sent_by = via.sent_by().to_ascii_lowercase();
        let branch = match via.branch() {
            Some(b) if b.starts_with(MAGIC_COOKIE) => b.to_string(),
            _ => {
                let call_id = req
                    .headers
                    .call_id()
                    .map_err(|_| "request without a Call-ID")?;
                let from = req
                    .headers
                    .from()
                    .map_err(|_| "request without a readable From")?;
                let cseq = req
                    .headers
                    .cseq()
                    .map_err(|_| "request without a readable CSeq")?;
                format!(
                    "rfc2543;{};{};{};{}",
                    req.uri,
                    call_id,
                    from.tag().unwrap_or(""),
                    cseq.seq
                )
            }
        };
        Ok(TxnKey {
            branch,
            sent_by,
            method,
        })
    }

    /// For a CANCEL's key, the key of the INVITE server transaction it cancels (§9.2).
    pub fn cancel_target(&self) -> TxnKey {
        TxnKey {
            branch: self.branch.clone(),
            sent_by: self.sent_by.clone(),
            method: Method::Invite,
        }
    }

    /// Whether this is the key of an INVITE transaction.
    pub fn is_invite(&self) -> bool {
        matches!(self.method, Method::Invite)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::msg::{HeaderName, Response};

    fn req(method: Method, via: &str) -> Request {
        let mut r = Request::new(method.clone(), "sip:b@h".parse().expect("uri"));
        r.headers.push(HeaderName::VIA, via);
        r.headers.push(HeaderName::FROM, "<sip:a@h>;tag=f1");
        r.headers.push(HeaderName::TO, "<sip:b@h>");
        r.headers.push(HeaderName::CALL_ID, "c");
        r.headers.push(HeaderName::CSEQ, format!("4 {method}"));
        r
    }

    #[test]
    fn server_keys_map_ack_to_invite_and_keep_cancel_apart() {
        let via =
            "SIP/2.0/UDP Host.Example.COM:5070;branch=z9hG4bKx, SIP/2.0/UDP p;branch=z9hG4bKy";
        let inv = TxnKey::for_server_request(&req(Method::Invite, via)).expect("key");
        let ack = TxnKey::for_server_request(&req(Method::Ack, via)).expect("key");
        let cancel = TxnKey::for_server_request(&req(Method::Cancel, via)).expect("key");
        assert_eq!(inv.branch, "z9hG4bKx");
        assert_eq!(inv.sent_by, "host.example.com:5070");
        assert_eq!(inv, ack);
        assert_ne!(inv, cancel);
        assert_eq!(cancel.cancel_target(), inv);
        assert!(inv.is_invite() && !cancel.is_invite());
    }

    #[test]
    fn rfc2543_key_without_cookie() {
        let inv = TxnKey::for_server_request(&req(Method::Invite, "SIP/2.0/UDP h")).expect("key");
        let ack =
            TxnKey::for_server_request(&req(Method::Ack, "SIP/2.0/UDP h;branch=1")).expect("key");
        assert!(inv.branch.starts_with("rfc2543;"));
        assert_eq!(inv, ack);
        let mut other = req(Method::Invite, "SIP/2.0/UDP h");
        other.headers.set(HeaderName::CSEQ, "5 INVITE");
        assert_ne!(TxnKey::for_server_request(&other).expect("key"), inv);
    }

    #[test]
    fn client_and_response_keys_agree() {
        let r = req(Method::Bye, "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKb");
        let client = TxnKey::for_client_request(&r).expect("key");
        let resp = super::super::response_for(&r, 200);
        assert_eq!(TxnKey::for_response(&resp), Ok(client));
        let mut bare = Response::new(200, "OK");
        assert!(TxnKey::for_response(&bare).is_err());
        bare.headers.push(HeaderName::VIA, "SIP/2.0/UDP h");
        bare.headers.push(HeaderName::CSEQ, "1 BYE");
        assert!(TxnKey::for_response(&bare).is_err(), "no branch");
        assert!(TxnKey::for_client_request(&req(Method::Bye, "SIP/2.0/UDP h")).is_none());
    }
}
