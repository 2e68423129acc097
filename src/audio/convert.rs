//! Sample conversion helpers and a simple FIFO of converted samples (engine side only).

/// f32 in [-1, 1] to i16, rounded and clamped.
#[inline]
pub fn f32_to_i16(x: f32) -> i16 {
    let v = (x * 32768.0).round();
    if v >= 32767.0 {
        32767
    } else if v <= -32768.0 {
        -32768
    } else {
        v as i16 // NaN becomes 0 here
    }
}

/// i16 to f32 in [-1, 1).
#[inline]
pub fn i16_to_f32(x: i16) -> f32 {
    f32::from(x) / 32768.0
}

/// A FIFO of f32 samples: push at the back, take from the front. Not for audio callbacks.
#[derive(Debug, Default, Clone)]
pub struct FrameQueue {
    buf: Vec<f32>,
    head: usize,
}

impl FrameQueue {
    /// Samples waiting.
    pub fn len(&self) -> usize {
        self.buf.len() - self.head
    }

    /// True when nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Append samples.
    pub fn extend(&mut self, samples: &[f32]) {
        if self.head > 0 && self.head >= self.buf.len() / 2 {
            self.buf.drain(..self.head);
            self.head = 0;
        }
        self.buf.extend_from_slice(samples);
    }

    /// Move up to `out.len()` samples into `out` as i16; returns how many were moved.
    pub fn pop_into_i16(&mut self, out: &mut [i16]) -> usize {
        let n = out.len().min(self.len());
        for (o, &s) in out.iter_mut().zip(&self.buf[self.head..self.head + n]) {
            *o = f32_to_i16(s);
        }
        self.head += n;
        n
    }

    /// Drop the `n` oldest samples (or all, if fewer wait).
    pub fn discard(&mut self, n: usize) {
        self.head += n.min(self.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i16_round_trip_is_exact() {
        for x in [i16::MIN, -12345, -1, 0, 1, 12345, i16::MAX] {
            assert_eq!(f32_to_i16(i16_to_f32(x)), x);
        }
        assert_eq!(f32_to_i16(2.0), i16::MAX);
        assert_eq!(f32_to_i16(-2.0), i16::MIN);
        assert_eq!(f32_to_i16(f32::NAN), 0);
    }

    #[test]
    fn queue_is_fifo() {
        let mut q = FrameQueue::default();
        q.extend(&[0.0, 0.5, -0.5]);
        let mut out = [1i16; 2];
        assert_eq!(q.pop_into_i16(&mut out), 2);
        assert_eq!(out, [0, 16384]);
        q.extend(&[0.25]);
        q.discard(1);
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop_into_i16(&mut out), 1);
        assert_eq!(out[0], 8192);
        assert!(q.is_empty());
    }
}
