//! [`Linphone`]: a real linphone (Debian `linphone-cli`, `linphonec` 5.1) as a headless peer UA
//! on 127.0.0.1, driven through its stdin like a person at its `linphonec>` prompt.
//!
//! Setup (all in the test's temp dir):
//! - `HOME` is a fresh directory (linphonec writes `~/.local/share/linphone/linphone.db` and
//!   rewrites its rc file with every default it uses);
//! - the rc file: `[sip] sip_port=PORT bind_address=127.0.0.1`, no TCP/TLS (port 0; -1 would
//!   mean a random port), `use_info` as asked
//!   (DTMF as SIP INFO `application/dtmf-relay` instead of RFC 4733), no video, no IPv6, RTP
//!   ports from a range, `contact=sip:NAME@127.0.0.1`;
//! - with [`LinphoneOpts::account`]: a `[proxy_0]` (registrar/proxy, identity, expires,
//!   `reg_sendregister=1`; the default proxy, so calls go through it) and an `[auth_info_0]`
//!   (username, password, realm) for its challenges; `[sip] supported=replaces` (no GRUU: the
//!   test registrar does not route in-dialog requests to a GRUU Contact). linphonec prints
//!   nothing when it registers; its log says `to [LinphoneRegistrationOk]`;
//! - no sound card: the first command is `soundcard use files` (wav files instead of a sound
//!   device), so no PulseAudio is needed;
//! - `linphonec -c RC -d 6 -l LOG` (`-a` for auto-answer): the log holds liblinphone's debug
//!   output with every SIP message.
//!
//! Its stdout (call progress lines such as `Call 1 with sip:... connected.`, `Receiving tone 5
//! from ...`, command answers) is read line by line on a thread, with the `linphonec> ` prompt
//! stripped; [`Linphone::wait_line`] waits for a line matching a predicate and panics with the
//! output's tail and the log's tail. [`Linphone::stop`] sends `quit`, waits, then stops its own
//! PID ([`super::stop_child`]).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{free_udp_port, next_seq, stop_child, tail_file, TestDir};

/// The prompt linphonec prints (without a newline) before reading a command.
const PROMPT: &str = "linphonec> ";

/// True when `linphonec` is installed (`linphonec -v` runs).
pub fn linphone_available() -> bool {
    Command::new("linphonec")
        .arg("-v")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Skip (return true, with a NOT RUN note) when linphonec is missing; on CI (`CI` set) a
/// missing linphonec is a failure instead.
pub fn skip_without_linphone() -> bool {
    if linphone_available() {
        return false;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "linphonec is not installed: install the Debian package linphone-cli \
         (scripts/install-deps.sh)"
    );
    eprintln!("NOT RUN: linphonec (Debian linphone-cli) is not installed");
    true
}

/// How to start a [`Linphone`].
#[derive(Clone, Debug)]
pub struct LinphoneOpts {
    /// The user part of its identity (`contact=sip:NAME@127.0.0.1`).
    pub name: String,
    /// Send DTMF as SIP INFO (`[sip] use_info=1`, `use_rfc2833=0`).
    pub use_info: bool,
    /// Answer incoming calls at once (`-a`).
    pub autoanswer: bool,
    /// Register at a proxy and place calls through it (`[proxy_0]` and `[auth_info_0]`).
    pub account: Option<LinphoneAccount>,
}

/// An account of linphone's at a registrar/proxy: written into its rc file as `[proxy_0]`
/// (`reg_proxy`, `reg_identity`, `reg_expires`, `reg_sendregister=1`, the default proxy) and
/// `[auth_info_0]` (`username`, `passwd`, `realm`, `domain`). Calls then go through the proxy,
/// with the identity as From, and its challenges are answered with these credentials.
#[derive(Clone, Debug)]
pub struct LinphoneAccount {
    /// The proxy's URI, e.g. `sip:127.0.0.1:5070`.
    pub proxy: String,
    /// The user part of the identity and the digest username.
    pub username: String,
    /// The identity's domain and the digest realm (e.g. `127.0.0.1`).
    pub domain: String,
    /// The digest password (only in the rc file).
    pub password: String,
    /// `reg_expires` in seconds.
    pub expires: u32,
}

impl LinphoneAccount {
    /// `sip:USERNAME@DOMAIN`.
    pub fn identity(&self) -> String {
        format!("sip:{}@{}", self.username, self.domain)
    }
}

impl Default for LinphoneOpts {
    fn default() -> Self {
        LinphoneOpts {
            name: "linphone".into(),
            use_info: false,
            autoanswer: false,
            account: None,
        }
    }
}

impl LinphoneOpts {
    /// Its identity's user part.
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }
    /// DTMF by SIP INFO.
    pub fn use_info(mut self, on: bool) -> Self {
        self.use_info = on;
        self
    }
    /// Auto-answer.
    pub fn autoanswer(mut self, on: bool) -> Self {
        self.autoanswer = on;
        self
    }
    /// Register at a proxy and call through it.
    pub fn account(mut self, account: LinphoneAccount) -> Self {
        self.account = Some(account);
        self
    }
}

