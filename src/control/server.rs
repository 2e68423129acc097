//! The control socket server: a tokio `UnixListener`, several clients at once, requests run
//! against the engine's commands, events pushed to subscribed clients.
//!
//! Each client has a bounded queue of outgoing lines ([`QUEUE_LINES`]) drained by its own
//! writer task. Events and responses are put in with `try_send`: a client whose queue is full
//! (it stopped reading) is dropped with a warning, and nothing the server does waits for a
//! client, so a slow client never holds up the engine or the other clients.

use std::collections::HashMap;
use std::fs::{DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{broadcast, mpsc};
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

use super::protocol::{self, error_response, json, ok_response, Request, Verb, MAX_LINE};
use super::state::{AccountStatus, Tracker};
use crate::engine::api::{
    AudioSinkSpec, AudioSourceSpec, CallAudio, CallId, CallState, CommandError, Event,
};
use crate::engine::EngineHandle;

/// Lines (responses and events) queued for one client before it counts as not reading.
pub const QUEUE_LINES: usize = 256;
/// Clients connected at once; one more is told so and closed.
pub const MAX_CLIENTS: usize = 64;
/// How long a live socket found at start may take to accept our probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a leaving client's queued responses may take to be written.
const FLUSH_GRACE: Duration = Duration::from_secs(10);

/// Why the control socket could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(
        "another termphone is already answering on the control socket {0} \
         (stop it, or give this one another --control PATH, or --no-control)"
    )]
    InUse(PathBuf),
    #[error(
        "{0} exists and is not a socket; not replacing it (remove it, or give --control PATH)"
    )]
    NotASocket(PathBuf),
    #[error(
        "the control socket directory {path} is not a directory of this user \
         (owner uid {owner}, we are uid {uid}); not using it"
    )]
    NotOurs { path: PathBuf, owner: u32, uid: u32 },
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ControlError + 'a {
    move |source| ControlError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The audio of a call answered with `accept` (no `play`/`record` given), from its id, peer
/// and the account it arrived for.
pub type AnswerAudio = Arc<dyn Fn(CallId, &str, Option<&str>) -> CallAudio + Send + Sync>;

/// What the server needs besides the engine.
pub struct ControlOptions {
    /// The accounts the engine registers, for `status` before their first event.
    pub accounts: Vec<AccountStatus>,
    /// How `accept` wires a call's audio by default (serve: the call's policy's source and
    /// recording directory).
    pub answer_audio: AnswerAudio,
    /// Per-client queue length ([`QUEUE_LINES`]).
    pub queue_lines: usize,
}

impl Default for ControlOptions {
    fn default() -> Self {
        ControlOptions {
            accounts: Vec::new(),
            answer_audio: Arc::new(|_, _, _| CallAudio::default()),
            queue_lines: QUEUE_LINES,
        }
    }
}

/// The socket file we bound; removed on drop if it is still ours (same inode).
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if m.dev() == self.dev && m.ino() == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// A bound, not yet serving, control socket ([`bind`], then [`Bound::spawn`]).
#[derive(Debug)]
pub struct Bound {
    listener: UnixListener,
    file: SocketFile,
}

/// The control socket a front end asked for: none with `off`, else `path` or, without one,
/// [`super::default_socket_path`] (in its private directory).
pub async fn bind_requested(path: Option<&Path>, off: bool) -> Result<Option<Bound>, ControlError> {
    if off {
        return Ok(None);
    }
    match path {
        Some(p) => bind(p, false).await.map(Some),
        None => bind(&super::default_socket_path(), true).await.map(Some),
    }
}

/// Listen at `path` (mode 0600). A socket file already there is probed: if a live instance
/// answers, [`ControlError::InUse`]; if nothing does, it is stale and replaced. With
/// `private_dir` (the default location), the directory is created 0700 if missing and must
/// belong to this user (its mode is tightened to 0700).
pub async fn bind(path: &Path, private_dir: bool) -> Result<Bound, ControlError> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        prepare_dir(dir, private_dir)?;
    }
    clear_stale(path).await?;
    let listener = UnixListener::bind(path).map_err(io_err("listen on", path))?;
    let meta = std::fs::symlink_metadata(path).map_err(io_err("inspect", path))?;
    let file = SocketFile {
        path: path.to_path_buf(),
        dev: meta.dev(),
        ino: meta.ino(),
    };
    std::fs::set_permissions(path, Permissions::from_mode(0o600))
        .map_err(io_err("set the mode of", path))?;
    Ok(Bound { listener, file })
}

