//! The control socket: a running `termphone serve` driven by other programs over a Unix
//! socket, one JSON object per line ([`protocol`], docs/control.md), and `termphone ctl`, its
//! command-line client ([`client`]).
//!
//! - [`server`] accepts several clients at once, answers their requests with the engine's
//!   commands, and pushes the engine's events to the clients that subscribed, each through a
//!   bounded queue: a client that falls behind is dropped, the engine never waits for one.
//! - [`state`] keeps the calls and registrations from the event stream, so that `status` and
//!   `calls` answer without asking the engine.

pub mod client;
pub mod protocol;
pub mod server;
pub mod state;

use std::path::PathBuf;

/// The socket's file name inside its directory.
pub const SOCKET_NAME: &str = "control.sock";

/// Where `serve` listens and `ctl` connects when not told: `$XDG_RUNTIME_DIR/termphone/`
/// `control.sock`, or, without a runtime dir, `termphone-UID/control.sock` in the temporary
/// directory (`/tmp`). Either directory is created 0700 by `serve`.
pub fn default_socket_path() -> PathBuf {
    default_socket_dir().join(SOCKET_NAME)
}

/// The directory of [`default_socket_path`].
pub fn default_socket_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir.join("termphone"),
        _ => std::env::temp_dir().join(format!("termphone-{}", current_uid())),
    }
}

/// This process's real user id.
pub fn current_uid() -> u32 {
    // SAFETY: getuid(2) cannot fail and touches no memory.
    unsafe { libc::getuid() }
}
