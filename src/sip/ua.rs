//! The user agent core: INVITE sessions on top of the transaction layer, sans-IO.
//!
//! It owns a [`TxnLayer`] and the calls. Inputs are datagrams, commands and `now`; outputs
//! are datagrams to send, [`UaEvent`]s and the next deadline. It never reads the clock or
//! touches a socket.
//!
//! Drain invariant: after every `handle_*` call or command, the caller drains
//! [`UserAgent::poll_transmit`] and [`UserAgent::poll_event`] until both return `None`, then
//! sleeps until [`UserAgent::poll_timeout`] (or the next input) and calls
//! [`UserAgent::handle_timeout`].

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use core::net::SocketAddr;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::sip::auth::{Authenticator, Credentials};
use crate::sip::dialog::{
    host_port, ip_host, local_via_over, random_token, response_to, via_transport, Dialog, DialogId,
};
use crate::sip::msg::{
    parse_datagram, CSeq, Contacts, Datagram, HeaderName, Message, Method, NameAddr, Request,
    Response, Uri,
};
use crate::sip::registration::{RegConfig, RegEvent, Registration};
use crate::sip::transport::Transport;
use crate::sip::txn::{new_branch, TimerConfig, Transmit, TxnEvent, TxnKey, TxnLayer};

/// Methods we answer (Allow header).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY, UPDATE, PRACK";
/// The extensions we support: reliable provisional responses (RFC 3262: we PRACK them as the
/// caller, and send our 180 reliably to a caller that requires it), RFC 4028 session timers,
/// RFC 3891 Replaces.
pub const SUPPORTED: &str = "100rel, timer, replaces";
/// What our INVITEs say they support.
const SUPPORTED_UAC: &str = SUPPORTED;
/// Redirects a call follows before it gives up (a loop of 3xx ends).
const MAX_REDIRECTS: u32 = 5;
/// The shortest session interval we accept (RFC 4028 §4: at least 90 s).
const MIN_SE: u32 = 90;

/// A session timer (RFC 4028) on a confirmed call: who refreshes, how often, and when the
/// next thing is due (our refresh, or the end of a session the peer stopped refreshing).
#[derive(Debug, Clone, Copy)]
struct SessionTimer {
    interval: Duration,
    we_refresh: bool,
    due: Instant,
}

impl SessionTimer {
    fn new(now: Instant, interval_s: u32, we_refresh: bool) -> SessionTimer {
        let mut t = SessionTimer {
            interval: Duration::from_secs(u64::from(interval_s.max(MIN_SE))),
            we_refresh,
            due: now,
        };
        t.restart(now);
        t
    }

    /// The session was just refreshed: the refresher acts at half the interval (§7.2); the
    /// other side gives up at the interval less min(32 s, a third) (§10).
    fn restart(&mut self, now: Instant) {
        self.due = if self.we_refresh {
            now + self.interval / 2
        } else {
            now + self.interval - (self.interval / 3).min(Duration::from_secs(32))
        };
    }
}

/// The INVITE sent again as a new transaction (after a challenge, to a redirect target): the
/// next CSeq and a new branch, all else as it was.
fn next_invite(invite: &Request, branch: &str) -> Request {
    let mut req = invite.clone();
    let seq = req
        .headers
        .cseq()
        .map(|s| s.seq)
        .unwrap_or(1)
        .wrapping_add(1);
    req.headers.set(
        HeaderName::CSEQ,
        CSeq {
            seq,
            method: Method::Invite,
        }
        .to_string(),
    );
    if let Ok(mut via) = req.headers.top_via() {
        via.params.set("branch", Some(branch));
        req.headers.set_top_via(&via);
    }
    req
}

/// A request from the peer refreshed the session (RFC 4028 §9): it may set a new timer
/// (refresher named from the request's side: `uas` is us), else the one there starts again.
fn peer_refreshed(timer: &mut Option<SessionTimer>, now: Instant, req: &Request) {
    if let Some((delta, refresher)) = session_expires(&req.headers) {
        *timer = Some(SessionTimer::new(
            now,
            delta,
            refresher.as_deref() == Some("uas"),
        ));
    } else if let Some(t) = timer.as_mut() {
        t.restart(now);
    }
}

/// Session-Expires (and Require: timer when the peer refreshes) on a 2xx we send in a call
/// with a session timer: the refresher named from the request's side (`uac`: the peer).
fn push_session_expires(resp: &mut Response, timer: Option<&SessionTimer>) {
    if let Some(t) = timer {
        let refresher = if t.we_refresh { "uas" } else { "uac" };
        resp.headers.push(
            HeaderName::SESSION_EXPIRES,
            format!("{};refresher={refresher}", t.interval.as_secs()),
        );
        if !t.we_refresh {
            resp.headers.push(HeaderName::REQUIRE, "timer");
        }
    }
}

/// `Session-Expires: 90;refresher=uac` → (90, Some("uac")).
fn session_expires(headers: &crate::sip::msg::Headers) -> Option<(u32, Option<String>)> {
    let value = headers.get(&HeaderName::SESSION_EXPIRES)?;
    let mut parts = value.split(';');
    let delta = parts.next()?.trim().parse().ok()?;
    let refresher = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("refresher")
            .then(|| v.trim().to_ascii_lowercase())
    });
    Some((delta, refresher))
}

/// True if the headers list `tag` in `name` (Require, Supported), case-insensitively.
fn has_option_tag(headers: &crate::sip::msg::Headers, name: &HeaderName, tag: &str) -> bool {
    headers
        .tokens(name)
        .iter()
        .any(|t| t.eq_ignore_ascii_case(tag))
}

/// Min-SE of a 422 (RFC 4028 §5: delta-seconds, maybe with parameters).
fn min_se(headers: &crate::sip::msg::Headers) -> Option<u32> {
    headers
        .get(&HeaderName::MIN_SE)?
        .split(';')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// A request whose Session-Expires is below our minimum gets 422 with our Min-SE (RFC 4028
/// §9); one whose Session-Expires cannot be read gets 400. None: the interval is fine (or
/// there is none).
fn session_interval_refusal(req: &Request, to_tag: &str) -> Option<Response> {
    req.headers.get(&HeaderName::SESSION_EXPIRES)?;
    match session_expires(&req.headers) {
        None => Some(response_to(
            req,
            400,
            Some("Bad Session-Expires"),
            Some(to_tag),
        )),
        Some((delta, _)) if delta < MIN_SE => {
            let mut resp = response_to(req, 422, None, Some(to_tag));
            resp.headers.push(HeaderName::MIN_SE, MIN_SE.to_string());
            Some(resp)
        }
        Some(_) => None,
    }
}

/// Ask for a session interval of `interval` s in `req` (after a 422 said `Min-SE`):
/// Session-Expires and Min-SE both set to it (RFC 4028 §7.1, §7.4).
fn ask_session_interval(req: &mut Request, interval: u32) {
    let refresher = session_expires(&req.headers).and_then(|(_, r)| r);
    let value = match refresher {
        Some(r) => format!("{interval};refresher={r}"),
        None => interval.to_string(),
    };
    req.headers.set(HeaderName::SESSION_EXPIRES, value);
    req.headers.set(HeaderName::MIN_SE, interval.to_string());
}

/// `RAck: 4711 1 INVITE` → (4711, 1, INVITE) (RFC 3262 §7.2).
fn parse_rack(value: &str) -> Option<(u32, u32, Method)> {
    let mut it = value.split_whitespace();
    let rseq = it.next()?.parse().ok()?;
    let cseq = it.next()?.parse().ok()?;
    let method = Method::from_token(it.next()?);
    it.next().is_none().then_some((rseq, cseq, method))
}

/// Settings of the user agent.
#[derive(Debug, Clone)]
pub struct UaConfig {
    /// User part of our own URI and Contact.
    pub user: String,
    /// Display name in From.
    pub display_name: Option<String>,
    /// User-Agent / Server header value.
    pub user_agent: String,
    /// Transaction timers.
    pub timers: TimerConfig,
    /// Seed for tags, branches and Call-IDs (from the OS in production, fixed in tests).
    pub seed: u64,
}

/// A call handle inside the user agent.
pub type CallRef = u64;

/// A registration handle inside the user agent.
pub type RegRef = u64;

/// Why a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndCause {
    /// We sent BYE.
    LocalBye,
    /// The peer sent BYE.
    RemoteBye,
    /// We cancelled our INVITE (or gave up before any response).
    LocalCancel,
    /// The caller cancelled before we answered.
    RemoteCancel,
    /// We rejected the incoming call with this code.
    LocalReject(u16),
    /// Our INVITE got a final failure response; or a BYE or re-INVITE of ours could not be
    /// authorized (`code` 401/407, `reason` starting with "authentication failed").
    Rejected { code: u16, reason: String },
    /// No response to our INVITE (timer B), or no ACK for our 2xx.
    Timeout,
    /// A local problem (bad SDP from the peer, ...).
    Failed(String),
    /// The connection the call's requests went over could not be opened or broke (connection
    /// refused, TLS certificate problem, ...).
    Network(String),
}

/// What happened, for the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum UaEvent {
    /// A new incoming call. `offer` is the SDP body (empty when the INVITE had none).
    Incoming {
        call: CallRef,
        from: Box<NameAddr>,
        to: Box<NameAddr>,
        offer: Vec<u8>,
        local: SocketAddr,
        /// The registration (account) the call is for: its To is the account's address of
        /// record, or its Request-URI the Contact the account registered. `None`: a direct call.
        registration: Option<RegRef>,
        /// The call this one replaces (a Replaces header naming one of our confirmed dialogs,
        /// RFC 3891: the last step of an attended transfer).
        replaces: Option<CallRef>,
    },
    /// The far end is ringing or sent early media (18x).
    Progress {
        call: CallRef,
        code: u16,
        sdp: Option<Vec<u8>>,
    },
    /// Our INVITE was answered (2xx). `sdp` is the answer. Also the 2xx to a re-INVITE we
    /// sent ([`UserAgent::reinvite`]).
    Answered { call: CallRef, sdp: Vec<u8> },
    /// The ACK for our 2xx arrived. `sdp` is its body: the answer when our 2xx carried the
    /// offer (an INVITE without one, RFC 3261 §13.2.1: the "late offer"), else normally empty.
    Confirmed { call: CallRef, sdp: Vec<u8> },
    /// The peer sent a re-INVITE with a new SDP offer (hold, resume, a new address): answer
    /// it with [`UserAgent::answer_reoffer`] or refuse it with [`UserAgent::reject_reoffer`].
    Reoffer { call: CallRef, sdp: Vec<u8> },
    /// The peer sent a re-INVITE without an offer: it asks for ours (RFC 3261 §14.2: a session
    /// refresh, or a PBX learning our current SDP). Send it in the 2xx with
    /// [`UserAgent::answer_reoffer`] (or refuse with [`UserAgent::reject_reoffer`]); the
    /// answer comes with the ACK as [`UaEvent::ReofferAcked`].
    OfferWanted { call: CallRef },
    /// The ACK for the 2xx that carried our offer to a re-INVITE without one
    /// ([`UaEvent::OfferWanted`]): `sdp` is its body, the peer's answer (empty: it sent none).
    ReofferAcked { call: CallRef, sdp: Vec<u8> },
    /// Our re-INVITE got a failure that leaves the session as it was (RFC 3261 §14.1; 481 and
    /// 408 end the call instead). 491: the peer was sending its own; try again later.
    ReinviteFailed {
        call: CallRef,
        code: u16,
        reason: String,
    },
    /// The call ended.
    Ended { call: CallRef, cause: EndCause },
    /// An INFO request inside a call (body and content type), already answered 200.
    Info {
        call: CallRef,
        content_type: String,
        body: Vec<u8>,
    },
    /// The final response to an INFO we sent ([`UserAgent::info`]).
    InfoAnswered { call: CallRef, code: u16 },
    /// The peer asks us to call `refer_to` (a REFER, RFC 3515: a transfer): accept it with
    /// [`UserAgent::accept_refer`] (then report progress with [`UserAgent::notify_refer`]) or
    /// refuse it with [`UserAgent::reject_refer`].
    Refer {
        call: CallRef,
        /// The Refer-To value as sent (a name-addr, possibly with `?Replaces=...`).
        refer_to: String,
        referred_by: Option<String>,
    },
    /// Our INVITE was redirected (3xx) to `targets` (its Contacts, in order): follow one
    /// with [`UserAgent::redirect`], or end the call with [`UserAgent::give_up`].
    Redirected {
        call: CallRef,
        code: u16,
        reason: String,
        targets: Vec<Uri>,
    },
    /// The final response to our REFER ([`UserAgent::refer`]): 2xx accepted.
    ReferAnswered { call: CallRef, code: u16 },
    /// How the call our REFER asked for is going (a NOTIFY with a sipfrag): the status line's
    /// code, and whether the peer ends the subscription with it (a final answer).
    ReferProgress {
        call: CallRef,
        code: u16,
        terminated: bool,
    },
    /// A registration changed state or Contact.
    Registration { reg: RegRef, event: RegEvent },
    /// A datagram was dropped (malformed, stray). For logs.
    Dropped { source: SocketAddr, reason: String },
}

/// Errors of commands given to the user agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UaError {
    #[error("no such call")]
    NoSuchCall,
    #[error("the call is not in a state that allows this")]
    WrongState,
}

#[derive(Debug)]
enum Phase {
    /// UAC: INVITE sent, `provisional` once any 1xx arrived.
    Calling {
        provisional: bool,
        cancel_pending: bool,
    },
    /// UAS: INVITE received, not answered yet.
    Ringing,
    /// UAS: 2xx sent, waiting for ACK.
    Answered,
    /// Both: the call is up.
    Confirmed,
    /// Both: we sent BYE. The call stays until the BYE gets a final response, so that a
    /// 401/407 can be answered; the user learns the end (`Ended`) then, or at `report_by` at
    /// the latest when the BYE goes unanswered. `reported`: `Ended` was already emitted.
    Terminating { reported: bool, report_by: Instant },
}

/// When the `Ended` of a call we send BYE on is reported.
enum ByeReport {
    /// When the BYE is answered (the cause says whether it could be authorized).
    Later,
    /// Now, with this cause.
    Now(EndCause),
    /// Never: it was reported already.
    Silent,
}

/// An in-dialog request we sent (BYE, re-INVITE): kept until its final response, to send it
/// again with credentials when challenged (RFC 3261 §22.2).
#[derive(Debug)]
struct OutRequest {
    call: CallRef,
    request: Request,
    dest: SocketAddr,
    /// Over TCP/TLS/WS (no retransmissions).
    reliable: bool,
    /// re-INVITE: the ACK we sent for its 2xx, re-sent on 2xx retransmissions.
    ack: Option<(SocketAddr, Request)>,
}

#[derive(Debug)]
struct Call {
    phase: Phase,
    invite: Request,
    invite_key: TxnKey,
    /// Where the INVITE came from / went to.
    peer: SocketAddr,
    /// Our address as seen by the peer, for Via/Contact.
    local: SocketAddr,
    local_tag: String,
    dialog: Option<Dialog>,
    /// UAS: the 2xx to retransmit until ACK (RFC 3261 §13.3.1.4).
    ok_retransmit: Option<Retransmit>,
    /// UAC: the ACK we sent for the 2xx, re-sent on 2xx retransmissions.
    ack: Option<(SocketAddr, Request)>,
    /// The SDP we last sent, for answering re-INVITEs with the same session.
    local_sdp: Vec<u8>,
    /// The call's account credentials (UAC placed as an account, UAS received on a registered
    /// account): answers 401/407 to our INVITE, BYE and re-INVITE, and pre-authorizes later
    /// requests of the dialog with the last challenge.
    auth: Option<Authenticator>,
    /// The transport the INVITE travelled over (Via, Contact, reliability of our requests).
    transport: Transport,
    /// A re-INVITE from the peer whose offer the engine has to answer: its transaction, the
    /// request and where it came from.
    reoffer: Option<(TxnKey, Request, SocketAddr)>,
    /// The 2xx waiting for its ACK (`ok_retransmit`) answers a re-INVITE without an offer: it
    /// carries ours, and the ACK brings the answer ([`UaEvent::ReofferAcked`]).
    offer_in_reinvite_ok: bool,
    /// A REFER from the peer waiting for the engine's decision.
    refer: Option<(TxnKey, Request, SocketAddr)>,
    /// RFC 4028 session timer, when the call has one.
    timer: Option<SessionTimer>,
    /// Redirects (3xx) followed so far for this call.
    redirects: u32,
    /// UAC: the early dialog of reliable provisional responses (RFC 3262) and the last RSeq
    /// acknowledged with PRACK.
    early: Option<Dialog>,
    last_rseq: Option<u32>,
    /// UAS: the RSeq of our next reliable provisional response (RFC 3262 §3), when the caller
    /// requires them (`Require: 100rel`).
    next_rseq: Option<u32>,
    /// UAS: our reliable provisional response waiting for its PRACK.
    reliable: Option<ReliableProvisional>,
    /// UAS: the 2xx the user answered with while `reliable` waited for its PRACK; it goes
    /// out when the PRACK arrives.
    queued_answer: Option<Response>,
    /// The Min-SE a 422 made us ask for (RFC 4028 §7.4): sent in the session refreshes; and
    /// a second 422 to the initial INVITE ends the call.
    min_se: Option<u32>,
    /// The peer's Allow lists UPDATE (from its INVITE or 2xx): our session refreshes go by
    /// UPDATE without a body (RFC 4028 §7.4, RFC 3311), else by re-INVITE.
    peer_allows_update: bool,
}

/// A reliable provisional response we sent (RFC 3262 §3): retransmitted from T1 on, the
/// interval doubling, until the PRACK that names its RSeq comes; after 64·T1 without one the
/// INVITE gets a 5xx.
#[derive(Debug)]
struct ReliableProvisional {
    response: Response,
    dest: SocketAddr,
    rseq: u32,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

/// Who places a call: the account's address of record and credentials (default: the local
/// address and no credentials, for serverless calls).
#[derive(Debug, Clone, Default)]
pub struct CallIdentity {
    /// From URI (the address of record).
    pub from: Option<Uri>,
    /// Credentials for 401/407 challenges.
    pub credentials: Option<Credentials>,
    /// Transport towards the first hop (Via, Contact `transport=`).
    pub transport: Transport,
    /// An outbound proxy: put in a Route header (loose routing, `;lr`) on the INVITE.
    pub route: Option<Uri>,
    /// More headers for the INVITE (Referred-By and Replaces of a transfer).
    pub extra_headers: Vec<(HeaderName, String)>,
}

#[derive(Debug)]
struct Retransmit {
    response: Response,
    dest: SocketAddr,
    next: Instant,
    interval: Duration,
    give_up: Instant,
    /// CSeq of the INVITE this 2xx answers, to match the ACK.
    cseq: u32,
}

/// The sans-IO SIP user agent.
pub struct UserAgent {
    cfg: UaConfig,
    txn: TxnLayer,
    rng: StdRng,
    /// Ordered, so that timer handling is deterministic.
    calls: BTreeMap<CallRef, Call>,
    next_call: CallRef,
    /// Server INVITE transaction key → call, for CANCEL matching.
    by_invite_branch: HashMap<String, CallRef>,
    events: VecDeque<UaEvent>,
    transmits: VecDeque<Transmit>,
    /// BYE and CANCEL transactions still waiting for a final response.
    pending: HashSet<TxnKey>,
    /// In-dialog requests we sent (BYE, re-INVITE) by transaction, for 401/407 and 2xx.
    in_dialog: HashMap<TxnKey, OutRequest>,
    /// Our re-INVITEs that only refresh the session (RFC 4028): their answers stay here.
    refreshes: HashSet<TxnKey>,
    /// Registrations, each with the address its REGISTERs go to.
    registrations: BTreeMap<RegRef, (Registration, SocketAddr)>,
    /// REGISTER transactions in flight → their registration.
    reg_keys: HashMap<TxnKey, RegRef>,
    next_reg: RegRef,
}

impl UserAgent {
    /// A user agent with no calls.
    pub fn new(cfg: UaConfig) -> UserAgent {
        UserAgent {
            txn: TxnLayer::new(cfg.timers),
            rng: StdRng::seed_from_u64(cfg.seed),
            cfg,
            calls: BTreeMap::new(),
            next_call: 1,
            by_invite_branch: HashMap::new(),
            events: VecDeque::new(),
            transmits: VecDeque::new(),
            pending: HashSet::new(),
            in_dialog: HashMap::new(),
            refreshes: HashSet::new(),
            registrations: BTreeMap::new(),
            reg_keys: HashMap::new(),
            next_reg: 1,
        }
    }

