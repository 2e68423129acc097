//! End-to-end tests of the real `termphone` binary against sipp (Debian `sip-tester`) on
//! 127.0.0.1: calls in both directions with RTP both ways (pcap play), echo, rejections,
//! ringing timeout with CANCEL, a caller's CANCEL, and RFC 4733 DTMF both ways.
//!
//! The checks live in `tests/support/e2e.rs` (one function per scenario); the sipp scenarios
//! in `tests/sipp/`. Every port is on 127.0.0.1 and picked free at run time (termphone binds
//! `127.0.0.1:0` for SIP and its RTP range 16384-32766; sipp and the RTP sinks take ephemeral
//! ports), so the tests run in parallel threads. The pcap scenarios need root or CAP_NET_RAW
//! (see `tests/sipp/README.md`).

mod support;

use serde_json::Value;
use support::e2e;

/// The first half: a sipp UAC with RTP (pcap play) calls `termphone serve --play
/// --record`; speech reaches the RtpSink named in sipp's offer (termphone -> peer) and
/// termphone's recording holds the speech sipp played (peer -> termphone).
#[test]
fn sipp_uac_calls_serve_with_rtp_both_ways() {
    let r = e2e::serve_answers_sipp_with_audio_both_ways();
    eprintln!(
        "serve: sent ncc {:.3} lag {}, received ncc {:.3} lag {}",
        r.sent_ncc.ncc, r.sent_ncc.lag, r.received_ncc.ncc, r.received_ncc.lag
    );
}

/// The second half: `termphone dial --play --record` calls a sipp UAS (answers PCMA,
/// plays the speech pcap); RTP flows both ways and dial exits 0.
#[test]
fn dial_calls_sipp_uas_with_rtp_both_ways() {
    let r = e2e::dial_sipp_with_audio_both_ways(None);
    eprintln!(
        "dial: sent ncc {:.3} lag {}, received ncc {:.3} lag {}",
        r.sent_ncc.ncc, r.sent_ncc.lag, r.received_ncc.ncc, r.received_ncc.lag
    );
}

/// `serve --echo`: the speech sipp plays comes back to the sink sipp's offer names.
#[test]
fn serve_echo_returns_sipp_audio() {
    let s = e2e::serve_echoes_sipp_audio();
    eprintln!("echo: ncc {:.3} lag {}", s.ncc, s.lag);
}

/// A callee that answers 486: dial exits 3, its final event is `otherfailure` with code 486,
/// and the ACK for the 486 reuses the INVITE's branch.
#[test]
fn dial_busy_486_exits_3() {
    let end = e2e::dial_sipp_rejected("uas_busy.xml", 3, 486);
    assert_final(&end, "otherfailure", 486);
}

/// A callee that rings, then answers 603: dial exits 4, final event `otherfailure` 603.
#[test]
fn dial_declined_603_exits_4() {
    let end = e2e::dial_sipp_rejected("uas_decline.xml", 4, 603);
    assert_final(&end, "otherfailure", 603);
}

/// A callee that rings forever: `dial --timeout 3` CANCELs (INVITE's branch and CSeq number,
/// read from sipp's message trace), ACKs the 487, ends `hanguplocal` 487 and exits 6.
#[test]
fn dial_ringing_timeout_cancels_and_exits_6() {
    let end = e2e::dial_sipp_no_answer_cancels();
    assert_final(&end, "hanguplocal", 487);
}

/// `serve --reject 486`: sipp gets 486 (and ACKs it); serve ends the call `hanguplocal` 486.
#[test]
fn serve_reject_486() {
    let end = e2e::serve_rejects_sipp(486);
    assert_final(&end, "hanguplocal", 486);
}

/// `serve --reject 603`: sipp gets 603.
#[test]
fn serve_reject_603() {
    let end = e2e::serve_rejects_sipp(603);
    assert_final(&end, "hanguplocal", 603);
}

/// A caller that CANCELs while serve rings (`--answer-delay 30`): serve answers 200 + 487 and
/// reports the call `missed`.
#[test]
fn serve_reports_missed_when_caller_cancels() {
    let missed = e2e::serve_missed_when_sipp_cancels();
    assert_eq!(missed["state"], "missed", "{missed}");
    eprintln!("missed event: {missed}");
}

/// sipp sends RFC 2833 digits 1 2 3 (sip-tester's pcaps, PT 101): serve emits three `dtmf`
/// events, in order, once each.
#[test]
fn serve_receives_sipp_rfc2833_dtmf() {
    assert_eq!(e2e::serve_receives_sipp_dtmf(), "123");
}

