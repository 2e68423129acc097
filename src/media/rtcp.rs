//! RTCP packets (RFC 3550 §6): sender and receiver reports, SDES, BYE, compound packets, NTP
//! timestamps and the RTP/RTCP demultiplexing rule of RFC 5761.
//!
//! Parsing never panics: every length field and count is checked against the bytes present,
//! and a failure names the byte offset of the offending packet inside the compound packet.
//! Packet types we do not interpret (APP 204, RTPFB 205, PSFB 206, XR 207, anything else) are
//! returned as [`RtcpPacket::Other`] with their body, so a caller can skip them.

use core::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The only RTCP version (same as RTP's).
pub const RTCP_VERSION: u8 = 2;
/// Packet type of a sender report.
pub const PT_SR: u8 = 200;
/// Packet type of a receiver report.
pub const PT_RR: u8 = 201;
/// Packet type of a source description.
pub const PT_SDES: u8 = 202;
/// Packet type of a goodbye.
pub const PT_BYE: u8 = 203;
/// Packet type of an application-defined packet (not interpreted here).
pub const PT_APP: u8 = 204;
/// SDES item type CNAME (canonical end-point identifier).
pub const SDES_CNAME: u8 = 1;
/// Most report blocks, SDES chunks or BYE sources one packet can carry (5-bit count).
pub const MAX_COUNT: usize = 31;
/// Length of one report block.
pub const REPORT_BLOCK_LEN: usize = 24;

/// RFC 5761 §4 demultiplexing of RTP and RTCP on one port: the second octet of an RTCP packet
/// is its packet type, and RTCP packet types 192..=223 are exactly the values an RTP second
/// octet (marker bit + payload type) would take for payload types 64..=95, which RFC 5761
/// forbids on a multiplexed session. So a datagram whose second octet lies in 192..=223 is
/// RTCP; anything else goes to the RTP parser. (Neither the version nor the length is checked
/// here; the parsers do that.)
pub fn is_rtcp(packet: &[u8]) -> bool {
    packet.len() >= 2 && (192..=223).contains(&packet[1])
}

/// A 64-bit NTP timestamp (RFC 3550 §4): seconds since 1900-01-01 in the high 32 bits and the
/// fraction of a second in the low 32 bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NtpTime(pub u64);

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

impl NtpTime {
    /// The NTP timestamp of a wall-clock time (times before 1970 give 1970; the 32-bit
    /// seconds field wraps in 2036 as NTP era 1 does).
    pub fn from_system_time(t: SystemTime) -> NtpTime {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        NtpTime::from_duration_since_1900(since + Duration::from_secs(NTP_UNIX_OFFSET))
    }

    /// The NTP timestamp `d` after 1900-01-01 (modulo 2^32 seconds).
    pub fn from_duration_since_1900(d: Duration) -> NtpTime {
        let secs = d.as_secs() & 0xffff_ffff;
        let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
        NtpTime(secs << 32 | frac)
    }

    /// The middle 32 bits (16 bits of seconds, 16 of fraction): the "compact" form used by
    /// LSR and DLSR, in units of 1/65536 s.
    pub fn middle32(self) -> u32 {
        (self.0 >> 16) as u32
    }

    /// This timestamp plus a duration (wrapping at the end of the NTP era).
    pub fn wrapping_add(self, d: Duration) -> NtpTime {
        let units = (d.as_nanos() << 32) / 1_000_000_000;
        NtpTime(self.0.wrapping_add(units as u64))
    }
}

/// A duration in the 1/65536 s units of LSR/DLSR (saturating at `u32::MAX`, about 18 h).
pub fn duration_to_compact(d: Duration) -> u32 {
    let units = d.as_nanos().saturating_mul(65536) / 1_000_000_000;
    u32::try_from(units).unwrap_or(u32::MAX)
}

/// A duration from the 1/65536 s units of LSR/DLSR.
pub fn compact_to_duration(units: u32) -> Duration {
    Duration::from_nanos(u64::from(units) * 1_000_000_000 / 65536)
}

/// One reception report block (RFC 3550 §6.4.1): what the reporter saw of one source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportBlock {
    /// The source this block is about.
    pub ssrc: u32,
    /// Fraction of packets lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed on the wire: clamped to -8388608..=8388607 when
    /// written; negative when duplicates outnumber losses).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received (cycles in the high 16 bits).
    pub extended_highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received from this source (0: none).
    pub last_sr: u32,
    /// Delay since that SR was received, in 1/65536 s (0: no SR received).
    pub delay_since_last_sr: u32,
}

