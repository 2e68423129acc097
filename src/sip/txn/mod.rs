//! SIP transactions (RFC 3261 §17, with the RFC 6026 `Accepted` state), sans-IO.
//!
//! Four state machines, one per transaction kind, each in the quinn/str0m shape
//! (`new(now, ..)`, `handle_*(now, ..)`, `handle_timeout(now)`, `poll_timeout()`,
//! `poll_output()`), and [`TxnLayer`], the multiplexer the UA core uses: it matches
//! messages to transactions (§17.1.3, §17.2.3), absorbs retransmissions, answers
//! malformed requests with a stateless 400 and turns machine outputs into
//! [`Transmit`]s and [`TxnEvent`]s.
//!
//! Nothing here reads a clock, sleeps or touches a socket: `now` is always an input and
//! the caller sends what [`TxnLayer::poll_transmit`] hands out.

mod client;
mod client_invite;
mod key;
mod layer;
mod response;
mod server;
mod server_invite;
mod timers;

use std::fmt;
use std::time::Duration;

use crate::sip::msg::{Message, Request, Response};

pub use client::ClientNonInviteTxn;
pub use client_invite::ClientInviteTxn;
pub use key::TxnKey;
pub use layer::TxnLayer;
pub use response::response_for;
pub use server::ServerNonInviteTxn;
pub use server_invite::ServerInviteTxn;

/// The branch prefix of RFC 3261 (§8.1.1.7): a branch starting with it is unique per transaction.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// Transaction timer base values (RFC 3261 §17.1.1.1, table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate; retransmission intervals start here (default 500 ms).
    pub t1: Duration,
    /// Cap on the retransmission interval of non-INVITE requests and INVITE responses (default 4 s).
    pub t2: Duration,
    /// Longest time a message stays in the network (default 5 s).
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// The values the machines actually use: T1 at least 1 ms (a zero T1 would retransmit
    /// forever at one instant) and T2 at least T1.
    pub fn sanitized(self) -> TimerConfig {
        let t1 = self.t1.max(Duration::from_millis(1));
        TimerConfig {
            t1,
            t2: self.t2.max(t1),
            t4: self.t4,
        }
    }

    /// 64·T1: timers B, F, H, J, L and M.
    pub fn t1x64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// Timer D: 32 s or more over unreliable transports (we use max(32 s, 64·T1)), zero over reliable ones.
    pub fn timer_d(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t1x64().max(Duration::from_secs(32))
        }
    }

    /// Timers I and K: T4 over unreliable transports, zero over reliable ones.
    pub fn t4_or_zero(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t4
        }
    }

    /// Timer J: 64·T1 over unreliable transports, zero over reliable ones.
    pub fn timer_j(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t1x64()
        }
    }
}

/// Which of the four transaction machines a transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnKind {
    /// Client INVITE transaction (§17.1.1).
    ClientInvite,
    /// Client non-INVITE transaction (§17.1.2).
    ClientNonInvite,
    /// Server INVITE transaction (§17.2.1).
    ServerInvite,
    /// Server non-INVITE transaction (§17.2.2).
    ServerNonInvite,
}

/// Transaction states, with the RFC 3261 / RFC 6026 names. Each machine uses a subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnState {
    /// Client INVITE: request sent, nothing heard yet.
    Calling,
    /// Non-INVITE: client sent the request / server got it, no response yet.
    Trying,
    /// A provisional response was received (client) or sent (server).
    Proceeding,
    /// A final response (non-2xx for INVITE) was received or sent; absorbing retransmissions.
    Completed,
    /// Server INVITE: the ACK for a non-2xx final response arrived.
    Confirmed,
    /// INVITE, RFC 6026: a 2xx was received or sent; absorbing retransmissions.
    Accepted,
    /// Done; the transaction is removed.
    Terminated,
}

impl fmt::Display for TxnState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            TxnState::Calling => "Calling",
            TxnState::Trying => "Trying",
            TxnState::Proceeding => "Proceeding",
            TxnState::Completed => "Completed",
            TxnState::Confirmed => "Confirmed",
            TxnState::Accepted => "Accepted",
            TxnState::Terminated => "Terminated",
        };
        f.write_str(s)
    }
}

