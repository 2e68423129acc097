//! Real device test: play a tone through cpal and capture it back through PulseAudio.
//!
//! Needs the private PulseAudio of `scripts/headless-audio.sh`:
//!
//! ```sh
//! bash scripts/headless-audio.sh start && eval "$(bash scripts/headless-audio.sh env)"
//! cargo test --test audio_cpal
//! bash scripts/headless-audio.sh stop
//! ```
//!
//! Without `PULSE_SERVER` in the environment every test here prints that it did not run and
//! passes. Set `TERMPHONE_REQUIRE_AUDIO=1` (CI does) to make a missing server a failure.
//!
//! The loopback works by capturing from `virt_speaker.monitor`, the monitor of the default
//! sink: the capture device is chosen with `PULSE_SOURCE` (set here before any device is
//! opened; the ALSA pulse plugin reads it when the stream connects).

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use termphone::audio::{
    goertzel, list_devices, open_capture, open_playback, AudioSink, AudioSource, CaptureStream,
    PlaybackStream, SourceState, ToneSource,
};

/// The tests share one sink and its monitor: run them one at a time.
static DEVICE: Mutex<()> = Mutex::new(());

fn server_available(test: &str) -> bool {
    if std::env::var_os("PULSE_SERVER").is_some() {
        // capture what the default sink plays
        std::env::set_var("PULSE_SOURCE", "virt_speaker.monitor");
        return true;
    }
    let msg = format!(
        "audio_cpal::{test}: NOT RUN: PULSE_SERVER is not set. Start the test sound server with\n  \
         bash scripts/headless-audio.sh start && eval \"$(bash scripts/headless-audio.sh env)\""
    );
    if std::env::var_os("TERMPHONE_REQUIRE_AUDIO").is_some_and(|v| v == "1") {
        panic!("{msg} (TERMPHONE_REQUIRE_AUDIO=1)");
    }
    // straight to fd 2: libtest captures print!/eprint! of passing tests, not this
    let _ = writeln!(std::io::stderr(), "{msg}");
    false
}