/// Smallest and largest 24-bit signed cumulative loss.
const CUM_LOST_MIN: i32 = -0x80_0000;
const CUM_LOST_MAX: i32 = 0x7f_ffff;

impl ReportBlock {
    fn parse(d: &[u8]) -> ReportBlock {
        let raw = be32(d, 4) & 0x00ff_ffff;
        // sign-extend the 24-bit field
        let cumulative_lost = ((raw << 8) as i32) >> 8;
        ReportBlock {
            ssrc: be32(d, 0),
            fraction_lost: d[4],
            cumulative_lost,
            extended_highest_seq: be32(d, 8),
            jitter: be32(d, 12),
            last_sr: be32(d, 16),
            delay_since_last_sr: be32(d, 20),
        }
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        let lost = self.cumulative_lost.clamp(CUM_LOST_MIN, CUM_LOST_MAX) as u32 & 0x00ff_ffff;
        out.extend_from_slice(&(u32::from(self.fraction_lost) << 24 | lost).to_be_bytes());
        out.extend_from_slice(&self.extended_highest_seq.to_be_bytes());
        out.extend_from_slice(&self.jitter.to_be_bytes());
        out.extend_from_slice(&self.last_sr.to_be_bytes());
        out.extend_from_slice(&self.delay_since_last_sr.to_be_bytes());
    }
}

/// A sender report (PT 200).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderReport {
    /// The sender.
    pub ssrc: u32,
    /// Wall-clock time of this report.
    pub ntp: NtpTime,
    /// The same instant in the sender's RTP timestamp units.
    pub rtp_timestamp: u32,
    /// RTP packets sent since the start (wraps).
    pub packet_count: u32,
    /// RTP payload octets sent since the start (wraps).
    pub octet_count: u32,
    /// Reception reports (at most 31 are written).
    pub reports: Vec<ReportBlock>,
    /// Profile-specific extension after the report blocks (kept, not interpreted).
    pub extension: Vec<u8>,
}

/// A receiver report (PT 201).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiverReport {
    /// The reporter.
    pub ssrc: u32,
    /// Reception reports (at most 31 are written).
    pub reports: Vec<ReportBlock>,
    /// Profile-specific extension after the report blocks (kept, not interpreted).
    pub extension: Vec<u8>,
}

/// One SDES item: a type (1 CNAME, 2 NAME, 3 EMAIL, 4 PHONE, 5 LOC, 6 TOOL, 7 NOTE, 8 PRIV)
/// and its value (UTF-8 by the RFC, kept as bytes; at most 255 are written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesItem {
    /// Item type, 1..=255 (0 ends a chunk's list and is never an item).
    pub kind: u8,
    /// The value.
    pub value: Vec<u8>,
}

/// One SDES chunk: a source and its items.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SdesChunk {
    /// The source described.
    pub ssrc: u32,
    /// Its items (items of type 0 are not written).
    pub items: Vec<SdesItem>,
}

impl SdesChunk {
    /// A chunk with just a CNAME.
    pub fn cname(ssrc: u32, cname: &str) -> SdesChunk {
        SdesChunk {
            ssrc,
            items: vec![SdesItem {
                kind: SDES_CNAME,
                value: cname.as_bytes().to_vec(),
            }],
        }
    }

    /// The CNAME item's value, if present and UTF-8.
    pub fn cname_str(&self) -> Option<&str> {
        self.items
            .iter()
            .find(|i| i.kind == SDES_CNAME)
            .and_then(|i| core::str::from_utf8(&i.value).ok())
    }
}

/// A goodbye (PT 203).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Goodbye {
    /// The sources leaving (at most 31 are written).
    pub sources: Vec<u32>,
    /// Reason for leaving (at most 255 bytes are written).
    pub reason: Option<Vec<u8>>,
}

/// One RTCP packet of a compound packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    /// Sender report.
    SenderReport(SenderReport),
    /// Receiver report.
    ReceiverReport(ReceiverReport),
    /// Source description.
    SourceDescription(Vec<SdesChunk>),
    /// Goodbye.
    Goodbye(Goodbye),
    /// A packet type not interpreted here (APP, RTPFB, PSFB, XR, ...), kept whole.
    Other {
        /// Packet type (second octet).
        packet_type: u8,
        /// The 5-bit count/subtype field.
        count: u8,
        /// Everything after the 4-byte header, without padding.
        body: Vec<u8>,
    },
}

