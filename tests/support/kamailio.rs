//! Runs a real Kamailio (Debian `kamailio` 5.6.3) as registrar and proxy on 127.0.0.1.
//!
//! [`Kamailio::start`] writes `tests/kamailio/kamailio-registrar.cfg` and a db_text user
//! directory into a fresh temp dir, picks a port that is free for both UDP and TCP on
//! 127.0.0.1, starts `kamailio -DD -E` in the foreground as our child (stdout and stderr go to
//! `kamailio.log` in the temp dir), and returns once it answers an OPTIONS over UDP with 200.
//!
//! Registrations are read over Kamailio's management interface: the config loads `jsonrpcs`
//! with a Unix datagram socket in the temp dir, and [`Kamailio::registrations`] sends
//! `ul.dump` there (usrloc runs with db_mode 0, so the bindings are in memory only).
//! `kamcmd` works too ([`Kamailio::kamcmd`], via the ctl socket in the temp dir).
//!
//! [`Kamailio::restart`] stops it and starts it again on the same port (bindings are lost, as
//! with a real registrar restart). Drop stops it: SIGTERM to its own PID, up to 3 s, then
//! SIGKILL; its worker processes (found in /proc by parent PID before the stop) are checked
//! and, only if still there, killed by PID too.
//!
//! Other transports are opt-in ([`KamailioOpts::tls`], [`KamailioOpts::ws`],
//! [`KamailioOpts::wss`], [`KamailioOpts::all_transports`]), each on its own free TCP port
//! ([`Kamailio::tls_port`], [`Kamailio::ws_port`], [`Kamailio::wss_port`]). With TLS or WSS,
//! every start writes a fresh test CA, a server certificate for IP 127.0.0.1 and DNS localhost
//! signed by it, and an unrelated second CA into its directory ([`Kamailio::ca_file`],
//! [`Kamailio::untrusted_ca_file`]). [`Kamailio::uri_for`] and
//! [`Kamailio::account_config_for`] give the registrar URI and a termphone account per
//! transport. Calls to clients on TCP/TLS/WS go over the connection they registered from
//! (nathelper; see the config's header).
//!
//! [`SipClient`] is a raw UDP SIP client for tests that have no SIP stack to hand: it sends a
//! [`RawRequest`] and waits for the final [`SipResponse`] (retransmitting like a UAC).
//! [`StreamSip`] frames SIP over a byte stream (TCP, or TLS through `openssl s_client`),
//! [`WsClient`] over a hand-written RFC 6455 client (masked text frames, subprotocol `sip`),
//! and [`digest_authorization`] answers an MD5 challenge.

use super::{next_seq, stop_child, tail_file, test_dir, wait_until, TestDir, TERM_GRACE};
use serde_json::Value;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The registrar config, as kept in `tests/kamailio/` (its header documents it).
pub const CONFIG: &str = include_str!("../kamailio/kamailio-registrar.cfg");

/// The SIP domain of the users and the realm of the challenges.
pub const DOMAIN: &str = "127.0.0.1";

