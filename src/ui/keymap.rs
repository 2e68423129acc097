//! Keys: every action of the phone has one, shown in the help bar and the help screen, and
//! each can be rebound in config.toml's `[keys]` table (`hangup = "ctrl-e"`).
//!
//! Actions belong to where the focus is: `e` ends a call in the calls panel and edits a
//! contact in the contacts tab. Navigation (arrows, Page Up/Down, Home/End, Enter, Esc, Tab) is
//! fixed, as are digits and `*#` in the calls panel (DTMF on the selected call).

use std::collections::BTreeMap;
use std::fmt;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Where a key acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Anywhere but in a text field.
    Global,
    /// The calls panel (and the incoming-call prompt).
    Calls,
    History,
    Contacts,
    Log,
}

/// Everything a key can do (besides navigation and typing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Help,
    Quit,
    Dial,
    NextAccount,
    Devices,
    Answer,
    Reject,
    RejectBusy,
    Hangup,
    Hold,
    Mute,
    Transfer,
    AttendedTransfer,
    Join,
    Record,
    Denoise,
    AcceptTransfer,
    RefuseTransfer,
    HistoryFilter,
    HistoryDelete,
    HistoryToContact,
    ContactNew,
    ContactEdit,
    ContactDelete,
    ContactImport,
    ContactFilter,
    LogSearch,
    LogNext,
    LogSip,
}

/// Name in config.toml, scope, default key, and the words of the help screen.
const TABLE: &[(Action, &str, Scope, &str, &str)] = &[
    (Action::Help, "help", Scope::Global, "?", "help"),
    (Action::Quit, "quit", Scope::Global, "q", "quit"),
    (Action::Dial, "dial", Scope::Global, "d", "go to the dialer"),
    (
        Action::NextAccount,
        "next_account",
        Scope::Global,
        "f2",
        "next account to call from",
    ),
    (
        Action::Devices,
        "devices",
        Scope::Global,
        "f3",
        "choose audio devices",
    ),
    (Action::Answer, "answer", Scope::Calls, "a", "answer"),
    (
        Action::Reject,
        "reject",
        Scope::Calls,
        "r",
        "reject (603 Decline)",
    ),
    (
        Action::RejectBusy,
        "reject_busy",
        Scope::Calls,
        "b",
        "reject busy (486)",
    ),
    (Action::Hangup, "hangup", Scope::Calls, "e", "end the call"),
    (Action::Hold, "hold", Scope::Calls, "h", "hold / resume"),
    (Action::Mute, "mute", Scope::Calls, "m", "mute / unmute"),
    (
        Action::Transfer,
        "transfer",
        Scope::Calls,
        "t",
        "blind transfer",
    ),
    (
        Action::AttendedTransfer,
        "attended_transfer",
        Scope::Calls,
        "T",
        "attended transfer (2 calls)",
    ),
    (
        Action::Join,
        "join",
        Scope::Calls,
        "j",
        "conference (2 calls)",
    ),
    (
        Action::Record,
        "record",
        Scope::Calls,
        "R",
        "record / stop recording",
    ),
    (
        Action::Denoise,
        "denoise",
        Scope::Calls,
        "n",
        "noise suppression on / off",
    ),
    (
        Action::AcceptTransfer,
        "accept_transfer",
        Scope::Calls,
        "y",
        "follow an asked transfer",
    ),
    (
        Action::RefuseTransfer,
        "refuse_transfer",
        Scope::Calls,
        "N",
        "refuse an asked transfer",
    ),
    (
        Action::HistoryFilter,
        "history_filter",
        Scope::History,
        "/",
        "filter",
    ),
    (
        Action::HistoryDelete,
        "history_delete",
        Scope::History,
        "x",
        "delete the entry",
    ),
    (
        Action::HistoryToContact,
        "history_to_contact",
        Scope::History,
        "c",
        "add to contacts",
    ),
    (
        Action::ContactNew,
        "contact_new",
        Scope::Contacts,
        "n",
        "new contact",
    ),
    (
        Action::ContactEdit,
        "contact_edit",
        Scope::Contacts,
        "e",
        "edit",
    ),
    (
        Action::ContactDelete,
        "contact_delete",
        Scope::Contacts,
        "x",
        "delete",
    ),
    (
        Action::ContactImport,
        "contact_import",
        Scope::Contacts,
        "i",
        "import vCard / CSV",
    ),
    (
        Action::ContactFilter,
        "contact_filter",
        Scope::Contacts,
        "/",
        "filter",
    ),
    (Action::LogSearch, "log_search", Scope::Log, "/", "search"),
    (Action::LogNext, "log_next", Scope::Log, "n", "next match"),
    (
        Action::LogSip,
        "log_sip",
        Scope::Log,
        "s",
        "show / hide the SIP trace",
    ),
];

