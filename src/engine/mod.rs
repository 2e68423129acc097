//! The engine: one tokio task that owns the SIP socket, RTP sockets, timers and calls, and
//! drives the sans-IO cores ([`crate::sip::ua`], [`crate::media`]). Front ends talk to it only
//! through [`EngineHandle`] ([`api::Command`] in, [`api::Event`] out).

mod actor;
pub mod api;
pub mod dns;
mod media;
pub mod recording;
mod ringer;
mod rtp_ports;
mod transport;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::sip::auth::Credentials;
use crate::sip::msg::Uri;
use crate::sip::sdp::CodecSpec;
use crate::sip::transport::Transport;
use crate::sip::txn::TimerConfig;
use api::{CallAudio, CallId, Command, CommandError, Event};

pub use rtp_ports::RtpPortRange;

/// Settings of one engine instance.
#[derive(Clone)]
pub struct EngineConfig {
    /// Where the SIP UDP socket binds.
    pub listen: SocketAddr,
    /// Local RTP ports to use (even ports; RTP only, RTCP comes later).
    pub rtp_ports: RtpPortRange,
    /// User part of our URI.
    pub user: String,
    /// Display name in From.
    pub display_name: Option<String>,
    /// User-Agent header.
    pub user_agent: String,
    /// Print every SIP message sent and received to stderr (unless `sip_trace_sink` takes them).
    pub sip_trace: bool,
    /// Hand every SIP message sent and received to this function instead of stderr (the TUI
    /// shows them in its log tab). It must not block: it runs on the engine task.
    pub sip_trace_sink: Option<SipTraceSink>,
    /// SIP timers (T1/T2/T4).
    pub timers: TimerConfig,
    /// How often media statistics events are sent during a call.
    pub stats_interval: Duration,
    /// Accounts with a registrar: `dial` can call as one of them (through its registrar,
    /// answering its challenges), and they register when `register` is set.
    pub accounts: Vec<AccountRegistration>,
    /// Register the accounts at start and unregister at exit (`serve`; `dial` only calls).
    pub register: bool,
    /// Codecs to offer and accept, in order of preference.
    pub codecs: Vec<CodecSpec>,
    /// DNS server for SIP server lookups; `None` = the system's.
    pub dns_server: Option<SocketAddr>,
    /// RNNoise on audio captured from a sound device (files and tones are sent as they are).
    pub noise_suppression: bool,
    /// Echo cancellation when a call uses both a microphone and a speaker.
    pub echo_cancellation: bool,
    /// Send DTMF as SIP INFO (application/dtmf-relay) instead of RFC 4733 events.
    pub dtmf_info: bool,
    /// Calls at once; an incoming call beyond this is turned away with 486 Busy Here.
    pub max_calls: usize,
    /// What a peer's REFER (being transferred) does.
    pub transfer_policy: api::TransferPolicy,
    /// Accounts in do-not-disturb: their incoming calls get 486 at once.
    pub dnd: Vec<String>,
    /// Ceiling of the adaptive jitter buffer's delay.
    pub jitter_ceiling: Duration,
    /// Where calls recorded on demand ([`Command::Record`]) go, unless the command names a file.
    pub record_dir: PathBuf,
    /// On-demand recordings: ours left, theirs right (else both mixed in one channel).
    pub record_stereo: bool,
    /// Music on hold: a WAV file looped to a peer we hold (`None`: nothing is sent).
    pub hold_music: Option<PathBuf>,
    /// Send a `levels` event per call this often (`None`: never).
    pub levels_interval: Option<Duration>,
    /// Play the ringtone on this playback device (`Some(None)`: the default one) while an
    /// incoming call rings here; `None`: no ringtone (a headless answering service). Calls
    /// placed through a playback device hear the ringback tone there while they ring, always.
    pub ringtone: Option<Option<String>>,
}

/// Where the SIP trace goes: called with the direction (true: received), the peer, and the
/// message's text.
pub type SipTraceSink = std::sync::Arc<dyn Fn(bool, SocketAddr, &str) + Send + Sync>;

