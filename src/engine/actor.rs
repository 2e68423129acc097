//! The engine task: `select!` over commands, the SIP socket, RTP, SIP timers and the media
//! clock. All protocol logic lives in the sans-IO cores; this file moves bytes and time.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, MissedTickBehavior};
use tracing::{debug, info, warn};

use super::api::{
    AudioSinkSpec, AudioSourceSpec, CallAudio, CallId, CallState, Command, CommandError, Event,
    TransferPolicy,
};
use super::media::{CallMedia, MediaOptions, StreamIds};
use super::ringer::{Ring, Ringer};
use super::transport::{tls_config, Connections, Inbound, PeerProfile};
use super::EngineConfig;
use crate::audio::RingKind;
use crate::sip::msg::{HeaderName, Host, Message, Uri};
use crate::sip::registration::{RegConfig, RegEvent, RegFailure, RegState};
use crate::sip::sdp::{self, Direction, LocalMedia, Negotiated};
use crate::sip::transport::Transport;
use crate::sip::ua::{CallIdentity, CallRef, EndCause, RegRef, UaConfig, UaEvent, UserAgent};

/// Largest datagram we read.
const MAX_DATAGRAM: usize = 65_535;
/// How long shutdown waits for BYEs to be answered.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Who placed the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallDirection {
    Outgoing,
    Incoming,
}

struct Call {
    id: CallId,
    direction: CallDirection,
    peer: String,
    /// The account the call was placed as or arrived for.
    account: Option<String>,
    state: CallState,
    local_ip: IpAddr,
    rtp: Option<Arc<UdpSocket>>,
    /// RTCP on the RTP port + 1, used when the peer does not multiplex (RFC 5761).
    rtcp: Option<Arc<UdpSocket>>,
    rtp_task: Option<JoinHandle<()>>,
    rtcp_task: Option<JoinHandle<()>>,
    local_media: Option<LocalMedia>,
    /// The peer's SDP offer (incoming calls).
    offer: Vec<u8>,
    audio: CallAudio,
    media: Option<CallMedia>,
    next_stats: Instant,
    /// A local failure that made us end the call (reported instead of a plain hang-up).
    failure: Option<String>,
    /// DTMF asked for while the media was still opening.
    pending_dtmf: String,
    /// This call was placed because the peer of that call transferred us here (REFER): its
    /// progress is reported there (NOTIFY).
    transfer_of: Option<CallRef>,
    /// A recording asked for before the media started (it starts with the media).
    pending_record: Option<std::path::PathBuf>,
    /// Incoming: the SDP answer already sent in a reliable 180 (RFC 3262), with what it
    /// negotiated; the 2xx repeats it and the media starts from it (rtp/rtcp/local_media
    /// are set with it).
    early_answer: Option<(String, Negotiated)>,
    /// A REFER asked for before the call was confirmed (its ACK on the way): the Refer-To.
    pending_refer: Option<String>,
    /// A REFER from the peer waiting for the user's answer (policy `ask`): its Refer-To.
    asked_refer: Option<String>,
    /// Digits to send as SIP INFO, one request at a time (`info_in_flight`).
    info_digits: std::collections::VecDeque<char>,
    info_in_flight: bool,
    /// Noise suppression switched before the media started (`None`: the configured default).
    noise_suppression: Option<bool>,
    /// When the next `levels` event is due.
    next_levels: Instant,
    /// Hold, mute and the session's current offer/answer state.
    session: SessionState,
}

/// A connected call's session: who holds it, what was last agreed, a re-INVITE in flight.
#[derive(Debug, Default)]
struct SessionState {
    /// We put the call on hold.
    local_hold: bool,
    /// The peer put us on hold (it does not want our audio).
    remote_hold: bool,
    /// Our microphone is muted (silence is sent).
    muted: bool,
    /// Our re-INVITE is out; `offered_hold` is what it asks for.
    reinvite_pending: bool,
    offered_hold: bool,
    /// The peer answered our re-INVITE with 491 (it sent its own): try again at this time.
    retry_at: Option<Instant>,
    /// What the last offer/answer agreed.
    negotiated: Option<Negotiated>,
    /// Our offer went in a 2xx (the peer's INVITE or re-INVITE had none): the answer comes
    /// with the ACK (RFC 3261 §13.2.1, §14.2).
    offer_in_2xx: bool,
}

/// Calls that hear each other: each call sends its own source plus what the others' peers
/// say, converted to its codec's rate.
#[derive(Default)]
struct Conference {
    members: Vec<CallRef>,
    /// (from, to) → a converter from one member's rate to another's.
    converters: BTreeMap<(CallRef, CallRef), crate::media::pipeline::FrameResampler>,
}

impl Conference {
    /// What each member must add to what it sends this tick: the sum of the other members'
    /// peers, each converted to this member's rate.
    fn mixes(&mut self, calls: &BTreeMap<CallRef, Call>) -> BTreeMap<CallRef, Vec<i16>> {
        let mut out = BTreeMap::new();
        let mut tmp = Vec::new();
        for &to in &self.members {
            let Some(dst) = calls.get(&to).and_then(|c| c.media.as_ref()) else {
                continue;
            };
            let n = (dst.rate() / 50).max(1) as usize; // the frame at this member's rate
            let n = n.max(dst.heard().len());
            let mut sum = vec![0i32; n];
            for &from in self.members.iter().filter(|&&f| f != to) {
                let Some(src) = calls.get(&from).and_then(|c| c.media.as_ref()) else {
                    continue;
                };
                if src.heard().is_empty() {
                    continue;
                }
                let conv = self.converters.entry((from, to)).or_insert_with(|| {
                    crate::media::pipeline::FrameResampler::new(src.rate(), dst.rate())
                });
                tmp.clear();
                tmp.resize(n, 0);
                conv.process(src.heard(), &mut tmp);
                for (s, v) in sum.iter_mut().zip(&tmp) {
                    *s += i32::from(*v);
                }
            }
            out.insert(
                to,
                sum.iter()
                    .map(|v| (*v).clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16)
                    .collect(),
            );
        }
        out
    }
}

/// A call's media, opened on the blocking pool.
type MediaStart = Result<(CallMedia, Vec<String>), String>;

pub(crate) struct EngineActor {
    cfg: EngineConfig,
    socket: UdpSocket,
    local_addr: SocketAddr,
    commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<Event>,
    ua: UserAgent,
    calls: BTreeMap<CallRef, Call>,
    rng: StdRng,
    rtp_tx: mpsc::Sender<(CallRef, Vec<u8>)>,
    rtp_rx: mpsc::Receiver<(CallRef, Vec<u8>)>,
    shutdown: Option<(oneshot::Sender<()>, Instant)>,
    /// Media being closed (recordings finalized) in the blocking pool.
    closing: Vec<JoinHandle<()>>,
    /// Media opened on the blocking pool, back to the loop.
    media_ready_tx: mpsc::Sender<(CallRef, MediaStart)>,
    media_ready_rx: mpsc::Receiver<(CallRef, MediaStart)>,
    /// Registrations → account name, the registrar's (or outbound proxy's) address and the
    /// transport to it.
    registrations: BTreeMap<RegRef, (String, SocketAddr, Transport)>,
    /// SIP over TCP: connections we accept.
    tcp_listener: Option<tokio::net::TcpListener>,
    /// TCP/TLS/WS/WSS connections.
    conns: Connections,
    inbound_rx: mpsc::Receiver<Inbound>,
    /// UDP keepalives: (registrar address, interval, next).
    udp_keepalives: Vec<(SocketAddr, Duration, Instant)>,
    /// The registration each account has now (`register` until `deregister`).
    active_regs: BTreeMap<String, RegRef>,
    /// Ringtone and ringback.
    ringer: Ringer,
    /// REFERs we accepted, whose calls are still to be placed: (call transferred, Refer-To).
    transfers: Vec<(CallRef, String)>,
    /// Incoming calls that replace one of ours (RFC 3891), still to be answered: (new, old).
    replacements: Vec<(CallRef, CallRef)>,
    /// Local conferences: the calls that hear each other.
    conferences: Vec<Conference>,
    /// Calls redirected (3xx) whose next target is still to be resolved and called.
    redirects: Vec<(CallRef, u16, String, Vec<Uri>)>,
    /// Incoming calls whose caller requires 100rel: their reliable 180 waits for the SDP
    /// answer it must carry (RTP ports are bound asynchronously).
    reliable_rings: Vec<CallRef>,
}

impl EngineActor {
    pub(crate) fn new(
        cfg: EngineConfig,
        socket: UdpSocket,
        tcp_listener: Option<tokio::net::TcpListener>,
        local_addr: SocketAddr,
        commands: mpsc::Receiver<Command>,
        events: broadcast::Sender<Event>,
    ) -> EngineActor {
        let mut seed_rng = StdRng::from_os_rng();
        let ua = UserAgent::new(UaConfig {
            user: cfg.user.clone(),
            display_name: cfg.display_name.clone(),
            user_agent: cfg.user_agent.clone(),
            timers: cfg.timers,
            seed: seed_rng.random(),
        });
        let (rtp_tx, rtp_rx) = mpsc::channel(1024);
        let (media_ready_tx, media_ready_rx) = mpsc::channel(16);
        let (inbound_tx, inbound_rx) = mpsc::channel(1024);
        EngineActor {
            tcp_listener,
            conns: Connections::new(inbound_tx),
            inbound_rx,
            udp_keepalives: Vec::new(),
            active_regs: BTreeMap::new(),
            ringer: Ringer::new(),
            transfers: Vec::new(),
            replacements: Vec::new(),
            conferences: Vec::new(),
            redirects: Vec::new(),
            reliable_rings: Vec::new(),
            cfg,
            socket,
            local_addr,
            commands,
            events,
            ua,
            calls: BTreeMap::new(),
            rng: seed_rng,
            rtp_tx,
            rtp_rx,
            shutdown: None,
            closing: Vec::new(),
            registrations: BTreeMap::new(),
            media_ready_tx,
            media_ready_rx,
        }
    }

