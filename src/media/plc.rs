//! Waveform packet loss concealment for codecs without their own, in the manner of ITU-T G.711
//! Appendix I: keep a short history of what was played; on a loss, find the pitch period of
//! its end and repeat the last period, smoothed so that it loops without a click, holding the
//! level for 10 ms and fading it out to silence at 60 ms; when audio comes back, cross-fade
//! from the repetition into it.
//!
//! Works at any sample rate; all buffers are sized at construction, so concealment and good
//! frames never allocate. Used by G.711 and G.722.

#![forbid(unsafe_code)]

/// Concealment holds the full level this long into a loss...
pub const HOLD_MS: u32 = 10;
/// ...then fades linearly to silence, reached at this point.
pub const FADE_OUT_MS: u32 = 60;

/// Pitch periods searched: 5 ms to 15 ms (200 Hz down to 66.7 Hz, as G.711 Appendix I).
const MIN_PITCH_MS: u32 = 5;
const MAX_PITCH_MS: u32 = 15;
/// Length of the history end matched against its own past to find the period.
const CORR_MS: u32 = 20;

/// Repeats the recent waveform over lost frames; see the module documentation.
#[derive(Debug, Clone)]
pub struct WaveformPlc {
    /// The last samples played (decoded or concealed), oldest first; always full length.
    history: Vec<i16>,
    min_pitch: usize,
    max_pitch: usize,
    corr_len: usize,
    /// Samples per millisecond.
    per_ms: usize,
    hold: usize,
    fade_end: usize,
    /// Whether any good audio has been played (before that, concealment is silence).
    heard: bool,
    /// Samples concealed in the current loss; 0 when not concealing.
    lost: usize,
    /// The repeated pitch period (its tail blended into the samples before it, so it loops
    /// smoothly); capacity `max_pitch`.
    period: Vec<i16>,
    /// Next read position in `period`.
    pos: usize,
    /// Offset between the last played sample and the period's loop point, removed over the
    /// first quarter period.
    offset: f32,
    /// Samples over which `offset` is removed.
    offset_len: usize,
}

impl WaveformPlc {
    /// Concealment for audio at `sample_rate` Hz (at least 1 kHz).
    pub fn new(sample_rate: u32) -> WaveformPlc {
        let per_ms = (sample_rate / 1000).max(1) as usize;
        let min_pitch = per_ms * MIN_PITCH_MS as usize;
        let max_pitch = per_ms * MAX_PITCH_MS as usize;
        let corr_len = per_ms * CORR_MS as usize;
        WaveformPlc {
            // the correlation window behind the longest period; also covers the quarter period
            // of blending before the period
            history: vec![0; max_pitch + corr_len],
            min_pitch,
            max_pitch,
            corr_len,
            per_ms,
            hold: per_ms * HOLD_MS as usize,
            fade_end: per_ms * FADE_OUT_MS as usize,
            heard: false,
            lost: 0,
            period: Vec::with_capacity(max_pitch),
            pos: 0,
            offset: 0.0,
            offset_len: 1,
        }
    }

    /// The samples played most recently (decoded or concealed), oldest first.
    pub fn recent(&self) -> &[i16] {
        &self.history
    }

    /// Whether a loss is being concealed (since the last good frame).
    pub fn concealing(&self) -> bool {
        self.lost > 0
    }

    /// How many more samples of concealment would be audible (not yet faded to silence);
    /// 0 before any audio was heard.
    pub fn audible_samples(&self) -> usize {
        if self.heard {
            self.fade_end.saturating_sub(self.lost)
        } else {
            0
        }
    }

    /// Forget everything (a new stream).
    pub fn reset(&mut self) {
        self.history.fill(0);
        self.heard = false;
        self.lost = 0;
    }

    /// A decoded frame is about to be played. After a loss its start is cross-faded from the
    /// continued concealment (4 ms, plus 4 ms for each further 10 ms of loss, at most 10 ms).
    pub fn good_frame(&mut self, frame: &mut [i16]) {
        if self.lost > 0 {
            let ms = (4 + 4 * (self.lost / self.per_ms).saturating_sub(10) / 10).min(10);
            let len = (ms * self.per_ms).min(frame.len());
            for (k, s) in frame.iter_mut().take(len).enumerate() {
                let w = (k + 1) as f32 / (len + 1) as f32;
                let synth = self.next_concealed();
                *s = to_i16(w * f32::from(*s) + (1.0 - w) * synth);
            }
            self.lost = 0;
        }
        if !frame.is_empty() {
            self.heard = true;
        }
        self.remember(frame);
    }

