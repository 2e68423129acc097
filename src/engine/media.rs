//! One call's media at the I/O edge: the RTP socket, the sans-IO [`MediaSession`], and the
//! audio source and sink it is wired to.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::net::UdpSocket;

use crate::audio::{
    self, AudioSink, AudioSource, NullSink, SilenceSource, SourceState, ToneSource, WavSink,
    WavSource,
};
use crate::engine::api::{AudioSinkSpec, AudioSourceSpec, CallAudio, CallMediaStats, CallSummary};
use crate::engine::recording::CallRecorder;
use crate::media::aec::EchoCanceller;
use crate::media::jitter::JitterConfig;
use crate::media::levels::{Level, LevelMeter};
use crate::media::pipeline::{CapturePath, PlayoutPath, PIPELINE_RATE};
use crate::media::session::{MediaConfig, MediaEvent, MediaSession};
use crate::media::{is_rtcp, CodecParams, RtcpConfig};
use crate::sip::sdp::Negotiated;

enum Source {
    /// A file, a tone or silence, read at the codec's rate.
    Audio(Box<dyn AudioSource>),
    /// A microphone, read at 48 kHz and processed on its way to the codec.
    Device {
        stream: Box<dyn AudioSource>,
        path: Box<CapturePath>,
    },
    /// Send back what we play out.
    Echo,
}

enum Sink {
    /// A recording or nothing, written at the codec's rate.
    Plain(Box<dyn AudioSink>),
    /// A loudspeaker, written at 48 kHz.
    Device {
        stream: Box<dyn AudioSink>,
        path: Box<PlayoutPath>,
    },
}

impl Sink {
    /// Play a decoded frame; a loudspeaker's 48 kHz frame is also the echo canceller's
    /// reference.
    fn write(
        &mut self,
        frame: &[i16],
        aec: Option<&mut EchoCanceller>,
    ) -> Result<(), audio::AudioError> {
        match self {
            Sink::Plain(sink) => sink.write(frame),
            Sink::Device { stream, path } => {
                let out = path.process(frame);
                if let Some(aec) = aec {
                    // Only a wrong frame length fails, and that is ruled out at start.
                    let _ = aec.render(out);
                }
                stream.write(out)
            }
        }
    }

    fn finish(&mut self) -> Result<(), audio::AudioError> {
        match self {
            Sink::Plain(sink) => sink.finish(),
            Sink::Device { stream, .. } => stream.finish(),
        }
    }
}

/// Quality figures gathered over the call for its summary (sampled once a second).
#[derive(Debug, Default)]
struct QualityTrack {
    samples: u32,
    jitter_sum: f64,
    jitter_max: f64,
    rtt: Vec<f64>,
    mos: Vec<f64>,
}

/// A call's running media.
pub(crate) struct CallMedia {
    session: MediaSession,
    socket: Arc<UdpSocket>,
    remote: SocketAddr,
    /// Where RTCP goes and from which socket (the RTP one when multiplexed).
    rtcp_socket: Arc<UdpSocket>,
    rtcp_remote: SocketAddr,
    /// RTCP goes over the RTP socket (multiplexed).
    rtcp_muxed: bool,
    source: Source,
    sink: Sink,
    capture: Vec<i16>,
    playout: Vec<i16>,
    packets: Vec<Vec<u8>>,
    codec: String,
    send_errors: u64,
    sink_failed: bool,
    /// What we send (after processing) and what we hear, for level events.
    tx_level: LevelMeter,
    rx_level: LevelMeter,
    started: Instant,
    next_sample: Instant,
    track: QualityTrack,
    /// What the session's direction allows: send RTP, play what arrives (hold stops both).
    send: bool,
    recv: bool,
    /// Silence instead of the source.
    muted: bool,
    /// The codec's audio rate (samples per second of `capture` and `playout`).
    rate: u32,
    /// A recording started on demand.
    recorder: Option<CallRecorder>,
    /// Echo cancellation, when both ends of the audio are sound devices.
    aec: Option<EchoCanceller>,
    /// We hold the call: the music on hold (looped; its samples and the next one) is sent
    /// instead of the source.
    held: bool,
    hold_music: Option<(Vec<i16>, usize)>,
}

/// How a call's media is set up besides the negotiated codec.
#[derive(Debug, Clone)]
pub(crate) struct MediaOptions {
    /// RNNoise on sound-device capture.
    pub noise_suppression: bool,
    /// Echo cancellation when both capture and playback are sound devices.
    pub echo_cancellation: bool,
    /// Music on hold, a WAV file (loaded at the call's rate when the media starts).
    pub hold_music: Option<std::path::PathBuf>,
    /// Ceiling of the adaptive jitter buffer.
    pub jitter_ceiling: Duration,
}

