//! Two `TxnLayer`s wired in memory through a lossy queue (10 ms one way, messages go
//! through `to_bytes`/`parse`): transactions still complete when the first INVITE and the
//! first final response are lost.

#[path = "sip_txn_util.rs"]
mod util;

use core::net::SocketAddr;
use std::time::{Duration, Instant};

use termphone::sip::msg::{HeaderName, Message, Method, Request};
use termphone::sip::txn::{TimerConfig, TxnEvent, TxnLayer};
use util::*;

const LATENCY: Duration = Duration::from_millis(10);

/// Given the index of a message on the wire and the message: drop it?
type DropRule = Box<dyn FnMut(usize, &Message) -> bool>;

/// How Bob's TU answers.
#[derive(Clone, Copy, PartialEq)]
enum Answer {
    Busy,
    Ok,
}

struct Packet {
    at: Instant,
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
}

struct Pair {
    t0: Instant,
    now: Instant,
    a: TxnLayer,
    b: TxnLayer,
    net: Vec<Packet>,
    dropped: Vec<String>,
    /// Drop rule: given the index of the message on the wire and the message, drop it?
    drop_rule: DropRule,
    sent_count: usize,
    answer: Answer,
    a_events: Vec<(f64, TxnEvent)>,
    b_events: Vec<(f64, TxnEvent)>,
    /// Bob's 2xx to retransmit until the ACK (the dialog layer's job, done here by hand).
    b_pending_2xx: Option<(Message, Instant, Duration)>,
    sent: Vec<(f64, SocketAddr, String)>,
}

impl Pair {
    /// Drop the first request of `drop_request_method` and the first final response.
    fn new(drop_request_method: Method, answer: Answer) -> Pair {
        let mut dropped_request = false;
        let mut dropped_final = false;
        Pair::with_rule(
            answer,
            Box::new(move |_, m| match m {
                Message::Request(r) if !dropped_request && r.method == drop_request_method => {
                    dropped_request = true;
                    true
                }
                Message::Response(r) if !dropped_final && r.code >= 200 => {
                    dropped_final = true;
                    true
                }
                _ => false,
            }),
        )
    }

    fn with_rule(answer: Answer, drop_rule: DropRule) -> Pair {
        let t0 = Instant::now();
        Pair {
            t0,
            now: t0,
            a: TxnLayer::new(TimerConfig::default()),
            b: TxnLayer::new(TimerConfig::default()),
            net: Vec::new(),
            dropped: Vec::new(),
            drop_rule,
            sent_count: 0,
            answer,
            a_events: Vec::new(),
            b_events: Vec::new(),
            b_pending_2xx: None,
            sent: Vec::new(),
        }
    }

    fn first_line(m: &Message) -> String {
        match m {
            Message::Request(r) => r.method.to_string(),
            Message::Response(r) => format!(
                "{} {}",
                r.code,
                r.headers
                    .cseq()
                    .map(|c| c.method.to_string())
                    .unwrap_or_default()
            ),
        }
    }

    fn send(&mut self, from: SocketAddr, to: SocketAddr, m: Message) {
        let line = Self::first_line(&m);
        self.sent
            .push((since(self.t0, self.now), from, line.clone()));
        let drop = (self.drop_rule)(self.sent_count, &m);
        self.sent_count += 1;
        if drop {
            self.dropped.push(line);
            return;
        }
        self.net.push(Packet {
            at: self.now + LATENCY,
            from,
            to,
            bytes: m.to_bytes(),
        });
    }

    /// Drain both layers, run the TUs, put transmissions on the wire; repeat until quiet.
    fn settle(&mut self) {
        loop {
            let mut progress = false;
            while let Some(t) = self.a.poll_transmit() {
                progress = true;
                self.send(alice(), t.dest, t.message);
            }
            while let Some(t) = self.b.poll_transmit() {
                progress = true;
                self.send(bob(), t.dest, t.message);
            }
            while let Some(e) = self.a.poll_event() {
                progress = true;
                self.alice_tu(e);
            }
            while let Some(e) = self.b.poll_event() {
                progress = true;
                self.bob_tu(e);
            }
            if !progress {
                break;
            }
        }
    }

