//! Ready-made end-to-end checks of termphone against sipp, one function per scenario, so an
//! integration test is one line:
//!
//! ```ignore
//! mod support;
//! #[test]
//! fn serve_answers_sipp_with_audio_both_ways() {
//!     support::e2e::serve_answers_sipp_with_audio_both_ways();
//! }
//! ```
//!
//! Each function starts its peers on 127.0.0.1, asserts, and panics with the events, stderr and
//! sipp traces of every process on failure (their Drop prints them). Each returns what it
//! measured, for tests that want to check more.
//!
//! How RTP both ways is verified (see also the comments in tests/sipp/uac_pcap.xml):
//! - peer -> termphone: sipp plays tests/data/speech-8k-pcm{a,u}.pcap (the speech fixture,
//!   G.711-coded); termphone records (`--record`); the recording must correlate with
//!   tests/data/speech-8k.wav (peak NCC >= [`MIN_NCC`]).
//! - termphone -> peer: the SDP sipp sends names an [`RtpSink`] port, not sipp's; termphone
//!   plays tests/data/speech-8k.wav (`--play`) and the sink's decoded RTP must correlate with
//!   it just as well; its packets must use the negotiated payload type.

use super::audio::segmental_alignment;
use super::rtp::{RtpCapture, RtpSink};
use super::sipp::Sipp;
use super::{data_file, is_call_state, is_event, wait_until, Similarity, Termphone};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Lowest acceptable peak NCC between the speech fixture and what came out of a G.711 call.
/// A clean loopback call measures ~0.99; 0.8 leaves room for a few lost or concealed frames.
pub const MIN_NCC: f64 = 0.8;
/// Fewest RTP audio packets for "media flowed" over the 5 s fixture (250 packets if perfect).
pub const MIN_PACKETS: usize = 200;

const EVENT_WAIT: Duration = Duration::from_secs(15);
const CALL_WAIT: Duration = Duration::from_secs(40);
const SIPP_WAIT: Duration = Duration::from_secs(70);

/// Assert every stdout line of the process was a JSON object (the `--json` contract).
pub fn assert_json_only(t: &mut Termphone) {
    let bad = t.non_json_lines();
    assert!(bad.is_empty(), "non-JSON lines on stdout: {bad:?}");
}

/// The speech fixture's path, as a string for command lines.
pub fn speech_path() -> String {
    data_file("speech-8k.wav").display().to_string()
}

fn speech() -> Vec<f32> {
    let (rate, s) = super::read_wav_mono(&data_file("speech-8k.wav")).expect("speech fixture");
    assert_eq!(rate, 8000);
    s
}

/// What a both-ways call measured.
#[derive(Debug)]
pub struct BothWays {
    /// RTP termphone sent (captured by the sink sipp's SDP pointed at).
    pub sent_by_termphone: RtpCapture,
    /// Correlation of that RTP's audio with the speech fixture.
    pub sent_ncc: Similarity,
    /// The WAV termphone recorded.
    pub recording: PathBuf,
    /// Correlation of the recording with the speech fixture (sipp played it).
    pub received_ncc: Similarity,
}

/// Assert the sink got a real G.711 stream of payload type `pt` that carries the speech.
pub fn assert_speech_rtp(cap: &RtpCapture, pt: u8, what: &str) -> Similarity {
    let n = cap.count_pt(pt);
    assert!(
        n >= MIN_PACKETS,
        "{what}: {n} RTP packets with PT {pt} (want >= {MIN_PACKETS}); all: {} packets, PTs {:?}",
        cap.packets.len(),
        cap.packets
            .iter()
            .map(|p| p.payload_type)
            .collect::<std::collections::BTreeSet<_>>()
    );
    assert_eq!(
        cap.ssrcs().len(),
        1,
        "{what}: several SSRCs {:?}",
        cap.ssrcs()
    );
    // Segment-wise: the playout delay of an adaptive jitter buffer may change in a pause.
    let s = segmental_alignment(&speech(), &cap.pcm_f32(), 8000);
    assert!(
        s.ncc >= MIN_NCC,
        "{what}: RTP audio does not match the speech fixture: {s:?}"
    );
    s
}

