//! Registration against a scripted fake registrar, on synthetic time: digest challenge,
//! refresh before expiry, 423, wrong password, 503 backoff, timeouts, NAT Contact rewrite,
//! unregister.

use std::time::{Duration, Instant};

use termphone::sip::auth::{digest_response, Algorithm, Credentials, DigestInput, Qop, Secret};
use termphone::sip::dialog::response_to;
use termphone::sip::msg::{Contacts, HeaderName, Message, Method, Request, Response, Uri};
use termphone::sip::registration::{RegConfig, RegEvent, RegFailure, RegState, Registration};

const PASSWORD: &str = "alicepw";

fn uri(s: &str) -> Uri {
    s.parse().unwrap()
}

fn config(expires: u32, password: Option<&str>) -> RegConfig {
    let mut cfg = RegConfig::new(
        uri("sip:alice@127.0.0.1"),
        uri("sip:127.0.0.1"),
        uri("sip:alice@127.0.0.1:5070"),
        expires,
        42,
    );
    cfg.credentials = password.map(|p| Credentials::new("alice", p));
    cfg.user_agent = "termphone-test".into();
    cfg
}

/// Read a field out of an Authorization value.
fn field(v: &str, name: &str) -> Option<String> {
    v.trim_start_matches("Digest ")
        .split(", ")
        .filter_map(|p| p.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim_matches('"').to_string())
}

/// A registrar that checks digest answers (MD5, qop=auth) against PASSWORD.
struct FakeRegistrar {
    nonce: String,
    /// Expiry it grants (Contact param), or None = echo the request's.
    grant: Option<u32>,
    /// Minimum expiry (423 below it).
    min_expires: Option<u32>,
    /// Answer everything with this code instead.
    fail_with: Option<u16>,
    /// A fresh nonce for every challenge (as Kamailio does).
    rotate_nonce: bool,
    /// Answer the next authorized request with a stale=true challenge and a new nonce.
    stale_next: bool,
    /// Put received/rport in the Via of responses.
    nat: Option<(&'static str, u16)>,
    requests: Vec<Request>,
    bindings: usize,
}

impl FakeRegistrar {
    fn new() -> FakeRegistrar {
        FakeRegistrar {
            nonce: "n0nce1".into(),
            grant: None,
            min_expires: None,
            fail_with: None,
            rotate_nonce: false,
            stale_next: false,
            nat: None,
            requests: Vec::new(),
            bindings: 0,
        }
    }

    fn authorized(&self, req: &Request) -> bool {
        let Some(v) = req.headers.get(&HeaderName::AUTHORIZATION) else {
            return false;
        };
        let nc = u32::from_str_radix(&field(v, "nc").unwrap(), 16).unwrap();
        let password = Secret::new(PASSWORD);
        let want = digest_response(&DigestInput {
            algorithm: Algorithm::Md5,
            username: &field(v, "username").unwrap(),
            realm: "127.0.0.1",
            password: &password,
            method: "REGISTER",
            uri: &field(v, "uri").unwrap(),
            nonce: &self.nonce,
            cnonce: &field(v, "cnonce").unwrap(),
            nc,
            qop: Some(Qop::Auth),
            body: b"",
        });
        field(v, "nonce").as_deref() == Some(&self.nonce) && field(v, "response") == Some(want)
    }

