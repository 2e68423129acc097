//! The walker from toml's spanned document to [`Config`]: type checks, unknown keys and
//! validation, each problem with its position. Messages are built only from our own text,
//! key names and positions, never from values in the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use toml::de::{DeString, DeTable, DeValue};
use toml::Spanned;

use super::error::{ConfigError, ConfigWarning, LineIndex, Location, Problem};
use super::{
    AccountConfig, AnswerAudio, AnswerPolicy, Audio, AutoAnswer, CodecName, Config, DtmfMode,
    General, Secret, Transport,
};

type Value<'i> = Spanned<DeValue<'i>>;
type Key<'i> = Spanned<DeString<'i>>;

const ROOT_KEYS: &[&str] = &["general", "audio", "account", "keys"];
const GENERAL_KEYS: &[&str] = &[
    "listen",
    "rtp_port_min",
    "rtp_port_max",
    "user_agent",
    "log_file",
    "sip_trace",
    "dns_server",
    "max_calls",
];
const EXPECT_MAX_CALLS: &str = "a number of calls from 1 to 32, e.g. 4";
const AUDIO_KEYS: &[&str] = &[
    "capture_device",
    "playback_device",
    "jitter_buffer_max_ms",
    "record_dir",
    "record_channels",
    "hold_music",
];
const EXPECT_RECORD_DIR: &str = "a directory path such as \"/home/me/calls\"";
const EXPECT_RECORD_CHANNELS: &str = "\"mixed\" or \"stereo\"";
const EXPECT_JB_MAX: &str = "milliseconds from 40 to 1000, e.g. 240";
const ACCOUNT_KEYS: &[&str] = &[
    "name",
    "enabled",
    "display_name",
    "user",
    "domain",
    "registrar",
    "expires",
    "transport",
    "outbound_proxy",
    "auth_user",
    "tls_ca_file",
    "ws_path",
    "keepalive",
    "password",
    "password_cmd",
    "codecs",
    "dtmf_mode",
    "noise_suppression",
    "echo_cancellation",
    "accept_transfer",
    "dnd",
    "auto_answer",
];
const AUTO_ANSWER_KEYS: &[&str] = &["delay", "play", "echo", "record", "hangup_after", "reject"];

const EXPECT_BOOL: &str = "true or false";
const EXPECT_EXPIRES: &str = "seconds from 10 to 86400, e.g. 600";
const EXPECT_PASSWORD_CMD: &str =
    "a shell command that prints the password, e.g. \"pass show sip/work\"";
const EXPECT_DNS_SERVER: &str = "a DNS server's socket address such as \"127.0.0.1:53\"";
const EXPECT_LISTEN: &str = "a socket address such as \"0.0.0.0:5060\" or \"[::]:5060\"";
const EXPECT_RTP_MIN: &str = "an even port number from 2 to 65534, e.g. 16384";
const EXPECT_RTP_MAX: &str = "a port number from 1 to 65535, e.g. 32767";
const EXPECT_USER_AGENT: &str = "a non-empty string without control characters, e.g. \"termphone\"";
const EXPECT_LOG_FILE: &str = "a file path, e.g. \"/tmp/termphone.log\"";
const EXPECT_DEVICE: &str = "a device name as `termphone devices` lists it";
const EXPECT_NAME: &str = "a non-empty account name without control characters, e.g. \"work\"";
const EXPECT_DISPLAY_NAME: &str = "a display name without control characters, e.g. \"Alice\"";
const EXPECT_USER: &str = "a SIP user name such as \"alice\" or \"1001\" (letters, digits and - _ . ! ~ * ' ( ) & = + $ , ; ? / or %XX)";
const EXPECT_DOMAIN: &str =
    "a host name or IP address with an optional port, e.g. \"sip.example.com\", without \"sip:\" or a user part";
const EXPECT_REGISTRAR: &str = "a SIP URI such as \"sip:sip.example.com\"";
const EXPECT_TRANSPORT: &str = "one of \"udp\", \"tcp\", \"tls\", \"ws\", \"wss\"";
const EXPECT_PROXY: &str = "a SIP URI such as \"sip:proxy.example.com:5060\"";
const EXPECT_AUTH_USER: &str =
    "a user name for digest auth without control characters, e.g. \"1001\"";
