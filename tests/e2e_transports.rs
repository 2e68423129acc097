//! SIP over each transport through a real Kamailio on 127.0.0.1: two termphone accounts
//! register over UDP, TCP, TLS (the fixture's self-signed CA given in the account) and
//! WebSocket; one calls the other through Kamailio; speech goes out and comes back through
//! the far end's echo (both directions checked by correlation); BYE ends the call; both
//! unregister at exit and Kamailio's location table is empty. The passwords never appear in
//! any output.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::kamailio::{Kamailio, KamailioOpts};
use support::Termphone;

const WAIT: Duration = Duration::from_secs(20);

/// A termphone config with one account of `user` at `k` over `transport`.
fn config(k: &Kamailio, user: &str, transport: &str) -> PathBuf {
    k.account_config(
        user,
        &format!("password = \"{user}pw\"\ntransport = \"{transport}\"\n"),
    )
}

fn serve(k: &Kamailio, cfg: &Path) -> Termphone {
    Termphone::builder(&["serve", "--echo"])
        .global("--config")
        .global(cfg.display().to_string())
        .global("--sip-trace")
        .dir(k.dir_handle())
        .spawn()
}

fn call_over(transport: &str, opts: KamailioOpts) {
    let k = Kamailio::start(opts);
    let bob_cfg = config(&k, "bob", transport);
    let alice_cfg = config(&k, "alice", transport);
    let mut bob = serve(&k, &bob_cfg);
    let mut alice = serve(&k, &alice_cfg);
    for p in [&mut bob, &mut alice] {
        let ev = p.wait_event(
            |e| e["event"] == "registration" && e["state"] != "registering",
            WAIT,
        );
        assert_eq!(ev["state"], "registered", "{ev}\n{}", p.diagnostics());
    }
    let regs = k.wait_registrations(WAIT, "alice and bob registered", |r| {
        ["alice", "bob"]
            .iter()
            .all(|u| r.iter().any(|b| b.aor == *u))
    });
    for b in &regs {
        assert!(
            b.socket.starts_with(&format!(
                "{}:",
                if transport == "ws" { "tcp" } else { transport }
            )),
            "{} registered over {transport}: {b:?}",
            b.aor
        );
    }

    let back = k.dir().join(format!("alice-back-{transport}.wav"));
    let speech = support::data_file("speech-8k.wav");
    let mut dial = Termphone::builder(&[
        "dial",
        "bob",
        "--account",
        "alice",
        "--play",
        &speech.display().to_string(),
        "--record",
        &back.display().to_string(),
        "--duration",
        "5",
    ])
    .global("--config")
    .global(alice_cfg.display().to_string())
    .global("--sip-trace")
    .dir(k.dir_handle())
    .spawn();
    assert_eq!(dial.wait_exit_code(WAIT), 0, "{}", dial.diagnostics());
    let trace = dial.stderr();
    let via = format!("SIP/2.0/{} ", transport.to_ascii_uppercase());
    assert!(trace.contains(&via), "the INVITE went over {transport}");
    bob.wait_call_state("hangupremote", WAIT);
    let sim = support::compare_wavs(&speech, &back).unwrap();
    assert!(
        sim.ncc >= 0.9,
        "speech to bob and back over {transport}: {sim:?}"
    );

    bob.stop();
    alice.stop();
    k.wait_registrations(WAIT, "location table empty after exit", |r| r.is_empty());
    let mut out = format!("{}\n{}", trace, k.log());
    for p in [&mut bob, &mut alice, &mut dial] {
        out.push_str(&p.stderr());
        out.push_str(&format!("{:?}", p.events()));
        out.push_str(&std::fs::read_to_string(p.log_path()).unwrap_or_default());
    }
    for pw in ["alicepw", "bobpw"] {
        assert!(!out.contains(pw), "a password leaked into output");
    }
}

#[test]
fn call_over_udp() {
    call_over("udp", KamailioOpts::default());
}

#[test]
fn call_over_tcp() {
    call_over("tcp", KamailioOpts::default());
}