/// Ids for a new RTP stream (random per call).
pub(crate) struct StreamIds {
    pub ssrc: u32,
    pub seq: u16,
    pub timestamp: u32,
    /// Random bits for the RTCP CNAME and report timing.
    pub cname_seed: u64,
}

impl CallMedia {
    /// Start media for a negotiated session. Problems opening files or devices are returned
    /// as warnings, and silence / discard is used instead, so that the call itself goes on.
    pub(crate) fn start(
        neg: &Negotiated,
        audio: &CallAudio,
        socket: Arc<UdpSocket>,
        rtcp_socket: Option<Arc<UdpSocket>>,
        ids: StreamIds,
        options: MediaOptions,
    ) -> Result<(CallMedia, Vec<String>), String> {
        let mut warnings = Vec::new();
        let codec = CodecParams {
            name: neg.codec.name.clone(),
            payload_type: neg.codec.payload_type,
            clock_rate: neg.codec.clock_rate,
            bitrate: neg.remote_fmtp.max_average_bitrate,
        };
        let ptime_ms = neg.ptime.clamp(10, 200);
        let clock_rate = codec.clock_rate;
        let mut jitter = JitterConfig::new(clock_rate, ptime_ms);
        jitter.ceiling = options.jitter_ceiling;
        // Overflow (a hard limit) stays a little above what adaptation may ask for.
        jitter.max_delay = jitter
            .max_delay
            .max(options.jitter_ceiling + Duration::from_millis(60));
        let mut session = MediaSession::with_jitter(
            MediaConfig {
                codec,
                telephone_event_pt: neg.telephone_event_pt,
                ptime_ms,
                ssrc: ids.ssrc,
                initial_seq: ids.seq,
                initial_ts: ids.timestamp,
            },
            jitter,
        )
        .map_err(|e| format!("cannot start media: {e}"))?;
        // RTCP (RFC 3550): a random CNAME per call (RFC 7022), reports every ~5 s.
        let cname = format!("{:016x}@termphone", ids.cname_seed);
        session.enable_rtcp(
            RtcpConfig::new(ids.ssrc, cname, clock_rate, ids.cname_seed),
            Instant::now(),
        );
        let (rtcp_socket, rtcp_remote, rtcp_muxed) = match (neg.rtcp_mux, rtcp_socket) {
            (false, Some(s)) => (s, neg.remote_rtcp, false),
            _ => (socket.clone(), neg.remote, true),
        };
        // Samples per second of the codec's audio (frame length over ptime).
        let rate = (session.frame_samples() as u32 * 1000) / ptime_ms;
        // Sound devices run at the pipeline's 48 kHz, in frames of the same duration.
        let frame48 = (PIPELINE_RATE * ptime_ms / 1000) as usize;
        let source = match &audio.source {
            AudioSourceSpec::Echo => Source::Echo,
            AudioSourceSpec::Device(name) => {
                match audio::open_capture(name.as_deref(), PIPELINE_RATE) {
                    // A microphone picks up the room; a file or a tone is what the user chose
                    // to send, so only a microphone gets noise suppression.
                    Ok(stream) => Source::Device {
                        stream,
                        path: Box::new(CapturePath::new(rate, frame48, options.noise_suppression)),
                    },
                    Err(e) => {
                        warnings.push(e.to_string());
                        Source::Audio(Box::new(SilenceSource))
                    }
                }
            }
            spec => Source::Audio(open_source(spec, rate).unwrap_or_else(|e| {
                warnings.push(e);
                Box::new(SilenceSource)
            })),
        };
        let sink = match &audio.sink {
            AudioSinkSpec::Device(name) => {
                match audio::open_playback(name.as_deref(), PIPELINE_RATE) {
                    Ok(stream) => Sink::Device {
                        stream,
                        path: Box::new(PlayoutPath::new(rate, frame48)),
                    },
                    Err(e) => {
                        warnings.push(e.to_string());
                        Sink::Plain(Box::new(NullSink::default()))
                    }
                }
            }
            spec => Sink::Plain(open_sink(spec, rate).unwrap_or_else(|e| {
                warnings.push(e);
                Box::new(NullSink::default())
            })),
        };
        // A loudspeaker can be heard by the microphone next to it: cancel the echo when both
        // are sound devices (a file or a tone has no room around it). AEC3 works on 10 ms.
        let aec = match (&source, &sink) {
            (Source::Device { .. }, Sink::Device { .. }) if options.echo_cancellation => {
                if !frame48.is_multiple_of(crate::media::aec::CHUNK) {
                    warnings.push(format!(
                        "no echo cancellation: a {ptime_ms} ms packet time is not a multiple of 10 ms"
                    ));
                    None
                } else {
                    match EchoCanceller::new() {
                        Ok(aec) => Some(aec),
                        Err(e) => {
                            warnings.push(format!("no echo cancellation: {e}"));
                            None
                        }
                    }
                }
            }
            _ => None,
        };
        let hold_music =
            options
                .hold_music
                .as_ref()
                .and_then(|path| match audio::read_wav(path, rate) {
                    Ok(samples) if !samples.is_empty() => Some((samples, 0)),
                    Ok(_) => None,
                    Err(e) => {
                        warnings.push(format!("no music on hold: {e}"));
                        None
                    }
                });
        let n = session.frame_samples();
        let now = Instant::now();
        let media = CallMedia {
            session,
            socket,
            remote: neg.remote,
            rtcp_socket,
            rtcp_remote,
            rtcp_muxed,
            source,
            sink,
            capture: vec![0; n],
            playout: Vec::with_capacity(n),
            packets: Vec::new(),
            codec: neg.codec.name.clone(),
            send_errors: 0,
            sink_failed: false,
            tx_level: LevelMeter::new(),
            rx_level: LevelMeter::new(),
            started: now,
            next_sample: now + QUALITY_SAMPLE,
            track: QualityTrack::default(),
            send: neg.direction.sends(),
            recv: neg.direction.receives(),
            muted: false,
            rate,
            recorder: None,
            aec,
            held: false,
            hold_music,
        };
        Ok((media, warnings))
    }

