//! A UDP RTP receiver on 127.0.0.1 for peers whose SDP the test controls (sipp scenarios put
//! its port in their `m=audio` line). It records every packet, decodes PCMU/PCMA into PCM
//! placed by RTP timestamp, and collects RFC 4733 telephone-event digits.

use super::audio::{alaw_decode, ulaw_decode, write_wav_i16};
use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest audio a capture keeps (samples at 8 kHz), so garbage timestamps cannot blow memory.
const MAX_SAMPLES: usize = 8000 * 600;

/// One received packet, as seen on the wire.
#[derive(Debug, Clone)]
pub struct RtpInfo {
    pub from: SocketAddr,
    pub at: Instant,
    pub marker: bool,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: Vec<u8>,
}

/// Parse an RTP header (RFC 3550). None if it is not version-2 RTP.
pub fn parse_rtp(data: &[u8], from: SocketAddr, at: Instant) -> Option<RtpInfo> {
    if data.len() < 12 || data[0] >> 6 != 2 {
        return None;
    }
    let cc = usize::from(data[0] & 0x0f);
    let mut off = 12 + 4 * cc;
    if data[0] & 0x10 != 0 {
        let ext = data.get(off..off + 4)?;
        off += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
    }
    let mut end = data.len();
    if data[0] & 0x20 != 0 {
        let pad = usize::from(*data.last()?);
        end = end.checked_sub(pad)?;
    }
    let payload = data.get(off..end)?.to_vec();
    Some(RtpInfo {
        from,
        at,
        marker: data[1] & 0x80 != 0,
        payload_type: data[1] & 0x7f,
        seq: u16::from_be_bytes([data[2], data[3]]),
        timestamp: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
        ssrc: u32::from_be_bytes([data[8], data[9], data[10], data[11]]),
        payload,
    })
}

/// What an [`RtpSink`] received.
#[derive(Debug, Clone, Default)]
pub struct RtpCapture {
    /// Every valid RTP packet in arrival order.
    pub packets: Vec<RtpInfo>,
    /// Datagrams that were not RTP.
    pub bad_datagrams: usize,
}

impl RtpCapture {
    /// Packets with this payload type.
    pub fn count_pt(&self, pt: u8) -> usize {
        self.packets.iter().filter(|p| p.payload_type == pt).count()
    }

    /// Audio packets (PT 0 PCMU or 8 PCMA).
    pub fn audio_packets(&self) -> usize {
        self.count_pt(0) + self.count_pt(8)
    }

    /// Distinct source addresses.
    pub fn sources(&self) -> BTreeSet<SocketAddr> {
        self.packets.iter().map(|p| p.from).collect()
    }

    /// Distinct SSRCs.
    pub fn ssrcs(&self) -> BTreeSet<u32> {
        self.packets.iter().map(|p| p.ssrc).collect()
    }

    /// Decoded 8 kHz PCM of the G.711 packets. Within one SSRC each packet is placed at its
    /// RTP timestamp (gaps become silence, duplicates overwrite); a new SSRC is appended.
    pub fn pcm(&self) -> Vec<i16> {
        let mut out: Vec<i16> = Vec::new();
        let mut base: Option<(u32, u32, usize)> = None; // (ssrc, first ts, offset in out)
        for p in &self.packets {
            let decode: fn(u8) -> i16 = match p.payload_type {
                0 => ulaw_decode,
                8 => alaw_decode,
                _ => continue,
            };
            let (ssrc, ts0, off) = match base {
                Some(b) if b.0 == p.ssrc => b,
                _ => {
                    let b = (p.ssrc, p.timestamp, out.len());
                    base = Some(b);
                    b
                }
            };
            let rel = p.timestamp.wrapping_sub(ts0) as usize;
            let at = off + rel;
            if rel > MAX_SAMPLES || at + p.payload.len() > MAX_SAMPLES {
                continue; // late packet from before ts0 (wrapped) or garbage
            }
            if out.len() < at + p.payload.len() {
                out.resize(at + p.payload.len(), 0);
            }
            for (i, &b) in p.payload.iter().enumerate() {
                out[at + i] = decode(b);
            }
            let _ = ssrc;
        }
        out
    }

