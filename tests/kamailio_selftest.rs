//! Tests of the Kamailio fixture (tests/support/kamailio.rs) against a real Kamailio on
//! 127.0.0.1, with raw UDP SIP (and sipp for a digest-authenticated REGISTER), so that the
//! registration tests of issue 3 start from a registrar known to behave.

mod support;

use std::time::{Duration, Instant};
use support::kamailio::{
    child_pids, pid_alive, AuthAlg, Kamailio, KamailioOpts, RawRequest, SipClient, User,
};
use support::sipp::sipp_available;
use support::Sipp;

const T: Duration = Duration::from_secs(5);

fn options(kam: &Kamailio, client: &SipClient) -> u16 {
    let req = RawRequest::new("OPTIONS", &kam.uri()).from("sip:probe@127.0.0.1");
    client.request(&req, kam.addr(), T).expect("OPTIONS").code
}

fn register_without_credentials(kam: &Kamailio, user: &str) -> support::kamailio::SipResponse {
    let client = SipClient::new();
    let aor = kam.aor(user);
    let req = RawRequest::new("REGISTER", "sip:127.0.0.1")
        .from(&aor)
        .to(&aor)
        .header("Contact", &format!("<sip:{user}@{}>", client.local_addr()))
        .header("Expires", "600");
    client.request(&req, kam.addr(), T).expect("REGISTER")
}

/// sipp registers (expires > 0) or unregisters (expires 0) `user` with digest auth (MD5).
fn sipp_register(kam: &Kamailio, user: &str, password: &str, expires: u32, port: u16) -> Sipp {
    let mut sipp = Sipp::uac("reg_auth.xml", kam.addr())
        .dir(kam.dir_handle())
        .port(port)
        .key("expires", expires)
        .arg("-s")
        .arg(user)
        .arg("-au")
        .arg(user)
        .arg("-ap")
        .arg(password)
        .timeout(Duration::from_secs(10))
        .spawn();
    let _ = sipp.wait_exit(Duration::from_secs(15));
    sipp
}

#[test]
fn options_is_answered_200() {
    let kam = Kamailio::start_default();
    let client = SipClient::new();
    let req = RawRequest::new("OPTIONS", &kam.uri()).from("sip:probe@127.0.0.1");
    let r = client.request(&req, kam.addr(), T).expect("OPTIONS");
    assert_eq!(r.code, 200, "{}", r.raw);
    assert_eq!(r.header("Server"), Some("kamailio-test-registrar"));
    assert!(kam.addr().ip().is_loopback());
    assert!(kam.log().contains("start #1"), "{}", kam.log());
}

#[test]
fn options_over_tcp_is_answered_200_on_the_same_port() {
    use std::io::{Read, Write};
    let kam = Kamailio::start_default();
    let mut tcp = std::net::TcpStream::connect(kam.addr()).expect("connect TCP");
    tcp.set_read_timeout(Some(T)).expect("timeout");
    let local = tcp.local_addr().expect("local addr");
    let req = RawRequest::new("OPTIONS", &kam.uri()).from("sip:probe@127.0.0.1");
    let text = req.to_text(local).replacen("SIP/2.0/UDP", "SIP/2.0/TCP", 1);
    tcp.write_all(text.as_bytes()).expect("send");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut chunk).expect("read TCP response");
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
    let r = support::kamailio::SipResponse::parse(&buf).expect("a SIP response");
    assert_eq!(r.code, 200, "{}", r.raw);
    assert_eq!(r.header("Call-ID"), Some(req.call_id.as_str()));
}

#[test]
fn register_without_credentials_gets_md5_digest_challenge() {
    let kam = Kamailio::start_default();
    assert_eq!(kam.auth_alg(), AuthAlg::Md5);
    let r = register_without_credentials(&kam, "alice");
    assert_eq!(r.code, 401, "{}", r.raw);
    let ch = r
        .challenge()
        .unwrap_or_else(|| panic!("no Digest challenge: {}", r.raw));
    assert_eq!(ch.realm(), Some("127.0.0.1"), "{ch:?}");
    assert!(ch.nonce().is_some_and(|n| n.len() >= 16), "{ch:?}");
    assert_eq!(ch.qop(), vec!["auth".to_owned()], "{ch:?}");
    assert!(
        ch.algorithm().is_none_or(|a| a.eq_ignore_ascii_case("MD5")),
        "{ch:?}"
    );
    // nothing was stored
    assert!(kam.registrations().is_empty());
}