/// What is wrong with an RTCP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpErrorKind {
    /// The datagram is empty.
    Empty,
    /// Fewer than the 4 bytes of a packet header left.
    TooShort {
        /// Bytes left.
        len: usize,
    },
    /// Version field is not 2.
    BadVersion(u8),
    /// The length field reaches past the end of the datagram.
    LengthPastEnd {
        /// Bytes the length field claims (header included).
        declared: usize,
        /// Bytes left in the datagram.
        available: usize,
    },
    /// Padding bit set but the padding count is 0 or longer than the packet body.
    BadPadding {
        /// Padding count from the last byte.
        count: usize,
        /// Bytes of body available for it.
        available: usize,
    },
    /// The body is shorter than the packet's count and fixed fields need.
    Truncated {
        /// Which packet ("SR", "RR", "SDES", "BYE").
        packet: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes of body present.
        available: usize,
    },
    /// An SDES chunk's item list runs past the end of the packet (no terminating null item,
    /// or an item longer than what is left).
    SdesPastEnd {
        /// Index of the chunk.
        chunk: usize,
    },
}

/// An RTCP parse error: what, and at which byte of the datagram the packet at fault starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtcpError {
    /// Byte offset of the packet within the compound datagram.
    pub offset: usize,
    /// What is wrong.
    pub kind: RtcpErrorKind,
}

impl fmt::Display for RtcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RTCP packet at byte {}: ", self.offset)?;
        match &self.kind {
            RtcpErrorKind::Empty => write!(f, "empty datagram"),
            RtcpErrorKind::TooShort { len } => {
                write!(f, "{len} bytes left, a header needs 4")
            }
            RtcpErrorKind::BadVersion(v) => write!(f, "version {v}, expected 2"),
            RtcpErrorKind::LengthPastEnd {
                declared,
                available,
            } => write!(
                f,
                "length field says {declared} bytes, only {available} left"
            ),
            RtcpErrorKind::BadPadding { count, available } => write!(
                f,
                "padding count {count} invalid for a body of {available} bytes"
            ),
            RtcpErrorKind::Truncated {
                packet,
                needed,
                available,
            } => write!(
                f,
                "{packet} body of {available} bytes, its count needs {needed}"
            ),
            RtcpErrorKind::SdesPastEnd { chunk } => {
                write!(f, "SDES chunk {chunk} runs past the end of the packet")
            }
        }
    }
}

impl std::error::Error for RtcpError {}

fn be16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

fn be32(d: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

fn be64(d: &[u8], at: usize) -> u64 {
    u64::from(be32(d, at)) << 32 | u64::from(be32(d, at + 4))
}

/// Walks the packets of a compound RTCP datagram; yields each packet or the first error (after
/// which it stops).
#[derive(Debug, Clone)]
pub struct CompoundIter<'a> {
    data: &'a [u8],
    at: usize,
    failed: bool,
}

impl<'a> CompoundIter<'a> {
    /// Iterate over the packets of `data`.
    pub fn new(data: &'a [u8]) -> CompoundIter<'a> {
        CompoundIter {
            data,
            at: 0,
            failed: false,
        }
    }
}

impl Iterator for CompoundIter<'_> {
    type Item = Result<RtcpPacket, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at >= self.data.len() {
            return None;
        }
        let offset = self.at;
        match RtcpPacket::parse_one(&self.data[offset..]) {
            Ok((pkt, used)) => {
                self.at += used;
                Some(Ok(pkt))
            }
            Err(kind) => {
                self.failed = true;
                Some(Err(RtcpError { offset, kind }))
            }
        }
    }
}

/// Parse a whole compound RTCP datagram (RFC 3550 §6.1). The packets' lengths must add up to
/// the datagram exactly; an error anywhere rejects the datagram (as RFC 3550 A.2 does). The
/// first packet is not required to be an SR or RR (RFC 5506 reduced-size RTCP is accepted),
/// and padding is accepted on any packet as long as its count fits that packet.
pub fn parse_compound(data: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    if data.is_empty() {
        return Err(RtcpError {
            offset: 0,
            kind: RtcpErrorKind::Empty,
        });
    }
    CompoundIter::new(data).collect()
}

