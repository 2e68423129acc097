//! The 37-message parser corpus (tests/data/sip-corpus, from the SIP stack study): every
//! expected field of expected.json is checked, and every `bad_*` message must be rejected.

use std::path::PathBuf;

use serde_json::Value;
use termphone::sip::msg::{
    parse_datagram, Contacts, Datagram, HeaderName, Host, Message, Scheme, StreamFramer,
    MAX_MESSAGE_SIZE,
};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/sip-corpus")
}

fn bare_host(h: &Host) -> String {
    match h {
        Host::Domain(d) => d.clone(),
        Host::V4(a) => a.to_string(),
        Host::V6(a) => a.to_string(),
    }
}

/// The fields of expected.json, extracted the way the study's harness did.
fn extract(msg: &Message) -> Result<Vec<(&'static str, Value)>, String> {
    let h = msg.headers();
    let e = |e: termphone::sip::msg::ParseError| e.to_string();
    let (start, ruri) = match msg {
        Message::Request(r) => (
            format!("REQ {}", r.method),
            match r.uri.scheme {
                Scheme::Tel => "tel".to_string(),
                _ => bare_host(&r.uri.host),
            },
        ),
        Message::Response(r) => (format!("RES {}", r.code), "-".to_string()),
    };
    let vias = h.vias().map_err(e)?;
    let via0 = vias
        .first()
        .map(|v| {
            format!(
                "{} {} {}",
                v.transport,
                bare_host(&v.host),
                v.branch().unwrap_or("")
            )
        })
        .unwrap_or_default();
    let from = h.from().map_err(e)?;
    let to = h.to().map_err(e)?;
    let cseq = h.cseq().map_err(e)?;
    let (contacts, contact0) = match h.contacts().map_err(e)? {
        Contacts::Star => (Value::from("*"), String::new()),
        Contacts::List(l) => (
            Value::from(l.len()),
            l.first()
                .map(|c| bare_host(&c.uri.host))
                .unwrap_or_default(),
        ),
    };
    Ok(vec![
        ("start", start.into()),
        ("ruri", ruri.into()),
        ("vias", vias.len().into()),
        ("via0", via0.into()),
        ("from_name", from.display.clone().unwrap_or_default().into()),
        ("from_tag", from.tag().unwrap_or("").into()),
        ("to_tag", to.tag().unwrap_or("").into()),
        ("call_id", h.call_id().map_err(e)?.into()),
        ("cseq", cseq.to_string().into()),
        ("contacts", contacts),
        ("contact0", contact0.into()),
        ("body_len", msg.body().len().into()),
    ])
}

/// What `to_bytes` then `parse` must give back: the same message with Content-Length
/// rewritten to the body length.
fn normalized(msg: &Message) -> Message {
    let mut m = msg.clone();
    let len = m.body().len().to_string();
    m.headers_mut().set(HeaderName::CONTENT_LENGTH, len);
    m
}

fn first_message(name: &str, data: &[u8]) -> Result<Message, String> {
    if name == "tcp_two_messages" {
        let mut framer = StreamFramer::new(MAX_MESSAGE_SIZE);
        framer.push(data);
        let first = framer.next().map_err(|e| e.to_string())?;
        let second = framer.next().map_err(|e| e.to_string())?;
        assert!(framer.next().unwrap().is_none(), "{name}: a third message");
        let (Some(Datagram::Message(first)), Some(Datagram::Message(second))) = (first, second)
        else {
            return Err("framer did not give two messages".into());
        };
        assert_eq!(second.headers().from().unwrap().tag(), Some("tcp2"));
        assert!(second.body().is_empty());
        return Ok(first);
    }
    let msg = Message::parse(data).map_err(|e| e.to_string())?;
    assert_eq!(
        parse_datagram(data).unwrap(),
        Datagram::Message(msg.clone())
    );
    Ok(msg)
}

#[test]
fn corpus() {
    let dir = corpus_dir();
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let cases = expected.as_object().unwrap();
    assert_eq!(cases.len(), 37);
    let mut failures = Vec::new();
    for (name, case) in cases {
        let data = std::fs::read(dir.join(format!("{name}.sip"))).unwrap();
        let expect = &case["expect"];
        let reject = expect == "reject" || expect.get("reject") == Some(&Value::Bool(true));
        if reject {
            match Message::parse(&data) {
                Ok(m) => failures.push(format!("{name}: accepted, should be rejected: {m:?}")),
                Err(e) => assert!(!e.reason().contains(['\r', '\n'])),
            }
            continue;
        }
        let msg = match first_message(name, &data) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{name}: rejected: {e}"));
                continue;
            }
        };
        match extract(&msg) {
            Err(e) => failures.push(format!("{name}: typed header failed: {e}")),
            Ok(fields) => {
                for (field, got) in fields {
                    if expect[field] != got {
                        failures.push(format!("{name}: {field} = {got}, want {}", expect[field]));
                    }
                }
            }
        }
        let printed = msg.to_bytes();
        let reparsed = Message::parse(&printed)
            .unwrap_or_else(|e| panic!("{name}: printed message does not parse: {e}"));
        assert_eq!(reparsed, normalized(&msg), "{name}: print/parse round trip");
        assert_eq!(reparsed.to_bytes(), printed, "{name}: print is stable");
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn bad_request_keeps_headers_for_a_400() {
    let data = std::fs::read(corpus_dir().join("bad_ltgtruri.sip")).unwrap();
    let err = Message::parse(&data).unwrap_err();
    let headers = err.request_headers().expect("request headers");
    assert_eq!(headers.call_id().unwrap(), "ltgtruri.1@192.0.2.5");
    assert_eq!(headers.cseq().unwrap().seq, 1);

    let data = std::fs::read(corpus_dir().join("bad_ncl.sip")).unwrap();
    assert!(Message::parse(&data)
        .unwrap_err()
        .request_headers()
        .is_some());

    let data = std::fs::read(corpus_dir().join("bad_bigcode.sip")).unwrap();
    assert!(Message::parse(&data)
        .unwrap_err()
        .request_headers()
        .is_none());
}
