//! Command-line interface (clap derive). Only subcommands that work exist.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// A SIP softphone for the terminal.
#[derive(Debug, Parser)]
#[command(
    name = "termphone",
    version,
    about = "A SIP softphone for the terminal. Without a command: the interactive phone (keys: F1 or ?).",
    after_help = "Examples:\n  termphone                      (the interactive phone; ? shows its keys)\n  termphone serve --listen 127.0.0.1:5070 --echo\n  termphone dial sip:echo@127.0.0.1:5070 --play speech.wav --record back.wav --duration 5"
)]
pub struct Cli {
    /// Configuration file (default: $XDG_CONFIG_HOME/termphone/config.toml; without one, a
    /// serverless "local" account is used for direct sip:user@host:port calls).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Write logs to this file (level from RUST_LOG, default info). Without it, the config's
    /// [general] log_file; without that, warnings go to stderr (the interactive phone writes
    /// $XDG_STATE_HOME/termphone/termphone.log instead: it owns the terminal).
    #[arg(long, global = true, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// Print every SIP message sent and received to stderr.
    #[arg(long, global = true)]
    pub sip_trace: bool,
    /// The interactive phone's options (without a subcommand).
    #[command(flatten)]
    pub tui: TuiArgs,
    /// Without a subcommand: the interactive phone (TUI).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `termphone` with no subcommand: the interactive phone.
#[derive(Debug, Args)]
pub struct TuiArgs {
    /// Local SIP address (default: the config's [general] listen, else 0.0.0.0:5060).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// The control socket (default: $XDG_RUNTIME_DIR/termphone/control.sock), so `termphone
    /// ctl` drives this phone.
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// Do not listen on a control socket.
    #[arg(long)]
    pub no_control: bool,
    /// The history and contacts database (default: $XDG_DATA_HOME/termphone/termphone.db).
    #[arg(long, value_name = "PATH")]
    pub database: Option<PathBuf>,
}

/// The modes of termphone.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Answer calls unattended by a policy, printing events. An account's own `auto_answer`
    /// in the config decides for calls to that account; these options decide for the rest.
    #[command(
        after_help = "Examples:\n  termphone serve --listen 127.0.0.1:5070 --echo\n  termphone serve --play greeting.wav --hangup-after 30 --record /var/tmp/calls\n  termphone serve --reject 486\n  termphone serve --answer-delay 3600 --control /tmp/tp.sock   (answer with: termphone ctl --socket /tmp/tp.sock accept c1)\n\nPer account (config.toml): auto_answer = \"off\" | \"answer\" | \"echo\" | \"reject\"\n  or { delay = 2, play = \"greeting.wav\", record = \"/var/tmp/calls\", hangup_after = 60 } or { reject = 603 }"
    )]
    Serve(ServeArgs),
    /// Place one call and exit with a status that says how it ended.
    #[command(
        after_help = "Examples:\n  termphone dial sip:echo@127.0.0.1:5070 --play speech.wav --record back.wav --duration 5\n  termphone dial 1002@192.0.2.7 --dtmf 123# --duration 10 --json\n\nExit status:\n  0  answered and ended normally\n  1  local error before the call (bad file, bad config)\n  2  usage error\n  3  busy (486, 600)\n  4  declined (603)\n  5  not found (404, 604)\n  6  no answer (ringing timeout, 408, 480)\n  7  network or transport failure (no response)\n  8  other failure\n  9  authentication failed (wrong password, 401/407/403)"
    )]
    Dial(DialArgs),
    /// List audio devices.
    #[command(after_help = "Example:\n  termphone devices")]
    Devices,
    /// Accounts: list them; store or remove their passwords in the OS keyring; import and
    /// export provisioning payloads (QR codes).
    #[command(
        after_help = "Examples:\n  termphone account list\n  termphone account set-password work\n  pass show sip/work | termphone account set-password work\n  termphone account remove work\n  termphone account import qr-code.png --name work\n  termphone account export work --qr"
    )]
    Account(AccountArgs),
    /// Drive a running `termphone serve` through its control socket: place, answer and end
    /// calls, send DTMF, show status; print the answer as one JSON line (docs/control.md).
    #[command(
        after_help = "Examples:\n  termphone ctl dial sip:1002@192.0.2.7\n  termphone ctl dial 1002 --account work\n  termphone ctl --follow\n  termphone ctl --follow dial sip:echo@127.0.0.1:5070\n  termphone ctl accept c2\n  termphone ctl dtmf c3 123#\n  termphone ctl hold c3\n  termphone ctl activate c3\n  termphone ctl mute c3\n  termphone ctl mute c3 off\n  termphone ctl transfer c3 sip:1003@pbx.example.com\n  termphone ctl transfer c3 --with c4\n  termphone ctl join c3 c4\n  termphone ctl reject c5 603\n  termphone ctl redirect c5 sip:1003@pbx.example.com\n  termphone ctl deregister work\n  termphone ctl record c3\n  termphone ctl record c3 off\n  termphone ctl denoise c3 off\n  termphone ctl hangup c3\n  termphone ctl hangup\n  termphone ctl status\n  termphone ctl calls\n  termphone ctl supports\n  termphone ctl --socket /run/user/1000/termphone/control.sock status\n\nExit status:\n  0  the instance answered ok (--follow: until the socket closed or SIGINT/SIGTERM)\n  1  the instance answered with an error (unknown call, verb not supported, ...)\n  2  usage error\n  7  cannot connect: no socket at the path, connection refused (stale socket), or no answer within 30 s"
    )]
    Ctl(CtlArgs),
}