fn prepare_dir(dir: &Path, private: bool) -> Result<(), ControlError> {
    match std::fs::symlink_metadata(dir) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io_err("create", dir))?;
        }
        Err(e) => return Err(io_err("inspect", dir)(e)),
    }
    if !private {
        return Ok(());
    }
    // Checked after creating too: someone may have made it in between.
    let meta = std::fs::symlink_metadata(dir).map_err(io_err("inspect", dir))?;
    let uid = super::current_uid();
    if !meta.is_dir() || meta.uid() != uid {
        return Err(ControlError::NotOurs {
            path: dir.to_path_buf(),
            owner: meta.uid(),
            uid,
        });
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, Permissions::from_mode(0o700))
            .map_err(io_err("set the mode of", dir))?;
    }
    Ok(())
}

async fn clear_stale(path: &Path) -> Result<(), ControlError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("inspect", path)(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(ControlError::NotASocket(path.to_path_buf()));
    }
    match tokio::time::timeout(PROBE_TIMEOUT, UnixStream::connect(path)).await {
        // Connected, or listening without accepting: somebody is there.
        Ok(Ok(_)) | Err(_) => Err(ControlError::InUse(path.to_path_buf())),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            info!(path = %path.display(), "removing a stale control socket");
            match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_err("remove the stale socket", path)(e)),
            }
        }
        Ok(Err(e)) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Ok(Err(e)) => Err(io_err("probe the existing socket", path)(e)),
    }
}

impl Bound {
    /// Where it listens.
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// [`Bound::spawn`], then announce the socket in the engine's event stream
    /// ([`Event::Control`]), once it accepts.
    pub fn serve(
        self,
        handle: &EngineHandle,
        events: broadcast::Receiver<Event>,
        opts: ControlOptions,
    ) -> Running {
        let path = self.path().to_path_buf();
        let running = self.spawn(handle.clone(), events, opts);
        handle.publish(Event::Control { path });
        running
    }

    /// Serve: accept clients, track and forward `events` (a subscription that has seen every
    /// event since the engine started, see [`crate::engine::start_observed`]).
    pub fn spawn(
        self,
        handle: EngineHandle,
        events: broadcast::Receiver<Event>,
        opts: ControlOptions,
    ) -> Running {
        let shared = Arc::new(Shared {
            tracker: Mutex::new(Tracker::new(handle.local_addr(), opts.accounts)),
            handle,
            clients: Mutex::new(Clients::default()),
            answer_audio: opts.answer_audio,
            queue_lines: opts.queue_lines.max(1),
            next_id: AtomicU64::new(1),
        });
        let accept = tokio::spawn(accept_loop(Arc::clone(&shared), self.listener));
        let hub = tokio::spawn(hub(Arc::clone(&shared), events));
        Running {
            shared,
            tasks: vec![accept.abort_handle(), hub.abort_handle()],
            file: self.file,
        }
    }
}

/// A serving control socket. Dropping it (or [`Running::stop`]) closes every client and
/// removes the socket file.
pub struct Running {
    shared: Arc<Shared>,
    tasks: Vec<AbortHandle>,
    file: SocketFile,
}

impl Running {
    /// Where it listens.
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// Stop serving and remove the socket file.
    pub fn stop(self) {}
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        let clients = std::mem::take(&mut self.shared.clients().map);
        for (_, c) in clients {
            for t in c.tasks {
                t.abort();
            }
        }
    }
}

struct Shared {
    handle: EngineHandle,
    tracker: Mutex<Tracker>,
    clients: Mutex<Clients>,
    answer_audio: AnswerAudio,
    queue_lines: usize,
    next_id: AtomicU64,
}

/// One connected client.
struct Client {
    /// Its outgoing queue (lines end with a newline).
    tx: mpsc::Sender<Arc<str>>,
    subscribed: bool,
    /// Its writer and reader tasks.
    tasks: Vec<AbortHandle>,
}

/// The connected clients.
#[derive(Default)]
struct Clients {
    map: HashMap<u64, Client>,
}

