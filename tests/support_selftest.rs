//! Tests of the test support itself (tests/support/) and of the peer scenarios in tests/sipp/,
//! run sipp against sipp, so both are known good before termphone can make a call.

mod support;

use std::time::{Duration, Instant};
use support::audio::{
    alaw_decode, best_alignment, detect_dtmf, detect_tone, i16_to_f32, peak, rms_dbfs,
    segmental_alignment, sine, tone_ratio, ulaw_decode,
};
use support::rtp::{parse_rtp, read_pcap_rtp};
use support::sipp::sipp_available;
use support::{data_file, RtpSink, Sipp};

/// Deterministic white-ish noise in [-amp, amp] (xorshift), for tests.
fn noise(seed: u64, n: usize, amp: f32) -> Vec<f32> {
    let mut x = seed.max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * amp
        })
        .collect()
}

fn speech() -> Vec<f32> {
    let (rate, s) = support::read_wav_mono(&data_file("speech-8k.wav")).expect("fixture");
    assert_eq!(rate, 8000);
    s
}

// ---------------------------------------------------------------- correlation

#[test]
fn ncc_of_shifted_copy_is_one_with_the_right_lag() {
    let a = speech();
    let mut b = vec![0.0f32; 1234];
    b.extend(a.iter().map(|v| v * 0.5));
    b.extend(vec![0.0f32; 777]);
    let t = Instant::now();
    let s = best_alignment(&a, &b);
    assert!(s.ncc > 0.999, "{s:?}");
    assert_eq!(s.lag, 1234);
    // and the other way round
    let s = best_alignment(&b, &a);
    assert!(s.ncc > 0.999, "{s:?}");
    assert_eq!(s.lag, -1234);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn ncc_of_truncated_noisy_copy_is_high() {
    let a = speech();
    // what a call does: starts late, a bit of noise, last 200 ms cut
    let n = noise(7, a.len(), 0.01);
    let mut b = vec![0.0f32; 800];
    b.extend(a[..a.len() - 1600].iter().zip(&n).map(|(x, e)| x + e));
    let s = best_alignment(&a, &b);
    assert!(s.ncc > 0.9, "{s:?}");
    assert_eq!(s.lag, 800);
}

#[test]
fn ncc_of_unrelated_noise_is_low() {
    let a = noise(1, 40_000, 0.5);
    let b = noise(99, 40_000, 0.5);
    let s = best_alignment(&a, &b);
    assert!(s.ncc.abs() < 0.1, "{s:?}");
    let s = best_alignment(&speech(), &b);
    assert!(s.ncc.abs() < 0.1, "{s:?}");
}

/// What an adaptive jitter buffer does: 20 ms of a pause dropped here, 20 ms of silence
/// inserted there. The whole-signal NCC falls; the segmental one stays high. Unrelated audio
/// and a copy with a stretch missing stay low.
#[test]
fn segmental_ncc_follows_delay_changes_but_not_other_audio() {
    let a = speech();
    // Find quiet 20 ms frames (pauses) to cut and to stretch, as the jitter buffer would.
    let quiet: Vec<usize> = (0..a.len() / 160)
        .filter(|f| rms_dbfs(&a[f * 160..(f + 1) * 160]) < -45.0)
        .collect();
    assert!(quiet.len() > 10, "the fixture has pauses");
    let (cut1, cut2, ins) = (
        quiet[quiet.len() / 4],
        quiet[quiet.len() / 2],
        quiet[3 * quiet.len() / 4],
    );
    let mut b = vec![0.0f32; 480];
    for f in 0..a.len() / 160 {
        if f == cut1 || f == cut2 {
            continue;
        }
        if f == ins {
            b.extend(vec![0.0f32; 160]);
        }
        b.extend_from_slice(&a[f * 160..(f + 1) * 160]);
    }
    let whole = best_alignment(&a, &b);
    let seg = segmental_alignment(&a, &b, 8000);
    assert!(seg.ncc > 0.97, "segmental {seg:?} (whole-signal {whole:?})");
    assert!(whole.ncc < seg.ncc, "{whole:?} {seg:?}");
    assert_eq!(seg.lag, whole.lag);
    // Unrelated audio stays low.
    let n = noise(5, a.len(), 0.3);
    assert!(segmental_alignment(&a, &n, 8000).ncc < 0.15);
    // Half of the speech missing (replaced by silence) costs about half.
    let mut half = a.clone();
    let mid = half.len() / 2;
    half[mid..].iter_mut().for_each(|v| *v = 0.0);
    let s = segmental_alignment(&a, &half, 8000);
    assert!(s.ncc < 0.7, "{s:?}");
    // Silence: 0, not NaN.
    assert_eq!(segmental_alignment(&a, &vec![0.0; 1000], 8000).ncc, 0.0);
}

#[test]
fn ncc_of_silence_is_zero_not_nan() {
    let a = speech();
    let z = vec![0.0f32; 40_000];
    for s in [
        best_alignment(&a, &z),
        best_alignment(&z, &a),
        best_alignment(&z, &z),
        best_alignment(&[], &a),
        best_alignment(&a, &[]),
    ] {
        assert_eq!(s.ncc, 0.0, "{s:?}");
        assert!(!s.ncc.is_nan());
    }
}

#[test]
fn ten_seconds_correlate_fast() {
    let a: Vec<f32> = speech().iter().chain(speech().iter()).copied().collect();
    let b: Vec<f32> = noise(3, 80_000, 0.3);
    let t = Instant::now();
    let _ = best_alignment(&a, &b);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

/// A 16 kHz recording of the 8 kHz reference (a wide-band call) compares after resampling;
/// a different speech rate would not line up.
#[test]
fn compare_wavs_resamples_a_recording_at_another_rate() {
    let dir = support::test_dir();
    let p16 = dir.path().join("b.wav");
    let a = speech();
    let mut r = termphone::audio::resample::Resampler::new(8000, 16000);
    let mut up = Vec::new();
    r.process(&a, &mut up);
    r.flush(&mut up);
    let up16: Vec<i16> = up.iter().map(|v| (v * 32767.0) as i16).collect();
    support::audio::write_wav_i16(&p16, 16000, &up16).unwrap();
    let s = support::compare_wavs(&data_file("speech-8k.wav"), &p16).unwrap();
    assert!(s.ncc > 0.98 && s.lag.abs() <= 2, "{s:?}");
    // The same samples declared at 16 kHz play twice as fast: no match.
    let fast = dir.path().join("fast.wav");
    let a16: Vec<i16> = a.iter().map(|v| (v * 32767.0) as i16).collect();
    support::audio::write_wav_i16(&fast, 16000, &a16).unwrap();
    let s = support::compare_wavs(&data_file("speech-8k.wav"), &fast).unwrap();
    assert!(s.ncc < 0.5, "{s:?}");
    let s =
        support::compare_wavs(&data_file("speech-8k.wav"), &data_file("speech-8k.wav")).unwrap();
    assert!(s.ncc > 0.9999 && s.lag == 0, "{s:?}");
}

// ---------------------------------------------------------------- tones

#[test]
fn goertzel_finds_a_tone_and_only_that_tone() {
    let x = sine(8000, 1000.0, 0.5, 0.1);
    assert!(tone_ratio(&x, 8000, 1000.0) > 0.95);
    assert!(detect_tone(&x, 8000, 1000.0, 0.5));
    assert!(!detect_tone(&x, 8000, 1400.0, 0.1));
    assert_eq!(tone_ratio(&vec![0.0; 800], 8000, 1000.0), 0.0);
    assert_eq!(tone_ratio(&[], 8000, 1000.0), 0.0);
    let n = noise(5, 800, 0.5);
    assert!(tone_ratio(&n, 8000, 1000.0) < 0.1);
    let s = speech();
    assert!(support::audio::tone_coverage(&s, 8000, 440.0, 0.8, 40) < 0.05);
    let t = sine(8000, 440.0, 0.3, 1.0);
    assert!(support::audio::tone_coverage(&t, 8000, 440.0, 0.8, 40) > 0.95);
}

#[test]
fn dtmf_detector_reads_synthesized_digits() {
    let digit = |lo: f64, hi: f64| -> Vec<f32> {
        let a = sine(8000, lo, 0.3, 0.1);
        let b = sine(8000, hi, 0.3, 0.1);
        a.iter().zip(&b).map(|(x, y)| x + y).collect()
    };
    let gap = vec![0.0f32; 400];
    let mut x = Vec::new();
    for (lo, hi) in [
        (697.0, 1209.0),
        (770.0, 1336.0),
        (941.0, 1477.0),
        (941.0, 1336.0),
    ] {
        x.extend(digit(lo, hi));
        x.extend(&gap);
    }
    assert_eq!(detect_dtmf(&x, 8000), "15#0");
    assert_eq!(detect_dtmf(&speech(), 8000), "");
}

// ---------------------------------------------------------------- G.711, fixtures

#[test]
fn g711_decoders_match_reference_points() {
    assert_eq!(ulaw_decode(0xff), 0);
    assert_eq!(ulaw_decode(0x7f), 0);
    assert_eq!(ulaw_decode(0x00), -32124);
    assert_eq!(ulaw_decode(0x80), 32124);
    assert_eq!(alaw_decode(0xd5), 8);
    assert_eq!(alaw_decode(0x55), -8);
    assert_eq!(alaw_decode(0xaa), 32256);
    assert_eq!(alaw_decode(0x2a), -32256);
}

#[test]
fn speech_fixture_is_5s_8k_mono_near_minus_3_dbfs() {
    let spec = hound::WavReader::open(data_file("speech-8k.wav"))
        .unwrap()
        .spec();
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (8000, 1, 16)
    );
    let s = speech();
    assert!((39_000..=41_000).contains(&s.len()), "{}", s.len());
    let p = 20.0 * f64::from(peak(&s)).log10();
    assert!((-4.0..=-2.0).contains(&p), "peak {p} dBFS");
    assert!(rms_dbfs(&s) > -30.0, "rms {}", rms_dbfs(&s));
}

#[test]
fn pcap_fixtures_hold_the_speech_fixture() {
    for (name, pt) in [("speech-8k-pcma.pcap", 8u8), ("speech-8k-pcmu.pcap", 0)] {
        let cap = read_pcap_rtp(&data_file(name)).unwrap();
        assert_eq!(cap.packets.len(), 250, "{name}");
        assert_eq!(cap.count_pt(pt), 250, "{name}");
        assert!(cap.packets.iter().all(|p| p.payload.len() == 160));
        let s = best_alignment(&speech(), &cap.pcm_f32());
        assert!(s.ncc > 0.99 && s.lag == 0, "{name}: {s:?}");
    }
}

// ---------------------------------------------------------------- RTP sink

fn rtp_packet(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    v[2..4].copy_from_slice(&seq.to_be_bytes());
    v[4..8].copy_from_slice(&ts.to_be_bytes());
    v[8..12].copy_from_slice(&ssrc.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

#[test]
fn rtp_sink_decodes_audio_by_timestamp_and_reads_telephone_events() {
    let sink = RtpSink::bind();
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // PCMU 0xff = 0, 0x80 = +32124; packet 2 is "lost": its samples must stay zero
    tx.send_to(&rtp_packet(0, 1, 1000, 42, &[0x80; 160]), sink.addr())
        .unwrap();
    tx.send_to(&rtp_packet(0, 3, 1320, 42, &[0x80; 160]), sink.addr())
        .unwrap();
    // RFC 4733 '5': two updates, then end x3 (same timestamp)
    for (end, dur) in [
        (false, 160u16),
        (false, 320),
        (true, 480),
        (true, 480),
        (true, 480),
    ] {
        let mut ev = vec![5u8, if end { 0x80 } else { 0 } | 10, 0, 0];
        ev[2..4].copy_from_slice(&dur.to_be_bytes());
        tx.send_to(&rtp_packet(101, 4, 1480, 42, &ev), sink.addr())
            .unwrap();
    }
    tx.send_to(b"not rtp", sink.addr()).unwrap();
    assert!(sink.wait_packets(7, Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(50));
    let cap = sink.finish();
    assert_eq!(cap.packets.len(), 7);
    assert_eq!(cap.bad_datagrams, 1);
    assert_eq!(cap.audio_packets(), 2);
    assert_eq!(cap.telephone_events(101), "5");
    assert_eq!(cap.sources().len(), 1);
    let pcm = cap.pcm();
    assert_eq!(pcm.len(), 480);
    assert!(pcm[..160].iter().all(|&s| s == 32124));
    assert!(pcm[160..320].iter().all(|&s| s == 0));
    assert!(pcm[320..].iter().all(|&s| s == 32124));
}

#[test]
fn parse_rtp_rejects_garbage_and_handles_csrc_extension_padding() {
    let from = "127.0.0.1:1".parse().unwrap();
    let now = Instant::now();
    assert!(parse_rtp(&[0u8; 11], from, now).is_none());
    assert!(parse_rtp(&[0u8; 12], from, now).is_none()); // version 0
                                                         // V=2, P=1, X=1, CC=1
    let mut v = vec![0xb1, 8, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2];
    v.extend_from_slice(&[0, 0, 0, 3]); // CSRC
    v.extend_from_slice(&[0xbe, 0xde, 0, 1, 9, 9, 9, 9]); // extension, 1 word
    v.extend_from_slice(&[1, 2, 3]); // payload
    v.extend_from_slice(&[0, 2]); // 2 bytes padding
    let p = parse_rtp(&v, from, now).unwrap();
    assert_eq!(p.payload, vec![1, 2, 3]);
    assert_eq!(p.payload_type, 8);
    // padding longer than the packet
    let bad = [0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 200];
    assert!(parse_rtp(&bad, from, now).is_none());
    // decoded garbage-free: PCMA silence
    assert_eq!(i16_to_f32(&[alaw_decode(0xd5)])[0], 8.0 / 32768.0);
}

#[test]
fn free_udp_port_is_bindable() {
    let p = support::free_udp_port();
    assert!(std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok());
    let p = support::free_udp_port_pair();
    assert!(std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok());
    assert!(std::net::UdpSocket::bind(("127.0.0.1", p + 2)).is_ok());
}

// ---------------------------------------------------------------- sipp scenarios vs sipp

/// sipp must be there in CI; elsewhere a missing sipp skips with a note.
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

/// sipp plus the right to play pcaps (root or CAP_NET_RAW); required in CI.
fn need_sipp_pcap() -> bool {
    if !need_sipp() {
        return false;
    }
    if support::sipp::pcap_play_allowed() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{}",
        support::sipp::PCAP_NEEDS_ROOT
    );
    eprintln!("skipping: {}", support::sipp::PCAP_NEEDS_ROOT);
    false
}

const T: Duration = Duration::from_secs(60);

/// uac_pcap.xml calls uas_pcap.xml; each SDP names a Rust RtpSink, so each sink receives
/// the other sipp's pcap: proves the scenarios' SDP plumbing and pcap playback, and that
/// the decoded audio is the speech fixture.
#[test]
fn sipp_uac_pcap_calls_uas_pcap_and_rtp_flows_both_ways() {
    if !need_sipp_pcap() {
        return;
    }
    let uac_sink = RtpSink::bind(); // what "termphone as UAS" would receive... here: uas sipp's pcap
    let uas_sink = RtpSink::bind();
    let mut uas = Sipp::uas("uas_pcap.xml")
        .key("rtp_sink_port", uas_sink.port())
        .spawn();
    std::thread::sleep(Duration::from_millis(300));
    let mut uac = Sipp::uac("uac_pcap.xml", uas.addr())
        .key("rtp_sink_port", uac_sink.port())
        .spawn();
    uac.expect_success(T);
    uas.expect_success(T);
    assert!(uas.logs().contains("offer lists PCMA"), "{}", uas.logs());
    for (name, sink, sender) in [
        ("uac sink (from uas)", uac_sink, uas.media_port()),
        ("uas sink (from uac)", uas_sink, uac.media_port()),
    ] {
        let cap = sink.finish();
        assert!(cap.count_pt(8) >= 245, "{name}: {} PCMA", cap.count_pt(8));
        let srcs = cap.sources();
        assert_eq!(srcs.len(), 1, "{name}: {srcs:?}");
        assert_eq!(srcs.iter().next().unwrap().port(), sender, "{name}");
        let s = best_alignment(&speech(), &cap.pcm_f32());
        assert!(s.ncc > 0.95, "{name}: {s:?}");
    }
}

/// uac_pcap.xml against sipp's built-in UAS, which answers PCMU: exercises the PCMU branch.
#[test]
fn sipp_uac_pcap_against_builtin_uas() {
    if !need_sipp_pcap() {
        return;
    }
    let sink = RtpSink::bind();
    let mut uas = Sipp::builtin("uas").spawn();
    std::thread::sleep(Duration::from_millis(300));
    let mut uac = Sipp::uac("uac_pcap.xml", uas.addr())
        .key("rtp_sink_port", sink.port())
        .spawn();
    uac.expect_success(T);
    uas.expect_success(T);
}

fn uas_vs_uac(uas_scen: &str, uac_scen: &str) -> (Sipp, Sipp) {
    let mut uas = Sipp::uas(uas_scen).spawn();
    std::thread::sleep(Duration::from_millis(300));
    let mut uac = Sipp::uac(uac_scen, uas.addr()).spawn();
    uac.expect_success(T);
    uas.expect_success(T);
    (uas, uac)
}

#[test]
fn sipp_uas_busy_rejects_486() {
    if !need_sipp() {
        return;
    }
    let (uas, uac) = uas_vs_uac("uas_busy.xml", "uac_reject.xml");
    assert!(uac.logs().contains("final 486"), "{}", uac.logs());
    assert!(uas.logs().contains("ACK CSeq: 1 ACK"), "{}", uas.logs());
}

#[test]
fn sipp_uas_decline_rejects_603() {
    if !need_sipp() {
        return;
    }
    let (uas, uac) = uas_vs_uac("uas_decline.xml", "uac_reject.xml");
    assert!(uac.logs().contains("final 603"), "{}", uac.logs());
    assert!(uas.messages().contains("SIP/2.0 180 Ringing"));
}

#[test]
fn sipp_uas_cancel_accepts_cancel() {
    if !need_sipp() {
        return;
    }
    let (uas, _uac) = uas_vs_uac("uas_cancel.xml", "uac_cancel.xml");
    let logs = uas.logs();
    assert!(logs.contains("CANCEL CSeq: 1 CANCEL"), "{logs}");
    assert!(uas.messages().contains("SIP/2.0 487 Request Terminated"));
    // what a termphone test checks the same way: CANCEL and the non-2xx ACK reuse the
    // INVITE's branch (RFC 3261 9.1, 17.1.1.3)
    let invite = uas.received_request("INVITE").expect("INVITE traced");
    let cancel = uas.received_request("CANCEL").expect("CANCEL traced");
    let ack = uas.received_request("ACK").expect("ACK traced");
    assert!(invite.branch().is_some_and(|b| b.starts_with("z9hG4bK")));
    assert_eq!(cancel.branch(), invite.branch());
    assert_eq!(ack.branch(), invite.branch());
    assert_eq!(cancel.cseq(), Some((1, "CANCEL".into())));
    assert_eq!(ack.cseq(), Some((1, "ACK".into())));
    assert!(invite.body.contains("m=audio"));
    let sent: Vec<u16> = uas
        .traced()
        .iter()
        .filter(|m| m.sent)
        .filter_map(|m| m.status())
        .collect();
    assert_eq!(sent, vec![100, 180, 200, 487]);
}

#[test]
fn sipp_uas_ring_forever_accepts_cancel() {
    if !need_sipp() {
        return;
    }
    let (uas, _uac) = uas_vs_uac("uas_ring_forever.xml", "uac_cancel.xml");
    assert!(uas.logs().contains("ACK CSeq: 1 ACK"), "{}", uas.logs());
}

/// uac_100rel.xml (checked against termphone serve in e2e_early) PRACKs a reliable 180 with
/// the RSeq it read, and waits for the 200s of PRACK and INVITE; uas_100rel.xml checks the RAck.
#[test]
fn sipp_uac_100rel_pracks_a_reliable_180() {
    if !need_sipp() {
        return;
    }
    let (uas, uac) = uas_vs_uac("uas_100rel.xml", "uac_100rel.xml");
    assert!(
        uas.logs().contains("PRACK with RAck 4711 1 INVITE"),
        "{}",
        uas.logs()
    );
    assert!(uac.logs().contains("RSeq 4711"), "{}", uac.logs());
    assert!(
        uac.logs().contains("200 for the INVITE after the PRACK"),
        "{}",
        uac.logs()
    );
}

/// uac_late_offer.xml (checked against termphone serve in e2e_late_offer) against sipp's
/// built-in UAS, which answers its INVITE without SDP with an SDP of its own: the 200's
/// `m=audio` check passes and the ACK with the answer is sent.
#[test]
fn sipp_uac_late_offer_against_builtin_uas() {
    if !need_sipp() {
        return;
    }
    let sink = RtpSink::bind();
    let mut uas = Sipp::builtin("uas").spawn();
    std::thread::sleep(Duration::from_millis(300));
    let mut uac = Sipp::uac("uac_late_offer.xml", uas.addr())
        .key("rtp_sink_port", sink.port())
        .spawn();
    uac.expect_success(T);
    uas.expect_success(T);
    assert!(
        uac.logs().contains("offer in the 200: m=audio"),
        "{}",
        uac.logs()
    );
    let ack = uas.received_request("ACK").expect("the ACK");
    assert!(ack.body.contains("m=audio"), "{}", ack.body);
}

// ---------------------------------------------------------------- Termphone runner (with a stand-in)

use support::{is_call_state, is_event, Termphone};

/// A stand-in for the binary: /bin/sh running `script` (ends with `exec sleep` so the PID
/// we signal is the one holding stdout).
fn fake(script: &str) -> Termphone {
    Termphone::builder(&["-c", script, "fake-termphone"])
        .program("/bin/sh")
        .raw()
        .spawn()
}

fn pid_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

#[test]
fn termphone_runner_parses_events_in_any_order() {
    let mut t = fake(
        r#"echo '{"event":"listening","addr":"127.0.0.1:40123","transport":"udp"}'
echo 'not json'
echo '{"event":"call","call":"c1","state":"incoming","peer":"sip:a@127.0.0.1"}'
echo '{"event":"call","call":"c1","state":"connected","peer":"sip:a@127.0.0.1"}'
echo '{"event":"dtmf","call":"c1","digit":"5"}'
exec sleep 30"#,
    );
    assert_eq!(t.listen_addr(), "127.0.0.1:40123".parse().unwrap());
    assert_eq!(t.sip_uri("bob"), "sip:bob@127.0.0.1:40123");
    let d = t.wait_event(is_event("dtmf"), Duration::from_secs(5));
    assert_eq!(d["digit"], "5");
    // an earlier event is still there after waiting for a later one
    let c = t.wait_call_state("connected", Duration::from_secs(5));
    assert_eq!(c["call"], "c1");
    let i = t.wait_call_state("incoming", Duration::from_secs(5));
    assert_eq!(i["peer"], "sip:a@127.0.0.1");
    // taken events are not returned twice
    assert!(t
        .try_wait_event(is_call_state("connected"), Duration::from_millis(200))
        .is_none());
    assert_eq!(t.non_json_lines(), vec!["not json".to_owned()]);
    assert_eq!(t.events().len(), 5);
    let pid = t.pid();
    assert!(pid_alive(pid));
    drop(t);
    assert!(!pid_alive(pid), "drop must stop the process");
}

#[test]
fn termphone_runner_reports_exit_code_and_late_events() {
    let mut t = fake(
        r#"echo '{"event":"call","call":"c1","state":"dialing"}'
sleep 0.2
echo '{"event":"call","call":"c1","state":"otherfailure","code":486,"reason":"Busy Here"}'
echo 'diagnostic on stderr' >&2
exit 3"#,
    );
    assert_eq!(t.wait_exit_code(Duration::from_secs(10)), 3);
    let end = t.wait_call_state("otherfailure", Duration::ZERO);
    assert_eq!(end["code"], 486);
    assert!(t.stderr().contains("diagnostic on stderr"));
    assert!(t.stderr_path().starts_with(t.dir()));
}

#[test]
fn termphone_runner_escalates_to_sigkill() {
    let mut t = fake("trap '' TERM; exec sleep 30");
    std::thread::sleep(Duration::from_millis(200));
    let pid = t.pid();
    let start = Instant::now();
    let st = t.stop().expect("reaped");
    assert!(start.elapsed() >= support::TERM_GRACE);
    assert!(start.elapsed() < support::TERM_GRACE + Duration::from_secs(3));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(libc::SIGKILL));
    assert!(!pid_alive(pid));
}

#[test]
fn termphone_runner_times_out_cleanly() {
    let mut t = fake("exec sleep 30");
    assert!(t
        .try_wait_event(|_| true, Duration::from_millis(300))
        .is_none());
    assert!(t.try_exit().is_none());
    let st = t.stop().expect("reaped");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(libc::SIGTERM));
}

#[test]
fn sipp_trace_parser_reads_directions_headers_and_body() {
    let text = "----------------------------------------------- 2026-11-25 09:12:53.084340\n\
UDP message received [10] bytes :\n\n\
INVITE sip:service@127.0.0.1:5548 SIP/2.0\r\n\
v: SIP/2.0/UDP 127.0.0.1:5063;branch=z9hG4bK-1;rport\r\n\
CSeq: 7 INVITE\r\n\
Subject: folded\r\n  line\r\n\
\r\n\
v=0\r\n\
\n----------------------------------------------- 2026-11-25 09:12:53.1\n\
UDP message sent (10 bytes):\n\n\
SIP/2.0 180 Ringing\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5063;branch=z9hG4bK-1\r\n\
Content-Length: 0\r\n\r\n";
    let m = support::sipp::parse_trace(text);
    assert_eq!(m.len(), 2);
    assert!(!m[0].sent && m[1].sent);
    assert_eq!(m[0].request_method(), Some("INVITE"));
    assert_eq!(m[0].branch().as_deref(), Some("z9hG4bK-1"));
    assert_eq!(m[0].cseq(), Some((7, "INVITE".into())));
    assert_eq!(m[0].header("subject"), Some("folded line"));
    assert_eq!(m[0].body, "v=0\n");
    assert_eq!(m[1].status(), Some(180));
    assert_eq!(m[1].request_method(), None);
}

/// uac_dtmf.xml against uas_pcap.xml: the three RFC 4733 captures reach the sink named in
/// uas_pcap's answer as digits "123".
#[test]
fn sipp_uac_dtmf_sends_rfc4733_digits() {
    if !need_sipp_pcap() {
        return;
    }
    let uac_sink = RtpSink::bind();
    let uas_sink = RtpSink::bind();
    let mut uas = Sipp::uas("uas_pcap.xml")
        .key("rtp_sink_port", uas_sink.port())
        .spawn();
    std::thread::sleep(Duration::from_millis(300));
    let mut uac = Sipp::uac("uac_dtmf.xml", uas.addr())
        .key("rtp_sink_port", uac_sink.port())
        .spawn();
    uac.expect_success(T);
    uas.expect_success(T);
    let cap = uas_sink.finish();
    assert_eq!(cap.telephone_events(101), "123", "{:?}", cap.packets.len());
    assert!(cap.sources().iter().all(|s| s.port() == uac.media_port()));
    drop(uac_sink);
}

/// uac_hold.xml against uas_hold.xml: each checks the other's hold and resume SDP (sendonly
/// answered recvonly, then sendrecv), so the two scenarios agree with RFC 3264 §8.4 on their own.
#[test]
fn sipp_hold_scenarios_agree() {
    if !need_sipp() {
        return;
    }
    let uac_sink = RtpSink::bind();
    let uas_sink = RtpSink::bind();
    let mut uas = Sipp::uas("uas_hold.xml")
        .key("rtp_sink_port", uas_sink.port())
        .spawn();
    std::thread::sleep(Duration::from_millis(300));
    let mut uac = Sipp::uac("uac_hold.xml", uas.addr())
        .key("rtp_sink_port", uac_sink.port())
        .spawn();
    uac.expect_success(T);
    uas.expect_success(T);
    assert!(
        uas.logs().contains("hold offered with a=sendonly"),
        "{}",
        uas.logs()
    );
    assert!(
        uac.logs().contains("resume answered with a=sendrecv"),
        "{}",
        uac.logs()
    );
}

/// The suite-wide password check can fail: a process that prints a registered secret on
/// stderr, or in an event, makes its drop fail the test, and the message names the secret's
/// owner, never the secret.
#[test]
fn termphone_runner_fails_when_a_registered_password_is_printed() {
    support::register_secret("selftest user", "selftest-Secret-4711");
    for script in [
        "echo 'login with selftest-Secret-4711' >&2",
        r#"echo '{"event":"warning","message":"selftest-Secret-4711"}'"#,
    ] {
        let mut t = fake(script);
        t.wait_exit(Duration::from_secs(10));
        let leak = t.leaked_secret();
        assert!(leak.is_some(), "{script}");
        let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(t)))
            .expect_err("drop fails the test");
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("selftest user"), "{msg}");
        assert!(!msg.contains("selftest-Secret-4711"), "{msg}");
    }
    let mut clean = fake("echo '{\"event\":\"warning\",\"message\":\"nothing secret\"}'");
    clean.wait_exit(Duration::from_secs(10));
    assert_eq!(clean.leaked_secret(), None);
}

