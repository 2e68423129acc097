//! From the engine's call events to finished history entries: a sans-IO state machine (no
//! clock, no database), fed each event with the time it was seen.

use std::collections::HashMap;

use crate::engine::api::{CallId, CallState, Event};

use super::{Direction, NewHistoryEntry};

/// What is known of a call still in progress.
#[derive(Debug, Clone)]
struct Tracked {
    direction: Direction,
    peer: String,
    account: Option<String>,
    /// When it was first seen (Unix seconds).
    started: i64,
    /// When it was first seen connected (or held, which implies connected).
    connected_at: Option<i64>,
}

/// Follows every call through its [`Event::Call`] states and, when one reaches a final state,
/// gives its [`NewHistoryEntry`] once and forgets it.
///
/// - Direction: a call first seen `Incoming` is incoming; first seen `Dialing` or `Alerting`
///   (or connected, held) is outgoing. A call first seen in its final state (the recorder
///   started late) counts as incoming when that state is `Missed`, else outgoing, and starts
///   then.
/// - `started` is when the call was first seen; it is answered once seen `Connected`, `Hold`
///   or `RemoteHold`; `duration_s` runs from the first of those to the final state.
/// - `peer` and `account` are the first non-empty ones seen (a redirected call keeps the
///   address that was dialed); `end_state`, `code` and `reason` come from the final event.
/// - `name` is left `None`: the caller fills it (from a contact, [`super::Store::name_for`]).
///
/// Calls are independent: a transfer's new call is a call of its own.
#[derive(Debug, Default)]
pub struct HistoryRecorder {
    calls: HashMap<CallId, Tracked>,
}

impl HistoryRecorder {
    pub fn new() -> HistoryRecorder {
        HistoryRecorder::default()
    }

    /// Feeds one engine event seen at `now_unix` (Unix seconds); returns the finished call's
    /// entry when this event ended a call. Events other than [`Event::Call`] are ignored.
    pub fn observe(&mut self, ev: &Event, now_unix: i64) -> Option<NewHistoryEntry> {
        let Event::Call {
            call,
            state,
            peer,
            account,
            code,
            reason,
        } = ev
        else {
            return None;
        };
        let state = *state;
        let tracked = self.calls.entry(*call).or_insert_with(|| Tracked {
            direction: match state {
                CallState::Incoming | CallState::Missed => Direction::Incoming,
                _ => Direction::Outgoing,
            },
            peer: String::new(),
            account: None,
            started: now_unix,
            connected_at: None,
        });
        if tracked.peer.is_empty() {
            tracked.peer.clone_from(peer);
        }
        if tracked.account.is_none() {
            tracked.account.clone_from(account);
        }
        if matches!(
            state,
            CallState::Connected | CallState::Hold | CallState::RemoteHold
        ) && tracked.connected_at.is_none()
        {
            tracked.connected_at = Some(now_unix);
        }
        if !state.is_final() {
            return None;
        }
        let t = self.calls.remove(call)?;
        let duration_s = t.connected_at.map_or(0, |at| {
            u32::try_from(now_unix.saturating_sub(at).max(0)).unwrap_or(u32::MAX)
        });
        Some(NewHistoryEntry {
            direction: t.direction,
            peer: t.peer,
            name: None,
            account: t.account,
            started: t.started,
            answered: t.connected_at.is_some(),
            duration_s,
            end_state: state.to_string(),
            code: *code,
            reason: reason.clone(),
        })
    }

