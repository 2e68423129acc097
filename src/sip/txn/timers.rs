//! The running timers of one transaction machine (RFC 3261 §17 timers A to M), as deadlines.

use std::time::{Duration, Instant};

/// The timers a machine has running, each named by a value of the machine's own `Timer` enum.
///
/// A timer runs until it is stopped or started again: [`due`](Self::due) does not stop it,
/// so the machine's handler for it must restart or stop it (or terminate).
#[derive(Debug, Clone)]
pub(crate) struct Timers<T> {
    running: Vec<Running<T>>,
}

#[derive(Debug, Clone, Copy)]
struct Running<T> {
    timer: T,
    at: Instant,
    interval: Duration,
}

impl<T: Copy + Ord> Timers<T> {
    /// No timer running.
    pub(crate) fn new() -> Self {
        Timers {
            running: Vec::new(),
        }
    }

    /// (Re)start `timer` to fire `interval` after `now`. When that instant overflows
    /// `Instant` the timer never fires (it is left stopped).
    pub(crate) fn start(&mut self, timer: T, now: Instant, interval: Duration) {
        self.stop(timer);
        if let Some(at) = now.checked_add(interval) {
            self.running.push(Running {
                timer,
                at,
                interval,
            });
        }
    }

    /// Stop `timer` (a no-op when it is not running).
    pub(crate) fn stop(&mut self, timer: T) {
        self.running.retain(|r| r.timer != timer);
    }

    /// Stop every timer.
    pub(crate) fn stop_all(&mut self) {
        self.running.clear();
    }

    /// The interval `timer` was last started with, while it runs (to double a retransmit timer).
    pub(crate) fn interval(&self, timer: T) -> Option<Duration> {
        self.running
            .iter()
            .find(|r| r.timer == timer)
            .map(|r| r.interval)
    }

    /// The earliest deadline of the running timers.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.running.iter().map(|r| r.at).min()
    }

    /// The running timer with the earliest deadline at or before `now`; on a tie, the first
    /// in `T`'s order (the machines list their ending timers before their retransmit timer).
    pub(crate) fn due(&self, now: Instant) -> Option<T> {
        self.running
            .iter()
            .filter(|r| r.at <= now)
            .min_by_key(|r| (r.at, r.timer))
            .map(|r| r.timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    enum Timer {
        End,
        Resend,
    }

    #[test]
    fn earliest_due_first_ties_in_enum_order() {
        let t0 = crate::test_epoch();
        let s = Duration::from_secs(1);
        let mut timers = Timers::new();
        assert_eq!(timers.poll_timeout(), None);
        timers.start(Timer::Resend, t0, s);
        timers.start(Timer::End, t0, s);
        assert_eq!(timers.poll_timeout(), Some(t0 + s));
        assert_eq!(timers.due(t0), None);
        assert_eq!(timers.due(t0 + s), Some(Timer::End));
        timers.stop(Timer::End);
        assert_eq!(timers.due(t0 + s), Some(Timer::Resend));
        assert_eq!(timers.interval(Timer::Resend), Some(s));
        timers.start(Timer::Resend, t0 + s, 2 * s);
        assert_eq!(timers.poll_timeout(), Some(t0 + 3 * s));
        assert_eq!(timers.interval(Timer::End), None);
        timers.stop_all();
        assert_eq!(timers.poll_timeout(), None);
    }

    #[test]
    fn an_overflowing_deadline_never_fires() {
        let t0 = crate::test_epoch();
        let mut timers = Timers::new();
        timers.start(Timer::End, t0, Duration::from_secs(1));
        timers.start(Timer::End, t0, Duration::MAX);
        assert_eq!(timers.poll_timeout(), None);
        assert_eq!(timers.interval(Timer::End), None);
    }
}
