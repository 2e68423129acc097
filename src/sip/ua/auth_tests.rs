//! 401/407 on the requests the user agent sends inside a call (BYE, re-INVITE): one user
//! agent against a scripted peer, on synthetic time. The expected digests are computed here
//! from RFC 7616 §3.4.1 with the hash crate directly, not with the auth module.

use md5::{Digest, Md5};

use super::*;
use crate::sip::registration::RegConfig;

const US: &str = "127.0.0.1:5061";
const PEER: &str = "127.0.0.1:5062";
const USER: &str = "alice";
const PASSWORD: &str = "s3cret-pw";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The parameters of an Authorization / Proxy-Authorization value (`Digest k="v", k=v`).
fn auth_params(value: &str) -> HashMap<String, String> {
    let rest = value.strip_prefix("Digest ").expect("Digest scheme");
    rest.split(", ")
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("name=value");
            (k.to_string(), v.trim_matches('"').to_string())
        })
        .collect()
}

/// Check a qop=auth MD5 answer against RFC 7616 §3.4.1, with the password `password`.
fn assert_digest_verifies(req: &Request, header: &HeaderName, password: &str, nonce: &str) {
    let value = req.headers.get(header).expect("credentials sent");
    assert!(!value.contains(password), "the password is never sent");
    let p = auth_params(value);
    assert_eq!(p["username"], USER);
    assert_eq!(p["realm"], "test.realm");
    assert_eq!(p["nonce"], nonce);
    assert_eq!(p["uri"], req.uri.to_string());
    assert_eq!(p["qop"], "auth");
    let ha1 = md5_hex(&format!("{USER}:test.realm:{password}"));
    let ha2 = md5_hex(&format!("{}:{}", req.method.as_str(), p["uri"]));
    let expected = md5_hex(&format!(
        "{ha1}:{nonce}:{}:{}:auth:{ha2}",
        p["nc"], p["cnonce"]
    ));
    assert_eq!(p["response"], expected, "digest of {}", req.method.as_str());
}

fn challenge(nonce: &str) -> String {
    format!(r#"Digest realm="test.realm", nonce="{nonce}", qop="auth", algorithm=MD5"#)
}

/// Our user agent and a peer played by the test.
struct Scripted {
    ua: UserAgent,
    now: Instant,
    events: Vec<UaEvent>,
    /// Requests we sent, in order (responses we sent are not kept).
    sent: Vec<Request>,
}

impl Scripted {
    fn new() -> Scripted {
        Scripted {
            ua: UserAgent::new(UaConfig {
                user: USER.into(),
                display_name: None,
                user_agent: "test".into(),
                timers: TimerConfig::default(),
                seed: 7,
            }),
            now: crate::test_epoch(),
            events: vec![],
            sent: vec![],
        }
    }

    fn drain(&mut self) {
        while let Some(t) = self.ua.poll_transmit() {
            assert_eq!(t.dest, addr(PEER), "everything goes to the peer");
            if let Message::Request(r) = t.message {
                self.sent.push(r);
            }
        }
        while let Some(e) = self.ua.poll_event() {
            self.events.push(e);
        }
    }

    fn feed(&mut self, msg: Message) {
        let now = self.now;
        self.ua
            .handle_datagram(now, &msg.to_bytes(), addr(PEER), addr(US));
        self.drain();
    }

    /// The last request we sent with this method.
    fn last(&self, method: Method) -> Request {
        self.sent
            .iter()
            .rev()
            .find(|r| r.method == method)
            .cloned()
            .unwrap_or_else(|| panic!("no {} sent", method.as_str()))
    }

    fn count(&self, method: Method) -> usize {
        self.sent.iter().filter(|r| r.method == method).count()
    }

    /// Answer `req` with `code`, adding `headers`.
    fn reply(&mut self, req: &Request, code: u16, headers: &[(HeaderName, String)]) {
        let mut resp = response_to(req, code, None, Some("peer-tag"));
        for (n, v) in headers {
            resp.headers.push(n.clone(), v.clone());
        }
        self.feed(Message::Response(resp));
    }

    /// Place a call with `credentials`, answered 200 with a Record-Route, ACKed.
    fn established(&mut self, credentials: Option<Credentials>) -> CallRef {
        let target: Uri = format!("sip:bob@{PEER}").parse().unwrap();
        let identity = CallIdentity {
            credentials,
            ..CallIdentity::default()
        };
        let now = self.now;
        let call = self.ua.invite_as(
            now,
            target,
            addr(PEER),
            addr(US),
            b"v=0 offer\r\n".to_vec(),
            identity,
        );
        self.drain();
        let invite = self.last(Method::Invite);
        self.reply(
            &invite,
            200,
            &[
                (HeaderName::CONTACT, format!("<sip:bob@{PEER}>")),
                (HeaderName::RECORD_ROUTE, format!("<sip:{PEER};lr>")),
                (HeaderName::CONTENT_TYPE, "application/sdp".into()),
            ],
        );
        assert_eq!(self.count(Method::Ack), 1);
        call
    }

    fn hangup(&mut self, call: CallRef) {
        let now = self.now;
        self.ua.hangup(now, call).unwrap();
        self.drain();
    }

    fn ended(&self) -> Option<EndCause> {
        self.events.iter().find_map(|e| match e {
            UaEvent::Ended { cause, .. } => Some(cause.clone()),
            _ => None,
        })
    }

    fn ended_count(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, UaEvent::Ended { .. }))
            .count()
    }
}