/// An account that registers: who it is, where, and how it authenticates.
#[derive(Debug, Clone)]
pub struct AccountRegistration {
    /// The account's name (in events).
    pub name: String,
    /// Address of record, e.g. `sip:alice@example.com`.
    pub aor: Uri,
    /// The registrar, e.g. `sip:example.com:5060`.
    pub registrar: Uri,
    /// Seconds to ask for.
    pub expires: u32,
    /// Digest credentials (a `Debug` that hides the password).
    pub credentials: Option<Credentials>,
    /// SIP transport towards the registrar / outbound proxy.
    pub transport: Transport,
    /// Outbound proxy: requests go there, with it as the first Route.
    pub outbound_proxy: Option<Uri>,
    /// Extra CA certificates (PEM) for TLS/WSS.
    pub tls_ca_file: Option<PathBuf>,
    /// WebSocket path for WS/WSS.
    pub ws_path: String,
    /// Seconds between keepalives (0 = none).
    pub keepalive: u32,
    /// Display name in the From of its requests (`None`: the engine's).
    pub display_name: Option<String>,
    /// How its calls are made (codecs, DTMF, audio processing, transfers); `None`: the
    /// engine's own settings.
    pub settings: Option<CallSettings>,
}

/// What an account's config decides about its calls.
#[derive(Debug, Clone, PartialEq)]
pub struct CallSettings {
    /// Codecs to offer and accept, in order of preference.
    pub codecs: Vec<CodecSpec>,
    /// Send DTMF as SIP INFO instead of RFC 4733 events.
    pub dtmf_info: bool,
    /// RNNoise on audio captured from a sound device.
    pub noise_suppression: bool,
    /// Echo cancellation when a call uses both a microphone and a speaker.
    pub echo_cancellation: bool,
    /// What a peer's REFER does.
    pub transfer_policy: api::TransferPolicy,
}

impl EngineConfig {
    /// The settings of a call placed as, or arrived for, `account` (the engine's own for a
    /// direct call or an account without settings of its own).
    pub fn call_settings(&self, account: Option<&str>) -> CallSettings {
        account
            .and_then(|name| self.accounts.iter().find(|a| a.name == name))
            .and_then(|a| a.settings.clone())
            .unwrap_or_else(|| CallSettings {
                codecs: self.codecs.clone(),
                dtmf_info: self.dtmf_info,
                noise_suppression: self.noise_suppression,
                echo_cancellation: self.echo_cancellation,
                transfer_policy: self.transfer_policy,
            })
    }

