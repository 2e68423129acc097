//! `view`: the model drawn into a frame. Pure: the same model gives the same screen (the
//! snapshot tests rely on it). Adapts from 80×24 up.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, List, ListItem, ListState, Paragraph, Wrap};
use ratatui::Frame;

use crate::engine::api::{CallState, Level};
use crate::store::Direction;

use super::keymap::{Action, Scope};
use super::model::{short_uri, CallView, Focus, LogKind, Model, Prompt, TextPurpose};

/// Draw the whole screen.
pub fn view(m: &Model, f: &mut Frame) {
    let area = f.area();
    let [status, body, help] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(6),
        Constraint::Length(1),
    ])
    .areas(area);
    // Wide screens: the phone on the left, the tabs beside it; else one column.
    let (dialer, calls, tabs) = if area.width >= WIDE {
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(body);
        let [dialer, calls] =
            Layout::vertical([Constraint::Length(3), Constraint::Min(3)]).areas(left);
        (dialer, calls, right)
    } else {
        let calls_h = calls_height(m, area.height);
        let [dialer, calls, tabs] = Layout::vertical([
            Constraint::Length(3),
            Constraint::Length(calls_h),
            Constraint::Min(3),
        ])
        .areas(body);
        (dialer, calls, tabs)
    };
    status_bar(m, f, status);
    dialer_box(m, f, dialer);
    calls_panel(m, f, calls);
    tab_panel(m, f, tabs);
    help_bar(m, f, help);
    if m.focus == Focus::Dialer && m.prompt.is_none() {
        completions(m, f, dialer);
    }
    if let Some(p) = &m.prompt {
        prompt(m, p, f, area);
    } else if let Some(c) = m.incoming_prompt() {
        incoming(m, c, f, area);
    }
    if m.help {
        help_screen(m, f, area);
    }
}

/// From this width the tabs stand beside the calls instead of below them.
const WIDE: u16 = 140;

/// Rows for the calls panel: one per call, two for the selected call's quality, the border;
/// at most half the screen.
fn calls_height(m: &Model, height: u16) -> u16 {
    let rows = if m.calls.is_empty() {
        1
    } else {
        m.calls.len() + 2
    };
    (rows as u16 + 2).clamp(3, (height / 2).max(5))
}

fn fg(m: &Model, c: Color) -> Style {
    if m.color {
        Style::new().fg(c)
    } else {
        Style::new()
    }
}

fn bold() -> Style {
    Style::new().add_modifier(Modifier::BOLD)
}

/// The focused panel's border stands out.
fn block<'a>(m: &Model, title: impl Into<Line<'a>>, focused: bool) -> Block<'a> {
    let b = Block::bordered().title(title);
    if focused {
        b.border_style(fg(m, Color::Cyan).add_modifier(Modifier::BOLD))
    } else {
        b.border_style(fg(m, Color::DarkGray))
    }
}

/// Local time of day, `HH:MM:SS`.
pub fn clock_text(unix: i64, offset: i32) -> String {
    let t = (unix + i64::from(offset)).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60)
}

/// Local date and time, `YYYY-MM-DD HH:MM`.
pub fn date_text(unix: i64, offset: i32) -> String {
    let local = unix + i64::from(offset);
    let (y, mo, d) = civil_from_days(local.div_euclid(86_400));
    let t = local.rem_euclid(86_400);
    format!("{y:04}-{mo:02}-{d:02} {:02}:{:02}", t / 3600, t / 60 % 60)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if mo <= 2 { y + 1 } else { y }, mo, d)
}

/// `m:ss`, or `h:mm:ss` from an hour.
pub fn duration_text(secs: u64) -> String {
    if secs >= 3600 {
        format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    } else {
        format!("{}:{:02}", secs / 60, secs % 60)
    }
}

