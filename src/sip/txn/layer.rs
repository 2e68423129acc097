//! The transaction layer: one per endpoint, multiplexes the four machines by [`TxnKey`].

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::time::Instant;

use core::net::SocketAddr;

use core::net::IpAddr;

use crate::sip::msg::{HeaderName, Headers, Host, Message, Method, ParseError, Request, Response};

use super::response::stateless_400;
use super::{
    ClientInviteTxn, ClientNonInviteTxn, ServerInviteTxn, ServerNonInviteTxn, TimerConfig,
    Transmit, TxnError, TxnEvent, TxnKey, TxnKind, TxnOutput, TxnState,
};

/// What the layer asks of every machine, so it calls them without matching on their kind.
/// The implementations forward to the machines' inherent methods of the same names (their
/// public API). The supertraits keep [`TxnLayer`]'s auto traits as they were.
trait TxnMachine: fmt::Debug + Send + Sync + UnwindSafe + RefUnwindSafe {
    fn kind(&self) -> TxnKind;
    fn state(&self) -> TxnState;
    fn poll_output(&mut self) -> Option<TxnOutput>;
    fn poll_timeout(&self) -> Option<Instant>;
    fn handle_timeout(&mut self, now: Instant);
}

/// A client machine (INVITE or not) as the layer drives it.
trait ClientTxn: TxnMachine {
    fn handle_response(&mut self, now: Instant, response: Response);
    fn handle_transport_error(&mut self, now: Instant);
}

/// A server machine (INVITE or not) as the layer drives it.
trait ServerTxn: TxnMachine {
    fn handle_request(&mut self, now: Instant, request: Request);
    fn send_response(&mut self, now: Instant, response: Response) -> Result<(), TxnError>;
}

/// `impl TxnMachine for $machine`, forwarding to its inherent methods.
macro_rules! impl_txn_machine {
    ($machine:ident, $kind:ident) => {
        impl TxnMachine for $machine {
            fn kind(&self) -> TxnKind {
                TxnKind::$kind
            }
            fn state(&self) -> TxnState {
                $machine::state(self)
            }
            fn poll_output(&mut self) -> Option<TxnOutput> {
                $machine::poll_output(self)
            }
            fn poll_timeout(&self) -> Option<Instant> {
                $machine::poll_timeout(self)
            }
            fn handle_timeout(&mut self, now: Instant) {
                $machine::handle_timeout(self, now)
            }
        }
    };
}

impl_txn_machine!(ClientInviteTxn, ClientInvite);
impl_txn_machine!(ClientNonInviteTxn, ClientNonInvite);
impl_txn_machine!(ServerInviteTxn, ServerInvite);
impl_txn_machine!(ServerNonInviteTxn, ServerNonInvite);

impl ClientTxn for ClientInviteTxn {
    fn handle_response(&mut self, now: Instant, response: Response) {
        ClientInviteTxn::handle_response(self, now, response)
    }
    fn handle_transport_error(&mut self, now: Instant) {
        ClientInviteTxn::handle_transport_error(self, now)
    }
}

impl ClientTxn for ClientNonInviteTxn {
    fn handle_response(&mut self, now: Instant, response: Response) {
        ClientNonInviteTxn::handle_response(self, now, response)
    }
    fn handle_transport_error(&mut self, now: Instant) {
        ClientNonInviteTxn::handle_transport_error(self, now)
    }
}

impl ServerTxn for ServerInviteTxn {
    fn handle_request(&mut self, now: Instant, request: Request) {
        ServerInviteTxn::handle_request(self, now, request)
    }
    fn send_response(&mut self, now: Instant, response: Response) -> Result<(), TxnError> {
        ServerInviteTxn::send_response(self, now, response)
    }
}

impl ServerTxn for ServerNonInviteTxn {
    fn handle_request(&mut self, now: Instant, request: Request) {
        ServerNonInviteTxn::handle_request(self, now, request)
    }
    fn send_response(&mut self, now: Instant, response: Response) -> Result<(), TxnError> {
        ServerNonInviteTxn::send_response(self, now, response)
    }
}

#[derive(Debug)]
struct ClientEntry {
    machine: Box<dyn ClientTxn>,
    dest: SocketAddr,
    /// Sent over a reliable (connection) transport.
    reliable: bool,
}

#[derive(Debug)]
struct ServerEntry {
    machine: Box<dyn ServerTxn>,
    /// Where the request came from; every response of the transaction goes there.
    source: SocketAddr,
}

