//! Runs sipp (Debian `sip-tester`, 3.6.1 with PCAP play) as a peer on 127.0.0.1, one call.
//!
//! sipp runs in the foreground (never `-bg`, so we know its PID), with `-nostdin`, its cwd at
//! the package root (scenarios name their pcaps as `tests/data/...`), and all its traces in the
//! test's temp dir. Drop stops it (SIGTERM, then SIGKILL, its own PID only).

use super::{next_seq, repo_path, stop_child, tail_file, test_dir, TERM_GRACE};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Absolute path of a scenario in `tests/sipp/`.
pub fn scenario(name: &str) -> PathBuf {
    repo_path("tests/sipp").join(name)
}

/// True if some socket is bound to UDP 127.0.0.1:`port` (read from /proc/net/udp, so the
/// check never takes the port itself).
pub fn udp_port_bound(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/udp").is_ok_and(|t| {
        t.lines()
            .skip(1)
            .any(|l| l.split_whitespace().nth(1) == Some(want.as_str()))
    })
}

/// True if a `sipp` binary is on PATH (tests may skip with a message when it is not).
pub fn sipp_available() -> bool {
    Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// True if sipp may play pcaps here: its `play_pcap_audio` opens a raw socket, so it needs
/// root or CAP_NET_RAW (`setcap cap_net_raw+ep /usr/bin/sipp`, then set SIPP_PCAP=1).
pub fn pcap_play_allowed() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root || std::env::var_os("SIPP_PCAP").is_some()
}

/// Message for a test that cannot play pcaps here.
pub const PCAP_NEEDS_ROOT: &str = "sipp's play_pcap_audio needs root or CAP_NET_RAW \
     (run as root, or `setcap cap_net_raw+ep $(command -v sipp)` and set SIPP_PCAP=1)";

enum Scen {
    File(PathBuf),
    Builtin(String),
}

/// Builder for one sipp run.
pub struct SippBuilder {
    scen: Scen,
    remote: Option<SocketAddr>,
    port: Option<u16>,
    media_port: Option<u16>,
    keys: Vec<(String, String)>,
    extra: Vec<String>,
    timeout: Duration,
    dir: Option<Arc<super::TestDir>>,
}

impl SippBuilder {
    /// Set a `[keyword]` of the scenario (`-key NAME VALUE`).
    pub fn key(mut self, name: &str, value: impl ToString) -> Self {
        self.keys.push((name.to_owned(), value.to_string()));
        self
    }
    /// The SIP port sipp listens on (`-p`); default: a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
    /// sipp's media port (`-mp`, the source port of pcap playback); default: a free one.
    pub fn media_port(mut self, port: u16) -> Self {
        self.media_port = Some(port);
        self
    }
    /// Where to send the INVITE (UAC scenarios).
    pub fn remote(mut self, addr: SocketAddr) -> Self {
        self.remote = Some(addr);
        self
    }
    /// Any other sipp argument.
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.extra.push(a.into());
        self
    }
    /// sipp's global `-timeout` (it fails when reached); default 60 s.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
    /// Put traces in this temp dir (shared with other processes of the test).
    pub fn dir(mut self, dir: Arc<super::TestDir>) -> Self {
        self.dir = Some(dir);
        self
    }

    /// Start sipp.
    pub fn spawn(self) -> Sipp {
        if let Scen::File(path) = &self.scen {
            let text = std::fs::read_to_string(path)
                .unwrap_or_else(|e| panic!("read scenario {}: {e}", path.display()));
            if text.contains("play_pcap_audio") && !pcap_play_allowed() {
                panic!("{}: {PCAP_NEEDS_ROOT}", path.display());
            }
        }
        let dir = self.dir.unwrap_or_else(test_dir);
        let n = next_seq();
        let label = match &self.scen {
            Scen::File(p) => p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            Scen::Builtin(s) => format!("builtin-{s}"),
        };
        let name = format!("sipp-{label}-{n}");
        let port = self.port.unwrap_or_else(super::free_udp_port);
        let media_port = self.media_port.unwrap_or_else(super::free_udp_port_pair);
        let p = |suffix: &str| dir.path().join(format!("{name}{suffix}"));
        let (stdout_path, messages, errors, logs, screen) = (
            p(".stdout"),
            p("_messages.log"),
            p("_errors.log"),
            p("_logs.log"),
            p("_screen.log"),
        );
        let mut args: Vec<String> = Vec::new();
        if let Some(r) = self.remote {
            args.push(r.to_string());
        }
        match &self.scen {
            Scen::File(path) => {
                args.push("-sf".into());
                args.push(path.display().to_string());
            }
            Scen::Builtin(s) => {
                args.push("-sn".into());
                args.push(s.clone());
            }
        }
        for a in [
            "-i",
            "127.0.0.1",
            "-mi",
            "127.0.0.1",
            "-t",
            "u1",
            "-m",
            "1",
            "-nostdin",
            "-trace_msg",
            "-trace_err",
            "-trace_logs",
            "-trace_screen",
            "-timeout_error",
        ] {
            args.push(a.into());
        }
        let paths = [
            ("-p", port.to_string()),
            ("-mp", media_port.to_string()),
            ("-message_file", messages.display().to_string()),
            ("-error_file", errors.display().to_string()),
            ("-log_file", logs.display().to_string()),
            ("-screen_file", screen.display().to_string()),
            ("-timeout", format!("{}s", self.timeout.as_secs().max(1))),
        ];
        for (k, v) in paths {
            args.push(k.into());
            args.push(v);
        }
        for (k, v) in &self.keys {
            args.push("-key".into());
            args.push(k.clone());
            args.push(v.clone());
        }
        args.extend(self.extra);
        let out = std::fs::File::create(&stdout_path).expect("create sipp stdout file");
        let err = out.try_clone().expect("clone file");
        let mut child = Command::new("sipp")
            .args(&args)
            .current_dir(repo_path(""))
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn sipp {args:?}: {e} (is sip-tester installed?)"));
        // Wait until sipp has bound its SIP port, so that a peer started right after this
        // (termphone dial) does not lose its first INVITE to a socket that is not there yet
        // (it would only arrive with the 500 ms retransmission, skewing timing checks).
        let deadline = Instant::now() + Duration::from_secs(10);
        while !udp_port_bound(port) && Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                break; // exited (fatal error): expect_success reports it with the traces
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Sipp {
            child,
            name,
            args,
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            media_port,
            stdout_path,
            messages,
            errors,
            logs,
            code: None,
        }
    }
}