    fn answer(&mut self, req: Request) -> Response {
        // Everything goes through the wire format, both ways.
        let Ok(Message::Request(req)) = Message::parse(&req.to_bytes()) else {
            panic!("REGISTER does not parse")
        };
        self.requests.push(req.clone());
        let mut resp = if let Some(code) = self.fail_with {
            response_to(&req, code, None, Some("srv"))
        } else if !self.authorized(&req) || self.stale_next {
            let stale = std::mem::take(&mut self.stale_next);
            if self.rotate_nonce || stale {
                self.nonce = format!("n0nce{}", self.requests.len());
            }
            let mut r = response_to(&req, 401, None, Some("srv"));
            r.headers.push(
                HeaderName::WWW_AUTHENTICATE,
                format!(
                    r#"Digest realm="127.0.0.1", nonce="{}", qop="auth""#,
                    self.nonce
                ),
            );
            r
        } else {
            let asked = req.headers.expires().unwrap().unwrap();
            match self.min_expires {
                Some(m) if asked != 0 && asked < m => {
                    let mut r = response_to(&req, 423, None, Some("srv"));
                    r.headers.push(HeaderName::MIN_EXPIRES, m.to_string());
                    r
                }
                _ => {
                    let mut r = response_to(&req, 200, None, Some("srv"));
                    let Contacts::List(cs) = req.headers.contacts().unwrap() else {
                        panic!()
                    };
                    self.bindings = 0;
                    for mut c in cs {
                        let e: u32 = c.params.get_value("expires").unwrap().parse().unwrap();
                        if e > 0 {
                            self.bindings += 1;
                            c.params
                                .set("expires", Some(&self.grant.unwrap_or(e).to_string()));
                            r.headers.push(HeaderName::CONTACT, c.to_string());
                        }
                    }
                    r
                }
            }
        };
        if let Some((ip, port)) = self.nat {
            let mut via = resp.headers.top_via().unwrap();
            via.params.set("received", Some(ip));
            via.params.set("rport", Some(&port.to_string()));
            resp.headers.set_top_via(&via);
        }
        match Message::parse(&resp.to_bytes()) {
            Ok(Message::Response(r)) => r,
            _ => panic!("response does not parse"),
        }
    }
}

struct Harness {
    reg: Registration,
    srv: FakeRegistrar,
    t0: Instant,
    now: Instant,
    states: Vec<(Duration, RegState)>,
    contacts: Vec<Uri>,
    /// Drop requests instead of answering (registrar down).
    down: bool,
    sent_at: Vec<Duration>,
}

impl Harness {
    fn new(cfg: RegConfig) -> Harness {
        let t0 = Instant::now();
        Harness {
            reg: Registration::new(cfg),
            srv: FakeRegistrar::new(),
            t0,
            now: t0,
            states: Vec::new(),
            contacts: Vec::new(),
            down: false,
            sent_at: Vec::new(),
        }
    }

    fn secs(&self) -> Duration {
        self.now - self.t0
    }

    /// Deliver requests and responses until nothing moves.
    fn pump(&mut self) {
        loop {
            while let Some(e) = self.reg.poll_event() {
                match e {
                    RegEvent::StateChanged(s) => self.states.push((self.secs(), s)),
                    RegEvent::ContactChanged(c) => self.contacts.push(c),
                }
            }
            let Some(req) = self.reg.poll_request() else {
                break;
            };
            self.sent_at.push(self.secs());
            if self.down {
                // Timer F of the transaction layer: 64·T1 = 32 s.
                self.now += Duration::from_secs(32);
                self.reg.handle_request_timeout(self.now);
            } else {
                let resp = self.srv.answer(req);
                self.reg.handle_response(self.now, &resp);
            }
        }
    }

    /// Advance synthetic time to the next deadline (at most `limit` from now) and fire it.
    fn step(&mut self, limit: Duration) -> bool {
        match self.reg.poll_timeout() {
            Some(t) if t <= self.now + limit => {
                self.now = self.now.max(t);
                self.reg.handle_timeout(self.now);
                self.pump();
                true
            }
            _ => false,
        }
    }

