//! WAV files as sources (play a file into a call) and sinks (record a call).

use std::fs::File;
use std::io::BufReader;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use super::convert::FrameQueue;
use super::error::{describe_hound, AudioError};
use super::resample::Resampler;
use super::{AudioSink, AudioSource, SourceState};

/// Input frames decoded per refill.
const BLOCK_FRAMES: usize = 1024;

/// How samples are stored in the file.
#[derive(Debug, Clone, Copy)]
enum Encoding {
    Int { bits: u16 },
    Float,
}

/// Plays a WAV file as mono frames at the caller's rate (channels mixed, resampled).
pub struct WavSource {
    path: PathBuf,
    reader: hound::WavReader<BufReader<File>>,
    encoding: Encoding,
    channels: usize,
    file_rate: u32,
    resampler: Resampler,
    /// Mono input block at the file's rate.
    block: Vec<f32>,
    /// Converted samples waiting to be read.
    queue: FrameQueue,
    /// Resampler output scratch.
    scratch: Vec<f32>,
    input_done: bool,
    /// A read error that ended the file early, if any.
    damage: Option<String>,
}

impl std::fmt::Debug for WavSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavSource")
            .field("path", &self.path)
            .field("file_rate", &self.file_rate)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

impl WavSource {
    /// Open `path` for reading as mono 16-bit frames at `rate` Hz.
    ///
    /// Accepts what hound reads: PCM integer 8/16/24/32-bit and 32-bit float, any number of
    /// channels (mixed down to mono by averaging), any sample rate (converted to `rate`).
    pub fn open(path: &Path, rate: u32) -> Result<WavSource, AudioError> {
        super::check_rate(rate, &format!("reading {}", path.display()))?;
        let reader =
            hound::WavReader::open(path).map_err(|e| AudioError::read(path, describe_hound(&e)))?;
        let spec = reader.spec();
        if spec.channels == 0 {
            return Err(AudioError::read(path, "the WAV header declares 0 channels"));
        }
        if !(super::MIN_RATE..=super::MAX_RATE).contains(&spec.sample_rate) {
            return Err(AudioError::read(
                path,
                format!(
                    "unsupported sample rate {} Hz in the WAV header (supported: {}..={} Hz)",
                    spec.sample_rate,
                    super::MIN_RATE,
                    super::MAX_RATE
                ),
            ));
        }
        let encoding = match (spec.sample_format, spec.bits_per_sample) {
            (hound::SampleFormat::Int, bits @ 1..=32) => Encoding::Int { bits },
            (hound::SampleFormat::Float, 32) => Encoding::Float,
            (format, bits) => {
                return Err(AudioError::read(
                    path,
                    format!(
                        "unsupported sample format: {bits}-bit {}",
                        match format {
                            hound::SampleFormat::Int => "integer",
                            hound::SampleFormat::Float => "float",
                        }
                    ),
                ))
            }
        };
        Ok(WavSource {
            path: path.to_path_buf(),
            reader,
            encoding,
            channels: usize::from(spec.channels),
            file_rate: spec.sample_rate,
            resampler: Resampler::new(spec.sample_rate, rate),
            block: Vec::with_capacity(BLOCK_FRAMES),
            queue: FrameQueue::default(),
            scratch: Vec::new(),
            input_done: false,
            damage: None,
        })
    }

    /// The file's own sample rate.
    pub fn file_rate(&self) -> u32 {
        self.file_rate
    }

    /// The file's channel count (frames are mixed down to mono).
    pub fn file_channels(&self) -> usize {
        self.channels
    }

    /// If the file turned out damaged part way (truncated, bad sample), what was wrong; the
    /// source then ended at that point.
    pub fn damage(&self) -> Option<&str> {
        self.damage.as_deref()
    }

    /// Decode one block of input; false once the file is exhausted.
    fn refill(&mut self) -> bool {
        if self.input_done {
            return false;
        }
        self.block.clear();
        let want = BLOCK_FRAMES * self.channels;
        let ch = self.channels;
        let mut acc = 0.0f32;
        let mut in_frame = 0usize;
        let mut got = 0usize;
        let mut error = None;
        match self.encoding {
            Encoding::Int { bits } => {
                let scale = 1.0 / (1u64 << (bits - 1)) as f32;
                for s in self.reader.samples::<i32>().take(want) {
                    match s {
                        Ok(v) => {
                            acc += v as f32 * scale;
                            in_frame += 1;
                            got += 1;
                            if in_frame == ch {
                                self.block.push(acc / ch as f32);
                                acc = 0.0;
                                in_frame = 0;
                            }
                        }
                        Err(e) => {
                            error = Some(describe_hound(&e));
                            break;
                        }
                    }
                }
            }
            Encoding::Float => {
                for s in self.reader.samples::<f32>().take(want) {
                    match s {
                        Ok(v) => {
                            // NaN/inf in a file must not poison the filter
                            let v = if v.is_finite() { v } else { 0.0 };
                            acc += v;
                            in_frame += 1;
                            got += 1;
                            if in_frame == ch {
                                self.block.push(acc / ch as f32);
                                acc = 0.0;
                                in_frame = 0;
                            }
                        }
                        Err(e) => {
                            error = Some(describe_hound(&e));
                            break;
                        }
                    }
                }
            }
        }
        if error.is_some() {
            self.damage = error;
        }
        self.scratch.clear();
        self.resampler.process(&self.block, &mut self.scratch);
        if got < want {
            // end of data (or damage): drain the filter
            self.input_done = true;
            self.resampler.flush(&mut self.scratch);
        }
        self.queue.extend(&self.scratch);
        true
    }
}

