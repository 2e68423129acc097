//! The adaptive jitter buffer inside a [`MediaSession`], over synthetic time: a sender emits
//! 20 ms PCMU frames of tone bursts (300 ms of tone, 200 ms of pause, like speech), a seeded
//! network delays them, the receiver ticks `playout` every 20 ms. Checked: the target delay
//! rises under jitter so that almost nothing is late, and comes back down after it; the
//! changes happen in the pauses (no tone frame is dropped or cut), DTX gaps and clock skew do
//! not disturb it, an SSRC change starts over.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use termphone::media::{CodecParams, MediaConfig, MediaSession};

fn session(ssrc: u32) -> MediaSession {
    MediaSession::new(MediaConfig {
        codec: CodecParams::pcmu(),
        telephone_event_pt: None,
        ptime_ms: 20,
        ssrc,
        initial_seq: 100,
        initial_ts: 5000,
    })
    .unwrap()
}

/// Frame `i` of the test signal: 15 frames of 1 kHz tone, then 10 frames of silence.
fn frame(i: u64) -> Vec<i16> {
    if i % 25 < 15 {
        (0..160)
            .map(|n| {
                let t = (i * 160 + n) as f64 / 8000.0;
                (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()) as i16
            })
            .collect()
    } else {
        vec![0; 160]
    }
}

fn loud(pcm: &[i16]) -> bool {
    let e: f64 = pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len() as f64;
    e.sqrt() > 2000.0
}

/// One phase of a call: `frames` frames sent, each delayed by `delay(i)` ms; `send_rate`
/// scales the sender's clock (1.001 = 0.1 % fast). Returns what the receiver played.
struct Sim {
    t0: Instant,
    tx: MediaSession,
    rx: MediaSession,
    rng: StdRng,
    /// Arrival time (µs) → datagrams.
    net: BTreeMap<u64, Vec<Vec<u8>>>,
    sent_frames: u64,
    /// Sender time (µs) of the next frame.
    tx_time: f64,
    /// Receiver time (µs) of the next tick.
    rx_time: u64,
    played_loud: u64,
    sent_loud: u64,
    /// Sequence number of the next packet put on the wire (a DTX sender numbers only the
    /// packets it sends).
    wire_seq: u16,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        Sim {
            t0: Instant::now(),
            tx: session(1),
            rx: session(2),
            rng: StdRng::seed_from_u64(seed),
            net: BTreeMap::new(),
            sent_frames: 0,
            tx_time: 0.0,
            rx_time: 5_000,
            played_loud: 0,
            sent_loud: 0,
            wire_seq: 100,
        }
    }

    fn at(&self, us: u64) -> Instant {
        self.t0 + Duration::from_micros(us)
    }

    /// Run for `secs` of sender time with uniform extra delay up to `jitter_ms`, a sender clock
    /// `rate` times the receiver's, sending nothing (DTX) when `dtx` says so for a frame.
    fn run(&mut self, secs: f64, jitter_ms: u64, rate: f64, dtx: impl Fn(u64) -> bool) {
        let end = self.tx_time + secs * 1e6 / rate;
        let mut out = Vec::new();
        let mut pcm = Vec::new();
        loop {
            // Next event: a send or a receive tick, whichever comes first.
            if self.tx_time <= self.rx_time as f64 {
                if self.tx_time >= end {
                    break;
                }
                let f = frame(self.sent_frames);
                out.clear();
                let now = self.at(self.tx_time as u64);
                self.tx.on_tick(now, Some(&f), &mut out);
                if !dtx(self.sent_frames) {
                    if loud(&f) {
                        self.sent_loud += 1;
                    }
                    let delay = 2_000 + self.rng.random_range(0..=jitter_ms * 1000);
                    let arrive = self.tx_time as u64 + delay;
                    for p in &mut out {
                        p[2..4].copy_from_slice(&self.wire_seq.to_be_bytes());
                        self.wire_seq = self.wire_seq.wrapping_add(1);
                    }
                    self.net.entry(arrive).or_default().append(&mut out);
                }
                self.sent_frames += 1;
                self.tx_time += 20_000.0 / rate;
            } else {
                // Deliver everything that arrived up to this tick, then play a frame.
                let due: Vec<u64> = self.net.range(..=self.rx_time).map(|(t, _)| *t).collect();
                for t in due {
                    for d in self.net.remove(&t).unwrap() {
                        self.rx.handle_rtp(self.at(t), &d);
                    }
                }
                self.rx.playout(self.at(self.rx_time), &mut pcm);
                if loud(&pcm) {
                    self.played_loud += 1;
                }
                self.rx_time += 20_000;
            }
        }
    }
}

