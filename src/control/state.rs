//! What the control server knows without asking the engine: the current calls and the
//! accounts' registration state, kept up to date from the engine's event stream, so that
//! `status` and `calls` answer at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::engine::api::{CallId, CallState, Event};
use crate::engine::AccountRegistration;

/// An account as `status` shows it. Never a password.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountStatus {
    pub name: String,
    pub user: Option<String>,
    pub domain: Option<String>,
    pub transport: Option<String>,
    pub registrar: Option<String>,
    /// registering, registered, unregistering, unregistered or failed.
    pub state: String,
    /// Why it failed.
    pub reason: Option<String>,
    /// Seconds the registrar granted (when registered).
    pub expires: Option<u32>,
}

impl AccountStatus {
    /// An account that registers, before its first registration event.
    pub fn from_registration(reg: &AccountRegistration) -> AccountStatus {
        AccountStatus {
            name: reg.name.clone(),
            user: reg.aor.user.clone(),
            domain: Some(reg.aor.host_port()),
            transport: Some(reg.transport.param_name().to_string()),
            registrar: Some(reg.registrar.to_string()),
            state: "registering".into(),
            reason: None,
            expires: None,
        }
    }
}

/// A call as `calls` and `status` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallStatus {
    pub call: CallId,
    /// incoming or outgoing.
    pub direction: &'static str,
    pub peer: String,
    /// The account it was placed as or arrived for (`null`: a direct call).
    pub account: Option<String>,
    pub state: CallState,
    /// The codec, from the call's first media statistics.
    pub codec: Option<String>,
    /// When the call started (Unix seconds).
    pub started: u64,
    /// When it was answered (Unix seconds).
    pub answered: Option<u64>,
}

/// The state, updated by [`Tracker::on_event`].
#[derive(Debug, Clone)]
pub struct Tracker {
    listen: SocketAddr,
    transports: Vec<&'static str>,
    accounts: Vec<AccountStatus>,
    calls: BTreeMap<CallId, CallStatus>,
}

impl Tracker {
    /// The engine listening at `listen`, with these accounts (before any event).
    pub fn new(listen: SocketAddr, accounts: Vec<AccountStatus>) -> Tracker {
        Tracker {
            listen,
            transports: Vec::new(),
            accounts,
            calls: BTreeMap::new(),
        }
    }

    /// Take in one engine event.
    pub fn on_event(&mut self, event: &Event) {
        self.on_event_at(event, unix_now());
    }

    fn on_event_at(&mut self, event: &Event, now: u64) {
        match event {
            Event::Listening { transport, .. } => {
                if !self.transports.contains(transport) {
                    self.transports.push(transport);
                }
            }
            Event::Registration {
                account,
                state,
                reason,
                expires,
            } => {
                let a = match self.accounts.iter_mut().position(|a| &a.name == account) {
                    Some(i) => &mut self.accounts[i],
                    None => {
                        self.accounts.push(AccountStatus {
                            name: account.clone(),
                            user: None,
                            domain: None,
                            transport: None,
                            registrar: None,
                            state: String::new(),
                            reason: None,
                            expires: None,
                        });
                        self.accounts.last_mut().expect("just pushed")
                    }
                };
                a.state = (*state).to_string();
                a.reason = reason.clone();
                a.expires = *expires;
            }
            Event::Call {
                call,
                state,
                peer,
                account,
                ..
            } => {
                if state.is_final() {
                    self.calls.remove(call);
                    return;
                }
                let c = self.calls.entry(*call).or_insert_with(|| CallStatus {
                    call: *call,
                    direction: if *state == CallState::Incoming {
                        "incoming"
                    } else {
                        "outgoing"
                    },
                    peer: peer.clone(),
                    account: account.clone(),
                    state: *state,
                    codec: None,
                    started: now,
                    answered: None,
                });
                c.state = *state;
                c.peer = peer.clone();
                if account.is_some() {
                    c.account = account.clone();
                }
                if *state == CallState::Connected && c.answered.is_none() {
                    c.answered = Some(now);
                }
            }
            Event::Stats { call, stats } => {
                if let Some(c) = self.calls.get_mut(call) {
                    if !stats.codec.is_empty() {
                        c.codec = Some(stats.codec.clone());
                    }
                }
            }
            Event::Dtmf { .. }
            | Event::Summary { .. }
            | Event::Levels { .. }
            | Event::Recording { .. }
            | Event::Recorded { .. }
            | Event::Transfer { .. }
            | Event::Conference { .. }
            | Event::Redirect { .. }
            | Event::Warning { .. }
            | Event::Control { .. } => {}
        }
    }