impl Clients {
    /// Queue `line` for every subscribed client; those whose queue is full are removed and
    /// returned (the caller aborts their tasks), those that are gone are removed.
    fn broadcast(&mut self, line: &Arc<str>) -> Vec<(u64, Client)> {
        let mut full = Vec::new();
        let mut gone = Vec::new();
        for (id, c) in &self.map {
            if !c.subscribed {
                continue;
            }
            match c.tx.try_send(Arc::clone(line)) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => full.push(*id),
                Err(TrySendError::Closed(_)) => gone.push(*id),
            }
        }
        for id in gone {
            self.map.remove(&id);
        }
        full.into_iter()
            .filter_map(|id| self.map.remove(&id).map(|c| (id, c)))
            .collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn tracker(&self) -> MutexGuard<'_, Tracker> {
        lock(&self.tracker)
    }

    fn clients(&self) -> MutexGuard<'_, Clients> {
        lock(&self.clients)
    }

    /// Drop a client that fell behind: its tasks end, its connection closes.
    fn drop_client(&self, id: u64, why: &str) {
        let client = self.clients().map.remove(&id);
        if let Some(c) = client {
            warn!("control client {id} dropped: {why}");
            for t in c.tasks {
                t.abort();
            }
        }
    }

    /// Queue a response for a client; false if the client is gone or was dropped for it.
    fn send(&self, id: u64, tx: &mpsc::Sender<Arc<str>>, line: String) -> bool {
        match tx.try_send(line.into()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.drop_client(
                    id,
                    &format!(
                        "it does not read: {} lines are waiting for it",
                        self.queue_lines
                    ),
                );
                false
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    fn start_client(self: &Arc<Self>, stream: UnixStream) {
        let (read, write) = stream.into_split();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.queue_lines);
        {
            let mut clients = self.clients();
            if clients.map.len() >= MAX_CLIENTS {
                drop(clients);
                warn!("control socket: {MAX_CLIENTS} clients already connected; refusing one more");
                tokio::spawn(async move {
                    let mut write = write;
                    let msg = error_response(
                        None,
                        &format!("too many control clients ({MAX_CLIENTS}); try again later"),
                    );
                    let _ = write.write_all(msg.as_bytes()).await;
                    let _ = write.shutdown().await;
                    drop(read);
                });
                return;
            }
            clients.map.insert(
                id,
                Client {
                    tx: tx.clone(),
                    subscribed: false,
                    tasks: Vec::new(),
                },
            );
        }
        debug!("control client {id} connected");
        let writer = tokio::spawn(write_lines(Arc::clone(self), id, write, rx));
        let reader = tokio::spawn(read_requests(Arc::clone(self), id, read, tx));
        if let Some(c) = self.clients().map.get_mut(&id) {
            c.tasks = vec![writer.abort_handle(), reader.abort_handle()];
        }
    }

    /// A client's input ended. A subscribed client keeps receiving events (until writing to
    /// it fails); another one is removed, its queued responses still written. Returns its
    /// writer task when removed.
    fn input_ended(&self, id: u64, keep_subscribed: bool) -> Option<AbortHandle> {
        let mut clients = self.clients();
        match clients.map.get(&id) {
            Some(c) if keep_subscribed && c.subscribed => None,
            Some(_) => clients
                .map
                .remove(&id)
                .and_then(|c| c.tasks.into_iter().next()),
            None => None,
        }
    }

    /// Parse and run one request line, queue its response. False: stop reading this client.
    async fn handle_line(&self, id: u64, tx: &mpsc::Sender<Arc<str>>, line: &[u8]) -> bool {
        let response = match protocol::parse_request(line) {
            Err(bad) => error_response(bad.id.as_ref(), &bad.error),
            Ok(req) => match self.execute(id, req).await {
                Some(r) => r,
                None => return true,
            },
        };
        self.send(id, tx, response)
    }

    /// Run a request; `None` when the response was already queued (subscribe).
    async fn execute(&self, id: u64, req: Request) -> Option<String> {
        let rid = req.id.as_ref();
        let result: Result<Vec<(&str, String)>, String> = match req.verb {
            Verb::Dial {
                to,
                account,
                play,
                record,
            } => self
                .dial(&to, account, play, record)
                .await
                .map(|call| vec![("call", json(&call))]),
            Verb::Accept { call, play, record } => self
                .accept(call, play, record)
                .await
                .map(|()| vec![("call", json(&call))]),
            Verb::Hangup { call: Some(call) } => self
                .handle
                .hangup(call)
                .await
                .map(|()| vec![("call", json(&call))])
                .map_err(|e| self.explain(e, "hang up", None)),
            Verb::Hangup { call: None } => {
                let calls: Vec<CallId> = self.tracker().calls().iter().map(|c| c.call).collect();
                let mut ended = Vec::new();
                for call in calls {
                    if self.handle.hangup(call).await.is_ok() {
                        ended.push(call);
                    }
                }
                Ok(vec![("calls", json(&ended))])
            }
            Verb::Dtmf { call, digits } => self
                .handle
                .send_dtmf(call, &digits)
                .await
                .map(|()| vec![("call", json(&call))])
                .map_err(|e| self.explain(e, "send DTMF on", Some("connected"))),
            Verb::Hold { call } => self
                .handle
                .hold(call)
                .await
                .map(|()| vec![("call", json(&call))])
                .map_err(|e| self.explain(e, "hold", Some("connected"))),
            Verb::Activate { call } => self
                .handle
                .switch_to(call)
                .await
                .map(|()| vec![("call", json(&call))])
                .map_err(|e| self.explain(e, "resume", Some("connected"))),
            Verb::Mute { call, on } => self
                .handle
                .mute(call, on)
                .await
                .map(|()| vec![("call", json(&call)), ("on", json(&on))])
                .map_err(|e| self.explain(e, "mute", Some("connected"))),
            Verb::Record { call, on, path } => {
                let path = path.map(|p| std::path::absolute(&p).unwrap_or(p));
                self.handle
                    .record(call, on, path)
                    .await
                    .map(|path| {
                        vec![
                            ("call", json(&call)),
                            ("on", json(&on)),
                            ("path", json(&path)),
                        ]
                    })
                    .map_err(|e| self.explain(e, "record", Some("connected")))
            }
            Verb::Transfer {
                call,
                to,
                with,
                accept,
            } => {
                let res = match (to, with, accept) {
                    (_, Some(with), _) => self.handle.transfer_to_call(call, with).await,
                    (Some(to), None, _) => self.handle.transfer(call, &to).await,
                    (None, None, Some(accept)) => self.handle.answer_transfer(call, accept).await,
                    (None, None, None) => unreachable!("the parser wants `to`, `with` or `accept`"),
                };
                res.map(|()| vec![("call", json(&call))])
                    .map_err(|e| self.explain(e, "transfer", Some("connected")))
            }
            Verb::Reject { call, code } => self
                .handle
                .reject(call, code)
                .await
                .map(|()| vec![("call", json(&call)), ("code", json(&code))])
                .map_err(|e| self.explain(e, "reject", Some("incoming"))),
            Verb::Redirect { call, to } => self
                .handle
                .redirect(call, &to)
                .await
                .map(|()| vec![("call", json(&call))])
                .map_err(|e| self.explain(e, "redirect", Some("incoming"))),
            Verb::Register { account, on } => self
                .handle
                .set_registered(&account, on)
                .await
                .map(|()| vec![("account", json(&account))])
                .map_err(|e| e.to_string()),
            Verb::Join { call, with } => self
                .handle
                .join(call, with)
                .await
                .map(|()| vec![("calls", json(&[call, with]))])
                .map_err(|e| self.explain(e, "join", Some("connected"))),
            Verb::Denoise { call, on } => self
                .handle
                .set_noise_suppression(call, on)
                .await
                .map(|()| vec![("call", json(&call)), ("on", json(&on))])
                .map_err(|e| self.explain(e, "switch noise suppression on", None)),
            Verb::Status => {
                let t = self.tracker();
                Ok(vec![
                    ("version", json(env!("CARGO_PKG_VERSION"))),
                    ("listen", json(&t.listen().to_string())),
                    ("transports", json(t.transports())),
                    ("accounts", json(t.accounts())),
                    ("calls", json(&t.calls())),
                ])
            }
            Verb::Calls => Ok(vec![("calls", json(&self.tracker().calls()))]),
            Verb::Supports => Ok(vec![("verbs", json(protocol::SUPPORTED_VERBS))]),
            Verb::Subscribe | Verb::Unsubscribe => {
                let on = req.verb == Verb::Subscribe;
                let response = ok_response(rid, &[]);
                let mut clients = self.clients();
                let c = clients.map.get_mut(&id)?;
                // The response goes into the queue before the first event can.
                match c.tx.try_send(response.into()) {
                    Ok(()) => c.subscribed = on,
                    Err(TrySendError::Full(_)) => {
                        drop(clients);
                        self.drop_client(id, "it does not read its responses");
                    }
                    Err(TrySendError::Closed(_)) => {}
                }
                return None;
            }
        };
        Some(match result {
            Ok(fields) => ok_response(rid, &fields),
            Err(e) => error_response(rid, &e),
        })
    }

    async fn dial(
        &self,
        to: &str,
        account: Option<String>,
        play: Option<PathBuf>,
        record: Option<PathBuf>,
    ) -> Result<CallId, String> {
        let mut audio = CallAudio::default();
        with_files(&mut audio, play, record)?;
        self.handle
            .dial_as(account.as_deref(), to, audio)
            .await
            .map_err(|e| e.to_string())
    }

    async fn accept(
        &self,
        call: CallId,
        play: Option<PathBuf>,
        record: Option<PathBuf>,
    ) -> Result<(), String> {
        let (peer, account) = self.tracker().peer(call).unwrap_or_default();
        let mut audio = (self.answer_audio)(call, &peer, account.as_deref());
        with_files(&mut audio, play, record)?;
        // A person answering a waiting call puts the one they were talking on hold.
        self.handle
            .answer_holding_others(call, audio)
            .await
            .map_err(|e| self.explain(e, "accept", Some("incoming")))
    }

    /// An engine error in words, naming the call's state when it was the wrong one.
    fn explain(&self, e: CommandError, what: &str, wanted: Option<&str>) -> String {
        if let CommandError::WrongState(call) = &e {
            if let Some(state) = self.tracker().call_state(*call) {
                let state = match state {
                    CallState::Hold => "on hold".to_string(),
                    CallState::RemoteHold => "on hold by the peer".to_string(),
                    s => s.to_string(),
                };
                return match wanted {
                    Some(w) => format!("cannot {what} {call}: it is {state}, not {w}"),
                    None => format!("cannot {what} {call}: it is {state}"),
                };
            }
        }
        e.to_string()
    }
}