    /// How many calls are in progress (seen, not yet ended).
    pub fn in_progress(&self) -> usize {
        self.calls.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(call: u64, state: CallState) -> Event {
        Event::Call {
            call: CallId(call),
            state,
            peer: format!("sip:{}@example.com", 1000 + call),
            account: Some("work".into()),
            code: None,
            reason: None,
        }
    }

    fn end(call: u64, state: CallState, code: Option<u16>, reason: &str) -> Event {
        Event::Call {
            call: CallId(call),
            state,
            peer: format!("sip:{}@example.com", 1000 + call),
            account: Some("work".into()),
            code,
            reason: Some(reason.into()),
        }
    }

    #[test]
    fn outgoing_answered_call_has_talk_time() {
        let mut r = HistoryRecorder::new();
        assert_eq!(r.observe(&ev(1, CallState::Dialing), 1000), None);
        assert_eq!(r.observe(&ev(1, CallState::Alerting), 1002), None);
        assert_eq!(r.observe(&ev(1, CallState::Connected), 1005), None);
        assert_eq!(r.observe(&ev(1, CallState::Hold), 1010), None);
        assert_eq!(r.observe(&ev(1, CallState::Connected), 1020), None);
        assert_eq!(r.in_progress(), 1);
        let e = r
            .observe(&end(1, CallState::HangupLocal, None, "bye"), 1065)
            .expect("a finished call");
        assert_eq!(
            e,
            NewHistoryEntry {
                direction: Direction::Outgoing,
                peer: "sip:1001@example.com".into(),
                name: None,
                account: Some("work".into()),
                started: 1000,
                answered: true,
                duration_s: 60,
                end_state: "hanguplocal".into(),
                code: None,
                reason: Some("bye".into()),
            }
        );
        assert_eq!(r.in_progress(), 0);
        // Forgotten: a stray final event later is a new (degenerate) call, not a second entry
        // of the first with its old times.
        let again = r
            .observe(&end(1, CallState::HangupLocal, None, "bye"), 2000)
            .expect("entry");
        assert_eq!(again.started, 2000);
        assert!(!again.answered);
    }

    #[test]
    fn incoming_unanswered_is_missed() {
        let mut r = HistoryRecorder::new();
        assert_eq!(r.observe(&ev(2, CallState::Incoming), 500), None);
        let e = r
            .observe(&end(2, CallState::Missed, Some(487), "cancelled"), 520)
            .expect("entry");
        assert_eq!(e.direction, Direction::Incoming);
        assert!(!e.answered);
        assert_eq!(e.duration_s, 0);
        assert_eq!(e.started, 500);
        assert_eq!(e.end_state, "missed");
        assert_eq!(e.code, Some(487));
    }

    #[test]
    fn incoming_answered_counts_from_connect() {
        let mut r = HistoryRecorder::new();
        r.observe(&ev(3, CallState::Incoming), 100);
        r.observe(&ev(3, CallState::RemoteHold), 110); // held before a connected event
        r.observe(&ev(3, CallState::Connected), 115);
        let e = r
            .observe(&end(3, CallState::HangupRemote, None, "bye"), 140)
            .expect("entry");
        assert_eq!(e.direction, Direction::Incoming);
        assert!(e.answered);
        assert_eq!(e.duration_s, 30);
    }

    #[test]
    fn failed_outgoing_call_keeps_code_and_reason() {
        let mut r = HistoryRecorder::new();
        r.observe(&ev(4, CallState::Dialing), 10);
        let e = r
            .observe(&end(4, CallState::OtherFailure, Some(486), "Busy Here"), 13)
            .expect("entry");
        assert_eq!(e.direction, Direction::Outgoing);
        assert!(!e.answered);
        assert_eq!(e.duration_s, 0);
        assert_eq!(e.code, Some(486));
        assert_eq!(e.reason.as_deref(), Some("Busy Here"));
        assert_eq!(e.end_state, "otherfailure");
    }

    #[test]
    fn calls_are_independent_and_other_events_ignored() {
        let mut r = HistoryRecorder::new();
        r.observe(&ev(5, CallState::Dialing), 0);
        r.observe(&ev(6, CallState::Incoming), 1);
        assert_eq!(
            r.observe(
                &Event::Dtmf {
                    call: CallId(5),
                    digit: '1'
                },
                2
            ),
            None
        );
        r.observe(&ev(6, CallState::Connected), 3);
        let six = r
            .observe(&end(6, CallState::HangupRemote, None, "bye"), 9)
            .expect("entry");
        assert_eq!((six.direction, six.duration_s), (Direction::Incoming, 6));
        assert_eq!(r.in_progress(), 1);
        let five = r
            .observe(&end(5, CallState::NetworkFailure, None, "timeout"), 32)
            .expect("entry");
        assert_eq!(five.peer, "sip:1005@example.com");
        assert_eq!((five.started, five.answered), (0, false));
    }

    #[test]
    fn first_peer_and_account_are_kept() {
        let mut r = HistoryRecorder::new();
        r.observe(&ev(7, CallState::Dialing), 0);
        let redirected = Event::Call {
            call: CallId(7),
            state: CallState::Alerting,
            peer: "sip:elsewhere@example.org".into(),
            account: None,
            code: None,
            reason: None,
        };
        r.observe(&redirected, 1);
        let e = r
            .observe(&end(7, CallState::HangupLocal, None, "bye"), 2)
            .expect("entry");
        assert_eq!(e.peer, "sip:1007@example.com");
        assert_eq!(e.account.as_deref(), Some("work"));
    }

    #[test]
    fn clock_going_backwards_gives_zero_not_a_wrap() {
        let mut r = HistoryRecorder::new();
        r.observe(&ev(8, CallState::Dialing), 100);
        r.observe(&ev(8, CallState::Connected), 100);
        let e = r
            .observe(&end(8, CallState::HangupLocal, None, "bye"), 50)
            .expect("entry");
        assert_eq!(e.duration_s, 0);
        assert!(e.answered);
    }
}
