//! Audio level meters: RMS and peak of what is sent and what is heard, in dBFS, accumulated over
//! frames and read out (and reset) at whatever pace the caller wants, so that a front end gets a
//! few readings a second, not one per frame. Sans-IO.

use serde::Serialize;

/// The quietest level reported: digital silence and anything below the 16-bit noise floor.
pub const FLOOR_DBFS: f64 = -96.0;

/// One reading: levels relative to a full-scale square wave (a full-scale sine reads −3 dBFS
/// RMS, 0 dBFS peak).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Level {
    pub rms_dbfs: f64,
    pub peak_dbfs: f64,
}

impl Level {
    /// Silence.
    pub const SILENT: Level = Level {
        rms_dbfs: FLOOR_DBFS,
        peak_dbfs: FLOOR_DBFS,
    };
}

/// Accumulates frames between readings.
#[derive(Debug, Clone, Default)]
pub struct LevelMeter {
    sum_sq: f64,
    samples: u64,
    peak: u16,
}

impl LevelMeter {
    pub fn new() -> LevelMeter {
        LevelMeter::default()
    }

    /// Add a frame of 16-bit samples.
    pub fn add(&mut self, frame: &[i16]) {
        let mut sum = 0i64;
        let mut peak = self.peak;
        for &s in frame {
            sum += i64::from(s) * i64::from(s);
            peak = peak.max(s.unsigned_abs());
        }
        self.sum_sq += sum as f64;
        self.samples += frame.len() as u64;
        self.peak = peak;
    }

    /// The level since the last reading (silence if nothing was added), and start afresh.
    pub fn take(&mut self) -> Level {
        let level = if self.samples == 0 {
            Level::SILENT
        } else {
            let rms = (self.sum_sq / self.samples as f64).sqrt();
            Level {
                rms_dbfs: to_dbfs(rms),
                peak_dbfs: to_dbfs(f64::from(self.peak)),
            }
        };
        *self = LevelMeter::default();
        level
    }
}

/// Amplitude on the i16 scale to dBFS, rounded to 0.1 dB, never below [`FLOOR_DBFS`].
fn to_dbfs(amplitude: f64) -> f64 {
    if amplitude <= 0.0 {
        return FLOOR_DBFS;
    }
    let db = 20.0 * (amplitude / 32768.0).log10();
    ((db * 10.0).round() / 10.0).max(FLOOR_DBFS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_reads_the_floor() {
        let mut m = LevelMeter::new();
        assert_eq!(m.take(), Level::SILENT);
        m.add(&[0; 160]);
        assert_eq!(m.take(), Level::SILENT);
    }

    #[test]
    fn full_scale_sine_reads_minus_three_rms_and_zero_peak() {
        let mut m = LevelMeter::new();
        let frame: Vec<i16> = (0..48_000)
            .map(|i| {
                let x = (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 48_000.0).sin();
                (x * 32767.0).round() as i16
            })
            .collect();
        m.add(&frame);
        let l = m.take();
        assert!((l.rms_dbfs + 3.0).abs() < 0.1, "{l:?}");
        assert!(l.peak_dbfs > -0.1, "{l:?}");
        // Reset after reading.
        assert_eq!(m.take(), Level::SILENT);
    }

    #[test]
    fn twenty_db_quieter_reads_twenty_db_lower() {
        let mut loud = LevelMeter::new();
        let mut quiet = LevelMeter::new();
        let f: Vec<i16> = (0..960)
            .map(|i| if i % 2 == 0 { 10000 } else { -10000 })
            .collect();
        let g: Vec<i16> = f.iter().map(|&s| s / 10).collect();
        loud.add(&f);
        quiet.add(&g);
        let (a, b) = (loud.take(), quiet.take());
        assert!((a.rms_dbfs - b.rms_dbfs - 20.0).abs() < 0.1, "{a:?} {b:?}");
    }

    #[test]
    fn extreme_samples_do_not_overflow() {
        let mut m = LevelMeter::new();
        for _ in 0..10_000 {
            m.add(&[i16::MIN; 960]);
        }
        let l = m.take();
        assert!(l.rms_dbfs.abs() < 0.1 && l.peak_dbfs.abs() < 0.1, "{l:?}");
    }
}
