//! Mode dispatch: turn the parsed command line and the configuration into a running mode.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{AccountCommand, Cli, Command, CtlArgs, CtlVerb, DialArgs, ImportArgs, ServeArgs};
use crate::config::Config;
use crate::control;
use crate::engine::api::{AudioSinkSpec, AudioSourceSpec};
use crate::engine::{self, AccountRegistration, EngineConfig, RtpPortRange};
use crate::headless::dial::{self, DialPlan};
use crate::headless::serve::{self, Policies, ServePolicy};
use crate::headless::EventPrinter;
use crate::sip::auth::Credentials;
use crate::sip::msg::Uri;

/// The TUI's log records and log file, from [`crate::logging::init_tui`].
pub type UiLog = (
    tokio::sync::mpsc::Receiver<crate::logging::UiLogRecord>,
    Result<Option<PathBuf>, String>,
);

/// Run the mode the command line asks for; returns the process exit status. `ui_log` is set
/// up by the caller for the TUI (no subcommand).
pub async fn run(cli: Cli, json_default: bool, ui_log: Option<UiLog>) -> i32 {
    // import may create the config file, so it runs before the config is loaded.
    if let Some(Command::Account(crate::cli::AccountArgs {
        command: AccountCommand::Import(args),
    })) = &cli.command
    {
        return run_account_import(cli.config.as_deref(), args);
    }
    // ctl talks to a running instance; it needs no config.
    if let Some(Command::Ctl(args)) = cli.command {
        return run_ctl(args).await;
    }
    let config = match load_config(cli.config.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("termphone: {e}");
            return 1;
        }
    };
    let Some(command) = cli.command else {
        return run_tui(&config, cli.sip_trace, cli.tui, ui_log).await;
    };
    match command {
        Command::Serve(args) => run_serve(&config, cli.sip_trace, args, json_default).await,
        Command::Dial(args) => run_dial(&config, cli.sip_trace, args, json_default).await,
        Command::Devices => run_devices(),
        Command::Account(crate::cli::AccountArgs {
            command: AccountCommand::List { socket },
        }) => {
            let path = socket.unwrap_or_else(control::default_socket_path);
            let live = control::client::live_accounts(&path, LIVE_STATE_TIMEOUT).await;
            run_account_list(&config, &live)
        }
        Command::Account(args) => run_account(&config, args.command),
        Command::Ctl(_) => unreachable!("handled before the config is loaded"),
    }
}

/// The config's `[general] log_file`, read before logging starts (a config that does not load
/// gives none here; the mode reports its error when it loads it).
pub fn configured_log_file(explicit: Option<&std::path::Path>) -> Option<PathBuf> {
    Config::load_or_builtin(explicit)
        .ok()
        .and_then(|c| c.general.log_file)
}

/// How long `account list` waits for a running instance's answer.
const LIVE_STATE_TIMEOUT: Duration = Duration::from_millis(1500);

fn load_config(explicit: Option<&PathBuf>) -> Result<Config, String> {
    let cfg = Config::load_or_builtin(explicit.map(PathBuf::as_path)).map_err(|e| e.to_string())?;
    for w in &cfg.warnings {
        eprintln!("termphone: warning: {w}");
    }
    Ok(cfg)
}

