//! Mode dispatch: turn the parsed command line and the configuration into a running mode.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{Cli, Command, DialArgs, ServeArgs};
use crate::config::Config;
use crate::engine::api::AudioSourceSpec;
use crate::engine::{self, AccountRegistration, EngineConfig, RtpPortRange};
use crate::headless::dial::{self, DialPlan};
use crate::headless::serve::{self, ServePolicy};
use crate::headless::EventPrinter;
use crate::sip::auth::Credentials;
use crate::sip::msg::Uri;

/// Run the mode the command line asks for; returns the process exit status.
pub async fn run(cli: Cli, json_default: bool) -> i32 {
    let config = match load_config(cli.config.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("termphone: {e}");
            return 1;
        }
    };
    match cli.command {
        Command::Serve(args) => run_serve(&config, cli.sip_trace, args, json_default).await,
        Command::Dial(args) => run_dial(&config, cli.sip_trace, args, json_default).await,
        Command::Devices => run_devices(),
    }
}

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
        ..EngineConfig::default()
    };
    if !config.general.user_agent.is_empty() {
        ec.user_agent = config.general.user_agent.clone();
    }
    if let Some(a) = account {
        let codecs: Vec<_> = a
            .codecs
            .iter()
            .map(|c| match c {
                crate::config::CodecName::Pcmu => crate::sip::sdp::pcmu(),
                crate::config::CodecName::Pcma => crate::sip::sdp::pcma(),
            })
            .collect();
        if !codecs.is_empty() {
            ec.codecs = codecs;
        }
        if !a.user.is_empty() {
            ec.user = a.user.clone();
        }
        ec.display_name = a.display_name.clone();
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

/// The account's password: the output of `password_cmd` if set (a failure is a warning that
/// names the account and the exit status, never the output), else `password`.
fn account_password(a: &crate::config::AccountConfig) -> Option<crate::config::Secret> {
    let Some(cmd) = &a.password_cmd else {
        return a.password.clone();
    };
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output();
    match out {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let password = text.strip_suffix('\n').unwrap_or(&text);
            let password = password.strip_suffix('\r').unwrap_or(password);
            Some(crate::config::Secret::new(password))
        }
        Ok(out) => {
            eprintln!(
                "termphone: warning: account {}: password_cmd failed ({})",
                a.name, out.status
            );
            None
        }
        Err(e) => {
            eprintln!(
                "termphone: warning: account {}: cannot run password_cmd: {e}",
                a.name
            );
            None
        }
    }
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
        credentials: account_password(a).map(|p| Credentials::new(a.user.clone(), p)),
    })
}

async fn run_serve(config: &Config, sip_trace: bool, args: ServeArgs, json_default: bool) -> i32 {
    let policy = ServePolicy {
        answer_delay: secs(args.answer_delay),
        source: match (&args.play, args.echo) {
            (Some(p), _) => AudioSourceSpec::File(p.clone()),
            (None, true) => AudioSourceSpec::Echo,
            (None, false) => AudioSourceSpec::Silence,
        },
        record_dir: args.record.clone(),
        hangup_after: args.hangup_after.map(secs),
        reject: args.reject,
    };
    if let Err(e) = serve::validate(&policy) {
        eprintln!("termphone: {e}");
        return 1;
    }
    let mut ec = engine_config(
        config,
        sip_trace,
        args.engine.listen,
        SocketAddr::from(([0, 0, 0, 0], 5060)),
    );
    // serve registers every enabled account with a registrar and answers on each.
    ec.register = true;
    let engine = match engine::start(ec).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("termphone: {e}");
            return 1;
        }
    };
    serve::run(
        engine,
        policy,
        EventPrinter {
            json: args.engine.json || json_default,
        },
    )
    .await
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
    let ec = engine_config(
        config,
        sip_trace,
        args.engine.listen,
        SocketAddr::from(([0, 0, 0, 0], 0)),
    );
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
