//! End-to-end: two real termphone processes on 127.0.0.1 (`serve` answers, `dial` calls), with
//! real UDP sockets, real RTP and WAV files. Audio is checked by normalized cross-correlation
//! against the source after alignment, never by file size.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{compare_wavs, data_file, is_call_state, is_event, Termphone};

const WAIT: Duration = Duration::from_secs(20);
/// The bar for "the recording holds the speech".
const MIN_NCC: f64 = 0.9;
/// The bar for speech that went through Opus (the default codec): Opus keeps how speech
/// sounds, not its waveform, which NCC measures — one encode/decode scores 0.911 on
/// speech-8k.wav, two in tandem 0.894, an echo call 0.86 to 0.875 (tests/e2e_opus.rs).
const MIN_NCC_OPUS: f64 = 0.8;

/// The bar for speech through `codec` (as the stats name it).
fn min_ncc(codec: &str) -> f64 {
    if codec.eq_ignore_ascii_case("opus") {
        MIN_NCC_OPUS
    } else {
        MIN_NCC
    }
}

/// The codec of a process's last stats event.
fn call_codec(t: &mut Termphone) -> String {
    codecs_used(t).pop().unwrap_or_default()
}

fn speech() -> String {
    data_file("speech-8k.wav").display().to_string()
}

