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
    k.account_config_for(user, transport, &format!("password = \"{user}pw\"\n"))
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
                match transport {
                    "ws" => "tcp",
                    "wss" => "tls",
                    t => t,
                }
            )),
            "{} registered over {transport}: {b:?}",
            b.aor
        );
    }

    let back = k.dir().join(format!("alice-back-{transport}.wav"));
    let speech = support::data_file("speech-8k.wav");
    // G.722: the NCC bar below is for a waveform codec (Opus, the default, keeps the sound,
    // not the waveform: see tests/e2e_opus.rs).
    let mut dial = Termphone::builder(&[
        "dial",
        "bob",
        "--account",
        "alice",
        "--codec",
        "G722",
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

#[test]
fn call_over_tls_with_the_ca_in_the_account() {
    call_over("tls", KamailioOpts::default().tls());
}

#[test]
fn call_over_websocket() {
    call_over("ws", KamailioOpts::default().ws());
}

#[test]
fn call_over_secure_websocket() {
    call_over("wss", KamailioOpts::default().wss());
}

/// Kamailio's certificate comes from a CA the account does not trust: the registration fails
/// with a reason naming the certificate problem, `dial` exits 7 with the same reason.
#[test]
fn tls_with_an_untrusted_certificate_names_the_problem() {
    let k = Kamailio::start(KamailioOpts::default().tls());
    let untrusted = k.untrusted_ca_file();
    let cfg = k.account_config_for("alice", "tls", "password = \"alicepw\"\n");
    // Point tls_ca_file at the unrelated CA instead of the one that signed the server.
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text.replace(
        &k.ca_file().display().to_string(),
        &untrusted.display().to_string(),
    );
    std::fs::write(&cfg, text).unwrap();
    let mut srv = serve(&k, &cfg);
    let ev = srv.wait_event(
        |e| e["event"] == "registration" && e["state"] == "failed",
        WAIT,
    );
    let reason = ev["reason"].as_str().unwrap_or_default().to_string();
    assert!(
        reason.contains("certificate not trusted: unknown issuer"),
        "{reason}"
    );
    assert!(reason.contains(&k.tls_addr().to_string()), "{reason}");
    srv.stop();
    let mut dial = Termphone::builder(&["dial", "bob", "--account", "alice", "--json"])
        .global("--config")
        .global(cfg.display().to_string())
        .dir(k.dir_handle())
        .spawn();
    assert_eq!(dial.wait_exit_code(WAIT), 7, "{}", dial.diagnostics());
    let end = dial
        .events()
        .iter()
        .find(|e| e["event"] == "call" && e["state"] == "networkfailure")
        .cloned()
        .unwrap_or_default();
    assert!(
        end["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("certificate not trusted"),
        "{end}"
    );
    assert!(k.registrations().is_empty());
}

/// Nothing listens on the registrar's TCP port: the registration fails at once with
/// "connection refused" naming the address and transport, and does not retry before the
/// backoff (30 s); `dial` through it exits 7 (network failure) with the same reason.
#[test]
fn tcp_registrar_down_is_connection_refused_and_dial_exits_7() {
    let dir = support::test_dir();
    let port = support::free_udp_port();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[account]]\nname = \"alice\"\nuser = \"alice\"\ndomain = \"127.0.0.1\"\n\
             registrar = \"sip:127.0.0.1:{port}\"\ntransport = \"tcp\"\npassword = \"alicepw\"\n"
        ),
    )
    .unwrap();
    let mut srv = Termphone::builder(&["serve"])
        .global("--config")
        .global(cfg.display().to_string())
        .dir(dir.clone())
        .spawn();
    let ev = srv.wait_event(
        |e| e["event"] == "registration" && e["state"] == "failed",
        WAIT,
    );
    assert_eq!(
        ev["reason"].as_str().unwrap_or_default(),
        format!("network error: connection refused by 127.0.0.1:{port} (tcp)"),
        "{ev}"
    );
    // No second attempt within the next 5 s.
    std::thread::sleep(Duration::from_secs(5));
    let attempts = srv
        .events()
        .iter()
        .filter(|e| e["event"] == "registration" && e["state"] == "registering")
        .count();
    assert_eq!(
        attempts,
        1,
        "retried before the backoff: {:?}",
        srv.events()
    );
    srv.stop();

    let mut dial = Termphone::builder(&["dial", "bob", "--account", "alice", "--json"])
        .global("--config")
        .global(cfg.display().to_string())
        .dir(dir)
        .spawn();
    assert_eq!(dial.wait_exit_code(WAIT), 7, "{}", dial.diagnostics());
    let end = dial
        .events()
        .iter()
        .find(|e| e["event"] == "call" && e["state"] == "networkfailure")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        end["reason"].as_str().unwrap_or_default(),
        format!("connection refused by 127.0.0.1:{port} (tcp)"),
        "{end}"
    );
}

