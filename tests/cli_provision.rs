//! `termphone account import / export` for real: payloads from a file, stdin, a Zoiper OEM URL
//! and a QR code PNG the test draws itself go into config.toml at the XDG path (comments
//! kept), the password into a real gnome-keyring Secret Service (tests/keyring_fixture.rs),
//! and the imported account registers with a real Kamailio (tests/support/kamailio.rs).
//! export → import round-trips, also through the terminal QR code. No password ever appears
//! in the output of import or export (without --with-password).

mod support;

#[path = "keyring_fixture.rs"]
mod keyring_fixture;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use keyring_fixture::{secret_service_or_skip, SecretService};
use support::kamailio::{Kamailio, KamailioOpts};
use support::{Termphone, TestDir};

const WAIT: Duration = Duration::from_secs(20);
/// alice's password at the Kamailio fixture.
const PW: &str = "alicepw";
/// What the user wrote in their config before importing; it must survive.
const EXISTING: &str = "# my termphone config, keep this comment\n[general]\n\
    sip_trace = false # and this one\n\n# audio devices\n[audio]\n";

/// The XDG config home that [`Termphone`] (tests/support) gives termphone in `dir`.
fn xdg_config_home(dir: &Path) -> PathBuf {
    dir.join("xdg").join("config")
}

fn config_path(dir: &Path) -> PathBuf {
    xdg_config_home(dir).join("termphone").join("config.toml")
}

/// Write [`EXISTING`] as the config at the XDG path.
fn write_existing(dir: &Path) {
    let path = config_path(dir);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, EXISTING).unwrap();
}