    fn alice_tu(&mut self, e: TxnEvent) {
        if let TxnEvent::Response { response, .. } = &e {
            if response.code / 100 == 2
                && response
                    .headers
                    .cseq()
                    .map(|c| c.method == Method::Invite)
                    .unwrap_or(false)
            {
                // ACK for 2xx: a new branch, outside the transaction.
                let mut ack = request(Method::Ack, "z9hG4bKack2xx", 1);
                ack.headers.set(
                    HeaderName::TO,
                    response.headers.get(&HeaderName::TO).unwrap_or(""),
                );
                self.a.send_stateless(bob(), Message::Request(ack));
            }
        }
        self.a_events.push((since(self.t0, self.now), e));
    }

    fn bob_tu(&mut self, e: TxnEvent) {
        match &e {
            TxnEvent::Request {
                key: Some(key),
                request,
                source,
            } => {
                let resp = match request.method {
                    Method::Invite => {
                        self.b
                            .send_response(self.now, key, reply(request, 180, Some("b1")))
                            .expect("180");
                        match self.answer {
                            Answer::Busy => reply(request, 486, Some("b1")),
                            Answer::Ok => {
                                let r = reply(request, 200, Some("b1"));
                                self.b_pending_2xx = Some((
                                    Message::Response(r.clone()),
                                    self.now + Duration::from_millis(500),
                                    Duration::from_millis(500),
                                ));
                                let _ = source;
                                r
                            }
                        }
                    }
                    _ => reply(request, 200, Some("b1")),
                };
                self.b.send_response(self.now, key, resp).expect("final");
            }
            TxnEvent::Request {
                key: None, request, ..
            } if request.method == Method::Ack => {
                self.b_pending_2xx = None;
            }
            _ => {}
        }
        self.b_events.push((since(self.t0, self.now), e));
    }

    /// Run until nothing is scheduled or `limit` seconds passed.
    fn run(&mut self, limit: f64) {
        let end = at(self.t0, limit);
        self.settle();
        loop {
            let next = [
                self.a.poll_timeout(),
                self.b.poll_timeout(),
                self.net.iter().map(|p| p.at).min(),
                self.b_pending_2xx.as_ref().map(|p| p.1),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next else { break };
            if next > end {
                break;
            }
            assert!(next >= self.now, "time went backwards");
            self.now = next;
            let (due, rest): (Vec<Packet>, Vec<Packet>) = std::mem::take(&mut self.net)
                .into_iter()
                .partition(|p| p.at <= next);
            self.net = rest;
            for p in due {
                let msg = Message::parse(&p.bytes).expect("own messages parse");
                let layer = if p.to == alice() {
                    &mut self.a
                } else {
                    &mut self.b
                };
                layer.handle_message(next, msg, p.from, false);
                self.settle();
            }
            if let Some((m, at, iv)) = self.b_pending_2xx.clone() {
                if at <= next {
                    self.b.send_stateless(alice(), m.clone());
                    let iv2 = (iv * 2).min(Duration::from_secs(4));
                    self.b_pending_2xx = Some((m, next + iv2, iv2));
                }
            }
            self.a.handle_timeout(next);
            self.b.handle_timeout(next);
            self.settle();
        }
    }

    fn a_responses(&self) -> Vec<u16> {
        self.a_events
            .iter()
            .filter_map(|(_, e)| match e {
                TxnEvent::Response { response, .. } => Some(response.code),
                _ => None,
            })
            .collect()
    }
}

fn invite() -> Request {
    request(Method::Invite, "z9hG4bKpair1", 1)
}

#[test]
fn busy_call_completes_despite_lost_invite_and_lost_486() {
    let mut p = Pair::new(Method::Invite, Answer::Busy);
    p.a.send_request(p.t0, invite(), bob(), false);
    p.run(200.0);
    assert_eq!(
        p.dropped,
        vec!["INVITE".to_string(), "486 INVITE".to_string()]
    );
    // Alice: 100 and 180 (the 100 of the retransmitted INVITE may come twice? no: once), 486 once.
    let codes = p.a_responses();
    assert_eq!(codes.iter().filter(|c| **c == 486).count(), 1, "{codes:?}");
    assert!(codes.contains(&180));
    assert!(!p
        .a_events
        .iter()
        .any(|(_, e)| matches!(e, TxnEvent::Timeout { .. })));
    // Bob saw the INVITE once, never the ACK (absorbed in Completed -> Confirmed).
    let reqs: Vec<_> = p
        .b_events
        .iter()
        .filter(|(_, e)| matches!(e, TxnEvent::Request { .. }))
        .collect();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    // The INVITE went at 0 and 0.5 s; the 486 was resent by timer G at 0.5 s after it.
    let invites: Vec<f64> = p
        .sent
        .iter()
        .filter(|s| s.2 == "INVITE")
        .map(|s| s.0)
        .collect();
    assert_eq!(invites, vec![0.0, 0.5]);
    let busies: Vec<f64> = p
        .sent
        .iter()
        .filter(|s| s.2 == "486 INVITE")
        .map(|s| s.0)
        .collect();
    assert_eq!(busies, vec![0.51, 1.01]);
    assert_eq!(p.sent.iter().filter(|s| s.2 == "ACK").count(), 1);
    // Everything ends: Bob by timer I (T4 after the ACK), Alice by timer D.
    assert!(p.a.is_empty() && p.b.is_empty());
}

#[test]
fn answered_call_completes_despite_lost_invite_and_lost_200() {
    let mut p = Pair::new(Method::Invite, Answer::Ok);
    p.a.send_request(p.t0, invite(), bob(), false);
    p.run(200.0);
    assert_eq!(
        p.dropped,
        vec!["INVITE".to_string(), "200 INVITE".to_string()]
    );
    let codes = p.a_responses();
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 1, "{codes:?}");
    assert!(p.b_pending_2xx.is_none(), "Bob got the ACK");
    assert!(p.b_events.iter().any(|(_, e)| matches!(e, TxnEvent::Request { key: None, request, .. } if request.method == Method::Ack)));
    assert!(p.a.is_empty() && p.b.is_empty());
}

