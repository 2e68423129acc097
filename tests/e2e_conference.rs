//! A local 3-way conference: A talks to B and to C, joins the two calls, and each party hears
//! the other two (the engine mixes, converting between the calls' codec rates). Each party
//! sends its own tone; B's and C's recordings must hold both other tones. Loopback only.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use support::audio::{read_wav_mono, tone_coverage};
use support::control::{serve_with_control, CtlClient};
use support::{is_event, test_dir, Termphone};

const WAIT: Duration = Duration::from_secs(20);

fn tone_file(dir: &Path, freq: f64) -> String {
    let path = dir.join(format!("tone-{freq}.wav"));
    support::audio::write_tone_wav(&path, freq, 0.2, 30.0);
    path.display().to_string()
}

fn call_id(v: &Value) -> String {
    v["call"].as_str().unwrap().to_string()
}

/// Share of 100 ms blocks of the recording's last `secs` seconds in which `freq` is clearly
/// present (two tones share the energy, so a quarter of it is enough).
fn share(path: &str, secs: f64, freq: f64) -> f64 {
    let (rate, x) = read_wav_mono(Path::new(path)).unwrap();
    let from = x.len().saturating_sub((secs * f64::from(rate)) as usize);
    tone_coverage(&x[from..x.len() - rate as usize / 5], rate, freq, 0.25, 100)
}

fn recording(t: &mut Termphone) -> String {
    t.wait_event(is_event("recording"), WAIT)["path"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn three_way_conference_each_party_hears_the_other_two() {
    let dir = test_dir();
    let (a_tone, b_tone, c_tone) = (
        tone_file(dir.path(), 1000.0),
        tone_file(dir.path(), 600.0),
        tone_file(dir.path(), 800.0),
    );
    // One directory each: both name their file by time, caller (A, the same address) and
    // call id (c1 on each).
    let (b_dir, c_dir) = (dir.path().join("b"), dir.path().join("c"));
    std::fs::create_dir(&b_dir).unwrap();
    std::fs::create_dir(&c_dir).unwrap();
    let (b_dir, c_dir) = (b_dir.display().to_string(), c_dir.display().to_string());
    let (mut a, a_sock) = serve_with_control(&dir, &[]);
    // B on G.722 (16 kHz), C on PCMU (8 kHz): the mix converts between them.
    let (mut b, _) = serve_with_control(
        &dir,
        &["--codec", "G722", "--play", &b_tone, "--record", &b_dir],
    );
    let (mut c, _) = serve_with_control(
        &dir,
        &["--codec", "PCMU", "--play", &c_tone, "--record", &c_dir],
    );
    let mut ca = CtlClient::connect(&a_sock);
    ca.ok(json!({"cmd": "subscribe"}));
    let ab = call_id(&ca.ok(json!({"cmd": "dial", "to": b.sip_uri("b"), "play": a_tone})));
    let ac = call_id(&ca.ok(json!({"cmd": "dial", "to": c.sip_uri("c"), "play": a_tone})));
    ca.wait_call(&ab, "connected", WAIT);
    ca.wait_call(&ac, "connected", WAIT);
    assert_eq!(
        ca.error(json!({"cmd": "join", "call": ab})),
        "join needs `with` (the other call's id)"
    );
    // Before the join B hears only A: C's tone must not be there yet.
    std::thread::sleep(Duration::from_secs(2));
    let joined = ca.ok(json!({"cmd": "join", "call": ab, "with": ac}));
    assert_eq!(joined["calls"], json!([ab, ac]));
    let conf = ca.wait_event(|e| e["event"] == "conference", WAIT);
    assert_eq!(conf["calls"], json!([ab, ac]), "{conf}");
    std::thread::sleep(Duration::from_secs(3));
    ca.ok(json!({"cmd": "hangup"}));
    ca.wait_event(
        |e| e["event"] == "conference" && e["calls"] == json!([]),
        WAIT,
    );
    b.wait_call_state("hangupremote", WAIT);
    c.wait_call_state("hangupremote", WAIT);
    let (b_rec, c_rec) = (recording(&mut b), recording(&mut c));
    a.stop();
    b.stop();
    c.stop();

    // The last 2.5 s (joined): B hears A (1000) and C (800); C hears A (1000) and B (600),
    // and neither its own tone back.
    let report = format!(
        "B hears 1000 {:.2} 800 {:.2} (own 600 {:.2}); C hears 1000 {:.2} 600 {:.2} (own 800 {:.2})",
        share(&b_rec, 2.5, 1000.0),
        share(&b_rec, 2.5, 800.0),
        share(&b_rec, 2.5, 600.0),
        share(&c_rec, 2.5, 1000.0),
        share(&c_rec, 2.5, 600.0),
        share(&c_rec, 2.5, 800.0)
    );
    eprintln!("{report}");
    for (rec, f) in [
        (&b_rec, 1000.0),
        (&b_rec, 800.0),
        (&c_rec, 1000.0),
        (&c_rec, 600.0),
    ] {
        assert!(share(rec, 2.5, f) > 0.9, "{report}");
    }
    assert!(share(&b_rec, 2.5, 600.0) < 0.1, "{report}");
    assert!(share(&c_rec, 2.5, 800.0) < 0.1, "{report}");
}