/// How long [`Kamailio::start`] waits for the first 200 to an OPTIONS.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// True if a `kamailio` binary is on PATH (install it with `scripts/install-deps.sh`).
pub fn kamailio_available() -> bool {
    Command::new("kamailio")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Digest algorithm of the challenges (`modparam("auth", "algorithm", ...)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthAlg {
    /// `algorithm=MD5` (Kamailio omits the parameter then).
    Md5,
    /// `algorithm=SHA-256` (RFC 8760).
    Sha256,
}

impl AuthAlg {
    /// The name as Kamailio's config and the challenge write it.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthAlg::Md5 => "MD5",
            AuthAlg::Sha256 => "SHA-256",
        }
    }
}

/// One subscriber of the registrar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Username (also the AoR in usrloc, which runs with use_domain 0).
    pub username: String,
    /// Plain password (auth_db computes HA1 with the configured algorithm).
    pub password: String,
    /// Domain column (the registrar ignores it for lookups; kept for realism).
    pub domain: String,
}

impl User {
    /// A user at [`DOMAIN`].
    pub fn new(username: &str, password: &str) -> User {
        User {
            username: username.to_owned(),
            password: password.to_owned(),
            domain: DOMAIN.to_owned(),
        }
    }
}

/// Options for [`Kamailio::start`]. Default: MD5, users alice/alicepw and bob/bobpw.
#[derive(Clone)]
pub struct KamailioOpts {
    /// Digest algorithm of the challenges.
    pub auth_alg: AuthAlg,
    /// The subscribers.
    pub users: Vec<User>,
    /// `-A WITH_DEBUG`: one log line per request and reply.
    pub debug: bool,
    /// Use this temp dir (shared with other processes of a test); default: a fresh one.
    pub dir: Option<Arc<TestDir>>,
    /// Use this port instead of a free one.
    pub port: Option<u16>,
    /// Also listen on TLS (`tls:127.0.0.1:TLS_PORT`, a certificate of a fresh test CA).
    pub tls: bool,
    /// Also listen for SIP over WebSocket (RFC 7118) on `tcp:127.0.0.1:WS_PORT`.
    pub ws: bool,
    /// Also listen for SIP over secure WebSocket on `tls:127.0.0.1:WSS_PORT` (same certificate).
    pub wss: bool,
}

impl Default for KamailioOpts {
    fn default() -> Self {
        KamailioOpts {
            auth_alg: AuthAlg::Md5,
            users: vec![User::new("alice", "alicepw"), User::new("bob", "bobpw")],
            debug: false,
            dir: None,
            port: None,
            tls: false,
            ws: false,
            wss: false,
        }
    }
}

impl KamailioOpts {
    /// Challenge with SHA-256 instead of MD5.
    pub fn sha256(mut self) -> Self {
        self.auth_alg = AuthAlg::Sha256;
        self
    }
    /// Replace the user list.
    pub fn users(mut self, users: Vec<User>) -> Self {
        self.users = users;
        self
    }
    /// Log every request and reply.
    pub fn debug(mut self) -> Self {
        self.debug = true;
        self
    }
    /// Add the TLS listener (see [`Kamailio::tls_port`], [`Kamailio::ca_file`]).
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }
    /// Add the WebSocket listener (see [`Kamailio::ws_url`]).
    pub fn ws(mut self) -> Self {
        self.ws = true;
        self
    }
    /// Add the secure WebSocket listener (see [`Kamailio::wss_url`]).
    pub fn wss(mut self) -> Self {
        self.wss = true;
        self
    }
    /// UDP, TCP, TLS, WS and WSS.
    pub fn all_transports(self) -> Self {
        self.tls().ws().wss()
    }
}

/// The PEM files of a TLS-enabled start, in the instance's directory.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The test CA that signed the server certificate (what a client trusts).
    pub ca: PathBuf,
    /// A second CA, unrelated to the server certificate ("certificate not trusted").
    pub untrusted_ca: PathBuf,
    /// The server certificate (SANs: IP 127.0.0.1, DNS localhost).
    pub server_cert: PathBuf,
    /// Its private key (PKCS#8 PEM).
    pub server_key: PathBuf,
    /// The tls module's config (`modparam("tls", "config", ...)`).
    pub tls_cfg: PathBuf,
}

fn test_ca(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    p.distinguished_name.push(DnType::CommonName, name);
    p.distinguished_name
        .push(DnType::OrganizationName, "termphone tests");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("CA key");
    let cert = p.self_signed(&key).expect("self-sign the CA");
    (cert, key)
}

/// Generate a test CA, a server certificate for 127.0.0.1 / localhost signed by it, an
/// unrelated second CA, and the tls module's config; write them into `base`.
pub fn write_tls_files(base: &Path) -> TlsFiles {
    use rcgen::{
        CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType,
    };
    let (ca, ca_key) = test_ca("termphone test CA");
    let (other, _) = test_ca("termphone untrusted test CA");
    let mut p = CertificateParams::new(vec!["localhost".to_owned()]).expect("server params");
    p.subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    p.distinguished_name.push(DnType::CommonName, "localhost");
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().expect("server key");
    let cert = p
        .signed_by(&key, &ca, &ca_key)
        .expect("sign the server cert");
    let files = TlsFiles {
        ca: base.join("ca.pem"),
        untrusted_ca: base.join("untrusted-ca.pem"),
        server_cert: base.join("server.pem"),
        server_key: base.join("server.key"),
        tls_cfg: base.join("tls.cfg"),
    };
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()))
    };
    write(&files.ca, &ca.pem());
    write(&files.untrusted_ca, &other.pem());
    write(&files.server_cert, &cert.pem());
    write(&files.server_key, &key.serialize_pem());
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&files.server_key, std::fs::Permissions::from_mode(0o600));
    }
    write(
        &files.tls_cfg,
        &format!(
            "# written by tests/support/kamailio.rs\n\
             [server:default]\nmethod = TLSv1.2+\nverify_certificate = no\n\
             require_certificate = no\nprivate_key = {}\ncertificate = {}\nca_list = {}\n\n\
             [client:default]\nmethod = TLSv1.2+\nverify_certificate = no\n\
             require_certificate = no\n",
            files.server_key.display(),
            files.server_cert.display(),
            files.ca.display()
        ),
    );
    files
}

/// One binding in Kamailio's location table (a contact of an AoR, from `ul.dump`).
#[derive(Debug, Clone)]
pub struct Registration {
    /// The AoR: the username (use_domain is off).
    pub aor: String,
    /// The Contact URI as registered.
    pub contact: String,
    /// Seconds left, or None when Kamailio reports it as not a number (expired, permanent).
    pub expires: Option<i64>,
    /// Call-ID of the REGISTER that made it.
    pub call_id: String,
    /// CSeq of that REGISTER.
    pub cseq: i64,
    /// User-Agent header of that REGISTER ("n/a" when absent).
    pub user_agent: String,
    /// Source address when it differed from the Contact (`received`), if set.
    pub received: Option<String>,
    /// Kamailio's listening socket it came in on, e.g. "udp:127.0.0.1:5060".
    pub socket: String,
    /// The whole `Contact` object as Kamailio dumped it.
    pub raw: Value,
}

fn not_set(v: &Value) -> Option<String> {
    match v.as_str() {
        Some("[not set]") | None => None,
        Some(s) => Some(s.to_owned()),
    }
}

/// Parse the result of `ul.dump` (JSON-RPC) into bindings.
pub fn parse_ul_dump(result: &Value) -> Result<Vec<Registration>, String> {
    let mut out = Vec::new();
    let domains = result["Domains"]
        .as_array()
        .ok_or_else(|| format!("ul.dump: no Domains array in {result}"))?;
    for d in domains {
        let Some(aors) = d["Domain"]["AoRs"].as_array() else {
            continue;
        };
        for a in aors {
            let info = &a["Info"];
            let aor = info["AoR"].as_str().unwrap_or_default().to_owned();
            for c in info["Contacts"].as_array().into_iter().flatten() {
                let c = &c["Contact"];
                out.push(Registration {
                    aor: aor.clone(),
                    contact: c["Address"].as_str().unwrap_or_default().to_owned(),
                    expires: c["Expires"].as_i64(),
                    call_id: c["Call-ID"].as_str().unwrap_or_default().to_owned(),
                    cseq: c["CSeq"].as_i64().unwrap_or(-1),
                    user_agent: c["User-Agent"].as_str().unwrap_or_default().to_owned(),
                    received: not_set(&c["Received"]),
                    socket: c["Socket"].as_str().unwrap_or_default().to_owned(),
                    raw: c.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// A port on 127.0.0.1 that was free a moment ago for both UDP and TCP.
pub fn free_udp_tcp_port() -> u16 {
    for _ in 0..100 {
        let u = UdpSocket::bind("127.0.0.1:0").expect("bind udp 127.0.0.1:0");
        let port = u.local_addr().expect("local addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

/// A TCP port on 127.0.0.1 that was free a moment ago and is not in `taken`.
pub fn free_tcp_port(taken: &[u16]) -> u16 {
    for _ in 0..100 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind tcp 127.0.0.1:0");
        let port = l.local_addr().expect("local addr").port();
        if !taken.contains(&port) {
            return port;
        }
    }
    panic!("no free TCP port on 127.0.0.1");
}

/// True if the process exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat_fields(&stat).is_some_and(|(state, _)| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// (state, ppid) from a /proc/PID/stat line (the command name may hold spaces and parens).
fn stat_fields(stat: &str) -> Option<(String, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut it = rest.split_whitespace();
    let state = it.next()?.to_owned();
    let ppid = it.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Live processes whose parent is `parent` (from /proc).
pub fn child_pids(parent: u32) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((state, ppid)) = stat_fields(&stat) {
            if ppid == parent && state != "Z" && state != "X" {
                out.push(pid);
            }
        }
    }
    out.sort_unstable();
    out
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Escape a string for a TOML basic string.
fn toml_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// db_text escaping of a column value.
fn dbtext_escape(s: &str) -> String {
    let mut o = String::new();
    for ch in s.chars() {
        match ch {
            ':' => o.push_str("\\:"),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c => o.push(c),
        }
    }
    o
}

/// A running Kamailio registrar on 127.0.0.1 (see the module docs).
pub struct Kamailio {
    child: Option<Child>,
    dir: Arc<TestDir>,
    opts: KamailioOpts,
    port: u16,
    tls_port: Option<u16>,
    ws_port: Option<u16>,
    wss_port: Option<u16>,
    tls_files: Option<TlsFiles>,
    cfg_path: PathBuf,
    log_path: PathBuf,
    starts: usize,
    last_pids: Vec<u32>,
}

impl Kamailio {
    /// Write the config and users, start Kamailio, wait until it answers OPTIONS (panics with
    /// its log if it does not within [`START_TIMEOUT`]).
    pub fn start(opts: KamailioOpts) -> Kamailio {
        assert!(
            kamailio_available(),
            "kamailio not found on PATH: install the Debian package `kamailio` \
             (scripts/install-deps.sh)"
        );
        let dir = opts.dir.clone().unwrap_or_else(test_dir);
        let base = dir.path().join(format!("kamailio-{}", next_seq()));
        let db = base.join("db");
        std::fs::create_dir_all(&db).expect("create kamailio db dir");
        let cfg_path = base.join("kamailio-registrar.cfg");
        std::fs::write(&cfg_path, CONFIG).expect("write kamailio config");
        std::fs::write(
            db.join("version"),
            "id(int,auto) table_name(string) table_version(int) \n\
             0:version:1\n0:location:9\n0:location_attrs:1\n0:subscriber:7\n",
        )
        .expect("write db_text version");
        let mut subs = String::from(
            "id(int,auto) username(string) domain(string) password(string) \
             ha1(string,null) ha1b(string,null) \n",
        );
        for (i, u) in opts.users.iter().enumerate() {
            super::register_secret(&format!("Kamailio user {}", u.username), &u.password);
            subs.push_str(&format!(
                "{}:{}:{}:{}:: \n",
                i + 1,
                dbtext_escape(&u.username),
                dbtext_escape(&u.domain),
                dbtext_escape(&u.password)
            ));
        }
        std::fs::write(db.join("subscriber"), subs).expect("write db_text subscriber");
        let log_path = base.join("kamailio.log");
        let tls_files = (opts.tls || opts.wss).then(|| write_tls_files(&base));
        let mut k = Kamailio {
            child: None,
            dir,
            port: 0,
            tls_port: None,
            ws_port: None,
            wss_port: None,
            tls_files,
            cfg_path,
            log_path,
            starts: 0,
            last_pids: Vec::new(),
            opts,
        };
        // A free port can be taken by someone else before Kamailio binds it: try another.
        let fixed = k.opts.port;
        let mut last_err = String::new();
        for _ in 0..3 {
            k.port = fixed.unwrap_or_else(free_udp_tcp_port);
            let mut taken = vec![k.port];
            for (on, slot) in [
                (k.opts.tls, &mut k.tls_port),
                (k.opts.ws, &mut k.ws_port),
                (k.opts.wss, &mut k.wss_port),
            ] {
                if on {
                    let p = free_tcp_port(&taken);
                    taken.push(p);
                    *slot = Some(p);
                }
            }
            match k.launch() {
                Ok(()) => return k,
                Err(e) => last_err = e,
            }
        }
        panic!("{last_err}");
    }

    /// Start with the default options (MD5; alice/alicepw, bob/bobpw).
    pub fn start_default() -> Kamailio {
        Self::start(KamailioOpts::default())
    }

    /// Where this instance keeps its files (config, db, log, sockets).
    pub fn base_dir(&self) -> PathBuf {
        self.cfg_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    fn rpc_socket(&self) -> PathBuf {
        self.base_dir().join("kamailio_rpc.sock")
    }

    /// The ctl (binrpc) socket for `kamcmd -s unix:PATH`.
    pub fn ctl_socket(&self) -> PathBuf {
        self.base_dir().join("kamailio_ctl")
    }

    fn launch(&mut self) -> Result<(), String> {
        let base = self.base_dir();
        // stale sockets of a previous run would make the bind fail
        let _ = std::fs::remove_file(self.rpc_socket());
        let _ = std::fs::remove_file(self.ctl_socket());
        self.starts += 1;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| format!("open {}: {e}", self.log_path.display()))?;
        let _ = writeln!(
            log,
            "==== termphone test fixture: start #{} on 127.0.0.1:{} ({}) tls={:?} ws={:?} wss={:?} ====",
            self.starts,
            self.port,
            self.opts.auth_alg.as_str(),
            self.tls_port,
            self.ws_port,
            self.wss_port
        );
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let b = base.display();
        let mut args: Vec<String> = vec![
            "-f".into(),
            self.cfg_path.display().to_string(),
            "-DD".into(),
            "-E".into(),
            "-n".into(),
            "2".into(),
            "-m".into(),
            "64".into(),
            "-M".into(),
            "8".into(),
            "-w".into(),
            b.to_string(),
            "-Y".into(),
            b.to_string(),
            "-A".into(),
            format!("DBURL=\"text://{b}/db\""),
            "-A".into(),
            format!("SIP_PORT={}", self.port),
            "-A".into(),
            format!("AUTH_ALG=\"{}\"", self.opts.auth_alg.as_str()),
            "-A".into(),
            format!("CTL_SOCKET=\"unix:{}\"", self.ctl_socket().display()),
        ];
        if self.opts.debug {
            args.push("-A".into());
            args.push("WITH_DEBUG".into());
        }
        let mut define = |d: String| {
            args.push("-A".into());
            args.push(d);
        };
        if let Some(p) = self.tls_port {
            define("WITH_TLS".into());
            define(format!("TLS_PORT={p}"));
        }
        if let Some(f) = &self.tls_files {
            define(format!("TLS_CONFIG=\"{}\"", f.tls_cfg.display()));
        }
        if let Some(p) = self.ws_port {
            define("WITH_WS".into());
            define(format!("WS_PORT={p}"));
        }
        if let Some(p) = self.wss_port {
            define("WITH_WSS".into());
            define(format!("WSS_PORT={p}"));
        }
        let child = Command::new("kamailio")
            .args(&args)
            .current_dir(&base)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|e| format!("spawn kamailio {args:?}: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        let client = SipClient::new();
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    self.child = None;
                    return Err(format!(
                        "kamailio exited at start ({st}) on port {}; log {}:\n{}",
                        self.port,
                        self.log_path.display(),
                        tail_file(&self.log_path, 4000)
                    ));
                }
            }
            let req = RawRequest::new("OPTIONS", &format!("sip:{DOMAIN}:{}", self.port))
                .from("sip:fixture@127.0.0.1")
                .to(&format!("sip:{DOMAIN}:{}", self.port));
            if let Ok(r) = client.send_once(&req, self.addr(), Duration::from_millis(100)) {
                if r.code == 200 {
                    self.last_pids = self.pids();
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(format!(
                    "kamailio did not answer OPTIONS within {START_TIMEOUT:?} on port {}; \
                     log {}:\n{}",
                    self.port,
                    self.log_path.display(),
                    tail_file(&self.log_path, 4000)
                ));
            }
        }
    }

    /// The SIP address (UDP and TCP), 127.0.0.1:port.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The port (UDP and TCP).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The registrar URI, `sip:127.0.0.1:PORT`.
    pub fn uri(&self) -> String {
        format!("sip:{DOMAIN}:{}", self.port)
    }

    /// The AoR of a user, `sip:USER@127.0.0.1`.
    pub fn aor(&self, user: &str) -> String {
        format!("sip:{user}@{DOMAIN}")
    }

    fn need(&self, port: Option<u16>, what: &str, builder: &str) -> u16 {
        port.unwrap_or_else(|| {
            panic!("this Kamailio has no {what} listener: start it with KamailioOpts::{builder}()")
        })
    }

    /// The TLS port (`tls:127.0.0.1:PORT`); panics unless started with [`KamailioOpts::tls`].
    pub fn tls_port(&self) -> u16 {
        self.need(self.tls_port, "TLS", "tls")
    }

    /// 127.0.0.1:[`Self::tls_port`].
    pub fn tls_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.tls_port()))
    }

    /// The WebSocket port (HTTP upgrade on `tcp:127.0.0.1:PORT`); panics unless started with
    /// [`KamailioOpts::ws`].
    pub fn ws_port(&self) -> u16 {
        self.need(self.ws_port, "WebSocket", "ws")
    }

    /// 127.0.0.1:[`Self::ws_port`].
    pub fn ws_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ws_port()))
    }

    /// `ws://127.0.0.1:WS_PORT/`.
    pub fn ws_url(&self) -> String {
        format!("ws://{DOMAIN}:{}/", self.ws_port())
    }

    /// The secure WebSocket port (`tls:127.0.0.1:PORT`); panics unless started with
    /// [`KamailioOpts::wss`].
    pub fn wss_port(&self) -> u16 {
        self.need(self.wss_port, "secure WebSocket", "wss")
    }

    /// `wss://127.0.0.1:WSS_PORT/`.
    pub fn wss_url(&self) -> String {
        format!("wss://{DOMAIN}:{}/", self.wss_port())
    }

    /// The certificate files (TLS or WSS starts only).
    pub fn tls_files(&self) -> &TlsFiles {
        self.tls_files
            .as_ref()
            .expect("this Kamailio has no TLS: start it with KamailioOpts::tls() or wss()")
    }

    /// The test CA (PEM) that signed the server certificate: what a client should trust.
    pub fn ca_file(&self) -> PathBuf {
        self.tls_files().ca.clone()
    }

    /// A second CA (PEM) that did not sign the server certificate: a client trusting only
    /// this one must refuse the server ("certificate not trusted").
    pub fn untrusted_ca_file(&self) -> PathBuf {
        self.tls_files().untrusted_ca.clone()
    }

    /// The port a transport ("udp", "tcp", "tls", "ws", "wss") listens on.
    pub fn port_for(&self, transport: &str) -> u16 {
        match transport.to_ascii_lowercase().as_str() {
            "udp" | "tcp" => self.port,
            "tls" => self.tls_port(),
            "ws" => self.ws_port(),
            "wss" => self.wss_port(),
            t => panic!("unknown transport {t:?} (udp, tcp, tls, ws, wss)"),
        }
    }

    /// 127.0.0.1:[`Self::port_for`].
    pub fn addr_for(&self, transport: &str) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port_for(transport)))
    }

    /// The registrar URI per transport: "udp" → `sip:127.0.0.1:PORT`, "tcp" →
    /// `sip:127.0.0.1:PORT;transport=tcp`, "tls" → `sip:127.0.0.1:TLS_PORT;transport=tls`,
    /// "ws" → `sip:127.0.0.1:WS_PORT;transport=ws`, "wss" → `...:WSS_PORT;transport=wss`.
    pub fn uri_for(&self, transport: &str) -> String {
        let t = transport.to_ascii_lowercase();
        let port = self.port_for(&t);
        if t == "udp" {
            format!("sip:{DOMAIN}:{port}")
        } else {
            format!("sip:{DOMAIN}:{port};transport={t}")
        }
    }

    /// Write a termphone config file with one account of `user` reaching this registrar over
    /// `transport`: `registrar = "sip:127.0.0.1:PORT"` (that transport's port, no transport
    /// parameter), `transport = "..."`, plus `tls_ca_file` (tls, wss) and `ws_path = "/"`
    /// (ws, wss). `extra` lines are appended to the account table.
    pub fn account_config_for(&self, user: &str, transport: &str, extra: &str) -> PathBuf {
        let t = transport.to_ascii_lowercase();
        let mut keys = format!("transport = \"{t}\"\n");
        if t == "tls" || t == "wss" {
            keys.push_str(&format!(
                "tls_ca_file = \"{}\"\n",
                toml_escape(&self.ca_file().display().to_string())
            ));
        }
        if t == "ws" || t == "wss" {
            keys.push_str("ws_path = \"/\"\n");
        }
        let path = self
            .dir()
            .join(format!("{user}-{t}-{}-config.toml", next_seq()));
        let text = format!(
            "[[account]]\nname = \"{user}\"\nuser = \"{user}\"\ndomain = \"{DOMAIN}\"\nregistrar = \"sip:{}\"\n{keys}{extra}",
            self.addr_for(&t)
        );
        std::fs::write(&path, text).expect("write the termphone config");
        path
    }

    /// Write a termphone config file (in the fixture's dir) with one account of `user` at
    /// this registrar; `extra` lines are appended to the account table (a password, expires…).
    pub fn account_config(&self, user: &str, extra: &str) -> PathBuf {
        let path = self
            .dir()
            .join(format!("{user}-{}-config.toml", next_seq()));
        let text = format!(
            "[[account]]\nname = \"{user}\"\nuser = \"{user}\"\ndomain = \"{DOMAIN}\"\nregistrar = \"sip:{}\"\n{extra}",
            self.addr()
        );
        std::fs::write(&path, text).expect("write the termphone config");
        path
    }

    /// The users it was started with.
    pub fn users(&self) -> &[User] {
        &self.opts.users
    }

    /// The digest algorithm of its challenges.
    pub fn auth_alg(&self) -> AuthAlg {
        self.opts.auth_alg
    }

    /// The test's temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Shared handle to the temp dir (to give to sipp or termphone of the same test).
    pub fn dir_handle(&self) -> Arc<TestDir> {
        Arc::clone(&self.dir)
    }

    /// Path of the log (stdout + stderr of every start, each headed by a marker line).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Everything in the log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// PID of the main process while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The main PID and its worker processes (empty when stopped).
    pub fn pids(&self) -> Vec<u32> {
        match self.pid() {
            Some(p) => {
                let mut v = vec![p];
                v.extend(child_pids(p));
                v
            }
            None => Vec::new(),
        }
    }

    /// True while the main process runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// One JSON-RPC call over the jsonrpcs datagram socket; the `result`, or the error.
    pub fn rpc(&self, method: &str, params: Value) -> Result<Value, String> {
        let me = self.base_dir().join(format!(
            "rpc-client-{}-{}.sock",
            std::process::id(),
            next_seq()
        ));
        let _ = std::fs::remove_file(&me);
        let sock = UnixDatagram::bind(&me).map_err(|e| format!("bind {}: {e}", me.display()))?;
        let result = (|| {
            sock.set_read_timeout(Some(Duration::from_secs(3)))
                .map_err(|e| e.to_string())?;
            let req =
                serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1});
            let text = req.to_string();
            sock.send_to(text.as_bytes(), self.rpc_socket())
                .map_err(|e| format!("send {method} to {}: {e}", self.rpc_socket().display()))?;
            let mut buf = vec![0u8; 1 << 20];
            let n = sock
                .recv(&mut buf)
                .map_err(|e| format!("no answer to {method}: {e}"))?;
            let v: Value = serde_json::from_slice(&buf[..n])
                .map_err(|e| format!("bad JSON-RPC answer to {method}: {e}"))?;
            if !v["error"].is_null() {
                return Err(format!("{method}: {}", v["error"]));
            }
            Ok(v["result"].clone())
        })();
        let _ = std::fs::remove_file(&me);
        result
    }

    /// Every binding in the location table (`ul.dump`).
    pub fn registrations(&self) -> Vec<Registration> {
        let r = self
            .rpc("ul.dump", Value::Array(Vec::new()))
            .unwrap_or_else(|e| panic!("read registrations: {e}"));
        parse_ul_dump(&r).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The bindings of one user (AoR = username).
    pub fn registrations_of(&self, user: &str) -> Vec<Registration> {
        self.registrations()
            .into_iter()
            .filter(|r| r.aor == user)
            .collect()
    }

    /// Wait until the location table satisfies `pred`; panics with the table and log if not.
    pub fn wait_registrations(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&[Registration]) -> bool,
    ) -> Vec<Registration> {
        if let Some(r) = wait_until(timeout, || {
            let regs = self.registrations();
            pred(&regs).then_some(regs)
        }) {
            return r;
        }
        panic!(
            "location table: not {what} within {timeout:?}: {:#?}\nlog:\n{}",
            self.registrations(),
            tail_file(&self.log_path, 4000)
        )
    }

    /// Run `kamcmd -s unix:CTL ARGS` and return its stdout (e.g. `["ul.dump"]`).
    pub fn kamcmd(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("kamcmd")
            .arg("-s")
            .arg(format!("unix:{}", self.ctl_socket().display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run kamcmd: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "kamcmd {args:?}: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Stop (SIGTERM to the main PID, SIGKILL after [`TERM_GRACE`]); also makes sure its
    /// workers are gone. Returns the main process's exit status. No-op when stopped.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let mut workers = child_pids(child.id());
        workers.extend(self.last_pids.iter().skip(1).copied());
        workers.sort_unstable();
        workers.dedup();
        let st = stop_child(&mut child, TERM_GRACE);
        // The main process stops its workers; give them a moment, then kill stragglers
        // (only those PIDs, and only while they are still a kamailio process).
        let gone = wait_until(Duration::from_secs(2), || {
            workers.iter().all(|p| !pid_alive(*p)).then_some(())
        });
        if gone.is_none() {
            for p in &workers {
                if pid_alive(*p) && comm(*p) == "kamailio" {
                    if let Ok(pid) = libc::pid_t::try_from(*p) {
                        // SAFETY: kill(2) on one PID that was a worker of our own Kamailio.
                        unsafe {
                            libc::kill(pid, libc::SIGKILL);
                        }
                    }
                }
            }
        }
        st
    }

    /// Stop and start again on the same port (bindings are lost). Panics if it does not come
    /// back within [`START_TIMEOUT`] (retries a few times while the port is still held).
    pub fn restart(&mut self) {
        self.stop();
        let mut last_err = String::new();
        for _ in 0..5 {
            match self.launch() {
                Ok(()) => return,
                Err(e) => last_err = e,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("restart on port {}: {last_err}", self.port);
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "---- kamailio log ({}) ----\n{}",
                self.log_path.display(),
                tail_file(&self.log_path, 8000)
            );
        }
    }
}

// ------------------------------------------------------------------ raw SIP over UDP

/// A SIP request written as text by [`SipClient`] (Via, Call-ID, CSeq, Max-Forwards and
/// Content-Length are filled in).
#[derive(Debug, Clone)]
pub struct RawRequest {
    /// Method, e.g. "REGISTER".
    pub method: String,
    /// Request-URI.
    pub uri: String,
    /// From URI (a tag is added).
    pub from: String,
    /// From tag.
    pub from_tag: String,
    /// To URI.
    pub to: String,
    /// To tag (in-dialog requests), if any.
    pub to_tag: Option<String>,
    /// Call-ID.
    pub call_id: String,
    /// CSeq number.
    pub cseq: u32,
    /// Via branch (unique per request; an ACK for a non-2xx reuses it).
    pub branch: String,
    /// Other header lines, in order.
    pub headers: Vec<(String, String)>,
    /// Body (Content-Type goes in `headers`).
    pub body: String,
}

impl RawRequest {
    /// A request with fresh Call-ID, tag and branch; From and To default to the URI.
    pub fn new(method: &str, uri: &str) -> RawRequest {
        let n = next_seq();
        let id = std::process::id();
        RawRequest {
            method: method.to_owned(),
            uri: uri.to_owned(),
            from: uri.to_owned(),
            from_tag: format!("tpkam{id}x{n}"),
            to: uri.to_owned(),
            to_tag: None,
            call_id: format!("tpkam-{id}-{n}@127.0.0.1"),
            cseq: 1,
            branch: format!("z9hG4bK-tpkam-{id}-{n}"),
            headers: Vec::new(),
            body: String::new(),
        }
    }
    /// Set the From URI.
    pub fn from(mut self, uri: &str) -> Self {
        self.from = uri.to_owned();
        self
    }
    /// Set the To URI.
    pub fn to(mut self, uri: &str) -> Self {
        self.to = uri.to_owned();
        self
    }
    /// Set the To tag (a request inside a dialog).
    pub fn with_to_tag(mut self, tag: &str) -> Self {
        self.to_tag = Some(tag.to_owned());
        self
    }
    /// Set the From tag.
    pub fn with_from_tag(mut self, tag: &str) -> Self {
        self.from_tag = tag.to_owned();
        self
    }
    /// Set the Call-ID.
    pub fn call_id(mut self, id: &str) -> Self {
        self.call_id = id.to_owned();
        self
    }
    /// Set the CSeq number.
    pub fn cseq(mut self, n: u32) -> Self {
        self.cseq = n;
        self
    }
    /// Add a header line.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
    /// Set the body.
    pub fn body(mut self, body: &str) -> Self {
        self.body = body.to_owned();
        self
    }

    /// The request as sent from `local` over UDP.
    pub fn to_text(&self, local: SocketAddr) -> String {
        self.to_text_over("UDP", &local.to_string())
    }

    /// The request with `Via: SIP/2.0/{transport} {sent_by}` (e.g. "TLS", "127.0.0.1:40000";
    /// "WS", "abc.invalid").
    pub fn to_text_over(&self, transport: &str, sent_by: &str) -> String {
        let local = sent_by;
        let mut s = format!(
            "{} {} SIP/2.0\r\nVia: SIP/2.0/{transport} {local};branch={};rport\r\nMax-Forwards: 70\r\n\
             From: <{}>;tag={}\r\nTo: <{}>{}\r\nCall-ID: {}\r\nCSeq: {} {}\r\n",
            self.method,
            self.uri,
            self.branch,
            self.from,
            self.from_tag,
            self.to,
            self.to_tag
                .as_deref()
                .map(|t| format!(";tag={t}"))
                .unwrap_or_default(),
            self.call_id,
            self.cseq,
            self.method
        );
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
        s.push_str(&format!("Content-Length: {}\r\n\r\n", self.body.len()));
        s.push_str(&self.body);
        s
    }

    /// The ACK for a non-2xx final response to this INVITE (same branch, the response's To).
    pub fn ack_text(&self, local: SocketAddr, resp: &SipResponse) -> String {
        let to = resp
            .header("To")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("<{}>", self.to));
        format!(
            "ACK {} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={};rport\r\nMax-Forwards: 70\r\n\
             From: <{}>;tag={}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {} ACK\r\n\
             Content-Length: 0\r\n\r\n",
            self.uri, self.branch, self.from, self.from_tag, self.call_id, self.cseq
        )
    }
}