fn status_bar(m: &Model, f: &mut Frame, area: Rect) {
    let [top, bottom] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    let mut spans = vec![Span::styled(
        " termphone ",
        bold().add_modifier(Modifier::REVERSED),
    )];
    if m.accounts.is_empty() {
        spans.push(Span::raw("  no registering accounts (direct calls)"));
    }
    for a in &m.accounts {
        let (mark, color) = match a.state.as_str() {
            "registered" => ("●", Color::Green),
            "failed" => ("✗", Color::Red),
            "registering" | "unregistering" => ("◌", Color::Yellow),
            _ => ("○", Color::DarkGray),
        };
        spans.push(Span::raw("  "));
        spans.push(Span::styled(format!("{mark} "), fg(m, color)));
        spans.push(Span::styled(a.name.clone(), bold()));
        spans.push(Span::raw(" "));
        let mut state = a.state.clone();
        if let Some(r) = &a.reason {
            state.push_str(": ");
            state.push_str(r);
        }
        let style = if a.state == "failed" {
            fg(m, Color::Red).add_modifier(Modifier::BOLD)
        } else {
            fg(m, color)
        };
        spans.push(Span::styled(state, style));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), top);

    let clock = clock_text(m.clock.unix, m.clock.utc_offset);
    let dev = |d: &Option<String>| d.clone().unwrap_or_else(|| "default".into());
    let mut left = format!(
        " mic {} · speaker {}",
        dev(&m.devices.capture),
        dev(&m.devices.playback)
    );
    if let Some(l) = &m.listen {
        left.push_str(&format!(" · SIP {l}"));
    }
    let [l, r] = Layout::horizontal([Constraint::Min(1), Constraint::Length(9)]).areas(bottom);
    f.render_widget(
        Paragraph::new(Span::styled(left, fg(m, Color::DarkGray))),
        l,
    );
    f.render_widget(Paragraph::new(Span::styled(clock, bold())), r);
}

fn dialer_box(m: &Model, f: &mut Frame, area: Rect) {
    let focused = m.focus == Focus::Dialer;
    let account = m.dial_as().unwrap_or("direct");
    let switch = if m.dial_accounts.len() > 1 {
        format!(" ({} next)", m.keymap.key(Action::NextAccount))
    } else {
        String::new()
    };
    let title = format!(" Dial as {account}{switch} ");
    let mut spans = vec![
        Span::styled("> ", fg(m, Color::Cyan)),
        Span::raw(m.dialer.clone()),
    ];
    if focused && m.prompt.is_none() {
        spans.push(Span::styled("▏", fg(m, Color::Cyan)));
    }
    if m.dialer.is_empty() && !focused {
        spans.push(Span::styled(
            format!(
                "{} to type a number or SIP address",
                m.keymap.key(Action::Dial)
            ),
            fg(m, Color::DarkGray),
        ));
    } else if m.dialer.is_empty() {
        spans.push(Span::styled(
            "number, name or sip:user@host — Enter calls (empty: redial)",
            fg(m, Color::DarkGray),
        ));
    }
    f.render_widget(
        Paragraph::new(Line::from(spans)).block(block(m, title, focused)),
        area,
    );
}

fn completions(m: &Model, f: &mut Frame, dialer: Rect) {
    let list = m.completions();
    if list.is_empty() {
        return;
    }
    let width = list
        .iter()
        .map(|(n, u)| n.chars().count() + u.chars().count() + 5)
        .max()
        .unwrap_or(10)
        .min(usize::from(dialer.width.saturating_sub(4))) as u16;
    let area = Rect {
        x: dialer.x + 3,
        y: dialer.y + 2,
        width,
        height: list.len() as u16 + 2,
    }
    .intersection(f.area());
    let items: Vec<ListItem> = list
        .iter()
        .map(|(name, uri)| {
            if short_uri(uri) == *name {
                ListItem::new(name.clone())
            } else {
                ListItem::new(Line::from(vec![
                    Span::styled(name.clone(), bold()),
                    Span::raw(format!("  {uri}")),
                ]))
            }
        })
        .collect();
    let mut state = ListState::default().with_selected(m.completion);
    f.render_widget(Clear, area);
    f.render_stateful_widget(
        List::new(items)
            .block(block(m, " ↓ choose ", true))
            .highlight_style(Style::new().add_modifier(Modifier::REVERSED)),
        area,
        &mut state,
    );
}

fn state_style(m: &Model, c: &CallView) -> Style {
    match c.state {
        CallState::Connected => fg(m, Color::Green).add_modifier(Modifier::BOLD),
        CallState::Incoming => {
            fg(m, Color::Yellow).add_modifier(Modifier::BOLD | Modifier::SLOW_BLINK)
        }
        CallState::Dialing | CallState::Alerting => fg(m, Color::Yellow),
        CallState::Hold | CallState::RemoteHold => fg(m, Color::Blue),
        _ => fg(m, Color::DarkGray),
    }
}

