//! The four machines used alone (without `TxnLayer`): the quinn/str0m shape works on its own.

#[path = "sip_txn_util.rs"]
mod util;

use std::time::Instant;

use termphone::sip::msg::{Message, Method};
use termphone::sip::txn::{
    ClientInviteTxn, ClientNonInviteTxn, ServerInviteTxn, ServerNonInviteTxn, TimerConfig,
    TxnError, TxnOutput, TxnState,
};
use util::*;

fn outputs(mut poll: impl FnMut() -> Option<TxnOutput>) -> Vec<TxnOutput> {
    std::iter::from_fn(&mut poll).collect()
}

fn kinds(outs: &[TxnOutput]) -> Vec<String> {
    outs.iter()
        .map(|o| match o {
            TxnOutput::Transmit(Message::Request(r)) => format!("tx {}", r.method),
            TxnOutput::Transmit(Message::Response(r)) => format!("tx {}", r.code),
            TxnOutput::Response(r) => format!("deliver {}", r.code),
            TxnOutput::Request(r) => format!("deliver {}", r.method),
            TxnOutput::Ack(_) => "deliver ACK".to_string(),
            TxnOutput::Timeout => "timeout".to_string(),
            TxnOutput::Terminated => "terminated".to_string(),
        })
        .collect()
}

#[test]
fn client_invite_alone() {
    let t0 = Instant::now();
    let invite = request(Method::Invite, "z9hG4bKm1", 1);
    let mut m = ClientInviteTxn::new(t0, invite.clone(), false, TimerConfig::default());
    assert_eq!(kinds(&outputs(|| m.poll_output())), ["tx INVITE"]);
    assert_eq!(m.poll_timeout(), Some(at(t0, 0.5)));
    m.handle_timeout(at(t0, 0.2)); // spurious
    assert!(m.poll_output().is_none());
    m.handle_timeout(at(t0, 0.5));
    assert_eq!(kinds(&outputs(|| m.poll_output())), ["tx INVITE"]);
    assert_eq!(m.poll_timeout(), Some(at(t0, 1.5)));
    m.handle_timeout(at(t0, 0.5)); // twice: no-op
    assert!(m.poll_output().is_none());
    m.handle_response(at(t0, 1.0), reply(&invite, 486, Some("b")));
    assert_eq!(
        kinds(&outputs(|| m.poll_output())),
        ["tx ACK", "deliver 486"]
    );
    assert_eq!(m.state(), TxnState::Completed);
    assert_eq!(m.poll_timeout(), Some(at(t0, 33.0)));
    m.handle_timeout(at(t0, 33.0));
    assert_eq!(kinds(&outputs(|| m.poll_output())), ["terminated"]);
    assert_eq!(m.state(), TxnState::Terminated);
    assert_eq!(m.poll_timeout(), None);
    // Anything after Terminated is ignored.
    m.handle_response(at(t0, 34.0), reply(&invite, 486, Some("b")));
    m.handle_timeout(at(t0, 100.0));
    assert!(m.poll_output().is_none());
}

#[test]
fn client_non_invite_alone() {
    let t0 = Instant::now();
    let req = request(Method::Bye, "z9hG4bKm2", 2);
    let mut m = ClientNonInviteTxn::new(t0, req.clone(), false, TimerConfig::default());
    assert_eq!(kinds(&outputs(|| m.poll_output())), ["tx BYE"]);
    m.handle_response(at(t0, 0.1), reply(&req, 200, Some("b")));
    assert_eq!(kinds(&outputs(|| m.poll_output())), ["deliver 200"]);
    m.handle_response(at(t0, 0.2), reply(&req, 200, Some("b")));
    assert!(m.poll_output().is_none());
    assert_eq!(m.poll_timeout(), Some(at(t0, 5.1)));
    m.handle_timeout(at(t0, 5.1));
    assert_eq!(kinds(&outputs(|| m.poll_output())), ["terminated"]);
}

#[test]
fn server_invite_alone() {
    let t0 = Instant::now();
    let invite = request(Method::Invite, "z9hG4bKm3", 1);
    let mut m = ServerInviteTxn::new(t0, invite.clone(), false, TimerConfig::default());
    assert_eq!(
        kinds(&outputs(|| m.poll_output())),
        ["deliver INVITE", "tx 100"]
    );
    assert_eq!(m.poll_timeout(), None);
    m.send_response(t0, reply(&invite, 180, Some("b")))
        .expect("180");
    m.send_response(t0, reply(&invite, 200, Some("b")))
        .expect("200");
    assert_eq!(kinds(&outputs(|| m.poll_output())), ["tx 180", "tx 200"]);
    assert_eq!(m.state(), TxnState::Accepted);
    assert_eq!(
        m.send_response(t0, reply(&invite, 99, None)),
        Err(TxnError::InvalidStatus(99))
    );
    m.handle_request(at(t0, 0.1), request(Method::Ack, "z9hG4bKm3", 1));
    assert_eq!(kinds(&outputs(|| m.poll_output())), ["deliver ACK"]);
    m.handle_timeout(at(t0, 32.0));
    assert_eq!(kinds(&outputs(|| m.poll_output())), ["terminated"]);
}

#[test]
fn server_non_invite_alone() {
    let t0 = Instant::now();
    let req = request(Method::Register, "z9hG4bKm4", 7);
    let mut m = ServerNonInviteTxn::new(t0, req.clone(), true, TimerConfig::default());
    assert_eq!(kinds(&outputs(|| m.poll_output())), ["deliver REGISTER"]);
    m.send_response(t0, reply(&req, 401, Some("b")))
        .expect("401");
    // Reliable: timer J is zero, the transaction ends with the final response.
    assert_eq!(
        kinds(&outputs(|| m.poll_output())),
        ["tx 401", "terminated"]
    );
    assert_eq!(m.poll_timeout(), None);
    assert!(matches!(
        m.send_response(t0, reply(&req, 200, Some("b"))),
        Err(TxnError::InvalidState {
            state: TxnState::Terminated,
            code: 200
        })
    ));
}
