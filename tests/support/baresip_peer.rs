//! [`BaresipPeer`]: a real baresip 1.0.0 (Debian `baresip-core`) as a stand-alone peer on
//! 127.0.0.1 for the benches: no registrar, one account that answers every call at once, one
//! audio codec module, and the `sndfile` filter dumping what it decodes. Unlike
//! [`super::baresip`] (tests/support/baresip.rs, which registers to a test's Kamailio), it
//! needs nothing but the binary and its modules, so a bench can include it on its own with
//! `#[path]`.
//!
//! Config (written into `dir`, `baresip -f DIR -v`):
//! - `sip_listen 127.0.0.1:PORT`, `net_interface 127.0.0.1`;
//! - account `<sip:bench@127.0.0.1>;regint=0;answermode=auto` (no registration; an incoming
//!   INVITE to this address is answered at once);
//! - [`Source::File`]: audio source `aufile,FILE` at `rate` Hz mono (1.0.0's aufile reads only
//!   S16LE WAVs at exactly `ausrc_srate`, so the caller writes the file at the codec's rate),
//!   player `aubridge,x` (nothing takes its output: discarded);
//! - [`Source::Loopback`]: source and player both `aubridge,x`: aubridge's thread pulls what
//!   the player would play, every ptime, and feeds it to the source, so baresip echoes its
//!   real playout (after its jitter buffer, concealment and playout buffer);
//! - modules: the codec's (`g711`, `g722` or `opus`), `aufile aubridge sndfile`, then
//!   `extra_modules` (e.g. `plc`; loaded after sndfile so that sndfile dumps their output:
//!   decode filters run in reverse load order), apps `account menu ctrl_tcp`;
//! - `snd_path DIR/snd`: `dump-TIME-dec.wav` is what baresip's decoder produced (after its
//!   jitter buffer and its concealment), `dump-TIME-enc.wav` what it encoded;
//! - `opus_bitrate` as asked (baresip's default is 28000); the rest (jitter buffer `5-10`
//!   frames, `audio_buffer 20-160` ms, `rtcp_mux no`, the other Opus parameters) are baresip
//!   1.0.0's defaults, as its own generated config has them.
//!
//! [`BaresipPeer::stop`] sends SIGTERM to its own PID, waits, a second SIGTERM (1.0.0 needs
//! it), then SIGKILL.

#[path = "baresip_ctrl.rs"]
mod ctrl;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Where Debian puts baresip's modules.
pub const MODULE_PATH: &str = "/usr/lib/baresip/modules";

/// baresip's module for a termphone codec name (`PCMU`, `PCMA`, `G722`, `opus`), if the
/// module is installed.
pub fn codec_module(codec: &str) -> Option<&'static str> {
    let m = match codec.to_ascii_lowercase().as_str() {
        "pcmu" | "pcma" => "g711",
        "g722" => "g722",
        "opus" => "opus",
        _ => return None,
    };
    module_installed(m).then_some(m)
}

/// True when `MODULE_PATH/NAME.so` exists.
pub fn module_installed(name: &str) -> bool {
    Path::new(MODULE_PATH).join(format!("{name}.so")).exists()
}

/// True when a `baresip` binary and the modules every peer needs are installed.
pub fn baresip_available() -> bool {
    let bin = Command::new("baresip")
        .arg("-h")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    bin && [
        "aufile", "aubridge", "sndfile", "ctrl_tcp", "account", "menu",
    ]
    .iter()
    .all(|m| module_installed(m))
}

fn free_port(udp: bool) -> u16 {
    if udp {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp 127.0.0.1:0");
        s.local_addr().expect("local addr").port()
    } else {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind tcp 127.0.0.1:0");
        l.local_addr().expect("local addr").port()
    }
}

/// What baresip sends.
pub enum Source {
    /// A WAV file (S16LE mono at the peer's rate), through `aufile`.
    File(PathBuf),
    /// What it plays: `aubridge` hands its player's output, as the player pulls it from the
    /// playout buffer in real time, back to its audio source (an echo after the whole
    /// receive path).
    Loopback,
}

/// A running baresip (see the module docs).
pub struct BaresipPeer {
    child: Option<Child>,
    snd_dir: PathBuf,
    log_path: PathBuf,
    sip_port: u16,
    ctrl_port: u16,
}

/// How to set a [`BaresipPeer`] up.
pub struct PeerConfig<'a> {
    /// baresip's codec module (`g711`, `g722`, `opus`; see [`codec_module`]).
    pub codec_module: &'a str,
    /// Further modules, loaded after `sndfile` (e.g. `plc`).
    pub extra_modules: &'a [&'a str],
    /// What it sends.
    pub source: Source,
    /// `ausrc_srate` and `auplay_srate` (the codec's rate, so that nothing is resampled).
    pub rate: u32,
    /// `opus_bitrate` (baresip 1.0.0's default: 28000).
    pub opus_bitrate: u32,
}

