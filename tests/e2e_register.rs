//! Registration against a real Kamailio on 127.0.0.1 (tests/kamailio/, started and stopped by
//! the test by its own PID): REGISTER with digest auth (MD5 and SHA-256), the binding in
//! Kamailio's location table, unregister at exit, and a wrong password reported as such
//! without a retry loop. The password never appears in any output.

mod support;

use std::time::Duration;

use support::kamailio::{Kamailio, KamailioOpts};
use support::Termphone;

const WAIT: Duration = Duration::from_secs(20);

/// A config file with one account of `user` at the fixture's registrar, password in the file.
fn config_for(k: &Kamailio, user: &str, password: &str) -> std::path::PathBuf {
    k.account_config(user, &format!("password = \"{password}\"\n"))
}

fn registers_and_unregisters(opts: KamailioOpts) {
    let k = Kamailio::start(opts);
    let cfg = config_for(&k, "alice", "alicepw");
    let mut srv = Termphone::builder(&["serve", "--echo"])
        .global("--config")
        .global(cfg.display().to_string())
        .dir(k.dir_handle())
        .spawn();
    let ev = srv.wait_event(
        |e| e["event"] == "registration" && e["state"] == "registered",
        WAIT,
    );
    assert_eq!(ev["account"], "alice");
    assert!(ev["expires"].as_u64().unwrap_or(0) > 0, "{ev}");
    let regs = k.wait_registrations(WAIT, "alice registered", |r| {
        r.iter().any(|b| b.aor == "alice")
    });
    let contact = &regs.iter().find(|b| b.aor == "alice").unwrap().contact;
    assert!(
        contact.contains(&srv.listen_addr().port().to_string()),
        "the Contact is serve's address: {contact}"
    );
    // SIGTERM: unregister (Expires: 0) before exiting.
    srv.stop();
    k.wait_registrations(WAIT, "empty after exit", |r| {
        !r.iter().any(|b| b.aor == "alice")
    });
    let log = std::fs::read_to_string(srv.log_path()).unwrap_or_default();
    let events = format!("{:?}", srv.events());
    let out = format!("{}\n{events}\n{log}", srv.stderr());
    assert!(!out.contains("alicepw"), "the password leaked into output");
}

#[test]
fn registers_with_md5_digest_and_unregisters_at_exit() {
    registers_and_unregisters(KamailioOpts::default());
}

#[test]
fn registers_with_sha256_digest() {
    registers_and_unregisters(KamailioOpts::default().sha256());
}

