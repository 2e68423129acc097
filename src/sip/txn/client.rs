//! Client non-INVITE transaction (RFC 3261 §17.1.2).
//!
//! ```text
//!          send request, E = T1 (unreliable), F = 64·T1
//!  Trying --1xx--> Proceeding --200-699--> Completed (K = T4 / 0) --K--> Terminated
//!    | E: resend, E = min(2E, T2)   | E: resend, E = T2
//!    +-- F (either state): Timeout --> Terminated
//! ```

use std::collections::VecDeque;
use std::time::Instant;

use crate::sip::msg::{Message, Request, Response};

use super::timers::Timers;
use super::{TimerConfig, TxnOutput, TxnState};

/// Client non-INVITE transaction: retransmits the request (timer E, capped at T2), gives up
/// after timer F, and absorbs retransmitted final responses in Completed (timer K).
#[derive(Debug)]
pub struct ClientNonInviteTxn {
    state: TxnState,
    cfg: TimerConfig,
    reliable: bool,
    request: Request,
    timers: Timers<Timer>,
    out: VecDeque<TxnOutput>,
}

/// Ending timers first: when several are due at once they fire in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    F,
    K,
    E,
}

impl ClientNonInviteTxn {
    /// Start the transaction: the request is queued for transmission at once.
    /// `reliable` = TCP/TLS: no retransmission, timer K zero.
    pub fn new(now: Instant, request: Request, reliable: bool, cfg: TimerConfig) -> Self {
        let mut out = VecDeque::new();
        out.push_back(TxnOutput::Transmit(Message::Request(request.clone())));
        let cfg = cfg.sanitized();
        let mut timers = Timers::new();
        if !reliable {
            timers.start(Timer::E, now, cfg.t1);
        }
        timers.start(Timer::F, now, cfg.t1x64());
        ClientNonInviteTxn {
            state: TxnState::Trying,
            cfg,
            reliable,
            request,
            timers,
            out,
        }
    }

    /// The current state.
    pub fn state(&self) -> TxnState {
        self.state
    }

    /// The request this transaction sends.
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
            TxnState::Trying | TxnState::Proceeding => {
                if code < 200 {
                    self.state = TxnState::Proceeding;
                    self.out.push_back(TxnOutput::Response(response));
                } else {
                    self.state = TxnState::Completed;
                    self.timers.stop(Timer::E);
                    self.timers.stop(Timer::F);
                    self.out.push_back(TxnOutput::Response(response));
                    let k = self.cfg.t4_or_zero(self.reliable);
                    if k.is_zero() {
                        self.terminate();
                    } else {
                        self.timers.start(Timer::K, now, k);
                    }
                }
            }
            // Completed absorbs retransmitted responses; Terminated ignores everything.
            _ => {}
        }
    }

    /// The transport could not send the request: tell the TU (as a timeout) and end.
    pub fn handle_transport_error(&mut self, _now: Instant) {
        match self.state {
            TxnState::Trying | TxnState::Proceeding => {
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
                Timer::E => {
                    let t2 = self.cfg.t2;
                    let proceeding = self.state == TxnState::Proceeding;
                    if let Some(e) = self.timers.interval(Timer::E) {
                        let interval = if proceeding {
                            t2
                        } else {
                            e.saturating_mul(2).min(t2)
                        };
                        self.timers.start(Timer::E, now, interval);
                        self.out
                            .push_back(TxnOutput::Transmit(Message::Request(self.request.clone())));
                    }
                }
                Timer::F => {
                    self.out.push_back(TxnOutput::Timeout);
                    self.terminate();
                }
                Timer::K => self.terminate(),
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
}
