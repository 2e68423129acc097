//! Media, sans-IO: RTP packets, G.711 and G.722, loss concealment, jitter buffer, DTMF and the per-call session.
//!
//! Nothing here reads a clock or does I/O: time comes in as `now: Instant`.

pub mod codec;
pub mod dtmf;
pub mod jitter;
pub mod plc;
pub mod rtp;
pub mod session;

pub use codec::{codec_by_name, Codec};
pub use rtp::{RtpError, RtpPacket};
pub use session::{CodecParams, MediaConfig, MediaError, MediaEvent, MediaSession, MediaStats};
