//! [`Tmux`]: the real interactive phone (`termphone` with no subcommand) in a private tmux
//! server (Debian `tmux`), driven like a person at a terminal: `send-keys` to type,
//! `capture-pane` to read the screen.
//!
//! Each fixture is its own tmux server (`tmux -L UNIQUE -f /dev/null`, its socket under the
//! test's temp dir through `TMUX_TMPDIR`) with one 100x30 window. The pane runs a small shell
//! script (`sh FILE`) that starts termphone and, when it ends, prints
//!
//! ```text
//! TUI-EXITED <status>
//! STTY icanon echo ...      (the terminal modes termphone left behind, from `stty -a`)
//! ```
//!
//! writes the same two facts into a file (a program killed in raw mode leaves output
//! processing off, so on the screen those lines may land anywhere), and then sleeps, so the
//! pane and its last screen stay for the test to read. [`Tmux::wait_exit`] returns them.
//!
//! [`TuiBuilder`] starts termphone with `--listen 127.0.0.1:PORT`, `--control`, `--database`
//! and `--log-file` in the test's temp dir, and an environment that points HOME and every XDG
//! directory into that dir, `TERM=xterm-256color`, and the `PULSE_SERVER` of the headless
//! PulseAudio (scripts/headless-audio.sh).
//!
//! On drop: `kill-server`, then every process of the pane (the shell, termphone, the sleep)
//! and the tmux server itself, each by its own PID, get SIGKILL if they have not gone within
//! [`super::TERM_GRACE`]. When not unwinding from a failure, the drop also fails the test if a
//! registered secret ([`super::register_secret`]) appeared on any screen captured or in the
//! log file.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::kamailio::{child_pids, free_udp_tcp_port, pid_alive};
use super::{find_secret, next_seq, tail_file, TestDir};

/// Columns of every fixture's window.
pub const COLS: u16 = 100;
/// Rows of every fixture's window.
pub const ROWS: u16 = 30;

/// Key names [`Tmux::send_keys`] passes to tmux as keys, not as text (tmux's own names).
pub const NAMED_KEYS: &[&str] = &[
    "Enter", "Tab", "BTab", "Escape", "BSpace", "Space", "Up", "Down", "Left", "Right", "Home",
    "End", "PPage", "NPage", "DC", "IC", "F1", "F2", "F3", "F4", "F5", "F6", "F7", "F8", "F9",
    "F10", "F11", "F12", "C-c", "C-d", "C-u", "C-w",
];

/// True when a `tmux` binary runs (the Debian package `tmux`, scripts/install-deps.sh).
pub fn tmux_available() -> bool {
    Command::new("tmux")
        .arg("-V")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// How the program in the pane ended: the shell's `$?` and the terminal modes after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaneExit {
    /// `$?`: the exit code, or 128 + the signal that killed it.
    pub status: i32,
    /// The `stty -a` words of interest as printed (`icanon` or `-icanon`, `echo`, ...).
    pub stty: Vec<String>,
}

impl PaneExit {
    /// True when `stty -a` showed `word` set (without a leading `-`).
    pub fn mode_on(&self, word: &str) -> bool {
        self.stty.iter().any(|w| w == word)
    }
}

/// A private tmux server with one pane running a program (see the module docs).
pub struct Tmux {
    socket: String,
    dir: Arc<TestDir>,
    /// The log file of the program in the pane, whose tail failure messages show.
    log_file: Option<PathBuf>,
    /// Where the pane's script writes the exit status and the terminal modes (two lines).
    exit_file: Option<PathBuf>,
    /// The tmux server's PID.
    server_pid: Option<u32>,
    /// Every distinct screen captured so far (for the secret check at drop).
    seen: RefCell<Vec<String>>,
    /// The last screen captured, for failure messages.
    last: RefCell<String>,
}

