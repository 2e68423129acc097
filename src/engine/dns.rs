//! DNS for locating SIP servers (RFC 3263): the lookups that [`crate::sip::locate`] plans,
//! done with hickory-resolver on the engine's tokio runtime.
//!
//! A [`Resolver`] reads the system configuration (`/etc/resolv.conf`, and `/etc/hosts` for
//! A/AAAA) or asks one given name server (`[general] dns_server`, tests). Every lookup has a
//! bounded time ([`QUERY_TIMEOUT`] per try, [`LOCATE_DEADLINE`] for a whole [`locate`]), so a
//! silent DNS server makes an error, never a hang. Errors name the host and what failed, for
//! the user.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{ResolveError, TokioResolver};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::sip::locate::{HostPort, LocateUriError, Locator, Plan, SrvRecord, Target};
use crate::sip::msg::Uri;
use crate::sip::transport::Transport;

/// How long one DNS query waits for an answer before it is tried again (once).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// The most one [`locate`] takes, all its lookups together.
pub const LOCATE_DEADLINE: Duration = Duration::from_secs(6);

/// A DNS resolver for [`locate`]. Cheap to share by reference; it caches answers by TTL.
pub struct Resolver {
    inner: TokioResolver,
    deadline: Duration,
    source: String,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("source", &self.source)
            .field("deadline", &self.deadline)
            .finish()
    }
}

fn options() -> ResolverOpts {
    let mut opts = ResolverOpts::default();
    opts.timeout = QUERY_TIMEOUT;
    opts.attempts = 1;
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    opts
}

impl Resolver {
    /// The system's resolver configuration (`/etc/resolv.conf` on Unix), with `/etc/hosts`
    /// consulted for addresses.
    pub fn system() -> Result<Resolver, LocateError> {
        let mut builder =
            TokioResolver::builder_tokio().map_err(|e| LocateError::SystemConfig(e.to_string()))?;
        let system = builder.options_mut().clone();
        let mut opts = options();
        opts.ndots = system.ndots;
        *builder.options_mut() = opts;
        Ok(Resolver {
            inner: builder.build(),
            deadline: LOCATE_DEADLINE,
            source: "the system DNS configuration".into(),
        })
    }

    /// Ask only the name server at `server` (UDP, and TCP for long answers); `/etc/hosts` is
    /// not read, so every answer comes from that server.
    pub fn with_server(server: SocketAddr) -> Resolver {
        let group = NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true);
        let config = ResolverConfig::from_parts(None, Vec::new(), group);
        let mut opts = options();
        opts.use_hosts_file = ResolveHosts::Never;
        let inner = TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
            .with_options(opts)
            .build();
        Resolver {
            inner,
            deadline: LOCATE_DEADLINE,
            source: format!("DNS server {server}"),
        }
    }

    /// [`Resolver::with_server`] when a server is configured, else [`Resolver::system`].
    pub fn from_config(server: Option<SocketAddr>) -> Result<Resolver, LocateError> {
        match server {
            Some(addr) => Ok(Resolver::with_server(addr)),
            None => Resolver::system(),
        }
    }

    /// Bound a whole [`locate`] by `deadline` instead of [`LOCATE_DEADLINE`].
    pub fn with_deadline(mut self, deadline: Duration) -> Resolver {
        self.deadline = deadline;
        self
    }
}

/// Why a server could not be located. The messages are for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocateError {
    /// The URI names no server (tel:, sips: over UDP, unknown transport).
    #[error("{0}")]
    Uri(#[from] LocateUriError),
    /// The system resolver configuration could not be read.
    #[error("cannot read the system DNS configuration (/etc/resolv.conf): {0}")]
    SystemConfig(String),
    /// Neither SRV nor A/AAAA records exist for the host.
    #[error("no DNS records for {host} ({looked_up})")]
    NoRecords {
        /// The URI's host.
        host: String,
        /// What was looked up, e.g. `SRV _sip._udp and A/AAAA`.
        looked_up: String,
    },
    /// SRV records name hosts, but none of them has an address.
    #[error("the SRV records {srv} name {hosts}, but none of them has an A/AAAA record")]
    NoAddresses {
        /// The SRV name.
        srv: String,
        /// The hosts, `host:port`, comma-separated.
        hosts: String,
    },
    /// The SRV record says the service is not offered (target ".").
    #[error("{host} does not offer SIP over {transport}: its SRV record {srv} has target \".\"")]
    Unavailable {
        /// The URI's host.
        host: String,
        /// The transport asked for.
        transport: Transport,
        /// The SRV name.
        srv: String,
    },
    /// A lookup got no answer in time.
    #[error("DNS lookup of {name} timed out (no answer from {server} within {secs} s)")]
    Timeout {
        /// The name (or names) being looked up.
        name: String,
        /// Where the lookups went (a server, or the system configuration).
        server: String,
        /// The time allowed.
        secs: u64,
    },
    /// Another DNS failure (server failure, refused, unreachable, bad name).
    #[error("DNS lookup of {name} failed: {reason}")]
    Failed {
        /// The name looked up.
        name: String,
        /// What the resolver said.
        reason: String,
    },
}