/// `dial --dtmf 123#*0` to the sipp UAS: the RtpSink decodes the RFC 4733 events (PT 101)
/// as exactly "123#*0", in order, once each; the speech still flows both ways.
#[test]
fn dial_sends_rfc4733_dtmf_in_order_once_each() {
    let r = e2e::dial_sipp_with_audio_both_ways(Some("123#*0"));
    eprintln!("{:#?}", r.sent_by_termphone.telephone_event_groups(101));
}

/// Checks the final call event's state and code.
fn assert_final(end: &Value, state: &str, code: u16) {
    assert_eq!(end["event"], "call", "{end}");
    assert_eq!(end["state"], state, "final call event {end}");
    assert_eq!(end["code"], code, "final call event {end}");
}

/// `termphone dial` stopped with SIGTERM while the callee rings: it CANCELs with the
/// INVITE's branch and ACKs the 487 before it exits.
#[test]
fn dial_sigterm_while_ringing_cancels() {
    e2e::dial_stopped_while_ringing_cancels();
}

/// A BYE challenged like a proxy would (sipp uas_bye_auth.xml): `dial --account alice
/// --duration 1` through sipp as the account's registrar; sipp answers the INVITE, replies 407
/// with Proxy-Authenticate to the first BYE and 200 to the second, which must carry a
/// Proxy-Authorization whose digest verifies (recomputed here from sipp's message trace,
/// RFC 7616 §3.4.1 MD5 qop=auth). Same Call-ID, next CSeq, new branch; dial exits 0.
#[test]
fn dial_answers_a_407_to_its_bye_with_proxy_authorization() {
    use md5::{Digest, Md5};
    use std::collections::HashMap;
    use support::rtp::RtpSink;
    use support::sipp::Sipp;
    use support::Termphone;

    const PASSWORD: &str = "bye-auth-pw";
    let sink = RtpSink::bind();
    let mut sipp = Sipp::uas("uas_bye_auth.xml")
        .key("rtp_sink_port", sink.port())
        .spawn();
    let cfg = sipp.dir().join("alice-config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[account]]\nname = \"alice\"\nuser = \"alice\"\ndomain = \"{0}\"\nregistrar = \"sip:{0}\"\npassword = \"{PASSWORD}\"\n",
            sipp.addr()
        ),
    )
    .expect("write the termphone config");
    let mut tp = Termphone::builder(&["dial", "test", "--account", "alice", "--duration", "1"])
        .global("--config")
        .global(cfg.display().to_string())
        .spawn();
    let code = tp.wait_exit_code(std::time::Duration::from_secs(40));
    assert_eq!(code, 0, "dial exit code\n{}", tp.diagnostics());
    tp.wait_call_state("hanguplocal", std::time::Duration::ZERO);
    sipp.expect_success(std::time::Duration::from_secs(30));
    drop(sink);

    let byes: Vec<_> = sipp
        .traced()
        .into_iter()
        .filter(|m| !m.sent && m.request_method() == Some("BYE"))
        .collect();
    assert_eq!(
        byes.len(),
        2,
        "one BYE, then one with credentials: {byes:#?}"
    );
    let (first, again) = (&byes[0], &byes[1]);
    assert!(first.header("Proxy-Authorization").is_none());
    assert_eq!(first.header("Call-ID"), again.header("Call-ID"));
    assert_eq!(first.header("From"), again.header("From"));
    assert_eq!(first.header("To"), again.header("To"));
    let (n1, n2) = (first.cseq().unwrap(), again.cseq().unwrap());
    assert_eq!((n2.0, n2.1.as_str()), (n1.0 + 1, "BYE"), "next CSeq");
    assert_ne!(first.branch(), again.branch(), "a new transaction");

    let value = again
        .header("Proxy-Authorization")
        .expect("Proxy-Authorization");
    let params: HashMap<&str, &str> = value
        .strip_prefix("Digest ")
        .expect("Digest")
        .split(", ")
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k, v.trim_matches('"')))
        .collect();
    let uri = again
        .start_line
        .split_whitespace()
        .nth(1)
        .expect("Request-URI");
    assert_eq!(params["uri"], uri);
    let md5 = |s: String| -> String {
        Md5::digest(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let ha1 = md5(format!("alice:sipp.test:{PASSWORD}"));
    let ha2 = md5(format!("BYE:{uri}"));
    let expected = md5(format!(
        "{ha1}:bye-nonce-4711:{}:{}:auth:{ha2}",
        params["nc"], params["cnonce"]
    ));
    assert_eq!(params["response"], expected, "the digest verifies");
    let stderr = tp.stderr();
    let events = format!("{:?}", tp.events());
    assert!(!stderr.contains(PASSWORD) && !events.contains(PASSWORD));
}