impl Action {
    /// Its name in config.toml's `[keys]`.
    pub fn name(self) -> &'static str {
        entry(self).1
    }

    /// Where its key acts.
    pub fn scope(self) -> Scope {
        entry(self).2
    }

    /// What it does, for the help screen.
    pub fn describe(self) -> &'static str {
        entry(self).4
    }

    /// Every action, in help order.
    pub fn all() -> impl Iterator<Item = Action> {
        TABLE.iter().map(|e| e.0)
    }

    /// The action a config name means.
    pub fn from_name(name: &str) -> Option<Action> {
        TABLE.iter().find(|e| e.1 == name).map(|e| e.0)
    }
}

fn entry(a: Action) -> &'static (Action, &'static str, Scope, &'static str, &'static str) {
    TABLE
        .iter()
        .find(|e| e.0 == a)
        .expect("every action is in the table")
}

/// One key with its modifiers (Shift is part of the character: `T`, `?`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub code: KeyName,
    pub ctrl: bool,
    pub alt: bool,
}

/// The keys we name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyName {
    Char(char),
    F(u8),
    Enter,
    Esc,
    Tab,
    BackTab,
    Backspace,
    Delete,
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Home,
    End,
}

impl Key {
    /// The key of a terminal event (`None` for keys we never bind).
    pub fn from_event(ev: &KeyEvent) -> Option<Key> {
        let code = match ev.code {
            KeyCode::Char(c) => KeyName::Char(c),
            KeyCode::F(n) => KeyName::F(n),
            KeyCode::Enter => KeyName::Enter,
            KeyCode::Esc => KeyName::Esc,
            KeyCode::Tab => KeyName::Tab,
            KeyCode::BackTab => KeyName::BackTab,
            KeyCode::Backspace => KeyName::Backspace,
            KeyCode::Delete => KeyName::Delete,
            KeyCode::Up => KeyName::Up,
            KeyCode::Down => KeyName::Down,
            KeyCode::Left => KeyName::Left,
            KeyCode::Right => KeyName::Right,
            KeyCode::PageUp => KeyName::PageUp,
            KeyCode::PageDown => KeyName::PageDown,
            KeyCode::Home => KeyName::Home,
            KeyCode::End => KeyName::End,
            _ => return None,
        };
        Some(Key {
            code,
            ctrl: ev.modifiers.contains(KeyModifiers::CONTROL),
            alt: ev.modifiers.contains(KeyModifiers::ALT),
        })
    }

    /// A plain character key.
    pub const fn char(c: char) -> Key {
        Key {
            code: KeyName::Char(c),
            ctrl: false,
            alt: false,
        }
    }
}

impl std::str::FromStr for Key {
    type Err = String;

