//! The TUI's state: everything the screen shows, nothing else. [`super::update`] changes it,
//! [`super::view`] draws it; neither does I/O.

use std::collections::{BTreeSet, VecDeque};

use crate::engine::api::{CallId, CallMediaStats, CallState, Level};
pub use crate::store::contact_for;
use crate::store::{Contact, HistoryEntry};

use super::keymap::{KeyMap, Scope};

/// How many log lines are kept for the log tab.
pub const LOG_LINES: usize = 2000;
/// How long an ended call stays in the calls panel, showing why it ended (ms).
pub const ENDED_LINGER_MS: u64 = 4000;
/// How long a notice stays in the help bar (ms).
pub const NOTICE_MS: u64 = 6000;

/// The whole state of the phone's screen.
#[derive(Debug, Clone)]
pub struct Model {
    /// Accounts with a registrar, in config order, with their registration state.
    pub accounts: Vec<AccountView>,
    /// Names the dialer can call as, in config order; `None` stands for a direct call.
    pub dial_accounts: Vec<Option<String>>,
    /// Index into `dial_accounts`.
    pub dial_account: usize,
    /// Calls in the order they began (ended ones linger a moment).
    pub calls: Vec<CallView>,
    /// The selected call (index into `calls`).
    pub selected_call: usize,
    /// Calls in a local conference.
    pub conference: Vec<CallId>,
    /// Incoming calls whose prompt was put away (they still ring in the calls panel).
    pub dismissed: BTreeSet<CallId>,
    pub focus: Focus,
    /// The tab last focused (shown below the calls while the focus is elsewhere).
    pub shown_tab: Focus,
    pub dialer: String,
    /// The completion under the cursor (index into [`Model::completions`]).
    pub completion: Option<usize>,
    pub history: Vec<HistoryEntry>,
    pub history_filter: String,
    pub history_selected: usize,
    pub contacts: Vec<Contact>,
    pub contact_filter: String,
    pub contact_selected: usize,
    pub log: VecDeque<LogLine>,
    /// Lines scrolled up from the newest (0: follow the log).
    pub log_scroll: usize,
    pub log_search: String,
    /// Show SIP messages in the log tab.
    pub show_sip: bool,
    /// A modal question or text field.
    pub prompt: Option<Prompt>,
    /// A prompt put aside by an incoming call's prompt; it comes back when that one is gone.
    pub stashed_prompt: Option<Prompt>,
    /// The full help screen is open.
    pub help: bool,
    pub notice: Option<Notice>,
    pub devices: Devices,
    pub clock: Clock,
    pub keymap: KeyMap,
    /// Colours on (off with `NO_COLOR`; emphasis then uses bold and reverse only).
    pub color: bool,
    /// The SIP address we listen on, for the status bar.
    pub listen: Option<String>,
    /// The control socket's path, when it listens.
    pub control: Option<String>,
    /// Set when the user confirmed quitting; the runtime then ends every call and exits.
    pub quitting: bool,
}

/// Where keys go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Dialer,
    Calls,
    History,
    Contacts,
    Log,
}

impl Focus {
    /// The order Tab cycles through.
    pub const ORDER: [Focus; 5] = [
        Focus::Dialer,
        Focus::Calls,
        Focus::History,
        Focus::Contacts,
        Focus::Log,
    ];

    /// The key scope of this focus.
    pub fn scope(self) -> Scope {
        match self {
            Focus::Dialer => Scope::Global,
            Focus::Calls => Scope::Calls,
            Focus::History => Scope::History,
            Focus::Contacts => Scope::Contacts,
            Focus::Log => Scope::Log,
        }
    }

    /// The tab shown below the calls: the focused one, else History.
    pub fn is_tab(self) -> bool {
        matches!(self, Focus::History | Focus::Contacts | Focus::Log)
    }
}

/// An account's registration as the status bar shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountView {
    pub name: String,
    /// registering, registered, unregistering, unregistered, failed.
    pub state: String,
    pub reason: Option<String>,
    pub expires: Option<u32>,
}