/// A WAV file to record into must have an existing directory.
fn check_record_path(path: &Path) -> Result<(), String> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if parent.is_dir() {
        Ok(())
    } else {
        Err(format!(
            "cannot record to {}: {} is not a directory",
            path.display(),
            parent.display()
        ))
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: UnixListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => shared.start_client(stream),
            Err(e) => {
                // Out of file descriptors, most likely: wait instead of spinning.
                warn!("control socket: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Keep the state and forward every event to the subscribed clients.
async fn hub(shared: Arc<Shared>, mut events: broadcast::Receiver<Event>) {
    loop {
        match events.recv().await {
            Ok(ev) => {
                shared.tracker().on_event(&ev);
                let Some(mut line) = ev.to_json() else {
                    continue;
                };
                line.push('\n');
                let line: Arc<str> = line.into();
                let dropped = shared.clients().broadcast(&line);
                for (id, c) in dropped {
                    warn!(
                        "control client {id} dropped: it does not read its events ({} lines are waiting for it)",
                        shared.queue_lines
                    );
                    for t in c.tasks {
                        t.abort();
                    }
                }
            }
            Err(RecvError::Lagged(n)) => warn!(
                "control socket: {n} engine events were missed; calls and registrations shown may be stale"
            ),
            Err(RecvError::Closed) => break,
        }
    }
}

async fn write_lines(
    shared: Arc<Shared>,
    id: u64,
    mut write: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Arc<str>>,
) {
    while let Some(line) = rx.recv().await {
        if let Err(e) = write.write_all(line.as_bytes()).await {
            debug!("control client {id}: write failed: {e}");
            shared.clients().map.remove(&id);
            return;
        }
    }
    let _ = write.shutdown().await;
    debug!("control client {id} done");
}

async fn read_requests(
    shared: Arc<Shared>,
    id: u64,
    read: OwnedReadHalf,
    tx: mpsc::Sender<Arc<str>>,
) {
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    let too_long = loop {
        line.clear();
        match read_line_bounded(&mut reader, &mut line, MAX_LINE).await {
            Ok(LineRead::Line) => {
                let text = line.trim_ascii();
                if !text.is_empty() && !shared.handle_line(id, &tx, text).await {
                    return;
                }
            }
            Ok(LineRead::Eof) => break false,
            Ok(LineRead::TooLong) => break true,
            Err(e) => {
                debug!("control client {id}: read failed: {e}");
                break false;
            }
        }
    };
    drop(reader);
    if too_long {
        let msg =
            format!("request line too long (more than {MAX_LINE} bytes); closing the connection");
        warn!("control client {id}: {msg}");
        shared.send(id, &tx, error_response(None, &msg));
    }
    drop(tx);
    // A subscribed client that closed only its sending side keeps receiving events.
    if let Some(writer) = shared.input_ended(id, !too_long) {
        // Its last responses are being written; a client that never reads them is cut off.
        tokio::time::sleep(FLUSH_GRACE).await;
        writer.abort();
    }
}

/// What [`read_line_bounded`] read.
#[derive(Debug, PartialEq, Eq)]
enum LineRead {
    /// A line (without its newline) is in the buffer; at the end of input, the last,
    /// unterminated one.
    Line,
    /// The end of input.
    Eof,
    /// A line longer than the limit; what was read of it is discarded.
    TooLong,
}

/// Read one line into `buf` (cleared by the caller), never holding more than `max` bytes.
async fn read_line_bounded<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<LineRead> {
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(if buf.is_empty() {
                LineRead::Eof
            } else {
                LineRead::Line
            });
        }
        match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let fits = buf.len() + i <= max;
                if fits {
                    buf.extend_from_slice(&chunk[..i]);
                }
                r.consume(i + 1);
                return Ok(if fits {
                    LineRead::Line
                } else {
                    LineRead::TooLong
                });
            }
            None => {
                let n = chunk.len();
                if buf.len() + n > max {
                    r.consume(n);
                    return Ok(LineRead::TooLong);
                }
                buf.extend_from_slice(chunk);
                r.consume(n);
            }
        }
    }
}