/// The impairment relay, driven with plain UDP sockets: the SDP of an offer and an answer is
/// rewritten to the relay's media ports, media flows both ways through it, the random loss
/// rate is close to what was asked, the same seed drops the same packets, and duplication,
/// jitter and reordering do what they say.
mod relay_selftest {
    use super::support::relay::{Impairment, Loss, Relay};
    use std::net::{SocketAddr, UdpSocket};
    use std::time::{Duration, Instant};

    fn sock() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        s
    }

    fn sip_with_sdp(first: &str, media: SocketAddr) -> Vec<u8> {
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 {}\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\n",
            media.ip(),
            media.port()
        );
        format!(
            "{first}\r\nCall-ID: x\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
        .into_bytes()
    }

    /// The media port an SDP in `msg` names, checking Content-Length matches the body.
    fn sdp_port(msg: &[u8]) -> u16 {
        let text = String::from_utf8_lossy(msg);
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, body.len(), "Content-Length follows the rewrite");
        body.lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|r| r.split(' ').next())
            .unwrap()
            .parse()
            .unwrap()
    }

    struct Call {
        relay: Relay,
        caller_media: UdpSocket,
        callee_media: UdpSocket,
        /// Relay port the caller sends media to.
        to_callee: SocketAddr,
        /// Relay port the callee sends media to.
        to_caller: SocketAddr,
    }

    fn call(imp: Impairment, seed: u64) -> Call {
        let (caller_sip, callee_sip) = (sock(), sock());
        let (caller_media, callee_media) = (sock(), sock());
        let relay = Relay::start(callee_sip.local_addr().unwrap(), imp, seed);
        let mut buf = [0u8; 4096];
        caller_sip
            .send_to(
                &sip_with_sdp("INVITE sip:b@x SIP/2.0", caller_media.local_addr().unwrap()),
                relay.sip_addr(),
            )
            .unwrap();
        let (n, back) = callee_sip.recv_from(&mut buf).expect("INVITE forwarded");
        let to_caller = SocketAddr::from(([127, 0, 0, 1], sdp_port(&buf[..n])));
        callee_sip
            .send_to(
                &sip_with_sdp("SIP/2.0 200 OK", callee_media.local_addr().unwrap()),
                back,
            )
            .unwrap();
        let (n, _) = caller_sip.recv_from(&mut buf).expect("200 forwarded");
        let to_callee = SocketAddr::from(([127, 0, 0, 1], sdp_port(&buf[..n])));
        assert_ne!(to_callee.port(), caller_media.local_addr().unwrap().port());
        Call {
            relay,
            caller_media,
            callee_media,
            to_callee,
            to_caller,
        }
    }

    /// Send `n` numbered packets from the caller, 2 ms apart; the numbers the callee got (read
    /// as they come, so the socket buffer never overflows).
    fn send_numbered(c: &Call, n: u32) -> Vec<u32> {
        let rx = c.callee_media.try_clone().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            while let Ok((len, _)) = rx.recv_from(&mut buf) {
                if len == 4 {
                    got.push(u32::from_be_bytes(buf[..4].try_into().unwrap()));
                }
            }
            got
        });
        for i in 0..n {
            c.caller_media
                .send_to(&i.to_be_bytes(), c.to_callee)
                .unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        reader.join().unwrap()
    }

    #[test]
    fn relay_rewrites_sdp_and_carries_media_both_ways() {
        let c = call(Impairment::none(), 1);
        let got = send_numbered(&c, 50);
        assert_eq!(got, (0..50).collect::<Vec<_>>());
        // And back: the callee's media reaches the caller.
        c.callee_media.send_to(b"pong", c.to_caller).unwrap();
        let mut buf = [0u8; 16];
        let (n, _) = c
            .caller_media
            .recv_from(&mut buf)
            .expect("media to the caller");
        assert_eq!(&buf[..n], b"pong");
        let st = c.relay.stats();
        assert_eq!(st.sdp_rewritten, 2);
        assert_eq!((st.received, st.forwarded, st.dropped), (51, 51, 0));
    }

    #[test]
    fn random_loss_is_close_to_the_rate_and_repeatable_by_seed() {
        let a = send_numbered(&call(Impairment::loss_jitter(0.1, Duration::ZERO), 7), 1000);
        let b = send_numbered(&call(Impairment::loss_jitter(0.1, Duration::ZERO), 7), 1000);
        let lost = 1000 - a.len();
        assert!((60..=140).contains(&lost), "10 % of 1000 lost: {lost}");
        assert_eq!(a, b, "the same seed loses the same packets");
        let c = send_numbered(&call(Impairment::loss_jitter(0.1, Duration::ZERO), 8), 1000);
        assert_ne!(a, c, "another seed, another pattern");
    }

    #[test]
    fn bursty_loss_comes_in_runs() {
        let imp = Impairment {
            loss: Loss::bursty(0.1, 4.0),
            ..Impairment::default()
        };
        let got = send_numbered(&call(imp, 3), 2000);
        let lost: Vec<u32> = (0..2000).filter(|i| !got.contains(i)).collect();
        let runs = lost.windows(2).filter(|w| w[1] != w[0] + 1).count() + 1;
        let mean_run = lost.len() as f64 / runs as f64;
        assert!(
            (100..=320).contains(&lost.len()),
            "about 10 %: {}",
            lost.len()
        );
        assert!(mean_run >= 2.5, "mean burst about 4: {mean_run}");
    }

    #[test]
    fn jitter_delays_and_reorders_and_duplicates() {
        let imp = Impairment {
            delay: Duration::from_millis(20),
            jitter: Duration::from_millis(30),
            duplicate: 0.1,
            ..Impairment::default()
        };
        let c = call(imp, 11);
        let t0 = Instant::now();
        c.caller_media
            .send_to(&0u32.to_be_bytes(), c.to_callee)
            .unwrap();
        let mut buf = [0u8; 8];
        c.callee_media.recv_from(&mut buf).unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(20), "fixed delay");
        let got = send_numbered(&c, 300);
        let st = c.relay.stats();
        assert!(st.duplicated > 10, "{st:?}");
        assert!(got.len() > 300, "duplicates arrive: {}", got.len());
        let out_of_order = got.windows(2).filter(|w| w[1] < w[0]).count();
        assert!(
            out_of_order > 10,
            "30 ms jitter on 2 ms spacing reorders: {out_of_order}"
        );
    }
}
