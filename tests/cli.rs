//! The command line: every subcommand has `--help` with an example; usage errors exit 2.

use std::process::Command;

fn termphone(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_termphone"))
        .args(args)
        .output()
        .expect("runs")
}

#[test]
fn every_subcommand_has_help_with_an_example() {
    for sub in ["serve", "dial", "devices", "account", "ctl"] {
        let out = termphone(&[sub, "--help"]);
        assert!(out.status.success(), "{sub} --help");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Example"),
            "{sub} --help shows an example:\n{text}"
        );
        assert!(
            text.contains(&format!("termphone {sub}")),
            "{sub} --help example runs {sub}:\n{text}"
        );
    }
    let top = termphone(&["--help"]);
    let text = String::from_utf8_lossy(&top.stdout);
    for sub in ["serve", "dial", "devices", "account", "ctl"] {
        assert!(text.contains(sub), "top-level help lists {sub}");
    }
}

#[test]
fn dial_help_documents_the_exit_codes() {
    let text = String::from_utf8_lossy(&termphone(&["dial", "--help"]).stdout).into_owned();
    for line in [
        "0  answered",
        "3  busy",
        "4  declined",
        "5  not found",
        "6  no answer",
        "7  network",
        "8  other",
        "9  authentication",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(termphone(&["dial"]).status.code(), Some(2), "missing URI");
    assert_eq!(
        termphone(&["serve", "--reject", "200"]).status.code(),
        Some(2),
        "2xx is no rejection"
    );
    assert_eq!(
        termphone(&["serve", "--play", "x.wav", "--echo"])
            .status
            .code(),
        Some(2),
        "play and echo conflict"
    );
    assert_eq!(termphone(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn a_bad_config_file_is_reported_with_its_location_and_nothing_starts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "[general]\nlisten = 5060\n").unwrap();
    let out = termphone(&[
        "--config",
        cfg.to_str().unwrap(),
        "serve",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("config.toml:2:10"), "file:line:col in {err}");
    assert!(
        out.stdout.is_empty(),
        "no listening event: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn devices_lists_devices_or_says_there_are_none() {
    let out = termphone(&["devices"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        assert!(
            stdout.contains("Capture devices:") && stdout.contains("Playback devices:"),
            "{stdout}"
        );
    } else {
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr.contains("no usable audio device"),
            "a clear message: {stderr}"
        );
    }
}

/// `[general] log_file` is where the log goes when `--log-file` is not given.
#[test]
fn the_configs_log_file_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("from-config.log");
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!("[general]\nlog_file = \"{}\"\n", log.display()),
    )
    .unwrap();
    // A call to a closed port on 127.0.0.1 that gives up after a second.
    let out = termphone(&[
        "--config",
        cfg.to_str().unwrap(),
        "dial",
        "sip:nobody@127.0.0.1:9",
        "--listen",
        "127.0.0.1:0",
        "--timeout",
        "1",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&log).expect("the log file named in the config");
    assert!(text.contains("engine started"), "{text}");
}

/// Without a terminal (stdin not a tty) the interactive phone says so and exits 1, instead of
/// drawing into a pipe; it leaves no socket behind.
#[test]
fn the_interactive_phone_needs_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("control.sock");
    let out = Command::new(env!("CARGO_BIN_EXE_termphone"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--control",
            sock.to_str().unwrap(),
            "--database",
            dir.path().join("t.db").to_str().unwrap(),
            "--log-file",
            dir.path().join("t.log").to_str().unwrap(),
        ])
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs a terminal"), "{err}");
    assert!(!sock.exists(), "the control socket is removed");
}