fn creds() -> Option<Credentials> {
    Some(Credentials::new(USER, PASSWORD))
}

fn cseq(req: &Request) -> u32 {
    req.headers.cseq().unwrap().seq
}

fn branch(req: &Request) -> String {
    req.headers.top_via().unwrap().branch().unwrap().to_string()
}

/// The re-sent request keeps the dialog (Call-ID, tags, Route set, Request-URI) and takes the
/// next CSeq and a new branch.
fn assert_same_dialog_next_cseq(first: &Request, again: &Request) {
    assert_eq!(first.uri, again.uri);
    assert_eq!(
        first.headers.call_id().unwrap(),
        again.headers.call_id().unwrap()
    );
    assert_eq!(
        first.headers.get(&HeaderName::FROM),
        again.headers.get(&HeaderName::FROM)
    );
    assert_eq!(
        first.headers.get(&HeaderName::TO),
        again.headers.get(&HeaderName::TO)
    );
    let routes = |r: &Request| {
        r.headers
            .get_all(&HeaderName::ROUTE)
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(routes(first), vec![format!("<sip:{PEER};lr>")]);
    assert_eq!(routes(first), routes(again));
    assert_eq!(cseq(again), cseq(first) + 1);
    assert_eq!(again.headers.cseq().unwrap().method, first.method);
    assert_ne!(branch(first), branch(again));
}

#[test]
fn bye_challenged_401_is_resent_with_authorization_then_ends() {
    let mut s = Scripted::new();
    let call = s.established(creds());
    s.hangup(call);
    let bye = s.last(Method::Bye);
    assert!(bye.headers.get(&HeaderName::AUTHORIZATION).is_none());
    assert_eq!(s.ended(), None, "Ended waits for the BYE's answer");
    assert!(s.ua.has_pending_requests());

    s.reply(
        &bye,
        401,
        &[(HeaderName::WWW_AUTHENTICATE, challenge("nonce-1"))],
    );
    assert_eq!(s.count(Method::Bye), 2);
    let again = s.last(Method::Bye);
    assert_same_dialog_next_cseq(&bye, &again);
    assert_digest_verifies(&again, &HeaderName::AUTHORIZATION, PASSWORD, "nonce-1");
    assert!(again
        .headers
        .get(&HeaderName::PROXY_AUTHORIZATION)
        .is_none());
    assert_eq!(
        auth_params(again.headers.get(&HeaderName::AUTHORIZATION).unwrap())["nc"],
        "00000001"
    );
    let other = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert_digest_verifies(&again, &HeaderName::AUTHORIZATION, "other", "nonce-1")
    }));
    assert!(other.is_err(), "the check depends on the password");
    assert_eq!(s.ended(), None);

    s.reply(&again, 200, &[]);
    assert_eq!(s.ended(), Some(EndCause::LocalBye));
    assert!(!s.ua.has_pending_requests());
    assert_eq!(s.ua.call_count(), 0);
}

