//! Speech quality of real calls under loss and jitter (issue 4): PESQ of a speech file sent
//! through an impairment relay, for each codec at 0 %, 5 % and 10 % random loss with 30 ms of
//! jitter, seeded.
//!
//! **Table 1, termphone → termphone.** `termphone dial --play` to `termphone serve --record`.
//! Beside it, the same codec with the same lost packets replaced by silence (computed offline:
//! the source encoded and decoded by termphone's codec, the frames whose packets the relay
//! dropped zeroed), to show what the concealment is worth.
//!
//! **Table 2, against baresip 1.0.0** (Debian `baresip-core`, tests/support/baresip_peer.rs),
//! for each codec it has a module for (g711, g722, opus), at its default settings (jitter
//! buffer 5–10 frames, playout buffer 20–160 ms, Opus 28 kbit/s):
//! - termphone → baresip: the same `termphone dial --play` call as table 1's, answered by
//!   baresip instead of `serve`. baresip's audio source and player are one `aubridge` device,
//!   whose thread pulls a frame from the player every 20 ms in real time (as a sound card
//!   would) and hands it to the source, which sends it back (dial discards it). Its `sndfile`
//!   filter dumps two files: *decoded* (`-dec.wav`: the decoder's output after the jitter
//!   buffer and concealment, one frame per frame decoded, without timing) and *played*
//!   (`-enc.wav`: what the player pulled from the playout buffer, underruns included: the
//!   counterpart of what `serve --record` writes). Same sender, same source, the same packets
//!   lost and equally delayed (the relay decides by packet index, below; the bench checks that
//!   the calls lost the same packets), same alignment and scoring: only the receiving end
//!   differs. So *played* against *termphone → termphone* answers "is termphone's receive
//!   side at least as good as baresip's".
//! - baresip → termphone: baresip calls `termphone serve --record` and plays the speech
//!   (aufile, at the codec's rate) through the relay: termphone's receive side again, with
//!   baresip's encoder and packet timing (G.711 and G.722 leave an encoder no choices, so
//!   those rows differ from termphone → termphone only in the sender's timing; baresip's Opus
//!   runs at 28 kbit/s and complexity 10 against termphone's 32 kbit/s and 8).
//!
//! `QUALITY_BARESIP_MODULES=plc` loads baresip's `plc` module (spandsp's G.711 concealment,
//! not in its default config) for the G.711 rows. It changes nothing in 1.0.0: on a gap,
//! baresip decodes the packet after the gap twice (once per gap, however many packets it
//! lost), so the `plc` filter never sees a missing frame to fill.
//!
//! **The relay** (tests/support/bench_relay.rs) drops and delays each RTP packet by a
//! function of the seed and the packet's index in its stream only, so two calls see the same
//! impairment on the same packets whoever receives them and whenever RTCP reports go by.
//!
//! Run with `benches/quality.sh` (builds the release binary, installs PyPI `pesq`, writes both
//! tables into BENCHMARKS.md) or `cargo bench --bench quality` (prints them). PESQ is
//! narrow-band (P.862) for G.711 and wide-band (P.862.2) for G.722 and Opus, each recording
//! aligned to the source by cross-correlation (benches/pesq_score.py). With several seeds each
//! cell is the mean over the seeds and "packets lost" lists each seed's count; "loss" is the
//! loss rate asked for, with the share of RTP packets the relay actually dropped beside it.
//! Environment: `TERMPHONE_BIN` (default target/release/termphone), `QUALITY_CODECS`
//! (default: every codec the build knows but PCMA), `QUALITY_SEEDS` (comma-separated, default
//! 1), `QUALITY_BARESIP=0` (table 1 only), `QUALITY_BARESIP_MODULES=plc`, `QUALITY_KEEP=1`
//! (keep the work directory and print it).

#[path = "../tests/support/baresip_peer.rs"]
#[allow(dead_code)]
mod baresip_peer;
#[path = "../tests/support/bench_relay.rs"]
#[allow(dead_code)]
mod bench_relay;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use baresip_peer::{BaresipPeer, PeerConfig, Source};
use bench_relay::{Impair, IndexRelay};
use termphone::audio::resample::Resampler;
use termphone::config::CodecName;
use termphone::media::codec_by_name;

