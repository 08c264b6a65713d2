//! The pure logic of dnslens: decode raw events, pair queries with responses, attribute them to
//! processes, cgroups, containers and pods, filter and count them. No BPF, no root: every stage
//! is tested with plain values and an injected clock.
//!
//! Data flows one way: [`decode`] -> [`correlate`] -> [`enrich`], wired by [`pipeline`]; the
//! caller then applies [`filter`] and hands events to its sinks or to [`count`].

pub mod alert;
pub mod bounded;
pub mod cgroup;
pub mod clock;
pub mod container;
pub mod correlate;
pub mod count;
pub mod counters;
pub mod decode;
pub mod domain;
pub mod enrich;
pub mod filter;
pub mod fuzzing;
pub mod hash;
pub mod identity;
pub mod lookup;
pub mod model;
pub mod patient;
pub mod pipeline;
pub mod pods;
pub mod process;
pub mod resolv;
pub mod schema;
pub mod served;
pub mod stats;
pub mod text;
pub mod topk;

#[cfg(any(test, feature = "testutil"))]
pub mod testutil;

pub use model::{ConnectEvent, DnsEvent, Kind, Role};
pub use pipeline::{Observed, Pipeline, PipelineConfig};
pub use stats::Stats;
