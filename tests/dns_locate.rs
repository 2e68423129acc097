//! RFC 3263 server location against a real DNS server: `termphone::engine::dns::locate`
//! through a private dnsmasq on 127.0.0.1 (tests/support/dnsmasq.rs) with SRV and A records,
//! and against a server that never answers. Every address is in 127.0.0.0/8.

mod support;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use support::dnsmasq::Dnsmasq;
use termphone::engine::dns::{locate, LocateError, Resolver};
use termphone::sip::locate::Target;
use termphone::sip::msg::Uri;
use termphone::sip::transport::Transport;

const ZONE: &str = "pbx.test";

/// The zone every test asks about.
const RECORDS: &[&str] = &[
    // UDP: two servers, priority 10 before 20
    "--srv-host=_sip._udp.pbx.test,host2.pbx.test,5072,20,10",
    "--srv-host=_sip._udp.pbx.test,host1.pbx.test,5070,10,60",
    // TCP and TLS: one server each
    "--srv-host=_sip._tcp.pbx.test,host3.pbx.test,5080,10,1",
    "--srv-host=_sips._tcp.pbx.test,host1.pbx.test,5081,10,1",
    "--host-record=host1.pbx.test,127.0.0.1",
    "--host-record=host2.pbx.test,127.0.0.2",
    "--host-record=host3.pbx.test,127.0.0.3",
    // the domain itself has an address too (explicit port, WebSocket)
    "--host-record=pbx.test,127.0.0.5",
    // only an A record: SRV falls back to port 5060
    "--host-record=aonly.pbx.test,127.0.0.4",
    // SIP over UDP decidedly not offered: target "."
    "--srv-host=_sip._udp.closed.pbx.test",
    // an SRV target without an address
    "--srv-host=_sip._udp.broken.pbx.test,missing.pbx.test,5060,1,1",
];

fn uri(s: &str) -> Uri {
    s.parse().expect("valid URI")
}

fn target(transport: Transport, addr: &str, server_name: &str) -> Target {
    Target {
        transport,
        addr: addr.parse().expect("socket address"),
        server_name: server_name.to_string(),
    }
}

async fn located(
    dns: &Dnsmasq,
    resolver: &Resolver,
    u: &str,
    transport: Option<Transport>,
) -> Result<Vec<Target>, LocateError> {
    let started = Instant::now();
    let result = locate(&uri(u), transport, resolver).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{u}: took {:?}\n{}",
        started.elapsed(),
        dns.log()
    );
    result
}

#[tokio::test]
async fn srv_records_give_targets_in_priority_order() {
    let dns = Dnsmasq::start(ZONE, RECORDS);
    let resolver = Resolver::with_server(dns.addr());
    let udp = located(&dns, &resolver, "sip:pbx.test", None).await;
    assert_eq!(
        udp.expect("udp located"),
        vec![
            target(Transport::Udp, "127.0.0.1:5070", "pbx.test"),
            target(Transport::Udp, "127.0.0.2:5072", "pbx.test"),
        ],
        "{}",
        dns.log()
    );
    let tcp = located(&dns, &resolver, "sip:pbx.test", Some(Transport::Tcp)).await;
    assert_eq!(
        tcp.expect("tcp located"),
        vec![target(Transport::Tcp, "127.0.0.3:5080", "pbx.test")]
    );
    let tls = located(&dns, &resolver, "sips:pbx.test", None).await;
    assert_eq!(
        tls.expect("tls located"),
        vec![target(Transport::Tls, "127.0.0.1:5081", "pbx.test")]
    );
    let by_param = located(&dns, &resolver, "sip:pbx.test;transport=tcp", None).await;
    assert_eq!(
        by_param.expect("transport=tcp located"),
        vec![target(Transport::Tcp, "127.0.0.3:5080", "pbx.test")]
    );
}

#[tokio::test]
async fn a_name_with_only_an_a_record_falls_back_to_the_default_port() {
    let dns = Dnsmasq::start(ZONE, RECORDS);
    let resolver = Resolver::with_server(dns.addr());
    assert_eq!(
        located(&dns, &resolver, "sip:aonly.pbx.test", None)
            .await
            .expect("located"),
        vec![target(Transport::Udp, "127.0.0.4:5060", "aonly.pbx.test")],
        "{}",
        dns.log()
    );
    assert_eq!(
        located(&dns, &resolver, "sip:aonly.pbx.test", Some(Transport::Tls))
            .await
            .expect("located"),
        vec![target(Transport::Tls, "127.0.0.4:5061", "aonly.pbx.test")]
    );
}