#[test]
fn register_challenge_says_sha256_when_started_with_it() {
    let kam = Kamailio::start(KamailioOpts::default().sha256());
    let r = register_without_credentials(&kam, "bob");
    assert_eq!(r.code, 401, "{}", r.raw);
    let ch = r
        .challenge()
        .unwrap_or_else(|| panic!("no Digest challenge: {}", r.raw));
    assert_eq!(ch.realm(), Some("127.0.0.1"), "{ch:?}");
    assert!(ch.nonce().is_some_and(|n| !n.is_empty()), "{ch:?}");
    assert_eq!(ch.qop(), vec!["auth".to_owned()], "{ch:?}");
    assert_eq!(ch.algorithm(), Some("SHA-256"), "{ch:?}");
}

#[test]
fn invite_from_a_local_user_gets_407() {
    let kam = Kamailio::start_default();
    let client = SipClient::new();
    let sdp = "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let req = RawRequest::new("INVITE", &kam.aor("bob"))
        .from(&kam.aor("alice"))
        .header("Contact", &format!("<sip:alice@{}>", client.local_addr()))
        .header("Content-Type", "application/sdp")
        .body(sdp);
    let r = client.request(&req, kam.addr(), T).expect("INVITE");
    assert_eq!(r.code, 407, "{}", r.raw);
    let ch = r
        .challenge()
        .unwrap_or_else(|| panic!("no Proxy-Authenticate: {}", r.raw));
    assert_eq!(ch.realm(), Some("127.0.0.1"), "{ch:?}");
    assert!(ch.nonce().is_some(), "{ch:?}");
    assert!(r.header("WWW-Authenticate").is_none());
}

#[test]
fn registrations_are_read_and_sipp_registers_a_fixture_user() {
    let kam = Kamailio::start_default();
    assert!(kam.registrations().is_empty(), "{:?}", kam.registrations());
    let dump = kam
        .kamcmd(&["ul.dump"])
        .expect("kamcmd over the ctl socket");
    assert!(dump.contains("location"), "{dump}");
    if !sipp_available() {
        eprintln!("sipp not installed: skipping the authenticated REGISTER");
        return;
    }
    let port = support::free_udp_port();
    let mut sipp = sipp_register(&kam, "alice", "alicepw", 600, port);
    sipp.expect_success(T);
    let regs = kam.registrations_of("alice");
    assert_eq!(regs.len(), 1, "{regs:#?}");
    assert_eq!(regs[0].contact, format!("sip:alice@127.0.0.1:{port}"));
    assert!(
        regs[0].expires.is_some_and(|e| e > 500 && e <= 600),
        "{regs:#?}"
    );
    assert_eq!(regs[0].user_agent, "sipp reg_auth");
    assert_eq!(regs[0].socket, format!("udp:{}", kam.addr()));
    assert!(kam.registrations_of("bob").is_empty());
    assert!(kam
        .kamcmd(&["ul.dump"])
        .expect("kamcmd")
        .contains("AoR: alice"));

    // a wrong password is challenged again: sipp's run fails on the second 401
    let mut bad = sipp_register(&kam, "bob", "not-bobs", 600, support::free_udp_port());
    assert_eq!(bad.wait_exit(T), 1, "{}", bad.diagnostics());
    let trace = bad.messages();
    assert!(
        trace.matches("Authorization: Digest").count() >= 1,
        "{trace}"
    );
    assert!(trace.matches("SIP/2.0 401").count() >= 2, "{trace}");
    assert!(kam.registrations_of("bob").is_empty());

    // unregister (Expires: 0, same Contact): the table is empty again
    let mut un = sipp_register(&kam, "alice", "alicepw", 0, port);
    un.expect_success(T);
    kam.wait_registrations(T, "empty", |r| r.is_empty());
}

#[test]
fn configured_users_replace_the_default_ones() {
    if !sipp_available() {
        eprintln!("sipp not installed: skipping");
        return;
    }
    let kam =
        Kamailio::start(KamailioOpts::default().users(vec![User::new("carol", "c:ar\\ol pw")]));
    let mut ok = sipp_register(&kam, "carol", "c:ar\\ol pw", 60, support::free_udp_port());
    ok.expect_success(T);
    let mut alice = sipp_register(&kam, "alice", "alicepw", 60, support::free_udp_port());
    assert_eq!(alice.wait_exit(T), 1, "{}", alice.diagnostics());
    let regs = kam.registrations();
    assert_eq!(regs.len(), 1, "{regs:#?}");
    assert_eq!(regs[0].aor, "carol");
}

