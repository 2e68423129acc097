//! Interop with a real baresip 1.0.0 (Debian `baresip-core`), both registered to the same real
//! Kamailio on 127.0.0.1: baresip calls `termphone serve`, and `termphone dial` calls baresip
//! (auto-answer). Audio is checked both ways: baresip plays a 697 Hz tone file (aufile),
//! termphone plays speech; termphone's recording must hold the tone (Goertzel coverage) and
//! baresip's decoded-audio dump (sndfile) must correlate with the speech.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::audio::{read_wav_mono, tone_coverage, write_wav_i16};
use support::baresip::Baresip;
use support::kamailio::{Kamailio, KamailioOpts};
use support::{compare_wavs, data_file, is_event, wait_until, Termphone};

const WAIT: Duration = Duration::from_secs(20);
/// The tone baresip sends.
const TONE_HZ: f64 = 697.0;
/// Speech correlation bar (same as the other call tests).
const MIN_NCC: f64 = 0.9;
/// Fraction of 40 ms blocks of the tone window in which the tone must dominate.
const MIN_TONE_COVERAGE: f64 = 0.6;

/// A config file with one account of `user` at the fixture's registrar, password in the file.
fn config_for(k: &Kamailio, user: &str, password: &str) -> std::path::PathBuf {
    k.account_config(user, &format!("password = \"{password}\"\n"))
}

/// A 20 s, 8 kHz mono S16LE 697 Hz tone for baresip's aufile source.
fn tone_file(dir: &Path) -> PathBuf {
    let path = dir.join("baresip-tone.wav");
    let samples: Vec<i16> = (0..8000 * 20)
        .map(|n| {
            ((n as f64 * 2.0 * std::f64::consts::PI * TONE_HZ / 8000.0).sin() * 12000.0) as i16
        })
        .collect();
    write_wav_i16(&path, 8000, &samples).unwrap();
    path
}

/// The tone must be in `wav` (termphone's recording of baresip).
fn assert_holds_tone(wav: &Path, what: &str) {
    let (rate, x) = read_wav_mono(wav).unwrap();
    // Skip the first and last half second (call setup, hangup).
    let skip = rate as usize / 2;
    assert!(
        x.len() > 4 * skip,
        "{what}: recording too short ({} samples)",
        x.len()
    );
    let body = &x[skip..x.len() - skip];
    let cov = tone_coverage(body, rate, TONE_HZ, 0.5, 40);
    eprintln!("{what}: tone coverage {cov:.2} in {wav:?}");
    assert!(
        cov >= MIN_TONE_COVERAGE,
        "{what}: {TONE_HZ} Hz tone in only {:.0}% of {wav:?}",
        cov * 100.0
    );
}

/// baresip's decoded dump must correlate with the speech termphone played.
fn assert_baresip_heard_speech(b: &Baresip) {
    let dump = wait_until(WAIT, || b.decoded_dump()).unwrap_or_else(|| {
        panic!(
            "no sndfile -dec.wav dump in {:?}\nbaresip log:\n{}",
            b.conf_dir(),
            b.log()
        )
    });
    let sim = compare_wavs(&data_file("speech-8k.wav"), &dump)
        .unwrap_or_else(|e| panic!("compare with baresip's dump {dump:?}: {e}"));
    eprintln!("termphone->baresip: {sim:?} ({dump:?})");
    // And it is not baresip's own tone coming back (the dump is the decoder's output).
    let (rate, x) = read_wav_mono(&dump).unwrap();
    let own = tone_coverage(&x, rate, TONE_HZ, 0.5, 40);
    assert!(
        own < 0.1,
        "baresip's decoded audio holds its own tone ({own:.2})"
    );
    assert!(
        sim.ncc >= MIN_NCC,
        "termphone->baresip speech correlates only {sim:?} ({dump:?})"
    );
}

fn no_password_in(out: &str) {
    for pw in ["alicepw", "bobpw"] {
        assert!(!out.contains(pw), "a password leaked into termphone output");
    }
}

