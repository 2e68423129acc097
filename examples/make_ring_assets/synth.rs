//! The ring sounds' design, and their synthesis: the single source of truth for
//! `assets/ringtone.wav` and `assets/ringback.wav`.
//!
//! Used by the generator (`examples/make_ring_assets`, run by `scripts/make-ring-assets.sh`)
//! and by `tests/ring_assets.rs`, which checks that the committed files are what these
//! parameters produce. Everything is computed from sines and envelopes here; nothing is
//! sampled or copied from elsewhere.
//!
//! - Ringtone (incoming call): a soft chime, the rising arpeggio E5 G#5 B5 E6 played twice
//!   (at 0 s and 1 s), each note a decaying sum of three harmonic partials; the sound fades to
//!   nothing by 2 s, then 2 s of silence: a 4 s cycle.
//! - Ringback (caller side, the remote phone is ringing): 425 Hz, 1 s on, 4 s off, the
//!   European tone of ETSI ES 201 970 (the CEPT recommendation, within ITU-T E.180's range of
//!   400-450 Hz, 0.67-1.5 s on, 3-5 s off); one 5 s cycle.

/// Sample rate of both files.
pub const RATE: u32 = 48_000;

/// Length of the ringtone's cycle, in seconds.
pub const RINGTONE_CYCLE_S: f64 = 4.0;
/// The ringtone sounds during the first this many seconds of its cycle, then is silent.
pub const RINGTONE_ON_S: f64 = 2.0;
/// The ringtone's notes: (start in seconds, semitones above A4 = 440 Hz).
pub const RINGTONE_NOTES: [(f64, i32); 8] = [
    (0.00, 7),  // E5
    (0.15, 11), // G#5
    (0.30, 14), // B5
    (0.45, 19), // E6
    (1.00, 7),
    (1.15, 11),
    (1.30, 14),
    (1.45, 19),
];
/// Partials of every note: (multiple of the fundamental, relative amplitude, decay time
/// constant in seconds).
pub const RINGTONE_PARTIALS: [(f64, f64, f64); 3] =
    [(1.0, 1.0, 0.35), (2.0, 0.3, 0.18), (3.0, 0.1, 0.12)];
/// Each note's raised-cosine attack, in seconds.
pub const RINGTONE_ATTACK_S: f64 = 0.004;
/// The raised-cosine fade that ends the sound at [`RINGTONE_ON_S`], in seconds.
pub const RINGTONE_FADE_S: f64 = 0.15;
/// The ringtone's peak, relative to full scale (-6 dBFS).
pub const RINGTONE_PEAK: f64 = 0.5;

/// The ringback's frequency.
pub const RINGBACK_HZ: f64 = 425.0;
/// The ringback's tone length, in seconds.
pub const RINGBACK_ON_S: f64 = 1.0;
/// The ringback's cycle (tone plus silence), in seconds.
pub const RINGBACK_CYCLE_S: f64 = 5.0;
/// The ringback's amplitude, relative to full scale (about -10.5 dBFS).
pub const RINGBACK_AMPLITUDE: f64 = 0.3;
/// Raised-cosine ramps at both ends of the ringback's tone, in seconds (no clicks).
pub const RINGBACK_RAMP_S: f64 = 0.01;

/// Frequency of the note `semitones` above A4 = 440 Hz, equal temperament.
pub fn pitch(semitones: i32) -> f64 {
    440.0 * 2f64.powf(f64::from(semitones) / 12.0)
}

/// The distinct fundamentals of the ringtone's notes, in the order they first sound.
pub fn ringtone_fundamentals() -> Vec<f64> {
    let mut out: Vec<f64> = Vec::new();
    for &(_, semi) in &RINGTONE_NOTES {
        let f = pitch(semi);
        if !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

/// Rising half of a raised cosine over `len`, at `t` (0 before, 1 after).
fn rise(t: f64, len: f64) -> f64 {
    if t <= 0.0 {
        0.0
    } else if t >= len {
        1.0
    } else {
        0.5 - 0.5 * (std::f64::consts::PI * t / len).cos()
    }
}

fn samples(seconds: f64) -> usize {
    (seconds * f64::from(RATE)).round() as usize
}

fn to_i16(x: &[f64]) -> Vec<i16> {
    x.iter()
        .map(|&v| (v * 32767.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// One cycle of the ringtone, mono 16-bit at [`RATE`].
pub fn ringtone() -> Vec<i16> {
    let rate = f64::from(RATE);
    let mut x = vec![0.0f64; samples(RINGTONE_CYCLE_S)];
    let on_end = samples(RINGTONE_ON_S);
    for &(start, semi) in &RINGTONE_NOTES {
        let f = pitch(semi);
        for (i, v) in x.iter_mut().enumerate().take(on_end).skip(samples(start)) {
            let t = i as f64 / rate - start;
            let mut s = 0.0;
            for &(mult, amp, tau) in &RINGTONE_PARTIALS {
                s += amp * (-t / tau).exp() * (std::f64::consts::TAU * f * mult * t).sin();
            }
            *v += rise(t, RINGTONE_ATTACK_S) * s;
        }
    }
    for (i, v) in x.iter_mut().enumerate().take(on_end) {
        let left = RINGTONE_ON_S - i as f64 / rate;
        *v *= rise(left, RINGTONE_FADE_S);
    }
    let peak = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let gain = if peak > 0.0 {
        RINGTONE_PEAK / peak
    } else {
        0.0
    };
    x.iter_mut().for_each(|v| *v *= gain);
    to_i16(&x)
}

/// One cycle of the ringback, mono 16-bit at [`RATE`].
pub fn ringback() -> Vec<i16> {
    let rate = f64::from(RATE);
    let mut x = vec![0.0f64; samples(RINGBACK_CYCLE_S)];
    for (i, v) in x.iter_mut().enumerate().take(samples(RINGBACK_ON_S)) {
        let t = i as f64 / rate;
        let ramp = rise(t, RINGBACK_RAMP_S) * rise(RINGBACK_ON_S - t, RINGBACK_RAMP_S);
        *v = RINGBACK_AMPLITUDE * ramp * (std::f64::consts::TAU * RINGBACK_HZ * t).sin();
    }
    to_i16(&x)
}
