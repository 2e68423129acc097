//! Answers to real-world SDP offers and answers (baresip, Asterisk, sipp, WebRTC-ish, IPv6).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use sdp_types::Session;
use termphone::sip::sdp::{
    create_answer, create_offer, g722, opus, pcma, pcmu, process_answer, CodecSpec, Direction,
    FormatParams, LocalMedia, Negotiated, SdpError, OPUS_FMTP,
};

fn local() -> LocalMedia {
    let mut l = LocalMedia::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 30000, 777);
    l.session_version = 3;
    l.username = "termphone".into();
    l
}

fn crlf(lines: &str) -> String {
    lines.lines().map(|l| format!("{l}\r\n")).collect()
}

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Parses an answer back and returns (port, proto, fmt, attributes "name[:value]") per m-line.
fn media_lines(answer: &str) -> Vec<(String, u16, String, String, Vec<String>)> {
    let s = Session::parse(answer.as_bytes()).expect("our answer parses");
    s.medias
        .iter()
        .map(|m| {
            let attrs = m
                .attributes
                .iter()
                .map(|a| match &a.value {
                    Some(v) => format!("{}:{v}", a.attribute),
                    None => a.attribute.clone(),
                })
                .collect();
            (
                m.media.clone(),
                m.port,
                m.proto.clone(),
                m.fmt.clone(),
                attrs,
            )
        })
        .collect()
}

// baresip 1.0.0 style offer: a=tool, a=ssrc, opus/G722/PCMU/PCMA/telephone-event, a=rtcp.
const BARESIP_OFFER: &str = "v=0
o=- 1817361447 3162447539 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
a=tool:baresip 1.0.0
m=audio 10780 RTP/AVP 96 9 0 8 101
b=AS:128
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtcp:10781
a=sendrecv
a=label:1
a=ssrc:1509851425 cname:sip:alice@127.0.0.1
a=rtcp-rsize
a=ptime:20
";

#[test]
fn baresip_offer() {
    let (answer, n) = create_answer(&crlf(BARESIP_OFFER), &local()).unwrap();
    assert_eq!(
        n,
        Negotiated {
            remote: sock("127.0.0.1:10780"),
            codec: pcmu(),
            telephone_event_pt: Some(101),
            direction: Direction::SendRecv,
            ptime: 20,
            rtcp_mux: false,
            remote_rtcp: sock("127.0.0.1:10781"),
            remote_fmtp: FormatParams::default(),
        }
    );
    let s = Session::parse(answer.as_bytes()).unwrap();
    assert_eq!(s.origin.username.as_deref(), Some("termphone"));
    assert_eq!(s.origin.sess_id, "777");
    assert_eq!(s.origin.sess_version, 3);
    assert_eq!(
        s.connection.as_ref().unwrap().connection_address,
        "127.0.0.1"
    );
    let lines = media_lines(&answer);
    assert_eq!(lines.len(), 1);
    let (media, port, proto, fmt, attrs) = &lines[0];
    assert_eq!(
        (media.as_str(), *port, proto.as_str(), fmt.as_str()),
        ("audio", 30000, "RTP/AVP", "0 101")
    );
    assert_eq!(
        attrs,
        &[
            "rtpmap:0 PCMU/8000",
            "rtpmap:101 telephone-event/8000",
            "fmtp:101 0-16",
            "ptime:20",
            "sendrecv"
        ]
    );
    // Exactly one audio codec: no opus, G722, PCMA in the answer.
    assert!(!answer.contains("opus") && !answer.contains("G722") && !answer.contains("PCMA"));
    assert!(!answer.contains("a=tool") && !answer.contains("a=ssrc"));
}

#[test]
fn baresip_offer_our_preference_pcma() {
    let mut l = local();
    l.codecs = vec![pcma(), pcmu()];
    let (answer, n) = create_answer(&crlf(BARESIP_OFFER), &l).unwrap();
    assert_eq!(n.codec, pcma());
    assert!(
        answer.contains("m=audio 30000 RTP/AVP 8 101\r\n"),
        "{answer}"
    );
}

