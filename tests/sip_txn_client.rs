//! Client transactions through `TxnLayer`: timers A/B/D/E/F/K/M, ACK for non-2xx, absorbing
//! retransmitted responses, CANCEL matching by CSeq method. Synthetic time only.

#[path = "sip_txn_util.rs"]
mod util;

use std::time::Instant;

use termphone::sip::msg::{HeaderName, Message, Method};
use termphone::sip::txn::{TimerConfig, TxnEvent, TxnLayer, TxnState};
use util::*;

fn start(method: Method, reliable: bool) -> (TxnLayer, Instant, termphone::sip::txn::TxnKey, Log) {
    let t0 = Instant::now();
    let mut layer = TxnLayer::new(TimerConfig::default());
    let key = layer.send_request(t0, request(method, "z9hG4bKc1", 1), bob(), reliable);
    let mut log = Log::default();
    drain_into(&mut layer, t0, t0, &mut log);
    (layer, t0, key, log)
}

#[test]
fn invite_timer_a_doubles_and_timer_b_times_out_at_32s() {
    let (mut layer, t0, key, mut log) = start(Method::Invite, false);
    assert_eq!(key.branch, "z9hG4bKc1");
    assert_eq!(key.sent_by, "10.0.0.1:5060");
    assert_eq!(layer.client_state(&key), Some(TxnState::Calling));
    run_timers(&mut layer, t0, at(t0, 100.0), &mut log);
    assert_eq!(
        log.tx_times(|m| is_request(m, Method::Invite)),
        vec![0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    );
    assert!(log.transmits.iter().all(|(_, t)| t.dest == bob()));
    assert_eq!(
        log.event_times(|e| matches!(e, TxnEvent::Timeout { key: k } if *k == key)),
        vec![32.0]
    );
    assert_eq!(
        log.event_times(|e| matches!(e, TxnEvent::Terminated { .. })),
        vec![32.0]
    );
    assert!(layer.is_empty());
    assert_eq!(layer.poll_timeout(), None);
}

#[test]
fn invite_over_reliable_transport_is_not_retransmitted() {
    let (mut layer, t0, key, mut log) = start(Method::Invite, true);
    run_timers(&mut layer, t0, at(t0, 100.0), &mut log);
    assert_eq!(log.tx_times(|m| is_request(m, Method::Invite)), vec![0.0]);
    assert_eq!(
        log.event_times(|e| matches!(e, TxnEvent::Timeout { key: k } if *k == key)),
        vec![32.0]
    );
}

#[test]
fn invite_provisional_stops_timer_a_and_timer_b() {
    let (mut layer, t0, key, mut log) = start(Method::Invite, false);
    let invite = request(Method::Invite, "z9hG4bKc1", 1);
    layer.handle_timeout(at(t0, 0.5));
    drain_into(&mut layer, t0, at(t0, 0.5), &mut log);
    layer.handle_message(
        at(t0, 0.7),
        Message::Response(reply(&invite, 180, Some("b1"))),
        bob(),
        false,
    );
    drain_into(&mut layer, t0, at(t0, 0.7), &mut log);
    assert_eq!(layer.client_state(&key), Some(TxnState::Proceeding));
    assert_eq!(layer.poll_timeout(), None, "no timer runs in Proceeding");
    assert_eq!(
        log.tx_times(|m| is_request(m, Method::Invite)),
        vec![0.0, 0.5]
    );
    assert_eq!(
        log.event_times(
            |e| matches!(e, TxnEvent::Response { response, .. } if response.code == 180)
        ),
        vec![0.7]
    );
}

#[test]
fn non_invite_timer_e_caps_at_t2_and_timer_f_at_32s() {
    let (mut layer, t0, key, mut log) = start(Method::Register, false);
    assert_eq!(layer.client_state(&key), Some(TxnState::Trying));
    run_timers(&mut layer, t0, at(t0, 100.0), &mut log);
    assert_eq!(
        log.tx_times(|m| is_request(m, Method::Register)),
        vec![0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    );
    assert_eq!(
        log.event_times(|e| matches!(e, TxnEvent::Timeout { key: k } if *k == key)),
        vec![32.0]
    );
    assert!(layer.is_empty());
}

#[test]
fn non_invite_in_proceeding_retransmits_every_t2() {
    let (mut layer, t0, key, mut log) = start(Method::Options, false);
    let req = request(Method::Options, "z9hG4bKc1", 1);
    layer.handle_message(
        at(t0, 0.2),
        Message::Response(reply(&req, 100, None)),
        bob(),
        false,
    );
    drain_into(&mut layer, t0, at(t0, 0.2), &mut log);
    assert_eq!(layer.client_state(&key), Some(TxnState::Proceeding));
    run_timers(&mut layer, t0, at(t0, 100.0), &mut log);
    assert_eq!(
        log.tx_times(|m| is_request(m, Method::Options)),
        vec![0.0, 0.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5]
    );
    assert_eq!(
        log.event_times(|e| matches!(e, TxnEvent::Timeout { .. })),
        vec![32.0]
    );
}

#[test]
fn invite_486_is_acked_by_the_transaction() {
    let (mut layer, t0, key, mut log) = start(Method::Invite, false);
    let invite = request(Method::Invite, "z9hG4bKc1", 1);
    layer.handle_message(
        at(t0, 0.1),
        Message::Response(reply(&invite, 100, None)),
        bob(),
        false,
    );
    layer.handle_message(
        at(t0, 1.0),
        Message::Response(reply(&invite, 486, Some("b1"))),
        bob(),
        false,
    );
    drain_into(&mut layer, t0, at(t0, 1.0), &mut log);
    assert_eq!(layer.client_state(&key), Some(TxnState::Completed));

    let acks: Vec<_> = log
        .transmits
        .iter()
        .filter(|(_, t)| is_request(&t.message, Method::Ack))
        .collect();
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].1.dest, bob());
    let Message::Request(ack) = &acks[0].1.message else {
        unreachable!()
    };
    assert_eq!(ack.uri, invite.uri);
    let vias = ack.headers.vias().expect("vias");
    assert_eq!(vias.len(), 1);
    assert_eq!(vias[0].branch(), Some("z9hG4bKc1"));
    assert_eq!(vias[0].sent_by(), "10.0.0.1:5060");
    assert_eq!(ack.headers.call_id().expect("call-id"), "call-1@10.0.0.1");
    assert_eq!(ack.headers.from().expect("from").tag(), Some("a1"));
    assert_eq!(ack.headers.to().expect("to").tag(), Some("b1"));
    let cseq = ack.headers.cseq().expect("cseq");
    assert_eq!(cseq.seq, 1);
    assert_eq!(cseq.method, Method::Ack);
    let routes: Vec<_> = ack.headers.get_all(&HeaderName::ROUTE).collect();
    assert_eq!(
        routes,
        vec!["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    );
    assert!(ack.headers.get(&HeaderName::CONTACT).is_none());
    assert!(ack.body.is_empty());

    assert_eq!(
        log.event_times(
            |e| matches!(e, TxnEvent::Response { response, .. } if response.code >= 100)
        ),
        vec![1.0, 1.0]
    );

    // A retransmitted 486 is absorbed: ACK again, nothing for the TU.
    layer.handle_message(
        at(t0, 2.0),
        Message::Response(reply(&invite, 486, Some("b1"))),
        bob(),
        false,
    );
    let (tx, ev) = drain(&mut layer);
    assert_eq!(tx.len(), 1);
    assert!(is_request(&tx[0].message, Method::Ack));
    assert!(ev.is_empty(), "{ev:?}");

    // Timer D: 32 s after the 486.
    run_timers(&mut layer, t0, at(t0, 100.0), &mut log);
    assert_eq!(
        log.event_times(|e| matches!(e, TxnEvent::Terminated { key: k } if *k == key)),
        vec![33.0]
    );
    assert_eq!(log.tx_times(|m| is_request(m, Method::Invite)), vec![0.0]);
}

#[test]
fn invite_486_over_reliable_transport_ends_at_once() {
    let (mut layer, t0, key, _log) = start(Method::Invite, true);
    let invite = request(Method::Invite, "z9hG4bKc1", 1);
    layer.handle_message(
        at(t0, 1.0),
        Message::Response(reply(&invite, 486, Some("b1"))),
        bob(),
        true,
    );
    let (tx, ev) = drain(&mut layer);
    assert!(is_request(&tx[0].message, Method::Ack));
    assert!(matches!(&ev[0], TxnEvent::Response { response, .. } if response.code == 486));
    assert!(matches!(&ev[1], TxnEvent::Terminated { key: k } if *k == key));
    assert!(layer.is_empty());
}

#[test]
fn invite_2xx_goes_to_accepted_and_retransmissions_reach_the_tu() {
    let (mut layer, t0, key, mut log) = start(Method::Invite, false);
    let invite = request(Method::Invite, "z9hG4bKc1", 1);
    for s in [1.0, 1.5, 2.5] {
        layer.handle_message(
            at(t0, s),
            Message::Response(reply(&invite, 200, Some("b1"))),
            bob(),
            false,
        );
        drain_into(&mut layer, t0, at(t0, s), &mut log);
    }
    assert_eq!(layer.client_state(&key), Some(TxnState::Accepted));
    assert_eq!(
        log.event_times(
            |e| matches!(e, TxnEvent::Response { response, .. } if response.code == 200)
        ),
        vec![1.0, 1.5, 2.5]
    );
    assert!(
        log.tx_times(|m| is_request(m, Method::Ack)).is_empty(),
        "2xx ACK is the TU's job"
    );
    // A late non-2xx in Accepted is dropped.
    layer.handle_message(
        at(t0, 3.0),
        Message::Response(reply(&invite, 500, Some("b2"))),
        bob(),
        false,
    );
    assert_eq!(drain(&mut layer), (vec![], vec![]));
    // Timer M = 64·T1 after the first 2xx.
    run_timers(&mut layer, t0, at(t0, 100.0), &mut log);
    assert_eq!(
        log.event_times(|e| matches!(e, TxnEvent::Terminated { .. })),
        vec![33.0]
    );
    assert_eq!(log.tx_times(|m| is_request(m, Method::Invite)), vec![0.0]);
}

#[test]
fn non_invite_completed_absorbs_retransmissions_until_timer_k() {
    let (mut layer, t0, key, mut log) = start(Method::Options, false);
    let req = request(Method::Options, "z9hG4bKc1", 1);
    layer.handle_message(
        at(t0, 0.2),
        Message::Response(reply(&req, 200, Some("b1"))),
        bob(),
        false,
    );
    drain_into(&mut layer, t0, at(t0, 0.2), &mut log);
    assert_eq!(layer.client_state(&key), Some(TxnState::Completed));
    layer.handle_message(
        at(t0, 0.9),
        Message::Response(reply(&req, 200, Some("b1"))),
        bob(),
        false,
    );
    drain_into(&mut layer, t0, at(t0, 0.9), &mut log);
    run_timers(&mut layer, t0, at(t0, 100.0), &mut log);
    assert_eq!(
        log.event_times(|e| matches!(e, TxnEvent::Response { .. })),
        vec![0.2]
    );
    assert_eq!(
        log.event_times(|e| matches!(e, TxnEvent::Terminated { .. })),
        vec![5.2]
    );
    assert_eq!(log.tx_times(|m| is_request(m, Method::Options)), vec![0.0]);
    assert!(log
        .event_times(|e| matches!(e, TxnEvent::Timeout { .. }))
        .is_empty());
}

#[test]
fn non_invite_over_reliable_transport_ends_on_the_final_response() {
    let (mut layer, t0, key, _) = start(Method::Options, true);
    let req = request(Method::Options, "z9hG4bKc1", 1);
    layer.handle_message(
        at(t0, 0.2),
        Message::Response(reply(&req, 200, Some("b1"))),
        bob(),
        true,
    );
    let (_, ev) = drain(&mut layer);
    assert!(matches!(&ev[0], TxnEvent::Response { .. }));
    assert!(matches!(&ev[1], TxnEvent::Terminated { key: k } if *k == key));
    assert!(layer.is_empty());
}

#[test]
fn cancel_and_invite_responses_match_by_cseq_method() {
    let t0 = Instant::now();
    let mut layer = TxnLayer::new(TimerConfig::default());
    let invite = request(Method::Invite, "z9hG4bKc1", 1);
    let cancel = request(Method::Cancel, "z9hG4bKc1", 1);
    let ik = layer.send_request(t0, invite.clone(), bob(), false);
    layer.handle_message(
        at(t0, 0.1),
        Message::Response(reply(&invite, 180, Some("b1"))),
        bob(),
        false,
    );
    let ck = layer.send_request(at(t0, 1.0), cancel.clone(), bob(), false);
    assert_ne!(ik, ck);
    assert_eq!(ck.cancel_target(), ik);
    drain(&mut layer);
    layer.handle_message(
        at(t0, 1.1),
        Message::Response(reply(&cancel, 200, Some("b1"))),
        bob(),
        false,
    );
    layer.handle_message(
        at(t0, 1.2),
        Message::Response(reply(&invite, 487, Some("b1"))),
        bob(),
        false,
    );
    let (tx, ev) = drain(&mut layer);
    assert!(
        matches!(&ev[0], TxnEvent::Response { key, response } if *key == ck && response.code == 200)
    );
    assert!(
        matches!(&ev[1], TxnEvent::Response { key, response } if *key == ik && response.code == 487)
    );
    assert_eq!(tx.len(), 1);
    assert!(is_request(&tx[0].message, Method::Ack));
    assert_eq!(layer.client_state(&ck), Some(TxnState::Completed));
    assert_eq!(layer.client_state(&ik), Some(TxnState::Completed));
}

#[test]
fn unmatched_response_is_stray() {
    let t0 = Instant::now();
    let mut layer = TxnLayer::new(TimerConfig::default());
    let req = request(Method::Bye, "z9hG4bKnone", 2);
    layer.handle_message(
        t0,
        Message::Response(reply(&req, 200, Some("b1"))),
        bob(),
        false,
    );
    let (tx, ev) = drain(&mut layer);
    assert!(tx.is_empty());
    assert!(matches!(&ev[0], TxnEvent::StrayResponse { source, .. } if *source == bob()));
}

#[test]
fn response_without_via_is_dropped() {
    let t0 = Instant::now();
    let mut layer = TxnLayer::new(TimerConfig::default());
    let req = request(Method::Bye, "z9hG4bKc1", 2);
    layer.send_request(t0, req.clone(), bob(), false);
    drain(&mut layer);
    let mut resp = reply(&req, 200, Some("b1"));
    resp.headers.remove(&HeaderName::VIA);
    layer.handle_message(t0, Message::Response(resp), bob(), false);
    let (_, ev) = drain(&mut layer);
    assert!(matches!(&ev[0], TxnEvent::Dropped { peer, .. } if *peer == bob()));
}

#[test]
fn transport_error_reports_timeout() {
    let (mut layer, t0, key, _) = start(Method::Invite, true);
    layer.handle_transport_error(at(t0, 0.01), &key);
    let (_, ev) = drain(&mut layer);
    assert!(matches!(&ev[0], TxnEvent::Timeout { key: k } if *k == key));
    assert!(matches!(&ev[1], TxnEvent::Terminated { key: k } if *k == key));
    assert!(layer.is_empty());
}

#[test]
fn request_without_branch_times_out_at_once() {
    let t0 = Instant::now();
    let mut layer = TxnLayer::new(TimerConfig::default());
    let mut req = request(Method::Options, "x", 1);
    req.headers.remove(&HeaderName::VIA);
    let key = layer.send_request(t0, req, bob(), false);
    let (tx, ev) = drain(&mut layer);
    assert!(tx.is_empty());
    assert!(matches!(&ev[0], TxnEvent::Timeout { key: k } if *k == key));
    assert!(layer.is_empty());
}

#[test]
fn duplicate_client_key_is_refused() {
    let t0 = Instant::now();
    let mut layer = TxnLayer::new(TimerConfig::default());
    layer.send_request(t0, request(Method::Options, "z9hG4bKd", 1), bob(), false);
    drain(&mut layer);
    layer.send_request(t0, request(Method::Options, "z9hG4bKd", 2), bob(), false);
    let (tx, ev) = drain(&mut layer);
    assert!(tx.is_empty());
    assert!(matches!(&ev[0], TxnEvent::Dropped { .. }));
    assert_eq!(layer.len(), 1);
}

#[test]
fn ack_is_sent_once_without_a_transaction() {
    let t0 = Instant::now();
    let mut layer = TxnLayer::new(TimerConfig::default());
    layer.send_request(t0, request(Method::Ack, "z9hG4bKack", 1), bob(), false);
    let (tx, ev) = drain(&mut layer);
    assert_eq!(tx.len(), 1);
    assert!(ev.is_empty());
    assert!(layer.is_empty());
    assert_eq!(layer.poll_timeout(), None);
}

#[test]
fn late_or_spurious_timeouts_are_harmless() {
    let (mut layer, t0, _key, _) = start(Method::Invite, false);
    // Spurious: before any deadline.
    layer.handle_timeout(at(t0, 0.1));
    assert_eq!(drain(&mut layer), (vec![], vec![]));
    // Very late: one retransmission, then the timeout (B is due), in deadline order.
    layer.handle_timeout(at(t0, 40.0));
    let (tx, ev) = drain(&mut layer);
    assert_eq!(tx.len(), 1);
    assert!(matches!(&ev[0], TxnEvent::Timeout { .. }));
    assert!(layer.is_empty());
}

#[test]
fn degenerate_timer_values_neither_hang_nor_panic() {
    use std::time::Duration;
    for cfg in [
        TimerConfig {
            t1: Duration::ZERO,
            t2: Duration::ZERO,
            t4: Duration::ZERO,
        },
        TimerConfig {
            t1: Duration::MAX,
            t2: Duration::MAX,
            t4: Duration::MAX,
        },
    ] {
        let t0 = Instant::now();
        let mut layer = TxnLayer::new(cfg);
        layer.send_request(t0, request(Method::Invite, "z9hG4bKz", 1), bob(), false);
        layer.send_request(t0, request(Method::Options, "z9hG4bKz", 1), bob(), false);
        let inv = request(Method::Invite, "z9hG4bKs", 1);
        layer.handle_message(t0, Message::Request(inv.clone()), alice(), false);
        let (_, ev) = drain(&mut layer);
        let key = ev
            .iter()
            .find_map(|e| match e {
                TxnEvent::Request { key: Some(k), .. } => Some(k.clone()),
                _ => None,
            })
            .expect("server txn");
        layer
            .send_response(t0, &key, reply(&inv, 500, Some("x")))
            .expect("500");
        let mut log = Log::default();
        run_timers(&mut layer, t0, at(t0, 1000.0), &mut log);
        assert!(log.transmits.len() < 100_000);
    }
}
