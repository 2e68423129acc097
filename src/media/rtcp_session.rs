//! RTCP for one call, sans-IO (RFC 3550 §6 and Appendix A): receiver statistics of the peer's
//! RTP stream, our sender/receiver reports, the report schedule, round-trip time and the
//! peer's view of our stream.
//!
//! The caller feeds it every RTP packet received ([`RtcpSession::on_rtp_received`]) and sent
//! ([`RtcpSession::on_rtp_sent`]) and every RTCP datagram received
//! ([`RtcpSession::handle_rtcp`]); it calls [`RtcpSession::handle_timeout`] when
//! [`RtcpSession::poll_timeout`] says, with the wall-clock time for the NTP timestamps, and
//! sends what that returns. Nothing here reads a clock: monotonic time comes in as `now`,
//! wall-clock time as a `SystemTime` argument.
//!
//! One remote source is tracked (a two-party call). A packet with another SSRC starts a
//! candidate source that replaces the current one once it is valid (RFC 3550 A.1: two packets
//! in sequence), so a stray packet cannot reset the statistics.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::emodel::{self, CodecImpairment, EmodelInput};
use super::rtcp::{
    build_compound, compact_to_duration, duration_to_compact, parse_compound, Goodbye, NtpTime,
    ReceiverReport, ReportBlock, RtcpError, RtcpPacket, SdesChunk, SenderReport,
};
use super::rtp::ts_delta;

/// RFC 3550 A.1: packets in sequence before a new source is valid.
const MIN_SEQUENTIAL: u32 = 2;
/// RFC 3550 A.1: a sequence number at most this far ahead is a normal advance (with a gap).
const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: a sequence number at most this far behind is a duplicate or reordered packet.
const MAX_MISORDER: u16 = 100;
const RTP_SEQ_MOD: u32 = 1 << 16;
/// IPv4 + UDP header bytes counted in the average RTCP packet size (RFC 3550 §6.2).
const UDP_IP_OVERHEAD: usize = 28;
/// e − 3/2: RFC 3550 §6.3.1 / A.7 compensation for timer reconsideration.
const COMPENSATION: f64 = std::f64::consts::E - 1.5;
/// Bounds of a report interval whatever the configuration says (1 ms, one day).
const MIN_INTERVAL_FLOOR: f64 = 0.001;
const MAX_INTERVAL: f64 = 86_400.0;
/// Sent SRs remembered for the round-trip time (their NTP middle bits and send instants).
const SR_MEMORY: usize = 8;

/// Setup of an [`RtcpSession`].
#[derive(Debug, Clone, PartialEq)]
pub struct RtcpConfig {
    /// Our SSRC (the one our RTP carries).
    pub ssrc: u32,
    /// Our CNAME (RFC 7022: a per-call random identifier is fine).
    pub cname: String,
    /// Clock rate of the RTP we send (the SR's RTP timestamp, the peer's jitter in ms).
    pub clock_rate: u32,
    /// Session bandwidth in bit/s (RTP with headers, one direction); RTCP gets 5 % of it.
    pub session_bandwidth: u32,
    /// Minimum report interval (RFC 3550 §6.2: 5 s; halved for the first report).
    pub min_interval: Duration,
    /// Seed of the interval randomisation.
    pub seed: u64,
}

impl RtcpConfig {
    /// Defaults for a G.711-sized stream (80 kbit/s with headers), 5 s minimum interval.
    pub fn new(ssrc: u32, cname: impl Into<String>, clock_rate: u32, seed: u64) -> RtcpConfig {
        RtcpConfig {
            ssrc,
            cname: cname.into(),
            clock_rate,
            session_bandwidth: 80_000,
            min_interval: Duration::from_secs(5),
            seed,
        }
    }
}

/// RFC 3550 A.1 / A.3 / A.8 state of one remote source.
#[derive(Debug, Clone)]
struct Source {
    ssrc: u32,
    max_seq: u16,
    /// Shifted count of sequence number cycles (multiples of 65536).
    cycles: u64,
    base_seq: u64,
    bad_seq: u32,
    probation: u32,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Interarrival jitter in timestamp units.
    jitter: f64,
    /// Arrival and RTP timestamp of the previous packet (for A.8).
    last: Option<(Instant, u32)>,
    received_since_report: bool,
    /// Fraction lost computed at our last report.
    fraction_lost: u8,
    clock_rate: u32,
}

