//! The detector stage: takes enriched events and connects in time order, routes them to the
//! detectors (one file each), owns their bounded tables, closes windows as time passes, and
//! hands alerts through the aggregator to the caller.
//!
//! Time is the events' CLOCK_MONOTONIC stamp (`mono_ns`); `tick` moves it on when no event
//! comes. Nothing here reads a clock, so tests drive it with plain values.

use std::collections::HashMap;
use std::sync::Arc;

use dnslens_lens::counters::{Counter, CounterKind};
use dnslens_lens::{ConnectEvent, DnsEvent, Kind, Role};

use crate::aggregate::Aggregator;
use crate::alert::{Alert, Detector, Evidence, Severity, Subject};
use crate::baseline::{Baseline, BaselineLimits};
use crate::c2::WorkloadState;
use crate::config::{Allowlists, Config, Sections};
use crate::connect::AnswerCache;
use crate::keys::{namespace, workload_key, write_workload_key, ProcKey};
use crate::lookups::{DgaWindow, Lookup, NxWindow};
use dnslens_lens::bounded::Lru;
use dnslens_lens::filter::DomainPattern;

use crate::names::{domain_pattern, normalize, SearchSuffixes};
use crate::resolv::{ProcFs, ProcessView, ResolvConf};
use crate::tunneling::TunnelWindow;

pub(crate) const NS: u64 = 1_000_000_000;
/// How often, in event time, expired windows are swept without a `tick`.
const SWEEP_NS: u64 = NS;
/// How long a process's resolv.conf is trusted before it is asked again.
const RESOLV_REFRESH_NS: u64 = 60 * NS;

/// A namespace's sections with their patterns compiled.
#[derive(Debug)]
pub(crate) struct Settings {
    pub s: Sections,
    pub tunnel_ignore: Vec<DomainPattern>,
}

impl Settings {
    fn new(s: Sections) -> Self {
        Settings {
            tunnel_ignore: s
                .tunneling
                .ignore_domains
                .iter()
                .filter_map(|d| domain_pattern(d))
                .collect(),
            s,
        }
    }
}

/// A suspicious executable's severity and reason; `None` when nothing is wrong with it.
pub(crate) type ExeVerdict = Option<(Severity, &'static str)>;

/// What is kept per process.
#[derive(Debug)]
pub(crate) struct ProcState {
    /// Seen answering queries: a resolver or forwarder.
    pub resolver: bool,
    /// For alerts raised when no event of the process is at hand (lookups that time out).
    pub who: Subject,
    pub nx: NxWindow,
    pub dga: DgaWindow,
    /// resolv.conf as last asked, and when.
    pub resolv: Option<(Option<Arc<ResolvConf>>, u64)>,
    /// The executable last judged, and the verdict: severity and reason.
    pub exe_verdict: Option<(Box<str>, ExeVerdict)>,
}

/// Alert and table counters, for metrics and the exit summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DetectStats {
    /// Alerts emitted, by [`Detector::index`].
    pub alerts: [u64; 8],
    /// Triggers folded into summary alerts rather than emitted one by one.
    pub aggregated: u64,
    /// Entries held now, per table.
    pub entries: TableCounts,
    /// Entries evicted because a table was full, per table.
    pub evictions: TableCounts,
    /// Baseline entries not learned because a baseline limit was reached.
    pub baseline_dropped: u64,
    /// Questions about a process's files not answered in time.
    pub view_timeouts: u64,
}

impl DetectStats {
    pub fn alerts(&self, d: Detector) -> u64 {
        self.alerts[d.index()]
    }