/// A registrar named by domain only (`sip:pbx.test`, no port): termphone finds Kamailio through
/// DNS SRV (`_sip._tcp.pbx.test` → `kam.pbx.test:PORT`, RFC 3263) served by a private dnsmasq
/// on 127.0.0.1 (`[general] dns_server`), registers over TCP and unregisters at exit.
#[test]
fn registrar_found_through_dns_srv() {
    let k = Kamailio::start(KamailioOpts::default());
    let srv_record = format!(
        "--srv-host=_sip._tcp.pbx.test,kam.pbx.test,{},10,10",
        k.port()
    );
    let mut dns = support::dnsmasq::Dnsmasq::start(
        "pbx.test",
        &[&srv_record, "--host-record=kam.pbx.test,127.0.0.1"],
    );
    let cfg = k.dir().join("dns-config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[general]\ndns_server = \"{}\"\n\n[[account]]\nname = \"alice\"\nuser = \"alice\"\n\
             domain = \"127.0.0.1\"\nregistrar = \"sip:pbx.test\"\ntransport = \"tcp\"\n\
             password = \"alicepw\"\n",
            dns.addr()
        ),
    )
    .unwrap();
    let mut srv = serve(&k, &cfg);
    let ev = srv.wait_event(
        |e| e["event"] == "registration" && e["state"] != "registering",
        WAIT,
    );
    assert_eq!(ev["state"], "registered", "{ev}\n{}", srv.diagnostics());
    let regs = k.wait_registrations(WAIT, "alice registered", |r| {
        r.iter().any(|b| b.aor == "alice")
    });
    assert!(regs[0].socket.starts_with("tcp:"), "{regs:?}");
    assert!(
        dns.log().contains("_sip._tcp.pbx.test"),
        "the SRV record was asked for"
    );
    srv.stop();
    k.wait_registrations(WAIT, "unregistered at exit", |r| r.is_empty());
    dns.stop();
}

/// Bytes a raw registrar stand-in received in `window`, after accepting one connection.
fn tcp_bytes_received(listener: std::net::TcpListener, window: Duration) -> Vec<u8> {
    use std::io::Read;
    let (mut conn, _) = listener.accept().expect("termphone connects");
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut got = Vec::new();
    let end = std::time::Instant::now() + window;
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < end {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    got
}

/// `keepalive = 1`: on a TCP registration flow termphone sends a CRLFCRLF ping every second
/// after the REGISTER (RFC 5626 §4.4.1); on UDP a CRLF datagram to the registrar. Checked on
/// real loopback sockets standing in for the registrar (they never answer).
#[test]
fn keepalives_over_tcp_and_udp() {
    let dir = support::test_dir();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    let cfg = dir.path().join("keepalive.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[account]]\nname = \"t\"\nuser = \"alice\"\ndomain = \"127.0.0.1\"\n\
             registrar = \"sip:127.0.0.1:{tcp_port}\"\ntransport = \"tcp\"\nkeepalive = 1\n\n\
             [[account]]\nname = \"u\"\nuser = \"alice\"\ndomain = \"127.0.0.1\"\n\
             registrar = \"sip:127.0.0.1:{udp_port}\"\nkeepalive = 1\n"
        ),
    )
    .unwrap();
    let mut srv = Termphone::builder(&["serve"])
        .global("--config")
        .global(cfg.display().to_string())
        .dir(dir)
        .spawn();
    let got = tcp_bytes_received(tcp, Duration::from_millis(3500));
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("REGISTER sip:127.0.0.1:"), "{text:?}");
    let head_end = text.find("\r\n\r\n").unwrap() + 4;
    let pings = text[head_end..].matches("\r\n\r\n").count();
    assert!(
        (2..=5).contains(&pings),
        "about one CRLFCRLF per second after the REGISTER: {pings} in {:?}",
        &text[head_end..]
    );

    // Drop what queued up meanwhile, then count for 3.5 s.
    let mut buf = [0u8; 65536];
    udp.set_nonblocking(true).unwrap();
    while udp.recv_from(&mut buf).is_ok() {}
    udp.set_nonblocking(false).unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut crlf = 0;
    let end = std::time::Instant::now() + Duration::from_millis(3500);
    while std::time::Instant::now() < end {
        if let Ok((n, _)) = udp.recv_from(&mut buf) {
            if &buf[..n] == b"\r\n\r\n" {
                crlf += 1;
            }
        }
    }
    assert!((2..=5).contains(&crlf), "UDP keepalives: {crlf}");
    srv.stop();
}