    /// Start registering with `cfg.registrar`, sending the REGISTERs to `dest`.
    pub fn register(&mut self, now: Instant, cfg: RegConfig, dest: SocketAddr) -> RegRef {
        let id = self.next_reg;
        self.next_reg += 1;
        let mut reg = Registration::new(cfg);
        reg.start(now);
        self.registrations.insert(id, (reg, dest));
        self.pump_registration(now, id);
        self.drain_txn(now, None);
        id
    }

    /// Remove a registration (REGISTER with Expires: 0). It stays until the registrar answers
    /// or the request times out; [`UserAgent::has_pending_requests`] is true meanwhile.
    pub fn unregister(&mut self, now: Instant, reg: RegRef) {
        if let Some((r, _)) = self.registrations.get_mut(&reg) {
            r.stop(now);
        }
        self.pump_registration(now, reg);
        self.drain_txn(now, None);
    }

    /// Send what a registration wants to send, and pass on its events.
    fn pump_registration(&mut self, now: Instant, id: RegRef) {
        let Some((reg, dest)) = self.registrations.get_mut(&id) else {
            return;
        };
        let dest = *dest;
        let mut requests = Vec::new();
        while let Some(req) = reg.poll_request() {
            requests.push(req);
        }
        let mut events = Vec::new();
        while let Some(ev) = reg.poll_event() {
            events.push(ev);
        }
        for req in requests {
            let reliable = req
                .headers
                .top_via()
                .ok()
                .and_then(|v| Transport::from_name(&v.transport))
                .is_some_and(Transport::is_reliable);
            let key = self.txn.send_request(now, req, dest, reliable);
            self.reg_keys.insert(key, id);
        }
        for event in events {
            self.events
                .push_back(UaEvent::Registration { reg: id, event });
        }
    }

    /// True while a BYE, CANCEL, REGISTER or re-INVITE we sent has no final response yet
    /// (shutdown waits for it).
    pub fn has_pending_requests(&self) -> bool {
        !self.pending.is_empty()
            || !self.reg_keys.is_empty()
            || self
                .in_dialog
                .values()
                .any(|o| o.request.method == Method::Invite && o.ack.is_none())
    }

