//! [`IndexRelay`]: an impairment relay for benches that compare two receivers on the same
//! packet stream. Like tests/support/relay.rs it sits between a caller and a callee on
//! 127.0.0.1, forwards SIP (rewriting SDP so that media passes through it) and impairs the
//! media; unlike it, every decision about an RTP packet depends only on the seed, the
//! direction and the packet's index in its stream (its sequence number minus the first one
//! seen), never on arrival order, RTCP or timing. Packet 17 of a call is dropped, or delayed by
//! the same amount, whichever endpoint receives it and whenever the sender's RTCP reports
//! happen to fall. (relay.rs draws from one random stream per direction for every datagram, RTCP
//! included, and termphone randomises its report times per call, so two calls with the same
//! seed diverge after the first report.) Losses are nested: with one seed, the packets lost at
//! 5 % are also lost at 10 %.
//!
//! ```text
//!   caller ──SIP──▶ relay.sip_addr() ──SIP──▶ callee
//!   caller ◀─RTP─▶ relay media ports ◀─RTP─▶ callee   (RTP impaired; RTCP passes untouched)
//! ```
//!
//! RTCP, multiplexed (RFC 5761: second byte 192–223) or on port + 1, is forwarded at once and
//! never dropped. In-dialog requests that go to a Contact directly bypass the relay. The
//! relay's thread stops when the [`IndexRelay`] drops.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What happens to the RTP going one way.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Impair {
    /// Probability (0.0..=1.0) that a packet is dropped.
    pub loss: f64,
    /// Extra delay per packet, uniform in 0..=jitter.
    pub jitter: Duration,
}

impl Impair {
    /// Nothing is lost or delayed.
    pub fn none() -> Impair {
        Impair::default()
    }
}

/// What the relay saw going one way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// RTP packets received from the sender.
    pub rtp: u64,
    /// Indices (sequence number minus the first one, wrapping) of the RTP packets dropped.
    pub dropped: Vec<u16>,
}