/// The transaction layer (what the UA core uses): one per endpoint.
///
/// It starts client transactions ([`send_request`](Self::send_request)), matches incoming
/// messages to transactions ([`handle_message`](Self::handle_message)): responses by top Via
/// branch + sent-by + CSeq method (§17.1.3), requests by branch + sent-by + method with ACK
/// matching its INVITE and CANCEL its own transaction (§17.2.3); it creates server
/// transactions for new requests, absorbs retransmissions, and answers requests that lack
/// Via/From/To/Call-ID/CSeq (or whose CSeq method differs) with a stateless 400.
///
/// # Drain invariant
///
/// After **any** `handle_*`, `send_*` call (and after creating the layer), the caller must
/// drain [`poll_transmit`](Self::poll_transmit) and [`poll_event`](Self::poll_event) until
/// both return `None`, then (re)arm its single timer on [`poll_timeout`](Self::poll_timeout)
/// and call [`handle_timeout`](Self::handle_timeout) when it expires (early or spurious calls
/// are harmless no-ops). Outputs queue up until drained, in the order they happened;
/// `poll_timeout` is only valid after draining, and after `handle_timeout(now)` it is
/// always `None` or later than `now`.
///
/// # Where responses go
///
/// A server transaction sends every response to the **source address of the request** that
/// created it. With `rport` in the top Via this is exactly RFC 3581 §4; without it, §18.2.2
/// would send to the `received` address and the Via's port, which is the source address for
/// every peer that sends from the port it listens on, and the source address is the only
/// choice that crosses a NAT. Over TCP/TLS the caller maps the address to its connection.
/// Incoming requests get `received` (when the Via host is not the source IP, or when `rport`
/// is present) and a filled-in `rport` (when the Via asked for it) stamped on their top Via
/// (§18.2.1, RFC 3581), so the responses tell the peer what we saw.
///
/// # What the TU owes
///
/// - Every [`TxnEvent::Request`] with a key gets a final response through
///   [`send_response`](Self::send_response): server transactions in Trying/Proceeding have
///   no timer (RFC 3261), so an unanswered one lives on. The layer itself sends 100 Trying
///   for each new INVITE.
/// - A client INVITE in Proceeding has no timer either: the TU CANCELs or gives up itself.
/// - 2xx to INVITE: the TU retransmits its 2xx until the ACK and ACKs every 2xx it gets
///   (RFC 6026); ACKs for 2xx arrive as [`TxnEvent::Request`] with `key: None`.
#[derive(Debug)]
pub struct TxnLayer {
    cfg: TimerConfig,
    clients: HashMap<TxnKey, ClientEntry>,
    servers: HashMap<TxnKey, ServerEntry>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TxnEvent>,
}

