//! The agent's metrics as exposed: name, type, labels and help, one table. The registry is built
//! from it, a unit test holds the exposition to it, and tests/deploy.rs (which links to
//! it) holds the Grafana dashboard, the alerting rules and docs/metrics.md to it. Names start
//! with `dnslens_` but for the `process_` ones every Prometheus client library exports.

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
        labels: &["namespace", "workload", "pod", "container"],
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
        name: "dnslens_lookups_total",
        kind: Type::Counter,
        labels: &["namespace", "workload", "outcome"],
        help: "Lookups (a process's queries for one name, search list, retries and both types together), by how they ended",
    },
    Metric {
        name: "dnslens_lookup_latency_seconds",
        kind: Type::Histogram,
        labels: &["namespace", "workload"],
        help: "Time from a lookup's first query to the response that ended it, retries and search list included",
    },
    Metric {
        name: "dnslens_lookup_queries",
        kind: Type::Histogram,
        labels: &["namespace", "workload"],
        help: "Queries sent for one lookup",
    },
    Metric {
        name: "dnslens_lookup_timeout_waits_total",
        kind: Type::Counter,
        labels: &["namespace", "workload"],
        help: "Lookups that waited on a query's timeout (a retry or the next nameserver), whatever their outcome",
    },
    Metric {
        name: "dnslens_lookup_forwarder_cache_total",
        kind: Type::Counter,
        labels: &["namespace", "workload", "cache"],
        help: "Lookups answered by a forwarder on this node: cache=\"hit\" without an upstream query, \"miss\" with one",
    },
    Metric {
        name: "dnslens_events_captured_total",
        kind: Type::Counter,
        labels: &[],
        help: "Events (DNS messages and connects) the kernel wrote to the ring buffer",
    },
    Metric {
        name: "dnslens_events_lost_total",
        kind: Type::Counter,
        labels: &["reason", "namespace", "workload", "pod", "container"],
        help: "Events the kernel saw and did not deliver, by reason and by the workload that lost them (namespace=\"(unknown)\" where the kernel cannot tell)",
    },
    Metric {
        name: "dnslens_events_partial_total",
        kind: Type::Counter,
        labels: &["reason"],
        help: "Events delivered without the whole message: reason=\"truncated\" cut at the payload limit, \"iov_skipped\" iovecs past the limit",
    },
    Metric {
        name: "dnslens_exec_records_lost_total",
        kind: Type::Counter,
        labels: &[],
        help: "Exec records the kernel dropped with the ring buffer full: those processes' executables are read from /proc",
    },
    Metric {
        name: "dnslens_server_side_kept_total",
        kind: Type::Counter,
        labels: &[],
        help: "A DNS server's side of UDP exchanges kept in the kernel because no output shows it (one message per server process per 10 s goes on)",
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
        name: "dnslens_dnstap_sent_total",
        kind: Type::Counter,
        labels: &[],
        help: "dnstap messages written to the --dnstap receiver or file",
    },
    Metric {
        name: "dnslens_dnstap_dropped_total",
        kind: Type::Counter,
        labels: &[],
        help: "dnstap messages dropped: the queue was full (receiver absent or slow) or the link broke",
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
    Metric {
        name: "dnslens_build_info",
        kind: Type::Gauge,
        labels: &["version"],
        help: "Always 1: the version of dnslens that serves these metrics",
    },
    Metric {
        name: "process_cpu_seconds_total",
        kind: Type::Counter,
        labels: &[],
        help: "CPU time of the agent's process, user and system",
    },
    Metric {
        name: "process_resident_memory_bytes",
        kind: Type::Gauge,
        labels: &[],
        help: "Resident memory of the agent's process",
    },
    Metric {
        name: "process_virtual_memory_bytes",
        kind: Type::Gauge,
        labels: &[],
        help: "Virtual memory of the agent's process",
    },
    Metric {
        name: "process_open_fds",
        kind: Type::Gauge,
        labels: &[],
        help: "Open file descriptors of the agent's process",
    },
    Metric {
        name: "process_max_fds",
        kind: Type::Gauge,
        labels: &[],
        help: "The agent's limit of open file descriptors (RLIMIT_NOFILE)",
    },
    Metric {
        name: "process_start_time_seconds",
        kind: Type::Gauge,
        labels: &[],
        help: "When the agent's process started, seconds since the Unix epoch",
    },
];

/// The row of `name`; panics on a name not in the table (a typo in the code).
pub fn metric(name: &str) -> &'static Metric {
    METRICS
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("{name} is not in metrics/names.rs"))
}