    pub(crate) async fn run(mut self) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        // The media clock runs only while some call has media, so an idle `serve` sleeps.
        let mut media_clock = tokio::time::interval(Duration::from_millis(20));
        media_clock.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let mut media_running = false;
        info!(addr = %self.local_addr, "engine started");
        self.start_registrations().await;
        self.drain_ua().await;
        loop {
            if let Some((_, deadline)) = &self.shutdown {
                if (self.calls.is_empty() && !self.ua.has_pending_requests())
                    || Instant::now() >= *deadline
                {
                    break;
                }
            }
            let has_media = self.calls.values().any(|c| c.media.is_some());
            if has_media && !media_running {
                media_clock.reset();
            }
            media_running = has_media;
            let timeout = self.ua.poll_timeout();
            let shutdown_deadline = self.shutdown.as_ref().map(|(_, d)| *d);
            let keepalive = self.udp_keepalives.iter().map(|k| k.2).min();
            let wake = [timeout, shutdown_deadline, keepalive]
                .into_iter()
                .flatten()
                .min();
            tokio::select! {
                cmd = self.commands.recv(), if self.shutdown.is_none() => match cmd {
                    Some(cmd) => self.on_command(cmd).await,
                    None => self.begin_shutdown(None),
                },
                res = self.socket.recv_from(&mut buf) => match res {
                    Ok((n, source)) => {
                        let now = Instant::now();
                        self.trace(true, "<--", source, &buf[..n]);
                        let local = self.local_for(source);
                        self.ua.handle_datagram(now, &buf[..n], source, local);
                    }
                    Err(e) => debug!("sip socket receive error: {e}"),
                },
                Some((call, data)) = self.rtp_rx.recv() => {
                    if let Some(media) = self.calls.get_mut(&call).and_then(|c| c.media.as_mut()) {
                        media.handle_datagram(Instant::now(), &data);
                    }
                },
                _ = sleep_until(wake.map(tokio::time::Instant::from_std).unwrap_or_else(far_future)), if wake.is_some() => {
                    let now = Instant::now();
                    self.ua.handle_timeout(now);
                    self.send_udp_keepalives(now).await;
                },
                Some(inbound) = self.inbound_rx.recv() => self.on_inbound(inbound),
                accepted = accept(&self.tcp_listener) => match accepted {
                    Ok((stream, peer)) => {
                        debug!(%peer, "SIP over TCP connection accepted");
                        self.conns.accepted(stream, peer);
                    }
                    Err(e) => debug!("TCP accept failed: {e}"),
                },
                _ = media_clock.tick(), if media_running => self.on_media_tick(),
                Some((id, result)) = self.media_ready_rx.recv() => self.on_media_ready(id, result),
            }
            self.drain_ua().await;
        }
        for (_, call) in std::mem::take(&mut self.calls) {
            self.finish_media(call);
        }
        for task in std::mem::take(&mut self.closing) {
            let _ = task.await;
        }
        if let Some((reply, _)) = self.shutdown.take() {
            let _ = reply.send(());
        }
        info!("engine stopped");
    }

    /// Register every configured account: resolve the registrar, choose the Contact from the
    /// local address that reaches it, and hand the registration to the user agent.
    async fn start_registrations(&mut self) {
        if !self.cfg.register {
            return;
        }
        let accounts = self.cfg.accounts.clone();
        for account in accounts {
            self.register_account(account).await;
        }
    }

    /// Start registering one account (the UA keeps it registered until told otherwise).
    async fn register_account(&mut self, account: super::AccountRegistration) {
        {
            let next_hop = account
                .outbound_proxy
                .as_ref()
                .unwrap_or(&account.registrar);
            let (dest, transport) = match self.prepare_next_hop(next_hop, &account).await {
                Ok(d) => d,
                Err(reason) => {
                    warn!(account = %account.name, "{reason}");
                    self.emit(Event::Registration {
                        account: account.name.clone(),
                        state: "failed",
                        reason: Some(reason),
                        expires: None,
                    });
                    return;
                }
            };
            let local = self.local_for(dest);
            let mut contact = Uri::sip(
                account.aor.user.as_deref(),
                crate::sip::dialog::ip_host(local),
                Some(local.port()),
            );
            if transport != Transport::Udp {
                contact
                    .params
                    .set("transport", Some(transport.param_name()));
            }
            let mut cfg = RegConfig::new(
                account.aor.clone(),
                account.registrar.clone(),
                contact,
                account.expires,
                self.rng.random(),
            );
            cfg.credentials = account.credentials.clone();
            cfg.user_agent = self.cfg.user_agent.clone();
            cfg.display_name = account
                .display_name
                .clone()
                .or_else(|| self.cfg.display_name.clone());
            cfg.route = account.outbound_proxy.clone();
            if transport == Transport::Udp && account.keepalive > 0 {
                let every = Duration::from_secs(account.keepalive.into());
                self.udp_keepalives
                    .push((dest, every, Instant::now() + every));
            }
            let reg = self.ua.register(Instant::now(), cfg, dest);
            self.registrations
                .insert(reg, (account.name.clone(), dest, transport));
            self.active_regs.insert(account.name.clone(), reg);
        }
    }

    /// `register` / `deregister` of an account by name (from the control socket).
    async fn set_registered(&mut self, name: &str, on: bool) -> Result<(), CommandError> {
        let Some(account) = self.cfg.accounts.iter().find(|a| a.name == name).cloned() else {
            return Err(CommandError::NoSuchAccount(name.to_string()));
        };
        match (on, self.active_regs.get(name).copied()) {
            (true, Some(_)) => Ok(()), // registered or registering already
            (true, None) => {
                self.register_account(account).await;
                Ok(())
            }
            (false, Some(reg)) => {
                self.active_regs.remove(name);
                self.ua.unregister(Instant::now(), reg);
                Ok(())
            }
            (false, None) => Ok(()), // not registered: nothing to undo
        }
    }

    /// Resolve the first hop for an account (registrar or outbound proxy) and tell the
    /// connection layer how to reach it (TLS trust and name, WebSocket path, keepalive).
    async fn prepare_next_hop(
        &mut self,
        next_hop: &Uri,
        account: &super::AccountRegistration,
    ) -> Result<(SocketAddr, Transport), String> {
        let transport = crate::sip::dialog::uri_transport(next_hop).unwrap_or(account.transport);
        let dest = resolve(
            next_hop,
            transport,
            self.cfg.dns_server,
            self.local_addr.is_ipv6(),
        )
        .await
        .map_err(|reason| format!("cannot resolve {next_hop}: {reason}"))?;
        if transport != Transport::Udp {
            let tls = if transport.is_secure() {
                Some(tls_config(account.tls_ca_file.as_deref())?)
            } else {
                None
            };
            let keepalive =
                (account.keepalive > 0).then(|| Duration::from_secs(account.keepalive.into()));
            self.conns.set_profile(
                transport,
                dest,
                PeerProfile {
                    server_name: host_name(next_hop),
                    tls,
                    ws_path: account.ws_path.clone(),
                    keepalive,
                },
            );
        }
        Ok((dest, transport))
    }

    /// A CRLF datagram to each UDP registrar whose keepalive is due (RFC 5626 §3.5.1 uses
    /// STUN; a CRLF is what most softphones send and every SIP server ignores).
    async fn send_udp_keepalives(&mut self, now: Instant) {
        for i in 0..self.udp_keepalives.len() {
            let (dest, every, next) = self.udp_keepalives[i];
            if next <= now {
                let _ = self.socket.send_to(b"\r\n\r\n", dest).await;
                self.udp_keepalives[i].2 = now + every;
            }
        }
    }

    fn on_inbound(&mut self, inbound: Inbound) {
        let now = Instant::now();
        match inbound {
            Inbound::Framed {
                transport,
                peer,
                framed,
            } => {
                if self.cfg.sip_trace || self.cfg.sip_trace_sink.is_some() {
                    if let Ok(crate::sip::msg::Datagram::Message(m)) = &framed {
                        self.trace(true, &format!("<-- {transport}"), peer, &m.to_bytes());
                    }
                }
                let local = self.local_for(peer);
                self.ua.handle_framed(now, framed, peer, local, transport);
            }
            Inbound::Failed {
                transport,
                peer,
                reason,
            } => {
                info!(%peer, %transport, "{reason}");
                self.conns.remove(transport, peer);
                self.ua.connection_failed(now, peer, &reason);
            }
        }
    }

    fn on_registration(&mut self, reg: RegRef, event: RegEvent) {
        let Some((account, dest, transport)) = self.registrations.get(&reg).cloned() else {
            return;
        };
        let RegEvent::StateChanged(state) = event else {
            return; // a Contact rewrite (NAT) is visible in the next state change
        };
        let (name, reason, expires) = match state {
            RegState::Unregistered => ("unregistered", None, None),
            RegState::Registering => ("registering", None, None),
            RegState::Registered { granted, .. } => ("registered", None, Some(granted)),
            RegState::Unregistering => ("unregistering", None, None),
            RegState::Failed {
                reason: RegFailure::Timeout,
                ..
            } => (
                "failed",
                Some(format!(
                    "no response from the registrar at {dest} ({transport})"
                )),
                None,
            ),
            RegState::Failed { reason, .. } => ("failed", Some(reason.to_string()), None),
        };
        info!(%account, state = name, reason = ?reason, "registration");
        self.emit(Event::Registration {
            account,
            state: name,
            reason,
            expires,
        });
    }

    fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    fn warn(&self, call: Option<CallId>, message: String) {
        warn!(call = ?call, "{message}");
        self.emit(Event::Warning { call, message });
    }

    /// The address the peer at `dest` sees us at: our bound address, or, when bound to a
    /// wildcard address, the local address the OS would route through.
    fn local_for(&self, dest: SocketAddr) -> SocketAddr {
        if !self.local_addr.ip().is_unspecified() {
            return self.local_addr;
        }
        let probe = match dest {
            SocketAddr::V4(_) => std::net::UdpSocket::bind("0.0.0.0:0"),
            SocketAddr::V6(_) => std::net::UdpSocket::bind("[::]:0"),
        };
        let ip = probe
            .and_then(|s| s.connect(dest).and_then(|_| s.local_addr()))
            .map(|a| a.ip())
            .unwrap_or_else(|_| self.local_addr.ip());
        SocketAddr::new(ip, self.local_addr.port())
    }

    async fn on_command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Dial {
                account,
                target,
                audio,
                reply,
            } => {
                let res = self
                    .dial(now, account.as_deref(), &target, audio, Vec::new())
                    .await;
                let _ = reply.send(res);
            }
            Command::Answer {
                call,
                audio,
                hold_others,
                reply,
            } => {
                if hold_others && self.calls.contains_key(&call.0) {
                    self.hold_others(now, call);
                }
                let res = self.answer(now, call, audio).await;
                let _ = reply.send(res);
            }
            Command::Reject { call, code, reply } => {
                let res = if !(400..=699).contains(&code) {
                    Err(CommandError::InvalidCode(code))
                } else {
                    self.ua
                        .reject(now, call.0, code)
                        .map_err(|_| self.state_error(call))
                };
                let _ = reply.send(res);
            }
            Command::Hangup { call, reply } => {
                let res = self
                    .ua
                    .hangup(now, call.0)
                    .map_err(|_| self.state_error(call));
                let _ = reply.send(res);
            }
            Command::SendDtmf {
                call,
                digits,
                reply,
            } => {
                let res = if digits.is_empty()
                    || !digits.chars().all(|c| "0123456789*#ABCDabcd".contains(c))
                {
                    Err(CommandError::InvalidDtmf(digits))
                } else {
                    let digits = digits.to_ascii_uppercase();
                    let info = self
                        .calls
                        .get(&call.0)
                        .is_some_and(|c| self.cfg.call_settings(c.account.as_deref()).dtmf_info);
                    match self.calls.get_mut(&call.0) {
                        Some(c) if c.state == CallState::Connected && info => {
                            c.info_digits.extend(digits.chars());
                            self.send_info_dtmf(now, call.0);
                            Ok(())
                        }
                        Some(c) if c.state == CallState::Connected => {
                            match c.media.as_mut() {
                                Some(media) => media.send_dtmf(now, &digits),
                                // Media still opening: sent as soon as it runs.
                                None => c.pending_dtmf.push_str(&digits),
                            }
                            Ok(())
                        }
                        _ => Err(self.state_error(call)),
                    }
                };
                let _ = reply.send(res);
            }
            Command::Hold { call, reply } => {
                let res = self.reoffer(now, call, true);
                let _ = reply.send(res);
            }
            Command::Resume {
                call,
                hold_others,
                reply,
            } => {
                if hold_others && self.calls.get(&call.0).is_some_and(|c| is_up(c.state)) {
                    self.hold_others(now, call);
                }
                let res = self.reoffer(now, call, false);
                let _ = reply.send(res);
            }
            Command::Record {
                call,
                on,
                path,
                reply,
            } => {
                let res = self.record(call, on, path);
                let _ = reply.send(res);
            }
            Command::Transfer {
                call,
                to,
                with,
                reply,
            } => {
                let res = self.transfer(now, call, &to, with);
                let _ = reply.send(res);
            }
            Command::Register { account, on, reply } => {
                let res = self.set_registered(&account, on).await;
                let _ = reply.send(res);
            }
            Command::RedirectIncoming { call, to, reply } => {
                let res = match parse_target(&to) {
                    Ok(uri) => self
                        .ua
                        .redirect_incoming(now, call.0, &uri)
                        .map_err(|_| self.state_error(call)),
                    Err(e) => Err(e),
                };
                let _ = reply.send(res);
            }
            Command::Join { call, with, reply } => {
                let res = self.join(now, call, with);
                let _ = reply.send(res);
            }
            Command::AnswerTransfer {
                call,
                accept,
                reply,
            } => {
                let asked = self
                    .calls
                    .get_mut(&call.0)
                    .and_then(|c| c.asked_refer.take());
                let res = match asked {
                    None if self.calls.contains_key(&call.0) => Err(CommandError::NotApplicable {
                        call,
                        reason: "no transfer is waiting for an answer".into(),
                    }),
                    None => Err(CommandError::NoSuchCall(call)),
                    Some(refer_to) if accept => {
                        let _ = self.ua.accept_refer(now, call.0);
                        self.transfers.push((call.0, refer_to));
                        Ok(())
                    }
                    Some(refer_to) => {
                        let _ = self.ua.reject_refer(now, call.0, 603);
                        self.transfer_event(call, "refused", Some(refer_to), Some(603), None);
                        Ok(())
                    }
                };
                let _ = reply.send(res);
            }
            Command::Mute { call, on, reply } => {
                let res = match self.calls.get_mut(&call.0) {
                    Some(c) if is_up(c.state) => {
                        c.session.muted = on;
                        if let Some(media) = c.media.as_mut() {
                            media.set_muted(on);
                        }
                        Ok(())
                    }
                    _ => Err(self.state_error(call)),
                };
                let _ = reply.send(res);
            }
            Command::SetNoiseSuppression { call, on, reply } => {
                let res = match self.calls.get_mut(&call.0) {
                    Some(c) if c.state.is_final() => Err(CommandError::WrongState(call)),
                    Some(c) => match (&c.audio.source, c.media.as_mut()) {
                        (AudioSourceSpec::Device(_), Some(media)) => media
                            .set_noise_suppression(on)
                            .map_err(|reason| CommandError::NotApplicable { call, reason }),
                        // Not answered, or media still opening: applied when it starts.
                        (AudioSourceSpec::Device(_), None) => {
                            c.noise_suppression = Some(on);
                            Ok(())
                        }
                        _ => Err(CommandError::NotApplicable {
                            call,
                            reason: "noise suppression applies to a microphone; this call's \
                                     audio comes from a file, a tone, silence or an echo"
                                .into(),
                        }),
                    },
                    None => Err(CommandError::NoSuchCall(call)),
                };
                let _ = reply.send(res);
            }
            Command::Shutdown { reply } => self.begin_shutdown(Some(reply)),
        }
    }

    fn state_error(&self, call: CallId) -> CommandError {
        if self.calls.contains_key(&call.0) {
            CommandError::WrongState(call)
        } else {
            CommandError::NoSuchCall(call)
        }
    }

    fn begin_shutdown(&mut self, reply: Option<oneshot::Sender<()>>) {
        let now = Instant::now();
        let regs: Vec<RegRef> = self.registrations.keys().copied().collect();
        for reg in regs {
            self.ua.unregister(now, reg);
        }
        let ids: Vec<CallRef> = self.calls.keys().copied().collect();
        for id in ids {
            let _ = self.ua.hangup(now, id);
        }
        let (tx, _rx) = oneshot::channel();
        self.shutdown = Some((reply.unwrap_or(tx), now + SHUTDOWN_GRACE));
    }

    async fn dial(
        &mut self,
        now: Instant,
        account: Option<&str>,
        target: &str,
        audio: CallAudio,
        extra_headers: Vec<(HeaderName, String)>,
    ) -> Result<CallId, CommandError> {
        let account = match account {
            Some(name) => Some(
                self.cfg
                    .accounts
                    .iter()
                    .find(|a| a.name == name)
                    .cloned()
                    .ok_or_else(|| CommandError::NoSuchAccount(name.to_string()))?,
            ),
            None => None,
        };
        let uri = match &account {
            // A bare user or number calls that user at the account's domain.
            Some(a) if !target.contains('@') && !target.contains(':') => {
                parse_target(&format!("sip:{target}@{}", a.aor.host_port()))?
            }
            _ => parse_target(target)?,
        };
        // With an account: its outbound proxy, else its registrar; without, the target itself.
        let (dest, transport) = match &account {
            Some(a) => {
                let next_hop = a.outbound_proxy.as_ref().unwrap_or(&a.registrar).clone();
                self.prepare_next_hop(&next_hop, a).await
            }
            None => {
                let transport = crate::sip::dialog::uri_transport(&uri).unwrap_or_default();
                resolve(
                    &uri,
                    transport,
                    self.cfg.dns_server,
                    self.local_addr.is_ipv6(),
                )
                .await
                .map(|d| (d, transport))
            }
        }
        .map_err(|reason| CommandError::InvalidTarget {
            target: target.into(),
            reason,
        })?;
        let local = self.local_for(dest);
        let (rtp, rtcp, local_media) = self
            .open_rtp(local.ip(), account.as_ref().map(|a| a.name.as_str()))
            .await
            .map_err(|e| CommandError::InvalidTarget {
                target: target.into(),
                reason: format!("no local RTP port: {e}"),
            })?;
        let offer = sdp::create_offer(&local_media).into_bytes();
        let account_name = account.as_ref().map(|a| a.name.clone());
        let identity = CallIdentity {
            from: account.as_ref().map(|a| a.aor.clone()),
            route: account.as_ref().and_then(|a| a.outbound_proxy.clone()),
            credentials: account.and_then(|a| a.credentials),
            transport,
            extra_headers,
        };
        let id = self
            .ua
            .invite_as(now, uri.clone(), dest, local, offer, identity);
        let call = CallId(id);
        let peer = uri.to_string();
        self.calls.insert(
            id,
            Call {
                id: call,
                direction: CallDirection::Outgoing,
                peer: peer.clone(),
                account: account_name.clone(),
                state: CallState::Dialing,
                local_ip: local.ip(),
                rtp: Some(rtp),
                rtcp: Some(rtcp),
                rtp_task: None,
                rtcp_task: None,
                local_media: Some(local_media),
                offer: Vec::new(),
                audio,
                media: None,
                next_stats: now,
                noise_suppression: None,
                next_levels: now,
                session: SessionState::default(),
                failure: None,
                pending_dtmf: String::new(),
                info_digits: Default::default(),
                transfer_of: None,
                pending_record: None,
                early_answer: None,
                pending_refer: None,
                asked_refer: None,
                info_in_flight: false,
            },
        );
        self.emit(Event::Call {
            call,
            state: CallState::Dialing,
            peer,
            account: account_name,
            code: None,
            reason: None,
        });
        Ok(call)
    }

    async fn answer(
        &mut self,
        now: Instant,
        call: CallId,
        audio: CallAudio,
    ) -> Result<(), CommandError> {
        let Some(c) = self.calls.get(&call.0) else {
            return Err(CommandError::NoSuchCall(call));
        };
        if c.state != CallState::Incoming {
            return Err(CommandError::WrongState(call));
        }
        if c.early_answer.is_some() {
            return self.answer_as_rung(now, call, audio);
        }
        let local_ip = c.local_ip;
        let account = c.account.clone();
        let offer = String::from_utf8_lossy(&c.offer).into_owned();
        let (rtp, rtcp, local_media) = match self.open_rtp(local_ip, account.as_deref()).await {
            Ok(x) => x,
            Err(e) => {
                self.warn(Some(call), format!("no local RTP port: {e}"));
                let _ = self.ua.reject(now, call.0, 500);
                return Ok(());
            }
        };
        if offer.trim().is_empty() {
            // A late offer (RFC 3261 §13.2.1): our offer, the one we would dial with, goes in
            // the 200; the answer comes with the ACK, and the media starts then.
            let ours = sdp::create_offer(&local_media);
            self.ua
                .answer(now, call.0, ours.into_bytes())
                .map_err(|_| CommandError::WrongState(call))?;
            let c = self.calls.get_mut(&call.0).expect("checked above");
            c.rtp = Some(rtp);
            c.rtcp = Some(rtcp);
            c.local_media = Some(local_media);
            c.audio = audio;
            c.session.offer_in_2xx = true;
            self.set_state(call.0, CallState::Connected, None, None);
            return Ok(());
        }
        match sdp::create_answer(&offer, &local_media) {
            Ok((answer, negotiated)) => {
                self.ua
                    .answer(now, call.0, answer.into_bytes())
                    .map_err(|_| CommandError::WrongState(call))?;
                let c = self.calls.get_mut(&call.0).expect("checked above");
                c.rtp = Some(rtp);
                c.rtcp = Some(rtcp);
                c.local_media = Some(local_media);
                c.audio = audio;
                self.start_media(call.0, &negotiated);
                self.set_state(call.0, CallState::Connected, None, None);
                Ok(())
            }
            Err(e) => {
                let code = e.sip_status();
                self.warn(Some(call), format!("cannot answer the offer: {e}"));
                let _ = self.ua.reject(now, call.0, code);
                Ok(())
            }
        }
    }

    /// Answer a call whose reliable 180 carried the SDP answer already: the 2xx repeats it, the
    /// media starts from what it negotiated.
    fn answer_as_rung(
        &mut self,
        now: Instant,
        call: CallId,
        audio: CallAudio,
    ) -> Result<(), CommandError> {
        let Some((answer, negotiated)) = self
            .calls
            .get_mut(&call.0)
            .and_then(|c| c.early_answer.take())
        else {
            return Err(CommandError::WrongState(call));
        };
        self.ua
            .answer(now, call.0, answer.into_bytes())
            .map_err(|_| CommandError::WrongState(call))?;
        if let Some(c) = self.calls.get_mut(&call.0) {
            c.audio = audio;
        }
        self.start_media(call.0, &negotiated);
        self.set_state(call.0, CallState::Connected, None, None);
        Ok(())
    }

    /// The reliable 180 to a caller that requires 100rel, with our SDP answer in it (the first
    /// reliable response to an INVITE with an offer carries the answer: RFC 3261 §13.2.1,
    /// RFC 6337 §3.1). An offer we cannot answer is refused here, before ringing.
    async fn ring_with_answer(&mut self, call: CallRef) {
        let now = Instant::now();
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if c.state != CallState::Incoming || !self.ua.wants_reliable_ringing(call) {
            return;
        }
        let local_ip = c.local_ip;
        let account = c.account.clone();
        let offer = String::from_utf8_lossy(&c.offer).into_owned();
        if offer.trim().is_empty() {
            // No offer to answer: an ordinary reliable 180 without a body.
            let _ = self.ua.ringing(now, call);
            return;
        }
        let (rtp, rtcp, local_media) = match self.open_rtp(local_ip, account.as_deref()).await {
            Ok(x) => x,
            Err(e) => {
                self.warn(Some(CallId(call)), format!("no local RTP port: {e}"));
                let _ = self.ua.reject(now, call, 500);
                return;
            }
        };
        match sdp::create_answer(&offer, &local_media) {
            Ok((answer, negotiated)) => {
                if self
                    .ua
                    .ringing_with_answer(now, call, answer.clone().into_bytes())
                    .is_ok()
                {
                    if let Some(c) = self.calls.get_mut(&call) {
                        c.rtp = Some(rtp);
                        c.rtcp = Some(rtcp);
                        c.local_media = Some(local_media);
                        c.early_answer = Some((answer, negotiated));
                    }
                }
            }
            Err(e) => {
                let code = e.sip_status();
                self.warn(Some(CallId(call)), format!("cannot answer the offer: {e}"));
                let _ = self.ua.reject(now, call, code);
            }
        }
    }

    /// RTP and RTCP sockets (an even/odd port pair) and the media description to offer or
    /// answer with.
    async fn open_rtp(
        &mut self,
        ip: IpAddr,
        account: Option<&str>,
    ) -> std::io::Result<(Arc<UdpSocket>, Arc<UdpSocket>, LocalMedia)> {
        let bind_ip = if self.local_addr.ip().is_unspecified() {
            self.local_addr.ip()
        } else {
            ip
        };
        let (socket, rtcp) = self
            .cfg
            .rtp_ports
            .bind_pair(bind_ip, self.rng.random())
            .await?;
        let port = socket.local_addr()?.port();
        let local_media = LocalMedia {
            addr: ip,
            port,
            codecs: self.cfg.call_settings(account).codecs,
            telephone_event: true,
            direction: Direction::SendRecv,
            session_id: self.rng.random_range(1..u32::MAX as u64),
            session_version: 1,
            username: "termphone".into(),
            // Offer RTCP on the RTP port; without the peer's agreement it goes over `rtcp`.
            rtcp_mux: true,
        };
        Ok((Arc::new(socket), Arc::new(rtcp), local_media))
    }

    /// Start a call's media. Opening files and devices is blocking work (a device can take
    /// seconds), so it runs on the blocking pool; the result comes back to the loop through
    /// `media_ready` and [`EngineActor::on_media_ready`] wires it in.
    fn start_media(&mut self, id: CallRef, negotiated: &Negotiated) {
        let ids = StreamIds {
            ssrc: self.rng.random(),
            seq: self.rng.random(),
            timestamp: self.rng.random(),
            cname_seed: self.rng.random(),
        };
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(rtp) = c.rtp.clone() else { return };
        let rtcp = c.rtcp.clone();
        c.session.negotiated = Some(negotiated.clone());
        let negotiated = negotiated.clone();
        let audio = c.audio.clone();
        let ready = self.media_ready_tx.clone();
        let settings = self.cfg.call_settings(c.account.as_deref());
        let options = MediaOptions {
            noise_suppression: settings.noise_suppression,
            echo_cancellation: settings.echo_cancellation,
            hold_music: self.cfg.hold_music.clone(),
            jitter_ceiling: self.cfg.jitter_ceiling,
        };
        tokio::task::spawn_blocking(move || {
            let result = CallMedia::start(&negotiated, &audio, rtp, rtcp, ids, options);
            let _ = ready.blocking_send((id, result));
        });
    }

    fn on_media_ready(&mut self, id: CallRef, result: MediaStart) {
        let Some(c) = self.calls.get_mut(&id) else {
            // The call ended while its media was opening.
            if let Ok((media, _)) = result {
                self.closing.push(tokio::task::spawn_blocking(move || {
                    let _ = media.finish();
                }));
            }
            return;
        };
        let call = c.id;
        let (mut media, warnings) = match result {
            Ok(x) => x,
            Err(e) => {
                c.failure = Some(e.clone());
                self.warn(Some(call), e);
                let _ = self.ua.hangup(Instant::now(), id);
                return;
            }
        };
        let now = Instant::now();
        if !c.pending_dtmf.is_empty() {
            media.send_dtmf(now, &std::mem::take(&mut c.pending_dtmf));
        }
        if let Some(on) = c.noise_suppression.take() {
            let _ = media.set_noise_suppression(on);
        }
        // Held or muted while the media was opening.
        media.set_muted(c.session.muted);
        let pending_record = c.pending_record.take();
        if let Some(neg) = &c.session.negotiated {
            let (send, recv) = media_flow(&c.session, neg, media.has_hold_music());
            media.set_session(send, recv, neg);
        }
        media.set_held(c.session.local_hold);
        c.next_levels = now;
        c.media = Some(media);
        c.next_stats = now + self.cfg.stats_interval;
        // RTP receive: a small task per call forwards datagrams into the engine loop.
        if let Some(rtp) = c.rtp.clone() {
            let tx = self.rtp_tx.clone();
            c.rtp_task = Some(tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                // What queued up before the media started (the peer sends as soon as it
                // answers; we start at its 200 OK, later if that was lost) is stale: played
                // now it would only add delay, and its arrival all at once would look like a
                // burst of network jitter to the jitter buffer.
                let mut stale = 0usize;
                while rtp.try_recv_from(&mut buf).is_ok() {
                    stale += 1;
                }
                if stale > 0 {
                    tracing::debug!(call = %call, stale, "dropped RTP queued before the media started");
                }
                while let Ok((n, _src)) = rtp.recv_from(&mut buf).await {
                    if tx.try_send((id, buf[..n].to_vec())).is_err() && tx.is_closed() {
                        break;
                    }
                }
            }));
        }
        // RTCP on its own port (when not multiplexed) joins the same stream of datagrams; the
        // media tells RTP from RTCP by payload type (RFC 5761 §4).
        if let Some(rtcp) = c.rtcp.clone() {
            let tx = self.rtp_tx.clone();
            c.rtcp_task = Some(tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                while let Ok((n, _src)) = rtcp.recv_from(&mut buf).await {
                    if tx.try_send((id, buf[..n].to_vec())).is_err() && tx.is_closed() {
                        break;
                    }
                }
            }));
        }
        if let crate::engine::api::AudioSinkSpec::File(path) = &c.audio.sink {
            let path = path.clone();
            self.emit(Event::Recording { call, path });
        }
        if let Some(path) = pending_record {
            let stereo = self.cfg.record_stereo;
            let started = self
                .calls
                .get_mut(&id)
                .and_then(|c| c.media.as_mut())
                .map(|m| m.start_recording(&path, stereo));
            match started {
                Some(Ok(())) => self.emit(Event::Recording { call, path }),
                Some(Err(e)) => self.warn(Some(call), e),
                None => {}
            }
        }
        for w in warnings {
            self.warn(Some(call), w);
        }
    }

    fn on_media_tick(&mut self) {
        let now = Instant::now();
        let retries: Vec<(CallId, bool)> = self
            .calls
            .values()
            .filter(|c| c.session.retry_at.is_some_and(|t| t <= now))
            .map(|c| (c.id, c.session.offered_hold))
            .collect();
        for (call, hold) in retries {
            if let Some(c) = self.calls.get_mut(&call.0) {
                c.session.retry_at = None;
            }
            if let Err(e) = self.reoffer(now, call, hold) {
                self.warn(
                    Some(call),
                    format!("could not send the re-INVITE again: {e}"),
                );
            }
        }
        let mut warnings = Vec::new();
        let mut events = Vec::new();
        // Every call plays what its peer sent; then each sends its source, plus, in a
        // conference, what the other members' peers said.
        for c in self.calls.values_mut() {
            if let Some(media) = c.media.as_mut() {
                if let Some(w) = media.tick_playout(now) {
                    warnings.push((c.id, w));
                }
            }
        }
        let mut mixes = BTreeMap::new();
        for conf in &mut self.conferences {
            mixes.extend(conf.mixes(&self.calls));
        }
        for (id, c) in self.calls.iter_mut() {
            let Some(media) = c.media.as_mut() else {
                continue;
            };
            if let Some(w) = media.tick_send(now, mixes.get(id).map(Vec::as_slice)) {
                warnings.push((c.id, w));
            }
            while let Some(digit) = media.poll_dtmf() {
                events.push(Event::Dtmf { call: c.id, digit });
            }
            if now >= c.next_stats {
                c.next_stats = now + self.cfg.stats_interval;
                events.push(Event::Stats {
                    call: c.id,
                    stats: media.stats(),
                });
            }
            if let Some(every) = self.cfg.levels_interval {
                if now >= c.next_levels {
                    c.next_levels = now + every;
                    let (tx, rx) = media.take_levels();
                    events.push(Event::Levels { call: c.id, tx, rx });
                }
            }
        }
        for e in events {
            self.emit(e);
        }
        for (call, w) in warnings {
            self.warn(Some(call), w);
        }
    }

    /// A `transfer` event (see [`Event::Transfer`]).
    fn transfer_event(
        &self,
        call: CallId,
        state: &'static str,
        to: Option<String>,
        code: Option<u16>,
        new_call: Option<CallId>,
    ) {
        self.emit(Event::Transfer {
            call,
            state,
            to,
            code,
            new_call,
        });
    }

    /// Ask the peer of `call` to call `to` instead (blind transfer), or to take the place of
    /// our call `with` (attended: Refer-To with Replaces).
    fn transfer(
        &mut self,
        now: Instant,
        call: CallId,
        to: &str,
        with: Option<CallId>,
    ) -> Result<(), CommandError> {
        let Some(c) = self.calls.get(&call.0) else {
            return Err(CommandError::NoSuchCall(call));
        };
        if !is_up(c.state) {
            return Err(CommandError::WrongState(call));
        }
        if let Some(other) = with {
            let Some(o) = self.calls.get(&other.0) else {
                return Err(CommandError::NoSuchCall(other));
            };
            if other == call {
                return Err(CommandError::NotApplicable {
                    call,
                    reason: "a call cannot be transferred to itself".into(),
                });
            }
            if !is_up(o.state) {
                return Err(CommandError::WrongState(other));
            }
            let target = self
                .ua
                .replaces_target(other.0)
                .ok_or(CommandError::WrongState(other))?;
            self.send_refer(now, call, target.clone())?;
            let shown = target.split('?').next().unwrap_or_default().to_string();
            self.transfer_event(call, "requested", Some(shown), None, Some(other));
            return Ok(());
        }
        // A bare number is at the call's account's domain, as when dialing.
        let account = c
            .account
            .as_ref()
            .and_then(|name| self.cfg.accounts.iter().find(|a| &a.name == name));
        let uri = match account {
            Some(a) if !to.contains('@') && !to.contains(':') => {
                parse_target(&format!("sip:{to}@{}", a.aor.host_port()))?
            }
            _ => parse_target(to)?,
        };
        self.send_refer(now, call, uri.to_string())?;
        self.transfer_event(call, "requested", Some(uri.to_string()), None, None);
        Ok(())
    }

    /// Send a REFER now, or once the call is confirmed (we answered it a moment ago).
    fn send_refer(
        &mut self,
        now: Instant,
        call: CallId,
        target: String,
    ) -> Result<(), CommandError> {
        if !self.ua.is_confirmed(call.0) {
            if let Some(c) = self.calls.get_mut(&call.0) {
                c.pending_refer = Some(target);
            }
            return Ok(());
        }
        self.ua
            .refer(now, call.0, &target)
            .map_err(|_| CommandError::WrongState(call))
    }

    /// Place the call a REFER we accepted asks for, with the transferred call's account and
    /// audio; its progress goes back to the transferor as NOTIFYs.
    async fn place_transfer_call(&mut self, old: CallRef, refer_to: &str) {
        let now = Instant::now();
        let Some(c) = self.calls.get(&old) else {
            return;
        };
        let (id, account, audio) = (c.id, c.account.clone(), c.audio.clone());
        // Refer-To: <sip:target?Replaces=...> (RFC 3515 §2.1; URI headers become headers of
        // the new INVITE, RFC 3261 §19.1.5).
        let inner = refer_to
            .trim()
            .trim_start_matches('<')
            .split('>')
            .next()
            .unwrap_or_default();
        let (target, headers) = inner.split_once('?').unwrap_or((inner, ""));
        let mut extra = Vec::new();
        for h in headers.split('&').filter(|h| !h.is_empty()) {
            if let Some((name, value)) = h.split_once('=') {
                if name.eq_ignore_ascii_case("replaces") {
                    extra.push((HeaderName::REPLACES, percent_decode(value)));
                }
            }
        }
        if let Some(c) = self.calls.get(&old) {
            extra.push((HeaderName::REFERRED_BY, format!("<{}>", c.peer)));
        }
        match self
            .dial(now, account.as_deref(), target, audio, extra)
            .await
        {
            Ok(new_call) => {
                if let Some(c) = self.calls.get_mut(&new_call.0) {
                    c.transfer_of = Some(old);
                }
                self.transfer_event(
                    id,
                    "transferring",
                    Some(target.to_string()),
                    None,
                    Some(new_call),
                );
            }
            Err(e) => {
                self.warn(Some(id), format!("cannot follow the transfer: {e}"));
                let _ = self
                    .ua
                    .notify_refer(now, old, 503, "Service Unavailable", true);
                self.transfer_event(id, "failed", Some(target.to_string()), Some(503), None);
            }
        }
    }

    /// A 3xx for our INVITE: call its first Contact that resolves (through the call's
    /// account's proxy or registrar when it has one, else directly), or give up.
    async fn follow_redirect(
        &mut self,
        call: CallRef,
        code: u16,
        reason: String,
        targets: Vec<Uri>,
    ) {
        let now = Instant::now();
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let id = c.id;
        let account = c
            .account
            .as_ref()
            .and_then(|n| self.cfg.accounts.iter().find(|a| &a.name == n))
            .cloned();
        for target in targets {
            let found = match &account {
                Some(a) => {
                    let next_hop = a.outbound_proxy.as_ref().unwrap_or(&a.registrar).clone();
                    self.prepare_next_hop(&next_hop, a).await.map(|(d, _)| d)
                }
                None => {
                    let transport = crate::sip::dialog::uri_transport(&target).unwrap_or_default();
                    resolve(
                        &target,
                        transport,
                        self.cfg.dns_server,
                        self.local_addr.is_ipv6(),
                    )
                    .await
                }
            };
            match found {
                Ok(dest) => {
                    info!(call = %id, code, %target, %dest, "following a redirect");
                    self.emit(Event::Redirect {
                        call: id,
                        code,
                        to: target.to_string(),
                    });
                    if self.ua.redirect(now, call, target, dest).is_ok() {
                        return;
                    }
                }
                Err(e) => debug!(call = %id, %target, "redirect target does not resolve: {e}"),
            }
        }
        self.ua.give_up(call, code, reason);
    }

    /// Answer `new` in place of `old` (Replaces): with `old`'s audio (a recording goes on in a
    /// new file named like the first), then end `old`.
    async fn replace_call(&mut self, new: CallRef, old: CallRef) {
        let now = Instant::now();
        let (Some(o), Some(n)) = (self.calls.get(&old), self.calls.get(&new)) else {
            return;
        };
        let mut audio = o.audio.clone();
        let old_id = o.id;
        if let AudioSinkSpec::File(path) = &audio.sink {
            let dir = path
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .to_path_buf();
            audio.sink = AudioSinkSpec::File(super::recording::recording_path(
                &dir,
                &n.peer,
                n.id,
                std::time::SystemTime::now(),
            ));
        }
        info!(call = %CallId(new), replaces = %old_id, "answering a call that replaces another");
        if let Err(e) = self.answer(now, CallId(new), audio).await {
            self.warn(Some(CallId(new)), format!("cannot take over {old_id}: {e}"));
            return;
        }
        let _ = self.ua.hangup(now, old);
    }

    /// Join `call` and `with` (and their conferences) into one local conference; a call we
    /// hold is taken off hold.
    fn join(&mut self, now: Instant, call: CallId, with: CallId) -> Result<(), CommandError> {
        for id in [call, with] {
            match self.calls.get(&id.0) {
                None => return Err(CommandError::NoSuchCall(id)),
                Some(c) if !is_up(c.state) => return Err(CommandError::WrongState(id)),
                Some(_) => {}
            }
        }
        if call == with {
            return Err(CommandError::NotApplicable {
                call,
                reason: "a call cannot be joined with itself".into(),
            });
        }
        for id in [call, with] {
            if self.calls.get(&id.0).is_some_and(|c| c.session.local_hold) {
                self.reoffer(now, id, false)?;
            }
        }
        // Merge the conferences either call is in (or make one).
        let mut members: Vec<CallRef> = vec![call.0, with.0];
        self.conferences.retain(|conf| {
            if conf.members.contains(&call.0) || conf.members.contains(&with.0) {
                members.extend(&conf.members);
                false
            } else {
                true
            }
        });
        members.sort_unstable();
        members.dedup();
        let calls = members.iter().map(|&m| CallId(m)).collect();
        self.conferences.push(Conference {
            members,
            ..Conference::default()
        });
        self.emit(Event::Conference { calls });
        Ok(())
    }

    /// A call ended: it leaves its conference (which ends when one call is left).
    fn leave_conference(&mut self, call: CallRef) {
        let Some(i) = self
            .conferences
            .iter()
            .position(|c| c.members.contains(&call))
        else {
            return;
        };
        let conf = &mut self.conferences[i];
        conf.members.retain(|&m| m != call);
        conf.converters
            .retain(|&(from, to), _| from != call && to != call);
        let calls = if conf.members.len() < 2 {
            self.conferences.remove(i);
            Vec::new()
        } else {
            conf.members.iter().map(|&m| CallId(m)).collect()
        };
        self.emit(Event::Conference { calls });
    }

    /// Put every call but `call` that is talking (up, not held by us) on hold.
    fn hold_others(&mut self, now: Instant, call: CallId) {
        let talking: Vec<CallId> = self
            .calls
            .values()
            .filter(|c| c.id != call && is_up(c.state) && !c.session.local_hold)
            .map(|c| c.id)
            .collect();
        for other in talking {
            if let Err(e) = self.reoffer(now, other, true) {
                self.warn(Some(other), format!("could not hold it: {e}"));
            }
        }
    }

    /// Start or stop an on-demand recording of a call.
    fn record(
        &mut self,
        call: CallId,
        on: bool,
        path: Option<std::path::PathBuf>,
    ) -> Result<std::path::PathBuf, CommandError> {
        let not_applicable = |reason: String| CommandError::NotApplicable { call, reason };
        let Some(c) = self.calls.get_mut(&call.0) else {
            return Err(CommandError::NoSuchCall(call));
        };
        if !is_up(c.state) {
            return Err(CommandError::WrongState(call));
        }
        let path = path.unwrap_or_else(|| {
            super::recording::recording_path(
                &self.cfg.record_dir,
                &c.peer,
                call,
                std::time::SystemTime::now(),
            )
        });
        let Some(media) = c.media.as_mut() else {
            // The media is still opening: the recording starts with it.
            return match (on, c.pending_record.take()) {
                (true, Some(p)) => {
                    let reason = format!("already recording to {}", p.display());
                    c.pending_record = Some(p);
                    Err(not_applicable(reason))
                }
                (true, None) => {
                    c.pending_record = Some(path.clone());
                    Ok(path)
                }
                (false, Some(p)) => Ok(p),
                (false, None) => Err(not_applicable("it is not being recorded".into())),
            };
        };
        if on {
            media
                .start_recording(&path, self.cfg.record_stereo)
                .map_err(not_applicable)?;
            self.emit(Event::Recording {
                call,
                path: path.clone(),
            });
            Ok(path)
        } else {
            let recorder = media
                .stop_recording()
                .ok_or_else(|| not_applicable("it is not being recorded".into()))?;
            let path = recorder.path().to_path_buf();
            self.finish_recording(call, recorder);
            Ok(path)
        }
    }

    /// Finalize a recording off the loop; `recorded` (or a warning) when it is done.
    fn finish_recording(&mut self, call: CallId, recorder: super::recording::CallRecorder) {
        let events = self.events.clone();
        self.closing.push(tokio::task::spawn_blocking(move || {
            let event = match recorder.finish() {
                Ok(path) => Event::Recorded { call, path },
                Err(message) => Event::Warning {
                    call: Some(call),
                    message,
                },
            };
            let _ = events.send(event);
        }));
    }

    /// Send the next queued DTMF digit as SIP INFO unless one is still unanswered.
    fn send_info_dtmf(&mut self, now: Instant, call: CallRef) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.info_in_flight || !self.ua.is_confirmed(call) {
            return; // after the one in flight, or once the call is confirmed
        }
        let Some(digit) = c.info_digits.pop_front() else {
            return;
        };
        let body = crate::sip::dtmf_info::relay_body(digit, INFO_DTMF_MS).into_bytes();
        match self
            .ua
            .info(now, call, crate::sip::dtmf_info::DTMF_RELAY, body)
        {
            Ok(()) => c.info_in_flight = true,
            Err(_) => c.info_digits.clear(),
        }
    }

    /// Send a re-INVITE that puts the call on hold (`hold`) or takes it off.
    fn reoffer(&mut self, now: Instant, call: CallId, hold: bool) -> Result<(), CommandError> {
        let Some(c) = self.calls.get_mut(&call.0) else {
            return Err(CommandError::NoSuchCall(call));
        };
        if !is_up(c.state) {
            return Err(CommandError::WrongState(call));
        }
        if c.session.reinvite_pending || c.session.retry_at.is_some() {
            return Err(CommandError::NotApplicable {
                call,
                reason: "a re-INVITE is already in progress; try again when it is answered".into(),
            });
        }
        if !self.ua.is_confirmed(call.0) || c.session.offer_in_2xx {
            // Answered a moment ago, the ACK still on its way (with the answer to our offer,
            // when the 2xx carried one): the re-INVITE goes after it.
            c.session.offered_hold = hold;
            c.session.retry_at = Some(now + Duration::from_millis(100));
            return Ok(());
        }
        let Some(local) = c.local_media.as_mut() else {
            return Err(CommandError::WrongState(call));
        };
        // RFC 3264 §8.4: sendonly to hold, inactive when the peer holds us too (we only
        // receive); sendrecv to resume (the peer's answer says whether it still holds).
        local.direction = match (hold, c.session.remote_hold) {
            (false, _) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (true, true) => Direction::Inactive,
        };
        local.session_version += 1;
        let offer = sdp::create_offer(local).into_bytes();
        self.ua
            .reinvite(now, call.0, offer)
            .map_err(|_| CommandError::WrongState(call))?;
        c.session.reinvite_pending = true;
        c.session.offered_hold = hold;
        c.session.retry_at = None;
        Ok(())
    }

    /// The peer answered our re-INVITE.
    fn on_reoffer_answered(&mut self, call: CallRef, local: &LocalMedia, sdp: &[u8]) {
        match sdp::process_answer(local, &String::from_utf8_lossy(sdp)) {
            Ok(neg) => {
                let Some(c) = self.calls.get_mut(&call) else {
                    return;
                };
                c.session.local_hold = c.session.offered_hold;
                // Our offer wanted to send unless it was inactive: if the answer does not
                // take our audio, the peer holds the call.
                if local.direction.sends() {
                    c.session.remote_hold = !neg.direction.sends();
                }
                self.apply_session(call, neg);
            }
            Err(e) => self.warn(
                Some(CallId(call)),
                format!("unusable SDP in the answer to our re-INVITE, session unchanged: {e}"),
            ),
        }
    }

    /// The peer sent a new offer in a re-INVITE (hold, resume, a new address or codec).
    fn on_peer_reoffer(&mut self, now: Instant, call: CallRef, sdp: &[u8]) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(local) = c.local_media.as_mut() else {
            let _ = self.ua.reject_reoffer(now, call, 488);
            return;
        };
        // We want to send (audio, or on our hold nothing but the session); we receive unless
        // we hold.
        local.direction = if c.session.local_hold {
            Direction::SendOnly
        } else {
            Direction::SendRecv
        };
        local.session_version += 1;
        match sdp::create_answer(&String::from_utf8_lossy(sdp), local) {
            Ok((answer, neg)) => {
                let _ = self.ua.answer_reoffer(now, call, answer.into_bytes());
                // We always want to send: if we may not, the peer does not want our audio.
                c.session.remote_hold = !neg.direction.sends();
                self.apply_session(call, neg);
            }
            Err(e) => {
                self.warn(
                    Some(CallId(call)),
                    format!("refused the peer's re-INVITE, session unchanged: {e}"),
                );
                let _ = self.ua.reject_reoffer(now, call, e.sip_status());
            }
        }
    }

    /// The ACK to the 200 that carried our offer (the INVITE had none) brought `sdp`: the
    /// media starts from the answer in it. Without a usable answer the call ends with BYE
    /// (RFC 3261 §13.2.1: the offer/answer exchange cannot complete). True: the call goes on.
    fn on_late_answer(&mut self, now: Instant, call: CallRef, sdp: &[u8]) -> bool {
        let Some(c) = self.calls.get_mut(&call) else {
            return false;
        };
        c.session.offer_in_2xx = false;
        let Some(local) = c.local_media.clone() else {
            return false;
        };
        let reason = if sdp.trim_ascii().is_empty() {
            "the ACK brought no SDP answer to the offer in our 200 OK".to_string()
        } else {
            match sdp::process_answer(&local, &String::from_utf8_lossy(sdp)) {
                Ok(neg) => {
                    self.start_media(call, &neg);
                    return true;
                }
                Err(e) => format!("unusable SDP answer in the ACK: {e}"),
            }
        };
        c.failure = Some(reason.clone());
        self.warn(Some(CallId(call)), format!("{reason}; hanging up"));
        let _ = self.ua.hangup(now, call);
        false
    }

    /// The peer sent a re-INVITE without an offer: ours goes in the 200, the session we have
    /// (same o= session id, version one higher: RFC 3264 §8) with all our codecs; the answer
    /// comes with the ACK ([`Self::on_reoffer_acked`]).
    fn on_offer_wanted(&mut self, now: Instant, call: CallRef) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(local) = c.local_media.as_mut() else {
            let _ = self.ua.reject_reoffer(now, call, 488);
            return;
        };
        local.direction = if c.session.local_hold {
            Direction::SendOnly
        } else {
            Direction::SendRecv
        };
        local.session_version += 1;
        let offer = sdp::create_offer(local).into_bytes();
        if self.ua.answer_reoffer(now, call, offer).is_ok() {
            c.session.offer_in_2xx = true;
        }
    }

    /// The ACK to the 200 that carried our offer to a re-INVITE without one brought `sdp`:
    /// the answer takes effect. Without a usable one the session stays as it was.
    fn on_reoffer_acked(&mut self, call: CallRef, sdp: &[u8]) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.session.offer_in_2xx = false;
        let Some(local) = c.local_media.clone() else {
            return;
        };
        if sdp.trim_ascii().is_empty() {
            self.warn(
                Some(CallId(call)),
                "the ACK to our re-INVITE 200 OK brought no SDP answer to its offer; session unchanged".into(),
            );
            return;
        }
        match sdp::process_answer(&local, &String::from_utf8_lossy(sdp)) {
            Ok(neg) => {
                // Our offer wanted to send: if the answer does not take our audio, the peer
                // holds the call.
                if local.direction.sends() {
                    c.session.remote_hold = !neg.direction.sends();
                }
                self.apply_session(call, neg);
            }
            Err(e) => self.warn(
                Some(CallId(call)),
                format!("unusable SDP answer in the ACK to our re-INVITE 200 OK, session unchanged: {e}"),
            ),
        }
    }

    /// Put a new offer/answer into effect: the media follows its direction and address (a new
    /// codec restarts it) and the call's state shows who holds it.
    fn apply_session(&mut self, call: CallRef, neg: Negotiated) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let codec_changed = c.session.negotiated.as_ref().is_some_and(|old| {
            old.codec.payload_type != neg.codec.payload_type
                || !old.codec.same_format(&neg.codec)
                || old.ptime != neg.ptime
        });
        let music = c.media.as_ref().is_some_and(CallMedia::has_hold_music);
        let (send, recv) = media_flow(&c.session, &neg, music);
        if codec_changed {
            if let Some(old) = c.media.take() {
                info!(call = %c.id, codec = %neg.codec.name, "the codec changed: media restarts");
                self.closing.push(tokio::task::spawn_blocking(move || {
                    let _ = old.finish();
                }));
            }
            self.start_media(call, &neg);
        } else {
            if let Some(media) = c.media.as_mut() {
                media.set_session(send, recv, &neg);
                media.set_held(c.session.local_hold);
            }
            c.session.negotiated = Some(neg);
        }
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let state = if c.session.local_hold {
            CallState::Hold
        } else if c.session.remote_hold {
            CallState::RemoteHold
        } else {
            CallState::Connected
        };
        self.set_state(call, state, None, None);
    }

    /// Ring as the calls ask: the ringtone while a call comes in (when the engine has a
    /// ringtone device), else the ringback tone while a call we placed through a playback
    /// device rings at the far end, else nothing.
    fn update_ringer(&mut self) {
        let incoming = self.calls.values().any(|c| c.state == CallState::Incoming);
        let want: Option<Ring> = match (&self.cfg.ringtone, incoming) {
            (Some(device), true) => Some((RingKind::Ringtone, device.clone())),
            _ => self
                .calls
                .values()
                .find_map(|c| match (&c.audio.sink, c.state) {
                    // Early media brings the network's own ringback.
                    (AudioSinkSpec::Device(device), CallState::Alerting)
                        if c.session.negotiated.is_none() =>
                    {
                        Some((RingKind::Ringback, device.clone()))
                    }
                    _ => None,
                }),
        };
        self.ringer.set(want);
    }

    fn set_state(
        &mut self,
        id: CallRef,
        state: CallState,
        code: Option<u16>,
        reason: Option<String>,
    ) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.state == state {
            return;
        }
        info!(call = %c.id, %state, peer = %c.peer, code = ?code, reason = ?reason, "call state");
        c.state = state;
        let event = Event::Call {
            call: c.id,
            state,
            peer: c.peer.clone(),
            account: c.account.clone(),
            code,
            reason,
        };
        self.update_ringer();
        self.emit(event);
        self.report_transfer(id, state, code);
    }

    /// A call placed for a transfer changed state: tell the transferor (NOTIFY sipfrag).
    fn report_transfer(&mut self, id: CallRef, state: CallState, code: Option<u16>) {
        let Some(old) = self.calls.get(&id).and_then(|c| c.transfer_of) else {
            return;
        };
        let (code, reason, terminated) = match state {
            CallState::Alerting => (180, "Ringing", false),
            CallState::Connected => (200, "OK", true),
            s if s.is_final() => {
                let code = code.filter(|c| *c >= 300).unwrap_or(487);
                (code, crate::sip::msg::default_reason(code), true)
            }
            _ => return,
        };
        if terminated {
            if let Some(c) = self.calls.get_mut(&id) {
                c.transfer_of = None;
            }
        }
        // The transferor may have hung up already; then there is no one to tell.
        let _ = self
            .ua
            .notify_refer(Instant::now(), old, code, reason, terminated);
    }

    async fn drain_ua(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.ua.poll_transmit() {
                progressed = true;
                let bytes = t.message.to_bytes();
                self.trace(false, "-->", t.dest, &bytes);
                let transport = t
                    .message
                    .headers()
                    .top_via()
                    .ok()
                    .and_then(|v| Transport::from_name(&v.transport))
                    .unwrap_or_default();
                if transport == Transport::Udp {
                    if let Err(e) = self.socket.send_to(&bytes, t.dest).await {
                        debug!(dest = %t.dest, "sip send failed: {e}");
                    }
                } else {
                    self.conns.send(transport, t.dest, bytes);
                }
                log_message(&t.message, t.dest);
            }
            while let Some(ev) = self.ua.poll_event() {
                progressed = true;
                self.on_ua_event(ev);
            }
            for (old, refer_to) in std::mem::take(&mut self.transfers) {
                progressed = true;
                self.place_transfer_call(old, &refer_to).await;
            }
            for (new, old) in std::mem::take(&mut self.replacements) {
                progressed = true;
                self.replace_call(new, old).await;
            }
            for (call, code, reason, targets) in std::mem::take(&mut self.redirects) {
                progressed = true;
                self.follow_redirect(call, code, reason, targets).await;
            }
            for call in std::mem::take(&mut self.reliable_rings) {
                progressed = true;
                self.ring_with_answer(call).await;
            }
            if !progressed {
                break;
            }
        }
    }

    fn on_ua_event(&mut self, ev: UaEvent) {
        let now = Instant::now();
        match ev {
            UaEvent::Incoming {
                call,
                from,
                to: _,
                offer,
                local,
                registration,
                replaces,
            } => {
                let peer = from.uri.to_string();
                let account = registration
                    .and_then(|r| self.registrations.get(&r))
                    .map(|(name, _, _)| name.clone());
                let local_ip = local.ip();
                self.calls.insert(
                    call,
                    Call {
                        id: CallId(call),
                        direction: CallDirection::Incoming,
                        peer: peer.clone(),
                        account: account.clone(),
                        state: CallState::Incoming,
                        local_ip,
                        rtp: None,
                        rtcp: None,
                        rtp_task: None,
                        rtcp_task: None,
                        local_media: None,
                        offer,
                        audio: CallAudio::default(),
                        media: None,
                        next_stats: now,
                        noise_suppression: None,
                        next_levels: now,
                        session: SessionState::default(),
                        failure: None,
                        pending_dtmf: String::new(),
                        info_digits: Default::default(),
                        transfer_of: None,
                        pending_record: None,
                        early_answer: None,
                        pending_refer: None,
                        asked_refer: None,
                        info_in_flight: false,
                    },
                );
                if self.shutdown.is_some() {
                    // Stopping: turn new callers away at once.
                    let _ = self.ua.reject(now, call, 503);
                    return;
                }
                let others = self
                    .calls
                    .values()
                    .filter(|c| c.id.0 != call && !c.state.is_final())
                    .count();
                let dnd = account.as_ref().is_some_and(|a| self.cfg.dnd.contains(a));
                // A call that replaces one of ours adds none.
                if (dnd || others >= self.cfg.max_calls) && replaces.is_none() {
                    // As many calls as we take: the caller hears busy; the user sees it came.
                    info!(call, others, "busy: turning the call away");
                    self.emit(Event::Call {
                        call: CallId(call),
                        state: CallState::Incoming,
                        peer,
                        account,
                        code: None,
                        reason: None,
                    });
                    let _ = self.ua.reject(now, call, 486);
                    return;
                }
                if let Some(old) = replaces {
                    // The last step of an attended transfer: this call takes the place of
                    // `old` (same audio), which ends. No ringing: it was answered already.
                    self.emit(Event::Call {
                        call: CallId(call),
                        state: CallState::Incoming,
                        peer,
                        account,
                        code: None,
                        reason: None,
                    });
                    self.replacements.push((call, old));
                    return;
                }
                if self.ua.wants_reliable_ringing(call) {
                    self.reliable_rings.push(call);
                } else {
                    let _ = self.ua.ringing(now, call);
                }
                self.update_ringer();
                self.emit(Event::Call {
                    call: CallId(call),
                    state: CallState::Incoming,
                    peer,
                    account,
                    code: None,
                    reason: None,
                });
            }
            UaEvent::Progress { call, code: _, sdp } => {
                // Early media (183 with SDP, RFC 3960): the far end's announcements or
                // ringback play from now on; the 2xx's answer then updates the session.
                if let Some(sdp) = sdp {
                    let started = self
                        .calls
                        .get(&call)
                        .is_some_and(|c| c.session.negotiated.is_some());
                    if let Some(local) = self.calls.get(&call).and_then(|c| c.local_media.clone()) {
                        match sdp::process_answer(&local, &String::from_utf8_lossy(&sdp)) {
                            Ok(neg) if !started => self.start_media(call, &neg),
                            Ok(_) => {}
                            Err(e) => debug!(call, "unusable early-media SDP: {e}"),
                        }
                    }
                }
                self.set_state(call, CallState::Alerting, None, None);
            }
            UaEvent::Answered { call, sdp } => {
                let Some(c) = self.calls.get_mut(&call) else {
                    return;
                };
                let Some(local) = c.local_media.clone() else {
                    return;
                };
                if c.session.reinvite_pending {
                    c.session.reinvite_pending = false;
                    self.on_reoffer_answered(call, &local, &sdp);
                    return;
                }
                if c.session.negotiated.is_some() {
                    // Media started on early media: the answer updates it.
                    match sdp::process_answer(&local, &String::from_utf8_lossy(&sdp)) {
                        Ok(neg) => {
                            self.apply_session(call, neg);
                            self.set_state(call, CallState::Connected, None, None);
                        }
                        Err(_) => self.set_state(call, CallState::Connected, None, None),
                    }
                    return;
                }
                match sdp::process_answer(&local, &String::from_utf8_lossy(&sdp)) {
                    Ok(neg) => {
                        self.start_media(call, &neg);
                        self.set_state(call, CallState::Connected, None, None);
                    }
                    Err(e) => {
                        let reason = format!("unusable SDP answer: {e}");
                        self.warn(Some(CallId(call)), format!("{reason}; hanging up"));
                        if let Some(c) = self.calls.get_mut(&call) {
                            c.failure = Some(reason);
                        }
                        let _ = self.ua.hangup(now, call);
                    }
                }
            }
            UaEvent::Confirmed { call, sdp } => {
                let late = self
                    .calls
                    .get(&call)
                    .is_some_and(|c| c.session.offer_in_2xx);
                if late && !self.on_late_answer(now, call, &sdp) {
                    return;
                }
                // What was asked for while our 2xx waited for its ACK.
                if let Some(target) = self
                    .calls
                    .get_mut(&call)
                    .and_then(|c| c.pending_refer.take())
                {
                    if self.ua.refer(now, call, &target).is_err() {
                        self.warn(Some(CallId(call)), "could not send the transfer".into());
                    }
                }
                self.send_info_dtmf(now, call);
            }
            UaEvent::Reoffer { call, sdp } => self.on_peer_reoffer(now, call, &sdp),
            UaEvent::OfferWanted { call } => self.on_offer_wanted(now, call),
            UaEvent::ReofferAcked { call, sdp } => self.on_reoffer_acked(call, &sdp),
            UaEvent::ReinviteFailed { call, code, reason } => {
                let Some(c) = self.calls.get_mut(&call) else {
                    return;
                };
                c.session.reinvite_pending = false;
                if code == 491 {
                    // Glare (RFC 3261 §14.1): the owner of the Call-ID (the caller) waits
                    // 2.1-4 s, the other side 0-2 s, then tries again.
                    let ms = match c.direction {
                        CallDirection::Outgoing => self.rng.random_range(2100..=4000),
                        CallDirection::Incoming => self.rng.random_range(0..=2000),
                    };
                    c.session.retry_at = Some(now + Duration::from_millis(ms));
                    return;
                }
                let what = if c.session.offered_hold {
                    "hold"
                } else {
                    "resume"
                };
                self.warn(
                    Some(CallId(call)),
                    format!("the peer refused to {what} the call: {code} {reason}"),
                );
            }
            UaEvent::Info {
                call,
                content_type,
                body,
            } => match crate::sip::dtmf_info::parse(&content_type, &body) {
                Some(digit) if self.calls.contains_key(&call) => {
                    self.emit(Event::Dtmf {
                        call: CallId(call),
                        digit,
                    });
                }
                _ => debug!(call, %content_type, len = body.len(), "INFO received"),
            },
            UaEvent::Refer {
                call,
                refer_to,
                referred_by,
            } => {
                let Some(c) = self.calls.get(&call) else {
                    return;
                };
                let id = c.id;
                info!(call = %id, %refer_to, ?referred_by, "REFER");
                let policy = self.cfg.call_settings(c.account.as_deref()).transfer_policy;
                if policy == TransferPolicy::Ask && is_up(c.state) {
                    // The REFER waits in the UA for the user's answer.
                    self.transfer_event(id, "asked", Some(refer_to.clone()), None, None);
                    if let Some(c) = self.calls.get_mut(&call) {
                        c.asked_refer = Some(refer_to);
                    }
                    return;
                }
                if policy == TransferPolicy::Reject || !is_up(c.state) {
                    let _ = self.ua.reject_refer(now, call, 603);
                    self.transfer_event(id, "refused", Some(refer_to), Some(603), None);
                    return;
                }
                let _ = self.ua.accept_refer(now, call);
                self.transfers.push((call, refer_to));
            }
            UaEvent::Redirected {
                call,
                code,
                reason,
                targets,
            } => self.redirects.push((call, code, reason, targets)),
            UaEvent::ReferAnswered { call, code } => {
                if let Some(c) = self.calls.get(&call) {
                    let (state, code) = if (200..300).contains(&code) {
                        ("accepted", None)
                    } else {
                        ("failed", Some(code))
                    };
                    self.transfer_event(c.id, state, None, code, None);
                }
            }
            UaEvent::ReferProgress {
                call,
                code,
                terminated,
            } => {
                let Some(c) = self.calls.get(&call) else {
                    return;
                };
                let id = c.id;
                if (200..300).contains(&code) {
                    // The peer talks to the new party: our part is over.
                    self.transfer_event(id, "done", None, Some(code), None);
                    let _ = self.ua.hangup(now, call);
                } else if code >= 300 || terminated {
                    self.transfer_event(id, "failed", None, Some(code), None);
                }
            }
            UaEvent::InfoAnswered { call, code } => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.info_in_flight = false;
                    if code >= 300 {
                        c.info_digits.clear();
                        self.warn(
                            Some(CallId(call)),
                            format!("the peer refused DTMF by SIP INFO ({code})"),
                        );
                    } else {
                        self.send_info_dtmf(now, call);
                    }
                }
            }
            UaEvent::Ended { call, cause } => {
                let Some(c) = self.calls.get(&call) else {
                    return;
                };
                let incoming_unanswered =
                    c.direction == CallDirection::Incoming && c.state == CallState::Incoming;
                let (state, code, reason) = match cause {
                    EndCause::LocalBye => (CallState::HangupLocal, None, None),
                    EndCause::RemoteBye => (CallState::HangupRemote, None, None),
                    EndCause::LocalCancel => (
                        CallState::HangupLocal,
                        Some(487),
                        Some("Request Terminated".into()),
                    ),
                    EndCause::RemoteCancel => (
                        CallState::Missed,
                        Some(487),
                        Some("Request Terminated".into()),
                    ),
                    EndCause::LocalReject(code) if incoming_unanswered => (
                        CallState::HangupLocal,
                        Some(code),
                        Some(crate::sip::msg::default_reason(code).into()),
                    ),
                    EndCause::LocalReject(code) => (CallState::OtherFailure, Some(code), None),
                    EndCause::Rejected { code, reason } => {
                        (CallState::OtherFailure, Some(code), Some(reason))
                    }
                    EndCause::Timeout => (
                        CallState::NetworkFailure,
                        Some(408),
                        Some("no response".into()),
                    ),
                    EndCause::Failed(msg) => (CallState::OtherFailure, None, Some(msg)),
                    EndCause::Network(msg) => (CallState::NetworkFailure, None, Some(msg)),
                };
                let (state, code, reason) =
                    match self.calls.get(&call).and_then(|c| c.failure.clone()) {
                        Some(failure) => (CallState::OtherFailure, None, Some(failure)),
                        None => (state, code, reason),
                    };
                if let Some(media) = self.calls.get(&call).and_then(|c| c.media.as_ref()) {
                    let stats = media.stats();
                    let summary = media.summary(Instant::now());
                    self.emit(Event::Stats {
                        call: CallId(call),
                        stats,
                    });
                    self.emit(Event::Summary {
                        call: CallId(call),
                        summary,
                    });
                }
                self.set_state(call, state, code, reason);
                if let Some(c) = self.calls.remove(&call) {
                    self.finish_media(c);
                }
            }
            UaEvent::Registration { reg, event } => self.on_registration(reg, event),
            UaEvent::Dropped { source, reason } => {
                debug!(%source, "dropped SIP datagram: {reason}");
            }
        }
    }

    /// Stop a call's media. Closing a sink is blocking work (a WAV header rewrite, a device
    /// draining its tail), so it runs on the blocking pool; shutdown waits for it.
    fn finish_media(&mut self, mut call: Call) {
        self.leave_conference(call.id.0);
        if let Some(task) = call.rtp_task.take() {
            task.abort();
        }
        if let Some(task) = call.rtcp_task.take() {
            task.abort();
        }
        if let Some(media) = call.media.as_mut() {
            media.send_rtcp_bye(Instant::now());
            if let Some(recorder) = media.stop_recording() {
                self.finish_recording(call.id, recorder);
            }
        }
        if let Some(media) = call.media.take() {
            let events = self.events.clone();
            let id = call.id;
            self.closing.push(tokio::task::spawn_blocking(move || {
                if let Some(message) = media.finish() {
                    warn!(call = %id, "{message}");
                    let _ = events.send(Event::Warning {
                        call: Some(id),
                        message,
                    });
                }
            }));
            self.closing.retain(|t| !t.is_finished());
        }
    }
}

