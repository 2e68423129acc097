//! The interactive phone's costs: drawing the whole screen (view into ratatui's buffer) and
//! handling a key or an engine event (update), at 80x24 and 160x48, with two calls up (one
//! held, meters and quality shown) and a full history. The runtime draws after every message
//! and four times a second on its own, so a frame's cost bounds the TUI's idle CPU.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

use termphone::engine::api::{CallId, CallMediaStats, CallState, Event, Level};
use termphone::store::{Contact, Direction, HistoryEntry};
use termphone::ui::keymap::KeyMap;
use termphone::ui::model::Model;
use termphone::ui::update::{update, Msg};
use termphone::ui::view::view;

const NOW: i64 = 1_780_000_000;

fn busy_phone() -> Model {
    let mut m = Model::new(
        &["work".to_string(), "home".to_string()],
        true,
        KeyMap::default(),
        true,
    );
    update(
        &mut m,
        Msg::Tick {
            unix: NOW,
            ms: 1_000,
        },
    );
    let contacts = (0..200)
        .map(|i| Contact {
            id: i,
            name: format!("Contact {i}"),
            uri: format!("sip:{}@pbx.example.com", 1000 + i),
        })
        .collect();
    update(&mut m, Msg::Contacts(contacts));
    let history = (0..500)
        .map(|i| HistoryEntry {
            id: i,
            direction: if i % 2 == 0 {
                Direction::Incoming
            } else {
                Direction::Outgoing
            },
            peer: format!("sip:{}@pbx.example.com", 1000 + i % 300),
            name: None,
            account: Some("work".into()),
            started: NOW - i * 600,
            answered: i % 3 != 0,
            duration_s: (i * 7 % 900) as u32,
            end_state: "hangupremote".into(),
            code: None,
            reason: None,
        })
        .collect();
    update(&mut m, Msg::History(history));
    for (id, state) in [(1, CallState::Hold), (2, CallState::Connected)] {
        for s in [CallState::Dialing, state] {
            update(
                &mut m,
                Msg::Engine(Event::Call {
                    call: CallId(id),
                    state: s,
                    peer: format!("sip:{}@pbx.example.com", 1000 + id),
                    account: Some("work".into()),
                    code: None,
                    reason: None,
                }),
            );
        }
    }
    update(
        &mut m,
        Msg::Engine(Event::Stats {
            call: CallId(2),
            stats: CallMediaStats {
                codec: "opus".into(),
                packets_received: 1000,
                jitter_ms: 2.0,
                mos: Some(4.3),
                rtt_ms: Some(12.0),
                ..Default::default()
            },
        }),
    );
    m
}

fn draw(c: &mut Criterion) {
    let m = busy_phone();
    for (w, h) in [(80u16, 24u16), (160, 48)] {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        c.bench_function(&format!("ui_view_two_calls_{w}x{h}"), |b| {
            b.iter(|| t.draw(|f| view(black_box(&m), f)).unwrap().area)
        });
    }
}

fn handle(c: &mut Criterion) {
    let m = busy_phone();
    let levels = Msg::Engine(Event::Levels {
        call: CallId(2),
        tx: Level {
            rms_dbfs: -20.0,
            peak_dbfs: -6.0,
        },
        rx: Level {
            rms_dbfs: -30.0,
            peak_dbfs: -10.0,
        },
    });
    c.bench_function("ui_update_levels_event", |b| {
        b.iter_batched_ref(
            || m.clone(),
            |m| update(m, levels.clone()),
            criterion::BatchSize::LargeInput,
        )
    });
    // Typing into the dialer recomputes the completions (200 contacts, 500 history rows).
    let key = Msg::Key(KeyEvent::new(KeyCode::Char('1'), KeyModifiers::NONE));
    c.bench_function("ui_update_dialer_key", |b| {
        b.iter_batched_ref(
            || m.clone(),
            |m| update(m, key.clone()),
            criterion::BatchSize::LargeInput,
        )
    });
}

criterion_group!(benches, draw, handle);
criterion_main!(benches);
