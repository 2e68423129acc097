//! Property tests: print -> parse -> print round trips on generated URIs, Vias, NameAddrs
//! and messages; parsers never panic on arbitrary or mutated input.

use proptest::prelude::*;
use termphone::sip::msg::{
    parse_datagram, CSeq, Contacts, Datagram, HeaderName, Host, Message, Method, NameAddr, Params,
    Request, Response, Scheme, StreamFramer, Uri, Via, MAX_MESSAGE_SIZE,
};

// ---------- generators ----------

fn host() -> impl Strategy<Value = Host> {
    prop_oneof![
        "[a-zA-Z][a-zA-Z0-9-]{0,8}(\\.[a-zA-Z][a-zA-Z0-9_-]{0,8}){0,3}".prop_map(Host::Domain),
        any::<[u8; 4]>().prop_map(|o| Host::V4(o.into())),
        any::<[u16; 8]>().prop_map(|s| Host::V6(s.into())),
    ]
}

/// URI parameters: any text (the printer escapes), names non-empty.
fn uri_params() -> impl Strategy<Value = Params> {
    prop::collection::vec((".{1,6}", prop::option::of(".{0,6}")), 0..4).prop_map(|v| {
        let mut p = Params::new();
        for (n, val) in v {
            if !p.contains(&n) {
                p.set(&n, val.as_deref());
            }
        }
        p
    })
}

fn uri() -> impl Strategy<Value = Uri> {
    let sip = (
        prop_oneof![Just(Scheme::Sip), Just(Scheme::Sips)],
        prop::option::of((".{1,10}", prop::option::of(".{0,6}"))),
        host(),
        prop::option::of(any::<u16>()),
        uri_params(),
        prop::collection::vec((".{1,5}", ".{0,8}"), 0..3),
    )
        .prop_map(|(scheme, userinfo, host, port, params, headers)| {
            let mut u = Uri::sip(None, host, port);
            u.scheme = scheme;
            if let Some((user, password)) = userinfo {
                u.user = Some(user);
                u.password = password;
            }
            u.params = params;
            u.headers = headers;
            u
        });
    let tel = (".{1,12}", uri_params()).prop_map(|(number, params)| {
        let mut u = Uri::sip(Some(&number), Host::Domain(String::new()), None);
        u.scheme = Scheme::Tel;
        u.params = params;
        u
    });
    prop_oneof![3 => sip, 1 => tel]
}

fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Header parameters: token names; token, host-ish or quoted values.
fn header_params() -> impl Strategy<Value = Params> {
    let value = prop_oneof![
        "[a-zA-Z0-9.!%*_+`'~-]{1,10}",
        "[0-9a-f:.\\[\\]]{1,12}",
        "[^\r\n]{0,10}".prop_map(|s| quoted(&s)),
    ];
    prop::collection::vec(
        ("[a-zA-Z0-9.!%*_+`'~-]{1,8}", prop::option::of(value)),
        0..4,
    )
    .prop_map(|v| {
        let mut p = Params::new();
        for (n, val) in v {
            if !p.contains(&n) {
                p.set(&n, val.as_deref());
            }
        }
        p
    })
}

fn via() -> impl Strategy<Value = Via> {
    (
        "[A-Z]{1,6}",
        host(),
        prop::option::of(any::<u16>()),
        header_params(),
    )
        .prop_map(|(transport, host, port, params)| Via {
            transport,
            host,
            port,
            params,
        })
}

fn name_addr() -> impl Strategy<Value = NameAddr> {
    (prop::option::of("[^\r\n]{0,12}"), uri(), header_params()).prop_map(
        |(display, uri, params)| NameAddr {
            display,
            uri,
            params,
        },
    )
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        prop::sample::select(vec![
            "INVITE",
            "ACK",
            "BYE",
            "CANCEL",
            "OPTIONS",
            "REGISTER",
            "INFO",
            "PRACK",
            "UPDATE",
            "REFER",
            "NOTIFY",
            "SUBSCRIBE",
            "MESSAGE",
            "PUBLISH"
        ])
        .prop_map(Method::from_token),
        "[a-zA-Z0-9.!%*_+`'~-]{1,12}".prop_map(|s| Method::from_token(&s)),
    ]
}

fn trimmed(s: String) -> String {
    s.trim_matches([' ', '\t']).to_string()
}

