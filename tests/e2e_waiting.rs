//! Several calls at once on one instance driven over its control socket, as a person at a
//! phone would: a second call rings while the first talks (call waiting), accepting it holds
//! the first, `activate` switches back (holding the second), and a call beyond
//! `[general] max_calls` is turned away busy. Real termphone callers on 127.0.0.1.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::control::CtlClient;
use support::{test_dir, Termphone, TermphoneBuilder};

const WAIT: Duration = Duration::from_secs(20);

fn states(t: &mut Termphone) -> Vec<String> {
    t.events()
        .iter()
        .filter(|e| e["event"] == "call")
        .map(|e| e["state"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn incoming(c: &mut CtlClient) -> String {
    c.wait_event(
        |e: &Value| e["event"] == "call" && e["state"] == "incoming",
        WAIT,
    )["call"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn call_waiting_switching_and_busy_beyond_max_calls() {
    let dir = test_dir();
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "[general]\nmax_calls = 2\n").unwrap();
    let sock = dir.path().join("phone.sock");
    // The "phone": rings until answered by hand, echoes what it hears.
    let mut phone = TermphoneBuilder::new(&[
        "serve",
        "--echo",
        "--answer-delay",
        "3600",
        "--control",
        sock.to_str().unwrap(),
    ])
    .global("--config")
    .global(cfg.display().to_string())
    .dir(dir.clone())
    .spawn();
    phone.wait_event(|e| e["event"] == "control", WAIT);
    let uri = phone.sip_uri("me");
    let mut ctl = CtlClient::connect(&sock);
    ctl.ok(json!({"cmd": "subscribe"}));
    let caller = || {
        TermphoneBuilder::new(&["dial", &uri, "--duration", "30", "--listen", "127.0.0.1:0"])
            .dir(dir.clone())
            .spawn()
    };

    // First call: answered, talking.
    let mut first = caller();
    let c1 = incoming(&mut ctl);
    ctl.ok(json!({"cmd": "accept", "call": c1}));
    ctl.wait_call(&c1, "connected", WAIT);
    first.wait_call_state("connected", WAIT);

    // Second call: rings while the first talks.
    let mut second = caller();
    let c2 = incoming(&mut ctl);
    let calls = ctl.ok(json!({"cmd": "calls"}))["calls"].clone();
    let state_of = |calls: &Value, c: &str| -> String {
        calls
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["call"] == c)
            .map(|x| x["state"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert_eq!(state_of(&calls, &c1), "connected", "{calls}");
    assert_eq!(state_of(&calls, &c2), "incoming", "{calls}");

    // A third while two are there: busy (max_calls = 2), and the phone shows it came.
    let mut third = caller();
    assert_eq!(third.wait_exit_code(WAIT), 3, "{}", third.diagnostics());
    let c3 = incoming(&mut ctl);
    ctl.wait_event(
        |e| e["event"] == "call" && e["call"] == c3.as_str() && e["code"] == 486,
        WAIT,
    );

    // Accept the waiting call: the first goes on hold.
    ctl.ok(json!({"cmd": "accept", "call": c2}));
    ctl.wait_call(&c2, "connected", WAIT);
    ctl.wait_call(&c1, "hold", WAIT);
    first.wait_call_state("remotehold", WAIT);

    // Switch back: the second goes on hold, the first talks again.
    ctl.ok(json!({"cmd": "activate", "call": c1}));
    ctl.wait_call(&c2, "hold", WAIT);
    ctl.wait_call(&c1, "connected", WAIT);
    second.wait_call_state("remotehold", WAIT);
    first.wait_call_state("connected", WAIT);

    // End both from the phone.
    let ended = ctl.ok(json!({"cmd": "hangup"}))["calls"].clone();
    assert_eq!(ended.as_array().map(Vec::len), Some(2), "{ended}");
    assert_eq!(first.wait_exit_code(WAIT), 0, "{}", first.diagnostics());
    assert_eq!(second.wait_exit_code(WAIT), 0, "{}", second.diagnostics());
    assert_eq!(
        states(&mut first),
        [
            "dialing",
            "alerting",
            "connected",
            "remotehold",
            "connected",
            "hangupremote"
        ]
    );
    assert_eq!(
        states(&mut second),
        [
            "dialing",
            "alerting",
            "connected",
            "remotehold",
            "hangupremote"
        ]
    );
    phone.stop();
}

/// A ringing call turned away with a chosen code (the caller's exit status says declined), and
/// one sent elsewhere with 302 (the caller follows it and talks to the other phone).
#[test]
fn reject_with_a_code_and_redirect_a_ringing_call() {
    let dir = test_dir();
    let sock = dir.path().join("phone.sock");
    let mut phone = TermphoneBuilder::new(&[
        "serve",
        "--echo",
        "--answer-delay",
        "3600",
        "--control",
        sock.to_str().unwrap(),
    ])
    .dir(dir.clone())
    .spawn();
    phone.wait_event(|e| e["event"] == "control", WAIT);
    let uri = phone.sip_uri("me");
    let mut other = TermphoneBuilder::new(&["serve", "--echo"])
        .dir(dir.clone())
        .spawn();
    let other_uri = other.sip_uri("desk");
    let mut ctl = CtlClient::connect(&sock);
    ctl.ok(json!({"cmd": "subscribe"}));

    let mut first = TermphoneBuilder::new(&["dial", &uri, "--duration", "1"])
        .dir(dir.clone())
        .spawn();
    let c1 = incoming(&mut ctl);
    let r = ctl.ok(json!({"cmd": "reject", "call": c1, "code": 603}));
    assert_eq!(r["code"], 603);
    assert_eq!(
        first.wait_exit_code(WAIT),
        4,
        "declined: {}",
        first.diagnostics()
    );

    let mut second = TermphoneBuilder::new(&["dial", &uri, "--duration", "1"])
        .dir(dir.clone())
        .spawn();
    let c2 = incoming(&mut ctl);
    ctl.ok(json!({"cmd": "redirect", "call": c2, "to": other_uri}));
    ctl.wait_event(
        |e| e["event"] == "call" && e["call"] == c2.as_str() && e["code"] == 302,
        WAIT,
    );
    assert_eq!(second.wait_exit_code(WAIT), 0, "{}", second.diagnostics());
    assert!(second.events().iter().any(|e| e["event"] == "redirect"));
    other.wait_call_state("hangupremote", WAIT);
    phone.stop();
    other.stop();
}
