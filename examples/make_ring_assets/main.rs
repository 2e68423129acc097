//! Writes the ring sounds: `DIR/ringtone.wav` and `DIR/ringback.wav` (default DIR: `assets`),
//! 48 kHz mono 16-bit, synthesized from the parameters in `synth.rs`.
//!
//! Standard library only, so `scripts/make-ring-assets.sh` compiles it with plain `rustc`:
//! the library embeds the files it writes, and must not be needed to make them. It also
//! runs as `cargo run --example make_ring_assets -- DIR`.

mod synth;

use std::path::{Path, PathBuf};

/// A canonical 44-byte-header PCM WAV: mono 16-bit at `rate`.
fn wav_bytes(rate: u32, samples: &[i16]) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut b = Vec::with_capacity(44 + samples.len() * 2);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    b.extend_from_slice(&1u16.to_le_bytes()); // PCM
    b.extend_from_slice(&1u16.to_le_bytes()); // channels
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * 2).to_le_bytes()); // bytes per second
    b.extend_from_slice(&2u16.to_le_bytes()); // block align
    b.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        b.extend_from_slice(&s.to_le_bytes());
    }
    b
}

fn write(path: &Path, samples: &[i16]) -> Result<(), String> {
    std::fs::write(path, wav_bytes(synth::RATE, samples))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "assets".into()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("make_ring_assets: {}: {e}", dir.display());
        std::process::exit(1);
    }
    let notes: Vec<String> = synth::ringtone_fundamentals()
        .iter()
        .map(|f| format!("{f:.2}"))
        .collect();
    println!("ringtone notes (Hz): {}", notes.join(" "));
    for (name, samples) in [
        ("ringtone.wav", synth::ringtone()),
        ("ringback.wav", synth::ringback()),
    ] {
        let path = dir.join(name);
        if let Err(e) = write(&path, &samples) {
            eprintln!("make_ring_assets: {e}");
            std::process::exit(1);
        }
        println!(
            "{}: {} samples, {:.2} s at {} Hz",
            path.display(),
            samples.len(),
            samples.len() as f64 / f64::from(synth::RATE),
            synth::RATE
        );
    }
}