/// One call in the calls panel.
#[derive(Debug, Clone, PartialEq)]
pub struct CallView {
    pub id: CallId,
    pub incoming: bool,
    pub peer: String,
    /// The contact's name for the peer, when there is one.
    pub name: Option<String>,
    pub account: Option<String>,
    pub state: CallState,
    /// When we first saw it (ms on the clock's monotonic scale).
    pub since_ms: u64,
    /// When it was first connected.
    pub connected_ms: Option<u64>,
    /// When it ended (it is removed [`ENDED_LINGER_MS`] later).
    pub ended_ms: Option<u64>,
    pub code: Option<u16>,
    pub reason: Option<String>,
    pub muted: bool,
    pub recording: bool,
    pub denoise: bool,
    pub stats: Option<CallMediaStats>,
    pub levels: Option<(Level, Level)>,
    /// A transfer in progress, in words ("transferring to 1003", "asked: 1003").
    pub transfer: Option<String>,
    /// The peer asked us to transfer and waits for the user's answer.
    pub transfer_asked: bool,
}

impl CallView {
    /// Talk time so far (or until it ended), seconds.
    pub fn talk_secs(&self, now_ms: u64) -> u64 {
        match self.connected_ms {
            Some(c) => self.ended_ms.unwrap_or(now_ms).saturating_sub(c) / 1000,
            None => 0,
        }
    }

    /// Time since the call began (ringing included), seconds.
    pub fn age_secs(&self, now_ms: u64) -> u64 {
        self.ended_ms
            .unwrap_or(now_ms)
            .saturating_sub(self.since_ms)
            / 1000
    }

    /// Up and talking or on hold (either side).
    pub fn is_up(&self) -> bool {
        matches!(
            self.state,
            CallState::Connected | CallState::Hold | CallState::RemoteHold
        )
    }

    /// Ended, shown until it lingers out.
    pub fn is_ended(&self) -> bool {
        self.state.is_final()
    }

    /// The peer as the user knows it: the contact's name, else the URI's user@host.
    pub fn who(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => short_uri(&self.peer),
        }
    }
}

/// `sip:1002@pbx.example.com;transport=tcp` → `1002@pbx.example.com`; a display name's
/// quotes and angle brackets go too.
pub fn short_uri(uri: &str) -> String {
    let s = match (uri.find('<'), uri.rfind('>')) {
        (Some(a), Some(b)) if a < b => &uri[a + 1..b],
        _ => uri,
    };
    let s = s
        .strip_prefix("sips:")
        .or_else(|| s.strip_prefix("sip:"))
        .or_else(|| s.strip_prefix("tel:"))
        .unwrap_or(s);
    s.split(';').next().unwrap_or(s).to_string()
}

/// A line of the log tab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Unix seconds.
    pub at: i64,
    pub kind: LogKind,
    pub text: String,
}

/// What a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    Info,
    Warn,
    Error,
    /// A SIP message we received (the first line of a block).
    SipIn,
    /// A SIP message we sent.
    SipOut,
}

impl LogKind {
    pub fn is_sip(self) -> bool {
        matches!(self, LogKind::SipIn | LogKind::SipOut)
    }
}

/// A modal prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// One line of text for a purpose.
    Text { purpose: TextPurpose, input: String },
    /// A contact's name and URI (a new one when `id` is `None`).
    Contact {
        id: Option<i64>,
        name: String,
        uri: String,
        /// 0: name, 1: uri.
        field: u8,
    },
    /// Calls are up: quit anyway?
    ConfirmQuit,
    /// Choose the capture and playback devices for the next calls.
    Devices {
        capture: usize,
        playback: usize,
        field: u8,
    },
}

/// What a text prompt is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextPurpose {
    TransferTo(CallId),
    ImportContacts,
    HistoryFilter,
    ContactFilter,
    LogSearch,
}

impl TextPurpose {
    pub fn title(self) -> &'static str {
        match self {
            TextPurpose::TransferTo(_) => "Transfer to",
            TextPurpose::ImportContacts => "Import contacts from (vCard or CSV file)",
            TextPurpose::HistoryFilter => "Filter history",
            TextPurpose::ContactFilter => "Filter contacts",
            TextPurpose::LogSearch => "Search the log",
        }
    }
}

/// A message in the help bar for a few seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub text: String,
    pub error: bool,
    pub at_ms: u64,
}

/// The audio devices: the ones in use for new calls and the ones to choose from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Devices {
    /// `None`: the system default.
    pub capture: Option<String>,
    pub playback: Option<String>,
    pub capture_list: Vec<String>,
    pub playback_list: Vec<String>,
}

/// Time as the runtime last told it (update never reads the clock).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    /// Unix seconds, UTC.
    pub unix: i64,
    /// Milliseconds on a monotonic scale (durations).
    pub ms: u64,
    /// Local time's offset from UTC, seconds (clock and history times are shown local).
    pub utc_offset: i32,
}