/// A SIP response as text, with simple header access.
#[derive(Debug, Clone)]
pub struct SipResponse {
    /// Status code.
    pub code: u16,
    /// Reason phrase.
    pub reason: String,
    /// Header lines (name as written, value trimmed), in order.
    pub headers: Vec<(String, String)>,
    /// The whole datagram.
    pub raw: String,
}

fn long_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    match lower.as_str() {
        "v" => "via".into(),
        "f" => "from".into(),
        "t" => "to".into(),
        "i" => "call-id".into(),
        "m" => "contact".into(),
        "l" => "content-length".into(),
        "c" => "content-type".into(),
        _ => lower,
    }
}

impl SipResponse {
    /// Parse a response datagram; None if it is not a SIP response.
    pub fn parse(data: &[u8]) -> Option<SipResponse> {
        let raw = String::from_utf8_lossy(data).into_owned();
        let head = raw.split("\r\n\r\n").next()?;
        let mut lines = head.split("\r\n");
        let status = lines.next()?;
        let rest = status.strip_prefix("SIP/2.0 ")?;
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code = code.parse().ok()?;
        let mut headers: Vec<(String, String)> = Vec::new();
        for l in lines {
            if l.starts_with(' ') || l.starts_with('\t') {
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(l.trim());
                }
                continue;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        Some(SipResponse {
            code,
            reason: reason.to_owned(),
            headers,
            raw,
        })
    }

    /// First value of a header (case-insensitive, compact forms accepted).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).next()
    }

