//! SDP offer/answer for audio calls (RFC 3264 on RFC 4566), sans-IO.
//!
//! Text is parsed and written by `sdp-types`; the offer/answer rules are ours:
//!
//! - [`create_offer`] writes one `m=audio` line with our codecs in preference order (each
//!   with its `a=fmtp` if it has one, e.g. Opus's RFC 7587 parameters), `telephone-event`
//!   (RFC 4733, events 0-16) once for each clock rate of our codecs (the events run at the
//!   audio's clock: 8000 for G.711/G.722, 48000 for Opus), `a=ptime:20` and our direction.
//! - [`create_answer`] picks the first audio stream it can take. OUR preference order decides
//!   the codec; the answer carries exactly that codec (with the offerer's payload type number)
//!   plus `telephone-event` when both sides have it at the codec's clock rate. Every other
//!   m= line is answered with port 0, in the offer's order (RFC 3264 §6).
//! - [`process_answer`] checks an answer against what we offered and says what to send.
//!
//! The remote's `a=fmtp` for the chosen codec is read into [`Negotiated::remote_fmtp`] (how
//! it wants to receive: Opus `maxaveragebitrate`, `useinbandfec`, ...).
//!
//! Hold: the caller puts a direction in [`LocalMedia::direction`] and bumps
//! [`LocalMedia::session_version`] for each new offer (the `o=` version is the caller's).
//! A remote `c=0.0.0.0` (RFC 2543 hold) is read as "the remote does not receive".
//!
//! Errors are [`SdpError`]; no input makes these functions panic.

use core::fmt;
use core::net::{IpAddr, SocketAddr};

use sdp_types as sdp;

/// Payload type we offer for `telephone-event` unless one of our codecs already uses it.
pub const TELEPHONE_EVENT_PT: u8 = 101;
/// The DTMF events (RFC 4733) we send and receive: digits, `*`, `#`, A-D and flash.
pub const TELEPHONE_EVENT_EVENTS: &str = "0-16";
/// Packet time we ask for and the default when the remote gives none.
pub const PTIME_MS: u32 = 20;
/// Payload type we offer Opus with (dynamic; the one most softphones use).
pub const OPUS_PT: u8 = 111;
/// Our Opus format parameters (RFC 7587 §6.1), i.e. how we want to receive: FEC welcome, at
/// most 32 kbit/s on average, mono.
pub const OPUS_FMTP: &str = "useinbandfec=1;maxaveragebitrate=32000;stereo=0;sprop-stereo=0";
/// Largest SDP body we look at; anything longer is refused as a parse error.
pub const MAX_SDP_LEN: usize = 65_535;

const SESSION_NAME: &str = "termphone";
const TELEPHONE_EVENT: &str = "telephone-event";

/// One RTP audio format: encoding name, payload type, clock rate, channels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CodecSpec {
    /// Encoding name as in `a=rtpmap`, e.g. "PCMU" (compared case-insensitively).
    pub name: String,
    /// RTP payload type number (0-127).
    pub payload_type: u8,
    /// RTP clock rate in Hz.
    pub clock_rate: u32,
    /// Audio channels (1 unless the rtpmap says otherwise).
    pub channels: u8,
    /// Format parameters written in our `a=fmtp:PT ...` line for this codec (without the
    /// payload type), if any.
    pub fmtp: Option<String>,
}

impl CodecSpec {
    /// Builds a codec description.
    pub fn new(name: impl Into<String>, payload_type: u8, clock_rate: u32, channels: u8) -> Self {
        CodecSpec {
            name: name.into(),
            payload_type,
            clock_rate,
            channels,
            fmtp: None,
        }
    }

    /// The same description with these format parameters for our `a=fmtp` line.
    pub fn with_fmtp(self, fmtp: impl Into<String>) -> Self {
        CodecSpec {
            fmtp: Some(fmtp.into()),
            ..self
        }
    }

    /// Same encoding (name case-insensitive, clock rate, channels), payload type and fmtp
    /// aside. For Opus the channel count is not compared: RFC 7587 fixes the rtpmap at
    /// `opus/48000/2` whatever the stream carries, and an `opus/48000` from a sloppy peer
    /// means the same codec.
    pub fn same_format(&self, other: &CodecSpec) -> bool {
        self.name.eq_ignore_ascii_case(&other.name)
            && self.clock_rate == other.clock_rate
            && (self.channels == other.channels || self.is_opus())
    }

    fn is_telephone_event(&self) -> bool {
        self.name.eq_ignore_ascii_case(TELEPHONE_EVENT)
    }

    fn is_opus(&self) -> bool {
        self.name.eq_ignore_ascii_case("opus")
    }
}

/// G.711 µ-law, static payload type 0, 8000 Hz.
pub fn pcmu() -> CodecSpec {
    CodecSpec::new("PCMU", 0, 8000, 1)
}

/// G.711 A-law, static payload type 8, 8000 Hz.
pub fn pcma() -> CodecSpec {
    CodecSpec::new("PCMA", 8, 8000, 1)
}

/// G.722, static payload type 9. Its RTP clock is 8000 Hz although it samples at 16 kHz
/// (RFC 3551 §4.5.2), so the rtpmap says `G722/8000`.
pub fn g722() -> CodecSpec {
    CodecSpec::new("G722", 9, 8000, 1)
}

/// Opus (RFC 7587): dynamic payload type [`OPUS_PT`], rtpmap `opus/48000/2` (always, even for
/// mono), with [`OPUS_FMTP`].
pub fn opus() -> CodecSpec {
    CodecSpec::new("opus", OPUS_PT, 48_000, 2).with_fmtp(OPUS_FMTP)
}

