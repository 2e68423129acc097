//! Session timers (RFC 4028) against sipp on 127.0.0.1: a callee that asks for 90 s with the
//! caller refreshing gets termphone's refresh re-INVITE at about half the interval, and the
//! call goes on. (Long: the refresh is due 45 s into the call.) And 422 Session Interval Too
//! Small both ways: termphone asks again with the callee's Min-SE, and refuses a caller's
//! interval below 90 s. A callee that allows UPDATE gets the refresh as an UPDATE.

mod support;

use std::time::{Duration, Instant};

use support::sipp::sipp_available;
use support::{RtpSink, Sipp, Termphone};

/// `termphone dial` holds a 50 s call with sipp playing `scenario` (a callee that sets a 90 s
/// session timer), and both end well; `None` when sipp is missing (outside CI).
/// The RTP sink sipp's SDP points at is returned too: it must live until the test ends.
fn fifty_second_call_to(scenario: &str) -> Option<(Sipp, Termphone, RtpSink)> {
    if !sipp_available() {
        assert!(std::env::var_os("CI").is_none(), "sipp is not installed");
        eprintln!("skipping: sipp (Debian sip-tester) is not installed");
        return None;
    }
    let sink = RtpSink::bind();
    let dir = support::test_dir();
    let mut sipp = Sipp::uas(scenario)
        .key("rtp_sink_port", sink.port())
        .timeout(Duration::from_secs(120))
        .dir(dir.clone())
        .spawn();
    let mut dial = Termphone::builder(&["dial", &sipp.uri("timer"), "--duration", "50"])
        .dir(dir)
        .spawn();
    dial.wait_call_state("connected", Duration::from_secs(20));
    assert_eq!(
        dial.wait_exit_code(Duration::from_secs(90)),
        0,
        "{}",
        dial.diagnostics()
    );
    sipp.expect_success(Duration::from_secs(30));
    Some((sipp, dial, sink))
}

#[test]
fn dial_refreshes_a_90_s_session_timer_at_half_time() {
    let started = Instant::now();
    let Some((sipp, dial, sink)) = fifty_second_call_to("uas_timer.xml") else {
        return;
    };
    let trace = dial.stderr();
    // The refresh re-INVITE (CSeq 2) went out with the session interval.
    assert!(
        trace.contains("CSeq: 2 INVITE"),
        "no refresh re-INVITE in the trace"
    );
    assert!(trace.contains("Session-Expires: 90;refresher=uac"));
    assert!(started.elapsed() >= Duration::from_secs(50));
    assert_eq!(
        sipp.logs().matches("refresh with Session-Expires").count(),
        1,
        "{}",
        sipp.logs()
    );
    drop(sink);
}

/// A callee that wants at least 1800 s (uas_422.xml): its 422 (Min-SE: 1800) is ACKed and the
/// INVITE goes again, next CSeq, same Call-ID and From tag, with Session-Expires and Min-SE of
/// 1800; that one is answered and the call runs to its end (dial exits 0).
#[test]
fn dial_asks_again_with_the_min_se_of_a_422() {
    if !sipp_available() {
        assert!(std::env::var_os("CI").is_none(), "sipp is not installed");
        eprintln!("skipping: sipp (Debian sip-tester) is not installed");
        return;
    }
    let sink = RtpSink::bind();
    let dir = support::test_dir();
    let mut sipp = Sipp::uas("uas_422.xml")
        .key("rtp_sink_port", sink.port())
        .dir(dir.clone())
        .spawn();
    let mut dial = Termphone::builder(&["dial", &sipp.uri("timer"), "--duration", "1"])
        .dir(dir)
        .spawn();
    dial.wait_call_state("connected", Duration::from_secs(20));
    assert_eq!(
        dial.wait_exit_code(Duration::from_secs(30)),
        0,
        "{}",
        dial.diagnostics()
    );
    sipp.expect_success(Duration::from_secs(30));
    assert!(
        sipp.logs()
            .contains("again with Session-Expires 1800 Min-SE 1800"),
        "{}",
        sipp.logs()
    );
    let invites: Vec<_> = sipp
        .traced()
        .into_iter()
        .filter(|m| !m.sent && m.request_method() == Some("INVITE"))
        .collect();
    assert_eq!(invites.len(), 2, "{invites:#?}");
    let (first, again) = (&invites[0], &invites[1]);
    assert_eq!(first.header("Call-ID"), again.header("Call-ID"));
    assert_eq!(first.header("From"), again.header("From"));
    assert_eq!(again.cseq().map(|c| c.0), first.cseq().map(|c| c.0 + 1));
    assert_ne!(first.branch(), again.branch());
    assert!(sipp.received_request("ACK").is_some());
    drop(sink);
}

/// A caller asking for 30 s (uac_422.xml) gets 422 with Min-SE: 90 from `termphone serve`,
/// and no call comes up.
#[test]
fn serve_refuses_a_30_s_session_interval_with_422() {
    if !sipp_available() {
        assert!(std::env::var_os("CI").is_none(), "sipp is not installed");
        eprintln!("skipping: sipp (Debian sip-tester) is not installed");
        return;
    }
    let mut tp = Termphone::serve(&[]);
    let addr = tp.listen_addr();
    let mut sipp = Sipp::uac("uac_422.xml", addr).dir(tp.dir_handle()).spawn();
    sipp.expect_success(Duration::from_secs(30));
    let logs = sipp.logs().split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(logs.contains("422 with Min-SE 90"), "{logs}");
    assert!(
        !tp.events().iter().any(|e| e["event"] == "call"),
        "no call: {:?}",
        tp.events()
    );
}

/// A callee whose 200 allows UPDATE (uas_timer_update.xml) gets the refresh as an UPDATE
/// without a body (RFC 4028 §7.4, RFC 3311), with Session-Expires, at about half the 90 s;
/// no re-INVITE. (Long: the refresh is due 45 s into the call.)
#[test]
fn dial_refreshes_by_update_when_the_callee_allows_it() {
    let Some((sipp, _dial, sink)) = fifty_second_call_to("uas_timer_update.xml") else {
        return;
    };
    let logs = sipp.logs().split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        logs.contains("refresh by UPDATE with Session-Expires 90"),
        "{logs}"
    );
    let traced = sipp.traced();
    let invites = traced
        .iter()
        .filter(|m| !m.sent && m.request_method() == Some("INVITE"))
        .count();
    assert_eq!(invites, 1, "no re-INVITE");
    let update = sipp.received_request("UPDATE").expect("an UPDATE");
    assert!(update.body.trim().is_empty(), "no body: {update:?}");
    assert!(update
        .header("Supported")
        .is_some_and(|v| v.contains("timer")));
    drop(sink);
}