    /// Every value of a header, in order.
    pub fn header_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let want = long_name(name);
        self.headers
            .iter()
            .filter(move |(k, _)| long_name(k) == want)
            .map(|(_, v)| v.as_str())
    }

    /// The challenge of a 401 (WWW-Authenticate) or 407 (Proxy-Authenticate).
    pub fn challenge(&self) -> Option<DigestChallenge> {
        let h = match self.code {
            401 => "WWW-Authenticate",
            407 => "Proxy-Authenticate",
            _ => return None,
        };
        self.header(h).and_then(DigestChallenge::parse)
    }
}

/// A `Digest ...` challenge, parameters unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestChallenge {
    /// Every parameter, lower-case names, values unquoted, in order.
    pub params: Vec<(String, String)>,
}

impl DigestChallenge {
    /// Parse a WWW-/Proxy-Authenticate value; None unless the scheme is Digest.
    pub fn parse(value: &str) -> Option<DigestChallenge> {
        let v = value.trim();
        let (scheme, rest) = v.split_once(char::is_whitespace)?;
        if !scheme.eq_ignore_ascii_case("digest") {
            return None;
        }
        let mut params = Vec::new();
        let mut s = rest.trim();
        while !s.is_empty() {
            let (name, after) = s.split_once('=')?;
            let name = name
                .trim()
                .trim_start_matches(',')
                .trim()
                .to_ascii_lowercase();
            let after = after.trim_start();
            let (val, tail) = if let Some(q) = after.strip_prefix('"') {
                let mut out = String::new();
                let mut chars = q.char_indices();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                out.push(n);
                            }
                        }
                        '"' => {
                            end = Some(i + 1);
                            break;
                        }
                        c => out.push(c),
                    }
                }
                (out, &q[end?..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_owned(), &after[end..])
            };
            params.push((name, val));
            s = tail.trim_start().trim_start_matches(',').trim_start();
        }
        Some(DigestChallenge { params })
    }

    /// A parameter's value (case-insensitive name).
    pub fn get(&self, name: &str) -> Option<&str> {
        let n = name.to_ascii_lowercase();
        self.params
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.as_str())
    }

    /// `realm`.
    pub fn realm(&self) -> Option<&str> {
        self.get("realm")
    }
    /// `nonce`.
    pub fn nonce(&self) -> Option<&str> {
        self.get("nonce")
    }
    /// `qop` options, split at commas.
    pub fn qop(&self) -> Vec<String> {
        self.get("qop")
            .map(|q| q.split(',').map(|s| s.trim().to_owned()).collect())
            .unwrap_or_default()
    }
    /// `algorithm` (None when absent, which means MD5).
    pub fn algorithm(&self) -> Option<&str> {
        self.get("algorithm")
    }
}

