//! Table-driven jitter buffer traces (baresip test/jbuf.c style): packets arrive at given
//! times, playout pops every 20 ms (at 5, 25, 45, ... ms), and the played sequence is checked.

use std::time::{Duration, Instant};

use termphone::media::jitter::{JitterBuffer, JitterConfig, JitterStats, Playout};
use termphone::media::RtpPacket;

/// Timestamps start just below the 32-bit wrap so every trace crosses it.
const TS_BASE: u32 = u32::MAX - 400;

struct Case {
    name: &'static str,
    /// (arrival ms, sequence number); timestamps follow from the distance to `first_seq`.
    arrivals: &'static [(u64, u16)],
    first_seq: u16,
    /// Expected playout, one token per 20 ms tick: S = silence, C = conceal, n = frame seq n.
    expect: &'static str,
    /// (duplicates, late, lost, concealed, resets)
    counters: (u64, u64, u64, u64, u64),
}

const CASES: &[Case] = &[
    Case {
        name: "in order",
        arrivals: &[(0, 0), (20, 1), (40, 2), (60, 3), (80, 4)],
        first_seq: 0,
        expect: "S S 0 1 2 3 4",
        counters: (0, 0, 0, 0, 0),
    },
    Case {
        name: "jitter within the target delay",
        arrivals: &[(0, 0), (35, 1), (41, 2), (79, 3), (81, 4), (100, 5)],
        first_seq: 0,
        expect: "S S 0 1 2 3 4 5",
        counters: (0, 0, 0, 0, 0),
    },
    Case {
        name: "reorder",
        arrivals: &[(0, 0), (20, 2), (25, 1), (40, 4), (41, 3), (60, 5)],
        first_seq: 0,
        expect: "S S 0 1 2 3 4 5",
        counters: (0, 0, 0, 0, 0),
    },
    Case {
        name: "reorder of the first packets",
        arrivals: &[(0, 1), (10, 0), (20, 2)],
        first_seq: 0,
        expect: "S S 0 1 2",
        counters: (0, 0, 0, 0, 0),
    },
    Case {
        name: "duplicates buffered and already played",
        arrivals: &[(0, 0), (20, 1), (21, 1), (40, 2), (41, 0), (70, 1), (80, 3)],
        first_seq: 0,
        expect: "S S 0 1 2 3",
        counters: (3, 0, 0, 0, 0),
    },
    Case {
        name: "loss is concealed",
        arrivals: &[(0, 0), (20, 1), (60, 3), (80, 4)],
        first_seq: 0,
        expect: "S S 0 1 C 3 4",
        counters: (0, 0, 1, 1, 0),
    },
    Case {
        name: "burst loss",
        arrivals: &[(0, 0), (20, 1), (100, 5), (120, 6)],
        first_seq: 0,
        expect: "S S 0 1 C C C 5 6",
        counters: (0, 0, 3, 3, 0),
    },
    Case {
        name: "sequence wrap at 65535",
        arrivals: &[(0, 65534), (20, 0), (21, 65535), (40, 1), (60, 2)],
        first_seq: 65534,
        expect: "S S 65534 65535 0 1 2",
        counters: (0, 0, 0, 0, 0),
    },
    Case {
        name: "loss across the wrap",
        arrivals: &[(0, 65534), (40, 0), (60, 1)],
        first_seq: 65534,
        expect: "S S 65534 C 0 1",
        counters: (0, 0, 1, 1, 0),
    },
    Case {
        name: "late packet before the next frame",
        arrivals: &[(0, 0), (20, 1), (40, 3), (60, 4), (90, 2)],
        first_seq: 0,
        expect: "S S 0 1 C 3 4",
        counters: (0, 1, 0, 1, 0),
    },
    Case {
        name: "late packet after the next frame",
        arrivals: &[(0, 0), (20, 1), (40, 3), (60, 4), (120, 2)],
        first_seq: 0,
        expect: "S S 0 1 C 3 4",
        counters: (0, 1, 0, 1, 0),
    },
    Case {
        name: "long gap: conceal, then silence until the stream resumes on its timeline",
        arrivals: &[(0, 0), (20, 1), (400, 20), (420, 21)],
        first_seq: 0,
        expect: "S S 0 1 C C C C C S S S S S S S S S S S S S 20 21",
        counters: (0, 0, 18, 5, 0),
    },
    Case {
        name: "stream stops: idle after one second",
        arrivals: &[(0, 0)],
        first_seq: 0,
        expect: "S S 0 C C C C C S S S S S S S S S S S S S S S S S S S S S S S S S",
        counters: (0, 0, 0, 5, 0),
    },
    Case {
        name: "sequence jump resets",
        arrivals: &[(0, 0), (20, 1), (40, 5000), (60, 5001)],
        first_seq: 0,
        expect: "S S S S 5000 5001",
        counters: (0, 0, 0, 0, 1),
    },
];

