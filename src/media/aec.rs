//! Acoustic echo cancellation for the capture path: WebRTC's AEC3 through `sonora`, a pure-Rust
//! port of the WebRTC audio processing module. Sans-IO: samples in, samples out; no clock, no
//! threads, no I/O.
//!
//! # How to feed it
//!
//! - Both directions are **mono i16 at 48 kHz** (the pipeline's internal rate), in frames that
//!   are a whole number of 10 ms (480 samples); the pipeline's 20 ms frame of 960 samples is the
//!   normal case. Each frame is handed to sonora as 10 ms pieces.
//! - The **render reference** ([`EchoCanceller::render`]) is exactly the audio handed to the
//!   loudspeaker: the far end after decoding, jitter buffer, concealment, mixing and any volume
//!   applied in software, at 48 kHz, as it goes to the output device. Whatever reaches the
//!   loudspeaker but is missing from the reference (a local ringtone, say) is not cancelled.
//! - The **capture** frame ([`EchoCanceller::capture`]) is the microphone at 48 kHz, before
//!   noise suppression (RNNoise), resampling to the codec's rate and encoding. It is cleaned in
//!   place.
//! - Every media tick: **render first, then capture**, one frame each. If there is no far-end
//!   audio for a tick, render silence rather than skipping the call, so that both streams keep
//!   the same clock. The canceller finds the echo's delay itself (the render reference leads the
//!   echo by the output plus input device buffering, up to a few hundred ms);
//!   [`EchoCanceller::set_delay_hint`] can give it a starting point, e.g. from the devices'
//!   playback and capture timestamps.
//! - It adapts from the first far-end speech on (the adaptive filter starts empty): on the
//!   synthetic echo of tests/media_aec.rs the echo was 32 dB down over the first 2 s and 48 dB
//!   down from 4 s on.
//!
//! What it does to the capture signal besides removing echo: AEC3's high-pass filter (DC and
//! rumble below about 80 Hz), and about 9 ms of delay (band splitting and block processing).
//! sonora's noise suppressor and gain control are off (RNNoise does the noise; the level is left
//! alone). It processes the whole 48 kHz band.
//!
//! Frames of any other length are refused with [`AecError::FrameLength`] and left untouched.
//! Any i16 content is valid input; full-scale input is processed (and clamped on the way back to
//! i16) like any other.

use std::fmt;

use sonora::config::{EchoCanceller as EchoCancellerConfig, MaxProcessingRate, Pipeline};
use sonora::{AudioProcessing, Config, StreamConfig};

/// The only sample rate the canceller takes (the pipeline's internal rate).
pub const RATE: u32 = 48_000;
/// One sonora frame: 10 ms at 48 kHz.
pub const CHUNK: usize = 480;
/// The pipeline's frame: 20 ms at 48 kHz.
pub const FRAME: usize = 960;

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AecError {
    /// The frame is empty or not a whole number of 10 ms chunks at 48 kHz (480 samples).
    FrameLength {
        /// The frame's length in samples.
        got: usize,
    },
}

impl fmt::Display for AecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AecError::FrameLength { got } => write!(
                f,
                "echo canceller frame of {got} samples: need a non-zero multiple of {CHUNK} \
                 (10 ms mono at 48 kHz; 960 for 20 ms)"
            ),
        }
    }
}

impl std::error::Error for AecError {}

/// What the canceller reports about itself. Each field is `None` until sonora has produced it
/// (no capture frame processed yet) or if it is not a finite number.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AecStats {
    /// Echo return loss enhancement, dB: sonora's own estimate of how much its linear filter
    /// removes (10·log10 of echo power over residual power). It does not count the residual
    /// echo suppressor after the filter, so the real attenuation is usually higher.
    pub erle_db: Option<f64>,
    /// Echo return loss, dB: how much weaker the echo is than the render reference.
    pub erl_db: Option<f64>,
    /// The delay between the render reference and its echo in the capture signal that the
    /// canceller is currently aligned to, ms (a multiple of 4 ms, AEC3's block).
    pub delay_ms: Option<i32>,
    /// Render frames (of any whole number of 10 ms) accepted so far.
    pub render_frames: u64,
    /// Capture frames accepted so far.
    pub capture_frames: u64,
}

/// A streaming echo canceller for mono 48 kHz audio; see the module documentation for how to
/// feed it. This wrapper allocates nothing per frame (its f32 buffers are made once); sonora
/// 0.2's AEC3 itself allocates small scratch vectors per 4 ms block (87 allocations per 20 ms
/// frame, counted in tests/media_aec.rs).
pub struct EchoCanceller {
    apm: AudioProcessing,
    /// One 10 ms chunk as f32 on the ±1 scale, in and out (reused).
    input: Vec<f32>,
    output: Vec<f32>,
    delay_hint_ms: Option<u32>,
    render_frames: u64,
    capture_frames: u64,
}

impl fmt::Debug for EchoCanceller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EchoCanceller")
            .field("delay_hint_ms", &self.delay_hint_ms)
            .field("render_frames", &self.render_frames)
            .field("capture_frames", &self.capture_frames)
            .finish_non_exhaustive()
    }
}

