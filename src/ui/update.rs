//! `update`: a message in, the model changed, effects out. No I/O here: the runtime
//! ([`super::run`]) performs the effects (engine commands, the database, the bell) and feeds
//! what comes back in as messages.

use crossterm::event::{KeyEvent, KeyEventKind};

use crate::engine::api::{CallId, CallState, Event};
use crate::store::{Contact, HistoryEntry};

use super::keymap::{Action, Key, KeyName, Scope};
use super::model::{
    contact_for, short_uri, AccountView, CallView, Focus, LogKind, LogLine, Model, Notice, Prompt,
    TextPurpose, ENDED_LINGER_MS, LOG_LINES, NOTICE_MS,
};

/// What happens to the phone.
#[derive(Debug, Clone)]
pub enum Msg {
    /// A key was pressed.
    Key(KeyEvent),
    /// Text pasted into the terminal (bracketed paste).
    Paste(String),
    /// The engine reported something.
    Engine(Event),
    /// Time passed: unix seconds and monotonic milliseconds.
    Tick { unix: i64, ms: u64 },
    /// An engine request finished: `Ok` with what it gave back (a call id, a file), or why not.
    Done {
        request: Request,
        result: Result<Option<String>, String>,
    },
    /// The history as the database has it now, newest first.
    History(Vec<HistoryEntry>),
    /// The contacts as the database has them now.
    Contacts(Vec<Contact>),
    /// A line for the log tab.
    Log(LogLine),
    /// The audio devices to choose from.
    DeviceLists {
        capture: Vec<String>,
        playback: Vec<String>,
    },
    /// Something to tell the user (a database or import result).
    Notice { text: String, error: bool },
}

/// What the runtime must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Engine(Request),
    /// Add (`id: None`) or change a contact.
    SaveContact {
        id: Option<i64>,
        name: String,
        uri: String,
    },
    DeleteContact(i64),
    DeleteHistory(i64),
    /// Import contacts from a vCard or CSV file.
    ImportContacts(String),
    /// Ring the terminal bell.
    Bell,
    /// A desktop notification, where there is a notification daemon.
    Notify {
        summary: String,
        body: String,
    },
    /// End every call and leave.
    Quit,
}

/// An engine command, as the TUI asks for it (the runtime adds the call's audio devices).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Dial {
        account: Option<String>,
        target: String,
    },
    Answer {
        call: CallId,
        hold_others: bool,
    },
    Reject {
        call: CallId,
        code: u16,
    },
    Hangup {
        call: CallId,
    },
    Hold {
        call: CallId,
    },
    Resume {
        call: CallId,
        hold_others: bool,
    },
    Mute {
        call: CallId,
        on: bool,
    },
    Dtmf {
        call: CallId,
        digits: String,
    },
    Transfer {
        call: CallId,
        to: String,
    },
    AttendedTransfer {
        call: CallId,
        with: CallId,
    },
    Join {
        call: CallId,
        with: CallId,
    },
    Record {
        call: CallId,
        on: bool,
    },
    Denoise {
        call: CallId,
        on: bool,
    },
    AnswerTransfer {
        call: CallId,
        accept: bool,
    },
}

impl Request {
    /// In words, for notices ("hold c2").
    pub fn describe(&self) -> String {
        match self {
            Request::Dial { target, .. } => format!("call {target}"),
            Request::Answer { call, .. } => format!("answer {call}"),
            Request::Reject { call, code } => format!("reject {call} ({code})"),
            Request::Hangup { call } => format!("hang up {call}"),
            Request::Hold { call } => format!("hold {call}"),
            Request::Resume { call, .. } => format!("resume {call}"),
            Request::Mute { call, on } => format!("{} {call}", if *on { "mute" } else { "unmute" }),
            Request::Dtmf { call, digits } => format!("DTMF {digits} on {call}"),
            Request::Transfer { call, to } => format!("transfer {call} to {to}"),
            Request::AttendedTransfer { call, with } => format!("transfer {call} to {with}"),
            Request::Join { call, with } => format!("join {call} with {with}"),
            Request::Record { call, on } => {
                format!("{} recording {call}", if *on { "start" } else { "stop" })
            }
            Request::Denoise { call, on } => {
                format!(
                    "noise suppression {} on {call}",
                    if *on { "on" } else { "off" }
                )
            }
            Request::AnswerTransfer { call, accept } => {
                format!(
                    "{} the transfer of {call}",
                    if *accept { "follow" } else { "refuse" }
                )
            }
        }
    }
}

/// Apply a message; returns what the runtime must do.
pub fn update(m: &mut Model, msg: Msg) -> Vec<Effect> {
    let fx = apply(m, msg);
    if m.prompt.is_none() && m.stashed_prompt.is_some() && m.incoming_prompt().is_none() {
        m.prompt = m.stashed_prompt.take();
    }
    fx
}