const ASTERISK_OFFER: &str = "v=0
o=- 1700000000 1700000000 IN IP4 192.0.2.10
s=Asterisk
c=IN IP4 192.0.2.10
t=0 0
m=audio 14220 RTP/AVP 8 0 3 101
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:3 GSM/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=maxptime:150
a=sendrecv
";

#[test]
fn asterisk_offer_answerer_preference_decides() {
    // Asterisk prefers PCMA; we prefer PCMU, and the answerer decides.
    let (answer, n) = create_answer(&crlf(ASTERISK_OFFER), &local()).unwrap();
    assert_eq!(n.codec, pcmu());
    assert_eq!(n.remote, sock("192.0.2.10:14220"));
    assert_eq!(n.telephone_event_pt, Some(101));
    assert!(
        answer.contains("m=audio 30000 RTP/AVP 0 101\r\n"),
        "{answer}"
    );
}

#[test]
fn asterisk_style_hold_reinvite() {
    // Asterisk (and RFC 2543 phones) hold with c=0.0.0.0; newer ones add a=sendonly.
    let offer = ASTERISK_OFFER
        .replace("c=IN IP4 192.0.2.10", "c=IN IP4 0.0.0.0")
        .replace("1700000000 IN", "1700000001 IN");
    let (answer, n) = create_answer(&crlf(&offer), &local()).unwrap();
    assert_eq!(n.direction, Direction::RecvOnly);
    assert_eq!(n.remote, sock("0.0.0.0:14220"));
    assert!(answer.contains("a=recvonly\r\n"), "{answer}");

    let offer = offer.replace("a=sendrecv", "a=inactive");
    let (answer, n) = create_answer(&crlf(&offer), &local()).unwrap();
    assert_eq!(n.direction, Direction::Inactive);
    assert!(answer.contains("a=inactive\r\n"), "{answer}");
}

#[test]
fn sipp_offer_static_pt_only() {
    // sipp's uac scenario: "m=audio 6000 RTP/AVP 0" and nothing else.
    let offer = "v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
";
    let (answer, n) = create_answer(&crlf(offer), &local()).unwrap();
    assert_eq!(n.codec, pcmu());
    assert_eq!(n.telephone_event_pt, None);
    assert_eq!(n.remote, sock("127.0.0.1:6000"));
    assert_eq!(n.ptime, 20);
    let lines = media_lines(&answer);
    assert_eq!(lines[0].3, "0");
    assert!(!answer.contains("telephone-event"));
}

#[test]
fn opus_only_offer_is_no_common_codec() {
    let offer = "v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 5004 RTP/AVP 111 110
a=rtpmap:111 opus/48000/2
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:110 telephone-event/48000
a=sendrecv
";
    let err = create_answer(&crlf(offer), &local()).unwrap_err();
    assert_eq!(err, SdpError::NoCommonCodec);
    assert_eq!(err.sip_status(), 488);
}

#[test]
fn ipv6_offer_with_rtcp_attributes() {
    let offer = "v=0
o=- 20518 0 IN IP6 ::1
s=-
c=IN IP6 ::1
t=0 0
m=audio 5004 RTP/AVP 0 8 101
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtcp:5005 IN IP6 ::1
a=rtcp-mux
a=ptime:20
";
    let mut l = local();
    l.addr = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let (answer, n) = create_answer(&crlf(offer), &l).unwrap();
    assert_eq!(n.remote, sock("[::1]:5004"));
    assert_eq!(n.codec, pcmu());
    assert_eq!(n.telephone_event_pt, Some(101));
    assert!(answer.contains("c=IN IP6 ::1\r\n"), "{answer}");
    assert!(answer.contains(" IN IP6 ::1\r\n"), "{answer}");
    // RTCP muxed on the RTP port (RFC 5761): answered with a=rtcp-mux, their a=rtcp unused.
    assert!(answer.contains("a=rtcp-mux\r\n"), "{answer}");
    assert!(!answer.contains("a=rtcp:"), "{answer}");
    assert!(n.rtcp_mux);
    assert_eq!(n.remote_rtcp, sock("[::1]:5004"));
    // Without mux on our side: RTCP to their a=rtcp address.
    l.rtcp_mux = false;
    let (answer, n) = create_answer(&crlf(offer), &l).unwrap();
    assert!(!answer.contains("rtcp"), "{answer}");
    assert_eq!((n.rtcp_mux, n.remote_rtcp), (false, sock("[::1]:5005")));
}

