//! The TUI's runtime: the one place of the interactive phone that does I/O. It starts the
//! engine and the control socket, opens the history database, takes the terminal, and then
//! loops: a message in (key, engine event, tick, log line, finished request), [`update`],
//! perform the effects, draw.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::control;
use crate::engine::api::{AudioSinkSpec, AudioSourceSpec, CallAudio, Event};
use crate::engine::{self, EngineConfig, EngineHandle};
use crate::logging::UiLogRecord;
use crate::store::recorder::HistoryRecorder;
use crate::store::Store;

use super::keymap::KeyMap;
use super::model::{contact_for, LogKind, LogLine, Model};
use super::terminal::Tui;
use super::update::{update, Effect, Msg, Request};
use super::view::view;

/// How many history entries the History tab holds.
const HISTORY_ROWS: usize = 500;
/// How often the clock and call timers advance.
const TICK: Duration = Duration::from_millis(250);

/// What the command line adds to the config for the TUI.
pub struct TuiOptions {
    /// The control socket's path (`None`: the default one).
    pub control: Option<PathBuf>,
    /// Do not listen on a control socket.
    pub no_control: bool,
    /// The history database (`None`: the default one in the XDG data dir).
    pub database: Option<PathBuf>,
    /// The log records of [`crate::logging::init_tui`], and the log file it writes.
    pub log: mpsc::Receiver<UiLogRecord>,
    pub log_file: Result<Option<PathBuf>, String>,
}

