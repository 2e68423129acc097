//! Random sequences of messages, TU actions and timeouts against `TxnLayer`: no panic,
//! `poll_timeout` is never at or before `now` once the caller has handled `now`, and after
//! a long quiet time only transactions that wait for someone else's answer are left.

#[path = "sip_txn_util.rs"]
mod util;

use core::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use termphone::sip::msg::{HeaderName, Message, Method, Request};
use termphone::sip::txn::{
    response_for, TimerConfig, TxnEvent, TxnKey, TxnKind, TxnLayer, TxnState,
};

const BRANCHES: [&str; 4] = ["z9hG4bK1", "z9hG4bK2", "z9hG4bK3", "old-branch"];
const SENT_BY: [&str; 2] = ["10.0.0.1:5060", "peer.example.com"];
const CODES: [u16; 9] = [100, 180, 183, 200, 202, 302, 401, 486, 603];
const DROPPABLE: [&str; 5] = ["Via", "From", "To", "Call-ID", "CSeq"];

fn method(i: u8) -> Method {
    match i % 6 {
        0 => Method::Invite,
        1 => Method::Ack,
        2 => Method::Cancel,
        3 => Method::Options,
        4 => Method::Bye,
        _ => Method::Register,
    }
}

fn build(m: Method, branch: usize, sent_by: usize, cseq: u32, drop: Option<usize>) -> Request {
    let uri = "sip:x@10.0.0.9".parse().expect("uri");
    let mut r = Request::new(m.clone(), uri);
    r.headers.push(
        HeaderName::VIA,
        format!(
            "SIP/2.0/UDP {};branch={};rport",
            SENT_BY[sent_by % SENT_BY.len()],
            BRANCHES[branch % BRANCHES.len()]
        ),
    );
    r.headers.push(HeaderName::FROM, "<sip:a@h>;tag=f");
    r.headers.push(HeaderName::TO, "<sip:b@h>");
    r.headers.push(HeaderName::CALL_ID, "c1");
    r.headers.push(HeaderName::CSEQ, format!("{cseq} {m}"));
    if let Some(d) = drop {
        r.headers
            .remove(&HeaderName::new(DROPPABLE[d % DROPPABLE.len()]));
    }
    r
}

#[derive(Debug, Clone)]
enum Op {
    SendRequest {
        m: u8,
        branch: usize,
        reliable: bool,
    },
    Incoming {
        m: u8,
        branch: usize,
        sent_by: usize,
        cseq: u32,
        drop: Option<usize>,
        reliable: bool,
    },
    IncomingResponse {
        m: u8,
        branch: usize,
        sent_by: usize,
        code: usize,
        cseq: u32,
    },
    Respond {
        key: usize,
        code: usize,
    },
    TransportError {
        key: usize,
    },
    Garbage(Vec<u8>),
    Advance {
        ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<u8>(), 0..4usize, any::<bool>()).prop_map(|(m, branch, reliable)| Op::SendRequest {
            m,
            branch,
            reliable
        }),
        (
            any::<u8>(),
            0..4usize,
            0..2usize,
            1..3u32,
            proptest::option::weighted(0.2, 0..5usize),
            any::<bool>()
        )
            .prop_map(|(m, branch, sent_by, cseq, drop, reliable)| Op::Incoming {
                m,
                branch,
                sent_by,
                cseq,
                drop,
                reliable
            }),
        (any::<u8>(), 0..4usize, 0..2usize, 0..9usize, 1..3u32).prop_map(
            |(m, branch, sent_by, code, cseq)| Op::IncomingResponse {
                m,
                branch,
                sent_by,
                code,
                cseq
            }
        ),
        (0..8usize, 0..9usize).prop_map(|(key, code)| Op::Respond { key, code }),
        (0..8usize).prop_map(|key| Op::TransportError { key }),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Op::Garbage),
        prop_oneof![0..600u64, 0..40_000u64].prop_map(|ms| Op::Advance { ms }),
    ]
}

fn peer() -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], 5060))
}

struct World {
    layer: TxnLayer,
    now: Instant,
    /// Keys the TU learned (server keys from Request events, client keys from send_request).
    server_keys: Vec<TxnKey>,
    client_keys: Vec<TxnKey>,
}

impl World {
    fn drain(&mut self) {
        while self.layer.poll_transmit().is_some() {}
        while let Some(e) = self.layer.poll_event() {
            if let TxnEvent::Request { key: Some(k), .. } = e {
                self.server_keys.push(k);
            }
        }
    }

    fn check_deadline(&self) -> Result<(), TestCaseError> {
        if let Some(t) = self.layer.poll_timeout() {
            prop_assert!(
                t > self.now,
                "poll_timeout {:?} not after now",
                t - self.now
            );
        }
        Ok(())
    }

    fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
        let now = self.now;
        match op {
            Op::SendRequest {
                m,
                branch,
                reliable,
            } => {
                let req = build(method(m), branch, 0, 1, None);
                let key = self.layer.send_request(now, req, peer(), reliable);
                self.client_keys.push(key);
            }
            Op::Incoming {
                m,
                branch,
                sent_by,
                cseq,
                drop,
                reliable,
            } => {
                let req = build(method(m), branch, sent_by, cseq, drop);
                self.layer
                    .handle_message(now, Message::Request(req), peer(), reliable);
            }
            Op::IncomingResponse {
                m,
                branch,
                sent_by,
                code,
                cseq,
            } => {
                let req = build(method(m), branch, sent_by, cseq, None);
                let resp = response_for(&req, CODES[code]);
                self.layer
                    .handle_message(now, Message::Response(resp), peer(), false);
            }
            Op::Respond { key, code } => {
                if !self.server_keys.is_empty() {
                    let k = self.server_keys[key % self.server_keys.len()].clone();
                    let m = if k.method == Method::Invite {
                        Method::Invite
                    } else {
                        k.method.clone()
                    };
                    let req = build(m, 0, 0, 1, None);
                    let _ = self
                        .layer
                        .send_response(now, &k, response_for(&req, CODES[code]));
                }
            }
            Op::TransportError { key } => {
                if !self.client_keys.is_empty() {
                    let k = self.client_keys[key % self.client_keys.len()].clone();
                    self.layer.handle_transport_error(now, &k);
                }
            }
            Op::Garbage(bytes) => {
                if let Ok(msg) = Message::parse(&bytes) {
                    self.layer.handle_message(now, msg, peer(), false);
                }
            }
            Op::Advance { ms } => {
                self.now += Duration::from_millis(ms);
                self.layer.handle_timeout(self.now);
            }
        }
        self.drain();
        self.check_deadline()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_the_invariants(ops in proptest::collection::vec(op(), 1..60)) {
        let t0 = Instant::now();
        let mut w = World {
            layer: TxnLayer::new(TimerConfig::default()),
            now: t0,
            server_keys: Vec::new(),
            client_keys: Vec::new(),
        };
        for op in ops {
            w.apply(op)?;
        }
        // A long quiet time: every timer-driven transaction ends.
        for _ in 0..10 {
            w.apply(Op::Advance { ms: 60_000 })?;
        }
        prop_assert_eq!(w.layer.poll_timeout(), None);
        for (key, kind, state) in w.layer.transactions() {
            let waiting = matches!(
                (kind, state),
                (TxnKind::ServerInvite, TxnState::Proceeding)
                    | (TxnKind::ServerNonInvite, TxnState::Trying | TxnState::Proceeding)
                    | (TxnKind::ClientInvite, TxnState::Proceeding)
            );
            prop_assert!(waiting, "{} left in {:?} {:?}", key, kind, state);
        }
    }
}
