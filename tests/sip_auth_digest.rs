//! Digest auth: RFC 7616 example vectors, the SIP reference values from
//! shared/notes/sip-parsers.md, real challenges, the Authenticator's rules, and a
//! never-panics property.

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use termphone::sip::auth::{
    digest_response, parse_challenges, response_challenges, Algorithm, AuthError, Authenticator,
    Credentials, DigestInput, Qop, Secret,
};
use termphone::sip::msg::{HeaderName, Host, Method, Request, Response, Uri};

fn rfc7616(algorithm: Algorithm) -> String {
    let password = Secret::new("Circle of Life");
    digest_response(&DigestInput {
        algorithm,
        username: "Mufasa",
        realm: "http-auth@example.org",
        password: &password,
        method: "GET",
        uri: "/dir/index.html",
        nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        nc: 1,
        qop: Some(Qop::Auth),
        body: b"",
    })
}

#[test]
fn rfc7616_section_3_9_1_md5_and_sha256() {
    assert_eq!(rfc7616(Algorithm::Md5), "8ca523f5e9506fed4657c9700eebdbec");
    assert_eq!(
        rfc7616(Algorithm::Sha256),
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    );
}

fn sip_ref(algorithm: Algorithm, nc: u32, qop: Option<Qop>, body: &[u8]) -> String {
    let password = Secret::new("secret");
    digest_response(&DigestInput {
        algorithm,
        username: "alice",
        realm: "example.com",
        password: &password,
        method: "REGISTER",
        uri: "sip:example.com",
        nonce: "5a7b8c9d0e1f",
        cnonce: "0a4f113b",
        nc,
        qop,
        body,
    })
}

#[test]
fn sip_reference_values() {
    use Algorithm::*;
    let auth = Some(Qop::Auth);
    type Case = (Algorithm, u32, Option<Qop>, &'static [u8], &'static str);
    let cases: [Case; 11] = [
        (Md5, 1, auth, b"", "2ad07e8487a82cd051902f7da5aefe5d"),
        (Md5, 10, auth, b"", "8ff93ee46d740994216f3855c37f1240"),
        (Md5Sess, 1, auth, b"", "2267a1c74c07e6007f31d4acfa8339dd"),
        (Md5Sess, 10, auth, b"", "8481f81db3cc937eb0c9badfdac3d7f2"),
        (
            Sha256,
            1,
            auth,
            b"",
            "e87adadd855bd6b8b3b289ccf0f18ae888185a93da022d4f34e7e0ec3b6e0690",
        ),
        (
            Sha256,
            10,
            auth,
            b"",
            "70cbb20968a2657af9001f0a75a0183a5743d09dab75cb5efd9ee3407fa45b39",
        ),
        (
            Sha256Sess,
            1,
            auth,
            b"",
            "6be2ab44dbc3ee57e7b057e6c382e6dca4fa0d1b0a4c9b559de4b4c56a71fc1e",
        ),
        (
            Sha256Sess,
            10,
            auth,
            b"",
            "a5ae1d0a8d3d70983412e1b081911906c3ee8007cb79574706c6e77e4b9590b5",
        ),
        (
            Md5,
            1,
            Some(Qop::AuthInt),
            b"hello",
            "cd8209dfe08b81d130c55c1e8f5b53f7",
        ),
        (
            Sha256,
            1,
            Some(Qop::AuthInt),
            b"hello",
            "f7a5a6b74f787a70a7117d3f6d236f61509a8bdbfec16d33b020a4f79f227b06",
        ),
        (Md5, 1, None, b"", "3d8332611e9cec6aea9564ac1cb0267c"),
    ];
    for (alg, nc, qop, body, want) in cases {
        assert_eq!(sip_ref(alg, nc, qop, body), want, "{alg} nc={nc} {qop:?}");
    }
}

#[test]
fn sha512_256_is_the_right_hash() {
    // SHA-512/256("abc") from FIPS 180-4 examples.
    assert_eq!(
        Algorithm::Sha512_256.hash_hex(b"abc"),
        "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23"
    );
}