#[test]
fn wrong_password_is_reported_and_not_retried() {
    let k = Kamailio::start(KamailioOpts::default());
    let cfg = config_for(&k, "bob", "not-bobs-password");
    let mut srv = Termphone::builder(&["serve"])
        .global("--config")
        .global(cfg.display().to_string())
        .dir(k.dir_handle())
        .spawn();
    let ev = srv.wait_event(
        |e| e["event"] == "registration" && e["state"] == "failed",
        WAIT,
    );
    let reason = ev["reason"].as_str().unwrap_or_default().to_lowercase();
    assert!(
        reason.contains("password"),
        "the reason names the password: {ev}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let registers = srv.stderr().matches("\nREGISTER sip:").count();
    assert!(registers <= 3, "no retry loop: {registers} REGISTERs sent");
    assert!(k.registrations_of("bob").is_empty());
    let events = format!("{:?}", srv.events());
    let out = format!("{}\n{events}", srv.stderr());
    assert!(
        !out.contains("not-bobs-password"),
        "the password leaked into output"
    );
}

/// Two accounts through the registrar: bob registers with `serve --echo`, alice calls just
/// "bob" with `dial --account alice`; Kamailio challenges the INVITE (407), termphone answers
/// it, the call is routed to bob's binding, the speech comes back, BYE ends it.
#[test]
fn call_through_kamailio_between_two_accounts_with_audio() {
    let k = Kamailio::start(KamailioOpts::default());
    let bob_cfg = config_for(&k, "bob", "bobpw");
    let alice_cfg = config_for(&k, "alice", "alicepw");
    let mut bob = Termphone::builder(&["serve", "--echo"])
        .global("--config")
        .global(bob_cfg.display().to_string())
        .dir(k.dir_handle())
        .spawn();
    bob.wait_event(
        |e| e["event"] == "registration" && e["state"] == "registered",
        WAIT,
    );
    let back = k.dir().join("alice-back.wav");
    let speech = support::data_file("speech-8k.wav").display().to_string();
    // G.722: the NCC bar below is for a waveform codec (Opus, the default, keeps the sound,
    // not the waveform: see tests/e2e_opus.rs).
    let mut alice = Termphone::builder(&[
        "dial",
        "bob",
        "--account",
        "alice",
        "--codec",
        "G722",
        "--play",
        &speech,
        "--record",
        &back.display().to_string(),
        "--duration",
        "5",
    ])
    .global("--config")
    .global(alice_cfg.display().to_string())
    .dir(k.dir_handle())
    .spawn();
    assert_eq!(alice.wait_exit_code(WAIT), 0, "{}", alice.diagnostics());
    let trace = alice.stderr();
    assert!(
        trace.contains("SIP/2.0 407"),
        "Kamailio challenged the INVITE"
    );
    assert!(
        trace.contains("Proxy-Authorization: Digest"),
        "and termphone answered it"
    );
    bob.wait_call_state("hangupremote", WAIT);
    let sim = support::compare_wavs(&support::data_file("speech-8k.wav"), &back).unwrap();
    assert!(sim.ncc >= 0.9, "speech through the echo at bob: {sim:?}");
    let events = format!("{:?}", alice.events());
    assert!(
        !trace.contains("alicepw") && !events.contains("alicepw"),
        "the password leaked"
    );
}

/// A registrar that does not answer: after timer F (64·T1 = 32 s) the registration fails with
/// a reason that names the address and transport.
#[test]
fn registrar_down_is_reported_with_its_address() {
    let dir = support::test_dir();
    let port = support::free_udp_port();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!("[[account]]\nname = \"alice\"\nuser = \"alice\"\ndomain = \"127.0.0.1\"\nregistrar = \"sip:127.0.0.1:{port}\"\npassword = \"alicepw\"\n"),
    )
    .unwrap();
    let mut srv = Termphone::builder(&["serve"])
        .global("--config")
        .global(cfg.display().to_string())
        .dir(dir)
        .spawn();
    let ev = srv.wait_event(
        |e| e["event"] == "registration" && e["state"] == "failed",
        Duration::from_secs(45),
    );
    let reason = ev["reason"].as_str().unwrap_or_default();
    assert_eq!(
        reason,
        format!("no response from the registrar at 127.0.0.1:{port} (udp)")
    );
}

/// Kamailio restarts and forgets every binding (its location table is in memory): termphone
/// registers again by itself at its next refresh (expires = 20 s → refresh after 10 s), and a
/// call to it works again.
#[test]
fn registration_comes_back_after_a_kamailio_restart_and_calls_work() {
    let mut k = Kamailio::start(KamailioOpts::default());
    let bob_cfg = k.account_config("bob", "password = \"bobpw\"\nexpires = 20\n");
    let mut bob = Termphone::builder(&["serve", "--echo"])
        .global("--config")
        .global(bob_cfg.display().to_string())
        .dir(k.dir_handle())
        .spawn();
    let first = bob.wait_event(
        |e| e["event"] == "registration" && e["state"] == "registered",
        WAIT,
    );
    assert_eq!(first["expires"], 20, "{first}");
    k.wait_registrations(WAIT, "bob registered", |r| r.iter().any(|b| b.aor == "bob"));
    k.restart();
    assert!(
        k.registrations_of("bob").is_empty(),
        "the restart forgot bob"
    );
    k.wait_registrations(Duration::from_secs(25), "bob registered again", |r| {
        r.iter().any(|b| b.aor == "bob")
    });
    let alice_cfg = config_for(&k, "alice", "alicepw");
    let mut alice = Termphone::builder(&["dial", "bob", "--account", "alice", "--duration", "1"])
        .global("--config")
        .global(alice_cfg.display().to_string())
        .dir(k.dir_handle())
        .spawn();
    assert_eq!(alice.wait_exit_code(WAIT), 0, "{}", alice.diagnostics());
}

/// Calling as an account with a wrong password: the proxy's second challenge ends the call
/// with exit status 9 (authentication failed), after one retry, not a loop.
#[test]
fn dial_with_a_wrong_password_exits_9() {
    let k = Kamailio::start(KamailioOpts::default());
    let cfg = config_for(&k, "alice", "wrong-password");
    let mut alice = Termphone::builder(&["dial", "bob", "--account", "alice", "--duration", "1"])
        .global("--config")
        .global(cfg.display().to_string())
        .dir(k.dir_handle())
        .spawn();
    assert_eq!(alice.wait_exit_code(WAIT), 9, "{}", alice.diagnostics());
    let end = alice.wait_call_state("otherfailure", WAIT);
    assert_eq!(end["code"], 407, "{end}");
    let invites = alice.stderr().matches("\nINVITE sip:").count();
    assert!(
        invites <= 3,
        "one retry with credentials, not a loop: {invites} INVITEs"
    );
    let events = format!("{:?}", alice.events());
    assert!(!alice.stderr().contains("wrong-password") && !events.contains("wrong-password"));
}

