//! `RingPlayer` on a real playback device: what it plays is recorded from the sink's monitor
//! and checked for the sounds' frequencies (Goertzel), their cadence, the loop, and silence
//! once stopped.
//!
//! Needs the private PulseAudio of `scripts/headless-audio.sh`:
//!
//! ```sh
//! bash scripts/headless-audio.sh start && eval "$(bash scripts/headless-audio.sh env)"
//! cargo test --test ring_device
//! bash scripts/headless-audio.sh stop
//! ```
//!
//! Without `PULSE_SERVER` every test here prints that it did not run and passes;
//! `TERMPHONE_REQUIRE_AUDIO=1` makes that a failure. The player plays on the default sink
//! (`virt_speaker`); the recording is a `CaptureStream` on `virt_speaker.monitor`, chosen with
//! `PULSE_SOURCE` (set before any device is opened, as in tests/audio_cpal.rs).

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use termphone::audio::{goertzel, AudioSource, CaptureStream, RingKind, RingPlayer, StreamStats};

/// The tests share one sink and its monitor: one at a time.
static DEVICE: Mutex<()> = Mutex::new(());

/// Recording rate.
const RATE: u32 = 16_000;

fn server_available(test: &str) -> bool {
    if std::env::var_os("PULSE_SERVER").is_some() {
        std::env::set_var("PULSE_SOURCE", "virt_speaker.monitor");
        return true;
    }
    let msg = format!(
        "ring_device::{test}: NOT RUN: PULSE_SERVER is not set. Start the test sound server with\n  \
         bash scripts/headless-audio.sh start && eval \"$(bash scripts/headless-audio.sh env)\""
    );
    if std::env::var_os("TERMPHONE_REQUIRE_AUDIO").is_some_and(|v| v == "1") {
        panic!("{msg} (TERMPHONE_REQUIRE_AUDIO=1)");
    }
    let _ = writeln!(std::io::stderr(), "{msg}");
    false
}

/// Reads the monitor in 20 ms frames on a real-time schedule.
struct Recorder {
    capture: CaptureStream,
    samples: Vec<i16>,
    start: Instant,
    ticks: u32,
}

impl Recorder {
    fn open() -> Recorder {
        Recorder {
            capture: CaptureStream::open(None, RATE).expect("open the monitor"),
            samples: Vec::new(),
            start: Instant::now(),
            ticks: 0,
        }
    }

