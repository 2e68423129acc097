//! The TUI's screens as text: `view()` drawn on ratatui's TestBackend at 80×24 and 160×48 for
//! each state the issue names, compared with the reviewed snapshots in tests/snapshots/. The
//! models are built the way the phone builds them: engine events and keys through `update()`.

use std::path::PathBuf;

use ratatui::backend::TestBackend;
use ratatui::Terminal;

use termphone::engine::api::{CallId, CallMediaStats, CallState, Event, Level};
use termphone::store::{Contact, Direction, HistoryEntry};
use termphone::ui::keymap::KeyMap;
use termphone::ui::model::Model;
use termphone::ui::update::{update, Msg};
use termphone::ui::view::view;

mod support_ui {
    pub use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
}
use support_ui::*;

/// 2026-05-28 20:26:40 UTC.
const NOW: i64 = 1_780_000_000;

fn phone() -> Model {
    let mut m = Model::new(
        &["work".to_string(), "home".to_string()],
        true,
        KeyMap::default(),
        false,
    );
    update(
        &mut m,
        Msg::Tick {
            unix: NOW,
            ms: 100_000,
        },
    );
    for (account, state) in [("work", "registered"), ("home", "registered")] {
        update(
            &mut m,
            Msg::Engine(Event::Registration {
                account: account.into(),
                state,
                reason: None,
                expires: Some(600),
            }),
        );
    }
    update(
        &mut m,
        Msg::Engine(Event::Listening {
            addr: "0.0.0.0:5060".parse().unwrap(),
            transport: "udp",
        }),
    );
    update(&mut m, Msg::Contacts(contacts()));
    update(&mut m, Msg::History(history()));
    m
}

fn contacts() -> Vec<Contact> {
    vec![
        Contact {
            id: 1,
            name: "Alice Martin".into(),
            uri: "sip:1002@pbx.example.com".into(),
        },
        Contact {
            id: 2,
            name: "Bob (desk)".into(),
            uri: "1003".into(),
        },
        Contact {
            id: 3,
            name: "Reception".into(),
            uri: "sip:100@pbx.example.com".into(),
        },
    ]
}

fn history() -> Vec<HistoryEntry> {
    let e = |id,
             direction,
             peer: &str,
             name: Option<&str>,
             ago: i64,
             answered,
             dur,
             end: &str,
             code: Option<u16>,
             reason: Option<&str>| HistoryEntry {
        id,
        direction,
        peer: peer.into(),
        name: name.map(Into::into),
        account: Some("work".into()),
        started: NOW - ago,
        answered,
        duration_s: dur,
        end_state: end.into(),
        code,
        reason: reason.map(Into::into),
    };
    vec![
        e(
            3,
            Direction::Incoming,
            "sip:1002@pbx.example.com",
            Some("Alice Martin"),
            600,
            true,
            754,
            "hangupremote",
            None,
            None,
        ),
        e(
            2,
            Direction::Incoming,
            "sip:+441632960123@pbx.example.com",
            None,
            3600,
            false,
            0,
            "missed",
            Some(487),
            Some("Request Terminated"),
        ),
        e(
            1,
            Direction::Outgoing,
            "sip:1003@pbx.example.com",
            None,
            86_400,
            false,
            0,
            "otherfailure",
            Some(486),
            Some("Busy Here"),
        ),
    ]
}

fn call_event(call: u64, state: CallState, peer: &str) -> Msg {
    Msg::Engine(Event::Call {
        call: CallId(call),
        state,
        peer: peer.into(),
        account: Some("work".into()),
        code: None,
        reason: None,
    })
}

fn tick(m: &mut Model, secs: u64) {
    let (unix, ms) = (m.clock.unix + secs as i64, m.clock.ms + secs * 1000);
    update(m, Msg::Tick { unix, ms });
}

fn key(c: char) -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

fn code(k: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(k, KeyModifiers::NONE))
}

fn stats(m: &mut Model, call: u64) {
    update(
        m,
        Msg::Engine(Event::Stats {
            call: CallId(call),
            stats: CallMediaStats {
                codec: "opus".into(),
                packets_sent: 1500,
                packets_received: 1490,
                lost: 10,
                jitter_ms: 2.4,
                buffer_ms: 40.0,
                rtt_ms: Some(18.0),
                mos: Some(4.21),
                ..Default::default()
            },
        }),
    );
    update(
        m,
        Msg::Engine(Event::Levels {
            call: CallId(call),
            tx: Level {
                rms_dbfs: -22.0,
                peak_dbfs: -6.0,
            },
            rx: Level {
                rms_dbfs: -31.0,
                peak_dbfs: -12.0,
            },
        }),
    );
}

fn draw(m: &Model, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| view(m, f)).unwrap();
    t.backend().to_string()
}

fn check(name: &str, m: &Model) {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        insta::assert_snapshot!(format!("{name}_80x24"), draw(m, 80, 24));
        insta::assert_snapshot!(format!("{name}_160x48"), draw(m, 160, 48));
    });
}

#[test]
fn idle() {
    check("idle", &phone());
}

#[test]
fn dialing() {
    let mut m = phone();
    for c in "alice".chars() {
        update(&mut m, key(c));
    }
    // The dialer completes from contacts: the screen shows the choice while typing.
    check("typing", &m);
    update(&mut m, code(KeyCode::Down));
    update(&mut m, code(KeyCode::Enter));
    update(
        &mut m,
        call_event(1, CallState::Dialing, "sip:1002@pbx.example.com"),
    );
    tick(&mut m, 1);
    update(
        &mut m,
        call_event(1, CallState::Alerting, "sip:1002@pbx.example.com"),
    );
    tick(&mut m, 3);
    check("dialing", &m);
}

