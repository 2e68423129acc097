//! MediaSession: unit behaviour, and two sessions wired in memory over synthetic time
//! (tone through, DTMF exactly once, with and without packet loss and jitter).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use termphone::media::{CodecParams, MediaConfig, MediaError, MediaEvent, MediaSession, RtpPacket};

fn cfg() -> MediaConfig {
    MediaConfig {
        codec: CodecParams::pcmu(),
        telephone_event_pt: Some(101),
        ptime_ms: 20,
        ssrc: 0xabcd,
        initial_seq: 65534,
        initial_ts: 1000,
    }
}

#[test]
fn rejects_bad_config() {
    let mut c = cfg();
    c.codec.name = "G729".into();
    assert_eq!(
        MediaSession::new(c).unwrap_err(),
        MediaError::UnknownCodec("G729".into())
    );
    let mut c = cfg();
    c.codec.clock_rate = 16000;
    assert!(matches!(
        MediaSession::new(c),
        Err(MediaError::ClockRate { .. })
    ));
    let mut c = cfg();
    c.ptime_ms = 0;
    assert_eq!(MediaSession::new(c).unwrap_err(), MediaError::Ptime(0));
}

#[test]
fn sends_rtp_with_marker_then_dtmf_replacing_audio() {
    let mut s = MediaSession::new(cfg()).unwrap();
    assert_eq!(s.frame_samples(), 160);
    let now = Instant::now();
    let mut out = Vec::new();
    let tone = vec![1000i16; 160];
    s.on_tick(now, Some(&tone), &mut out);
    s.on_tick(now, None, &mut out);
    s.send_dtmf("9", now);
    for _ in 0..12 {
        s.on_tick(now, Some(&tone), &mut out);
    }
    let pkts: Vec<RtpPacket> = out.iter().map(|b| RtpPacket::parse(b).unwrap()).collect();
    let seqs: Vec<u16> = pkts.iter().map(|p| p.seq).collect();
    assert_eq!(&seqs[..4], &[65534, 65535, 0, 1]);
    assert!(pkts[0].marker && !pkts[1].marker);
    assert_eq!(pkts[0].payload.len(), 160);
    assert_eq!(pkts[1].payload, vec![0xff; 160], "None sends silence");
    let pts: Vec<u8> = pkts.iter().map(|p| p.payload_type).collect();
    assert_eq!(
        pts,
        [0, 0, 101, 101, 101, 101, 101, 101, 101, 0, 0, 0, 0, 0]
    );
    assert!(pkts[2].marker && !pkts[3].marker);
    assert!(pkts[2..9].iter().all(|p| p.timestamp == 1000 + 2 * 160));
    assert_eq!(pkts[9].timestamp, 1000 + 9 * 160);
    assert!(pkts.iter().all(|p| p.ssrc == 0xabcd));
    let st = s.stats();
    assert_eq!(st.packets_sent, 14);
    assert_eq!(st.bytes_sent, 7 * 160 + 7 * 4);
}

#[test]
fn bad_packets_are_counted_and_dropped() {
    let mut s = MediaSession::new(cfg()).unwrap();
    let now = Instant::now();
    s.handle_rtp(now, b"not rtp");
    let unknown_pt = RtpPacket {
        payload_type: 18,
        ..RtpPacket::default()
    };
    s.handle_rtp(now, &unknown_pt.to_bytes());
    let short_event = RtpPacket {
        payload_type: 101,
        payload: vec![1, 2],
        ..RtpPacket::default()
    };
    s.handle_rtp(now, &short_event.to_bytes());
    // A STUN binding request (RFC 5389: type 0x0001, magic cookie) is not counted as bad.
    let mut stun = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    stun.extend_from_slice(&[7; 12]);
    s.handle_rtp(now, &stun);
    let st = s.stats();
    assert_eq!(st.bad_packets, 3);
    assert_eq!(st.packets_received, 0);
    assert_eq!(s.poll_event(), None);
    let mut out = vec![1; 3];
    s.playout(now + Duration::from_millis(100), &mut out);
    assert_eq!(out, vec![0; 160]);
}

