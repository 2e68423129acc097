//! Server non-INVITE transaction (RFC 3261 §17.2.2).
//!
//! ```text
//!  Trying --TU 1xx: send--> Proceeding --TU 200-699: send--> Completed (J = 64·T1 / 0) --J--> Terminated
//!    +--TU 200-699: send------------------^
//! ```
//! Retransmitted requests are absorbed in Trying and answered with the last response in
//! Proceeding and Completed.

use std::collections::VecDeque;
use std::time::Instant;

use crate::sip::msg::{Message, Request, Response};

use super::{TimerConfig, TxnError, TxnOutput, TxnState};

/// Server non-INVITE transaction: answers retransmitted requests with the last response
/// and stays in Completed for timer J to absorb them.
#[derive(Debug)]
pub struct ServerNonInviteTxn {
    state: TxnState,
    cfg: TimerConfig,
    reliable: bool,
    last_response: Option<Response>,
    timer_j: Option<Instant>,
    out: VecDeque<TxnOutput>,
}

impl ServerNonInviteTxn {
    /// Create the transaction for a new request: queues it for the TU ([`TxnOutput::Request`]).
    /// `reliable` = it came over TCP/TLS: timer J zero.
    pub fn new(_now: Instant, request: Request, reliable: bool, cfg: TimerConfig) -> Self {
        let mut out = VecDeque::new();
        out.push_back(TxnOutput::Request(request));
        ServerNonInviteTxn {
            state: TxnState::Trying,
            cfg: cfg.sanitized(),
            reliable,
            last_response: None,
            timer_j: None,
            out,
        }
    }

    /// The current state.
    pub fn state(&self) -> TxnState {
        self.state
    }

    /// A retransmission of the request.
    pub fn handle_request(&mut self, _now: Instant, _request: Request) {
        if matches!(self.state, TxnState::Proceeding | TxnState::Completed) {
            if let Some(last) = &self.last_response {
                self.out
                    .push_back(TxnOutput::Transmit(Message::Response(last.clone())));
            }
        }
    }

    /// The TU's response to the request.
    pub fn send_response(&mut self, now: Instant, response: Response) -> Result<(), TxnError> {
        let code = response.code;
        if !(100..=699).contains(&code) {
            return Err(TxnError::InvalidStatus(code));
        }
        if !matches!(self.state, TxnState::Trying | TxnState::Proceeding) {
            return Err(TxnError::InvalidState {
                state: self.state,
                code,
            });
        }
        self.out
            .push_back(TxnOutput::Transmit(Message::Response(response.clone())));
        self.last_response = Some(response);
        if code < 200 {
            self.state = TxnState::Proceeding;
        } else {
            self.state = TxnState::Completed;
            let j = self.cfg.timer_j(self.reliable);
            if j.is_zero() {
                self.terminate();
            } else {
                // An instant past `Instant`'s range: never.
                self.timer_j = now.checked_add(j);
            }
        }
        Ok(())
    }

    /// Fire timer J if due at `now`; calling it early or twice is a no-op.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timer_j.is_some_and(|j| j <= now) {
            self.terminate();
        }
    }

    /// The next instant `handle_timeout` has work to do, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer_j
    }

    /// The next thing to do: deliver, transmit, or drop the transaction.
    pub fn poll_output(&mut self) -> Option<TxnOutput> {
        self.out.pop_front()
    }

    fn terminate(&mut self) {
        self.state = TxnState::Terminated;
        self.timer_j = None;
        self.out.push_back(TxnOutput::Terminated);
    }
}
