//! Blind transfer (REFER, RFC 3515, with NOTIFY sipfrag progress) among three termphone
//! instances on 127.0.0.1: A calls B; B transfers A to C; A calls C by itself (Referred-By),
//! tells B how it goes, and B's call ends once C answered; A and C talk (C's recording holds
//! A's tone).

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use support::audio::{read_wav_mono, tone_coverage};
use support::control::{serve_with_control, CtlClient};
use support::{is_event, test_dir};

const WAIT: Duration = Duration::from_secs(20);

fn call_id(v: &Value) -> String {
    v["call"].as_str().unwrap().to_string()
}

#[test]
fn blind_transfer_a_talks_to_c_and_b_drops_out() {
    let dir = test_dir();
    let tone = dir.path().join("a-tone.wav");
    support::audio::write_tone_wav(&tone, 700.0, 0.3, 30.0);
    let rec = dir.path().join("c-rec");
    std::fs::create_dir(&rec).unwrap();
    let (mut a, a_sock) = serve_with_control(&dir, &[]);
    let (mut b, b_sock) = serve_with_control(&dir, &["--echo"]);
    let (mut c, c_sock) = serve_with_control(
        &dir,
        &["--codec", "PCMU", "--record", rec.to_str().unwrap()],
    );
    let mut ca = CtlClient::connect(&a_sock);
    let mut cb = CtlClient::connect(&b_sock);
    let mut cc = CtlClient::connect(&c_sock);
    for ctl in [&mut ca, &mut cb, &mut cc] {
        ctl.ok(json!({"cmd": "subscribe"}));
    }
    let a1 = call_id(&ca.ok(json!({"cmd": "dial", "to": b.sip_uri("b"), "play": tone})));
    ca.wait_call(&a1, "connected", WAIT);
    let b1 = call_id(&cb.wait_event(|e| e["event"] == "call" && e["state"] == "connected", WAIT));

    // Transferring a call that does not exist, or to nowhere, is an error.
    assert_eq!(
        cb.error(json!({"cmd": "transfer", "call": "c42", "to": "sip:x@127.0.0.1"})),
        "no such call: c42"
    );
    assert_eq!(
        cb.error(json!({"cmd": "transfer", "call": b1})),
        "transfer needs either `to` (a SIP URI, user@host, or a number at the call's account) \
         or `with` (another call id, for an attended transfer)"
    );

    let c_uri = c.sip_uri("c");
    cb.ok(json!({"cmd": "transfer", "call": b1, "to": c_uri}));
    cb.wait_event(
        |e| e["event"] == "transfer" && e["call"] == b1.as_str() && e["state"] == "requested",
        WAIT,
    );
    // A follows the REFER with a new call to C.
    let t = ca.wait_event(
        |e| e["event"] == "transfer" && e["call"] == a1.as_str() && e["state"] == "transferring",
        WAIT,
    );
    let a2 = call_id(&json!({"call": t["new_call"]}));
    assert_ne!(a2, a1);
    ca.wait_call(&a2, "connected", WAIT);
    let c1 = call_id(&cc.wait_event(|e| e["event"] == "call" && e["state"] == "connected", WAIT));
    // B hears it went through and leaves; A's first call ends by B's BYE.
    cb.wait_event(
        |e| e["event"] == "transfer" && e["call"] == b1.as_str() && e["state"] == "accepted",
        WAIT,
    );
    cb.wait_event(
        |e| e["event"] == "transfer" && e["call"] == b1.as_str() && e["state"] == "done",
        WAIT,
    );
    cb.wait_call(&b1, "hanguplocal", WAIT);
    ca.wait_call(&a1, "hangupremote", WAIT);

    // A and C talk for 2 s, then A hangs up.
    std::thread::sleep(Duration::from_secs(2));
    ca.ok(json!({"cmd": "hangup", "call": a2}));
    cc.wait_call(&c1, "hangupremote", WAIT);
    let path = c.wait_event(is_event("recording"), WAIT)["path"]
        .as_str()
        .unwrap()
        .to_string();
    a.stop();
    b.stop();
    c.stop();

    // On the wire: the REFER with Refer-To, A's INVITE to C with Referred-By, NOTIFY sipfrags.
    let b_trace = b.stderr();
    assert!(b_trace.contains("REFER sip:"), "B sent a REFER");
    assert!(b_trace.contains("Refer-To: <sip:c@"), "{b_trace}");
    assert!(b_trace.contains("SIP/2.0 202 Accepted"), "A accepted it");
    assert!(b_trace.contains("SIP/2.0 200 OK\r\n") || b_trace.contains("SIP/2.0 200 OK"));
    assert!(
        b_trace.contains("Content-Type: message/sipfrag"),
        "A's NOTIFYs"
    );
    let c_trace = c.stderr();
    assert!(
        c_trace.contains("Referred-By: <sip:"),
        "A's INVITE says who referred it"
    );

    let (rate, heard) = read_wav_mono(Path::new(&path)).unwrap();
    let body = &heard[(rate as usize / 2).min(heard.len())..];
    let cov = tone_coverage(body, rate, 700.0, 0.5, 100);
    assert!(cov > 0.8, "C hears A's tone: coverage {cov:.2}");
}