fn engine_config(
    config: &Config,
    sip_trace: bool,
    listen: Option<SocketAddr>,
    default_listen: SocketAddr,
) -> EngineConfig {
    let account = config.accounts.iter().find(|a| a.enabled);
    let mut ec = EngineConfig {
        listen: listen.or(config.general.listen).unwrap_or(default_listen),
        rtp_ports: RtpPortRange {
            min: config.general.rtp_port_min,
            max: config.general.rtp_port_max,
        },
        sip_trace: sip_trace || config.general.sip_trace,
        dns_server: config.general.dns_server,
        ..EngineConfig::default()
    };
    ec.record_dir = config.audio.record_dir.clone().unwrap_or_else(|| {
        crate::config::default_record_dir_from(
            std::env::var_os("XDG_DATA_HOME").as_deref(),
            std::env::var_os("HOME").as_deref(),
        )
        .unwrap_or_else(|| "recordings".into())
    });
    ec.record_stereo = config.audio.record_stereo;
    ec.hold_music = config.audio.hold_music.clone();
    ec.max_calls = config.general.max_calls as usize;
    ec.dnd = config
        .accounts
        .iter()
        .filter(|a| a.enabled && a.dnd)
        .map(|a| a.name.clone())
        .collect();
    if let Some(ms) = config.audio.jitter_buffer_max_ms {
        ec.jitter_ceiling = std::time::Duration::from_millis(ms.into());
    }
    if !config.general.user_agent.is_empty() {
        ec.user_agent = config.general.user_agent.clone();
    }
    if let Some(a) = account {
        let codecs: Vec<_> = a.codecs.iter().map(|c| codec_spec(*c)).collect();
        if !codecs.is_empty() {
            ec.codecs = codecs;
        }
        if !a.user.is_empty() {
            ec.user = a.user.clone();
        }
        ec.display_name = a.display_name.clone();
        ec.noise_suppression = a.noise_suppression;
        ec.echo_cancellation = a.echo_cancellation;
        ec.transfer_policy = a.accept_transfer;
        ec.dtmf_info = a.dtmf_mode == crate::config::DtmfMode::Info;
    }
    for a in config
        .accounts
        .iter()
        .filter(|a| a.enabled && a.registrar.is_some())
    {
        match account_registration(a) {
            Some(reg) => ec.accounts.push(reg),
            None => eprintln!("termphone: warning: account {}: its registrar or domain is not a valid SIP URI; it will not register", a.name),
        }
    }
    ec
}

/// The run's `--codec NAME` (repeatable; replaces every codec list, in the order given),
/// `--no-noise-suppression` and `--no-echo-cancellation`, for the engine and every account.
fn apply_engine_args(ec: &mut EngineConfig, args: &crate::cli::EngineArgs) {
    let mut list = Vec::new();
    for c in &args.codecs {
        let spec = codec_spec(*c);
        if !list.contains(&spec) {
            list.push(spec);
        }
    }
    ec.override_all(&list, args.no_noise_suppression, args.no_echo_cancellation);
}

/// The SDP description of a codec the config names.
fn codec_spec(c: crate::config::CodecName) -> crate::sip::sdp::CodecSpec {
    use crate::config::CodecName;
    use crate::sip::sdp;
    match c {
        CodecName::Opus => sdp::opus(),
        CodecName::G722 => sdp::g722(),
        CodecName::Pcmu => sdp::pcmu(),
        CodecName::Pcma => sdp::pcma(),
    }
}

/// The account's password: its OS keyring entry, else the output of `password_cmd`, else
/// `password` from the file. Problems are warnings that name the account, never a password.
fn account_password(a: &crate::config::AccountConfig) -> Option<crate::config::Secret> {
    use crate::config::secrets;
    let r = secrets::resolve_password(a, secrets::keyring_get(&a.name), secrets::run_password_cmd);
    for w in &r.warnings {
        eprintln!("termphone: warning: {w}");
    }
    tracing::info!(account = %a.name, source = %r.source, "password source");
    r.password
}

/// The registration of an account that names a registrar (`None` for serverless accounts).
fn account_registration(a: &crate::config::AccountConfig) -> Option<AccountRegistration> {
    let registrar: Uri = a.registrar.as_deref()?.parse().ok()?;
    let domain = a.domain.clone().unwrap_or_else(|| registrar.host_port());
    let aor: Uri = format!("sip:{}@{domain}", a.user).parse().ok()?;
    Some(AccountRegistration {
        name: a.name.clone(),
        aor,
        registrar,
        expires: a.expires,
        credentials: account_password(a)
            .map(|p| Credentials::new(a.auth_user.clone().unwrap_or_else(|| a.user.clone()), p)),
        transport: a.transport,
        outbound_proxy: a.outbound_proxy.as_deref().and_then(|p| p.parse().ok()),
        tls_ca_file: a.tls_ca_file.clone(),
        ws_path: a.ws_path.clone(),
        keepalive: a.keepalive_secs(),
        display_name: a.display_name.clone(),
        settings: Some(call_settings(a)),
    })
}