/// Run the interactive phone until the user quits (or SIGTERM/SIGHUP); returns the exit status.
pub async fn run(config: &Config, mut ec: EngineConfig, opts: TuiOptions) -> i32 {
    let overrides: Vec<(String, String)> = config.keys.clone();
    let keymap = match KeyMap::with_overrides(&overrides) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("termphone: {e}");
            return 1;
        }
    };
    let db_path = match opts.database.clone().or_else(crate::store::default_path) {
        Some(p) => p,
        None => {
            eprintln!("termphone: no place for the history database: set XDG_DATA_HOME or HOME");
            return 1;
        }
    };
    let store = match Store::open(&db_path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("termphone: {e}");
            return 1;
        }
    };

    // The SIP trace goes to the log tab (never to the terminal), a line per line of a message.
    let (trace_tx, mut trace_rx) = mpsc::channel::<LogLine>(8192);
    ec.sip_trace_sink = Some(Arc::new(move |received: bool, peer, text: &str| {
        let at = unix_now();
        let kind = if received {
            LogKind::SipIn
        } else {
            LogKind::SipOut
        };
        let arrow = if received { "from" } else { "to" };
        let _ = trace_tx.try_send(LogLine {
            at,
            kind,
            text: format!("{arrow} {peer}"),
        });
        for line in text.lines() {
            let _ = trace_tx.try_send(LogLine {
                at,
                kind,
                text: format!("  {line}"),
            });
        }
    }));
    // Calls ring on the speaker.
    ec.ringtone = Some(config.audio.playback_device.clone());
    ec.register = true;
    ec.levels_interval = Some(Duration::from_millis(200));
    ec.stats_interval = Duration::from_secs(1);

    let control =
        match control::server::bind_requested(opts.control.as_deref(), opts.no_control).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("termphone: {e}");
                return 1;
            }
        };
    let account_status = ec
        .accounts
        .iter()
        .map(control::state::AccountStatus::from_registration)
        .collect();
    let registering: Vec<String> = ec.accounts.iter().map(|a| a.name.clone()).collect();
    let serverless = config
        .accounts
        .iter()
        .any(|a| a.enabled && a.registrar.is_none());
    let (engine, observer) = match engine::start_observed(ec).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("termphone: {e}");
            return 1;
        }
    };
    let handle = engine.handle.clone();
    let mut events = engine.events;

    let mut model = Model::new(
        &registering,
        serverless,
        keymap,
        std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    );
    model.devices.capture = config.audio.capture_device.clone();
    model.devices.playback = config.audio.playback_device.clone();
    model.clock.utc_offset = local_utc_offset();
    let start = Instant::now();
    let tick_msg = |start: Instant| Msg::Tick {
        unix: unix_now(),
        ms: start.elapsed().as_millis() as u64,
    };
    update(&mut model, tick_msg(start));
    match &opts.log_file {
        Ok(Some(p)) => log_info(&mut model, format!("log file {}", p.display())),
        Ok(None) => {}
        Err(e) => {
            update(
                &mut model,
                Msg::Notice {
                    text: format!("no log file: {e}"),
                    error: true,
                },
            );
        }
    }
    log_info(&mut model, format!("history {}", db_path.display()));
    reload_history(&store, &mut model);
    reload_contacts(&store, &mut model);

    let control = control.map(|bound| {
        let devices = (
            config.audio.capture_device.clone(),
            config.audio.playback_device.clone(),
        );
        let answer_audio = Arc::new(
            move |_call, _peer: &str, _account: Option<&str>| CallAudio {
                source: AudioSourceSpec::Device(devices.0.clone()),
                sink: AudioSinkSpec::Device(devices.1.clone()),
            },
        );
        bound.serve(
            &handle,
            observer,
            control::server::ControlOptions {
                accounts: account_status,
                answer_audio,
                ..Default::default()
            },
        )
    });

    let (msg_tx, mut msg_rx) = mpsc::channel::<Msg>(256);
    // Keys: crossterm's blocking reader on its own thread.
    let (key_tx, mut key_rx) = mpsc::channel::<crossterm::event::Event>(256);
    std::thread::spawn(move || {
        while let Ok(ev) = crossterm::event::read() {
            if key_tx.blocking_send(ev).is_err() {
                break;
            }
        }
    });

    let stderr_to = opts.log_file.as_ref().ok().and_then(|p| p.clone());
    let mut tui = match Tui::enter(stderr_to.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "termphone: the interactive phone needs a terminal ({e}); without one, use \
                 `termphone serve`, `termphone dial` or `termphone ctl`"
            );
            handle.shutdown().await;
            return 1;
        }
    };
    // Device names for the chooser: ALSA enumeration can take a moment, off the loop.
    {
        let tx = msg_tx.clone();
        tokio::task::spawn_blocking(move || {
            let msg = match crate::audio::list_devices() {
                Ok(list) => Msg::DeviceLists {
                    capture: list.inputs.into_iter().map(|d| d.name).collect(),
                    playback: list.outputs.into_iter().map(|d| d.name).collect(),
                },
                Err(e) => Msg::Notice {
                    text: format!("cannot list audio devices: {e}"),
                    error: true,
                },
            };
            let _ = tx.blocking_send(msg);
        });
    }
    let mut recorder = HistoryRecorder::new();
    let mut log_rx = opts.log;
    let mut ticks = tokio::time::interval(TICK);
    let mut term = signal(tokio::signal::unix::SignalKind::terminate());
    let mut hup = signal(tokio::signal::unix::SignalKind::hangup());
    let mut exit = 0;
    let _ = tui.terminal.draw(|f| view(&model, f));
    loop {
        let msg = tokio::select! {
            Some(ev) = key_rx.recv() => match ev {
                crossterm::event::Event::Key(k) => Msg::Key(k),
                crossterm::event::Event::Paste(p) => Msg::Paste(p),
                crossterm::event::Event::Resize(..) => {
                    let _ = tui.terminal.autoresize();
                    let _ = tui.terminal.draw(|f| view(&model, f));
                    continue;
                }
                _ => continue,
            },
            ev = events.recv() => match ev {
                Ok(ev) => {
                    record_history(&store, &mut recorder, &mut model, &ev);
                    Msg::Engine(ev)
                }
                Err(RecvError::Lagged(n)) => Msg::Notice { text: format!("{n} engine events were dropped"), error: true },
                Err(RecvError::Closed) => {
                    exit = 1;
                    break;
                }
            },
            Some(m) = msg_rx.recv() => m,
            // Log lines come in bursts (a SIP message is a line per header): take every one
            // waiting, then draw once.
            Some(rec) = log_rx.recv() => {
                update(&mut model, Msg::Log(log_line(rec)));
                while let Ok(more) = log_rx.try_recv() {
                    update(&mut model, Msg::Log(log_line(more)));
                }
                let _ = tui.terminal.draw(|f| view(&model, f));
                continue;
            }
            Some(line) = trace_rx.recv() => {
                update(&mut model, Msg::Log(line));
                while let Ok(more) = trace_rx.try_recv() {
                    update(&mut model, Msg::Log(more));
                }
                let _ = tui.terminal.draw(|f| view(&model, f));
                continue;
            }
            _ = ticks.tick() => tick_msg(start),
            _ = recv_signal(&mut term) => break,
            _ = recv_signal(&mut hup) => break,
        };
        let effects = update(&mut model, msg);
        let mut quit = false;
        for fx in effects {
            match fx {
                Effect::Engine(request) => spawn_request(&handle, &model, request, msg_tx.clone()),
                Effect::SaveContact { id, name, uri } => {
                    let r = match id {
                        Some(id) => store.update_contact(id, &name, &uri),
                        None => store.add_contact(&name, &uri).map(|_| ()),
                    };
                    match r {
                        Ok(()) => notice(&mut model, format!("saved {name}"), false),
                        Err(e) => notice(&mut model, format!("cannot save the contact: {e}"), true),
                    }
                    reload_contacts(&store, &mut model);
                }
                Effect::DeleteContact(id) => {
                    if let Err(e) = store.delete_contact(id) {
                        notice(&mut model, format!("cannot delete the contact: {e}"), true);
                    }
                    reload_contacts(&store, &mut model);
                }
                Effect::DeleteHistory(id) => {
                    if let Err(e) = store.delete_history(id) {
                        notice(&mut model, format!("cannot delete the entry: {e}"), true);
                    }
                    reload_history(&store, &mut model);
                }
                Effect::ImportContacts(path) => {
                    let path = expand_home(&path);
                    match store.import_contacts(&path) {
                        Ok(r) => {
                            let mut text = format!(
                                "imported {} contacts, {} already there",
                                r.added, r.skipped
                            );
                            if !r.errors.is_empty() {
                                text.push_str(&format!(
                                    ", {} not read (see the log)",
                                    r.errors.len()
                                ));
                            }
                            for e in &r.errors {
                                log_warn(&mut model, format!("{}: {e}", path.display()));
                            }
                            notice(&mut model, text, !r.errors.is_empty());
                        }
                        Err(e) => notice(&mut model, e.to_string(), true),
                    }
                    reload_contacts(&store, &mut model);
                }
                Effect::Bell => tui.bell(),
                Effect::Notify { summary, body } => desktop_notification(&summary, &body),
                Effect::Quit => quit = true,
            }
        }
        if quit {
            break;
        }
        let _ = tui.terminal.draw(|f| view(&model, f));
    }
    // End every call; the last events still go into the history.
    log_info(&mut model, "quitting: ending every call".into());
    let _ = tui.terminal.draw(|f| view(&model, f));
    handle.shutdown().await;
    while let Ok(ev) = events.try_recv() {
        record_history(&store, &mut recorder, &mut model, &ev);
    }
    drop(tui);
    drop(control);
    let _ = engine.task.await;
    exit
}

