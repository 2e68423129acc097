//! The engine boundary: [`Command`]s in, [`Event`]s out. Every front end (serve, dial, the
//! control socket, the TUI) speaks only this vocabulary.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Serialize;
use tokio::sync::oneshot;

/// An audio level (RMS and peak, dBFS), as [`Event::Levels`] carries it.
pub use crate::media::levels::Level;

/// A call, as named in events and commands ("c1", "c2", ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

impl Serialize for CallId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl std::str::FromStr for CallId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.strip_prefix('c')
            .and_then(|n| n.parse().ok())
            .map(CallId)
            .ok_or_else(|| format!("not a call id: {s:?} (expected c1, c2, ...)"))
    }
}

/// An account, by its index in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct AccountId(pub usize);

/// Where a call's outgoing audio comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioSourceSpec {
    /// Silence (RTP keeps flowing).
    Silence,
    /// A WAV file, played once, then silence.
    File(PathBuf),
    /// A sine tone.
    Tone { freq_hz: f32, amplitude: f32 },
    /// What the peer sends us, sent straight back.
    Echo,
    /// A capture device through cpal (`None` = default).
    Device(Option<String>),
}

/// Where a call's incoming audio goes.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioSinkSpec {
    /// Discarded.
    Null,
    /// Written to a WAV file (16-bit mono at the codec rate).
    File(PathBuf),
    /// A playback device through cpal (`None` = default).
    Device(Option<String>),
}

/// How a call's audio is wired.
#[derive(Debug, Clone, PartialEq)]
pub struct CallAudio {
    pub source: AudioSourceSpec,
    pub sink: AudioSinkSpec,
}

impl Default for CallAudio {
    fn default() -> Self {
        CallAudio {
            source: AudioSourceSpec::Silence,
            sink: AudioSinkSpec::Null,
        }
    }
}

/// What happens when the peer of a call transfers us (a REFER asks us to call someone else).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransferPolicy {
    /// Call where it says.
    #[default]
    Accept,
    /// Ask the user first (a `transfer` event with state `asked`; [`Command::AnswerTransfer`]).
    Ask,
    /// Refuse it (603); the call goes on.
    Reject,
}

/// Why a command was refused at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("no such call: {0}")]
    NoSuchCall(CallId),
    #[error("no account named {0:?} with a registrar in the configuration")]
    NoSuchAccount(String),
    #[error("invalid target {target:?}: {reason}")]
    InvalidTarget { target: String, reason: String },
    #[error("call {0} is not in a state that allows this")]
    WrongState(CallId),
    #[error("invalid DTMF digits {0:?} (allowed: 0-9 * # A-D)")]
    InvalidDtmf(String),
    #[error("invalid SIP status code {0} for a rejection (allowed: 400-699)")]
    InvalidCode(u16),
    #[error("call {call}: {reason}")]
    NotApplicable { call: CallId, reason: String },
    #[error("the engine has stopped")]
    EngineStopped,
}

/// Reply channel for commands that are validated at once.
pub type Reply<T> = oneshot::Sender<Result<T, CommandError>>;

