//! RNNoise on the capture path (`termphone::media::denoise`): in a noisy recording the noise
//! between words goes down by a lot, and the speech stays.

use termphone::audio::resample::Resampler;
use termphone::media::denoise::Denoiser;

fn speech_16k() -> Vec<f32> {
    let mut r = hound::WavReader::open(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/speech-8k.wav"
    ))
    .unwrap();
    let x: Vec<f32> = r
        .samples::<i16>()
        .map(|s| f32::from(s.unwrap()) / 32768.0)
        .collect();
    let mut up = Resampler::new(8000, 16000);
    let mut out = Vec::new();
    up.process(&x, &mut out);
    up.flush(&mut out);
    out
}

/// Deterministic white noise in [-amp, amp].
fn noise(n: usize, amp: f32) -> Vec<f32> {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * amp
        })
        .collect()
}

fn energy_db(x: &[f32]) -> f64 {
    let e = x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len().max(1) as f64;
    10.0 * e.max(1e-20).log10()
}

/// Run the denoiser over `x` (16 kHz) in 20 ms frames.
fn denoise(x: &[f32]) -> (Vec<f32>, Denoiser) {
    let mut d = Denoiser::new(16000, 320);
    let mut out = Vec::with_capacity(x.len());
    for chunk in x.chunks(320) {
        let mut f: Vec<i16> = chunk.iter().map(|v| (v * 32768.0) as i16).collect();
        f.resize(320, 0);
        d.process(&mut f);
        out.extend(f.iter().map(|&s| f32::from(s) / 32768.0));
    }
    (out, d)
}

#[test]
fn noise_between_words_drops_and_speech_stays() {
    // 1 s of noise alone, then the speech with the same noise (about 20 dB below the speech).
    let clean = speech_16k();
    let lead = 16000;
    let n = noise(lead + clean.len(), 0.03);
    let mut noisy = n.clone();
    for (i, s) in clean.iter().enumerate() {
        noisy[lead + i] += s;
    }
    let (out, d) = denoise(&noisy);
    // Noise alone (after RNNoise has had 0.4 s to learn it): at least 15 dB quieter.
    let (before, after) = (energy_db(&noisy[6400..lead]), energy_db(&out[6400..lead]));
    assert!(
        after < before - 15.0,
        "noise-only part: {before:.1} dB -> {after:.1} dB"
    );
    // The speech is still there: best-lag correlation with the clean speech (the stage
    // delays by about 10-20 ms) stays high, and higher than the noisy input's.
    let ncc = |a: &[f32], b: &[f32]| {
        let mut best = 0.0f64;
        for lag in 0..800 {
            let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
            for (i, &x) in a.iter().enumerate() {
                let y = f64::from(*b.get(i + lag).unwrap_or(&0.0));
                ab += f64::from(x) * y;
                aa += f64::from(x).powi(2);
                bb += y * y;
            }
            best = best.max(ab / (aa * bb).sqrt());
        }
        best
    };
    let speech_part = &clean[..clean.len() / 2];
    let (in_ncc, out_ncc) = (
        ncc(speech_part, &noisy[lead..]),
        ncc(speech_part, &out[lead..]),
    );
    eprintln!("noise {before:.1} -> {after:.1} dB; speech ncc {in_ncc:.3} -> {out_ncc:.3}");
    assert!(
        out_ncc > 0.8,
        "speech kept: {out_ncc:.3} (noisy input {in_ncc:.3})"
    );
    assert!(d.voice_probability() >= 0.0 && d.voice_probability() <= 1.0);
    assert_eq!(d.underruns(), 0, "the lead frame covers the pipeline delay");
}

#[test]
fn any_rate_and_silence_go_through_unharmed() {
    for (rate, frame) in [(8000u32, 160usize), (16000, 320), (48000, 960)] {
        let mut d = Denoiser::new(rate, frame);
        let mut f = vec![0i16; frame];
        for _ in 0..100 {
            d.process(&mut f);
            assert!(
                f.iter().all(|&s| s.abs() < 8),
                "{rate}: silence stays silence"
            );
        }
        assert_eq!(d.underruns(), 0, "{rate}");
    }
}