    /// The engine's SIP address.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// The SIP transports listening on that address.
    pub fn transports(&self) -> &[&'static str] {
        &self.transports
    }

    /// The accounts, in configuration order.
    pub fn accounts(&self) -> &[AccountStatus] {
        &self.accounts
    }

    /// The current calls, by id.
    pub fn calls(&self) -> Vec<CallStatus> {
        self.calls.values().cloned().collect()
    }

    /// A current call's state.
    pub fn call_state(&self, call: CallId) -> Option<CallState> {
        self.calls.get(&call).map(|c| c.state)
    }

    /// A current call's peer and account.
    pub fn peer(&self, call: CallId) -> Option<(String, Option<String>)> {
        self.calls
            .get(&call)
            .map(|c| (c.peer.clone(), c.account.clone()))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::api::CallMediaStats;

    fn call(n: u64, state: CallState) -> Event {
        Event::Call {
            call: CallId(n),
            state,
            peer: format!("sip:p{n}@127.0.0.1"),
            account: n.is_multiple_of(2).then(|| "work".to_string()),
            code: None,
            reason: None,
        }
    }

    fn tracker() -> Tracker {
        Tracker::new(
            "127.0.0.1:5060".parse().unwrap(),
            vec![AccountStatus {
                name: "work".into(),
                user: Some("1001".into()),
                domain: Some("pbx".into()),
                transport: Some("tcp".into()),
                registrar: Some("sip:pbx".into()),
                state: "registering".into(),
                reason: None,
                expires: None,
            }],
        )
    }

    #[test]
    fn calls_come_and_go_with_their_direction_times_and_codec() {
        let mut t = tracker();
        t.on_event_at(&call(1, CallState::Dialing), 100);
        t.on_event_at(&call(2, CallState::Incoming), 101);
        t.on_event_at(&call(1, CallState::Alerting), 102);
        t.on_event_at(&call(1, CallState::Connected), 103);
        t.on_event_at(
            &Event::Stats {
                call: CallId(1),
                stats: CallMediaStats {
                    codec: "PCMA".into(),
                    ..Default::default()
                },
            },
            108,
        );
        let calls = t.calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].direction, "outgoing");
        assert_eq!(calls[0].state, CallState::Connected);
        assert_eq!(calls[0].started, 100);
        assert_eq!(calls[0].answered, Some(103));
        assert_eq!(calls[0].codec.as_deref(), Some("PCMA"));
        assert_eq!(calls[1].direction, "incoming");
        assert_eq!(calls[0].account, None);
        assert_eq!(calls[1].account.as_deref(), Some("work"));
        assert_eq!(t.call_state(CallId(2)), Some(CallState::Incoming));
        t.on_event_at(&call(1, CallState::HangupLocal), 110);
        t.on_event_at(&call(2, CallState::Missed), 110);
        assert!(t.calls().is_empty());
    }

    #[test]
    fn registration_state_and_reason() {
        let mut t = tracker();
        t.on_event(&Event::Registration {
            account: "work".into(),
            state: "failed",
            reason: Some("wrong password".into()),
            expires: None,
        });
        assert_eq!(t.accounts()[0].state, "failed");
        assert_eq!(t.accounts()[0].reason.as_deref(), Some("wrong password"));
        t.on_event(&Event::Registration {
            account: "work".into(),
            state: "registered",
            reason: None,
            expires: Some(600),
        });
        assert_eq!(t.accounts()[0].state, "registered");
        assert_eq!(t.accounts()[0].reason, None);
        assert_eq!(t.accounts()[0].expires, Some(600));
        t.on_event(&Event::Listening {
            addr: "127.0.0.1:5060".parse().unwrap(),
            transport: "udp",
        });
        assert_eq!(t.transports(), ["udp"]);
    }
}
