//! End to end: alice's password lives only in a real Secret Service (private session bus +
//! gnome-keyring, tests/keyring_fixture.rs), put there by `termphone account set-password`;
//! `termphone serve` registers with the Kamailio fixture using it, with no password in the
//! config file, and unregisters at exit. The keyring entry outranks a wrong password in the
//! file. With no Secret Service and no other source, the warning says so. The password never
//! appears in any output, event or log.

mod support;

#[path = "keyring_fixture.rs"]
mod keyring_fixture;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use keyring_fixture::{secret_service_or_skip, SecretService};
use support::kamailio::{Kamailio, KamailioOpts};
use support::Termphone;

const WAIT: Duration = Duration::from_secs(20);

/// alice at the fixture's registrar; `extra` is appended to the account table.
fn config(k: &Kamailio, extra: &str) -> PathBuf {
    assert!(!extra.contains("alicepw"));
    k.account_config("alice", extra)
}

/// `termphone account set-password alice` with the password on stdin; returns its output.
fn set_password(ss: &SecretService, cfg: &std::path::Path, password: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_termphone"))
        .arg("--config")
        .arg(cfg)
        .args(["account", "set-password", "alice"])
        .envs(ss.env())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{password}\n").as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "set-password: {text}");
    text
}

fn serve(k: &Kamailio, cfg: &std::path::Path, env: &[(String, String)]) -> Termphone {
    let mut b = Termphone::builder(&["serve", "--echo"])
        .global("--config")
        .global(cfg.display().to_string())
        .dir(k.dir_handle());
    for (key, v) in env {
        b = b.env(key, v);
    }
    b.spawn()
}

fn registers_with_the_keyring_password(extra: &str, leaks: &[&str]) {
    if !support::kamailio::kamailio_available() {
        eprintln!("skipped: no kamailio");
        return;
    }
    let Some(ss) = secret_service_or_skip("keyring_e2e_register") else {
        return;
    };
    let k = Kamailio::start(KamailioOpts::default());
    let cfg = config(&k, extra);
    let set_out = set_password(&ss, &cfg, "alicepw");
    let mut srv = serve(&k, &cfg, &ss.env());
    let ev = srv.wait_event(
        |e| e["event"] == "registration" && (e["state"] == "registered" || e["state"] == "failed"),
        WAIT,
    );
    assert_eq!(ev["state"], "registered", "{ev}\n{}", srv.stderr());
    assert_eq!(ev["account"], "alice");
    k.wait_registrations(WAIT, "alice registered", |r| {
        r.iter().any(|b| b.aor == "alice")
    });
    srv.stop();
    k.wait_registrations(WAIT, "empty after exit", |r| {
        !r.iter().any(|b| b.aor == "alice")
    });
    let log = std::fs::read_to_string(srv.log_path()).unwrap_or_default();
    assert!(
        log.contains("password source account=alice source=keyring"),
        "the log says where the password came from:\n{log}"
    );
    let events = format!("{:?}", srv.events());
    let out = format!("{set_out}\n{}\n{events}\n{log}", srv.stderr());
    for pw in ["alicepw"].iter().chain(leaks) {
        assert!(!out.contains(pw), "a password ({pw}) leaked into output");
    }
}

#[test]
fn serve_registers_with_the_password_from_the_keyring_only() {
    registers_with_the_keyring_password("", &[]);
}

#[test]
fn the_keyring_entry_outranks_password_cmd_and_the_file() {
    registers_with_the_keyring_password(
        "password_cmd = \"echo not-alices-cmd-pw\"\npassword = \"not-alices-file-pw\"\n",
        &["not-alices-cmd-pw", "not-alices-file-pw"],
    );
}

/// No Secret Service on the bus and no other source: registration cannot authenticate, and
/// the warning says the keyring was the only hope.
#[test]
fn no_secret_service_and_no_other_source_warns_clearly() {
    if !support::kamailio::kamailio_available() {
        eprintln!("skipped: no kamailio");
        return;
    }
    let k = Kamailio::start(KamailioOpts::default());
    let cfg = config(&k, "");
    let env = vec![(
        "DBUS_SESSION_BUS_ADDRESS".to_string(),
        format!("unix:path={}", k.dir().join("no-bus").display()),
    )];
    let mut srv = serve(&k, &cfg, &env);
    let ev = srv.wait_event(
        |e| e["event"] == "registration" && e["state"] == "failed",
        WAIT,
    );
    let err = srv.stderr();
    assert!(
        err.contains("account alice: no password: the OS keyring is unavailable")
            && err.contains("no other working password source"),
        "{err}"
    );
    assert!(k.registrations_of("alice").is_empty(), "{ev}");
    srv.stop();
}
