//! G.711 µ-law (PCMU) and A-law (PCMA), bit-exact with the classic Sun `g711.c`
//! (the code behind Python's `audioop`) and the ITU-T G.711 tables.

use super::{Codec, DecodeError};
use crate::media::plc::WaveformPlc;

const SEG_SHIFT: u32 = 4;
const QUANT_MASK: u8 = 0x0f;
const SEG_MASK: u8 = 0x70;
const SIGN_BIT: u8 = 0x80;

/// µ-law bias in the 14-bit domain (0x84 >> 2).
const ULAW_BIAS14: i32 = 33;
/// µ-law clip level in the 14-bit domain.
const ULAW_CLIP14: i32 = 8159;

/// Segment of a biased 14-bit µ-law magnitude (33..=8192): 0..=7.
fn ulaw_segment(v: i32) -> u32 {
    // segment ends 0x3f, 0x7f, ... 0x1fff: the segment is the bit length minus 6.
    (32 - (v as u32).leading_zeros()).saturating_sub(6)
}

/// Encode one 16-bit linear sample to µ-law (Sun `linear2ulaw`, 14-bit form).
pub fn ulaw_encode(s: i16) -> u8 {
    let mut v = i32::from(s) >> 2;
    let mask: u8 = if v < 0 {
        v = -v;
        0x7f
    } else {
        0xff
    };
    v = v.min(ULAW_CLIP14) + ULAW_BIAS14;
    let seg = ulaw_segment(v);
    if seg >= 8 {
        // only v == 8192 (the clip level plus bias): the largest magnitude code
        return 0x7f ^ mask;
    }
    let code = ((seg as u8) << SEG_SHIFT) | ((v >> (seg + 1)) as u8 & QUANT_MASK);
    code ^ mask
}

/// Decode one µ-law code to a 16-bit linear sample (Sun `ulaw2linear`).
pub fn ulaw_decode(c: u8) -> i16 {
    let u = !c;
    let mut t = (i32::from(u & QUANT_MASK) << 3) + 0x84;
    t <<= u32::from((u & SEG_MASK) >> SEG_SHIFT);
    (if u & SIGN_BIT != 0 {
        0x84 - t
    } else {
        t - 0x84
    }) as i16
}

/// Encode one 16-bit linear sample to A-law (Sun `linear2alaw`).
pub fn alaw_encode(s: i16) -> u8 {
    let mut v = i32::from(s) >> 3;
    let mask: u8 = if v >= 0 {
        0xd5
    } else {
        v = -v - 1;
        0x55
    };
    // segment ends 0x1f, 0x3f, ... 0xfff: segment is the bit length minus 5 (0 for v < 32).
    let seg = (32 - (v as u32).leading_zeros()).saturating_sub(5);
    if seg >= 8 {
        return 0x7f ^ mask;
    }
    let shift = if seg < 2 { 1 } else { seg };
    let code = ((seg as u8) << SEG_SHIFT) | ((v >> shift) as u8 & QUANT_MASK);
    code ^ mask
}

/// Decode one A-law code to a 16-bit linear sample (Sun `alaw2linear`).
pub fn alaw_decode(c: u8) -> i16 {
    let a = c ^ 0x55;
    let mut t = i32::from(a & QUANT_MASK) << 4;
    let seg = u32::from((a & SEG_MASK) >> SEG_SHIFT);
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    (if a & SIGN_BIT != 0 { t } else { -t }) as i16
}

/// Which G.711 law a [`G711`] codec uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    /// µ-law, PCMU, static payload type 0.
    Mu,
    /// A-law, PCMA, static payload type 8.
    A,
}

/// G.711 codec (8 kHz, one byte per sample) with waveform concealment ([`WaveformPlc`]).
#[derive(Debug, Clone)]
pub struct G711 {
    law: Law,
    plc: WaveformPlc,
}

impl G711 {
    /// A new codec for the given law.
    pub fn new(law: Law) -> G711 {
        G711 {
            law,
            plc: WaveformPlc::new(8000),
        }
    }

    /// The law this codec uses.
    pub fn law(&self) -> Law {
        self.law
    }
}

impl Codec for G711 {
    fn name(&self) -> &'static str {
        match self.law {
            Law::Mu => "PCMU",
            Law::A => "PCMA",
        }
    }

    fn clock_rate(&self) -> u32 {
        8000
    }

    fn sample_rate(&self) -> u32 {
        8000
    }

    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) {
        match self.law {
            Law::Mu => out.extend(pcm.iter().map(|&s| ulaw_encode(s))),
            Law::A => out.extend(pcm.iter().map(|&s| alaw_encode(s))),
        }
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), DecodeError> {
        let start = out.len();
        match self.law {
            Law::Mu => out.extend(payload.iter().map(|&c| ulaw_decode(c))),
            Law::A => out.extend(payload.iter().map(|&c| alaw_decode(c))),
        }
        self.plc.good_frame(&mut out[start..]);
        Ok(())
    }

    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        self.plc.conceal(samples, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 20 ms frames of concealment before the output has faded to silence.
    const FADE_FRAMES: u32 = crate::media::plc::FADE_OUT_MS / 20;

    #[test]
    fn known_values() {
        assert_eq!(ulaw_encode(0), 0xff);
        assert_eq!(ulaw_decode(0xff), 0);
        assert_eq!(ulaw_decode(0x7f), 0);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(alaw_encode(0), 0xd5);
        assert_eq!(alaw_decode(0xd5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xaa), 32256);
        assert_eq!(alaw_decode(0x2a), -32256);
        assert_eq!(alaw_encode(i16::MAX), 0xaa);
        assert_eq!(alaw_encode(i16::MIN), 0x2a);
    }

    #[test]
    fn conceal_fades_to_silence() {
        let mut c = G711::new(Law::Mu);
        let mut out = Vec::new();
        c.conceal(160, &mut out);
        assert!(out.iter().all(|&s| s == 0), "nothing decoded yet: silence");
        let frame: Vec<i16> = (0..160)
            .map(|i| if i % 2 == 0 { 8000 } else { -8000 })
            .collect();
        let mut enc = Vec::new();
        c.encode(&frame, &mut enc);
        let mut dec = Vec::new();
        c.decode(&enc, &mut dec).unwrap();
        let energy = |f: &[i16]| f.iter().map(|&s| i64::from(s).pow(2)).sum::<i64>();
        let mut prev = energy(&dec);
        for _ in 0..FADE_FRAMES {
            out.clear();
            c.conceal(160, &mut out);
            let e = energy(&out);
            assert!(e < prev && e > 0 || e == 0, "energy must fall");
            prev = e;
        }
        out.clear();
        c.conceal(160, &mut out);
        assert!(
            out.iter().all(|&s| s == 0),
            "faded out after {FADE_FRAMES} frames"
        );
        // a good frame resets the fade
        c.decode(&enc, &mut dec).unwrap();
        out.clear();
        c.conceal(160, &mut out);
        assert!(energy(&out) > 0);
    }
}
