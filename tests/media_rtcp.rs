//! RTCP (RFC 3550) packets and sessions, and the G.107 E-model: packet round trips, a real
//! capture, malformed input, receiver statistics (sequence wrap, SSRC change, duplicates,
//! restarts), the report schedule, LSR/DLSR and round-trip time, and a two-party call over a
//! simulated network (seeded loss, delay, jitter, reordering, duplicates) whose reports must
//! agree with what the simulation did to the packets.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use termphone::media::emodel::{
    evaluate, mos, mos_from_r, r_factor, CodecImpairment, EmodelInput, EmodelParams,
};
use termphone::media::rtcp::{
    build_compound, duration_to_compact, is_rtcp, parse_compound, CompoundIter, Goodbye, NtpTime,
    ReceiverReport, ReportBlock, RtcpErrorKind, RtcpPacket, SdesChunk, SdesItem, SenderReport,
};
use termphone::media::rtcp_session::{QualityInputs, RtcpConfig, RtcpEvent, RtcpSession};

// ---------------------------------------------------------------------------------------------
// packets

fn block(ssrc: u32, n: u32) -> ReportBlock {
    ReportBlock {
        ssrc,
        fraction_lost: (n * 7) as u8,
        cumulative_lost: n as i32 * 1000 - 5000,
        extended_highest_seq: 0x0003_0000 + n,
        jitter: 80 + n,
        last_sr: 0xabcd_0000 + n,
        delay_since_last_sr: 3 * 65536 + n,
    }
}

fn every_type() -> Vec<RtcpPacket> {
    vec![
        RtcpPacket::SenderReport(SenderReport {
            ssrc: 0x1111_1111,
            ntp: NtpTime(0xe8f0_1234_8000_0000),
            rtp_timestamp: 0xffff_ff00,
            packet_count: 250,
            octet_count: 40_000,
            reports: vec![block(2, 1), block(3, 2)],
            extension: vec![9, 9, 9, 9, 1, 2],
        }),
        RtcpPacket::ReceiverReport(ReceiverReport {
            ssrc: 0x2222_2222,
            reports: vec![block(1, 3)],
            extension: vec![],
        }),
        RtcpPacket::ReceiverReport(ReceiverReport::default()),
        RtcpPacket::SourceDescription(vec![
            SdesChunk::cname(0x1111_1111, "alice@192.0.2.1"),
            SdesChunk {
                ssrc: 7,
                items: vec![
                    SdesItem {
                        kind: 1,
                        value: b"x".to_vec(),
                    },
                    SdesItem {
                        kind: 6,
                        value: b"termphone".to_vec(),
                    },
                    SdesItem {
                        kind: 7,
                        value: vec![],
                    },
                ],
            },
            SdesChunk {
                ssrc: 8,
                items: vec![],
            },
        ]),
        RtcpPacket::Goodbye(Goodbye {
            sources: vec![0x1111_1111, 5],
            reason: Some(b"call ended".to_vec()),
        }),
        RtcpPacket::Goodbye(Goodbye {
            sources: vec![1],
            reason: None,
        }),
        RtcpPacket::Other {
            packet_type: 204, // APP
            count: 3,
            body: b"\0\0\0\x01NAMEdata".to_vec(),
        },
        RtcpPacket::Other {
            packet_type: 207, // XR
            count: 0,
            body: vec![0, 0, 0, 1, 4, 0, 0, 2, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1],
        },
    ]
}

#[test]
fn every_packet_type_round_trips_alone_and_in_a_compound() {
    for p in every_type() {
        let bytes = p.to_bytes();
        assert_eq!(bytes.len() % 4, 0, "{p:?}");
        assert_eq!(parse_compound(&bytes), Ok(vec![p.clone()]), "{p:?}");
        assert!(is_rtcp(&bytes));
    }
    let all = every_type();
    let bytes = build_compound(&all);
    assert_eq!(parse_compound(&bytes).unwrap(), all);
    let walked: Vec<_> = CompoundIter::new(&bytes).map(Result::unwrap).collect();
    assert_eq!(walked, all);
}

#[test]
fn sender_report_known_layout() {
    let sr = RtcpPacket::SenderReport(SenderReport {
        ssrc: 0x0102_0304,
        ntp: NtpTime(0x0a0b_0c0d_0e0f_1011),
        rtp_timestamp: 0x1213_1415,
        packet_count: 0x1617_1819,
        octet_count: 0x1a1b_1c1d,
        reports: vec![],
        extension: vec![],
    });
    let b = sr.to_bytes();
    assert_eq!(
        b,
        [
            0x80, 200, 0, 6, 1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12,
            0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d
        ]
    );
}

/// A compound packet captured from Firefox (the byte vector of pion/rtcp's packet test):
/// RR with one block, SDES CNAME, BYE, then PSFB PLI (206) and RTPFB RRR (205), which are
/// walked over as `Other`.
#[test]
fn parses_a_browser_capture_and_skips_feedback_packets() {
    let mut b = vec![
        0x81, 0xc9, 0x00, 0x07, 0x90, 0x2f, 0x9e, 0x2e, 0xbc, 0x5e, 0x9a, 0x40, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x46, 0xe1, 0x00, 0x00, 0x01, 0x11, 0x09, 0xf3, 0x64, 0x32, 0x00, 0x02,
        0x4a, 0x79, // RR
        0x81, 0xca, 0x00, 0x0c, 0x90, 0x2f, 0x9e, 0x2e, 0x01, 0x26,
    ];
    b.extend_from_slice(b"{9c00eb92-1afb-9d49-a47d-91f64eee69f5}");
    b.extend_from_slice(&[0, 0, 0, 0]); // end of items + padding
    b.extend_from_slice(&[0x81, 0xcb, 0x00, 0x01, 0x90, 0x2f, 0x9e, 0x2e]); // BYE
    b.extend_from_slice(&[0x81, 0xce, 0x00, 0x02, 0x90, 0x2f, 0x9e, 0x2e]); // PLI
    b.extend_from_slice(&[0x90, 0x2f, 0x9e, 0x2e]);
    b.extend_from_slice(&[0x85, 0xcd, 0x00, 0x02, 0x90, 0x2f, 0x9e, 0x2e]); // RRR
    b.extend_from_slice(&[0x90, 0x2f, 0x9e, 0x2e]);
    let pkts = parse_compound(&b).unwrap();
    assert_eq!(pkts.len(), 5);
    let RtcpPacket::ReceiverReport(rr) = &pkts[0] else {
        panic!("RR first: {pkts:?}")
    };
    assert_eq!(rr.ssrc, 0x902f_9e2e);
    assert_eq!(
        rr.reports,
        vec![ReportBlock {
            ssrc: 0xbc5e_9a40,
            fraction_lost: 0,
            cumulative_lost: 0,
            extended_highest_seq: 0x46e1,
            jitter: 273,
            last_sr: 0x09f3_6432,
            delay_since_last_sr: 150_137,
        }]
    );
    let RtcpPacket::SourceDescription(chunks) = &pkts[1] else {
        panic!("SDES second")
    };
    assert_eq!(
        chunks[0].cname_str(),
        Some("{9c00eb92-1afb-9d49-a47d-91f64eee69f5}")
    );
    assert_eq!(
        pkts[2],
        RtcpPacket::Goodbye(Goodbye {
            sources: vec![0x902f_9e2e],
            reason: None
        })
    );
    assert!(matches!(
        pkts[3],
        RtcpPacket::Other {
            packet_type: 206,
            count: 1,
            ..
        }
    ));
    assert!(matches!(
        pkts[4],
        RtcpPacket::Other {
            packet_type: 205,
            count: 5,
            ..
        }
    ));
    // printed again, the bytes are the same
    assert_eq!(build_compound(&pkts), b);
    // and a session fed it takes the CNAME and the BYE, ignoring the feedback packets
    let mut s = RtcpSession::new(RtcpConfig::new(0xbc5e_9a40, "me", 8000, 1), t0());
    let ev = s.handle_rtcp(t0(), &b).unwrap();
    assert!(ev.iter().any(|e| matches!(e, RtcpEvent::Cname { .. })));
    assert!(ev.iter().any(|e| matches!(e, RtcpEvent::Bye { .. })));
    assert!(ev.iter().any(|e| matches!(e, RtcpEvent::ReportAboutUs(_))));
    assert!(s.bye_received());
}