const LOSSES: [f64; 3] = [0.0, 0.05, 0.10];
const JITTER: Duration = Duration::from_millis(30);
const CALL_SECS: u64 = 6;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read_wav(path: &Path) -> Result<(u32, Vec<f32>), String> {
    let mut r = hound::WavReader::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let spec = r.spec();
    let ch = usize::from(spec.channels);
    let s: Vec<f32> = r
        .samples::<i16>()
        .map(|v| f32::from(v.unwrap_or(0)) / 32768.0)
        .collect();
    let mono = s.chunks(ch).map(|c| c[0]).collect();
    Ok((spec.sample_rate, mono))
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

fn resample(x: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to {
        return x.to_vec();
    }
    let mut r = Resampler::new(from, to);
    let mut out = Vec::new();
    r.process(x, &mut out);
    r.flush(&mut out);
    out
}

fn pesq(dir: &Path, name: &str, reference: &[f32], degraded: &[f32], rate: u32) -> Option<f64> {
    let (r, d) = (
        dir.join(format!("{name}-ref.wav")),
        dir.join(format!("{name}-deg.wav")),
    );
    write_wav(&r, rate, reference);
    write_wav(&d, rate, degraded);
    let mode = if rate == 8000 { "nb" } else { "wb" };
    let out = Command::new("python3")
        .arg(repo("benches/pesq_score.py"))
        .args([&r, &d])
        .arg(mode)
        .output()
        .expect("run python3 benches/pesq_score.py");
    if !out.status.success() {
        eprintln!(
            "quality: pesq {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// The mean of the scores with two decimals, or "failed" when a call or a score failed.
fn mean(v: &[Option<f64>]) -> String {
    let ok: Vec<f64> = v.iter().flatten().copied().collect();
    if ok.is_empty() || ok.len() < v.len() {
        return "failed".into();
    }
    format!("{:.2}", ok.iter().sum::<f64>() / ok.len() as f64)
}

/// A running `serve`: the child, its SIP address, its JSON events.
struct Serve {
    child: Child,
    addr: std::net::SocketAddr,
    events: Receiver<serde_json::Value>,
}

impl Serve {
    /// Start `serve` recording callers into `rec`.
    fn start(bin: &Path, codec: &str, rec: &Path) -> Result<Serve, String> {
        let mut child = Command::new(bin)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--json",
                "--no-control",
                "--codec",
                codec,
                "--record",
            ])
            .arg(rec)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start termphone serve: {e}"))?;
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        // Keep draining stdout so serve never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        let mut serve = Serve {
            child,
            addr: ([127, 0, 0, 1], 0).into(),
            events,
        };
        let addr = serve
            .wait(|v| v["event"] == "listening" && v["transport"] == "udp")
            .and_then(|v| v["addr"].as_str()?.parse().ok());
        match addr {
            Some(addr) => {
                serve.addr = addr;
                Ok(serve)
            }
            None => {
                stop(&mut serve.child);
                Err("serve did not start".into())
            }
        }
    }

    /// The first event matching `pred` within 10 s.
    fn wait(&self, pred: impl Fn(&serde_json::Value) -> bool) -> Option<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.events.recv_timeout(left) {
                Ok(v) if pred(&v) => return Some(v),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    }

    /// SIGTERM (serve closes its recordings) and the recording it made, if any.
    fn finish(mut self, rec: &Path) -> Option<PathBuf> {
        stop(&mut self.child);
        std::fs::read_dir(rec)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "wav"))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// SIGTERM to a child's own PID (serve closes its recordings and exits), SIGKILL after 10 s;
/// reaped. Nothing when it has exited already.
fn stop(child: &mut Child) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    // SAFETY: kill(2) on our own child's PID, not reaped yet (try_wait saw it running).
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `termphone dial --play` of the speech to `target` (a relay's SIP address).
fn dial(bin: &Path, codec: &str, target: std::net::SocketAddr) -> Result<(), String> {
    let mut cmd = Command::new(bin);
    cmd.args([
        "dial",
        "--listen",
        "127.0.0.1:0",
        "--json",
        "--codec",
        codec,
    ])
    .arg(format!("sip:bench@{target}"))
    .arg("--play")
    .arg(repo("tests/data/speech-48k.wav"))
    .args(["--duration", &CALL_SECS.to_string()]);
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("run termphone dial: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("dial {status}"))
    }
}

/// What one impaired call delivered: the receiver's recording and the indices of the RTP
/// packets the relay dropped on the way to it.
struct Heard {
    wav: PathBuf,
    lost: Vec<u16>,
    /// RTP packets the relay saw going to the receiver.
    rtp: u64,
}

fn impair(loss: f64) -> Impair {
    Impair {
        loss,
        jitter: JITTER,
    }
}

/// What the relay dropped on the way to the callee, and how many RTP packets it saw.
fn lost_of(relay: &IndexRelay) -> (Vec<u16>, u64) {
    let seen = relay.seen(true);
    let mut v = seen.dropped;
    v.sort_unstable();
    (v, seen.rtp)
}

/// termphone dial → relay → termphone serve --record.
fn termphone_to_termphone(
    bin: &Path,
    codec: &str,
    loss: f64,
    seed: u64,
    dir: &Path,
) -> Result<Heard, String> {
    let rec = dir.join("rec");
    std::fs::create_dir_all(&rec).map_err(|e| e.to_string())?;
    let serve = Serve::start(bin, codec, &rec)?;
    let relay = IndexRelay::start(serve.addr, impair(loss), Impair::none(), seed);
    let called = dial(bin, codec, relay.sip_addr());
    let wav = serve.finish(&rec);
    called?;
    let (lost, rtp) = lost_of(&relay);
    Ok(Heard {
        wav: wav.ok_or("no recording")?,
        lost,
        rtp,
    })
}

fn peer_config(
    codec: &str,
    extra_modules: &'static [&'static str],
    source: Source,
) -> Result<PeerConfig<'static>, String> {
    Ok(PeerConfig {
        codec_module: baresip_peer::codec_module(codec).ok_or("no baresip module")?,
        extra_modules,
        source,
        rate: codec_rate(codec),
        opus_bitrate: 28000,
    })
}

