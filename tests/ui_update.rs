//! `update()`: keys and engine events in, model and effects out, with no terminal, engine or
//! database (the effects are what the runtime would do).

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use termphone::engine::api::{CallId, CallState, Event};
use termphone::store::{Contact, Direction, HistoryEntry};
use termphone::ui::keymap::KeyMap;
use termphone::ui::model::{Focus, Model, Prompt, ENDED_LINGER_MS};
use termphone::ui::update::{update, Effect, Msg, Request};

const NOW: i64 = 1_780_000_000;

fn phone() -> Model {
    let mut m = Model::new(&["work".to_string()], true, KeyMap::default(), false);
    update(
        &mut m,
        Msg::Tick {
            unix: NOW,
            ms: 1_000,
        },
    );
    m
}

fn key(m: &mut Model, c: char) -> Vec<Effect> {
    update(
        m,
        Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)),
    )
}

fn press(m: &mut Model, k: KeyCode) -> Vec<Effect> {
    update(m, Msg::Key(KeyEvent::new(k, KeyModifiers::NONE)))
}

fn typed(m: &mut Model, s: &str) {
    for c in s.chars() {
        key(m, c);
    }
}

fn call(m: &mut Model, id: u64, state: CallState) -> Vec<Effect> {
    update(
        m,
        Msg::Engine(Event::Call {
            call: CallId(id),
            state,
            peer: format!("sip:10{id:02}@pbx.example.com"),
            account: Some("work".into()),
            code: None,
            reason: None,
        }),
    )
}

