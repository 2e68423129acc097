//! Opus (RFC 6716) through libopus, as RTP payload per RFC 7587.
//!
//! The RTP clock of Opus is always 48 kHz and its rtpmap always says `opus/48000/2`, whatever
//! is actually coded (RFC 7587 §4.1, §7). We code mono at 48 kHz with the VoIP application and
//! decode to mono (libopus mixes a stereo stream down), so a frame of 20 ms is 960 samples and
//! advances the RTP timestamp by 960.
//!
//! Loss handling is libopus's own:
//!
//! - **Concealment** ([`Codec::conceal`]) is libopus's PLC: decoding "no packet" for exactly the
//!   missing duration, which also keeps the decoder in step for the packet after the gap.
//! - **In-band FEC** ([`Codec::decode_fec`]): the encoder adds a low-bitrate copy of each frame
//!   (LBRR, SILK layer only) to the *next* packet when it expects loss
//!   ([`OpusSettings::expected_loss_percent`]). When a packet is missing but the one after it
//!   has arrived, decoding that one with `decode_fec` rebuilds the lost frame far better than
//!   PLC; the packet is then decoded again normally for its own frame.
//!
//! A payload libopus rejects (corrupt, or an empty one) is a [`DecodeError`]; nothing here
//! panics on network input.

use super::{Codec, DecodeError};

/// Sample rate and RTP clock rate of Opus as we run it.
pub const RATE: u32 = 48_000;
/// Bitrate when the remote asks for none (`maxaveragebitrate`), bit/s: wide-band speech at
/// close to its best (PESQ WB 4.1 at complexity 10 in the measurements of
/// `shared/notes/media-deps.md`) with room for the FEC copy.
pub const DEFAULT_BITRATE: u32 = 32_000;
/// The bitrates RFC 7587 allows for `maxaveragebitrate` (and libopus codes), bit/s.
pub const MIN_BITRATE: u32 = 6_000;
/// See [`MIN_BITRATE`].
pub const MAX_BITRATE: u32 = 510_000;
/// Default encoder complexity (0..=10), see [`OpusSettings::complexity`]. Measured on 14 s of
/// espeak-ng speech at 48 kHz, 32 kbit/s (PESQ WB, µs per 20 ms frame to encode, release build
/// on the shared 2-core machine): complexity 5 scored 3.26 at 173 µs, 7 scored 3.54 at 192 µs,
/// 8, 9 and 10 all 3.73 at about 221 µs (the same packets). With every 10th packet lost, FEC
/// lifted complexity 8 from 1.63 (PLC) to 3.13. 8 gives the best quality at the lowest cost;
/// that is about 1.1 % of one core per call with decoding.
pub const DEFAULT_COMPLEXITY: u8 = 8;
/// Default loss the encoder plans FEC for, in percent.
pub const DEFAULT_LOSS_PERCENT: u8 = 10;

/// Samples in 2.5 ms at 48 kHz: the unit of every Opus frame duration.
const UNIT: usize = 120;
/// The longest packet libopus codes or decodes: 120 ms.
const MAX_SAMPLES: usize = 48 * UNIT;
/// Output buffer for one encoded packet (libopus's own recommendation).
const MAX_PACKET: usize = 4000;

/// How the encoder runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusSettings {
    /// Target average bitrate, bit/s (variable bitrate); held to
    /// [`MIN_BITRATE`]..=[`MAX_BITRATE`].
    pub bitrate: u32,
    /// Encoder complexity 0..=10 (higher: better quality, more CPU).
    pub complexity: u8,
    /// Put FEC (a low-bitrate copy of the previous frame) into each packet.
    pub inband_fec: bool,
    /// The packet loss the encoder plans for, in percent (0..=100); FEC needs it above 0.
    pub expected_loss_percent: u8,
    /// Discontinuous transmission: in silence, send a packet only every 400 ms.
    pub dtx: bool,
}

impl Default for OpusSettings {
    /// 32 kbit/s, complexity 8, FEC for 10 % loss, no DTX.
    fn default() -> OpusSettings {
        OpusSettings {
            bitrate: DEFAULT_BITRATE,
            complexity: DEFAULT_COMPLEXITY,
            inband_fec: true,
            expected_loss_percent: DEFAULT_LOSS_PERCENT,
            dtx: false,
        }
    }
}

/// Whether `samples` at 48 kHz is a duration one Opus packet can code: 2.5, 5, 10, 20, 40, 60,
/// 80, 100 or 120 ms.
pub fn is_frame_size(samples: usize) -> bool {
    matches!(samples / UNIT, 1 | 2 | 4 | 8 | 16 | 24 | 32 | 40 | 48) && samples.is_multiple_of(UNIT)
}

