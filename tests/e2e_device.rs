//! End-to-end through real audio devices: `termphone dial --device` with cpal capture and
//! playback through a private PulseAudio with null sinks (scripts/headless-audio.sh, started by
//! scripts/test.sh and CI). Its own test binary, so no other call loads the machine meanwhile.
//!
//! What it checks: the callee's speech comes out of the speaker, and the microphone's speech
//! reaches the callee, intelligibly. It compares the speech window by window (500 ms, each
//! aligned on its own within ±100 ms of the whole file's alignment), because under heavy CPU
//! load PulseAudio itself can insert a gap of a few tens of ms, which shifts everything after it
//! and would sink a whole-file correlation although every word is there. Sample continuity
//! through devices (drift, glitch-free rate adaptation) is measured by the media-quality work,
//! not here.

mod support;

use std::path::Path;
use std::time::Duration;

use support::{compare_wavs, data_file, is_event, read_wav_mono, Termphone};

const WAIT: Duration = Duration::from_secs(20);

/// The tests share one microphone and one speaker: one at a time.
static DEVICES: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Hold the sound devices for the rest of the test (a failed test does not poison them).
fn devices() -> std::sync::MutexGuard<'static, ()> {
    DEVICES.lock().unwrap_or_else(|e| e.into_inner())
}
/// A window of speech counts as heard when it correlates at least this well. (0.85 for
/// 250 ms windows: a short window of wide-band speech that went through PulseAudio, G.722 and
/// two resamplers scores 0.87-0.97 when heard, noise or silence below 0.2.)
const WINDOW_NCC: f64 = 0.85;
/// At least this share of the speech windows must be heard.
const MIN_HEARD: f64 = 0.8;

fn speech() -> String {
    data_file("speech-8k.wav").display().to_string()
}

/// Runs only with a sound server; with `TERMPHONE_REQUIRE_AUDIO=1` (scripts/test.sh sets it
/// when it starts one) a missing server is a failure, not a skip.
fn pulse_available() -> bool {
    if std::env::var_os("PULSE_SERVER").is_some() {
        return true;
    }
    assert_ne!(
        std::env::var("TERMPHONE_REQUIRE_AUDIO").as_deref(),
        Ok("1"),
        "TERMPHONE_REQUIRE_AUDIO=1 but PULSE_SERVER is not set (run scripts/headless-audio.sh)"
    );
    eprintln!("NOT RUN: needs PULSE_SERVER (scripts/headless-audio.sh start)");
    false
}

fn ncc(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        ab += f64::from(*x) * f64::from(*y);
        aa += f64::from(*x) * f64::from(*x);
        bb += f64::from(*y) * f64::from(*y);
    }
    if aa <= 0.0 || bb <= 0.0 {
        0.0
    } else {
        ab / (aa * bb).sqrt()
    }
}

/// Per 250 ms window of speech in `reference`: the best correlation with `recorded` within
/// ±100 ms of the lag of the last window heard (at first `lag`). (250 ms, not longer: the adaptive jitter buffer may drop or insert 20 ms
/// in a pause, and a window that holds such a step cannot line up as a whole.) Returns the share of speech windows at or above [`WINDOW_NCC`] and the
/// list of window scores (for the failure message).
fn heard(reference: &[f32], recorded: &[f32], mut lag: i64) -> (f64, Vec<f64>) {
    const W: usize = 2000;
    const SEARCH: i64 = 800;
    let mut scores = Vec::new();
    for start in (0..reference.len().saturating_sub(W)).step_by(W) {
        let win = &reference[start..start + W];
        let energy: f64 = win
            .iter()
            .map(|x| f64::from(*x) * f64::from(*x))
            .sum::<f64>()
            / W as f64;
        if energy.sqrt() < 0.02 {
            continue; // a pause, not speech
        }
        let mut best = 0.0f64;
        let mut best_lag = lag;
        for d in -SEARCH..=SEARCH {
            let at = start as i64 + lag + d;
            if at < 0 || at as usize + W > recorded.len() {
                continue;
            }
            let v = ncc(win, &recorded[at as usize..at as usize + W]);
            if v > best {
                (best, best_lag) = (v, lag + d);
            }
        }
        // Follow the delay: the jitter buffer may grow or shrink it step by step (more so on
        // a loaded machine), so the next window is searched around this one's lag.
        if best >= WINDOW_NCC {
            lag = best_lag;
        }
        scores.push(best);
    }
    let ok = scores.iter().filter(|s| **s >= WINDOW_NCC).count();
    (ok as f64 / scores.len().max(1) as f64, scores)
}