impl AudioSource for WavSource {
    fn read(&mut self, frame: &mut [i16]) -> SourceState {
        while self.queue.len() < frame.len() && self.refill() {}
        if self.queue.is_empty() {
            frame.fill(0);
            return SourceState::Ended;
        }
        let n = self.queue.pop_into_i16(frame);
        frame[n..].fill(0);
        SourceState::Data
    }
}

/// Records mono 16-bit frames into a WAV file.
///
/// The header is brought up to date about once a second of audio, so a process that dies
/// part way still leaves a readable file holding all but the last second; [`AudioSink::finish`]
/// (or dropping the sink) finalizes it.
pub struct WavSink {
    path: PathBuf,
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    rate: u32,
    channels: u16,
    since_flush: u32,
}

impl std::fmt::Debug for WavSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavSink")
            .field("path", &self.path)
            .field("rate", &self.rate)
            .field("open", &self.writer.is_some())
            .finish()
    }
}

impl WavSink {
    /// Create (or truncate) `path` as a 16-bit mono WAV file at `rate` Hz.
    pub fn create(path: &Path, rate: u32) -> Result<WavSink, AudioError> {
        Self::create_channels(path, rate, 1)
    }

    /// Create (or truncate) `path` as a 16-bit WAV file of `channels` (1 or 2) at `rate` Hz;
    /// [`AudioSink::write`] then takes interleaved samples.
    pub fn create_channels(path: &Path, rate: u32, channels: u16) -> Result<WavSink, AudioError> {
        super::check_rate(rate, &format!("writing {}", path.display()))?;
        if !(1..=2).contains(&channels) {
            return Err(AudioError::InvalidArgument(format!(
                "writing {}: {channels} channels (1 or 2 are written)",
                path.display()
            )));
        }
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(path, spec)
            .map_err(|e| AudioError::write(path, describe_hound(&e)))?;
        Ok(WavSink {
            path: path.to_path_buf(),
            writer: Some(writer),
            rate,
            channels,
            since_flush: 0,
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AudioSink for WavSink {
    fn write(&mut self, frame: &[i16]) -> Result<(), AudioError> {
        let Some(writer) = self.writer.as_mut() else {
            return Err(AudioError::write(&self.path, "already finished"));
        };
        let mut w = writer.get_i16_writer(frame.len() as u32);
        for &s in frame {
            w.write_sample(s);
        }
        w.flush()
            .map_err(|e| AudioError::write(&self.path, describe_hound(&e)))?;
        self.since_flush = self
            .since_flush
            .saturating_add(frame.len() as u32 / u32::from(self.channels));
        if self.since_flush >= self.rate {
            self.since_flush = 0;
            writer
                .flush()
                .map_err(|e| AudioError::write(&self.path, describe_hound(&e)))?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), AudioError> {
        match self.writer.take() {
            Some(w) => w
                .finalize()
                .map_err(|e| AudioError::write(&self.path, describe_hound(&e))),
            None => Ok(()),
        }
    }
}

impl Drop for WavSink {
    fn drop(&mut self) {
        // errors cannot be reported from here; finish() is the way to see them
        let _ = self.finish();
    }
}

/// Read a whole WAV file as mono samples at `rate` (for tools and tests).
///
/// A file that turns out damaged part way is an error, not a short result.
pub fn read_wav(path: &Path, rate: u32) -> Result<Vec<i16>, AudioError> {
    let mut src = WavSource::open(path, rate)?;
    let frames = u64::from(src.reader.duration());
    let want = (frames * u64::from(rate)).div_ceil(u64::from(src.file_rate)) as usize;
    // the length comes from the header: do not trust it for an allocation
    let mut all = Vec::with_capacity(want.min(1 << 22));
    let mut frame = vec![0i16; 1024];
    while src.read(&mut frame) == SourceState::Data {
        all.extend_from_slice(&frame);
    }
    if let Some(d) = src.damage {
        return Err(AudioError::read(path, d));
    }
    // drop the silence that padded the last frame
    all.truncate(want);
    Ok(all)
}