    /// Number of calls not yet ended.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(t) = self.transmits.pop_front() {
            return Some(t);
        }
        self.txn.poll_transmit()
    }

    /// Next event for the engine.
    pub fn poll_event(&mut self) -> Option<UaEvent> {
        self.events.pop_front()
    }

    /// The next instant at which [`UserAgent::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let ours = self.calls.values().filter_map(|c| match c.phase {
            Phase::Terminating {
                reported: false,
                report_by,
            } => Some(report_by),
            _ => c.ok_retransmit.as_ref().map(|r| r.next.min(r.give_up)),
        });
        let reliable = self
            .calls
            .values()
            .filter_map(|c| c.reliable.as_ref().map(|r| r.next.min(r.give_up)));
        let ours = ours.chain(reliable);
        let timers = self.calls.values().filter_map(|c| match c.phase {
            Phase::Confirmed => c.timer.map(|t| t.due),
            _ => None,
        });
        let ours = ours.chain(timers);
        let regs = self
            .registrations
            .values()
            .filter_map(|(r, _)| r.poll_timeout());
        ours.chain(regs).chain(self.txn.poll_timeout()).min()
    }

    /// A datagram arrived from `source` on our socket bound (or seen by the peer) at `local`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        data: &[u8],
        source: SocketAddr,
        local: SocketAddr,
    ) {
        self.handle_framed(now, parse_datagram(data), source, local, Transport::Udp);
    }

    /// One whole message (or keepalive, or a parse error) that arrived over `transport` from
    /// `source`: a UDP datagram, a WebSocket message, or what [`crate::sip::msg::StreamFramer`]
    /// cut from a TCP/TLS stream (for a connection, `source` is its peer address).
    pub fn handle_framed(
        &mut self,
        now: Instant,
        framed: Result<Datagram, crate::sip::msg::ParseError>,
        source: SocketAddr,
        local: SocketAddr,
        transport: Transport,
    ) {
        match framed {
            Ok(Datagram::KeepAlive) => {}
            Ok(Datagram::Message(msg)) => {
                self.txn
                    .handle_message(now, msg, source, transport.is_reliable());
                self.drain_txn(now, Some(local));
            }
            Err(err) => {
                // Answers 400 statelessly when the request is readable enough (RFC 3261 §8.2).
                self.txn.handle_parse_error(&err, source);
                self.events.push_back(UaEvent::Dropped {
                    source,
                    reason: err.reason().to_string(),
                });
            }
        }
    }

    /// The connection to `peer` (TCP/TLS/WS) could not be opened or closed, for `reason`
    /// (e.g. "connection refused", a TLS certificate problem). Requests in flight to it fail
    /// (registrations with that reason, calls as a network failure), and registrations that
    /// ran over it register again after their backoff.
    pub fn connection_failed(&mut self, now: Instant, peer: SocketAddr, reason: &str) {
        let failed = self.txn.connection_failed(now, peer);
        for key in &failed {
            if let Some(id) = self.reg_keys.remove(key) {
                if let Some((r, _)) = self.registrations.get_mut(&id) {
                    r.handle_transport_error(now, reason);
                }
                self.pump_registration(now, id);
            }
            if let Some(call) = self.find_call_by_key(key) {
                self.end_call(call, EndCause::Network(reason.to_string()));
            }
        }
        let flows: Vec<RegRef> = self
            .registrations
            .iter()
            .filter(|(_, (r, dest))| *dest == peer && r.is_reliable())
            .map(|(id, _)| *id)
            .collect();
        for id in flows {
            if let Some((r, _)) = self.registrations.get_mut(&id) {
                r.handle_flow_failure(now, reason);
            }
            self.pump_registration(now, id);
        }
        self.drain_txn(now, None);
    }

    /// Timers are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.txn.handle_timeout(now);
        let due: Vec<RegRef> = self
            .registrations
            .iter()
            .filter(|(_, (r, _))| r.poll_timeout().is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some((r, _)) = self.registrations.get_mut(&id) {
                r.handle_timeout(now);
            }
            self.pump_registration(now, id);
        }
        let mut ended = Vec::new();
        for (&id, call) in self.calls.iter_mut() {
            if let Phase::Terminating {
                reported: reported @ false,
                report_by,
            } = &mut call.phase
            {
                if now >= *report_by {
                    // The BYE is still unanswered: the call is over for the user anyway.
                    *reported = true;
                    self.events.push_back(UaEvent::Ended {
                        call: id,
                        cause: EndCause::LocalBye,
                    });
                }
            }
            if let Some(rt) = call.ok_retransmit.as_mut() {
                if now >= rt.give_up {
                    ended.push(id);
                } else if now >= rt.next {
                    self.transmits.push_back(Transmit {
                        dest: rt.dest,
                        message: Message::Response(rt.response.clone()),
                    });
                    rt.interval = (rt.interval * 2).min(self.cfg.timers.t2);
                    rt.next = now + rt.interval;
                }
            }
        }
        for id in ended {
            // No ACK for our 2xx within 64·T1: RFC 3261 §13.3.1.4 says end the session with BYE.
            self.terminate(now, id, ByeReport::Now(EndCause::Timeout));
        }
        let mut unacknowledged = Vec::new();
        for (&id, call) in self.calls.iter_mut() {
            let Some(rel) = call.reliable.as_mut() else {
                continue;
            };
            if now >= rel.give_up {
                unacknowledged.push(id);
            } else if now >= rel.next {
                // RFC 3262 §3: T1, then doubling each time.
                self.transmits.push_back(Transmit {
                    dest: rel.dest,
                    message: Message::Response(rel.response.clone()),
                });
                rel.interval *= 2;
                rel.next = now + rel.interval;
            }
        }
        for id in unacknowledged {
            // RFC 3262 §3: no PRACK within 64·T1: the INVITE gets a 5xx and the call ends.
            if let Some(c) = self.calls.get(&id) {
                let resp = response_to(
                    &c.invite,
                    504,
                    Some("Reliable Provisional Response Not Acknowledged"),
                    Some(&c.local_tag),
                );
                let key = c.invite_key.clone();
                let _ = self.txn.send_response(now, &key, resp);
            }
            self.end_call(id, EndCause::Timeout);
        }
        let due: Vec<(CallRef, bool)> = self
            .calls
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Confirmed))
            .filter_map(|(&id, c)| c.timer.filter(|t| t.due <= now).map(|t| (id, t.we_refresh)))
            .collect();
        for (id, we_refresh) in due {
            if we_refresh {
                self.refresh_session(now, id);
            } else {
                // RFC 4028 §10: the refresher let the session lapse.
                let cause = EndCause::Failed(
                    "the session expired: the peer did not refresh it (RFC 4028)".into(),
                );
                self.terminate(now, id, ByeReport::Now(cause));
            }
        }
        self.drain_txn(now, None);
    }

    /// Place a call to `target`, sending the INVITE to `dest` from `local`, with SDP `offer`.
    pub fn invite(
        &mut self,
        now: Instant,
        target: Uri,
        dest: SocketAddr,
        local: SocketAddr,
        offer: Vec<u8>,
    ) -> CallRef {
        self.invite_as(now, target, dest, local, offer, CallIdentity::default())
    }

    /// Place a call as an account: From is its address of record, and 401/407 challenges are
    /// answered with its credentials (RFC 3261 §22.2; the INVITE is sent again with a new CSeq).
    pub fn invite_as(
        &mut self,
        now: Instant,
        target: Uri,
        dest: SocketAddr,
        local: SocketAddr,
        offer: Vec<u8>,
        identity: CallIdentity,
    ) -> CallRef {
        let id = self.alloc_call();
        let local_tag = random_token(&mut self.rng, 16);
        let call_id = format!("{}@{}", random_token(&mut self.rng, 24), host_port(local));
        let branch = new_branch(&mut self.rng);
        let transport = identity.transport;
        let our_uri = Uri::sip(Some(&self.cfg.user), ip_host(local), Some(local.port()));
        let contact = self.contact_uri(local, transport);
        let mut from = NameAddr::new(identity.from.unwrap_or_else(|| our_uri.clone()));
        from.display = self.cfg.display_name.clone();
        from.set_tag(&local_tag);
        let mut to_uri = target.clone();
        to_uri.headers.clear();
        let to = NameAddr::new(to_uri);

        let mut req = Request::new(Method::Invite, target);
        let h = &mut req.headers;
        h.push(
            HeaderName::VIA,
            local_via_over(local, transport, &branch).to_string(),
        );
        h.push(HeaderName::MAX_FORWARDS, "70");
        if let Some(route) = identity.route {
            h.push(HeaderName::ROUTE, loose_route(route).to_string());
        }
        h.push(HeaderName::FROM, from.to_string());
        h.push(HeaderName::TO, to.to_string());
        h.push(HeaderName::CALL_ID, call_id);
        h.push(
            HeaderName::CSEQ,
            CSeq {
                seq: 1,
                method: Method::Invite,
            }
            .to_string(),
        );
        h.push(HeaderName::CONTACT, NameAddr::new(contact).to_string());
        h.push(HeaderName::ALLOW, ALLOW);
        h.push(HeaderName::SUPPORTED, SUPPORTED_UAC);
        h.push(HeaderName::USER_AGENT, self.cfg.user_agent.clone());
        for (name, value) in identity.extra_headers {
            h.push(name, value);
        }
        if !offer.is_empty() {
            h.push(HeaderName::CONTENT_TYPE, "application/sdp");
        }
        req.body = offer.clone();

        let key = self
            .txn
            .send_request(now, req.clone(), dest, transport.is_reliable());
        let next_rseq = None;
        let peer_allows_update = false;
        self.calls.insert(
            id,
            Call {
                phase: Phase::Calling {
                    provisional: false,
                    cancel_pending: false,
                },
                invite: req,
                invite_key: key,
                peer: dest,
                local,
                local_tag,
                dialog: None,
                ok_retransmit: None,
                reoffer: None,
                offer_in_reinvite_ok: false,
                refer: None,
                timer: None,
                redirects: 0,
                early: None,
                last_rseq: None,
                next_rseq,
                reliable: None,
                queued_answer: None,
                min_se: None,
                peer_allows_update,
                ack: None,
                local_sdp: offer,
                auth: identity.credentials.map(Authenticator::new),
                transport,
            },
        );
        self.drain_txn(now, None);
        id
    }

    /// Tell the caller it is ringing (180).
    pub fn ringing(&mut self, now: Instant, call: CallRef) -> Result<(), UaError> {
        self.provisional(now, call, 180, None)
    }

    /// True when the caller requires reliable provisional responses (RFC 3262): our 180 then
    /// goes reliably, and, since it is the first reliable response to an INVITE with an offer,
    /// it must carry the SDP answer (RFC 3261 §13.2.1, RFC 6337 §3.1): see
    /// [`UserAgent::ringing_with_answer`].
    pub fn wants_reliable_ringing(&self, call: CallRef) -> bool {
        self.calls
            .get(&call)
            .is_some_and(|c| matches!(c.phase, Phase::Ringing) && c.next_rseq.is_some())
    }

    /// A reliable 180 with the SDP `answer` (the 2xx later repeats the same answer).
    pub fn ringing_with_answer(
        &mut self,
        now: Instant,
        call: CallRef,
        answer: Vec<u8>,
    ) -> Result<(), UaError> {
        self.provisional(now, call, 180, Some(answer))
    }

    fn provisional(
        &mut self,
        now: Instant,
        call: CallRef,
        code: u16,
        answer: Option<Vec<u8>>,
    ) -> Result<(), UaError> {
        let t1 = self.cfg.timers.t1;
        let contact = {
            let c = self.calls.get(&call).ok_or(UaError::NoSuchCall)?;
            if !matches!(c.phase, Phase::Ringing) || c.queued_answer.is_some() {
                return Err(UaError::WrongState);
            }
            self.contact_uri(c.local, c.transport)
        };
        let c = self.calls.get_mut(&call).ok_or(UaError::NoSuchCall)?;
        let mut resp = response_to(&c.invite, code, None, Some(&c.local_tag));
        if code > 100 {
            resp.headers
                .push(HeaderName::CONTACT, NameAddr::new(contact).to_string());
        }
        if let (true, Some(rseq)) = (code > 100, c.next_rseq) {
            if c.reliable.is_some() {
                // RFC 3262 §3: no second reliable provisional before the first is PRACKed.
                return Ok(());
            }
            resp.headers.push(HeaderName::REQUIRE, "100rel");
            resp.headers.push(HeaderName::RSEQ, rseq.to_string());
            resp.headers.push(HeaderName::ALLOW, ALLOW);
            if let Some(sdp) = answer {
                resp.headers
                    .push(HeaderName::CONTENT_TYPE, "application/sdp");
                resp.body = sdp.clone();
                c.local_sdp = sdp;
            }
            c.next_rseq = Some(rseq.wrapping_add(1));
            c.reliable = Some(ReliableProvisional {
                response: resp.clone(),
                dest: c.peer,
                rseq,
                next: now + t1,
                interval: t1,
                give_up: now + t1 * 64,
            });
        }
        let key = c.invite_key.clone();
        let _ = self.txn.send_response(now, &key, resp);
        self.drain_txn(now, None);
        Ok(())
    }

    /// Answer an incoming call with SDP `answer` (200 OK), or with our offer when its INVITE
    /// had none (the answer then comes with the ACK: [`UaEvent::Confirmed`]). The 2xx is
    /// retransmitted until ACK.
    pub fn answer(&mut self, now: Instant, call: CallRef, answer: Vec<u8>) -> Result<(), UaError> {
        let contact = {
            let c = self.calls.get(&call).ok_or(UaError::NoSuchCall)?;
            if !matches!(c.phase, Phase::Ringing) || c.queued_answer.is_some() {
                return Err(UaError::WrongState);
            }
            self.contact_uri(c.local, c.transport)
        };
        let c = self.calls.get_mut(&call).ok_or(UaError::NoSuchCall)?;
        let mut resp = response_to(&c.invite, 200, None, Some(&c.local_tag));
        resp.headers.push(
            HeaderName::CONTACT,
            NameAddr::new(contact.clone()).to_string(),
        );
        resp.headers.push(HeaderName::ALLOW, ALLOW);
        resp.headers.push(HeaderName::SUPPORTED, SUPPORTED);
        resp.headers
            .push(HeaderName::SERVER, self.cfg.user_agent.clone());
        // RFC 4028 §9: a request with Session-Expires gets one back; the refresher is the one
        // it names, else the caller when it supports timers, else us.
        if let Some((delta, refresher)) = session_expires(&c.invite.headers) {
            let uac_supports = c
                .invite
                .headers
                .tokens(&HeaderName::SUPPORTED)
                .iter()
                .any(|t| t.eq_ignore_ascii_case("timer"));
            let refresher = match refresher.as_deref() {
                Some("uac") | Some("uas") => refresher.unwrap_or_default(),
                _ if uac_supports => "uac".to_string(),
                _ => "uas".to_string(),
            };
            let delta = delta.max(MIN_SE);
            resp.headers.push(
                HeaderName::SESSION_EXPIRES,
                format!("{delta};refresher={refresher}"),
            );
            if refresher == "uac" {
                resp.headers.push(HeaderName::REQUIRE, "timer");
            }
            c.timer = Some(SessionTimer::new(now, delta, refresher == "uas"));
        }
        resp.headers
            .push(HeaderName::CONTENT_TYPE, "application/sdp");
        resp.body = answer.clone();
        c.local_sdp = answer;
        if c.reliable.is_some() {
            // RFC 3262 §3: no 2xx before our reliable provisional is PRACKed; it waits.
            c.queued_answer = Some(resp);
            return Ok(());
        }
        self.send_answer(now, call, resp);
        self.drain_txn(now, None);
        Ok(())
    }

    /// Send the 2xx to an incoming INVITE: the dialog starts, and the 2xx is retransmitted
    /// until its ACK (RFC 3261 §13.3.1.4).
    fn send_answer(&mut self, now: Instant, call: CallRef, resp: Response) {
        let t1 = self.cfg.timers.t1;
        let Some((local, transport)) = self.calls.get(&call).map(|c| (c.local, c.transport)) else {
            return;
        };
        let contact = self.contact_uri(local, transport);
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.dialog = Dialog::new_uas(&c.invite, &c.local_tag, contact, c.peer).ok();
        c.phase = Phase::Answered;
        let cseq = c.invite.headers.cseq().map(|s| s.seq).unwrap_or(0);
        c.ok_retransmit = Some(Retransmit {
            response: resp.clone(),
            dest: c.peer,
            next: now + t1,
            interval: t1,
            give_up: now + t1 * 64,
            cseq,
        });
        let key = c.invite_key.clone();
        let _ = self.txn.send_response(now, &key, resp);
    }

    /// Send a ringing incoming call elsewhere: 302 Moved Temporarily with `target` as Contact
    /// (RFC 3261 §8.3.1.2); the caller then calls there (or not).
    pub fn redirect_incoming(
        &mut self,
        now: Instant,
        call: CallRef,
        target: &Uri,
    ) -> Result<(), UaError> {
        let c = self.calls.get(&call).ok_or(UaError::NoSuchCall)?;
        if !matches!(c.phase, Phase::Ringing) {
            return Err(UaError::WrongState);
        }
        let mut resp = response_to(&c.invite, 302, None, Some(&c.local_tag));
        resp.headers.push(
            HeaderName::CONTACT,
            NameAddr::new(target.clone()).to_string(),
        );
        let key = c.invite_key.clone();
        let _ = self.txn.send_response(now, &key, resp);
        self.drain_txn(now, None);
        self.end_call(call, EndCause::LocalReject(302));
        Ok(())
    }

    /// Reject an incoming call with `code` (486, 603, ...).
    pub fn reject(&mut self, now: Instant, call: CallRef, code: u16) -> Result<(), UaError> {
        let c = self.calls.get(&call).ok_or(UaError::NoSuchCall)?;
        if !matches!(c.phase, Phase::Ringing) {
            return Err(UaError::WrongState);
        }
        let resp = response_to(&c.invite, code, None, Some(&c.local_tag));
        let key = c.invite_key.clone();
        let _ = self.txn.send_response(now, &key, resp);
        self.end_call(call, EndCause::LocalReject(code));
        self.drain_txn(now, None);
        Ok(())
    }

    /// End a call in any state: CANCEL while calling, BYE when answered, 603 while ringing.
    pub fn hangup(&mut self, now: Instant, call: CallRef) -> Result<(), UaError> {
        let c = self.calls.get_mut(&call).ok_or(UaError::NoSuchCall)?;
        match c.phase {
            Phase::Ringing => return self.reject(now, call, 603),
            Phase::Calling {
                provisional: true, ..
            } => {
                self.send_cancel(now, call);
                // The call ends when the 487 (or a 2xx, then BYE) arrives.
            }
            Phase::Calling {
                provisional: false,
                ref mut cancel_pending,
            } => {
                // RFC 3261 §9.1: no CANCEL before a provisional response. The call ends for
                // the user now; if a 1xx comes later we CANCEL, if a 2xx comes we ACK + BYE.
                *cancel_pending = true;
                self.events.push_back(UaEvent::Ended {
                    call,
                    cause: EndCause::LocalCancel,
                });
            }
            Phase::Answered | Phase::Confirmed => {
                // Ended comes when the BYE is answered (after any 401/407 round).
                self.terminate(now, call, ByeReport::Later);
            }
            // Already hanging up.
            Phase::Terminating { .. } => {}
        }
        self.drain_txn(now, None);
        Ok(())
    }

    /// Send a re-INVITE with a new SDP `offer` on an established call (hold, media change).
    /// The answer comes as [`UaEvent::Answered`]; a failure other than 481/408 leaves the
    /// session as it was. A 401/407 is answered with the call's credentials.
    pub fn reinvite(&mut self, now: Instant, call: CallRef, offer: Vec<u8>) -> Result<(), UaError> {
        let branch = new_branch(&mut self.rng);
        let c = self.calls.get_mut(&call).ok_or(UaError::NoSuchCall)?;
        // RFC 3261 §14.1: not while another INVITE of ours is in progress.
        let busy = self
            .in_dialog
            .values()
            .any(|o| o.call == call && o.request.method == Method::Invite && o.ack.is_none());
        if !matches!(c.phase, Phase::Confirmed) || busy || c.reoffer.is_some() {
            return Err(UaError::WrongState);
        }
        let dialog = c.dialog.as_mut().ok_or(UaError::WrongState)?;
        let mut req = dialog.request(Method::Invite, c.local, &branch, None);
        let dest = dialog.next_hop();
        let reliable = dialog.next_hop_transport().is_reliable();
        req.headers.push(HeaderName::ALLOW, ALLOW);
        req.headers
            .push(HeaderName::USER_AGENT, self.cfg.user_agent.clone());
        if !offer.is_empty() {
            req.headers
                .push(HeaderName::CONTENT_TYPE, "application/sdp");
        }
        req.body = offer;
        self.send_in_dialog(now, call, req, dest, reliable);
        self.drain_txn(now, None);
        Ok(())
    }

    /// Send an INFO request (RFC 6086) with `body` of `content_type` on an established call;
    /// its final response comes as [`UaEvent::InfoAnswered`].
    pub fn info(
        &mut self,
        now: Instant,
        call: CallRef,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(), UaError> {
        self.send_confirmed(now, call, Method::Info, |req, _| {
            req.headers.push(HeaderName::CONTENT_TYPE, content_type);
            req.body = body;
        })
    }

    /// Refresh the session (RFC 4028 §7.4): an UPDATE without a body when the peer allows
    /// UPDATE, else a re-INVITE with the SDP we last sent (the same session), unless another
    /// INVITE is under way (then a little later).
    fn refresh_session(&mut self, now: Instant, call: CallRef) {
        let busy = self
            .in_dialog
            .values()
            .any(|o| o.call == call && o.request.method == Method::Invite && o.ack.is_none());
        let branch = new_branch(&mut self.rng);
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(timer) = c.timer.as_mut() else {
            return;
        };
        if busy || c.reoffer.is_some() || c.ok_retransmit.is_some() {
            timer.due = now + Duration::from_secs(1);
            return;
        }
        let interval = timer.interval.as_secs();
        // Until the answer comes, the next try is a full interval away.
        timer.due = now + timer.interval;
        let Some(dialog) = c.dialog.as_mut() else {
            return;
        };
        let method = if c.peer_allows_update {
            Method::Update
        } else {
            Method::Invite
        };
        let mut req = dialog.request(method.clone(), c.local, &branch, None);
        let dest = dialog.next_hop();
        let reliable = dialog.next_hop_transport().is_reliable();
        req.headers.push(HeaderName::ALLOW, ALLOW);
        req.headers.push(HeaderName::SUPPORTED, SUPPORTED);
        req.headers.push(
            HeaderName::SESSION_EXPIRES,
            format!("{interval};refresher=uac"),
        );
        req.headers.push(
            HeaderName::MIN_SE,
            c.min_se.unwrap_or(MIN_SE).min(interval as u32).to_string(),
        );
        req.headers
            .push(HeaderName::USER_AGENT, self.cfg.user_agent.clone());
        if method == Method::Invite && !c.local_sdp.is_empty() {
            req.headers
                .push(HeaderName::CONTENT_TYPE, "application/sdp");
            req.body = c.local_sdp.clone();
        }
        let key = self.send_in_dialog(now, call, req, dest, reliable);
        self.refreshes.insert(key);
        self.drain_txn(now, None);
    }

    /// Set the credentials used for `call`'s requests (answering 401/407 to its BYE or
    /// re-INVITE). An incoming call to a registered account gets that account's credentials
    /// by itself; this overrides them.
    pub fn set_call_credentials(
        &mut self,
        call: CallRef,
        credentials: Option<Credentials>,
    ) -> Result<(), UaError> {
        let c = self.calls.get_mut(&call).ok_or(UaError::NoSuchCall)?;
        c.auth = credentials.map(Authenticator::new);
        Ok(())
    }

    /// True once the call is confirmed (our 2xx was ACKed, or we ACKed theirs): the time from
    /// which re-INVITEs, REFERs and INFOs may go (RFC 3261 §14.1, RFC 5407 §3.1.5).
    pub fn is_confirmed(&self, call: CallRef) -> bool {
        self.calls
            .get(&call)
            .is_some_and(|c| matches!(c.phase, Phase::Confirmed))
    }

    /// The SDP we last sent on `call`.
    pub fn local_sdp(&self, call: CallRef) -> Option<&[u8]> {
        self.calls.get(&call).map(|c| c.local_sdp.as_slice())
    }

    fn alloc_call(&mut self) -> CallRef {
        let id = self.next_call;
        self.next_call += 1;
        id
    }

    fn contact_uri(&self, local: SocketAddr, transport: Transport) -> Uri {
        let mut uri = Uri::sip(Some(&self.cfg.user), ip_host(local), Some(local.port()));
        if transport != Transport::Udp {
            uri.params.set("transport", Some(transport.param_name()));
        }
        uri
    }

    fn end_call(&mut self, call: CallRef, cause: EndCause) {
        if let Some(c) = self.calls.remove(&call) {
            self.by_invite_branch.remove(&c.invite_key.branch);
            self.in_dialog.retain(|_, o| o.call != call);
            let already_reported = matches!(
                c.phase,
                Phase::Calling {
                    cancel_pending: true,
                    provisional: false
                } | Phase::Terminating { reported: true, .. }
            );
            if !already_reported {
                self.events.push_back(UaEvent::Ended { call, cause });
            }
        }
    }

    fn send_cancel(&mut self, now: Instant, call: CallRef) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        // RFC 3261 §9.1: same Request-URI, Call-ID, From, To, CSeq number and top Via as the INVITE.
        let mut cancel = Request::new(Method::Cancel, c.invite.uri.clone());
        let h = &c.invite.headers;
        if let Ok(via) = h.top_via() {
            cancel.headers.push(HeaderName::VIA, via.to_string());
        }
        cancel.headers.push(HeaderName::MAX_FORWARDS, "70");
        for route in h.get_all(&HeaderName::ROUTE) {
            cancel.headers.push(HeaderName::ROUTE, route);
        }
        for name in [HeaderName::FROM, HeaderName::TO, HeaderName::CALL_ID] {
            if let Some(v) = h.get(&name) {
                cancel.headers.push(name.clone(), v);
            }
        }
        let seq = h.cseq().map(|s| s.seq).unwrap_or(1);
        cancel.headers.push(
            HeaderName::CSEQ,
            CSeq {
                seq,
                method: Method::Cancel,
            }
            .to_string(),
        );
        let dest = c.peer;
        let key = self
            .txn
            .send_request(now, cancel, dest, c.transport.is_reliable());
        self.pending.insert(key);
    }

    /// End a call with BYE. The call stays in [`Phase::Terminating`] until the BYE has a
    /// final response, so that a challenge can be answered; `report` says when `Ended` goes out.
    fn terminate(&mut self, now: Instant, call: CallRef, report: ByeReport) {
        let branch = new_branch(&mut self.rng);
        let report_by = now + self.cfg.timers.t1 * 8;
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(dialog) = c.dialog.as_mut() else {
            match report {
                ByeReport::Now(cause) => self.end_call(call, cause),
                ByeReport::Later => self.end_call(call, EndCause::LocalBye),
                ByeReport::Silent => {
                    if let Some(c) = self.calls.remove(&call) {
                        self.by_invite_branch.remove(&c.invite_key.branch);
                    }
                }
            }
            return;
        };
        let bye = dialog.request(Method::Bye, c.local, &branch, None);
        let dest = dialog.next_hop();
        let reliable = dialog.next_hop_transport().is_reliable();
        // No more 2xx retransmissions once we hang up.
        c.ok_retransmit = None;
        let reported = match report {
            ByeReport::Later => false,
            ByeReport::Silent => true,
            ByeReport::Now(cause) => {
                self.events.push_back(UaEvent::Ended { call, cause });
                true
            }
        };
        c.phase = Phase::Terminating {
            reported,
            report_by,
        };
        self.send_in_dialog(now, call, bye, dest, reliable);
    }

    /// Send an in-dialog request of `call` (pre-authorized with the dialog's last challenge,
    /// if any) and remember it for challenges and responses.
    fn send_in_dialog(
        &mut self,
        now: Instant,
        call: CallRef,
        mut req: Request,
        dest: SocketAddr,
        reliable: bool,
    ) -> TxnKey {
        if let Some(auth) = self.calls.get_mut(&call).and_then(|c| c.auth.as_mut()) {
            if auth.has_challenges() {
                auth.authorize_request(&mut self.rng, &mut req);
            }
        }
        let key = self.txn.send_request(now, req.clone(), dest, reliable);
        if req.method == Method::Bye {
            self.pending.insert(key.clone());
        }
        self.in_dialog.insert(
            key.clone(),
            OutRequest {
                call,
                request: req,
                dest,
                reliable,
                ack: None,
            },
        );
        key
    }

    /// Handle what the transaction layer produced. `local` is the address a datagram being
    /// handled arrived at (only requests from the network need it, for Contact and SDP).
    fn drain_txn(&mut self, now: Instant, local: Option<SocketAddr>) {
        while let Some(ev) = self.txn.poll_event() {
            match ev {
                TxnEvent::Request {
                    key,
                    request,
                    source,
                } => self.on_request(now, key, request, source, local),
                TxnEvent::Response { key, response } => self.on_response(now, key, response),
                TxnEvent::StrayResponse { response, source } => {
                    self.on_stray_response(now, response, source)
                }
                TxnEvent::Timeout { key } => self.on_txn_timeout(now, key),
                TxnEvent::Terminated { .. } => {}
                TxnEvent::Dropped { reason, peer } => self.events.push_back(UaEvent::Dropped {
                    source: peer,
                    reason,
                }),
            }
        }
    }

    fn find_call_by_key(&self, key: &TxnKey) -> Option<CallRef> {
        self.calls
            .iter()
            .find(|(_, c)| &c.invite_key == key)
            .map(|(&id, _)| id)
    }

    fn find_dialog(&self, req: &Request) -> Option<CallRef> {
        let call_id = req.headers.call_id().ok()?;
        let to_tag = req.headers.to().ok()?.tag()?.to_string();
        let from_tag = req
            .headers
            .from()
            .ok()?
            .tag()
            .map(str::to_string)
            .unwrap_or_default();
        let want = DialogId {
            call_id: call_id.to_string(),
            local_tag: to_tag,
            remote_tag: from_tag,
        };
        self.calls
            .iter()
            .find(|(_, c)| c.dialog.as_ref().is_some_and(|d| d.id == want))
            .map(|(&id, _)| id)
    }

    /// Answer a request: on its server transaction, or statelessly when it has none.
    fn respond(&mut self, now: Instant, key: &Option<TxnKey>, source: SocketAddr, resp: Response) {
        match key {
            Some(key) => {
                let _ = self.txn.send_response(now, key, resp);
            }
            None => self.txn.send_stateless(source, Message::Response(resp)),
        }
    }

    fn on_request(
        &mut self,
        now: Instant,
        key: Option<TxnKey>,
        req: Request,
        source: SocketAddr,
        local: Option<SocketAddr>,
    ) {
        let in_dialog = req
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(str::to_string))
            .is_some();
        match req.method {
            Method::Invite if !in_dialog => match local {
                Some(local) => self.on_new_invite(now, key, req, source, local),
                None => self.events.push_back(UaEvent::Dropped {
                    source,
                    reason: "INVITE without a local address".into(),
                }),
            },
            Method::Invite => self.on_reinvite(now, key, req, source),
            Method::Ack => self.on_ack(req),
            Method::Cancel => self.on_cancel(now, key, req, source),
            Method::Bye => self.on_bye(now, key, req, source),
            Method::Options => {
                let mut resp = response_to(&req, 200, None, Some(&random_token(&mut self.rng, 16)));
                resp.headers.push(HeaderName::ALLOW, ALLOW);
                resp.headers.push(HeaderName::ACCEPT, "application/sdp");
                resp.headers.push(HeaderName::SUPPORTED, SUPPORTED);
                resp.headers
                    .push(HeaderName::SERVER, self.cfg.user_agent.clone());
                self.respond(now, &key, source, resp);
            }
            Method::Prack => self.on_prack(now, key, req, source),
            Method::Refer if in_dialog => self.on_refer(now, key, req, source),
            Method::Update if in_dialog => self.on_update(now, key, req, source),
            Method::Notify if in_dialog => self.on_notify(now, key, req, source),
            Method::Info if in_dialog => match self.find_dialog(&req) {
                Some(call) => {
                    let resp = response_to(&req, 200, None, None);
                    self.respond(now, &key, source, resp);
                    let content_type = req.headers.content_type().unwrap_or_default().to_string();
                    self.events.push_back(UaEvent::Info {
                        call,
                        content_type,
                        body: req.body,
                    });
                }
                None => {
                    let resp = response_to(&req, 481, None, None);
                    self.respond(now, &key, source, resp);
                }
            },
            _ => {
                let code = if in_dialog && self.find_dialog(&req).is_none() {
                    481
                } else {
                    405
                };
                let mut resp = response_to(&req, code, None, None);
                resp.headers.push(HeaderName::ALLOW, ALLOW);
                self.respond(now, &key, source, resp);
            }
        }
    }

    /// UPDATE (RFC 3311) without a body: a session refresh (RFC 4028). One with an offer is
    /// refused (488): offers come by re-INVITE here.
    fn on_update(&mut self, now: Instant, key: Option<TxnKey>, req: Request, source: SocketAddr) {
        let Some(call) = self.find_dialog(&req) else {
            let resp = response_to(&req, 481, None, None);
            self.respond(now, &key, source, resp);
            return;
        };
        if !req.body.is_empty() {
            let mut resp = response_to(&req, 488, None, None);
            resp.headers.push(
                HeaderName::WARNING,
                "399 termphone \"offers by re-INVITE only\"",
            );
            self.respond(now, &key, source, resp);
            return;
        }
        if let Some(resp) = session_interval_refusal(&req, "") {
            self.respond(now, &key, source, resp);
            return;
        }
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        peer_refreshed(&mut c.timer, now, &req);
        let mut resp = response_to(&req, 200, None, None);
        resp.headers.push(HeaderName::SUPPORTED, SUPPORTED);
        push_session_expires(&mut resp, c.timer.as_ref());
        self.respond(now, &key, source, resp);
    }

    /// PRACK (RFC 3262 §3): it must name (RAck) our reliable provisional response that waits
    /// for it, in the early dialog of that response; then 200, and a 2xx the user already
    /// answered with goes out. Anything else gets 481.
    fn on_prack(&mut self, now: Instant, key: Option<TxnKey>, req: Request, source: SocketAddr) {
        let rack = req.headers.get(&HeaderName::RACK).and_then(parse_rack);
        let call_id = req.headers.call_id().ok().map(str::to_string);
        let to_tag = req
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(str::to_string));
        let from_tag = req
            .headers
            .from()
            .ok()
            .and_then(|f| f.tag().map(str::to_string));
        let found = self.calls.iter().find_map(|(&id, c)| {
            let rel = c.reliable.as_ref()?;
            let same_dialog = c.invite.headers.call_id().ok() == call_id.as_deref()
                && to_tag.as_deref() == Some(c.local_tag.as_str())
                && c.invite
                    .headers
                    .from()
                    .ok()
                    .and_then(|f| f.tag().map(str::to_string))
                    == from_tag;
            let invite_cseq = c.invite.headers.cseq().ok()?.seq;
            let (rseq, cseq, method) = rack.as_ref()?;
            (same_dialog && *rseq == rel.rseq && *cseq == invite_cseq && *method == Method::Invite)
                .then_some(id)
        });
        let Some(call) = found else {
            let resp = response_to(&req, 481, None, None);
            self.respond(now, &key, source, resp);
            return;
        };
        let resp = response_to(&req, 200, None, None);
        self.respond(now, &key, source, resp);
        let queued = self.calls.get_mut(&call).and_then(|c| {
            c.reliable = None;
            c.queued_answer.take()
        });
        if let Some(ok) = queued {
            self.send_answer(now, call, ok);
        }
    }

    fn on_refer(&mut self, now: Instant, key: Option<TxnKey>, req: Request, source: SocketAddr) {
        let Some(key) = key else { return };
        let Some(call) = self.find_dialog(&req) else {
            let resp = response_to(&req, 481, None, None);
            self.respond(now, &Some(key), source, resp);
            return;
        };
        let refer_to = req.headers.get(&HeaderName::REFER_TO).map(str::to_string);
        let busy = self.calls.get(&call).is_some_and(|c| c.refer.is_some());
        match refer_to {
            None => {
                let resp = response_to(&req, 400, Some("Missing Refer-To"), None);
                self.respond(now, &Some(key), source, resp);
            }
            Some(_) if busy => {
                let resp = response_to(&req, 491, None, None);
                self.respond(now, &Some(key), source, resp);
            }
            Some(refer_to) => {
                let referred_by = req
                    .headers
                    .get(&HeaderName::REFERRED_BY)
                    .map(str::to_string);
                if let Some(c) = self.calls.get_mut(&call) {
                    c.refer = Some((key, req, source));
                }
                self.events.push_back(UaEvent::Refer {
                    call,
                    refer_to,
                    referred_by,
                });
            }
        }
    }

    fn on_notify(&mut self, now: Instant, key: Option<TxnKey>, req: Request, source: SocketAddr) {
        let Some(call) = self.find_dialog(&req) else {
            let resp = response_to(&req, 481, None, None);
            self.respond(now, &key, source, resp);
            return;
        };
        let event = req
            .headers
            .get(&HeaderName::EVENT)
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if event != "refer" {
            let resp = response_to(&req, 489, Some("Bad Event"), None);
            self.respond(now, &key, source, resp);
            return;
        }
        let resp = response_to(&req, 200, None, None);
        self.respond(now, &key, source, resp);
        let terminated = req
            .headers
            .get(&HeaderName::SUBSCRIPTION_STATE)
            .is_some_and(|s| {
                s.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("terminated")
            });
        // The sipfrag's status line: "SIP/2.0 200 OK".
        let code = std::str::from_utf8(&req.body)
            .ok()
            .and_then(|b| b.lines().next())
            .and_then(|l| l.strip_prefix("SIP/2.0 "))
            .and_then(|l| l.get(..3))
            .and_then(|c| c.parse::<u16>().ok());
        if let Some(code) = code {
            self.events.push_back(UaEvent::ReferProgress {
                call,
                code,
                terminated,
            });
        }
    }

    /// Send a REFER (RFC 3515) on an established call asking the peer to call `refer_to` (a
    /// URI, or a URI with `?Replaces=...`); its answer comes as [`UaEvent::ReferAnswered`], the
    /// new call's progress as [`UaEvent::ReferProgress`].
    pub fn refer(&mut self, now: Instant, call: CallRef, refer_to: &str) -> Result<(), UaError> {
        self.send_confirmed(now, call, Method::Refer, |req, dialog| {
            req.headers
                .push(HeaderName::REFER_TO, format!("<{refer_to}>"));
            req.headers.push(
                HeaderName::REFERRED_BY,
                format!("<{}>", dialog.local_uri.uri),
            );
        })
    }

    /// Send a request of `method` in a confirmed call's dialog, filled in by `fill` (headers
    /// and body besides the dialog's own), and keep it for its challenges and answer.
    fn send_confirmed(
        &mut self,
        now: Instant,
        call: CallRef,
        method: Method,
        fill: impl FnOnce(&mut Request, &Dialog),
    ) -> Result<(), UaError> {
        let branch = new_branch(&mut self.rng);
        let user_agent = self.cfg.user_agent.clone();
        let c = self.calls.get_mut(&call).ok_or(UaError::NoSuchCall)?;
        if !matches!(c.phase, Phase::Confirmed) {
            return Err(UaError::WrongState);
        }
        let dialog = c.dialog.as_mut().ok_or(UaError::WrongState)?;
        let mut req = dialog.request(method, c.local, &branch, None);
        let dest = dialog.next_hop();
        let reliable = dialog.next_hop_transport().is_reliable();
        req.headers.push(HeaderName::USER_AGENT, user_agent);
        fill(&mut req, dialog);
        self.send_in_dialog(now, call, req, dest, reliable);
        self.drain_txn(now, None);
        Ok(())
    }

    /// Accept the peer's REFER ([`UaEvent::Refer`]): 202 Accepted, and a first NOTIFY (100
    /// Trying), as RFC 3515 §2.4.4 asks.
    pub fn accept_refer(&mut self, now: Instant, call: CallRef) -> Result<(), UaError> {
        let c = self.calls.get_mut(&call).ok_or(UaError::NoSuchCall)?;
        let (key, req, source) = c.refer.take().ok_or(UaError::WrongState)?;
        let resp = response_to(&req, 202, None, None);
        self.respond(now, &Some(key), source, resp);
        self.notify_refer(now, call, 100, "Trying", false)
    }

    /// Refuse the peer's REFER with `code` (603 Declined, say).
    pub fn reject_refer(&mut self, now: Instant, call: CallRef, code: u16) -> Result<(), UaError> {
        let c = self.calls.get_mut(&call).ok_or(UaError::NoSuchCall)?;
        let (key, req, source) = c.refer.take().ok_or(UaError::WrongState)?;
        let resp = response_to(&req, code, None, None);
        self.respond(now, &Some(key), source, resp);
        Ok(())
    }

    /// Tell the peer how the call its REFER asked for is going: a NOTIFY with a sipfrag of
    /// `code reason`; `terminated` with the final answer.
    pub fn notify_refer(
        &mut self,
        now: Instant,
        call: CallRef,
        code: u16,
        reason: &str,
        terminated: bool,
    ) -> Result<(), UaError> {
        self.send_confirmed(now, call, Method::Notify, |req, _| {
            req.headers.push(HeaderName::EVENT, "refer");
            req.headers.push(
                HeaderName::SUBSCRIPTION_STATE,
                if terminated {
                    "terminated;reason=noresource"
                } else {
                    "active;expires=60"
                },
            );
            req.headers
                .push(HeaderName::CONTENT_TYPE, "message/sipfrag;version=2.0");
            req.body = format!("SIP/2.0 {code} {reason}\r\n").into_bytes();
        })
    }

    fn on_new_invite(
        &mut self,
        now: Instant,
        key: Option<TxnKey>,
        req: Request,
        source: SocketAddr,
        local: SocketAddr,
    ) {
        let Some(key) = key else { return };
        let (from, to) = match (req.headers.from(), req.headers.to()) {
            (Ok(f), Ok(t)) => (f, t),
            _ => {
                let resp = response_to(&req, 400, Some("Bad From or To"), None);
                let _ = self.txn.send_response(now, &key, resp);
                return;
            }
        };
        let required: Vec<String> = req
            .headers
            .tokens(&HeaderName::REQUIRE)
            .into_iter()
            .filter(|t| !SUPPORTED.split(", ").any(|s| s.eq_ignore_ascii_case(t)))
            .collect();
        if !required.is_empty() {
            // An extension we do not support: RFC 3261 §8.2.2.3 (a final response: with a To
            // tag, §8.2.6.2).
            let mut resp = response_to(&req, 420, None, Some(&random_token(&mut self.rng, 16)));
            resp.headers
                .push(HeaderName::UNSUPPORTED, required.join(", "));
            let _ = self.txn.send_response(now, &key, resp);
            return;
        }
        let tag = random_token(&mut self.rng, 16);
        if let Some(resp) = session_interval_refusal(&req, &tag) {
            let _ = self.txn.send_response(now, &key, resp);
            return;
        }
        // Replaces (RFC 3891 §3): it must name a dialog of ours that is up, else 481.
        let replaces = match req.headers.get(&HeaderName::REPLACES) {
            None => None,
            Some(value) => match self.find_replaced(value) {
                Some(call) => Some(call),
                None => {
                    let resp = response_to(&req, 481, None, None);
                    let _ = self.txn.send_response(now, &key, resp);
                    return;
                }
            },
        };
        let id = self.alloc_call();
        let local_tag = random_token(&mut self.rng, 16);
        self.by_invite_branch.insert(key.branch.clone(), id);
        let offer = req.body.clone();
        let registration = self.incoming_registration(&req);
        let auth = registration
            .and_then(|r| self.registrations.get(&r))
            .and_then(|(r, _)| r.credentials().cloned())
            .map(Authenticator::new);
        let transport = via_transport(&req.headers);
        // RFC 3262 §3: a caller that requires 100rel gets our provisionals reliably, numbered
        // from a random start in 1..2^31.
        let next_rseq = has_option_tag(&req.headers, &HeaderName::REQUIRE, "100rel")
            .then(|| self.rng.random_range(1..1u32 << 31));
        let peer_allows_update = has_option_tag(&req.headers, &HeaderName::ALLOW, "UPDATE");
        self.calls.insert(
            id,
            Call {
                phase: Phase::Ringing,
                invite: req,
                invite_key: key,
                peer: source,
                local,
                local_tag,
                dialog: None,
                ok_retransmit: None,
                reoffer: None,
                offer_in_reinvite_ok: false,
                refer: None,
                timer: None,
                redirects: 0,
                early: None,
                last_rseq: None,
                next_rseq,
                reliable: None,
                queued_answer: None,
                min_se: None,
                peer_allows_update,
                ack: None,
                local_sdp: Vec::new(),
                auth,
                transport,
            },
        );
        self.events.push_back(UaEvent::Incoming {
            call: id,
            from: Box::new(from),
            to: Box::new(to),
            offer,
            local,
            registration,
            replaces,
        });
    }

    /// The confirmed call a Replaces value (`call-id;to-tag=ours;from-tag=theirs`) names.
    fn find_replaced(&self, value: &str) -> Option<CallRef> {
        let mut parts = value.split(';');
        let call_id = parts.next()?.trim();
        let (mut to_tag, mut from_tag) = (None, None);
        for p in parts {
            match p.trim().split_once('=') {
                Some((k, v)) if k.trim().eq_ignore_ascii_case("to-tag") => to_tag = Some(v.trim()),
                Some((k, v)) if k.trim().eq_ignore_ascii_case("from-tag") => {
                    from_tag = Some(v.trim())
                }
                _ => {}
            }
        }
        let (to_tag, from_tag) = (to_tag?, from_tag?);
        self.calls
            .iter()
            .find(|(_, c)| {
                matches!(c.phase, Phase::Confirmed)
                    && c.dialog.as_ref().is_some_and(|d| {
                        d.id.call_id == call_id
                            && d.id.local_tag == to_tag
                            && d.id.remote_tag == from_tag
                    })
            })
            .map(|(&id, _)| id)
    }

    /// Where an attended transfer sends the other party to reach this call's peer: the
    /// peer's target URI with a Replaces header naming this dialog from the peer's side
    /// (`?Replaces=call-id%3Bto-tag%3D<theirs>%3Bfrom-tag%3D<ours>`, RFC 3891 §7).
    pub fn replaces_target(&self, call: CallRef) -> Option<String> {
        let d = self.calls.get(&call)?.dialog.as_ref()?;
        let replaces = format!(
            "{};to-tag={};from-tag={}",
            d.id.call_id, d.id.remote_tag, d.id.local_tag
        );
        let escaped: String = replaces
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z'
                | b'a'..=b'z'
                | b'0'..=b'9'
                | b'-'
                | b'_'
                | b'.'
                | b'!'
                | b'~'
                | b'*'
                | b'\''
                | b'('
                | b')' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let mut target = d.remote_target.clone();
        target.headers.clear();
        Some(format!("{target}?Replaces={escaped}"))
    }

    fn on_reinvite(&mut self, now: Instant, key: Option<TxnKey>, req: Request, source: SocketAddr) {
        let Some(key) = key else { return };
        let Some(call) = self.find_dialog(&req) else {
            let resp = response_to(&req, 481, None, None);
            let _ = self.txn.send_response(now, &key, resp);
            return;
        };
        let c = self.calls.get_mut(&call).expect("found above");
        let Some(dialog) = c.dialog.as_mut() else {
            return;
        };
        if !dialog.accept_remote_seq(&req) {
            let resp = response_to(&req, 500, Some("CSeq Out of Order"), None);
            let _ = self.txn.send_response(now, &key, resp);
            return;
        }
        if let Some(resp) = session_interval_refusal(&req, "") {
            let _ = self.txn.send_response(now, &key, resp);
            return;
        }
        if matches!(c.phase, Phase::Answered) || c.reoffer.is_some() || c.ok_retransmit.is_some() {
            // A re-INVITE while our 2xx is unacknowledged, or while we are still answering the
            // last one: RFC 3261 §14.2 says 500 + Retry-After.
            let mut resp = response_to(&req, 500, None, None);
            resp.headers.push(HeaderName::RETRY_AFTER, "1");
            let _ = self.txn.send_response(now, &key, resp);
            return;
        }
        let ours_pending = self
            .in_dialog
            .values()
            .any(|o| o.call == call && o.request.method == Method::Invite && o.ack.is_none());
        if ours_pending {
            // Glare: both sent a re-INVITE (RFC 3261 §14.2).
            let resp = response_to(&req, 491, None, None);
            let _ = self.txn.send_response(now, &key, resp);
            return;
        }
        dialog.refresh_target(&Message::Request(req.clone()));
        // A re-INVITE from the peer refreshes the session (RFC 4028 §9), possibly anew.
        peer_refreshed(&mut c.timer, now, &req);
        if !req.body.is_empty() {
            // A new offer: the engine answers it (answer_reoffer / reject_reoffer).
            let sdp = req.body.clone();
            c.reoffer = Some((key, req, source));
            self.events.push_back(UaEvent::Reoffer { call, sdp });
            return;
        }
        // No offer in it: the engine makes one for the 200 (answer_reoffer); the answer comes
        // in the ACK.
        c.reoffer = Some((key, req, source));
        self.events.push_back(UaEvent::OfferWanted { call });
    }

    /// Answer the peer's re-INVITE: with our SDP answer to its offer ([`UaEvent::Reoffer`]),
    /// or with our offer when it had none ([`UaEvent::OfferWanted`]).
    pub fn answer_reoffer(
        &mut self,
        now: Instant,
        call: CallRef,
        answer: Vec<u8>,
    ) -> Result<(), UaError> {
        let c = self.calls.get_mut(&call).ok_or(UaError::NoSuchCall)?;
        let (key, req, source) = c.reoffer.take().ok_or(UaError::WrongState)?;
        c.local_sdp = answer;
        c.offer_in_reinvite_ok = req.body.is_empty();
        self.send_reinvite_ok(now, call, &key, &req, source);
        self.drain_txn(now, None);
        Ok(())
    }

    /// Refuse the peer's re-INVITE offer with `code` (488 Not Acceptable Here for an offer we
    /// cannot take); the session stays as it was.
    pub fn reject_reoffer(
        &mut self,
        now: Instant,
        call: CallRef,
        code: u16,
    ) -> Result<(), UaError> {
        let c = self.calls.get_mut(&call).ok_or(UaError::NoSuchCall)?;
        let (key, req, _) = c.reoffer.take().ok_or(UaError::WrongState)?;
        let resp = response_to(&req, code, None, None);
        let _ = self.txn.send_response(now, &key, resp);
        self.drain_txn(now, None);
        Ok(())
    }

    /// The 200 to a re-INVITE, with our current SDP, retransmitted until its ACK.
    fn send_reinvite_ok(
        &mut self,
        now: Instant,
        call: CallRef,
        key: &TxnKey,
        req: &Request,
        source: SocketAddr,
    ) {
        let t1 = self.cfg.timers.t1;
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(dialog) = c.dialog.as_ref() else {
            return;
        };
        let mut resp = response_to(req, 200, None, None);
        resp.headers.push(
            HeaderName::CONTACT,
            NameAddr::new(dialog.local_contact.clone()).to_string(),
        );
        resp.headers.push(HeaderName::ALLOW, ALLOW);
        resp.headers.push(HeaderName::SUPPORTED, SUPPORTED);
        push_session_expires(&mut resp, c.timer.as_ref());
        resp.headers
            .push(HeaderName::CONTENT_TYPE, "application/sdp");
        resp.body = c.local_sdp.clone();
        let cseq = req.headers.cseq().map(|s| s.seq).unwrap_or(0);
        c.ok_retransmit = Some(Retransmit {
            response: resp.clone(),
            dest: source,
            next: now + t1,
            interval: t1,
            give_up: now + t1 * 64,
            cseq,
        });
        let _ = self.txn.send_response(now, key, resp);
    }

    fn on_ack(&mut self, req: Request) {
        let Some(call) = self.find_dialog(&req) else {
            return;
        };
        let cseq = req.headers.cseq().map(|s| s.seq).unwrap_or(0);
        let c = self.calls.get_mut(&call).expect("found above");
        if c.ok_retransmit.as_ref().is_some_and(|r| r.cseq == cseq) {
            c.ok_retransmit = None;
            // The body is the answer when our 2xx carried the offer (RFC 3261 §13.2.1).
            let sdp = req.body;
            if matches!(c.phase, Phase::Answered) {
                c.phase = Phase::Confirmed;
                self.events.push_back(UaEvent::Confirmed { call, sdp });
            } else if std::mem::take(&mut c.offer_in_reinvite_ok) {
                self.events.push_back(UaEvent::ReofferAcked { call, sdp });
            }
        }
    }

    fn on_cancel(&mut self, now: Instant, key: Option<TxnKey>, req: Request, source: SocketAddr) {
        let branch = req
            .headers
            .top_via()
            .ok()
            .and_then(|v| v.branch().map(str::to_string));
        let call = branch.and_then(|b| self.by_invite_branch.get(&b).copied());
        let Some(call) = call else {
            let resp = response_to(&req, 481, None, None);
            self.respond(now, &key, source, resp);
            return;
        };
        let c = self.calls.get(&call).expect("indexed");
        // The 200 carries the same To tag as our responses to the INVITE (RFC 3261 §9.2).
        let resp = response_to(&req, 200, None, Some(&c.local_tag));
        self.respond(now, &key, source, resp);
        let c = self.calls.get(&call).expect("indexed");
        if matches!(c.phase, Phase::Ringing) {
            // RFC 3261 §9.2: the INVITE gets 487 Request Terminated.
            let resp = response_to(&c.invite, 487, None, Some(&c.local_tag));
            let key = c.invite_key.clone();
            let _ = self.txn.send_response(now, &key, resp);
            self.end_call(call, EndCause::RemoteCancel);
        }
    }

    fn on_bye(&mut self, now: Instant, key: Option<TxnKey>, req: Request, source: SocketAddr) {
        let Some(call) = self.find_dialog(&req) else {
            let resp = response_to(&req, 481, None, None);
            self.respond(now, &key, source, resp);
            return;
        };
        let resp = response_to(&req, 200, None, None);
        self.respond(now, &key, source, resp);
        // BYEs crossed: we hung up first.
        let ours = self
            .calls
            .get(&call)
            .is_some_and(|c| matches!(c.phase, Phase::Terminating { .. }));
        let cause = if ours {
            EndCause::LocalBye
        } else {
            EndCause::RemoteBye
        };
        self.end_call(call, cause);
    }

    fn on_response(&mut self, now: Instant, key: TxnKey, resp: Response) {
        if resp.code >= 200 {
            if let Some(id) = self.reg_keys.remove(&key) {
                if let Some((r, _)) = self.registrations.get_mut(&id) {
                    r.handle_response(now, &resp);
                }
                self.pump_registration(now, id);
                return;
            }
        }
        if self.in_dialog.contains_key(&key) {
            self.on_in_dialog_response(now, key, resp);
            return;
        }
        if key.method != Method::Invite {
            // BYE/CANCEL responses need no action: the call already ended (BYE) or ends on
            // the INVITE's 487 (CANCEL).
            if resp.code >= 200 {
                self.pending.remove(&key);
            }
            return;
        }
        let Some(call) = self.find_call_by_key(&key) else {
            // A 2xx for an INVITE whose call we already ended: ACK it and BYE (RFC 3261 §15).
            return;
        };
        let code = resp.code;
        let branch = new_branch(&mut self.rng);
        let c = self.calls.get_mut(&call).expect("found above");
        match code {
            100 => {
                if let Phase::Calling {
                    provisional,
                    cancel_pending,
                } = &mut c.phase
                {
                    *provisional = true;
                    if *cancel_pending {
                        self.send_cancel(now, call);
                    }
                }
            }
            101..=199 => {
                if let Phase::Calling {
                    provisional,
                    cancel_pending,
                } = &mut c.phase
                {
                    *provisional = true;
                    if *cancel_pending {
                        self.send_cancel(now, call);
                        return;
                    }
                    let reliable = resp
                        .headers
                        .tokens(&HeaderName::REQUIRE)
                        .iter()
                        .any(|t| t.eq_ignore_ascii_case("100rel"));
                    let rseq = resp
                        .headers
                        .get(&HeaderName::RSEQ)
                        .and_then(|v| v.trim().parse::<u32>().ok());
                    if let (true, Some(rseq)) = (reliable, rseq) {
                        if c.last_rseq.is_some_and(|last| rseq <= last) {
                            return; // a retransmission we acknowledged already
                        }
                        self.send_prack(now, call, &resp, rseq);
                    }
                    let sdp = (!resp.body.is_empty()).then(|| resp.body.clone());
                    self.events.push_back(UaEvent::Progress { call, code, sdp });
                }
            }
            200..=299 => {
                if let Some((dest, ack)) = &c.ack {
                    // A retransmitted 2xx: our ACK was lost, send it again.
                    self.transmits.push_back(Transmit {
                        dest: *dest,
                        message: Message::Request(ack.clone()),
                    });
                    return;
                }
                let mut dialog = match Dialog::new_uac(&c.invite, &resp, c.peer) {
                    Ok(d) => d,
                    Err(e) => {
                        let reason = format!("bad 2xx: {e}");
                        self.end_call(call, EndCause::Failed(reason));
                        return;
                    }
                };
                // PRACKs used CSeq numbers of the dialog: go on after them.
                if let Some(early) = c.early.take() {
                    if early.id.remote_tag == dialog.id.remote_tag {
                        dialog.local_seq = dialog.local_seq.max(early.local_seq);
                    }
                }
                let cseq = c.invite.headers.cseq().map(|s| s.seq).unwrap_or(1);
                let mut ack = dialog.request(Method::Ack, c.local, &branch, Some(cseq));
                copy_credentials(&c.invite, &mut ack);
                if let Some(auth) = c.auth.as_mut() {
                    // Accepted: clears the wrong-password bookkeeping, keeps the challenge.
                    let _ = auth.handle_response(&resp);
                }
                let dest = dialog.next_hop();
                self.transmits.push_back(Transmit {
                    dest,
                    message: Message::Request(ack.clone()),
                });
                c.ack = Some((dest, ack));
                c.dialog = Some(dialog);
                c.peer_allows_update = has_option_tag(&resp.headers, &HeaderName::ALLOW, "UPDATE");
                // RFC 4028 §7.2: the 2xx says who refreshes; we asked for nothing ourselves.
                c.timer = session_expires(&resp.headers).map(|(delta, refresher)| {
                    SessionTimer::new(now, delta, refresher.as_deref() != Some("uas"))
                });
                let cancelled = matches!(
                    c.phase,
                    Phase::Calling {
                        cancel_pending: true,
                        ..
                    }
                );
                c.phase = Phase::Confirmed;
                if cancelled {
                    // We hung up before the answer arrived (already reported): end it at once
                    // with BYE.
                    self.terminate(now, call, ByeReport::Silent);
                } else {
                    self.events.push_back(UaEvent::Answered {
                        call,
                        sdp: resp.body,
                    });
                }
            }
            401 | 407
                if c.auth.is_some()
                    && !matches!(
                        c.phase,
                        Phase::Calling {
                            cancel_pending: true,
                            ..
                        }
                    ) =>
            {
                if let Err(reason) = self.resend_with_credentials(now, call, &resp) {
                    self.end_call(call, EndCause::Rejected { code, reason });
                }
            }
            422 if matches!(
                c.phase,
                Phase::Calling {
                    cancel_pending: false,
                    ..
                }
            ) && c.min_se.is_none()
                && min_se(&resp.headers).is_some() =>
            {
                // RFC 4028 §7.4: once more, asking for the interval the 422 names (the
                // transaction layer ACKed the 422); a new CSeq and branch, as after a 401.
                let interval = min_se(&resp.headers).unwrap_or(MIN_SE).max(MIN_SE);
                let mut req = next_invite(&c.invite, &branch);
                ask_session_interval(&mut req, interval);
                if let Some(auth) = c.auth.as_mut() {
                    if auth.has_challenges() {
                        auth.authorize_request(&mut self.rng, &mut req);
                    }
                }
                let key =
                    self.txn
                        .send_request(now, req.clone(), c.peer, c.transport.is_reliable());
                c.min_se = Some(interval);
                c.invite = req;
                c.invite_key = key;
            }
            300..=399
                if matches!(
                    c.phase,
                    Phase::Calling {
                        cancel_pending: false,
                        ..
                    }
                ) && c.redirects < MAX_REDIRECTS =>
            {
                // RFC 3261 §8.1.3.4: the engine may try the Contacts (it resolves them and
                // calls `redirect`, or `give_up`).
                let targets: Vec<Uri> = match resp.headers.contacts() {
                    Ok(Contacts::List(list)) => list.into_iter().map(|n| n.uri).collect(),
                    _ => Vec::new(),
                };
                if targets.is_empty() {
                    let reason = resp.reason.clone();
                    self.end_call(call, EndCause::Rejected { code, reason });
                } else {
                    c.redirects += 1;
                    self.events.push_back(UaEvent::Redirected {
                        call,
                        code,
                        reason: resp.reason.clone(),
                        targets,
                    });
                }
            }
            _ => {
                let cause = if matches!(
                    c.phase,
                    Phase::Calling {
                        cancel_pending: true,
                        ..
                    }
                ) || code == 487
                {
                    EndCause::LocalCancel
                } else {
                    EndCause::Rejected {
                        code,
                        reason: resp.reason.clone(),
                    }
                };
                self.end_call(call, cause);
            }
        }
    }

    /// Acknowledge a reliable provisional response (RFC 3262 §4): PRACK in its early dialog,
    /// with RAck naming its RSeq and the INVITE's CSeq.
    fn send_prack(&mut self, now: Instant, call: CallRef, resp: &Response, rseq: u32) {
        let branch = new_branch(&mut self.rng);
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let remote_tag = resp
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(str::to_string));
        let same = c
            .early
            .as_ref()
            .is_some_and(|d| Some(&d.id.remote_tag) == remote_tag.as_ref());
        if !same {
            match Dialog::new_uac(&c.invite, resp, c.peer) {
                Ok(d) => c.early = Some(d),
                Err(e) => {
                    tracing::debug!(call, "no early dialog for PRACK: {e}");
                    return;
                }
            }
        }
        let invite_cseq = c.invite.headers.cseq().map(|s| s.seq).unwrap_or(1);
        let Some(early) = c.early.as_mut() else {
            return;
        };
        let mut req = early.request(Method::Prack, c.local, &branch, None);
        req.headers
            .push(HeaderName::RACK, format!("{rseq} {invite_cseq} INVITE"));
        req.headers
            .push(HeaderName::USER_AGENT, self.cfg.user_agent.clone());
        if let Some(auth) = c.auth.as_mut() {
            if auth.has_challenges() {
                auth.authorize_request(&mut self.rng, &mut req);
            }
        }
        let dest = early.next_hop();
        let reliable = early.next_hop_transport().is_reliable();
        c.last_rseq = Some(rseq);
        let key = self.txn.send_request(now, req, dest, reliable);
        self.pending.insert(key);
    }

    /// Follow a redirect ([`UaEvent::Redirected`]): the same INVITE (Call-ID, From tag, offer)
    /// with the next CSeq and a new branch, to `target`, sent to `dest`.
    pub fn redirect(
        &mut self,
        now: Instant,
        call: CallRef,
        target: Uri,
        dest: SocketAddr,
    ) -> Result<(), UaError> {
        let branch = new_branch(&mut self.rng);
        let c = self.calls.get_mut(&call).ok_or(UaError::NoSuchCall)?;
        if !matches!(c.phase, Phase::Calling { .. }) {
            return Err(UaError::WrongState);
        }
        let mut req = next_invite(&c.invite, &branch);
        req.uri = target;
        let key = self
            .txn
            .send_request(now, req.clone(), dest, c.transport.is_reliable());
        c.phase = Phase::Calling {
            provisional: false,
            cancel_pending: false,
        };
        c.invite = req;
        c.invite_key = key;
        c.peer = dest;
        self.drain_txn(now, None);
        Ok(())
    }

    /// Do not follow a redirect: the call ends with the 3xx that ended it.
    pub fn give_up(&mut self, call: CallRef, code: u16, reason: String) {
        self.end_call(call, EndCause::Rejected { code, reason });
    }

    /// Answer a 401/407 to our INVITE: the same INVITE with a new CSeq and branch and the
    /// credentials (the transaction layer already ACKed the challenge). Err: why not (a wrong
    /// password, an unsupported challenge), as the reason to report.
    fn resend_with_credentials(
        &mut self,
        now: Instant,
        call: CallRef,
        resp: &Response,
    ) -> Result<(), String> {
        let branch = new_branch(&mut self.rng);
        let Some(c) = self.calls.get_mut(&call) else {
            return Ok(());
        };
        let Some(auth) = c.auth.as_mut() else {
            return Err(resp.reason.clone());
        };
        match auth.handle_response(resp) {
            Ok(true) => {}
            Ok(false) => return Err(resp.reason.clone()),
            Err(e) => return Err(e.to_string()),
        }
        let mut req = next_invite(&c.invite, &branch);
        auth.authorize_request(&mut self.rng, &mut req);
        let key = self
            .txn
            .send_request(now, req.clone(), c.peer, c.transport.is_reliable());
        c.invite = req;
        c.invite_key = key;
        Ok(())
    }

    /// A response to a BYE or re-INVITE we sent.
    fn on_in_dialog_response(&mut self, now: Instant, key: TxnKey, resp: Response) {
        if resp.code < 200 {
            return;
        }
        let Some(out) = self.in_dialog.get(&key) else {
            return;
        };
        let call = out.call;
        let code = resp.code;
        if code == 401 || code == 407 {
            self.pending.remove(&key);
            if let Err(reason) = self.resend_in_dialog(now, &key, &resp) {
                // The request cannot be authorized: the call ends (a BYE's call ends anyway).
                let cause = EndCause::Rejected { code, reason };
                if key.method == Method::Bye {
                    self.end_call(call, cause);
                } else {
                    self.terminate(now, call, ByeReport::Now(cause));
                }
            }
            return;
        }
        if code == 422 && self.retry_with_min_se(now, &key, &resp) {
            return;
        }
        if let Some(auth) = self.calls.get_mut(&call).and_then(|c| c.auth.as_mut()) {
            // Not a challenge: clears the wrong-password bookkeeping, keeps the challenge.
            let _ = auth.handle_response(&resp);
        }
        match key.method {
            Method::Invite if (200..300).contains(&code) => {
                // Any answered re-INVITE refreshes the session; its 2xx may set a new timer.
                if let Some(c) = self.calls.get_mut(&call) {
                    if let Some((delta, refresher)) = session_expires(&resp.headers) {
                        c.timer = Some(SessionTimer::new(
                            now,
                            delta,
                            refresher.as_deref() != Some("uas"),
                        ));
                    } else if let Some(t) = c.timer.as_mut() {
                        t.restart(now);
                    }
                }
                self.on_reinvite_ok(key, resp)
            }
            Method::Invite if self.refreshes.remove(&key) => {
                self.in_dialog.remove(&key);
                if code == 481 || code == 408 {
                    let cause = EndCause::Rejected {
                        code,
                        reason: resp.reason,
                    };
                    self.terminate(now, call, ByeReport::Now(cause));
                } else if let Some(t) = self.calls.get_mut(&call).and_then(|c| c.timer.as_mut()) {
                    // Refused (491 glare, say): try again shortly; the session goes on.
                    t.due = now + Duration::from_secs(2);
                }
            }
            Method::Update if self.refreshes.remove(&key) => {
                self.in_dialog.remove(&key);
                self.on_update_refresh_answered(now, call, &resp);
            }
            Method::Invite => {
                self.in_dialog.remove(&key);
                // RFC 3261 §14.1: 481 and 408 end the dialog; any other failure leaves the
                // session as it was.
                if code == 481 || code == 408 {
                    let cause = EndCause::Rejected {
                        code,
                        reason: resp.reason,
                    };
                    self.terminate(now, call, ByeReport::Now(cause));
                } else {
                    self.events.push_back(UaEvent::ReinviteFailed {
                        call,
                        code,
                        reason: resp.reason,
                    });
                }
            }
            _ => {
                self.pending.remove(&key);
                self.in_dialog.remove(&key);
                if key.method == Method::Bye {
                    self.end_call(call, EndCause::LocalBye);
                } else if key.method == Method::Info {
                    self.events.push_back(UaEvent::InfoAnswered { call, code });
                } else if key.method == Method::Refer {
                    self.events.push_back(UaEvent::ReferAnswered { call, code });
                }
            }
        }
    }

    /// The final response to our refreshing UPDATE (RFC 4028 §7.4): a 2xx refreshes the
    /// session (its Session-Expires may set a new timer); 481 and 408 end the call (§10);
    /// 405 or 501 means the peer does not take UPDATE after all (re-INVITE next time); any
    /// other failure is tried again shortly.
    fn on_update_refresh_answered(&mut self, now: Instant, call: CallRef, resp: &Response) {
        let code = resp.code;
        if code == 481 || code == 408 {
            let cause = EndCause::Rejected {
                code,
                reason: resp.reason.clone(),
            };
            self.terminate(now, call, ByeReport::Now(cause));
            return;
        }
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if (200..300).contains(&code) {
            if let Some((delta, refresher)) = session_expires(&resp.headers) {
                c.timer = Some(SessionTimer::new(
                    now,
                    delta,
                    refresher.as_deref() != Some("uas"),
                ));
            } else if let Some(t) = c.timer.as_mut() {
                t.restart(now);
            }
            return;
        }
        if code == 405 || code == 501 {
            c.peer_allows_update = false;
        }
        if let Some(t) = c.timer.as_mut() {
            t.due = now + Duration::from_secs(2);
        }
    }

    /// A 422 to a re-INVITE or UPDATE of ours (RFC 4028 §7.4): the same request again with
    /// the dialog's next CSeq and a new branch, asking for the interval the 422's Min-SE names,
    /// which the session refreshes use from now on. False (nothing sent) when the 422 names
    /// no Min-SE above what we asked for: then it is a failure like any other.
    fn retry_with_min_se(&mut self, now: Instant, key: &TxnKey, resp: &Response) -> bool {
        let Some(interval) = min_se(&resp.headers).map(|v| v.max(MIN_SE)) else {
            return false;
        };
        let Some(out) = self.in_dialog.get(key) else {
            return false;
        };
        let asked = session_expires(&out.request.headers).map_or(0, |(d, _)| d);
        if interval <= asked {
            return false;
        }
        let branch = new_branch(&mut self.rng);
        let Some(out) = self.in_dialog.remove(key) else {
            return false;
        };
        let Some(c) = self.calls.get_mut(&out.call) else {
            return false;
        };
        let Some(dialog) = c.dialog.as_mut() else {
            return false;
        };
        let mut req = out.request;
        dialog.local_seq = dialog.local_seq.wrapping_add(1);
        req.headers.set(
            HeaderName::CSEQ,
            CSeq {
                seq: dialog.local_seq,
                method: req.method.clone(),
            }
            .to_string(),
        );
        if let Ok(mut via) = req.headers.top_via() {
            via.params.set("branch", Some(&branch));
            req.headers.set_top_via(&via);
        }
        ask_session_interval(&mut req, interval);
        if let Some(auth) = c.auth.as_mut() {
            if auth.has_challenges() {
                auth.authorize_request(&mut self.rng, &mut req);
            }
        }
        c.min_se = Some(interval);
        if let Some(t) = c.timer.as_mut() {
            t.interval = Duration::from_secs(u64::from(interval));
        }
        let new_key = self
            .txn
            .send_request(now, req.clone(), out.dest, out.reliable);
        if self.refreshes.remove(key) {
            self.refreshes.insert(new_key.clone());
        }
        self.in_dialog.insert(
            new_key,
            OutRequest {
                request: req,
                ..out
            },
        );
        true
    }

    /// A 2xx to our re-INVITE: ACK it (again for retransmissions) and report the answer.
    fn on_reinvite_ok(&mut self, key: TxnKey, resp: Response) {
        let branch = new_branch(&mut self.rng);
        let Some(out) = self.in_dialog.get_mut(&key) else {
            return;
        };
        if let Some((dest, ack)) = &out.ack {
            self.transmits.push_back(Transmit {
                dest: *dest,
                message: Message::Request(ack.clone()),
            });
            return;
        }
        let call = out.call;
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(dialog) = c.dialog.as_mut() else {
            return;
        };
        dialog.refresh_target(&Message::Response(resp.clone()));
        let cseq = out.request.headers.cseq().map(|s| s.seq).unwrap_or(1);
        let mut ack = dialog.request(Method::Ack, c.local, &branch, Some(cseq));
        copy_credentials(&out.request, &mut ack);
        let dest = dialog.next_hop();
        self.transmits.push_back(Transmit {
            dest,
            message: Message::Request(ack.clone()),
        });
        out.ack = Some((dest, ack));
        c.local_sdp = out.request.body.clone();
        // A session refresh of our own changes nothing the engine needs to know.
        if !self.refreshes.remove(&key) {
            self.events.push_back(UaEvent::Answered {
                call,
                sdp: resp.body,
            });
        }
    }

    /// Answer a 401/407 to an in-dialog request: the same request with the next CSeq of the
    /// dialog, a new branch and the call's credentials (same Call-ID, tags and Route set).
    /// Err: why not (no credentials, wrong password, unsupported challenge), as the reason to
    /// report.
    fn resend_in_dialog(
        &mut self,
        now: Instant,
        key: &TxnKey,
        resp: &Response,
    ) -> Result<(), String> {
        let branch = new_branch(&mut self.rng);
        let Some(out) = self.in_dialog.remove(key) else {
            return Ok(());
        };
        let Some(c) = self.calls.get_mut(&out.call) else {
            return Ok(());
        };
        let Some(auth) = c.auth.as_mut() else {
            return Err("authentication failed: no credentials for this call".into());
        };
        match auth.handle_response(resp) {
            Ok(true) => {}
            Ok(false) => return Err(format!("authentication failed: {}", resp.reason)),
            Err(e) => return Err(format!("authentication failed: {e}")),
        }
        let Some(dialog) = c.dialog.as_mut() else {
            return Ok(());
        };
        let mut req = out.request;
        dialog.local_seq = dialog.local_seq.wrapping_add(1);
        req.headers.set(
            HeaderName::CSEQ,
            CSeq {
                seq: dialog.local_seq,
                method: req.method.clone(),
            }
            .to_string(),
        );
        if let Ok(mut via) = req.headers.top_via() {
            via.params.set("branch", Some(&branch));
            req.headers.set_top_via(&via);
        }
        auth.authorize_request(&mut self.rng, &mut req);
        let key = self
            .txn
            .send_request(now, req.clone(), out.dest, out.reliable);
        if req.method == Method::Bye {
            self.pending.insert(key.clone());
        }
        self.in_dialog.insert(
            key,
            OutRequest {
                request: req,
                ..out
            },
        );
        Ok(())
    }

    /// The registration an incoming INVITE is for: its To is the account's address of record,
    /// or its Request-URI is the Contact the account registered.
    fn incoming_registration(&self, invite: &Request) -> Option<RegRef> {
        let same = |a: &Uri, b: &Uri| {
            a.user == b.user && a.host.to_string().eq_ignore_ascii_case(&b.host.to_string())
        };
        let to = invite.headers.to().ok();
        self.registrations.iter().find_map(|(id, (r, _))| {
            let for_us = to.as_ref().is_some_and(|t| same(&t.uri, r.aor()))
                || (same(&invite.uri, r.contact())
                    && invite.uri.port.unwrap_or(5060) == r.contact().port.unwrap_or(5060));
            for_us.then_some(*id)
        })
    }

    fn on_stray_response(&mut self, _now: Instant, resp: Response, source: SocketAddr) {
        // A 2xx retransmission after the INVITE transaction ended (RFC 6026 keeps it alive in
        // Accepted, so this is rare): re-send the ACK of the matching call.
        if (200..300).contains(&resp.code) {
            if let Ok(call_id) = resp.headers.call_id() {
                for c in self.calls.values() {
                    if c.invite.headers.call_id().ok() == Some(call_id) {
                        if let Some((dest, ack)) = &c.ack {
                            self.transmits.push_back(Transmit {
                                dest: *dest,
                                message: Message::Request(ack.clone()),
                            });
                        }
                        return;
                    }
                }
            }
        }
        self.events.push_back(UaEvent::Dropped {
            source,
            reason: format!("stray response {}", resp.code),
        });
    }

    fn on_txn_timeout(&mut self, now: Instant, key: TxnKey) {
        self.pending.remove(&key);
        if let Some(out) = self.in_dialog.remove(&key) {
            match key.method {
                // Our side is over anyway (reported at `report_by` at the latest).
                Method::Bye => self.end_call(out.call, EndCause::LocalBye),
                // RFC 3261 §14.1: a re-INVITE timeout ends the dialog; so does an unanswered
                // refreshing UPDATE (RFC 4028 §10).
                Method::Invite | Method::Update => {
                    self.refreshes.remove(&key);
                    self.terminate(now, out.call, ByeReport::Now(EndCause::Timeout))
                }
                Method::Info => self.events.push_back(UaEvent::InfoAnswered {
                    call: out.call,
                    code: 408,
                }),
                Method::Refer => self.events.push_back(UaEvent::ReferAnswered {
                    call: out.call,
                    code: 408,
                }),
                _ => {}
            }
            return;
        }
        if let Some(id) = self.reg_keys.remove(&key) {
            if let Some((r, _)) = self.registrations.get_mut(&id) {
                r.handle_request_timeout(now);
            }
            self.pump_registration(now, id);
            return;
        }
        if let Some(call) = self.find_call_by_key(&key) {
            let cancelled = self.calls.get(&call).is_some_and(|c| {
                matches!(
                    c.phase,
                    Phase::Calling {
                        cancel_pending: true,
                        ..
                    }
                )
            });
            let cause = if cancelled {
                EndCause::LocalCancel
            } else {
                EndCause::Timeout
            };
            self.end_call(call, cause);
        }
    }
}