fn ts_for(first_seq: u16, seq: u16) -> u32 {
    TS_BASE.wrapping_add(u32::from(seq.wrapping_sub(first_seq)) * 160)
}

fn run(jb: &mut JitterBuffer, arrivals: &[(u64, u16)], first_seq: u16, ticks: usize) -> String {
    let t0 = Instant::now();
    let mut next = arrivals.iter().peekable();
    let mut out = Vec::new();
    for k in 0..ticks {
        let tick = 20 * k as u64 + 5;
        while let Some(&&(at, seq)) = next.peek() {
            if at > tick {
                break;
            }
            let pkt = RtpPacket {
                payload_type: 0,
                seq,
                timestamp: ts_for(first_seq, seq),
                ssrc: 0x1234,
                payload: seq.to_be_bytes().to_vec(),
                ..RtpPacket::default()
            };
            jb.push(t0 + Duration::from_millis(at), pkt);
            next.next();
        }
        out.push(match jb.pop(t0 + Duration::from_millis(tick)) {
            Playout::Silence => "S".to_string(),
            Playout::Conceal => "C".to_string(),
            Playout::Frame(p) => {
                assert_eq!(p.payload, p.seq.to_be_bytes().to_vec());
                p.seq.to_string()
            }
        });
    }
    out.join(" ")
}

fn test_config() -> JitterConfig {
    JitterConfig {
        target_delay: Duration::from_millis(40),
        ..JitterConfig::new(8000, 20)
    }
}

