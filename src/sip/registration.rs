//! Registration with a SIP registrar (RFC 3261 §10), sans-IO, in the transaction layer's
//! shape: inputs are `start`/`stop`/`handle_*` with `now`, outputs are the REGISTER
//! requests to send ([`Registration::poll_request`]), state changes
//! ([`Registration::poll_event`]) and the next deadline ([`Registration::poll_timeout`]).
//!
//! The caller sends each request as a client transaction (`TxnLayer::send_request`) to the
//! registrar's address, feeds the final response of the LATEST request back with
//! [`Registration::handle_response`] (responses with another Call-ID or CSeq are ignored),
//! and reports a transaction timeout (timer F) with [`Registration::handle_request_timeout`]
//! or a transport failure with [`Registration::handle_transport_error`].
//!
//! Rules:
//! - One Call-ID and From tag for the life of the registration; CSeq goes up by one per
//!   REGISTER (refreshes, auth retries, 423 retries, unregister); every REGISTER has a fresh
//!   Via branch.
//! - Granted expiry: the `expires` parameter of our Contact in the 2xx, else the Expires
//!   header, else what we asked for. It counts from when the REGISTER was sent.
//! - Refresh: at `max(granted / 2, granted − 30 s)` after sending ([`refresh_delay`]):
//!   60 s → 30 s, 300 s → 270 s, 3600 s → 3570 s, 20 s → 10 s.
//! - 423 Interval Too Brief: retry at once with the Min-Expires value (at most 3 times, and
//!   only when it is larger than what we asked for).
//! - 401/407: answered with the [`Authenticator`] (at most 4 challenges per attempt);
//!   `stale=true` retries silently; a refusal of our answer is `WrongPassword`.
//! - Failures that a retry may fix (timeout, transport error, 5xx, 6xx, other 4xx) retry
//!   with exponential backoff ([`Backoff`]: 30 s, 60 s, 120 s, ... capped at 10 min, reset by
//!   a success; a larger Retry-After, up to 24 h, is honoured). Failures that need the user (wrong
//!   password, no credentials, 403, 404, an unsupported challenge) do not retry: `start`
//!   again after fixing the account.
//! - NAT: when the 2xx's top Via carries `received`/`rport` that differ from our Contact,
//!   the Contact is rewritten ([`RegEvent::ContactChanged`]) and we re-register at once
//!   with the new Contact, removing the old one (`expires=0`) in the same request.
//! - `stop`: REGISTER with `Expires: 0` (and `expires=0` on the Contact) when we may hold a
//!   binding; any final answer or a timeout then ends in `Unregistered`.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use core::net::IpAddr;

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::sip::auth::{AuthError, Authenticator, Credentials};
use crate::sip::dialog::random_token;
use crate::sip::msg::{
    CSeq, Contacts, HeaderName, Host, Method, NameAddr, Request, Response, Scheme, Uri, Via,
};
use crate::sip::txn::new_branch;

/// Retry delays after failures: `initial`, doubling per consecutive failure, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure (default 30 s).
    pub initial: Duration,
    /// Longest delay (default 10 min).
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(30),
            max: Duration::from_secs(600),
        }
    }
}

impl Backoff {
    /// The delay after `failures` consecutive failures (1 = the first).
    pub fn delay(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(20);
        self.initial
            .saturating_mul(1u32 << shift)
            .min(self.max)
            .max(Duration::from_secs(1))
    }
}

/// When to refresh a binding granted for `granted` seconds: `max(granted/2, granted − 30 s)`.
pub fn refresh_delay(granted: u32) -> Duration {
    let half = Duration::from_millis(u64::from(granted) * 500);
    let margin = Duration::from_secs(u64::from(granted.saturating_sub(30)));
    half.max(margin)
}

