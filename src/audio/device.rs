//! Sound devices through cpal: listing, capture and playback streams.
//!
//! Each open stream has its own `std::thread` that finds the device, builds the cpal stream,
//! starts it and then only waits to be told to stop (a cpal `Stream` is not `Send`, so it
//! must stay on the thread that made it). Samples cross between the audio callback and the
//! engine through an `rtrb` ring (lock-free, single producer, single consumer) in the
//! device's own sample format, rate and channel layout. The callbacks copy and count, and
//! nothing else: no locks, no allocation, no logging. Mixing to mono, format conversion and
//! resampling to the caller's rate happen in [`CaptureStream::read`] and
//! [`PlaybackStream::write`], on the engine's side.
//!
//! Buffering, underruns and overruns: see the `stream` module, which holds the
//! device-independent half (callback bodies and the engine side) and its tests.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample};
use rtrb::RingBuffer;

use super::stream::{
    capture_callback, playback_callback, ring_capacity, CaptureRing, CaptureSide, Level,
    PlaybackRing, PlaybackSide, Shared, START_MARGIN_MS,
};
use super::{AudioError, AudioSink, AudioSource, SourceState};

/// The device period asked for, in milliseconds (see `stream_config`).
const DEVICE_PERIOD_MS: u64 = 30;
/// How long opening a device may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// The ALSA "null" PCM opens fine but has no clock (it runs hundreds of times faster than
/// real time): never offered as a device.
const CLOCKLESS_IDS: &[&str] = &["alsa:null"];

/// A device's preferred stream settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    /// Frames per second.
    pub sample_rate: u32,
    /// Interleaved channels.
    pub channels: u16,
    /// Sample format as cpal names it ("f32", "i16", ...).
    pub sample_format: String,
}

impl std::fmt::Display for DeviceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} Hz, {} ch, {}",
            self.sample_rate, self.channels, self.sample_format
        )
    }
}

/// One usable device of one direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Human name (what `open_*` matches first).
    pub name: String,
    /// Host-specific id, e.g. `alsa:pulse` (`open_*` also accepts it, with or without `alsa:`).
    pub id: String,
    /// Its default configuration for this direction.
    pub default_config: DeviceConfig,
    /// Whether this is the host's default device for this direction.
    pub is_default: bool,
}

/// The usable input and output devices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceList {
    /// Capture devices.
    pub inputs: Vec<DeviceInfo>,
    /// Playback devices.
    pub outputs: Vec<DeviceInfo>,
}

/// Counters of one open stream, for the call-quality view and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Audio callbacks so far.
    pub callbacks: u64,
    /// Times the stream ran dry and silence was put in.
    pub underruns: u64,
    /// Times audio was dropped because too much was queued.
    pub overruns: u64,
    /// Errors the device reported (including harmless ones such as xruns).
    pub errors: u64,
    /// The last error the device reported, in words.
    pub last_error: Option<String>,
    /// The device has failed for good (unplugged, server gone).
    pub failed: bool,
    /// Audio queued now, in milliseconds.
    pub buffered_ms: u32,
    /// The level control's margin now, in milliseconds (it grows after underruns).
    pub margin_ms: u32,
}

#[derive(Clone, Copy)]
enum Direction {
    Input,
    Output,
}

impl Direction {
    fn word(self) -> &'static str {
        match self {
            Direction::Input => "input",
            Direction::Output => "output",
        }
    }
}

fn sample_format_name(f: SampleFormat) -> String {
    f.to_string()
}

fn config_of(c: &cpal::SupportedStreamConfig) -> DeviceConfig {
    DeviceConfig {
        sample_rate: c.sample_rate(),
        channels: c.channels(),
        sample_format: sample_format_name(c.sample_format()),
    }
}

fn device_id(d: &cpal::Device) -> String {
    d.id().map(|i| i.to_string()).unwrap_or_default()
}