#[test]
fn traces() {
    let mut failures = Vec::new();
    for case in CASES {
        let mut jb = JitterBuffer::new(test_config());
        let ticks = case.expect.split_whitespace().count();
        let got = run(&mut jb, case.arrivals, case.first_seq, ticks);
        let s = jb.stats();
        let counters = (s.duplicates, s.late, s.lost, s.concealed, s.resets);
        if got != case.expect || counters != case.counters {
            failures.push(format!(
                "{}:\n  playout  got {got:?}\n        want {:?}\n  (dup, late, lost, concealed, resets) got {counters:?} want {:?}",
                case.name, case.expect, case.counters
            ));
        }
        if s.received != case.arrivals.len() as u64 {
            failures.push(format!("{}: trace too short for its arrivals", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn other_payload_types_leave_no_loss() {
    // seq 2..=4 carry telephone-events; audio stops meanwhile and resumes at seq 5 / its time.
    let cfg = test_config();
    let mut jb = JitterBuffer::new(cfg);
    let t0 = Instant::now();
    let ms = |m| t0 + Duration::from_millis(m);
    let audio = |seq: u16, slot: u32| RtpPacket {
        seq,
        timestamp: slot * 160,
        ssrc: 7,
        payload: vec![0; 160],
        ..RtpPacket::default()
    };
    let mut played = Vec::new();
    jb.push(ms(0), audio(0, 0));
    jb.push(ms(20), audio(1, 1));
    for seq in [2u16, 3, 4] {
        jb.note_other(7, seq);
    }
    jb.push(ms(80), audio(5, 4));
    for k in 0..6u64 {
        played.push(jb.pop(ms(20 * k + 45)));
    }
    assert!(matches!(played[0], Playout::Frame(ref p) if p.seq == 0));
    assert!(matches!(played[1], Playout::Frame(ref p) if p.seq == 1));
    assert_eq!(played[2], Playout::Conceal);
    assert_eq!(played[3], Playout::Conceal);
    assert!(matches!(played[4], Playout::Frame(ref p) if p.seq == 5));
    assert_eq!(
        jb.stats(),
        JitterStats {
            received: 3,
            concealed: 3,
            ..JitterStats::default()
        }
    );
}

#[test]
fn overflow_drops_oldest_back_to_target() {
    let cfg = JitterConfig {
        max_delay: Duration::from_millis(100),
        ..test_config()
    };
    let mut jb = JitterBuffer::new(cfg);
    let t0 = Instant::now();
    // a burst of 20 packets (400 ms of audio) at once
    for seq in 0..20u16 {
        jb.push(
            t0,
            RtpPacket {
                seq,
                timestamp: u32::from(seq) * 160,
                ..RtpPacket::default()
            },
        );
    }
    match jb.pop(t0 + Duration::from_millis(40)) {
        Playout::Frame(p) => assert_eq!(p.seq, 17, "kept 40 ms: seq 17..=19"),
        other => panic!("{other:?}"),
    }
    assert_eq!(jb.stats().overflow, 17);
    assert_eq!(jb.stats().lost, 0);
    assert_eq!(jb.len(), 2);
}

#[test]
fn sender_timeline_moving_back_resyncs() {
    let mut jb = JitterBuffer::new(test_config());
    let t0 = Instant::now();
    let ms = |m| t0 + Duration::from_millis(m);
    let mut seq = 0u16;
    let mut send = |jb: &mut JitterBuffer, at: u64, ts: u32| {
        jb.push(
            ms(at),
            RtpPacket {
                seq,
                timestamp: ts,
                ..RtpPacket::default()
            },
        );
        seq += 1;
    };
    for k in 0..10u32 {
        send(&mut jb, u64::from(k) * 20, 100_000 + k * 160);
        let _ = jb.pop(ms(u64::from(k) * 20 + 5));
    }
    // the sender restarts its timestamps (same SSRC, seq continues)
    let mut frames_after = 0;
    for k in 10..40u32 {
        send(&mut jb, u64::from(k) * 20, (k - 10) * 160);
        if let Playout::Frame(_) = jb.pop(ms(u64::from(k) * 20 + 5)) {
            frames_after += 1;
        }
    }
    assert_eq!(jb.stats().resets, 1);
    assert!(frames_after >= 15, "played {frames_after} after resync");
}

#[test]
fn idle_after_one_second_then_restart_with_target_delay() {
    let mut jb = JitterBuffer::new(test_config());
    let got = run(&mut jb, &[(0, 0), (20, 1), (1500, 74)], 0, 78);
    // idle from tick 53; seq 74 arrives at 1500 ms and starts 40 ms later (tick 77 at 1545 ms)
    let want = format!("S S 0 1{}{} 74", " C".repeat(5), " S".repeat(68));
    assert_eq!(got, want);
    let s = jb.stats();
    assert_eq!((s.lost, s.concealed, s.resets), (72, 5, 0));
}

// ---- basics ----

fn unit_pkt(seq: u16, ts: u32) -> RtpPacket {
    RtpPacket {
        payload_type: 0,
        seq,
        timestamp: ts,
        ssrc: 1,
        payload: vec![seq as u8],
        ..RtpPacket::default()
    }
}

#[test]
fn silence_until_target_delay_then_frames() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::new(8000, 20));
    assert_eq!(jb.pop(t0), Playout::Silence);
    assert_eq!(jb.poll_timeout(), None);
    jb.push(t0, unit_pkt(5, 800));
    assert_eq!(jb.poll_timeout(), Some(t0 + Duration::from_millis(60)));
    assert_eq!(jb.pop(t0 + Duration::from_millis(59)), Playout::Silence);
    assert_eq!(
        jb.pop(t0 + Duration::from_millis(60)),
        Playout::Frame(unit_pkt(5, 800))
    );
    assert!(jb.is_playing());
    assert_eq!(jb.poll_timeout(), Some(t0 + Duration::from_millis(80)));
}

#[test]
fn new_ssrc_resets() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::new(8000, 20));
    jb.push(t0, unit_pkt(1, 160));
    let mut other = unit_pkt(1000, 99);
    other.ssrc = 2;
    jb.push(t0, other.clone());
    assert_eq!(jb.stats().resets, 1);
    assert_eq!(jb.len(), 1);
    assert_eq!(jb.ssrc(), Some(2));
    assert_eq!(
        jb.pop(t0 + Duration::from_millis(60)),
        Playout::Frame(other)
    );
}

/// Random reorder/loss/duplication: played frames are always new, in order, and were pushed.
#[test]
fn random_traces_keep_invariants() {
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut late_total, mut dup_total, mut conceal_total) = (0, 0, 0);
    for trial in 0..50 {
        let mut jb = JitterBuffer::new(test_config());
        let t0 = Instant::now();
        let first: u16 = (rnd() % 65536) as u16;
        let mut arrivals: Vec<(u64, u16)> = Vec::new();
        for i in 0..300u64 {
            let r = rnd();
            if r % 10 == 0 {
                continue; // lost
            }
            let seq = first.wrapping_add(i as u16);
            let at = i * 20 + (r >> 8) % 70;
            arrivals.push((at, seq));
            if r % 13 == 0 {
                arrivals.push((at + (r >> 20) % 50, seq)); // duplicate
            }
        }
        arrivals.sort();
        let mut pushed = std::collections::HashSet::new();
        let mut next = arrivals.iter().peekable();
        let mut last_played: Option<i64> = None;
        let mut played = 0u64;
        for k in 0..320u64 {
            let tick = k * 20 + 5;
            while let Some(&&(at, seq)) = next.peek() {
                if at > tick {
                    break;
                }
                pushed.insert(seq);
                let pkt = RtpPacket {
                    seq,
                    timestamp: ts_for(first, seq),
                    ssrc: 5,
                    ..RtpPacket::default()
                };
                jb.push(t0 + Duration::from_millis(at), pkt);
                next.next();
            }
            if let Playout::Frame(p) = jb.pop(t0 + Duration::from_millis(tick)) {
                assert!(pushed.contains(&p.seq), "trial {trial}");
                let idx = i64::from(p.seq.wrapping_sub(first));
                assert!(last_played.is_none_or(|l| idx > l), "trial {trial}: order");
                last_played = Some(idx);
                played += 1;
            }
        }
        let s = jb.stats();
        assert_eq!(s.received, arrivals.len() as u64);
        assert_eq!(s.resets, 0, "trial {trial}");
        let unique = pushed.len() as u64;
        assert_eq!(
            played + s.late + s.overflow + jb.len() as u64,
            unique,
            "trial {trial}: every unique packet is played, late, dropped or still buffered"
        );
        assert_eq!(s.duplicates, s.received - unique, "trial {trial}");
        assert!(s.lost <= 300 - unique + 1, "trial {trial}: lost {}", s.lost);
        late_total += s.late;
        dup_total += s.duplicates;
        conceal_total += s.concealed;
    }
    assert!(late_total > 0 && dup_total > 0 && conceal_total > 0);
}

