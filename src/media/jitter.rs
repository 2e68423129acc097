//! Jitter buffer: reorders RTP packets and releases one frame per playout tick, driven by `now`.
//!
//! Fixed target delay for now: playout starts `target_delay` after the first packet arrived and
//! then advances one frame of RTP timestamp per [`JitterBuffer::pop`] call (the caller ticks every
//! frame duration). Packets are matched to playout slots by timestamp, so gaps in the audio's
//! sequence numbers (telephone-event packets, DTX) are not mistaken for misordering.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::rtp::{extend_seq, extend_ts, RtpPacket};

/// Tuning of a [`JitterBuffer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JitterConfig {
    /// RTP timestamp units per playout frame (160 for 8 kHz, 20 ms).
    pub frame_ts: u32,
    /// RTP clock rate (timestamp units per second).
    pub clock_rate: u32,
    /// Wall time of one playout frame (the caller's tick).
    pub frame_duration: Duration,
    /// Delay from the first packet's arrival to the start of playout.
    pub target_delay: Duration,
    /// Buffered audio beyond this is dropped (oldest first) back down to the target delay.
    pub max_delay: Duration,
    /// Consecutive missing frames answered with `Conceal` before switching to `Silence`.
    pub max_conceal_frames: u32,
    /// Consecutive missing frames with an empty buffer after which playout stops and restarts
    /// (with the target delay) on the next packet.
    pub idle_after_frames: u32,
    /// A sequence number this far ahead of the highest seen resets the buffer.
    pub max_seq_jump: u16,
    /// A sequence number this far behind the highest seen resets the buffer (RFC 3550 A.1).
    pub max_misorder: u16,
    /// A timestamp this far ahead of the playout point resets the buffer.
    pub max_ts_jump: Duration,
    /// This many late packets in a row resets the buffer (the sender's clock moved back).
    pub max_late_run: u32,
}

impl JitterConfig {
    /// Defaults for a clock rate and frame length: 60 ms target, 300 ms max, 5 frames of
    /// concealment, idle after 1 s.
    pub fn new(clock_rate: u32, ptime_ms: u32) -> JitterConfig {
        let ptime_ms = ptime_ms.max(1);
        JitterConfig {
            frame_ts: clock_rate / 1000 * ptime_ms,
            clock_rate,
            frame_duration: Duration::from_millis(u64::from(ptime_ms)),
            target_delay: Duration::from_millis(60),
            max_delay: Duration::from_millis(300),
            max_conceal_frames: 5,
            idle_after_frames: (1000 / ptime_ms).max(1),
            max_seq_jump: 3000,
            max_misorder: 100,
            max_ts_jump: Duration::from_secs(2),
            max_late_run: 10,
        }
    }

    fn ts_of(&self, d: Duration) -> i64 {
        (d.as_micros() as i64).saturating_mul(i64::from(self.clock_rate)) / 1_000_000
    }
}

/// What to play for one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// The packet for this slot: decode its payload.
    Frame(RtpPacket),
    /// The packet for this slot is missing: conceal (codec PLC).
    Conceal,
    /// Nothing to play: not started yet, or after a gap longer than concealment covers.
    Silence,
}

/// Counters of a [`JitterBuffer`]; all cumulative over resets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets pushed (including duplicates and late ones).
    pub received: u64,
    /// Packets dropped because that sequence number was buffered or played already.
    pub duplicates: u64,
    /// Packets dropped because their slot had already been played (or skipped).
    pub late: u64,
    /// Sequence numbers passed by playout that never arrived (late arrivals and
    /// sequence numbers used by other payload types, see [`JitterBuffer::note_other`], excluded).
    pub lost: u64,
    /// `Conceal` results handed out.
    pub concealed: u64,
    /// Buffer resets: new SSRC, sequence/timestamp jump, run of late packets.
    pub resets: u64,
    /// Packets dropped because more than `max_delay` was buffered.
    pub overflow: u64,
}

/// How many played sequence numbers are remembered to tell duplicates from late packets.
const PLAYED_MEMORY: usize = 64;
/// How many skipped-but-accounted sequence numbers are remembered.
const SKIP_MEMORY: usize = 64;

