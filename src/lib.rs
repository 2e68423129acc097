//! termphone: a SIP softphone for the terminal.
//!
//! - [`sip`] and [`media`] are sans-IO cores: driven by input and `now`, no clocks, no sockets.
//! - [`engine`], [`audio`], [`config`] are the I/O edges; [`engine::api`] is the boundary
//!   every front end speaks (commands in, events out).
//! - [`headless`] holds the non-interactive front ends (`serve`, `dial`); [`control`] the
//!   control socket that drives a running `serve` (or the TUI) and its client, `termphone ctl`.
//! - [`ui`] is the interactive phone (`termphone` with no subcommand); [`store`] keeps its
//!   call history and contacts in SQLite.

pub mod app;
pub mod audio;
pub mod cli;
pub mod config;
pub mod control;
pub mod engine;
pub mod headless;
pub mod logging;
pub mod media;
pub mod sip;
pub mod store;
pub mod ui;

pub use app::run;

/// A base instant for unit tests of the sans-IO cores, which never read the clock themselves:
/// tests add synthetic durations to it.
#[cfg(test)]
pub(crate) fn test_epoch() -> std::time::Instant {
    std::time::Instant::now()
}
