//! DTMF as RFC 4733 telephone-events: a sender that paces events over playout ticks and a
//! receiver that reports each digit once.
//!
//! Sender timeline for one digit (20 ms ticks, 8 kHz): four updates with durations 160, 320,
//! 480, 640, then the end packet (E bit, duration 800 = 100 ms) sent three times, all with the
//! RTP timestamp of the event's first tick and the marker on the first packet only; then a
//! 60 ms gap (audio flows again) before the next digit.
//!
//! Receiver: a digit is reported at the **first** packet of its event that arrives (lowest
//! latency, and it survives a lost start packet). Events are told apart by RTP timestamp, so
//! updates, the three end packets and retransmissions of the same event are not reported again,
//! and a stale packet of an older event is ignored. Two presses of the same key are two events
//! (two timestamps) and are reported twice. (A > 8 s event split into segments would be reported
//! once per segment.)

use std::collections::VecDeque;

use core::fmt;

use super::rtp::ts_delta;

/// Telephone-event code of a DTMF digit: 0-9, * = 10, # = 11, A-D = 12-15 (a-d accepted).
pub fn event_code(digit: char) -> Option<u8> {
    match digit {
        '0'..='9' => Some(digit as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(digit as u8 - b'A' + 12),
        'a'..='d' => Some(digit as u8 - b'a' + 12),
        _ => None,
    }
}

/// DTMF digit of a telephone-event code (None for non-DTMF events such as 16 = flash).
pub fn event_digit(code: u8) -> Option<char> {
    match code {
        0..=9 => Some(char::from(b'0' + code)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + code - 12)),
        _ => None,
    }
}

/// A telephone-event payload is shorter than 4 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtmfError {
    len: usize,
}

impl fmt::Display for DtmfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "telephone-event payload of {} bytes, need 4", self.len)
    }
}

impl std::error::Error for DtmfError {}

/// The 4-byte RFC 4733 payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code (0-15 DTMF).
    pub event: u8,
    /// E bit: this is the end of the event.
    pub end: bool,
    /// Power level in -dBm0 (0..=63).
    pub volume: u8,
    /// Duration so far, in RTP timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parse a payload (bytes past the first 4 are ignored).
    pub fn parse(payload: &[u8]) -> Result<TelephoneEvent, DtmfError> {
        match payload {
            [event, flags, d0, d1, ..] => Ok(TelephoneEvent {
                event: *event,
                end: flags & 0x80 != 0,
                volume: flags & 0x3f,
                duration: u16::from_be_bytes([*d0, *d1]),
            }),
            _ => Err(DtmfError { len: payload.len() }),
        }
    }

    /// The wire form.
    pub fn to_bytes(&self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3f),
            d[0],
            d[1],
        ]
    }
}

/// Pacing of a [`DtmfSender`], in ticks of one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtmfSenderConfig {
    /// RTP timestamp units per tick (160 for 8 kHz, 20 ms).
    pub frame_ts: u32,
    /// Ticks of the event itself; the last one is the end packet (5 × 20 ms = 100 ms).
    pub event_ticks: u32,
    /// How many times the end packet is sent (on consecutive ticks).
    pub end_repeats: u32,
    /// Ticks of audio between two digits.
    pub gap_ticks: u32,
    /// Volume field (-dBm0).
    pub volume: u8,
}

impl DtmfSenderConfig {
    /// About 100 ms events, 3 end packets, about 50 ms gaps, volume 10.
    pub fn new(clock_rate: u32, ptime_ms: u32) -> DtmfSenderConfig {
        let ptime_ms = ptime_ms.max(1);
        DtmfSenderConfig {
            frame_ts: clock_rate / 1000 * ptime_ms,
            event_ticks: (100 + ptime_ms / 2) / ptime_ms,
            end_repeats: 3,
            gap_ticks: (50 + ptime_ms / 2) / ptime_ms,
            volume: 10,
        }
        .sane()
    }

    fn sane(mut self) -> Self {
        self.event_ticks = self.event_ticks.max(1);
        self.end_repeats = self.end_repeats.max(1);
        self
    }
}

/// A telephone-event packet to send on this tick (the caller adds seq and SSRC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfPacket {
    /// Marker bit: first packet of the event.
    pub marker: bool,
    /// RTP timestamp: the event's start.
    pub timestamp: u32,
    /// The payload.
    pub event: TelephoneEvent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SendState {
    Idle,
    /// Sending updates; `tick` packets sent so far.
    Event {
        code: u8,
        start_ts: u32,
        tick: u32,
    },
    /// Sending end packets; `sent` so far.
    End {
        code: u8,
        start_ts: u32,
        sent: u32,
    },
    Gap {
        left: u32,
    },
}

