//! Locating a SIP server (RFC 3263 §4), sans-IO: which DNS names to look up, in what order,
//! and how the answers become an ordered list of [`Target`]s to try. The engine
//! (`crate::engine::dns`) does the lookups; this module only decides. It takes an RNG for the
//! weighted SRV choice (RFC 2782) and reads no clock.
//!
//! The steps, for a registrar or outbound proxy URI and the account's configured transport:
//!
//! 1. **Transport** (§4.1): the URI's `transport=` parameter, else the configured transport,
//!    else TLS for `sips:` and UDP for `sip:`. A `sips:` URI upgrades TCP to TLS and WS to WSS
//!    and refuses UDP. NAPTR records are not looked up (RFC 3263 makes them optional for a
//!    client that knows its transport); with no transport chosen, UDP is used, not a probe of
//!    SRV records for every transport.
//! 2. **Names** (§4.2), see [`Plan`]:
//!    - an IP literal needs no DNS; the port is the URI's, else the transport's default;
//!    - an explicit port, or a WebSocket transport (RFC 7118 has no SRV), means A/AAAA
//!      lookups of the host with that port (default 80 for WS, 443 for WSS);
//!    - otherwise an SRV lookup of `_sip._udp.host`, `_sip._tcp.host` or `_sips._tcp.host`
//!      ([`Transport::srv_prefix`]); its records ordered by [`order_srv`] name the hosts and
//!      ports to look up. With no SRV records, A/AAAA of the host with the default port.
//!      A single SRV record whose target is `.` says the service is not offered there.
//! 3. **Targets**: the addresses of each host, in the SRV order, with the transport and the
//!    server name ([`Target::server_name`]): always the URI's host, which is what a TLS
//!    certificate is checked against (RFC 5922 §4) and what a WebSocket Host header names.
//!
//! Not supported: NAPTR, the `maddr` URI parameter.

use core::net::{IpAddr, SocketAddr};
use std::fmt;

use rand::seq::SliceRandom;
use rand::Rng;

use super::msg::{Host, Scheme, Uri};
use super::transport::Transport;

/// One place to send requests to: the result of locating a server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The transport to use.
    pub transport: Transport,
    /// The address and port to connect or send to.
    pub addr: SocketAddr,
    /// The URI's host (a domain, or an IP address without brackets): the name for TLS SNI and
    /// certificate checks and for a WebSocket Host header.
    pub server_name: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({})", self.transport, self.addr, self.server_name)
    }
}

/// One SRV record (RFC 2782) as answered by DNS.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SrvRecord {
    /// Lower is tried first.
    pub priority: u16,
    /// Relative share among records of the same priority; 0 = only if nothing else.
    pub weight: u16,
    /// The port on the target.
    pub port: u16,
    /// The target host name as in DNS (`host1.example.com.`); `.` = service not available.
    pub target: String,
}

impl SrvRecord {
    /// A record.
    pub fn new(priority: u16, weight: u16, port: u16, target: &str) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port,
            target: target.to_string(),
        }
    }

    /// The target is the root name `.`: "decidedly not available at this domain".
    pub fn is_unavailable(&self) -> bool {
        self.target.is_empty() || self.target == "."
    }
}

/// A host name to look up (A and AAAA) and the port to use with its addresses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// The name, as written in the URI or the SRV record (which ends with `.`).
    pub host: String,
    /// The port for every address of this host.
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host.trim_end_matches('.'), self.port)
    }
}

/// What to look up first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// No DNS needed (IP literal): the targets.
    Done(Vec<Target>),
    /// Look up SRV records of this name (`_sip._udp.example.com`), then call
    /// [`Locator::after_srv`] with the records (none if the name has none).
    Srv(String),
    /// Look up A/AAAA of these hosts, then call [`Locator::targets`] with the addresses.
    Addresses(Vec<HostPort>),
}