/// Whether an Opus packet carries in-band FEC (LBRR data) for the frame before it.
///
/// The same test as libopus's `opus_packet_has_lbrr`: only packets with a SILK layer (SILK-only
/// and hybrid modes) can; the LBRR flag of the first SILK frame is the bit after the VAD flags
/// at the start of the first Opus frame (the range coder writes these equiprobable flags as
/// plain leading bits), one VAD flag per 20 ms of a 40 or 60 ms SILK frame; a stereo stream
/// has a second set for its side channel.
pub fn has_fec(packet: &[u8]) -> bool {
    let Some(&toc) = packet.first() else {
        return false;
    };
    // TOC configurations 0..=11 are SILK-only, 12..=15 hybrid, 16..=31 CELT-only.
    if toc >> 3 >= 16 {
        return false;
    }
    let Ok(parsed) = ::opus::packet::parse(packet) else {
        return false;
    };
    let Some(first) = parsed.frames.first().and_then(|f| f.first()) else {
        return false;
    };
    let per_frame = ::opus::packet::get_samples_per_frame(packet, RATE).unwrap_or(0);
    let silk_frames = (per_frame / 960).clamp(1, 3) as u32;
    let mut lbrr = (first >> (7 - silk_frames)) & 1 == 1;
    if matches!(
        ::opus::packet::get_nb_channels(packet),
        Ok(::opus::Channels::Stereo)
    ) {
        lbrr |= (first >> (6 - 2 * silk_frames)) & 1 == 1;
    }
    lbrr
}

/// Opus, mono at 48 kHz, with libopus PLC and in-band FEC.
pub struct Opus {
    encoder: ::opus::Encoder,
    decoder: ::opus::Decoder,
    settings: OpusSettings,
    /// Decoder output, long enough for the longest packet.
    pcm: Vec<i16>,
    /// Encoder output.
    packet: Vec<u8>,
}

impl core::fmt::Debug for Opus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Opus")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Opus {
    /// A codec with the default settings ([`OpusSettings::default`]).
    pub fn new() -> Result<Opus, ::opus::Error> {
        Opus::with_settings(OpusSettings::default())
    }

    /// A codec with these encoder settings (out-of-range values are held to their range).
    pub fn with_settings(settings: OpusSettings) -> Result<Opus, ::opus::Error> {
        let settings = OpusSettings {
            bitrate: settings.bitrate.clamp(MIN_BITRATE, MAX_BITRATE),
            complexity: settings.complexity.min(10),
            expected_loss_percent: settings.expected_loss_percent.min(100),
            ..settings
        };
        let mut encoder =
            ::opus::Encoder::new(RATE, ::opus::Channels::Mono, ::opus::Application::Voip)?;
        encoder.set_bitrate(::opus::Bitrate::Bits(settings.bitrate as i32))?;
        encoder.set_complexity(i32::from(settings.complexity))?;
        encoder.set_inband_fec(settings.inband_fec)?;
        encoder.set_packet_loss_perc(i32::from(settings.expected_loss_percent))?;
        encoder.set_dtx(settings.dtx)?;
        let decoder = ::opus::Decoder::new(RATE, ::opus::Channels::Mono)?;
        Ok(Opus {
            encoder,
            decoder,
            settings,
            pcm: vec![0; MAX_SAMPLES],
            packet: vec![0; MAX_PACKET],
        })
    }

    /// The settings in use (after range limits).
    pub fn settings(&self) -> OpusSettings {
        self.settings
    }

    /// The bitrate the encoder runs at now, as libopus reports it.
    pub fn encoder_bitrate(&mut self) -> Option<u32> {
        match self.encoder.get_bitrate() {
            Ok(::opus::Bitrate::Bits(b)) => u32::try_from(b).ok(),
            _ => None,
        }
    }
}

