//! One call's RTP stream, sans-IO: capture frames in, RTP out; RTP in, playout frames out.
//!
//! The caller ticks [`MediaSession::on_tick`] and [`MediaSession::playout`] once per frame
//! (every `ptime_ms`) and feeds every received datagram to [`MediaSession::handle_rtp`].

use std::collections::VecDeque;
use std::time::Instant;

use core::fmt;

use super::codec::{codec_for, Codec};
use super::dtmf::{DtmfReceiver, DtmfSender, DtmfSenderConfig};
use super::emodel::CodecImpairment;
use super::jitter::{Adjust, JitterBuffer, JitterConfig, Playout};
use super::rtcp::RtcpError;
use super::rtcp_session::{CallQuality, QualityInputs, RtcpConfig, RtcpEvent, RtcpSession};
use super::rtp::{extend_seq, RtpPacket};

/// The negotiated codec (what SDP said), independent of the SIP layer's types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecParams {
    /// Encoding name, e.g. "PCMU".
    pub name: String,
    /// Payload type used on the wire (both directions).
    pub payload_type: u8,
    /// RTP clock rate.
    pub clock_rate: u32,
    /// Bitrate to send at, bit/s, for a variable-rate codec (Opus: the remote's
    /// `maxaveragebitrate`); `None`: the codec's default. Fixed-rate codecs ignore it.
    pub bitrate: Option<u32>,
}

impl CodecParams {
    /// PCMU, payload type 0, 8 kHz.
    pub fn pcmu() -> CodecParams {
        CodecParams {
            name: "PCMU".into(),
            payload_type: 0,
            clock_rate: 8000,
            bitrate: None,
        }
    }

    /// G.722, payload type 9, RTP clock 8 kHz (audio at 16 kHz).
    pub fn g722() -> CodecParams {
        CodecParams {
            name: "G722".into(),
            payload_type: 9,
            clock_rate: 8000,
            bitrate: None,
        }
    }

    /// PCMA, payload type 8, 8 kHz.
    pub fn pcma() -> CodecParams {
        CodecParams {
            name: "PCMA".into(),
            payload_type: 8,
            clock_rate: 8000,
            bitrate: None,
        }
    }

    /// Opus, dynamic payload type 111 (what most softphones use; the answer may name another),
    /// RTP clock 48 kHz, default bitrate.
    pub fn opus() -> CodecParams {
        CodecParams {
            name: "opus".into(),
            payload_type: 111,
            clock_rate: 48_000,
            bitrate: None,
        }
    }
}

/// Setup of a [`MediaSession`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// The audio codec.
    pub codec: CodecParams,
    /// Payload type of telephone-event (RFC 4733), if negotiated.
    pub telephone_event_pt: Option<u8>,
    /// Frame length in ms (20).
    pub ptime_ms: u32,
    /// Our SSRC (random, from the caller).
    pub ssrc: u32,
    /// First sequence number (random, from the caller).
    pub initial_seq: u16,
    /// First timestamp (random, from the caller).
    pub initial_ts: u32,
}

/// Why a [`MediaSession`] could not be set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaError {
    /// No codec of that name.
    UnknownCodec(String),
    /// The SDP clock rate is not the codec's.
    ClockRate {
        /// Codec name.
        codec: &'static str,
        /// Rate given.
        given: u32,
        /// Rate the codec runs at.
        expected: u32,
    },
    /// ptime outside 1..=200 ms or not a whole number of samples.
    Ptime(u32),
}

impl fmt::Display for MediaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MediaError::UnknownCodec(n) => write!(f, "unknown codec {n:?}"),
            MediaError::ClockRate {
                codec,
                given,
                expected,
            } => write!(f, "{codec} runs at {expected} Hz, not {given} Hz"),
            MediaError::Ptime(p) => write!(f, "unsupported ptime {p} ms"),
        }
    }
}

impl std::error::Error for MediaError {}

