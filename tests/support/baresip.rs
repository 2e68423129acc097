//! [`Baresip`]: a real baresip 1.0.0 (Debian `baresip-core`) as a headless peer UA on
//! 127.0.0.1, registered to a test's Kamailio.
//!
//! Config (written into the test's temp dir, `baresip -f DIR -s -v`):
//! - `sip_listen 127.0.0.1:PORT`, `net_interface 127.0.0.1` (an interface name fails);
//! - audio source `aufile,FILE`: baresip 1.0.0's aufile only reads S16LE WAVs at exactly
//!   `ausrc_srate`/`ausrc_channels`, so those are 8000/1 and the file must match;
//! - audio player `aubridge,x` (discards); aufile in 1.0.0 has no player, so what baresip
//!   receives is recorded by the `sndfile` filter: `snd_path DIR` gets
//!   `dump-TIME-enc.wav` (what it sent) and `dump-TIME-dec.wav` (what it decoded);
//! - modules `g711 aufile aubridge sndfile`, apps `account menu ctrl_tcp`;
//! - accounts: `<sip:USER@KAMAILIO;transport=udp>;auth_pass=..;answermode=auto;regint=600`.
//!
//! [`Baresip::dial`] sends a netstring JSON command to ctrl_tcp. [`Baresip::stop`] sends
//! SIGTERM to its own PID, waits, a second SIGTERM (1.0.0 unregisters on the first and needs
//! the second), then SIGKILL.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::kamailio::Kamailio;
use super::{free_udp_port, next_seq, tail_file, wait_until, TestDir};

/// Where Debian puts baresip's modules.
pub const MODULE_PATH: &str = "/usr/lib/baresip/modules";

/// True when a `baresip` binary and its g711/aufile/sndfile/ctrl_tcp modules are installed.
pub fn baresip_available() -> bool {
    let bin = Command::new("baresip")
        .arg("-h")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    bin && [
        "g711", "aufile", "aubridge", "sndfile", "ctrl_tcp", "account",
    ]
    .iter()
    .all(|m| Path::new(MODULE_PATH).join(format!("{m}.so")).exists())
}

/// A free TCP port on 127.0.0.1 (bind :0, read, drop).
fn free_tcp_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind tcp 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// A running baresip (see the module docs).
pub struct Baresip {
    child: Option<Child>,
    dir: Arc<TestDir>,
    conf_dir: PathBuf,
    snd_dir: PathBuf,
    log_path: PathBuf,
    user: String,
    sip_port: u16,
    ctrl_port: u16,
}

impl Baresip {
    /// Write a config for `user`/`password` at Kamailio `k` playing `source_wav` (8 kHz mono
    /// S16LE), start baresip, and wait until Kamailio holds its binding (panics with the log
    /// if not within `timeout`).
    pub fn start(
        k: &Kamailio,
        user: &str,
        password: &str,
        source_wav: &Path,
        timeout: Duration,
    ) -> Baresip {
        // A free port can be taken before baresip binds it; then it exits at once: retry.
        let mut last = String::new();
        for _ in 0..3 {
            match Self::launch(k, user, password, source_wav, timeout) {
                Ok(b) => return b,
                Err((true, e)) => last = e,
                Err((false, e)) => panic!("{e}"),
            }
        }
        panic!("{last}");
    }