impl TxnLayer {
    /// An empty layer with these timer values.
    pub fn new(cfg: TimerConfig) -> TxnLayer {
        TxnLayer {
            cfg: cfg.sanitized(),
            clients: HashMap::new(),
            servers: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The timer values in use.
    pub fn config(&self) -> TimerConfig {
        self.cfg
    }

    /// Start a client transaction. The request must already carry a top Via with a branch
    /// (use [`new_branch`](super::new_branch) for "z9hG4bK..."). `reliable` = TCP/TLS (no
    /// retransmit, timers D/K = 0).
    ///
    /// An ACK starts no transaction: it is sent once (as by [`send_stateless`](Self::send_stateless)).
    /// A request without a readable top Via branch gets [`TxnEvent::Timeout`] and
    /// [`TxnEvent::Terminated`] at once (its key has an empty branch and sent-by); a request
    /// whose key is already in use by a live client transaction is not sent and gets
    /// [`TxnEvent::Dropped`].
    pub fn send_request(
        &mut self,
        now: Instant,
        req: Request,
        dest: SocketAddr,
        reliable: bool,
    ) -> TxnKey {
        let Some(key) = TxnKey::for_client_request(&req) else {
            let key = TxnKey {
                branch: String::new(),
                sent_by: String::new(),
                method: req.method.clone(),
            };
            self.events
                .push_back(TxnEvent::Timeout { key: key.clone() });
            self.events
                .push_back(TxnEvent::Terminated { key: key.clone() });
            return key;
        };
        if matches!(req.method, Method::Ack) {
            self.send_stateless(dest, Message::Request(req));
            return key;
        }
        if self.clients.contains_key(&key) {
            self.dropped(format!("client transaction {key} already exists"), dest);
            return key;
        }
        let machine: Box<dyn ClientTxn> = if matches!(req.method, Method::Invite) {
            Box::new(ClientInviteTxn::new(now, req, reliable, self.cfg))
        } else {
            Box::new(ClientNonInviteTxn::new(now, req, reliable, self.cfg))
        };
        self.clients.insert(
            key.clone(),
            ClientEntry {
                machine,
                dest,
                reliable,
            },
        );
        self.drain_client(&key);
        key
    }

    /// Send a response on a server transaction (the key of the request it answers).
    /// 2xx to INVITE: the txn moves to Accepted (RFC 6026); 2xx retransmission is the TU's
    /// job (dialog layer), through this call while the txn is Accepted or through
    /// [`send_stateless`](Self::send_stateless).
    pub fn send_response(
        &mut self,
        now: Instant,
        key: &TxnKey,
        resp: Response,
    ) -> Result<(), TxnError> {
        let entry = self.servers.get_mut(key).ok_or(TxnError::NoTransaction)?;
        entry.machine.send_response(now, resp)?;
        self.drain_server(key, None);
        Ok(())
    }

    /// Send a message outside any transaction (ACK for 2xx, 2xx retransmissions, stateless 400).
    pub fn send_stateless(&mut self, dest: SocketAddr, msg: Message) {
        self.transmits.push_back(Transmit { dest, message: msg });
    }

    /// A parsed message from the network with its source address (and whether it came on a
    /// reliable transport).
    pub fn handle_message(
        &mut self,
        now: Instant,
        msg: Message,
        source: SocketAddr,
        reliable: bool,
    ) {
        match msg {
            Message::Response(resp) => self.handle_response(now, resp, source),
            Message::Request(req) => self.handle_request(now, req, source, reliable),
        }
    }

    /// A message that did not parse: when it was a request whose headers parsed
    /// ([`ParseError::request_headers`]) with a readable Via and it is not an ACK, answer a
    /// stateless 400 with the parse error as reason; always emit [`TxnEvent::Dropped`].
    pub fn handle_parse_error(&mut self, err: &ParseError, source: SocketAddr) {
        if let Some(headers) = err.request_headers() {
            let is_ack = headers
                .cseq()
                .map(|c| matches!(c.method, Method::Ack))
                .unwrap_or(false);
            if !is_ack && headers.top_via().is_ok() {
                let resp = stateless_400(headers, err.reason());
                self.send_stateless(source, Message::Response(resp));
            }
        }
        self.dropped(format!("unparsable message: {}", err.reason()), source);
    }

    /// The transport failed to send for the client transaction `key` (e.g. TCP connect
    /// refused, ICMP unreachable): the TU gets [`TxnEvent::Timeout`] (if no final response
    /// came yet) and the transaction ends. Unknown keys are ignored.
    pub fn handle_transport_error(&mut self, now: Instant, key: &TxnKey) {
        if let Some(entry) = self.clients.get_mut(key) {
            entry.machine.handle_transport_error(now);
            self.drain_client(key);
        }
    }

    /// The connection to `dest` could not be opened or was closed: every client transaction
    /// sent over a reliable transport to `dest` gets a transport error (the TU sees
    /// [`TxnEvent::Timeout`]). Returns their keys, in a stable order.
    pub fn connection_failed(&mut self, now: Instant, dest: SocketAddr) -> Vec<TxnKey> {
        let mut keys: Vec<TxnKey> = self
            .clients
            .iter()
            .filter(|(_, e)| e.reliable && e.dest == dest)
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort_by(|a, b| (&a.branch, a.method.as_str()).cmp(&(&b.branch, b.method.as_str())));
        for key in &keys {
            self.handle_transport_error(now, key);
        }
        keys
    }

    /// Fire every timer due at `now`, in deadline order.
    pub fn handle_timeout(&mut self, now: Instant) {
        // (deadline, is_server, key): sorted so the output order does not depend on hashing.
        let mut due: Vec<(Instant, bool, TxnKey)> = Vec::new();
        for (key, entry) in &self.clients {
            if let Some(at) = entry.machine.poll_timeout().filter(|at| *at <= now) {
                due.push((at, false, key.clone()));
            }
        }
        for (key, entry) in &self.servers {
            if let Some(at) = entry.machine.poll_timeout().filter(|at| *at <= now) {
                due.push((at, true, key.clone()));
            }
        }
        due.sort_by(|a, b| {
            (a.0, a.1, &a.2.branch, &a.2.sent_by, a.2.method.as_str()).cmp(&(
                b.0,
                b.1,
                &b.2.branch,
                &b.2.sent_by,
                b.2.method.as_str(),
            ))
        });
        for (_, is_server, key) in due {
            if is_server {
                if let Some(entry) = self.servers.get_mut(&key) {
                    entry.machine.handle_timeout(now);
                    self.drain_server(&key, None);
                }
            } else if let Some(entry) = self.clients.get_mut(&key) {
                entry.machine.handle_timeout(now);
                self.drain_client(&key);
            }
        }
    }

    /// The earliest instant at which [`handle_timeout`](Self::handle_timeout) has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let c = self
            .clients
            .values()
            .filter_map(|e| e.machine.poll_timeout());
        let s = self
            .servers
            .values()
            .filter_map(|e| e.machine.poll_timeout());
        c.chain(s).min()
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the TU.
    pub fn poll_event(&mut self) -> Option<TxnEvent> {
        self.events.pop_front()
    }

    /// The state of a live client transaction.
    pub fn client_state(&self, key: &TxnKey) -> Option<TxnState> {
        self.clients.get(key).map(|e| e.machine.state())
    }

    /// The state of a live server transaction.
    pub fn server_state(&self, key: &TxnKey) -> Option<TxnState> {
        self.servers.get(key).map(|e| e.machine.state())
    }

    /// Every live transaction with its kind and state (for a SIP trace view or a leak check).
    pub fn transactions(&self) -> impl Iterator<Item = (&TxnKey, TxnKind, TxnState)> + '_ {
        let c = self
            .clients
            .iter()
            .map(|(k, e)| (k, e.machine.kind(), e.machine.state()));
        let s = self
            .servers
            .iter()
            .map(|(k, e)| (k, e.machine.kind(), e.machine.state()));
        c.chain(s)
    }

    /// How many transactions are alive.
    pub fn len(&self) -> usize {
        self.clients.len() + self.servers.len()
    }

    /// Whether no transaction is alive.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty() && self.servers.is_empty()
    }