/// Run termphone with the XDG dirs of `dir`, `env` (the keyring's bus), `stdin`.
fn termphone(dir: &Path, env: &[(String, String)], args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_termphone"))
        .args(args)
        .env("XDG_CONFIG_HOME", xdg_config_home(dir))
        .env("XDG_DATA_HOME", dir.join("xdg/data"))
        .env("XDG_STATE_HOME", dir.join("xdg/state"))
        // No running instance's control socket is found (account list shows its state).
        .env("XDG_RUNTIME_DIR", dir.join("xdg/runtime"))
        .env(
            "DBUS_SESSION_BUS_ADDRESS",
            "unix:path=/nonexistent/termphone-test-bus",
        )
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn assert_ok(o: &Output, what: &str) -> String {
    let (out, err) = text(o);
    assert!(o.status.success(), "{what}: {:?}\n{out}\n{err}", o.status);
    out
}

fn assert_no_password(outputs: &[&Output]) {
    for o in outputs {
        let (out, err) = text(o);
        assert!(
            !out.contains(PW) && !err.contains(PW),
            "the password leaked:\n{out}\n{err}"
        );
    }
}

/// The config at the XDG path still starts with what the user wrote, and holds `name`.
fn assert_config_kept(dir: &Path, name: &str) -> String {
    let cfg = std::fs::read_to_string(config_path(dir)).unwrap();
    assert!(cfg.starts_with(EXISTING), "comments and order kept:\n{cfg}");
    assert!(cfg.contains("# my termphone config, keep this comment\n"));
    assert!(cfg.contains(&format!("name = \"{name}\"")), "{cfg}");
    assert!(!cfg.contains(PW), "no password in the file:\n{cfg}");
    cfg
}

/// `termphone account list` says the password of `name` is in the keyring.
fn assert_in_keyring(dir: &Path, ss: &SecretService, name: &str) -> Output {
    let list = termphone(dir, &ss.env(), &["account", "list"], b"");
    let out = assert_ok(&list, "list");
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{name}\t")))
        .unwrap_or_else(|| panic!("no {name} in:\n{out}"));
    assert!(
        line.ends_with("\tpassword=keyring\tstate=not running"),
        "{line}"
    );
    list
}

/// `termphone serve` with the config at the XDG path registers `name` as alice and unregisters.
fn assert_registers(k: &Kamailio, ss: &SecretService, name: &str) {
    let mut b = Termphone::builder(&["serve", "--echo"]).dir(k.dir_handle());
    for (key, v) in ss.env() {
        b = b.env(key, v);
    }
    let mut srv = b.spawn();
    let ev = srv.wait_event(
        |e| e["event"] == "registration" && (e["state"] == "registered" || e["state"] == "failed"),
        WAIT,
    );
    assert_eq!(ev["state"], "registered", "{ev}\n{}", srv.stderr());
    assert_eq!(ev["account"], name);
    k.wait_registrations(WAIT, "alice registered", |r| {
        r.iter().any(|b| b.aor == "alice")
    });
    srv.stop();
    k.wait_registrations(WAIT, "unregistered at exit", |r| {
        !r.iter().any(|b| b.aor == "alice")
    });
    let log = std::fs::read_to_string(srv.log_path()).unwrap_or_default();
    assert!(
        !srv.stderr().contains(PW) && !log.contains(PW),
        "password leaked"
    );
}

/// A Kamailio and a Secret Service, or `None` (skipped) where they cannot run.
fn fixtures(test: &str) -> Option<(Kamailio, SecretService)> {
    if !support::kamailio::kamailio_available() {
        eprintln!("{test}: skipped, no kamailio");
        return None;
    }
    let ss = secret_service_or_skip(test)?;
    Some((Kamailio::start(KamailioOpts::default()), ss))
}

/// Import `source` (with `stdin`), then check the file, the keyring and a registration.
fn import_and_register(
    k: &Kamailio,
    ss: &SecretService,
    args: &[&str],
    stdin: &[u8],
    name: &str,
) -> Vec<Output> {
    let dir = k.dir();
    write_existing(dir);
    let mut full = vec!["account", "import"];
    full.extend_from_slice(args);
    let import = termphone(dir, &ss.env(), &full, stdin);
    let out = assert_ok(&import, "import");
    assert_eq!(
        out,
        format!(
            "imported account {name}: registrar sip:{}, transport udp, password stored in the keyring\n",
            k.addr()
        )
    );
    let cfg = assert_config_kept(dir, name);
    assert!(
        cfg.contains(&format!("registrar = \"sip:{}\"", k.addr())),
        "{cfg}"
    );
    assert!(cfg.contains("user = \"alice\""), "{cfg}");
    let list = assert_in_keyring(dir, ss, name);
    assert_registers(k, ss, name);
    assert_no_password(&[&import, &list]);
    vec![import, list]
}

fn key_values(k: &Kamailio) -> String {
    format!(
        "protocol=sip\nserver=127.0.0.1\nport={}\nusername=alice\npassword={PW}\ntransport=udp\nfoo=bar\n",
        k.port()
    )
}

#[test]
fn import_key_values_from_a_file_registers() {
    let Some((k, ss)) = fixtures("import_key_values_from_a_file") else {
        return;
    };
    let file = k.dir().join("provider.txt");
    std::fs::write(&file, key_values(&k)).unwrap();
    let outs = import_and_register(&k, &ss, &[file.to_str().unwrap()], b"", "alice@127.0.0.1");
    // The unknown key is named, its value is not.
    let (_, err) = text(&outs[0]);
    assert!(err.contains("unknown key \"foo\""), "{err}");
    assert!(!err.contains("bar"), "{err}");
}

#[test]
fn import_key_values_from_stdin_with_a_name_registers() {
    let Some((k, ss)) = fixtures("import_key_values_from_stdin") else {
        return;
    };
    let payload = format!(
        "server=127.0.0.1;port={};username=alice;password={PW}",
        k.port()
    );
    import_and_register(
        &k,
        &ss,
        &["-", "--name", "office"],
        payload.as_bytes(),
        "office",
    );
}

#[test]
fn import_a_zoiper_oem_url_registers() {
    let Some((k, ss)) = fixtures("import_a_zoiper_oem_url") else {
        return;
    };
    let url = format!(
        "https://oem.zoiper.com/qr.php?provider_id=0123abcd&u=alice&h=127.0.0.1:{}&p={PW}&tr=0",
        k.port()
    );
    let file = k.dir().join("url.txt");
    std::fs::write(&file, &url).unwrap();
    let outs = import_and_register(
        &k,
        &ss,
        &[file.to_str().unwrap(), "--name", "zoiper"],
        b"",
        "zoiper",
    );
    let (_, err) = text(&outs[0]);
    assert!(err.contains("\"provider_id\""), "{err}");
    assert!(!err.contains("0123abcd"), "{err}");
}

/// Draw `text` as a QR code PNG (4 px per module, 4-module quiet zone).
fn qr_png(text: &str) -> Vec<u8> {
    let code = qrcode::QrCode::new(text.as_bytes()).unwrap();
    let bitmap = code.to_colors();
    let w = code.width();
    png_of(w, 4, |x, y| bitmap[y * w + x] == qrcode::Color::Dark)
}

/// A greyscale PNG of a `w`×`w` module grid, `scale` pixels per module, a quiet zone of 4.
fn png_of(w: usize, scale: u32, dark: impl Fn(usize, usize) -> bool) -> Vec<u8> {
    let size = (w as u32 + 8) * scale;
    let img = image::GrayImage::from_fn(size, size, |x, y| {
        let (mx, my) = ((x / scale) as usize, (y / scale) as usize);
        let on = (4..4 + w).contains(&mx) && (4..4 + w).contains(&my) && dark(mx - 4, my - 4);
        image::Luma([if on { 0 } else { 255 }])
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

#[test]
fn import_a_qr_code_png_registers() {
    let Some((k, ss)) = fixtures("import_a_qr_code_png") else {
        return;
    };
    let file = k.dir().join("provider-qr.png");
    std::fs::write(&file, qr_png(&key_values(&k))).unwrap();
    import_and_register(&k, &ss, &[file.to_str().unwrap()], b"", "alice@127.0.0.1");
    // The same image on stdin, under another name.
    let png = std::fs::read(&file).unwrap();
    let again = termphone(
        k.dir(),
        &ss.env(),
        &["account", "import", "-", "--name", "from-stdin"],
        &png,
    );
    assert_ok(&again, "import png from stdin");
    assert_in_keyring(k.dir(), &ss, "from-stdin");
    assert_no_password(&[&again]);
}

/// The half-block QR code of `export --qr` as a PNG (each character is two module rows).
fn art_to_png(art: &str) -> Vec<u8> {
    let lines: Vec<Vec<char>> = art.lines().map(|l| l.chars().collect()).collect();
    let w = lines[0].len();
    let h = lines.len() * 2;
    let dark = |x: usize, y: usize| match lines.get(y / 2).and_then(|l| l.get(x)) {
        Some('█') => true,
        Some('▀') => y.is_multiple_of(2),
        Some('▄') => y % 2 == 1,
        _ => false,
    };
    // The art has its own quiet zone; png_of adds another, which does no harm.
    png_of(w.max(h), 4, dark)
}

#[test]
fn export_import_round_trip_and_no_password_without_the_flag() {
    let Some((k, ss)) = fixtures("export_import_round_trip") else {
        return;
    };
    let dir = k.dir();
    import_and_register(
        &k,
        &ss,
        &["-", "--name", "work"],
        key_values(&k).as_bytes(),
        "work",
    );

    let export = termphone(dir, &ss.env(), &["account", "export", "work"], b"");
    let payload = assert_ok(&export, "export");
    assert_eq!(
        payload,
        format!(
            "protocol=sip\nserver=127.0.0.1\nport={}\nusername=alice\ntransport=udp\n",
            k.port()
        )
    );
    let (_, err) = text(&export);
    assert!(err.contains("--with-password"), "{err}");
    let qr = termphone(dir, &ss.env(), &["account", "export", "work", "--qr"], b"");
    let art = assert_ok(&qr, "export --qr");
    assert!(art.contains('█') && !art.contains('\x1b'), "{art}");
    assert_no_password(&[&export, &qr]);

    let with_pw = termphone(
        dir,
        &ss.env(),
        &["account", "export", "work", "--with-password"],
        b"",
    );
    let full = assert_ok(&with_pw, "export --with-password");
    assert_eq!(full, format!("{payload}password={PW}\n"));

    // Into a second machine's config (a fresh XDG dir): from the text, then from the QR code
    // drawn in the terminal (read back with rqrr through a PNG).
    let other: Arc<TestDir> = support::test_dir();
    let od = other.path();
    let imp = termphone(
        od,
        &ss.env(),
        &["account", "import", "-", "--name", "work"],
        full.as_bytes(),
    );
    assert_ok(&imp, "re-import");
    let qr_png = od.join("qr.png");
    std::fs::write(&qr_png, art_to_png(&art)).unwrap();
    let imp_qr = termphone(
        od,
        &ss.env(),
        &[
            "account",
            "import",
            qr_png.to_str().unwrap(),
            "--name",
            "work-qr",
        ],
        b"",
    );
    let out = assert_ok(&imp_qr, "import of the exported QR code");
    assert!(out.contains("no password in the payload"), "{out}");
    for name in ["work", "work-qr"] {
        let back = termphone(od, &ss.env(), &["account", "export", name], b"");
        assert_eq!(assert_ok(&back, "export again"), payload, "{name}");
    }
    // The keyring of the fixture is shared: "work" there holds the exported password.
    assert_in_keyring(od, &ss, "work");
    assert_no_password(&[&imp, &imp_qr]);
}

#[test]
fn duplicate_names_are_refused_unless_replace() {
    let dir = support::test_dir();
    let d = dir.path();
    write_existing(d);
    let payload = "server=127.0.0.1\nusername=alice\n";
    let first = termphone(
        d,
        &[],
        &["account", "import", "-", "--name", "a"],
        payload.as_bytes(),
    );
    let out = assert_ok(&first, "first import");
    assert!(out.contains("no password in the payload"), "{out}");
    let dup = termphone(
        d,
        &[],
        &["account", "import", "-", "--name", "a"],
        b"server=127.0.0.2\nusername=bob\n",
    );
    assert_eq!(dup.status.code(), Some(1));
    let (_, err) = text(&dup);
    assert!(
        err.contains("already exists") && err.contains("--replace"),
        "{err}"
    );
    let cfg = assert_config_kept(d, "a");
    assert!(cfg.contains("127.0.0.1") && !cfg.contains("bob"), "{cfg}");
    let rep = termphone(
        d,
        &[],
        &["account", "import", "-", "--name", "a", "--replace"],
        b"server=127.0.0.2\nusername=bob\n",
    );
    assert_ok(&rep, "replace");
    let cfg = assert_config_kept(d, "a");
    assert!(
        cfg.contains("user = \"bob\"") && !cfg.contains("user = \"alice\""),
        "{cfg}"
    );
    assert_eq!(cfg.matches("[[account]]").count(), 1, "{cfg}");
}

#[test]
fn without_a_keyring_import_fails_clearly_or_writes_the_file_with_a_warning() {
    let dir = support::test_dir();
    let d = dir.path();
    let payload = format!("server=127.0.0.1\nusername=alice\npassword={PW}\n");
    let cfg = d.join("explicit.toml");
    let args = ["--config", cfg.to_str().unwrap(), "account", "import", "-"];
    let fail = termphone(d, &[], &args, payload.as_bytes());
    assert_eq!(fail.status.code(), Some(1));
    let (_, err) = text(&fail);
    assert!(
        err.contains("OS keyring")
            && err.contains("password_cmd")
            && err.contains("--password-in-file"),
        "{err}"
    );
    assert!(!cfg.exists(), "nothing written");
    let mut args = args.to_vec();
    args.push("--password-in-file");
    let ok = termphone(d, &[], &args, payload.as_bytes());
    let out = assert_ok(&ok, "--password-in-file");
    assert!(out.contains("password written to the config file"), "{out}");
    let (_, err) = text(&ok);
    assert!(err.contains("password stored in the config file"), "{err}");
    let written = std::fs::read_to_string(&cfg).unwrap();
    assert!(written.contains("password = "), "{written}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cfg).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "a new config is private");
    }
    assert_no_password(&[&fail, &ok]);
}

#[test]
fn bad_payloads_fail_clearly_without_echoing_the_password() {
    let dir = support::test_dir();
    let d = dir.path();
    let not_qr = png_of(21, 4, |_, _| false);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            format!("username=alice\npassword={PW}\n").into_bytes(),
            "no server",
        ),
        (
            format!("server=h\nport=0\nusername=a\npassword={PW}\n").into_bytes(),
            "invalid value for port",
        ),
        (
            format!("server=h\nusername=a\ntransport=carrier-pigeon\npassword={PW}\n").into_bytes(),
            "invalid value for transport",
        ),
        (not_qr, "no QR code found"),
        (
            b"\x89PNG\r\n\x1a\nbroken".to_vec(),
            "cannot decode the image",
        ),
        (
            vec![0xff, 0xfe, 0x00, 0x41],
            "neither a PNG or JPEG image nor UTF-8 text",
        ),
    ];
    for (input, want) in cases {
        let o = termphone(d, &[], &["account", "import", "-"], &input);
        assert_eq!(o.status.code(), Some(1), "{want}");
        let (_, err) = text(&o);
        assert!(err.contains(want), "{want}: {err}");
        assert_no_password(&[&o]);
    }
    assert!(!config_path(d).exists());
    let missing = termphone(d, &[], &["account", "import", "no-such-file"], b"");
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing).1.contains("cannot read no-such-file"));
    // Help for both subcommands, with examples.
    for sub in ["import", "export"] {
        let o = termphone(d, &[], &["account", sub, "--help"], b"");
        let out = assert_ok(&o, "help");
        assert!(out.contains(&format!("termphone account {sub}")), "{out}");
    }
}

