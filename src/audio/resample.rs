//! Streaming sample-rate conversion: a Kaiser-windowed sinc filter in polyphase form.
//!
//! Works for any pair of integer rates. The ratio is kept exact (rates reduced by their gcd,
//! positions tracked in integers), so a stream never drifts. When the reduced output rate
//! has at most [`MAX_EXACT_PHASES`] phases each phase has its own precomputed filter; beyond
//! that a table of that many phases is interpolated linearly. For extreme ratios (hundreds
//! to one) the table is capped at 2^20 coefficients with fewer, interpolated phases.
//!
//! Filter: 24 zero crossings each side, Kaiser beta 8.5 (stop band below -80 dB), cut-off at
//! 0.91 of the lower rate's Nyquist frequency (pass band flat to about 0.84). Delay is about
//! 24 / (0.91 · min(in, out)) seconds' worth of samples, e.g. 3.3 ms between 8 and 48 kHz.
//!
//! The filter is centred (non-causal within its buffer): output sample `n` corresponds to
//! input time `n · in / out` exactly, so a file converted and converted back lines up with the
//! original at lag zero. In a live stream that shows up as the filter's half-length of
//! latency before the first output. Call [`Resampler::flush`] at the end of a finite stream
//! to get the last samples out.

/// Zero crossings of the sinc on each side of the centre.
const ZERO_CROSSINGS: f64 = 24.0;
/// Kaiser window shape (about -85 dB side lobes).
const KAISER_BETA: f64 = 8.5;
/// Cut-off relative to the lower rate's Nyquist frequency.
const ROLLOFF: f64 = 0.91;
/// Largest number of exactly computed filter phases; more are interpolated.
pub const MAX_EXACT_PHASES: u64 = 1024;
/// Largest filter table, in coefficients (4 MiB of f32).
const MAX_TABLE: u64 = 1 << 20;

/// A streaming mono resampler from one integer rate to another.
#[derive(Debug, Clone)]
pub struct Resampler {
    /// Output step in input samples is `step_num / den` (= in/out reduced).
    step_num: u64,
    den: u64,
    /// Number of table phases (`den` when exact, else [`MAX_EXACT_PHASES`]).
    phases: u64,
    /// Taps on each side of the centre (filter length is `2 * half`).
    half: usize,
    /// `(phases + 1) * 2 * half` coefficients, phase-major.
    table: Vec<f32>,
    /// Input history; `buf[0]` is input sample number `base`.
    buf: Vec<f32>,
    base: i64,
    /// Position of the next output in input samples: `pos_int + pos_frac / den`.
    pos_int: i64,
    pos_frac: u64,
    passthrough: bool,
    flushed: bool,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Modified Bessel function of the first kind, order 0 (series; converges fast for beta < 20).
fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let q = x * x / 4.0;
    for k in 1..64 {
        term *= q / (k as f64 * k as f64);
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

impl Resampler {
    /// A resampler from `in_rate` to `out_rate` Hz (a rate of 0 is treated as 1).
    pub fn new(in_rate: u32, out_rate: u32) -> Resampler {
        let in_rate = u64::from(in_rate.max(1));
        let out_rate = u64::from(out_rate.max(1));
        let g = gcd(in_rate, out_rate);
        let step_num = in_rate / g;
        let den = out_rate / g;
        let passthrough = step_num == den;
        // cut-off as a fraction of the input Nyquist frequency
        let cutoff = if out_rate < in_rate {
            ROLLOFF * out_rate as f64 / in_rate as f64
        } else {
            ROLLOFF
        };
        let half_len = ZERO_CROSSINGS / cutoff; // in input samples
        let half = if passthrough {
            0
        } else {
            half_len.ceil() as usize
        };
        // keep the table within MAX_TABLE coefficients even for extreme ratios (fewer,
        // interpolated phases then)
        let per_phase = (2 * half).max(1) as u64;
        let phases = if passthrough {
            1
        } else {
            den.min(MAX_EXACT_PHASES)
                .min((MAX_TABLE / per_phase).saturating_sub(1).max(1))
        };
        let taps = 2 * half;
        let mut table = Vec::with_capacity((phases as usize + 1) * taps);
        if !passthrough {
            let i0_beta = bessel_i0(KAISER_BETA);
            for p in 0..=phases {
                let frac = p as f64 / phases as f64;
                let row_start = table.len();
                for k in 0..taps {
                    // tap k multiplies input sample (pos_int - half + 1 + k); distance to the
                    // output's position pos_int + frac:
                    let d = (half as f64 - 1.0 - k as f64) + frac;
                    let c = if d.abs() >= half_len {
                        0.0
                    } else {
                        let x = cutoff * d;
                        let sinc = if x.abs() < 1e-12 {
                            1.0
                        } else {
                            (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x)
                        };
                        let r = d / half_len;
                        let w = bessel_i0(KAISER_BETA * (1.0 - r * r).max(0.0).sqrt()) / i0_beta;
                        cutoff * sinc * w
                    };
                    table.push(c);
                }
                // unity gain at DC for every phase
                let sum: f64 = table[row_start..].iter().sum();
                if sum.abs() > 1e-9 {
                    for c in &mut table[row_start..] {
                        *c /= sum;
                    }
                }
            }
        }
        let table = table.into_iter().map(|c| c as f32).collect();
        Resampler {
            step_num,
            den,
            phases,
            half,
            table,
            buf: vec![0.0; half],
            base: -(half as i64),
            pos_int: 0,
            pos_frac: 0,
            passthrough,
            flushed: false,
        }
    }

    /// Delay of the filter in input samples: how far the input must run ahead of an output.
    pub fn lookahead(&self) -> usize {
        self.half
    }

    /// Feed input samples; append every output sample that can now be computed to `out`.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        if self.passthrough {
            out.extend_from_slice(input);
            return;
        }
        self.buf.extend_from_slice(input);
        self.run(out);
    }