fn call_line(m: &Model, c: &CallView, width: u16) -> Line<'static> {
    let arrow = if c.incoming { "←" } else { "→" };
    let mut spans = vec![
        Span::raw(format!("{} {arrow} ", c.id)),
        Span::styled(c.who(), bold()),
    ];
    if c.name.is_some() && width > 100 {
        spans.push(Span::styled(
            format!(" <{}>", short_uri(&c.peer)),
            fg(m, Color::DarkGray),
        ));
    }
    spans.push(Span::raw("  "));
    let state = match (c.state, &c.code, &c.reason) {
        (s, Some(code), Some(r)) if s.is_final() => format!("{s} {code} {r}"),
        (s, None, Some(r)) if s.is_final() => format!("{s} ({r})"),
        (s, Some(code), None) if s.is_final() => format!("{s} {code}"),
        (s, _, _) => s.to_string(),
    };
    spans.push(Span::styled(state, state_style(m, c)));
    let time = if c.connected_ms.is_some() {
        duration_text(c.talk_secs(m.clock.ms))
    } else {
        duration_text(c.age_secs(m.clock.ms))
    };
    spans.push(Span::raw(format!("  {time}")));
    if let Some(s) = &c.stats {
        if !s.codec.is_empty() {
            spans.push(Span::styled(
                format!("  {}", s.codec),
                fg(m, Color::DarkGray),
            ));
        }
    }
    let mut marks = Vec::new();
    if m.conference.contains(&c.id) {
        marks.push("CONF");
    }
    if c.muted {
        marks.push("MUTED");
    }
    if c.recording {
        marks.push("REC");
    }
    if !c.denoise {
        marks.push("NS-OFF");
    }
    for mark in marks {
        spans.push(Span::raw(" "));
        spans.push(Span::styled(
            format!("[{mark}]"),
            fg(
                m,
                if mark == "REC" {
                    Color::Red
                } else {
                    Color::Magenta
                },
            )
            .add_modifier(Modifier::BOLD),
        ));
    }
    if let Some(t) = &c.transfer {
        spans.push(Span::styled(format!("  {t}"), fg(m, Color::Yellow)));
    }
    if width > 100 {
        if let Some(a) = &c.account {
            spans.push(Span::styled(format!("  via {a}"), fg(m, Color::DarkGray)));
        }
    }
    Line::from(spans)
}

/// A level meter: ten cells from -60 to 0 dBFS.
fn meter(level: &Level) -> String {
    let cells = ((level.rms_dbfs + 60.0) / 6.0).clamp(0.0, 10.0).round() as usize;
    format!(
        "{}{} {:>4.0} dB",
        "█".repeat(cells),
        "·".repeat(10 - cells),
        level.rms_dbfs.max(-99.0)
    )
}

fn quality_lines(m: &Model, c: &CallView) -> Vec<Line<'static>> {
    let mut q = Vec::new();
    match &c.stats {
        Some(s) => {
            let lost_pct = if s.packets_received + s.lost > 0 {
                100.0 * s.lost as f64 / (s.packets_received + s.lost) as f64
            } else {
                0.0
            };
            let mut t = format!(
                "  quality: loss {lost_pct:.1} %  jitter {:.1} ms  buffer {:.0} ms",
                s.jitter_ms, s.buffer_ms
            );
            if let Some(rtt) = s.rtt_ms {
                t.push_str(&format!("  RTT {rtt:.0} ms"));
            }
            let mos_style = match s.mos {
                Some(v) if v >= 4.0 => fg(m, Color::Green),
                Some(v) if v >= 3.5 => fg(m, Color::Yellow),
                Some(_) => fg(m, Color::Red),
                None => Style::new(),
            };
            let mut spans = vec![Span::raw(t)];
            if let Some(mos) = s.mos {
                spans.push(Span::raw("  MOS "));
                spans.push(Span::styled(
                    format!("{mos:.2}"),
                    mos_style.add_modifier(Modifier::BOLD),
                ));
            }
            q.push(Line::from(spans));
        }
        None if c.is_up() => q.push(Line::styled(
            "  quality: waiting for media",
            fg(m, Color::DarkGray),
        )),
        None => q.push(Line::raw("")),
    }
    match &c.levels {
        Some((tx, rx)) => q.push(Line::from(vec![
            Span::raw("  mic "),
            Span::styled(meter(tx), fg(m, Color::Green)),
            Span::raw("   speaker "),
            Span::styled(meter(rx), fg(m, Color::Cyan)),
        ])),
        None => q.push(Line::raw("")),
    }
    q
}

