//! Audio codecs behind one trait, looked up by their SDP encoding name.

pub mod g711;
pub mod g722;

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
    /// Decode one payload, appending PCM to `out`.
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>);
    /// Produce `samples` of PCM for a lost frame, appending to `out`.
    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>);
}

/// A codec by SDP encoding name ("PCMU", "PCMA", "G722"; case-insensitive), or None if unknown.
pub fn codec_by_name(name: &str) -> Option<Box<dyn Codec>> {
    if name.eq_ignore_ascii_case("PCMU") {
        Some(Box::new(g711::G711::new(g711::Law::Mu)))
    } else if name.eq_ignore_ascii_case("PCMA") {
        Some(Box::new(g711::G711::new(g711::Law::A)))
    } else if name.eq_ignore_ascii_case("G722") {
        Some(Box::new(g722::G722::new()))
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
        assert!(codec_by_name("opus").is_none());
        let c = codec_by_name("PCMU").unwrap();
        assert_eq!((c.clock_rate(), c.sample_rate()), (8000, 8000));
        assert_eq!(codec_by_name("g722").map(|c| c.name()), Some("G722"));
        let c = codec_by_name("G722").unwrap();
        // RFC 3551: the RTP clock of G.722 is 8 kHz although it carries 16 kHz audio
        assert_eq!((c.clock_rate(), c.sample_rate()), (8000, 16000));
        assert!(codec_by_name("G7221").is_none());
    }
}
