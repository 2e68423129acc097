//! Control socket helpers: a line-based test client over a std `UnixStream` ([`CtlClient`]),
//! `serve` with its control socket in the test's dir ([`serve_with_control`]), and running the
//! real `termphone` CLI with a deadline ([`run_termphone`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{next_seq, stop_child, Termphone, TermphoneBuilder, TestDir, TERM_GRACE};

/// `serve ARGS --control DIR/serve-N.sock` (plus the builder's defaults) in `dir`; returns the
/// instance and the socket path once the socket is there (its `control` event).
pub fn serve_with_control(dir: &Arc<TestDir>, args: &[&str]) -> (Termphone, PathBuf) {
    let path = dir.path().join(format!("serve-{}.sock", next_seq()));
    let mut sub = vec!["serve".to_string()];
    sub.extend(args.iter().map(|s| s.to_string()));
    sub.push("--control".into());
    sub.push(path.display().to_string());
    let mut tp = TermphoneBuilder::new(&sub).dir(Arc::clone(dir)).spawn();
    let ev = tp.wait_event(|e| e["event"] == "control", Duration::from_secs(10));
    assert_eq!(ev["path"], path.display().to_string(), "{ev}");
    (tp, path)
}

/// A control client: requests and responses in order; events kept until waited for.
pub struct CtlClient {
    stream: UnixStream,
    rx: Receiver<Value>,
    pending: Vec<Value>,
    closed: bool,
    next_id: u64,
}

impl CtlClient {
    /// Connect to `path` (panics if it cannot).
    pub fn connect(path: &Path) -> CtlClient {
        let stream =
            UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
        let reader = stream.try_clone().expect("clone stream");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                let v = serde_json::from_str::<Value>(&line)
                    .unwrap_or_else(|_| json!({ "_non_json": line }));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        CtlClient {
            stream,
            rx,
            pending: Vec::new(),
            closed: false,
            next_id: 1,
        }
    }

    /// Send raw bytes (a newline is not added).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .expect("write to the control socket");
    }

    /// Send one line (a newline is added) and return the next response (not an event).
    pub fn line(&mut self, line: &str) -> Value {
        self.send_raw(format!("{line}\n").as_bytes());
        self.response(Duration::from_secs(20))
    }

    /// Send `request` with a fresh numeric `id` (unless it has one) and return its response,
    /// checking the id is echoed.
    pub fn request(&mut self, mut request: Value) -> Value {
        if request.get("id").is_none() {
            request["id"] = json!(self.next_id);
            self.next_id += 1;
        }
        let r = self.line(&request.to_string());
        assert_eq!(r["id"], request["id"], "id echoed: {request} -> {r}");
        r
    }

    /// Like [`CtlClient::request`], and panics unless the response is ok.
    pub fn ok(&mut self, request: Value) -> Value {
        let r = self.request(request.clone());
        assert_eq!(r["ok"], true, "{request} -> {r}");
        r
    }

    /// Like [`CtlClient::request`], and returns the error (panics on success).
    pub fn error(&mut self, request: Value) -> String {
        let r = self.request(request.clone());
        assert_eq!(r["ok"], false, "{request} -> {r}");
        r["error"].as_str().expect("error string").to_string()
    }

    /// The next line that is not an event.
    pub fn response(&mut self, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(v) if v.get("event").is_some() => self.pending.push(v),
                Ok(v) => return v,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no response within {timeout:?}; events: {:?}", self.pending)
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.closed = true;
                    panic!(
                        "the server closed the connection; events: {:?}",
                        self.pending
                    )
                }
            }
        }
    }

    /// The first event (not yet taken) that matches, waiting up to `timeout`.
    pub fn wait_event(&mut self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.pending.iter().position(&pred) {
                return self.pending.remove(i);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(v) => self.pending.push(v),
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no matching event within {timeout:?}; events: {:?}",
                        self.pending
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("connection closed; events: {:?}", self.pending)
                }
            }
        }
    }

    /// Wait for a call event of `call` in `state`.
    pub fn wait_call(&mut self, call: &str, state: &str, timeout: Duration) -> Value {
        self.wait_event(
            |e| e["event"] == "call" && e["call"] == call && e["state"] == state,
            timeout,
        )
    }

    /// True once the server has closed the connection (everything it sent is read first).
    pub fn wait_closed(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.rx.recv_timeout(left) {
                Ok(v) => self.pending.push(v),
                Err(RecvTimeoutError::Timeout) => return false,
                Err(RecvTimeoutError::Disconnected) => self.closed = true,
            }
        }
        true
    }

    /// Events received and not taken yet.
    pub fn pending(&self) -> &[Value] {
        &self.pending
    }
}

impl Drop for CtlClient {
    fn drop(&mut self) {
        // Ends the reader thread too (it holds a clone of the socket).
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// Read from a raw stream until EOF (true) or `timeout` (false), discarding the data.
pub fn read_to_eof(stream: &mut UnixStream, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Run `termphone ARGS` (no defaults added) with `env`, stdin closed, and wait up to
/// `timeout` for it to exit (then it is stopped by its PID and this panics).
pub fn run_termphone(args: &[&str], env: &[(&str, &Path)], timeout: Duration) -> Output {
    let program = std::env::var_os("TERMPHONE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_termphone")));
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env(
            "DBUS_SESSION_BUS_ADDRESS",
            "unix:path=/nonexistent/termphone-test-bus",
        );
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn termphone");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = stop_child(&mut child, TERM_GRACE);
            panic!("termphone {args:?} did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}
