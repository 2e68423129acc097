//! The committed ring sounds (`assets/`) are exactly what `scripts/make-ring-assets.sh` makes
//! from the design in `examples/make_ring_assets/synth.rs`, and they sound as that design says
//! (length, rate, cadence, frequencies by Goertzel), so neither can drift from the other
//! unnoticed. The design's numbers also match what `RingKind` tells its users.

#[path = "../examples/make_ring_assets/synth.rs"]
mod synth;

use std::path::PathBuf;

use termphone::audio::{goertzel, RingKind, RING_ASSET_RATE};

fn asset(kind: RingKind) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("assets")
        .join(format!("{}.wav", kind.name()))
}

fn read(kind: RingKind) -> (hound::WavSpec, Vec<i16>) {
    let path = asset(kind);
    let mut r = hound::WavReader::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = r.spec();
    let samples = r.samples::<i16>().collect::<Result<Vec<_>, _>>().unwrap();
    (spec, samples)
}

fn design(kind: RingKind) -> (Vec<i16>, f64, f64) {
    match kind {
        RingKind::Ringtone => (
            synth::ringtone(),
            synth::RINGTONE_CYCLE_S,
            synth::RINGTONE_ON_S,
        ),
        RingKind::Ringback => (
            synth::ringback(),
            synth::RINGBACK_CYCLE_S,
            synth::RINGBACK_ON_S,
        ),
    }
}

fn at(seconds: f64) -> usize {
    (seconds * f64::from(synth::RATE)).round() as usize
}

fn rms(x: &[i16]) -> f64 {
    let e: f64 = x.iter().map(|&s| (f64::from(s) / 32768.0).powi(2)).sum();
    (e / x.len().max(1) as f64).sqrt()
}

#[test]
fn the_binary_embeds_the_committed_files() {
    for kind in RingKind::ALL {
        let file = std::fs::read(asset(kind)).unwrap();
        assert!(file == kind.wav_bytes(), "{kind}: embedded bytes differ");
        assert!(file.len() < 600_000, "{kind}: {} bytes", file.len());
    }
}

#[test]
fn files_are_one_cycle_of_48_khz_mono_16_bit() {
    assert_eq!(synth::RATE, RING_ASSET_RATE);
    for kind in RingKind::ALL {
        let (spec, samples) = read(kind);
        let (_, cycle_s, on_s) = design(kind);
        assert_eq!(
            spec,
            hound::WavSpec {
                channels: 1,
                sample_rate: 48_000,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            },
            "{kind}"
        );
        assert_eq!(samples.len(), at(cycle_s), "{kind}: one cycle");
        assert_eq!(f64::from(kind.cycle_ms()), cycle_s * 1000.0, "{kind}");
        assert_eq!(f64::from(kind.on_ms()), on_s * 1000.0, "{kind}");
    }
}

/// Sample for sample what the generator makes now (within 1 LSB, for libm differences).
#[test]
fn files_are_what_the_generator_makes() {
    for kind in RingKind::ALL {
        let (_, file) = read(kind);
        let (made, _, _) = design(kind);
        assert_eq!(file.len(), made.len(), "{kind}");
        let worst = file
            .iter()
            .zip(&made)
            .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
            .max()
            .unwrap_or(0);
        assert!(
            worst <= 1,
            "{kind}: assets/{}.wav differs from the generator by up to {worst}; \
             run scripts/make-ring-assets.sh and commit the result",
            kind.name()
        );
    }
}

#[test]
fn ringkind_names_the_designed_frequencies() {
    let fundamentals = synth::ringtone_fundamentals();
    let told = RingKind::Ringtone.tones_hz();
    assert_eq!(told.len(), fundamentals.len());
    for (a, b) in told.iter().zip(&fundamentals) {
        assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    }
    assert_eq!(RingKind::Ringback.tones_hz(), [synth::RINGBACK_HZ]);
}

/// Sound in every 50 ms of the on period (but the last, where the ringtone fades out),
/// digital silence after it.
#[test]
fn cadence_is_as_designed() {
    for kind in RingKind::ALL {
        let (_, samples) = read(kind);
        let (_, _, on_s) = design(kind);
        let on = at(on_s);
        for (i, w) in samples[..on - at(0.05)].chunks_exact(at(0.05)).enumerate() {
            assert!(rms(w) > 0.01, "{kind}: quiet window {i} ({})", rms(w));
        }
        assert!(
            samples[on..].iter().all(|&s| s == 0),
            "{kind}: sound after {on_s} s"
        );
    }
}

/// Each note's fundamental is the strongest of the four just after the note starts.
#[test]
fn ringtone_notes_sound_in_their_order() {
    let (_, samples) = read(RingKind::Ringtone);
    let tones = RingKind::Ringtone.tones_hz();
    for &(start, semitones) in &synth::RINGTONE_NOTES {
        let f = synth::pitch(semitones);
        let w = &samples[at(start + 0.01)..at(start + 0.09)];
        let amps: Vec<f64> = tones.iter().map(|&t| goertzel(w, t, synth::RATE)).collect();
        let me = goertzel(w, f, synth::RATE);
        assert!(me > 0.1, "note {f:.1} Hz at {start} s: {me:.3}");
        assert!(
            amps.iter().all(|&a| a <= me + 1e-12),
            "note {f:.1} Hz at {start} s is not the strongest: {amps:.3?}"
        );
    }
}

#[test]
fn ringback_is_425_hz_at_about_minus_10_dbfs() {
    let (_, samples) = read(RingKind::Ringback);
    let tone = &samples[at(0.05)..at(0.95)];
    let a = goertzel(tone, synth::RINGBACK_HZ, synth::RATE);
    assert!(
        (a - synth::RINGBACK_AMPLITUDE).abs() < 0.005,
        "425 Hz at {a}"
    );
    for other in [400.0, 450.0, 850.0, 1275.0] {
        let b = goertzel(tone, other, synth::RATE);
        assert!(b < 0.005, "{other} Hz at {b}");
    }
    // the ramps are short: full level from 10 ms in to 10 ms before the end
    let edge = &samples[at(0.011)..at(0.035)];
    assert!(rms(edge) > 0.19, "{}", rms(edge));
}