    /// Apply a run's command-line choices to the engine's settings and every account's:
    /// `codecs` replace the lists when not empty; the two flags turn the processing off.
    pub fn override_all(
        &mut self,
        codecs: &[CodecSpec],
        no_noise_suppression: bool,
        no_echo_cancellation: bool,
    ) {
        let apply = |codecs_now: &mut Vec<CodecSpec>, ns: &mut bool, aec: &mut bool| {
            if !codecs.is_empty() {
                *codecs_now = codecs.to_vec();
            }
            *ns &= !no_noise_suppression;
            *aec &= !no_echo_cancellation;
        };
        apply(
            &mut self.codecs,
            &mut self.noise_suppression,
            &mut self.echo_cancellation,
        );
        for a in &mut self.accounts {
            if let Some(s) = &mut a.settings {
                apply(
                    &mut s.codecs,
                    &mut s.noise_suppression,
                    &mut s.echo_cancellation,
                );
            }
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 5060)),
            rtp_ports: RtpPortRange::default(),
            user: "termphone".into(),
            display_name: None,
            user_agent: format!("termphone/{}", env!("CARGO_PKG_VERSION")),
            sip_trace: false,
            sip_trace_sink: None,
            timers: TimerConfig::default(),
            stats_interval: Duration::from_secs(5),
            accounts: Vec::new(),
            register: false,
            codecs: vec![
                crate::sip::sdp::g722(),
                crate::sip::sdp::pcmu(),
                crate::sip::sdp::pcma(),
            ],
            dns_server: None,
            noise_suppression: true,
            echo_cancellation: true,
            dtmf_info: false,
            max_calls: 4,
            transfer_policy: api::TransferPolicy::Accept,
            dnd: Vec::new(),
            jitter_ceiling: Duration::from_millis(240),
            levels_interval: None,
            record_dir: PathBuf::from("recordings"),
            record_stereo: false,
            hold_music: None,
            ringtone: None,
        }
    }
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot listen on {addr} (udp): {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The way in: sends commands to the engine task and subscribes to its events.
#[derive(Clone)]
pub struct EngineHandle {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
    local_addr: SocketAddr,
}

/// A running engine: its handle, its first event subscription and the task.
pub struct Engine {
    pub handle: EngineHandle,
    /// Subscribed before the task started, so no event is missed.
    pub events: broadcast::Receiver<Event>,
    pub task: JoinHandle<()>,
}

/// Bind the SIP socket and start the engine task.
pub async fn start(cfg: EngineConfig) -> Result<Engine, EngineError> {
    start_observed(cfg).await.map(|(engine, _)| engine)
}

/// Like [`start`], plus a second event subscription taken before the task starts, for a
/// front end that runs beside the first one (the control socket beside `serve`) and must not
/// miss an event either.
pub async fn start_observed(
    cfg: EngineConfig,
) -> Result<(Engine, broadcast::Receiver<Event>), EngineError> {
    let socket = UdpSocket::bind(cfg.listen)
        .await
        .map_err(|source| EngineError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let local_addr = socket.local_addr().map_err(|source| EngineError::Bind {
        addr: cfg.listen,
        source,
    })?;
    // SIP over TCP on the same address, so that peers can open connections to our Contact;
    // a port taken by someone else only costs incoming TCP (outgoing connections still work).
    let tcp = match tokio::net::TcpListener::bind(local_addr).await {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!(addr = %local_addr, "no SIP over TCP listener: {e}");
            None
        }
    };
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let (ev_tx, ev_rx) = broadcast::channel(4096);
    let observer = ev_tx.subscribe();
    let _ = ev_tx.send(Event::Listening {
        addr: local_addr,
        transport: "udp",
    });
    if tcp.is_some() {
        let _ = ev_tx.send(Event::Listening {
            addr: local_addr,
            transport: "tcp",
        });
    }
    let actor = actor::EngineActor::new(cfg, socket, tcp, local_addr, cmd_rx, ev_tx.clone());
    let task = tokio::spawn(actor.run());
    let engine = Engine {
        handle: EngineHandle {
            commands: cmd_tx,
            events: ev_tx,
            local_addr,
        },
        events: ev_rx,
        task,
    };
    Ok((engine, observer))
}

impl EngineHandle {
    /// The bound SIP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A new subscription to the event stream.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Put a front end's own event into the stream, after the engine's so far, for every
    /// subscriber (the control socket announces itself so: `serve` prints it in order with
    /// the engine's events).
    pub fn publish(&self, event: Event) {
        let _ = self.events.send(event);
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(api::Reply<T>) -> Command,
    ) -> Result<T, CommandError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| CommandError::EngineStopped)?;
        rx.await.map_err(|_| CommandError::EngineStopped)?
    }

    /// Place a call.
    pub async fn dial(&self, target: &str, audio: CallAudio) -> Result<CallId, CommandError> {
        self.dial_as(None, target, audio).await
    }

    /// Place a call as an account (through its registrar, with its credentials).
    pub async fn dial_as(
        &self,
        account: Option<&str>,
        target: &str,
        audio: CallAudio,
    ) -> Result<CallId, CommandError> {
        self.request(|reply| Command::Dial {
            account: account.map(str::to_string),
            target: target.to_string(),
            audio,
            reply,
        })
        .await
    }

    /// Answer an incoming call.
    pub async fn answer(&self, call: CallId, audio: CallAudio) -> Result<(), CommandError> {
        self.request(|reply| Command::Answer {
            call,
            audio,
            hold_others: false,
            reply,
        })
        .await
    }

    /// Answer a call that waits while others are talking: they go on hold first.
    pub async fn answer_holding_others(
        &self,
        call: CallId,
        audio: CallAudio,
    ) -> Result<(), CommandError> {
        self.request(|reply| Command::Answer {
            call,
            audio,
            hold_others: true,
            reply,
        })
        .await
    }

    /// Reject an incoming call.
    pub async fn reject(&self, call: CallId, code: u16) -> Result<(), CommandError> {
        self.request(|reply| Command::Reject { call, code, reply })
            .await
    }

    /// End a call.
    pub async fn hangup(&self, call: CallId) -> Result<(), CommandError> {
        self.request(|reply| Command::Hangup { call, reply }).await
    }

    /// Send DTMF digits.
    pub async fn send_dtmf(&self, call: CallId, digits: &str) -> Result<(), CommandError> {
        self.request(|reply| Command::SendDtmf {
            call,
            digits: digits.to_string(),
            reply,
        })
        .await
    }

    /// Start (`on`) or stop recording a call; the file's path comes back.
    pub async fn record(
        &self,
        call: CallId,
        on: bool,
        path: Option<PathBuf>,
    ) -> Result<PathBuf, CommandError> {
        self.request(|reply| Command::Record {
            call,
            on,
            path,
            reply,
        })
        .await
    }

    /// Blind-transfer a connected call's peer to `to`.
    pub async fn transfer(&self, call: CallId, to: &str) -> Result<(), CommandError> {
        self.request(|reply| Command::Transfer {
            call,
            to: to.to_string(),
            with: None,
            reply,
        })
        .await
    }

    /// Attended transfer: the peer of `call` takes the place of our call `with`.
    pub async fn transfer_to_call(&self, call: CallId, with: CallId) -> Result<(), CommandError> {
        self.request(|reply| Command::Transfer {
            call,
            to: String::new(),
            with: Some(with),
            reply,
        })
        .await
    }

    /// Register (`on`) or unregister an account of the configuration.
    pub async fn set_registered(&self, account: &str, on: bool) -> Result<(), CommandError> {
        self.request(|reply| Command::Register {
            account: account.to_string(),
            on,
            reply,
        })
        .await
    }

    /// Send a ringing incoming call to `to` (302).
    pub async fn redirect(&self, call: CallId, to: &str) -> Result<(), CommandError> {
        self.request(|reply| Command::RedirectIncoming {
            call,
            to: to.to_string(),
            reply,
        })
        .await
    }

    /// Follow or refuse a transfer the peer asked for (policy `ask`).
    pub async fn answer_transfer(&self, call: CallId, accept: bool) -> Result<(), CommandError> {
        self.request(|reply| Command::AnswerTransfer {
            call,
            accept,
            reply,
        })
        .await
    }

    /// Join two calls into a local conference.
    pub async fn join(&self, call: CallId, with: CallId) -> Result<(), CommandError> {
        self.request(|reply| Command::Join { call, with, reply })
            .await
    }

    /// Put a connected call on hold.
    pub async fn hold(&self, call: CallId) -> Result<(), CommandError> {
        self.request(|reply| Command::Hold { call, reply }).await
    }

    /// Take a call off hold.
    pub async fn resume(&self, call: CallId) -> Result<(), CommandError> {
        self.request(|reply| Command::Resume {
            call,
            hold_others: false,
            reply,
        })
        .await
    }

    /// Switch to a held call: the calls that are talking go on hold, this one resumes.
    pub async fn switch_to(&self, call: CallId) -> Result<(), CommandError> {
        self.request(|reply| Command::Resume {
            call,
            hold_others: true,
            reply,
        })
        .await
    }

    /// Mute (`on`) or unmute a call's outgoing audio.
    pub async fn mute(&self, call: CallId, on: bool) -> Result<(), CommandError> {
        self.request(|reply| Command::Mute { call, on, reply })
            .await
    }

    /// Turn noise suppression of a call's microphone on or off.
    pub async fn set_noise_suppression(&self, call: CallId, on: bool) -> Result<(), CommandError> {
        self.request(|reply| Command::SetNoiseSuppression { call, on, reply })
            .await
    }

    /// End every call and stop the engine; returns when it has stopped.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Shutdown { reply: tx })
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
    }
}
