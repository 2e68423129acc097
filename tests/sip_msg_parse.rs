//! Message-level parse/print tests: framing rules, leniency (LF, folding, LWS), the
//! messages RFC 4475 §3.1.2 says to reject, and the exact printed form.

use termphone::sip::msg::{
    default_reason, parse_datagram, Datagram, HeaderName, Host, Message, Method, NameAddr, Request,
    Response, Uri, Via,
};

fn crlf(s: &str) -> Vec<u8> {
    s.replace('\n', "\r\n").into_bytes()
}

const OPTIONS: &str = "OPTIONS sip:bob@example.org SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK1
From: <sip:alice@example.com>;tag=a1
To: <sip:bob@example.org>
Call-ID: c1@192.0.2.10
CSeq: 1 OPTIONS
Max-Forwards: 70
";

fn with(extra: &str, body: &str) -> Vec<u8> {
    crlf(&format!("{OPTIONS}{extra}\n{body}"))
}

#[test]
fn request_basics() {
    let m = Message::parse(&with("Content-Length: 0\n", "")).unwrap();
    let Message::Request(r) = &m else { panic!() };
    assert_eq!(r.method, Method::Options);
    assert_eq!(r.uri.to_string(), "sip:bob@example.org");
    assert_eq!(m.headers().len(), 7);
    assert_eq!(m.headers().top_via().unwrap().branch(), Some("z9hG4bK1"));
    assert!(m.body().is_empty());
}

#[test]
fn body_rules_for_datagrams() {
    // No Content-Length: the body is the rest of the datagram.
    let m = Message::parse(&with("", "hello")).unwrap();
    assert_eq!(m.body(), b"hello");
    // Smaller: truncated.
    let m = Message::parse(&with("l: 2\n", "hello")).unwrap();
    assert_eq!(m.body(), b"he");
    // Larger, negative, not a number, huge: rejected.
    for cl in ["6", "-1", "abc", "5 5", "", "99999999999999999999", "65536"] {
        let data = with(&format!("Content-Length: {cl}\n"), "hello");
        assert!(Message::parse(&data).is_err(), "Content-Length {cl:?}");
    }
    // Two Content-Length headers that agree are fine; disagreeing ones are not.
    assert!(Message::parse(&with("l: 5\nContent-Length: 5\n", "hello")).is_ok());
    assert!(Message::parse(&with("l: 5\nContent-Length: 4\n", "hello")).is_err());
}

#[test]
fn body_stays_bytes() {
    let mut data = with("Content-Type: application/octet-stream\n", "");
    data.extend_from_slice(&[0, 0xff, 0xfe, b'\r', b'\n']);
    let m = Message::parse(&data).unwrap();
    assert_eq!(m.body(), &[0, 0xff, 0xfe, b'\r', b'\n']);
}

#[test]
fn lenient_input() {
    // Bare LF, leading CRLFs, whitespace before colons, folding, compact names.
    let text = "\r\n\r\nOPTIONS sip:bob@example.org SIP/2.0\n\
                v  : SIP/2.0/UDP 192.0.2.10\n  ;branch=z9hG4bKx\n\
                f\t: <sip:a@b>\n ;tag=1\n\
                t: <sip:c@d>\n\
                i: x@y\n\
                CSeq: 2\n   OPTIONS\n\
                Subject:\n  folded\n\tacross lines\n\
                \n";
    let m = Message::parse(text.as_bytes()).unwrap();
    let h = m.headers();
    assert_eq!(h.top_via().unwrap().branch(), Some("z9hG4bKx"));
    assert_eq!(
        h.get(&HeaderName::VIA),
        Some("SIP/2.0/UDP 192.0.2.10 ;branch=z9hG4bKx")
    );
    assert_eq!(h.from().unwrap().tag(), Some("1"));
    assert_eq!(h.cseq().unwrap().seq, 2);
    assert_eq!(h.get(&HeaderName::SUBJECT), Some("folded across lines"));
    assert_eq!(h.call_id().unwrap(), "x@y");
}