/// One row of linphonec's `calls` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinphoneCall {
    /// linphonec's call id (what `terminate`, `transfer`, `pause` take).
    pub id: u32,
    /// The remote address as linphonec shows it.
    pub remote: String,
    /// liblinphone's call state name (`StreamsRunning`, `Paused`, ...).
    pub state: String,
}

/// A running linphonec (see the module docs).
pub struct Linphone {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
    dir: Arc<TestDir>,
    base: PathBuf,
    log_path: PathBuf,
    sip_port: u16,
    name: String,
}

impl Linphone {
    /// Start linphonec in a subdirectory of `dir` with `opts`; returns once it has taken its
    /// first command (`soundcard use files`) and listens on its SIP port. Panics with its
    /// output if it does not within 20 s.
    pub fn start(dir: &Arc<TestDir>, opts: LinphoneOpts) -> Linphone {
        assert!(
            linphone_available(),
            "linphonec not found: install the Debian package linphone-cli \
             (scripts/install-deps.sh)"
        );
        let mut last = String::new();
        // A free port can be taken before linphonec binds it: then try another one.
        for _ in 0..3 {
            let mut lp = Self::launch(dir, &opts);
            if lp.bound(Duration::from_secs(20)) {
                return lp;
            }
            last = lp.diagnostics();
            lp.stop();
        }
        panic!("linphonec did not start listening on 127.0.0.1\n{last}");
    }

    fn launch(dir: &Arc<TestDir>, opts: &LinphoneOpts) -> Linphone {
        let base = dir
            .path()
            .join(format!("linphone-{}-{}", opts.name, next_seq()));
        let home = base.join("home");
        std::fs::create_dir_all(home.join(".local/share/linphone")).expect("create linphone home");
        let sip_port = free_udp_port();
        let rc = base.join("linphonerc");
        let info = u8::from(opts.use_info);
        let rc_text = format!(
            "[sip]\n\
             sip_port={sip_port}\n\
             sip_tcp_port=0\n\
             sip_tls_port=0\n\
             bind_address=127.0.0.1\n\
             guess_hostname=0\n\
             contact=sip:{name}@127.0.0.1\n\
             use_info={info}\n\
             use_rfc2833={rfc}\n\
             inc_timeout=60\n\
             {default_proxy}\
             [net]\n\
             ipv6=0\n\
             firewall_policy=0\n\
             [rtp]\n\
             audio_rtp_port=20000-40000\n\
             [video]\n\
             enabled=0\n\
             display=0\n\
             capture=0\n",
            name = opts.name,
            rfc = 1 - info,
            default_proxy = if opts.account.is_some() {
                // No GRUU (its Contact would be `sip:a@127.0.0.1;gr=...`: the test registrar
                // does not route in-dialog requests by GRUU, so they went to port 5060).
                "default_proxy=0\nsupported=replaces\n"
            } else {
                ""
            },
        );
        let rc_text = match &opts.account {
            None => rc_text,
            Some(a) => format!(
                "{rc_text}\
                 [proxy_0]\n\
                 reg_proxy={proxy}\n\
                 reg_identity={identity}\n\
                 reg_expires={expires}\n\
                 reg_sendregister=1\n\
                 publish=0\n\
                 dial_escape_plus=0\n\
                 [auth_info_0]\n\
                 username={user}\n\
                 passwd={password}\n\
                 realm={domain}\n\
                 domain={domain}\n",
                proxy = a.proxy,
                identity = a.identity(),
                expires = a.expires,
                user = a.username,
                password = a.password,
                domain = a.domain,
            ),
        };
        std::fs::write(&rc, rc_text).expect("write linphonerc");
        let log_path = base.join("linphone.log");
        let out_path = base.join("linphonec.stdout");
        let err = std::fs::File::create(base.join("linphonec.stderr")).expect("create stderr");
        let mut cmd = Command::new("linphonec");
        cmd.arg("-c")
            .arg(&rc)
            .arg("-d")
            .arg("6")
            .arg("-l")
            .arg(&log_path);
        if opts.autoanswer {
            cmd.arg("-a");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .current_dir(&base)
            .env("HOME", &home)
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .spawn()
            .unwrap_or_else(|e| panic!("spawn linphonec: {e}"));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::Builder::new()
            .name(format!("linphonec-{}-stdout", opts.name))
            .spawn(move || {
                let mut copy = std::fs::File::create(&out_path).ok();
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(f) = copy.as_mut() {
                        let _ = writeln!(f, "{line}");
                    }
                    let mut text = line.as_str();
                    while let Some(rest) = text.strip_prefix(PROMPT) {
                        text = rest;
                    }
                    let text = text.trim_end().to_owned();
                    if !text.is_empty() {
                        sink.lock().unwrap_or_else(|e| e.into_inner()).push(text);
                    }
                }
            })
            .expect("spawn linphonec reader");
        let mut lp = Linphone {
            child: Some(child),
            stdin: Some(stdin),
            lines,
            dir: Arc::clone(dir),
            base,
            log_path,
            sip_port,
            name: opts.name.clone(),
        };
        lp.send("soundcard use files");
        lp
    }