    /// One media clock tick (ptime) comes in two halves, so that a conference can mix between
    /// calls: this first one decodes the frame the peer sent (jitter buffer, concealment) and
    /// plays it; its samples are then [`CallMedia::heard`] until the next tick. The first
    /// failure of the sink comes back as a warning. [`CallMedia::tick_send`] is the second.
    pub(crate) fn tick_playout(&mut self, now: Instant) -> Option<String> {
        let mut warning = None;
        // Playout first, so that echo sends back this tick's audio.
        self.playout.clear();
        if self.recv {
            self.session.playout(now, &mut self.playout);
        } else {
            self.playout.resize(self.capture.len(), 0);
        }
        if !self.sink_failed {
            if let Err(e) = self.sink.write(&self.playout, self.aec.as_mut()) {
                self.sink_failed = true;
                warning = Some(format!("audio output failed, discarding from now on: {e}"));
            }
        }
        warning
    }

    /// What this tick's playout holds (the peer's audio at the codec's rate).
    pub(crate) fn heard(&self) -> &[i16] {
        &self.playout
    }

    /// The codec's audio rate.
    pub(crate) fn rate(&self) -> u32 {
        self.rate
    }

    /// The second half of a tick: the source is read (plus `mix`, the other parties of a
    /// conference at this call's rate), recorded, encoded and sent.
    pub(crate) fn tick_send(&mut self, now: Instant, mix: Option<&[i16]>) -> Option<String> {
        let mut warning = None;
        let n = self.capture.len();
        match &mut self.source {
            Source::Echo => {
                self.capture.clear();
                self.capture.extend(
                    self.playout
                        .iter()
                        .copied()
                        .chain(std::iter::repeat(0))
                        .take(n),
                );
            }
            Source::Audio(src) => {
                if src.read(&mut self.capture) == SourceState::Ended {
                    self.capture.fill(0);
                }
            }
            Source::Device { stream, path } => {
                if stream.read(path.input()) == SourceState::Ended {
                    path.input().fill(0);
                }
                if let Some(aec) = &mut self.aec {
                    let _ = aec.capture(path.input());
                }
                path.process(&mut self.capture);
            }
        }
        if self.muted {
            self.capture.fill(0);
        }
        if self.held {
            // On hold: the music (looped), or silence; never the microphone.
            match &mut self.hold_music {
                Some((music, pos)) => {
                    for s in self.capture.iter_mut() {
                        *s = music[*pos];
                        *pos = (*pos + 1) % music.len();
                    }
                }
                None => self.capture.fill(0),
            }
        }
        if let Some(mix) = mix {
            for (s, m) in self.capture.iter_mut().zip(mix) {
                *s = s.saturating_add(*m);
            }
        }
        self.rx_level.add(&self.playout);
        self.tx_level.add(&self.capture);
        if let Some(r) = &mut self.recorder {
            if let Err(e) = r.write(&self.capture, &self.playout) {
                warning = Some(format!("recording stopped: {e}"));
                self.recorder = None; // finalized on drop
            }
        }
        self.packets.clear();
        if self.send {
            self.session
                .on_tick(now, Some(&self.capture), &mut self.packets);
        } else {
            self.session.pause_tick();
        }
        for pkt in &self.packets {
            if self.socket.try_send_to(pkt, self.remote).is_err() {
                self.send_errors += 1;
            }
        }
        if self.session.poll_rtcp_timeout().is_some_and(|t| t <= now) {
            if let Some(report) = self.session.handle_rtcp_timeout(now, SystemTime::now()) {
                let _ = self.rtcp_socket.try_send_to(&report, self.rtcp_remote);
            }
        }
        if now >= self.next_sample {
            self.next_sample = now + QUALITY_SAMPLE;
            self.sample_quality();
        }
        warning
    }