    /// Append `samples` of concealment for a lost frame to `out`.
    pub fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        let start = out.len();
        if !self.heard {
            out.resize(start + samples, 0);
            return;
        }
        if self.lost == 0 {
            self.start_loss();
        }
        out.reserve(samples);
        for _ in 0..samples {
            let s = self.next_concealed();
            out.push(to_i16(s));
        }
        let (_, concealed) = out.split_at(start);
        self.remember(concealed);
    }

    /// The next concealed sample (before rounding), advancing through the loss.
    fn next_concealed(&mut self) -> f32 {
        let n = self.lost;
        self.lost += 1;
        if n >= self.fade_end || self.period.is_empty() {
            return 0.0;
        }
        let mut s = f32::from(self.period[self.pos]);
        self.pos = (self.pos + 1) % self.period.len();
        if n < self.offset_len {
            s += self.offset * (1.0 - n as f32 / self.offset_len as f32);
        }
        let gain = if n < self.hold {
            1.0
        } else {
            1.0 - (n - self.hold) as f32 / (self.fade_end - self.hold) as f32
        };
        s * gain
    }

    /// A loss begins: find the pitch period of the history's end and prepare its repetition.
    fn start_loss(&mut self) {
        let h = &self.history;
        let n = h.len();
        let p = self.pitch();
        let blend = (p / 4).max(1);
        self.period.clear();
        self.period.extend_from_slice(&h[n - p..]);
        // Loop point: the period's last quarter runs into the samples before the period, so
        // that its end flows into its start (period[0] = h[n - p] follows h[n - p - 1]).
        for k in 0..blend {
            let w = (k + 1) as f32 / (blend + 1) as f32;
            let own = f32::from(h[n - blend + k]);
            let before = f32::from(h[n - p - blend + k]);
            self.period[p - blend + k] = to_i16((1.0 - w) * own + w * before);
        }
        // The first repeated sample follows the last played one, not h[n - p - 1]: carry the
        // difference and let it die away over the quarter period.
        self.offset = f32::from(h[n - 1]) - f32::from(h[n - p - 1]);
        self.offset_len = blend;
        self.pos = 0;
    }

    /// The pitch period of the history's end: the lag whose past best matches the last
    /// `corr_len` samples (normalised cross-correlation), searched coarsely on every other
    /// sample and lag, then refined around the best coarse lag.
    fn pitch(&self) -> usize {
        let mut best = (self.min_pitch, f64::MIN);
        for lag in (self.min_pitch..=self.max_pitch).step_by(2) {
            let score = self.match_score(lag, 2);
            if score > best.1 {
                best = (lag, score);
            }
        }
        let coarse = best.0;
        let mut best = (coarse, f64::MIN);
        for lag in coarse.saturating_sub(1).max(self.min_pitch)..=(coarse + 1).min(self.max_pitch) {
            let score = self.match_score(lag, 1);
            if score > best.1 {
                best = (lag, score);
            }
        }
        best.0
    }

    /// Correlation of the history's end with the same length `lag` earlier, over the energy
    /// of the earlier part (sampled every `step`).
    fn match_score(&self, lag: usize, step: usize) -> f64 {
        let h = &self.history;
        let n = h.len();
        let recent = h[n - self.corr_len..].iter().step_by(step);
        let past = h[n - self.corr_len - lag..n - lag].iter().step_by(step);
        let (mut corr, mut energy) = (0i64, 0i64);
        for (&a, &b) in recent.zip(past) {
            corr += i64::from(a) * i64::from(b);
            energy += i64::from(b) * i64::from(b);
        }
        if energy == 0 {
            return if corr == 0 { 0.0 } else { f64::MIN };
        }
        corr as f64 / (energy as f64).sqrt()
    }

    fn remember(&mut self, played: &[i16]) {
        let len = self.history.len();
        if played.len() >= len {
            self.history.copy_from_slice(&played[played.len() - len..]);
        } else {
            self.history.copy_within(played.len().., 0);
            self.history[len - played.len()..].copy_from_slice(played);
        }
    }
}

fn to_i16(v: f32) -> i16 {
    v.round().clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, len: usize, phase0: usize) -> Vec<i16> {
        (phase0..phase0 + len)
            .map(|i| {
                (10000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
                    as i16
            })
            .collect()
    }

    #[test]
    fn silence_before_any_audio() {
        let mut plc = WaveformPlc::new(8000);
        let mut out = vec![7];
        plc.conceal(160, &mut out);
        assert_eq!(out.len(), 161);
        assert!(out[1..].iter().all(|&s| s == 0));
    }

    #[test]
    fn finds_the_period_of_a_tone() {
        for rate in [8000, 16000] {
            let mut plc = WaveformPlc::new(rate);
            // 250 Hz: period 4 ms, in range twice (4 ms is below 5 ms; 8 ms and 12 ms are in)
            let mut frame = tone(250.0, rate, (rate / 50) as usize * 3, 0);
            plc.good_frame(&mut frame);
            let p = plc.pitch();
            assert_eq!(p % (rate as usize / 250), 0, "rate {rate}: period {p}");
        }
    }

    #[test]
    fn repetition_continues_a_tone() {
        let rate = 16000;
        let mut plc = WaveformPlc::new(rate);
        let mut frame = tone(440.0, rate, 960, 0);
        plc.good_frame(&mut frame);
        let mut out = Vec::new();
        plc.conceal(160, &mut out); // the first 10 ms: full level
        let want = tone(440.0, rate, 160, 960);
        let err: f64 = out
            .iter()
            .zip(&want)
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
            .sum();
        let sig: f64 = want.iter().map(|&s| f64::from(s).powi(2)).sum();
        assert!(
            10.0 * (sig / err).log10() > 20.0,
            "continuation of a 440 Hz tone"
        );
    }

    #[test]
    fn fades_out_and_back_in() {
        let rate = 8000;
        let mut plc = WaveformPlc::new(rate);
        let mut frame = tone(300.0, rate, 160, 0);
        plc.good_frame(&mut frame);
        let mut out = Vec::new();
        plc.conceal(rate as usize * FADE_OUT_MS as usize / 1000, &mut out);
        assert!(out.iter().rev().take(8).all(|&s| s.abs() < 300));
        out.clear();
        plc.conceal(160, &mut out);
        assert!(out.iter().all(|&s| s == 0));
        assert!(plc.concealing());
        // back: the new frame fades in from silence (the concealment had faded out)
        let mut frame = tone(300.0, rate, 160, 0);
        let orig = frame.clone();
        plc.good_frame(&mut frame);
        assert!(!plc.concealing());
        assert!(frame[0].abs() <= orig[0].abs());
        assert_eq!(frame[100..], orig[100..]);
    }
}
