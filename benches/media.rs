//! Per-frame media costs (20 ms): G.711 (8 kHz), G.722 (16 kHz), Opus (48 kHz, libopus),
//! loss concealment and FEC, jitter buffer, a whole MediaSession round, and the sound-device
//! stages at 48 kHz: echo cancellation, RNNoise, conversion to and from the codec's rate, level
//! meters.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use termphone::media::aec::EchoCanceller;
use termphone::media::codec::g711::{alaw_decode, alaw_encode, ulaw_decode, ulaw_encode};
use termphone::media::codec::g722::{Decoder as G722Decoder, Encoder as G722Encoder, G722};
use termphone::media::codec::opus::{has_fec, Opus};
use termphone::media::codec::Codec;
use termphone::media::jitter::{JitterBuffer, JitterConfig};
use termphone::media::{CodecParams, MediaConfig, MediaSession, RtpPacket};

fn speechish_frame() -> Vec<i16> {
    (0..160)
        .map(|i| {
            let t = i as f64 / 8000.0;
            (6000.0 * (2.0 * std::f64::consts::PI * 300.0 * t).sin()
                + 3000.0 * (2.0 * std::f64::consts::PI * 1170.0 * t).sin()) as i16
        })
        .collect()
}

fn g711(c: &mut Criterion) {
    let pcm = speechish_frame();
    let mut enc = Vec::with_capacity(160);
    let mut dec = Vec::with_capacity(160);
    let ulaw: Vec<u8> = pcm.iter().map(|&s| ulaw_encode(s)).collect();
    let alaw: Vec<u8> = pcm.iter().map(|&s| alaw_encode(s)).collect();
    c.bench_function("ulaw_encode_frame160", |b| {
        b.iter(|| {
            enc.clear();
            enc.extend(black_box(&pcm).iter().map(|&s| ulaw_encode(s)));
            black_box(&enc);
        })
    });
    c.bench_function("ulaw_decode_frame160", |b| {
        b.iter(|| {
            dec.clear();
            dec.extend(black_box(&ulaw).iter().map(|&c| ulaw_decode(c)));
            black_box(&dec);
        })
    });
    c.bench_function("alaw_encode_frame160", |b| {
        b.iter(|| {
            enc.clear();
            enc.extend(black_box(&pcm).iter().map(|&s| alaw_encode(s)));
            black_box(&enc);
        })
    });
    c.bench_function("alaw_decode_frame160", |b| {
        b.iter(|| {
            dec.clear();
            dec.extend(black_box(&alaw).iter().map(|&c| alaw_decode(c)));
            black_box(&dec);
        })
    });
}

/// 20 ms at 16 kHz with energy in both G.722 sub-bands.
fn wideband_frame() -> Vec<i16> {
    (0..320)
        .map(|i| {
            let t = i as f64 / 16000.0;
            let w = |f: f64| (2.0 * std::f64::consts::PI * f * t).sin();
            (6000.0 * w(300.0) + 3000.0 * w(1170.0) + 1500.0 * w(5100.0)) as i16
        })
        .collect()
}

fn g722(c: &mut Criterion) {
    let pcm = wideband_frame();
    let mut enc = G722Encoder::new();
    let mut bits = Vec::with_capacity(160);
    enc.encode(&pcm, &mut bits);
    let mut out = Vec::with_capacity(320);
    c.bench_function("g722_encode_frame320", |b| {
        b.iter(|| {
            bits.clear();
            enc.encode(black_box(&pcm), &mut bits);
            black_box(&bits);
        })
    });
    let mut dec = G722Decoder::new();
    c.bench_function("g722_decode_frame160", |b| {
        b.iter(|| {
            out.clear();
            dec.decode(black_box(&bits), &mut out);
            black_box(&out);
        })
    });
    // a good frame and then a lost one: decode + pitch search, repetition and the re-coding
    // of the concealment into the decoder state (subtract g722_decode_frame160)
    let mut codec = G722::new();
    c.bench_function("g722_decode_then_conceal_frame320", |b| {
        b.iter(|| {
            out.clear();
            codec.decode(black_box(&bits), &mut out).unwrap();
            codec.conceal(320, &mut out);
            black_box(&out);
        })
    });
    let narrow = speechish_frame();
    let ulaw: Vec<u8> = narrow.iter().map(|&s| ulaw_encode(s)).collect();
    let mut g711 = termphone::media::codec::g711::G711::new(termphone::media::codec::g711::Law::Mu);
    c.bench_function("g711_decode_then_conceal_frame160", |b| {
        b.iter(|| {
            out.clear();
            g711.decode(black_box(&ulaw), &mut out).unwrap();
            g711.conceal(160, &mut out);
            black_box(&out);
        })
    });
}

