//! Calls through the impairment relay (tests/support/relay.rs): `dial` → relay → `serve
//! --echo` on 127.0.0.1. Without impairment the echoed speech correlates with the source;
//! with seeded loss and jitter the call still completes, the relay's drops show up in the
//! receiving side's loss counters, and the concealment fills the gaps.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::relay::{Impairment, Relay};
use support::{compare_wavs, data_file, Termphone};

const WAIT: Duration = Duration::from_secs(30);

/// The last `stats` event of a process.
fn final_stats(t: &mut Termphone) -> Value {
    t.events()
        .iter()
        .rev()
        .find(|e| e["event"] == "stats")
        .map(|e| e["stats"].clone())
        .unwrap_or(Value::Null)
}

fn call_through(imp: Impairment, seed: u64) -> (Termphone, Termphone, Relay, std::path::PathBuf) {
    let mut srv = Termphone::serve(&["--echo"]);
    let relay = Relay::start(srv.listen_addr(), imp, seed);
    let back = srv.dir().join("back.wav");
    let speech = data_file("speech-8k.wav").display().to_string();
    let target = format!("sip:echo@{}", relay.sip_addr());
    // G.722, the codec these bars were measured with (NCC measures the waveform, which Opus,
    // the default, does not keep: see tests/e2e_opus.rs).
    let mut dial = Termphone::builder(&[
        "dial",
        &target,
        "--codec",
        "G722",
        "--play",
        &speech,
        "--record",
        &back.display().to_string(),
        "--duration",
        "5",
    ])
    .dir(srv.dir_handle())
    .spawn();
    assert_eq!(dial.wait_exit_code(WAIT), 0, "{}", dial.diagnostics());
    srv.wait_call_state("hangupremote", WAIT);
    (srv, dial, relay, back)
}

#[test]
fn call_through_the_relay_without_impairment_keeps_the_audio() {
    let (_srv, mut dial, relay, back) = call_through(Impairment::none(), 1);
    let st = relay.stats();
    assert_eq!(st.sdp_rewritten, 2, "offer and answer went through: {st:?}");
    assert!(st.forwarded > 400, "both directions' media: {st:?}");
    let sim = compare_wavs(&data_file("speech-8k.wav"), &back).unwrap();
    assert!(sim.ncc >= 0.9, "{sim:?}");
    assert_eq!(final_stats(&mut dial)["lost"], 0);
}

#[test]
fn loss_and_jitter_through_the_relay_are_seen_and_concealed() {
    let imp = Impairment::loss_jitter(0.1, Duration::from_millis(30));
    let (mut srv, mut dial, relay, back) = call_through(imp, 42);
    let st = relay.stats();
    assert!(st.dropped > 20, "{st:?}");
    // Loss in both directions: serve lost some of the caller's packets, and the caller lost
    // some of the echo (plus what serve never received to echo).
    let (s, d) = (final_stats(&mut srv), final_stats(&mut dial));
    let lost = |v: &Value| v["lost"].as_u64().unwrap_or(0);
    assert!(lost(&s) > 5 && lost(&d) > 5, "serve {s}\ndial {d}");
    assert!(
        lost(&s) + lost(&d) <= st.dropped + 5,
        "no more loss counted than dropped: {st:?}\n{s}\n{d}"
    );
    assert!(d["concealed"].as_u64().unwrap_or(0) > 0, "{d}");
    assert!(d["jitter_ms"].as_f64().unwrap_or(0.0) > 1.0, "{d}");
    // Still recognisably the speech, even at 10 % loss each way.
    let sim = compare_wavs(&data_file("speech-8k.wav"), &back).unwrap();
    assert!(sim.ncc >= 0.5, "{sim:?}");
}

/// Opus through the relay at 10 % loss each way: the receiving sides rebuild lost frames from
/// the next packet's in-band FEC, and the stats say how many.
#[test]
fn opus_fec_rebuilds_frames_lost_on_the_way() {
    let mut srv = Termphone::serve(&["--echo"]);
    let relay = Relay::start(
        srv.listen_addr(),
        Impairment::loss_jitter(0.1, Duration::from_millis(10)),
        7,
    );
    let speech = data_file("speech-8k.wav").display().to_string();
    let target = format!("sip:echo@{}", relay.sip_addr());
    let mut dial = Termphone::builder(&[
        "dial",
        &target,
        "--codec",
        "opus",
        "--play",
        &speech,
        "--duration",
        "5",
    ])
    .dir(srv.dir_handle())
    .spawn();
    assert_eq!(dial.wait_exit_code(WAIT), 0, "{}", dial.diagnostics());
    srv.wait_call_state("hangupremote", WAIT);
    let s = final_stats(&mut srv);
    assert_eq!(s["codec"], "opus", "{s}");
    let (lost, fec) = (
        s["lost"].as_u64().unwrap_or(0),
        s["fec_recovered"].as_u64().unwrap_or(0),
    );
    assert!(lost > 5, "{s}");
    assert!(fec > 0 && fec <= lost, "some losses rebuilt from FEC: {s}");
}

/// `[audio] jitter_buffer_max_ms` caps the adaptive buffer: under 120 ms of jitter the
/// default lets the target climb past 100 ms, a 60 ms cap holds it there (and more packets
/// come too late instead).
#[test]
fn jitter_buffer_ceiling_from_the_config() {
    let run = |cap: Option<u32>| {
        let dir = support::test_dir();
        let cfg = dir.path().join("config.toml");
        let audio = cap.map_or(String::new(), |ms| {
            format!("[audio]\njitter_buffer_max_ms = {ms}\n")
        });
        std::fs::write(&cfg, audio).unwrap();
        let mut srv = Termphone::builder(&["serve", "--echo"])
            .global("--config")
            .global(cfg.display().to_string())
            .dir(dir.clone())
            .spawn();
        let relay = Relay::start(
            srv.listen_addr(),
            Impairment::loss_jitter(0.0, Duration::from_millis(120)),
            3,
        );
        let speech = data_file("speech-8k.wav").display().to_string();
        let target = format!("sip:echo@{}", relay.sip_addr());
        let mut dial = Termphone::builder(&["dial", &target, "--play", &speech, "--duration", "6"])
            .dir(dir)
            .spawn();
        assert_eq!(dial.wait_exit_code(WAIT), 0, "{}", dial.diagnostics());
        srv.wait_call_state("hangupremote", WAIT);
        final_stats(&mut srv)
    };
    let free = run(None);
    let capped = run(Some(60));
    let ms = |v: &Value| v["buffer_ms"].as_f64().unwrap_or(0.0);
    assert!(ms(&free) > 90.0, "default ceiling lets it grow: {free}");
    assert!(ms(&capped) <= 60.0, "capped at 60 ms: {capped}");
    let late = |v: &Value| v["late"].as_u64().unwrap_or(0);
    assert!(late(&capped) > late(&free), "{free}\n{capped}");
}
