//! The control socket of a real `termphone serve`: every verb against real calls between two
//! instances, errors that leave the connection usable, several clients, a client that never
//! reads, the socket file's rules (mode 0600, stale file replaced, live one refused, removed at
//! exit), and docs/control.md's examples sent to a real server. Loopback only; every process
//! is stopped by its own PID.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::{json, Value};

use support::control::{read_to_eof, serve_with_control, CtlClient};
use support::kamailio::{Kamailio, KamailioOpts};
use support::{test_dir, Termphone, TermphoneBuilder};

const WAIT: Duration = Duration::from_secs(20);

fn call_id(r: &Value) -> String {
    r["call"]
        .as_str()
        .unwrap_or_else(|| panic!("no call id in {r}"))
        .to_string()
}

/// The first `incoming` call event seen by `client`.
fn incoming(client: &mut CtlClient) -> String {
    let ev = client.wait_event(|e| e["event"] == "call" && e["state"] == "incoming", WAIT);
    call_id(&ev)
}

#[test]
fn every_verb_against_two_real_instances() {
    let dir = test_dir();
    // a answers at once and echoes; b rings until told to answer.
    let (mut a, a_sock) = serve_with_control(&dir, &["--echo"]);
    let (mut b, b_sock) = serve_with_control(&dir, &["--echo", "--answer-delay", "3600"]);
    let mut ca = CtlClient::connect(&a_sock);
    let mut cb = CtlClient::connect(&b_sock);

    // supports: the verbs that work, none of those that do not yet.
    let verbs = ca.ok(json!({"cmd": "supports"}))["verbs"].clone();
    assert_eq!(
        verbs,
        json!([
            "dial",
            "accept",
            "hangup",
            "dtmf",
            "hold",
            "activate",
            "mute",
            "record",
            "transfer",
            "join",
            "reject",
            "redirect",
            "register",
            "deregister",
            "denoise",
            "status",
            "calls",
            "supports",
            "subscribe",
            "unsubscribe"
        ])
    );
    // status before any call.
    let st = ca.ok(json!({"cmd": "status"}));
    assert_eq!(st["listen"], a.listen_addr().to_string(), "{st}");
    assert_eq!(st["transports"], json!(["udp", "tcp"]), "{st}");
    assert_eq!(st["accounts"], json!([]), "{st}");
    assert_eq!(st["calls"], json!([]), "{st}");

    assert_eq!(
        ca.ok(json!({"id": "sub", "cmd": "subscribe"})),
        json!({"id": "sub", "ok": true})
    );
    cb.ok(json!({"cmd": "subscribe"}));

    // dial a → b; b rings.
    let target = b.sip_uri("echo");
    let ca_call = call_id(&ca.ok(json!({"cmd": "dial", "to": target})));
    ca.wait_call(&ca_call, "dialing", WAIT);
    let cb_call = incoming(&mut cb);
    ca.wait_call(&ca_call, "alerting", WAIT);
    let calls = cb.ok(json!({"cmd": "calls"}))["calls"].clone();
    assert_eq!(calls.as_array().map(Vec::len), Some(1), "{calls}");
    assert_eq!(calls[0]["call"], cb_call.as_str());
    assert_eq!(calls[0]["direction"], "incoming");
    assert_eq!(calls[0]["state"], "incoming");
    assert_eq!(calls[0]["answered"], Value::Null);
    assert!(
        calls[0]["started"].as_u64().unwrap_or(0) > 1_600_000_000,
        "{calls}"
    );

    // accept it on b; both sides connect.
    cb.ok(json!({"cmd": "accept", "call": cb_call}));
    cb.wait_call(&cb_call, "connected", WAIT);
    ca.wait_call(&ca_call, "connected", WAIT);
    // accept again: it is not ringing any more.
    assert_eq!(
        cb.error(json!({"cmd": "accept", "call": cb_call})),
        format!("cannot accept {cb_call}: it is connected, not incoming")
    );

    // dtmf a → b, seen by b's subscriber.
    ca.ok(json!({"cmd": "dtmf", "call": ca_call, "digits": "12#"}));
    for digit in ["1", "2", "#"] {
        cb.wait_event(
            |e| e["event"] == "dtmf" && e["call"] == cb_call.as_str() && e["digit"] == digit,
            WAIT,
        );
    }
    // bad digits: the engine's own message.
    assert_eq!(
        ca.error(json!({"cmd": "dtmf", "call": ca_call, "digits": "12x"})),
        "invalid DTMF digits \"12x\" (allowed: 0-9 * # A-D)"
    );
    // denoise: this call sends silence, not a microphone (tests/e2e_device.rs switches it on
    // a real one); `on` must be a boolean.
    assert_eq!(
        ca.error(json!({"cmd": "denoise", "call": ca_call, "on": false})),
        format!(
            "call {ca_call}: noise suppression applies to a microphone; this call's audio \
             comes from a file, a tone, silence or an echo"
        )
    );
    assert_eq!(
        ca.error(json!({"cmd": "denoise", "call": ca_call, "on": "off"})),
        "`on` must be true or false, not a string"
    );
    assert_eq!(
        ca.error(json!({"cmd": "denoise", "call": ca_call})),
        "denoise needs `on` (true or false)"
    );
    assert_eq!(
        ca.error(json!({"cmd": "denoise", "call": "c99", "on": true})),
        "no such call: c99"
    );

    // calls and status on a show the connected outgoing call; its codec once media
    // statistics came (every 5 s).
    let calls = ca.ok(json!({"cmd": "calls"}))["calls"].clone();
    assert_eq!(calls[0]["call"], ca_call.as_str(), "{calls}");
    assert_eq!(calls[0]["direction"], "outgoing");
    assert_eq!(calls[0]["state"], "connected");
    assert_eq!(calls[0]["peer"], target.as_str());
    assert!(calls[0]["answered"].as_u64().is_some(), "{calls}");
    ca.wait_event(
        |e| e["event"] == "stats" && e["call"] == ca_call.as_str(),
        WAIT,
    );
    let st = ca.ok(json!({"cmd": "status"}));
    assert_eq!(st["calls"][0]["codec"], "opus", "the default codec: {st}");

    // hangup one call.
    assert_eq!(
        ca.ok(json!({"cmd": "hangup", "call": ca_call}))["call"],
        ca_call.as_str()
    );
    ca.wait_call(&ca_call, "hanguplocal", WAIT);
    cb.wait_call(&cb_call, "hangupremote", WAIT);
    assert_eq!(ca.ok(json!({"cmd": "calls"}))["calls"], json!([]));
    assert_eq!(
        ca.error(json!({"cmd": "hangup", "call": ca_call})),
        format!("no such call: {ca_call}")
    );

    // hangup without a call ends every call: two ringing ones are cancelled.
    let c1 = call_id(&ca.ok(json!({"cmd": "dial", "to": target})));
    let c2 = call_id(&ca.ok(json!({"cmd": "dial", "to": target})));
    ca.wait_call(&c1, "alerting", WAIT);
    ca.wait_call(&c2, "alerting", WAIT);
    let ended = ca.ok(json!({"cmd": "hangup"}))["calls"].clone();
    assert_eq!(ended, json!([c1, c2]));
    ca.wait_call(&c1, "hanguplocal", WAIT);
    ca.wait_call(&c2, "hanguplocal", WAIT);
    for _ in 0..2 {
        cb.wait_event(|e| e["event"] == "call" && e["state"] == "missed", WAIT);
    }
    assert_eq!(ca.ok(json!({"cmd": "hangup"}))["calls"], json!([]));

    // serve answers at once by its policy: accept of that call is a clear error.
    let to_a = a.sip_uri("echo");
    let b_out = call_id(&cb.ok(json!({"cmd": "dial", "to": to_a})));
    let a_in = incoming(&mut ca);
    ca.wait_call(&a_in, "connected", WAIT);
    assert_eq!(
        ca.error(json!({"cmd": "accept", "call": a_in})),
        format!("cannot accept {a_in}: it is connected, not incoming")
    );
    cb.wait_call(&b_out, "connected", WAIT);
    cb.ok(json!({"cmd": "hangup", "call": b_out}));
    ca.wait_call(&a_in, "hangupremote", WAIT);

    // unsubscribe: no more events on this connection.
    ca.ok(json!({"cmd": "unsubscribe"}));
    cb.ok(json!({"cmd": "dial", "to": to_a}));
    cb.wait_event(|e| e["event"] == "call" && e["state"] == "connected", WAIT);
    cb.ok(json!({"cmd": "hangup"}));
    cb.wait_event(
        |e| e["event"] == "call" && e["state"] == "hanguplocal",
        WAIT,
    );
    let before = ca.pending().len();
    ca.ok(json!({"cmd": "status"}));
    assert_eq!(
        ca.pending().len(),
        before,
        "no events after unsubscribe: {:?}",
        ca.pending()
    );

    drop((ca, cb));
    a.stop();
    b.stop();
    assert!(
        !a_sock.exists() && !b_sock.exists(),
        "sockets removed at exit"
    );
}