#[test]
fn parse_kamailio_asterisk_freeswitch() {
    let k = parse_challenges(
        r#"Digest realm="127.0.0.1", nonce="ZkL1fWZC9FE0KHPbCvCpGLB4Ge5yTRYm", qop="auth", algorithm=SHA-256"#,
        false,
    )
    .unwrap();
    assert_eq!(k.len(), 1);
    assert_eq!(k[0].realm, "127.0.0.1");
    assert_eq!(k[0].nonce, "ZkL1fWZC9FE0KHPbCvCpGLB4Ge5yTRYm");
    assert_eq!(k[0].algorithm, Some(Algorithm::Sha256));
    assert_eq!(k[0].qop, vec![Qop::Auth]);
    assert!(!k[0].stale && !k[0].proxy);

    let a = parse_challenges(
        r#"Digest realm="asterisk",nonce="1732525432/6b1a2d9e1f0c3b4a5d6e7f8091a2b3c4",opaque="5e1f2a3b4c5d6e7f",algorithm=md5,qop="auth""#,
        false,
    )
    .unwrap();
    assert_eq!(a[0].realm, "asterisk");
    assert_eq!(a[0].opaque.as_deref(), Some("5e1f2a3b4c5d6e7f"));
    assert_eq!(a[0].algorithm, Some(Algorithm::Md5));

    let f = parse_challenges(
        r#"Digest realm="pbx.example.com", nonce="0f6e3d2a-8c1b-11ef-9b7a-5f3c2e1d0a9b", algorithm=MD5, qop="auth""#,
        true,
    )
    .unwrap();
    assert!(f[0].proxy);
    assert_eq!(f[0].nonce, "0f6e3d2a-8c1b-11ef-9b7a-5f3c2e1d0a9b");

    // Several challenges in one value, case-insensitive scheme, qop list, stale, escapes.
    let m = parse_challenges(
        r#"Basic realm="x", DIGEST realm="a\"b",nonce=tok123,stale=TRUE,qop="auth-int, auth",algorithm=SHA-512-256-sess, digest realm="r2", nonce="n2", algorithm=foo"#,
        false,
    )
    .unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].realm, "a\"b");
    assert_eq!(m[0].nonce, "tok123");
    assert!(m[0].stale);
    assert_eq!(m[0].qop, vec![Qop::AuthInt, Qop::Auth]);
    assert_eq!(m[0].chosen_qop(), Some(Qop::Auth));
    assert_eq!(m[0].algorithm, Some(Algorithm::Sha512_256Sess));
    assert_eq!(m[1].algorithm, None);
    assert!(!m[1].is_supported());

    assert!(parse_challenges("Digest nonce=\"x\"", false).is_err());
    assert!(parse_challenges("Digest realm=\"x", false).is_err());
}

fn challenge(code: u16, lines: &[&str]) -> Response {
    let mut r = Response::new(code, "Unauthorized");
    let name = if code == 407 {
        HeaderName::PROXY_AUTHENTICATE
    } else {
        HeaderName::WWW_AUTHENTICATE
    };
    for l in lines {
        r.headers.push(name.clone(), *l);
    }
    r
}

fn register() -> Request {
    Request::new(
        Method::Register,
        Uri::sip(None, Host::Domain("example.com".into()), None),
    )
}

/// Read `name="value"` or `name=value` out of an Authorization value.
fn field(v: &str, name: &str) -> Option<String> {
    for part in v.trim_start_matches("Digest ").split(", ") {
        if let Some((n, val)) = part.split_once('=') {
            if n == name {
                return Some(val.trim_matches('"').to_string());
            }
        }
    }
    None
}

#[test]
fn authenticator_answers_and_counts_nonces() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut a = Authenticator::new(Credentials::new("alice", "secret"));
    let resp = challenge(
        401,
        &[r#"Digest realm="example.com", nonce="5a7b8c9d0e1f", qop="auth", opaque="op""#],
    );
    assert_eq!(a.handle_response(&resp), Ok(true));
    let mut req = register();
    a.authorize_request(&mut rng, &mut req);
    let v = req
        .headers
        .get(&HeaderName::AUTHORIZATION)
        .unwrap()
        .to_string();
    assert!(
        v.starts_with("Digest username=\"alice\", realm=\"example.com\""),
        "{v}"
    );
    assert!(!v.contains("secret"));
    assert_eq!(field(&v, "nc").as_deref(), Some("00000001"));
    assert_eq!(field(&v, "qop").as_deref(), Some("auth"));
    assert_eq!(field(&v, "opaque").as_deref(), Some("op"));
    assert_eq!(field(&v, "algorithm").as_deref(), Some("MD5"));
    assert_eq!(field(&v, "uri").as_deref(), Some("sip:example.com"));
    let cnonce = field(&v, "cnonce").unwrap();
    let password = Secret::new("secret");
    let want = digest_response(&DigestInput {
        algorithm: Algorithm::Md5,
        username: "alice",
        realm: "example.com",
        password: &password,
        method: "REGISTER",
        uri: "sip:example.com",
        nonce: "5a7b8c9d0e1f",
        cnonce: &cnonce,
        nc: 1,
        qop: Some(Qop::Auth),
        body: b"",
    });
    assert_eq!(field(&v, "response"), Some(want));

    // Success, then reuse of the nonce: nc goes up, printed as 8 hex digits.
    assert_eq!(a.handle_response(&Response::new(200, "OK")), Ok(false));
    for _ in 0..9 {
        a.authorize_request(&mut rng, &mut req);
    }
    let v = req.headers.get(&HeaderName::AUTHORIZATION).unwrap();
    assert_eq!(field(v, "nc").as_deref(), Some("0000000a"));
    assert_ne!(field(v, "cnonce"), Some(cnonce));
    assert_eq!(req.headers.get_all(&HeaderName::AUTHORIZATION).count(), 1);
}