/// Every key of the payload lands in a config the loader accepts, and comes back on export.
#[test]
fn websocket_payload_with_proxy_and_auth_user_round_trips() {
    let dir = support::test_dir();
    let d = dir.path();
    write_existing(d);
    let payload = "server=ws.example.test\nport=5060\nusername=1001\nauthuser=auth-1001\n\
        transport=wss\nwss_port=8089\nwss_path=/ws\noutbound_proxy=edge.example.test:5061\n\
        displayname=Front Desk\n";
    let imp = termphone(
        d,
        &[],
        &[
            "account",
            "import",
            "-",
            "--name",
            "web",
            "--password-in-file",
        ],
        payload.as_bytes(),
    );
    let out = assert_ok(&imp, "import wss");
    assert_eq!(
        out,
        "imported account web: registrar sip:ws.example.test:8089, transport wss, no password in the payload\n"
    );
    let cfg = assert_config_kept(d, "web");
    for line in [
        "domain = \"ws.example.test:5060\"",
        "registrar = \"sip:ws.example.test:8089\"",
        "transport = \"wss\"",
        "outbound_proxy = \"sip:edge.example.test:5061\"",
        "auth_user = \"auth-1001\"",
        "ws_path = \"/ws\"",
        "display_name = \"Front Desk\"",
    ] {
        assert!(cfg.contains(line), "{line}:\n{cfg}");
    }
    let list = termphone(d, &[], &["account", "list"], b"");
    assert!(
        assert_ok(&list, "list").contains(
            "web\t1001@ws.example.test:5060\tregistrar=sip:ws.example.test:8089\ttransport=wss"
        ),
        "{}",
        text(&list).0
    );
    let export = termphone(d, &[], &["account", "export", "web"], b"");
    let exported = assert_ok(&export, "export");
    let other = support::test_dir();
    let imp2 = termphone(
        other.path(),
        &[],
        &["account", "import", "-", "--name", "web"],
        exported.as_bytes(),
    );
    assert_ok(&imp2, "re-import");
    let export2 = termphone(other.path(), &[], &["account", "export", "web"], b"");
    assert_eq!(assert_ok(&export2, "export again"), exported);
}