/// Play `tone_hz` at 0.5 for `play` at frame rate `rate` while capturing; return the capture.
fn play_and_capture(rate: u32, tone_hz: f32, play: Duration) -> Vec<i16> {
    let frame = rate as usize / 50; // 20 ms
    let mut capture = CaptureStream::open(None, rate).expect("open capture");
    let mut playback = PlaybackStream::open(None, rate).expect("open playback");
    let mut tone = ToneSource::new(tone_hz, 0.5, rate);
    let mut out = vec![0i16; frame];
    let mut inp = vec![0i16; frame];
    let mut captured = Vec::new();
    let start = Instant::now();
    let total = play + Duration::from_millis(300); // keep capturing after the tone stops
    let mut tick = 0u32;
    while start.elapsed() < total {
        if start.elapsed() < play {
            tone.read(&mut out);
            playback.write(&out).expect("playback write");
        }
        let before = capture.stats().underruns;
        assert_eq!(capture.read(&mut inp), SourceState::Data);
        if capture.stats().underruns != before {
            eprintln!("capture underrun at tick {tick}, {:?}", start.elapsed());
        }
        captured.extend_from_slice(&inp);
        tick += 1;
        let next = start + Duration::from_millis(20) * tick;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let pstats = playback.stats();
    eprintln!("playback stats {pstats:?}");
    // one underrun is expected: the tone stops while the loop goes on
    assert!(pstats.underruns <= 2, "playback {pstats:?}");
    assert_eq!(
        (pstats.errors, pstats.overruns),
        (0, 0),
        "playback {pstats:?}"
    );
    playback.finish().expect("playback finish");
    let stats = capture.stats();
    assert!(stats.underruns <= 2, "capture {stats:?}");
    assert_eq!((stats.errors, stats.overruns), (0, 0), "capture {stats:?}");
    eprintln!(
        "capture device {:?} ({}), stats {stats:?}",
        capture.device_name(),
        capture.device_config()
    );
    captured
}

/// The same through the contract's boxed constructors.
fn play_and_capture_boxed(rate: u32, tone_hz: f32, play: Duration) -> Vec<i16> {
    let frame = rate as usize / 50;
    let mut capture = open_capture(None, rate).expect("open capture");
    let mut playback = open_playback(None, rate).expect("open playback");
    let mut tone = ToneSource::new(tone_hz, 0.5, rate);
    let (mut out, mut inp) = (vec![0i16; frame], vec![0i16; frame]);
    let mut captured = Vec::new();
    let start = Instant::now();
    for tick in 1u32.. {
        if start.elapsed() >= play + Duration::from_millis(300) {
            break;
        }
        if start.elapsed() < play {
            tone.read(&mut out);
            playback.write(&out).expect("playback write");
        }
        capture.read(&mut inp);
        captured.extend_from_slice(&inp);
        let next = start + Duration::from_millis(20) * tick;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    playback.finish().expect("playback finish");
    captured
}

/// Best Goertzel amplitude over 100 ms windows.
fn best_window(samples: &[i16], freq: f64, rate: u32) -> (f64, usize) {
    let win = rate as usize / 10;
    let mut best = (0.0, 0);
    let mut i = 0;
    while i + win <= samples.len() {
        let a = goertzel(&samples[i..i + win], freq, rate);
        if a > best.0 {
            best = (a, i);
        }
        i += win / 2;
    }
    best
}

#[test]
fn tone_played_is_captured_8k() {
    let _g = DEVICE.lock().unwrap_or_else(|e| e.into_inner());
    if !server_available("tone_played_is_captured_8k") {
        return;
    }
    let rate = 8000;
    let captured = play_and_capture(rate, 1000.0, Duration::from_secs(1));
    let (amp, at) = best_window(&captured, 1000.0, rate);
    eprintln!(
        "1 kHz amplitude {amp:.4} at sample {at} of {}",
        captured.len()
    );
    assert!(amp > 0.4, "1 kHz tone not captured: amplitude {amp:.4}");
    // nothing else: a neighbouring frequency stays quiet
    let (other, _) = best_window(&captured, 1500.0, rate);
    assert!(other < 0.02, "1.5 kHz amplitude {other:.4}");
    // how many 100 ms windows hold the tone (it played for 1 s)
    let win = rate as usize / 10;
    let loud = captured
        .chunks_exact(win)
        .filter(|w| goertzel(w, 1000.0, rate) > 0.4)
        .count();
    eprintln!("{loud} windows of 100 ms hold the tone");
    // round trip (write -> device -> monitor -> read): where the tone starts in the capture
    let onset = captured.iter().position(|&s| s.unsigned_abs() > 8000);
    let onset_ms = onset.map(|i| i as f64 * 1000.0 / f64::from(rate));
    eprintln!("tone onset in the capture after {onset_ms:?} ms");
    assert!(
        onset_ms.is_some_and(|ms| ms < 250.0),
        "onset {onset_ms:?} ms"
    );
    assert!(loud >= 8, "tone present in only {loud} of ~10 windows");
}

#[test]
fn tone_played_is_captured_16k() {
    let _g = DEVICE.lock().unwrap_or_else(|e| e.into_inner());
    if !server_available("tone_played_is_captured_16k") {
        return;
    }
    let rate = 16000;
    let captured = play_and_capture_boxed(rate, 1000.0, Duration::from_millis(600));
    let (amp, _) = best_window(&captured, 1000.0, rate);
    assert!(
        amp > 0.4,
        "1 kHz tone not captured at 16 kHz: amplitude {amp:.4}"
    );
}

#[test]
fn devices_are_listed() {
    let _g = DEVICE.lock().unwrap_or_else(|e| e.into_inner());
    if !server_available("devices_are_listed") {
        return;
    }
    let list = list_devices().expect("devices");
    eprintln!("{list:#?}");
    assert!(!list.inputs.is_empty() && !list.outputs.is_empty());
    assert!(list
        .outputs
        .iter()
        .all(|d| d.default_config.sample_rate > 0));
    assert!(!list.outputs.iter().any(|d| d.id == "alsa:null"));
}

#[test]
fn device_by_name_and_unknown_name() {
    let _g = DEVICE.lock().unwrap_or_else(|e| e.into_inner());
    if !server_available("device_by_name_and_unknown_name") {
        return;
    }
    // the ALSA "pulse" PCM, by its short id
    let p = PlaybackStream::open(Some("pulse"), 8000).expect("open pulse by id");
    assert!(p.device_name().to_lowercase().contains("pulse"));
    drop(p);
    let err = open_playback(Some("no such device here"), 8000)
        .err()
        .expect("unknown device must fail");
    let msg = err.to_string();
    assert!(msg.contains("no such device here"), "{msg}");
    assert!(msg.contains("available"), "{msg}");
}

#[test]
fn unreachable_server_is_no_usable_device() {
    let _g = DEVICE.lock().unwrap_or_else(|e| e.into_inner());
    // Point the ALSA pulse plugin at a socket nobody listens on: like a machine with no
    // sound server. (A machine with a real card may still open; then there is nothing to check.)
    let saved = std::env::var_os("PULSE_SERVER");
    std::env::set_var("PULSE_SERVER", "unix:/nonexistent/termphone-test/native");
    let playback = open_playback(None, 8000);
    let capture = open_capture(None, 8000);
    let listed = list_devices();
    match saved {
        Some(v) => std::env::set_var("PULSE_SERVER", v),
        None => std::env::remove_var("PULSE_SERVER"),
    }
    for (what, r) in [
        ("playback", playback.err()),
        ("capture", capture.err()),
        ("list_devices", listed.err()),
    ] {
        match r {
            None => eprintln!("{what}: opened without a server (a real card?)"),
            Some(e) => {
                let msg = e.to_string();
                eprintln!("{what}: {msg}");
                assert!(
                    matches!(e, termphone::audio::AudioError::NoDevice { .. }),
                    "{what}: {e:?}"
                );
                assert!(msg.starts_with("no usable audio device"), "{msg}");
                assert!(msg.contains("headless-audio.sh"), "{msg}");
            }
        }
    }
}

#[test]
fn microphone_path_captures_what_virt_mic_plays() {
    let _g = DEVICE.lock().unwrap_or_else(|e| e.into_inner());
    if !server_available("microphone_path_captures_what_virt_mic_plays") {
        return;
    }
    // the "microphone" signal: 1.2 s of 700 Hz at 0.5 in a 48 kHz WAV, played with paplay
    let dir = std::env::temp_dir().join(format!("termphone-audio-mic-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let wav = dir.join("mic.wav");
    let mut sink = termphone::audio::WavSink::create(&wav, 48000).expect("create");
    let mut tone = ToneSource::new(700.0, 0.5, 48000);
    let mut buf = vec![0i16; 960];
    for _ in 0..60 {
        tone.read(&mut buf);
        sink.write(&buf).expect("write");
    }
    sink.finish().expect("finish");

    // capture the default source as a user would: virt_mic's monitor
    std::env::set_var("PULSE_SOURCE", "virt_mic.monitor");
    let capture = open_capture(None, 8000);
    std::env::set_var("PULSE_SOURCE", "virt_speaker.monitor");
    let mut capture = capture.expect("open capture");
    let player = std::process::Command::new("paplay")
        .arg("-d")
        .arg("virt_mic")
        .arg(&wav)
        .spawn();
    let mut player = match player {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "audio_cpal::microphone_path_captures_what_virt_mic_plays: NOT RUN: paplay: {e}"
            );
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
    };
    let mut captured = Vec::new();
    let mut frame = [0i16; 160];
    let start = Instant::now();
    for tick in 1u32..=90 {
        capture.read(&mut frame);
        captured.extend_from_slice(&frame);
        let next = start + Duration::from_millis(20) * tick;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let status = player.wait().expect("paplay ran");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "paplay failed: {status}");
    let (amp, _) = best_window(&captured, 700.0, 8000);
    eprintln!("700 Hz from virt_mic: amplitude {amp:.4}");
    assert!(
        amp > 0.4,
        "microphone tone not captured: amplitude {amp:.4}"
    );
}
