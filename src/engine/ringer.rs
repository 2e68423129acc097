//! The engine's ringer: the ringtone while an incoming call rings here, the ringback tone while
//! a call we placed through the sound card rings at the far end. Opening and closing a sound
//! device takes a while (a few hundred ms), so a thread of its own does it; the engine only
//! says what should sound now.

use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::audio::{RingKind, RingPlayer};

/// What should sound: a kind of ring on a playback device (`None`: the default device).
pub(crate) type Ring = (RingKind, Option<String>);

/// Owns the ring thread; dropping it stops any ring and the thread.
pub(crate) struct Ringer {
    tx: Option<mpsc::Sender<Option<Ring>>>,
    thread: Option<JoinHandle<()>>,
    /// What was last asked for, so that only changes go to the thread.
    current: Option<Ring>,
}

impl Ringer {
    pub(crate) fn new() -> Ringer {
        Ringer {
            tx: None,
            thread: None,
            current: None,
        }
    }

    /// Ring `want` (or be silent with `None`); nothing happens when it is already so. Errors
    /// opening the device are logged by the ring thread; the calls go on without a ring.
    pub(crate) fn set(&mut self, want: Option<Ring>) {
        if want == self.current {
            return;
        }
        self.current = want.clone();
        if self.tx.is_none() {
            if want.is_none() {
                return;
            }
            let (tx, rx) = mpsc::channel::<Option<Ring>>();
            let spawned = std::thread::Builder::new()
                .name("termphone-ringer".into())
                .spawn(move || ring_thread(rx));
            match spawned {
                Ok(handle) => {
                    self.tx = Some(tx);
                    self.thread = Some(handle);
                }
                Err(e) => {
                    tracing::warn!("cannot start the ring thread: {e}");
                    return;
                }
            }
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(want);
        }
    }
}

impl Drop for Ringer {
    fn drop(&mut self) {
        self.tx = None; // the thread stops its player and ends
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn ring_thread(rx: mpsc::Receiver<Option<Ring>>) {
    let mut player: Option<(Ring, RingPlayer)> = None;
    while let Ok(mut want) = rx.recv() {
        // Only the latest wish counts (a call answered while its ring was opening).
        while let Ok(next) = rx.try_recv() {
            want = next;
        }
        if player.as_ref().map(|(r, _)| r) == want.as_ref() {
            continue;
        }
        if let Some((_, p)) = player.take() {
            p.stop();
        }
        if let Some(ring) = want {
            match RingPlayer::start(ring.0, ring.1.as_deref()) {
                Ok(p) => player = Some((ring, p)),
                Err(e) => tracing::warn!("cannot play the {}: {e}", ring.0.name()),
            }
        }
    }
    if let Some((_, p)) = player.take() {
        p.stop();
    }
}
