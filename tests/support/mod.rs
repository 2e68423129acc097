//! Shared helpers for termphone's integration tests (`mod support;` in a test file).
//!
//! - [`Termphone`]: runs the real binary (`serve` / `dial`) with `--json`, parses its event
//!   lines on a reader thread, waits for events and for its exit, stops it (SIGTERM, then
//!   SIGKILL after [`TERM_GRACE`], its own PID only) on drop.
//! - [`Sipp`]: runs a sipp scenario from `tests/sipp/` on 127.0.0.1, one call (`-m 1`), traces
//!   in the test's temp dir; [`sipp::parse_trace`] reads its SIP message trace.
//! - [`RtpSink`]: a UDP RTP receiver a peer's SDP can point at; decodes G.711 and RFC 4733.
//! - [`audio`]: WAV loading, best-lag normalized cross-correlation, Goertzel tone and DTMF
//!   detection.
//! - [`e2e`]: whole termphone-vs-sipp checks, one function per scenario.
//! - [`kamailio::Kamailio`]: a real Kamailio registrar/proxy on 127.0.0.1 with digest users,
//!   its registrations read over JSON-RPC; raw UDP SIP requests via [`kamailio::SipClient`].
//! - [`control`]: a control socket test client, `serve` with its socket in the test's dir,
//!   the real CLI run with a deadline.
//!
//! A test:
//! ```ignore
//! mod support;
//! use std::time::Duration;
//! #[test]
//! fn busy() {
//!     let mut sipp = support::Sipp::uas("uas_busy.xml").spawn();
//!     let mut tp = support::Termphone::dial(&[&sipp.uri("bob")]);
//!     assert_eq!(tp.wait_exit_code(Duration::from_secs(20)), 3);
//!     sipp.expect_success(Duration::from_secs(20));
//! }
//! ```
//!
//! Environment: `TERMPHONE_BIN` runs another build instead of `CARGO_BIN_EXE_termphone`;
//! `TERMPHONE_KEEP_TMP=1` keeps every test's temp dir (a failing test always keeps its own and
//! prints the path); `SIPP_PCAP=1` allows pcap scenarios when not root (sipp needs
//! CAP_NET_RAW). Every address is loopback. Every process a helper starts, it stops.
//! Not every test binary uses every helper, hence the `allow` below.
#![allow(dead_code, unused_imports)]

pub mod audio;
pub mod baresip;
pub mod baresip_ctrl;
pub mod control;
pub mod dnsmasq;
pub mod e2e;
pub mod kamailio;
pub mod linphone;
pub mod relay;
pub mod rtp;
pub mod sipp;
pub mod tmux;

pub use audio::{compare_wavs, read_wav_mono, Similarity};
pub use rtp::{RtpCapture, RtpSink};
pub use sipp::Sipp;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long [`stop_child`] waits after SIGTERM before it sends SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(3);

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// Passwords no termphone process may ever print: (label, secret).
static SECRETS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// Register a password that no process started by [`Termphone`] may print. Every
/// [`Termphone`], when dropped, looks for each registered secret in its stdout events, its
/// stderr and its log file and fails the test if one is there: the suite-wide "no password in
/// any log, trace, event or error output" check. [`kamailio::Kamailio::start`] registers its
/// users' passwords. `label` names the secret in the failure; the secret itself is never
/// printed.
pub fn register_secret(label: &str, secret: &str) {
    if secret.len() < 4 {
        return; // too short to search for without false alarms
    }
    let mut all = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    if !all.iter().any(|(_, s)| s == secret) {
        all.push((label.to_owned(), secret.to_owned()));
    }
}

/// The label of the first registered secret that occurs in `text`.
pub fn find_secret(text: &str) -> Option<String> {
    let all = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    all.iter()
        .find(|(_, s)| text.contains(s.as_str()))
        .map(|(l, _)| l.clone())
}