#[test]
fn new_remote_ssrc_resets_jitter_buffer_and_keeps_loss_count() {
    let mut s = MediaSession::new(cfg()).unwrap();
    let now = Instant::now();
    let p = |ssrc: u32, seq: u16| RtpPacket {
        payload_type: 0,
        ssrc,
        seq,
        timestamp: u32::from(seq) * 160,
        payload: vec![0xff; 160],
        ..RtpPacket::default()
    };
    s.handle_rtp(now, &p(1, 10).to_bytes());
    s.handle_rtp(now, &p(1, 12).to_bytes()); // 11 lost
    s.handle_rtp(now, &p(2, 500).to_bytes());
    s.handle_rtp(now, &p(2, 501).to_bytes());
    let st = s.stats();
    assert_eq!(st.lost, 1);
    assert_eq!(st.packets_received, 4);
    assert_eq!(s.jitter_stats().resets, 1);
}

// ---- two peers ----

/// Deterministic xorshift64* so the loss/jitter pattern is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One direction of the network: loss and a random one-way delay (which reorders).
struct Link {
    rng: Rng,
    loss: f64,
    min_delay_ms: u64,
    jitter_ms: u64,
    queue: BTreeMap<(Duration, u64), Vec<u8>>,
    n: u64,
    dropped: u64,
}

impl Link {
    fn new(seed: u64, loss: f64, min_delay_ms: u64, jitter_ms: u64) -> Link {
        Link {
            rng: Rng(seed),
            loss,
            min_delay_ms,
            jitter_ms,
            queue: BTreeMap::new(),
            n: 0,
            dropped: 0,
        }
    }

    fn send(&mut self, at: Duration, pkt: Vec<u8>) {
        if self.rng.unit() < self.loss {
            self.dropped += 1;
            return;
        }
        let jitter = if self.jitter_ms > 0 {
            self.rng.next() % (self.jitter_ms + 1)
        } else {
            0
        };
        self.n += 1;
        let due = at + Duration::from_millis(self.min_delay_ms + jitter);
        self.queue.insert((due, self.n), pkt);
    }

    /// Deliver everything due by `until`, each at its own arrival time.
    fn deliver(&mut self, t0: Instant, until: Duration, to: &mut MediaSession) {
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > until {
                break;
            }
            let ((due, _), pkt) = entry.remove_entry();
            to.handle_rtp(t0 + due, &pkt);
        }
    }
}

fn tone(freq: f64, amp: f64, start: usize, n: usize) -> Vec<i16> {
    (start..start + n)
        .map(|i| (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / 8000.0).sin()) as i16)
        .collect()
}