    fn handle_response(&mut self, now: Instant, resp: Response, source: SocketAddr) {
        if !(100..=699).contains(&resp.code) {
            let reason = format!("response with invalid status code {}", resp.code);
            return self.dropped(reason, source);
        }
        let key = match TxnKey::for_response(&resp) {
            Ok(key) => key,
            Err(reason) => return self.dropped(reason.to_string(), source),
        };
        match self.clients.get_mut(&key) {
            Some(entry) => {
                entry.machine.handle_response(now, resp);
                self.drain_client(&key);
            }
            None => self.events.push_back(TxnEvent::StrayResponse {
                response: resp,
                source,
            }),
        }
    }

    fn handle_request(
        &mut self,
        now: Instant,
        mut req: Request,
        source: SocketAddr,
        reliable: bool,
    ) {
        if let Err(reason) = check_request(&req) {
            // Never answer an ACK (§17); otherwise answer 400 if we know where (a Via).
            if !matches!(req.method, Method::Ack) && req.headers.top_via().is_ok() {
                let resp = stateless_400(&req.headers, &reason);
                self.send_stateless(source, Message::Response(resp));
            }
            return self.dropped(reason, source);
        }
        let key = match TxnKey::for_server_request(&req) {
            Ok(key) => key,
            Err(reason) => return self.dropped(reason.to_string(), source),
        };
        stamp_received(&mut req, source);
        if matches!(req.method, Method::Ack) {
            match self.servers.get_mut(&key) {
                Some(entry) if entry.machine.kind() == TxnKind::ServerInvite => {
                    entry.machine.handle_request(now, req);
                    self.drain_server(&key, Some(source));
                }
                _ => self.events.push_back(TxnEvent::Request {
                    key: None,
                    request: req,
                    source,
                }),
            }
            return;
        }
        if let Some(entry) = self.servers.get_mut(&key) {
            entry.machine.handle_request(now, req);
            self.drain_server(&key, Some(source));
            return;
        }
        let machine: Box<dyn ServerTxn> = if matches!(req.method, Method::Invite) {
            Box::new(ServerInviteTxn::new(now, req, reliable, self.cfg))
        } else {
            Box::new(ServerNonInviteTxn::new(now, req, reliable, self.cfg))
        };
        self.servers
            .insert(key.clone(), ServerEntry { machine, source });
        self.drain_server(&key, Some(source));
    }

    fn drain_client(&mut self, key: &TxnKey) {
        let Some(entry) = self.clients.get_mut(key) else {
            return;
        };
        let dest = entry.dest;
        let outputs = drain_outputs(entry.machine.as_mut());
        let terminated = self.forward_outputs(key, dest, outputs, |output| match output {
            TxnOutput::Response(response) => Some(TxnEvent::Response {
                key: key.clone(),
                response,
            }),
            // Client machines produce no requests.
            _ => None,
        });
        if terminated {
            self.clients.remove(key);
            self.events
                .push_back(TxnEvent::Terminated { key: key.clone() });
        }
    }