    /// One start attempt; `Err((exited_early, message))`.
    fn launch(
        k: &Kamailio,
        user: &str,
        password: &str,
        source_wav: &Path,
        timeout: Duration,
    ) -> Result<Baresip, (bool, String)> {
        assert!(
            baresip_available(),
            "baresip with g711/aufile/aubridge/sndfile/ctrl_tcp not found: install the Debian \
             package `baresip-core` (scripts/install-deps.sh)"
        );
        let dir = k.dir_handle();
        let conf_dir = dir.path().join(format!("baresip-{}", next_seq()));
        let snd_dir = conf_dir.join("snd");
        std::fs::create_dir_all(&snd_dir).expect("create baresip dirs");
        let sip_port = free_udp_port();
        let ctrl_port = free_tcp_port();
        let config = format!(
            "poll_method\t\tepoll\n\
             sip_listen\t\t127.0.0.1:{sip_port}\n\
             net_interface\t\t127.0.0.1\n\
             call_local_timeout\t120\n\
             audio_source\t\taufile,{src}\n\
             audio_player\t\taubridge,x\n\
             audio_alert\t\taubridge,x\n\
             ausrc_srate\t\t8000\n\
             ausrc_channels\t\t1\n\
             auplay_srate\t\t8000\n\
             auplay_channels\t\t1\n\
             audio_level\t\tno\n\
             rtp_ports\t\t20000-40000\n\
             module_path\t\t{MODULE_PATH}\n\
             module\t\t\tg711.so\n\
             module\t\t\taufile.so\n\
             module\t\t\taubridge.so\n\
             module\t\t\tsndfile.so\n\
             module_app\t\taccount.so\n\
             module_app\t\tmenu.so\n\
             module_app\t\tctrl_tcp.so\n\
             ctrl_tcp_listen\t\t127.0.0.1:{ctrl_port}\n\
             snd_path\t\t{snd}\n",
            src = source_wav.display(),
            snd = snd_dir.display(),
        );
        std::fs::write(conf_dir.join("config"), config).expect("write baresip config");
        let accounts = format!(
            "<sip:{user}@127.0.0.1:{kport};transport=udp>;auth_pass={password};\
             answermode=auto;regint=600\n",
            kport = k.port()
        );
        std::fs::write(conf_dir.join("accounts"), accounts).expect("write baresip accounts");
        std::fs::write(conf_dir.join("contacts"), "").expect("write baresip contacts");
        let log_path = conf_dir.join("baresip.log");
        let log = std::fs::File::create(&log_path).expect("create baresip log");
        let log2 = log.try_clone().expect("clone log handle");
        let child = Command::new("baresip")
            .arg("-f")
            .arg(&conf_dir)
            .arg("-s")
            .arg("-v")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .current_dir(&conf_dir)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn baresip: {e}"));
        let mut b = Baresip {
            child: Some(child),
            dir,
            conf_dir,
            snd_dir,
            log_path,
            user: user.to_owned(),
            sip_port,
            ctrl_port,
        };
        let contact_port = format!(":{sip_port}");
        let ok = wait_until(timeout, || {
            if !b.is_running() {
                return Some(false);
            }
            k.registrations_of(user)
                .iter()
                .any(|r| r.contact.contains(&contact_port))
                .then_some(true)
        });
        if ok != Some(true) {
            let exited = ok == Some(false);
            b.stop();
            let log = tail_file(&b.log_path, 6000);
            return Err((
                exited,
                format!(
                    "baresip {user} did not register with Kamailio within {timeout:?} \
                     (exited: {exited}; bindings {:?})\nbaresip log:\n{log}",
                    k.registrations_of(user)
                ),
            ));
        }
        Ok(b)
    }

    /// Its config directory (config, accounts, log, `snd/`).
    pub fn conf_dir(&self) -> &Path {
        &self.conf_dir
    }

    /// The test's temp dir handle.
    pub fn dir_handle(&self) -> Arc<TestDir> {
        self.dir.clone()
    }

    /// The SIP address it listens on.
    pub fn sip_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.sip_port))
    }

    /// The account's user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Its stdout+stderr (SIP trace with `-s`).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Send one ctrl_tcp command (netstring JSON) and return its response's JSON text.
    pub fn command(&self, command: &str, params: &str) -> Result<String, String> {
        super::baresip_ctrl::command(self.ctrl_port, &format!("t{}", next_seq()), command, params)
    }

    /// Dial `uri` (e.g. `sip:bob@127.0.0.1:5060`) through its account.
    pub fn dial(&self, uri: &str) -> Result<String, String> {
        self.command("dial", uri)
    }

    /// Hang up the current call.
    pub fn hangup(&self) -> Result<String, String> {
        self.command("hangup", "")
    }

    /// The `sndfile` dump of what baresip decoded (`*-dec.wav`), once it exists.
    pub fn decoded_dump(&self) -> Option<PathBuf> {
        self.dump("-dec.wav")
    }

    /// The `sndfile` dump of what baresip encoded and sent (`*-enc.wav`), once it exists.
    pub fn encoded_dump(&self) -> Option<PathBuf> {
        self.dump("-enc.wav")
    }

    fn dump(&self, suffix: &str) -> Option<PathBuf> {
        super::baresip_ctrl::newest_dump(&self.snd_dir, suffix)
    }

    /// Stop: SIGTERM, wait 3 s, a second SIGTERM, wait 3 s, then SIGKILL — always its own PID.
    /// Reaps it. No-op when stopped.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        super::baresip_ctrl::stop(self.child.take()?)
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        self.stop();
    }
}
