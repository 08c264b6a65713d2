//! The agent's metrics as exposed: name, type, labels and help, one table. The registry is built
//! from it, a unit test holds the exposition to it, and tests/deploy.rs (which links to
//! it) holds the Grafana dashboard and the alerting rules to it. docs/metrics.md describes
//! each row.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Clone, Copy, Debug)]
pub struct Metric {
    /// As Prometheus stores it: counters end in `_total`, units are in the name.
    pub name: &'static str,
    pub kind: Type,
    /// Besides a histogram's `le`. Read by the tests, here and in tests/deploy.rs.
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

pub const METRICS: &[Metric] = &[
    Metric {
        name: "dnslens_queries_total",
        kind: Type::Counter,
        labels: &["namespace", "workload", "pod", "container", "qtype"],
        help: "DNS queries sent by processes (client side)",
    },
    Metric {
        name: "dnslens_responses_total",
        kind: Type::Counter,
        labels: &["namespace", "workload", "pod", "container", "qtype", "rcode"],
        help: "DNS responses received by processes (client side)",
    },
    Metric {
        name: "dnslens_response_latency_seconds",
        kind: Type::Histogram,
        labels: &["namespace", "workload"],
        help: "Time from a query to its response, as the process saw them",
    },
    Metric {
        name: "dnslens_unanswered_total",
        kind: Type::Counter,
        labels: &["namespace", "workload", "pod"],
        help: "Queries that got no response within the timeout",
    },
    Metric {
        name: "dnslens_alerts_total",
        kind: Type::Counter,
        labels: &["detector", "severity", "namespace", "workload"],
        help: "Alerts raised by the detectors",
    },
    Metric {
        name: "dnslens_top_domains_queries_total",
        kind: Type::Counter,
        labels: &["namespace", "workload", "domain"],
        help: "Queries per domain among the workload's most queried; domain=\"other\" for the rest",
    },
    Metric {
        name: "dnslens_events_lost_total",
        kind: Type::Counter,
        labels: &["reason", "namespace", "workload", "pod", "container"],
        help: "Events the kernel dropped for want of room in the ring buffer, by the workload that lost them: reason=\"over_share\" while it was more than half full and the workload over its share, \"ringbuf_full\" when full",
    },
    Metric {
        name: "dnslens_kernel_events_total",
        kind: Type::Counter,
        labels: &["kind"],
        help: "The kernel side's counters: events written to the ring buffer, and messages lost or cut by reason",
    },
    Metric {
        name: "dnslens_decode_errors_total",
        kind: Type::Counter,
        labels: &["kind"],
        help: "Captured messages that did not decode as DNS, by reason",
    },
    Metric {
        name: "dnslens_state_evictions_total",
        kind: Type::Counter,
        labels: &["table"],
        help: "Entries dropped from a full bounded table",
    },
    Metric {
        name: "dnslens_ringbuf_used_bytes",
        kind: Type::Gauge,
        labels: &[],
        help: "Bytes written by the kernel and not read yet",
    },
    Metric {
        name: "dnslens_ringbuf_size_bytes",
        kind: Type::Gauge,
        labels: &[],
        help: "Size of the kernel-to-agent ring buffer",
    },
    Metric {
        name: "dnslens_output_wait_seconds_total",
        kind: Type::Counter,
        labels: &[],
        help: "Time the reading of the ring buffer waited for the JSON output to take lines",
    },
    Metric {
        name: "dnslens_output_dropped_lines_total",
        kind: Type::Counter,
        labels: &[],
        help: "JSON lines dropped because the output took none for a second or more",
    },
    Metric {
        name: "dnslens_enrichment_misses_total",
        kind: Type::Counter,
        labels: &["what"],
        help: "Events whose process executable, cgroup or pod could not be named",
    },
    Metric {
        name: "dnslens_metrics_folded_total",
        kind: Type::Counter,
        labels: &["table"],
        help: "Events counted under \"other\" labels because a metrics table was full",
    },
];

/// The row of `name`; panics on a name not in the table (a typo in the code).
pub fn metric(name: &str) -> &'static Metric {
    METRICS
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("{name} is not in metrics/names.rs"))
}