fn calls_panel(m: &Model, f: &mut Frame, area: Rect) {
    let focused = m.focus == Focus::Calls;
    let live = m.live_calls().count();
    let title = if live == 0 {
        " Calls ".to_string()
    } else {
        format!(" Calls ({live}) ")
    };
    let b = block(m, title, focused);
    let inner = b.inner(area);
    f.render_widget(b, area);
    if m.calls.is_empty() {
        f.render_widget(
            Paragraph::new(Span::styled(
                "No calls. Type a number and press Enter.",
                fg(m, Color::DarkGray),
            )),
            inner,
        );
        return;
    }
    // The calls, then the selected call's details under them (more of them when there is room).
    let list_h = (m.calls.len() as u16)
        .min(inner.height.saturating_sub(2))
        .max(1);
    let [list_area, detail] =
        Layout::vertical([Constraint::Length(list_h), Constraint::Min(0)]).areas(inner);
    let items: Vec<ListItem> = m
        .calls
        .iter()
        .map(|c| ListItem::new(call_line(m, c, area.width)))
        .collect();
    let mut state = ListState::default().with_selected(Some(m.selected_call));
    let highlight = if focused {
        Style::new().add_modifier(Modifier::REVERSED)
    } else {
        Style::new().add_modifier(Modifier::BOLD)
    };
    f.render_stateful_widget(
        List::new(items)
            .highlight_style(highlight)
            .highlight_symbol("▶ "),
        list_area,
        &mut state,
    );
    if let Some(c) = m.call() {
        let mut lines = quality_lines(m, c);
        if detail.height >= 6 {
            lines.insert(0, Line::raw(""));
            lines.extend(more_details(m, c));
        }
        f.render_widget(Paragraph::new(lines), detail);
    }
}

/// The selected call in full, for a tall calls panel.
fn more_details(m: &Model, c: &CallView) -> Vec<Line<'static>> {
    let dim = fg(m, Color::DarkGray);
    let mut v = vec![Line::styled(format!("  peer: {}", c.peer), dim)];
    v.push(Line::styled(
        format!(
            "  account: {}  ·  {}",
            c.account.as_deref().unwrap_or("direct"),
            if c.incoming { "incoming" } else { "outgoing" }
        ),
        dim,
    ));
    if let Some(s) = &c.stats {
        v.push(Line::styled(
            format!(
                "  packets: sent {}  received {}  lost {}  late {}  concealed {}  FEC {}",
                s.packets_sent, s.packets_received, s.lost, s.late, s.concealed, s.fec_recovered
            ),
            dim,
        ));
        if let Some(r) = s.remote_loss_pct {
            v.push(Line::styled(
                format!("  the peer lost {r:.1} % of ours"),
                dim,
            ));
        }
    }
    v
}

fn tab_titles(m: &Model) -> Line<'static> {
    let shown = m.tab();
    let mut spans = vec![Span::raw(" ")];
    for (tab, name) in [
        (Focus::History, "History"),
        (Focus::Contacts, "Contacts"),
        (Focus::Log, "Log"),
    ] {
        let style = if tab == shown {
            bold().add_modifier(Modifier::UNDERLINED)
        } else {
            fg(m, Color::DarkGray)
        };
        spans.push(Span::styled(name, style));
        spans.push(Span::raw(" │ "));
    }
    spans.pop();
    spans.push(Span::raw(" "));
    Line::from(spans)
}

