//! Acoustic echo cancellation (`termphone::media::aec`) on a synthetic echo: far-end speech
//! played through a simulated room (40 ms delay, a decaying train of reflections, about −6 dB)
//! into the microphone. Checked: the echo goes down by at least 20 dB once the canceller has
//! converged; near-end speech talking over the echo is kept; silence stays silence; odd input
//! does not panic; the wrapper adds no allocation per frame. Behaviour only, no timing.
//!
//! Each check is also run with the canceller bypassed (output = microphone) to show that it
//! fails then, i.e. that it measures the canceller and not the test signal.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use termphone::media::aec::{AecError, EchoCanceller, FRAME};

const RATE: usize = 48_000;

// ---------------------------------------------------------------------------------------------
// Allocation counting (this thread only, so that tests running in parallel do not interfere).

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCS.with(|c| c.get())
}

// ---------------------------------------------------------------------------------------------
// Signals.

/// The test speech (espeak-ng, 48 kHz, 5 s) on the ±1 scale.
fn speech() -> Vec<f64> {
    let mut r = hound::WavReader::open(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/speech-48k.wav"
    ))
    .expect("speech-48k.wav");
    assert_eq!(r.spec().sample_rate, RATE as u32);
    r.samples::<i16>()
        .map(|s| f64::from(s.unwrap()) / 32768.0)
        .collect()
}

/// `x` repeated to `n` samples.
fn looped(x: &[f64], n: usize) -> Vec<f64> {
    x.iter().copied().cycle().take(n).collect()
}

/// Deterministic xorshift noise, uniform in [-1, 1].
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

/// The echo path as sparse taps (offset in samples, gain): a bulk delay of 40 ms, the direct
/// sound, then 90 reflections over the next 120 ms with random signs and an exponential decay
/// (time constant 30 ms) carrying half as much energy as the direct sound; scaled so that the
/// whole path has an energy gain of −6 dB.
fn room() -> Vec<(usize, f64)> {
    let delay = RATE * 40 / 1000;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let span = RATE * 120 / 1000;
    let tau = RATE as f64 * 0.030;
    let mut reflections: Vec<(usize, f64)> = (0..90)
        .map(|_| {
            let k = 48 + ((rng.next() + 1.0) / 2.0 * (span - 48) as f64) as usize;
            (delay + k, (-(k as f64) / tau).exp() * rng.next().signum())
        })
        .collect();
    let tail: f64 = reflections.iter().map(|(_, g)| g * g).sum();
    for (_, g) in &mut reflections {
        *g *= (0.5 / tail).sqrt();
    }
    let mut taps = vec![(delay, 1.0)];
    taps.extend(reflections);
    let total: f64 = taps.iter().map(|(_, g)| g * g).sum();
    let scale = (10f64.powf(-6.0 / 10.0) / total).sqrt();
    taps.iter().map(|&(k, g)| (k, g * scale)).collect()
}

/// `x` through the echo path.
fn echo_of(x: &[f64]) -> Vec<f64> {
    let taps = room();
    let mut y = vec![0.0; x.len()];
    for &(k, g) in &taps {
        for i in k..x.len() {
            y[i] += g * x[i - k];
        }
    }
    y
}