/// `termphone ctl`
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The control socket (default: $XDG_RUNTIME_DIR/termphone/control.sock, or
    /// termphone-UID/control.sock in the temporary directory without XDG_RUNTIME_DIR).
    #[arg(long, value_name = "PATH", global = true)]
    pub socket: Option<PathBuf>,
    /// Subscribe and print every event as a JSON line until the socket closes or
    /// SIGINT/SIGTERM (without a verb: only that).
    #[arg(long, global = true)]
    pub follow: bool,
    #[command(subcommand)]
    pub verb: Option<CtlVerb>,
}

/// What `termphone ctl` asks the running instance.
#[derive(Debug, Subcommand)]
pub enum CtlVerb {
    /// Place a call; prints its id ({"ok":true,"call":"c3"}).
    Dial {
        /// Who to call: sip:user@host[:port], user@host, or a number with --account.
        to: String,
        /// Call as this account of the instance's config.
        #[arg(long, value_name = "NAME")]
        account: Option<String>,
        /// Play this WAV file once the call is answered (a path on the instance's machine).
        #[arg(long, value_name = "FILE")]
        play: Option<PathBuf>,
        /// Record what the peer sends to this WAV file (a path on the instance's machine).
        #[arg(long, value_name = "FILE")]
        record: Option<PathBuf>,
    },
    /// Answer a ringing incoming call.
    Accept {
        /// The call id (c1, c2, ...).
        call: String,
        /// Play this WAV file instead of the instance's default.
        #[arg(long, value_name = "FILE")]
        play: Option<PathBuf>,
        /// Record the call to this WAV file.
        #[arg(long, value_name = "FILE")]
        record: Option<PathBuf>,
    },
    /// End a call, or every call when none is named.
    Hangup {
        /// The call id (c1, c2, ...); without it, all calls.
        call: Option<String>,
    },
    /// Send DTMF digits (RFC 4733) on a connected call.
    Dtmf {
        /// The call id (c1, c2, ...).
        call: String,
        /// The digits: 0-9 * # A-D.
        digits: String,
    },
    /// Put a call on hold (re-INVITE sendonly).
    Hold {
        /// The call id (c1, c2, ...).
        call: String,
    },
    /// Take a call off hold.
    Activate {
        /// The call id (c1, c2, ...).
        call: String,
    },
    /// Mute a call's outgoing audio (silence is sent), or unmute it with `off`.
    Mute {
        /// The call id (c1, c2, ...).
        call: String,
        /// on (the default) or off.
        #[arg(value_parser = ["on", "off"], default_value = "on")]
        state: String,
    },
    /// Start recording a call (both directions, to a WAV file), or stop with `off`.
    Record {
        /// The call id (c1, c2, ...).
        call: String,
        /// on (the default) or off.
        #[arg(value_parser = ["on", "off"], default_value = "on")]
        state: String,
        /// Record into this file (a path on the instance's machine) instead of a file named by
        /// time and peer in the instance's recording directory.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Transfer: ask the call's peer to call TO instead (blind, REFER), or with --with to
    /// take the place of another call of ours (attended, Replaces); the call ends when the
    /// new call is answered.
    Transfer {
        /// The call id (c1, c2, ...).
        call: String,
        /// Where to: a SIP URI, user@host, or a number at the call's account.
        #[arg(
            required_unless_present_any = ["with", "accept", "refuse"],
            conflicts_with_all = ["with", "accept", "refuse"]
        )]
        to: Option<String>,
        /// Attended: the peer replaces this other call (its id).
        #[arg(long, value_name = "CALL", conflicts_with_all = ["accept", "refuse"])]
        with: Option<String>,
        /// Follow the transfer the peer of CALL asked for (account policy "ask").
        #[arg(long, conflicts_with = "refuse")]
        accept: bool,
        /// Refuse the transfer the peer of CALL asked for (603).
        #[arg(long)]
        refuse: bool,
    },
    /// Turn a ringing call away (486 Busy Here, or CODE).
    Reject {
        /// The call id (c1, c2, ...).
        call: String,
        /// A SIP status from 400 to 699.
        #[arg(value_parser = clap::value_parser!(u16).range(400..=699))]
        code: Option<u16>,
    },
    /// Send a ringing call elsewhere (302 Moved Temporarily).
    Redirect {
        /// The call id (c1, c2, ...).
        call: String,
        /// Where to: a SIP URI or user@host.
        to: String,
    },
    /// Register an account of the instance's configuration.
    Register {
        /// The account's name.
        account: String,
    },
    /// Unregister an account (calls to it no longer reach this instance).
    Deregister {
        /// The account's name.
        account: String,
    },
    /// Local conference: CALL and WITH hear each other and us (a held one is resumed).
    Join {
        /// One call id (c1, c2, ...).
        call: String,
        /// The other.
        with: String,
    },
    /// Turn noise suppression of a call's microphone on or off.
    Denoise {
        /// The call id (c1, c2, ...).
        call: String,
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Accounts with their registration state, calls, the SIP listen address.
    Status,
    /// The current calls.
    Calls,
    /// The verbs this instance supports.
    Supports,
    /// Any other verb (e.g. join c3), passed on as {"cmd":VERB,"call":ARG}.
    #[command(external_subcommand)]
    Other(Vec<String>),
}