    fn run_for(&mut self, d: Duration) {
        let until = Instant::now() + d;
        let mut frame = vec![0i16; RATE as usize / 50];
        while Instant::now() < until {
            self.capture.read(&mut frame);
            self.samples.extend_from_slice(&frame);
            self.ticks += 1;
            let next = self.start + Duration::from_millis(20) * self.ticks;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
}

fn ms(ms: f64) -> usize {
    (ms * f64::from(RATE) / 1000.0).round() as usize
}

fn rms(x: &[i16]) -> f64 {
    let e: f64 = x.iter().map(|&s| (f64::from(s) / 32768.0).powi(2)).sum();
    (e / x.len().max(1) as f64).sqrt()
}

/// `samples` from `a` to `b` milliseconds after sample `from` (either may be negative),
/// clipped to what was recorded.
fn span(samples: &[i16], from: usize, a: f64, b: f64) -> &[i16] {
    let at = |t: f64| {
        let i = from as f64 + t * f64::from(RATE) / 1000.0;
        (i.round().max(0.0) as usize).min(samples.len())
    };
    &samples[at(a)..at(b).max(at(a))]
}

/// Ring `kind` for `ring` while recording (from 300 ms before), stop it from another thread
/// while the recording goes on for `after`. Returns the recording, the sample index at
/// which stop was called, the stream's counters and how long stopping took.
fn ring_and_record(
    kind: RingKind,
    ring: Duration,
    after: Duration,
) -> (Vec<i16>, usize, StreamStats, Duration) {
    let mut rec = Recorder::open();
    rec.run_for(Duration::from_millis(300));
    let player = RingPlayer::start(kind, None).expect("start the ring player");
    eprintln!("{kind} on {:?}", player.device_name());
    assert_eq!(player.kind(), kind);
    rec.run_for(ring);
    assert!(player.is_playing(), "{kind}: the player stopped by itself");
    // it sleeps between looks at the device: a few per cent of a core at most, even unoptimised
    if let Some(cpu) = thread_cpu("termphone-ring") {
        eprintln!("{kind}: the ring thread used {cpu:?} of CPU in {ring:?}");
        assert!(
            cpu < ring / 5,
            "{kind}: the ring thread used {cpu:?} in {ring:?}"
        );
    }
    let stop_at = rec.samples.len();
    let stopper = std::thread::spawn(move || {
        let t = Instant::now();
        let stats = player.stop_with_stats();
        (stats, t.elapsed())
    });
    rec.run_for(after);
    let (stats, took) = stopper.join().expect("stop thread");
    let stats = stats.expect("the device did not fail");
    let cap = rec.capture.stats();
    eprintln!("{kind}: player {stats:?}, stop took {took:?}; capture {cap:?}");
    (rec.samples, stop_at, stats, took)
}

/// CPU time (user + system) of this process's thread named `name`, from /proc (Linux).
fn thread_cpu(name: &str) -> Option<Duration> {
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
        // fields after the ")" that closes the name: state is 3rd, utime 14th, stime 15th
        let rest = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        // SAFETY: sysconf only reads its integer argument.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        return Some(Duration::from_millis(ticks * 1000 / hz));
    }
    None
}

fn onset(samples: &[i16]) -> usize {
    samples
        .iter()
        .position(|&s| s.unsigned_abs() > 655) // 0.02 of full scale
        .expect("the ring was never heard")
}

fn check_stream(kind: RingKind, stats: &StreamStats, took: Duration) {
    assert_eq!((stats.errors, stats.overruns), (0, 0), "{kind}: {stats:?}");
    assert!(stats.underruns <= 2, "{kind}: {stats:?}");
    assert!(
        took < Duration::from_millis(600),
        "{kind}: stop took {took:?}"
    );
}

/// After the stop: nothing within 400 ms (the queue, the fade, the monitor's latency).
fn check_silenced(kind: RingKind, samples: &[i16], stop_at: usize) {
    let before = rms(span(samples, stop_at, -200.0, 0.0));
    let after = span(samples, stop_at, 400.0, 1e9);
    assert!(
        after.len() >= ms(500.0),
        "{kind}: recorded too little after the stop"
    );
    let level = after.chunks(ms(100.0)).map(rms).fold(0.0, f64::max);
    eprintln!("{kind}: level {before:.4} before the stop, at most {level:.5} after");
    assert!(
        before > 0.01,
        "{kind}: was not sounding when stopped ({before})"
    );
    assert!(level < 0.002, "{kind}: still sounding after stop ({level})");
}

#[test]
fn ringtone_plays_its_notes_loops_and_stops() {
    let _g = DEVICE.lock().unwrap_or_else(|e| e.into_inner());
    if !server_available("ringtone_plays_its_notes_loops_and_stops") {
        return;
    }
    let kind = RingKind::Ringtone;
    // stop in the second cycle's second motif (which starts 1 s into the cycle)
    let (s, stop_at, stats, took) = ring_and_record(
        kind,
        Duration::from_millis(5300),
        Duration::from_millis(1200),
    );
    check_stream(kind, &stats, took);
    let t0 = onset(&s);
    eprintln!("onset {} ms into the recording", t0 * 1000 / RATE as usize);
    let tones = kind.tones_hz();
    // the first motif of both cycles: each note's fundamental leads just after it starts
    for cycle in [0.0, 4000.0] {
        for (i, &f) in tones.iter().enumerate() {
            let start = cycle + 150.0 * i as f64;
            let w = span(&s, t0, start + 10.0, start + 90.0);
            let amps: Vec<f64> = tones.iter().map(|&t| goertzel(w, t, RATE)).collect();
            eprintln!("note {f:.1} Hz at {start} ms: {amps:.3?}");
            assert!(amps[i] > 0.08, "note {f:.1} Hz at {start} ms: {amps:.3?}");
            assert!(
                amps.iter().all(|&a| a <= amps[i]),
                "note {f:.1} Hz at {start} ms is not the strongest: {amps:.3?}"
            );
        }
    }
    // sound through the first 2 s, silence in the rest of the cycle
    for w in span(&s, t0, 0.0, 1900.0).chunks_exact(ms(100.0)) {
        assert!(rms(w) > 0.01, "quiet inside the ring: {}", rms(w));
    }
    let gap = span(&s, t0, 2100.0, 3900.0).chunks_exact(ms(100.0));
    let loudest = gap.map(rms).fold(0.0, f64::max);
    assert!(loudest < 0.002, "sound between rings: {loudest}");
    check_silenced(kind, &s, stop_at);
}

#[test]
fn ringback_plays_425_hz_one_second_in_five_and_stops() {
    let _g = DEVICE.lock().unwrap_or_else(|e| e.into_inner());
    if !server_available("ringback_plays_425_hz_one_second_in_five_and_stops") {
        return;
    }
    let kind = RingKind::Ringback;
    // stop half way through the second tone
    let (s, stop_at, stats, took) = ring_and_record(
        kind,
        Duration::from_millis(5500),
        Duration::from_millis(1200),
    );
    check_stream(kind, &stats, took);
    let t0 = onset(&s);
    eprintln!("onset {} ms into the recording", t0 * 1000 / RATE as usize);
    let a = goertzel(span(&s, t0, 100.0, 900.0), 425.0, RATE);
    eprintln!("425 Hz at {a:.4}");
    assert!((a - 0.3).abs() < 0.03, "425 Hz amplitude {a}");
    for other in [350.0, 500.0, 850.0] {
        let b = goertzel(span(&s, t0, 100.0, 900.0), other, RATE);
        assert!(b < 0.01, "{other} Hz amplitude {b}");
    }
    // the tone lasts 1 s: count the 20 ms windows that hold it in the first cycle
    let on = span(&s, t0, 0.0, 4900.0)
        .chunks_exact(ms(20.0))
        .filter(|w| goertzel(w, 425.0, RATE) > 0.15)
        .count();
    eprintln!("{on} windows of 20 ms hold the tone");
    assert!(
        (47..=51).contains(&on),
        "tone in {on} windows of 20 ms, not 50"
    );
    let gap = span(&s, t0, 1100.0, 4900.0).chunks_exact(ms(100.0));
    let loudest = gap.map(rms).fold(0.0, f64::max);
    assert!(loudest < 0.002, "sound between rings: {loudest}");
    // and again 5 s later: the loop
    let again = goertzel(span(&s, t0, 5050.0, 5250.0), 425.0, RATE);
    assert!(again > 0.25, "second ring at 5 s: {again}");
    check_silenced(kind, &s, stop_at);
}

#[test]
fn dropping_stops_and_an_unknown_device_is_an_error() {
    let _g = DEVICE.lock().unwrap_or_else(|e| e.into_inner());
    if !server_available("dropping_stops_and_an_unknown_device_is_an_error") {
        return;
    }
    let err = RingPlayer::start(RingKind::Ringtone, Some("no such device here"))
        .expect_err("an unknown device must fail");
    assert!(err.to_string().contains("no such device here"), "{err}");
    // dropped at once (before the device has asked for audio) and after ringing a while
    for (kind, after) in [(RingKind::Ringback, 0), (RingKind::Ringtone, 300)] {
        let player = RingPlayer::start(kind, None).expect("start");
        std::thread::sleep(Duration::from_millis(after));
        let t = Instant::now();
        drop(player);
        let took = t.elapsed();
        eprintln!("{kind}: dropped after {after} ms, took {took:?}");
        assert!(
            took < Duration::from_millis(600),
            "{kind}: drop took {took:?}"
        );
    }
}