/// termphone dial → relay → baresip (auto-answer, echoing what it plays); baresip's `sndfile`
/// dumps: what it decoded (`-dec.wav`) and what its player pulled from its playout buffer
/// (`-enc.wav`, the audio it echoes).
fn termphone_to_baresip(
    bin: &Path,
    codec: &str,
    loss: f64,
    seed: u64,
    dir: &Path,
    extra_modules: &'static [&'static str],
) -> Result<(Heard, Heard), String> {
    let cfg = peer_config(codec, extra_modules, Source::Loopback)?;
    let mut peer = BaresipPeer::start(&dir.join("baresip"), &cfg)?;
    let relay = IndexRelay::start(peer.sip_addr(), impair(loss), Impair::none(), seed);
    let called = dial(bin, codec, relay.sip_addr());
    // dial has sent BYE; give baresip a moment to end the call and close the dumps.
    std::thread::sleep(Duration::from_millis(500));
    peer.stop();
    called.map_err(|e| format!("{e}\n{}", tail(&peer.log())))?;
    let heard = |wav: Option<PathBuf>| -> Result<Heard, String> {
        let (lost, rtp) = lost_of(&relay);
        Ok(Heard {
            wav: wav.ok_or("no baresip dump")?,
            lost,
            rtp,
        })
    };
    Ok((heard(peer.decoded_dump())?, heard(peer.encoded_dump())?))
}

/// baresip dials → relay → termphone serve --record; baresip plays `speech` (at the codec's
/// rate, followed by silence) from the answer on.
fn baresip_to_termphone(
    bin: &Path,
    codec: &str,
    loss: f64,
    seed: u64,
    dir: &Path,
    speech: &[f32],
) -> Result<Heard, String> {
    let rate = codec_rate(codec);
    let src = dir.join("speech.wav");
    let mut padded = speech.to_vec();
    padded.resize(speech.len() + rate as usize * 10, 0.0);
    write_wav(&src, rate, &padded);
    let rec = dir.join("rec");
    std::fs::create_dir_all(&rec).map_err(|e| e.to_string())?;
    let serve = Serve::start(bin, codec, &rec)?;
    let relay = IndexRelay::start(serve.addr, impair(loss), Impair::none(), seed);
    let cfg = peer_config(codec, &[], Source::File(src))?;
    let mut peer = BaresipPeer::start(&dir.join("baresip"), &cfg)?;
    let result = (|| {
        peer.dial(&format!("sip:bench@{}", relay.sip_addr()))?;
        serve
            .wait(|v| v["state"] == "connected")
            .ok_or("serve: no connected call")?;
        std::thread::sleep(Duration::from_secs(CALL_SECS));
        peer.hangup()?;
        serve.wait(|v| v["state"] == "hangupremote");
        Ok::<(), String>(())
    })();
    peer.stop();
    let wav = serve.finish(&rec);
    result.map_err(|e| format!("{e}\n{}", tail(&peer.log())))?;
    let (lost, rtp) = lost_of(&relay);
    Ok(Heard {
        wav: wav.ok_or("no recording")?,
        lost,
        rtp,
    })
}