/// A UDP socket on 127.0.0.1 that sends raw SIP requests and reads the responses.
pub struct SipClient {
    sock: UdpSocket,
}

impl Default for SipClient {
    fn default() -> Self {
        Self::new()
    }
}

impl SipClient {
    /// Bind 127.0.0.1:0.
    pub fn new() -> SipClient {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        SipClient { sock }
    }

    /// Our address (what goes in Via and Contact).
    pub fn local_addr(&self) -> SocketAddr {
        self.sock.local_addr().expect("local addr")
    }

    /// Send raw bytes.
    pub fn send_raw(&self, text: &str, dest: SocketAddr) {
        self.sock
            .send_to(text.as_bytes(), dest)
            .unwrap_or_else(|e| panic!("send to {dest}: {e}"));
    }

    /// Send once and wait up to `wait` for a final response to this request (Call-ID and
    /// CSeq match; provisional responses and strays are skipped).
    pub fn send_once(
        &self,
        req: &RawRequest,
        dest: SocketAddr,
        wait: Duration,
    ) -> Result<SipResponse, String> {
        self.send_raw(&req.to_text(self.local_addr()), dest);
        self.recv_final(req, Instant::now() + wait)
    }

    fn recv_final(&self, req: &RawRequest, deadline: Instant) -> Result<SipResponse, String> {
        let mut buf = vec![0u8; 65_535];
        let want_cseq = format!("{} {}", req.cseq, req.method);
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(format!("no final response to {} {}", req.method, req.uri));
            }
            self.sock
                .set_read_timeout(Some(deadline - now))
                .map_err(|e| e.to_string())?;
            let n = match self.sock.recv_from(&mut buf) {
                Ok((n, _)) => n,
                Err(_) => continue,
            };
            let Some(r) = SipResponse::parse(&buf[..n]) else {
                continue;
            };
            if r.code >= 200
                && r.header("Call-ID") == Some(req.call_id.as_str())
                && r.header("CSeq").is_some_and(|c| {
                    c.split_whitespace().collect::<Vec<_>>().join(" ") == want_cseq
                })
            {
                return Ok(r);
            }
        }
    }

    /// Send and wait for the final response, retransmitting (500 ms doubling, 4 s cap) for
    /// up to `timeout`. For an INVITE answered with a non-2xx, the ACK is sent.
    pub fn request(
        &self,
        req: &RawRequest,
        dest: SocketAddr,
        timeout: Duration,
    ) -> Result<SipResponse, String> {
        let text = req.to_text(self.local_addr());
        let end = Instant::now() + timeout;
        let mut interval = Duration::from_millis(500);
        loop {
            self.send_raw(&text, dest);
            let next = (Instant::now() + interval).min(end);
            match self.recv_final(req, next) {
                Ok(r) => {
                    if req.method == "INVITE" && r.code >= 300 {
                        self.send_raw(&req.ack_text(self.local_addr(), &r), dest);
                    }
                    return Ok(r);
                }
                Err(e) if Instant::now() >= end => return Err(format!("{e} within {timeout:?}")),
                Err(_) => interval = (interval * 2).min(Duration::from_secs(4)),
            }
        }
    }
}