impl BaresipPeer {
    /// Write a config into `dir` (created) and start baresip; ready when its control port
    /// answers.
    pub fn start(dir: &Path, cfg: &PeerConfig) -> Result<BaresipPeer, String> {
        if !baresip_available() {
            return Err(
                "baresip with aufile/aubridge/sndfile/ctrl_tcp not found: install the \
                        Debian package `baresip-core`"
                    .into(),
            );
        }
        let mut last = String::new();
        // A free port can be taken before baresip binds it; then it exits at once: retry.
        for _ in 0..3 {
            match Self::launch(dir, cfg) {
                Ok(b) => return Ok(b),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn launch(dir: &Path, cfg: &PeerConfig) -> Result<BaresipPeer, String> {
        let snd_dir = dir.join("snd");
        std::fs::create_dir_all(&snd_dir).map_err(|e| format!("{}: {e}", snd_dir.display()))?;
        let (sip_port, ctrl_port) = (free_port(true), free_port(false));
        // Filters decode in the reverse of their load order: modules loaded after sndfile
        // (plc) work on the audio before sndfile dumps it.
        let mut extra = String::new();
        for m in cfg.extra_modules {
            extra.push_str(&format!("module\t\t\t{m}.so\n"));
        }
        let source = match &cfg.source {
            Source::File(path) => format!("aufile,{}", path.display()),
            Source::Loopback => "aubridge,x".to_string(),
        };
        let config = format!(
            "poll_method\t\tepoll\n\
             sip_listen\t\t127.0.0.1:{sip_port}\n\
             net_interface\t\t127.0.0.1\n\
             call_local_timeout\t120\n\
             audio_source\t\t{source}\n\
             audio_player\t\taubridge,x\n\
             audio_alert\t\taubridge,x\n\
             ausrc_srate\t\t{rate}\n\
             ausrc_channels\t\t1\n\
             auplay_srate\t\t{rate}\n\
             auplay_channels\t\t1\n\
             audio_level\t\tno\n\
             audio_buffer\t\t20-160\n\
             jitter_buffer_delay\t5-10\n\
             rtcp_mux\t\tno\n\
             rtp_ports\t\t20000-40000\n\
             module_path\t\t{MODULE_PATH}\n\
             module\t\t\t{codec_module}.so\n\
             module\t\t\taufile.so\n\
             module\t\t\taubridge.so\n\
             module\t\t\tsndfile.so\n\
             {extra}\
             module_app\t\taccount.so\n\
             module_app\t\tmenu.so\n\
             module_app\t\tctrl_tcp.so\n\
             ctrl_tcp_listen\t\t127.0.0.1:{ctrl_port}\n\
             opus_bitrate\t\t{opus_bitrate}\n\
             snd_path\t\t{snd}\n",
            codec_module = cfg.codec_module,
            rate = cfg.rate,
            opus_bitrate = cfg.opus_bitrate,
            snd = snd_dir.display(),
        );
        let write = |name: &str, text: &str| {
            std::fs::write(dir.join(name), text).map_err(|e| format!("write {name}: {e}"))
        };
        write("config", &config)?;
        write(
            "accounts",
            "<sip:bench@127.0.0.1>;regint=0;answermode=auto\n",
        )?;
        write("contacts", "")?;
        let log_path = dir.join("baresip.log");
        let log = std::fs::File::create(&log_path).map_err(|e| format!("baresip log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new("baresip")
            .arg("-f")
            .arg(dir)
            .arg("-v")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .current_dir(dir)
            .spawn()
            .map_err(|e| format!("spawn baresip: {e}"))?;
        let mut b = BaresipPeer {
            child: Some(child),
            snd_dir,
            log_path,
            sip_port,
            ctrl_port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !b.is_running() {
                break;
            }
            if TcpStream::connect(("127.0.0.1", ctrl_port)).is_ok() {
                return Ok(b);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        b.stop();
        Err(format!(
            "baresip did not start (control port {ctrl_port})\n{}",
            b.log()
        ))
    }

    /// The SIP address it listens on (dial `sip:bench@` this).
    pub fn sip_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.sip_port))
    }

    /// Its stdout and stderr so far.
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

    /// Send one ctrl_tcp command (netstring JSON); the response's JSON text.
    pub fn command(&self, command: &str, params: &str) -> Result<String, String> {
        ctrl::command(
            self.ctrl_port,
            &format!("t{}", std::process::id()),
            command,
            params,
        )
    }

    /// Dial `uri` (e.g. `sip:bench@127.0.0.1:5060`).
    pub fn dial(&self, uri: &str) -> Result<String, String> {
        self.command("dial", uri)
    }

    /// Hang up the current call.
    pub fn hangup(&self) -> Result<String, String> {
        self.command("hangup", "")
    }

    /// The newest `sndfile` dump of what baresip decoded (`*-dec.wav`).
    pub fn decoded_dump(&self) -> Option<PathBuf> {
        self.dump("-dec.wav")
    }

    /// The newest `sndfile` dump of what baresip encoded (`*-enc.wav`): with
    /// [`Source::Loopback`], what its player played.
    pub fn encoded_dump(&self) -> Option<PathBuf> {
        self.dump("-enc.wav")
    }

    fn dump(&self, suffix: &str) -> Option<PathBuf> {
        ctrl::newest_dump(&self.snd_dir, suffix)
    }

    /// Stop: SIGTERM, wait 3 s, a second SIGTERM, wait 3 s, then SIGKILL — always its own PID.
    /// Reaps it. No-op when stopped.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        ctrl::stop(self.child.take()?)
    }
}

impl Drop for BaresipPeer {
    fn drop(&mut self) {
        self.stop();
    }
}
