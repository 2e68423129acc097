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
use super::timers::Timers;
use super::{TimerConfig, TxnError, TxnOutput, TxnState};

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
    timers: Timers<Timer>,
    out: VecDeque<TxnOutput>,
}

/// Ending timers first: when several are due at once they fire in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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
            timers: Timers::new(),
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
                    self.timers.stop(Timer::G);
                    self.timers.stop(Timer::H);
                    let i = self.cfg.t4_or_zero(self.reliable);
                    if i.is_zero() {
                        self.terminate();
                    } else {
                        self.timers.start(Timer::I, now, i);
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
                self.timers.start(Timer::L, now, self.cfg.t1x64());
            }
            (TxnState::Proceeding, _) => {
                self.state = TxnState::Completed;
                if !self.reliable {
                    self.timers.start(Timer::G, now, self.cfg.t1);
                }
                self.timers.start(Timer::H, now, self.cfg.t1x64());
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
        while let Some(timer) = self.timers.due(now) {
            match timer {
                Timer::G => {
                    let t2 = self.cfg.t2;
                    if let Some(g) = self.timers.interval(Timer::G) {
                        self.timers
                            .start(Timer::G, now, g.saturating_mul(2).min(t2));
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
        self.timers.poll_timeout()
    }

    /// The next thing to do: deliver, transmit, or drop the transaction.
    pub fn poll_output(&mut self) -> Option<TxnOutput> {
        self.out.pop_front()
    }

    fn terminate(&mut self) {
        self.state = TxnState::Terminated;
        self.timers.stop_all();
        self.out.push_back(TxnOutput::Terminated);
    }
}