// ------------------------------------------------------------------ digest, streams, WebSocket

/// An `Authorization`/`Proxy-Authorization` value answering an MD5 challenge (qop=auth when
/// offered, nc 00000001) for `method` `uri`.
pub fn digest_authorization(
    ch: &DigestChallenge,
    method: &str,
    uri: &str,
    user: &str,
    password: &str,
) -> String {
    use md5::{Digest, Md5};
    let hex = |s: String| -> String {
        Md5::digest(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let realm = ch.realm().unwrap_or_default();
    let nonce = ch.nonce().unwrap_or_default();
    let ha1 = hex(format!("{user}:{realm}:{password}"));
    let ha2 = hex(format!("{method}:{uri}"));
    let cnonce = format!("tpkam{}", next_seq());
    if ch.qop().iter().any(|q| q == "auth") {
        let resp = hex(format!("{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}"));
        format!(
            "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{resp}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"{cnonce}\""
        )
    } else {
        let resp = hex(format!("{ha1}:{nonce}:{ha2}"));
        format!(
            "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{resp}\", algorithm=MD5"
        )
    }
}

/// Split one SIP message off the front of `buf` (stream framing: headers, blank line,
/// Content-Length bytes of body); None until it is complete. Leading CRLF keepalives are
/// dropped.
pub fn take_stream_message(buf: &mut Vec<u8>) -> Option<String> {
    while buf.starts_with(b"\r\n") {
        buf.drain(..2);
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let len = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| long_name(k.trim()) == "content-length")
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    if buf.len() < end + len {
        return None;
    }
    let msg: Vec<u8> = buf.drain(..end + len).collect();
    Some(String::from_utf8_lossy(&msg).into_owned())
}

/// SIP over a byte stream (TCP, or TLS through `openssl s_client`): write requests, read
/// whole messages. `R` is read on a thread (so reads can time out whatever the stream).
pub struct StreamSip<W: Write> {
    writer: W,
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
}

impl<W: Write> StreamSip<W> {
    /// Wrap a writer and a reader of the same connection.
    pub fn new<R: std::io::Read + Send + 'static>(writer: W, mut reader: R) -> StreamSip<W> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            loop {
                match reader.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(chunk[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        StreamSip {
            writer,
            rx,
            buf: Vec::new(),
        }
    }

    /// Write text as it is.
    pub fn send(&mut self, text: &str) -> Result<(), String> {
        self.writer
            .write_all(text.as_bytes())
            .and_then(|()| self.writer.flush())
            .map_err(|e| format!("write: {e}"))
    }

    /// The next whole SIP message within `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = take_stream_message(&mut self.buf) {
                return Ok(m);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(data) => self.buf.extend_from_slice(&data),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "no whole SIP message within {timeout:?} (have {:?})",
                        String::from_utf8_lossy(&self.buf)
                    ))
                }
                Err(_) => {
                    return Err(format!(
                        "connection closed (have {:?})",
                        String::from_utf8_lossy(&self.buf)
                    ))
                }
            }
        }
    }

    /// The next SIP response within `timeout` (requests and other responses are skipped
    /// unless they match `call_id`).
    pub fn recv_response(
        &mut self,
        call_id: &str,
        timeout: Duration,
    ) -> Result<SipResponse, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self.recv(left)?;
            if let Some(r) = SipResponse::parse(m.as_bytes()) {
                if r.code >= 200 && r.header("Call-ID") == Some(call_id) {
                    return Ok(r);
                }
            }
        }
    }
}

