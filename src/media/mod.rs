//! Media, sans-IO: RTP and RTCP packets, G.711 and G.722, loss concealment, jitter buffer,
//! DTMF, the per-call session, RTCP reporting and the E-model call-quality estimate, level
//! meters, the capture path's echo canceller and noise suppressor, and the 48 kHz device-side
//! pipeline they run in (with resampling to the codec).
//!
//! Nothing here reads a clock or does I/O: time comes in as `now: Instant`.

pub mod aec;
pub mod codec;
pub mod denoise;
pub mod dtmf;
pub mod emodel;
pub mod jitter;
pub mod levels;
pub mod pipeline;
pub mod plc;
pub mod rtcp;
pub mod rtcp_session;
pub mod rtp;
pub mod session;

pub use codec::{codec_by_name, Codec};
pub use rtcp::{is_rtcp, RtcpError, RtcpPacket};
pub use rtcp_session::{CallQuality, QualityInputs, RtcpConfig, RtcpEvent, RtcpSession};
pub use rtp::{RtpError, RtpPacket};
pub use session::{CodecParams, MediaConfig, MediaError, MediaEvent, MediaSession, MediaStats};
