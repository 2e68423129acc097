//! Audio codecs behind one trait, looked up by their SDP encoding name.

pub mod g711;
pub mod g722;
pub mod opus;

use core::fmt;

/// One audio codec instance (per call and direction state lives inside).
///
/// Frames are mono i16 at [`Codec::sample_rate`]; `encode` and `decode` append to `out`
/// so callers can reuse buffers without allocating.
pub trait Codec: Send {
    /// SDP encoding name, e.g. "PCMU".
    fn name(&self) -> &'static str;
    /// RTP clock rate (timestamp units per second).
    fn clock_rate(&self) -> u32;
    /// PCM sample rate of the frames this codec takes and gives.
    fn sample_rate(&self) -> u32;
    /// Encode one frame of PCM, appending the payload to `out`.
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>);
    /// Decode one payload, appending PCM to `out`. A payload the codec cannot decode (a
    /// malformed Opus packet) is an error and appends nothing: the caller conceals instead.
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), DecodeError>;
    /// Produce `samples` of PCM for a lost frame, appending to `out`.
    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>);
    /// Rebuild a lost frame of `samples` from the redundancy carried by the payload that
    /// follows it (Opus in-band FEC), appending to `out`; `next_payload` is then still to be
    /// decoded normally for its own frame. Returns false, appending nothing, when the codec has
    /// no such redundancy or `next_payload` carries none: the caller conceals instead.
    fn decode_fec(&mut self, _next_payload: &[u8], _samples: usize, _out: &mut Vec<i16>) -> bool {
        false
    }
}

/// A payload a [`Codec`] could not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError {
    /// What the decoder said (e.g. libopus's "corrupted stream").
    pub reason: &'static str,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "undecodable payload: {}", self.reason)
    }
}

impl std::error::Error for DecodeError {}

/// A codec by SDP encoding name ("opus", "PCMU", "PCMA", "G722"; case-insensitive) with its
/// default settings, or None if unknown.
pub fn codec_by_name(name: &str) -> Option<Box<dyn Codec>> {
    codec_for(name, None)
}

/// A codec by SDP encoding name, sending at `bitrate` bit/s when it is a variable-rate codec
/// (Opus; `None`: its default). Fixed-rate codecs ignore `bitrate`.
pub fn codec_for(name: &str, bitrate: Option<u32>) -> Option<Box<dyn Codec>> {
    if name.eq_ignore_ascii_case("PCMU") {
        Some(Box::new(g711::G711::new(g711::Law::Mu)))
    } else if name.eq_ignore_ascii_case("PCMA") {
        Some(Box::new(g711::G711::new(g711::Law::A)))
    } else if name.eq_ignore_ascii_case("G722") {
        Some(Box::new(g722::G722::new()))
    } else if name.eq_ignore_ascii_case("opus") {
        let settings = opus::OpusSettings {
            bitrate: bitrate.unwrap_or(opus::DEFAULT_BITRATE),
            ..opus::OpusSettings::default()
        };
        // libopus refuses only invalid arguments or fails to allocate: no codec then.
        opus::Opus::with_settings(settings)
            .ok()
            .map(|c| Box::new(c) as Box<dyn Codec>)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup() {
        assert_eq!(codec_by_name("pcmu").map(|c| c.name()), Some("PCMU"));
        assert_eq!(codec_by_name("PCMA").map(|c| c.name()), Some("PCMA"));
        let c = codec_by_name("PCMU").unwrap();
        assert_eq!((c.clock_rate(), c.sample_rate()), (8000, 8000));
        assert_eq!(codec_by_name("g722").map(|c| c.name()), Some("G722"));
        let c = codec_by_name("G722").unwrap();
        // RFC 3551: the RTP clock of G.722 is 8 kHz although it carries 16 kHz audio
        assert_eq!((c.clock_rate(), c.sample_rate()), (8000, 16000));
        assert!(codec_by_name("G7221").is_none());
        let c = codec_by_name("OPUS").unwrap();
        // RFC 7587: the RTP clock of Opus is always 48 kHz; we code mono at 48 kHz
        assert_eq!(
            (c.name(), c.clock_rate(), c.sample_rate()),
            ("opus", 48000, 48000)
        );
    }
}
