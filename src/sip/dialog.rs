//! INVITE dialogs (RFC 3261 §12): identifiers, sequence numbers, route set, remote target,
//! and building requests and responses inside them. Pure data, no I/O.

use core::net::SocketAddr;

use rand::Rng;

use crate::sip::msg::{
    default_reason, CSeq, Contacts, HeaderName, Host, Message, Method, NameAddr, Request, Response,
    Uri, Via,
};
use crate::sip::transport::Transport;

/// Which side created the dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We sent the INVITE.
    Uac,
    /// We received the INVITE.
    Uas,
}

/// The dialog identifier: Call-ID plus both tags (RFC 3261 §12).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

/// State of one INVITE dialog.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub id: DialogId,
    pub role: Role,
    /// Our CSeq for requests we send; incremented per new request (not ACK/CANCEL).
    pub local_seq: u32,
    /// The highest CSeq seen from the peer.
    pub remote_seq: Option<u32>,
    /// Our URI (From on requests we send).
    pub local_uri: NameAddr,
    /// The peer's URI (To on requests we send).
    pub remote_uri: NameAddr,
    /// Where in-dialog requests go (the peer's Contact).
    pub remote_target: Uri,
    /// Route set, in the order to put in Route headers.
    pub route_set: Vec<NameAddr>,
    /// Our Contact.
    pub local_contact: Uri,
    /// Where the peer's messages last came from; used when the target is not an IP literal.
    pub fallback_dest: SocketAddr,
    /// The transport the INVITE travelled over (its top Via), used for in-dialog requests
    /// when the next hop's URI names none.
    pub transport: Transport,
}

/// The transport named by a URI: `transport=` parameter, `sips:` → TLS; `None` if neither.
pub fn uri_transport(uri: &Uri) -> Option<Transport> {
    if let Some(t) = uri
        .params
        .get_value("transport")
        .and_then(Transport::from_name)
    {
        return Some(t);
    }
    matches!(uri.scheme, crate::sip::msg::Scheme::Sips).then_some(Transport::Tls)
}

/// The transport of a request's top Via (UDP when unreadable or unknown).
pub fn via_transport(headers: &crate::sip::msg::Headers) -> Transport {
    headers
        .top_via()
        .ok()
        .and_then(|v| Transport::from_name(&v.transport))
        .unwrap_or_default()
}

/// Make a random token of `len` lowercase hex characters (tags, Call-IDs).
pub fn random_token<R: Rng>(rng: &mut R, len: usize) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    (0..len)
        .map(|_| HEX[rng.random_range(0..16)] as char)
        .collect()
}

/// Our Via header for a request sent from `local` over UDP, with a fresh branch and `rport`
/// (RFC 3581) so that responses come back through NAT.
pub fn local_via(local: SocketAddr, branch: &str) -> Via {
    local_via_over(local, Transport::Udp, branch)
}

/// Our Via header for a request sent from `local` over `transport` (see [`local_via`]).
pub fn local_via_over(local: SocketAddr, transport: Transport, branch: &str) -> Via {
    let mut via: Via = format!("SIP/2.0/{} {}", transport.via_name(), host_port(local))
        .parse()
        .expect("a socket address always makes a valid Via");
    via.params.set("rport", None);
    via.params.set("branch", Some(branch));
    via
}

