//! Building responses from a request's headers (§8.2.6.2), for the transaction layer's own
//! 100 Trying and stateless 400s, and for the TU.

use crate::sip::msg::{default_reason, HeaderName, Headers, Request, Response};

/// A response to `req` with `code` and the default reason phrase: Via (all), From, To,
/// Call-ID, CSeq copied (Timestamp too for 100), no To tag added, empty body.
pub fn response_for(req: &Request, code: u16) -> Response {
    response_from_headers(&req.headers, code, default_reason(code))
}

/// Like [`response_for`] but from bare request headers and with a given reason phrase.
pub(crate) fn response_from_headers(headers: &Headers, code: u16, reason: &str) -> Response {
    let mut resp = Response::new(code, reason);
    let names = [
        HeaderName::VIA,
        HeaderName::FROM,
        HeaderName::TO,
        HeaderName::CALL_ID,
        HeaderName::CSEQ,
    ];
    for name in names.iter() {
        for value in headers.get_all(name) {
            resp.headers.push(name.clone(), value);
        }
    }
    if code == 100 {
        for value in headers.get_all(&HeaderName::TIMESTAMP) {
            resp.headers.push(HeaderName::TIMESTAMP, value);
        }
    }
    resp
}

/// A stateless 400 to a malformed request: like [`response_from_headers`], plus a To tag
/// derived from the request (so a retransmission gets the same tag, §16.11 style) when the
/// To header parses and has none. The reason phrase is sanitized to printable ASCII.
pub(crate) fn stateless_400(headers: &Headers, reason: &str) -> Response {
    let reason: String = reason
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(100)
        .collect();
    let reason = if reason.trim().is_empty() {
        default_reason(400).to_string()
    } else {
        format!("Bad Request ({reason})")
    };
    let mut resp = response_from_headers(headers, 400, &reason);
    if let Ok(mut to) = headers.to() {
        if to.tag().is_none() {
            let mut seed = String::new();
            for name in [HeaderName::CALL_ID, HeaderName::VIA, HeaderName::CSEQ].iter() {
                if let Some(v) = headers.get(name) {
                    seed.push_str(v);
                }
            }
            to.set_tag(&format!("{:016x}", fnv1a(seed.as_bytes())));
            resp.headers.set(HeaderName::TO, to.to_string());
        }
    }
    resp
}

/// FNV-1a 64-bit: a small stable hash for deterministic stateless tags.
fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::msg::{Message, Method};

    fn invite() -> Request {
        let mut r = Request::new(Method::Invite, "sip:b@h".parse().expect("uri"));
        r.headers
            .push(HeaderName::VIA, "SIP/2.0/UDP a;branch=z9hG4bK1");
        r.headers
            .push(HeaderName::VIA, "SIP/2.0/UDP p;branch=z9hG4bK0");
        r.headers.push(HeaderName::FROM, "<sip:a@h>;tag=f1");
        r.headers.push(HeaderName::TO, "<sip:b@h>");
        r.headers.push(HeaderName::CALL_ID, "c");
        r.headers.push(HeaderName::CSEQ, "1 INVITE");
        r.headers.push(HeaderName::TIMESTAMP, "54");
        r.headers.push(HeaderName::CONTACT, "<sip:a@h>");
        r
    }

    #[test]
    fn response_copies_the_right_headers() {
        let r = response_for(&invite(), 100);
        assert_eq!(r.code, 100);
        assert_eq!(r.reason, "Trying");
        assert_eq!(r.headers.vias().expect("vias").len(), 2);
        assert_eq!(r.headers.get(&HeaderName::TIMESTAMP), Some("54"));
        assert!(r.headers.get(&HeaderName::CONTACT).is_none());
        let r = response_for(&invite(), 180);
        assert!(r.headers.get(&HeaderName::TIMESTAMP).is_none());
        assert!(r.headers.to().expect("to").tag().is_none());
    }

    #[test]
    fn stateless_400_has_a_stable_tag_and_a_clean_reason() {
        let a = stateless_400(&invite().headers, "bad\r\nthing\u{7f}");
        let b = stateless_400(&invite().headers, "other");
        let tag = a.headers.to().expect("to").tag().map(str::to_string);
        assert!(tag.is_some());
        assert_eq!(tag.as_deref(), b.headers.to().expect("to").tag());
        assert_eq!(a.reason, "Bad Request (bad??thing?)");
        let Ok(Message::Response(parsed)) = Message::parse(&a.to_bytes()) else {
            panic!("400 does not parse back");
        };
        assert_eq!(parsed.reason, a.reason);
        assert_eq!(parsed.headers.to(), a.headers.to());
    }
}