#[test]
fn restart_comes_back_on_the_same_port_and_forgets_bindings() {
    let mut kam = Kamailio::start_default();
    let addr = kam.addr();
    let pid1 = kam.pid().expect("running");
    if sipp_available() {
        let mut s = sipp_register(&kam, "alice", "alicepw", 600, support::free_udp_port());
        s.expect_success(T);
        assert_eq!(kam.registrations().len(), 1);
    }
    let t = Instant::now();
    kam.restart();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(kam.addr(), addr);
    let pid2 = kam.pid().expect("running again");
    assert_ne!(pid1, pid2);
    assert!(!pid_alive(pid1));
    assert_eq!(options(&kam, &SipClient::new()), 200);
    assert!(
        kam.registrations().is_empty(),
        "db_mode 0: a restart forgets"
    );
    let r = register_without_credentials(&kam, "alice");
    assert_eq!(r.code, 401);
    let log = kam.log();
    assert!(
        log.contains("start #1") && log.contains("start #2"),
        "{log}"
    );
}

#[test]
fn stop_and_drop_leave_no_process_behind() {
    let mut kam = Kamailio::start_default();
    let pids = kam.pids();
    assert!(pids.len() > 2, "main and workers: {pids:?}");
    let main = pids[0];
    assert_eq!(child_pids(main).len(), pids.len() - 1);
    let t = Instant::now();
    let st = kam.stop().expect("was running");
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "{:?} {st}",
        t.elapsed()
    );
    assert!(!kam.is_running());
    assert!(kam.pid().is_none());
    for p in &pids {
        assert!(!pid_alive(*p), "pid {p} still alive after stop");
    }
    assert!(kam.stop().is_none(), "second stop is a no-op");

    let kam2 = Kamailio::start_default();
    let pids2 = kam2.pids();
    drop(kam2);
    for p in &pids2 {
        assert!(!pid_alive(*p), "pid {p} still alive after drop");
    }
}

// ------------------------------------------------------------------ TLS, TCP, WebSocket

use std::io::Write as _;
use std::process::{Child, ChildStdin, Command, Stdio};
use support::kamailio::{digest_authorization, StreamSip, WsClient};

fn openssl_available() -> bool {
    Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Run `openssl s_client ARGS` with stdin at EOF (it connects, handshakes, verifies and
/// quits); (exit code, stdout + stderr). Stopped by its PID if it hangs.
fn s_client_once(kam: &Kamailio, args: &[&str]) -> (Option<i32>, String) {
    let out = kam
        .base_dir()
        .join(format!("s_client-{}.out", support::next_seq()));
    let f = std::fs::File::create(&out).expect("create s_client output");
    let mut child = Command::new("openssl")
        .arg("s_client")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(f.try_clone().expect("clone")))
        .stderr(Stdio::from(f))
        .spawn()
        .expect("spawn openssl s_client");
    let st = support::wait_until(Duration::from_secs(10), || child.try_wait().ok().flatten());
    let code = match st {
        Some(st) => st.code(),
        None => {
            support::stop_child(&mut child, support::TERM_GRACE);
            panic!(
                "openssl s_client {args:?} did not finish:\n{}",
                std::fs::read_to_string(&out).unwrap_or_default()
            );
        }
    };
    (code, std::fs::read_to_string(&out).unwrap_or_default())
}

#[test]
fn tls_listener_presents_a_certificate_of_the_test_ca_for_127_0_0_1_and_localhost() {
    if !openssl_available() {
        eprintln!("openssl not installed: skipping");
        return;
    }
    let kam = Kamailio::start(KamailioOpts::default().tls());
    let connect = kam.tls_addr().to_string();
    let ca = kam.ca_file().display().to_string();
    let untrusted = kam.untrusted_ca_file().display().to_string();
    for extra in [
        &["-servername", "localhost", "-verify_hostname", "localhost"][..],
        &["-verify_ip", "127.0.0.1"][..],
    ] {
        let mut args = vec!["-connect", &connect, "-CAfile", &ca, "-verify_return_error"];
        args.extend_from_slice(extra);
        let (code, out) = s_client_once(&kam, &args);
        assert_eq!(code, Some(0), "{args:?}:\n{out}");
        assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
        assert!(out.contains("CN = localhost"), "{out}");
    }
    // the unrelated CA does not vouch for it
    let (code, out) = s_client_once(
        &kam,
        &[
            "-connect",
            &connect,
            "-CAfile",
            &untrusted,
            "-verify_return_error",
            "-servername",
            "localhost",
        ],
    );
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("verify error"), "{out}");
    assert!(
        out.contains("unable to get local issuer certificate")
            || out.contains("self-signed certificate in certificate chain"),
        "{out}"
    );
    // and the certificate names no other host
    let (code, out) = s_client_once(
        &kam,
        &[
            "-connect",
            &connect,
            "-CAfile",
            &ca,
            "-verify_return_error",
            "-verify_hostname",
            "example.com",
        ],
    );
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("hostname mismatch"), "{out}");
    // UDP is still there as before
    assert_eq!(options(&kam, &SipClient::new()), 200);
}

