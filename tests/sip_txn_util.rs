//! Shared helpers for the `sip_txn_*` integration tests (included with `#[path]`).
#![allow(dead_code)]

use core::net::SocketAddr;
use std::time::{Duration, Instant};

use termphone::sip::msg::{HeaderName, Message, Method, Request, Response};
use termphone::sip::txn::{response_for, Transmit, TxnEvent, TxnLayer};

/// Alice's (UAC's) address.
pub fn alice() -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], 5060))
}

/// Bob's (UAS's) address.
pub fn bob() -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 2], 5062))
}

/// A complete request from Alice to Bob with the given branch and CSeq number.
pub fn request(method: Method, branch: &str, cseq: u32) -> Request {
    let uri = "sip:bob@10.0.0.2:5062".parse().expect("uri");
    let mut r = Request::new(method.clone(), uri);
    r.headers.push(
        HeaderName::VIA,
        format!("SIP/2.0/UDP 10.0.0.1:5060;branch={branch};rport"),
    );
    r.headers.push(HeaderName::MAX_FORWARDS, "70");
    r.headers.push(HeaderName::ROUTE, "<sip:p1.example.com;lr>");
    r.headers.push(HeaderName::ROUTE, "<sip:p2.example.com;lr>");
    r.headers
        .push(HeaderName::FROM, "\"Alice\" <sip:alice@example.com>;tag=a1");
    r.headers.push(HeaderName::TO, "<sip:bob@example.com>");
    r.headers.push(HeaderName::CALL_ID, "call-1@10.0.0.1");
    r.headers.push(HeaderName::CSEQ, format!("{cseq} {method}"));
    r.headers
        .push(HeaderName::CONTACT, "<sip:alice@10.0.0.1:5060>");
    r
}

/// A response to `req`, with a To tag when `to_tag` is given.
pub fn reply(req: &Request, code: u16, to_tag: Option<&str>) -> Response {
    let mut resp = response_for(req, code);
    if let Some(tag) = to_tag {
        let mut to = resp.headers.to().expect("to");
        to.set_tag(tag);
        resp.headers.set(HeaderName::TO, to.to_string());
    }
    resp
}

/// `t0` plus `s` seconds.
pub fn at(t0: Instant, s: f64) -> Instant {
    t0 + Duration::from_secs_f64(s)
}

/// Seconds since `t0`, rounded to milliseconds.
pub fn since(t0: Instant, t: Instant) -> f64 {
    ((t - t0).as_secs_f64() * 1000.0).round() / 1000.0
}

/// Drain both queues (the drain invariant).
pub fn drain(layer: &mut TxnLayer) -> (Vec<Transmit>, Vec<TxnEvent>) {
    let mut tx = Vec::new();
    while let Some(t) = layer.poll_transmit() {
        tx.push(t);
    }
    let mut ev = Vec::new();
    while let Some(e) = layer.poll_event() {
        ev.push(e);
    }
    (tx, ev)
}

/// What happened while running timers, with the time (seconds since t0) it happened.
#[derive(Debug, Default)]
pub struct Log {
    pub transmits: Vec<(f64, Transmit)>,
    pub events: Vec<(f64, TxnEvent)>,
}

impl Log {
    /// Times at which a message satisfying `f` was sent.
    pub fn tx_times(&self, f: impl Fn(&Message) -> bool) -> Vec<f64> {
        self.transmits
            .iter()
            .filter(|(_, t)| f(&t.message))
            .map(|(s, _)| *s)
            .collect()
    }

    /// Times at which an event satisfying `f` happened.
    pub fn event_times(&self, f: impl Fn(&TxnEvent) -> bool) -> Vec<f64> {
        self.events
            .iter()
            .filter(|(_, e)| f(e))
            .map(|(s, _)| *s)
            .collect()
    }
}

/// Drain what is queued now (at `now`) into `log`.
pub fn drain_into(layer: &mut TxnLayer, t0: Instant, now: Instant, log: &mut Log) {
    let (tx, ev) = drain(layer);
    let s = since(t0, now);
    log.transmits.extend(tx.into_iter().map(|t| (s, t)));
    log.events.extend(ev.into_iter().map(|e| (s, e)));
}

/// Fire timers exactly at their deadlines until none is left before `end`.
pub fn run_timers(layer: &mut TxnLayer, t0: Instant, end: Instant, log: &mut Log) {
    let mut last = t0;
    while let Some(t) = layer.poll_timeout() {
        if t > end {
            break;
        }
        assert!(t >= last, "poll_timeout went backwards");
        layer.handle_timeout(t);
        drain_into(layer, t0, t, log);
        if let Some(next) = layer.poll_timeout() {
            assert!(next > t, "poll_timeout not after handle_timeout(now)");
        }
        last = t;
    }
}

pub fn is_request(m: &Message, method: Method) -> bool {
    matches!(m, Message::Request(r) if r.method.as_str() == method.as_str())
}

pub fn is_response(m: &Message, code: u16) -> bool {
    matches!(m, Message::Response(r) if r.code == code)
}
