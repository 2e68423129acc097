//! Added endpoint latency, by click test (issue 4: "the time from a click in the source file to
//! its arrival in the peer's recording, minus network delay, at jitter-buffer floor").
//!
//! **Method.** A WAV at the codec's own rate (so nothing is resampled) holds silence with a
//! short click — a 1 kHz tone burst, 5 ms under a Hann window — every second from 2 s on.
//! `termphone dial --play clicks.wav --record back.wav` calls `termphone serve --echo` directly
//! on 127.0.0.1 (no relay), a few calls per codec. Each click is found in `back.wav` by normalized
//! cross-correlation with the burst (the peak within 0.5 s after the click's place in the
//! source, sample resolution) and its delay is its position in `back.wav` minus its position
//! in `clicks.wav`.
//!
//! **Why this anchors time honestly.** Sending and recording share one clock in one process:
//! on each 20 ms media tick `dial` first writes one playout frame to the recording and then
//! reads one frame of the file and sends it (`CallMedia` in src/engine/media.rs: the playout
//! half of a tick, then the sending half), from the first tick of the call on. Sample *i* of the recording is therefore written on the tick
//! that reads sample *i* of the file, and the offset between the two is the round trip. Across
//! two processes (`dial --play` to `serve --record`) there is no such anchor: each starts its
//! media clock on its own side of the answer.
//!
//! **What the round trip holds**, once per direction (out to `serve`, back to `dial`; the echo
//! sends back the frame it plays out on the same tick, adding nothing): the codec's algorithmic
//! delay (G.711 none, G.722 its QMF filter pair, Opus its look-ahead), the network (loopback:
//! RTCP measures a fraction of a millisecond to a few), and the receiver's playout delay, from
//! a packet's arrival to the media tick that plays it. Nothing jitters on loopback, so the
//! jitter buffer's target sits at its 20 ms floor (both ends' `buffer_ms`, read from their
//! JSON stats events); the playout delay is then kept between that target and 1.5 frames above
//! it (src/media/jitter.rs, `adjustment`: a shrink takes a whole frame and must leave half a
//! frame to spare), in steps of the receiver's tick. As sending and recording run on `dial`'s
//! tick, the round trip is a whole number of frames plus the codec delays. It does not hold
//! sound-device buffers or, for a live microphone, the wait for a frame to fill
//! (packetization: a file's frame is there at once). *Added per direction* is (round trip −
//! RTCP round-trip time) / 2: the mean of the two directions.
//!
//! Run with `benches/latency.sh` (builds the release binary, writes the table into
//! BENCHMARKS.md) or `cargo bench --bench latency` (prints it, and every click's delay on
//! stderr). Environment: `TERMPHONE_BIN` (default target/release/termphone), `LATENCY_CODECS`
//! (default opus, G722, PCMU), `LATENCY_CALLS` (calls per codec, default 5: the two ends' tick
//! phase differs per call), `LATENCY_CLICKS` (clicks per call, default 6; within a call they
//! agree).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// Where the first click is (s): after the buffers' start-up (60 ms initial target, shrinking
/// to the floor during silence).
const FIRST_CLICK_S: f64 = 2.0;
/// Time between clicks (s).
const CLICK_EVERY_S: f64 = 1.0;
/// The click: a tone burst under a Hann window.
const CLICK_HZ: f64 = 1000.0;
const CLICK_MS: f64 = 5.0;
/// How long after its place in the source a click is looked for.
const SEARCH_S: f64 = 0.5;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn codec_rate(codec: &str) -> u32 {
    match codec.to_ascii_lowercase().as_str() {
        "opus" => 48000,
        "g722" => 16000,
        _ => 8000,
    }
}

fn click(rate: u32) -> Vec<f32> {
    let n = (CLICK_MS / 1000.0 * f64::from(rate)).round() as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / (n - 1) as f64).cos();
            (0.5 * w * (2.0 * std::f64::consts::PI * CLICK_HZ * t).sin()) as f32
        })
        .collect()
}