fn default_config(
    d: &cpal::Device,
    dir: Direction,
) -> Result<cpal::SupportedStreamConfig, cpal::Error> {
    match dir {
        Direction::Input => d.default_input_config(),
        Direction::Output => d.default_output_config(),
    }
}

const NO_SERVER_HINT: &str = "no sound card or sound server is reachable; on a headless \
     machine start one with scripts/headless-audio.sh";

/// List the input and output devices that can be opened, with their default configs.
///
/// Devices whose default configuration cannot be read are left out, and so is ALSA's
/// clockless "null" device. When nothing at all is usable the error says so (with no sound
/// server, cpal still names a "default" device that cannot open: that counts as none).
/// alsa-lib may print to stderr while this probes devices; see the module docs.
pub fn list_devices() -> Result<DeviceList, AudioError> {
    let host = cpal::default_host();
    let default_in = host.default_input_device().map(|d| device_id(&d));
    let default_out = host.default_output_device().map(|d| device_id(&d));
    let devices = host.devices().map_err(|e| AudioError::NoDevice {
        message: format!("cannot enumerate audio devices: {e}; {NO_SERVER_HINT}"),
    })?;
    let mut list = DeviceList::default();
    for d in devices {
        let id = device_id(&d);
        if CLOCKLESS_IDS.contains(&id.as_str()) {
            continue;
        }
        let name = d.to_string();
        for dir in [Direction::Input, Direction::Output] {
            if let Ok(cfg) = default_config(&d, dir) {
                let (out, default) = match dir {
                    Direction::Input => (&mut list.inputs, &default_in),
                    Direction::Output => (&mut list.outputs, &default_out),
                };
                out.push(DeviceInfo {
                    name: name.clone(),
                    is_default: default.as_deref() == Some(id.as_str()),
                    id: id.clone(),
                    default_config: config_of(&cfg),
                });
            }
        }
    }
    if list.inputs.is_empty() && list.outputs.is_empty() {
        return Err(AudioError::NoDevice {
            message: NO_SERVER_HINT.to_string(),
        });
    }
    Ok(list)
}

/// Find a device by name (None = the host's default) for one direction.
fn find_device(name: Option<&str>, dir: Direction) -> Result<(cpal::Device, String), AudioError> {
    let host = cpal::default_host();
    let Some(want) = name else {
        let d = match dir {
            Direction::Input => host.default_input_device(),
            Direction::Output => host.default_output_device(),
        };
        return match d {
            Some(d) => {
                let n = d.to_string();
                Ok((d, n))
            }
            None => Err(AudioError::NoDevice {
                message: format!(
                    "the audio host has no default {} device; {NO_SERVER_HINT}",
                    dir.word()
                ),
            }),
        };
    };
    let devices: Vec<cpal::Device> = match dir {
        Direction::Input => host.input_devices().map(|i| i.collect()),
        Direction::Output => host.output_devices().map(|i| i.collect()),
    }
    .map_err(|e| AudioError::NoDevice {
        message: format!("cannot enumerate audio devices: {e}; {NO_SERVER_HINT}"),
    })?;
    let devices: Vec<(cpal::Device, String, String)> = devices
        .into_iter()
        .map(|d| {
            let n = d.to_string();
            let id = device_id(&d);
            (d, n, id)
        })
        .filter(|(_, _, id)| !CLOCKLESS_IDS.contains(&id.as_str()))
        .collect();
    let lower = want.to_lowercase();
    let exact = devices.iter().position(|(_, n, id)| {
        n == want
            || id == want
            || id.split_once(':').is_some_and(|(_, rest)| rest == want)
            || n.to_lowercase() == lower
    });
    let pick = exact.or_else(|| {
        let mut hits = devices
            .iter()
            .enumerate()
            .filter(|(_, (_, n, _))| n.to_lowercase().contains(&lower));
        match (hits.next(), hits.next()) {
            (Some((i, _)), None) => Some(i),
            _ => None,
        }
    });
    match pick {
        Some(i) => {
            let (d, n, _) = devices
                .into_iter()
                .nth(i)
                .ok_or_else(|| AudioError::NoDevice {
                    message: "device list changed while searching".into(),
                })?;
            Ok((d, n))
        }
        None => Err(AudioError::DeviceNotFound {
            name: want.to_string(),
            direction: dir.word(),
            available: devices.into_iter().map(|(_, n, _)| n).collect(),
        }),
    }
}

