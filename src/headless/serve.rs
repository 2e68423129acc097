//! `termphone serve`: answer calls unattended by a policy, print events, stop cleanly on
//! SIGINT/SIGTERM (BYE for every call, recordings closed, exit 0).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio::sync::broadcast::error::RecvError;

use super::{check_wav, termination_signal, EventPrinter};
use crate::config::{AnswerAudio, AutoAnswer};
use crate::engine::api::{AudioSinkSpec, AudioSourceSpec, CallAudio, CallId, CallState, Event};
use crate::engine::{Engine, EngineHandle};

/// How `serve` treats each incoming call.
#[derive(Debug, Clone)]
pub struct ServePolicy {
    /// Ring this long before answering.
    pub answer_delay: Duration,
    /// What callers hear.
    pub source: AudioSourceSpec,
    /// Record each call into this directory.
    pub record_dir: Option<PathBuf>,
    /// Where the caller's audio goes when it is not recorded (nowhere, or a loudspeaker).
    pub playback: AudioSinkSpec,
    /// Hang up this long after answering.
    pub hangup_after: Option<Duration>,
    /// Reject every call with this code instead of answering.
    pub reject: Option<u16>,
    /// Neither answer nor reject: the call rings until answered by hand (`termphone ctl
    /// accept`) or the caller gives up (an account's `auto_answer = "off"`).
    pub manual: bool,
}

impl ServePolicy {
    /// The policy an account's `auto_answer` describes.
    pub fn from_auto_answer(aa: &AutoAnswer) -> ServePolicy {
        let mut p = ServePolicy {
            answer_delay: Duration::ZERO,
            source: AudioSourceSpec::Silence,
            record_dir: None,
            playback: AudioSinkSpec::Null,
            hangup_after: None,
            reject: None,
            manual: false,
        };
        match aa {
            AutoAnswer::Off => p.manual = true,
            AutoAnswer::Reject(code) => p.reject = Some(*code),
            AutoAnswer::Answer(a) => {
                p.answer_delay = Duration::from_secs(a.delay_secs.into());
                p.source = match &a.audio {
                    AnswerAudio::Silence => AudioSourceSpec::Silence,
                    AnswerAudio::Echo => AudioSourceSpec::Echo,
                    AnswerAudio::File(f) => AudioSourceSpec::File(f.clone()),
                };
                p.record_dir = a.record_dir.clone();
                p.hangup_after = a.hangup_after_secs.map(|s| Duration::from_secs(s.into()));
            }
        }
        p
    }

    /// A call's audio under this policy: its source, and a recording file (named by time and
    /// caller) when recording, else the playback.
    pub fn audio_for(&self, peer: &str, call: CallId) -> CallAudio {
        CallAudio {
            source: self.source.clone(),
            sink: match &self.record_dir {
                Some(dir) => {
                    AudioSinkSpec::File(recording_path(dir, peer, call, SystemTime::now()))
                }
                None => self.playback.clone(),
            },
        }
    }
}

/// The policy for each call: an account's own `auto_answer` for calls to that account, the
/// command line's for every other call.
#[derive(Debug, Clone)]
pub struct Policies {
    /// From the command line: direct calls and accounts without `auto_answer`.
    pub default: ServePolicy,
    /// Account name → its `auto_answer` policy.
    pub accounts: HashMap<String, ServePolicy>,
}

impl Policies {
    /// The policy for a call that arrived for `account`.
    pub fn for_call(&self, account: Option<&str>) -> &ServePolicy {
        account
            .and_then(|a| self.accounts.get(a))
            .unwrap_or(&self.default)
    }

    /// Check every policy's files before listening; errors name the account.
    pub fn validate(&self) -> Result<(), String> {
        validate(&self.default)?;
        let mut names: Vec<_> = self.accounts.keys().collect();
        names.sort();
        for name in names {
            validate(&self.accounts[name])
                .map_err(|e| format!("account {name:?} auto_answer: {e}"))?;
        }
        Ok(())
    }
}

/// Check the policy's files before listening.
pub fn validate(policy: &ServePolicy) -> Result<(), String> {
    if let AudioSourceSpec::File(path) = &policy.source {
        check_wav(path)?;
    }
    if let Some(dir) = &policy.record_dir {
        if !dir.is_dir() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot record into {}: {e}", dir.display()))?;
        }
    }
    Ok(())
}

/// Run until SIGINT/SIGTERM (after [`Policies::validate`]); returns the exit status.
pub async fn run(engine: Engine, policies: Policies, printer: EventPrinter) -> i32 {
    let Engine {
        handle,
        mut events,
        task,
    } = engine;
    let signal = termination_signal();
    tokio::pin!(signal);
    // Incoming calls seen (so a call answered by `ctl accept` is timed like an auto-answered
    // one); the hang-up timer starts at the first `connected`.
    let mut incoming: HashMap<CallId, Option<Duration>> = HashMap::new();
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(ev) => {
                    printer.print(&ev);
                    match &ev {
                        Event::Call { call, state: CallState::Incoming, peer, account, .. } => {
                            let policy = policies.for_call(account.as_deref());
                            incoming.insert(*call, policy.hangup_after);
                            if !policy.manual {
                                tokio::spawn(handle_call(handle.clone(), *call, peer.clone(), policy.clone()));
                            }
                        }
                        Event::Call { call, state: CallState::Connected, .. } => {
                            if let Some(Some(after)) = incoming.remove(call) {
                                tokio::spawn(hang_up_after(handle.clone(), *call, after));
                            }
                        }
                        Event::Call { call, state, .. } if state.is_final() => {
                            incoming.remove(call);
                        }
                        _ => {}
                    }
                }
                Err(RecvError::Lagged(n)) => eprintln!("termphone: {n} events were dropped"),
                Err(RecvError::Closed) => break,
            },
            _ = &mut signal => break,
        }
    }
    handle.shutdown().await;
    while let Ok(ev) = events.try_recv() {
        printer.print(&ev);
    }
    let _ = task.await;
    0
}

async fn handle_call(handle: EngineHandle, call: CallId, peer: String, policy: ServePolicy) {
    if let Some(code) = policy.reject {
        let _ = handle.reject(call, code).await;
        return;
    }
    if !policy.answer_delay.is_zero() {
        tokio::time::sleep(policy.answer_delay).await;
    }
    let audio = policy.audio_for(&peer, call);
    // An error: the caller gave up while we waited. The hang-up timer starts at `connected`.
    let _ = handle.answer(call, audio).await;
}

/// End an answered call after its policy's `hangup_after` (the call may have ended already).
async fn hang_up_after(handle: EngineHandle, call: CallId, after: Duration) {
    tokio::time::sleep(after).await;
    let _ = handle.hangup(call).await;
}

pub use crate::engine::recording::recording_path;
