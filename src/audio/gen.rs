//! Generated sources and a null sink: for tests, headless modes and "no device" setups.

use super::convert::f32_to_i16;
use super::{AudioError, AudioSink, AudioSource, SourceState};

/// An endless sine tone.
#[derive(Debug, Clone)]
pub struct ToneSource {
    amplitude: f64,
    /// Phase step per sample, in radians.
    step: f64,
    phase: f64,
}

impl ToneSource {
    /// A sine of `freq_hz` at `amplitude` (1.0 = full scale, clamped to 0..=1) sampled at `rate` Hz.
    pub fn new(freq_hz: f32, amplitude: f32, rate: u32) -> ToneSource {
        let amplitude = if amplitude.is_finite() {
            f64::from(amplitude.clamp(0.0, 1.0))
        } else {
            0.0
        };
        let freq = if freq_hz.is_finite() {
            f64::from(freq_hz)
        } else {
            0.0
        };
        ToneSource {
            amplitude,
            step: std::f64::consts::TAU * freq / f64::from(rate.max(1)),
            phase: 0.0,
        }
    }
}

impl AudioSource for ToneSource {
    fn read(&mut self, frame: &mut [i16]) -> SourceState {
        for s in frame.iter_mut() {
            *s = f32_to_i16((self.amplitude * self.phase.sin()) as f32);
            self.phase += self.step;
            if self.phase >= std::f64::consts::TAU {
                self.phase -= std::f64::consts::TAU;
            }
        }
        SourceState::Data
    }
}

/// An endless source of silence.
#[derive(Debug, Clone, Copy, Default)]
pub struct SilenceSource;

impl AudioSource for SilenceSource {
    fn read(&mut self, frame: &mut [i16]) -> SourceState {
        frame.fill(0);
        SourceState::Data
    }
}

/// A sink that discards what it is given (and counts it).
#[derive(Debug, Clone, Copy, Default)]
pub struct NullSink {
    samples: u64,
}

impl NullSink {
    /// Samples written so far.
    pub fn samples_written(&self) -> u64 {
        self.samples
    }
}

impl AudioSink for NullSink {
    fn write(&mut self, frame: &[i16]) -> Result<(), AudioError> {
        self.samples += frame.len() as u64;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), AudioError> {
        Ok(())
    }
}

/// Amplitude (relative to full scale) of `freq_hz` in `samples`, by the Goertzel algorithm.
///
/// A pure tone of amplitude `a` at exactly that frequency gives about `a` (when the block
/// holds a whole number of periods); other frequencies give close to 0. For tone checks.
pub fn goertzel(samples: &[i16], freq_hz: f64, rate: u32) -> f64 {
    if samples.is_empty() || rate == 0 {
        return 0.0;
    }
    let w = std::f64::consts::TAU * freq_hz / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) / 32768.0 + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power.max(0.0).sqrt() / samples.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tone_has_its_frequency_and_amplitude() {
        let mut t = ToneSource::new(1000.0, 0.5, 8000);
        let mut buf = vec![0i16; 8000];
        assert_eq!(t.read(&mut buf), SourceState::Data);
        let a = goertzel(&buf, 1000.0, 8000);
        assert!((a - 0.5).abs() < 0.005, "amplitude {a}");
        assert!(goertzel(&buf, 1500.0, 8000) < 0.005);
        assert!(goertzel(&buf, 500.0, 8000) < 0.005);
    }

    #[test]
    fn tone_is_continuous_across_frames() {
        let mut a = ToneSource::new(440.0, 0.8, 16000);
        let mut b = ToneSource::new(440.0, 0.8, 16000);
        let mut whole = vec![0i16; 480];
        a.read(&mut whole);
        let mut parts = vec![0i16; 480];
        for c in parts.chunks_mut(160) {
            b.read(c);
        }
        assert_eq!(whole, parts);
    }

    #[test]
    fn silly_arguments_do_not_panic() {
        let mut buf = [1i16; 16];
        ToneSource::new(f32::NAN, f32::INFINITY, 0).read(&mut buf);
        assert_eq!(buf, [0; 16]);
    }

    #[test]
    fn silence_and_null() {
        let mut buf = [7i16; 160];
        assert_eq!(SilenceSource.read(&mut buf), SourceState::Data);
        assert!(buf.iter().all(|&s| s == 0));
        let mut n = NullSink::default();
        n.write(&buf).unwrap();
        n.finish().unwrap();
        assert_eq!(n.samples_written(), 160);
    }
}