impl Model {
    /// An idle phone: the accounts that register (by name) and whether direct calls go
    /// through a serverless account; no calls; the focus on the dialer.
    pub fn new(registering: &[String], serverless: bool, keymap: KeyMap, color: bool) -> Model {
        let mut dial_accounts: Vec<Option<String>> =
            registering.iter().map(|n| Some(n.clone())).collect();
        if serverless || dial_accounts.is_empty() {
            dial_accounts.push(None);
        }
        Model {
            accounts: registering
                .iter()
                .map(|n| AccountView {
                    name: n.clone(),
                    state: "unregistered".into(),
                    reason: None,
                    expires: None,
                })
                .collect(),
            dial_accounts,
            dial_account: 0,
            calls: Vec::new(),
            selected_call: 0,
            conference: Vec::new(),
            dismissed: BTreeSet::new(),
            focus: Focus::Dialer,
            shown_tab: Focus::History,
            dialer: String::new(),
            completion: None,
            history: Vec::new(),
            history_filter: String::new(),
            history_selected: 0,
            contacts: Vec::new(),
            contact_filter: String::new(),
            contact_selected: 0,
            log: VecDeque::new(),
            log_scroll: 0,
            log_search: String::new(),
            show_sip: true,
            prompt: None,
            stashed_prompt: None,
            help: false,
            notice: None,
            devices: Devices::default(),
            clock: Clock::default(),
            keymap,
            color,
            listen: None,
            control: None,
            quitting: false,
        }
    }

    /// The tab shown under the calls panel.
    pub fn tab(&self) -> Focus {
        if self.focus.is_tab() {
            self.focus
        } else {
            self.shown_tab
        }
    }

    /// The selected call, if any.
    pub fn call(&self) -> Option<&CallView> {
        self.calls.get(self.selected_call)
    }

    /// The first ringing incoming call whose prompt is not put away.
    pub fn incoming_prompt(&self) -> Option<&CallView> {
        self.calls
            .iter()
            .find(|c| c.state == CallState::Incoming && !self.dismissed.contains(&c.id))
    }

    /// Calls not yet ended.
    pub fn live_calls(&self) -> impl Iterator<Item = &CallView> {
        self.calls.iter().filter(|c| !c.is_ended())
    }

    /// The account the dialer calls as.
    pub fn dial_as(&self) -> Option<&str> {
        self.dial_accounts
            .get(self.dial_account)
            .and_then(|a| a.as_deref())
    }

    /// History entries the filter lets through, newest first.
    pub fn visible_history(&self) -> Vec<&HistoryEntry> {
        let f = self.history_filter.to_lowercase();
        self.history
            .iter()
            .filter(|h| {
                f.is_empty()
                    || h.peer.to_lowercase().contains(&f)
                    || h.name
                        .as_deref()
                        .is_some_and(|n| n.to_lowercase().contains(&f))
                    || h.account
                        .as_deref()
                        .is_some_and(|a| a.to_lowercase().contains(&f))
            })
            .collect()
    }

    /// Contacts the filter lets through.
    pub fn visible_contacts(&self) -> Vec<&Contact> {
        let f = self.contact_filter.to_lowercase();
        self.contacts
            .iter()
            .filter(|c| {
                f.is_empty()
                    || c.name.to_lowercase().contains(&f)
                    || c.uri.to_lowercase().contains(&f)
            })
            .collect()
    }

    /// Log lines shown (SIP messages only when asked for).
    pub fn visible_log(&self) -> Vec<&LogLine> {
        self.log
            .iter()
            .filter(|l| self.show_sip || !l.kind.is_sip())
            .collect()
    }

    /// What the dialer's text completes to: contacts (by name or URI) and history peers that
    /// contain it, contacts first, at most 5, no repeats.
    pub fn completions(&self) -> Vec<(String, String)> {
        let q = self.dialer.trim().to_lowercase();
        if q.is_empty() {
            return Vec::new();
        }
        let mut out: Vec<(String, String)> = Vec::new();
        for c in &self.contacts {
            if c.name.to_lowercase().contains(&q) || c.uri.to_lowercase().contains(&q) {
                out.push((c.name.clone(), c.uri.clone()));
            }
        }
        for h in &self.history {
            let target = short_uri(&h.peer);
            if target.to_lowercase().contains(&q)
                && !out.iter().any(|(_, t)| short_uri(t) == target)
            {
                out.push((h.name.clone().unwrap_or_else(|| target.clone()), target));
            }
        }
        out.truncate(5);
        out
    }
}
