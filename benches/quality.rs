//! Speech quality of real calls under loss and jitter (issue 4): PESQ of a speech file sent
//! from `termphone dial` to `termphone serve --record` through the impairment relay
//! (tests/support/relay.rs), for each codec at 0 %, 5 % and 10 % random loss with 30 ms of
//! jitter, seeded. Beside it, the same codec with the same lost packets replaced by silence
//! (computed offline: the source encoded and decoded by termphone's codec, the frames whose
//! packets the relay dropped zeroed), to show what the concealment is worth.
//!
//! Run with `benches/quality.sh` (builds the release binary, installs PyPI `pesq`, writes the
//! table into BENCHMARKS.md) or `cargo bench --bench quality` (prints the table). PESQ is
//! narrow-band (P.862) for G.711 and wide-band (P.862.2) for G.722 and Opus.
//! Environment: `TERMPHONE_BIN` (default target/release/termphone), `QUALITY_CODECS`
//! (default: every codec the build knows), `QUALITY_SEED` (default 1).

#[path = "../tests/support/relay.rs"]
#[allow(dead_code)]
mod relay;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use relay::{Impairment, Relay};
use termphone::audio::resample::Resampler;
use termphone::config::CodecName;
use termphone::media::codec_by_name;

const LOSSES: [f64; 3] = [0.0, 0.05, 0.10];
const JITTER: Duration = Duration::from_millis(30);
const CALL_SECS: &str = "6";

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read_wav(path: &Path) -> (u32, Vec<f32>) {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = r.spec();
    let ch = usize::from(spec.channels);
    let s: Vec<f32> = r
        .samples::<i16>()
        .map(|v| f32::from(v.unwrap()) / 32768.0)
        .collect();
    let mono = s.chunks(ch).map(|c| c[0]).collect();
    (spec.sample_rate, mono)
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

fn pesq(dir: &Path, name: &str, reference: &[f32], degraded: &[f32], rate: u32) -> String {
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
        return format!("error: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Start `serve` recording callers into `rec`; its SIP address.
fn start_serve(bin: &Path, codec: &str, rec: &Path) -> (Child, std::net::SocketAddr) {
    let mut child = Command::new(bin)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--json",
            "--no-control",
            "--codec",
        ])
        .arg(codec)
        .arg("--record")
        .arg(rec)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start termphone serve");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["event"] == "listening" && v["transport"] == "udp" {
            let addr = v["addr"].as_str().unwrap().parse().unwrap();
            // keep draining stdout so serve never blocks on a full pipe
            std::thread::spawn(move || for _ in lines {});
            return (child, addr);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("serve did not start");
}

fn stop(child: &mut Child) {
    // SIGTERM: serve closes its recordings and exits.
    // SAFETY: kill(2) on our own child's PID.
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
    let seed: u64 = std::env::var("QUALITY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let codecs: Vec<String> = match std::env::var("QUALITY_CODECS") {
        Ok(list) => list.split(',').map(str::to_string).collect(),
        Err(_) => CodecName::ALL
            .iter()
            .filter(|c| !matches!(c, CodecName::Pcma))
            .map(|c| c.as_str().to_string())
            .collect(),
    };
    let speech = repo("tests/data/speech-48k.wav");
    let (src_rate, source) = read_wav(&speech);
    let work = tempfile::tempdir().unwrap();
    println!(
        "| codec | PESQ | loss | jitter | termphone (PLC/FEC, adaptive buffer) | silence insertion | packets lost |"
    );
    println!("|---|---|---|---|---|---|---|");
    for codec in &codecs {
        let rate = codec_by_name(codec)
            .map(|c| c.sample_rate())
            .unwrap_or(8000);
        let pesq_rate = if rate == 8000 { 8000 } else { 16000 };
        let reference = resample(&source, src_rate, pesq_rate);
        for loss in LOSSES {
            let name = format!("{codec}-{}", (loss * 100.0) as u32);
            let rec = work.path().join(&name);
            std::fs::create_dir_all(&rec).unwrap();
            let (mut serve, addr) = start_serve(&bin, codec, &rec);
            let relay = Relay::start_asymmetric(
                addr,
                Impairment::loss_jitter(loss, JITTER),
                Impairment::none(),
                seed,
            );
            let status = Command::new(&bin)
                .args([
                    "dial",
                    "--listen",
                    "127.0.0.1:0",
                    "--json",
                    "--codec",
                    codec,
                ])
                .arg(format!("sip:bench@{}", relay.sip_addr()))
                .arg("--play")
                .arg(&speech)
                .args(["--duration", CALL_SECS])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("run termphone dial");
            stop(&mut serve);
            let wav = std::fs::read_dir(&rec)
                .unwrap()
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|e| e == "wav"));
            let Some(wav) = wav.filter(|_| status.success()) else {
                println!(
                    "| {codec} | - | {:.0} % | 30 ms | call failed ({status}) | | |",
                    loss * 100.0
                );
                continue;
            };
            let (rec_rate, got) = read_wav(&wav);
            let degraded = resample(&got, rec_rate, pesq_rate);
            let ours = pesq(work.path(), &name, &reference, &degraded, pesq_rate);
            let first = relay.first_rtp_seq(true).unwrap_or(0);
            let lost: HashSet<usize> = relay
                .dropped_rtp(true)
                .iter()
                .map(|s| usize::from(s.wrapping_sub(first)))
                .collect();
            let silent = silence_inserted(codec, &source, src_rate, &lost);
            let silent = resample(&silent, rate, pesq_rate);
            let baseline = pesq(
                work.path(),
                &format!("{name}-silence"),
                &reference,
                &silent,
                pesq_rate,
            );
            println!(
                "| {codec} | {} | {:.0} % | 30 ms | {ours} | {baseline} | {} |",
                if pesq_rate == 8000 { "NB" } else { "WB" },
                loss * 100.0,
                lost.len()
            );
        }
    }
}