    /// End of a finite stream: emit the remaining outputs (the input is padded with silence).
    /// Further calls do nothing until [`Resampler::reset`].
    pub fn flush(&mut self, out: &mut Vec<f32>) {
        if self.passthrough || self.flushed {
            return;
        }
        self.flushed = true;
        let end = self.base + self.buf.len() as i64; // one past the last real input
        self.buf.extend(std::iter::repeat_n(0.0, self.half));
        // outputs whose position lies before `end`
        while self.pos_int < end {
            if !self.one(out) {
                break;
            }
        }
    }

    /// Forget all history, as if newly created.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.buf.resize(self.half, 0.0);
        self.base = -(self.half as i64);
        self.pos_int = 0;
        self.pos_frac = 0;
        self.flushed = false;
    }

    fn run(&mut self, out: &mut Vec<f32>) {
        while self.one(out) {}
        // drop history no output will need again
        let keep_from = self.pos_int - self.half as i64 + 1;
        let drop = (keep_from - self.base).max(0) as usize;
        if drop > 0 && drop >= self.buf.len() / 2 {
            let drop = drop.min(self.buf.len());
            self.buf.drain(..drop);
            self.base += drop as i64;
        }
    }

    /// Compute one output if its input window is complete.
    fn one(&mut self, out: &mut Vec<f32>) -> bool {
        let taps = 2 * self.half;
        let last_needed = self.pos_int + self.half as i64;
        if last_needed >= self.base + self.buf.len() as i64 {
            return false;
        }
        let start = (self.pos_int - self.half as i64 + 1 - self.base) as usize;
        let window = &self.buf[start..start + taps];
        let num = self.pos_frac * self.phases;
        let p = (num / self.den) as usize;
        let rem = num % self.den;
        let row = &self.table[p * taps..(p + 1) * taps];
        let y = if rem == 0 {
            dot(window, row)
        } else {
            let w = rem as f32 / self.den as f32;
            let next = &self.table[(p + 1) * taps..(p + 2) * taps];
            let a = dot(window, row);
            let b = dot(window, next);
            a + (b - a) * w
        };
        out.push(y);
        self.pos_frac += self.step_num;
        self.pos_int += (self.pos_frac / self.den) as i64;
        self.pos_frac %= self.den;
        true
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // four accumulators so the compiler can vectorise
    let mut acc = [0.0f32; 4];
    let chunks_a = a.chunks_exact(4);
    let chunks_b = b.chunks_exact(4);
    let (ra, rb) = (chunks_a.remainder(), chunks_b.remainder());
    for (x, y) in chunks_a.zip(chunks_b) {
        acc[0] += x[0] * y[0];
        acc[1] += x[1] * y[1];
        acc[2] += x[2] * y[2];
        acc[3] += x[3] * y[3];
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, n: usize, amp: f64) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin()) as f32
            })
            .collect()
    }

    fn convert(input: &[f32], from: u32, to: u32, chunk: usize) -> Vec<f32> {
        let mut r = Resampler::new(from, to);
        let mut out = Vec::new();
        for c in input.chunks(chunk) {
            r.process(c, &mut out);
        }
        r.flush(&mut out);
        out
    }

    /// SNR (dB) of `sig` against the ideal tone, skipping `skip` samples at each end.
    fn snr_db(sig: &[f32], freq: f64, rate: u32, amp: f64, skip: usize) -> f64 {
        let ideal = tone(freq, rate, sig.len(), amp);
        let (mut e, mut n) = (0.0f64, 0.0f64);
        for i in skip..sig.len() - skip {
            e += f64::from(ideal[i]).powi(2);
            n += (f64::from(sig[i]) - f64::from(ideal[i])).powi(2);
        }
        10.0 * (e / n.max(1e-30)).log10()
    }

    #[test]
    fn output_length_is_exact() {
        for (from, to) in [
            (8000, 48000),
            (48000, 8000),
            (44100, 8000),
            (8000, 44100),
            (16000, 8000),
        ] {
            let n = 12_345;
            let out = convert(&vec![0.0; n], from, to, 333);
            let want = (n as u64 * to as u64).div_ceil(from as u64) as usize;
            assert_eq!(out.len(), want, "{from}->{to}");
        }
    }

    #[test]
    fn chunking_does_not_change_output() {
        let input = tone(440.0, 44100, 20_000, 0.5);
        let a = convert(&input, 44100, 8000, 1);
        let b = convert(&input, 44100, 8000, 4096);
        assert_eq!(a, b);
    }

    #[test]
    fn extreme_ratios_stay_small_and_work() {
        let r = Resampler::new(768_000, 1001);
        assert!(r.table.len() <= (1 << 20) + 2 * r.half);
        let input = tone(300.0, 768_000, 768_000 / 4, 0.5);
        let out = convert(&input, 768_000, 1001, 4096);
        assert_eq!(
            out.len(),
            (input.len() as u64 * 1001).div_ceil(768_000) as usize
        );
        let snr = snr_db(&out, 300.0, 1001, 0.5, 60);
        assert!(snr > 40.0, "SNR {snr:.1} dB");
    }

    #[test]
    fn passthrough_is_identity() {
        let input = tone(1000.0, 8000, 1000, 0.5);
        assert_eq!(convert(&input, 8000, 8000, 160), input);
    }

    #[test]
    fn tone_snr_is_high() {
        for (from, to) in [
            (8000, 16000),
            (16000, 8000),
            (8000, 48000),
            (48000, 8000),
            (16000, 48000),
            (48000, 16000),
            (44100, 8000),
            (8000, 44100),
            (44100, 7999),
        ] {
            let input = tone(1000.0, from, from as usize, 0.5);
            let out = convert(&input, from, to, 160);
            let snr = snr_db(&out, 1000.0, to, 0.5, to as usize / 20);
            assert!(snr > 70.0, "{from}->{to}: SNR {snr:.1} dB");
        }
    }

    #[test]
    fn aliasing_is_suppressed() {
        // 6 kHz at 48 kHz has no place at 8 kHz: it must vanish, not fold to 2 kHz
        let input = tone(6000.0, 48000, 48000, 0.5);
        let out = convert(&input, 48000, 8000, 480);
        let rms = (out[400..7600].iter().map(|x| x * x).sum::<f32>() / 7200.0).sqrt();
        let db = 20.0 * (rms / (0.5 / 2f32.sqrt())).log10();
        assert!(db < -70.0, "alias at {db:.1} dB");
    }
}