fn apply(m: &mut Model, msg: Msg) -> Vec<Effect> {
    let mut fx = Vec::new();
    match msg {
        Msg::Key(ev) => {
            // Only presses (and repeats): terminals with the kitty protocol also send releases.
            if ev.kind != KeyEventKind::Release {
                if let Some(key) = Key::from_event(&ev) {
                    on_key(m, key, &mut fx);
                }
            }
        }
        Msg::Paste(text) => {
            let text: String = text.chars().filter(|c| !c.is_control()).collect();
            if let Some(field) = text_field(m) {
                push_capped(field, &text);
                after_text_edit(m);
            }
        }
        Msg::Engine(ev) => on_event(m, ev, &mut fx),
        Msg::Tick { unix, ms } => {
            m.clock.unix = unix;
            m.clock.ms = ms;
            let before = m.calls.len();
            m.calls.retain(|c| {
                c.ended_ms
                    .is_none_or(|e| ms.saturating_sub(e) < ENDED_LINGER_MS)
            });
            if m.calls.len() != before {
                clamp_selection(m);
            }
            if m.notice
                .as_ref()
                .is_some_and(|n| ms.saturating_sub(n.at_ms) >= NOTICE_MS)
            {
                m.notice = None;
            }
        }
        Msg::Done { request, result } => match result {
            Ok(info) => on_done(m, &request, info),
            Err(e) => notice(m, format!("cannot {}: {e}", request.describe()), true),
        },
        Msg::History(h) => {
            m.history = h;
            m.history_selected = m
                .history_selected
                .min(m.visible_history().len().saturating_sub(1));
        }
        Msg::Contacts(c) => {
            m.contacts = c;
            m.contact_selected = m
                .contact_selected
                .min(m.visible_contacts().len().saturating_sub(1));
            // Names of calls in progress follow the contacts.
            for call in &mut m.calls {
                call.name = contact_for(&m.contacts, &call.peer).map(|c| c.name.clone());
            }
        }
        Msg::Log(line) => push_log(m, line),
        Msg::DeviceLists { capture, playback } => {
            m.devices.capture_list = capture;
            m.devices.playback_list = playback;
        }
        Msg::Notice { text, error } => notice(m, text, error),
    }
    fx
}

fn notice(m: &mut Model, text: String, error: bool) {
    let kind = if error { LogKind::Warn } else { LogKind::Info };
    push_log(
        m,
        LogLine {
            at: m.clock.unix,
            kind,
            text: text.clone(),
        },
    );
    m.notice = Some(Notice {
        text,
        error,
        at_ms: m.clock.ms,
    });
}

fn push_log(m: &mut Model, line: LogLine) {
    let shown = m.show_sip || !line.kind.is_sip();
    m.log.push_back(line);
    while m.log.len() > LOG_LINES {
        m.log.pop_front();
    }
    // A scrolled-back view stays on the same lines while new ones arrive.
    if m.log_scroll > 0 && shown {
        m.log_scroll += 1;
    }
}

fn info(m: &mut Model, text: String) {
    push_log(
        m,
        LogLine {
            at: m.clock.unix,
            kind: LogKind::Info,
            text,
        },
    );
}

fn on_done(m: &mut Model, request: &Request, info_text: Option<String>) {
    match request {
        Request::Mute { call, on } => {
            if let Some(c) = find_call(m, *call) {
                c.muted = *on;
            }
        }
        Request::Denoise { call, on } => {
            if let Some(c) = find_call(m, *call) {
                c.denoise = *on;
            }
            notice(
                m,
                format!(
                    "noise suppression {} on {call}",
                    if *on { "on" } else { "off" }
                ),
                false,
            );
        }
        Request::Dial { target, .. } => {
            if let Some(id) = info_text {
                info(m, format!("{id}: calling {target}"));
            }
        }
        Request::Dtmf { call, digits } => info(m, format!("{call}: sent DTMF {digits}")),
        _ => {}
    }
}

fn find_call(m: &mut Model, id: CallId) -> Option<&mut CallView> {
    m.calls.iter_mut().find(|c| c.id == id)
}

fn clamp_selection(m: &mut Model) {
    m.selected_call = m.selected_call.min(m.calls.len().saturating_sub(1));
}