/// Locate the server of `uri` (a registrar or outbound proxy) for the account's configured
/// `transport`: the targets to try, in order (RFC 3263 §4; see [`crate::sip::locate`]). Takes
/// at most the resolver's deadline ([`LOCATE_DEADLINE`] unless changed).
pub async fn locate(
    uri: &Uri,
    transport: Option<Transport>,
    resolver: &Resolver,
) -> Result<Vec<Target>, LocateError> {
    let locator = Locator::new(uri, transport)?;
    let host = locator.server_name();
    match tokio::time::timeout(resolver.deadline, run(&locator, resolver)).await {
        Ok(result) => result,
        Err(_) => Err(LocateError::Timeout {
            name: host,
            server: resolver.source.clone(),
            secs: resolver.deadline.as_secs(),
        }),
    }
}

/// What one lookup came to.
enum Answer<T> {
    Records(T),
    /// NXDOMAIN or no records of the type.
    Nothing,
}

fn lookup_error(name: &str, resolver: &Resolver, e: &ResolveError) -> LocateError {
    let name = name.trim_end_matches('.').to_string();
    let timed_out = e
        .proto()
        .is_some_and(|p| matches!(p.kind(), ProtoErrorKind::Timeout));
    if timed_out {
        LocateError::Timeout {
            name,
            server: resolver.source.clone(),
            secs: QUERY_TIMEOUT.as_secs(),
        }
    } else {
        LocateError::Failed {
            name,
            reason: e.to_string(),
        }
    }
}

fn is_nothing(e: &ResolveError) -> bool {
    e.is_no_records_found() || e.is_nx_domain()
}

async fn srv(resolver: &Resolver, name: &str) -> Result<Answer<Vec<SrvRecord>>, LocateError> {
    match resolver.inner.srv_lookup(name).await {
        Ok(lookup) => Ok(Answer::Records(
            lookup
                .iter()
                .map(|r| SrvRecord {
                    priority: r.priority(),
                    weight: r.weight(),
                    port: r.port(),
                    target: r.target().to_ascii(),
                })
                .collect(),
        )),
        Err(e) if is_nothing(&e) => Ok(Answer::Nothing),
        Err(e) => Err(lookup_error(name, resolver, &e)),
    }
}

/// A and AAAA of `host`, IPv4 first (each family in DNS order).
async fn addresses(resolver: &Resolver, host: &str) -> Result<Answer<Vec<IpAddr>>, LocateError> {
    match resolver.inner.lookup_ip(host).await {
        Ok(lookup) => {
            let mut ips: Vec<IpAddr> = lookup.iter().collect();
            ips.sort_by_key(|ip| ip.is_ipv6());
            if ips.is_empty() {
                Ok(Answer::Nothing)
            } else {
                Ok(Answer::Records(ips))
            }
        }
        Err(e) if is_nothing(&e) => Ok(Answer::Nothing),
        Err(e) => Err(lookup_error(host, resolver, &e)),
    }
}

async fn run(locator: &Locator, resolver: &Resolver) -> Result<Vec<Target>, LocateError> {
    let host = locator.server_name();
    let (hosts, srv_name, srv_found) = match locator.plan() {
        Plan::Done(targets) => return Ok(targets),
        Plan::Addresses(hosts) => (hosts, None, false),
        Plan::Srv(name) => {
            let records = match srv(resolver, &name).await? {
                Answer::Records(r) => r,
                Answer::Nothing => Vec::new(),
            };
            let mut rng = StdRng::from_os_rng();
            let hosts =
                locator
                    .after_srv(&records, &mut rng)
                    .map_err(|_| LocateError::Unavailable {
                        host: host.clone(),
                        transport: locator.transport(),
                        srv: name.clone(),
                    })?;
            (hosts, Some(name), !records.is_empty())
        }
    };
    let mut addrs = Vec::new();
    let mut first_error = None;
    for hp in &hosts {
        match addresses(resolver, &hp.host).await {
            Ok(Answer::Records(ips)) => {
                addrs.extend(ips.into_iter().map(|ip| SocketAddr::new(ip, hp.port)));
            }
            Ok(Answer::Nothing) => {}
            // one SRV target failing leaves the others to try
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if !addrs.is_empty() {
        return Ok(locator.targets(addrs));
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    Err(match srv_name {
        Some(srv) if srv_found => LocateError::NoAddresses {
            srv,
            hosts: hosts
                .iter()
                .map(HostPort::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        },
        Some(srv) => LocateError::NoRecords {
            looked_up: format!(
                "SRV {} and A/AAAA",
                srv.strip_suffix(&format!(".{host}")).unwrap_or(&srv)
            ),
            host,
        },
        None => LocateError::NoRecords {
            host,
            looked_up: "A/AAAA".into(),
        },
    })
}