/// Something the session noticed that the engine should hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// A DTMF digit arrived (RFC 4733), once per key press.
    DtmfReceived(char),
}

/// Counters of one session, for the call-quality display and RTCP.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MediaStats {
    /// RTP packets sent (audio and telephone-event).
    pub packets_sent: u64,
    /// Payload octets sent (as RTCP's sender octet count).
    pub bytes_sent: u64,
    /// RTP packets received with a known payload type.
    pub packets_received: u64,
    /// Payload octets received.
    pub bytes_received: u64,
    /// Packets lost, RFC 3550 style: expected (from extended sequence numbers) minus
    /// received, summed over the remote SSRCs seen; never negative.
    pub lost: u64,
    /// Audio packets that arrived after their playout slot.
    pub late: u64,
    /// Duplicate audio packets.
    pub duplicates: u64,
    /// Frames filled by concealment (missing packets not rebuilt by FEC, and audio payloads
    /// the codec could not decode).
    pub concealed: u64,
    /// Frames of missing packets rebuilt from the in-band FEC of the packet after them (Opus).
    pub fec_recovered: u64,
    /// Datagrams that were not valid RTP or had an unknown payload type, and audio payloads
    /// the codec could not decode.
    pub bad_packets: u64,
    /// Interarrival jitter (RFC 3550 A.8) of the audio packets, in ms.
    pub jitter_ms: f64,
    /// Frames dropped to shrink the playout delay (taken from pauses where possible).
    pub discarded: u64,
    /// Frames inserted to grow the playout delay.
    pub stretched: u64,
    /// The jitter buffer's current target delay, in ms.
    pub buffer_ms: f64,
}

/// A decoded frame below this RMS (about −40 dBFS) is a pause: the playout delay may change
/// there without being heard.
const QUIET_RMS: f64 = 330.0;
/// Growing waits at most this many frames for a pause, then conceals during speech.
const GROW_WAIT_FRAMES: u32 = 25;
/// Shrinking waits until the wish has lasted this many frames (a tick that came late is not
/// a reason to drop audio).
const SHRINK_PERSIST_FRAMES: u32 = 10;
/// Shrinking waits at most this many frames for a pause, then drops a frame during speech.
const SHRINK_WAIT_FRAMES: u32 = 150;

fn is_quiet(pcm: &[i16]) -> bool {
    if pcm.is_empty() {
        return true;
    }
    let energy: f64 = pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    energy / (pcm.len() as f64) < QUIET_RMS * QUIET_RMS
}

/// A sequence number this far ahead of the highest seen restarts loss counting (RFC 3550 A.1).
const MAX_DROPOUT: i64 = 3000;
/// A sequence number this far behind the highest seen restarts loss counting (RFC 3550 A.1).
const MAX_MISORDER: i64 = 100;

/// RFC 3550 receive-side state for one remote SSRC.
#[derive(Debug, Clone)]
struct RxSource {
    ssrc: u32,
    base: i64,
    max: i64,
    received: u64,
    /// Interarrival jitter in timestamp units.
    jitter: f64,
    last_transit: Option<u32>,
}

impl RxSource {
    fn lost(&self) -> u64 {
        let expected = (self.max - self.base + 1).max(0) as u64;
        expected.saturating_sub(self.received)
    }
}

/// One call's media stream (see the module docs).
pub struct MediaSession {
    cfg: MediaConfig,
    codec: Box<dyn Codec>,
    jitter: JitterBuffer,
    dtmf_tx: DtmfSender,
    dtmf_rx: DtmfReceiver,
    frame_samples: usize,
    frame_ts: u32,
    seq: u16,
    ts: u32,
    sent_audio: bool,
    events: VecDeque<MediaEvent>,
    stats: MediaStats,
    rx: Option<RxSource>,
    /// The remote SSRC before the last change (its stragglers are not a new source).
    retired_ssrc: Option<u32>,
    lost_before: u64,
    /// Reference for arrival times in timestamp units.
    epoch: Option<Instant>,
    pcm: Vec<i16>,
    payload: Vec<u8>,
    /// RTCP reporting, once [`MediaSession::enable_rtcp`] was called.
    rtcp: Option<RtcpSession>,
    /// The last frame played was a pause.
    last_quiet: bool,
    /// Frames since a change of the playout delay was first wanted (waiting for a pause).
    adjust_wait: u32,
    /// Frames concealed because their payload could not be decoded.
    undecodable: u64,
}