/// The error for a device that was found but cannot stream.
fn open_error(name: Option<&str>, device: &str, dir: Direction, e: &cpal::Error) -> AudioError {
    if name.is_none() {
        // cpal's generic text for this kind speaks of a disconnected device: misleading here
        let detail = if e.kind() == cpal::ErrorKind::DeviceNotAvailable && e.message().is_none() {
            String::new()
        } else {
            format!(" ({e})")
        };
        AudioError::NoDevice {
            message: format!(
                "the default {} device cannot be opened{detail}; {NO_SERVER_HINT}",
                dir.word()
            ),
        }
    } else {
        AudioError::Device {
            device: device.to_string(),
            problem: format!("cannot open for {}: {e}", dir.word()),
        }
    }
}

/// Owns a device thread; dropping it stops the stream and joins the thread.
struct DeviceThread {
    stop: Option<mpsc::Sender<()>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Drop for DeviceThread {
    fn drop(&mut self) {
        drop(self.stop.take()); // the thread's recv() returns, it drops the stream
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Nice value of the device threads, the same as PulseAudio gives its own.
const AUDIO_NICE: i32 = -11;

/// Raise the calling thread's priority to [`AUDIO_NICE`], before the device is opened, so
/// that the threads the device layers start from it (cpal's worker, the pulse plugin's
/// mainloop) inherit it. Without the permission (`RLIMIT_NICE`) this does nothing.
///
/// Measured with a parallel `cargo build` saturating both cores: at nice 0 the device
/// threads were held off for 40-140 ms now and then; each time PulseAudio ran out of our
/// audio and inserted silence (1 to 3 gaps in most 8 s calls, each one a jump in the
/// recorded speech's alignment). At nice -11 none happened.
fn raise_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority only reads its integer arguments. On Linux, PRIO_PROCESS with
        // who = 0 applies to the calling thread alone (nice is per thread there).
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, AUDIO_NICE) };
        if rc != 0 {
            tracing::debug!(
                "audio thread priority stays normal: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Run `build` on a new thread that keeps the stream it returns alive until stopped.
fn spawn_device_thread<R, F>(name: &str, build: F) -> Result<(DeviceThread, R), AudioError>
where
    R: Send + 'static,
    F: FnOnce() -> Result<(cpal::Stream, R), AudioError> + Send + 'static,
{
    let (res_tx, res_rx) = mpsc::channel::<Result<R, AudioError>>();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let handle = thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            raise_priority();
            match build() {
                Ok((stream, r)) => {
                    if res_tx.send(Ok(r)).is_ok() {
                        // blocks until the owner drops its sender
                        let _ = stop_rx.recv();
                    }
                    drop(stream);
                }
                Err(e) => {
                    let _ = res_tx.send(Err(e));
                }
            }
        })
        .map_err(|e| AudioError::NoDevice {
            message: format!("cannot start the audio thread: {e}"),
        })?;
    let mut thread = DeviceThread {
        stop: Some(stop_tx),
        handle: Some(handle),
    };
    match res_rx.recv_timeout(OPEN_TIMEOUT) {
        Ok(Ok(r)) => Ok((thread, r)),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            // do not wait for a hung device: let the thread finish on its own
            thread.handle = None;
            Err(AudioError::NoDevice {
                message: format!(
                    "the audio device did not open within {} s",
                    OPEN_TIMEOUT.as_secs()
                ),
            })
        }
    }
}

// ---------------------------------------------------------------------------------------
// Capture