    /// Wait until it took `soundcard use files` (its core is up by then) and its log says it
    /// bound its UDP SIP port (false when the bind failed or it exited).
    fn bound(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        if self
            .try_wait_line(
                0,
                |l| l.contains("Using wav files instead of soundcard"),
                timeout,
            )
            .is_none()
        {
            return false;
        }
        let point = format!("on [sip:127.0.0.1:{};transport=UDP]", self.sip_port);
        super::wait_until(deadline.saturating_duration_since(Instant::now()), || {
            if !self.is_running() {
                return Some(false);
            }
            let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
            if log.contains("udp bind() failed") {
                return Some(false);
            }
            log.lines()
                .any(|l| l.contains("Creating listening point") && l.contains(&point))
                .then_some(true)
        })
        .unwrap_or(false)
    }

    /// Its SIP URI for user `user`: `sip:USER@127.0.0.1:PORT`.
    pub fn sip_uri(&self, user: &str) -> String {
        format!("sip:{user}@127.0.0.1:{}", self.sip_port)
    }

    /// Its SIP port on 127.0.0.1.
    pub fn sip_port(&self) -> u16 {
        self.sip_port
    }

    /// Its directory (rc file, home, log, stdout copy).
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// The test dir it lives in.
    pub fn dir_handle(&self) -> Arc<TestDir> {
        Arc::clone(&self.dir)
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Type one command line at its prompt.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("linphonec stdin is open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("write to linphonec: {e}"));
    }

    /// How many output lines it printed so far (a mark for [`Linphone::wait_line_from`]).
    pub fn mark(&self) -> usize {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Every output line so far (prompt stripped).
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The first output line from index `from` on matching `pred`, waiting up to `timeout`.
    pub fn try_wait_line(
        &self,
        from: usize,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Option<String> {
        super::wait_until(timeout, || {
            let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
            lines.iter().skip(from).find(|l| pred(l)).cloned()
        })
    }

    /// Like [`Linphone::try_wait_line`], but panics with its output and log on timeout.
    pub fn wait_line_from(
        &mut self,
        from: usize,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> String {
        match self.try_wait_line(from, pred, timeout) {
            Some(l) => l,
            None => panic!(
                "linphonec {}: no matching output line within {timeout:?}\n{}",
                self.name,
                self.diagnostics()
            ),
        }
    }

    /// The first output line (since it started) matching `pred`; panics on timeout.
    pub fn wait_line(&mut self, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
        self.wait_line_from(0, pred, timeout)
    }

    /// Its calls, from the `calls` command's table (`Id | Destination | State | Flags`).
    pub fn calls(&mut self) -> Vec<LinphoneCall> {
        let from = self.mark();
        self.send("calls");
        // `ports` prints a known line after the table (or after "No active call."), so we know
        // the table is complete.
        self.send("ports");
        self.wait_line_from(
            from,
            |l| l.starts_with("sip port = "),
            Duration::from_secs(10),
        );
        let lines = self.lines();
        let mut calls = Vec::new();
        for l in lines.iter().skip(from) {
            if l.starts_with("sip port = ") {
                break;
            }
            let cols: Vec<&str> = l.split('|').map(str::trim).collect();
            if cols.len() < 3 {
                continue;
            }
            if let Ok(id) = cols[0].parse::<u32>() {
                calls.push(LinphoneCall {
                    id,
                    remote: cols[1].to_owned(),
                    state: cols[2].to_owned(),
                });
            }
        }
        calls
    }

    /// The ids of its calls (`calls`).
    pub fn call_ids(&mut self) -> Vec<u32> {
        self.calls().iter().map(|c| c.id).collect()
    }

    /// Poll `calls` every 200 ms until `pred` holds for the table; panics with the last table
    /// and the output after `timeout`.
    pub fn wait_calls(
        &mut self,
        what: &str,
        pred: impl Fn(&[LinphoneCall]) -> bool,
        timeout: Duration,
    ) -> Vec<LinphoneCall> {
        let deadline = Instant::now() + timeout;
        loop {
            let calls = self.calls();
            if pred(&calls) {
                return calls;
            }
            if Instant::now() >= deadline {
                panic!(
                    "linphonec {}: calls never became {what} within {timeout:?}; last: {calls:?}\n{}",
                    self.name,
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The SIP messages and debug output of liblinphone so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// Its output and the tail of its log, for failure messages.
    pub fn diagnostics(&self) -> String {
        let lines = self.lines();
        let start = lines.len().saturating_sub(60);
        format!(
            "linphonec output ({}):\n{}\nlog tail ({}):\n{}\n",
            self.base.display(),
            lines[start..].join("\n"),
            self.log_path.display(),
            tail_file(&self.log_path, 6000)
        )
    }

    /// `quit`, wait up to 5 s, then SIGTERM/SIGKILL its own PID. No-op when stopped.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"quit\n").and_then(|()| stdin.flush());
            // stdin closes here: linphonec also quits at EOF.
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        stop_child(&mut child, super::TERM_GRACE);
    }
}

impl Drop for Linphone {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- linphonec {} ----\n{}", self.name, self.diagnostics());
        }
        self.stop();
    }
}