fn tail(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    chars[chars.len().saturating_sub(1500)..].iter().collect()
}

fn codec_rate(codec: &str) -> u32 {
    codec_by_name(codec)
        .map(|c| c.sample_rate())
        .unwrap_or(8000)
}

/// The source through the codec offline, with the frames of `lost` (0-based packet indices)
/// replaced by silence; at the codec's sample rate.
fn silence_inserted(codec: &str, source: &[f32], rate: u32, lost: &HashSet<usize>) -> Vec<f32> {
    let mut c = codec_by_name(codec).expect("codec");
    let sr = c.sample_rate();
    let x = resample(source, rate, sr);
    let frame = sr as usize / 50;
    let (mut payload, mut pcm, mut out) = (Vec::new(), Vec::new(), Vec::new());
    for (k, chunk) in x.chunks(frame).enumerate() {
        let mut f: Vec<i16> = chunk
            .iter()
            .map(|v| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
            .collect();
        f.resize(frame, 0);
        payload.clear();
        c.encode(&f, &mut payload);
        pcm.clear();
        c.decode(&payload, &mut pcm)
            .expect("the codec decodes its own payload");
        if lost.contains(&k) {
            out.extend(std::iter::repeat_n(0.0, frame));
        } else {
            out.extend(pcm.iter().map(|&s| f32::from(s) / 32768.0));
        }
    }
    out
}

/// Scores calls of one codec against the source.
struct Scorer<'a> {
    work: &'a Path,
    reference: Vec<f32>,
    pesq_rate: u32,
}

impl Scorer<'_> {
    fn score(&self, name: &str, heard: &Result<Heard, String>) -> Option<f64> {
        match heard {
            Ok(h) => {
                let (rate, got) = match read_wav(&h.wav) {
                    Ok(w) => w,
                    Err(e) => {
                        eprintln!("quality: {name}: {e}");
                        return None;
                    }
                };
                let degraded = resample(&got, rate, self.pesq_rate);
                let score = pesq(self.work, name, &self.reference, &degraded, self.pesq_rate);
                eprintln!("quality: {name}: PESQ {score:?}, lost {:?}", h.lost);
                score
            }
            Err(e) => {
                eprintln!("quality: {name}: {e}");
                None
            }
        }
    }
}

