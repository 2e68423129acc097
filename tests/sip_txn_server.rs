//! Server transactions through `TxnLayer`: retransmitted requests answered with the last
//! response, Accepted/ACK to the TU, timers G/H/I/J/L, CANCEL matching, stateless 400.

#[path = "sip_txn_util.rs"]
mod util;

use core::net::SocketAddr;
use std::time::Instant;

use termphone::sip::msg::{HeaderName, Message, Method, Request};
use termphone::sip::txn::{TimerConfig, TxnError, TxnEvent, TxnKey, TxnLayer, TxnState};
use util::*;

/// Deliver `req` from Alice at `now`; returns the key of the new transaction if one was made.
fn incoming(
    layer: &mut TxnLayer,
    now: Instant,
    req: &Request,
    reliable: bool,
) -> (Vec<termphone::sip::txn::Transmit>, Vec<TxnEvent>) {
    layer.handle_message(now, Message::Request(req.clone()), alice(), reliable);
    drain(layer)
}

fn new_invite(layer: &mut TxnLayer, t0: Instant, reliable: bool) -> TxnKey {
    let invite = request(Method::Invite, "z9hG4bKs1", 1);
    let (tx, ev) = incoming(layer, t0, &invite, reliable);
    assert_eq!(tx.len(), 1, "100 Trying");
    assert!(is_response(&tx[0].message, 100));
    assert_eq!(tx[0].dest, alice());
    match &ev[..] {
        [TxnEvent::Request {
            key: Some(key),
            request,
            source,
        }] => {
            assert_eq!(request.method, Method::Invite);
            assert_eq!(*source, alice());
            key.clone()
        }
        other => panic!("unexpected events {other:?}"),
    }
}

#[test]
fn invite_gets_100_and_retransmissions_get_the_last_response() {
    let t0 = Instant::now();
    let mut layer = TxnLayer::new(TimerConfig::default());
    let key = new_invite(&mut layer, t0, false);
    assert_eq!(key.method, Method::Invite);
    assert_eq!(layer.server_state(&key), Some(TxnState::Proceeding));
    let invite = request(Method::Invite, "z9hG4bKs1", 1);

    // Retransmission before the TU answered: 100 again, nothing for the TU.
    let (tx, ev) = incoming(&mut layer, at(t0, 0.5), &invite, false);
    assert!(ev.is_empty());
    assert_eq!(tx.len(), 1);
    assert!(is_response(&tx[0].message, 100));

    layer
        .send_response(at(t0, 0.6), &key, reply(&invite, 180, Some("b1")))
        .expect("180");
    let (tx, _) = drain(&mut layer);
    assert!(is_response(&tx[0].message, 180));
    assert_eq!(tx[0].dest, alice());

    let (tx, ev) = incoming(&mut layer, at(t0, 1.5), &invite, false);
    assert!(ev.is_empty());
    assert_eq!(tx.len(), 1);
    assert!(is_response(&tx[0].message, 180));

    layer
        .send_response(at(t0, 2.0), &key, reply(&invite, 486, Some("b1")))
        .expect("486");
    drain(&mut layer);
    let (tx, ev) = incoming(&mut layer, at(t0, 2.1), &invite, false);
    assert!(ev.is_empty());
    assert!(is_response(&tx[0].message, 486));
}

#[test]
fn responses_carry_received_and_rport() {
    let t0 = Instant::now();
    let mut layer = TxnLayer::new(TimerConfig::default());
    let mut invite = request(Method::Invite, "z9hG4bKs1", 1);
    invite.headers.set(
        HeaderName::VIA,
        "SIP/2.0/UDP alice.example.com:5070;branch=z9hG4bKs1;rport, SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKp",
    );
    let nat: SocketAddr = SocketAddr::from(([192, 0, 2, 7], 40000));
    layer.handle_message(t0, Message::Request(invite), nat, false);
    let (tx, _) = drain(&mut layer);
    assert_eq!(tx[0].dest, nat);
    let vias = tx[0].message.headers().vias().expect("vias");
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[0].received(), Some("192.0.2.7"));
    assert_eq!(vias[0].rport(), Some(Some(40000)));
    assert_eq!(vias[0].branch(), Some("z9hG4bKs1"));
    assert_eq!(vias[1].branch(), Some("z9hG4bKp"));
}

