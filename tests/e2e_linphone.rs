//! Interop with a real linphone (Debian `linphone-cli`, linphonec 5.1) on 127.0.0.1, for what
//! baresip 1.0 cannot do (issue 5): DTMF by SIP INFO in both directions, and attended
//! transfer (REFER with Replaces, RFC 3891) with linphone as the transferee and as the
//! transferor. linphonec is driven through its prompt (tests/support/linphone.rs); termphone
//! instances through their JSON events and control sockets.
//!
//! Each test returns early with "NOT RUN" when linphonec is not installed (and fails instead
//! when `CI` is set: CI installs it, scripts/install-deps.sh).

mod support;

use std::time::Duration;

use serde_json::Value;
use support::linphone::{skip_without_linphone, Linphone, LinphoneOpts};
use support::{test_dir, Termphone};

const WAIT: Duration = Duration::from_secs(20);

fn call_id(v: &Value) -> String {
    v["call"].as_str().unwrap().to_string()
}

/// The digits of serve's `dtmf` events, in order.
fn digits(t: &mut Termphone) -> String {
    t.events()
        .iter()
        .filter(|v| v["event"] == "dtmf")
        .filter_map(|v| v["digit"].as_str().map(str::to_owned))
        .collect()
}

/// The SIP messages of a `--sip-trace` (each one starts after a `--> ADDR (N bytes)` or
/// `<-- ADDR (N bytes)` line), in order.
fn sip_messages(trace: &str) -> Vec<String> {
    let mut msgs: Vec<String> = Vec::new();
    let mut cur: Option<String> = None;
    for line in trace.lines() {
        if (line.starts_with("--> ") || line.starts_with("<-- ")) && line.ends_with(" bytes)") {
            msgs.extend(cur.take());
            cur = Some(String::new());
        } else if let Some(m) = cur.as_mut() {
            m.push_str(line);
            m.push('\n');
        }
    }
    msgs.extend(cur);
    msgs
}

/// A header's value in one message (first occurrence, exact name).
fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// Every INFO request in `trace` (its body's `Signal=` value), and whether a `200 OK` with its
/// Call-ID and CSeq is in the trace too.
fn info_requests(trace: &str) -> Vec<(String, bool)> {
    let msgs = sip_messages(trace);
    msgs.iter()
        .filter(|m| m.starts_with("INFO sip:"))
        .map(|m| {
            let signal = m
                .lines()
                .find_map(|l| l.strip_prefix("Signal="))
                .unwrap_or_default()
                .trim()
                .to_owned();
            let key = (header(m, "Call-ID"), header(m, "CSeq"));
            let ok = msgs.iter().any(|r| {
                r.starts_with("SIP/2.0 200 ") && (header(r, "Call-ID"), header(r, "CSeq")) == key
            });
            (signal, ok)
        })
        .collect()
}

/// linphone (`use_info=1`) calls `termphone serve` and types 1, 5, #: serve reports each digit
/// once, in order, and its SIP trace shows three INFO requests with dtmf-relay bodies (not
/// RFC 4733 events), each answered 200.
#[test]
fn linphone_sends_dtmf_to_serve_by_sip_info() {
    if skip_without_linphone() {
        return;
    }
    let dir = test_dir();
    let mut srv = Termphone::builder(&["serve"]).dir(dir.clone()).spawn();
    let uri = srv.sip_uri("x");
    let mut lp = Linphone::start(&dir, LinphoneOpts::default().use_info(true));
    lp.send(&format!("call {uri}"));
    lp.wait_line(
        |l| l.starts_with("Call 1 with") && l.ends_with("connected."),
        WAIT,
    );
    let call = call_id(&srv.wait_call_state("connected", WAIT));
    // One digit per line: linphonec sends a line made of one DTMF character as that digit.
    for (n, d) in ["1", "5", "#"].into_iter().enumerate() {
        lp.send(d);
        srv.wait_event(
            |e| e["event"] == "dtmf" && e["call"] == call.as_str() && e["digit"] == d,
            WAIT,
        );
        assert_eq!(digits(&mut srv).len(), n + 1, "{}", srv.diagnostics());
    }
    lp.send("terminate");
    srv.wait_call_state("hangupremote", WAIT);
    lp.stop();
    srv.stop();
    assert_eq!(digits(&mut srv), "15#", "{}", srv.diagnostics());
    let trace = srv.stderr();
    assert_eq!(
        trace
            .matches("Content-Type: application/dtmf-relay")
            .count(),
        3,
        "dtmf-relay bodies"
    );
    // Three INFO requests, in order, each answered 200 OK.
    let infos = info_requests(&trace);
    let want: Vec<(String, bool)> = ["1", "5", "#"].map(|d| (d.to_owned(), true)).into();
    assert_eq!(infos, want, "INFO requests (signal, answered 200)");
    // And no RFC 4733 telephone-event in linphone's offer (use_rfc2833=0).
    assert!(
        !trace.contains("telephone-event"),
        "linphone offered RFC 4733 telephone-event:\n{trace}"
    );
}

/// `termphone dial` (account with `dtmf_mode = "info"`) calls linphone (auto-answer) with
/// `--dtmf 19#`: three INFO requests, each answered 200 by linphone, and linphonec prints
/// `Receiving tone D from ...` for each digit, in order.
#[test]
fn termphone_sends_dtmf_to_linphone_by_sip_info() {
    if skip_without_linphone() {
        return;
    }
    let dir = test_dir();
    let mut lp = Linphone::start(&dir, LinphoneOpts::default().autoanswer(true));
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        "[[account]]\nname = \"local\"\nuser = \"caller\"\ndtmf_mode = \"info\"\n",
    )
    .unwrap();
    let mut dial = Termphone::builder(&[
        "dial",
        &lp.sip_uri("linphone"),
        "--dtmf",
        "19#",
        "--duration",
        "3",
    ])
    .global("--config")
    .global(cfg.display().to_string())
    .dir(dir.clone())
    .spawn();
    assert_eq!(
        dial.wait_exit_code(WAIT),
        0,
        "{}\n{}",
        dial.diagnostics(),
        lp.diagnostics()
    );
    for d in ['1', '9', '#'] {
        lp.wait_line(|l| l.starts_with(&format!("Receiving tone {d} from")), WAIT);
    }
    lp.wait_line(
        |l| l.starts_with("Call 1 with") && l.contains("ended"),
        WAIT,
    );
    let got: String = lp
        .lines()
        .iter()
        .filter_map(|l| l.strip_prefix("Receiving tone "))
        .filter_map(|rest| rest.chars().next())
        .collect();
    assert_eq!(got, "19#", "{}", lp.diagnostics());
    lp.stop();
    let trace = dial.stderr();
    assert_eq!(
        trace
            .matches("Content-Type: application/dtmf-relay")
            .count(),
        3,
        "dtmf-relay bodies"
    );
    // linphone answered each INFO 200.
    let infos = info_requests(&trace);
    let want: Vec<(String, bool)> = ["1", "9", "#"].map(|d| (d.to_owned(), true)).into();
    assert_eq!(infos, want, "INFO requests (signal, answered 200)");
}