impl EchoCanceller {
    /// A canceller with AEC3 and its high-pass filter on, sonora's noise suppression and gain
    /// control off.
    ///
    /// Cannot fail with sonora 0.2 (its builder is infallible); the `Result` leaves room for a
    /// back end that can.
    pub fn new() -> Result<EchoCanceller, AecError> {
        let config = Config {
            echo_canceller: Some(EchoCancellerConfig::default()),
            noise_suppression: None,
            gain_controller2: None,
            // Process the whole 48 kHz band: sonora's default (32 kHz) cuts everything above
            // about 14 kHz (-21 dB at 15 kHz, measured), which full-band Opus would carry. Same
            // cost and echo reduction either way.
            pipeline: Pipeline {
                maximum_internal_processing_rate: MaxProcessingRate::Rate48kHz,
                ..Pipeline::default()
            },
            ..Config::default()
        };
        let stream = StreamConfig::new(RATE, 1);
        let apm = AudioProcessing::builder()
            .config(config)
            .capture_config(stream)
            .render_config(stream)
            .build();
        Ok(EchoCanceller {
            apm,
            input: vec![0.0; CHUNK],
            output: vec![0.0; CHUNK],
            delay_hint_ms: None,
            render_frames: 0,
            capture_frames: 0,
        })
    }

    fn check_len(len: usize) -> Result<(), AecError> {
        if len == 0 || !len.is_multiple_of(CHUNK) {
            return Err(AecError::FrameLength { got: len });
        }
        Ok(())
    }

    /// Hand over the frame just given to the loudspeaker (the echo reference). Call it before
    /// [`capture`](Self::capture) on every tick.
    pub fn render(&mut self, far: &[i16]) -> Result<(), AecError> {
        Self::check_len(far.len())?;
        for chunk in far.chunks_exact(CHUNK) {
            to_f32(chunk, &mut self.input);
            // The render output is the input unchanged (no render-side processing is on).
            // With a valid 48 kHz mono format sonora returns no error.
            let _ = self
                .apm
                .process_render_f32(&[&self.input], &mut [&mut self.output]);
        }
        self.render_frames += 1;
        Ok(())
    }

    /// Remove the echo of the render reference from a microphone frame, in place. On an error
    /// the frame is left as it was.
    pub fn capture(&mut self, near: &mut [i16]) -> Result<(), AecError> {
        Self::check_len(near.len())?;
        for chunk in near.chunks_exact_mut(CHUNK) {
            to_f32(chunk, &mut self.input);
            let _ = self
                .apm
                .process_capture_f32(&[&self.input], &mut [&mut self.output]);
            for (s, &v) in chunk.iter_mut().zip(&self.output) {
                *s = (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
            }
        }
        self.capture_frames += 1;
        Ok(())
    }

    /// A hint of the delay from [`render`](Self::render) to the echo's arrival in
    /// [`capture`](Self::capture), ms (the output plus input device latency). AEC3 starts its
    /// alignment from it and keeps estimating the delay itself (with a 40 ms echo, a correct
    /// hint made no measurable difference); values above 500 ms are taken as 500.
    pub fn set_delay_hint(&mut self, ms: u32) {
        let ms = ms.min(500);
        self.delay_hint_ms = Some(ms);
        // In range, so never `StreamParameterClamped`.
        let _ = self.apm.set_stream_delay_ms(ms as i32);
    }

    /// Counters and sonora's own echo estimates.
    pub fn stats(&self) -> AecStats {
        let s = self.apm.statistics();
        let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
        AecStats {
            erle_db: finite(s.echo_return_loss_enhancement),
            erl_db: finite(s.echo_return_loss),
            delay_ms: s.delay_ms,
            render_frames: self.render_frames,
            capture_frames: self.capture_frames,
        }
    }
}

/// i16 samples to f32 on the ±1 scale sonora's float interface takes.
fn to_f32(pcm: &[i16], out: &mut [f32]) {
    for (o, &s) in out.iter_mut().zip(pcm) {
        *o = f32::from(s) / 32768.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_lengths_are_refused_and_leave_the_frame_alone() {
        let mut aec = EchoCanceller::new().unwrap();
        for len in [0, 1, 479, 481, 959, 961] {
            let mut frame = vec![1234i16; len];
            assert_eq!(
                aec.capture(&mut frame),
                Err(AecError::FrameLength { got: len })
            );
            assert!(frame.iter().all(|&s| s == 1234));
            assert_eq!(aec.render(&frame), Err(AecError::FrameLength { got: len }));
        }
        let msg = AecError::FrameLength { got: 7 }.to_string();
        assert!(msg.contains("7 samples") && msg.contains("480"), "{msg}");
        assert_eq!(aec.stats().capture_frames, 0);
        assert_eq!(aec.stats().render_frames, 0);
    }

    #[test]
    fn ten_twenty_and_thirty_ms_frames_are_taken() {
        let mut aec = EchoCanceller::new().unwrap();
        for len in [CHUNK, FRAME, 3 * CHUNK] {
            let far = vec![0i16; len];
            let mut near = vec![0i16; len];
            aec.render(&far).unwrap();
            aec.capture(&mut near).unwrap();
        }
        let st = aec.stats();
        assert_eq!((st.render_frames, st.capture_frames), (3, 3));
    }

    #[test]
    fn stats_before_any_audio_do_not_panic() {
        let mut aec = EchoCanceller::new().unwrap();
        let _ = aec.stats();
        aec.set_delay_hint(40);
        aec.set_delay_hint(u32::MAX);
        let mut near = vec![0i16; FRAME];
        aec.capture(&mut near).unwrap();
        let st = aec.stats();
        assert_eq!(st.capture_frames, 1);
    }
}