fn err_kind(b: &[u8]) -> (usize, RtcpErrorKind) {
    let e = parse_compound(b).unwrap_err();
    assert!(!e.to_string().is_empty());
    (e.offset, e.kind)
}

#[test]
fn malformed_packets_give_clear_errors() {
    let rr = RtcpPacket::ReceiverReport(ReceiverReport {
        ssrc: 1,
        reports: vec![block(2, 1)],
        extension: vec![],
    })
    .to_bytes();
    assert_eq!(err_kind(&[]), (0, RtcpErrorKind::Empty));
    assert_eq!(err_kind(&rr[..3]), (0, RtcpErrorKind::TooShort { len: 3 }));
    // a second packet cut inside its header
    let mut two = rr.clone();
    two.extend_from_slice(&[0x80, 201]);
    assert_eq!(err_kind(&two), (32, RtcpErrorKind::TooShort { len: 2 }));
    let mut v1 = rr.clone();
    v1[0] = 0x41;
    assert_eq!(err_kind(&v1), (0, RtcpErrorKind::BadVersion(1)));
    assert_eq!(
        err_kind(&rr[..28]),
        (
            0,
            RtcpErrorKind::LengthPastEnd {
                declared: 32,
                available: 28
            }
        )
    );
    // RC says 2 blocks, length has room for 1
    let mut rc2 = rr.clone();
    rc2[0] = 0x82;
    assert_eq!(
        err_kind(&rc2),
        (
            0,
            RtcpErrorKind::Truncated {
                packet: "RR",
                needed: 52,
                available: 28
            }
        )
    );
    // SR shorter than its sender info
    let short_sr = [0x80, 200, 0, 1, 0, 0, 0, 1];
    assert!(matches!(
        err_kind(&short_sr).1,
        RtcpErrorKind::Truncated { packet: "SR", .. }
    ));
    // padding: count 0, and count past the body
    let mut pad0 = rr.clone();
    pad0[0] |= 0x20;
    pad0[31] = 0;
    assert!(matches!(
        err_kind(&pad0).1,
        RtcpErrorKind::BadPadding { count: 0, .. }
    ));
    let mut pad_big = rr.clone();
    pad_big[0] |= 0x20;
    pad_big[31] = 200;
    assert!(matches!(
        err_kind(&pad_big).1,
        RtcpErrorKind::BadPadding { count: 200, .. }
    ));
    // SDES item longer than the packet, and a chunk without its null item
    let sdes_long = [0x81, 202, 0, 2, 0, 0, 0, 1, 1, 9, b'a', b'b'];
    assert_eq!(
        err_kind(&sdes_long).1,
        RtcpErrorKind::SdesPastEnd { chunk: 0 }
    );
    let sdes_open = [0x81, 202, 0, 2, 0, 0, 0, 1, 1, 2, b'a', b'b'];
    assert_eq!(
        err_kind(&sdes_open).1,
        RtcpErrorKind::SdesPastEnd { chunk: 0 }
    );
    // SDES count larger than the chunks present
    let sdes_count = [0x82, 202, 0, 2, 0, 0, 0, 1, 1, 1, b'a', 0];
    assert!(matches!(
        err_kind(&sdes_count).1,
        RtcpErrorKind::Truncated { packet: "SDES", .. }
    ));
    // BYE: sources past the end, reason past the end
    let bye_src = [0x82, 203, 0, 1, 0, 0, 0, 1];
    assert!(matches!(
        err_kind(&bye_src).1,
        RtcpErrorKind::Truncated { packet: "BYE", .. }
    ));
    let bye_reason = [0x81, 203, 0, 2, 0, 0, 0, 1, 9, b'x', 0, 0];
    assert!(matches!(
        err_kind(&bye_reason).1,
        RtcpErrorKind::Truncated { packet: "BYE", .. }
    ));
    // the walker stops at the first error
    let mut bad_tail = rr.clone();
    bad_tail.extend_from_slice(&v1);
    let items: Vec<_> = CompoundIter::new(&bad_tail).collect();
    assert_eq!(items.len(), 2);
    assert!(items[0].is_ok() && items[1].is_err());
}

#[test]
fn every_prefix_of_a_compound_parses_or_errs_without_panic() {
    let bytes = build_compound(&every_type());
    for len in 0..bytes.len() {
        let _ = parse_compound(&bytes[..len]);
        for flip in [0x20u8, 0x1f, 0x80] {
            let mut d = bytes[..len].to_vec();
            if let Some(x) = d.get_mut(len / 2) {
                *x ^= flip;
            }
            let _ = parse_compound(&d);
        }
    }
}

fn arb_block() -> impl Strategy<Value = ReportBlock> {
    (
        any::<u32>(),
        any::<u8>(),
        -0x80_0000i32..=0x7f_ffff,
        any::<(u32, u32, u32, u32)>(),
    )
        .prop_map(|(ssrc, f, lost, (h, j, lsr, dlsr))| ReportBlock {
            ssrc,
            fraction_lost: f,
            cumulative_lost: lost,
            extended_highest_seq: h,
            jitter: j,
            last_sr: lsr,
            delay_since_last_sr: dlsr,
        })
}