fn tab_panel(m: &Model, f: &mut Frame, area: Rect) {
    let shown = m.tab();
    let focused = m.focus == shown;
    let mut title = tab_titles(m);
    let filter = match shown {
        Focus::History => &m.history_filter,
        Focus::Contacts => &m.contact_filter,
        _ => &m.log_search,
    };
    if !filter.is_empty() {
        title.push_span(Span::styled(format!("/{filter} "), fg(m, Color::Yellow)));
    }
    let b = block(m, title, focused);
    let inner = b.inner(area);
    f.render_widget(b, area);
    let highlight = if focused {
        Style::new().add_modifier(Modifier::REVERSED)
    } else {
        Style::new()
    };
    match shown {
        Focus::History => {
            let rows = m.visible_history();
            let empty = if m.history.is_empty() {
                "No calls yet."
            } else {
                "Nothing matches the filter."
            };
            let row = |h: &&crate::store::HistoryEntry| {
                let (mark, color) = match (h.direction, h.missed()) {
                    (_, true) => ("✗ missed  ", Color::Red),
                    (Direction::Incoming, false) => ("← in      ", Color::Green),
                    (Direction::Outgoing, _) => ("→ out     ", Color::Cyan),
                };
                let who = fit(&h.name.clone().unwrap_or_else(|| short_uri(&h.peer)), 24);
                let how = if h.answered {
                    duration_text(u64::from(h.duration_s))
                } else {
                    match (&h.code, &h.reason) {
                        (Some(c), Some(r)) => format!("{c} {r}"),
                        (Some(c), None) => c.to_string(),
                        (None, Some(r)) => r.clone(),
                        (None, None) => h.end_state.clone(),
                    }
                };
                let mut spans = vec![
                    Span::styled(
                        date_text(h.started, m.clock.utc_offset),
                        fg(m, Color::DarkGray),
                    ),
                    Span::raw("  "),
                    Span::styled(mark, fg(m, color)),
                    Span::styled(format!("{who:<24}"), bold()),
                    Span::raw(format!(" {how}")),
                ];
                if let Some(a) = &h.account {
                    spans.push(Span::styled(format!("  {a}"), fg(m, Color::DarkGray)));
                }
                ListItem::new(Line::from(spans))
            };
            let list = Rows {
                rows: &rows,
                selected: m.history_selected,
                empty: empty.into(),
            };
            list.draw(m, f, inner, highlight, row);
        }
        Focus::Contacts => {
            let rows = m.visible_contacts();
            let empty = if m.contacts.is_empty() {
                format!(
                    "No contacts. {} adds one, {} imports a vCard or CSV file.",
                    m.keymap.key(Action::ContactNew),
                    m.keymap.key(Action::ContactImport)
                )
            } else {
                "Nothing matches the filter.".into()
            };
            let row = |c: &&crate::store::Contact| {
                ListItem::new(Line::from(vec![
                    Span::styled(format!("{:<28}", c.name), bold()),
                    Span::raw(c.uri.clone()),
                ]))
            };
            let list = Rows {
                rows: &rows,
                selected: m.contact_selected,
                empty,
            };
            list.draw(m, f, inner, highlight, row);
        }
        _ => {
            let lines = m.visible_log();
            let h = usize::from(inner.height);
            let end = lines.len().saturating_sub(m.log_scroll);
            let start = end.saturating_sub(h);
            let q = m.log_search.to_lowercase();
            let text: Vec<Line> = lines[start..end]
                .iter()
                .map(|l| {
                    let (tag, color) = match l.kind {
                        LogKind::Info => ("   ", Color::Reset),
                        LogKind::Warn => ("!  ", Color::Yellow),
                        LogKind::Error => ("!! ", Color::Red),
                        LogKind::SipIn => ("<- ", Color::Blue),
                        LogKind::SipOut => ("-> ", Color::Magenta),
                    };
                    let mut style = fg(m, color);
                    if !q.is_empty() && l.text.to_lowercase().contains(&q) {
                        style = style.add_modifier(Modifier::REVERSED);
                    }
                    Line::from(vec![
                        Span::styled(clock_text(l.at, m.clock.utc_offset), fg(m, Color::DarkGray)),
                        Span::raw(" "),
                        Span::styled(tag, fg(m, color)),
                        Span::styled(l.text.clone(), style),
                    ])
                })
                .collect();
            f.render_widget(Paragraph::new(text), inner);
        }
    }
}

