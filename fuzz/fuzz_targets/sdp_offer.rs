//! Answering an arbitrary SDP offer never panics; an answer we produce is one we can read.
#![no_main]

use core::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use termphone::sip::sdp::{create_answer, process_answer, LocalMedia};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let local = LocalMedia::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000, 1);
    if let Ok((answer, _)) = create_answer(text, &local) {
        assert!(!answer.is_empty());
    }
    let _ = process_answer(&local, text);
});