fn arb_packet() -> impl Strategy<Value = RtcpPacket> {
    let blocks = || prop::collection::vec(arb_block(), 0..=31);
    let ext = || prop::collection::vec(any::<u8>(), 0..12);
    prop_oneof![
        (any::<(u32, u64, u32, u32, u32)>(), blocks(), ext()).prop_map(
            |((ssrc, ntp, ts, pc, oc), reports, extension)| {
                RtcpPacket::SenderReport(SenderReport {
                    ssrc,
                    ntp: NtpTime(ntp),
                    rtp_timestamp: ts,
                    packet_count: pc,
                    octet_count: oc,
                    reports,
                    extension,
                })
            }
        ),
        (any::<u32>(), blocks(), ext()).prop_map(|(ssrc, reports, extension)| {
            RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc,
                reports,
                extension,
            })
        }),
        prop::collection::vec(
            (
                any::<u32>(),
                prop::collection::vec((1u8..=255, prop::collection::vec(any::<u8>(), 0..40)), 0..4)
            ),
            0..=31
        )
        .prop_map(|chunks| RtcpPacket::SourceDescription(
            chunks
                .into_iter()
                .map(|(ssrc, items)| SdesChunk {
                    ssrc,
                    items: items
                        .into_iter()
                        .map(|(kind, value)| SdesItem { kind, value })
                        .collect()
                })
                .collect()
        )),
        (
            prop::collection::vec(any::<u32>(), 0..=31),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..=255))
        )
            .prop_map(|(sources, reason)| RtcpPacket::Goodbye(Goodbye { sources, reason })),
        (
            204u8..=255,
            0u8..32,
            prop::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(packet_type, count, body)| RtcpPacket::Other {
                packet_type,
                count,
                body
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Arbitrary bytes: the parser and a session never panic; whatever parses prints and parses
    /// back to the same packets.
    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(pkts) = parse_compound(&data) {
            let again = build_compound(&pkts);
            prop_assert_eq!(parse_compound(&again), Ok(pkts));
        }
        let mut s = RtcpSession::new(RtcpConfig::new(1, "c", 8000, 2), t0());
        let _ = s.handle_rtcp(t0(), &data);
        let _ = s.handle_timeout(t0() + Duration::from_secs(10), wall0());
    }

    /// Bytes that look like RTCP (version 2, SR/RR/SDES/BYE types, plausible lengths).
    #[test]
    fn rtcp_shaped_bytes_never_panic(
        words in prop::collection::vec((0u8..32, 200u8..=204, 0u16..12, any::<[u8; 12]>()), 1..6),
        pad in any::<bool>(),
    ) {
        let mut data = Vec::new();
        for (count, pt, len, body) in words {
            data.push(0x80 | if pad { 0x20 } else { 0 } | count);
            data.push(pt);
            data.extend_from_slice(&len.to_be_bytes());
            data.extend_from_slice(&body);
        }
        if let Ok(pkts) = parse_compound(&data) {
            prop_assert_eq!(parse_compound(&build_compound(&pkts)), Ok(pkts));
        }
        let mut s = RtcpSession::new(RtcpConfig::new(1, "c", 8000, 2), t0());
        let _ = s.handle_rtcp(t0(), &data);
    }

    /// Generated packets survive build -> parse unchanged.
    #[test]
    fn generated_packets_round_trip(pkts in prop::collection::vec(arb_packet(), 1..5)) {
        let bytes = build_compound(&pkts);
        prop_assert_eq!(bytes.len() % 4, 0);
        prop_assert_eq!(parse_compound(&bytes), Ok(pkts));
    }
}

// ---------------------------------------------------------------------------------------------
// session: scripted

fn t0() -> Instant {
    use std::sync::OnceLock;
    static T0: OnceLock<Instant> = OnceLock::new();
    *T0.get_or_init(Instant::now)
}

fn wall0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const US: u32 = 0xaaaa_0001;
const PEER: u32 = 0xbbbb_0002;

fn session() -> RtcpSession {
    RtcpSession::new(RtcpConfig::new(US, "us@test", 8000, 42), t0())
}

/// Feed packet `i` of a stream of 20 ms packets (timestamps 160 apart, arrival on time).
fn feed(s: &mut RtcpSession, ssrc: u32, seq: u16, i: u32) -> bool {
    s.on_rtp_received(
        t0() + ms(20 * u64::from(i)),
        ssrc,
        seq,
        1000 + 160 * i,
        8000,
    )
}

/// Fire the timer until a report comes out; returns its packets and when.
fn next_report(s: &mut RtcpSession) -> (Instant, Vec<RtcpPacket>) {
    loop {
        let at = s.poll_timeout().expect("timer running");
        if let Some(bytes) = s.handle_timeout(at, wall0() + (at - t0())) {
            return (at, parse_compound(&bytes).expect("our report parses"));
        }
    }
}

fn blocks(pkts: &[RtcpPacket]) -> Vec<ReportBlock> {
    match &pkts[0] {
        RtcpPacket::SenderReport(sr) => sr.reports.clone(),
        RtcpPacket::ReceiverReport(rr) => rr.reports.clone(),
        other => panic!("report first, got {other:?}"),
    }
}

#[test]
fn sequence_wrap_at_65535_is_one_cycle_not_a_loss() {
    let mut s = session();
    let start = 65_500u16;
    for i in 0..200u32 {
        feed(&mut s, PEER, start.wrapping_add(i as u16), i);
    }
    let rx = s.reception().unwrap();
    // the first packet is the probation packet: the source counts from the second
    assert_eq!(rx.received, 199);
    assert_eq!(rx.expected, 199);
    assert_eq!(rx.cumulative_lost, 0);
    assert_eq!(
        rx.extended_highest_seq,
        65_536 + u32::from(start.wrapping_add(199))
    );
    assert_eq!(rx.jitter, 0.0);
    // reordered across the wrap: 65535 arrives after 0 and 1
    let mut s = session();
    for (i, seq) in [65_533u16, 65_534, 0, 1, 65_535, 2].into_iter().enumerate() {
        assert!(feed(&mut s, PEER, seq, i as u32) || i == 0);
    }
    let rx = s.reception().unwrap();
    assert_eq!(rx.extended_highest_seq, 65_536 + 2);
    assert_eq!(rx.expected, 5);
    assert_eq!(rx.received, 5);
    assert_eq!(rx.cumulative_lost, 0);
}

#[test]
fn duplicates_count_as_received_and_loss_can_go_negative() {
    let mut s = session();
    for (i, seq) in [10u16, 11, 12, 12, 12, 13].into_iter().enumerate() {
        feed(&mut s, PEER, seq, i as u32);
    }
    let rx = s.reception().unwrap();
    assert_eq!(rx.expected, 3); // 11..=13
    assert_eq!(rx.received, 5);
    assert_eq!(rx.cumulative_lost, -2);
    assert_eq!(rx.loss_pct(), 0.0);
    let (_, pkts) = next_report(&mut s);
    assert_eq!(blocks(&pkts)[0].cumulative_lost, -2);
    assert_eq!(blocks(&pkts)[0].fraction_lost, 0);
}

#[test]
fn a_new_ssrc_takes_over_once_valid_and_resets_the_statistics() {
    let mut s = session();
    for i in 0..50u32 {
        if i % 10 != 3 {
            feed(&mut s, PEER, 100 + i as u16, i);
        }
    }
    let old = s.reception().unwrap();
    assert_eq!((old.ssrc, old.cumulative_lost), (PEER, 5));
    // one stray packet of another SSRC changes nothing
    assert!(!feed(&mut s, 0x7777, 9000, 50));
    assert_eq!(s.reception().unwrap().ssrc, PEER);
    // the peer's old SSRC continues meanwhile
    assert!(feed(&mut s, PEER, 150, 51));
    // a new SSRC that sends in sequence replaces it after two packets
    assert!(!feed(&mut s, 0x7777, 40_000, 52));
    assert!(feed(&mut s, 0x7777, 40_001, 53));
    let new = s.reception().unwrap();
    assert_eq!(new.ssrc, 0x7777);
    assert_eq!((new.expected, new.received, new.cumulative_lost), (1, 1, 0));
    assert_eq!(new.jitter, 0.0);
    feed(&mut s, 0x7777, 40_003, 55);
    let (_, pkts) = next_report(&mut s);
    let b = blocks(&pkts);
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].ssrc, 0x7777);
    assert_eq!(b[0].cumulative_lost, 1);
    assert_eq!(b[0].extended_highest_seq, 40_003);
    assert_eq!(b[0].fraction_lost, 85, "1 of 3 lost: 256 / 3");
}