/// What an account's config says about its calls.
fn call_settings(a: &crate::config::AccountConfig) -> crate::engine::CallSettings {
    let codecs: Vec<_> = a.codecs.iter().map(|c| codec_spec(*c)).collect();
    crate::engine::CallSettings {
        codecs: if codecs.is_empty() {
            EngineConfig::default().codecs
        } else {
            codecs
        },
        dtmf_info: a.dtmf_mode == crate::config::DtmfMode::Info,
        noise_suppression: a.noise_suppression,
        echo_cancellation: a.echo_cancellation,
        transfer_policy: a.accept_transfer,
    }
}

/// How often `--levels` reports a call's audio levels (five times a second: a meter moves
/// smoothly enough, the event stream stays small).
const LEVELS_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

async fn run_serve(config: &Config, sip_trace: bool, args: ServeArgs, json_default: bool) -> i32 {
    let policy = ServePolicy {
        answer_delay: secs(args.answer_delay),
        source: match (&args.play, args.echo, args.device) {
            (Some(p), _, _) => AudioSourceSpec::File(p.clone()),
            (None, true, _) => AudioSourceSpec::Echo,
            (None, false, true) => AudioSourceSpec::Device(config.audio.capture_device.clone()),
            (None, false, false) => AudioSourceSpec::Silence,
        },
        record_dir: args.record.clone(),
        playback: if args.device {
            AudioSinkSpec::Device(config.audio.playback_device.clone())
        } else {
            AudioSinkSpec::Null
        },
        hangup_after: args.hangup_after.map(secs),
        reject: args.reject,
        manual: false,
    };
    // An account's own auto_answer decides for its calls; the options above for the rest.
    let policies = Policies {
        default: policy,
        accounts: config
            .accounts
            .iter()
            .filter_map(|a| {
                let aa = a.auto_answer.as_ref()?;
                Some((a.name.clone(), ServePolicy::from_auto_answer(aa)))
            })
            .collect(),
    };
    if let Err(e) = policies.validate() {
        eprintln!("termphone: {e}");
        return 1;
    }
    let mut ec = engine_config(
        config,
        sip_trace,
        args.engine.listen,
        SocketAddr::from(([0, 0, 0, 0], 5060)),
    );
    apply_engine_args(&mut ec, &args.engine);
    ec.levels_interval = args.engine.levels.then_some(LEVELS_INTERVAL);
    // With the sound card, calls that ring before they are answered ring on the speaker.
    if args.device {
        ec.ringtone = Some(config.audio.playback_device.clone());
    }
    // serve registers every enabled account with a registrar (or those --account names) and
    // answers on each.
    ec.register = true;
    if !args.accounts.is_empty() {
        for name in &args.accounts {
            match config.accounts.iter().find(|a| &a.name == name) {
                None => {
                    eprintln!("termphone: no account named {name:?} in the config");
                    return 2;
                }
                Some(a) if a.registrar.is_none() => {
                    eprintln!("termphone: account {name:?} has no registrar to register with");
                    return 2;
                }
                Some(a) if !a.enabled => {
                    eprintln!("termphone: account {name:?} is disabled (enabled = false)");
                    return 2;
                }
                Some(_) => {}
            }
        }
        ec.accounts.retain(|r| args.accounts.contains(&r.name));
    }
    // The control socket is bound before the engine starts: a live instance on the same path
    // stops this one before it takes a SIP port.
    let control =
        match control::server::bind_requested(args.control.as_deref(), args.no_control).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("termphone: {e}");
                return 1;
            }
        };
    let accounts = ec
        .accounts
        .iter()
        .map(control::state::AccountStatus::from_registration)
        .collect();
    let (engine, observer) = match engine::start_observed(ec).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("termphone: {e}");
            return 1;
        }
    };
    let printer = EventPrinter {
        json: args.engine.json || json_default,
    };
    let control = control.map(|bound| {
        // accept answers with the call's policy: its account's auto_answer, else the options.
        let answer_audio = {
            let policies = policies.clone();
            std::sync::Arc::new(move |call, peer: &str, account: Option<&str>| {
                policies.for_call(account).audio_for(peer, call)
            })
        };
        // serve prints the socket's path with the engine's events, once it accepts.
        bound.serve(
            &engine.handle,
            observer,
            control::server::ControlOptions {
                accounts,
                answer_audio,
                ..Default::default()
            },
        )
    });
    let status = serve::run(engine, policies, printer).await;
    // Closes the clients and removes the socket file.
    drop(control);
    status
}