/// A running sipp.
pub struct Sipp {
    child: Child,
    name: String,
    args: Vec<String>,
    dir: Arc<super::TestDir>,
    addr: SocketAddr,
    media_port: u16,
    stdout_path: PathBuf,
    messages: PathBuf,
    errors: PathBuf,
    logs: PathBuf,
    code: Option<Option<i32>>,
}

impl Sipp {
    /// A UAS scenario file from `tests/sipp/` (sipp waits for an INVITE).
    pub fn uas(scenario_name: &str) -> SippBuilder {
        Self::file(scenario(scenario_name))
    }

    /// A UAC scenario file from `tests/sipp/`, calling `remote`.
    pub fn uac(scenario_name: &str, remote: SocketAddr) -> SippBuilder {
        Self::file(scenario(scenario_name)).remote(remote)
    }

    /// Any scenario file.
    pub fn file(path: PathBuf) -> SippBuilder {
        SippBuilder {
            scen: Scen::File(path),
            remote: None,
            port: None,
            media_port: None,
            keys: Vec::new(),
            extra: Vec::new(),
            timeout: Duration::from_secs(60),
            dir: None,
        }
    }

    /// One of sipp's built-in scenarios (`-sn uas`, `-sn uac`, ...).
    pub fn builtin(name: &str) -> SippBuilder {
        let mut b = Self::file(PathBuf::new());
        b.scen = Scen::Builtin(name.to_owned());
        b
    }

    /// sipp's SIP address (127.0.0.1:`-p`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A URI that reaches sipp: `sip:USER@127.0.0.1:PORT`.
    pub fn uri(&self, user: &str) -> String {
        format!("sip:{user}@{}", self.addr)
    }

    /// sipp's media port (source of its pcap playback).
    pub fn media_port(&self) -> u16 {
        self.media_port
    }

    /// The test's temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Wait for sipp to exit; returns its exit code (0: the call passed; 1: it failed;
    /// -1/255, -2/254: fatal). Panics after `timeout` with the traces.
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(code) = self.try_exit() {
                return code.unwrap_or(-1000);
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}: did not exit within {timeout:?}\n{}",
                    self.name,
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait for exit and panic (with traces) unless sipp reports the call passed (exit 0).
    pub fn expect_success(&mut self, timeout: Duration) {
        let code = self.wait_exit(timeout);
        assert_eq!(
            code,
            0,
            "{}: sipp exit code {code}\n{}",
            self.name,
            self.diagnostics()
        );
    }

    /// Exit code if exited (None inside: killed by a signal).
    pub fn try_exit(&mut self) -> Option<Option<i32>> {
        if self.code.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.code = Some(st.code());
            }
        }
        self.code
    }

    /// The SIP messages sipp sent and received (`-trace_msg`).
    pub fn messages(&self) -> String {
        std::fs::read_to_string(&self.messages).unwrap_or_default()
    }

    /// Unexpected messages and errors (`-trace_err`).
    pub fn errors(&self) -> String {
        std::fs::read_to_string(&self.errors).unwrap_or_default()
    }

    /// Output of `<log>` actions (`-trace_logs`).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.logs).unwrap_or_default()
    }

    /// Command line, stdout, errors and the message trace tail.
    pub fn diagnostics(&self) -> String {
        format!(
            "command: sipp {}\n--- stdout/stderr ---\n{}\n--- errors ---\n{}\n--- messages (tail) ---\n{}\n",
            self.args.join(" "),
            tail_file(&self.stdout_path, 3000),
            tail_file(&self.errors, 4000),
            tail_file(&self.messages, 8000)
        )
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            let _ = stop_child(&mut self.child, TERM_GRACE);
        }
        if std::thread::panicking() {
            eprintln!("---- {} ----\n{}", self.name, self.diagnostics());
        }
    }
}