#[test]
fn incoming_call() {
    let mut m = phone();
    update(
        &mut m,
        call_event(
            4,
            CallState::Incoming,
            "\"Reception\" <sip:100@pbx.example.com>",
        ),
    );
    tick(&mut m, 2);
    check("incoming", &m);
}

#[test]
fn two_calls_one_on_hold() {
    let mut m = phone();
    update(
        &mut m,
        call_event(1, CallState::Dialing, "sip:1002@pbx.example.com"),
    );
    update(
        &mut m,
        call_event(1, CallState::Connected, "sip:1002@pbx.example.com"),
    );
    tick(&mut m, 95);
    update(
        &mut m,
        call_event(1, CallState::Hold, "sip:1002@pbx.example.com"),
    );
    update(
        &mut m,
        call_event(2, CallState::Incoming, "sip:1003@pbx.example.com"),
    );
    update(&mut m, key('a'));
    update(
        &mut m,
        call_event(2, CallState::Connected, "sip:1003@pbx.example.com"),
    );
    tick(&mut m, 12);
    stats(&mut m, 2);
    update(&mut m, key('m'));
    update(
        &mut m,
        Msg::Done {
            request: termphone::ui::update::Request::Mute {
                call: CallId(2),
                on: true,
            },
            result: Ok(None),
        },
    );
    check("two_calls_hold", &m);
}

#[test]
fn call_waiting() {
    let mut m = phone();
    update(
        &mut m,
        call_event(1, CallState::Dialing, "sip:1002@pbx.example.com"),
    );
    update(
        &mut m,
        call_event(1, CallState::Connected, "sip:1002@pbx.example.com"),
    );
    tick(&mut m, 30);
    stats(&mut m, 1);
    update(
        &mut m,
        call_event(2, CallState::Incoming, "sip:+441632960123@pbx.example.com"),
    );
    check("call_waiting", &m);
}

#[test]
fn conference() {
    let mut m = phone();
    update(
        &mut m,
        call_event(1, CallState::Dialing, "sip:1002@pbx.example.com"),
    );
    update(
        &mut m,
        call_event(1, CallState::Connected, "sip:1002@pbx.example.com"),
    );
    update(
        &mut m,
        call_event(2, CallState::Dialing, "sip:1003@pbx.example.com"),
    );
    update(
        &mut m,
        call_event(2, CallState::Connected, "sip:1003@pbx.example.com"),
    );
    update(
        &mut m,
        Msg::Engine(Event::Conference {
            calls: vec![CallId(1), CallId(2)],
        }),
    );
    update(
        &mut m,
        Msg::Engine(Event::Recording {
            call: CallId(1),
            path: "/home/a/rec/c1.wav".into(),
        }),
    );
    tick(&mut m, 200);
    stats(&mut m, 1);
    check("conference", &m);
}

#[test]
fn registration_failure() {
    let mut m = phone();
    update(
        &mut m,
        Msg::Engine(Event::Registration {
            account: "home".into(),
            state: "failed",
            reason: Some("wrong password (403 Forbidden)".into()),
            expires: None,
        }),
    );
    tick(&mut m, 10);
    check("registration_failed", &m);
}

#[test]
fn history_tab() {
    let mut m = phone();
    update(&mut m, code(KeyCode::Tab));
    update(&mut m, code(KeyCode::Tab));
    update(&mut m, code(KeyCode::Down));
    check("history", &m);
}

#[test]
fn contacts_tab() {
    let mut m = phone();
    for _ in 0..3 {
        update(&mut m, code(KeyCode::Tab));
    }
    check("contacts", &m);
    update(&mut m, key('n'));
    for c in "Carol".chars() {
        update(&mut m, key(c));
    }
    update(&mut m, code(KeyCode::Tab));
    for c in "sip:1004@pbx".chars() {
        update(&mut m, key(c));
    }
    check("contact_new", &m);
}

#[test]
fn log_tab() {
    let mut m = phone();
    update(
        &mut m,
        call_event(1, CallState::Dialing, "sip:1002@pbx.example.com"),
    );
    update(
        &mut m,
        Msg::Log(termphone::ui::model::LogLine {
            at: NOW,
            kind: termphone::ui::model::LogKind::SipOut,
            text: "to 192.0.2.10:5060".into(),
        }),
    );
    update(
        &mut m,
        Msg::Log(termphone::ui::model::LogLine {
            at: NOW,
            kind: termphone::ui::model::LogKind::SipOut,
            text: "  INVITE sip:1002@pbx.example.com SIP/2.0".into(),
        }),
    );
    for _ in 0..4 {
        update(&mut m, code(KeyCode::Tab));
    }
    check("log", &m);
}

#[test]
fn help() {
    let mut m = phone();
    update(&mut m, code(KeyCode::Esc));
    update(&mut m, key('?'));
    check("help", &m);
}

/// Any cell drawn with a colour (foreground or background).
fn uses_colour(m: &Model) -> bool {
    let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
    t.draw(|f| view(m, f)).unwrap();
    t.backend()
        .buffer()
        .content()
        .iter()
        .any(|c| c.fg != ratatui::style::Color::Reset || c.bg != ratatui::style::Color::Reset)
}

#[test]
fn no_color_draws_the_same_text_without_colour() {
    let mut coloured = phone();
    coloured.color = true;
    update(
        &mut coloured,
        call_event(4, CallState::Incoming, "sip:100@pbx.example.com"),
    );
    let mut plain = coloured.clone();
    plain.color = false;
    assert_eq!(draw(&coloured, 80, 24), draw(&plain, 80, 24));
    assert!(uses_colour(&coloured));
    assert!(
        !uses_colour(&plain),
        "NO_COLOR: emphasis by bold and reverse only"
    );
}
