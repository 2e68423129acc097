//! The interactive phone end to end: the real binary (`termphone` with no subcommand) in a
//! private tmux (tests/support/tmux.rs), typed at with `send-keys` and read with
//! `capture-pane`, against real peers on 127.0.0.1:
//!
//! - registers to Kamailio as alice, types `bob`, calls `termphone serve --echo` (bob) through
//!   Kamailio, sees it connected, sends DTMF by keypress, holds and resumes, hangs up, finds the
//!   call in History, quits with `q` (exit 0, terminal modes restored, no password anywhere);
//! - answers an incoming call from baresip by key;
//! - SIGKILL mid-call loses no already finished call and the next start opens the database
//!   cleanly; SIGTERM mid-call hangs up, records the call and restores the terminal.
//!
//! Needs tmux, a sound server (PULSE_SERVER, scripts/headless-audio.sh: the TUI uses the
//! sound card for its calls), Kamailio and baresip; each test says "NOT RUN" and passes when
//! one it needs is missing (with `TERMPHONE_REQUIRE_AUDIO=1` a missing sound server fails).
//! The tests share the sound devices, so they run one at a time even without
//! `--test-threads=1`.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::audio::write_wav_i16;
use support::baresip::{baresip_available, Baresip};
use support::kamailio::{kamailio_available, Kamailio, KamailioOpts};
use support::tmux::{tmux_available, Tui, TuiBuilder};
use support::{wait_until, Termphone};
use termphone::store::{Direction, Store};

/// Every wait for one step.
const WAIT: Duration = Duration::from_secs(20);

/// The tests share one microphone and one speaker: one at a time.
static DEVICES: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn devices() -> std::sync::MutexGuard<'static, ()> {
    DEVICES.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a test needs besides tmux and a sound server.
#[derive(Clone, Copy, PartialEq)]
enum Need {
    Kamailio,
    Baresip,
}

/// True when everything the test needs is there; otherwise says what is missing ("NOT RUN").
fn ready(test: &str, needs: &[Need]) -> bool {
    let mut missing = Vec::new();
    if !tmux_available() {
        missing.push("tmux (Debian package `tmux`)");
    }
    if std::env::var_os("PULSE_SERVER").is_none() {
        assert_ne!(
            std::env::var("TERMPHONE_REQUIRE_AUDIO").as_deref(),
            Ok("1"),
            "TERMPHONE_REQUIRE_AUDIO=1 but PULSE_SERVER is not set (run scripts/headless-audio.sh)"
        );
        missing.push("PULSE_SERVER (scripts/headless-audio.sh start)");
    }
    if needs.contains(&Need::Kamailio) && !kamailio_available() {
        missing.push("kamailio");
    }
    if needs.contains(&Need::Baresip) && !baresip_available() {
        missing.push("baresip (Debian package `baresip-core`)");
    }
    if missing.is_empty() {
        true
    } else {
        eprintln!("NOT RUN: {test} needs {}", missing.join(", "));
        false
    }
}

/// The line of the calls panel that shows call `id` (`▶ c1 → bob ...`), if any.
fn call_line(screen: &str, id: &str) -> Option<String> {
    let mark = format!(" {id} ");
    screen
        .lines()
        .find(|l| l.contains(&mark) && (l.contains('→') || l.contains('←')))
        .map(str::to_owned)
}

/// True when call `id`'s line shows `state` (a word of its own: `hold` is not `remotehold`).
fn call_in_state(screen: &str, id: &str, state: &str) -> bool {
    call_line(screen, id).is_some_and(|l| l.split_whitespace().any(|w| w == state))
}