/// A URI that names no server this module can locate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocateUriError {
    /// `tel:` and other schemes without a host.
    NotSip {
        /// The URI as written.
        uri: String,
    },
    /// A `transport=` parameter termphone does not speak.
    UnknownTransport {
        /// The URI as written.
        uri: String,
        /// The parameter's value.
        name: String,
    },
    /// `sips:` with a transport that cannot carry TLS (UDP).
    SipsWithoutTls {
        /// The URI as written.
        uri: String,
        /// The transport asked for.
        transport: Transport,
    },
}

impl fmt::Display for LocateUriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocateUriError::NotSip { uri } => {
                write!(f, "{uri} is not a sip: or sips: URI, so it names no server")
            }
            LocateUriError::UnknownTransport { uri, name } => write!(
                f,
                "{uri}: unknown transport={name} (termphone speaks udp, tcp, tls, ws and wss)"
            ),
            LocateUriError::SipsWithoutTls { uri, transport } => write!(
                f,
                "{uri}: a sips: URI needs TLS, which transport {transport} cannot carry"
            ),
        }
    }
}

impl std::error::Error for LocateUriError {}

/// The SRV records say the service is not offered (a lone record with target `.`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUnavailable {
    /// The SRV name that was looked up.
    pub srv_name: String,
}

impl fmt::Display for ServiceUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the SRV record {} says the service is not available (target \".\")",
            self.srv_name
        )
    }
}

impl std::error::Error for ServiceUnavailable {}

/// The location of one server URI: see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locator {
    transport: Transport,
    host: Host,
    port: Option<u16>,
}

impl Locator {
    /// Decide the transport for `uri` (its `transport=` parameter, else `configured`, else
    /// the scheme's default; `sips:` upgrades TCP and WS to their TLS forms).
    pub fn new(uri: &Uri, configured: Option<Transport>) -> Result<Locator, LocateUriError> {
        let sips = match uri.scheme {
            Scheme::Sip => false,
            Scheme::Sips => true,
            Scheme::Tel => {
                return Err(LocateUriError::NotSip {
                    uri: uri.to_string(),
                })
            }
        };
        if matches!(&uri.host, Host::Domain(d) if d.is_empty()) {
            return Err(LocateUriError::NotSip {
                uri: uri.to_string(),
            });
        }
        let from_uri = match uri.params.get_value("transport") {
            Some(name) => Some(Transport::from_name(name).ok_or_else(|| {
                LocateUriError::UnknownTransport {
                    uri: uri.to_string(),
                    name: name.to_string(),
                }
            })?),
            None => None,
        };
        let mut transport =
            from_uri
                .or(configured)
                .unwrap_or(if sips { Transport::Tls } else { Transport::Udp });
        if sips {
            transport = match transport {
                Transport::Tcp | Transport::Tls => Transport::Tls,
                Transport::Ws | Transport::Wss => Transport::Wss,
                Transport::Udp => {
                    return Err(LocateUriError::SipsWithoutTls {
                        uri: uri.to_string(),
                        transport,
                    })
                }
            };
        }
        Ok(Locator {
            transport,
            host: uri.host.clone(),
            port: uri.port,
        })
    }

    /// The transport every target will use.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The URI's host as a name: a domain (without a trailing dot) or an IP address without
    /// brackets. This is [`Target::server_name`].
    pub fn server_name(&self) -> String {
        match &self.host {
            Host::Domain(d) => d.trim_end_matches('.').to_string(),
            Host::V4(a) => a.to_string(),
            Host::V6(a) => a.to_string(),
        }
    }

    /// The SRV name this location looks up (`_sips._tcp.example.com`), if it looks one up.
    pub fn srv_name(&self) -> Option<String> {
        match (&self.host, self.port) {
            (Host::Domain(d), None) => self
                .transport
                .srv_prefix()
                .map(|prefix| format!("{prefix}.{d}")),
            _ => None,
        }
    }

    /// The first step.
    pub fn plan(&self) -> Plan {
        if let Some(ip) = self.host.ip() {
            let port = self.port.unwrap_or(self.transport.default_port());
            return Plan::Done(self.targets([SocketAddr::new(ip, port)]));
        }
        match self.srv_name() {
            Some(name) => Plan::Srv(name),
            None => Plan::Addresses(vec![self.fallback()]),
        }
    }