    /// `a`, `T`, `?`, `ctrl-e`, `alt-x`, `f2`, `enter`, `esc`, `tab`, `space`, `delete`, ...
    fn from_str(s: &str) -> Result<Key, String> {
        let mut ctrl = false;
        let mut alt = false;
        let mut rest = s;
        loop {
            let lower = rest.to_ascii_lowercase();
            if rest.chars().count() > 1
                && (lower.starts_with("ctrl-") || lower.starts_with("ctrl+"))
            {
                ctrl = true;
                rest = &rest[5..];
            } else if rest.chars().count() > 1
                && (lower.starts_with("alt-") || lower.starts_with("alt+"))
            {
                alt = true;
                rest = &rest[4..];
            } else {
                break;
            }
        }
        let mut chars = rest.chars();
        let code = match (chars.next(), chars.next()) {
            (Some(c), None) if !c.is_control() => KeyName::Char(c),
            _ => match rest.to_ascii_lowercase().as_str() {
                "enter" | "return" => KeyName::Enter,
                "esc" | "escape" => KeyName::Esc,
                "tab" => KeyName::Tab,
                "backtab" | "shift-tab" => KeyName::BackTab,
                "space" => KeyName::Char(' '),
                "backspace" => KeyName::Backspace,
                "delete" | "del" => KeyName::Delete,
                "up" => KeyName::Up,
                "down" => KeyName::Down,
                "left" => KeyName::Left,
                "right" => KeyName::Right,
                "pageup" | "pgup" => KeyName::PageUp,
                "pagedown" | "pgdn" => KeyName::PageDown,
                "home" => KeyName::Home,
                "end" => KeyName::End,
                f if f.starts_with('f') => match f[1..].parse::<u8>() {
                    Ok(n @ 1..=12) => KeyName::F(n),
                    _ => return Err(format!("unknown key {s:?}")),
                },
                _ => return Err(format!("unknown key {s:?}")),
            },
        };
        Ok(Key { code, ctrl, alt })
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ctrl {
            f.write_str("Ctrl-")?;
        }
        if self.alt {
            f.write_str("Alt-")?;
        }
        match self.code {
            KeyName::Char(' ') => f.write_str("Space"),
            KeyName::Char(c) => write!(f, "{c}"),
            KeyName::F(n) => write!(f, "F{n}"),
            KeyName::Enter => f.write_str("Enter"),
            KeyName::Esc => f.write_str("Esc"),
            KeyName::Tab => f.write_str("Tab"),
            KeyName::BackTab => f.write_str("Shift-Tab"),
            KeyName::Backspace => f.write_str("Backspace"),
            KeyName::Delete => f.write_str("Del"),
            KeyName::Up => f.write_str("Up"),
            KeyName::Down => f.write_str("Down"),
            KeyName::Left => f.write_str("Left"),
            KeyName::Right => f.write_str("Right"),
            KeyName::PageUp => f.write_str("PgUp"),
            KeyName::PageDown => f.write_str("PgDn"),
            KeyName::Home => f.write_str("Home"),
            KeyName::End => f.write_str("End"),
        }
    }
}

/// The keys of the actions: the defaults with the config's `[keys]` over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMap {
    keys: BTreeMap<Action, Key>,
}

impl Default for KeyMap {
    fn default() -> KeyMap {
        KeyMap {
            keys: TABLE
                .iter()
                .map(|e| (e.0, e.3.parse().expect("default keys parse")))
                .collect(),
        }
    }
}