fn build_capture<T>(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    shared: Arc<Shared>,
) -> Result<(cpal::Stream, Box<dyn CaptureRing>), cpal::Error>
where
    T: SizedSample + Send + 'static,
    f32: FromSample<T>,
{
    let ch = usize::from(config.channels.max(1));
    let (mut producer, consumer) = RingBuffer::<T>::new(ring_capacity(config.sample_rate, ch));
    let cb_shared = shared.clone();
    let stream = device.build_input_stream::<T, _, _>(
        config,
        move |data: &[T], info: &cpal::InputCallbackInfo| {
            let ts = info.timestamp();
            let d = ts.callback.duration_since(ts.capture).as_micros() as u64;
            cb_shared.device_delay_us.store(d, Relaxed);
            capture_callback(&mut producer, data, ch, &cb_shared)
        },
        move |e| on_device_error(&shared, e.kind()),
        None,
    )?;
    Ok((stream, Box::new(consumer)))
}

/// Build the right typed stream for a sample format, or None if it is not supported.
macro_rules! by_sample_format {
    ($fmt:expr, $f:ident, $($arg:expr),*) => {
        match $fmt {
            SampleFormat::F32 => Some($f::<f32>($($arg),*)),
            SampleFormat::I16 => Some($f::<i16>($($arg),*)),
            SampleFormat::I32 => Some($f::<i32>($($arg),*)),
            SampleFormat::U16 => Some($f::<u16>($($arg),*)),
            SampleFormat::U8 => Some($f::<u8>($($arg),*)),
            SampleFormat::I8 => Some($f::<i8>($($arg),*)),
            SampleFormat::F64 => Some($f::<f64>($($arg),*)),
            _ => None,
        }
    };
}

/// Microphone input: mono frames at the caller's rate from a cpal input device.
pub struct CaptureStream {
    side: CaptureSide,
    shared: Arc<Shared>,
    device: String,
    config: DeviceConfig,
    // last field: dropped last, after the ring it feeds
    _thread: DeviceThread,
}

impl std::fmt::Debug for CaptureStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureStream")
            .field("device", &self.device)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl CaptureStream {
    /// Open input device `name` (None = default) delivering mono frames at `rate` Hz.
    pub fn open(name: Option<&str>, rate: u32) -> Result<CaptureStream, AudioError> {
        super::check_rate(rate, "capture")?;
        let shared = Arc::new(Shared::new(0));
        let name_owned = name.map(str::to_string);
        let thread_shared = shared.clone();
        let (thread, (ring, device, config)) =
            spawn_device_thread("termphone-audio-in", move || {
                let name = name_owned.as_deref();
                let (dev, dev_name) = find_device(name, Direction::Input)?;
                let supported = dev
                    .default_input_config()
                    .map_err(|e| open_error(name, &dev_name, Direction::Input, &e))?;
                let cfg = config_of(&supported);
                let (stream, ring) = build_and_play(
                    &dev_name,
                    name,
                    Direction::Input,
                    &cfg,
                    |c| {
                        by_sample_format!(
                            supported.sample_format(),
                            build_capture,
                            &dev,
                            c,
                            thread_shared.clone()
                        )
                    },
                    &supported,
                )?;
                Ok((stream, (ring, dev_name, cfg)))
            })?;
        Ok(CaptureStream {
            side: CaptureSide::new(ring, config.sample_rate, usize::from(config.channels), rate),
            shared,
            device,
            config,
            _thread: thread,
        })
    }

    /// The device's name.
    pub fn device_name(&self) -> &str {
        &self.device
    }

    /// The configuration the device runs at.
    pub fn device_config(&self) -> &DeviceConfig {
        &self.config
    }

    /// Counters so far.
    pub fn stats(&self) -> StreamStats {
        let mut st = self.shared.stats(
            self.side.underruns,
            self.side.overruns,
            self.side.buffered_ms(),
        );
        st.margin_ms = self.side.margin_ms();
        st
    }
}

