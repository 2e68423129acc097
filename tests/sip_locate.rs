//! RFC 3263 server location, sans-IO (`termphone::sip::locate`): which lookups a URI needs,
//! RFC 2782 SRV ordering (priorities, weights, weight 0, target "."), and the targets that
//! come out. Every address is loopback.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use termphone::sip::locate::{
    order_srv, HostPort, LocateUriError, Locator, Plan, SrvRecord, Target,
};
use termphone::sip::msg::Uri;
use termphone::sip::transport::Transport;

fn uri(s: &str) -> Uri {
    s.parse().expect("valid URI")
}

fn locator(s: &str, configured: Option<Transport>) -> Locator {
    Locator::new(&uri(s), configured).expect("locatable URI")
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn hp(host: &str, port: u16) -> HostPort {
    HostPort {
        host: host.to_string(),
        port,
    }
}

fn done(plan: Plan) -> Vec<(Transport, SocketAddr, String)> {
    match plan {
        Plan::Done(targets) => targets
            .into_iter()
            .map(|t| (t.transport, t.addr, t.server_name))
            .collect(),
        other => panic!("expected no DNS, got {other:?}"),
    }
}

#[test]
fn an_ipv4_literal_needs_no_dns_and_takes_the_transport_default_port() {
    let cases = [
        ("sip:127.0.0.1", None, Transport::Udp, "127.0.0.1:5060"),
        (
            "sip:127.0.0.1",
            Some(Transport::Tcp),
            Transport::Tcp,
            "127.0.0.1:5060",
        ),
        (
            "sip:127.0.0.1;transport=tls",
            None,
            Transport::Tls,
            "127.0.0.1:5061",
        ),
        (
            "sip:127.0.0.1:5070",
            Some(Transport::Tls),
            Transport::Tls,
            "127.0.0.1:5070",
        ),
        (
            "sip:127.0.0.2;transport=ws",
            None,
            Transport::Ws,
            "127.0.0.2:80",
        ),
        (
            "sip:127.0.0.2",
            Some(Transport::Wss),
            Transport::Wss,
            "127.0.0.2:443",
        ),
        ("sips:127.0.0.3", None, Transport::Tls, "127.0.0.3:5061"),
    ];
    for (u, configured, transport, a) in cases {
        let loc = locator(u, configured);
        assert_eq!(loc.srv_name(), None, "{u}");
        let ip = addr(a).ip().to_string();
        assert_eq!(done(loc.plan()), vec![(transport, addr(a), ip)], "{u}");
    }
}

#[test]
fn an_ipv6_literal_needs_no_dns_and_its_server_name_has_no_brackets() {
    assert_eq!(
        done(locator("sip:[::1]", None).plan()),
        vec![(Transport::Udp, addr("[::1]:5060"), "::1".to_string())]
    );
    assert_eq!(
        done(locator("sips:[::1]:5071", None).plan()),
        vec![(Transport::Tls, addr("[::1]:5071"), "::1".to_string())]
    );
}

#[test]
fn a_domain_without_a_port_asks_for_the_transports_srv_name() {
    let cases = [
        ("sip:pbx.test", None, "_sip._udp.pbx.test", Transport::Udp),
        (
            "sip:pbx.test",
            Some(Transport::Udp),
            "_sip._udp.pbx.test",
            Transport::Udp,
        ),
        (
            "sip:pbx.test",
            Some(Transport::Tcp),
            "_sip._tcp.pbx.test",
            Transport::Tcp,
        ),
        (
            "sip:pbx.test",
            Some(Transport::Tls),
            "_sips._tcp.pbx.test",
            Transport::Tls,
        ),
        (
            "sip:pbx.test;transport=tcp",
            None,
            "_sip._tcp.pbx.test",
            Transport::Tcp,
        ),
        (
            "sip:pbx.test;transport=TLS",
            None,
            "_sips._tcp.pbx.test",
            Transport::Tls,
        ),
        // the URI's parameter wins over the configured transport
        (
            "sip:pbx.test;transport=tcp",
            Some(Transport::Udp),
            "_sip._tcp.pbx.test",
            Transport::Tcp,
        ),
    ];
    for (u, configured, name, transport) in cases {
        let loc = locator(u, configured);
        assert_eq!(loc.plan(), Plan::Srv(name.to_string()), "{u}");
        assert_eq!(loc.srv_name().as_deref(), Some(name), "{u}");
        assert_eq!(loc.transport(), transport, "{u}");
        assert_eq!(loc.server_name(), "pbx.test");
    }
}

#[test]
fn sips_means_tls() {
    for (u, configured, transport) in [
        ("sips:pbx.test", None, Transport::Tls),
        ("sips:pbx.test;transport=tcp", None, Transport::Tls),
        ("sips:pbx.test", Some(Transport::Tcp), Transport::Tls),
        ("sips:pbx.test", Some(Transport::Ws), Transport::Wss),
        ("sips:pbx.test;transport=ws", None, Transport::Wss),
    ] {
        assert_eq!(locator(u, configured).transport(), transport, "{u}");
    }
    assert_eq!(
        locator("sips:pbx.test", None).plan(),
        Plan::Srv("_sips._tcp.pbx.test".into())
    );
    // sips over UDP cannot be: an error that says why
    for (u, configured) in [
        ("sips:pbx.test;transport=udp", None),
        ("sips:pbx.test", Some(Transport::Udp)),
    ] {
        let err = Locator::new(&uri(u), configured).unwrap_err();
        assert!(
            matches!(
                err,
                LocateUriError::SipsWithoutTls {
                    transport: Transport::Udp,
                    ..
                }
            ),
            "{u}: {err:?}"
        );
        assert!(err.to_string().contains("needs TLS"), "{err}");
    }
}

#[test]
fn an_explicit_port_skips_srv() {
    let loc = locator("sip:pbx.test:5080", None);
    assert_eq!(loc.srv_name(), None);
    assert_eq!(loc.plan(), Plan::Addresses(vec![hp("pbx.test", 5080)]));
    let loc = locator("sip:pbx.test:5081;transport=tcp", Some(Transport::Udp));
    assert_eq!(loc.transport(), Transport::Tcp);
    assert_eq!(loc.plan(), Plan::Addresses(vec![hp("pbx.test", 5081)]));
}

#[test]
fn websocket_skips_srv_and_uses_ports_80_and_443() {
    assert_eq!(
        locator("sip:pbx.test;transport=ws", None).plan(),
        Plan::Addresses(vec![hp("pbx.test", 80)])
    );
    assert_eq!(
        locator("sip:pbx.test", Some(Transport::Wss)).plan(),
        Plan::Addresses(vec![hp("pbx.test", 443)])
    );
    assert_eq!(
        locator("sip:pbx.test:8443;transport=wss", None).plan(),
        Plan::Addresses(vec![hp("pbx.test", 8443)])
    );
}

#[test]
fn uris_without_a_server_are_refused() {
    let err = Locator::new(&uri("tel:+15551234"), None).unwrap_err();
    assert!(matches!(err, LocateUriError::NotSip { .. }), "{err:?}");
    let err = Locator::new(&uri("sip:pbx.test;transport=sctp"), None).unwrap_err();
    assert!(
        matches!(&err, LocateUriError::UnknownTransport { name, .. } if name == "sctp"),
        "{err:?}"
    );
    assert!(err.to_string().contains("transport=sctp"), "{err}");
}

#[test]
fn no_srv_records_fall_back_to_the_host_with_the_default_port() {
    let mut rng = StdRng::seed_from_u64(1);
    for (u, port) in [
        ("sip:pbx.test", 5060),
        ("sip:pbx.test;transport=tcp", 5060),
        ("sips:pbx.test", 5061),
    ] {
        assert_eq!(
            locator(u, None).after_srv(&[], &mut rng).unwrap(),
            vec![hp("pbx.test", port)],
            "{u}"
        );
    }
}

#[test]
fn a_lone_dot_target_means_not_available_and_dots_among_others_are_dropped() {
    let mut rng = StdRng::seed_from_u64(2);
    let loc = locator("sip:pbx.test", None);
    let err = loc
        .after_srv(&[SrvRecord::new(0, 0, 0, ".")], &mut rng)
        .unwrap_err();
    assert_eq!(err.srv_name, "_sip._udp.pbx.test");
    assert!(err.to_string().contains("not available"), "{err}");
    let hosts = loc
        .after_srv(
            &[
                SrvRecord::new(0, 0, 0, "."),
                SrvRecord::new(10, 1, 5070, "host1.pbx.test."),
            ],
            &mut rng,
        )
        .unwrap();
    assert_eq!(hosts, vec![hp("host1.pbx.test.", 5070)]);
}

#[test]
fn srv_targets_in_priority_order_give_their_addresses_in_order() {
    let mut rng = StdRng::seed_from_u64(3);
    let table: HashMap<&str, Vec<IpAddr>> = [
        (
            "host1.pbx.test.",
            vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
        ),
        ("host2.pbx.test.", vec!["127.0.0.2".parse().unwrap()]),
        ("host3.pbx.test.", vec![]),
    ]
    .into_iter()
    .collect();
    let srv = [
        SrvRecord::new(20, 5, 5072, "host2.pbx.test."),
        SrvRecord::new(10, 60, 5070, "host1.pbx.test."),
        SrvRecord::new(15, 1, 5071, "host3.pbx.test."),
        // the same address again, later: kept once
        SrvRecord::new(30, 1, 5070, "host1.pbx.test."),
    ];
    let loc = locator("sip:pbx.test", Some(Transport::Tcp));
    let targets = loc
        .locate_with(
            &srv,
            |h| table.get(h).cloned().unwrap_or_default(),
            &mut rng,
        )
        .unwrap();
    let want = |a: &str| Target {
        transport: Transport::Tcp,
        addr: addr(a),
        server_name: "pbx.test".into(),
    };
    assert_eq!(
        targets,
        vec![
            want("127.0.0.1:5070"),
            want("[::1]:5070"),
            want("127.0.0.2:5072"),
        ]
    );
}

/// How often each target comes first over `n` orderings.
fn first_counts(records: &[SrvRecord], n: usize, seed: u64) -> HashMap<String, usize> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut counts = HashMap::new();
    for _ in 0..n {
        let order = order_srv(records, &mut rng);
        *counts.entry(order[0].target.clone()).or_insert(0) += 1;
    }
    counts
}