fn on_event(m: &mut Model, ev: Event, fx: &mut Vec<Effect>) {
    match ev {
        Event::Listening { addr, transport } => {
            if transport == "udp" {
                m.listen = Some(addr.to_string());
            }
            info(m, format!("listening on {addr} ({transport})"));
        }
        Event::Control { path } => {
            let p = path.display().to_string();
            info(m, format!("control socket {p}"));
            m.control = Some(p);
        }
        Event::Registration {
            account,
            state,
            reason,
            expires,
        } => {
            let text = match &reason {
                Some(r) => format!("{account}: {state}: {r}"),
                None => format!("{account}: {state}"),
            };
            let kind = if state == "failed" {
                LogKind::Warn
            } else {
                LogKind::Info
            };
            push_log(
                m,
                LogLine {
                    at: m.clock.unix,
                    kind,
                    text,
                },
            );
            let view = AccountView {
                name: account.clone(),
                state: state.to_string(),
                reason,
                expires,
            };
            match m.accounts.iter_mut().find(|a| a.name == account) {
                Some(a) => *a = view,
                None => m.accounts.push(view),
            }
        }
        Event::Call {
            call,
            state,
            peer,
            account,
            code,
            reason,
        } => on_call(m, call, state, peer, account, code, reason, fx),
        Event::Dtmf { call, digit } => {
            info(m, format!("{call}: DTMF {digit} received"));
        }
        Event::Stats { call, stats } => {
            if let Some(c) = find_call(m, call) {
                c.stats = Some(stats);
            }
        }
        Event::Levels { call, tx, rx } => {
            if let Some(c) = find_call(m, call) {
                c.levels = Some((tx, rx));
            }
        }
        Event::Summary { call, summary } => {
            let mos = summary
                .mos_avg
                .map(|v| format!(", MOS {v:.2}"))
                .unwrap_or_default();
            info(
                m,
                format!(
                    "{call}: {} {:.0} s, loss {:.1} %, jitter {:.1} ms{mos}",
                    summary.codec, summary.media_s, summary.loss_pct, summary.jitter_avg_ms
                ),
            );
        }
        Event::Transfer {
            call,
            state,
            to,
            code,
            new_call,
        } => {
            let to_text = to.as_deref().map(short_uri).unwrap_or_default();
            let text = match state {
                "asked" => format!("asks to be transferred to {to_text}"),
                "transferring" => format!(
                    "transferred to {to_text}{}",
                    new_call.map(|c| format!(" ({c})")).unwrap_or_default()
                ),
                "failed" => format!(
                    "transfer failed{}",
                    code.map(|c| format!(" ({c})")).unwrap_or_default()
                ),
                other => format!(
                    "transfer {other}{}",
                    if to_text.is_empty() {
                        String::new()
                    } else {
                        format!(" to {to_text}")
                    }
                ),
            };
            let asked = state == "asked";
            if let Some(c) = find_call(m, call) {
                c.transfer = Some(text.clone());
                c.transfer_asked = asked;
            }
            if asked {
                let keys = (
                    m.keymap.key(Action::AcceptTransfer),
                    m.keymap.key(Action::RefuseTransfer),
                );
                notice(
                    m,
                    format!("{call} {text}: {} follow, {} refuse", keys.0, keys.1),
                    false,
                );
            } else {
                info(m, format!("{call}: {text}"));
            }
        }
        Event::Redirect { call, code, to } => {
            info(
                m,
                format!("{call}: redirected ({code}) to {}", short_uri(&to)),
            );
        }
        Event::Conference { calls } => {
            info(
                m,
                format!(
                    "conference: {}",
                    calls
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            );
            m.conference = calls;
        }
        Event::Recording { call, path } => {
            if let Some(c) = find_call(m, call) {
                c.recording = true;
            }
            notice(m, format!("{call}: recording to {}", path.display()), false);
        }
        Event::Recorded { call, path } => {
            if let Some(c) = find_call(m, call) {
                c.recording = false;
            }
            info(m, format!("{call}: recorded {}", path.display()));
        }
        Event::Warning { call, message } => {
            let text = match call {
                Some(c) => format!("{c}: {message}"),
                None => message,
            };
            notice(m, text, true);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn on_call(
    m: &mut Model,
    call: CallId,
    state: CallState,
    peer: String,
    account: Option<String>,
    code: Option<u16>,
    reason: Option<String>,
    fx: &mut Vec<Effect>,
) {
    let now = m.clock.ms;
    let is_new = !m.calls.iter().any(|c| c.id == call);
    if is_new {
        let name = contact_for(&m.contacts, &peer).map(|c| c.name.clone());
        m.calls.push(CallView {
            id: call,
            incoming: state == CallState::Incoming,
            peer: peer.clone(),
            name,
            account: account.clone(),
            state,
            since_ms: now,
            connected_ms: None,
            ended_ms: None,
            code: None,
            reason: None,
            muted: false,
            recording: false,
            denoise: true,
            stats: None,
            levels: None,
            transfer: None,
            transfer_asked: false,
        });
    }
    let Some(c) = find_call(m, call) else {
        return;
    };
    c.state = state;
    if c.connected_ms.is_none() && c.is_up() {
        c.connected_ms = Some(now);
    }
    if state.is_final() && c.ended_ms.is_none() {
        c.ended_ms = Some(now);
        c.code = code;
        c.reason = reason.clone();
        c.levels = None;
    }
    let who = c.who();
    let line = match (&code, &reason) {
        (Some(code), Some(r)) => format!("{call} {state} {who} ({code} {r})"),
        (None, Some(r)) => format!("{call} {state} {who} ({r})"),
        (Some(code), None) => format!("{call} {state} {who} ({code})"),
        (None, None) => format!("{call} {state} {who}"),
    };
    info(m, line);
    if state.is_final() {
        m.dismissed.remove(&call);
        m.conference.retain(|c| *c != call);
    }
    if is_new && state == CallState::Incoming {
        // The incoming prompt takes the keys; the call is selected behind it. A half-typed
        // prompt (a contact, a transfer target) waits and comes back afterwards.
        match m.prompt.take() {
            Some(Prompt::ConfirmQuit) | None => {}
            Some(p) if m.stashed_prompt.is_none() => m.stashed_prompt = Some(p),
            Some(_) => {}
        }
        m.help = false;
        let others_up = m.live_calls().any(|c| c.id != call);
        if !others_up {
            m.selected_call = m.calls.len() - 1;
            m.focus = Focus::Calls;
        }
        fx.push(Effect::Bell);
        let on = account.map(|a| format!(" on {a}")).unwrap_or_default();
        fx.push(Effect::Notify {
            summary: format!("Incoming call{on}"),
            body: who,
        });
    } else if is_new && !m.live_calls().any(|c| c.id != call) {
        // The first call: select it.
        m.selected_call = m.calls.len() - 1;
    }
}

/// The longest text a field takes (a SIP URI, a name, a path); a huge paste is cut there.
pub const MAX_FIELD_CHARS: usize = 512;

/// Append `text` to a field, up to [`MAX_FIELD_CHARS`].
fn push_capped(field: &mut String, text: &str) {
    let room = MAX_FIELD_CHARS.saturating_sub(field.chars().count());
    field.extend(text.chars().take(room));
}

/// The text field that typing edits now, if any.
fn text_field(m: &mut Model) -> Option<&mut String> {
    let dialer_types = m.focus == Focus::Dialer && !m.help && m.incoming_prompt().is_none();
    match &mut m.prompt {
        Some(Prompt::Text { input, .. }) => Some(input),
        Some(Prompt::Contact {
            name, uri, field, ..
        }) => Some(if *field == 0 { name } else { uri }),
        Some(_) => None,
        None if dialer_types => Some(&mut m.dialer),
        None => None,
    }
}

/// After the text of a field changed: live filters follow it, completions start over.
fn after_text_edit(m: &mut Model) {
    match &m.prompt {
        Some(Prompt::Text {
            purpose: TextPurpose::HistoryFilter,
            input,
        }) => {
            m.history_filter = input.clone();
            m.history_selected = 0;
        }
        Some(Prompt::Text {
            purpose: TextPurpose::ContactFilter,
            input,
        }) => {
            m.contact_filter = input.clone();
            m.contact_selected = 0;
        }
        None => m.completion = None,
        _ => {}
    }
}

fn plain_char(key: Key) -> Option<char> {
    match key.code {
        KeyName::Char(c) if !key.ctrl && !key.alt => Some(c),
        _ => None,
    }
}

fn on_key(m: &mut Model, key: Key, fx: &mut Vec<Effect>) {
    // Ctrl-C always asks to leave (or leaves when no call is up); F1 always opens the help
    // (in the dialer `q` and `?` are text).
    if key.ctrl && key.code == KeyName::Char('c') {
        ask_quit(m, fx);
        return;
    }
    if key.code == KeyName::F(1) && !key.ctrl && !key.alt && !m.help && m.prompt.is_none() {
        m.help = true;
        return;
    }
    if m.help {
        m.help = false;
        return;
    }
    if m.prompt.is_some() {
        on_prompt_key(m, key, fx);
        return;
    }
    if let Some(call) = m.incoming_prompt().map(|c| c.id) {
        on_incoming_key(m, call, key, fx);
        return;
    }
    match key.code {
        KeyName::Tab if !key.ctrl && !key.alt => {
            cycle_focus(m, 1);
            return;
        }
        KeyName::BackTab => {
            cycle_focus(m, Focus::ORDER.len() - 1);
            return;
        }
        _ => {}
    }
    if m.focus == Focus::Dialer {
        if on_dialer_key(m, key, fx) {
            return;
        }
    } else if on_list_key(m, key, fx) {
        return;
    }
    if let Some(action) = m.keymap.action(m.focus.scope(), key) {
        // In the dialer, plain characters type; only other keys (F2, ctrl-...) act.
        if m.focus == Focus::Dialer && plain_char(key).is_some() {
            return;
        }
        do_action(m, action, fx);
    }
}

fn ask_quit(m: &mut Model, fx: &mut Vec<Effect>) {
    if m.live_calls().next().is_some() {
        m.prompt = Some(Prompt::ConfirmQuit);
    } else {
        m.quitting = true;
        fx.push(Effect::Quit);
    }
}

fn cycle_focus(m: &mut Model, step: usize) {
    let i = Focus::ORDER.iter().position(|f| *f == m.focus).unwrap_or(0);
    set_focus(m, Focus::ORDER[(i + step) % Focus::ORDER.len()]);
}

fn set_focus(m: &mut Model, f: Focus) {
    m.focus = f;
    if f.is_tab() {
        m.shown_tab = f;
    }
}

fn on_incoming_key(m: &mut Model, call: CallId, key: Key, fx: &mut Vec<Effect>) {
    if key.code == KeyName::Esc {
        m.dismissed.insert(call);
        return;
    }
    match m.keymap.action(Scope::Calls, key) {
        Some(Action::Answer) => answer(m, call, fx),
        Some(Action::Reject) => reject(m, call, 603, fx),
        Some(Action::RejectBusy) => reject(m, call, 486, fx),
        Some(Action::Help) => m.help = true,
        Some(Action::Quit) => ask_quit(m, fx),
        _ => {}
    }
}

fn answer(m: &mut Model, call: CallId, fx: &mut Vec<Effect>) {
    let hold_others = m
        .live_calls()
        .any(|c| c.id != call && matches!(c.state, CallState::Connected | CallState::RemoteHold));
    if let Some(i) = m.calls.iter().position(|c| c.id == call) {
        m.selected_call = i;
    }
    set_focus(m, Focus::Calls);
    fx.push(Effect::Engine(Request::Answer { call, hold_others }));
}

fn reject(m: &mut Model, call: CallId, code: u16, fx: &mut Vec<Effect>) {
    m.dismissed.insert(call);
    fx.push(Effect::Engine(Request::Reject { call, code }));
}

/// Keys of the dialer's text field; true when the key was used.
fn on_dialer_key(m: &mut Model, key: Key, fx: &mut Vec<Effect>) -> bool {
    if let Some(c) = plain_char(key) {
        push_capped(&mut m.dialer, c.encode_utf8(&mut [0; 4]));
        m.completion = None;
        return true;
    }
    match key.code {
        KeyName::Backspace => {
            m.dialer.pop();
            m.completion = None;
        }
        KeyName::Down => {
            let n = m.completions().len();
            if n > 0 {
                m.completion = Some(m.completion.map_or(0, |i| (i + 1).min(n - 1)));
            }
        }
        KeyName::Up => {
            m.completion = match m.completion {
                Some(0) | None => None,
                Some(i) => Some(i - 1),
            };
        }
        KeyName::Enter => {
            let target = match m.completion.and_then(|i| m.completions().get(i).cloned()) {
                Some((_, uri)) => uri,
                None if !m.dialer.trim().is_empty() => m.dialer.trim().to_string(),
                // Enter on an empty dialer redials the last number called.
                None => match m
                    .history
                    .iter()
                    .find(|h| h.direction == crate::store::Direction::Outgoing)
                {
                    Some(h) => short_uri(&h.peer),
                    None => {
                        notice(m, "type a number or SIP address to call".into(), true);
                        return true;
                    }
                },
            };
            dial(m, target, fx);
        }
        KeyName::Esc => {
            if m.completion.is_some() {
                m.completion = None;
            } else if !m.dialer.is_empty() {
                m.dialer.clear();
            } else {
                set_focus(m, Focus::Calls);
            }
        }
        _ => return false,
    }
    true
}

fn dial(m: &mut Model, target: String, fx: &mut Vec<Effect>) {
    let account = m.dial_as().map(str::to_string);
    m.dialer.clear();
    m.completion = None;
    set_focus(m, Focus::Calls);
    fx.push(Effect::Engine(Request::Dial { account, target }));
}

/// Navigation and Enter in the calls panel and the tabs; true when the key was used.
fn on_list_key(m: &mut Model, key: Key, fx: &mut Vec<Effect>) -> bool {
    if key.ctrl || key.alt {
        return false;
    }
    let (len, page) = match m.focus {
        Focus::Calls => (m.calls.len(), 5),
        Focus::History => (m.visible_history().len(), 10),
        Focus::Contacts => (m.visible_contacts().len(), 10),
        Focus::Log => (m.visible_log().len(), 10),
        Focus::Dialer => return false,
    };
    // The log scrolls from the bottom; the lists select from the top.
    if m.focus == Focus::Log {
        let max = len.saturating_sub(1);
        let s = &mut m.log_scroll;
        match key.code {
            KeyName::Up => *s = (*s + 1).min(max),
            KeyName::Down => *s = s.saturating_sub(1),
            KeyName::PageUp => *s = (*s + page).min(max),
            KeyName::PageDown => *s = s.saturating_sub(page),
            KeyName::Home => *s = max,
            KeyName::End => *s = 0,
            KeyName::Esc => set_focus(m, Focus::Dialer),
            _ => return false,
        }
        return true;
    }
    let sel = match m.focus {
        Focus::Calls => &mut m.selected_call,
        Focus::History => &mut m.history_selected,
        _ => &mut m.contact_selected,
    };
    let last = len.saturating_sub(1);
    match key.code {
        KeyName::Up => *sel = sel.saturating_sub(1),
        KeyName::Down => *sel = (*sel + 1).min(last),
        KeyName::PageUp => *sel = sel.saturating_sub(page),
        KeyName::PageDown => *sel = (*sel + page).min(last),
        KeyName::Home => *sel = 0,
        KeyName::End => *sel = last,
        KeyName::Esc => set_focus(m, Focus::Dialer),
        KeyName::Enter => enter(m, fx),
        KeyName::Char(c)
            if m.focus == Focus::Calls && (c.is_ascii_digit() || c == '*' || c == '#') =>
        {
            match m.call().filter(|c| c.state == CallState::Connected) {
                Some(call) => {
                    let call = call.id;
                    fx.push(Effect::Engine(Request::Dtmf {
                        call,
                        digits: c.to_string(),
                    }));
                }
                // No call to send it on: start dialing with it.
                None => {
                    set_focus(m, Focus::Dialer);
                    push_capped(&mut m.dialer, c.encode_utf8(&mut [0; 4]));
                }
            }
        }
        _ => return false,
    }
    true
}

/// Enter in a list: switch to the call, redial, call the contact.
fn enter(m: &mut Model, fx: &mut Vec<Effect>) {
    match m.focus {
        Focus::Calls => {
            let Some(c) = m.call() else { return };
            let (id, state) = (c.id, c.state);
            match state {
                CallState::Incoming => answer(m, id, fx),
                CallState::Hold => fx.push(Effect::Engine(Request::Resume {
                    call: id,
                    hold_others: true,
                })),
                _ => {}
            }
        }
        Focus::History => {
            if let Some(h) = m.visible_history().get(m.history_selected) {
                let target = short_uri(&h.peer);
                if let Some(a) = h.account.clone() {
                    if let Some(i) = m
                        .dial_accounts
                        .iter()
                        .position(|d| d.as_deref() == Some(&a))
                    {
                        m.dial_account = i;
                    }
                }
                dial(m, target, fx);
            }
        }
        Focus::Contacts => {
            if let Some(c) = m.visible_contacts().get(m.contact_selected) {
                let target = c.uri.clone();
                dial(m, target, fx);
            }
        }
        _ => {}
    }
}

/// The other call that is up besides the selected one (for join and attended transfer).
fn other_up_call(m: &Model, selected: CallId) -> Option<CallId> {
    let mut others = m.live_calls().filter(|c| c.id != selected && c.is_up());
    match (others.next(), others.next()) {
        (Some(c), None) => Some(c.id),
        _ => None,
    }
}

fn do_action(m: &mut Model, action: Action, fx: &mut Vec<Effect>) {
    if matches!(
        action.scope(),
        Scope::History | Scope::Contacts | Scope::Log
    ) {
        return tab_action(m, action, fx);
    }
    let selected = m.call().filter(|c| !c.is_ended()).cloned();
    let need_call = |m: &mut Model| notice(m, "no call selected".into(), true);
    match action {
        Action::Help => m.help = true,
        Action::Quit => ask_quit(m, fx),
        Action::Dial => set_focus(m, Focus::Dialer),
        Action::NextAccount => {
            m.dial_account = (m.dial_account + 1) % m.dial_accounts.len().max(1);
            let name = m.dial_as().unwrap_or("direct").to_string();
            notice(m, format!("calling as {name}"), false);
        }
        Action::Devices => {
            let pos = |list: &[String], cur: &Option<String>| {
                cur.as_ref()
                    .and_then(|d| list.iter().position(|x| x == d))
                    .map_or(0, |i| i + 1)
            };
            m.prompt = Some(Prompt::Devices {
                capture: pos(&m.devices.capture_list, &m.devices.capture),
                playback: pos(&m.devices.playback_list, &m.devices.playback),
                field: 0,
            });
        }
        Action::Answer | Action::Reject | Action::RejectBusy => {
            let ringing = match &selected {
                Some(c) if c.state == CallState::Incoming => Some(c.id),
                _ => m
                    .calls
                    .iter()
                    .find(|c| c.state == CallState::Incoming)
                    .map(|c| c.id),
            };
            match (ringing, action) {
                (None, _) => notice(m, "no call is ringing".into(), true),
                (Some(c), Action::Answer) => answer(m, c, fx),
                (Some(c), Action::Reject) => reject(m, c, 603, fx),
                (Some(c), _) => reject(m, c, 486, fx),
            }
        }
        _ => {
            let Some(c) = selected else {
                return need_call(m);
            };
            call_action(m, action, &c, fx);
        }
    }
}

fn call_action(m: &mut Model, action: Action, c: &CallView, fx: &mut Vec<Effect>) {
    let call = c.id;
    let request = match action {
        Action::Hangup => Request::Hangup { call },
        Action::Hold => match c.state {
            CallState::Hold => Request::Resume {
                call,
                hold_others: true,
            },
            CallState::Connected | CallState::RemoteHold => Request::Hold { call },
            _ => return notice(m, format!("{call} is not up"), true),
        },
        Action::Mute => Request::Mute { call, on: !c.muted },
        Action::Transfer => {
            if !c.is_up() {
                return notice(m, format!("{call} is not up"), true);
            }
            m.prompt = Some(Prompt::Text {
                purpose: TextPurpose::TransferTo(call),
                input: String::new(),
            });
            return;
        }
        Action::AttendedTransfer | Action::Join => match other_up_call(m, call) {
            Some(with) if action == Action::Join => Request::Join { call, with },
            Some(with) => Request::AttendedTransfer { call, with },
            None => return notice(m, "needs exactly one other call that is up".into(), true),
        },
        Action::Record => Request::Record {
            call,
            on: !c.recording,
        },
        Action::Denoise => Request::Denoise {
            call,
            on: !c.denoise,
        },
        Action::AcceptTransfer | Action::RefuseTransfer => {
            if !c.transfer_asked {
                return notice(m, format!("{call}: no transfer is asked for"), true);
            }
            if let Some(v) = find_call(m, call) {
                v.transfer_asked = false;
            }
            Request::AnswerTransfer {
                call,
                accept: action == Action::AcceptTransfer,
            }
        }
        // The tabs' actions are handled by tab_action.
        _ => return,
    };
    fx.push(Effect::Engine(request));
}

fn tab_action(m: &mut Model, action: Action, fx: &mut Vec<Effect>) {
    match action {
        Action::HistoryFilter => {
            m.prompt = Some(Prompt::Text {
                purpose: TextPurpose::HistoryFilter,
                input: m.history_filter.clone(),
            })
        }
        Action::HistoryDelete => {
            if let Some(h) = m.visible_history().get(m.history_selected) {
                fx.push(Effect::DeleteHistory(h.id));
            }
        }
        Action::HistoryToContact => {
            if let Some(h) = m.visible_history().get(m.history_selected) {
                let uri = short_uri(&h.peer);
                let name = h
                    .name
                    .clone()
                    .unwrap_or_else(|| uri.split('@').next().unwrap_or_default().to_string());
                m.prompt = Some(Prompt::Contact {
                    id: None,
                    name,
                    uri,
                    field: 0,
                });
            }
        }
        Action::ContactNew => {
            m.prompt = Some(Prompt::Contact {
                id: None,
                name: String::new(),
                uri: String::new(),
                field: 0,
            })
        }
        Action::ContactEdit => {
            if let Some(c) = m.visible_contacts().get(m.contact_selected) {
                m.prompt = Some(Prompt::Contact {
                    id: Some(c.id),
                    name: c.name.clone(),
                    uri: c.uri.clone(),
                    field: 0,
                });
            }
        }
        Action::ContactDelete => {
            if let Some(c) = m.visible_contacts().get(m.contact_selected) {
                fx.push(Effect::DeleteContact(c.id));
            }
        }
        Action::ContactImport => {
            m.prompt = Some(Prompt::Text {
                purpose: TextPurpose::ImportContacts,
                input: String::new(),
            })
        }
        Action::ContactFilter => {
            m.prompt = Some(Prompt::Text {
                purpose: TextPurpose::ContactFilter,
                input: m.contact_filter.clone(),
            })
        }
        Action::LogSearch => {
            m.prompt = Some(Prompt::Text {
                purpose: TextPurpose::LogSearch,
                input: m.log_search.clone(),
            })
        }
        Action::LogNext => search_log(m, m.log_scroll + 1),
        Action::LogSip => {
            m.show_sip = !m.show_sip;
            m.log_scroll = 0;
        }
        _ => {}
    }
}

/// Scroll the log to the newest match of the search at or above `from` lines from the bottom.
fn search_log(m: &mut Model, from: usize) {
    let q = m.log_search.to_lowercase();
    if q.is_empty() {
        return;
    }
    let lines = m.visible_log();
    let n = lines.len();
    let found = (from..n).find(|back| lines[n - 1 - back].text.to_lowercase().contains(&q));
    match found {
        Some(back) => m.log_scroll = back,
        None => notice(m, format!("no more lines with {:?}", m.log_search), true),
    }
}

fn on_prompt_key(m: &mut Model, key: Key, fx: &mut Vec<Effect>) {
    let Some(prompt) = m.prompt.clone() else {
        return;
    };
    match prompt {
        Prompt::ConfirmQuit => match plain_char(key) {
            Some('y') | Some('Y') => {
                m.prompt = None;
                m.quitting = true;
                fx.push(Effect::Quit);
            }
            _ if key.code == KeyName::Esc || plain_char(key).is_some() => m.prompt = None,
            _ => {}
        },
        Prompt::Devices {
            capture,
            playback,
            field,
        } => {
            let (cap_n, play_n) = (
                m.devices.capture_list.len() + 1,
                m.devices.playback_list.len() + 1,
            );
            let (mut capture, mut playback, mut field) = (capture, playback, field);
            match key.code {
                KeyName::Esc => {
                    m.prompt = None;
                    return;
                }
                KeyName::Tab | KeyName::BackTab | KeyName::Left | KeyName::Right => {
                    field = 1 - field
                }
                KeyName::Up if field == 0 => capture = capture.saturating_sub(1),
                KeyName::Up => playback = playback.saturating_sub(1),
                KeyName::Down if field == 0 => capture = (capture + 1).min(cap_n - 1),
                KeyName::Down => playback = (playback + 1).min(play_n - 1),
                KeyName::Enter => {
                    let pick = |list: &[String], i: usize| {
                        i.checked_sub(1).and_then(|i| list.get(i).cloned())
                    };
                    m.devices.capture = pick(&m.devices.capture_list, capture);
                    m.devices.playback = pick(&m.devices.playback_list, playback);
                    m.prompt = None;
                    let name = |d: &Option<String>| d.clone().unwrap_or_else(|| "default".into());
                    let text = format!(
                        "next calls use microphone {} and speaker {}",
                        name(&m.devices.capture),
                        name(&m.devices.playback)
                    );
                    notice(m, text, false);
                    return;
                }
                _ => {}
            }
            m.prompt = Some(Prompt::Devices {
                capture,
                playback,
                field,
            });
        }
        Prompt::Text { purpose, input } => match key.code {
            KeyName::Esc => {
                m.prompt = None;
                match purpose {
                    TextPurpose::HistoryFilter => m.history_filter.clear(),
                    TextPurpose::ContactFilter => m.contact_filter.clear(),
                    _ => {}
                }
            }
            KeyName::Enter => {
                m.prompt = None;
                let text = input.trim().to_string();
                match purpose {
                    TextPurpose::TransferTo(call) if !text.is_empty() => {
                        fx.push(Effect::Engine(Request::Transfer { call, to: text }))
                    }
                    TextPurpose::ImportContacts if !text.is_empty() => {
                        fx.push(Effect::ImportContacts(text))
                    }
                    TextPurpose::LogSearch => {
                        m.log_search = text;
                        search_log(m, 0);
                    }
                    _ => {}
                }
            }
            KeyName::Backspace => {
                if let Some(Prompt::Text { input, .. }) = &mut m.prompt {
                    input.pop();
                }
                after_text_edit(m);
            }
            _ => {
                if let (Some(c), Some(Prompt::Text { input, .. })) =
                    (plain_char(key), &mut m.prompt)
                {
                    push_capped(input, c.encode_utf8(&mut [0; 4]));
                    after_text_edit(m);
                }
            }
        },
        Prompt::Contact {
            id,
            name,
            uri,
            field,
        } => match key.code {
            KeyName::Esc => m.prompt = None,
            KeyName::Tab | KeyName::BackTab | KeyName::Up | KeyName::Down => {
                if let Some(Prompt::Contact { field, .. }) = &mut m.prompt {
                    *field = 1 - *field;
                }
            }
            KeyName::Enter if field == 0 => {
                if let Some(Prompt::Contact { field, .. }) = &mut m.prompt {
                    *field = 1;
                }
            }
            KeyName::Enter => {
                let (name, uri) = (name.trim().to_string(), uri.trim().to_string());
                if name.is_empty() || uri.is_empty() {
                    notice(
                        m,
                        "a contact needs a name and a number or SIP address".into(),
                        true,
                    );
                } else {
                    m.prompt = None;
                    fx.push(Effect::SaveContact { id, name, uri });
                }
            }
            KeyName::Backspace => {
                if let Some(f) = text_field(m) {
                    f.pop();
                }
            }
            _ => {
                if let Some(c) = plain_char(key) {
                    if let Some(f) = text_field(m) {
                        push_capped(f, c.encode_utf8(&mut [0; 4]));
                    }
                }
            }
        },
    }
}