/// Serialize packets into one compound datagram.
pub fn build_compound(packets: &[RtcpPacket]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    for p in packets {
        p.write_to(&mut out);
    }
    out
}

fn truncated(packet: &'static str, needed: usize, available: usize) -> RtcpErrorKind {
    RtcpErrorKind::Truncated {
        packet,
        needed,
        available,
    }
}

fn parse_blocks(
    packet: &'static str,
    body: &[u8],
    fixed: usize,
    count: usize,
) -> Result<(Vec<ReportBlock>, Vec<u8>), RtcpErrorKind> {
    let needed = fixed + REPORT_BLOCK_LEN * count;
    if body.len() < needed {
        return Err(truncated(packet, needed, body.len()));
    }
    let reports = (0..count)
        .map(|i| ReportBlock::parse(&body[fixed + REPORT_BLOCK_LEN * i..]))
        .collect();
    Ok((reports, body[needed..].to_vec()))
}

fn parse_sdes(body: &[u8], count: usize) -> Result<Vec<SdesChunk>, RtcpErrorKind> {
    let mut chunks = Vec::with_capacity(count);
    let mut at = 0;
    for chunk in 0..count {
        if body.len() < at + 4 {
            return Err(truncated("SDES", at + 4, body.len()));
        }
        let ssrc = be32(body, at);
        at += 4;
        let mut items = Vec::new();
        loop {
            let Some(&kind) = body.get(at) else {
                return Err(RtcpErrorKind::SdesPastEnd { chunk });
            };
            if kind == 0 {
                // the null item ends the list; pad to the next 32-bit boundary
                at = (at + 4) & !3;
                break;
            }
            let Some(&len) = body.get(at + 1) else {
                return Err(RtcpErrorKind::SdesPastEnd { chunk });
            };
            let start = at + 2;
            let end = start + usize::from(len);
            if end > body.len() {
                return Err(RtcpErrorKind::SdesPastEnd { chunk });
            }
            items.push(SdesItem {
                kind,
                value: body[start..end].to_vec(),
            });
            at = end;
        }
        if at > body.len() {
            // the padding after the null item is missing: tolerate a short last word
            at = body.len();
        }
        chunks.push(SdesChunk { ssrc, items });
    }
    Ok(chunks)
}

fn parse_bye(body: &[u8], count: usize) -> Result<Goodbye, RtcpErrorKind> {
    let needed = 4 * count;
    if body.len() < needed {
        return Err(truncated("BYE", needed, body.len()));
    }
    let sources = (0..count).map(|i| be32(body, 4 * i)).collect();
    let reason = match body.get(needed) {
        None => None,
        Some(&len) => {
            let end = needed + 1 + usize::from(len);
            if end > body.len() {
                return Err(truncated("BYE", end, body.len()));
            }
            Some(body[needed + 1..end].to_vec())
        }
    };
    Ok(Goodbye { sources, reason })
}

impl RtcpPacket {
    /// Parse the first packet of `data`; returns it and the bytes it used.
    fn parse_one(data: &[u8]) -> Result<(RtcpPacket, usize), RtcpErrorKind> {
        if data.len() < 4 {
            return Err(RtcpErrorKind::TooShort { len: data.len() });
        }
        let version = data[0] >> 6;
        if version != RTCP_VERSION {
            return Err(RtcpErrorKind::BadVersion(version));
        }
        let padding = data[0] & 0x20 != 0;
        let count = data[0] & 0x1f;
        let packet_type = data[1];
        let len = 4 * (usize::from(be16(data, 2)) + 1);
        if len > data.len() {
            return Err(RtcpErrorKind::LengthPastEnd {
                declared: len,
                available: data.len(),
            });
        }
        let mut body = &data[4..len];
        if padding {
            let pad = usize::from(body.last().copied().unwrap_or(0));
            if pad == 0 || pad > body.len() {
                return Err(RtcpErrorKind::BadPadding {
                    count: pad,
                    available: body.len(),
                });
            }
            body = &body[..body.len() - pad];
        }
        let n = usize::from(count);
        let pkt = match packet_type {
            PT_SR => {
                if body.len() < 24 {
                    return Err(truncated("SR", 24 + REPORT_BLOCK_LEN * n, body.len()));
                }
                let (reports, extension) = parse_blocks("SR", body, 24, n)?;
                RtcpPacket::SenderReport(SenderReport {
                    ssrc: be32(body, 0),
                    ntp: NtpTime(be64(body, 4)),
                    rtp_timestamp: be32(body, 12),
                    packet_count: be32(body, 16),
                    octet_count: be32(body, 20),
                    reports,
                    extension,
                })
            }
            PT_RR => {
                if body.len() < 4 {
                    return Err(truncated("RR", 4 + REPORT_BLOCK_LEN * n, body.len()));
                }
                let (reports, extension) = parse_blocks("RR", body, 4, n)?;
                RtcpPacket::ReceiverReport(ReceiverReport {
                    ssrc: be32(body, 0),
                    reports,
                    extension,
                })
            }
            PT_SDES => RtcpPacket::SourceDescription(parse_sdes(body, n)?),
            PT_BYE => RtcpPacket::Goodbye(parse_bye(body, n)?),
            _ => RtcpPacket::Other {
                packet_type,
                count,
                body: body.to_vec(),
            },
        };
        Ok((pkt, len))
    }

