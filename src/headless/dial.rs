//! `termphone dial`: place one call, play/record/DTMF, exit with a status that says how it ended.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::time::{sleep_until, Instant};

use super::{check_wav, termination_signal, EventPrinter};
use crate::engine::api::{AudioSinkSpec, AudioSourceSpec, CallAudio, CallId, CallState, Event};
use crate::engine::Engine;

/// Exit statuses of `termphone dial` (documented in the README and `--help`).
pub mod exit {
    /// Answered and ended normally.
    pub const OK: i32 = 0;
    /// A local error before the call (bad file, bad config, bad target).
    pub const LOCAL_ERROR: i32 = 1;
    /// Usage error (clap).
    pub const USAGE: i32 = 2;
    /// Busy (486, 600).
    pub const BUSY: i32 = 3;
    /// Declined (603).
    pub const DECLINED: i32 = 4;
    /// Not found (404, 604).
    pub const NOT_FOUND: i32 = 5;
    /// No answer: ringing timeout, 408, 480.
    pub const NO_ANSWER: i32 = 6;
    /// Network or transport failure (no response at all).
    pub const NETWORK: i32 = 7;
    /// Any other failure.
    pub const OTHER: i32 = 8;
    /// Authentication failed: wrong password, no credentials, forbidden (401, 407, 403).
    pub const AUTH: i32 = 9;
}

/// What the scripted call does.
#[derive(Debug, Clone)]
pub struct DialPlan {
    pub target: String,
    pub play: Option<PathBuf>,
    pub record: Option<PathBuf>,
    pub dtmf: Option<String>,
    /// Hang up this long after the answer.
    pub duration: Option<Duration>,
    /// Give up if not answered within this.
    pub ring_timeout: Duration,
    /// Call as this configured account.
    pub account: Option<String>,
    /// Sound devices for what `play`/`record` do not cover: (capture, playback) names, `None`
    /// inside for the default device.
    pub devices: Option<(Option<String>, Option<String>)>,
}

/// Default call length when neither --duration nor --play says.
const DEFAULT_DURATION: Duration = Duration::from_secs(30);

/// The exit status for a call that ended in `state` with `code`, having been `answered` or not.
pub fn exit_status(state: CallState, code: Option<u16>, answered: bool, timed_out: bool) -> i32 {
    match state {
        CallState::HangupLocal | CallState::HangupRemote if answered => exit::OK,
        _ if timed_out => exit::NO_ANSWER,
        CallState::NetworkFailure => match code {
            Some(408) if answered => exit::NETWORK,
            _ => exit::NETWORK,
        },
        _ => match code {
            Some(486) | Some(600) => exit::BUSY,
            Some(603) => exit::DECLINED,
            Some(404) | Some(604) => exit::NOT_FOUND,
            Some(408) | Some(480) => exit::NO_ANSWER,
            Some(401) | Some(407) | Some(403) => exit::AUTH,
            _ => exit::OTHER,
        },
    }
}

/// Check the plan's files before anything is sent. Returns the play file's length.
pub fn validate(plan: &DialPlan) -> Result<Option<f64>, String> {
    let play_len = match &plan.play {
        Some(path) => Some(check_wav(path)?),
        None => None,
    };
    if let Some(path) = &plan.record {
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        if !parent.is_dir() {
            return Err(format!(
                "cannot record to {}: {} is not a directory",
                path.display(),
                parent.display()
            ));
        }
    }
    if let Some(d) = &plan.dtmf {
        if d.is_empty() || !d.chars().all(|c| "0123456789*#ABCDabcd".contains(c)) {
            return Err(format!("invalid DTMF digits {d:?} (allowed: 0-9 * # A-D)"));
        }
    }
    Ok(play_len)
}