/// Copy the Authorization / Proxy-Authorization of a request into its ACK (RFC 3261
/// §13.2.2.4: the ACK for a 2xx carries the INVITE's credentials).
fn copy_credentials(from: &Request, ack: &mut Request) {
    for name in [HeaderName::AUTHORIZATION, HeaderName::PROXY_AUTHORIZATION] {
        for v in from.headers.get_all(&name) {
            ack.headers.push(name.clone(), v);
        }
    }
}

#[cfg(test)]
mod auth_tests;

/// A Route header value for a loose-routing proxy: its URI with `;lr` (RFC 3261 §16.12).
pub fn loose_route(mut uri: Uri) -> NameAddr {
    if uri.params.get("lr").is_none() {
        uri.params.set("lr", None);
    }
    NameAddr::new(uri)
}

#[cfg(test)]
mod tests {
    //! Two user agents wired in memory, on synthetic time, with an optional lossy link.

    use super::*;

    const A: &str = "127.0.0.1:5061";
    const B: &str = "127.0.0.1:5062";

    fn ua(user: &str, seed: u64) -> UserAgent {
        UserAgent::new(UaConfig {
            user: user.into(),
            display_name: None,
            user_agent: "test".into(),
            timers: TimerConfig::default(),
            seed,
        })
    }