/// Assert a WAV written by termphone holds the speech fixture (8 kHz, no resampling here).
pub fn assert_speech_wav(path: &Path, what: &str) -> Similarity {
    let (rate, x) = super::read_wav_mono(path).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(rate, 8000, "{what}: {} is {rate} Hz", path.display());
    assert!(
        !super::audio::is_silent(&x, 0.01),
        "{what}: {} is silent ({} samples)",
        path.display(),
        x.len()
    );
    let s = segmental_alignment(&speech(), &x, 8000);
    assert!(
        s.ncc >= MIN_NCC,
        "{what}: {} does not match the speech fixture: {s:?}",
        path.display()
    );
    s
}

/// The recorded WAV of a `serve --record DIR` call: the path of a `recording` event, else the
/// only .wav in DIR. Waits until it is a complete WAV (finalized).
pub fn find_recording(t: &mut Termphone, dir: &Path) -> PathBuf {
    let from_event = t
        .try_wait_event(is_event("recording"), Duration::from_secs(5))
        .and_then(|v| v["path"].as_str().map(PathBuf::from));
    let path = from_event.unwrap_or_else(|| {
        let wavs: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "wav"))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            wavs.len(),
            1,
            "expected one recording in {}: {wavs:?}",
            dir.display()
        );
        wavs[0].clone()
    });
    let ok = wait_until(Duration::from_secs(5), || {
        super::read_wav_mono(&path)
            .ok()
            .filter(|(_, x)| !x.is_empty())
    });
    assert!(
        ok.is_some(),
        "recording {} is not a finished WAV",
        path.display()
    );
    path
}

/// sipp (uac_pcap.xml) calls `termphone serve --play speech --record DIR`; sipp plays the
/// speech pcap and hangs up after 6.5 s. Checks: serve emits incoming/connected/hangupremote,
/// sipp's call passes, the sink got PCMA or PCMU speech from termphone, and the recording
/// holds the speech sipp played.
pub fn serve_answers_sipp_with_audio_both_ways() -> BothWays {
    let sink = RtpSink::bind();
    let rec_dir = super::test_dir();
    let rec = rec_dir.path().display().to_string();
    let speech = speech_path();
    let mut tp = Termphone::builder(&["serve", "--play", &speech, "--record", &rec])
        .dir(rec_dir.clone())
        .spawn();
    let addr = tp.listen_addr();
    let mut sipp = Sipp::uac("uac_pcap.xml", addr)
        .key("rtp_sink_port", sink.port())
        .dir(tp.dir_handle())
        .spawn();
    tp.wait_call_state("incoming", EVENT_WAIT);
    tp.wait_call_state("connected", EVENT_WAIT);
    tp.wait_call_state("hangupremote", CALL_WAIT);
    sipp.expect_success(SIPP_WAIT);
    let cap = sink.finish();
    let answer_pt = if cap.count_pt(8) >= cap.count_pt(0) {
        8
    } else {
        0
    };
    let sent_ncc = assert_speech_rtp(&cap, answer_pt, "termphone serve -> sipp");
    let recording = find_recording(&mut tp, rec_dir.path());
    let received_ncc = assert_speech_wav(&recording, "sipp -> termphone serve (recording)");
    assert_json_only(&mut tp);
    BothWays {
        sent_by_termphone: cap,
        sent_ncc,
        recording,
        received_ncc,
    }
}

/// sipp (uac_pcap.xml) calls `termphone serve --echo`: the speech sipp plays must come back
/// to the sink, so one check covers both directions and the echo path.
pub fn serve_echoes_sipp_audio() -> Similarity {
    let sink = RtpSink::bind();
    let mut tp = Termphone::serve(&["--echo"]);
    let addr = tp.listen_addr();
    let mut sipp = Sipp::uac("uac_pcap.xml", addr)
        .key("rtp_sink_port", sink.port())
        .dir(tp.dir_handle())
        .spawn();
    tp.wait_call_state("connected", EVENT_WAIT);
    tp.wait_call_state("hangupremote", CALL_WAIT);
    sipp.expect_success(SIPP_WAIT);
    let cap = sink.finish();
    let pt = if cap.count_pt(8) >= cap.count_pt(0) {
        8
    } else {
        0
    };
    let s = assert_speech_rtp(&cap, pt, "sipp -> termphone serve --echo -> sink");
    assert_json_only(&mut tp);
    s
}

