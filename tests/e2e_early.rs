//! Early media and reliable provisional responses (RFC 3960, RFC 3262) against sipp: the
//! callee answers the INVITE with a reliable 183 carrying SDP, wants a PRACK (sipp checks its
//! RAck), and plays speech for 3 s before the 200. termphone must acknowledge the 183, play
//! (here: record) the early media, and carry on into the call. And the other way round: a
//! caller that requires 100rel gets a reliable 180 from `termphone serve`, and the 200 only
//! after its PRACK.

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

/// sipp calls `termphone serve --answer-delay 2` with `Require: 100rel` (uac_100rel.xml): the
/// 180 is reliable (Require: 100rel, an RSeq in 1..2^31), sipp's PRACK naming it gets 200,
/// and the 200 for the INVITE comes only after that; the call goes on until sipp's BYE.
#[test]
fn serve_sends_a_reliable_180_to_a_caller_requiring_100rel() {
    if !sipp_available() {
        assert!(std::env::var_os("CI").is_none(), "sipp is not installed");
        eprintln!("skipping: sipp (Debian sip-tester) is not installed");
        return;
    }
    let mut tp = Termphone::serve(&["--answer-delay", "2"]);
    let addr = tp.listen_addr();
    let mut sipp = Sipp::uac("uac_100rel.xml", addr)
        .dir(tp.dir_handle())
        .spawn();
    tp.wait_call_state("incoming", WAIT);
    tp.wait_call_state("connected", WAIT);
    tp.wait_call_state("hangupremote", WAIT);
    sipp.expect_success(WAIT);
    let logs = sipp.logs();
    assert!(
        logs.contains("reliable 180 with Require 100rel and RSeq"),
        "{logs}"
    );
    assert!(logs.contains("200 for the PRACK"), "{logs}");
    assert!(
        logs.contains("200 for the INVITE after the PRACK"),
        "{logs}"
    );
    let traced = sipp.traced();
    let ringing = traced
        .iter()
        .find(|m| !m.sent && m.status() == Some(180))
        .expect("a 180");
    let rseq: u64 = ringing
        .header("RSeq")
        .and_then(|v| v.trim().parse().ok())
        .expect("RSeq");
    assert!((1..1u64 << 31).contains(&rseq), "RSeq {rseq}");
    let pos = |pred: &dyn Fn(&support::sipp::TracedMessage) -> bool| {
        traced.iter().position(pred).expect("in the trace")
    };
    let prack_ok =
        pos(&|m| !m.sent && m.status() == Some(200) && m.cseq().is_some_and(|c| c.1 == "PRACK"));
    let invite_ok =
        pos(&|m| !m.sent && m.status() == Some(200) && m.cseq().is_some_and(|c| c.1 == "INVITE"));
    assert!(prack_ok < invite_ok, "the 2xx waited for the PRACK");
    let allow = invite_ok_allow(&traced[invite_ok]);
    assert!(allow.contains("PRACK"), "Allow: {allow}");
}

fn invite_ok_allow(m: &support::sipp::TracedMessage) -> String {
    m.header("Allow").unwrap_or_default().to_string()
}