/// baresip (alice) calls `termphone serve` (bob) through Kamailio; both directions carry audio.
#[test]
fn baresip_calls_termphone_serve_through_kamailio() {
    let k = Kamailio::start(KamailioOpts::default());
    let bob_cfg = config_for(&k, "bob", "bobpw");
    let rec_dir = k.dir().join("rec");
    let speech = data_file("speech-8k.wav").display().to_string();
    let mut srv = Termphone::builder(&[
        "serve",
        "--play",
        &speech,
        "--record",
        &rec_dir.display().to_string(),
    ])
    .global("--config")
    .global(bob_cfg.display().to_string())
    .dir(k.dir_handle())
    .spawn();
    srv.wait_event(
        |e| e["event"] == "registration" && e["state"] == "registered",
        WAIT,
    );
    let tone = tone_file(k.dir());
    let mut b = Baresip::start(&k, "alice", "alicepw", &tone, WAIT);
    let resp = b
        .dial(&format!("sip:bob@{}", k.addr()))
        .unwrap_or_else(|e| panic!("{e}\nbaresip log:\n{}", b.log()));
    assert!(resp.contains("\"ok\":true"), "dial refused: {resp}");
    srv.wait_call_state("connected", WAIT);
    // speech-8k.wav is 5 s; let it all through, then baresip hangs up.
    std::thread::sleep(Duration::from_secs(6));
    let resp = b.hangup().unwrap_or_else(|e| panic!("{e}"));
    assert!(resp.contains("\"ok\":true"), "hangup refused: {resp}");
    srv.wait_call_state("hangupremote", WAIT);
    let rec = srv.wait_event(is_event("recording"), WAIT);
    let path = PathBuf::from(rec["path"].as_str().unwrap());
    let blog = b.log();
    assert!(
        blog.contains("SIP/2.0 407") || blog.contains("Proxy-Authorization"),
        "the INVITE went through Kamailio's auth"
    );
    b.stop();
    srv.stop();
    // Both unregistered at exit: baresip (its first SIGTERM) and serve.
    k.wait_registrations(WAIT, "empty after both exited", |r| r.is_empty());
    assert_holds_tone(&path, "baresip->termphone serve");
    assert_baresip_heard_speech(&b);
    no_password_in(&format!("{}\n{:?}", srv.stderr(), srv.events()));
}

/// `termphone dial alice --account bob` calls baresip (alice, auto-answer) through Kamailio.
#[test]
fn termphone_dial_calls_baresip_through_kamailio() {
    let k = Kamailio::start(KamailioOpts::default());
    let tone = tone_file(k.dir());
    let b = Baresip::start(&k, "alice", "alicepw", &tone, WAIT);
    let bob_cfg = config_for(&k, "bob", "bobpw");
    let back = k.dir().join("from-baresip.wav");
    let speech = data_file("speech-8k.wav").display().to_string();
    let mut dial = Termphone::builder(&[
        "dial",
        "alice",
        "--account",
        "bob",
        "--play",
        &speech,
        "--record",
        &back.display().to_string(),
        "--duration",
        "6",
    ])
    .global("--config")
    .global(bob_cfg.display().to_string())
    .dir(k.dir_handle())
    .spawn();
    assert_eq!(
        dial.wait_exit_code(WAIT),
        0,
        "{}\nbaresip log:\n{}",
        dial.diagnostics(),
        b.log()
    );
    let trace = dial.stderr();
    assert!(
        trace.contains("SIP/2.0 407"),
        "Kamailio challenged the INVITE"
    );
    assert!(
        b.log().contains("BYE sip:"),
        "baresip got termphone's BYE:\n{}",
        b.log()
    );
    assert_holds_tone(&back, "baresip->termphone dial");
    assert_baresip_heard_speech(&b);
    no_password_in(&format!("{trace}\n{:?}", dial.events()));
}

/// DTMF by SIP INFO (the account's `dtmf_mode = "info"`): termphone calls baresip and sends
/// 1 2 # as application/dtmf-relay INFO requests, one at a time; baresip reads each digit.
#[test]
fn termphone_sends_dtmf_to_baresip_by_sip_info() {
    let k = Kamailio::start(KamailioOpts::default());
    let tone = tone_file(k.dir());
    let b = Baresip::start(&k, "alice", "alicepw", &tone, WAIT);
    let bob_cfg = k.account_config("bob", "password = \"bobpw\"\ndtmf_mode = \"info\"\n");
    let mut dial = Termphone::builder(&[
        "dial",
        "alice",
        "--account",
        "bob",
        "--dtmf",
        "12#",
        "--duration",
        "3",
    ])
    .global("--config")
    .global(bob_cfg.display().to_string())
    .dir(k.dir_handle())
    .spawn();
    assert_eq!(
        dial.wait_exit_code(WAIT),
        0,
        "{}\nbaresip log:\n{}",
        dial.diagnostics(),
        b.log()
    );
    let trace = dial.stderr();
    assert_eq!(
        trace
            .matches("Content-Type: application/dtmf-relay")
            .count(),
        3,
        "one INFO per digit"
    );
    let log = b.log();
    let got: String = log
        .lines()
        .filter_map(|l| l.split("received DTMF: '").nth(1))
        .filter_map(|rest| rest.chars().next())
        .collect();
    assert_eq!(got, "12#", "baresip's log:\n{log}");
}