/// Settings of one registration (one account).
#[derive(Debug, Clone)]
pub struct RegConfig {
    /// Address of record (From and To), e.g. `sip:alice@example.com`.
    pub aor: Uri,
    /// Request-URI of the REGISTER, e.g. `sip:example.com`.
    pub registrar: Uri,
    /// Our Contact (where calls reach us); its host/port also make the Via sent-by and its
    /// `transport` parameter the Via transport (UDP when absent).
    pub contact: Uri,
    /// Expiry to ask for, seconds.
    pub expires: u32,
    /// Digest credentials, when the registrar asks.
    pub credentials: Option<Credentials>,
    /// User-Agent header value.
    pub user_agent: String,
    /// Display name in From/To.
    pub display_name: Option<String>,
    /// Seed of the RNG for Call-ID, tag, branches and cnonces.
    pub seed: u64,
    /// Retry delays after failures.
    pub backoff: Backoff,
    /// Rewrite the Contact from the response's Via `received`/`rport` (NAT).
    pub rewrite_contact: bool,
    /// An outbound proxy, sent as the first Route (with `;lr`).
    pub route: Option<Uri>,
}

impl RegConfig {
    /// A config with the defaults: backoff 30 s..10 min, Contact rewriting on, no display name.
    pub fn new(aor: Uri, registrar: Uri, contact: Uri, expires: u32, seed: u64) -> RegConfig {
        RegConfig {
            aor,
            registrar,
            contact,
            expires,
            credentials: None,
            user_agent: concat!("termphone/", env!("CARGO_PKG_VERSION")).to_string(),
            display_name: None,
            seed,
            backoff: Backoff::default(),
            rewrite_contact: true,
            route: None,
        }
    }
}

/// Why a registration failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegFailure {
    /// The registrar refused our credentials (a second challenge after we answered).
    WrongPassword,
    /// The registrar asked for credentials and the account has none.
    NoCredentials,
    /// The registrar's challenge uses an algorithm or qop we do not support.
    UnsupportedAuth(String),
    /// 403 Forbidden, with the server's reason phrase (e.g. "Unknown User").
    Forbidden(String),
    /// 404 Not Found (unknown user), with the server's reason phrase.
    NotFound(String),
    /// No response (transaction timer F).
    Timeout,
    /// Another failure response.
    ServerError {
        /// Status code.
        code: u16,
        /// Reason phrase as the server sent it.
        reason: String,
    },
    /// The transport failed (connection refused, DNS, TLS, ...), as the caller described it.
    Network {
        /// What went wrong.
        reason: String,
    },
}

impl RegFailure {
    /// Whether the registration retries by itself after this failure.
    pub fn retries(&self) -> bool {
        matches!(
            self,
            RegFailure::Timeout | RegFailure::ServerError { .. } | RegFailure::Network { .. }
        )
    }
}

/// "forbidden (403)" when the phrase is the standard one, else "forbidden (403 Unknown User)".
fn with_phrase(f: &mut fmt::Formatter<'_>, what: &str, code: u16, phrase: &str) -> fmt::Result {
    let phrase = phrase.trim();
    if phrase.is_empty() || phrase.eq_ignore_ascii_case(crate::sip::msg::default_reason(code)) {
        write!(f, "{what} ({code})")
    } else {
        write!(f, "{what} ({code} {phrase})")
    }
}

impl fmt::Display for RegFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegFailure::WrongPassword => f.write_str("wrong password"),
            RegFailure::NoCredentials => f.write_str("the registrar asks for a password"),
            RegFailure::UnsupportedAuth(w) => write!(f, "unsupported authentication: {w}"),
            RegFailure::Forbidden(phrase) => with_phrase(f, "forbidden", 403, phrase),
            RegFailure::NotFound(phrase) => with_phrase(f, "unknown user", 404, phrase),
            RegFailure::Timeout => f.write_str("no response from the registrar"),
            RegFailure::ServerError { code, reason } => write!(f, "{code} {reason}"),
            RegFailure::Network { reason } => write!(f, "network error: {reason}"),
        }
    }
}

/// Registration state, as shown to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegState {
    /// Not registered and not trying.
    Unregistered,
    /// A REGISTER is under way (first attempt or a retry).
    Registering,
    /// Registered until `expires_at` (refreshes keep this state).
    Registered {
        /// When the binding runs out unless refreshed.
        expires_at: Instant,
        /// Seconds the registrar granted.
        granted: u32,
    },
    /// Removing our binding (after `stop`).
    Unregistering,
    /// The last attempt failed; `retry_at` is when the next one starts (None: no retry).
    Failed {
        /// Why.
        reason: RegFailure,
        /// When it retries by itself.
        retry_at: Option<Instant>,
    },
}

/// What the registration tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegEvent {
    /// The state changed.
    StateChanged(RegState),
    /// Our Contact was rewritten from the registrar's view of our address (NAT); other
    /// requests of the account should use it too.
    ContactChanged(Uri),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intent {
    Register,
    Unregister,
}

