//! The one error type of the audio edge.

use std::fmt;
use std::path::{Path, PathBuf};

/// What went wrong with a file or a sound device; every message names what it is about.
#[derive(Debug)]
pub enum AudioError {
    /// A WAV file could not be opened, read or understood.
    ReadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it, in words ("file not found", "not a WAV file: ...").
        problem: String,
    },
    /// A WAV file could not be created or written.
    WriteFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        problem: String,
    },
    /// No sound device can be used at all (no card, no sound server).
    NoDevice {
        /// Why, with a hint on what to do.
        message: String,
    },
    /// A device was asked for by name and none matches.
    DeviceNotFound {
        /// The name asked for.
        name: String,
        /// `"input"` or `"output"`.
        direction: &'static str,
        /// Names of the usable devices of that direction.
        available: Vec<String>,
    },
    /// A device exists but its stream could not be opened or has failed.
    Device {
        /// The device's name.
        device: String,
        /// What went wrong.
        problem: String,
    },
    /// A caller passed a value that cannot work (a sample rate of 0, ...).
    InvalidArgument(String),
}

impl AudioError {
    /// A [`AudioError::ReadFile`] for `path`.
    pub(crate) fn read(path: &Path, problem: impl Into<String>) -> AudioError {
        AudioError::ReadFile {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }

    /// A [`AudioError::WriteFile`] for `path`.
    pub(crate) fn write(path: &Path, problem: impl Into<String>) -> AudioError {
        AudioError::WriteFile {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for AudioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AudioError::ReadFile { path, problem } => {
                write!(f, "cannot read audio file {}: {problem}", path.display())
            }
            AudioError::WriteFile { path, problem } => {
                write!(f, "cannot write audio file {}: {problem}", path.display())
            }
            AudioError::NoDevice { message } => write!(f, "no usable audio device: {message}"),
            AudioError::DeviceNotFound {
                name,
                direction,
                available,
            } => {
                write!(f, "no audio {direction} device named {name:?}")?;
                if available.is_empty() {
                    write!(f, " (no usable {direction} devices at all)")
                } else {
                    write!(f, "; available: ")?;
                    for (i, a) in available.iter().enumerate() {
                        if i > 0 {
                            write!(f, ", ")?;
                        }
                        write!(f, "{a:?}")?;
                    }
                    Ok(())
                }
            }
            AudioError::Device { device, problem } => {
                write!(f, "audio device {device:?}: {problem}")
            }
            AudioError::InvalidArgument(m) => write!(f, "invalid audio argument: {m}"),
        }
    }
}

impl std::error::Error for AudioError {}

/// Put a hound error into words a user can act on.
pub(crate) fn describe_hound(e: &hound::Error) -> String {
    match e {
        hound::Error::IoError(io) => describe_io(io),
        hound::Error::FormatError(m) => format!("not a WAV file or a damaged one ({m})"),
        hound::Error::TooWide => "sample values too wide for their declared bit depth".into(),
        hound::Error::UnfinishedSample => "the file ends in the middle of a sample".into(),
        hound::Error::Unsupported => {
            "unsupported WAV encoding (supported: PCM 8/16/24/32-bit integer, 32-bit float)".into()
        }
        hound::Error::InvalidSampleFormat => "invalid sample format in the WAV header".into(),
    }
}

/// Put an I/O error into words ("file not found", "permission denied", ...).
pub(crate) fn describe_io(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::NotFound => "file not found".into(),
        ErrorKind::PermissionDenied => "permission denied".into(),
        ErrorKind::UnexpectedEof => "the file is truncated".into(),
        ErrorKind::IsADirectory => "is a directory".into(),
        _ => e.to_string(),
    }
}