/// `termphone` with no subcommand: the interactive phone.
async fn run_tui(
    config: &Config,
    sip_trace: bool,
    args: crate::cli::TuiArgs,
    ui_log: Option<UiLog>,
) -> i32 {
    let (log, log_file) = match ui_log {
        Some(l) => l,
        None => (tokio::sync::mpsc::channel(1).1, Ok(None)),
    };
    let ec = engine_config(
        config,
        sip_trace,
        args.listen,
        crate::config::General::DEFAULT_LISTEN,
    );
    crate::ui::run::run(
        config,
        ec,
        crate::ui::run::TuiOptions {
            control: args.control,
            no_control: args.no_control,
            database: args.database,
            log,
            log_file,
        },
    )
    .await
}

/// `termphone ctl`: one request to a running instance (and its events with --follow).
async fn run_ctl(args: CtlArgs) -> i32 {
    let path = args.socket.unwrap_or_else(control::default_socket_path);
    // Relative WAV paths are relative to where ctl runs, not to the instance.
    let absolute = |p: std::path::PathBuf| -> serde_json::Value {
        let p = std::path::absolute(&p).unwrap_or(p);
        serde_json::Value::from(p.to_string_lossy().into_owned())
    };
    let opt = |name: &'static str, v: Option<serde_json::Value>| v.map(|v| (name, v));
    let request = args.verb.map(|verb| {
        let (cmd, args): (&str, Vec<Option<(&'static str, serde_json::Value)>>) = match verb {
            CtlVerb::Dial {
                to,
                account,
                play,
                record,
            } => (
                "dial",
                vec![
                    Some(("to", to.into())),
                    opt("account", account.map(Into::into)),
                    opt("play", play.map(absolute)),
                    opt("record", record.map(absolute)),
                ],
            ),
            CtlVerb::Accept { call, play, record } => (
                "accept",
                vec![
                    Some(("call", call.into())),
                    opt("play", play.map(absolute)),
                    opt("record", record.map(absolute)),
                ],
            ),
            CtlVerb::Hangup { call } => ("hangup", vec![opt("call", call.map(Into::into))]),
            CtlVerb::Dtmf { call, digits } => (
                "dtmf",
                vec![Some(("call", call.into())), Some(("digits", digits.into()))],
            ),
            CtlVerb::Hold { call } => ("hold", vec![Some(("call", call.into()))]),
            CtlVerb::Activate { call } => ("activate", vec![Some(("call", call.into()))]),
            CtlVerb::Mute { call, state } => (
                "mute",
                vec![
                    Some(("call", call.into())),
                    Some(("on", (state == "on").into())),
                ],
            ),
            CtlVerb::Record { call, state, file } => (
                "record",
                vec![
                    Some(("call", call.into())),
                    Some(("on", (state == "on").into())),
                    opt("path", file.map(absolute)),
                ],
            ),
            CtlVerb::Transfer {
                call,
                to,
                with,
                accept,
                refuse,
            } => (
                "transfer",
                vec![
                    Some(("call", call.into())),
                    opt("to", to.map(Into::into)),
                    opt("with", with.map(Into::into)),
                    (accept || refuse).then(|| ("accept", accept.into())),
                ],
            ),
            CtlVerb::Reject { call, code } => (
                "reject",
                vec![
                    Some(("call", call.into())),
                    opt("code", code.map(Into::into)),
                ],
            ),
            CtlVerb::Redirect { call, to } => (
                "redirect",
                vec![Some(("call", call.into())), Some(("to", to.into()))],
            ),
            CtlVerb::Register { account } => ("register", vec![Some(("account", account.into()))]),
            CtlVerb::Deregister { account } => {
                ("deregister", vec![Some(("account", account.into()))])
            }
            CtlVerb::Join { call, with } => (
                "join",
                vec![Some(("call", call.into())), Some(("with", with.into()))],
            ),
            CtlVerb::Denoise { call, state } => (
                "denoise",
                vec![
                    Some(("call", call.into())),
                    Some(("on", (state == "on").into())),
                ],
            ),
            CtlVerb::Status => ("status", vec![]),
            CtlVerb::Calls => ("calls", vec![]),
            CtlVerb::Supports => ("supports", vec![]),
            CtlVerb::Other(words) => {
                let mut words = words.into_iter();
                let cmd = words.next().unwrap_or_default();
                let call = words.next();
                return control::client::CtlRequest {
                    cmd,
                    args: call.map(|c| ("call", c.into())).into_iter().collect(),
                };
            }
        };
        control::client::CtlRequest {
            cmd: cmd.to_string(),
            args: args.into_iter().flatten().collect(),
        }
    });
    control::client::run_ctl(&path, args.follow, request).await
}

async fn run_dial(config: &Config, sip_trace: bool, args: DialArgs, json_default: bool) -> i32 {
    let plan = DialPlan {
        target: args.uri.clone(),
        play: args.play.clone(),
        record: args.record.clone(),
        dtmf: args.dtmf.clone(),
        duration: args.duration.map(secs),
        ring_timeout: secs(args.timeout),
        account: args.account.clone(),
        devices: args.device.then(|| {
            (
                config.audio.capture_device.clone(),
                config.audio.playback_device.clone(),
            )
        }),
    };
    let play_len = match dial::validate(&plan) {
        Ok(len) => len,
        Err(e) => {
            eprintln!("termphone: {e}");
            return dial::exit::LOCAL_ERROR;
        }
    };
    // dial is a client: an ephemeral port unless told otherwise.
    let mut ec = engine_config(
        config,
        sip_trace,
        args.engine.listen,
        SocketAddr::from(([0, 0, 0, 0], 0)),
    );
    apply_engine_args(&mut ec, &args.engine);
    ec.levels_interval = args.engine.levels.then_some(LEVELS_INTERVAL);
    let engine = match engine::start(ec).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("termphone: {e}");
            return dial::exit::LOCAL_ERROR;
        }
    };
    dial::run(
        engine,
        plan,
        play_len,
        EventPrinter {
            json: args.engine.json || json_default,
        },
    )
    .await
}

