//! An impairment relay for calls between two endpoints on 127.0.0.1: it forwards SIP
//! unchanged (except that SDP bodies are rewritten so media flows through the relay) and adds
//! loss (random or bursty), delay with jitter, reordering and duplication to the media, seeded
//! so that a run can be repeated exactly.
//!
//! ```text
//!   caller ──SIP──▶ relay.sip_addr() ──SIP──▶ callee
//!   caller ◀─RTP─▶ relay media ports ◀─RTP─▶ callee      (impaired, both directions)
//! ```
//!
//! The caller dials `sip:user@RELAY_SIP_ADDR`; the relay forwards each datagram from the
//! caller to the callee and each datagram from the callee back to the last caller address.
//! In an SDP offer or answer it replaces the connection address and the audio port with one of
//! its own media sockets and remembers the real ones, so RTP (and, for a non-muxed session,
//! RTCP on port + 1, which is forwarded unimpaired) passes through it. In-dialog requests
//! (ACK, BYE) that go to the Contact directly bypass the relay; only the media is impaired.
//!
//! Only loopback addresses are used. The relay's thread stops when the [`Relay`] drops.

use std::collections::BinaryHeap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How packets are lost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    /// Nothing is lost.
    None,
    /// Each packet is lost independently with this probability (0.0..=1.0).
    Random(f64),
    /// Gilbert–Elliott: in the good state nothing is lost; `p` = probability to go from good
    /// to bad per packet, `r` = probability to go back; in the bad state every packet is lost.
    /// Mean loss = p / (p + r); mean burst length = 1 / r.
    Bursty { p: f64, r: f64 },
}

impl Loss {
    /// Bursty loss with this mean loss rate and mean burst length (packets).
    pub fn bursty(rate: f64, mean_burst: f64) -> Loss {
        let r = 1.0 / mean_burst.max(1.0);
        let p = rate * r / (1.0 - rate).max(1e-9);
        Loss::Bursty { p, r }
    }
}

/// What the relay does to media packets, per direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairment {
    /// Loss model.
    pub loss: Loss,
    /// Fixed one-way delay added to every packet.
    pub delay: Duration,
    /// Extra delay per packet, uniform in 0..=jitter (later packets may overtake earlier ones
    /// when the jitter exceeds the packet interval).
    pub jitter: Duration,
    /// Probability that a packet is held back by `reorder_by` more (explicit reordering).
    pub reorder: f64,
    /// How long a reordered packet is held back.
    pub reorder_by: Duration,
    /// Probability that a packet is sent twice.
    pub duplicate: f64,
}

impl Default for Impairment {
    fn default() -> Impairment {
        Impairment {
            loss: Loss::None,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            reorder: 0.0,
            reorder_by: Duration::from_millis(40),
            duplicate: 0.0,
        }
    }
}

impl Impairment {
    /// No impairment at all.
    pub fn none() -> Impairment {
        Impairment::default()
    }
    /// Random loss `rate` (0.0..=1.0) and uniform jitter up to `jitter`.
    pub fn loss_jitter(rate: f64, jitter: Duration) -> Impairment {
        Impairment {
            loss: if rate > 0.0 {
                Loss::Random(rate)
            } else {
                Loss::None
            },
            jitter,
            ..Impairment::default()
        }
    }
}

/// Counters of what the relay did to media packets (both directions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Media packets received from either side.
    pub received: u64,
    /// Media packets forwarded (duplicates counted once per copy).
    pub forwarded: u64,
    /// Media packets dropped by the loss model.
    pub dropped: u64,
    /// Extra copies sent.
    pub duplicated: u64,
    /// Packets held back on purpose (explicit reordering).
    pub reordered: u64,
    /// SIP datagrams forwarded.
    pub sip: u64,
    /// SDP bodies rewritten.
    pub sdp_rewritten: u64,
}

/// A running relay. Dropping it stops its thread.
pub struct Relay {
    sip_addr: SocketAddr,
    stats: Arc<Mutex<RelayStats>>,
    drops: Arc<Mutex<Vec<(usize, u16)>>>,
    first_seq: Arc<Mutex<[Option<u16>; 2]>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    /// Start a relay in front of `callee` (its SIP UDP address), impairing media in both
    /// directions with `imp`, seeded with `seed`.
    pub fn start(callee: SocketAddr, imp: Impairment, seed: u64) -> Relay {
        Relay::start_asymmetric(callee, imp, imp, seed)
    }