impl Source {
    fn new(ssrc: u32, seq: u16, clock_rate: u32) -> Source {
        let mut s = Source {
            ssrc,
            max_seq: seq.wrapping_sub(1),
            cycles: 0,
            base_seq: 0,
            bad_seq: RTP_SEQ_MOD + 1,
            probation: MIN_SEQUENTIAL,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            jitter: 0.0,
            last: None,
            received_since_report: false,
            fraction_lost: 0,
            clock_rate,
        };
        s.init_seq(seq);
        s.max_seq = seq.wrapping_sub(1);
        s
    }

    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u64::from(seq);
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
        self.last = None;
    }

    fn valid(&self) -> bool {
        self.probation == 0
    }

    /// RFC 3550 A.1 `update_seq`: false when the packet is not (yet) counted.
    fn update_seq(&mut self, seq: u16) -> bool {
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    self.received += 1;
                    return true;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return false;
        }
        if udelta < MAX_DROPOUT {
            // in order, with a permissible gap
            if seq < self.max_seq {
                self.cycles += u64::from(RTP_SEQ_MOD);
            }
            self.max_seq = seq;
        } else if u32::from(udelta) <= RTP_SEQ_MOD - u32::from(MAX_MISORDER) {
            // a very large jump: two sequential packets mean the sender restarted
            if u32::from(seq) == self.bad_seq {
                self.init_seq(seq);
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (RTP_SEQ_MOD - 1);
                return false;
            }
        }
        // else: duplicate or reordered packet, counted as received
        self.received += 1;
        true
    }

    fn extended_max(&self) -> u64 {
        self.cycles + u64::from(self.max_seq)
    }

    fn expected(&self) -> u64 {
        (self.extended_max() + 1).saturating_sub(self.base_seq)
    }

    fn cumulative_lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    /// RFC 3550 A.8, with the transit difference taken exactly from the arrival instants
    /// (no rounding of the arrival time to timestamp units).
    fn update_jitter(&mut self, now: Instant, timestamp: u32, clock_rate: u32) {
        if clock_rate == 0 {
            return;
        }
        if clock_rate != self.clock_rate {
            // a new clock: the old transit times say nothing about the new ones
            self.clock_rate = clock_rate;
            self.last = None;
        }
        if let Some((prev_at, prev_ts)) = self.last {
            let arrival = match now.checked_duration_since(prev_at) {
                Some(d) => d.as_secs_f64(),
                None => -prev_at.duration_since(now).as_secs_f64(),
            };
            let d = arrival * f64::from(clock_rate) - f64::from(ts_delta(prev_ts, timestamp));
            self.jitter += (d.abs() - self.jitter) / 16.0;
        }
        self.last = Some((now, timestamp));
    }

    /// RFC 3550 A.3: the report block, advancing the interval counters.
    fn report_block(&mut self, last_sr: Option<&LastSr>, now: Instant) -> ReportBlock {
        let expected = self.expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        self.expected_prior = expected;
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.received_prior = self.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        self.fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64).min(255) as u8
        };
        self.received_since_report = false;
        let (lsr, dlsr) = match last_sr {
            Some(sr) if sr.ssrc == self.ssrc => (
                sr.ntp.middle32(),
                duration_to_compact(now.saturating_duration_since(sr.at)),
            ),
            _ => (0, 0),
        };
        ReportBlock {
            ssrc: self.ssrc,
            fraction_lost: self.fraction_lost,
            cumulative_lost: self.cumulative_lost().clamp(-0x80_0000, 0x7f_ffff) as i32,
            extended_highest_seq: self.extended_max() as u32,
            jitter: self.jitter as u32,
            last_sr: lsr,
            delay_since_last_sr: dlsr,
        }
    }

    fn stats(&self) -> ReceptionStats {
        ReceptionStats {
            ssrc: self.ssrc,
            extended_highest_seq: self.extended_max() as u32,
            expected: self.expected(),
            received: self.received,
            cumulative_lost: self.cumulative_lost(),
            fraction_lost: self.fraction_lost,
            jitter: self.jitter,
            jitter_ms: if self.clock_rate == 0 {
                0.0
            } else {
                self.jitter * 1000.0 / f64::from(self.clock_rate)
            },
        }
    }
}

/// The last SR received from the peer.
#[derive(Debug, Clone, Copy)]
struct LastSr {
    ssrc: u32,
    ntp: NtpTime,
    at: Instant,
}