/// A WebSocket client (RFC 6455, subprotocol `sip`) over a plain TcpStream, for one SIP
/// message per text frame (RFC 7118). Frames it sends are masked, as a client's must be.
pub struct WsClient {
    stream: std::net::TcpStream,
    /// The HTTP response to the upgrade request (status line and headers).
    pub handshake: String,
    buf: Vec<u8>,
}

/// The status code of an HTTP response head ("HTTP/1.1 101 ...").
pub fn http_status(head: &str) -> Option<u16> {
    head.split_whitespace().nth(1)?.parse().ok()
}

/// A header of an HTTP response head (case-insensitive name).
pub fn http_header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

impl WsClient {
    /// Connect to `addr`, send the upgrade request for `path` offering `protocol` (None: no
    /// Sec-WebSocket-Protocol) and read the response head. Ok even if it is not a 101: check
    /// [`WsClient::status`].
    pub fn handshake(
        addr: SocketAddr,
        path: &str,
        protocol: Option<&str>,
    ) -> Result<WsClient, String> {
        use std::io::Read;
        let mut stream =
            std::net::TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let proto = protocol
            .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             {proto}Origin: http://127.0.0.1\r\n\r\n"
        );
        stream
            .write_all(req.as_bytes())
            .map_err(|e| format!("send the upgrade request: {e}"))?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let n = stream
                .read(&mut chunk)
                .map_err(|e| format!("read the upgrade response: {e}"))?;
            if n == 0 {
                return Err(format!(
                    "closed during the handshake: {:?}",
                    String::from_utf8_lossy(&buf)
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let handshake = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        Ok(WsClient {
            stream,
            handshake,
            buf,
        })
    }

    /// Connect and require `101` with `Sec-WebSocket-Protocol: sip`.
    pub fn connect_sip(addr: SocketAddr) -> Result<WsClient, String> {
        let c = Self::handshake(addr, "/", Some("sip"))?;
        if c.status() != Some(101) || c.header("Sec-WebSocket-Protocol") != Some("sip") {
            return Err(format!("not a SIP WebSocket: {}", c.handshake));
        }
        Ok(c)
    }

    /// Status code of the handshake response.
    pub fn status(&self) -> Option<u16> {
        http_status(&self.handshake)
    }

    /// A header of the handshake response.
    pub fn header(&self, name: &str) -> Option<&str> {
        http_header(&self.handshake, name)
    }

    /// Our end of the TCP connection.
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local addr")
    }

    fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> Result<(), String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mask = (nanos ^ (next_seq() as u32).wrapping_mul(0x9e37_79b9)).to_be_bytes();
        let mut f = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 0xffff => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream
            .write_all(&f)
            .map_err(|e| format!("send a WebSocket frame: {e}"))
    }