impl Drop for CaptureStream {
    fn drop(&mut self) {
        tracing::info!(device = %self.device, stats = ?self.stats(), "audio capture closed");
    }
}

impl AudioSource for CaptureStream {
    /// Never blocks: before the first audio arrives, and when the device falls behind, the
    /// frame is silence. `Ended` only once the device has failed for good.
    fn read(&mut self, frame: &mut [i16]) -> SourceState {
        let failed = self.shared.failed.load(Relaxed);
        let st = self.side.read(frame, failed);
        trace_timeline(
            "capture",
            &self.shared,
            self.side.queued_device_samples(),
            self.config.channels,
        );
        tracing::trace!(target: "termphone::audio::timeline", side_ms = self.side.buffered_ms(), margin_ms = self.side.margin_ms(), cap_under = self.side.underruns, cap_over = self.side.overruns);
        st
    }
}

// ---------------------------------------------------------------------------------------
// Playback

fn build_playback<T>(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    shared: Arc<Shared>,
) -> Result<(cpal::Stream, Box<dyn PlaybackRing>), cpal::Error>
where
    T: SizedSample + FromSample<f32> + Send + 'static,
{
    let ch = usize::from(config.channels.max(1));
    let (producer, mut consumer) = RingBuffer::<T>::new(ring_capacity(config.sample_rate, ch));
    let cb_shared = shared.clone();
    let mut level = Level::new(config.sample_rate, ch, START_MARGIN_MS);
    shared.margin.store(level.margin(), Relaxed);
    let stream = device.build_output_stream::<T, _, _>(
        config,
        move |data: &mut [T], info: &cpal::OutputCallbackInfo| {
            let ts = info.timestamp();
            let d = ts.playback.duration_since(ts.callback).as_micros() as u64;
            cb_shared.device_delay_us.store(d, Relaxed);
            playback_callback(&mut consumer, data, ch, &cb_shared, &mut level)
        },
        move |e| on_device_error(&shared, e.kind()),
        None,
    )?;
    Ok((stream, Box::new(producer)))
}

/// Speaker output: takes mono frames at the caller's rate and plays them on a cpal device.
pub struct PlaybackStream {
    side: PlaybackSide,
    shared: Arc<Shared>,
    device: String,
    config: DeviceConfig,
    finished: bool,
    // last field: dropped last
    thread: Option<DeviceThread>,
}

impl std::fmt::Debug for PlaybackStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlaybackStream")
            .field("device", &self.device)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl PlaybackStream {
    /// Open output device `name` (None = default) taking mono frames at `rate` Hz.
    pub fn open(name: Option<&str>, rate: u32) -> Result<PlaybackStream, AudioError> {
        super::check_rate(rate, "playback")?;
        let shared = Arc::new(Shared::new(usize::MAX));
        let name_owned = name.map(str::to_string);
        let thread_shared = shared.clone();
        let (thread, (ring, device, config)) =
            spawn_device_thread("termphone-audio-out", move || {
                let name = name_owned.as_deref();
                let (dev, dev_name) = find_device(name, Direction::Output)?;
                let supported = dev
                    .default_output_config()
                    .map_err(|e| open_error(name, &dev_name, Direction::Output, &e))?;
                let cfg = config_of(&supported);
                let frame = PlaybackSide::initial_frame(
                    supported.sample_rate(),
                    usize::from(supported.channels().max(1)),
                );
                thread_shared.frame.store(frame, Relaxed);
                let (stream, ring) = build_and_play(
                    &dev_name,
                    name,
                    Direction::Output,
                    &cfg,
                    |c| {
                        by_sample_format!(
                            supported.sample_format(),
                            build_playback,
                            &dev,
                            c,
                            thread_shared.clone()
                        )
                    },
                    &supported,
                )?;
                Ok((stream, (ring, dev_name, cfg)))
            })?;
        Ok(PlaybackStream {
            side: PlaybackSide::new(ring, config.sample_rate, usize::from(config.channels), rate),
            shared,
            device,
            config,
            finished: false,
            thread: Some(thread),
        })
    }

    /// The device's name.
    pub fn device_name(&self) -> &str {
        &self.device
    }

    /// The configuration the device runs at.
    pub fn device_config(&self) -> &DeviceConfig {
        &self.config
    }

    /// Counters so far.
    pub fn stats(&self) -> StreamStats {
        let mut st = self
            .shared
            .stats(0, self.side.overruns, self.side.buffered_ms());
        let per_ms = (u64::from(self.config.sample_rate) * u64::from(self.config.channels.max(1))
            / 1000)
            .max(1);
        st.margin_ms = (self.shared.margin.load(Relaxed) as u64 / per_ms) as u32;
        st
    }

    fn device_error(&self) -> AudioError {
        AudioError::Device {
            device: self.device.clone(),
            problem: format!("the stream failed: {}", self.shared.last_error_text()),
        }
    }
}

