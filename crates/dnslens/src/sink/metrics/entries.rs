//! What the metrics sink counts per label set: a placement's series (queries, responses,
//! unanswered, lost) and a workload's (latency, top domains, alerts, lookups), with the handles to take
//! them out of the exposition when they go idle.

use std::sync::Arc;
use std::time::Instant;

use dnslens_detect::Alert;
use dnslens_lens::topk::TopK;
use dnslens_probe::Named;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use super::families::{
    AlertLabels, DomainLabels, Families, LossLabels, PlacementLabels, QueryLabels, ResponseLabels,
    SeriesBudget, WorkloadLabels,
};
use super::lookups::LookupSeries;
use super::{Limits, OTHER};

/// What is counted for one label set of placement, with the handles of its series.
#[derive(Debug)]
pub(super) struct Placement {
    pub(super) labels: PlacementLabels,
    /// The key of its workload in [`MetricsSink::workloads`]; `None`: the folded workload.
    pub(super) workload: Option<Box<str>>,
    pub(super) queries: Vec<(&'static str, Counter)>,
    pub(super) responses: Vec<(&'static str, &'static str, Counter)>,
    pub(super) unanswered: Option<Counter>,
    pub(super) lost: Vec<(&'static str, Counter)>,
    pub(super) last_seen: Instant,
}

impl Placement {
    pub(super) fn new(
        labels: PlacementLabels,
        workload: Option<Box<str>>,
        now: Instant,
    ) -> Placement {
        Placement {
            labels,
            workload,
            queries: Vec::new(),
            responses: Vec::new(),
            unanswered: None,
            lost: Vec::new(),
            last_seen: now,
        }
    }

    pub(super) fn query_labels(&self, qtype: &'static str) -> QueryLabels {
        let l = &self.labels;
        QueryLabels {
            namespace: l.namespace.clone(),
            workload: l.workload.clone(),
            pod: l.pod.clone(),
            container: l.container.clone(),
            qtype,
        }
    }

    pub(super) fn response_labels(
        &self,
        qtype: &'static str,
        rcode: &'static str,
    ) -> ResponseLabels {
        let l = &self.labels;
        ResponseLabels {
            namespace: l.namespace.clone(),
            workload: l.workload.clone(),
            pod: l.pod.clone(),
            container: l.container.clone(),
            qtype,
            rcode,
        }
    }

    pub(super) fn query(&mut self, f: &Families, qtype: &'static str) -> &Counter {
        match self.queries.iter().position(|(t, _)| *t == qtype) {
            Some(i) => &self.queries[i].1,
            None => {
                let counter = f.queries.get_or_create_owned(&self.query_labels(qtype));
                self.queries.push((qtype, counter));
                &self.queries.last().expect("just pushed").1
            }
        }
    }

    pub(super) fn response(
        &mut self,
        f: &Families,
        qtype: &'static str,
        rcode: &'static str,
    ) -> &Counter {
        let at = self
            .responses
            .iter()
            .position(|(t, r, _)| *t == qtype && *r == rcode);
        match at {
            Some(i) => &self.responses[i].2,
            None => {
                let labels = self.response_labels(qtype, rcode);
                let counter = f.responses.get_or_create_owned(&labels);
                self.responses.push((qtype, rcode, counter));
                &self.responses.last().expect("just pushed").2
            }
        }
    }

    pub(super) fn loss_labels(&self, reason: &'static str) -> LossLabels {
        let l = &self.labels;
        LossLabels {
            reason,
            namespace: l.namespace.clone(),
            workload: l.workload.clone(),
            pod: l.pod.clone(),
            container: l.container.clone(),
        }
    }

    pub(super) fn lost(&mut self, f: &Families, reason: &'static str) -> &Counter {
        match self.lost.iter().position(|(r, _)| *r == reason) {
            Some(i) => &self.lost[i].1,
            None => {
                let counter = f.events_lost.get_or_create_owned(&self.loss_labels(reason));
                self.lost.push((reason, counter));
                &self.lost.last().expect("just pushed").1
            }
        }
    }

    pub(super) fn unanswered(&mut self, f: &Families) -> &Counter {
        if self.unanswered.is_none() {
            self.unanswered = Some(f.unanswered.get_or_create_owned(&self.labels));
        }
        self.unanswered.as_ref().expect("just set")
    }

    /// Takes its series out of the exposition.
    pub(super) fn remove(&self, f: &Families) {
        for (qtype, _) in &self.queries {
            f.queries.remove(&self.query_labels(qtype));
        }
        for (qtype, rcode, _) in &self.responses {
            f.responses.remove(&self.response_labels(qtype, rcode));
        }
        if self.unanswered.is_some() {
            f.unanswered.remove(&self.labels);
        }
        for (reason, _) in &self.lost {
            f.events_lost.remove(&self.loss_labels(reason));
        }
    }
}

/// What is counted per (namespace, workload): latency, top domains, alerts.
#[derive(Debug)]
pub(super) struct Workload {
    pub(super) namespace: Arc<str>,
    pub(super) workload: Arc<str>,
    /// Made at the first response, so that a workload with none has no histogram.
    pub(super) latency: Option<Histogram>,
    pub(super) domains: TopK,
    /// The domains exported by name now, with their series.
    pub(super) exported: Vec<(Arc<str>, Counter)>,
    /// `domain="other"`: queries for domains not exported when they were made.
    pub(super) other: Option<Counter>,
    /// Queries were counted since `exported` was last chosen.
    pub(super) dirty: bool,
    pub(super) alerts: Vec<AlertLabels>,
    pub(super) lookups: LookupSeries,
    pub(super) last_seen: Instant,
}

impl Workload {
    pub(super) fn new(namespace: Arc<str>, workload: Arc<str>, limits: &Limits) -> Workload {
        Workload {
            latency: None,
            namespace,
            workload,
            domains: TopK::new(limits.tracked_domains),
            exported: Vec::new(),
            other: None,
            dirty: false,
            alerts: Vec::new(),
            lookups: LookupSeries::default(),
            last_seen: Instant::now(),
        }
    }

    pub(super) fn labels(&self) -> WorkloadLabels {
        WorkloadLabels {
            namespace: self.namespace.clone(),
            workload: self.workload.clone(),
        }
    }

    pub(super) fn observe_latency(&mut self, seconds: f64, f: &Families) {
        if self.latency.is_none() {
            self.latency = Some(f.latency.get_or_create_owned(&self.labels()));
        }
        self.latency.as_ref().expect("just set").observe(seconds);
    }

    pub(super) fn domain_labels(&self, domain: &Arc<str>) -> DomainLabels {
        DomainLabels {
            namespace: self.namespace.clone(),
            workload: self.workload.clone(),
            domain: domain.clone(),
        }
    }

    /// Counts a query for `domain` (lower case): under its name if it is among the exported
    /// ones now or takes one of the `n` places free now (and room in `budget`), else under
    /// `other`. A free place is taken at once so that a workload of few domains counts each
    /// under its name from its first query, not under `other` until the next refresh.
    pub(super) fn query(
        &mut self,
        domain: &str,
        n: usize,
        f: &Families,
        budget: &mut SeriesBudget,
    ) {
        if !domain.is_empty() {
            self.domains.add(domain, 1);
            self.dirty = true;
            if let Some((_, counter)) = self.exported.iter().find(|(d, _)| **d == *domain) {
                counter.inc();
                return;
            }
            // A refused domain is counted as folded when the refresh refuses it too.
            if self.exported.len() < n && budget.take() {
                let domain: Arc<str> = Arc::from(domain);
                let counter = f
                    .top_domains
                    .get_or_create_owned(&self.domain_labels(&domain));
                counter.inc();
                self.exported.push((domain, counter));
                return;
            }
        }
        if self.other.is_none() {
            let labels = self.domain_labels(&Arc::from(OTHER));
            self.other = Some(f.top_domains.get_or_create_owned(&labels));
        }
        self.other.as_ref().expect("just set").inc();
    }

    /// Exports the `n` most queried domains, with hysteresis so that names made up to rotate
    /// mint no series without end: an exported domain stays while it is among the `2n` most
    /// queried; one of the `n` most queried takes a free place, or the place of the least
    /// queried exported domain when it has more than twice its queries; a new series needs
    /// room in `budget`. A series made here starts at 0: its domain's earlier queries stay in
    /// `other`. Returns how many domains the budget refused.
    pub(super) fn choose_domains(
        &mut self,
        n: usize,
        f: &Families,
        budget: &mut SeriesBudget,
    ) -> u64 {
        if !self.dirty {
            return 0;
        }
        self.dirty = false;
        let ranked = self.domains.top(2 * n);
        let count = |d: &str| ranked.iter().find(|(r, _)| *r == d).map(|(_, c)| *c);
        let (kept, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut self.exported)
            .into_iter()
            .partition(|(d, _)| count(d).is_some());
        self.exported = kept;
        for (domain, _) in gone {
            f.top_domains.remove(&self.domain_labels(&domain));
        }
        let mut refused = 0;
        for &(domain, queries) in ranked.iter().take(n) {
            if self.exported.iter().any(|(d, _)| **d == *domain) {
                continue;
            }
            if self.exported.len() >= n {
                let weakest = self
                    .exported
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, (d, _))| count(d).unwrap_or(0))
                    .map(|(i, (d, _))| (i, count(d).unwrap_or(0)));
                match weakest {
                    Some((i, least)) if queries > 2 * least => {
                        let (old, _) = self.exported.swap_remove(i);
                        f.top_domains.remove(&self.domain_labels(&old));
                    }
                    _ => continue,
                }
            }
            if !budget.take() {
                refused += 1;
                continue;
            }
            let domain: Arc<str> = Arc::from(domain);
            let counter = f
                .top_domains
                .get_or_create_owned(&self.domain_labels(&domain));
            self.exported.push((domain, counter));
        }
        refused
    }

    pub(super) fn alert(&mut self, a: &Alert, f: &Families) {
        let labels = AlertLabels {
            detector: a.detector.name(),
            severity: a.severity.name(),
            namespace: self.namespace.clone(),
            workload: self.workload.clone(),
        };
        f.alerts.get_or_create(&labels).inc();
        if !self.alerts.contains(&labels) {
            self.alerts.push(labels);
        }
    }

    pub(super) fn remove(&self, f: &Families) {
        if self.latency.is_some() {
            f.latency.remove(&self.labels());
        }
        for (domain, _) in &self.exported {
            f.top_domains.remove(&self.domain_labels(domain));
        }
        if self.other.is_some() {
            f.top_domains.remove(&self.domain_labels(&Arc::from(OTHER)));
        }
        for labels in &self.alerts {
            f.alerts.remove(labels);
        }
        self.lookups.remove(&self.labels(), f);
    }
}