#[test]
fn bye_challenged_407_gets_proxy_authorization() {
    let mut s = Scripted::new();
    let call = s.established(creds());
    s.hangup(call);
    let bye = s.last(Method::Bye);
    s.reply(
        &bye,
        407,
        &[(HeaderName::PROXY_AUTHENTICATE, challenge("nonce-p"))],
    );
    let again = s.last(Method::Bye);
    assert_same_dialog_next_cseq(&bye, &again);
    assert_digest_verifies(
        &again,
        &HeaderName::PROXY_AUTHORIZATION,
        PASSWORD,
        "nonce-p",
    );
    assert!(again.headers.get(&HeaderName::AUTHORIZATION).is_none());
    s.reply(&again, 200, &[]);
    assert_eq!(s.ended(), Some(EndCause::LocalBye));
}

#[test]
fn wrong_password_on_bye_ends_the_call_with_an_auth_failure() {
    let mut s = Scripted::new();
    let call = s.established(Some(Credentials::new(USER, "not-the-password")));
    s.hangup(call);
    let bye = s.last(Method::Bye);
    let hdr = [(HeaderName::PROXY_AUTHENTICATE, challenge("nonce-w"))];
    s.reply(&bye, 407, &hdr);
    let again = s.last(Method::Bye);
    // Well-formed for the password we have, which the server refuses: same nonce again.
    assert_digest_verifies(
        &again,
        &HeaderName::PROXY_AUTHORIZATION,
        "not-the-password",
        "nonce-w",
    );
    s.reply(&again, 407, &hdr);
    assert_eq!(s.count(Method::Bye), 2, "no third try");
    match s.ended() {
        Some(EndCause::Rejected { code: 407, reason }) => {
            assert!(reason.contains("authentication failed"), "{reason}");
            assert!(!reason.contains("not-the-password"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.ended_count(), 1);
    assert_eq!(s.ua.call_count(), 0, "our side is torn down anyway");
    assert!(!s.ua.has_pending_requests());
}

#[test]
fn challenged_bye_without_credentials_ends_with_an_auth_failure() {
    let mut s = Scripted::new();
    let call = s.established(None);
    s.hangup(call);
    let bye = s.last(Method::Bye);
    s.reply(&bye, 401, &[(HeaderName::WWW_AUTHENTICATE, challenge("n"))]);
    assert_eq!(s.count(Method::Bye), 1);
    match s.ended() {
        Some(EndCause::Rejected { code: 401, reason }) => {
            assert!(reason.contains("authentication failed"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.ua.call_count(), 0);
}

#[test]
fn unanswered_bye_still_ends_the_call_for_the_user_after_8_t1() {
    let mut s = Scripted::new();
    let call = s.established(creds());
    s.hangup(call);
    let t1 = TimerConfig::default().t1;
    let deadline = s.now + t1 * 8;
    while s.ended().is_none() {
        let next = s.ua.poll_timeout().expect("a timer is pending");
        assert!(next <= deadline, "reported by 8·T1");
        s.now = next;
        let now = s.now;
        s.ua.handle_timeout(now);
        s.drain();
    }
    assert_eq!(s.ended(), Some(EndCause::LocalBye));
    assert!(
        s.ua.has_pending_requests(),
        "the BYE is still retransmitted"
    );
    // A late challenge is still answered, and its outcome is not reported twice.
    let bye = s.last(Method::Bye);
    s.reply(
        &bye,
        407,
        &[(HeaderName::PROXY_AUTHENTICATE, challenge("late"))],
    );
    let again = s.last(Method::Bye);
    assert_digest_verifies(&again, &HeaderName::PROXY_AUTHORIZATION, PASSWORD, "late");
    s.reply(&again, 200, &[]);
    assert_eq!(s.ended_count(), 1);
    assert_eq!(s.ua.call_count(), 0);
    assert!(!s.ua.has_pending_requests());
}

#[test]
fn reinvite_challenged_is_resent_acked_with_credentials_and_answered() {
    let mut s = Scripted::new();
    let call = s.established(creds());
    let now = s.now;
    s.ua.reinvite(now, call, b"v=0 hold\r\n".to_vec()).unwrap();
    assert_eq!(
        s.ua.reinvite(now, call, b"v=0\r\n".to_vec()),
        Err(UaError::WrongState),
        "one re-INVITE at a time"
    );
    s.drain();
    let reinvite = s.last(Method::Invite);
    assert_eq!(reinvite.body, b"v=0 hold\r\n");
    s.reply(
        &reinvite,
        407,
        &[(HeaderName::PROXY_AUTHENTICATE, challenge("nonce-r"))],
    );
    // The transaction layer ACKs the 407 itself (same branch, RFC 3261 §17.1.1.3).
    let ack = s.last(Method::Ack);
    assert_eq!(branch(&ack), branch(&reinvite));
    let again = s.last(Method::Invite);
    assert_same_dialog_next_cseq(&reinvite, &again);
    assert_eq!(again.body, b"v=0 hold\r\n");
    assert_digest_verifies(
        &again,
        &HeaderName::PROXY_AUTHORIZATION,
        PASSWORD,
        "nonce-r",
    );

    s.reply(
        &again,
        200,
        &[
            (HeaderName::CONTACT, format!("<sip:bob@{PEER}>")),
            (HeaderName::CONTENT_TYPE, "application/sdp".into()),
        ],
    );
    let ack = s.last(Method::Ack);
    assert_eq!(cseq(&ack), cseq(&again));
    assert_eq!(
        ack.headers.get(&HeaderName::PROXY_AUTHORIZATION),
        again.headers.get(&HeaderName::PROXY_AUTHORIZATION),
        "the ACK of a 2xx carries the INVITE's credentials"
    );
    assert!(s
        .events
        .iter()
        .any(|e| matches!(e, UaEvent::Answered { call: c, .. } if *c == call)));
    assert_eq!(s.ua.local_sdp(call), Some(&b"v=0 hold\r\n"[..]));

    // The dialog remembers the challenge: the BYE is pre-authorized, nonce count 2.
    s.hangup(call);
    let bye = s.last(Method::Bye);
    assert_digest_verifies(&bye, &HeaderName::PROXY_AUTHORIZATION, PASSWORD, "nonce-r");
    let nc = auth_params(bye.headers.get(&HeaderName::PROXY_AUTHORIZATION).unwrap())["nc"].clone();
    assert_eq!(nc, "00000002");
    s.reply(&bye, 200, &[]);
    assert_eq!(s.ended(), Some(EndCause::LocalBye));
}

#[test]
fn wrong_password_on_reinvite_ends_the_call_with_bye() {
    let mut s = Scripted::new();
    let call = s.established(Some(Credentials::new(USER, "wrong")));
    let now = s.now;
    s.ua.reinvite(now, call, b"v=0\r\n".to_vec()).unwrap();
    s.drain();
    let hdr = [(HeaderName::WWW_AUTHENTICATE, challenge("nonce-x"))];
    let reinvite = s.last(Method::Invite);
    s.reply(&reinvite, 401, &hdr);
    let again = s.last(Method::Invite);
    s.reply(&again, 401, &hdr);
    match s.ended() {
        Some(EndCause::Rejected { code: 401, reason }) => {
            assert!(reason.contains("authentication failed"), "{reason}");
            assert!(!reason.contains("wrong\""), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.count(Method::Bye), 1, "the dialog is ended with BYE");
    let bye = s.last(Method::Bye);
    s.reply(&bye, 200, &[]);
    assert_eq!(s.ended_count(), 1);
    assert_eq!(s.ua.call_count(), 0);
}

#[test]
fn incoming_call_on_a_registered_account_answers_bye_challenges_with_its_credentials() {
    let mut s = Scripted::new();
    let aor: Uri = "sip:alice@example.test".parse().unwrap();
    let registrar: Uri = format!("sip:{PEER}").parse().unwrap();
    let contact: Uri = format!("sip:alice@{US}").parse().unwrap();
    let mut cfg = RegConfig::new(aor, registrar, contact, 600, 3);
    cfg.credentials = creds();
    let now = s.now;
    s.ua.register(now, cfg, addr(PEER));
    s.drain();
    assert_eq!(s.count(Method::Register), 1);

    let invite = format!(
        "INVITE sip:alice@{US} SIP/2.0\r\nVia: SIP/2.0/UDP {PEER};branch=z9hG4bKin1\r\nFrom: <sip:bob@example.test>;tag=bobtag\r\nTo: <sip:alice@example.test>\r\nCall-ID: in-1\r\nCSeq: 10 INVITE\r\nContact: <sip:bob@{PEER}>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n"
    );
    s.feed(Message::parse(invite.as_bytes()).unwrap());
    let call = s
        .events
        .iter()
        .find_map(|e| match e {
            UaEvent::Incoming { call, .. } => Some(*call),
            _ => None,
        })
        .expect("incoming call");
    let now = s.now;
    s.ua.answer(now, call, b"v=0\r\n".to_vec()).unwrap();
    s.drain();
    let ack = format!(
        "ACK sip:alice@{US} SIP/2.0\r\nVia: SIP/2.0/UDP {PEER};branch=z9hG4bKack1\r\nFrom: <sip:bob@example.test>;tag=bobtag\r\nTo: <sip:alice@example.test>;tag={}\r\nCall-ID: in-1\r\nCSeq: 10 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        s.ua.calls[&call].local_tag
    );
    s.feed(Message::parse(ack.as_bytes()).unwrap());
    s.hangup(call);
    let bye = s.last(Method::Bye);
    s.reply(
        &bye,
        407,
        &[(HeaderName::PROXY_AUTHENTICATE, challenge("nonce-in"))],
    );
    let again = s.last(Method::Bye);
    assert_eq!(again.headers.call_id().unwrap(), "in-1");
    assert_eq!(cseq(&again), cseq(&bye) + 1);
    assert_digest_verifies(
        &again,
        &HeaderName::PROXY_AUTHORIZATION,
        PASSWORD,
        "nonce-in",
    );
    s.reply(&again, 200, &[]);
    assert_eq!(s.ended(), Some(EndCause::LocalBye));
}

#[test]
fn incoming_call_not_for_an_account_has_no_credentials_until_set() {
    let mut s = Scripted::new();
    let invite = format!(
        "INVITE sip:alice@{US} SIP/2.0\r\nVia: SIP/2.0/UDP {PEER};branch=z9hG4bKin2\r\nFrom: <sip:bob@{PEER}>;tag=bobtag\r\nTo: <sip:alice@{US}>\r\nCall-ID: in-2\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    s.feed(Message::parse(invite.as_bytes()).unwrap());
    let call = s
        .events
        .iter()
        .find_map(|e| match e {
            UaEvent::Incoming { call, .. } => Some(*call),
            _ => None,
        })
        .expect("incoming call");
    assert!(s.ua.calls[&call].auth.is_none());
    s.ua.set_call_credentials(call, creds()).unwrap();
    assert_eq!(
        s.ua.calls[&call].auth.as_ref().map(|a| a.username()),
        Some(USER)
    );
    assert_eq!(
        s.ua.set_call_credentials(999, None),
        Err(UaError::NoSuchCall)
    );
}