/// The keys that matter where the focus is, in the order a user needs them.
fn help_keys(m: &Model) -> Vec<(String, &'static str)> {
    let k = |a: Action| m.keymap.key(a).to_string();
    let mut keys: Vec<(String, &'static str)> = Vec::new();
    if m.prompt.is_some() {
        return vec![("Enter".into(), "ok"), ("Esc".into(), "cancel")];
    }
    if m.incoming_prompt().is_some() {
        return vec![
            (k(Action::Answer), "answer"),
            (k(Action::Reject), "reject"),
            (k(Action::RejectBusy), "busy"),
            ("Esc".into(), "later"),
        ];
    }
    match m.focus {
        Focus::Dialer => {
            keys.push(("Enter".into(), "call"));
            if m.dial_accounts.len() > 1 {
                keys.push((k(Action::NextAccount), "account"));
            }
            keys.push(("Tab".into(), "calls/tabs"));
        }
        Focus::Calls => match m.call().filter(|c| !c.is_ended()) {
            Some(c) if c.state == CallState::Incoming => {
                keys.push((k(Action::Answer), "answer"));
                keys.push((k(Action::Reject), "reject"));
                keys.push((k(Action::RejectBusy), "busy"));
            }
            Some(c) if c.is_up() => {
                keys.push((k(Action::Hangup), "end"));
                keys.push((
                    k(Action::Hold),
                    if c.state == CallState::Hold {
                        "resume"
                    } else {
                        "hold"
                    },
                ));
                keys.push((k(Action::Mute), if c.muted { "unmute" } else { "mute" }));
                keys.push(("0-9*#".into(), "DTMF"));
                keys.push((k(Action::Transfer), "transfer"));
                if m.live_calls().filter(|o| o.is_up()).count() == 2 {
                    keys.push((k(Action::AttendedTransfer), "att.transfer"));
                    keys.push((k(Action::Join), "join"));
                }
                keys.push((
                    k(Action::Record),
                    if c.recording { "stop rec" } else { "record" },
                ));
                if c.transfer_asked {
                    keys.push((k(Action::AcceptTransfer), "follow transfer"));
                }
            }
            Some(_) => keys.push((k(Action::Hangup), "end")),
            None => keys.push((k(Action::Dial), "dial")),
        },
        Focus::History => {
            keys.push(("Enter".into(), "call back"));
            keys.push((k(Action::HistoryFilter), "filter"));
            keys.push((k(Action::HistoryToContact), "to contacts"));
            keys.push((k(Action::HistoryDelete), "delete"));
        }
        Focus::Contacts => {
            keys.push(("Enter".into(), "call"));
            keys.push((k(Action::ContactNew), "new"));
            keys.push((k(Action::ContactEdit), "edit"));
            keys.push((k(Action::ContactDelete), "delete"));
            keys.push((k(Action::ContactImport), "import"));
            keys.push((k(Action::ContactFilter), "filter"));
        }
        Focus::Log => {
            keys.push(("↑↓".into(), "scroll"));
            keys.push((k(Action::LogSearch), "search"));
            keys.push((k(Action::LogNext), "next"));
            keys.push((
                k(Action::LogSip),
                if m.show_sip { "hide SIP" } else { "show SIP" },
            ));
        }
    }
    // In the dialer letters type: there F1 and Ctrl-c are the help and quit keys.
    if m.focus == Focus::Dialer {
        keys.push(("F1".into(), "help"));
        keys.push(("Ctrl-c".into(), "quit"));
    } else {
        keys.push(("Tab".into(), "next pane"));
        keys.push((k(Action::Help), "help"));
        keys.push((k(Action::Quit), "quit"));
    }
    keys
}

fn help_bar(m: &Model, f: &mut Frame, area: Rect) {
    if let Some(n) = &m.notice {
        let style = if n.error {
            fg(m, Color::Red).add_modifier(Modifier::BOLD)
        } else {
            fg(m, Color::Yellow)
        };
        f.render_widget(
            Paragraph::new(Span::styled(format!(" {}", n.text), style)),
            area,
        );
        return;
    }
    // What fits: the keys in order of need, then always help (and quit when there is room).
    let mut keys = help_keys(m);
    let tail: Vec<_> = keys.split_off(keys.len().saturating_sub(2));
    let width = |k: &(String, &str)| k.0.chars().count() + k.1.chars().count() + 3;
    let room = usize::from(area.width);
    let tail_w: usize = tail.iter().map(width).sum();
    let mut used = 0;
    let mut shown: Vec<(String, &str)> = Vec::new();
    for k in keys {
        if used + width(&k) + tail_w > room {
            break;
        }
        used += width(&k);
        shown.push(k);
    }
    for k in tail {
        if used + width(&k) <= room {
            used += width(&k);
            shown.push(k);
        }
    }
    let mut spans = Vec::new();
    for (key, what) in shown {
        spans.push(Span::styled(
            format!(" {key}"),
            bold().add_modifier(Modifier::REVERSED),
        ));
        spans.push(Span::raw(format!(" {what} ")));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// A tab's list: its rows, the selection, what to say when it is empty.
struct Rows<'a, T> {
    rows: &'a [T],
    selected: usize,
    empty: String,
}

impl<T> Rows<'_, T> {
    /// Draw only the rows that fit, around the selection (a list can be long).
    fn draw(
        self,
        m: &Model,
        f: &mut Frame,
        area: Rect,
        highlight: Style,
        row: impl Fn(&T) -> ListItem<'static>,
    ) {
        if self.rows.is_empty() {
            f.render_widget(
                Paragraph::new(Span::styled(self.empty, fg(m, Color::DarkGray))),
                area,
            );
            return;
        }
        let (start, selected) = window(self.selected, self.rows.len(), area.height);
        let items: Vec<ListItem> = self
            .rows
            .iter()
            .skip(start)
            .take(usize::from(area.height))
            .map(row)
            .collect();
        let mut state = ListState::default().with_selected(Some(selected));
        f.render_stateful_widget(
            List::new(items).highlight_style(highlight),
            area,
            &mut state,
        );
    }
}

/// The rows of a list of `len` that a `height`-row view shows with row `selected` in it: the
/// first row's index, and the selection's place among the shown rows. The view follows the
/// selection, keeping it on the last row when it is below the first screenful.
fn window(selected: usize, len: usize, height: u16) -> (usize, usize) {
    let h = usize::from(height).max(1);
    let selected = selected.min(len.saturating_sub(1));
    let start = selected.saturating_sub(h - 1);
    (start, selected - start)
}

/// `s` in at most `n` characters (an ellipsis marks a cut).
fn fit(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// A box of `w`×`h` in the middle of `area` (smaller when the screen is).
fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn incoming(m: &Model, c: &CallView, f: &mut Frame, area: Rect) {
    let r = centered(area, 60, 8);
    let k = |a: Action| m.keymap.key(a).to_string();
    let waiting = m.live_calls().any(|o| o.id != c.id && o.is_up());
    let title = if waiting {
        " Call waiting "
    } else {
        " Incoming call "
    };
    let style = if m.color {
        Style::new().fg(Color::Black).bg(Color::Yellow)
    } else {
        Style::new().add_modifier(Modifier::REVERSED)
    };
    let mut lines = vec![Line::styled(c.who(), bold())];
    if c.name.is_some() {
        lines.push(Line::raw(short_uri(&c.peer)));
    }
    lines.push(Line::raw(match &c.account {
        Some(a) => format!("on account {a}"),
        None => "direct call".into(),
    }));
    lines.push(Line::raw(""));
    lines.push(Line::from(vec![
        Span::styled(
            format!(" {} ", k(Action::Answer)),
            bold().add_modifier(Modifier::REVERSED),
        ),
        Span::raw(" answer   "),
        Span::styled(
            format!(" {} ", k(Action::Reject)),
            bold().add_modifier(Modifier::REVERSED),
        ),
        Span::raw(" reject   "),
        Span::styled(
            format!(" {} ", k(Action::RejectBusy)),
            bold().add_modifier(Modifier::REVERSED),
        ),
        Span::raw(" busy   "),
        Span::styled(" Esc ", bold().add_modifier(Modifier::REVERSED)),
        Span::raw(" later"),
    ]));
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).centered().style(style).block(
            Block::bordered()
                .title(title)
                .title_style(bold())
                .border_style(style),
        ),
        r,
    );
}