/// `password_cmd` runs for real: its output (trailing newline removed) is the password.
#[test]
fn password_cmd_provides_the_password() {
    let k = Kamailio::start(KamailioOpts::default());
    let secret_file = k.dir().join("alice.secret");
    std::fs::write(&secret_file, "alicepw\n").unwrap();
    let cfg = k.account_config(
        "alice",
        &format!("password_cmd = \"cat '{}'\"\n", secret_file.display()),
    );
    let mut srv = Termphone::builder(&["serve"])
        .global("--config")
        .global(cfg.display().to_string())
        .dir(k.dir_handle())
        .spawn();
    srv.wait_event(
        |e| e["event"] == "registration" && e["state"] == "registered",
        WAIT,
    );
    let stderr = srv.stderr();
    assert!(
        !stderr.contains("password stored in the config file"),
        "no plain-password warning"
    );
    assert!(!stderr.contains("alicepw"));
}

/// `serve --account NAME` registers only that account of several; an unknown name is a usage
/// error (exit 2) before anything is sent.
#[test]
fn serve_account_registers_only_the_named_account() {
    let k = Kamailio::start(KamailioOpts::default());
    let cfg = k.dir().join("two-accounts.toml");
    let mut text = String::new();
    for user in ["alice", "bob"] {
        text.push_str(&format!(
            "[[account]]\nname = \"{user}\"\nuser = \"{user}\"\ndomain = \"127.0.0.1\"\n\
             registrar = \"sip:{}\"\npassword = \"{user}pw\"\n\n",
            k.addr()
        ));
    }
    std::fs::write(&cfg, text).unwrap();
    let mut unknown = Termphone::builder(&["serve", "--account", "carol"])
        .global("--config")
        .global(cfg.display().to_string())
        .dir(k.dir_handle())
        .spawn();
    assert_eq!(unknown.wait_exit_code(WAIT), 2, "{}", unknown.diagnostics());
    assert!(unknown.stderr().contains("no account named \"carol\""));

    let mut srv = Termphone::builder(&["serve", "--account", "bob"])
        .global("--config")
        .global(cfg.display().to_string())
        .dir(k.dir_handle())
        .spawn();
    let ev = srv.wait_event(
        |e| e["event"] == "registration" && e["state"] == "registered",
        WAIT,
    );
    assert_eq!(ev["account"], "bob");
    let regs = k.wait_registrations(WAIT, "bob registered", |r| r.iter().any(|b| b.aor == "bob"));
    assert!(
        !regs.iter().any(|b| b.aor == "alice"),
        "alice was not asked for: {regs:?}"
    );
    assert!(
        !srv.events()
            .iter()
            .any(|e| e["event"] == "registration" && e["account"] == "alice"),
        "no registration events for alice"
    );
    srv.stop();
}

/// A user the registrar does not know: Kamailio answers the credentials with 403 "Unknown
/// User"; the registration fails with that reason (not "wrong password"), nothing is bound,
/// and `dial` as that account exits 9 (authentication failed).
#[test]
fn unknown_user_is_reported_as_forbidden() {
    let k = Kamailio::start(KamailioOpts::default());
    let cfg = config_for(&k, "mallory", "mallorypw");
    let mut srv = Termphone::builder(&["serve"])
        .global("--config")
        .global(cfg.display().to_string())
        .dir(k.dir_handle())
        .spawn();
    let ev = srv.wait_event(
        |e| e["event"] == "registration" && e["state"] == "failed",
        WAIT,
    );
    let reason = ev["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("403") && reason.contains("Unknown User"),
        "{ev}"
    );
    assert!(!reason.contains("password"), "not a password problem: {ev}");
    std::thread::sleep(Duration::from_secs(2));
    let registers = srv.stderr().matches("\nREGISTER sip:").count();
    assert!(registers <= 2, "no retry loop: {registers} REGISTERs sent");
    srv.stop();
    let mut dial = Termphone::builder(&["dial", "bob", "--account", "mallory"])
        .global("--config")
        .global(cfg.display().to_string())
        .dir(k.dir_handle())
        .spawn();
    assert_eq!(dial.wait_exit_code(WAIT), 9, "{}", dial.diagnostics());
    assert!(k.registrations().is_empty());
    let out = format!("{}{}{:?}", srv.stderr(), dial.stderr(), dial.events());
    assert!(
        !out.contains("mallorypw"),
        "the password leaked into output"
    );
}