/// A tracing record as a line of the log tab.
fn log_line(rec: UiLogRecord) -> LogLine {
    LogLine {
        at: unix_now(),
        kind: match rec.level {
            tracing::Level::ERROR => LogKind::Error,
            tracing::Level::WARN => LogKind::Warn,
            _ => LogKind::Info,
        },
        text: rec.text,
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The local time zone's offset from UTC now, seconds (libc's localtime_r).
fn local_utc_offset() -> i32 {
    let now = unix_now() as libc::time_t;
    // SAFETY: localtime_r writes only into `tm`, which lives on this stack frame.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            0
        } else {
            tm.tm_gmtoff as i32
        }
    }
}

fn notice(m: &mut Model, text: String, error: bool) {
    update(m, Msg::Notice { text, error });
}

fn log_info(m: &mut Model, text: String) {
    update(
        m,
        Msg::Log(LogLine {
            at: m.clock.unix,
            kind: LogKind::Info,
            text,
        }),
    );
}

fn log_warn(m: &mut Model, text: String) {
    update(
        m,
        Msg::Log(LogLine {
            at: m.clock.unix,
            kind: LogKind::Warn,
            text,
        }),
    );
}

fn reload_history(store: &Store, m: &mut Model) {
    match store.history("", HISTORY_ROWS) {
        Ok(h) => {
            update(m, Msg::History(h));
        }
        Err(e) => notice(m, format!("cannot read the history: {e}"), true),
    }
}

