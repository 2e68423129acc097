//! A private dnsmasq DNS server on 127.0.0.1 for tests that locate SIP servers (RFC 3263):
//! SRV and A records from the command line, no upstream, no /etc/hosts, no config file.
//! Names under the zone given to [`Dnsmasq::start`] that it has no record for get NXDOMAIN.
//! Stopped (its PID only) on drop.

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use super::{next_seq, stop_child, tail_file, test_dir, wait_until, TestDir, TERM_GRACE};

/// Where the Debian package `dnsmasq-base` installs the server.
pub const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// How long dnsmasq may take to listen.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// True if dnsmasq is installed.
pub fn dnsmasq_available() -> bool {
    Path::new(DNSMASQ).is_file()
}

/// A port on 127.0.0.1 that was free a moment ago for both UDP and TCP.
fn free_port() -> u16 {
    for _ in 0..100 {
        let u = UdpSocket::bind("127.0.0.1:0").expect("bind udp 127.0.0.1:0");
        let port = u.local_addr().expect("local addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

/// A running dnsmasq.
pub struct Dnsmasq {
    child: Option<Child>,
    addr: SocketAddr,
    log: PathBuf,
    _dir: Arc<TestDir>,
}

impl Dnsmasq {
    /// Start dnsmasq answering for `zone` (e.g. `pbx.test`) with `records`: dnsmasq options
    /// such as `--srv-host=_sip._udp.pbx.test,host1.pbx.test,5070,10,60` (service, target,
    /// port, priority, weight) and `--host-record=host1.pbx.test,127.0.0.1`. Waits until it
    /// listens; panics with its log otherwise.
    pub fn start(zone: &str, records: &[&str]) -> Dnsmasq {
        assert!(
            dnsmasq_available(),
            "{DNSMASQ} not found: install the Debian package `dnsmasq-base` \
             (scripts/install-deps.sh)"
        );
        let dir = test_dir();
        let log = dir.path().join(format!("dnsmasq-{}.log", next_seq()));
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stderr = std::fs::File::create(&log).expect("create dnsmasq log");
        let child = Command::new(DNSMASQ)
            .args([
                "--no-daemon",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--pid-file=",
                "--log-queries",
                "--log-facility=-",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--local=/{zone}/"))
            .args(records)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn dnsmasq");
        let mut d = Dnsmasq {
            child: Some(child),
            addr,
            log,
            _dir: dir,
        };
        let up = wait_until(START_TIMEOUT, || {
            if let Some(c) = d.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    return Some(Err(st));
                }
            }
            TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .ok()
                .map(|_| Ok(()))
        });
        match up {
            Some(Ok(())) => d,
            Some(Err(st)) => panic!("dnsmasq exited ({st}):\n{}", tail_file(&d.log, 4000)),
            None => {
                d.stop();
                panic!(
                    "dnsmasq did not listen on {addr} within {START_TIMEOUT:?}:\n{}",
                    tail_file(&d.log, 4000)
                )
            }
        }
    }

    /// The server's address (127.0.0.1, UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its log (`--log-queries`): what was asked and answered.
    pub fn log(&self) -> String {
        tail_file(&self.log, 16_000)
    }

    /// Stop it (SIGTERM to its PID, SIGKILL after a grace period).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, TERM_GRACE);
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.stop();
    }
}
