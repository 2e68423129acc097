//! Interop with a real linphone (Debian `linphone-cli`, linphonec 5.1) on 127.0.0.1, for what
//! baresip 1.0 cannot do (issue 5): DTMF by SIP INFO in both directions, and attended
//! transfer (REFER with Replaces, RFC 3891) with linphone as the transferee and as the
//! transferor (directly, and the whole way behind Kamailio as registrar/proxy). linphonec is
//! driven through its prompt (tests/support/linphone.rs); termphone instances through their
//! JSON events and control sockets.
//!
//! Each test returns early with "NOT RUN" when linphonec (or, for the Kamailio test, kamailio)
//! is not installed (and fails instead when `CI` is set: CI installs them,
//! scripts/install-deps.sh).

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::control::{serve_with_control, CtlClient};
use support::kamailio::{kamailio_available, Kamailio, KamailioOpts, User, DOMAIN};
use support::linphone::{skip_without_linphone, Linphone, LinphoneAccount, LinphoneOpts};
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

/// The messages sent in a `--sip-trace` (after a `--> [TRANSPORT] ADDR (N bytes)` line), each
/// with ADDR.
fn sent_messages(trace: &str) -> Vec<(String, String)> {
    let mut msgs = Vec::new();
    let mut cur: Option<(String, String)> = None;
    for line in trace.lines() {
        if (line.starts_with("--> ") || line.starts_with("<-- ")) && line.ends_with(" bytes)") {
            msgs.extend(cur.take());
            if let Some(rest) = line.strip_prefix("--> ") {
                let addr = rest
                    .rsplit_once(" (")
                    .and_then(|(a, _)| a.split_whitespace().last())
                    .unwrap_or_default()
                    .to_owned();
                cur = Some((addr, String::new()));
            }
        } else if let Some((_, m)) = cur.as_mut() {
            m.push_str(line);
            m.push('\n');
        }
    }
    msgs.extend(cur);
    msgs
}

