//! Late offer (RFC 3261 §13.2.1, §14.2; RFC 6337 §2.1) against sipp on 127.0.0.1: an INVITE
//! without SDP is answered with our offer and the answer in the ACK starts the media; an ACK
//! without an answer ends the call with BYE; a re-INVITE without SDP gets our offer in the
//! 200 and the ACK's answer moves the media, the call staying up.

mod support;

use serde_json::Value;
use support::e2e::{assert_json_only, assert_speech_rtp, speech_path};
use support::sipp::sipp_available;
use support::{RtpSink, Sipp, Termphone};

use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const SIPP_WAIT: Duration = Duration::from_secs(60);

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

fn warnings(t: &mut Termphone) -> Vec<String> {
    t.events()
        .iter()
        .filter(|e| e["event"] == "warning")
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// sipp calls `serve --play speech` with an INVITE without SDP: the 200 carries our offer
/// (sipp checks `m=audio`), the ACK's answer names the sink, and the speech arrives there as
/// PCMA (the only place termphone could have learnt that address is the ACK).
#[test]
fn invite_without_sdp_is_answered_with_an_offer_and_the_ack_answer_starts_media() {
    if !need_sipp() {
        return;
    }
    let speech = speech_path();
    let mut srv = Termphone::serve(&["--play", &speech]);
    let addr = srv.listen_addr();
    let sink = RtpSink::bind();
    let mut sipp = Sipp::uac("uac_late_offer.xml", addr)
        .key("rtp_sink_port", sink.port())
        .dir(srv.dir_handle())
        .spawn();
    sipp.expect_success(SIPP_WAIT);
    srv.wait_call_state("hangupremote", WAIT);
    assert_eq!(states(&mut srv), ["incoming", "connected", "hangupremote"]);
    assert!(
        sipp.logs().contains("offer in the 200: m=audio"),
        "{}",
        sipp.logs()
    );
    let ok = sipp
        .traced()
        .into_iter()
        .find(|m| {
            !m.sent && m.status() == Some(200) && m.cseq().is_some_and(|(_, m)| m == "INVITE")
        })
        .expect("the 200 in sipp's trace");
    assert_eq!(ok.header("Content-Type"), Some("application/sdp"));
    let cap = sink.finish();
    assert_speech_rtp(
        &cap,
        8,
        "termphone serve -> the address in the ACK's answer",
    );
    assert!(warnings(&mut srv).is_empty(), "{:?}", warnings(&mut srv));
    assert_json_only(&mut srv);
}

/// The ACK to the 200 that carried our offer has no answer: termphone says why and ends the
/// call with BYE (sipp waits for it and answers 200).
#[test]
fn ack_without_answer_to_our_offer_ends_the_call_with_bye() {
    if !need_sipp() {
        return;
    }
    let mut srv = Termphone::serve(&[]);
    let addr = srv.listen_addr();
    let mut sipp = Sipp::uac("uac_late_offer_no_answer.xml", addr)
        .dir(srv.dir_handle())
        .spawn();
    sipp.expect_success(SIPP_WAIT);
    let end: Value = srv.wait_call_state("otherfailure", WAIT);
    let reason = end["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("no SDP answer"), "{end}");
    assert_eq!(states(&mut srv), ["incoming", "connected", "otherfailure"]);
    assert!(
        warnings(&mut srv)
            .iter()
            .any(|w| w.contains("no SDP answer") && w.contains("hanging up")),
        "{:?}",
        warnings(&mut srv)
    );
    assert!(
        sipp.received_request("BYE").is_some(),
        "{}",
        sipp.messages()
    );
    assert_json_only(&mut srv);
}

/// sipp calls `serve --play speech` normally (media to sink 1), then re-INVITEs without SDP:
/// the 200 carries our offer, sendrecv (sipp checks), the ACK's answer moves the media to
/// sink 2 as PCMA, and the call stays up until sipp's BYE.
#[test]
fn reinvite_without_sdp_gets_our_offer_and_the_ack_answer_moves_the_media() {
    if !need_sipp() {
        return;
    }
    let speech = speech_path();
    let mut srv = Termphone::serve(&["--play", &speech]);
    let addr = srv.listen_addr();
    let sink1 = RtpSink::bind();
    let sink2 = RtpSink::bind();
    let mut sipp = Sipp::uac("uac_reinvite_no_sdp.xml", addr)
        .key("rtp_sink_port", sink1.port())
        .key("rtp_sink_port2", sink2.port())
        .dir(srv.dir_handle())
        .spawn();
    sipp.expect_success(SIPP_WAIT);
    srv.wait_call_state("hangupremote", WAIT);
    assert_eq!(states(&mut srv), ["incoming", "connected", "hangupremote"]);
    assert!(warnings(&mut srv).is_empty(), "{:?}", warnings(&mut srv));
    // Our offer in the 200 to the re-INVITE: the same o= session id as our first answer, its
    // version one higher (RFC 3264 §8).
    let oks: Vec<String> = sipp
        .traced()
        .into_iter()
        .filter(|m| {
            !m.sent && m.status() == Some(200) && m.cseq().is_some_and(|(_, m)| m == "INVITE")
        })
        .map(|m| m.body)
        .collect();
    let origin = |text: &str| -> (String, u64) {
        let o = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("o="))
            .unwrap_or_else(|| panic!("no o= in {text}"));
        let f: Vec<&str> = o.split_whitespace().collect();
        (f[1].to_string(), f[2].parse().unwrap())
    };
    let first = oks.first().map(|t| origin(t)).expect("a 200 to the INVITE");
    let second = oks.last().map(|t| origin(t)).unwrap();
    assert_eq!(second.0, first.0, "same session id: {oks:?}");
    assert_eq!(second.1, first.1 + 1, "version incremented: {oks:?}");
    let (cap1, cap2) = (sink1.finish(), sink2.finish());
    // Before: the codec termphone picked from sipp's offer (its own first choice, PCMU by
    // default); after: PCMA, the only one the ACK's answer takes from our offer.
    assert!(
        cap1.audio_packets() > 40,
        "before: {} audio packets",
        cap1.audio_packets()
    );
    assert!(
        cap2.count_pt(8) > 40,
        "after the ACK's answer: {} PCMA packets at its address (of {})",
        cap2.count_pt(8),
        cap2.packets.len()
    );
    assert_json_only(&mut srv);
}