/// Imperative requests to the engine.
#[derive(Debug)]
pub enum Command {
    /// Place a call to `target` (a SIP URI, or `user@host[:port]`; with an account also just
    /// `user`, at the account's domain).
    Dial {
        account: Option<String>,
        target: String,
        audio: CallAudio,
        reply: Reply<CallId>,
    },
    /// Answer an incoming call. `hold_others`: put the calls that are talking on hold first
    /// (a phone answering a waiting call; an answering service takes each call on its own).
    Answer {
        call: CallId,
        audio: CallAudio,
        hold_others: bool,
        reply: Reply<()>,
    },
    /// Reject an incoming call with a final status code (486, 603, ...).
    Reject {
        call: CallId,
        code: u16,
        reply: Reply<()>,
    },
    /// End a call in any state: CANCEL while dialing, BYE when connected, 603 while incoming.
    Hangup { call: CallId, reply: Reply<()> },
    /// Send DTMF digits on a connected call (RFC 4733).
    SendDtmf {
        call: CallId,
        digits: String,
        reply: Reply<()>,
    },
    /// Put a connected call on hold (re-INVITE with sendonly, or inactive when the peer holds
    /// it too; RFC 3264 §8.4).
    Hold { call: CallId, reply: Reply<()> },
    /// Take a call off hold (re-INVITE with sendrecv); `hold_others`: put the calls that are
    /// talking on hold first (switching between calls).
    Resume {
        call: CallId,
        hold_others: bool,
        reply: Reply<()>,
    },
    /// Start or stop recording a connected call (both directions, mixed or stereo as the
    /// engine is configured) into `path`, or a file named by time, peer and call in the
    /// engine's recording directory. The reply names the file.
    Record {
        call: CallId,
        on: bool,
        path: Option<PathBuf>,
        reply: Reply<PathBuf>,
    },
    /// Transfer (RFC 3515): ask the peer of a connected call to call `to` instead (blind), or,
    /// with `with`, to take the place of that other call of ours (attended, RFC 3891
    /// Replaces; `to` is then ignored); `call` ends once the peer reports the new call answered.
    Transfer {
        call: CallId,
        to: String,
        with: Option<CallId>,
        reply: Reply<()>,
    },
    /// Register an account of the configuration (`on`) or unregister it.
    Register {
        account: String,
        on: bool,
        reply: Reply<()>,
    },
    /// Send a ringing incoming call elsewhere: 302 Moved Temporarily with `to` as Contact.
    RedirectIncoming {
        call: CallId,
        to: String,
        reply: Reply<()>,
    },
    /// Local conference: `call` and `with` (and any call already conferenced with either)
    /// hear each other and us; a held one is resumed.
    Join {
        call: CallId,
        with: CallId,
        reply: Reply<()>,
    },
    /// Follow (`accept`) or refuse a transfer the peer asked for while the policy is
    /// [`TransferPolicy::Ask`].
    AnswerTransfer {
        call: CallId,
        accept: bool,
        reply: Reply<()>,
    },
    /// Mute or unmute a call's outgoing audio (silence is sent while muted).
    Mute {
        call: CallId,
        on: bool,
        reply: Reply<()>,
    },
    /// Turn noise suppression of a call's microphone on or off.
    SetNoiseSuppression {
        call: CallId,
        on: bool,
        reply: Reply<()>,
    },
    /// End every call, then stop the engine. The reply comes when all calls have ended.
    Shutdown { reply: oneshot::Sender<()> },
}

/// Call states, in the vocabulary of the classic phone-call-handler protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CallState {
    /// An incoming call is ringing here.
    Incoming,
    /// We sent an INVITE, no ringing yet.
    Dialing,
    /// The far end is ringing (180/183).
    Alerting,
    /// The call is up.
    Connected,
    /// We put the call on hold.
    Hold,
    /// The peer put the call on hold (and we did not).
    RemoteHold,
    /// We ended it.
    HangupLocal,
    /// The peer ended it.
    HangupRemote,
    /// An incoming call ended before it was answered.
    Missed,
    /// No response, or the network failed.
    NetworkFailure,
    /// Ended by a failure response or a local error.
    OtherFailure,
}

impl CallState {
    /// True for the states a call ends in.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            CallState::HangupLocal
                | CallState::HangupRemote
                | CallState::Missed
                | CallState::NetworkFailure
                | CallState::OtherFailure
        )
    }
}

impl fmt::Display for CallState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            CallState::Incoming => "incoming",
            CallState::Dialing => "dialing",
            CallState::Alerting => "alerting",
            CallState::Connected => "connected",
            CallState::Hold => "hold",
            CallState::RemoteHold => "remotehold",
            CallState::HangupLocal => "hanguplocal",
            CallState::HangupRemote => "hangupremote",
            CallState::Missed => "missed",
            CallState::NetworkFailure => "networkfailure",
            CallState::OtherFailure => "otherfailure",
        };
        f.write_str(s)
    }
}

/// Per-call media counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CallMediaStats {
    pub codec: String,
    pub packets_sent: u64,
    pub packets_received: u64,
    pub lost: u64,
    pub late: u64,
    pub duplicates: u64,
    pub concealed: u64,
    pub bad_packets: u64,
    pub jitter_ms: f64,
    /// The jitter buffer's current target delay (adapts to the measured jitter).
    pub buffer_ms: f64,
    /// Frames dropped to shrink the buffer's delay (in pauses where possible).
    pub discarded: u64,
    /// Frames inserted to grow the buffer's delay.
    pub stretched: u64,
    /// Lost frames rebuilt from the next packet's forward error correction (Opus).
    pub fec_recovered: u64,
    /// Round-trip time from RTCP (ms), once the peer has reported on our stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// The peer's loss of our stream from its last RTCP report (percent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_loss_pct: Option<f64>,
    /// Estimated listening quality of what we hear (E-model, ITU-T G.107; 1–4.5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mos: Option<f64>,
}

