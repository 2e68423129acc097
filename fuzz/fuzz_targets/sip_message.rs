//! Parsing never panics; an accepted message prints and parses back to the same message
//! (with Content-Length rewritten to the body length, as `to_bytes` does).
#![no_main]

use libfuzzer_sys::fuzz_target;
use termphone::sip::msg::{parse_datagram, Datagram, HeaderName, Message, StreamFramer};

fuzz_target!(|data: &[u8]| {
    let _ = parse_datagram(data);
    if let Ok(msg) = Message::parse(data) {
        let h = msg.headers();
        let _ = (h.vias(), h.from(), h.to(), h.call_id(), h.cseq(), h.contacts());
        let _ = (h.max_forwards(), h.expires(), h.name_addrs(&HeaderName::ROUTE));
        let printed = msg.to_bytes();
        let again = Message::parse(&printed).expect("a printed message parses");
        let mut expected = msg.clone();
        let len = expected.body().len().to_string();
        expected.headers_mut().set(HeaderName::CONTENT_LENGTH, len);
        assert_eq!(again, expected);
        assert_eq!(again.to_bytes(), printed);
    }
    let mut framer = StreamFramer::new(8192);
    for chunk in data.chunks(16) {
        framer.push(chunk);
        while let Ok(Some(d)) = framer.next() {
            if let Datagram::Message(m) = d {
                let _ = m.headers().vias();
            }
        }
    }
});