/// `openssl s_client` as a TLS pipe: SIP written to its stdin goes over TLS, what the server
/// sends comes out of its stdout. Stopped by its PID on drop.
struct TlsPipe {
    child: Child,
    sip: StreamSip<ChildStdin>,
}

impl TlsPipe {
    fn connect(kam: &Kamailio, port: u16) -> TlsPipe {
        let err = kam
            .base_dir()
            .join(format!("s_client-pipe-{}.err", support::next_seq()));
        let mut child = Command::new("openssl")
            .args(["s_client", "-quiet", "-nocommands", "-verify_return_error"])
            .args(["-servername", "localhost", "-connect"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-CAfile")
            .arg(kam.ca_file())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(err).expect("create s_client stderr"),
            ))
            .spawn()
            .expect("spawn openssl s_client");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        TlsPipe {
            child,
            sip: StreamSip::new(stdin, stdout),
        }
    }
}

impl Drop for TlsPipe {
    fn drop(&mut self) {
        support::stop_child(&mut self.child, support::TERM_GRACE);
    }
}

/// REGISTER `user` (Contact `sip:USER@client.invalid;transport=T`) over a stream-like
/// connection, answering the 401; returns the 200.
fn register_over(
    send: &mut dyn FnMut(&str) -> Result<(), String>,
    recv: &mut dyn FnMut(&str) -> Result<support::kamailio::SipResponse, String>,
    transport: &str,
    user: &str,
    password: &str,
) -> support::kamailio::SipResponse {
    let aor = format!("sip:{user}@127.0.0.1");
    let t = transport.to_ascii_lowercase();
    let contact = format!("<sip:{user}@client.invalid;transport={t}>");
    let req = RawRequest::new("REGISTER", "sip:127.0.0.1")
        .from(&aor)
        .to(&aor)
        .header("Contact", &contact)
        .header("Expires", "600");
    send(&req.to_text_over(transport, "client.invalid")).expect("send REGISTER");
    let r = recv(&req.call_id).expect("answer to REGISTER");
    assert_eq!(r.code, 401, "{}", r.raw);
    let ch = r.challenge().expect("a Digest challenge");
    let auth = digest_authorization(&ch, "REGISTER", "sip:127.0.0.1", user, password);
    let mut req2 = req.clone().cseq(2).header("Authorization", &auth);
    req2.branch.push_str("-2");
    send(&req2.to_text_over(transport, "client.invalid")).expect("send REGISTER 2");
    recv(&req.call_id).expect("answer to the REGISTER with credentials")
}

/// A response to a request (Via, Record-Route, From, To with a tag, Call-ID, CSeq copied).
fn reply_to(request: &str, code: u16, reason: &str) -> String {
    reply_with(request, code, reason, "")
}

