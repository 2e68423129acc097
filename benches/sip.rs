//! SIP costs: parsing and printing a typical INVITE with SDP, and a whole call (INVITE, 180,
//! 200, ACK, BYE, 200) between two in-memory user agents.

use std::hint::black_box;
use std::time::Instant;

use core::net::SocketAddr;

use criterion::{criterion_group, criterion_main, Criterion};
use termphone::sip::msg::Message;
use termphone::sip::txn::TimerConfig;
use termphone::sip::ua::{UaConfig, UaEvent, UserAgent};

const INVITE: &[u8] = include_bytes!("../tests/data/sip-corpus/basic_invite_sdp.sip");

fn parse(c: &mut Criterion) {
    c.bench_function("sip_parse_invite_850b", |b| {
        b.iter(|| Message::parse(black_box(INVITE)).unwrap())
    });
    c.bench_function("sip_parse_invite_typed_headers", |b| {
        b.iter(|| {
            let m = Message::parse(black_box(INVITE)).unwrap();
            let h = m.headers();
            black_box((
                h.vias().unwrap(),
                h.from().unwrap(),
                h.to().unwrap(),
                h.cseq().unwrap(),
            ));
        })
    });
    let msg = Message::parse(INVITE).unwrap();
    c.bench_function("sip_print_invite", |b| {
        b.iter(|| black_box(&msg).to_bytes())
    });
}

fn ua(user: &str, seed: u64) -> UserAgent {
    UserAgent::new(UaConfig {
        user: user.into(),
        display_name: None,
        user_agent: "bench".into(),
        timers: TimerConfig::default(),
        seed,
    })
}

/// Move every datagram between the two agents until both are quiet.
fn pump(
    a: &mut UserAgent,
    b: &mut UserAgent,
    now: Instant,
    addr_a: SocketAddr,
    addr_b: SocketAddr,
) -> Vec<UaEvent> {
    let mut b_events = Vec::new();
    loop {
        let mut moved = false;
        while let Some(t) = a.poll_transmit() {
            moved = true;
            b.handle_datagram(now, &t.message.to_bytes(), addr_a, addr_b);
        }
        while let Some(t) = b.poll_transmit() {
            moved = true;
            a.handle_datagram(now, &t.message.to_bytes(), addr_b, addr_a);
        }
        while a.poll_event().is_some() {}
        b_events.extend(std::iter::from_fn(|| b.poll_event()));
        if !moved {
            return b_events;
        }
    }
}

fn call(c: &mut Criterion) {
    let addr_a: SocketAddr = "127.0.0.1:5061".parse().unwrap();
    let addr_b: SocketAddr = "127.0.0.1:5062".parse().unwrap();
    let target = format!("sip:bob@{addr_b}").parse().unwrap();
    let mut a = ua("alice", 1);
    let mut b = ua("bob", 2);
    let mut now = Instant::now();
    c.bench_function("sip_call_setup_and_teardown", |bench| {
        bench.iter(|| {
            // Let the previous call's transactions expire, so the layers stay small.
            now += std::time::Duration::from_secs(40);
            a.handle_timeout(now);
            b.handle_timeout(now);
            pump(&mut a, &mut b, now, addr_a, addr_b);
            let id = a.invite(
                now,
                Clone::clone(&target),
                addr_b,
                addr_a,
                b"v=0\r\n".to_vec(),
            );
            let events = pump(&mut a, &mut b, now, addr_a, addr_b);
            let incoming = events
                .iter()
                .find_map(|e| match e {
                    UaEvent::Incoming { call, .. } => Some(*call),
                    _ => None,
                })
                .unwrap();
            b.ringing(now, incoming).unwrap();
            b.answer(now, incoming, b"v=0\r\n".to_vec()).unwrap();
            pump(&mut a, &mut b, now, addr_a, addr_b);
            a.hangup(now, id).unwrap();
            pump(&mut a, &mut b, now, addr_a, addr_b);
        })
    });
}

criterion_group!(benches, parse, call);
criterion_main!(benches);
