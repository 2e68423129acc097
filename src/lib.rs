//! termphone: a SIP softphone for the terminal.
//!
//! Layout (see DESIGN.md in the repository's docs):
//! - [`sip`] and [`media`] are sans-IO cores: driven by input and `now`, no clocks, no sockets.
//! - [`engine`], [`audio`], [`config`] are the I/O edges.
//! - [`headless`] holds the non-interactive front ends (`serve`, `dial`).

pub mod audio;
pub mod media;
pub mod sip;