/// [`reply_to`] plus `extra` header lines (each ending in CRLF).
fn reply_with(request: &str, code: u16, reason: &str, extra: &str) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    let head = request.split("\r\n\r\n").next().unwrap_or_default();
    for line in head.split("\r\n").skip(1) {
        let Some((name, _)) = line.split_once(':') else {
            continue;
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "via" | "v" | "record-route" | "from" | "f" | "call-id" | "i" | "cseq" => {
                out.push_str(line);
                out.push_str("\r\n");
            }
            "to" | "t" => {
                out.push_str(line);
                out.push_str(";tag=callee1\r\n");
            }
            _ => {}
        }
    }
    out.push_str(extra);
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// A MESSAGE from a foreign UDP sender (no auth asked) to `sip:USER@127.0.0.1`, sent on a
/// thread; join it for the final response the sender got.
fn message_from_udp(
    kam: &Kamailio,
    user: &str,
) -> (
    String,
    std::thread::JoinHandle<Result<support::kamailio::SipResponse, String>>,
) {
    let req = RawRequest::new("MESSAGE", &kam.aor(user))
        .from("sip:probe@example.invalid")
        .header("Content-Type", "text/plain")
        .body("hello over a connection");
    let call_id = req.call_id.clone();
    let dest = kam.addr();
    let h = std::thread::spawn(move || SipClient::new().request(&req, dest, T));
    (call_id, h)
}

#[test]
fn tls_client_registers_with_digest_and_requests_reach_it_over_its_connection() {
    if !openssl_available() {
        eprintln!("openssl not installed: skipping");
        return;
    }
    let kam = Kamailio::start(KamailioOpts::default().tls());
    assert_eq!(
        kam.uri_for("tls"),
        format!("sip:127.0.0.1:{};transport=tls", kam.tls_port())
    );
    let mut pipe = TlsPipe::connect(&kam, kam.tls_port());
    let sip = std::cell::RefCell::new(&mut pipe.sip);
    let ok = register_over(
        &mut |t| sip.borrow_mut().send(t),
        &mut |cid| sip.borrow_mut().recv_response(cid, T),
        "TLS",
        "bob",
        "bobpw",
    );
    assert_eq!(ok.code, 200, "{}", ok.raw);
    let regs = kam.registrations_of("bob");
    assert_eq!(regs.len(), 1, "{regs:#?}");
    assert_eq!(
        regs[0].socket,
        format!("tls:{}", kam.tls_addr()),
        "{regs:#?}"
    );
    assert!(
        regs[0]
            .received
            .as_deref()
            .is_some_and(|r| r.starts_with("sip:127.0.0.1:") && r.contains("transport=tls")),
        "fix_nated_register keeps the source: {regs:#?}"
    );

    // a request to bob is relayed over the TLS connection bob opened
    let (call_id, sender) = message_from_udp(&kam, "bob");
    let msg = loop {
        let m = sip.borrow_mut().recv(T).expect("the MESSAGE over TLS");
        if m.starts_with("MESSAGE ") {
            break m;
        }
    };
    assert!(msg.contains(&call_id), "{msg}");
    assert!(msg.contains("hello over a connection"), "{msg}");
    sip.borrow_mut()
        .send(&reply_to(&msg, 200, "OK"))
        .expect("send 200");
    let r = sender
        .join()
        .expect("sender thread")
        .expect("final response");
    assert_eq!(r.code, 200, "{}", r.raw);
}

#[test]
fn sipp_over_tcp_registers_with_digest_auth() {
    if !sipp_available() {
        eprintln!("sipp not installed: skipping");
        return;
    }
    let kam = Kamailio::start(KamailioOpts::default().tls().ws());
    assert_eq!(
        kam.uri_for("tcp"),
        format!("sip:127.0.0.1:{};transport=tcp", kam.port())
    );
    assert_eq!(kam.uri_for("udp"), kam.uri());
    let port = support::free_udp_port();
    let mut sipp = Sipp::uac("reg_auth.xml", kam.addr())
        .dir(kam.dir_handle())
        .port(port)
        .key("expires", 600)
        .arg("-t")
        .arg("t1")
        .arg("-s")
        .arg("alice")
        .arg("-au")
        .arg("alice")
        .arg("-ap")
        .arg("alicepw")
        .timeout(Duration::from_secs(10))
        .spawn();
    sipp.expect_success(Duration::from_secs(15));
    assert!(
        sipp.messages().contains("SIP/2.0/TCP"),
        "{}",
        sipp.messages()
    );
    let regs = kam.registrations_of("alice");
    assert_eq!(regs.len(), 1, "{regs:#?}");
    assert_eq!(regs[0].socket, format!("tcp:{}", kam.addr()), "{regs:#?}");
    assert!(
        regs[0]
            .received
            .as_deref()
            .is_some_and(|r| r.contains("transport=tcp")),
        "{regs:#?}"
    );
}