/// The static RTP/AVP audio payload types (RFC 3551 table 4), for m= lines without rtpmap.
pub fn static_codec(payload_type: u8) -> Option<CodecSpec> {
    let (name, rate, channels) = match payload_type {
        0 => ("PCMU", 8000, 1),
        3 => ("GSM", 8000, 1),
        4 => ("G723", 8000, 1),
        5 => ("DVI4", 8000, 1),
        6 => ("DVI4", 16000, 1),
        7 => ("LPC", 8000, 1),
        8 => ("PCMA", 8000, 1),
        9 => ("G722", 8000, 1),
        10 => ("L16", 44100, 2),
        11 => ("L16", 44100, 1),
        12 => ("QCELP", 8000, 1),
        13 => ("CN", 8000, 1),
        14 => ("MPA", 90000, 1),
        15 => ("G728", 8000, 1),
        16 => ("DVI4", 11025, 1),
        17 => ("DVI4", 22050, 1),
        18 => ("G729", 8000, 1),
        _ => return None,
    };
    Some(CodecSpec::new(name, payload_type, rate, channels))
}

/// Media direction of a stream (RFC 3264 §5.1), always from the point of view of its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// Send and receive (the default when no attribute is given).
    #[default]
    SendRecv,
    /// Send only (e.g. we put the call on hold).
    SendOnly,
    /// Receive only (e.g. the remote put us on hold).
    RecvOnly,
    /// Neither send nor receive.
    Inactive,
}

impl Direction {
    /// The SDP attribute name: "sendrecv", "sendonly", "recvonly" or "inactive".
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Parses an attribute name (case-insensitive); `None` if it is not a direction.
    pub fn from_attribute(name: &str) -> Option<Direction> {
        [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ]
        .into_iter()
        .find(|d| d.as_str().eq_ignore_ascii_case(name.trim()))
    }

    /// Builds a direction from "may send" and "may receive".
    pub fn from_flags(send: bool, recv: bool) -> Direction {
        match (send, recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// Whether media flows out.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether media flows in.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The same stream seen from the other end (sendonly <-> recvonly).
    pub fn reverse(self) -> Direction {
        Direction::from_flags(self.receives(), self.sends())
    }

    /// Our direction given what we want and what the remote declared (RFC 3264 §6.1):
    /// we send only if the remote receives, we receive only if the remote sends.
    pub fn negotiate(self, remote: Direction) -> Direction {
        Direction::from_flags(
            self.sends() && remote.receives(),
            self.receives() && remote.sends(),
        )
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What we offer or answer with: our RTP address, codecs, direction and `o=` identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    /// Address written in `o=` and `c=` (IPv4 or IPv6).
    pub addr: IpAddr,
    /// Our RTP port.
    pub port: u16,
    /// Codecs in preference order; empty means the default list (PCMU, PCMA).
    pub codecs: Vec<CodecSpec>,
    /// Whether we offer/accept RFC 4733 `telephone-event` (DTMF).
    pub telephone_event: bool,
    /// The direction we want (SendOnly to hold, SendRecv to resume).
    pub direction: Direction,
    /// `o=` sess-id, stable for the whole call.
    pub session_id: u64,
    /// `o=` sess-version; the caller increments it for every new offer or changed answer.
    pub session_version: u64,
    /// `o=` username ("-" when empty; whitespace is replaced by `_`).
    pub username: String,
    /// Offer / accept RTP and RTCP on one port (RFC 5761 `a=rtcp-mux`). Without it, RTCP is
    /// on our RTP port + 1, which the caller must have open.
    pub rtcp_mux: bool,
}

impl LocalMedia {
    /// Defaults: PCMU then PCMA, telephone-event on, sendrecv, version 0, username "-".
    pub fn new(addr: IpAddr, port: u16, session_id: u64) -> LocalMedia {
        LocalMedia {
            addr,
            port,
            codecs: vec![pcmu(), pcma()],
            telephone_event: true,
            direction: Direction::SendRecv,
            session_id,
            session_version: 0,
            username: "-".to_string(),
            rtcp_mux: true,
        }
    }

    /// The payload type we offer for telephone-event at the first of
    /// [`LocalMedia::telephone_events`]'s rates (8000 Hz when a codec of ours runs at 8000).
    pub fn telephone_event_pt(&self) -> Option<u8> {
        self.telephone_events().first().map(|&(_, pt)| pt)
    }

    /// The telephone-events we offer, as (clock rate, payload type): one for each clock rate
    /// of our codecs (RFC 4733 events use the audio codec's clock), 8000 Hz first, then the
    /// others in codec order. Payload types: 101, then free ones from 96 up, never one a
    /// codec of ours uses.
    pub fn telephone_events(&self) -> Vec<(u32, u8)> {
        if !self.telephone_event {
            return Vec::new();
        }
        let codecs = self.effective_codecs();
        let audio = || codecs.iter().filter(|c| !c.is_telephone_event());
        let mut rates: Vec<u32> = Vec::new();
        if audio().any(|c| c.clock_rate == 8000) {
            rates.push(8000);
        }
        for c in audio() {
            if !rates.contains(&c.clock_rate) {
                rates.push(c.clock_rate);
            }
        }
        let mut used: Vec<u8> = codecs.iter().map(|c| c.payload_type).collect();
        let mut out = Vec::with_capacity(rates.len());
        for rate in rates {
            let Some(pt) = core::iter::once(TELEPHONE_EVENT_PT)
                .chain(96..=127)
                .find(|pt| !used.contains(pt))
            else {
                break;
            };
            used.push(pt);
            out.push((rate, pt));
        }
        out
    }

    fn effective_codecs(&self) -> Vec<CodecSpec> {
        if self.codecs.is_empty() {
            vec![pcmu(), pcma()]
        } else {
            self.codecs.clone()
        }
    }
}

/// The outcome of offer/answer: where and how to send, and what we receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The remote RTP address (may be 0.0.0.0 when the remote holds the call).
    pub remote: SocketAddr,
    /// The one audio codec, with the payload type the remote expects (and that we receive).
    pub codec: CodecSpec,
    /// The remote's telephone-event payload type when both sides do RFC 4733.
    pub telephone_event_pt: Option<u8>,
    /// Our direction for this stream (RecvOnly/Inactive when the remote holds us).
    pub direction: Direction,
    /// Packet time in ms the remote asked for (`a=ptime`, 10-200), else 20.
    pub ptime: u32,
    /// RTCP goes over the RTP port in both directions (RFC 5761; both sides said so).
    pub rtcp_mux: bool,
    /// Where to send RTCP: the RTP address when muxed, else `a=rtcp` (RFC 3605) or the RTP
    /// port + 1.
    pub remote_rtcp: SocketAddr,
    /// The remote's format parameters for the codec (its `a=fmtp`): how it wants to receive.
    pub remote_fmtp: FormatParams,
}

/// Format parameters of the remote's `a=fmtp` line for the negotiated codec that we act on
/// (RFC 7587 §6.1 for Opus). They say how the remote wants to *receive*; values out of their
/// range, malformed ones and unknown keys are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormatParams {
    /// `maxaveragebitrate` (6000..=510000 bit/s): the most it wants to receive on average.
    pub max_average_bitrate: Option<u32>,
    /// `useinbandfec`: it can use Opus in-band FEC (1) or cannot (0).
    pub use_inband_fec: Option<bool>,
    /// `usedtx`: it prefers discontinuous transmission (1).
    pub use_dtx: Option<bool>,
    /// `stereo`: it prefers to receive stereo (1) or mono (0).
    pub stereo: Option<bool>,
}

impl FormatParams {
    /// Reads `key=value;key=value` (keys case-insensitive, whitespace around items ignored).
    pub fn parse(params: &str) -> FormatParams {
        let mut out = FormatParams::default();
        for item in params.split(';') {
            let Some((key, value)) = item.split_once('=') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            let flag = || match value {
                "0" => Some(false),
                "1" => Some(true),
                _ => None,
            };
            if key.eq_ignore_ascii_case("maxaveragebitrate") {
                out.max_average_bitrate = value
                    .parse::<u32>()
                    .ok()
                    .filter(|b| (6000..=510_000).contains(b));
            } else if key.eq_ignore_ascii_case("useinbandfec") {
                out.use_inband_fec = flag();
            } else if key.eq_ignore_ascii_case("usedtx") {
                out.use_dtx = flag();
            } else if key.eq_ignore_ascii_case("stereo") {
                out.stereo = flag();
            }
        }
        out
    }
}

/// Why an SDP could not be used. [`SdpError::sip_status`] gives the SIP status to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SdpError {
    /// Not valid SDP syntax (the text says which line and what).
    Parse(String),
    /// Valid syntax, but a field we need is missing or unusable (e.g. no `c=`).
    Invalid(String),
    /// No audio stream we could take (none, all port 0, or only non-RTP/AVP transports).
    NoAudio,
    /// The offered audio has no codec we support: answer 488.
    NoCommonCodec,
    /// The answer does not fit our offer (no m= line, not audio, no codec we offered).
    AnswerMismatch(String),
    /// The answerer rejected our audio stream (port 0).
    Rejected,
}

