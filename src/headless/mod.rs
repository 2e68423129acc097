//! Non-interactive front ends: `serve` (auto-answer by policy) and `dial` (one scripted call).
//! Both print engine events, as JSON lines or as human-readable lines.

pub mod dial;
pub mod serve;

use std::io::Write;

use crate::engine::api::Event;

/// Prints events to stdout, one per line.
#[derive(Debug, Clone, Copy)]
pub struct EventPrinter {
    /// JSON objects instead of human text.
    pub json: bool,
}

impl EventPrinter {
    /// Print one event. Errors writing stdout (a closed pipe) are ignored: the call goes on.
    pub fn print(&self, event: &Event) {
        let line = if self.json {
            match event.to_json() {
                Some(s) => s,
                None => return,
            }
        } else {
            human(event)
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// A one-line human description of an event.
pub fn human(event: &Event) -> String {
    match event {
        Event::Listening { addr, transport } => format!("listening on {addr} ({transport})"),
        Event::Call {
            call,
            state,
            peer,
            account,
            code,
            reason,
        } => {
            let mut s = format!("{call} {state} {peer}");
            if let Some(account) = account {
                s.push_str(&format!(" [{account}]"));
            }
            if let Some(code) = code {
                s.push_str(&format!(" {code}"));
            }
            if let Some(reason) = reason {
                s.push_str(&format!(" {reason}"));
            }
            s
        }
        Event::Registration {
            account,
            state,
            reason,
            expires,
        } => {
            let mut s = format!("account {account} {state}");
            if let Some(e) = expires {
                s.push_str(&format!(" for {e} s"));
            }
            if let Some(r) = reason {
                s.push_str(&format!(": {r}"));
            }
            s
        }
        Event::Dtmf { call, digit } => format!("{call} dtmf {digit}"),
        Event::Stats { call, stats } => format!(
            "{call} stats codec={} sent={} received={} lost={} late={} jitter={:.1}ms buffer={:.0}ms",
            stats.codec,
            stats.packets_sent,
            stats.packets_received,
            stats.lost,
            stats.late,
            stats.jitter_ms,
            stats.buffer_ms
        ),
        Event::Summary { call, summary: s } => {
            let mut line = format!(
                "{call} summary codec={} media={:.1}s sent={} received={} lost={} ({:.2}%) jitter avg={:.1}ms max={:.1}ms",
                s.codec, s.media_s, s.packets_sent, s.packets_received, s.lost, s.loss_pct,
                s.jitter_avg_ms, s.jitter_max_ms
            );
            if let (Some(avg), Some(max)) = (s.rtt_avg_ms, s.rtt_max_ms) {
                line.push_str(&format!(" rtt avg={avg:.1}ms max={max:.1}ms"));
            }
            if let (Some(avg), Some(min)) = (s.mos_avg, s.mos_min) {
                line.push_str(&format!(" mos avg={avg:.2} min={min:.2}"));
            }
            line
        }
        Event::Levels { call, tx, rx } => format!(
            "{call} levels tx={:.1}/{:.1}dBFS rx={:.1}/{:.1}dBFS (rms/peak)",
            tx.rms_dbfs, tx.peak_dbfs, rx.rms_dbfs, rx.peak_dbfs
        ),
        Event::Transfer {
            call,
            state,
            to,
            code,
            new_call,
        } => {
            let mut s = format!("{call} transfer {state}");
            if let Some(to) = to {
                s.push_str(&format!(" to {to}"));
            }
            if let Some(n) = new_call {
                s.push_str(&format!(" as {n}"));
            }
            if let Some(code) = code {
                s.push_str(&format!(" ({code})"));
            }
            s
        }
        Event::Redirect { call, code, to } => format!("{call} redirected ({code}) to {to}"),
        Event::Conference { calls } if calls.is_empty() => "conference ended".to_string(),
        Event::Conference { calls } => {
            let names: Vec<String> = calls.iter().map(ToString::to_string).collect();
            format!("conference {}", names.join(" "))
        }
        Event::Recorded { call, path } => format!("{call} recorded {}", path.display()),
        Event::Recording { call, path } => format!("{call} recording to {}", path.display()),
        Event::Warning {
            call: Some(call),
            message,
        } => format!("{call} warning: {message}"),
        Event::Warning {
            call: None,
            message,
        } => format!("warning: {message}"),
        Event::Control { path } => format!("control socket at {}", path.display()),
    }
}

/// Wait for SIGINT or SIGTERM. The handlers are installed when this is called, not when the
/// future is first polled: a signal that comes between the call and the first poll (say,
/// right after the first events were printed) is not lost, and does not kill the process
/// before its cleanup.
pub fn termination_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let int = signal(SignalKind::interrupt());
        let term = signal(SignalKind::terminate());
        async move {
            match (int, term) {
                (Ok(mut int), Ok(mut term)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Check a WAV file can be played before any call starts; returns its length in seconds.
pub fn check_wav(path: &std::path::Path) -> Result<f64, String> {
    let reader =
        hound::WavReader::open(path).map_err(|e| format!("cannot play {}: {e}", path.display()))?;
    let spec = reader.spec();
    if spec.sample_rate == 0 || spec.channels == 0 {
        return Err(format!(
            "cannot play {}: invalid WAV header",
            path.display()
        ));
    }
    Ok(f64::from(reader.duration()) / f64::from(spec.sample_rate))
}