#[test]
fn same_nonce_after_our_answer_is_wrong_password() {
    let mut rng = StdRng::seed_from_u64(2);
    let mut a = Authenticator::new(Credentials::new("alice", "bad"));
    let resp = challenge(401, &[r#"Digest realm="r", nonce="n1", qop="auth""#]);
    assert_eq!(a.handle_response(&resp), Ok(true));
    a.authorize_request(&mut rng, &mut register());
    assert_eq!(
        a.handle_response(&resp),
        Err(AuthError::WrongPassword { realm: "r".into() })
    );
    let e = AuthError::WrongPassword { realm: "r".into() };
    assert!(!e.to_string().contains("bad"));
}

#[test]
fn fresh_nonce_refusal_gets_one_more_try() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut a = Authenticator::new(Credentials::new("alice", "bad"));
    assert_eq!(
        a.handle_response(&challenge(401, &[r#"Digest realm="r", nonce="n1""#])),
        Ok(true)
    );
    a.authorize_request(&mut rng, &mut register());
    assert_eq!(
        a.handle_response(&challenge(401, &[r#"Digest realm="r", nonce="n2""#])),
        Ok(true)
    );
    a.authorize_request(&mut rng, &mut register());
    assert!(matches!(
        a.handle_response(&challenge(401, &[r#"Digest realm="r", nonce="n3""#])),
        Err(AuthError::WrongPassword { .. })
    ));
}

#[test]
fn stale_retries_silently_with_the_new_nonce() {
    let mut rng = StdRng::seed_from_u64(4);
    let mut a = Authenticator::new(Credentials::new("alice", "secret"));
    a.handle_response(&challenge(
        401,
        &[r#"Digest realm="r", nonce="n1", qop="auth""#],
    ))
    .unwrap();
    let mut req = register();
    a.authorize_request(&mut rng, &mut req);
    a.authorize_request(&mut rng, &mut req);
    for _ in 0..3 {
        // stale=true any number of times, even with a nonce we already used.
        assert_eq!(
            a.handle_response(&challenge(
                401,
                &[r#"Digest realm="r", nonce="n2", qop="auth", stale=true"#]
            )),
            Ok(true)
        );
        a.authorize_request(&mut rng, &mut req);
    }
    let v = req.headers.get(&HeaderName::AUTHORIZATION).unwrap();
    assert_eq!(field(v, "nonce").as_deref(), Some("n2"));
    assert_eq!(field(v, "nc").as_deref(), Some("00000003"));
}

#[test]
fn strongest_algorithm_per_realm_and_proxy_header() {
    let mut rng = StdRng::seed_from_u64(5);
    let mut a = Authenticator::new(Credentials::new("alice", "secret"));
    let mut resp = challenge(
        407,
        &[
            r#"Digest realm="p", nonce="a", algorithm=MD5, qop="auth""#,
            r#"Digest realm="p", nonce="b", algorithm=SHA-256, qop="auth""#,
        ],
    );
    resp.headers.push(
        HeaderName::WWW_AUTHENTICATE,
        r#"Digest realm="w", nonce="c", algorithm=SHA-512-256, qop="auth-int""#,
    );
    assert_eq!(response_challenges(&resp).len(), 3);
    assert_eq!(a.handle_response(&resp), Ok(true));
    let mut req = register();
    req.body = b"hello".to_vec();
    a.authorize_request(&mut rng, &mut req);
    let p = req.headers.get(&HeaderName::PROXY_AUTHORIZATION).unwrap();
    assert_eq!(field(p, "algorithm").as_deref(), Some("SHA-256"));
    assert_eq!(field(p, "nonce").as_deref(), Some("b"));
    let w = req.headers.get(&HeaderName::AUTHORIZATION).unwrap();
    assert_eq!(field(w, "algorithm").as_deref(), Some("SHA-512-256"));
    assert_eq!(field(w, "qop").as_deref(), Some("auth-int"));
    let password = Secret::new("secret");
    let want = digest_response(&DigestInput {
        algorithm: Algorithm::Sha512_256,
        username: "alice",
        realm: "w",
        password: &password,
        method: "REGISTER",
        uri: "sip:example.com",
        nonce: "c",
        cnonce: &field(w, "cnonce").unwrap(),
        nc: 1,
        qop: Some(Qop::AuthInt),
        body: b"hello",
    });
    assert_eq!(field(w, "response"), Some(want));
}

#[test]
fn unsupported_challenges_are_an_error() {
    let mut a = Authenticator::new(Credentials::new("alice", "secret"));
    assert!(matches!(
        a.handle_response(&challenge(
            401,
            &[r#"Digest realm="r", nonce="n", algorithm=SHA-1"#]
        )),
        Err(AuthError::Unsupported(_))
    ));
    assert!(matches!(
        a.handle_response(&challenge(401, &[r#"Basic realm="r""#])),
        Err(AuthError::Unsupported(_))
    ));
    assert!(matches!(
        a.handle_response(&challenge(
            401,
            &[r#"Digest realm="r", nonce="n", qop="auth-conf""#]
        )),
        Err(AuthError::Unsupported(_))
    ));
}

#[test]
fn no_qop_answer_has_no_nc_or_cnonce() {
    let mut rng = StdRng::seed_from_u64(6);
    let mut a = Authenticator::new(Credentials::new("alice", "secret"));
    a.handle_response(&challenge(
        401,
        &[r#"Digest realm="example.com", nonce="5a7b8c9d0e1f""#],
    ))
    .unwrap();
    let mut req = register();
    a.authorize_request(&mut rng, &mut req);
    let v = req.headers.get(&HeaderName::AUTHORIZATION).unwrap();
    assert_eq!(field(v, "nc"), None);
    assert_eq!(field(v, "cnonce"), None);
    assert_eq!(
        field(v, "response").as_deref(),
        Some("3d8332611e9cec6aea9564ac1cb0267c")
    );
}

proptest! {
    #[test]
    fn arbitrary_header_text_never_panics(s in "\\PC{0,200}") {
        let _ = parse_challenges(&s, false);
        let mut a = Authenticator::new(Credentials::new("u", "p"));
        let _ = a.handle_response(&challenge(401, &[&s]));
        let mut rng = StdRng::seed_from_u64(0);
        a.authorize_request(&mut rng, &mut register());
    }

    #[test]
    fn digest_like_text_never_panics(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("Digest ".to_string()), Just("realm=".to_string()), Just("nonce=".to_string()),
                Just("\"".to_string()), Just("\\".to_string()), Just(",".to_string()),
                Just("qop=\"auth,auth-int\"".to_string()), Just("algorithm=SHA-256-sess".to_string()),
                Just("stale=true".to_string()), Just(" ".to_string()), "[a-z0-9=]{0,5}",
            ],
            0..20,
        )
    ) {
        let s: String = parts.concat();
        let _ = parse_challenges(&s, true);
        let mut a = Authenticator::new(Credentials::new("u", "p"));
        let _ = a.handle_response(&challenge(407, &[&s]));
        let mut rng = StdRng::seed_from_u64(0);
        a.authorize_request(&mut rng, &mut register());
    }
}

#[test]
fn corpus_www_auth_dual_prefers_sha256_and_auth() {
    let raw = "SIP/2.0 401 Unauthorized\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKauth1;received=192.0.2.10;rport=5060\r\n\
From: <sip:alice@example.com>;tag=auth1\r\n\
To: <sip:alice@example.com>;tag=srv1\r\n\
Call-ID: auth-1@192.0.2.10\r\n\
CSeq: 1 REGISTER\r\n\
WWW-Authenticate: Digest realm=\"example.com\", nonce=\"5a7b8c9d0e1f\", opaque=\"xyz\", algorithm=SHA-256, qop=\"auth,auth-int\", stale=FALSE\r\n\
WWW-Authenticate: Digest realm=\"example.com\", nonce=\"5a7b8c9d0e1f\", opaque=\"xyz\", algorithm=MD5, qop=\"auth,auth-int\", stale=FALSE\r\n\
Content-Length: 0\r\n\r\n";
    let Ok(termphone::sip::msg::Message::Response(resp)) =
        termphone::sip::msg::Message::parse(raw.as_bytes())
    else {
        panic!("corpus message does not parse")
    };
    let cs = response_challenges(&resp);
    assert_eq!(cs.len(), 2);
    assert!(cs
        .iter()
        .all(|c| !c.stale && c.qop == vec![Qop::Auth, Qop::AuthInt]));
    let mut a = Authenticator::new(Credentials::new("alice", "secret"));
    assert_eq!(a.handle_response(&resp), Ok(true));
    let mut rng = StdRng::seed_from_u64(9);
    let mut req = Request::new(
        Method::Register,
        Uri::sip(None, Host::Domain("example.com".into()), None),
    );
    a.authorize_request(&mut rng, &mut req);
    let v = req.headers.get(&HeaderName::AUTHORIZATION).unwrap();
    assert_eq!(field(v, "algorithm").as_deref(), Some("SHA-256"));
    assert_eq!(field(v, "qop").as_deref(), Some("auth"));
    assert_eq!(field(v, "opaque").as_deref(), Some("xyz"));
    assert_eq!(req.headers.get_all(&HeaderName::AUTHORIZATION).count(), 1);
}