impl SdpError {
    /// The SIP status for a request that carried this SDP: 400 for bad syntax, else 488.
    pub fn sip_status(&self) -> u16 {
        match self {
            SdpError::Parse(_) | SdpError::Invalid(_) => 400,
            _ => 488,
        }
    }
}

impl fmt::Display for SdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SdpError::Parse(why) => write!(f, "bad SDP: {why}"),
            SdpError::Invalid(why) => write!(f, "unusable SDP: {why}"),
            SdpError::NoAudio => f.write_str("no usable RTP/AVP audio stream in the SDP"),
            SdpError::NoCommonCodec => f.write_str("no audio codec in common"),
            SdpError::AnswerMismatch(why) => write!(f, "SDP answer does not fit our offer: {why}"),
            SdpError::Rejected => f.write_str("the remote rejected the audio stream (port 0)"),
        }
    }
}

impl std::error::Error for SdpError {}

/// Writes our offer: one audio stream with our codecs, telephone-events, ptime and direction.
pub fn create_offer(local: &LocalMedia) -> String {
    let mut codecs = local.effective_codecs();
    for (rate, pt) in local.telephone_events() {
        codecs.push(telephone_event(pt, rate));
    }
    let mut session = base_session(local);
    session.medias.push(audio_media(
        local,
        "RTP/AVP",
        &codecs,
        local.direction,
        local.rtcp_mux,
    ));
    write_session(&session)
}