#[test]
fn a_sequence_restart_is_confirmed_by_two_packets() {
    let mut s = session();
    for i in 0..20u32 {
        feed(&mut s, PEER, 1000 + i as u16, i);
    }
    // a jump of 20000: the first packet is not counted, the second confirms the restart
    assert!(!feed(&mut s, PEER, 21_000, 20));
    assert_eq!(s.reception().unwrap().received, 19);
    assert!(feed(&mut s, PEER, 21_001, 21));
    let rx = s.reception().unwrap();
    assert_eq!((rx.expected, rx.received, rx.cumulative_lost), (1, 1, 0));
    assert_eq!(rx.extended_highest_seq, 21_001);
    // a misordered old packet within 100 is a late arrival, not a jump
    assert!(feed(&mut s, PEER, 21_001 - 50, 22));
}

#[test]
fn jitter_follows_rfc3550_a8() {
    // transit alternates by 4 ms: |D| = 32 timestamp units each packet after the first pair
    let mut s = session();
    let mut j = 0.0f64;
    for i in 0..40u32 {
        let extra = if i % 2 == 1 { 4 } else { 0 };
        let at = t0() + ms(20 * u64::from(i) + extra);
        s.on_rtp_received(at, PEER, i as u16, 160 * i, 8000);
        if i >= 2 {
            j += (32.0 - j) / 16.0;
        }
    }
    let rx = s.reception().unwrap();
    assert!((rx.jitter - j).abs() < 1e-9, "{} vs {j}", rx.jitter);
    assert!((rx.jitter_ms - j / 8.0).abs() < 1e-9);
    // telephone-event packets count for loss but not for jitter
    let before = s.reception().unwrap();
    assert!(s.on_rtp_received_untimed(t0() + ms(900), PEER, 40));
    let after = s.reception().unwrap();
    assert_eq!(after.received, before.received + 1);
    assert_eq!(after.jitter, before.jitter);
}

#[test]
fn sender_report_when_we_sent_receiver_report_otherwise() {
    let mut s = session();
    let (_, pkts) = next_report(&mut s);
    assert!(matches!(&pkts[0], RtcpPacket::ReceiverReport(rr) if rr.reports.is_empty()));
    let RtcpPacket::SourceDescription(c) = &pkts[1] else {
        panic!("SDES second")
    };
    assert_eq!(c[0].cname_str(), Some("us@test"));
    // send 100 packets; the next report is an SR with our counts and a timestamp on our
    // media clock at the report's instant
    let base = s.poll_timeout().unwrap() - ms(2000);
    for i in 0..100u32 {
        s.on_rtp_sent(base + ms(20 * u64::from(i)), 5000 + 160 * i, 160);
    }
    let last_sent = base + ms(20 * 99);
    let (at, pkts) = next_report(&mut s);
    let RtcpPacket::SenderReport(sr) = &pkts[0] else {
        panic!("SR expected: {pkts:?}")
    };
    assert_eq!((sr.packet_count, sr.octet_count), (100, 16_000));
    let ticks = ((at - last_sent).as_secs_f64() * 8000.0).round() as u32;
    assert_eq!(sr.rtp_timestamp, 5000 + 160 * 99 + ticks);
    assert_eq!(sr.ntp, NtpTime::from_system_time(wall0() + (at - t0())));
    // RFC 3550 §6.4: still an SR one interval after the last packet, then an RR
    let (_, pkts) = next_report(&mut s);
    assert!(matches!(pkts[0], RtcpPacket::SenderReport(_)));
    let (_, pkts) = next_report(&mut s);
    assert!(matches!(pkts[0], RtcpPacket::ReceiverReport(_)));
}

#[test]
fn lsr_dlsr_and_round_trip_time() {
    let mut s = session();
    for i in 0..10u32 {
        feed(&mut s, PEER, i as u16, i);
        s.on_rtp_sent(t0() + ms(20 * u64::from(i)), 160 * i, 160);
    }
    // the peer's SR arrives at 500 ms
    let peer_ntp = NtpTime(0x1234_5678_9abc_def0);
    let sr = RtcpPacket::SenderReport(SenderReport {
        ssrc: PEER,
        ntp: peer_ntp,
        rtp_timestamp: 0,
        packet_count: 10,
        octet_count: 1600,
        reports: vec![],
        extension: vec![],
    });
    let ev = s.handle_rtcp(t0() + ms(500), &sr.to_bytes()).unwrap();
    assert!(matches!(&ev[..], [RtcpEvent::SenderReport(info)] if info.packet_count == 10));
    let (at, pkts) = next_report(&mut s);
    let RtcpPacket::SenderReport(ours) = &pkts[0] else {
        panic!("SR expected")
    };
    let b = ours.reports[0];
    assert_eq!(b.ssrc, PEER);
    assert_eq!(b.last_sr, 0x5678_9abc);
    assert_eq!(
        b.delay_since_last_sr,
        duration_to_compact(at - (t0() + ms(500)))
    );
    // the peer answers 70 ms later after holding our SR for 30 ms: RTT = 40 ms
    let rr = RtcpPacket::ReceiverReport(ReceiverReport {
        ssrc: PEER,
        reports: vec![ReportBlock {
            ssrc: US,
            fraction_lost: 64,
            cumulative_lost: 3,
            extended_highest_seq: 9,
            jitter: 16,
            last_sr: ours.ntp.middle32(),
            delay_since_last_sr: duration_to_compact(ms(30)),
        }],
        extension: vec![],
    });
    let ev = s.handle_rtcp(at + ms(70), &rr.to_bytes()).unwrap();
    let [RtcpEvent::ReportAboutUs(rep)] = &ev[..] else {
        panic!("report about us: {ev:?}")
    };
    let rtt = rep.rtt.unwrap();
    assert!(rtt.abs_diff(ms(40)) < Duration::from_micros(31), "{rtt:?}");
    assert_eq!(s.rtt(), Some(rtt));
    assert_eq!(rep.fraction_lost_pct, 25.0);
    assert_eq!(rep.jitter_ms, 2.0);
    assert_eq!(rep.block.cumulative_lost, 3);
    // a block without LSR has no RTT of its own; the session keeps the last one
    let rr0 = RtcpPacket::ReceiverReport(ReceiverReport {
        ssrc: PEER,
        reports: vec![ReportBlock {
            ssrc: US,
            ..ReportBlock::default()
        }],
        extension: vec![],
    });
    let ev = s.handle_rtcp(at + ms(90), &rr0.to_bytes()).unwrap();
    assert!(matches!(&ev[..], [RtcpEvent::ReportAboutUs(r)] if r.rtt.is_none()));
    assert_eq!(s.rtt(), Some(rtt));
    // blocks about other sources are not about us
    let other = RtcpPacket::ReceiverReport(ReceiverReport {
        ssrc: PEER,
        reports: vec![ReportBlock {
            ssrc: 12345,
            ..ReportBlock::default()
        }],
        extension: vec![],
    });
    assert!(s
        .handle_rtcp(at + ms(95), &other.to_bytes())
        .unwrap()
        .is_empty());
}