#[tokio::test]
async fn an_explicit_port_or_websocket_skips_srv() {
    let dns = Dnsmasq::start(ZONE, RECORDS);
    let resolver = Resolver::with_server(dns.addr());
    assert_eq!(
        located(&dns, &resolver, "sip:pbx.test:5099", None)
            .await
            .expect("located"),
        vec![target(Transport::Udp, "127.0.0.5:5099", "pbx.test")]
    );
    assert_eq!(
        located(&dns, &resolver, "sip:pbx.test;transport=ws", None)
            .await
            .expect("located"),
        vec![target(Transport::Ws, "127.0.0.5:80", "pbx.test")]
    );
    assert_eq!(
        located(&dns, &resolver, "sip:pbx.test", Some(Transport::Wss))
            .await
            .expect("located"),
        vec![target(Transport::Wss, "127.0.0.5:443", "pbx.test")]
    );
    let log = dns.log();
    assert!(log.contains("query[A] pbx.test"), "no A query:\n{log}");
    assert!(!log.contains("query[SRV]"), "SRV asked for:\n{log}");
    assert!(
        !log.contains("_sip._udp.pbx.test") || !log.contains("query[SRV] _sip._udp.pbx.test"),
        "an explicit port asked for SRV:\n{log}"
    );
}

#[tokio::test]
async fn an_ip_literal_asks_no_dns() {
    // the server is never started: nothing to ask
    let resolver = Resolver::with_server("127.0.0.1:9".parse().unwrap());
    assert_eq!(
        locate(&uri("sip:127.0.0.7:5062"), None, &resolver)
            .await
            .expect("located"),
        vec![target(Transport::Udp, "127.0.0.7:5062", "127.0.0.7")]
    );
}

#[tokio::test]
async fn failures_name_the_host_and_what_failed() {
    let dns = Dnsmasq::start(ZONE, RECORDS);
    let resolver = Resolver::with_server(dns.addr());

    let err = located(&dns, &resolver, "sip:nowhere.pbx.test", None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, LocateError::NoRecords { .. }),
        "{err:?}\n{}",
        dns.log()
    );
    assert_eq!(
        err.to_string(),
        "no DNS records for nowhere.pbx.test (SRV _sip._udp and A/AAAA)"
    );

    let err = located(&dns, &resolver, "sip:nowhere.pbx.test:5060", None)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no DNS records for nowhere.pbx.test (A/AAAA)"
    );

    let err = located(&dns, &resolver, "sip:closed.pbx.test", None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, LocateError::Unavailable { .. }),
        "{err:?}\n{}",
        dns.log()
    );
    assert!(
        err.to_string()
            .starts_with("closed.pbx.test does not offer SIP over udp"),
        "{err}"
    );

    let err = located(&dns, &resolver, "sip:broken.pbx.test", None)
        .await
        .unwrap_err();
    assert!(matches!(err, LocateError::NoAddresses { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.pbx.test:5060"), "{err}");

    let err = located(&dns, &resolver, "tel:+15551234", None)
        .await
        .unwrap_err();
    assert!(matches!(err, LocateError::Uri(_)), "{err:?}");
}

#[tokio::test]
async fn a_silent_server_times_out_within_the_deadline() {
    // a "DNS server" that takes queries on UDP and connections on TCP but never answers
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let addr: SocketAddr = udp.local_addr().expect("addr");
    let _tcp = TcpListener::bind(addr).ok();
    let resolver = Resolver::with_server(addr).with_deadline(Duration::from_secs(3));
    let started = Instant::now();
    let err = locate(&uri("sip:pbx.test"), None, &resolver)
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert!(matches!(err, LocateError::Timeout { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("DNS lookup of ") && msg.contains("timed out"),
        "{msg}"
    );
    assert!(msg.contains("pbx.test"), "{msg}");
    eprintln!("{msg}");
}

#[tokio::test]
async fn the_system_resolver_reads_its_configuration() {
    // builds from /etc/resolv.conf; an IP literal then needs no query
    let resolver = Resolver::system().expect("system DNS configuration");
    assert_eq!(
        locate(&uri("sips:127.0.0.8"), None, &resolver)
            .await
            .expect("located"),
        vec![target(Transport::Tls, "127.0.0.8:5061", "127.0.0.8")]
    );
}