#[derive(Debug, Clone)]
struct InFlight {
    cseq: u32,
    intent: Intent,
    sent_at: Instant,
    expires: u32,
    contact: Uri,
    auth_rounds: u32,
    brief_rounds: u32,
}

const MAX_AUTH_ROUNDS: u32 = 4;
const MAX_BRIEF_ROUNDS: u32 = 3;
/// Longest Retry-After we honour (a larger value from the server is cut to this).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// `t + d`, saturating far in the future instead of overflowing.
fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(Duration::from_secs(u64::from(u32::MAX))))
        .unwrap_or(t)
}

/// One account's registration state machine. See the module docs for the rules.
#[derive(Debug)]
pub struct Registration {
    cfg: RegConfig,
    rng: StdRng,
    call_id: String,
    from_tag: String,
    cseq: u32,
    contact: Uri,
    /// A Contact to remove (expires=0) in the next REGISTER, after a NAT rewrite.
    stale_contact: Option<Uri>,
    expires: u32,
    auth: Option<Authenticator>,
    state: RegState,
    in_flight: Option<InFlight>,
    /// The Contact the registrar may hold a binding for.
    bound: Option<Uri>,
    stopping: bool,
    failures: u32,
    timer: Option<Instant>,
    outbox: VecDeque<Request>,
    events: VecDeque<RegEvent>,
}