impl Tmux {
    /// Start a tmux server whose one pane runs `sh FILE`, FILE holding `script` (written into
    /// the test's dir). `log_file`: its tail goes into failure messages. `exit_file`: where
    /// the script writes its program's status and the terminal modes (see the module docs).
    pub fn start(
        dir: Arc<TestDir>,
        script: &str,
        log_file: Option<PathBuf>,
        exit_file: Option<PathBuf>,
    ) -> Tmux {
        assert!(
            tmux_available(),
            "tmux not found on PATH: install the Debian package `tmux` (scripts/install-deps.sh)"
        );
        let n = next_seq();
        let socket = format!("tp{}-{n}", std::process::id());
        let script_path = dir.path().join(format!("pane-{n}.sh"));
        std::fs::write(&script_path, script).expect("write the pane script");
        let mut t = Tmux {
            socket,
            dir,
            log_file,
            exit_file,
            server_pid: None,
            seen: RefCell::default(),
            last: RefCell::default(),
        };
        let (cols, rows) = (COLS.to_string(), ROWS.to_string());
        let script_arg = script_path.display().to_string();
        let out = t.tmux(&[
            "new-session",
            "-d",
            "-s",
            "main",
            "-x",
            &cols,
            "-y",
            &rows,
            "sh",
            &script_arg,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t.server_pid = t.display("#{pid}").parse().ok();
        t
    }

    /// The test's temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Run a tmux command against this fixture's server (never any other).
    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("-f")
            .arg("/dev/null")
            .args(args)
            // A clean client and server: no $TMUX of a developer's session, no inherited
            // variables in the pane, the socket in the test's dir.
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("LANG", "C.UTF-8")
            .env("TMUX_TMPDIR", self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run tmux {args:?}: {e}"))
    }

    /// `display-message -p FORMAT` for the pane (e.g. `#{pane_pid}`, `#{alternate_on}`).
    pub fn display(&self, format: &str) -> String {
        let out = self.tmux(&["display-message", "-p", "-t", "main", format]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Resize the window (the program in it gets SIGWINCH, as when a terminal is resized).
    pub fn resize(&self, width: u16, height: u16) {
        let (w, h) = (width.to_string(), height.to_string());
        let out = self.tmux(&["resize-window", "-t", "main", "-x", &w, "-y", &h]);
        assert!(
            out.status.success(),
            "tmux resize-window: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Type: each item that is one of tmux's key names ([`NAMED_KEYS`]: `Enter`, `Tab`,
    /// `Escape`, `F2`, `Up`, ...) is sent as that key, anything else as literal text
    /// (`send-keys -l`).
    pub fn send_keys(&self, keys: &[&str]) {
        for k in keys {
            let out = if NAMED_KEYS.contains(k) {
                self.tmux(&["send-keys", "-t", "main", k])
            } else {
                self.tmux(&["send-keys", "-t", "main", "-l", k])
            };
            assert!(
                out.status.success(),
                "tmux send-keys {k:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// The screen now (`capture-pane -p`), one line per row.
    pub fn capture(&self) -> String {
        let out = self.tmux(&["capture-pane", "-p", "-t", "main"]);
        let screen = String::from_utf8_lossy(&out.stdout).into_owned();
        self.last.replace(screen.clone());
        let mut seen = self.seen.borrow_mut();
        if seen.last() != Some(&screen) {
            seen.push(screen.clone());
        }
        screen
    }

    /// Poll the screen every 50 ms until `pred` holds; returns that screen. On timeout panics
    /// with `what`, the last screen and the tail of the log file.
    pub fn wait_screen(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.capture();
            if pred(&s) {
                return s;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{what}: not on the screen within {timeout:?}\n{}",
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until `text` is on the screen; returns the screen.
    pub fn wait_for(&self, text: &str, timeout: Duration) -> String {
        self.wait_screen(&format!("{text:?}"), timeout, |s| s.contains(text))
    }

    /// The last screen and the tail of the log file, for failure messages.
    pub fn diagnostics(&self) -> String {
        let screen = self.last.borrow().clone();
        let mut s = format!(
            "---- screen (tmux -L {}) ----\n{screen}\n---- end of screen ----\n",
            self.socket
        );
        if let Some(log) = &self.log_file {
            s.push_str(&format!(
                "---- log {} (tail) ----\n{}\n",
                log.display(),
                tail_file(log, 6000)
            ));
        }
        s
    }

    /// PID of the pane's shell.
    pub fn pane_pid(&self) -> u32 {
        let text = self.display("#{pane_pid}");
        text.parse()
            .unwrap_or_else(|_| panic!("no pane pid from tmux: {text:?}"))
    }

    /// PID of the program the pane's shell runs (its child named `comm`), waiting up to 5 s.
    pub fn child_pid(&self, comm: &str) -> u32 {
        let sh = self.pane_pid();
        super::wait_until(Duration::from_secs(5), || {
            child_pids(sh).into_iter().find(|&p| {
                std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == comm)
            })
        })
        .unwrap_or_else(|| {
            panic!(
                "no process {comm:?} under the pane's shell {sh}\n{}",
                self.diagnostics()
            )
        })
    }

    /// Wait until the program in the pane has ended and the pane's script has reported it:
    /// the status and modes from its exit file, or, without one, from the screen's
    /// `TUI-EXITED` and `STTY` lines.
    pub fn wait_exit(&self, timeout: Duration) -> PaneExit {
        let from_file = || {
            let text = std::fs::read_to_string(self.exit_file.as_ref()?).ok()?;
            let mut lines = text.lines();
            let status = lines.next()?.trim().parse().ok()?;
            let stty = lines
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            Some(PaneExit { status, stty })
        };
        let screen = self.wait_screen("TUI-EXITED", timeout, |s| match &self.exit_file {
            Some(_) => from_file().is_some(),
            None => s.contains("TUI-EXITED ") && s.contains("STTY "),
        });
        from_file()
            .or_else(|| parse_exit(&screen))
            .unwrap_or_else(|| {
                panic!(
                    "cannot read the exit lines of the screen\n{}",
                    self.diagnostics()
                )
            })
    }

    /// Every distinct screen captured so far, in order.
    pub fn screens(&self) -> Vec<String> {
        self.seen.borrow().clone()
    }

    /// The pane's processes: its shell (or what it exec'd) and all its descendants.
    fn pane_processes(&self) -> Vec<u32> {
        let Ok(sh) = self.display("#{pane_pid}").parse::<u32>() else {
            return Vec::new();
        };
        let mut all = vec![sh];
        let mut i = 0;
        while i < all.len() {
            let kids = child_pids(all[i]);
            all.extend(kids);
            i += 1;
        }
        all
    }
}

/// `TUI-EXITED N` and `STTY ...` from a screen, searched anywhere in a line.
pub fn parse_exit(screen: &str) -> Option<PaneExit> {
    let status = screen.lines().find_map(|l| {
        let at = l.find("TUI-EXITED ")?;
        l[at + "TUI-EXITED ".len()..]
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })?;
    let stty = screen.lines().find_map(|l| {
        let at = l.find("STTY ")?;
        Some(
            l[at + "STTY ".len()..]
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        )
    })?;
    Some(PaneExit { status, stty })
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking {
            // The screen as it is now (a failed wait printed the one it gave up on).
            let _ = self.capture();
            eprintln!("{}", self.diagnostics());
        }
        let mut ours = self.pane_processes();
        let _ = self.tmux(&["kill-server"]);
        ours.extend(self.server_pid);
        // kill-server hangs up the pane (termphone quits on SIGHUP); whatever is left after
        // the grace time gets SIGKILL, by its own PID.
        let deadline = Instant::now() + super::TERM_GRACE;
        while Instant::now() < deadline && ours.iter().any(|&p| pid_alive(p)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        for p in ours {
            if pid_alive(p) {
                if let Ok(pid) = libc::pid_t::try_from(p) {
                    // SAFETY: kill(2) of a process of this fixture's own pane or server.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
        }
        if panicking {
            return;
        }
        let mut texts: Vec<(String, &str)> = self
            .seen
            .borrow()
            .iter()
            .map(|s| (s.clone(), "screen"))
            .collect();
        if let Some(log) = &self.log_file {
            texts.push((std::fs::read_to_string(log).unwrap_or_default(), "log file"));
        }
        for (text, place) in texts {
            if let Some(label) = find_secret(&text) {
                panic!(
                    "the password of {label} appears on the TUI's {place} (kept in {})",
                    self.dir.path().display()
                );
            }
        }
    }
}

/// Quote a string for sh (single quotes).
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The interactive phone in a [`Tmux`]: `termphone [--config C] --listen 127.0.0.1:PORT
/// --control SOCK --database DB --log-file LOG`.
pub struct TuiBuilder {
    dir: Arc<TestDir>,
    config: Option<PathBuf>,
    database: Option<PathBuf>,
    control: Option<PathBuf>,
    port: Option<u16>,
    args: Vec<String>,
    /// Run this instead of termphone (same environment and exit reporting).
    instead: Option<Instead>,
}

/// A program's argv and its extra environment (see [`TuiBuilder::instead`]).
type Instead = (Vec<String>, Vec<(String, String)>);

/// A running TUI: its tmux (also reachable through `Deref`), the SIP port it listens on,
/// its files.
pub struct Tui {
    pub tmux: Tmux,
    pub port: u16,
    pub database: PathBuf,
    pub log_file: PathBuf,
    pub control: PathBuf,
}

impl TuiBuilder {
    /// A TUI whose files go into `dir`.
    pub fn new(dir: Arc<TestDir>) -> TuiBuilder {
        TuiBuilder {
            dir,
            config: None,
            database: None,
            control: None,
            port: None,
            args: Vec::new(),
            instead: None,
        }
    }
    /// Run `argv` (with `env` added) in the pane instead of termphone, in the same
    /// environment and with the same exit report: for a program that uses the TUI's terminal
    /// code on its own (e.g. this test binary re-run to panic while it owns the terminal).
    pub fn instead(mut self, argv: Vec<String>, env: Vec<(String, String)>) -> Self {
        self.instead = Some((argv, env));
        self
    }
    /// `--config PATH` (default: none, so, with XDG_CONFIG_HOME in the temp dir, the
    /// built-in config: one serverless account that takes direct calls).
    pub fn config(mut self, path: impl Into<PathBuf>) -> Self {
        self.config = Some(path.into());
        self
    }
    /// The history database (default: `tui.db` in the temp dir).
    pub fn database(mut self, path: impl Into<PathBuf>) -> Self {
        self.database = Some(path.into());
        self
    }
    /// The control socket (default: `tui-N.sock` in the temp dir, a new one per start).
    pub fn control(mut self, path: impl Into<PathBuf>) -> Self {
        self.control = Some(path.into());
        self
    }
    /// Listen on this port (default: a free one).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
    /// One more argument, after the others.
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    /// Start it.
    pub fn start(self) -> Tui {
        let n = next_seq();
        let d = self.dir.path().to_path_buf();
        let home = d.join("home");
        let xdg = d.join("tui-xdg");
        let runtime = xdg.join("runtime");
        for p in [
            &home,
            &xdg.join("config"),
            &xdg.join("data"),
            &xdg.join("state"),
            &xdg.join("cache"),
            &runtime,
        ] {
            std::fs::create_dir_all(p).expect("create the TUI's dirs");
        }
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700))
                .expect("chmod the runtime dir");
        }
        let port = self.port.unwrap_or_else(free_udp_tcp_port);
        let database = self.database.unwrap_or_else(|| d.join("tui.db"));
        let log_file = d.join(format!("tui-{n}.log"));
        let control = self
            .control
            .unwrap_or_else(|| d.join(format!("tui-{n}.sock")));
        let exit_file = d.join(format!("tui-{n}.exit"));
        let program = std::env::var_os("TERMPHONE_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_termphone")));
        let mut args: Vec<String> = Vec::new();
        if let Some(c) = &self.config {
            args.push("--config".into());
            args.push(c.display().to_string());
        }
        args.extend([
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--control".into(),
            control.display().to_string(),
            "--database".into(),
            database.display().to_string(),
            "--log-file".into(),
            log_file.display().to_string(),
        ]);
        args.extend(self.args.iter().cloned());
        let (argv, extra_env) = match &self.instead {
            Some((argv, env)) => (argv.clone(), env.clone()),
            None => (
                std::iter::once(program.display().to_string())
                    .chain(args)
                    .collect(),
                Vec::new(),
            ),
        };
        let cmd: Vec<String> = argv.iter().map(|a| sh_quote(a)).collect();
        let env = [
            ("HOME", home.display().to_string()),
            ("XDG_CONFIG_HOME", xdg.join("config").display().to_string()),
            ("XDG_DATA_HOME", xdg.join("data").display().to_string()),
            ("XDG_STATE_HOME", xdg.join("state").display().to_string()),
            ("XDG_CACHE_HOME", xdg.join("cache").display().to_string()),
            ("XDG_RUNTIME_DIR", runtime.display().to_string()),
            ("TERM", "xterm-256color".into()),
            ("LANG", "C.UTF-8".into()),
            (
                "PULSE_SERVER",
                std::env::var("PULSE_SERVER").unwrap_or_default(),
            ),
            ("RUST_BACKTRACE", "1".into()),
            // Never the developer's keyring or desktop session.
            (
                "DBUS_SESSION_BUS_ADDRESS",
                "unix:path=/nonexistent/termphone-test-bus".into(),
            ),
        ];
        let mut script = String::from("unset DISPLAY WAYLAND_DISPLAY NO_COLOR\n");
        for (k, v) in &env {
            script.push_str(&format!("export {k}={}\n", sh_quote(v)));
        }
        for (k, v) in &extra_env {
            script.push_str(&format!("export {k}={}\n", sh_quote(v)));
        }
        script.push_str(&format!("cd {}\n", sh_quote(&d.display().to_string())));
        script.push_str(&cmd.join(" "));
        script.push('\n');
        let tmp = sh_quote(&format!("{}.tmp", exit_file.display()));
        let file = sh_quote(&exit_file.display().to_string());
        script.push_str(&format!(
            "status=$?\n\
             modes=$(stty -a | tr ' ;' '\\n\\n' | grep -x -E -- '-?(icanon|echo|isig|icrnl|opost|ixon)' | tr '\\n' ' ')\n\
             printf '%s\\n%s\\n' \"$status\" \"$modes\" > {tmp}\n\
             mv {tmp} {file}\n\
             echo \"TUI-EXITED $status\"\n\
             echo \"STTY $modes\"\n\
             exec sleep 600\n"
        ));
        let tmux = Tmux::start(self.dir, &script, Some(log_file.clone()), Some(exit_file));
        Tui {
            tmux,
            port,
            database,
            log_file,
            control,
        }
    }
}

impl Tui {
    /// The termphone process (the pane shell's child).
    pub fn pid(&self) -> u32 {
        self.tmux.child_pid("termphone")
    }

    /// A SIP URI that reaches this TUI directly.
    pub fn sip_uri(&self, user: &str) -> String {
        format!("sip:{user}@127.0.0.1:{}", self.port)
    }

    /// Send `sig` to the termphone process (its PID only).
    pub fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("a PID fits pid_t");
        // SAFETY: kill(2) of the termphone process this fixture started.
        let r = unsafe { libc::kill(pid, sig) };
        assert_eq!(r, 0, "kill({pid}, {sig})");
    }
}

impl std::ops::Deref for Tui {
    type Target = Tmux;
    fn deref(&self) -> &Tmux {
        &self.tmux
    }
}