    /// Like [`Relay::start`] with a different impairment per direction: `to_callee` for media
    /// from the caller, `to_caller` for media from the callee.
    pub fn start_asymmetric(
        callee: SocketAddr,
        to_callee: Impairment,
        to_caller: Impairment,
        seed: u64,
    ) -> Relay {
        assert!(callee.ip().is_loopback(), "loopback only: {callee}");
        let bind = || UdpSocket::bind("127.0.0.1:0").expect("bind relay socket");
        let state = State {
            sip_front: bind(),
            sip_back: bind(),
            media_front: bind(),
            media_back: bind(),
            rtcp_front: None,
            rtcp_back: None,
            callee,
            caller_sip: None,
            caller_media: None,
            callee_media: None,
            imp: [to_callee, to_caller],
            gilbert_bad: [false, false],
            rng: [
                StdRng::seed_from_u64(seed),
                StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15),
            ],
            queue: BinaryHeap::new(),
            seq: 0,
            drops: Arc::new(Mutex::new(Vec::new())),
            first_seq: Arc::new(Mutex::new([None, None])),
        };
        let drops = state.drops.clone();
        let first_seq = state.first_seq.clone();
        let sip_addr = state.sip_front.local_addr().unwrap();
        let stats = Arc::new(Mutex::new(RelayStats::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stats, stop) = (stats.clone(), stop.clone());
            std::thread::Builder::new()
                .name("impairment-relay".into())
                .spawn(move || state.run(&stats, &stop))
                .expect("spawn relay thread")
        };
        Relay {
            sip_addr,
            stats,
            drops,
            first_seq,
            stop,
            thread: Some(thread),
        }
    }

    /// Where the caller sends SIP (dial `sip:user@` this).
    pub fn sip_addr(&self) -> SocketAddr {
        self.sip_addr
    }

    /// What the relay has done so far.
    pub fn stats(&self) -> RelayStats {
        *self.stats.lock().unwrap()
    }

    /// Sequence number of the first RTP packet that went towards the callee (`to_callee`) or
    /// the caller.
    pub fn first_rtp_seq(&self, to_callee: bool) -> Option<u16> {
        self.first_seq.lock().unwrap()[if to_callee { 0 } else { 1 }]
    }

    /// RTP sequence numbers the loss model dropped going to the callee (`to_callee`) or to
    /// the caller, in the order they came (RTCP is not listed).
    pub fn dropped_rtp(&self, to_callee: bool) -> Vec<u16> {
        let dir = if to_callee { 0 } else { 1 };
        self.drops
            .lock()
            .unwrap()
            .iter()
            .filter(|(d, _)| *d == dir)
            .map(|(_, seq)| *seq)
            .collect()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A packet waiting for its release time (min-heap by time, then arrival order).
struct Pending {
    at: Instant,
    seq: u64,
    /// 0: out of media_back to the callee; 1: out of media_front to the caller.
    dir: usize,
    data: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

struct State {
    /// Faces the caller: SIP arrives here from the caller.
    sip_front: UdpSocket,
    /// Faces the callee: SIP to the callee leaves from here, its answers arrive here.
    sip_back: UdpSocket,
    /// Media socket the caller sends to (named in the answer given to the caller).
    media_front: UdpSocket,
    /// Media socket the callee sends to (named in the offer given to the callee).
    media_back: UdpSocket,
    /// RTCP (port + 1) sockets when the ports after the media sockets could be bound.
    rtcp_front: Option<UdpSocket>,
    rtcp_back: Option<UdpSocket>,
    callee: SocketAddr,
    caller_sip: Option<SocketAddr>,
    caller_media: Option<SocketAddr>,
    callee_media: Option<SocketAddr>,
    /// [to callee, to caller].
    imp: [Impairment; 2],
    gilbert_bad: [bool; 2],
    /// One generator per direction, so each direction's decisions depend only on the seed and
    /// that direction's packet order.
    rng: [StdRng; 2],
    queue: BinaryHeap<Pending>,
    seq: u64,
    /// (direction, RTP sequence number) of every RTP packet the loss model dropped.
    drops: Arc<Mutex<Vec<(usize, u16)>>>,
    /// Sequence number of the first RTP packet seen in each direction.
    first_seq: Arc<Mutex<[Option<u16>; 2]>>,
}

impl State {
    fn run(mut self, stats: &Mutex<RelayStats>, stop: &AtomicBool) {
        for s in [
            &self.sip_front,
            &self.sip_back,
            &self.media_front,
            &self.media_back,
        ] {
            s.set_nonblocking(true).expect("nonblocking");
        }
        self.rtcp_front = bind_next(&self.media_front);
        self.rtcp_back = bind_next(&self.media_back);
        let mut buf = vec![0u8; 65_536];
        while !stop.load(Ordering::Relaxed) {
            let mut busy = false;
            busy |= self.poll_sip(&mut buf, stats);
            busy |= self.poll_media(&mut buf, stats);
            busy |= self.poll_rtcp(&mut buf);
            self.release(stats);
            if !busy {
                // 0.5 ms: small against the 20 ms packet interval, cheap on the CPU.
                let wait = self
                    .queue
                    .peek()
                    .map(|p| p.at.saturating_duration_since(Instant::now()))
                    .unwrap_or(Duration::from_micros(500))
                    .min(Duration::from_micros(500));
                std::thread::sleep(wait);
            }
        }
    }

    fn poll_sip(&mut self, buf: &mut [u8], stats: &Mutex<RelayStats>) -> bool {
        let mut busy = false;
        while let Some((n, from)) = recv(&self.sip_front, buf) {
            busy = true;
            self.caller_sip = Some(from);
            let msg = self.rewrite(&buf[..n], 0, stats);
            let _ = self.sip_back.send_to(&msg, self.callee);
            stats.lock().unwrap().sip += 1;
        }
        while let Some((n, _)) = recv(&self.sip_back, buf) {
            busy = true;
            let msg = self.rewrite(&buf[..n], 1, stats);
            if let Some(caller) = self.caller_sip {
                let _ = self.sip_front.send_to(&msg, caller);
            }
            stats.lock().unwrap().sip += 1;
        }
        busy
    }

    /// Rewrite the SDP of a SIP message going towards the callee (`dir` 0) or the caller (1):
    /// the media address the other side should use becomes ours.
    fn rewrite(&mut self, msg: &[u8], dir: usize, stats: &Mutex<RelayStats>) -> Vec<u8> {
        let Some(split) = find(msg, b"\r\n\r\n") else {
            return msg.to_vec();
        };
        let (head, body) = (&msg[..split], &msg[split + 4..]);
        let Ok(sdp) = std::str::from_utf8(body) else {
            return msg.to_vec();
        };
        if !sdp.starts_with("v=0") {
            return msg.to_vec();
        }
        // The relay socket the receiver of this message will send its media to.
        let ours = if dir == 0 {
            self.media_back.local_addr().unwrap()
        } else {
            self.media_front.local_addr().unwrap()
        };
        let mut ip = None;
        let mut port = None;
        let mut out = String::new();
        for line in sdp.split_inclusive('\n') {
            let text = line.trim_end_matches(['\r', '\n']);
            let eol = &line[text.len()..];
            if let Some(rest) = text.strip_prefix("c=IN IP4 ") {
                ip = rest.trim().parse::<std::net::IpAddr>().ok();
                out.push_str(&format!("c=IN IP4 {}{eol}", ours.ip()));
            } else if let Some(rest) = text.strip_prefix("m=audio ") {
                let mut parts = rest.splitn(2, ' ');
                port = parts.next().and_then(|p| p.parse::<u16>().ok());
                let tail = parts.next().unwrap_or("");
                out.push_str(&format!("m=audio {} {tail}{eol}", ours.port()));
            } else {
                out.push_str(line);
            }
        }
        if let (Some(ip), Some(port)) = (ip, port) {
            let real = SocketAddr::new(ip, port);
            if dir == 0 {
                self.caller_media = Some(real);
            } else {
                self.callee_media = Some(real);
            }
            stats.lock().unwrap().sdp_rewritten += 1;
        }
        let head = String::from_utf8_lossy(head);
        let mut new_head = String::new();
        for line in head.split("\r\n") {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("content-length:") || lower.starts_with("l:") {
                new_head.push_str(&format!("Content-Length: {}\r\n", out.len()));
            } else {
                new_head.push_str(line);
                new_head.push_str("\r\n");
            }
        }
        new_head.push_str("\r\n");
        let mut v = new_head.into_bytes();
        v.extend_from_slice(out.as_bytes());
        v
    }

    fn poll_media(&mut self, buf: &mut [u8], stats: &Mutex<RelayStats>) -> bool {
        let mut busy = false;
        // From the caller (arrives on media_front) → callee; from the callee → caller.
        for dir in 0..2 {
            loop {
                let sock = if dir == 0 {
                    &self.media_front
                } else {
                    &self.media_back
                };
                let Some((n, from)) = recv(sock, buf) else {
                    break;
                };
                busy = true;
                // Symmetric RTP: learn the sender's real address.
                if dir == 0 {
                    self.caller_media = Some(from);
                } else {
                    self.callee_media = Some(from);
                }
                self.impair(dir, buf[..n].to_vec(), stats);
            }
        }
        busy
    }

    /// RTCP on port + 1 passes unimpaired (RTT measurement should see only the added delay).
    fn poll_rtcp(&mut self, buf: &mut [u8]) -> bool {
        let mut busy = false;
        let next = |a: Option<SocketAddr>| a.map(|a| SocketAddr::new(a.ip(), a.port() + 1));
        if let (Some(front), Some(back)) = (&self.rtcp_front, &self.rtcp_back) {
            while let Some((n, _)) = recv(front, buf) {
                busy = true;
                if let Some(to) = next(self.callee_media) {
                    let _ = back.send_to(&buf[..n], to);
                }
            }
            while let Some((n, _)) = recv(back, buf) {
                busy = true;
                if let Some(to) = next(self.caller_media) {
                    let _ = front.send_to(&buf[..n], to);
                }
            }
        }
        busy
    }

    fn impair(&mut self, dir: usize, data: Vec<u8>, stats: &Mutex<RelayStats>) {
        let imp = self.imp[dir];
        let rtcp = data.get(1).is_some_and(|b| (192..=223).contains(b));
        let rtp_seq = (data.len() >= 12 && data[0] >> 6 == 2 && !rtcp)
            .then(|| u16::from_be_bytes([data[2], data[3]]));
        if let Some(seq) = rtp_seq {
            self.first_seq.lock().unwrap()[dir].get_or_insert(seq);
        }
        let mut st = stats.lock().unwrap();
        st.received += 1;
        let lost = match imp.loss {
            Loss::None => false,
            Loss::Random(p) => self.rng[dir].random_bool(p.clamp(0.0, 1.0)),
            Loss::Bursty { p, r } => {
                let bad = &mut self.gilbert_bad[dir];
                *bad = if *bad {
                    !self.rng[dir].random_bool(r.clamp(0.0, 1.0))
                } else {
                    self.rng[dir].random_bool(p.clamp(0.0, 1.0))
                };
                *bad
            }
        };
        if lost {
            st.dropped += 1;
            if let Some(seq) = rtp_seq {
                self.drops.lock().unwrap().push((dir, seq));
            }
            return;
        }
        let copies = if imp.duplicate > 0.0 && self.rng[dir].random_bool(imp.duplicate.min(1.0)) {
            st.duplicated += 1;
            2
        } else {
            1
        };
        let now = Instant::now();
        for _ in 0..copies {
            let mut delay = imp.delay;
            if !imp.jitter.is_zero() {
                let j = self.rng[dir].random_range(0..=imp.jitter.as_micros() as u64);
                delay += Duration::from_micros(j);
            }
            if imp.reorder > 0.0 && self.rng[dir].random_bool(imp.reorder.min(1.0)) {
                st.reordered += 1;
                delay += imp.reorder_by;
            }
            self.seq += 1;
            self.queue.push(Pending {
                at: now + delay,
                seq: self.seq,
                dir,
                data: data.clone(),
            });
        }
    }

    fn release(&mut self, stats: &Mutex<RelayStats>) {
        let now = Instant::now();
        while self.queue.peek().is_some_and(|p| p.at <= now) {
            let p = self.queue.pop().unwrap();
            let (sock, to) = if p.dir == 0 {
                (&self.media_back, self.callee_media)
            } else {
                (&self.media_front, self.caller_media)
            };
            if let Some(to) = to {
                // counted before the send, so a reader that saw the packet sees the count
                stats.lock().unwrap().forwarded += 1;
                let _ = sock.send_to(&p.data, to);
            }
        }
    }
}

fn recv(sock: &UdpSocket, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
    match sock.recv_from(buf) {
        Ok(x) => Some(x),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
        Err(_) => None,
    }
}

/// The socket on the port after `s`'s, if free (for RTCP on RTP port + 1).
fn bind_next(s: &UdpSocket) -> Option<UdpSocket> {
    let a = s.local_addr().ok()?;
    let next = UdpSocket::bind(SocketAddr::new(a.ip(), a.port().checked_add(1)?)).ok()?;
    next.set_nonblocking(true).ok()?;
    Some(next)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