const EXPECT_CA_FILE: &str =
    "a path to a PEM file of CA certificates, e.g. \"/etc/ssl/my-pbx-ca.pem\"";
const EXPECT_WS_PATH: &str = "an HTTP path starting with \"/\", e.g. \"/ws\"";
const EXPECT_KEEPALIVE: &str = "seconds from 0 (off) to 3600, e.g. 30";
const EXPECT_PASSWORD: &str = "a string";
const EXPECT_CODECS: &str =
    "a list of codec names from opus, G722, PCMU, PCMA, e.g. [\"opus\", \"G722\", \"PCMU\", \"PCMA\"]";
const EXPECT_CODEC: &str = "a codec name: opus, G722, PCMU or PCMA";
const EXPECT_DTMF: &str = "\"rfc4733\" or \"info\"";
const EXPECT_AUTO_ANSWER: &str = "\"off\", \"answer\", \"echo\", \"reject\" or a table such as { delay = 2, play = \"greeting.wav\", record = \"/var/tmp/calls\", hangup_after = 60 } or { reject = 486 }";
const EXPECT_AA_DELAY: &str = "seconds to ring first, from 0 to 600, e.g. 2";
const EXPECT_AA_HANGUP: &str = "seconds from 1 to 86400, e.g. 60";
const EXPECT_AA_REJECT: &str = "a SIP status code from 400 to 699, e.g. 486 or 603";
const EXPECT_AA_FILE: &str = "a WAV file path, e.g. \"/usr/share/termphone/greeting.wav\"";
const EXPECT_AA_DIR: &str = "a directory path, e.g. \"/var/tmp/calls\"";

/// Parse and validate config text.
pub(crate) fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    let mut ctx = Ctx {
        idx: LineIndex::new(text),
        origin,
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => {
            let at = e.span().map_or(0, |s| s.start);
            let message = syntax_message(e.message(), e.span(), text, ctx.idx.split_line(at));
            ctx.problems.push(Problem {
                location: ctx.idx.location(at),
                key: None,
                message,
            });
            return Err(ConfigError::invalid(origin, ctx.problems));
        }
    };
    let config = read_root(&mut ctx, root.get_ref(), root.span().start);
    if ctx.problems.is_empty() {
        Ok(config)
    } else {
        ctx.problems.sort_by_key(|p| p.location);
        Err(ConfigError::invalid(origin, ctx.problems))
    }
}

/// The parser's description of a syntax error. toml's messages are fixed text plus the
/// expected tokens; as a second guard, a message sharing a word with the offending line is
/// replaced by a generic one, so no value can ever be echoed.
fn syntax_message(
    message: &str,
    span: Option<std::ops::Range<usize>>,
    text: &str,
    (before, after): (&str, &str),
) -> String {
    let after = after.trim_start();
    if before.trim_end().ends_with('=') && (after.is_empty() || after.starts_with('#')) {
        return "invalid TOML: missing value; expected a value after =".to_string();
    }
    let echoes_line = [before, after]
        .iter()
        .flat_map(|part| part.split(|c: char| !c.is_alphanumeric()))
        .filter(|w| w.chars().count() >= 3)
        .any(|w| message.contains(w));
    let mut out = if echoes_line {
        "invalid TOML syntax".to_string()
    } else {
        format!("invalid TOML: {message}")
    };
    // Name the key of a duplicate key error (a key, never a value).
    if message == "duplicate key" {
        if let Some(key) = span.and_then(|s| text.get(s)) {
            if !key.is_empty() && key.chars().all(|c| !c.is_control()) {
                out.push_str(&format!(" {key}; expected each key once per table"));
            }
        }
    }
    out
}

struct Ctx<'s> {
    idx: LineIndex<'s>,
    origin: &'s Path,
    problems: Vec<Problem>,
    warnings: Vec<ConfigWarning>,
}