/// Sends queued digits as telephone-events, one tick at a time.
#[derive(Debug, Clone)]
pub struct DtmfSender {
    cfg: DtmfSenderConfig,
    queue: VecDeque<u8>,
    state: SendState,
}

impl DtmfSender {
    /// An idle sender.
    pub fn new(cfg: DtmfSenderConfig) -> DtmfSender {
        DtmfSender {
            cfg: cfg.sane(),
            queue: VecDeque::new(),
            state: SendState::Idle,
        }
    }

    /// Queue digits (0-9 * # A-D); other characters are skipped. Returns how many were queued.
    pub fn queue(&mut self, digits: &str) -> usize {
        let before = self.queue.len();
        self.queue.extend(digits.chars().filter_map(event_code));
        self.queue.len() - before
    }

    /// True while an event is on the wire (the caller suppresses audio then).
    pub fn is_active(&self) -> bool {
        matches!(self.state, SendState::Event { .. } | SendState::End { .. })
    }

    /// True when nothing is queued or being sent.
    pub fn is_idle(&self) -> bool {
        self.state == SendState::Idle && self.queue.is_empty()
    }

    /// Digits waiting (not counting the one on the wire).
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Drop queued digits (the one on the wire is finished properly).
    pub fn clear(&mut self) {
        self.queue.clear();
    }

    /// One tick; `ts` is the RTP timestamp this tick's audio would carry. Returns the event
    /// packet to send instead of audio, or None to send audio.
    pub fn tick(&mut self, ts: u32) -> Option<DtmfPacket> {
        if let SendState::Gap { left } = self.state {
            self.state = if left > 1 {
                SendState::Gap { left: left - 1 }
            } else {
                SendState::Idle
            };
            return None;
        }
        if self.state == SendState::Idle {
            let code = self.queue.pop_front()?;
            self.state = SendState::Event {
                code,
                start_ts: ts,
                tick: 0,
            };
        }
        let frame = self.cfg.frame_ts;
        let full = (self.cfg.event_ticks.saturating_mul(frame)).min(u32::from(u16::MAX)) as u16;
        match self.state.clone() {
            SendState::Event {
                code,
                start_ts,
                tick,
            } => {
                let marker = tick == 0;
                if tick + 1 < self.cfg.event_ticks {
                    self.state = SendState::Event {
                        code,
                        start_ts,
                        tick: tick + 1,
                    };
                    let duration = ((tick + 1).saturating_mul(frame)).min(u32::from(full)) as u16;
                    Some(self.packet(marker, start_ts, code, false, duration))
                } else {
                    self.state = SendState::End {
                        code,
                        start_ts,
                        sent: 0,
                    };
                    self.end_packet(marker)
                }
            }
            SendState::End { .. } => self.end_packet(false),
            SendState::Idle | SendState::Gap { .. } => None,
        }
    }

    fn end_packet(&mut self, marker: bool) -> Option<DtmfPacket> {
        let SendState::End {
            code,
            start_ts,
            sent,
        } = self.state
        else {
            return None;
        };
        let full =
            (self.cfg.event_ticks.saturating_mul(self.cfg.frame_ts)).min(u32::from(u16::MAX));
        self.state = if sent + 1 < self.cfg.end_repeats {
            SendState::End {
                code,
                start_ts,
                sent: sent + 1,
            }
        } else if self.cfg.gap_ticks > 0 {
            SendState::Gap {
                left: self.cfg.gap_ticks,
            }
        } else {
            SendState::Idle
        };
        Some(self.packet(marker, start_ts, code, true, full as u16))
    }

    fn packet(&self, marker: bool, ts: u32, code: u8, end: bool, duration: u16) -> DtmfPacket {
        DtmfPacket {
            marker,
            timestamp: ts,
            event: TelephoneEvent {
                event: code,
                end,
                volume: self.cfg.volume,
                duration,
            },
        }
    }
}

/// Turns received telephone-event packets into digits, one per event.
#[derive(Debug, Clone, Default)]
pub struct DtmfReceiver {
    /// (SSRC, timestamp) of the newest event seen.
    last: Option<(u32, u32)>,
}

impl DtmfReceiver {
    /// A receiver that has seen nothing.
    pub fn new() -> DtmfReceiver {
        DtmfReceiver::default()
    }