/// Kamailio restarts under a TCP registration: the connection closes, termphone reports the
/// registration failed with that reason, registers again on a new connection after the
/// backoff (30 s, not sooner), and calls reach it again.
#[test]
fn tcp_registration_comes_back_after_a_kamailio_restart() {
    let mut k = Kamailio::start(KamailioOpts::default());
    let bob_cfg = config(&k, "bob", "tcp");
    let mut bob = serve(&k, &bob_cfg);
    bob.wait_event(
        |e| e["event"] == "registration" && e["state"] == "registered",
        WAIT,
    );
    k.wait_registrations(WAIT, "bob registered", |r| r.iter().any(|b| b.aor == "bob"));
    k.restart();
    let failed = bob.wait_event(
        |e| e["event"] == "registration" && e["state"] == "failed",
        WAIT,
    );
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("closed") && reason.contains("(tcp)"),
        "{failed}"
    );
    let t_failed = std::time::Instant::now();
    k.wait_registrations(Duration::from_secs(45), "bob registered again", |r| {
        r.iter().any(|b| b.aor == "bob")
    });
    assert!(
        t_failed.elapsed() >= Duration::from_secs(25),
        "re-registered before the backoff: {:?}",
        t_failed.elapsed()
    );
    let alice_cfg = config(&k, "alice", "tcp");
    let mut alice = Termphone::builder(&["dial", "bob", "--account", "alice", "--duration", "1"])
        .global("--config")
        .global(alice_cfg.display().to_string())
        .dir(k.dir_handle())
        .spawn();
    assert_eq!(alice.wait_exit_code(WAIT), 0, "{}", alice.diagnostics());
    bob.stop();
}

/// An outbound proxy: the registrar URI names a port where nothing listens, the account's
/// `outbound_proxy` is Kamailio over TCP. Every request goes to the proxy with it as the first
/// Route (`;lr`), so the registration and a call both work.
#[test]
fn outbound_proxy_carries_registration_and_calls() {
    let k = Kamailio::start(KamailioOpts::default());
    let dead = support::free_udp_port();
    let write = |user: &str| {
        let cfg = k.dir().join(format!("{user}-proxy.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[[account]]\nname = \"{user}\"\nuser = \"{user}\"\ndomain = \"127.0.0.1\"\n\
                 registrar = \"sip:127.0.0.1:{dead}\"\n\
                 outbound_proxy = \"sip:127.0.0.1:{};transport=tcp\"\npassword = \"{user}pw\"\n",
                k.port()
            ),
        )
        .unwrap();
        cfg
    };
    let bob_cfg = write("bob");
    let mut bob = serve(&k, &bob_cfg);
    let ev = bob.wait_event(
        |e| e["event"] == "registration" && e["state"] != "registering",
        WAIT,
    );
    assert_eq!(ev["state"], "registered", "{ev}\n{}", bob.diagnostics());
    let route = format!("Route: <sip:127.0.0.1:{};transport=tcp;lr>", k.port());
    assert!(bob.stderr().contains(&route), "REGISTER carries {route}");
    let regs = k.wait_registrations(WAIT, "bob registered", |r| r.iter().any(|b| b.aor == "bob"));
    assert!(regs[0].socket.starts_with("tcp:"), "{regs:?}");
    let alice_cfg = write("alice");
    let mut alice = Termphone::builder(&["dial", "bob", "--account", "alice", "--duration", "1"])
        .global("--config")
        .global(alice_cfg.display().to_string())
        .global("--sip-trace")
        .dir(k.dir_handle())
        .spawn();
    assert_eq!(alice.wait_exit_code(WAIT), 0, "{}", alice.diagnostics());
    assert!(alice.stderr().contains(&route), "INVITE carries {route}");
    bob.stop();
    k.wait_registrations(WAIT, "unregistered at exit", |r| r.is_empty());
}

