//! Opus through libopus: speech survives the round trip, in-band FEC rebuilds a lost packet far
//! better than concealment, two media sessions over a lossy link recover losses with FEC and
//! keep the signal, and no payload from the network makes anything panic.
//!
//! The floors below were measured first (numbers in the comments) and set a few dB under.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use termphone::audio::resample::Resampler;
use termphone::media::codec::opus::{has_fec, Opus, OpusSettings};
use termphone::media::codec::{codec_by_name, Codec};
use termphone::media::{CodecParams, MediaConfig, MediaSession};

/// 20 ms at 48 kHz.
const FRAME: usize = 960;

/// The test speech (8 kHz), resampled to 48 kHz with termphone's own resampler.
fn speech_48k() -> Vec<i16> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/speech-8k.wav");
    let mut reader = hound::WavReader::open(path).expect("speech-8k.wav");
    assert_eq!(reader.spec().sample_rate, 8000);
    let input: Vec<f32> = reader
        .samples::<i16>()
        .map(|s| f32::from(s.expect("sample")))
        .collect();
    let mut rs = Resampler::new(8000, 48_000);
    let mut out = Vec::with_capacity(input.len() * 6 + 1000);
    rs.process(&input, &mut out);
    rs.flush(&mut out);
    out.iter()
        .map(|&s| s.round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// Encode `pcm` in 20 ms frames (the tail that does not fill a frame is left out).
fn encode_all(codec: &mut Opus, pcm: &[i16]) -> Vec<Vec<u8>> {
    pcm.chunks_exact(FRAME)
        .map(|frame| {
            let mut p = Vec::new();
            codec.encode(frame, &mut p);
            p
        })
        .collect()
}

fn energy(x: &[f64]) -> f64 {
    x.iter().map(|v| v * v).sum()
}

/// The lag (decoded behind original, in samples, below `max_lag`) that maximises the
/// correlation, found on one second of speech from 0.5 s on.
fn best_lag(original: &[i16], decoded: &[i16], max_lag: usize) -> usize {
    let window = 24_000..72_000;
    assert!(original.len() >= window.end && decoded.len() >= window.end + max_lag);
    (0..max_lag)
        .max_by(|&a, &b| {
            let c = |lag: usize| -> f64 {
                window
                    .clone()
                    .step_by(2)
                    .map(|i| f64::from(original[i]) * f64::from(decoded[i + lag]))
                    .sum()
            };
            c(a).total_cmp(&c(b))
        })
        .unwrap_or(0)
}

/// (SNR in dB, normalised cross-correlation) of `decoded[lag..]` against `original`.
fn snr_ncc(original: &[i16], decoded: &[i16], lag: usize) -> (f64, f64) {
    let n = original.len().min(decoded.len().saturating_sub(lag));
    let o: Vec<f64> = original[..n].iter().map(|&s| f64::from(s)).collect();
    let d: Vec<f64> = decoded[lag..lag + n]
        .iter()
        .map(|&s| f64::from(s))
        .collect();
    let err: Vec<f64> = o.iter().zip(&d).map(|(a, b)| a - b).collect();
    let snr = 10.0 * (energy(&o) / energy(&err).max(1e-9)).log10();
    let dot: f64 = o.iter().zip(&d).map(|(a, b)| a * b).sum();
    let ncc = dot / (energy(&o) * energy(&d)).sqrt().max(1e-9);
    (snr, ncc)
}

/// SNR (dB) of one 20 ms frame of `decoded` (at `frame`, shifted by `lag`) against `original`.
fn frame_snr(original: &[i16], decoded: &[i16], frame: usize, lag: usize) -> f64 {
    let start = frame * FRAME;
    let o: Vec<f64> = original[start..start + FRAME]
        .iter()
        .map(|&s| f64::from(s))
        .collect();
    let d: Vec<f64> = decoded[start + lag..start + lag + FRAME]
        .iter()
        .map(|&s| f64::from(s))
        .collect();
    let err: Vec<f64> = o.iter().zip(&d).map(|(a, b)| a - b).collect();
    10.0 * (energy(&o) / energy(&err).max(1e-9)).log10()
}

#[test]
fn speech_round_trip_keeps_the_waveform() {
    let speech = speech_48k();
    let mut codec = Opus::new().unwrap();
    let packets = encode_all(&mut codec, &speech);
    let bytes: usize = packets.iter().map(Vec::len).sum();
    let kbps = bytes as f64 * 8.0 / (packets.len() as f64 * 0.02) / 1000.0;
    let mut decoded = Vec::new();
    for p in &packets {
        let before = decoded.len();
        codec.decode(p, &mut decoded).unwrap();
        assert_eq!(decoded.len() - before, FRAME);
    }
    let lag = best_lag(&speech, &decoded, 1500);
    let (snr, ncc) = snr_ncc(&speech, &decoded, lag);
    // measured: 26.9 kbit/s, lag 309, SNR 12.1 dB, NCC 0.969
    eprintln!("opus speech: {kbps:.1} kbit/s, lag {lag}, SNR {snr:.1} dB, NCC {ncc:.4}");
    // VBR around its 32 kbit/s target
    assert!((20.0..=40.0).contains(&kbps), "{kbps} kbit/s");
    // libopus's delay at 48 kHz is 6.5 ms (312 samples) plus the frame it buffers
    assert!(lag < 1500, "lag {lag}");
    assert!(snr >= 9.0, "SNR {snr:.1} dB");
    assert!(ncc >= 0.95, "NCC {ncc:.4}");
}

/// Every 5th packet lost (each loss on its own): decoding the next packet's FEC rebuilds the
/// lost frame much closer to the original than libopus's PLC does.
#[test]
fn fec_rebuilds_a_lost_packet_better_than_concealment() {
    let speech = speech_48k();
    let packets = encode_all(&mut Opus::new().unwrap(), &speech);
    // the lag of the codec, from a lossless decode
    let mut clean = Opus::new().unwrap();
    let mut reference = Vec::new();
    for p in &packets {
        clean.decode(p, &mut reference).unwrap();
    }
    let lag = best_lag(&speech, &reference, 1500);

    let (mut plc, mut fec) = (Opus::new().unwrap(), Opus::new().unwrap());
    let (mut out_plc, mut out_fec) = (Vec::new(), Vec::new());
    let mut lost = Vec::new();
    let mut recovered = 0;
    for (k, p) in packets.iter().enumerate() {
        let frame_start = k * FRAME;
        // lose frames in the middle of speech: frame energy well above silence
        let loud = frame_start + FRAME <= speech.len()
            && speech[frame_start..frame_start + FRAME]
                .iter()
                .map(|&s| f64::from(s).powi(2))
                .sum::<f64>()
                / FRAME as f64
                > 1000.0f64.powi(2);
        if k % 5 == 2 && k + 1 < packets.len() && loud {
            lost.push(k);
            plc.conceal(FRAME, &mut out_plc);
            if fec.decode_fec(&packets[k + 1], FRAME, &mut out_fec) {
                recovered += 1;
            } else {
                fec.conceal(FRAME, &mut out_fec);
            }
        } else {
            plc.decode(p, &mut out_plc).unwrap();
            fec.decode(p, &mut out_fec).unwrap();
        }
    }
    assert_eq!(out_plc.len(), out_fec.len());
    // Each lost frame shows up `lag` samples later in the output.
    let (mut snr_plc, mut snr_fec, mut snr_clean) = (0.0, 0.0, 0.0);
    let mut better = 0;
    let usable: Vec<usize> = lost
        .iter()
        .copied()
        .filter(|&k| (k + 1) * FRAME + lag <= out_plc.len())
        .collect();
    for &k in &usable {
        let (p, f, c) = (
            frame_snr(&speech, &out_plc, k, lag),
            frame_snr(&speech, &out_fec, k, lag),
            frame_snr(&speech, &reference, k, lag),
        );
        snr_plc += p;
        snr_fec += f;
        snr_clean += c;
        better += usize::from(f > p);
    }
    let n = usable.len() as f64;
    let (snr_plc, snr_fec, snr_clean) = (snr_plc / n, snr_fec / n, snr_clean / n);
    eprintln!(
        "{} losses, {recovered} rebuilt by FEC, FEC better in {better}; mean frame SNR: \
         no loss {snr_clean:.1} dB, FEC {snr_fec:.1} dB, PLC {snr_plc:.1} dB",
        usable.len()
    );
    assert!(
        usable.len() >= 15,
        "enough losses in speech: {}",
        usable.len()
    );
    assert!(
        recovered * 10 >= lost.len() * 9,
        "FEC present for {recovered} of {}",
        lost.len()
    );
    // measured: no loss 11.5 dB, FEC 9.5 dB, PLC 1.6 dB; FEC better in 27 of 28
    assert!(
        snr_fec >= snr_plc + 5.0,
        "FEC {snr_fec:.1} dB vs PLC {snr_plc:.1} dB"
    );
    assert!(
        snr_fec >= snr_clean - 4.0,
        "FEC {snr_fec:.1} dB vs no loss {snr_clean:.1} dB"
    );
    assert!(better * 10 >= usable.len() * 8, "FEC better in {better}");
}

/// A voice-like test signal for the session test (a steady tone would not do: libopus's SILK
/// layer stops adding FEC once its voice detector has taken a stationary tone for noise, see
/// `src/media/codec/opus.rs`): a 200 Hz fundamental with harmonics, gliding in pitch and level.
fn voiced(k: usize) -> Vec<i16> {
    (k * FRAME..(k + 1) * FRAME)
        .map(|i| {
            let t = i as f64 / 48_000.0;
            let glide = 200.0 * t + 8.0 * (2.0 * std::f64::consts::PI * 0.5 * t).sin();
            let phase = 2.0 * std::f64::consts::PI * glide;
            let envelope = 0.6 + 0.4 * (2.0 * std::f64::consts::PI * 3.0 * t).sin();
            let s: f64 = (1..=8)
                .map(|h| (phase * f64::from(h)).sin() / f64::from(h))
                .sum();
            (6000.0 * envelope * s) as i16
        })
        .collect()
}

fn opus_session(ssrc: u32) -> MediaSession {
    MediaSession::new(MediaConfig {
        codec: CodecParams::opus(),
        telephone_event_pt: Some(101),
        ptime_ms: 20,
        ssrc,
        initial_seq: (ssrc * 1000) as u16,
        initial_ts: ssrc.wrapping_mul(0x0101_0101),
    })
    .expect("opus session")
}

/// What [`run_link`] reports.
struct LinkRun {
    played: Vec<i16>,
    stats: termphone::media::MediaStats,
    dropped: u64,
    /// Dropped packets whose successor carried FEC.
    next_has_fec: u64,
}

/// Two Opus sessions over synthetic time for 10 s, a sending the voice-like signal to b; with
/// `lossy`, 10 % of the packets are lost (pseudo-random, never two in a row).
fn run_link(lossy: bool) -> LinkRun {
    let mut a = opus_session(1);
    let mut b = opus_session(2);
    assert_eq!(b.frame_samples(), FRAME);
    let t0 = Instant::now();
    let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
    let (mut dropped, mut next_has_fec, mut last_dropped) = (0, 0, false);
    let (mut out, mut wire, mut played) = (Vec::new(), Vec::new(), Vec::new());
    for k in 0..500 {
        let now = t0 + Duration::from_millis(20 * k as u64);
        wire.clear();
        a.on_tick(now, Some(&voiced(k)), &mut wire);
        for p in &wire {
            if last_dropped && has_fec(&p[12..]) {
                next_has_fec += 1;
            }
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let lose = lossy && k > 10 && !last_dropped && rng.is_multiple_of(10);
            last_dropped = lose;
            if lose {
                dropped += 1;
            } else {
                b.handle_rtp(now + Duration::from_millis(5), p);
            }
        }
        b.playout(now + Duration::from_millis(10), &mut out);
        assert_eq!(out.len(), FRAME);
        played.extend_from_slice(&out);
    }
    LinkRun {
        played,
        stats: b.stats(),
        dropped,
        next_has_fec,
    }
}

/// Two sessions over a link losing 10 % of the packets: the receiver counts the losses,
/// rebuilds every one whose next packet carries FEC, and plays what a lossless link plays.
#[test]
fn two_sessions_over_a_lossy_link_recover_with_fec() {
    let run = run_link(true);
    let s = run.stats;
    eprintln!(
        "dropped {}, {} followed by FEC: {s:?}",
        run.dropped, run.next_has_fec
    );
    // measured: 41 dropped, 30 of them followed by a packet with FEC, all 30 rebuilt
    assert!(run.dropped >= 30, "{}", run.dropped);
    assert_eq!(s.lost, run.dropped);
    assert_eq!(s.bad_packets, 0);
    assert_eq!(
        s.fec_recovered, run.next_has_fec,
        "every loss FEC could rebuild was rebuilt"
    );
    assert!(
        run.next_has_fec * 10 >= run.dropped * 6,
        "{} of {}",
        run.next_has_fec,
        run.dropped
    );
    assert_eq!(s.fec_recovered + s.concealed, run.dropped, "each loss once");
    assert!(s.buffer_ms <= 60.0, "{}", s.buffer_ms);

    // The signal holds: no hole after the start, and every half second sounds like the
    // lossless link's (the lag may differ by whole frames where the jitter buffer adapted).
    let clean = run_link(false);
    assert_eq!((clean.stats.lost, clean.stats.fec_recovered), (0, 0));
    let played = &run.played;
    let start = played.iter().position(|&v| v != 0).unwrap() / FRAME + 5;
    let weak = played[start * FRAME..]
        .chunks_exact(FRAME)
        .filter(|f| {
            let e: f64 = f.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / FRAME as f64;
            e.sqrt() < 250.0
        })
        .count();
    assert_eq!(weak, 0, "no holes in the audio");
    let segment = 25 * FRAME;
    let mut nccs = Vec::new();
    for seg in (start * FRAME..played.len() - segment - FRAME).step_by(segment) {
        let ncc = [seg - FRAME, seg, seg + FRAME]
            .into_iter()
            .map(|c| {
                snr_ncc(
                    &clean.played[c..c + segment],
                    &played[seg..seg + segment],
                    0,
                )
                .1
            })
            .fold(f64::MIN, f64::max);
        nccs.push(ncc);
    }
    let worst = nccs.iter().copied().fold(1.0, f64::min);
    eprintln!("half-second NCC against the lossless link: {nccs:.3?}");
    // measured: 0.976 to 1.000
    assert!(worst >= 0.95, "worst NCC {worst:.3}");
}

/// DTMF on an Opus call: telephone-events run at the 48 kHz clock and arrive as digits.
#[test]
fn dtmf_at_48_khz() {
    let mut a = opus_session(3);
    let mut b = opus_session(4);
    let t0 = Instant::now();
    a.send_dtmf("12#", t0);
    let mut wire = Vec::new();
    let mut out = Vec::new();
    let mut digits = String::new();
    let mut durations = Vec::new();
    for k in 0..60u64 {
        let now = t0 + Duration::from_millis(20 * k);
        wire.clear();
        a.on_tick(now, Some(&voiced(k as usize)), &mut wire);
        for p in &wire {
            if p[1] & 0x7f == 101 {
                durations.push(u16::from_be_bytes([p[14], p[15]]));
            }
            b.handle_rtp(now, p);
        }
        b.playout(now, &mut out);
        while let Some(termphone::media::MediaEvent::DtmfReceived(d)) = b.poll_event() {
            digits.push(d);
        }
    }
    assert_eq!(digits, "12#");
    // 20 ms steps of the event duration are 960 timestamp units at 48 kHz
    assert_eq!(durations[0], 960, "{durations:?}");
    assert_eq!(durations[1], 1920, "{durations:?}");
}

/// 40 packets of the voice-like signal (FEC in most), encoded once.
fn voiced_packets() -> &'static [Vec<u8>] {
    static PACKETS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    PACKETS.get_or_init(|| {
        let mut enc = Opus::with_settings(OpusSettings::default()).unwrap();
        (0..40)
            .map(|k| {
                let mut p = Vec::new();
                enc.encode(&voiced(k), &mut p);
                p
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random payloads, from empty to larger than any Opus packet: decode gives a frame or an
    /// error, FEC decode a frame or false, never a panic; the codec keeps working after.
    #[test]
    fn random_payloads_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..1600)) {
        let mut c = codec_by_name("opus").unwrap();
        let mut out = Vec::new();
        if c.decode(&payload, &mut out).is_ok() {
            prop_assert!(out.len() <= 5760, "{}", out.len());
            prop_assert!(out.len() % 120 == 0 || out.is_empty());
        } else {
            prop_assert!(out.is_empty());
        }
        let mut fec = Vec::new();
        if c.decode_fec(&payload, FRAME, &mut fec) {
            prop_assert_eq!(fec.len(), FRAME);
        } else {
            prop_assert!(fec.is_empty());
        }
        let _ = has_fec(&payload);
        out.clear();
        c.conceal(FRAME, &mut out);
        prop_assert_eq!(out.len(), FRAME);
    }

    /// Valid packets cut short or with bytes flipped: the same.
    #[test]
    fn damaged_packets_never_panic(
        frame in 0usize..40,
        cut in 0usize..200,
        flips in proptest::collection::vec((0usize..200, any::<u8>()), 0..6),
    ) {
        let packet = &voiced_packets()[frame];
        let mut damaged = packet.clone();
        for (at, x) in flips {
            if !damaged.is_empty() {
                let i = at % damaged.len();
                damaged[i] ^= x;
            }
        }
        damaged.truncate(cut.min(damaged.len()));
        let mut dec = Opus::new().unwrap();
        let mut out = Vec::new();
        let _ = dec.decode(&damaged, &mut out);
        let _ = dec.decode_fec(&damaged, FRAME, &mut out);
        out.clear();
        dec.decode(packet, &mut out).unwrap();
        prop_assert_eq!(out.len(), FRAME);
    }

    /// Through a session: RTP with random Opus payloads is played (decoded or concealed),
    /// undecodable ones are counted as bad packets, and every frame is a full frame.
    #[test]
    fn sessions_survive_random_payloads(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..30)) {
        let mut b = opus_session(5);
        let t0 = Instant::now();
        let mut out = Vec::new();
        for (k, payload) in payloads.iter().enumerate() {
            let now = t0 + Duration::from_millis(20 * k as u64);
            let mut rtp = vec![0x80, 111];
            rtp.extend_from_slice(&(k as u16).to_be_bytes());
            rtp.extend_from_slice(&((k as u32) * 960).to_be_bytes());
            rtp.extend_from_slice(&7u32.to_be_bytes());
            rtp.extend_from_slice(payload);
            b.handle_rtp(now, &rtp);
            b.playout(now, &mut out);
            prop_assert_eq!(out.len(), FRAME);
        }
        for k in 0..10u64 {
            b.playout(t0 + Duration::from_millis(20 * (payloads.len() as u64 + k)), &mut out);
            prop_assert_eq!(out.len(), FRAME);
        }
        let s = b.stats();
        prop_assert!(s.bad_packets <= payloads.len() as u64);
    }
}