/// The call states a process reported, in order.
fn states(t: &mut Termphone) -> Vec<String> {
    t.events()
        .iter()
        .filter(|e| e["event"] == "call")
        .map(|e| e["state"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn serve(args: &[&str]) -> (Termphone, String) {
    let mut s = Termphone::serve(args);
    let uri = s.sip_uri("echo");
    (s, uri)
}

#[test]
fn echo_call_returns_the_speech_and_exits_0() {
    let (mut srv, uri) = serve(&["--echo"]);
    let back = srv.dir().join("back.wav");
    let back_s = back.display().to_string();
    let mut dial = Termphone::builder(&[
        "dial",
        &uri,
        "--play",
        &speech(),
        "--record",
        &back_s,
        "--duration",
        "5",
    ])
    .dir(srv.dir_handle())
    .spawn();
    let code = dial.wait_exit_code(WAIT);
    assert_eq!(code, 0, "{}", dial.diagnostics());
    assert_eq!(
        states(&mut dial),
        ["dialing", "alerting", "connected", "hanguplocal"]
    );
    let sim = compare_wavs(&data_file("speech-8k.wav"), &back).expect("compare");
    let codec = call_codec(&mut dial);
    assert!(
        sim.ncc >= min_ncc(&codec),
        "echoed speech through {codec} correlates only {:?}",
        sim
    );
    srv.wait_call_state("hangupremote", WAIT);
}

#[test]
fn audio_flows_both_ways_and_serve_records_the_caller() {
    let dir = support::test_dir();
    let rec_dir = dir.path().join("rec");
    let mut srv = Termphone::builder(&[
        "serve",
        "--play",
        &speech(),
        "--record",
        &rec_dir.display().to_string(),
    ])
    .dir(dir.clone())
    .spawn();
    let uri = srv.sip_uri("bob");
    // The caller plays a tone, so each direction carries a different, recognisable signal.
    let tone = srv.dir().join("tone.wav");
    let samples: Vec<i16> = (0..8000 * 4)
        .map(|n| ((n as f64 * 2.0 * std::f64::consts::PI * 697.0 / 8000.0).sin() * 12000.0) as i16)
        .collect();
    support::audio::write_wav_i16(&tone, 8000, &samples).unwrap();
    let back = srv.dir().join("from-serve.wav");
    let mut dial = Termphone::builder(&[
        "dial",
        &uri,
        "--play",
        &tone.display().to_string(),
        "--record",
        &back.display().to_string(),
        "--duration",
        "6",
    ])
    .dir(srv.dir_handle())
    .spawn();
    assert_eq!(dial.wait_exit_code(WAIT), 0, "{}", dial.diagnostics());
    // serve -> dial: the speech serve played is in dial's recording.
    let sim = compare_wavs(&data_file("speech-8k.wav"), &back).unwrap();
    let codec = call_codec(&mut dial);
    assert!(
        sim.ncc >= min_ncc(&codec),
        "serve->dial speech through {codec} correlates only {sim:?}"
    );
    // dial -> serve: serve's recording holds the tone.
    let rec = srv.wait_event(is_event("recording"), WAIT);
    let path = rec["path"].as_str().unwrap().to_string();
    srv.wait_call_state("hangupremote", WAIT);
    srv.stop();
    let sim = compare_wavs(&tone, Path::new(&path)).unwrap();
    assert!(
        sim.ncc >= min_ncc(&codec),
        "dial->serve tone through {codec} correlates only {sim:?}"
    );
}

#[test]
fn busy_and_decline_give_their_exit_codes() {
    for (code, exit) in [("486", 3), ("603", 4)] {
        let (mut srv, uri) = serve(&["--reject", code]);
        let mut dial = Termphone::builder(&["dial", &uri])
            .dir(srv.dir_handle())
            .spawn();
        assert_eq!(dial.wait_exit_code(WAIT), exit, "{}", dial.diagnostics());
        let end = dial.wait_call_state("otherfailure", WAIT);
        assert_eq!(end["code"].to_string(), code);
        let ended = srv.wait_call_state("hanguplocal", WAIT);
        assert_eq!(ended["code"].to_string(), code);
    }
}

#[test]
fn cancel_while_ringing_is_no_answer_for_the_caller_and_missed_for_the_callee() {
    let (mut srv, uri) = serve(&["--answer-delay", "30"]);
    let started = Instant::now();
    let mut dial = Termphone::builder(&["dial", &uri, "--timeout", "1.5"])
        .dir(srv.dir_handle())
        .spawn();
    assert_eq!(dial.wait_exit_code(WAIT), 6, "{}", dial.diagnostics());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "CANCEL ended it promptly"
    );
    let end = dial.wait_call_state("hanguplocal", WAIT);
    assert_eq!(end["code"], 487);
    let missed = srv.wait_call_state("missed", WAIT);
    assert_eq!(missed["code"], 487);
    let trace = dial.stderr();
    assert!(trace.contains("CANCEL sip:"), "CANCEL on the wire");
    assert!(
        trace.contains("SIP/2.0 487 Request Terminated"),
        "487 came back"
    );
}

#[test]
fn callee_hangs_up_first() {
    let (mut srv, uri) = serve(&["--echo", "--hangup-after", "1"]);
    let started = Instant::now();
    let mut dial = Termphone::builder(&["dial", &uri, "--duration", "20"])
        .dir(srv.dir_handle())
        .spawn();
    assert_eq!(dial.wait_exit_code(WAIT), 0, "{}", dial.diagnostics());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "ended by the callee, not by --duration"
    );
    assert_eq!(
        states(&mut dial).last().map(String::as_str),
        Some("hangupremote")
    );
    srv.wait_call_state("hanguplocal", WAIT);
}

/// `--hangup-after` counts from the answer however the call was answered: here by
/// `termphone ctl accept` while serve waits out a long `--answer-delay`.
#[test]
fn hangup_after_applies_to_a_call_accepted_by_ctl() {
    let mut srv = Termphone::serve(&["--echo", "--answer-delay", "3600", "--hangup-after", "1"]);
    let uri = srv.sip_uri("echo");
    let sock = srv.wait_event(|e| e["event"] == "control", WAIT)["path"]
        .as_str()
        .unwrap()
        .to_string();
    let mut dial = Termphone::builder(&["dial", &uri, "--duration", "20"])
        .dir(srv.dir_handle())
        .spawn();
    let incoming = srv.wait_call_state("incoming", WAIT);
    let call = incoming["call"].as_str().unwrap().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_termphone"))
        .args(["ctl", "--socket", &sock, "accept", &call])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    srv.wait_call_state("connected", WAIT);
    srv.wait_call_state("hanguplocal", WAIT);
    assert_eq!(dial.wait_exit_code(WAIT), 0, "{}", dial.diagnostics());
    assert_eq!(
        states(&mut dial).last().map(String::as_str),
        Some("hangupremote")
    );
}

#[test]
fn dtmf_digits_arrive_exactly_once_in_order() {
    let (mut srv, uri) = serve(&["--echo"]);
    let mut dial = Termphone::builder(&["dial", &uri, "--dtmf", "123#*0", "--duration", "3"])
        .dir(srv.dir_handle())
        .spawn();
    assert_eq!(dial.wait_exit_code(WAIT), 0, "{}", dial.diagnostics());
    srv.wait_call_state("hangupremote", WAIT);
    let digits: String = srv
        .events()
        .iter()
        .filter(|e| e["event"] == "dtmf")
        .map(|e| e["digit"].as_str().unwrap_or("?").to_string())
        .collect();
    assert_eq!(digits, "123#*0");
}

#[test]
fn serve_stops_on_sigterm_with_bye_and_a_finished_recording() {
    let dir = support::test_dir();
    let rec_dir = dir.path().join("rec");
    let mut srv = Termphone::builder(&[
        "serve",
        "--echo",
        "--record",
        &rec_dir.display().to_string(),
    ])
    .dir(dir)
    .spawn();
    let uri = srv.sip_uri("echo");
    let mut dial = Termphone::builder(&["dial", &uri, "--play", &speech(), "--duration", "30"])
        .dir(srv.dir_handle())
        .spawn();
    srv.wait_call_state("connected", WAIT);
    let rec = srv.wait_event(is_event("recording"), WAIT);
    thread::sleep(Duration::from_secs(6)); // the whole speech file
                                           // SIGTERM to serve's own PID.
    unsafe { libc::kill(srv.pid() as i32, libc::SIGTERM) };
    let status = srv.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{}", srv.diagnostics());
    assert_eq!(dial.wait_exit_code(WAIT), 0, "{}", dial.diagnostics());
    assert_eq!(
        states(&mut dial).last().map(String::as_str),
        Some("hangupremote")
    );
    let sim = compare_wavs(
        &data_file("speech-8k.wav"),
        Path::new(rec["path"].as_str().unwrap()),
    )
    .unwrap();
    let codec = call_codec(&mut dial);
    assert!(
        sim.ncc >= min_ncc(&codec),
        "recording closed properly and holds the caller ({codec}): {sim:?}"
    );
}

#[test]
fn missing_wav_is_a_clear_error_before_any_call() {
    let (mut srv, uri) = serve(&["--echo"]);
    let mut dial = Termphone::builder(&["dial", &uri, "--play", "/nonexistent/speech.wav"])
        .dir(srv.dir_handle())
        .spawn();
    assert_eq!(dial.wait_exit_code(WAIT), 1);
    let err = dial.stderr();
    assert!(
        err.contains("/nonexistent/speech.wav"),
        "error names the file: {err}"
    );
    assert!(!err.contains("INVITE"), "no INVITE was sent: {err}");
    assert!(srv
        .try_wait_event(is_call_state("incoming"), Duration::from_millis(500))
        .is_none());

    let mut s2 = Termphone::builder(&["serve", "--play", "/nonexistent/greeting.wav"]).spawn();
    assert_eq!(s2.wait_exit_code(WAIT), 1);
    assert!(s2.stderr().contains("/nonexistent/greeting.wav"));
}

#[test]
fn malformed_sip_gets_400_or_is_dropped_and_serve_keeps_working() {
    let (mut srv, uri) = serve(&["--echo"]);
    let addr = srv.listen_addr();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let me = sock.local_addr().unwrap();
    // Content-Length larger than the datagram: a request we can still answer with 400.
    let bad_len = format!(
        "INVITE sip:echo@{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKbadlen\r\nFrom: <sip:x@{me}>;tag=1\r\nTo: <sip:echo@{addr}>\r\nCall-ID: badlen\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 5000\r\n\r\nv=0\r\n"
    );
    sock.send_to(bad_len.as_bytes(), addr).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = sock
        .recv_from(&mut buf)
        .expect("a 400 for a readable bad request");
    let resp = String::from_utf8_lossy(&buf[..n]);
    assert!(resp.starts_with("SIP/2.0 400"), "{resp}");
    // Missing Call-ID and CSeq.
    let missing = format!("OPTIONS sip:echo@{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKmiss\r\nFrom: <sip:x@{me}>;tag=1\r\nTo: <sip:echo@{addr}>\r\n\r\n");
    sock.send_to(missing.as_bytes(), addr).unwrap();
    let (n, _) = sock.recv_from(&mut buf).expect("a 400 for missing headers");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 400"));
    // Binary garbage and truncated messages: dropped, no answer, no crash.
    for junk in [
        &b"\x00\x01\x02\x03garbage\xff\xfe"[..],
        b"INVITE sip:",
        b"SIP/2.0 200",
        &[0x80; 1400],
    ] {
        sock.send_to(junk, addr).unwrap();
    }
    // Still answers a real call.
    let mut dial = Termphone::builder(&["dial", &uri, "--duration", "1"])
        .dir(srv.dir_handle())
        .spawn();
    assert_eq!(dial.wait_exit_code(WAIT), 0, "{}", dial.diagnostics());
    assert!(srv.try_exit().is_none(), "serve is still running");
}

/// A UDP relay between caller and callee that drops the first datagram whose first line
/// starts with each of the given prefixes (once each).
struct LossyRelay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<Vec<String>>>,
}