/// `reference` (an 8 kHz speech file) must be heard in `recorded`, window by window.
fn assert_heard(what: &str, reference_wav: &Path, recorded: &Path) {
    let whole = compare_wavs(reference_wav, recorded).expect("compare");
    let (_, reference) = read_wav_mono(reference_wav).unwrap();
    let (rate, mut rec) = read_wav_mono(recorded).unwrap();
    if rate != 8000 {
        // a wide-band (G.722) call records at 16 kHz
        let mut r = termphone::audio::resample::Resampler::new(rate, 8000);
        let mut out = Vec::new();
        r.process(&rec, &mut out);
        r.flush(&mut out);
        rec = out;
    }
    let (share, scores) = heard(&reference, &rec, whole.lag as i64);
    eprintln!("{what}: whole-file {whole:?}, windows {scores:.2?}");
    assert!(
        scores.len() >= 6,
        "{what}: the fixture has speech windows ({scores:?})"
    );
    assert!(
        share >= MIN_HEARD,
        "{what}: only {:.0} % of speech windows heard (whole-file {whole:?}); windows: {scores:.2?}",
        share * 100.0
    );
}

/// `dial --device`: the microphone (PulseAudio's virt_mic, fed by paplay) reaches the callee,
/// and the callee's audio comes out of the speaker (virt_speaker, recorded from its monitor).
#[test]
fn dial_with_device_talks_through_the_sound_card_both_ways() {
    if !pulse_available() {
        return;
    }
    let _devices = devices();
    let dir = support::test_dir();
    let rec_dir = dir.path().join("rec");
    // The callee says something else than the person at the microphone (the same speech
    // backwards): what a far end says and what the echo canceller then hears at the
    // microphone must differ, or the canceller rightly takes it for an echo.
    let (_, fwd) = read_wav_mono(&data_file("speech-8k.wav")).unwrap();
    let reversed: Vec<i16> = fwd.iter().rev().map(|v| (v * 32767.0) as i16).collect();
    let callee_wav = dir.path().join("callee.wav");
    support::audio::write_wav_i16(&callee_wav, 8000, &reversed).unwrap();
    let mut srv = Termphone::builder(&[
        "serve",
        "--play",
        callee_wav.to_str().unwrap(),
        "--record",
        &rec_dir.display().to_string(),
    ])
    .dir(dir.clone())
    .spawn();
    let uri = srv.sip_uri("bob");
    // What the speaker plays, as raw 8 kHz mono samples.
    let speaker_raw = dir.path().join("speaker.raw");
    let mut parec = std::process::Command::new("parec")
        .args([
            "-d",
            "virt_speaker.monitor",
            "--rate=8000",
            "--channels=1",
            "--format=s16le",
            "--latency-msec=20",
        ])
        .stdout(std::fs::File::create(&speaker_raw).unwrap())
        .spawn()
        .expect("parec (pulseaudio-utils)");
    // G.722, the codec the window bar was measured with (Opus, the default, keeps the sound,
    // not the waveform the windows correlate: see tests/e2e_opus.rs). No echo canceller
    // either: its band splitting keeps the sound and the level (-0.5 dB) but not the waveform
    // (NCC about 0.75 on speech with no echo at all, tests/media_aec.rs); it is checked on its
    // own below (echo_canceller_removes_the_speaker_from_the_microphone).
    let mut dial = Termphone::builder(&[
        "dial",
        &uri,
        "--codec",
        "G722",
        "--no-echo-cancellation",
        "--device",
        "--duration",
        "8",
    ])
    .dir(dir.clone())
    .spawn();
    dial.wait_call_state("connected", WAIT);
    // The "microphone": speech played into virt_mic, whose monitor is the default source.
    let paplay = std::process::Command::new("paplay")
        .args(["-d", "virt_mic", &speech()])
        .status()
        .expect("paplay");
    assert!(paplay.success());
    assert_eq!(dial.wait_exit_code(WAIT), 0, "{}", dial.diagnostics());
    let _ = parec.kill(); // our own child, by its PID
    let _ = parec.wait();
    let rec = srv.wait_event(is_event("recording"), WAIT);
    srv.wait_call_state("hangupremote", WAIT);
    srv.stop();

    let raw = std::fs::read(&speaker_raw).unwrap();
    let samples: Vec<i16> = raw
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let speaker_wav = dir.path().join("speaker.wav");
    support::audio::write_wav_i16(&speaker_wav, 8000, &samples).unwrap();
    assert_heard(
        "callee's speech out of the speaker",
        &callee_wav,
        &speaker_wav,
    );
    assert_heard(
        "microphone speech at the callee",
        &data_file("speech-8k.wav"),
        Path::new(rec["path"].as_str().unwrap()),
    );
}

