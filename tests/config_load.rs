//! Loading valid configs: the example file, the built-in config, defaults, every key's value,
//! and where the file is looked for.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use termphone::config::{
    default_path_from, AccountConfig, CodecName, Config, DtmfMode, General, Transport,
};

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml")
}

/// A fresh temporary directory for one test (removed by the test).
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("termphone-config-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn example_config_loads_cleanly() {
    let path = example_path();
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert_eq!(config.origin.as_deref(), Some(path.as_path()));
    let g = &config.general;
    assert_eq!(g.listen, Some("0.0.0.0:5060".parse().unwrap()));
    assert_eq!((g.rtp_port_min, g.rtp_port_max), (16384, 32767));
    assert!(!g.sip_trace);
    assert_eq!(config.accounts.len(), 2);
    let local = config.account("local").unwrap();
    assert!(local.enabled && local.is_serverless());
    let work = config.account("work").unwrap();
    assert!(!work.enabled && !work.is_serverless());
    assert_eq!(work.domain.as_deref(), Some("sip.example.com"));
    assert_eq!(work.codecs, [CodecName::Pcma, CodecName::Pcmu]);
}

#[test]
fn example_config_documents_every_key() {
    let text = std::fs::read_to_string(example_path()).unwrap();
    let keys = [
        "listen",
        "rtp_port_min",
        "rtp_port_max",
        "user_agent",
        "log_file",
        "max_calls",
        "sip_trace",
        "capture_device",
        "playback_device",
        "jitter_buffer_max_ms",
        "record_dir",
        "record_channels",
        "hold_music",
        "name",
        "enabled",
        "display_name",
        "user",
        "domain",
        "registrar",
        "transport",
        "outbound_proxy",
        "auth_user",
        "tls_ca_file",
        "ws_path",
        "keepalive",
        "expires",
        "password_cmd",
        "password",
        "codecs",
        "dtmf_mode",
        "noise_suppression",
        "echo_cancellation",
        "accept_transfer",
        "dnd",
        "auto_answer",
    ];
    for key in keys {
        let set = text.lines().any(|l| {
            let l = l.trim_start_matches(['#', ' ']);
            l.starts_with(&format!("{key} = "))
        });
        assert!(set, "config.example.toml does not show `{key} = ...`");
    }
}

#[test]
fn builtin_config_is_a_serverless_local_account_with_defaults() {
    let config = Config::builtin();
    assert_eq!(config.general, General::default());
    assert_eq!(config.general.listen, None);
    assert_eq!(
        config.general.listen_or_default(),
        "0.0.0.0:5060".parse::<SocketAddr>().unwrap()
    );
    assert!(config.general.user_agent.starts_with("termphone/"));
    assert_eq!(config.audio.capture_device, None);
    assert_eq!(config.accounts, vec![AccountConfig::local()]);
    let local = &config.accounts[0];
    assert_eq!(local.name, "local");
    assert_eq!(local.transport, Transport::Udp);
    assert_eq!(local.dtmf_mode, DtmfMode::Rfc4733);
    assert_eq!(local.password, None);
    assert!(local.is_serverless());
    assert_eq!(config.origin, None);
}

#[test]
fn empty_file_gives_defaults_and_the_local_account() {
    let config = Config::from_str("# nothing\n", Path::new("empty.toml")).unwrap();
    assert_eq!(config.general, Config::builtin().general);
    assert_eq!(config.accounts, vec![AccountConfig::local()]);
    assert_eq!(config.origin.as_deref(), Some(Path::new("empty.toml")));
}