impl Drop for PlaybackStream {
    fn drop(&mut self) {
        tracing::info!(device = %self.device, stats = ?self.stats(), discarded_at_start = self.side.discarded, "audio playback closed");
    }
}

impl AudioSink for PlaybackStream {
    /// Never blocks: a frame that does not fit (the device stopped taking audio) is dropped
    /// and counted. An error once the device has failed for good.
    fn write(&mut self, frame: &[i16]) -> Result<(), AudioError> {
        if self.finished {
            return Err(AudioError::Device {
                device: self.device.clone(),
                problem: "playback already finished".into(),
            });
        }
        if self.shared.failed.load(Relaxed) {
            return Err(self.device_error());
        }
        self.side.write(frame, &self.shared);
        trace_timeline(
            "playback",
            &self.shared,
            self.side.queued(),
            self.config.channels,
        );
        Ok(())
    }

    /// Play out what is queued (waits at most that long plus 0.5 s), then close the device.
    fn finish(&mut self) -> Result<(), AudioError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        self.side.flush();
        self.shared.draining.store(true, Relaxed);
        let queued_ms = u64::from(self.side.buffered_ms());
        let deadline = Instant::now() + Duration::from_millis(queued_ms + 500);
        while self.side.queued() > 0
            && Instant::now() < deadline
            && !self.shared.failed.load(Relaxed)
        {
            thread::sleep(Duration::from_millis(5));
        }
        // let the device play its last callback's worth
        thread::sleep(Duration::from_millis(30));
        let failed = self.shared.failed.load(Relaxed);
        self.thread = None; // stops the stream, joins its thread
        if failed {
            Err(self.device_error())
        } else {
            Ok(())
        }
    }
}

/// cpal's error callback (it runs on cpal's device thread, outside the audio data path).
///
/// The ALSA pulse plugin answers `snd_pcm_avail_delay` with EIO whenever its stream has no
/// timing information yet: at start and after every PulseAudio underrun, until the next
/// timing update arrives from the server. cpal's worker then spins, reporting the error
/// each time round (100,000 times in 300 ms was measured), burning a core and holding off
/// the plugin's own thread that would bring the update. Backing off 1 ms per such error
/// ends the spin much sooner and costs nothing in the data path.
fn on_device_error(shared: &Shared, kind: cpal::ErrorKind) {
    shared.on_error(kind);
    if kind == cpal::ErrorKind::BackendError {
        thread::sleep(Duration::from_millis(1));
    }
}