#[test]
fn rtt_for_an_old_lsr_uses_the_wall_clock_anchor() {
    let mut s = session();
    s.on_rtp_sent(t0(), 0, 160);
    let (at, pkts) = next_report(&mut s);
    let RtcpPacket::SenderReport(first) = &pkts[0] else {
        panic!("SR expected")
    };
    // nine more SRs push the first out of the remembered ones
    for _ in 0..9 {
        let t = s.poll_timeout().unwrap();
        s.on_rtp_sent(t - ms(1), 0, 160);
        next_report(&mut s);
    }
    let later = s.poll_timeout().unwrap() - ms(100);
    let dlsr = later - at - ms(250);
    let rr = RtcpPacket::ReceiverReport(ReceiverReport {
        ssrc: PEER,
        reports: vec![ReportBlock {
            ssrc: US,
            last_sr: first.ntp.middle32(),
            delay_since_last_sr: duration_to_compact(dlsr),
            ..ReportBlock::default()
        }],
        extension: vec![],
    });
    s.handle_rtcp(later, &rr.to_bytes()).unwrap();
    let rtt = s.rtt().unwrap();
    assert!(rtt.abs_diff(ms(250)) < Duration::from_micros(50), "{rtt:?}");
}

#[test]
fn report_schedule_follows_rfc3550_with_reconsideration() {
    let mut s = session();
    let first = s.poll_timeout().unwrap() - t0();
    // first report: half the 5 s minimum, randomised 0.5..1.5 and divided by e - 3/2
    let (lo, hi) = (2.5 * 0.5 / 1.21828, 2.5 * 1.5 / 1.21828);
    assert!(
        (lo..=hi).contains(&first.as_secs_f64()),
        "first at {first:?}"
    );
    let mut last = t0();
    let mut gaps = Vec::new();
    for i in 0..400u32 {
        let (at, _) = next_report(&mut s);
        if i > 0 {
            gaps.push((at - last).as_secs_f64());
        }
        last = at;
    }
    let (lo, hi) = (5.0 * 0.5 / 1.21828, 5.0 * 1.5 / 1.21828);
    assert!(gaps.iter().all(|g| (lo - 1e-9..=hi + 1e-9).contains(g)));
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    // timer reconsideration lengthens the compensated draws back to about the 5 s minimum
    assert!((4.5..=5.5).contains(&mean), "mean interval {mean}");
    let min = gaps.iter().copied().fold(f64::MAX, f64::min);
    let max = gaps.iter().copied().fold(0.0, f64::max);
    assert!(max - min > 2.0, "randomised: {min}..{max}");
    // the same seed gives the same schedule; another seed another
    let a: Vec<_> = (0..5).map(|_| next_report(&mut session()).0).collect();
    assert!(a.windows(2).all(|w| w[0] == w[1]));
    let mut other = RtcpSession::new(RtcpConfig::new(US, "us@test", 8000, 43), t0());
    assert_ne!(other.poll_timeout(), session().poll_timeout());
    assert!(other.handle_timeout(t0(), wall0()).is_none());
}

#[test]
fn odd_configurations_neither_spin_nor_overflow() {
    for (min, bw) in [
        (Duration::ZERO, 0),
        (Duration::ZERO, u32::MAX),
        (Duration::MAX, 80_000),
        (Duration::from_secs(5), 0),
    ] {
        let mut cfg = RtcpConfig::new(US, "", 0, 3);
        cfg.min_interval = min;
        cfg.session_bandwidth = bw;
        let mut s = RtcpSession::new(cfg, t0());
        s.on_rtp_sent(t0(), 0, 160);
        feed(&mut s, PEER, 1, 0);
        feed(&mut s, PEER, 2, 1);
        let (at, pkts) = next_report(&mut s);
        assert!(
            at > t0() && at - t0() <= Duration::from_secs(86_400),
            "{at:?}"
        );
        assert!(matches!(pkts[0], RtcpPacket::SenderReport(_)));
        let q = s.call_quality(&QualityInputs {
            codec: CodecImpairment::G711_PLC,
            local_delay_ms: f64::NAN,
            discard_pct: f64::INFINITY,
            burst_ratio: 0.0,
        });
        assert!((1.0..=4.5).contains(&q.mos), "{q:?}");
    }
}

#[test]
fn bye_ends_the_schedule_and_carries_the_reason() {
    let mut s = session();
    s.on_rtp_sent(t0(), 0, 160);
    let bytes = s.bye(t0() + ms(100), wall0(), Some("hangup"));
    let pkts = parse_compound(&bytes).unwrap();
    assert_eq!(pkts.len(), 3);
    assert!(matches!(pkts[0], RtcpPacket::SenderReport(_)));
    assert_eq!(
        pkts[2],
        RtcpPacket::Goodbye(Goodbye {
            sources: vec![US],
            reason: Some(b"hangup".to_vec())
        })
    );
    assert_eq!(s.poll_timeout(), None);
    assert!(s.handle_timeout(t0() + ms(60_000), wall0()).is_none());
    // the peer's BYE is an event
    let mut peer = RtcpSession::new(RtcpConfig::new(PEER, "peer", 8000, 1), t0());
    let ev = peer.handle_rtcp(t0() + ms(150), &bytes).unwrap();
    assert!(ev.contains(&RtcpEvent::Bye {
        sources: vec![US],
        reason: Some("hangup".into())
    }));
    assert_eq!(peer.remote_cname(), Some("us@test"));
    assert!(peer.bye_received());
}

#[test]
fn call_quality_summary() {
    let mut s = session();
    for i in 0..101u32 {
        if i % 20 != 10 {
            feed(&mut s, PEER, i as u16, i);
        }
    }
    let q = s.call_quality(&QualityInputs {
        codec: CodecImpairment::G711_PLC,
        local_delay_ms: 60.0,
        discard_pct: 0.0,
        burst_ratio: 1.0,
    });
    // 100 expected (1..=100), 5 lost
    assert!((q.loss_pct - 5.0).abs() < 1e-9, "{q:?}");
    assert_eq!(q.rtt_ms, None);
    assert_eq!(q.one_way_delay_ms, 60.0);
    let want = r_factor(&EmodelInput {
        one_way_delay_ms: 60.0,
        loss_pct: 5.0,
        burst_ratio: 1.0,
        codec: CodecImpairment::G711_PLC,
    });
    assert!((q.r_factor - want).abs() < 1e-9);
    assert!((q.mos - mos_from_r(want)).abs() < 1e-12);
    assert!(q.mos > 3.5 && q.mos < 4.2, "{q:?}");
}

