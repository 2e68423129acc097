//! Per-frame media costs (20 ms, 8 kHz): G.711, jitter buffer, a whole MediaSession round.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use termphone::media::codec::g711::{alaw_decode, alaw_encode, ulaw_decode, ulaw_encode};
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

criterion_group!(benches, g711, jitter, session);
criterion_main!(benches);