/// One header line: typed headers print valid values, others get free text.
fn header() -> impl Strategy<Value = (HeaderName, String)> {
    prop_oneof![
        prop::collection::vec(via(), 1..3).prop_map(|v| (
            HeaderName::VIA,
            v.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        name_addr().prop_map(|n| (HeaderName::FROM, n.to_string())),
        name_addr().prop_map(|n| (HeaderName::TO, n.to_string())),
        name_addr().prop_map(|n| (HeaderName::CONTACT, n.to_string())),
        (any::<u32>(), method())
            .prop_map(|(seq, method)| (HeaderName::CSEQ, CSeq { seq, method }.to_string())),
        (0u32..=255).prop_map(|n| (HeaderName::MAX_FORWARDS, n.to_string())),
        "[0-9]{1,4}".prop_map(|n| (HeaderName::CONTENT_LENGTH, n)),
        "[^\r\n]{1,20}".prop_map(|v| (HeaderName::CALL_ID, trimmed(v))),
        ("X-[a-zA-Z0-9-]{1,10}", "[^\r\n]{0,30}")
            .prop_map(|(n, v)| (HeaderName::new(&n), trimmed(v))),
        "[^\r\n]{0,30}".prop_map(|v| (HeaderName::SUBJECT, trimmed(v))),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    let headers = || prop::collection::vec(header(), 0..8);
    let body = || prop::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        (method(), uri(), headers(), body()).prop_map(|(m, mut u, hs, body)| {
            u.headers.clear(); // not allowed in a Request-URI
            let mut r = Request::new(m, u);
            for (n, v) in hs {
                r.headers.push(n, v);
            }
            r.body = body;
            Message::Request(r)
        }),
        (100u16..=699, "[^\r\n]{0,20}", headers(), body()).prop_map(|(code, reason, hs, body)| {
            let mut r = Response::new(code, trimmed(reason));
            for (n, v) in hs {
                r.headers.push(n, v);
            }
            r.body = body;
            Message::Response(r)
        }),
    ]
}

/// `to_bytes` rewrites Content-Length to the body length (in place of the first one).
fn normalized(msg: &Message) -> Message {
    let mut m = msg.clone();
    let len = m.body().len().to_string();
    m.headers_mut().set(HeaderName::CONTENT_LENGTH, len);
    m
}

/// Call every typed reader; none may panic.
fn read_all(m: &Message) {
    let h = m.headers();
    let _ = (
        h.vias(),
        h.top_via(),
        h.from(),
        h.to(),
        h.call_id(),
        h.cseq(),
        h.contacts(),
    );
    let _ = (h.max_forwards(), h.expires(), h.content_type());
    let _ = h.name_addrs(&HeaderName::ROUTE);
    let _ = h.name_addrs(&HeaderName::RECORD_ROUTE);
    let _ = h.tokens(&HeaderName::ALLOW);
}

// ---------- round trips ----------

proptest! {
    #[test]
    fn uri_round_trip(u in uri()) {
        let printed = u.to_string();
        let parsed: Uri = printed.parse().map_err(|e| TestCaseError::fail(format!("{printed}: {e}")))?;
        prop_assert_eq!(&parsed, &u, "{}", printed);
        prop_assert_eq!(parsed.to_string(), printed);
    }

    #[test]
    fn via_round_trip(v in via()) {
        let printed = v.to_string();
        let parsed: Via = printed.parse().map_err(|e| TestCaseError::fail(format!("{printed}: {e}")))?;
        prop_assert_eq!(&parsed, &v, "{}", printed);
        prop_assert_eq!(parsed.to_string(), printed);
    }

    #[test]
    fn name_addr_round_trip(n in name_addr()) {
        let printed = n.to_string();
        let parsed: NameAddr = printed.parse().map_err(|e| TestCaseError::fail(format!("{printed}: {e}")))?;
        prop_assert_eq!(&parsed, &n, "{}", printed);
        prop_assert_eq!(parsed.to_string(), printed);
    }

    #[test]
    fn message_round_trip(m in message()) {
        let printed = m.to_bytes();
        let parsed = Message::parse(&printed)
            .map_err(|e| TestCaseError::fail(format!("{}: {e}", String::from_utf8_lossy(&printed))))?;
        prop_assert_eq!(&parsed, &normalized(&m));
        prop_assert_eq!(parsed.to_bytes(), printed.clone());
        let mut framer = StreamFramer::new(MAX_MESSAGE_SIZE);
        framer.push(&printed);
        prop_assert_eq!(framer.next().unwrap(), Some(Datagram::Message(parsed)));
    }
}

proptest! {
    /// Messages (with keepalives between them) cut anywhere come out of the stream framer
    /// whole and in order.
    #[test]
    fn stream_split_anywhere(
        msgs in prop::collection::vec(message(), 1..4),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        keepalive in any::<bool>(),
    ) {
        let mut stream = Vec::new();
        for m in &msgs {
            if keepalive {
                stream.extend_from_slice(b"\r\n\r\n");
            }
            stream.extend_from_slice(&m.to_bytes());
        }
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        cuts.push(0);
        cuts.push(stream.len());
        cuts.sort_unstable();
        let mut framer = StreamFramer::new(MAX_MESSAGE_SIZE);
        let (mut got, mut keepalives) = (Vec::new(), 0);
        for pair in cuts.windows(2) {
            framer.push(&stream[pair[0]..pair[1]]);
            while let Some(d) = framer.next().unwrap() {
                match d {
                    Datagram::KeepAlive => keepalives += 1,
                    Datagram::Message(m) => got.push(m),
                }
            }
        }
        let expected: Vec<Message> = msgs.iter().map(normalized).collect();
        prop_assert_eq!(got, expected);
        prop_assert_eq!(keepalive, keepalives > 0);
        prop_assert_eq!(framer.buffered(), 0);
    }
}

// ---------- never panics ----------

fn corpus() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sip-corpus");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sip"))
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let special = prop::sample::select(vec![
        &b"\""[..],
        b"\\",
        b"<",
        b">",
        b";",
        b",",
        b":",
        b"\r\n",
        b"\n",
        b"\r\n ",
        b"%",
        b"%4",
        b"[",
        b"]",
        b"@",
        b"=",
        b"\0",
        b"\xff",
        b"\xc3",
        b" ",
        b"\t",
        b"?",
        b"&",
        b"*",
        b"999999999999",
    ]);
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), special).prop_map(|(i, s)| Mutation::Insert(i, s.to_vec())),
        (any::<usize>(), 1usize..20).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