impl Ctx<'_> {
    fn error(&mut self, at: usize, key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            location: self.idx.location(at),
            key: (!key.is_empty()).then(|| key.to_string()),
            message: message.into(),
        });
    }

    fn warn(&mut self, at: usize, key: &str, message: impl Into<String>) {
        self.warnings.push(ConfigWarning {
            path: self.origin.to_path_buf(),
            location: self.idx.location(at),
            key: key.to_string(),
            message: message.into(),
        });
    }

    fn location(&self, at: usize) -> Location {
        self.idx.location(at)
    }

    /// Report a value of the wrong type.
    fn wrong_type(&mut self, value: &Value<'_>, key: &str, expected: &str) {
        let found = found(value.get_ref());
        self.error(
            value.span().start,
            key,
            format!("expected {expected}, found {found}"),
        );
    }

    /// Report a value of the right type whose content is not acceptable.
    fn invalid(&mut self, value: &Value<'_>, key: &str, what: &str, expected: &str) {
        self.error(
            value.span().start,
            key,
            format!("{what}; expected {expected}"),
        );
    }
}

/// "an integer", "a string", ...: the kind of a value, never the value.
fn found(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date/time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// A key as written in a path: bare when it can be, quoted otherwise.
fn key_text(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        format!("\"{}\"", key.escape_debug())
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key_text(key)
    } else {
        format!("{path}.{}", key_text(key))
    }
}

/// A table being read: unknown keys are reported when it is opened.
struct Table<'t, 'i> {
    entries: Vec<(&'t Key<'i>, &'t Value<'i>)>,
    path: String,
    /// Where the table starts (its header), for "missing key" errors.
    at: usize,
}

impl<'t, 'i> Table<'t, 'i> {
    fn open(
        ctx: &mut Ctx<'_>,
        table: &'t DeTable<'i>,
        at: usize,
        path: String,
        allowed: &[&str],
    ) -> Self {
        let mut entries: Vec<_> = table.iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        for (key, _) in &entries {
            if !allowed.contains(&key.get_ref().as_ref()) {
                let name = key_text(key.get_ref());
                let where_ = if path.is_empty() {
                    "at the top level".to_string()
                } else {
                    format!("in {path}")
                };
                ctx.error(
                    key.span().start,
                    &join(&path, key.get_ref()),
                    format!(
                        "unknown key {name} {where_}; expected one of: {}",
                        allowed.join(", ")
                    ),
                );
            }
        }
        Table { entries, path, at }
    }

    /// Open `value` as a table, or report its type.
    fn open_value(
        ctx: &mut Ctx<'_>,
        value: &'t Value<'i>,
        path: String,
        allowed: &[&str],
        expected: &str,
    ) -> Option<Self> {
        match value.get_ref() {
            DeValue::Table(t) => Some(Table::open(ctx, t, value.span().start, path, allowed)),
            _ => {
                ctx.wrong_type(value, &path, expected);
                None
            }
        }
    }

    fn get(&self, key: &str) -> Option<&'t Value<'i>> {
        self.entries
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(_, v)| *v)
    }

    fn path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    fn string(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        expected: &str,
    ) -> Option<(&'t str, &'t Value<'i>)> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::String(s) => Some((s.as_ref(), value)),
            _ => {
                ctx.wrong_type(value, &self.path(key), expected);
                None
            }
        }
    }

    fn boolean(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<bool> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                ctx.wrong_type(value, &self.path(key), EXPECT_BOOL);
                None
            }
        }
    }

    /// An integer in `min..=max`.
    fn integer_in(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        min: u32,
        max: u32,
        expected: &str,
    ) -> Option<u32> {
        let value = self.get(key)?;
        let DeValue::Integer(i) = value.get_ref() else {
            ctx.wrong_type(value, &self.path(key), expected);
            return None;
        };
        let n = i128::from_str_radix(i.as_str(), i.radix())
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (min..=max).contains(n));
        if n.is_none() {
            ctx.invalid(value, &self.path(key), "out of range", expected);
        }
        n
    }

    /// A port number in `min..=65535`.
    fn port(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        min: u16,
        expected: &str,
    ) -> Option<(u16, &'t Value<'i>)> {
        let value = self.get(key)?;
        let DeValue::Integer(i) = value.get_ref() else {
            ctx.wrong_type(value, &self.path(key), expected);
            return None;
        };
        match i128::from_str_radix(i.as_str(), i.radix())
            .ok()
            .and_then(|n| u16::try_from(n).ok())
            .filter(|&n| n >= min)
        {
            Some(n) => Some((n, value)),
            None => {
                ctx.invalid(value, &self.path(key), "port number out of range", expected);
                None
            }
        }
    }

    /// A string checked by `ok`; empty strings are refused.
    fn checked_string(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        expected: &str,
        ok: fn(&str) -> bool,
    ) -> Option<String> {
        let (s, value) = self.string(ctx, key, expected)?;
        if s.is_empty() {
            ctx.invalid(value, &self.path(key), "empty value", expected);
            None
        } else if !ok(s) {
            ctx.invalid(value, &self.path(key), "invalid value", expected);
            None
        } else {
            Some(s.to_string())
        }
    }
}