/// The rows of the History panel (below its `History │ Contacts │ Log` title), inside the box.
fn history_rows(screen: &str) -> Vec<String> {
    screen
        .lines()
        .skip_while(|l| !l.contains("History │"))
        .skip(1)
        .take_while(|l| !l.starts_with('└'))
        .map(|l| l.trim_matches('│').trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

fn registered(e: &Value) -> bool {
    e["event"] == "registration" && e["state"] == "registered"
}

/// Exit 0 and the terminal given back: canonical mode and echo on, no alternate screen.
fn assert_clean_exit(tui: &Tui, what: &str) {
    let exit = tui.wait_exit(WAIT);
    assert_eq!(exit.status, 0, "{what}: exit status\n{}", tui.diagnostics());
    for mode in ["icanon", "echo", "isig", "icrnl", "opost"] {
        assert!(
            exit.mode_on(mode),
            "{what}: terminal mode {mode} not restored: stty shows {:?}\n{}",
            exit.stty,
            tui.diagnostics()
        );
    }
    assert_eq!(
        tui.display("#{alternate_on}"),
        "0",
        "{what}: still on the alternate screen\n{}",
        tui.diagnostics()
    );
    assert_eq!(
        tui.display("#{cursor_flag}"),
        "1",
        "{what}: the cursor is still hidden\n{}",
        tui.diagnostics()
    );
}

/// `termphone serve --echo` on 127.0.0.1 (no registrar), in the test's dir.
fn echo_server(dir: std::sync::Arc<support::TestDir>) -> Termphone {
    Termphone::builder(&["serve", "--echo"]).dir(dir).spawn()
}

/// Scenario A: Kamailio, alice in the TUI, bob is `serve --echo`.
#[test]
fn tui_calls_through_kamailio_sends_dtmf_holds_hangs_up_and_keeps_history() {
    if !ready("tui_calls_through_kamailio", &[Need::Kamailio]) {
        return;
    }
    let _devices = devices();
    let k = Kamailio::start(KamailioOpts::default());
    let bob_cfg = k.account_config("bob", "password = \"bobpw\"\n");
    let alice_cfg = k.account_config("alice", "password = \"alicepw\"\n");
    let mut bob = Termphone::builder(&["serve", "--echo"])
        .global("--config")
        .global(bob_cfg.display().to_string())
        .dir(k.dir_handle())
        .spawn();
    bob.wait_event(registered, WAIT);

    let tui = TuiBuilder::new(k.dir_handle()).config(&alice_cfg).start();
    tui.wait_for("● alice registered", WAIT);
    k.wait_registrations(WAIT, "alice registered by the TUI", |r| {
        r.iter()
            .any(|b| b.aor == "alice" && b.contact.contains(&format!(":{}", tui.port)))
    });

    // Type the number and call: as alice (the only account), through Kamailio.
    tui.wait_for("Dial as alice", WAIT);
    tui.send_keys(&["bob", "Enter"]);
    let screen = tui.wait_screen("c1 connected", WAIT, |s| {
        call_in_state(s, "c1", "connected")
    });
    let line = call_line(&screen, "c1").unwrap();
    assert!(line.contains("→ bob@"), "an outgoing call to bob: {line}");
    let ev = bob.wait_call_state("connected", WAIT);
    assert!(
        ev["peer"].as_str().unwrap_or_default().contains("alice"),
        "bob is called by alice: {ev}"
    );

    // DTMF by keypress: the focus moved to the calls panel.
    tui.send_keys(&["5"]);
    let ev = bob.wait_event(|e| e["event"] == "dtmf", WAIT);
    assert_eq!(ev["digit"], "5", "{ev}");

    // Hold and resume.
    tui.send_keys(&["h"]);
    tui.wait_screen("c1 on hold", WAIT, |s| call_in_state(s, "c1", "hold"));
    bob.wait_call_state("remotehold", WAIT);
    tui.send_keys(&["h"]);
    tui.wait_screen("c1 connected again", WAIT, |s| {
        call_in_state(s, "c1", "connected")
    });
    bob.wait_call_state("connected", WAIT);

    // Hang up.
    tui.send_keys(&["e"]);
    bob.wait_call_state("hangupremote", WAIT);
    tui.wait_screen("c1 hung up", WAIT, |s| {
        call_in_state(s, "c1", "hanguplocal") || call_line(s, "c1").is_none()
    });

    // The History tab (Calls -> History with Tab) lists the call.
    tui.send_keys(&["Tab"]);
    let screen = tui.wait_screen("the History tab focused", WAIT, |s| {
        s.contains("Enter call back")
    });
    let screen = if history_rows(&screen)
        .iter()
        .any(|r| r.contains("→ out") && r.contains("bob"))
    {
        screen
    } else {
        tui.wait_screen("the call in History", WAIT, |s| {
            history_rows(s)
                .iter()
                .any(|r| r.contains("→ out") && r.contains("bob"))
        })
    };
    let rows = history_rows(&screen);
    assert_eq!(rows.len(), 1, "one call in History: {rows:#?}");
    assert!(rows[0].contains("alice"), "made as alice: {}", rows[0]);

    // No call up: q quits at once.
    tui.send_keys(&["q"]);
    assert_clean_exit(&tui, "quit with q");
    k.wait_registrations(WAIT, "alice unregistered at exit", |r| {
        !r.iter().any(|b| b.aor == "alice")
    });

    // The password: on no screen, not in the log.
    let log = std::fs::read_to_string(&tui.log_file).unwrap_or_default();
    assert!(!log.is_empty(), "the TUI wrote its log file");
    assert!(!log.contains("alicepw"), "the password is in the TUI's log");
    for s in tui.screens() {
        assert!(
            !s.contains("alicepw"),
            "the password was on the screen:\n{s}"
        );
    }
}

/// A 20 s, 8 kHz mono 697 Hz tone for baresip's aufile source.
fn tone_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("baresip-tone.wav");
    let samples: Vec<i16> = (0..8000 * 20)
        .map(|n| ((n as f64 * 2.0 * std::f64::consts::PI * 697.0 / 8000.0).sin() * 12000.0) as i16)
        .collect();
    write_wav_i16(&path, 8000, &samples).unwrap();
    path
}

/// Scenario B: baresip calls the TUI directly; answered with `a`, hung up with `e`.
#[test]
fn tui_answers_a_call_from_baresip_by_key() {
    if !ready(
        "tui_answers_a_call_from_baresip",
        &[Need::Kamailio, Need::Baresip],
    ) {
        return;
    }
    let _devices = devices();
    // baresip needs a registrar for its account; the TUI has none (the built-in config's
    // serverless account) and is called at its own address.
    let k = Kamailio::start(KamailioOpts::default());
    let tone = tone_file(k.dir());
    let b = Baresip::start(&k, "alice", "alicepw", &tone, WAIT);
    let tui = TuiBuilder::new(k.dir_handle()).start();
    tui.wait_for("no registering accounts", WAIT);
    tui.wait_for(&format!("SIP 127.0.0.1:{}", tui.port), WAIT);

    let resp = b
        .dial(&tui.sip_uri("anything"))
        .unwrap_or_else(|e| panic!("{e}\nbaresip log:\n{}", b.log()));
    assert!(resp.contains("\"ok\":true"), "dial refused: {resp}");
    let screen = tui.wait_for("Incoming call", WAIT);
    assert!(
        screen.contains("a answer") && screen.contains("r reject"),
        "the prompt shows its keys:\n{screen}"
    );
    assert!(
        screen.contains("alice@127.0.0.1"),
        "the prompt shows the caller:\n{screen}"
    );
    tui.send_keys(&["a"]);
    let screen = tui.wait_screen("c1 connected", WAIT, |s| {
        call_in_state(s, "c1", "connected")
    });
    assert!(
        !screen.contains("Incoming call"),
        "the prompt is gone:\n{screen}"
    );
    assert!(
        call_line(&screen, "c1").unwrap().contains("← alice@"),
        "an incoming call from alice:\n{screen}"
    );
    let established = wait_until(WAIT, || b.log().contains("Call established").then_some(()));
    assert!(
        established.is_some(),
        "baresip did not establish the call\nbaresip log:\n{}",
        b.log()
    );

    tui.send_keys(&["e"]);
    let closed = wait_until(WAIT, || {
        let log = b.log();
        (log.contains("Call terminated") || log.contains("call: closing"))
            .then_some(())
            .or_else(|| {
                log.contains("BYE sip:")
                    .then_some(())
                    .filter(|_| log.contains("SIP/2.0 200 OK"))
            })
    });
    assert!(
        closed.is_some(),
        "baresip did not see the call end\nbaresip log:\n{}",
        b.log()
    );
    let screen = tui.wait_screen("the call in History", WAIT, |s| {
        history_rows(s)
            .iter()
            .any(|r| r.contains("← in") && r.contains("alice"))
    });
    let rows = history_rows(&screen);
    assert_eq!(rows.len(), 1, "one call in History: {rows:#?}");
    tui.send_keys(&["q"]);
    assert_clean_exit(&tui, "quit with q");
}

/// Dial `uri` from the dialer (focusing it first with `d` when it is not) and wait until the
/// call `id` is connected.
fn dial_and_connect(tui: &Tui, uri: &str, id: &str) {
    let screen = tui.capture();
    if !screen.contains("number, name or sip:user@host") {
        tui.send_keys(&["d"]);
        tui.wait_for("number, name or sip:user@host", WAIT);
    }
    tui.send_keys(&[uri, "Enter"]);
    tui.wait_screen(&format!("{id} connected"), WAIT, |s| {
        call_in_state(s, id, "connected")
    });
}

/// Scenario C: one finished call, a second one up, SIGKILL; the next start has the first call
/// and a sound database.
#[test]
fn sigkill_mid_call_loses_no_finished_call_and_the_next_start_opens_the_database() {
    if !ready("sigkill_mid_call", &[]) {
        return;
    }
    let _devices = devices();
    let dir = support::test_dir();
    let mut srv = echo_server(dir.clone());
    let target = srv.sip_uri("echo");
    let db = dir.path().join("history.db");

    let control = dir.path().join("control.sock");
    let tui = TuiBuilder::new(dir.clone())
        .database(&db)
        .control(&control)
        .start();
    tui.wait_for("Dial as", WAIT);
    dial_and_connect(&tui, &target, "c1");
    srv.wait_call_state("connected", WAIT);
    tui.send_keys(&["e"]);
    srv.wait_call_state("hangupremote", WAIT);
    tui.wait_screen("the first call in History", WAIT, |s| {
        history_rows(s)
            .iter()
            .any(|r| r.contains("→ out") && r.contains("echo@127.0.0.1"))
    });

    dial_and_connect(&tui, &target, "c2");
    srv.wait_call_state("connected", WAIT);
    let pid = tui.pid();
    tui.signal(libc::SIGKILL);
    let exit = tui.wait_exit(WAIT);
    assert_eq!(
        exit.status,
        128 + libc::SIGKILL,
        "killed by SIGKILL\n{}",
        tui.diagnostics()
    );
    // What the clean exits are checked against: a killed TUI leaves the terminal raw, on
    // the alternate screen, with the cursor hidden.
    assert!(
        !exit.mode_on("icanon") && !exit.mode_on("echo"),
        "raw mode after SIGKILL: {:?}",
        exit.stty
    );
    assert_eq!(
        tui.display("#{alternate_on}"),
        "1",
        "alternate screen after SIGKILL"
    );
    assert_eq!(
        tui.display("#{cursor_flag}"),
        "0",
        "hidden cursor after SIGKILL"
    );
    assert!(
        wait_until(WAIT, || (!support::kamailio::pid_alive(pid)).then_some(())).is_some(),
        "termphone {pid} still runs after SIGKILL"
    );
    drop(tui);

    // The next start, same database and control socket (the killed one left its socket
    // file behind): the first call is there.
    assert!(
        control.exists(),
        "SIGKILL leaves the control socket file behind"
    );
    let tui = TuiBuilder::new(dir.clone())
        .database(&db)
        .control(&control)
        .start();
    let screen = tui.wait_screen("the first call in History after the restart", WAIT, |s| {
        history_rows(s)
            .iter()
            .any(|r| r.contains("→ out") && r.contains("echo@127.0.0.1"))
    });
    let rows = history_rows(&screen);
    assert_eq!(
        rows.len(),
        1,
        "the finished call, and only it (the killed one never finished): {rows:#?}"
    );
    assert!(
        !screen.contains("cannot read the history") && !screen.contains("cannot write"),
        "no database error on the screen:\n{screen}"
    );
    assert!(
        std::os::unix::net::UnixStream::connect(&control).is_ok(),
        "the restarted TUI listens on the control socket the killed one left behind\n{}",
        tui.diagnostics()
    );
    // The focus is in the dialer at start, where q is a character of an address: Tab to
    // the calls panel first.
    tui.send_keys(&["Tab", "q"]);
    assert_clean_exit(&tui, "quit after the restart");

    let store = Store::open(&db).unwrap_or_else(|e| panic!("open {}: {e}", db.display()));
    assert_eq!(
        store.integrity_check().expect("integrity_check runs"),
        Ok(()),
        "the database is intact"
    );
    let h = store.history("", 10).expect("read the history");
    assert_eq!(h.len(), 1, "one entry: {h:#?}");
    assert_eq!(h[0].direction, Direction::Outgoing, "{h:#?}");
    assert!(h[0].peer.contains("echo@127.0.0.1"), "{h:#?}");
    assert!(h[0].answered, "{h:#?}");
}

/// SIGTERM mid-call: the TUI hangs up (the peer sees BYE), records the call, exits 0 and gives
/// the terminal back.
#[test]
fn sigterm_mid_call_hangs_up_records_the_call_and_restores_the_terminal() {
    if !ready("sigterm_mid_call", &[]) {
        return;
    }
    let _devices = devices();
    let dir = support::test_dir();
    let mut srv = echo_server(dir.clone());
    let target = srv.sip_uri("echo");
    let db = dir.path().join("history.db");

    let tui = TuiBuilder::new(dir.clone()).database(&db).start();
    tui.wait_for("Dial as", WAIT);
    dial_and_connect(&tui, &target, "c1");
    srv.wait_call_state("connected", WAIT);
    tui.signal(libc::SIGTERM);
    assert_clean_exit(&tui, "SIGTERM");
    srv.wait_call_state("hangupremote", WAIT);

    let store = Store::open(&db).unwrap_or_else(|e| panic!("open {}: {e}", db.display()));
    assert_eq!(
        store.integrity_check().expect("integrity_check runs"),
        Ok(())
    );
    let h = store.history("", 10).expect("read the history");
    assert_eq!(
        h.len(),
        1,
        "the call ended by SIGTERM is in the history: {h:#?}"
    );
    assert_eq!(h[0].direction, Direction::Outgoing, "{h:#?}");
    assert!(h[0].answered, "{h:#?}");
}

/// `termphone ctl` drives the phone a person is looking at: a call placed by `ctl dial` shows
/// on the screen, `ctl calls` lists it, `ctl hold` puts it on hold there, `ctl hangup` ends
/// it. (First the window is resized: the screen follows.)
#[test]
fn ctl_drives_the_phone_on_the_screen() {
    if !ready("ctl_drives_the_phone", &[]) {
        return;
    }
    let _devices = devices();
    let dir = support::test_dir();
    let mut srv = echo_server(dir.clone());
    let target = srv.sip_uri("echo");
    let sock = dir.path().join("control.sock");
    let tui = TuiBuilder::new(dir.clone()).control(&sock).start();
    tui.wait_for("Dial as", WAIT);
    // A resized terminal is redrawn at its new size: from 140 columns the tabs stand beside
    // the calls (the dialer's top border and the tabs' on one row), and back.
    tui.resize(160, 40);
    tui.wait_screen("the wide layout", WAIT, |s| {
        s.lines().any(|l| l.contains("┐┌ History"))
    });
    tui.resize(100, 30);
    tui.wait_screen("the narrow layout again", WAIT, |s| {
        !s.lines().any(|l| l.contains("┐┌ History")) && s.contains("┌ History")
    });
    let ctl = |args: &[&str]| -> Value {
        let mut all = vec!["ctl", "--socket", sock.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_termphone"))
            .args(&all)
            .output()
            .expect("run termphone ctl");
        let line = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "ctl {args:?}: {line} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("ctl {args:?}: {e}: {line}"))
    };
    let dialed = ctl(&["dial", &target]);
    let call = dialed["call"].as_str().expect("a call id").to_string();
    tui.wait_screen(&format!("{call} connected on the screen"), WAIT, |s| {
        call_in_state(s, &call, "connected")
    });
    srv.wait_call_state("connected", WAIT);
    let status = ctl(&["calls"]);
    assert_eq!(status["calls"][0]["call"], call.as_str(), "{status}");
    ctl(&["hold", &call]);
    tui.wait_screen(&format!("{call} hold on the screen"), WAIT, |s| {
        call_in_state(s, &call, "hold")
    });
    srv.wait_call_state("remotehold", WAIT);
    ctl(&["hangup", &call]);
    srv.wait_call_state("hangupremote", WAIT);
    tui.wait_screen("the call in History", WAIT, |s| {
        history_rows(s).iter().any(|r| r.contains("→ out"))
    });
    tui.send_keys(&["Tab", "q"]);
    assert_clean_exit(&tui, "q");
}

/// Not a test on its own (hence ignored): run in tmux by `a_panic_restores_the_terminal`
/// (`--ignored --exact panicking_child`), it takes the terminal as the TUI does, draws, and
/// panics.
#[test]
#[ignore = "the child of a_panic_restores_the_terminal"]
fn panicking_child() {
    assert!(
        std::env::var_os("TERMPHONE_TEST_PANIC").is_some(),
        "run by a_panic_restores_the_terminal only"
    );
    let mut tui = termphone::ui::terminal::Tui::enter(None).expect("take the terminal");
    tui.terminal
        .draw(|f| {
            f.render_widget(
                ratatui::widgets::Paragraph::new("drawn before the panic"),
                f.area(),
            )
        })
        .expect("draw");
    std::thread::sleep(Duration::from_millis(300));
    panic!("a deliberate panic while the terminal is the TUI's");
}

/// A panic while the TUI owns the terminal leaves a usable terminal: raw mode off, the
/// alternate screen left, the cursor shown, and the panic message readable on the screen.
#[test]
fn a_panic_restores_the_terminal() {
    if !ready("a_panic_restores_the_terminal", &[]) {
        return;
    }
    let dir = support::test_dir();
    let exe = std::env::current_exe().expect("this test binary");
    let tui = TuiBuilder::new(dir)
        .instead(
            vec![
                exe.display().to_string(),
                "--ignored".into(),
                "--exact".into(),
                "panicking_child".into(),
                "--nocapture".into(),
                "--test-threads=1".into(),
            ],
            vec![("TERMPHONE_TEST_PANIC".into(), "1".into())],
        )
        .start();
    tui.wait_for("drawn before the panic", WAIT);
    let exit = tui.wait_exit(WAIT);
    assert_ne!(exit.status, 0, "the child test failed by its panic");
    for mode in ["icanon", "echo", "isig", "icrnl", "opost"] {
        assert!(
            exit.mode_on(mode),
            "mode {mode} restored: {:?}\n{}",
            exit.stty,
            tui.diagnostics()
        );
    }
    assert_eq!(tui.display("#{alternate_on}"), "0", "{}", tui.diagnostics());
    assert_eq!(tui.display("#{cursor_flag}"), "1", "{}", tui.diagnostics());
    tui.wait_for("a deliberate panic while the terminal is the TUI's", WAIT);
}