fn write_wav(path: &Path, rate: u32, x: &[f32]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &v in x {
        w.write_sample((v * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
            .unwrap();
    }
    w.finalize().unwrap();
}

fn read_wav(path: &Path) -> Result<(u32, Vec<f32>), String> {
    let mut r = hound::WavReader::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let spec = r.spec();
    let ch = usize::from(spec.channels);
    let s: Vec<f32> = r
        .samples::<i16>()
        .map(|v| f32::from(v.unwrap_or(0)) / 32768.0)
        .collect();
    Ok((spec.sample_rate, s.chunks(ch).map(|c| c[0]).collect()))
}

/// Where the click is in `x` (start sample) and how well it matches (normalized
/// cross-correlation), searching `from..from + len`.
fn find_click(x: &[f32], tpl: &[f32], from: usize, len: usize) -> Option<(usize, f64)> {
    let t_energy: f64 = tpl.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    let end = (from + len).min(x.len().saturating_sub(tpl.len()));
    let mut best: Option<(usize, f64)> = None;
    for p in from..end {
        let w = &x[p..p + tpl.len()];
        let (mut dot, mut e) = (0.0f64, 0.0f64);
        for (&a, &b) in w.iter().zip(tpl) {
            dot += f64::from(a) * f64::from(b);
            e += f64::from(a) * f64::from(a);
        }
        let c = dot / (t_energy * e).sqrt().max(1e-12);
        if best.is_none_or(|(_, bc)| c > bc) {
            best = Some((p, c));
        }
    }
    best
}

/// A child whose stdout JSON events are collected on a thread.
struct Proc {
    child: Child,
    events: Receiver<serde_json::Value>,
    seen: Vec<serde_json::Value>,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start termphone");
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        Proc {
            child,
            events,
            seen: Vec::new(),
        }
    }

    /// The first event matching `pred` within `timeout`.
    fn wait(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return Some(v);
                    }
                }
                Err(_) => return None,
            }
        }
        None
    }

    /// Every event so far, then the last `stats` object among them.
    fn last_stats(&mut self) -> Option<serde_json::Value> {
        self.seen.extend(self.events.try_iter());
        self.seen
            .iter()
            .rev()
            .find(|v| v["event"] == "stats")
            .map(|v| v["stats"].clone())
    }

    /// SIGTERM to its own PID (serve hangs up and exits), SIGKILL after 10 s; reaped.
    fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: kill(2) on our own child's PID, not reaped yet.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One call's measurement.
struct Measured {
    /// Round-trip delay of each click found (ms).
    delays: Vec<f64>,
    /// RTCP round-trip time (dial's, else serve's).
    rtt_ms: Option<f64>,
    /// Jitter buffer target delay of dial and serve at the end (`buffer_ms`).
    target_ms: [Option<f64>; 2],
}