fn prompt(m: &Model, p: &Prompt, f: &mut Frame, area: Rect) {
    let cursor = Span::styled("▏", fg(m, Color::Cyan));
    let (title, lines, h): (String, Vec<Line>, u16) = match p {
        Prompt::Text { purpose, input } => {
            let title = match purpose {
                TextPurpose::TransferTo(c) => format!(" Transfer {c} to "),
                p => format!(" {} ", p.title()),
            };
            (
                title,
                vec![Line::from(vec![Span::raw(format!("> {input}")), cursor])],
                3,
            )
        }
        Prompt::Contact {
            id,
            name,
            uri,
            field,
        } => {
            let row = |label: &str, value: &str, on: bool| {
                let mut spans = vec![
                    Span::styled(format!("{label:>6}: "), bold()),
                    Span::raw(value.to_string()),
                ];
                if on {
                    spans.push(cursor.clone());
                }
                Line::from(spans)
            };
            let title = if id.is_some() {
                " Edit contact "
            } else {
                " New contact "
            };
            (
                title.into(),
                vec![
                    row("Name", name, *field == 0),
                    row("Number", uri, *field == 1),
                    Line::styled(
                        "Tab: next field · Enter: save · Esc: cancel",
                        fg(m, Color::DarkGray),
                    ),
                ],
                5,
            )
        }
        Prompt::ConfirmQuit => (
            " Quit ".into(),
            vec![
                Line::raw(format!(
                    "{} call(s) in progress will be hung up.",
                    m.live_calls().count()
                )),
                Line::styled("Quit anyway? y / n", bold()),
            ],
            4,
        ),
        Prompt::Devices {
            capture,
            playback,
            field,
        } => {
            let col = |list: &[String], sel: usize, on: bool, label: &str| {
                let mut v = vec![Line::styled(
                    label.to_string(),
                    if on {
                        bold().add_modifier(Modifier::UNDERLINED)
                    } else {
                        bold()
                    },
                )];
                for (i, name) in std::iter::once("default")
                    .chain(list.iter().map(String::as_str))
                    .enumerate()
                {
                    let mark = if i == sel { "● " } else { "  " };
                    v.push(Line::raw(format!("{mark}{name}")));
                }
                v
            };
            let mut lines = col(&m.devices.capture_list, *capture, *field == 0, "Microphone");
            lines.push(Line::raw(""));
            lines.extend(col(
                &m.devices.playback_list,
                *playback,
                *field == 1,
                "Speaker",
            ));
            lines.push(Line::styled(
                "↑↓ choose · Tab: other · Enter: use for the next calls",
                fg(m, Color::DarkGray),
            ));
            let h = lines.len() as u16 + 2;
            (" Audio devices ".into(), lines, h)
        }
    };
    let r = centered(area, 64, h);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block(m, title, true)),
        r,
    );
}

