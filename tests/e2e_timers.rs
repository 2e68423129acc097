//! Session timers (RFC 4028) against sipp on 127.0.0.1: a callee that asks for 90 s with the
//! caller refreshing gets termphone's refresh re-INVITE at about half the interval, and the
//! call goes on. (Long: the refresh is due 45 s into the call.)

mod support;

use std::time::{Duration, Instant};

use support::sipp::sipp_available;
use support::{RtpSink, Sipp, Termphone};

#[test]
fn dial_refreshes_a_90_s_session_timer_at_half_time() {
    if !sipp_available() {
        assert!(std::env::var_os("CI").is_none(), "sipp is not installed");
        eprintln!("skipping: sipp (Debian sip-tester) is not installed");
        return;
    }
    let sink = RtpSink::bind();
    let dir = support::test_dir();
    let mut sipp = Sipp::uas("uas_timer.xml")
        .key("rtp_sink_port", sink.port())
        .timeout(Duration::from_secs(120))
        .dir(dir.clone())
        .spawn();
    let started = Instant::now();
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