/// `termphone dial` calls sipp (uas_pcap.xml, answers PCMA) with `--play speech --record
/// FILE --duration 7 [--dtmf DIGITS]`; exit code 0; the sink got PCMA speech (and the RFC 4733
/// digits, PT 101, when `dtmf` is given); the recording holds the speech sipp played.
pub fn dial_sipp_with_audio_both_ways(dtmf: Option<&str>) -> BothWays {
    let sink = RtpSink::bind();
    let mut sipp = Sipp::uas("uas_pcap.xml")
        .key("rtp_sink_port", sink.port())
        .spawn();
    let dir = super::test_dir();
    let rec = dir.path().join("dial-recording.wav");
    let rec_s = rec.display().to_string();
    let uri = sipp.uri("test");
    let speech = speech_path();
    let mut args = vec![
        "dial",
        uri.as_str(),
        "--play",
        speech.as_str(),
        "--record",
        rec_s.as_str(),
        "--duration",
        "7",
    ];
    if let Some(d) = dtmf {
        args.extend(["--dtmf", d]);
    }
    let mut tp = Termphone::builder(&args).dir(dir.clone()).spawn();
    tp.wait_call_state("connected", EVENT_WAIT);
    let code = tp.wait_exit_code(CALL_WAIT);
    assert_eq!(code, 0, "dial exit code\n{}", tp.diagnostics());
    tp.wait_call_state("hanguplocal", Duration::ZERO);
    sipp.expect_success(SIPP_WAIT);
    let cap = sink.finish();
    let sent_ncc = assert_speech_rtp(&cap, 8, "termphone dial -> sipp (PCMA answered)");
    if let Some(d) = dtmf {
        assert_eq!(cap.telephone_events(101), d, "RFC 4733 digits sent by dial");
        assert_rfc4733_events(&cap, 101, d);
    }
    assert_json_only(&mut tp);
    let received_ncc = assert_speech_wav(&rec, "sipp -> termphone dial (recording)");
    BothWays {
        sent_by_termphone: cap,
        sent_ncc,
        recording: rec,
        received_ncc,
    }
}

/// Assert the RFC 4733 events of payload type `pt` are exactly `digits`, one event per digit,
/// in order, each well formed: one event code, the marker bit on its first packet, durations
/// that never decrease, and the end packet sent three times (RFC 4733 §2.5.1.4). Events start at
/// increasing RTP timestamps and do not overlap in time.
pub fn assert_rfc4733_events(cap: &RtpCapture, pt: u8, digits: &str) {
    let events = cap.telephone_event_groups(pt);
    let seen: String = events.iter().map(|e| e.digits.as_str()).collect();
    assert_eq!(seen, digits, "RFC 4733 events (one per digit): {events:#?}");
    for e in &events {
        assert_eq!(e.digits.chars().count(), 1, "one code per event: {e:?}");
        assert!(
            e.first_marker,
            "first packet of an event has the marker bit: {e:?}"
        );
        assert!(
            e.durations.windows(2).all(|w| w[0] <= w[1]),
            "event durations never decrease: {e:?}"
        );
        assert_eq!(e.end_packets, 3, "end packet sent three times: {e:?}");
    }
    for w in events.windows(2) {
        let end_of_first = w[0]
            .timestamp
            .wrapping_add(u32::from(*w[0].durations.iter().max().unwrap_or(&0)));
        assert!(
            w[1].timestamp.wrapping_sub(end_of_first) < u32::MAX / 2,
            "events overlap or go back in time: {:?} then {:?}",
            w[0],
            w[1]
        );
    }
}

