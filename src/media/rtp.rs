//! RTP packets (RFC 3550 §5.1) and wrap-aware sequence/timestamp arithmetic.

use core::fmt;

/// The only RTP version we speak.
pub const RTP_VERSION: u8 = 2;
/// Length of the fixed RTP header (no CSRC, no extension).
pub const RTP_HEADER_LEN: usize = 12;

/// One RTP packet: the header fields we use and the payload (padding and extension removed).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RtpPacket {
    /// Marker bit (for audio: first packet of a talkspurt / of an event).
    pub marker: bool,
    /// Payload type, 0..=127.
    pub payload_type: u8,
    /// Sequence number.
    pub seq: u16,
    /// Media timestamp in clock-rate units.
    pub timestamp: u32,
    /// Synchronization source.
    pub ssrc: u32,
    /// Contributing sources (at most 15).
    pub csrc: Vec<u32>,
    /// Payload without padding.
    pub payload: Vec<u8>,
}

/// Why a datagram is not a valid RTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtpError {
    /// Fewer bytes than the header (with its CSRC list and extension) needs.
    TooShort {
        /// Bytes present.
        len: usize,
        /// Bytes needed.
        needed: usize,
    },
    /// Version field is not 2.
    BadVersion(u8),
    /// Padding bit set but the padding count is 0 or longer than the payload.
    BadPadding {
        /// Padding count from the last byte.
        count: usize,
        /// Bytes available for payload + padding.
        available: usize,
    },
}

impl fmt::Display for RtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RtpError::TooShort { len, needed } => {
                write!(f, "RTP packet too short: {len} bytes, need {needed}")
            }
            RtpError::BadVersion(v) => write!(f, "RTP version {v}, expected 2"),
            RtpError::BadPadding { count, available } => write!(
                f,
                "RTP padding count {count} invalid for {available} bytes of payload"
            ),
        }
    }
}

impl std::error::Error for RtpError {}

fn be16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

fn be32(d: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

impl RtpPacket {
    /// Parse one datagram. Never panics; the header extension is skipped.
    pub fn parse(data: &[u8]) -> Result<RtpPacket, RtpError> {
        if data.len() < RTP_HEADER_LEN {
            return Err(RtpError::TooShort {
                len: data.len(),
                needed: RTP_HEADER_LEN,
            });
        }
        let b0 = data[0];
        let version = b0 >> 6;
        if version != RTP_VERSION {
            return Err(RtpError::BadVersion(version));
        }
        let padding = b0 & 0x20 != 0;
        let extension = b0 & 0x10 != 0;
        let cc = usize::from(b0 & 0x0f);
        let b1 = data[1];
        let mut at = RTP_HEADER_LEN + 4 * cc;
        if data.len() < at {
            return Err(RtpError::TooShort {
                len: data.len(),
                needed: at,
            });
        }
        let csrc = (0..cc)
            .map(|i| be32(data, RTP_HEADER_LEN + 4 * i))
            .collect();
        if extension {
            if data.len() < at + 4 {
                return Err(RtpError::TooShort {
                    len: data.len(),
                    needed: at + 4,
                });
            }
            let words = usize::from(be16(data, at + 2));
            at += 4 + 4 * words;
            if data.len() < at {
                return Err(RtpError::TooShort {
                    len: data.len(),
                    needed: at,
                });
            }
        }
        let mut end = data.len();
        if padding {
            let available = end - at;
            let count = usize::from(data[end - 1]);
            if count == 0 || count > available {
                return Err(RtpError::BadPadding { count, available });
            }
            end -= count;
        }
        Ok(RtpPacket {
            marker: b1 & 0x80 != 0,
            payload_type: b1 & 0x7f,
            seq: be16(data, 2),
            timestamp: be32(data, 4),
            ssrc: be32(data, 8),
            csrc,
            payload: data[at..end].to_vec(),
        })
    }

    /// Serialize (no padding, no extension). At most 15 CSRCs are written; PT is masked to 7 bits.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(RTP_HEADER_LEN + 4 * self.csrc.len() + self.payload.len());
        self.write_to(&mut out);
        out
    }

    /// Append the serialized packet to `out` (lets callers reuse buffers).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let cc = self.csrc.len().min(15);
        out.push((RTP_VERSION << 6) | cc as u8);
        out.push((u8::from(self.marker) << 7) | (self.payload_type & 0x7f));
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        for c in &self.csrc[..cc] {
            out.extend_from_slice(&c.to_be_bytes());
        }
        out.extend_from_slice(&self.payload);
    }
}

/// Wrap-aware signed distance from sequence number `a` to `b` (`b - a`), in -32768..=32767.
pub fn seq_delta(a: u16, b: u16) -> i16 {
    b.wrapping_sub(a) as i16
}

/// True when sequence number `a` comes after `b` (wrap-aware, RFC 1982 style).
pub fn seq_newer(a: u16, b: u16) -> bool {
    seq_delta(b, a) > 0
}

/// Wrap-aware signed distance from timestamp `a` to `b` (`b - a`).
pub fn ts_delta(a: u32, b: u32) -> i32 {
    b.wrapping_sub(a) as i32
}

