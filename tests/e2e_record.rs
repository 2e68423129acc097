//! Recording a call on demand (`record` on the control socket): both directions into a WAV
//! file, ours left and theirs right when `[audio] record_channels = "stereo"`, started and
//! stopped during the call, finished when the call ends while recording. Loopback only.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use support::audio::{read_wav_mono, tone_coverage};
use support::control::{serve_with_control, CtlClient};
use support::{test_dir, TermphoneBuilder};

const WAIT: Duration = Duration::from_secs(20);

fn tone_wav(path: &Path, freq: f64) {
    support::audio::write_tone_wav(path, freq, 0.3, 30.0);
}

/// Each channel of a stereo WAV file.
fn channels(path: &Path) -> (u32, Vec<f32>, Vec<f32>) {
    let mut r = hound::WavReader::open(path).unwrap();
    let spec = r.spec();
    assert_eq!(spec.channels, 2, "{}", path.display());
    let s: Vec<f32> = r
        .samples::<i16>()
        .map(|v| f32::from(v.unwrap()) / 32768.0)
        .collect();
    let left = s.iter().step_by(2).copied().collect();
    let right = s.iter().skip(1).step_by(2).copied().collect();
    (spec.sample_rate, left, right)
}

#[test]
fn record_on_demand_keeps_each_side_on_its_own_channel() {
    let dir = test_dir();
    let ours = dir.path().join("ours.wav");
    let theirs = dir.path().join("theirs.wav");
    tone_wav(&ours, 1000.0);
    tone_wav(&theirs, 600.0);
    let rec_dir = dir.path().join("calls");
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[audio]\nrecord_dir = \"{}\"\nrecord_channels = \"stereo\"\n",
            rec_dir.display()
        ),
    )
    .unwrap();
    // B answers with its tone; A, with the stereo config, calls B with its own tone.
    let (mut b, _b_sock) = serve_with_control(
        &dir,
        &["--codec", "PCMU", "--play", theirs.to_str().unwrap()],
    );
    let a_sock = dir.path().join("a.sock");
    let mut a = TermphoneBuilder::new(&["serve", "--control", a_sock.to_str().unwrap()])
        .global("--config")
        .global(cfg.display().to_string())
        .dir(dir.clone())
        .spawn();
    a.wait_event(|e| e["event"] == "control", WAIT);
    let mut ca = CtlClient::connect(&a_sock);
    ca.ok(json!({"cmd": "subscribe"}));
    let call = ca.ok(json!({"cmd": "dial", "to": b.sip_uri("b"), "play": ours}))["call"]
        .as_str()
        .unwrap()
        .to_string();
    ca.wait_call(&call, "connected", WAIT);
    // Not recording yet: stopping is an error.
    assert_eq!(
        ca.error(json!({"cmd": "record", "call": call, "on": false})),
        format!("call {call}: it is not being recorded")
    );
    std::thread::sleep(Duration::from_millis(500));
    let first = ca.ok(json!({"cmd": "record", "call": call}))["path"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(first.starts_with(rec_dir.to_str().unwrap()), "{first}");
    assert!(first.ends_with(&format!("-{call}.wav")), "{first}");
    ca.wait_event(
        |e| e["event"] == "recording" && e["path"] == first.as_str(),
        WAIT,
    );
    assert_eq!(
        ca.error(json!({"cmd": "record", "call": call})),
        format!("call {call}: already recording to {first}")
    );
    std::thread::sleep(Duration::from_secs(2));
    let stopped = ca.ok(json!({"cmd": "record", "call": call, "on": false}));
    assert_eq!(stopped["path"], first.as_str());
    ca.wait_event(
        |e| e["event"] == "recorded" && e["path"] == first.as_str(),
        WAIT,
    );
    // A second recording into a named file, still running when the call ends.
    let second = dir.path().join("named.wav");
    ca.ok(json!({"cmd": "record", "call": call, "path": second}));
    std::thread::sleep(Duration::from_secs(1));
    ca.ok(json!({"cmd": "hangup", "call": call}));
    ca.wait_event(
        |e| e["event"] == "recorded" && e["path"] == second.to_str().unwrap(),
        WAIT,
    );
    a.stop();
    b.stop();

    let (rate, left, right) = channels(Path::new(&first));
    let secs = left.len() as f64 / f64::from(rate);
    assert!(
        (1.7..2.6).contains(&secs),
        "about 2 s recorded, not {secs:.2}"
    );
    // Skip the first 200 ms (the other side's tone reaches the jitter buffer a little late).
    let body = |x: &[f32]| x[(rate as usize / 5)..].to_vec();
    let cov = |x: &[f32], f: f64| tone_coverage(&body(x), rate, f, 0.5, 100);
    eprintln!(
        "left: 1000 Hz {:.2}, 600 Hz {:.2}; right: 1000 Hz {:.2}, 600 Hz {:.2}",
        cov(&left, 1000.0),
        cov(&left, 600.0),
        cov(&right, 1000.0),
        cov(&right, 600.0)
    );
    assert!(
        cov(&left, 1000.0) > 0.9 && cov(&left, 600.0) < 0.1,
        "ours on the left"
    );
    assert!(
        cov(&right, 600.0) > 0.9 && cov(&right, 1000.0) < 0.1,
        "theirs on the right"
    );
    let (_, l2, _) = channels(&second);
    assert!(
        l2.len() as f64 / f64::from(rate) > 0.7,
        "the named file holds the last second"
    );
    // Mono readers see a valid file too.
    assert!(read_wav_mono(&second).is_ok());
}
