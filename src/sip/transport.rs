//! The SIP transports termphone speaks, as named in Via headers (`SIP/2.0/TCP`), in URI
//! `transport=` parameters and in `config.toml` (`transport = "tls"`).

use std::fmt;
use std::str::FromStr;

/// A SIP transport (RFC 3261 §18, RFC 7118 for WebSocket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Transport {
    /// Datagrams (RFC 3261 §18); the default.
    #[default]
    Udp,
    /// A TCP connection with Content-Length framing.
    Tcp,
    /// TCP with TLS (the `sips`/TLS transport, default port 5061).
    Tls,
    /// WebSocket, one SIP message per WebSocket message (RFC 7118).
    Ws,
    /// WebSocket over TLS (RFC 7118).
    Wss,
}

impl Transport {
    /// Every transport, in the order users meet them.
    pub const ALL: [Transport; 5] = [
        Transport::Udp,
        Transport::Tcp,
        Transport::Tls,
        Transport::Ws,
        Transport::Wss,
    ];

    /// The name in a Via header: `UDP`, `TCP`, `TLS`, `WS`, `WSS`.
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }

    /// The name in a URI `transport=` parameter and in config: `udp`, `tcp`, `tls`, `ws`, `wss`.
    pub fn param_name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }

    /// Parse a transport name in any case (`udp`, `TCP`, `Tls`, ...); `None` if unknown.
    pub fn from_name(name: &str) -> Option<Transport> {
        Transport::ALL
            .into_iter()
            .find(|t| t.param_name().eq_ignore_ascii_case(name))
    }

    /// Reliable (connection-oriented): no retransmissions, timers D/I/J/K zero.
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// Carried over TLS.
    pub fn is_secure(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }

    /// WebSocket (RFC 7118).
    pub fn is_websocket(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss)
    }

    /// The port used when a URI names none and DNS gives none: 5060 for UDP and TCP, 5061
    /// for TLS, 80 for WS and 443 for WSS.
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Udp | Transport::Tcp => 5060,
            Transport::Tls => 5061,
            Transport::Ws => 80,
            Transport::Wss => 443,
        }
    }

    /// The DNS SRV service label for this transport (RFC 3263 §4.1, RFC 7118 §4.4 leaves
    /// WebSocket to the URL): `_sip._udp`, `_sip._tcp`, `_sips._tcp`; `None` for WS/WSS.
    pub fn srv_prefix(self) -> Option<&'static str> {
        match self {
            Transport::Udp => Some("_sip._udp"),
            Transport::Tcp => Some("_sip._tcp"),
            Transport::Tls => Some("_sips._tcp"),
            Transport::Ws | Transport::Wss => None,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.param_name())
    }
}

/// An unknown transport name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTransport;

impl fmt::Display for UnknownTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown transport (expected udp, tcp, tls, ws or wss)")
    }
}

impl std::error::Error for UnknownTransport {}

impl FromStr for Transport {
    type Err = UnknownTransport;
    fn from_str(s: &str) -> Result<Transport, UnknownTransport> {
        Transport::from_name(s).ok_or(UnknownTransport)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in Transport::ALL {
            assert_eq!(Transport::from_name(t.param_name()), Some(t));
            assert_eq!(Transport::from_name(t.via_name()), Some(t));
        }
        assert_eq!(Transport::from_name("sctp"), None);
        assert!(!Transport::Udp.is_reliable() && Transport::Ws.is_reliable());
        assert_eq!(Transport::Tls.srv_prefix(), Some("_sips._tcp"));
    }
}
