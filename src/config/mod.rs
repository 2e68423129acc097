//! Configuration: the TOML model, loading with `file:line:col` errors, validation and defaults.
//!
//! The file lives at `$XDG_CONFIG_HOME/termphone/config.toml` (fallback
//! `~/.config/termphone/config.toml`) or at an explicit path. With no file, [`Config::builtin`]
//! gives a serverless `local` account for direct `sip:user@host:port` calls.
//!
//! Errors never contain a value from the file, only positions, key paths and what was
//! expected, so a password can never leak into a message or a log. The file is read by our own
//! walker over toml's spanned document rather than through serde, because serde's messages
//! quote values (`invalid type: integer `12345``) and would lose the span of semantic errors.

pub mod edit;
mod error;
mod parse;
mod path;
pub mod provision;
pub mod secrets;

use std::fmt;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

pub use crate::sip::transport::Transport;
pub use error::{ConfigError, ConfigWarning, Location, Problem};
pub use path::{default_path_from, default_record_dir_from, APP_DIR, FILE_NAME};

/// Files larger than this are refused (a config is a few KiB; this guards against mistakes).
pub const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// The whole configuration: `[general]`, `[audio]` and the `[[account]]` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `[general]`: network and logging settings.
    pub general: General,
    /// `[audio]`: device choice.
    pub audio: Audio,
    /// `[[account]]` tables in file order; never empty (the `local` account when none is given).
    pub accounts: Vec<AccountConfig>,
    /// `[keys]`: the TUI's keys the user rebound, as (action name, key) pairs.
    pub keys: Vec<(String, String)>,
    /// The file this config came from; `None` for [`Config::builtin`].
    pub origin: Option<PathBuf>,
    /// Problems that did not stop loading (e.g. a password in the file); print them to the user.
    pub warnings: Vec<ConfigWarning>,
}

/// `[general]`: network and logging settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct General {
    /// Local SIP address (UDP). `None` when not set: the mode decides (the TUI and `serve` use
    /// [`General::DEFAULT_LISTEN`]; `dial` may take an ephemeral port so it can run beside them).
    pub listen: Option<SocketAddr>,
    /// Lowest local RTP port (even).
    pub rtp_port_min: u16,
    /// Highest local RTP port (`>= rtp_port_min`).
    pub rtp_port_max: u16,
    /// `User-Agent` / `Server` header value.
    pub user_agent: String,
    /// Where to write the log; `None` = no log file.
    pub log_file: Option<PathBuf>,
    /// Log every SIP message sent and received.
    pub sip_trace: bool,
    /// DNS server for SIP server lookups (SRV, A/AAAA); `None` = the system's resolv.conf.
    pub dns_server: Option<SocketAddr>,
    /// Calls at once; one more incoming call is answered 486 Busy Here.
    pub max_calls: u32,
}

impl General {
    /// `0.0.0.0:5060`: the listen address when none is configured.
    pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 5060);
    /// Default lowest RTP port.
    pub const DEFAULT_RTP_PORT_MIN: u16 = 16384;
    /// Default highest RTP port.
    pub const DEFAULT_RTP_PORT_MAX: u16 = 32767;

    /// The configured listen address, or [`General::DEFAULT_LISTEN`].
    pub fn listen_or_default(&self) -> SocketAddr {
        self.listen.unwrap_or(Self::DEFAULT_LISTEN)
    }

    /// The default `User-Agent`: `termphone/<version>`.
    pub fn default_user_agent() -> String {
        format!("termphone/{}", env!("CARGO_PKG_VERSION"))
    }
}

impl Default for General {
    fn default() -> General {
        General {
            listen: None,
            rtp_port_min: Self::DEFAULT_RTP_PORT_MIN,
            rtp_port_max: Self::DEFAULT_RTP_PORT_MAX,
            user_agent: Self::default_user_agent(),
            log_file: None,
            sip_trace: false,
            dns_server: None,
            max_calls: 4,
        }
    }
}