#[test]
fn target_rises_under_jitter_and_comes_back_down_after_it() {
    let mut sim = Sim::new(1);
    sim.run(5.0, 0, 1.0, |_| false);
    let calm = sim.rx.stats();
    assert!(calm.buffer_ms <= 25.0, "no jitter: at the floor: {calm:?}");

    sim.run(10.0, 80, 1.0, |_| false);
    let jittery = sim.rx.stats();
    assert!(
        (70.0..=110.0).contains(&jittery.buffer_ms),
        "80 ms of jitter: target about 80 ms: {jittery:?}"
    );
    // After the first adaptation, few packets miss their slot.
    let late_before = jittery.late;
    sim.run(10.0, 80, 1.0, |_| false);
    let settled = sim.rx.stats();
    let late = settled.late - late_before;
    assert!(
        late <= 15,
        "late in 500 packets once adapted: {late} ({settled:?})"
    );
    assert!(settled.stretched > 0, "{settled:?}");

    sim.run(12.0, 0, 1.0, |_| false);
    let after = sim.rx.stats();
    assert!(after.buffer_ms <= 25.0, "back at the floor: {after:?}");
    assert!(
        after.discarded >= 2,
        "it shrank by dropping frames: {after:?}"
    );
    // Growing and shrinking happened in pauses: every tone frame sent was played (give or take
    // the frames in flight at the end and those lost to the first jitter before adapting).
    let missing = sim.sent_loud - sim.played_loud;
    assert!(
        missing <= late + jittery.late + 10,
        "tone frames lost to adaptation: sent {}, played {}, stats {after:?}",
        sim.sent_loud,
        sim.played_loud
    );
}

#[test]
fn without_jitter_shrinking_costs_no_tone_frame() {
    let mut sim = Sim::new(2);
    // The initial 60 ms target comes down to the floor without dropping any tone frame.
    sim.run(10.0, 0, 1.0, |_| false);
    let st = sim.rx.stats();
    assert!(st.discarded >= 1, "{st:?}");
    assert_eq!(st.late + st.lost + st.concealed, 0, "{st:?}");
    let in_flight = 2;
    assert!(
        sim.sent_loud - sim.played_loud <= in_flight,
        "sent {} played {}",
        sim.sent_loud,
        sim.played_loud
    );
}

#[test]
fn dtx_gaps_do_not_count_as_loss_or_move_the_target() {
    let mut sim = Sim::new(3);
    // After the first silent frame, nothing is sent until the tone resumes (DTX): 9 frames
    // of every 25.
    sim.run(20.0, 10, 1.0, |i| i % 25 >= 16);
    let st = sim.rx.stats();
    assert_eq!((st.late, st.lost), (0, 0), "{st:?}");
    // A pause starts like a loss (nothing arrives); once the next packet shows no sequence
    // gap the concealment is not counted. Only the last pause, with no packet after it, is.
    assert!(st.concealed <= 5, "{st:?}");
    assert!(st.buffer_ms <= 35.0, "{st:?}");
    assert!(
        sim.sent_loud - sim.played_loud <= 2,
        "sent {} played {} {st:?}",
        sim.sent_loud,
        sim.played_loud
    );
}

#[test]
fn clock_skew_is_absorbed_both_ways() {
    // Sender 0.5 % fast: 100 ms more audio per 20 s than the receiver plays; frames are
    // dropped in pauses and nothing overflows.
    let mut fast = Sim::new(4);
    fast.run(40.0, 5, 1.005, |_| false);
    let st = fast.rx.stats();
    assert!(st.discarded >= 5, "{st:?}");
    assert_eq!(st.late, 0, "{st:?}");
    let jb = fast.rx.jitter_stats();
    assert_eq!((jb.overflow, jb.resets), (0, 0), "{jb:?}");

    // Sender 0.5 % slow: the buffer runs dry unless frames are inserted.
    let mut slow = Sim::new(5);
    slow.run(40.0, 5, 0.995, |_| false);
    let st = slow.rx.stats();
    assert!(st.stretched >= 5, "{st:?}");
    assert!(st.late <= 3, "{st:?}");
    assert!(
        slow.sent_loud - slow.played_loud <= 5,
        "sent {} played {} {st:?}",
        slow.sent_loud,
        slow.played_loud
    );
}

#[test]
fn a_new_ssrc_starts_over_at_the_initial_target() {
    let mut sim = Sim::new(6);
    sim.run(6.0, 80, 1.0, |_| false);
    assert!(sim.rx.stats().buffer_ms > 60.0);
    sim.tx = session(77);
    sim.wire_seq = 100;
    sim.run(0.5, 0, 1.0, |_| false);
    let jb = sim.rx.jitter_stats();
    assert_eq!(jb.resets, 1, "{jb:?}");
    sim.run(8.0, 0, 1.0, |_| false);
    assert!(sim.rx.stats().buffer_ms <= 25.0, "{:?}", sim.rx.stats());
}
