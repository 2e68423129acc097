//! Noise suppression for the capture path: RNNoise (`nnnoiseless`), which works on 10 ms frames
//! at 48 kHz only. Frames at the codec's rate (8, 16 or 48 kHz) are resampled up, denoised in
//! 480-sample pieces and resampled back; the stage adds about 10 ms (RNNoise) plus the
//! resamplers' filter delay (a few ms). Sans-IO: samples in, samples out.

use std::collections::VecDeque;

use nnnoiseless::DenoiseState;

use crate::audio::resample::Resampler;

/// RNNoise's frame: 10 ms at 48 kHz.
const RNN_FRAME: usize = DenoiseState::FRAME_SIZE;
const RNN_RATE: u32 = 48_000;

/// A streaming noise suppressor for frames of `rate` Hz.
pub struct Denoiser {
    state: Box<DenoiseState<'static>>,
    rate: u32,
    up: Option<Resampler>,
    down: Option<Resampler>,
    /// 48 kHz samples (i16 scale) waiting for a whole RNNoise frame.
    pending: Vec<f32>,
    /// Denoised samples at `rate`, ready to hand out.
    ready: VecDeque<i16>,
    /// The frame as f32 on the ±1 scale (reused, no allocation per frame).
    frame_f32: Vec<f32>,
    scratch_in: Vec<f32>,
    scratch_out: Vec<f32>,
    rnn_out: Vec<f32>,
    /// Voice-activity probability of the last RNNoise frame (0..1).
    vad: f32,
    /// Samples handed out as silence because the pipeline had not filled yet.
    underruns: u64,
    /// Off: samples go through the same queue untouched (same delay, no RNNoise cost).
    enabled: bool,
}

impl std::fmt::Debug for Denoiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Denoiser")
            .field("rate", &self.rate)
            .field("vad", &self.vad)
            .finish_non_exhaustive()
    }
}

impl Denoiser {
    /// A suppressor for audio at `rate` Hz handed over in frames of `frame` samples. At
    /// 48 kHz in frames of whole RNNoise frames (10, 20 ms...) it adds no queueing delay;
    /// otherwise its output lags its input by one frame plus the resamplers' delay.
    pub fn new(rate: u32, frame: usize) -> Denoiser {
        let resampled = rate != RNN_RATE;
        let mut ready = VecDeque::with_capacity(frame * 4);
        // A frame of lead, where needed, so that every call can hand out a whole frame.
        if resampled || !frame.is_multiple_of(RNN_FRAME) {
            ready.extend(std::iter::repeat_n(0, frame));
        }
        Denoiser {
            state: DenoiseState::new(),
            rate,
            up: resampled.then(|| Resampler::new(rate, RNN_RATE)),
            down: resampled.then(|| Resampler::new(RNN_RATE, rate)),
            pending: Vec::with_capacity(RNN_FRAME * 4),
            ready,
            frame_f32: Vec::with_capacity(frame),
            scratch_in: Vec::with_capacity(RNN_FRAME * 4),
            scratch_out: Vec::with_capacity(frame * 2),
            rnn_out: vec![0.0; RNN_FRAME],
            vad: 0.0,
            underruns: 0,
            enabled: true,
        }
    }

    /// Suppress noise (the default) or pass the audio through with the same delay.
    pub fn set_enabled(&mut self, on: bool) {
        self.enabled = on;
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Denoise one frame in place.
    pub fn process(&mut self, frame: &mut [i16]) {
        // Up to 48 kHz (RNNoise wants the i16 scale as f32).
        self.scratch_in.clear();
        match &mut self.up {
            Some(up) => {
                self.frame_f32.clear();
                self.frame_f32
                    .extend(frame.iter().map(|&s| f32::from(s) / 32768.0));
                up.process(&self.frame_f32, &mut self.scratch_in);
            }
            None => self
                .scratch_in
                .extend(frame.iter().map(|&s| f32::from(s) / 32768.0)),
        }
        self.pending
            .extend(self.scratch_in.iter().map(|v| v * 32768.0));
        let mut done = 0;
        while self.pending.len() - done >= RNN_FRAME {
            let chunk = &self.pending[done..done + RNN_FRAME];
            if self.enabled {
                self.vad = self.state.process_frame(&mut self.rnn_out, chunk);
            } else {
                self.rnn_out.copy_from_slice(chunk);
            }
            done += RNN_FRAME;
            self.scratch_out.clear();
            for v in &mut self.rnn_out {
                *v /= 32768.0;
            }
            match &mut self.down {
                Some(down) => down.process(&self.rnn_out, &mut self.scratch_out),
                None => self.scratch_out.extend_from_slice(&self.rnn_out),
            }
            self.ready.extend(
                self.scratch_out
                    .iter()
                    .map(|v| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16),
            );
        }
        self.pending.drain(..done);
        for s in frame.iter_mut() {
            *s = match self.ready.pop_front() {
                Some(v) => v,
                None => {
                    self.underruns += 1;
                    0
                }
            };
        }
    }

    /// RNNoise's voice-activity probability for the most recent 10 ms (0..1).
    pub fn voice_probability(&self) -> f32 {
        self.vad
    }

    /// Samples output as silence because the pipeline was not yet full (start-up only).
    pub fn underruns(&self) -> u64 {
        self.underruns
    }
}