/// `[audio]`: which devices to use (`None` = the system default).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Audio {
    /// Capture (microphone) device name, as `termphone devices` lists it.
    pub capture_device: Option<String>,
    /// Playback (speaker) device name, as `termphone devices` lists it.
    pub playback_device: Option<String>,
    /// Ceiling of the adaptive jitter buffer's delay in ms (`None`: 240).
    pub jitter_buffer_max_ms: Option<u32>,
    /// Where calls recorded on demand go (`None`: `$XDG_DATA_HOME/termphone/recordings`).
    pub record_dir: Option<PathBuf>,
    /// Record ours on the left and theirs on the right, instead of both mixed into one channel.
    pub record_stereo: bool,
    /// A WAV file played (looped) to a caller we put on hold; `None`: silence (nothing sent).
    pub hold_music: Option<PathBuf>,
}

/// One `[[account]]`: who we are and how we reach the other side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountConfig {
    /// Unique name used in the UI and on the command line (`--account work`).
    pub name: String,
    /// Disabled accounts are loaded but not used.
    pub enabled: bool,
    /// Display name for the `From` header (`None` when not set or empty).
    pub display_name: Option<String>,
    /// SIP user part (`alice` in `sip:alice@example.com`).
    pub user: String,
    /// SIP domain; `None` for a serverless account (From uses the local address).
    pub domain: Option<String>,
    /// Registrar URI (`sip:sip.example.com`): where the account registers; `None` for a
    /// serverless account.
    pub registrar: Option<String>,
    /// Registration interval asked for, in seconds (the registrar may grant less).
    pub expires: u32,
    /// A shell command whose standard output is the password (preferred over `password`).
    pub password_cmd: Option<String>,
    /// Transport for SIP (`udp`, `tcp`, `tls`, `ws`, `wss`).
    pub transport: Transport,
    /// Outbound proxy: every request of the account goes there first (loose routing, the
    /// proxy's URI becomes the first Route). `None`: requests go to the registrar/domain.
    pub outbound_proxy: Option<String>,
    /// User name for digest auth when it differs from `user`.
    pub auth_user: Option<String>,
    /// PEM file with CA certificates trusted for TLS/WSS besides the system roots.
    pub tls_ca_file: Option<PathBuf>,
    /// HTTP path of the WebSocket endpoint (`ws`/`wss`), default `/`.
    pub ws_path: String,
    /// Seconds between keepalives: CRLF pings on TCP/TLS/WS connections (RFC 5626 §4.4.1),
    /// a CRLF datagram on UDP. `None`: the default (90 s on connections, off on UDP); 0: off.
    pub keepalive: Option<u32>,
    /// Password stored in the file (discouraged: loading it gives a warning).
    pub password: Option<Secret>,
    /// Codecs in preference order (never empty, no duplicates).
    pub codecs: Vec<CodecName>,
    /// How DTMF digits are sent.
    pub dtmf_mode: DtmfMode,
    /// RNNoise on the microphone (sound-device capture) during this account's calls.
    pub noise_suppression: bool,
    /// Acoustic echo cancellation when a call uses both the microphone and the speaker.
    pub echo_cancellation: bool,
    /// What a peer's transfer (REFER) does: call where it says, ask first, or refuse (603).
    pub accept_transfer: crate::engine::api::TransferPolicy,
    /// Do not disturb: calls to this account are turned away (486 Busy Here) without ringing.
    pub dnd: bool,
    /// What happens to an incoming call for this account when nobody answers it by hand.
    /// `None`: not set (`serve` uses its command-line policy, an interactive phone rings).
    pub auto_answer: Option<AutoAnswer>,
}

impl AccountConfig {
    /// Name of the built-in serverless account.
    pub const LOCAL_NAME: &'static str = "local";