fn run_devices() -> i32 {
    match crate::audio::list_devices() {
        Ok(list) => {
            for (title, devices) in [
                ("Capture devices:", &list.inputs),
                ("Playback devices:", &list.outputs),
            ] {
                println!("{title}");
                if devices.is_empty() {
                    println!("  (none)");
                }
                for d in devices {
                    let mark = if d.is_default { " (default)" } else { "" };
                    println!("  {}{mark}  [{}]  {}", d.name, d.id, d.default_config);
                }
            }
            0
        }
        Err(e) => {
            eprintln!("termphone: {e}");
            1
        }
    }
}

/// Seconds from the command line (negative or NaN count as zero).
fn secs(s: f64) -> Duration {
    if s.is_finite() && s > 0.0 {
        Duration::from_secs_f64(s.min(1e9))
    } else {
        Duration::ZERO
    }
}

/// `termphone account ...`: passwords in the OS keyring, and the account list.
fn run_account(config: &Config, cmd: AccountCommand) -> i32 {
    use crate::config::secrets;
    let find = |name: &str| {
        let found = config.accounts.iter().find(|a| a.name == name);
        if found.is_none() {
            let names: Vec<&str> = config.accounts.iter().map(|a| a.name.as_str()).collect();
            eprintln!(
                "termphone: no account named {name:?} in the config (accounts: {})",
                names.join(", ")
            );
        }
        found
    };
    match cmd {
        AccountCommand::SetPassword { name } => {
            let Some(a) = find(&name) else { return 1 };
            let password = match read_password(&a.name) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("termphone: cannot read the password: {e}");
                    return 1;
                }
            };
            if password.is_empty() {
                eprintln!("termphone: empty password; nothing stored");
                return 1;
            }
            match secrets::keyring_set(&a.name, &password) {
                Ok(()) => {
                    eprintln!(
                        "termphone: password for account {} stored in the OS keyring",
                        a.name
                    );
                    0
                }
                Err(e) => {
                    eprintln!(
                        "termphone: cannot store the password for account {}: {e}",
                        a.name
                    );
                    1
                }
            }
        }
        AccountCommand::Remove { name } => {
            let Some(a) = find(&name) else { return 1 };
            match secrets::keyring_delete(&a.name) {
                Ok(true) => {
                    eprintln!(
                        "termphone: password for account {} removed from the OS keyring",
                        a.name
                    );
                    0
                }
                Ok(false) => {
                    eprintln!(
                        "termphone: account {} has no password in the OS keyring",
                        a.name
                    );
                    0
                }
                Err(e) => {
                    eprintln!(
                        "termphone: cannot remove the password for account {}: {e}",
                        a.name
                    );
                    1
                }
            }
        }
        AccountCommand::Import(_) => unreachable!("handled before the config is loaded"),
        AccountCommand::Export {
            name,
            qr,
            with_password,
        } => {
            let Some(a) = find(&name) else { return 1 };
            run_account_export(a, qr, with_password)
        }
        AccountCommand::List { .. } => unreachable!("handled in run"),
    }
}

