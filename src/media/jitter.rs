//! Jitter buffer: reorders RTP packets and releases one frame per playout tick, driven by `now`.
//!
//! Playout starts `target_delay` after the first packet arrived and then advances one frame of
//! RTP timestamp per [`JitterBuffer::pop`] call (the caller ticks every frame duration).
//! Packets are matched to playout slots by timestamp, so gaps in the audio's sequence numbers
//! (telephone-event packets, DTX) are not mistaken for misordering.
//!
//! **Adaptation.** Every packet's relative transit time (arrival minus its timestamp, as a
//! duration) goes into a sliding window. The spread of the window (a high quantile minus the
//! minimum) is how much later than the earliest packets the late ones come; the target delay
//! is that spread plus a margin, between `min_delay` (the floor) and `ceiling`. The *playout
//! delay* is how far playout runs behind the earliest possible arrival of the slot being
//! played. [`JitterBuffer::adjustment`] says whether it should grow (the target rose: late
//! packets would be lost) or shrink (the target fell: latency to win back); the player does it
//! where it is not heard — it plays one extra frame of silence ([`JitterBuffer::stretch`]) or
//! drops one quiet frame (pops twice, [`JitterBuffer::note_discarded`]) — so growing is quick
//! and shrinking waits for a pause. The buffer never decides alone except for `max_delay`
//! overflow, a hard limit. The window forgets after `estimate_window`, so the target comes
//! back down some seconds after the jitter does.

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
    /// Adapt the target delay to the measured jitter ([`JitterBuffer::adjustment`]).
    pub adaptive: bool,
    /// Floor of the adaptive target delay.
    pub min_delay: Duration,
    /// Ceiling of the adaptive target delay (keep it below `max_delay`).
    pub ceiling: Duration,
    /// How long arrival measurements are remembered for the estimate.
    pub estimate_window: Duration,
    /// Quantile of the transit spread the target covers, per mille (970: 3 packets in 100
    /// may come too late for their slot).
    pub quantile_permille: u16,
    /// Added to the measured spread.
    pub margin: Duration,
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
    /// Defaults for a clock rate and frame length: 60 ms initial target adapting between
    /// 20 ms and 240 ms to the 97th percentile of the last 4 s, 300 ms max, 5 frames of
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
            adaptive: true,
            min_delay: Duration::from_millis(20),
            ceiling: Duration::from_millis(240),
            estimate_window: Duration::from_secs(4),
            quantile_permille: 970,
            margin: Duration::from_millis(5),
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

/// What the player should do to the playout delay (see [`JitterBuffer::adjustment`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adjust {
    /// Keep it.
    Keep,
    /// Play one frame more than arrives ([`JitterBuffer::stretch`]).
    Grow,
    /// Play one frame less (pop twice, drop the quieter one).
    Shrink,
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
    /// Frames dropped by the player to shrink the delay ([`JitterBuffer::note_discarded`]).
    pub discarded: u64,
    /// Extra frames played to grow the delay ([`JitterBuffer::stretch`]).
    pub stretched: u64,
}

/// The initial target: the configured one, within the adaptive bounds when adapting.
fn cfg_target(cfg: &JitterConfig) -> Duration {
    if cfg.adaptive {
        cfg.target_delay
            .clamp(cfg.min_delay, cfg.ceiling.max(cfg.min_delay))
    } else {
        cfg.target_delay
    }
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
    /// The SSRC before the last change: its packets still in flight are dropped instead of
    /// switching back and forth.
    retired_ssrc: Option<u32>,
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
    /// `Conceal`s handed out since the last frame played: if the next packet follows the last
    /// without a sequence gap, they covered a DTX pause, not a loss, and are not counted.
    conceal_since_frame: u64,
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
    /// Reference instant of the transit measurements.
    epoch: Option<Instant>,
    /// (arrival, relative transit in µs) of recent packets, oldest first.
    transits: VecDeque<(Instant, i64)>,
    /// Scratch space for the quantile (no allocation per tick once grown).
    scratch: Vec<i64>,
    /// The current adaptive target.
    target: Duration,
}