    /// Send one SIP message as one masked text frame.
    pub fn send_text(&mut self, text: &str) -> Result<(), String> {
        self.send_frame(0x1, text.as_bytes())
    }

    /// The payload of the next text (or binary) frame within `timeout`; pings are answered,
    /// a close frame is an error.
    pub fn recv_text(&mut self, timeout: Duration) -> Result<String, String> {
        use std::io::Read;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((opcode, payload)) = self.take_frame() {
                match opcode {
                    0x1 | 0x2 => return Ok(String::from_utf8_lossy(&payload).into_owned()),
                    0x9 => self.send_frame(0xA, &payload)?,
                    0x8 => return Err("the server closed the WebSocket".into()),
                    _ => {}
                }
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no WebSocket frame within {timeout:?}"));
            }
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| e.to_string())?;
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err("the WebSocket connection closed".into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// (opcode, unmasked payload) of a whole frame at the front of the buffer.
    fn take_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let b = &self.buf;
        if b.len() < 2 {
            return None;
        }
        let opcode = b[0] & 0x0f;
        let masked = b[1] & 0x80 != 0;
        let (len, mut at) = match b[1] & 0x7f {
            126 => (u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) as usize, 4),
            127 => {
                let mut l = [0u8; 8];
                l.copy_from_slice(b.get(2..10)?);
                (u64::from_be_bytes(l) as usize, 10)
            }
            n => (n as usize, 2),
        };
        let mask = if masked {
            let m: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
            at += 4;
            Some(m)
        } else {
            None
        };
        let mut payload = b.get(at..at + len)?.to_vec();
        if let Some(m) = mask {
            for (i, x) in payload.iter_mut().enumerate() {
                *x ^= m[i % 4];
            }
        }
        self.buf.drain(..at + len);
        Some((opcode, payload))
    }

    /// The next SIP message (one frame) whose Call-ID is `call_id` and that is a final
    /// response, within `timeout`.
    pub fn recv_response(
        &mut self,
        call_id: &str,
        timeout: Duration,
    ) -> Result<SipResponse, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self.recv_text(left)?;
            if let Some(r) = SipResponse::parse(m.as_bytes()) {
                if r.code >= 200 && r.header("Call-ID") == Some(call_id) {
                    return Ok(r);
                }
            }
        }
    }
}
