//! Audio I/O edge: sound devices (cpal), WAV files, generated tones, null devices.
//!
//! Everything here trades mono `i16` frames at a rate the caller chooses (8000 Hz for G.711;
//! any rate works). Sources produce frames ([`AudioSource`]), sinks consume them
//! ([`AudioSink`]). The engine calls them every 20 ms; none of them blocks.
//!
//! - Files: [`WavSource`] (any WAV hound reads, mixed to mono, resampled) and [`WavSink`]
//!   (16-bit mono, header kept up to date once a second, finalized on finish or drop).
//! - Generated: [`ToneSource`], [`SilenceSource`], [`NullSink`].
//! - Ring sounds: [`ring_source`] / [`RingSource`] (the ringtone or the ringback, looped, at
//!   any rate) and [`RingPlayer`] (rings on a playback device from its own thread).
//! - Devices: [`open_capture`], [`open_playback`], [`list_devices`]. Each open stream lives
//!   on its own `std::thread` (a cpal `Stream` is not `Send`) and trades samples with the
//!   caller through a lock-free single-producer/single-consumer ring. The audio callbacks
//!   only copy samples and count: no locks, no allocation, no logging. Mixing, sample format
//!   conversion and resampling happen on the caller's side.
//!
//! **stderr.** alsa-lib and its plugins print their own errors straight to file
//! descriptor 2, whatever this crate does: about 40 lines of
//! `ALSA lib confmisc.c:... cannot find card '0'` when there is no sound server, and, even
//! with one, lines from the JACK and OSS plugins whenever devices are enumerated
//! ([`list_devices`], or opening a device by name). Opening the default devices with a
//! sound server running is quiet. A full-screen terminal UI must point fd 2 elsewhere (a
//! log file) before it calls anything here, or those lines garble the screen.
//!
//! Headless machines (CI, containers) get real devices from `scripts/headless-audio.sh`,
//! which starts a private PulseAudio with null sinks; see that script.

mod convert;
mod device;
mod error;
mod gen;
pub mod resample;
mod ring;
mod stream;
mod wav;

pub use convert::{f32_to_i16, i16_to_f32};
pub use device::{
    list_devices, open_capture, open_playback, CaptureStream, DeviceConfig, DeviceInfo, DeviceList,
    PlaybackStream, StreamStats,
};
pub use error::AudioError;
pub use gen::{goertzel, NullSink, SilenceSource, ToneSource};
pub use ring::{ring_source, RingKind, RingPlayer, RingSource, RING_ASSET_RATE};
pub use wav::{read_wav, WavSink, WavSource};

/// Lowest sample rate accepted anywhere here (files, devices, frames).
pub const MIN_RATE: u32 = 1000;
/// Highest sample rate accepted anywhere here.
pub const MAX_RATE: u32 = 768_000;

/// `Err` unless `rate` is within [`MIN_RATE`]..=[`MAX_RATE`]; `what` names the rate's use.
pub(crate) fn check_rate(rate: u32, what: &str) -> Result<(), AudioError> {
    if (MIN_RATE..=MAX_RATE).contains(&rate) {
        Ok(())
    } else {
        Err(AudioError::InvalidArgument(format!(
            "{what}: sample rate {rate} Hz is outside {MIN_RATE}..={MAX_RATE} Hz"
        )))
    }
}

/// What a source had to give for the frame just read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceState {
    /// The frame holds audio (the tail may be silence if the source ended inside it).
    Data,
    /// The source has ended; the frame is silence, and every later frame will be too.
    Ended,
}

/// Something that produces mono frames (microphone, file, tone).
pub trait AudioSource: Send {
    /// Fill `frame` completely with the next samples; never blocks.
    fn read(&mut self, frame: &mut [i16]) -> SourceState;
}

/// Something that consumes mono frames (speaker, file, nothing).
pub trait AudioSink: Send {
    /// Take the next samples; never blocks.
    fn write(&mut self, frame: &[i16]) -> Result<(), AudioError>;
    /// No more samples will come: flush, finalize, close.
    fn finish(&mut self) -> Result<(), AudioError>;
}

impl<T: AudioSource + ?Sized> AudioSource for Box<T> {
    fn read(&mut self, frame: &mut [i16]) -> SourceState {
        (**self).read(frame)
    }
}

impl<T: AudioSink + ?Sized> AudioSink for Box<T> {
    fn write(&mut self, frame: &[i16]) -> Result<(), AudioError> {
        (**self).write(frame)
    }
    fn finish(&mut self) -> Result<(), AudioError> {
        (**self).finish()
    }
}