/// Per-account `auto_answer` under `serve`: one instance registers three accounts; calls to
/// bob are declined (603), calls to carol are echoed and hung up after 2 s, calls to dave ring
/// until the caller gives up (`"off"`), and a direct call to serve's address (no account)
/// gets the command line's policy (486). Each call event names its account.
#[test]
fn auto_answer_policy_per_account() {
    let users = ["alice", "bob", "carol", "dave"];
    let k = Kamailio::start(
        KamailioOpts::default().users(
            users
                .iter()
                .map(|u| support::kamailio::User::new(u, &format!("{u}pw")))
                .collect(),
        ),
    );
    let cfg = k.dir().join("auto-answer.toml");
    let mut text = String::new();
    for (user, aa) in [
        ("bob", "{ reject = 603 }"),
        ("carol", "{ echo = true, hangup_after = 2 }"),
        ("dave", "\"off\""),
    ] {
        text.push_str(&format!(
            "[[account]]\nname = \"{user}\"\nuser = \"{user}\"\ndomain = \"127.0.0.1\"\n\
             registrar = \"sip:{}\"\npassword = \"{user}pw\"\nauto_answer = {aa}\n\n",
            k.addr()
        ));
    }
    std::fs::write(&cfg, text).unwrap();
    let mut srv = Termphone::builder(&["serve", "--reject", "486"])
        .global("--config")
        .global(cfg.display().to_string())
        .dir(k.dir_handle())
        .spawn();
    k.wait_registrations(WAIT, "bob, carol and dave registered", |r| {
        ["bob", "carol", "dave"]
            .iter()
            .all(|u| r.iter().any(|b| b.aor == *u))
    });
    let alice_cfg = config_for(&k, "alice", "alicepw");
    let dial = |target: &str, extra: &[&str]| {
        let mut args = vec!["dial", target, "--account", "alice", "--duration", "6"];
        args.extend_from_slice(extra);
        let mut d = Termphone::builder(&args)
            .global("--config")
            .global(alice_cfg.display().to_string())
            .dir(k.dir_handle())
            .spawn();
        let code = d.wait_exit_code(Duration::from_secs(30));
        (code, d)
    };

    let (code, mut d) = dial("bob", &[]);
    assert_eq!(code, 4, "bob declines (603): {}", d.diagnostics());

    let t0 = std::time::Instant::now();
    let (code, mut d) = dial("carol", &[]);
    assert_eq!(code, 0, "carol answers: {}", d.diagnostics());
    let events = d.events().to_vec();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "call" && e["state"] == "hangupremote"),
        "carol hung up after 2 s, before alice's 6 s: {events:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());

    let (code, mut d) = dial("dave", &["--timeout", "3"]);
    assert_eq!(code, 6, "dave rings unanswered: {}", d.diagnostics());

    // Direct to serve's address, no account: the command line's --reject 486.
    let direct = format!("sip:nobody@{}", srv.listen_addr());
    let mut d = Termphone::builder(&["dial", &direct, "--timeout", "5"])
        .dir(k.dir_handle())
        .spawn();
    assert_eq!(d.wait_exit_code(WAIT), 3, "busy: {}", d.diagnostics());

    let incoming: Vec<_> = srv
        .events()
        .iter()
        .filter(|e| e["event"] == "call" && e["state"] == "incoming")
        .cloned()
        .collect();
    assert_eq!(incoming.len(), 4, "{incoming:?}");
    for (ev, account) in incoming.iter().zip(["bob", "carol", "dave"]) {
        assert_eq!(ev["account"], account, "{ev}");
    }
    assert!(incoming[3].get("account").is_none(), "{}", incoming[3]);
    srv.stop();
}