fn main() {
    // `cargo test --all-targets` builds and runs bench targets too, without `--bench`: this
    // one needs a release binary, PyPI pesq and minutes of calls, so it only runs as a bench.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "quality: a benchmark; run it with benches/quality.sh or cargo bench --bench quality"
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
    let seeds: Vec<u64> = std::env::var("QUALITY_SEEDS")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .filter(|v: &Vec<u64>| !v.is_empty())
        .unwrap_or(vec![1]);
    let codecs: Vec<String> = match std::env::var("QUALITY_CODECS") {
        Ok(list) => list.split(',').map(str::to_string).collect(),
        Err(_) => CodecName::ALL
            .iter()
            .filter(|c| !matches!(c, CodecName::Pcma))
            .map(|c| c.as_str().to_string())
            .collect(),
    };
    let with_baresip = std::env::var("QUALITY_BARESIP").map_or(true, |v| v != "0")
        && baresip_peer::baresip_available();
    let extra_modules = std::env::var("QUALITY_BARESIP_MODULES").ok();
    let (src_rate, source) = read_wav(&repo("tests/data/speech-48k.wav")).unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut table1 = vec![
        "| codec | PESQ | loss (lost) | jitter | termphone (PLC/FEC, adaptive buffer) | silence insertion | packets lost |".to_string(),
        "|---|---|---|---|---|---|---|".to_string(),
    ];
    let mut table2 = vec![
        "| codec | PESQ | loss (lost) | jitter | termphone → termphone | termphone → baresip, decoded | termphone → baresip, played | baresip → termphone | packets lost |".to_string(),
        "|---|---|---|---|---|---|---|---|---|".to_string(),
    ];
    for codec in &codecs {
        let rate = codec_rate(codec);
        let pesq_rate = if rate == 8000 { 8000 } else { 16000 };
        let scorer = Scorer {
            work: work.path(),
            reference: resample(&source, src_rate, pesq_rate),
            pesq_rate,
        };
        let band = if pesq_rate == 8000 { "NB" } else { "WB" };
        let module = baresip_peer::codec_module(codec).filter(|_| with_baresip);
        // QUALITY_BARESIP_MODULES=plc: G.711 only (spandsp's PLC is 8 kHz).
        let extra_modules: &'static [&'static str] = match extra_modules.as_deref() {
            Some("plc") if module == Some("g711") => &["plc"],
            _ => &[],
        };
        let speech_at_rate = resample(&source, src_rate, rate);
        for loss in LOSSES {
            let pct = (loss * 100.0).round() as u32;
            // Per seed: [termphone, silence insertion, decoded by baresip, played by baresip,
            // baresip → termphone] and the packets lost.
            let mut scores: [Vec<Option<f64>>; 5] = Default::default();
            let (mut lost, mut same, mut rtp) = (Vec::new(), true, 0);
            for &seed in &seeds {
                let name = format!("{codec}-{pct}-s{seed}");
                let call_dir = |what: &str| {
                    let d = work.path().join(format!("{name}-{what}"));
                    std::fs::create_dir_all(&d).unwrap();
                    d
                };
                eprintln!("quality: {name} termphone -> termphone");
                let tt = termphone_to_termphone(&bin, codec, loss, seed, &call_dir("tt"));
                scores[0].push(scorer.score(&format!("{name}-tt"), &tt));
                scores[1].push(tt.as_ref().ok().and_then(|h| {
                    let lost: HashSet<usize> = h.lost.iter().map(|&i| usize::from(i)).collect();
                    let silent = silence_inserted(codec, &source, src_rate, &lost);
                    let silent = resample(&silent, rate, pesq_rate);
                    pesq(
                        work.path(),
                        &format!("{name}-silence"),
                        &scorer.reference,
                        &silent,
                        pesq_rate,
                    )
                }));
                lost.push(tt.as_ref().map_or(0, |h| h.lost.len()));
                rtp += tt.as_ref().map_or(0, |h| h.rtp);
                if module.is_none() {
                    continue;
                }
                eprintln!("quality: {name} termphone -> baresip");
                let tb =
                    termphone_to_baresip(&bin, codec, loss, seed, &call_dir("tb"), extra_modules);
                let (decoded, played) = match tb {
                    Ok((d, p)) => (Ok(d), Ok(p)),
                    Err(e) => (Err(e.clone()), Err(e)),
                };
                eprintln!("quality: {name} baresip -> termphone");
                let bt =
                    baresip_to_termphone(&bin, codec, loss, seed, &call_dir("bt"), &speech_at_rate);
                scores[2].push(scorer.score(&format!("{name}-tb-decoded"), &decoded));
                scores[3].push(scorer.score(&format!("{name}-tb-played"), &played));
                scores[4].push(scorer.score(&format!("{name}-bt"), &bt));
                // Every relay decides by packet index: each call should lose the same packets.
                let losts: Vec<&Vec<u16>> = [&tt, &decoded, &bt]
                    .into_iter()
                    .filter_map(|h| h.as_ref().ok().map(|h| &h.lost))
                    .collect();
                same &= losts.windows(2).all(|w| w[0] == w[1]);
            }
            let [ours, silence, decoded, played, bt] = scores.map(|v| mean(&v));
            let got = 100.0 * lost.iter().sum::<usize>() as f64 / rtp.max(1) as f64;
            let lost = lost
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(" + ");
            table1.push(format!(
                "| {codec} | {band} | {pct} % ({got:.1} %) | 30 ms | {ours} | {silence} | {lost} |"
            ));
            if module.is_some() {
                let lost = if same {
                    lost
                } else {
                    format!("{lost} (calls differ)")
                };
                table2.push(format!(
                    "| {codec} | {band} | {pct} % ({got:.1} %) | 30 ms | {ours} | {decoded} | {played} | {bt} | {lost} |"
                ));
            }
        }
    }
    println!("{}", table1.join("\n"));
    if table2.len() > 2 {
        println!("\n{}", table2.join("\n"));
    }
    if std::env::var("QUALITY_KEEP").is_ok_and(|v| v == "1") {
        eprintln!("quality: work directory kept: {}", work.keep().display());
    }
}