/// Run the call (after [`validate`], which gave `play_len`); returns the process exit status.
pub async fn run(
    engine: Engine,
    plan: DialPlan,
    play_len: Option<f64>,
    printer: EventPrinter,
) -> i32 {
    let Engine {
        handle,
        mut events,
        task,
    } = engine;
    let audio = CallAudio {
        source: match (&plan.play, &plan.devices) {
            (Some(path), _) => AudioSourceSpec::File(path.clone()),
            (None, Some((capture, _))) => AudioSourceSpec::Device(capture.clone()),
            (None, None) => AudioSourceSpec::Silence,
        },
        sink: match (&plan.record, &plan.devices) {
            (Some(path), _) => AudioSinkSpec::File(path.clone()),
            (None, Some((_, playback))) => AudioSinkSpec::Device(playback.clone()),
            (None, None) => AudioSinkSpec::Null,
        },
    };
    let call_duration = plan
        .duration
        .or_else(|| play_len.map(|s| Duration::from_secs_f64(s + 0.5)))
        .unwrap_or(DEFAULT_DURATION);

    // Print what happened before the dial (the listening event).
    let call: CallId = match handle
        .dial_as(plan.account.as_deref(), &plan.target, audio)
        .await
    {
        Ok(c) => c,
        Err(e) => {
            while let Ok(ev) = events.try_recv() {
                printer.print(&ev);
            }
            eprintln!("termphone: {e}");
            handle.shutdown().await;
            return exit::LOCAL_ERROR;
        }
    };

    let ring_deadline = Instant::now() + plan.ring_timeout;
    let mut hangup_at: Option<Instant> = None;
    let mut answered = false;
    let mut timed_out = false;
    let mut hangup_sent = false;
    let status;
    let signal = termination_signal();
    tokio::pin!(signal);
    loop {
        let deadline = if answered {
            hangup_at
        } else {
            Some(ring_deadline)
        };
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(ev) => {
                    printer.print(&ev);
                    if let Event::Call { call: c, state, code, .. } = &ev {
                        if *c != call { continue; }
                        if *state == CallState::Connected && !answered {
                            answered = true;
                            hangup_at = Some(Instant::now() + call_duration);
                            if let Some(digits) = &plan.dtmf {
                                if let Err(e) = handle.send_dtmf(call, digits).await {
                                    eprintln!("termphone: {e}");
                                }
                            }
                        }
                        if state.is_final() {
                            status = exit_status(*state, *code, answered, timed_out);
                            break;
                        }
                    }
                }
                Err(RecvError::Lagged(n)) => eprintln!("termphone: {n} events were dropped"),
                Err(RecvError::Closed) => { status = exit::OTHER; break; }
            },
            _ = sleep_until(deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))), if deadline.is_some() && !hangup_sent => {
                if !answered {
                    timed_out = true;
                }
                hangup_sent = true;
                let _ = handle.hangup(call).await;
            },
            _ = &mut signal, if !hangup_sent => {
                hangup_sent = true;
                let _ = handle.hangup(call).await;
            },
        }
    }
    handle.shutdown().await;
    while let Ok(ev) = events.try_recv() {
        printer.print(&ev);
    }
    let _ = task.await;
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_table() {
        assert_eq!(
            exit_status(CallState::HangupLocal, None, true, false),
            exit::OK
        );
        assert_eq!(
            exit_status(CallState::HangupRemote, None, true, false),
            exit::OK
        );
        assert_eq!(
            exit_status(CallState::OtherFailure, Some(486), false, false),
            exit::BUSY
        );
        assert_eq!(
            exit_status(CallState::OtherFailure, Some(600), false, false),
            exit::BUSY
        );
        assert_eq!(
            exit_status(CallState::OtherFailure, Some(603), false, false),
            exit::DECLINED
        );
        assert_eq!(
            exit_status(CallState::OtherFailure, Some(404), false, false),
            exit::NOT_FOUND
        );
        assert_eq!(
            exit_status(CallState::OtherFailure, Some(480), false, false),
            exit::NO_ANSWER
        );
        assert_eq!(
            exit_status(CallState::HangupLocal, Some(487), false, true),
            exit::NO_ANSWER
        );
        assert_eq!(
            exit_status(CallState::NetworkFailure, Some(408), false, false),
            exit::NETWORK
        );
        assert_eq!(
            exit_status(CallState::OtherFailure, Some(488), false, false),
            exit::OTHER
        );
        assert_eq!(
            exit_status(CallState::OtherFailure, Some(407), false, false),
            exit::AUTH
        );
        assert_eq!(
            exit_status(CallState::OtherFailure, Some(403), false, false),
            exit::AUTH
        );
    }
}