    /// Serialize one packet (its own datagram; see [`build_compound`] for several).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }

    /// Append the serialized packet to `out`. Counts above 31 and SDES values or BYE reasons
    /// above 255 bytes are cut to what the format can carry. A body that is not a whole number
    /// of 32-bit words (an odd-sized extension or unknown body) is padded with the padding bit.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        let (count, pt) = match self {
            RtcpPacket::SenderReport(sr) => {
                let n = sr.reports.len().min(MAX_COUNT);
                out.extend_from_slice(&sr.ssrc.to_be_bytes());
                out.extend_from_slice(&sr.ntp.0.to_be_bytes());
                out.extend_from_slice(&sr.rtp_timestamp.to_be_bytes());
                out.extend_from_slice(&sr.packet_count.to_be_bytes());
                out.extend_from_slice(&sr.octet_count.to_be_bytes());
                for b in &sr.reports[..n] {
                    b.write_to(out);
                }
                out.extend_from_slice(&sr.extension);
                (n, PT_SR)
            }
            RtcpPacket::ReceiverReport(rr) => {
                let n = rr.reports.len().min(MAX_COUNT);
                out.extend_from_slice(&rr.ssrc.to_be_bytes());
                for b in &rr.reports[..n] {
                    b.write_to(out);
                }
                out.extend_from_slice(&rr.extension);
                (n, PT_RR)
            }
            RtcpPacket::SourceDescription(chunks) => {
                let n = chunks.len().min(MAX_COUNT);
                for c in &chunks[..n] {
                    let chunk_start = out.len();
                    out.extend_from_slice(&c.ssrc.to_be_bytes());
                    for item in c.items.iter().filter(|i| i.kind != 0) {
                        let len = item.value.len().min(255);
                        out.push(item.kind);
                        out.push(len as u8);
                        out.extend_from_slice(&item.value[..len]);
                    }
                    // null item, then null octets up to the next 32-bit boundary
                    out.push(0);
                    while !(out.len() - chunk_start).is_multiple_of(4) {
                        out.push(0);
                    }
                }
                (n, PT_SDES)
            }
            RtcpPacket::Goodbye(bye) => {
                let n = bye.sources.len().min(MAX_COUNT);
                for s in &bye.sources[..n] {
                    out.extend_from_slice(&s.to_be_bytes());
                }
                if let Some(reason) = &bye.reason {
                    let len = reason.len().min(255);
                    out.push(len as u8);
                    out.extend_from_slice(&reason[..len]);
                    while !(out.len() - start).is_multiple_of(4) {
                        out.push(0);
                    }
                }
                (n, PT_BYE)
            }
            RtcpPacket::Other {
                packet_type,
                count,
                body,
            } => {
                out.extend_from_slice(body);
                (usize::from(count & 0x1f), *packet_type)
            }
        };
        let mut b0 = (RTCP_VERSION << 6) | count as u8;
        let rem = (out.len() - start) % 4;
        if rem != 0 {
            let pad = 4 - rem;
            out.extend(std::iter::repeat_n(0, pad - 1));
            out.push(pad as u8);
            b0 |= 0x20;
        }
        // a body past 256 KiB cannot be described by the 16-bit length: cut it (only an
        // absurd extension or unknown body could get there)
        let max_len = 4 * (usize::from(u16::MAX) + 1);
        if out.len() - start > max_len {
            out.truncate(start + max_len);
            b0 &= !0x20;
        }
        let words = ((out.len() - start) / 4 - 1) as u16;
        out[start] = b0;
        out[start + 1] = pt;
        out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(ssrc: u32) -> ReportBlock {
        ReportBlock {
            ssrc,
            fraction_lost: 25,
            cumulative_lost: -3,
            extended_highest_seq: 0x0001_0005,
            jitter: 77,
            last_sr: 0x1234_5678,
            delay_since_last_sr: 65536,
        }
    }

    #[test]
    fn rr_known_bytes() {
        let rr = RtcpPacket::ReceiverReport(ReceiverReport {
            ssrc: 0xdead_beef,
            reports: vec![block(7)],
            extension: vec![],
        });
        let b = rr.to_bytes();
        assert_eq!(b.len(), 32);
        assert_eq!(&b[..4], &[0x81, 201, 0, 7]);
        assert_eq!(&b[4..8], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(&b[8..12], &[0, 0, 0, 7]);
        // fraction 25, cumulative -3 as 24-bit two's complement
        assert_eq!(&b[12..16], &[25, 0xff, 0xff, 0xfd]);
        assert_eq!(parse_compound(&b).unwrap(), vec![rr]);
    }

    #[test]
    fn cumulative_lost_is_clamped_to_24_bits() {
        let mut b = block(1);
        b.cumulative_lost = i32::MAX;
        let mut out = Vec::new();
        b.write_to(&mut out);
        assert_eq!(ReportBlock::parse(&out).cumulative_lost, 0x7f_ffff);
        b.cumulative_lost = i32::MIN;
        out.clear();
        b.write_to(&mut out);
        assert_eq!(ReportBlock::parse(&out).cumulative_lost, -0x80_0000);
    }

    #[test]
    fn sdes_padding_and_bye_reason() {
        let sdes = RtcpPacket::SourceDescription(vec![
            SdesChunk::cname(1, "ab"),  // 4 + 2 + 2 + null = 9 -> 12
            SdesChunk::cname(2, "abc"), // 4 + 2 + 3 + null = 10 -> 12
        ]);
        let b = sdes.to_bytes();
        assert_eq!(b.len(), 4 + 12 + 12);
        assert_eq!(b[0] & 0x20, 0, "no padding bit: chunks pad themselves");
        assert_eq!(parse_compound(&b).unwrap(), vec![sdes]);

        let bye = RtcpPacket::Goodbye(Goodbye {
            sources: vec![9],
            reason: Some(b"done".to_vec()),
        });
        let b = bye.to_bytes();
        assert_eq!(b.len(), 4 + 4 + 8);
        assert_eq!(parse_compound(&b).unwrap(), vec![bye]);
    }

    #[test]
    fn odd_bodies_get_padding_bit() {
        let other = RtcpPacket::Other {
            packet_type: 207,
            count: 0,
            body: vec![1, 2, 3, 4, 5],
        };
        let b = other.to_bytes();
        assert_eq!(b.len(), 12);
        assert_eq!(b[0], 0xa0);
        assert_eq!(b[11], 3);
        assert_eq!(parse_compound(&b).unwrap(), vec![other]);
    }

    #[test]
    fn ntp_conversion() {
        let t = UNIX_EPOCH + Duration::new(1, 500_000_000);
        let n = NtpTime::from_system_time(t);
        assert_eq!(n.0 >> 32, NTP_UNIX_OFFSET + 1);
        assert_eq!(n.0 & 0xffff_ffff, 0x8000_0000);
        assert_eq!(n.middle32() & 0xffff, 0x8000);
        assert_eq!(
            n.wrapping_add(Duration::from_millis(500)).0 >> 32,
            NTP_UNIX_OFFSET + 2
        );
        assert_eq!(duration_to_compact(Duration::from_secs(2)), 131072);
        assert_eq!(compact_to_duration(32768), Duration::from_millis(500));
    }

    #[test]
    fn demux_rule() {
        assert!(is_rtcp(&[0x80, 200]));
        assert!(is_rtcp(&[0x81, 201, 0, 1]));
        assert!(is_rtcp(&[0x80, 223]));
        assert!(!is_rtcp(&[0x80, 191]));
        assert!(!is_rtcp(&[0x80, 224]));
        assert!(!is_rtcp(&[0x80, 0x80])); // RTP PT 0 with marker
        assert!(!is_rtcp(&[0x80]));
        assert!(!is_rtcp(&[]));
    }
}