/// What we measured of the peer's RTP stream (RFC 3550 A.1/A.3/A.8).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReceptionStats {
    /// The source.
    pub ssrc: u32,
    /// Extended highest sequence number received.
    pub extended_highest_seq: u32,
    /// Packets expected since the source became valid.
    pub expected: u64,
    /// Packets received since then (duplicates included, as RFC 3550 counts them).
    pub received: u64,
    /// Expected minus received (negative when duplicates outnumber losses).
    pub cumulative_lost: i64,
    /// Fraction lost in the interval before our last report, in 1/256.
    pub fraction_lost: u8,
    /// Interarrival jitter in timestamp units.
    pub jitter: f64,
    /// The same in milliseconds.
    pub jitter_ms: f64,
}

impl ReceptionStats {
    /// Cumulative loss as a percentage of the packets expected (0 when nothing was expected or
    /// duplicates outnumber losses).
    pub fn loss_pct(&self) -> f64 {
        if self.expected == 0 || self.cumulative_lost <= 0 {
            0.0
        } else {
            self.cumulative_lost as f64 * 100.0 / self.expected as f64
        }
    }
}

/// The peer's report about our stream (its report block with our SSRC), and the round-trip time
/// it gave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemoteReport {
    /// When it arrived.
    pub at: Instant,
    /// The block as received.
    pub block: ReportBlock,
    /// Fraction lost in percent.
    pub fraction_lost_pct: f64,
    /// Interarrival jitter of our stream at the peer, in ms (our clock rate).
    pub jitter_ms: f64,
    /// Round-trip time from this block's LSR/DLSR (None when the peer had no SR of ours yet).
    pub rtt: Option<Duration>,
}

/// What the peer said about itself in its last SR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteSenderInfo {
    /// Its SSRC.
    pub ssrc: u32,
    /// When the SR arrived.
    pub at: Instant,
    /// NTP timestamp of the SR.
    pub ntp: NtpTime,
    /// RTP timestamp of the same instant.
    pub rtp_timestamp: u32,
    /// Packets sent.
    pub packet_count: u32,
    /// Payload octets sent.
    pub octet_count: u32,
}

/// Something a received RTCP datagram told us.
#[derive(Debug, Clone, PartialEq)]
pub enum RtcpEvent {
    /// A sender report from the peer.
    SenderReport(RemoteSenderInfo),
    /// A report block about our stream (with the round-trip time when it can be computed).
    ReportAboutUs(RemoteReport),
    /// The peer's CNAME (first time seen, or changed).
    Cname {
        /// The source.
        ssrc: u32,
        /// Its CNAME.
        cname: String,
    },
    /// The peer left (RTCP BYE).
    Bye {
        /// The sources leaving.
        sources: Vec<u32>,
        /// Reason, if given (lossy UTF-8).
        reason: Option<String>,
    },
}

/// Call-quality summary for stats events: what we receive, what the peer says it receives,
/// the round-trip time and the E-model estimate (ITU-T G.107) of what our user hears.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallQuality {
    /// Packets of the peer's stream lost so far, percent of those expected (RFC 3550
    /// cumulative, duplicates netted out, never negative).
    pub loss_pct: f64,
    /// Fraction lost in the last report interval, percent.
    pub interval_loss_pct: f64,
    /// Interarrival jitter of the peer's stream, ms.
    pub jitter_ms: f64,
    /// Round-trip time from the last RTCP report about us, ms.
    pub rtt_ms: Option<f64>,
    /// The peer's fraction lost of our stream (last report), percent.
    pub remote_loss_pct: Option<f64>,
    /// The peer's cumulative count of our packets lost.
    pub remote_cumulative_lost: Option<i32>,
    /// The peer's interarrival jitter of our stream, ms.
    pub remote_jitter_ms: Option<f64>,
    /// Mouth-to-ear delay fed to the E-model, ms: half the RTT (0 while unknown) plus the
    /// caller's local delay.
    pub one_way_delay_ms: f64,
    /// Effective loss fed to the E-model, percent: `loss_pct` plus the caller's discards.
    pub effective_loss_pct: f64,
    /// E-model transmission rating R (G.107), 0..=100.
    pub r_factor: f64,
    /// MOS-CQE from R (G.107 Annex B), 1..=4.5.
    pub mos: f64,
}