    fn last_state(&self) -> &RegState {
        &self.states.last().unwrap().1
    }
}

#[test]
fn challenge_then_200_then_refresh_before_expiry() {
    let mut h = Harness::new(config(3600, Some(PASSWORD)));
    h.srv.grant = Some(60);
    h.reg.start(h.now);
    h.pump();
    assert_eq!(
        h.srv.requests.len(),
        2,
        "REGISTER, 401, REGISTER with credentials"
    );
    let (r1, r2) = (&h.srv.requests[0], &h.srv.requests[1]);
    assert!(r1.headers.get(&HeaderName::AUTHORIZATION).is_none());
    assert!(r2.headers.get(&HeaderName::AUTHORIZATION).is_some());
    assert_eq!(r1.headers.call_id().unwrap(), r2.headers.call_id().unwrap());
    assert_eq!(
        r1.headers.cseq().unwrap().seq + 1,
        r2.headers.cseq().unwrap().seq
    );
    assert_ne!(
        r1.headers.top_via().unwrap().branch(),
        r2.headers.top_via().unwrap().branch()
    );
    assert_eq!(
        r1.headers.from().unwrap().tag(),
        r2.headers.from().unwrap().tag()
    );
    assert_eq!(r1.headers.to().unwrap().tag(), None);
    assert_eq!(r1.method, Method::Register);
    assert_eq!(r1.uri.to_string(), "sip:127.0.0.1");
    assert_eq!(r1.headers.get(&HeaderName::EXPIRES), Some("3600"));
    assert!(r1.headers.top_via().unwrap().rport().is_some());
    assert_eq!(
        h.states.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>(),
        vec![
            RegState::Registering,
            RegState::Registered {
                expires_at: h.t0 + Duration::from_secs(60),
                granted: 60
            }
        ]
    );
    // The refresh is due at 30 s (max(60/2, 60-30)), well before the 60 s expiry.
    assert_eq!(h.reg.poll_timeout(), Some(h.t0 + Duration::from_secs(30)));
    for _ in 0..5 {
        assert!(h.step(Duration::from_secs(60)));
    }
    // Each refresh: one REGISTER, answered at once with the cached nonce (nc goes up).
    assert_eq!(h.srv.requests.len(), 7);
    let times: Vec<u64> = h.sent_at.iter().map(|d| d.as_secs()).collect();
    assert_eq!(times, [0, 0, 30, 60, 90, 120, 150]);
    let cseqs: Vec<u32> = h
        .srv
        .requests
        .iter()
        .map(|r| r.headers.cseq().unwrap().seq)
        .collect();
    assert_eq!(cseqs, [1, 2, 3, 4, 5, 6, 7]);
    let last = h.srv.requests.last().unwrap();
    let auth = last.headers.get(&HeaderName::AUTHORIZATION).unwrap();
    assert_eq!(field(auth, "nc").as_deref(), Some("00000006"));
    assert_eq!(
        h.srv
            .requests
            .iter()
            .map(|r| r.headers.call_id().unwrap().to_string())
            .collect::<std::collections::HashSet<_>>()
            .len(),
        1
    );
    // Refreshes keep the state Registered (no flicker through Registering).
    assert_eq!(h.states.len(), 7);
    assert!(h
        .states
        .iter()
        .skip(1)
        .all(|(_, s)| matches!(s, RegState::Registered { granted: 60, .. })));
    // Never a password on the wire or in Debug.
    for r in &h.srv.requests {
        assert!(!String::from_utf8_lossy(&r.to_bytes()).contains(PASSWORD));
    }
    assert!(!format!("{:?}", h.reg).contains(PASSWORD));
}

#[test]
fn expires_header_is_used_when_the_contact_has_none() {
    let mut h = Harness::new(config(300, None));
    let mut req_seen = None;
    h.reg.start(h.now);
    if let Some(req) = h.reg.poll_request() {
        let mut r = response_to(&req, 200, None, Some("x"));
        r.headers.push(HeaderName::EXPIRES, "120");
        req_seen = Some(req);
        h.reg.handle_response(h.now, &r);
    }
    assert!(req_seen.is_some());
    assert_eq!(
        h.reg.state(),
        &RegState::Registered {
            expires_at: h.t0 + Duration::from_secs(120),
            granted: 120
        }
    );
    assert_eq!(h.reg.poll_timeout(), Some(h.t0 + Duration::from_secs(90)));
}

#[test]
fn interval_too_brief_retries_with_min_expires() {
    let mut h = Harness::new(config(30, Some(PASSWORD)));
    h.srv.min_expires = Some(120);
    h.reg.start(h.now);
    h.pump();
    // REGISTER (401), REGISTER+auth (423), REGISTER expires=120 (200).
    assert_eq!(h.srv.requests.len(), 3);
    assert_eq!(
        h.srv.requests[2].headers.get(&HeaderName::EXPIRES),
        Some("120")
    );
    assert_eq!(h.reg.expires(), 120);
    assert!(matches!(
        h.last_state(),
        RegState::Registered { granted: 120, .. }
    ));
    assert!(!h
        .states
        .iter()
        .any(|(_, s)| matches!(s, RegState::Failed { .. })));
    // Refreshes keep asking for 120.
    assert!(h.step(Duration::from_secs(120)));
    assert_eq!(h.sent_at.last(), Some(&Duration::from_secs(90)));
    assert_eq!(
        h.srv
            .requests
            .last()
            .unwrap()
            .headers
            .get(&HeaderName::EXPIRES),
        Some("120")
    );
}

#[test]
fn wrong_password_fails_once_and_never_loops() {
    let mut h = Harness::new(config(300, Some("not-the-password")));
    h.reg.start(h.now);
    h.pump();
    assert_eq!(h.srv.requests.len(), 2, "one answer, then give up");
    assert_eq!(
        h.last_state(),
        &RegState::Failed {
            reason: RegFailure::WrongPassword,
            retry_at: None
        }
    );
    assert_eq!(h.reg.poll_timeout(), None);
    assert!(!h.step(Duration::from_secs(86_400)));
    assert_eq!(h.srv.requests.len(), 2);
    assert_eq!(RegFailure::WrongPassword.to_string(), "wrong password");
}

#[test]
fn no_credentials_forbidden_and_not_found_do_not_retry() {
    let mut h = Harness::new(config(300, None));
    h.reg.start(h.now);
    h.pump();
    assert!(matches!(
        h.last_state(),
        RegState::Failed {
            reason: RegFailure::NoCredentials,
            retry_at: None
        }
    ));
    for (code, want) in [
        (403, RegFailure::Forbidden("Forbidden".into())),
        (404, RegFailure::NotFound("Not Found".into())),
    ] {
        let mut h = Harness::new(config(300, Some(PASSWORD)));
        h.srv.fail_with = Some(code);
        h.reg.start(h.now);
        h.pump();
        assert_eq!(
            h.last_state(),
            &RegState::Failed {
                reason: want,
                retry_at: None
            }
        );
        assert_eq!(h.reg.poll_timeout(), None);
    }
}

#[test]
fn server_error_backs_off_30s_doubling_to_10min() {
    let mut h = Harness::new(config(300, Some(PASSWORD)));
    h.srv.fail_with = Some(503);
    h.reg.start(h.now);
    h.pump();
    while h.sent_at.len() < 9 {
        assert!(h.step(Duration::from_secs(3600)));
    }
    let times: Vec<u64> = h.sent_at.iter().map(|d| d.as_secs()).collect();
    // Gaps: 30, 60, 120, 240, 480, 600, 600, 600.
    assert_eq!(times, [0, 30, 90, 210, 450, 930, 1530, 2130, 2730]);
    assert!(matches!(
        h.last_state(),
        RegState::Failed {
            reason: RegFailure::ServerError { code: 503, .. },
            retry_at: Some(_)
        }
    ));
    // The server comes back: registered, and the backoff starts again from 30 s.
    h.srv.fail_with = None;
    assert!(h.step(Duration::from_secs(3600)));
    assert!(matches!(h.last_state(), RegState::Registered { .. }));
    h.srv.fail_with = Some(500);
    assert!(h.step(Duration::from_secs(3600))); // refresh at 150 s fails
    let RegState::Failed {
        retry_at: Some(at), ..
    } = h.last_state().clone()
    else {
        panic!("{:?}", h.last_state())
    };
    assert_eq!(at - h.now, Duration::from_secs(30));
}

#[test]
fn retry_after_is_honoured_when_longer() {
    let mut h = Harness::new(config(300, None));
    h.reg.start(h.now);
    let req = h.reg.poll_request().unwrap();
    let mut r = response_to(&req, 503, None, Some("x"));
    r.headers.push(HeaderName::RETRY_AFTER, "120 (maintenance)");
    h.reg.handle_response(h.now, &r);
    assert_eq!(h.reg.poll_timeout(), Some(h.t0 + Duration::from_secs(120)));
}

#[test]
fn timeout_is_failed_then_backoff_then_recovers() {
    let mut h = Harness::new(config(300, Some(PASSWORD)));
    h.down = true;
    h.reg.start(h.now);
    h.pump();
    assert!(matches!(
        h.last_state(),
        RegState::Failed {
            reason: RegFailure::Timeout,
            retry_at: Some(_)
        }
    ));
    assert!(h.step(Duration::from_secs(3600)));
    assert!(h.step(Duration::from_secs(3600)));
    let times: Vec<u64> = h.sent_at.iter().map(|d| d.as_secs()).collect();
    // Sent at 0, timed out at 32, retry 30 s later; timed out at 94, retry 60 s later.
    assert_eq!(times, [0, 62, 154]);
    h.down = false;
    assert!(h.step(Duration::from_secs(3600)));
    assert!(matches!(
        h.last_state(),
        RegState::Registered { granted: 300, .. }
    ));
}

#[test]
fn transport_error_is_a_network_failure() {
    let mut h = Harness::new(config(300, None));
    h.reg.start(h.now);
    let _ = h.reg.poll_request();
    h.reg
        .handle_transport_error(h.now, "connection refused by 127.0.0.1:5060/tcp");
    assert_eq!(
        h.reg.state(),
        &RegState::Failed {
            reason: RegFailure::Network {
                reason: "connection refused by 127.0.0.1:5060/tcp".into()
            },
            retry_at: Some(h.t0 + Duration::from_secs(30))
        }
    );
}

#[test]
fn nat_received_rport_rewrites_the_contact() {
    let mut h = Harness::new(config(300, Some(PASSWORD)));
    h.srv.nat = Some(("203.0.113.7", 40123));
    h.reg.start(h.now);
    h.pump();
    assert_eq!(h.contacts, vec![uri("sip:alice@203.0.113.7:40123")]);
    assert_eq!(h.reg.contact(), &uri("sip:alice@203.0.113.7:40123"));
    // The re-REGISTER carries the new Contact and removes the old one.
    let last = h.srv.requests.last().unwrap().clone();
    let Contacts::List(cs) = last.headers.contacts().unwrap() else {
        panic!()
    };
    assert_eq!(cs.len(), 2);
    assert_eq!(cs[0].uri, uri("sip:alice@203.0.113.7:40123"));
    assert_eq!(cs[0].params.get_value("expires"), Some("300"));
    assert_eq!(cs[1].uri, uri("sip:alice@127.0.0.1:5070"));
    assert_eq!(cs[1].params.get_value("expires"), Some("0"));
    assert_eq!(h.srv.bindings, 1);
    // Stable afterwards: the refresh has only the new Contact and no further rewrite.
    assert!(h.step(Duration::from_secs(300)));
    let Contacts::List(cs) = h.srv.requests.last().unwrap().headers.contacts().unwrap() else {
        panic!()
    };
    assert_eq!(cs.len(), 1);
    assert_eq!(h.contacts.len(), 1);
    // The Via sent-by stays our local address.
    assert_eq!(last.headers.top_via().unwrap().sent_by(), "127.0.0.1:5070");
}

#[test]
fn stop_unregisters_with_expires_zero() {
    let mut h = Harness::new(config(300, Some(PASSWORD)));
    h.reg.start(h.now);
    h.pump();
    let n = h.srv.requests.len();
    h.now += Duration::from_secs(10);
    h.reg.stop(h.now);
    h.pump();
    let unreg = &h.srv.requests[n];
    assert_eq!(unreg.headers.get(&HeaderName::EXPIRES), Some("0"));
    let Contacts::List(cs) = unreg.headers.contacts().unwrap() else {
        panic!()
    };
    assert_eq!(cs[0].params.get_value("expires"), Some("0"));
    assert!(unreg.headers.get(&HeaderName::AUTHORIZATION).is_some());
    assert_eq!(h.srv.requests.len(), n + 1);
    assert_eq!(h.srv.bindings, 0);
    assert_eq!(
        &h.states[h.states.len() - 2..]
            .iter()
            .map(|(_, s)| s.clone())
            .collect::<Vec<_>>(),
        &[RegState::Unregistering, RegState::Unregistered]
    );
    assert_eq!(h.reg.poll_timeout(), None);
}

/// SIGTERM right after the first 200, while the REGISTER that rewrites the Contact (NAT) is
/// still on its way: the unregister removes both the old and the new Contact, so whichever
/// the registrar bound last is gone (seen against Kamailio over TCP under load).
#[test]
fn stop_during_a_contact_rewrite_unregisters_both_contacts() {
    let mut h = Harness::new(config(300, Some(PASSWORD)));
    h.srv.nat = Some(("203.0.113.7", 40123));
    h.reg.start(h.now);
    let new_contact = uri("sip:alice@203.0.113.7:40123");
    while h.reg.contact() != &new_contact {
        let req = h.reg.poll_request().expect("a REGISTER");
        let resp = h.srv.answer(req);
        h.reg.handle_response(h.now, &resp);
    }
    let rewrite = h.reg.poll_request().expect("the rewriting REGISTER");
    h.reg.stop(h.now);
    let unreg = h.reg.poll_request().expect("the unregister");
    let Contacts::List(cs) = unreg.headers.contacts().unwrap() else {
        panic!()
    };
    let mut uris: Vec<String> = cs.iter().map(|c| c.uri.to_string()).collect();
    uris.sort();
    assert_eq!(
        uris,
        ["sip:alice@127.0.0.1:5070", "sip:alice@203.0.113.7:40123"]
    );
    assert!(cs
        .iter()
        .all(|c| c.params.get_value("expires") == Some("0")));
    // The registrar sees the rewrite first, then the unregister: nothing stays bound.
    let r = h.srv.answer(rewrite);
    h.reg.handle_response(h.now, &r);
    let r = h.srv.answer(unreg);
    h.reg.handle_response(h.now, &r);
    h.pump();
    assert_eq!(h.srv.bindings, 0);
    assert_eq!(h.last_state(), &RegState::Unregistered);
}

#[test]
fn stop_when_the_registrar_is_down_still_ends() {
    let mut h = Harness::new(config(300, None));
    h.reg.start(h.now);
    h.pump();
    h.down = true;
    h.reg.stop(h.now);
    h.pump();
    assert_eq!(h.last_state(), &RegState::Unregistered);
    assert_eq!(h.reg.poll_timeout(), None);
    // Stopping something never registered sends nothing.
    let mut h = Harness::new(config(300, None));
    h.reg.stop(h.now);
    assert!(h.reg.poll_request().is_none());
}

#[test]
fn stray_provisional_and_old_responses_are_ignored() {
    let mut h = Harness::new(config(300, None));
    h.reg.start(h.now);
    let req = h.reg.poll_request().unwrap();
    h.reg
        .handle_response(h.now, &response_to(&req, 100, None, None));
    let mut other = response_to(&req, 200, None, Some("x"));
    other.headers.set(HeaderName::CALL_ID, "someone-else");
    h.reg.handle_response(h.now, &other);
    let mut old = response_to(&req, 200, None, Some("x"));
    old.headers.set(HeaderName::CSEQ, "99 REGISTER");
    h.reg.handle_response(h.now, &old);
    assert_eq!(h.reg.state(), &RegState::Registering);
    h.reg.handle_request_timeout(h.now);
    h.reg.handle_request_timeout(h.now); // a second one is ignored
    assert!(matches!(
        h.reg.state(),
        RegState::Failed {
            reason: RegFailure::Timeout,
            ..
        }
    ));
    // A late answer to the timed-out request changes nothing.
    h.reg
        .handle_response(h.now, &response_to(&req, 200, None, Some("x")));
    assert!(matches!(h.reg.state(), RegState::Failed { .. }));
    // handle_timeout before the deadline does nothing.
    h.reg.handle_timeout(h.now + Duration::from_secs(29));
    assert!(h.reg.poll_request().is_none());
    h.reg.handle_timeout(h.now + Duration::from_secs(30));
    assert!(h.reg.poll_request().is_some());
    assert_eq!(h.reg.state(), &RegState::Registering);
}

#[test]
fn wrong_password_with_rotating_nonces_stops_after_one_more_try() {
    let mut h = Harness::new(config(300, Some("not-the-password")));
    h.srv.rotate_nonce = true;
    h.reg.start(h.now);
    h.pump();
    assert_eq!(h.srv.requests.len(), 3);
    assert_eq!(
        h.last_state(),
        &RegState::Failed {
            reason: RegFailure::WrongPassword,
            retry_at: None
        }
    );
    assert!(!h.step(Duration::from_secs(86_400)));
    // The user fixes the password and starts again.
    h.reg
        .set_credentials(Some(Credentials::new("alice", PASSWORD)));
    h.reg.start(h.now);
    h.pump();
    assert!(matches!(h.last_state(), RegState::Registered { .. }));
}

#[test]
fn stale_nonce_on_refresh_is_answered_silently() {
    let mut h = Harness::new(config(60, Some(PASSWORD)));
    h.reg.start(h.now);
    h.pump();
    let before = h.states.len();
    h.srv.stale_next = true;
    assert!(h.step(Duration::from_secs(60)));
    // Refresh (stale 401), the same refresh with the new nonce (200).
    assert_eq!(h.srv.requests.len(), 4);
    let auth = h.srv.requests[3]
        .headers
        .get(&HeaderName::AUTHORIZATION)
        .unwrap()
        .to_string();
    assert_eq!(field(&auth, "nonce"), Some(h.srv.nonce.clone()));
    assert_eq!(field(&auth, "nc").as_deref(), Some("00000001"));
    assert!(h.states[before..]
        .iter()
        .all(|(_, s)| matches!(s, RegState::Registered { .. })));
}

#[test]
fn unregister_is_authenticated_when_challenged() {
    let mut h = Harness::new(config(300, Some(PASSWORD)));
    h.reg.start(h.now);
    h.pump();
    h.srv.rotate_nonce = true;
    h.srv.stale_next = true;
    h.reg.stop(h.now);
    h.pump();
    let n = h.srv.requests.len();
    assert_eq!(n, 4, "unregister, stale 401, unregister again");
    assert_eq!(
        h.srv.requests[3].headers.get(&HeaderName::EXPIRES),
        Some("0")
    );
    assert_eq!(h.last_state(), &RegState::Unregistered);
    assert_eq!(h.srv.bindings, 0);
}