/// A request's `play` / `record` files, checked, replace the call's source / sink.
fn with_files(
    audio: &mut CallAudio,
    play: Option<PathBuf>,
    record: Option<PathBuf>,
) -> Result<(), String> {
    if let Some(p) = play {
        crate::headless::check_wav(&p)?;
        audio.source = AudioSourceSpec::File(p);
    }
    if let Some(r) = record {
        check_record_path(&r)?;
        audio.sink = AudioSinkSpec::File(r);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_bounded() {
        let input: &[u8] = b"{\"cmd\":\"status\"}\r\n\nabc";
        let mut r = tokio::io::BufReader::with_capacity(4, input);
        let mut buf = Vec::new();
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 64).await.unwrap(),
            LineRead::Line
        );
        assert_eq!(buf, b"{\"cmd\":\"status\"}\r");
        buf.clear();
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 64).await.unwrap(),
            LineRead::Line
        );
        assert!(buf.is_empty());
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 64).await.unwrap(),
            LineRead::Line
        );
        assert_eq!(buf, b"abc");
        buf.clear();
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 64).await.unwrap(),
            LineRead::Eof
        );

        let long = [b'x'; 100];
        let mut r = tokio::io::BufReader::with_capacity(8, &long[..]);
        let mut buf = Vec::new();
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 50).await.unwrap(),
            LineRead::TooLong
        );
        assert!(buf.len() <= 50);
        // Exactly at the limit is fine, one more is not.
        let mut line = vec![b'y'; 50];
        line.push(b'\n');
        let mut r = tokio::io::BufReader::with_capacity(8, &line[..]);
        buf.clear();
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 50).await.unwrap(),
            LineRead::Line
        );
        let mut line = vec![b'y'; 51];
        line.push(b'\n');
        let mut r = tokio::io::BufReader::with_capacity(64, &line[..]);
        buf.clear();
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 50).await.unwrap(),
            LineRead::TooLong
        );
    }

    fn client(cap: usize, subscribed: bool) -> (Client, mpsc::Receiver<Arc<str>>) {
        let (tx, rx) = mpsc::channel(cap);
        (
            Client {
                tx,
                subscribed,
                tasks: Vec::new(),
            },
            rx,
        )
    }

    #[test]
    fn a_client_that_falls_behind_is_dropped_and_the_others_get_everything() {
        let mut clients = Clients::default();
        let (fast, mut fast_rx) = client(4, true);
        let (slow, _slow_rx) = client(2, true);
        let (quiet, mut quiet_rx) = client(4, false);
        clients.map.insert(1, fast);
        clients.map.insert(2, slow);
        clients.map.insert(3, quiet);
        for n in 0..3 {
            let line: Arc<str> = format!("{n}\n").into();
            let dropped = clients.broadcast(&line);
            // The fast one reads as it goes.
            assert_eq!(&*fast_rx.try_recv().unwrap(), format!("{n}\n"));
            if n < 2 {
                assert!(dropped.is_empty());
            } else {
                assert_eq!(dropped.iter().map(|d| d.0).collect::<Vec<_>>(), [2]);
            }
        }
        assert!(!clients.map.contains_key(&2));
        assert!(clients.map.contains_key(&1));
        // Not subscribed: no events.
        assert!(quiet_rx.try_recv().is_err());
        // A client that went away is removed without fuss.
        drop(fast_rx);
        assert!(clients.broadcast(&Arc::from("x\n")).is_empty());
        assert!(!clients.map.contains_key(&1));
    }
}
