//! dnslens: which process, container and pod resolved which domain, captured with eBPF.
//!
//! This crate is only the command line and the glue: flags -> settings -> probe, pipeline
//! (crates/lens), the pod watch (crates/cluster), the detectors (crates/detect) and a sink;
//! `whois` reads one process; `detect` replays a saved trace through the detectors.
//! Errors become one line on stderr and a non-zero exit.

mod agent;
mod cluster;
mod detect;
mod flags;
mod http;
mod metrics;
mod run;
mod settings;
mod sink;
mod top;
mod whois;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use crate::flags::Cli;
use crate::settings::{Action, Terminal};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let terminal = Terminal {
        stdout_is_tty: std::io::stdout().is_terminal(),
        no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
    };
    let result = Action::from_cli(cli, terminal).and_then(|action| match action {
        Action::Capture(settings) => run::run(*settings),
        Action::Whois(whois) => whois::run(whois),
        Action::Replay(replay) => detect::replay(*replay),
        Action::Agent(settings) => agent::run(*settings),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dnslens: {e:#}");
            ExitCode::FAILURE
        }
    }
}