/// `termphone dial` to a sipp scenario that rejects (uas_busy.xml: 486, exit 3;
/// uas_decline.xml: 603, exit 4). Checks the exit code, the final event's code, and that
/// sipp got the ACK. Returns the final call event.
pub fn dial_sipp_rejected(scenario: &str, want_exit: i32, want_code: u16) -> Value {
    let mut sipp = Sipp::uas(scenario).spawn();
    let uri = sipp.uri("test");
    let mut tp = Termphone::dial(&[&uri, "--timeout", "20"]);
    let code = tp.wait_exit_code(CALL_WAIT);
    assert_eq!(code, want_exit, "dial exit code\n{}", tp.diagnostics());
    let end = tp.wait_event(
        |v| v["event"] == "call" && v["code"] == want_code,
        Duration::ZERO,
    );
    sipp.expect_success(SIPP_WAIT);
    let ack = sipp.received_request("ACK").expect("sipp got no ACK");
    let invite = sipp.received_request("INVITE").expect("INVITE");
    assert_eq!(
        ack.branch(),
        invite.branch(),
        "ACK for a non-2xx must reuse the INVITE's branch"
    );
    assert_json_only(&mut tp);
    end
}

/// `termphone dial --timeout 3` to sipp uas_ring_forever.xml: termphone must CANCEL (same
/// branch and CSeq number as the INVITE), ACK the 487, and exit 6 (no answer).
pub fn dial_sipp_no_answer_cancels() -> Value {
    let mut sipp = Sipp::uas("uas_ring_forever.xml").spawn();
    let uri = sipp.uri("test");
    let mut tp = Termphone::dial(&[&uri, "--timeout", "3"]);
    tp.wait_call_state("alerting", EVENT_WAIT);
    let code = tp.wait_exit_code(CALL_WAIT);
    assert_eq!(
        code,
        6,
        "dial exit code for no answer\n{}",
        tp.diagnostics()
    );
    sipp.expect_success(SIPP_WAIT);
    let invite = sipp.received_request("INVITE").expect("INVITE");
    let cancel = sipp.received_request("CANCEL").expect("sipp got no CANCEL");
    let ack = sipp
        .received_request("ACK")
        .expect("sipp got no ACK for the 487");
    assert_eq!(cancel.branch(), invite.branch(), "CANCEL branch");
    assert_eq!(
        cancel.cseq().map(|c| c.0),
        invite.cseq().map(|c| c.0),
        "CANCEL CSeq number"
    );
    assert_eq!(ack.branch(), invite.branch(), "ACK (487) branch");
    if let (Some(a), Some(b)) = (invite.at, cancel.at) {
        let waited = b - a;
        assert!(
            (2.9..=4.5).contains(&waited),
            "CANCEL {waited:.3} s after the INVITE, want about 3 s (--timeout 3)"
        );
    } else {
        panic!("no timestamps in sipp's trace: {invite:?} {cancel:?}");
    }
    assert_json_only(&mut tp);
    let events = tp.events().to_vec();
    events
        .into_iter()
        .rev()
        .find(|v| v["event"] == "call")
        .expect("a final call event")
}

/// sipp (uac_reject.xml) calls `termphone serve --reject CODE`: sipp must get CODE as its only
/// final response, and serve must end the call `hanguplocal` with that code. Returns that event.
pub fn serve_rejects_sipp(code: u16) -> Value {
    let code_s = code.to_string();
    let mut tp = Termphone::serve(&["--reject", &code_s]);
    let addr = tp.listen_addr();
    let mut sipp = Sipp::uac("uac_reject.xml", addr)
        .dir(tp.dir_handle())
        .spawn();
    tp.wait_call_state("incoming", EVENT_WAIT);
    sipp.expect_success(SIPP_WAIT);
    assert!(
        sipp.logs().contains(&format!("final {code}")),
        "sipp did not get {code}: {}",
        sipp.logs()
    );
    let end = tp.wait_event(
        |v| v["event"] == "call" && v["state"] != "incoming",
        EVENT_WAIT,
    );
    assert_eq!(end["state"], "hanguplocal", "serve's end event: {end}");
    assert_eq!(end["code"], code, "serve's end event: {end}");
    let finals: Vec<u16> = sipp
        .traced()
        .iter()
        .filter(|m| !m.sent)
        .filter_map(|m| m.status())
        .filter(|&c| c >= 200)
        .collect();
    assert_eq!(finals, vec![code], "final responses sipp received");
    assert_json_only(&mut tp);
    end
}