/// Through a real registrar: bob's account does not answer by itself (`auto_answer = "off"`),
/// so a call to it rings until `accept`; alice places it through her account with `dial`.
/// `status` shows both registered, `calls` and the events name each side's account.
#[test]
fn accept_a_call_to_an_account_that_does_not_answer_by_itself() {
    let k = Kamailio::start(KamailioOpts::default());
    let dir = k.dir_handle();
    let bob_cfg = k.account_config("bob", "password = \"bobpw\"\nauto_answer = \"off\"\n");
    let alice_cfg = k.account_config("alice", "password = \"alicepw\"\n");
    let start = |cfg: &std::path::Path, name: &str| {
        let sock = dir.path().join(format!("{name}.sock"));
        let mut tp =
            TermphoneBuilder::new(&["serve", "--echo", "--control", sock.to_str().unwrap()])
                .global("--config")
                .global(cfg.display().to_string())
                .dir(dir.clone())
                .spawn();
        tp.wait_event(
            |e| e["event"] == "registration" && e["state"] == "registered",
            WAIT,
        );
        (tp, sock)
    };
    let (mut bob, bob_sock) = start(&bob_cfg, "bob");
    let (mut alice, alice_sock) = start(&alice_cfg, "alice");
    let mut cb = CtlClient::connect(&bob_sock);
    let mut ca = CtlClient::connect(&alice_sock);
    let st = cb.ok(json!({"cmd": "status"}));
    let acc = &st["accounts"][0];
    assert_eq!(acc["name"], "bob", "{st}");
    assert_eq!(acc["user"], "bob");
    assert_eq!(acc["state"], "registered");
    assert_eq!(acc["reason"], Value::Null);
    assert!(acc["expires"].as_u64().unwrap_or(0) > 0, "{st}");
    assert_eq!(acc["registrar"], k.uri());
    cb.ok(json!({"cmd": "subscribe"}));
    ca.ok(json!({"cmd": "subscribe"}));

    let a_call = call_id(&ca.ok(json!({"cmd": "dial", "to": "bob", "account": "alice"})));
    let ev = ca.wait_call(&a_call, "dialing", WAIT);
    assert_eq!(ev["account"], "alice", "{ev}");
    let ev = cb.wait_event(|e| e["event"] == "call" && e["state"] == "incoming", WAIT);
    assert_eq!(ev["account"], "bob", "{ev}");
    let b_call = call_id(&ev);
    // It keeps ringing: nobody answers but us.
    std::thread::sleep(Duration::from_secs(2));
    let calls = cb.ok(json!({"cmd": "calls"}))["calls"].clone();
    assert_eq!(calls[0]["state"], "incoming", "{calls}");
    assert_eq!(calls[0]["account"], "bob", "{calls}");
    cb.ok(json!({"cmd": "accept", "call": b_call}));
    cb.wait_call(&b_call, "connected", WAIT);
    ca.wait_call(&a_call, "connected", WAIT);
    let calls = ca.ok(json!({"cmd": "calls"}))["calls"].clone();
    assert_eq!(calls[0]["account"], "alice", "{calls}");
    assert_eq!(calls[0]["direction"], "outgoing", "{calls}");
    ca.ok(json!({"cmd": "hangup"}));
    ca.wait_call(&a_call, "hanguplocal", WAIT);
    cb.wait_call(&b_call, "hangupremote", WAIT);
    drop((ca, cb));
    alice.stop();
    bob.stop();
}