    /// A pair of agents and the datagrams between them.
    struct Pair {
        a: UserAgent,
        b: UserAgent,
        now: Instant,
        a_events: Vec<UaEvent>,
        b_events: Vec<UaEvent>,
        /// Drop the n-th datagram (0-based) of each kind whose first line starts with the key.
        drop_first: Vec<String>,
        wire: Vec<String>,
    }

    impl Pair {
        fn new() -> Pair {
            Pair {
                a: ua("alice", 1),
                b: ua("bob", 2),
                now: crate::test_epoch(),
                a_events: vec![],
                b_events: vec![],
                drop_first: vec![],
                wire: vec![],
            }
        }

        fn addr(s: &str) -> SocketAddr {
            s.parse().unwrap()
        }

        /// Move datagrams until quiet (bounded).
        fn pump(&mut self) {
            for _ in 0..100 {
                let mut moved = false;
                while let Some(t) = self.a.poll_transmit() {
                    moved = true;
                    self.deliver(true, t);
                }
                while let Some(t) = self.b.poll_transmit() {
                    moved = true;
                    self.deliver(false, t);
                }
                while let Some(e) = self.a.poll_event() {
                    self.a_events.push(e);
                }
                while let Some(e) = self.b.poll_event() {
                    self.b_events.push(e);
                }
                if !moved {
                    return;
                }
            }
            panic!("no quiescence");
        }

