//! DTMF by SIP INFO: received in both body types (application/dtmf-relay, application/dtmf)
//! from sipp, and sent as dtmf-relay by an account with `dtmf_mode = "info"` to another
//! termphone. (Sending to baresip is in tests/e2e_baresip.rs.) Loopback only.

mod support;

use std::time::Duration;

use support::sipp::sipp_available;
use support::{test_dir, RtpSink, Sipp, Termphone};

const WAIT: Duration = Duration::from_secs(20);

fn digits(t: &mut Termphone) -> String {
    t.events()
        .iter()
        .filter(|v| v["event"] == "dtmf")
        .filter_map(|v| v["digit"].as_str().map(str::to_owned))
        .collect()
}

/// sipp sends 4 and # (dtmf-relay, # as event code 11) and 7 (application/dtmf): serve
/// reports each once and answers each INFO 200 (sipp checks).
#[test]
fn serve_reads_dtmf_from_sip_info_in_both_body_types() {
    if !sipp_available() {
        assert!(std::env::var_os("CI").is_none(), "sipp is not installed");
        eprintln!("skipping: sipp (Debian sip-tester) is not installed");
        return;
    }
    let sink = RtpSink::bind();
    let mut tp = Termphone::serve(&[]);
    let addr = tp.listen_addr();
    let mut sipp = Sipp::uac("uac_info_dtmf.xml", addr)
        .key("rtp_sink_port", sink.port())
        .dir(tp.dir_handle())
        .spawn();
    sipp.expect_success(Duration::from_secs(30));
    tp.wait_call_state("hangupremote", WAIT);
    assert_eq!(digits(&mut tp), "4#7", "{}", tp.diagnostics());
}

/// An account with `dtmf_mode = "info"` sends `--dtmf 9*0` as three INFO requests (no RFC 4733
/// events); the other termphone reports the digits once each, in order.
#[test]
fn dial_sends_dtmf_by_sip_info_when_the_account_says_so() {
    let dir = test_dir();
    let mut srv = Termphone::builder(&["serve"]).dir(dir.clone()).spawn();
    let uri = srv.sip_uri("ivr");
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        "[[account]]\nname = \"local\"\nuser = \"caller\"\ndtmf_mode = \"info\"\n",
    )
    .unwrap();
    let mut dial = Termphone::builder(&["dial", &uri, "--dtmf", "9*0", "--duration", "2"])
        .global("--config")
        .global(cfg.display().to_string())
        .dir(dir.clone())
        .spawn();
    assert_eq!(dial.wait_exit_code(WAIT), 0, "{}", dial.diagnostics());
    srv.wait_call_state("hangupremote", WAIT);
    assert_eq!(digits(&mut srv), "9*0", "{}", srv.diagnostics());
    let trace = dial.stderr();
    assert_eq!(
        trace.matches("\nINFO sip:").count(),
        3,
        "one INFO per digit"
    );
    for d in ["Signal=9", "Signal=*", "Signal=0"] {
        assert!(trace.contains(d), "{d} in the INFO bodies");
    }
}