/// What the E-model needs besides the RTCP measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityInputs {
    /// The codec's impairment (see [`CodecImpairment::for_codec`]).
    pub codec: CodecImpairment,
    /// Delay added at our end, ms: jitter buffer, packetisation (ptime), codec look-ahead,
    /// sound device. Added to half the RTT for the mouth-to-ear delay.
    pub local_delay_ms: f64,
    /// Packets discarded after arrival (late for the jitter buffer), percent of those expected;
    /// G.107's Ppl counts them as lost.
    pub discard_pct: f64,
    /// Burst ratio BurstR of G.107: mean length of the observed loss bursts over the mean
    /// length random loss would give (1 for random loss, more when losses cluster).
    pub burst_ratio: f64,
}

impl QualityInputs {
    /// Inputs with no discards and random loss (burst ratio 1).
    pub fn new(codec: CodecImpairment, local_delay_ms: f64) -> QualityInputs {
        QualityInputs {
            codec,
            local_delay_ms,
            discard_pct: 0.0,
            burst_ratio: 1.0,
        }
    }
}

/// RTCP for one call (see the module docs).
#[derive(Debug)]
pub struct RtcpSession {
    cfg: RtcpConfig,
    rng: StdRng,
    source: Option<Source>,
    /// A new SSRC on probation, replacing `source` once valid.
    candidate: Option<Source>,
    last_sr: Option<LastSr>,
    remote_sender: Option<RemoteSenderInfo>,
    remote_report: Option<RemoteReport>,
    rtt: Option<Duration>,
    remote_cname: Option<String>,
    bye_received: bool,
    // what we sent
    packets_sent: u64,
    octets_sent: u64,
    last_sent: Option<(Instant, u32)>,
    sent_since_report: bool,
    sent_in_previous_interval: bool,
    sent_srs: VecDeque<(u32, Instant)>,
    wall_anchor: Option<(Instant, NtpTime)>,
    // peer activity for the sender count
    peer_sent_since_report: bool,
    peer_sent_in_previous_interval: bool,
    peer_seen: bool,
    // RFC 3550 §6.3 schedule
    tp: Instant,
    tn: Instant,
    initial: bool,
    avg_rtcp_size: f64,
    closed: bool,
    reports_sent: u64,
}

impl RtcpSession {
    /// A session starting at `now`; the first report is due after half the minimum interval,
    /// randomised (RFC 3550 §6.2).
    pub fn new(cfg: RtcpConfig, now: Instant) -> RtcpSession {
        let rng = StdRng::seed_from_u64(cfg.seed);
        // the first packet's probable size: RR with one block + SDES CNAME
        let avg = (4 + 4 + 24 + 4 + 4 + 2 + cfg.cname.len().min(255) + 4 + UDP_IP_OVERHEAD) as f64;
        let mut s = RtcpSession {
            cfg,
            rng,
            source: None,
            candidate: None,
            last_sr: None,
            remote_sender: None,
            remote_report: None,
            rtt: None,
            remote_cname: None,
            bye_received: false,
            packets_sent: 0,
            octets_sent: 0,
            last_sent: None,
            sent_since_report: false,
            sent_in_previous_interval: false,
            sent_srs: VecDeque::with_capacity(SR_MEMORY),
            wall_anchor: None,
            peer_sent_since_report: false,
            peer_sent_in_previous_interval: false,
            peer_seen: false,
            tp: now,
            tn: now,
            initial: true,
            avg_rtcp_size: avg,
            closed: false,
            reports_sent: 0,
        };
        let t = s.interval();
        s.tn = now + t;
        s
    }

    /// The configuration.
    pub fn config(&self) -> &RtcpConfig {
        &self.cfg
    }

    /// RFC 3550 A.7 `rtcp_interval` for this session, randomised and compensated.
    fn interval(&mut self) -> Duration {
        let members = if self.peer_seen && !self.bye_received {
            2.0
        } else {
            1.0
        };
        let we_sent = self.sent_since_report || self.sent_in_previous_interval;
        let peer_sends = self.peer_sent_since_report || self.peer_sent_in_previous_interval;
        let senders = f64::from(u8::from(we_sent) + u8::from(peer_sends && !self.bye_received));
        let mut rtcp_bw = f64::from(self.cfg.session_bandwidth) / 8.0 * 0.05;
        let mut n = members;
        if senders <= members * 0.25 {
            if we_sent {
                rtcp_bw *= 0.25;
                n = senders;
            } else {
                rtcp_bw *= 0.75;
                n -= senders;
            }
        }
        let mut min = self.cfg.min_interval.as_secs_f64();
        if self.initial {
            min /= 2.0;
        }
        let td = if rtcp_bw > 0.0 {
            (self.avg_rtcp_size * n / rtcp_bw).max(min)
        } else {
            min
        };
        let t = td * self.rng.random_range(0.5..1.5) / COMPENSATION;
        // a zero or absurd configured minimum must neither spin nor overflow `Instant`
        Duration::from_secs_f64(t.clamp(MIN_INTERVAL_FLOOR, MAX_INTERVAL))
    }