/// `serve --device` answers with the microphone; RNNoise cleans it, and `denoise` switches it
/// off during the call: the noise in the caller's recording comes up by tens of dB.
#[test]
fn noise_suppression_switched_off_during_a_call_lets_the_noise_through() {
    if !pulse_available() {
        return;
    }
    let _devices = devices();
    let dir = support::test_dir();
    let sock = dir.path().join("ctl.sock");
    let mut srv = Termphone::builder(&["serve", "--device", "--control", sock.to_str().unwrap()])
        .dir(dir.clone())
        .spawn();
    srv.wait_event(is_event("control"), WAIT);
    let uri = srv.sip_uri("door");
    // The "room": noise at about -20 dBFS, low-passed (a fan's or a street's noise falls off
    // with frequency), played into the microphone for the whole call. (Full-band white noise
    // is not what RNNoise was trained on: it takes off only about 5 dB of that.)
    let noise_wav = dir.path().join("noise.wav");
    let mut x: u32 = 7;
    let mut y = 0.0f32;
    let noise: Vec<i16> = (0..48_000 * 12)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let white = ((x >> 16) as f32 / 65536.0 - 0.5) * 11_000.0;
            y = 0.9 * y + 0.1 * white;
            (y * 4.36) as i16
        })
        .collect();
    support::audio::write_wav_i16(&noise_wav, 48_000, &noise).unwrap();
    let rec = dir.path().join("heard.wav");
    let mut dial = Termphone::builder(&[
        "dial",
        &uri,
        "--codec",
        "G722",
        "--record",
        rec.to_str().unwrap(),
        "--duration",
        "9",
    ])
    .dir(dir.clone())
    .spawn();
    let mut paplay = std::process::Command::new("paplay")
        .args(["-d", "virt_mic", noise_wav.to_str().unwrap()])
        .spawn()
        .expect("paplay");
    dial.wait_call_state("connected", WAIT);
    let call = srv.wait_call_state("connected", WAIT)["call"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(Duration::from_secs(4));
    let mut ctl = support::control::CtlClient::connect(&sock);
    let r = ctl.ok(serde_json::json!({"cmd": "denoise", "call": call, "on": false}));
    assert_eq!(r["on"], false, "{r}");
    assert_eq!(dial.wait_exit_code(WAIT), 0, "{}", dial.diagnostics());
    let _ = paplay.kill(); // our own child, by its PID
    let _ = paplay.wait();
    srv.wait_call_state("hangupremote", WAIT);
    srv.stop();

    let (rate, heard) = read_wav_mono(&rec).unwrap();
    let rms_db = |from: f64, to: f64| {
        let w = &heard[(from * f64::from(rate)) as usize..(to * f64::from(rate)) as usize];
        support::audio::rms_dbfs(w)
    };
    // Switched at about 4 s into the call: [1.5, 3.5] s with RNNoise, [5.5, 8] s without.
    let (on, off) = (rms_db(1.5, 3.5), rms_db(5.5, 8.0));
    eprintln!("noise at the caller: {on:.1} dBFS suppressed, {off:.1} dBFS not");
    assert!(
        off > -35.0,
        "the noise reaches the caller once switched off: {off:.1} dBFS"
    );
    assert!(
        off - on > 20.0,
        "RNNoise held the noise {:.1} dB down (want > 20): {on:.1} vs {off:.1} dBFS",
        off - on
    );
}