/// A number unique within this test binary, for file names.
pub fn next_seq() -> usize {
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// Absolute path of a file in the repository (relative to the package root).
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Absolute path of a fixture in `tests/data/`.
pub fn data_file(name: &str) -> PathBuf {
    repo_path("tests/data").join(name)
}

/// A test's temporary directory. Removed when the last handle drops, unless a panic is
/// unwinding then (a failing test keeps its logs and traces; the path is printed) or
/// `TERMPHONE_KEEP_TMP` is set.
pub struct TestDir {
    dir: std::sync::Mutex<Option<tempfile::TempDir>>,
    path: PathBuf,
}

impl TestDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let keep = std::thread::panicking() || std::env::var_os("TERMPHONE_KEEP_TMP").is_some();
        if let Ok(mut guard) = self.dir.lock() {
            if let Some(mut d) = guard.take() {
                if keep {
                    d.disable_cleanup(true);
                    eprintln!("test files kept in {}", self.path.display());
                }
            }
        }
    }
}

/// A fresh temporary directory for one test.
pub fn test_dir() -> Arc<TestDir> {
    let dir = tempfile::Builder::new()
        .prefix("termphone-test-")
        .tempdir()
        .expect("create temp dir");
    let path = dir.path().to_path_buf();
    Arc::new(TestDir {
        dir: std::sync::Mutex::new(Some(dir)),
        path,
    })
}

/// A UDP port on 127.0.0.1 that was free a moment ago (bind :0, read, drop), for peers that
/// need a fixed port. Another process may take it in between; tests tolerate that by retrying
/// rarely enough that it does not matter.
pub fn free_udp_port() -> u16 {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    sock.local_addr().expect("local addr").port()
}

/// Two free UDP ports `p` and `p + 2` (sipp's `-mp` uses the port and port+2 for video).
pub fn free_udp_port_pair() -> u16 {
    for _ in 0..50 {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let p = a.local_addr().expect("addr").port();
        if p < u16::MAX - 3 && UdpSocket::bind(("127.0.0.1", p + 2)).is_ok() {
            return p;
        }
    }
    panic!("no free UDP port pair found");
}

/// Send SIGTERM to this child (its PID only), wait up to `grace`, then SIGKILL it. Reaps it.
pub fn stop_child(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(st)) = child.try_wait() {
        return Some(st);
    }
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) with the PID of a child we spawned and have not reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill(); // SIGKILL to the same PID
    child.wait().ok()
}