#[test]
fn missing_mandatory_headers_is_not_a_parse_error() {
    let m = Message::parse(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n").unwrap();
    assert!(m.headers().is_empty());
    assert!(m.headers().top_via().is_err());
    let m = Message::parse(b"SIP/2.0 200 OK\r\n\r\n").unwrap();
    assert!(matches!(m, Message::Response(ref r) if r.code == 200 && r.reason == "OK"));
}

#[test]
fn status_lines() {
    let reason = |line: &str| match Message::parse(format!("{line}\r\n\r\n").as_bytes()) {
        Ok(Message::Response(r)) => Ok((r.code, r.reason)),
        Ok(_) => panic!("request"),
        Err(e) => Err(e),
    };
    assert_eq!(reason("SIP/2.0 100 ").unwrap(), (100, String::new()));
    assert_eq!(reason("SIP/2.0 180").unwrap(), (180, String::new()));
    assert_eq!(
        reason("SIP/2.0 404 Not  Found").unwrap(),
        (404, "Not  Found".into())
    );
    assert_eq!(reason("sip/2.0 699 x").unwrap().0, 699);
    for bad in [
        "SIP/2.0 99 Low",
        "SIP/2.0 700 High",
        "SIP/2.0 099 Zero",
        "SIP/2.0 4294967301 Big",
        "SIP/2.0 20x OK",
        "SIP/2.0 +20 OK",
        "SIP/7.0 200 OK",
        "SIP/2.0",
        "SIP/2.00 200 OK",
    ] {
        assert!(reason(bad).is_err(), "{bad}");
    }
}

/// RFC 4475 §3.1.2 invalid messages (beyond the corpus) and similar shapes.
#[test]
fn rejected_messages() {
    let bad_request_lines = [
        "INVITE sip:user@example.com; lr SIP/2.0", // lwsruri
        "INVITE  sip:user@example.com  SIP/2.0",   // lwsstart
        "OPTIONS sip:remote-target@example.com SIP/2.0  ", // trws
        "INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0", // escruri
        "INVITE <sip:user@example.com> SIP/2.0",   // ltgtruri
        "INVITE sip:user@example.com SIP/7.0",     // badvers
        "IN VITE sip:user@example.com SIP/2.0",
        "INV\"ITE sip:user@example.com SIP/2.0",
        "INVITE mailto:user@example.com SIP/2.0",
        "INVITE",
        "",
    ];
    for line in bad_request_lines {
        let data = crlf(&format!(
            "{line}\n{}\n",
            &OPTIONS[OPTIONS.find('\n').unwrap() + 1..]
        ));
        assert!(Message::parse(&data).is_err(), "{line}");
    }
    let bad_headers = [
        "Via: SIP/2.0/UDP 192.0.2.15;;,;,,\n", // badinv01
        "From: Bell, Alexander <sip:a.g.bell@example.com>;tag=43\n", // baddn (replaces From below)
        "Max-Forwards: 300\n",
        "CSeq: 36893488147419103232 OPTIONS\n",
        "To: \"Mr. J. User <sip:j.user@example.com>\n",
        "No colon here\n",
        "Bad Name: x\n",
        "X-Not-Utf8: \u{FFFD}\n",
    ];
    for extra in bad_headers {
        let name = &extra[..extra.find(':').unwrap_or(0)];
        let base: String = OPTIONS
            .lines()
            .filter(|l| name.is_empty() || !l.starts_with(&format!("{name}:")))
            .map(|l| format!("{l}\n"))
            .collect();
        let mut data = crlf(&format!("{base}{extra}\n"));
        if extra.starts_with("X-Not-Utf8") {
            let at = data
                .windows(3)
                .position(|w| w == "\u{FFFD}".as_bytes())
                .unwrap();
            data.splice(at..at + 3, [0xff, 0xfe]);
        }
        let err = Message::parse(&data).expect_err(extra);
        assert!(!err.reason().is_empty());
    }
    // A stray CR inside a line, and a continuation line first.
    assert!(Message::parse(&with("X-A: a\rb\n", "")).is_err());
    assert!(Message::parse(b"OPTIONS sip:a@b SIP/2.0\r\n folded\r\n\r\n").is_err());
    // No empty line after the headers.
    assert!(Message::parse(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n").is_err());
}

#[test]
fn request_headers_for_a_400() {
    let data = crlf(&format!(
        "{}\n{}\n",
        "INVITE sip:a@b SIP/7.0",
        &OPTIONS[OPTIONS.find('\n').unwrap() + 1..]
    ));
    let err = Message::parse(&data).unwrap_err();
    let h = err.request_headers().unwrap();
    assert_eq!(h.call_id().unwrap(), "c1@192.0.2.10");
    assert_eq!(h.top_via().unwrap().branch(), Some("z9hG4bK1"));
    // Bad Max-Forwards in a request: headers kept too.
    let err = Message::parse(&with("Max-Forwards: 999\n", "")).unwrap_err();
    assert!(err.request_headers().is_some());
    // Responses never carry them; nor do messages whose header lines do not parse.
    let err = Message::parse(b"SIP/2.0 200 OK\r\nl: x\r\n\r\n").unwrap_err();
    assert!(err.request_headers().is_none());
    let err = Message::parse(&with("junk\n", "")).unwrap_err();
    assert!(err.request_headers().is_none());
}

#[test]
fn print_exact() {
    let mut r = Request::new(
        Method::Invite,
        "sip:bob@[2001:db8::10]:5070".parse().unwrap(),
    );
    let via = Via::new(
        "UDP",
        Host::V4("192.0.2.10".parse().unwrap()),
        Some(5060),
        "z9hG4bKp",
    );
    r.headers.push(HeaderName::VIA, via.to_string());
    let mut from = NameAddr::new(Uri::sip(
        Some("alice"),
        Host::Domain("example.com".into()),
        None,
    ));
    from.display = Some("Alice".into());
    from.set_tag("t1");
    r.headers.push(HeaderName::FROM, from.to_string());
    r.headers
        .push(HeaderName::new("x-injected"), "a\r\nEvil: 1");
    r.body = b"v=0\r\n".to_vec();
    let expected = "INVITE sip:bob@[2001:db8::10]:5070 SIP/2.0\r\n\
                    Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKp\r\n\
                    From: \"Alice\" <sip:alice@example.com>;tag=t1\r\n\
                    x-injected: a  Evil: 1\r\n\
                    Content-Length: 5\r\n\r\nv=0\r\n";
    assert_eq!(String::from_utf8(r.to_bytes()).unwrap(), expected);
    assert_eq!(Message::from(r.clone()).to_bytes(), r.to_bytes());

    // Content-Length replaces the first one in place, others are dropped.
    let mut resp = Response::new(200, default_reason(200));
    resp.headers.push(HeaderName::CONTENT_LENGTH, "99");
    resp.headers.push(HeaderName::CALL_ID, "x");
    resp.headers.push(HeaderName::new("l"), "7");
    assert_eq!(
        String::from_utf8(resp.to_bytes()).unwrap(),
        "SIP/2.0 200 OK\r\nContent-Length: 0\r\nCall-ID: x\r\n\r\n"
    );
}

#[test]
fn datagram_and_reasons() {
    assert_eq!(parse_datagram(b"\r\n\r\n").unwrap(), Datagram::KeepAlive);
    assert!(matches!(
        parse_datagram(&with("", "")).unwrap(),
        Datagram::Message(_)
    ));
    assert_eq!(default_reason(180), "Ringing");
    assert_eq!(default_reason(486), "Busy Here");
    assert_eq!(default_reason(487), "Request Terminated");
    assert_eq!(default_reason(299), "");
}

#[test]
fn error_reasons_say_what_and_where() {
    let reason = |data: &[u8]| Message::parse(data).unwrap_err().reason().to_string();
    let data = crlf(&format!(
        "INVITE im:bob@example.com SIP/2.0\n{}\n",
        &OPTIONS[OPTIONS.find('\n').unwrap() + 1..]
    ));
    assert_eq!(reason(&data), "bad Request-URI: unsupported URI scheme");
    let data = with("Via: SIP/2.0/UDP host:99999\n", "");
    assert_eq!(reason(&data), "bad Via header: bad port");
    assert_eq!(
        reason(&with("l: 9\n", "")),
        "Content-Length larger than the message"
    );
    assert_eq!(
        reason(b"SIP/2.0 200 OK\r\nl: -1\r\n\r\n"),
        "bad Content-Length"
    );
    let e = Message::parse(&with("To: \"x <sip:a@b>\n", "")).unwrap_err();
    assert_eq!(e.reason(), "bad To header: unterminated quoted string");
    assert_eq!(e.to_string(), e.reason());
}

/// RFC 4475 §3.3.4 unksm2: unknown URI schemes in To/From/Contact are well-formed; the
/// message parses, and only the typed reader of that header reports the scheme.
#[test]
fn unknown_scheme_in_headers_is_not_a_parse_error() {
    let text = "REGISTER sip:example.com SIP/2.0\n\
                To: isbn:2983792873\n\
                From: <http://www.example.com>;tag=3234233\n\
                Call-ID: unksm2.daksdj@hyphenated-host.example.com\n\
                CSeq: 234902 REGISTER\n\
                Max-Forwards: 70\n\
                Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw\n\
                Contact: <name:John_Smith>\n\
                l: 0\n\n";
    let m = Message::parse(&crlf(text)).unwrap();
    let h = m.headers();
    assert_eq!(
        h.to().unwrap_err().reason(),
        "bad To header: unsupported URI scheme"
    );
    assert!(h.from().is_err() && h.contacts().is_err());
    assert_eq!(h.cseq().unwrap().method, Method::Register);
    // In the Request-URI it is an error (the caller answers 416).
    let text = text.replace(
        "REGISTER sip:example.com",
        "OPTIONS nobodyknowsthisscheme:totallyopaquecontent",
    );
    let e = Message::parse(&crlf(&text)).unwrap_err();
    assert_eq!(e.reason(), "bad Request-URI: unsupported URI scheme");
    assert!(e.request_headers().is_some());
}

/// RFC 4475 §3.1.1.8 dblreq: a datagram whose Content-Length: 0 is followed by a second
/// message; only the first one counts.
#[test]
fn datagram_with_trailing_message() {
    let first = "REGISTER sip:example.com SIP/2.0\n\
                 To: sip:j.user@example.com\n\
                 From: sip:j.user@example.com;tag=43251j3j324\n\
                 Max-Forwards: 8\n\
                 I: dblreq.0ha0isndaksdj99sdfafnl3lk233412\n\
                 Contact: sip:j.user@host.example.com\n\
                 CSeq: 8 REGISTER\n\
                 Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492\n\
                 Content-Length: 0\n\n";
    let second = "INVITE sip:joe@example.com SIP/2.0\nt: sip:joe@example.com\n\n";
    let m = Message::parse(&crlf(&format!("{first}{second}"))).unwrap();
    assert!(matches!(&m, Message::Request(r) if r.method == Method::Register));
    assert!(m.body().is_empty());
    assert_eq!(
        m.headers().call_id().unwrap(),
        "dblreq.0ha0isndaksdj99sdfafnl3lk233412"
    );
}

/// RFC 4475 §3.4.1 inv2543: an RFC 2543 request (no branch, addr-spec everywhere) parses.
#[test]
fn rfc2543_request() {
    let text = "INVITE sip:UserB@example.com SIP/2.0\n\
                Via: SIP/2.0/UDP iftgw.example.com\n\
                From: <sip:+13035551111@ift.client.example.net;user=phone>\n\
                Record-Route: <sip:UserB@example.com;maddr=ss1.example.com>\n\
                To: sip:+16505552222@ss1.example.net;user=phone\n\
                Call-ID: inv2543.1717@ift.client.example.com\n\
                CSeq: 56 INVITE\n\
                Content-Type: application/sdp\n\n\
                v=0\n";
    let m = Message::parse(&crlf(text)).unwrap();
    let h = m.headers();
    let via = h.top_via().unwrap();
    assert_eq!(via.branch(), None);
    assert_eq!(via.sent_by(), "iftgw.example.com");
    assert_eq!(h.from().unwrap().tag(), None);
    assert_eq!(
        h.from().unwrap().uri.params.get_value("user"),
        Some("phone")
    );
    // addr-spec: ;user=phone belongs to the To header, not to its URI.
    assert_eq!(h.to().unwrap().params.get_value("user"), Some("phone"));
    let rr = h.name_addrs(&HeaderName::RECORD_ROUTE).unwrap();
    assert_eq!(rr[0].uri.params.get_value("maddr"), Some("ss1.example.com"));
    assert_eq!(m.body(), b"v=0\r\n");
}
