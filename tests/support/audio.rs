//! Audio checks for end-to-end tests: WAV loading, best-lag normalized cross-correlation,
//! Goertzel tone detection, DTMF detection, G.711 decoding.

use std::path::Path;

/// Load a WAV file as mono f32 in [-1, 1] (channels averaged). Returns (sample rate, samples).
pub fn read_wav_mono(path: &Path) -> Result<(u32, Vec<f32>), String> {
    let mut reader =
        hound::WavReader::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels.max(1));
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(|e| format!("read {}: {e}", path.display()))?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("read {}: {e}", path.display()))?
        }
    };
    let mono = interleaved
        .chunks(channels)
        .map(|c| c.iter().sum::<f32>() / c.len() as f32)
        .collect();
    Ok((spec.sample_rate, mono))
}

/// Write mono i16 samples as a 16-bit WAV.
pub fn write_wav_i16(path: &Path, rate: u32, samples: &[i16]) -> Result<(), String> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w =
        hound::WavWriter::create(path, spec).map_err(|e| format!("{}: {e}", path.display()))?;
    for &s in samples {
        w.write_sample(s).map_err(|e| e.to_string())?;
    }
    w.finalize().map_err(|e| e.to_string())
}

/// i16 PCM to f32 in [-1, 1].
pub fn i16_to_f32(samples: &[i16]) -> Vec<f32> {
    samples.iter().map(|&s| f32::from(s) / 32768.0).collect()
}

/// Result of aligning two signals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    /// Normalized cross-correlation, in [-1, 1]: from [`best_alignment`], sum(a[i]·b[i+lag])
    /// / sqrt(Ea·Eb) over the whole signals; from [`segmental_alignment`] (and so
    /// [`compare_wavs`]), the energy-weighted mean over 250 ms segments each aligned on its
    /// own. 1.0 means `b` holds an exact (scaled) copy of all of `a`; 0 if either is silent.
    pub ncc: f64,
    /// Samples by which `b` lags `a` (positive: the content of `a` appears later in `b`).
    pub lag: isize,
}

/// RMS level of a signal in dBFS (−inf for silence).
pub fn rms_dbfs(x: &[f32]) -> f64 {
    if x.is_empty() {
        return f64::NEG_INFINITY;
    }
    let e: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64;
    10.0 * e.log10()
}

/// Peak absolute sample.
pub fn peak(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |m, &v| m.max(v.abs()))
}

/// True when every sample is below `threshold` in absolute value.
pub fn is_silent(x: &[f32], threshold: f32) -> bool {
    peak(x) < threshold
}

/// Find the lag that maximises the normalized cross-correlation of `a` and `b` (FFT,
/// O(n log n); 10 s of 8 kHz audio takes well under a second even in a debug build).
/// Lags are searched over the full range −len(a)..len(b). Silence gives ncc 0, never NaN.
pub fn best_alignment(a: &[f32], b: &[f32]) -> Similarity {
    let ea: f64 = a.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    let eb: f64 = b.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    let none = Similarity { ncc: 0.0, lag: 0 };
    if a.is_empty() || b.is_empty() || ea <= 1e-12 || eb <= 1e-12 {
        return none;
    }
    let n = (a.len() + b.len()).next_power_of_two();
    let mut fa: Vec<(f64, f64)> = vec![(0.0, 0.0); n];
    let mut fb: Vec<(f64, f64)> = vec![(0.0, 0.0); n];
    for (d, &s) in fa.iter_mut().zip(a) {
        d.0 = f64::from(s);
    }
    for (d, &s) in fb.iter_mut().zip(b) {
        d.0 = f64::from(s);
    }
    fft(&mut fa, false);
    fft(&mut fb, false);
    // conj(A)·B -> c[k] = sum_i a[i]·b[i+k]
    for (x, y) in fa.iter_mut().zip(&fb) {
        let (ar, ai) = (x.0, -x.1);
        *x = (ar * y.0 - ai * y.1, ar * y.1 + ai * y.0);
    }
    fft(&mut fa, true);
    let norm = (ea * eb).sqrt();
    let mut best = none;
    let mut best_val = f64::NEG_INFINITY;
    for (k, c) in fa.iter().enumerate() {
        // index k < len(b) is lag k; index n-m is lag -m for m <= len(a)
        let lag = if k < b.len() {
            k as isize
        } else if n - k <= a.len() {
            -((n - k) as isize)
        } else {
            continue;
        };
        let v = c.0 / n as f64;
        if v > best_val {
            best_val = v;
            best = Similarity { ncc: v / norm, lag };
        }
    }
    if !best.ncc.is_finite() {
        return none;
    }
    best.ncc = best.ncc.clamp(-1.0, 1.0);
    best
}