/// The stream configuration to ask for: the device's default format, and with `fixed` a
/// period of [`DEVICE_PERIOD_MS`] when the device allows it.
///
/// Left to itself (`BufferSize::Default`) the ALSA pulse plugin runs 512-frame periods in a
/// ~21 ms buffer. On a busy machine that underruns inside PulseAudio; every underrun inserts
/// silence, and the plugin then fails `snd_pcm_avail_delay` until new timing information
/// arrives, stalling the stream for up to a few hundred ms (measured: 1 to 3 such events in
/// most 8 s calls with a parallel build). cpal asks for two periods of the requested size;
/// the pulse plugin needs at least three, so it makes periods of 2/3 of it: asking for 30 ms
/// gives 20 ms periods in a 60 ms buffer there (and 30 ms periods, 60 ms buffer, on a plain
/// ALSA card).
/// Build a stream with the period we ask for, or with the device's own choice if it refuses
/// that, then start it. `build` makes the typed stream for one config (`None`: the sample
/// format is not supported).
fn build_and_play<R>(
    dev_name: &str,
    name: Option<&str>,
    dir: Direction,
    cfg: &DeviceConfig,
    build: impl Fn(cpal::StreamConfig) -> Option<Result<(cpal::Stream, R), cpal::Error>>,
    supported: &cpal::SupportedStreamConfig,
) -> Result<(cpal::Stream, R), AudioError> {
    let built = match build(stream_config(supported, true)) {
        Some(Err(_)) => build(stream_config(supported, false)),
        other => other,
    }
    .ok_or_else(|| AudioError::Device {
        device: dev_name.to_string(),
        problem: format!("unsupported sample format {}", cfg.sample_format),
    })?;
    let (stream, ring) = built.map_err(|e| open_error(name, dev_name, dir, &e))?;
    stream
        .play()
        .map_err(|e| open_error(name, dev_name, dir, &e))?;
    Ok((stream, ring))
}

fn stream_config(supported: &cpal::SupportedStreamConfig, fixed: bool) -> cpal::StreamConfig {
    let mut cfg = supported.config();
    if fixed {
        let want = (supported.sample_rate() as u64 * DEVICE_PERIOD_MS / 1000) as u32;
        let ok = match supported.buffer_size() {
            cpal::SupportedBufferSize::Range { min, max } => (*min..=*max).contains(&want),
            cpal::SupportedBufferSize::Unknown => true,
        };
        if ok && want > 0 {
            cfg.buffer_size = cpal::BufferSize::Fixed(want);
        }
    }
    cfg
}

/// One line per engine call, for measuring buffering (`RUST_LOG=termphone::audio::timeline=trace`).
fn trace_timeline(what: &str, shared: &Shared, ring_samples: usize, channels: u16) {
    let ch = usize::from(channels.max(1));
    tracing::trace!(
        target: "termphone::audio::timeline",
        "{what} t={:.1} ring={} cbs={} first_cb={:.1} last_cb={:.1} cb_frames={} cb_level={} under={} over={} errors={} dev_delay={:.1} last_err={} margin={}",
        shared.epoch.elapsed().as_secs_f64() * 1000.0,
        ring_samples / ch,
        shared.callbacks.load(Relaxed),
        shared.first_callback_ns.load(Relaxed) as f64 / 1e6,
        shared.last_callback_ns.load(Relaxed) as f64 / 1e6,
        shared.callback_frames.load(Relaxed),
        shared.callback_level.load(Relaxed) / ch,
        shared.underruns.load(Relaxed),
        shared.overruns.load(Relaxed),
        shared.errors.load(Relaxed),
        shared.device_delay_us.load(Relaxed) as f64 / 1000.0,
        shared.last_error.load(Relaxed),
        shared.margin.load(Relaxed) / ch,
    );
}

/// Open an input device by name (None = the default) as a source of mono frames at `rate` Hz.
pub fn open_capture(name: Option<&str>, rate: u32) -> Result<Box<dyn AudioSource>, AudioError> {
    Ok(Box::new(CaptureStream::open(name, rate)?))
}

/// Open an output device by name (None = the default) as a sink of mono frames at `rate` Hz.
pub fn open_playback(name: Option<&str>, rate: u32) -> Result<Box<dyn AudioSink>, AudioError> {
    Ok(Box::new(PlaybackStream::open(name, rate)?))
}
