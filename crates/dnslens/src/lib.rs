//! dnslens: which process, container and pod resolved which domain, captured with eBPF.
//!
//! The binary's library: flags -> settings -> probe, pipeline (crates/lens), the pod watch
//! (crates/cluster), the detectors (crates/detect) and a sink; `whois` reads one process;
//! `detect` replays a saved trace through the detectors. `main.rs` only parses the flags,
//! dispatches and prints the error; tests and benches link to this library.

pub mod agent;
mod cluster;
pub mod detect;
pub mod flags;
mod http;
mod input;
pub mod metrics;
pub mod run;
pub mod settings;
mod sink;
mod top;
pub mod units;
pub mod whois;