    /// A telephone-event packet arrived. Returns the digit when this packet starts a new
    /// DTMF event; None for further packets of a known event, stale packets and non-DTMF events.
    pub fn handle(
        &mut self,
        ssrc: u32,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<Option<char>, DtmfError> {
        let ev = TelephoneEvent::parse(payload)?;
        if let Some((last_ssrc, last_ts)) = self.last {
            if last_ssrc == ssrc && ts_delta(last_ts, timestamp) <= 0 {
                return Ok(None);
            }
        }
        self.last = Some((ssrc, timestamp));
        Ok(event_digit(ev.event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        for (i, c) in "0123456789*#ABCD".chars().enumerate() {
            assert_eq!(event_code(c), Some(i as u8));
            assert_eq!(event_digit(i as u8), Some(c));
        }
        assert_eq!(event_code('a'), Some(12));
        assert_eq!(event_code('x'), None);
        assert_eq!(event_digit(16), None);
    }

    #[test]
    fn payload_round_trip() {
        let ev = TelephoneEvent {
            event: 11,
            end: true,
            volume: 10,
            duration: 800,
        };
        assert_eq!(ev.to_bytes(), [11, 0x8a, 0x03, 0x20]);
        assert_eq!(TelephoneEvent::parse(&ev.to_bytes()), Ok(ev));
        assert!(TelephoneEvent::parse(&[1, 2, 3]).is_err());
    }

    #[test]
    fn sender_timeline() {
        let mut tx = DtmfSender::new(DtmfSenderConfig::new(8000, 20));
        assert_eq!(tx.queue("1x#"), 2);
        let mut ts = 1000u32;
        let mut log = Vec::new();
        for _ in 0..22 {
            let p = tx.tick(ts);
            log.push(p.map(|p| {
                (
                    p.marker,
                    p.timestamp,
                    p.event.event,
                    p.event.end,
                    p.event.duration,
                )
            }));
            ts += 160;
        }
        let ev1 = |m, end, d| Some((m, 1000, 1, end, d));
        let ev2 = |m, end, d| Some((m, 1000 + 10 * 160, 11, end, d));
        let want = vec![
            ev1(true, false, 160),
            ev1(false, false, 320),
            ev1(false, false, 480),
            ev1(false, false, 640),
            ev1(false, true, 800),
            ev1(false, true, 800),
            ev1(false, true, 800),
            None,
            None,
            None,
            ev2(true, false, 160),
            ev2(false, false, 320),
            ev2(false, false, 480),
            ev2(false, false, 640),
            ev2(false, true, 800),
            ev2(false, true, 800),
            ev2(false, true, 800),
            None,
            None,
            None,
            None,
            None,
        ];
        assert_eq!(log, want);
        assert!(tx.is_idle());
    }

    #[test]
    fn receiver_reports_once_per_event() {
        let mut tx = DtmfSender::new(DtmfSenderConfig::new(8000, 20));
        tx.queue("55#");
        let mut rx = DtmfReceiver::new();
        let mut got = String::new();
        let mut ts = 0u32;
        for _ in 0..40 {
            if let Some(p) = tx.tick(ts) {
                let payload = p.event.to_bytes();
                // every packet twice: retransmission/duplication must not matter
                for _ in 0..2 {
                    if let Some(d) = rx.handle(9, p.timestamp, &payload).unwrap() {
                        got.push(d);
                    }
                }
            }
            ts = ts.wrapping_add(160);
        }
        assert_eq!(got, "55#");
    }

    #[test]
    fn receiver_survives_lost_start_and_stale_packets() {
        let mut rx = DtmfReceiver::new();
        let end = |code| {
            TelephoneEvent {
                event: code,
                end: true,
                volume: 10,
                duration: 800,
            }
            .to_bytes()
        };
        // only the end packet of the first event arrives
        assert_eq!(rx.handle(1, 100, &end(7)), Ok(Some('7')));
        assert_eq!(rx.handle(1, 100, &end(7)), Ok(None));
        assert_eq!(rx.handle(1, 2000, &end(8)), Ok(Some('8')));
        // a late end packet of the previous event
        assert_eq!(rx.handle(1, 100, &end(7)), Ok(None));
        // timestamps wrap
        assert_eq!(rx.handle(1, 0x6000_0000, &end(0)), Ok(Some('0')));
        assert_eq!(rx.handle(1, 0xc000_0000, &end(4)), Ok(Some('4')));
        assert_eq!(rx.handle(1, u32::MAX - 10, &end(1)), Ok(Some('1')));
        assert_eq!(rx.handle(1, 150, &end(2)), Ok(Some('2')));
        // a new SSRC is a new stream
        assert_eq!(rx.handle(2, 150, &end(3)), Ok(Some('3')));
        assert!(rx.handle(2, 5000, &[1]).is_err());
    }
}