/// A running relay (see the module docs).
pub struct IndexRelay {
    sip_addr: SocketAddr,
    seen: Arc<Mutex<[Seen; 2]>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl IndexRelay {
    /// Start in front of `callee` (its SIP UDP address): `to_callee` impairs the RTP the caller
    /// sends, `to_caller` the RTP the callee sends.
    pub fn start(callee: SocketAddr, to_callee: Impair, to_caller: Impair, seed: u64) -> Self {
        assert!(callee.ip().is_loopback(), "loopback only: {callee}");
        let bind = || {
            let s = UdpSocket::bind("127.0.0.1:0").expect("bind relay socket");
            s.set_nonblocking(true).expect("nonblocking");
            s
        };
        let front = [bind(), bind()]; // [SIP, RTP] facing the caller
        let back = [bind(), bind()]; // facing the callee
        let rtcp = [rtcp_next(&front[1]), rtcp_next(&back[1])];
        let sip_addr = front[0].local_addr().expect("local addr");
        let seen = Arc::new(Mutex::new([Seen::default(), Seen::default()]));
        let stop = Arc::new(AtomicBool::new(false));
        let mut state = Relay {
            front,
            back,
            rtcp,
            callee,
            caller_sip: None,
            media: [None, None],
            imp: [to_callee, to_caller],
            seed,
            first: [None, None],
            queue: BinaryHeap::new(),
            order: 0,
            seen: seen.clone(),
        };
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("index-relay".into())
                .spawn(move || state.run(&stop))
                .expect("spawn relay thread")
        };
        IndexRelay {
            sip_addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// Where the caller sends SIP (dial `sip:user@` this).
    pub fn sip_addr(&self) -> SocketAddr {
        self.sip_addr
    }

    /// What went towards the callee (`to_callee`) or the caller so far.
    pub fn seen(&self, to_callee: bool) -> Seen {
        self.seen.lock().unwrap()[usize::from(!to_callee)].clone()
    }
}

impl Drop for IndexRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The port after `s`'s, for RTCP when it is not multiplexed (None if taken).
fn rtcp_next(s: &UdpSocket) -> Option<UdpSocket> {
    let a = s.local_addr().ok()?;
    let s = UdpSocket::bind(SocketAddr::new(a.ip(), a.port().checked_add(1)?)).ok()?;
    s.set_nonblocking(true).ok()?;
    Some(s)
}

/// A uniform number in [0, 1) from a key (SplitMix64's finaliser).
fn uniform(key: u64) -> f64 {
    let mut z = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// A datagram held back: (release time, arrival order, direction, bytes).
type Pending = (Instant, u64, usize, Vec<u8>);

struct Relay {
    /// [SIP, RTP] sockets the caller talks to.
    front: [UdpSocket; 2],
    /// [SIP, RTP] sockets the callee talks to.
    back: [UdpSocket; 2],
    /// RTCP on RTP port + 1: [front, back].
    rtcp: [Option<UdpSocket>; 2],
    callee: SocketAddr,
    caller_sip: Option<SocketAddr>,
    /// Real media addresses: [callee's, caller's] (where direction 0 / 1 goes).
    media: [Option<SocketAddr>; 2],
    imp: [Impair; 2],
    seed: u64,
    /// First RTP sequence number seen per direction.
    first: [Option<u16>; 2],
    /// Datagrams waiting for their release time, earliest first.
    queue: BinaryHeap<Reverse<Pending>>,
    order: u64,
    seen: Arc<Mutex<[Seen; 2]>>,
}

impl Relay {
    fn run(&mut self, stop: &AtomicBool) {
        let mut buf = vec![0u8; 65_536];
        while !stop.load(Ordering::Relaxed) {
            let mut busy = self.sip(&mut buf);
            busy |= self.rtp(&mut buf);
            busy |= self.rtcp_ports(&mut buf);
            self.release();
            if !busy {
                let next = self.queue.peek().map(|Reverse(p)| p.0);
                let wait = next
                    .map(|at| at.saturating_duration_since(Instant::now()))
                    .unwrap_or(Duration::MAX)
                    .min(Duration::from_micros(300));
                std::thread::sleep(wait);
            }
        }
    }

    fn sip(&mut self, buf: &mut [u8]) -> bool {
        let mut busy = false;
        while let Ok((n, from)) = self.front[0].recv_from(buf) {
            busy = true;
            self.caller_sip = Some(from);
            let msg = self.rewrite(&buf[..n], 0);
            let _ = self.back[0].send_to(&msg, self.callee);
        }
        while let Ok((n, _)) = self.back[0].recv_from(buf) {
            busy = true;
            let msg = self.rewrite(&buf[..n], 1);
            if let Some(to) = self.caller_sip {
                let _ = self.front[0].send_to(&msg, to);
            }
        }
        busy
    }

    /// A message going to the callee (`dir` 0) or the caller (1): its SDP's media address
    /// becomes the relay's socket on the receiver's side, the real one is remembered.
    fn rewrite(&mut self, msg: &[u8], dir: usize) -> Vec<u8> {
        let Some(split) = msg.windows(4).position(|w| w == b"\r\n\r\n") else {
            return msg.to_vec();
        };
        let Ok(sdp) = std::str::from_utf8(&msg[split + 4..]) else {
            return msg.to_vec();
        };
        if !sdp.starts_with("v=0") {
            return msg.to_vec();
        }
        let ours = if dir == 0 {
            &self.back[1]
        } else {
            &self.front[1]
        };
        let ours = ours.local_addr().expect("local addr");
        let (mut ip, mut port, mut body) = (None, None, String::new());
        for line in sdp.split_inclusive('\n') {
            let text = line.trim_end_matches(['\r', '\n']);
            let eol = &line[text.len()..];
            if let Some(addr) = text.strip_prefix("c=IN IP4 ") {
                ip = addr.trim().parse::<std::net::IpAddr>().ok();
                body.push_str(&format!("c=IN IP4 {}{eol}", ours.ip()));
            } else if let Some(rest) = text.strip_prefix("m=audio ") {
                let (p, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                port = p.parse::<u16>().ok();
                body.push_str(&format!("m=audio {} {tail}{eol}", ours.port()));
            } else {
                body.push_str(line);
            }
        }
        if let (Some(ip), Some(port)) = (ip, port) {
            // The sender of this SDP receives media of the other direction.
            self.media[1 - dir] = Some(SocketAddr::new(ip, port));
        }
        let head = String::from_utf8_lossy(&msg[..split]);
        let mut out = String::new();
        for line in head.split("\r\n") {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("content-length:") || lower.starts_with("l:") {
                out.push_str(&format!("Content-Length: {}\r\n", body.len()));
            } else {
                out.push_str(line);
                out.push_str("\r\n");
            }
        }
        out.push_str("\r\n");
        out.push_str(&body);
        out.into_bytes()
    }

    fn rtp(&mut self, buf: &mut [u8]) -> bool {
        let mut busy = false;
        for dir in 0..2 {
            loop {
                let sock = if dir == 0 {
                    &self.front[1]
                } else {
                    &self.back[1]
                };
                let Ok((n, from)) = sock.recv_from(buf) else {
                    break;
                };
                busy = true;
                // Symmetric RTP: the sender's real address receives the other direction.
                self.media[1 - dir] = Some(from);
                self.impair(dir, &buf[..n]);
            }
        }
        busy
    }

    fn impair(&mut self, dir: usize, data: &[u8]) {
        let is_rtcp = data.get(1).is_some_and(|b| (192..=223).contains(b));
        let is_rtp = data.len() >= 12 && data[0] >> 6 == 2 && !is_rtcp;
        let mut at = Instant::now();
        if is_rtp {
            let seq = u16::from_be_bytes([data[2], data[3]]);
            let index = seq.wrapping_sub(*self.first[dir].get_or_insert(seq));
            let key = self.seed ^ ((dir as u64) << 62) ^ (u64::from(index) << 8);
            let imp = self.imp[dir];
            let mut seen = self.seen.lock().unwrap();
            seen[dir].rtp += 1;
            if uniform(key) < imp.loss {
                seen[dir].dropped.push(index);
                return;
            }
            let j = imp.jitter.as_secs_f64() * uniform(key ^ 0x5a);
            at += Duration::from_secs_f64(j);
        }
        self.order += 1;
        self.queue
            .push(Reverse((at, self.order, dir, data.to_vec())));
    }

    fn release(&mut self) {
        let now = Instant::now();
        while self.queue.peek().is_some_and(|Reverse(p)| p.0 <= now) {
            let Reverse((_, _, dir, data)) = self.queue.pop().expect("peeked");
            let sock = if dir == 0 {
                &self.back[1]
            } else {
                &self.front[1]
            };
            if let Some(to) = self.media[dir] {
                let _ = sock.send_to(&data, to);
            }
        }
    }

    /// RTCP on port + 1 (not multiplexed) passes untouched.
    fn rtcp_ports(&mut self, buf: &mut [u8]) -> bool {
        let mut busy = false;
        let plus1 = |a: Option<SocketAddr>| a.map(|a| SocketAddr::new(a.ip(), a.port() + 1));
        if let [Some(front), Some(back)] = &self.rtcp {
            while let Ok((n, _)) = front.recv_from(buf) {
                busy = true;
                if let Some(to) = plus1(self.media[0]) {
                    let _ = back.send_to(&buf[..n], to);
                }
            }
            while let Ok((n, _)) = back.recv_from(buf) {
                busy = true;
                if let Some(to) = plus1(self.media[1]) {
                    let _ = front.send_to(&buf[..n], to);
                }
            }
        }
        busy
    }
}
