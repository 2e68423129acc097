//! RTP parsing never panics; a parsed packet prints and parses back to itself; a media session
//! fed arbitrary datagrams never panics.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use termphone::media::{CodecParams, MediaConfig, MediaSession, RtpPacket};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = RtpPacket::parse(data) {
        let bytes = p.to_bytes();
        assert_eq!(RtpPacket::parse(&bytes).expect("printed packet parses"), p);
    }
    let mut session = MediaSession::new(MediaConfig {
        codec: CodecParams::pcmu(),
        telephone_event_pt: Some(101),
        ptime_ms: 20,
        ssrc: 1,
        initial_seq: 0,
        initial_ts: 0,
    })
    .expect("valid config");
    let t0 = Instant::now();
    let mut out = Vec::new();
    for (i, chunk) in data.chunks(32).enumerate() {
        let now = t0 + Duration::from_millis(20 * i as u64);
        session.handle_rtp(now, chunk);
        session.playout(now, &mut out);
        while session.poll_event().is_some() {}
    }
});
