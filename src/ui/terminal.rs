//! The terminal while the TUI owns it: raw mode, the alternate screen and bracketed paste on
//! entry; everything restored on exit, on a panic (before the panic message is printed, so
//! it is readable) and on SIGTERM/SIGHUP (the runtime quits through the same path).

use std::io::{self, Stdout, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use crossterm::event::{DisableBracketedPaste, EnableBracketedPaste};
use crossterm::execute;
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

/// Set while the terminal is in the TUI's modes; restoring twice does nothing.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The terminal's stderr, saved while stderr goes to the log file (-1: not redirected).
static SAVED_STDERR: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// The TUI's terminal; restores the terminal when dropped.
pub struct Tui {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Tui {
    /// Enter raw mode and the alternate screen; install the panic hook that restores them.
    /// Whatever writes to stderr meanwhile (C libraries such as ALSA's and JACK's, which print
    /// their complaints there) goes to `stderr_to` (the log file) or nowhere, not over the
    /// screen.
    pub fn enter(stderr_to: Option<&std::path::Path>) -> io::Result<Tui> {
        install_panic_hook();
        redirect_stderr(stderr_to);
        if let Err(e) = enable_raw_mode() {
            // Not a terminal (stdin redirected, no tty): give stderr back for the error.
            restore();
            return Err(e);
        }
        ACTIVE.store(true, Ordering::SeqCst);
        let mut out = io::stdout();
        if let Err(e) = execute!(out, EnterAlternateScreen, EnableBracketedPaste) {
            restore();
            return Err(e);
        }
        let terminal = match Terminal::new(CrosstermBackend::new(out)) {
            Ok(t) => t,
            Err(e) => {
                restore();
                return Err(e);
            }
        };
        Ok(Tui { terminal })
    }

    /// Ring the terminal bell (outside ratatui's buffer: BEL moves no cursor).
    pub fn bell(&mut self) {
        let out = self.terminal.backend_mut();
        let _ = out.write_all(b"\x07");
        let _ = out.flush();
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        let _ = self.terminal.show_cursor();
        restore();
    }
}

/// Leave the TUI's modes and give stderr back to the terminal (idempotent; safe from a panic
/// hook).
pub fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = execute!(io::stdout(), DisableBracketedPaste, LeaveAlternateScreen);
        let _ = disable_raw_mode();
    }
    let saved = SAVED_STDERR.swap(-1, Ordering::SeqCst);
    if saved >= 0 {
        // SAFETY: `saved` is the descriptor dup(2) gave us; dup2 and close touch no memory.
        unsafe {
            libc::dup2(saved, libc::STDERR_FILENO);
            libc::close(saved);
        }
    }
}

/// Point fd 2 at `path` (appended) or /dev/null, keeping the terminal's for [`restore`].
fn redirect_stderr(path: Option<&std::path::Path>) {
    use std::os::fd::IntoRawFd;
    let file = path
        .and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
        })
        .or_else(|| {
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .ok()
        });
    let Some(file) = file else { return };
    let fd = file.into_raw_fd();
    // SAFETY: plain descriptor calls; `fd` is ours and closed after dup2 copied it.
    unsafe {
        let saved = libc::dup(libc::STDERR_FILENO);
        if saved >= 0 && libc::dup2(fd, libc::STDERR_FILENO) >= 0 {
            SAVED_STDERR.store(saved, Ordering::SeqCst);
        } else if saved >= 0 {
            libc::close(saved);
        }
        libc::close(fd);
    }
}

fn install_panic_hook() {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
}
