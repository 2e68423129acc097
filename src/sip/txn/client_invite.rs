//! Client INVITE transaction (RFC 3261 §17.1.1, RFC 6026 §7.2).
//!
//! ```text
//!            send INVITE, A = T1 (unreliable), B = 64·T1
//!  Calling --1xx--> Proceeding --2xx--> Accepted (M = 64·T1) --M--> Terminated
//!     |  A: resend, A *= 2      |
//!     |  B: Timeout             +--300-699: ACK--> Completed (D) --D--> Terminated
//!     +--2xx / 300-699 like Proceeding
//! ```

use std::collections::VecDeque;
use std::time::Instant;

use crate::sip::msg::{HeaderName, Message, Method, Request, Response};

use super::timers::Timers;
use super::{TimerConfig, TxnOutput, TxnState};

/// Client INVITE transaction: retransmits the INVITE (timer A), gives up after timer B,
/// ACKs non-2xx final responses itself and absorbs their retransmissions (timer D);
/// 2xx responses (and their retransmissions) go to the TU in Accepted (timer M).
#[derive(Debug)]
pub struct ClientInviteTxn {
    state: TxnState,
    cfg: TimerConfig,
    reliable: bool,
    request: Request,
    ack: Option<Request>,
    timers: Timers<Timer>,
    out: VecDeque<TxnOutput>,
}

/// Ending timers first: when several are due at once they fire in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    B,
    D,
    M,
    A,
}

impl ClientInviteTxn {
    /// Start the transaction: the INVITE is queued for transmission at once.
    /// `reliable` = TCP/TLS: no retransmission, timer D zero.
    pub fn new(now: Instant, request: Request, reliable: bool, cfg: TimerConfig) -> Self {
        let mut out = VecDeque::new();
        out.push_back(TxnOutput::Transmit(Message::Request(request.clone())));
        let cfg = cfg.sanitized();
        let mut timers = Timers::new();
        if !reliable {
            timers.start(Timer::A, now, cfg.t1);
        }
        timers.start(Timer::B, now, cfg.t1x64());
        ClientInviteTxn {
            state: TxnState::Calling,
            cfg,
            reliable,
            request,
            ack: None,
            timers,
            out,
        }
    }

    /// The current state.
    pub fn state(&self) -> TxnState {
        self.state
    }

    /// The INVITE this transaction sends.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// A response that matched this transaction.
    pub fn handle_response(&mut self, now: Instant, response: Response) {
        let code = response.code;
        if !(100..=699).contains(&code) {
            return;
        }
        match self.state {
            TxnState::Calling | TxnState::Proceeding => {
                self.timers.stop(Timer::A);
                self.timers.stop(Timer::B);
                if code < 200 {
                    self.state = TxnState::Proceeding;
                    self.out.push_back(TxnOutput::Response(response));
                } else if code < 300 {
                    self.state = TxnState::Accepted;
                    self.timers.start(Timer::M, now, self.cfg.t1x64());
                    self.out.push_back(TxnOutput::Response(response));
                } else {
                    self.state = TxnState::Completed;
                    let ack = self.build_ack(&response);
                    self.out
                        .push_back(TxnOutput::Transmit(Message::Request(ack.clone())));
                    self.ack = Some(ack);
                    self.out.push_back(TxnOutput::Response(response));
                    let d = self.cfg.timer_d(self.reliable);
                    if d.is_zero() {
                        self.terminate();
                    } else {
                        self.timers.start(Timer::D, now, d);
                    }
                }
            }
            TxnState::Completed if code >= 300 => {
                if let Some(ack) = &self.ack {
                    self.out
                        .push_back(TxnOutput::Transmit(Message::Request(ack.clone())));
                }
            }
            TxnState::Accepted if (200..300).contains(&code) => {
                self.out.push_back(TxnOutput::Response(response));
            }
            _ => {}
        }
    }

    /// The transport could not send the request: tell the TU (as a timeout) and end.
    pub fn handle_transport_error(&mut self, _now: Instant) {
        match self.state {
            TxnState::Calling | TxnState::Proceeding => {
                self.out.push_back(TxnOutput::Timeout);
                self.terminate();
            }
            TxnState::Terminated => {}
            _ => self.terminate(),
        }
    }

    /// Fire the timers due at `now`; calling it early or twice is a no-op.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.due(now) {
            match timer {
                Timer::A => {
                    if let Some(a) = self.timers.interval(Timer::A) {
                        self.timers.start(Timer::A, now, a.saturating_mul(2));
                        self.out
                            .push_back(TxnOutput::Transmit(Message::Request(self.request.clone())));
                    }
                }
                Timer::B => {
                    self.out.push_back(TxnOutput::Timeout);
                    self.terminate();
                }
                Timer::D | Timer::M => self.terminate(),
            }
        }
    }

    /// The next instant `handle_timeout` has work to do, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.poll_timeout()
    }

    /// The next thing to do: transmit, deliver, time out, or drop the transaction.
    pub fn poll_output(&mut self) -> Option<TxnOutput> {
        self.out.pop_front()
    }

    fn terminate(&mut self) {
        self.state = TxnState::Terminated;
        self.timers.stop_all();
        self.out.push_back(TxnOutput::Terminated);
    }

    /// The ACK for a non-2xx final response (§17.1.1.3).
    fn build_ack(&self, response: &Response) -> Request {
        let orig = &self.request.headers;
        let mut ack = Request::new(Method::Ack, self.request.uri.clone());
        if let Ok(via) = orig.top_via() {
            ack.headers.push(HeaderName::VIA, via.to_string());
        }
        for route in orig.get_all(&HeaderName::ROUTE) {
            ack.headers.push(HeaderName::ROUTE, route);
        }
        ack.headers.push(
            HeaderName::MAX_FORWARDS,
            orig.get(&HeaderName::MAX_FORWARDS).unwrap_or("70"),
        );
        for name in [HeaderName::FROM].iter() {
            if let Some(v) = orig.get(name) {
                ack.headers.push(name.clone(), v);
            }
        }
        if let Some(to) = response.headers.get(&HeaderName::TO) {
            ack.headers.push(HeaderName::TO, to);
        } else if let Some(to) = orig.get(&HeaderName::TO) {
            ack.headers.push(HeaderName::TO, to);
        }
        if let Some(v) = orig.get(&HeaderName::CALL_ID) {
            ack.headers.push(HeaderName::CALL_ID, v);
        }
        let seq = orig
            .cseq()
            .or_else(|_| response.headers.cseq())
            .map(|c| c.seq)
            .unwrap_or(0);
        ack.headers.push(HeaderName::CSEQ, format!("{seq} ACK"));
        ack
    }
}