fn share(counts: &HashMap<String, usize>, target: &str, n: usize) -> f64 {
    counts.get(target).copied().unwrap_or(0) as f64 / n as f64
}

#[test]
fn weights_share_the_first_place_in_proportion() {
    // RFC 2782's selection: a random number in 0..=sum, the first record whose running sum
    // reaches it. With weights 10, 20, 70 (sum 100) in that order the first record wins
    // 11/101 of the time, the others 20/101 and 70/101.
    let records = [
        SrvRecord::new(1, 10, 5060, "a."),
        SrvRecord::new(1, 20, 5060, "b."),
        SrvRecord::new(1, 70, 5060, "c."),
    ];
    let n = 20_000;
    let counts = first_counts(&records, n, 7);
    for (t, expected) in [
        ("a.", 11.0 / 101.0),
        ("b.", 20.0 / 101.0),
        ("c.", 70.0 / 101.0),
    ] {
        let got = share(&counts, t, n);
        assert!(
            (got - expected).abs() < 0.02,
            "{t}: first {got:.3} of the time, expected {expected:.3} ({counts:?})"
        );
    }
}

#[test]
fn weight_zero_is_rarely_first_beside_weighted_records() {
    let records = [
        SrvRecord::new(1, 100, 5060, "heavy."),
        SrvRecord::new(1, 0, 5060, "zero."),
    ];
    let n = 20_000;
    let counts = first_counts(&records, n, 8);
    let zero = share(&counts, "zero.", n);
    // 1/101 ≈ 0.0099: rare, but not never
    assert!(zero > 0.002 && zero < 0.025, "zero first {zero:.4}");
}

