//! dnslens: which process, container and pod resolved which domain, captured with eBPF.
//!
//! This crate is only the command line and the glue: flags -> settings -> probe, pipeline
//! (crates/lens) and a sink. Errors become one line on stderr and a non-zero exit.

mod flags;
mod run;
mod settings;
mod sink;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use crate::flags::Cli;
use crate::settings::{Settings, Terminal};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let terminal = Terminal {
        stdout_is_tty: std::io::stdout().is_terminal(),
        no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
    };
    match Settings::from_cli(cli, terminal).and_then(run::run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dnslens: {e:#}");
            ExitCode::FAILURE
        }
    }
}
