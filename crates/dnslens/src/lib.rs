//! dnslens: which process, container and pod resolved which domain, captured with eBPF.
//!
//! The binary's library, in layers that depend one way: [`flags`] (the command line as typed)
//! -> [`settings`] (checked; with the agent's config file) -> [`run`] (the capture loop),
//! [`agent`] and [`detect`] (the replay) -> [`sink`] (every output format). `whois` reads one
//! process. `main.rs` only parses the flags, dispatches and prints the error; tests and
//! benches link to this library.

pub mod agent;
mod cluster;
pub mod detect;
pub mod flags;
mod input;
pub mod run;
pub mod settings;
pub mod sink;
mod stop;
pub mod units;
pub mod whois;