/// `%XX` escapes decoded (a Replaces value inside a Refer-To URI); bad escapes kept as written.
fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How long a digit sent by SIP INFO says it lasts.
const INFO_DTMF_MS: u32 = 160;

/// A call that is up: connected, or held by either side.
fn is_up(state: CallState) -> bool {
    matches!(
        state,
        CallState::Connected | CallState::Hold | CallState::RemoteHold
    )
}

/// Whether a call's media sends RTP and plays what arrives: as the offer/answer agreed; while
/// we hold the call nothing is played, and only music on hold (when there is some) is sent.
fn media_flow(session: &SessionState, neg: &Negotiated, hold_music: bool) -> (bool, bool) {
    (
        neg.direction.sends() && (!session.local_hold || hold_music),
        neg.direction.receives() && !session.local_hold,
    )
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400)
}

/// `sip:user@host:port`, `sips:...`, `user@host:port` or `host[:port]`.
pub(crate) fn parse_target(target: &str) -> Result<Uri, CommandError> {
    let t = target.trim();
    let text = if t.starts_with("sip:") || t.starts_with("sips:") {
        t.to_string()
    } else if t.starts_with("tel:") {
        return Err(CommandError::InvalidTarget {
            target: target.into(),
            reason: "tel: URIs need an account with a registrar (not supported yet)".into(),
        });
    } else {
        format!("sip:{t}")
    };
    let uri: Uri =
        text.parse().map_err(
            |e: crate::sip::msg::ParseError| CommandError::InvalidTarget {
                target: target.into(),
                reason: e.to_string(),
            },
        )?;
    if matches!(&uri.host, Host::Domain(d) if d.is_empty()) {
        return Err(CommandError::InvalidTarget {
            target: target.into(),
            reason: "no host".into(),
        });
    }
    Ok(uri)
}