fn reload_contacts(store: &Store, m: &mut Model) {
    match store.contacts("") {
        Ok(c) => {
            update(m, Msg::Contacts(c));
        }
        Err(e) => notice(m, format!("cannot read the contacts: {e}"), true),
    }
}

/// Every finished call goes into the database at once (its own committed transaction), so a
/// crash or kill later loses nothing already finished.
fn record_history(store: &Store, recorder: &mut HistoryRecorder, m: &mut Model, ev: &Event) {
    if let Some(mut entry) = recorder.observe(ev, unix_now()) {
        if entry.name.is_none() {
            entry.name = contact_for(&m.contacts, &entry.peer).map(|c| c.name.clone());
        }
        if let Err(e) = store.add_history(&entry) {
            notice(m, format!("cannot write the history: {e}"), true);
        }
        reload_history(store, m);
    }
}

/// Run an engine request off the loop; its result comes back as [`Msg::Done`].
fn spawn_request(handle: &EngineHandle, m: &Model, request: Request, tx: mpsc::Sender<Msg>) {
    let handle = handle.clone();
    let audio = CallAudio {
        source: AudioSourceSpec::Device(m.devices.capture.clone()),
        sink: AudioSinkSpec::Device(m.devices.playback.clone()),
    };
    tokio::spawn(async move {
        let unit = |r: Result<(), crate::engine::api::CommandError>| r.map(|()| None);
        let result = match &request {
            Request::Dial { account, target } => handle
                .dial_as(account.as_deref(), target, audio)
                .await
                .map(|c| Some(c.to_string())),
            Request::Answer { call, hold_others } => unit(if *hold_others {
                handle.answer_holding_others(*call, audio).await
            } else {
                handle.answer(*call, audio).await
            }),
            Request::Reject { call, code } => unit(handle.reject(*call, *code).await),
            Request::Hangup { call } => unit(handle.hangup(*call).await),
            Request::Hold { call } => unit(handle.hold(*call).await),
            Request::Resume { call, hold_others } => unit(if *hold_others {
                handle.switch_to(*call).await
            } else {
                handle.resume(*call).await
            }),
            Request::Mute { call, on } => unit(handle.mute(*call, *on).await),
            Request::Dtmf { call, digits } => unit(handle.send_dtmf(*call, digits).await),
            Request::Transfer { call, to } => unit(handle.transfer(*call, to).await),
            Request::AttendedTransfer { call, with } => {
                unit(handle.transfer_to_call(*call, *with).await)
            }
            Request::Join { call, with } => unit(handle.join(*call, *with).await),
            Request::Record { call, on } => handle
                .record(*call, *on, None)
                .await
                .map(|p| Some(p.display().to_string())),
            Request::Denoise { call, on } => unit(handle.set_noise_suppression(*call, *on).await),
            Request::AnswerTransfer { call, accept } => {
                unit(handle.answer_transfer(*call, *accept).await)
            }
        };
        let _ = tx
            .send(Msg::Done {
                request,
                result: result.map_err(|e| e.to_string()),
            })
            .await;
    });
}

/// `~/x` → `$HOME/x`.
fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// A desktop notification through `notify-send`, when there is a desktop session to show it
/// (a D-Bus session bus or a display); silently nothing otherwise.
fn desktop_notification(summary: &str, body: &str) {
    let has_desktop = ["DBUS_SESSION_BUS_ADDRESS", "DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
    if !has_desktop {
        return;
    }
    let child = std::process::Command::new("notify-send")
        .args(["--app-name=termphone", "--urgency=critical", summary, body])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Ok(mut child) = child {
        // Reap it off the loop.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
    }
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind).ok()
}

async fn recv_signal(s: &mut Option<tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}