impl Registration {
    /// A registration in state `Unregistered`; nothing is sent before [`Registration::start`].
    pub fn new(cfg: RegConfig) -> Registration {
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let call_id = format!("{}@{}", random_token(&mut rng, 24), cfg.contact.host);
        let from_tag = random_token(&mut rng, 16);
        Registration {
            contact: cfg.contact.clone(),
            expires: cfg.expires,
            auth: cfg.credentials.clone().map(Authenticator::new),
            cfg,
            rng,
            call_id,
            from_tag,
            cseq: 0,
            stale_contact: None,
            state: RegState::Unregistered,
            in_flight: None,
            bound: None,
            stopping: false,
            failures: 0,
            timer: None,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// True when the registration runs over a connection (Contact `transport=` other than UDP).
    pub fn is_reliable(&self) -> bool {
        self.cfg
            .contact
            .params
            .get_value("transport")
            .is_some_and(|t| !t.eq_ignore_ascii_case("udp"))
    }

    /// The current state.
    pub fn state(&self) -> &RegState {
        &self.state
    }

    /// The Call-ID of every REGISTER of this registration.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The Contact we register (after any NAT rewrite).
    pub fn contact(&self) -> &Uri {
        &self.contact
    }

    /// The address of record.
    pub fn aor(&self) -> &Uri {
        &self.cfg.aor
    }

    /// The account's credentials, if any (for other requests of the same account, e.g. the
    /// BYE of a call it received).
    pub fn credentials(&self) -> Option<&Credentials> {
        self.cfg.credentials.as_ref()
    }

    /// The expiry we ask for (after any 423).
    pub fn expires(&self) -> u32 {
        self.expires
    }

    /// Replace the credentials (e.g. after the user fixed a wrong password); the cached
    /// challenges are dropped. Takes effect with the next REGISTER (`start` again after a
    /// failure that does not retry).
    pub fn set_credentials(&mut self, credentials: Option<Credentials>) {
        self.auth = credentials.clone().map(Authenticator::new);
        self.cfg.credentials = credentials;
    }

    /// Register now (no-op while registering or registered).
    pub fn start(&mut self, now: Instant) {
        self.stopping = false;
        if matches!(
            self.state,
            RegState::Registering | RegState::Registered { .. }
        ) && self
            .in_flight
            .as_ref()
            .is_none_or(|f| f.intent == Intent::Register)
        {
            return;
        }
        self.failures = 0;
        self.timer = None;
        self.send(now, Intent::Register);
    }

    /// Unregister (Expires: 0) when a binding may exist; else just stop. No more retries.
    pub fn stop(&mut self, now: Instant) {
        self.stopping = true;
        self.timer = None;
        let registering = self
            .in_flight
            .as_ref()
            .is_some_and(|f| f.intent == Intent::Register);
        if self.bound.is_some() || registering {
            self.send(now, Intent::Unregister);
        } else {
            self.in_flight = None;
            self.set_state(RegState::Unregistered);
        }
    }

    /// The next REGISTER to send (as a new client transaction).
    pub fn poll_request(&mut self) -> Option<Request> {
        self.outbox.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<RegEvent> {
        self.events.pop_front()
    }

    /// When [`Registration::handle_timeout`] should be called next (refresh or retry).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer
    }

    /// Time passed: refresh or retry when due (early or spurious calls do nothing).
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.timer {
            Some(t) if t <= now => {
                self.timer = None;
                self.send(now, Intent::Register);
            }
            _ => {}
        }
    }

    /// A response to a REGISTER we sent. Ignored unless it answers the latest one
    /// (same Call-ID and CSeq) and is final.
    pub fn handle_response(&mut self, now: Instant, resp: &Response) {
        let Some(f) = &self.in_flight else { return };
        let h = &resp.headers;
        let ours = h.call_id().is_ok_and(|c| c == self.call_id)
            && h.cseq()
                .is_ok_and(|c| c.seq == f.cseq && c.method == Method::Register);
        if !ours || resp.code < 200 {
            return;
        }
        let Some(f) = self.in_flight.take() else {
            return;
        };
        let auth_result = self.auth.as_mut().map(|a| a.handle_response(resp));
        match resp.code {
            200..=299 => self.on_success(now, resp, f),
            401 | 407 => match auth_result {
                None => self.fail(now, RegFailure::NoCredentials, None),
                Some(Ok(true)) if f.auth_rounds < MAX_AUTH_ROUNDS => {
                    self.resend(now, &f, f.auth_rounds + 1, f.brief_rounds)
                }
                Some(Ok(_)) | Some(Err(AuthError::WrongPassword { .. })) => {
                    self.fail(now, RegFailure::WrongPassword, None)
                }
                Some(Err(AuthError::Unsupported(w))) => {
                    self.fail(now, RegFailure::UnsupportedAuth(w), None)
                }
                Some(Err(AuthError::Malformed(w))) => {
                    self.fail(now, RegFailure::UnsupportedAuth(w.to_string()), None)
                }
            },
            423 => {
                let min = h
                    .get(&HeaderName::MIN_EXPIRES)
                    .and_then(|v| v.trim().parse().ok());
                match min {
                    Some(m)
                        if m > f.expires
                            && f.intent == Intent::Register
                            && f.brief_rounds < MAX_BRIEF_ROUNDS =>
                    {
                        self.expires = m;
                        self.resend(now, &f, f.auth_rounds, f.brief_rounds + 1);
                    }
                    _ => self.fail_code(now, resp),
                }
            }
            _ => self.fail_code(now, resp),
        }
    }

    /// The transaction of the latest REGISTER timed out (timer F): `Failed(Timeout)`, then
    /// a retry after the backoff.
    pub fn handle_request_timeout(&mut self, now: Instant) {
        if self.in_flight.take().is_some() {
            self.fail(now, RegFailure::Timeout, None);
        }
    }

    /// The latest REGISTER could not be sent or its connection failed:
    /// `Failed(Network { reason })`, then a retry after the backoff.
    pub fn handle_transport_error(&mut self, now: Instant, reason: impl Into<String>) {
        if self.in_flight.take().is_some() {
            let reason = reason.into();
            self.fail(now, RegFailure::Network { reason }, None);
        }
    }

    /// The connection the registration runs over failed or closed (TCP/TLS/WS): a REGISTER
    /// in flight fails as [`handle_transport_error`](Self::handle_transport_error) says; a
    /// binding that was registered is gone with its flow (RFC 5626 §4.4), so the state becomes
    /// `Failed(Network)` and a new REGISTER (on a new connection) goes out after the backoff.
    pub fn handle_flow_failure(&mut self, now: Instant, reason: impl Into<String>) {
        if self.in_flight.is_some() {
            self.handle_transport_error(now, reason);
        } else if matches!(self.state, RegState::Registered { .. }) {
            self.contact = self.cfg.contact.clone();
            self.fail(
                now,
                RegFailure::Network {
                    reason: reason.into(),
                },
                None,
            );
        }
    }

    fn set_state(&mut self, state: RegState) {
        if self.state != state {
            self.state = state.clone();
            self.events.push_back(RegEvent::StateChanged(state));
        }
    }

    fn resend(&mut self, now: Instant, f: &InFlight, auth_rounds: u32, brief_rounds: u32) {
        self.send(now, f.intent);
        if let Some(n) = &mut self.in_flight {
            n.auth_rounds = auth_rounds;
            n.brief_rounds = brief_rounds;
        }
    }

    fn send(&mut self, now: Instant, intent: Intent) {
        self.cseq = self.cseq.wrapping_add(1).max(1);
        let branch = new_branch(&mut self.rng);
        let expires = match intent {
            Intent::Register => self.expires,
            Intent::Unregister => 0,
        };
        let contact = match intent {
            Intent::Register => self.contact.clone(),
            Intent::Unregister => self.bound.clone().unwrap_or_else(|| self.contact.clone()),
        };
        let mut req = Request::new(Method::Register, self.cfg.registrar.clone());
        let h = &mut req.headers;
        let transport = self
            .cfg
            .contact
            .params
            .get_value("transport")
            .unwrap_or("UDP")
            .to_ascii_uppercase();
        let mut via = Via::new(
            &transport,
            self.cfg.contact.host.clone(),
            self.cfg.contact.port,
            &branch,
        );
        via.params.set("rport", None);
        h.push(HeaderName::VIA, via.to_string());
        h.push(HeaderName::MAX_FORWARDS, "70");
        if let Some(route) = &self.cfg.route {
            h.push(
                HeaderName::ROUTE,
                crate::sip::ua::loose_route(route.clone()).to_string(),
            );
        }
        let mut from = NameAddr::new(self.cfg.aor.clone());
        from.display = self.cfg.display_name.clone();
        let mut to = from.clone();
        from.set_tag(&self.from_tag);
        to.params = Default::default();
        h.push(HeaderName::FROM, from.to_string());
        h.push(HeaderName::TO, to.to_string());
        h.push(HeaderName::CALL_ID, self.call_id.clone());
        h.push(
            HeaderName::CSEQ,
            CSeq {
                seq: self.cseq,
                method: Method::Register,
            }
            .to_string(),
        );
        let mut c = NameAddr::new(contact.clone());
        c.params.set("expires", Some(&expires.to_string()));
        let mut contact_value = c.to_string();
        // Contacts to remove as well: on a Contact rewrite the old one; when unregistering,
        // every Contact that may be bound — a stop can come while a REGISTER with a new
        // Contact is still in flight, and its 200 would otherwise leave that binding behind.
        let mut remove: Vec<&Uri> = Vec::new();
        match intent {
            Intent::Register => remove.extend(self.stale_contact.as_ref()),
            Intent::Unregister => {
                remove.push(&self.contact);
                remove.extend(self.stale_contact.as_ref());
            }
        }
        let mut removed: Vec<&Uri> = vec![&contact];
        for old in remove {
            if removed.iter().any(|u| same_binding(u, old)) {
                continue;
            }
            removed.push(old);
            let mut o = NameAddr::new(old.clone());
            o.params.set("expires", Some("0"));
            contact_value = format!("{contact_value}, {o}");
        }
        h.push(HeaderName::CONTACT, contact_value);
        h.push(HeaderName::EXPIRES, expires.to_string());
        if !self.cfg.user_agent.is_empty() {
            h.push(HeaderName::USER_AGENT, self.cfg.user_agent.clone());
        }
        if let Some(a) = &mut self.auth {
            a.authorize_request(&mut self.rng, &mut req);
        }
        self.in_flight = Some(InFlight {
            cseq: self.cseq,
            intent,
            sent_at: now,
            expires,
            contact,
            auth_rounds: 0,
            brief_rounds: 0,
        });
        self.outbox.push_back(req);
        match intent {
            Intent::Register => {
                if !matches!(self.state, RegState::Registered { .. }) {
                    self.set_state(RegState::Registering);
                }
            }
            Intent::Unregister => self.set_state(RegState::Unregistering),
        }
    }

    fn on_success(&mut self, now: Instant, resp: &Response, f: InFlight) {
        if f.intent == Intent::Unregister {
            self.bound = None;
            self.timer = None;
            self.set_state(RegState::Unregistered);
            return;
        }
        self.stale_contact = None;
        self.failures = 0;
        let granted = granted_expires(resp, &f.contact)
            .unwrap_or(f.expires)
            .max(1);
        self.bound = Some(f.contact.clone());
        let expires_at = later(f.sent_at, Duration::from_secs(u64::from(granted)));
        self.timer = Some(later(f.sent_at, refresh_delay(granted)));
        self.set_state(RegState::Registered {
            expires_at,
            granted,
        });
        if self.cfg.rewrite_contact {
            if let Some(new) = nat_contact(resp, &self.contact) {
                let old = std::mem::replace(&mut self.contact, new.clone());
                self.stale_contact = Some(old);
                self.events.push_back(RegEvent::ContactChanged(new));
                self.timer = None;
                self.send(now, Intent::Register);
            }
        }
    }

    fn fail_code(&mut self, now: Instant, resp: &Response) {
        let reason = match resp.code {
            403 => RegFailure::Forbidden(resp.reason.clone()),
            404 => RegFailure::NotFound(resp.reason.clone()),
            code => RegFailure::ServerError {
                code,
                reason: resp.reason.clone(),
            },
        };
        let retry_after = resp
            .headers
            .get(&HeaderName::RETRY_AFTER)
            .and_then(|v| v.split([';', '(', ' ']).next())
            .and_then(|v| v.trim().parse::<u32>().ok())
            .map(|s| Duration::from_secs(u64::from(s)).min(MAX_RETRY_AFTER));
        self.fail(now, reason, retry_after);
    }

    fn fail(&mut self, now: Instant, reason: RegFailure, retry_after: Option<Duration>) {
        if self.stopping {
            // Unregistering failed: the binding will run out by itself.
            self.bound = None;
            self.timer = None;
            self.set_state(RegState::Unregistered);
            return;
        }
        let retry_at = if reason.retries() {
            self.failures = self.failures.saturating_add(1);
            let delay = self.cfg.backoff.delay(self.failures);
            Some(later(now, retry_after.map_or(delay, |r| r.max(delay))))
        } else {
            None
        };
        self.timer = retry_at;
        self.set_state(RegState::Failed { reason, retry_at });
    }
}

fn default_port(uri: &Uri) -> u16 {
    uri.port.unwrap_or(match uri.scheme {
        Scheme::Sips => 5061,
        _ => 5060,
    })
}

fn same_binding(a: &Uri, b: &Uri) -> bool {
    a.user == b.user && a.host == b.host && default_port(a) == default_port(b)
}

/// The expiry granted to `contact`: its Contact's `expires` parameter, else the Expires header.
fn granted_expires(resp: &Response, contact: &Uri) -> Option<u32> {
    if let Ok(Contacts::List(list)) = resp.headers.contacts() {
        let mine = list.iter().find(|c| same_binding(&c.uri, contact));
        if let Some(e) = mine.and_then(|c| c.params.get_value("expires")) {
            if let Ok(e) = e.trim_matches('"').parse() {
                return Some(e);
            }
        }
    }
    resp.headers.expires().ok().flatten()
}

/// Our Contact as the registrar sees us (top Via `received`/`rport`), when it differs.
fn nat_contact(resp: &Response, contact: &Uri) -> Option<Uri> {
    let via = resp.headers.top_via().ok()?;
    let host = match via.received().and_then(|r| r.parse::<IpAddr>().ok()) {
        Some(ip) => Host::from(ip),
        None => contact.host.clone(),
    };
    let port = match via.rport() {
        Some(Some(p)) => p,
        _ => default_port(contact),
    };
    if host == contact.host && port == default_port(contact) {
        return None;
    }
    let mut new = contact.clone();
    new.host = host;
    new.port = Some(port);
    Some(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_rule() {
        assert_eq!(refresh_delay(60), Duration::from_secs(30));
        assert_eq!(refresh_delay(300), Duration::from_secs(270));
        assert_eq!(refresh_delay(3600), Duration::from_secs(3570));
        assert_eq!(refresh_delay(20), Duration::from_secs(10));
        assert_eq!(refresh_delay(1), Duration::from_millis(500));
    }

    #[test]
    fn backoff_doubles_to_the_cap() {
        let b = Backoff::default();
        let secs: Vec<u64> = (1..=8).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(secs, [30, 60, 120, 240, 480, 600, 600, 600]);
        assert_eq!(b.delay(u32::MAX).as_secs(), 600);
    }
}