impl fmt::Debug for MediaSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaSession")
            .field("cfg", &self.cfg)
            .field("seq", &self.seq)
            .field("ts", &self.ts)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl MediaSession {
    /// A session with the default jitter buffer (60 ms fixed delay).
    pub fn new(cfg: MediaConfig) -> Result<MediaSession, MediaError> {
        let jcfg = JitterConfig::new(cfg.codec.clock_rate, cfg.ptime_ms);
        MediaSession::with_jitter(cfg, jcfg)
    }

    /// A session with a jitter buffer tuned by the caller.
    pub fn with_jitter(cfg: MediaConfig, jitter: JitterConfig) -> Result<MediaSession, MediaError> {
        let codec = codec_for(&cfg.codec.name, cfg.codec.bitrate)
            .ok_or_else(|| MediaError::UnknownCodec(cfg.codec.name.clone()))?;
        if codec.clock_rate() != cfg.codec.clock_rate {
            return Err(MediaError::ClockRate {
                codec: codec.name(),
                given: cfg.codec.clock_rate,
                expected: codec.clock_rate(),
            });
        }
        let p = cfg.ptime_ms;
        if p == 0 || p > 200 || codec.sample_rate() % 1000 != 0 || codec.clock_rate() % 1000 != 0 {
            return Err(MediaError::Ptime(p));
        }
        let frame_samples = (codec.sample_rate() / 1000 * p) as usize;
        let frame_ts = codec.clock_rate() / 1000 * p;
        let jitter = JitterConfig {
            frame_ts,
            clock_rate: codec.clock_rate(),
            ..jitter
        };
        Ok(MediaSession {
            dtmf_tx: DtmfSender::new(DtmfSenderConfig::new(cfg.codec.clock_rate, p)),
            dtmf_rx: DtmfReceiver::new(),
            jitter: JitterBuffer::new(jitter),
            frame_samples,
            frame_ts,
            seq: cfg.initial_seq,
            ts: cfg.initial_ts,
            sent_audio: false,
            events: VecDeque::new(),
            stats: MediaStats::default(),
            rx: None,
            retired_ssrc: None,
            lost_before: 0,
            epoch: None,
            pcm: Vec::with_capacity(frame_samples),
            payload: Vec::with_capacity(frame_samples),
            rtcp: None,
            last_quiet: true,
            adjust_wait: 0,
            undecodable: 0,
            codec,
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &MediaConfig {
        &self.cfg
    }

    /// PCM samples per frame (160 for 8 kHz / 20 ms).
    pub fn frame_samples(&self) -> usize {
        self.frame_samples
    }

    /// Every frame: the captured PCM (None when muted or no source: silence is sent) goes out as
    /// RTP; the datagrams to send are appended to `out`. While a DTMF digit is on the wire,
    /// telephone-event packets replace audio.
    pub fn on_tick(&mut self, now: Instant, captured: Option<&[i16]>, out: &mut Vec<Vec<u8>>) {
        let ts = self.ts;
        self.ts = self.ts.wrapping_add(self.frame_ts);
        if let (Some(pt), Some(p)) = (self.cfg.telephone_event_pt, self.dtmf_tx.tick(ts)) {
            let bytes = p.event.to_bytes();
            out.push(self.packet(now, pt, p.marker, p.timestamp, &bytes));
            return;
        }
        self.pcm.clear();
        if let Some(frame) = captured {
            let n = frame.len().min(self.frame_samples);
            self.pcm.extend_from_slice(&frame[..n]);
        }
        self.pcm.resize(self.frame_samples, 0);
        let mut payload = std::mem::take(&mut self.payload);
        payload.clear();
        self.codec.encode(&self.pcm, &mut payload);
        let marker = !self.sent_audio;
        self.sent_audio = true;
        out.push(self.packet(now, self.cfg.codec.payload_type, marker, ts, &payload));
        self.payload = payload;
    }

    /// A frame's time passes with nothing sent (on hold): the RTP clock keeps pace with time,
    /// and the next packet sent starts a talkspurt (marker bit).
    pub fn pause_tick(&mut self) {
        self.ts = self.ts.wrapping_add(self.frame_ts);
        self.sent_audio = false;
    }

    fn packet(&mut self, now: Instant, pt: u8, marker: bool, ts: u32, payload: &[u8]) -> Vec<u8> {
        if let Some(r) = &mut self.rtcp {
            r.on_rtp_sent(now, ts, payload.len());
        }
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += payload.len() as u64;
        let mut out = Vec::with_capacity(12 + payload.len());
        out.push(0x80);
        out.push((u8::from(marker) << 7) | (pt & 0x7f));
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&ts.to_be_bytes());
        out.extend_from_slice(&self.cfg.ssrc.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// A datagram arrived on the RTP port at `now`. Invalid RTP and unknown payload types are
    /// dropped and counted in `bad_packets`; STUN (first byte 0-3, RFC 7983: the connectivity
    /// checks and keepalives ICE peers such as linphone send to our media port) is dropped
    /// without counting: it is not bad, only not for us.
    pub fn handle_rtp(&mut self, now: Instant, data: &[u8]) {
        if data.first().is_some_and(|b| *b <= 3) {
            return;
        }
        let Ok(pkt) = RtpPacket::parse(data) else {
            self.stats.bad_packets += 1;
            return;
        };
        let audio = pkt.payload_type == self.cfg.codec.payload_type;
        let event = self.cfg.telephone_event_pt == Some(pkt.payload_type);
        if !audio && !event {
            self.stats.bad_packets += 1;
            return;
        }
        if event && pkt.payload.len() < 4 {
            self.stats.bad_packets += 1;
            return;
        }
        self.stats.packets_received += 1;
        self.stats.bytes_received += pkt.payload.len() as u64;
        self.track_source(now, &pkt, audio);
        if let Some(r) = &mut self.rtcp {
            if audio {
                r.on_rtp_received(
                    now,
                    pkt.ssrc,
                    pkt.seq,
                    pkt.timestamp,
                    self.cfg.codec.clock_rate,
                );
            } else {
                r.on_rtp_received_untimed(now, pkt.ssrc, pkt.seq);
            }
        }
        if audio {
            self.jitter.push(now, pkt);
        } else {
            self.jitter.note_other(pkt.ssrc, pkt.seq);
            match self.dtmf_rx.handle(pkt.ssrc, pkt.timestamp, &pkt.payload) {
                Ok(Some(d)) => self.events.push_back(MediaEvent::DtmfReceived(d)),
                Ok(None) => {}
                Err(_) => self.stats.bad_packets += 1,
            }
        }
    }

    /// RFC 3550 A.1/A.3 counting and A.8 jitter for the packet's source.
    fn track_source(&mut self, now: Instant, pkt: &RtpPacket, audio: bool) {
        if self.retired_ssrc == Some(pkt.ssrc) {
            return;
        }
        let src = match &mut self.rx {
            Some(src) if src.ssrc == pkt.ssrc => src,
            other => {
                if let Some(old) = other.take() {
                    self.lost_before += old.lost();
                    self.retired_ssrc = Some(old.ssrc);
                }
                let ext = 1 << 16 | i64::from(pkt.seq);
                self.rx.insert(RxSource {
                    ssrc: pkt.ssrc,
                    base: ext,
                    max: ext - 1,
                    received: 0,
                    jitter: 0.0,
                    last_transit: None,
                })
            }
        };
        let ext = extend_seq(src.max, pkt.seq);
        if src.received > 0 && (ext - src.max > MAX_DROPOUT || src.max - ext > MAX_MISORDER) {
            // the sender restarted its sequence: count the old run, start a new one
            self.lost_before += src.lost();
            src.base = ext;
            src.max = ext - 1;
            src.received = 0;
            src.last_transit = None;
        }
        if ext < src.base {
            src.base = ext;
        }
        src.max = src.max.max(ext);
        src.received += 1;
        if audio {
            let epoch = *self.epoch.get_or_insert(now);
            let micros = now.saturating_duration_since(epoch).as_micros();
            let arrival = (micros * u128::from(self.cfg.codec.clock_rate) / 1_000_000) as u32;
            let transit = arrival.wrapping_sub(pkt.timestamp);
            if let Some(last) = src.last_transit {
                let d = f64::from((transit.wrapping_sub(last) as i32).unsigned_abs());
                src.jitter += (d - src.jitter) / 16.0;
            }
            src.last_transit = Some(transit);
        }
    }

    /// Every frame: the next frame to play (decoded, concealed or silence). `out` is cleared
    /// and filled with exactly [`MediaSession::frame_samples`] samples.
    ///
    /// The jitter buffer's wish to grow or shrink the playout delay is carried out in a pause:
    /// after a quiet frame one frame of silence is inserted, or a quiet frame is dropped. If
    /// speech goes on too long, growing conceals a frame and shrinking drops one anyway.
    pub fn playout(&mut self, now: Instant, out: &mut Vec<i16>) {
        out.clear();
        let adjust = self.jitter.adjustment(now);
        if adjust == Adjust::Keep {
            self.adjust_wait = 0;
        } else {
            self.adjust_wait += 1;
        }
        if adjust == Adjust::Grow && (self.last_quiet || self.adjust_wait > GROW_WAIT_FRAMES) {
            if !self.last_quiet {
                self.codec.conceal(self.frame_samples, out);
            }
            out.resize(self.frame_samples, 0);
            self.jitter.stretch(now);
            self.adjust_wait = 0;
            return;
        }
        self.pop_frame(now, out);
        if adjust == Adjust::Shrink
            && self.adjust_wait >= SHRINK_PERSIST_FRAMES
            && (is_quiet(out) || self.adjust_wait > SHRINK_WAIT_FRAMES)
            && !self.jitter.is_empty()
        {
            self.jitter.note_discarded();
            out.clear();
            self.pop_frame(now, out);
            self.adjust_wait = 0;
        }
        self.last_quiet = is_quiet(out);
    }

    /// The next frame from the jitter buffer. A missing packet is rebuilt from the next
    /// packet's in-band FEC when that one is already buffered and carries it, else concealed;
    /// a payload the codec cannot decode is concealed and counted as a bad packet.
    fn pop_frame(&mut self, now: Instant, out: &mut Vec<i16>) {
        match self.jitter.pop(now) {
            Playout::Frame(pkt) => {
                let start = out.len();
                if self.codec.decode(&pkt.payload, out).is_err() {
                    out.truncate(start);
                    self.stats.bad_packets += 1;
                    self.undecodable += 1;
                    self.codec.conceal(self.frame_samples, out);
                }
            }
            Playout::Conceal => {
                let recovered = self.jitter.peek_next().is_some_and(|next| {
                    self.codec
                        .decode_fec(&next.payload, self.frame_samples, out)
                });
                if recovered {
                    self.stats.fec_recovered += 1;
                } else {
                    self.codec.conceal(self.frame_samples, out);
                }
            }
            Playout::Silence => {}
        }
        out.resize(self.frame_samples, 0);
    }

    /// Queue DTMF digits (0-9 * # A-D, others skipped) to send as telephone-events, in order.
    /// Without a negotiated telephone-event payload type nothing is sent.
    pub fn send_dtmf(&mut self, digits: &str, _now: Instant) {
        if self.cfg.telephone_event_pt.is_some() {
            self.dtmf_tx.queue(digits);
        }
    }

    /// True while DTMF digits are queued or on the wire.
    pub fn is_sending_dtmf(&self) -> bool {
        !self.dtmf_tx.is_idle()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    /// Counters so far.
    pub fn stats(&self) -> MediaStats {
        let jb = self.jitter.stats();
        let (lost, jitter) = match &self.rx {
            Some(src) => (src.lost(), src.jitter),
            None => (0, 0.0),
        };
        MediaStats {
            lost: self.lost_before + lost,
            late: jb.late,
            duplicates: jb.duplicates,
            // the jitter buffer counts every missing slot; FEC rebuilt some of them
            concealed: jb.concealed.saturating_sub(self.stats.fec_recovered) + self.undecodable,
            jitter_ms: jitter * 1000.0 / f64::from(self.cfg.codec.clock_rate),
            discarded: jb.discarded,
            stretched: jb.stretched,
            buffer_ms: self.jitter.target_delay().as_secs_f64() * 1000.0,
            ..self.stats
        }
    }

    /// Start RTCP reporting (RFC 3550) for this stream: from now on received and sent RTP is
    /// counted for the reports.
    pub fn enable_rtcp(&mut self, cfg: RtcpConfig, now: Instant) {
        self.rtcp = Some(RtcpSession::new(cfg, now));
    }

    /// The RTCP session, if enabled.
    pub fn rtcp(&self) -> Option<&RtcpSession> {
        self.rtcp.as_ref()
    }

    /// An RTCP datagram arrived (compound packet).
    pub fn handle_rtcp(&mut self, now: Instant, data: &[u8]) -> Result<Vec<RtcpEvent>, RtcpError> {
        match &mut self.rtcp {
            Some(r) => r.handle_rtcp(now, data),
            None => Ok(Vec::new()),
        }
    }

    /// When the next RTCP report is due.
    pub fn poll_rtcp_timeout(&self) -> Option<Instant> {
        self.rtcp.as_ref().and_then(RtcpSession::poll_timeout)
    }

    /// The RTCP timer fired: the report to send, if one is due. `wall` is the current
    /// wall-clock time for the NTP timestamps.
    pub fn handle_rtcp_timeout(
        &mut self,
        now: Instant,
        wall: std::time::SystemTime,
    ) -> Option<Vec<u8>> {
        self.rtcp.as_mut()?.handle_timeout(now, wall)
    }

    /// The RTCP BYE (with a last report) to send when the call ends.
    pub fn rtcp_bye(&mut self, now: Instant, wall: std::time::SystemTime) -> Option<Vec<u8>> {
        Some(self.rtcp.as_mut()?.bye(now, wall, None))
    }

    /// Call quality for the stats: loss, jitter and RTT from RTCP, and the E-model's MOS of
    /// what we hear, with our jitter buffer, the packet time and `device_delay_ms` as the
    /// local delay and late or discarded frames counted as lost. `None` without RTCP.
    pub fn quality(&self, device_delay_ms: f64) -> Option<CallQuality> {
        let rtcp = self.rtcp.as_ref()?;
        let codec = CodecImpairment::for_codec(&self.cfg.codec.name, true)?;
        let jb = self.jitter.stats();
        let expected = jb.received.max(1) as f64;
        let mut inputs = QualityInputs::new(
            codec,
            self.jitter.target_delay().as_secs_f64() * 1000.0
                + f64::from(self.cfg.ptime_ms)
                + device_delay_ms,
        );
        // Frames dropped to shrink the buffer were pauses, not speech: only late ones count.
        inputs.discard_pct = jb.late as f64 * 100.0 / expected;
        Some(rtcp.call_quality(&inputs))
    }

    /// The jitter buffer's own counters.
    pub fn jitter_stats(&self) -> super::jitter::JitterStats {
        self.jitter.stats()
    }
}
