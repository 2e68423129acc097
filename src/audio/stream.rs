//! The device-independent half of a sound stream: what the audio callbacks do to the rings,
//! and what the engine side does with them. No cpal device needed, so it is unit tested.
//!
//! Capture: the callback copies the device's interleaved samples into the ring (whole
//! frames only; when the ring is full the block is lost and counted). [`CaptureSide::read`]
//! takes all that is waiting, mixes it to mono, resamples it to the frame rate and queues it.
//!
//! Playback: [`PlaybackSide::write`] resamples a frame to the device rate, copies it to every
//! channel in the device's sample format and pushes it; the callback plays it out. Frames
//! written before the device has asked for any audio are discarded: a device that starts late
//! must not leave that start-up delay queued (or have it cut out later, mid-speech).
//!
//! Both directions keep their queue at a controlled level with a [`Level`]: audio flows once
//! one engine frame plus a margin ([`START_MARGIN_MS`], [`CAPTURE_START_MARGIN_MS`]) is queued. The engine's 20 ms ticks
//! and the device's periods both jitter (tens of ms on a loaded machine), and the margin
//! absorbs that. Running dry plays (or hands out) silence, counts an underrun, waits for the
//! level again and raises the margin by [`MARGIN_STEP_MS`] (up to [`MAX_MARGIN_MS`]): a
//! machine that needs more buffering gets it once instead of glitching again and again. Too
//! much audio is dropped only when the level has stayed more than [`EXCESS_MS`] above the
//! target for a whole [`WINDOW_MS`] (left behind by a stall, say), or at once beyond
//! [`HARD_EXCESS_MS`]; each drop counts as an overrun. With the same clock on both sides the
//! level does not drift, so in a healthy stream neither ever happens.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};

use cpal::{FromSample, Sample};

use super::convert::{i16_to_f32, FrameQueue};
use super::resample::Resampler;
use super::{SourceState, StreamStats};

/// Audio kept queued beyond one frame before playback starts.
pub const START_MARGIN_MS: usize = 20;
/// Audio kept queued beyond one frame before capture hands out any. Larger than playback's:
/// PulseAudio delivers capture in bursts, with gaps of up to ~55 ms seen on a loaded machine
/// (a 20 ms margin ran dry about once in 15 calls).
pub const CAPTURE_START_MARGIN_MS: usize = 40;
/// How much the margin grows after each underrun.
pub const MARGIN_STEP_MS: usize = 20;
/// The largest margin an underrun can raise it to.
pub const MAX_MARGIN_MS: usize = 150;
/// How far above the target the level may sit for a whole window before the excess is dropped.
pub const EXCESS_MS: usize = 40;
/// Above the target by this much, the excess is dropped at once.
pub const HARD_EXCESS_MS: usize = 250;
/// The window over which the lowest level is watched.
pub const WINDOW_MS: usize = 1000;
/// Capacity of each ring.
pub const RING_MS: usize = 1000;

/// What to do before taking audio from a queue (see [`Level::decide`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not primed: give silence and take nothing.
    Wait,
    /// Drop this many of the oldest samples first (usually 0), then take.
    Play {
        /// Samples to drop.
        drop: usize,
    },
    /// The first start: drop this many of the oldest samples (what piled up before the
    /// taker came, start-up delay rather than an overrun), then take.
    Start {
        /// Samples to drop.
        drop: usize,
    },
}

/// Level control of one queue (ring or engine-side FIFO), in that queue's own samples.
/// Plain state, no atomics: it belongs to whoever takes from the queue.
#[derive(Debug, Clone)]
pub struct Level {
    unit: usize,
    start: usize,
    step: usize,
    max_margin: usize,
    excess: usize,
    hard: usize,
    window: usize,
    margin: usize,
    primed: bool,
    started: bool,
    win_min: usize,
    win_used: usize,
}

impl Level {
    /// For a queue of `channels` interleaved samples per frame at `rate` frames per second,
    /// starting with a margin of `start_ms`.
    pub fn new(rate: u32, channels: usize, start_ms: usize) -> Level {
        let ch = channels.max(1);
        let ms = |m: usize| ms_to_samples(m, rate) * ch;
        Level {
            unit: ch,
            start: ms(start_ms),
            step: ms(MARGIN_STEP_MS),
            max_margin: ms(MAX_MARGIN_MS),
            excess: ms(EXCESS_MS),
            hard: ms(HARD_EXCESS_MS),
            window: ms(WINDOW_MS),
            margin: ms(start_ms),
            primed: false,
            started: false,
            win_min: usize::MAX,
            win_used: 0,
        }
    }

