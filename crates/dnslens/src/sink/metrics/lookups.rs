//! What the metrics count of lookups (docs/metrics.md, "Lookups"), per (namespace, workload):
//! the series of one workload, with the handles to take them out of the exposition when it goes
//! idle. The workload table bounds them as it bounds the latency and top domains.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use std::sync::Arc;

use dnslens_lens::lookup::Lookup;

use super::families::{Families, WorkloadLabels};

/// Upper bounds of the lookup latency histogram, in seconds: a node-local cache to glibc's
/// retries after 5 s timeouts on every nameserver.
pub(super) const LOOKUP_LATENCY_BUCKETS: [f64; 17] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];
/// Upper bounds of queries per lookup: A and AAAA (2), through a search list of 3 with ndots:5
/// (8), with retries (more).
pub(super) const QUERIES_BUCKETS: [f64; 8] = [1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct OutcomeLabels {
    pub(super) namespace: Arc<str>,
    pub(super) workload: Arc<str>,
    pub(super) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct CacheLabels {
    pub(super) namespace: Arc<str>,
    pub(super) workload: Arc<str>,
    pub(super) cache: &'static str,
}

pub(super) fn latency_histogram() -> Histogram {
    Histogram::new(LOOKUP_LATENCY_BUCKETS)
}

pub(super) fn queries_histogram() -> Histogram {
    Histogram::new(QUERIES_BUCKETS)
}

/// A workload's lookup series, each made when first counted.
#[derive(Debug, Default)]
pub(super) struct LookupSeries {
    latency: Option<Histogram>,
    queries: Option<Histogram>,
    waited: Option<Counter>,
    outcomes: Vec<(&'static str, Counter)>,
    cache: Vec<(&'static str, Counter)>,
}

impl LookupSeries {
    pub(super) fn count(&mut self, l: &Lookup, labels: &WorkloadLabels, f: &Families) {
        self.latency
            .get_or_insert_with(|| f.lookup_latency.get_or_create_owned(labels))
            .observe(l.latency_us as f64 / 1e6);
        self.queries
            .get_or_insert_with(|| f.lookup_queries.get_or_create_owned(labels))
            .observe(f64::from(l.queries));
        if l.timeouts > 0 {
            self.waited
                .get_or_insert_with(|| f.lookup_timeout_waits.get_or_create_owned(labels))
                .inc();
        }
        let outcome: &'static str = l.outcome.into();
        by_value(&mut self.outcomes, outcome, || {
            f.lookups
                .get_or_create_owned(&outcome_labels(labels, outcome))
        })
        .inc();
        if let Some(via) = &l.via {
            let cache: &'static str = via.cache.into();
            by_value(&mut self.cache, cache, || {
                f.lookup_cache
                    .get_or_create_owned(&cache_labels(labels, cache))
            })
            .inc();
        }
    }

    /// Takes its series out of the exposition.
    pub(super) fn remove(&self, labels: &WorkloadLabels, f: &Families) {
        if self.latency.is_some() {
            f.lookup_latency.remove(labels);
        }
        if self.queries.is_some() {
            f.lookup_queries.remove(labels);
        }
        if self.waited.is_some() {
            f.lookup_timeout_waits.remove(labels);
        }
        for (outcome, _) in &self.outcomes {
            f.lookups.remove(&outcome_labels(labels, outcome));
        }
        for (cache, _) in &self.cache {
            f.lookup_cache.remove(&cache_labels(labels, cache));
        }
    }
}

fn outcome_labels(w: &WorkloadLabels, outcome: &'static str) -> OutcomeLabels {
    OutcomeLabels {
        namespace: w.namespace.clone(),
        workload: w.workload.clone(),
        outcome,
    }
}

fn cache_labels(w: &WorkloadLabels, cache: &'static str) -> CacheLabels {
    CacheLabels {
        namespace: w.namespace.clone(),
        workload: w.workload.clone(),
        cache,
    }
}

/// The counter of `value` in `list`, made by `make` the first time.
fn by_value<'a>(
    list: &'a mut Vec<(&'static str, Counter)>,
    value: &'static str,
    make: impl FnOnce() -> Counter,
) -> &'a Counter {
    let i = match list.iter().position(|(v, _)| *v == value) {
        Some(i) => i,
        None => {
            list.push((value, make()));
            list.len() - 1
        }
    };
    &list[i].1
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::{Duration, Instant};

    use dnslens_lens::lookup::via::{Cache, Via};
    use dnslens_lens::lookup::Outcome;
    use dnslens_lens::model::{sample, Attribution, TaskName};

    use super::super::tests::status;
    use super::super::{encode, Limits, MetricsSink};
    use super::*;
    use crate::sink::Sink;

    /// A lookup of `who`, through a forwarder when `cache` is given.
    pub(in super::super) fn lookup(
        who: &Attribution,
        outcome: Outcome,
        latency_us: u64,
        queries: u32,
        timeouts: u32,
        cache: Option<Cache>,
    ) -> Lookup {
        Lookup {
            time_ns: 0,
            qtypes: Vec::new(),
            latency_us,
            queries,
            timeouts,
            via: cache.map(|cache| Via {
                pid: 9,
                name: TaskName::from("dnsmasq"),
                upstream: None,
                upstream_latency_us: None,
                cache,
            }),
            who: who.clone(),
            ..sample::lookup(&sample::query(1, "api.example.com", 1, 0), outcome)
        }
    }

    fn host(name: &str) -> Attribution {
        let mut who = sample::query(1, "a.test", 1, 0).who;
        who.host = Some(true);
        who.process.name = TaskName::from(name);
        who
    }

    #[test]
    fn lookups_are_counted_per_workload_folded_past_the_table_and_retired_when_idle() {
        let limits = Limits {
            workloads: 1,
            idle: Duration::from_secs(1),
            ..Limits::default()
        };
        let mut sink = MetricsSink::new(limits);
        let web = host("web");
        let slow = lookup(&web, Outcome::Answered, 1_200_000, 8, 1, Some(Cache::Miss));
        sink.lookup(&slow).unwrap();
        let hit = lookup(&web, Outcome::Answered, 80, 2, 0, Some(Cache::Hit));
        sink.lookup(&hit).unwrap();
        sink.lookup(&lookup(&web, Outcome::Nxdomain, 500, 8, 0, None))
            .unwrap();
        // No room for a second workload: its lookups are the folded workload's.
        sink.lookup(&lookup(
            &host("db"),
            Outcome::Timeout,
            5_000_000,
            2,
            2,
            None,
        ))
        .unwrap();
        let text = encode(&sink.registry(), false);
        let w = r#"namespace="(host)",workload="web""#;
        let other = r#"namespace="_other",workload="other""#;
        for line in [
            format!(r#"dnslens_lookups_total{{{w},outcome="answered"}} 2"#),
            format!(r#"dnslens_lookups_total{{{w},outcome="nxdomain"}} 1"#),
            format!(r#"dnslens_lookups_total{{{other},outcome="timeout"}} 1"#),
            format!(r#"dnslens_lookup_latency_seconds_bucket{{{w},le="1"}} 2"#),
            format!(r#"dnslens_lookup_latency_seconds_bucket{{{w},le="2.5"}} 3"#),
            format!(r#"dnslens_lookup_queries_sum{{{w}}} 18.0"#),
            format!(r#"dnslens_lookup_queries_bucket{{{w},le="2"}} 1"#),
            format!(r#"dnslens_lookup_timeout_waits_total{{{w}}} 1"#),
            format!(r#"dnslens_lookup_timeout_waits_total{{{other}}} 1"#),
            format!(r#"dnslens_lookup_forwarder_cache_total{{{w},cache="hit"}} 1"#),
            format!(r#"dnslens_lookup_forwarder_cache_total{{{w},cache="miss"}} 1"#),
            r#"dnslens_metrics_folded_total{table="workloads"} 1"#.to_string(),
        ] {
            assert!(text.contains(&line), "{line}\n{text}");
        }
        // Idle past the limit: the workload's lookup series leave the exposition.
        sink.status(&status(Instant::now() + Duration::from_secs(120)));
        let text = encode(&sink.registry(), false);
        assert!(!text.contains(w), "{text}");
    }
}
