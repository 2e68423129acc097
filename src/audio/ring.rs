//! Ring sounds: the ringtone (a call comes in) and the ringback (the called phone is ringing),
//! a source that loops either at any rate, and a player that rings on a sound device.
//!
//! The sounds are `assets/ringtone.wav` and `assets/ringback.wav`, embedded in the binary with
//! `include_bytes!`, so it rings from any working directory. Both are one cycle of 48 kHz mono
//! 16-bit audio, synthesized by `scripts/make-ring-assets.sh` (the design is in
//! `examples/make_ring_assets/synth.rs`; `tests/ring_assets.rs` checks the files against it):
//!
//! - ringtone: a soft chime, the rising arpeggio E5 G#5 B5 E6 twice, sounding for the first
//!   2 s of a 4 s cycle;
//! - ringback: 425 Hz, 1 s on, 4 s off (the European ringing tone), a 5 s cycle.
//!
//! [`ring_source`] gives a [`RingSource`], an endless [`AudioSource`] the engine can mix into a
//! call's own audio path or write to any sink. [`RingPlayer`] plays one on a playback device
//! from a thread of its own until stopped.

use std::io::Cursor;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use super::convert::{i16_to_f32, FrameQueue};
use super::resample::Resampler;
use super::{AudioError, AudioSink, AudioSource, PlaybackStream, SourceState, StreamStats};

/// Sample rate of the embedded sounds.
pub const RING_ASSET_RATE: u32 = 48_000;

static RINGTONE_WAV: &[u8] = include_bytes!("../../assets/ringtone.wav");
static RINGBACK_WAV: &[u8] = include_bytes!("../../assets/ringback.wav");

/// Which ring sound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RingKind {
    /// A call is coming in: the sound that asks the user to answer.
    Ringtone,
    /// The caller's side: the called phone is ringing (played while a call is alerting).
    Ringback,
}

impl RingKind {
    /// Both kinds.
    pub const ALL: [RingKind; 2] = [RingKind::Ringtone, RingKind::Ringback];

    /// `"ringtone"` or `"ringback"`.
    pub fn name(self) -> &'static str {
        match self {
            RingKind::Ringtone => "ringtone",
            RingKind::Ringback => "ringback",
        }
    }

    /// The embedded WAV file: one cycle, 48 kHz mono 16-bit.
    pub fn wav_bytes(self) -> &'static [u8] {
        match self {
            RingKind::Ringtone => RINGTONE_WAV,
            RingKind::Ringback => RINGBACK_WAV,
        }
    }

    /// Length of one cycle (sound plus silence), in milliseconds.
    pub fn cycle_ms(self) -> u32 {
        match self {
            RingKind::Ringtone => 4000,
            RingKind::Ringback => 5000,
        }
    }

    /// The sound fills the first this many milliseconds of each cycle; the rest is silence.
    pub fn on_ms(self) -> u32 {
        match self {
            RingKind::Ringtone => 2000,
            RingKind::Ringback => 1000,
        }
    }

    /// The frequencies that carry the sound (the ringtone's note fundamentals E5, G#5, B5,
    /// E6 in equal temperament, A4 = 440 Hz; the ringback's single tone), for tone checks.
    pub fn tones_hz(self) -> &'static [f64] {
        match self {
            RingKind::Ringtone => &[
                659.255_113_825_739_8,
                830.609_395_159_890_3,
                987.766_602_512_248_3,
                1_318.510_227_651_479_7,
            ],
            RingKind::Ringback => &[425.0],
        }
    }

    /// One cycle at [`RING_ASSET_RATE`], decoded once per process.
    fn cycle(self) -> &'static [f32] {
        static RINGTONE: OnceLock<Vec<f32>> = OnceLock::new();
        static RINGBACK: OnceLock<Vec<f32>> = OnceLock::new();
        let cell = match self {
            RingKind::Ringtone => &RINGTONE,
            RingKind::Ringback => &RINGBACK,
        };
        cell.get_or_init(|| {
            // The files are part of the build and checked by this module's tests.
            decode(self.wav_bytes())
                .unwrap_or_else(|e| panic!("the embedded {} is broken: {e}", self.name()))
        })
    }
}