fn to_i16(x: &[f64]) -> Vec<i16> {
    x.iter()
        .map(|v| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

fn to_f64(x: &[i16]) -> Vec<f64> {
    x.iter().map(|&s| f64::from(s) / 32768.0).collect()
}

fn energy(x: &[f64]) -> f64 {
    x.iter().map(|v| v * v).sum()
}

fn db(ratio: f64) -> f64 {
    10.0 * ratio.max(1e-30).log10()
}

fn secs(s: f64) -> usize {
    (s * RATE as f64) as usize
}

/// Feed `far` (render) and `mic` (capture) through the canceller in 20 ms frames, render
/// first; `None` bypasses it (output = microphone).
fn run(aec: Option<&mut EchoCanceller>, far: &[f64], mic: &[f64]) -> Vec<f64> {
    assert_eq!(far.len(), mic.len());
    assert_eq!(far.len() % FRAME, 0);
    let far = to_i16(far);
    let mut out = to_i16(mic);
    if let Some(aec) = aec {
        for (f, m) in far.chunks(FRAME).zip(out.chunks_mut(FRAME)) {
            aec.render(f).unwrap();
            aec.capture(m).unwrap();
        }
    }
    to_f64(&out)
}

// ---------------------------------------------------------------------------------------------
// Echo only: ERLE after convergence.

/// 12 s of far-end speech (the 5 s file looped); microphone = echo + noise at −70 dBFS.
/// Returns (echo, output) for the span after `converge`.
fn echo_only(
    bypass: bool,
    delay_hint_ms: Option<u32>,
    converge: f64,
) -> (Vec<f64>, Vec<f64>, Option<EchoCanceller>) {
    let n = secs(12.0);
    let far = looped(&speech(), n);
    let echo = echo_of(&far);
    let mut rng = Rng(7);
    let mic: Vec<f64> = echo
        .iter()
        .map(|e| e + rng.next() * 10f64.powf(-70.0 / 20.0) * 3f64.sqrt())
        .collect();
    let mut aec = (!bypass).then(|| EchoCanceller::new().unwrap());
    if let (Some(aec), Some(ms)) = (aec.as_mut(), delay_hint_ms) {
        aec.set_delay_hint(ms);
    }
    let out = run(aec.as_mut(), &far, &mic);
    let from = secs(converge);
    (echo[from..].to_vec(), out[from..].to_vec(), aec)
}

const MIN_ERLE_DB: f64 = 20.0;

#[test]
fn echo_is_cancelled_by_at_least_20_db_after_convergence() {
    let (echo, out, aec) = echo_only(false, None, 4.0);
    let erle = db(energy(&echo) / energy(&out));
    // Per second too, for the record.
    let per_second: Vec<String> = echo
        .chunks(RATE)
        .zip(out.chunks(RATE))
        .map(|(e, o)| format!("{:.1}", db(energy(e) / energy(o))))
        .collect();
    let stats = aec.unwrap().stats();
    println!(
        "ERLE 4-12 s: {erle:.1} dB (per second: {}); sonora stats: {stats:?}",
        per_second.join(" ")
    );
    assert!(erle >= MIN_ERLE_DB, "ERLE {erle:.1} dB < {MIN_ERLE_DB} dB");
    // sonora found the echo: its delay estimate is near the 40 ms of the echo path.
    let delay = stats.delay_ms.expect("a delay estimate");
    assert!((20..=80).contains(&delay), "delay estimate {delay} ms");
}

#[test]
fn a_delay_hint_does_no_harm() {
    let (echo, out, _) = echo_only(false, Some(40), 0.0);
    let early = |e: &[f64], o: &[f64]| db(energy(&e[..secs(2.0)]) / energy(&o[..secs(2.0)]));
    let (echo_nohint, out_nohint, _) = echo_only(false, None, 0.0);
    let (with_hint, without) = (early(&echo, &out), early(&echo_nohint, &out_nohint));
    let (echo, out) = (&echo[secs(4.0)..], &out[secs(4.0)..]);
    let erle = db(energy(echo) / energy(out));
    println!(
        "ERLE 4-12 s with a 40 ms delay hint: {erle:.1} dB; first 2 s: {:.1} dB with the hint, \
         {:.1} dB without",
        with_hint, without
    );
    assert!(erle >= MIN_ERLE_DB, "ERLE {erle:.1} dB < {MIN_ERLE_DB} dB");
}

#[test]
fn bypassed_the_erle_check_fails() {
    let (echo, out, _) = echo_only(true, None, 4.0);
    let erle = db(energy(&echo) / energy(&out));
    println!("bypassed ERLE: {erle:.1} dB");
    assert!(erle < MIN_ERLE_DB, "bypass gave {erle:.1} dB");
}

// ---------------------------------------------------------------------------------------------
// Double talk.

/// Timeline (15 s): far-end speech 0–11 s; near-end speech (the test speech reversed in time,
/// as loud as the far end, so about 6 dB above its echo) 8–13 s. So: echo only 0–8 s (the
/// canceller converges), double talk 8–11 s, near end only 11–13 s.
///
/// The near end is compared with `clean`: the same near end through a fresh canceller that never
/// hears a far end or an echo (so, what the canceller makes of the near end by itself: its
/// high-pass filter, band splitting and about 9 ms of delay, which change the waveform enough
/// that a plain correlation with the raw near end reaches only about 0.77). Bypassed, `clean` is
/// the near end itself.
struct DoubleTalk {
    near: Vec<f64>,
    clean: Vec<f64>,
    echo: Vec<f64>,
    out: Vec<f64>,
}

fn double_talk(bypass: bool) -> DoubleTalk {
    let n = secs(15.0);
    let s = speech();
    let mut far = looped(&s, n);
    far[secs(11.0)..].fill(0.0);
    let mut near = vec![0.0; n];
    for (i, v) in s.iter().rev().enumerate() {
        near[secs(8.0) + i] = *v;
    }
    let echo = echo_of(&far);
    let mut rng = Rng(11);
    let mic: Vec<f64> = (0..n)
        .map(|i| near[i] + echo[i] + rng.next() * 10f64.powf(-70.0 / 20.0) * 3f64.sqrt())
        .collect();
    let fresh = || (!bypass).then(|| EchoCanceller::new().unwrap());
    let out = run(fresh().as_mut(), &far, &mic);
    let clean = run(fresh().as_mut(), &vec![0.0; n], &near);
    DoubleTalk {
        near,
        clean,
        echo,
        out,
    }
}

/// What happened to the near end and to the echo in the double-talk span and the near-only
/// span.
#[derive(Debug)]
struct DoubleTalkScore {
    /// The clean near end's level against the raw near end, dB (the canceller alone does not
    /// make the near end quieter).
    clean_level_db: f64,
    /// Near-only span: correlation of output and clean near end.
    ncc_near_only: f64,
    /// Near-only span: output energy over clean near-end energy, dB.
    level_near_only_db: f64,
    /// Double talk: least-squares gain of the clean near end in the output.
    gain_double_talk: f64,
    /// Double talk: correlation of output and clean near end (for the record: 0.95, and 0.86
    /// bypassed, too close to judge by).
    #[allow(dead_code)] // printed through Debug only
    ncc_double_talk: f64,
    /// Double talk: what is left after removing the fitted near end, relative to the echo, dB.
    residual_vs_echo_db: f64,
}

fn score(dt: &DoubleTalk) -> DoubleTalkScore {
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let active = secs(8.0)..secs(13.0);
    let clean_level_db = db(energy(&dt.clean[active.clone()]) / energy(&dt.near[active]));

    let near_only = secs(11.3)..secs(13.0);
    let (out, clean) = (&dt.out[near_only.clone()], &dt.clean[near_only]);
    let ncc_near_only = dot(out, clean) / (energy(out) * energy(clean)).sqrt();
    let level_near_only_db = db(energy(out) / energy(clean));

    let both = secs(8.5)..secs(11.0);
    let (out, clean) = (&dt.out[both.clone()], &dt.clean[both.clone()]);
    let gain = dot(out, clean) / energy(clean);
    let residual: f64 = clean
        .iter()
        .zip(out)
        .map(|(c, o)| (o - gain * c).powi(2))
        .sum();
    DoubleTalkScore {
        clean_level_db,
        ncc_near_only,
        level_near_only_db,
        gain_double_talk: gain,
        ncc_double_talk: dot(out, clean) / (energy(out) * energy(clean)).sqrt(),
        residual_vs_echo_db: db(residual / energy(&dt.echo[both])),
    }
}

// Thresholds, set from measurements with margin (see the printed scores). Measured here
// (sonora 0.2.0, x86-64): the clean near end -0.48 dB against the raw one; near end alone:
// NCC 0.99999, level -0.00 dB; double talk: near-end gain 0.87 (-1.2 dB), residual -6.4 dB.
// Bypassed: residual 0.0 dB (all the echo is left), so the residual check is what a bypass
// fails; a canceller that muted the microphone would fail the gain and near-only checks.
// The residual is the output minus the fitted near end, so it holds the echo left and any
// distortion of the near end (the suppressor's gain changes); it only bounds the echo left.
const MIN_NCC_NEAR_ONLY: f64 = 0.95;
const MAX_LOSS_NEAR_ONLY_DB: f64 = 1.0;
const MIN_GAIN_DOUBLE_TALK: f64 = 0.6;
const MAX_RESIDUAL_VS_ECHO_DB: f64 = -3.0;

fn check(s: &DoubleTalkScore) -> Result<(), String> {
    let mut bad = Vec::new();
    if s.clean_level_db.abs() > 1.0 {
        bad.push(format!("clean near end level {:.1} dB", s.clean_level_db));
    }
    if s.ncc_near_only < MIN_NCC_NEAR_ONLY {
        bad.push(format!("near-only NCC {:.3}", s.ncc_near_only));
    }
    if s.level_near_only_db < -MAX_LOSS_NEAR_ONLY_DB {
        bad.push(format!("near-only level {:.1} dB", s.level_near_only_db));
    }
    if s.gain_double_talk < MIN_GAIN_DOUBLE_TALK {
        bad.push(format!("double-talk near gain {:.2}", s.gain_double_talk));
    }
    if s.residual_vs_echo_db > MAX_RESIDUAL_VS_ECHO_DB {
        bad.push(format!(
            "double-talk echo left {:.1} dB",
            s.residual_vs_echo_db
        ));
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join(", "))
    }
}

#[test]
fn near_end_speech_is_kept_in_double_talk_and_alone() {
    let s = score(&double_talk(false));
    println!("double talk: {s:?}");
    check(&s).unwrap();
}

#[test]
fn bypassed_the_double_talk_check_fails() {
    let s = score(&double_talk(true));
    println!("double talk, bypassed: {s:?}");
    let err = check(&s).expect_err("bypass must fail");
    assert!(err.contains("echo left"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Silence, odd input, allocation.

#[test]
fn silence_in_gives_silence_out() {
    let mut aec = EchoCanceller::new().unwrap();
    let far = vec![0i16; FRAME];
    let mut peak = 0i32;
    for _ in 0..250 {
        let mut near = vec![0i16; FRAME];
        aec.render(&far).unwrap();
        aec.capture(&mut near).unwrap();
        peak = peak.max(near.iter().map(|&s| i32::from(s).abs()).max().unwrap());
    }
    println!("silence: peak {peak}");
    assert!(peak <= 1, "silence came out with peak {peak}");
}

#[test]
fn odd_input_does_not_panic_and_the_canceller_recovers() {
    let mut aec = EchoCanceller::new().unwrap();
    let max = vec![i16::MAX; FRAME];
    let min = vec![i16::MIN; FRAME];
    let square: Vec<i16> = (0..FRAME)
        .map(|i| if i % 2 == 0 { i16::MAX } else { i16::MIN })
        .collect();
    // Full-scale DC, the most negative value, and a full-scale Nyquist square, on both sides
    // and in combination, for 2 s each.
    for (far, near) in [
        (&max, &max),
        (&min, &min),
        (&square, &square),
        (&max, &square),
        (&square, &min),
    ] {
        for _ in 0..100 {
            let mut frame = near.clone();
            aec.render(far).unwrap();
            aec.capture(&mut frame).unwrap();
        }
    }
    // Wrong lengths: an error, nothing changed.
    let mut short = vec![5i16; FRAME - 1];
    assert_eq!(
        aec.capture(&mut short),
        Err(AecError::FrameLength { got: FRAME - 1 })
    );
    assert!(short.iter().all(|&s| s == 5));
    assert!(aec.render(&[]).is_err());
    // Capture with no render at all, and render with no capture: accepted.
    for _ in 0..10 {
        let mut frame = vec![100i16; FRAME];
        aec.capture(&mut frame).unwrap();
    }
    for _ in 0..10 {
        aec.render(&vec![100i16; FRAME]).unwrap();
    }
    // Afterwards silence settles back to (near) silence.
    let zero = vec![0i16; FRAME];
    let mut peak = 0;
    for k in 0..200 {
        let mut frame = zero.clone();
        aec.render(&zero).unwrap();
        aec.capture(&mut frame).unwrap();
        if k >= 100 {
            peak = peak.max(frame.iter().map(|&s| i32::from(s).abs()).max().unwrap());
        }
    }
    println!("after odd input, silence peak {peak}");
    assert!(peak <= 1, "peak {peak} in silence after odd input");
}

/// Allocations per 20 ms frame, after the first 50: through `EchoCanceller`, and calling sonora
/// directly with the same configuration and the same audio.
fn allocations_per_frame(through_wrapper: bool) -> Vec<u64> {
    // The same configuration as EchoCanceller::new.
    use sonora::config::{EchoCanceller as Aec3, MaxProcessingRate, Pipeline};
    use sonora::{AudioProcessing, Config, StreamConfig};

    let far = to_i16(&looped(&speech(), secs(4.0)));
    let mic = to_i16(&echo_of(&to_f64(&far)));
    let mut aec = EchoCanceller::new().unwrap();
    let stream = StreamConfig::new(RATE as u32, 1);
    let mut apm = AudioProcessing::builder()
        .config(Config {
            echo_canceller: Some(Aec3::default()),
            pipeline: Pipeline {
                maximum_internal_processing_rate: MaxProcessingRate::Rate48kHz,
                ..Pipeline::default()
            },
            ..Config::default()
        })
        .capture_config(stream)
        .render_config(stream)
        .build();
    let (mut a, mut b) = (vec![0f32; 480], vec![0f32; 480]);
    let mut frame = vec![0i16; FRAME];
    let mut counts = Vec::new();
    for (f, m) in far.chunks(FRAME).zip(mic.chunks(FRAME)) {
        frame.copy_from_slice(m);
        let before = allocations();
        if through_wrapper {
            aec.render(f).unwrap();
            aec.capture(&mut frame).unwrap();
            let _ = aec.stats();
        } else {
            for (fc, mc) in f.chunks(480).zip(frame.chunks(480)) {
                for (x, &v) in a.iter_mut().zip(fc) {
                    *x = f32::from(v) / 32768.0;
                }
                apm.process_render_f32(&[&a], &mut [&mut b]).unwrap();
                for (x, &v) in a.iter_mut().zip(mc) {
                    *x = f32::from(v) / 32768.0;
                }
                apm.process_capture_f32(&[&a], &mut [&mut b]).unwrap();
            }
        }
        counts.push(allocations() - before);
    }
    counts.split_off(50)
}

/// The wrapper adds no allocation of its own per frame: it allocates exactly what sonora does
/// on the same audio. (sonora 0.2's AEC3 allocates small scratch vectors per block; that count
/// is printed, and it must stay steady, i.e. nothing accumulates.)
#[test]
fn the_wrapper_allocates_nothing_per_frame_beyond_sonora() {
    let wrapped = allocations_per_frame(true);
    let direct = allocations_per_frame(false);
    println!(
        "allocations per 20 ms frame: through EchoCanceller {:?}..{:?}, sonora alone {:?}..{:?}",
        wrapped.iter().min(),
        wrapped.iter().max(),
        direct.iter().min(),
        direct.iter().max()
    );
    assert_eq!(wrapped, direct);
    let (min, max) = (wrapped.iter().min().unwrap(), wrapped.iter().max().unwrap());
    assert!(max - min <= 8, "allocations per frame vary: {min}..{max}");
}
