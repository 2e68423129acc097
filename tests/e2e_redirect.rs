//! Redirects (3xx, RFC 3261 §8.1.3.4): sipp answers termphone's INVITE with 302 and a Contact
//! naming a `termphone serve`; termphone calls there itself and the call connects. Loopback
//! only.

mod support;

use std::time::Duration;

use support::sipp::sipp_available;
use support::{test_dir, Sipp, Termphone};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn dial_follows_a_302_to_the_contact() {
    if !sipp_available() {
        assert!(std::env::var_os("CI").is_none(), "sipp is not installed");
        eprintln!("skipping: sipp (Debian sip-tester) is not installed");
        return;
    }
    let dir = test_dir();
    let mut desk = Termphone::builder(&["serve", "--echo"])
        .dir(dir.clone())
        .spawn();
    let desk_addr = desk.listen_addr();
    let mut sipp = Sipp::uas("uas_redirect.xml")
        .key("moved_to", desk_addr)
        .key("moved_user", "desk")
        .dir(dir.clone())
        .spawn();
    let mut dial = Termphone::builder(&["dial", &sipp.uri("front"), "--duration", "1"])
        .dir(dir.clone())
        .spawn();
    assert_eq!(dial.wait_exit_code(WAIT), 0, "{}", dial.diagnostics());
    sipp.expect_success(WAIT);
    let redirect = dial
        .events()
        .iter()
        .find(|e| e["event"] == "redirect")
        .cloned()
        .expect("a redirect event");
    assert_eq!(redirect["code"], 302, "{redirect}");
    assert_eq!(
        redirect["to"],
        format!("sip:desk@{desk_addr}"),
        "{redirect}"
    );
    desk.wait_call_state("hangupremote", WAIT);
    // The desk got the INVITE for the Contact's user, in the same call (Call-ID) as the first.
    let trace = dial.stderr();
    assert!(trace.contains(&format!("INVITE sip:desk@{desk_addr} SIP/2.0")));
    assert!(trace.contains("CSeq: 2 INVITE"), "the next CSeq");
    desk.stop();
}