fn help_screen(m: &Model, f: &mut Frame, area: Rect) {
    let head = Line::styled(
        "Keys (any key closes this; rebind them in config.toml [keys])",
        bold(),
    );
    let scopes = [
        (Scope::Global, "Anywhere"),
        (Scope::Calls, "Calls panel"),
        (Scope::History, "History"),
        (Scope::Contacts, "Contacts"),
        (Scope::Log, "Log"),
    ];
    let mut entries: Vec<Line> = Vec::new();
    for (scope, name) in scopes {
        entries.push(Line::styled(
            format!("{name}:"),
            fg(m, Color::Cyan).add_modifier(Modifier::BOLD),
        ));
        if scope == Scope::Global {
            entries.push(Line::raw("  Tab      next pane (Shift-Tab back)"));
            entries.push(Line::raw("  F1 ^c    help / quit (dialer too)"));
        }
        if scope == Scope::Calls {
            entries.push(Line::raw("  0-9 * #  DTMF on the selected call"));
            entries.push(Line::raw("  Enter    answer / switch to call"));
        }
        for a in Action::all().filter(|a| a.scope() == scope) {
            entries.push(Line::raw(format!(
                "  {:<8} {}",
                m.keymap.key(a).to_string(),
                a.describe()
            )));
        }
    }
    // As many columns as the height needs (at most 3), two on a wide screen anyway; the box
    // is as tall as its longest column.
    let width = area.width.saturating_sub(4).clamp(40, 120);
    let room = usize::from(area.height.saturating_sub(3)).max(1);
    let wide = if width >= 100 { 2 } else { 1 };
    let cols = entries.len().div_ceil(room).max(wide).clamp(1, 3);
    let per = entries.len().div_ceil(cols).max(1);
    let r = centered(area, width, per as u16 + 3);
    f.render_widget(Clear, r);
    let b = block(m, " Help ", true);
    let inner = b.inner(r);
    f.render_widget(b, r);
    let [head_area, body] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(inner);
    f.render_widget(Paragraph::new(head), head_area);
    let areas = Layout::horizontal(vec![Constraint::Ratio(1, cols as u32); cols]).split(body);
    for (i, chunk) in entries.chunks(per).enumerate() {
        if let Some(a) = areas.get(i) {
            f.render_widget(Paragraph::new(chunk.to_vec()), *a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_list_shows_the_rows_around_the_selection() {
        assert_eq!(window(0, 10, 5), (0, 0));
        assert_eq!(window(4, 10, 5), (0, 4));
        assert_eq!(window(7, 10, 5), (3, 4));
        assert_eq!(window(9, 3, 5), (0, 2));
        assert_eq!(window(0, 0, 5), (0, 0));
        assert_eq!(window(3, 10, 0), (3, 0));
    }

    #[test]
    fn times_format() {
        assert_eq!(clock_text(0, 0), "00:00:00");
        assert_eq!(clock_text(3600 + 61, 3600), "02:01:01");
        assert_eq!(date_text(1_780_000_000, 0), "2026-05-28 20:26");
        assert_eq!(date_text(951_782_400, 0), "2000-02-29 00:00");
        assert_eq!(duration_text(59), "0:59");
        assert_eq!(duration_text(3725), "1:02:05");
    }
}