/// Record what the speaker (virt_speaker) plays, as 8 kHz mono, until [`stop_speaker`].
fn record_speaker(dir: &Path) -> (std::process::Child, std::path::PathBuf) {
    let raw = dir.join(format!("speaker-{}.raw", support::next_seq()));
    let child = std::process::Command::new("parec")
        .args([
            "-d",
            "virt_speaker.monitor",
            "--rate=8000",
            "--channels=1",
            "--format=s16le",
            "--latency-msec=20",
        ])
        .stdout(std::fs::File::create(&raw).unwrap())
        .spawn()
        .expect("parec (pulseaudio-utils)");
    (child, raw)
}

/// Stop the recorder (our own child, by its PID) and read what it recorded.
fn stop_speaker(mut child: std::process::Child, raw: &Path) -> Vec<f32> {
    let _ = child.kill();
    let _ = child.wait();
    std::fs::read(raw)
        .unwrap()
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect()
}

/// Seconds of 100 ms blocks in which `freq` stands out.
fn tone_seconds(x: &[f32], freq: f64) -> f64 {
    let blocks = x.len() / 800;
    support::audio::tone_coverage(x, 8000, freq, 0.3, 100) * blocks as f64 / 10.0
}

/// `dial --device` to a callee that answers after 3 s: the ringback tone (425 Hz, 1 s on, 4 s
/// off) comes out of the speaker while it rings, and stops at the answer (the call goes on 4 s,
/// long enough for a second burst at 5 s if it did not).
#[test]
fn ringback_sounds_on_the_speaker_while_the_far_end_rings() {
    if !pulse_available() {
        return;
    }
    let _devices = devices();
    let dir = support::test_dir();
    let mut srv = Termphone::builder(&["serve", "--answer-delay", "3"])
        .dir(dir.clone())
        .spawn();
    let uri = srv.sip_uri("slow");
    let (rec, raw) = record_speaker(dir.path());
    let mut dial = Termphone::builder(&["dial", &uri, "--device", "--duration", "4"])
        .dir(dir.clone())
        .spawn();
    dial.wait_call_state("alerting", WAIT);
    assert_eq!(dial.wait_exit_code(WAIT), 0, "{}", dial.diagnostics());
    let x = stop_speaker(rec, &raw);
    srv.stop();
    let secs = tone_seconds(&x, 425.0);
    eprintln!(
        "ringback heard for {secs:.1} s of {:.1} s",
        x.len() as f64 / 8000.0
    );
    assert!(
        (0.5..=1.4).contains(&secs),
        "one 1 s burst of ringback, not {secs:.1} s"
    );
}

/// `serve --device` rings on the speaker (the ringtone's first note, E5) while a call waits
/// to be answered, and stops at the answer.
#[test]
fn ringtone_sounds_on_the_speaker_until_the_call_is_answered() {
    if !pulse_available() {
        return;
    }
    let _devices = devices();
    let dir = support::test_dir();
    let mut srv = Termphone::builder(&[
        "serve",
        "--device",
        "--no-noise-suppression",
        "--answer-delay",
        "3",
    ])
    .dir(dir.clone())
    .spawn();
    let uri = srv.sip_uri("door");
    let (rec, raw) = record_speaker(dir.path());
    let mut dial = Termphone::builder(&["dial", &uri, "--duration", "5"])
        .dir(dir.clone())
        .spawn();
    assert_eq!(dial.wait_exit_code(WAIT), 0, "{}", dial.diagnostics());
    let x = stop_speaker(rec, &raw);
    srv.stop();
    let e5 = termphone::audio::RingKind::Ringtone.tones_hz()[0];
    let secs = tone_seconds(&x, e5);
    eprintln!(
        "ringtone note heard for {secs:.1} s of {:.1} s",
        x.len() as f64 / 8000.0
    );
    // The chime rings 2 s of every 4: within 3 s of ringing its first note stands out for a
    // while; after the answer (5 s of call, silence from the caller) never again.
    assert!(secs >= 0.3, "the ringtone was not heard ({secs:.1} s)");
    let answered_at = 3.6; // answer delay plus the recorder's and ringer's start, roughly
    let after = &x[((answered_at + 1.0) * 8000.0) as usize..];
    let late = tone_seconds(after, e5);
    assert!(
        late < 0.2,
        "the ringtone went on after the answer: {late:.1} s"
    );
}