/// `termphone account list`: one line per account (name, user@domain, registrar, transport,
/// password source, registration state in the running instance); never a password.
fn run_account_list(config: &Config, live: &control::client::LiveState) -> i32 {
    use crate::config::secrets;
    use control::client::LiveState;
    if let LiveState::Unknown(why) = live {
        eprintln!("termphone: warning: no registration state: {why}");
    }
    let mut keyring_problem = None;
    for a in &config.accounts {
        let lookup = secrets::keyring_get(&a.name);
        if let secrets::KeyringLookup::Unavailable(why) = &lookup {
            keyring_problem.get_or_insert_with(|| why.clone());
        }
        let mut source = secrets::password_source(a, &lookup).to_string();
        if source == "none" && matches!(lookup, secrets::KeyringLookup::Unavailable(_)) {
            source.push_str(" (keyring unavailable)");
        }
        let aor = match &a.domain {
            Some(d) => format!("{}@{d}", a.user),
            None => a.user.clone(),
        };
        let state = match live {
            LiveState::NotRunning => "not running".to_string(),
            LiveState::Unknown(_) => "unknown".to_string(),
            LiveState::Running(states) => match states.iter().find(|(n, _)| n == &a.name) {
                Some((_, s)) => s.clone(),
                None => "not registering".to_string(),
            },
        };
        println!(
            "{}\t{aor}\tregistrar={}\ttransport={}\tpassword={source}\tstate={state}{}",
            a.name,
            a.registrar.as_deref().unwrap_or("none"),
            a.transport.param_name(),
            if a.enabled { "" } else { "\tdisabled" },
        );
    }
    if let Some(why) = keyring_problem {
        eprintln!("termphone: warning: {why}; keyring passwords are not shown");
    }
    0
}

/// Read a password: from the terminal without echo, or one line of stdin when it is not a
/// terminal (the trailing newline removed).
fn read_password(account: &str) -> std::io::Result<crate::config::Secret> {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    let line = if stdin.is_terminal() {
        rpassword::prompt_password(format!("Password for account {account}: "))?
    } else {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        line
    };
    Ok(crate::config::Secret::new(
        crate::config::secrets::strip_line_end(&line),
    ))
}