    /// Levels of what was sent and heard since the last call: (sent, heard).
    pub(crate) fn take_levels(&mut self) -> (Level, Level) {
        (self.tx_level.take(), self.rx_level.take())
    }

    /// Turn noise suppression on or off; `Err` when the call's audio is not from a microphone.
    pub(crate) fn set_noise_suppression(&mut self, on: bool) -> Result<(), String> {
        match &mut self.source {
            Source::Device { path, .. } => {
                path.set_noise_suppression(on);
                Ok(())
            }
            _ => Err("noise suppression applies to a microphone; this call's audio comes from a file, a tone or an echo".into()),
        }
    }

    fn sample_quality(&mut self) {
        let s = self.session.stats();
        let t = &mut self.track;
        t.samples += 1;
        t.jitter_sum += s.jitter_ms;
        t.jitter_max = t.jitter_max.max(s.jitter_ms);
        if let Some(q) = self.session.quality(0.0) {
            if let Some(rtt) = q.rtt_ms {
                t.rtt.push(rtt);
            }
            t.mos.push(q.mos);
        }
    }

    /// The call's media from start to end, in one record.
    pub(crate) fn summary(&self, now: Instant) -> CallSummary {
        let s = self.stats();
        let t = &self.track;
        let round1 = |v: f64| (v * 10.0).round() / 10.0;
        let round2 = |v: f64| (v * 100.0).round() / 100.0;
        let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        let min = |v: &[f64]| v.iter().copied().reduce(f64::min);
        let max = |v: &[f64]| v.iter().copied().reduce(f64::max);
        let expected = s.packets_received + s.lost;
        CallSummary {
            codec: s.codec.clone(),
            media_s: round1(now.saturating_duration_since(self.started).as_secs_f64()),
            packets_sent: s.packets_sent,
            packets_received: s.packets_received,
            lost: s.lost,
            loss_pct: if expected == 0 {
                0.0
            } else {
                round2(s.lost as f64 * 100.0 / expected as f64)
            },
            late: s.late,
            concealed: s.concealed,
            fec_recovered: s.fec_recovered,
            jitter_avg_ms: if t.samples == 0 {
                s.jitter_ms
            } else {
                round1(t.jitter_sum / f64::from(t.samples))
            },
            jitter_max_ms: round1(t.jitter_max.max(s.jitter_ms)),
            rtt_avg_ms: mean(&t.rtt).map(round1),
            rtt_max_ms: max(&t.rtt).map(round1),
            remote_loss_pct: s.remote_loss_pct,
            mos_avg: mean(&t.mos).map(round2),
            mos_min: min(&t.mos).map(round2),
        }
    }

    /// A datagram from the RTP or RTCP socket: RTCP by its packet type (RFC 5761 §4), else RTP.
    pub(crate) fn handle_datagram(&mut self, now: Instant, data: &[u8]) {
        if is_rtcp(data) {
            if let Err(e) = self.session.handle_rtcp(now, data) {
                tracing::debug!("bad RTCP from the peer: {e}");
            }
        } else if self.recv {
            self.session.handle_rtp(now, data);
        }
    }

    /// Follow a new offer/answer: whether RTP goes out and incoming audio is played, and where
    /// the peer now wants its RTP and RTCP.
    pub(crate) fn set_session(&mut self, send: bool, recv: bool, neg: &Negotiated) {
        self.send = send;
        self.recv = recv;
        self.remote = neg.remote;
        self.rtcp_remote = if self.rtcp_muxed {
            neg.remote
        } else {
            neg.remote_rtcp
        };
    }