#[test]
fn all_zero_weights_are_a_fair_shuffle() {
    let records = [
        SrvRecord::new(5, 0, 5060, "x."),
        SrvRecord::new(5, 0, 5060, "y."),
        SrvRecord::new(5, 0, 5060, "z."),
    ];
    let n = 15_000;
    let counts = first_counts(&records, n, 9);
    for t in ["x.", "y.", "z."] {
        let got = share(&counts, t, n);
        assert!((got - 1.0 / 3.0).abs() < 0.03, "{t} first {got:.3}");
    }
}

#[test]
fn the_same_seed_gives_the_same_order() {
    let records: Vec<SrvRecord> = (0..8)
        .map(|i| SrvRecord::new(i % 3, 10 * i, 5060 + i, &format!("h{i}.")))
        .collect();
    let a = order_srv(&records, &mut StdRng::seed_from_u64(42));
    let b = order_srv(&records, &mut StdRng::seed_from_u64(42));
    assert_eq!(a, b);
}

fn records() -> impl Strategy<Value = Vec<SrvRecord>> {
    proptest::collection::vec((0u16..4, 0u16..50, any::<bool>()), 0..12).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (prio, weight, dot))| {
                let target = if dot && i % 4 == 0 {
                    ".".to_string()
                } else {
                    format!("h{i}.pbx.test.")
                };
                SrvRecord::new(prio, weight, 5060 + i as u16, &target)
            })
            .collect()
    })
}

proptest! {
    /// Any answer: the order is a permutation of the usable records, priorities never go
    /// down, and the "." targets are gone.
    #[test]
    fn order_keeps_every_usable_record_by_priority(recs in records(), seed in any::<u64>()) {
        let order = order_srv(&recs, &mut StdRng::seed_from_u64(seed));
        prop_assert!(order.windows(2).all(|w| w[0].priority <= w[1].priority));
        prop_assert!(order.iter().all(|r| !r.is_unavailable()));
        let mut got = order.clone();
        let mut want: Vec<SrvRecord> = recs.iter().filter(|r| !r.is_unavailable()).cloned().collect();
        got.sort_by(|a, b| a.target.cmp(&b.target));
        want.sort_by(|a, b| a.target.cmp(&b.target));
        prop_assert_eq!(got, want);
    }

    /// `after_srv` on any answer: the fallback when empty, "not available" only when every
    /// record is ".", otherwise the ordered records' hosts and ports.
    #[test]
    fn after_srv_is_fallback_unavailable_or_the_records(recs in records(), seed in any::<u64>()) {
        let loc = locator("sip:pbx.test", None);
        let got = loc.after_srv(&recs, &mut StdRng::seed_from_u64(seed));
        if recs.is_empty() {
            prop_assert_eq!(got.unwrap(), vec![hp("pbx.test", 5060)]);
        } else if recs.iter().all(SrvRecord::is_unavailable) {
            prop_assert!(got.is_err());
        } else {
            let hosts = got.unwrap();
            let order = order_srv(&recs, &mut StdRng::seed_from_u64(seed));
            let want: Vec<HostPort> = order.into_iter().map(|r| hp(&r.target, r.port)).collect();
            prop_assert_eq!(hosts, want);
        }
    }
}