fn engine(fx: &[Effect]) -> Vec<Request> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Engine(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn typing_and_enter_dials_as_the_selected_account() {
    let mut m = phone();
    typed(&mut m, "1002");
    assert_eq!(m.dialer, "1002");
    let fx = press(&mut m, KeyCode::Enter);
    assert_eq!(
        engine(&fx),
        vec![Request::Dial {
            account: Some("work".into()),
            target: "1002".into()
        }]
    );
    assert!(m.dialer.is_empty());
    assert_eq!(m.focus, Focus::Calls);

    // F2 switches to direct calls (the serverless account).
    update(
        &mut m,
        Msg::Key(KeyEvent::new(KeyCode::F(2), KeyModifiers::NONE)),
    );
    press(&mut m, KeyCode::Esc);
    assert_eq!(m.focus, Focus::Dialer);
    typed(&mut m, "sip:echo@127.0.0.1:5070");
    let fx = press(&mut m, KeyCode::Enter);
    assert_eq!(
        engine(&fx),
        vec![Request::Dial {
            account: None,
            target: "sip:echo@127.0.0.1:5070".into()
        }]
    );
}

#[test]
fn letters_in_the_dialer_type_and_never_act() {
    let mut m = phone();
    // q would quit and d dial elsewhere; in the dialer they are part of a SIP address.
    let fx = {
        let mut fx = Vec::new();
        for c in "quadrant@host?".chars() {
            fx.extend(key(&mut m, c));
        }
        fx
    };
    assert!(fx.is_empty(), "{fx:?}");
    assert_eq!(m.dialer, "quadrant@host?");
    assert!(!m.help);
    // F1 opens the help from the dialer too.
    press(&mut m, KeyCode::F(1));
    assert!(m.help);
}

#[test]
fn completion_from_contacts_and_history() {
    let mut m = phone();
    update(
        &mut m,
        Msg::Contacts(vec![Contact {
            id: 1,
            name: "Alice".into(),
            uri: "sip:1002@pbx".into(),
        }]),
    );
    update(
        &mut m,
        Msg::History(vec![HistoryEntry {
            id: 1,
            direction: Direction::Outgoing,
            peer: "sip:1009@pbx".into(),
            name: None,
            account: Some("work".into()),
            started: NOW - 60,
            answered: true,
            duration_s: 10,
            end_state: "hanguplocal".into(),
            code: None,
            reason: None,
        }]),
    );
    typed(&mut m, "100");
    let c = m.completions();
    assert_eq!(c.len(), 2, "{c:?}");
    assert_eq!(c[0], ("Alice".to_string(), "sip:1002@pbx".to_string()));
    press(&mut m, KeyCode::Down);
    press(&mut m, KeyCode::Down);
    let fx = press(&mut m, KeyCode::Enter);
    assert_eq!(
        engine(&fx),
        vec![Request::Dial {
            account: Some("work".into()),
            target: "1009@pbx".into()
        }]
    );

    // Enter on an empty dialer redials the last number called.
    press(&mut m, KeyCode::Esc);
    let fx = press(&mut m, KeyCode::Enter);
    assert_eq!(
        engine(&fx),
        vec![Request::Dial {
            account: Some("work".into()),
            target: "1009@pbx".into()
        }]
    );
}

#[test]
fn incoming_call_rings_and_is_answered_or_rejected_by_key() {
    let mut m = phone();
    typed(&mut m, "12");
    let fx = call(&mut m, 1, CallState::Incoming);
    assert!(fx.contains(&Effect::Bell));
    assert!(fx
        .iter()
        .any(|e| matches!(e, Effect::Notify { body, .. } if body.contains("1001@pbx"))));
    assert_eq!(m.incoming_prompt().map(|c| c.id), Some(CallId(1)));
    // The prompt takes the keys: 'a' answers, it does not type.
    let fx = key(&mut m, 'a');
    assert_eq!(
        engine(&fx),
        vec![Request::Answer {
            call: CallId(1),
            hold_others: false
        }]
    );
    assert_eq!(m.dialer, "12");

    let mut m = phone();
    call(&mut m, 2, CallState::Incoming);
    assert_eq!(
        engine(&key(&mut m, 'b')),
        vec![Request::Reject {
            call: CallId(2),
            code: 486
        }]
    );
    assert!(m.incoming_prompt().is_none());
    let mut m = phone();
    call(&mut m, 3, CallState::Incoming);
    assert_eq!(
        engine(&key(&mut m, 'r')),
        vec![Request::Reject {
            call: CallId(3),
            code: 603
        }]
    );
    // Esc puts the prompt away; the call still rings in the list and 'a' there answers.
    let mut m = phone();
    call(&mut m, 4, CallState::Incoming);
    press(&mut m, KeyCode::Esc);
    assert!(m.incoming_prompt().is_none());
    assert_eq!(m.focus, Focus::Calls);
    assert_eq!(
        engine(&key(&mut m, 'a')),
        vec![Request::Answer {
            call: CallId(4),
            hold_others: false
        }]
    );
}

#[test]
fn a_half_typed_contact_waits_out_an_incoming_call() {
    let mut m = phone();
    while m.focus != Focus::Contacts {
        press(&mut m, KeyCode::Tab);
    }
    key(&mut m, 'n');
    typed(&mut m, "Car");
    call(&mut m, 1, CallState::Incoming);
    assert!(m.prompt.is_none(), "the incoming prompt is on top");
    assert_eq!(
        engine(&key(&mut m, 'a')),
        vec![Request::Answer {
            call: CallId(1),
            hold_others: false
        }]
    );
    call(&mut m, 1, CallState::Connected);
    match &m.prompt {
        Some(Prompt::Contact { name, .. }) => assert_eq!(name, "Car"),
        other => panic!("the contact form is back: {other:?}"),
    }
}

#[test]
fn answering_a_waiting_call_holds_the_one_that_talks() {
    let mut m = phone();
    call(&mut m, 1, CallState::Dialing);
    call(&mut m, 1, CallState::Connected);
    call(&mut m, 2, CallState::Incoming);
    // The talking call stays selected; the prompt still answers the new one.
    assert_eq!(m.call().map(|c| c.id), Some(CallId(1)));
    let fx = key(&mut m, 'a');
    assert_eq!(
        engine(&fx),
        vec![Request::Answer {
            call: CallId(2),
            hold_others: true
        }]
    );
    assert_eq!(m.call().map(|c| c.id), Some(CallId(2)));
}

#[test]
fn call_keys_hold_mute_dtmf_hangup() {
    let mut m = phone();
    call(&mut m, 1, CallState::Dialing);
    call(&mut m, 1, CallState::Connected);
    press(&mut m, KeyCode::Esc);
    set_calls_focus(&mut m);
    assert_eq!(
        engine(&key(&mut m, 'h')),
        vec![Request::Hold { call: CallId(1) }]
    );
    call(&mut m, 1, CallState::Hold);
    assert_eq!(
        engine(&key(&mut m, 'h')),
        vec![Request::Resume {
            call: CallId(1),
            hold_others: true
        }]
    );
    // DTMF only on a connected call; held, a digit starts dialing instead.
    let fx = key(&mut m, '5');
    assert!(engine(&fx).is_empty());
    assert_eq!(m.focus, Focus::Dialer);
    assert_eq!(m.dialer, "5");
    press(&mut m, KeyCode::Backspace);
    call(&mut m, 1, CallState::Connected);
    set_calls_focus(&mut m);
    assert_eq!(
        engine(&key(&mut m, '#')),
        vec![Request::Dtmf {
            call: CallId(1),
            digits: "#".into()
        }]
    );
    assert_eq!(
        engine(&key(&mut m, 'm')),
        vec![Request::Mute {
            call: CallId(1),
            on: true
        }]
    );
    // Muted once the engine said so; the next m unmutes.
    update(
        &mut m,
        Msg::Done {
            request: Request::Mute {
                call: CallId(1),
                on: true,
            },
            result: Ok(None),
        },
    );
    assert!(m.call().unwrap().muted);
    assert_eq!(
        engine(&key(&mut m, 'm')),
        vec![Request::Mute {
            call: CallId(1),
            on: false
        }]
    );
    assert_eq!(
        engine(&key(&mut m, 'R')),
        vec![Request::Record {
            call: CallId(1),
            on: true
        }]
    );
    assert_eq!(
        engine(&key(&mut m, 'n')),
        vec![Request::Denoise {
            call: CallId(1),
            on: false
        }]
    );
    assert_eq!(
        engine(&key(&mut m, 'e')),
        vec![Request::Hangup { call: CallId(1) }]
    );
}

fn set_calls_focus(m: &mut Model) {
    while m.focus != Focus::Calls {
        press(m, KeyCode::Tab);
    }
}

#[test]
fn transfer_asks_for_the_target_and_join_needs_two_calls() {
    let mut m = phone();
    call(&mut m, 1, CallState::Dialing);
    call(&mut m, 1, CallState::Connected);
    set_calls_focus(&mut m);
    assert!(engine(&key(&mut m, 'j')).is_empty());
    assert!(m.notice.as_ref().unwrap().error);
    key(&mut m, 't');
    assert!(matches!(m.prompt, Some(Prompt::Text { .. })));
    typed(&mut m, "1003");
    let fx = press(&mut m, KeyCode::Enter);
    assert_eq!(
        engine(&fx),
        vec![Request::Transfer {
            call: CallId(1),
            to: "1003".into()
        }]
    );

    call(&mut m, 2, CallState::Dialing);
    call(&mut m, 2, CallState::Connected);
    call(&mut m, 1, CallState::Hold);
    assert_eq!(
        engine(&key(&mut m, 'j')),
        vec![Request::Join {
            call: CallId(1),
            with: CallId(2)
        }]
    );
    press(&mut m, KeyCode::Down);
    assert_eq!(
        engine(&key(&mut m, 'T')),
        vec![Request::AttendedTransfer {
            call: CallId(2),
            with: CallId(1)
        }]
    );
    // Enter on a held call switches to it.
    press(&mut m, KeyCode::Up);
    assert_eq!(
        engine(&press(&mut m, KeyCode::Enter)),
        vec![Request::Resume {
            call: CallId(1),
            hold_others: true
        }]
    );
}

#[test]
fn asked_transfer_is_answered_by_key() {
    let mut m = phone();
    call(&mut m, 1, CallState::Dialing);
    call(&mut m, 1, CallState::Connected);
    set_calls_focus(&mut m);
    update(
        &mut m,
        Msg::Engine(Event::Transfer {
            call: CallId(1),
            state: "asked",
            to: Some("sip:1004@pbx".into()),
            code: None,
            new_call: None,
        }),
    );
    assert!(m.call().unwrap().transfer_asked);
    assert_eq!(
        engine(&key(&mut m, 'y')),
        vec![Request::AnswerTransfer {
            call: CallId(1),
            accept: true
        }]
    );
    assert!(engine(&key(&mut m, 'y')).is_empty(), "answered once");
}

#[test]
fn ended_calls_linger_then_go() {
    let mut m = phone();
    call(&mut m, 1, CallState::Dialing);
    update(
        &mut m,
        Msg::Engine(Event::Call {
            call: CallId(1),
            state: CallState::OtherFailure,
            peer: "sip:1001@pbx".into(),
            account: None,
            code: Some(486),
            reason: Some("Busy Here".into()),
        }),
    );
    assert_eq!(m.calls.len(), 1);
    assert_eq!(m.calls[0].code, Some(486));
    update(
        &mut m,
        Msg::Tick {
            unix: NOW + 1,
            ms: 1_000 + ENDED_LINGER_MS - 1,
        },
    );
    assert_eq!(m.calls.len(), 1);
    update(
        &mut m,
        Msg::Tick {
            unix: NOW + 5,
            ms: 1_000 + ENDED_LINGER_MS,
        },
    );
    assert!(m.calls.is_empty());
}

#[test]
fn quitting_asks_while_calls_are_up() {
    let mut m = phone();
    press(&mut m, KeyCode::Esc);
    press(&mut m, KeyCode::Esc);
    set_calls_focus(&mut m);
    assert_eq!(key(&mut m, 'q'), vec![Effect::Quit]);

    let mut m = phone();
    call(&mut m, 1, CallState::Dialing);
    set_calls_focus(&mut m);
    assert!(key(&mut m, 'q').is_empty());
    assert_eq!(m.prompt, Some(Prompt::ConfirmQuit));
    assert!(key(&mut m, 'n').is_empty());
    assert_eq!(m.prompt, None);
    let ctrl_c = update(
        &mut m,
        Msg::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
    );
    assert!(ctrl_c.is_empty());
    assert_eq!(key(&mut m, 'y'), vec![Effect::Quit]);
    assert!(m.quitting);
}

#[test]
fn contacts_are_added_edited_deleted_and_called() {
    let mut m = phone();
    update(
        &mut m,
        Msg::Contacts(vec![Contact {
            id: 7,
            name: "Bob".into(),
            uri: "1003".into(),
        }]),
    );
    while m.focus != Focus::Contacts {
        press(&mut m, KeyCode::Tab);
    }
    key(&mut m, 'n');
    typed(&mut m, "Carol");
    press(&mut m, KeyCode::Enter);
    typed(&mut m, "sip:1004@pbx");
    let fx = press(&mut m, KeyCode::Enter);
    assert_eq!(
        fx,
        vec![Effect::SaveContact {
            id: None,
            name: "Carol".into(),
            uri: "sip:1004@pbx".into()
        }]
    );
    key(&mut m, 'e');
    press(&mut m, KeyCode::Tab);
    press(&mut m, KeyCode::Backspace);
    key(&mut m, '4');
    let fx = press(&mut m, KeyCode::Enter);
    assert_eq!(
        fx,
        vec![Effect::SaveContact {
            id: Some(7),
            name: "Bob".into(),
            uri: "1004".into()
        }]
    );
    // An empty name is refused with a notice; the form stays.
    key(&mut m, 'n');
    press(&mut m, KeyCode::Tab);
    typed(&mut m, "1005");
    assert!(press(&mut m, KeyCode::Enter).is_empty());
    assert!(m.prompt.is_some());
    press(&mut m, KeyCode::Esc);
    assert_eq!(key(&mut m, 'x'), vec![Effect::DeleteContact(7)]);
    let fx = press(&mut m, KeyCode::Enter);
    assert_eq!(
        engine(&fx),
        vec![Request::Dial {
            account: Some("work".into()),
            target: "1003".into()
        }]
    );
    // Import asks for a path.
    while m.focus != Focus::Contacts {
        press(&mut m, KeyCode::Tab);
    }
    key(&mut m, 'i');
    typed(&mut m, "~/contacts.vcf");
    assert_eq!(
        press(&mut m, KeyCode::Enter),
        vec![Effect::ImportContacts("~/contacts.vcf".into())]
    );
}

#[test]
fn history_filters_as_you_type_and_redials() {
    let mut m = phone();
    let entry = |id, peer: &str| HistoryEntry {
        id,
        direction: Direction::Incoming,
        peer: peer.into(),
        name: None,
        account: Some("work".into()),
        started: NOW,
        answered: false,
        duration_s: 0,
        end_state: "missed".into(),
        code: None,
        reason: None,
    };
    update(
        &mut m,
        Msg::History(vec![entry(2, "sip:1002@pbx"), entry(1, "sip:2001@other")]),
    );
    while m.focus != Focus::History {
        press(&mut m, KeyCode::Tab);
    }
    key(&mut m, '/');
    typed(&mut m, "other");
    assert_eq!(m.visible_history().len(), 1);
    press(&mut m, KeyCode::Enter);
    assert_eq!(m.history_filter, "other");
    let fx = press(&mut m, KeyCode::Enter);
    assert_eq!(
        engine(&fx),
        vec![Request::Dial {
            account: Some("work".into()),
            target: "2001@other".into()
        }]
    );
    while m.focus != Focus::History {
        press(&mut m, KeyCode::Tab);
    }
    assert_eq!(key(&mut m, 'x'), vec![Effect::DeleteHistory(1)]);
}

#[test]
fn registration_state_and_reason_are_kept() {
    let mut m = phone();
    update(
        &mut m,
        Msg::Engine(Event::Registration {
            account: "work".into(),
            state: "failed",
            reason: Some("wrong password (401)".into()),
            expires: None,
        }),
    );
    assert_eq!(m.accounts[0].state, "failed");
    assert_eq!(
        m.accounts[0].reason.as_deref(),
        Some("wrong password (401)")
    );
}

#[test]
fn rebound_keys_act() {
    let keymap = KeyMap::with_overrides(&[("hangup".into(), "ctrl-e".into())]).unwrap();
    let mut m = Model::new(&[], true, keymap, false);
    call(&mut m, 1, CallState::Dialing);
    set_calls_focus(&mut m);
    assert!(engine(&key(&mut m, 'e')).is_empty());
    let fx = update(
        &mut m,
        Msg::Key(KeyEvent::new(KeyCode::Char('e'), KeyModifiers::CONTROL)),
    );
    assert_eq!(engine(&fx), vec![Request::Hangup { call: CallId(1) }]);
}

#[test]
fn log_search_finds_lines_and_sip_can_be_hidden() {
    use termphone::ui::model::{LogKind, LogLine};
    let mut m = phone();
    for i in 0..50 {
        let kind = if i % 2 == 0 {
            LogKind::SipIn
        } else {
            LogKind::Info
        };
        update(
            &mut m,
            Msg::Log(LogLine {
                at: NOW,
                kind,
                text: format!("line {i}"),
            }),
        );
    }
    while m.focus != Focus::Log {
        press(&mut m, KeyCode::Tab);
    }
    key(&mut m, '/');
    typed(&mut m, "line 10");
    press(&mut m, KeyCode::Enter);
    let shown = m.visible_log();
    let bottom = shown.len() - 1 - m.log_scroll;
    assert_eq!(shown[bottom].text, "line 10");
    key(&mut m, 's');
    assert!(m.visible_log().iter().all(|l| !l.kind.is_sip()));
}

#[test]
fn paste_goes_into_the_field_being_typed() {
    let mut m = phone();
    update(&mut m, Msg::Paste("sip:1002@pbx.example.com\n".into()));
    assert_eq!(m.dialer, "sip:1002@pbx.example.com");
    // A huge paste is cut at the field's limit.
    update(&mut m, Msg::Paste("9".repeat(1_000_000)));
    assert_eq!(
        m.dialer.chars().count(),
        termphone::ui::update::MAX_FIELD_CHARS
    );
}

mod random_use {
    //! Any sequence of keys and engine events, drawn at any terminal size down to 1×1: no
    //! panic, and the selections stay inside their lists.
    use super::*;
    use proptest::prelude::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use termphone::ui::view::view;

    #[derive(Debug, Clone)]
    enum Step {
        Key(KeyCode, bool),
        Call(u64, u8),
        Registration(bool),
        Tick(u64),
        Contacts(u8),
        History(u8),
    }

    fn key_code() -> impl Strategy<Value = KeyCode> {
        prop_oneof![
            proptest::char::range(' ', '~').prop_map(KeyCode::Char),
            Just(KeyCode::Enter),
            Just(KeyCode::Esc),
            Just(KeyCode::Tab),
            Just(KeyCode::BackTab),
            Just(KeyCode::Backspace),
            Just(KeyCode::Up),
            Just(KeyCode::Down),
            Just(KeyCode::PageUp),
            Just(KeyCode::PageDown),
            Just(KeyCode::Home),
            Just(KeyCode::End),
            (1u8..5).prop_map(KeyCode::F),
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (key_code(), any::<bool>()).prop_map(|(k, ctrl)| Step::Key(k, ctrl)),
            2 => (1u64..4, 0u8..11).prop_map(|(c, s)| Step::Call(c, s)),
            1 => any::<bool>().prop_map(Step::Registration),
            1 => (0u64..6000).prop_map(Step::Tick),
            1 => (0u8..4).prop_map(Step::Contacts),
            1 => (0u8..4).prop_map(Step::History),
        ]
    }

    const STATES: [CallState; 11] = [
        CallState::Incoming,
        CallState::Dialing,
        CallState::Alerting,
        CallState::Connected,
        CallState::Hold,
        CallState::RemoteHold,
        CallState::HangupLocal,
        CallState::HangupRemote,
        CallState::Missed,
        CallState::NetworkFailure,
        CallState::OtherFailure,
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn no_panic_and_selections_in_bounds(
            steps in proptest::collection::vec(step(), 1..60),
            w in 1u16..170,
            h in 1u16..50,
        ) {
            let mut m = phone();
            let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
            let mut ms = 1_000;
            for s in steps {
                match s {
                    Step::Key(k, ctrl) => {
                        // Ctrl-c quits; skip it so the sequence goes on.
                        if !(ctrl && k == KeyCode::Char('c')) {
                            let mods = if ctrl { KeyModifiers::CONTROL } else { KeyModifiers::NONE };
                            update(&mut m, Msg::Key(KeyEvent::new(k, mods)));
                        }
                    }
                    Step::Call(c, s) => {
                        call(&mut m, c, STATES[usize::from(s)]);
                    }
                    Step::Registration(ok) => {
                        update(&mut m, Msg::Engine(Event::Registration {
                            account: "work".into(),
                            state: if ok { "registered" } else { "failed" },
                            reason: (!ok).then(|| "408 Request Timeout".to_string()),
                            expires: ok.then_some(60),
                        }));
                    }
                    Step::Tick(d) => {
                        ms += d;
                        update(&mut m, Msg::Tick { unix: NOW + (ms / 1000) as i64, ms });
                    }
                    Step::Contacts(n) => {
                        let list = (0..n)
                            .map(|i| Contact { id: i.into(), name: format!("C{i}"), uri: format!("10{i:02}") })
                            .collect();
                        update(&mut m, Msg::Contacts(list));
                    }
                    Step::History(n) => {
                        let list = (0..n)
                            .map(|i| HistoryEntry {
                                id: i.into(),
                                direction: if i % 2 == 0 { Direction::Incoming } else { Direction::Outgoing },
                                peer: format!("sip:10{i:02}@pbx"),
                                name: None,
                                account: None,
                                started: NOW,
                                answered: i % 3 == 0,
                                duration_s: 5,
                                end_state: "hangupremote".into(),
                                code: None,
                                reason: None,
                            })
                            .collect();
                        update(&mut m, Msg::History(list));
                    }
                }
                prop_assert!(m.calls.is_empty() || m.selected_call < m.calls.len());
                let hl = m.visible_history().len();
                prop_assert!(hl == 0 || m.history_selected < hl);
                let cl = m.visible_contacts().len();
                prop_assert!(cl == 0 || m.contact_selected < cl);
                t.draw(|f| view(&m, f)).unwrap();
            }
        }
    }
}
