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
