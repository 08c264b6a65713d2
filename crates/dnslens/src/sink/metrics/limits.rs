//! How many label sets the metrics hold: the bounds that keep their cardinality fixed whatever
//! the traffic (docs/metrics.md, "Cardinality").

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Distinct (namespace, workload, pod, container) label sets.
    pub placements: usize,
    /// Distinct (namespace, workload) label sets: latency, top domains and alerts.
    pub workloads: usize,
    /// Domains exported per workload, besides `other`.
    pub top_domains: usize,
    /// Domains each workload's summary tracks to find those (space-saving capacity).
    pub tracked_domains: usize,
    /// A label set not counted for this long leaves the exposition.
    pub idle: Duration,
    /// New top-domain series an hour, all workloads together.
    pub new_domain_series: u64,
    /// Of the tables above, what host processes (each process name a workload) may take.
    pub host_share: HostShare,
}

/// Entries of the placement and workload tables host processes may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostShare {
    pub placements: usize,
    pub workloads: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            placements: 10_000,
            workloads: 1_000,
            top_domains: 10,
            tracked_domains: 50,
            idle: Duration::from_secs(3600),
            // Every workload's domains twice over, at the default limits.
            new_domain_series: 20_000,
            // A tenth: the rest is the pods'.
            host_share: HostShare {
                placements: 1_000,
                workloads: 100,
            },
        }
    }
}