    /// The detectors' rows of the health table ([`dnslens_lens::counters`]): their bounded
    /// tables, and the baseline entries not learned at a limit.
    pub fn counters(&self, out: &mut Vec<Counter>) {
        let e = &self.evictions;
        out.extend(
            [
                ("detector_processes", e.processes),
                ("detector_tunnels", e.tunnels),
                ("detector_lookups", e.lookups),
                ("detector_workloads", e.workloads),
                ("detector_answers", e.answers),
                ("detector_aggregates", e.aggregates),
                ("baseline", self.baseline_dropped),
            ]
            .map(|(table, n)| Counter::eviction("detectors", table, n)),
        );
        out.push(Counter {
            stage: "detectors",
            name: "process_files",
            kind: CounterKind::Miss,
            value: self.view_timeouts,
        });
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableCounts {
    pub processes: u64,
    pub tunnels: u64,
    pub lookups: u64,
    pub workloads: u64,
    pub answers: u64,
    pub aggregates: u64,
}

/// The detectors, fed in time order.
pub struct Detectors {
    pub(crate) config: Config,
    global: Arc<Settings>,
    by_namespace: HashMap<String, Arc<Settings>>,
    pub(crate) suffixes: SearchSuffixes,
    pub(crate) allow: Allowlists,
    pub(crate) view: Box<dyn ProcessView + Send>,
    pub(crate) baseline: Baseline,
    pub(crate) baseline_limits: BaselineLimits,
    pub(crate) learning: bool,
    /// The first input's time: processes started after it had all their lookups seen.
    pub(crate) epoch: Option<u64>,
    pub(crate) now: u64,
    /// Wall minus monotonic of the latest input, to stamp alerts raised by sweeps.
    wall_offset: i128,
    next_sweep: u64,
    pub(crate) procs: Lru<ProcKey, ProcState>,
    pub(crate) tunnels: Lru<(ProcKey, u64), TunnelWindow>,
    pub(crate) lookups: Lru<(ProcKey, u64), Lookup>,
    pub(crate) workloads: Lru<String, WorkloadState>,
    pub(crate) answers: AnswerCache,
    agg: Aggregator,
    /// Alerts raised while handling one input, before they go through the aggregator.
    pub(crate) raised: Vec<(String, Alert)>,
    ready: Vec<Alert>,
    /// Reused for each event's workload key.
    workload_key: String,
    alerts: [u64; 8],
}

impl Detectors {
    /// Detectors that ask the host's /proc about processes (resolv.conf, executables).
    pub fn new(config: Config) -> Self {
        let cache = config.limits.processes.min(1024);
        let view = ProcFs::on_worker(cache);
        Detectors::with_view(config, Box::new(view))
    }

    /// Detectors that ask `view` about processes: a fake in tests, nothing in replays.
    pub fn with_view(config: Config, view: Box<dyn ProcessView + Send>) -> Self {
        let global = Arc::new(Settings::new(config.sections()));
        let by_namespace = config
            .namespaces
            .keys()
            .map(|ns| (ns.clone(), Arc::new(Settings::new(config.sections_for(ns)))))
            .collect();
        let l = &config.limits;
        Detectors {
            suffixes: SearchSuffixes::new(&config.cluster_domain, &config.search_domains),
            allow: Allowlists::new(&config.allow),
            view,
            baseline: Baseline::new(&config.cluster_domain),
            baseline_limits: BaselineLimits {
                workloads: l.baseline_workloads,
                domains: l.baseline_domains,
                executables: l.baseline_executables,
            },
            learning: false,
            epoch: None,
            now: 0,
            wall_offset: 0,
            next_sweep: 0,
            procs: Lru::new(l.processes),
            tunnels: Lru::new(l.tunnels),
            lookups: Lru::new(l.lookups),
            workloads: Lru::new(l.workloads),
            answers: AnswerCache::new(l.answers),
            agg: Aggregator::new(config.alert_window_s, l.aggregates),
            raised: Vec::new(),
            ready: Vec::new(),
            workload_key: String::new(),
            alerts: [0; 8],
            global,
            by_namespace,
            config,
        }
    }

    /// Uses `baseline` from now on (loaded from a file, or learned earlier).
    pub fn set_baseline(&mut self, baseline: Baseline) {
        self.baseline = baseline;
        // The new-domain sets are seeded from the baseline: start them again.
        self.workloads.clear();
    }

    pub fn baseline(&self) -> &Baseline {
        &self.baseline
    }

    /// In learning mode every workload's domains and executables go into the baseline, and the
    /// detectors that judge against it are quiet; the others work as usual.
    pub fn set_learning(&mut self, on: bool) {
        self.learning = on;
    }

    pub fn learning(&self) -> bool {
        self.learning
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// One enriched DNS event.
    pub fn event(&mut self, e: &DnsEvent, out: &mut impl FnMut(Alert)) {
        self.advance(e.mono_ns, e.time_ns);
        let pk = ProcKey::new(e.who.process.pid, e.who.ids.process_start_ns);
        if e.role == Role::Server {
            self.proc_state(pk, || Subject::of_event(e)).resolver = true;
        } else {
            let set = self.settings(namespace(e.who.pod.as_ref()));
            let resolver = self.procs.peek(&pk).is_some_and(|p| p.resolver);
            let quiet = resolver && self.config.exclude_resolvers;
            let name = normalize(&e.qname);
            let mut wkey = std::mem::take(&mut self.workload_key);
            write_workload_key(&mut wkey, &e.who);
            match e.kind {
                Kind::Query => {
                    if !quiet {
                        self.tunneling(e, pk, &name, &set, &wkey);
                    }
                    // A forwarder sends to its upstreams, not to its own resolv.conf's servers.
                    if !resolver {
                        self.bypass(e, pk, &set, &wkey);
                    }
                    self.unknown_binary(e, pk, &set, &wkey);
                }
                Kind::Response => {
                    if !quiet {
                        self.lookups_response(e, pk, &name, &set);
                        self.unexpected_domain(e, &name, &set, &wkey);
                    }
                    self.answers_response(e, pk, &name, &set, &wkey);
                }
                Kind::Unanswered => {}
            }
            self.workload_key = wkey;
        }
        self.deliver(out);
    }

    /// One outgoing connection.
    pub fn connect(&mut self, c: &ConnectEvent, out: &mut impl FnMut(Alert)) {
        self.advance(c.mono_ns, c.time_ns);
        let set = self.settings(namespace(c.who.pod.as_ref()));
        self.on_connect(c, &set);
        self.deliver(out);
    }

    /// Time passes with no input: closes windows, times lookups out, sends summaries.
    pub fn tick(&mut self, now_mono_ns: u64, out: &mut impl FnMut(Alert)) {
        self.epoch.get_or_insert(now_mono_ns);
        self.now = self.now.max(now_mono_ns);
        self.sweep();
        self.deliver(out);
    }

    /// End of input: pending lookups count as failed, every summary is sent.
    pub fn finish(&mut self, out: &mut impl FnMut(Alert)) {
        while let Some((_, lookup)) = self.lookups.pop_oldest() {
            self.lookup_failed(lookup);
        }
        self.route_raised();
        self.agg.flush(&mut self.ready);
        self.deliver(out);
    }

    pub fn stats(&self) -> DetectStats {
        let counts = |f: &dyn Fn(&dyn TableLike) -> u64| TableCounts {
            processes: f(&self.procs),
            tunnels: f(&self.tunnels),
            lookups: f(&self.lookups),
            workloads: f(&self.workloads),
            answers: f(&self.answers),
            aggregates: f(&self.agg),
        };
        DetectStats {
            alerts: self.alerts,
            aggregated: self.agg.repeats,
            entries: counts(&|t| t.entries()),
            evictions: counts(&|t| t.evicted()),
            baseline_dropped: self.baseline.dropped,
            view_timeouts: self.view.timeouts(),
        }
    }

    pub(crate) fn settings(&self, ns: Option<&str>) -> Arc<Settings> {
        ns.and_then(|ns| self.by_namespace.get(ns))
            .unwrap_or(&self.global)
            .clone()
    }

    fn advance(&mut self, mono: u64, wall: u64) {
        self.epoch.get_or_insert(mono);
        self.now = self.now.max(mono);
        self.wall_offset = i128::from(wall) - i128::from(mono);
        if self.now >= self.next_sweep {
            self.sweep();
            self.next_sweep = self.now.saturating_add(SWEEP_NS);
        }
    }

    fn sweep(&mut self) {
        let now = self.now;
        for (_, lookup) in self.lookups.pop_while(|l| l.deadline <= now) {
            self.lookup_failed(lookup);
        }
        self.tunnels.pop_while(|t| t.ends <= now);
        self.route_raised();
        self.agg.sweep(now, &mut self.ready);
    }

    /// Wall-clock ns for the current event time.
    pub(crate) fn wall_now(&self) -> u64 {
        (i128::from(self.now) + self.wall_offset).clamp(0, i128::from(u64::MAX)) as u64
    }

    /// The state of process `pk`, made with `who` if it is new.
    pub(crate) fn proc_state(
        &mut self,
        pk: ProcKey,
        who: impl FnOnce() -> Subject,
    ) -> &mut ProcState {
        if self.procs.peek(&pk).is_none() {
            self.procs.insert(
                pk,
                ProcState {
                    resolver: false,
                    who: who(),
                    nx: NxWindow::default(),
                    dga: DgaWindow::default(),
                    resolv: None,
                    exe_verdict: None,
                },
            );
        } else {
            self.procs.touch(&pk);
        }
        self.procs.peek_mut(&pk).expect("just inserted")
    }

    /// The resolv.conf process `pk` sees, asked again after a minute.
    pub(crate) fn resolv_conf(&mut self, pk: ProcKey) -> Option<Arc<ResolvConf>> {
        let now = self.now;
        if let Some((rc, at)) = self.procs.peek(&pk).and_then(|p| p.resolv.as_ref()) {
            if now < at.saturating_add(RESOLV_REFRESH_NS) {
                return rc.clone();
            }
        }
        let rc = self.view.resolv_conf(pk.pid);
        if let Some(p) = self.procs.peek_mut(&pk) {
            p.resolv = Some((rc.clone(), now));
        }
        rc
    }

    /// Builds an alert; `configured` (the section's severity) replaces `severity` when set.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn raise(
        &mut self,
        detector: Detector,
        key: String,
        severity: Severity,
        configured: Option<Severity>,
        summary: String,
        window_s: u64,
        mut evidence: Evidence,
        who: Subject,
    ) {
        evidence.workload.get_or_insert_with(|| workload_key(&who));
        let alert = Alert {
            detector,
            severity: configured.unwrap_or(severity),
            summary,
            count: 1,
            window_s,
            evidence,
            time_ns: who.time_ns,
            who: who.who,
        };
        self.raised.push((key, alert));
    }

    fn route_raised(&mut self) {
        let now = self.now;
        for (key, alert) in std::mem::take(&mut self.raised) {
            self.agg.raise(key, alert, now, &mut self.ready);
        }
    }

    fn deliver(&mut self, out: &mut impl FnMut(Alert)) {
        self.route_raised();
        for a in self.ready.drain(..) {
            self.alerts[a.detector.index()] += 1;
            out(a);
        }
    }
}

/// Size and eviction count of a table, for [`Detectors::stats`].
trait TableLike {
    fn entries(&self) -> u64;
    fn evicted(&self) -> u64;
}

impl<K: std::hash::Hash + Eq + Clone, V> TableLike for Lru<K, V> {
    fn entries(&self) -> u64 {
        self.len() as u64
    }
    fn evicted(&self) -> u64 {
        self.evictions()
    }
}

impl TableLike for AnswerCache {
    fn entries(&self) -> u64 {
        self.len() as u64
    }
    fn evicted(&self) -> u64 {
        self.evictions()
    }
}

impl TableLike for Aggregator {
    fn entries(&self) -> u64 {
        self.open_windows() as u64
    }
    fn evicted(&self) -> u64 {
        self.evictions()
    }
}