/// `peek_next` shows the packet the next pop plays, only once it is buffered and only when it
/// belongs to the very next slot: after a lost packet, that is the one whose in-band FEC can
/// rebuild it. It never changes what pop does.
#[test]
fn peek_next_shows_the_packet_of_the_next_slot() {
    let mut jb = JitterBuffer::new(JitterConfig::new(8000, 20));
    let t0 = Instant::now();
    let ms = |m| t0 + Duration::from_millis(m);
    let audio = |seq: u16| RtpPacket {
        seq,
        timestamp: u32::from(seq) * 160,
        ssrc: 9,
        payload: vec![seq as u8; 4],
        ..RtpPacket::default()
    };
    assert!(jb.peek_next().is_none(), "not playing");
    jb.push(ms(0), audio(0));
    jb.push(ms(20), audio(1));
    assert!(jb.peek_next().is_none(), "not playing yet");
    // 2 is lost; 3 arrives in time, 5 early (4 lost too)
    jb.push(ms(60), audio(3));
    jb.push(ms(61), audio(5));
    let pops: Vec<(Playout, Option<u16>)> = (0..6u64)
        .map(|k| {
            let p = jb.pop(ms(60 + 20 * k));
            (p, jb.peek_next().map(|n| n.seq))
        })
        .collect();
    let seqs: Vec<String> = pops
        .iter()
        .map(|(p, next)| {
            let now = match p {
                Playout::Frame(f) => f.seq.to_string(),
                Playout::Conceal => "C".into(),
                Playout::Silence => "S".into(),
            };
            format!("{now}/{}", next.map_or("-".into(), |s| s.to_string()))
        })
        .collect();
    // slot 1's successor (2) is missing; at the loss of 2, packet 3 is next; at the loss of
    // 4, packet 5 is next.
    assert_eq!(seqs, ["0/1", "1/-", "C/3", "3/-", "C/5", "5/-"]);
}