    /// The built-in serverless account: direct `sip:user@host:port` calls, no registrar.
    pub fn local() -> AccountConfig {
        AccountConfig {
            name: Self::LOCAL_NAME.to_string(),
            enabled: true,
            display_name: None,
            user: "termphone".to_string(),
            domain: None,
            registrar: None,
            expires: DEFAULT_EXPIRES,
            password_cmd: None,
            transport: Transport::Udp,
            outbound_proxy: None,
            auth_user: None,
            tls_ca_file: None,
            ws_path: "/".to_string(),
            keepalive: None,
            password: None,
            codecs: CodecName::default_list(),
            dtmf_mode: DtmfMode::Rfc4733,
            noise_suppression: true,
            echo_cancellation: true,
            accept_transfer: crate::engine::api::TransferPolicy::Accept,
            dnd: false,
            auto_answer: None,
        }
    }

    /// Seconds between keepalives, 0 = none: the configured value, else 90 s on connection
    /// transports and none on UDP.
    pub fn keepalive_secs(&self) -> u32 {
        self.keepalive
            .unwrap_or(if self.transport.is_reliable() { 90 } else { 0 })
    }

    /// True when the account has neither a domain nor a registrar (direct IP calls only).
    pub fn is_serverless(&self) -> bool {
        self.domain.is_none() && self.registrar.is_none()
    }
}

/// A codec name a config may list, checked against what the media layer supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecName {
    /// Opus (RFC 6716/7587), 48 kHz full-band, variable bitrate (32 kbit/s by default).
    Opus,
    /// G.722, 16 kHz wide-band (64 kbit/s).
    G722,
    /// G.711 µ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
}

impl CodecName {
    /// Every supported codec, in default preference order: Opus, then wide-band G.722, then
    /// G.711 (what baresip and MicroSIP offer).
    pub const ALL: [CodecName; 4] = [
        CodecName::Opus,
        CodecName::G722,
        CodecName::Pcmu,
        CodecName::Pcma,
    ];

    /// The default preference list (`["opus", "G722", "PCMU", "PCMA"]`).
    pub fn default_list() -> Vec<CodecName> {
        Self::ALL.to_vec()
    }

    /// The SDP name (`"PCMU"`, `"opus"`), as `media::codec_by_name` takes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            CodecName::Opus => "opus",
            CodecName::G722 => "G722",
            CodecName::Pcmu => "PCMU",
            CodecName::Pcma => "PCMA",
        }
    }

    /// Look a codec up by name, case-insensitively.
    pub fn from_name(name: &str) -> Option<CodecName> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for CodecName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How DTMF digits are sent. Digits are received both ways, whichever the peer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DtmfMode {
    /// RFC 4733 telephone-event RTP packets.
    #[default]
    Rfc4733,
    /// SIP INFO requests with an `application/dtmf-relay` body, one per digit.
    Info,
}

impl DtmfMode {
    /// The config spelling (`"rfc4733"`).
    pub fn as_str(&self) -> &'static str {
        match self {
            DtmfMode::Rfc4733 => "rfc4733",
            DtmfMode::Info => "info",
        }
    }
}

/// An account's `auto_answer`: what happens to its incoming calls without a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AutoAnswer {
    /// Ring until answered by hand (the TUI, `termphone ctl accept`) or the caller gives up;
    /// also under `serve`.
    Off,
    /// Answer by itself.
    Answer(AnswerPolicy),
    /// Turn the call away with this final status code (400..=699).
    Reject(u16),
}

/// How an auto-answered call goes: the same choices as `termphone serve`'s options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AnswerPolicy {
    /// Ring this many seconds first.
    pub delay_secs: u32,
    /// What the caller hears.
    pub audio: AnswerAudio,
    /// Record each call into this directory.
    pub record_dir: Option<PathBuf>,
    /// Hang up this many seconds after answering.
    pub hangup_after_secs: Option<u32>,
}

/// What an auto-answered caller hears.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AnswerAudio {
    /// Silence.
    #[default]
    Silence,
    /// Their own audio back.
    Echo,
    /// A WAV file.
    File(PathBuf),
}