    /// Decoded audio as f32 in [-1, 1].
    pub fn pcm_f32(&self) -> Vec<f32> {
        super::audio::i16_to_f32(&self.pcm())
    }

    /// Write the decoded audio as an 8 kHz 16-bit mono WAV.
    pub fn write_wav(&self, path: &Path) -> Result<(), String> {
        write_wav_i16(path, 8000, &self.pcm())
    }

    /// RFC 4733 digits received with this payload type (one per event, on its first end packet).
    pub fn telephone_events(&self, pt: u8) -> String {
        const CODES: &[u8; 16] = b"0123456789*#ABCD";
        let mut out = String::new();
        let mut done: BTreeSet<(u32, u32)> = BTreeSet::new();
        for p in self.packets.iter().filter(|p| p.payload_type == pt) {
            if p.payload.len() < 4 || p.payload[1] & 0x80 == 0 {
                continue;
            }
            if done.insert((p.ssrc, p.timestamp)) {
                if let Some(&c) = CODES.get(usize::from(p.payload[0])) {
                    out.push(char::from(c));
                }
            }
        }
        out
    }

    /// RFC 4733 events of this payload type, grouped by (SSRC, RTP timestamp) in order of
    /// their first packet: what a strict receiver sees of each tone.
    pub fn telephone_event_groups(&self, pt: u8) -> Vec<TelephoneEvent> {
        const CODES: &[u8; 16] = b"0123456789*#ABCD";
        let mut out: Vec<TelephoneEvent> = Vec::new();
        for p in self.packets.iter().filter(|p| p.payload_type == pt) {
            if p.payload.len() < 4 {
                continue;
            }
            let code = p.payload[0];
            let end = p.payload[1] & 0x80 != 0;
            let duration = u16::from_be_bytes([p.payload[2], p.payload[3]]);
            let i = match out
                .iter()
                .position(|e| e.ssrc == p.ssrc && e.timestamp == p.timestamp)
            {
                Some(i) => i,
                None => {
                    out.push(TelephoneEvent {
                        ssrc: p.ssrc,
                        timestamp: p.timestamp,
                        digits: String::new(),
                        first_marker: p.marker,
                        packets: 0,
                        end_packets: 0,
                        durations: Vec::new(),
                    });
                    out.len() - 1
                }
            };
            let e = &mut out[i];
            let c = CODES.get(usize::from(code)).map_or('?', |&c| char::from(c));
            if !e.digits.contains(c) {
                e.digits.push(c);
            }
            e.packets += 1;
            e.end_packets += usize::from(end);
            e.durations.push(duration);
        }
        out
    }

    /// Time from the first to the last packet.
    pub fn span(&self) -> Duration {
        match (self.packets.first(), self.packets.last()) {
            (Some(a), Some(b)) => b.at.duration_since(a.at),
            _ => Duration::ZERO,
        }
    }
}

/// One RFC 4733 event (all packets with one SSRC and RTP timestamp), as received.
#[derive(Debug, Clone, PartialEq)]
pub struct TelephoneEvent {
    /// SSRC of its packets.
    pub ssrc: u32,
    /// The RTP timestamp shared by its packets (the event's start).
    pub timestamp: u32,
    /// The distinct event codes seen in it, as digits (exactly one for a well-formed event).
    pub digits: String,
    /// Whether its first packet (in arrival order) had the marker bit.
    pub first_marker: bool,
    /// Packets received.
    pub packets: usize,
    /// Packets with the E (end) bit.
    pub end_packets: usize,
    /// The duration field of each packet, in arrival order.
    pub durations: Vec<u16>,
}

/// A background UDP receiver on 127.0.0.1 that records RTP until [`RtpSink::finish`].
pub struct RtpSink {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
    thread: Option<JoinHandle<RtpCapture>>,
}