/// 100 frames (2 s) of 20 ms of the test speech (tests/data/speech-8k.wav from 0.5 s on),
/// resampled to 48 kHz with termphone's resampler.
fn speech_frames_48k() -> Vec<Vec<i16>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/speech-8k.wav");
    let mut reader = hound::WavReader::open(path).expect("speech-8k.wav");
    let input: Vec<f32> = reader
        .samples::<i16>()
        .map(|s| f32::from(s.expect("sample")))
        .collect();
    let mut rs = termphone::audio::resample::Resampler::new(8000, 48_000);
    let mut up = Vec::new();
    rs.process(&input, &mut up);
    rs.flush(&mut up);
    up[24_000..]
        .chunks_exact(960)
        .take(100)
        .map(|f| {
            f.iter()
                .map(|&v| v.clamp(-32768.0, 32767.0) as i16)
                .collect()
        })
        .collect()
}

/// Opus at the defaults (32 kbit/s, complexity 8, FEC for 10 % loss): encode, decode, a frame
/// rebuilt from the next packet's FEC, and a concealed frame (libopus PLC).
fn opus(c: &mut Criterion) {
    let frames = speech_frames_48k();
    let mut enc = Opus::new().expect("opus");
    let packets: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut p = Vec::new();
            enc.encode(f, &mut p);
            p
        })
        .collect();
    let with_fec: Vec<&Vec<u8>> = packets.iter().filter(|p| has_fec(p)).collect();
    assert!(!with_fec.is_empty(), "speech gets FEC");
    let mut bytes = Vec::with_capacity(4000);
    let mut k = 0;
    c.bench_function("opus_encode_frame960", |b| {
        b.iter(|| {
            bytes.clear();
            enc.encode(black_box(&frames[k % frames.len()]), &mut bytes);
            k += 1;
            black_box(&bytes);
        })
    });
    let mut dec = Opus::new().expect("opus");
    let mut out = Vec::with_capacity(960);
    let mut k = 0;
    c.bench_function("opus_decode_frame960", |b| {
        b.iter(|| {
            out.clear();
            dec.decode(black_box(&packets[k % packets.len()]), &mut out)
                .unwrap();
            k += 1;
            black_box(&out);
        })
    });
    let mut k = 0;
    c.bench_function("opus_decode_fec_frame960", |b| {
        b.iter(|| {
            out.clear();
            let ok = dec.decode_fec(black_box(with_fec[k % with_fec.len()]), 960, &mut out);
            k += 1;
            black_box(ok);
            black_box(&out);
        })
    });
    c.bench_function("opus_conceal_frame960", |b| {
        b.iter(|| {
            out.clear();
            dec.conceal(960, &mut out);
            black_box(&out);
        })
    });
}

fn jitter(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::new(8000, 20));
    let mut k: u64 = 0;
    let payload = vec![0xffu8; 160];
    c.bench_function("jitter_push_pop_frame", |b| {
        b.iter(|| {
            let now = t0 + Duration::from_millis(20 * k);
            let pkt = RtpPacket {
                seq: k as u16,
                timestamp: (k as u32).wrapping_mul(160),
                ssrc: 1,
                payload: payload.clone(),
                ..RtpPacket::default()
            };
            jb.push(now, pkt);
            black_box(jb.pop(now));
            k += 1;
        })
    });
}