/// An account that says `accept_transfer = false` refuses the REFER (603) and stays in the
/// call; the transferor sees the transfer fail with that code.
#[test]
fn a_transfer_refused_by_the_account_leaves_the_call_up() {
    let dir = test_dir();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        "[[account]]\nname = \"local\"\nuser = \"a\"\naccept_transfer = false\n",
    )
    .unwrap();
    let a_sock = dir.path().join("a.sock");
    let mut a = support::TermphoneBuilder::new(&["serve", "--control", a_sock.to_str().unwrap()])
        .global("--config")
        .global(cfg.display().to_string())
        .dir(dir.clone())
        .spawn();
    a.wait_event(|e| e["event"] == "control", WAIT);
    let (mut b, b_sock) = serve_with_control(&dir, &["--echo"]);
    let mut ca = CtlClient::connect(&a_sock);
    let mut cb = CtlClient::connect(&b_sock);
    ca.ok(json!({"cmd": "subscribe"}));
    cb.ok(json!({"cmd": "subscribe"}));
    let a1 = call_id(&ca.ok(json!({"cmd": "dial", "to": b.sip_uri("b")})));
    ca.wait_call(&a1, "connected", WAIT);
    let b1 = call_id(&cb.wait_event(|e| e["event"] == "call" && e["state"] == "connected", WAIT));
    cb.ok(json!({"cmd": "transfer", "call": b1, "to": "sip:c@127.0.0.1:9"}));
    cb.wait_event(
        |e| e["event"] == "transfer" && e["state"] == "failed" && e["code"] == 603,
        WAIT,
    );
    ca.wait_event(
        |e| e["event"] == "transfer" && e["state"] == "refused" && e["call"] == a1.as_str(),
        WAIT,
    );
    // Both still talk.
    let calls = cb.ok(json!({"cmd": "calls"}))["calls"].clone();
    assert_eq!(calls[0]["state"], "connected", "{calls}");
    ca.ok(json!({"cmd": "hangup", "call": a1}));
    cb.wait_call(&b1, "hangupremote", WAIT);
    a.stop();
    b.stop();
}

/// Attended transfer (RFC 3891): A calls B; B calls C; B transfers A to C with Replaces. A
/// calls C with a Replaces header naming C's call with B; C takes A's call in its place (no
/// ringing, same audio: its recording goes on in a new file) and ends the one with B; B's
/// calls both end. A and C talk.
#[test]
fn attended_transfer_replaces_bs_call_with_c() {
    let dir = test_dir();
    let tone = dir.path().join("a-tone.wav");
    support::audio::write_tone_wav(&tone, 700.0, 0.3, 30.0);
    let rec = dir.path().join("c-rec");
    std::fs::create_dir(&rec).unwrap();
    let (mut a, a_sock) = serve_with_control(&dir, &[]);
    let (mut b, b_sock) = serve_with_control(&dir, &["--echo"]);
    let (mut c, c_sock) = serve_with_control(
        &dir,
        &["--codec", "PCMU", "--record", rec.to_str().unwrap()],
    );
    let mut ca = CtlClient::connect(&a_sock);
    let mut cb = CtlClient::connect(&b_sock);
    let mut cc = CtlClient::connect(&c_sock);
    for ctl in [&mut ca, &mut cb, &mut cc] {
        ctl.ok(json!({"cmd": "subscribe"}));
    }
    // A -> B.
    let a1 = call_id(&ca.ok(json!({"cmd": "dial", "to": b.sip_uri("b"), "play": tone})));
    ca.wait_call(&a1, "connected", WAIT);
    let b1 = call_id(&cb.wait_event(|e| e["event"] == "call" && e["state"] == "connected", WAIT));
    // B -> C (the consultation call; B holds A meanwhile, as a phone would).
    cb.ok(json!({"cmd": "hold", "call": b1}));
    cb.wait_call(&b1, "hold", WAIT);
    let b2 = call_id(&cb.ok(json!({"cmd": "dial", "to": c.sip_uri("c")})));
    cb.wait_call(&b2, "connected", WAIT);
    let c1 = call_id(&cc.wait_event(|e| e["event"] == "call" && e["state"] == "connected", WAIT));
    // Transfer A to C in place of B.
    assert_eq!(
        cb.error(json!({"cmd": "transfer", "call": b1, "with": b1})),
        format!("call {b1}: a call cannot be transferred to itself")
    );
    cb.ok(json!({"cmd": "transfer", "call": b1, "with": b2}));
    let t = ca.wait_event(
        |e| e["event"] == "transfer" && e["call"] == a1.as_str() && e["state"] == "transferring",
        WAIT,
    );
    let a2 = call_id(&json!({"call": t["new_call"]}));
    ca.wait_call(&a2, "connected", WAIT);
    // C: the new call comes in and is taken at once; the call with B ends.
    let c2 = call_id(&cc.wait_event(
        |e| e["event"] == "call" && e["state"] == "incoming" && e["call"] != c1.as_str(),
        WAIT,
    ));
    cc.wait_call(&c2, "connected", WAIT);
    cc.wait_call(&c1, "hanguplocal", WAIT);
    cb.wait_call(&b2, "hangupremote", WAIT);
    cb.wait_event(
        |e| e["event"] == "transfer" && e["call"] == b1.as_str() && e["state"] == "done",
        WAIT,
    );
    cb.wait_call(&b1, "hanguplocal", WAIT);
    ca.wait_call(&a1, "hangupremote", WAIT);
    std::thread::sleep(Duration::from_secs(2));
    ca.ok(json!({"cmd": "hangup", "call": a2}));
    cc.wait_call(&c2, "hangupremote", WAIT);
    a.stop();
    b.stop();
    c.stop();
    let a_trace = a.stderr();
    assert!(
        a_trace.contains("\nReplaces: "),
        "A's INVITE carries Replaces"
    );
    // C's recording of the call with A (the second file: named after A's call).
    let files: Vec<_> = std::fs::read_dir(&rec)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(&format!("-{c2}.wav")))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let (rate, heard) = read_wav_mono(&files[0]).unwrap();
    let body = &heard[(rate as usize / 2).min(heard.len())..];
    let cov = tone_coverage(body, rate, 700.0, 0.5, 100);
    assert!(cov > 0.8, "C hears A's tone: coverage {cov:.2}");
}