/// If `s` parses as `T`, printing it and parsing again gives the same value and text.
fn reparse_stable<T>(s: &str) -> Result<(), TestCaseError>
where
    T: std::str::FromStr + std::fmt::Display + PartialEq + std::fmt::Debug,
    T::Err: std::fmt::Display,
{
    if let Ok(v) = s.parse::<T>() {
        let printed = v.to_string();
        let again = printed
            .parse::<T>()
            .map_err(|e| TestCaseError::fail(format!("{s:?} -> {printed:?}: {e}")))?;
        prop_assert_eq!(&again, &v, "{:?} -> {:?}", s, printed);
        prop_assert_eq!(again.to_string(), printed);
    }
    Ok(())
}

fn apply(data: &mut Vec<u8>, m: &Mutation) {
    let len = data.len().max(1);
    match m {
        Mutation::Flip(i, b) => {
            if !data.is_empty() {
                data[i % len] = *b;
            }
        }
        Mutation::Insert(i, s) => {
            let at = i % (data.len() + 1);
            data.splice(at..at, s.iter().copied());
        }
        Mutation::Delete(i, n) => {
            let at = i % len;
            let end = (at + n).min(data.len());
            if at < end {
                data.drain(at..end);
            }
        }
        Mutation::Truncate(i) => data.truncate(i % len),
    }
}

/// Parse must not panic; if it accepts, printing and parsing again gives the same message.
fn check_bytes(data: &[u8]) -> Result<(), TestCaseError> {
    let _ = parse_datagram(data);
    if let Ok(m) = Message::parse(data) {
        read_all(&m);
        let printed = m.to_bytes();
        let again = Message::parse(&printed)
            .map_err(|e| TestCaseError::fail(format!("reprint does not parse: {e}")))?;
        prop_assert_eq!(again, normalized(&m));
    }
    let mut framer = StreamFramer::new(4096);
    for chunk in data.chunks(7) {
        framer.push(chunk);
        for _ in 0..4 {
            match framer.next() {
                Ok(Some(Datagram::Message(m))) => read_all(&m),
                Ok(Some(Datagram::KeepAlive)) | Err(_) => {}
                Ok(None) => break,
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_bytes(data in prop::collection::vec(any::<u8>(), 0..300)) {
        check_bytes(&data)?;
    }

    #[test]
    fn never_panics_on_text(s in "[ -~\r\n\t\"<>;,:%@\\[\\]]{0,120}") {
        reparse_stable::<Uri>(&s)?;
        reparse_stable::<Via>(&s)?;
        reparse_stable::<NameAddr>(&s)?;
        reparse_stable::<CSeq>(&s)?;
        reparse_stable::<Contacts>(&s)?;
        reparse_stable::<Host>(&s)?;
        check_bytes(s.as_bytes())?;
    }

    /// Text shaped like the values these parsers see, so that many of them parse.
    #[test]
    fn accepted_values_reprint_stably(
        s in "(sips?|tel|SIP):([a-z%0-9;=@:?&.\\[\\]-]{0,12})|SIP/2.0/[a-zA-Z]{1,3} ([a-z0-9.]{1,8}|\\[[0-9a-f:]{2,8}\\])( ?: ?[0-9]{1,6})?( ?; ?[a-z]{1,5}( ?= ?[a-z0-9.:\"\\[\\]]{0,6})?){0,3}|(\"[a-z \\\\\"]{0,6}\" )?<sip:[a-z@%:;=0-9.]{1,12}>[; =a-z0-9\",]{0,12}"
    ) {
        reparse_stable::<Uri>(&s)?;
        reparse_stable::<Via>(&s)?;
        reparse_stable::<NameAddr>(&s)?;
        reparse_stable::<Contacts>(&s)?;
    }

    #[test]
    fn never_panics_on_mutated_corpus(
        pick in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let corpus = corpus();
        let mut data = pick.get(&corpus).clone();
        for m in &mutations {
            apply(&mut data, m);
        }
        check_bytes(&data)?;
    }
}
