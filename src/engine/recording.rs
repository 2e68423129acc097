//! Recording calls: the file names, and the recorder that writes both directions of a call
//! (mixed into one channel, or ours left and theirs right) while media runs. The recorder is
//! started and stopped on demand; its file is readable up to about the last second even if
//! the process dies (see [`WavSink`]).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::audio::{AudioError, AudioSink, WavSink};
use crate::engine::api::CallId;

/// Records a call's two directions at the codec's rate.
pub(crate) struct CallRecorder {
    sink: WavSink,
    stereo: bool,
    buf: Vec<i16>,
}

impl CallRecorder {
    /// Create `path` (its directory is made if missing) for audio at `rate` Hz.
    pub(crate) fn create(path: &Path, rate: u32, stereo: bool) -> Result<CallRecorder, String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot record to {}: {e}", dir.display()))?;
        }
        let sink = WavSink::create_channels(path, rate, if stereo { 2 } else { 1 })
            .map_err(|e| e.to_string())?;
        Ok(CallRecorder {
            sink,
            stereo,
            buf: Vec::new(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        self.sink.path()
    }

    /// One frame of each direction: what we send and what we hear (same length).
    pub(crate) fn write(&mut self, ours: &[i16], theirs: &[i16]) -> Result<(), AudioError> {
        self.buf.clear();
        if self.stereo {
            for (a, b) in ours.iter().zip(theirs) {
                self.buf.push(*a);
                self.buf.push(*b);
            }
        } else {
            self.buf
                .extend(ours.iter().zip(theirs).map(|(a, b)| a.saturating_add(*b)));
        }
        self.sink.write(&self.buf)
    }

    /// Finalize the file.
    pub(crate) fn finish(mut self) -> Result<PathBuf, String> {
        self.sink
            .finish()
            .map(|()| self.sink.path().to_path_buf())
            .map_err(|e| format!("closing the recording failed: {e}"))
    }
}

/// `DIR/20261125-093012-alice_127.0.0.1-c3.wav`: UTC time, caller, call id; only safe characters.
pub fn recording_path(dir: &Path, peer: &str, call: CallId, now: SystemTime) -> PathBuf {
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, mo, d, h, mi, s) = utc_parts(secs);
    let caller: String = peer
        .trim_start_matches("sips:")
        .trim_start_matches("sip:")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    dir.join(format!(
        "{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}-{caller}-{call}.wav"
    ))
}

/// Civil UTC date and time from Unix seconds (Howard Hinnant's days-from-civil, inverted).
fn utc_parts(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn recording_names_are_time_caller_and_call() {
        // 2026-11-25 09:30:12 UTC
        let t = UNIX_EPOCH + Duration::from_secs(1_795_599_012);
        let p = recording_path(
            Path::new("/rec"),
            "sip:alice@127.0.0.1:5070;x=<y>",
            CallId(3),
            t,
        );
        assert_eq!(
            p,
            PathBuf::from("/rec/20261125-093012-alice_127.0.0.1_5070_x__y_-c3.wav")
        );
    }

    #[test]
    fn civil_dates() {
        assert_eq!(utc_parts(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(utc_parts(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(utc_parts(4_107_542_399), (2100, 2, 28, 23, 59, 59));
    }

    #[test]
    fn recorder_mixes_or_splits_the_two_directions() {
        let dir = std::env::temp_dir().join(format!("termphone-rec-{}", std::process::id()));
        let ours = [1000i16, -2000, 30000];
        let theirs = [10i16, 20, 10000];
        let mixed = dir.join("m/mixed.wav");
        let mut r = CallRecorder::create(&mixed, 8000, false).unwrap();
        r.write(&ours, &theirs).unwrap();
        assert_eq!(r.finish().unwrap(), mixed);
        let stereo = dir.join("stereo.wav");
        let mut r = CallRecorder::create(&stereo, 8000, true).unwrap();
        r.write(&ours, &theirs).unwrap();
        r.finish().unwrap();
        let read = |p: &Path| -> (u16, Vec<i16>) {
            let mut w = hound::WavReader::open(p).unwrap();
            let ch = w.spec().channels;
            (ch, w.samples::<i16>().map(Result::unwrap).collect())
        };
        assert_eq!(read(&mixed), (1, vec![1010, -1980, 32767]));
        assert_eq!(read(&stereo), (2, vec![1000, 10, -2000, 20, 30000, 10000]));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