    /// Record both directions from now on into `path`.
    pub(crate) fn start_recording(&mut self, path: &Path, stereo: bool) -> Result<(), String> {
        if let Some(r) = &self.recorder {
            return Err(format!("already recording to {}", r.path().display()));
        }
        self.recorder = Some(CallRecorder::create(path, self.rate, stereo)?);
        Ok(())
    }

    /// Stop recording; the recorder comes back to be finished (off the engine's loop).
    pub(crate) fn stop_recording(&mut self) -> Option<CallRecorder> {
        self.recorder.take()
    }

    /// We hold the call (`true`): the music on hold goes out instead of the source.
    pub(crate) fn set_held(&mut self, held: bool) {
        self.held = held;
    }

    /// Whether this call has music to play while held.
    pub(crate) fn has_hold_music(&self) -> bool {
        self.hold_music.is_some()
    }

    /// Send silence instead of the source (`true`), or the source again.
    pub(crate) fn set_muted(&mut self, muted: bool) {
        self.muted = muted;
    }

    /// The call is over: a last report with BYE (RFC 3550 §6.6).
    pub(crate) fn send_rtcp_bye(&mut self, now: Instant) {
        if let Some(bye) = self.session.rtcp_bye(now, SystemTime::now()) {
            let _ = self.rtcp_socket.try_send_to(&bye, self.rtcp_remote);
        }
    }

    pub(crate) fn send_dtmf(&mut self, now: Instant, digits: &str) {
        self.session.send_dtmf(digits, now);
    }

    pub(crate) fn poll_dtmf(&mut self) -> Option<char> {
        loop {
            match self.session.poll_event()? {
                MediaEvent::DtmfReceived(d) => return Some(d),
                #[allow(unreachable_patterns)]
                _ => continue,
            }
        }
    }

    pub(crate) fn stats(&self) -> CallMediaStats {
        let s = self.session.stats();
        // Device latency is not measured yet: 0 here, so the MOS is for the network path.
        let q = self.session.quality(0.0);
        let round1 = |v: f64| (v * 10.0).round() / 10.0;
        CallMediaStats {
            codec: self.codec.clone(),
            packets_sent: s.packets_sent,
            packets_received: s.packets_received,
            lost: s.lost,
            late: s.late,
            duplicates: s.duplicates,
            concealed: s.concealed,
            bad_packets: s.bad_packets,
            jitter_ms: s.jitter_ms,
            buffer_ms: (s.buffer_ms * 10.0).round() / 10.0,
            discarded: s.discarded,
            stretched: s.stretched,
            fec_recovered: s.fec_recovered,
            rtt_ms: q.and_then(|q| q.rtt_ms).map(round1),
            remote_loss_pct: q.and_then(|q| q.remote_loss_pct).map(round1),
            mos: q.map(|q| (q.mos * 100.0).round() / 100.0),
        }
    }

    /// Close the sink (finalizes a WAV file).
    pub(crate) fn finish(mut self) -> Option<String> {
        self.sink
            .finish()
            .err()
            .map(|e| format!("closing the recording failed: {e}"))
    }
}

/// How often the call's quality is sampled for its summary.
const QUALITY_SAMPLE: Duration = Duration::from_secs(1);

fn open_source(spec: &AudioSourceSpec, rate: u32) -> Result<Box<dyn AudioSource>, String> {
    Ok(match spec {
        // Echo and microphones are wired by the caller.
        AudioSourceSpec::Silence | AudioSourceSpec::Echo | AudioSourceSpec::Device(_) => {
            Box::new(SilenceSource)
        }
        AudioSourceSpec::File(path) => {
            Box::new(WavSource::open(path, rate).map_err(|e| e.to_string())?)
        }
        AudioSourceSpec::Tone { freq_hz, amplitude } => {
            Box::new(ToneSource::new(*freq_hz, *amplitude, rate))
        }
    })
}

fn open_sink(spec: &AudioSinkSpec, rate: u32) -> Result<Box<dyn AudioSink>, String> {
    Ok(match spec {
        // Loudspeakers are wired by the caller.
        AudioSinkSpec::Null | AudioSinkSpec::Device(_) => Box::new(NullSink::default()),
        AudioSinkSpec::File(path) => {
            Box::new(WavSink::create(path, rate).map_err(|e| e.to_string())?)
        }
    })
}