fn measure(bin: &Path, codec: &str, clicks: usize, dir: &Path) -> Result<Measured, String> {
    let rate = codec_rate(codec);
    let tpl = click(rate);
    let secs = FIRST_CLICK_S + CLICK_EVERY_S * clicks as f64 + 0.5;
    let mut src = vec![0.0f32; (secs * f64::from(rate)) as usize];
    let places: Vec<usize> = (0..clicks)
        .map(|k| ((FIRST_CLICK_S + CLICK_EVERY_S * k as f64) * f64::from(rate)).round() as usize)
        .collect();
    for &p in &places {
        src[p..p + tpl.len()].copy_from_slice(&tpl);
    }
    let play = dir.join(format!("clicks-{codec}.wav"));
    let back = dir.join(format!("back-{codec}.wav"));
    write_wav(&play, rate, &src);

    let mut serve = Proc::spawn(Command::new(bin).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--json",
        "--no-control",
        "--echo",
        "--codec",
        codec,
    ]));
    let addr = serve
        .wait(Duration::from_secs(10), |v| {
            v["event"] == "listening" && v["transport"] == "udp"
        })
        .and_then(|v| v["addr"].as_str().map(str::to_string))
        .ok_or("serve did not start")?;
    let mut dial = Proc::spawn(
        Command::new(bin)
            .args([
                "dial",
                "--listen",
                "127.0.0.1:0",
                "--json",
                "--codec",
                codec,
            ])
            .arg(format!("sip:echo@{addr}"))
            .arg("--play")
            .arg(&play)
            .arg("--record")
            .arg(&back)
            .args(["--duration", &format!("{secs:.1}")]),
    );
    let ended = dial.wait(Duration::from_secs_f64(secs + 20.0), |v| {
        v["event"] == "call"
            && v["state"]
                .as_str()
                .is_some_and(|s| s.starts_with("hangup") || s.ends_with("failure"))
    });
    let status = dial.child.wait().map_err(|e| e.to_string())?;
    let dial_stats = dial.last_stats();
    serve.stop();
    let serve_stats = serve.last_stats();
    eprintln!("latency: {codec} dial stats {dial_stats:?}");
    eprintln!("latency: {codec} serve stats {serve_stats:?}");
    if ended.is_none() || !status.success() {
        return Err(format!("dial: {status}, last event {ended:?}"));
    }
    let (got_rate, got) = read_wav(&back)?;
    if got_rate != rate {
        return Err(format!("recording at {got_rate} Hz, expected {rate}"));
    }
    let search = (SEARCH_S * f64::from(rate)) as usize;
    let mut delays = Vec::new();
    for (k, &p) in places.iter().enumerate() {
        match find_click(&got, &tpl, p, search) {
            Some((q, c)) if c > 0.6 => {
                let ms = (q - p) as f64 * 1000.0 / f64::from(rate);
                eprintln!("latency: {codec} click {k}: {ms:.2} ms (match {c:.2})");
                delays.push(ms);
            }
            other => eprintln!("latency: {codec} click {k}: not found ({other:?})"),
        }
    }
    let num = |s: &Option<serde_json::Value>, key: &str| s.as_ref().and_then(|s| s[key].as_f64());
    Ok(Measured {
        delays,
        rtt_ms: num(&dial_stats, "rtt_ms").or(num(&serve_stats, "rtt_ms")),
        target_ms: [
            num(&dial_stats, "buffer_ms"),
            num(&serve_stats, "buffer_ms"),
        ],
    })
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn main() {
    // `cargo test --all-targets` runs bench targets without `--bench`: this one needs a release
    // binary and a minute of calls, so it only runs as a bench.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "latency: a benchmark; run it with benches/latency.sh or cargo bench --bench latency"
        );
        return;
    }
    let bin = std::env::var_os("TERMPHONE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo("target/release/termphone"));
    assert!(
        bin.exists(),
        "{} missing: cargo build --release first",
        bin.display()
    );
    let codecs: Vec<String> = std::env::var("LATENCY_CODECS")
        .unwrap_or_else(|_| "opus,G722,PCMU".into())
        .split(',')
        .map(str::to_string)
        .collect();
    let clicks: usize = std::env::var("LATENCY_CLICKS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let calls: usize = std::env::var("LATENCY_CALLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let work = tempfile::tempdir().unwrap();
    println!(
        "| codec | calls | round trip per call | added per direction, median (min–max) | RTCP RTT | jitter buffer target |"
    );
    println!("|---|---|---|---|---|---|");
    for codec in &codecs {
        // Per call: the round trip (median over its clicks; they agree within a call) and the
        // RTCP round-trip time.
        let (mut trips, mut rtts, mut targets, mut failed) =
            (Vec::new(), Vec::new(), Vec::new(), 0);
        for call in 0..calls {
            let dir = work.path().join(format!("{codec}-{call}"));
            std::fs::create_dir_all(&dir).unwrap();
            match measure(&bin, codec, clicks, &dir) {
                Ok(m) if m.delays.len() == clicks => {
                    trips.push(median(&m.delays));
                    rtts.push(m.rtt_ms.unwrap_or(0.0));
                    targets.extend(m.target_ms.into_iter().flatten());
                }
                Ok(m) => {
                    eprintln!(
                        "latency: {codec} call {call}: {} of {clicks} clicks found",
                        m.delays.len()
                    );
                    failed += 1;
                }
                Err(e) => {
                    eprintln!("latency: {codec} call {call}: {e}");
                    failed += 1;
                }
            }
        }
        if trips.is_empty() {
            println!("| {codec} | {failed} failed | | | | |");
            continue;
        }
        let per_dir: Vec<f64> = trips
            .iter()
            .zip(&rtts)
            .map(|(t, r)| (t - r) / 2.0)
            .collect();
        let min = per_dir.iter().copied().fold(f64::INFINITY, f64::min);
        let max = per_dir.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let list = trips
            .iter()
            .map(|t| format!("{t:.1}"))
            .collect::<Vec<_>>()
            .join(", ");
        let target = if targets.iter().all(|&t| t == targets[0]) {
            format!("{:.0} ms", targets[0])
        } else {
            format!("{targets:?} ms")
        };
        println!(
            "| {codec} | {}{} | {list} ms | {:.1} ms ({min:.1}–{max:.1}) | {:.1}–{:.1} ms | {target} |",
            trips.len(),
            if failed > 0 { format!(" ({failed} failed)") } else { String::new() },
            median(&per_dir),
            rtts.iter().copied().fold(f64::INFINITY, f64::min),
            rtts.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        );
    }
}
