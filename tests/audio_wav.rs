//! WAV sources and sinks, resampling quality, tones, and errors for bad files.

use std::path::{Path, PathBuf};

use termphone::audio::{
    goertzel, read_wav, AudioError, AudioSink, AudioSource, SourceState, ToneSource, WavSink,
    WavSource,
};

/// A scratch directory for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("termphone-audio-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_frames(sink: &mut dyn AudioSink, src: &mut dyn AudioSource, frame: usize, frames: usize) {
    let mut buf = vec![0i16; frame];
    for _ in 0..frames {
        src.read(&mut buf);
        sink.write(&buf).expect("write");
    }
}

fn tone_f64(freq: f64, amp: f64, rate: u32, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| amp * (std::f64::consts::TAU * freq * i as f64 / f64::from(rate)).sin())
        .collect()
}

/// SNR in dB of `got` (i16) against `want` (f64, full scale 1.0) over `range`.
fn snr_db(got: &[i16], want: &[f64], range: std::ops::Range<usize>) -> f64 {
    let (mut s, mut n) = (0.0, 0.0);
    for i in range {
        let g = f64::from(got[i]) / 32768.0;
        s += want[i] * want[i];
        n += (g - want[i]).powi(2);
    }
    10.0 * (s / n.max(1e-30)).log10()
}

/// Normalised cross-correlation at lag 0.
fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        ab += a[i] * b[i];
        aa += a[i] * a[i];
        bb += b[i] * b[i];
    }
    ab / (aa * bb).sqrt()
}