/// `accept_transfer = "ask"`: the REFER waits; a `transfer` event says `asked` with the
/// target; `transfer {call, accept: true}` follows it (and `accept: false` would refuse it).
#[test]
fn an_asked_transfer_waits_for_the_answer() {
    let dir = test_dir();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        "[[account]]\nname = \"local\"\nuser = \"a\"\naccept_transfer = \"ask\"\n",
    )
    .unwrap();
    let a_sock = dir.path().join("a.sock");
    let mut a = support::TermphoneBuilder::new(&["serve", "--control", a_sock.to_str().unwrap()])
        .global("--config")
        .global(cfg.display().to_string())
        .dir(dir.clone())
        .spawn();
    a.wait_event(|e| e["event"] == "control", WAIT);
    let (mut b, b_sock) = serve_with_control(&dir, &["--echo"]);
    let (mut c, _) = serve_with_control(&dir, &["--echo"]);
    let mut ca = CtlClient::connect(&a_sock);
    let mut cb = CtlClient::connect(&b_sock);
    ca.ok(json!({"cmd": "subscribe"}));
    cb.ok(json!({"cmd": "subscribe"}));
    let a1 = call_id(&ca.ok(json!({"cmd": "dial", "to": b.sip_uri("b")})));
    ca.wait_call(&a1, "connected", WAIT);
    let b1 = call_id(&cb.wait_event(|e| e["event"] == "call" && e["state"] == "connected", WAIT));
    // Nothing asked yet.
    assert_eq!(
        ca.error(json!({"cmd": "transfer", "call": a1, "accept": true})),
        format!("call {a1}: no transfer is waiting for an answer")
    );
    let c_uri = c.sip_uri("c");
    cb.ok(json!({"cmd": "transfer", "call": b1, "to": c_uri}));
    let asked = ca.wait_event(
        |e| e["event"] == "transfer" && e["state"] == "asked" && e["call"] == a1.as_str(),
        WAIT,
    );
    assert!(
        asked["to"].as_str().unwrap_or_default().contains("sip:c@"),
        "{asked}"
    );
    ca.ok(json!({"cmd": "transfer", "call": a1, "accept": true}));
    let t = ca.wait_event(
        |e| e["event"] == "transfer" && e["state"] == "transferring",
        WAIT,
    );
    let a2 = call_id(&json!({"call": t["new_call"]}));
    ca.wait_call(&a2, "connected", WAIT);
    cb.wait_call(&b1, "hanguplocal", WAIT);
    ca.ok(json!({"cmd": "hangup", "call": a2}));
    c.wait_call_state("hangupremote", WAIT);
    a.stop();
    b.stop();
    c.stop();
}