impl RtpSink {
    /// Bind 127.0.0.1:0 and start receiving.
    pub fn bind() -> RtpSink {
        Self::bind_port(0)
    }

    /// Bind 127.0.0.1:`port` and start receiving.
    pub fn bind_port(port: u16) -> RtpSink {
        let sock = UdpSocket::bind(("127.0.0.1", port)).expect("bind RTP sink");
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("set_read_timeout");
        let addr = sock.local_addr().expect("local addr");
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicUsize::new(0));
        let (stop2, count2) = (Arc::clone(&stop), Arc::clone(&count));
        let thread = std::thread::Builder::new()
            .name(format!("rtp-sink-{}", addr.port()))
            .spawn(move || {
                let mut cap = RtpCapture::default();
                let mut buf = [0u8; 2048];
                while !stop2.load(Ordering::Relaxed) {
                    match sock.recv_from(&mut buf) {
                        Ok((n, from)) => match parse_rtp(&buf[..n], from, Instant::now()) {
                            Some(p) => {
                                cap.packets.push(p);
                                count2.fetch_add(1, Ordering::Relaxed);
                            }
                            None => cap.bad_datagrams += 1,
                        },
                        Err(_) => continue, // timeout: check stop flag
                    }
                }
                cap
            })
            .expect("spawn RTP sink thread");
        RtpSink {
            addr,
            stop,
            count,
            thread: Some(thread),
        }
    }

    /// The bound address (127.0.0.1:port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port, to put in an SDP `m=audio` line.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Valid RTP packets received so far.
    pub fn packets_so_far(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Wait until at least `n` packets arrived (true) or `timeout` passed (false).
    pub fn wait_packets(&self, n: usize, timeout: Duration) -> bool {
        super::wait_until(timeout, || (self.packets_so_far() >= n).then_some(())).is_some()
    }

    /// Stop receiving and return everything received.
    pub fn finish(mut self) -> RtpCapture {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for RtpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Read the RTP packets of a classic libpcap file (Ethernet or Linux cooked capture,
/// IPv4, UDP), as sipp's `play_pcap_audio` does. `from` is the packet's UDP source.
pub fn read_pcap_rtp(path: &Path) -> Result<RtpCapture, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let err = |what: &str| format!("{}: {what}", path.display());
    let hdr = data.get(..24).ok_or_else(|| err("short pcap header"))?;
    let magic = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
    let le = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        _ => return Err(err("not a pcap file")),
    };
    let u32_at = |b: &[u8]| {
        let a = [b[0], b[1], b[2], b[3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let linktype = u32_at(&hdr[20..24]);
    let l2 = match linktype {
        1 => 14,   // Ethernet
        113 => 16, // Linux cooked
        _ => return Err(err("unsupported link type")),
    };
    let t0 = Instant::now();
    let mut cap = RtpCapture::default();
    let mut off = 24;
    while off + 16 <= data.len() {
        let rec = &data[off..off + 16];
        let (sec, usec, incl) = (u32_at(&rec[0..4]), u32_at(&rec[4..8]), u32_at(&rec[8..12]));
        let start = off + 16;
        let end = start + incl as usize;
        let pkt = data
            .get(start..end)
            .ok_or_else(|| err("truncated record"))?;
        off = end;
        let Some(ip) = pkt.get(l2..) else { continue };
        if ip.len() < 28 || ip[0] >> 4 != 4 || ip[9] != 17 {
            continue;
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let Some(udp) = ip.get(ihl..) else { continue };
        if udp.len() < 8 {
            continue;
        }
        let src_ip = core::net::Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let from = SocketAddr::from((src_ip, u16::from_be_bytes([udp[0], udp[1]])));
        let at = t0 + Duration::from_secs(u64::from(sec)) + Duration::from_micros(u64::from(usec));
        match parse_rtp(&udp[8..], from, at) {
            Some(p) => cap.packets.push(p),
            None => cap.bad_datagrams += 1,
        }
    }
    Ok(cap)
}
