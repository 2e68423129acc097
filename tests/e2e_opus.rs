//! End-to-end Opus: two real termphone processes on 127.0.0.1 negotiate Opus by default (RFC
//! 7587 SDP: `opus/48000/2` with its fmtp, telephone-event at 48000), speech goes through the
//! echo and comes back in a 48 kHz recording; `--codec PCMU` still gives G.711.

mod support;

use std::time::Duration;

use support::{compare_wavs, data_file, is_event, Termphone};

const WAIT: Duration = Duration::from_secs(20);
/// The bar for "the recording holds the speech" (G.711).
const MIN_NCC: f64 = 0.9;
/// The bar for speech through Opus both ways. Opus is a perceptual codec: it keeps how speech
/// sounds (PESQ WB 3.7 at 32 kbit/s against 2.9 for G.722) but not the exact waveform, and
/// NCC measures the waveform. Measured with support::compare_wavs on tests/data/speech-8k.wav:
/// one Opus encode/decode 0.911, two in tandem 0.894 offline (0.901 even at 64 kbit/s, so it
/// is not coding noise), and through this echo call (two passes, jitter buffer, recording)
/// 0.862 to 0.875.
const MIN_NCC_OPUS: f64 = 0.8;

fn speech() -> String {
    data_file("speech-8k.wav").display().to_string()
}

/// The codecs a process reported in its stats events.
fn codecs_used(t: &mut Termphone) -> Vec<String> {
    t.events()
        .iter()
        .filter(|e| e["event"] == "stats")
        .map(|e| e["stats"]["codec"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A call from `dial` to `serve --echo` playing the speech and recording what comes back.
fn echo_call(srv: &mut Termphone, uri: &str, extra: &[&str], name: &str) -> Termphone {
    let back = srv.dir().join(name);
    let back = back.display().to_string();
    let speech = speech();
    let mut args = vec!["dial", uri];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--play", &speech, "--record", &back, "--duration", "5"]);
    let mut dial = Termphone::builder(&args).dir(srv.dir_handle()).spawn();
    assert_eq!(dial.wait_exit_code(WAIT), 0, "{}", dial.diagnostics());
    dial
}

#[test]
fn opus_by_default_and_pcmu_on_request() {
    let mut srv = Termphone::serve(&["--echo"]);
    let uri = srv.sip_uri("echo");

    // Default codec lists on both sides: Opus.
    let mut dial = echo_call(&mut srv, &uri, &[], "back-opus.wav");
    let codecs = codecs_used(&mut dial);
    assert!(
        !codecs.is_empty() && codecs.iter().all(|c| c == "opus"),
        "{codecs:?}"
    );
    let trace = dial.stderr();
    // our offer: opus first on 111 with its fmtp, telephone-event at both clock rates
    assert!(
        trace.contains("m=audio") && trace.contains("RTP/AVP 111 9 0 8 101 96"),
        "{trace}"
    );
    assert!(trace.contains("a=rtpmap:111 opus/48000/2"), "{trace}");
    assert!(
        trace.contains("a=fmtp:111 useinbandfec=1;maxaveragebitrate=32000;stereo=0;sprop-stereo=0"),
        "{trace}"
    );
    // the answer: opus and the 48 kHz telephone-event only
    assert!(trace.contains("RTP/AVP 111 96\r\n"), "{trace}");
    assert!(
        trace.contains("a=rtpmap:96 telephone-event/48000"),
        "{trace}"
    );
    let back = srv.dir().join("back-opus.wav");
    let (rate, samples) = support::read_wav_mono(&back).unwrap();
    assert_eq!(rate, 48_000, "an Opus call records at 48 kHz");
    assert!(samples.len() >= 4 * 48_000, "{} samples", samples.len());
    let sim = compare_wavs(&data_file("speech-8k.wav"), &back).unwrap();
    eprintln!("speech through Opus both ways: {sim:?}");
    assert!(
        sim.ncc >= MIN_NCC_OPUS,
        "speech through Opus both ways: {sim:?}"
    );
    // no loss on loopback: nothing concealed, nothing undecodable
    let last = dial
        .events()
        .iter()
        .rev()
        .find(|e| e["event"] == "stats")
        .cloned()
        .expect("stats");
    assert_eq!(last["stats"]["bad_packets"], 0, "{last}");

    // --codec PCMU: G.711 as before, recorded at 8 kHz.
    let mut dial = echo_call(&mut srv, &uri, &["--codec", "PCMU"], "back-pcmu.wav");
    let codecs = codecs_used(&mut dial);
    assert!(
        !codecs.is_empty() && codecs.iter().all(|c| c == "PCMU"),
        "{codecs:?}"
    );
    assert!(dial.stderr().contains("RTP/AVP 0 101\r\n"), "PCMU only");
    let back = srv.dir().join("back-pcmu.wav");
    let (rate, _) = support::read_wav_mono(&back).unwrap();
    assert_eq!(rate, 8000);
    let sim = compare_wavs(&data_file("speech-8k.wav"), &back).unwrap();
    eprintln!("speech through PCMU both ways: {sim:?}");
    assert!(sim.ncc >= MIN_NCC, "speech through PCMU both ways: {sim:?}");
    srv.stop();
}

/// DTMF on an Opus call: RFC 4733 events at the 48 kHz clock reach the other termphone.
#[test]
fn dtmf_on_an_opus_call() {
    let mut srv = Termphone::serve(&["--echo"]);
    let uri = srv.sip_uri("echo");
    let mut dial = Termphone::builder(&["dial", &uri, "--dtmf", "159#", "--duration", "3"])
        .dir(srv.dir_handle())
        .spawn();
    assert_eq!(dial.wait_exit_code(WAIT), 0, "{}", dial.diagnostics());
    assert!(codecs_used(&mut dial).iter().all(|c| c == "opus"));
    let mut digits = String::new();
    for _ in 0..4 {
        let ev = srv.wait_event(is_event("dtmf"), WAIT);
        digits.push_str(ev["digit"].as_str().unwrap_or_default());
    }
    assert_eq!(digits, "159#");
    srv.stop();
}