    /// A valid RTP packet from the peer arrived at `now`: sequence number bookkeeping (RFC 3550
    /// A.1) and interarrival jitter (A.8) in units of `clock_rate`. Returns false when the
    /// packet is not counted (source on probation, or a sequence jump waiting for confirmation).
    pub fn on_rtp_received(
        &mut self,
        now: Instant,
        ssrc: u32,
        seq: u16,
        timestamp: u32,
        clock_rate: u32,
    ) -> bool {
        self.receive(now, ssrc, seq, Some((timestamp, clock_rate)))
    }

    /// Like [`RtcpSession::on_rtp_received`] for packets whose timestamp does not advance with
    /// their sending time (RFC 4733 telephone-events repeat the event's start): counted for
    /// loss, left out of the jitter.
    pub fn on_rtp_received_untimed(&mut self, now: Instant, ssrc: u32, seq: u16) -> bool {
        self.receive(now, ssrc, seq, None)
    }

    fn receive(&mut self, now: Instant, ssrc: u32, seq: u16, timing: Option<(u32, u32)>) -> bool {
        self.peer_seen = true;
        let rate = timing.map_or(0, |(_, r)| r);
        let src = match &mut self.source {
            Some(s) if s.ssrc == ssrc => {
                if !s.update_seq(seq) {
                    return false;
                }
                s
            }
            _ => {
                let cand = match &mut self.candidate {
                    Some(c) if c.ssrc == ssrc => c,
                    other => other.insert(Source::new(ssrc, seq, rate)),
                };
                if !cand.update_seq(seq) {
                    return false;
                }
                // valid now (this packet counted): it replaces the old source, RFC 3550 A.1
                let Some(valid) = self.candidate.take() else {
                    return false;
                };
                if self.last_sr.is_some_and(|sr| sr.ssrc != ssrc) {
                    self.last_sr = None;
                }
                self.source.insert(valid)
            }
        };
        src.received_since_report = true;
        self.peer_sent_since_report = true;
        if let Some((ts, rate)) = timing {
            src.update_jitter(now, ts, rate);
        }
        true
    }

    /// We sent an RTP packet at `now` with this timestamp and payload size (the SR's sender
    /// information counts them; the RTP timestamp anchors the SR's timestamp).
    pub fn on_rtp_sent(&mut self, now: Instant, timestamp: u32, payload_octets: usize) {
        self.packets_sent += 1;
        self.octets_sent += payload_octets as u64;
        self.last_sent = Some((now, timestamp));
        self.sent_since_report = true;
    }

    /// An RTCP datagram arrived at `now`. Reports about our SSRC give the peer's view of our
    /// stream and the round-trip time (RFC 3550 §6.4.1: A − LSR − DLSR); its SR is remembered
    /// for the LSR/DLSR of our next report. Unknown packet types are skipped.
    pub fn handle_rtcp(&mut self, now: Instant, data: &[u8]) -> Result<Vec<RtcpEvent>, RtcpError> {
        let packets = parse_compound(data)?;
        self.avg_rtcp_size += ((data.len() + UDP_IP_OVERHEAD) as f64 - self.avg_rtcp_size) / 16.0;
        let mut events = Vec::new();
        for p in packets {
            match p {
                RtcpPacket::SenderReport(sr) => {
                    if sr.ssrc == self.cfg.ssrc {
                        continue; // our own report looped back
                    }
                    self.peer_seen = true;
                    self.last_sr = Some(LastSr {
                        ssrc: sr.ssrc,
                        ntp: sr.ntp,
                        at: now,
                    });
                    let info = RemoteSenderInfo {
                        ssrc: sr.ssrc,
                        at: now,
                        ntp: sr.ntp,
                        rtp_timestamp: sr.rtp_timestamp,
                        packet_count: sr.packet_count,
                        octet_count: sr.octet_count,
                    };
                    self.remote_sender = Some(info);
                    events.push(RtcpEvent::SenderReport(info));
                    self.take_blocks(now, &sr.reports, &mut events);
                }
                RtcpPacket::ReceiverReport(rr) => {
                    if rr.ssrc == self.cfg.ssrc {
                        continue;
                    }
                    self.peer_seen = true;
                    self.take_blocks(now, &rr.reports, &mut events);
                }
                RtcpPacket::SourceDescription(chunks) => {
                    for c in chunks {
                        if c.ssrc == self.cfg.ssrc {
                            continue;
                        }
                        if let Some(cname) = c.cname_str() {
                            if self.remote_cname.as_deref() != Some(cname) {
                                self.remote_cname = Some(cname.to_owned());
                                events.push(RtcpEvent::Cname {
                                    ssrc: c.ssrc,
                                    cname: cname.to_owned(),
                                });
                            }
                        }
                    }
                }
                RtcpPacket::Goodbye(bye) => {
                    if bye.sources.iter().all(|&s| s == self.cfg.ssrc) {
                        continue;
                    }
                    self.bye_received = true;
                    events.push(RtcpEvent::Bye {
                        reason: bye
                            .reason
                            .as_ref()
                            .map(|r| String::from_utf8_lossy(r).into_owned()),
                        sources: bye.sources,
                    });
                }
                RtcpPacket::Other { .. } => {}
            }
        }
        Ok(events)
    }

