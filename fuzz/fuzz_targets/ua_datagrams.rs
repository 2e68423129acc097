//! The user agent core fed a sequence of arbitrary datagrams and timer ticks never panics and
//! never schedules a timer in the past (the drain invariant holds).
#![no_main]

use core::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use termphone::sip::txn::TimerConfig;
use termphone::sip::ua::{UaConfig, UserAgent};

fuzz_target!(|data: &[u8]| {
    let mut ua = UserAgent::new(UaConfig {
        user: "fuzz".into(),
        display_name: None,
        user_agent: "fuzz".into(),
        timers: TimerConfig::default(),
        seed: 7,
    });
    let peer: SocketAddr = "127.0.0.1:5062".parse().unwrap();
    let local: SocketAddr = "127.0.0.1:5061".parse().unwrap();
    let mut now = Instant::now();
    // 0xFF separates datagrams; 0xFE advances time by a second.
    for part in data.split(|b| *b == 0xFE) {
        for datagram in part.split(|b| *b == 0xFF) {
            ua.handle_datagram(now, datagram, peer, local);
            while ua.poll_transmit().is_some() {}
            while let Some(ev) = ua.poll_event() {
                if let termphone::sip::ua::UaEvent::Incoming { call, .. } = ev {
                    let _ = ua.answer(now, call, b"v=0\r\n".to_vec());
                }
            }
        }
        now += Duration::from_secs(1);
        if let Some(t) = ua.poll_timeout() {
            if t <= now {
                ua.handle_timeout(now);
            }
        }
        while ua.poll_transmit().is_some() {}
        while ua.poll_event().is_some() {}
    }
});
