//! The metric families and their label sets, and the registry that names them (rows of
//! [`super::names::METRICS`]).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry, Unit};

use super::lookups::{self, CacheLabels, OutcomeLabels};
use super::names::{self, Type};
use super::process::ProcessCollector;

/// Upper bounds of the latency histogram, in seconds: from a node-local cache (~50 µs) to a
/// resolver's retry timeouts.
const LATENCY_BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct QueryLabels {
    pub(super) namespace: Arc<str>,
    pub(super) workload: Arc<str>,
    pub(super) pod: Arc<str>,
    pub(super) container: Arc<str>,
    pub(super) qtype: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ResponseLabels {
    pub(super) namespace: Arc<str>,
    pub(super) workload: Arc<str>,
    pub(super) pod: Arc<str>,
    pub(super) container: Arc<str>,
    pub(super) qtype: &'static str,
    pub(super) rcode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct LossLabels {
    pub(super) reason: &'static str,
    pub(super) namespace: Arc<str>,
    pub(super) workload: Arc<str>,
    pub(super) pod: Arc<str>,
    pub(super) container: Arc<str>,
}

/// The labels of one (namespace, workload, pod, container).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PlacementLabels {
    pub(super) namespace: Arc<str>,
    pub(super) workload: Arc<str>,
    pub(super) pod: Arc<str>,
    pub(super) container: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct WorkloadLabels {
    pub(super) namespace: Arc<str>,
    pub(super) workload: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct AlertLabels {
    pub(super) detector: &'static str,
    pub(super) severity: &'static str,
    pub(super) namespace: Arc<str>,
    pub(super) workload: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct DomainLabels {
    pub(super) namespace: Arc<str>,
    pub(super) workload: Arc<str>,
    pub(super) domain: Arc<str>,
}

/// One fixed label: `kind`, `reason`, `table`, `what` or `version`, with a value from a fixed
/// set.
pub(super) type One = [(&'static str, &'static str); 1];

pub(super) fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

#[derive(Clone, Debug)]
pub(super) struct Families {
    pub(super) queries: Family<QueryLabels, Counter>,
    pub(super) responses: Family<ResponseLabels, Counter>,
    pub(super) latency: Family<WorkloadLabels, Histogram, fn() -> Histogram>,
    pub(super) unanswered: Family<PlacementLabels, Counter>,
    pub(super) alerts: Family<AlertLabels, Counter>,
    pub(super) top_domains: Family<DomainLabels, Counter>,
    pub(super) lookup_latency: Family<WorkloadLabels, Histogram, fn() -> Histogram>,
    pub(super) lookup_queries: Family<WorkloadLabels, Histogram, fn() -> Histogram>,
    pub(super) lookup_timeout_waits: Family<WorkloadLabels, Counter>,
    pub(super) lookups: Family<OutcomeLabels, Counter>,
    pub(super) lookup_cache: Family<CacheLabels, Counter>,
    pub(super) events_captured: Counter,
    pub(super) events_lost: Family<LossLabels, Counter>,
    pub(super) events_partial: Family<One, Counter>,
    pub(super) exec_records_lost: Counter,
    pub(super) server_side_kept: Counter,
    pub(super) decode_errors: Family<One, Counter>,
    pub(super) state_evictions: Family<One, Counter>,
    pub(super) ringbuf_used: Gauge,
    pub(super) ringbuf_size: Gauge,
    pub(super) output_wait: Counter<f64, AtomicU64>,
    pub(super) output_dropped: Counter,
    pub(super) dnstap_sent: Counter,
    pub(super) dnstap_dropped: Counter,
    pub(super) enrichment_misses: Family<One, Counter>,
    pub(super) folded: Family<One, Counter>,
    pub(super) build_info: Family<One, Gauge>,
}

impl Families {
    pub(super) fn new() -> Families {
        Families {
            queries: Family::default(),
            responses: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            unanswered: Family::default(),
            alerts: Family::default(),
            top_domains: Family::default(),
            lookup_latency: Family::new_with_constructor(lookups::latency_histogram),
            lookup_queries: Family::new_with_constructor(lookups::queries_histogram),
            lookup_timeout_waits: Family::default(),
            lookups: Family::default(),
            lookup_cache: Family::default(),
            events_captured: Counter::default(),
            events_lost: Family::default(),
            events_partial: Family::default(),
            exec_records_lost: Counter::default(),
            server_side_kept: Counter::default(),
            decode_errors: Family::default(),
            state_evictions: Family::default(),
            ringbuf_used: Gauge::default(),
            ringbuf_size: Gauge::default(),
            output_wait: Counter::default(),
            output_dropped: Counter::default(),
            dnstap_sent: Counter::default(),
            dnstap_dropped: Counter::default(),
            enrichment_misses: Family::default(),
            folded: Family::default(),
            build_info: Family::default(),
        }
    }

    /// A registry of every family, each under its row of [`names::METRICS`], and the process
    /// metrics read at each scrape.
    pub(super) fn registry(&self) -> Registry {
        let mut r = Registry::default();
        let f = self.clone();
        add(&mut r, "dnslens_queries_total", f.queries);
        add(&mut r, "dnslens_responses_total", f.responses);
        add(&mut r, "dnslens_response_latency_seconds", f.latency);
        add(&mut r, "dnslens_unanswered_total", f.unanswered);
        add(&mut r, "dnslens_alerts_total", f.alerts);
        add(&mut r, "dnslens_top_domains_queries_total", f.top_domains);
        add(&mut r, "dnslens_lookups_total", f.lookups);
        add(&mut r, "dnslens_lookup_latency_seconds", f.lookup_latency);
        add(&mut r, "dnslens_lookup_queries", f.lookup_queries);
        add(
            &mut r,
            "dnslens_lookup_timeout_waits_total",
            f.lookup_timeout_waits,
        );
        add(
            &mut r,
            "dnslens_lookup_forwarder_cache_total",
            f.lookup_cache,
        );
        add(&mut r, "dnslens_events_captured_total", f.events_captured);
        add(&mut r, "dnslens_events_lost_total", f.events_lost);
        add(&mut r, "dnslens_events_partial_total", f.events_partial);
        add(
            &mut r,
            "dnslens_exec_records_lost_total",
            f.exec_records_lost,
        );
        add(&mut r, "dnslens_server_side_kept_total", f.server_side_kept);
        add(&mut r, "dnslens_decode_errors_total", f.decode_errors);
        add(&mut r, "dnslens_state_evictions_total", f.state_evictions);
        add(&mut r, "dnslens_ringbuf_used_bytes", f.ringbuf_used);
        add(&mut r, "dnslens_ringbuf_size_bytes", f.ringbuf_size);
        add(&mut r, "dnslens_output_wait_seconds_total", f.output_wait);
        add(
            &mut r,
            "dnslens_output_dropped_lines_total",
            f.output_dropped,
        );
        add(&mut r, "dnslens_dnstap_sent_total", f.dnstap_sent);
        add(&mut r, "dnslens_dnstap_dropped_total", f.dnstap_dropped);
        add(
            &mut r,
            "dnslens_enrichment_misses_total",
            f.enrichment_misses,
        );
        add(&mut r, "dnslens_metrics_folded_total", f.folded);
        add(&mut r, "dnslens_build_info", f.build_info);
        r.register_collector(Box::new(ProcessCollector::new()));
        r
    }
}

/// Registers `metric` under `name` as exposed.
pub(super) fn add(registry: &mut Registry, name: &'static str, metric: impl Metric) {
    let (base, unit) = registered(name);
    let help = names::metric(name).help;
    match unit {
        Some(unit) => registry.register_with_unit(base, help, unit, metric),
        None => registry.register(base, help, metric),
    }
}

/// The name a metric is registered under, and its unit: the encoder adds the `_total` of
/// counters and the unit, so they are taken off here.
pub(super) fn registered(name: &'static str) -> (&'static str, Option<Unit>) {
    let mut base = name;
    if names::metric(name).kind == Type::Counter {
        base = base.strip_suffix("_total").expect("counters end in _total");
    }
    let unit = [("_seconds", Unit::Seconds), ("_bytes", Unit::Bytes)]
        .into_iter()
        .find_map(|(suffix, unit)| Some((base.strip_suffix(suffix)?, unit)));
    match unit {
        Some((base, unit)) => (base, Some(unit)),
        None => (base, None),
    }
}

/// The OpenMetrics text (`application/openmetrics-text; version=1.0.0`), or with `openmetrics`
/// false the Prometheus text format 0.0.4 (`text/plain; version=0.0.4`).
pub fn encode(registry: &Registry, openmetrics: bool) -> String {
    let mut text = String::new();
    let encoded = if openmetrics {
        prometheus_client::encoding::text::encode(&mut text, registry)
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut text, registry)
    };
    encoded.expect("writing to a String cannot fail");
    text
}

/// New series allowed in the current hour.
#[derive(Debug)]
pub(super) struct SeriesBudget {
    limit: u64,
    left: u64,
    renews: Instant,
}

impl SeriesBudget {
    pub(super) fn new(limit: u64, now: Instant) -> SeriesBudget {
        SeriesBudget {
            limit,
            left: limit,
            renews: now + Duration::from_secs(3600),
        }
    }

    pub(super) fn renew(&mut self, now: Instant) {
        if now >= self.renews {
            *self = SeriesBudget::new(self.limit, now);
        }
    }

    /// Takes room for one series; false when the hour's are used up.
    pub(super) fn take(&mut self) -> bool {
        let room = self.left > 0;
        self.left = self.left.saturating_sub(1);
        room
    }
}