#[test]
fn every_key_is_read() {
    let text = r#"
[general]
listen = "[::1]:5070"
rtp_port_min = 0x4000   # hex and underscores are TOML integers too
rtp_port_max = 20_001
user_agent = "MyPhone 1.0"
log_file = "/var/log/tp.log"
sip_trace = true

[audio]
capture_device = "USB Mic"
playback_device = "Speakers"

[[account]]
name = "pbx"
enabled = false
display_name = "Alice \"A\" Smith"
user = "1001"
domain = "[::1]:5080"
registrar = "sips:pbx.example.com"
transport = "UDP"
codecs = ["pcma"]
dtmf_mode = "RFC4733"
noise_suppression = false
echo_cancellation = false
accept_transfer = false

[[account]]
name = "second"
user = "bob"
domain = "pbx.example.com"
"#;
    let c = Config::from_str(text, Path::new("full.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.warnings.is_empty());
    assert_eq!(c.general.listen, Some("[::1]:5070".parse().unwrap()));
    assert_eq!(
        (c.general.rtp_port_min, c.general.rtp_port_max),
        (16384, 20001)
    );
    assert_eq!(c.general.user_agent, "MyPhone 1.0");
    assert_eq!(c.general.log_file, Some(PathBuf::from("/var/log/tp.log")));
    assert!(c.general.sip_trace);
    assert_eq!(c.audio.capture_device.as_deref(), Some("USB Mic"));
    assert_eq!(c.audio.playback_device.as_deref(), Some("Speakers"));
    assert_eq!(c.accounts.len(), 2);
    let a = &c.accounts[0];
    assert_eq!(a.name, "pbx");
    assert!(!a.enabled);
    assert_eq!(a.display_name.as_deref(), Some("Alice \"A\" Smith"));
    assert_eq!(a.user, "1001");
    assert_eq!(a.domain.as_deref(), Some("[::1]:5080"));
    assert_eq!(a.registrar.as_deref(), Some("sips:pbx.example.com"));
    assert_eq!(a.transport, Transport::Udp);
    assert_eq!(a.codecs, [CodecName::Pcma]);
    assert_eq!(a.dtmf_mode, DtmfMode::Rfc4733);
    assert!(!a.noise_suppression && !a.echo_cancellation);
    assert_eq!(
        a.accept_transfer,
        termphone::engine::api::TransferPolicy::Reject
    );
    let b = &c.accounts[1];
    assert!(b.enabled);
    assert!(b.noise_suppression && b.echo_cancellation);
    assert_eq!(
        b.accept_transfer,
        termphone::engine::api::TransferPolicy::Accept
    );
    assert_eq!(b.codecs, CodecName::default_list());
    assert_eq!(b.display_name, None);
    assert_eq!(b.registrar, None);
}

#[test]
fn equal_rtp_ports_and_inline_account_tables_are_fine() {
    let text = "general = { rtp_port_min = 20000, rtp_port_max = 20000 }\n\
                account = [{ name = \"a\", user = \"alice\", display_name = \"\" }]\n";
    let c = Config::from_str(text, Path::new("c.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (c.general.rtp_port_min, c.general.rtp_port_max),
        (20000, 20000)
    );
    assert_eq!(c.accounts[0].name, "a");
    assert_eq!(c.accounts[0].display_name, None);
}

#[test]
fn default_path_follows_xdg_then_home() {
    let os = |s| Some(OsStr::new(s));
    assert_eq!(
        default_path_from(os("/x/cfg"), os("/home/u")),
        Some(PathBuf::from("/x/cfg/termphone/config.toml"))
    );
    assert_eq!(
        default_path_from(None, os("/home/u")),
        Some(PathBuf::from("/home/u/.config/termphone/config.toml"))
    );
    assert_eq!(
        default_path_from(os(""), os("/home/u")),
        Some(PathBuf::from("/home/u/.config/termphone/config.toml"))
    );
    assert_eq!(default_path_from(None, None), None);
}

#[test]
fn default_path_reads_the_environment() {
    // Reads the variables as they are (setting them would race with other tests).
    let want = default_path_from(
        std::env::var_os("XDG_CONFIG_HOME").as_deref(),
        std::env::var_os("HOME").as_deref(),
    );
    assert_eq!(Config::default_path(), want);
}

#[test]
fn load_or_builtin_prefers_explicit_then_default_then_builtin() {
    let dir = temp_dir("discover");
    let file = dir.join("config.toml");
    let missing = dir.join("missing.toml");
    std::fs::write(&file, "[[account]]\nname = \"mine\"\nuser = \"me\"\n").unwrap();

    // An explicit path is loaded, and must exist.
    let c = Config::load_or_builtin_from(Some(&file), Some(&missing)).unwrap();
    assert_eq!(c.accounts[0].name, "mine");
    let err = Config::load_or_builtin_from(Some(&missing), Some(&file)).unwrap_err();
    assert!(err.to_string().contains("missing.toml"), "{err}");

    // The default path is loaded when it exists, else the built-in config is used.
    let c = Config::load_or_builtin_from(None, Some(&file)).unwrap();
    assert_eq!(c.origin.as_deref(), Some(file.as_path()));
    assert_eq!(
        Config::load_or_builtin_from(None, Some(&missing)).unwrap(),
        Config::builtin()
    );
    assert_eq!(
        Config::load_or_builtin_from(None, None).unwrap(),
        Config::builtin()
    );

    // A default path that exists but is broken is an error, not silently the built-in config.
    std::fs::write(&file, "[general]\nlisten = 1\n").unwrap();
    let err = Config::load_or_builtin_from(None, Some(&file)).unwrap_err();
    assert!(err.to_string().contains("config.toml:2:10:"), "{err}");

    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn oversized_and_directory_paths_are_errors() {
    let dir = temp_dir("oversized");
    let err = Config::load(&dir).unwrap_err();
    assert!(err.to_string().contains("cannot read config file"), "{err}");

    let big = dir.join("big.toml");
    let line = "# padding padding padding padding padding padding padding padding\n";
    std::fs::write(&big, line.repeat(20_000)).unwrap();
    let err = Config::load(&big).unwrap_err();
    assert!(
        err.to_string().contains("big.toml:1:1: file is too large"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn auto_answer_forms() {
    use termphone::config::{AnswerAudio, AnswerPolicy, AutoAnswer};
    let dir = temp_dir("auto-answer");
    let load = |value: &str| {
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            format!("[[account]]\nname = \"a\"\nuser = \"alice\"\nauto_answer = {value}\n"),
        )
        .unwrap();
        Config::load(&path).map(|c| c.accounts[0].auto_answer.clone())
    };
    assert_eq!(load("\"off\"").unwrap(), Some(AutoAnswer::Off));
    assert_eq!(
        load("\"answer\"").unwrap(),
        Some(AutoAnswer::Answer(AnswerPolicy::default()))
    );
    assert_eq!(load("\"Reject\"").unwrap(), Some(AutoAnswer::Reject(486)));
    assert_eq!(
        load("{ reject = 603 }").unwrap(),
        Some(AutoAnswer::Reject(603))
    );
    assert_eq!(
        load("{ delay = 2, play = \"hi.wav\", record = \"/tmp/r\", hangup_after = 30 }").unwrap(),
        Some(AutoAnswer::Answer(AnswerPolicy {
            delay_secs: 2,
            audio: AnswerAudio::File("hi.wav".into()),
            record_dir: Some("/tmp/r".into()),
            hangup_after_secs: Some(30),
        }))
    );
    assert_eq!(
        load("{ echo = true }").unwrap(),
        Some(AutoAnswer::Answer(AnswerPolicy {
            audio: AnswerAudio::Echo,
            ..AnswerPolicy::default()
        }))
    );
    for (bad, says) in [
        ("\"maybe\"", "unknown auto-answer policy"),
        (
            "{ play = \"a.wav\", echo = true }",
            "play and echo exclude each other",
        ),
        (
            "{ reject = 603, delay = 1 }",
            "reject cannot be combined with delay",
        ),
        ("{ reject = 200 }", "out of range"),
        ("{ delay = 9999 }", "out of range"),
        ("{ answer = true }", "unknown key answer"),
        ("42", "expected \"off\""),
    ] {
        let err = load(bad).expect_err(bad).to_string();
        assert!(err.contains(says), "{bad}: {err}");
        assert!(err.contains(":4:"), "{bad}: names the line: {err}");
    }
}