#[test]
fn invite_2xx_goes_to_accepted_and_ack_reaches_the_tu() {
    let t0 = Instant::now();
    let mut layer = TxnLayer::new(TimerConfig::default());
    let key = new_invite(&mut layer, t0, false);
    let invite = request(Method::Invite, "z9hG4bKs1", 1);
    layer
        .send_response(at(t0, 1.0), &key, reply(&invite, 200, Some("b1")))
        .expect("200");
    let (tx, _) = drain(&mut layer);
    assert!(is_response(&tx[0].message, 200));
    assert_eq!(layer.server_state(&key), Some(TxnState::Accepted));

    // The TU retransmits its 2xx through the transaction while Accepted.
    layer
        .send_response(at(t0, 1.5), &key, reply(&invite, 200, Some("b1")))
        .expect("200 again");
    assert_eq!(drain(&mut layer).0.len(), 1);
    // Non-2xx after 2xx is refused.
    assert_eq!(
        layer.send_response(at(t0, 1.6), &key, reply(&invite, 486, Some("b1"))),
        Err(TxnError::InvalidState {
            state: TxnState::Accepted,
            code: 486
        })
    );

    // Retransmitted INVITE in Accepted: absorbed, nothing sent (the TU retransmits the 2xx).
    let (tx, ev) = incoming(&mut layer, at(t0, 1.7), &invite, false);
    assert!(tx.is_empty() && ev.is_empty());

    // ACK for the 2xx (own branch, as §13.2.2.4 says): to the TU with key None.
    let mut ack = request(Method::Ack, "z9hG4bKack2xx", 1);
    let mut to = ack.headers.to().expect("to");
    to.set_tag("b1");
    ack.headers.set(HeaderName::TO, to.to_string());
    let (tx, ev) = incoming(&mut layer, at(t0, 2.0), &ack, false);
    assert!(tx.is_empty());
    assert!(
        matches!(&ev[..], [TxnEvent::Request { key: None, request, source }]
        if request.method == Method::Ack && *source == alice())
    );

    // ACK that reuses the INVITE's branch: matches the Accepted transaction, also to the TU.
    let same_branch_ack = request(Method::Ack, "z9hG4bKs1", 1);
    let (tx, ev) = incoming(&mut layer, at(t0, 2.1), &same_branch_ack, false);
    assert!(tx.is_empty());
    assert!(
        matches!(&ev[..], [TxnEvent::Request { key: None, request, .. }] if request.method == Method::Ack)
    );

    // Timer L: 64·T1 after the 2xx.
    let mut log = Log::default();
    run_timers(&mut layer, t0, at(t0, 100.0), &mut log);
    assert_eq!(
        log.event_times(|e| matches!(e, TxnEvent::Terminated { .. })),
        vec![33.0]
    );
    assert!(log.transmits.is_empty());
    assert!(layer.is_empty());
}

#[test]
fn non_2xx_is_retransmitted_by_timer_g_until_the_ack() {
    let t0 = Instant::now();
    let mut layer = TxnLayer::new(TimerConfig::default());
    let key = new_invite(&mut layer, t0, false);
    let invite = request(Method::Invite, "z9hG4bKs1", 1);
    let mut log = Log::default();
    layer
        .send_response(t0, &key, reply(&invite, 486, Some("b1")))
        .expect("486");
    drain_into(&mut layer, t0, t0, &mut log);
    assert_eq!(layer.server_state(&key), Some(TxnState::Completed));
    run_timers(&mut layer, t0, at(t0, 10.0), &mut log);
    assert_eq!(
        log.tx_times(|m| is_response(m, 486)),
        vec![0.0, 0.5, 1.5, 3.5, 7.5]
    );

    // The ACK for the 486 carries the INVITE's branch: Completed -> Confirmed, not for the TU.
    let mut ack = request(Method::Ack, "z9hG4bKs1", 1);
    let mut to = ack.headers.to().expect("to");
    to.set_tag("b1");
    ack.headers.set(HeaderName::TO, to.to_string());
    let (tx, ev) = incoming(&mut layer, at(t0, 10.0), &ack, false);
    assert!(tx.is_empty() && ev.is_empty(), "{tx:?} {ev:?}");
    assert_eq!(layer.server_state(&key), Some(TxnState::Confirmed));
    // ACK retransmission and INVITE retransmission in Confirmed: absorbed.
    let (tx, ev) = incoming(&mut layer, at(t0, 10.5), &ack, false);
    assert!(tx.is_empty() && ev.is_empty());
    let (tx, ev) = incoming(&mut layer, at(t0, 10.6), &invite, false);
    assert!(tx.is_empty() && ev.is_empty());

    // No more 486 after the ACK; timer I (T4) ends the transaction.
    let mut log = Log::default();
    run_timers(&mut layer, t0, at(t0, 100.0), &mut log);
    assert!(log.transmits.is_empty());
    assert_eq!(
        log.event_times(|e| matches!(e, TxnEvent::Terminated { .. })),
        vec![15.0]
    );
    assert!(layer.is_empty());
}