        fn deliver(&mut self, from_a: bool, t: Transmit) {
            let bytes = t.message.to_bytes();
            let first = String::from_utf8_lossy(&bytes)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            self.wire.push(format!(
                "{} {}",
                if from_a { "A->B" } else { "B->A" },
                first
            ));
            if let Some(i) = self
                .drop_first
                .iter()
                .position(|p| first.starts_with(p.as_str()))
            {
                self.drop_first.remove(i);
                return;
            }
            let now = self.now;
            if from_a {
                assert_eq!(t.dest, Self::addr(B));
                self.b
                    .handle_datagram(now, &bytes, Self::addr(A), Self::addr(B));
            } else {
                assert_eq!(t.dest, Self::addr(A));
                self.a
                    .handle_datagram(now, &bytes, Self::addr(B), Self::addr(A));
            }
        }

        /// Advance synthetic time to the next timer of either side, up to `limit`.
        fn advance(&mut self, limit: Duration) {
            let end = self.now + limit;
            loop {
                let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min();
                match next {
                    Some(t) if t <= end => {
                        self.now = self.now.max(t);
                        let now = self.now;
                        self.a.handle_timeout(now);
                        self.b.handle_timeout(now);
                        self.pump();
                    }
                    _ => break,
                }
            }
            self.now = end;
        }

        fn dial(&mut self) -> CallRef {
            let target: Uri = format!("sip:bob@{B}").parse().unwrap();
            let now = self.now;
            let id = self.a.invite(
                now,
                target,
                Self::addr(B),
                Self::addr(A),
                b"v=0\r\n".to_vec(),
            );
            self.pump();
            id
        }

        fn incoming(&self) -> CallRef {
            self.b_events
                .iter()
                .find_map(|e| match e {
                    UaEvent::Incoming { call, .. } => Some(*call),
                    _ => None,
                })
                .expect("bob got the call")
        }
    }

    fn ended(events: &[UaEvent]) -> Option<EndCause> {
        events.iter().find_map(|e| match e {
            UaEvent::Ended { cause, .. } => Some(cause.clone()),
            _ => None,
        })
    }

    #[test]
    fn call_answered_and_hung_up_by_caller() {
        let mut p = Pair::new();
        let a_call = p.dial();
        let b_call = p.incoming();
        p.b.ringing(p.now, b_call).unwrap();
        p.pump();
        assert!(p
            .a_events
            .iter()
            .any(|e| matches!(e, UaEvent::Progress { code: 180, .. })));
        p.b.answer(p.now, b_call, b"v=0 answer\r\n".to_vec())
            .unwrap();
        p.pump();
        assert!(p
            .a_events
            .iter()
            .any(|e| matches!(e, UaEvent::Answered { sdp, .. } if sdp == b"v=0 answer\r\n")));
        assert!(p
            .b_events
            .iter()
            .any(|e| matches!(e, UaEvent::Confirmed { .. })));
        p.a.hangup(p.now, a_call).unwrap();
        p.pump();
        assert_eq!(ended(&p.a_events), Some(EndCause::LocalBye));
        assert_eq!(ended(&p.b_events), Some(EndCause::RemoteBye));
        assert!(!p.a.has_pending_requests(), "BYE answered");
        assert_eq!(p.a.call_count() + p.b.call_count(), 0);
    }

    #[test]
    fn callee_hangs_up_first() {
        let mut p = Pair::new();
        p.dial();
        let b_call = p.incoming();
        p.b.answer(p.now, b_call, b"v=0\r\n".to_vec()).unwrap();
        p.pump();
        p.b.hangup(p.now, b_call).unwrap();
        p.pump();
        assert_eq!(ended(&p.a_events), Some(EndCause::RemoteBye));
        assert_eq!(ended(&p.b_events), Some(EndCause::LocalBye));
    }

    #[test]
    fn cancel_while_ringing_gets_487_and_ack() {
        let mut p = Pair::new();
        let a_call = p.dial();
        p.incoming();
        p.a.hangup(p.now, a_call).unwrap();
        p.pump();
        assert_eq!(ended(&p.a_events), Some(EndCause::LocalCancel));
        assert_eq!(ended(&p.b_events), Some(EndCause::RemoteCancel));
        let wire = p.wire.join("\n");
        assert!(
            wire.contains("A->B CANCEL sip:bob@127.0.0.1:5062 SIP/2.0"),
            "{wire}"
        );
        assert!(
            wire.contains("B->A SIP/2.0 487 Request Terminated"),
            "{wire}"
        );
        assert!(
            wire.contains("A->B ACK sip:bob@127.0.0.1:5062 SIP/2.0"),
            "{wire}"
        );
    }

    #[test]
    fn busy_and_decline_are_reported_with_their_codes() {
        for code in [486u16, 603] {
            let mut p = Pair::new();
            p.dial();
            let b_call = p.incoming();
            p.b.reject(p.now, b_call, code).unwrap();
            p.pump();
            match ended(&p.a_events) {
                Some(EndCause::Rejected { code: c, .. }) => assert_eq!(c, code),
                other => panic!("{other:?}"),
            }
            assert!(
                p.wire.iter().any(|l| l.starts_with("A->B ACK")),
                "non-2xx ACKed"
            );
        }
    }

    #[test]
    fn lost_invite_and_lost_200_still_complete() {
        let mut p = Pair::new();
        p.drop_first = vec!["INVITE".into()];
        p.dial();
        assert!(p.b_events.is_empty(), "first INVITE was dropped");
        p.advance(Duration::from_millis(600)); // timer A retransmits at T1
        let b_call = p.incoming();
        p.drop_first = vec!["SIP/2.0 200".into()];
        p.b.answer(p.now, b_call, b"v=0\r\n".to_vec()).unwrap();
        p.pump();
        assert!(!p
            .a_events
            .iter()
            .any(|e| matches!(e, UaEvent::Answered { .. })));
        p.advance(Duration::from_millis(600)); // the UAS retransmits its 2xx
        assert!(p
            .a_events
            .iter()
            .any(|e| matches!(e, UaEvent::Answered { .. })));
        assert!(p
            .b_events
            .iter()
            .any(|e| matches!(e, UaEvent::Confirmed { .. })));
        let incoming = p
            .b_events
            .iter()
            .filter(|e| matches!(e, UaEvent::Incoming { .. }))
            .count();
        assert_eq!(incoming, 1, "retransmitted INVITE absorbed");
    }

    #[test]
    fn lost_ack_makes_the_2xx_retransmit_and_reack() {
        let mut p = Pair::new();
        p.dial();
        let b_call = p.incoming();
        p.drop_first = vec!["ACK".into()];
        p.b.answer(p.now, b_call, b"v=0\r\n".to_vec()).unwrap();
        p.pump();
        assert!(!p
            .b_events
            .iter()
            .any(|e| matches!(e, UaEvent::Confirmed { .. })));
        p.advance(Duration::from_millis(600));
        assert!(p
            .b_events
            .iter()
            .any(|e| matches!(e, UaEvent::Confirmed { .. })));
        let answered = p
            .a_events
            .iter()
            .filter(|e| matches!(e, UaEvent::Answered { .. }))
            .count();
        assert_eq!(answered, 1);
    }

    #[test]
    fn no_ack_at_all_ends_the_call_with_bye_after_64_t1() {
        let mut p = Pair::new();
        p.dial();
        let b_call = p.incoming();
        p.drop_first = vec!["ACK".into(); 20];
        p.b.answer(p.now, b_call, b"v=0\r\n".to_vec()).unwrap();
        p.pump();
        p.advance(Duration::from_secs(33));
        assert_eq!(ended(&p.b_events), Some(EndCause::Timeout));
        assert_eq!(ended(&p.a_events), Some(EndCause::RemoteBye));
    }

    #[test]
    fn no_response_times_out_after_64_t1() {
        let mut p = Pair::new();
        p.drop_first = vec!["INVITE".into(); 20];
        p.dial();
        p.advance(Duration::from_secs(31));
        assert_eq!(ended(&p.a_events), None);
        p.advance(Duration::from_secs(2));
        assert_eq!(ended(&p.a_events), Some(EndCause::Timeout));
        let invites = p
            .wire
            .iter()
            .filter(|l| l.starts_with("A->B INVITE"))
            .count();
        assert_eq!(invites, 7, "sent at 0, .5, 1.5, 3.5, 7.5, 15.5, 31.5 s");
    }