    /// `msg_source`: the source of the request being handled, if any (for ACK events).
    fn drain_server(&mut self, key: &TxnKey, msg_source: Option<SocketAddr>) {
        let Some(entry) = self.servers.get_mut(key) else {
            return;
        };
        let source = entry.source;
        let outputs = drain_outputs(entry.machine.as_mut());
        let terminated = self.forward_outputs(key, source, outputs, |output| match output {
            TxnOutput::Request(request) => Some(TxnEvent::Request {
                key: Some(key.clone()),
                request,
                source,
            }),
            TxnOutput::Ack(request) => Some(TxnEvent::Request {
                key: None,
                request,
                source: msg_source.unwrap_or(source),
            }),
            // Server machines produce no responses for the TU.
            _ => None,
        });
        if terminated {
            self.servers.remove(key);
            self.events
                .push_back(TxnEvent::Terminated { key: key.clone() });
        }
    }

    /// Queue one machine's outputs, in order: transmissions to `peer`, timeouts as
    /// [`TxnEvent::Timeout`], and the rest as `event` turns them into TU events (None: none).
    /// Returns whether the machine terminated (the caller removes it and says so last).
    fn forward_outputs(
        &mut self,
        key: &TxnKey,
        peer: SocketAddr,
        outputs: Vec<TxnOutput>,
        event: impl Fn(TxnOutput) -> Option<TxnEvent>,
    ) -> bool {
        let mut terminated = false;
        for output in outputs {
            match output {
                TxnOutput::Transmit(message) => self.transmits.push_back(Transmit {
                    dest: peer,
                    message,
                }),
                TxnOutput::Timeout => self
                    .events
                    .push_back(TxnEvent::Timeout { key: key.clone() }),
                TxnOutput::Terminated => terminated = true,
                other => self.events.extend(event(other)),
            }
        }
        terminated
    }

    /// Tell the TU a message was dropped, and why.
    fn dropped(&mut self, reason: String, peer: SocketAddr) {
        self.events.push_back(TxnEvent::Dropped { reason, peer });
    }
}

/// Everything a machine has queued, in order.
fn drain_outputs<M: TxnMachine + ?Sized>(machine: &mut M) -> Vec<TxnOutput> {
    std::iter::from_fn(|| machine.poll_output()).collect()
}

/// The mandatory headers of §8.1.1 are there and readable, and the CSeq method is the
/// request method (§8.2.. / §20.16). The error names what is wrong, never a value.
fn check_request(req: &Request) -> Result<(), String> {
    let h = &req.headers;
    h.top_via().map_err(|_| "missing or malformed Via")?;
    h.from().map_err(|_| "missing or malformed From")?;
    h.to().map_err(|_| "missing or malformed To")?;
    h.call_id().map_err(|_| "missing Call-ID")?;
    let cseq = h.cseq().map_err(|_| "missing or malformed CSeq")?;
    if cseq.method.as_str() != req.method.as_str() {
        return Err("CSeq method does not match the request method".to_string());
    }
    Ok(())
}

/// §18.2.1 / RFC 3581 §4: add `received` when the top Via's host is not the source IP (or
/// when `rport` is asked for), and fill in `rport`. Only the first Via line is rewritten.
fn stamp_received(req: &mut Request, source: SocketAddr) {
    let Some(first_line) = req.headers.get(&HeaderName::VIA) else {
        return;
    };
    let mut line_headers = Headers::new();
    line_headers.push(HeaderName::VIA, first_line);
    let Ok(mut vias) = line_headers.vias() else {
        return;
    };
    let Some(top) = vias.first_mut() else {
        return;
    };
    let ip = source.ip();
    let host_is_source = match &top.host {
        Host::V4(a) => IpAddr::V4(*a) == ip,
        Host::V6(a) => IpAddr::V6(*a) == ip,
        Host::Domain(_) => false,
    };
    let wants_rport = top.rport().is_some();
    if host_is_source && !wants_rport {
        return;
    }
    top.params.set("received", Some(&ip.to_string()));
    if wants_rport {
        top.params.set("rport", Some(&source.port().to_string()));
    }
    let new_line = vias
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut rebuilt = Headers::new();
    let mut replaced = false;
    for (name, value) in req.headers.iter() {
        if !replaced && *name == HeaderName::VIA {
            rebuilt.push(name.clone(), new_line.as_str());
            replaced = true;
        } else {
            rebuilt.push(name.clone(), value);
        }
    }
    req.headers = rebuilt;
}