/// sipp (uac_cancel.xml) calls `termphone serve --answer-delay 30` and cancels after the 180:
/// serve must answer the CANCEL 200, the INVITE 487, and report the call as missed.
pub fn serve_missed_when_sipp_cancels() -> Value {
    let mut tp = Termphone::serve(&["--answer-delay", "30"]);
    let addr = tp.listen_addr();
    let mut sipp = Sipp::uac("uac_cancel.xml", addr)
        .dir(tp.dir_handle())
        .spawn();
    tp.wait_call_state("incoming", EVENT_WAIT);
    let missed = tp.wait_event(is_call_state("missed"), CALL_WAIT);
    sipp.expect_success(SIPP_WAIT);
    let traced = sipp.traced();
    let got = |code: u16, method: &str| {
        traced
            .iter()
            .any(|m| !m.sent && m.status() == Some(code) && m.cseq().is_some_and(|c| c.1 == method))
    };
    assert!(got(200, "CANCEL"), "no 200 for the CANCEL");
    assert!(got(487, "INVITE"), "no 487 for the INVITE");
    assert!(
        !traced.iter().any(|m| !m.sent
            && m.status() == Some(200)
            && m.cseq().is_some_and(|c| c.1 == "INVITE")),
        "the cancelled INVITE was answered 200"
    );
    let states: Vec<Value> = tp
        .events()
        .iter()
        .filter(|v| v["event"] == "call")
        .map(|v| v["state"].clone())
        .collect();
    assert_eq!(
        states,
        vec![Value::from("incoming"), Value::from("missed")],
        "serve's call states"
    );
    assert_json_only(&mut tp);
    missed
}

/// sipp (uac_dtmf.xml) calls `termphone serve` and sends RFC 4733 digits 1 2 3: serve must
/// emit three `dtmf` events with those digits, in order. Returns the digits seen.
pub fn serve_receives_sipp_dtmf() -> String {
    let sink = RtpSink::bind();
    let mut tp = Termphone::serve(&[]);
    let addr = tp.listen_addr();
    let mut sipp = Sipp::uac("uac_dtmf.xml", addr)
        .key("rtp_sink_port", sink.port())
        .dir(tp.dir_handle())
        .spawn();
    let connected = tp.wait_call_state("connected", EVENT_WAIT);
    tp.wait_call_state("hangupremote", CALL_WAIT);
    sipp.expect_success(SIPP_WAIT);
    let digits: String = tp
        .events()
        .iter()
        .filter(|v| v["event"] == "dtmf" && v["call"] == connected["call"])
        .filter_map(|v| v["digit"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(digits, "123", "dtmf events\n{}", tp.diagnostics());
    assert_json_only(&mut tp);
    digits
}

/// `termphone dial` to sipp uas_cancel.xml, stopped with SIGTERM while it rings: a graceful
/// shutdown must CANCEL the call (INVITE's branch), take the 487 and ACK it before exiting.
pub fn dial_stopped_while_ringing_cancels() {
    let mut sipp = Sipp::uas("uas_cancel.xml").spawn();
    let uri = sipp.uri("test");
    let mut tp = Termphone::dial(&[&uri, "--timeout", "30"]);
    tp.wait_call_state("alerting", EVENT_WAIT);
    tp.stop();
    sipp.expect_success(SIPP_WAIT);
    let invite = sipp.received_request("INVITE").expect("INVITE");
    let cancel = sipp.received_request("CANCEL").expect("sipp got no CANCEL");
    assert_eq!(cancel.branch(), invite.branch(), "CANCEL branch");
    assert!(sipp.received_request("ACK").is_some(), "no ACK for the 487");
}