fn no_control(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

fn any_string(_: &str) -> bool {
    true
}

/// RFC 3261 `user`: unreserved / escaped / user-unreserved.
fn sip_user(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
            continue;
        }
        if !(b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b)) {
            return false;
        }
        i += 1;
    }
    true
}

/// `host[:port]`: a domain name, an IPv4 address or a bracketed IPv6 address.
fn host_port(s: &str) -> bool {
    // Split off ":port" (for a bracketed IPv6 address, only after the "]").
    let (host, port) = match s.rfind(':') {
        Some(i) if !s.starts_with('[') || s[..i].ends_with(']') => (&s[..i], Some(&s[i + 1..])),
        _ => (s, None),
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            // A fully qualified name may end with a dot.
            let name = host.strip_suffix('.').unwrap_or(host);
            !name.is_empty()
                && name.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        }
    };
    port_ok && host_ok
}

/// `sip:` or `sips:` followed by something without spaces or control characters.
fn sip_uri(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("sip:")
        .or_else(|| lower.strip_prefix("sips:"));
    rest.is_some_and(|r| !r.is_empty() && !r.chars().any(|c| c.is_whitespace() || c.is_control()))
}

fn read_root(ctx: &mut Ctx<'_>, root: &DeTable<'_>, at: usize) -> Config {
    let root = Table::open(ctx, root, at, String::new(), ROOT_KEYS);
    let general = match root.get("general") {
        Some(v) => read_general(ctx, v),
        None => General::default(),
    };
    let audio = match root.get("audio") {
        Some(v) => read_audio(ctx, v),
        None => Audio::default(),
    };
    let keys = match root.get("keys") {
        Some(v) => read_keys(ctx, v),
        None => Vec::new(),
    };
    let mut accounts = match root.get("account") {
        Some(v) => read_accounts(ctx, v),
        None => Vec::new(),
    };
    if accounts.is_empty() {
        accounts.push(AccountConfig::local());
    }
    Config {
        general,
        audio,
        accounts,
        keys,
        origin: Some(ctx.origin.to_path_buf()),
        warnings: std::mem::take(&mut ctx.warnings),
    }
}

