//! Hold and resume by re-INVITE (RFC 3264 §8.4), mute, against real peers on 127.0.0.1:
//! sipp holding termphone and being held by it (its scenarios check the SDP directions), and
//! two termphone instances holding each other in turn (both held: inactive), with the audio
//! checked before, during and after the hold.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::audio::read_wav_mono;
use support::control::{serve_with_control, CtlClient};
use support::rtp::RtpCapture;
use support::sipp::sipp_available;
use support::{is_event, test_dir, RtpSink, Sipp, Termphone};

const WAIT: Duration = Duration::from_secs(20);

fn need_sipp() -> bool {
    if sipp_available() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "sipp (Debian sip-tester) is not installed"
    );
    eprintln!("skipping: sipp (Debian sip-tester) is not installed");
    false
}

/// The call states a process reported, in order.
fn states(t: &mut Termphone) -> Vec<String> {
    t.events()
        .iter()
        .filter(|e| e["event"] == "call")
        .map(|e| e["state"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The longest silence between two RTP packets that reached the sink, and how many packets
/// came before and after it.
fn longest_gap(cap: &RtpCapture) -> (Duration, usize, usize) {
    let mut best = (Duration::ZERO, 0, 0);
    for (i, w) in cap.packets.windows(2).enumerate() {
        let gap = w[1].at.duration_since(w[0].at);
        if gap > best.0 {
            best = (gap, i + 1, cap.packets.len() - i - 1);
        }
    }
    best
}

/// `termphone serve`; sipp calls, holds for 3 s (sendonly), resumes, hangs up. termphone must
/// answer recvonly and then sendrecv (sipp checks), send no RTP while held, and report
/// `remotehold` then `connected`.
#[test]
fn sipp_holds_termphone_and_resumes() {
    if !need_sipp() {
        return;
    }
    let mut srv = Termphone::serve(&[]);
    let addr = srv.listen_addr();
    let sink = RtpSink::bind();
    let mut sipp = Sipp::uac("uac_hold.xml", addr)
        .key("rtp_sink_port", sink.port())
        .dir(srv.dir_handle())
        .spawn();
    sipp.expect_success(Duration::from_secs(30));
    srv.wait_call_state("hangupremote", WAIT);
    assert_eq!(
        states(&mut srv),
        [
            "incoming",
            "connected",
            "remotehold",
            "connected",
            "hangupremote"
        ]
    );
    let cap = sink.finish();
    let (gap, before, after) = longest_gap(&cap);
    assert!(
        gap >= Duration::from_millis(2500) && before > 50 && after > 50,
        "no RTP while held: longest gap {gap:?}, {before} packets before, {after} after"
    );
}

/// termphone calls sipp and holds it through the control socket, then resumes: the re-INVITEs
/// say sendonly, then sendrecv (sipp checks), and no RTP goes out while held.
#[test]
fn termphone_holds_sipp_and_resumes() {
    if !need_sipp() {
        return;
    }
    let dir = test_dir();
    let sink = RtpSink::bind();
    let mut sipp = Sipp::uas("uas_hold.xml")
        .key("rtp_sink_port", sink.port())
        .dir(dir.clone())
        .spawn();
    let (mut tp, sock) = serve_with_control(&dir, &[]);
    let mut ctl = CtlClient::connect(&sock);
    ctl.ok(json!({"cmd": "subscribe"}));
    let call = ctl.ok(json!({"cmd": "dial", "to": sipp.uri("hold")}))["call"]
        .as_str()
        .unwrap()
        .to_string();
    ctl.wait_call(&call, "connected", WAIT);
    std::thread::sleep(Duration::from_millis(1500));
    ctl.ok(json!({"cmd": "hold", "call": call}));
    ctl.wait_call(&call, "hold", WAIT);
    let held_at = Instant::now();
    std::thread::sleep(Duration::from_millis(2500));
    ctl.ok(json!({"cmd": "activate", "call": call}));
    ctl.wait_call(&call, "connected", WAIT);
    assert!(held_at.elapsed() >= Duration::from_millis(2500));
    std::thread::sleep(Duration::from_millis(1500));
    ctl.ok(json!({"cmd": "hangup", "call": call}));
    ctl.wait_call(&call, "hanguplocal", WAIT);
    sipp.expect_success(WAIT);
    assert_eq!(
        ctl.error(json!({"cmd": "hold", "call": call})),
        format!("no such call: {call}")
    );
    tp.stop();
    let cap = sink.finish();
    let (gap, before, after) = longest_gap(&cap);
    assert!(
        gap >= Duration::from_millis(2000) && before > 40 && after > 40,
        "no RTP while holding: longest gap {gap:?}, {before} packets before, {after} after"
    );
}

/// Share of `block`-long pieces of `x[from..to]` (seconds) in which the tone stands out.
fn tone_share(x: &[f32], rate: u32, freq: f64, from: f64, to: f64) -> f64 {
    let r = f64::from(rate);
    let piece = &x[(from * r) as usize..((to * r) as usize).min(x.len())];
    support::audio::tone_coverage(piece, rate, freq, 0.5, 100)
}

/// Two termphones: A plays a tone to B, which records. A holds (B sees remotehold), B holds too
/// (its re-INVITE must say inactive), A resumes (still held by B: remotehold), B resumes: both
/// connected, and the tone comes back. Mute silences the tone without stopping RTP.
#[test]
fn two_termphones_hold_each_other_and_the_audio_comes_back() {
    let dir = test_dir();
    let tone_wav = dir.path().join("tone.wav");
    support::audio::write_tone_wav(&tone_wav, 600.0, 0.3, 40.0);
    let rec_dir = dir.path().join("rec");
    std::fs::create_dir(&rec_dir).unwrap();
    let (mut a, a_sock) = serve_with_control(&dir, &[]);
    let (mut b, b_sock) = serve_with_control(
        &dir,
        &["--codec", "PCMU", "--record", rec_dir.to_str().unwrap()],
    );
    let mut ca = CtlClient::connect(&a_sock);
    let mut cb = CtlClient::connect(&b_sock);
    ca.ok(json!({"cmd": "subscribe"}));
    cb.ok(json!({"cmd": "subscribe"}));
    let target = b.sip_uri("b");
    let a_call = ca.ok(json!({"cmd": "dial", "to": target, "play": tone_wav}))["call"]
        .as_str()
        .unwrap()
        .to_string();
    ca.wait_call(&a_call, "connected", WAIT);
    let b_call = cb.wait_event(|e| e["event"] == "call" && e["state"] == "connected", WAIT)["call"]
        .as_str()
        .unwrap()
        .to_string();
    let start = Instant::now();
    let at = |s: f64| {
        let t = start + Duration::from_secs_f64(s);
        if let Some(d) = t.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    };
    // 0-3 s talk; 3 s A holds.
    at(3.0);
    ca.ok(json!({"cmd": "hold", "call": a_call}));
    ca.wait_call(&a_call, "hold", WAIT);
    cb.wait_call(&b_call, "remotehold", WAIT);
    // DTMF needs a connected call.
    let e = ca.error(json!({"cmd": "dtmf", "call": a_call, "digits": "1"}));
    assert_eq!(
        e,
        format!("cannot send DTMF on {a_call}: it is on hold, not connected")
    );
    // 5 s B holds too: inactive.
    at(5.0);
    cb.ok(json!({"cmd": "hold", "call": b_call}));
    cb.wait_call(&b_call, "hold", WAIT);
    // 7 s A resumes, but B still holds: A is remote-held.
    at(7.0);
    ca.ok(json!({"cmd": "activate", "call": a_call}));
    ca.wait_call(&a_call, "remotehold", WAIT);
    // 9 s B resumes: both talk again.
    at(9.0);
    cb.ok(json!({"cmd": "activate", "call": b_call}));
    cb.wait_call(&b_call, "connected", WAIT);
    ca.wait_call(&a_call, "connected", WAIT);
    // 12-14 s A is muted: RTP goes on, the tone does not.
    at(12.0);
    assert_eq!(
        ca.ok(json!({"cmd": "mute", "call": a_call}))["on"],
        json!(true)
    );
    at(14.0);
    ca.ok(json!({"cmd": "mute", "call": a_call, "on": false}));
    at(16.0);
    ca.ok(json!({"cmd": "hangup", "call": a_call}));
    cb.wait_call(&b_call, "hangupremote", WAIT);
    let rec = b.wait_event(is_event("recording"), WAIT)["path"]
        .as_str()
        .unwrap()
        .to_string();
    b.stop();
    a.stop();

    // SDP directions on the wire (each instance's --sip-trace on stderr).
    let a_trace = a.stderr();
    let b_trace = b.stderr();
    assert!(a_trace.contains("a=sendonly"), "A's hold offer");
    assert!(b_trace.contains("a=inactive"), "B's hold while held");

    // B's recording (8 kHz, from B's media start): the tone before the hold, none while A
    // holds, back after both resumed, gone while A is muted, back after.
    let (rate, x) = read_wav_mono(Path::new(&rec)).unwrap();
    let share = |from: f64, to: f64| tone_share(&x, rate, 600.0, from, to);
    let report = format!(
        "tone share: talk {:.2}, held {:.2}, resumed {:.2}, muted {:.2}, unmuted {:.2}",
        share(0.5, 2.5),
        share(4.0, 8.5),
        share(10.0, 11.5),
        share(12.6, 13.6),
        share(14.6, 15.5)
    );
    eprintln!("{report}");
    assert!(share(0.5, 2.5) > 0.9, "{report}");
    assert!(share(4.0, 8.5) < 0.1, "{report}");
    assert!(share(10.0, 11.5) > 0.9, "{report}");
    assert!(share(12.6, 13.6) < 0.1, "{report}");
    assert!(share(14.6, 15.5) > 0.9, "{report}");
    // While muted the packets kept coming: B's jitter buffer never lost the stream.
    let last_stats: Value = b
        .events()
        .iter()
        .rev()
        .find(|e| e["event"] == "summary")
        .cloned()
        .expect("summary");
    assert_eq!(last_stats["summary"]["codec"], "PCMU", "{last_stats}");
}

/// `[audio] hold_music`: while A holds the call, B hears the music (600 Hz) instead of A's
/// audio (1000 Hz), and A's audio again after the resume.
#[test]
fn music_on_hold_plays_while_held() {
    let dir = test_dir();
    let tone = |freq: f64, name: &str| {
        let path = dir.path().join(name);
        support::audio::write_tone_wav(&path, freq, 0.3, 30.0);
        path
    };
    let voice = tone(1000.0, "voice.wav");
    let music = tone(600.0, "music.wav");
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!("[audio]\nhold_music = \"{}\"\n", music.display()),
    )
    .unwrap();
    let rec_dir = dir.path().join("rec");
    std::fs::create_dir(&rec_dir).unwrap();
    let a_sock = dir.path().join("a.sock");
    let mut a = support::TermphoneBuilder::new(&["serve", "--control", a_sock.to_str().unwrap()])
        .global("--config")
        .global(cfg.display().to_string())
        .dir(dir.clone())
        .spawn();
    a.wait_event(|e| e["event"] == "control", WAIT);
    let (mut b, _) = serve_with_control(
        &dir,
        &["--codec", "PCMU", "--record", rec_dir.to_str().unwrap()],
    );
    let mut ca = CtlClient::connect(&a_sock);
    ca.ok(json!({"cmd": "subscribe"}));
    let call = ca.ok(json!({"cmd": "dial", "to": b.sip_uri("b"), "play": voice}))["call"]
        .as_str()
        .unwrap()
        .to_string();
    ca.wait_call(&call, "connected", WAIT);
    let start = Instant::now();
    let at = |s: f64| {
        if let Some(d) = (start + Duration::from_secs_f64(s)).checked_duration_since(Instant::now())
        {
            std::thread::sleep(d);
        }
    };
    at(2.0);
    ca.ok(json!({"cmd": "hold", "call": call}));
    ca.wait_call(&call, "hold", WAIT);
    at(5.0);
    ca.ok(json!({"cmd": "activate", "call": call}));
    ca.wait_call(&call, "connected", WAIT);
    at(7.5);
    ca.ok(json!({"cmd": "hangup", "call": call}));
    let rec = b.wait_event(is_event("recording"), WAIT)["path"]
        .as_str()
        .unwrap()
        .to_string();
    b.wait_call_state("hangupremote", WAIT);
    a.stop();
    b.stop();
    let (rate, x) = read_wav_mono(Path::new(&rec)).unwrap();
    let share = |freq: f64, from: f64, to: f64| tone_share(&x, rate, freq, from, to);
    let report = format!(
        "voice {:.2} / music {:.2} before, voice {:.2} / music {:.2} held, voice {:.2} after",
        share(1000.0, 0.5, 1.8),
        share(600.0, 0.5, 1.8),
        share(1000.0, 3.0, 4.7),
        share(600.0, 3.0, 4.7),
        share(1000.0, 6.0, 7.2)
    );
    eprintln!("{report}");
    assert!(
        share(1000.0, 0.5, 1.8) > 0.9 && share(600.0, 0.5, 1.8) < 0.1,
        "{report}"
    );
    assert!(
        share(600.0, 3.0, 4.7) > 0.9 && share(1000.0, 3.0, 4.7) < 0.1,
        "{report}"
    );
    assert!(share(1000.0, 6.0, 7.2) > 0.9, "{report}");
}
