//! SIP, sans-IO.

pub mod sdp;