/// Where to send a request for `uri` over `transport` (RFC 3263): its IP literal, or the
/// first target DNS gives (SRV, then A/AAAA) that our socket's address family can reach.
async fn resolve(
    uri: &Uri,
    transport: Transport,
    dns_server: Option<SocketAddr>,
    ipv6: bool,
) -> Result<SocketAddr, String> {
    if let Some(ip) = uri.host.ip() {
        return Ok(SocketAddr::new(
            ip,
            uri.port.unwrap_or(transport.default_port()),
        ));
    }
    let resolver = super::dns::Resolver::from_config(dns_server).map_err(|e| e.to_string())?;
    let targets = super::dns::locate(uri, Some(transport), &resolver)
        .await
        .map_err(|e| e.to_string())?;
    targets
        .iter()
        .find(|t| t.addr.is_ipv6() == ipv6)
        .map(|t| t.addr)
        .ok_or_else(|| {
            let family = if ipv6 { "IPv6" } else { "IPv4" };
            format!("{} has no {family} address", host_name(uri))
        })
}

/// The host of a URI as a name: the domain, or the IP address without brackets.
fn host_name(uri: &Uri) -> String {
    match &uri.host {
        Host::Domain(d) => d.clone(),
        other => other
            .ip()
            .map(|ip| ip.to_string())
            .unwrap_or_else(|| other.to_string()),
    }
}

async fn accept(
    listener: &Option<tokio::net::TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

impl EngineActor {
    /// The SIP trace: to the sink when there is one, else to stderr when asked for.
    fn trace(&self, received: bool, arrow: &str, peer: SocketAddr, bytes: &[u8]) {
        if let Some(sink) = &self.cfg.sip_trace_sink {
            sink(received, peer, &String::from_utf8_lossy(bytes));
        } else if self.cfg.sip_trace {
            trace_message(arrow, peer, bytes);
        }
    }
}

fn trace_message(arrow: &str, peer: SocketAddr, bytes: &[u8]) {
    use std::io::Write;
    let text = String::from_utf8_lossy(bytes);
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "{arrow} {peer} ({} bytes)\n{}",
        bytes.len(),
        text.trim_end()
    );
    let _ = writeln!(err);
}

fn log_message(msg: &Message, dest: SocketAddr) {
    match msg {
        Message::Request(r) => debug!(%dest, method = %r.method, uri = %r.uri, "sip out"),
        Message::Response(r) => debug!(%dest, code = r.code, "sip out"),
    }
}
