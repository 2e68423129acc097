//! Logging: tracing to a file (`--log-file`, level from `RUST_LOG`), else warnings to stderr.
//! The TUI owns the terminal: its logs go to a file and to its log tab, never to the screen.

use std::path::{Path, PathBuf};

use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Install the global subscriber.
pub fn init(log_file: Option<&Path>) -> Result<(), String> {
    match log_file {
        Some(path) => {
            let file = open_log(path)?;
            let filter =
                EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
        None => {
            let filter =
                EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .init();
        }
    }
    Ok(())
}

fn open_log(path: &Path) -> Result<std::fs::File, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the log directory {}: {e}", dir.display()))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open log file {}: {e}", path.display()))
}

/// A log record for the TUI's log tab.
#[derive(Debug, Clone)]
pub struct UiLogRecord {
    pub level: tracing::Level,
    pub text: String,
}

/// How many records may wait for the TUI; more are dropped (a log storm never blocks).
const UI_LOG_QUEUE: usize = 1024;

/// The TUI's logging: records at `info` and above (or `RUST_LOG`) go to the log file
/// (`--log-file`, else [`default_tui_log_path`]; none when it cannot be opened) and to the
/// returned receiver, never to the terminal. Returns the receiver and the file used.
pub fn init_tui(
    log_file: Option<&Path>,
) -> (mpsc::Receiver<UiLogRecord>, Result<Option<PathBuf>, String>) {
    let (tx, rx) = mpsc::channel(UI_LOG_QUEUE);
    let path = log_file.map(Path::to_path_buf).or_else(|| {
        default_tui_log_path(
            std::env::var_os("XDG_STATE_HOME").as_deref(),
            std::env::var_os("HOME").as_deref(),
        )
    });
    let file = match &path {
        Some(p) => open_log(p).map(|f| Some((p.clone(), f))),
        None => Ok(None),
    };
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ui = UiLayer { tx }.with_filter(filter());
    let (file_layer, used) = match file {
        Ok(Some((p, f))) => (
            Some(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(std::sync::Mutex::new(f))
                    .with_filter(filter()),
            ),
            Ok(Some(p)),
        ),
        Ok(None) => (None, Ok(None)),
        Err(e) => (None, Err(e)),
    };
    let _ = tracing_subscriber::registry()
        .with(ui)
        .with(file_layer)
        .try_init();
    (rx, used)
}

/// `$XDG_STATE_HOME/termphone/termphone.log`, else `~/.local/state/termphone/termphone.log`.
pub fn default_tui_log_path(
    xdg_state_home: Option<&std::ffi::OsStr>,
    home: Option<&std::ffi::OsStr>,
) -> Option<PathBuf> {
    let base = match xdg_state_home.map(PathBuf::from) {
        Some(p) if p.is_absolute() => p,
        _ => PathBuf::from(home?).join(".local/state"),
    };
    Some(base.join(crate::config::APP_DIR).join("termphone.log"))
}

/// Sends each record's message and fields, as one line, to the TUI.
struct UiLayer {
    tx: mpsc::Sender<UiLogRecord>,
}

impl<S: tracing::Subscriber> Layer<S> for UiLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut text = Line(String::new());
        event.record(&mut text);
        let _ = self.tx.try_send(UiLogRecord {
            level: *event.metadata().level(),
            text: text.0,
        });
    }
}

/// `message key=value key=value`.
struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if field.name() == "message" {
            let rest = std::mem::take(&mut self.0);
            let _ = write!(self.0, "{value:?}");
            if !rest.is_empty() {
                self.0.push(' ');
                self.0.push_str(&rest);
            }
        } else {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            self.0.push_str(&format!("{}={value}", field.name()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tui_log_path_follows_xdg_state_home() {
        let p = default_tui_log_path(Some("/x/state".as_ref()), Some("/home/a".as_ref()));
        assert_eq!(p, Some(PathBuf::from("/x/state/termphone/termphone.log")));
        let p = default_tui_log_path(Some("relative".as_ref()), Some("/home/a".as_ref()));
        assert_eq!(
            p,
            Some(PathBuf::from(
                "/home/a/.local/state/termphone/termphone.log"
            ))
        );
        assert_eq!(default_tui_log_path(None, None), None);
    }
}