    /// The host and port to look up when SRV gives nothing (or is not used).
    fn fallback(&self) -> HostPort {
        HostPort {
            host: self.server_name(),
            port: self.port.unwrap_or(self.transport.default_port()),
        }
    }

    /// The hosts to look up after the SRV lookup of [`Plan::Srv`]: the records in RFC 2782
    /// order ([`order_srv`]), or, when there are none, the URI's host with the transport's
    /// default port. Fails when the records say the service is not available.
    pub fn after_srv<R: Rng + ?Sized>(
        &self,
        records: &[SrvRecord],
        rng: &mut R,
    ) -> Result<Vec<HostPort>, ServiceUnavailable> {
        if records.is_empty() {
            return Ok(vec![self.fallback()]);
        }
        let ordered = order_srv(records, rng);
        if ordered.is_empty() {
            return Err(ServiceUnavailable {
                srv_name: self.srv_name().unwrap_or_default(),
            });
        }
        Ok(ordered
            .into_iter()
            .map(|r| HostPort {
                host: r.target,
                port: r.port,
            })
            .collect())
    }

    /// The targets for these addresses, in the order given (the hosts' order, each host's
    /// addresses in DNS order); repeated addresses are kept once, at their first place.
    pub fn targets<I: IntoIterator<Item = SocketAddr>>(&self, addrs: I) -> Vec<Target> {
        let server_name = self.server_name();
        let mut out: Vec<Target> = Vec::new();
        for addr in addrs {
            if out.iter().all(|t| t.addr != addr) {
                out.push(Target {
                    transport: self.transport,
                    addr,
                    server_name: server_name.clone(),
                });
            }
        }
        out
    }

    /// The whole location with answers at hand: `srv` answers the SRV lookup (if the plan
    /// makes one), `lookup` answers A/AAAA for a host name. A synchronous driver of the steps
    /// above, for tests and for callers with a local table.
    pub fn locate_with<R, F>(
        &self,
        srv: &[SrvRecord],
        mut lookup: F,
        rng: &mut R,
    ) -> Result<Vec<Target>, ServiceUnavailable>
    where
        R: Rng + ?Sized,
        F: FnMut(&str) -> Vec<IpAddr>,
    {
        let hosts = match self.plan() {
            Plan::Done(targets) => return Ok(targets),
            Plan::Srv(_) => self.after_srv(srv, rng)?,
            Plan::Addresses(hosts) => hosts,
        };
        let addrs: Vec<SocketAddr> = hosts
            .iter()
            .flat_map(|h| {
                lookup(&h.host)
                    .into_iter()
                    .map(move |ip| SocketAddr::new(ip, h.port))
            })
            .collect();
        Ok(self.targets(addrs))
    }
}

/// Order SRV records as RFC 2782 says: lowest priority first; within a priority, a weighted
/// random order (each pick with probability proportional to weight, weight-0 records placed
/// first so that they are picked only rarely while others remain, and in random order among
/// themselves). Records whose target is `.` are left out.
pub fn order_srv<R: Rng + ?Sized>(records: &[SrvRecord], rng: &mut R) -> Vec<SrvRecord> {
    let mut usable: Vec<&SrvRecord> = records.iter().filter(|r| !r.is_unavailable()).collect();
    usable.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(usable.len());
    for group in usable.chunk_by(|a, b| a.priority == b.priority) {
        let (mut left, rest): (Vec<&SrvRecord>, Vec<&SrvRecord>) =
            group.iter().partition(|r| r.weight == 0);
        left.shuffle(rng);
        left.extend(rest);
        while !left.is_empty() {
            let total: u32 = left.iter().map(|r| u32::from(r.weight)).sum();
            let pick = rng.random_range(0..=total);
            let mut running = 0u32;
            let i = left
                .iter()
                .position(|r| {
                    running += u32::from(r.weight);
                    running >= pick
                })
                .unwrap_or(0);
            out.push(left.remove(i).clone());
        }
    }
    out
}