#[test]
fn errors_are_clear_and_the_connection_stays_usable() {
    let dir = test_dir();
    let (_tp, sock) = serve_with_control(&dir, &["--echo"]);
    let mut c = CtlClient::connect(&sock);
    let cases: &[(&str, &str)] = &[
        (
            "not json",
            "bad JSON: expected ident at line 1 column 2",
        ),
        ("{\"id\":1", "bad JSON: EOF while parsing an object at line 1 column 7"),
        (
            "[1,2]",
            "a request must be a JSON object like {\"cmd\":\"status\"}, not an array",
        ),
        (
            "{\"id\":1}",
            "missing `cmd` (the verb, e.g. {\"cmd\":\"status\"})",
        ),
        ("{\"id\":2,\"cmd\":\"foo\"}", "unknown verb: foo"),
        ("{\"id\":3,\"cmd\":\"hangup\",\"call\":\"c99\"}", "no such call: c99"),
        ("{\"id\":4,\"cmd\":\"dtmf\",\"call\":\"c99\",\"digits\":\"1\"}", "no such call: c99"),
        ("{\"id\":5,\"cmd\":\"accept\",\"call\":\"c99\"}", "no such call: c99"),
        ("{\"id\":6,\"cmd\":\"dial\",\"to\":5}", "`to` must be a string, not a number"),
        (
            "{\"id\":7,\"cmd\":\"hangup\",\"call\":3}",
            "`call` must be a string like \"c3\", not a number",
        ),
        (
            "{\"id\":8,\"cmd\":\"dtmf\",\"call\":\"c1\",\"digits\":[1]}",
            "`digits` must be a string, not an array",
        ),
        (
            "{\"id\":9,\"cmd\":\"dial\",\"to\":\"sip:x@127.0.0.1\",\"acount\":\"w\"}",
            "unknown argument `acount` for dial (allowed: to, account, play, record)",
        ),
        (
            "{\"id\":10,\"cmd\":\"dial\",\"to\":\"sip:x@127.0.0.1\",\"account\":\"nope\"}",
            "no account named \"nope\" with a registrar in the configuration",
        ),
        (
            "{\"id\":11,\"cmd\":\"dial\",\"to\":\"sip:x@127.0.0.1\",\"play\":\"/nonexistent/a.wav\"}",
            "cannot play /nonexistent/a.wav: No such file or directory (os error 2)",
        ),
        (
            "{\"id\":12,\"cmd\":\"dial\",\"to\":\"sip:x@127.0.0.1\",\"record\":\"/nonexistent/b.wav\"}",
            "cannot record to /nonexistent/b.wav: /nonexistent is not a directory",
        ),
        ("{\"id\":[1],\"cmd\":\"status\"}", "`id` must be a number or a string, not an array"),
    ];
    for (line, want) in cases {
        let r = c.line(line);
        assert_eq!(r["ok"], false, "{line} -> {r}");
        assert_eq!(r["error"], *want, "{line} -> {r}");
        // The id is echoed when the request had a usable one.
        let id = serde_json::from_str::<Value>(line)
            .ok()
            .and_then(|v| v.get("id").cloned())
            .filter(|id| id.is_number() || id.is_string());
        assert_eq!(r.get("id").cloned(), id, "{line} -> {r}");
        // Still usable.
        assert_eq!(
            c.line("{\"cmd\":\"calls\"}"),
            json!({"ok": true, "calls": []})
        );
    }
    // The verbs that are not there yet.
    for verb in ["register", "deregister"] {
        assert_eq!(
            c.error(json!({"cmd": verb, "account": "nope"})),
            "no account named \"nope\" with a registrar in the configuration"
        );
        assert_eq!(
            c.error(json!({"cmd": verb})),
            format!("{verb} needs `account` (an account name of the config)")
        );
    }
    assert_eq!(
        c.error(json!({"cmd": "reject", "call": "c1", "code": 200})),
        "`code` must be a SIP status from 400 to 699, not 200"
    );
    assert_eq!(
        c.error(json!({"cmd": "reject", "call": "c1"})),
        "no such call: c1"
    );
    assert_eq!(
        c.error(json!({"cmd": "redirect", "call": "c1"})),
        "redirect needs `to` (a SIP URI or user@host)"
    );
    // hold, activate, mute: arguments checked, unknown calls named.
    for verb in ["hold", "activate", "mute", "record"] {
        assert_eq!(
            c.error(json!({"cmd": verb, "call": "c1"})),
            "no such call: c1"
        );
        assert_eq!(
            c.error(json!({"cmd": verb})),
            format!("{verb} needs `call` (a call id like \"c3\")")
        );
    }
    assert_eq!(
        c.error(json!({"cmd": "mute", "call": "c1", "on": 1})),
        "`on` must be true or false, not a number"
    );
    assert_eq!(
        c.error(json!({"cmd": "hold", "call": "c1", "on": true})),
        "unknown argument `on` for hold (allowed: call)"
    );
    // A string id and CRLF line ends are fine; blank lines are ignored.
    c.send_raw(b"\r\n\n");
    assert_eq!(
        c.line("{\"id\":\"abc\",\"cmd\":\"calls\"}\r"),
        json!({"id": "abc", "ok": true, "calls": []})
    );

    // A line over 64 KiB: an error, then the connection is closed.
    let mut long = Vec::from(&b"{\"cmd\":\"dial\",\"to\":\""[..]);
    long.resize(70 * 1024, b'x');
    long.extend_from_slice(b"\"}\n");
    c.send_raw(&long);
    let r = c.response(WAIT);
    assert_eq!(
        r,
        json!({"ok": false, "error": "request line too long (more than 65536 bytes); closing the connection"})
    );
    assert!(c.wait_closed(WAIT), "closed after the long line");
    // Others are unaffected.
    let mut c2 = CtlClient::connect(&sock);
    c2.ok(json!({"cmd": "status"}));
}

