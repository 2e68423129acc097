//! termphone binary: parse the command line, set up logging, run a mode. Nothing else.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use termphone::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // --log-file, else the config's [general] log_file.
    let log_file = cli
        .log_file
        .clone()
        .or_else(|| termphone::app::configured_log_file(cli.config.as_deref()));
    // The TUI owns the terminal: its logs go to a file and its log tab, never to the screen.
    let ui_log = if cli.command.is_none() {
        Some(termphone::logging::init_tui(log_file.as_deref()))
    } else {
        if let Err(e) = termphone::logging::init(log_file.as_deref()) {
            eprintln!("termphone: {e}");
            return ExitCode::from(1);
        }
        None
    };
    let json_default = !std::io::stdout().is_terminal();
    let status = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(termphone::run(cli, json_default, ui_log)),
        Err(e) => {
            eprintln!("termphone: cannot start the runtime: {e}");
            1
        }
    };
    ExitCode::from(u8::try_from(status).unwrap_or(1))
}
