//! The sound-device side of a call's audio, at 48 kHz.
//!
//! Sound devices are opened at [`PIPELINE_RATE`] (48 kHz; the device streams convert from
//! whatever rate the hardware runs at), and the processing that belongs to a microphone and a
//! loudspeaker runs there, in 20 ms frames: noise suppression (RNNoise works at 48 kHz only)
//! and, on the playout side, the reference the echo canceller needs. At the codec's edge,
//! [`FrameResampler`] converts to and from the codec's rate (8 kHz for G.711, 16 kHz for
//! G.722, 48 kHz for Opus, where it is a plain copy).
//!
//! Files, tones and echo are not sound devices: they are read and written at the codec's rate
//! directly (a WAV file is resampled once, from its own rate, with no stage in between; a
//! recording keeps the call's own rate), so nothing here touches them.
//!
//! Sans-IO: frames in, frames out; no clock, no threads.

use std::collections::VecDeque;

use crate::audio::resample::Resampler;
use crate::media::denoise::Denoiser;

/// The rate of the device-side pipeline.
pub const PIPELINE_RATE: u32 = 48_000;

/// Fixed-size frames at one rate in, fixed-size frames at another out, with a constant delay.
///
/// The resampler gives out samples only once its filter has seen enough input ahead, so a
/// short lead of silence (the filter's look-ahead, converted to the output rate) is queued at
/// the start; from then on every call hands out a whole frame and the queue neither grows nor
/// runs dry (the ratio is exact). The delay is that lead: about 3.3 ms between 8 and 48 kHz,
/// 1.7 ms between 16 and 48 kHz, none between equal rates.
#[derive(Debug, Clone)]
pub struct FrameResampler {
    resampler: Option<Resampler>,
    input: Vec<f32>,
    output: Vec<f32>,
    queue: VecDeque<i16>,
    lead: usize,
    /// Output samples handed out as silence because the queue ran dry (never, in steady use).
    underruns: u64,
}

impl FrameResampler {
    /// Frames of `from` Hz in, `to` Hz out.
    pub fn new(from: u32, to: u32) -> FrameResampler {
        let resampler = (from != to).then(|| Resampler::new(from, to));
        let lead = resampler.as_ref().map_or(0, |r| {
            // The look-ahead in output samples, rounded up, plus one for the rounding of
            // positions between frames.
            (r.lookahead() as u64 * u64::from(to)).div_ceil(u64::from(from)) as usize + 1
        });
        FrameResampler {
            resampler,
            input: Vec::new(),
            output: Vec::new(),
            queue: std::iter::repeat_n(0, lead).collect(),
            lead,
            underruns: 0,
        }
    }

    /// Convert one frame: `input` at the source rate, `output` filled at the target rate.
    /// Their lengths must be the same duration (e.g. 960 and 160 samples for 20 ms).
    pub fn process(&mut self, input: &[i16], output: &mut [i16]) {
        match &mut self.resampler {
            None => self.queue.extend(input.iter().copied()),
            Some(r) => {
                self.input.clear();
                self.input
                    .extend(input.iter().map(|&s| f32::from(s) / 32768.0));
                self.output.clear();
                r.process(&self.input, &mut self.output);
                self.queue.extend(
                    self.output
                        .iter()
                        .map(|v| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16),
                );
            }
        }
        for s in output.iter_mut() {
            *s = self.queue.pop_front().unwrap_or_else(|| {
                self.underruns += 1;
                0
            });
        }
    }

    /// The delay this stage adds, in output samples.
    pub fn delay_samples(&self) -> usize {
        self.lead
    }

    /// Samples given out as silence because the stage ran dry.
    pub fn underruns(&self) -> u64 {
        self.underruns
    }
}

/// The microphone's way to the encoder: noise suppression at 48 kHz, then down to the codec's
/// rate.
#[derive(Debug)]
pub struct CapturePath {
    denoiser: Option<Denoiser>,
    noise_suppression: bool,
    down: FrameResampler,
    frame48: Vec<i16>,
}

impl CapturePath {
    /// Frames of `frame_48k` samples at 48 kHz in, at `codec_rate` out.
    pub fn new(codec_rate: u32, frame_48k: usize, noise_suppression: bool) -> CapturePath {
        CapturePath {
            denoiser: noise_suppression.then(|| Denoiser::new(PIPELINE_RATE, frame_48k)),
            noise_suppression,
            down: FrameResampler::new(PIPELINE_RATE, codec_rate),
            frame48: vec![0; frame_48k],
        }
    }

    /// The 48 kHz frame to fill from the microphone before [`CapturePath::process`].
    pub fn input(&mut self) -> &mut [i16] {
        &mut self.frame48
    }

    /// Process the frame in [`CapturePath::input`] into `out` at the codec's rate.
    pub fn process(&mut self, out: &mut [i16]) {
        if let Some(d) = &mut self.denoiser {
            d.process(&mut self.frame48);
        }
        self.down.process(&self.frame48, out);
    }