    /// The margin now (samples beyond one frame).
    pub fn margin(&self) -> usize {
        self.margin
    }

    /// Before taking `want` samples from a queue holding `level`, where one engine frame is
    /// `frame` samples. `draining`: play out what is left, whatever the level.
    pub fn decide(&mut self, frame: usize, level: usize, want: usize, draining: bool) -> Decision {
        let target = frame + self.margin;
        if !self.primed {
            if level >= target || (draining && level > 0) {
                self.primed = true;
                self.reset_window();
                if !self.started {
                    // absorb start-up delay once, before any audio has flowed
                    self.started = true;
                    let drop = level.saturating_sub(target) / self.unit * self.unit;
                    return Decision::Start { drop };
                }
            } else {
                return Decision::Wait;
            }
        }
        if draining {
            return Decision::Play { drop: 0 };
        }
        let mut drop = 0;
        if level > target + self.hard {
            drop = level - target;
            self.reset_window();
        } else {
            self.win_min = self.win_min.min(level);
            self.win_used += want;
            if self.win_used >= self.window {
                if self.win_min > target + self.excess {
                    drop = self.win_min - target;
                }
                self.reset_window();
            }
        }
        Decision::Play {
            drop: drop / self.unit * self.unit,
        }
    }

    /// The queue ran dry while primed: wait for the level again, with a larger margin.
    pub fn ran_dry(&mut self) {
        self.primed = false;
        self.margin = (self.margin + self.step).min(self.max_margin.max(self.start));
    }

    fn reset_window(&mut self) {
        self.win_min = usize::MAX;
        self.win_used = 0;
    }
}

/// Samples in `ms` milliseconds at `rate`.
pub fn ms_to_samples(ms: usize, rate: u32) -> usize {
    ms * rate as usize / 1000
}

/// Ring capacity in samples for a device of `rate` and `channels`.
pub fn ring_capacity(rate: u32, channels: usize) -> usize {
    ms_to_samples(RING_MS, rate).max(4096) * channels.max(1)
}

// ---------------------------------------------------------------------------------------
// State shared between the callbacks and the engine side: atomics only.

/// Counters and settings shared by a stream's callbacks and its engine side.
pub struct Shared {
    /// Audio callbacks so far.
    pub callbacks: AtomicU64,
    /// Playback callbacks that ran dry.
    pub underruns: AtomicU64,
    /// Capture blocks lost to a full ring; playback drops of the oldest audio.
    pub overruns: AtomicU64,
    /// Errors the device reported.
    pub errors: AtomicU64,
    /// `error_code` of the last error, 0 = none.
    pub last_error: AtomicU8,
    /// The device failed for good.
    pub failed: AtomicBool,
    /// Playback: ring samples one engine frame becomes (set by the engine side).
    pub frame: AtomicUsize,
    /// Playback: the callback's current margin, in ring samples (for the counters).
    pub margin: AtomicUsize,
    /// Playback: play out whatever is left, ignoring the prefill.
    pub draining: AtomicBool,
    /// When the counters started (for the timestamps below).
    pub epoch: std::time::Instant,
    /// Nanoseconds since `epoch` of the first callback (0 = none yet).
    pub first_callback_ns: AtomicU64,
    /// Nanoseconds since `epoch` of the latest callback.
    pub last_callback_ns: AtomicU64,
    /// Frames the latest callback asked for / delivered.
    pub callback_frames: AtomicUsize,
    /// Ring level (samples) seen by the latest callback, before it ran.
    pub callback_level: AtomicUsize,
    /// Device latency (microseconds) the latest callback's timestamps showed.
    pub device_delay_us: AtomicU64,
}

impl Shared {
    /// Fresh counters; `frame` (ring samples per engine frame) matters for playback only.
    pub fn new(frame: usize) -> Shared {
        Shared {
            callbacks: AtomicU64::new(0),
            underruns: AtomicU64::new(0),
            overruns: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_error: AtomicU8::new(0),
            failed: AtomicBool::new(false),
            frame: AtomicUsize::new(frame),
            margin: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            epoch: std::time::Instant::now(),
            first_callback_ns: AtomicU64::new(0),
            last_callback_ns: AtomicU64::new(0),
            callback_frames: AtomicUsize::new(0),
            callback_level: AtomicUsize::new(0),
            device_delay_us: AtomicU64::new(0),
        }
    }

