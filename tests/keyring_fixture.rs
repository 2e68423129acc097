//! A private, real Secret Service for keyring tests: a session `dbus-daemon` on a socket in a
//! temp dir and `gnome-keyring-daemon --foreground --unlock --components=secrets` on it (the
//! same as `dbus-run-session -- sh -c 'echo pw | gnome-keyring-daemon --unlock ...'`, but with
//! both processes owned and stopped by the test). Children get `DBUS_SESSION_BUS_ADDRESS` from
//! [`SecretService::env`]. Included by other tests with `#[path]`; its own test checks it.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running session bus with an unlocked gnome-keyring Secret Service; stopped on drop.
pub struct SecretService {
    dir: tempfile::TempDir,
    bus: Child,
    keyring: Child,
    address: String,
}

fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

impl SecretService {
    /// Start one, or say why it cannot run here (`Err`), so the caller can fall back.
    pub fn start() -> Result<SecretService, String> {
        for p in ["dbus-daemon", "gnome-keyring-daemon", "dbus-send"] {
            if !have(p) {
                return Err(format!(
                    "{p} not found (Debian packages dbus, gnome-keyring; scripts/install-deps.sh)"
                ));
            }
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let home = dir.path().join("home");
        let run = dir.path().join("run");
        for d in [&home, &run] {
            std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700));
        }
        let socket = dir.path().join("bus");
        let mut bus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .arg(format!("--address=unix:path={}", socket.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("dbus-daemon: {e}"))?;
        let mut out = bus.stdout.take().expect("piped");
        let mut address = String::new();
        let mut byte = [0u8; 1];
        while !address.ends_with('\n') {
            match out.read(&mut byte) {
                Ok(1) => address.push(byte[0] as char),
                _ => {
                    let _ = bus.kill();
                    let _ = bus.wait();
                    return Err("dbus-daemon printed no address".into());
                }
            }
        }
        let address = address.trim().to_string();
        let mut keyring = match Command::new("gnome-keyring-daemon")
            .args(["--foreground", "--unlock", "--components=secrets"])
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .env("HOME", &home)
            .env("XDG_RUNTIME_DIR", &run)
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env_remove("DISPLAY")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                let _ = bus.kill();
                let _ = bus.wait();
                return Err(format!("gnome-keyring-daemon: {e}"));
            }
        };
        // The login keyring's password on stdin, then EOF.
        if let Some(mut stdin) = keyring.stdin.take() {
            let _ = stdin.write_all(b"keyring-test-login\n");
        }
        let ss = SecretService {
            dir,
            bus,
            keyring,
            address,
        };
        // Wait until the Secret Service owns its bus name (before that, the bus could
        // auto-activate a second, locked instance).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if ss.name_has_owner("org.freedesktop.secrets") {
                return Ok(ss);
            }
            if Instant::now() > deadline {
                return Err("gnome-keyring-daemon did not take org.freedesktop.secrets".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn name_has_owner(&self, name: &str) -> bool {
        Command::new("dbus-send")
            .args([
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
            ])
            .arg(format!("string:{name}"))
            .env("DBUS_SESSION_BUS_ADDRESS", &self.address)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("boolean true"))
            .unwrap_or(false)
    }

    /// The environment a child needs to use this Secret Service.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("DBUS_SESSION_BUS_ADDRESS".to_string(), self.address.clone())]
    }

    /// The temp dir holding the bus socket and the keyring's home.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// PIDs of the two processes (to check they are gone after drop).
    pub fn pids(&self) -> [u32; 2] {
        [self.bus.id(), self.keyring.id()]
    }
}

impl Drop for SecretService {
    fn drop(&mut self) {
        for c in [&mut self.keyring, &mut self.bus] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Start the Secret Service, or print why not and return `None` (the caller skips; the source
/// order is covered with the crate's mock store in src/config/secrets.rs).
pub fn secret_service_or_skip(test: &str) -> Option<SecretService> {
    match SecretService::start() {
        Ok(s) => Some(s),
        Err(why) if std::env::var_os("TERMPHONE_REQUIRE_KEYRING").is_some() => {
            panic!("{test}: TERMPHONE_REQUIRE_KEYRING is set but no Secret Service: {why}")
        }
        Err(why) => {
            eprintln!("{test}: skipped, no real Secret Service here: {why}");
            None
        }
    }
}

#[test]
fn the_fixture_starts_and_stops_a_secret_service() {
    let Some(ss) = secret_service_or_skip("fixture") else {
        return;
    };
    assert!(ss.name_has_owner("org.freedesktop.secrets"));
    let pids = ss.pids();
    drop(ss);
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} still running"
        );
    }
}