/// A call's media from start to end, sent once when it ends (the `summary` event).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CallSummary {
    pub codec: String,
    /// How long media ran, seconds.
    pub media_s: f64,
    pub packets_sent: u64,
    pub packets_received: u64,
    pub lost: u64,
    /// Lost over expected (received + lost), percent.
    pub loss_pct: f64,
    pub late: u64,
    pub concealed: u64,
    pub fec_recovered: u64,
    /// Interarrival jitter (RFC 3550), mean of per-second samples and the highest, ms.
    pub jitter_avg_ms: f64,
    pub jitter_max_ms: f64,
    /// Round-trip time from RTCP, mean and highest, ms (absent when the peer sent no reports).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_avg_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_max_ms: Option<f64>,
    /// The peer's loss of our stream from its last RTCP report, percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_loss_pct: Option<f64>,
    /// Estimated listening quality (E-model), mean and lowest over the call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mos_avg: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mos_min: Option<f64>,
}

/// What happened, for every front end. Events carry ids and the new state, so a late
/// subscriber can resync.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    /// The SIP transport is bound.
    Listening {
        addr: SocketAddr,
        transport: &'static str,
    },
    /// An account's registration changed state: registering, registered, unregistering,
    /// unregistered or failed. `reason` says why it failed (wrong password, forbidden, timeout,
    /// server error with its phrase, ...), `expires` how many seconds the registrar granted.
    Registration {
        account: String,
        state: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        expires: Option<u32>,
    },
    /// A call changed state. `code`/`reason` say why a call ended (SIP status or local cause).
    Call {
        call: CallId,
        state: CallState,
        peer: String,
        /// The account the call was placed as or arrived for (`None`: a direct call).
        #[serde(skip_serializing_if = "Option::is_none")]
        account: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<u16>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A DTMF digit arrived from the peer.
    Dtmf { call: CallId, digit: char },
    /// Media counters (periodically, and once when a call ends).
    Stats { call: CallId, stats: CallMediaStats },
    /// Once when a call with media ends, before its final state: the whole call's figures.
    Summary { call: CallId, summary: CallSummary },
    /// Audio levels of what a call sends (`tx`, after noise suppression) and what it plays
    /// (`rx`), over the last interval; only when the engine is asked for them
    /// ([`crate::engine::EngineConfig::levels_interval`]).
    Levels { call: CallId, tx: Level, rx: Level },
    /// A transfer's progress. Transferring our peer away (`call` is ours): `requested`, then
    /// `accepted` (the peer took the REFER), `done` (its new call was answered; ours ends) or
    /// `failed` (with the `code`). Being transferred (the peer asked us to call `to`):
    /// `transferring` with `new_call`, or `refused`; `asked` when the user has to decide.
    Transfer {
        call: CallId,
        state: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<u16>,
        #[serde(skip_serializing_if = "Option::is_none")]
        new_call: Option<CallId>,
    },
    /// Our call was redirected (3xx) and now tries `to`.
    Redirect { call: CallId, code: u16, to: String },
    /// The calls of a local conference, now (after a join, or when one of them ended).
    Conference { calls: Vec<CallId> },
    /// A recording is complete (stopped, or its call ended): the file is final.
    Recorded { call: CallId, path: PathBuf },
    /// A recording file was opened for a call.
    Recording { call: CallId, path: PathBuf },
    /// Something worth telling the user that is not a state change (a file error, a dropped
    /// malformed message).
    Warning {
        #[serde(skip_serializing_if = "Option::is_none")]
        call: Option<CallId>,
        message: String,
    },
    /// The control socket listens at `path` (published by `serve`, which starts it, through
    /// [`crate::engine::EngineHandle::publish`]; not by the engine).
    Control { path: PathBuf },
}

impl Event {
    /// The event as one line of JSON, the shape `serve`, `dial` and the control socket print
    /// (`{"event":"call","call":"c1","state":"connected",...}`). `None` only for a path that
    /// is not UTF-8, which JSON cannot carry.
    pub fn to_json(&self) -> Option<String> {
        serde_json::to_string(self).ok()
    }
}