/// Poll `f` every 20 ms until it returns `Some` or `timeout` passes.
pub fn wait_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last `max` bytes of a text file (lossy), for failure messages.
pub fn tail_file(path: &Path, max: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// Matches a call event in the given state: `{"event":"call","state":STATE}`.
pub fn is_call_state(state: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["event"] == "call" && v["state"] == state
}

/// Matches any event with this `"event"` name.
pub fn is_event(name: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["event"] == name
}

/// Builder for one termphone process. `serve`/`dial` add `--json`, `--listen 127.0.0.1:0`,
/// `--log-file` and `--sip-trace` unless told not to.
pub struct TermphoneBuilder {
    dir: Arc<TestDir>,
    global: Vec<String>,
    sub: Vec<String>,
    env: Vec<(String, String)>,
    defaults: bool,
    program: Option<PathBuf>,
}

impl TermphoneBuilder {
    /// Run a subcommand with these arguments (e.g. `["serve", "--echo"]`).
    pub fn new<S: AsRef<str>>(sub: &[S]) -> Self {
        TermphoneBuilder {
            dir: test_dir(),
            global: Vec::new(),
            sub: sub.iter().map(|s| s.as_ref().to_owned()).collect(),
            env: Vec::new(),
            defaults: true,
            program: None,
        }
    }
    /// Use this temp dir (to share one between processes of a test).
    pub fn dir(mut self, dir: Arc<TestDir>) -> Self {
        self.dir = dir;
        self
    }
    /// Add a global option (before the subcommand), e.g. `--config PATH`.
    pub fn global(mut self, arg: impl Into<String>) -> Self {
        self.global.push(arg.into());
        self
    }
    /// Set an environment variable for the child.
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    /// Run another program instead of the termphone binary (for testing this harness).
    pub fn program(mut self, path: impl Into<PathBuf>) -> Self {
        self.program = Some(path.into());
        self
    }
    /// Pass the arguments exactly as given: no `--json`, `--listen`, `--log-file`, `--sip-trace`.
    pub fn raw(mut self) -> Self {
        self.defaults = false;
        self
    }

    /// Start the process.
    pub fn spawn(self) -> Termphone {
        let n = next_seq();
        let sub_name = self.sub.first().cloned().unwrap_or_default();
        let name = format!("termphone-{sub_name}-{n}");
        let stderr_path = self.dir.path().join(format!("{name}.stderr"));
        let log_path = self.dir.path().join(format!("{name}.log"));
        let mut args: Vec<String> = Vec::new();
        let has = |flag: &str| {
            self.sub.iter().any(|a| a == flag) || self.global.iter().any(|a| a == flag)
        };
        if self.defaults {
            if !has("--log-file") {
                args.push("--log-file".into());
                args.push(log_path.display().to_string());
            }
            if !has("--sip-trace") {
                args.push("--sip-trace".into());
            }
        }
        args.extend(self.global.iter().cloned());
        args.extend(self.sub.iter().cloned());
        if self.defaults && (sub_name == "serve" || sub_name == "dial") {
            if !has("--json") {
                args.push("--json".into());
            }
            if !has("--listen") {
                args.push("--listen".into());
                args.push("127.0.0.1:0".into());
            }
        }
        let stderr = std::fs::File::create(&stderr_path).expect("create stderr log");
        let xdg = self.dir.path().join("xdg");
        // TERMPHONE_BIN: run another build (e.g. target/release/termphone) under the same tests
        let program = self
            .program
            .clone()
            .or_else(|| std::env::var_os("TERMPHONE_BIN").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_termphone")));
        let mut cmd = Command::new(&program);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .current_dir(self.dir.path())
            // Never read the developer's own config, history or runtime sockets.
            .env("XDG_CONFIG_HOME", xdg.join("config"))
            .env("XDG_DATA_HOME", xdg.join("data"))
            .env("XDG_STATE_HOME", xdg.join("state"))
            .env("XDG_CACHE_HOME", xdg.join("cache"))
            // serve's default control socket: one runtime dir per process, so that several
            // instances of a test (sharing its dir) do not meet on one socket.
            .env("XDG_RUNTIME_DIR", xdg.join(format!("runtime-{n}")))
            .env("RUST_BACKTRACE", "1")
            // Never the developer's own keyring: a session bus that does not exist, unless the
            // test brings its own (the keyring tests do, with .env()).
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                "unix:path=/nonexistent/termphone-test-bus",
            );
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} {args:?}: {e}", program.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::Builder::new()
            .name(format!("{name}-stdout"))
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if line.trim().is_empty() {
                        continue;
                    }
                    let ev = match serde_json::from_str::<Value>(&line) {
                        Ok(v) if v.is_object() => v,
                        _ => serde_json::json!({ "event": NON_JSON, "text": line }),
                    };
                    if tx.send(ev).is_err() {
                        break;
                    }
                }
            })
            .expect("spawn reader thread");
        Termphone {
            child,
            name,
            args,
            dir: self.dir,
            stderr_path,
            log_path,
            rx,
            reader: Some(reader),
            history: Vec::new(),
            taken: Vec::new(),
            disconnected: false,
            status: None,
        }
    }
}

/// The `"event"` value given to stdout lines that were not a JSON object.
pub const NON_JSON: &str = "_non_json";