    /// Turn noise suppression on or off during a call. The suppressor, once made, stays in
    /// the path (bypassed when off) so that switching never changes the delay.
    pub fn set_noise_suppression(&mut self, on: bool) {
        self.noise_suppression = on;
        match &mut self.denoiser {
            Some(d) => d.set_enabled(on),
            None if on => {
                self.denoiser = Some(Denoiser::new(PIPELINE_RATE, self.frame48.len()));
            }
            None => {}
        }
    }

    pub fn noise_suppression(&self) -> bool {
        self.noise_suppression
    }
}

/// The decoder's way to the loudspeaker: up from the codec's rate to 48 kHz.
#[derive(Debug)]
pub struct PlayoutPath {
    up: FrameResampler,
    frame48: Vec<i16>,
}

impl PlayoutPath {
    /// Frames at `codec_rate` in, `frame_48k` samples at 48 kHz out.
    pub fn new(codec_rate: u32, frame_48k: usize) -> PlayoutPath {
        PlayoutPath {
            up: FrameResampler::new(codec_rate, PIPELINE_RATE),
            frame48: vec![0; frame_48k],
        }
    }

    /// Convert a decoded frame; the 48 kHz frame for the loudspeaker is returned.
    pub fn process(&mut self, decoded: &[i16]) -> &[i16] {
        self.up.process(decoded, &mut self.frame48);
        &self.frame48
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, freq: f64, n: usize, start: usize) -> Vec<i16> {
        (start..start + n)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                ((2.0 * std::f64::consts::PI * freq * t).sin() * 12000.0).round() as i16
            })
            .collect()
    }

    #[test]
    fn frame_resampler_never_runs_dry_and_keeps_a_constant_delay() {
        for (from, to, fin, fout) in [
            (48_000, 8000, 960, 160),
            (8000, 48_000, 160, 960),
            (48_000, 16_000, 960, 320),
            (16_000, 48_000, 320, 960),
            (48_000, 48_000, 960, 960),
            (48_000, 8000, 480, 80),
        ] {
            let mut r = FrameResampler::new(from, to);
            let mut out = vec![0; fout];
            for k in 0..500 {
                let input = tone(from, 440.0, fin, k * fin);
                r.process(&input, &mut out);
            }
            assert_eq!(r.underruns(), 0, "{from} -> {to}");
            // The queue holds no more than the lead plus a sample of rounding: no drift.
            assert!(
                r.queue.len() <= r.lead + 1,
                "{from} -> {to}: queue {} lead {}",
                r.queue.len(),
                r.lead
            );
        }
    }

    #[test]
    fn frame_resampler_passes_a_tone_at_the_stated_delay() {
        // 8 kHz -> 48 kHz: the output, shifted back by the stated delay, matches the tone
        // generated at 48 kHz.
        let mut r = FrameResampler::new(8000, 48_000);
        let delay = r.delay_samples();
        let mut got = Vec::new();
        let mut out = vec![0; 960];
        for k in 0..50 {
            r.process(&tone(8000, 440.0, 160, k * 160), &mut out);
            got.extend_from_slice(&out);
        }
        let want = tone(48_000, 440.0, got.len(), 0);
        let mut err = 0f64;
        let mut sig = 0f64;
        for i in 4800..got.len() - 4800 {
            let d = f64::from(got[i]) - f64::from(want[i - delay]);
            err += d * d;
            sig += f64::from(want[i - delay]).powi(2);
        }
        let snr = 10.0 * (sig / err).log10();
        assert!(snr > 30.0, "SNR {snr:.1} dB at delay {delay}");
    }

    #[test]
    fn capture_path_converts_to_the_codec_rate_and_toggles_noise_suppression() {
        let mut c = CapturePath::new(16_000, 960, false);
        assert!(!c.noise_suppression());
        let mut out = vec![0; 320];
        for k in 0..20 {
            c.input()
                .copy_from_slice(&tone(48_000, 300.0, 960, k * 960));
            c.process(&mut out);
        }
        assert!(out.iter().any(|&s| s.abs() > 5000));
        c.set_noise_suppression(true);
        assert!(c.noise_suppression());
        for k in 20..40 {
            c.input()
                .copy_from_slice(&tone(48_000, 300.0, 960, k * 960));
            c.process(&mut out);
        }
        c.set_noise_suppression(false);
        c.input().fill(0);
        c.process(&mut out);
        assert_eq!(c.down.underruns(), 0);
    }

    #[test]
    fn playout_path_upsamples_to_48k() {
        let mut p = PlayoutPath::new(8000, 960);
        let mut last = Vec::new();
        for k in 0..10 {
            last = p.process(&tone(8000, 1000.0, 160, k * 160)).to_vec();
        }
        assert_eq!(last.len(), 960);
        let energy: f64 = last.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / 960.0;
        assert!(energy.sqrt() > 8000.0, "rms {}", energy.sqrt());
    }
}
