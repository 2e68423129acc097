//! Property tests: no input makes the SDP offer/answer code panic.

use core::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;
use sdp_types::Session;
use termphone::sip::sdp::{create_answer, create_offer, process_answer, LocalMedia};

fn local() -> LocalMedia {
    LocalMedia::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 30000, 1)
}

/// One SDP-looking line built from plausible and hostile pieces.
fn sdp_line() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        Just(String::new()),
        Just("0".to_string()),
        Just("101".to_string()),
        Just("255".to_string()),
        Just("99999".to_string()),
        Just("-".to_string()),
        Just("IN".to_string()),
        Just("IP4".to_string()),
        Just("IP6".to_string()),
        Just("0.0.0.0".to_string()),
        Just("::1".to_string()),
        Just("127.0.0.1/127/3".to_string()),
        Just("RTP/AVP".to_string()),
        Just("audio".to_string()),
        Just("PCMU/8000".to_string()),
        Just("telephone-event/0".to_string()),
        Just("opus/48000/0".to_string()),
        "[ -~]{0,12}",
        "\\PC{0,6}",
    ];
    let key = prop_oneof![
        Just("v"),
        Just("o"),
        Just("s"),
        Just("c"),
        Just("t"),
        Just("m"),
        Just("a"),
        Just("b"),
        Just("k"),
        Just("x"),
    ];
    let attr = prop_oneof![
        Just("rtpmap:"),
        Just("fmtp:"),
        Just("ptime:"),
        Just("sendonly"),
        Just("inactive"),
        Just("rtcp:"),
        Just(""),
    ];
    let free = (key, attr, proptest::collection::vec(word, 0..6)).prop_map(|(k, a, words)| {
        let body = words.join(" ");
        if k == "a" {
            format!("a={a}{body}")
        } else {
            format!("{k}={body}")
        }
    });
    let pt = prop_oneof![Just(0u16), Just(8), Just(9), Just(96), Just(101), 0u16..300];
    let m_line = (
        prop_oneof![Just("audio"), Just("video"), Just("AUDIO")],
        prop_oneof![Just(0u16), Just(4000), any::<u16>()],
        prop_oneof![Just("RTP/AVP"), Just("RTP/AVPF"), Just("RTP/SAVP")],
        proptest::collection::vec(pt.clone(), 0..5),
    )
        .prop_map(|(media, port, proto, pts)| {
            let fmts: Vec<String> = pts.iter().map(u16::to_string).collect();
            format!("m={media} {port} {proto} {}", fmts.join(" "))
        });
    let rtpmap = (
        pt,
        prop_oneof![
            Just("PCMU"),
            Just("pcma"),
            Just("telephone-event"),
            Just("opus"),
            Just("")
        ],
        prop_oneof![Just(8000u32), Just(48000), Just(0), any::<u32>()],
        prop_oneof![Just(""), Just("/1"), Just("/2"), Just("/0"), Just("/x")],
    )
        .prop_map(|(pt, name, rate, ch)| format!("a=rtpmap:{pt} {name}/{rate}{ch}"));
    let c_line = prop_oneof![
        Just("c=IN IP4 127.0.0.1".to_string()),
        Just("c=IN IP4 0.0.0.0".to_string()),
        Just("c=IN IP6 ::1".to_string()),
        Just("c=IN IP4 host.example".to_string()),
        Just("c=TN RFC2543 5551234".to_string()),
    ];
    prop_oneof![3 => free, 3 => m_line, 3 => rtpmap, 1 => c_line]
}

fn sdp_like() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(sdp_line(), 0..20),
        prop_oneof![Just("\r\n"), Just("\n"), Just("\r")],
    )
        .prop_map(|(lines, eol)| {
            let mut s = format!("v=0{eol}o=- 1 1 IN IP4 127.0.0.1{eol}c=IN IP4 127.0.0.1{eol}");
            for l in lines {
                s.push_str(&l);
                s.push_str(eol);
            }
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = create_answer(&text, &local());
        let _ = process_answer(&local(), &text);
    }

    #[test]
    fn random_strings_never_panic(text in "\\PC{0,400}") {
        let _ = create_answer(&text, &local());
        let _ = process_answer(&local(), &text);
    }

    #[test]
    fn sdp_like_text_never_panics(text in sdp_like()) {
        let _ = create_answer(&text, &local());
        let _ = process_answer(&local(), &text);
    }

    /// A successful answer is valid SDP: one m= line per offered line, exactly one accepted,
    /// and when that one comes first (as with our own offers) process_answer agrees on it.
    #[test]
    fn successful_answers_are_usable(text in sdp_like()) {
        if let Ok((answer, negotiated)) = create_answer(&text, &local()) {
            let parsed = Session::parse(answer.as_bytes());
            prop_assert!(parsed.is_ok(), "{:?}", answer);
            let parsed = parsed.unwrap();
            let accepted: Vec<usize> = parsed
                .medias
                .iter()
                .enumerate()
                .filter(|(_, m)| m.port != 0)
                .map(|(i, _)| i)
                .collect();
            prop_assert_eq!(accepted.len(), 1, "{}", answer);
            let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
            if let Ok(offer) = Session::parse(normalized.as_bytes()) {
                prop_assert_eq!(offer.medias.len(), parsed.medias.len(), "{}", answer);
            }
            if accepted[0] == 0 {
                let back = process_answer(&local(), &answer);
                prop_assert!(back.is_ok(), "{:?} -> {:?}", answer, back);
                prop_assert_eq!(back.unwrap().codec, negotiated.codec);
            }
        }
    }

    /// Whatever the local settings, our offer parses and answers itself.
    #[test]
    fn offers_answer_themselves(port in 1u16.., version in any::<u64>(), user in "\\PC{0,10}", te in any::<bool>()) {
        let mut l = local();
        l.port = port;
        l.session_version = version;
        l.username = user;
        l.telephone_event = te;
        let offer = create_offer(&l);
        let (answer, n) = create_answer(&offer, &l).unwrap();
        prop_assert_eq!(n.telephone_event_pt.is_some(), te);
        let back = process_answer(&l, &answer).unwrap();
        prop_assert_eq!(back.codec, n.codec);
    }
}