#[test]
fn websocket_handshake_echoes_sip_and_options_in_a_frame_gets_200() {
    let kam = Kamailio::start(KamailioOpts::default().ws());
    assert_eq!(kam.ws_url(), format!("ws://127.0.0.1:{}/", kam.ws_port()));
    assert_eq!(
        kam.uri_for("ws"),
        format!("sip:127.0.0.1:{};transport=ws", kam.ws_port())
    );
    let mut ws = WsClient::handshake(kam.ws_addr(), "/", Some("sip")).expect("handshake");
    assert_eq!(ws.status(), Some(101), "{}", ws.handshake);
    assert_eq!(
        ws.header("Sec-WebSocket-Protocol"),
        Some("sip"),
        "{}",
        ws.handshake
    );
    assert!(
        ws.header("Upgrade")
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket")),
        "{}",
        ws.handshake
    );
    let req = RawRequest::new("OPTIONS", &kam.uri_for("ws")).from("sip:probe@127.0.0.1");
    ws.send_text(&req.to_text_over("WS", "client.invalid"))
        .expect("send the OPTIONS frame");
    let r = ws.recv_response(&req.call_id, T).expect("200 in a frame");
    assert_eq!(r.code, 200, "{}", r.raw);

    // an upgrade on the SIP TCP port is forbidden; a plain GET on the WS port is not found
    let other = WsClient::handshake(kam.addr(), "/", Some("sip")).expect("HTTP on SIP port");
    assert_eq!(other.status(), Some(403), "{}", other.handshake);
    let mut plain = std::net::TcpStream::connect(kam.ws_addr()).expect("connect");
    plain.set_read_timeout(Some(T)).expect("timeout");
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("send GET");
    let mut head = String::new();
    let _ = std::io::Read::read_to_string(&mut plain, &mut head);
    assert_eq!(support::kamailio::http_status(&head), Some(404), "{head}");
}

#[test]
fn websocket_client_registers_and_requests_reach_it_over_its_connection() {
    let kam = Kamailio::start(KamailioOpts::default().ws());
    let ws = std::cell::RefCell::new(WsClient::connect_sip(kam.ws_addr()).expect("handshake"));
    let ok = register_over(
        &mut |t| ws.borrow_mut().send_text(t),
        &mut |cid| ws.borrow_mut().recv_response(cid, T),
        "WS",
        "bob",
        "bobpw",
    );
    assert_eq!(ok.code, 200, "{}", ok.raw);
    let regs = kam.registrations_of("bob");
    assert_eq!(regs.len(), 1, "{regs:#?}");
    assert_eq!(
        regs[0].socket,
        format!("tcp:{}", kam.ws_addr()),
        "{regs:#?}"
    );
    assert_eq!(regs[0].contact, "sip:bob@client.invalid;transport=ws");
    let local = ws.borrow().local_addr();
    assert_eq!(
        regs[0].received.as_deref(),
        Some(format!("sip:{local};transport=ws").as_str()),
        "{regs:#?}"
    );

    let (call_id, sender) = message_from_udp(&kam, "bob");
    let msg = loop {
        let m = ws.borrow_mut().recv_text(T).expect("the MESSAGE over WS");
        if m.starts_with("MESSAGE ") {
            break m;
        }
    };
    assert!(msg.contains(&call_id), "{msg}");
    assert!(
        msg.contains("SIP/2.0/WS"),
        "Kamailio's own Via names WS: {msg}"
    );
    ws.borrow_mut()
        .send_text(&reply_to(&msg, 200, "OK"))
        .expect("send 200");
    let r = sender
        .join()
        .expect("sender thread")
        .expect("final response");
    assert_eq!(r.code, 200, "{}", r.raw);
}

#[test]
fn secure_websocket_handshake_over_tls_gets_101_with_sip() {
    if !openssl_available() {
        eprintln!("openssl not installed: skipping");
        return;
    }
    let kam = Kamailio::start(KamailioOpts::default().all_transports());
    assert_eq!(
        kam.wss_url(),
        format!("wss://127.0.0.1:{}/", kam.wss_port())
    );
    let mut pipe = TlsPipe::connect(&kam, kam.wss_port());
    pipe.sip
        .send(&format!(
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: sip\r\n\r\n",
            kam.wss_port()
        ))
        .expect("send the upgrade");
    let head = pipe.sip.recv(T).expect("the upgrade response");
    assert_eq!(support::kamailio::http_status(&head), Some(101), "{head}");
    assert_eq!(
        support::kamailio::http_header(&head, "Sec-WebSocket-Protocol"),
        Some("sip"),
        "{head}"
    );
    // the other listeners of all_transports answer too
    assert_eq!(options(&kam, &SipClient::new()), 200);
    let ws = WsClient::connect_sip(kam.ws_addr()).expect("ws handshake");
    assert_eq!(ws.status(), Some(101));
}

