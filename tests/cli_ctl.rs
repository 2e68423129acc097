//! `termphone ctl` and `termphone account list` as a shell uses them, against real
//! `termphone serve` instances: call ids printed, `--follow` events, exit statuses 0 / 1 / 2 /
//! 7, and live registration state with its failure reason. Loopback only; every process is
//! stopped by its own PID.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

use support::control::{run_termphone, serve_with_control};
use support::{stop_child, test_dir, Termphone, TermphoneBuilder, TERM_GRACE};

const WAIT: Duration = Duration::from_secs(20);

fn ctl(sock: &Path, args: &[&str]) -> Output {
    let mut all = vec!["ctl", "--socket", sock.to_str().unwrap()];
    all.extend_from_slice(args);
    run_termphone(&all, &[], WAIT)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The single JSON line `ctl` printed.
fn response(o: &Output) -> Value {
    let out = stdout(o);
    assert_eq!(out.lines().count(), 1, "one line: {out:?} {}", stderr(o));
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{out:?}: {e}"))
}

/// A `termphone ctl --follow` process and its stdout lines.
struct Follow {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<Value>,
}

impl Follow {
    fn start(args: &[&str], env: &[(&str, &Path)]) -> Follow {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_termphone"));
        cmd.arg("ctl")
            .arg("--follow")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn ctl --follow");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Follow {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Read lines until one matches (each line must be JSON), within `timeout`.
    fn wait(&mut self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let v: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("ctl --follow printed non-JSON {line:?}: {e}"));
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(_) => panic!(
                    "ctl --follow: nothing matching within {timeout:?}; seen: {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Wait for the process to exit by itself.
    fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "ctl --follow did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM to its PID; its exit code.
    fn stop(&mut self) -> i32 {
        stop_child(&mut self.child, TERM_GRACE)
            .and_then(|s| s.code())
            .unwrap_or(-1)
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = stop_child(&mut self.child, TERM_GRACE);
    }
}

fn is_call<'a>(call: &'a str, state: &'static str) -> impl Fn(&Value) -> bool + 'a {
    move |v| v["event"] == "call" && v["call"] == call && v["state"] == state
}

#[test]
fn ctl_drives_a_running_instance() {
    let dir = test_dir();
    let (mut a, sock) = serve_with_control(&dir, &["--echo"]);
    let mut b = Termphone::serve(&["--echo"]);
    let target = b.sip_uri("echo");

    let mut follow = Follow::start(&["--socket", sock.to_str().unwrap()], &[]);
    // Give the follower a moment to connect and subscribe (it prints nothing until events
    // come); the call's `connected` comes a SIP round trip after the dial in any case.
    std::thread::sleep(Duration::from_millis(500));

    // dial prints the call id.
    let out = ctl(&sock, &["dial", &target]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r = response(&out);
    assert_eq!(r["ok"], true, "{r}");
    let call = r["call"].as_str().expect("call id").to_string();
    assert!(call.starts_with('c'), "{call}");
    follow.wait(is_call(&call, "connected"), WAIT);

    // status, calls, supports.
    let st = response(&ctl(&sock, &["status"]));
    assert_eq!(st["calls"][0]["call"], call.as_str(), "{st}");
    assert_eq!(st["listen"], a.listen_addr().to_string());
    let calls = response(&ctl(&sock, &["calls"]));
    assert_eq!(calls["calls"][0]["state"], "connected", "{calls}");
    let sup = response(&ctl(&sock, &["supports"]));
    assert!(sup["verbs"].as_array().unwrap().contains(&"dtmf".into()));

    // dtmf: the far end hears the digits.
    let out = ctl(&sock, &["dtmf", &call, "123#"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(response(&out)["call"], call.as_str());
    let mut digits = String::new();
    while digits.len() < 4 {
        let ev = b.wait_event(|e| e["event"] == "dtmf", WAIT);
        digits.push_str(ev["digit"].as_str().unwrap_or("?"));
    }
    assert_eq!(digits, "123#");

    // hangup.
    let out = ctl(&sock, &["hangup", &call]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    follow.wait(is_call(&call, "hanguplocal"), WAIT);

    // The instance answers with an error: exit 1, the response on stdout.
    let out = ctl(&sock, &["hangup", "c99"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(response(&out)["error"], "no such call: c99");
    let out = ctl(&sock, &["hold", &call]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(response(&out)["error"], format!("no such call: {call}"));
    let out = ctl(&sock, &["register", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        response(&out)["error"],
        "no account named \"nope\" with a registrar in the configuration"
    );
    let out = ctl(&sock, &["dtmf", &call, "x"]);
    assert_eq!(out.status.code(), Some(1));
    let out = ctl(&sock, &["frobnicate"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(response(&out)["error"], "unknown verb: frobnicate");

    // hangup with no call: every call.
    let c1 = response(&ctl(&sock, &["dial", &target]))["call"]
        .as_str()
        .unwrap()
        .to_string();
    follow.wait(is_call(&c1, "connected"), WAIT);
    let r = response(&ctl(&sock, &["hangup"]));
    assert_eq!(r["calls"], serde_json::json!([c1]));
    follow.wait(is_call(&c1, "hanguplocal"), WAIT);

    // Usage errors: exit 2.
    for args in [&["dtmf", "c1"][..], &[][..], &["dial"][..]] {
        let out = ctl(&sock, args);
        assert_eq!(out.status.code(), Some(2), "ctl {args:?}: {}", stderr(&out));
    }

    // --follow with a verb prints the response, then the events.
    let mut follow2 = Follow::start(
        &["--socket", sock.to_str().unwrap(), "dial", target.as_str()],
        &[],
    );
    let r = follow2.wait(|v| v.get("ok").is_some(), WAIT);
    let c2 = r["call"].as_str().unwrap().to_string();
    follow2.wait(is_call(&c2, "connected"), WAIT);
    assert_eq!(ctl(&sock, &["hangup", &c2]).status.code(), Some(0));
    follow2.wait(is_call(&c2, "hanguplocal"), WAIT);
    // SIGTERM ends it with 0.
    assert_eq!(follow2.stop(), 0);

    // --follow ends by itself (0) when the instance goes away.
    a.stop();
    assert_eq!(follow.wait_exit(WAIT), 0);
    assert!(!sock.exists());

    // No instance: exit 7, naming the path and why.
    let out = ctl(&sock, &["status"]);
    assert_eq!(out.status.code(), Some(7));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cannot connect to {}", sock.display()))
            && err.contains("no control socket there"),
        "{err}"
    );
    assert!(stdout(&out).is_empty());
    // A stale socket file: connection refused.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let out = ctl(&sock, &["status"]);
    assert_eq!(out.status.code(), Some(7));
    assert!(
        stderr(&out).contains("connection refused"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn ctl_finds_the_default_socket_through_xdg_runtime_dir() {
    let dir = test_dir();
    let run = dir.path().join("run");
    let mut srv = TermphoneBuilder::new(&["serve", "--echo"])
        .dir(dir.clone())
        .env("XDG_RUNTIME_DIR", run.display().to_string())
        .spawn();
    srv.wait_event(|e| e["event"] == "control", WAIT);
    let out = run_termphone(&["ctl", "status"], &[("XDG_RUNTIME_DIR", &run)], WAIT);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(response(&out)["listen"], srv.listen_addr().to_string());
    srv.stop();
    let out = run_termphone(&["ctl", "status"], &[("XDG_RUNTIME_DIR", &run)], WAIT);
    assert_eq!(out.status.code(), Some(7));
    assert!(
        stderr(&out).contains(&run.join("termphone/control.sock").display().to_string()),
        "{}",
        stderr(&out)
    );
}

#[test]
fn account_list_shows_the_running_instances_registration_state() {
    const PW: &str = "Sekr1t-alice-pw";
    let dir = test_dir();
    // alice registers over TCP where nothing listens; bob has no registrar.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[account]]\nname = \"alice\"\nuser = \"alice\"\ndomain = \"127.0.0.1\"\n\
             registrar = \"sip:127.0.0.1:{port}\"\ntransport = \"tcp\"\npassword = \"{PW}\"\n\n\
             [[account]]\nname = \"bob\"\nuser = \"bob\"\ndomain = \"127.0.0.1\"\n"
        ),
    )
    .unwrap();
    let sock = dir.path().join("ctl.sock");
    let list = |sock: &Path| {
        run_termphone(
            &[
                "--config",
                cfg.to_str().unwrap(),
                "account",
                "list",
                "--socket",
                sock.to_str().unwrap(),
            ],
            &[],
            WAIT,
        )
    };
    let line = |out: &str, name: &str| -> String {
        out.lines()
            .find(|l| l.starts_with(&format!("{name}\t")))
            .unwrap_or_else(|| panic!("no line for {name}:\n{out}"))
            .to_string()
    };

    // Nothing runs.
    let started = Instant::now();
    let out = list(&sock);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "list does not block"
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(
        line(&text, "alice"),
        format!(
            "alice\talice@127.0.0.1\tregistrar=sip:127.0.0.1:{port}\ttransport=tcp\tpassword=config file\tstate=not running"
        )
    );
    assert!(
        line(&text, "bob").ends_with("\tstate=not running"),
        "{text}"
    );
    let mut outputs = vec![out];

    // serve with this config: alice's registration fails with connection refused.
    let mut srv = TermphoneBuilder::new(&["serve", "--control", sock.to_str().unwrap()])
        .global("--config")
        .global(cfg.display().to_string())
        .dir(dir.clone())
        .spawn();
    let ev = srv.wait_event(
        |e| e["event"] == "registration" && e["state"] == "failed",
        WAIT,
    );
    let reason = format!("network error: connection refused by 127.0.0.1:{port} (tcp)");
    assert_eq!(ev["reason"], reason.as_str(), "{ev}");
    let out = list(&sock);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(
        line(&text, "alice"),
        format!(
            "alice\talice@127.0.0.1\tregistrar=sip:127.0.0.1:{port}\ttransport=tcp\tpassword=config file\tstate=failed: {reason}"
        )
    );
    assert!(
        line(&text, "bob").ends_with("\tstate=not registering"),
        "{text}"
    );
    // ctl status says the same.
    let st = response(&ctl(&sock, &["status"]));
    assert_eq!(st["accounts"][0]["name"], "alice", "{st}");
    assert_eq!(st["accounts"][0]["state"], "failed");
    assert_eq!(st["accounts"][0]["reason"], reason.as_str());
    assert_eq!(st["accounts"][0]["transport"], "tcp");
    assert_eq!(
        st["accounts"][0]["registrar"],
        format!("sip:127.0.0.1:{port}")
    );
    outputs.push(out);
    srv.stop();

    // Stopped again.
    let out = list(&sock);
    assert!(
        stdout(&out).contains("\tstate=not running"),
        "{}",
        stdout(&out)
    );
    outputs.push(out);
    // The password never shows.
    for o in &outputs {
        assert!(
            !stdout(o).contains(PW) && !stderr(o).contains(PW),
            "password leaked:\n{}\n{}",
            stdout(o),
            stderr(o)
        );
    }
    assert!(!srv.stderr().contains(PW));
    let events = format!("{:?}", srv.events());
    assert!(!events.contains(PW));
}