fn session(c: &mut Criterion) {
    let cfg = |ssrc| MediaConfig {
        codec: CodecParams::pcmu(),
        telephone_event_pt: Some(101),
        ptime_ms: 20,
        ssrc,
        initial_seq: 0,
        initial_ts: 0,
    };
    let mut a = MediaSession::new(cfg(1)).expect("PCMU session");
    let mut b = MediaSession::new(cfg(2)).expect("PCMU session");
    let t0 = Instant::now();
    let pcm = speechish_frame();
    let mut out = Vec::new();
    let mut frame = Vec::with_capacity(160);
    let mut k: u64 = 0;
    c.bench_function("session_tick_rtp_playout_frame", |bn| {
        bn.iter(|| {
            let now = t0 + Duration::from_millis(20 * k);
            out.clear();
            a.on_tick(now, Some(&pcm), &mut out);
            for p in &out {
                b.handle_rtp(now, p);
            }
            b.playout(now, &mut frame);
            black_box(&frame);
            k += 1;
        })
    });
}

/// Echo cancellation (sonora's AEC3) on one 20 ms frame at 48 kHz: the far-end speech as the
/// render reference, the microphone its echo (30 ms later, -6 dB, plus a short tail), after the
/// canceller has converged on 4 s of it. Render + capture: what the capture path pays per tick.
fn aec(c: &mut Criterion) {
    let far: Vec<i16> = speech_frames_48k().concat();
    let delay = 1440;
    let mic: Vec<i16> = (0..far.len())
        .map(|i| {
            let at = |d: usize| i.checked_sub(d).map_or(0.0, |j| f32::from(far[j]));
            (0.5 * at(delay) + 0.2 * at(delay + 240) - 0.1 * at(delay + 1200)) as i16
        })
        .collect();
    let frames: Vec<(&[i16], &[i16])> = far.chunks_exact(960).zip(mic.chunks_exact(960)).collect();
    let mut aec = EchoCanceller::new().expect("echo canceller");
    let mut frame = vec![0i16; 960];
    for (f, m) in frames.iter().cycle().take(200) {
        frame.copy_from_slice(m);
        aec.render(f).unwrap();
        aec.capture(&mut frame).unwrap();
    }
    let mut k = 0;
    c.bench_function("aec 20 ms frame (render+capture)", |b| {
        b.iter(|| {
            let (f, m) = frames[k % frames.len()];
            frame.copy_from_slice(m);
            aec.render(black_box(f)).unwrap();
            aec.capture(black_box(&mut frame)).unwrap();
            k += 1;
            black_box(&frame);
        })
    });
}

/// The other sound-device stages, per 20 ms frame at 48 kHz (960 samples).
fn device_stages(c: &mut Criterion) {
    use termphone::media::denoise::Denoiser;
    use termphone::media::levels::LevelMeter;
    use termphone::media::pipeline::FrameResampler;
    let frame48: Vec<i16> = (0..960)
        .map(|i| {
            let t = i as f64 / 48_000.0;
            (6000.0 * (2.0 * std::f64::consts::PI * 300.0 * t).sin()
                + 3000.0 * (2.0 * std::f64::consts::PI * 1170.0 * t).sin()) as i16
        })
        .collect();
    let mut d = Denoiser::new(48_000, 960);
    let mut buf = frame48.clone();
    c.bench_function("rnnoise_frame960", |b| {
        b.iter(|| {
            buf.copy_from_slice(&frame48);
            d.process(black_box(&mut buf));
        })
    });
    for (name, from, to, n_in, n_out) in [
        ("resample_48k_to_8k_frame", 48_000, 8000, 960, 160),
        ("resample_8k_to_48k_frame", 8000, 48_000, 160, 960),
        ("resample_48k_to_16k_frame", 48_000, 16_000, 960, 320),
        ("resample_16k_to_48k_frame", 16_000, 48_000, 320, 960),
    ] {
        let mut r = FrameResampler::new(from, to);
        let input: Vec<i16> = frame48.iter().step_by(960 / n_in).copied().collect();
        let mut out = vec![0i16; n_out];
        c.bench_function(name, |b| {
            b.iter(|| r.process(black_box(&input), black_box(&mut out)))
        });
    }
    let mut m = LevelMeter::new();
    c.bench_function("level_meter_frame960", |b| {
        b.iter(|| m.add(black_box(&frame48)))
    });
}

criterion_group!(
    benches,
    g711,
    g722,
    opus,
    jitter,
    session,
    aec,
    device_stages
);
criterion_main!(benches);