/// Answers an offer: the answerer's (our) preference decides; direction per RFC 3264 §6.1.
/// No common codec -> `Err(SdpError::NoCommonCodec)` (caller sends 488).
///
/// The first RTP/AVP(F) audio stream with a common codec and a usable `c=` is taken; every
/// other m= line gets port 0. Errors: `Parse`/`Invalid` (400), `NoAudio`/`NoCommonCodec` (488),
/// see [`SdpError::sip_status`].
pub fn create_answer(offer: &str, local: &LocalMedia) -> Result<(String, Negotiated), SdpError> {
    let session = parse_session(offer)?;
    let ours = local.effective_codecs();

    let mut chosen: Option<(usize, Negotiated)> = None;
    let mut first_error: Option<SdpError> = None;
    for (index, media) in session.medias.iter().enumerate() {
        if !is_rtp_audio(media) || media.port == 0 {
            continue;
        }
        match answer_stream(&session, media, local, &ours) {
            Ok(negotiated) => {
                chosen = Some((index, negotiated));
                break;
            }
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    let Some((chosen_index, negotiated)) = chosen else {
        return Err(first_error.unwrap_or(SdpError::NoAudio));
    };

    let mut answer = base_session(local);
    for (index, media) in session.medias.iter().enumerate() {
        if index == chosen_index {
            let mut codecs = vec![negotiated.codec.clone()];
            if let Some(pt) = negotiated.telephone_event_pt {
                codecs.push(telephone_event(pt, negotiated.codec.clock_rate));
            }
            answer.medias.push(audio_media(
                local,
                &media.proto,
                &codecs,
                negotiated.direction,
                negotiated.rtcp_mux,
            ));
        } else {
            answer.medias.push(rejected_media(media));
        }
    }
    Ok((write_session(&answer), negotiated))
}

/// Reads the answer to `offer_sent` (the LocalMedia our offer was made from): the codec must be
/// one we offered; the remote payload types and telephone-event PT come from the answer.
///
/// Our offers have one m= line, so the answer's first m= line is the one read; codecs in it
/// that we did not offer are skipped, and the first one we did offer is used.
pub fn process_answer(offer_sent: &LocalMedia, answer: &str) -> Result<Negotiated, SdpError> {
    let session = parse_session(answer)?;
    let Some(media) = session.medias.first() else {
        return Err(SdpError::AnswerMismatch("it has no m= line".into()));
    };
    if !media.media.eq_ignore_ascii_case("audio") {
        return Err(SdpError::AnswerMismatch(format!(
            "its first m= line is {:?}, not audio",
            snippet(&media.media)
        )));
    }
    if media.port == 0 {
        return Err(SdpError::Rejected);
    }

    let ours = offer_sent.effective_codecs();
    let remote = remote_codecs(media);
    let codec = remote
        .iter()
        .filter(|rc| !rc.is_telephone_event())
        .find_map(|rc| {
            ours.iter().find(|o| o.same_format(rc)).map(|o| CodecSpec {
                payload_type: rc.payload_type,
                ..o.clone()
            })
        })
        .ok_or_else(|| SdpError::AnswerMismatch("it has no codec we offered".into()))?;

    let telephone_event_pt = if offer_sent.telephone_event_pt().is_some() {
        find_telephone_event(&remote, codec.clock_rate)
    } else {
        None
    };
    let addr = connection_addr(&session, media)?;
    let remote_dir = stream_direction(&session, media, addr);
    let rtcp_mux = offer_sent.rtcp_mux && has_rtcp_mux(media);
    Ok(Negotiated {
        remote: SocketAddr::new(addr, media.port),
        remote_fmtp: remote_fmtp(media, codec.payload_type),
        ptime: codec_ptime(&codec, stream_ptime(&session, media)),
        codec,
        telephone_event_pt,
        direction: offer_sent.direction.negotiate(remote_dir),
        rtcp_mux,
        remote_rtcp: remote_rtcp(media, addr, rtcp_mux),
    })
}

// ---------------------------------------------------------------------------------------------
// Reading SDP

/// Parses after normalising line ends (CRLF, bare LF, bare CR) and dropping blank lines.
fn parse_session(text: &str) -> Result<sdp::Session, SdpError> {
    if text.len() > MAX_SDP_LEN {
        return Err(SdpError::Parse(format!(
            "body of {} bytes is larger than {MAX_SDP_LEN}",
            text.len()
        )));
    }
    let mut normalized = String::with_capacity(text.len() + 32);
    for line in text.split(['\r', '\n']) {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        normalized.push_str(line);
        normalized.push_str("\r\n");
    }
    if normalized.is_empty() {
        return Err(SdpError::Parse("empty body".into()));
    }
    sdp::Session::parse(normalized.as_bytes()).map_err(|e| SdpError::Parse(e.to_string()))
}

fn is_rtp_audio(media: &sdp::Media) -> bool {
    media.media.eq_ignore_ascii_case("audio")
        && (media.proto.eq_ignore_ascii_case("RTP/AVP")
            || media.proto.eq_ignore_ascii_case("RTP/AVPF"))
}

/// Our answer for one offered audio stream, or why we cannot take it.
fn answer_stream(
    session: &sdp::Session,
    media: &sdp::Media,
    local: &LocalMedia,
    ours: &[CodecSpec],
) -> Result<Negotiated, SdpError> {
    let remote = remote_codecs(media);
    let codec = ours
        .iter()
        .filter(|o| !o.is_telephone_event())
        .find_map(|o| {
            remote
                .iter()
                .find(|rc| o.same_format(rc))
                .map(|rc| CodecSpec {
                    payload_type: rc.payload_type,
                    ..o.clone()
                })
        })
        .ok_or(SdpError::NoCommonCodec)?;
    let telephone_event_pt = if local.telephone_event {
        find_telephone_event(&remote, codec.clock_rate)
    } else {
        None
    };
    let addr = connection_addr(session, media)?;
    let remote_dir = stream_direction(session, media, addr);
    let rtcp_mux = local.rtcp_mux && has_rtcp_mux(media);
    Ok(Negotiated {
        remote: SocketAddr::new(addr, media.port),
        remote_fmtp: remote_fmtp(media, codec.payload_type),
        ptime: codec_ptime(&codec, stream_ptime(session, media)),
        codec,
        telephone_event_pt,
        direction: local.direction.negotiate(remote_dir),
        rtcp_mux,
        remote_rtcp: remote_rtcp(media, addr, rtcp_mux),
    })
}

fn has_rtcp_mux(media: &sdp::Media) -> bool {
    media
        .attributes
        .iter()
        .any(|a| a.attribute.eq_ignore_ascii_case("rtcp-mux"))
}

/// Where the remote receives RTCP: its RTP address when muxed; else `a=rtcp:PORT [IN IP4
/// ADDR]` (RFC 3605), else the RTP port + 1 (RFC 3550 §11).
fn remote_rtcp(media: &sdp::Media, addr: IpAddr, mux: bool) -> SocketAddr {
    if mux {
        return SocketAddr::new(addr, media.port);
    }
    let attr = media
        .attributes
        .iter()
        .find(|a| a.attribute.eq_ignore_ascii_case("rtcp"))
        .and_then(|a| a.value.as_deref());
    if let Some(value) = attr {
        let mut it = value.split_ascii_whitespace();
        if let Some(port) = it
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|&p| p > 0)
        {
            let ip = match (it.next(), it.next(), it.next()) {
                (Some(net), Some(_), Some(a)) if net.eq_ignore_ascii_case("IN") => {
                    a.parse::<IpAddr>().unwrap_or(addr)
                }
                _ => addr,
            };
            return SocketAddr::new(ip, port);
        }
    }
    SocketAddr::new(addr, media.port.saturating_add(1))
}

/// The formats of an m= line in its order, resolved through rtpmap or the static table.
/// Unknown dynamic types, bad rtpmaps and non-numeric formats are skipped.
fn remote_codecs(media: &sdp::Media) -> Vec<CodecSpec> {
    let rtpmaps: Vec<sdp::RtpMap> = media
        .attributes_typed::<sdp::RtpMap>()
        .filter_map(Result::ok)
        .collect();
    let mut out: Vec<CodecSpec> = Vec::new();
    for token in media.fmt.split_ascii_whitespace() {
        let Ok(pt) = token.parse::<u8>() else {
            continue;
        };
        if pt > 127 || out.iter().any(|c| c.payload_type == pt) {
            continue;
        }
        let spec = match rtpmaps.iter().find(|r| r.payload_type == pt) {
            Some(map) => {
                let channels = match map.encoding_params.as_deref().map(str::trim) {
                    None | Some("") => 1,
                    Some(p) => match p.parse::<u8>() {
                        Ok(c) if c > 0 => c,
                        _ => continue,
                    },
                };
                let name = map.encoding_name.trim();
                if name.is_empty() || map.clock_rate == 0 {
                    continue;
                }
                CodecSpec::new(name, pt, map.clock_rate, channels)
            }
            None => match static_codec(pt) {
                Some(spec) => spec,
                None => continue,
            },
        };
        out.push(spec);
    }
    out
}

fn telephone_event(payload_type: u8, clock_rate: u32) -> CodecSpec {
    CodecSpec::new(TELEPHONE_EVENT, payload_type, clock_rate, 1).with_fmtp(TELEPHONE_EVENT_EVENTS)
}

/// The remote's `a=fmtp:PT ...` parameters for `payload_type` (the first such line).
fn remote_fmtp(media: &sdp::Media, payload_type: u8) -> FormatParams {
    media
        .attributes
        .iter()
        .filter(|a| a.attribute.eq_ignore_ascii_case("fmtp"))
        .filter_map(|a| a.value.as_deref())
        .find_map(|v| {
            let v = v.trim_start();
            let end = v.find(|c: char| c.is_ascii_whitespace()).unwrap_or(v.len());
            (v[..end].parse::<u8>().ok() == Some(payload_type)).then(|| &v[end..])
        })
        .map(FormatParams::parse)
        .unwrap_or_default()
}

/// The packet time we send the codec with: the remote's wish, unless the codec cannot code
/// that duration in one packet (Opus: 10, 20, 40, 60, 80, 100 or 120 ms of those the ptime
/// range has), then 20 ms — any Opus decoder takes any packet duration (RFC 7587 §4.2).
fn codec_ptime(codec: &CodecSpec, ptime: u32) -> u32 {
    if codec.is_opus() && !matches!(ptime, 10 | 20 | 40 | 60 | 80 | 100 | 120) {
        PTIME_MS
    } else {
        ptime
    }
}

fn find_telephone_event(remote: &[CodecSpec], clock_rate: u32) -> Option<u8> {
    remote
        .iter()
        .find(|c| c.is_telephone_event() && c.clock_rate == clock_rate)
        .map(|c| c.payload_type)
}

/// The stream's address: media-level `c=` first, else session-level.
fn connection_addr(session: &sdp::Session, media: &sdp::Media) -> Result<IpAddr, SdpError> {
    let conn = media
        .connections
        .first()
        .or(session.connection.as_ref())
        .ok_or_else(|| SdpError::Invalid("no c= line for the audio stream".into()))?;
    if conn.nettype != sdp::NetType::In {
        return Err(SdpError::Invalid(format!(
            "network type {:?} in c= is not IN",
            snippet(conn.nettype.as_str())
        )));
    }
    // Multicast addresses may carry "/ttl" or "/count", link-local IPv6 a "%zone";
    // the address is what comes first.
    let raw = conn.connection_address.split('/').next().unwrap_or("");
    let addr = raw.split('%').next().unwrap_or("");
    addr.trim().parse::<IpAddr>().map_err(|_| {
        SdpError::Invalid(format!(
            "c= address {:?} is not an IP address",
            snippet(raw)
        ))
    })
}

fn direction_attr(attributes: &[sdp::Attribute]) -> Option<Direction> {
    attributes
        .iter()
        .find_map(|a| Direction::from_attribute(&a.attribute))
}

/// The remote's declared direction (media, then session level, default sendrecv);
/// `c=0.0.0.0` (or `::`) means the remote does not receive (RFC 3264 §8.4 legacy hold).
fn stream_direction(session: &sdp::Session, media: &sdp::Media, addr: IpAddr) -> Direction {
    let declared = direction_attr(&media.attributes)
        .or_else(|| direction_attr(&session.attributes))
        .unwrap_or_default();
    if addr.is_unspecified() {
        Direction::from_flags(declared.sends(), false)
    } else {
        declared
    }
}

fn stream_ptime(session: &sdp::Session, media: &sdp::Media) -> u32 {
    let value = media
        .get_first_attribute_value("ptime")
        .or_else(|| session.get_first_attribute_value("ptime"))
        .flatten();
    value
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|p| (10.0..=200.0).contains(p))
        .map(|p| p.round() as u32)
        .unwrap_or(PTIME_MS)
}