/// What one transaction machine asks of its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum TxnOutput {
    /// Send this message to the transaction's peer (request destination / request source).
    Transmit(Message),
    /// Client: a response for the TU.
    Response(Response),
    /// Server: the request that created the transaction, for the TU.
    Request(Request),
    /// Server INVITE in Accepted: an ACK (for the 2xx) that carried the INVITE's branch, for the TU.
    Ack(Request),
    /// Client: timer B/F fired or the transport failed; the TU should act as if a 408 arrived.
    /// Server INVITE: timer H fired (the ACK for a non-2xx final response never came).
    Timeout,
    /// The machine reached Terminated and may be dropped.
    Terminated,
}

/// A message to send, with where to send it.
#[derive(Debug, Clone, PartialEq)]
pub struct Transmit {
    /// Destination address (for reliable transports: the connection to that peer).
    pub dest: core::net::SocketAddr,
    /// The message.
    pub message: Message,
}

/// What the transaction layer tells the TU (UA core).
#[derive(Debug, Clone, PartialEq)]
pub enum TxnEvent {
    /// A new request (not a retransmission) for the TU. For ACK to a 2xx, or a request that
    /// matches no transaction (stray ACK), `key` is None.
    Request {
        /// The server transaction to answer on (`send_response`), None for ACK.
        key: Option<TxnKey>,
        /// The request.
        request: Request,
        /// Where it came from (responses go back there).
        source: core::net::SocketAddr,
    },
    /// A response for a client transaction (provisional or final; 2xx retransmissions of an
    /// INVITE are delivered too, as RFC 6026 says, so the TU can re-ACK).
    Response {
        /// The client transaction.
        key: TxnKey,
        /// The response.
        response: Response,
    },
    /// A response that matched no transaction.
    StrayResponse {
        /// The response.
        response: Response,
        /// Where it came from.
        source: core::net::SocketAddr,
    },
    /// Client txn timed out (timer B/F) or transport error: TU should act as if 408.
    /// Also for a server INVITE txn whose timer H fired (no ACK for its non-2xx final
    /// response, §17.2.1); `key` is then the server key and there is nothing to retry.
    Timeout {
        /// The client (or server INVITE) transaction.
        key: TxnKey,
    },
    /// A transaction ended (for bookkeeping).
    Terminated {
        /// The transaction (client or server).
        key: TxnKey,
    },
    /// A message was dropped (worth a log line): an incoming malformed message (requests
    /// other than ACK were answered 400 first when they had a readable Via), or an outgoing
    /// request the TU asked for that could not start a transaction (duplicate key).
    Dropped {
        /// Why, in words (names headers, never copies their values).
        reason: String,
        /// The source of the incoming message, or the destination of the outgoing one.
        peer: core::net::SocketAddr,
    },
}

/// Why a TU action on a transaction was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnError {
    /// No server transaction has this key (never existed, or already terminated).
    NoTransaction,
    /// The transaction cannot send this response in its current state
    /// (e.g. a second final response, or a 1xx after the final one).
    InvalidState {
        /// The state the transaction was in.
        state: TxnState,
        /// The status code that was refused.
        code: u16,
    },
    /// The response's status code is outside 100..=699.
    InvalidStatus(u16),
}

impl fmt::Display for TxnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxnError::NoTransaction => f.write_str("no such server transaction"),
            TxnError::InvalidState { state, code } => {
                write!(f, "cannot send a {code} response in state {state}")
            }
            TxnError::InvalidStatus(code) => write!(f, "invalid status code {code}"),
        }
    }
}

impl std::error::Error for TxnError {}

/// A new RFC 3261 branch: the magic cookie "z9hG4bK" followed by 16 random alphanumerics.
pub fn new_branch<R: rand::Rng + ?Sized>(rng: &mut R) -> String {
    let mut s = String::with_capacity(MAGIC_COOKIE.len() + 16);
    s.push_str(MAGIC_COOKIE);
    for _ in 0..16 {
        s.push(char::from(rng.sample(rand::distr::Alphanumeric)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn branch_has_cookie_and_is_random() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let a = new_branch(&mut rng);
        let b = new_branch(&mut rng);
        assert!(a.starts_with(MAGIC_COOKIE));
        assert_eq!(a.len(), MAGIC_COOKIE.len() + 16);
        assert!(a[MAGIC_COOKIE.len()..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn timer_defaults() {
        let c = TimerConfig::default();
        assert_eq!(c.t1x64(), Duration::from_secs(32));
        assert_eq!(c.timer_d(false), Duration::from_secs(32));
        assert_eq!(c.timer_d(true), Duration::ZERO);
        assert_eq!(c.t4_or_zero(false), Duration::from_secs(5));
        assert_eq!(c.timer_j(true), Duration::ZERO);
    }
}