/// `termphone account`
#[derive(Debug, Args)]
pub struct AccountArgs {
    #[command(subcommand)]
    pub command: AccountCommand,
}

/// What `termphone account` does.
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Store an account's password in the OS keyring (service "termphone", user = NAME). Reads
    /// it from the terminal without echo, or one line from stdin when stdin is not a terminal.
    #[command(
        after_help = "Examples:\n  termphone account set-password work\n  printf '%s\\n' \"$PW\" | termphone account set-password work"
    )]
    SetPassword {
        /// The account's name in the config.
        name: String,
    },
    /// One line per account: name, user@domain, registrar, transport, password source
    /// (keyring, password_cmd, config file or none). Never the password.
    /// When a `termphone serve` answers on the control socket, each account's live
    /// registration state is added (state=registered (expires 600 s), state=failed: REASON);
    /// otherwise state=not running.
    #[command(
        after_help = "Examples:\n  termphone account list\n  termphone account list --socket /tmp/tp/control.sock"
    )]
    List {
        /// The running instance's control socket (default: the default control socket).
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
    /// Delete an account's password from the OS keyring (the config is not changed).
    #[command(after_help = "Example:\n  termphone account remove work")]
    Remove {
        /// The account's name in the config.
        name: String,
    },
    /// Add an account from a provider's provisioning payload: Zoiper-style key=value lines
    /// (server=, port=, username=, password=, transport=, wss_port=, ...), a Zoiper OEM URL
    /// (u=, h=, p=, o=, a=, tr=), or a PNG/JPEG image of such a QR code. The account is added
    /// to the config file (created if missing; comments and order kept), the password goes
    /// into the OS keyring.
    #[command(
        after_help = "Examples:\n  termphone account import provider.txt\n  termphone account import qr-code.png --name work\n  printf 'server=pbx.example.com\\nusername=1001\\npassword=...\\n' | termphone account import -\n  termphone account import --replace --name work new-qr.png"
    )]
    Import(ImportArgs),
    /// Print an account as a key=value provisioning payload (what `account import` reads),
    /// or as a QR code in the terminal. No password unless --with-password.
    #[command(
        after_help = "Examples:\n  termphone account export work\n  termphone account export work --qr\n  termphone account export work --with-password > work.txt"
    )]
    Export {
        /// The account's name in the config.
        name: String,
        /// Draw the payload as a QR code (Unicode half blocks) instead of text.
        #[arg(long)]
        qr: bool,
        /// Include the password (from the keyring, password_cmd or the file).
        #[arg(long)]
        with_password: bool,
    },
}