#[test]
fn ipv6_media_level_connection_overrides_session() {
    let offer = "v=0
o=- 1 1 IN IP6 2001:db8::1
s=-
c=IN IP6 2001:db8::1
t=0 0
m=audio 5004 RTP/AVP 8
c=IN IP6 2001:db8::2
";
    let (_, n) = create_answer(&crlf(offer), &local()).unwrap();
    assert_eq!(n.remote, sock("[2001:db8::2]:5004"));
    assert_eq!(n.codec, pcma());
}

#[test]
fn bare_lf_and_no_session_name() {
    let offer = "v=0\no=- 1 1 IN IP4 127.0.0.1\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 7078 RTP/AVP 8 0 101\na=rtpmap:101 telephone-event/8000\n";
    let (answer, n) = create_answer(offer, &local()).unwrap();
    assert_eq!(n.codec, pcmu());
    assert_eq!(n.remote, sock("127.0.0.1:7078"));
    assert!(answer.ends_with("\r\n"), "{answer:?}");
    assert_eq!(answer.matches('\n').count(), answer.matches("\r\n").count());
}

#[test]
fn mixed_line_ends_and_blank_lines() {
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\n\r\ns=-\r\rc=IN IP4 127.0.0.1  \r\nt=0 0\r\n\r\nm=audio 7078 RTP/AVP 0\r\n\r\n";
    let (_, n) = create_answer(offer, &local()).unwrap();
    assert_eq!(n.remote, sock("127.0.0.1:7078"));
}

fn offer_with_direction(session_attr: &str, media_attr: &str) -> String {
    crlf(&format!(
        "v=0
o=- 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
{session_attr}
m=audio 6000 RTP/AVP 0
{media_attr}
"
    ))
}

#[test]
fn direction_cases() {
    let cases = [
        ("", "", Direction::SendRecv),
        ("", "a=sendrecv", Direction::SendRecv),
        ("", "a=sendonly", Direction::RecvOnly),
        ("", "a=recvonly", Direction::SendOnly),
        ("", "a=inactive", Direction::Inactive),
        ("a=sendonly", "", Direction::RecvOnly),
        ("a=sendonly", "a=sendrecv", Direction::SendRecv),
        ("a=inactive", "a=recvonly", Direction::SendOnly),
    ];
    for (session_attr, media_attr, expect) in cases {
        let offer = offer_with_direction(session_attr, media_attr);
        let (answer, n) = create_answer(&offer, &local()).unwrap();
        assert_eq!(n.direction, expect, "{session_attr:?} {media_attr:?}");
        assert!(
            answer.contains(&format!("a={}\r\n", expect.as_str())),
            "{answer}"
        );
    }
}

#[test]
fn our_hold_when_answering() {
    let mut l = local();
    l.direction = Direction::SendOnly;
    let (answer, n) = create_answer(&offer_with_direction("", ""), &l).unwrap();
    assert_eq!(n.direction, Direction::SendOnly);
    assert!(answer.contains("a=sendonly\r\n"));
    // Both sides holding: inactive.
    let (_, n) = create_answer(&offer_with_direction("", "a=sendonly"), &l).unwrap();
    assert_eq!(n.direction, Direction::Inactive);
}

#[test]
fn multiple_m_lines_with_video() {
    let offer = "v=0
o=- 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=video 9000 RTP/AVP 96 97
a=rtpmap:96 H264/90000
a=rtpmap:97 VP8/90000
m=audio 0 RTP/AVP 0
m=audio 8000 RTP/SAVP 0
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz
m=audio 8002 RTP/AVP 0 8
a=sendrecv
m=audio 8004 RTP/AVP 0
m=application 9 UDP/BFCP *
";
    let (answer, n) = create_answer(&crlf(offer), &local()).unwrap();
    assert_eq!(n.remote, sock("127.0.0.1:8002"));
    assert_eq!(n.codec, pcmu());
    let lines = media_lines(&answer);
    let summary: Vec<(&str, u16, &str, &str)> = lines
        .iter()
        .map(|(m, p, proto, fmt, _)| (m.as_str(), *p, proto.as_str(), fmt.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("video", 0, "RTP/AVP", "96 97"),
            ("audio", 0, "RTP/AVP", "0"),
            ("audio", 0, "RTP/SAVP", "0"),
            ("audio", 30000, "RTP/AVP", "0"),
            ("audio", 0, "RTP/AVP", "0"),
            ("application", 0, "UDP/BFCP", "*"),
        ]
    );
    // Rejected lines carry no attributes.
    assert!(lines.iter().filter(|l| l.1 == 0).all(|l| l.4.is_empty()));
}

