//! termphone binary: parse the command line, set up logging, run a mode. Nothing else.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use termphone::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = termphone::logging::init(cli.log_file.as_deref()) {
        eprintln!("termphone: {e}");
        return ExitCode::from(1);
    }
    let json_default = !std::io::stdout().is_terminal();
    let status = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(termphone::run(cli, json_default)),
        Err(e) => {
            eprintln!("termphone: cannot start the runtime: {e}");
            1
        }
    };
    ExitCode::from(u8::try_from(status).unwrap_or(1))
}