/// Compare a reference WAV with a recorded one; a recording at another sample rate is
/// resampled to the reference's first.
pub fn compare_wavs(reference: &Path, recorded: &Path) -> Result<Similarity, String> {
    let (ra, a) = read_wav_mono(reference)?;
    let (rb, mut b) = read_wav_mono(recorded)?;
    if ra != rb {
        // A wide-band call records at 16 kHz: bring it to the reference's rate (termphone's
        // own resampler; it keeps the timing, so lags stay comparable).
        let mut r = termphone::audio::resample::Resampler::new(rb, ra);
        let mut out = Vec::with_capacity(b.len() * ra as usize / rb as usize + 64);
        r.process(&b, &mut out);
        r.flush(&mut out);
        b = out;
    }
    Ok(segmental_alignment(&a, &b, ra))
}

/// Similarity of audio whose delay may change during a call: a phone's adaptive jitter
/// buffer drops or inserts a frame in a pause, which shifts everything after it by 20 ms
/// and ruins a single whole-signal alignment. First the whole-signal alignment (`lag`), then
/// each 250 ms segment of `a` that holds sound (above −50 dBFS) is aligned on its own within
/// ±100 ms of the lag of the last segment that lined up (at first the whole-signal lag); `ncc` is the segments' NCC averaged with their energy as weights. A segment
/// of `a` missing from `b` counts as 0. Silence in `a` gives what [`best_alignment`] gives.
pub fn segmental_alignment(a: &[f32], b: &[f32], rate: u32) -> Similarity {
    let global = best_alignment(a, b);
    let seg = (rate / 4).max(1) as usize;
    let search = (rate / 10) as isize;
    // prefix sums of b's energy: eb(i..j) = pre[j] - pre[i]
    let mut pre = Vec::with_capacity(b.len() + 1);
    pre.push(0.0f64);
    for &v in b {
        let last = *pre.last().unwrap();
        pre.push(last + f64::from(v) * f64::from(v));
    }
    let (mut acc, mut weights) = (0.0f64, 0.0f64);
    // The lag segments are searched around: the whole-signal one at first, then that of the
    // last segment that lined up well, so a delay that drifts step by step is followed.
    let mut track = global.lag;
    for start in (0..a.len()).step_by(seg) {
        let s = &a[start..(start + seg).min(a.len())];
        let es: f64 = s.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        if es / (s.len() as f64) < 1e-5 {
            continue;
        }
        // c[k] = sum_i s[i]·b[lo + k + i] for k in 0..=2·search, by FFT (b outside its
        // range reads as silence).
        let lo = start as isize + track - search;
        let wlen = s.len() + 2 * search as usize;
        let n = (s.len() + wlen).next_power_of_two();
        let mut fs: Vec<(f64, f64)> = vec![(0.0, 0.0); n];
        let mut fw: Vec<(f64, f64)> = vec![(0.0, 0.0); n];
        for (d, &v) in fs.iter_mut().zip(s) {
            d.0 = f64::from(v);
        }
        for (k, d) in fw.iter_mut().take(wlen).enumerate() {
            let j = lo + k as isize;
            if j >= 0 && (j as usize) < b.len() {
                d.0 = f64::from(b[j as usize]);
            }
        }
        fft(&mut fs, false);
        fft(&mut fw, false);
        for (x, y) in fs.iter_mut().zip(&fw) {
            let (ar, ai) = (x.0, -x.1);
            *x = (ar * y.0 - ai * y.1, ar * y.1 + ai * y.0);
        }
        fft(&mut fs, true);
        let energy_at = |from: isize, len: usize| {
            let i0 = from.clamp(0, b.len() as isize) as usize;
            let i1 = (from + len as isize).clamp(0, b.len() as isize) as usize;
            pre[i1] - pre[i0]
        };
        let mut best = 0.0f64;
        let mut best_k = search as usize;
        for (k, c) in fs.iter().enumerate().take((2 * search) as usize + 1) {
            let eb = energy_at(lo + k as isize, s.len());
            if eb > 1e-12 {
                let v = c.0 / n as f64 / (es * eb).sqrt();
                if v > best {
                    (best, best_k) = (v, k);
                }
            }
        }
        if best >= 0.9 {
            track += best_k as isize - search;
        }
        acc += best * es;
        weights += es;
    }
    if weights <= 0.0 {
        return global;
    }
    Similarity {
        ncc: (acc / weights).clamp(-1.0, 1.0),
        lag: global.lag,
    }
}