// ---------------------------------------------------------------------------------------------
// session: two parties over a simulated network

#[derive(Debug, Clone, Copy)]
struct LinkCfg {
    loss: f64,
    dup: f64,
    base_ms: f64,
    jitter_ms: f64,
}

/// What the receiving side really got, tracked independently of the code under test.
#[derive(Debug, Default, Clone)]
struct Truth {
    deliveries: u64,
    /// Index of the packet that validated the source (the second one delivered).
    base: Option<u64>,
    max: u64,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    jitter: f64,
    last: Option<(Instant, u64)>,
}

impl Truth {
    fn deliver(&mut self, at: Instant, index: u64) {
        self.deliveries += 1;
        if self.deliveries == 1 {
            return; // probation
        }
        if self.base.is_none() {
            self.base = Some(index);
            self.max = index;
        }
        self.max = self.max.max(index);
        self.received += 1;
        if let Some((prev_at, prev_i)) = self.last {
            let d = (at - prev_at).as_secs_f64() * 8000.0 - (index as f64 - prev_i as f64) * 160.0;
            self.jitter += (d.abs() - self.jitter) / 16.0;
        }
        self.last = Some((at, index));
    }

    fn expected(&self) -> u64 {
        self.base.map_or(0, |b| self.max - b + 1)
    }

    /// (fraction lost, cumulative lost, jitter) as the next report should say them.
    fn report(&mut self) -> (u8, i64, f64) {
        let expected = self.expected();
        let ei = expected - self.expected_prior;
        let ri = self.received - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let li = ei as i64 - ri as i64;
        let fraction = if ei == 0 || li <= 0 {
            0
        } else {
            ((li << 8) / ei as i64) as u8
        };
        (
            fraction,
            expected as i64 - self.received as i64,
            self.jitter,
        )
    }
}

enum Ev {
    SendRtp(usize),
    Timer(usize),
    Rtp {
        to: usize,
        index: u64,
        seq: u16,
        ts: u32,
    },
    Rtcp {
        to: usize,
        bytes: Vec<u8>,
        /// (fraction, cumulative, jitter) of the sender's reception at build time.
        truth: Option<(u8, i64, f64)>,
        /// RTP packets the sender had sent when it built this.
        sent: u64,
        /// The RTP timestamp its SR must carry: the last packet's plus the time since.
        sr_ts: u32,
        delay: Duration,
    },
}

struct Party {
    rtcp: RtcpSession,
    ssrc: u32,
    seq0: u16,
    ts0: u32,
    sent: u64,
    wall_offset: Duration,
    last_sent_at: Option<Instant>,
    /// What this party receives of the other's stream.
    truth: Truth,
}

struct Sim {
    rng: StdRng,
    now: Instant,
    queue: BTreeMap<(Instant, u64), Ev>,
    n: u64,
    links: [LinkCfg; 2],
    parties: [Party; 2],
    /// Per sender: NTP middle 32 bits of each SR -> its one-way delay (None: lost).
    sr_delay: [HashMap<u32, Option<Duration>>; 2],
    dropped: [Vec<u64>; 2],
    duplicated: [u64; 2],
    checks: Checks,
    sending: bool,
}

#[derive(Debug, Default)]
struct Checks {
    blocks: u64,
    rtts: u64,
    srs: u64,
    worst_rtt_error: Duration,
    report_times: [Vec<Instant>; 2],
}

impl Sim {
    fn new(seed: u64, links: [LinkCfg; 2]) -> Sim {
        let start = t0();
        let mk = |ssrc: u32, seq0: u16, ts0: u32, offset: u64, seed: u64| Party {
            rtcp: RtcpSession::new(
                RtcpConfig::new(ssrc, format!("{ssrc:x}@sim"), 8000, seed),
                start,
            ),
            ssrc,
            seq0,
            ts0,
            sent: 0,
            wall_offset: Duration::from_millis(offset),
            last_sent_at: None,
            truth: Truth::default(),
        };
        let mut sim = Sim {
            rng: StdRng::seed_from_u64(seed),
            now: start,
            queue: BTreeMap::new(),
            n: 0,
            links,
            // A's sequence numbers wrap early in the call
            parties: [
                mk(0xa1a1_a1a1, 65_000, u32::MAX - 50_000, 0, seed ^ 1),
                mk(0xb2b2_b2b2, 123, 77, 3_700, seed ^ 2),
            ],
            sr_delay: [HashMap::new(), HashMap::new()],
            dropped: [Vec::new(), Vec::new()],
            duplicated: [0, 0],
            checks: Checks::default(),
            sending: true,
        };
        sim.push(start, Ev::SendRtp(0));
        sim.push(start + ms(7), Ev::SendRtp(1));
        for p in 0..2 {
            let at = sim.parties[p].rtcp.poll_timeout().unwrap();
            sim.push(at, Ev::Timer(p));
        }
        sim
    }

    fn push(&mut self, at: Instant, ev: Ev) {
        self.n += 1;
        self.queue.insert((at, self.n), ev);
    }

    /// One-way delay on the link from `from`, or None when the network drops the packet.
    fn transit(&mut self, from: usize, clean: bool) -> Option<Duration> {
        let l = self.links[from];
        if !clean && self.rng.random::<f64>() < l.loss {
            return None;
        }
        let j = if clean {
            0.0
        } else {
            self.rng.random::<f64>() * l.jitter_ms
        };
        Some(Duration::from_secs_f64((l.base_ms + j) / 1000.0))
    }

    fn wall(&self, p: usize) -> SystemTime {
        wall0() + (self.now - t0()) + self.parties[p].wall_offset
    }