/// Jitter buffer for one RTP stream (see the module docs).
#[derive(Debug, Clone)]
pub struct JitterBuffer {
    cfg: JitterConfig,
    stats: JitterStats,
    ssrc: Option<u32>,
    /// Highest extended sequence number seen, and the extended timestamp of that packet.
    highest: Option<(i64, i64)>,
    /// Buffered packets by extended sequence number, with their extended timestamps.
    buf: BTreeMap<i64, (i64, RtpPacket)>,
    /// Arrival of the first packet while not playing.
    first_arrival: Option<Instant>,
    playing: bool,
    /// Extended timestamp of the next slot to play.
    play_ts: Option<i64>,
    missing_run: u32,
    late_run: u32,
    last_pop: Option<Instant>,
    /// Extended sequence number of the last frame played (or dropped for overflow).
    last_seq: Option<i64>,
    /// Recently played extended sequence numbers.
    played: VecDeque<i64>,
    /// Sequence numbers above `last_seq` known not to be losses (late or other payload type).
    skipped: VecDeque<i64>,
    /// Recently dropped late sequence numbers (so a copy of one counts as a duplicate).
    late_seen: VecDeque<i64>,
}

impl JitterBuffer {
    /// An empty buffer.
    pub fn new(cfg: JitterConfig) -> JitterBuffer {
        JitterBuffer {
            cfg,
            stats: JitterStats::default(),
            ssrc: None,
            highest: None,
            buf: BTreeMap::new(),
            first_arrival: None,
            playing: false,
            play_ts: None,
            missing_run: 0,
            late_run: 0,
            last_pop: None,
            last_seq: None,
            played: VecDeque::with_capacity(PLAYED_MEMORY),
            skipped: VecDeque::with_capacity(SKIP_MEMORY),
            late_seen: VecDeque::with_capacity(SKIP_MEMORY),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &JitterConfig {
        &self.cfg
    }

    /// Counters so far.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Packets buffered now.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when no packet is buffered.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// True once playout has started (and not gone idle since).
    pub fn is_playing(&self) -> bool {
        self.playing
    }

    /// SSRC of the stream being buffered.
    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }

    /// When `pop` should next be called: the start of playout, or one frame after the last pop.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.playing {
            self.last_pop.map(|t| t + self.cfg.frame_duration)
        } else {
            self.first_arrival.map(|t| t + self.cfg.target_delay)
        }
    }

    /// Forget the stream (counted in `resets`); the next packet starts a new one.
    pub fn reset(&mut self) {
        self.stats.resets += 1;
        self.clear();
    }

    fn clear(&mut self) {
        self.ssrc = None;
        self.highest = None;
        self.buf.clear();
        self.first_arrival = None;
        self.playing = false;
        self.play_ts = None;
        self.missing_run = 0;
        self.late_run = 0;
        self.last_seq = None;
        self.played.clear();
        self.skipped.clear();
        self.late_seen.clear();
    }

    /// Extend the packet's seq/ts, resetting first on a new SSRC or a jump. Returns (seq, ts).
    fn extend(&mut self, pkt: &RtpPacket) -> (i64, i64) {
        if self.ssrc.is_some_and(|s| s != pkt.ssrc) {
            self.reset();
        }
        if let Some((hs, hts)) = self.highest {
            let seq = extend_seq(hs, pkt.seq);
            let ts = extend_ts(hts, pkt.timestamp);
            let d = seq - hs;
            let ahead = self.play_ts.map_or(0, |p| ts - p);
            if d > i64::from(self.cfg.max_seq_jump)
                || d < -i64::from(self.cfg.max_misorder)
                || ahead > self.cfg.ts_of(self.cfg.max_ts_jump)
            {
                self.reset();
            } else {
                if d > 0 {
                    self.highest = Some((seq, ts));
                }
                return (seq, ts);
            }
        }
        // First packet of a stream: start the extended space one cycle up so it stays positive.
        let seq = 1 << 16 | i64::from(pkt.seq);
        let ts = 1 << 32 | i64::from(pkt.timestamp);
        self.ssrc = Some(pkt.ssrc);
        self.highest = Some((seq, ts));
        (seq, ts)
    }

    /// Account for a sequence number that is known not to be a loss (arrived late, or used
    /// by another payload type of the same stream).
    fn not_lost(&mut self, seq: i64) {
        if self.last_seq.is_none_or(|last| seq > last) {
            // its gap is not counted yet: remember to leave it out
            if self.skipped.len() == SKIP_MEMORY {
                self.skipped.pop_front();
            }
            self.skipped.push_back(seq);
        } else if self.played.front().is_some_and(|&first| seq > first) {
            // its gap was already counted as lost
            self.stats.lost = self.stats.lost.saturating_sub(1);
        }
    }

    /// Tell the buffer that `seq` of the same SSRC carried another payload type (e.g. a
    /// telephone-event), so the hole it leaves in the audio is not counted as a loss.
    pub fn note_other(&mut self, ssrc: u32, seq: u16) {
        if self.ssrc != Some(ssrc) {
            return;
        }
        if let Some((hs, hts)) = self.highest {
            let s = extend_seq(hs, seq);
            if s - hs > i64::from(self.cfg.max_seq_jump)
                || hs - s > i64::from(self.cfg.max_misorder)
            {
                return;
            }
            if s > hs {
                self.highest = Some((s, hts));
            }
            self.not_lost(s);
        }
    }

    /// A packet arrived at `now`.
    pub fn push(&mut self, now: Instant, pkt: RtpPacket) {
        self.stats.received += 1;
        let (seq, ts) = self.extend(&pkt);
        if self.buf.contains_key(&seq)
            || self.played.contains(&seq)
            || self.late_seen.contains(&seq)
        {
            self.stats.duplicates += 1;
            return;
        }
        if self.play_ts.is_some_and(|p| ts < p) {
            self.stats.late += 1;
            self.late_run += 1;
            if self.late_run >= self.cfg.max_late_run {
                // the sender's timeline moved back: start over from this packet
                self.reset();
                let (seq, ts) = self.extend(&pkt);
                self.insert(now, seq, ts, pkt);
            } else {
                self.drop_late(seq);
            }
            return;
        }
        self.late_run = 0;
        self.insert(now, seq, ts, pkt);
    }

    fn insert(&mut self, now: Instant, seq: i64, ts: i64, pkt: RtpPacket) {
        if !self.playing && self.first_arrival.is_none() {
            self.first_arrival = Some(now);
        }
        self.buf.insert(seq, (ts, pkt));
    }

    fn drop_late(&mut self, seq: i64) {
        if self.late_seen.len() == SKIP_MEMORY {
            self.late_seen.pop_front();
        }
        self.late_seen.push_back(seq);
        self.not_lost(seq);
    }

    fn mark_played(&mut self, seq: i64) {
        if let Some(last) = self.last_seq {
            let gap = (seq - last - 1).max(0) as u64;
            let known = self
                .skipped
                .iter()
                .filter(|&&s| s > last && s < seq)
                .count() as u64;
            self.stats.lost += gap.saturating_sub(known);
        }
        self.skipped.retain(|&s| s > seq);
        self.last_seq = Some(seq);
        if self.played.len() == PLAYED_MEMORY {
            self.played.pop_front();
        }
        self.played.push_back(seq);
    }

    /// The playout tick at `now`: what to play for the next frame.
    pub fn pop(&mut self, now: Instant) -> Playout {
        self.last_pop = Some(now);
        if !self.playing {
            let start = self.first_arrival.map(|t| t + self.cfg.target_delay);
            match (start, self.buf.values().map(|(ts, _)| *ts).min()) {
                (Some(start), Some(min_ts)) if now >= start => {
                    self.playing = true;
                    self.first_arrival = None;
                    self.missing_run = 0;
                    self.play_ts = Some(self.play_ts.map_or(min_ts, |p| p.max(min_ts)));
                }
                _ => return Playout::Silence,
            }
        }
        let frame_ts = i64::from(self.cfg.frame_ts);
        let mut play_ts = self.play_ts.unwrap_or(0);

        // Too much buffered (sender clock faster, or a burst): drop oldest back to the target.
        let max_ts = self.buf.values().map(|(ts, _)| *ts).max();
        if let Some(max_ts) = max_ts {
            if max_ts - play_ts > self.cfg.ts_of(self.cfg.max_delay) {
                let keep_from = max_ts - self.cfg.ts_of(self.cfg.target_delay);
                while let Some(entry) = self.buf.first_entry() {
                    if entry.get().0 >= keep_from {
                        break;
                    }
                    let (seq, _) = entry.remove_entry();
                    self.stats.overflow += 1;
                    self.mark_played(seq);
                }
                play_ts = play_ts.max(self.buf.values().map(|(ts, _)| *ts).min().unwrap_or(0));
            }
        }

        // Anything whose slot has passed (after a realignment) is late.
        while let Some(entry) = self.buf.first_entry() {
            if entry.get().0 >= play_ts {
                break;
            }
            let (seq, _) = entry.remove_entry();
            self.stats.late += 1;
            self.drop_late(seq);
        }

        let head_plays = self
            .buf
            .first_key_value()
            .is_some_and(|(_, (ts, _))| *ts < play_ts + frame_ts);
        if head_plays {
            if let Some((seq, (ts, pkt))) = self.buf.pop_first() {
                self.mark_played(seq);
                self.play_ts = Some(ts + frame_ts);
                self.missing_run = 0;
                return Playout::Frame(pkt);
            }
        }
        self.play_ts = Some(play_ts + frame_ts);
        self.missing_run += 1;
        if self.buf.is_empty() && self.missing_run >= self.cfg.idle_after_frames {
            self.playing = false;
            return Playout::Silence;
        }
        if self.missing_run <= self.cfg.max_conceal_frames {
            self.stats.concealed += 1;
            Playout::Conceal
        } else {
            Playout::Silence
        }
    }
}