#[test]
fn timer_h_gives_up_waiting_for_the_ack() {
    let t0 = Instant::now();
    let mut layer = TxnLayer::new(TimerConfig::default());
    let key = new_invite(&mut layer, t0, false);
    let invite = request(Method::Invite, "z9hG4bKs1", 1);
    let mut log = Log::default();
    layer
        .send_response(t0, &key, reply(&invite, 603, Some("b1")))
        .expect("603");
    drain_into(&mut layer, t0, t0, &mut log);
    run_timers(&mut layer, t0, at(t0, 100.0), &mut log);
    assert_eq!(
        log.tx_times(|m| is_response(m, 603)),
        vec![0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    );
    assert_eq!(
        log.event_times(|e| matches!(e, TxnEvent::Timeout { key: k } if *k == key)),
        vec![32.0]
    );
    assert_eq!(
        log.event_times(|e| matches!(e, TxnEvent::Terminated { .. })),
        vec![32.0]
    );
    assert!(layer.is_empty());
}

#[test]
fn reliable_invite_server_does_not_retransmit_and_ends_on_ack() {
    let t0 = Instant::now();
    let mut layer = TxnLayer::new(TimerConfig::default());
    let key = new_invite(&mut layer, t0, true);
    let invite = request(Method::Invite, "z9hG4bKs1", 1);
    layer
        .send_response(t0, &key, reply(&invite, 486, Some("b1")))
        .expect("486");
    drain(&mut layer);
    // Only timer H runs.
    assert_eq!(layer.poll_timeout(), Some(at(t0, 32.0)));
    let ack = request(Method::Ack, "z9hG4bKs1", 1);
    let (_, ev) = incoming(&mut layer, at(t0, 1.0), &ack, true);
    assert!(matches!(&ev[..], [TxnEvent::Terminated { key: k }] if *k == key));
    assert!(layer.is_empty());
}

#[test]
fn non_invite_retransmissions_get_the_last_response() {
    let t0 = Instant::now();
    let mut layer = TxnLayer::new(TimerConfig::default());
    let opts = request(Method::Options, "z9hG4bKo1", 5);
    let (tx, ev) = incoming(&mut layer, t0, &opts, false);
    assert!(tx.is_empty(), "no automatic 100 for non-INVITE");
    let key = match &ev[..] {
        [TxnEvent::Request { key: Some(k), .. }] => k.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(layer.server_state(&key), Some(TxnState::Trying));
    // Retransmission in Trying: absorbed.
    let (tx, ev) = incoming(&mut layer, at(t0, 0.5), &opts, false);
    assert!(tx.is_empty() && ev.is_empty());
    layer
        .send_response(at(t0, 0.6), &key, reply(&opts, 100, None))
        .expect("100");
    drain(&mut layer);
    assert_eq!(layer.server_state(&key), Some(TxnState::Proceeding));
    let (tx, _) = incoming(&mut layer, at(t0, 1.0), &opts, false);
    assert!(is_response(&tx[0].message, 100));
    layer
        .send_response(at(t0, 1.0), &key, reply(&opts, 200, Some("b1")))
        .expect("200");
    let (tx, _) = drain(&mut layer);
    assert!(is_response(&tx[0].message, 200));
    assert_eq!(tx[0].dest, alice());
    assert_eq!(layer.server_state(&key), Some(TxnState::Completed));
    let (tx, ev) = incoming(&mut layer, at(t0, 1.5), &opts, false);
    assert!(ev.is_empty());
    assert!(is_response(&tx[0].message, 200));
    // A second final response is refused.
    assert!(matches!(
        layer.send_response(at(t0, 1.6), &key, reply(&opts, 500, Some("b1"))),
        Err(TxnError::InvalidState { .. })
    ));
    // Timer J = 64·T1.
    let mut log = Log::default();
    run_timers(&mut layer, t0, at(t0, 100.0), &mut log);
    assert_eq!(
        log.event_times(|e| matches!(e, TxnEvent::Terminated { .. })),
        vec![33.0]
    );
    // After it, a retransmission is a new request again.
    let (_, ev) = incoming(&mut layer, at(t0, 40.0), &opts, false);
    assert!(matches!(&ev[..], [TxnEvent::Request { key: Some(_), .. }]));
}

#[test]
fn non_invite_over_reliable_transport_ends_at_the_final_response() {
    let t0 = Instant::now();
    let mut layer = TxnLayer::new(TimerConfig::default());
    let opts = request(Method::Options, "z9hG4bKo1", 5);
    let (_, ev) = incoming(&mut layer, t0, &opts, true);
    let Some(TxnEvent::Request { key: Some(key), .. }) = ev.first() else {
        panic!()
    };
    layer
        .send_response(t0, key, reply(&opts, 200, Some("b1")))
        .expect("200");
    let (tx, ev) = drain(&mut layer);
    assert_eq!(tx.len(), 1);
    assert!(matches!(&ev[..], [TxnEvent::Terminated { .. }]));
    assert!(layer.is_empty());
}

#[test]
fn cancel_is_its_own_transaction_and_points_at_the_invite() {
    let t0 = Instant::now();
    let mut layer = TxnLayer::new(TimerConfig::default());
    let ik = new_invite(&mut layer, t0, false);
    let invite = request(Method::Invite, "z9hG4bKs1", 1);
    let cancel = request(Method::Cancel, "z9hG4bKs1", 1);
    let (tx, ev) = incoming(&mut layer, at(t0, 1.0), &cancel, false);
    assert!(tx.is_empty());
    let ck = match &ev[..] {
        [TxnEvent::Request {
            key: Some(k),
            request,
            ..
        }] if request.method == Method::Cancel => k.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(ck.method, Method::Cancel);
    assert_eq!(ck.cancel_target(), ik);
    assert_eq!(
        layer.server_state(&ck.cancel_target()),
        Some(TxnState::Proceeding)
    );
    layer
        .send_response(at(t0, 1.0), &ck, reply(&cancel, 200, Some("b1")))
        .expect("200 CANCEL");
    layer
        .send_response(at(t0, 1.0), &ik, reply(&invite, 487, Some("b1")))
        .expect("487");
    let (tx, _) = drain(&mut layer);
    assert_eq!(tx.len(), 2);
    let ack = request(Method::Ack, "z9hG4bKs1", 1);
    let (_, ev) = incoming(&mut layer, at(t0, 1.1), &ack, false);
    assert!(ev.is_empty());
    assert_eq!(layer.server_state(&ik), Some(TxnState::Confirmed));
}

#[test]
fn stray_ack_goes_to_the_tu() {
    let t0 = Instant::now();
    let mut layer = TxnLayer::new(TimerConfig::default());
    let ack = request(Method::Ack, "z9hG4bKx", 1);
    let (tx, ev) = incoming(&mut layer, t0, &ack, false);
    assert!(tx.is_empty());
    assert!(matches!(&ev[..], [TxnEvent::Request { key: None, .. }]));
    assert!(layer.is_empty());
}

#[test]
fn malformed_requests_get_a_stateless_400_or_are_dropped() {
    let t0 = Instant::now();
    let mut layer = TxnLayer::new(TimerConfig::default());
    for missing in [
        HeaderName::CALL_ID,
        HeaderName::FROM,
        HeaderName::TO,
        HeaderName::CSEQ,
    ] {
        let mut req = request(Method::Invite, "z9hG4bKm", 1);
        req.headers.remove(&missing);
        let (tx, ev) = incoming(&mut layer, t0, &req, false);
        assert_eq!(tx.len(), 1, "missing {}", missing.as_str());
        assert!(is_response(&tx[0].message, 400));
        assert_eq!(tx[0].dest, alice());
        let resp = tx[0].message.headers();
        assert_eq!(resp.top_via().expect("via").branch(), Some("z9hG4bKm"));
        if missing.as_str() != "To" {
            assert!(resp.to().expect("to").tag().is_some(), "400 has a To tag");
        }
        assert!(matches!(&ev[..], [TxnEvent::Dropped { peer, .. }] if *peer == alice()));
    }
    assert!(layer.is_empty());

    // CSeq method differs from the request method.
    let mut req = request(Method::Bye, "z9hG4bKm", 1);
    req.headers.set(HeaderName::CSEQ, "1 INVITE");
    let (tx, _) = incoming(&mut layer, t0, &req, false);
    assert!(is_response(&tx[0].message, 400));

    // No Via: nowhere to answer.
    let mut req = request(Method::Invite, "z9hG4bKm", 1);
    req.headers.remove(&HeaderName::VIA);
    let (tx, ev) = incoming(&mut layer, t0, &req, false);
    assert!(tx.is_empty());
    assert!(matches!(&ev[..], [TxnEvent::Dropped { .. }]));

    // ACK is never answered.
    let mut req = request(Method::Ack, "z9hG4bKm", 1);
    req.headers.remove(&HeaderName::CALL_ID);
    let (tx, ev) = incoming(&mut layer, t0, &req, false);
    assert!(tx.is_empty());
    assert!(matches!(&ev[..], [TxnEvent::Dropped { .. }]));
    assert!(layer.is_empty());
}

#[test]
fn rfc2543_requests_without_branch_still_match() {
    let t0 = Instant::now();
    let mut layer = TxnLayer::new(TimerConfig::default());
    let mut invite = request(Method::Invite, "x", 1);
    invite
        .headers
        .set(HeaderName::VIA, "SIP/2.0/UDP 10.0.0.1:5060");
    let (_, ev) = incoming(&mut layer, t0, &invite, false);
    let Some(TxnEvent::Request { key: Some(key), .. }) = ev.first() else {
        panic!("{ev:?}")
    };
    let (tx, ev) = incoming(&mut layer, at(t0, 0.5), &invite, false);
    assert!(ev.is_empty(), "retransmission absorbed");
    assert!(is_response(&tx[0].message, 100));
    layer
        .send_response(at(t0, 1.0), key, reply(&invite, 404, Some("b1")))
        .expect("404");
    drain(&mut layer);
    let mut ack = invite.clone();
    ack.method = Method::Ack;
    ack.headers.set(HeaderName::CSEQ, "1 ACK");
    let (_, ev) = incoming(&mut layer, at(t0, 1.1), &ack, false);
    assert!(ev.is_empty());
    assert_eq!(layer.server_state(key), Some(TxnState::Confirmed));
}

#[test]
fn send_response_to_unknown_key_fails() {
    let t0 = Instant::now();
    let mut layer = TxnLayer::new(TimerConfig::default());
    let key = TxnKey {
        branch: "z9hG4bKq".into(),
        sent_by: "h".into(),
        method: Method::Bye,
    };
    let req = request(Method::Bye, "z9hG4bKq", 1);
    assert_eq!(
        layer.send_response(t0, &key, reply(&req, 200, None)),
        Err(TxnError::NoTransaction)
    );
}

#[test]
fn unparsable_request_gets_a_400_when_its_headers_parsed() {
    let mut layer = TxnLayer::new(TimerConfig::default());
    // Content-Length larger than the datagram: a parse error after the headers parsed.
    let data = b"OPTIONS sip:bob@10.0.0.2 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKbad\r\n\
From: <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: bad-1\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length: 500\r\n\r\nshort";
    let err = Message::parse(data).expect_err("must not parse");
    layer.handle_parse_error(&err, alice());
    let (tx, ev) = drain(&mut layer);
    assert!(
        err.request_headers().is_some(),
        "msg layer keeps the headers"
    );
    {
        assert_eq!(tx.len(), 1);
        assert!(is_response(&tx[0].message, 400));
        assert_eq!(tx[0].dest, alice());
        let h = tx[0].message.headers();
        assert_eq!(h.call_id().expect("call-id"), "bad-1");
        assert!(h.to().expect("to").tag().is_some());
        // It must survive a print/parse round trip (reason phrase sanitized).
        Message::parse(&tx[0].message.to_bytes()).expect("400 parses");
    }
    assert!(matches!(&ev[..], [TxnEvent::Dropped { .. }]));

    // Garbage: dropped silently (no headers to answer with).
    let err = Message::parse(b"\x00\x01garbage").expect_err("garbage");
    layer.handle_parse_error(&err, alice());
    let (tx, ev) = drain(&mut layer);
    assert!(tx.is_empty());
    assert!(matches!(&ev[..], [TxnEvent::Dropped { .. }]));
}