impl std::fmt::Display for RingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An embedded ring WAV as f32 samples: it must be 48 kHz mono 16-bit and not empty.
fn decode(bytes: &'static [u8]) -> Result<Vec<f32>, String> {
    let mut reader = hound::WavReader::new(Cursor::new(bytes)).map_err(|e| e.to_string())?;
    let spec = reader.spec();
    if spec.channels != 1
        || spec.sample_rate != RING_ASSET_RATE
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        return Err(format!(
            "expected {RING_ASSET_RATE} Hz mono 16-bit, found {spec:?}"
        ));
    }
    let samples = reader
        .samples::<i16>()
        .map(|s| s.map(i16_to_f32))
        .collect::<Result<Vec<f32>, _>>()
        .map_err(|e| e.to_string())?;
    if samples.is_empty() {
        return Err("no samples".into());
    }
    Ok(samples)
}

/// Input samples fed to the resampler at a time (20 ms of the 48 kHz cycle).
const FEED: usize = 960;

/// A ring sound looped forever, as mono frames at the caller's rate.
///
/// The cycle is streamed through one resampler that never restarts, so the loop has no seam:
/// after the first cycle every cycle comes out the same, sample for sample, at any rate at
/// which a cycle is a whole number of samples (every integer rate: cycles are whole seconds).
/// [`AudioSource::read`] never ends and never blocks.
#[derive(Clone)]
pub struct RingSource {
    kind: RingKind,
    rate: u32,
    cycle: &'static [f32],
    /// Next input sample of the cycle to feed.
    pos: usize,
    resampler: Resampler,
    queue: FrameQueue,
    scratch: Vec<f32>,
}

impl std::fmt::Debug for RingSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingSource")
            .field("kind", &self.kind)
            .field("rate", &self.rate)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl RingSource {
    /// `kind` looped, in frames at `rate` Hz (clamped to [`super::MIN_RATE`]..=[`super::MAX_RATE`]).
    pub fn new(kind: RingKind, rate: u32) -> RingSource {
        let rate = rate.clamp(super::MIN_RATE, super::MAX_RATE);
        RingSource {
            kind,
            rate,
            cycle: kind.cycle(),
            pos: 0,
            resampler: Resampler::new(RING_ASSET_RATE, rate),
            queue: FrameQueue::default(),
            scratch: Vec::new(),
        }
    }

    /// Which sound this is.
    pub fn kind(&self) -> RingKind {
        self.kind
    }

    /// The rate frames come at.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Resample the next piece of the cycle into the queue (wrapping round at its end).
    fn feed(&mut self) {
        let end = (self.pos + FEED).min(self.cycle.len());
        self.scratch.clear();
        self.resampler
            .process(&self.cycle[self.pos..end], &mut self.scratch);
        self.queue.extend(&self.scratch);
        self.pos = if end == self.cycle.len() { 0 } else { end };
    }
}

impl AudioSource for RingSource {
    fn read(&mut self, frame: &mut [i16]) -> SourceState {
        while self.queue.len() < frame.len() {
            self.feed();
        }
        self.queue.pop_into_i16(frame);
        SourceState::Data
    }
}

/// `kind` looped forever as frames at `rate` Hz: for the call's own audio path, a WAV sink, or
/// anything else that takes an [`AudioSource`].
pub fn ring_source(kind: RingKind, rate: u32) -> RingSource {
    RingSource::new(kind, rate)
}