fn read_general(ctx: &mut Ctx<'_>, value: &Value<'_>) -> General {
    let mut g = General::default();
    let Some(t) = Table::open_value(
        ctx,
        value,
        "general".into(),
        GENERAL_KEYS,
        "a table: [general]",
    ) else {
        return g;
    };
    if let Some((s, v)) = t.string(ctx, "listen", EXPECT_LISTEN) {
        match s.parse::<SocketAddr>() {
            Ok(addr) => g.listen = Some(addr),
            Err(_) => ctx.invalid(
                v,
                &t.path("listen"),
                "invalid socket address",
                EXPECT_LISTEN,
            ),
        }
    }
    if let Some(n) = t.integer_in(ctx, "max_calls", 1, 32, EXPECT_MAX_CALLS) {
        g.max_calls = n;
    }
    if let Some((s, v)) = t.string(ctx, "dns_server", EXPECT_DNS_SERVER) {
        match s.parse::<SocketAddr>() {
            Ok(addr) => g.dns_server = Some(addr),
            Err(_) => ctx.invalid(
                v,
                &t.path("dns_server"),
                "invalid socket address",
                EXPECT_DNS_SERVER,
            ),
        }
    }
    let min = t.port(ctx, "rtp_port_min", 1, EXPECT_RTP_MIN);
    let max = t.port(ctx, "rtp_port_max", 1, EXPECT_RTP_MAX);
    let mut ports_ok = t.get("rtp_port_min").is_none() || min.is_some();
    ports_ok &= t.get("rtp_port_max").is_none() || max.is_some();
    if let Some((n, v)) = min {
        if n % 2 != 0 {
            ctx.invalid(
                v,
                &t.path("rtp_port_min"),
                "odd port number (RTP uses even ports)",
                EXPECT_RTP_MIN,
            );
            ports_ok = false;
        } else {
            g.rtp_port_min = n;
        }
    }
    if let Some((n, _)) = max {
        g.rtp_port_max = n;
    }
    if ports_ok && g.rtp_port_min > g.rtp_port_max {
        match (min, max) {
            (Some((_, min_v)), Some((_, max_v))) => {
                let min_at = ctx.location(min_v.span().start);
                ctx.error(
                    max_v.span().start,
                    &t.path("rtp_port_max"),
                    format!("less than rtp_port_min (at {min_at}); expected a port number at least rtp_port_min"),
                );
            }
            (None, Some((_, max_v))) => ctx.error(
                max_v.span().start,
                &t.path("rtp_port_max"),
                format!(
                    "less than the default rtp_port_min {}; expected a port number at least rtp_port_min (set rtp_port_min too)",
                    General::DEFAULT_RTP_PORT_MIN
                ),
            ),
            (Some((_, min_v)), None) => ctx.error(
                min_v.span().start,
                &t.path("rtp_port_min"),
                format!(
                    "greater than the default rtp_port_max {}; expected a port number at most rtp_port_max (set rtp_port_max too)",
                    General::DEFAULT_RTP_PORT_MAX
                ),
            ),
            (None, None) => {}
        }
    }
    if let Some(s) = t.checked_string(ctx, "user_agent", EXPECT_USER_AGENT, no_control) {
        g.user_agent = s;
    }
    if let Some(s) = t.checked_string(ctx, "log_file", EXPECT_LOG_FILE, |s| !s.contains('\0')) {
        g.log_file = Some(PathBuf::from(s));
    }
    if let Some(b) = t.boolean(ctx, "sip_trace") {
        g.sip_trace = b;
    }
    g
}

/// `[keys]`: action name = key, for the TUI (`hangup = "ctrl-e"`).
fn read_keys(ctx: &mut Ctx<'_>, value: &Value<'_>) -> Vec<(String, String)> {
    const EXPECT_KEY: &str = "a key: a character (\"a\", \"T\", \"?\"), \"f1\"..\"f12\", \"ctrl-x\", \"alt-x\", \"space\", \"delete\"";
    let actions: Vec<&str> = crate::ui::keymap::Action::all().map(|a| a.name()).collect();
    let Some(t) = Table::open_value(ctx, value, "keys".into(), &actions, "a table: [keys]") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for name in actions {
        if let Some((s, v)) = t.string(ctx, name, EXPECT_KEY) {
            match s.parse::<crate::ui::keymap::Key>() {
                Ok(_) => out.push((name.to_string(), s.to_string())),
                Err(_) => ctx.invalid(v, &t.path(name), "unknown key", EXPECT_KEY),
            }
        }
    }
    out
}

fn read_audio(ctx: &mut Ctx<'_>, value: &Value<'_>) -> Audio {
    let mut a = Audio::default();
    let Some(t) = Table::open_value(ctx, value, "audio".into(), AUDIO_KEYS, "a table: [audio]")
    else {
        return a;
    };
    a.capture_device = t.checked_string(ctx, "capture_device", EXPECT_DEVICE, any_string);
    a.playback_device = t.checked_string(ctx, "playback_device", EXPECT_DEVICE, any_string);
    a.jitter_buffer_max_ms = t.integer_in(ctx, "jitter_buffer_max_ms", 40, 1000, EXPECT_JB_MAX);
    if let Some(s) = t.checked_string(ctx, "record_dir", EXPECT_RECORD_DIR, |s| !s.contains('\0')) {
        a.record_dir = Some(PathBuf::from(s));
    }
    if let Some(s) = t.checked_string(ctx, "hold_music", "a WAV file's path", |s| {
        !s.contains('\0')
    }) {
        a.hold_music = Some(PathBuf::from(s));
    }
    if let Some((s, v)) = t.string(ctx, "record_channels", EXPECT_RECORD_CHANNELS) {
        match s.to_ascii_lowercase().as_str() {
            "mixed" | "mono" => a.record_stereo = false,
            "stereo" => a.record_stereo = true,
            _ => ctx.invalid(
                v,
                &t.path("record_channels"),
                "unknown channel layout",
                EXPECT_RECORD_CHANNELS,
            ),
        }
    }
    a
}