    #[test]
    fn options_and_unknown_dialog_requests() {
        let mut p = Pair::new();
        let opts = format!(
            "OPTIONS sip:bob@{B} SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bKopt1\r\nFrom: <sip:x@{A}>;tag=1\r\nTo: <sip:bob@{B}>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        let now = p.now;
        p.b.handle_datagram(now, opts.as_bytes(), Pair::addr(A), Pair::addr(B));
        let t = p.b.poll_transmit().expect("200 to OPTIONS");
        let text = String::from_utf8(t.message.to_bytes()).unwrap();
        assert!(text.starts_with("SIP/2.0 200"), "{text}");
        assert!(
            text.contains("Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO")
                && text.contains("Supported: 100rel, timer, replaces"),
            "{text}"
        );
        assert!(text.contains("Accept: application/sdp"), "{text}");

        let bye = format!(
            "BYE sip:bob@{B} SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bKbye1\r\nFrom: <sip:x@{A}>;tag=1\r\nTo: <sip:bob@{B}>;tag=nope\r\nCall-ID: nope\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        p.b.handle_datagram(now, bye.as_bytes(), Pair::addr(A), Pair::addr(B));
        let t = p.b.poll_transmit().expect("481");
        assert!(String::from_utf8(t.message.to_bytes())
            .unwrap()
            .starts_with("SIP/2.0 481"));
    }

    #[test]
    fn garbage_gets_400_or_is_dropped_never_panics() {
        let mut p = Pair::new();
        let now = p.now;
        let bad = format!(
            "INVITE sip:bob@{B} SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bKbad\r\nFrom: <sip:x@{A}>;tag=1\r\nTo: <sip:bob@{B}>\r\nCall-ID: b1\r\nCSeq: 1 INVITE\r\nContent-Length: 9999\r\n\r\nv=0\r\n"
        );
        p.b.handle_datagram(now, bad.as_bytes(), Pair::addr(A), Pair::addr(B));
        if let Some(t) = p.b.poll_transmit() {
            let text = String::from_utf8(t.message.to_bytes()).unwrap();
            assert!(text.starts_with("SIP/2.0 400"), "{text}");
        }
        for junk in [
            &b"\x00\x01\x02garbage"[..],
            b"INVITE",
            b"SIP/2.0 200 OK\r\n\r\n",
            b"\r\n\r\n",
            &[0xff; 300],
        ] {
            p.b.handle_datagram(now, junk, Pair::addr(A), Pair::addr(B));
            while p.b.poll_transmit().is_some() {}
        }
        assert_eq!(p.b.call_count(), 0);
    }

    /// A call between a (caller) and b, confirmed.
    fn established(p: &mut Pair) -> (CallRef, CallRef) {
        let a_call = p.dial();
        let b_call = p.incoming();
        p.b.answer(p.now, b_call, b"v=0 answer\r\n".to_vec())
            .unwrap();
        p.pump();
        assert!(p
            .b_events
            .iter()
            .any(|e| matches!(e, UaEvent::Confirmed { .. })));
        (a_call, b_call)
    }

    #[test]
    fn peer_reoffer_is_handed_to_the_engine_and_answered() {
        let mut p = Pair::new();
        let (a_call, b_call) = established(&mut p);
        p.b.reinvite(p.now, b_call, b"v=0 hold\r\n".to_vec())
            .unwrap();
        p.pump();
        assert!(
            p.b.has_pending_requests(),
            "the re-INVITE waits for an answer"
        );
        assert!(p
            .a_events
            .iter()
            .any(|e| matches!(e, UaEvent::Reoffer { call, sdp } if *call == a_call && sdp == b"v=0 hold\r\n")));
        // While it is unanswered, our own re-INVITE has to wait.
        assert_eq!(
            p.a.reinvite(p.now, a_call, b"v=0\r\n".to_vec()),
            Err(UaError::WrongState)
        );
        p.a.answer_reoffer(p.now, a_call, b"v=0 held\r\n".to_vec())
            .unwrap();
        p.pump();
        assert!(p
            .b_events
            .iter()
            .any(|e| matches!(e, UaEvent::Answered { sdp, .. } if sdp == b"v=0 held\r\n")));
        assert!(!p.b.has_pending_requests());
        assert_eq!(p.a.local_sdp(a_call), Some(&b"v=0 held\r\n"[..]));
        // Answered once only.
        assert_eq!(
            p.a.answer_reoffer(p.now, a_call, b"v=0\r\n".to_vec()),
            Err(UaError::WrongState)
        );
        // The call is still up: a BYE ends it normally.
        p.a.hangup(p.now, a_call).unwrap();
        p.pump();
        assert_eq!(ended(&p.b_events), Some(EndCause::RemoteBye));
    }

    #[test]
    fn refused_reoffer_leaves_the_call_up() {
        let mut p = Pair::new();
        let (a_call, b_call) = established(&mut p);
        p.b.reinvite(p.now, b_call, b"v=0 video\r\n".to_vec())
            .unwrap();
        p.pump();
        p.a.reject_reoffer(p.now, a_call, 488).unwrap();
        p.pump();
        assert!(p.b_events.iter().any(
            |e| matches!(e, UaEvent::ReinviteFailed { code: 488, call, .. } if *call == b_call)
        ));
        assert_eq!(ended(&p.a_events), None);
        assert_eq!(ended(&p.b_events), None);
        assert_eq!(p.a.call_count(), 1);
    }

    #[test]
    fn re_invite_glare_gets_491_on_both_sides() {
        let mut p = Pair::new();
        let (a_call, b_call) = established(&mut p);
        // Both send before either arrives.
        p.a.reinvite(p.now, a_call, b"v=0 a\r\n".to_vec()).unwrap();
        p.b.reinvite(p.now, b_call, b"v=0 b\r\n".to_vec()).unwrap();
        p.pump();
        for events in [&p.a_events, &p.b_events] {
            assert!(
                events
                    .iter()
                    .any(|e| matches!(e, UaEvent::ReinviteFailed { code: 491, .. })),
                "{events:?}"
            );
            assert!(!events.iter().any(|e| matches!(e, UaEvent::Reoffer { .. })));
        }
        assert!(
            p.wire.iter().filter(|w| w.contains("491")).count() >= 2,
            "{:?}",
            p.wire
        );
        // Later, one at a time, it works.
        p.a.reinvite(p.now, a_call, b"v=0 a\r\n".to_vec()).unwrap();
        p.pump();
        assert!(p
            .b_events
            .iter()
            .any(|e| matches!(e, UaEvent::Reoffer { .. })));
    }

    #[test]
    fn refer_is_accepted_and_its_progress_notified() {
        let mut p = Pair::new();
        let (a_call, b_call) = established(&mut p);
        p.b.refer(p.now, b_call, "sip:carol@127.0.0.1:5099")
            .unwrap();
        p.pump();
        let (refer_to, referred_by) = p
            .a_events
            .iter()
            .find_map(|e| match e {
                UaEvent::Refer {
                    refer_to,
                    referred_by,
                    ..
                } => Some((refer_to.clone(), referred_by.clone())),
                _ => None,
            })
            .expect("a got the REFER");
        assert_eq!(refer_to, "<sip:carol@127.0.0.1:5099>");
        assert!(referred_by.is_some_and(|r| r.contains("bob")));
        p.a.accept_refer(p.now, a_call).unwrap();
        p.pump();
        assert!(p
            .b_events
            .iter()
            .any(|e| matches!(e, UaEvent::ReferAnswered { code: 202, .. })));
        assert!(p.b_events.iter().any(|e| matches!(
            e,
            UaEvent::ReferProgress {
                code: 100,
                terminated: false,
                ..
            }
        )));
        p.a.notify_refer(p.now, a_call, 200, "OK", true).unwrap();
        p.pump();
        assert!(p.b_events.iter().any(|e| matches!(
            e,
            UaEvent::ReferProgress {
                code: 200,
                terminated: true,
                ..
            }
        )));
        // Answered once.
        assert_eq!(p.a.accept_refer(p.now, a_call), Err(UaError::WrongState));
    }

    #[test]
    fn refused_refer_is_reported_and_the_call_stays() {
        let mut p = Pair::new();
        let (a_call, b_call) = established(&mut p);
        p.b.refer(p.now, b_call, "sip:carol@127.0.0.1").unwrap();
        p.pump();
        p.a.reject_refer(p.now, a_call, 603).unwrap();
        p.pump();
        assert!(p
            .b_events
            .iter()
            .any(|e| matches!(e, UaEvent::ReferAnswered { code: 603, .. })));
        assert_eq!(p.a.call_count(), 1);
        assert_eq!(p.b.call_count(), 1);
    }

    #[test]
    fn replaces_names_a_confirmed_dialog_or_gets_481() {
        let mut p = Pair::new();
        let (a_call, b_call) = established(&mut p);
        let target = p.a.replaces_target(a_call).unwrap();
        let (uri, escaped) = target.split_once("?Replaces=").unwrap();
        assert!(uri.starts_with("sip:bob@"), "{target}");
        let mut value = String::new();
        let mut rest = escaped;
        while let Some(i) = rest.find('%') {
            value.push_str(&rest[..i]);
            value.push(u8::from_str_radix(&rest[i + 1..i + 3], 16).unwrap() as char);
            rest = &rest[i + 3..];
        }
        value.push_str(rest);
        for (replaces, want) in [
            (value.clone(), Some(b_call)),
            ("nope;to-tag=x;from-tag=y".to_string(), None),
        ] {
            let identity = CallIdentity {
                extra_headers: vec![(HeaderName::REPLACES, replaces)],
                ..CallIdentity::default()
            };
            p.b_events.clear();
            let target: Uri = format!("sip:bob@{B}").parse().unwrap();
            let now = p.now;
            p.a.invite_as(
                now,
                target,
                Pair::addr(B),
                Pair::addr(A),
                b"v=0\r\n".to_vec(),
                identity,
            );
            p.pump();
            let got = p.b_events.iter().find_map(|e| match e {
                UaEvent::Incoming { replaces, .. } => Some(*replaces),
                _ => None,
            });
            match want {
                Some(call) => assert_eq!(got, Some(Some(call))),
                None => {
                    assert_eq!(got, None, "no call for an unknown dialog");
                    assert!(p.wire.iter().any(|w| w.contains("481")), "{:?}", p.wire);
                }
            }
        }
    }

    #[test]
    fn session_timer_refreshed_by_the_caller_and_expiring_without_it() {
        for refresh_arrives in [true, false] {
            let mut p = Pair::new();
            let target: Uri = format!("sip:bob@{B}").parse().unwrap();
            let identity = CallIdentity {
                extra_headers: vec![(HeaderName::SESSION_EXPIRES, "90".into())],
                ..CallIdentity::default()
            };
            let now = p.now;
            let a_call = p.a.invite_as(
                now,
                target,
                Pair::addr(B),
                Pair::addr(A),
                b"v=0\r\n".to_vec(),
                identity,
            );
            p.pump();
            let b_call = p.incoming();
            p.b.answer(p.now, b_call, b"v=0 b\r\n".to_vec()).unwrap();
            p.pump();
            if !refresh_arrives {
                for _ in 0..12 {
                    p.drop_first.push("UPDATE sip:".into());
                }
            }
            // a (the caller, refresher=uac) refreshes at 45 s, by UPDATE since b's 2xx allows
            // it; b gives up at 60 s without it.
            p.advance(Duration::from_secs(50));
            let refreshes = p
                .wire
                .iter()
                .filter(|w| w.starts_with("A->B UPDATE"))
                .count();
            assert!(refreshes >= 1, "a refresh: {:?}", p.wire);
            assert_eq!(
                p.wire
                    .iter()
                    .filter(|w| w.starts_with("A->B INVITE"))
                    .count(),
                1,
                "no re-INVITE: {:?}",
                p.wire
            );
            assert!(!p
                .b_events
                .iter()
                .any(|e| matches!(e, UaEvent::Reoffer { .. })));
            p.advance(Duration::from_secs(30));
            let ended_b = ended(&p.b_events);
            if refresh_arrives {
                assert_eq!(ended_b, None, "refreshed at 45 s, good until 105 s");
                assert_eq!(p.a.call_count(), 1);
            } else {
                assert!(
                    matches!(ended_b, Some(EndCause::Failed(ref m)) if m.contains("session expired")),
                    "{ended_b:?}"
                );
            }
            assert!(p.a.call_count() <= 1, "{a_call}");
        }
    }

    /// A dial from a to b with extra INVITE headers.
    fn dial_with(p: &mut Pair, headers: &[(HeaderName, &str)]) -> CallRef {
        let target: Uri = format!("sip:bob@{B}").parse().unwrap();
        let identity = CallIdentity {
            extra_headers: headers
                .iter()
                .map(|(n, v)| (n.clone(), v.to_string()))
                .collect(),
            ..CallIdentity::default()
        };
        let now = p.now;
        let id = p.a.invite_as(
            now,
            target,
            Pair::addr(B),
            Pair::addr(A),
            b"v=0\r\n".to_vec(),
            identity,
        );
        p.pump();
        id
    }

    /// Everything `ua` has to send, as text.
    fn drain_text(ua: &mut UserAgent) -> Vec<String> {
        std::iter::from_fn(|| ua.poll_transmit())
            .map(|t| String::from_utf8(t.message.to_bytes()).unwrap())
            .collect()
    }

    fn header<'a>(text: &'a str, name: &str) -> Option<&'a str> {
        text.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    #[test]
    fn reliable_180_for_a_caller_requiring_100rel_is_pracked_before_the_2xx() {
        for answer_before_prack in [false, true] {
            let mut p = Pair::new();
            dial_with(&mut p, &[(HeaderName::REQUIRE, "100rel")]);
            let b_call = p.incoming();
            if answer_before_prack {
                // The first PRACK is lost: b answers meanwhile, and the 2xx waits for it.
                p.drop_first.push("PRACK ".into());
            }
            p.b.ringing(p.now, b_call).unwrap();
            p.pump();
            let rang = p
                .a_events
                .iter()
                .any(|e| matches!(e, UaEvent::Progress { code: 180, .. }));
            assert!(rang, "{:?}", p.a_events);
            assert!(
                p.wire.iter().any(|w| w.starts_with("A->B PRACK")),
                "{:?}",
                p.wire
            );
            p.b.answer(p.now, b_call, b"v=0 b\r\n".to_vec()).unwrap();
            p.pump();
            let answered = |p: &Pair| {
                p.a_events
                    .iter()
                    .any(|e| matches!(e, UaEvent::Answered { .. }))
            };
            if answer_before_prack {
                assert!(!answered(&p), "no 2xx before the PRACK: {:?}", p.wire);
                assert!(
                    p.b.answer(p.now, b_call, b"v=0\r\n".to_vec()).is_err(),
                    "answered once"
                );
                // The PRACK's own retransmission (timer E) gets through.
                p.advance(Duration::from_secs(1));
            }
            assert!(answered(&p), "{:?}", p.wire);
            assert!(p
                .b_events
                .iter()
                .any(|e| matches!(e, UaEvent::Confirmed { .. })));
            let ok_prack = p.wire.iter().position(|w| w == "B->A SIP/2.0 200 OK");
            assert!(ok_prack.is_some(), "{:?}", p.wire);
            // No more 180 retransmissions once PRACKed.
            let before = p.wire.len();
            p.advance(Duration::from_secs(10));
            assert!(
                !p.wire[before..].iter().any(|w| w.contains("180")),
                "{:?}",
                &p.wire[before..]
            );
        }
    }

    /// An INVITE from a raw peer at A to b requiring 100rel; b rings. Returns b's call and the
    /// reliable 180 b sent.
    fn raw_reliable_180(b: &mut UserAgent, now: Instant) -> (CallRef, String) {
        let invite = format!(
            "INVITE sip:bob@{B} SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bKinv1\r\nFrom: <sip:x@{A}>;tag=ft\r\nTo: <sip:bob@{B}>\r\nCall-ID: rel1\r\nCSeq: 7 INVITE\r\nContact: <sip:x@{A}>\r\nRequire: 100rel\r\nSupported: 100rel\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n"
        );
        b.handle_datagram(now, invite.as_bytes(), Pair::addr(A), Pair::addr(B));
        let call = std::iter::from_fn(|| b.poll_event())
            .find_map(|e| match e {
                UaEvent::Incoming { call, .. } => Some(call),
                _ => None,
            })
            .expect("incoming call");
        drain_text(b);
        b.ringing(now, call).unwrap();
        let sent = drain_text(b);
        assert_eq!(sent.len(), 1, "{sent:?}");
        (call, sent[0].clone())
    }

    fn prack(rack: &str, to_tag: &str, branch: &str) -> String {
        format!(
            "PRACK sip:bob@{B} SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch={branch}\r\nFrom: <sip:x@{A}>;tag=ft\r\nTo: <sip:bob@{B}>;tag={to_tag}\r\nCall-ID: rel1\r\nCSeq: 8 PRACK\r\nRAck: {rack}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    }

    /// A request of the raw peer at A in the dialog `lo1` with b: `cseq`, the To tag, a body.
    fn raw_in_dialog(method: &str, cseq: u32, to_tag: &str, body: &str) -> String {
        let to = if to_tag.is_empty() {
            String::new()
        } else {
            format!(";tag={to_tag}")
        };
        let ctype = if body.is_empty() {
            String::new()
        } else {
            "Content-Type: application/sdp\r\n".to_string()
        };
        format!(
            "{method} sip:bob@{B} SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bKlo{cseq}{method}\r\nFrom: <sip:x@{A}>;tag=ft\r\nTo: <sip:bob@{B}>{to}\r\nCall-ID: lo1\r\nCSeq: {cseq} {method}\r\nContact: <sip:x@{A}>\r\nMax-Forwards: 70\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    /// The raw peer at A calls b with `offer` as the INVITE's body (empty: none); b answers
    /// with `sdp`. Returns b's call, the 200 b sent and its To tag.
    fn raw_answered(
        b: &mut UserAgent,
        now: Instant,
        offer: &str,
        sdp: &[u8],
    ) -> (CallRef, String, String) {
        let invite = raw_in_dialog("INVITE", 1, "", offer);
        b.handle_datagram(now, invite.as_bytes(), Pair::addr(A), Pair::addr(B));
        let (call, got) = std::iter::from_fn(|| b.poll_event())
            .find_map(|e| match e {
                UaEvent::Incoming { call, offer, .. } => Some((call, offer)),
                _ => None,
            })
            .expect("incoming call");
        assert_eq!(got, offer.as_bytes());
        drain_text(b);
        b.answer(now, call, sdp.to_vec()).unwrap();
        let ok = drain_text(b)
            .into_iter()
            .find(|m| m.starts_with("SIP/2.0 200"))
            .expect("a 200");
        let to = header(&ok, "To").unwrap();
        let tag = to.split(";tag=").nth(1).unwrap().to_string();
        (call, ok, tag)
    }

    /// An INVITE without an offer (late offer, RFC 3261 §13.2.1): the 200 carries ours, as
    /// SDP, and the ACK's body (the answer, or nothing) comes with `Confirmed`, once.
    #[test]
    fn invite_without_offer_gets_ours_in_the_200_and_the_ack_brings_the_answer() {
        for answer in ["v=0 answer\r\n", ""] {
            let mut b = Pair::new().b;
            let now = crate::test_epoch();
            let (call, ok, tag) = raw_answered(&mut b, now, "", b"v=0 offer\r\n");
            assert_eq!(header(&ok, "Content-Type"), Some("application/sdp"));
            assert!(ok.ends_with("\r\n\r\nv=0 offer\r\n"), "{ok}");
            // Retransmitted until the ACK.
            b.handle_timeout(now + Duration::from_millis(500));
            assert!(drain_text(&mut b)
                .iter()
                .any(|m| m.starts_with("SIP/2.0 200")));
            let ack = raw_in_dialog("ACK", 1, &tag, answer);
            for _ in 0..2 {
                b.handle_datagram(now, ack.as_bytes(), Pair::addr(A), Pair::addr(B));
            }
            let events: Vec<UaEvent> = std::iter::from_fn(|| b.poll_event()).collect();
            let confirmed: Vec<&Vec<u8>> = events
                .iter()
                .filter_map(|e| match e {
                    UaEvent::Confirmed { call: c, sdp } if *c == call => Some(sdp),
                    _ => None,
                })
                .collect();
            assert_eq!(confirmed, [&answer.as_bytes().to_vec()], "{events:?}");
            assert!(b.is_confirmed(call));
            assert_eq!(b.local_sdp(call), Some(&b"v=0 offer\r\n"[..]));
        }
    }

    /// A re-INVITE without an offer: the engine is asked for one (`OfferWanted`), it goes in
    /// the 200, and the ACK's answer comes as `ReofferAcked`; the call stays up.
    #[test]
    fn reinvite_without_offer_gets_ours_in_the_200_and_the_ack_brings_the_answer() {
        let mut b = Pair::new().b;
        let now = crate::test_epoch();
        let (call, _, tag) = raw_answered(&mut b, now, "v=0 a\r\n", b"v=0 b1\r\n");
        let ack = raw_in_dialog("ACK", 1, &tag, "");
        b.handle_datagram(now, ack.as_bytes(), Pair::addr(A), Pair::addr(B));
        let events: Vec<UaEvent> = std::iter::from_fn(|| b.poll_event()).collect();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, UaEvent::Confirmed { sdp, .. } if sdp.is_empty())),
            "{events:?}"
        );
        let reinvite = raw_in_dialog("INVITE", 2, &tag, "");
        b.handle_datagram(now, reinvite.as_bytes(), Pair::addr(A), Pair::addr(B));
        let events: Vec<UaEvent> = std::iter::from_fn(|| b.poll_event()).collect();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, UaEvent::OfferWanted { call: c } if *c == call)),
            "{events:?}"
        );
        assert!(
            !drain_text(&mut b)
                .iter()
                .any(|m| m.starts_with("SIP/2.0 200")),
            "no 200 before the engine's offer"
        );
        // A second re-INVITE meanwhile gets 500 + Retry-After (RFC 3261 §14.2).
        let again = raw_in_dialog("INVITE", 3, &tag, "");
        b.handle_datagram(now, again.as_bytes(), Pair::addr(A), Pair::addr(B));
        let sent = drain_text(&mut b);
        assert!(
            sent.iter().any(|m| m.starts_with("SIP/2.0 500")),
            "{sent:?}"
        );
        b.answer_reoffer(now, call, b"v=0 b2\r\n".to_vec()).unwrap();
        let ok = drain_text(&mut b)
            .into_iter()
            .find(|m| m.starts_with("SIP/2.0 200"))
            .expect("a 200");
        assert_eq!(header(&ok, "CSeq"), Some("2 INVITE"));
        assert!(ok.ends_with("\r\n\r\nv=0 b2\r\n"), "{ok}");
        let ack = raw_in_dialog("ACK", 2, &tag, "v=0 a2\r\n");
        for _ in 0..2 {
            b.handle_datagram(now, ack.as_bytes(), Pair::addr(A), Pair::addr(B));
        }
        let events: Vec<UaEvent> = std::iter::from_fn(|| b.poll_event()).collect();
        let acked: Vec<&Vec<u8>> = events
            .iter()
            .filter_map(|e| match e {
                UaEvent::ReofferAcked { call: c, sdp } if *c == call => Some(sdp),
                _ => None,
            })
            .collect();
        assert_eq!(acked, [&b"v=0 a2\r\n".to_vec()], "{events:?}");
        assert!(!events.iter().any(|e| matches!(e, UaEvent::Ended { .. })));
        assert!(b.is_confirmed(call));
        assert_eq!(b.local_sdp(call), Some(&b"v=0 b2\r\n"[..]));
    }

    /// Between two agents: a re-INVITE without a body gets the other's offer in the 200, and
    /// its ACK (without a body here) is reported; a re-INVITE with an offer does not.
    #[test]
    fn reinvite_without_offer_between_two_agents() {
        let mut p = Pair::new();
        let (a_call, b_call) = established(&mut p);
        p.b.reinvite(p.now, b_call, Vec::new()).unwrap();
        p.pump();
        assert!(p
            .a_events
            .iter()
            .any(|e| matches!(e, UaEvent::OfferWanted { call } if *call == a_call)));
        p.a.answer_reoffer(p.now, a_call, b"v=0 offer\r\n".to_vec())
            .unwrap();
        p.pump();
        assert!(p
            .b_events
            .iter()
            .any(|e| matches!(e, UaEvent::Answered { sdp, .. } if sdp == b"v=0 offer\r\n")));
        assert!(p
            .a_events
            .iter()
            .any(|e| matches!(e, UaEvent::ReofferAcked { call, sdp } if *call == a_call && sdp.is_empty())));
        // An ordinary re-offer's ACK is not reported.
        p.a_events.clear();
        p.b.reinvite(p.now, b_call, b"v=0 hold\r\n".to_vec())
            .unwrap();
        p.pump();
        p.a.answer_reoffer(p.now, a_call, b"v=0 held\r\n".to_vec())
            .unwrap();
        p.pump();
        assert!(!p
            .a_events
            .iter()
            .any(|e| matches!(e, UaEvent::ReofferAcked { .. })));
        assert_eq!(ended(&p.a_events), None);
        assert_eq!(ended(&p.b_events), None);
    }

    /// An INVITE requiring an extension we lack gets 420 naming it, with a To tag (a final
    /// response), and no call.
    #[test]
    fn unknown_required_extension_gets_420_with_unsupported() {
        let p = Pair::new();
        let now = p.now;
        let mut b = p.b;
        let invite = format!(
            "INVITE sip:bob@{B} SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bKinv9\r\nFrom: <sip:x@{A}>;tag=ft\r\nTo: <sip:bob@{B}>\r\nCall-ID: ext1\r\nCSeq: 1 INVITE\r\nContact: <sip:x@{A}>\r\nRequire: 100rel, foo\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        b.handle_datagram(now, invite.as_bytes(), Pair::addr(A), Pair::addr(B));
        let sent = drain_text(&mut b);
        let resp = sent
            .iter()
            .find(|m| m.starts_with("SIP/2.0 420"))
            .expect("420");
        assert!(resp.contains("Unsupported: foo\r\n"), "{resp}");
        let to = resp.lines().find(|l| l.starts_with("To:")).unwrap();
        assert!(to.contains(";tag="), "{to}");
        assert!(
            !std::iter::from_fn(|| b.poll_event()).any(|e| matches!(e, UaEvent::Incoming { .. }))
        );
    }

    /// The engine's way with a caller that requires 100rel: the reliable 180 carries the SDP
    /// answer (and its retransmissions too); an ordinary ringing call says it does not want it.
    #[test]
    fn reliable_180_carries_the_answer_when_given_one() {
        let mut p = Pair::new();
        dial_with(&mut p, &[(HeaderName::REQUIRE, "100rel")]);
        let b_call = p.incoming();
        assert!(p.b.wants_reliable_ringing(b_call));
        p.b.ringing_with_answer(p.now, b_call, b"v=0 early\r\n".to_vec())
            .unwrap();
        let sent = drain_text(&mut p.b);
        let ringing = sent
            .iter()
            .find(|m| m.starts_with("SIP/2.0 180"))
            .expect("a 180");
        assert!(
            ringing.contains("Content-Type: application/sdp"),
            "{ringing}"
        );
        assert!(ringing.ends_with("v=0 early\r\n"), "{ringing}");
        assert!(ringing.contains("RSeq: "), "{ringing}");

        let mut q = Pair::new();
        dial_with(&mut q, &[]);
        let plain = q.incoming();
        assert!(!q.b.wants_reliable_ringing(plain));
    }

    #[test]
    fn reliable_180_retransmits_at_t1_doubling_and_prack_must_match() {
        let mut b = ua("bob", 2);
        let t0 = crate::test_epoch();
        let (_call, ringing) = raw_reliable_180(&mut b, t0);
        assert!(ringing.starts_with("SIP/2.0 180"), "{ringing}");
        assert_eq!(header(&ringing, "Require"), Some("100rel"));
        let rseq: u32 = header(&ringing, "RSeq").unwrap().parse().unwrap();
        assert!((1..1u32 << 31).contains(&rseq), "{rseq}");
        assert!(header(&ringing, "Allow").unwrap().contains("PRACK"));
        let to_tag = ringing
            .lines()
            .find(|l| l.starts_with("To:"))
            .and_then(|l| l.split_once(";tag="))
            .map(|(_, t)| t.trim().to_string())
            .unwrap();
        // Retransmissions at 0.5, 1.5, 3.5 and 7.5 s (T1, doubling).
        let mut at = Vec::new();
        let mut now = t0;
        while let Some(t) = b
            .poll_timeout()
            .filter(|&t| t <= t0 + Duration::from_secs(8))
        {
            now = t;
            b.handle_timeout(now);
            for m in drain_text(&mut b) {
                assert!(m.starts_with("SIP/2.0 180"), "{m}");
                assert_eq!(header(&m, "RSeq"), Some(rseq.to_string().as_str()));
                at.push((now - t0).as_millis());
            }
        }
        assert_eq!(at, [500, 1500, 3500, 7500]);
        // A PRACK naming another RSeq, another CSeq or another dialog: 481.
        for (rack, tag) in [
            (
                format!("{} 7 INVITE", rseq.wrapping_add(1)),
                to_tag.as_str(),
            ),
            (format!("{rseq} 6 INVITE"), to_tag.as_str()),
            (format!("{rseq} 7 UPDATE"), to_tag.as_str()),
            (format!("{rseq} 7 INVITE"), "other"),
            ("garbage".to_string(), to_tag.as_str()),
        ] {
            let branch = format!("z9hG4bKp{}", rack.len() + tag.len());
            b.handle_datagram(
                now,
                prack(&rack, tag, &branch).as_bytes(),
                Pair::addr(A),
                Pair::addr(B),
            );
            let out = drain_text(&mut b);
            assert!(out[0].starts_with("SIP/2.0 481"), "{rack} {tag}: {out:?}");
        }
        // The right one: 200, and the retransmissions stop.
        let good = prack(&format!("{rseq} 7 INVITE"), &to_tag, "z9hG4bKgood");
        b.handle_datagram(now, good.as_bytes(), Pair::addr(A), Pair::addr(B));
        let out = drain_text(&mut b);
        assert!(out[0].starts_with("SIP/2.0 200"), "{out:?}");
        assert!(out[0].contains("CSeq: 8 PRACK"), "{out:?}");
        // A second PRACK for it (a new transaction) matches nothing any more.
        let again = prack(&format!("{rseq} 7 INVITE"), &to_tag, "z9hG4bKagain");
        b.handle_datagram(now, again.as_bytes(), Pair::addr(A), Pair::addr(B));
        assert!(drain_text(&mut b)[0].starts_with("SIP/2.0 481"));
        b.handle_timeout(now + Duration::from_secs(20));
        assert!(
            !drain_text(&mut b).iter().any(|m| m.contains("180")),
            "no 180 after the PRACK"
        );
        assert_eq!(b.call_count(), 1, "still ringing");
    }

    #[test]
    fn unacknowledged_reliable_180_ends_the_call_with_a_5xx_after_64_t1() {
        let mut b = ua("bob", 3);
        let t0 = crate::test_epoch();
        let (call, _) = raw_reliable_180(&mut b, t0);
        // The user answers; the 2xx must not go out without the PRACK.
        b.answer(t0, call, b"v=0 b\r\n".to_vec()).unwrap();
        assert!(drain_text(&mut b).is_empty());
        let mut last = Vec::new();
        while let Some(t) = b
            .poll_timeout()
            .filter(|&t| t <= t0 + Duration::from_secs(40))
        {
            b.handle_timeout(t);
            let out = drain_text(&mut b);
            assert!(!out.iter().any(|m| m.starts_with("SIP/2.0 200")), "{out:?}");
            if !out.is_empty() {
                last = out;
            }
            if b.call_count() == 0 {
                assert_eq!(t - t0, Duration::from_secs(32), "64·T1");
                break;
            }
        }
        assert!(last[0].starts_with("SIP/2.0 504"), "{last:?}");
        let ended = std::iter::from_fn(|| b.poll_event()).find_map(|e| match e {
            UaEvent::Ended { cause, .. } => Some(cause),
            _ => None,
        });
        assert_eq!(ended, Some(EndCause::Timeout));
    }

    /// A response of a raw peer (at B) to the request `req` (text): Via, From, Call-ID and
    /// CSeq copied, To with the tag `to_tag`, then `extra` header lines.
    fn reply(req: &str, status: &str, to_tag: &str, extra: &[&str]) -> String {
        let mut out = format!("SIP/2.0 {status}\r\n");
        for name in ["Via", "From", "Call-ID", "CSeq"] {
            out += &format!("{name}: {}\r\n", header(req, name).unwrap());
        }
        let to = header(req, "To").unwrap();
        if to.contains(";tag=") {
            out += &format!("To: {to}\r\n");
        } else {
            out += &format!("To: {to};tag={to_tag}\r\n");
        }
        out += &format!("Contact: <sip:bob@{B}>\r\n");
        for e in extra {
            out += e;
            out += "\r\n";
        }
        out + "Content-Length: 0\r\n\r\n"
    }

    /// a's transmissions that are requests of `method`.
    fn requests(sent: &[String], method: &str) -> Vec<String> {
        sent.iter()
            .filter(|m| m.starts_with(&format!("{method} ")))
            .cloned()
            .collect()
    }

    #[test]
    fn session_interval_below_90_s_gets_422_with_min_se() {
        for (se, want) in [
            ("30", "SIP/2.0 422"),
            ("89;refresher=uac", "SIP/2.0 422"),
            ("soon", "SIP/2.0 400"),
            ("90", ""),
        ] {
            let mut b = ua("bob", 2);
            let now = crate::test_epoch();
            let invite = format!(
                "INVITE sip:bob@{B} SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bKse1\r\nFrom: <sip:x@{A}>;tag=ft\r\nTo: <sip:bob@{B}>\r\nCall-ID: se1\r\nCSeq: 1 INVITE\r\nContact: <sip:x@{A}>\r\nSupported: timer\r\nSession-Expires: {se}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            );
            b.handle_datagram(now, invite.as_bytes(), Pair::addr(A), Pair::addr(B));
            let mut out = drain_text(&mut b);
            out.retain(|m| !m.starts_with("SIP/2.0 100"));
            let incoming = std::iter::from_fn(|| b.poll_event())
                .any(|e| matches!(e, UaEvent::Incoming { .. }));
            if want.is_empty() {
                assert!(incoming, "{se}: accepted");
                assert!(out.iter().all(|m| !m.starts_with("SIP/2.0 4")), "{out:?}");
            } else {
                assert!(!incoming, "{se}: refused");
                assert!(out[0].starts_with(want), "{se}: {out:?}");
                if want.ends_with("422") {
                    assert_eq!(header(&out[0], "Min-SE"), Some("90"), "{}", out[0]);
                }
                assert!(
                    header(&out[0], "To").unwrap().contains(";tag="),
                    "{}",
                    out[0]
                );
                assert_eq!(b.call_count(), 0);
            }
        }
    }

    #[test]
    fn a_422_to_our_invite_is_retried_once_with_its_min_se() {
        // Between two of ours: a asks for 30 s, b says 422 Min-SE 90, a asks again for 90.
        let mut p = Pair::new();
        dial_with(&mut p, &[(HeaderName::SESSION_EXPIRES, "30")]);
        let b_call = p.incoming();
        assert!(
            p.wire.iter().any(|w| w.starts_with("B->A SIP/2.0 422")),
            "{:?}",
            p.wire
        );
        assert_eq!(
            p.wire
                .iter()
                .filter(|w| w.starts_with("A->B INVITE"))
                .count(),
            2,
            "{:?}",
            p.wire
        );
        p.b.answer(p.now, b_call, b"v=0 b\r\n".to_vec()).unwrap();
        p.pump();
        assert!(p
            .a_events
            .iter()
            .any(|e| matches!(e, UaEvent::Answered { .. })));

        // Against a raw peer: the retry carries Session-Expires and Min-SE of the 422, the
        // next CSeq, the same Call-ID and From tag; a second 422 ends the call.
        let mut a = ua("alice", 5);
        let now = crate::test_epoch();
        let target: Uri = format!("sip:bob@{B}").parse().unwrap();
        let call = a.invite(
            now,
            target,
            Pair::addr(B),
            Pair::addr(A),
            b"v=0\r\n".to_vec(),
        );
        let first = requests(&drain_text(&mut a), "INVITE").remove(0);
        let r422 = reply(
            &first,
            "422 Session Interval Too Small",
            "t1",
            &["Min-SE: 1800"],
        );
        a.handle_datagram(now, r422.as_bytes(), Pair::addr(B), Pair::addr(A));
        let sent = drain_text(&mut a);
        assert_eq!(
            requests(&sent, "ACK").len(),
            1,
            "the 422 is ACKed: {sent:?}"
        );
        let again = requests(&sent, "INVITE").remove(0);
        assert_eq!(header(&again, "Session-Expires"), Some("1800"));
        assert_eq!(header(&again, "Min-SE"), Some("1800"));
        assert_eq!(header(&again, "CSeq"), Some("2 INVITE"));
        assert_eq!(header(&again, "Call-ID"), header(&first, "Call-ID"));
        assert_eq!(header(&again, "From"), header(&first, "From"));
        assert_ne!(header(&again, "Via"), header(&first, "Via"), "a new branch");
        let r422 = reply(
            &again,
            "422 Session Interval Too Small",
            "t2",
            &["Min-SE: 3600"],
        );
        a.handle_datagram(now, r422.as_bytes(), Pair::addr(B), Pair::addr(A));
        assert!(
            requests(&drain_text(&mut a), "INVITE").is_empty(),
            "retried once only"
        );
        let ended = std::iter::from_fn(|| a.poll_event()).find_map(|e| match e {
            UaEvent::Ended { call: c, cause } if c == call => Some(cause),
            _ => None,
        });
        assert!(
            matches!(ended, Some(EndCause::Rejected { code: 422, .. })),
            "{ended:?}"
        );
    }

    #[test]
    fn a_422_to_our_session_refresh_is_retried_with_its_min_se() {
        let mut a = ua("alice", 6);
        let t0 = crate::test_epoch();
        let target: Uri = format!("sip:bob@{B}").parse().unwrap();
        a.invite(
            t0,
            target,
            Pair::addr(B),
            Pair::addr(A),
            b"v=0\r\n".to_vec(),
        );
        let invite = requests(&drain_text(&mut a), "INVITE").remove(0);
        let ok = reply(
            &invite,
            "200 OK",
            "bt",
            &["Session-Expires: 90;refresher=uac"],
        );
        a.handle_datagram(t0, ok.as_bytes(), Pair::addr(B), Pair::addr(A));
        drain_text(&mut a);
        // The refresh at 45 s.
        let (t, refresh) = loop {
            let t = a.poll_timeout().unwrap();
            a.handle_timeout(t);
            if let Some(r) = requests(&drain_text(&mut a), "INVITE").pop() {
                break (t, r);
            }
        };
        assert_eq!(t - t0, Duration::from_secs(45));
        assert_eq!(
            header(&refresh, "Session-Expires"),
            Some("90;refresher=uac")
        );
        assert_eq!(header(&refresh, "Min-SE"), Some("90"));
        let r422 = reply(
            &refresh,
            "422 Session Interval Too Small",
            "bt",
            &["Min-SE: 300"],
        );
        a.handle_datagram(t, r422.as_bytes(), Pair::addr(B), Pair::addr(A));
        let again = requests(&drain_text(&mut a), "INVITE").remove(0);
        assert_eq!(header(&again, "Session-Expires"), Some("300;refresher=uac"));
        assert_eq!(header(&again, "Min-SE"), Some("300"));
        let (n1, n2) = (
            header(&refresh, "CSeq").unwrap(),
            header(&again, "CSeq").unwrap(),
        );
        assert_eq!((n1, n2), ("2 INVITE", "3 INVITE"));
        let ok = reply(
            &again,
            "200 OK",
            "bt",
            &["Session-Expires: 300;refresher=uac"],
        );
        a.handle_datagram(t, ok.as_bytes(), Pair::addr(B), Pair::addr(A));
        assert_eq!(requests(&drain_text(&mut a), "ACK").len(), 1);
        assert!(
            !std::iter::from_fn(|| a.poll_event()).any(|e| matches!(e, UaEvent::Ended { .. })),
            "the call goes on"
        );
        // The next refresh at half of 300 s.
        let next = loop {
            let n = a.poll_timeout().unwrap();
            a.handle_timeout(n);
            if !requests(&drain_text(&mut a), "INVITE").is_empty() {
                break n;
            }
        };
        assert_eq!(next - t, Duration::from_secs(150));
    }

    #[test]
    fn session_refresh_goes_by_update_when_the_peer_allows_it() {
        let mut a = ua("alice", 7);
        let t0 = crate::test_epoch();
        let target: Uri = format!("sip:bob@{B}").parse().unwrap();
        a.invite(
            t0,
            target,
            Pair::addr(B),
            Pair::addr(A),
            b"v=0\r\n".to_vec(),
        );
        let invite = requests(&drain_text(&mut a), "INVITE").remove(0);
        let ok = reply(
            &invite,
            "200 OK",
            "bt",
            &[
                "Session-Expires: 90;refresher=uac",
                "Allow: INVITE, ACK, BYE, CANCEL, UPDATE",
            ],
        );
        a.handle_datagram(t0, ok.as_bytes(), Pair::addr(B), Pair::addr(A));
        drain_text(&mut a);
        let next = |a: &mut UserAgent| loop {
            let t = a.poll_timeout().unwrap();
            a.handle_timeout(t);
            let sent = drain_text(a);
            if let Some(r) = sent.iter().find(|m| !m.starts_with("SIP/2.0")) {
                break (t, r.clone());
            }
        };
        let (t, update) = next(&mut a);
        assert_eq!(t - t0, Duration::from_secs(45));
        assert!(update.starts_with("UPDATE "), "{update}");
        assert_eq!(header(&update, "Session-Expires"), Some("90;refresher=uac"));
        assert_eq!(header(&update, "Min-SE"), Some("90"));
        assert_eq!(header(&update, "Content-Length"), Some("0"));
        assert!(header(&update, "Supported").unwrap().contains("timer"));
        // The answer sets a new interval: the next refresh is at half of 120 s.
        let ok = reply(
            &update,
            "200 OK",
            "bt",
            &["Session-Expires: 120;refresher=uac"],
        );
        a.handle_datagram(t, ok.as_bytes(), Pair::addr(B), Pair::addr(A));
        let (t2, update2) = next(&mut a);
        assert_eq!(t2 - t, Duration::from_secs(60));
        assert!(update2.starts_with("UPDATE "), "{update2}");
        // 405: no UPDATE after all; the refresh goes again as a re-INVITE, with our SDP.
        let refused = reply(&update2, "405 Method Not Allowed", "bt", &[]);
        a.handle_datagram(t2, refused.as_bytes(), Pair::addr(B), Pair::addr(A));
        let (t3, reinvite) = next(&mut a);
        assert_eq!(t3 - t2, Duration::from_secs(2));
        assert!(reinvite.starts_with("INVITE "), "{reinvite}");
        assert!(reinvite.ends_with("v=0\r\n"), "{reinvite}");
        assert!(
            !std::iter::from_fn(|| a.poll_event()).any(|e| matches!(e, UaEvent::Ended { .. })),
            "the call goes on"
        );
    }
}