/// Share of a frame's energy at `freq` (Goertzel), 0..=1 (1 for a pure bin-centred tone).
fn tone_share(frame: &[i16], freq: f64) -> f64 {
    let n = frame.len() as f64;
    let w = 2.0 * std::f64::consts::PI * freq / 8000.0;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in frame {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2; // |X|^2
    let tone_ms = 2.0 * power / (n * n); // mean square of the tone component
    let ms = frame.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / n;
    if ms == 0.0 {
        0.0
    } else {
        tone_ms / ms
    }
}

struct CallResult {
    a_heard: Vec<Vec<i16>>,
    b_heard: Vec<Vec<i16>>,
    a: MediaSession,
    b: MediaSession,
    b_digits: String,
    link_ab_dropped: u64,
}

fn session(ssrc: u32, seq: u16, ts: u32, pt: u8, te: u8) -> MediaSession {
    MediaSession::new(MediaConfig {
        codec: CodecParams {
            name: if pt == 0 { "PCMU" } else { "PCMA" }.into(),
            payload_type: pt,
            clock_rate: 8000,
            bitrate: None,
        },
        telephone_event_pt: Some(te),
        ptime_ms: 20,
        ssrc,
        initial_seq: seq,
        initial_ts: ts,
    })
    .unwrap()
}

/// A sends 1000 Hz and the DTMF digits, B sends 600 Hz, for `ticks` frames of 20 ms.
fn call(pt: u8, loss: f64, jitter_ms: u64, ticks: usize, digits: &str) -> CallResult {
    let t0 = Instant::now();
    let mut a = session(0x1111, 65500, u32::MAX - 5000, pt, 101);
    let mut b = session(0x2222, 7, 123_456, pt, 101);
    let mut ab = Link::new(0x9e37_79b9_7f4a_7c15, loss, 10, jitter_ms);
    let mut ba = Link::new(0xd1b5_4a32_d192_ed03, loss, 10, jitter_ms);
    let (mut a_heard, mut b_heard) = (Vec::new(), Vec::new());
    let mut b_digits = String::new();
    let mut out = Vec::new();
    let mut frame = Vec::new();
    for k in 0..ticks {
        let at = Duration::from_millis(20 * k as u64);
        let now = t0 + at;
        if k == 25 {
            a.send_dtmf(digits, now);
        }
        let fa = tone(1000.0, 8000.0, k * 160, 160);
        let fb = tone(600.0, 8000.0, k * 160, 160);
        out.clear();
        a.on_tick(now, Some(&fa), &mut out);
        for p in out.drain(..) {
            ab.send(at, p);
        }
        b.on_tick(now, Some(&fb), &mut out);
        for p in out.drain(..) {
            ba.send(at, p);
        }
        ab.deliver(t0, at, &mut b);
        ba.deliver(t0, at, &mut a);
        a.playout(now, &mut frame);
        assert_eq!(frame.len(), 160);
        a_heard.push(frame.clone());
        b.playout(now, &mut frame);
        b_heard.push(frame.clone());
        while let Some(MediaEvent::DtmfReceived(d)) = b.poll_event() {
            b_digits.push(d);
        }
        assert_eq!(a.poll_event(), None);
    }
    // let the packets still in flight land
    let end = Duration::from_secs(3600);
    ab.deliver(t0, end, &mut b);
    ba.deliver(t0, end, &mut a);
    CallResult {
        a_heard,
        b_heard,
        a,
        b,
        b_digits,
        link_ab_dropped: ab.dropped,
    }
}

/// (frames with sound, mean tone share at `want`, mean share at `other`) after the first second.
fn analyse(heard: &[Vec<i16>], want: f64, other: f64) -> (usize, f64, f64) {
    let loud: Vec<&Vec<i16>> = heard[50..]
        .iter()
        .filter(|f| f.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / 160.0 > 1e5)
        .collect();
    let n = loud.len().max(1) as f64;
    let w = loud.iter().map(|f| tone_share(f, want)).sum::<f64>() / n;
    let o = loud.iter().map(|f| tone_share(f, other)).sum::<f64>() / n;
    (loud.len(), w, o)
}

#[test]
fn clean_call_carries_tones_and_dtmf() {
    let r = call(0, 0.0, 0, 250, "123#*0");
    assert_eq!(r.b_digits, "123#*0");
    let (loud, share, other) = analyse(&r.b_heard, 1000.0, 600.0);
    assert!(
        share > 0.98 && other < 0.01,
        "B hears 1000 Hz: {share} / {other}"
    );
    // everything after the first second is tone, except the DTMF gaps (6 digits x 7 frames)
    assert!(loud >= 200 - 6 * 7, "B loud frames {loud}");
    let (loud, share, other) = analyse(&r.a_heard, 600.0, 1000.0);
    assert!(
        share > 0.98 && other < 0.01,
        "A hears 600 Hz: {share} / {other}"
    );
    assert_eq!(loud, 200);
    for s in [r.a.stats(), r.b.stats()] {
        assert_eq!((s.lost, s.late, s.duplicates, s.bad_packets), (0, 0, 0, 0));
        assert_eq!(s.packets_received, 250);
        assert!(s.jitter_ms < 0.01, "jitter {}", s.jitter_ms);
    }
    assert_eq!(r.a.stats().packets_sent, 250);
    // B's buffer saw the telephone-event sequence numbers and did not call them lost
    assert_eq!(r.b.jitter_stats().lost, 0);
}

#[test]
fn lossy_jittery_call_still_delivers_each_digit_once() {
    for pt in [0u8, 8] {
        let r = call(pt, 0.10, 30, 500, "123#*0");
        assert_eq!(r.b_digits, "123#*0", "PT {pt}");
        let (loud, share, other) = analyse(&r.b_heard, 1000.0, 600.0);
        assert!(
            share > 0.9 && other < 0.05,
            "B hears 1000 Hz: {share} / {other}"
        );
        assert!(loud > 350, "B loud frames {loud}");
        let (_, share, other) = analyse(&r.a_heard, 600.0, 1000.0);
        assert!(
            share > 0.9 && other < 0.05,
            "A hears 600 Hz: {share} / {other}"
        );
        let s = r.b.stats();
        eprintln!(
            "PT {pt}: loud {loud} share {share:.3} other {other:.4} {s:?} jb {:?}",
            r.b.jitter_stats()
        );
        let sent = r.a.stats().packets_sent;
        assert_eq!(s.packets_received, sent - r.link_ab_dropped);
        // RFC 3550 loss = what the link dropped, except drops after the last packet received
        assert!(s.lost <= r.link_ab_dropped && s.lost + 3 >= r.link_ab_dropped);
        let loss = s.lost as f64 / sent as f64;
        assert!((0.05..0.15).contains(&loss), "loss {loss}");
        assert!(s.concealed > 0);
        assert!(
            s.jitter_ms > 1.0 && s.jitter_ms < 30.0,
            "jitter {}",
            s.jitter_ms
        );
        assert_eq!(s.bad_packets, 0);
    }
}

#[test]
fn jitter_beyond_the_buffer_drops_late_packets_but_not_digits() {
    let r = call(0, 0.10, 200, 500, "123#*0");
    assert_eq!(r.b_digits, "123#*0");
    let s = r.b.stats();
    assert!(s.late > 0, "{s:?}");
    let (loud, share, _) = analyse(&r.b_heard, 1000.0, 600.0);
    assert!(share > 0.9 && loud > 250, "share {share} loud {loud}");
}

#[test]
fn sequence_restart_does_not_count_as_loss() {
    let mut s = session(1, 0, 0, 0, 101);
    let t0 = Instant::now();
    let p = |seq: u16| RtpPacket {
        payload_type: 0,
        ssrc: 9,
        seq,
        timestamp: u32::from(seq) * 160,
        payload: vec![0xff; 160],
        ..RtpPacket::default()
    };
    for seq in [10, 11, 13] {
        s.handle_rtp(t0, &p(seq).to_bytes());
    }
    for seq in [40_000, 40_001] {
        s.handle_rtp(t0, &p(seq).to_bytes());
    }
    assert_eq!(s.stats().lost, 1);
}

#[test]
fn random_datagrams_never_panic() {
    let mut s = session(1, 0, 0, 0, 101);
    let mut rng = Rng(42);
    let t0 = Instant::now();
    let mut frame = Vec::new();
    let mut out = Vec::new();
    let (mut seq, mut ts) = (0u16, 0u32);
    for k in 0..20_000u64 {
        let now = t0 + Duration::from_millis(k * 5);
        let r = rng.next();
        let len = (r % 200) as usize;
        let mut d: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if r & 0x100 != 0 && len >= 12 {
            // a plausible header: version 2, a likely PT, a nearby seq/ts, one of two SSRCs
            seq = seq.wrapping_add((rng.next() % 7) as u16).wrapping_sub(2);
            ts = ts.wrapping_add((rng.next() % 500) as u32).wrapping_sub(100);
            d[0] = 0x80 | (d[0] & 0x3f);
            d[1] = [0u8, 101, 0x80, 0xe5, 8][(rng.next() % 5) as usize];
            d[2..4].copy_from_slice(&seq.to_be_bytes());
            d[4..8].copy_from_slice(&ts.to_be_bytes());
            d[8..12].copy_from_slice(&[0, 0, 0, (rng.next() % 2) as u8]);
        }
        s.handle_rtp(now, &d);
        if k % 4 == 0 {
            s.playout(now, &mut frame);
            assert_eq!(frame.len(), 160);
            out.clear();
            s.on_tick(now, Some(&frame), &mut out);
            if k % 400 == 0 {
                s.send_dtmf("1#", now);
            }
        }
        while s.poll_event().is_some() {}
    }
    let st = s.stats();
    assert!(st.bad_packets > 0 && st.packets_received > 0);
}

/// RTCP between two sessions over synthetic time: A→B loses 5 % of RTP, both directions delay
/// 10 ms. B's reception report says ~5 % lost; A learns it from B's reports, along with a
/// 20 ms round trip; the E-model rates what B hears below what A hears.
#[test]
fn rtcp_reports_loss_rtt_and_quality_both_ways() {
    use termphone::media::RtcpConfig;
    let t0 = Instant::now();
    let wall0 = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut a = session(0x1111, 100, 1000, 0, 101);
    let mut b = session(0x2222, 200, 2000, 0, 101);
    a.enable_rtcp(RtcpConfig::new(0x1111, "a@test", 8000, 1), t0);
    b.enable_rtcp(RtcpConfig::new(0x2222, "b@test", 8000, 2), t0);
    let mut ab = Link::new(0x9e37_79b9_7f4a_7c15, 0.05, 10, 0);
    let mut ba = Link::new(0xd1b5_4a32_d192_ed03, 0.0, 10, 0);
    // RTCP in flight: (due, to_b, bytes)
    let mut rtcp: Vec<(Duration, bool, Vec<u8>)> = Vec::new();
    let (mut out, mut frame) = (Vec::new(), Vec::new());
    for k in 0..1500usize {
        let at = Duration::from_millis(20 * k as u64);
        let now = t0 + at;
        let f = tone(1000.0, 8000.0, k * 160, 160);
        a.on_tick(now, Some(&f), &mut out);
        for p in out.drain(..) {
            ab.send(at, p);
        }
        b.on_tick(now, Some(&f), &mut out);
        for p in out.drain(..) {
            ba.send(at, p);
        }
        for (to_b, s) in [(true, &mut a), (false, &mut b)] {
            if s.poll_rtcp_timeout().is_some_and(|t| t <= now) {
                if let Some(p) = s.handle_rtcp_timeout(now, wall0 + at) {
                    rtcp.push((at + Duration::from_millis(10), to_b, p));
                }
            }
        }
        rtcp.sort_by_key(|(d, _, _)| *d);
        while rtcp.first().is_some_and(|(d, _, _)| *d <= at) {
            let (d, to_b, p) = rtcp.remove(0);
            let target = if to_b { &mut b } else { &mut a };
            target.handle_rtcp(t0 + d, &p).expect("valid RTCP");
        }
        ab.deliver(t0, at, &mut b);
        ba.deliver(t0, at, &mut a);
        a.playout(now, &mut frame);
        b.playout(now, &mut frame);
    }
    let qb = b.quality(0.0).expect("RTCP on");
    let qa = a.quality(0.0).expect("RTCP on");
    assert!(
        (3.0..=7.5).contains(&qb.loss_pct),
        "B receives with ~5 % loss: {qb:?}"
    );
    assert!(qa.loss_pct < 0.5, "{qa:?}");
    let remote = qa
        .remote_loss_pct
        .expect("A got B's report about A's stream");
    assert!((1.0..=12.0).contains(&remote), "{qa:?}");
    let rtt = qa.rtt_ms.expect("A measured the round trip");
    assert!((19.0..=21.5).contains(&rtt), "{qa:?}");
    assert!(
        qb.rtt_ms.is_some_and(|r| (19.0..=21.5).contains(&r)),
        "{qb:?}"
    );
    assert!(
        qb.mos < qa.mos - 0.3,
        "loss costs B's MOS: {} vs {}",
        qb.mos,
        qa.mos
    );
    assert!(qa.mos > 4.0 && qb.mos > 2.0, "{qa:?} {qb:?}");
    assert!(a.rtcp().unwrap().reports_sent() >= 4);
}