fn read_accounts(ctx: &mut Ctx<'_>, value: &Value<'_>) -> Vec<AccountConfig> {
    const EXPECT: &str = "a list of tables: write [[account]] (two brackets) before each account";
    let DeValue::Array(items) = value.get_ref() else {
        ctx.wrong_type(value, "account", EXPECT);
        return Vec::new();
    };
    let mut accounts = Vec::new();
    // (name, where its value starts) of each account read so far.
    let mut names: Vec<(String, usize)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("account[{i}]");
        let Some(t) = Table::open_value(ctx, item, path, ACCOUNT_KEYS, EXPECT) else {
            continue;
        };
        if let Some(account) = read_account(ctx, &t) {
            if let Some(v) = t.get("name") {
                let at = v.span().start;
                if let Some((_, first)) = names.iter().find(|(n, _)| *n == account.name) {
                    let first = ctx.location(*first);
                    ctx.error(
                        at,
                        &t.path("name"),
                        format!("duplicate account name (also used at {first}); expected a name unique among the accounts"),
                    );
                    continue;
                }
                names.push((account.name.clone(), at));
            }
            accounts.push(account);
        }
    }
    accounts
}

fn read_account(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<AccountConfig> {
    let mut a = AccountConfig::local();
    let before = ctx.problems.len();
    for (key, expected) in [("name", EXPECT_NAME), ("user", EXPECT_USER)] {
        if t.get(key).is_none() {
            ctx.error(
                t.at,
                &t.path,
                format!("missing key {key}; expected {key} = {expected}"),
            );
        }
    }
    if let Some(s) = t.checked_string(ctx, "name", EXPECT_NAME, |s| {
        no_control(s) && !s.trim().is_empty()
    }) {
        a.name = s;
    }
    if let Some(b) = t.boolean(ctx, "enabled") {
        a.enabled = b;
    }
    if let Some((s, v)) = t.string(ctx, "display_name", EXPECT_DISPLAY_NAME) {
        if !no_control(s) {
            let key = t.path("display_name");
            ctx.invalid(v, &key, "control characters", EXPECT_DISPLAY_NAME);
        } else if !s.is_empty() {
            a.display_name = Some(s.to_string());
        }
    }
    if let Some(s) = t.checked_string(ctx, "user", EXPECT_USER, sip_user) {
        a.user = s;
    }
    a.domain = t.checked_string(ctx, "domain", EXPECT_DOMAIN, host_port);
    a.registrar = t.checked_string(ctx, "registrar", EXPECT_REGISTRAR, sip_uri);
    if let Some(e) = t.integer_in(ctx, "expires", 10, 86_400, EXPECT_EXPIRES) {
        a.expires = e;
    }
    if let Some((s, v)) = t.string(ctx, "transport", EXPECT_TRANSPORT) {
        match Transport::from_name(s) {
            Some(tr) => a.transport = tr,
            None => ctx.invalid(
                v,
                &t.path("transport"),
                "unknown transport",
                EXPECT_TRANSPORT,
            ),
        }
    }
    a.outbound_proxy = t.checked_string(ctx, "outbound_proxy", EXPECT_PROXY, sip_uri);
    a.auth_user = t.checked_string(ctx, "auth_user", EXPECT_AUTH_USER, |s| {
        no_control(s) && !s.trim().is_empty()
    });
    a.tls_ca_file = t
        .checked_string(ctx, "tls_ca_file", EXPECT_CA_FILE, no_control)
        .map(PathBuf::from);
    if let Some(p) = t.checked_string(ctx, "ws_path", EXPECT_WS_PATH, |s| {
        s.starts_with('/') && !s.chars().any(|c| c.is_whitespace() || c.is_control())
    }) {
        a.ws_path = p;
    }
    a.keepalive = t.integer_in(ctx, "keepalive", 0, 3600, EXPECT_KEEPALIVE);
    a.password_cmd = t.checked_string(ctx, "password_cmd", EXPECT_PASSWORD_CMD, |_| true);
    if let Some(v) = t.get("password") {
        let key = t.path("password");
        match v.get_ref() {
            DeValue::String(s) => {
                a.password = Some(Secret::new(s.as_ref()));
                ctx.warn(
                    v.span().start,
                    &key,
                    "password stored in the config file: anyone who can read the file can read it; \
                     keep the file private (chmod 600) until passwords move to the OS keyring",
                );
            }
            // Say only the kind of the value: nothing of a password is ever printed.
            _ => ctx.wrong_type(v, &key, EXPECT_PASSWORD),
        }
    }
    if let Some(v) = t.get("codecs") {
        if let Some(codecs) = read_codecs(ctx, v, &t.path("codecs")) {
            a.codecs = codecs;
        }
    }
    if let Some((s, v)) = t.string(ctx, "dtmf_mode", EXPECT_DTMF) {
        let key = t.path("dtmf_mode");
        match s.to_ascii_lowercase().as_str() {
            "rfc4733" | "rfc2833" => a.dtmf_mode = DtmfMode::Rfc4733,
            "info" | "sip-info" => a.dtmf_mode = DtmfMode::Info,
            "inband" => ctx.invalid(v, &key, "this DTMF mode is not supported yet", EXPECT_DTMF),
            _ => ctx.invalid(v, &key, "unknown DTMF mode", EXPECT_DTMF),
        }
    }
    if let Some(b) = t.boolean(ctx, "noise_suppression") {
        a.noise_suppression = b;
    }
    if let Some(b) = t.boolean(ctx, "echo_cancellation") {
        a.echo_cancellation = b;
    }
    if let Some(v) = t.get("accept_transfer") {
        use crate::engine::api::TransferPolicy;
        const EXPECT: &str = "true, false or \"ask\"";
        let key = t.path("accept_transfer");
        match v.get_ref() {
            DeValue::Boolean(true) => a.accept_transfer = TransferPolicy::Accept,
            DeValue::Boolean(false) => a.accept_transfer = TransferPolicy::Reject,
            DeValue::String(s) if s.eq_ignore_ascii_case("ask") => {
                a.accept_transfer = TransferPolicy::Ask
            }
            DeValue::String(_) => ctx.invalid(v, &key, "unknown transfer policy", EXPECT),
            _ => ctx.wrong_type(v, &key, EXPECT),
        }
    }
    if let Some(b) = t.boolean(ctx, "dnd") {
        a.dnd = b;
    }
    if let Some(v) = t.get("auto_answer") {
        a.auto_answer = read_auto_answer(ctx, v, &t.path("auto_answer"));
    }
    (ctx.problems.len() == before).then_some(a)
}

/// `auto_answer = "off" | "answer" | "echo" | "reject"` or a table of `serve`'s choices.
fn read_auto_answer(ctx: &mut Ctx<'_>, value: &Value<'_>, path: &str) -> Option<AutoAnswer> {
    if let DeValue::String(s) = value.get_ref() {
        return match s.to_ascii_lowercase().as_str() {
            "off" | "no" | "manual" => Some(AutoAnswer::Off),
            "answer" | "on" => Some(AutoAnswer::Answer(AnswerPolicy::default())),
            "echo" => Some(AutoAnswer::Answer(AnswerPolicy {
                audio: AnswerAudio::Echo,
                ..AnswerPolicy::default()
            })),
            "reject" | "busy" => Some(AutoAnswer::Reject(486)),
            _ => {
                ctx.invalid(
                    value,
                    path,
                    "unknown auto-answer policy",
                    EXPECT_AUTO_ANSWER,
                );
                None
            }
        };
    }
    let t = Table::open_value(
        ctx,
        value,
        path.to_string(),
        AUTO_ANSWER_KEYS,
        EXPECT_AUTO_ANSWER,
    )?;
    let before = ctx.problems.len();
    let mut p = AnswerPolicy::default();
    if let Some(d) = t.integer_in(ctx, "delay", 0, 600, EXPECT_AA_DELAY) {
        p.delay_secs = d;
    }
    p.hangup_after_secs = t.integer_in(ctx, "hangup_after", 1, 86_400, EXPECT_AA_HANGUP);
    p.record_dir = t
        .checked_string(ctx, "record", EXPECT_AA_DIR, no_control)
        .map(PathBuf::from);
    let play = t
        .checked_string(ctx, "play", EXPECT_AA_FILE, no_control)
        .map(PathBuf::from);
    let echo = t.boolean(ctx, "echo").unwrap_or(false);
    match (play, echo) {
        (Some(_), true) => {
            let v = t.get("echo").unwrap_or(value);
            ctx.invalid(
                v,
                &t.path("echo"),
                "play and echo exclude each other",
                "either play = \"file.wav\" or echo = true",
            );
        }
        (Some(f), false) => p.audio = AnswerAudio::File(f),
        (None, true) => p.audio = AnswerAudio::Echo,
        (None, false) => {}
    }
    let reject = t.integer_in(ctx, "reject", 400, 699, EXPECT_AA_REJECT);
    if let (Some(code), Some(v)) = (reject, t.get("reject")) {
        let answering = ["delay", "play", "echo", "record", "hangup_after"]
            .into_iter()
            .find(|k| t.get(k).is_some());
        if let Some(k) = answering {
            ctx.invalid(
                v,
                &t.path("reject"),
                &format!("reject cannot be combined with {k}"),
                "either { reject = CODE } alone or the answering keys (delay, play, echo, record, hangup_after)",
            );
            return None;
        }
        return (ctx.problems.len() == before).then_some(AutoAnswer::Reject(code as u16));
    }
    (ctx.problems.len() == before).then_some(AutoAnswer::Answer(p))
}

fn read_codecs(ctx: &mut Ctx<'_>, value: &Value<'_>, path: &str) -> Option<Vec<CodecName>> {
    let DeValue::Array(items) = value.get_ref() else {
        ctx.wrong_type(value, path, EXPECT_CODECS);
        return None;
    };
    if items.is_empty() {
        ctx.invalid(value, path, "empty codec list", EXPECT_CODECS);
        return None;
    }
    let mut codecs = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let key = format!("{path}[{i}]");
        let DeValue::String(s) = item.get_ref() else {
            ctx.wrong_type(item, &key, EXPECT_CODEC);
            ok = false;
            continue;
        };
        match CodecName::from_name(s) {
            Some(c) if codecs.contains(&c) => {
                ctx.invalid(item, &key, "codec listed twice", "each codec at most once");
                ok = false;
            }
            Some(c) => codecs.push(c),
            None => {
                ctx.invalid(item, &key, "unsupported codec", EXPECT_CODEC);
                ok = false;
            }
        }
    }
    ok.then_some(codecs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_user_chars() {
        assert!(sip_user("alice"));
        assert!(sip_user("1001"));
        assert!(sip_user("a.b-c_d%20e"));
        assert!(!sip_user("a b"));
        assert!(!sip_user("a@b"));
        assert!(!sip_user("a%2"));
        assert!(!sip_user("a%zz"));
    }

    #[test]
    fn host_port_forms() {
        for ok in [
            "example.com",
            "sip.example.com:5080",
            "127.0.0.1",
            "127.0.0.1:5060",
            "[::1]",
            "[::1]:5060",
            "localhost",
            "example.com.",
            "example.com.:5060",
        ] {
            assert!(host_port(ok), "{ok}");
        }
        for bad in [
            "sip:example.com",
            "alice@example.com",
            "example..com",
            "example.com:",
            "example.com:0",
            "example.com:99999",
            "[::1",
            "[zz]",
            "[::1]x",
            "exa mple.com",
            ":5060",
            ".",
            "example.com..",
        ] {
            assert!(!host_port(bad), "{bad}");
        }
    }

    #[test]
    fn sip_uri_forms() {
        assert!(sip_uri("sip:example.com"));
        assert!(sip_uri("SIPS:example.com:5061"));
        assert!(!sip_uri("sip:"));
        assert!(!sip_uri("example.com"));
        assert!(!sip_uri("sip:a b"));
    }

    #[test]
    fn syntax_message_never_repeats_the_line() {
        let line = "password = hunter2secret";
        let split = line.split_at(11);
        let m = syntax_message("unexpected hunter2secret", Some(11..24), line, split);
        assert_eq!(m, "invalid TOML syntax");
        let m = syntax_message("string values must be quoted", Some(11..24), line, split);
        assert_eq!(m, "invalid TOML: string values must be quoted");
        let m = syntax_message("whatever", Some(8..8), "listen = # c", ("listen = ", "# c"));
        assert_eq!(m, "invalid TOML: missing value; expected a value after =");
    }
}