/// An acoustic echo path in the headless sound server: what the speaker plays comes back into
/// the microphone (PulseAudio's module-loopback from virt_speaker's monitor into virt_mic),
/// 40 ms later. Unloaded on drop, by its module index.
struct EchoPath(String);

impl EchoPath {
    fn load() -> EchoPath {
        let out = std::process::Command::new("pactl")
            .args([
                "load-module",
                "module-loopback",
                "source=virt_speaker.monitor",
                "sink=virt_mic",
                "latency_msec=40",
                "source_dont_move=true",
                "sink_dont_move=true",
            ])
            .output()
            .expect("pactl (pulseaudio-utils)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        EchoPath(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for EchoPath {
    fn drop(&mut self) {
        let _ = std::process::Command::new("pactl")
            .args(["unload-module", &self.0])
            .status();
    }
}

/// One call from `dial --play speech --record` to `serve --device` with the speaker looped
/// into the microphone: what the caller gets back is its own speech, as an echo. Returns the
/// echo's level (dBFS) over the call's last 3 s.
fn echo_back_level(dir: &std::sync::Arc<support::TestDir>, serve_extra: &[&str]) -> f64 {
    let mut args = vec!["serve", "--device", "--no-noise-suppression"];
    args.extend_from_slice(serve_extra);
    let mut srv = Termphone::builder(&args).dir(dir.clone()).spawn();
    let uri = srv.sip_uri("room");
    let back = dir.path().join(format!("echo-{}.wav", support::next_seq()));
    let speech48 = data_file("speech-48k.wav").display().to_string();
    let mut dial = Termphone::builder(&[
        "dial",
        &uri,
        "--codec",
        "G722",
        "--play",
        &speech48,
        "--record",
        back.to_str().unwrap(),
        "--duration",
        "6",
    ])
    .dir(dir.clone())
    .spawn();
    assert_eq!(dial.wait_exit_code(WAIT), 0, "{}", dial.diagnostics());
    srv.wait_call_state("hangupremote", WAIT);
    srv.stop();
    let (rate, x) = read_wav_mono(&back).unwrap();
    let r = rate as usize;
    support::audio::rms_dbfs(&x[2 * r..(5 * r).min(x.len())])
}

/// The echo canceller (on by default when both microphone and speaker are sound devices)
/// takes the far end's own voice out of what the microphone sends back: at least 20 dB less
/// echo than with `--no-echo-cancellation`, through a real (virtual) room.
#[test]
fn echo_canceller_removes_the_speaker_from_the_microphone() {
    if !pulse_available() {
        return;
    }
    let _devices = devices();
    let dir = support::test_dir();
    let _echo = EchoPath::load();
    let off = echo_back_level(&dir, &["--no-echo-cancellation"]);
    let on = echo_back_level(&dir, &[]);
    eprintln!("echo back at the caller: {off:.1} dBFS without AEC, {on:.1} dBFS with");
    assert!(off > -45.0, "the loopback carries the echo: {off:.1} dBFS");
    assert!(
        off - on >= 20.0,
        "the canceller took only {:.1} dB off the echo ({off:.1} -> {on:.1} dBFS)",
        off - on
    );
}

#[test]
fn the_window_check_rejects_silence_and_noise() {
    let (_, reference) = read_wav_mono(&data_file("speech-8k.wav")).unwrap();
    let silence = vec![0.0f32; reference.len() + 8000];
    assert_eq!(heard(&reference, &silence, 0).0, 0.0);
    let mut x: u32 = 12345;
    let noise: Vec<f32> = (0..reference.len() + 8000)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as f32 / 65536.0 - 0.5
        })
        .collect();
    assert!(heard(&reference, &noise, 0).0 < 0.1);
    // The speech itself, shifted by 300 samples, with a 40 ms gap inserted at 2 s: still heard.
    let mut shifted = vec![0.0f32; 300];
    shifted.extend_from_slice(&reference[..16000]);
    shifted.extend(std::iter::repeat_n(0.0, 320));
    shifted.extend_from_slice(&reference[16000..]);
    let (share, scores) = heard(&reference, &shifted, 300);
    assert!(share >= MIN_HEARD, "{scores:?}");
}