    fn run_until(&mut self, end: Instant) {
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > end {
                break;
            }
            let ((at, _), ev) = entry.remove_entry();
            self.now = at;
            self.step(ev);
        }
    }

    fn step(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::SendRtp(p) => {
                if !self.sending {
                    return;
                }
                let me = &mut self.parties[p];
                let index = me.sent;
                let seq = me.seq0.wrapping_add(index as u16);
                let ts = me.ts0.wrapping_add(160 * index as u32);
                me.sent += 1;
                me.last_sent_at = Some(now);
                me.rtcp.on_rtp_sent(now, ts, 160);
                let clean = index < 3; // the source validates on clean packets
                match self.transit(p, clean) {
                    None => self.dropped[p].push(index),
                    Some(d) => {
                        self.push(
                            now + d,
                            Ev::Rtp {
                                to: 1 - p,
                                index,
                                seq,
                                ts,
                            },
                        );
                        if !clean && self.rng.random::<f64>() < self.links[p].dup {
                            self.duplicated[p] += 1;
                            let d2 = self.transit(p, false).unwrap_or(d);
                            self.push(
                                now + d2,
                                Ev::Rtp {
                                    to: 1 - p,
                                    index,
                                    seq,
                                    ts,
                                },
                            );
                        }
                    }
                }
                self.push(now + ms(20), Ev::SendRtp(p));
            }
            Ev::Rtp { to, index, seq, ts } => {
                let from = self.parties[1 - to].ssrc;
                let me = &mut self.parties[to];
                me.rtcp.on_rtp_received(now, from, seq, ts, 8000);
                me.truth.deliver(now, index);
            }
            Ev::Timer(p) => {
                let wall = self.wall(p);
                let me = &mut self.parties[p];
                if let Some(bytes) = me.rtcp.handle_timeout(now, wall) {
                    self.checks.report_times[p].push(now);
                    let pkts = parse_compound(&bytes).unwrap();
                    let has_block = match &pkts[0] {
                        RtcpPacket::SenderReport(sr) => !sr.reports.is_empty(),
                        RtcpPacket::ReceiverReport(rr) => !rr.reports.is_empty(),
                        _ => false,
                    };
                    // the truth's interval counters advance only with a block, as RFC 3550's do
                    let truth = has_block.then(|| me.truth.report());
                    let sent = me.sent;
                    let sr_ts = match me.last_sent_at {
                        Some(last) if sent > 0 => {
                            let ticks = ((now - last).as_secs_f64() * 8000.0).round() as u32;
                            me.ts0
                                .wrapping_add(160 * (sent as u32 - 1))
                                .wrapping_add(ticks)
                        }
                        _ => 0,
                    };
                    let sr_mid = match &pkts[0] {
                        RtcpPacket::SenderReport(sr) => Some(sr.ntp.middle32()),
                        _ => None,
                    };
                    let delay = self.transit(p, false);
                    if let Some(mid) = sr_mid {
                        self.sr_delay[p].insert(mid, delay);
                    }
                    if let Some(d) = delay {
                        self.push(
                            now + d,
                            Ev::Rtcp {
                                to: 1 - p,
                                bytes,
                                truth,
                                sent,
                                sr_ts,
                                delay: d,
                            },
                        );
                    }
                }
                let next = self.parties[p].rtcp.poll_timeout().unwrap();
                self.push(next, Ev::Timer(p));
            }
            Ev::Rtcp {
                to,
                bytes,
                truth,
                sent,
                sr_ts,
                delay,
            } => {
                let from = 1 - to;
                let events = self.parties[to].rtcp.handle_rtcp(now, &bytes).unwrap();
                let pkts = parse_compound(&bytes).unwrap();
                for ev in events {
                    match ev {
                        RtcpEvent::ReportAboutUs(rep) => {
                            let (fraction, cumulative, jitter) =
                                truth.expect("a block only once the source is valid");
                            assert_eq!(rep.block.fraction_lost, fraction, "fraction lost");
                            assert_eq!(i64::from(rep.block.cumulative_lost), cumulative);
                            let j = f64::from(rep.block.jitter);
                            assert!((j - jitter.floor()).abs() <= 1.0, "jitter {j} vs {jitter}");
                            let sender = &self.parties[to];
                            let ext =
                                u64::from(rep.block.extended_highest_seq) - u64::from(sender.seq0);
                            assert!(ext < sender.sent, "highest seq {ext} was sent");
                            self.checks.blocks += 1;
                            if let Some(rtt) = rep.rtt {
                                let there = self.sr_delay[to][&rep.block.last_sr]
                                    .expect("the peer had that SR");
                                let want = there + delay;
                                let err = rtt.abs_diff(want);
                                assert!(err < Duration::from_micros(50), "rtt {rtt:?} vs {want:?}");
                                self.checks.worst_rtt_error = self.checks.worst_rtt_error.max(err);
                                self.checks.rtts += 1;
                            }
                        }
                        RtcpEvent::SenderReport(info) => {
                            assert_eq!(u64::from(info.packet_count), sent);
                            assert_eq!(u64::from(info.octet_count), 160 * sent);
                            let RtcpPacket::SenderReport(sr) = &pkts[0] else {
                                panic!("SR event from an SR")
                            };
                            // the SR's RTP timestamp continues the sender's media clock
                            assert_eq!(sr.rtp_timestamp, sr_ts, "SR RTP timestamp");
                            assert_eq!(info.ssrc, self.parties[from].ssrc);
                            self.checks.srs += 1;
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

fn two_party_call(seed: u64, links: [LinkCfg; 2]) {
    let mut sim = Sim::new(seed, links);
    let call = Duration::from_secs(120);
    sim.run_until(t0() + call);
    // stop sending, let the network drain, then one more report each way
    sim.sending = false;
    sim.run_until(t0() + call + Duration::from_secs(15));
    for p in 0..2 {
        let from = 1 - p;
        let rx = sim.parties[p].rtcp.reception().unwrap();
        let truth = &sim.parties[p].truth;
        assert_eq!(rx.received, truth.received, "party {p}");
        assert_eq!(rx.expected, truth.expected(), "party {p}");
        // every loss the network made between the base and the highest packet is counted,
        // less the duplicates it made
        let base = truth.base.unwrap();
        let dropped_in_range = sim.dropped[from]
            .iter()
            .filter(|&&i| i >= base && i <= truth.max)
            .count() as i64;
        assert_eq!(
            rx.cumulative_lost,
            dropped_in_range - sim.duplicated[from] as i64,
            "party {p}: cumulative loss against the network's drops"
        );
        let injected = links[from].loss * 100.0;
        let got = 100.0 * dropped_in_range as f64 / rx.expected as f64;
        assert!(
            (got - injected).abs() < 1.5,
            "loss {got}% vs injected {injected}%"
        );
        assert!((rx.jitter - truth.jitter).abs() < 1e-6, "jitter");
        // the A.8 estimate is of the order of the injected delay spread
        let spread_ts = links[from].jitter_ms * 8.0;
        assert!(
            rx.jitter > spread_ts / 6.0 && rx.jitter < spread_ts / 1.5,
            "jitter {} for a spread of {spread_ts}",
            rx.jitter
        );
        // RTT: both one-way base delays plus on average half of each jitter range
        let rtt = sim.parties[p].rtcp.rtt().unwrap().as_secs_f64() * 1000.0;
        let lo = links[0].base_ms + links[1].base_ms;
        let hi = lo + links[0].jitter_ms + links[1].jitter_ms;
        assert!((lo..=hi).contains(&rtt), "rtt {rtt} ms not in {lo}..{hi}");
        // report intervals
        let times = &sim.checks.report_times[p];
        assert!(times.len() >= 20, "{} reports", times.len());
        for w in times.windows(2) {
            let gap = (w[1] - w[0]).as_secs_f64();
            assert!((2.0..6.2).contains(&gap), "report gap {gap}");
        }
    }
    let c = &sim.checks;
    eprintln!(
        "seed {seed}: {} blocks, {} RTTs (worst error {:?}), {} SRs checked; A->B lost {} dup {}, \
         B->A lost {}; jitter at B {:.1}, at A {:.1} ts units; RTT {:?}",
        c.blocks,
        c.rtts,
        c.worst_rtt_error,
        c.srs,
        sim.parties[1].rtcp.reception().unwrap().cumulative_lost,
        sim.duplicated[0],
        sim.parties[0].rtcp.reception().unwrap().cumulative_lost,
        sim.parties[1].rtcp.reception().unwrap().jitter,
        sim.parties[0].rtcp.reception().unwrap().jitter,
        sim.parties[0].rtcp.rtt(),
    );
    assert!(c.blocks >= 30, "{c:?}");
    assert!(c.rtts >= 30, "{c:?}");
    assert!(c.srs >= 30, "{c:?}");
}

#[test]
fn two_parties_agree_with_the_simulated_network() {
    let links = [
        LinkCfg {
            loss: 0.05,
            dup: 0.01,
            base_ms: 30.0,
            jitter_ms: 40.0,
        },
        LinkCfg {
            loss: 0.02,
            dup: 0.0,
            base_ms: 55.0,
            jitter_ms: 15.0,
        },
    ];
    for seed in [1, 2, 3] {
        two_party_call(seed, links);
    }
}

#[test]
fn two_parties_on_a_clean_network_report_nothing_lost() {
    let clean = LinkCfg {
        loss: 0.0,
        dup: 0.0,
        base_ms: 20.0,
        jitter_ms: 0.0,
    };
    let mut sim = Sim::new(9, [clean, clean]);
    sim.run_until(t0() + Duration::from_secs(60));
    for p in 0..2 {
        let rx = sim.parties[p].rtcp.reception().unwrap();
        assert_eq!(rx.cumulative_lost, 0);
        assert_eq!(rx.fraction_lost, 0);
        assert!(rx.jitter < 1e-6);
        let rtt = sim.parties[p].rtcp.rtt().unwrap();
        assert!(rtt.abs_diff(ms(40)) < Duration::from_micros(31), "{rtt:?}");
        let q = sim.parties[p]
            .rtcp
            .call_quality(&QualityInputs::new(CodecImpairment::G711_PLC, 0.0));
        assert!((q.one_way_delay_ms - 20.0).abs() < 0.1);
        assert_eq!(q.remote_loss_pct, Some(0.0));
        assert!(q.mos > 4.35, "{q:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// E-model

fn call(delay: f64, loss: f64, codec: CodecImpairment) -> EmodelInput {
    EmodelInput {
        one_way_delay_ms: delay,
        loss_pct: loss,
        burst_ratio: 1.0,
        codec,
    }
}

#[test]
fn emodel_defaults_give_r_93_2_and_mos_4_41() {
    // G.107's default values give R = 93.2. An independent Go implementation of G.107
    // (06/2015), github.com/manucorporat/e-model, prints R = 93.206208 for these defaults.
    let r = evaluate(&EmodelParams::default()).r;
    assert!((r - 93.206208).abs() < 1e-5, "R {r}");
    let input = call(0.0, 0.0, CodecImpairment::G711_PLC);
    assert!((r_factor(&input) - 93.206208).abs() < 1e-5);
    let m = mos(&input);
    assert!((m - 4.41).abs() < 0.005, "MOS {m}");
}

#[test]
fn mos_from_r_matches_the_g107_annex_b_curve() {
    // The R -> MOS pairs quoted for the G.109 category boundaries (G.109 Table 1 / G.107
    // Annex B curve).
    for (r, want) in [
        (90.0, 4.34),
        (80.0, 4.03),
        (70.0, 3.60),
        (60.0, 3.10),
        (50.0, 2.58),
    ] {
        let m = mos_from_r(r);
        // the table gives two decimals (4.024 is quoted as 4.03)
        assert!((m - want).abs() < 0.0065, "R {r}: MOS {m}, want {want}");
    }
    assert_eq!(mos_from_r(0.0), 1.0);
    assert_eq!(mos_from_r(120.0), 4.5);
}

#[test]
fn effective_equipment_impairment_from_g113_values() {
    // Ie,eff = Ie + (95 - Ie) * Ppl / (Ppl / BurstR + Bpl), G.107 (7-29)
    let no_plc = evaluate(&call(0.0, 1.0, CodecImpairment::G711_NO_PLC).params());
    assert!((no_plc.ie_eff - 95.0 / 5.3).abs() < 1e-9);
    assert!((no_plc.r - (93.206208 - 95.0 / 5.3)).abs() < 1e-4);
    let plc = evaluate(&call(0.0, 1.0, CodecImpairment::G711_PLC).params());
    assert!((plc.ie_eff - 95.0 / 26.1).abs() < 1e-9);
    // bursty loss hurts more than random loss at the same rate
    let mut bursty = call(0.0, 5.0, CodecImpairment::G711_PLC);
    let random = r_factor(&bursty);
    bursty.burst_ratio = 2.0;
    assert!(r_factor(&bursty) < random);
}

#[test]
fn r_falls_monotonically_with_loss_and_delay() {
    for codec in [
        CodecImpairment::G711_PLC,
        CodecImpairment::G711_NO_PLC,
        CodecImpairment::OPUS_ESTIMATE,
    ] {
        let mut prev = f64::MAX;
        for loss in (0..=40).map(|l| l as f64 * 0.5) {
            let r = r_factor(&call(50.0, loss, codec));
            assert!(
                r < prev || (r == 0.0 && prev == 0.0),
                "loss {loss}: {r} !< {prev}"
            );
            prev = r;
        }
    }
    let mut prev = f64::MAX;
    for d in (1..=100).map(|d| d as f64 * 8.0) {
        let r = r_factor(&call(d, 1.0, CodecImpairment::G711_PLC));
        assert!(r < prev, "delay {d}: {r} !< {prev}");
        prev = r;
    }
}

#[test]
fn delay_impairment_matches_published_approximation() {
    // Cole & Rosenbluth, "Voice over IP performance monitoring" (ACM SIGCOMM CCR 31(2), 2001)
    // fit G.107's delay impairment for echo-cancelled connections as
    // Id ≈ 0.024 d + 0.11 (d - 177.3) H(d - 177.3). Ours (T = Ta = d, Tr = 2d, TELR 65 dB)
    // must follow it within 3.5 R points up to 400 ms.
    let base = r_factor(&call(0.0, 0.0, CodecImpairment::G711_PLC));
    for d in [50.0, 100.0, 150.0, 200.0, 250.0, 300.0, 350.0, 400.0] {
        let ours = base - r_factor(&call(d, 0.0, CodecImpairment::G711_PLC));
        let fit = 0.024 * d + if d > 177.3 { 0.11 * (d - 177.3) } else { 0.0 };
        assert!((ours - fit).abs() < 3.5, "{d} ms: Id {ours} vs fit {fit}");
    }
    // Idd is zero up to 100 ms (G.107: Ta <= mT)
    let p = call(100.0, 0.0, CodecImpairment::G711_PLC).params();
    assert_eq!(evaluate(&p).idd, 0.0);
    assert!(evaluate(&call(150.0, 0.0, CodecImpairment::G711_PLC).params()).idd > 0.0);
}

#[test]
fn emodel_inputs_are_sanitised() {
    for bad in [f64::NAN, f64::INFINITY, -5.0] {
        let r = r_factor(&EmodelInput {
            one_way_delay_ms: bad,
            loss_pct: bad,
            burst_ratio: bad,
            codec: CodecImpairment { ie: 0.0, bpl: bad },
        });
        assert!((0.0..=100.0).contains(&r), "{r}");
    }
    assert!(r_factor(&call(0.0, 100.0, CodecImpairment::G711_NO_PLC)) < 20.0);
}