/// "host:port" with IPv6 in brackets.
pub fn host_port(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// A `Host` for an IP address.
pub fn ip_host(addr: SocketAddr) -> Host {
    match addr {
        SocketAddr::V4(a) => Host::V4(*a.ip()),
        SocketAddr::V6(a) => Host::V6(*a.ip()),
    }
}

/// Where to send a request for `uri`: its IP literal and port, or `fallback`.
pub fn uri_dest(uri: &Uri, fallback: SocketAddr) -> SocketAddr {
    uri.socket_addr().unwrap_or(fallback)
}

/// A response to `req` with the headers RFC 3261 §8.2.6.2 copies (Via, From, To, Call-ID,
/// CSeq, Record-Route for dialog-creating responses). `to_tag` is added to To when the
/// request had none.
pub fn response_to(
    req: &Request,
    code: u16,
    reason: Option<&str>,
    to_tag: Option<&str>,
) -> Response {
    let mut resp = Response::new(code, reason.unwrap_or_else(|| default_reason(code)));
    for (name, value) in req.headers.iter() {
        let copy = *name == HeaderName::VIA
            || *name == HeaderName::FROM
            || *name == HeaderName::CALL_ID
            || *name == HeaderName::CSEQ
            || (*name == HeaderName::RECORD_ROUTE && (100..300).contains(&code) && code != 100);
        if copy {
            resp.headers.push(name.clone(), value);
        } else if *name == HeaderName::TO {
            let mut value = value.to_string();
            if let (Some(tag), Ok(to)) = (to_tag, req.headers.to()) {
                if to.tag().is_none() && code != 100 {
                    let mut to = to;
                    to.set_tag(tag);
                    value = to.to_string();
                }
            }
            resp.headers.push(HeaderName::TO, value);
        }
    }
    resp
}

impl Dialog {
    /// The UAS side of a dialog created by an incoming INVITE we answer with `local_tag`.
    pub fn new_uas(
        invite: &Request,
        local_tag: &str,
        local_contact: Uri,
        source: SocketAddr,
    ) -> Result<Dialog, String> {
        let h = &invite.headers;
        let from = h.from().map_err(|e| e.to_string())?;
        let mut to = h.to().map_err(|e| e.to_string())?;
        let remote_tag = from.tag().unwrap_or_default().to_string();
        to.set_tag(local_tag);
        let cseq = h.cseq().map_err(|e| e.to_string())?;
        let remote_target =
            first_contact(invite.headers.contacts()).unwrap_or_else(|| from.uri.clone());
        let route_set = h
            .name_addrs(&HeaderName::RECORD_ROUTE)
            .map_err(|e| e.to_string())?;
        Ok(Dialog {
            id: DialogId {
                call_id: h.call_id().map_err(|e| e.to_string())?.to_string(),
                local_tag: local_tag.to_string(),
                remote_tag,
            },
            role: Role::Uas,
            local_seq: 0,
            remote_seq: Some(cseq.seq),
            local_uri: to,
            remote_uri: from,
            remote_target,
            route_set,
            local_contact,
            fallback_dest: source,
            transport: via_transport(&invite.headers),
        })
    }

    /// The UAC side of a dialog established by a response (18x with a tag, or 2xx) to our INVITE.
    pub fn new_uac(
        invite: &Request,
        resp: &Response,
        source: SocketAddr,
    ) -> Result<Dialog, String> {
        let from = invite.headers.from().map_err(|e| e.to_string())?;
        let to = resp.headers.to().map_err(|e| e.to_string())?;
        let remote_tag = to.tag().ok_or("response without a To tag")?.to_string();
        let cseq = invite.headers.cseq().map_err(|e| e.to_string())?;
        let remote_target =
            first_contact(resp.headers.contacts()).unwrap_or_else(|| invite.uri.clone());
        let mut route_set = resp
            .headers
            .name_addrs(&HeaderName::RECORD_ROUTE)
            .map_err(|e| e.to_string())?;
        route_set.reverse();
        let local_contact =
            first_contact(invite.headers.contacts()).unwrap_or_else(|| from.uri.clone());
        Ok(Dialog {
            id: DialogId {
                call_id: invite
                    .headers
                    .call_id()
                    .map_err(|e| e.to_string())?
                    .to_string(),
                local_tag: from.tag().unwrap_or_default().to_string(),
                remote_tag,
            },
            role: Role::Uac,
            local_seq: cseq.seq,
            remote_seq: None,
            local_uri: from,
            remote_uri: to,
            remote_target,
            route_set,
            local_contact,
            fallback_dest: source,
            transport: via_transport(&invite.headers),
        })
    }

    /// The transport for requests in this dialog: the next hop URI's, else the INVITE's.
    pub fn next_hop_transport(&self) -> Transport {
        let uri = match self.route_set.first() {
            Some(route) => &route.uri,
            None => &self.remote_target,
        };
        match uri_transport(uri) {
            // Proxies (Kamailio among them) record-route secure WebSocket as `transport=ws`:
            // the hop is the one we reached over WSS, so stay on it.
            Some(Transport::Ws) if self.transport == Transport::Wss => Transport::Wss,
            Some(t) => t,
            None => self.transport,
        }
    }

    /// Where requests in this dialog go: the first route (loose routing), else the remote target.
    pub fn next_hop(&self) -> SocketAddr {
        match self.route_set.first() {
            Some(route) => uri_dest(&route.uri, self.fallback_dest),
            None => uri_dest(&self.remote_target, self.fallback_dest),
        }
    }

    /// Build an in-dialog request (RFC 3261 §12.2.1.1). For ACK the CSeq number is `cseq`
    /// (the INVITE's); for other methods a new number is taken.
    pub fn request(
        &mut self,
        method: Method,
        local: SocketAddr,
        branch: &str,
        ack_cseq: Option<u32>,
    ) -> Request {
        let seq = match (method.clone(), ack_cseq) {
            (Method::Ack, Some(n)) => n,
            _ => {
                self.local_seq = self.local_seq.wrapping_add(1);
                self.local_seq
            }
        };
        let mut req = Request::new(method.clone(), self.remote_target.clone());
        let h = &mut req.headers;
        let via = local_via_over(local, self.next_hop_transport(), branch);
        h.push(HeaderName::VIA, via.to_string());
        h.push(HeaderName::MAX_FORWARDS, "70");
        for route in &self.route_set {
            h.push(HeaderName::ROUTE, route.to_string());
        }
        h.push(HeaderName::FROM, self.local_uri.to_string());
        h.push(HeaderName::TO, self.remote_uri.to_string());
        h.push(HeaderName::CALL_ID, self.id.call_id.clone());
        h.push(HeaderName::CSEQ, CSeq { seq, method }.to_string());
        if req.method != Method::Ack && req.method != Method::Bye {
            req.headers.push(
                HeaderName::CONTACT,
                NameAddr::new(self.local_contact.clone()).to_string(),
            );
        }
        req
    }

    /// Check an incoming in-dialog request's CSeq (§12.2.2): lower than the last one is out
    /// of order (500). ACK and CANCEL carry the INVITE's number and are not checked.
    pub fn accept_remote_seq(&mut self, req: &Request) -> bool {
        let Ok(cseq) = req.headers.cseq() else {
            return false;
        };
        if matches!(req.method, Method::Ack | Method::Cancel) {
            return true;
        }
        match self.remote_seq {
            Some(last) if cseq.seq <= last => false,
            _ => {
                self.remote_seq = Some(cseq.seq);
                true
            }
        }
    }

    /// A target refresh (re-INVITE, UPDATE) may change the remote target.
    pub fn refresh_target(&mut self, msg: &Message) {
        if let Some(uri) = first_contact(msg.headers().contacts()) {
            self.remote_target = uri;
        }
    }
}

fn first_contact(contacts: Result<Contacts, crate::sip::msg::ParseError>) -> Option<Uri> {
    match contacts {
        Ok(Contacts::List(list)) => list.into_iter().next().map(|c| c.uri),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dialog(transport: Transport, route: Option<&str>, target: &str) -> Dialog {
        let addr: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        Dialog {
            id: DialogId {
                call_id: "c".into(),
                local_tag: "a".into(),
                remote_tag: "b".into(),
            },
            role: Role::Uac,
            local_seq: 1,
            remote_seq: None,
            local_uri: "<sip:a@127.0.0.1>".parse().unwrap(),
            remote_uri: "<sip:b@127.0.0.1>".parse().unwrap(),
            remote_target: target.parse().unwrap(),
            route_set: route.map(|r| r.parse().unwrap()).into_iter().collect(),
            local_contact: "sip:a@127.0.0.1".parse().unwrap(),
            fallback_dest: addr,
            transport,
        }
    }

    #[test]
    fn next_hop_transport_follows_the_route_then_the_invite() {
        let d = dialog(
            Transport::Udp,
            Some("<sip:127.0.0.1;transport=tcp;lr>"),
            "sip:b@127.0.0.1",
        );
        assert_eq!(d.next_hop_transport(), Transport::Tcp);
        let d = dialog(Transport::Tls, None, "sip:b@127.0.0.1:5099");
        assert_eq!(d.next_hop_transport(), Transport::Tls);
        let d = dialog(Transport::Udp, None, "sips:b@127.0.0.1");
        assert_eq!(d.next_hop_transport(), Transport::Tls);
        // A proxy's record-route says transport=ws for the WSS hop we came over.
        let d = dialog(
            Transport::Wss,
            Some("<sip:127.0.0.1:8443;transport=ws;lr>"),
            "sip:b@127.0.0.1",
        );
        assert_eq!(d.next_hop_transport(), Transport::Wss);
        let mut d = d;
        let req = d.request(
            Method::Bye,
            "127.0.0.1:5070".parse().unwrap(),
            "z9hG4bKx",
            None,
        );
        assert!(req.headers.top_via().is_ok_and(|v| v.transport == "WSS"));
    }
}