    /// Note a callback's time, size and the ring level it found. Lock-free.
    pub fn note_callback(&self, frames: usize, level: usize) {
        let ns = (self.epoch.elapsed().as_nanos() as u64).max(1);
        if self.callbacks.fetch_add(1, Relaxed) == 0 {
            self.first_callback_ns.store(ns, Relaxed);
        }
        self.last_callback_ns.store(ns, Relaxed);
        self.callback_frames.store(frames, Relaxed);
        self.callback_level.store(level, Relaxed);
    }

    /// The cpal error callback: count, remember the kind, note fatal ones. No allocation.
    ///
    /// Non-fatal errors before the first audio callback are not counted: the ALSA pulse
    /// plugin answers `snd_pcm_avail_delay` with EIO (a burst of up to a few hundred, within
    /// ~10 ms) until its stream is ready, and cpal reports each one.
    pub fn on_error(&self, kind: cpal::ErrorKind) {
        let fatal = matches!(
            kind,
            cpal::ErrorKind::DeviceNotAvailable
                | cpal::ErrorKind::StreamInvalidated
                | cpal::ErrorKind::HostUnavailable
        );
        if !fatal && self.callbacks.load(Relaxed) == 0 {
            return;
        }
        self.errors.fetch_add(1, Relaxed);
        self.last_error.store(error_code(kind), Relaxed);
        if fatal {
            self.failed.store(true, Relaxed);
        }
    }

    /// The counters, plus the engine side's own.
    pub fn stats(
        &self,
        extra_underruns: u64,
        extra_overruns: u64,
        buffered_ms: u32,
    ) -> StreamStats {
        let code = self.last_error.load(Relaxed);
        StreamStats {
            callbacks: self.callbacks.load(Relaxed),
            underruns: self.underruns.load(Relaxed) + extra_underruns,
            overruns: self.overruns.load(Relaxed) + extra_overruns,
            errors: self.errors.load(Relaxed),
            last_error: (code != 0).then(|| error_text(code)),
            failed: self.failed.load(Relaxed),
            buffered_ms,
            margin_ms: 0,
        }
    }

    /// The last error in words.
    pub fn last_error_text(&self) -> String {
        error_text(self.last_error.load(Relaxed))
    }
}

const ERROR_KINDS: &[cpal::ErrorKind] = &[
    cpal::ErrorKind::DeviceBusy,
    cpal::ErrorKind::DeviceChanged,
    cpal::ErrorKind::DeviceNotAvailable,
    cpal::ErrorKind::HostUnavailable,
    cpal::ErrorKind::InvalidInput,
    cpal::ErrorKind::PermissionDenied,
    cpal::ErrorKind::RealtimeDenied,
    cpal::ErrorKind::ResourceExhausted,
    cpal::ErrorKind::StreamInvalidated,
    cpal::ErrorKind::UnsupportedConfig,
    cpal::ErrorKind::UnsupportedOperation,
    cpal::ErrorKind::Xrun,
    cpal::ErrorKind::BackendError,
];

fn error_code(kind: cpal::ErrorKind) -> u8 {
    ERROR_KINDS
        .iter()
        .position(|k| *k == kind)
        .map_or(255, |i| i as u8 + 1)
}