impl Codec for Opus {
    fn name(&self) -> &'static str {
        "opus"
    }

    fn clock_rate(&self) -> u32 {
        RATE
    }

    fn sample_rate(&self) -> u32 {
        RATE
    }

    /// Codes `pcm` as one packet. A length that is no Opus frame duration (see
    /// [`is_frame_size`]) codes nothing: an empty payload, which the far end conceals.
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) {
        if !is_frame_size(pcm.len()) {
            return;
        }
        if let Ok(n) = self.encoder.encode(pcm, &mut self.packet) {
            out.extend_from_slice(&self.packet[..n.min(self.packet.len())]);
        }
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), DecodeError> {
        if payload.is_empty() {
            // libopus would take it as a loss; on the wire it is not an Opus packet
            return Err(DecodeError {
                reason: "empty Opus payload",
            });
        }
        match self.decoder.decode(payload, &mut self.pcm, false) {
            Ok(n) => {
                out.extend_from_slice(&self.pcm[..n.min(self.pcm.len())]);
                Ok(())
            }
            Err(e) => Err(DecodeError {
                reason: e.description(),
            }),
        }
    }

    /// libopus PLC, asked for exactly the missing duration (in steps of at most 120 ms, each
    /// rounded up to a whole 2.5 ms, the extra samples dropped).
    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        let mut left = samples;
        while left > 0 {
            let want = left.min(MAX_SAMPLES);
            let ask = want.div_ceil(UNIT) * UNIT;
            let got = self
                .decoder
                .decode(&[], &mut self.pcm[..ask], false)
                .unwrap_or(0)
                .min(want);
            out.extend_from_slice(&self.pcm[..got]);
            out.resize(out.len() + (want - got), 0);
            left -= want;
        }
    }

    fn decode_fec(&mut self, next_payload: &[u8], samples: usize, out: &mut Vec<i16>) -> bool {
        // libopus rebuilds only whole 2.5 ms units; without LBRR data it would conceal.
        if samples == 0
            || !samples.is_multiple_of(UNIT)
            || samples > MAX_SAMPLES
            || !has_fec(next_payload)
        {
            return false;
        }
        match self
            .decoder
            .decode(next_payload, &mut self.pcm[..samples], true)
        {
            Ok(n) if n == samples => {
                out.extend_from_slice(&self.pcm[..n]);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Voice-like: a 140 Hz pulse train's first harmonics under a 4 Hz syllable envelope.
    fn voice(n: usize, offset: usize) -> Vec<i16> {
        (offset..offset + n)
            .map(|i| {
                let t = i as f64 / f64::from(RATE);
                let w = |f: f64| (2.0 * std::f64::consts::PI * f * t).sin();
                let envelope = 0.55 + 0.45 * w(4.0);
                let harmonics: f64 = (1..=12)
                    .map(|h| w(140.0 * f64::from(h)) / f64::from(h))
                    .sum();
                (5000.0 * envelope * harmonics) as i16
            })
            .collect()
    }

    #[test]
    fn frame_sizes() {
        for ms10 in [25, 50, 100, 200, 400, 600, 800, 1000, 1200] {
            assert!(is_frame_size(ms10 * 48 / 10), "{ms10}");
        }
        for n in [0, 1, 119, 121, 960 + 120, 1440, 2400, 5760 + 960, 6720] {
            assert!(!is_frame_size(n), "{n}");
        }
    }

    #[test]
    fn settings_are_held_to_their_ranges() {
        let c = Opus::with_settings(OpusSettings {
            bitrate: 1_000_000,
            complexity: 42,
            expected_loss_percent: 200,
            ..OpusSettings::default()
        })
        .unwrap();
        assert_eq!(c.settings().bitrate, MAX_BITRATE);
        assert_eq!(c.settings().complexity, 10);
        assert_eq!(c.settings().expected_loss_percent, 100);
        let mut c = Opus::with_settings(OpusSettings {
            bitrate: 100,
            ..OpusSettings::default()
        })
        .unwrap();
        assert_eq!(c.encoder_bitrate(), Some(MIN_BITRATE));
    }

    #[test]
    fn odd_lengths_code_nothing_and_empty_payloads_are_errors() {
        let mut c = Opus::new().unwrap();
        let mut out = Vec::new();
        c.encode(&voice(1440, 0), &mut out);
        assert!(out.is_empty(), "30 ms is no Opus frame duration");
        let mut pcm = Vec::new();
        assert!(c.decode(&[], &mut pcm).is_err());
        assert!(pcm.is_empty());
    }

    #[test]
    fn conceal_gives_exactly_what_was_asked() {
        let mut c = Opus::new().unwrap();
        let mut pkt = Vec::new();
        c.encode(&voice(960, 0), &mut pkt);
        let mut out = Vec::new();
        c.decode(&pkt, &mut out).unwrap();
        assert_eq!(out.len(), 960);
        for n in [960, 100, 7000] {
            out.clear();
            c.conceal(n, &mut out);
            assert_eq!(out.len(), n);
        }
    }

    #[test]
    fn fec_flag_follows_the_encoder_setting() {
        for fec in [true, false] {
            let mut c = Opus::with_settings(OpusSettings {
                inband_fec: fec,
                ..OpusSettings::default()
            })
            .unwrap();
            let mut flagged = 0;
            for k in 0..50 {
                let mut pkt = Vec::new();
                c.encode(&voice(960, k * 960), &mut pkt);
                flagged += usize::from(has_fec(&pkt));
            }
            if fec {
                // SILK leaves LBRR out where speech activity is low (the envelope's troughs)
                assert!(flagged > 25, "{flagged} of 50 packets carry FEC");
            } else {
                assert_eq!(flagged, 0);
            }
        }
        assert!(!has_fec(&[]));
        assert!(!has_fec(&[0xff]));
    }
}