#[test]
fn first_audio_without_common_codec_falls_through() {
    let offer = "v=0
o=- 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 5000 RTP/AVP 111
a=rtpmap:111 opus/48000/2
m=audio 5002 RTP/AVP 8
";
    let (answer, n) = create_answer(&crlf(offer), &local()).unwrap();
    assert_eq!(n.remote, sock("127.0.0.1:5002"));
    let ports: Vec<u16> = media_lines(&answer).iter().map(|l| l.1).collect();
    assert_eq!(ports, [0, 30000]);
}

#[test]
fn only_rejected_or_video_streams() {
    let offer = "v=0
o=- 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 0 RTP/AVP 0
m=video 9000 RTP/AVP 96
";
    assert_eq!(
        create_answer(&crlf(offer), &local()),
        Err(SdpError::NoAudio)
    );
}

#[test]
fn avpf_offer_is_answered_in_kind() {
    let offer = "v=0
o=- 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 5000 RTP/AVPF 0
a=rtcp-fb:* nack
";
    let (answer, _) = create_answer(&crlf(offer), &local()).unwrap();
    assert!(answer.contains("m=audio 30000 RTP/AVPF 0\r\n"), "{answer}");
}

#[test]
fn bad_sdp_is_a_clear_error() {
    let cases = [
        "",
        "\r\n\r\n",
        "v=1\r\n",
        "o=- 1 1 IN IP4 127.0.0.1\r\n",
        "v=0\r\nm=audio seven RTP/AVP 0\r\n",
        "v=0\r\nm=audio 70000 RTP/AVP 0\r\n",
        "v=0\r\nc=IN IP4\r\n",
        "v=0\r\no=- 1 1 IN\r\n",
        "v=0\r\nthis is not sdp\r\n",
    ];
    for case in cases {
        match create_answer(case, &local()) {
            Err(SdpError::Parse(why)) => assert!(!why.is_empty()),
            other => panic!("{case:?}: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// process_answer

fn answer_to_our_offer(audio: &str) -> String {
    crlf(&format!(
        "v=0
o=- 9 9 IN IP4 127.0.0.2
s=-
c=IN IP4 127.0.0.2
t=0 0
{audio}"
    ))
}

#[test]
fn offer_answer_with_baresip_like_answer() {
    let us = local();
    let offer = create_offer(&us);
    assert!(offer.contains("m=audio 30000 RTP/AVP 0 8 101\r\n"));
    let answer = answer_to_our_offer(
        "a=tool:baresip 1.0.0
m=audio 10780 RTP/AVP 8 101
a=rtpmap:8 pcma/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtcp:10781
a=sendrecv
a=label:1
a=ssrc:2043962366 cname:sip:bob@127.0.0.2
a=ptime:20
",
    );
    let n = process_answer(&us, &answer).unwrap();
    assert_eq!(
        n,
        Negotiated {
            remote: sock("127.0.0.2:10780"),
            codec: pcma(),
            telephone_event_pt: Some(101),
            direction: Direction::SendRecv,
            ptime: 20,
            rtcp_mux: false,
            remote_rtcp: sock("127.0.0.2:10781"),
            remote_fmtp: FormatParams::default(),
        }
    );
}

#[test]
fn answer_telephone_event_pt_taken_from_answer() {
    let answer =
        answer_to_our_offer("m=audio 4000 RTP/AVP 0 96\na=rtpmap:96 telephone-event/8000\n");
    let n = process_answer(&local(), &answer).unwrap();
    assert_eq!(n.telephone_event_pt, Some(96));
    assert_eq!(n.codec, pcmu());
}

#[test]
fn answer_without_telephone_event() {
    let n = process_answer(&local(), &answer_to_our_offer("m=audio 4000 RTP/AVP 0\n")).unwrap();
    assert_eq!(n.telephone_event_pt, None);
}

#[test]
fn answer_with_codec_we_did_not_offer() {
    let answer = answer_to_our_offer("m=audio 4000 RTP/AVP 9\n");
    let err = process_answer(&local(), &answer).unwrap_err();
    assert!(matches!(err, SdpError::AnswerMismatch(_)), "{err:?}");
    // A codec we did not offer alongside one we did: the offered one is used.
    let answer = answer_to_our_offer("m=audio 4000 RTP/AVP 9 8\n");
    assert_eq!(process_answer(&local(), &answer).unwrap().codec, pcma());
}

#[test]
fn answer_remembers_remote_payload_type() {
    let mut us = local();
    us.codecs = vec![CodecSpec::new("PCMU", 0, 8000, 1)];
    let answer = answer_to_our_offer("m=audio 4000 RTP/AVP 100\na=rtpmap:100 PCMU/8000\n");
    let n = process_answer(&us, &answer).unwrap();
    assert_eq!(n.codec.payload_type, 100);
    assert_eq!(n.codec.name, "PCMU");
}

#[test]
fn answer_rejecting_audio() {
    let answer = answer_to_our_offer("m=audio 0 RTP/AVP 0\n");
    assert_eq!(process_answer(&local(), &answer), Err(SdpError::Rejected));
    let answer = answer_to_our_offer("m=video 4000 RTP/AVP 96\n");
    assert!(matches!(
        process_answer(&local(), &answer),
        Err(SdpError::AnswerMismatch(_))
    ));
    let answer = answer_to_our_offer("");
    assert!(matches!(
        process_answer(&local(), &answer),
        Err(SdpError::AnswerMismatch(_))
    ));
    assert!(matches!(
        process_answer(&local(), "garbage"),
        Err(SdpError::Parse(_))
    ));
}

#[test]
fn answer_directions_and_hold() {
    let mut us = local();
    us.direction = Direction::SendOnly;
    us.session_version += 1;
    let offer = create_offer(&us);
    assert!(offer.contains("a=sendonly\r\n"));
    assert!(offer.contains(" 777 4 IN IP4 "));
    let n = process_answer(
        &us,
        &answer_to_our_offer("m=audio 4000 RTP/AVP 0\na=recvonly\n"),
    )
    .unwrap();
    assert_eq!(n.direction, Direction::SendOnly);

    // The remote answers a sendrecv offer with 0.0.0.0: it does not receive.
    let answer = crlf(
        "v=0
o=- 9 9 IN IP4 127.0.0.2
s=-
c=IN IP4 0.0.0.0
t=0 0
m=audio 4000 RTP/AVP 0
",
    );
    let n = process_answer(&local(), &answer).unwrap();
    assert_eq!(n.direction, Direction::RecvOnly);
    let n = process_answer(
        &local(),
        &answer_to_our_offer("m=audio 4000 RTP/AVP 0\na=inactive\n"),
    )
    .unwrap();
    assert_eq!(n.direction, Direction::Inactive);
}

#[test]
fn two_termphones_talk_over_ipv6() {
    let mut a = local();
    a.addr = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let mut b = LocalMedia::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 30002, 1);
    b.codecs = vec![pcma()];
    let offer = create_offer(&a);
    let (answer, nb) = create_answer(&offer, &b).unwrap();
    let na = process_answer(&a, &answer).unwrap();
    assert_eq!(na.codec, nb.codec);
    assert_eq!(na.remote, sock("[::1]:30002"));
    assert_eq!(nb.remote, sock("[::1]:30000"));
    assert_eq!(na.telephone_event_pt, nb.telephone_event_pt);
}

// ---------------------------------------------------------------------------------------------
// Opus (RFC 7587)

/// What termphone offers by default: opus, G722, PCMU, PCMA.
fn local_opus_first() -> LocalMedia {
    let mut l = local();
    l.codecs = vec![opus(), g722(), pcmu(), pcma()];
    l
}

/// The attributes of the first m= line of `sdp` that start with one of `names`.
fn attrs_named(sdp: &str, names: &[&str]) -> Vec<String> {
    media_lines(sdp)[0]
        .4
        .iter()
        .filter(|a| names.iter().any(|n| a.starts_with(&format!("{n}:"))))
        .cloned()
        .collect()
}

#[test]
fn our_offer_lists_opus_with_fmtp_and_telephone_event_at_both_rates() {
    let offer = create_offer(&local_opus_first());
    assert!(
        offer.contains("m=audio 30000 RTP/AVP 111 9 0 8 101 96\r\n"),
        "{offer}"
    );
    assert_eq!(
        attrs_named(&offer, &["rtpmap", "fmtp"]),
        [
            "rtpmap:111 opus/48000/2",
            "rtpmap:9 G722/8000",
            "rtpmap:0 PCMU/8000",
            "rtpmap:8 PCMA/8000",
            "rtpmap:101 telephone-event/8000",
            "rtpmap:96 telephone-event/48000",
            "fmtp:111 useinbandfec=1;maxaveragebitrate=32000;stereo=0;sprop-stereo=0",
            "fmtp:101 0-16",
            "fmtp:96 0-16",
        ]
    );
    assert_eq!(
        local_opus_first().telephone_events(),
        [(8000, 101), (48000, 96)]
    );

    // Only opus (`--codec opus`): one telephone-event, at 48000, on 101.
    let mut l = local();
    l.codecs = vec![opus()];
    let offer = create_offer(&l);
    assert!(
        offer.contains("m=audio 30000 RTP/AVP 111 101\r\n"),
        "{offer}"
    );
    assert!(
        offer.contains("a=rtpmap:101 telephone-event/48000\r\n"),
        "{offer}"
    );
    assert!(!offer.contains("telephone-event/8000"), "{offer}");
    // No telephone-event at all when switched off.
    l.telephone_event = false;
    assert!(create_offer(&l).contains("m=audio 30000 RTP/AVP 111\r\n"));
}

// Zoiper 5 style: opus on 106 with spaces in its fmtp, telephone-event at 48000 and 8000.
const ZOIPER_OFFER: &str = "v=0
o=Z 1700000000000 1 IN IP4 127.0.0.1
s=Z
c=IN IP4 127.0.0.1
t=0 0
m=audio 8000 RTP/AVP 106 9 98 101 0 8 3
a=rtpmap:106 opus/48000/2
a=fmtp:106 sprop-maxcapturerate=16000; minptime=20; useinbandfec=1
a=rtpmap:98 telephone-event/48000
a=fmtp:98 0-16
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
";

#[test]
fn zoiper_style_offer_gets_opus_on_its_payload_type() {
    let (answer, n) = create_answer(&crlf(ZOIPER_OFFER), &local_opus_first()).unwrap();
    assert_eq!(
        n.codec,
        CodecSpec::new("opus", 106, 48000, 2).with_fmtp(OPUS_FMTP)
    );
    assert_eq!(
        n.telephone_event_pt,
        Some(98),
        "the event clock is the audio's"
    );
    assert_eq!(
        n.remote_fmtp,
        FormatParams {
            use_inband_fec: Some(true),
            ..FormatParams::default()
        }
    );
    assert_eq!(n.ptime, 20);
    let lines = media_lines(&answer);
    assert_eq!(lines[0].3, "106 98");
    assert_eq!(
        attrs_named(&answer, &["rtpmap", "fmtp"]),
        [
            "rtpmap:106 opus/48000/2",
            "rtpmap:98 telephone-event/48000",
            &format!("fmtp:106 {OPUS_FMTP}"),
            "fmtp:98 0-16",
        ]
    );
    // With G.711 preferred, the 8000 Hz telephone-event goes with it.
    let mut l = local();
    l.codecs = vec![pcmu(), opus()];
    let (answer, n) = create_answer(&crlf(ZOIPER_OFFER), &l).unwrap();
    assert_eq!(
        (n.codec.name.as_str(), n.telephone_event_pt),
        ("PCMU", Some(101))
    );
    assert!(
        answer.contains("m=audio 30000 RTP/AVP 0 101\r\n"),
        "{answer}"
    );
    assert!(!answer.contains("a=fmtp:0"), "G.711 has no fmtp: {answer}");
}

// Linphone style: opus on 96 first, telephone-event for each of its rates, RTCP feedback
// attributes we do not use.
const LINPHONE_OFFER: &str = "v=0
o=alice 1234 678 IN IP4 127.0.0.1
s=Talk
c=IN IP4 127.0.0.1
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100
a=rtpmap:96 OPUS/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 speex/16000
a=fmtp:97 vbr=on
a=rtpmap:98 speex/8000
a=fmtp:98 vbr=on
a=fmtp:18 annexb=yes
a=rtpmap:101 telephone-event/48000
a=rtpmap:99 telephone-event/16000
a=rtpmap:100 telephone-event/8000
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:* ccm tmmbr
";

#[test]
fn linphone_style_offer_matches_opus_case_insensitively() {
    let (answer, n) = create_answer(&crlf(LINPHONE_OFFER), &local_opus_first()).unwrap();
    assert_eq!((n.codec.name.as_str(), n.codec.payload_type), ("opus", 96));
    assert_eq!(n.codec.clock_rate, 48000);
    assert_eq!(n.telephone_event_pt, Some(101));
    assert_eq!(n.remote_fmtp.use_inband_fec, Some(true));
    assert_eq!(n.remote_fmtp.max_average_bitrate, None);
    assert!(
        answer.contains("m=audio 30000 RTP/AVP 96 101\r\n"),
        "{answer}"
    );
    assert!(answer.contains("a=rtpmap:96 opus/48000/2\r\n"), "{answer}");
    assert!(
        answer.contains("a=rtpmap:101 telephone-event/48000\r\n"),
        "{answer}"
    );
    assert!(
        !answer.contains("speex") && !answer.contains("rtcp-fb"),
        "{answer}"
    );
}

// baresip style: opus first with its fmtp (stereo wanted, a bitrate cap), telephone-event
// at 8000 only.
const BARESIP_OPUS_OFFER: &str = "v=0
o=- 1817361447 3162447539 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
a=tool:baresip 1.0.0
m=audio 10780 RTP/AVP 96 9 0 8 101
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1;maxaveragebitrate=64000
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtcp:10781
a=sendrecv
a=ptime:20
";

#[test]
fn baresip_style_opus_offer_reads_its_fmtp() {
    let (answer, n) = create_answer(&crlf(BARESIP_OPUS_OFFER), &local_opus_first()).unwrap();
    assert_eq!((n.codec.name.as_str(), n.codec.payload_type), ("opus", 96));
    assert_eq!(
        n.remote_fmtp,
        FormatParams {
            max_average_bitrate: Some(64000),
            stereo: Some(true),
            ..FormatParams::default()
        }
    );
    // Its telephone-event runs at 8000, not at the opus clock: no DTMF on this stream.
    assert_eq!(n.telephone_event_pt, None);
    assert!(answer.contains("m=audio 30000 RTP/AVP 96\r\n"), "{answer}");
    assert!(
        answer.contains(&format!("a=fmtp:96 {OPUS_FMTP}\r\n")),
        "{answer}"
    );

    // The same offer with a telephone-event at 48000 as well.
    let offer = BARESIP_OPUS_OFFER
        .replace("96 9 0 8 101", "96 9 0 8 101 102")
        .replace(
            "a=fmtp:101 0-15",
            "a=fmtp:101 0-15\na=rtpmap:102 telephone-event/48000",
        );
    let (answer, n) = create_answer(&crlf(&offer), &local_opus_first()).unwrap();
    assert_eq!(n.telephone_event_pt, Some(102));
    assert!(
        answer.contains("m=audio 30000 RTP/AVP 96 102\r\n"),
        "{answer}"
    );
}

#[test]
fn sloppy_opus_rtpmaps_and_ptimes() {
    // "opus/48000" without the /2 RFC 7587 demands is still opus.
    let offer =
        offer_with_audio("m=audio 4000 RTP/AVP 120 0\na=rtpmap:120 opus/48000\na=ptime:30\n");
    let (answer, n) = create_answer(&offer, &local_opus_first()).unwrap();
    assert_eq!((n.codec.name.as_str(), n.codec.payload_type), ("opus", 120));
    assert!(answer.contains("a=rtpmap:120 opus/48000/2\r\n"), "{answer}");
    // 30 ms is no Opus packet duration: we send 20 ms packets (any decoder takes them).
    assert_eq!(n.ptime, 20);
    let offer =
        offer_with_audio("m=audio 4000 RTP/AVP 111\na=rtpmap:111 opus/48000/2\na=ptime:40\n");
    assert_eq!(
        create_answer(&offer, &local_opus_first()).unwrap().1.ptime,
        40
    );
    // G.711 keeps its 30 ms.
    let offer = offer_with_audio("m=audio 4000 RTP/AVP 0\na=ptime:30\n");
    assert_eq!(
        create_answer(&offer, &local_opus_first()).unwrap().1.ptime,
        30
    );
    // opus at another clock rate is not opus.
    let offer = offer_with_audio("m=audio 4000 RTP/AVP 111\na=rtpmap:111 opus/16000/2\n");
    assert_eq!(
        create_answer(&offer, &local_opus_first()).unwrap_err(),
        SdpError::NoCommonCodec
    );
}

fn offer_with_audio(audio: &str) -> String {
    crlf(&format!(
        "v=0
o=- 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
{audio}"
    ))
}

#[test]
fn answer_to_our_opus_offer() {
    let us = local_opus_first();
    // A peer answering opus on its own payload type, with its wishes and the 48 kHz event.
    let answer = answer_to_our_offer(
        "m=audio 4000 RTP/AVP 109 97
a=rtpmap:109 opus/48000/2
a=fmtp:109 maxaveragebitrate=20000; useinbandfec=0; usedtx=1
a=rtpmap:97 telephone-event/48000
a=fmtp:97 0-16
",
    );
    let n = process_answer(&us, &answer).unwrap();
    assert_eq!(
        n.codec,
        CodecSpec::new("opus", 109, 48000, 2).with_fmtp(OPUS_FMTP)
    );
    assert_eq!(n.telephone_event_pt, Some(97));
    assert_eq!(
        n.remote_fmtp,
        FormatParams {
            max_average_bitrate: Some(20000),
            use_inband_fec: Some(false),
            use_dtx: Some(true),
            stereo: None,
        }
    );
    // An answer with PCMU and the 8000 Hz event: that one is used.
    let answer =
        answer_to_our_offer("m=audio 4000 RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000\n");
    let n = process_answer(&us, &answer).unwrap();
    assert_eq!((n.codec.clone(), n.telephone_event_pt), (pcmu(), Some(101)));
    assert_eq!(n.remote_fmtp, FormatParams::default());
}

#[test]
fn two_default_termphones_agree_on_opus() {
    let a = local_opus_first();
    let mut b = LocalMedia::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 30002, 1);
    b.codecs = vec![opus(), g722(), pcmu(), pcma()];
    let (answer, nb) = create_answer(&create_offer(&a), &b).unwrap();
    let na = process_answer(&a, &answer).unwrap();
    assert_eq!(na.codec, opus());
    assert_eq!(nb.codec, opus());
    assert_eq!(na.telephone_event_pt, Some(96));
    assert_eq!(nb.telephone_event_pt, Some(96));
    // each read the other's fmtp
    let ours = FormatParams {
        max_average_bitrate: Some(32000),
        use_inband_fec: Some(true),
        use_dtx: None,
        stereo: Some(false),
    };
    assert_eq!(na.remote_fmtp, ours);
    assert_eq!(nb.remote_fmtp, ours);
}

#[test]
fn format_params_parse_leniently() {
    let p = FormatParams::parse(
        " MaxAverageBitrate = 24000 ;USEINBANDFEC=1;; junk; stereo=yes;usedtx=0",
    );
    assert_eq!(
        p,
        FormatParams {
            max_average_bitrate: Some(24000),
            use_inband_fec: Some(true),
            use_dtx: Some(false),
            stereo: None,
        }
    );
    for bad in [
        "maxaveragebitrate=5999",
        "maxaveragebitrate=510001",
        "maxaveragebitrate=-1",
        "maxaveragebitrate=32k",
        "maxaveragebitrate=",
    ] {
        assert_eq!(FormatParams::parse(bad).max_average_bitrate, None, "{bad}");
    }
    assert_eq!(FormatParams::parse(""), FormatParams::default());
    assert_eq!(FormatParams::parse("0-16"), FormatParams::default());
}