impl JitterBuffer {
    /// An empty buffer.
    pub fn new(cfg: JitterConfig) -> JitterBuffer {
        JitterBuffer {
            stats: JitterStats::default(),
            ssrc: None,
            retired_ssrc: None,
            highest: None,
            buf: BTreeMap::new(),
            first_arrival: None,
            playing: false,
            play_ts: None,
            missing_run: 0,
            conceal_since_frame: 0,
            late_run: 0,
            last_pop: None,
            last_seq: None,
            played: VecDeque::with_capacity(PLAYED_MEMORY),
            skipped: VecDeque::with_capacity(SKIP_MEMORY),
            late_seen: VecDeque::with_capacity(SKIP_MEMORY),
            epoch: None,
            transits: VecDeque::new(),
            scratch: Vec::new(),
            target: cfg_target(&cfg),
            cfg,
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
        self.conceal_since_frame = 0;
        self.late_run = 0;
        self.last_seq = None;
        self.played.clear();
        self.skipped.clear();
        self.late_seen.clear();
        self.epoch = None;
        self.transits.clear();
        self.target = cfg_target(&self.cfg);
    }

    /// Extend the packet's seq/ts, resetting first on a new SSRC or a jump. Returns (seq, ts).
    fn extend(&mut self, pkt: &RtpPacket) -> (i64, i64) {
        if let Some(old) = self.ssrc.filter(|&s| s != pkt.ssrc) {
            self.reset();
            self.retired_ssrc = Some(old);
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
        if self.retired_ssrc == Some(pkt.ssrc) {
            // a straggler of the stream before the last SSRC change
            self.stats.late += 1;
            return;
        }
        let (seq, ts) = self.extend(&pkt);
        if self.buf.contains_key(&seq)
            || self.played.contains(&seq)
            || self.late_seen.contains(&seq)
        {
            self.stats.duplicates += 1;
            return;
        }
        self.note_transit(now, ts);
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

    /// Microseconds of RTP time for an extended timestamp.
    fn ts_micros(&self, ts: i64) -> i64 {
        ts.saturating_mul(1_000_000) / i64::from(self.cfg.clock_rate.max(1))
    }

    fn note_transit(&mut self, now: Instant, ts: i64) {
        let epoch = *self.epoch.get_or_insert(now);
        let arrival = now.saturating_duration_since(epoch).as_micros() as i64;
        let transit = arrival - self.ts_micros(ts);
        while self
            .transits
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > self.cfg.estimate_window)
        {
            self.transits.pop_front();
        }
        self.transits.push_back((now, transit));
    }

    /// The smallest relative transit in the window (µs).
    fn min_transit(&self) -> Option<i64> {
        self.transits.iter().map(|(_, t)| *t).min()
    }

    /// The target delay the buffer is steering towards now.
    pub fn target_delay(&self) -> Duration {
        self.target
    }

    /// How far playout runs behind the earliest possible arrival of the slot it plays next
    /// (None before playout starts).
    pub fn playout_delay(&self, now: Instant) -> Option<Duration> {
        let (epoch, play_ts, min) = (self.epoch?, self.play_ts?, self.min_transit()?);
        if !self.playing {
            return None;
        }
        let now_us = now.saturating_duration_since(epoch).as_micros() as i64;
        let earliest = self.ts_micros(play_ts) + min;
        Some(Duration::from_micros((now_us - earliest).max(0) as u64))
    }

    /// Recompute the target from the window and say what the playout delay should do. Call
    /// once per tick before [`JitterBuffer::pop`]. Always `Keep` when not adaptive or not
    /// playing.
    pub fn adjustment(&mut self, now: Instant) -> Adjust {
        if !self.cfg.adaptive || !self.playing {
            return Adjust::Keep;
        }
        // Below a few packets the estimate means nothing: keep the initial target.
        if self.transits.len() >= 8 {
            self.scratch.clear();
            self.scratch.extend(self.transits.iter().map(|(_, t)| *t));
            let min = self.scratch.iter().copied().min().unwrap_or(0);
            let q = usize::from(self.cfg.quantile_permille.min(1000));
            let k = ((self.scratch.len() - 1) * q + 500) / 1000;
            let (_, high, _) = self.scratch.select_nth_unstable(k);
            let spread = Duration::from_micros((*high - min).max(0) as u64);
            self.target = (spread + self.cfg.margin).clamp(self.cfg.min_delay, self.cfg.ceiling);
        }
        let Some(delay) = self.playout_delay(now) else {
            return Adjust::Keep;
        };
        let frame = self.cfg.frame_duration;
        // The target already holds a margin: below it, some packets would miss their slot.
        if delay < self.target {
            Adjust::Grow
        } else if delay > self.target + frame + frame / 2 {
            // A shrink takes a whole frame: only when that still leaves half a frame above
            // the target, so that timing noise of a tick does not make it grow right back.
            Adjust::Shrink
        } else {
            Adjust::Keep
        }
    }

    /// The player played a frame of its own (silence or concealment) at `now` instead of
    /// popping one: playout falls one frame further behind (grows the delay).
    pub fn stretch(&mut self, now: Instant) {
        self.last_pop = Some(now);
        self.stats.stretched += 1;
    }

    /// The player dropped the frame it just popped (and will pop the next one in the same
    /// tick) to shrink the delay.
    pub fn note_discarded(&mut self) {
        self.stats.discarded += 1;
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
        if self.last_seq.is_some_and(|last| seq == last + 1) {
            self.stats.concealed = self
                .stats
                .concealed
                .saturating_sub(self.conceal_since_frame);
        }
        self.conceal_since_frame = 0;
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

    /// The packet the next [`JitterBuffer::pop`] will play, if it is buffered already: the
    /// one whose timestamp falls in the slot right after the one just popped. After a
    /// [`Playout::Conceal`] this is the packet that follows the lost one, whose in-band FEC
    /// (Opus) can rebuild it. `None` while not playing.
    pub fn peek_next(&self) -> Option<&RtpPacket> {
        if !self.playing {
            return None;
        }
        let play_ts = self.play_ts?;
        let frame_ts = i64::from(self.cfg.frame_ts);
        self.buf
            .first_key_value()
            .map(|(_, (ts, pkt))| (*ts, pkt))
            .filter(|(ts, _)| *ts >= play_ts && *ts < play_ts + frame_ts)
            .map(|(_, pkt)| pkt)
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
        // The next packet follows the last one played without a gap in sequence numbers: the
        // sender sent nothing for this slot (DTX, a pause), nothing was lost — play silence.
        let dtx = match (self.buf.first_key_value(), self.last_seq) {
            (Some((&seq, _)), Some(last)) => seq == last + 1,
            _ => false,
        };
        if dtx {
            self.missing_run = 0;
            return Playout::Silence;
        }
        self.missing_run += 1;
        if self.buf.is_empty() && self.missing_run >= self.cfg.idle_after_frames {
            self.playing = false;
            return Playout::Silence;
        }
        if self.missing_run <= self.cfg.max_conceal_frames {
            self.stats.concealed += 1;
            self.conceal_since_frame += 1;
            Playout::Conceal
        } else {
            Playout::Silence
        }
    }
}