/// Extend a 16-bit sequence number to 64 bits, relative to a nearby already-extended one.
///
/// The result is the extended value closest to `reference` whose low 16 bits are `seq`,
/// so it counts wrap-arounds (cycles) both forward and backward.
pub fn extend_seq(reference: i64, seq: u16) -> i64 {
    reference + i64::from(seq_delta(reference as u16, seq))
}

/// Extend a 32-bit timestamp to 64 bits, relative to a nearby already-extended one.
pub fn extend_ts(reference: i64, ts: u32) -> i64 {
    reference + i64::from(ts_delta(reference as u32, ts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RtpPacket {
        RtpPacket {
            marker: true,
            payload_type: 0,
            seq: 0xfffe,
            timestamp: 0xdead_beef,
            ssrc: 0x1234_5678,
            csrc: vec![1, 2],
            payload: vec![0xff; 160],
        }
    }

    #[test]
    fn round_trip() {
        let p = sample();
        let bytes = p.to_bytes();
        assert_eq!(bytes.len(), 12 + 8 + 160);
        assert_eq!(bytes[0], 0x82);
        assert_eq!(bytes[1], 0x80);
        assert_eq!(RtpPacket::parse(&bytes), Ok(p));
    }

    #[test]
    fn parses_known_bytes() {
        // V=2, no P/X, CC=0, M=0, PT=8, seq=1, ts=160, ssrc=0xcafebabe, payload d5 d5
        let b = [
            0x80, 0x08, 0x00, 0x01, 0x00, 0x00, 0x00, 0xa0, 0xca, 0xfe, 0xba, 0xbe, 0xd5, 0xd5,
        ];
        let p = RtpPacket::parse(&b).unwrap();
        assert!(!p.marker);
        assert_eq!(p.payload_type, 8);
        assert_eq!(p.seq, 1);
        assert_eq!(p.timestamp, 160);
        assert_eq!(p.ssrc, 0xcafe_babe);
        assert!(p.csrc.is_empty());
        assert_eq!(p.payload, vec![0xd5, 0xd5]);
    }

    #[test]
    fn skips_extension_and_strips_padding() {
        let mut b = vec![0xb1, 0x00, 0, 5, 0, 0, 0, 0, 0, 0, 0, 9]; // V=2 P X CC=1
        b.extend_from_slice(&7u32.to_be_bytes()); // CSRC
        b.extend_from_slice(&[0xbe, 0xde, 0x00, 0x01, 1, 2, 3, 4]); // ext, 1 word
        b.extend_from_slice(&[10, 11, 12]); // payload
        b.extend_from_slice(&[0, 0, 3]); // padding of 3
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(p.csrc, vec![7]);
        assert_eq!(p.payload, vec![10, 11, 12]);
        assert_eq!(p.seq, 5);
        assert_eq!(p.ssrc, 9);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            RtpPacket::parse(&[0x80; 11]),
            Err(RtpError::TooShort { .. })
        ));
        let mut b = sample().to_bytes();
        b[0] = 0x40 | (b[0] & 0x3f);
        assert_eq!(RtpPacket::parse(&b), Err(RtpError::BadVersion(1)));
        // CSRC count larger than data
        let b = [0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2];
        assert!(matches!(
            RtpPacket::parse(&b),
            Err(RtpError::TooShort { .. })
        ));
        // extension header cut off / extension length past the end
        let b = [0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe];
        assert!(matches!(
            RtpPacket::parse(&b),
            Err(RtpError::TooShort { .. })
        ));
        let b = [0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0, 2, 0];
        assert!(matches!(
            RtpPacket::parse(&b),
            Err(RtpError::TooShort { .. })
        ));
        // padding: count 0, and count larger than payload
        let b = [0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        assert!(matches!(
            RtpPacket::parse(&b),
            Err(RtpError::BadPadding { .. })
        ));
        let b = [0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 3];
        assert!(matches!(
            RtpPacket::parse(&b),
            Err(RtpError::BadPadding { .. })
        ));
        // padding byte only, count 1: empty payload is fine
        let b = [0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(RtpPacket::parse(&b).unwrap().payload, Vec::<u8>::new());
    }

    #[test]
    fn never_panics_on_short_prefixes_and_flag_mixes() {
        let full = sample().to_bytes();
        for len in 0..full.len() {
            for b0 in [0x80u8, 0x90, 0xa0, 0xb0, 0x8f, 0xbf] {
                let mut d = full[..len].to_vec();
                if let Some(x) = d.first_mut() {
                    *x = b0;
                }
                let _ = RtpPacket::parse(&d);
            }
        }
    }

    #[test]
    fn sequence_arithmetic() {
        assert_eq!(seq_delta(65535, 0), 1);
        assert_eq!(seq_delta(0, 65535), -1);
        assert_eq!(seq_delta(10, 10), 0);
        assert!(seq_newer(0, 65535));
        assert!(!seq_newer(65535, 0));
        assert!(seq_newer(100, 99));
        assert_eq!(extend_seq(65535, 0), 65536);
        assert_eq!(extend_seq(65536, 65535), 65535);
        assert_eq!(extend_seq(3 * 65536 + 5, 2), 3 * 65536 + 2);
        assert_eq!(extend_seq(0, 65535), -1);
        assert_eq!(ts_delta(u32::MAX, 159), 160);
        assert_eq!(
            extend_ts(i64::from(u32::MAX), 159),
            i64::from(u32::MAX) + 160
        );
    }
}