/// Remote text in an error message, cut short.
fn snippet(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Writing SDP

fn base_session(local: &LocalMedia) -> sdp::Session {
    let username: String = local
        .username
        .trim()
        .chars()
        .filter(|c| !c.is_control() || c.is_whitespace())
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect();
    let mut origin = sdp::Origin::with_ip_addr(local.session_id, local.session_version, local.addr);
    origin.username = if username.is_empty() || username == "-" {
        None
    } else {
        Some(username)
    };
    let mut session = sdp::Session::new(origin, SESSION_NAME);
    session.connection = Some(sdp::Connection::from_ip_addr(local.addr));
    session.times.push(sdp::Time::new(0, 0));
    session
}

/// Our audio m= line: the given codecs (telephone-events included) with their rtpmaps and
/// fmtps, ptime, direction.
fn audio_media(
    local: &LocalMedia,
    proto: &str,
    all: &[CodecSpec],
    direction: Direction,
    rtcp_mux: bool,
) -> sdp::Media {
    let fmt = all
        .iter()
        .map(|c| c.payload_type.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let mut media = sdp::Media {
        media: "audio".into(),
        port: local.port,
        num_ports: None,
        proto: proto.into(),
        fmt,
        media_title: None,
        connections: Vec::new(),
        bandwidths: Vec::new(),
        key: None,
        attributes: Vec::new(),
    };
    for codec in all {
        let map = if codec.channels > 1 {
            sdp::RtpMap::with_encoding_params(
                codec.payload_type,
                &codec.name,
                codec.clock_rate,
                codec.channels,
            )
        } else {
            sdp::RtpMap::new(codec.payload_type, &codec.name, codec.clock_rate)
        };
        media.add_attribute_with_value("rtpmap", map);
    }
    for codec in all {
        if let Some(params) = codec.fmtp.as_deref().map(str::trim) {
            if !params.is_empty() {
                media.add_attribute_with_value("fmtp", format!("{} {params}", codec.payload_type));
            }
        }
    }
    media.add_attribute_with_value("ptime", PTIME_MS);
    media.add_attribute(sdp::Attribute::new(direction.as_str()));
    if rtcp_mux {
        media.add_attribute(sdp::Attribute::new("rtcp-mux"));
    }
    media
}

/// An m= line answered with port 0: same media, proto and formats as offered (each cleaned
/// to single-space-separated tokens so that odd input cannot shift the fields when re-read).
fn rejected_media(offered: &sdp::Media) -> sdp::Media {
    let token = |s: &str, default: &str| {
        s.split_ascii_whitespace()
            .next()
            .unwrap_or(default)
            .to_string()
    };
    let fmt = offered.fmt.split_ascii_whitespace().collect::<Vec<_>>();
    let fmt = if fmt.is_empty() {
        "0".to_string()
    } else {
        fmt.join(" ")
    };
    sdp::Media {
        media: token(&offered.media, "unknown"),
        port: 0,
        num_ports: None,
        proto: token(&offered.proto, "RTP/AVP"),
        fmt,
        media_title: None,
        connections: Vec::new(),
        bandwidths: Vec::new(),
        key: None,
        attributes: Vec::new(),
    }
}

fn write_session(session: &sdp::Session) -> String {
    let mut out = Vec::with_capacity(512);
    // Writing into a Vec cannot fail; the text is built from Strings, so it is UTF-8.
    let _ = session.write(&mut out);
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};

    fn local() -> LocalMedia {
        LocalMedia::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 40000, 4242)
    }

    fn offer_with(audio: &str) -> String {
        format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n{audio}")
    }

    #[test]
    fn rtcp_mux_is_offered_and_taken_only_when_both_sides_have_it() {
        let rtcp = |n: &Negotiated| (n.rtcp_mux, n.remote_rtcp.to_string());
        assert!(create_offer(&local()).contains("a=rtcp-mux\r\n"));
        let mut plain = local();
        plain.rtcp_mux = false;
        assert!(!create_offer(&plain).contains("rtcp-mux"));

        let muxed = offer_with("m=audio 6000 RTP/AVP 0\r\na=rtcp-mux\r\n");
        let (answer, n) = create_answer(&muxed, &local()).unwrap();
        assert!(answer.contains("a=rtcp-mux\r\n"));
        assert_eq!(rtcp(&n), (true, "127.0.0.1:6000".into()));
        let (answer, n) = create_answer(&muxed, &plain).unwrap();
        assert!(!answer.contains("rtcp-mux"));
        assert_eq!(rtcp(&n), (false, "127.0.0.1:6001".into()));

        let separate = offer_with("m=audio 6000 RTP/AVP 0\r\na=rtcp:7001 IN IP4 127.0.0.9\r\n");
        let (answer, n) = create_answer(&separate, &local()).unwrap();
        assert!(!answer.contains("rtcp-mux"), "not offered, not answered");
        assert_eq!(rtcp(&n), (false, "127.0.0.9:7001".into()));
        let port_only = offer_with("m=audio 6000 RTP/AVP 0\r\na=rtcp:7003\r\n");
        assert_eq!(
            rtcp(&create_answer(&port_only, &local()).unwrap().1),
            (false, "127.0.0.1:7003".into())
        );
        let junk = offer_with("m=audio 6000 RTP/AVP 0\r\na=rtcp:junk\r\n");
        assert_eq!(
            rtcp(&create_answer(&junk, &local()).unwrap().1),
            (false, "127.0.0.1:6001".into())
        );

        // Our offer's answer: muxed only if the answer says so.
        let answer = offer_with("m=audio 6000 RTP/AVP 0\r\na=rtcp-mux\r\n");
        assert_eq!(
            rtcp(&process_answer(&local(), &answer).unwrap()),
            (true, "127.0.0.1:6000".into())
        );
        assert!(
            !process_answer(&plain, &answer).unwrap().rtcp_mux,
            "we did not offer it"
        );
        let answer = offer_with("m=audio 6000 RTP/AVP 0\r\n");
        assert_eq!(
            rtcp(&process_answer(&local(), &answer).unwrap()),
            (false, "127.0.0.1:6001".into())
        );
    }

    #[test]
    fn offer_text_parses_back() {
        let text = create_offer(&local());
        let s = sdp::Session::parse(text.as_bytes()).unwrap();
        assert_eq!(s.origin.sess_id, "4242");
        assert_eq!(s.origin.sess_version, 0);
        assert_eq!(s.origin.username, None);
        assert_eq!(s.origin.unicast_address, "127.0.0.1");
        let c = s.connection.as_ref().unwrap();
        assert_eq!(c.connection_address, "127.0.0.1");
        assert_eq!(c.addrtype, sdp::AddrType::Ip4);
        assert_eq!(s.medias.len(), 1);
        let m = &s.medias[0];
        assert_eq!((m.media.as_str(), m.port), ("audio", 40000));
        assert_eq!(m.proto, "RTP/AVP");
        assert_eq!(m.fmt, "0 8 101");
        let maps: Vec<String> = m
            .attributes_typed::<sdp::RtpMap>()
            .map(|r| r.unwrap().to_string())
            .collect();
        assert_eq!(
            maps,
            ["0 PCMU/8000", "8 PCMA/8000", "101 telephone-event/8000"]
        );
        assert_eq!(m.get_first_attribute_value("fmtp"), Some(Some("101 0-16")));
        assert_eq!(m.get_first_attribute_value("ptime"), Some(Some("20")));
        assert!(m.has_attribute("sendrecv"));
        assert!(text.ends_with("\r\n"));
        assert!(!text.contains("\n\n"));
    }

    #[test]
    fn offer_hold_ipv6_and_username() {
        let mut l = local();
        l.addr = IpAddr::V6(Ipv6Addr::LOCALHOST);
        l.direction = Direction::SendOnly;
        l.session_version = 7;
        l.username = "alice smith".into();
        l.telephone_event = false;
        let text = create_offer(&l);
        assert!(
            text.contains("o=alice_smith 4242 7 IN IP6 ::1\r\n"),
            "{text}"
        );
        assert!(text.contains("c=IN IP6 ::1\r\n"), "{text}");
        assert!(text.contains("m=audio 40000 RTP/AVP 0 8\r\n"), "{text}");
        assert!(text.contains("a=sendonly\r\n"), "{text}");
        assert!(!text.contains("telephone-event"));
    }

    #[test]
    fn telephone_event_pt_avoids_codec_pts() {
        let mut l = local();
        l.codecs.push(CodecSpec::new("opus", 101, 48000, 2));
        assert_eq!(l.telephone_event_pt(), Some(96));
        let text = create_offer(&l);
        assert!(text.contains("a=rtpmap:101 opus/48000/2\r\n"), "{text}");
        assert!(text.contains("a=fmtp:96 0-16\r\n"), "{text}");
    }

    #[test]
    fn empty_codec_list_means_defaults() {
        let mut l = local();
        l.codecs.clear();
        assert!(create_offer(&l).contains("m=audio 40000 RTP/AVP 0 8 101\r\n"));
    }

    #[test]
    fn direction_rules() {
        use Direction::*;
        assert_eq!(SendRecv.negotiate(SendOnly), RecvOnly);
        assert_eq!(SendRecv.negotiate(RecvOnly), SendOnly);
        assert_eq!(SendRecv.negotiate(Inactive), Inactive);
        assert_eq!(SendRecv.negotiate(SendRecv), SendRecv);
        assert_eq!(SendOnly.negotiate(SendRecv), SendOnly);
        assert_eq!(SendOnly.negotiate(SendOnly), Inactive);
        assert_eq!(RecvOnly.negotiate(SendOnly), RecvOnly);
        for d in [SendRecv, SendOnly, RecvOnly, Inactive] {
            assert_eq!(d.reverse().reverse(), d);
            assert_eq!(Direction::from_attribute(d.as_str()), Some(d));
        }
        assert_eq!(Direction::from_attribute("SENDONLY"), Some(SendOnly));
        assert_eq!(Direction::from_attribute("rtpmap"), None);
    }

    #[test]
    fn static_payload_types_without_rtpmap() {
        let (answer, n) =
            create_answer(&offer_with("m=audio 6000 RTP/AVP 18 8\r\n"), &local()).unwrap();
        assert_eq!(n.codec, pcma());
        assert_eq!(n.telephone_event_pt, None);
        assert!(answer.contains("m=audio 40000 RTP/AVP 8\r\n"), "{answer}");
    }

    #[test]
    fn rtpmap_names_are_case_insensitive() {
        let offer = offer_with(
            "m=audio 6000 RTP/AVP 97 98\r\na=rtpmap:97 pcmu/8000/1\r\na=rtpmap:98 TELEPHONE-EVENT/8000\r\n",
        );
        let (answer, n) = create_answer(&offer, &local()).unwrap();
        assert_eq!(n.codec, CodecSpec::new("PCMU", 97, 8000, 1));
        assert_eq!(n.telephone_event_pt, Some(98));
        assert!(
            answer.contains("m=audio 40000 RTP/AVP 97 98\r\n"),
            "{answer}"
        );
        assert!(answer.contains("a=fmtp:98 0-16\r\n"), "{answer}");
    }

    #[test]
    fn telephone_event_at_other_rate_is_not_used() {
        let offer =
            offer_with("m=audio 6000 RTP/AVP 0 100\r\na=rtpmap:100 telephone-event/48000\r\n");
        let (answer, n) = create_answer(&offer, &local()).unwrap();
        assert_eq!(n.telephone_event_pt, None);
        assert!(answer.contains("m=audio 40000 RTP/AVP 0\r\n"), "{answer}");
    }

    #[test]
    fn telephone_event_off_locally() {
        let mut l = local();
        l.telephone_event = false;
        let offer =
            offer_with("m=audio 6000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n");
        let (answer, n) = create_answer(&offer, &l).unwrap();
        assert_eq!(n.telephone_event_pt, None);
        assert!(!answer.contains("telephone-event"));
    }

    #[test]
    fn ptime_from_remote() {
        let offer = offer_with("m=audio 6000 RTP/AVP 0\r\na=ptime:30\r\n");
        assert_eq!(create_answer(&offer, &local()).unwrap().1.ptime, 30);
        let offer = offer_with("m=audio 6000 RTP/AVP 0\r\na=ptime:99999\r\n");
        assert_eq!(create_answer(&offer, &local()).unwrap().1.ptime, 20);
        let offer = offer_with("m=audio 6000 RTP/AVP 0\r\na=ptime:junk\r\n");
        assert_eq!(create_answer(&offer, &local()).unwrap().1.ptime, 20);
    }

    #[test]
    fn errors_and_status_codes() {
        assert!(matches!(
            create_answer("", &local()),
            Err(SdpError::Parse(_))
        ));
        assert!(matches!(
            create_answer("hello world", &local()),
            Err(SdpError::Parse(_))
        ));
        let e = create_answer(&offer_with(""), &local()).unwrap_err();
        assert_eq!(e, SdpError::NoAudio);
        assert_eq!(e.sip_status(), 488);
        let no_c = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";
        let e = create_answer(no_c, &local()).unwrap_err();
        assert!(matches!(e, SdpError::Invalid(_)), "{e:?}");
        assert_eq!(e.sip_status(), 400);
        let host = offer_with("m=audio 6000 RTP/AVP 0\r\nc=IN IP4 pbx.example.com\r\n");
        assert!(matches!(
            create_answer(&host, &local()),
            Err(SdpError::Invalid(_))
        ));
        let srtp = offer_with("m=audio 6000 RTP/SAVP 0\r\n");
        assert_eq!(create_answer(&srtp, &local()), Err(SdpError::NoAudio));
        let big = "a".repeat(MAX_SDP_LEN + 1);
        assert!(matches!(
            create_answer(&big, &local()),
            Err(SdpError::Parse(_))
        ));
        assert!(!SdpError::NoCommonCodec.to_string().is_empty());
    }

    #[test]
    fn error_text_is_cut_short() {
        let long = "x".repeat(500);
        let offer = offer_with(&format!("m=audio 6000 RTP/AVP 0\r\nc=IN IP4 {long}\r\n"));
        let e = create_answer(&offer, &local()).unwrap_err();
        assert!(e.to_string().len() < 200, "{e}");
    }

    #[test]
    fn odd_rejected_m_line_is_written_cleanly() {
        // Found by proptest: an empty proto used to be echoed and shift the fields.
        let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nc=IN IP4 127.0.0.1\r\n\
                     m=PCMU/8000 0  0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let (answer, _) = create_answer(offer, &local()).unwrap();
        assert!(answer.contains("m=PCMU/8000 0 RTP/AVP 0\r\n"), "{answer}");
        let back = sdp::Session::parse(answer.as_bytes()).unwrap();
        assert_eq!(back.medias[1].port, 40000);
    }

    #[test]
    fn ipv6_zone_is_stripped() {
        let offer = offer_with("m=audio 6000 RTP/AVP 0\r\nc=IN IP6 fe80::1%eth0\r\n");
        let n = create_answer(&offer, &local()).unwrap().1;
        assert_eq!(n.remote, "[fe80::1]:6000".parse().unwrap());
    }

    #[test]
    fn multicast_ttl_is_stripped() {
        let offer = offer_with("m=audio 6000 RTP/AVP 0\r\nc=IN IP4 224.2.1.1/127\r\n");
        let n = create_answer(&offer, &local()).unwrap().1;
        assert_eq!(n.remote, "224.2.1.1:6000".parse().unwrap());
    }

    #[test]
    fn process_answer_round_trip() {
        let us = local();
        let offer = create_offer(&us);
        let mut them = LocalMedia::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 50000, 9);
        them.codecs = vec![pcma(), pcmu()];
        let (answer, theirs) = create_answer(&offer, &them).unwrap();
        assert_eq!(theirs.codec, pcma());
        assert_eq!(theirs.remote, "127.0.0.1:40000".parse().unwrap());
        let ours = process_answer(&us, &answer).unwrap();
        assert_eq!(ours.codec, pcma());
        assert_eq!(ours.telephone_event_pt, Some(101));
        assert_eq!(ours.remote, "127.0.0.2:50000".parse().unwrap());
        assert_eq!(ours.direction, Direction::SendRecv);
        assert_eq!(ours.ptime, 20);
    }
}