#[test]
fn several_clients_get_events_and_one_that_never_reads_stalls_nothing() {
    let dir = test_dir();
    let (mut a, sock) = serve_with_control(&dir, &["--echo"]);
    let mut b = Termphone::serve(&["--echo"]);
    let target = b.sip_uri("echo");
    let mut c1 = CtlClient::connect(&sock);
    let mut c2 = CtlClient::connect(&sock);
    c1.ok(json!({"cmd": "subscribe"}));
    c2.ok(json!({"cmd": "subscribe"}));

    // A subscriber that never reads anything.
    let mut idle = UnixStream::connect(&sock).unwrap();
    idle.write_all(b"{\"cmd\":\"subscribe\"}\n").unwrap();
    // And one that subscribes, floods requests and never reads their answers: its queue fills
    // and the server drops it.
    let mut flood = UnixStream::connect(&sock).unwrap();
    flood.write_all(b"{\"cmd\":\"subscribe\"}\n").unwrap();
    let mut writer = flood.try_clone().unwrap();
    let flooder = std::thread::spawn(move || {
        let line = b"{\"cmd\":\"status\"}\n".repeat(1000);
        for _ in 0..40 {
            if writer.write_all(&line).is_err() {
                break; // dropped: the server closed it
            }
        }
    });

    for _ in 0..3 {
        let call = call_id(&c1.ok(json!({"cmd": "dial", "to": target})));
        for c in [&mut c1, &mut c2] {
            c.wait_call(&call, "connected", WAIT);
        }
        c2.ok(json!({"cmd": "dtmf", "call": call, "digits": "5"}));
        b.wait_event(|e| e["event"] == "dtmf", WAIT);
        c2.ok(json!({"cmd": "hangup", "call": call}));
        for c in [&mut c1, &mut c2] {
            c.wait_call(&call, "hanguplocal", WAIT);
        }
    }
    // The flooding client was dropped (its connection ends after what was queued), with a
    // warning in the log.
    assert!(
        read_to_eof(&mut flood, Duration::from_secs(30)),
        "the flooding client is disconnected"
    );
    let _ = flooder.join();
    let log = std::fs::read_to_string(a.log_path()).unwrap_or_default();
    assert!(
        log.contains("dropped: it does not read"),
        "a warning names the dropped client:\n{log}"
    );
    // The idle subscriber (few events) is still connected, and the server still answers.
    idle.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let alive = match std::io::Read::read(&mut idle, &mut byte) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
    };
    assert!(alive, "the idle subscriber is still connected");
    c1.ok(json!({"cmd": "status"}));
    a.stop();
}