impl LossyRelay {
    fn start(callee: SocketAddr, drop_first: &[&str]) -> LossyRelay {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        front
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        back.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = front.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let mut to_drop: Vec<String> = drop_first.iter().map(|s| s.to_string()).collect();
        let handle = thread::spawn(move || {
            let mut caller: Option<SocketAddr> = None;
            let mut dropped = Vec::new();
            let mut buf = [0u8; 65535];
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
                let mut forward =
                    |data: &[u8], out: &UdpSocket, dest: SocketAddr, dropped: &mut Vec<String>| {
                        let first = String::from_utf8_lossy(data)
                            .lines()
                            .next()
                            .unwrap_or_default()
                            .to_string();
                        if let Some(i) = to_drop.iter().position(|p| first.starts_with(p.as_str()))
                        {
                            to_drop.remove(i);
                            dropped.push(first);
                            return;
                        }
                        let _ = out.send_to(data, dest);
                    };
                if let Ok((n, src)) = front.recv_from(&mut buf) {
                    caller = Some(src);
                    forward(&buf[..n], &back, callee, &mut dropped);
                }
                if let Ok((n, _)) = back.recv_from(&mut buf) {
                    if let Some(c) = caller {
                        forward(&buf[..n], &front, c, &mut dropped);
                    }
                }
            }
            dropped
        });
        LossyRelay {
            addr,
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for LossyRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn lost_first_invite_and_first_200_still_complete_the_call() {
    let (mut srv, _) = serve(&["--echo"]);
    let relay = LossyRelay::start(srv.listen_addr(), &["INVITE ", "SIP/2.0 200"]);
    let uri = format!("sip:echo@{}", relay.addr);
    let back = srv.dir().join("back.wav");
    let mut dial = Termphone::builder(&[
        "dial",
        &uri,
        "--play",
        &speech(),
        "--record",
        &back.display().to_string(),
        "--duration",
        "5",
    ])
    .dir(srv.dir_handle())
    .spawn();
    assert_eq!(dial.wait_exit_code(WAIT), 0, "{}", dial.diagnostics());
    let dropped = relay.finish();
    assert_eq!(dropped.len(), 2, "both losses happened: {dropped:?}");
    let incoming = srv
        .events()
        .iter()
        .filter(|e| is_call_state("incoming")(e))
        .count();
    assert_eq!(incoming, 1, "the retransmitted INVITE made one call");
    let invites = dial.stderr().matches("\nINVITE sip:").count();
    assert!(invites >= 2, "timer A retransmitted the INVITE");
    let sim = compare_wavs(&data_file("speech-8k.wav"), &back).unwrap();
    let stats: Vec<Value> = [dial.events(), srv.events()]
        .iter()
        .flat_map(|evs| evs.iter().filter(|e| e["event"] == "stats").cloned())
        .collect();
    let codec = call_codec(&mut dial);
    assert!(sim.ncc >= min_ncc(&codec), "{codec}: {sim:?} {stats:?}");
}

#[test]
fn bad_target_and_bad_dtmf_are_usage_errors() {
    let mut d = Termphone::builder(&["dial", "sip:"]).spawn();
    assert_eq!(d.wait_exit_code(WAIT), 1, "{}", d.diagnostics());
    let mut d = Termphone::builder(&["dial", "sip:x@127.0.0.1:9", "--dtmf", "12x"]).spawn();
    assert_eq!(d.wait_exit_code(WAIT), 1);
    assert!(d.stderr().contains("DTMF"));
    let ev: Vec<Value> = d.events().to_vec();
    assert!(
        !ev.iter().any(|e| e["event"] == "call"),
        "no call placed: {ev:?}"
    );
}

#[test]
fn the_answerers_configured_codec_order_decides() {
    let dir = support::test_dir();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        "[[account]]\nname = \"local\"\nuser = \"echo\"\ncodecs = [\"PCMA\", \"PCMU\"]\n",
    )
    .unwrap();
    let mut srv = Termphone::builder(&["serve", "--echo"])
        .global("--config")
        .global(cfg.display().to_string())
        .dir(dir.clone())
        .spawn();
    let uri = srv.sip_uri("echo");
    // The caller offers opus first (its default); the answerer prefers PCMA.
    let mut dial = Termphone::builder(&["dial", &uri, "--duration", "1"])
        .dir(dir)
        .spawn();
    assert_eq!(dial.wait_exit_code(WAIT), 0, "{}", dial.diagnostics());
    let codecs = codecs_used(&mut dial);
    assert!(
        !codecs.is_empty() && codecs.iter().all(|c| c == "PCMA"),
        "{codecs:?}"
    );
    assert!(
        dial.stderr().contains("m=audio") && dial.stderr().contains("RTP/AVP 8 101"),
        "the answer names PCMA only"
    );
}

/// The codecs a process reported in its stats events.
fn codecs_used(t: &mut Termphone) -> Vec<String> {
    t.events()
        .iter()
        .filter(|e| e["event"] == "stats")
        .map(|e| e["stats"]["codec"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Two termphones talk G.722 when the caller offers it first (`--codec G722 --codec PCMU`;
/// Opus comes first by default, see tests/e2e_opus.rs): the offer lists G722/8000 (the RFC
/// 3551 clock quirk), the recording is 16 kHz and holds the echoed speech. `--codec` narrows
/// and orders the list; an unknown name is a usage error.
#[test]
fn g722_and_codec_chosen_on_the_command_line() {
    let (srv, uri) = serve(&["--echo"]);
    let back = srv.dir().join("back-g722.wav");
    let mut dial = Termphone::builder(&[
        "dial",
        &uri,
        "--codec",
        "G722",
        "--codec",
        "PCMU",
        "--play",
        &speech(),
        "--record",
        &back.display().to_string(),
        "--duration",
        "5",
    ])
    .dir(srv.dir_handle())
    .spawn();
    assert_eq!(dial.wait_exit_code(WAIT), 0, "{}", dial.diagnostics());
    let codecs = codecs_used(&mut dial);
    assert!(
        !codecs.is_empty() && codecs.iter().all(|c| c == "G722"),
        "{codecs:?}"
    );
    let trace = dial.stderr();
    assert!(
        trace.contains("a=rtpmap:9 G722/8000"),
        "G.722's RTP clock is 8000"
    );
    let (rate, _) = support::read_wav_mono(&back).unwrap();
    assert_eq!(rate, 16000, "a wide-band call records at 16 kHz");
    let sim = compare_wavs(&data_file("speech-8k.wav"), &back).unwrap();
    assert!(
        sim.ncc >= MIN_NCC,
        "speech through G.722 both ways: {sim:?}"
    );

    // --codec: only PCMA offered, so PCMA it is.
    let mut dial = Termphone::builder(&["dial", &uri, "--codec", "pcma", "--duration", "1"])
        .dir(srv.dir_handle())
        .spawn();
    assert_eq!(dial.wait_exit_code(WAIT), 0, "{}", dial.diagnostics());
    assert!(codecs_used(&mut dial).iter().all(|c| c == "PCMA"));
    assert!(
        dial.stderr().contains("RTP/AVP 8 101"),
        "offer has PCMA only"
    );

    let mut bad = Termphone::builder(&["dial", &uri, "--codec", "G729"])
        .dir(srv.dir_handle())
        .spawn();
    assert_eq!(bad.wait_exit_code(WAIT), 2);
    assert!(
        bad.stderr().contains("unknown codec \"G729\""),
        "{}",
        bad.stderr()
    );
}

/// RTCP between two termphones: both offer and answer `a=rtcp-mux`, reports flow on the RTP
/// port, and the final stats carry the round-trip time, the peer's view of our loss and an
/// E-model MOS.
#[test]
fn rtcp_reports_give_rtt_and_mos() {
    let (mut srv, uri) = serve(&["--echo"]);
    // 12 s: the second report of either side comes at most 1.03..3.08 s + 2.05..6.16 s in
    // (RFC 3550 A.7 with a 5 s minimum), so each side has one about its stream by then.
    let mut dial = Termphone::builder(&["dial", &uri, "--play", &speech(), "--duration", "12"])
        .dir(srv.dir_handle())
        .spawn();
    assert_eq!(dial.wait_exit_code(WAIT), 0, "{}", dial.diagnostics());
    srv.wait_call_state("hangupremote", WAIT);
    let trace = dial.stderr();
    assert_eq!(trace.matches("a=rtcp-mux").count(), 2, "offer and answer");
    for t in [&mut dial, &mut srv] {
        let last = t
            .events()
            .iter()
            .rev()
            .find(|e| e["event"] == "stats")
            .cloned()
            .expect("final stats");
        let s = &last["stats"];
        let rtt = s["rtt_ms"].as_f64().unwrap_or(-1.0);
        assert!((0.0..50.0).contains(&rtt), "loopback round trip: {last}");
        assert_eq!(s["remote_loss_pct"].as_f64(), Some(0.0), "{last}");
        let mos = s["mos"].as_f64().unwrap_or(0.0);
        assert!(mos > 4.0, "clean call: {last}");
        // The end-of-call summary: after the last stats, before the final state, the same
        // counters, and figures gathered over the whole call.
        let events = t.events().to_vec();
        let at = |name: &str| events.iter().rposition(|e| e["event"] == name);
        let (stats_at, summary_at) = (at("stats").unwrap(), at("summary").expect("summary"));
        let end_at = events.iter().rposition(|e| e["event"] == "call").unwrap();
        assert!(stats_at < summary_at && summary_at < end_at, "{events:?}");
        let sum = &events[summary_at]["summary"];
        for k in ["codec", "packets_sent", "packets_received", "lost"] {
            assert_eq!(sum[k], s[k], "{k}: {sum} vs {s}");
        }
        assert_eq!(sum["loss_pct"].as_f64(), Some(0.0), "{sum}");
        let media_s = sum["media_s"].as_f64().unwrap_or(0.0);
        assert!((11.0..13.5).contains(&media_s), "a 12 s call: {sum}");
        let rtt = sum["rtt_avg_ms"].as_f64().unwrap_or(-1.0);
        let rtt_max = sum["rtt_max_ms"].as_f64().unwrap_or(-1.0);
        assert!((0.0..50.0).contains(&rtt) && rtt <= rtt_max, "{sum}");
        let (avg, min) = (sum["mos_avg"].as_f64(), sum["mos_min"].as_f64());
        assert!(
            avg.is_some_and(|a| a > 4.0) && min.is_some_and(|m| m > 4.0 && m <= avg.unwrap()),
            "{sum}"
        );
        assert!(
            sum["jitter_max_ms"].as_f64() >= sum["jitter_avg_ms"].as_f64(),
            "{sum}"
        );
    }
}

#[test]
fn levels_are_reported_five_times_a_second_when_asked() {
    let (mut srv, uri) = serve(&["--echo"]);
    // 6 s: the speech (5 s), then a second of silence.
    let mut dial = Termphone::builder(&[
        "dial",
        &uri,
        "--play",
        &speech(),
        "--duration",
        "6",
        "--levels",
    ])
    .dir(srv.dir_handle())
    .spawn();
    assert_eq!(dial.wait_exit_code(WAIT), 0, "{}", dial.diagnostics());
    srv.wait_call_state("hangupremote", WAIT);
    let levels: Vec<Value> = dial
        .events()
        .iter()
        .filter(|e| e["event"] == "levels")
        .cloned()
        .collect();
    // 6 s at one every 200 ms: about 30.
    assert!(
        (25..=35).contains(&levels.len()),
        "{} levels events",
        levels.len()
    );
    let db = |e: &Value, dir: &str, k: &str| e[dir][k].as_f64().unwrap();
    let loudest = |dir: &str| {
        levels
            .iter()
            .map(|e| db(e, dir, "rms_dbfs"))
            .fold(f64::MIN, f64::max)
    };
    // Speech goes out, and comes back (echo) a little later.
    assert!(loudest("tx") > -35.0, "speech sent: {levels:?}");
    assert!(loudest("rx") > -40.0, "speech heard: {levels:?}");
    for e in &levels {
        assert!(db(e, "tx", "peak_dbfs") >= db(e, "tx", "rms_dbfs"), "{e}");
    }
    // After the file: silence is sent, read as the floor.
    let last = levels.last().unwrap();
    assert_eq!(db(last, "tx", "rms_dbfs"), -96.0, "{last}");
    // Without --levels, none.
    assert!(!srv.events().iter().any(|e| e["event"] == "levels"));
}