/// The rate the player opens its device at (the sounds' own: no resampling on our side).
const PLAYER_RATE: u32 = RING_ASSET_RATE;
/// Frame length written to the device.
const FRAME_MS: u32 = 20;
/// How often the player looks at the device's queue.
const CHECK_EVERY: Duration = Duration::from_millis(10);
/// Queued beyond what the device's level control waits for (one frame plus its margin).
const LEAD_MS: u32 = 20;
/// At most this many frames per look (the level control's largest margin, 150 ms, plus two
/// frames), so a queue that does not fill can never keep the thread writing.
const MAX_FRAMES_PER_CHECK: u32 = 10;

/// Rings on a playback device: a [`RingSource`] played from a thread of its own until
/// [`RingPlayer::stop`] (or drop).
///
/// Pacing follows the device's clock, not ours: every 10 ms the thread looks at how much
/// audio the stream has queued and tops it up with whole 20 ms frames to one frame plus the
/// stream's current margin plus one frame (60 ms at first). That sits inside the stream's
/// level control (which starts playing at one frame plus its margin, grows the margin after
/// an underrun, and drops audio that stays more than 40 ms above that), so it neither runs
/// dry nor piles up, however the two clocks drift. Nothing is written before the device's
/// first callback (the stream would discard it, cutting the start of the sound). Between
/// looks the thread sleeps in `recv_timeout` on its stop channel, so stopping is immediate
/// and the thread never spins.
///
/// Stopping writes one more frame faded out to silence (no click), lets the queued audio
/// (about 60 ms) play out and closes the device: `stop` returns within about 0.1 s.
#[derive(Debug)]
pub struct RingPlayer {
    kind: RingKind,
    device: String,
    stop: Option<mpsc::Sender<()>>,
    handle: Option<thread::JoinHandle<Result<StreamStats, AudioError>>>,
}

impl RingPlayer {
    /// Open playback device `device` (None = the default; names as for
    /// [`super::open_playback`]) and start ringing `kind` on it.
    pub fn start(kind: RingKind, device: Option<&str>) -> Result<RingPlayer, AudioError> {
        let stream = PlaybackStream::open(device, PLAYER_RATE)?;
        let device = stream.device_name().to_string();
        let source = RingSource::new(kind, PLAYER_RATE);
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let handle = thread::Builder::new()
            .name("termphone-ring".into())
            .spawn(move || play(stream, source, &stop_rx))
            .map_err(|e| AudioError::NoDevice {
                message: format!("cannot start the ring thread: {e}"),
            })?;
        tracing::debug!(kind = kind.name(), device = %device, "ringing");
        Ok(RingPlayer {
            kind,
            device,
            stop: Some(stop_tx),
            handle: Some(handle),
        })
    }

    /// What is ringing.
    pub fn kind(&self) -> RingKind {
        self.kind
    }

    /// The playback device's name.
    pub fn device_name(&self) -> &str {
        &self.device
    }

    /// False once the ringing has ended on its own (the device failed).
    pub fn is_playing(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| !h.is_finished())
    }

    /// Stop ringing and close the device (a device failure is logged).
    pub fn stop(self) {
        drop(self);
    }

    /// Stop ringing, close the device, and return the stream's counters, or the device's
    /// failure if it failed while ringing.
    pub fn stop_with_stats(mut self) -> Result<StreamStats, AudioError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<StreamStats, AudioError> {
        drop(self.stop.take()); // the thread's recv_timeout sees the channel close
        let Some(handle) = self.handle.take() else {
            return Err(AudioError::Device {
                device: self.device.clone(),
                problem: "the ring player was already stopped".into(),
            });
        };
        handle.join().unwrap_or_else(|_| {
            Err(AudioError::Device {
                device: self.device.clone(),
                problem: "the ring thread panicked".into(),
            })
        })
    }
}

impl Drop for RingPlayer {
    fn drop(&mut self) {
        if self.handle.is_none() {
            return;
        }
        match self.shutdown() {
            Ok(stats) => {
                tracing::debug!(kind = self.kind.name(), device = %self.device, ?stats, "ringing stopped");
            }
            Err(e) => {
                tracing::warn!(kind = self.kind.name(), "ringing ended with an error: {e}");
            }
        }
    }
}