#[test]
fn options_completes_despite_lost_request_and_lost_200() {
    let mut p = Pair::new(Method::Options, Answer::Ok);
    let key = p.a.send_request(
        p.t0,
        request(Method::Options, "z9hG4bKpair2", 1),
        bob(),
        false,
    );
    p.run(200.0);
    assert_eq!(
        p.dropped,
        vec!["OPTIONS".to_string(), "200 OPTIONS".to_string()]
    );
    // Request at 0 (lost), 0.5 (answered, answer lost), 1.5 (answered again from Completed).
    let sent: Vec<f64> = p
        .sent
        .iter()
        .filter(|s| s.2 == "OPTIONS")
        .map(|s| s.0)
        .collect();
    assert_eq!(sent, vec![0.0, 0.5, 1.5]);
    assert_eq!(p.a_responses(), vec![200]);
    let b_reqs = p
        .b_events
        .iter()
        .filter(|(_, e)| matches!(e, TxnEvent::Request { .. }))
        .count();
    assert_eq!(b_reqs, 1);
    assert!(p
        .a_events
        .iter()
        .any(|(_, e)| matches!(e, TxnEvent::Terminated { key: k } if *k == key)));
    assert!(p.a.is_empty() && p.b.is_empty());
}

fn finals_and_timeouts(p: &Pair, final_code: u16) -> (usize, usize) {
    let finals = p.a_events.iter().filter(|(_, e)| matches!(e, TxnEvent::Response { response, .. } if response.code == final_code)).count();
    let timeouts = p
        .a_events
        .iter()
        .filter(|(_, e)| matches!(e, TxnEvent::Timeout { .. }))
        .count();
    (finals, timeouts)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

    /// Any loss pattern over the first 16 messages: Alice ends with exactly one answer or
    /// one timeout, Bob's TU sees the request at most once, and every transaction ends.
    #[test]
    fn random_loss_still_ends_cleanly(mask in proptest::collection::vec(proptest::bool::weighted(0.4), 16), invite in proptest::bool::ANY) {
        let mut p = Pair::with_rule(Answer::Busy, Box::new(move |i, _| mask.get(i).copied().unwrap_or(false)));
        let (req, final_code) = if invite {
            (request(Method::Invite, "z9hG4bKpp", 1), 486)
        } else {
            (request(Method::Options, "z9hG4bKpp", 1), 200)
        };
        p.a.send_request(p.t0, req, bob(), false);
        p.run(400.0);
        let (finals, timeouts) = finals_and_timeouts(&p, final_code);
        proptest::prop_assert_eq!(finals + timeouts, 1, "{:?}", p.a_events);
        let b_reqs = p.b_events.iter().filter(|(_, e)| matches!(e, TxnEvent::Request { key: Some(_), .. })).count();
        proptest::prop_assert!(b_reqs <= 1);
        proptest::prop_assert!(p.a.is_empty() && p.b.is_empty(), "{:?} {:?}", p.a.transactions().collect::<Vec<_>>(), p.b.transactions().collect::<Vec<_>>());
    }
}