/// A running termphone process with its JSON event stream.
pub struct Termphone {
    child: Child,
    name: String,
    args: Vec<String>,
    dir: Arc<TestDir>,
    stderr_path: PathBuf,
    log_path: PathBuf,
    rx: Receiver<Value>,
    reader: Option<JoinHandle<()>>,
    history: Vec<Value>,
    taken: Vec<bool>,
    disconnected: bool,
    status: Option<ExitStatus>,
}

impl Termphone {
    /// `termphone serve ARGS --json --listen 127.0.0.1:0` (defaults added when absent).
    pub fn serve(args: &[&str]) -> Termphone {
        let mut sub = vec!["serve"];
        sub.extend_from_slice(args);
        TermphoneBuilder::new(&sub).spawn()
    }

    /// `termphone dial ARGS --json --listen 127.0.0.1:0` (ARGS starts with the URI).
    pub fn dial(args: &[&str]) -> Termphone {
        let mut sub = vec!["dial"];
        sub.extend_from_slice(args);
        TermphoneBuilder::new(&sub).spawn()
    }

    /// A builder, for global options, env, or a shared temp dir.
    pub fn builder<S: AsRef<str>>(sub: &[S]) -> TermphoneBuilder {
        TermphoneBuilder::new(sub)
    }

    /// The test's temp dir (also where stderr and the log file go).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Shared handle to the temp dir, to give to another process of the same test.
    pub fn dir_handle(&self) -> Arc<TestDir> {
        Arc::clone(&self.dir)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Path of the child's stderr capture.
    pub fn stderr_path(&self) -> &Path {
        &self.stderr_path
    }

    /// Everything on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Path given as `--log-file` (when defaults were on).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    fn pump(&mut self, timeout: Duration) -> bool {
        if self.disconnected {
            if !timeout.is_zero() {
                std::thread::sleep(timeout.min(Duration::from_millis(20)));
            }
            return false;
        }
        match self.rx.recv_timeout(timeout) {
            Ok(v) => {
                self.history.push(v);
                self.taken.push(false);
                while let Ok(v) = self.rx.try_recv() {
                    self.history.push(v);
                    self.taken.push(false);
                }
                true
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => {
                self.disconnected = true;
                false
            }
        }
    }

    /// The first not-yet-taken event matching `pred`, waiting up to `timeout`; marks it taken.
    /// Events that do not match stay available to later waits.
    pub fn try_wait_event(
        &mut self,
        pred: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            for (i, ev) in self.history.iter().enumerate() {
                if !self.taken[i] && pred(ev) {
                    self.taken[i] = true;
                    return Some(ev.clone());
                }
            }
            let now = Instant::now();
            if now >= deadline || (self.disconnected && self.rx.try_recv().is_err()) {
                return None;
            }
            self.pump((deadline - now).min(Duration::from_millis(100)));
        }
    }