impl KeyMap {
    /// The defaults with `overrides` (action name → key) applied. Unknown actions, bad keys
    /// and a key given to two actions of the same scope (or to one that clashes with a global
    /// key) are errors that name them.
    pub fn with_overrides(overrides: &[(String, String)]) -> Result<KeyMap, String> {
        let mut map = KeyMap::default();
        for (name, key) in overrides {
            let action = Action::from_name(name).ok_or_else(|| {
                format!(
                    "[keys]: unknown action {name:?} (one of: {})",
                    Action::all()
                        .map(Action::name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            let key: Key = key.parse().map_err(|e| format!("[keys] {name}: {e}"))?;
            if is_reserved(key) {
                return Err(format!(
                    "[keys] {name}: {key} is fixed (navigation, digits and *# for DTMF, F1, Ctrl-c)"
                ));
            }
            map.keys.insert(action, key);
        }
        for a in Action::all() {
            for b in Action::all().filter(|b| *b > a) {
                let shares = a.scope() == b.scope()
                    || a.scope() == Scope::Global
                    || b.scope() == Scope::Global;
                if shares && map.keys[&a] == map.keys[&b] {
                    return Err(format!(
                        "[keys]: {} is bound to both {} and {}",
                        map.keys[&a],
                        a.name(),
                        b.name()
                    ));
                }
            }
        }
        Ok(map)
    }

    /// The key of an action.
    pub fn key(&self, action: Action) -> Key {
        self.keys[&action]
    }

    /// The action a key means in `scope` (its own actions first, then the global ones).
    pub fn action(&self, scope: Scope, key: Key) -> Option<Action> {
        let find = |s: Scope| {
            self.keys
                .iter()
                .find(|(a, k)| a.scope() == s && **k == key)
                .map(|(a, _)| *a)
        };
        find(scope).or_else(|| find(Scope::Global))
    }
}

/// Keys no action may take: navigation, Enter/Esc/Tab, digits and `*#` (DTMF), F1 (help)
/// and Ctrl-c (quit).
fn is_reserved(key: Key) -> bool {
    if key.alt {
        return false;
    }
    if key.ctrl {
        // Ctrl-c quits everywhere.
        return key.code == KeyName::Char('c');
    }
    match key.code {
        KeyName::Char(c) => c.is_ascii_digit() || matches!(c, '*' | '#'),
        // F1 opens the help everywhere.
        KeyName::F(n) => n == 1,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_print() {
        for (s, shown) in [
            ("a", "a"),
            ("T", "T"),
            ("?", "?"),
            ("ctrl-e", "Ctrl-e"),
            ("Alt+x", "Alt-x"),
            ("f2", "F2"),
            ("space", "Space"),
            ("Delete", "Del"),
        ] {
            let k: Key = s.parse().unwrap();
            assert_eq!(k.to_string(), shown, "{s}");
        }
        assert!("f13".parse::<Key>().is_err());
        assert!("ctrl-".parse::<Key>().is_err());
        assert!("hyper-x".parse::<Key>().is_err());
    }

    #[test]
    fn defaults_have_no_clash_and_scopes_resolve() {
        let map = KeyMap::with_overrides(&[]).unwrap();
        assert_eq!(
            map.action(Scope::Calls, Key::char('e')),
            Some(Action::Hangup)
        );
        assert_eq!(
            map.action(Scope::Contacts, Key::char('e')),
            Some(Action::ContactEdit)
        );
        assert_eq!(
            map.action(Scope::History, Key::char('?')),
            Some(Action::Help)
        );
        assert_eq!(map.action(Scope::Log, Key::char('e')), None);
    }

    #[test]
    fn overrides_apply_and_clashes_are_named() {
        let o = |a: &str, k: &str| vec![(a.to_string(), k.to_string())];
        let map = KeyMap::with_overrides(&o("hangup", "ctrl-e")).unwrap();
        let ctrl_e: Key = "ctrl-e".parse().unwrap();
        assert_eq!(map.action(Scope::Calls, ctrl_e), Some(Action::Hangup));
        assert_eq!(map.action(Scope::Calls, Key::char('e')), None);

        let err = KeyMap::with_overrides(&o("hangup", "h")).unwrap_err();
        assert!(err.contains("hangup") && err.contains("hold"), "{err}");
        let err = KeyMap::with_overrides(&o("hangup", "q")).unwrap_err();
        assert!(err.contains("quit"), "{err}");
        let err = KeyMap::with_overrides(&o("hang_up", "x")).unwrap_err();
        assert!(err.contains("unknown action \"hang_up\""), "{err}");
        let err = KeyMap::with_overrides(&o("mute", "5")).unwrap_err();
        assert!(err.contains("fixed"), "{err}");
        // The same key in two scopes that never meet is fine.
        assert!(KeyMap::with_overrides(&o("contact_delete", "e")).is_err());
        assert!(KeyMap::with_overrides(&o("log_sip", "e")).is_ok());
    }

    proptest::proptest! {
        /// Whatever a config says, parsing a key gives a key or an error (never a panic), and
        /// a key prints as text that parses back to the same key (the help shows what works).
        #[test]
        fn any_key_text_parses_or_errs(text in "\\PC{0,12}") {
            if let Ok(k) = text.parse::<Key>() {
                proptest::prop_assert_eq!(k.to_string().parse::<Key>(), Ok(k));
            }
        }
    }
}