/// In-place iterative radix-2 complex FFT; `inverse` does not scale by 1/n.
fn fft(buf: &mut [(f64, f64)], inverse: bool) {
    let n = buf.len();
    assert!(n.is_power_of_two());
    let mut j = 0usize;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            buf.swap(i, j);
        }
    }
    let sign = if inverse { 1.0 } else { -1.0 };
    let mut len = 2;
    while len <= n {
        let ang = sign * 2.0 * std::f64::consts::PI / len as f64;
        let (wr, wi) = (ang.cos(), ang.sin());
        for start in (0..n).step_by(len) {
            let (mut cr, mut ci) = (1.0f64, 0.0f64);
            for k in 0..len / 2 {
                let u = buf[start + k];
                let t = buf[start + k + len / 2];
                let v = (t.0 * cr - t.1 * ci, t.0 * ci + t.1 * cr);
                buf[start + k] = (u.0 + v.0, u.1 + v.1);
                buf[start + k + len / 2] = (u.0 - v.0, u.1 - v.1);
                let ncr = cr * wr - ci * wi;
                ci = cr * wi + ci * wr;
                cr = ncr;
            }
        }
        len <<= 1;
    }
}

/// Goertzel power of `freq` in `x`, as a fraction of the block's energy: about 1.0 for a pure
/// tone at `freq` (block long enough to resolve it), near 0 when absent, 0 for silence.
pub fn tone_ratio(x: &[f32], rate: u32, freq: f64) -> f64 {
    let n = x.len();
    let energy: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    if n == 0 || energy <= 1e-12 {
        return 0.0;
    }
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = f64::from(v) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    (power / (energy * n as f64 / 2.0)).clamp(0.0, 1.0)
}

/// True if `freq` carries at least `min_ratio` of the block's energy.
pub fn detect_tone(x: &[f32], rate: u32, freq: f64, min_ratio: f64) -> bool {
    tone_ratio(x, rate, freq) >= min_ratio
}

/// Fraction of `block_ms` blocks of `x` in which `freq` is detected (ratio >= `min_ratio`).
pub fn tone_coverage(x: &[f32], rate: u32, freq: f64, min_ratio: f64, block_ms: u32) -> f64 {
    let block = (rate * block_ms / 1000).max(1) as usize;
    let blocks: Vec<&[f32]> = x.chunks_exact(block).collect();
    if blocks.is_empty() {
        return 0.0;
    }
    let hits = blocks
        .iter()
        .filter(|b| detect_tone(b, rate, freq, min_ratio))
        .count();
    hits as f64 / blocks.len() as f64
}

const DTMF_LOW: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
const DTMF_HIGH: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const DTMF_KEYS: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// The in-band DTMF digit in one block (≥ 20 ms), if one low and one high tone dominate.
pub fn dtmf_in_block(x: &[f32], rate: u32) -> Option<char> {
    let best = |freqs: &[f64; 4]| {
        let r: Vec<f64> = freqs.iter().map(|&f| tone_ratio(x, rate, f)).collect();
        let (i, &m) = r
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap_or((0, &0.0));
        (i, m, r)
    };
    let (li, lm, _) = best(&DTMF_LOW);
    let (hi, hm, _) = best(&DTMF_HIGH);
    // each tone of a clean DTMF pair holds ~half the energy
    (lm > 0.2 && hm > 0.2 && lm + hm > 0.6).then_some(DTMF_KEYS[li][hi])
}

/// In-band DTMF digits in `x` (40 ms blocks; a digit counts once per run of blocks).
pub fn detect_dtmf(x: &[f32], rate: u32) -> String {
    let block = (rate as usize * 40 / 1000).max(1);
    let mut out = String::new();
    let mut prev = None;
    for b in x.chunks_exact(block) {
        let d = dtmf_in_block(b, rate);
        if let (Some(c), true) = (d, d != prev) {
            out.push(c);
        }
        prev = d;
    }
    out
}

/// G.711 µ-law byte to linear PCM (ITU-T G.711 / Sun g711.c).
pub fn ulaw_decode(u: u8) -> i16 {
    let u = !u;
    let t = ((i32::from(u & 0x0f) << 3) + 0x84) << ((u & 0x70) >> 4);
    (if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 }) as i16
}

/// G.711 A-law byte to linear PCM (ITU-T G.711 / Sun g711.c).
pub fn alaw_decode(a: u8) -> i16 {
    let a = a ^ 0x55;
    let mut t = i32::from(a & 0x0f) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

/// A sine tone, for tests: `secs` seconds at `freq` Hz and `amp` (0..1) full scale.
/// Write `secs` of a sine of `freq` Hz at `amp` (full scale 1.0) as an 8 kHz mono WAV file:
/// a test party's "voice", told apart from the others' by its frequency.
pub fn write_tone_wav(path: &Path, freq: f64, amp: f32, secs: f64) {
    let x: Vec<i16> = sine(8000, freq, amp, secs)
        .iter()
        .map(|v| (v * 32767.0) as i16)
        .collect();
    write_wav_i16(path, 8000, &x).unwrap();
}

pub fn sine(rate: u32, freq: f64, amp: f32, secs: f64) -> Vec<f32> {
    let n = (f64::from(rate) * secs) as usize;
    (0..n)
        .map(|i| {
            amp * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin() as f32
        })
        .collect()
}