/// One SIP message from sipp's `-trace_msg` log.
#[derive(Debug, Clone, PartialEq)]
pub struct TracedMessage {
    /// True if sipp sent it, false if sipp received it.
    pub sent: bool,
    /// "INVITE sip:... SIP/2.0" or "SIP/2.0 180 Ringing".
    pub start_line: String,
    /// Header lines in order, names as written.
    pub headers: Vec<(String, String)>,
    /// Everything after the blank line.
    pub body: String,
    /// When sipp logged it: seconds since midnight from the trace's timestamp line (for
    /// intervals between messages of one trace), if it could be read.
    pub at: Option<f64>,
}

impl TracedMessage {
    /// First value of a header (case-insensitive; compact forms v f t i m l c k s e are accepted).
    pub fn header(&self, name: &str) -> Option<&str> {
        let long = |n: &str| -> String {
            let n = n.to_ascii_lowercase();
            let full = match n.as_str() {
                "v" => "via",
                "f" => "from",
                "t" => "to",
                "i" => "call-id",
                "m" => "contact",
                "l" => "content-length",
                "c" => "content-type",
                "k" => "supported",
                "s" => "subject",
                "e" => "content-encoding",
                other => other,
            };
            full.to_owned()
        };
        let want = long(name);
        self.headers
            .iter()
            .find(|(n, _)| long(n) == want)
            .map(|(_, v)| v.as_str())
    }

    /// Response status code, if a response.
    pub fn status(&self) -> Option<u16> {
        let rest = self.start_line.strip_prefix("SIP/2.0 ")?;
        rest.split_whitespace().next()?.parse().ok()
    }

    /// Request method, if a request.
    pub fn request_method(&self) -> Option<&str> {
        if self.start_line.starts_with("SIP/") {
            return None;
        }
        self.start_line.split_whitespace().next()
    }

    /// CSeq (number, method).
    pub fn cseq(&self) -> Option<(u32, String)> {
        let v = self.header("CSeq")?;
        let mut it = v.split_whitespace();
        Some((it.next()?.parse().ok()?, it.next()?.to_owned()))
    }

    /// The branch parameter of the top Via.
    pub fn branch(&self) -> Option<String> {
        let via = self.header("Via")?;
        let top = via.split(',').next()?;
        top.split(';')
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| k.eq_ignore_ascii_case("branch"))
            .map(|(_, v)| v.trim().to_owned())
    }
}

/// Parse sipp's `-trace_msg` log into messages.
pub fn parse_trace(text: &str) -> Vec<TracedMessage> {
    let mut out = Vec::new();
    for block in text.split("\n-----------------------------------------------") {
        let mut lines = block.lines();
        // first line: the rest of the dashes + timestamp; second: "UDP message sent/received ..."
        let mut sent = None;
        let mut at = None;
        for l in lines.by_ref() {
            if at.is_none() {
                at = trace_time(l);
            }
            if l.contains("message sent") {
                sent = Some(true);
                break;
            }
            if l.contains("message received") {
                sent = Some(false);
                break;
            }
        }
        let Some(sent) = sent else { continue };
        let mut lines = lines.skip_while(|l| l.trim().is_empty());
        let Some(start_line) = lines.next() else {
            continue;
        };
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut body = String::new();
        let mut in_body = false;
        for l in lines {
            if in_body {
                body.push_str(l.trim_end_matches('\r'));
                body.push('\n');
            } else if l.trim().is_empty() {
                in_body = true;
            } else if l.starts_with([' ', '\t']) {
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(l.trim());
                }
            } else if let Some((n, v)) = l.split_once(':') {
                headers.push((n.trim().to_owned(), v.trim().to_owned()));
            }
        }
        out.push(TracedMessage {
            sent,
            start_line: start_line.trim().to_owned(),
            headers,
            body,
            at,
        });
    }
    out
}

/// Seconds since midnight from a trace header line such as
/// `-------- 2026-11-25 09:30:36.033773` (the last `HH:MM:SS.ffffff` token).
fn trace_time(line: &str) -> Option<f64> {
    let tok = line.split_whitespace().last()?;
    let mut it = tok.split(':');
    let (h, m, sec) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() {
        return None;
    }
    let h: f64 = h.parse().ok()?;
    let m: f64 = m.parse().ok()?;
    let sec: f64 = sec.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + sec)
}

impl Sipp {
    /// The messages of `-trace_msg`, parsed.
    pub fn traced(&self) -> Vec<TracedMessage> {
        parse_trace(&self.messages())
    }

    /// The first traced message sipp received that is this request method.
    pub fn received_request(&self, method: &str) -> Option<TracedMessage> {
        self.traced()
            .into_iter()
            .find(|m| !m.sent && m.request_method() == Some(method))
    }
}