/// The four failures users meet, side by side in one `serve`: a wrong password, a user the
/// registrar does not know, a registrar that refuses the connection and a TLS certificate we
/// do not trust. Each has its own reason in the events and in `termphone account list` (asked
/// through the running instance's control socket), and no password is printed.
#[test]
fn account_list_names_each_failure_reason() {
    let k = Kamailio::start(KamailioOpts::default().tls());
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().port();
    drop(closed);
    let untrusted = k.untrusted_ca_file();
    let account = |name: &str, user: &str, pw: &str, registrar: String, extra: &str| {
        format!(
            "[[account]]\nname = \"{name}\"\nuser = \"{user}\"\ndomain = \"127.0.0.1\"\n\
             registrar = \"{registrar}\"\npassword = \"{pw}\"\n{extra}\n"
        )
    };
    let text = [
        account(
            "wrongpw",
            "alice",
            "not-alices-pw",
            format!("sip:{}", k.addr()),
            "",
        ),
        account(
            "nobody",
            "carol",
            "carols-pw",
            format!("sip:{}", k.addr()),
            "",
        ),
        account(
            "down",
            "bob",
            "bobpw",
            format!("sip:127.0.0.1:{dead}"),
            "transport = \"tcp\"\n",
        ),
        account(
            "untrusted",
            "bob",
            "bobpw",
            format!("sip:{}", k.addr_for("tls")),
            &format!(
                "transport = \"tls\"\ntls_ca_file = \"{}\"\n",
                untrusted.display()
            ),
        ),
    ]
    .concat();
    support::register_secret("test account wrongpw", "not-alices-pw");
    support::register_secret("test account nobody", "carols-pw");
    let cfg = k.dir().join("four-failures.toml");
    std::fs::write(&cfg, text).unwrap();
    let sock = k.dir().join("ctl.sock");
    let mut srv = Termphone::builder(&["serve", "--control", &sock.display().to_string()])
        .global("--config")
        .global(cfg.display().to_string())
        .dir(k.dir_handle())
        .spawn();
    let mut reasons = std::collections::BTreeMap::new();
    while reasons.len() < 4 {
        let ev = srv.wait_event(
            |e| {
                e["event"] == "registration"
                    && e["state"] == "failed"
                    && !reasons.contains_key(e["account"].as_str().unwrap_or_default())
            },
            Duration::from_secs(40),
        );
        reasons.insert(
            ev["account"].as_str().unwrap_or_default().to_string(),
            ev["reason"].as_str().unwrap_or_default().to_string(),
        );
    }
    let mut list = Termphone::builder(&[
        "--config",
        &cfg.display().to_string(),
        "account",
        "list",
        "--socket",
        &sock.display().to_string(),
    ])
    .raw()
    .dir(k.dir_handle())
    .spawn();
    assert_eq!(list.wait_exit_code(WAIT), 0, "{}", list.diagnostics());
    let lines = list.non_json_lines();
    let state = |name: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("{name}\t")))
            .and_then(|l| l.split("\tstate=").nth(1))
            .unwrap_or_else(|| panic!("no state for {name}: {lines:?}"))
            .to_string()
    };
    for (name, says) in [
        ("wrongpw", "wrong password"),
        ("nobody", "forbidden (403 Unknown User)"),
        (
            "down",
            &format!("connection refused by 127.0.0.1:{dead} (tcp)"),
        ),
        ("untrusted", "certificate not trusted: unknown issuer"),
    ] {
        assert!(
            reasons[name].contains(says),
            "event for {name}: {}",
            reasons[name]
        );
        let st = state(name);
        assert!(
            st.starts_with("failed: ") && st.contains(says),
            "{name}: {st}"
        );
    }
    let all = lines.join("\n");
    assert!(!all.contains("not-alices-pw") && !all.contains("carols-pw") && !all.contains("bobpw"));
    srv.stop();
}
