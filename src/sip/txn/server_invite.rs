//! Server INVITE transaction (RFC 3261 §17.2.1, RFC 6026 §7.1).
//!
//! ```text
//!  INVITE in: send 100 Trying
//!  Proceeding --TU 1xx: send--> Proceeding
//!     |--TU 2xx: send--> Accepted (L = 64·T1) --L--> Terminated
//!     +--TU 300-699: send, G = T1, H = 64·T1--> Completed
//!  Completed --G: resend, G = min(2G, T2); ACK--> Confirmed (I = T4 / 0) --I--> Terminated
//!            --H: Timeout--> Terminated (no ACK came)
//! ```
//! Retransmitted INVITEs get the last response again (Proceeding, Completed) or are
//! absorbed (Confirmed, Accepted).

use std::collections::VecDeque;
use std::time::Instant;

use crate::sip::msg::{Message, Method, Request, Response};

use super::response::response_for;
use super::{after, earliest, RetransmitTimer, TimerConfig, TxnError, TxnOutput, TxnState};

/// Server INVITE transaction: sends 100 Trying at once, resends the last response to
/// retransmitted INVITEs, retransmits a non-2xx final response until the ACK (timers G/H),
/// absorbs ACK retransmissions (timer I), and after a 2xx waits in Accepted (timer L),
/// passing same-branch ACKs to the TU.
#[derive(Debug)]
pub struct ServerInviteTxn {
    state: TxnState,
    cfg: TimerConfig,
    reliable: bool,
    last_response: Option<Response>,
    timer_g: Option<RetransmitTimer>,
    timer_h: Option<Instant>,
    timer_i: Option<Instant>,
    timer_l: Option<Instant>,
    out: VecDeque<TxnOutput>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    H,
    I,
    L,
    G,
}

impl ServerInviteTxn {
    /// Create the transaction for a new INVITE: queues the request for the TU
    /// ([`TxnOutput::Request`]) and a 100 Trying for the network.
    /// `reliable` = it came over TCP/TLS: no retransmission, timer I zero.
    pub fn new(_now: Instant, request: Request, reliable: bool, cfg: TimerConfig) -> Self {
        let trying = response_for(&request, 100);
        let mut out = VecDeque::new();
        out.push_back(TxnOutput::Request(request));
        out.push_back(TxnOutput::Transmit(Message::Response(trying.clone())));
        ServerInviteTxn {
            state: TxnState::Proceeding,
            cfg: cfg.sanitized(),
            reliable,
            last_response: Some(trying),
            timer_g: None,
            timer_h: None,
            timer_i: None,
            timer_l: None,
            out,
        }
    }

    /// The current state.
    pub fn state(&self) -> TxnState {
        self.state
    }

    /// A request that matched this transaction: a retransmitted INVITE or an ACK.
    pub fn handle_request(&mut self, now: Instant, request: Request) {
        if matches!(request.method, Method::Ack) {
            match self.state {
                TxnState::Completed => {
                    self.state = TxnState::Confirmed;
                    self.timer_g = None;
                    self.timer_h = None;
                    let i = self.cfg.t4_or_zero(self.reliable);
                    if i.is_zero() {
                        self.terminate();
                    } else {
                        self.timer_i = after(now, i);
                    }
                }
                TxnState::Accepted => self.out.push_back(TxnOutput::Ack(request)),
                // Confirmed absorbs ACK retransmissions; an ACK in Proceeding is bogus.
                _ => {}
            }
        } else if matches!(self.state, TxnState::Proceeding | TxnState::Completed) {
            if let Some(last) = &self.last_response {
                self.out
                    .push_back(TxnOutput::Transmit(Message::Response(last.clone())));
            }
        }
    }

    /// The TU's response to the INVITE.
    pub fn send_response(&mut self, now: Instant, response: Response) -> Result<(), TxnError> {
        let code = response.code;
        if !(100..=699).contains(&code) {
            return Err(TxnError::InvalidStatus(code));
        }
        match (self.state, code) {
            (TxnState::Proceeding, 100..=199) => {}
            (TxnState::Proceeding, 200..=299) => {
                self.state = TxnState::Accepted;
                self.timer_l = after(now, self.cfg.t1x64());
            }
            (TxnState::Proceeding, _) => {
                self.state = TxnState::Completed;
                if !self.reliable {
                    self.timer_g = RetransmitTimer::start(now, self.cfg.t1);
                }
                self.timer_h = after(now, self.cfg.t1x64());
            }
            // RFC 6026: further 2xx from the TU (retransmissions, forks) pass through.
            (TxnState::Accepted, 200..=299) => {}
            (state, code) => return Err(TxnError::InvalidState { state, code }),
        }
        self.out
            .push_back(TxnOutput::Transmit(Message::Response(response.clone())));
        self.last_response = Some(response);
        Ok(())
    }

    /// Fire the timers due at `now`; calling it early or twice is a no-op.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.due(now) {
            match timer {
                Timer::G => {
                    let t2 = self.cfg.t2;
                    if let Some(g) = self.timer_g {
                        self.timer_g =
                            RetransmitTimer::start(now, g.interval.saturating_mul(2).min(t2));
                        if let Some(last) = &self.last_response {
                            self.out
                                .push_back(TxnOutput::Transmit(Message::Response(last.clone())));
                        }
                    }
                }
                Timer::H => {
                    // §17.2.1: the ACK never came; the TU is told of the failure.
                    self.out.push_back(TxnOutput::Timeout);
                    self.terminate();
                }
                Timer::I | Timer::L => self.terminate(),
            }
        }
    }

    /// The next instant `handle_timeout` has work to do, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest([
            self.timer_g.map(|g| g.at),
            self.timer_h,
            self.timer_i,
            self.timer_l,
        ])
    }

    /// The next thing to do: deliver, transmit, or drop the transaction.
    pub fn poll_output(&mut self) -> Option<TxnOutput> {
        self.out.pop_front()
    }

    fn due(&self, now: Instant) -> Option<Timer> {
        [
            (self.timer_h, Timer::H),
            (self.timer_i, Timer::I),
            (self.timer_l, Timer::L),
            (self.timer_g.map(|g| g.at), Timer::G),
        ]
        .into_iter()
        .filter_map(|(at, t)| at.filter(|at| *at <= now).map(|at| (at, t)))
        .min_by_key(|(at, _)| *at)
        .map(|(_, t)| t)
    }

    fn terminate(&mut self) {
        self.state = TxnState::Terminated;
        self.timer_g = None;
        self.timer_h = None;
        self.timer_i = None;
        self.timer_l = None;
        self.out.push_back(TxnOutput::Terminated);
    }
}