/// Speech-like test signal: a gliding voiced source (harmonics of 100..220 Hz up to 3.3 kHz,
/// with formant-like weights) under a 4 Hz syllable envelope with pauses. Band-limited so
/// that it fits in narrow band (8 kHz) telephony.
fn speechlike(rate: u32, seconds: f64) -> Vec<f64> {
    let n = (f64::from(rate) * seconds) as usize;
    let mut phase = 0.0f64;
    let mut out = Vec::with_capacity(n);
    let (mut seed, mut noise) = (0x2545_F491_4F6C_DD1Du64, 0.0f64);
    let pole = 1.0 - (-std::f64::consts::TAU * 1500.0 / f64::from(rate)).exp();
    for i in 0..n {
        let t = i as f64 / f64::from(rate);
        let f0 = 160.0 + 60.0 * (std::f64::consts::TAU * 0.7 * t).sin();
        phase += std::f64::consts::TAU * f0 / f64::from(rate);
        let mut v = 0.0;
        let mut k = 1.0;
        while k * f0 < 3300.0 {
            let f = k * f0;
            // two moving formants
            let f1 = 600.0 + 250.0 * (std::f64::consts::TAU * 1.3 * t).sin();
            let f2 = 1700.0 + 500.0 * (std::f64::consts::TAU * 0.9 * t).cos();
            let w = 1.0 / (1.0 + ((f - f1) / 150.0).powi(2))
                + 0.6 / (1.0 + ((f - f2) / 250.0).powi(2))
                + 0.05;
            v += w * (k * phase).sin() / k.sqrt();
            k += 1.0;
        }
        let env = (std::f64::consts::TAU * 4.0 * t).sin().max(0.0).powf(0.7);
        // fricative-like noise in the gaps, smoothed by a one-pole low-pass (it keeps some
        // energy above 4 kHz, which a narrow-band leg must lose)
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let white = (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
        noise += (white - noise) * pole;
        let gap = (std::f64::consts::TAU * 4.0 * t).sin().min(0.0).abs();
        out.push(0.12 * v * env + 0.15 * noise * gap);
    }
    out
}

fn write_wav_i16(path: &Path, rate: u32, samples: &[f64]) {
    let mut sink = WavSink::create(path, rate).expect("create");
    let s: Vec<i16> = samples
        .iter()
        .map(|&x| (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect();
    sink.write(&s).expect("write");
    sink.finish().expect("finish");
}

fn to_f64(s: &[i16]) -> Vec<f64> {
    s.iter().map(|&x| f64::from(x) / 32768.0).collect()
}

#[test]
fn tone_round_trip_through_wav_at_other_rates() {
    let dir = TempDir::new("roundtrip");
    let path = dir.path("tone8k.wav");
    let mut sink = WavSink::create(&path, 8000).expect("create");
    write_frames(&mut sink, &mut ToneSource::new(1000.0, 0.5, 8000), 160, 50); // 1 s
    sink.finish().expect("finish");

    for rate in [8000u32, 16000, 44100, 48000] {
        let got = read_wav(&path, rate).expect("read back");
        assert_eq!(got.len(), rate as usize, "length at {rate} Hz");
        let want = tone_f64(1000.0, 0.5, rate, got.len());
        let edge = rate as usize / 20; // the filter sees silence beyond the file's ends
        let snr = snr_db(&got, &want, edge..got.len() - edge);
        let amp = goertzel(&got[edge..got.len() - edge], 1000.0, rate);
        eprintln!("8k -> {rate}: SNR {snr:.1} dB, amplitude {amp:.4}");
        assert!(snr > 75.0, "{rate} Hz: SNR {snr:.1} dB");
        assert!((amp - 0.5).abs() < 0.005, "{rate} Hz: amplitude {amp}");
    }
}

#[test]
fn resampling_tone_snr_floor() {
    // 8k <-> 16k <-> 48k, through 16-bit files each time
    let dir = TempDir::new("snr");
    let chains: &[&[u32]] = &[
        &[8000, 16000, 8000],
        &[16000, 8000, 16000],
        &[8000, 48000, 8000],
        &[48000, 8000, 48000],
        &[16000, 48000, 16000],
        &[48000, 16000, 48000],
        &[8000, 16000, 48000, 8000],
        &[44100, 8000, 44100],
    ];
    for chain in chains {
        let first = chain[0];
        let input = tone_f64(1000.0, 0.5, first, first as usize);
        let mut path = dir.path("step0.wav");
        write_wav_i16(&path, first, &input);
        for (i, &rate) in chain.iter().enumerate().skip(1) {
            let samples = read_wav(&path, rate).expect("read");
            path = dir.path(&format!("step{i}.wav"));
            let mut sink = WavSink::create(&path, rate).expect("create");
            sink.write(&samples).expect("write");
            sink.finish().expect("finish");
        }
        let last = *chain.last().unwrap_or(&first);
        let got = read_wav(&path, last).expect("read");
        assert_eq!(got.len(), input.len(), "{chain:?}");
        let edge = last as usize / 20;
        let snr = snr_db(&got, &input, edge..got.len() - edge);
        eprintln!("{chain:?}: SNR {snr:.1} dB");
        assert!(snr > 75.0, "{chain:?}: SNR {snr:.1} dB");
    }
}

#[test]
fn speech_survives_round_trip() {
    let dir = TempDir::new("speech");
    for (orig_rate, via) in [
        (16000u32, 8000u32),
        (48000, 8000),
        (44100, 8000),
        (8000, 48000),
    ] {
        let speech = speechlike(orig_rate, 3.0);
        let a = dir.path("a.wav");
        write_wav_i16(&a, orig_rate, &speech);
        let down = read_wav(&a, via).expect("read at call rate");
        let b = dir.path("b.wav");
        let mut sink = WavSink::create(&b, via).expect("create");
        // frame by frame, as the engine would record a call
        for f in down.chunks(via as usize / 50) {
            sink.write(f).expect("write");
        }
        drop(sink); // finalized by Drop
        let back = to_f64(&read_wav(&b, orig_rate).expect("read back"));
        assert_eq!(back.len(), speech.len());
        let c = correlation(&speech, &back);
        eprintln!("speech {orig_rate} -> {via} -> {orig_rate}: correlation {c:.6}");
        assert!(c >= 0.95, "correlation {c:.4} for {orig_rate} via {via}");
    }
}

/// Real (synthetic) speech when espeak-ng is installed: 22.05 kHz through 8 kHz and back.
#[test]
fn espeak_speech_survives_narrow_band() {
    let dir = TempDir::new("espeak");
    let p = dir.path("speech.wav");
    let made = std::process::Command::new("espeak-ng")
        .arg("-w")
        .arg(&p)
        .arg("Please call me back at five five five, one two three four. Thank you.")
        .status();
    if !made.is_ok_and(|s| s.success()) {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "audio_wav::espeak_speech_survives_narrow_band: NOT RUN: espeak-ng is not installed"
        );
        return;
    }
    let src = WavSource::open(&p, 8000).expect("espeak output");
    let rate = src.file_rate();
    let orig = to_f64(&read_wav(&p, rate).expect("read"));
    for via in [8000u32, 16000] {
        let down = read_wav(&p, via).expect("down");
        let q = dir.path("via.wav");
        let mut sink = WavSink::create(&q, via).expect("create");
        sink.write(&down).expect("write");
        sink.finish().expect("finish");
        let back = to_f64(&read_wav(&q, rate).expect("back"));
        let c = correlation(&orig, &back);
        eprintln!("espeak speech {rate} -> {via} -> {rate}: correlation {c:.5}");
        assert!(c >= 0.95, "correlation {c:.4} via {via}");
    }
}

fn write_hound<S: hound::Sample + Copy>(path: &Path, spec: hound::WavSpec, frames: &[Vec<S>]) {
    let mut w = hound::WavWriter::create(path, spec).expect("create");
    for f in frames {
        for &s in f {
            w.write_sample(s).expect("sample");
        }
    }
    w.finalize().expect("finalize");
}

#[test]
fn multichannel_and_float_and_odd_depths_are_mixed_to_mono() {
    let dir = TempDir::new("formats");
    let n = 44100;
    let t = |f: f64, amp: f64, rate: u32| tone_f64(f, amp, rate, n);

    // stereo f32 at 44.1 kHz: 1 kHz left, 2 kHz right -> each at half amplitude in mono
    let (l, r) = (t(1000.0, 0.6, 44100), t(2000.0, 0.6, 44100));
    let frames: Vec<Vec<f32>> = (0..n).map(|i| vec![l[i] as f32, r[i] as f32]).collect();
    let p = dir.path("stereo_f32.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44100,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    write_hound(&p, spec, &frames);
    let got = read_wav(&p, 8000).expect("stereo float");
    let mid = &got[800..got.len() - 800];
    let (a1, a2) = (goertzel(mid, 1000.0, 8000), goertzel(mid, 2000.0, 8000));
    assert!(
        (a1 - 0.3).abs() < 0.01 && (a2 - 0.3).abs() < 0.01,
        "{a1} {a2}"
    );

    // 3 channels, 24-bit integer, 48 kHz: the same tone in every channel keeps its level
    let x = t(1000.0, 0.5, 48000);
    let frames: Vec<Vec<i32>> = x
        .iter()
        .map(|&v| vec![(v * 8_388_608.0) as i32; 3])
        .collect();
    let p = dir.path("three_i24.wav");
    let spec = hound::WavSpec {
        channels: 3,
        sample_rate: 48000,
        bits_per_sample: 24,
        sample_format: hound::SampleFormat::Int,
    };
    write_hound(&p, spec, &frames);
    let got = read_wav(&p, 16000).expect("24-bit");
    let a = goertzel(&got[1600..got.len() - 1600], 1000.0, 16000);
    assert!((a - 0.5).abs() < 0.005, "24-bit: {a}");

    // 8-bit unsigned mono at 11025 Hz (coarse, but the tone is there)
    let x = tone_f64(1000.0, 0.5, 11025, 11025);
    let frames: Vec<Vec<i8>> = x.iter().map(|&v| vec![(v * 128.0) as i8]).collect();
    let p = dir.path("mono_u8.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 11025,
        bits_per_sample: 8,
        sample_format: hound::SampleFormat::Int,
    };
    write_hound(&p, spec, &frames);
    let got = read_wav(&p, 8000).expect("8-bit");
    let a = goertzel(&got[800..got.len() - 800], 1000.0, 8000);
    assert!((a - 0.5).abs() < 0.02, "8-bit: {a}");

    // 32-bit integer stereo at 8 kHz with opposite phases: the mono mix cancels
    let x = tone_f64(1000.0, 0.5, 8000, 8000);
    let frames: Vec<Vec<i32>> = x
        .iter()
        .map(|&v| {
            let s = (v * 2_147_483_647.0) as i32;
            vec![s, -s]
        })
        .collect();
    let p = dir.path("stereo_i32.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 8000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Int,
    };
    write_hound(&p, spec, &frames);
    let got = read_wav(&p, 8000).expect("32-bit");
    assert!(
        got.iter().all(|&s| s.abs() <= 1),
        "opposite channels must cancel"
    );

    let src = WavSource::open(&dir.path("three_i24.wav"), 8000).expect("open");
    assert_eq!((src.file_rate(), src.file_channels()), (48000, 3));
}

#[test]
fn source_ends_with_silence() {
    let dir = TempDir::new("end");
    let p = dir.path("short.wav");
    let mut sink = WavSink::create(&p, 8000).expect("create");
    sink.write(&[1000i16; 250]).expect("write");
    sink.finish().expect("finish");
    let mut src = WavSource::open(&p, 8000).expect("open");
    let mut f = [0i16; 160];
    assert_eq!(src.read(&mut f), SourceState::Data);
    assert!(f.iter().all(|&s| s == 1000));
    assert_eq!(src.read(&mut f), SourceState::Data); // 90 samples, then silence
    assert!(f[..90].iter().all(|&s| s == 1000) && f[90..].iter().all(|&s| s == 0));
    for _ in 0..3 {
        f.fill(7);
        assert_eq!(src.read(&mut f), SourceState::Ended);
        assert!(f.iter().all(|&s| s == 0));
    }

    // an empty file ends at once
    let p = dir.path("empty.wav");
    WavSink::create(&p, 8000)
        .expect("create")
        .finish()
        .expect("finish");
    let mut src = WavSource::open(&p, 16000).expect("open empty");
    assert_eq!(src.read(&mut f), SourceState::Ended);
}

fn read_error(path: &Path) -> AudioError {
    WavSource::open(path, 8000).expect_err("must fail")
}

#[test]
fn missing_garbage_and_truncated_files_are_clear_errors() {
    let dir = TempDir::new("errors");

    let missing = dir.path("does-not-exist.wav");
    let e = read_error(&missing);
    let msg = e.to_string();
    assert!(matches!(e, AudioError::ReadFile { .. }), "{e:?}");
    assert!(
        msg.contains("does-not-exist.wav") && msg.contains("file not found"),
        "{msg}"
    );

    let garbage = dir.path("garbage.wav");
    std::fs::write(
        &garbage,
        b"this is not a wav file at all, just some text\n".repeat(20),
    )
    .expect("write");
    let msg = read_error(&garbage).to_string();
    assert!(
        msg.contains("garbage.wav") && msg.contains("not a WAV file"),
        "{msg}"
    );

    let empty = dir.path("empty-file.wav");
    std::fs::write(&empty, b"").expect("write");
    let msg = read_error(&empty).to_string();
    assert!(msg.contains("empty-file.wav"), "{msg}");

    let msg = read_error(&dir.0).to_string();
    assert!(msg.contains(&*dir.0.to_string_lossy()), "{msg}");

    // a header that promises more data than the file holds: the data that is there plays,
    // then the source ends; read_wav reports the damage
    let good = dir.path("good.wav");
    write_wav_i16(&good, 8000, &tone_f64(1000.0, 0.5, 8000, 8000));
    let bytes = std::fs::read(&good).expect("read");
    let cut = dir.path("cut.wav");
    std::fs::write(&cut, &bytes[..bytes.len() / 2 + 1]).expect("write");
    let mut src = WavSource::open(&cut, 8000).expect("truncated file still opens");
    let mut f = [0i16; 160];
    let mut data = 0;
    while src.read(&mut f) == SourceState::Data {
        data += 1;
    }
    assert!((24..=26).contains(&data), "{data} frames");
    assert!(src.damage().is_some());
    let msg = read_wav(&cut, 8000).expect_err("damaged").to_string();
    assert!(msg.contains("cut.wav"), "{msg}");

    // unsupported: 16-bit float
    let mut hdr = bytes[..44].to_vec();
    hdr[20] = 3; // format tag: IEEE float, with 16 bits per sample
    let odd = dir.path("float16.wav");
    std::fs::write(&odd, &hdr).expect("write");
    let msg = read_error(&odd).to_string();
    assert!(msg.contains("float16.wav"), "{msg}");

    // absurd sample rates in the header: refused, not allocated for
    for rate in [0u32, 5, 4_000_000_000] {
        let mut h = bytes.clone();
        h[24..28].copy_from_slice(&rate.to_le_bytes());
        // byte rate = rate * block align (hound checks it; 4e9 * 2 does not fit, so hound
        // itself refuses that one)
        h[28..32].copy_from_slice(&rate.wrapping_mul(2).to_le_bytes());
        let p = dir.path(&format!("rate{rate}.wav"));
        std::fs::write(&p, &h).expect("write");
        let msg = read_error(&p).to_string();
        assert!(msg.contains(&format!("rate{rate}.wav")), "{msg}");
        assert!(
            msg.contains("unsupported sample rate") || msg.contains("damaged"),
            "{msg}"
        );
    }

    // rate 0 asked for
    for rate in [0, 10, 10_000_000] {
        let e = WavSource::open(&good, rate).expect_err("bad rate");
        assert!(matches!(e, AudioError::InvalidArgument(_)), "{e:?}");
        let e = WavSink::create(&dir.path("x.wav"), rate).expect_err("bad rate");
        assert!(matches!(e, AudioError::InvalidArgument(_)), "{e:?}");
    }
}

#[test]
fn damaged_headers_never_panic() {
    let dir = TempDir::new("fuzz");
    let good = dir.path("good.wav");
    write_wav_i16(&good, 8000, &tone_f64(440.0, 0.5, 8000, 400));
    let bytes = std::fs::read(&good).expect("read");
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let p = dir.path("mutant.wav");
    for _ in 0..1500 {
        let mut m = bytes.clone();
        for _ in 0..1 + rnd() % 4 {
            let i = (rnd() % 64) as usize;
            m[i] = rnd() as u8;
        }
        let len = if rnd() % 4 == 0 {
            (rnd() as usize) % m.len()
        } else {
            m.len()
        };
        std::fs::write(&p, &m[..len]).expect("write");
        for rate in [8000, 44100] {
            if let Ok(mut src) = WavSource::open(&p, rate) {
                let mut f = [0i16; 160];
                for _ in 0..200 {
                    if src.read(&mut f) == SourceState::Ended {
                        break;
                    }
                }
            }
        }
    }
}

#[test]
fn sink_errors_and_lifecycle() {
    let dir = TempDir::new("sink");
    let bad = dir.path("no-such-dir").join("out.wav");
    let e = WavSink::create(&bad, 8000).expect_err("must fail");
    let msg = e.to_string();
    assert!(matches!(e, AudioError::WriteFile { .. }), "{e:?}");
    assert!(
        msg.contains("no-such-dir") && msg.contains("out.wav"),
        "{msg}"
    );

    let p = dir.path("rec.wav");
    let mut sink = WavSink::create(&p, 16000).expect("create");
    assert_eq!(sink.path(), p.as_path());
    sink.write(&[5i16; 320]).expect("write");
    sink.finish().expect("finish");
    sink.finish().expect("finish twice is fine");
    assert!(sink.write(&[0i16; 160]).is_err(), "write after finish");
    let r = hound::WavReader::open(&p).expect("readable");
    assert_eq!(r.spec().channels, 1);
    assert_eq!(r.spec().bits_per_sample, 16);
    assert_eq!(r.spec().sample_rate, 16000);
    assert_eq!(r.duration(), 320);
}

#[test]
fn sink_left_unfinalized_is_still_readable() {
    // a process that dies mid-call never runs finish() or Drop
    let dir = TempDir::new("crash");
    let p = dir.path("crash.wav");
    let mut sink = WavSink::create(&p, 8000).expect("create");
    write_frames(&mut sink, &mut ToneSource::new(1000.0, 0.5, 8000), 160, 130); // 2.6 s
    std::mem::forget(sink);
    let got = read_wav(&p, 8000).expect("readable after a crash");
    assert!(got.len() >= 16000, "only {} samples survived", got.len());
    assert!(goertzel(&got[..8000], 1000.0, 8000) > 0.49);
}

#[test]
fn tone_source_frequency() {
    for rate in [8000u32, 16000, 44100, 48000] {
        for freq in [350.0f32, 1000.0, 2600.0] {
            let mut t = ToneSource::new(freq, 0.25, rate);
            let mut buf = vec![0i16; rate as usize];
            for c in buf.chunks_mut(rate as usize / 50) {
                assert_eq!(t.read(c), SourceState::Data);
            }
            let a = goertzel(&buf, f64::from(freq), rate);
            assert!((a - 0.25).abs() < 0.003, "{freq} Hz at {rate}: {a}");
            let off = goertzel(&buf, f64::from(freq) * 1.5, rate);
            assert!(off < 0.003, "{freq} Hz at {rate}: off-frequency {off}");
        }
    }
}