    /// Like [`Termphone::try_wait_event`], but panics with the events and stderr so far on timeout.
    pub fn wait_event(&mut self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Value {
        match self.try_wait_event(pred, timeout) {
            Some(v) => v,
            None => {
                let exited = match self.try_exit() {
                    Some(st) => format!(" (the process has exited: {st})"),
                    None => String::new(),
                };
                let diag = self.diagnostics();
                panic!(
                    "{}: no matching event within {timeout:?}{exited}\n{}",
                    self.name, diag
                )
            }
        }
    }

    /// Wait for `{"event":"call","state":STATE}`.
    pub fn wait_call_state(&mut self, state: &'static str, timeout: Duration) -> Value {
        self.wait_event(is_call_state(state), timeout)
    }

    /// All events received so far (taken or not), in order.
    pub fn events(&mut self) -> &[Value] {
        while self.pump(Duration::ZERO) {}
        &self.history
    }

    /// Stdout lines that were not JSON objects (the JSON contract says there are none).
    pub fn non_json_lines(&mut self) -> Vec<String> {
        self.events()
            .iter()
            .filter(|v| v["event"] == NON_JSON)
            .map(|v| v["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The address from the first `{"event":"listening"}` (waits up to 10 s).
    pub fn listen_addr(&mut self) -> SocketAddr {
        let deadline = Duration::from_secs(10);
        let ev = match self.history.iter().find(|v| v["event"] == "listening") {
            Some(v) => v.clone(),
            None => self.wait_event(is_event("listening"), deadline),
        };
        let text = ev["addr"].as_str().unwrap_or_default();
        text.parse().unwrap_or_else(|e| {
            let diag = self.diagnostics();
            panic!("{}: bad listening addr {text:?}: {e}\n{}", self.name, diag)
        })
    }

    /// A SIP URI that reaches this instance: `sip:USER@ADDR`.
    pub fn sip_uri(&mut self, user: &str) -> String {
        format!("sip:{user}@{}", self.listen_addr())
    }

    /// The exit status if it has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Wait for the process to exit on its own; panics with diagnostics on timeout.
    /// Afterwards every stdout line is in [`Termphone::events`].
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_exit() {
                self.drain_stdout();
                return st;
            }
            if Instant::now() >= deadline {
                {
                    let diag = self.diagnostics();
                    panic!("{}: did not exit within {timeout:?}\n{}", self.name, diag)
                };
            }
            self.pump(Duration::from_millis(20));
        }
    }

    /// Wait for exit and return the exit code (panics if killed by a signal).
    pub fn wait_exit_code(&mut self, timeout: Duration) -> i32 {
        let st = self.wait_exit(timeout);
        st.code().unwrap_or_else(|| {
            let diag = self.diagnostics();
            panic!("{}: killed by a signal ({st:?})\n{}", self.name, diag)
        })
    }

    /// SIGTERM (then SIGKILL after [`TERM_GRACE`]) this process, and collect its output.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let st = stop_child(&mut self.child, TERM_GRACE);
        self.status = st.or(self.status);
        self.drain_stdout();
        self.status
    }

    fn drain_stdout(&mut self) {
        // The reader ends at EOF once the process (and anything holding its stdout) is gone.
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.disconnected && Instant::now() < deadline {
            self.pump(Duration::from_millis(50));
        }
        if self.disconnected {
            if let Some(h) = self.reader.take() {
                let _ = h.join();
            }
        }
    }

    /// Command line, events and the tail of stderr, for failure messages.
    pub fn diagnostics(&mut self) -> String {
        while self.pump(Duration::ZERO) {}
        let mut s = format!("command: termphone {}\nevents:\n", self.args.join(" "));
        for ev in &self.history {
            s.push_str(&format!("  {ev}\n"));
        }
        s.push_str(&format!(
            "stderr ({}):\n{}\n",
            self.stderr_path.display(),
            tail_file(&self.stderr_path, 8000)
        ));
        s
    }
}

impl Termphone {
    /// Where a registered secret (see [`register_secret`]) appears in this process's output:
    /// `(label, "stderr" | "events" | "log")`.
    pub fn leaked_secret(&mut self) -> Option<(String, &'static str)> {
        let events: String = self.events().iter().map(|e| format!("{e}\n")).collect();
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        [(self.stderr(), "stderr"), (events, "events"), (log, "log")]
            .into_iter()
            .find_map(|(text, place)| find_secret(&text).map(|label| (label, place)))
    }
}

impl Drop for Termphone {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            let _ = stop_child(&mut self.child, TERM_GRACE);
        }
        if std::thread::panicking() {
            let diag = self.diagnostics();
            eprintln!("---- {} ----\n{diag}", self.name);
            return;
        }
        if let Some((label, place)) = self.leaked_secret() {
            panic!(
                "{}: the password of {label} appears in its {place} (kept in {})",
                self.name,
                self.dir.path().display()
            );
        }
    }
}