#[test]
fn the_socket_file_rules() {
    let dir = test_dir();
    let path = dir.path().join("ctl.sock");
    // A stale socket file (nobody listens) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(UnixStream::connect(&path).is_err(), "stale");
    let mut first = TermphoneBuilder::new(&["serve", "--control", path.to_str().unwrap()])
        .dir(dir.clone())
        .spawn();
    first.wait_event(|e| e["event"] == "control", WAIT);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    CtlClient::connect(&path).ok(json!({"cmd": "status"}));

    // A second instance on the same path fails clearly and exits 1.
    let mut second = TermphoneBuilder::new(&["serve", "--control", path.to_str().unwrap()])
        .dir(dir.clone())
        .spawn();
    assert_eq!(second.wait_exit_code(WAIT), 1);
    let err = second.stderr();
    assert!(
        err.contains(&format!(
            "another termphone is already answering on the control socket {}",
            path.display()
        )),
        "{err}"
    );
    assert!(second.events().iter().all(|e| e["event"] != "listening"));
    // The first one is unharmed.
    CtlClient::connect(&path).ok(json!({"cmd": "status"}));
    first.stop();
    assert!(!path.exists(), "removed at exit");

    // Something that is not a socket is not replaced.
    std::fs::write(&path, "keep me").unwrap();
    let mut third = TermphoneBuilder::new(&["serve", "--control", path.to_str().unwrap()])
        .dir(dir.clone())
        .spawn();
    assert_eq!(third.wait_exit_code(WAIT), 1);
    assert!(third.stderr().contains("exists and is not a socket"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");

    // The default path: $XDG_RUNTIME_DIR/termphone/control.sock, directory 0700.
    let run = dir.path().join("run");
    let mut dflt = TermphoneBuilder::new(&["serve"])
        .dir(dir.clone())
        .env("XDG_RUNTIME_DIR", run.display().to_string())
        .spawn();
    let ev = dflt.wait_event(|e| e["event"] == "control", WAIT);
    let sock = run.join("termphone/control.sock");
    assert_eq!(ev["path"], sock.display().to_string());
    let dmode = std::fs::metadata(run.join("termphone"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dmode & 0o777, 0o700, "dir mode {dmode:o}");
    CtlClient::connect(&sock).ok(json!({"cmd": "supports"}));
    dflt.stop();
    assert!(!sock.exists());

    // --no-control: no socket, no control event.
    let mut none = TermphoneBuilder::new(&["serve", "--no-control"])
        .dir(dir.clone())
        .env("XDG_RUNTIME_DIR", run.display().to_string())
        .spawn();
    none.listen_addr();
    assert!(none.events().iter().all(|e| e["event"] != "control"));
    assert!(!sock.exists());
    none.stop();
}

/// docs/control.md's example requests (```json request blocks, one request per line), sent in
/// order to a real instance; each response must have the shape of the documented one (the
/// ```json response block after it): the same keys with values of the same type, the same
/// `ok`, the same error text. Call ids in the examples are mapped to the real ones; the
/// examples' address 127.0.0.1:5070 is the echo instance's.
#[test]
fn docs_examples_get_documented_responses() {
    let doc = std::fs::read_to_string(support::repo_path("docs/control.md")).unwrap();
    let blocks = fenced_blocks(&doc);
    let pairs: Vec<(Vec<String>, Vec<String>)> = blocks
        .iter()
        .enumerate()
        .filter(|(_, (info, _))| info == "json request")
        .map(|(i, (_, body))| {
            let resp = blocks
                .get(i + 1)
                .filter(|(info, _)| info == "json response")
                .unwrap_or_else(|| panic!("request block {body:?} has no response block after it"));
            let lines = |s: &str| -> Vec<String> {
                s.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_string)
                    .collect()
            };
            (lines(body), lines(&resp.1))
        })
        .collect();
    assert!(pairs.len() >= 10, "docs/control.md has its examples");
    // Every documented event parses and names its kind.
    for (info, body) in &blocks {
        if info == "json event" {
            for l in body.lines().filter(|l| !l.trim().is_empty()) {
                let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
                assert!(v["event"].is_string(), "{l}");
            }
        }
    }

    let dir = test_dir();
    // The instance has an account (whose registrar refuses connections), so that `status`
    // shows one; both ring until told to answer.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[account]]\nname = \"work\"\nuser = \"1001\"\ndomain = \"127.0.0.1\"\n\
             registrar = \"sip:127.0.0.1:{port}\"\ntransport = \"tcp\"\n"
        ),
    )
    .unwrap();
    let (peer, peer_sock) = serve_with_control(&dir, &["--echo", "--answer-delay", "3600"]);
    let mut peer = peer;
    let peer_addr = peer.listen_addr().to_string();
    let sock = dir.path().join("docs.sock");
    let mut tp = TermphoneBuilder::new(&[
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
    tp.wait_event(
        |e| e["event"] == "registration" && e["state"] == "failed",
        WAIT,
    );
    let tp_addr = tp.listen_addr().to_string();
    let mut c = CtlClient::connect(&sock);
    let mut peer_ctl = CtlClient::connect(&peer_sock);
    peer_ctl.ok(json!({"cmd": "subscribe"}));
    // Documented call id -> this run's.
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    let mut seen = 0;
    for (requests, responses) in &pairs {
        assert_eq!(
            requests.len(),
            responses.len(),
            "one response line per request line: {requests:?}"
        );
        for (req, want) in requests.iter().zip(responses) {
            let mut want: Value =
                serde_json::from_str(want).unwrap_or_else(|e| panic!("{want}: {e}"));
            let mut line = req.clone();
            let mut cmd = String::new();
            if let Ok(mut v) = serde_json::from_str::<Value>(req) {
                cmd = v["cmd"].as_str().unwrap_or_default().to_string();
                // An `accept` example needs a call ringing here: the peer calls us.
                if cmd == "accept" && want["ok"] == true {
                    let doc_call = v["call"].as_str().unwrap().to_string();
                    peer_ctl.ok(json!({"cmd": "dial", "to": format!("sip:peer@{tp_addr}")}));
                    ids.insert(doc_call, wait_incoming(&mut c));
                }
                if let Some(to) = v["to"].as_str() {
                    v["to"] = json!(to.replace("127.0.0.1:5070", &peer_addr));
                }
                if let Some(real) = v["call"].as_str().and_then(|id| ids.get(id)) {
                    v["call"] = json!(real);
                }
                line = v.to_string();
            }
            let got = c.line(&line);
            // A call id the example's response introduces maps to this run's.
            if let (Some(d), Some(r)) = (want["call"].as_str(), got["call"].as_str()) {
                ids.insert(d.to_string(), r.to_string());
            }
            if let Some(e) = want["error"].as_str() {
                want["error"] = json!(map_call_ids(e, &ids));
            }
            assert_same_shape(
                &want,
                &got,
                &format!("{req}\n  documented: {want}\n  got: {got}"),
            );
            seen += 1;
            // After a dial, the peer answers before the next example (dtmf needs it).
            if cmd == "dial" && got["ok"] == true {
                let call = got["call"].as_str().unwrap().to_string();
                let real_in = incoming(&mut peer_ctl);
                peer_ctl.ok(json!({"cmd": "accept", "call": real_in}));
                wait_state(&mut c, &call, "connected");
            }
            // hold and activate answer at once; the re-INVITE's answer comes before the next
            // example (one re-INVITE at a time).
            if (cmd == "hold" || cmd == "activate") && got["ok"] == true {
                let call = got["call"].as_str().unwrap().to_string();
                let want = if cmd == "hold" { "hold" } else { "connected" };
                wait_state(&mut c, &call, want);
            }
        }
    }
    assert!(seen >= 20, "only {seen} example requests checked");
    drop(c);
    tp.stop();
    peer.stop();
}

/// `c12` words of a text replaced by their mapped ids, in one pass.
fn map_call_ids(text: &str, ids: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut word = String::new();
    for ch in text.chars().chain(std::iter::once(' ')) {
        if ch.is_ascii_alphanumeric() {
            word.push(ch);
            continue;
        }
        out.push_str(ids.get(&word).map(String::as_str).unwrap_or(&word));
        word.clear();
        out.push(ch);
    }
    out.pop();
    out
}

/// Wait (polling `calls`) until a call is `incoming` here; its id.
fn wait_incoming(c: &mut CtlClient) -> String {
    for _ in 0..400 {
        let calls = c.ok(json!({"cmd": "calls"}))["calls"].clone();
        if let Some(call) = calls
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["state"] == "incoming")
        {
            return call["call"].as_str().unwrap().to_string();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no incoming call");
}

/// Wait (polling `calls`) until `call` is in `state`.
fn wait_state(c: &mut CtlClient, call: &str, state: &str) {
    for _ in 0..400 {
        let calls = c.ok(json!({"cmd": "calls"}))["calls"].clone();
        if calls
            .as_array()
            .into_iter()
            .flatten()
            .any(|x| x["call"] == call && x["state"] == state)
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{call} never {state}");
}

/// The fenced code blocks of a Markdown text: (info string, body).
fn fenced_blocks(doc: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in doc.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(info)) => current = Some((info.trim().to_string(), String::new())),
            (Some(_), Some(_)) => out.push(current.take().unwrap()),
            (Some((_, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

/// Same keys (recursively), same JSON types (null in the documentation stands for a value
/// that may be null), equal `ok` and `error`, equal `id`.
fn assert_same_shape(want: &Value, got: &Value, ctx: &str) {
    for key in ["ok", "error", "id"] {
        assert_eq!(want.get(key), got.get(key), "`{key}` differs: {ctx}");
    }
    shape(want, got, "$", ctx);
}

fn shape(want: &Value, got: &Value, at: &str, ctx: &str) {
    match (want, got) {
        (Value::Null, _) | (_, Value::Null) => {}
        (Value::Object(w), Value::Object(g)) => {
            let wk: Vec<&String> = w.keys().collect();
            let gk: Vec<&String> = g.keys().collect();
            assert_eq!(wk, gk, "keys at {at}: {ctx}");
            for (k, wv) in w {
                shape(wv, &g[k], &format!("{at}.{k}"), ctx);
            }
        }
        (Value::Array(w), Value::Array(g)) => {
            if let (Some(w0), Some(g0)) = (w.first(), g.first()) {
                shape(w0, g0, &format!("{at}[0]"), ctx);
            }
        }
        (Value::String(_), Value::String(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::Bool(_), Value::Bool(_)) => {}
        _ => panic!("type at {at}: documented {want}, got {got}: {ctx}"),
    }
}