/// Registration interval when an account does not set `expires` (seconds).
pub const DEFAULT_EXPIRES: u32 = 600;

/// Passwords are the digest layer's [`Secret`]: `Debug` and `Display` never show the value.
pub use crate::sip::auth::Secret;

impl Config {
    /// Read and validate a config file; errors name file:line:col and never echo a value.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let read_err = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let mut bytes = Vec::new();
        file.take(MAX_FILE_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        if bytes.len() as u64 > MAX_FILE_SIZE {
            return Err(ConfigError::invalid(
                path,
                vec![Problem {
                    location: Location { line: 1, column: 1 },
                    key: None,
                    message: format!(
                        "file is too large; expected a config file of at most {} KiB",
                        MAX_FILE_SIZE / 1024
                    ),
                }],
            ));
        }
        let text = match std::str::from_utf8(&bytes) {
            Ok(text) => text,
            Err(e) => {
                return Err(ConfigError::invalid(
                    path,
                    vec![Problem {
                        location: error::utf8_error_location(&bytes, &e),
                        key: None,
                        message: "invalid UTF-8; expected a UTF-8 text file (TOML is UTF-8)"
                            .to_string(),
                    }],
                ))
            }
        };
        Config::from_str(text, path)
    }

    /// Parse and validate config text; `origin` names the file in errors and warnings.
    pub fn from_str(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        parse::parse(text, origin)
    }

    /// The default config path: `$XDG_CONFIG_HOME/termphone/config.toml`, else
    /// `$HOME/.config/termphone/config.toml`; `None` when neither variable is usable.
    pub fn default_path() -> Option<PathBuf> {
        default_path_from(
            std::env::var_os("XDG_CONFIG_HOME").as_deref(),
            std::env::var_os("HOME").as_deref(),
        )
    }

    /// The config used when there is no file: defaults and the serverless `local` account.
    pub fn builtin() -> Config {
        Config {
            general: General::default(),
            audio: Audio::default(),
            accounts: vec![AccountConfig::local()],
            keys: Vec::new(),
            origin: None,
            warnings: Vec::new(),
        }
    }

    /// Load `explicit` if given (it must exist), else the file at [`Config::default_path`] if it
    /// exists, else [`Config::builtin`].
    pub fn load_or_builtin(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_or_builtin_from(explicit, Config::default_path().as_deref())
    }

    /// [`Config::load_or_builtin`] with the default path given (for tests).
    pub fn load_or_builtin_from(
        explicit: Option<&Path>,
        default: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        if let Some(path) = explicit {
            return Config::load(path);
        }
        match default {
            Some(path) => match Config::load(path) {
                Err(ConfigError::Read { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    Ok(Config::builtin())
                }
                other => other,
            },
            None => Ok(Config::builtin()),
        }
    }

    /// The account with this name.
    pub fn account(&self, name: &str) -> Option<&AccountConfig> {
        self.accounts.iter().find(|a| a.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_has_one_serverless_local_account() {
        let c = Config::builtin();
        assert_eq!(c.accounts.len(), 1);
        let a = &c.accounts[0];
        assert_eq!(a.name, "local");
        assert!(a.enabled && a.is_serverless());
        assert_eq!(a.codecs, CodecName::default_list());
        assert_eq!(c.general.listen_or_default().to_string(), "0.0.0.0:5060");
        assert_eq!(
            (c.general.rtp_port_min, c.general.rtp_port_max),
            (16384, 32767)
        );
        assert!(c.origin.is_none() && c.warnings.is_empty());
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn codec_names_are_case_insensitive() {
        assert_eq!(CodecName::from_name("pcma"), Some(CodecName::Pcma));
        assert_eq!(CodecName::from_name("PCMU"), Some(CodecName::Pcmu));
        assert_eq!(CodecName::from_name("OPUS"), Some(CodecName::Opus));
        assert_eq!(CodecName::default_list()[0], CodecName::Opus);
        assert_eq!(CodecName::from_name("G729"), None);
    }
}