/// `termphone account import`
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A text file, `-` for standard input, or a PNG/JPEG image of a QR code.
    pub source: String,
    /// The account's name (default: user@host).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Replace an account of the same name instead of refusing.
    #[arg(long)]
    pub replace: bool,
    /// When the OS keyring is unavailable, write the password into the config file instead
    /// of failing (the file is then as secret as the password).
    #[arg(long)]
    pub password_in_file: bool,
}

/// Options shared by the modes that run the engine.
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Local SIP address (UDP). Default: from the config, else 0.0.0.0:5060 for serve and an
    /// ephemeral port for dial.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Print events as JSON lines (the default when stdout is not a terminal).
    #[arg(long)]
    pub json: bool,
    /// Offer and accept only this codec; repeat for several, in order of preference
    /// (opus, G722, PCMU, PCMA). Overrides the account's `codecs`.
    #[arg(long = "codec", value_name = "NAME", value_parser = parse_codec)]
    pub codecs: Vec<crate::config::CodecName>,
    /// Send the microphone as it is, without RNNoise noise suppression (on by default for
    /// sound-device capture; files and tones are never processed).
    #[arg(long)]
    pub no_noise_suppression: bool,
    /// No acoustic echo cancellation (on by default when a call uses both the microphone and
    /// the speaker).
    #[arg(long)]
    pub no_echo_cancellation: bool,
    /// Report each call's audio levels (sent and heard, RMS and peak dBFS) five times a
    /// second as `levels` events.
    #[arg(long)]
    pub levels: bool,
}

fn parse_codec(s: &str) -> Result<crate::config::CodecName, String> {
    crate::config::CodecName::from_name(s).ok_or_else(|| {
        let names: Vec<_> = crate::config::CodecName::ALL
            .iter()
            .map(|c| c.as_str())
            .collect();
        format!("unknown codec {s:?}; expected one of {}", names.join(", "))
    })
}

/// `termphone serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Seconds to ring before answering.
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    pub answer_delay: f64,
    /// Play this WAV file to each caller.
    #[arg(long, value_name = "FILE", conflicts_with = "echo")]
    pub play: Option<PathBuf>,
    /// Send each caller's audio back to them.
    #[arg(long)]
    pub echo: bool,
    /// Answer with the sound card: the microphone instead of silence when there is no
    /// --play/--echo, the speaker instead of discarding when there is no --record (devices
    /// from the config's `[audio]` section, else the defaults). An intercom, a door phone.
    #[arg(long)]
    pub device: bool,
    /// Record each call to a WAV file in this directory (named by time and caller).
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    /// Hang up each call after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub hangup_after: Option<f64>,
    /// Reject every call with this SIP status code (e.g. 486, 603) instead of answering.
    #[arg(long, value_name = "CODE", value_parser = clap::value_parser!(u16).range(400..=699))]
    pub reject: Option<u16>,
    /// Register and answer only as this account (repeatable; default: every enabled account
    /// with a registrar).
    #[arg(long = "account", value_name = "NAME")]
    pub accounts: Vec<String>,
    /// Listen for control clients (`termphone ctl`) on this Unix socket instead of
    /// $XDG_RUNTIME_DIR/termphone/control.sock.
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// No control socket.
    #[arg(long, conflicts_with = "control")]
    pub no_control: bool,
}

/// `termphone dial`
#[derive(Debug, Args)]
pub struct DialArgs {
    /// Who to call: sip:user@host:port or user@host:port (the port is optional).
    pub uri: String,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Play this WAV file once the call is answered.
    #[arg(long, value_name = "FILE")]
    pub play: Option<PathBuf>,
    /// Record what the peer sends to this WAV file.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Send these DTMF digits (RFC 4733) after the call is answered.
    #[arg(long, value_name = "DIGITS")]
    pub dtmf: Option<String>,
    /// Hang up this many seconds after the answer (default: when --play ends, else 30).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Use the sound card: the microphone instead of silence when there is no --play, the
    /// speaker instead of discarding when there is no --record (devices from the config's
    /// `[audio]` section, else the defaults).
    #[arg(long)]
    pub device: bool,
    /// Call as this account from the config (through its registrar, answering its digest
    /// challenges); URI may then be just a user or number at the account's domain.
    #[arg(long, value_name = "NAME")]
    pub account: Option<String>,
    /// Give up if not answered within this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub timeout: f64,
}