/// The ring thread: keep the device's queue topped up until `stop` closes, then fade out.
fn play(
    mut stream: PlaybackStream,
    mut source: RingSource,
    stop: &mpsc::Receiver<()>,
) -> Result<StreamStats, AudioError> {
    let mut frame = vec![0i16; (PLAYER_RATE / 1000 * FRAME_MS) as usize];
    let mut started = false;
    let mut next = Instant::now();
    loop {
        next += CHECK_EVERY;
        let now = Instant::now();
        if next < now {
            next = now; // held off (a suspended process): no burst to catch up
        }
        match stop.recv_timeout(next - now) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
        }
        let stats = stream.stats();
        if stats.failed {
            return Err(AudioError::Device {
                device: stream.device_name().to_string(),
                problem: format!(
                    "the stream failed: {}",
                    stats.last_error.as_deref().unwrap_or("unknown error")
                ),
            });
        }
        if stats.callbacks == 0 {
            continue; // the device has not asked for audio yet
        }
        // The first time only one frame plus the margin, what the level control starts
        // on: more would be dropped as start-up delay, cutting the start of the sound.
        let target = FRAME_MS + stats.margin_ms + if started { LEAD_MS } else { 0 };
        let mut buffered = stats.buffered_ms;
        let mut written = 0;
        while buffered < target && written < MAX_FRAMES_PER_CHECK {
            source.read(&mut frame);
            stream.write(&frame)?;
            buffered = stream.stats().buffered_ms;
            written += 1;
        }
        started = true;
    }
    if started {
        source.read(&mut frame);
        let n = frame.len() as f32;
        for (i, s) in frame.iter_mut().enumerate() {
            *s = (f32::from(*s) * (1.0 - i as f32 / n)) as i16;
        }
        stream.write(&frame)?;
    }
    stream.finish()?;
    Ok(stream.stats())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::goertzel;

    fn read_samples(src: &mut RingSource, n: usize) -> Vec<i16> {
        let frame = (src.rate() / 50) as usize; // 20 ms, as the engine reads
        let mut out = Vec::with_capacity(n + frame);
        let mut buf = vec![0i16; frame];
        while out.len() < n {
            assert_eq!(src.read(&mut buf), SourceState::Data);
            out.extend_from_slice(&buf);
        }
        out.truncate(n);
        out
    }

    fn rms(x: &[i16]) -> f64 {
        let e: f64 = x.iter().map(|&s| (f64::from(s) / 32768.0).powi(2)).sum();
        (e / x.len().max(1) as f64).sqrt()
    }

    fn ms(rate: u32, ms: u32) -> usize {
        (u64::from(rate) * u64::from(ms) / 1000) as usize
    }

    #[test]
    fn embedded_sounds_decode_as_one_cycle() {
        for kind in RingKind::ALL {
            let c = kind.cycle();
            assert_eq!(c.len(), ms(RING_ASSET_RATE, kind.cycle_ms()), "{kind}");
            assert!(kind.on_ms() < kind.cycle_ms());
            assert!(kind.wav_bytes().len() < 600_000, "{kind} is small");
        }
    }

    /// Energy during each cycle's on period, silence during its off period, for 2.5 cycles.
    #[test]
    fn ring_sources_keep_their_cadence_at_8_16_48_khz() {
        for kind in RingKind::ALL {
            for rate in [8000, 16000, 48000] {
                let mut src = ring_source(kind, rate);
                let cycle = ms(rate, kind.cycle_ms());
                let all = read_samples(&mut src, cycle * 5 / 2);
                let win = ms(rate, 50);
                for (i, w) in all.chunks_exact(win).enumerate() {
                    let t = (i as u32 * 50) % kind.cycle_ms(); // window start in its cycle
                    let level = rms(w);
                    if t >= 20 && t + 50 <= kind.on_ms() - 30 {
                        assert!(level > 0.01, "{kind} {rate} Hz: quiet at {t} ms: {level}");
                    } else if t >= kind.on_ms() + 20 && t + 50 <= kind.cycle_ms() - 20 {
                        assert!(level < 1e-4, "{kind} {rate} Hz: sound at {t} ms: {level}");
                    }
                }
            }
        }
    }

    /// After the first cycle (whose start comes out of the resampler's empty history) every
    /// cycle is the same, sample for sample: the loop has no seam.
    #[test]
    fn ring_sources_loop_without_a_seam() {
        for kind in RingKind::ALL {
            for rate in [8000, 16000, 44100, 48000] {
                let mut src = ring_source(kind, rate);
                let cycle = ms(rate, kind.cycle_ms());
                let all = read_samples(&mut src, cycle * 3);
                assert_eq!(
                    all[cycle..2 * cycle],
                    all[2 * cycle..],
                    "{kind} at {rate} Hz"
                );
                // and the first cycle differs from them only near its very start
                let head = ms(rate, 10);
                assert_eq!(
                    all[head..cycle],
                    all[cycle + head..2 * cycle],
                    "{kind} {rate}"
                );
            }
        }
    }

    #[test]
    fn ringback_is_425_hz() {
        for rate in [8000, 16000, 48000] {
            let mut src = ring_source(RingKind::Ringback, rate);
            let all = read_samples(&mut src, ms(rate, 1000));
            let tone = &all[ms(rate, 100)..ms(rate, 900)];
            let a = goertzel(tone, 425.0, rate);
            assert!((a - 0.3).abs() < 0.01, "{rate} Hz: 425 Hz amplitude {a}");
            for other in [350.0, 400.0, 450.0, 850.0, 1000.0] {
                let b = goertzel(tone, other, rate);
                assert!(b < 0.01, "{rate} Hz: {other} Hz amplitude {b}");
            }
        }
    }

    #[test]
    fn ringtone_notes_are_there_at_every_rate() {
        for rate in [8000, 16000, 48000] {
            let mut src = ring_source(RingKind::Ringtone, rate);
            let all = read_samples(&mut src, ms(rate, 2000));
            let win = ms(rate, 100);
            let best = |f: f64| {
                all.windows(win)
                    .step_by(win / 4)
                    .map(|w| goertzel(w, f, rate))
                    .fold(0.0f64, f64::max)
            };
            let notes: Vec<f64> = RingKind::Ringtone
                .tones_hz()
                .iter()
                .map(|&f| best(f))
                .collect();
            for (f, a) in RingKind::Ringtone.tones_hz().iter().zip(&notes) {
                assert!(*a > 0.1, "{rate} Hz: {f} Hz peaks at {a}");
            }
            // frequencies between the notes stay well below them
            for f in [300.0, 740.0, 1150.0, 2400.0] {
                let b = best(f);
                assert!(b < 0.03, "{rate} Hz: {f} Hz reaches {b} ({notes:?})");
            }
        }
    }

    #[test]
    fn any_frame_size_and_odd_rates_work() {
        let mut a = ring_source(RingKind::Ringtone, 16000);
        let mut b = ring_source(RingKind::Ringtone, 16000);
        let mut whole = vec![0i16; 4800];
        a.read(&mut whole);
        let mut parts = vec![0i16; 4800];
        for c in parts.chunks_mut(77) {
            b.read(c);
        }
        assert_eq!(whole, parts);
        // out-of-range rates are clamped, not a panic
        assert_eq!(
            ring_source(RingKind::Ringback, 0).rate(),
            crate::audio::MIN_RATE
        );
        let mut buf = [0i16; 10];
        assert_eq!(
            ring_source(RingKind::Ringback, u32::MAX).read(&mut buf),
            SourceState::Data
        );
    }
}