/// The transferee's side of an attended transfer in its trace (`msgs` of `trace`): a REFER
/// whose Refer-To carries Replaces, accepted with 202, and a NOTIFY sipfrag 100. Returns the
/// Refer-To.
fn assert_refer_accepted(msgs: &[String], trace: &str) -> String {
    let refer = msgs
        .iter()
        .find(|m| m.starts_with("REFER sip:"))
        .unwrap_or_else(|| panic!("no REFER arrived:\n{trace}"));
    let refer_to = header(refer, "Refer-To").unwrap_or_default().to_owned();
    assert!(
        refer_to.contains("?Replaces="),
        "Refer-To has Replaces: {refer_to}"
    );
    assert!(
        msgs.iter().any(|m| m.starts_with("SIP/2.0 202 ")
            && header(m, "CSeq").is_some_and(|v| v.ends_with(" REFER"))),
        "the REFER was accepted (202):\n{trace}"
    );
    assert!(
        msgs.iter().any(|m| m.starts_with("NOTIFY sip:")
            && header(m, "Event") == Some("refer")
            && m.contains("SIP/2.0 100 Trying")),
        "progress was reported (NOTIFY sipfrag 100):\n{trace}"
    );
    refer_to
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

/// Attended transfer with linphone as the transferee: termphone A calls linphone B
/// (auto-answer), holds it, calls termphone C, and transfers B to C with Replaces
/// (`transfer {call, with}`). linphone takes the REFER, calls C with a Replaces header naming
/// C's call with A; C takes that call in place of A's at once (no ringing) and ends A's; A's
/// calls both end; linphone is left with one call, to C, and C with one, from linphone.
#[test]
fn attended_transfer_with_linphone_as_transferee() {
    if skip_without_linphone() {
        return;
    }
    let dir = test_dir();
    let (mut a, a_sock) = serve_with_control(&dir, &[]);
    let (mut c, c_sock) = serve_with_control(&dir, &["--echo"]);
    let mut lp = Linphone::start(&dir, LinphoneOpts::default().name("b").autoanswer(true));
    let mut ca = CtlClient::connect(&a_sock);
    let mut cc = CtlClient::connect(&c_sock);
    for ctl in [&mut ca, &mut cc] {
        ctl.ok(json!({"cmd": "subscribe"}));
    }
    // A -> B (linphone answers by itself).
    let a1 = call_id(&ca.ok(json!({"cmd": "dial", "to": lp.sip_uri("b")})));
    ca.wait_call(&a1, "connected", WAIT);
    lp.wait_calls(
        "one running call",
        |cs| cs.len() == 1 && cs[0].state == "StreamsRunning",
        WAIT,
    );
    // A holds B and calls C (the consultation call).
    ca.ok(json!({"cmd": "hold", "call": a1}));
    ca.wait_call(&a1, "hold", WAIT);
    let a2 = call_id(&ca.ok(json!({"cmd": "dial", "to": c.sip_uri("c")})));
    ca.wait_call(&a2, "connected", WAIT);
    let c1 = call_id(&cc.wait_event(|e| e["event"] == "call" && e["state"] == "connected", WAIT));
    // Transfer B to C in place of A.
    ca.ok(json!({"cmd": "transfer", "call": a1, "with": a2}));
    // C: linphone's call comes in and is taken at once; the call with A ends.
    let inc = cc.wait_event(
        |e| e["event"] == "call" && e["state"] == "incoming" && e["call"] != c1.as_str(),
        WAIT,
    );
    let c2 = call_id(&inc);
    cc.wait_call(&c2, "connected", WAIT);
    cc.wait_call(&c1, "hanguplocal", WAIT);
    ca.wait_call(&a2, "hangupremote", WAIT);
    ca.wait_event(
        |e| e["event"] == "transfer" && e["call"] == a1.as_str() && e["state"] == "done",
        WAIT,
    );
    ca.wait_call(&a1, "hanguplocal", WAIT);
    // linphone: one call left, to C, running.
    let c_port = format!(":{}", c.listen_addr().port());
    let calls = lp.wait_calls(
        "one running call to C",
        |cs| cs.len() == 1 && cs[0].state == "StreamsRunning" && cs[0].remote.contains(&c_port),
        WAIT,
    );
    eprintln!("linphone's calls after the transfer: {calls:?}");
    // C never rang for it: no `ringing` state between incoming and connected of c2.
    let c2_states: Vec<String> = c
        .events()
        .iter()
        .filter(|e| e["event"] == "call" && e["call"] == c2.as_str())
        .filter_map(|e| e["state"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(c2_states[..2], ["incoming", "connected"], "{c2_states:?}");
    // Hang up from linphone: C sees it.
    lp.send("terminate");
    cc.wait_call(&c2, "hangupremote", WAIT);
    lp.stop();
    a.stop();
    c.stop();
    // On the wire: A's REFER to B carries Replaces in Refer-To; linphone's INVITE to C
    // carries a Replaces header naming C's dialog with A.
    let a_trace = a.stderr();
    let refer = sip_messages(&a_trace)
        .into_iter()
        .find(|m| m.starts_with("REFER sip:"))
        .unwrap_or_else(|| panic!("A sent no REFER:\n{a_trace}"));
    let refer_to = header(&refer, "Refer-To").unwrap_or_default().to_owned();
    assert!(
        refer_to.contains("Replaces="),
        "Refer-To has Replaces: {refer_to}"
    );
    let c_trace = c.stderr();
    let invites: Vec<String> = sip_messages(&c_trace)
        .into_iter()
        .filter(|m| m.starts_with("INVITE sip:"))
        .collect();
    let replacing = invites
        .iter()
        .find(|m| header(m, "Replaces").is_some())
        .unwrap_or_else(|| panic!("no INVITE with Replaces reached C:\n{c_trace}"));
    assert!(
        header(replacing, "User-Agent").is_some_and(|ua| ua.contains("Linphone")),
        "the replacing INVITE came from linphone:\n{replacing}"
    );
    // It names C's call with A: that dialog's Call-ID.
    let a_to_c = invites
        .iter()
        .find(|m| header(m, "Replaces").is_none())
        .expect("A's INVITE to C");
    let replaced_call_id = header(a_to_c, "Call-ID").unwrap();
    assert!(
        header(replacing, "Replaces")
            .unwrap()
            .starts_with(replaced_call_id),
        "Replaces names A's call to C ({replaced_call_id}):\n{replacing}"
    );
}

/// Attended transfer with linphone as the transferor, as far as it goes without a proxy:
/// linphone A calls termphone B, pauses it, calls termphone C, then `transfer 1 --to-call 2`.
/// linphone sends B a REFER whose Refer-To carries Replaces naming its dialog with C; B accepts
/// it (202, NOTIFY 100) and sends an INVITE with that Replaces header.
///
/// The INVITE cannot reach C here: linphonec 5.1 builds the Refer-To from the To of its call
/// with C, and that To drops the port it was told to call (`call sip:c@127.0.0.1:PORT` sends
/// `To: sip:c@127.0.0.1`), so the Refer-To is `sip:c@127.0.0.1?Replaces=...`, i.e. port 5060.
/// Behind a registrar/proxy (C's AOR) that is right; B's call from linphone has no account (B
/// is not registered), so B sends it straight to 127.0.0.1:5060. So this test stops at B's
/// INVITE; the whole exchange behind a registrar/proxy is
/// `linphone_as_transferor_through_kamailio` below.
#[test]
fn linphone_as_transferor_refers_termphone_with_replaces() {
    if skip_without_linphone() {
        return;
    }
    let dir = test_dir();
    let (mut b, b_sock) = serve_with_control(&dir, &["--echo"]);
    let (mut c, c_sock) = serve_with_control(&dir, &["--echo"]);
    let mut lp = Linphone::start(&dir, LinphoneOpts::default().name("a"));
    let mut cb = CtlClient::connect(&b_sock);
    let mut cc = CtlClient::connect(&c_sock);
    for ctl in [&mut cb, &mut cc] {
        ctl.ok(json!({"cmd": "subscribe"}));
    }
    // A -> B.
    lp.send(&format!("call {}", b.sip_uri("b")));
    lp.wait_line(
        |l| l.starts_with("Call 1 with") && l.ends_with("connected."),
        WAIT,
    );
    let b1 = call_id(&cb.wait_event(|e| e["event"] == "call" && e["state"] == "connected", WAIT));
    // A pauses B (linphonec refuses a second call while one is running: "Terminate or hold on
    // the current call first.") and calls C.
    lp.send("pause 1");
    lp.wait_line(
        |l| l.starts_with("Call 1 with") && l.ends_with("is now paused."),
        WAIT,
    );
    cb.wait_call(&b1, "remotehold", WAIT);
    lp.send(&format!("call {}", c.sip_uri("c")));
    lp.wait_line(
        |l| l.starts_with("Call 2 with") && l.ends_with("connected."),
        WAIT,
    );
    cc.wait_event(|e| e["event"] == "call" && e["state"] == "connected", WAIT);
    lp.wait_calls(
        "call 1 paused, call 2 running",
        |cs| {
            cs.len() == 2
                && cs.iter().any(|x| x.id == 1 && x.state == "Paused")
                && cs.iter().any(|x| x.id == 2 && x.state == "StreamsRunning")
        },
        WAIT,
    );
    lp.send("transfer 1 --to-call 2");
    // B follows the REFER with a new call.
    let t = cb.wait_event(
        |e| e["event"] == "transfer" && e["call"] == b1.as_str() && e["state"] == "transferring",
        WAIT,
    );
    assert_ne!(t["new_call"], b1.as_str(), "{t}");
    // Wait until B's INVITE is on the wire.
    let replaces_sent = support::wait_until(WAIT, || {
        let trace = b.stderr();
        sip_messages(&trace)
            .into_iter()
            .find(|m| m.starts_with("INVITE sip:c@") && header(m, "Replaces").is_some())
    })
    .unwrap_or_else(|| panic!("B sent no INVITE with Replaces\n{}", b.diagnostics()));
    lp.stop();
    b.stop();
    c.stop();
    let b_trace = b.stderr();
    let msgs = sip_messages(&b_trace);
    let refer_to = assert_refer_accepted(&msgs, &b_trace);
    // The Replaces header B sent is the one in the Refer-To (decoded), and it names
    // linphone's dialog with C: that INVITE's Call-ID and tags.
    let replaces = header(&replaces_sent, "Replaces").unwrap().to_owned();
    let encoded = refer_to
        .split("?Replaces=")
        .nth(1)
        .unwrap()
        .trim_end_matches('>');
    assert_eq!(
        replaces,
        encoded
            .replace("%3b", ";")
            .replace("%3d", "=")
            .replace("%3B", ";")
            .replace("%3D", "="),
        "Replaces header vs Refer-To"
    );
    let c_trace = c.stderr();
    let lp_to_c = sip_messages(&c_trace)
        .into_iter()
        .find(|m| m.starts_with("INVITE sip:"))
        .expect("linphone's INVITE to C");
    let call_id = header(&lp_to_c, "Call-ID").unwrap();
    let from_tag = header(&lp_to_c, "From")
        .and_then(|f| f.split(";tag=").nth(1))
        .unwrap();
    assert!(
        replaces.starts_with(&format!("{call_id};"))
            && replaces.contains(&format!("from-tag={from_tag}")),
        "Replaces {replaces} names linphone's call to C (Call-ID {call_id}, from-tag {from_tag})"
    );
}

/// Skip (true, "NOT RUN") when kamailio is missing; a failure instead when `CI` is set.
fn skip_without_kamailio() -> bool {
    if kamailio_available() {
        return false;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "kamailio is not installed: install the Debian package kamailio \
         (scripts/install-deps.sh)"
    );
    eprintln!("NOT RUN: kamailio is not installed");
    true
}

/// `serve --config CFG --echo` with a control socket, for an account of Kamailio's, once it
/// reports `registered` and Kamailio's location table has the user.
fn registered_serve(
    k: &Kamailio,
    user: &str,
    password: &str,
) -> (Termphone, std::path::PathBuf, CtlClient) {
    let cfg = k.account_config(user, &format!("password = \"{password}\"\n"));
    let cfg = cfg.display().to_string();
    let (mut t, sock) = serve_with_control(&k.dir_handle(), &["--config", &cfg, "--echo"]);
    t.wait_event(
        |e| e["event"] == "registration" && e["state"] == "registered",
        WAIT,
    );
    k.wait_registrations(WAIT, &format!("{user} registered"), |r| {
        r.iter().any(|b| b.aor == user)
    });
    let mut ctl = CtlClient::connect(&sock);
    ctl.ok(json!({"cmd": "subscribe"}));
    (t, sock, ctl)
}

/// The states of call `call` in a termphone's events, in order.
fn call_states(t: &mut Termphone, call: &str) -> Vec<String> {
    t.events()
        .iter()
        .filter(|e| e["event"] == "call" && e["call"] == call)
        .filter_map(|e| e["state"].as_str().map(str::to_owned))
        .collect()
}

/// Attended transfer with linphone as the transferor, the whole way, behind a registrar/proxy
/// (Kamailio, tests/kamailio/): linphone A, termphone B and termphone C (`serve --echo`) are
/// registered users a, b, c at 127.0.0.1. A calls `sip:b@127.0.0.1` and `sip:c@127.0.0.1`
/// through Kamailio (answering its 407s with its auth_info), pauses B, then `transfer 1
/// --to-call 2`. B takes the REFER (202, NOTIFY 100 Trying) and calls the Refer-To,
/// `sip:c@127.0.0.1` (the AoR: linphone builds it from the To of its call with C), as its
/// account b: through Kamailio (407, answered with b's password), which routes it to C by the
/// location table. C takes B's call in place of A's at once (`incoming` then `connected`, no
/// ringing) and ends A's; B reports the transfer done and A ends its call with B, so linphone
/// has no call left, and B and C are connected.
#[test]
fn linphone_as_transferor_through_kamailio() {
    if skip_without_linphone() || skip_without_kamailio() {
        return;
    }
    let users = [
        ("a", "alpha-pw-7"),
        ("b", "bravo-pw-7"),
        ("c", "charlie-pw-7"),
    ];
    let k = Kamailio::start(
        KamailioOpts::default().users(users.iter().map(|(u, p)| User::new(u, p)).collect()),
    );
    let (mut b, _b_sock, mut cb) = registered_serve(&k, "b", users[1].1);
    let (mut c, _c_sock, mut cc) = registered_serve(&k, "c", users[2].1);
    let mut lp = Linphone::start(
        &k.dir_handle(),
        LinphoneOpts::default().name("a").account(LinphoneAccount {
            proxy: k.uri(),
            username: "a".into(),
            domain: DOMAIN.into(),
            password: users[0].1.into(),
            expires: 600,
        }),
    );
    // linphonec 5.1 prints nothing when its account registers: its log says so.
    support::wait_until(WAIT, || {
        lp.log()
            .contains("to [LinphoneRegistrationOk]")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("linphone did not register\n{}", lp.diagnostics()));
    k.wait_registrations(WAIT, "a registered", |r| r.iter().any(|x| x.aor == "a"));
    // A -> B, by its AoR.
    lp.send(&format!("call {}", k.aor("b")));
    lp.wait_line(
        |l| l.starts_with("Call 1 with") && l.ends_with("connected."),
        WAIT,
    );
    let b1 = call_id(&cb.wait_event(|e| e["event"] == "call" && e["state"] == "connected", WAIT));
    // A pauses B and calls C, by its AoR.
    lp.send("pause 1");
    lp.wait_line(
        |l| l.starts_with("Call 1 with") && l.ends_with("is now paused."),
        WAIT,
    );
    cb.wait_call(&b1, "remotehold", WAIT);
    lp.send(&format!("call {}", k.aor("c")));
    lp.wait_line(
        |l| l.starts_with("Call 2 with") && l.ends_with("connected."),
        WAIT,
    );
    let c1 = call_id(&cc.wait_event(|e| e["event"] == "call" && e["state"] == "connected", WAIT));
    lp.wait_calls(
        "call 1 paused, call 2 running",
        |cs| {
            cs.len() == 2
                && cs.iter().any(|x| x.id == 1 && x.state == "Paused")
                && cs.iter().any(|x| x.id == 2 && x.state == "StreamsRunning")
        },
        WAIT,
    );
    lp.send("transfer 1 --to-call 2");
    // B follows the REFER with a new call, to C's AoR.
    let t = cb.wait_event(
        |e| e["event"] == "transfer" && e["call"] == b1.as_str() && e["state"] == "transferring",
        WAIT,
    );
    let b2 = t["new_call"].as_str().unwrap_or_default().to_owned();
    assert!(!b2.is_empty() && b2 != b1, "{t}");
    // C: B's call comes in and is taken at once in place of A's, which C ends.
    let inc = cc.wait_event(
        |e| e["event"] == "call" && e["state"] == "incoming" && e["call"] != c1.as_str(),
        WAIT,
    );
    let c2 = call_id(&inc);
    cc.wait_call(&c2, "connected", WAIT);
    cc.wait_call(&c1, "hanguplocal", WAIT);
    // B: its new call connects, and A, told so (NOTIFY 200, checked below), ends the old one.
    cb.wait_call(&b2, "connected", WAIT);
    cb.wait_call(&b1, "hangupremote", WAIT);
    // linphone: no call left.
    lp.wait_calls("no call", <[_]>::is_empty, WAIT);
    // C never rang for B's call.
    let c2_states = call_states(&mut c, &c2);
    assert_eq!(c2_states[..2], ["incoming", "connected"], "{c2_states:?}");
    // B hangs up: C sees it.
    cb.ok(json!({"cmd": "hangup", "call": b2}));
    cc.wait_call(&c2, "hangupremote", WAIT);
    cb.wait_call(&b2, "hanguplocal", WAIT);
    lp.stop();
    b.stop();
    c.stop();

    // On the wire, B: the REFER (through Kamailio) with Replaces in its Refer-To, 202 and a
    // NOTIFY 100; its INVITE to sip:c@127.0.0.1 went to Kamailio, was challenged (407) and
    // sent again with credentials, and carries the Replaces of the Refer-To.
    let b_trace = b.stderr();
    let k_addr = k.addr().to_string();
    let msgs = sip_messages(&b_trace);
    let refer_to = assert_refer_accepted(&msgs, &b_trace);
    assert!(
        refer_to.contains("sip:c@127.0.0.1?Replaces="),
        "Refer-To is C's AoR with Replaces: {refer_to}"
    );
    assert!(
        msgs.iter().any(|m| m.starts_with("NOTIFY sip:")
            && header(m, "Event") == Some("refer")
            && m.contains("SIP/2.0 200 OK")),
        "B reported success (NOTIFY sipfrag 200):\n{b_trace}"
    );
    // The messages B sent, with where to.
    let outgoing: Vec<(String, String)> = sent_messages(&b_trace);
    let invites: Vec<&(String, String)> = outgoing
        .iter()
        .filter(|(_, m)| {
            m.starts_with("INVITE sip:c@127.0.0.1 ") && header(m, "Replaces").is_some()
        })
        .collect();
    assert!(
        invites.len() >= 2,
        "B's INVITE with Replaces was challenged and sent again:\n{b_trace}"
    );
    for (to, m) in &invites {
        assert_eq!(to, &k_addr, "B's INVITE went to Kamailio:\n{m}");
    }
    assert!(
        msgs.iter().any(|m| m.starts_with("SIP/2.0 407 ")
            && header(m, "CSeq").is_some_and(|v| v.ends_with(" INVITE"))),
        "Kamailio challenged B's INVITE (407):\n{b_trace}"
    );
    assert!(
        header(&invites[invites.len() - 1].1, "Proxy-Authorization")
            .is_some_and(|v| v.contains("username=\"b\"")),
        "B answered the challenge as b:\n{}",
        invites[invites.len() - 1].1
    );
    // The Replaces header B sent is the Refer-To's (decoded).
    let replaces = header(&invites[0].1, "Replaces").unwrap().to_owned();
    let encoded = refer_to
        .split("?Replaces=")
        .nth(1)
        .unwrap()
        .trim_end_matches('>');
    assert_eq!(
        replaces,
        encoded
            .replace("%3b", ";")
            .replace("%3d", "=")
            .replace("%3B", ";")
            .replace("%3D", "="),
        "Replaces header vs Refer-To"
    );
    // On the wire, C: linphone's INVITE (via Kamailio) and B's, whose Replaces names the first
    // one's dialog (Call-ID and from-tag).
    let c_trace = c.stderr();
    let c_invites: Vec<String> = sip_messages(&c_trace)
        .into_iter()
        .filter(|m| m.starts_with("INVITE sip:"))
        .collect();
    let from_a = c_invites
        .iter()
        .find(|m| header(m, "Replaces").is_none())
        .unwrap_or_else(|| panic!("linphone's INVITE to C:\n{c_trace}"));
    assert!(
        header(from_a, "User-Agent").is_some_and(|ua| ua.contains("Linphone")),
        "the first INVITE came from linphone:\n{from_a}"
    );
    let from_b = c_invites
        .iter()
        .find(|m| header(m, "Replaces").is_some())
        .unwrap_or_else(|| panic!("B's INVITE with Replaces did not reach C:\n{c_trace}"));
    assert!(
        header(from_b, "From").is_some_and(|f| f.contains("sip:b@127.0.0.1")),
        "C's replacing INVITE is from b:\n{from_b}"
    );
    let call_id = header(from_a, "Call-ID").unwrap();
    let from_tag = header(from_a, "From")
        .and_then(|f| f.split(";tag=").nth(1))
        .unwrap();
    let got = header(from_b, "Replaces").unwrap();
    assert!(
        got.starts_with(&format!("{call_id};")) && got.contains(&format!("from-tag={from_tag}")),
        "Replaces {got} names linphone's call to C (Call-ID {call_id}, from-tag {from_tag})"
    );
}
