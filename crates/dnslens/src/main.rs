//! dnslens: which process, container and pod resolved which domain, captured with eBPF.
//!
//! Only the command line's edge: parse the flags, dispatch to the library, and turn an error
//! into one line on stderr and a non-zero exit.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use dnslens::flags::Cli;
use dnslens::settings::{Action, Terminal};
use dnslens::{agent, detect, run, whois};

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
            dnslens::say!("dnslens: {e:#}");
            ExitCode::FAILURE
        }
    }
}
