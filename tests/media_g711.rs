//! G.711 against the ITU segment formulas and golden vectors from Python's audioop (Sun g711.c).

use termphone::media::codec::g711::{alaw_decode, alaw_encode, ulaw_decode, ulaw_encode};
use termphone::media::codec_by_name;

// ---- independent references, written from the G.711 segment description ----

/// µ-law: sign bit 1 = positive, the 7 magnitude bits inverted; segment e, step m:
/// reconstruction ((2m + 33) << e) - 33 in the 14-bit domain (×4 for 16 bits).
fn ref_ulaw_decode(c: u8) -> i16 {
    let k = 0x7f - (c & 0x7f);
    let (e, m) = (i32::from(k >> 4), i32::from(k & 15));
    let v = (((2 * m + 33) << e) - 33) * 4;
    (if c & 0x80 != 0 { v } else { -v }) as i16
}

/// A-law: even bits inverted (xor 0x55), sign bit 1 = positive; segment 0 has step 2 from 0,
/// segment e >= 1 starts at 16 << e with step 1 << e (12-bit domain, ×8 for 16 bits),
/// reconstruction at the middle of the step.
fn ref_alaw_decode(c: u8) -> i16 {
    let d = c ^ 0x55;
    let k = d & 0x7f;
    let (e, m) = (i32::from(k >> 4), i32::from(k & 15));
    let v = if e == 0 {
        2 * m + 1
    } else {
        (2 * m + 33) << (e - 1)
    } * 8;
    (if d & 0x80 != 0 { v } else { -v }) as i16
}

/// Lower decision level of µ-law magnitude interval k (14-bit domain).
fn ulaw_lower(k: i32) -> i32 {
    ((2 * (k & 15) + 32) << (k >> 4)) - 33
}

/// Lower decision level of A-law magnitude interval k (12-bit domain).
fn alaw_lower(k: i32) -> i32 {
    let (e, m) = (k >> 4, k & 15);
    if e == 0 {
        2 * m
    } else {
        (16 + m) << e
    }
}

/// Encoder by search over the decision levels. Magnitudes are taken as Sun g711.c does:
/// µ-law -(x >> 2) for negatives (clip 8159), A-law (-x - 1) >> 3 for negatives.
fn ref_ulaw_encode(x: i16) -> u8 {
    let x = i32::from(x);
    let mag = if x < 0 { -(x >> 2) } else { x >> 2 }.min(8159);
    let k = (0..128).rev().find(|&k| ulaw_lower(k) <= mag).unwrap();
    (if x >= 0 { 0x80 } else { 0 }) | (0x7f - k as u8)
}

fn ref_alaw_encode(x: i16) -> u8 {
    let x = i32::from(x);
    let mag = if x < 0 { (-x - 1) >> 3 } else { x >> 3 };
    let k = (0..128).rev().find(|&k| alaw_lower(k) <= mag).unwrap();
    ((if x >= 0 { 0x80 } else { 0 }) | k as u8) ^ 0x55
}

// ---- golden vectors ----

fn data(name: &str) -> String {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn golden_encode(name: &str) -> Vec<u8> {
    let runs: Vec<(i32, u8)> = data(name)
        .lines()
        .map(|l| {
            let mut f = l.split_whitespace();
            (
                f.next().unwrap().parse().unwrap(),
                f.next().unwrap().parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(runs[0].0, -32768);
    let mut out = Vec::with_capacity(65536);
    for (i, &(start, code)) in runs.iter().enumerate() {
        let end = runs.get(i + 1).map_or(32768, |r| r.0);
        out.extend(std::iter::repeat_n(code, (end - start) as usize));
    }
    assert_eq!(out.len(), 65536);
    out
}

fn all_i16() -> impl Iterator<Item = i16> {
    i16::MIN..=i16::MAX
}

#[test]
fn decode_tables_match_itu_formula_and_audioop() {
    let lines: Vec<String> = data("media_g711_decode.txt")
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 256);
    for (c, line) in lines.iter().enumerate() {
        let c = c as u8;
        let f: Vec<i32> = line
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(f[0], i32::from(c));
        assert_eq!(
            i32::from(ulaw_decode(c)),
            f[1],
            "ulaw code {c:#04x} vs audioop"
        );
        assert_eq!(
            i32::from(alaw_decode(c)),
            f[2],
            "alaw code {c:#04x} vs audioop"
        );
        assert_eq!(
            ulaw_decode(c),
            ref_ulaw_decode(c),
            "ulaw code {c:#04x} vs ITU"
        );
        assert_eq!(
            alaw_decode(c),
            ref_alaw_decode(c),
            "alaw code {c:#04x} vs ITU"
        );
    }
}

#[test]
fn round_trip_all_codes() {
    for c in 0..=255u8 {
        let u = ulaw_decode(c);
        assert_eq!(ulaw_decode(ulaw_encode(u)), u, "ulaw {c:#04x}");
        let a = alaw_decode(c);
        assert_eq!(alaw_decode(alaw_encode(a)), a, "alaw {c:#04x}");
        // every A-law code is its own encoder output; µ-law has two zeros (0x7f, 0xff)
        assert_eq!(alaw_encode(a), c);
        if c != 0x7f {
            assert_eq!(ulaw_encode(u), c);
        }
    }
}

#[test]
fn encode_all_inputs_matches_reference_and_audioop() {
    let gu = golden_encode("media_g711_ulaw_encode.txt");
    let ga = golden_encode("media_g711_alaw_encode.txt");
    for (i, x) in all_i16().enumerate() {
        let (u, a) = (ulaw_encode(x), alaw_encode(x));
        assert_eq!(u, ref_ulaw_encode(x), "ulaw x={x} vs ITU reference");
        assert_eq!(a, ref_alaw_encode(x), "alaw x={x} vs ITU reference");
        assert_eq!(u, gu[i], "ulaw x={x} vs audioop");
        assert_eq!(a, ga[i], "alaw x={x} vs audioop");
    }
}

#[test]
fn sine_snr_is_toll_quality() {
    for name in ["PCMU", "PCMA"] {
        let mut c = codec_by_name(name).unwrap();
        let pcm: Vec<i16> = (0..8000)
            .map(|i| {
                (12000.0 * (i as f64 * 2.0 * std::f64::consts::PI * 440.0 / 8000.0).sin()) as i16
            })
            .collect();
        let mut enc = Vec::new();
        c.encode(&pcm, &mut enc);
        assert_eq!(enc.len(), pcm.len());
        let mut dec = Vec::new();
        c.decode(&enc, &mut dec).unwrap();
        let sig: f64 = pcm.iter().map(|&s| f64::from(s).powi(2)).sum();
        let err: f64 = pcm
            .iter()
            .zip(&dec)
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
            .sum();
        let snr = 10.0 * (sig / err).log10();
        assert!(snr > 35.0, "{name}: SNR {snr:.1} dB");
    }
}