fn error_text(code: u8) -> String {
    match ERROR_KINDS.get(usize::from(code).wrapping_sub(1)) {
        Some(k) => k.to_string(),
        None => "an unclassified device error".to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Capture

/// The capture callback: copy whole frames into the ring; count a block that does not fit.
/// Lock-free, allocation-free.
pub fn capture_callback<T: Copy>(
    producer: &mut rtrb::Producer<T>,
    data: &[T],
    channels: usize,
    shared: &Shared,
) {
    let room = producer.slots() / channels * channels;
    shared.note_callback(
        data.len() / channels,
        producer.buffer().capacity() - producer.slots(),
    );
    let n = data.len().min(room);
    let _ = producer.push_partial_slice(&data[..n]);
    if n < data.len() {
        // the engine is not reading: the rest of this block is lost (when it reads again it
        // catches up by dropping the oldest audio)
        shared.overruns.fetch_add(1, Relaxed);
    }
}

/// The engine side of a capture ring, whatever the device's sample type.
pub trait CaptureRing: Send {
    /// Take every whole frame waiting, mix each to mono f32, append to `out`.
    fn pop_mono(&mut self, channels: usize, out: &mut Vec<f32>);
    /// Samples waiting.
    fn queued(&self) -> usize;
}

impl<T> CaptureRing for rtrb::Consumer<T>
where
    T: Sample + Send + 'static,
    f32: FromSample<T>,
{
    fn pop_mono(&mut self, channels: usize, out: &mut Vec<f32>) {
        let n = self.slots() / channels * channels;
        let Ok(chunk) = self.read_chunk(n) else {
            return;
        };
        let (a, b) = chunk.as_slices();
        let scale = 1.0 / channels as f32;
        let mut acc = 0.0f32;
        let mut k = 0;
        for s in a.iter().chain(b) {
            acc += s.to_sample::<f32>();
            k += 1;
            if k == channels {
                out.push(acc * scale);
                acc = 0.0;
                k = 0;
            }
        }
        chunk.commit_all();
    }

    fn queued(&self) -> usize {
        self.slots()
    }
}

/// Engine side of a capture stream: ring in, mono frames at the frame rate out.
pub struct CaptureSide {
    ring: Box<dyn CaptureRing>,
    channels: usize,
    rate: u32,
    resampler: Resampler,
    mono: Vec<f32>,
    scratch: Vec<f32>,
    queue: FrameQueue,
    level: Level,
    /// Reads that ran short.
    pub underruns: u64,
    /// Times the oldest audio was dropped.
    pub overruns: u64,
}

impl CaptureSide {
    /// For a ring fed by a device at `device_rate` with `channels`, frames at `rate`.
    pub fn new(ring: Box<dyn CaptureRing>, device_rate: u32, channels: usize, rate: u32) -> Self {
        CaptureSide {
            ring,
            channels: channels.max(1),
            rate,
            resampler: Resampler::new(device_rate, rate),
            mono: Vec::new(),
            scratch: Vec::new(),
            queue: FrameQueue::default(),
            level: Level::new(rate, 1, CAPTURE_START_MARGIN_MS),
            underruns: 0,
            overruns: 0,
        }
    }

    /// Audio queued on this side, in milliseconds.
    pub fn buffered_ms(&self) -> u32 {
        (self.queue.len() as u64 * 1000 / u64::from(self.rate.max(1))) as u32
    }

    /// Samples waiting in the ring (device format, all channels).
    pub fn queued_device_samples(&self) -> usize {
        self.ring.queued()
    }

    /// Fill `frame`; `failed` says the device is gone (then, once drained, `Ended`).
    pub fn read(&mut self, frame: &mut [i16], failed: bool) -> SourceState {
        self.mono.clear();
        self.ring.pop_mono(self.channels, &mut self.mono);
        self.scratch.clear();
        self.resampler.process(&self.mono, &mut self.scratch);
        self.queue.extend(&self.scratch);

        match self
            .level
            .decide(frame.len(), self.queue.len(), frame.len(), false)
        {
            Decision::Wait if failed => {
                // the device is gone: hand out what is left, then end
                let n = self.queue.pop_into_i16(frame);
                frame[n..].fill(0);
                return if n > 0 {
                    SourceState::Data
                } else {
                    SourceState::Ended
                };
            }
            Decision::Wait => {
                frame.fill(0);
                return SourceState::Data;
            }
            Decision::Start { drop } => self.queue.discard(drop),
            Decision::Play { drop } => {
                if drop > 0 {
                    self.queue.discard(drop);
                    self.overruns += 1;
                }
            }
        }
        let n = self.queue.pop_into_i16(frame);
        if n < frame.len() {
            frame[n..].fill(0);
            self.underruns += 1;
            self.level.ran_dry();
        }
        SourceState::Data
    }

    /// The margin now, in milliseconds.
    pub fn margin_ms(&self) -> u32 {
        (self.level.margin() as u64 * 1000 / u64::from(self.rate.max(1))) as u32
    }
}

// ---------------------------------------------------------------------------------------
// Playback

/// The playback callback: wait for the level, play, pad with silence when dry, drop the
/// oldest when the level stays too high (see [`Level`]). Lock-free, allocation-free. `level`
/// is the callback's own state.
pub fn playback_callback<T: Sample>(
    consumer: &mut rtrb::Consumer<T>,
    data: &mut [T],
    channels: usize,
    shared: &Shared,
    level: &mut Level,
) {
    let queued = consumer.slots();
    shared.note_callback(data.len() / channels.max(1), queued);
    let draining = shared.draining.load(Relaxed);
    let frame = shared.frame.load(Relaxed);
    match level.decide(frame, queued, data.len(), draining) {
        Decision::Wait => {
            data.fill(T::EQUILIBRIUM);
            return;
        }
        Decision::Start { drop } => {
            if let Ok(c) = consumer.read_chunk(drop) {
                c.commit_all();
            }
        }
        Decision::Play { drop } => {
            if drop > 0 {
                if let Ok(c) = consumer.read_chunk(drop) {
                    c.commit_all();
                }
                shared.overruns.fetch_add(1, Relaxed);
            }
        }
    }
    let (_, rest) = consumer.pop_partial_slice(data);
    if !rest.is_empty() {
        rest.fill(T::EQUILIBRIUM);
        if !draining {
            shared.underruns.fetch_add(1, Relaxed);
            level.ran_dry();
            shared.margin.store(level.margin(), Relaxed);
        }
    }
}

/// The engine side of a playback ring, whatever the device's sample type.
pub trait PlaybackRing: Send {
    /// Push mono samples as whole frames (each copied to every channel); returns how many
    /// mono samples fit.
    fn push_mono(&mut self, channels: usize, samples: &[f32]) -> usize;
    /// Samples (not frames) waiting in the ring.
    fn queued(&self) -> usize;
}

impl<T> PlaybackRing for rtrb::Producer<T>
where
    T: Sample + FromSample<f32> + Send + 'static,
{
    fn push_mono(&mut self, channels: usize, samples: &[f32]) -> usize {
        let n = samples.len().min(self.slots() / channels);
        let Ok(chunk) = self.write_chunk_uninit(n * channels) else {
            return 0;
        };
        chunk.fill_from_iter(
            samples[..n]
                .iter()
                .flat_map(|&s| std::iter::repeat_n(T::from_sample(s.clamp(-1.0, 1.0)), channels)),
        );
        n
    }

    fn queued(&self) -> usize {
        self.buffer().capacity() - self.slots()
    }
}

/// Engine side of a playback stream: mono frames at the frame rate in, ring out.
pub struct PlaybackSide {
    ring: Box<dyn PlaybackRing>,
    channels: usize,
    rate: u32,
    device_rate: u32,
    resampler: Resampler,
    mono: Vec<f32>,
    scratch: Vec<f32>,
    /// Frame length the prefill was last set for.
    frame_len: usize,
    /// Frames (partly) lost to a full ring.
    pub overruns: u64,
    /// Frames discarded because the device had not started yet.
    pub discarded: u64,
}

impl PlaybackSide {
    /// For a ring read by a device at `device_rate` with `channels`, frames at `rate`.
    pub fn new(ring: Box<dyn PlaybackRing>, device_rate: u32, channels: usize, rate: u32) -> Self {
        PlaybackSide {
            ring,
            channels: channels.max(1),
            rate,
            device_rate,
            resampler: Resampler::new(rate, device_rate),
            mono: Vec::new(),
            scratch: Vec::new(),
            frame_len: 0,
            overruns: 0,
            discarded: 0,
        }
    }

    /// Ring samples of a 20 ms frame, until the first frame's length is known.
    pub fn initial_frame(device_rate: u32, channels: usize) -> usize {
        ms_to_samples(20, device_rate) * channels.max(1)
    }

    /// Audio in the ring, in milliseconds.
    pub fn buffered_ms(&self) -> u32 {
        let frames = self.ring.queued() / self.channels;
        (frames as u64 * 1000 / u64::from(self.device_rate.max(1))) as u32
    }

    /// Samples in the ring.
    pub fn queued(&self) -> usize {
        self.ring.queued()
    }

    /// Convert and queue one frame.
    pub fn write(&mut self, frame: &[i16], shared: &Shared) {
        if frame.len() != self.frame_len && !frame.is_empty() {
            self.frame_len = frame.len();
            let frame_dev = frame.len() * self.device_rate as usize / self.rate.max(1) as usize;
            shared.frame.store(frame_dev * self.channels, Relaxed);
        }
        if shared.callbacks.load(Relaxed) == 0 {
            // The device has not started: this frame would only add start-up delay (and be
            // cut out later). Keep the resampler's timeline going, drop the output.
            self.mono.clear();
            self.mono.extend(frame.iter().map(|&s| i16_to_f32(s)));
            self.scratch.clear();
            self.resampler.process(&self.mono, &mut self.scratch);
            self.discarded += 1;
            return;
        }
        self.mono.clear();
        self.mono.extend(frame.iter().map(|&s| i16_to_f32(s)));
        self.scratch.clear();
        self.resampler.process(&self.mono, &mut self.scratch);
        let pushed = self.ring.push_mono(self.channels, &self.scratch);
        if pushed < self.scratch.len() {
            // the device is not taking audio; these samples are lost
            self.overruns += 1;
        }
    }

    /// Push the resampler's tail (end of playback).
    pub fn flush(&mut self) {
        self.scratch.clear();
        self.resampler.flush(&mut self.scratch);
        let _ = self.ring.push_mono(self.channels, &self.scratch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{goertzel, AudioSource, ToneSource};
    use rtrb::RingBuffer;

    /// A device delivering a 48 kHz stereo f32 tone in callbacks of `block` frames.
    struct FakeMic {
        producer: rtrb::Producer<f32>,
        tone: ToneSource,
        block: usize,
    }

    impl FakeMic {
        fn tick(&mut self, shared: &Shared) {
            let mut mono = vec![0i16; self.block];
            self.tone.read(&mut mono);
            let data: Vec<f32> = mono
                .iter()
                .flat_map(|&s| [i16_to_f32(s), i16_to_f32(s)])
                .collect();
            capture_callback(&mut self.producer, &data, 2, shared);
        }
    }

    fn capture_pair(block: usize) -> (FakeMic, CaptureSide, Shared) {
        let (producer, consumer) = RingBuffer::<f32>::new(ring_capacity(48000, 2));
        let mic = FakeMic {
            producer,
            tone: ToneSource::new(1000.0, 0.5, 48000),
            block,
        };
        let side = CaptureSide::new(Box::new(consumer), 48000, 2, 8000);
        (mic, side, Shared::new(0))
    }

    #[test]
    fn capture_delivers_the_tone_after_the_prefill() {
        let (mut mic, mut side, shared) = capture_pair(480); // 10 ms callbacks
        let mut frame = [0i16; 160];
        let mut got = Vec::new();
        let mut silent_frames = 0;
        for _ in 0..100 {
            // two 10 ms callbacks per 20 ms frame
            mic.tick(&shared);
            mic.tick(&shared);
            assert_eq!(side.read(&mut frame, false), SourceState::Data);
            if frame.iter().all(|&s| s == 0) {
                silent_frames += 1;
            }
            got.extend_from_slice(&frame);
        }
        // silence only while the margin fills (40 ms: two frames, plus the resampler's delay)
        assert!(silent_frames <= 3, "{silent_frames} silent frames");
        assert_eq!(side.underruns, 0);
        assert_eq!(side.overruns, 0);
        let a = goertzel(&got[800..], 1000.0, 8000);
        assert!((a - 0.5).abs() < 0.005, "amplitude {a}");
        assert_eq!(shared.callbacks.load(Relaxed), 200);
    }

    #[test]
    fn capture_underrun_gives_silence_and_is_counted() {
        let (mut mic, mut side, shared) = capture_pair(480);
        let mut frame = [0i16; 160];
        for _ in 0..10 {
            mic.tick(&shared);
            mic.tick(&shared);
            side.read(&mut frame, false);
        }
        // the device stalls for four frames: more than the margin
        for _ in 0..4 {
            side.read(&mut frame, false);
        }
        assert_eq!(side.underruns, 1);
        assert_eq!(
            side.margin_ms() as usize,
            CAPTURE_START_MARGIN_MS + MARGIN_STEP_MS
        );
        assert!(frame.iter().all(|&s| s == 0));
        assert_eq!(
            side.read(&mut frame, true),
            SourceState::Ended,
            "failed device"
        );
    }

    #[test]
    fn capture_overrun_drops_the_oldest() {
        let (mut mic, mut side, shared) = capture_pair(480);
        let mut frame = [0i16; 160];
        // prime the stream first (a backlog before the first read is start-up delay, trimmed
        // without counting)
        for _ in 0..10 {
            mic.tick(&shared);
            mic.tick(&shared);
            side.read(&mut frame, false);
        }
        assert_eq!(side.overruns, 0);
        // the engine does not read for 0.5 s
        for _ in 0..50 {
            mic.tick(&shared);
        }
        side.read(&mut frame, false);
        assert_eq!(side.overruns, 1);
        // what is left is the margin: latency stays bounded
        let left = side.buffered_ms() as usize;
        assert!(left <= CAPTURE_START_MARGIN_MS + 1, "{left} ms");
        // the ring filling up (engine gone for > 1 s) is counted by the callback
        for _ in 0..150 {
            mic.tick(&shared);
        }
        assert!(shared.overruns.load(Relaxed) > 0);
        side.read(&mut frame, false);
        assert!(side.buffered_ms() as usize <= CAPTURE_START_MARGIN_MS + 1);
    }

    #[test]
    fn errors_are_counted_and_fatal_ones_fail_the_stream() {
        let shared = Shared::new(0);
        shared.on_error(cpal::ErrorKind::BackendError); // start-up noise
        assert_eq!(shared.stats(0, 0, 0).errors, 0);
        shared.callbacks.fetch_add(1, Relaxed);
        shared.on_error(cpal::ErrorKind::Xrun);
        let st = shared.stats(0, 0, 0);
        assert_eq!(st.errors, 1);
        assert!(!st.failed);
        assert!(st
            .last_error
            .is_some_and(|e| e.contains("underrun or overrun")));
        shared.on_error(cpal::ErrorKind::DeviceNotAvailable);
        let st = shared.stats(0, 0, 0);
        assert!(st.failed);
        assert!(shared.last_error_text().contains("not available"));
    }

    fn playback_pair() -> (PlaybackSide, rtrb::Consumer<i16>, Shared, Level) {
        let (producer, consumer) = RingBuffer::<i16>::new(ring_capacity(48000, 2));
        let shared = Shared::new(PlaybackSide::initial_frame(48000, 2));
        (
            PlaybackSide::new(Box::new(producer), 48000, 2, 8000),
            consumer,
            shared,
            Level::new(48000, 2, START_MARGIN_MS),
        )
    }

    /// The device has started (its first callback ran), so writes are queued.
    fn device_started(shared: &Shared) {
        shared.note_callback(0, 0);
    }

    #[test]
    fn playback_plays_the_tone_after_the_prefill() {
        let (mut side, mut consumer, shared, mut level) = playback_pair();
        device_started(&shared);
        let mut tone = ToneSource::new(1000.0, 0.5, 8000);
        let mut frame = [0i16; 160];
        let mut out = Vec::new();
        let mut buf = vec![0i16; 960]; // 10 ms stereo at 48 kHz
        for _ in 0..50 {
            tone.read(&mut frame);
            side.write(&frame, &shared);
            for _ in 0..2 {
                playback_callback(&mut consumer, &mut buf, 2, &shared, &mut level);
                // left channel only; both carry the same
                out.extend(buf.iter().step_by(2));
            }
        }
        assert_eq!(shared.underruns.load(Relaxed), 0);
        assert_eq!(shared.overruns.load(Relaxed), 0);
        let start = out.iter().position(|&s| s != 0).expect("sound");
        // one frame plus the margin queued before the first sample plays
        let prefill = ms_to_samples(20 + START_MARGIN_MS, 48000);
        assert!(start >= prefill - 480, "played before the prefill: {start}");
        let a = goertzel(&out[start + 480..], 1000.0, 48000);
        assert!((a - 0.5).abs() < 0.005, "amplitude {a}");
        assert_eq!(buf[0], buf[1], "mono copied to both channels");
    }

    #[test]
    fn playback_discards_frames_until_the_device_starts() {
        let (mut side, mut consumer, shared, mut level) = playback_pair();
        let frame = [1000i16; 160];
        // the device starts 200 ms late: none of that may stay queued
        for _ in 0..10 {
            side.write(&frame, &shared);
        }
        assert_eq!(side.queued(), 0);
        assert_eq!(side.discarded, 10);
        let mut buf = vec![7i16; 960];
        playback_callback(&mut consumer, &mut buf, 2, &shared, &mut level);
        assert!(buf.iter().all(|&s| s == 0), "silence until primed");
        side.write(&frame, &shared);
        assert!(side.queued() > 0);
        assert_eq!(shared.overruns.load(Relaxed), 0);
    }

    #[test]
    fn playback_underrun_raises_the_margin_and_excess_is_dropped_only_when_it_lasts() {
        let (mut side, mut consumer, shared, mut level) = playback_pair();
        device_started(&shared);
        let mut buf = vec![7i16; 960];
        let frame = [1000i16; 160];
        for _ in 0..3 {
            side.write(&frame, &shared);
        }
        // the device drains it all and more: silence, one underrun, a larger margin
        for _ in 0..8 {
            playback_callback(&mut consumer, &mut buf, 2, &shared, &mut level);
        }
        assert!(buf.iter().all(|&s| s == 0));
        assert_eq!(shared.underruns.load(Relaxed), 1);
        let margin = ms_to_samples(START_MARGIN_MS + MARGIN_STEP_MS, 48000) * 2;
        assert_eq!(level.margin(), margin);
        assert_eq!(shared.margin.load(Relaxed), margin);
        // steady state: a frame per two callbacks; a burst of 60 ms from a stalled device is
        // extra level, kept (not cut) until it has lasted a whole window
        let target = 960 * 2 + margin;
        for _ in 0..3 {
            side.write(&frame, &shared);
        }
        let mut ticks = 0;
        while side.queued() < target + 960 * 2 * 3 {
            side.write(&frame, &shared);
            ticks += 1;
            assert!(ticks < 50);
        }
        for _ in 0..40 {
            side.write(&frame, &shared);
            playback_callback(&mut consumer, &mut buf, 2, &shared, &mut level);
            playback_callback(&mut consumer, &mut buf, 2, &shared, &mut level);
        }
        assert_eq!(
            shared.overruns.load(Relaxed),
            0,
            "dropped within the window"
        );
        for _ in 0..60 {
            side.write(&frame, &shared);
            playback_callback(&mut consumer, &mut buf, 2, &shared, &mut level);
            playback_callback(&mut consumer, &mut buf, 2, &shared, &mut level);
        }
        assert_eq!(
            shared.overruns.load(Relaxed),
            1,
            "the lasting excess is dropped once"
        );
        assert!(side.queued() <= target + 960 * 2, "{}", side.queued());
        assert_eq!(shared.underruns.load(Relaxed), 1);
        // the engine writes 0.5 s in a burst: beyond the hard limit it goes at once
        for _ in 0..25 {
            side.write(&frame, &shared);
        }
        playback_callback(&mut consumer, &mut buf, 2, &shared, &mut level);
        assert_eq!(shared.overruns.load(Relaxed), 2);
        // the ring itself overflowing is counted on the engine side
        for _ in 0..100 {
            side.write(&frame, &shared);
        }
        assert!(side.overruns > 0);
    }

    #[test]
    fn level_margin_is_capped() {
        let mut level = Level::new(8000, 1, START_MARGIN_MS);
        for _ in 0..20 {
            level.ran_dry();
        }
        assert_eq!(level.margin(), ms_to_samples(MAX_MARGIN_MS, 8000));
        assert_eq!(level.decide(160, 0, 160, false), Decision::Wait);
        assert_eq!(
            level.decide(160, 10, 160, true),
            Decision::Start { drop: 0 },
            "draining plays what is left"
        );
        assert_eq!(level.decide(160, 5, 160, true), Decision::Play { drop: 0 });
    }

    #[test]
    fn start_up_backlog_is_absorbed_once_and_not_counted() {
        let mut level = Level::new(8000, 1, 20);
        // 300 ms piled up before the first read: trimmed to frame + margin, not an overrun
        assert_eq!(
            level.decide(160, 2400, 160, false),
            Decision::Start {
                drop: 2400 - 160 - 160
            }
        );
        // later, a short excess is kept
        assert_eq!(
            level.decide(160, 600, 160, false),
            Decision::Play { drop: 0 }
        );
    }
}