    fn take_blocks(&mut self, now: Instant, blocks: &[ReportBlock], events: &mut Vec<RtcpEvent>) {
        for b in blocks.iter().filter(|b| b.ssrc == self.cfg.ssrc) {
            let rtt = self.rtt_of(now, b.last_sr, b.delay_since_last_sr);
            let report = RemoteReport {
                at: now,
                block: *b,
                fraction_lost_pct: f64::from(b.fraction_lost) * 100.0 / 256.0,
                jitter_ms: if self.cfg.clock_rate == 0 {
                    0.0
                } else {
                    f64::from(b.jitter) * 1000.0 / f64::from(self.cfg.clock_rate)
                },
                rtt,
            };
            if rtt.is_some() {
                self.rtt = rtt;
            }
            self.remote_report = Some(report);
            events.push(RtcpEvent::ReportAboutUs(report));
        }
    }

    /// RFC 3550 §6.4.1: RTT = A − LSR − DLSR, in 1/65536 s. A − LSR is taken from the instant
    /// the SR with that LSR left (remembered for the last few SRs), so a wall-clock step between
    /// our SR and the peer's report does not skew it; for older SRs A comes from the last
    /// wall-clock reading plus the monotonic time since.
    fn rtt_of(&self, now: Instant, lsr: u32, dlsr: u32) -> Option<Duration> {
        if lsr == 0 {
            return None;
        }
        let a_minus_lsr = match self.sent_srs.iter().rev().find(|(mid, _)| *mid == lsr) {
            Some((_, at)) => duration_to_compact(now.saturating_duration_since(*at)),
            None => {
                let (anchor_at, anchor_ntp) = self.wall_anchor?;
                let a = anchor_ntp
                    .wrapping_add(now.saturating_duration_since(anchor_at))
                    .middle32();
                a.wrapping_sub(lsr)
            }
        };
        let rtt = a_minus_lsr.wrapping_sub(dlsr) as i32;
        // negative: the peer's DLSR is off, or the LSR is not ours
        (rtt >= 0).then(|| compact_to_duration(rtt as u32))
    }