/// Hold both ways with baresip: baresip holds termphone's call (serve sees `remotehold`, then
/// `connected` after baresip resumes), and termphone holds baresip over its control socket
/// (baresip answers the sendonly offer with recvonly, then takes sendrecv again).
#[test]
fn hold_and_resume_with_baresip_both_ways() {
    let k = Kamailio::start(KamailioOpts::default());
    let bob_cfg = config_for(&k, "bob", "bobpw");
    let sock = k.dir().join("bob.sock");
    let mut srv = Termphone::builder(&["serve", "--echo", "--control", sock.to_str().unwrap()])
        .global("--config")
        .global(bob_cfg.display().to_string())
        .dir(k.dir_handle())
        .spawn();
    srv.wait_event(
        |e| e["event"] == "registration" && e["state"] == "registered",
        WAIT,
    );
    let tone = tone_file(k.dir());
    let mut b = Baresip::start(&k, "alice", "alicepw", &tone, WAIT);
    b.dial(&format!("sip:bob@{}", k.addr()))
        .unwrap_or_else(|e| panic!("{e}\nbaresip log:\n{}", b.log()));
    let call = srv.wait_call_state("connected", WAIT)["call"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(Duration::from_millis(500));
    // baresip holds us.
    let resp = b.command("hold", "").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        resp.contains("\"ok\":true"),
        "hold refused: {resp}\n{}",
        b.log()
    );
    srv.wait_call_state("remotehold", WAIT);
    let resp = b.command("resume", "").unwrap_or_else(|e| panic!("{e}"));
    assert!(resp.contains("\"ok\":true"), "resume refused: {resp}");
    srv.wait_event(
        |e| e["event"] == "call" && e["state"] == "connected" && e["call"] == call.as_str(),
        WAIT,
    );
    // We hold baresip.
    let mut ctl = support::control::CtlClient::connect(&sock);
    ctl.ok(serde_json::json!({"cmd": "subscribe"}));
    ctl.ok(serde_json::json!({"cmd": "hold", "call": call}));
    ctl.wait_call(&call, "hold", WAIT);
    ctl.ok(serde_json::json!({"cmd": "activate", "call": call}));
    ctl.wait_call(&call, "connected", WAIT);
    b.hangup().unwrap_or_else(|e| panic!("{e}"));
    srv.wait_call_state("hangupremote", WAIT);
    let trace = srv.stderr();
    // baresip's answer to our hold, and its own hold offer, on the wire.
    assert!(trace.contains("a=recvonly"), "recvonly in the SDP exchange");
    assert!(trace.contains("a=sendonly"), "sendonly in the SDP exchange");
    b.stop();
    srv.stop();
    no_password_in(&format!("{trace}\n{:?}", srv.events()));
}

/// Blind transfer with baresip as the transferee: baresip (alice) calls bob (termphone), bob
/// transfers it to carol (termphone), baresip follows the REFER and carol records its tone.
/// (baresip 1.0 cannot do attended transfer: it sends no Replaces.)
#[test]
fn termphone_transfers_baresip_to_another_termphone() {
    let k = Kamailio::start(KamailioOpts::default().users(vec![
        support::kamailio::User::new("alice", "alicepw"),
        support::kamailio::User::new("bob", "bobpw"),
        support::kamailio::User::new("carol", "carolpw"),
    ]));
    let bob_cfg = config_for(&k, "bob", "bobpw");
    let carol_cfg = config_for(&k, "carol", "carolpw");
    let sock = k.dir().join("bob.sock");
    let mut bob = Termphone::builder(&["serve", "--echo", "--control", sock.to_str().unwrap()])
        .global("--config")
        .global(bob_cfg.display().to_string())
        .dir(k.dir_handle())
        .spawn();
    let rec_dir = k.dir().join("carol-rec");
    let mut carol = Termphone::builder(&["serve", "--record", rec_dir.to_str().unwrap()])
        .global("--config")
        .global(carol_cfg.display().to_string())
        .dir(k.dir_handle())
        .spawn();
    for t in [&mut bob, &mut carol] {
        t.wait_event(
            |e| e["event"] == "registration" && e["state"] == "registered",
            WAIT,
        );
    }
    let tone = tone_file(k.dir());
    let mut b = Baresip::start(&k, "alice", "alicepw", &tone, WAIT);
    b.dial(&format!("sip:bob@{}", k.addr()))
        .unwrap_or_else(|e| panic!("{e}\nbaresip log:\n{}", b.log()));
    let call = bob.wait_call_state("connected", WAIT)["call"]
        .as_str()
        .unwrap()
        .to_string();
    let mut ctl = support::control::CtlClient::connect(&sock);
    ctl.ok(serde_json::json!({"cmd": "subscribe"}));
    // The full URI: baresip sends the new INVITE straight to it (it has no outbound proxy).
    let target = format!("sip:carol@{}", k.addr());
    ctl.ok(serde_json::json!({"cmd": "transfer", "call": call, "to": target}));
    // baresip takes the REFER (202), reports 100 then 200 (NOTIFY sipfrag), and bob leaves.
    ctl.wait_event(
        |e| e["event"] == "transfer" && e["call"] == call.as_str() && e["state"] == "done",
        WAIT,
    );
    ctl.wait_call(&call, "hanguplocal", WAIT);
    carol.wait_call_state("connected", WAIT);
    std::thread::sleep(Duration::from_secs(3));
    b.hangup().unwrap_or_else(|e| panic!("{e}"));
    carol.wait_call_state("hangupremote", WAIT);
    let rec = carol.wait_event(is_event("recording"), WAIT);
    let path = PathBuf::from(rec["path"].as_str().unwrap());
    b.stop();
    bob.stop();
    carol.stop();
    assert_holds_tone(&path, "baresip -> carol after the transfer");
}
