//! Registration never panics and never retries faster than the backoff, whatever the
//! registrar answers.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use termphone::sip::auth::Credentials;
use termphone::sip::dialog::response_to;
use termphone::sip::msg::HeaderName;
use termphone::sip::registration::{RegConfig, RegState, Registration};

fn header_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,60}",
        Just(r#"Digest realm="r", nonce="n", qop="auth""#.to_string()),
        Just(r#"Digest realm="r", nonce="n2", stale=true"#.to_string()),
        Just("<sip:alice@127.0.0.1:5070>;expires=0".to_string()),
        Just("<sip:alice@127.0.0.1:5070>;expires=4294967295".to_string()),
        "[0-9]{1,12}",
    ]
}

proptest! {
    #[test]
    fn arbitrary_answers_never_panic_and_respect_backoff(
        answers in proptest::collection::vec(
            (prop_oneof![Just(200u16), Just(401), Just(407), Just(423), Just(403), Just(503), 100u16..700],
             header_text(), header_text(), any::<bool>()),
            1..40,
        )
    ) {
        let mut cfg = RegConfig::new(
            "sip:alice@127.0.0.1".parse().unwrap(),
            "sip:127.0.0.1".parse().unwrap(),
            "sip:alice@127.0.0.1:5070".parse().unwrap(),
            300,
            7,
        );
        cfg.credentials = Some(Credentials::new("alice", "pw"));
        let mut reg = Registration::new(cfg);
        let t0 = Instant::now();
        let mut now = t0;
        reg.start(now);
        let mut last_failure: Option<Instant> = None;
        for (code, a, b, timeout) in answers {
            let Some(req) = reg.poll_request() else {
                match reg.poll_timeout() {
                    Some(t) => {
                        if let (Some(f), RegState::Failed { .. }) = (last_failure, reg.state()) {
                            prop_assert!(t >= f + Duration::from_secs(30));
                        }
                        now = now.max(t);
                        reg.handle_timeout(now);
                        continue;
                    }
                    None => break,
                }
            };
            now += Duration::from_millis(10);
            if timeout {
                reg.handle_request_timeout(now);
            } else {
                let mut r = response_to(&req, code, None, Some("x"));
                r.headers.push(HeaderName::WWW_AUTHENTICATE, a.clone());
                r.headers.push(HeaderName::PROXY_AUTHENTICATE, a);
                r.headers.push(HeaderName::CONTACT, b.clone());
                r.headers.push(HeaderName::EXPIRES, b.clone());
                r.headers.push(HeaderName::MIN_EXPIRES, b.clone());
                r.headers.push(HeaderName::RETRY_AFTER, b);
                reg.handle_response(now, &r);
            }
            if matches!(reg.state(), RegState::Failed { .. }) {
                last_failure = Some(now);
            }
            while reg.poll_event().is_some() {}
        }
        reg.stop(now);
        while reg.poll_request().is_some() {}
    }
}
