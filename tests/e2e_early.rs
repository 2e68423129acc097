//! Early media and reliable provisional responses (RFC 3960, RFC 3262) against sipp: the
//! callee answers the INVITE with a reliable 183 carrying SDP, wants a PRACK (sipp checks its
//! RAck), and plays speech for 3 s before the 200. termphone must acknowledge the 183, play
//! (here: record) the early media, and carry on into the call.

mod support;

use std::time::Duration;

use support::audio::{read_wav_mono, rms_dbfs};
use support::sipp::{pcap_play_allowed, sipp_available, PCAP_NEEDS_ROOT};
use support::{test_dir, RtpSink, Sipp, Termphone};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn reliable_183_is_pracked_and_its_early_media_is_heard() {
    if !sipp_available() || !pcap_play_allowed() {
        assert!(
            std::env::var_os("CI").is_none(),
            "sipp with pcap playback is needed: {PCAP_NEEDS_ROOT}"
        );
        eprintln!("skipping: needs sipp and the right to play pcaps");
        return;
    }
    let dir = test_dir();
    let sink = RtpSink::bind();
    let mut sipp = Sipp::uas("uas_early_100rel.xml")
        .key("rtp_sink_port", sink.port())
        .dir(dir.clone())
        .spawn();
    let rec = dir.path().join("early.wav");
    let mut dial = Termphone::builder(&[
        "dial",
        &sipp.uri("early"),
        "--record",
        rec.to_str().unwrap(),
        "--duration",
        "2",
    ])
    .dir(dir.clone())
    .spawn();
    dial.wait_call_state("alerting", WAIT);
    assert_eq!(dial.wait_exit_code(WAIT), 0, "{}", dial.diagnostics());
    sipp.expect_success(WAIT);
    assert!(
        sipp.logs().contains("PRACK with RAck"),
        "sipp saw the PRACK: {}",
        sipp.logs()
    );
    // Media started at the 183: the recording holds the 3 s before the answer and the 2 s
    // after; the speech (5 s from the 183 on) is in the first part already.
    let (rate, x) = read_wav_mono(&rec).unwrap();
    let secs = x.len() as f64 / f64::from(rate);
    assert!(secs > 4.0, "recording from the 183 on: {secs:.1} s");
    let early = &x[(rate as usize / 2)..(rate as usize * 5 / 2)];
    let level = rms_dbfs(early);
    assert!(
        level > -40.0,
        "early media speech: {level:.1} dBFS in 0.5..2.5 s"
    );
    let states: Vec<String> = dial
        .events()
        .iter()
        .filter(|e| e["event"] == "call")
        .map(|e| e["state"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(states, ["dialing", "alerting", "connected", "hanguplocal"]);
    drop(sink);
}