/// `deregister` over the control socket removes the binding (REGISTER with Expires 0) and
/// `register` brings it back; an account with `dnd = true` turns calls away with 486.
#[test]
fn deregister_and_register_by_control_and_dnd() {
    let k = Kamailio::start(KamailioOpts::default());
    let cfg = config_for(&k, "alice", "alicepw");
    let sock = k.dir().join("alice.sock");
    let mut srv = Termphone::builder(&["serve", "--echo", "--control", sock.to_str().unwrap()])
        .global("--config")
        .global(cfg.display().to_string())
        .dir(k.dir_handle())
        .spawn();
    srv.wait_event(
        |e| e["event"] == "registration" && e["state"] == "registered",
        WAIT,
    );
    k.wait_registrations(WAIT, "alice registered", |r| {
        r.iter().any(|b| b.aor == "alice")
    });
    let mut ctl = support::control::CtlClient::connect(&sock);
    ctl.ok(serde_json::json!({"cmd": "deregister", "account": "alice"}));
    srv.wait_event(
        |e| e["event"] == "registration" && e["state"] == "unregistered",
        WAIT,
    );
    k.wait_registrations(WAIT, "alice gone", |r| !r.iter().any(|b| b.aor == "alice"));
    ctl.ok(serde_json::json!({"cmd": "register", "account": "alice"}));
    k.wait_registrations(WAIT, "alice back", |r| r.iter().any(|b| b.aor == "alice"));
    srv.stop();

    // Do not disturb: bob calls alice, who is registered with dnd = true: busy.
    let dnd_cfg = k.account_config("alice", "password = \"alicepw\"\ndnd = true\n");
    let mut alice = Termphone::builder(&["serve", "--echo"])
        .global("--config")
        .global(dnd_cfg.display().to_string())
        .dir(k.dir_handle())
        .spawn();
    alice.wait_event(
        |e| e["event"] == "registration" && e["state"] == "registered",
        WAIT,
    );
    let bob_cfg = config_for(&k, "bob", "bobpw");
    let mut dial = Termphone::builder(&["dial", "alice", "--account", "bob", "--duration", "1"])
        .global("--config")
        .global(bob_cfg.display().to_string())
        .dir(k.dir_handle())
        .spawn();
    assert_eq!(dial.wait_exit_code(WAIT), 3, "{}", dial.diagnostics());
    let end = alice.wait_event(
        |e| e["event"] == "call" && e["state"] == "hanguplocal",
        WAIT,
    );
    assert_eq!(end["code"], 486, "{end}");
    alice.stop();
}

/// Each account's own settings govern its calls, not only the first account's: one serve
/// registers carol (codecs = ["PCMU"]) and dave (codecs = ["PCMA"]); alice offers both and
/// each call is answered with that account's codec.
#[test]
fn codecs_are_per_account() {
    let users = ["alice", "carol", "dave"];
    let k = Kamailio::start(
        KamailioOpts::default().users(
            users
                .iter()
                .map(|u| support::kamailio::User::new(u, &format!("{u}pw")))
                .collect(),
        ),
    );
    let cfg = k.dir().join("codecs.toml");
    let mut text = String::new();
    for (user, codec) in [("carol", "PCMU"), ("dave", "PCMA")] {
        text.push_str(&format!(
            "[[account]]\nname = \"{user}\"\nuser = \"{user}\"\ndomain = \"127.0.0.1\"\n\
             registrar = \"sip:{}\"\npassword = \"{user}pw\"\ncodecs = [\"{codec}\"]\n\
             auto_answer = {{ echo = true }}\n\n",
            k.addr()
        ));
    }
    std::fs::write(&cfg, text).unwrap();
    let mut srv = Termphone::builder(&["serve"])
        .global("--config")
        .global(cfg.display().to_string())
        .dir(k.dir_handle())
        .spawn();
    k.wait_registrations(WAIT, "carol and dave registered", |r| {
        ["carol", "dave"]
            .iter()
            .all(|u| r.iter().any(|b| b.aor == *u))
    });
    let alice_cfg = config_for(&k, "alice", "alicepw");
    for (user, codec) in [("carol", "PCMU"), ("dave", "PCMA")] {
        let mut d = Termphone::builder(&[
            "dial",
            user,
            "--account",
            "alice",
            "--duration",
            "2",
            "--codec",
            "PCMA",
            "--codec",
            "PCMU",
        ])
        .global("--config")
        .global(alice_cfg.display().to_string())
        .dir(k.dir_handle())
        .spawn();
        assert_eq!(d.wait_exit_code(WAIT), 0, "{user}: {}", d.diagnostics());
        let summary = d.wait_event(|e| e["event"] == "summary", WAIT);
        assert_eq!(
            summary["summary"]["codec"]
                .as_str()
                .map(str::to_ascii_uppercase),
            Some(codec.to_string()),
            "{user} answers with {codec}: {summary}"
        );
    }
    srv.stop();
}