/// `termphone account import SOURCE`: a provisioning payload (text or a QR code image) becomes
/// an `[[account]]` in the config file (comments and order kept); the password goes into the
/// OS keyring. Nothing of the password is ever printed.
fn run_account_import(explicit: Option<&std::path::Path>, args: &ImportArgs) -> i32 {
    use crate::config::{edit, provision, secrets};
    use std::io::Read;
    const MAX_SOURCE: u64 = 32 * 1024 * 1024;
    let Some(path) = explicit
        .map(std::path::Path::to_path_buf)
        .or_else(Config::default_path)
    else {
        eprintln!("termphone: no config path: set XDG_CONFIG_HOME or HOME, or give --config PATH");
        return 1;
    };
    let mut bytes = Vec::new();
    let read = if args.source == "-" {
        std::io::stdin()
            .lock()
            .take(MAX_SOURCE)
            .read_to_end(&mut bytes)
    } else {
        std::fs::File::open(&args.source).and_then(|f| f.take(MAX_SOURCE).read_to_end(&mut bytes))
    };
    if let Err(e) = read {
        eprintln!("termphone: cannot read {}: {e}", args.source);
        return 1;
    }
    let parsed = match provision::parse_source(&bytes) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("termphone: cannot import {}: {e}", args.source);
            return 1;
        }
    };
    for w in &parsed.warnings {
        eprintln!("termphone: warning: {w}");
    }
    if let Some(n) = &args.name {
        if n.trim().is_empty() || n.chars().any(char::is_control) {
            eprintln!("termphone: --name must be a non-empty name without control characters");
            return 1;
        }
    }
    let fields = parsed.payload.to_account(args.name.as_deref());
    // An existing file must load before it is edited (its errors name file:line:col).
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => {
            if let Err(e) = Config::from_str(&t, &path) {
                eprintln!("termphone: {e}");
                return 1;
            }
            t
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            eprintln!("termphone: cannot read {}: {e}", path.display());
            return 1;
        }
    };
    // The edited text, checked by the loader so that what is written loads.
    let edited = |password: Option<&crate::config::Secret>| -> Result<(String, Config), String> {
        let out = edit::upsert_account(&text, &fields, password, args.replace)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let cfg = Config::from_str(&out, &path).map_err(|e| {
            format!("the imported account does not fit this termphone's config: {e}")
        })?;
        Ok((out, cfg))
    };
    let (mut out, _) = match edited(None) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("termphone: {e}");
            return 1;
        }
    };
    let stored = match &parsed.payload.password {
        None => "no password in the payload".to_string(),
        Some(pw) => match secrets::keyring_set(&fields.name, pw) {
            Ok(()) => "password stored in the keyring".to_string(),
            Err(e) if args.password_in_file => {
                match edited(Some(pw)) {
                    Ok((with_pw, cfg)) => {
                        out = with_pw;
                        eprintln!("termphone: warning: cannot use the OS keyring: {e}");
                        for w in cfg.warnings.iter().filter(|w| w.key.ends_with("password")) {
                            eprintln!("termphone: {w}");
                        }
                    }
                    Err(e) => {
                        eprintln!("termphone: {e}");
                        return 1;
                    }
                }
                "password written to the config file".to_string()
            }
            Err(e) => {
                eprintln!(
                    "termphone: cannot store the password of account {} in the OS keyring: {e}; \
                     nothing was written. Keep the password in a password manager and set \
                     password_cmd for the account (e.g. password_cmd = \"pass show sip/{}\"), \
                     or import again with --password-in-file to write it into the config file",
                    fields.name, fields.name
                );
                return 1;
            }
        },
    };
    if text.is_empty() {
        out.insert_str(0, &format!("{}\n", edit::NEW_FILE_HEADER));
    }
    if let Err(e) = edit::write_config(&path, &out) {
        eprintln!("termphone: cannot write {}: {e}", path.display());
        return 1;
    }
    println!(
        "imported account {}: registrar {}, transport {}, {stored}",
        fields.name,
        fields.registrar.as_deref().unwrap_or("none"),
        fields.transport.param_name(),
    );
    0
}

/// `termphone account export NAME`: the account as a key=value payload, or its QR code.
fn run_account_export(a: &crate::config::AccountConfig, qr: bool, with_password: bool) -> i32 {
    use crate::config::{provision, secrets};
    use std::io::IsTerminal;
    let fields = provision::AccountFields {
        name: a.name.clone(),
        user: a.user.clone(),
        domain: a.domain.clone(),
        registrar: a.registrar.clone(),
        transport: a.transport,
        outbound_proxy: a.outbound_proxy.clone(),
        auth_user: a.auth_user.clone(),
        ws_path: a.transport.is_websocket().then(|| a.ws_path.clone()),
        display_name: a.display_name.clone(),
        enabled: a.enabled,
    };
    let password = if with_password {
        match account_password(a) {
            Some(p) => Some(p),
            None => {
                eprintln!(
                    "termphone: account {} has no password (keyring, password_cmd or password)",
                    a.name
                );
                return 1;
            }
        }
    } else {
        if secrets::password_source(a, &secrets::keyring_get(&a.name))
            != secrets::PasswordSource::None
        {
            eprintln!("termphone: the password is not included (add --with-password)");
        }
        None
    };
    let payload = match fields.to_payload(password.as_ref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("termphone: account {}: {e}", a.name);
            return 1;
        }
    };
    if qr {
        match provision::render_qr(&payload, std::io::stdout().is_terminal()) {
            Ok(art) => print!("{art}"),
            Err(e) => {
                eprintln!("termphone: {e}");
                return 1;
            }
        }
    } else {
        print!("{payload}");
    }
    0
}