#[test]
fn websocket_callee_answers_an_invite_and_the_bye_reaches_it_by_contact_alias() {
    let kam = Kamailio::start(KamailioOpts::default().ws());
    let ws = std::cell::RefCell::new(WsClient::connect_sip(kam.ws_addr()).expect("handshake"));
    let ok = register_over(
        &mut |t| ws.borrow_mut().send_text(t),
        &mut |cid| ws.borrow_mut().recv_response(cid, T),
        "WS",
        "bob",
        "bobpw",
    );
    assert_eq!(ok.code, 200, "{}", ok.raw);
    let ws_local = ws.borrow().local_addr();

    // a foreign UDP caller (no auth asked) INVITEs bob, who is on WS
    let caller = SipClient::new();
    let sdp = "v=0\r\no=carol 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let invite = RawRequest::new("INVITE", &kam.aor("bob"))
        .from("sip:carol@example.invalid")
        .header("Contact", &format!("<sip:carol@{}>", caller.local_addr()))
        .header("Content-Type", "application/sdp")
        .body(sdp);
    let dest = kam.addr();
    let inv = invite.clone();
    let h = std::thread::spawn(move || {
        let r = caller.request(&inv, dest, T);
        (caller, r)
    });
    let msg = loop {
        let m = ws.borrow_mut().recv_text(T).expect("the INVITE over WS");
        if m.starts_with("INVITE ") {
            break m;
        }
    };
    assert!(msg.contains(&invite.call_id), "{msg}");
    ws.borrow_mut()
        .send_text(&reply_with(
            &msg,
            200,
            "OK",
            "Contact: <sip:bob@client.invalid;transport=ws>\r\n",
        ))
        .expect("send 200");
    let (caller, r) = h.join().expect("caller thread");
    let r = r.expect("final response to the INVITE");
    assert_eq!(r.code, 200, "{}", r.raw);
    // Kamailio marked the callee's Contact with where it really is
    let contact = r.header("Contact").expect("Contact in the 200").to_owned();
    let alias = format!("alias={}~{}~", ws_local.ip(), ws_local.port());
    assert!(contact.contains(&alias), "{contact} lacks {alias}");
    let target = contact.trim().trim_start_matches('<');
    let target = target.split('>').next().unwrap_or_default().to_owned();
    let mut route: Vec<String> = r
        .header_all("Record-Route")
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_owned())
        .collect();
    assert!(!route.is_empty(), "{}", r.raw);
    route.reverse();
    let route = route.join(", ");
    let to_tag = "callee1";

    let in_dialog = |method: &str, cseq: u32| {
        RawRequest::new(method, &target)
            .from("sip:carol@example.invalid")
            .with_from_tag(&invite.from_tag)
            .to(&kam.aor("bob"))
            .with_to_tag(to_tag)
            .call_id(&invite.call_id)
            .cseq(cseq)
            .header("Route", &route)
    };
    let ack = in_dialog("ACK", 1);
    caller.send_raw(&ack.to_text(caller.local_addr()), dest);
    let m = ws.borrow_mut().recv_text(T).expect("the ACK over WS");
    assert!(m.starts_with("ACK "), "{m}");
    let bye = in_dialog("BYE", 2);
    let bye2 = bye.clone();
    let h = std::thread::spawn(move || caller.request(&bye2, dest, T));
    let msg = ws.borrow_mut().recv_text(T).expect("the BYE over WS");
    assert!(msg.starts_with("BYE "), "{msg}");
    assert!(msg.contains(&invite.call_id), "{msg}");
    assert!(
        !msg.split("\r\n")
            .next()
            .unwrap_or_default()
            .contains("alias="),
        "handle_ruri_alias strips the alias: {msg}"
    );
    ws.borrow_mut()
        .send_text(&reply_to(&msg, 200, "OK"))
        .expect("send 200 to BYE");
    let r = h
        .join()
        .expect("bye thread")
        .expect("final response to BYE");
    assert_eq!(r.code, 200, "{}", r.raw);
}