    /// When [`RtcpSession::handle_timeout`] should next be called (None after BYE).
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.closed).then_some(self.tn)
    }

    /// The report timer at `now` (RFC 3550 §6.3.6 with reconsideration): the compound packet
    /// to send, or None when the reconsidered time is still ahead (call again at the new
    /// [`RtcpSession::poll_timeout`]). The packet is an SR when we sent RTP since the report
    /// before last (RFC 3550 §6.4), else an RR, with a report block on the peer's stream when
    /// it sent since our last report, then SDES with our CNAME. `wall` is the wall-clock time
    /// now, for the SR's NTP timestamp.
    pub fn handle_timeout(&mut self, now: Instant, wall: SystemTime) -> Option<Vec<u8>> {
        if self.closed || now < self.tn {
            return None;
        }
        let t = self.interval();
        if self.tp + t > now {
            // reconsideration: not yet
            self.tn = self.tp + t;
            return None;
        }
        let packet = self.build_report(now, wall, None);
        self.tp = now;
        self.initial = false;
        let t = self.interval();
        self.tn = now + t;
        Some(packet)
    }

    /// Leave: the final compound packet (report, SDES, BYE with `reason`). Stops the timer.
    pub fn bye(&mut self, now: Instant, wall: SystemTime, reason: Option<&str>) -> Vec<u8> {
        self.closed = true;
        self.build_report(now, wall, Some(reason))
    }

    fn build_report(
        &mut self,
        now: Instant,
        wall: SystemTime,
        bye: Option<Option<&str>>,
    ) -> Vec<u8> {
        let ntp = NtpTime::from_system_time(wall);
        self.wall_anchor = Some((now, ntp));
        let we_sent = self.sent_since_report || self.sent_in_previous_interval;
        let mut reports = Vec::new();
        if let Some(src) = &mut self.source {
            if src.valid() && src.received_since_report {
                reports.push(src.report_block(self.last_sr.as_ref(), now));
            }
        }
        let mut packets = Vec::with_capacity(3);
        if we_sent && self.last_sent.is_some() {
            let rtp_timestamp = match self.last_sent {
                Some((at, ts)) => {
                    let elapsed = now.saturating_duration_since(at).as_secs_f64();
                    // f64 -> u64 saturates; the truncation to u32 wraps as RTP timestamps do
                    let ticks = (elapsed * f64::from(self.cfg.clock_rate)).round() as u64;
                    ts.wrapping_add(ticks as u32)
                }
                None => 0,
            };
            if self.sent_srs.len() == SR_MEMORY {
                self.sent_srs.pop_front();
            }
            self.sent_srs.push_back((ntp.middle32(), now));
            packets.push(RtcpPacket::SenderReport(SenderReport {
                ssrc: self.cfg.ssrc,
                ntp,
                rtp_timestamp,
                packet_count: self.packets_sent as u32,
                octet_count: self.octets_sent as u32,
                reports,
                extension: Vec::new(),
            }));
        } else {
            packets.push(RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: self.cfg.ssrc,
                reports,
                extension: Vec::new(),
            }));
        }
        packets.push(RtcpPacket::SourceDescription(vec![SdesChunk::cname(
            self.cfg.ssrc,
            &self.cfg.cname,
        )]));
        if let Some(reason) = bye {
            packets.push(RtcpPacket::Goodbye(Goodbye {
                sources: vec![self.cfg.ssrc],
                reason: reason.map(|r| r.as_bytes().to_vec()),
            }));
        }
        self.sent_in_previous_interval = self.sent_since_report;
        self.sent_since_report = false;
        self.peer_sent_in_previous_interval = self.peer_sent_since_report;
        self.peer_sent_since_report = false;
        self.reports_sent += 1;
        let bytes = build_compound(&packets);
        self.avg_rtcp_size += ((bytes.len() + UDP_IP_OVERHEAD) as f64 - self.avg_rtcp_size) / 16.0;
        bytes
    }

    /// Compound reports sent so far (BYE included).
    pub fn reports_sent(&self) -> u64 {
        self.reports_sent
    }

    /// What we measured of the peer's stream (None until a source is valid).
    pub fn reception(&self) -> Option<ReceptionStats> {
        self.source
            .as_ref()
            .filter(|s| s.valid())
            .map(Source::stats)
    }

    /// The peer's last report about our stream.
    pub fn remote_report(&self) -> Option<RemoteReport> {
        self.remote_report
    }

    /// The last round-trip time measured (kept when a later report carries no LSR).
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// The peer's last sender report.
    pub fn remote_sender(&self) -> Option<RemoteSenderInfo> {
        self.remote_sender
    }

    /// The peer's CNAME, once its SDES arrived.
    pub fn remote_cname(&self) -> Option<&str> {
        self.remote_cname.as_deref()
    }

    /// True once the peer sent an RTCP BYE.
    pub fn bye_received(&self) -> bool {
        self.bye_received
    }

    /// RTP packets and payload octets we sent.
    pub fn sent(&self) -> (u64, u64) {
        (self.packets_sent, self.octets_sent)
    }

    /// The call-quality summary now: RTCP measurements plus the E-model (G.107) rating of
    /// what our user hears (the peer's stream: our loss, half the RTT plus our local delay).
    pub fn call_quality(&self, inputs: &QualityInputs) -> CallQuality {
        let rx = self.reception();
        let loss_pct = rx.map_or(0.0, |r| r.loss_pct());
        let rtt_ms = self.rtt().map(|d| d.as_secs_f64() * 1000.0);
        let one_way_delay_ms = rtt_ms.unwrap_or(0.0) / 2.0 + inputs.local_delay_ms.max(0.0);
        let effective_loss_pct = (loss_pct + inputs.discard_pct.max(0.0)).min(100.0);
        let r = emodel::r_factor(&EmodelInput {
            one_way_delay_ms,
            loss_pct: effective_loss_pct,
            burst_ratio: inputs.burst_ratio,
            codec: inputs.codec,
        });
        CallQuality {
            loss_pct,
            interval_loss_pct: rx.map_or(0.0, |r| f64::from(r.fraction_lost) * 100.0 / 256.0),
            jitter_ms: rx.map_or(0.0, |r| r.jitter_ms),
            rtt_ms,
            remote_loss_pct: self.remote_report.map(|r| r.fraction_lost_pct),
            remote_cumulative_lost: self.remote_report.map(|r| r.block.cumulative_lost),
            remote_jitter_ms: self.remote_report.map(|r| r.jitter_ms),
            one_way_delay_ms,
            effective_loss_pct,
            r_factor: r,
            mos: emodel::mos_from_r(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_source(seq: u16) -> Source {
        let mut s = Source::new(1, seq, 8000);
        assert!(!s.update_seq(seq));
        assert!(s.update_seq(seq.wrapping_add(1)));
        s
    }

    #[test]
    fn probation_needs_two_in_sequence() {
        let mut s = Source::new(1, 10, 8000);
        assert!(!s.update_seq(10));
        assert!(!s.update_seq(12)); // out of sequence: probation starts over
        assert!(!s.valid());
        assert!(s.update_seq(13));
        assert!(s.valid());
        assert_eq!((s.base_seq, s.received, s.expected()), (13, 1, 1));
    }

    #[test]
    fn dropout_and_misorder_limits() {
        let mut s = valid_source(100);
        // a gap just under MAX_DROPOUT is a normal advance
        assert!(s.update_seq(101 + MAX_DROPOUT - 1));
        assert_eq!(s.cumulative_lost(), i64::from(MAX_DROPOUT) - 2);
        // less than MAX_MISORDER behind is a late packet; MAX_MISORDER behind is a jump (A.1:
        // udelta <= RTP_SEQ_MOD - MAX_MISORDER)
        let max = s.max_seq;
        assert!(s.update_seq(max.wrapping_sub(MAX_MISORDER - 1)));
        assert!(!s.update_seq(max.wrapping_sub(MAX_MISORDER)));
        // the jump is confirmed by the next sequence number, across the wrap
        let mut s = valid_source(60_000);
        assert!(!s.update_seq(65_535));
        assert!(s.update_seq(0));
        assert_eq!(
            (s.base_seq, s.max_seq, s.cycles, s.expected()),
            (0, 0, 0, 1)
        );
    }

    #[test]
    fn fraction_lost_per_interval() {
        let mut s = valid_source(0); // 1 received, seq 1
        for seq in [2u16, 3, 5, 6, 8] {
            s.update_seq(seq); // 4 and 7 lost
        }
        let now = crate::test_epoch();
        let b = s.report_block(None, now);
        assert_eq!((b.cumulative_lost, b.fraction_lost), (2, 64)); // 2 of 8: 2 * 256 / 8
        assert_eq!((b.last_sr, b.delay_since_last_sr), (0, 0));
        for seq in 9u16..=12 {
            s.update_seq(seq);
        }
        let b = s.report_block(None, now);
        assert_eq!((b.cumulative_lost, b.fraction_lost), (2, 0));
        // duplicates make an interval's loss negative: reported as 0
        s.update_seq(12);
        s.update_seq(12);
        let b = s.report_block(None, now);
        assert_eq!((b.cumulative_lost, b.fraction_lost), (0, 0));
    }

    #[test]
    fn cumulative_loss_is_clamped_in_the_block() {
        let mut s = valid_source(0);
        // gaps of 2998 (each just inside MAX_DROPOUT) until more than 2^23 are lost
        for i in 1..=3000u32 {
            assert!(s.update_seq((1 + i * 2999) as u16));
        }
        assert!(s.cumulative_lost() > 0x7f_ffff);
        let b = s.report_block(None, crate::test_epoch());
        assert_eq!(b.cumulative_lost, 0x7f_ffff);
        assert_eq!(b.fraction_lost, 255);
    }
}
