//! dnslens detectors: the stage after enrichment that turns attributed DNS events (and
//! outgoing connections) into alerts naming the process, container and pod, with bounded
//! evidence. Pure logic driven by event time: the only I/O is [`resolv::ProcFs`] (a process's
//! resolv.conf and files, through /proc) and loading or saving [`Config`] and [`Baseline`].
//!
//! [`Detectors`] (in `stage`) routes each input to the detectors, one module each:
//! `tunneling`, `lookups` (nxdomain and dga, with search-list walks folded into one lookup),
//! `c2` (new domain then connect, unresolved connect), `drift` (unexpected domain, unknown
//! binary) and `bypass` (resolver bypass). docs/detectors.md describes each, the config file,
//! the baseline file and the alert JSON.

mod aggregate;
pub mod alert;
pub mod baseline;
mod bypass;
mod c2;
pub mod config;
pub mod connect;
mod drift;
pub mod keys;
mod lookups;
pub mod names;
pub mod resolv;
pub mod score;
pub mod sketch;
mod stage;
mod tunneling;

#[cfg(test)]
mod tests;

pub use alert::{Alert, Detector, Evidence, Severity, Subject};
pub use baseline::{Baseline, BaselineError, WorkloadBaseline, BASELINE_VERSION};
pub use config::{Config, ConfigError};
pub use connect::Transport;
pub use resolv::{FakeProcesses, ProcFs, ProcessView, ResolvConf};
pub use stage::{DetectStats, Detectors, TableCounts};
